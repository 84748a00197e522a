/*
 * test_log — unit tests of the JSON-lines logger (daemon/log.c).
 *
 * Lines are captured with open_memstream. Every line is checked by a small validator written
 * here for the flat objects the logger produces ({"key":value,...} with string, integer and
 * null values, RFC 8259 string escapes) and must end with "}\n"; content is then compared
 * exactly, after the timestamp, which is checked for shape and closeness to the clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "log.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define LINE_MAX_  4096 /* log.c's line buffer */

/* ---- capture ------------------------------------------------------------------------------ */

typedef struct {
    FILE *f;
    char *buf;
    size_t size;
    size_t taken;
    char *last; /* the text of the last take, NUL-terminated */
} capture_t;

static void cap_open(capture_t *c)
{
    memset(c, 0, sizeof(*c));
    c->f = open_memstream(&c->buf, &c->size);
    assert_non_null(c->f);
}

/* The text written since the previous take. */
static const char *cap_take(capture_t *c)
{
    assert_int_equal(fflush(c->f), 0);
    free(c->last);
    size_t n = c->size - c->taken;
    c->last = malloc(n + 1);
    assert_non_null(c->last);
    memcpy(c->last, c->buf + c->taken, n);
    c->last[n] = '\0';
    c->taken = c->size;
    return c->last;
}

static void cap_close(capture_t *c)
{
    fclose(c->f);
    free(c->buf);
    free(c->last);
}

/* ---- a minimal validator ---------------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Skips a JSON string at *p; returns 0, -1 when malformed. */
static int skip_string(const char **p)
{
    const char *s = *p;
    if (*s++ != '"')
        return -1;
    for (;;) {
        unsigned char ch = (unsigned char)*s++;
        if (ch == '"')
            break;
        if (ch < 0x20)
            return -1; /* includes the terminating NUL: unterminated string */
        if (ch == '\\') {
            char e = *s++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++)
                    if (hexval(*s++) < 0)
                        return -1;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return -1;
            }
        }
    }
    *p = s;
    return 0;
}

/* A line of the logger's shape: one flat JSON object followed by exactly one newline. Returns
 * NULL when valid, else a reason. */
static const char *json_line_error(const char *line)
{
    const char *p = line;
    if (*p++ != '{')
        return "does not start with {";
    if (*p == '}')
        return "empty object";
    for (;;) {
        if (skip_string(&p) < 0)
            return "bad key";
        if (*p++ != ':')
            return "no colon";
        if (*p == '"') {
            if (skip_string(&p) < 0)
                return "bad string value";
        } else if (strncmp(p, "null", 4) == 0 || strncmp(p, "true", 4) == 0) {
            p += 4;
        } else {
            if (*p == '-')
                p++;
            if (*p < '0' || *p > '9')
                return "bad value";
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != '}')
            return "no closing }";
        break;
    }
    if (*p++ != '\n')
        return "no newline after }";
    if (*p != '\0')
        return "text after the line";
    return NULL;
}

static void assert_json_line(const char *line)
{
    const char *why = json_line_error(line);
    if (why)
        print_error("invalid line (%s): %s\n", why, line);
    assert_null(why);
    assert_true(strlen(line) <= LINE_MAX_);
}

