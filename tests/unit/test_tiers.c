/*
 * test_tiers — unit tests of the tier table: the shipped deploy/tiers.ini, value conversions,
 * every refusal and the look-ups.
 *
 * Table-driven: each row is one case, and a failing row is named in the message. The expected
 * figures of the shipped table are written out here from PRODUCT.md's "Pricing rules", not
 * read back from the file, so a wrong edit of the file fails. SOURCE_DIR is a compile
 * definition. Most cases put a test section in front of the shipped text, so that the rest of
 * the table is valid and the line numbers in the expected messages count from the test text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiers.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define U          TIERS_UNLIMITED
#define USD(d)     ((int64_t)(d)*1000000LL) /* whole dollars in micro-USD */
#define CENTS(c)   ((int64_t)(c)*10000LL)   /* cents in micro-USD */
#define GB(g)      ((int64_t)(g)*1000000000LL)
#define TEXT_MAX   16384

/* deploy/tiers.ini as a NUL-terminated string; the caller frees it. */
static char *load_shipped(void)
{
    FILE *f = fopen(SOURCE_DIR "/deploy/tiers.ini", "rb");
    assert_non_null(f);
    char *buf = malloc(TEXT_MAX);
    assert_non_null(buf);
    size_t n = fread(buf, 1, TEXT_MAX - 1, f);
    assert_true(n > 0 && n < TEXT_MAX - 1);
    assert_int_equal(fclose(f), 0);
    buf[n] = '\0';
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static tiers_t *must_parse(const char *text)
{
    char err[512];
    tiers_t *t = NULL;
    int rc = tiers_parse(text, strlen(text), &t, err, sizeof(err));
    if (rc != 0)
        print_error("unexpected parse error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(t);
    return t;
}

/* Parses text expecting a refusal whose message contains every non-NULL want[k]. */
static void must_fail(const char *what, const char *text, const char *const want[3])
{
    char err[512];
    static char not_null;
    tiers_t *t = (tiers_t *)&not_null; /* tiers_parse must reset it to NULL */
    memset(err, 'x', sizeof(err));
    int rc = tiers_parse(text, strlen(text), &t, err, sizeof(err));
    if (rc != -1 || t != NULL) {
        print_error("case \"%s\": rc %d\n", what, rc);
        fail();
    }
    assert_non_null(memchr(err, '\0', sizeof(err)));
    for (size_t k = 0; k < 3 && want[k]; k++) {
        if (!strstr(err, want[k]))
            print_error("case \"%s\": message \"%s\" lacks \"%s\"\n", what, err, want[k]);
        assert_non_null(strstr(err, want[k]));
    }
}

static const tier_t *find(const tiers_t *t, const char *name)
{
    return tiers_find(t, name, strlen(name));
}

/* ---- a test section in front of the shipped table --------------------------------------- */

/* A valid [custom] tier: line 1 is the header, key i is on line i + 2. */
static const char *const custom_keys[] = {
    "concurrent_agents = 3",     /* line 2 */
    "workflows = 7",             /* line 3 */
    "over_quota = bill",         /* line 4 */
    "period = subscription",     /* line 5 */
    "base_fee = 9.99",           /* line 6 */
    "one_time_fee = 0",          /* line 7 */
    "storage_limit_gb = 1.5",    /* line 8 */
    "included_agent_hours = 10", /* line 9 */
    "overage_small = 1",         /* line 10 */
    "overage_medium = 2",        /* line 11 */
    "overage_large = 3",         /* line 12 */
    "storage_gb_month = 0.25",   /* line 13 */
    "agent_hour = 1.75",         /* line 14 */
    "api_call = 0.000001",       /* line 15 */
    "llm_billed = true",         /* line 16 */
    "llm_margin_percent = 35",   /* line 17 */
};
enum {
    K_CONCURRENT,
    K_WORKFLOWS,
    K_OVER,
    K_PERIOD,
    K_BASE,
    K_ONE_TIME,
    K_STORAGE,
    K_HOURS,
    K_OV_SMALL,
    K_OV_MEDIUM,
    K_OV_LARGE,
    K_GB_MONTH,
    K_AGENT_HOUR,
    K_API_CALL,
    K_LLM_BILLED,
    K_MARGIN,
    K_NONE = -1,
};

static void append(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    assert_true(*len + n < cap);
    memcpy(buf + *len, s, n + 1);
    *len += n;
}

/* header, then custom_keys with key `replace` replaced by `line` (NULL drops it), then `after`,
 * then the shipped table, into buf. */
static void build(char *buf, size_t cap, const char *header, int replace, const char *line,
                  const char *after, const char *shipped)
{
    size_t len = 0;
    buf[0] = '\0';
    append(buf, cap, &len, header);
    append(buf, cap, &len, "\n");
    for (int k = 0; k < (int)N_ELEMS(custom_keys); k++) {
        const char *l = k == replace ? line : custom_keys[k];
        if (l) {
            append(buf, cap, &len, l);
            append(buf, cap, &len, "\n");
        }
    }
    append(buf, cap, &len, after ? after : "");
    append(buf, cap, &len, shipped);
}

/* ---- the shipped table ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int64_t concurrent_agents, workflows;
    tiers_over_quota_t over;
    tiers_period_t period;
    int64_t base_fee, one_time_fee, storage_limit_bytes, included_agent_ms;
    int64_t overage[3];
    int64_t storage_gb_month, agent_hour, api_call;
    bool llm_billed;
    int64_t margin;
} want_tier_t;

/* PRODUCT.md, "Pricing rules", in file order. */
static const want_tier_t shipped_tiers[] = {
    {"free",
     1,
     5,
     TIERS_OVER_HOLD,
     TIERS_PERIOD_CALENDAR,
     0,
     0,
     GB(2),
     U,
     {0, 0, 0},
     CENTS(10),
     USD(2),
     0,
     false,
     0},
    {"pro",
     5,
     100,
     TIERS_OVER_BILL,
     TIERS_PERIOD_SUBSCRIPTION,
     USD(50),
     0,
     U,
     U,
     {USD(5), USD(10), USD(15)},
     CENTS(10),
     USD(2),
     0,
     false,
     0},
    {"team",
     10,
     500,
     TIERS_OVER_BILL,
     TIERS_PERIOD_SUBSCRIPTION,
     USD(150),
     0,
     U,
     U,
     {USD(5), USD(10), USD(15)},
     CENTS(10),
     USD(2),
     0,
     false,
     0},
    {"enterprise",
     U,
     U,
     TIERS_OVER_BILL,
     TIERS_PERIOD_SUBSCRIPTION,
     USD(1000),
     0,
     U,
     U,
     {USD(5), USD(10), USD(15)},
     CENTS(10),
     USD(2),
     0,
     false,
     0},
    {"lifetime",
     5,
     50,
     TIERS_OVER_BILL,
     TIERS_PERIOD_CALENDAR,
     0,
     USD(299),
     GB(50),
     U,
     {USD(5), USD(10), USD(15)},
     CENTS(10),
     USD(2),
     0,
     false,
     0},
    {"byo",
     5,
     U,
     TIERS_OVER_BILL,
     TIERS_PERIOD_SUBSCRIPTION,
     USD(19),
     0,
     U,
     U,
     {USD(5), USD(10), USD(15)},
     CENTS(10),
     USD(2),
     0,
     false,
     0},
    {"payg",
     1,
     0,
     TIERS_OVER_BILL,
     TIERS_PERIOD_CALENDAR,
     0,
     0,
     0,
     U,
     {USD(10), CENTS(1250), USD(15)},
     CENTS(15),
     USD(2),
     1000 /* $0.001 */,
     true,
     20},
};

static void check_tier(const tier_t *got, const want_tier_t *w)
{
    assert_non_null(got);
    assert_string_equal(got->name, w->name);
    assert_int_equal(got->name_len, strlen(w->name));
    assert_int_equal(got->concurrent_agents, w->concurrent_agents);
    assert_int_equal(got->workflows, w->workflows);
    assert_int_equal(got->over_quota, w->over);
    assert_int_equal(got->period, w->period);
    assert_int_equal(got->base_fee_micros, w->base_fee);
    assert_int_equal(got->one_time_fee_micros, w->one_time_fee);
    assert_int_equal(got->storage_limit_bytes, w->storage_limit_bytes);
    assert_int_equal(got->included_agent_ms, w->included_agent_ms);
    for (int c = 0; c < 3; c++)
        assert_int_equal(got->overage_micros[c], w->overage[c]);
    assert_int_equal(got->storage_gb_month_micros, w->storage_gb_month);
    assert_int_equal(got->agent_hour_micros, w->agent_hour);
    assert_int_equal(got->api_call_micros, w->api_call);
    assert_int_equal(got->llm_billed, w->llm_billed);
    assert_int_equal(got->llm_margin_percent, w->margin);
}

static void test_shipped_table(void **state)
{
    (void)state;
    char *text = load_shipped();
    tiers_t *t = must_parse(text);
    assert_int_equal(tiers_count(t), N_ELEMS(shipped_tiers));
    for (size_t i = 0; i < N_ELEMS(shipped_tiers); i++) {
        print_message("tier %s\n", shipped_tiers[i].name);
        check_tier(tiers_at(t, i), &shipped_tiers[i]); /* file order */
        assert_ptr_equal(find(t, shipped_tiers[i].name), tiers_at(t, i));
    }
    const tier_promo_t *p = tiers_find_promo(t, "new_year", 8);
    assert_non_null(p);
    assert_string_equal(p->name, "new_year");
    assert_int_equal(p->name_len, 8);
    assert_int_equal(p->months, 3);
    assert_int_equal(p->monthly_fee_micros[0], CENTS(59));
    assert_int_equal(p->monthly_fee_micros[1], CENTS(1299));
    assert_int_equal(p->monthly_fee_micros[2], CENTS(1299));
    tiers_free(t);
    free(text);
}

/* ---- values ----------------------------------------------------------------------------- */

static void test_values(void **state)
{
    (void)state;
    static const struct {
        int key;
        const char *line;
        size_t off; /* of the int64_t field in tier_t */
        int64_t want;
    } cases[] = {
        {K_STORAGE, "storage_limit_gb = 2", offsetof(tier_t, storage_limit_bytes), 2000000000},
        {K_STORAGE, "storage_limit_gb = 0.5", offsetof(tier_t, storage_limit_bytes), 500000000},
        {K_STORAGE, "storage_limit_gb = 1.5", offsetof(tier_t, storage_limit_bytes), 1500000000},
        {K_STORAGE, "storage_limit_gb = 0.001", offsetof(tier_t, storage_limit_bytes), 1000000},
        {K_STORAGE, "storage_limit_gb = 1.25", offsetof(tier_t, storage_limit_bytes), 1250000000},
        {K_STORAGE, "storage_limit_gb = 007.100", offsetof(tier_t, storage_limit_bytes),
         7100000000},
        {K_STORAGE, "storage_limit_gb = 0", offsetof(tier_t, storage_limit_bytes), 0},
        {K_STORAGE, "storage_limit_gb = 1000000", offsetof(tier_t, storage_limit_bytes),
         1000000000000000},
        {K_STORAGE, "storage_limit_gb = unlimited", offsetof(tier_t, storage_limit_bytes), U},
        {K_HOURS, "included_agent_hours = 1.5", offsetof(tier_t, included_agent_ms), 5400000},
        {K_HOURS, "included_agent_hours = 0.001", offsetof(tier_t, included_agent_ms), 3600},
        {K_HOURS, "included_agent_hours = 2", offsetof(tier_t, included_agent_ms), 7200000},
        {K_HOURS, "included_agent_hours = 0.25", offsetof(tier_t, included_agent_ms), 900000},
        {K_HOURS, "included_agent_hours = 0", offsetof(tier_t, included_agent_ms), 0},
        {K_HOURS, "included_agent_hours = 1000000", offsetof(tier_t, included_agent_ms),
         3600000000000},
        {K_HOURS, "included_agent_hours = unlimited", offsetof(tier_t, included_agent_ms), U},
        {K_CONCURRENT, "concurrent_agents = unlimited", offsetof(tier_t, concurrent_agents), U},
        {K_CONCURRENT, "concurrent_agents = 1", offsetof(tier_t, concurrent_agents), 1},
        {K_CONCURRENT, "concurrent_agents = 1000000000", offsetof(tier_t, concurrent_agents),
         1000000000},
        {K_WORKFLOWS, "workflows = 0", offsetof(tier_t, workflows), 0},
        {K_WORKFLOWS, "workflows = 010", offsetof(tier_t, workflows), 10},
        {K_WORKFLOWS, "workflows = unlimited", offsetof(tier_t, workflows), U},
        {K_API_CALL, "api_call = 0.001", offsetof(tier_t, api_call_micros), 1000},
        {K_API_CALL, "api_call = 0.000001", offsetof(tier_t, api_call_micros), 1},
        {K_BASE, "base_fee = 1000000", offsetof(tier_t, base_fee_micros), 1000000000000},
        {K_BASE, "base_fee = 12.5", offsetof(tier_t, base_fee_micros), 12500000},
        {K_OV_MEDIUM, "overage_medium = 12.50", offsetof(tier_t, overage_micros[1]), 12500000},
        {K_MARGIN, "llm_margin_percent = 1000", offsetof(tier_t, llm_margin_percent), 1000},
        {K_MARGIN, "llm_margin_percent = 0", offsetof(tier_t, llm_margin_percent), 0},
        {K_MARGIN, "llm_margin_percent = 35 ; inline comment", offsetof(tier_t, llm_margin_percent),
         35},
    };
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        build(text, sizeof(text), "[custom]", cases[i].key, cases[i].line, NULL, shipped);
        tiers_t *t = must_parse(text);
        const tier_t *c = find(t, "custom");
        assert_non_null(c);
        int64_t got;
        memcpy(&got, (const char *)c + cases[i].off, sizeof(got));
        if (got != cases[i].want)
            print_error("case \"%s\": got %lld, want %lld\n", cases[i].line, (long long)got,
                        (long long)cases[i].want);
        assert_true(got == cases[i].want);
        tiers_free(t);
    }
    free(shipped);
}

/* The unmodified [custom] section, every field, and a few spellings of the enums. */
static void test_custom_tier(void **state)
{
    (void)state;
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    build(text, sizeof(text), "[custom]", K_NONE, NULL, NULL, shipped);
    tiers_t *t = must_parse(text);
    static const want_tier_t want = {
        .name = "custom",
        .concurrent_agents = 3,
        .workflows = 7,
        .over = TIERS_OVER_BILL,
        .period = TIERS_PERIOD_SUBSCRIPTION,
        .base_fee = 9990000, /* 9.99 */
        .one_time_fee = 0,
        .storage_limit_bytes = 1500000000, /* 1.5 GB */
        .included_agent_ms = 36000000,     /* 10 hours */
        .overage = {USD(1), USD(2), USD(3)},
        .storage_gb_month = CENTS(25),
        .agent_hour = CENTS(175),
        .api_call = 1, /* 0.000001 */
        .llm_billed = true,
        .margin = 35,
    };
    check_tier(find(t, "custom"), &want);
    assert_ptr_equal(tiers_at(t, 0), find(t, "custom")); /* first in the file */
    tiers_free(t);

    /* hold is allowed with a count quota and with unlimited workflows (it never triggers). */
    build(text, sizeof(text), "[custom]", K_OVER, "over_quota = hold", NULL, shipped);
    t = must_parse(text);
    assert_int_equal(find(t, "custom")->over_quota, TIERS_OVER_HOLD);
    tiers_free(t);
    build(text, sizeof(text), "[custom]", K_WORKFLOWS, "workflows = unlimited", NULL, shipped);
    char *over = strstr(text, "over_quota = bill"); /* [custom]'s, the first in the text */
    assert_non_null(over);
    memcpy(over, "over_quota = hold", strlen("over_quota = hold"));
    t = must_parse(text);
    assert_int_equal(find(t, "custom")->over_quota, TIERS_OVER_HOLD);
    assert_int_equal(find(t, "custom")->workflows, U);
    tiers_free(t);
    build(text, sizeof(text), "[custom]", K_PERIOD, "period = calendar", NULL, shipped);
    t = must_parse(text);
    assert_int_equal(find(t, "custom")->period, TIERS_PERIOD_CALENDAR);
    tiers_free(t);
    build(text, sizeof(text), "[custom]", K_LLM_BILLED, "llm_billed = false", NULL, shipped);
    t = must_parse(text);
    assert_false(find(t, "custom")->llm_billed);
    tiers_free(t);
    free(shipped);
}

/* ---- refusals --------------------------------------------------------------------------- */

static void test_key_errors(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *header;
        int key;          /* key line replaced (K_NONE: none) */
        const char *line; /* its replacement, NULL to drop it */
        const char *after;
        const char *want[3];
    } cases[] = {
        /* missing: found when the next section (the shipped [free]) opens */
        {"missing key", "[custom]", K_API_CALL, NULL, NULL, {"line 1", "[custom]", "\"api_call\""}},
        {"missing first key",
         "[custom]",
         K_CONCURRENT,
         NULL,
         NULL,
         {"line 1", "[custom] missing key", "\"concurrent_agents\""}},
        {"missing key before a promo",
         "[custom]",
         K_MARGIN,
         NULL,
         "[promo.x]\nmonthly_fees = 1\n",
         {"line 1", "[custom]", "\"llm_margin_percent\""}},
        {"unknown key",
         "[custom]",
         K_NONE,
         NULL,
         "colour = blue\n",
         {"line 18", "[custom] unknown key", "\"colour\""}},
        {"key case",
         "[custom]",
         K_BASE,
         "Base_fee = 1",
         NULL,
         {"line 6", "[custom]", "\"Base_fee\""}},
        {"duplicate key",
         "[custom]",
         K_NONE,
         NULL,
         "workflows = 8\n",
         {"line 18: [custom] duplicate key \"workflows\"", "first at line 3", NULL}},
        {"duplicate section",
         "[custom]",
         K_NONE,
         NULL,
         "[custom]\n",
         {"line 18", "duplicate section [custom]", NULL}},
        {"duplicate shipped section",
         "[payg]",
         K_NONE,
         NULL,
         NULL,
         {"duplicate section [payg]", NULL, NULL}},
        {"bad number",
         "[custom]",
         K_WORKFLOWS,
         "workflows = 5x",
         NULL,
         {"line 3", "[custom] key \"workflows\"", "\"5x\""}},
        {"hex",
         "[custom]",
         K_WORKFLOWS,
         "workflows = 0x10",
         NULL,
         {"line 3", "[custom]", "workflows"}},
        {"plus sign",
         "[custom]",
         K_WORKFLOWS,
         "workflows = +5",
         NULL,
         {"line 3", "[custom]", "workflows"}},
        {"empty",
         "[custom]",
         K_WORKFLOWS,
         "workflows =",
         NULL,
         {"line 3", "[custom]", "workflows"}},
        {"space inside",
         "[custom]",
         K_WORKFLOWS,
         "workflows = 5 5",
         NULL,
         {"line 3", "[custom]", "\"5 5\""}},
        {"decimal count",
         "[custom]",
         K_CONCURRENT,
         "concurrent_agents = 1.5",
         NULL,
         {"line 2", "[custom]", "concurrent_agents"}},
        {"unlimited case",
         "[custom]",
         K_WORKFLOWS,
         "workflows = Unlimited",
         NULL,
         {"line 3", "[custom]", "workflows"}},
        {"negative count",
         "[custom]",
         K_WORKFLOWS,
         "workflows = -1",
         NULL,
         {"line 3", "[custom] key \"workflows\"", "\"-1\""}},
        {"negative fee",
         "[custom]",
         K_BASE,
         "base_fee = -5",
         NULL,
         {"line 6", "[custom]", "\"base_fee\""}},
        {"negative gb",
         "[custom]",
         K_STORAGE,
         "storage_limit_gb = -1",
         NULL,
         {"line 8", "[custom]", "\"storage_limit_gb\""}},
        {"negative percent",
         "[custom]",
         K_MARGIN,
         "llm_margin_percent = -1",
         NULL,
         {"line 17", "[custom]", "\"llm_margin_percent\""}},
        {"below min",
         "[custom]",
         K_CONCURRENT,
         "concurrent_agents = 0",
         NULL,
         {"line 2", "[custom] key \"concurrent_agents\"", "1..1000000000"}},
        {"count over max",
         "[custom]",
         K_CONCURRENT,
         "concurrent_agents = 1000000001",
         NULL,
         {"line 2", "[custom]", "concurrent_agents"}},
        {"count overflow",
         "[custom]",
         K_WORKFLOWS,
         "workflows = 99999999999999999999",
         NULL,
         {"line 3", "[custom]", "workflows"}},
        {"fee over max",
         "[custom]",
         K_BASE,
         "base_fee = 1000000.000001",
         NULL,
         {"line 6", "[custom]", "\"base_fee\""}},
        {"fee overflow",
         "[custom]",
         K_AGENT_HOUR,
         "agent_hour = 9223372036854775808",
         NULL,
         {"line 14", "[custom]", "\"agent_hour\""}},
        {"percent over max",
         "[custom]",
         K_MARGIN,
         "llm_margin_percent = 1001",
         NULL,
         {"line 17", "[custom]", "0..1000"}},
        {"gb over max",
         "[custom]",
         K_STORAGE,
         "storage_limit_gb = 1000000.001",
         NULL,
         {"line 8", "[custom]", "storage_limit_gb"}},
        {"gb overflow",
         "[custom]",
         K_STORAGE,
         "storage_limit_gb = 9223372036854775808",
         NULL,
         {"line 8", "[custom]", "storage_limit_gb"}},
        {"hours over max",
         "[custom]",
         K_HOURS,
         "included_agent_hours = 1000001",
         NULL,
         {"line 9", "[custom]", "included_agent_hours"}},
        {"gb four decimals",
         "[custom]",
         K_STORAGE,
         "storage_limit_gb = 0.0005",
         NULL,
         {"line 8", "[custom]", "\"0.0005\""}},
        {"gb exponent",
         "[custom]",
         K_STORAGE,
         "storage_limit_gb = 1e3",
         NULL,
         {"line 8", "[custom]", "storage_limit_gb"}},
        {"gb unit",
         "[custom]",
         K_STORAGE,
         "storage_limit_gb = 2GB",
         NULL,
         {"line 8", "[custom]", "storage_limit_gb"}},
        {"hours trailing dot",
         "[custom]",
         K_HOURS,
         "included_agent_hours = 1.",
         NULL,
         {"line 9", "[custom]", "included_agent_hours"}},
        {"hours leading dot",
         "[custom]",
         K_HOURS,
         "included_agent_hours = .5",
         NULL,
         {"line 9", "[custom]", "included_agent_hours"}},
        {"money seven decimals",
         "[custom]",
         K_API_CALL,
         "api_call = 0.0000001",
         NULL,
         {"line 15", "[custom]", "\"api_call\""}},
        {"money sign",
         "[custom]",
         K_OV_SMALL,
         "overage_small = $5",
         NULL,
         {"line 10", "[custom]", "\"overage_small\""}},
        {"money comma",
         "[custom]",
         K_OV_LARGE,
         "overage_large = 1,000",
         NULL,
         {"line 12", "[custom]", "\"overage_large\""}},
        {"money unlimited",
         "[custom]",
         K_GB_MONTH,
         "storage_gb_month = unlimited",
         NULL,
         {"line 13", "[custom]", "\"storage_gb_month\""}},
        {"bad over_quota",
         "[custom]",
         K_OVER,
         "over_quota = Hold",
         NULL,
         {"line 4", "[custom] key \"over_quota\"", "hold or bill"}},
        {"bad period",
         "[custom]",
         K_PERIOD,
         "period = monthly",
         NULL,
         {"line 5", "[custom] key \"period\"", "calendar or subscription"}},
        {"bad bool",
         "[custom]",
         K_LLM_BILLED,
         "llm_billed = yes",
         NULL,
         {"line 16", "[custom] key \"llm_billed\"", "true or false"}},
        {"bool as number",
         "[custom]",
         K_LLM_BILLED,
         "llm_billed = 1",
         NULL,
         {"line 16", "[custom]", "llm_billed"}},
        {"upper-case name", "[Pro]", K_NONE, NULL, NULL, {"line 1", "section [Pro]", "a-z"}},
        {"dot in a name", "[a.b]", K_NONE, NULL, NULL, {"line 1", "section [a.b]", NULL}},
        {"space in a name", "[a b]", K_NONE, NULL, NULL, {"line 1", "section [a b]", NULL}},
        {"empty name", "[]", K_NONE, NULL, NULL, {"line 1", "section []", NULL}},
        {"empty promo name", "[promo.]", K_NONE, NULL, NULL, {"line 1", "section [promo.]", NULL}},
        {"upper-case promo",
         "[promo.X]",
         K_NONE,
         NULL,
         NULL,
         {"line 1", "section [promo.X]", NULL}},
        {"name over 32 bytes",
         "[abcdefghijklmnopqrstuvwxyz0123456]",
         K_NONE,
         NULL,
         NULL,
         {"line 1", "[abcdefghijklmnopqrstuvwxyz0123456]", "32"}},
        {"syntax error",
         "[custom]",
         K_WORKFLOWS,
         "workflows 5",
         NULL,
         {"line 3", "[custom] syntax error", NULL}},
        {"indented key",
         "[custom]",
         K_WORKFLOWS,
         "  workflows = 5",
         NULL,
         {"line 3", "[custom] indented line", NULL}},
    };
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        build(text, sizeof(text), cases[i].header, cases[i].key, cases[i].line, cases[i].after,
              shipped);
        must_fail(cases[i].name, text, cases[i].want);
    }
    free(shipped);
}

