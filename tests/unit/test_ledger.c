/*
 * test_ledger — unit tests of the admission ledger (daemon/ledger.c) against the rules of
 * daemon/ledger.h and PRODUCT.md, with the shipped tier table (deploy/tiers.ini).
 *
 * Most tests are tables of steps: one hand-built event (wire_event_t from string views, no
 * msgpack), the decisions it must emit (kind, project, subject, waited_ms, position) in order,
 * its note or refusal, and the organization's state afterwards as ledger_describe reports it
 * (tier, running, queued, held, workflows counted, packs, projects, and the period when given).
 * After every step the ledger-wide counters (ledger_running / queued / held / orgs) must equal
 * the sum over the table's organizations. Expected values are written by hand; where one is
 * not obvious a comment says why.
 *
 * Sealed rows are checked by decoding the binary COPY rows ledger_seal writes (the reader is
 * the one of test_part.c, extended to NULLs and to keep values): usage_records (11 fields),
 * agent_runs (10 fields) and ledger_state (checkpoint_id, org_id, state bytea). Snapshot tests
 * restore every state row into a fresh ledger and drive both with the same events; the
 * malformed-snapshot tests edit a real snapshot through msgpack-c, so they know its positional
 * layout (ledger.c, pack_org).
 *
 * Dates: 2026 is not a leap year (February has 28 days); 2028 is.
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

#include "calendar.h"
#include "ledger.h"
#include "testcopy.h"
#include "testtiers.h"
#include "pgcopy.h"
#include "tiers.h"
#include "wire.h"

/* Step tables leave a step's note and return code out when they are the defaults (LEDGER_OK,
 * 0): positional initializers that stop early are intended here. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define SEC    1000LL
#define HOUR   3600000LL
#define DAY    86400000LL
#define JAN1   1767225600000LL /* 2026-01-01T00:00:00Z */
#define JAN(d) (JAN1 + ((d)-1) * DAY)
#define FEB(d) (JAN(32) + ((d)-1) * DAY) /* FEB(1) = 1769904000000 */
#define MAR(d) (FEB(29) + ((d)-1) * DAY) /* MAR(1) = 1772323200000 */
#define APR(d) (MAR(32) + ((d)-1) * DAY) /* APR(1) = 1775001600000 */
#define MAY(d) (APR(31) + ((d)-1) * DAY) /* MAY(1) = 1777593600000 */

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
    return (wire_str_t){s, s ? (uint32_t)strlen(s) : 0};
}

typedef struct {
    wire_type_t type;
    int64_t ts;
    const char *org; /* NULL: "acme" */
    const char *project, *run, *workflow, *tier, *promo;
    int64_t workflows; /* pack.purchased */
    wire_status_t status;
    wire_complexity_t cx;
    int64_t ps, pe; /* period_start / period_end; 0: absent */
} ev_t;

#define REQ(t_, p_, r_)                                                                            \
    {                                                                                              \
        .type = WIRE_T_AGENT_REQUESTED, .ts = (t_), .project = (p_), .run = (r_)                   \
    }
#define REQW(t_, p_, r_, w_)                                                                       \
    {                                                                                              \
        .type = WIRE_T_AGENT_REQUESTED, .ts = (t_), .project = (p_), .run = (r_), .workflow = (w_) \
    }
#define FIN(t_, r_)                                                                                \
    {                                                                                              \
        .type = WIRE_T_AGENT_FINISHED, .ts = (t_), .run = (r_)                                     \
    }
#define CAN(t_, r_)                                                                                \
    {                                                                                              \
        .type = WIRE_T_AGENT_CANCELLED, .ts = (t_), .run = (r_)                                    \
    }
#define WFS(t_, p_, w_)                                                                            \
    {                                                                                              \
        .type = WIRE_T_WORKFLOW_STARTED, .ts = (t_), .project = (p_), .workflow = (w_),            \
        .cx = WIRE_COMPLEXITY_MEDIUM                                                               \
    }
#define WFF(t_, w_, st_)                                                                           \
    {                                                                                              \
        .type = WIRE_T_WORKFLOW_FINISHED, .ts = (t_), .workflow = (w_), .status = (st_)            \
    }
#define SUB(t_, tier_)                                                                             \
    {                                                                                              \
        .type = WIRE_T_SUBSCRIPTION_CHANGED, .ts = (t_), .tier = (tier_)                           \
    }
#define SUBPR(t_, tier_, promo_)                                                                   \
    {                                                                                              \
        .type = WIRE_T_SUBSCRIPTION_CHANGED, .ts = (t_), .tier = (tier_), .promo = (promo_)        \
    }
#define SUBP(t_, tier_, ps_, pe_)                                                                  \
    {                                                                                              \
        .type = WIRE_T_SUBSCRIPTION_CHANGED, .ts = (t_), .tier = (tier_), .ps = (ps_), .pe = (pe_) \
    }
#define UNSUB(t_)                                                                                  \
    {                                                                                              \
        .type = WIRE_T_SUBSCRIPTION_CANCELLED, .ts = (t_)                                          \
    }
#define PACK(t_, n_)                                                                               \
    {                                                                                              \
        .type = WIRE_T_PACK_PURCHASED, .ts = (t_), .workflows = (n_)                               \
    }
#define OTHER(t_, type_)                                                                           \
    {                                                                                              \
        .type = (type_), .ts = (t_)                                                                \
    }

static wire_event_t mkev(const ev_t *e, const char *id)
{
    wire_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = e->type;
    ev.v = 1;
    ev.ts = e->ts;
    ev.id = S(id);
    ev.org = S(e->org ? e->org : "acme");
    ev.project = S(e->project);
    ev.run = S(e->run);
    ev.workflow = S(e->workflow);
    ev.tier = S(e->tier);
    ev.promo = S(e->promo);
    ev.workflows = e->workflows;
    ev.status = e->status;
    ev.complexity = e->cx;
    ev.count = 1;
    ev.provider = S(e->type == WIRE_T_LLM_CALL ? "openai" : NULL);
    ev.model = S(e->type == WIRE_T_LLM_CALL ? "gpt-4o" : NULL);
    if (e->ps) {
        ev.period_start = e->ps;
        ev.present |= WIRE_HAS_PERIOD_START;
    }
    if (e->pe) {
        ev.period_end = e->pe;
        ev.present |= WIRE_HAS_PERIOD_END;
    }
    return ev;
}

/* ---- expected decisions and states ------------------------------------------------------- */

typedef struct {
    ledger_decision_kind_t kind;
    const char *project, *subject;
    int64_t waited_ms, position;
} dec_t;

#define ADM(p_, r_, w_)                                                                            \
    {                                                                                              \
        LEDGER_AGENT_ADMITTED, (p_), (r_), (w_), 0                                                 \
    }
#define QUE(p_, r_, n_)                                                                            \
    {                                                                                              \
        LEDGER_AGENT_QUEUED, (p_), (r_), 0, (n_)                                                   \
    }
#define HELD(p_, w_, n_)                                                                           \
    {                                                                                              \
        LEDGER_WORKFLOW_HELD, (p_), (w_), 0, (n_)                                                  \
    }
#define REL(p_, w_, t_)                                                                            \
    {                                                                                              \
        LEDGER_WORKFLOW_RELEASED, (p_), (w_), (t_), 0                                              \
    }

/* One organization as ledger_describe shows it. tier NULL: the organization must be unknown.
 * ps / pe are checked when non-zero. */
typedef struct {
    const char *tier;
    int64_t running, queued, held, counted, packs, projects;
    int64_t ps, pe;
} st_t;

#define ST(tier_, run_, que_, hld_, cnt_, pk_, prj_)                                               \
    {                                                                                              \
        (tier_), (run_), (que_), (hld_), (cnt_), (pk_), (prj_), 0, 0                               \
    }
#define STP(tier_, run_, que_, hld_, cnt_, pk_, prj_, ps_, pe_)                                    \
    {                                                                                              \
        (tier_), (run_), (que_), (hld_), (cnt_), (pk_), (prj_), (ps_), (pe_)                       \
    }

#define MAX_DEC 12
typedef struct {
    ev_t e;
    dec_t d[MAX_DEC];
    st_t s;
    ledger_note_t note;
    int rc;
} step_t;

static const char *kind_name(ledger_decision_kind_t k)
{
    static const char *const names[] = {"admitted", "queued", "held", "released"};
    return k < LEDGER_DECISION_KINDS ? names[k] : "?";
}

static size_t count_dec(const dec_t *d, size_t max)
{
    size_t n = 0;
    while (n < max && d[n].subject)
        n++;
    return n;
}

static void print_decisions(const char *where, const ledger_result_t *res, const dec_t *want,
                            size_t nwant)
{
    print_error("%s: got %zu decisions:\n", where, res->n);
    for (size_t i = 0; i < res->n; i++) {
        const ledger_decision_t *d = &res->decisions[i];
        print_error("  %s %.*s %.*s waited=%lld position=%lld\n", kind_name(d->kind),
                    (int)d->project.len, d->project.ptr, (int)d->subject.len, d->subject.ptr,
                    (long long)d->waited_ms, (long long)d->position);
    }
    print_error("%s: want %zu:\n", where, nwant);
    for (size_t i = 0; i < nwant; i++)
        print_error("  %s %s %s waited=%lld position=%lld\n", kind_name(want[i].kind),
                    want[i].project, want[i].subject, (long long)want[i].waited_ms,
                    (long long)want[i].position);
}

static bool str_is(wire_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void check_decisions(const char *where, const ledger_result_t *res, const dec_t *want,
                            size_t nwant)
{
    bool ok = res->n == nwant;
    for (size_t i = 0; ok && i < nwant; i++) {
        const ledger_decision_t *d = &res->decisions[i];
        ok = d->kind == want[i].kind && str_is(d->project, want[i].project) &&
             str_is(d->subject, want[i].subject) && d->waited_ms == want[i].waited_ms &&
             d->position == want[i].position;
    }
    if (!ok)
        print_decisions(where, res, want, nwant);
    assert_true(ok);
}

/* Applies e and checks the return code, the note and the decisions. */
static void apply_check(ledger_t *l, const ev_t *e, int rc, ledger_note_t note, const dec_t *want,
                        size_t nwant, const char *where)
{
    wire_event_t ev = mkev(e, "e");
    ledger_result_t res = {.note = (ledger_note_t)99, .n = 99};
    int got = ledger_apply(l, tiers, &ev, 0, &res);
    if (got != rc)
        print_error("%s: ledger_apply returned %d, want %d\n", where, got, rc);
    assert_int_equal(got, rc);
    if (rc != 0) {
        assert_int_equal(res.n, 0);
        return;
    }
    if (res.note != note)
        print_error("%s: note %d, want %d\n", where, res.note, note);
    assert_int_equal(res.note, note);
    check_decisions(where, &res, want, nwant);
}

/* Applies e and expects no decision and no note. */
static void apply_quiet(ledger_t *l, const ev_t *e, const char *where)
{
    apply_check(l, e, 0, LEDGER_OK, NULL, 0, where);
}

/* ---- describe ---------------------------------------------------------------------------- */

static int describe(const ledger_t *l, const char *org, char *buf, size_t len)
{
    return ledger_describe(l, org, strlen(org), buf, len);
}

static int64_t jint(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        print_error("no %s in %s\n", key, json);
    assert_non_null(p);
    p += strlen(pat);
    char *end;
    long long v = strtoll(p, &end, 10);
    assert_true(end != p);
    return v;
}

static void jstr(const char *json, const char *key, char *out, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    if (!p)
        print_error("no %s in %s\n", key, json);
    assert_non_null(p);
    p += strlen(pat);
    const char *q = strchr(p, '"');
    assert_non_null(q);
    assert_true((size_t)(q - p) < len);
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
}

static void check_state(const ledger_t *l, const char *org, const st_t *s, const char *where)
{
    char buf[1024];
    int n = describe(l, org, buf, sizeof(buf));
    if (!s->tier) {
        if (n != -1)
            print_error("%s: org %s should be unknown: %s\n", where, org, buf);
        assert_int_equal(n, -1);
        return;
    }
    if (n < 0)
        print_error("%s: org %s unknown\n", where, org);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    char tier[64];
    jstr(buf, "tier", tier, sizeof(tier));
    const struct {
        const char *key;
        int64_t want;
    } f[] = {
        {"running", s->running},           {"queued", s->queued}, {"held", s->held},
        {"workflows_counted", s->counted}, {"packs", s->packs},   {"projects", s->projects},
    };
    bool ok = strcmp(tier, s->tier) == 0;
    for (size_t i = 0; i < N_ELEMS(f); i++)
        ok = ok && jint(buf, f[i].key) == f[i].want;
    if (s->ps)
        ok = ok && jint(buf, "period_start") == s->ps;
    if (s->pe)
        ok = ok && jint(buf, "period_end") == s->pe;
    if (!ok)
        print_error("%s: %s\n  want tier %s running %lld queued %lld held %lld counted %lld "
                    "packs %lld projects %lld period %lld..%lld\n",
                    where, buf, s->tier, (long long)s->running, (long long)s->queued,
                    (long long)s->held, (long long)s->counted, (long long)s->packs,
                    (long long)s->projects, (long long)s->ps, (long long)s->pe);
    assert_true(ok);
}

/* The ledger-wide counters equal the sums over orgs (every organization the ledger holds). */
static void check_totals(const ledger_t *l, const char *const *orgs, size_t norgs,
                         const char *where)
{
    int64_t running = 0, queued = 0, held = 0;
    size_t known = 0;
    for (size_t i = 0; i < norgs; i++) {
        char buf[1024];
        if (describe(l, orgs[i], buf, sizeof(buf)) < 0)
            continue;
        known++;
        running += jint(buf, "running");
        queued += jint(buf, "queued");
        held += jint(buf, "held");
    }
    bool ok = ledger_orgs(l) == known && ledger_running(l) == (size_t)running &&
              ledger_queued(l) == (size_t)queued && ledger_held(l) == (size_t)held;
    if (!ok)
        print_error("%s: ledger orgs %zu running %zu queued %zu held %zu; want %zu %lld %lld "
                    "%lld\n",
                    where, ledger_orgs(l), ledger_running(l), ledger_queued(l), ledger_held(l),
                    known, (long long)running, (long long)queued, (long long)held);
    assert_true(ok);
}

#define MAX_ORGS 8
static size_t table_orgs(const step_t *steps, size_t n, const char *orgs[MAX_ORGS])
{
    size_t norgs = 0;
    for (size_t i = 0; i < n; i++) {
        const char *o = steps[i].e.org ? steps[i].e.org : "acme";
        size_t k = 0;
        while (k < norgs && strcmp(orgs[k], o) != 0)
            k++;
        if (k == norgs) {
            assert_true(norgs < MAX_ORGS);
            orgs[norgs++] = o;
        }
    }
    return norgs;
}

static void run_step(ledger_t *l, const step_t *s, const char *label, size_t i,
                     const char *const *orgs, size_t norgs)
{
    char where[96];
    snprintf(where, sizeof(where), "%s step %zu", label, i);
    apply_check(l, &s->e, s->rc, s->note, s->d, count_dec(s->d, MAX_DEC), where);
    check_state(l, s->e.org ? s->e.org : "acme", &s->s, where);
    check_totals(l, orgs, norgs, where);
}

static void run_steps(ledger_t *l, const step_t *steps, size_t n, const char *label)
{
    const char *orgs[MAX_ORGS];
    size_t norgs = table_orgs(steps, n, orgs);
    for (size_t i = 0; i < n; i++)
        run_step(l, &steps[i], label, i, orgs, norgs);
}

/* Starts n workflows prefix0..prefix(n-1) in project p1 at ts0, ts0+1, ...: none may be held. */
static void start_quiet(ledger_t *l, const char *org, const char *prefix, int n, int64_t ts0)
{
    for (int i = 0; i < n; i++) {
        char id[32], where[64];
        snprintf(id, sizeof(id), "%s%d", prefix, i);
        snprintf(where, sizeof(where), "start %s", id);
        ev_t e = WFS(ts0 + i, "p1", id);
        e.org = org;
        apply_quiet(l, &e, where);
    }
}

/* ---- sealed rows (read with testcopy.h) ------------------------------------------------ */

typedef struct {
    char org[72], project[72], workflow[72], complexity[16], status[16], tier[40];
    int64_t requested_at, started_at, finished_at; /* -1: NULL */
    bool billed, overage;
} usage_row_t;

typedef struct {
    char org[72], project[72], run[72], workflow[72], status[16];
    int64_t requested_at, admitted_at, finished_at, waited_ms, agent_ms;
} run_row_t;

typedef struct {
    int32_t checkpoint;
    char org[72];
    uint8_t *blob;
    size_t len;
} state_row_t;

typedef struct {
    state_row_t *state;
    size_t nstate;
    usage_row_t *usage;
    size_t nusage;
    run_row_t *runs;
    size_t nruns;
    pgcopy_t raw[BATCH_NTABLES]; /* the bytes as sealed, by batch table */
} sealed_t;

static void sealed_free(sealed_t *s)
{
    for (size_t i = 0; i < s->nstate; i++)
        free(s->state[i].blob);
    free(s->state);
    free(s->usage);
    free(s->runs);
    for (int i = 0; i < BATCH_NTABLES; i++)
        pgcopy_close(&s->raw[i]);
    memset(s, 0, sizeof(*s));
}

/* Seals l and decodes every row; the n* counts must grow by exactly the rows written. */
static void seal(ledger_t *l, int32_t checkpoint, sealed_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < BATCH_NTABLES; i++)
        pgcopy_init(&out->raw[i]);
    int64_t nrows[BATCH_NTABLES] = {0};
    nrows[BATCH_STATE] = 100; /* ledger_seal adds to them */
    nrows[BATCH_USAGE] = 200;
    nrows[BATCH_RUNS] = 300;
    ledger_seal(l, checkpoint, out->raw, nrows);
    int64_t nstate = nrows[BATCH_STATE], nusage = nrows[BATCH_USAGE], nruns = nrows[BATCH_RUNS];
    for (int i = 0; i < BATCH_NTABLES; i++)
        assert_false(out->raw[i].oom);

    reader_t r = {(const uint8_t *)out->raw[BATCH_STATE].p,
                  (const uint8_t *)out->raw[BATCH_STATE].p + out->raw[BATCH_STATE].len};
    while (r.p < r.end) {
        out->state = realloc(out->state, (out->nstate + 1) * sizeof(*out->state));
        assert_non_null(out->state);
        state_row_t *s = &out->state[out->nstate++];
        rd_row(&r, 3);
        s->checkpoint = rd_int4(&r);
        rd_text(&r, s->org, sizeof(s->org));
        s->len = rd_be(&r, 4);
        assert_true((size_t)(r.end - r.p) >= s->len);
        s->blob = malloc(s->len ? s->len : 1);
        assert_non_null(s->blob);
        memcpy(s->blob, r.p, s->len);
        r.p += s->len;
    }
    assert_int_equal(nstate, 100 + (int64_t)out->nstate);

    r = (reader_t){(const uint8_t *)out->raw[BATCH_USAGE].p,
                   (const uint8_t *)out->raw[BATCH_USAGE].p + out->raw[BATCH_USAGE].len};
    while (r.p < r.end) {
        out->usage = realloc(out->usage, (out->nusage + 1) * sizeof(*out->usage));
        assert_non_null(out->usage);
        usage_row_t *u = &out->usage[out->nusage++];
        rd_row(&r, 11);
        rd_text(&r, u->org, sizeof(u->org));
        rd_text(&r, u->project, sizeof(u->project));
        rd_text(&r, u->workflow, sizeof(u->workflow));
        rd_text(&r, u->complexity, sizeof(u->complexity));
        rd_text(&r, u->status, sizeof(u->status));
        rd_text(&r, u->tier, sizeof(u->tier));
        u->requested_at = rd_ts(&r);
        u->started_at = rd_ts(&r);
        u->finished_at = rd_ts(&r);
        u->billed = rd_bool(&r);
        u->overage = rd_bool(&r);
    }
    assert_int_equal(nusage, 200 + (int64_t)out->nusage);

    r = (reader_t){(const uint8_t *)out->raw[BATCH_RUNS].p,
                   (const uint8_t *)out->raw[BATCH_RUNS].p + out->raw[BATCH_RUNS].len};
    while (r.p < r.end) {
        out->runs = realloc(out->runs, (out->nruns + 1) * sizeof(*out->runs));
        assert_non_null(out->runs);
        run_row_t *x = &out->runs[out->nruns++];
        rd_row(&r, 10);
        rd_text(&r, x->org, sizeof(x->org));
        rd_text(&r, x->project, sizeof(x->project));
        rd_text(&r, x->run, sizeof(x->run));
        rd_text(&r, x->workflow, sizeof(x->workflow));
        rd_text(&r, x->status, sizeof(x->status));
        x->requested_at = rd_ts(&r);
        x->admitted_at = rd_ts(&r);
        x->finished_at = rd_ts(&r);
        x->waited_ms = rd_int8(&r);
        x->agent_ms = rd_int8(&r);
    }
    assert_int_equal(nruns, 300 + (int64_t)out->nruns);
}

