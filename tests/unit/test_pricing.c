/*
 * test_pricing — unit tests of the price table, the money parser and the cost of one call.
 *
 * Table-driven: each table row is one case, and a failing row is named in the message. The
 * expected costs are worked out by hand in the comments next to them, so that a reader can
 * check the arithmetic without trusting the code under test. The last test loads the shipped
 * deploy/prices.ini (SOURCE_DIR is a compile definition) and checks that it is sane.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pricing.h"
#include "wire.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Parses a NUL-terminated table that the test expects to be valid. */
static pricing_t *must_parse(const char *text)
{
    char err[256];
    pricing_t *p = NULL;
    int rc = pricing_parse(text, strlen(text), &p, err, sizeof(err));
    if (rc != 0)
        print_error("unexpected parse error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(p);
    return p;
}

static const pricing_rate_t *lookup(const pricing_t *p, const char *provider, const char *model)
{
    return pricing_lookup(p, provider, strlen(provider), model, strlen(model));
}

/* ---- money_parse_usd_micros ------------------------------------------------------------- */

static void test_money_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t micros;
    } cases[] = {
        {"0", 0},
        {"3", 3000000},
        {"3.5", 3500000},
        {"0.30", 300000},
        {"0.000001", 1},
        {"0.075", 75000},
        {"12.990000", 12990000},
        {"007", 7000000},
        {"1000", 1000000000}, /* exactly PRICING_MAX_MICROS */
        {"999.999999", 999999999},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t v = -1;
        int rc = money_parse_usd_micros(cases[i].s, PRICING_MAX_MICROS, &v);
        if (rc != 0 || v != cases[i].micros)
            print_error("case \"%s\": rc %d, got %lld\n", cases[i].s, rc, (long long)v);
        assert_int_equal(rc, 0);
        assert_true(v == cases[i].micros);
    }
}

static void test_money_invalid(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "",
        "-1",
        "+1",
        "1e3",
        "1.0000001",
        "1.0000000",
        "1,5",
        " 1",
        "1 ",
        "1 0",
        "abc",
        ".5",
        "3.",
        "1..2",
        "1.2.3",
        "0x10",
        "$3",
        "3$",
        "1\t",
        "\n1",
        "1000.000001", /* one micro over PRICING_MAX_MICROS */
        "1001",
        "99999999999999999999",      /* overflows int64 as dollars */
        "9223372036854775808",       /* INT64_MAX + 1 */
        "0.99999999999999999999999", /* too many decimals, and would overflow the fraction */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t v = 42;
        int rc = money_parse_usd_micros(cases[i], PRICING_MAX_MICROS, &v);
        if (rc != -1 || v != 42)
            print_error("case \"%s\": rc %d, out %lld\n", cases[i], rc, (long long)v);
        assert_int_equal(rc, -1);
        assert_true(v == 42); /* *out is left alone on error */
    }
}

static void test_money_max_argument(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(money_parse_usd_micros("4.999999", 4999999, &v), 0);
    assert_true(v == 4999999);
    assert_int_equal(money_parse_usd_micros("5", 4999999, &v), -1);
    assert_int_equal(money_parse_usd_micros("0", 0, &v), 0);
    assert_true(v == 0);
    assert_int_equal(money_parse_usd_micros("0.000001", 0, &v), -1);
}

/* ---- pricing_parse: errors -------------------------------------------------------------- */