/* A 32-byte name is the longest allowed. */
static void test_name_bounds(void **state)
{
    (void)state;
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    build(text, sizeof(text), "[abcdefghijklmnopqrstuvwxyz-_0123]", K_NONE, NULL,
          "[promo.abcdefghijklmnopqrstuvwxyz-_0123]\nmonthly_fees = 1\n", shipped);
    tiers_t *t = must_parse(text);
    const char *n32 = "abcdefghijklmnopqrstuvwxyz-_0123";
    assert_int_equal(strlen(n32), TIERS_NAME_MAX);
    assert_non_null(find(t, n32));
    assert_non_null(tiers_find_promo(t, n32, strlen(n32)));
    tiers_free(t);
    free(shipped);
}

static void test_promo_and_text_errors(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *text; /* followed by the shipped table */
        const char *want[3];
    } cases[] = {
        {"key outside a section",
         "workflows = 5\n",
         {"line 1", "\"workflows\"", "outside a section"}},
        {"key after a comment", "; x\nbase_fee = 5\n", {"line 2", "\"base_fee\"", "outside"}},
        {"promo with 0 entries",
         "; promo\n[promo.x]\nmonthly_fees =\n",
         {"line 3", "[promo.x] key \"monthly_fees\"", "empty amount for month 1"}},
        {"promo with 13 entries",
         "[promo.x]\nmonthly_fees = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13\n",
         {"line 2", "[promo.x] key \"monthly_fees\"", "more than 12 months"}},
        {"promo bad amount",
         "[promo.x]\nmonthly_fees = 0.59, abc\n",
         {"line 2", "[promo.x]", "bad amount \"abc\" for month 2"}},
        {"promo negative amount",
         "[promo.x]\nmonthly_fees = 1, -2\n",
         {"line 2", "[promo.x]", "\"-2\""}},
        {"promo space inside an amount",
         "[promo.x]\nmonthly_fees = 1 2\n",
         {"line 2", "[promo.x]", "\"1 2\""}},
        {"promo empty entry",
         "[promo.x]\nmonthly_fees = 1,,2\n",
         {"line 2", "[promo.x]", "empty amount for month 2"}},
        {"promo trailing comma",
         "[promo.x]\nmonthly_fees = 1, 2,\n",
         {"line 2", "[promo.x]", "empty amount for month 3"}},
        {"promo amount over max",
         "[promo.x]\nmonthly_fees = 1000000.01\n",
         {"line 2", "[promo.x]", "bad amount"}},
        {"promo long amount",
         "[promo.x]\nmonthly_fees = 1.0000000000000000000000000000000000000000000000000000000\n",
         {"line 2", "[promo.x]", "bad amount"}},
        {"promo unknown key",
         "[promo.x]\nfees = 1\n",
         {"line 2", "[promo.x] unknown key \"fees\"", NULL}},
        {"promo tier key",
         "[promo.x]\nmonthly_fees = 1\nbase_fee = 1\n",
         {"line 3", "[promo.x] unknown key \"base_fee\"", NULL}},
        {"promo duplicate key",
         "[promo.x]\nmonthly_fees = 1\nmonthly_fees = 2\n",
         {"line 3", "[promo.x] duplicate key \"monthly_fees\"", "first at line 2"}},
        {"promo missing key",
         "[promo.x]\n; nothing\n",
         {"line 1", "[promo.x] missing key \"monthly_fees\"", NULL}},
        {"duplicate promo",
         "[promo.x]\nmonthly_fees = 1\n[promo.x]\nmonthly_fees = 1\n",
         {"line 3", "duplicate section [promo.x]", NULL}},
        {"duplicate shipped promo",
         "[promo.new_year]\nmonthly_fees = 1\n",
         {"duplicate section [promo.new_year]", NULL, NULL}},
        {"junk line", "junk\n", {"line 1", "syntax error", NULL}},
        {"missing ]", "[custom\n", {"line 1", "]", NULL}},
    };
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t len = 0;
        append(text, sizeof(text), &len, cases[i].text);
        append(text, sizeof(text), &len, shipped);
        must_fail(cases[i].name, text, cases[i].want);
    }
    free(shipped);
}

