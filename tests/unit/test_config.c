/*
 * test_config — unit tests of the configuration layers (daemon/config.c).
 *
 * config_load is driven with a fake argv and envp (never the test's own environment), and INI
 * files written to a private temporary directory. Each table row is one case; error cases
 * name the substrings the message must contain (always the key) and, for secrets, the value
 * that must not appear in it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ARGS   16

/* ---- temporary files -------------------------------------------------------------------- */

static char tmpdir[64];
static int nfiles;

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meterd-test-config-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < nfiles; i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/f%d", tmpdir, i);
        unlink(path);
    }
    return rmdir(tmpdir);
}

/* Writes a new temporary file and returns its path (static storage, one per file). */
static const char *write_file(const char *content)
{
    static char paths[256][128];
    assert_true(nfiles < 256);
    char *path = paths[nfiles];
    snprintf(path, sizeof(paths[0]), "%s/f%d", tmpdir, nfiles);
    nfiles++;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct {
    int rc;
    config_t *c;
    config_cmd_t cmd;
    char err[512];
} result_t;

/* Loads with argv = meterd [-c file] args... and the given environment (both NULL-terminated
 * lists; NULL means empty). */
static result_t load(const char *file, const char *const *args, const char *const *env)
{
    char *argv[MAX_ARGS + 4];
    char *envp[MAX_ARGS + 1];
    int argc = 0, envc = 0;
    argv[argc++] = (char *)"meterd";
    if (file) {
        argv[argc++] = (char *)"-c";
        argv[argc++] = (char *)file;
    }
    for (int i = 0; args && args[i]; i++) {
        assert_true(argc < MAX_ARGS + 3);
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    for (int i = 0; env && env[i]; i++) {
        assert_true(envc < MAX_ARGS);
        envp[envc++] = (char *)env[i];
    }
    envp[envc] = NULL;
    result_t r;
    memset(&r, 0, sizeof(r));
    r.cmd = (config_cmd_t)-1;
    r.c = (config_t *)&r; /* must be overwritten */
    r.rc = config_load(argc, argv, envp, &r.c, &r.cmd, r.err, sizeof(r.err));
    return r;
}

static config_t *load_ok(const char *file, const char *const *args, const char *const *env)
{
    result_t r = load(file, args, env);
    if (r.rc != 0)
        print_error("unexpected error: %s\n", r.err);
    assert_int_equal(r.rc, 0);
    assert_non_null(r.c);
    return r.c;
}

/* Expects a refusal whose message contains every string of want and not `absent`. */
static void load_err(const char *name, const char *file, const char *const *args,
                     const char *const *env, const char *const *want, const char *absent)
{
    result_t r = load(file, args, env);
    if (r.rc == 0) {
        print_error("case \"%s\": accepted\n", name);
        config_free(r.c);
    }
    assert_int_equal(r.rc, -1);
    assert_null(r.c);
    for (int i = 0; want && want[i]; i++) {
        if (!strstr(r.err, want[i]))
            print_error("case \"%s\": \"%s\" not in: %s\n", name, want[i], r.err);
        assert_non_null(strstr(r.err, want[i]));
    }
    if (absent && strstr(r.err, absent))
        print_error("case \"%s\": \"%s\" leaked into: %s\n", name, absent, r.err);
    assert_true(!absent || !strstr(r.err, absent));
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- defaults ----------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    result_t r = load(NULL, NULL, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cmd, CONFIG_CMD_RUN);
    const config_t *c = r.c;
    assert_string_equal(c->kafka_brokers, "localhost:9092");
    assert_string_equal(c->kafka_group_id, "meterd");
    assert_string_equal(c->kafka_input_topic, "usage.events");
    assert_string_equal(c->kafka_dlq_topic, "usage.dlq");
    assert_int_equal(c->kafka_session_timeout_ms, 10000);
    assert_int_equal(c->kafka_fetch_wait_max_ms, 100);
    assert_string_equal(c->kafka_sasl_username, "");
    assert_string_equal(c->kafka_sasl_password_file, "");
    assert_null(c->kafka_sasl_password);
    assert_int_equal(c->consumer_props.n, 0);
    assert_int_equal(c->producer_props.n, 0);
    assert_string_equal(c->pg_dsn, "");
    assert_string_equal(c->pg_password_file, "");
    assert_null(c->pg_password);
    assert_true(c->pg_auto_migrate);
    assert_int_equal(c->pg_reconnect_max_ms, 5000);
    assert_int_equal(c->pg_statement_timeout_ms, 60000);
    char host[128] = "", id[200];
    assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
    snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
    assert_string_equal(c->instance_id, id);
    assert_string_equal(c->prices_file, METERD_DEFAULT_PRICES);
    assert_int_equal(c->flush_interval_ms, 200);
    assert_int_equal(c->flush_max_events, 50000);
    assert_int_equal(c->max_pending_events, 400000);
    assert_int_equal(c->max_event_bytes, 65536);
    assert_int_equal(c->poll_batch, 2000);
    assert_int_equal(c->revoke_timeout_ms, 5000);
    assert_int_equal(c->stats_interval_ms, 10000);
    assert_int_equal(c->shutdown_timeout_ms, 9000);
    assert_string_equal(c->log_level, "info");
    config_free(r.c);
    config_free(NULL);
}

/* ---- layers ------------------------------------------------------------------------------- */

static void test_file_sets_keys(void **state)
{
    (void)state;
    const char *f = write_file("; a comment\n"
                               "# another\n"
                               "[kafka]\n"
                               "brokers = k1:9092,k2:9092\n"
                               "group_id=g\n"
                               "session_timeout_ms = 30000\n"
                               "\n"
                               "[postgres]\n"
                               "dsn = host=/run/pg dbname=meter\n"
                               "auto_migrate = no\n"
                               "\n"
                               "[meter]\n"
                               "instance_id = node-7\n"
                               "prices_file = /srv/prices.ini\n"
                               "flush_max_events = 1000\n"
                               "[log]\n"
                               "level = debug\n");
    config_t *c = load_ok(f, NULL, NULL);
    assert_string_equal(c->kafka_brokers, "k1:9092,k2:9092");
    assert_string_equal(c->kafka_group_id, "g");
    assert_int_equal(c->kafka_session_timeout_ms, 30000);
    assert_string_equal(c->pg_dsn, "host=/run/pg dbname=meter");
    assert_false(c->pg_auto_migrate);
    assert_string_equal(c->instance_id, "node-7");
    assert_string_equal(c->prices_file, "/srv/prices.ini");
    assert_int_equal(c->flush_max_events, 1000);
    assert_string_equal(c->log_level, "debug");
    assert_int_equal(c->poll_batch, 2000); /* untouched keys keep their default */
    config_free(c);
}

/* Later layers win: defaults < file < environment < flags. */
static void test_precedence(void **state)
{
    (void)state;
    const char *f = write_file("[kafka]\nbrokers = from-file\n[meter]\npoll_batch = 5\n");
    static const struct {
        bool file, env, flag;
        const char *brokers;
        int64_t poll;
    } cases[] = {
        {false, false, false, "localhost:9092", 2000}, {true, false, false, "from-file", 5},
        {false, true, false, "from-env", 6},           {true, true, false, "from-env", 6},
        {false, false, true, "from-flag", 7},          {true, false, true, "from-flag", 7},
        {false, true, true, "from-flag", 7},           {true, true, true, "from-flag", 7},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const char *const *env =
            cases[i].env ? L("METERD_KAFKA_BROKERS=from-env", "METERD_METER_POLL_BATCH=6") : NULL;
        /* Both flag spellings: --key=value and --key value. */
        const char *const *args =
            cases[i].flag ? L("--kafka.brokers=from-flag", "--meter.poll_batch", "7") : NULL;
        config_t *c = load_ok(cases[i].file ? f : NULL, args, env);
        if (strcmp(c->kafka_brokers, cases[i].brokers) != 0)
            print_error("case %zu: brokers %s\n", i, c->kafka_brokers);
        assert_string_equal(c->kafka_brokers, cases[i].brokers);
        assert_int_equal(c->poll_batch, cases[i].poll);
        config_free(c);
    }
}

static void test_flag_forms(void **state)
{
    (void)state;
    config_t *c = load_ok(NULL,
                          L("--postgres.dsn=host=db dbname=meter", "--meter.instance_id", "a=b",
                            "--log.level", "warn", "--postgres.auto_migrate=off"),
                          NULL);
    assert_string_equal(c->pg_dsn, "host=db dbname=meter"); /* split at the first '=' only */
    assert_string_equal(c->instance_id, "a=b");
    assert_string_equal(c->log_level, "warn");
    assert_false(c->pg_auto_migrate);
    config_free(c);
    /* An empty value is a value (refused later for a required key). */
    load_err("empty group", NULL, L("--kafka.group_id="), NULL, L("kafka.group_id"), NULL);
    /* The last of two flags wins. */
    c = load_ok(NULL, L("--meter.poll_batch=1", "--meter.poll_batch=2"), NULL);
    assert_int_equal(c->poll_batch, 2);
    config_free(c);
}

static void test_env_names(void **state)
{
    (void)state;
    config_t *c = load_ok(NULL, NULL,
                          L("METERD_POSTGRES_AUTO_MIGRATE=false", "METERD_LOG_LEVEL=error",
                            "METERD_KAFKA_INPUT_TOPIC=in", "METERD_KAFKA_DLQ_TOPIC=dlq",
                            "METERD_META_INSTANCE_ID=ignored", "METERD_KAFKA_BROKERSX=ignored",
                            "meterd_kafka_group_id=ignored", "PATH=/usr/bin"));
    assert_false(c->pg_auto_migrate);
    assert_string_equal(c->log_level, "error");
    assert_string_equal(c->kafka_input_topic, "in");
    assert_string_equal(c->kafka_dlq_topic, "dlq");
    assert_string_equal(c->kafka_brokers, "localhost:9092");
    assert_string_equal(c->kafka_group_id, "meterd");
    config_free(c);
}

static void test_config_file_selection(void **state)
{
    (void)state;
    const char *f1 = write_file("[kafka]\nbrokers = one\ngroup_id = g1\n");
    const char *f2 = write_file("[kafka]\nbrokers = two\n");
    char env1[160], eq2[160];
    snprintf(env1, sizeof(env1), "METERD_CONFIG=%s", f1);
    snprintf(eq2, sizeof(eq2), "--config=%s", f2);
    static const char *const empty_env[] = {"METERD_CONFIG=", NULL};
    const struct {
        const char *name;
        const char *const *args;
        const char *const *env;
        const char *brokers, *group;
    } cases[] = {
        {"-c", L("-c", f2), NULL, "two", "meterd"},
        {"--config", L("--config", f2), NULL, "two", "meterd"},
        {"--config=", L(eq2), NULL, "two", "meterd"},
        {"METERD_CONFIG", NULL, L(env1), "one", "g1"},
        {"-c beats METERD_CONFIG", L("-c", f2), L(env1), "two", "meterd"},
        {"empty METERD_CONFIG", NULL, empty_env, "localhost:9092", "meterd"},
        {"-c after a command", L("run", "-c", f2), NULL, "two", "meterd"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        config_t *c = load_ok(NULL, cases[i].args, cases[i].env);
        if (strcmp(c->kafka_brokers, cases[i].brokers) != 0)
            print_error("case \"%s\": brokers %s\n", cases[i].name, c->kafka_brokers);
        assert_string_equal(c->kafka_brokers, cases[i].brokers);
        assert_string_equal(c->kafka_group_id, cases[i].group);
        config_free(c);
    }
}

static void test_commands(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *args[5];
        config_cmd_t cmd;
    } cases[] = {
        {"none", {NULL}, CONFIG_CMD_RUN},
        {"run", {"run"}, CONFIG_CMD_RUN},
        {"migrate", {"migrate"}, CONFIG_CMD_MIGRATE},
        {"check-config", {"check-config"}, CONFIG_CMD_CHECK},
        {"--help", {"--help"}, CONFIG_CMD_HELP},
        {"-h", {"-h"}, CONFIG_CMD_HELP},
        {"--version", {"--version"}, CONFIG_CMD_VERSION},
        {"-V", {"-V"}, CONFIG_CMD_VERSION},
        {"flag value before command", {"--meter.poll_batch", "5", "migrate"}, CONFIG_CMD_MIGRATE},
        {"flag after command", {"check-config", "--meter.poll_batch=5"}, CONFIG_CMD_CHECK},
        /* Help works even when the rest of the command line would not. */
        {"help with a bad flag", {"--meter.nope=1", "--help"}, CONFIG_CMD_HELP},
        {"version after a command", {"migrate", "-V"}, CONFIG_CMD_VERSION},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        result_t r = load(NULL, cases[i].args, NULL);
        if (r.rc != 0 || r.cmd != cases[i].cmd)
            print_error("case \"%s\": rc %d cmd %d: %s\n", cases[i].name, r.rc, r.cmd, r.err);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.cmd, cases[i].cmd);
        assert_non_null(r.c);
        if (strstr(cases[i].name, "flag"))
            assert_int_equal(r.c->poll_batch, cases[i].cmd == CONFIG_CMD_HELP ? 2000 : 5);
        config_free(r.c);
    }
}

/* ---- refusals ----------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *file; /* INI text, or NULL */
        const char *args[6];
        const char *env[3];
        const char *want[3];
        const char *absent;
    } cases[] = {
        /* unknown keys */
        {"unknown key in file",
         "[kafka]\nbrokerz = x\n",
         {NULL},
         {NULL},
         {"kafka.brokerz", "unknown"},
         NULL},
        {"unknown section",
         "[kafak]\nbrokers = x\n",
         {NULL},
         {NULL},
         {"kafak", "unknown section"},
         NULL},
        {"unknown flag", NULL, {"--meter.nope=1"}, {NULL}, {"meter.nope", "unknown"}, NULL},
        {"key outside a section",
         "brokers = x\n",
         {NULL},
         {NULL},
         {"brokers", "outside a section"},
         NULL},
        {"not a secret key",
         NULL,
         {"--kafka.sasl_password=hunter2"},
         {NULL},
         {"kafka.sasl_password"},
         "hunter2"},
        /* bad values */
        {"bad integer",
         NULL,
         {"--meter.poll_batch=12x"},
         {NULL},
         {"meter.poll_batch", "not an integer"},
         NULL},
        {"empty integer",
         NULL,
         {"--meter.poll_batch="},
         {NULL},
         {"meter.poll_batch", "not an integer"},
         NULL},
        {"fractional integer",
         NULL,
         {"--meter.flush_interval_ms=1.5"},
         {NULL},
         {"meter.flush_interval_ms"},
         NULL},
        {"hex integer", NULL, {"--meter.poll_batch=0x10"}, {NULL}, {"meter.poll_batch"}, NULL},
        {"trailing space", NULL, {"--meter.poll_batch=5 "}, {NULL}, {"meter.poll_batch"}, NULL},
        {"integer overflow",
         NULL,
         {"--meter.poll_batch=99999999999999999999"},
         {NULL},
         {"meter.poll_batch"},
         NULL},
        {"bad integer in env",
         NULL,
         {NULL},
         {"METERD_KAFKA_SESSION_TIMEOUT_MS=abc"},
         {"kafka.session_timeout_ms", "METERD_KAFKA_SESSION_TIMEOUT_MS"},
         NULL},
        {"bad integer in file",
         "[meter]\npoll_batch = many\n",
         {NULL},
         {NULL},
         {"meter.poll_batch", "config file", "line 2"},
         NULL},
        {"bad bool",
         NULL,
         {"--postgres.auto_migrate=maybe"},
         {NULL},
         {"postgres.auto_migrate", "boolean"},
         NULL},
        {"empty bool", NULL, {"--postgres.auto_migrate="}, {NULL}, {"postgres.auto_migrate"}, NULL},
        {"bool 2",
         NULL,
         {NULL},
         {"METERD_POSTGRES_AUTO_MIGRATE=2"},
         {"postgres.auto_migrate"},
         NULL},
        {"bad log level", NULL, {"--log.level=verbose"}, {NULL}, {"log.level", "verbose"}, NULL},
        {"log level case", NULL, {"--log.level=INFO"}, {NULL}, {"log.level"}, NULL},
        {"log level warning", "[log]\nlevel = warning\n", {NULL}, {NULL}, {"log.level"}, NULL},
        /* required and cross-key rules */
        {"empty brokers", NULL, {"--kafka.brokers="}, {NULL}, {"kafka.brokers", "empty"}, NULL},
        {"empty input topic",
         NULL,
         {NULL},
         {"METERD_KAFKA_INPUT_TOPIC="},
         {"kafka.input_topic", "empty"},
         NULL},
        {"empty dlq topic",
         "[kafka]\ndlq_topic =\n",
         {NULL},
         {NULL},
         {"kafka.dlq_topic", "empty"},
         NULL},
        {"empty prices file",
         NULL,
         {"--meter.prices_file="},
         {NULL},
         {"meter.prices_file", "empty"},
         NULL},
        {"dlq is input",
         NULL,
         {"--kafka.dlq_topic=usage.events"},
         {NULL},
         {"kafka.dlq_topic", "kafka.input_topic"},
         NULL},
        {"input is dlq",
         NULL,
         {"--kafka.input_topic=x", "--kafka.dlq_topic=x"},
         {NULL},
         {"kafka.dlq_topic"},
         NULL},
        {"pending below flush",
         NULL,
         {"--meter.max_pending_events=10", "--meter.flush_max_events=11"},
         {NULL},
         {"meter.max_pending_events", "meter.flush_max_events"},
         NULL},
        /* secrets */
        {"secret in [kafka.consumer]",
         "[kafka.consumer]\nsasl.password = hunter2\n",
         {NULL},
         {NULL},
         {"kafka.consumer.sasl.password"},
         "hunter2"},
        {"secret in [kafka.producer]",
         "[kafka.producer]\nssl.key.password = hunter2\n",
         {NULL},
         {NULL},
         {"kafka.producer.ssl.key.password"},
         "hunter2"},
        {"key pem in file",
         "[kafka.consumer]\nssl.key.pem = hunter2\n",
         {NULL},
         {NULL},
         {"kafka.consumer.ssl.key.pem"},
         "hunter2"},
        {"secret flag",
         NULL,
         {"--kafka.consumer.sasl.password=hunter2"},
         {NULL},
         {"kafka.consumer.sasl.password"},
         "hunter2"},
        {"oauth secret flag",
         NULL,
         {"--kafka.producer.sasl.oauthbearer.client.secret=hunter2"},
         {NULL},
         {"kafka.producer.sasl.oauthbearer.client.secret"},
         "hunter2"},
        {"password in dsn",
         NULL,
         {"--postgres.dsn=host=db password=hunter2"},
         {NULL},
         {"postgres.dsn", "password"},
         "hunter2"},
        {"password in dsn (env)",
         NULL,
         {NULL},
         {"METERD_POSTGRES_DSN=password=hunter2 host=db"},
         {"postgres.dsn"},
         "hunter2"},
        {"password in dsn (file)",
         "[postgres]\ndsn = host=db password=hunter2\n",
         {NULL},
         {NULL},
         {"postgres.dsn"},
         "hunter2"},
        {"missing pg password file",
         NULL,
         {"--postgres.password_file=/nonexistent/pw"},
         {NULL},
         {"postgres.password_file", "/nonexistent/pw"},
         NULL},
        {"missing sasl password file",
         NULL,
         {"--kafka.sasl_password_file=/nonexistent/sasl"},
         {NULL},
         {"kafka.sasl_password_file", "/nonexistent/sasl"},
         NULL},
        {"sasl user without password",
         NULL,
         {"--kafka.sasl_username=svc"},
         {NULL},
         {"kafka.sasl_username", "password"},
         NULL},
        /* command line */
        {"unknown command", NULL, {"serve"}, {NULL}, {"serve"}, NULL},
        {"two commands", NULL, {"run", "migrate"}, {NULL}, {"migrate"}, NULL},
        {"flag without value",
         NULL,
         {"--meter.poll_batch"},
         {NULL},
         {"meter.poll_batch", "value"},
         NULL},
        {"-c without file", NULL, {"-c"}, {NULL}, {"-c"}, NULL},
        {"--config without file", NULL, {"--config"}, {NULL}, {"--config"}, NULL},
        {"missing config file",
         NULL,
         {"-c", "/nonexistent/meterd.ini"},
         {NULL},
         {"/nonexistent/meterd.ini"},
         NULL},
        {"missing config file (env)",
         NULL,
         {NULL},
         {"METERD_CONFIG=/nonexistent/m.ini"},
         {"/nonexistent/m.ini"},
         NULL},
        {"unclosed section",
         "[kafka]\nbrokers = x\n[meter\n",
         {NULL},
         {NULL},
         {"line 3", "]"},
         NULL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const char *f = cases[i].file ? write_file(cases[i].file) : NULL;
        load_err(cases[i].name, f, cases[i].args, cases[i].env, cases[i].want, cases[i].absent);
    }
}