/* The usage row of workflow wf requested at requested_at (0: the only row of wf). */
static const usage_row_t *find_usage(const sealed_t *s, const char *org, const char *wf,
                                     int64_t requested_at)
{
    const usage_row_t *found = NULL;
    for (size_t i = 0; i < s->nusage; i++) {
        const usage_row_t *u = &s->usage[i];
        if (strcmp(u->org, org) == 0 && strcmp(u->workflow, wf) == 0 &&
            (requested_at == 0 || u->requested_at == requested_at)) {
            if (found)
                print_error("two usage rows for %s/%s\n", org, wf);
            assert_null(found);
            found = u;
        }
    }
    if (!found)
        print_error("no usage row for %s/%s\n", org, wf);
    assert_non_null(found);
    return found;
}

static const run_row_t *find_run(const sealed_t *s, const char *org, const char *run,
                                 int64_t requested_at)
{
    const run_row_t *found = NULL;
    for (size_t i = 0; i < s->nruns; i++) {
        const run_row_t *x = &s->runs[i];
        if (strcmp(x->org, org) == 0 && strcmp(x->run, run) == 0 &&
            (requested_at == 0 || x->requested_at == requested_at)) {
            if (found)
                print_error("two run rows for %s/%s\n", org, run);
            assert_null(found);
            found = x;
        }
    }
    if (!found)
        print_error("no run row for %s/%s\n", org, run);
    assert_non_null(found);
    return found;
}

typedef struct {
    const char *workflow, *project, *complexity, *status, *tier;
    int64_t requested_at, started_at, finished_at;
    bool billed, overage;
} want_usage_t;

static void check_usage(const sealed_t *s, const char *org, const want_usage_t *w)
{
    const usage_row_t *u = find_usage(s, org, w->workflow, w->requested_at);
    bool ok = strcmp(u->project, w->project) == 0 && strcmp(u->complexity, w->complexity) == 0 &&
              strcmp(u->status, w->status) == 0 && strcmp(u->tier, w->tier) == 0 &&
              u->requested_at == w->requested_at && u->started_at == w->started_at &&
              u->finished_at == w->finished_at && u->billed == w->billed &&
              u->overage == w->overage;
    if (!ok)
        print_error("usage %s: got %s %s %s %s %s req %lld start %lld fin %lld billed %d "
                    "overage %d\n  want %s %s %s %s req %lld start %lld fin %lld billed %d "
                    "overage %d\n",
                    w->workflow, u->project, u->complexity, u->status, u->tier, u->org,
                    (long long)u->requested_at, (long long)u->started_at, (long long)u->finished_at,
                    u->billed, u->overage, w->project, w->complexity, w->status, w->tier,
                    (long long)w->requested_at, (long long)w->started_at, (long long)w->finished_at,
                    w->billed, w->overage);
    assert_true(ok);
}

typedef struct {
    const char *run, *project, *workflow, *status;
    int64_t requested_at, admitted_at, finished_at, waited_ms, agent_ms;
} want_run_t;

static void check_run(const sealed_t *s, const char *org, const want_run_t *w)
{
    const run_row_t *x = find_run(s, org, w->run, w->requested_at);
    bool ok = strcmp(x->project, w->project) == 0 && strcmp(x->workflow, w->workflow) == 0 &&
              strcmp(x->status, w->status) == 0 && x->requested_at == w->requested_at &&
              x->admitted_at == w->admitted_at && x->finished_at == w->finished_at &&
              x->waited_ms == w->waited_ms && x->agent_ms == w->agent_ms;
    if (!ok)
        print_error("run %s: got %s %s %s req %lld adm %lld fin %lld waited %lld agent %lld\n"
                    "  want %s %s %s req %lld adm %lld fin %lld waited %lld agent %lld\n",
                    w->run, x->project, x->workflow, x->status, (long long)x->requested_at,
                    (long long)x->admitted_at, (long long)x->finished_at, (long long)x->waited_ms,
                    (long long)x->agent_ms, w->project, w->workflow, w->status,
                    (long long)w->requested_at, (long long)w->admitted_at,
                    (long long)w->finished_at, (long long)w->waited_ms, (long long)w->agent_ms);
    assert_true(ok);
}

/* ---- calendar ---------------------------------------------------------------------------- */

static void test_month_start(void **state)
{
    (void)state;
    static const struct {
        int64_t ts, want;
    } cases[] = {
        {JAN(10) + 5 * HOUR + 123, JAN1},
        {JAN1, JAN1},
        {JAN1 - 1, 1764547200000LL}, /* 2025-12-31T23:59:59.999 → 2025-12-01 */
        {FEB(28) + DAY - 1, FEB(1)}, /* last ms of February 2026 */
        {MAR(1), MAR(1)},
        {1709251199999LL, 1706745600000LL}, /* 2024-02-29T23:59:59.999 → 2024-02-01 */
        {0, 0},
        {1, 0},
        {-1, -2678400000LL},                  /* 1969-12-31T23:59:59.999 → 1969-12-01 */
        {-86400000LL, -2678400000LL},         /* 1969-12-31 → 1969-12-01 */
        {-2678400000LL, -2678400000LL},       /* 1969-12-01 itself */
        {-2678400001LL, -5270400000LL},       /* one ms before → 1969-11-01 */
        {-2203934400000LL, -2206310400000LL}, /* 1900-02-28T12:00 → 1900-02-01 */
        {32503680000000LL, 32503680000000LL}, /* WIRE_MAX_TS, 3000-01-01 */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got = cal_month_start(cases[i].ts);
        if (got != cases[i].want)
            print_error("month_start(%lld) = %lld, want %lld\n", (long long)cases[i].ts,
                        (long long)got, (long long)cases[i].want);
        assert_int_equal(got, cases[i].want);
    }
}

static void test_add_months(void **state)
{
    (void)state;
    static const struct {
        int64_t ts;
        int months;
        int64_t want;
    } cases[] = {
        {1769817600000LL, 1, 1772236800000LL},   /* 2026-01-31 → 2026-02-28 (clamped) */
        {1769854830456LL, 1, 1772274030456LL},   /* ...T10:20:30.456 keeps its time of day */
        {1769817600000LL, 0, 1769817600000LL},   /* 0 months: itself */
        {1769817600000LL, 2, 1774915200000LL},   /* → 2026-03-31 (not clamped) */
        {1769817600000LL, 3, 1777507200000LL},   /* → 2026-04-30 */
        {1769817600000LL, 12, 1801353600000LL},  /* → 2027-01-31 */
        {1769817600000LL, -1, 1767139200000LL},  /* → 2025-12-31 */
        {1769817600000LL, -13, 1735603200000LL}, /* → 2024-12-31 */
        {1774915200000LL, -1, 1772236800000LL},  /* 2026-03-31 → 2026-02-28 */
        {1711843200000LL, -1, 1709164800000LL},  /* 2024-03-31 → 2024-02-29 (leap) */
        {1706659200000LL, 1, 1709164800000LL},   /* 2024-01-31 → 2024-02-29 (leap) */
        {1832889600000LL, 1, 1835395200000LL},   /* 2028-01-31 → 2028-02-29 (leap) */
        {1835395200000LL, 1, 1837900800000LL},   /* 2028-02-29 → 2028-03-29 */
        {949276800000LL, 1, 951782400000LL},     /* 2000-01-31 → 2000-02-29 (÷400: leap) */
        {4105036800000LL, 1, 4107456000000LL},   /* 2100-01-31 → 2100-02-28 (÷100: not) */
        {-2206396800000LL, 1, -2203977600000LL}, /* 1900-01-31 → 1900-02-28 (not leap) */
        {1797292800000LL, 1, 1799971200000LL},   /* 2026-12-15 → 2027-01-15 (year wraps) */
        {1798675200000LL, 2, 1803772800000LL},   /* 2026-12-31 → 2027-02-28 */
        {JAN(10), 1, FEB(10)},
        {FEB(10), 1, MAR(10)},
        {-1, 1, 2678399999LL},               /* 1969-12-31T23:59:59.999 → 1970-01-31T...999 */
        {-1, 2, 5097599999LL},               /* → 1970-02-28T23:59:59.999 (clamped) */
        {0, -1, -2678400000LL},              /* 1970-01-01 → 1969-12-01 */
        {-86400000LL, 2, 5011200000LL},      /* 1969-12-31 → 1970-02-28 */
        {-28900800000LL, 1, -26481600000LL}, /* 1969-01-31T12:00 → 1969-02-28T12:00 */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got = cal_add_months(cases[i].ts, cases[i].months);
        if (got != cases[i].want)
            print_error("add_months(%lld, %d) = %lld, want %lld\n", (long long)cases[i].ts,
                        cases[i].months, (long long)got, (long long)cases[i].want);
        assert_int_equal(got, cases[i].want);
    }
}

/* ---- every tier -------------------------------------------------------------------------- */

/* The shipped tier table, by hand (deploy/tiers.ini): concurrent agents per project and
 * workflows per period (-1 unlimited), whether over-quota workflows are held, and the period
 * end after the roll at FEB(10) of a period that subscription.changed began at JAN(10): one
 * month later for subscription tiers, the end of the calendar month for calendar ones. */
typedef struct {
    const char *tier;
    int64_t agents, workflows;
    bool hold;
    int64_t end2, end3; /* the ends of the periods after [JAN(10), FEB(10)) */
} tier_case_t;

static const tier_case_t TIER_CASES[] = {
    {"free", 1, 5, true, MAR(1), APR(1)},            /* calendar */
    {"pro", 5, 100, false, MAR(10), APR(10)},        /* subscription */
    {"team", 10, 500, false, MAR(10), APR(10)},      /* subscription */
    {"enterprise", -1, -1, false, MAR(10), APR(10)}, /* subscription */
    {"lifetime", 5, 50, false, MAR(1), APR(1)},      /* calendar */
    {"byo", 5, -1, false, MAR(10), APR(10)},         /* subscription */
    {"payg", 1, 0, false, MAR(1), APR(1)},           /* calendar */
};

