/*
 * test_billing — unit tests of the invoice arithmetic (daemon/billing.c) against the contract of
 * daemon/billing.h and the "Pricing rules" / "Invoice arithmetic" of PRODUCT.md, with the
 * shipped tier table (deploy/tiers.ini) and one edited copy of it.
 *
 * Every expected amount is worked out by hand in a comment next to its case; nothing here calls
 * the code under test to compute an expectation, and no formula of billing.c is copied. Most
 * tests are tables of scenarios: a list of operations on one bill_t (stretches, usage, credits,
 * period changes), then the invoice it must produce, compared line by line on (kind, detail,
 * unit_price_micros, raw, scale, amount_cents) — the columns reconciliation recomputes — plus
 * subtotal / credits / total, the credit balance left, and the usage meters where given.
 *
 * The edited table ("custom") is deploy/tiers.ini with pro's included_agent_hours set to 10,
 * plus two tiers an operator could add: [calmonthly] (a calendar-period tier with a $30 fee, to
 * show that promotions ignore calendar tiers) and [paygm7] (LLM billed at a 7% margin).
 *
 * Periods: April 2026 (30 days, L = 2_592_000_000 ms) unless a case says otherwise; May 2026 has
 * 31 days (2_678_400_000 ms). 1 GB = 10^9 bytes. 1 day = 86_400_000 ms, 1 h = 3_600_000 ms.
 *
 * Cents: amount = round_half_up(raw × unit_price_micros / (scale × 10^4)) per billing.h, so
 * "x µUSD" below is divided by 10^4 to get cents.
 *
 * One randomized test (test_random_invariants) checks the header's invariants on random usage;
 * it prints its seed and replays from METERD_TEST_SEED.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "billing.h"
#include "testrng.h"
#include "testtiers.h"
#include "tiers.h"
#include "wire.h"

/* Scenario tables leave trailing fields out when they are zero: positional initializers that
 * stop early are intended here. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define SEC  1000LL
#define HOUR 3600000LL
#define DAY  86400000LL
#define GB   1000000000LL

#define APR1   1775001600000LL /* 2026-04-01T00:00:00Z */
#define MAY1   1777593600000LL /* 2026-05-01T00:00:00Z = APR1 + 30 days */
#define JUN1   1780272000000LL /* 2026-06-01T00:00:00Z = MAY1 + 31 days */
#define JUL1   1782864000000LL /* 2026-07-01T00:00:00Z = JUN1 + 30 days */
#define APR(d) (APR1 + ((d)-1) * DAY)
#define MAY(d) (MAY1 + ((d)-1) * DAY)
#define L_APR  2592000000LL /* 30 × 86_400_000 */
#define L_MAY  2678400000LL /* 31 × 86_400_000 */
/* storage scale = 10^9 × L */
#define S_APR 2592000000000000000LL /* 10^9 × 2_592_000_000 = 2.592 × 10^18 */
#define S_MAY 2678400000000000000LL /* 10^9 × 2_678_400_000 = 2.6784 × 10^18 */

#define SMALL  WIRE_COMPLEXITY_SMALL
#define MEDIUM WIRE_COMPLEXITY_MEDIUM
#define LARGE  WIRE_COMPLEXITY_LARGE

static tiers_t *shipped, *custom;

/* ---- the edited tier table --------------------------------------------------------------- */

static const char EXTRA_TIERS[] = "\n[calmonthly]\n"
                                  "concurrent_agents = 5\n"
                                  "workflows = 100\n"
                                  "over_quota = bill\n"
                                  "period = calendar\n"
                                  "base_fee = 30.00\n"
                                  "one_time_fee = 0\n"
                                  "storage_limit_gb = unlimited\n"
                                  "included_agent_hours = unlimited\n"
                                  "overage_small = 5.00\n"
                                  "overage_medium = 10.00\n"
                                  "overage_large = 15.00\n"
                                  "storage_gb_month = 0.10\n"
                                  "agent_hour = 2.00\n"
                                  "api_call = 0\n"
                                  "llm_billed = false\n"
                                  "llm_margin_percent = 0\n"
                                  "\n[paygm7]\n"
                                  "concurrent_agents = 1\n"
                                  "workflows = 0\n"
                                  "over_quota = bill\n"
                                  "period = calendar\n"
                                  "base_fee = 0\n"
                                  "one_time_fee = 0\n"
                                  "storage_limit_gb = 0\n"
                                  "included_agent_hours = unlimited\n"
                                  "overage_small = 10.00\n"
                                  "overage_medium = 12.50\n"
                                  "overage_large = 15.00\n"
                                  "storage_gb_month = 0.15\n"
                                  "agent_hour = 2.00\n"
                                  "api_call = 0.001\n"
                                  "llm_billed = true\n"
                                  "llm_margin_percent = 7\n";

/* deploy/tiers.ini with [pro] included_agent_hours = 10 and EXTRA_TIERS appended. */
static tiers_t *custom_tiers(void)
{
    static const char old_key[] = "included_agent_hours = unlimited";
    static const char new_key[] = "included_agent_hours = 10";
    char *text, err[256];
    size_t n;
    tiers_t *t = NULL;
    if (config_read_file(SOURCE_DIR "/deploy/tiers.ini", &text, &n) < 0)
        return NULL;
    const char *sec = strstr(text, "\n[pro]\n");
    const char *key = sec ? strstr(sec, old_key) : NULL;
    const char *next = sec ? strstr(sec + 1, "\n[") : NULL;
    if (!key || (next && key > next)) {
        fprintf(stderr, "deploy/tiers.ini: no included_agent_hours in [pro]\n");
        free(text);
        return NULL;
    }
    size_t pre = (size_t)(key - text), post = n - pre - (sizeof(old_key) - 1);
    size_t len = pre + (sizeof(new_key) - 1) + post + (sizeof(EXTRA_TIERS) - 1);
    char *ed = malloc(len + 1);
    if (!ed) {
        free(text);
        return NULL;
    }
    memcpy(ed, text, pre);
    memcpy(ed + pre, new_key, sizeof(new_key) - 1);
    memcpy(ed + pre + sizeof(new_key) - 1, key + sizeof(old_key) - 1, post);
    memcpy(ed + pre + sizeof(new_key) - 1 + post, EXTRA_TIERS, sizeof(EXTRA_TIERS) - 1);
    ed[len] = '\0';
    if (tiers_parse(ed, len, &t, err, sizeof(err)) != 0)
        fprintf(stderr, "edited tiers.ini: %s\n", err);
    free(ed);
    free(text);
    return t;
}

static int setup(void **state)
{
    (void)state;
    shipped = shipped_tiers();
    custom = custom_tiers();
    return shipped && custom ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tiers_free(shipped);
    tiers_free(custom);
    return 0;
}

static const tier_t *tier_in(bool cust, const char *name)
{
    const tier_t *t = tiers_find(cust ? custom : shipped, name, strlen(name));
    if (!t)
        fail_msg("no tier %s", name);
    return t;
}

static const tier_promo_t *promo_in(bool cust, const char *name)
{
    if (!name)
        return NULL;
    const tier_promo_t *p = tiers_find_promo(cust ? custom : shipped, name, strlen(name));
    if (!p)
        fail_msg("no promo %s", name);
    return p;
}

/* Decimal text of v, written here so that failure messages do not depend on bill_i128_text. */
static const char *i128s(bill_i128_t v, char buf[48])
{
    char tmp[48];
    int n = 0;
    bill_u128_t u = v < 0 ? (bill_u128_t)0 - (bill_u128_t)v : (bill_u128_t)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    int k = 0;
    if (v < 0)
        buf[k++] = '-';
    while (n)
        buf[k++] = tmp[--n];
    buf[k] = '\0';
    return buf;
}

/* ---- the tier table as the tests read it ------------------------------------------------- */

/* The figures every hand computation below relies on, straight from deploy/tiers.ini. */
static void test_shipped_figures(void **state)
{
    (void)state;
    assert_int_equal(tier_in(false, "pro")->base_fee_micros, 50000000);
    assert_int_equal(tier_in(false, "team")->base_fee_micros, 150000000);
    assert_int_equal(tier_in(false, "byo")->base_fee_micros, 19000000);
    assert_int_equal(tier_in(false, "enterprise")->base_fee_micros, 1000000000);
    assert_int_equal(tier_in(false, "free")->base_fee_micros, 0);
    assert_int_equal(tier_in(false, "lifetime")->one_time_fee_micros, 299000000);
    assert_int_equal(tier_in(false, "payg")->overage_micros[MEDIUM], 12500000);
    assert_int_equal(tier_in(false, "payg")->api_call_micros, 1000);
    assert_int_equal(tier_in(false, "payg")->llm_margin_percent, 20);
    assert_int_equal(tier_in(false, "free")->storage_limit_bytes, 2 * GB);
    assert_int_equal(tier_in(false, "pro")->included_agent_ms, TIERS_UNLIMITED);
    assert_int_equal(tier_in(true, "pro")->included_agent_ms, 10 * HOUR);
    assert_int_equal(tier_in(true, "team")->included_agent_ms, TIERS_UNLIMITED);
    assert_int_equal(tier_in(true, "calmonthly")->base_fee_micros, 30000000);
    assert_int_equal(tier_in(true, "paygm7")->llm_margin_percent, 7);
    const tier_promo_t *ny = promo_in(false, "new_year");
    assert_int_equal(ny->months, 3);
    assert_int_equal(ny->monthly_fee_micros[0], 590000);
    assert_int_equal(ny->monthly_fee_micros[1], 12990000);
    assert_int_equal(ny->monthly_fee_micros[2], 12990000);
}

/* ---- bill_round_div and bill_i128_text --------------------------------------------------- */

typedef struct {
    bill_i128_t num, den;
    int64_t want;
} rdiv_t;

static void test_round_div(void **state)
{
    (void)state;
    const bill_i128_t E12 = 1000000000000LL, E18 = 1000000000000000000LL;
    const rdiv_t cases[] = {
        {0, 7, 0},               /* 0 / 7 = 0 */
        {0, 1, 0},               /* 0 */
        {5, 10, 1},              /* 0.5 exactly: half up → 1 */
        {4, 10, 0},              /* 0.4 → 0 */
        {6, 10, 1},              /* 0.6 → 1 */
        {15, 10, 2},             /* 1.5 → 2 */
        {25, 10, 3},             /* 2.5 → 3 (half up, not to even) */
        {24, 10, 2},             /* 2.4 → 2 */
        {1, 2, 1},               /* 0.5 → 1 */
        {1, 3, 0},               /* 0.333… → 0 */
        {2, 3, 1},               /* 0.666… → 1 */
        {7, 7, 1},               /* 1 */
        {3001, 2, 1501},         /* 1500.5 → 1501 */
        {-5, 10, -1},            /* −0.5: half away from zero → −1 */
        {-4, 10, 0},             /* −0.4 → 0 */
        {-6, 10, -1},            /* −0.6 → −1 */
        {-15, 10, -2},           /* −1.5 → −2 */
        {-1000000, 10000, -100}, /* a credits line: −100 cents exactly */
        /* 123456789012345678 × 10^12 + 5 × 10^11 ≈ 1.2 × 10^29 (> 2^64): …678.5 → …679 */
        {(bill_i128_t)123456789012345678LL * E12 + 500000000000LL, E12, 123456789012345679LL},
        /* the same minus 1: …678.4999… → …678 */
        {(bill_i128_t)123456789012345678LL * E12 + 499999999999LL, E12, 123456789012345678LL},
        /* (2^63 − 1) × 10^18 / 10^18 = 2^63 − 1 exactly */
        {(bill_i128_t)INT64_MAX * E18, E18, INT64_MAX},
        /* storage: 3 GB over all of April at $0.10: raw 3e9 × 2.592e9 = 7.776e18, price 100000,
         * den 2.592e18 × 10^4: 7.776e23 / 2.592e22 = 30 */
        {(bill_i128_t)7776000000000000000LL * 100000, (bill_i128_t)S_APR * 10000, 30},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got = bill_round_div(cases[i].num, cases[i].den);
        if (got != cases[i].want) {
            char a[48], b[48];
            fail_msg("case %zu: bill_round_div(%s, %s) = %lld, want %lld", i,
                     i128s(cases[i].num, a), i128s(cases[i].den, b), (long long)got,
                     (long long)cases[i].want);
        }
    }
}

