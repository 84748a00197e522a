/*
 * config — the settings table, the INI/environment/flag layers and their validation.
 *
 * DESIGN: one static table (keys[]) holds every key: its type, where it lives in config_t, its
 * default as text, its bounds and its documentation. Every layer — defaults, file, environment,
 * flags — goes through the same setter (set_key), so a value is validated the same way wherever
 * it comes from and an error always names the key and the layer. Adding a setting is one line
 * in the table plus one field in config_t.
 */
#include "config.h"

#include "initext.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef METERD_DEFAULT_PRICES
#define METERD_DEFAULT_PRICES "/etc/meterd/prices.ini"
#endif
#ifndef METERD_DEFAULT_TIERS
#define METERD_DEFAULT_TIERS "/etc/meterd/tiers.ini"
#endif

typedef enum { K_STR, K_INT, K_BOOL, K_LEVEL, K_SECRET_FILE } kind_t;

typedef struct {
    const char *name;
    kind_t kind;
    size_t off;
    const char *def;
    int64_t min, max;
    const char *doc;
} key_t_;

#define F(field) offsetof(config_t, field)
static const key_t_ keys[] = {
    {"kafka.brokers", K_STR, F(kafka_brokers), "localhost:9092", 0, 0,
     "Bootstrap servers of the Kafka cluster (host:port, comma-separated)."},
    {"kafka.group_id", K_STR, F(kafka_group_id), "meterd", 0, 0,
     "Consumer group shared by all meterd instances that split the input partitions."},
    {"kafka.input_topic", K_STR, F(kafka_input_topic), "usage.events", 0, 0,
     "Topic of usage events, keyed by org."},
    {"kafka.dlq_topic", K_STR, F(kafka_dlq_topic), "usage.dlq", 0, 0,
     "Dead-letter topic: refused events, unchanged, with headers naming the error."},
    {"kafka.decisions_topic", K_STR, F(kafka_decisions_topic), "meter.decisions", 0, 0,
     "Topic of admission decisions for the scheduler, keyed by org."},
    {"kafka.budget_topic", K_STR, F(kafka_budget_topic), "budget.events", 0, 0,
     "Topic of budget events (budget.warning, budget.exceeded), keyed by org."},
    {"kafka.session_timeout_ms", K_INT, F(kafka_session_timeout_ms), "10000", 1000, 3600000,
     "Consumer group session timeout; a dead instance's partitions move after this long."},
    {"kafka.fetch_wait_max_ms", K_INT, F(kafka_fetch_wait_max_ms), "100", 1, 10000,
     "Longest time the broker holds an empty fetch (latency of an idle partition)."},
    {"kafka.sasl_username", K_STR, F(kafka_sasl_username), "", 0, 0,
     "SASL user name; empty disables SASL. The password comes from METERD_KAFKA_SASL_PASSWORD "
     "or kafka.sasl_password_file, never from this file."},
    {"kafka.sasl_password_file", K_SECRET_FILE, F(kafka_sasl_password_file), "", 0, 0,
     "File holding the SASL password (first line)."},
    {"postgres.dsn", K_STR, F(pg_dsn), "", 0, 0,
     "libpq connection string (host=... dbname=...); empty uses libpq's PG* environment. "
     "Must not contain a password."},
    {"postgres.password_file", K_SECRET_FILE, F(pg_password_file), "", 0, 0,
     "File holding the PostgreSQL password (first line); PGPASSWORD also works."},
    {"postgres.auto_migrate", K_BOOL, F(pg_auto_migrate), "true", 0, 0,
     "Apply missing schema migrations on connect; if false, refuse to run on an old schema."},
    {"postgres.reconnect_max_ms", K_INT, F(pg_reconnect_max_ms), "5000", 100, 600000,
     "Longest back-off between reconnection attempts (starts at 100 ms, doubles)."},
    {"postgres.statement_timeout_ms", K_INT, F(pg_statement_timeout_ms), "60000", 0, 3600000,
     "statement_timeout for the daemon's session; 0 disables it."},
    {"postgres.idle_in_transaction_timeout_ms", K_INT, F(pg_idle_in_transaction_timeout_ms),
     "30000", 0, 3600000,
     "idle_in_transaction_session_timeout for the daemon's session: the server ends the session "
     "(and frees its row locks) of an instance frozen in the middle of a flush; 0 disables it."},
    {"meter.instance_id", K_STR, F(instance_id), "", 0, 0,
     "Name of this instance in checkpoints and logs; empty means hostname:pid."},
    {"meter.prices_file", K_STR, F(prices_file), METERD_DEFAULT_PRICES, 0, 0,
     "LLM price table (INI, USD per 1M tokens)."},
    {"meter.tiers_file", K_STR, F(tiers_file), METERD_DEFAULT_TIERS, 0, 0,
     "Pricing tiers: limits admission enforces and fees billing charges (INI)."},
    {"meter.flush_interval_ms", K_INT, F(flush_interval_ms), "200", 10, 600000,
     "Longest time applied events wait in memory before a flush transaction starts."},
    {"meter.flush_max_events", K_INT, F(flush_max_events), "50000", 1, 10000000,
     "A flush starts early once this many events are pending."},
    {"meter.max_pending_events", K_INT, F(max_pending_events), "400000", 1, 100000000,
     "Backpressure: consumption pauses while this many applied events are not yet durable."},
    {"meter.max_event_bytes", K_INT, F(max_event_bytes), "65536", 64, 16777216,
     "Largest accepted event; larger ones are dead-lettered as too_large."},
    {"meter.poll_batch", K_INT, F(poll_batch), "2000", 1, 1000000,
     "Messages handled per loop iteration before other work (timers, PostgreSQL) runs."},
    {"meter.revoke_timeout_ms", K_INT, F(revoke_timeout_ms), "5000", 0, 600000,
     "How long a revocation waits for the final flush of its partitions before letting go "
     "(their unflushed events are then replayed by the new owner)."},
    {"meter.stats_interval_ms", K_INT, F(stats_interval_ms), "10000", 0, 3600000,
     "Interval of the periodic stats log line; 0 disables it."},
    {"meter.shutdown_timeout_ms", K_INT, F(shutdown_timeout_ms), "9000", 100, 600000,
     "SIGTERM drain deadline: flush, checkpoint and leave the group within this time."},
    {"http.listen", K_STR, F(http_listen), "127.0.0.1:9187", 0, 0,
     "Address of /metrics, /livez and /readyz (host:port, [v6]:port); empty disables it. "
     "Loopback by default: set 0.0.0.0:9187 for a Prometheus scraper elsewhere."},
    {"http.admin_listen", K_STR, F(http_admin_listen), "127.0.0.1:9188", 0, 0,
     "Address of the admin endpoint (/admin/orgs/ORG, for meterctl); loopback addresses only; "
     "empty disables it."},
    {"log.level", K_LEVEL, F(log_level), "info", 0, 0, "debug, info, warn or error."},
};
#undef F
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const key_t_ *find_key(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
            return &keys[i];
    return NULL;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int set_str(char **slot, const char *v)
{
    char *copy = strdup(v);
    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

/* Validates and stores one value. `where` names the layer for the error message. */
static int set_key(config_t *c, const key_t_ *k, const char *v, const char *where, char *err,
                   size_t errlen)
{
    void *slot = (char *)c + k->off;
    switch (k->kind) {
    case K_STR:
    case K_SECRET_FILE:
        if (set_str((char **)slot, v) < 0) {
            errf(err, errlen, "%s: out of memory", k->name);
            return -1;
        }
        return 0;
    case K_LEVEL: {
        static const char *const levels[] = {"debug", "info", "warn", "error"};
        for (int i = 0; i < 4; i++)
            if (strcmp(v, levels[i]) == 0)
                return set_str((char **)slot, v) < 0 ? -1 : 0;
        errf(err, errlen, "%s (%s): \"%s\" is not one of debug, info, warn, error", k->name, where,
             v);
        return -1;
    }
    case K_BOOL:
        if (parse_bool(v, (bool *)slot) < 0) {
            errf(err, errlen, "%s (%s): \"%s\" is not a boolean (true/false)", k->name, where, v);
            return -1;
        }
        return 0;
    case K_INT: {
        int64_t n;
        if (parse_int(v, &n) < 0) {
            errf(err, errlen, "%s (%s): \"%s\" is not an integer", k->name, where, v);
            return -1;
        }
        if (n < k->min || n > k->max) {
            errf(err, errlen, "%s (%s): %lld is outside %lld..%lld", k->name, where, (long long)n,
                 (long long)k->min, (long long)k->max);
            return -1;
        }
        *(int64_t *)slot = n;
        return 0;
    }
    }
    return -1;
}

/* librdkafka properties that carry secrets: refused in the file and on the command line. */
static bool is_secret_prop(const char *key)
{
    return strstr(key, "password") || strstr(key, "secret") || strstr(key, "sasl.oauthbearer") ||
           strstr(key, "ssl.key.pem") || strstr(key, "private");
}

static int props_set(config_props_t *p, const char *key, const char *value)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->items[i].key, key) == 0)
            return set_str(&p->items[i].value, value);
    }
    config_prop_t *items = realloc(p->items, (p->n + 1) * sizeof(*items));
    if (!items)
        return -1;
    p->items = items;
    items[p->n].key = strdup(key);
    items[p->n].value = strdup(value);
    if (!items[p->n].key || !items[p->n].value) {
        free(items[p->n].key);
        free(items[p->n].value);
        return -1;
    }
    p->n++;
    return 0;
}

