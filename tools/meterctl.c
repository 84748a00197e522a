/*
 * meterctl — the operator's command-line companion to meterd: publish events written as JSON
 * lines, tail the output topics as JSON, show an organization's live state through meterd's
 * loopback admin endpoint, and replay dead letters to the input topic.
 *
 *     meterctl publish [--topic T] [--timeout-ms T] [FILE|-]
 *     meterctl tail    [--topic T]... [--from-beginning] [--until-end] [--count N]
 *                      [--timeout-ms T] [--with-meta]
 *     meterctl org     ORG [--admin URL] [--pretty] [--timeout-ms T]
 *     meterctl replay  [--dlq T] [--to T] [--error NAME]... [--from-offsets P:O,...]
 *                      [--dry-run] [--timeout-ms T]
 *
 * The Kafka subcommands also take --brokers (default $METERD_BROKERS, else localhost:9092) and
 * -X key=value, handed to librdkafka after meterctl's own defaults so that it can override any
 * of them. docs/meterctl.md is the user's guide.
 *
 * DESIGN: one file, one function per subcommand (cmd_*) that parses its own options with
 * getopt_long and returns the exit status; only main returns it. The wire rules are
 * proto/README.md's and are not re-checked here: publish only translates JSON to msgpack
 * (refusing floats, which msgpack could carry but the contract forbids, so that a typo fails at
 * the operator's terminal rather than as a dead letter), and replay moves bytes without decoding
 * them. Producers partition with murmur2_random, the contract's partitioner, so an event lands
 * where the platform's own producers would put it. tail pre-scans every value before msgpack-c
 * sees it, so that a hostile count in a header never makes msgpack-c allocate for elements the
 * bytes cannot hold. Consumers only assign partitions: no group membership, nothing committed.
 *
 * Threading: the main thread does everything. librdkafka's threads call only log_cb (one
 * fprintf per line); delivery reports are served on the main thread by rd_kafka_poll and
 * rd_kafka_flush. tail blocks SIGINT and SIGTERM before librdkafka starts its threads and checks
 * for them between polls, so that Ctrl-C ends it cleanly, everything freed.
 *
 * Exit status: 0 success; 1 the operation failed; 2 usage error, and for `org` an admin
 * endpoint that cannot be reached.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <msgpack.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_FAIL          1
#define EXIT_USAGE         2
#define MAX_PROPS          64         /* -X options */
#define MAX_TOPICS         16         /* tail --topic */
#define MAX_ERROR_FILTERS  32         /* replay --error */
#define MAX_DEPTH          64         /* msgpack nesting tail decodes */
#define MAX_BODY           (16 << 20) /* largest admin answer read */
#define DEFAULT_BROKERS    "localhost:9092"
#define DEFAULT_ADMIN      "http://127.0.0.1:9188"
#define DEFAULT_TIMEOUT_MS 30000

/* ---------- small helpers ---------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses a whole decimal integer in [min, max]: no sign, no spaces, no trailing text. */
__attribute__((warn_unused_result)) static int parse_ll(const char *s, long long min, long long max,
                                                        long long *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Parses len bytes (not NUL-terminated, e.g. a Kafka header) as a decimal in [0, max]. */
__attribute__((warn_unused_result)) static int parse_ll_n(const void *p, size_t len, long long max,
                                                          long long *out)
{
    char buf[24];
    if (!p || len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return parse_ll(buf, 0, max, out);
}

/* Copies a header value (or "" when absent) into buf as a C string, truncated to fit. */
static void copy_header(const rd_kafka_headers_t *h, const char *name, char *buf, size_t cap)
{
    const void *v = NULL;
    size_t n = 0;
    buf[0] = '\0';
    if (!h || rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || !v)
        return;
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
}

/* Writes len bytes for a person: printable ASCII as is, anything else as \xNN. */
static void print_escaped(FILE *f, const void *p, size_t len)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < len; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
            fputc(s[i], f);
        else
            fprintf(f, "\\x%02x", s[i]);
    }
}

/* Returns the length (1..4) of the valid UTF-8 sequence that starts p (n > 0 bytes left), or
 * 0 when none does: overlong forms, surrogates and code points above U+10FFFF are invalid, as
 * in proto/README.md. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char b = p[0];
    size_t len;
    uint32_t cp, min;
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf) {
        len = 2, cp = b & 0x1fu, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        len = 3, cp = b & 0x0fu, min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4, cp = b & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string of len bytes; bytes that are not valid UTF-8 become U+FFFD (JSON has no other
 * way to carry them). Returns a new reference, or NULL when out of memory. */
static json_t *json_text(const void *p, size_t len)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(s + i, len - i);
        if (k == 0)
            break;
        i += k;
    }
    if (i == len)
        return json_stringn(p ? p : "", len);
    char *fixed = malloc(len * 3 + 1);
    if (!fixed)
        return NULL;
    size_t at = 0;
    for (i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        if (k == 0) {
            memcpy(fixed + at, "\xef\xbf\xbd", 3);
            at += 3;
            i++;
        } else {
            memcpy(fixed + at, s + i, k);
            at += k;
            i += k;
        }
    }
    json_t *j = json_stringn(fixed, at);
    free(fixed);
    return j;
}

/* A JSON string holding len bytes in standard base64 with padding. Returns a new reference, or
 * NULL when out of memory. */
static json_t *json_base64(const void *p, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        out[at++] = alphabet[(v >> 18) & 63];
        out[at++] = alphabet[(v >> 12) & 63];
        out[at++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[at++] = i + 2 < len ? alphabet[v & 63] : '=';
    }
    json_t *j = json_stringn(out, at);
    free(out);
    return j;
}

/* Writes one line to stdout and flushes it, so that a pipe sees each message as it comes.
 * Returns 0, or -1 with errno set (EPIPE when the reader went away). */