#define FOUR_KEYS  "input = 1\noutput = 2\ncache_read = 0.5\ncache_write = 1.25\n"
#define SECTION_33 "[abcdefghijklmnopqrstuvwxyz0123456/m]\n" /* a 33-byte provider */

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *text;
        const char *want[3]; /* substrings the message must contain */
    } cases[] = {
        {"unknown key", "[a/b]\n" FOUR_KEYS "colour = 1\n", {"line 6", "[a/b]", "\"colour\""}},
        {"key case", "[a/b]\nInput = 1\n", {"line 2", "[a/b]", "\"Input\""}},
        {"duplicate key", "[a/b]\ninput = 1\ninput = 2\n", {"line 3", "[a/b]", "\"input\""}},
        {"continuation line",
         "[a/b]\ninput = 1\n  2\n",
         {"line 3", "[a/b]", "indented line \"2\""}},
        {"indented key", "[a/b]\ninput = 1\n\toutput = 2\n", {"line 3", "[a/b]", "\"output = 2\""}},
        {"indented first key",
         "[a/b]\n  input = 1\n",
         {"line 2", "[a/b]", "indented line \"input = 1\""}},
        {"duplicate section",
         "[a/b]\n" FOUR_KEYS "\n[a/b]\n" FOUR_KEYS,
         {"line 7", "duplicate section [a/b]", "first at line 1"}},
        {"key outside a section", "; prices\ninput = 1\n", {"line 2", "\"input\"", "outside"}},
        {"bad amount comma", "[a/b]\ninput = 3,5\n", {"line 2", "[a/b]", "\"input\": bad amount"}},
        {"bad amount sign", "[x/y]\noutput = -1\n", {"line 2", "[x/y]", "\"output\""}},
        {"bad amount exponent", "[x/y]\ncache_read = 1e3\n", {"line 2", "[x/y]", "cache_read"}},
        {"bad amount empty", "[x/y]\ncache_write =\n", {"line 2", "[x/y]", "cache_write"}},
        {"amount over the maximum", "[x/y]\ninput = 1000.01\n", {"line 2", "[x/y]", "\"input\""}},
        {"comment without a space", "[x/y]\ninput = 3;cheap\n", {"line 2", "[x/y]", "3;cheap"}},
        {"hash is no inline comment", "[x/y]\ninput = 3 # cheap\n", {"line 2", "[x/y]", "input"}},
        {"missing key",
         "[a/b]\ninput = 1\noutput = 1\ncache_read = 1\n",
         {"line 1", "[a/b]", "\"cache_write\""}},
        {"missing key, second section",
         "[a/b]\n" FOUR_KEYS "[c/d]\ninput = 1\n",
         {"line 6", "[c/d]", "\"output\""}},
        {"empty section", "[a/b]\n", {"line 1", "[a/b]", "\"input\""}},
        {"no slash", "[anthropic]\n", {"line 1", "[anthropic]", "provider/model"}},
        {"empty provider", "[/m]\n", {"line 1", "[/m]", "provider/model"}},
        {"empty model", "[p/]\n", {"line 1", "[p/]", "provider/model"}},
        {"space in name", "[p/m x]\n", {"line 1", "[p/m x]", "spaces"}},
        {"provider over 32 bytes",
         SECTION_33,
         {"line 1", "abcdefghijklmnopqrstuvwxyz0123456/m", "32"}},
        {"text after ]", "[a/b] [c/d]\n", {"line 1", "[a/b]", "after"}},
        {"syntax error before a section", "junk\n[a/b]\n", {"line 1: syntax error", NULL, NULL}},
        {"missing ]", "[a/b\n", {"line 1", "]", NULL}},
        {"indented section", "[a/b]\n" FOUR_KEYS "  [c/d]\n", {"line 6", "indented section", NULL}},
        {"syntax error", "[a/b]\ninput 1\n", {"line 2", "[a/b] syntax error", NULL}},
        {"syntax error first",
         "[a/b]\nnonsense\ncolour = 1\n",
         {"line 2", "[a/b] syntax error", NULL}},
        {"empty table", "", {"no [provider/model] sections", NULL, NULL}},
        {"only comments", "; nothing\n# here\n", {"no [provider/model] sections", NULL, NULL}},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char err[512];
        static char not_null;
        pricing_t *p = (pricing_t *)&not_null; /* pricing_parse must reset it to NULL */
        memset(err, 'x', sizeof(err));
        int rc = pricing_parse(cases[i].text, strlen(cases[i].text), &p, err, sizeof(err));
        if (rc != -1 || p != NULL) {
            print_error("case \"%s\": rc %d\n", cases[i].name, rc);
            fail();
        }
        assert_non_null(memchr(err, '\0', sizeof(err)));
        for (size_t k = 0; k < N_ELEMS(cases[i].want) && cases[i].want[k]; k++) {
            if (!strstr(err, cases[i].want[k]))
                print_error("case \"%s\": message \"%s\" lacks \"%s\"\n", cases[i].name, err,
                            cases[i].want[k]);
            assert_non_null(strstr(err, cases[i].want[k]));
        }
    }
}

