/*
 * Unit tests of billing inside the ledger: which period usage lands in, when a period closes
 * (the organization's own next event, or the partition's latest event an hour past its end),
 * the final and draft invoices ledger_seal writes, credits carried across periods, the
 * promotion's months, the one-time fee, a period cut short by a new subscription period, and
 * budget events with the organization they concern. The arithmetic of each line is billing.c's
 * (test_billing); here every expected cent is worked out by hand in a comment, over the shipped
 * tier table (deploy/tiers.ini).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "calendar.h"
#include "ledger.h"
#include "testcopy.h"
#include "testtiers.h"

#define DAY  86400000LL
#define HOUR 3600000LL
/* UTC instants, Unix ms */
#define JAN1      1767225600000LL
#define JAN15_10H 1768471200000LL /* 2026-01-15T10:00Z */
#define FEB1      1769904000000LL
#define MAR1      1772323200000LL
#define APR1      1775001600000LL
#define MAY1      1777593600000LL
#define MAR_MS    (31 * DAY) /* 2678400000 */

static tiers_t *tiers;

static int setup(void **state)
{
    (void)state;
    tiers = shipped_tiers();
    return tiers ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tiers_free(tiers);
    return 0;
}

/* ---- events ------------------------------------------------------------------------------ */

static wire_str_t S(const char *s)
{
    return (wire_str_t){s, (uint32_t)strlen(s)};
}

static wire_event_t E(wire_type_t type, const char *org, int64_t ts)
{
    wire_event_t e;
    memset(&e, 0, sizeof(e));
    e.type = type;
    e.v = 1;
    e.ts = ts;
    e.id = S("id");
    e.org = S(org);
    e.complexity = WIRE_COMPLEXITY_MEDIUM;
    return e;
}

static ledger_result_t apply(ledger_t *l, const wire_event_t *e, int64_t cost)
{
    ledger_result_t res;
    assert_int_equal(ledger_apply(l, tiers, e, cost, &res), 0);
    return res;
}

static ledger_result_t touch(ledger_t *l, const char *org, int64_t ts)
{
    wire_event_t e = E(WIRE_T_API_CALL, org, ts);
    e.integration = S("github");
    e.count = 1;
    return apply(l, &e, 0);
}

static ledger_result_t subscribe(ledger_t *l, const char *org, int64_t ts, const char *tier,
                                 const char *promo, int64_t ps, int64_t pe)
{
    wire_event_t e = E(WIRE_T_SUBSCRIPTION_CHANGED, org, ts);
    e.tier = S(tier);
    if (promo)
        e.promo = S(promo);
    if (ps) {
        e.period_start = ps;
        e.present |= WIRE_HAS_PERIOD_START;
    }
    if (pe) {
        e.period_end = pe;
        e.present |= WIRE_HAS_PERIOD_END;
    }
    return apply(l, &e, 0);
}

static ledger_result_t cancel(ledger_t *l, const char *org, int64_t ts)
{
    wire_event_t e = E(WIRE_T_SUBSCRIPTION_CANCELLED, org, ts);
    return apply(l, &e, 0);
}

static ledger_result_t wf_start(ledger_t *l, const char *org, int64_t ts, const char *wf)
{
    wire_event_t e = E(WIRE_T_WORKFLOW_STARTED, org, ts);
    e.project = S("p1");
    e.workflow = S(wf);
    return apply(l, &e, 0);
}

static ledger_result_t credits(ledger_t *l, const char *org, int64_t ts, int64_t micros)
{
    wire_event_t e = E(WIRE_T_CREDITS_ADDED, org, ts);
    e.amount_micros = micros;
    return apply(l, &e, 0);
}

static ledger_result_t budget(ledger_t *l, const char *org, int64_t ts, int64_t micros,
                              const int32_t *th, uint32_t n)
{
    wire_event_t e = E(WIRE_T_BUDGET_SET, org, ts);
    e.monthly_limit_micros = micros;
    e.n_thresholds = n;
    memcpy(e.thresholds, th, n * sizeof(*th));
    return apply(l, &e, 0);
}

static ledger_result_t storage(ledger_t *l, const char *org, int64_t ts, int64_t bytes)
{
    wire_event_t e = E(WIRE_T_STORAGE_REPORT, org, ts);
    e.bytes = bytes;
    return apply(l, &e, 0);
}

static ledger_result_t agent(ledger_t *l, wire_type_t type, const char *org, int64_t ts,
                             const char *run)
{
    wire_event_t e = E(type, org, ts);
    e.project = S("p1");
    e.run = S(run);
    return apply(l, &e, 0);
}