/* Missing keys in the last section are found at the end of the text. */
static void test_missing_key_at_end(void **state)
{
    (void)state;
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    size_t len = 0;
    append(text, sizeof(text), &len, shipped);
    append(text, sizeof(text), &len, "[custom]\nworkflows = 1\n");
    char line[32];
    snprintf(line, sizeof(line), "line %zu:", count_lines(shipped) + 1);
    const char *const want[3] = {line, "[custom] missing key \"concurrent_agents\"", NULL};
    must_fail("missing key at the end", text, want);

    len = 0;
    append(text, sizeof(text), &len, shipped);
    append(text, sizeof(text), &len, "[promo.last]");
    snprintf(line, sizeof(line), "line %zu:", count_lines(shipped) + 1);
    const char *const want_promo[3] = {line, "[promo.last] missing key \"monthly_fees\"", NULL};
    must_fail("promo without key at the end", text, want_promo);
    free(shipped);
}

/* Each required tier, deleted from a copy of the shipped text, is named. */
static void test_missing_required_tier(void **state)
{
    (void)state;
    static const char *const required[] = {"free",     "pro", "team", "enterprise",
                                           "lifetime", "byo", "payg"};
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    for (size_t i = 0; i < N_ELEMS(required); i++) {
        char header[64], want_msg[64];
        snprintf(header, sizeof(header), "\n[%s]\n", required[i]);
        snprintf(want_msg, sizeof(want_msg), "missing tier [%s]", required[i]);
        const char *start = strstr(shipped, header);
        assert_non_null(start);
        start++; /* keep the newline before the header */
        const char *end = strstr(start + 1, "\n[");
        end = end ? end + 1 : start + strlen(start);
        size_t len = (size_t)(start - shipped);
        memcpy(text, shipped, len);
        memcpy(text + len, end, strlen(end) + 1);
        assert_null(strstr(text, header));
        const char *const want[3] = {want_msg, NULL, NULL};
        must_fail(required[i], text, want);
    }
    const char *const want_free[3] = {"missing tier [free]", NULL, NULL};
    must_fail("empty text", "", want_free);
    must_fail("only comments", "; nothing\n", want_free);
    free(shipped);
}