/* Every integer key accepts both ends of its range and refuses one beyond, from flags and from
 * the environment. */
static void test_int_bounds(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        size_t off;
        int64_t min, max;
        const char *companion; /* a flag that keeps the cross-key rules satisfied */
    } cases[] = {
        {"kafka.session_timeout_ms", offsetof(config_t, kafka_session_timeout_ms), 1000, 3600000,
         NULL},
        {"kafka.fetch_wait_max_ms", offsetof(config_t, kafka_fetch_wait_max_ms), 1, 10000, NULL},
        {"postgres.reconnect_max_ms", offsetof(config_t, pg_reconnect_max_ms), 100, 600000, NULL},
        {"postgres.statement_timeout_ms", offsetof(config_t, pg_statement_timeout_ms), 0, 3600000,
         NULL},
        {"meter.flush_interval_ms", offsetof(config_t, flush_interval_ms), 10, 600000, NULL},
        {"meter.flush_max_events", offsetof(config_t, flush_max_events), 1, 10000000,
         "--meter.max_pending_events=100000000"},
        {"meter.max_pending_events", offsetof(config_t, max_pending_events), 1, 100000000,
         "--meter.flush_max_events=1"},
        {"meter.max_event_bytes", offsetof(config_t, max_event_bytes), 64, 16777216, NULL},
        {"meter.poll_batch", offsetof(config_t, poll_batch), 1, 1000000, NULL},
        {"meter.revoke_timeout_ms", offsetof(config_t, revoke_timeout_ms), 0, 600000, NULL},
        {"meter.stats_interval_ms", offsetof(config_t, stats_interval_ms), 0, 3600000, NULL},
        {"meter.shutdown_timeout_ms", offsetof(config_t, shutdown_timeout_ms), 100, 600000, NULL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const int64_t values[4] = {cases[i].min, cases[i].max, cases[i].min - 1, cases[i].max + 1};
        for (int v = 0; v < 4; v++) {
            char flag[128], env[128], envname[64];
            snprintf(flag, sizeof(flag), "--%s=%lld", cases[i].key, (long long)values[v]);
            size_t n = (size_t)snprintf(envname, sizeof(envname), "METERD_");
            for (const char *p = cases[i].key; *p; p++)
                envname[n++] = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            envname[n] = '\0';
            snprintf(env, sizeof(env), "%s=%lld", envname, (long long)values[v]);
            const char *args[3] = {flag, cases[i].companion, NULL};
            const char *flagless[2] = {cases[i].companion, NULL};
            const char *envs[2] = {env, NULL};
            if (v < 2) {
                config_t *c = load_ok(NULL, args, NULL);
                assert_int_equal(*(const int64_t *)((const char *)c + cases[i].off), values[v]);
                config_free(c);
                c = load_ok(NULL, flagless, envs);
                assert_int_equal(*(const int64_t *)((const char *)c + cases[i].off), values[v]);
                config_free(c);
            } else {
                load_err(flag, NULL, args, NULL, L(cases[i].key, "outside"), NULL);
                load_err(env, NULL, flagless, envs, L(cases[i].key, envname), NULL);
            }
        }
    }
}