static void test_i128_text(void **state)
{
    (void)state;
    const bill_i128_t two64 = (bill_i128_t)1 << 64;
    const bill_i128_t max128 = (bill_i128_t)(((bill_u128_t)1 << 127) - 1);
    const struct {
        bill_i128_t v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {1, "1"},
        {-1, "-1"},
        {123, "123"},
        {-1000000, "-1000000"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
        {two64, "18446744073709551616"},                            /* 2^64 */
        {two64 + 1, "18446744073709551617"},                        /* 2^64 + 1 */
        {-two64, "-18446744073709551616"},                          /* −2^64 */
        {(bill_i128_t)1 << 100, "1267650600228229401496703205376"}, /* 2^100 */
        {(bill_i128_t)S_APR * 10000, "25920000000000000000000"},    /* 2.592e22 */
        {max128, "170141183460469231731687303715884105727"},        /* 2^127 − 1 */
        {-max128 - 1, "-170141183460469231731687303715884105728"},  /* −2^127 */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char buf[48];
        memset(buf, 'x', sizeof(buf));
        int n = bill_i128_text(cases[i].v, buf);
        if (n != (int)strlen(cases[i].want) || memcmp(buf, cases[i].want, (size_t)n + 1) != 0)
            fail_msg("case %zu: bill_i128_text gave %d \"%.*s\", want \"%s\"", i, n,
                     n > 0 && n < 48 ? n : 0, buf, cases[i].want);
    }
}

/* ---- names ------------------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    /* the kind column of invoice_line_items (schemas/003_billing.sql) */
    static const char *const kinds[BILL_KINDS] = {"base_fee",    "one_time_fee", "workflow_overage",
                                                  "llm",         "api_calls",    "storage",
                                                  "agent_hours", "credits"};
    for (int k = 0; k < BILL_KINDS; k++)
        assert_string_equal(bill_kind_name((bill_kind_t)k), kinds[k]);
    /* the meter column of usage_rollups (schemas/003_billing.sql) */
    static const char *const meters[BILL_METERS] = {
        "workflows",      "overage_workflows", "held_workflows", "agent_ms",       "llm_calls",
        "llm_cost_nanos", "llm_billed_nanos",  "api_calls",      "storage_byte_ms"};
    for (int m = 0; m < BILL_METERS; m++)
        assert_string_equal(bill_meter_name((bill_meter_t)m), meters[m]);
    /* the reason field of budget.exceeded (PRODUCT.md) */
    assert_string_equal(bill_reason_name(BILL_REASON_BUDGET), "budget");
    assert_string_equal(bill_reason_name(BILL_REASON_WORKFLOW_QUOTA), "workflow_quota");
    assert_string_equal(bill_reason_name(BILL_REASON_CREDITS), "credits");
    assert_non_null(bill_reason_name(BILL_REASON_NONE));
}

/* ---- bill_fee_in_force ------------------------------------------------------------------- */

typedef struct {
    const char *what;
    bool custom;
    const char *tier, *promo;
    int64_t promo_start, period_start;
    int64_t want;
} fee_case_t;

/* Subscription months of a promotion bought in the period starting P = 2026-01-15T00:00Z
 * (1768435200000): month 1 [Jan 15, Feb 15), month 2 [Feb 15, Mar 15), month 3 [Mar 15, Apr 15),
 * from Apr 15 the tier's fee. Unix ms by hand (days since 1970-01-01 × 86_400_000):
 *   2026-01-15 = day 20468 → 1768435200000      2026-02-15 = day 20499 → 1771113600000
 *   2026-03-15 = day 20527 → 1773532800000      2026-04-15 = day 20558 → 1776211200000
 *   2026-05-15 = day 20588 → 1778803200000      2026-02-20 = day 20504 → 1771545600000
 *   2025-11-15 = day 20407 → 1763164800000      2025-12-15 = day 20437 → 1765756800000
 * and at 13:45:10.123 (+ 49_510_123 ms):
 *   2026-01-15 → 1768484710123, 02-15 → 1771163110123, 03-15 → 1773582310123,
 *   04-15 → 1776260710123. */
#define P_JAN15  1768435200000LL
#define P_FEB15  1771113600000LL
#define P_MAR15  1773532800000LL
#define P_APR15  1776211200000LL
#define P_MAY15  1778803200000LL
#define P_FEB20  1771545600000LL
#define P_NOV15  1763164800000LL
#define P_DEC15  1765756800000LL
#define PT_JAN15 1768484710123LL
#define PT_FEB15 1771163110123LL
#define PT_MAR15 1773582310123LL
#define PT_APR15 1776260710123LL

static const fee_case_t FEE_CASES[] = {
    {"pro, no promotion", false, "pro", NULL, -1, P_JAN15, 50000000},
    {"pro new_year month 1: $0.59", false, "pro", "new_year", P_JAN15, P_JAN15, 590000},
    {"pro new_year month 2: $12.99", false, "pro", "new_year", P_JAN15, P_FEB15, 12990000},
    {"pro new_year month 3: $12.99", false, "pro", "new_year", P_JAN15, P_MAR15, 12990000},
    {"pro new_year month 4: the tier's $50", false, "pro", "new_year", P_JAN15, P_APR15, 50000000},
    {"pro new_year month 5: $50", false, "pro", "new_year", P_JAN15, P_MAY15, 50000000},
    {"1 ms before month 2 is month 1", false, "pro", "new_year", P_JAN15, P_FEB15 - 1, 590000},
    {"1 ms before month 4 is month 3", false, "pro", "new_year", P_JAN15, P_APR15 - 1, 12990000},
    {"a period starting inside month 2", false, "pro", "new_year", P_JAN15, P_FEB20, 12990000},
    {"across the year end: Nov 15 → month 2 Dec 15", false, "pro", "new_year", P_NOV15, P_DEC15,
     12990000},
    {"across the year end: Nov 15 → month 3 Jan 15", false, "pro", "new_year", P_NOV15, P_JAN15,
     12990000},
    {"across the year end: Nov 15 → month 4 Feb 15", false, "pro", "new_year", P_NOV15, P_FEB15,
     50000000},
    {"odd time of day, month 2 at the same instant", false, "pro", "new_year", PT_JAN15, PT_FEB15,
     12990000},
    {"odd time of day, 1 ms before month 2", false, "pro", "new_year", PT_JAN15, PT_FEB15 - 1,
     590000},
    {"odd time of day, month 3", false, "pro", "new_year", PT_JAN15, PT_MAR15, 12990000},
    {"odd time of day, month 4", false, "pro", "new_year", PT_JAN15, PT_APR15, 50000000},
    {"team new_year month 1", false, "team", "new_year", P_JAN15, P_JAN15, 590000},
    {"team new_year month 4: $150", false, "team", "new_year", P_JAN15, P_APR15, 150000000},
    {"byo new_year month 2", false, "byo", "new_year", P_JAN15, P_FEB15, 12990000},
    {"byo new_year month 4: $19", false, "byo", "new_year", P_JAN15, P_APR15, 19000000},
    {"team, no promotion", false, "team", NULL, -1, P_FEB15, 150000000},
    {"enterprise, no promotion: table's $1000", false, "enterprise", NULL, -1, P_FEB15, 1000000000},
    /* calendar tiers ignore promotions: their own fee */
    {"free ignores new_year: $0", false, "free", "new_year", P_JAN15, P_JAN15, 0},
    {"lifetime ignores new_year: $0", false, "lifetime", "new_year", P_JAN15, P_FEB15, 0},
    {"payg ignores new_year: $0", false, "payg", "new_year", P_JAN15, P_JAN15, 0},
    {"calmonthly ($30, calendar) ignores new_year, month 1", true, "calmonthly", "new_year",
     P_JAN15, P_JAN15, 30000000},
    {"calmonthly ignores new_year, month 2", true, "calmonthly", "new_year", P_JAN15, P_FEB15,
     30000000},
};

static void test_fee_in_force(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(FEE_CASES); i++) {
        const fee_case_t *c = &FEE_CASES[i];
        int64_t got = bill_fee_in_force(tier_in(c->custom, c->tier), promo_in(c->custom, c->promo),
                                        c->promo_start, c->period_start);
        if (got != c->want)
            fail_msg("case \"%s\": fee %lld µUSD, want %lld", c->what, (long long)got,
                     (long long)c->want);
    }
}

/* ---- scenarios: operations and the invoice they produce ---------------------------------- */

typedef enum {
    OP_END = 0,
    OP_OPEN,     /* a = start, b = nominal end */
    OP_NOMINAL,  /* a = nominal end */
    OP_STRETCH,  /* tier, promo, a = from, b = fee µUSD (written by hand) */
    OP_ONE_TIME, /* tier */
    OP_WF,       /* tier, a = complexity, b = overage */
    OP_HELD,     /* */
    OP_LLM,      /* tier, a = cost nanos, b = byo */
    OP_API,      /* tier, a = count */
    OP_REPORT,   /* tier, a = now, b = bytes */
    OP_ADVANCE,  /* tier, a = now */
    OP_AGENT,    /* tier, a = ms */
    OP_CREDITS,  /* a = µUSD */
    OP_SETTLE,   /* a = end: final invoice at a, settled */
} op_kind_t;

typedef struct {
    op_kind_t op;
    const char *tier, *promo;
    int64_t a, b;
} op_t;

#define OPEN(s_, e_)                                                                               \
    {                                                                                              \
        OP_OPEN, NULL, NULL, (s_), (e_)                                                            \
    }
#define NOMINAL(e_)                                                                                \
    {                                                                                              \
        OP_NOMINAL, NULL, NULL, (e_), 0                                                            \
    }
#define STR(t_, from_, fee_)                                                                       \
    {                                                                                              \
        OP_STRETCH, (t_), NULL, (from_), (fee_)                                                    \
    }
#define STRP(t_, p_, f_, fee_)                                                                     \
    {                                                                                              \
        OP_STRETCH, (t_), (p_), (f_), (fee_)                                                       \
    }
#define ONCE(t_)                                                                                   \
    {                                                                                              \
        OP_ONE_TIME, (t_), NULL, 0, 0                                                              \
    }
#define WF(t_, cx_, over_)                                                                         \
    {                                                                                              \
        OP_WF, (t_), NULL, (cx_), (over_)                                                          \
    }
#define HELDW                                                                                      \
    {                                                                                              \
        OP_HELD, NULL, NULL, 0, 0                                                                  \
    }
#define LLM(t_, nanos_, byo_)                                                                      \
    {                                                                                              \
        OP_LLM, (t_), NULL, (nanos_), (byo_)                                                       \
    }
#define API(t_, n_)                                                                                \
    {                                                                                              \
        OP_API, (t_), NULL, (n_), 0                                                                \
    }
#define REPORT(t_, now_, b_)                                                                       \
    {                                                                                              \
        OP_REPORT, (t_), NULL, (now_), (b_)                                                        \
    }
#define ADV(t_, now_)                                                                              \
    {                                                                                              \
        OP_ADVANCE, (t_), NULL, (now_), 0                                                          \
    }
#define AGENT(t_, ms_)                                                                             \
    {                                                                                              \
        OP_AGENT, (t_), NULL, (ms_), 0                                                             \
    }
#define CRED(m_)                                                                                   \
    {                                                                                              \
        OP_CREDITS, NULL, NULL, (m_), 0                                                            \
    }
#define SETTLE(end_)                                                                               \
    {                                                                                              \
        OP_SETTLE, NULL, NULL, (end_), 0                                                           \
    }

typedef struct {
    bill_kind_t kind;
    const char *detail; /* NULL ends a list */
    int64_t price;
    bill_i128_t raw, scale;
    int64_t cents;
    int64_t count; /* checked on llm lines only */
} xline_t;

#define LN(k_, d_, p_, r_, s_, c_)                                                                 \
    {                                                                                              \
        (k_), (d_), (p_), (r_), (s_), (c_), 0                                                      \
    }
#define BASE(t_, fee_, ms_, L_, c_) LN(BILL_BASE_FEE, (t_), (fee_), (ms_), (L_), (c_))
#define LLMLN(raw_, c_, n_)                                                                        \
    {                                                                                              \
        BILL_LLM, "", 1200000, (raw_), 1000000000, (c_), (n_)                                      \
    }
#define CREDLN(c_) LN(BILL_CREDITS, "", -1000000, (c_), 100, -(c_))

#define MAX_OPS   24
#define MAX_LINES 10

typedef struct {
    const char *name;
    bool custom; /* tiers from the edited table */
    op_t ops[MAX_OPS];
    int64_t end; /* -1: draft */
    xline_t lines[MAX_LINES];
    int64_t subtotal, credits, total;
    int64_t balance; /* credits_micros after the operations */
    bool meters_checked;
    int64_t meters[BILL_METERS]; /* BILL_M_STORAGE_BYTE_MS is not compared (see storage_ms) */
    bool storage_checked;
    bill_i128_t storage_ms; /* storage_byte_ms */
} scen_t;

static void apply_op(bill_t *b, bool cust, const op_t *o, int64_t *start, int64_t *nominal)
{
    const tier_t *t = o->tier ? tier_in(cust, o->tier) : NULL;
    bill_invoice_t inv;
    switch (o->op) {
    case OP_END:
        break;
    case OP_OPEN:
        bill_open_period(b, o->a, o->b);
        *start = o->a;
        *nominal = o->b;
        break;
    case OP_NOMINAL:
        bill_set_nominal_end(b, o->a);
        *nominal = o->a;
        break;
    case OP_STRETCH:
        bill_stretch(b, o->a, t, promo_in(cust, o->promo), o->b);
        break;
    case OP_ONE_TIME:
        bill_one_time(b, t);
        break;
    case OP_WF:
        bill_workflow(b, t, (wire_complexity_t)o->a, o->b != 0);
        break;
    case OP_HELD:
        bill_workflow_held(b);
        break;
    case OP_LLM:
        bill_llm(b, t, o->a, o->b != 0);
        break;
    case OP_API:
        bill_api(b, t, o->a);
        break;
    case OP_REPORT:
        bill_storage_report(b, t, o->a, o->b);
        break;
    case OP_ADVANCE:
        bill_storage_advance(b, t, o->a);
        break;
    case OP_AGENT:
        bill_agent(b, t, o->a);
        break;
    case OP_CREDITS:
        bill_credits(b, o->a);
        break;
    case OP_SETTLE:
        memset(&inv, 0, sizeof(inv));
        bill_invoice(b, o->a, &inv);
        assert_true(inv.final);
        assert_int_equal(inv.period_end, o->a);
        assert_true(inv.total_cents >= 0);
        bill_settle(b, &inv);
        bill_invoice_free(&inv);
        break;
    }
}

