/*
 * consumer — librdkafka consumer group driven from the loop. See consumer.h.
 *
 * DESIGN: the loop polls when the pipe says the queue has something, and also once a second
 * from a timer: librdkafka counts an application that has not called rd_kafka_consumer_poll
 * for max.poll.interval.ms as dead and leaves the group, which an idle meterd would otherwise
 * do every five minutes. The rebalance callback runs inside rd_kafka_consumer_poll on the loop
 * thread. It
 * only hands the partitions to the owner and returns; the assign (or unassign) call is made
 * later from consumer_assign_done / consumer_revoke_done, which librdkafka allows (the group
 * waits in its "wait assign call" state). Both eager and cooperative protocols are handled.
 */
#include "consumer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct consumer {
    uv_loop_t *loop;
    const config_t *cfg;
    log_t *log;
    consumer_cbs_t cbs;
    void *arg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int pipe_fds[2];
    uv_poll_t poll;
    uv_idle_t idle;
    uv_timer_t keepalive;
    int closing_handles;
    bool closing, closed;
    bool cooperative;
    rd_kafka_topic_partition_list_t *revoking; /* cooperative: the partitions to unassign */
    metric_t *m_consumed, *m_errors;
};

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    consumer_t *c = rd_kafka_opaque(rk);
    log_level_t l = level <= 3   ? LOG_LEVEL_ERROR
                    : level <= 4 ? LOG_LEVEL_WARN
                    : level <= 6 ? LOG_LEVEL_INFO
                                 : LOG_LEVEL_DEBUG;
    LOG_AT(c->log, l, "librdkafka", LS("client", "consumer"), LS("facility", fac),
           LS("message", buf));
}

static size_t list_partitions(const rd_kafka_topic_partition_list_t *l, int32_t **out)
{
    *out = malloc((size_t)(l->cnt ? l->cnt : 1) * sizeof(int32_t));
    if (!*out)
        abort(); /* a rebalance we cannot record cannot be handled safely */
    for (int i = 0; i < l->cnt; i++)
        (*out)[i] = l->elems[i].partition;
    return (size_t)l->cnt;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    consumer_t *c = opaque;
    int32_t *ps;
    size_t n;
    c->cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        n = list_partitions(parts, &ps);
        LOG_INFO(c->log, "partitions assigned", LI("count", n),
                 LS("protocol", rd_kafka_rebalance_protocol(rk)));
        c->cbs.on_assign(c->arg, ps, n);
        free(ps);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS: {
        bool lost = rd_kafka_assignment_lost(rk);
        n = list_partitions(parts, &ps);
        LOG_INFO(c->log, "partitions revoked", LI("count", n), LI("lost", lost));
        if (c->revoking)
            rd_kafka_topic_partition_list_destroy(c->revoking);
        c->revoking = rd_kafka_topic_partition_list_copy(parts);
        c->cbs.on_revoke(c->arg, ps, n, lost);
        free(ps);
        break;
    }
    default:
        LOG_ERROR(c->log, "rebalance error", LS("error", rd_kafka_err2str(err)));
        metric_inc(c->m_errors);
        rd_kafka_assign(rk, NULL);
        break;
    }
}

static void handle(consumer_t *c, rd_kafka_message_t *m)
{
    if (!m->err) {
        metric_inc(c->m_consumed);
        c->cbs.on_message(c->arg, m);
        return;
    }
    metric_inc(c->m_errors);
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        /* The checkpoint is outside the topic's retention: never skip silently. */
        int32_t p = m->partition;
        char reason[512];
        snprintf(reason, sizeof(reason), "%s", rd_kafka_message_errstr(m));
        consumer_pause(c, &p, 1, true);
        c->cbs.on_partition_error(c->arg, p, reason);
        return;
    }
    LOG_WARN(c->log, "consumer error", LS("error", rd_kafka_message_errstr(m)),
             LI("partition", m->partition));
}

static void on_idle(uv_idle_t *h);

/* Drains up to poll_batch messages; keeps the idle handle running while more may wait. */
static void drain(consumer_t *c)
{
    char buf[64];
    while (read(c->pipe_fds[0], buf, sizeof(buf)) > 0)
        ;
    int64_t budget = c->cfg->poll_batch;
    while (budget-- > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (!m) {
            uv_idle_stop(&c->idle);
            goto done;
        }
        handle(c, m);
        rd_kafka_message_destroy(m);
    }
    uv_idle_start(&c->idle, on_idle); /* budget spent: continue next iteration */
done:
    if (c->closing && !c->closed && rd_kafka_consumer_closed(c->rk)) {
        c->closed = true;
        uv_idle_stop(&c->idle);
        c->cbs.on_closed(c->arg);
    }
}