/* ---- sealed invoices --------------------------------------------------------------------- */

typedef struct {
    char kind[24], detail[40];
    char raw[48], scale[48];
    int64_t unit, amount;
} line_t;

typedef struct {
    char id[96], org[72], status[8];
    int64_t ps, pe, nominal, subtotal, credits, total;
    line_t lines[16];
    int nlines;
    int64_t meters[BILL_METERS];
} inv_t;

/* What PostgreSQL would hold after the seals so far: invoices upserted by id with their lines
 * replaced, rollups upserted by (org, period, meter) — the merges of store.c. */
typedef struct {
    inv_t inv[32];
    int n;
    int written;    /* invoice rows the last seal wrote */
    int accounts;   /* billing_accounts rows the last seal wrote */
    int stretches;  /* subscriptions rows the last seal wrote */
    uint8_t *state; /* the last seal's first snapshot */
    size_t state_len;
} sealed_t;

static inv_t *find(sealed_t *s, const char *org, int64_t ps)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->inv[i].org, org) == 0 && s->inv[i].ps == ps)
            return &s->inv[i];
    return NULL;
}

static void sealed_free(sealed_t *s)
{
    free(s->state);
    memset(s, 0, sizeof(*s));
}

static void seal(ledger_t *l, sealed_t *db)
{
    pgcopy_t rows[BATCH_NTABLES];
    int64_t nrows[BATCH_NTABLES] = {0};
    for (int t = 0; t < BATCH_NTABLES; t++)
        pgcopy_init(&rows[t]);
    ledger_seal(l, 1, rows, nrows);

    reader_t r = copy_reader(&rows[BATCH_STATE]);
    free(db->state);
    db->state = NULL;
    if (r.p < r.end) {
        char org[72];
        rd_row(&r, 3);
        assert_int_equal(rd_int4(&r), 1);
        rd_text(&r, org, sizeof(org));
        db->state_len = rd_be(&r, 4);
        db->state = malloc(db->state_len);
        assert_non_null(db->state);
        memcpy(db->state, r.p, db->state_len);
    }

    r = copy_reader(&rows[BATCH_INVOICES]);
    db->written = 0;
    while (r.p < r.end) {
        inv_t in;
        memset(&in, 0, sizeof(in));
        rd_row(&r, 9);
        rd_text(&r, in.id, sizeof(in.id));
        rd_text(&r, in.org, sizeof(in.org));
        in.ps = rd_ts(&r);
        in.pe = rd_ts(&r);
        in.nominal = rd_ts(&r);
        rd_text(&r, in.status, sizeof(in.status));
        in.subtotal = rd_int8(&r);
        in.credits = rd_int8(&r);
        in.total = rd_int8(&r);
        inv_t *v = find(db, in.org, in.ps);
        if (!v) {
            assert_true(db->n < 32);
            v = &db->inv[db->n++];
        } else {
            assert_string_equal(v->id, in.id);
            assert_string_not_equal(v->status, "final"); /* a final invoice never changes */
            memcpy(in.meters, v->meters, sizeof(in.meters));
        }
        *v = in; /* its lines are replaced by the ones that follow */
        db->written++;
    }
    assert_int_equal(db->written, nrows[BATCH_INVOICES]);

    r = copy_reader(&rows[BATCH_LINES]);
    int64_t nlines = 0;
    while (r.p < r.end) {
        char id[96], desc[256];
        rd_row(&r, 9);
        rd_text(&r, id, sizeof(id));
        inv_t *v = NULL;
        for (int i = 0; i < db->n; i++)
            if (strcmp(db->inv[i].id, id) == 0)
                v = &db->inv[i];
        assert_non_null(v);
        assert_int_equal(rd_int4(&r), v->nlines + 1); /* numbered from 1, in order */
        line_t *ln = &v->lines[v->nlines++];
        rd_text(&r, ln->kind, sizeof(ln->kind));
        rd_text(&r, ln->detail, sizeof(ln->detail));
        rd_text(&r, desc, sizeof(desc));
        assert_true(desc[0] != '\0');
        rd_text(&r, ln->raw, sizeof(ln->raw));
        rd_text(&r, ln->scale, sizeof(ln->scale));
        ln->unit = rd_int8(&r);
        ln->amount = rd_int8(&r);
        nlines++;
    }
    assert_int_equal(nlines, nrows[BATCH_LINES]);

    r = copy_reader(&rows[BATCH_ROLLUPS]);
    while (r.p < r.end) {
        char org[72], meter[32], q[48];
        rd_row(&r, 4);
        rd_text(&r, org, sizeof(org));
        int64_t ps = rd_ts(&r);
        rd_text(&r, meter, sizeof(meter));
        rd_text(&r, q, sizeof(q));
        inv_t *v = find(db, org, ps); /* a period's first seal writes its draft */
        assert_non_null(v);
        for (int m = 0; m < BILL_METERS; m++)
            if (strcmp(meter, bill_meter_name((bill_meter_t)m)) == 0)
                v->meters[m] = strtoll(q, NULL, 10);
    }
    db->accounts = (int)nrows[BATCH_ACCOUNTS];
    db->stretches = (int)nrows[BATCH_SUBS];
    for (int t = 0; t < BATCH_NTABLES; t++)
        pgcopy_close(&rows[t]);
}