static void print_invoice(const char *title, const bill_invoice_t *inv)
{
    char r[48], s[48];
    print_error("%s: period [%lld, %lld) nominal %lld %s, %zu lines, subtotal %lld credits %lld "
                "total %lld\n",
                title, (long long)inv->period_start, (long long)inv->period_end,
                (long long)inv->nominal_end, inv->final ? "final" : "draft", inv->n,
                (long long)inv->subtotal_cents, (long long)inv->credits_cents,
                (long long)inv->total_cents);
    for (size_t i = 0; i < inv->n; i++) {
        const bill_line_t *l = &inv->lines[i];
        print_error("  %s \"%s\" price %lld raw %s scale %s → %lld cents (count %lld)\n",
                    bill_kind_name(l->kind), l->detail, (long long)l->unit_price_micros,
                    i128s(l->raw, r), i128s(l->scale, s), (long long)l->amount_cents,
                    (long long)l->count);
    }
}

static void print_expected(const xline_t *x)
{
    char r[48], s[48];
    print_error("expected:\n");
    for (; x->detail; x++)
        print_error("  %s \"%s\" price %lld raw %s scale %s → %lld cents\n",
                    bill_kind_name(x->kind), x->detail, (long long)x->price, i128s(x->raw, r),
                    i128s(x->scale, s), (long long)x->cents);
}

static bool line_is(const bill_line_t *l, const xline_t *x)
{
    return l->kind == x->kind && strcmp(l->detail, x->detail) == 0 &&
           l->unit_price_micros == x->price && l->raw == x->raw && l->scale == x->scale &&
           l->amount_cents == x->cents && (x->kind != BILL_LLM || l->count == x->count);
}

/* Compares inv with the expected lines and sums; on mismatch prints both and fails. */
static void check_lines(const char *name, const bill_invoice_t *inv, const xline_t *x,
                        int64_t subtotal, int64_t credits, int64_t total)
{
    size_t nx = 0;
    while (nx < MAX_LINES && x[nx].detail)
        nx++;
    bool ok = inv->n == nx && inv->subtotal_cents == subtotal && inv->credits_cents == credits &&
              inv->total_cents == total;
    for (size_t i = 0; ok && i < nx; i++)
        ok = line_is(&inv->lines[i], &x[i]);
    if (!ok) {
        print_error("scenario \"%s\": invoice differs (want subtotal %lld credits %lld total "
                    "%lld)\n",
                    name, (long long)subtotal, (long long)credits, (long long)total);
        print_invoice("got", inv);
        print_expected(x);
        fail_msg("scenario \"%s\"", name);
    }
}

static void run_scenario(const scen_t *sc)
{
    bill_t b;
    bill_init(&b);
    int64_t start = APR1, nominal = MAY1;
    bill_open_period(&b, APR1, MAY1);
    for (size_t i = 0; i < MAX_OPS && sc->ops[i].op != OP_END; i++)
        apply_op(&b, sc->custom, &sc->ops[i], &start, &nominal);
    bill_invoice_t inv;
    memset(&inv, 0, sizeof(inv));
    bill_invoice(&b, sc->end, &inv);
    if (inv.period_start != start || inv.nominal_end != nominal ||
        inv.period_end != (sc->end < 0 ? nominal : sc->end) || inv.final != (sc->end >= 0)) {
        print_invoice("got", &inv);
        fail_msg("scenario \"%s\": period fields, want [%lld, %lld) nominal %lld %s", sc->name,
                 (long long)start, (long long)(sc->end < 0 ? nominal : sc->end), (long long)nominal,
                 sc->end < 0 ? "draft" : "final");
    }
    check_lines(sc->name, &inv, sc->lines, sc->subtotal, sc->credits, sc->total);
    if (b.credits_micros != sc->balance)
        fail_msg("scenario \"%s\": credit balance %lld µUSD, want %lld", sc->name,
                 (long long)b.credits_micros, (long long)sc->balance);
    if (sc->meters_checked)
        for (int m = 0; m < BILL_METERS; m++)
            if (m != BILL_M_STORAGE_BYTE_MS && b.meters[m] != sc->meters[m])
                fail_msg("scenario \"%s\": meter %s = %lld, want %lld", sc->name,
                         bill_meter_name((bill_meter_t)m), (long long)b.meters[m],
                         (long long)sc->meters[m]);
    if (sc->storage_checked && b.storage_byte_ms != sc->storage_ms) {
        char g[48], w[48];
        fail_msg("scenario \"%s\": storage_byte_ms %s, want %s", sc->name,
                 i128s(b.storage_byte_ms, g), i128s(sc->storage_ms, w));
    }
    bill_invoice_free(&inv);
    bill_destroy(&b);
}

static void run_table(const scen_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        run_scenario(&t[i]);
}

/* ---- base fee ---------------------------------------------------------------------------- */

static const scen_t BASE_FEE[] = {
    /* pro $50 all of April: 50_000_000 µ × L/L = 50_000_000 µ → 5000 cents */
    {"pro whole period", .ops = {STR("pro", APR1, 50000000)}, .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000, .total = 5000},
    /* the same, final at the nominal end */
    {"pro whole period, final", .ops = {STR("pro", APR1, 50000000)}, .end = MAY1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000, .total = 5000},
    /* team $150: 150_000_000 µ → 15000 cents */
    {"team whole period", .ops = {STR("team", APR1, 150000000)}, .end = -1,
     .lines = {BASE("team", 150000000, L_APR, L_APR, 15000)}, .subtotal = 15000, .total = 15000},
    /* byo $19: 19_000_000 µ → 1900 cents */
    {"byo whole period", .ops = {STR("byo", APR1, 19000000)}, .end = -1,
     .lines = {BASE("byo", 19000000, L_APR, L_APR, 1900)}, .subtotal = 1900, .total = 1900},
    /* enterprise: the table's 1000.00 = 1_000_000_000 µ → 100000 cents */
    {"enterprise whole period", .ops = {STR("enterprise", APR1, 1000000000)}, .end = -1,
     .lines = {BASE("enterprise", 1000000000, L_APR, L_APR, 100000)}, .subtotal = 100000,
     .total = 100000},
    /* free $0: a zero price makes no line */
    {"free: no line", .ops = {STR("free", APR1, 0)}, .end = -1},
    {"free final: no line", .ops = {STR("free", APR1, 0)}, .end = MAY1},
    /* lifetime and payg have no periodic fee */
    {"lifetime stretch: no base line", .ops = {STR("lifetime", APR1, 0)}, .end = -1},
    {"payg stretch: no base line", .ops = {STR("payg", APR1, 0)}, .end = -1},
    /* no stretch at all: nothing */
    {"no stretch: empty invoice", .end = -1},
    /* pro → team at Apr 11 00:00 (day 10 of 30):
     *   pro  10 d = 864_000_000 ms: 50_000_000 × 10/30 = 16_666_666.67 µ = 1666.67 → 1667
     *   team 20 d = 1_728_000_000 ms: 150_000_000 × 20/30 = 100_000_000 µ → 10000 */
    {"pro → team at day 10", .ops = {STR("pro", APR1, 50000000), STR("team", APR(11), 150000000)},
     .end = -1,
     .lines = {BASE("pro", 50000000, 864000000, L_APR, 1667),
               BASE("team", 150000000, 1728000000, L_APR, 10000)},
     .subtotal = 11667, .total = 11667},
    /* the same, final at the nominal end: identical lines */
    {"pro → team at day 10, final",
     .ops = {STR("pro", APR1, 50000000), STR("team", APR(11), 150000000)}, .end = MAY1,
     .lines = {BASE("pro", 50000000, 864000000, L_APR, 1667),
               BASE("team", 150000000, 1728000000, L_APR, 10000)},
     .subtotal = 11667, .total = 11667},
    /* pro → team at APR1 + 777_777_777 ms:
     *   pro  777_777_777 ms: 5000 × 777_777_777 / 2_592_000_000 = 1500.386 → 1500
     *   team 2_592_000_000 − 777_777_777 = 1_814_222_223 ms:
     *        15000 × 1_814_222_223 / 2_592_000_000 = 10498.99 → 10499 */
    {"pro → team at an odd millisecond",
     .ops = {STR("pro", APR1, 50000000), STR("team", APR1 + 777777777, 150000000)}, .end = -1,
     .lines = {BASE("pro", 50000000, 777777777, L_APR, 1500),
               BASE("team", 150000000, 1814222223, L_APR, 10499)},
     .subtotal = 11999, .total = 11999},
    /* at APR1 + 777_859_200 ms both lines are exactly x.5 cents:
     *   pro  5000 × 777_859_200 / 2_592_000_000 = 777_859_200 / 518_400 = 1500.5 → 1501
     *   team 15000 × 1_814_140_800 / 2_592_000_000 = 1_814_140_800 / 172_800 = 10498.5 → 10499
     * (1500.5 + 10498.5 = 11999 unrounded; each line rounded once: 1501 + 10499 = 12000) */
    {"pro → team where both lines are x.5",
     .ops = {STR("pro", APR1, 50000000), STR("team", APR1 + 777859200, 150000000)}, .end = -1,
     .lines = {BASE("pro", 50000000, 777859200, L_APR, 1501),
               BASE("team", 150000000, 1814140800, L_APR, 10499)},
     .subtotal = 12000, .total = 12000},
    /* one ms earlier: pro 777_859_199 / 518_400 = 1500.4999… → 1500;
     * team 1_814_140_801 / 172_800 = 10498.500006 → 10499 */
    {"pro → team 1 ms before the x.5 point",
     .ops = {STR("pro", APR1, 50000000), STR("team", APR1 + 777859199, 150000000)}, .end = -1,
     .lines = {BASE("pro", 50000000, 777859199, L_APR, 1500),
               BASE("team", 150000000, 1814140801, L_APR, 10499)},
     .subtotal = 11999, .total = 11999},
    /* pro [Apr 1, Apr 11), team [Apr 11, Apr 21), pro [Apr 21, May 1): one pro line of 20 days,
     * rounded once: 5000 × 20/30 = 3333.33 → 3333 (two lines would give 1667 + 1667 = 3334);
     * team 15000 × 10/30 = 5000 */
    {"two stretches at the same tier and fee merge",
     .ops = {STR("pro", APR1, 50000000), STR("team", APR(11), 150000000),
             STR("pro", APR(21), 50000000)},
     .end = -1,
     .lines = {BASE("pro", 50000000, 1728000000, L_APR, 3333),
               BASE("team", 150000000, 864000000, L_APR, 5000)},
     .subtotal = 8333, .total = 8333},
    /* the same tier and fee again continues the open stretch: 5000 */
    {"same tier and fee continues",
     .ops = {STR("pro", APR1, 50000000), STR("pro", APR(11), 50000000)}, .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000, .total = 5000},
    /* a stretch at the same instant replaces the previous one: team all month, 15000 */
    {"same instant replaces", .ops = {STR("pro", APR1, 50000000), STR("team", APR1, 150000000)},
     .end = -1, .lines = {BASE("team", 150000000, L_APR, L_APR, 15000)}, .subtotal = 15000,
     .total = 15000},
    /* pro, then team at Apr 11 replaced at the same instant by pro: pro all month, 5000 */
    {"same instant replaces a mid-period change",
     .ops = {STR("pro", APR1, 50000000), STR("team", APR(11), 150000000),
             STR("pro", APR(11), 50000000)},
     .end = -1, .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000,
     .total = 5000},
    /* a stretch from before the period start is clamped to it: 5000 */
    {"stretch before the period is clamped", .ops = {STR("pro", APR1 - 5 * DAY, 50000000)},
     .end = -1, .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000,
     .total = 5000},
    /* final invoice cut short at Apr 21 (a new period began there), still over L = 30 days:
     *   pro  [Apr 1, Apr 11) 10 d: 5000 × 10/30 = 1666.67 → 1667
     *   team [Apr 11, Apr 21) 10 d: 15000 × 10/30 = 5000 */
    {"final cut short prorates over the nominal length",
     .ops = {STR("pro", APR1, 50000000), STR("team", APR(11), 150000000)}, .end = APR(21),
     .lines = {BASE("pro", 50000000, 864000000, L_APR, 1667),
               BASE("team", 150000000, 864000000, L_APR, 5000)},
     .subtotal = 6667, .total = 6667},
    /* cut short on one tier: pro [Apr 1, Apr 16) = 15 d: 5000 × 15/30 = 2500 */
    {"final cut short on one tier", .ops = {STR("pro", APR1, 50000000)}, .end = APR(16),
     .lines = {BASE("pro", 50000000, 1296000000, L_APR, 2500)}, .subtotal = 2500, .total = 2500},
    /* the nominal end moved to May 16: L = 45 d = 3_888_000_000 ms; pro 15 d then team 30 d:
     *   pro  5000 × 15/45 = 1666.67 → 1667;  team 15000 × 30/45 = 10000 */
    {"moved nominal end",
     .ops = {STR("pro", APR1, 50000000), NOMINAL(MAY(16)), STR("team", APR(16), 150000000)},
     .end = -1,
     .lines = {BASE("pro", 50000000, 1296000000, 3888000000LL, 1667),
               BASE("team", 150000000, 2592000000LL, 3888000000LL, 10000)},
     .subtotal = 11667, .total = 11667},
    /* a promotion month fee: pro at $0.59 all month: 590_000 µ → 59 cents */
    {"pro at the new_year month-1 fee", .ops = {STRP("pro", "new_year", APR1, 590000)}, .end = -1,
     .lines = {BASE("pro", 590000, L_APR, L_APR, 59)}, .subtotal = 59, .total = 59},
    /* pro at $0.59 for 10 days, then a subscription.changed without promo (pro at $50):
     * two pro lines, one per unit price:
     *   590_000 × 10/30 = 196_666.67 µ = 19.67 → 20;  50_000_000 × 20/30 → 3333.33 → 3333 */
    {"promotion ended mid-period: two lines of one tier",
     .ops = {STRP("pro", "new_year", APR1, 590000), STR("pro", APR(11), 50000000)}, .end = -1,
     .lines = {BASE("pro", 590000, 864000000, L_APR, 20),
               BASE("pro", 50000000, 1728000000, L_APR, 3333)},
     .subtotal = 3353, .total = 3353},
    /* promo month fee then an upgrade to team at day 10: 20 + 15000 × 20/30 = 20 + 10000 */
    {"promotion then team",
     .ops = {STRP("pro", "new_year", APR1, 590000), STR("team", APR(11), 150000000)}, .end = -1,
     .lines = {BASE("pro", 590000, 864000000, L_APR, 20),
               BASE("team", 150000000, 1728000000, L_APR, 10000)},
     .subtotal = 10020, .total = 10020},
    /* pro 10 days then free: 1667 and no free line */
    {"pro then free: no free line", .ops = {STR("pro", APR1, 50000000), STR("free", APR(11), 0)},
     .end = -1, .lines = {BASE("pro", 50000000, 864000000, L_APR, 1667)}, .subtotal = 1667,
     .total = 1667},
    /* free until Apr 21, then pro: 5000 × 10/30 = 1666.67 → 1667 */
    {"free then pro late in the period",
     .ops = {STR("free", APR1, 0), STR("pro", APR(21), 50000000)}, .end = -1,
     .lines = {BASE("pro", 50000000, 864000000, L_APR, 1667)}, .subtotal = 1667, .total = 1667},
    /* May (31 d): free, then byo from May 1 12:00: 30.5 d = 2_635_200_000 ms;
     * 1900 × 30.5/31 = 1869.35 → 1869 */
    {"byo over a 31-day period",
     .ops = {OPEN(MAY1, JUN1), STR("free", MAY1, 0), STR("byo", MAY1 + 12 * HOUR, 19000000)},
     .end = -1, .lines = {BASE("byo", 19000000, 2635200000LL, L_MAY, 1869)}, .subtotal = 1869,
     .total = 1869},
};