static void on_idle(uv_idle_t *h)
{
    drain(h->data);
}

static void on_keepalive(uv_timer_t *t)
{
    drain(t->data);
}

static void on_pipe(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(h->data);
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char e[256];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka.consumer.%s: %s", k, e);
        return -1;
    }
    return 0;
}

consumer_t *consumer_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                         const consumer_cbs_t *cbs, void *arg, char *err, size_t errlen)
{
    consumer_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->cfg = cfg;
    c->log = log;
    c->cbs = *cbs;
    c->arg = arg;
    c->pipe_fds[0] = c->pipe_fds[1] = -1;
    c->m_consumed = metrics_counter(metrics, "meterd_consumed_total",
                                    "Messages read from the input topic.", NULL);
    c->m_errors = metrics_counter(metrics, "meterd_consumer_errors_total",
                                  "Consumer errors reported by librdkafka.", NULL);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char client_id[256], num[32];
    snprintf(client_id, sizeof(client_id), "meterd-%s", cfg->instance_id);
    if (set_conf(conf, "bootstrap.servers", cfg->kafka_brokers, err, errlen) < 0 ||
        set_conf(conf, "group.id", cfg->kafka_group_id, err, errlen) < 0 ||
        set_conf(conf, "client.id", client_id, err, errlen) < 0 ||
        set_conf(conf, "enable.auto.commit", "false", err, errlen) < 0 ||
        set_conf(conf, "enable.auto.offset.store", "false", err, errlen) < 0 ||
        set_conf(conf, "auto.offset.reset", "error", err, errlen) < 0 ||
        set_conf(conf, "enable.partition.eof", "false", err, errlen) < 0 ||
        set_conf(conf, "log.queue", "true", err, errlen) < 0)
        goto fail_conf;
    snprintf(num, sizeof(num), "%lld", (long long)cfg->kafka_session_timeout_ms);
    if (set_conf(conf, "session.timeout.ms", num, err, errlen) < 0)
        goto fail_conf;
    snprintf(num, sizeof(num), "%lld", (long long)cfg->kafka_fetch_wait_max_ms);
    if (set_conf(conf, "fetch.wait.max.ms", num, err, errlen) < 0)
        goto fail_conf;
    if (cfg->kafka_sasl_username[0] &&
        (set_conf(conf, "sasl.username", cfg->kafka_sasl_username, err, errlen) < 0 ||
         set_conf(conf, "sasl.password", cfg->kafka_sasl_password, err, errlen) < 0))
        goto fail_conf;
    for (size_t i = 0; i < cfg->consumer_props.n; i++)
        if (set_conf(conf, cfg->consumer_props.items[i].key, cfg->consumer_props.items[i].value,
                     err, errlen) < 0)
            goto fail_conf;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_opaque(conf, c);
    char e[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!c->rk) {
        snprintf(err, errlen, "kafka consumer: %s", e);
        goto fail_conf;
    }
    conf = NULL; /* now owned by rk */
    rd_kafka_set_log_queue(c->rk, NULL);
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, cfg->kafka_input_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rerr) {
        snprintf(err, errlen, "subscribe %s: %s", cfg->kafka_input_topic, rd_kafka_err2str(rerr));
        goto fail;
    }
    if (pipe(c->pipe_fds) < 0 || fcntl(c->pipe_fds[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(c->pipe_fds[1], F_SETFL, O_NONBLOCK) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(c->q, c->pipe_fds[1], "1", 1);
    uv_poll_init(loop, &c->poll, c->pipe_fds[0]);
    c->poll.data = c;
    uv_idle_init(loop, &c->idle);
    c->idle.data = c;
    uv_timer_init(loop, &c->keepalive);
    c->keepalive.data = c;

    uv_poll_start(&c->poll, UV_READABLE, on_pipe);
    uv_idle_start(&c->idle, on_idle); /* serve anything queued before the pipe was armed */
    uv_timer_start(&c->keepalive, on_keepalive, 1000, 1000);
    return c;
fail_conf:
    if (conf)
        rd_kafka_conf_destroy(conf);
fail:
    if (c->q)
        rd_kafka_queue_destroy(c->q);
    if (c->rk)
        rd_kafka_destroy(c->rk);
    if (c->pipe_fds[0] >= 0) {
        close(c->pipe_fds[0]);
        close(c->pipe_fds[1]);
    }
    free(c);
    return NULL;
}

static rd_kafka_topic_partition_list_t *make_list(const config_t *cfg, const int32_t *partitions,
                                                  const int64_t *offsets, size_t n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(l, cfg->kafka_input_topic, partitions[i]);
        if (offsets)
            tp->offset = offsets[i] < 0 ? RD_KAFKA_OFFSET_BEGINNING : offsets[i];
    }
    return l;
}

void consumer_assign_done(consumer_t *c, const int32_t *partitions, const int64_t *offsets,
                          size_t n)
{
    rd_kafka_topic_partition_list_t *l = make_list(c->cfg, partitions, offsets, n);
    if (c->cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_assign(c->rk, l);
        if (e) {
            LOG_ERROR(c->log, "incremental assign failed", LS("error", rd_kafka_error_string(e)));
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, l);
        if (e)
            LOG_ERROR(c->log, "assign failed", LS("error", rd_kafka_err2str(e)));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void consumer_revoke_done(consumer_t *c)
{
    if (c->cooperative && c->revoking) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(c->rk, c->revoking);
        if (e) {
            LOG_ERROR(c->log, "incremental unassign failed", LS("error", rd_kafka_error_string(e)));
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(c->rk, NULL);
    }
    if (c->revoking) {
        rd_kafka_topic_partition_list_destroy(c->revoking);
        c->revoking = NULL;
    }
}

void consumer_pause(consumer_t *c, const int32_t *partitions, size_t n, bool pause)
{
    if (!n)
        return;
    rd_kafka_topic_partition_list_t *l = make_list(c->cfg, partitions, NULL, n);
    rd_kafka_resp_err_t e =
        pause ? rd_kafka_pause_partitions(c->rk, l) : rd_kafka_resume_partitions(c->rk, l);
    if (e)
        LOG_WARN(c->log, pause ? "pause failed" : "resume failed",
                 LS("error", rd_kafka_err2str(e)));
    rd_kafka_topic_partition_list_destroy(l);
}

bool consumer_owns(consumer_t *c, int32_t partition)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(c->rk, &l) || !l)
        return false;
    bool found =
        rd_kafka_topic_partition_list_find(l, c->cfg->kafka_input_topic, partition) != NULL;
    rd_kafka_topic_partition_list_destroy(l);
    return found;
}

int64_t consumer_high_watermark(consumer_t *c, int32_t partition)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(c->rk, c->cfg->kafka_input_topic, partition, &lo, &hi) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return hi;
}