__attribute__((warn_unused_result)) static int emit_line(const char *s)
{
    if (fputs(s, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        return -1;
    return 0;
}

/* ---------- command-line scaffolding ---------- */

typedef struct {
    const char *brokers;
    const char *props[MAX_PROPS]; /* "key=value" from -X: pointers into argv */
    size_t n_props;
} kafka_opts_t;

/* clang-format off */
#define KAFKA_LONGOPTS                          \
    {"brokers", required_argument, NULL, 'b'},  \
    {"property", required_argument, NULL, 'X'}, \
    {"help", no_argument, NULL, 'h'}
/* clang-format on */

#define KAFKA_USAGE                                                                                \
    "  --brokers HOST:PORT,...  Kafka bootstrap servers (default $METERD_BROKERS, else\n"          \
    "                           " DEFAULT_BROKERS ")\n"                                            \
    "  -X, --property KEY=VALUE librdkafka property, after meterctl's defaults (repeatable)\n"     \
    "  --help                   this text\n"

static void kafka_opts_init(kafka_opts_t *k)
{
    const char *env = getenv("METERD_BROKERS");
    *k = (kafka_opts_t){.brokers = env && *env ? env : DEFAULT_BROKERS};
}

static int usage_error(const char *cmd, const char *what, const char *arg)
{
    fprintf(stderr, "meterctl %s: %s%s%s (see meterctl %s --help)\n", cmd, what, arg ? " " : "",
            arg ? arg : "", cmd);
    return EXIT_USAGE;
}

/* Handles the options every subcommand shares and getopt's complaints. Returns -1 when c was
 * handled and parsing goes on, or the exit status to return now (0 after --help). k is NULL
 * for a subcommand without Kafka. */
static int common_opt(const char *cmd, int c, char **argv, kafka_opts_t *k, const char *usage)
{
    switch (c) {
    case 'h':
        fputs(usage, stdout);
        return 0;
    case 'b':
        if (!k)
            break;
        if (!*optarg)
            return usage_error(cmd, "empty --brokers", NULL);
        k->brokers = optarg;
        return -1;
    case 'X':
        if (!k)
            break;
        if (optarg[0] == '=' || !strchr(optarg, '='))
            return usage_error(cmd, "-X wants KEY=VALUE, not", optarg);
        if (k->n_props == MAX_PROPS)
            return usage_error(cmd, "too many -X options", NULL);
        k->props[k->n_props++] = optarg;
        return -1;
    case ':':
        return usage_error(cmd, "missing value for", argv[optind - 1]);
    default:
        break;
    }
    if (optopt) {
        char opt[3] = {'-', (char)optopt, '\0'};
        return usage_error(cmd, "unknown option", opt);
    }
    return usage_error(cmd, "unknown option", argv[optind - 1]);
}

/* --timeout-ms: 1 ms to one day. */
__attribute__((warn_unused_result)) static int parse_timeout(const char *s, int *out)
{
    long long v;
    if (parse_ll(s, 1, 86400000, &v) < 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* ---------- Kafka handles ---------- */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    fprintf(stderr, "meterctl: librdkafka %s: %s\n", fac, buf);
}

/* Errors are logged by log_cb already (librdkafka logs them before raising them): only a fatal
 * one, which ends the client, needs a line of its own. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    (void)reason;
    if (err != RD_KAFKA_RESP_ERR__FATAL)
        return;
    char why[512];
    rd_kafka_fatal_error(rk, why, sizeof(why));
    fprintf(stderr, "meterctl: librdkafka fatal error: %s\n", why);
}

typedef void (*dr_cb_t)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* Creates a producer (dr set) or an assign-only consumer (dr NULL) with meterctl's defaults
 * (name/value pairs, NULL-terminated) and then the -X properties. Returns 0 with *out set (the
 * caller destroys it), EXIT_USAGE for a -X property librdkafka refuses, EXIT_FAIL otherwise;
 * either error is printed. */
__attribute__((warn_unused_result)) static int kafka_new(const char *cmd, const kafka_opts_t *k,
                                                         const char *const *defaults, dr_cb_t dr,
                                                         void *opaque, rd_kafka_t **out)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", k->brokers, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "meterctl", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "meterctl %s: librdkafka configuration: %s\n", cmd, errstr);
        rd_kafka_conf_destroy(conf);
        return EXIT_FAIL;
    }
    for (size_t i = 0; defaults[i]; i += 2) {
        if (rd_kafka_conf_set(conf, defaults[i], defaults[i + 1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "meterctl %s: librdkafka configuration: %s\n", cmd, errstr);
            rd_kafka_conf_destroy(conf);
            return EXIT_FAIL;
        }
    }
    for (size_t i = 0; i < k->n_props; i++) {
        const char *eq = strchr(k->props[i], '=');
        char key[256];
        size_t kl = (size_t)(eq - k->props[i]);
        if (kl >= sizeof(key)) {
            rd_kafka_conf_destroy(conf);
            return usage_error(cmd, "-X key too long:", k->props[i]);
        }
        memcpy(key, k->props[i], kl);
        key[kl] = '\0';
        if (rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return usage_error(cmd, "-X:", errstr);
        }
    }
    if (dr)
        rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_conf_set_opaque(conf, opaque);
    rd_kafka_t *rk =
        rd_kafka_new(dr ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "meterctl %s: cannot create the Kafka client: %s\n", cmd, errstr);
        rd_kafka_conf_destroy(conf);
        return EXIT_FAIL;
    }
    /* conf is now owned by rk. */
    *out = rk;
    return 0;
}

/* Defaults of every consumer: assignment only (the group id is never joined, nothing is
 * committed), an end-of-partition event to know when a partition is read, short fetch waits,
 * and an error rather than a silent jump when a start offset is gone. */
static const char *const consumer_defaults[] = {"group.id",
                                                "meterctl",
                                                "enable.auto.commit",
                                                "false",
                                                "enable.auto.offset.store",
                                                "false",
                                                "enable.partition.eof",
                                                "true",
                                                "auto.offset.reset",
                                                "error",
                                                "fetch.wait.max.ms",
                                                "100",
                                                NULL};

/* Producer defaults: the contract's murmur2 partitioner, idempotence (no duplicates or
 * reordering on retries), and small batches. message.timeout.ms is added by the caller. */
#define PRODUCER_DEFAULTS                                                                          \
    "partitioner", "murmur2_random", "enable.idempotence", "true", "linger.ms", "5"

/* Waits for every queued message's delivery report, about timeout_ms; what is still queued
 * then is purged, so that its report (an error) arrives before the handle is destroyed. */
static void producer_drain(rd_kafka_t *rk, int timeout_ms)
{
    /* A little longer than message.timeout.ms (checked once a second), so that a message that
     * times out says so rather than "purged". */
    if (rd_kafka_flush(rk, timeout_ms + 1500) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    (void)rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    (void)rd_kafka_flush(rk, 5000);
}

/* True for consumer errors that retrying cannot cure. */
static bool consumer_error_is_fatal(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
           err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
           err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED || err == RD_KAFKA_RESP_ERR__FATAL;
}

/* ---------- partitions being read (tail, replay) ---------- */

typedef struct {
    const char *topic; /* not owned: argv or a literal */
    int32_t partition;
    int64_t low;  /* earliest offset when the command started */
    int64_t end;  /* high watermark when the command started */
    int64_t next; /* offset after the last message read (the start before any) */
    bool done;    /* read up to end */
} part_t;

typedef struct {
    part_t *v;
    size_t n;
} parts_t;

/* Appends every partition of topic with its watermarks. Returns 0, or -1 (printed) when the
 * topic does not exist or the cluster does not answer within timeout_ms. */
__attribute__((warn_unused_result)) static int
parts_add_topic(rd_kafka_t *rk, const char *cmd, const char *topic, int timeout_ms, parts_t *ps)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        fprintf(stderr, "meterctl %s: topic %s: %s\n", cmd, topic,
                rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    for (;;) {
        int left = (int)(deadline - now_ms());
        err = rd_kafka_metadata(rk, 0, rkt, &md, left > 0 ? left : 1);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
            /* A topic being created has no leaders for a moment: ask again. */
            if (err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE || now_ms() >= deadline)
                break;
            rd_kafka_metadata_destroy(md);
            md = NULL;
        } else if (now_ms() >= deadline) {
            break;
        }
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    int rc = 0;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "meterctl %s: cannot read the metadata of topic %s: %s\n", cmd, topic,
                rd_kafka_err2str(err));
        rc = -1;
    } else if (md->topics[0].partition_cnt == 0) {
        fprintf(stderr, "meterctl %s: topic %s has no partitions\n", cmd, topic);
        rc = -1;
    }
    int count = rc == 0 ? md->topics[0].partition_cnt : 0;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (rc < 0)
        return -1;
    part_t *grown = realloc(ps->v, (ps->n + (size_t)count) * sizeof(*grown));
    if (!grown) {
        fprintf(stderr, "meterctl %s: out of memory\n", cmd);
        return -1;
    }
    ps->v = grown;
    for (int32_t p = 0; p < count; p++) {
        int64_t lo = 0, hi = 0;
        int left = (int)(deadline - now_ms());
        err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, left > 1000 ? left : 1000);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "meterctl %s: cannot read the offsets of %s [%d]: %s\n", cmd, topic,
                    (int)p, rd_kafka_err2str(err));
            return -1;
        }
        ps->v[ps->n++] = (part_t){.topic = topic, .partition = p, .low = lo, .end = hi, .next = lo};
    }
    return 0;
}

static part_t *parts_find(parts_t *ps, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < ps->n; i++)
        if (ps->v[i].partition == partition && strcmp(ps->v[i].topic, topic) == 0)
            return &ps->v[i];
    return NULL;
}

static bool parts_all_done(const parts_t *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!ps->v[i].done)
            return false;
    return true;
}