static void tier_case(const tier_case_t *tc)
{
    ledger_t *l = ledger_new();
    assert_non_null(l);
    char where[128];
    bool is_free = strcmp(tc->tier, "free") == 0;
    const char *orgs[] = {"acme"};
    st_t st;

    /* The first event opens the calendar month on the free tier. */
    ev_t open = OTHER(JAN(2), WIRE_T_LLM_CALL);
    apply_quiet(l, &open, "open");
    st = (st_t)STP("free", 0, 0, 0, 0, 0, 0, JAN1, FEB(1));
    check_state(l, "acme", &st, "open");

    /* Seven workflows on free: five counted, two held (positions 1, 2). */
    start_quiet(l, "acme", "f", 5, JAN(2));
    ev_t f5 = WFS(JAN(3), "p1", "f5"), f6 = WFS(JAN(3) + SEC, "p1", "f6");
    const dec_t held5[] = {HELD("p1", "f5", 1)}, held6[] = {HELD("p1", "f6", 2)};
    apply_check(l, &f5, 0, LEDGER_OK, held5, 1, "f5");
    apply_check(l, &f6, 0, LEDGER_OK, held6, 1, "f6");

    /* The tier change without a period: a paid tier releases both at once (bill or unlimited:
     * never held); free keeps them (5 counted, quota 5). */
    snprintf(where, sizeof(where), "%s: change", tc->tier);
    ev_t change = SUB(JAN(5), tc->tier);
    const dec_t rel[] = {REL("p1", "f5", JAN(5) - JAN(3)), REL("p1", "f6", JAN(5) - JAN(3) - SEC)};
    apply_check(l, &change, 0, LEDGER_OK, rel, is_free ? 0 : 2, where);
    st = (st_t)STP(tc->tier, 0, 0, is_free ? 2 : 0, is_free ? 5 : 7, 0, 0, JAN1, FEB(1));
    check_state(l, "acme", &st, where);

    /* A later period_start begins a new period there (one month long): counts reset, and free
     * releases its two now. */
    snprintf(where, sizeof(where), "%s: period", tc->tier);
    ev_t period = SUBP(JAN(10), tc->tier, JAN(10), 0);
    const dec_t rel10[] = {REL("p1", "f5", JAN(10) - JAN(3)),
                           REL("p1", "f6", JAN(10) - JAN(3) - SEC)};
    apply_check(l, &period, 0, LEDGER_OK, rel10, is_free ? 2 : 0, where);
    int64_t counted = is_free ? 2 : 0;
    st = (st_t)STP(tc->tier, 0, 0, 0, counted, 0, 0, JAN(10), FEB(10));
    check_state(l, "acme", &st, where);

    /* Agents: up to the limit admitted, then queued at positions 1, 2, 3; unlimited never
     * queues (25 requests). */
    int64_t lim = tc->agents;
    int nreq = lim < 0 ? 25 : (int)lim + 3;
    int64_t t0 = JAN(10) + HOUR;
    for (int i = 0; i < nreq; i++) {
        char run[16];
        snprintf(run, sizeof(run), "r%d", i);
        snprintf(where, sizeof(where), "%s: request %s", tc->tier, run);
        ev_t e = REQ(t0 + i * SEC, "p1", run);
        bool admit = lim < 0 || i < lim;
        dec_t d = admit ? (dec_t)ADM("p1", run, 0) : (dec_t)QUE("p1", run, i - lim + 1);
        apply_check(l, &e, 0, LEDGER_OK, &d, 1, where);
        int64_t running = admit ? i + 1 : lim, queued = admit ? 0 : i - lim + 1;
        st = (st_t)ST(tc->tier, running, queued, 0, counted, 0, 1);
        check_state(l, "acme", &st, where);
        check_totals(l, orgs, 1, where);
    }
    int64_t running = lim < 0 ? nreq : lim, queued = lim < 0 ? 0 : 3;

    /* Another project has slots of its own. */
    snprintf(where, sizeof(where), "%s: other project", tc->tier);
    ev_t other = REQ(t0 + 100 * SEC, "p2", "s0");
    const dec_t adm_s0[] = {ADM("p2", "s0", 0)};
    apply_check(l, &other, 0, LEDGER_OK, adm_s0, 1, where);
    st = (st_t)ST(tc->tier, running + 1, queued, 0, counted, 0, 2);
    check_state(l, "acme", &st, where);

    /* r0 finishes: the oldest queued run of p1 (r<lim>) takes its slot, having waited from its
     * request (t0 + lim s) to now (t0 + 200 s). */
    snprintf(where, sizeof(where), "%s: finish r0", tc->tier);
    ev_t fin = FIN(t0 + 200 * SEC, "r0");
    char next[16];
    snprintf(next, sizeof(next), "r%lld", (long long)lim);
    const dec_t adm_next[] = {ADM("p1", next, (200 - lim) * SEC)};
    apply_check(l, &fin, 0, LEDGER_OK, adm_next, lim < 0 ? 0 : 1, where);
    if (lim < 0)
        running--;
    else
        queued--;
    st = (st_t)ST(tc->tier, running + 1, queued, 0, counted, 0, 2);
    check_state(l, "acme", &st, where);

    if (lim > 0) {
        /* The queue is r<lim+1>, r<lim+2>: the head is cancelled (no decision), so a new
         * request is second, not third. */
        char head[24];
        snprintf(head, sizeof(head), "r%lld", (long long)lim + 1);
        ev_t can = CAN(t0 + 201 * SEC, head);
        snprintf(where, sizeof(where), "%s: cancel %s", tc->tier, head);
        apply_quiet(l, &can, where);
        ev_t late = REQ(t0 + 202 * SEC, "p1", "late");
        const dec_t q2[] = {QUE("p1", "late", 2)};
        apply_check(l, &late, 0, LEDGER_OK, q2, 1, where);
        st = (st_t)ST(tc->tier, running + 1, 2, 0, counted, 0, 2);
        check_state(l, "acme", &st, where);
        queued = 2;
    }

    /* Workflows of the new period: the quota plus two (120 when unlimited). Free holds from the
     * quota on (two already counted: "w0".."w2" count, "w3".. are held); bill tiers count the
     * ones started at or over the quota as overage; payg (quota 0) every one. */
    int64_t q = tc->workflows;
    int m = q < 0 ? 120 : (int)q + 2;
    int64_t tw = JAN(11);
    int64_t nheld = 0;
    for (int i = 0; i < m; i++) {
        char wf[16];
        snprintf(wf, sizeof(wf), "w%d", i);
        snprintf(where, sizeof(where), "%s: start %s", tc->tier, wf);
        ev_t e = WFS(tw + i * SEC, "p1", wf);
        bool hold = tc->hold && counted >= q;
        if (hold)
            nheld++;
        else
            counted++;
        dec_t d = HELD("p1", wf, nheld);
        apply_check(l, &e, 0, LEDGER_OK, &d, hold ? 1 : 0, where);
    }
    st = (st_t)ST(tc->tier, running + 1, queued, nheld, counted, 0, 2);
    check_state(l, "acme", &st, "after workflows");
    check_totals(l, orgs, 1, "after workflows");

    sealed_t s;
    seal(l, 3, &s);
    assert_int_equal(s.nstate, 1);
    assert_int_equal(s.state[0].checkpoint, 3);
    assert_string_equal(s.state[0].org, "acme");
    /* f0..f6 and w0..: released ones count under the tier of their release. */
    for (int i = 0; i < 7; i++) {
        char wf[16];
        snprintf(wf, sizeof(wf), "f%d", i);
        bool late = i >= 5;
        /* free released f5, f6 at JAN(10) (new period); paid tiers at JAN(5) (upgrade), when
         * 5 were counted: payg's quota is 0, so both are overage there. */
        int64_t req = late ? JAN(3) + (i - 5) * SEC : JAN(2) + i;
        want_usage_t w = {wf,
                          "p1",
                          "medium",
                          "running",
                          late ? tc->tier : "free",
                          req,
                          late ? (is_free ? JAN(10) : JAN(5)) : req,
                          -1,
                          true,
                          late && q == 0};
        check_usage(&s, "acme", &w);
    }
    int64_t c = is_free ? 2 : 0;
    for (int i = 0; i < m; i++) {
        char wf[16];
        snprintf(wf, sizeof(wf), "w%d", i);
        bool hold = tc->hold && c >= q;
        bool over = !tc->hold && q >= 0 && c >= q;
        if (!hold)
            c++;
        want_usage_t w = {wf,
                          "p1",
                          "medium",
                          hold ? "held" : "running",
                          tc->tier,
                          tw + i * SEC,
                          hold ? -1 : tw + i * SEC,
                          -1,
                          !hold,
                          over};
        check_usage(&s, "acme", &w);
    }
    assert_int_equal(s.nusage, 7 + (size_t)m);
    sealed_free(&s);

    /* FEB(10) - 1 ms is still in [JAN(10), FEB(10)); FEB(10) begins the next period, whose end
     * depends on the tier's period kind. Counts reset; free releases what it held. */
    ev_t before = OTHER(FEB(10) - 1, WIRE_T_API_CALL);
    apply_quiet(l, &before, "before the end");
    st = (st_t)STP(tc->tier, running + 1, queued, nheld, counted, 0, 2, JAN(10), FEB(10));
    check_state(l, "acme", &st, "before the end");
    dec_t rels[8];
    assert_true(nheld <= 8);
    char names[8][16];
    for (int64_t i = 0; i < nheld; i++) {
        /* held ones are w<m-nheld>.. in order */
        int k = m - (int)nheld + (int)i;
        snprintf(names[i], sizeof(names[i]), "w%d", k);
        rels[i] = (dec_t)REL("p1", names[i], FEB(10) - (tw + k * SEC));
    }
    snprintf(where, sizeof(where), "%s: roll", tc->tier);
    ev_t roll = OTHER(FEB(10), WIRE_T_STORAGE_REPORT);
    apply_check(l, &roll, 0, LEDGER_OK, rels, (size_t)nheld, where);
    st = (st_t)STP(tc->tier, running + 1, queued, 0, nheld, 0, 2, FEB(10), tc->end2);
    check_state(l, "acme", &st, where);
    ev_t roll3 = OTHER(tc->end2, WIRE_T_CREDITS_ADDED);
    apply_quiet(l, &roll3, "second roll");
    st = (st_t)STP(tc->tier, running + 1, queued, 0, 0, 0, 2, tc->end2, tc->end3);
    check_state(l, "acme", &st, "second roll");
    ledger_free(l);
}

static void test_every_tier(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(TIER_CASES); i++)
        tier_case(&TIER_CASES[i]);
}

/* ---- agents ------------------------------------------------------------------------------ */

#define T0 (JAN(10) + 9 * HOUR)

/* Free: one agent per project. FIFO admissions with waits, queued cancels shifting positions,
 * no-ops, projects forgotten when idle and reused run ids. */
static void test_free_agents(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {REQ(T0, "p1", "r1"), {ADM("p1", "r1", 0)}, ST("free", 1, 0, 0, 0, 0, 1)},
        {REQW(T0 + 1000, "p1", "r2", "wf-a"), {QUE("p1", "r2", 1)}, ST("free", 1, 1, 0, 0, 0, 1)},
        {REQ(T0 + 2000, "p1", "r3"), {QUE("p1", "r3", 2)}, ST("free", 1, 2, 0, 0, 0, 1)},
        {REQ(T0 + 3000, "p1", "r4"), {QUE("p1", "r4", 3)}, ST("free", 1, 3, 0, 0, 0, 1)},
        /* p2 is independent: its own slot and its own queue */
        {REQ(T0 + 4000, "p2", "s1"), {ADM("p2", "s1", 0)}, ST("free", 2, 3, 0, 0, 0, 2)},
        {REQ(T0 + 5000, "p2", "s2"), {QUE("p2", "s2", 1)}, ST("free", 2, 4, 0, 0, 0, 2)},
        /* cancelling a queued run: no decision; r4 moves up, so r5 is third, not fourth */
        {CAN(T0 + 6000, "r3"), {{0}}, ST("free", 2, 3, 0, 0, 0, 2)},
        {REQ(T0 + 7000, "p1", "r5"), {QUE("p1", "r5", 3)}, ST("free", 2, 4, 0, 0, 0, 2)},
        /* r1 frees the slot: r2 (requested at +1000) waited 9000 */
        {FIN(T0 + 10000, "r1"), {ADM("p1", "r2", 9000)}, ST("free", 2, 3, 0, 0, 0, 2)},
        /* a running run cancelled frees its slot too: r4 (+3000) waited 9000 */
        {CAN(T0 + 12000, "r2"), {ADM("p1", "r4", 9000)}, ST("free", 2, 2, 0, 0, 0, 2)},
        /* ended or never seen: no-ops */
        {FIN(T0 + 13000, "r1"), {{0}}, ST("free", 2, 2, 0, 0, 0, 2), LEDGER_NOOP_UNKNOWN_RUN},
        {CAN(T0 + 13500, "ghost"), {{0}}, ST("free", 2, 2, 0, 0, 0, 2), LEDGER_NOOP_UNKNOWN_RUN},
        {CAN(T0 + 13600, "r3"), {{0}}, ST("free", 2, 2, 0, 0, 0, 2), LEDGER_NOOP_UNKNOWN_RUN},
        /* already running, already queued, and open in another project: no-ops */
        {REQ(T0 + 14000, "p1", "r4"), {{0}}, ST("free", 2, 2, 0, 0, 0, 2), LEDGER_NOOP_KNOWN_RUN},
        {REQ(T0 + 14500, "p1", "r5"), {{0}}, ST("free", 2, 2, 0, 0, 0, 2), LEDGER_NOOP_KNOWN_RUN},
        {REQ(T0 + 15000, "p2", "r4"), {{0}}, ST("free", 2, 2, 0, 0, 0, 2), LEDGER_NOOP_KNOWN_RUN},
        /* a queued run that finishes just leaves the queue */
        {FIN(T0 + 16000, "r5"), {{0}}, ST("free", 2, 1, 0, 0, 0, 2)},
        /* p1 has nothing left: forgotten */
        {FIN(T0 + 17000, "r4"), {{0}}, ST("free", 1, 1, 0, 0, 0, 1)},
        /* an ended run's id requested again is a new run */
        {REQ(T0 + 18000, "p1", "r1"), {ADM("p1", "r1", 0)}, ST("free", 2, 1, 0, 0, 0, 2)},
        /* s2 (+5000) waited 14000 */
        {FIN(T0 + 19000, "s1"), {ADM("p2", "s2", 14000)}, ST("free", 2, 0, 0, 0, 0, 2)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "free agents");

    /* agent_runs: waited_ms = admitted − requested, agent_ms = finished − admitted. */
    sealed_t s;
    seal(l, 11, &s);
    static const want_run_t runs[] = {
        {"r1", "p1", "", "finished", T0, T0, T0 + 10000, 0, 10000},
        {"r2", "p1", "wf-a", "cancelled", T0 + 1000, T0 + 10000, T0 + 12000, 9000, 2000},
        {"r3", "p1", "", "cancelled", T0 + 2000, -1, T0 + 6000, 0, 0},
        {"r4", "p1", "", "finished", T0 + 3000, T0 + 12000, T0 + 17000, 9000, 5000},
        /* never ran: it leaves the queue as cancelled (assumed: ledger.h says it "just leaves
         * the queue") */
        {"r5", "p1", "", "cancelled", T0 + 7000, -1, T0 + 16000, 0, 0},
        {"s1", "p2", "", "finished", T0 + 4000, T0 + 4000, T0 + 19000, 0, 15000},
        {"s2", "p2", "", "running", T0 + 5000, T0 + 19000, -1, 14000, 0},
        {"r1", "p1", "", "running", T0 + 18000, T0 + 18000, -1, 0, 0},
    };
    for (size_t i = 0; i < N_ELEMS(runs); i++)
        check_run(&s, "acme", &runs[i]);
    assert_int_equal(s.nruns, N_ELEMS(runs));
    assert_int_equal(s.nusage, 0);
    assert_int_equal(s.nstate, 1);
    assert_int_equal(s.state[0].checkpoint, 11);
    assert_string_equal(s.state[0].org, "acme");
    sealed_free(&s);

    /* Nothing changed since: an empty seal. */
    seal(l, 12, &s);
    assert_int_equal(s.nstate + s.nusage + s.nruns, 0);
    sealed_free(&s);

    /* One more change: one run row and the organization's snapshot. */
    ev_t fin = FIN(T0 + 25000, "s2");
    apply_quiet(l, &fin, "finish s2");
    seal(l, 13, &s);
    assert_int_equal(s.nstate, 1);
    assert_int_equal(s.state[0].checkpoint, 13);
    assert_int_equal(s.nusage, 0);
    assert_int_equal(s.nruns, 1);
    const want_run_t s2 = {"s2",       "p2",       "",    "finished", T0 + 5000,
                           T0 + 19000, T0 + 25000, 14000, 6000};
    check_run(&s, "acme", &s2);
    sealed_free(&s);
    assert_int_equal(ledger_running(l), 1);
    assert_int_equal(ledger_queued(l), 0);
    ledger_free(l);
}

