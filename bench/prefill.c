/*
 * prefill — fills the input topic with a seeded stream of llm.call events for the benchmarks.
 *
 *     prefill --brokers B --events N [--topic usage.events] [--orgs K] [--seed S]
 *             [--partitions P] [--linger-ms MS] [--batch-bytes BYTES] [--span-ms MS]
 *
 * Every event is one msgpack map shaped like tests/lib/stream.py's valid events (v, id, type,
 * org, ts, provider, model, input_tokens, output_tokens and, at stream.py's rates, project,
 * cache_read_tokens, cache_write_tokens, byo, run). The key is the org. There are no repeated
 * ids and no poison messages: every event must end up applied exactly once, which is what the
 * benchmark checks. The same seed gives the same events in the same partitions at the same
 * offsets.
 *
 * Event times advance evenly over --span-ms (default 10 minutes) starting at
 * 2026-01-01T00:55:00Z, so the stream crosses one hour boundary, as a live stream would; the
 * cost aggregation then sees realistic (org, project, model, hour) cardinality rather than one
 * row per event.
 *
 * Producer settings: partitioner murmur2_random (what Java, python-kafka and meterd's other
 * clients use, so the partition of an org agrees with theirs), enable.idempotence, linger.ms 50
 * and large batches: librdkafka's mock broker returns one producer batch per partition per
 * Fetch, so the consumer's speed follows the producer's batch size.
 *
 * Output: one JSON object on stdout — events, payload bytes, seconds, per-partition message
 * counts, end offsets (from the delivery reports) and the low/high watermarks the broker reports
 * afterwards. The mock broker keeps only the last 5 MiB per partition: when a low watermark is
 * above 0 it has dropped events, which is reported on stderr and exits 1.
 *
 * Threading: the main thread produces and serves delivery reports (rd_kafka_poll); librdkafka
 * runs its own threads. Exit status: 0 success, 1 runtime failure, 2 usage error.
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
#define BASE_TS        (1767225600000LL + 55LL * 60 * 1000) /* 2026-01-01T00:55:00Z */
#define MAX_PARTITIONS 10000

typedef struct {
    const char *provider, *model;
} model_t;

/* Ten models that deploy/prices.ini prices. */
static const model_t models[] = {
    {"anthropic", "claude-sonnet-4-5"},
    {"anthropic", "claude-opus-4-5"},
    {"anthropic", "claude-haiku-4-5"},
    {"openai", "gpt-5"},
    {"openai", "gpt-5-mini"},
    {"openai", "gpt-4.1"},
    {"openai", "gpt-4o-mini"},
    {"minimax", "MiniMax-M2"},
    {"zai", "glm-4.6"},
    {"fireworks", "accounts/fireworks/models/kimi-k2-instruct"},
};
#define N_MODELS (sizeof(models) / sizeof(models[0]))

typedef struct {
    const char *brokers;
    const char *topic;
    int64_t events, orgs, seed, partitions, linger_ms, batch_bytes, span_ms;
} options_t;

typedef struct {
    int64_t delivered, failed;
    int32_t npart;
    int64_t *count; /* per partition: messages delivered */
    int64_t *end;   /* per partition: highest delivered offset + 1 */
    char first_error[256];
} progress_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: prefill --brokers B --events N [--topic T] [--orgs K] [--seed S]\n"
                 "               [--partitions P] [--linger-ms MS] [--batch-bytes BYTES]\n"
                 "               [--span-ms MS]\n"
                 "\n"
                 "Produces N seeded llm.call events (msgpack, key = org) to topic T (default\n"
                 "usage.events) and prints a JSON summary on stdout.\n"
                 "\n"
                 "  --orgs K          organizations (default 10000)\n"
                 "  --seed S          seed of the event stream (default 1)\n"
                 "  --partitions P    fail unless the topic has exactly P partitions\n"
                 "  --linger-ms MS    producer linger.ms (default 50)\n"
                 "  --batch-bytes B   producer batch.size (default 1000000)\n"
                 "  --span-ms MS      event times spread over this span (default 600000)\n");
}