static void expect_line(const inv_t *v, int i, const char *kind, const char *detail,
                        const char *raw, const char *scale, int64_t unit, int64_t amount)
{
    assert_true(i < v->nlines);
    const line_t *ln = &v->lines[i];
    assert_string_equal(ln->kind, kind);
    assert_string_equal(ln->detail, detail);
    assert_string_equal(ln->raw, raw);
    assert_string_equal(ln->scale, scale);
    assert_int_equal(ln->unit, unit);
    assert_int_equal(ln->amount, amount);
}

static void expect_invoice(const inv_t *v, const char *status, int64_t pe, int64_t nominal,
                           int nlines, int64_t subtotal, int64_t credits_ct, int64_t total)
{
    assert_non_null(v);
    assert_string_equal(v->status, status);
    assert_int_equal(v->pe, pe);
    assert_int_equal(v->nominal, nominal);
    assert_int_equal(v->nlines, nlines);
    assert_int_equal(v->subtotal, subtotal);
    assert_int_equal(v->credits, credits_ct);
    assert_int_equal(v->total, total);
}

/* ---- tests ------------------------------------------------------------------------------- */

/* Free in March, pro from March 16 without a new period: pro's fee for 16 of March's 31 days;
 * the organization's own event in April closes March. */
static void test_upgrade_prorated_and_closed_by_own_event(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    touch(l, "a", MAR1 + 9 * DAY);
    subscribe(l, "a", MAR1 + 15 * DAY, "pro", NULL, 0, 0);
    seal(l, &s);
    /* the draft commits to March's pro stretch: 5000 ct × 16/31 = 2580.645 → 2581 */
    expect_invoice(find(&s, "a", MAR1), "draft", APR1, APR1, 1, 2581, 0, 2581);
    assert_string_equal(find(&s, "a", MAR1)->id, "a/1772323200000");
    assert_int_equal(s.accounts, 1);
    assert_int_equal(s.stretches, 2); /* free from March 1, pro from March 16 */
    /* an API call on pro (not billed) changes only a rollup: no invoice or account row */
    touch(l, "a", MAR1 + 20 * DAY);
    seal(l, &s);
    assert_int_equal(s.written, 0);
    assert_int_equal(s.accounts, 0);
    assert_int_equal(find(&s, "a", MAR1)->meters[BILL_M_API_CALLS], 2);

    touch(l, "a", APR1 + DAY);
    seal(l, &s);
    /* March final: free's stretch costs nothing (no line); pro 16 of 31 days */
    inv_t *mar = find(&s, "a", MAR1);
    expect_invoice(mar, "final", APR1, APR1, 1, 2581, 0, 2581);
    expect_line(mar, 0, "base_fee", "pro", "1382400000", "2678400000", 50000000, 2581);
    assert_int_equal(mar->meters[BILL_M_API_CALLS], 2); /* the two March api.calls */
    /* April: pro is a subscription tier, so its period runs April 1 → May 1, full fee */
    expect_invoice(find(&s, "a", APR1), "draft", MAY1, MAY1, 1, 5000, 0, 5000);
    ledger_free(l);
    sealed_free(&s);
}

/* A silent organization's period closes when another organization's event is an hour past its
 * end; the held workflow released then names its own organization and is dated by the cause. */