/* Pro: five per project; the queue drains in request order as slots free. */
static void test_pro_agents(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {SUB(T0, "pro"), {{0}}, ST("pro", 0, 0, 0, 0, 0, 0)},
        {REQ(T0 + 1000, "p1", "a1"), {ADM("p1", "a1", 0)}, ST("pro", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 2000, "p1", "a2"), {ADM("p1", "a2", 0)}, ST("pro", 2, 0, 0, 0, 0, 1)},
        {REQ(T0 + 3000, "p1", "a3"), {ADM("p1", "a3", 0)}, ST("pro", 3, 0, 0, 0, 0, 1)},
        {REQ(T0 + 4000, "p1", "a4"), {ADM("p1", "a4", 0)}, ST("pro", 4, 0, 0, 0, 0, 1)},
        {REQ(T0 + 5000, "p1", "a5"), {ADM("p1", "a5", 0)}, ST("pro", 5, 0, 0, 0, 0, 1)},
        {REQ(T0 + 6000, "p1", "a6"), {QUE("p1", "a6", 1)}, ST("pro", 5, 1, 0, 0, 0, 1)},
        {REQ(T0 + 7000, "p1", "a7"), {QUE("p1", "a7", 2)}, ST("pro", 5, 2, 0, 0, 0, 1)},
        {REQ(T0 + 8000, "p1", "a8"), {QUE("p1", "a8", 3)}, ST("pro", 5, 3, 0, 0, 0, 1)},
        {REQ(T0 + 9000, "p2", "b1"), {ADM("p2", "b1", 0)}, ST("pro", 6, 3, 0, 0, 0, 2)},
        /* a3 finishes at +20000: a6 (+6000) waited 14000 */
        {FIN(T0 + 20000, "a3"), {ADM("p1", "a6", 14000)}, ST("pro", 6, 2, 0, 0, 0, 2)},
        /* b1 frees a p2 slot: p1's queue is not touched */
        {FIN(T0 + 21000, "b1"), {{0}}, ST("pro", 5, 2, 0, 0, 0, 1)},
        {CAN(T0 + 22000, "a1"), {ADM("p1", "a7", 15000)}, ST("pro", 5, 1, 0, 0, 0, 1)},
        {FIN(T0 + 30000, "a2"), {ADM("p1", "a8", 22000)}, ST("pro", 5, 0, 0, 0, 0, 1)},
        {FIN(T0 + 31000, "a4"), {{0}}, ST("pro", 4, 0, 0, 0, 0, 1)},
        {REQ(T0 + 32000, "p1", "a9"), {ADM("p1", "a9", 0)}, ST("pro", 5, 0, 0, 0, 0, 1)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "pro agents");
    ledger_free(l);
}

/* Two organizations never share anything: not run ids, not slots. */
static void test_orgs_independent(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0, .org = "acme", .project = "p", .run = "r1"},
         {ADM("p", "r1", 0)},
         ST("free", 1, 0, 0, 0, 0, 1)},
        {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0, .org = "beta", .project = "p", .run = "r1"},
         {ADM("p", "r1", 0)},
         ST("free", 1, 0, 0, 0, 0, 1)},
        {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 1, .org = "acme", .project = "p", .run = "r2"},
         {QUE("p", "r2", 1)},
         ST("free", 1, 1, 0, 0, 0, 1)},
        {{.type = WIRE_T_SUBSCRIPTION_CHANGED, .ts = T0 + 2, .org = "beta", .tier = "team"},
         {{0}},
         ST("team", 1, 0, 0, 0, 0, 1)},
        {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 3, .org = "beta", .project = "p", .run = "r2"},
         {ADM("p", "r2", 0)},
         ST("team", 2, 0, 0, 0, 0, 1)},
        /* acme is still free */
        {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 4, .org = "acme", .project = "p", .run = "r3"},
         {QUE("p", "r3", 2)},
         ST("free", 1, 2, 0, 0, 0, 1)},
        {{.type = WIRE_T_AGENT_FINISHED, .ts = T0 + 10, .org = "beta", .run = "r1"},
         {{0}},
         ST("team", 1, 0, 0, 0, 0, 1)},
        {{.type = WIRE_T_AGENT_FINISHED, .ts = T0 + 11, .org = "acme", .run = "r1"},
         {ADM("p", "r2", 10)},
         ST("free", 1, 1, 0, 0, 0, 1)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "two orgs");
    assert_int_equal(ledger_orgs(l), 2);
    ledger_free(l);
}

/* A downgrade never pre-empts: team with 8 running in p1 becomes pro (5); nothing is admitted
 * in p1 until fewer than 5 run. An upgrade admits at once. */
static void test_downgrade_team_to_pro(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {SUB(T0, "team"), {{0}}, ST("team", 0, 0, 0, 0, 0, 0)},
        {REQ(T0 + 1, "p1", "r1"), {ADM("p1", "r1", 0)}, ST("team", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 2, "p1", "r2"), {ADM("p1", "r2", 0)}, ST("team", 2, 0, 0, 0, 0, 1)},
        {REQ(T0 + 3, "p1", "r3"), {ADM("p1", "r3", 0)}, ST("team", 3, 0, 0, 0, 0, 1)},
        {REQ(T0 + 4, "p1", "r4"), {ADM("p1", "r4", 0)}, ST("team", 4, 0, 0, 0, 0, 1)},
        {REQ(T0 + 5, "p1", "r5"), {ADM("p1", "r5", 0)}, ST("team", 5, 0, 0, 0, 0, 1)},
        {REQ(T0 + 6, "p1", "r6"), {ADM("p1", "r6", 0)}, ST("team", 6, 0, 0, 0, 0, 1)},
        {REQ(T0 + 7, "p1", "r7"), {ADM("p1", "r7", 0)}, ST("team", 7, 0, 0, 0, 0, 1)},
        {REQ(T0 + 8, "p1", "r8"), {ADM("p1", "r8", 0)}, ST("team", 8, 0, 0, 0, 0, 1)},
        {REQ(T0 + 9, "p2", "s1"), {ADM("p2", "s1", 0)}, ST("team", 9, 0, 0, 0, 0, 2)},
        /* downgrade: the 8 keep running */
        {SUB(T0 + 100, "pro"), {{0}}, ST("pro", 9, 0, 0, 0, 0, 2)},
        {REQ(T0 + 101, "p1", "r9"), {QUE("p1", "r9", 1)}, ST("pro", 9, 1, 0, 0, 0, 2)},
        {REQ(T0 + 102, "p1", "r10"), {QUE("p1", "r10", 2)}, ST("pro", 9, 2, 0, 0, 0, 2)},
        /* p2 (1 running) still has room under the new limit */
        {REQ(T0 + 103, "p2", "s2"), {ADM("p2", "s2", 0)}, ST("pro", 10, 2, 0, 0, 0, 2)},
        /* 7, 6, 5 running in p1: still not below 5 */
        {FIN(T0 + 200, "r1"), {{0}}, ST("pro", 9, 2, 0, 0, 0, 2)},
        {FIN(T0 + 201, "r2"), {{0}}, ST("pro", 8, 2, 0, 0, 0, 2)},
        {CAN(T0 + 202, "r3"), {{0}}, ST("pro", 7, 2, 0, 0, 0, 2)},
        /* 4 < 5: r9 (requested at +101) waited 102 */
        {FIN(T0 + 203, "r4"), {ADM("p1", "r9", 102)}, ST("pro", 7, 1, 0, 0, 0, 2)},
        {FIN(T0 + 204, "r5"), {ADM("p1", "r10", 102)}, ST("pro", 7, 0, 0, 0, 0, 2)},
        {FIN(T0 + 205, "r6"), {{0}}, ST("pro", 6, 0, 0, 0, 0, 2)},
        /* p1 runs r7 r8 r9 r10: a fifth fits, a sixth waits */
        {REQ(T0 + 206, "p1", "r11"), {ADM("p1", "r11", 0)}, ST("pro", 7, 0, 0, 0, 0, 2)},
        {REQ(T0 + 207, "p1", "r12"), {QUE("p1", "r12", 1)}, ST("pro", 7, 1, 0, 0, 0, 2)},
        {REQ(T0 + 208, "p1", "r13"), {QUE("p1", "r13", 2)}, ST("pro", 7, 2, 0, 0, 0, 2)},
        /* back to team: both fit at once */
        {SUB(T0 + 300, "team"),
         {ADM("p1", "r12", 93), ADM("p1", "r13", 92)},
         ST("team", 9, 0, 0, 0, 0, 2)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "team to pro");
    ledger_free(l);
}

/* An upgrade admits queued runs in every project, projects in the order they were created
 * (here p2 before p1), each project's queue oldest first and only up to the new limit; its
 * releases come after its admissions. subscription.cancelled returns to free. */
static void test_upgrade_across_projects(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {REQ(T0, "p2", "b1"), {ADM("p2", "b1", 0)}, ST("free", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 10, "p1", "a1"), {ADM("p1", "a1", 0)}, ST("free", 2, 0, 0, 0, 0, 2)},
        {REQ(T0 + 20, "p1", "a2"), {QUE("p1", "a2", 1)}, ST("free", 2, 1, 0, 0, 0, 2)},
        {REQ(T0 + 30, "p2", "b2"), {QUE("p2", "b2", 1)}, ST("free", 2, 2, 0, 0, 0, 2)},
        {REQ(T0 + 40, "p1", "a3"), {QUE("p1", "a3", 2)}, ST("free", 2, 3, 0, 0, 0, 2)},
        {REQ(T0 + 50, "p1", "a4"), {QUE("p1", "a4", 3)}, ST("free", 2, 4, 0, 0, 0, 2)},
        {REQ(T0 + 60, "p1", "a5"), {QUE("p1", "a5", 4)}, ST("free", 2, 5, 0, 0, 0, 2)},
        {REQ(T0 + 70, "p1", "a6"), {QUE("p1", "a6", 5)}, ST("free", 2, 6, 0, 0, 0, 2)},
        {REQ(T0 + 80, "p1", "a7"), {QUE("p1", "a7", 6)}, ST("free", 2, 7, 0, 0, 0, 2)},
        {REQ(T0 + 90, "p3", "c1"), {ADM("p3", "c1", 0)}, ST("free", 3, 7, 0, 0, 0, 3)},
        /* two workflows held behind five counted */
        {WFS(T0 + 91, "p1", "w1"), {{0}}, ST("free", 3, 7, 0, 1, 0, 3)},
        {WFS(T0 + 92, "p1", "w2"), {{0}}, ST("free", 3, 7, 0, 2, 0, 3)},
        {WFS(T0 + 93, "p1", "w3"), {{0}}, ST("free", 3, 7, 0, 3, 0, 3)},
        {WFS(T0 + 94, "p1", "w4"), {{0}}, ST("free", 3, 7, 0, 4, 0, 3)},
        {WFS(T0 + 95, "p1", "w5"), {{0}}, ST("free", 3, 7, 0, 5, 0, 3)},
        {WFS(T0 + 96, "p2", "w6"), {HELD("p2", "w6", 1)}, ST("free", 3, 7, 1, 5, 0, 3)},
        {WFS(T0 + 97, "p1", "w7"), {HELD("p1", "w7", 2)}, ST("free", 3, 7, 2, 5, 0, 3)},
        /* pro at +1000: p2 first (b2 waited 970), then p1 up to 5 running (a2..a5), then the
         * held workflows; a6 and a7 stay queued */
        {SUB(T0 + 1000, "pro"),
         {ADM("p2", "b2", 970), ADM("p1", "a2", 980), ADM("p1", "a3", 960), ADM("p1", "a4", 950),
          ADM("p1", "a5", 940), REL("p2", "w6", 904), REL("p1", "w7", 903)},
         ST("pro", 8, 2, 0, 7, 0, 3)},
        {REQ(T0 + 1100, "p1", "a8"), {QUE("p1", "a8", 3)}, ST("pro", 8, 3, 0, 7, 0, 3)},
        /* back to free: nobody is pre-empted, but p3 (1 running) queues now */
        {UNSUB(T0 + 1200), {{0}}, ST("free", 8, 3, 0, 7, 0, 3)},
        {REQ(T0 + 1300, "p3", "c2"), {QUE("p3", "c2", 1)}, ST("free", 8, 4, 0, 7, 0, 3)},
        /* 7 counted ≥ 5 on free again: held */
        {WFS(T0 + 1301, "p1", "w8"), {HELD("p1", "w8", 1)}, ST("free", 8, 4, 1, 7, 0, 3)},
        /* p1 runs a1..a5; finishing one of five admits nothing on free */
        {FIN(T0 + 1400, "a1"), {{0}}, ST("free", 7, 4, 1, 7, 0, 3)},
        {FIN(T0 + 1500, "c1"), {ADM("p3", "c2", 200)}, ST("free", 7, 3, 1, 7, 0, 3)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "upgrade");
    ledger_free(l);
}

/* Enterprise never queues, payg allows one per project. */
static void test_enterprise_payg_agents(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {SUB(T0, "enterprise"), {{0}}, ST("enterprise", 0, 0, 0, 0, 0, 0)},
        {REQ(T0 + 1, "p", "e1"), {ADM("p", "e1", 0)}, ST("enterprise", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 2, "p", "e2"), {ADM("p", "e2", 0)}, ST("enterprise", 2, 0, 0, 0, 0, 1)},
        {REQ(T0 + 3, "p", "e3"), {ADM("p", "e3", 0)}, ST("enterprise", 3, 0, 0, 0, 0, 1)},
        {SUB(T0 + 10, "payg"), {{0}}, ST("payg", 3, 0, 0, 0, 0, 1)},
        {REQ(T0 + 11, "p", "e4"), {QUE("p", "e4", 1)}, ST("payg", 3, 1, 0, 0, 0, 1)},
        {REQ(T0 + 12, "q", "f1"), {ADM("q", "f1", 0)}, ST("payg", 4, 1, 0, 0, 0, 2)},
        {REQ(T0 + 13, "q", "f2"), {QUE("q", "f2", 1)}, ST("payg", 4, 2, 0, 0, 0, 2)},
        {FIN(T0 + 20, "e1"), {{0}}, ST("payg", 3, 2, 0, 0, 0, 2)},
        {FIN(T0 + 21, "e2"), {{0}}, ST("payg", 2, 2, 0, 0, 0, 2)},
        {FIN(T0 + 22, "e3"), {ADM("p", "e4", 11)}, ST("payg", 2, 1, 0, 0, 0, 2)},
        {SUB(T0 + 30, "byo"), {ADM("q", "f2", 17)}, ST("byo", 3, 0, 0, 0, 0, 2)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "enterprise/payg");
    ledger_free(l);
}

/* ---- workflows --------------------------------------------------------------------------- */

/* Free: the sixth workflow of the period is held; packs release oldest first up to the new
 * quota; a held workflow that finishes leaves the hold queue; finishing frees no quota. */