/* At most TIERS_MAX_ONE_TIME tiers with a one-time fee: the shipped lifetime plus copies. */
static void test_one_time_tiers(void **state)
{
    (void)state;
    char *shipped = load_shipped();
    const char *start = strstr(shipped, "\n[lifetime]\n");
    assert_non_null(start);
    const char *end = strstr(start + 1, "\n[");
    assert_non_null(end);
    const char *body = start + strlen("\n[lifetime]\n");
    size_t body_len = (size_t)(end - body) + 1;
    static char text[TEXT_MAX * 2];
    for (int copies = TIERS_MAX_ONE_TIME - 1; copies <= TIERS_MAX_ONE_TIME; copies++) {
        size_t at = (size_t)snprintf(text, sizeof(text), "%s", shipped);
        for (int i = 0; i < copies; i++) {
            at += (size_t)snprintf(text + at, sizeof(text) - at, "\n[lifetime%d]\n", i);
            assert_true(at + body_len < sizeof(text));
            memcpy(text + at, body, body_len);
            at += body_len;
            text[at] = '\0';
        }
        if (copies + 1 <= TIERS_MAX_ONE_TIME) {
            tiers_t *t = must_parse(text);
            assert_int_equal(find(t, "lifetime0")->one_time_fee_micros, 299000000);
            tiers_free(t);
        } else {
            const char *const want[3] = {"9 tiers have a one_time_fee; at most 8 may", NULL, NULL};
            must_fail("nine one-time tiers", text, want);
        }
    }
    free(shipped);
}