static void test_base_fee(void **state)
{
    (void)state;
    run_table(BASE_FEE, N_ELEMS(BASE_FEE));
}

static void test_bill_tier(void **state)
{
    (void)state;
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    assert_string_equal(bill_tier(&b), "");
    bill_stretch(&b, APR1, tier_in(false, "pro"), NULL, 50000000);
    assert_string_equal(bill_tier(&b), "pro");
    bill_stretch(&b, APR(11), tier_in(false, "team"), NULL, 150000000);
    assert_string_equal(bill_tier(&b), "team");
    bill_destroy(&b);
}

/* ---- one-time fee ------------------------------------------------------------------------ */

static const scen_t ONE_TIME[] = {
    /* lifetime bought at the start: one $299 line (299_000_000 µ × 1/1 → 29900), no base fee */
    {"lifetime once", .ops = {STR("lifetime", APR1, 0), ONCE("lifetime")}, .end = -1,
     .lines = {LN(BILL_ONE_TIME_FEE, "lifetime", 299000000, 1, 1, 29900)}, .subtotal = 29900,
     .total = 29900},
    /* bought again in the same period: still one line, raw 1 */
    {"lifetime twice in one period",
     .ops = {STR("lifetime", APR1, 0), ONCE("lifetime"), STR("free", APR(5), 0),
             STR("lifetime", APR(10), 0), ONCE("lifetime")},
     .end = -1, .lines = {LN(BILL_ONE_TIME_FEE, "lifetime", 299000000, 1, 1, 29900)},
     .subtotal = 29900, .total = 29900},
    /* bought again in a later period: nothing in that period */
    {"lifetime again in a later period",
     .ops = {STR("lifetime", APR1, 0), ONCE("lifetime"), SETTLE(MAY1), OPEN(MAY1, JUN1),
             STR("free", MAY1, 0), STR("lifetime", MAY(10), 0), ONCE("lifetime")},
     .end = -1},
    /* a tier without a one-time fee charges nothing: pro's base fee only */
    {"pro has no one-time fee", .ops = {STR("pro", APR1, 50000000), ONCE("pro")}, .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000, .total = 5000},
    /* pro for 10 days, then lifetime: 1667 + 29900 = 31567 */
    {"pro upgraded to lifetime at day 10",
     .ops = {STR("pro", APR1, 50000000), STR("lifetime", APR(11), 0), ONCE("lifetime")}, .end = -1,
     .lines = {BASE("pro", 50000000, 864000000, L_APR, 1667),
               LN(BILL_ONE_TIME_FEE, "lifetime", 299000000, 1, 1, 29900)},
     .subtotal = 31567, .total = 31567},
};

static void test_one_time(void **state)
{
    (void)state;
    run_table(ONE_TIME, N_ELEMS(ONE_TIME));
}

/* ---- workflows --------------------------------------------------------------------------- */

static const scen_t WORKFLOWS[] = {
    /* pro, 3 within the quota (no line) and overage large, small, large, medium:
     *   large  2 × 15_000_000 µ = 3000 cents; small 5_000_000 → 500; medium 10_000_000 → 1000
     * lines in the order the details first appeared: large, small, medium. Base 5000. */
    {"pro overage by complexity",
     .ops = {STR("pro", APR1, 50000000), WF("pro", MEDIUM, 0), WF("pro", MEDIUM, 0),
             WF("pro", SMALL, 0), WF("pro", LARGE, 1), WF("pro", SMALL, 1), WF("pro", LARGE, 1),
             WF("pro", MEDIUM, 1)},
     .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000),
               LN(BILL_WORKFLOW_OVERAGE, "large", 15000000, 2, 1, 3000),
               LN(BILL_WORKFLOW_OVERAGE, "small", 5000000, 1, 1, 500),
               LN(BILL_WORKFLOW_OVERAGE, "medium", 10000000, 1, 1, 1000)},
     .subtotal = 9500, .total = 9500, .meters_checked = true,
     .meters = {[BILL_M_WORKFLOWS] = 7, [BILL_M_OVERAGE] = 4}},
    /* payg: every workflow: small $10 → 1000; medium 2 × $12.50 = 2500; large $15 → 1500 */
    {"payg per workflow",
     .ops = {STR("payg", APR1, 0), WF("payg", SMALL, 1), WF("payg", MEDIUM, 1),
             WF("payg", LARGE, 1), WF("payg", MEDIUM, 1)},
     .end = -1,
     .lines = {LN(BILL_WORKFLOW_OVERAGE, "small", 10000000, 1, 1, 1000),
               LN(BILL_WORKFLOW_OVERAGE, "medium", 12500000, 2, 1, 2500),
               LN(BILL_WORKFLOW_OVERAGE, "large", 15000000, 1, 1, 1500)},
     .subtotal = 5000, .total = 5000, .meters_checked = true,
     .meters = {[BILL_M_WORKFLOWS] = 4, [BILL_M_OVERAGE] = 4}},
    /* pro for 10 days (1667), then payg. pro large and payg large share $15 → one line of 2
     * (3000); pro medium $10 and payg medium $12.50 are two lines (1000, 1250). */
    {"pro then payg: lines by (complexity, price)",
     .ops = {STR("pro", APR1, 50000000), WF("pro", LARGE, 1), WF("pro", MEDIUM, 1),
             STR("payg", APR(11), 0), WF("payg", LARGE, 1), WF("payg", MEDIUM, 1)},
     .end = -1,
     .lines = {BASE("pro", 50000000, 864000000, L_APR, 1667),
               LN(BILL_WORKFLOW_OVERAGE, "large", 15000000, 2, 1, 3000),
               LN(BILL_WORKFLOW_OVERAGE, "medium", 10000000, 1, 1, 1000),
               LN(BILL_WORKFLOW_OVERAGE, "medium", 12500000, 1, 1, 1250)},
     .subtotal = 6917, .total = 6917},
    /* free: 5 counted, 2 held; nothing billed */
    {"free counts and holds, bills nothing",
     .ops = {STR("free", APR1, 0), WF("free", SMALL, 0), WF("free", MEDIUM, 0),
             WF("free", LARGE, 0), WF("free", MEDIUM, 0), WF("free", MEDIUM, 0), HELDW, HELDW},
     .end = -1, .meters_checked = true, .meters = {[BILL_M_WORKFLOWS] = 5, [BILL_M_HELD] = 2}},
    /* meters start over with the period; overage in May: 1 medium → 1000 + pro base 5000 */
    {"workflow meters start over with the period",
     .ops = {STR("pro", APR1, 50000000), WF("pro", MEDIUM, 1), WF("pro", MEDIUM, 0), SETTLE(MAY1),
             OPEN(MAY1, JUN1), STR("pro", MAY1, 50000000), WF("pro", MEDIUM, 1)},
     .end = -1,
     .lines = {BASE("pro", 50000000, L_MAY, L_MAY, 5000),
               LN(BILL_WORKFLOW_OVERAGE, "medium", 10000000, 1, 1, 1000)},
     .subtotal = 6000, .total = 6000, .meters_checked = true,
     .meters = {[BILL_M_WORKFLOWS] = 1, [BILL_M_OVERAGE] = 1}},
};

static void test_workflows(void **state)
{
    (void)state;
    run_table(WORKFLOWS, N_ELEMS(WORKFLOWS));
}

/* ---- LLM --------------------------------------------------------------------------------- */

static const scen_t LLM_CASES[] = {
    /* payg margin 20: unit price 1_200_000; 1_234_567_891 n = 1.234567891 USD × 1.2 =
     * 1.4814814692 USD = 148.148 cents → 148 */
    {"payg llm at cost + 20%", .ops = {LLM("payg", 1234567891, 0)}, .end = -1,
     .lines = {LLMLN(1234567891, 148, 1)}, .subtotal = 148, .total = 148, .meters_checked = true,
     .meters = {[BILL_M_LLM_CALLS] = 1,
                [BILL_M_LLM_COST_NANOS] = 1234567891,
                [BILL_M_LLM_BILLED_NANOS] = 1234567891}},
    /* byo true: recorded, never billed */
    {"payg llm byo: not billed", .ops = {LLM("payg", 5000000000LL, 1)}, .end = -1,
     .meters_checked = true,
     .meters = {[BILL_M_LLM_CALLS] = 1, [BILL_M_LLM_COST_NANOS] = 5000000000LL}},
    /* pro (llm_billed false): recorded, not billed; pro's base fee only */
    {"pro llm: not billed", .ops = {STR("pro", APR1, 50000000), LLM("pro", 1000000000, 0)},
     .end = -1, .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000,
     .total = 5000, .meters_checked = true,
     .meters = {[BILL_M_LLM_CALLS] = 1, [BILL_M_LLM_COST_NANOS] = 1000000000}},
    /* byo tier: not billed */
    {"byo tier llm: not billed", .ops = {LLM("byo", 3000000000LL, 0)}, .end = -1,
     .meters_checked = true,
     .meters = {[BILL_M_LLM_CALLS] = 1, [BILL_M_LLM_COST_NANOS] = 3000000000LL}},
    /* 12_500_000 n = $0.0125 × 1.2 = $0.015 = 1.5 cents exactly → 2 */
    {"llm exactly x.5 cents rounds up", .ops = {LLM("payg", 12500000, 0)}, .end = -1,
     .lines = {LLMLN(12500000, 2, 1)}, .subtotal = 2, .total = 2},
    /* 12_499_999 n × 1.2 = 14_999_998.8 n = 1.49999988 cents → 1 */
    {"llm just under x.5 cents", .ops = {LLM("payg", 12499999, 0)}, .end = -1,
     .lines = {LLMLN(12499999, 1, 1)}, .subtotal = 1, .total = 1},
    /* two calls of 12_500_000 make one line, rounded once: 25_000_000 × 1.2 = 3 cents (not 2+2) */
    {"llm rounded once per line", .ops = {LLM("payg", 12500000, 0), LLM("payg", 12500000, 0)},
     .end = -1, .lines = {LLMLN(25000000, 3, 2)}, .subtotal = 3, .total = 3},
    /* billed 1_234_567_891 + 12_500_000 = 1_247_067_891 n × 1.2 = 1.4964814692 USD → 150 cents;
     * a byo call of 7_000_000_000 counted in the meters only */
    {"llm billed and byo mixed",
     .ops = {LLM("payg", 1234567891, 0), LLM("payg", 7000000000LL, 1), LLM("payg", 12500000, 0)},
     .end = -1, .lines = {LLMLN(1247067891, 150, 2)}, .subtotal = 150, .total = 150,
     .meters_checked = true,
     .meters = {[BILL_M_LLM_CALLS] = 3,
                [BILL_M_LLM_COST_NANOS] = 8247067891LL,
                [BILL_M_LLM_BILLED_NANOS] = 1247067891}},
    /* margin 7: unit price 1_070_000; 500_000_000 n = $0.50 × 1.07 = $0.535 = 53.5 → 54 */
    {"llm at a 7% margin, x.5", .custom = true, .ops = {LLM("paygm7", 500000000, 0)}, .end = -1,
     .lines = {{BILL_LLM, "", 1070000, 500000000, 1000000000, 54, 1}}, .subtotal = 54, .total = 54},
    /* 499_999_999 n × 1.07 = 534_999_998.93 n = 53.4999… cents → 53 */
    {"llm at a 7% margin, just under x.5", .custom = true, .ops = {LLM("paygm7", 499999999, 0)},
     .end = -1, .lines = {{BILL_LLM, "", 1070000, 499999999, 1000000000, 53, 1}}, .subtotal = 53,
     .total = 53},
};