static void props_free(config_props_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].key);
        free(p->items[i].value);
    }
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

/* Sets "section.name" (or a pass-through property) from the file or a flag. */
static int set_dotted(config_t *c, const char *dotted, const char *value, const char *where,
                      char *err, size_t errlen)
{
    static const struct {
        const char *prefix;
        size_t off;
    } pass[] = {{"kafka.consumer.", offsetof(config_t, consumer_props)},
                {"kafka.producer.", offsetof(config_t, producer_props)}};
    for (size_t i = 0; i < 2; i++) {
        size_t pl = strlen(pass[i].prefix);
        if (strncmp(dotted, pass[i].prefix, pl) == 0 && dotted[pl]) {
            if (is_secret_prop(dotted + pl)) {
                errf(err, errlen,
                     "%s (%s): secrets are not read from configuration; use "
                     "METERD_KAFKA_SASL_PASSWORD or kafka.sasl_password_file",
                     dotted, where);
                return -1;
            }
            if (props_set((config_props_t *)((char *)c + pass[i].off), dotted + pl, value) < 0) {
                errf(err, errlen, "%s: out of memory", dotted);
                return -1;
            }
            return 0;
        }
    }
    const key_t_ *k = find_key(dotted, strlen(dotted));
    if (!k) {
        errf(err, errlen, "%s (%s): unknown configuration key", dotted, where);
        return -1;
    }
    return set_key(c, k, value, where, err, errlen);
}