static void test_null_err(void **state)
{
    (void)state;
    tiers_t *t = NULL;
    assert_int_equal(tiers_parse("junk\n", 5, &t, NULL, 0), -1);
    assert_null(t);
    assert_int_equal(tiers_parse("", 0, &t, NULL, 0), -1);
    char small[8];
    assert_int_equal(tiers_parse("", 0, &t, small, sizeof(small)), -1);
    assert_int_equal(strlen(small), sizeof(small) - 1); /* truncated, still terminated */
}

/* ---- look-ups --------------------------------------------------------------------------- */

static void test_lookups(void **state)
{
    (void)state;
    char *text = load_shipped();
    tiers_t *t = must_parse(text);

    const tier_t *pro = find(t, "pro");
    assert_non_null(pro);
    assert_string_equal(pro->name, "pro");
    assert_ptr_equal(tiers_find(t, "proXYZ", 3), pro); /* need not be NUL-terminated */
    assert_null(tiers_find(t, "pro", 2));
    assert_null(find(t, "Pro"));
    assert_null(find(t, "PRO"));
    assert_null(find(t, "pro "));
    assert_null(find(t, "starter"));
    assert_null(tiers_find(t, "", 0));
    assert_null(tiers_find(t, NULL, 0));
    assert_null(find(t, "abcdefghijklmnopqrstuvwxyz0123456")); /* over TIERS_NAME_MAX */
    assert_null(find(t, "new_year"));                          /* a promo, not a tier */
    assert_null(find(t, "promo.new_year"));

    assert_ptr_equal(tiers_free_tier(t), find(t, "free"));
    assert_string_equal(tiers_free_tier(t)->name, "free");

    assert_non_null(tiers_find_promo(t, "new_year", 8));
    assert_ptr_equal(tiers_find_promo(t, "new_yearX", 8), tiers_find_promo(t, "new_year", 8));
    assert_null(tiers_find_promo(t, "new_yea", 7));
    assert_null(tiers_find_promo(t, "New_year", 8));
    assert_null(tiers_find_promo(t, "promo.new_year", 14));
    assert_null(tiers_find_promo(t, "pro", 3)); /* a tier, not a promo */
    assert_null(tiers_find_promo(t, "", 0));
    tiers_free(t);
    tiers_free(NULL);
    free(text);
}