static void test_llm(void **state)
{
    (void)state;
    run_table(LLM_CASES, N_ELEMS(LLM_CASES));
}

/* ---- API calls --------------------------------------------------------------------------- */

static const scen_t API_CASES[] = {
    /* $0.001 = 1000 µ each: 1234 × 1000 = 1_234_000 µ = 123.4 cents → 123 */
    {"api 1234 calls", .ops = {API("payg", 1234)}, .end = -1,
     .lines = {LN(BILL_API_CALLS, "", 1000, 1234, 1, 123)}, .subtotal = 123, .total = 123,
     .meters_checked = true, .meters = {[BILL_M_API_CALLS] = 1234}},
    /* 1235 × 1000 = 1_235_000 µ = 123.5 cents → 124 */
    {"api 1235 calls", .ops = {API("payg", 1235)}, .end = -1,
     .lines = {LN(BILL_API_CALLS, "", 1000, 1235, 1, 124)}, .subtotal = 124, .total = 124},
    /* 615 + 619 = 1234 calls on one line: 123 (per call 61.5 → 62 and 61.9 → 62 would be 124) */
    {"api rounded once per line", .ops = {API("payg", 615), API("payg", 619)}, .end = -1,
     .lines = {LN(BILL_API_CALLS, "", 1000, 1234, 1, 123)}, .subtotal = 123, .total = 123,
     .meters_checked = true, .meters = {[BILL_M_API_CALLS] = 1234}},
    /* pro's api_call price is 0: counted, not billed */
    {"pro api calls: not billed", .ops = {API("pro", 500)}, .end = -1, .meters_checked = true,
     .meters = {[BILL_M_API_CALLS] = 500}},
};

static void test_api(void **state)
{
    (void)state;
    run_table(API_CASES, N_ELEMS(API_CASES));
}

/* ---- storage ----------------------------------------------------------------------------- */

static const scen_t STORAGE[] = {
    /* free, 5 GB all April: excess 3 GB × 30 d = 3e9 × 2_592_000_000 = 7.776e18 byte-ms
     * = 3 GB-months (scale 2.592e18) × $0.10 = $0.30 → 30 cents. Whole footprint
     * 5e9 × 2.592e9 = 1.296e19 byte-ms (beyond int64). */
    {"free over its 2 GB all month", .ops = {REPORT("free", APR1, 5 * GB), ADV("free", MAY1)},
     .end = -1, .lines = {LN(BILL_STORAGE, "", 100000, 7776000000000000000LL, S_APR, 30)},
     .subtotal = 30, .total = 30, .storage_checked = true,
     .storage_ms = (bill_i128_t)12960000000000000LL * 1000},
    /* free 1 GB (under the limit) Apr 1-11, then 4 GB to May 1: excess 2 GB × 20 d =
     * 2e9 × 1_728_000_000 = 3.456e18 byte-ms = 4/3 GB-months × $0.10 = 13.33 cents → 13.
     * Whole: 1e9 × 864e6 + 4e9 × 1728e6 = 8.64e17 + 6.912e18 = 7.776e18. */
    {"free under then over the limit",
     .ops = {REPORT("free", APR1, 1 * GB), ADV("free", APR(11)), REPORT("free", APR(11), 4 * GB),
             ADV("free", MAY1)},
     .end = -1, .lines = {LN(BILL_STORAGE, "", 100000, 3456000000000000000LL, S_APR, 13)},
     .subtotal = 13, .total = 13, .storage_checked = true, .storage_ms = 7776000000000000000LL},
    /* free exactly at its limit all month: no excess, no line */
    {"free at the limit: no line", .ops = {REPORT("free", APR1, 2 * GB), ADV("free", MAY1)},
     .end = -1, .storage_checked = true, .storage_ms = 5184000000000000000LL /* 2e9 × 2.592e9 */},
    /* free 4 GB Apr 1-11, then 1 GB (back under the limit): excess 2 GB × 10 d = 1.728e18
     * = 2/3 GB-month × $0.10 = 6.67 cents → 7 */
    {"free over then under the limit",
     .ops = {REPORT("free", APR1, 4 * GB), REPORT("free", APR(11), 1 * GB), ADV("free", MAY1)},
     .end = -1, .lines = {LN(BILL_STORAGE, "", 100000, 1728000000000000000LL, S_APR, 7)},
     .subtotal = 7, .total = 7},
    /* payg 1 GB for one day, integration stopped at Apr 2 (the organization's clock):
     * 1e9 × 86_400_000 = 8.64e16 byte-ms = 1/30 GB-month × $0.15 = $0.005 = 0.5 cent → 1.
     * The late advance to Apr 1 + 1 s changes nothing. */
    {"payg integration stops at the clock",
     .ops = {REPORT("payg", APR1, 1 * GB), ADV("payg", APR(2)), ADV("payg", APR1 + SEC)}, .end = -1,
     .lines = {LN(BILL_STORAGE, "", 150000, 86400000000000000LL, S_APR, 1)}, .subtotal = 1,
     .total = 1, .storage_checked = true, .storage_ms = 86400000000000000LL},
    /* payg 3 GB for one day: 2.592e17 byte-ms = 0.1 GB-month × $0.15 = 1.5 cents → 2 */
    {"payg storage exactly x.5", .ops = {REPORT("payg", APR1, 3 * GB), ADV("payg", APR(2))},
     .end = -1, .lines = {LN(BILL_STORAGE, "", 150000, 259200000000000000LL, S_APR, 2)},
     .subtotal = 2, .total = 2},
    /* one ms less: 3e9 × 86_399_999 = 259_199_997_000_000_000 → 1.49999998 cents → 1 */
    {"payg storage just under x.5", .ops = {REPORT("payg", APR1, 3 * GB), ADV("payg", APR(2) - 1)},
     .end = -1, .lines = {LN(BILL_STORAGE, "", 150000, 259199997000000000LL, S_APR, 1)},
     .subtotal = 1, .total = 1},
    /* the report's integration: reported at Apr 11 (nothing before: footprint 0), 2 GB to May 1:
     * 2e9 × 20 d = 3.456e18 = 4/3 GB-months × $0.15 = $0.20 → 20 */
    {"payg footprint from its report on",
     .ops = {REPORT("payg", APR(11), 2 * GB), ADV("payg", MAY1)}, .end = -1,
     .lines = {LN(BILL_STORAGE, "", 150000, 3456000000000000000LL, S_APR, 20)}, .subtotal = 20,
     .total = 20},
    /* free with 5 GB for 10 days, then payg: two lines, in that order.
     *   free: excess 3e9 × 864e6 = 2.592e18 = 1 GB-month × $0.10 = 10 cents
     *   payg: all of 5e9 × 1_728_000_000 = 8.64e18 = 10/3 GB-months × $0.15 = $0.50 = 50 */
    {"storage under the tier in force",
     .ops = {STR("free", APR1, 0), REPORT("free", APR1, 5 * GB), ADV("free", APR(11)),
             STR("payg", APR(11), 0), ADV("payg", MAY1)},
     .end = -1,
     .lines = {LN(BILL_STORAGE, "", 100000, 2592000000000000000LL, S_APR, 10),
               LN(BILL_STORAGE, "", 150000, 8640000000000000000LL, S_APR, 50)},
     .subtotal = 60, .total = 60},
    /* pro: unlimited storage, never billed; the meter still integrates 5e9 × 2.592e9 */
    {"pro storage unlimited",
     .ops = {STR("pro", APR1, 50000000), REPORT("pro", APR1, 5 * GB), ADV("pro", MAY1)}, .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000, .total = 5000,
     .storage_checked = true, .storage_ms = (bill_i128_t)12960000000000000LL * 1000},
    /* the footprint carries into May; the integral resumes at May 1 (April's 1 GB × 30 d at
     * $0.15 = 15 cents went to April's invoice). May 1-11: 1e9 × 864e6 = 8.64e17 byte-ms over
     * L = 31 d (scale 2.6784e18): 10/31 GB-month × $0.15 = 4.84 cents → 5 */
    {"storage footprint carries into the next period",
     .ops = {REPORT("payg", APR1, 1 * GB), ADV("payg", MAY1), SETTLE(MAY1), OPEN(MAY1, JUN1),
             ADV("payg", MAY(11))},
     .end = -1, .lines = {LN(BILL_STORAGE, "", 150000, 864000000000000000LL, S_MAY, 5)},
     .subtotal = 5, .total = 5, .storage_checked = true, .storage_ms = 864000000000000000LL},
    /* the integral resumes at the new period's start even when the last advance was earlier:
     * advanced to Apr 21 only, May opened: May 1-11 = 8.64e17 byte-ms → 5 cents as above (the
     * gap Apr 21 - May 1 is not May's) */
    {"storage integral resumes at the period start",
     .ops = {REPORT("payg", APR1, 1 * GB), ADV("payg", APR(21)), SETTLE(MAY1), OPEN(MAY1, JUN1),
             ADV("payg", MAY(11))},
     .end = -1, .lines = {LN(BILL_STORAGE, "", 150000, 864000000000000000LL, S_MAY, 5)},
     .subtotal = 5, .total = 5, .storage_checked = true, .storage_ms = 864000000000000000LL},
    /* April's final invoice of the same: 1e9 × 2.592e9 = 2.592e18 = 1 GB-month × $0.15 = 15 */
    {"storage final invoice", .ops = {REPORT("payg", APR1, 1 * GB), ADV("payg", MAY1)}, .end = MAY1,
     .lines = {LN(BILL_STORAGE, "", 150000, 2592000000000000000LL, S_APR, 15)}, .subtotal = 15,
     .total = 15},
};

static void test_storage(void **state)
{
    (void)state;
    run_table(STORAGE, N_ELEMS(STORAGE));
}

/* ---- agent hours ------------------------------------------------------------------------- */

/* custom pro: 10 h included = 36_000_000 ms; $2/h = 2_000_000 µ per 3_600_000 ms, i.e.
 * excess_ms / 18_000 cents. */
static const scen_t AGENT[] = {
    /* 4 h + 5 h = 9 h < 10 h: nothing billed, 32_400_000 ms counted */
    {"agent hours under the included 10 h", .custom = true,
     .ops = {AGENT("pro", 4 * HOUR), AGENT("pro", 5 * HOUR)}, .end = -1, .meters_checked = true,
     .meters = {[BILL_M_AGENT_MS] = 32400000}},
    /* + 2 h = 11 h: 1 h beyond = 3_600_000 ms → 200 cents */
    {"agent hours over the included 10 h", .custom = true,
     .ops = {AGENT("pro", 4 * HOUR), AGENT("pro", 5 * HOUR), AGENT("pro", 2 * HOUR)}, .end = -1,
     .lines = {LN(BILL_AGENT_HOURS, "", 2000000, 3600000, 3600000, 200)}, .subtotal = 200,
     .total = 200, .meters_checked = true, .meters = {[BILL_M_AGENT_MS] = 39600000}},
    /* + 1_809_000 ms more: excess 5_409_000 ms / 18_000 = 300.5 → 301 */
    {"agent hours x.5 cents", .custom = true,
     .ops = {AGENT("pro", 4 * HOUR), AGENT("pro", 5 * HOUR), AGENT("pro", 2 * HOUR),
             AGENT("pro", 1809000)},
     .end = -1, .lines = {LN(BILL_AGENT_HOURS, "", 2000000, 5409000, 3600000, 301)},
     .subtotal = 301, .total = 301, .meters_checked = true,
     .meters = {[BILL_M_AGENT_MS] = 41409000}},
    /* one 12 h run crossing the included hours: 2 h beyond → 400 */
    {"one run across the included hours", .custom = true, .ops = {AGENT("pro", 12 * HOUR)},
     .end = -1, .lines = {LN(BILL_AGENT_HOURS, "", 2000000, 7200000, 3600000, 400)},
     .subtotal = 400, .total = 400},
    /* exactly 10 h (nothing beyond), then 9 s: 9000 / 18_000 = 0.5 cent → 1 */
    {"agent hours exactly at the included hours, then 9 s", .custom = true,
     .ops = {AGENT("pro", 10 * HOUR), AGENT("pro", 9 * SEC)}, .end = -1,
     .lines = {LN(BILL_AGENT_HOURS, "", 2000000, 9000, 3600000, 1)}, .subtotal = 1, .total = 1},
    /* 9 h in April, 9 h in May: each period under its 10 h */
    {"included hours per period", .custom = true,
     .ops = {AGENT("pro", 9 * HOUR), SETTLE(MAY1), OPEN(MAY1, JUN1), AGENT("pro", 9 * HOUR)},
     .end = -1, .meters_checked = true, .meters = {[BILL_M_AGENT_MS] = 32400000}},
    /* shipped pro: unlimited, 100 h never billed */
    {"unlimited agent hours", .ops = {AGENT("pro", 100 * HOUR)}, .end = -1, .meters_checked = true,
     .meters = {[BILL_M_AGENT_MS] = 360000000}},
    {"payg agent hours unlimited", .ops = {AGENT("payg", 50 * HOUR)}, .end = -1},
};