/* Notes a message or an end-of-partition event. */
static void parts_note(parts_t *ps, const rd_kafka_message_t *m)
{
    part_t *p = parts_find(ps, rd_kafka_topic_name(m->rkt), m->partition);
    if (!p)
        return;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        /* At the end: past gaps (compaction, transaction markers) up to the start's end, but
         * not past messages that arrived since, which were not read. */
        if (!p->done && m->offset > p->next)
            p->next = m->offset < p->end ? m->offset : p->end;
        p->done = true;
        return;
    }
    p->next = m->offset + 1;
    if (p->next >= p->end)
        p->done = true;
}

/* Assigns the partitions not yet done, each at its next offset (or at its end: from_end).
 * Returns 0, or -1 (printed). */
__attribute__((warn_unused_result)) static int parts_assign(rd_kafka_t *rk, const char *cmd,
                                                            const parts_t *ps, bool from_end)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)ps->n);
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->v[i].done)
            continue;
        rd_kafka_topic_partition_list_add(l, ps->v[i].topic, ps->v[i].partition)->offset =
            from_end ? RD_KAFKA_OFFSET_END : ps->v[i].next;
    }
    rd_kafka_resp_err_t err = l->cnt ? rd_kafka_assign(rk, l) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(l);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "meterctl %s: cannot assign partitions: %s\n", cmd, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* ---------- msgpack to JSON (tail) ---------- */

/* Reads an n-byte big-endian length at p. */
static uint64_t read_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Checks that buf holds exactly one msgpack object, that every declared length and count fits
 * in the bytes that follow (each element takes at least one), and that containers nest at most
 * MAX_DEPTH deep — so that msgpack-c, which trusts counts, never allocates for elements that are
 * not there. Returns 0, or -1 with *why set. */
__attribute__((warn_unused_result)) static int msgpack_prescan(const unsigned char *p, size_t len,
                                                               const char **why)
{
    uint64_t left[MAX_DEPTH + 1]; /* objects still to read at each depth */
    int depth = 0;
    size_t pos = 0;
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        left[depth]--;
        if (pos >= len) {
            *why = len ? "truncated msgpack" : "empty value";
            return -1;
        }
        unsigned char b = p[pos++];
        size_t lenbytes = 0; /* bytes of a length or count that follow b */
        uint64_t payload = 0, children = 0;
        int kind = 0; /* 0 scalar, 1 payload length, 2 array count, 3 map count */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b <= 0x8f) {
            children = 2u * (b & 0x0fu);
        } else if (b <= 0x9f) {
            children = b & 0x0fu;
        } else if (b <= 0xbf) {
            payload = b & 0x1fu;
        } else if (b == 0xc1) {
            *why = "reserved msgpack byte 0xc1";
            return -1;
        } else if (b >= 0xc4 && b <= 0xc6) { /* bin 8/16/32 */
            lenbytes = (size_t)1 << (b - 0xc4), kind = 1;
        } else if (b >= 0xc7 && b <= 0xc9) { /* ext 8/16/32: length, then a type byte */
            lenbytes = (size_t)1 << (b - 0xc7), kind = 1, payload = 1;
        } else if (b == 0xca || b == 0xcb) {
            payload = b == 0xca ? 4 : 8;
        } else if (b >= 0xcc && b <= 0xd3) { /* (u)int 8..64 */
            payload = (uint64_t)1 << ((b - 0xcc) & 3);
        } else if (b >= 0xd4 && b <= 0xd8) { /* fixext 1..16 */
            payload = 1 + ((uint64_t)1 << (b - 0xd4));
        } else if (b >= 0xd9 && b <= 0xdb) { /* str 8/16/32 */
            lenbytes = (size_t)1 << (b - 0xd9), kind = 1;
        } else if (b == 0xdc || b == 0xdd) {
            lenbytes = b == 0xdc ? 2 : 4, kind = 2;
        } else { /* 0xde, 0xdf */
            lenbytes = b == 0xde ? 2 : 4, kind = 3;
        }
        if (lenbytes) {
            if (len - pos < lenbytes) {
                *why = "truncated msgpack";
                return -1;
            }
            uint64_t n = read_be(p + pos, lenbytes);
            pos += lenbytes;
            if (kind == 1)
                payload += n;
            else
                children = kind == 3 ? 2 * n : n;
        }
        if (payload > len - pos) {
            *why = "truncated msgpack";
            return -1;
        }
        pos += (size_t)payload;
        if (children) {
            if (children > len - pos) {
                *why = "a msgpack count beyond the value's bytes";
                return -1;
            }
            if (depth + 1 > MAX_DEPTH) {
                *why = "msgpack nested too deep";
                return -1;
            }
            left[++depth] = children;
        }
    }
    if (pos != len) {
        *why = "trailing bytes after the msgpack object";
        return -1;
    }
    return 0;
}

/* Converts a msgpack object: ints stay ints (a uint64 above INT64_MAX becomes a decimal
 * string, which JSON numbers here cannot hold), floats become numbers (NaN and infinities
 * null), str a string (invalid UTF-8 replaced), bin and ext the base64 of their bytes, map keys
 * that are not strings their JSON text. Returns a new reference, or NULL when out of memory. */
static json_t *msgpack_to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 <= (uint64_t)INT64_MAX)
            return json_integer((json_int_t)o->via.u64);
        char digits[24];
        snprintf(digits, sizeof(digits), "%" PRIu64, o->via.u64);
        return json_string(digits);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return isfinite(o->via.f64) ? json_real(o->via.f64) : json_null();
    case MSGPACK_OBJECT_STR:
        return json_text(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return json_base64(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT:
        return json_base64(o->via.ext.ptr, o->via.ext.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            json_t *e = msgpack_to_json(&o->via.array.ptr[i]);
            if (!e || json_array_append_new(a, e) != 0) {
                json_decref(a);
                a = NULL;
            }
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            json_t *k = msgpack_to_json(&kv->key);
            char *text = NULL;
            if (k && !json_is_string(k))
                text = json_dumps(k, JSON_ENCODE_ANY | JSON_COMPACT);
            json_t *v = k && (text || json_is_string(k)) ? msgpack_to_json(&kv->val) : NULL;
            int rc = -1;
            if (v && text)
                rc = json_object_set_new(m, text, v);
            else if (v)
                rc = json_object_setn_new(m, json_string_value(k), json_string_length(k), v);
            free(text);
            json_decref(k);
            if (rc != 0) { /* the setter consumed v even when it failed */
                json_decref(m);
                m = NULL;
            }
        }
        return m;
    }
    default:
        return NULL;
    }
}

/* Decodes one msgpack value to JSON. Returns a new reference, or NULL with *why set. */
static json_t *decode_value(const void *buf, size_t len, const char **why)
{
    if (msgpack_prescan(buf, len, why) < 0)
        return NULL;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096)) {
        *why = "out of memory";
        return NULL;
    }
    msgpack_object obj;
    size_t off = 0;
    json_t *j = NULL;
    if (msgpack_unpack(buf, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS) {
        j = msgpack_to_json(&obj);
        if (!j)
            *why = "out of memory";
    } else {
        *why = "not msgpack";
    }
    msgpack_zone_destroy(&zone);
    return j;
}

/* ---------- JSON to msgpack (publish) ---------- */

/* Appends ".key" or "[i]" to the path of the value being packed (truncated if long). */
static size_t path_push(char *path, size_t cap, size_t at, const char *key, size_t klen,
                        size_t index)
{
    int n = key ? snprintf(path + at, cap - at, "%s%.*s", at ? "." : "", (int)klen, key)
                : snprintf(path + at, cap - at, "[%zu]", index);
    size_t end = at + (n > 0 ? (size_t)n : 0);
    return end < cap ? end : cap - 1;
}

