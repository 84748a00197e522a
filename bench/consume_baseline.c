/*
 * consume_baseline — how fast raw librdkafka consumes the pre-filled topic on this machine:
 * the ceiling for meterd's Kafka side.
 *
 *     consume_baseline --brokers B [--topic usage.events] [--messages N] [--decode]
 *                      [--timeout-s S] [--set KEY=VALUE]...
 *
 * It assigns every partition of the topic from the beginning (no consumer group join: assign,
 * not subscribe) and calls rd_kafka_consumer_poll in a loop until it has seen N messages
 * (default: the sum of the high watermarks). The consumer settings are meterd's
 * (daemon/consumer.c: auto.offset.reset error, no auto commit, no partition EOF) with
 * fetch.wait.max.ms 10, as the benchmark runs the daemon: an empty Fetch on the mock broker
 * waits the whole fetch.wait.max.ms. --set adds any other librdkafka property.
 *
 * --decode also runs msgpack_unpack on every payload into one reused zone (what meterd's wire
 * decoder does in its second pass), to show the cost of decoding on top of consuming. Beware
 * librdkafka 2.0.2's fetch stall when comparing: once the consumer queue (which every assigned
 * partition is forwarded to) holds queued.min.messages (default 100,000), the fetcher backs off
 * for a hard-coded second, so a consumer slower than the fetcher stalls; with --decode, compare
 * with --set queued.min.messages=10000000.
 *
 * Every partition must start at offset 0 and deliver contiguous offsets: a gap or a later start
 * means the mock broker dropped data (it keeps only 5 MiB per partition), which fails the run.
 *
 * Output: one JSON object on stdout — messages, bytes, seconds (from the assign call to the
 * last message), rate, first_message_seconds. Exit status: 0, 1 runtime failure, 2 usage.
 */
#include <librdkafka/rdkafka.h>
#include <msgpack.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#define EXIT_USAGE     2
#define MAX_PARTITIONS 10000
#define MAX_SETS       32

typedef struct {
    const char *brokers;
    const char *topic;
    int64_t messages; /* 0: sum of the high watermarks */
    int64_t timeout_s;
    bool decode;
    const char *sets[MAX_SETS];
    size_t nsets;
} options_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: consume_baseline --brokers B [--topic T] [--messages N] [--decode]\n"
                 "                        [--timeout-s S] [--set KEY=VALUE]...\n");
}

static int parse_args(int argc, char **argv, options_t *o)
{
    *o = (options_t){.topic = "usage.events", .timeout_s = 300};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--decode") == 0) {
            o->decode = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "consume_baseline: %s: unknown argument or missing value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(a, "--brokers") == 0)
            o->brokers = v;
        else if (strcmp(a, "--topic") == 0)
            o->topic = v;
        else if (strcmp(a, "--messages") == 0)
            rc = bench_parse_i64(v, 1, INT64_C(1) << 40, &o->messages);
        else if (strcmp(a, "--timeout-s") == 0)
            rc = bench_parse_i64(v, 1, 86400, &o->timeout_s);
        else if (strcmp(a, "--set") == 0 && o->nsets < MAX_SETS && strchr(v, '='))
            o->sets[o->nsets++] = v;
        else {
            fprintf(stderr, "consume_baseline: bad argument \"%s\"\n", a);
            usage(stderr);
            return -1;
        }
        if (rc != 0) {
            fprintf(stderr, "consume_baseline: bad value \"%s\" for %s\n", v, a);
            return -1;
        }
    }
    if (!o->brokers) {
        fprintf(stderr, "consume_baseline: --brokers is required\n");
        return -1;
    }
    return 0;
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "consume_baseline: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

static int set_kv(rd_kafka_conf_t *conf, const char *kv)
{
    char k[256];
    const char *eq = strchr(kv, '=');
    size_t n = (size_t)(eq - kv);
    if (n == 0 || n >= sizeof(k))
        return -1;
    memcpy(k, kv, n);
    k[n] = '\0';
    return set(conf, k, eq + 1);
}

static int topic_partitions(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return n;
}