typedef struct {
    config_t *c;
    const char *path;
    char err[512];
} ini_ctx_t;

/* Only the sections of the key table and the two pass-through sections exist. */
static int on_ini_section(initext_t *ix, void *user, int line, const char *name, size_t len)
{
    (void)user;
    if ((len == 14 && memcmp(name, "kafka.consumer", 14) == 0) ||
        (len == 14 && memcmp(name, "kafka.producer", 14) == 0))
        return 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const char *dot = strchr(keys[i].name, '.');
        if ((size_t)(dot - keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
            return 0;
    }
    initext_error(ix, line, "unknown section [%.*s]", (int)len, name);
    return -1;
}

static int on_ini_entry(initext_t *ix, void *user, int line, const char *section, const char *name,
                        const char *value)
{
    ini_ctx_t *x = user;
    char dotted[320];
    if (!section[0]) {
        initext_error(ix, line, "key \"%s\" outside a section", name);
        return -1;
    }
    snprintf(dotted, sizeof(dotted), "%s.%s", section, name);
    if (set_dotted(x->c, dotted, value, "config file", x->err, sizeof(x->err)) < 0) {
        initext_error(ix, line, "%s", x->err);
        return -1;
    }
    return 0;
}

int config_read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (n + 1 < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f) || !buf;
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

/* Reads the first line of a secret file into *out. */
static int read_secret(const char *path, const char *key, char **out, char *err, size_t errlen)
{
    char *buf;
    if (config_read_file(path, &buf, NULL) < 0) {
        errf(err, errlen, "%s: cannot read %s: %s", key, path, strerror(errno));
        return -1;
    }
    buf[strcspn(buf, "\r\n")] = '\0';
    free(*out);
    *out = buf;
    return 0;
}

static void env_name(const char *key, char *out, size_t outlen)
{
    size_t n = 0;
    const char *prefix = "METERD_";
    for (; prefix[n] && n + 1 < outlen; n++)
        out[n] = prefix[n];
    for (const char *p = key; *p && n + 1 < outlen; p++)
        out[n++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static const char *env_get(char **envp, const char *name)
{
    size_t nl = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=')
            return *e + nl + 1;
    return NULL;
}

void config_free(config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].kind == K_STR || keys[i].kind == K_SECRET_FILE || keys[i].kind == K_LEVEL)
            free(*(char **)((char *)c + keys[i].off));
    free(c->kafka_sasl_password);
    free(c->pg_password);
    props_free(&c->consumer_props);
    props_free(&c->producer_props);
    free(c);
}

void config_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [-c FILE] [--section.key=VALUE]... [run|migrate|check-config]\n"
            "  -c, --config FILE   read settings from an INI file\n"
            "  --section.key=V     set one key (see docs/configuration.md); also\n"
            "                      --kafka.consumer.<prop>=V, --kafka.producer.<prop>=V\n"
            "  run                 run the daemon (default)\n"
            "  migrate             apply PostgreSQL migrations and exit\n"
            "  check-config        print the effective configuration and exit\n"
            "  -h, --help          this text;  -V, --version  the version\n"
            "Environment: METERD_<SECTION>_<KEY> overrides the file; flags override both.\n",
            prog);
}