static void test_parse_model_over_128_bytes(void **state)
{
    (void)state;
    char text[256];
    char model[WIRE_MAX_MODEL + 2];
    memset(model, 'm', sizeof(model) - 1);
    model[sizeof(model) - 1] = '\0'; /* 129 bytes */
    snprintf(text, sizeof(text), "[p/%s]\n" FOUR_KEYS, model);
    char err[512];
    pricing_t *p = NULL;
    assert_int_equal(pricing_parse(text, strlen(text), &p, err, sizeof(err)), -1);
    assert_null(p);
    assert_non_null(strstr(err, "line 1"));
    assert_non_null(strstr(err, "128"));
}

static void test_parse_refuses_nul_byte(void **state)
{
    (void)state;
    /* ini_parse_string would stop at the NUL and silently lose the second section. */
    static const char text[] = "[a/b]\n" FOUR_KEYS "\0[c/d]\n" FOUR_KEYS;
    char err[256];
    pricing_t *p = NULL;
    assert_int_equal(pricing_parse(text, sizeof(text) - 1, &p, err, sizeof(err)), -1);
    assert_null(p);
    assert_non_null(strstr(err, "line 6"));
    assert_non_null(strstr(err, "NUL"));
}

static void test_parse_refuses_long_line(void **state)
{
    (void)state;
    /* inih's line buffer is 200 bytes; a longer line must not be split into two. */
    char text[1024];
    int n = snprintf(text, sizeof(text), "[a/b]\n" FOUR_KEYS "; %0300d\n", 0);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    char err[256];
    pricing_t *p = NULL;
    assert_int_equal(pricing_parse(text, (size_t)n, &p, err, sizeof(err)), -1);
    assert_null(p);
    assert_non_null(strstr(err, "line 6"));
    assert_non_null(strstr(err, "longer than"));
}

static void test_parse_error_buffer_small_or_absent(void **state)
{
    (void)state;
    static const char text[] = "[a/b]\ninput = nope\n";
    char err[8];
    pricing_t *p = NULL;
    assert_int_equal(pricing_parse(text, sizeof(text) - 1, &p, err, sizeof(err)), -1);
    assert_int_equal(strlen(err), sizeof(err) - 1); /* truncated, still terminated */
    assert_int_equal(pricing_parse(text, sizeof(text) - 1, &p, NULL, 0), -1);
    assert_null(p);
}

/* ---- pricing_parse: accepted syntax ------------------------------------------------------ */

static void test_parse_syntax_accepted(void **state)
{
    (void)state;
    /* BOM, CRLF, comments of both kinds, inline " ;" comments, ':' separator, blank lines, no
     * newline at the end. */
    static const char text[] = "\xEF\xBB\xBF; header\r\n"
                               "# another comment\r\n"
                               "\r\n"
                               "[anthropic/claude-sonnet-4-5]\t; trailing comment\r\n"
                               "input = 3.00          ; USD per 1M\r\n"
                               "output: 15\r\n"
                               "cache_read=0.30\r\n"
                               "  ; an indented comment\r\n"
                               "cache_write = 3.75";
    char err[256];
    pricing_t *p = NULL;
    int rc = pricing_parse(text, sizeof(text) - 1, &p, err, sizeof(err));
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(pricing_count(p), 1);
    const pricing_rate_t *r = lookup(p, "anthropic", "claude-sonnet-4-5");
    assert_non_null(r);
    assert_true(r->input == 3000000 && r->output == 15000000);
    assert_true(r->cache_read == 300000 && r->cache_write == 3750000);
    pricing_free(p);
}