int main(int argc, char **argv)
{
    options_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int bad =
        set(conf, "bootstrap.servers", o.brokers) || set(conf, "client.id", "consume_baseline") ||
        set(conf, "group.id", "meterd-bench-baseline") ||
        set(conf, "enable.auto.commit", "false") ||
        set(conf, "enable.auto.offset.store", "false") || set(conf, "auto.offset.reset", "error") ||
        set(conf, "enable.partition.eof", "false") || set(conf, "fetch.wait.max.ms", "10");
    for (size_t i = 0; i < o.nsets && !bad; i++)
        bad = set_kv(conf, o.sets[i]);
    if (bad) {
        rd_kafka_conf_destroy(conf);
        return EXIT_USAGE;
    }
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "consume_baseline: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    conf = NULL; /* now owned by rk */
    rd_kafka_poll_set_consumer(rk);

    int np = topic_partitions(rk, o.topic);
    if (np <= 0 || np > MAX_PARTITIONS) {
        fprintf(stderr, "consume_baseline: cannot read the metadata of topic %s\n", o.topic);
        rd_kafka_destroy(rk);
        return 1;
    }
    int64_t *next = calloc((size_t)np, sizeof(int64_t)); /* expected next offset */
    int64_t *high = calloc((size_t)np, sizeof(int64_t));
    if (!next || !high) {
        fprintf(stderr, "consume_baseline: out of memory\n");
        return 1;
    }
    int64_t total = 0;
    for (int p = 0; p < np; p++) {
        int64_t lo = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, o.topic, p, &lo, &high[p], 10000);
        if (e) {
            fprintf(stderr, "consume_baseline: watermarks of partition %d: %s\n", p,
                    rd_kafka_err2str(e));
            return 1;
        }
        if (lo != 0) {
            fprintf(stderr,
                    "consume_baseline: partition %d starts at offset %" PRId64
                    ": the broker dropped data\n",
                    p, lo);
            return 1;
        }
        total += high[p];
    }
    int64_t want = o.messages ? o.messages : total;
    if (want > total) {
        fprintf(stderr,
                "consume_baseline: asked for %" PRId64 " messages, the topic has %" PRId64 "\n",
                want, total);
        return 1;
    }

    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(parts, o.topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;

    msgpack_zone zone;
    msgpack_zone_init(&zone, 8192);
    int64_t got = 0, bytes = 0, errors = 0, gaps = 0, map_entries = 0, not_maps = 0;
    double t0 = bench_now(), first = -1, last = -1;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) {
        fprintf(stderr, "consume_baseline: assign: %s\n", rd_kafka_err2str(e));
        return 1;
    }
    int status = 0;
    while (got < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        /* Reading the clock per message would cost a measurable share of the loop. */
        if (!m || (got & 4095) == 0) {
            double now = bench_now();
            if (now - t0 > (double)o.timeout_s) {
                fprintf(stderr,
                        "consume_baseline: timed out after %" PRId64 " s with %" PRId64
                        " of %" PRId64 " messages\n",
                        o.timeout_s, got, want);
                status = 1;
                if (m)
                    rd_kafka_message_destroy(m);
                break;
            }
        }
        if (!m)
            continue;
        if (m->err) {
            if (errors++ < 5)
                fprintf(stderr, "consume_baseline: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (first < 0)
            first = bench_now();
        if (++got == want)
            last = bench_now();
        bytes += (int64_t)m->len;
        if (m->partition >= 0 && m->partition < np) {
            if (m->offset != next[m->partition])
                gaps++;
            next[m->partition] = m->offset + 1;
        }
        if (o.decode) {
            msgpack_object obj;
            size_t off = 0;
            msgpack_unpack_return ur = msgpack_unpack(m->payload, m->len, &off, &zone, &obj);
            if (ur == MSGPACK_UNPACK_SUCCESS && obj.type == MSGPACK_OBJECT_MAP)
                map_entries += obj.via.map.size;
            else
                not_maps++;
            msgpack_zone_clear(&zone);
        }
        rd_kafka_message_destroy(m);
    }
    double seconds = (last >= 0 ? last : bench_now()) - t0;
    if (gaps) {
        fprintf(stderr, "consume_baseline: %" PRId64 " offset gaps: the broker dropped data\n",
                gaps);
        status = 1;
    }
    printf("{\"messages\":%" PRId64 ",\"bytes\":%" PRId64 ",\"seconds\":%.6f,\"rate\":%.1f,"
           "\"first_message_seconds\":%.6f,\"partitions\":%d,\"decode\":%s,\"errors\":%" PRId64
           ",\"gaps\":%" PRId64 ",\"map_entries\":%" PRId64 ",\"not_maps\":%" PRId64 "}\n",
           got, bytes, seconds, seconds > 0 ? (double)got / seconds : 0.0,
           first >= 0 ? first - t0 : -1.0, np, o.decode ? "true" : "false", errors, gaps,
           map_entries, not_maps);
    fflush(stdout);
    msgpack_zone_destroy(&zone);
    free(next);
    free(high);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return status;
}
