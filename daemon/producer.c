/*
 * producer — librdkafka producer driven from the loop. See producer.h.
 *
 * DESIGN: each message carries a small heap record as the librdkafka opaque: its generation
 * and, for timed messages, when its cause arrived and the histogram to observe the delay in
 * once the broker acknowledges it. Two counters
 * hold the unacknowledged messages of sealed generations and of the open one; a delivery
 * report decrements the right one by comparing its generation with the current one. A failed
 * delivery is re-produced with the same generation from a retry list drained by a one-second
 * timer, so the barrier keeps holding until it really is delivered.
 */
#include "producer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRY_MS 1000

/* The per-message opaque. */
typedef struct {
    uint64_t gen;
    uint64_t t0_ns;    /* uv_hrtime() when the cause arrived; 0: not timed */
    metric_t *latency; /* observed at acknowledgement when timed */
} out_t;

typedef struct retry {
    struct retry *next;
    char *topic;
    void *key, *payload;
    size_t key_len, len;
    rd_kafka_headers_t *headers;
    out_t *out;
} retry_t;

struct producer {
    uv_loop_t *loop;
    log_t *log;
    rd_kafka_t *rk;
    rd_kafka_queue_t *main_q;
    int pipe_fds[2];
    uv_poll_t poll;
    uv_timer_t timer;
    int closing_handles;
    producer_drain_cb drain_cb;
    void *arg;
    uint64_t gen;       /* current (open) generation */
    int64_t sealed_out; /* unacknowledged messages of generations < gen */
    int64_t open_out;   /* unacknowledged messages of generation gen */
    retry_t *retries;
    rd_kafka_topic_t *warm[3]; /* handles of the output topics, kept to hold their metadata */
    metric_t *m_sent, *m_failed;
};

static void on_retry_timer(uv_timer_t *t);

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    producer_t *p = rd_kafka_opaque(rk);
    log_level_t l = level <= 3   ? LOG_LEVEL_ERROR
                    : level <= 4 ? LOG_LEVEL_WARN
                    : level <= 6 ? LOG_LEVEL_INFO
                                 : LOG_LEVEL_DEBUG;
    LOG_AT(p->log, l, "librdkafka", LS("client", "producer"), LS("facility", fac),
           LS("message", buf));
}

static void acked(producer_t *p, uint64_t gen)
{
    if (gen < p->gen) {
        if (--p->sealed_out == 0 && p->drain_cb)
            p->drain_cb(p->arg);
    } else {
        p->open_out--;
    }
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    producer_t *p = opaque;
    out_t *out = m->_private;
    if (!m->err) {
        metric_inc(p->m_sent);
        if (out->t0_ns && out->latency)
            metric_observe(out->latency, (double)(uv_hrtime() - out->t0_ns) / 1e9);
        acked(p, out->gen);
        free(out);
        return;
    }
    metric_inc(p->m_failed);
    LOG_ERROR(p->log, "delivery failed, will retry", LS("topic", rd_kafka_topic_name(m->rkt)),
              LS("error", rd_kafka_err2str(m->err)));
    retry_t *r = calloc(1, sizeof(*r));
    rd_kafka_headers_t *h = NULL;
    if (r) {
        r->topic = strdup(rd_kafka_topic_name(m->rkt));
        r->key = malloc(m->key_len ? m->key_len : 1);
        r->payload = malloc(m->len ? m->len : 1);
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
            r->headers = rd_kafka_headers_copy(h);
    }
    if (!r || !r->topic || !r->key || !r->payload) {
        /* Out of memory while keeping an undelivered message: better to stop than to lose it. */
        LOG_ERROR(p->log, "out of memory keeping an undelivered message", LNONE);
        abort();
    }
    if (m->key_len)
        memcpy(r->key, m->key, m->key_len);
    if (m->len)
        memcpy(r->payload, m->payload, m->len);
    r->key_len = m->key_len;
    r->len = m->len;
    r->out = out;
    r->next = p->retries;
    p->retries = r;
    if (!uv_is_active((uv_handle_t *)&p->timer))
        uv_timer_start(&p->timer, on_retry_timer, RETRY_MS, 0);
}