static void test_parse_long_sections_are_not_truncated(void **state)
{
    (void)state;
    /* Both names are longer than inih's 50-byte section buffer and share their first 60 bytes:
     * a truncating parser would call the second a duplicate or merge the two. */
    static const char text[] =
        "[fireworks/accounts/fireworks/models/qwen3-coder-480b-a35b-instruct]\n"
        "input = 0.45\noutput = 1.80\ncache_read = 0.225\ncache_write = 0.45\n"
        "[fireworks/accounts/fireworks/models/qwen3-coder-480b-a35b-instruct-v2]\n"
        "input = 1\noutput = 2\ncache_read = 0.5\ncache_write = 1\n";
    pricing_t *p = must_parse(text);
    assert_int_equal(pricing_count(p), 2);
    const pricing_rate_t *a =
        lookup(p, "fireworks", "accounts/fireworks/models/qwen3-coder-480b-a35b-instruct");
    const pricing_rate_t *b =
        lookup(p, "fireworks", "accounts/fireworks/models/qwen3-coder-480b-a35b-instruct-v2");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a->input == 450000 && a->cache_read == 225000);
    assert_true(b->input == 1000000 && b->cache_read == 500000);
    /* The 49-byte prefix inih would have kept is not a model. */
    assert_null(lookup(p, "fireworks", "accounts/fireworks/models/qwen3-coder-4"));
    pricing_free(p);
}

static void test_parse_bounds(void **state)
{
    (void)state;
    /* A 32-byte provider and a 128-byte model are the largest allowed: 163-byte header line. */
    char provider[WIRE_MAX_PROVIDER + 1], model[WIRE_MAX_MODEL + 1];
    memset(provider, 'p', WIRE_MAX_PROVIDER);
    provider[WIRE_MAX_PROVIDER] = '\0';
    memset(model, 'm', WIRE_MAX_MODEL);
    model[WIRE_MAX_MODEL] = '\0';
    model[3] = '/';
    char text[512];
    snprintf(text, sizeof(text), "[%s/%s]\n" FOUR_KEYS, provider, model);
    pricing_t *p = must_parse(text);
    assert_non_null(lookup(p, provider, model));
    pricing_free(p);
}

static void test_parse_many_sections(void **state)
{
    (void)state;
    /* Enough models to grow the entry array and rehash the index several times. */
    enum { N = 1000 };
    size_t cap = (size_t)N * 96;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        int n =
            snprintf(text + len, cap - len,
                     "[p%d/model-%d]\ninput = %d\noutput = %d\ncache_read = 0\ncache_write = 0\n",
                     i % 7, i, i, i + 1);
        assert_true(n > 0 && (size_t)n < cap - len);
        len += (size_t)n;
    }
    char err[256];
    pricing_t *p = NULL;
    assert_int_equal(pricing_parse(text, len, &p, err, sizeof(err)), 0);
    assert_int_equal(pricing_count(p), N);
    for (int i = 0; i < N; i++) {
        char prov[16], model[32];
        snprintf(prov, sizeof(prov), "p%d", i % 7);
        snprintf(model, sizeof(model), "model-%d", i);
        const pricing_rate_t *r = lookup(p, prov, model);
        assert_non_null(r);
        assert_true(r->input == (int64_t)i * 1000000 && r->output == (int64_t)(i + 1) * 1000000);
        snprintf(prov, sizeof(prov), "p%d", (i + 1) % 7); /* right model, wrong provider */
        assert_null(lookup(p, prov, model));
    }
    pricing_free(p);
    free(text);
}

/* ---- pricing_lookup --------------------------------------------------------------------- */