/* The DSN must parse (libpq's own parser, key=value or URI form) and carry no password. */
static int check_dsn(const char *dsn, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (!opts) {
        /* libpq's message quotes the string; keep it only if no secret can be in it */
        bool quiet = strchr(dsn, '@') || strstr(dsn, "password");
        errf(err, errlen, "postgres.dsn: not a valid libpq connection string%s%s",
             perr && !quiet ? ": " : "", perr && !quiet ? perr : "");
        PQfreemem(perr);
        return -1;
    }
    bool has_password = false;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
            has_password = true;
    PQconninfoFree(opts);
    if (has_password) {
        errf(err, errlen,
             "postgres.dsn: must not contain a password; use PGPASSWORD or "
             "postgres.password_file");
        return -1;
    }
    return 0;
}

static int finish(config_t *c, char **envp, char *err, size_t errlen)
{
    const char *pw = env_get(envp, "METERD_KAFKA_SASL_PASSWORD");
    if (c->kafka_sasl_password_file[0]) {
        if (read_secret(c->kafka_sasl_password_file, "kafka.sasl_password_file",
                        &c->kafka_sasl_password, err, errlen) < 0)
            return -1;
    } else if (pw && set_str(&c->kafka_sasl_password, pw) < 0) {
        return -1;
    }
    if (c->kafka_sasl_username[0] && !c->kafka_sasl_password) {
        errf(err, errlen,
             "kafka.sasl_username is set but no password: set METERD_KAFKA_SASL_PASSWORD or "
             "kafka.sasl_password_file");
        return -1;
    }
    if (c->pg_password_file[0] && read_secret(c->pg_password_file, "postgres.password_file",
                                              &c->pg_password, err, errlen) < 0)
        return -1;
    if (check_dsn(c->pg_dsn, err, errlen) < 0)
        return -1;
    static const struct {
        const char *key;
        size_t off;
    } nonempty[] = {{"kafka.brokers", offsetof(config_t, kafka_brokers)},
                    {"kafka.group_id", offsetof(config_t, kafka_group_id)},
                    {"kafka.input_topic", offsetof(config_t, kafka_input_topic)},
                    {"kafka.dlq_topic", offsetof(config_t, kafka_dlq_topic)},
                    {"kafka.decisions_topic", offsetof(config_t, kafka_decisions_topic)},
                    {"kafka.budget_topic", offsetof(config_t, kafka_budget_topic)},
                    {"meter.tiers_file", offsetof(config_t, tiers_file)},
                    {"meter.prices_file", offsetof(config_t, prices_file)}};
    for (size_t i = 0; i < sizeof(nonempty) / sizeof(nonempty[0]); i++) {
        if (!(*(char **)((char *)c + nonempty[i].off))[0]) {
            errf(err, errlen, "%s: must not be empty", nonempty[i].key);
            return -1;
        }
    }
    if (strcmp(c->kafka_input_topic, c->kafka_dlq_topic) == 0) {
        errf(err, errlen, "kafka.dlq_topic: must differ from kafka.input_topic");
        return -1;
    }
    if (strcmp(c->kafka_input_topic, c->kafka_decisions_topic) == 0) {
        errf(err, errlen, "kafka.decisions_topic: must differ from kafka.input_topic");
        return -1;
    }
    if (strcmp(c->kafka_input_topic, c->kafka_budget_topic) == 0) {
        errf(err, errlen, "kafka.budget_topic: must differ from kafka.input_topic");
        return -1;
    }
    char lhost[256];
    int port;
    if (c->http_listen[0] &&
        config_parse_hostport(c->http_listen, lhost, sizeof(lhost), &port) < 0) {
        errf(err, errlen, "http.listen: \"%s\" is not host:port", c->http_listen);
        return -1;
    }
    if (c->http_admin_listen[0]) {
        if (config_parse_hostport(c->http_admin_listen, lhost, sizeof(lhost), &port) < 0) {
            errf(err, errlen, "http.admin_listen: \"%s\" is not host:port", c->http_admin_listen);
            return -1;
        }
        if (strcmp(lhost, "localhost") != 0 && strncmp(lhost, "127.", 4) != 0 &&
            strcmp(lhost, "::1") != 0) {
            errf(err, errlen, "http.admin_listen: \"%s\" is not a loopback address",
                 c->http_admin_listen);
            return -1;
        }
    }
    if (c->http_listen[0] && c->http_admin_listen[0] &&
        strcmp(c->http_listen, c->http_admin_listen) == 0) {
        errf(err, errlen, "http.admin_listen: must differ from http.listen");
        return -1;
    }
    if (c->max_pending_events < c->flush_max_events) {
        errf(err, errlen,
             "meter.max_pending_events (%lld) must be at least "
             "meter.flush_max_events (%lld)",
             (long long)c->max_pending_events, (long long)c->flush_max_events);
        return -1;
    }
    if (!c->instance_id[0]) {
        char host[128] = "localhost", id[192];
        if (gethostname(host, sizeof(host) - 1) < 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
        if (set_str(&c->instance_id, id) < 0)
            return -1;
    }
    return 0;
}

int config_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hn;
    if (s[0] == '[') { /* [v6]:port */
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        hn = (size_t)(close - s - 1);
        s++;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon)
            return -1;
        hn = (size_t)(colon - s);
    }
    if (hn == 0 || hn >= hostlen)
        return -1;
    memcpy(host, s, hn);
    host[hn] = '\0';
    int64_t p;
    if (parse_int(colon + 1, &p) < 0 || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

int config_load(int argc, char **argv, char **envp, config_t **out, config_cmd_t *cmd, char *err,
                size_t errlen)
{
    *out = NULL;
    *cmd = CONFIG_CMD_RUN;
    config_t *c = calloc(1, sizeof(*c));
    if (!c) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (set_key(c, &keys[i], keys[i].def, "default", err, errlen) < 0)
            goto fail;
    }

    /* First pass over argv: the command and the config file; flags are applied last. */
    const char *file = NULL;
    int have_cmd = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                errf(err, errlen, "%s: needs a file name", a);
                goto fail;
            }
            file = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            file = a + 9;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *cmd = CONFIG_CMD_HELP;
            *out = c;
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            *cmd = CONFIG_CMD_VERSION;
            *out = c;
            return 0;
        } else if (strncmp(a, "--", 2) == 0) {
            if (!strchr(a, '=') && i + 1 < argc)
                i++; /* --key value */
        } else if (!have_cmd) {
            have_cmd = 1;
            if (strcmp(a, "run") == 0)
                *cmd = CONFIG_CMD_RUN;
            else if (strcmp(a, "migrate") == 0)
                *cmd = CONFIG_CMD_MIGRATE;
            else if (strcmp(a, "check-config") == 0)
                *cmd = CONFIG_CMD_CHECK;
            else {
                errf(err, errlen, "unknown command \"%s\" (run, migrate, check-config)", a);
                goto fail;
            }
        } else {
            errf(err, errlen, "unexpected argument \"%s\"", a);
            goto fail;
        }
    }
    if (!file)
        file = env_get(envp, "METERD_CONFIG");
    if (file && file[0]) {
        char *text;
        size_t len;
        if (config_read_file(file, &text, &len) < 0) {
            errf(err, errlen, "%s: cannot read configuration file: %s", file, strerror(errno));
            goto fail;
        }
        ini_ctx_t x = {.c = c, .path = file};
        static const initext_spec_t spec = {.on_section = on_ini_section,
                                            .on_entry = on_ini_entry,
                                            .syntax_hint = "want [section] or key = value"};
        char perr[640];
        int rc = initext_parse(text, len, &spec, &x, perr, sizeof(perr));
        free(text);
        if (rc < 0) {
            errf(err, errlen, "%s: %s", file, perr);
            goto fail;
        }
    }
    for (size_t i = 0; i < NKEYS; i++) {
        char name[128];
        env_name(keys[i].name, name, sizeof(name));
        const char *v = env_get(envp, name);
        char where[160];
        snprintf(where, sizeof(where), "environment %s", name);
        if (v && set_key(c, &keys[i], v, where, err, errlen) < 0)
            goto fail;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || strncmp(a, "--config=", 9) == 0)
            continue;
        char dotted[256];
        const char *eq = strchr(a, '=');
        const char *value;
        size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (kl >= sizeof(dotted)) {
            errf(err, errlen, "%s: flag too long", a);
            goto fail;
        }
        memcpy(dotted, a + 2, kl);
        dotted[kl] = '\0';
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            errf(err, errlen, "--%s: needs a value", dotted);
            goto fail;
        }
        if (set_dotted(c, dotted, value, "command line", err, errlen) < 0)
            goto fail;
    }
    if (finish(c, envp, err, errlen) < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    config_free(c);
    return -1;
}