static void test_silent_period_closed_by_watermark(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    char wf[8];
    for (int i = 1; i <= 6; i++) {
        snprintf(wf, sizeof(wf), "w%d", i);
        ledger_result_t r = wf_start(l, "s", MAR1 + i * DAY, wf);
        if (i == 5) { /* the fifth reaches free's quota of 5: once */
            assert_int_equal(r.n_alerts, 1);
            assert_true(r.alerts[0].alert.kind == BILL_EXCEEDED);
            assert_int_equal(r.alerts[0].alert.reason, BILL_REASON_WORKFLOW_QUOTA);
            assert_int_equal(r.alerts[0].alert.period_start, MAR1);
            assert_int_equal(r.alerts[0].alert.spend_micros, 0);
            assert_int_equal(r.alerts[0].alert.limit_micros, 0);
            assert_true(r.alerts[0].org.len == 1 && r.alerts[0].org.ptr[0] == 's');
        } else if (i == 6) { /* held: the quota was already reported */
            assert_int_equal(r.n, 1);
            assert_int_equal(r.decisions[0].kind, LEDGER_WORKFLOW_HELD);
            assert_int_equal(r.n_alerts, 0);
        } else {
            assert_int_equal(r.n_alerts, 0);
        }
    }
    seal(l, &s);
    ledger_result_t r = touch(l, "t", APR1 + HOUR - 1); /* 1 ms short of the grace */
    assert_int_equal(r.n, 0);
    seal(l, &s);
    assert_int_equal(s.written, 1); /* t's new draft: s did not change */

    r = touch(l, "t", APR1 + HOUR);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.decisions[0].kind, LEDGER_WORKFLOW_RELEASED);
    assert_true(r.decisions[0].org.len == 1 && r.decisions[0].org.ptr[0] == 's');
    /* waited from its request (March 7) to the cause (April 1, 01:00) */
    assert_int_equal(r.decisions[0].waited_ms, APR1 + HOUR - (MAR1 + 6 * DAY));
    seal(l, &s);
    inv_t *mar = find(&s, "s", MAR1);
    expect_invoice(mar, "final", APR1, APR1, 0, 0, 0, 0);
    assert_int_equal(mar->meters[BILL_M_WORKFLOWS], 5);
    assert_int_equal(mar->meters[BILL_M_HELD], 1);
    inv_t *apr = find(&s, "s", APR1); /* free is a calendar tier: April 1 → May 1 */
    expect_invoice(apr, "draft", MAY1, MAY1, 0, 0, 0, 0);
    assert_int_equal(apr->meters[BILL_M_WORKFLOWS], 1); /* the released one */
    ledger_free(l);
    sealed_free(&s);
}

/* Pro then team mid-March with a budget and credits: warnings ascending, budget exceeded,
 * credits applied last and the rest carried into April, where credits run out. */
static void test_budget_credits_and_carry(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    ledger_result_t r = subscribe(l, "c", MAR1, "pro", NULL, MAR1, APR1);
    assert_int_equal(r.n_alerts, 0);
    r = credits(l, "c", MAR1 + 1, 200000000); /* $200: spend $50 < $200, nothing */
    assert_int_equal(r.n_alerts, 0);
    static const int32_t th[] = {50, 80, 100};
    r = budget(l, "c", MAR1 + 2, 60000000, th, 3);
    /* spend $50 of $60: 5000 ≥ 3000 (50 %) and 5000 ≥ 4800 (80 %), 50 < 60 not exceeded */
    assert_int_equal(r.n_alerts, 2);
    assert_true(r.alerts[0].alert.kind == BILL_WARNING && r.alerts[0].alert.threshold == 50);
    assert_true(r.alerts[1].alert.kind == BILL_WARNING && r.alerts[1].alert.threshold == 80);
    assert_int_equal(r.alerts[1].alert.spend_micros, 50000000);
    assert_int_equal(r.alerts[1].alert.limit_micros, 60000000);
    r = budget(l, "c", MAR1 + 3, 60000000, th, 3); /* restated: nothing again */
    assert_int_equal(r.n_alerts, 0);

    /* team from March 16: pro 15 days 5000 × 15/31 = 2419.35 → 2419, team 16 days
     * 15000 × 16/31 = 7741.94 → 7742; spend $101.61 ≥ $60 */
    r = subscribe(l, "c", MAR1 + 15 * DAY, "team", NULL, 0, 0);
    assert_int_equal(r.n_alerts, 1);
    assert_int_equal(r.alerts[0].alert.reason, BILL_REASON_BUDGET);
    assert_int_equal(r.alerts[0].alert.spend_micros, 101610000);

    r = touch(l, "c", APR1 + DAY);
    seal(l, &s);
    /* credits $200 ≥ subtotal: all 10161 cents applied, total 0 */
    inv_t *mar = find(&s, "c", MAR1);
    expect_invoice(mar, "final", APR1, APR1, 3, 10161, 10161, 0);
    expect_line(mar, 0, "base_fee", "pro", "1296000000", "2678400000", 50000000, 2419);
    expect_line(mar, 1, "base_fee", "team", "1382400000", "2678400000", 150000000, 7742);
    expect_line(mar, 2, "credits", "", "10161", "100", -1000000, -10161);
    /* April (team, April 1 → May 1): 15000; credits left 200 − 101.61 = $98.39 → 9839 ct;
     * spend $150 crosses 50 % and 80 % of $60, exceeds it, and reaches the $98.39 balance */
    expect_invoice(find(&s, "c", APR1), "draft", MAY1, MAY1, 2, 15000, 9839, 5161);
    assert_int_equal(r.n_alerts, 4);
    assert_int_equal(r.alerts[0].alert.threshold, 50);
    assert_int_equal(r.alerts[0].alert.period_start, APR1);
    assert_int_equal(r.alerts[1].alert.threshold, 80);
    assert_int_equal(r.alerts[2].alert.reason, BILL_REASON_BUDGET);
    assert_int_equal(r.alerts[3].alert.reason, BILL_REASON_CREDITS);
    assert_int_equal(r.alerts[3].alert.spend_micros, 150000000);
    assert_int_equal(r.alerts[3].alert.limit_micros, 98390000);

    /* a budget of 0 is none: nothing more fires in April */
    r = budget(l, "c", APR1 + 2 * DAY, 0, th, 3);
    assert_int_equal(r.n_alerts, 0);
    ledger_free(l);
    sealed_free(&s);
}