static void test_bools(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool v;
    } cases[] = {
        {"true", true}, {"yes", true}, {"on", true},     {"1", true},
        {"TRUE", true}, {"Yes", true}, {"false", false}, {"no", false},
        {"off", false}, {"0", false},  {"FALSE", false}, {"Off", false},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--postgres.auto_migrate=%s", cases[i].s);
        config_t *c = load_ok(NULL, L(flag), NULL);
        assert_int_equal(c->pg_auto_migrate, cases[i].v);
        config_free(c);
    }
}

/* ---- secrets -------------------------------------------------------------------------------- */

static void test_password_files(void **state)
{
    (void)state;
    static const struct {
        const char *content, *want;
    } cases[] = {
        {"s3cret\nsecond line\n", "s3cret"},   {"s3cret", "s3cret"},
        {"crlf\r\nnext\r\n", "crlf"},          {"with spaces and = ; #\n", "with spaces and = ; #"},
        {"\nafter an empty first line\n", ""},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const char *f = write_file(cases[i].content);
        char pg[160], sasl[160];
        snprintf(pg, sizeof(pg), "--postgres.password_file=%s", f);
        snprintf(sasl, sizeof(sasl), "--kafka.sasl_password_file=%s", f);
        config_t *c = load_ok(NULL, L(pg, sasl, "--kafka.sasl_username=svc"), NULL);
        assert_non_null(c->pg_password);
        assert_string_equal(c->pg_password, cases[i].want);
        assert_non_null(c->kafka_sasl_password);
        assert_string_equal(c->kafka_sasl_password, cases[i].want);
        assert_string_equal(c->kafka_sasl_username, "svc");
        assert_string_equal(c->pg_password_file, f);
        config_free(c);
    }
}