static void test_free_holds_and_packs(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {WFS(T0 + 1, "p1", "w1"), {{0}}, ST("free", 0, 0, 0, 1, 0, 0)},
        {WFS(T0 + 2, "p1", "w2"), {{0}}, ST("free", 0, 0, 0, 2, 0, 0)},
        {WFS(T0 + 3, "p1", "w3"), {{0}}, ST("free", 0, 0, 0, 3, 0, 0)},
        {WFS(T0 + 4, "p1", "w4"), {{0}}, ST("free", 0, 0, 0, 4, 0, 0)},
        {WFS(T0 + 5, "p2", "w5"), {{0}}, ST("free", 0, 0, 0, 5, 0, 0)},
        {WFS(T0 + 6, "p1", "w6"), {HELD("p1", "w6", 1)}, ST("free", 0, 0, 1, 5, 0, 0)},
        {WFS(T0 + 7, "p2", "w7"), {HELD("p2", "w7", 2)}, ST("free", 0, 0, 2, 5, 0, 0)},
        {WFS(T0 + 8, "p1", "w8"), {HELD("p1", "w8", 3)}, ST("free", 0, 0, 3, 5, 0, 0)},
        {WFS(T0 + 9, "p1", "w9"), {HELD("p1", "w9", 4)}, ST("free", 0, 0, 4, 5, 0, 0)},
        {WFS(T0 + 10, "p1", "w10"), {HELD("p1", "w10", 5)}, ST("free", 0, 0, 5, 5, 0, 0)},
        {WFS(T0 + 11, "p1", "w11"), {HELD("p1", "w11", 6)}, ST("free", 0, 0, 6, 5, 0, 0)},
        {WFS(T0 + 12, "p1", "w12"), {HELD("p1", "w12", 7)}, ST("free", 0, 0, 7, 5, 0, 0)},
        {WFS(T0 + 13, "p1", "w13"), {HELD("p1", "w13", 8)}, ST("free", 0, 0, 8, 5, 0, 0)},
        {WFS(T0 + 14, "p1", "w14"), {HELD("p1", "w14", 9)}, ST("free", 0, 0, 9, 5, 0, 0)},
        {WFS(T0 + 15, "p1", "w15"), {HELD("p1", "w15", 10)}, ST("free", 0, 0, 10, 5, 0, 0)},
        {WFS(T0 + 16, "p1", "w16"), {HELD("p1", "w16", 11)}, ST("free", 0, 0, 11, 5, 0, 0)},
        {WFS(T0 + 17, "p1", "w17"), {HELD("p1", "w17", 12)}, ST("free", 0, 0, 12, 5, 0, 0)},
        /* a pack of 10 at +100: quota 15, the ten oldest go (w6 waited 94 ... w15 waited 85) */
        {PACK(T0 + 100, 10),
         {REL("p1", "w6", 94), REL("p2", "w7", 93), REL("p1", "w8", 92), REL("p1", "w9", 91),
          REL("p1", "w10", 90), REL("p1", "w11", 89), REL("p1", "w12", 88), REL("p1", "w13", 87),
          REL("p1", "w14", 86), REL("p1", "w15", 85)},
         ST("free", 0, 0, 2, 15, 10, 0)},
        /* behind w16 and w17 */
        {WFS(T0 + 101, "p1", "w18"), {HELD("p1", "w18", 3)}, ST("free", 0, 0, 3, 15, 10, 0)},
        /* a held workflow cancelled upstream: it leaves the queue, no decision */
        {WFF(T0 + 102, "w17", WIRE_STATUS_CANCELLED), {{0}}, ST("free", 0, 0, 2, 15, 10, 0)},
        {WFS(T0 + 103, "p1", "w19"), {HELD("p1", "w19", 3)}, ST("free", 0, 0, 3, 15, 10, 0)},
        /* finishing a counted workflow does not give its quota back */
        {WFF(T0 + 104, "w3", WIRE_STATUS_SUCCEEDED), {{0}}, ST("free", 0, 0, 3, 15, 10, 0)},
        {WFF(T0 + 105, "w4", WIRE_STATUS_FAILED), {{0}}, ST("free", 0, 0, 3, 15, 10, 0)},
        /* a pack of 50: quota 65, all three go */
        {PACK(T0 + 200, 50),
         {REL("p1", "w16", 184), REL("p1", "w18", 99), REL("p1", "w19", 97)},
         ST("free", 0, 0, 0, 18, 60, 0)},
        {WFS(T0 + 201, "p1", "w20"), {{0}}, ST("free", 0, 0, 0, 19, 60, 0)},
        /* no-ops */
        {WFS(T0 + 202, "p1", "w6"),
         {{0}},
         ST("free", 0, 0, 0, 19, 60, 0),
         LEDGER_NOOP_KNOWN_WORKFLOW},
        {WFF(T0 + 203, "ghost", WIRE_STATUS_SUCCEEDED),
         {{0}},
         ST("free", 0, 0, 0, 19, 60, 0),
         LEDGER_NOOP_UNKNOWN_WORKFLOW},
        {WFF(T0 + 204, "w3", WIRE_STATUS_SUCCEEDED),
         {{0}},
         ST("free", 0, 0, 0, 19, 60, 0),
         LEDGER_NOOP_UNKNOWN_WORKFLOW},
        {WFF(T0 + 205, "w17", WIRE_STATUS_CANCELLED),
         {{0}},
         ST("free", 0, 0, 0, 19, 60, 0),
         LEDGER_NOOP_UNKNOWN_WORKFLOW},
        /* an ended workflow's id started again is a new workflow */
        {WFS(T0 + 206, "p1", "w3"), {{0}}, ST("free", 0, 0, 0, 20, 60, 0)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "free holds");
    sealed_t s;
    seal(l, 1, &s);
    static const want_usage_t rows[] = {
        {"w1", "p1", "medium", "running", "free", T0 + 1, T0 + 1, -1, true, false},
        {"w5", "p2", "medium", "running", "free", T0 + 5, T0 + 5, -1, true, false},
        /* released by the pack: started then, not when requested */
        {"w6", "p1", "medium", "running", "free", T0 + 6, T0 + 100, -1, true, false},
        {"w15", "p1", "medium", "running", "free", T0 + 15, T0 + 100, -1, true, false},
        {"w16", "p1", "medium", "running", "free", T0 + 16, T0 + 200, -1, true, false},
        /* held, then cancelled: never started, never billed */
        {"w17", "p1", "medium", "cancelled", "free", T0 + 17, -1, T0 + 102, false, false},
        {"w3", "p1", "medium", "succeeded", "free", T0 + 3, T0 + 3, T0 + 104, true, false},
        {"w3", "p1", "medium", "running", "free", T0 + 206, T0 + 206, -1, true, false},
        {"w4", "p1", "medium", "failed", "free", T0 + 4, T0 + 4, T0 + 105, true, false},
        {"w20", "p1", "medium", "running", "free", T0 + 201, T0 + 201, -1, true, false},
    };
    for (size_t i = 0; i < N_ELEMS(rows); i++)
        check_usage(&s, "acme", &rows[i]);
    assert_int_equal(s.nusage, 21); /* w1..w20 and the second w3 */
    assert_int_equal(s.nruns, 0);
    sealed_free(&s);
    ledger_free(l);
}

/* A held workflow's usage row when its hold ends in failure or success too, and complexities. */
static void test_held_finished_rows(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    assert_non_null(l);
    start_quiet(l, "acme", "c", 5, T0);
    static const struct {
        const char *wf;
        wire_complexity_t cx;
        wire_status_t st;
    } cases[] = {
        {"h-small", WIRE_COMPLEXITY_SMALL, WIRE_STATUS_FAILED},
        {"h-medium", WIRE_COMPLEXITY_MEDIUM, WIRE_STATUS_SUCCEEDED},
        {"h-large", WIRE_COMPLEXITY_LARGE, WIRE_STATUS_CANCELLED},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        ev_t e = WFS(T0 + 100 + (int64_t)i, "px", cases[i].wf);
        e.cx = cases[i].cx;
        dec_t d = HELD("px", cases[i].wf, (int64_t)i + 1);
        apply_check(l, &e, 0, LEDGER_OK, &d, 1, cases[i].wf);
    }
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        ev_t e = WFF(T0 + 200 + (int64_t)i, cases[i].wf, cases[i].st);
        apply_quiet(l, &e, cases[i].wf);
    }
    assert_int_equal(ledger_held(l), 0);
    sealed_t s;
    seal(l, 1, &s);
    const want_usage_t rows[] = {
        {"h-small", "px", "small", "failed", "free", T0 + 100, -1, T0 + 200, false, false},
        {"h-medium", "px", "medium", "succeeded", "free", T0 + 101, -1, T0 + 201, false, false},
        {"h-large", "px", "large", "cancelled", "free", T0 + 102, -1, T0 + 202, false, false},
    };
    for (size_t i = 0; i < N_ELEMS(rows); i++)
        check_usage(&s, "acme", &rows[i]);
    assert_int_equal(s.nusage, 8);
    sealed_free(&s);
    ledger_free(l);
}

/* A new calendar month releases what free held: the organization's first event at or after
 * period_end, of any type (here storage.report, and an unknown run's agent.finished), rolls it.
 * Packs and counts reset with the period. */
static void test_free_month_release(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    assert_non_null(l);
    /* w1..w15: quota 5 + a pack of 10 */
    static const step_t jan[] = {
        {WFS(JAN(20), "p", "w1"), {{0}}, STP("free", 0, 0, 0, 1, 0, 0, JAN1, FEB(1))},
        {PACK(JAN(20) + 1, 10), {{0}}, ST("free", 0, 0, 0, 1, 10, 0)},
    };
    run_steps(l, jan, N_ELEMS(jan), "january");
    for (int i = 2; i <= 15; i++) {
        char wf[8];
        snprintf(wf, sizeof(wf), "w%d", i);
        ev_t e = WFS(JAN(20) + i, "p", wf);
        apply_quiet(l, &e, wf);
    }
    static const step_t rest[] = {
        {WFS(JAN(25), "p", "w16"), {HELD("p", "w16", 1)}, ST("free", 0, 0, 1, 15, 10, 0)},
        {WFS(JAN(26), "p", "w17"), {HELD("p", "w17", 2)}, ST("free", 0, 0, 2, 15, 10, 0)},
        {OTHER(FEB(1) - 1, WIRE_T_LLM_CALL), {{0}}, STP("free", 0, 0, 2, 15, 10, 0, JAN1, FEB(1))},
        /* FEB(1) exactly: February begins, count 0, packs 0; both go */
        {OTHER(FEB(1), WIRE_T_STORAGE_REPORT),
         {REL("p", "w16", FEB(1) - JAN(25)), REL("p", "w17", FEB(1) - JAN(26))},
         STP("free", 0, 0, 0, 2, 0, 0, FEB(1), MAR(1))},
        {WFS(FEB(2), "p", "w18"), {{0}}, ST("free", 0, 0, 0, 3, 0, 0)},
        {WFS(FEB(2) + 1, "p", "w19"), {{0}}, ST("free", 0, 0, 0, 4, 0, 0)},
        {WFS(FEB(2) + 2, "p", "w20"), {{0}}, ST("free", 0, 0, 0, 5, 0, 0)},
        /* the January pack is gone: quota 5 */
        {WFS(FEB(3), "p", "w21"), {HELD("p", "w21", 1)}, ST("free", 0, 0, 1, 5, 0, 0)},
        {WFS(FEB(4), "p", "w22"), {HELD("p", "w22", 2)}, ST("free", 0, 0, 2, 5, 0, 0)},
        /* March skipped: an April event rolls twice; its note does not stop the release */
        {FIN(APR(3), "ghost"),
         {REL("p", "w21", APR(3) - FEB(3)), REL("p", "w22", APR(3) - FEB(4))},
         STP("free", 0, 0, 0, 2, 0, 0, APR(1), MAY(1)),
         LEDGER_NOOP_UNKNOWN_RUN},
        {WFS(APR(4), "p", "w23"), {{0}}, ST("free", 0, 0, 0, 3, 0, 0)},
        {WFS(APR(4) + 1, "p", "w24"), {{0}}, ST("free", 0, 0, 0, 4, 0, 0)},
        {WFS(APR(4) + 2, "p", "w25"), {{0}}, ST("free", 0, 0, 0, 5, 0, 0)},
        {WFS(APR(4) + 3, "p", "w26"), {HELD("p", "w26", 1)}, ST("free", 0, 0, 1, 5, 0, 0)},
        /* the workflow that opens May: first the held one goes, then this one counts */
        {WFS(MAY(1), "p", "w27"),
         {REL("p", "w26", MAY(1) - APR(4) - 3)},
         STP("free", 0, 0, 0, 2, 0, 0, MAY(1), MAY(32))},
    };
    run_steps(l, rest, N_ELEMS(rest), "months");
    ledger_free(l);
}

/* An upgrade from free releases every held workflow, oldest first, counted under the new tier;
 * team too. A downgrade back to free holds again once the count is at the quota. */
static void test_upgrade_releases(void **state)
{
    (void)state;
    static const char *const to[] = {"pro", "team"};
    for (size_t k = 0; k < N_ELEMS(to); k++) {
        ledger_t *l = ledger_new();
        assert_non_null(l);
        start_quiet(l, "acme", "c", 5, T0);
        for (int i = 0; i < 8; i++) {
            char wf[8];
            snprintf(wf, sizeof(wf), "h%d", i);
            ev_t e = WFS(T0 + 10 + i, "p1", wf);
            dec_t d = HELD("p1", wf, i + 1);
            apply_check(l, &e, 0, LEDGER_OK, &d, 1, wf);
        }
        /* at +100: h0 (+10) waited 90 ... h7 (+17) waited 83 */
        const step_t steps[] = {
            {SUB(T0 + 100, to[k]),
             {REL("p1", "h0", 90), REL("p1", "h1", 89), REL("p1", "h2", 88), REL("p1", "h3", 87),
              REL("p1", "h4", 86), REL("p1", "h5", 85), REL("p1", "h6", 84), REL("p1", "h7", 83)},
             ST(to[k], 0, 0, 0, 13, 0, 0)},
            {WFS(T0 + 101, "p1", "n1"), {{0}}, ST(to[k], 0, 0, 0, 14, 0, 0)},
            {UNSUB(T0 + 102), {{0}}, ST("free", 0, 0, 0, 14, 0, 0)},
            {WFS(T0 + 103, "p1", "n2"), {HELD("p1", "n2", 1)}, ST("free", 0, 0, 1, 14, 0, 0)},
            /* a pack of 10: quota 15 > 14, so n2 goes */
            {PACK(T0 + 104, 10), {REL("p1", "n2", 1)}, ST("free", 0, 0, 0, 15, 10, 0)},
        };
        run_steps(l, steps, N_ELEMS(steps), to[k]);
        sealed_t s;
        seal(l, 1, &s);
        const want_usage_t rows[] = {
            {"c0", "p1", "medium", "running", "free", T0, T0, -1, true, false},
            {"h0", "p1", "medium", "running", to[k], T0 + 10, T0 + 100, -1, true, false},
            {"h7", "p1", "medium", "running", to[k], T0 + 17, T0 + 100, -1, true, false},
            {"n1", "p1", "medium", "running", to[k], T0 + 101, T0 + 101, -1, true, false},
            {"n2", "p1", "medium", "running", "free", T0 + 103, T0 + 104, -1, true, false},
        };
        for (size_t i = 0; i < N_ELEMS(rows); i++)
            check_usage(&s, "acme", &rows[i]);
        assert_int_equal(s.nusage, 15);
        sealed_free(&s);
        ledger_free(l);
    }
}

/* Bill tiers: the workflow started at or over the quota in force at that instant is overage;
 * a pack raises the quota; a new period starts from zero. payg: every workflow. */
static void test_overage(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    assert_non_null(l);
    ev_t sub = SUBP(T0, "pro", T0, 0); /* period [T0, T0 + 1 month) */
    apply_quiet(l, &sub, "pro");
    start_quiet(l, "acme", "a", 100, T0 + HOUR); /* a0..a99: counted 0..99 before: in quota */
    static const step_t steps[] = {
        {WFS(T0 + 2 * HOUR, "p1", "o1"), {{0}}, ST("pro", 0, 0, 0, 101, 0, 0)}, /* 100: over */
        {PACK(T0 + 2 * HOUR + 1, 10), {{0}}, ST("pro", 0, 0, 0, 101, 10, 0)},
        {WFS(T0 + 2 * HOUR + 2, "p1", "i1"), {{0}}, ST("pro", 0, 0, 0, 102, 10, 0)}, /* 101<110 */
    };
    run_steps(l, steps, N_ELEMS(steps), "pro overage");
    start_quiet(l, "acme", "b", 8, T0 + 3 * HOUR); /* counted 102..109 before: in quota */
    static const step_t steps2[] = {
        {WFS(T0 + 4 * HOUR, "p1", "o2"), {{0}}, ST("pro", 0, 0, 0, 111, 10, 0)}, /* 110: over */
        /* the next period: count and packs reset */
        {WFS(FEB(10) + 9 * HOUR, "p1", "n1"),
         {{0}},
         STP("pro", 0, 0, 0, 1, 0, 0, FEB(10) + 9 * HOUR, MAR(10) + 9 * HOUR)},
        {SUB(FEB(11), "payg"), {{0}}, ST("payg", 0, 0, 0, 1, 0, 0)},
        {WFS(FEB(12), "p1", "g1"), {{0}}, ST("payg", 0, 0, 0, 2, 0, 0)},
        {SUB(FEB(13), "lifetime"), {{0}}, ST("lifetime", 0, 0, 0, 2, 0, 0)},
        {WFS(FEB(14), "p1", "l1"), {{0}}, ST("lifetime", 0, 0, 0, 3, 0, 0)},
        {SUB(FEB(15), "byo"), {{0}}, ST("byo", 0, 0, 0, 3, 0, 0)},
        {WFS(FEB(16), "p1", "y1"), {{0}}, ST("byo", 0, 0, 0, 4, 0, 0)},
    };
    run_steps(l, steps2, N_ELEMS(steps2), "pro overage 2");
    sealed_t s;
    seal(l, 1, &s);
    const want_usage_t rows[] = {
        {"a0", "p1", "medium", "running", "pro", T0 + HOUR, T0 + HOUR, -1, true, false},
        {"a99", "p1", "medium", "running", "pro", T0 + HOUR + 99, T0 + HOUR + 99, -1, true, false},
        {"o1", "p1", "medium", "running", "pro", T0 + 2 * HOUR, T0 + 2 * HOUR, -1, true, true},
        {"i1", "p1", "medium", "running", "pro", T0 + 2 * HOUR + 2, T0 + 2 * HOUR + 2, -1, true,
         false},
        {"b7", "p1", "medium", "running", "pro", T0 + 3 * HOUR + 7, T0 + 3 * HOUR + 7, -1, true,
         false},
        {"o2", "p1", "medium", "running", "pro", T0 + 4 * HOUR, T0 + 4 * HOUR, -1, true, true},
        {"n1", "p1", "medium", "running", "pro", FEB(10) + 9 * HOUR, FEB(10) + 9 * HOUR, -1, true,
         false},
        /* payg: quota 0, every workflow is beyond it */
        {"g1", "p1", "medium", "running", "payg", FEB(12), FEB(12), -1, true, true},
        /* lifetime: 2 counted < 50 */
        {"l1", "p1", "medium", "running", "lifetime", FEB(14), FEB(14), -1, true, false},
        {"y1", "p1", "medium", "running", "byo", FEB(16), FEB(16), -1, true, false},
    };
    for (size_t i = 0; i < N_ELEMS(rows); i++)
        check_usage(&s, "acme", &rows[i]);
    assert_int_equal(s.nusage, 100 + 2 + 8 + 5); /* a*, o1 i1, b*, o2 n1 g1 l1 y1 */
    sealed_free(&s);
    ledger_free(l);
}