void consumer_seek(consumer_t *c, int32_t partition, int64_t offset)
{
    int64_t off[1] = {offset};
    rd_kafka_topic_partition_list_t *l = make_list(c->cfg, &partition, off, 1);
    /* timeout 0: asynchronous (librdkafka 2.0.2 scales a non-zero timeout wrongly, FACTS.md) */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 0);
    if (e) {
        LOG_ERROR(c->log, "seek failed", LI("partition", partition),
                  LS("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void consumer_commit(consumer_t *c, const int32_t *partitions, const int64_t *offsets, size_t n)
{
    if (!n || c->closing)
        return;
    rd_kafka_topic_partition_list_t *l = make_list(c->cfg, partitions, offsets, n);
    rd_kafka_commit(c->rk, l, 1); /* async; the result is only for monitoring */
    rd_kafka_topic_partition_list_destroy(l);
}

void consumer_close(consumer_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, c->q);
    if (e) {
        LOG_ERROR(c->log, "consumer close failed", LS("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
    }
    uv_idle_start(&c->idle, on_idle);
}

static void handle_closed(uv_handle_t *h)
{
    consumer_t *c = h->data;
    if (--c->closing_handles == 0)
        free(c);
}

void consumer_free(consumer_t *c)
{
    if (c->revoking)
        rd_kafka_topic_partition_list_destroy(c->revoking);
    rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
    rd_kafka_queue_destroy(c->q);
    /* After a clean close the group is already left; otherwise (stop deadline) leave it to the
     * session timeout rather than block the loop in a synchronous close. */
    rd_kafka_destroy_flags(c->rk, c->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    c->closing_handles = 3;
    uv_close((uv_handle_t *)&c->poll, handle_closed);
    uv_close((uv_handle_t *)&c->idle, handle_closed);
    uv_close((uv_handle_t *)&c->keepalive, handle_closed);
    close(c->pipe_fds[0]);
    close(c->pipe_fds[1]);
}