/* Packs v as msgpack: object → map (str keys, in the JSON's order), array → array, integer →
 * the smallest int form, string → str, true/false → bool, null → nil. A float is refused with
 * the field's path in err. Returns 0 or -1 (err written). */
__attribute__((warn_unused_result)) static int pack_json(msgpack_packer *pk, json_t *v, char *path,
                                                         size_t cap, size_t at, char *err,
                                                         size_t errlen)
{
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *val;
        rc = msgpack_pack_map(pk, json_object_size(v));
        json_object_keylen_foreach(v, key, klen, val)
        {
            if (rc != 0)
                break;
            rc = msgpack_pack_str_with_body(pk, key, klen);
            size_t end = path_push(path, cap, at, key, klen, 0);
            if (rc == 0 && pack_json(pk, val, path, cap, end, err, errlen) < 0)
                return -1;
            path[at] = '\0';
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *val;
        rc = msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, val)
        {
            if (rc != 0)
                break;
            size_t end = path_push(path, cap, at, NULL, 0, i);
            if (pack_json(pk, val, path, cap, end, err, errlen) < 0)
                return -1;
            path[at] = '\0';
        }
        break;
    }
    case JSON_STRING:
        rc = msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        rc = msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL: {
        char num[40];
        snprintf(num, sizeof(num), "%.17g", json_real_value(v));
        snprintf(err, errlen,
                 "\"%s\" is a float (%s%s): the wire contract has no floats, write an integer",
                 at ? path : "(the event)", num, strpbrk(num, ".en") ? "" : ".0");
        return -1;
    }
    case JSON_TRUE:
        rc = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        rc = msgpack_pack_nil(pk);
        break;
    }
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---------- publish ---------- */

static const char publish_usage[] =
    "usage: meterctl publish [--topic TOPIC] [--timeout-ms T] [options] [FILE|-]\n"
    "\n"
    "Reads events as JSON lines (one object per line; blank lines are skipped) from FILE or\n"
    "standard input, encodes each as a msgpack map, keys it by its \"org\" and produces it\n"
    "with the murmur2 partitioner; waits for every delivery. JSON integers become msgpack\n"
    "integers, strings str, true/false bool, arrays arrays, null nil; floats are refused.\n"
    "A refused line is reported and skipped; the exit status is then 1.\n"
    "\n"
    "  --topic TOPIC            topic to produce to (default usage.events)\n"
    "  --timeout-ms T           longest wait for a delivery (default 30000)\n" KAFKA_USAGE;

typedef struct {
    size_t delivered, failed;
} publish_tally_t;

static void publish_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    publish_tally_t *t = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        t->delivered++;
        return;
    }
    t->failed++;
    fprintf(stderr, "meterctl publish: line %zu: delivery to %s failed: %s\n",
            (size_t)(uintptr_t)m->_private, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

/* Encodes one line into sbuf and finds its key. Returns 0, or -1 with the reason in err. */
__attribute__((warn_unused_result)) static int encode_line(const char *line, size_t len,
                                                           msgpack_sbuffer *sbuf, json_t **event,
                                                           char *err, size_t errlen)
{
    json_error_t je;
    *event = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!*event) {
        snprintf(err, errlen, "invalid JSON at column %d: %s", je.column, je.text);
        return -1;
    }
    if (!json_is_object(*event)) {
        snprintf(err, errlen, "not a JSON object (an event is one object per line)");
        return -1;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    char path[256] = "";
    return pack_json(&pk, *event, path, sizeof(path), 0, err, errlen);
}

static int cmd_publish(int argc, char **argv)
{
    static const struct option longopts[] = {{"topic", required_argument, NULL, 't'},
                                             {"timeout-ms", required_argument, NULL, 'T'},
                                             KAFKA_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "publish", *topic = "usage.events";
    int timeout_ms = DEFAULT_TIMEOUT_MS;
    kafka_opts_t k;
    kafka_opts_init(&k);
    int c;
    while ((c = getopt_long(argc, argv, ":hX:", longopts, NULL)) != -1) {
        if (c == 't' && *optarg) {
            topic = optarg;
        } else if (c == 'T') {
            if (parse_timeout(optarg, &timeout_ms) < 0)
                return usage_error(cmd, "bad --timeout-ms (want 1..86400000):", optarg);
        } else {
            int rc = c == 't' ? usage_error(cmd, "empty --topic", NULL)
                              : common_opt(cmd, c, argv, &k, publish_usage);
            if (rc >= 0)
                return rc;
        }
    }
    if (argc - optind > 1)
        return usage_error(cmd, "more than one input file:", argv[optind + 1]);
    const char *path = optind < argc ? argv[optind] : "-";
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        fprintf(stderr, "meterctl publish: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_FAIL;
    }

    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
    const char *const defaults[] = {PRODUCER_DEFAULTS, "message.timeout.ms", timeout, NULL};
    publish_tally_t tally = {0};
    rd_kafka_t *rk = NULL;
    int rc = kafka_new(cmd, &k, defaults, publish_dr, &tally, &rk);
    if (rc != 0) {
        if (in != stdin)
            fclose(in);
        return rc;
    }

    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    char *line = NULL;
    size_t cap = 0, lineno = 0, events = 0, refused = 0, first_refused = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, in)) != -1) {
        lineno++;
        size_t len = (size_t)got;
        const char *p = line;
        while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
            len--;
        if (lineno == 1 && len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
            p += 3, len -= 3; /* a byte-order mark */
        if (strspn(p, " \t") >= len)
            continue;
        events++;
        char err[512];
        json_t *event = NULL;
        msgpack_sbuffer_clear(&sbuf);
        if (encode_line(p, len, &sbuf, &event, err, sizeof(err)) < 0) {
            fprintf(stderr, "meterctl publish: line %zu: %s\n", lineno, err);
            json_decref(event);
            if (refused++ == 0)
                first_refused = lineno;
            continue;
        }
        const json_t *org = json_object_get(event, "org");
        const char *key = json_is_string(org) ? json_string_value(org) : NULL;
        size_t key_len = key ? json_string_length(org) : 0;
        if (!key)
            fprintf(stderr,
                    "meterctl publish: line %zu: no string \"org\": produced without a key "
                    "(meterd will dead-letter it)\n",
                    lineno);
        rd_kafka_resp_err_t perr;
        for (;;) {
            perr = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)key, key_len),
                RD_KAFKA_V_VALUE(sbuf.data, sbuf.size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)lineno), RD_KAFKA_V_END);
            if (perr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 100); /* deliveries free room */
        }
        json_decref(event);
        if (perr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "meterctl publish: line %zu: cannot produce to %s: %s\n", lineno, topic,
                    rd_kafka_err2str(perr));
            tally.failed++;
        }
        rd_kafka_poll(rk, 0);
    }
    int status = 0;
    if (ferror(in)) {
        fprintf(stderr, "meterctl publish: cannot read %s: %s\n", path, strerror(errno));
        status = EXIT_FAIL;
    }
    free(line);
    msgpack_sbuffer_destroy(&sbuf);
    if (in != stdin)
        fclose(in);
    producer_drain(rk, timeout_ms);
    rd_kafka_destroy(rk);

    printf("published %zu of %zu events to %s\n", tally.delivered, events, topic);
    if (refused) {
        fprintf(stderr, "meterctl publish: %zu of %zu events refused (first: line %zu)%s\n",
                refused, events, first_refused, tally.failed ? ", and some deliveries failed" : "");
        status = EXIT_FAIL;
    } else if (tally.failed) {
        fprintf(stderr, "meterctl publish: %zu of %zu events not delivered\n", tally.failed,
                events);
        status = EXIT_FAIL;
    }
    return status;
}

/* ---------- tail ---------- */