/* ---- periods ----------------------------------------------------------------------------- */

/* Subscription periods: one month after the end, same day and time, clamped to the month. */
static void test_subscription_periods(void **state)
{
    (void)state;
    const int64_t J31 = 1769817600000LL + 10 * HOUR; /* 2026-01-31T10:00 */
    const int64_t F28 = 1772236800000LL + 10 * HOUR; /* 2026-02-28T10:00 */
    const int64_t M31 = 1774915200000LL + 10 * HOUR; /* 2026-03-31T10:00 */
    const step_t steps[] = {
        {SUBP(J31, "pro", J31, 0), {{0}}, STP("pro", 0, 0, 0, 0, 0, 0, J31, F28)},
        {WFS(J31 + 1, "p", "w1"), {{0}}, ST("pro", 0, 0, 0, 1, 0, 0)},
        {PACK(J31 + 2, 50), {{0}}, ST("pro", 0, 0, 0, 1, 50, 0)},
        {OTHER(F28 - 1, WIRE_T_BUDGET_SET), {{0}}, STP("pro", 0, 0, 0, 1, 50, 0, J31, F28)},
        /* periods fall on the start's anniversaries: Jan 31 + 2 months = Mar 31, not Feb 28 +
         * 1 month (a subscription begun on the 31st keeps renewing at the month's end) */
        {OTHER(F28, WIRE_T_BUDGET_SET), {{0}}, STP("pro", 0, 0, 0, 0, 0, 0, F28, M31)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "2026");
    ledger_free(l);

    /* 2028 is a leap year: Jan 31 + 1 month = Feb 29, + 2 months = Mar 31. */
    const int64_t J31_28 = 1832889600000LL, F29_28 = 1835395200000LL, M31_28 = 1838073600000LL;
    const step_t leap[] = {
        {SUBP(J31_28, "team", J31_28, 0), {{0}}, STP("team", 0, 0, 0, 0, 0, 0, J31_28, F29_28)},
        {OTHER(F29_28, WIRE_T_LLM_CALL), {{0}}, STP("team", 0, 0, 0, 0, 0, 0, F29_28, M31_28)},
    };
    l = ledger_new();
    assert_non_null(l);
    run_steps(l, leap, N_ELEMS(leap), "2028");
    ledger_free(l);
}

/* period_start / period_end of subscription.changed: a later start begins a new period; an
 * equal or earlier one only moves the end; an explicit period already over rolls at once;
 * cancelling to free makes the next period a calendar one. */
static void test_explicit_periods(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {WFS(JAN(3), "p", "w1"), {{0}}, STP("free", 0, 0, 0, 1, 0, 0, JAN1, FEB(1))},
        {SUBP(JAN(10), "pro", JAN(10), FEB(10)),
         {{0}},
         STP("pro", 0, 0, 0, 0, 0, 0, JAN(10), FEB(10))},
        {WFS(JAN(11), "p", "w2"), {{0}}, ST("pro", 0, 0, 0, 1, 0, 0)},
        /* the same start: only the end moves, the count stays */
        {SUBP(JAN(12), "team", JAN(10), FEB(20)),
         {{0}},
         STP("team", 0, 0, 0, 1, 0, 0, JAN(10), FEB(20))},
        /* an earlier start: the same */
        {SUBP(JAN(13), "team", JAN(5), FEB(15)),
         {{0}},
         STP("team", 0, 0, 0, 1, 0, 0, JAN(10), FEB(15))},
        /* a later start without an end: one month long */
        {SUBP(JAN(15), "pro", JAN(15), 0), {{0}}, STP("pro", 0, 0, 0, 0, 0, 0, JAN(15), FEB(15))},
        {WFS(JAN(16), "p", "w3"), {{0}}, ST("pro", 0, 0, 0, 1, 0, 0)},
        /* cancelled: free from now, the period keeps its end, the next one is calendar */
        {UNSUB(JAN(20)), {{0}}, STP("free", 0, 0, 0, 1, 0, 0, JAN(15), FEB(15))},
        {OTHER(FEB(15), WIRE_T_LLM_CALL), {{0}}, STP("free", 0, 0, 0, 0, 0, 0, FEB(15), MAR(1))},
        {OTHER(MAR(1), WIRE_T_LLM_CALL), {{0}}, STP("free", 0, 0, 0, 0, 0, 0, MAR(1), APR(1))},
        /* an explicit period that is already over at ts: [MAR(2), MAR(5)) ends before MAR(10),
         * so the next subscription period [MAR(5), APR(5)) follows at once */
        {SUBP(MAR(10), "pro", MAR(2), MAR(5)), {{0}}, STP("pro", 0, 0, 0, 0, 0, 0, MAR(5), APR(5))},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "explicit periods");
    ledger_free(l);
}

/* ---- refusals ---------------------------------------------------------------------------- */

static void test_unknown_tier_promo(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    assert_non_null(l);
    static const step_t setup_steps[] = {
        {REQ(T0, "p", "r1"), {ADM("p", "r1", 0)}, ST("free", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 1, "p", "r2"), {QUE("p", "r2", 1)}, ST("free", 1, 1, 0, 0, 0, 1)},
    };
    run_steps(l, setup_steps, N_ELEMS(setup_steps), "setup");
    start_quiet(l, "acme", "c", 5, T0 + 2);
    ev_t h = WFS(T0 + 100, "p", "h1");
    const dec_t held[] = {HELD("p", "h1", 1)};
    apply_check(l, &h, 0, LEDGER_OK, held, 1, "held");

    char before[1024], after[1024];
    assert_true(describe(l, "acme", before, sizeof(before)) > 0);
    static const struct {
        ev_t e;
        int rc;
    } bad[] = {
        {SUB(T0 + 200, "platinum"), LEDGER_E_UNKNOWN_TIER},
        {SUB(T0 + 201, "Pro"), LEDGER_E_UNKNOWN_TIER}, /* names are case-sensitive */
        {SUB(T0 + 202, "pro "), LEDGER_E_UNKNOWN_TIER},
        {SUB(T0 + 203, "new_year"), LEDGER_E_UNKNOWN_TIER}, /* a promo is not a tier */
        {SUBPR(T0 + 204, "platinum", "new_year"), LEDGER_E_UNKNOWN_TIER},
        {SUBPR(T0 + 205, "pro", "summer"), LEDGER_E_UNKNOWN_PROMO},
        {SUBPR(T0 + 206, "pro", "pro"), LEDGER_E_UNKNOWN_PROMO}, /* a tier is not a promo */
        /* refused events do not move the clock or the period either */
        {SUBP(MAR(5), "platinum", MAR(5), 0), LEDGER_E_UNKNOWN_TIER},
        {{.type = WIRE_T_SUBSCRIPTION_CHANGED,
          .ts = MAR(5),
          .tier = "pro",
          .promo = "summer",
          .ps = MAR(5)},
         LEDGER_E_UNKNOWN_PROMO},
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        char where[32];
        snprintf(where, sizeof(where), "refusal %zu", i);
        apply_check(l, &bad[i].e, bad[i].rc, LEDGER_OK, NULL, 0, where);
        assert_true(describe(l, "acme", after, sizeof(after)) > 0);
        if (strcmp(before, after) != 0)
            print_error("%s: before %s\n after %s\n", where, before, after);
        assert_string_equal(before, after);
        assert_int_equal(ledger_orgs(l), 1);
        assert_int_equal(ledger_running(l), 1);
        assert_int_equal(ledger_queued(l), 1);
        assert_int_equal(ledger_held(l), 1);
    }
    /* an organization never seen is not created by a refused event */
    ev_t ghost = SUB(T0, "platinum");
    ghost.org = "ghost";
    apply_check(l, &ghost, LEDGER_E_UNKNOWN_TIER, LEDGER_OK, NULL, 0, "ghost");
    ghost = (ev_t)SUBPR(T0, "pro", "summer");
    ghost.org = "ghost";
    apply_check(l, &ghost, LEDGER_E_UNKNOWN_PROMO, LEDGER_OK, NULL, 0, "ghost promo");
    assert_int_equal(describe(l, "ghost", after, sizeof(after)), -1);
    assert_int_equal(ledger_orgs(l), 1);

    /* still free in January: the next events behave as if the refusals never happened */
    static const step_t steps[] = {
        {REQ(T0 + 300, "p", "r3"), {QUE("p", "r3", 2)}, ST("free", 1, 2, 1, 5, 0, 1)},
        {WFS(T0 + 301, "p", "h2"), {HELD("p", "h2", 2)}, ST("free", 1, 2, 2, 5, 0, 1)},
        /* the valid one: admits r2, r3 (pro), releases h1, h2 */
        {SUBPR(T0 + 400, "pro", "new_year"),
         {ADM("p", "r2", 399), ADM("p", "r3", 100), REL("p", "h1", 300), REL("p", "h2", 99)},
         STP("pro", 3, 0, 0, 7, 0, 1, JAN1, FEB(1))},
    };
    run_steps(l, steps, N_ELEMS(steps), "after refusals");
    assert_true(describe(l, "acme", after, sizeof(after)) > 0);
    char promo[32];
    jstr(after, "promo", promo, sizeof(promo));
    assert_string_equal(promo, "new_year");
    ev_t cancel = UNSUB(T0 + 500);
    apply_quiet(l, &cancel, "cancel");
    assert_true(describe(l, "acme", after, sizeof(after)) > 0);
    jstr(after, "promo", promo, sizeof(promo));
    assert_string_equal(promo, "");
    jstr(after, "tier", promo, sizeof(promo));
    assert_string_equal(promo, "free");
    ledger_free(l);
}

/* ---- describe ---------------------------------------------------------------------------- */

static void test_describe(void **state)
{
    (void)state;
    ledger_t *l = ledger_new();
    assert_non_null(l);
    char buf[512];
    assert_int_equal(describe(l, "acme", buf, sizeof(buf)), -1);
    static const step_t steps[] = {
        {REQ(T0, "p", "r1"), {ADM("p", "r1", 0)}, ST("free", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 1, "p", "r2"), {QUE("p", "r2", 1)}, ST("free", 1, 1, 0, 0, 0, 1)},
        {PACK(T0 + 2, 10), {{0}}, ST("free", 1, 1, 0, 0, 10, 1)},
        {WFS(T0 + 3, "p", "w"), {{0}}, ST("free", 1, 1, 0, 1, 10, 1)},
    };
    run_steps(l, steps, N_ELEMS(steps), "describe");
    const char *want = "{\"org\":\"acme\",\"tier\":\"free\",\"promo\":\"\",\"period_start\":"
                       "1767225600000,\"period_end\":1769904000000,\"workflows_counted\":1,"
                       "\"packs\":10,\"running\":1,\"queued\":1,\"held\":0,\"projects\":1,"
                       "\"credits_micros\":0,\"budget_micros\":0,\"draft_subtotal_cents\":0,"
                       "\"draft_credits_cents\":0,\"draft_total_cents\":0}";
    int n = describe(l, "acme", buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    /* truncated: the length it needed, and a NUL-terminated prefix */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(describe(l, "acme", buf, 10), (int)strlen(want));
    assert_int_equal(strlen(buf), 9);
    assert_memory_equal(buf, want, 9);
    assert_int_equal(buf[10], 'x');
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(describe(l, "acme", buf, 0), (int)strlen(want));
    assert_int_equal(buf[0], 'x');
    assert_int_equal(describe(l, "acme", buf, strlen(want) + 1), (int)strlen(want));
    assert_string_equal(buf, want);
    /* the id is escaped; a prefix of a known id is unknown */
    ev_t e = OTHER(T0, WIRE_T_LLM_CALL);
    e.org = "a\"b\\c";
    apply_quiet(l, &e, "quoted org");
    n = describe(l, "a\"b\\c", buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "{\"org\":\"a\\\"b\\\\c\",\"tier\":\"free\""));
    assert_int_equal(ledger_describe(l, "acm", 3, buf, sizeof(buf)), -1);
    assert_int_equal(ledger_describe(l, "acmex", 4, buf, sizeof(buf)), (int)strlen(want));
    ledger_free(l);
}

/* ---- time is the events' ts -------------------------------------------------------------- */

/* Events are applied in partition order whatever their ts; a wait is the causing event's ts
 * minus the request's ts, never negative (ledger.h). */
static void test_clock_out_of_order(void **state)
{
    (void)state;
    static const step_t steps[] = {
        {REQ(T0 + 1000, "p", "r1"), {ADM("p", "r1", 0)}, ST("free", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 2000, "p", "r2"), {QUE("p", "r2", 1)}, ST("free", 1, 1, 0, 0, 0, 1)},
        {OTHER(T0 + 9000, WIRE_T_LLM_CALL), {{0}}, ST("free", 1, 1, 0, 0, 0, 1)},
        /* r1 ends with an older ts (4000) than the llm.call before it: r2 waited 4000 − 2000 */
        {FIN(T0 + 4000, "r1"), {ADM("p", "r2", 2000)}, ST("free", 1, 0, 0, 0, 0, 1)},
        {REQ(T0 + 20000, "p", "r3"), {QUE("p", "r3", 1)}, ST("free", 1, 1, 0, 0, 0, 1)},
        /* never negative: 10000 − 20000 counts as 0 */
        {FIN(T0 + 10000, "r2"), {ADM("p", "r3", 0)}, ST("free", 1, 0, 0, 0, 0, 1)},
    };
    ledger_t *l = ledger_new();
    assert_non_null(l);
    run_steps(l, steps, N_ELEMS(steps), "clock");
    ledger_free(l);

    /* A period once rolled stays rolled: a late January event counts in February. */
    static const step_t late[] = {
        {WFS(JAN(30), "p", "w1"), {{0}}, STP("free", 0, 0, 0, 1, 0, 0, JAN1, FEB(1))},
        {OTHER(FEB(2), WIRE_T_LLM_CALL), {{0}}, STP("free", 0, 0, 0, 0, 0, 0, FEB(1), MAR(1))},
        {WFS(JAN(31), "p", "w2"), {{0}}, STP("free", 0, 0, 0, 1, 0, 0, FEB(1), MAR(1))},
    };
    l = ledger_new();
    assert_non_null(l);
    run_steps(l, late, N_ELEMS(late), "late event");
    ledger_free(l);
}

/* ---- snapshots --------------------------------------------------------------------------- */

/* Restores every state row of s into l. */
static void restore_all(ledger_t *l, const sealed_t *s)
{
    for (size_t i = 0; i < s->nstate; i++) {
        int rc = ledger_restore(l, s->state[i].blob, s->state[i].len);
        if (rc != 0)
            print_error("restore of %s: %d\n", s->state[i].org, rc);
        assert_int_equal(rc, 0);
    }
}

static void assert_same_describe(const ledger_t *a, const ledger_t *b, const char *org,
                                 const char *where)
{
    char da[1024], db[1024];
    int na = describe(a, org, da, sizeof(da));
    int nb = describe(b, org, db, sizeof(db));
    if (na != nb || (na > 0 && strcmp(da, db) != 0))
        print_error("%s: %s\n  original %s\n  restored %s\n", where, org, na > 0 ? da : "-",
                    nb > 0 ? db : "-");
    assert_int_equal(na, nb);
    if (na > 0)
        assert_string_equal(da, db);
}

static void assert_same_bytes(const pgcopy_t *a, const pgcopy_t *b, const char *what)
{
    if (a->len != b->len || memcmp(a->p, b->p, a->len) != 0)
        print_error("%s rows differ (%zu vs %zu bytes)\n", what, a->len, b->len);
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->p, b->p, a->len);
}

/* The state before the snapshot: four organizations with running and queued runs in several
 * projects, held workflows, packs, a subscription period and a promotion. */