/* new_year on pro from January 15, 10:00: $0.59, $12.99, $12.99, then $50; restating the
 * promotion keeps its months; a change without it ends it. */
static void test_promo_months(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    subscribe(l, "p", JAN15_10H, "pro", "new_year", JAN15_10H, 0);
    int64_t feb15 = 1771149600000LL, mar15 = 1773568800000LL, apr15 = 1776247200000LL;
    touch(l, "p", feb15 + HOUR);
    subscribe(l, "p", feb15 + 5 * DAY, "pro", "new_year", 0, 0); /* restated: month 2 still */
    touch(l, "p", mar15 + HOUR);
    touch(l, "p", apr15 + HOUR);
    seal(l, &s);
    /* January 1 → 15 (free) closed by the new period: nothing to pay */
    expect_invoice(find(&s, "p", JAN1), "final", JAN15_10H, FEB1, 0, 0, 0, 0);
    inv_t *m1 = find(&s, "p", JAN15_10H);
    expect_invoice(m1, "final", feb15, feb15, 1, 59, 0, 59);
    expect_line(m1, 0, "base_fee", "pro", "2678400000", "2678400000", 590000, 59);
    expect_invoice(find(&s, "p", feb15), "final", mar15, mar15, 1, 1299, 0, 1299);
    expect_invoice(find(&s, "p", mar15), "final", apr15, apr15, 1, 1299, 0, 1299);
    expect_invoice(find(&s, "p", apr15), "draft", apr15 + 30 * DAY, apr15 + 30 * DAY, 1, 5000, 0,
                   5000);
    /* the promotion's last month again, then team without it from the middle of month 3 */
    ledger_free(l);

    l = ledger_new();
    subscribe(l, "q", JAN15_10H, "pro", "new_year", JAN15_10H, 0);
    touch(l, "q", feb15 + HOUR);
    subscribe(l, "q", feb15 + 14 * DAY, "team", NULL, 0, 0); /* 14 of February's 28 days */
    touch(l, "q", mar15 + HOUR);
    seal(l, &s);
    /* month 2 [Feb 15, Mar 15) = 28 days: pro at $12.99 for 14 days = 649.5 → 650 (half-up),
     * team at $150 for 14 days = 7500 */
    inv_t *m2 = find(&s, "q", feb15);
    expect_invoice(m2, "final", mar15, mar15, 2, 8150, 0, 8150);
    expect_line(m2, 0, "base_fee", "pro", "1209600000", "2419200000", 12990000, 650);
    expect_line(m2, 1, "base_fee", "team", "1209600000", "2419200000", 150000000, 7500);
    /* month 3 on team, no promotion: the full fee */
    expect_invoice(find(&s, "q", mar15), "draft", apr15, apr15, 1, 15000, 0, 15000);
    ledger_free(l);
    sealed_free(&s);
}