static void test_lookup(void **state)
{
    (void)state;
    pricing_t *p = must_parse("[anthropic/claude-haiku-4-5]\n" FOUR_KEYS
                              "[fireworks/accounts/fireworks/models/kimi-k2-instruct]\n" FOUR_KEYS
                              "[openai/gpt-5]\n" FOUR_KEYS);
    static const struct {
        const char *provider, *model;
        int hit;
    } cases[] = {
        {"anthropic", "claude-haiku-4-5", 1},
        {"openai", "gpt-5", 1},
        {"fireworks", "accounts/fireworks/models/kimi-k2-instruct", 1}, /* split at the first / */
        {"fireworks/accounts", "fireworks/models/kimi-k2-instruct", 0}, /* not at a later one */
        {"fireworks", "kimi-k2-instruct", 0},
        {"anthropic", "claude-haiku-4-5-20251001", 0},
        {"Anthropic", "claude-haiku-4-5", 0}, /* case-sensitive */
        {"anthropic", "Claude-Haiku-4-5", 0},
        {"openai", "claude-haiku-4-5", 0},
        {"openai", "gpt-5 ", 0},
        {"openai", "", 0},
        {"", "gpt-5", 0},
        {"zai", "glm-4.6", 0},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const pricing_rate_t *r = lookup(p, cases[i].provider, cases[i].model);
        if ((r != NULL) != cases[i].hit)
            print_error("case %s / %s\n", cases[i].provider, cases[i].model);
        assert_int_equal(r != NULL, cases[i].hit);
    }
    pricing_free(p);
}

static void test_lookup_views_and_bounds(void **state)
{
    (void)state;
    pricing_t *p = must_parse("[openai/gpt-5]\n" FOUR_KEYS);
    /* Views into a larger buffer, as wire_decode hands them over: not NUL-terminated. */
    static const char buf[] = "openaigpt-5-mini";
    const pricing_rate_t *r = pricing_lookup(p, buf, 6, buf + 6, 5);
    assert_non_null(r);
    assert_true(r->input == 1000000 && r->output == 2000000);
    assert_null(pricing_lookup(p, buf, 6, buf + 6, 10)); /* "gpt-5-mini" */
    /* Over the wire bounds: NULL without reading the strings. */
    assert_null(pricing_lookup(p, buf, WIRE_MAX_PROVIDER + 1, buf, 5));
    assert_null(pricing_lookup(p, buf, 6, buf, WIRE_MAX_MODEL + 1));
    assert_null(pricing_lookup(p, NULL, 0, NULL, 0));
    pricing_free(p);
}

/* ---- pricing_cost_nanos ----------------------------------------------------------------- */