static const step_t SNAP_BEFORE[] = {
    /* acme (free): pA is created before pB; a1 then ends, so that the open runs in request
     * order (b1, a2, b2, a3) begin with pB while the projects were created pA first */
    {REQ(T0, "pA", "a1"), {ADM("pA", "a1", 0)}, ST("free", 1, 0, 0, 0, 0, 1)},
    {REQ(T0 + 1, "pB", "b1"), {ADM("pB", "b1", 0)}, ST("free", 2, 0, 0, 0, 0, 2)},
    {REQ(T0 + 2, "pA", "a2"), {QUE("pA", "a2", 1)}, ST("free", 2, 1, 0, 0, 0, 2)},
    {REQ(T0 + 3, "pB", "b2"), {QUE("pB", "b2", 1)}, ST("free", 2, 2, 0, 0, 0, 2)},
    {REQ(T0 + 4, "pA", "a3"), {QUE("pA", "a3", 2)}, ST("free", 2, 3, 0, 0, 0, 2)},
    {FIN(T0 + 5, "a1"), {ADM("pA", "a2", 3)}, ST("free", 2, 2, 0, 0, 0, 2)},
    {WFS(T0 + 6, "pA", "w1"), {{0}}, ST("free", 2, 2, 0, 1, 0, 2)},
    {WFS(T0 + 7, "pA", "w2"), {{0}}, ST("free", 2, 2, 0, 2, 0, 2)},
    {WFS(T0 + 8, "pA", "w3"), {{0}}, ST("free", 2, 2, 0, 3, 0, 2)},
    {WFS(T0 + 9, "pA", "w4"), {{0}}, ST("free", 2, 2, 0, 4, 0, 2)},
    {WFS(T0 + 10, "pA", "w5"), {{0}}, ST("free", 2, 2, 0, 5, 0, 2)},
    {WFS(T0 + 11, "pB", "w6"), {HELD("pB", "w6", 1)}, ST("free", 2, 2, 1, 5, 0, 2)},
    {WFS(T0 + 12, "pA", "w7"), {HELD("pA", "w7", 2)}, ST("free", 2, 2, 2, 5, 0, 2)},
    {WFS(T0 + 13, "pA", "w8"), {HELD("pA", "w8", 3)}, ST("free", 2, 2, 3, 5, 0, 2)},
    {WFF(T0 + 14, "w7", WIRE_STATUS_CANCELLED), {{0}}, ST("free", 2, 2, 2, 5, 0, 2)},
    /* beta (pro with a period and a promo): 5 running + 2 queued in p */
    {{.type = WIRE_T_SUBSCRIPTION_CHANGED,
      .ts = T0,
      .org = "beta",
      .tier = "pro",
      .promo = "new_year",
      .ps = T0,
      .pe = FEB(10) + 9 * HOUR},
     {{0}},
     STP("pro", 0, 0, 0, 0, 0, 0, T0, FEB(10) + 9 * HOUR)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 1, .org = "beta", .project = "p", .run = "x1"},
     {ADM("p", "x1", 0)},
     ST("pro", 1, 0, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 2, .org = "beta", .project = "p", .run = "x2"},
     {ADM("p", "x2", 0)},
     ST("pro", 2, 0, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 3, .org = "beta", .project = "p", .run = "x3"},
     {ADM("p", "x3", 0)},
     ST("pro", 3, 0, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 4, .org = "beta", .project = "p", .run = "x4"},
     {ADM("p", "x4", 0)},
     ST("pro", 4, 0, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED,
      .ts = T0 + 5,
      .org = "beta",
      .project = "p",
      .run = "x5",
      .workflow = "bw"},
     {ADM("p", "x5", 0)},
     ST("pro", 5, 0, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 6, .org = "beta", .project = "p", .run = "x6"},
     {QUE("p", "x6", 1)},
     ST("pro", 5, 1, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 7, .org = "beta", .project = "p", .run = "x7"},
     {QUE("p", "x7", 2)},
     ST("pro", 5, 2, 0, 0, 0, 1)},
    {{.type = WIRE_T_PACK_PURCHASED, .ts = T0 + 8, .org = "beta", .workflows = 50},
     {{0}},
     ST("pro", 5, 2, 0, 0, 50, 1)},
    {{.type = WIRE_T_WORKFLOW_STARTED,
      .ts = T0 + 9,
      .org = "beta",
      .project = "p",
      .workflow = "bw",
      .cx = WIRE_COMPLEXITY_LARGE},
     {{0}},
     ST("pro", 5, 2, 0, 1, 50, 1)},
    /* gamma: only an llm.call (an organization with nothing open) */
    {{.type = WIRE_T_LLM_CALL, .ts = T0, .org = "gamma"}, {{0}}, ST("free", 0, 0, 0, 0, 0, 0)},
    /* delta: payg, one running, one queued in each of two projects */
    {{.type = WIRE_T_SUBSCRIPTION_CHANGED, .ts = T0, .org = "delta", .tier = "payg"},
     {{0}},
     ST("payg", 0, 0, 0, 0, 0, 0)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 1, .org = "delta", .project = "q", .run = "d1"},
     {ADM("q", "d1", 0)},
     ST("payg", 1, 0, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 2, .org = "delta", .project = "q", .run = "d2"},
     {QUE("q", "d2", 1)},
     ST("payg", 1, 1, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 3, .org = "delta", .project = "r", .run = "d3"},
     {ADM("r", "d3", 0)},
     ST("payg", 2, 1, 0, 0, 0, 2)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 4, .org = "delta", .project = "r", .run = "d4"},
     {QUE("r", "d4", 1)},
     ST("payg", 2, 2, 0, 0, 0, 2)},
    {{.type = WIRE_T_WORKFLOW_STARTED,
      .ts = T0 + 5,
      .org = "delta",
      .project = "q",
      .workflow = "dw"},
     {{0}},
     ST("payg", 2, 2, 0, 1, 0, 2)},
};

/* The same events applied after the snapshot, to the original and to the restored ledger. */
static const step_t SNAP_AFTER[] = {
    /* acme upgrades: projects in creation order (pA, then pB), then the held ones (w6, w8) */
    {SUB(T0 + 100, "pro"),
     {ADM("pA", "a3", 96), ADM("pB", "b2", 97), REL("pB", "w6", 89), REL("pA", "w8", 87)},
     ST("pro", 4, 0, 0, 7, 0, 2)},
    {REQ(T0 + 101, "pB", "b3"), {ADM("pB", "b3", 0)}, ST("pro", 5, 0, 0, 7, 0, 2)},
    {WFF(T0 + 102, "w1", WIRE_STATUS_SUCCEEDED), {{0}}, ST("pro", 5, 0, 0, 7, 0, 2)},
    {{.type = WIRE_T_AGENT_FINISHED, .ts = T0 + 100, .org = "beta", .run = "x3"},
     {ADM("p", "x6", 94)},
     ST("pro", 5, 1, 0, 1, 50, 1)},
    {{.type = WIRE_T_AGENT_CANCELLED, .ts = T0 + 101, .org = "beta", .run = "x7"},
     {{0}},
     ST("pro", 5, 0, 0, 1, 50, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 102, .org = "beta", .project = "p", .run = "x8"},
     {QUE("p", "x8", 1)},
     ST("pro", 5, 1, 0, 1, 50, 1)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0 + 103, .org = "beta", .project = "p", .run = "x1"},
     {{0}},
     ST("pro", 5, 1, 0, 1, 50, 1),
     LEDGER_NOOP_KNOWN_RUN},
    {{.type = WIRE_T_WORKFLOW_FINISHED,
      .ts = T0 + 104,
      .org = "beta",
      .workflow = "bw",
      .status = WIRE_STATUS_FAILED},
     {{0}},
     ST("pro", 5, 1, 0, 1, 50, 1)},
    /* beta's explicit period ends at FEB(10) 09:00; the next one is a month later */
    {{.type = WIRE_T_LLM_CALL, .ts = FEB(10) + 9 * HOUR, .org = "beta"},
     {{0}},
     STP("pro", 5, 1, 0, 0, 0, 1, FEB(10) + 9 * HOUR, MAR(10) + 9 * HOUR)},
    {{.type = WIRE_T_SUBSCRIPTION_CANCELLED, .ts = FEB(11), .org = "beta"},
     {{0}},
     ST("free", 5, 1, 0, 0, 0, 1)},
    {{.type = WIRE_T_AGENT_FINISHED, .ts = FEB(12), .org = "delta", .run = "d1"},
     {ADM("q", "d2", FEB(12) - T0 - 2)},
     ST("payg", 2, 1, 0, 0, 0, 2)}, /* February: count 0 */
    {{.type = WIRE_T_SUBSCRIPTION_CHANGED, .ts = FEB(13), .org = "delta", .tier = "team"},
     {ADM("r", "d4", FEB(13) - T0 - 4)},
     ST("team", 3, 0, 0, 0, 0, 2)},
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = FEB(14), .org = "gamma", .project = "g", .run = "g1"},
     {ADM("g", "g1", 0)},
     ST("free", 1, 0, 0, 0, 0, 1)},
    /* a new organization after the restore */
    {{.type = WIRE_T_AGENT_REQUESTED, .ts = FEB(14), .org = "eps", .project = "g", .run = "g1"},
     {ADM("g", "g1", 0)},
     ST("free", 1, 0, 0, 0, 0, 1)},
};

static void test_snapshot_replay(void **state)
{
    (void)state;
    ledger_t *a = ledger_new();
    assert_non_null(a);
    run_steps(a, SNAP_BEFORE, N_ELEMS(SNAP_BEFORE), "before snapshot");
    sealed_t s;
    seal(a, 5, &s);
    assert_int_equal(s.nstate, 4);
    static const char *const orgs[] = {"acme", "beta", "gamma", "delta", "eps"};
    for (size_t i = 0; i < s.nstate; i++)
        assert_int_equal(s.state[i].checkpoint, 5);
    for (size_t k = 0; k < 4; k++) {
        size_t found = 0;
        for (size_t i = 0; i < s.nstate; i++)
            found += strcmp(s.state[i].org, orgs[k]) == 0;
        assert_int_equal(found, 1);
    }
    ledger_t *b = ledger_new();
    assert_non_null(b);
    restore_all(b, &s);
    sealed_free(&s);
    assert_int_equal(ledger_orgs(b), 4);
    assert_int_equal(ledger_running(b), ledger_running(a));
    assert_int_equal(ledger_queued(b), ledger_queued(a));
    assert_int_equal(ledger_held(b), ledger_held(a));
    assert_int_equal(ledger_running(b), 2 + 5 + 2);
    assert_int_equal(ledger_queued(b), 2 + 2 + 2);
    assert_int_equal(ledger_held(b), 2);
    for (size_t k = 0; k < N_ELEMS(orgs); k++)
        assert_same_describe(a, b, orgs[k], "restored");
    /* a restored organization is not dirty: nothing to seal */
    seal(b, 6, &s);
    assert_int_equal(s.nstate + s.nusage + s.nruns, 0);
    sealed_free(&s);

    const char *torgs[MAX_ORGS];
    size_t ntorgs = table_orgs(SNAP_AFTER, N_ELEMS(SNAP_AFTER), torgs);
    for (size_t i = 0; i < N_ELEMS(SNAP_AFTER); i++) {
        run_step(a, &SNAP_AFTER[i], "original", i, torgs, ntorgs);
        run_step(b, &SNAP_AFTER[i], "restored", i, torgs, ntorgs);
        for (size_t k = 0; k < N_ELEMS(orgs); k++)
            assert_same_describe(a, b, orgs[k], "after");
    }
    /* The same changes seal to the same bytes: snapshots, usage rows and run rows. */
    sealed_t sa, sb;
    seal(a, 7, &sa);
    seal(b, 7, &sb);
    assert_int_equal(sa.nstate, 5);
    assert_same_bytes(&sa.raw[BATCH_STATE], &sb.raw[BATCH_STATE], "state");
    assert_same_bytes(&sa.raw[BATCH_USAGE], &sb.raw[BATCH_USAGE], "usage");
    assert_same_bytes(&sa.raw[BATCH_RUNS], &sb.raw[BATCH_RUNS], "runs");
    const want_usage_t w1 = {"w1",   "pA",   "medium", "succeeded", "free",
                             T0 + 6, T0 + 6, T0 + 102, true,        false};
    check_usage(&sa, "acme", &w1);
    const want_usage_t bw = {"bw",   "p",    "large",  "failed", "pro",
                             T0 + 9, T0 + 9, T0 + 104, true,     false};
    check_usage(&sa, "beta", &bw);
    const want_run_t x3 = {"x3", "p", "", "finished", T0 + 3, T0 + 3, T0 + 100, 0, 97};
    check_run(&sa, "beta", &x3);
    sealed_free(&sa);
    sealed_free(&sb);
    ledger_free(a);
    ledger_free(b);
}

/* Snapshot edits (ledger.c, pack_org): [0 version, 1 org, 2 tier, 3 promo, 4 promo_start,
 * 5 period kind, 6 period_start, 7 period_end, 8 counted, 9 packs, 10 spans, 11 runs
 * [id, project, workflow, state, requested_at, admitted_at], 12 projects [id, [queued ids]],
 * 13 workflows [id, project, complexity, state, tier, requested_at, started_at, billed,
 * overage], 14 held ids, 15 reserved]. */
typedef enum {
    M_VERSION_NEXT,
    M_VERSION_0,
    M_NOT_ARRAY,
    M_SHORT_ARRAY,
    M_EMPTY_ORG,
    M_PERIOD_INVERTED,
    M_PERIOD_KIND,
    M_QUEUE_MISSING, /* a queued run on no queue */
    M_HELD_MISSING,  /* a held workflow not on the hold queue */
    M_QUEUE_TWICE,   /* a queued run listed twice */
    M_QUEUE_UNKNOWN, /* a queue names a run that does not exist */
    M_QUEUE_RUNNING, /* a queue names a running run */
    M_QUEUE_OTHER,   /* a queue names a run of another project */
    M_RUN_FINISHED,  /* a run in an ended state */
    M_RUN_DUPLICATE, /* the same run twice */
    M_RUN_BAD_FIELD, /* requested_at is a string */
    M_IDLE_PROJECT,  /* a project with nothing running or queued */
    M_HELD_RUNNING,  /* the hold queue names a running workflow */
    M_WF_COMPLEXITY, /* complexity 7 */
    M_TIER_TOO_LONG, /* a tier name over TIERS_NAME_MAX */
    M_COUNT
} mutation_t;

static msgpack_object *items(msgpack_object *o)
{
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    return o->via.array.ptr;
}

static void set_int(msgpack_object *o, int64_t v)
{
    o->type = v < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER : MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (v < 0)
        o->via.i64 = v;
    else
        o->via.u64 = (uint64_t)v;
}

/* The index of the first run of state st (0 queued, 1 running) in root's run list. */
static uint32_t run_with_state(msgpack_object *root, int64_t st)
{
    msgpack_object *runs = &items(root)[11];
    for (uint32_t i = 0; i < runs->via.array.size; i++)
        if ((int64_t)items(&runs->via.array.ptr[i])[3].via.u64 == st)
            return i;
    fail_msg("no run in state %lld", (long long)st);
    return 0;
}

/* Appends a copy of item to array o (memory from zone). */
static void push(msgpack_zone *zone, msgpack_object *o, const msgpack_object *item)
{
    uint32_t n = o->via.array.size;
    msgpack_object *p = msgpack_zone_malloc(zone, (n + 1) * sizeof(*p));
    assert_non_null(p);
    memcpy(p, o->via.array.ptr, n * sizeof(*p));
    p[n] = *item;
    o->via.array.ptr = p;
    o->via.array.size = n + 1;
}