static void test_sasl_password_sources(void **state)
{
    (void)state;
    const char *f = write_file("from-file\n");
    char sasl[160];
    snprintf(sasl, sizeof(sasl), "--kafka.sasl_password_file=%s", f);
    /* From the environment. */
    config_t *c = load_ok(NULL, L("--kafka.sasl_username=svc"), L("METERD_KAFKA_SASL_PASSWORD=pw"));
    assert_string_equal(c->kafka_sasl_password, "pw");
    config_free(c);
    /* The file, when given, is used. */
    c = load_ok(NULL, L("--kafka.sasl_username=svc", sasl), L("METERD_KAFKA_SASL_PASSWORD=pw"));
    assert_string_equal(c->kafka_sasl_password, "from-file");
    config_free(c);
    /* The password file named in the environment. */
    char env[192];
    snprintf(env, sizeof(env), "METERD_KAFKA_SASL_PASSWORD_FILE=%s", f);
    c = load_ok(NULL, L("--kafka.sasl_username=svc"), L(env));
    assert_string_equal(c->kafka_sasl_password, "from-file");
    config_free(c);
    /* PGPASSWORD is libpq's business: config does not copy it. */
    c = load_ok(NULL, NULL, L("PGPASSWORD=x"));
    assert_null(c->pg_password);
    config_free(c);
}