static void test_agent_hours(void **state)
{
    (void)state;
    run_table(AGENT, N_ELEMS(AGENT));
}

/* ---- credits ----------------------------------------------------------------------------- */

static const scen_t CREDITS[] = {
    /* pro 5000; credits $12.345678 = 12_345_678 µ: whole cents 1234 (the 0.5678 cent stays);
     * total 5000 − 1234 = 3766. A draft leaves the balance alone. */
    {"credits in whole cents", .ops = {STR("pro", APR1, 50000000), CRED(12345678)}, .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000), CREDLN(1234)}, .subtotal = 5000,
     .credits = 1234, .total = 3766, .balance = 12345678},
    /* settled at May 1: 12_345_678 − 1234 × 10^4 = 5_678 µ carried; May's draft: 0 whole cents,
     * no credits line; pro over 31 d = 5000 */
    {"credits remainder carried",
     .ops = {STR("pro", APR1, 50000000), CRED(12345678), SETTLE(MAY1), OPEN(MAY1, JUN1),
             STR("pro", MAY1, 50000000)},
     .end = -1, .lines = {BASE("pro", 50000000, L_MAY, L_MAY, 5000)}, .subtotal = 5000,
     .total = 5000, .balance = 5678},
    /* $100 of credits against 5000 cents: 5000 applied, total 0 */
    {"credits larger than the subtotal", .ops = {STR("pro", APR1, 50000000), CRED(100000000)},
     .end = -1, .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000), CREDLN(5000)},
     .subtotal = 5000, .credits = 5000, .total = 0, .balance = 100000000},
    /* settled: 100_000_000 − 50_000_000 = 50_000_000 left; May applies 5000 again */
    {"credits larger than the subtotal, next period",
     .ops = {STR("pro", APR1, 50000000), CRED(100000000), SETTLE(MAY1), OPEN(MAY1, JUN1),
             STR("pro", MAY1, 50000000)},
     .end = -1, .lines = {BASE("pro", 50000000, L_MAY, L_MAY, 5000), CREDLN(5000)},
     .subtotal = 5000, .credits = 5000, .total = 0, .balance = 50000000},
    /* settled twice: 0 left; June pays in full */
    {"credits used up after two periods",
     .ops = {STR("pro", APR1, 50000000), CRED(100000000), SETTLE(MAY1), OPEN(MAY1, JUN1),
             STR("pro", MAY1, 50000000), SETTLE(JUN1), OPEN(JUN1, JUL1),
             STR("pro", JUN1, 50000000)},
     .end = -1, .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000,
     .total = 5000, .balance = 0},
    /* final invoice with credits: the same lines as the draft; the balance is unchanged until
     * bill_settle */
    {"credits on a final invoice", .ops = {STR("pro", APR1, 50000000), CRED(12345678)}, .end = MAY1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000), CREDLN(1234)}, .subtotal = 5000,
     .credits = 1234, .total = 3766, .balance = 12345678},
    /* nothing owed: no credits line, balance kept */
    {"credits on free", .ops = {STR("free", APR1, 0), CRED(5000000)}, .end = -1,
     .balance = 5000000},
    /* settled with nothing owed: the balance stays */
    {"credits on free, settled",
     .ops = {STR("free", APR1, 0), CRED(5000000), SETTLE(MAY1), OPEN(MAY1, JUN1)}, .end = -1,
     .balance = 5000000},
    /* 9_999 µ is 0.9999 cent: no whole cent, no line */
    {"credits under a cent", .ops = {STR("pro", APR1, 50000000), CRED(9999)}, .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000)}, .subtotal = 5000, .total = 5000,
     .balance = 9999},
    /* credits bought after the usage count for the period: api 123; two purchases of $0.60 =
     * 120 cents; total 3 */
    {"credits bought later in the period", .ops = {API("payg", 1234), CRED(600000), CRED(600000)},
     .end = -1, .lines = {LN(BILL_API_CALLS, "", 1000, 1234, 1, 123), CREDLN(120)}, .subtotal = 123,
     .credits = 120, .total = 3, .balance = 1200000},
    /* credits of $1.50 against api 123 cents: 123 applied, total 0; settled: 1_500_000 −
     * 1_230_000 = 270_000 µ left */
    {"credits settled against usage",
     .ops = {API("payg", 1234), CRED(1500000), SETTLE(MAY1), OPEN(MAY1, JUN1)}, .end = -1,
     .balance = 270000},
};

static void test_credits(void **state)
{
    (void)state;
    run_table(CREDITS, N_ELEMS(CREDITS));
}

/* ---- line order -------------------------------------------------------------------------- */

static const scen_t ORDER[] = {
    /* Every kind, produced in reverse order; lines come in the kind order of billing.h:
     *   base_fee pro all April                         5000
     *   one_time_fee lifetime                          29900
     *   workflow_overage small (pro $5)                500
     *   llm 1_234_567_891 n × 1.2                      148
     *   api_calls 1234 × $0.001                        123
     *   storage payg 1 GB × 1 d = 0.5 cent             1
     *   agent_hours 11 h on custom pro: 1 h × $2       200
     *   subtotal 35872; credits $10 = 1000 → total 34872 */
    {"every kind, in kind order", .custom = true,
     .ops = {CRED(10000000), AGENT("pro", 11 * HOUR), REPORT("payg", APR1, 1 * GB),
             ADV("payg", APR(2)), API("payg", 1234), LLM("payg", 1234567891, 0),
             WF("pro", SMALL, 1), ONCE("lifetime"), STR("pro", APR1, 50000000)},
     .end = -1,
     .lines = {BASE("pro", 50000000, L_APR, L_APR, 5000),
               LN(BILL_ONE_TIME_FEE, "lifetime", 299000000, 1, 1, 29900),
               LN(BILL_WORKFLOW_OVERAGE, "small", 5000000, 1, 1, 500), LLMLN(1234567891, 148, 1),
               LN(BILL_API_CALLS, "", 1000, 1234, 1, 123),
               LN(BILL_STORAGE, "", 150000, 86400000000000000LL, S_APR, 1),
               LN(BILL_AGENT_HOURS, "", 2000000, 3600000, 3600000, 200), CREDLN(1000)},
     .subtotal = 35872, .credits = 1000, .total = 34872, .balance = 10000000},
};

static void test_line_order(void **state)
{
    (void)state;
    run_table(ORDER, N_ELEMS(ORDER));
}

/* ---- budget events ----------------------------------------------------------------------- */

typedef struct {
    bill_alert_kind_t kind;
    bill_reason_t reason;
    int32_t threshold; /* warnings only */
    int64_t period_start, spend, limit;
} xalert_t;

#define WARN(t_, ps_, s_, l_)                                                                      \
    {                                                                                              \
        BILL_WARNING, BILL_REASON_NONE, (t_), (ps_), (s_), (l_)                                    \
    }
#define EXC(r_, ps_, s_, l_)                                                                       \
    {                                                                                              \
        BILL_EXCEEDED, (r_), 0, (ps_), (s_), (l_)                                                  \
    }

/* One bill_check: the alerts appended must be exactly x[0..nx), after a sentinel at out[0]. */
static void expect_alerts(const char *where, bill_t *b, bool quota, const xalert_t *x, size_t nx)
{
    bill_alert_t out[16];
    memset(out, 0, sizeof(out));
    out[0].threshold = 4242; /* appended from *n = 1: out[0] stays */
    size_t n = 1;
    bill_check(b, quota, out, N_ELEMS(out), &n);
    bool ok = n == nx + 1 && out[0].threshold == 4242;
    for (size_t i = 0; ok && i < nx; i++) {
        const bill_alert_t *a = &out[i + 1];
        ok = a->kind == x[i].kind && a->reason == x[i].reason &&
             (a->kind != BILL_WARNING || a->threshold == x[i].threshold) &&
             a->period_start == x[i].period_start && a->spend_micros == x[i].spend &&
             a->limit_micros == x[i].limit;
    }
    if (!ok) {
        print_error("%s: bill_check gave %zu alerts, want %zu\n", where, n - 1, nx);
        for (size_t i = 1; i < n && i < N_ELEMS(out); i++)
            print_error("  got  %s %s t=%d ps=%lld spend=%lld limit=%lld\n",
                        out[i].kind == BILL_WARNING ? "warning" : "exceeded",
                        bill_reason_name(out[i].reason), out[i].threshold,
                        (long long)out[i].period_start, (long long)out[i].spend_micros,
                        (long long)out[i].limit_micros);
        for (size_t i = 0; i < nx; i++)
            print_error("  want %s %s t=%d ps=%lld spend=%lld limit=%lld\n",
                        x[i].kind == BILL_WARNING ? "warning" : "exceeded",
                        bill_reason_name(x[i].reason), x[i].threshold, (long long)x[i].period_start,
                        (long long)x[i].spend, (long long)x[i].limit);
        fail_msg("%s", where);
    }
}

#define NONE_EXPECTED(where_, b_, q_) expect_alerts((where_), (b_), (q_), NULL, 0)

static const int32_t TH_DEFAULT[] = {50, 80, 100};

/* payg, budget $10 (10_000_000 µ), thresholds 50/80/100; spend = api cents × 10^4. */
static void test_budget_thresholds(void **state)
{
    (void)state;
    const tier_t *payg = tier_in(false, "payg");
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    assert_false(bill_watching(&b));
    bill_budget(&b, 10000000, TH_DEFAULT, 3);
    assert_true(bill_watching(&b));
    NONE_EXPECTED("spend 0", &b, false);
    /* 4990 calls = 499 cents = 4_990_000 µ: 49.9% */
    bill_api(&b, payg, 4990);
    NONE_EXPECTED("49.9%", &b, false);
    /* 5000 calls = 500 cents = 5_000_000 µ: 5_000_000 × 100 = 10_000_000 × 50 → warning 50 */
    bill_api(&b, payg, 10);
    const xalert_t w50[] = {WARN(50, APR1, 5000000, 10000000)};
    expect_alerts("exactly 50%", &b, false, w50, 1);
    NONE_EXPECTED("50% again", &b, false);
    /* 9000 calls = 9_000_000 µ: 90% → warning 80 */
    bill_api(&b, payg, 4000);
    const xalert_t w80[] = {WARN(80, APR1, 9000000, 10000000)};
    expect_alerts("90%", &b, false, w80, 1);
    /* 9999 calls = 999.9 cents → 1000 cents = 10_000_000 µ ≥ limit → exceeded; no warning 100
     * (thresholds of 100 are the exceeded event) */
    bill_api(&b, payg, 999);
    const xalert_t ex[] = {EXC(BILL_REASON_BUDGET, APR1, 10000000, 10000000)};
    expect_alerts("100% by rounding", &b, false, ex, 1);
    bill_api(&b, payg, 5000);
    NONE_EXPECTED("over the budget again", &b, false);
    /* a new period: everything may fire again; 20000 calls = 2000 cents = 20_000_000 µ crosses
     * 50, 80 and the budget in one check, in that order */
    bill_open_period(&b, MAY1, JUN1);
    NONE_EXPECTED("new period, spend 0", &b, false);
    bill_api(&b, payg, 20000);
    const xalert_t all[] = {WARN(50, MAY1, 20000000, 10000000), WARN(80, MAY1, 20000000, 10000000),
                            EXC(BILL_REASON_BUDGET, MAY1, 20000000, 10000000)};
    expect_alerts("one jump over everything", &b, false, all, 3);
    NONE_EXPECTED("after the jump", &b, false);
    bill_destroy(&b);
}

/* A draft's spend includes the committed base fee of the whole period at once. pro $50 against
 * a $60 budget with thresholds given out of order {80, 50}: 50_000_000 × 100 ≥ 60_000_000 × 80
 * (5e9 ≥ 4.8e9) → warnings 50 then 80 at once; a large overage ($15) makes 65_000_000 ≥ limit. */
static void test_budget_committed_fee(void **state)
{
    (void)state;
    const int32_t th[] = {80, 50};
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    bill_budget(&b, 60000000, th, 2);
    bill_stretch(&b, APR1, tier_in(false, "pro"), NULL, 50000000);
    const xalert_t w[] = {WARN(50, APR1, 50000000, 60000000), WARN(80, APR1, 50000000, 60000000)};
    expect_alerts("committed fee", &b, false, w, 2);
    bill_workflow(&b, tier_in(false, "pro"), LARGE, true);
    const xalert_t ex[] = {EXC(BILL_REASON_BUDGET, APR1, 65000000, 60000000)};
    expect_alerts("overage over the budget", &b, false, ex, 1);
    bill_destroy(&b);
}