static int parse_args(int argc, char **argv, options_t *o)
{
    *o = (options_t){.topic = "usage.events",
                     .orgs = 10000,
                     .seed = 1,
                     .linger_ms = 50,
                     .batch_bytes = 1000000,
                     .span_ms = 600000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "prefill: %s: unknown argument or missing value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(a, "--brokers") == 0)
            o->brokers = v;
        else if (strcmp(a, "--topic") == 0)
            o->topic = v;
        else if (strcmp(a, "--events") == 0)
            rc = bench_parse_i64(v, 1, INT64_C(1) << 40, &o->events);
        else if (strcmp(a, "--orgs") == 0)
            rc = bench_parse_i64(v, 1, 99999, &o->orgs);
        else if (strcmp(a, "--seed") == 0)
            rc = bench_parse_i64(v, 0, INT64_MAX, &o->seed);
        else if (strcmp(a, "--partitions") == 0)
            rc = bench_parse_i64(v, 1, MAX_PARTITIONS, &o->partitions);
        else if (strcmp(a, "--linger-ms") == 0)
            rc = bench_parse_i64(v, 0, 900000, &o->linger_ms);
        else if (strcmp(a, "--batch-bytes") == 0)
            rc = bench_parse_i64(v, 1, 2147483647, &o->batch_bytes);
        else if (strcmp(a, "--span-ms") == 0)
            rc = bench_parse_i64(v, 0, INT64_C(1) << 40, &o->span_ms);
        else {
            fprintf(stderr, "prefill: unknown argument \"%s\"\n", a);
            usage(stderr);
            return -1;
        }
        if (rc != 0) {
            fprintf(stderr, "prefill: bad value \"%s\" for %s\n", v, a);
            return -1;
        }
    }
    if (!o->brokers || o->events == 0) {
        fprintf(stderr, "prefill: --brokers and --events are required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    progress_t *p = opaque;
    if (m->err) {
        if (p->failed++ == 0)
            snprintf(p->first_error, sizeof(p->first_error), "%s", rd_kafka_err2str(m->err));
        return;
    }
    p->delivered++;
    if (m->partition >= 0 && m->partition < p->npart) {
        p->count[m->partition]++;
        if (m->offset + 1 > p->end[m->partition])
            p->end[m->partition] = m->offset + 1;
    }
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    pack_str(pk, k, strlen(k));
}

/* Writes event number i into sbuf (cleared first) and its org into org[16]. */
static void make_event(const options_t *o, bench_rng_t *r, int64_t i, msgpack_sbuffer *sbuf,
                       char org[16])
{
    msgpack_sbuffer_clear(sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);

    uint64_t org_ix = bench_rng_below(r, (uint64_t)o->orgs);
    snprintf(org, 16, "org-%05u", (unsigned)org_ix);
    char id[40];
    uint64_t a = bench_rng_next(r), b = bench_rng_next(r);
    snprintf(id, sizeof(id), "%08x-%04x-4%03x-%04x-%012" PRIx64, (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xffff), (unsigned)(a & 0xfff),
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)), b & UINT64_C(0xffffffffffff));
    const model_t *m = &models[bench_rng_below(r, N_MODELS)];
    int64_t ts = BASE_TS + (int64_t)((double)o->span_ms * (double)i / (double)o->events);
    int64_t input = (int64_t)bench_rng_below(r, 200001);
    int64_t output = (int64_t)bench_rng_below(r, 20001);
    /* Optional fields, at tests/lib/stream.py's rates. */
    bool has_project = bench_rng_below(r, 100) < 90;
    /* Each org has 1..4 projects, fixed by the seed and the org. */
    bench_rng_t orng;
    bench_rng_init(&orng, (uint64_t)o->seed * 1000003u + org_ix);
    uint64_t nproj = 1 + bench_rng_below(&orng, 4);
    uint64_t project = bench_rng_below(r, nproj);
    bool has_cr = bench_rng_below(r, 100) < 40;
    int64_t cache_read = has_cr ? (int64_t)bench_rng_below(r, 500001) : 0;
    bool has_cw = bench_rng_below(r, 100) < 20;
    int64_t cache_write = has_cw ? (int64_t)bench_rng_below(r, 100001) : 0;
    uint64_t byo_roll = bench_rng_below(r, 1000);
    bool has_byo = byo_roll < 145; /* 10% true, then 5% of the rest false */
    bool byo = byo_roll < 100;
    bool has_run = bench_rng_below(r, 100) < 30;
    uint64_t run = 1 + bench_rng_below(r, 1000000);

    size_t fields = 9 + has_project + has_cr + has_cw + has_byo + has_run;
    msgpack_pack_map(&pk, fields);
    pack_key(&pk, "v");
    msgpack_pack_int64(&pk, 1);
    pack_key(&pk, "id");
    pack_str(&pk, id, strlen(id));
    pack_key(&pk, "type");
    pack_key(&pk, "llm.call");
    pack_key(&pk, "org");
    pack_str(&pk, org, strlen(org));
    pack_key(&pk, "ts");
    msgpack_pack_int64(&pk, ts);
    pack_key(&pk, "provider");
    pack_key(&pk, m->provider);
    pack_key(&pk, "model");
    pack_key(&pk, m->model);
    pack_key(&pk, "input_tokens");
    msgpack_pack_int64(&pk, input);
    pack_key(&pk, "output_tokens");
    msgpack_pack_int64(&pk, output);
    if (has_project) {
        char proj[24];
        snprintf(proj, sizeof(proj), "proj-%u", (unsigned)project);
        pack_key(&pk, "project");
        pack_key(&pk, proj);
    }
    if (has_cr) {
        pack_key(&pk, "cache_read_tokens");
        msgpack_pack_int64(&pk, cache_read);
    }
    if (has_cw) {
        pack_key(&pk, "cache_write_tokens");
        msgpack_pack_int64(&pk, cache_write);
    }
    if (has_byo) {
        pack_key(&pk, "byo");
        if (byo)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
    }
    if (has_run) {
        char rs[24];
        snprintf(rs, sizeof(rs), "run-%u", (unsigned)run);
        pack_key(&pk, "run");
        pack_key(&pk, rs);
    }
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "prefill: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
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

static void print_array(const char *name, const int64_t *v, int32_t n, bool last)
{
    printf("\"%s\":[", name);
    for (int32_t i = 0; i < n; i++)
        printf("%s%" PRId64, i ? "," : "", v[i]);
    printf("]%s", last ? "" : ",");
}

int main(int argc, char **argv)
{
    options_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;

    progress_t prog = {0};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char num[32];
    int bad = set(conf, "bootstrap.servers", o.brokers) || set(conf, "client.id", "prefill") ||
              set(conf, "enable.idempotence", "true") ||
              set(conf, "partitioner", "murmur2_random") ||
              set(conf, "batch.num.messages", "1000000") ||
              set(conf, "queue.buffering.max.messages", "10000000") ||
              set(conf, "queue.buffering.max.kbytes", "2097151");
    snprintf(num, sizeof(num), "%" PRId64, o.linger_ms);
    bad = bad || set(conf, "linger.ms", num);
    snprintf(num, sizeof(num), "%" PRId64, o.batch_bytes);
    bad = bad || set(conf, "batch.size", num);
    if (o.batch_bytes > 1000000) {
        snprintf(num, sizeof(num), "%" PRId64, o.batch_bytes + 100000);
        bad = bad || set(conf, "message.max.bytes", num);
    }
    if (bad) {
        rd_kafka_conf_destroy(conf);
        return EXIT_USAGE;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &prog);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "prefill: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    conf = NULL; /* now owned by rk */

    int np = topic_partitions(rk, o.topic);
    if (np <= 0 || np > MAX_PARTITIONS) {
        fprintf(stderr, "prefill: cannot read the metadata of topic %s\n", o.topic);
        rd_kafka_destroy(rk);
        return 1;
    }
    if (o.partitions && np != o.partitions) {
        fprintf(stderr, "prefill: topic %s has %d partitions, --partitions says %" PRId64 "\n",
                o.topic, np, o.partitions);
        rd_kafka_destroy(rk);
        return 1;
    }
    prog.npart = np;
    prog.count = calloc((size_t)np, sizeof(int64_t));
    prog.end = calloc((size_t)np, sizeof(int64_t));
    int64_t *lo = calloc((size_t)np, sizeof(int64_t));
    int64_t *hi = calloc((size_t)np, sizeof(int64_t));
    if (!prog.count || !prog.end || !lo || !hi) {
        fprintf(stderr, "prefill: out of memory\n");
        return 1;
    }

    bench_rng_t rng;
    bench_rng_init(&rng, (uint64_t)o.seed);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    int64_t bytes = 0;
    int status = 0;
    double t0 = bench_now();
    for (int64_t i = 0; i < o.events && status == 0; i++) {
        char org[16];
        make_event(&o, &rng, i, &sbuf, org);
        bytes += (int64_t)sbuf.size;
        for (;;) {
            rd_kafka_resp_err_t e =
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o.topic), RD_KAFKA_V_KEY(org, strlen(org)),
                                  RD_KAFKA_V_VALUE(sbuf.data, sbuf.size),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "prefill: produce: %s\n", rd_kafka_err2str(e));
                status = 1;
                break;
            }
            rd_kafka_poll(rk, 10);
        }
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    msgpack_sbuffer_destroy(&sbuf);
    while (rd_kafka_outq_len(rk) > 0 && status == 0) {
        rd_kafka_resp_err_t e = rd_kafka_flush(rk, 60000);
        if (e == RD_KAFKA_RESP_ERR__TIMED_OUT) {
            fprintf(stderr, "prefill: %d messages still undelivered after 60 s\n",
                    rd_kafka_outq_len(rk));
            status = 1;
        }
    }
    double seconds = bench_now() - t0;
    if (prog.failed) {
        fprintf(stderr, "prefill: %" PRId64 " messages failed, first: %s\n", prog.failed,
                prog.first_error);
        status = 1;
    }
    if (status == 0 && prog.delivered != o.events) {
        fprintf(stderr, "prefill: %" PRId64 " of %" PRId64 " messages delivered\n", prog.delivered,
                o.events);
        status = 1;
    }

    int dropped = 0;
    for (int32_t p = 0; p < np && status == 0; p++) {
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, o.topic, p, &lo[p], &hi[p], 10000);
        if (e) {
            fprintf(stderr, "prefill: watermarks of partition %d: %s\n", (int)p,
                    rd_kafka_err2str(e));
            status = 1;
        } else if (lo[p] > 0 || hi[p] != prog.end[p]) {
            dropped++;
        }
    }
    if (status == 0 && dropped) {
        fprintf(stderr,
                "prefill: the broker no longer holds everything in %d partitions (the mock keeps "
                "only 5 MiB per partition): use fewer events or more partitions\n",
                dropped);
        status = 1;
    }

    printf("{\"events\":%" PRId64 ",\"delivered\":%" PRId64 ",\"bytes\":%" PRId64
           ",\"seconds\":%.6f,\"rate\":%.1f,\"partitions\":%d,\"orgs\":%" PRId64
           ",\"seed\":%" PRId64 ",\"complete\":%s,",
           o.events, prog.delivered, bytes, seconds, (double)prog.delivered / seconds, (int)np,
           o.orgs, o.seed, status == 0 ? "true" : "false");
    print_array("per_partition_counts", prog.count, np, false);
    print_array("per_partition_end_offsets", prog.end, np, false);
    print_array("low_watermarks", lo, np, false);
    print_array("high_watermarks", hi, np, true);
    printf("}\n");
    fflush(stdout);

    free(prog.count);
    free(prog.end);
    free(lo);
    free(hi);
    rd_kafka_destroy(rk);
    return status;
}