/* A password in URI form (postgresql://user:secret@host/db) is refused like the key=value
 * form, and the refusal does not repeat it. */
static void test_dsn_uri_password(void **state)
{
    (void)state;
    static const char *const dsns[] = {
        "--postgres.dsn=postgresql://meter:hunter2@db/meter",
        "--postgres.dsn=postgres://meter:hunter2@db:5432/meter?sslmode=require",
    };
    for (size_t i = 0; i < N_ELEMS(dsns); i++) {
        load_err(dsns[i], NULL, L(dsns[i]), NULL, L("postgres.dsn"), "hunter2");
    }
    /* A URI without a password is fine, and so is the word in another value. */
    config_t *c = load_ok(NULL, L("--postgres.dsn=postgresql://meter@db/meter"), NULL);
    config_free(c);
    c = load_ok(NULL, L("--postgres.dsn=dbname=password_reset"), NULL);
    config_free(c);
    /* What libpq cannot parse is refused at start, naming the key. */
    load_err("--postgres.dsn=host", NULL, L("--postgres.dsn=host"), NULL, L("postgres.dsn"), NULL);
}

/* ---- pass-through properties -------------------------------------------------------------- */

static void test_props(void **state)
{
    (void)state;
    const char *f = write_file("[kafka.consumer]\n"
                               "fetch.min.bytes = 1\n"
                               "statistics.interval.ms = 0\n"
                               "[kafka.producer]\n"
                               "linger.ms = 5\n");
    config_t *c = load_ok(f,
                          L("--kafka.producer.linger.ms=10", "--kafka.consumer.client.rack=r1",
                            "--kafka.producer.compression.type", "zstd"),
                          NULL);
    static const struct {
        const char *key, *value;
    } consumer[] = {{"fetch.min.bytes", "1"},
                    {"statistics.interval.ms", "0"},
                    {"client.rack", "r1"}},
      producer[] = {{"linger.ms", "10"}, {"compression.type", "zstd"}};
    assert_int_equal(c->consumer_props.n, N_ELEMS(consumer));
    for (size_t i = 0; i < N_ELEMS(consumer); i++) {
        assert_string_equal(c->consumer_props.items[i].key, consumer[i].key);
        assert_string_equal(c->consumer_props.items[i].value, consumer[i].value);
    }
    assert_int_equal(c->producer_props.n, N_ELEMS(producer));
    for (size_t i = 0; i < N_ELEMS(producer); i++) {
        assert_string_equal(c->producer_props.items[i].key, producer[i].key);
        assert_string_equal(c->producer_props.items[i].value, producer[i].value);
    }
    config_free(c);
    /* A prefix without a property name is not a property. */
    load_err("empty property", NULL, L("--kafka.consumer.=1"), NULL, L("kafka.consumer."), NULL);
}