static int produce(producer_t *p, const char *topic, const void *key, size_t key_len,
                   const void *payload, size_t len, rd_kafka_headers_t *headers, out_t *out)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(out), RD_KAFKA_V_END);
    if (err) {
        LOG_ERROR(p->log, "produce refused", LS("topic", topic),
                  LS("error", rd_kafka_err2str(err)));
        return -1;
    }
    return 0; /* headers now owned by librdkafka */
}

static void on_retry_timer(uv_timer_t *t)
{
    producer_t *p = t->data;
    retry_t *r = p->retries;
    p->retries = NULL;
    while (r) {
        retry_t *next = r->next;
        if (produce(p, r->topic, r->key, r->key_len, r->payload, r->len, r->headers, r->out) < 0) {
            r->next = p->retries; /* queue full or similar: try again later */
            p->retries = r;
        } else {
            free(r->topic);
            free(r->key);
            free(r->payload);
            free(r);
        }
        r = next;
    }
    if (p->retries)
        uv_timer_start(&p->timer, on_retry_timer, RETRY_MS, 0);
}

static void serve(producer_t *p)
{
    char buf[64];
    while (read(p->pipe_fds[0], buf, sizeof(buf)) > 0)
        ;
    while (rd_kafka_poll(p->rk, 0) > 0)
        ;
}

static void on_pipe(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    serve(h->data);
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char e[256];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka.producer.%s: %s", k, e);
        return -1;
    }
    return 0;
}