/* Checks the timestamp and returns what follows it: ,"level":... */
static const char *after_ts(const char *line)
{
    static const char prefix[] = "{\"ts\":\"";
    assert_memory_equal(line, prefix, sizeof(prefix) - 1);
    const char *ts = line + sizeof(prefix) - 1;
    /* YYYY-MM-DDTHH:MM:SS.mmmZ */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd')
            assert_true(ts[i] >= '0' && ts[i] <= '9');
        else
            assert_int_equal(ts[i], shape[i]);
    }
    assert_int_equal(ts[24], '"');
    /* UTC and close to now. */
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = (int)strtol(ts, NULL, 10) - 1900;
    tm.tm_mon = (int)strtol(ts + 5, NULL, 10) - 1;
    tm.tm_mday = (int)strtol(ts + 8, NULL, 10);
    tm.tm_hour = (int)strtol(ts + 11, NULL, 10);
    tm.tm_min = (int)strtol(ts + 14, NULL, 10);
    tm.tm_sec = (int)strtol(ts + 17, NULL, 10);
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    assert_true(t <= now + 1 && t >= now - 5);
    return ts + 25;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_line_shape(void **state)
{
    (void)state;
    capture_t c;
    cap_open(&c);
    log_t *lg = log_new(c.f, LOG_LEVEL_DEBUG);
    assert_non_null(lg);
    LOG_INFO(lg, "flush committed", LI("events", 42), LS("topic", "usage.events"));
    const char *line = cap_take(&c);
    assert_json_line(line);
    assert_string_equal(after_ts(line), ",\"level\":\"info\",\"msg\":\"flush committed\","
                                        "\"events\":42,\"topic\":\"usage.events\"}\n");
    /* No fields at all. */
    log_emit(lg, LOG_LEVEL_ERROR, "bare", (const log_kv_t[]){LNONE});
    line = cap_take(&c);
    assert_json_line(line);
    assert_string_equal(after_ts(line), ",\"level\":\"error\",\"msg\":\"bare\"}\n");
    log_emit(lg, LOG_LEVEL_WARN, "no kvs", NULL);
    line = cap_take(&c);
    assert_json_line(line);
    assert_string_equal(after_ts(line), ",\"level\":\"warn\",\"msg\":\"no kvs\"}\n");
    /* Two calls, two lines. */
    LOG_DEBUG(lg, "a", LI("n", 1));
    LOG_DEBUG(lg, "b", LI("n", 2));
    line = cap_take(&c);
    const char *nl = strchr(line, '\n');
    assert_non_null(nl);
    assert_string_equal(after_ts(nl + 1), ",\"level\":\"debug\",\"msg\":\"b\",\"n\":2}\n");
    log_free(lg);
    cap_close(&c);
}

static void test_integers(void **state)
{
    (void)state;
    static const struct {
        long long v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {-1, "-1"},
        {1234567890123LL, "1234567890123"},
        {9223372036854775807LL, "9223372036854775807"},
        {-9223372036854775807LL - 1, "-9223372036854775808"},
    };
    capture_t c;
    cap_open(&c);
    log_t *lg = log_new(c.f, LOG_LEVEL_DEBUG);
    assert_non_null(lg);
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        LOG_INFO(lg, "m", LI("v", cases[i].v));
        const char *line = cap_take(&c);
        assert_json_line(line);
        char want[128];
        snprintf(want, sizeof(want), ",\"level\":\"info\",\"msg\":\"m\",\"v\":%s}\n",
                 cases[i].want);
        assert_string_equal(after_ts(line), want);
    }
    log_free(lg);
    cap_close(&c);
}

static void test_escaping(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *want; /* the JSON string, quotes included */
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"", 0, "\"\""},
        {"a\"b", 3, "\"a\\\"b\""},
        {"a\\b", 3, "\"a\\\\b\""},
        {"line1\nline2", 11, "\"line1\\nline2\""},
        {"\r\t", 2, "\"\\u000d\\u0009\""},
        {"\x01\x1f", 2, "\"\\u0001\\u001f\""},
        {"nul\0x", 5, "\"nul\\u0000x\""},
        {"\x7f", 1, "\"\\u007f\""},
        {"caf\xc3\xa9", 5, "\"caf\\u00c3\\u00a9\""}, /* bytes, not code points */
        {"\xff\xfe", 2, "\"\\u00ff\\u00fe\""},
        {"/ ~ {}", 6, "\"/ ~ {}\""},
        {"\"}\n{\"evil\":1", 12, "\"\\\"}\\n{\\\"evil\\\":1\""},
    };
    capture_t c;
    cap_open(&c);
    log_t *lg = log_new(c.f, LOG_LEVEL_DEBUG);
    assert_non_null(lg);
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char want[256];
        /* As a value. */
        LOG_INFO(lg, "m", LSN("v", cases[i].in, cases[i].len));
        const char *line = cap_take(&c);
        assert_json_line(line);
        snprintf(want, sizeof(want), ",\"level\":\"info\",\"msg\":\"m\",\"v\":%s}\n",
                 cases[i].want);
        if (strcmp(after_ts(line), want) != 0)
            print_error("case %zu (value): %s", i, line);
        assert_string_equal(after_ts(line), want);
        if (memchr(cases[i].in, '\0', cases[i].len))
            continue; /* msg and keys are NUL-terminated */
        char nul_terminated[64];
        memcpy(nul_terminated, cases[i].in, cases[i].len);
        nul_terminated[cases[i].len] = '\0';
        /* As the message and as a key. */
        log_emit(lg, LOG_LEVEL_INFO, nul_terminated,
                 (const log_kv_t[]){LI(nul_terminated, 1), LNONE});
        line = cap_take(&c);
        assert_json_line(line);
        snprintf(want, sizeof(want), ",\"level\":\"info\",\"msg\":%s,%s:1}\n", cases[i].want,
                 cases[i].want);
        if (strcmp(after_ts(line), want) != 0)
            print_error("case %zu (msg, key): %s", i, line);
        assert_string_equal(after_ts(line), want);
    }
    log_free(lg);
    cap_close(&c);
}