static void test_cost(void **state)
{
    (void)state;
    /* Claude Sonnet 4.5: $3 in, $15 out, $0.30 cache read, $3.75 cache write per 1M tokens,
     * i.e. 3,000,000 / 15,000,000 / 300,000 / 3,750,000 micro-USD per 1M tokens. */
    static const pricing_rate_t sonnet = {3000000, 15000000, 300000, 3750000};
    /* One micro-dollar per 1M tokens everywhere: each token is worth 1/1000 nano-USD. */
    static const pricing_rate_t micro = {1, 1, 1, 1};
    static const pricing_rate_t max = {PRICING_MAX_MICROS, PRICING_MAX_MICROS, PRICING_MAX_MICROS,
                                       PRICING_MAX_MICROS};
    static const struct {
        const char *name;
        const pricing_rate_t *rate;
        int64_t in, out, cr, cw;
        int64_t nanos;
    } cases[] = {
        {"nothing", &sonnet, 0, 0, 0, 0, 0},
        /* 1000 * 3,000,000 = 3,000,000,000; / 1000 = 3,000,000 nano-USD = $0.003 */
        {"1000 input", &sonnet, 1000, 0, 0, 0, 3000000},
        /* 1 * 3,000,000 / 1000 = 3,000 nano-USD: one token at $3/M is $0.000003 */
        {"1 input", &sonnet, 1, 0, 0, 0, 3000},
        /* 1 * 15,000,000 / 1000 = 15,000 */
        {"1 output", &sonnet, 0, 1, 0, 0, 15000},
        /* 1 * 300,000 / 1000 = 300 */
        {"1 cache read", &sonnet, 0, 0, 1, 0, 300},
        /* 1 * 3,750,000 / 1000 = 3,750 */
        {"1 cache write", &sonnet, 0, 0, 0, 1, 3750},
        /* 1000 * 3,000,000    = 3,000,000,000
         *  500 * 15,000,000   = 7,500,000,000
         * 2000 * 300,000      =   600,000,000
         *  100 * 3,750,000    =   375,000,000
         * sum                 = 11,475,000,000; / 1000 = 11,475,000 nano-USD ($0.011475) */
        {"all four", &sonnet, 1000, 500, 2000, 100, 11475000},
        /* 1,000,000 input tokens cost exactly the list price: 1e6 * 3e6 / 1e3 = 3e9 nano = $3 */
        {"1M input", &sonnet, 1000000, 0, 0, 0, 3000000000LL},
        /* Rounding half up happens once, on the sum: 499 / 1000 = 0.499 -> 0 */
        {"0.499 nano", &micro, 499, 0, 0, 0, 0},
        /* 500 / 1000 = 0.5 -> 1 (half up) */
        {"0.5 nano", &micro, 500, 0, 0, 0, 1},
        /* 1499 -> 1.499 -> 1 */
        {"1.499 nano", &micro, 1499, 0, 0, 0, 1},
        /* 1500 -> 1.5 -> 2 */
        {"1.5 nano", &micro, 1500, 0, 0, 0, 2},
        /* 250 + 250 = 500 -> 1: per-term rounding would give 0 + 0 = 0 */
        {"rounded once", &micro, 250, 250, 0, 0, 1},
        /* 125 * 4 = 500 -> 1 */
        {"four quarters", &micro, 125, 125, 125, 125, 1},
        /* One term at the bounds: 1e9 tokens * 1e9 micro = 1e18; / 1000 = 1e15 nano = $1M */
        {"one term at max", &max, WIRE_MAX_TOKENS, 0, 0, 0, 1000000000000000LL},
        /* All four at the bounds: 4 * 1e18 = 4e18 (< INT64_MAX ~ 9.22e18); / 1000 = 4e15 nano */
        {"all at max", &max, WIRE_MAX_TOKENS, WIRE_MAX_TOKENS, WIRE_MAX_TOKENS, WIRE_MAX_TOKENS,
         4000000000000000LL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got =
            pricing_cost_nanos(cases[i].rate, cases[i].in, cases[i].out, cases[i].cr, cases[i].cw);
        if (got != cases[i].nanos)
            print_error("case \"%s\": got %lld, want %lld\n", cases[i].name, (long long)got,
                        (long long)cases[i].nanos);
        assert_true(got == cases[i].nanos);
    }
}

static void test_cost_from_parsed_rate(void **state)
{
    (void)state;
    /* GPT-4o mini: $0.15 in, $0.60 out, $0.075 cached -> 150,000 / 600,000 / 75,000 micro. */
    pricing_t *p = must_parse("[openai/gpt-4o-mini]\ninput = 0.15\noutput = 0.60\n"
                              "cache_read = 0.075\ncache_write = 0.15\n");
    const pricing_rate_t *r = lookup(p, "openai", "gpt-4o-mini");
    assert_non_null(r);
    /* 7 * 150,000 = 1,050,000; 3 * 600,000 = 1,800,000; 1 * 75,000 = 75,000;
     * sum 2,925,000 / 1000 = 2,925 nano-USD exactly. */
    assert_true(pricing_cost_nanos(r, 7, 3, 1, 0) == 2925);
    /* 1 cached token: 75,000 / 1000 = 75 nano-USD. */
    assert_true(pricing_cost_nanos(r, 0, 0, 1, 0) == 75);
    pricing_free(p);
}

/* ---- the shipped table ------------------------------------------------------------------ */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_error("cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
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
    if (ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void test_shipped_table(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = read_file(SOURCE_DIR "/deploy/prices.ini", &len);
    assert_non_null(text);
    char err[512];
    pricing_t *p = NULL;
    int rc = pricing_parse(text, len, &p, err, sizeof(err));
    if (rc != 0)
        print_error("deploy/prices.ini: %s\n", err);
    assert_int_equal(rc, 0);

    /* The models the product must price out of the box, all five providers. */
    static const struct {
        const char *provider, *model;
    } required[] = {
        {"anthropic", "claude-opus-4-5"},
        {"anthropic", "claude-opus-4-1"},
        {"anthropic", "claude-sonnet-4-5"},
        {"anthropic", "claude-sonnet-4"},
        {"anthropic", "claude-haiku-4-5"},
        {"anthropic", "claude-3-5-haiku"},
        {"openai", "gpt-5"},
        {"openai", "gpt-5-mini"},
        {"openai", "gpt-5-nano"},
        {"openai", "gpt-4.1"},
        {"openai", "gpt-4.1-mini"},
        {"openai", "gpt-4o"},
        {"openai", "gpt-4o-mini"},
        {"openai", "o3"},
        {"openai", "o4-mini"},
        {"minimax", "MiniMax-M2"},
        {"minimax", "MiniMax-M1"},
        {"minimax", "gpt-oss-120b"},
        {"zai", "glm-4.6"},
        {"zai", "glm-4.5"},
        {"zai", "glm-4.5-air"},
        {"fireworks", "accounts/fireworks/models/gpt-oss-120b"},
        {"fireworks", "accounts/fireworks/models/kimi-k2-instruct"},
        {"fireworks", "accounts/fireworks/models/qwen3-coder-480b-a35b-instruct"},
        {"fireworks", "accounts/fireworks/models/deepseek-v3p1"},
        {"fireworks", "accounts/fireworks/models/llama-v3p3-70b-instruct"},
    };
    for (size_t i = 0; i < N_ELEMS(required); i++) {
        const pricing_rate_t *r = lookup(p, required[i].provider, required[i].model);
        if (!r) {
            print_error("deploy/prices.ini lacks [%s/%s]\n", required[i].provider,
                        required[i].model);
            fail();
        }
        /* Sane: nothing free, output at least input, a cache read no dearer than input, and
         * Anthropic's cache write at 1.25x input (5-minute cache). */
        if (!(r->input > 0 && r->output >= r->input && r->cache_read > 0 &&
              r->cache_read <= r->input && r->cache_write >= r->input))
            print_error("[%s/%s]: implausible rate\n", required[i].provider, required[i].model);
        assert_true(r->input > 0);
        assert_true(r->output >= r->input);
        assert_true(r->cache_read > 0 && r->cache_read <= r->input);
        assert_true(r->cache_write >= r->input);
        if (strcmp(required[i].provider, "anthropic") == 0) {
            assert_true(r->cache_write * 4 == r->input * 5);
            assert_true(r->cache_read * 10 == r->input);
        }
    }
    /* Spot checks against the list prices the file claims. */
    const pricing_rate_t *s = lookup(p, "anthropic", "claude-sonnet-4-5");
    assert_true(s->input == 3000000 && s->output == 15000000);
    assert_true(s->cache_read == 300000 && s->cache_write == 3750000);
    const pricing_rate_t *g = lookup(p, "openai", "gpt-5");
    assert_true(g->input == 1250000 && g->output == 10000000 && g->cache_read == 125000);
    /* Snapshot ids carry the same price as their alias. */
    const pricing_rate_t *snap = lookup(p, "anthropic", "claude-sonnet-4-5-20250929");
    assert_non_null(snap);
    assert_memory_equal(snap, s, sizeof(*s));

    pricing_free(p);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_money_valid),
        cmocka_unit_test(test_money_invalid),
        cmocka_unit_test(test_money_max_argument),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_model_over_128_bytes),
        cmocka_unit_test(test_parse_refuses_nul_byte),
        cmocka_unit_test(test_parse_refuses_long_line),
        cmocka_unit_test(test_parse_error_buffer_small_or_absent),
        cmocka_unit_test(test_parse_syntax_accepted),
        cmocka_unit_test(test_parse_long_sections_are_not_truncated),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test(test_parse_many_sections),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_lookup_views_and_bounds),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_cost_from_parsed_rate),
        cmocka_unit_test(test_shipped_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