static void mutate(const uint8_t *blob, size_t len, mutation_t m, msgpack_sbuffer *out)
{
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 4096));
    msgpack_object root;
    size_t off = 0;
    assert_int_equal(msgpack_unpack((const char *)blob, len, &off, &zone, &root),
                     MSGPACK_UNPACK_SUCCESS);
    msgpack_object *f = items(&root);
    assert_int_equal(root.via.array.size, 17);
    msgpack_object *projects = &f[12];
    switch (m) {
    case M_VERSION_NEXT:
        set_int(&f[0], 3); /* a version this build does not know */
        break;
    case M_VERSION_0:
        set_int(&f[0], 0);
        break;
    case M_NOT_ARRAY:
        root = f[1]; /* just the org id */
        break;
    case M_SHORT_ARRAY:
        root.via.array.size = 10;
        break;
    case M_EMPTY_ORG:
        f[1].via.str.size = 0;
        break;
    case M_PERIOD_INVERTED:
        f[7] = f[6];
        break;
    case M_PERIOD_KIND:
        set_int(&f[5], 5);
        break;
    case M_QUEUE_MISSING:
        for (uint32_t i = 0; i < projects->via.array.size; i++)
            items(&projects->via.array.ptr[i])[1].via.array.size = 0;
        break;
    case M_HELD_MISSING:
        f[14].via.array.size = 0;
        break;
    case M_QUEUE_TWICE: {
        msgpack_object *q = &items(&projects->via.array.ptr[0])[1];
        assert_true(q->via.array.size > 0);
        push(&zone, q, &q->via.array.ptr[0]);
        break;
    }
    case M_QUEUE_UNKNOWN: {
        msgpack_object *q = &items(&projects->via.array.ptr[0])[1];
        msgpack_object ghost = {.type = MSGPACK_OBJECT_STR, .via.str = {5, "ghost"}};
        push(&zone, q, &ghost);
        break;
    }
    case M_QUEUE_RUNNING: {
        msgpack_object *q = &items(&projects->via.array.ptr[0])[1];
        msgpack_object *run = &items(&f[11])[run_with_state(&root, 1)];
        push(&zone, q, &items(run)[0]);
        break;
    }
    case M_QUEUE_OTHER: {
        /* move the queue of the first project to the second */
        assert_true(projects->via.array.size >= 2);
        msgpack_object *q0 = &items(&projects->via.array.ptr[0])[1];
        msgpack_object *q1 = &items(&projects->via.array.ptr[1])[1];
        for (uint32_t i = 0; i < q0->via.array.size; i++)
            push(&zone, q1, &q0->via.array.ptr[i]);
        q0->via.array.size = 0;
        break;
    }
    case M_RUN_FINISHED:
        set_int(&items(&items(&f[11])[run_with_state(&root, 1)])[3], 2);
        break;
    case M_RUN_DUPLICATE:
        push(&zone, &f[11], &items(&f[11])[f[11].via.array.size - 1]);
        break;
    case M_RUN_BAD_FIELD:
        items(&items(&f[11])[f[11].via.array.size - 1])[4] = f[1];
        break;
    case M_IDLE_PROJECT: {
        msgpack_object *pair = msgpack_zone_malloc(&zone, 2 * sizeof(*pair));
        assert_non_null(pair);
        pair[0] = (msgpack_object){.type = MSGPACK_OBJECT_STR, .via.str = {4, "idle"}};
        pair[1] = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = {0, NULL}};
        msgpack_object proj = {.type = MSGPACK_OBJECT_ARRAY, .via.array = {2, pair}};
        push(&zone, projects, &proj);
        break;
    }
    case M_HELD_RUNNING: {
        msgpack_object *wfs = &f[13];
        for (uint32_t i = 0; i < wfs->via.array.size; i++) {
            msgpack_object *w = items(&wfs->via.array.ptr[i]);
            if (w[3].via.u64 == 1) { /* running */
                push(&zone, &f[14], &w[0]);
                break;
            }
        }
        break;
    }
    case M_WF_COMPLEXITY:
        set_int(&items(&items(&f[13])[0])[2], 7);
        break;
    case M_TIER_TOO_LONG:
        f[2] = (msgpack_object){.type = MSGPACK_OBJECT_STR,
                                .via.str = {40, "a-tier-name-that-is-longer-than-32-bytes"}};
        break;
    default:
        fail();
    }
    msgpack_sbuffer_init(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    assert_int_equal(msgpack_pack_object(&pk, root), 0);
    msgpack_zone_destroy(&zone);
}

typedef struct {
    size_t orgs, running, queued, held;
    char keep[1024];
} fingerprint_t;

static void fingerprint(const ledger_t *l, fingerprint_t *fp)
{
    fp->orgs = ledger_orgs(l);
    fp->running = ledger_running(l);
    fp->queued = ledger_queued(l);
    fp->held = ledger_held(l);
    assert_true(describe(l, "keep", fp->keep, sizeof(fp->keep)) > 0);
}

static void assert_unchanged(const ledger_t *l, const fingerprint_t *fp, const char *where)
{
    fingerprint_t now;
    fingerprint(l, &now);
    char buf[64];
    bool ok = now.orgs == fp->orgs && now.running == fp->running && now.queued == fp->queued &&
              now.held == fp->held && strcmp(now.keep, fp->keep) == 0 &&
              describe(l, "acme", buf, sizeof(buf)) == -1;
    if (!ok)
        print_error("%s: the ledger changed: orgs %zu→%zu running %zu→%zu queued %zu→%zu held "
                    "%zu→%zu\n",
                    where, fp->orgs, now.orgs, fp->running, now.running, fp->queued, now.queued,
                    fp->held, now.held);
    assert_true(ok);
}

/* A ledger with an organization "keep" (1 running, 1 queued, 1 held) that a failed restore
 * must leave as it was, and the snapshot of "acme" from SNAP_BEFORE. */
static ledger_t *target_ledger(void)
{
    ledger_t *t = ledger_new();
    assert_non_null(t);
    static const step_t keep[] = {
        {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0, .org = "keep", .project = "k", .run = "k1"},
         {ADM("k", "k1", 0)},
         ST("free", 1, 0, 0, 0, 0, 1)},
        {{.type = WIRE_T_AGENT_REQUESTED, .ts = T0, .org = "keep", .project = "k", .run = "k2"},
         {QUE("k", "k2", 1)},
         ST("free", 1, 1, 0, 0, 0, 1)},
    };
    run_steps(t, keep, N_ELEMS(keep), "keep");
    start_quiet(t, "keep", "c", 5, T0);
    ev_t h = WFS(T0 + 10 * SEC, "k", "kh");
    h.org = "keep";
    const dec_t d[] = {HELD("k", "kh", 1)};
    apply_check(t, &h, 0, LEDGER_OK, d, 1, "keep held");
    return t;
}

static void acme_blob(sealed_t *s, const state_row_t **row)
{
    ledger_t *a = ledger_new();
    assert_non_null(a);
    /* acme's steps only (the first 15 of SNAP_BEFORE) */
    run_steps(a, SNAP_BEFORE, 15, "acme");
    seal(a, 9, s);
    ledger_free(a);
    assert_int_equal(s->nstate, 1);
    *row = &s->state[0];
}

/* Every truncation of a real snapshot is refused, and the ledger stays as it was. */
static void test_restore_truncated(void **state)
{
    (void)state;
    sealed_t s;
    const state_row_t *row;
    acme_blob(&s, &row);
    ledger_t *t = target_ledger();
    fingerprint_t fp;
    fingerprint(t, &fp);
    for (size_t n = 0; n < row->len; n++) {
        char where[48];
        snprintf(where, sizeof(where), "truncated to %zu", n);
        int rc = ledger_restore(t, row->blob, n);
        if (rc != -1)
            print_error("%s: %d\n", where, rc);
        assert_int_equal(rc, -1);
        assert_unchanged(t, &fp, where);
    }
    /* one byte too many */
    uint8_t *longer = malloc(row->len + 1);
    assert_non_null(longer);
    memcpy(longer, row->blob, row->len);
    longer[row->len] = 0xc0;
    assert_int_equal(ledger_restore(t, longer, row->len + 1), -1);
    assert_unchanged(t, &fp, "trailing byte");
    free(longer);
    sealed_free(&s);
    ledger_free(t);
}

/* Garbage: msgpack values of the wrong shape. */
static void test_restore_garbage(void **state)
{
    (void)state;
    ledger_t *t = target_ledger();
    fingerprint_t fp;
    fingerprint(t, &fp);
    static const struct {
        const char *bytes;
        size_t len;
    } fixed[] = {
        {"\x90", 1}, /* an empty array */
        {"\x80", 1}, /* an empty map */
        {"\xa4"
         "acme",
         5},                 /* a string */
        {"\xc0", 1},         /* nil */
        {"\x01", 1},         /* the version alone */
        {"\xdc\x00\x10", 3}, /* an array of 16, truncated */
        {"\xdc\x00\x10\x01\xa4"
         "acme",
         8}, /* its first two fields only */
        {"garbage!", 8},
    };
    for (size_t i = 0; i < N_ELEMS(fixed); i++) {
        assert_int_equal(ledger_restore(t, (const uint8_t *)fixed[i].bytes, fixed[i].len), -1);
        assert_unchanged(t, &fp, "fixed bytes");
    }
    ledger_free(t);
}

/* Declared lengths beyond the blob: a forged array count (2^32 - 1 elements in 5 bytes) and
 * random bytes (a fixed sequence) after a snapshot-like header. The blob is malformed, so -1,
 * without trying to allocate what the header claims (wire.c pre-scans its input for exactly
 * this reason). Last in the list: an allocator that aborts would stop the executable. */
static void test_restore_forged_lengths(void **state)
{
    (void)state;
    ledger_t *t = target_ledger();
    fingerprint_t fp;
    fingerprint(t, &fp);
    static const struct {
        const char *bytes;
        size_t len;
    } forged[] = {
        {"\xdd\xff\xff\xff\xff", 5}, /* array32 of 4294967295 */
        {"\xdc\x00\x10\x01\xa4"
         "acme\xdd\xff\xff\xff\xff",
         13},                        /* ... as the 3rd field */
        {"\xdf\xff\xff\xff\xff", 5}, /* map32 of 4294967295 pairs */
    };
    for (size_t i = 0; i < N_ELEMS(forged); i++) {
        assert_int_equal(ledger_restore(t, (const uint8_t *)forged[i].bytes, forged[i].len), -1);
        assert_unchanged(t, &fp, "forged length");
    }
    uint8_t junk[256];
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            junk[i] = (uint8_t)((x * 0x2545F4914F6CDD1DULL) >> 56);
        }
        junk[0] = 0xdc; /* an array of 16 ... then junk */
        junk[1] = 0;
        junk[2] = 16;
        size_t n = 1 + (size_t)(x % sizeof(junk));
        assert_int_equal(ledger_restore(t, junk, n), -1);
        assert_unchanged(t, &fp, "random bytes");
    }
    ledger_free(t);
}

static const char *const MUTATION_NAMES[M_COUNT] = {
    "version 3",     "version 0",       "not an array",   "short array",
    "empty org",     "inverted period", "period kind",    "queued run on no queue",
    "held not held", "queued twice",    "unknown queued", "running queued",
    "other project", "finished run",    "duplicate run",  "bad requested_at",
    "idle project",  "held running",    "complexity 7",   "tier too long",
};

/* One edit of a real snapshot (*state: the mutation_t): refused, the ledger unchanged, and the
 * untouched snapshot still restores afterwards. */
static void test_restore_mutation(void **state)
{
    mutation_t m = *(const mutation_t *)*state;
    sealed_t s;
    const state_row_t *row;
    acme_blob(&s, &row);
    ledger_t *t = target_ledger();
    fingerprint_t fp;
    fingerprint(t, &fp);
    msgpack_sbuffer sb;
    mutate(row->blob, row->len, m, &sb);
    int rc = ledger_restore(t, (const uint8_t *)sb.data, sb.size);
    if (rc != -1)
        print_error("%s: accepted\n", MUTATION_NAMES[m]);
    assert_int_equal(rc, -1);
    assert_unchanged(t, &fp, MUTATION_NAMES[m]);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(ledger_restore(t, row->blob, row->len), 0);
    assert_int_equal(ledger_orgs(t), fp.orgs + 1);
    assert_int_equal(ledger_running(t), fp.running + 2);
    assert_int_equal(ledger_queued(t), fp.queued + 2);
    assert_int_equal(ledger_held(t), fp.held + 2);
    sealed_free(&s);
    ledger_free(t);
}

/* The real snapshot restores, and a second restore of the same organization is refused. */
static void test_restore_twice(void **state)
{
    (void)state;
    sealed_t s;
    const state_row_t *row;
    acme_blob(&s, &row);
    ledger_t *t = target_ledger();
    fingerprint_t fp;
    fingerprint(t, &fp);
    assert_int_equal(ledger_restore(t, row->blob, row->len), 0);
    assert_int_equal(ledger_orgs(t), fp.orgs + 1);
    assert_int_equal(ledger_running(t), fp.running + 2);
    assert_int_equal(ledger_queued(t), fp.queued + 2);
    assert_int_equal(ledger_held(t), fp.held + 2);
    char before[1024], after[1024];
    assert_true(describe(t, "acme", before, sizeof(before)) > 0);
    assert_int_equal(ledger_restore(t, row->blob, row->len), -1);
    assert_true(describe(t, "acme", after, sizeof(after)) > 0);
    assert_string_equal(before, after);
    assert_int_equal(ledger_orgs(t), fp.orgs + 1);
    assert_int_equal(ledger_running(t), fp.running + 2);
    assert_int_equal(ledger_queued(t), fp.queued + 2);
    assert_int_equal(ledger_held(t), fp.held + 2);
    sealed_free(&s);
    ledger_free(t);
}

static const mutation_t MUTATIONS[M_COUNT] = {
    M_VERSION_NEXT,    M_VERSION_0,     M_NOT_ARRAY,     M_SHORT_ARRAY,   M_EMPTY_ORG,
    M_PERIOD_INVERTED, M_PERIOD_KIND,   M_QUEUE_MISSING, M_HELD_MISSING,  M_QUEUE_TWICE,
    M_QUEUE_UNKNOWN,   M_QUEUE_RUNNING, M_QUEUE_OTHER,   M_RUN_FINISHED,  M_RUN_DUPLICATE,
    M_RUN_BAD_FIELD,   M_IDLE_PROJECT,  M_HELD_RUNNING,  M_WF_COMPLEXITY, M_TIER_TOO_LONG,
};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_month_start),
        cmocka_unit_test(test_add_months),
        cmocka_unit_test(test_every_tier),
        cmocka_unit_test(test_free_agents),
        cmocka_unit_test(test_pro_agents),
        cmocka_unit_test(test_orgs_independent),
        cmocka_unit_test(test_downgrade_team_to_pro),
        cmocka_unit_test(test_upgrade_across_projects),
        cmocka_unit_test(test_enterprise_payg_agents),
        cmocka_unit_test(test_free_holds_and_packs),
        cmocka_unit_test(test_held_finished_rows),
        cmocka_unit_test(test_free_month_release),
        cmocka_unit_test(test_upgrade_releases),
        cmocka_unit_test(test_overage),
        cmocka_unit_test(test_subscription_periods),
        cmocka_unit_test(test_explicit_periods),
        cmocka_unit_test(test_unknown_tier_promo),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_clock_out_of_order),
        cmocka_unit_test(test_snapshot_replay),
        cmocka_unit_test(test_restore_truncated),
        cmocka_unit_test(test_restore_garbage),
/* one test per snapshot edit, named after it */
#define MUT(m_, name_)                                                                             \
    {"test_restore_mutation: " name_, test_restore_mutation, NULL, NULL, (void *)&MUTATIONS[m_]}
        MUT(M_VERSION_NEXT, "version 3"),
        MUT(M_VERSION_0, "version 0"),
        MUT(M_NOT_ARRAY, "not an array"),
        MUT(M_SHORT_ARRAY, "short array"),
        MUT(M_EMPTY_ORG, "empty org"),
        MUT(M_PERIOD_INVERTED, "inverted period"),
        MUT(M_PERIOD_KIND, "period kind"),
        MUT(M_QUEUE_MISSING, "queued run on no queue"),
        MUT(M_HELD_MISSING, "held workflow not on the hold queue"),
        MUT(M_QUEUE_TWICE, "queued run listed twice"),
        MUT(M_QUEUE_UNKNOWN, "queue names an unknown run"),
        MUT(M_QUEUE_RUNNING, "queue names a running run"),
        MUT(M_QUEUE_OTHER, "queue names another project's run"),
        MUT(M_RUN_FINISHED, "run in an ended state"),
        MUT(M_RUN_DUPLICATE, "duplicate run"),
        MUT(M_RUN_BAD_FIELD, "requested_at not an integer"),
        MUT(M_IDLE_PROJECT, "idle project"),
        MUT(M_HELD_RUNNING, "hold queue names a running workflow"),
        MUT(M_WF_COMPLEXITY, "complexity 7"),
        MUT(M_TIER_TOO_LONG, "tier name too long"),
#undef MUT
        cmocka_unit_test(test_restore_twice),
        cmocka_unit_test(test_restore_forged_lengths), /* last: see its comment */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