static const char tail_usage[] =
    "usage: meterctl tail [--topic TOPIC]... [--from-beginning] [--until-end] [--count N]\n"
    "                     [--timeout-ms T] [--with-meta] [options]\n"
    "\n"
    "Reads every partition of the topics (no consumer group, nothing committed) and prints\n"
    "each msgpack message as one JSON line, until Ctrl-C, N messages, the end or T ms.\n"
    "\n"
    "  --topic TOPIC            topic to read, repeatable (default meter.decisions)\n"
    "  --from-beginning         start at the earliest offset (default: only new messages)\n"
    "  --until-end              stop at the end the partitions had when tail started\n"
    "  --count N                stop after N messages; fewer by the timeout is an error\n"
    "  --timeout-ms T           stop after T ms in all (default: no limit)\n"
    "  --with-meta              print {\"topic\",\"partition\",\"offset\",\"key\",[\"headers\"],\n"
    "                           \"value\"} instead of the value alone\n" KAFKA_USAGE;

/* Prints one message as a JSON line. Returns 0, or -1 with errno set when stdout fails. */
__attribute__((warn_unused_result)) static int print_message(const rd_kafka_message_t *m,
                                                             bool with_meta)
{
    const char *why = NULL;
    json_t *value = decode_value(m->payload, m->len, &why);
    json_t *out = value;
    if (!with_meta && !value) {
        fprintf(stderr, "meterctl tail: %s [%d] offset %" PRId64 ": %s; skipped\n",
                rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, why);
        return 0;
    }
    if (with_meta) {
        out = json_object();
        json_t *hdrs = NULL;
        rd_kafka_headers_t *h = NULL;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h) {
            hdrs = json_object();
            const char *name;
            const void *v;
            size_t n;
            for (size_t i = 0;
                 hdrs && rd_kafka_header_get_all(h, i, &name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR;
                 i++)
                json_object_set_new(hdrs, name, v ? json_text(v, n) : json_null());
        }
        json_object_set_new(out, "topic", json_string(rd_kafka_topic_name(m->rkt)));
        json_object_set_new(out, "partition", json_integer(m->partition));
        json_object_set_new(out, "offset", json_integer(m->offset));
        json_object_set_new(out, "key", m->key ? json_text(m->key, m->key_len) : json_null());
        if (hdrs)
            json_object_set_new(out, "headers", hdrs);
        json_object_set_new(out, "value", value ? value : json_null());
        if (!value) {
            json_object_set_new(out, "value_error", json_string(why));
            json_object_set_new(out, "value_base64", json_base64(m->payload, m->len));
        }
    }
    char *s = out ? json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(out);
    if (!s) {
        fprintf(stderr, "meterctl tail: out of memory\n");
        errno = ENOMEM;
        return -1;
    }
    int rc = emit_line(s);
    free(s);
    return rc;
}

static int cmd_tail(int argc, char **argv)
{
    static const struct option longopts[] = {{"topic", required_argument, NULL, 't'},
                                             {"from-beginning", no_argument, NULL, 'B'},
                                             {"until-end", no_argument, NULL, 'E'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"timeout-ms", required_argument, NULL, 'T'},
                                             {"with-meta", no_argument, NULL, 'M'},
                                             KAFKA_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "tail";
    const char *topics[MAX_TOPICS];
    size_t n_topics = 0;
    bool from_beginning = false, until_end = false, with_meta = false;
    long long count = 0;
    int timeout_ms = 0;
    kafka_opts_t k;
    kafka_opts_init(&k);
    int c;
    while ((c = getopt_long(argc, argv, ":hX:", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!*optarg)
                return usage_error(cmd, "empty --topic", NULL);
            if (n_topics == MAX_TOPICS)
                return usage_error(cmd, "too many --topic options", NULL);
            topics[n_topics++] = optarg;
            break;
        case 'B':
            from_beginning = true;
            break;
        case 'E':
            until_end = true;
            break;
        case 'M':
            with_meta = true;
            break;
        case 'n':
            if (parse_ll(optarg, 1, LLONG_MAX, &count) < 0)
                return usage_error(cmd, "bad --count (want a positive integer):", optarg);
            break;
        case 'T':
            if (parse_timeout(optarg, &timeout_ms) < 0)
                return usage_error(cmd, "bad --timeout-ms (want 1..86400000):", optarg);
            break;
        default: {
            int rc = common_opt(cmd, c, argv, &k, tail_usage);
            if (rc >= 0)
                return rc;
        }
        }
    }
    if (optind < argc)
        return usage_error(cmd, "unexpected argument", argv[optind]);
    if (n_topics == 0)
        topics[n_topics++] = "meter.decisions";

    /* Before librdkafka starts a thread, so that every thread inherits the mask and only the
     * loop below sees the signals. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    rd_kafka_t *rk = NULL;
    int rc = kafka_new(cmd, &k, consumer_defaults, NULL, NULL, &rk);
    if (rc != 0)
        return rc;
    parts_t ps = {0};
    int status = 0;
    int setup_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    int64_t deadline = timeout_ms ? now_ms() + timeout_ms : 0;
    for (size_t i = 0; i < n_topics && status == 0; i++)
        if (parts_add_topic(rk, cmd, topics[i], setup_ms, &ps) < 0)
            status = EXIT_FAIL;
    if (status == 0 && parts_assign(rk, cmd, &ps, !from_beginning) < 0)
        status = EXIT_FAIL;
    /* For --until-end: what there is to read. Without --from-beginning, nothing. */
    for (size_t i = 0; i < ps.n && status == 0; i++)
        ps.v[i].done = !from_beginning || ps.v[i].next >= ps.v[i].end;

    long long printed = 0;
    struct timespec zero = {0, 0};
    while (status == 0 && (count == 0 || printed < count)) {
        if (until_end && parts_all_done(&ps))
            break;
        if (sigtimedwait(&stop, NULL, &zero) > 0)
            break;
        int wait = 200;
        if (deadline) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                if (count)
                    fprintf(stderr, "meterctl tail: %lld of %lld messages within %d ms\n", printed,
                            count, timeout_ms);
                status = count ? EXIT_FAIL : 0;
                break;
            }
            if (left < wait)
                wait = (int)left;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, wait);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            parts_note(&ps, m);
        } else if (m->err) {
            fprintf(stderr, "meterctl tail: %s%s%s\n", m->rkt ? rd_kafka_topic_name(m->rkt) : "",
                    m->rkt ? ": " : "", rd_kafka_message_errstr(m));
            if (consumer_error_is_fatal(m->err))
                status = EXIT_FAIL;
        } else {
            parts_note(&ps, m);
            printed++;
            if (print_message(m, with_meta) < 0) {
                if (errno != EPIPE) { /* a reader that went away (| head) is not a failure */
                    fprintf(stderr, "meterctl tail: cannot write to standard output: %s\n",
                            strerror(errno));
                    status = EXIT_FAIL;
                }
                rd_kafka_message_destroy(m);
                break;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(ps.v);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return status;
}

/* ---------- org ---------- */

static const char org_usage[] =
    "usage: meterctl org ORG [--admin URL] [--pretty] [--timeout-ms T]\n"
    "\n"
    "Shows the live state of one organization as the meterd instance that owns its partition\n"
    "holds it: GET URL/admin/orgs/ORG. Exit status 1 when that instance does not know ORG\n"
    "(it may belong to another instance), 2 when the endpoint cannot be reached.\n"
    "\n"
    "  --admin URL              meterd's admin endpoint, http.admin_listen (default\n"
    "                           $METERD_ADMIN, else " DEFAULT_ADMIN ")\n"
    "  --pretty                 indented JSON (default: one line)\n"
    "  --timeout-ms T           longest wait for the answer (default 5000)\n"
    "  --help                   this text\n";

typedef struct {
    char *data;
    size_t len;
    bool too_big;
} body_t;

static size_t body_write(char *p, size_t size, size_t n, void *arg)
{
    body_t *b = arg;
    size_t add = size * n;
    if (b->len + add > MAX_BODY) {
        b->too_big = true;
        return 0;
    }
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, p, add);
    b->data = grown;
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

/* True for transport errors: nothing answered at the address. */
static bool curl_unreachable(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_OPERATION_TIMEDOUT ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR;
}

/* True for an --admin that is not a usable URL. */
static bool curl_bad_url(CURLcode rc)
{
    return rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL;
}

/* One GET of url; prints the answer or the error. Returns the exit status. */
static int org_get(CURL *curl, const char *url, const char *org, bool pretty, int timeout_ms)
{
    body_t body = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_PROXY, ""); /* the endpoint is loopback: no proxy */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "meterctl");
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    int exit_status = 0;
    if (rc != CURLE_OK) {
        fprintf(stderr, "meterctl org: %s: %s%s\n", url,
                body.too_big ? "answer larger than 16 MiB"
                : errbuf[0]  ? errbuf
                             : curl_easy_strerror(rc),
                curl_unreachable(rc) ? " (is meterd running with http.admin_listen there?)" : "");
        exit_status = curl_unreachable(rc) || curl_bad_url(rc) ? EXIT_USAGE : EXIT_FAIL;
    } else if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
               status == 404) {
        fprintf(stderr,
                "meterctl org: %s: unknown organization here: it may belong to a partition "
                "another instance owns\n",
                org);
        exit_status = EXIT_FAIL;
    } else if (status != 200) {
        size_t n = body.data ? strcspn(body.data, "\r\n") : 0;
        fprintf(stderr, "meterctl org: %s answered HTTP %ld%s", url, status, n ? ": " : "");
        print_escaped(stderr, body.data, n > 200 ? 200 : n);
        fputc('\n', stderr);
        exit_status = EXIT_FAIL;
    } else {
        json_error_t je;
        json_t *j = json_loadb(body.data ? body.data : "", body.len, JSON_ALLOW_NUL, &je);
        char *s = j ? json_dumps(j, pretty ? JSON_INDENT(2) : JSON_COMPACT) : NULL;
        if (!j) {
            fprintf(stderr, "meterctl org: %s answered with invalid JSON: %s\n", url, je.text);
            exit_status = EXIT_FAIL;
        } else if (!s || emit_line(s) < 0) {
            fprintf(stderr, "meterctl org: cannot write to standard output: %s\n", strerror(errno));
            exit_status = EXIT_FAIL;
        }
        free(s);
        json_decref(j);
    }
    free(body.data);
    return exit_status;
}