/* ---- printing ------------------------------------------------------------------------------- */

static char *print_to_string(const config_t *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_print(c, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_print_redacts(void **state)
{
    (void)state;
    const char *pw = write_file("PgSecret99\n");
    char pwflag[160];
    snprintf(pwflag, sizeof(pwflag), "--postgres.password_file=%s", pw);
    config_t *c = load_ok(NULL,
                          L("--kafka.sasl_username=svc", pwflag,
                            "--kafka.consumer.fetch.min.bytes=1", "--meter.instance_id=node-1"),
                          L("METERD_KAFKA_SASL_PASSWORD=TopSecret42"));
    assert_string_equal(c->kafka_sasl_password, "TopSecret42");
    assert_string_equal(c->pg_password, "PgSecret99");
    char *out = print_to_string(c);
    if (strstr(out, "TopSecret42") || strstr(out, "PgSecret99"))
        print_error("secret printed:\n%s\n", out);
    assert_null(strstr(out, "TopSecret42"));
    assert_null(strstr(out, "PgSecret99"));
    assert_int_equal(count(out, "<redacted>"), 2);
    assert_non_null(strstr(out, "[kafka]\nbrokers = localhost:9092\n"));
    assert_non_null(strstr(out, "\nsasl_username = svc\n"));
    assert_non_null(strstr(out, "\nauto_migrate = true\n"));
    assert_non_null(strstr(out, "\n[meter]\ninstance_id = node-1\n"));
    assert_non_null(strstr(out, "\npoll_batch = 2000\n"));
    assert_non_null(strstr(out, "\n[log]\nlevel = info\n"));
    assert_non_null(strstr(out, "\n[kafka.consumer]\nfetch.min.bytes = 1\n"));
    assert_null(strstr(out, "[kafka.producer]")); /* no producer properties */
    free(out);
    config_free(c);

    /* Without secrets, nothing claims to be redacted. */
    c = load_ok(NULL, NULL, NULL);
    out = print_to_string(c);
    assert_int_equal(count(out, "<redacted>"), 0);
    free(out);
    config_free(c);
}

/* What check-config prints loads back to the same configuration. */
static void test_print_round_trip(void **state)
{
    (void)state;
    config_t *c = load_ok(NULL,
                          L("--kafka.brokers=b1:9092,b2:9092", "--postgres.auto_migrate=no",
                            "--meter.poll_batch=17", "--log.level=debug",
                            "--postgres.dsn=host=db dbname=meter", "--kafka.producer.linger.ms=3",
                            "--meter.instance_id=n1"),
                          NULL);
    char *out1 = print_to_string(c);
    config_free(c);
    const char *f = write_file(out1);
    c = load_ok(f, NULL, NULL);
    char *out2 = print_to_string(c);
    if (strcmp(out1, out2) != 0)
        print_error("first:\n%s\nsecond:\n%s\n", out1, out2);
    assert_string_equal(out1, out2);
    assert_int_equal(c->poll_batch, 17);
    assert_false(c->pg_auto_migrate);
    free(out1);
    free(out2);
    config_free(c);
}

/* ---- the key table ----------------------------------------------------------------------- */

static const char *const all_keys[] = {
    "kafka.brokers",
    "kafka.group_id",
    "kafka.input_topic",
    "kafka.dlq_topic",
    "kafka.session_timeout_ms",
    "kafka.fetch_wait_max_ms",
    "kafka.sasl_username",
    "kafka.sasl_password_file",
    "postgres.dsn",
    "postgres.password_file",
    "postgres.auto_migrate",
    "postgres.reconnect_max_ms",
    "postgres.statement_timeout_ms",
    "meter.instance_id",
    "meter.prices_file",
    "meter.flush_interval_ms",
    "meter.flush_max_events",
    "meter.max_pending_events",
    "meter.max_event_bytes",
    "meter.poll_batch",
    "meter.revoke_timeout_ms",
    "meter.stats_interval_ms",
    "meter.shutdown_timeout_ms",
    "log.level",
};

typedef struct {
    size_t n;
    const char *keys[64], *defs[64], *docs[64];
} visit_t;

static void visit(const char *key, const char *def, const char *doc, void *arg)
{
    visit_t *v = arg;
    assert_true(v->n < 64);
    v->keys[v->n] = key;
    v->defs[v->n] = def;
    v->docs[v->n] = doc;
    v->n++;
}

static void test_each_key(void **state)
{
    (void)state;
    visit_t v = {0};
    config_each_key(visit, &v);
    /* Keys may be added; the documented ones stay, in table order. */
    assert_true(v.n >= N_ELEMS(all_keys));
    size_t k = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (k < N_ELEMS(all_keys) && strcmp(v.keys[i], all_keys[k]) == 0)
            k++;
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(v.keys[i], v.keys[j]);
        assert_non_null(v.defs[i]);
        assert_non_null(v.docs[i]);
        assert_true(strlen(v.docs[i]) > 10);
    }
    if (k != N_ELEMS(all_keys))
        print_error("key \"%s\" missing or out of order\n", all_keys[k]);
    assert_int_equal(k, N_ELEMS(all_keys));
    /* Each key is settable by flag and environment (to its default), and check-config prints
     * it exactly once, with its default value, under its section. */
    config_t *dc = load_ok(NULL, NULL, NULL);
    char *out = print_to_string(dc);
    config_free(dc);
    for (size_t i = 0; i < v.n; i++) {
        char flag[256], env[256];
        snprintf(flag, sizeof(flag), "--%s=%s", v.keys[i], v.defs[i]);
        config_t *c = load_ok(NULL, L(flag), NULL);
        config_free(c);
        size_t n = (size_t)snprintf(env, sizeof(env), "METERD_");
        for (const char *p = v.keys[i]; *p; p++)
            env[n++] = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        snprintf(env + n, sizeof(env) - n, "=%s", v.defs[i]);
        c = load_ok(NULL, NULL, L(env));
        config_free(c);

        const char *dot = strchr(v.keys[i], '.');
        assert_non_null(dot);
        char section[64], line[256];
        snprintf(section, sizeof(section), "[%.*s]\n", (int)(dot - v.keys[i]), v.keys[i]);
        const char *sec = strstr(out, section);
        assert_non_null(sec);
        const char *sec_end = strstr(sec + 1, "\n[");
        if (!sec_end)
            sec_end = sec + strlen(sec);
        snprintf(line, sizeof(line), "\n%s = ", dot + 1);
        const char *at = strstr(sec, line);
        assert_non_null(at);
        assert_true(at < sec_end);
        assert_int_equal(count(out, line), 1);
        if (strcmp(v.keys[i], "meter.instance_id") != 0) { /* filled in: hostname:pid */
            snprintf(line, sizeof(line), "\n%s = %s\n", dot + 1, v.defs[i]);
            assert_non_null(strstr(sec, line));
        }
    }
    /* ...and prints no setting that is not a visited key. */
    size_t settings = 0;
    for (const char *line = out; *line; line = strchr(line, '\n') + 1) {
        if (*line != '[' && *line != ';' && *line != '\n')
            settings++;
        if (!strchr(line, '\n'))
            break;
    }
    assert_int_equal(settings, v.n);
    free(out);
}

static void test_usage(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_usage(f, "meterd-x");
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(buf, "usage: meterd-x "));
    static const char *const mentions[] = {"--config", "run",       "migrate", "check-config",
                                           "--help",   "--version", "METERD_"};
    for (size_t i = 0; i < N_ELEMS(mentions); i++)
        assert_non_null(strstr(buf, mentions[i]));
    free(buf);
}

static void test_read_file(void **state)
{
    (void)state;
    /* Larger than the initial 4 KiB buffer. */
    static char content[10001];
    for (size_t i = 0; i < 10000; i++)
        content[i] = (char)('a' + i % 26);
    const char *f = write_file(content);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(config_read_file(f, &buf, &len), 0);
    assert_int_equal(len, 10000);
    assert_memory_equal(buf, content, 10000);
    assert_int_equal(buf[len], '\0');
    free(buf);
    const char *empty = write_file("");
    assert_int_equal(config_read_file(empty, &buf, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    free(buf);
    assert_int_equal(config_read_file("/nonexistent/file", &buf, &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_file_sets_keys),
        cmocka_unit_test(test_precedence),       cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_env_names),        cmocka_unit_test(test_config_file_selection),
        cmocka_unit_test(test_commands),         cmocka_unit_test(test_errors),
        cmocka_unit_test(test_int_bounds),       cmocka_unit_test(test_bools),
        cmocka_unit_test(test_password_files),   cmocka_unit_test(test_sasl_password_sources),
        cmocka_unit_test(test_dsn_uri_password), cmocka_unit_test(test_props),
        cmocka_unit_test(test_print_redacts),    cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_each_key),         cmocka_unit_test(test_usage),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