/* Bought on January 31: the periods renew on the anniversaries (Feb 28, Mar 31, Apr 30), and
 * the promotion's months follow them — month 4 (from April 30) is at the tier's fee. */
static void test_promo_from_the_31st(void **state)
{
    (void)state;
    const int64_t j31 = 1769853600000LL, f28 = 1772272800000LL, m31 = 1774951200000LL,
                  a30 = 1777543200000LL, y31 = 1780221600000LL; /* 2026, 10:00 UTC */
    assert_int_equal(cal_next_anniversary(j31, j31), f28);
    assert_int_equal(cal_next_anniversary(j31, f28), m31);
    assert_int_equal(cal_next_anniversary(j31, m31 - 1), m31);
    assert_int_equal(cal_next_anniversary(j31, m31), a30);
    assert_int_equal(cal_next_anniversary(j31, a30), y31);
    /* leap years: 2028-01-31 → Feb 29; 2028-02-29 → 2029-02-28 twelve months on */
    assert_int_equal(cal_next_anniversary(1832889600000LL, 1832889600000LL), 1835395200000LL);
    assert_int_equal(cal_next_anniversary(1835395200000LL, 1866931200000LL - 1), 1866931200000LL);

    ledger_t *l = ledger_new();
    sealed_t s = {0};
    subscribe(l, "n", j31, "pro", "new_year", j31, 0);
    touch(l, "n", f28 + HOUR);
    touch(l, "n", m31 + HOUR);
    touch(l, "n", a30 + HOUR);
    seal(l, &s);
    expect_invoice(find(&s, "n", j31), "final", f28, f28, 1, 59, 0, 59);
    expect_invoice(find(&s, "n", f28), "final", m31, m31, 1, 1299, 0, 1299);
    expect_invoice(find(&s, "n", m31), "final", a30, a30, 1, 1299, 0, 1299);
    expect_invoice(find(&s, "n", a30), "draft", y31, y31, 1, 5000, 0, 5000);
    ledger_free(l);
    sealed_free(&s);
}

/* Lifetime: $299 once in the period of purchase; bought again after a cancellation, never
 * again. */
static void test_lifetime_once(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    subscribe(l, "l", MAR1 + 2 * DAY, "lifetime", NULL, 0, 0);
    cancel(l, "l", MAR1 + 9 * DAY);
    subscribe(l, "l", MAR1 + 19 * DAY, "lifetime", NULL, 0, 0);
    touch(l, "l", APR1 + DAY);
    seal(l, &s);
    inv_t *mar = find(&s, "l", MAR1);
    expect_invoice(mar, "final", APR1, APR1, 1, 29900, 0, 29900);
    expect_line(mar, 0, "one_time_fee", "lifetime", "1", "1", 299000000, 29900);
    expect_invoice(find(&s, "l", APR1), "draft", MAY1, MAY1, 0, 0, 0, 0);
    ledger_free(l);
    sealed_free(&s);
}

/* A new subscription period cuts the open one short: its fee is prorated over its nominal
 * length up to the cut. */
static void test_period_cut_short(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    subscribe(l, "k", MAR1, "pro", NULL, MAR1, APR1);
    int64_t mar11 = MAR1 + 10 * DAY;
    subscribe(l, "k", mar11, "team", NULL, mar11, 0);
    seal(l, &s);
    /* pro 10 of 31 days: 5000 × 10/31 = 1612.9 → 1613 */
    inv_t *mar = find(&s, "k", MAR1);
    expect_invoice(mar, "final", mar11, APR1, 1, 1613, 0, 1613);
    expect_line(mar, 0, "base_fee", "pro", "864000000", "2678400000", 50000000, 1613);
    /* team from March 11 to April 11 */
    expect_invoice(find(&s, "k", mar11), "draft", mar11 + MAR_MS, mar11 + MAR_MS, 1, 15000, 0,
                   15000);
    ledger_free(l);
    sealed_free(&s);
}

/* Storage over free's 2 GB for the whole of March: 1 GB-month at $0.10; agent time counts in
 * the period its run ends in. */