/* A budget of 0 is none: nothing fires whatever the spend, and nothing is watched. */
static void test_budget_none(void **state)
{
    (void)state;
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    bill_budget(&b, 10000000, TH_DEFAULT, 3);
    assert_true(bill_watching(&b));
    bill_budget(&b, 0, TH_DEFAULT, 3);
    assert_false(bill_watching(&b));
    bill_api(&b, tier_in(false, "payg"), 1000000); /* $1000 */
    NONE_EXPECTED("budget 0", &b, false);
    bill_destroy(&b);
}

/* workflow_quota fires once per period when the quota is reached, with the budget as limit (0:
 * none) and the spend. */
static void test_budget_workflow_quota(void **state)
{
    (void)state;
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    bill_stretch(&b, APR1, tier_in(false, "free"), NULL, 0);
    assert_false(bill_watching(&b)); /* workflow_quota alone is not watching */
    NONE_EXPECTED("quota not reached", &b, false);
    const xalert_t q[] = {EXC(BILL_REASON_WORKFLOW_QUOTA, APR1, 0, 0)};
    expect_alerts("quota reached", &b, true, q, 1);
    NONE_EXPECTED("quota reached again", &b, true);
    NONE_EXPECTED("quota flag false", &b, false);
    bill_open_period(&b, MAY1, JUN1);
    bill_stretch(&b, MAY1, tier_in(false, "free"), NULL, 0);
    bill_budget(&b, 10000000, TH_DEFAULT, 3);
    const xalert_t q2[] = {EXC(BILL_REASON_WORKFLOW_QUOTA, MAY1, 0, 10000000)};
    expect_alerts("quota reached in May, with a budget", &b, true, q2, 1);
    NONE_EXPECTED("quota reached in May again", &b, true);
    bill_destroy(&b);
}

/* credits: the balance was > 0 and the spend reached it; limit_micros = the balance. */
static void test_budget_credits(void **state)
{
    (void)state;
    const tier_t *payg = tier_in(false, "payg");
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    bill_api(&b, payg, 10000); /* 1000 cents: no credits yet → nothing */
    NONE_EXPECTED("no credits", &b, false);
    bill_destroy(&b);

    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    bill_credits(&b, 5000000); /* $5 */
    assert_true(bill_watching(&b));
    bill_api(&b, payg, 4990); /* 499 cents = 4_990_000 µ < 5_000_000 */
    NONE_EXPECTED("spend under the balance", &b, false);
    bill_api(&b, payg, 10); /* 500 cents = 5_000_000 µ: reached */
    const xalert_t c[] = {EXC(BILL_REASON_CREDITS, APR1, 5000000, 5000000)};
    expect_alerts("spend reached the balance", &b, false, c, 1);
    bill_api(&b, payg, 1000);
    NONE_EXPECTED("credits again", &b, false);
    bill_destroy(&b);
}

/* Everything at once, in the header's order: workflow_quota, warnings ascending, budget,
 * credits. payg, budget $4, credits $5, 6000 calls = 600 cents = 6_000_000 µ. */
static void test_budget_order(void **state)
{
    (void)state;
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    bill_budget(&b, 4000000, TH_DEFAULT, 3);
    bill_credits(&b, 5000000);
    bill_api(&b, tier_in(false, "payg"), 6000);
    const xalert_t all[] = {
        EXC(BILL_REASON_WORKFLOW_QUOTA, APR1, 6000000, 4000000),
        WARN(50, APR1, 6000000, 4000000),
        WARN(80, APR1, 6000000, 4000000),
        EXC(BILL_REASON_BUDGET, APR1, 6000000, 4000000),
        EXC(BILL_REASON_CREDITS, APR1, 6000000, 5000000),
    };
    expect_alerts("everything", &b, true, all, N_ELEMS(all));
    NONE_EXPECTED("everything again", &b, true);
    bill_destroy(&b);
}

/* bill_watching: a budget or a credit balance. */
static void test_watching(void **state)
{
    (void)state;
    bill_t b;
    bill_init(&b);
    bill_open_period(&b, APR1, MAY1);
    assert_false(bill_watching(&b));
    bill_credits(&b, 500000); /* $0.50 */
    assert_true(bill_watching(&b));
    /* pro 5000 cents uses all 50 cents: settled, the balance is 0 */
    bill_stretch(&b, APR1, tier_in(false, "pro"), NULL, 50000000);
    bill_invoice_t inv;
    memset(&inv, 0, sizeof(inv));
    bill_invoice(&b, MAY1, &inv);
    assert_int_equal(inv.credits_cents, 50);
    assert_int_equal(inv.total_cents, 4950);
    bill_settle(&b, &inv);
    bill_invoice_free(&inv);
    assert_int_equal(b.credits_micros, 0);
    bill_open_period(&b, MAY1, JUN1);
    assert_false(bill_watching(&b));
    bill_budget(&b, 1, TH_DEFAULT, 3);
    assert_true(bill_watching(&b));
    bill_destroy(&b);
}

/* ---- snapshots --------------------------------------------------------------------------- */

/* A bill with every kind of state (custom table): promo stretch then team, lifetime paid,
 * overage, llm, api, storage footprint mid-integration, agent hours over the included ones,
 * credits, a budget with fired warnings. */
static const op_t RICH[] = {
    STRP("pro", "new_year", APR1, 590000),
    WF("pro", LARGE, 1),
    WF("pro", SMALL, 0),
    HELDW,
    ONCE("lifetime"),
    STR("team", APR(11), 150000000),
    LLM("payg", 1234567891, 0),
    LLM("payg", 7000000000LL, 1),
    API("payg", 1235),
    REPORT("payg", APR1, 3 * GB),
    ADV("payg", APR(5)),
    AGENT("pro", 11 * HOUR),
    CRED(1234567),
    {OP_END},
};

static void build_rich(bill_t *b)
{
    int64_t s = 0, e = 0;
    bill_init(b);
    bill_open_period(b, APR1, MAY1);
    for (const op_t *o = RICH; o->op != OP_END; o++)
        apply_op(b, true, o, &s, &e);
    bill_budget(b, 200000000, TH_DEFAULT, 3);
    bill_alert_t out[8];
    size_t n = 0;
    bill_check(b, false, out, N_ELEMS(out), &n);
    assert_true(n >= 1); /* the draft's spend is over 50% of $200: at least one warning */
}

static void pack(const bill_t *b, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    bill_pack(&pk, b);
}

/* Unpacks sb into a fresh bill; the zone is gone before the bill is used. */
static int unpack(const msgpack_sbuffer *sb, bill_t *out)
{
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 4096));
    msgpack_object o;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(sb->data, sb->size, &off, &zone, &o), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sb->size);
    bill_init(out);
    int r = bill_unpack(out, &o);
    msgpack_zone_destroy(&zone);
    return r;
}

static void same_invoice(const bill_t *a, const bill_t *b, int64_t end, const char *where)
{
    bill_invoice_t x, y;
    memset(&x, 0, sizeof(x));
    memset(&y, 0, sizeof(y));
    bill_invoice(a, end, &x);
    bill_invoice(b, end, &y);
    bool ok = x.period_start == y.period_start && x.period_end == y.period_end &&
              x.nominal_end == y.nominal_end && x.final == y.final && x.n == y.n &&
              x.subtotal_cents == y.subtotal_cents && x.credits_cents == y.credits_cents &&
              x.total_cents == y.total_cents;
    for (size_t i = 0; ok && i < x.n; i++) {
        const bill_line_t *l = &x.lines[i], *m = &y.lines[i];
        ok = l->kind == m->kind && strcmp(l->detail, m->detail) == 0 &&
             l->unit_price_micros == m->unit_price_micros && l->raw == m->raw &&
             l->scale == m->scale && l->amount_cents == m->amount_cents && l->count == m->count;
    }
    if (!ok) {
        print_invoice("original", &x);
        print_invoice("restored", &y);
        fail_msg("%s: invoices differ", where);
    }
    bill_invoice_free(&x);
    bill_invoice_free(&y);
}

static void same_state(const bill_t *a, const bill_t *b)
{
    assert_int_equal(a->period_start, b->period_start);
    assert_int_equal(a->nominal_end, b->nominal_end);
    assert_int_equal(a->nstretches, b->nstretches);
    for (size_t i = 0; i < a->nstretches; i++) {
        assert_int_equal(a->stretches[i].from, b->stretches[i].from);
        assert_string_equal(a->stretches[i].tier, b->stretches[i].tier);
        assert_string_equal(a->stretches[i].promo, b->stretches[i].promo);
        assert_int_equal(a->stretches[i].fee_micros, b->stretches[i].fee_micros);
    }
    assert_int_equal(a->nitems, b->nitems);
    for (size_t i = 0; i < a->nitems; i++) {
        assert_int_equal(a->items[i].kind, b->items[i].kind);
        assert_string_equal(a->items[i].detail, b->items[i].detail);
        assert_int_equal(a->items[i].unit_price_micros, b->items[i].unit_price_micros);
        assert_true(a->items[i].raw == b->items[i].raw);
        assert_int_equal(a->items[i].count, b->items[i].count);
    }
    for (int m = 0; m < BILL_METERS; m++)
        assert_int_equal(a->meters[m], b->meters[m]);
    assert_true(a->storage_byte_ms == b->storage_byte_ms);
    assert_int_equal(a->agent_ms, b->agent_ms);
    assert_memory_equal(a->warned, b->warned, sizeof(a->warned));
    assert_int_equal(a->exceeded, b->exceeded);
    assert_int_equal(a->credits_micros, b->credits_micros);
    assert_int_equal(a->budget_micros, b->budget_micros);
    assert_int_equal(a->nthresholds, b->nthresholds);
    assert_memory_equal(a->thresholds, b->thresholds, a->nthresholds * sizeof(int32_t));
    assert_int_equal(a->storage_bytes, b->storage_bytes);
    assert_int_equal(a->storage_since, b->storage_since);
    assert_int_equal(a->npaid_once, b->npaid_once);
    for (uint32_t i = 0; i < a->npaid_once; i++)
        assert_string_equal(a->paid_once[i], b->paid_once[i]);
    assert_string_equal(bill_tier(a), bill_tier(b));
}

/* The same alerts from both bills. */
static void same_alerts(bill_t *a, bill_t *b, bool quota, const char *where)
{
    bill_alert_t x[16], y[16];
    size_t nx = 0, ny = 0;
    bill_check(a, quota, x, N_ELEMS(x), &nx);
    bill_check(b, quota, y, N_ELEMS(y), &ny);
    if (nx != ny)
        fail_msg("%s: %zu alerts from the original, %zu from the restored", where, nx, ny);
    for (size_t i = 0; i < nx; i++)
        if (x[i].kind != y[i].kind || x[i].reason != y[i].reason ||
            x[i].threshold != y[i].threshold || x[i].spend_micros != y[i].spend_micros ||
            x[i].limit_micros != y[i].limit_micros || x[i].period_start != y[i].period_start)
            fail_msg("%s: alert %zu differs", where, i);
}

static void test_pack_roundtrip(void **state)
{
    (void)state;
    bill_t a, b;
    build_rich(&a);
    msgpack_sbuffer sb, sb2;
    pack(&a, &sb);
    assert_int_equal(unpack(&sb, &b), 0);
    same_state(&a, &b);
    same_invoice(&a, &b, -1, "draft");
    same_invoice(&a, &b, MAY1, "final");
    same_invoice(&a, &b, APR(21), "final cut short");
    /* packing the restored bill gives the same bytes */
    pack(&b, &sb2);
    assert_int_equal(sb.size, sb2.size);
    assert_memory_equal(sb.data, sb2.data, sb.size);
    msgpack_sbuffer_destroy(&sb2);
    /* fired events are not fired again; the same ones fire next */
    same_alerts(&a, &b, false, "after restore");
    /* both go on alike: more usage, lifetime again (paid: nothing), storage to the end */
    static const op_t more[] = {
        ONCE("lifetime"),      ADV("payg", APR(20)),
        API("payg", 100000),   AGENT("pro", 1 * HOUR),
        WF("team", MEDIUM, 1), REPORT("payg", APR(25), 1 * GB),
        ADV("payg", MAY1),     {OP_END},
    };
    int64_t s = 0, e = 0;
    for (const op_t *o = more; o->op != OP_END; o++) {
        apply_op(&a, true, o, &s, &e);
        apply_op(&b, true, o, &s, &e);
        same_invoice(&a, &b, -1, "continued");
    }
    same_alerts(&a, &b, true, "continued");
    same_state(&a, &b);
    /* settle and open May on both */
    static const op_t may[] = {SETTLE(MAY1),
                               OPEN(MAY1, JUN1),
                               STR("team", MAY1, 150000000),
                               ADV("payg", MAY(3)),
                               {OP_END}};
    for (const op_t *o = may; o->op != OP_END; o++) {
        apply_op(&a, true, o, &s, &e);
        apply_op(&b, true, o, &s, &e);
    }
    same_state(&a, &b);
    same_invoice(&a, &b, -1, "May");
    same_alerts(&a, &b, true, "May");
    msgpack_sbuffer_destroy(&sb);
    bill_destroy(&a);
    bill_destroy(&b);
}