/* tiers_at follows the file, whatever the order; the free tier need not come first. */
static void test_file_order(void **state)
{
    (void)state;
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    size_t len = 0;
    /* The shipped text with [free] moved to the end, and two operator tiers around it. */
    const char *start = strstr(shipped, "\n[free]\n") + 1;
    const char *end = strstr(start + 1, "\n[") + 1;
    static char free_sec[2048];
    assert_true((size_t)(end - start) < sizeof(free_sec));
    memcpy(free_sec, start, (size_t)(end - start));
    free_sec[end - start] = '\0';
    build(text, sizeof(text), "[zeta]", K_NONE, NULL, NULL, "");
    len = strlen(text);
    append(text, sizeof(text), &len, end);
    append(text, sizeof(text), &len, free_sec);
    char *alpha = text + len;
    build(alpha, sizeof(text) - len, "[alpha]", K_NONE, NULL, NULL, "");

    tiers_t *t = must_parse(text);
    static const char *const order[] = {"zeta", "pro",  "team", "enterprise", "lifetime",
                                        "byo",  "payg", "free", "alpha"};
    assert_int_equal(tiers_count(t), N_ELEMS(order));
    for (size_t i = 0; i < N_ELEMS(order); i++)
        assert_string_equal(tiers_at(t, i)->name, order[i]);
    assert_ptr_equal(tiers_free_tier(t), tiers_at(t, 7));
    assert_non_null(tiers_find_promo(t, "new_year", 8));
    tiers_free(t);
    free(shipped);
}