static void test_storage_and_agent_time(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    storage(l, "g", MAR1, 3000000000LL);
    agent(l, WIRE_T_AGENT_REQUESTED, "g", APR1 - HOUR, "r1");
    agent(l, WIRE_T_AGENT_FINISHED, "g", APR1 + HOUR, "r1");
    seal(l, &s);
    /* excess 10^9 bytes × 31 days = 2678400000 × 10^9 byte-ms = 1 GB-month → 10 ct */
    inv_t *mar = find(&s, "g", MAR1);
    expect_invoice(mar, "final", APR1, APR1, 1, 10, 0, 10);
    expect_line(mar, 0, "storage", "", "2678400000000000000", "2678400000000000000", 100000, 10);
    assert_int_equal(mar->meters[BILL_M_STORAGE_BYTE_MS], 3 * 2678400000000000000LL / 1);
    assert_int_equal(mar->meters[BILL_M_AGENT_MS], 0);
    /* April so far: one hour at 3 GB (1 GB over: 3.6e15 byte-ms of 30 days, 0.0014 ct → no
     * cent), and the two-hour run that ended in April */
    inv_t *apr = find(&s, "g", APR1);
    assert_non_null(apr);
    assert_int_equal(apr->meters[BILL_M_AGENT_MS], 2 * HOUR);
    assert_int_equal(apr->meters[BILL_M_STORAGE_BYTE_MS], 3000000000LL * HOUR);
    expect_invoice(apr, "draft", MAY1, MAY1, 1, 0, 0, 0);
    expect_line(apr, 0, "storage", "", "3600000000000000", "2592000000000000000", 100000, 0);
    ledger_free(l);
    sealed_free(&s);
}

/* Credits apply in whole cents: $0.0125 covers one cent and runs out; the $0.0025 left can
 * never be applied, so it never "runs out" again. */
static void test_subcent_credits(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    sealed_t s = {0};
    subscribe(l, "u", MAR1, "payg", NULL, 0, 0);
    ledger_result_t r = credits(l, "u", MAR1 + 1, 12500);
    assert_int_equal(r.n_alerts, 0); /* spend 0 < 1 cent */
    wire_event_t e = E(WIRE_T_API_CALL, "u", MAR1 + 2);
    e.integration = S("github");
    e.count = 10; /* 10 × $0.001 = 1 cent */
    r = apply(l, &e, 0);
    assert_int_equal(r.n_alerts, 1);
    assert_int_equal(r.alerts[0].alert.reason, BILL_REASON_CREDITS);
    assert_int_equal(r.alerts[0].alert.spend_micros, 10000);
    assert_int_equal(r.alerts[0].alert.limit_micros, 12500);
    touch(l, "u", APR1 + DAY); /* closes March: 1 cent applied, $0.0025 carried */
    seal(l, &s);
    expect_invoice(find(&s, "u", MAR1), "final", APR1, APR1, 2, 1, 1, 0);
    e.ts = APR1 + 2 * DAY;
    r = apply(l, &e, 0); /* April: 1 cent again; 2500 µ is no whole cent */
    assert_int_equal(r.n_alerts, 0);
    seal(l, &s);
    expect_invoice(find(&s, "u", APR1), "draft", MAY1, MAY1, 1, 1, 0, 1);
    ledger_free(l);
    sealed_free(&s);
}

/* The tier table is reloaded mid-period (SIGHUP): usage already priced keeps its price, usage
 * after the reload takes the new one; the base fee of the running stretch stays what was
 * committed, and the next period starts at the new fee. */