/* bill_describe: a NUL-terminated text for every line, truncated safely in a small buffer. */
static void test_describe(void **state)
{
    (void)state;
    bill_t a;
    build_rich(&a);
    bill_invoice_t inv;
    memset(&inv, 0, sizeof(inv));
    bill_invoice(&a, -1, &inv);
    assert_true(inv.n >= 7);
    for (size_t i = 0; i < inv.n; i++) {
        char big[256], small[8];
        memset(big, 'x', sizeof(big));
        memset(small, 'x', sizeof(small));
        bill_describe(&inv.lines[i], big, sizeof(big));
        bill_describe(&inv.lines[i], small, sizeof(small));
        assert_non_null(memchr(big, '\0', sizeof(big)));
        assert_true(strlen(big) > 0);
        assert_non_null(memchr(small, '\0', sizeof(small)));
        assert_int_equal(strncmp(big, small, strlen(small)), 0);
    }
    bill_invoice_free(&inv);
    bill_destroy(&a);
}

/* A fresh bill (nothing but an open period) round-trips too. */
static void test_pack_empty(void **state)
{
    (void)state;
    bill_t a, b;
    bill_init(&a);
    bill_open_period(&a, APR1, MAY1);
    msgpack_sbuffer sb;
    pack(&a, &sb);
    assert_int_equal(unpack(&sb, &b), 0);
    same_state(&a, &b);
    same_invoice(&a, &b, -1, "empty draft");
    msgpack_sbuffer_destroy(&sb);
    bill_destroy(&a);
    bill_destroy(&b);
}

/* bill_unpack must refuse o (and leave a bill that bill_destroy can free). */
static void refused(const msgpack_object *o, const char *what)
{
    bill_t b;
    bill_init(&b);
    if (bill_unpack(&b, o) != -1)
        fail_msg("malformed snapshot accepted: %s", what);
    bill_destroy(&b);
}

static void test_unpack_malformed(void **state)
{
    (void)state;
    bill_t a;
    build_rich(&a);
    msgpack_sbuffer sb;
    pack(&a, &sb);
    bill_destroy(&a);
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 4096));
    msgpack_object root;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(sb.data, sb.size, &off, &zone, &root), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(root.type, MSGPACK_OBJECT_ARRAY); /* "one msgpack array" */
    uint32_t size = root.via.array.size;
    assert_true(size > 0);

    /* wrong types for the whole snapshot */
    msgpack_object o = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 7};
    refused(&o, "an integer");
    o = (msgpack_object){.type = MSGPACK_OBJECT_NIL};
    refused(&o, "nil");
    o = (msgpack_object){.type = MSGPACK_OBJECT_MAP, .via.map = {0, NULL}};
    refused(&o, "an empty map");
    o = (msgpack_object){.type = MSGPACK_OBJECT_STR, .via.str = {4, "bill"}};
    refused(&o, "a string");
    o = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = {0, NULL}};
    refused(&o, "an empty array");

    /* every shorter array */
    for (uint32_t k = 0; k < size; k++) {
        o = root;
        o.via.array.size = k;
        char what[64];
        snprintf(what, sizeof(what), "array cut to %u of %u elements", k, size);
        refused(&o, what);
    }

    /* every element replaced by a float (nothing in a bill is a float) or by an empty map: refused,
     * or — for a slot that carries no state (billing.c reserves some for later fields) —
     * accepted with the very same state as the original */
    bill_t orig;
    build_rich(&orig);
    msgpack_object *copy = msgpack_zone_malloc(&zone, size * sizeof(*copy));
    assert_non_null(copy);
    unsigned accepted = 0;
    for (uint32_t i = 0; i < size; i++) {
        static const msgpack_object bad[2] = {
            {.type = MSGPACK_OBJECT_FLOAT64, .via.f64 = 0.5},
            {.type = MSGPACK_OBJECT_MAP, .via.map = {0, NULL}},
        };
        for (int v = 0; v < 2; v++) {
            memcpy(copy, root.via.array.ptr, size * sizeof(*copy));
            copy[i] = bad[v];
            o = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = {size, copy}};
            bill_t r;
            bill_init(&r);
            if (bill_unpack(&r, &o) == 0) {
                /* a stateless slot: nothing may have changed */
                accepted++;
                if (root.via.array.ptr[i].type != MSGPACK_OBJECT_NIL)
                    fail_msg("element %u of %u (not a reserved nil) accepted as a %s", i, size,
                             v ? "map" : "float");
                same_state(&orig, &r);
                same_invoice(&orig, &r, -1, "reserved slot");
            }
            bill_destroy(&r);
        }
    }
    /* the state-carrying slots are the ones refused: at least every field of bill_t's account
     * and period (period, stretches, items, meters, storage, agent ms, warned, exceeded,
     * credits, budget, thresholds, footprint, since, paid once) */
    print_message("%u of %u element edits accepted (stateless reserved slots)\n", accepted,
                  2 * size);
    assert_true(size * 2 - accepted >= 2 * 15);
    bill_destroy(&orig);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- random usage: the header's invariants ----------------------------------------------- */

/* round_half_up(num / den), num >= 0, den > 0: written here from its definition. */
static bill_i128_t half_up(bill_i128_t num, bill_i128_t den)
{
    bill_i128_t q = num / den, r = num % den;
    return 2 * r >= den ? q + 1 : q;
}

static const char *const RAND_TIERS[] = {"free",     "pro",        "team",   "byo",       "payg",
                                         "lifetime", "enterprise", "paygm7", "calmonthly"};

/* Invariants of any invoice (billing.h): every amount recomputes from its own columns; scales
 * and the credits unit price are the table's; no line has a zero price or quantity; lines in
 * kind order, one per (kind, detail, price); subtotal, credits and total add up; credits are
 * min(subtotal, whole cents of the balance). */
static void check_invariants(const bill_t *b, const bill_invoice_t *inv, int64_t L, unsigned iter)
{
    int64_t sum = 0, cred = 0;
    for (size_t i = 0; i < inv->n; i++) {
        const bill_line_t *l = &inv->lines[i];
        char what[96];
        snprintf(what, sizeof(what), "iteration %u line %zu (%s)", iter, i,
                 bill_kind_name(l->kind));
        if (l->unit_price_micros == 0 || l->raw == 0 || l->scale <= 0) {
            print_invoice("got", inv);
            fail_msg("%s: zero price, quantity or scale", what);
        }
        bill_i128_t num = l->raw * l->unit_price_micros, den = l->scale * 10000;
        bill_i128_t want = num >= 0 ? half_up(num, den) : -half_up(-num, den);
        if (l->amount_cents != want) {
            print_invoice("got", inv);
            fail_msg("%s: amount does not recompute", what);
        }
        bill_i128_t scale = 0;
        switch (l->kind) {
        case BILL_BASE_FEE:
            scale = L;
            break;
        case BILL_ONE_TIME_FEE:
        case BILL_WORKFLOW_OVERAGE:
        case BILL_API_CALLS:
            scale = 1;
            break;
        case BILL_LLM:
            scale = 1000000000;
            break;
        case BILL_STORAGE:
            scale = (bill_i128_t)1000000000 * L;
            break;
        case BILL_AGENT_HOURS:
            scale = 3600000;
            break;
        case BILL_CREDITS:
            scale = 100;
            assert_int_equal(l->unit_price_micros, -1000000);
            break;
        default:
            fail_msg("%s: unknown kind", what);
        }
        if (l->scale != scale) {
            print_invoice("got", inv);
            fail_msg("%s: scale", what);
        }
        if (i > 0) {
            const bill_line_t *p = &inv->lines[i - 1];
            if (p->kind > l->kind) {
                print_invoice("got", inv);
                fail_msg("%s: out of kind order", what);
            }
            for (size_t j = 0; j < i; j++)
                if (inv->lines[j].kind == l->kind && strcmp(inv->lines[j].detail, l->detail) == 0 &&
                    inv->lines[j].unit_price_micros == l->unit_price_micros) {
                    print_invoice("got", inv);
                    fail_msg("%s: two lines of one (kind, detail, price)", what);
                }
        }
        if (l->kind == BILL_CREDITS)
            cred -= l->amount_cents;
        else
            sum += l->amount_cents;
    }
    int64_t whole = b->credits_micros > 0 ? b->credits_micros / 10000 : 0;
    int64_t want_cred = sum < whole ? sum : whole;
    if (inv->subtotal_cents != sum || inv->credits_cents != cred || cred != want_cred ||
        inv->total_cents != sum - cred || inv->total_cents < 0) {
        print_invoice("got", inv);
        fail_msg("iteration %u: sums (lines %lld, credits lines %lld, want credits %lld)", iter,
                 (long long)sum, (long long)cred, (long long)want_cred);
    }
}

static void test_random_invariants(void **state)
{
    (void)state;
    rng_seed();
    for (unsigned iter = 0; iter < 200; iter++) {
        bill_t b;
        bill_init(&b);
        int64_t start = APR1, nominal = APR1 + 30 * DAY, clock = APR1;
        bill_open_period(&b, start, nominal);
        const tier_t *t = tier_in(true, "free");
        bill_stretch(&b, start, t, NULL, 0);
        for (int step = 0; step < 60; step++) {
            clock += (int64_t)(rng_next() % (2 * DAY));
            if (clock >= nominal) {
                bill_storage_advance(&b, t, nominal);
                bill_invoice_t fin;
                memset(&fin, 0, sizeof(fin));
                bill_invoice(&b, nominal, &fin);
                check_invariants(&b, &fin, nominal - start, iter);
                bill_settle(&b, &fin);
                bill_invoice_free(&fin);
                start = nominal;
                nominal = start + (28 + (int64_t)(rng_next() % 4)) * DAY;
                bill_open_period(&b, start, nominal);
                bill_stretch(&b, start, t, NULL, t->base_fee_micros);
                if (clock >= nominal)
                    clock = start;
            }
            switch (rng_next() % 10) {
            case 0:
                /* storage so far under the old tier, then the change */
                bill_storage_advance(&b, t, clock);
                t = tier_in(true, RAND_TIERS[rng_next() % N_ELEMS(RAND_TIERS)]);
                bill_stretch(&b, clock, t, NULL, t->base_fee_micros);
                if (t->one_time_fee_micros > 0)
                    bill_one_time(&b, t);
                break;
            case 1:
                bill_workflow(&b, t, (wire_complexity_t)(rng_next() % 3), rng_next() % 2);
                break;
            case 2:
                bill_llm(&b, t, (int64_t)(rng_next() % 5000000000ULL), rng_next() % 4 == 0);
                break;
            case 3:
                bill_api(&b, t, 1 + (int64_t)(rng_next() % 3000));
                break;
            case 4:
                bill_storage_report(&b, t, clock, (int64_t)(rng_next() % (20 * GB)));
                break;
            case 5:
                bill_storage_advance(&b, t, clock);
                break;
            case 6:
                bill_agent(&b, t, (int64_t)(rng_next() % (6 * HOUR)));
                break;
            case 7:
                bill_credits(&b, (int64_t)(rng_next() % 50000000));
                break;
            case 8: {
                bill_budget(&b, (int64_t)(rng_next() % 300000000), TH_DEFAULT, 3);
                bill_alert_t out[16];
                size_t n = 0;
                bill_check(&b, rng_next() % 2, out, N_ELEMS(out), &n);
                for (size_t i = 1; i < n; i++)
                    assert_true(out[i - 1].kind != BILL_WARNING || out[i].kind != BILL_WARNING ||
                                out[i - 1].threshold < out[i].threshold);
                break;
            }
            default: {
                /* a snapshot round trip: go on with the restored bill */
                msgpack_sbuffer sb;
                pack(&b, &sb);
                bill_t r;
                assert_int_equal(unpack(&sb, &r), 0);
                msgpack_sbuffer_destroy(&sb);
                same_invoice(&b, &r, -1, "random round trip");
                bill_destroy(&b);
                b = r;
                break;
            }
            }
            bill_invoice_t inv;
            memset(&inv, 0, sizeof(inv));
            bill_invoice(&b, -1, &inv);
            check_invariants(&b, &inv, nominal - start, iter);
            bill_invoice_free(&inv);
        }
        bill_destroy(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_figures),
        cmocka_unit_test(test_round_div),
        cmocka_unit_test(test_i128_text),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_fee_in_force),
        cmocka_unit_test(test_base_fee),
        cmocka_unit_test(test_bill_tier),
        cmocka_unit_test(test_one_time),
        cmocka_unit_test(test_workflows),
        cmocka_unit_test(test_llm),
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_storage),
        cmocka_unit_test(test_agent_hours),
        cmocka_unit_test(test_credits),
        cmocka_unit_test(test_line_order),
        cmocka_unit_test(test_budget_thresholds),
        cmocka_unit_test(test_budget_committed_fee),
        cmocka_unit_test(test_budget_none),
        cmocka_unit_test(test_budget_workflow_quota),
        cmocka_unit_test(test_budget_credits),
        cmocka_unit_test(test_budget_order),
        cmocka_unit_test(test_watching),
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_pack_empty),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_unpack_malformed),
        cmocka_unit_test(test_random_invariants),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