static void test_strings_null_and_length(void **state)
{
    (void)state;
    capture_t c;
    cap_open(&c);
    log_t *lg = log_new(c.f, LOG_LEVEL_DEBUG);
    assert_non_null(lg);
    const char *none = NULL;
    LOG_INFO(lg, "m", LS("a", none), LSN("b", none, 5), LSN("c", "abcdef", 3), LSN("d", "xyz", 0),
             LS("e", "full"));
    const char *line = cap_take(&c);
    assert_json_line(line);
    assert_string_equal(after_ts(line), ",\"level\":\"info\",\"msg\":\"m\",\"a\":null,"
                                        "\"b\":null,\"c\":\"abc\",\"d\":\"\",\"e\":\"full\"}\n");
    log_free(lg);
    cap_close(&c);
}

static void test_level_filter(void **state)
{
    (void)state;
    static const log_level_t levels[] = {LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN,
                                         LOG_LEVEL_ERROR};
    static const char *const names[] = {"debug", "info", "warn", "error"};
    capture_t c;
    cap_open(&c);
    for (size_t min = 0; min < N_ELEMS(levels); min++) {
        log_t *lg = log_new(c.f, LOG_LEVEL_ERROR);
        assert_non_null(lg);
        log_set_level(lg, levels[min]);
        for (size_t at = 0; at < N_ELEMS(levels); at++) {
            int evaluated = 0;
            LOG_AT(lg, levels[at], "x", LI("n", ++evaluated));
            const char *line = cap_take(&c);
            bool want = at >= min;
            assert_int_equal(log_enabled(lg, levels[at]), want);
            /* A filtered call does not even evaluate its fields. */
            assert_int_equal(evaluated, want ? 1 : 0);
            if (!want) {
                assert_string_equal(line, "");
                continue;
            }
            assert_json_line(line);
            char expect[96];
            snprintf(expect, sizeof(expect), ",\"level\":\"%s\",\"msg\":\"x\",\"n\":1}\n",
                     names[at]);
            assert_string_equal(after_ts(line), expect);
        }
        log_free(lg);
    }
    assert_false(log_enabled(NULL, LOG_LEVEL_ERROR));
    cap_close(&c);
}

static void test_level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc;
        log_level_t level;
    } cases[] = {
        {"debug", 0, LOG_LEVEL_DEBUG},
        {"info", 0, LOG_LEVEL_INFO},
        {"warn", 0, LOG_LEVEL_WARN},
        {"warning", 0, LOG_LEVEL_WARN},
        {"error", 0, LOG_LEVEL_ERROR},
        {"", -1, 0},
        {"INFO", -1, 0},
        {"fatal", -1, 0},
        {"info ", -1, 0},
        {"err", -1, 0},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        log_level_t l = (log_level_t)99;
        int rc = log_level_parse(cases[i].s, &l);
        if (rc != cases[i].rc)
            print_error("case \"%s\": rc %d\n", cases[i].s, rc);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(l, rc == 0 ? cases[i].level : (log_level_t)99);
    }
}

/* A field that does not fit in the 4 KiB line is dropped whole, with the fields after it, and
 * the line says so and stays valid. */