static void test_table_change_affects_future_usage_only(void **state)
{
    (void)state;
    char *text, err[256];
    size_t len;
    assert_int_equal(config_read_file(SOURCE_DIR "/deploy/tiers.ini", &text, &len), 0);
    /* pro's fee $50 → $60 and its small overage $5 → $7 */
    char *pro = strstr(text, "\n[pro]\n");
    assert_non_null(pro);
    char *fee = strstr(pro, "base_fee = 50.00");
    char *small = strstr(pro, "overage_small = 5.00");
    assert_non_null(fee);
    assert_non_null(small);
    memcpy(fee, "base_fee = 60.00", 16);
    memcpy(small, "overage_small = 7.00", 20);
    tiers_t *next = NULL;
    assert_int_equal(tiers_parse(text, len, &next, err, sizeof(err)), 0);
    free(text);

    ledger_t *l = ledger_new();
    sealed_t s = {0};
    subscribe(l, "x", MAR1, "pro", NULL, MAR1, APR1);
    wire_event_t e = E(WIRE_T_WORKFLOW_STARTED, "x", MAR1 + DAY);
    e.project = S("p1");
    e.complexity = WIRE_COMPLEXITY_SMALL;
    char wf[8];
    for (int i = 0; i < 101; i++) { /* the 101st is beyond pro's 100: $5 */
        snprintf(wf, sizeof(wf), "w%d", i);
        e.workflow = S(wf);
        ledger_result_t r;
        assert_int_equal(ledger_apply(l, tiers, &e, 0, &r), 0);
    }
    e.workflow = S("late"); /* after the reload: $7 */
    e.ts = MAR1 + 2 * DAY;
    ledger_result_t r;
    assert_int_equal(ledger_apply(l, next, &e, 0, &r), 0);
    wire_event_t t = E(WIRE_T_API_CALL, "x", APR1 + DAY);
    t.count = 1;
    assert_int_equal(ledger_apply(l, next, &t, 0, &r), 0);
    seal(l, &s);
    inv_t *mar = find(&s, "x", MAR1);
    expect_invoice(mar, "final", APR1, APR1, 3, 5000 + 500 + 700, 0, 6200);
    expect_line(mar, 0, "base_fee", "pro", "2678400000", "2678400000", 50000000, 5000);
    expect_line(mar, 1, "workflow_overage", "small", "1", "1", 5000000, 500);
    expect_line(mar, 2, "workflow_overage", "small", "1", "1", 7000000, 700);
    /* April opens at the new fee */
    expect_invoice(find(&s, "x", APR1), "draft", MAY1, MAY1, 1, 6000, 0, 6000);
    ledger_free(l);
    tiers_free(next);
    sealed_free(&s);
}

/* A snapshot restores the bill exactly: the restored ledger seals the same invoice bytes. */
static void test_bill_survives_restore(void **state)
{
    (void)state;
    ledger_t *a = ledger_new();
    subscribe(a, "r", MAR1, "payg", NULL, 0, 0);
    storage(a, "r", MAR1 + DAY, 5000000000LL);
    static const int32_t th[] = {10};
    budget(a, "r", MAR1 + 2 * DAY, 1000000, th, 1);
    wire_event_t e = E(WIRE_T_LLM_CALL, "r", MAR1 + 3 * DAY);
    e.provider = S("openai");
    e.model = S("gpt-4o");
    assert_int_equal(ledger_apply(a, tiers, &e, 0, &(ledger_result_t){0}), 0);
    ledger_result_t res;
    assert_int_equal(ledger_apply(a, tiers, &e, 1234567891, &res), 0);
    sealed_t sa = {0}, sb = {0};
    seal(a, &sa);
    assert_non_null(sa.state);
    ledger_t *b = ledger_new();
    assert_int_equal(ledger_restore(b, sa.state, sa.state_len), 0);
    /* the same next event on both: the same invoices in the database — a's seal writes only
     * what changed since its last one, b (restored) writes everything once */
    touch(a, "r", APR1 + DAY);
    touch(b, "r", APR1 + DAY);
    seal(a, &sa);
    seal(b, &sb);
    assert_int_equal(sa.n, 2);
    assert_int_equal(sb.n, 2);
    assert_memory_equal(find(&sa, "r", MAR1), find(&sb, "r", MAR1), sizeof(inv_t));
    assert_memory_equal(find(&sa, "r", APR1), find(&sb, "r", APR1), sizeof(inv_t));
    /* the payg March invoice: llm 1.234567891 × 1.2 = 148.148 → 148 ct; storage 5 GB from
     * March 2 for 30 days at $0.15 = 5 × 30/31 × 15 = 72.58 → 73 ct */
    inv_t *mar = find(&sa, "r", MAR1);
    assert_non_null(mar);
    assert_int_equal(mar->subtotal, 148 + 73);
    assert_int_equal(mar->meters[BILL_M_LLM_CALLS], 2);
    assert_int_equal(mar->meters[BILL_M_LLM_BILLED_NANOS], 1234567891);
    ledger_free(a);
    ledger_free(b);
    sealed_free(&sa);
    sealed_free(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_prorated_and_closed_by_own_event),
        cmocka_unit_test(test_silent_period_closed_by_watermark),
        cmocka_unit_test(test_budget_credits_and_carry),
        cmocka_unit_test(test_promo_months),
        cmocka_unit_test(test_promo_from_the_31st),
        cmocka_unit_test(test_lifetime_once),
        cmocka_unit_test(test_period_cut_short),
        cmocka_unit_test(test_storage_and_agent_time),
        cmocka_unit_test(test_subcent_credits),
        cmocka_unit_test(test_table_change_affects_future_usage_only),
        cmocka_unit_test(test_bill_survives_restore),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