void config_print(const config_t *c, FILE *f)
{
    const char *section = "";
    size_t section_len = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_t_ *k = &keys[i];
        const char *dot = strchr(k->name, '.');
        size_t sl = (size_t)(dot - k->name);
        if (section_len != sl || strncmp(section, k->name, sl) != 0) {
            fprintf(f, "%s[%.*s]\n", i ? "\n" : "", (int)sl, k->name);
            section = k->name;
            section_len = sl;
        }
        const void *slot = (const char *)c + k->off;
        switch (k->kind) {
        case K_INT:
            fprintf(f, "%s = %lld\n", dot + 1, (long long)*(const int64_t *)slot);
            break;
        case K_BOOL:
            fprintf(f, "%s = %s\n", dot + 1, *(const bool *)slot ? "true" : "false");
            break;
        default:
            fprintf(f, "%s = %s\n", dot + 1, *(char *const *)slot);
            break;
        }
    }
    const config_props_t *props[2] = {&c->consumer_props, &c->producer_props};
    const char *names[2] = {"kafka.consumer", "kafka.producer"};
    for (int s = 0; s < 2; s++) {
        if (!props[s]->n)
            continue;
        fprintf(f, "\n[%s]\n", names[s]);
        for (size_t i = 0; i < props[s]->n; i++)
            fprintf(f, "%s = %s\n", props[s]->items[i].key, props[s]->items[i].value);
    }
    fprintf(f, "\n; secrets: kafka sasl password %s, postgres password file %s\n",
            c->kafka_sasl_password ? "<redacted>" : "(none)",
            c->pg_password ? "<redacted>" : "(none)");
}

void config_each_key(void (*fn)(const char *key, const char *def, const char *doc, void *arg),
                     void *arg)
{
    for (size_t i = 0; i < NKEYS; i++)
        fn(keys[i].name, keys[i].def, keys[i].doc, arg);
}