producer_t *producer_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                         producer_drain_cb drain_cb, void *arg, char *err, size_t errlen)
{
    producer_t *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->loop = loop;
    p->log = log;
    p->drain_cb = drain_cb;
    p->arg = arg;
    p->pipe_fds[0] = p->pipe_fds[1] = -1;
    p->m_sent =
        metrics_counter(metrics, "meterd_produced_total",
                        "Messages acknowledged by the broker (dead letters, decisions).", NULL);
    p->m_failed =
        metrics_counter(metrics, "meterd_produce_failures_total",
                        "Permanent delivery failures (each message is produced again).", NULL);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char client_id[256], queue_max[32];
    snprintf(client_id, sizeof(client_id), "meterd-%s", cfg->instance_id);
    /* Every unacknowledged message belongs to an input message that is not yet durable, and
     * those are bounded by meter.max_pending_events: with room for twice as many, producing
     * can never be refused for a full queue. */
    int64_t qmax = 2 * cfg->max_pending_events;
    snprintf(queue_max, sizeof(queue_max), "%lld",
             (long long)(qmax < 100000     ? 100000
                         : qmax > 10000000 ? 10000000
                                           : qmax));
    if (set_conf(conf, "bootstrap.servers", cfg->kafka_brokers, err, errlen) < 0 ||
        set_conf(conf, "client.id", client_id, err, errlen) < 0 ||
        set_conf(conf, "enable.idempotence", "true", err, errlen) < 0 ||
        set_conf(conf, "message.timeout.ms", "0", err, errlen) < 0 ||
        set_conf(conf, "linger.ms", "5", err, errlen) < 0 ||
        set_conf(conf, "queue.buffering.max.messages", queue_max, err, errlen) < 0 ||
        /* murmur2 on the key, as the Java client and python3-kafka do, so that meterd's
         * outputs land where every other client would put the same org. */
        set_conf(conf, "partitioner", "murmur2_random", err, errlen) < 0 ||
        set_conf(conf, "log.queue", "true", err, errlen) < 0)
        goto fail_conf;
    /* security.protocol and sasl.mechanisms come through [kafka.producer]; only the
     * credentials are injected here so that the password never sits in a file. */
    if (cfg->kafka_sasl_username[0] &&
        (set_conf(conf, "sasl.username", cfg->kafka_sasl_username, err, errlen) < 0 ||
         set_conf(conf, "sasl.password", cfg->kafka_sasl_password, err, errlen) < 0))
        goto fail_conf;
    for (size_t i = 0; i < cfg->producer_props.n; i++)
        if (set_conf(conf, cfg->producer_props.items[i].key, cfg->producer_props.items[i].value,
                     err, errlen) < 0)
            goto fail_conf;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_opaque(conf, p);
    char e[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!p->rk) {
        snprintf(err, errlen, "kafka producer: %s", e);
        goto fail_conf;
    }
    conf = NULL; /* now owned by rk */
    rd_kafka_set_log_queue(p->rk, NULL);
    /* A topic handle makes librdkafka fetch the topic's metadata now: otherwise the first
     * messages after start wait for it (measured: up to a second for the first decisions). */
    p->warm[0] = rd_kafka_topic_new(p->rk, cfg->kafka_dlq_topic, NULL);
    p->warm[1] = rd_kafka_topic_new(p->rk, cfg->kafka_decisions_topic, NULL);
    p->warm[2] = rd_kafka_topic_new(p->rk, cfg->kafka_budget_topic, NULL);
    p->main_q = rd_kafka_queue_get_main(p->rk);
    if (pipe(p->pipe_fds) < 0 || fcntl(p->pipe_fds[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(p->pipe_fds[1], F_SETFL, O_NONBLOCK) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(p->main_q, p->pipe_fds[1], "1", 1);
    uv_poll_init(loop, &p->poll, p->pipe_fds[0]);
    p->poll.data = p;
    uv_poll_start(&p->poll, UV_READABLE, on_pipe);
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    return p;
fail_conf:
    if (conf)
        rd_kafka_conf_destroy(conf);
fail:
    for (size_t i = 0; i < sizeof(p->warm) / sizeof(p->warm[0]); i++)
        if (p->warm[i])
            rd_kafka_topic_destroy(p->warm[i]);
    if (p->main_q)
        rd_kafka_queue_destroy(p->main_q);
    if (p->rk)
        rd_kafka_destroy(p->rk);
    if (p->pipe_fds[0] >= 0) {
        close(p->pipe_fds[0]);
        close(p->pipe_fds[1]);
    }
    free(p);
    return NULL;
}

int producer_send(producer_t *p, const char *topic, const void *key, size_t key_len,
                  const void *payload, size_t len, const producer_header_t *headers,
                  size_t nheaders, metric_t *latency, uint64_t t0_ns)
{
    out_t *out = malloc(sizeof(*out));
    if (!out)
        return -1;
    *out = (out_t){.gen = p->gen, .t0_ns = t0_ns, .latency = latency};
    rd_kafka_headers_t *h = NULL;
    if (nheaders) {
        h = rd_kafka_headers_new(nheaders);
        for (size_t i = 0; i < nheaders; i++)
            rd_kafka_header_add(h, headers[i].name, -1, headers[i].value, -1);
    }
    if (produce(p, topic, key, key_len, payload, len, h, out) < 0) {
        if (h)
            rd_kafka_headers_destroy(h);
        free(out);
        return -1;
    }
    p->open_out++;
    return 0;
}

void producer_seal(producer_t *p)
{
    p->sealed_out += p->open_out;
    p->open_out = 0;
    p->gen++;
}

int64_t producer_sealed_pending(const producer_t *p)
{
    return p->sealed_out;
}

int64_t producer_outstanding(const producer_t *p)
{
    return p->sealed_out + p->open_out;
}

static void handle_closed(uv_handle_t *h)
{
    producer_t *p = h->data;
    if (--p->closing_handles == 0)
        free(p);
}

int64_t producer_close(producer_t *p, int timeout_ms)
{
    rd_kafka_flush(p->rk, timeout_ms);
    serve(p); /* count the last delivery reports */
    int64_t left = producer_outstanding(p);
    while (p->retries) {
        retry_t *r = p->retries;
        p->retries = r->next;
        if (r->headers)
            rd_kafka_headers_destroy(r->headers);
        free(r->topic);
        free(r->key);
        free(r->payload);
        free(r->out);
        free(r);
        left++;
    }
    rd_kafka_queue_io_event_enable(p->main_q, -1, NULL, 0);
    rd_kafka_queue_destroy(p->main_q);
    for (size_t i = 0; i < sizeof(p->warm) / sizeof(p->warm[0]); i++)
        if (p->warm[i])
            rd_kafka_topic_destroy(p->warm[i]);
    rd_kafka_destroy(p->rk);
    close(p->pipe_fds[1]);
    p->closing_handles = 2;
    uv_close((uv_handle_t *)&p->poll, handle_closed);
    uv_close((uv_handle_t *)&p->timer, handle_closed);
    close(p->pipe_fds[0]); /* the poll is stopped by uv_close already */
    return left;
}