static int cmd_org(int argc, char **argv)
{
    static const struct option longopts[] = {{"admin", required_argument, NULL, 'a'},
                                             {"pretty", no_argument, NULL, 'p'},
                                             {"timeout-ms", required_argument, NULL, 'T'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "org";
    const char *env = getenv("METERD_ADMIN");
    const char *admin = env && *env ? env : DEFAULT_ADMIN;
    bool pretty = false;
    int timeout_ms = 5000;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'a') {
            admin = optarg;
        } else if (c == 'p') {
            pretty = true;
        } else if (c == 'T') {
            if (parse_timeout(optarg, &timeout_ms) < 0)
                return usage_error(cmd, "bad --timeout-ms (want 1..86400000):", optarg);
        } else {
            int rc = common_opt(cmd, c, argv, NULL, org_usage);
            if (rc >= 0)
                return rc;
        }
    }
    if (optind >= argc)
        return usage_error(cmd, "missing ORG", NULL);
    if (argc - optind > 1)
        return usage_error(cmd, "unexpected argument", argv[optind + 1]);
    const char *org = argv[optind];
    size_t admin_len = strlen(admin);
    while (admin_len && admin[admin_len - 1] == '/')
        admin_len--;
    if (!*org)
        return usage_error(cmd, "empty ORG", NULL);
    if (admin_len == 0)
        return usage_error(cmd, "empty --admin", NULL);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "meterctl org: cannot initialize libcurl\n");
        return EXIT_FAIL;
    }
    int status = EXIT_FAIL;
    CURL *curl = curl_easy_init();
    char *escaped = curl ? curl_easy_escape(curl, org, (int)strlen(org)) : NULL;
    size_t url_len = admin_len + (escaped ? strlen(escaped) : 0) + sizeof("/admin/orgs/");
    char *url = escaped ? malloc(url_len) : NULL;
    if (!url) {
        fprintf(stderr, "meterctl org: out of memory\n");
    } else {
        snprintf(url, url_len, "%.*s/admin/orgs/%s", (int)admin_len, admin, escaped);
        status = org_get(curl, url, org, pretty, timeout_ms);
    }
    free(url);
    curl_free(escaped);
    if (curl)
        curl_easy_cleanup(curl);
    curl_global_cleanup();
    return status;
}

/* ---------- replay ---------- */

static const char replay_usage[] =
    "usage: meterctl replay [--dlq TOPIC] [--to TOPIC] [--error NAME]... [--from-offsets P:O,...]\n"
    "                       [--dry-run] [--timeout-ms T] [options]\n"
    "\n"
    "Reads the dead-letter topic from the beginning (or the given offsets) to the end it has\n"
    "when replay starts, selects dead letters (by their error header, when --error is given),\n"
    "drops repeats of one source event (same source_topic, source_partition, source_offset\n"
    "headers: dead letters are produced at least once) and produces each selected value,\n"
    "byte for byte, with its original key to the input topic. Prints counts by error.\n"
    "\n"
    "  --dlq TOPIC              dead-letter topic (default usage.dlq)\n"
    "  --to TOPIC               input topic to produce to (default usage.events)\n"
    "  --error NAME             replay only dead letters with this error (repeatable)\n"
    "  --from-offsets P:O,...   start partition P at offset O (others: at the beginning)\n"
    "  --dry-run                list what would be replayed; produce nothing\n"
    "  --timeout-ms T           longest time to read to the end, and then to deliver\n"
    "                           (default 30000)\n" KAFKA_USAGE;

typedef struct {
    char name[64];
    size_t read, selected, duplicates, skipped;
} err_count_t;

/* A set of source events, (topic, partition, offset), by open addressing. */
typedef struct {
    int64_t offset; /* -1: empty slot */
    int32_t partition;
    uint32_t topic; /* index in topics */
} seen_slot_t;

typedef struct {
    seen_slot_t *slots;
    size_t cap, used;
    char **topics;
    size_t n_topics;
} seen_t;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void seen_free(seen_t *s)
{
    for (size_t i = 0; i < s->n_topics; i++)
        free(s->topics[i]);
    free(s->topics);
    free(s->slots);
    *s = (seen_t){0};
}

static seen_slot_t *seen_slot(seen_slot_t *slots, size_t cap, const seen_slot_t *k)
{
    uint64_t h =
        mix64(((uint64_t)k->topic << 32 | (uint32_t)k->partition) ^ mix64((uint64_t)k->offset));
    for (size_t i = (size_t)h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        seen_slot_t *s = &slots[i];
        if (s->offset < 0 ||
            (s->offset == k->offset && s->partition == k->partition && s->topic == k->topic))
            return s;
    }
}

/* Adds a source event. Returns 1 when it is new, 0 when it was seen before, -1 when out of
 * memory. */
__attribute__((warn_unused_result)) static int seen_add(seen_t *s, const char *topic,
                                                        int32_t partition, int64_t offset)
{
    seen_slot_t k = {.offset = offset, .partition = partition};
    size_t t = 0;
    while (t < s->n_topics && strcmp(s->topics[t], topic) != 0)
        t++;
    if (t == s->n_topics) {
        char **grown = realloc(s->topics, (s->n_topics + 1) * sizeof(*grown));
        if (!grown)
            return -1;
        s->topics = grown;
        if (!(s->topics[t] = strdup(topic)))
            return -1;
        s->n_topics++;
    }
    k.topic = (uint32_t)t;
    if ((s->used + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        seen_slot_t *slots = malloc(cap * sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < cap; i++)
            slots[i].offset = -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i].offset >= 0)
                *seen_slot(slots, cap, &s->slots[i]) = s->slots[i];
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    seen_slot_t *slot = seen_slot(s->slots, s->cap, &k);
    if (slot->offset >= 0)
        return 0;
    *slot = k;
    s->used++;
    return 1;
}