static void test_truncation(void **state)
{
    (void)state;
    capture_t c;
    cap_open(&c);
    log_t *lg = log_new(c.f, LOG_LEVEL_DEBUG);
    assert_non_null(lg);
    char *big = malloc(5001);
    assert_non_null(big);
    memset(big, 'x', 5000);
    big[5000] = '\0';
    LOG_WARN(lg, "m", LI("before", 1), LS("big", big), LI("after", 2));
    const char *line = cap_take(&c);
    assert_json_line(line);
    assert_string_equal(after_ts(line), ",\"level\":\"warn\",\"msg\":\"m\",\"before\":1,"
                                        "\"truncated\":true}\n");
    /* Escapes multiply the length: 1500 quotes need 3000 bytes, 700 control bytes 4200. */
    memset(big, '"', 1500);
    big[1500] = '\0';
    LOG_WARN(lg, "m", LS("q", big));
    line = cap_take(&c);
    assert_json_line(line);
    assert_null(strstr(line, "truncated"));
    assert_non_null(strstr(line, "\"q\":\"\\\"\\\""));
    memset(big, '\x01', 700);
    big[700] = '\0';
    LOG_WARN(lg, "m", LS("ctl", big), LI("after", 2));
    line = cap_take(&c);
    assert_json_line(line);
    assert_string_equal(after_ts(line), ",\"level\":\"warn\",\"msg\":\"m\",\"truncated\":true}\n");
    free(big);
    log_free(lg);
    cap_close(&c);
}

/* Every value length around the buffer size, plain and escaped: the line is always valid,
 * never longer than the buffer, and a value is either complete or absent. */
static void test_truncation_sweep(void **state)
{
    (void)state;
    capture_t c;
    cap_open(&c);
    log_t *lg = log_new(c.f, LOG_LEVEL_DEBUG);
    assert_non_null(lg);
    static char val[4200];
    static const char fill[] = {'a', '"', '\x02'};
    int kept = 0, dropped = 0;
    for (size_t f = 0; f < N_ELEMS(fill); f++) {
        memset(val, fill[f], sizeof(val));
        size_t unit = fill[f] == 'a' ? 1 : fill[f] == '"' ? 2 : 6;
        for (size_t n = 3900 / unit; n < 4200 / unit && n < sizeof(val); n++) {
            LOG_INFO(lg, "sweep", LSN("v", val, n), LI("z", 7));
            const char *line = cap_take(&c);
            assert_json_line(line);
            bool truncated = strstr(line, "\"truncated\":true}\n") != NULL;
            bool has_v = strstr(line, "\"v\":") != NULL;
            assert_true(truncated || has_v);
            if (has_v) {
                /* Complete: the value has all n units and its closing quote. */
                const char *start = strstr(line, "\"v\":") + 4, *end = start;
                assert_int_equal(skip_string(&end), 0);
                assert_int_equal((size_t)(end - start - 2), n * unit);
                kept++;
            } else {
                dropped++;
            }
            if (!truncated)
                assert_non_null(strstr(line, ",\"z\":7}\n"));
        }
    }
    assert_true(kept > 0 && dropped > 0);
    log_free(lg);
    cap_close(&c);
}

/* A message too long for the line still gives a valid line that says it was truncated. */
static void test_long_message(void **state)
{
    (void)state;
    capture_t c;
    cap_open(&c);
    log_t *lg = log_new(c.f, LOG_LEVEL_DEBUG);
    assert_non_null(lg);
    static const char fill[] = {'m', '\n'};
    for (size_t f = 0; f < N_ELEMS(fill); f++) {
        char *msg = malloc(6001);
        assert_non_null(msg);
        memset(msg, fill[f], 6000);
        msg[6000] = '\0';
        LOG_ERROR(lg, msg, LI("n", 1));
        const char *line = cap_take(&c);
        assert_json_line(line);
        assert_non_null(strstr(line, "\"truncated\":true}\n"));
        assert_null(strstr(line, "\"n\":1"));
        free(msg);
    }
    log_free(lg);
    cap_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_shape),   cmocka_unit_test(test_integers),
        cmocka_unit_test(test_escaping),     cmocka_unit_test(test_strings_null_and_length),
        cmocka_unit_test(test_level_filter), cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_truncation),   cmocka_unit_test(test_truncation_sweep),
        cmocka_unit_test(test_long_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