/* Twelve months is the most a promo holds; spaces around commas are allowed. */
static void test_promo_months(void **state)
{
    (void)state;
    char *shipped = load_shipped();
    static char text[TEXT_MAX];
    size_t len = 0;
    append(text, sizeof(text), &len,
           "[promo.year]\nmonthly_fees = 1,2 ,3 , 4,\t5,6,7,8,9,10,11,0.000001\n"
           "[promo.one]\nmonthly_fees = 0\n");
    append(text, sizeof(text), &len, shipped);
    tiers_t *t = must_parse(text);
    const tier_promo_t *p = tiers_find_promo(t, "year", 4);
    assert_non_null(p);
    assert_int_equal(p->months, TIERS_PROMO_MAX_MONTHS);
    for (int m = 0; m < 11; m++)
        assert_int_equal(p->monthly_fee_micros[m], USD(m + 1));
    assert_int_equal(p->monthly_fee_micros[11], 1);
    p = tiers_find_promo(t, "one", 3);
    assert_non_null(p);
    assert_int_equal(p->months, 1);
    assert_int_equal(p->monthly_fee_micros[0], 0);
    tiers_free(t);
    free(shipped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_table),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_custom_tier),
        cmocka_unit_test(test_key_errors),
        cmocka_unit_test(test_name_bounds),
        cmocka_unit_test(test_promo_and_text_errors),
        cmocka_unit_test(test_missing_key_at_end),
        cmocka_unit_test(test_missing_required_tier),
        cmocka_unit_test(test_one_time_tiers),
        cmocka_unit_test(test_null_err),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_file_order),
        cmocka_unit_test(test_promo_months),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