typedef struct {
    const char *to;
    size_t delivered, failed;
} replay_tally_t;

/* Where a replayed message came from, for its delivery report; freed there. */
typedef struct {
    int32_t partition;
    int64_t offset;
} replay_origin_t;

static void replay_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    replay_tally_t *t = opaque;
    replay_origin_t *o = m->_private;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        t->delivered++;
    } else {
        t->failed++;
        fprintf(stderr, "meterctl replay: dead letter %d:%" PRId64 ": delivery to %s failed: %s\n",
                o ? (int)o->partition : -1, o ? o->offset : -1, t->to, rd_kafka_err2str(m->err));
    }
    free(o);
}

typedef struct {
    const char *dlq, *to;
    const char *errors[MAX_ERROR_FILTERS];
    size_t n_errors;
    const char *from_offsets;
    bool dry_run;
    int timeout_ms;
} replay_opts_t;

typedef struct {
    const replay_opts_t *o;
    rd_kafka_t *producer; /* NULL for a dry run */
    replay_tally_t tally;
    err_count_t *counts;
    size_t n_counts;
    seen_t seen;
    size_t produced;
} replay_t;

static err_count_t *replay_count(replay_t *r, const char *name)
{
    for (size_t i = 0; i < r->n_counts; i++)
        if (strcmp(r->counts[i].name, name) == 0)
            return &r->counts[i];
    err_count_t *grown = realloc(r->counts, (r->n_counts + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    r->counts = grown;
    err_count_t *c = &r->counts[r->n_counts++];
    *c = (err_count_t){0};
    snprintf(c->name, sizeof(c->name), "%s", name);
    return c;
}

/* Prints one line of a dry run's listing. */
static void replay_list(const rd_kafka_message_t *m, const char *verb, const char *error,
                        const char *field, const char *src, const char *detail)
{
    printf("%-12s %s %d:%" PRId64 " from %s key ", verb, rd_kafka_topic_name(m->rkt),
           (int)m->partition, m->offset, src[0] ? src : "(no source headers)");
    if (m->key) {
        fputc('"', stdout);
        print_escaped(stdout, m->key, m->key_len);
        fputc('"', stdout);
    } else {
        fputs("(none)", stdout);
    }
    printf(": %s", error[0] ? error : "(no error header)");
    if (field[0])
        printf(" (%s)", field);
    if (detail[0]) {
        fputs(": ", stdout);
        print_escaped(stdout, detail, strlen(detail));
    }
    fputc('\n', stdout);
}

/* Selects, deduplicates and replays (or lists) one dead letter. Returns 0, or -1 (printed)
 * when out of memory or when librdkafka refuses the message. */
__attribute__((warn_unused_result)) static int replay_one(replay_t *r, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        h = NULL;
    char error[64], field[64], detail[128], src_topic[256], src_part[16], src_off[24];
    copy_header(h, "error", error, sizeof(error));
    copy_header(h, "error_field", field, sizeof(field));
    copy_header(h, "error_detail", detail, sizeof(detail));
    copy_header(h, "source_topic", src_topic, sizeof(src_topic));
    copy_header(h, "source_partition", src_part, sizeof(src_part));
    copy_header(h, "source_offset", src_off, sizeof(src_off));
    err_count_t *ec = replay_count(r, error[0] ? error : "(none)");
    if (!ec) {
        fprintf(stderr, "meterctl replay: out of memory\n");
        return -1;
    }
    ec->read++;
    if (r->o->n_errors) {
        bool wanted = false;
        for (size_t i = 0; i < r->o->n_errors && !wanted; i++)
            wanted = strcmp(r->o->errors[i], error) == 0;
        if (!wanted) {
            ec->skipped++;
            return 0;
        }
    }
    long long sp, so;
    char src[320] = "";
    if (src_topic[0] && parse_ll_n(src_part, strlen(src_part), INT32_MAX, &sp) == 0 &&
        parse_ll_n(src_off, strlen(src_off), INT64_MAX, &so) == 0) {
        snprintf(src, sizeof(src), "%s %lld:%lld", src_topic, sp, so);
        int added = seen_add(&r->seen, src_topic, (int32_t)sp, (int64_t)so);
        if (added < 0) {
            fprintf(stderr, "meterctl replay: out of memory\n");
            return -1;
        }
        if (added == 0) {
            ec->duplicates++;
            if (r->o->dry_run)
                replay_list(m, "duplicate", error, field, src, "");
            return 0;
        }
    }
    ec->selected++;
    if (r->o->dry_run) {
        replay_list(m, "would replay", error, field, src, detail);
        return 0;
    }
    replay_origin_t *origin = malloc(sizeof(*origin));
    if (!origin) {
        fprintf(stderr, "meterctl replay: out of memory\n");
        return -1;
    }
    *origin = (replay_origin_t){.partition = m->partition, .offset = m->offset};
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_producev(
            r->producer, RD_KAFKA_V_TOPIC(r->o->to),
            RD_KAFKA_V_KEY(m->key, m->key ? m->key_len : 0), RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(origin), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(r->producer, 100);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "meterctl replay: cannot produce to %s: %s\n", r->o->to,
                rd_kafka_err2str(err));
        free(origin);
        return -1;
    }
    r->produced++;
    rd_kafka_poll(r->producer, 0);
    return 0;
}

static int cmp_counts(const void *a, const void *b)
{
    return strcmp(((const err_count_t *)a)->name, ((const err_count_t *)b)->name);
}

/* Prints the counts by error, the totals and the offsets to resume from. */
static void replay_report(replay_t *r, const parts_t *ps)
{
    if (r->n_counts) /* qsort's base must not be NULL, even for 0 elements */
        qsort(r->counts, r->n_counts, sizeof(*r->counts), cmp_counts);
    err_count_t total = {.name = "total"};
    printf("%-24s %6s %13s %10s %13s\n", "error", "read",
           r->o->dry_run ? "would replay" : "replayed", "duplicate", "not selected");
    for (size_t i = 0; i <= r->n_counts; i++) {
        const err_count_t *c = i < r->n_counts ? &r->counts[i] : &total;
        printf("%-24s %6zu %13zu %10zu %13zu\n", c->name, c->read, c->selected, c->duplicates,
               c->skipped);
        if (i < r->n_counts) {
            total.read += c->read;
            total.selected += c->selected;
            total.duplicates += c->duplicates;
            total.skipped += c->skipped;
        }
    }
    if (r->o->dry_run)
        printf("dry run: nothing produced to %s\n", r->o->to);
    else
        printf("replayed %zu dead letters to %s: %zu delivered, %zu failed\n", total.selected,
               r->o->to, r->tally.delivered, r->tally.failed);
    printf("next: --from-offsets ");
    for (size_t i = 0; i < ps->n; i++)
        printf("%s%d:%" PRId64, i ? "," : "", (int)ps->v[i].partition, ps->v[i].next);
    fputc('\n', stdout);
}

/* Applies --from-offsets ("P:O,P:O") to the partitions, or only checks its syntax when ps is
 * NULL (before connecting). Returns 0, EXIT_USAGE or EXIT_FAIL (printed). */
static int replay_start_offsets(const char *spec, parts_t *ps)
{
    const char *cmd = "replay";
    const char *s = spec;
    bool *given = ps ? calloc(ps->n ? ps->n : 1, sizeof(*given)) : NULL;
    if (ps && !given) {
        fprintf(stderr, "meterctl replay: out of memory\n");
        return EXIT_FAIL;
    }
    int rc = *s ? 0 : usage_error(cmd, "empty --from-offsets", NULL);
    while (rc == 0 && *s) {
        size_t n = strcspn(s, ",");
        char item[64];
        long long p = -1, o = -1;
        const char *colon = memchr(s, ':', n);
        if (n >= sizeof(item) || !colon) {
            rc = usage_error(cmd, "bad --from-offsets (want P:O,...):", spec);
            break;
        }
        memcpy(item, s, n);
        item[n] = '\0';
        item[colon - s] = '\0';
        if (parse_ll(item, 0, INT32_MAX, &p) < 0 ||
            parse_ll(item + (colon - s) + 1, 0, INT64_MAX, &o) < 0) {
            rc = usage_error(cmd, "bad --from-offsets (want P:O,...):", spec);
            break;
        }
        s += n;
        if (*s == ',')
            s++;
        if (!ps)
            continue;
        if ((size_t)p >= ps->n) {
            fprintf(stderr,
                    "meterctl replay: --from-offsets: partition %lld does not exist (%zu "
                    "partitions)\n",
                    p, ps->n);
            rc = EXIT_USAGE;
            break;
        }
        if (given[p]) {
            fprintf(stderr, "meterctl replay: --from-offsets: partition %lld given twice\n", p);
            rc = EXIT_USAGE;
            break;
        }
        given[p] = true;
        part_t *part = &ps->v[p];
        if (o < part->low) {
            fprintf(stderr,
                    "meterctl replay: partition %lld starts at %" PRId64 ": offsets %lld..%" PRId64
                    " are gone (retention), starting there\n",
                    p, part->low, o, part->low - 1);
            o = part->low;
        }
        part->next = o;
    }
    free(given);
    return rc;
}

static int cmd_replay(int argc, char **argv)
{
    static const struct option longopts[] = {{"dlq", required_argument, NULL, 'd'},
                                             {"to", required_argument, NULL, 't'},
                                             {"error", required_argument, NULL, 'e'},
                                             {"from-offsets", required_argument, NULL, 'o'},
                                             {"dry-run", no_argument, NULL, 'n'},
                                             {"timeout-ms", required_argument, NULL, 'T'},
                                             KAFKA_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "replay";
    replay_opts_t o = {.dlq = "usage.dlq", .to = "usage.events", .timeout_ms = DEFAULT_TIMEOUT_MS};
    kafka_opts_t k;
    kafka_opts_init(&k);
    int c;
    while ((c = getopt_long(argc, argv, ":hX:", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
        case 't':
            if (!*optarg)
                return usage_error(cmd, c == 'd' ? "empty --dlq" : "empty --to", NULL);
            *(c == 'd' ? &o.dlq : &o.to) = optarg;
            break;
        case 'e':
            if (!*optarg)
                return usage_error(cmd, "empty --error", NULL);
            if (o.n_errors == MAX_ERROR_FILTERS)
                return usage_error(cmd, "too many --error options", NULL);
            o.errors[o.n_errors++] = optarg;
            break;
        case 'o':
            if (replay_start_offsets(optarg, NULL) != 0)
                return EXIT_USAGE;
            o.from_offsets = optarg;
            break;
        case 'n':
            o.dry_run = true;
            break;
        case 'T':
            if (parse_timeout(optarg, &o.timeout_ms) < 0)
                return usage_error(cmd, "bad --timeout-ms (want 1..86400000):", optarg);
            break;
        default: {
            int rc = common_opt(cmd, c, argv, &k, replay_usage);
            if (rc >= 0)
                return rc;
        }
        }
    }
    if (optind < argc)
        return usage_error(cmd, "unexpected argument", argv[optind]);
    if (strcmp(o.dlq, o.to) == 0)
        return usage_error(cmd, "--dlq and --to name the same topic:", o.to);

    replay_t r = {.o = &o, .tally = {.to = o.to}};
    rd_kafka_t *consumer = NULL;
    int status = kafka_new(cmd, &k, consumer_defaults, NULL, NULL, &consumer);
    if (status != 0)
        return status;
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", o.timeout_ms);
    const char *const defaults[] = {PRODUCER_DEFAULTS, "message.timeout.ms", timeout, NULL};
    if (!o.dry_run)
        status = kafka_new(cmd, &k, defaults, replay_dr, &r.tally, &r.producer);

    parts_t ps = {0};
    int64_t deadline = now_ms() + o.timeout_ms;
    if (status == 0 && parts_add_topic(consumer, cmd, o.dlq, o.timeout_ms, &ps) < 0)
        status = EXIT_FAIL;
    if (status == 0 && o.from_offsets)
        status = replay_start_offsets(o.from_offsets, &ps);
    for (size_t i = 0; i < ps.n; i++)
        ps.v[i].done = ps.v[i].next >= ps.v[i].end;
    if (status == 0 && parts_assign(consumer, cmd, &ps, false) < 0)
        status = EXIT_FAIL;

    while (status == 0 && !parts_all_done(&ps)) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            fprintf(stderr, "meterctl replay: %s not read to its end within %d ms:", o.dlq,
                    o.timeout_ms);
            for (size_t i = 0; i < ps.n; i++)
                if (!ps.v[i].done)
                    fprintf(stderr, " %d at %" PRId64 " of %" PRId64, (int)ps.v[i].partition,
                            ps.v[i].next, ps.v[i].end);
            fputc('\n', stderr);
            status = EXIT_FAIL;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, left < 200 ? (int)left : 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            parts_note(&ps, m);
        } else if (m->err) {
            fprintf(stderr, "meterctl replay: %s: %s\n", o.dlq, rd_kafka_message_errstr(m));
            if (consumer_error_is_fatal(m->err))
                status = EXIT_FAIL;
        } else {
            /* Only what was read up to the end: messages that arrive later wait for the next
             * replay, which --from-offsets can start where this one stopped. */
            part_t *p = parts_find(&ps, rd_kafka_topic_name(m->rkt), m->partition);
            if (p && !p->done && m->offset >= p->end) {
                p->done = true; /* a gap ran past the end */
            } else if (p && !p->done) {
                parts_note(&ps, m);
                if (replay_one(&r, m) < 0)
                    status = EXIT_FAIL;
            }
        }
        rd_kafka_message_destroy(m);
    }
    if (r.producer) {
        producer_drain(r.producer, o.timeout_ms);
        rd_kafka_destroy(r.producer);
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    if (ps.n && (status == 0 || r.n_counts))
        replay_report(&r, &ps);
    if (r.tally.failed && status == 0)
        status = EXIT_FAIL;
    free(ps.v);
    free(r.counts);
    seen_free(&r.seen);
    return status;
}

/* ---------- main ---------- */

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command_t;

static const command_t commands[] = {
    {"publish", cmd_publish, "produce events written as JSON lines, encoded as msgpack"},
    {"tail", cmd_tail, "print the messages of a topic (meter.decisions, budget.events) as JSON"},
    {"org", cmd_org, "show an organization's live state from meterd's admin endpoint"},
    {"replay", cmd_replay, "produce dead letters again to the input topic"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: meterctl COMMAND [options]\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nmeterctl COMMAND --help describes one. Exit status: 0 success, 1 the "
                 "operation failed,\n2 usage error (and, for org, no admin endpoint there).\n");
}

int main(int argc, char **argv)
{
    /* A reader that went away must be an error on write (EPIPE), not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "meterctl: missing command (publish, tail, org, replay; see meterctl "
                        "--help)\n");
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            opterr = 0; /* common_opt reports, on one line */
            optind = 1;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr,
            "meterctl: unknown command \"%s\" (publish, tail, org, replay; see meterctl "
            "--help)\n",
            argv[1]);
    return EXIT_USAGE;
}
