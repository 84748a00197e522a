/*
 * test_ledger_prop — a seeded property test of the admission ledger (daemon/ledger.c).
 *
 * A generator drives N_ORGS organizations with N_EVENTS events over about three months (each
 * organization's ts advances by random gaps; a tenth of them are busy): tier changes through
 * subscription.changed (some with a period, a promotion, an unknown tier or promotion) and
 * subscription.cancelled, packs, agent requests / finishes / cancels on 1-3 projects, workflows
 * started and finished, repeated and reused run and workflow ids, events for runs and
 * workflows that are not open, and events without admission effect.
 *
 * The test keeps its own book of every organization, built only from the events it sends and
 * the decisions the ledger emits — never from the ledger's internals — with its own tier table
 * (deploy/tiers.ini by hand, checked against the parsed file) and its own calendar (libc's
 * timegm / gmtime_r). Every decision is checked when it is emitted, and invariants after each
 * event:
 *   - an admission happens only while its project runs fewer agents than the tier allows at
 *     that instant (so a downgrade never admits until running is below the new limit), and
 *     takes the head of its project's queue (FIFO) or the run just requested; a run is
 *     admitted at most once and only when requested and still open;
 *   - no starvation: after each event every project's queue is empty or its running count is
 *     at the limit;
 *   - a held workflow is released at most once, oldest first, only while the quota allows;
 *     after each event a hold tier's queue is empty or the period's count is at the quota
 *     (5 + packs), and a bill or unlimited tier holds nothing;
 *   - queue positions, hold positions and waits are the book's; notes (known / unknown run or
 *     workflow) and refusals (unknown tier / promotion) are the expected ones; describe's
 *     counters, tier and period agree with the book;
 *   - every CHECKPOINT events ledger A is sealed: each usage_records and agent_runs row must
 *     match the book's record of that workflow or run, one row per record changed since the
 *     previous seal.
 * Replay exactness: at each checkpoint ledger B is rebuilt from A's latest snapshot of every
 * organization and from then on must emit exactly A's decisions (order included) and describe
 * identically. Seal timing: ledger C is sealed at random points and D never; both must emit
 * exactly A's decisions. A divergence of B, C or D is recorded (the first ones are printed)
 * and the test fails at the end, so that the checks on A go on.
 *
 * Prints seed=N; METERD_TEST_SEED=N replays a run (testrng.h).
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

#include "ledger.h"
#include "testcopy.h"
#include "testtiers.h"
#include "pgcopy.h"
#include "testrng.h"
#include "tiers.h"
#include "wire.h"

#define N_ORGS     1200
#define N_HEAVY    (N_ORGS / 10)
#define N_EVENTS   120000
#define CHECKPOINT 10000
#define DAY        86400000LL
#define BASE_TS    1767225600000LL /* 2026-01-01T00:00:00Z */
#define SPAN_MS    (92 * DAY)
#define ID_MAX     24
#define MAX_PROJ   3

static tiers_t *tiers;

/* The shipped tier table, by hand (deploy/tiers.ini); -1 is unlimited. */
static const struct {
    const char *name;
    int64_t agents, workflows;
    bool hold, calendar;
} TIERS[] = {
    {"free", 1, 5, true, true},       {"pro", 5, 100, false, false},
    {"team", 10, 500, false, false},  {"enterprise", -1, -1, false, false},
    {"lifetime", 5, 50, false, true}, {"byo", 5, -1, false, false},
    {"payg", 1, 0, false, true},
};
#define N_TIERS ((int)(sizeof(TIERS) / sizeof(TIERS[0])))
#define FREE    0

static uint64_t rnd(uint64_t n)
{
    return rng_next() % n;
}

static bool chance(double p)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0 < p;
}

/* ---- calendar (libc, independent of daemon/calendar.c) ------------------------------------ */

static int64_t cal_month_start(int64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    assert_non_null(gmtime_r(&sec, &tm));
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm) * 1000;
}

static int64_t cal_add_months(int64_t ms, int n)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    assert_non_null(gmtime_r(&sec, &tm));
    int idx = tm.tm_year * 12 + tm.tm_mon + n;
    struct tm a = {.tm_year = idx / 12, .tm_mon = idx % 12, .tm_mday = 1};
    struct tm b = {.tm_year = idx / 12, .tm_mon = idx % 12 + 1, .tm_mday = 1};
    int dim = (int)((timegm(&b) - timegm(&a)) / 86400);
    struct tm o = tm;
    o.tm_year = idx / 12;
    o.tm_mon = idx % 12;
    o.tm_mday = tm.tm_mday < dim ? tm.tm_mday : dim;
    return (int64_t)timegm(&o) * 1000 + ms % 1000;
}

/* ---- the book ---------------------------------------------------------------------------- */

static const char *const RUN_STATUS[] = {"queued", "running", "finished", "cancelled"};
static const char *const WF_STATUS[] = {"held", "running", "succeeded", "failed", "cancelled"};
static const char *const CX[] = {"small", "medium", "large"};

/* What the last row of a run or workflow must say. */
typedef struct {
    int org;
    char id[ID_MAX], project[ID_MAX], workflow[ID_MAX];
    int status;
    int64_t req, adm, fin;
    bool dirty, matched;
} runrec_t;

typedef struct {
    int org;
    char id[ID_MAX], project[ID_MAX];
    int cx, status;
    const char *tier;
    int64_t req, started, fin;
    bool billed, overage, dirty, matched;
} wfrec_t;

typedef struct {
    char id[ID_MAX];
    int proj;
    bool running; /* else queued */
    int64_t req;
    size_t rec;
} mrun_t;

typedef struct {
    char id[ID_MAX];
    int proj;
    bool held; /* else counted and running */
    int64_t req;
    size_t rec;
} mwf_t;

#define N_ENDED 8
typedef struct {
    char name[16];
    bool seen;
    int tier;
    bool calendar;
    int64_t anchor; /* subscription periods start on its anniversaries; -1 none */
    int64_t ps, pe, counted, packs;
    int nproj;
    int running[MAX_PROJ];
    mrun_t *runs; /* open runs in request order: a project's queue is its queued ones in order */
    size_t nruns, caprun;
    mwf_t *wfs; /* open workflows in start order: the hold queue is the held ones in order */
    size_t nwfs, capwf;
    size_t *runrecs, nrunrecs, caprunrecs; /* all records, for the seal check */
    size_t *wfrecs, nwfrecs, capwfrecs;
    /* generator */
    int64_t ts, gap;
    int n;
    char ended_runs[N_ENDED][ID_MAX], ended_wfs[N_ENDED][ID_MAX];
    int nended_runs, nended_wfs;
} morg_t;

static morg_t orgs[N_ORGS];
static int seen_order[N_ORGS]; /* organizations in the order ledger A first saw them */
static int nseen;
static int64_t watermark; /* the latest ts applied */
static runrec_t *runrecs;
static size_t nrunrecs, caprunrecs;
static wfrec_t *wfrecs;
static size_t nwfrecs, capwfrecs;
static size_t *dirty_runs, ndirty_runs, capdirty_runs;
static size_t *dirty_wfs, ndirty_wfs, capdirty_wfs;

#define GROW(ptr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? 2 * (cap) : 16;                                                        \
            (ptr) = realloc((ptr), (cap) * sizeof(*(ptr)));                                        \
            assert_non_null(ptr);                                                                  \
        }                                                                                          \
    } while (0)

static void touch_run(size_t rec)
{
    if (!runrecs[rec].dirty) {
        runrecs[rec].dirty = true;
        GROW(dirty_runs, ndirty_runs, capdirty_runs);
        dirty_runs[ndirty_runs++] = rec;
    }
}

static void touch_wf(size_t rec)
{
    if (!wfrecs[rec].dirty) {
        wfrecs[rec].dirty = true;
        GROW(dirty_wfs, ndirty_wfs, capdirty_wfs);
        dirty_wfs[ndirty_wfs++] = rec;
    }
}

static int64_t limit_of(const morg_t *o)
{
    return TIERS[o->tier].agents;
}

static int64_t quota_of(const morg_t *o)
{
    int64_t w = TIERS[o->tier].workflows;
    return w < 0 ? -1 : w + o->packs;
}

static bool must_hold(const morg_t *o)
{
    int64_t q = quota_of(o);
    return TIERS[o->tier].hold && q >= 0 && o->counted >= q;
}

static bool slot_free(const morg_t *o, int p)
{
    return limit_of(o) < 0 || o->running[p] < limit_of(o);
}

static mrun_t *find_run(morg_t *o, const char *id)
{
    for (size_t i = 0; i < o->nruns; i++)
        if (strcmp(o->runs[i].id, id) == 0)
            return &o->runs[i];
    return NULL;
}

static mwf_t *find_wf(morg_t *o, const char *id)
{
    for (size_t i = 0; i < o->nwfs; i++)
        if (strcmp(o->wfs[i].id, id) == 0)
            return &o->wfs[i];
    return NULL;
}

static mrun_t *queue_head(morg_t *o, int p)
{
    for (size_t i = 0; i < o->nruns; i++)
        if (o->runs[i].proj == p && !o->runs[i].running)
            return &o->runs[i];
    return NULL;
}

static int64_t queue_len(const morg_t *o, int p)
{
    int64_t n = 0;
    for (size_t i = 0; i < o->nruns; i++)
        n += o->runs[i].proj == p && !o->runs[i].running;
    return n;
}

static mwf_t *hold_head(morg_t *o)
{
    for (size_t i = 0; i < o->nwfs; i++)
        if (o->wfs[i].held)
            return &o->wfs[i];
    return NULL;
}

static int64_t hold_len(const morg_t *o)
{
    int64_t n = 0;
    for (size_t i = 0; i < o->nwfs; i++)
        n += o->wfs[i].held;
    return n;
}

static void remove_run(morg_t *o, mrun_t *r)
{
    size_t i = (size_t)(r - o->runs);
    memmove(&o->runs[i], &o->runs[i + 1], (o->nruns - i - 1) * sizeof(*r));
    o->nruns--;
}

static void remove_wf(morg_t *o, mwf_t *w)
{
    size_t i = (size_t)(w - o->wfs);
    memmove(&o->wfs[i], &o->wfs[i + 1], (o->nwfs - i - 1) * sizeof(*w));
    o->nwfs--;
}

static void remember(char ring[N_ENDED][ID_MAX], int *n, const char *id)
{
    snprintf(ring[*n % N_ENDED], ID_MAX, "%s", id);
    (*n)++;
}

/* ---- the event being checked ------------------------------------------------------------- */

typedef struct {
    wire_type_t type;
    int org;
    int64_t ts;
    char id[32], run[ID_MAX], workflow[ID_MAX], project[ID_MAX];
    const char *tier, *promo;
    int tier_ix;    /* the tier subscription.changed names, when known */
    int refused;    /* the expected refusal, 0 when none */
    int64_t ps, pe; /* 0: absent */
    int64_t pack;
    wire_complexity_t cx;
    wire_status_t status;
} spec_t;

static struct {
    long sweeps, events, admitted, queued, held, released, rolls, tier_changes, downgrades_over,
        refused, noops, packs, seals_c, checkpoints, max_queue, max_hold, rows_usage, rows_runs;
} stats;

static size_t event_index;
static const spec_t *cur_spec;
static const ledger_result_t *cur_res;

static const char *type_name(wire_type_t t)
{
    return wire_type_name(t);
}

static void print_context(void)
{
    const spec_t *s = cur_spec;
    print_error("event %zu: org %s %s ts %lld run %s workflow %s project %s tier %s promo %s "
                "ps %lld pe %lld pack %lld\n",
                event_index, orgs[s->org].name, type_name(s->type), (long long)s->ts, s->run,
                s->workflow, s->project, s->tier ? s->tier : "-", s->promo ? s->promo : "-",
                (long long)s->ps, (long long)s->pe, (long long)s->pack);
    if (cur_res) {
        print_error("  note %d, %zu decisions:\n", cur_res->note, cur_res->n);
        for (size_t i = 0; i < cur_res->n; i++) {
            const ledger_decision_t *d = &cur_res->decisions[i];
            print_error("  kind %d %.*s %.*s waited %lld position %lld\n", d->kind,
                        (int)d->project.len, d->project.ptr, (int)d->subject.len, d->subject.ptr,
                        (long long)d->waited_ms, (long long)d->position);
        }
    }
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_context();                                                                       \
            print_error("  violated: " __VA_ARGS__);                                               \
            print_error("\n");                                                                     \
            fail_msg("%s", #cond);                                                                 \
        }                                                                                          \
    } while (0)

static bool str_is(wire_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

typedef struct {
    const ledger_result_t *res;
    size_t i;
} cursor_t;

static const ledger_decision_t *next_decision(cursor_t *c, const char *what)
{
    CHECK(c->i < c->res->n, "missing decision: %s", what);
    return &c->res->decisions[c->i++];
}

static char pname[MAX_PROJ][4] = {"p0", "p1", "p2"};

static void count_wf(morg_t *o, mwf_t *w, int64_t ts)
{
    wfrec_t *rec = &wfrecs[w->rec];
    int64_t q = quota_of(o);
    rec->overage = q >= 0 && o->counted >= q;
    rec->billed = true;
    rec->status = 1;
    rec->started = ts;
    rec->tier = TIERS[o->tier].name;
    touch_wf(w->rec);
    w->held = false;
    o->counted++;
}

/* Releases while the quota allows, oldest first: each must be the next decision. */
static void expect_releases(morg_t *o, cursor_t *c, int64_t ts)
{
    while (hold_len(o) > 0 && !must_hold(o)) {
        mwf_t *w = hold_head(o);
        const ledger_decision_t *d = next_decision(c, "workflow.released");
        CHECK(d->kind == LEDGER_WORKFLOW_RELEASED, "want the release of %s", w->id);
        CHECK(str_is(d->org, o->name), "the release of %s concerns %s", w->id, o->name);
        CHECK(str_is(d->subject, w->id), "releases go oldest first: want %s", w->id);
        CHECK(str_is(d->project, pname[w->proj]), "release project");
        CHECK(d->waited_ms == ts - w->req, "release wait %lld, want %lld", (long long)d->waited_ms,
              (long long)(ts - w->req));
        count_wf(o, w, ts);
        stats.released++;
    }
}

static void admit(morg_t *o, mrun_t *r, int64_t ts)
{
    CHECK(!r->running, "admitted twice: %s", r->id);
    CHECK(slot_free(o, r->proj), "admission over the limit: %s runs %d, limit %lld", r->id,
          o->running[r->proj], (long long)limit_of(o));
    r->running = true;
    o->running[r->proj]++;
    runrec_t *rec = &runrecs[r->rec];
    rec->status = 1;
    rec->adm = ts;
    touch_run(r->rec);
    stats.admitted++;
}

/* A slot freed in project p: its queue's heads, in order, while slots are free. */
static void expect_admissions(morg_t *o, cursor_t *c, int p, int64_t ts)
{
    while (slot_free(o, p)) {
        mrun_t *r = queue_head(o, p);
        if (!r)
            break;
        const ledger_decision_t *d = next_decision(c, "agent.admitted");
        CHECK(d->kind == LEDGER_AGENT_ADMITTED && str_is(d->subject, r->id),
              "FIFO: want the admission of %s", r->id);
        CHECK(str_is(d->project, pname[p]), "admission project");
        CHECK(d->waited_ms == ts - r->req, "wait %lld, want %lld", (long long)d->waited_ms,
              (long long)(ts - r->req));
        admit(o, r, ts);
    }
}

/* The project of an event as a view. */
static wire_str_t S_project_view(const spec_t *s)
{
    return (wire_str_t){s->project, (uint32_t)strlen(s->project)};
}

static int project_ix(wire_str_t s)
{
    for (int p = 0; p < MAX_PROJ; p++)
        if (str_is(s, pname[p]))
            return p;
    return -1;
}

static void begin_period(morg_t *o, int64_t start, int64_t end)
{
    o->ps = start;
    o->pe = end;
    o->counted = 0;
    o->packs = 0;
}

static bool roll(morg_t *o, int64_t ts)
{
    bool rolled = false;
    while (ts >= o->pe) {
        int64_t start = o->pe;
        int64_t end;
        if (o->calendar) {
            end = cal_add_months(cal_month_start(start), 1);
        } else {
            if (o->anchor < 0 || o->anchor > start)
                o->anchor = start;
            int k = 1;
            while (cal_add_months(o->anchor, k) <= start)
                k++;
            end = cal_add_months(o->anchor, k);
        }
        begin_period(o, start, end);
        rolled = true;
        stats.rolls++;
    }
    return rolled;
}

static size_t new_runrec(const spec_t *s)
{
    GROW(runrecs, nrunrecs, caprunrecs);
    runrec_t *r = &runrecs[nrunrecs];
    memset(r, 0, sizeof(*r));
    r->org = s->org;
    snprintf(r->id, sizeof(r->id), "%s", s->run);
    snprintf(r->project, sizeof(r->project), "%s", s->project);
    snprintf(r->workflow, sizeof(r->workflow), "%s", s->workflow);
    r->req = s->ts;
    r->adm = r->fin = -1;
    morg_t *o = &orgs[s->org];
    GROW(o->runrecs, o->nrunrecs, o->caprunrecs);
    o->runrecs[o->nrunrecs++] = nrunrecs;
    touch_run(nrunrecs);
    return nrunrecs++;
}

static size_t new_wfrec(const spec_t *s)
{
    GROW(wfrecs, nwfrecs, capwfrecs);
    wfrec_t *w = &wfrecs[nwfrecs];
    memset(w, 0, sizeof(*w));
    w->org = s->org;
    snprintf(w->id, sizeof(w->id), "%s", s->workflow);
    snprintf(w->project, sizeof(w->project), "%s", s->project);
    w->cx = (int)s->cx;
    w->req = s->ts;
    w->started = w->fin = -1;
    morg_t *o = &orgs[s->org];
    w->tier = TIERS[o->tier].name;
    GROW(o->wfrecs, o->nwfrecs, o->capwfrecs);
    o->wfrecs[o->nwfrecs++] = nwfrecs;
    touch_wf(nwfrecs);
    return nwfrecs++;
}

/* Checks the decisions of ledger A for the event s and brings the book up to date. */
static void book_apply(const spec_t *s, int rc, const ledger_result_t *res)
{
    morg_t *o = &orgs[s->org];
    cursor_t c = {res, 0};
    if (s->refused) {
        CHECK(rc == s->refused, "refusal %d, want %d", rc, s->refused);
        CHECK(res->n == 0, "a refused event decides nothing");
        stats.refused++;
        return;
    }
    CHECK(rc == 0, "ledger_apply returned %d", rc);
    int64_t ts = s->ts;
    if (!o->seen) {
        o->seen = true;
        seen_order[nseen++] = s->org;
        o->tier = FREE;
        o->calendar = true;
        o->anchor = -1;
        begin_period(o, cal_month_start(ts), cal_add_months(cal_month_start(ts), 1));
    }
    if (roll(o, ts))
        expect_releases(o, &c, ts);
    ledger_note_t note = LEDGER_OK;
    switch (s->type) {
    case WIRE_T_AGENT_REQUESTED: {
        if (find_run(o, s->run)) {
            note = LEDGER_NOOP_KNOWN_RUN;
            break;
        }
        GROW(o->runs, o->nruns, o->caprun);
        mrun_t *r = &o->runs[o->nruns++];
        memset(r, 0, sizeof(*r));
        snprintf(r->id, sizeof(r->id), "%s", s->run);
        r->proj = project_ix(S_project_view(s));
        r->req = ts;
        r->rec = new_runrec(s);
        const ledger_decision_t *d = next_decision(&c, "the request's decision");
        CHECK(str_is(d->subject, r->id) && str_is(d->project, s->project),
              "the request decides about its own run");
        if (slot_free(o, r->proj)) {
            CHECK(d->kind == LEDGER_AGENT_ADMITTED && d->waited_ms == 0,
                  "a free slot admits at once");
            admit(o, r, ts);
        } else {
            int64_t pos = queue_len(o, r->proj);
            CHECK(d->kind == LEDGER_AGENT_QUEUED, "no free slot: queued");
            CHECK(d->position == pos, "position %lld, want %lld", (long long)d->position,
                  (long long)pos);
            stats.queued++;
            if (pos > stats.max_queue)
                stats.max_queue = pos;
        }
        break;
    }
    case WIRE_T_AGENT_FINISHED:
    case WIRE_T_AGENT_CANCELLED: {
        mrun_t *r = find_run(o, s->run);
        if (!r) {
            note = LEDGER_NOOP_UNKNOWN_RUN;
            break;
        }
        runrec_t *rec = &runrecs[r->rec];
        rec->fin = ts;
        touch_run(r->rec);
        remember(o->ended_runs, &o->nended_runs, r->id);
        int p = r->proj;
        if (!r->running) {
            rec->status = 3;
            remove_run(o, r);
        } else {
            rec->status = s->type == WIRE_T_AGENT_FINISHED ? 2 : 3;
            o->running[p]--;
            remove_run(o, r);
            expect_admissions(o, &c, p, ts);
        }
        break;
    }
    case WIRE_T_WORKFLOW_STARTED: {
        if (find_wf(o, s->workflow)) {
            note = LEDGER_NOOP_KNOWN_WORKFLOW;
            break;
        }
        GROW(o->wfs, o->nwfs, o->capwf);
        mwf_t *w = &o->wfs[o->nwfs++];
        memset(w, 0, sizeof(*w));
        snprintf(w->id, sizeof(w->id), "%s", s->workflow);
        w->proj = project_ix(S_project_view(s));
        w->req = ts;
        w->rec = new_wfrec(s);
        bool behind = hold_len(o) > 0; /* others already waiting (w is not held yet) */
        if (TIERS[o->tier].hold && (behind || must_hold(o))) {
            w->held = true;
            int64_t pos = hold_len(o);
            const ledger_decision_t *d = next_decision(&c, "workflow.held");
            CHECK(d->kind == LEDGER_WORKFLOW_HELD && str_is(d->subject, w->id) &&
                      str_is(d->project, s->project),
                  "want %s held", w->id);
            CHECK(d->position == pos, "hold position %lld, want %lld", (long long)d->position,
                  (long long)pos);
            stats.held++;
            if (pos > stats.max_hold)
                stats.max_hold = pos;
        } else {
            count_wf(o, w, ts);
        }
        break;
    }
    case WIRE_T_WORKFLOW_FINISHED: {
        mwf_t *w = find_wf(o, s->workflow);
        if (!w) {
            note = LEDGER_NOOP_UNKNOWN_WORKFLOW;
            break;
        }
        wfrec_t *rec = &wfrecs[w->rec];
        rec->status = 2 + (int)s->status; /* succeeded, failed, cancelled */
        rec->fin = ts;
        touch_wf(w->rec);
        remember(o->ended_wfs, &o->nended_wfs, w->id);
        remove_wf(o, w);
        break;
    }
    case WIRE_T_SUBSCRIPTION_CHANGED:
    case WIRE_T_SUBSCRIPTION_CANCELLED: {
        int old = o->tier;
        int nt = s->type == WIRE_T_SUBSCRIPTION_CHANGED ? s->tier_ix : FREE;
        if (s->ps && s->ps > o->ps) {
            begin_period(o, s->ps, s->pe ? s->pe : cal_add_months(s->ps, 1));
            o->anchor = s->pe ? o->pe : s->ps;
        } else if (s->pe && s->pe > o->ps) {
            o->pe = s->pe;
            o->anchor = s->pe;
        }
        o->tier = nt;
        o->calendar = TIERS[nt].calendar;
        if (o->calendar)
            o->anchor = -1;
        roll(o, ts);
        stats.tier_changes++;
        for (int p = 0; p < o->nproj; p++)
            if (limit_of(o) >= 0 && o->running[p] > limit_of(o) &&
                (TIERS[old].agents < 0 || TIERS[old].agents > limit_of(o)))
                stats.downgrades_over++;
        /* admissions in any project order, each the head of its queue while it has room */
        while (c.i < res->n && res->decisions[c.i].kind == LEDGER_AGENT_ADMITTED) {
            const ledger_decision_t *d = &res->decisions[c.i++];
            int p = project_ix(d->project);
            CHECK(p >= 0 && p < o->nproj, "admission in an unknown project");
            mrun_t *r = queue_head(o, p);
            CHECK(r && str_is(d->subject, r->id), "FIFO: the head of %s", pname[p]);
            CHECK(d->waited_ms == ts - r->req, "wait %lld, want %lld", (long long)d->waited_ms,
                  (long long)(ts - r->req));
            admit(o, r, ts);
        }
        for (int p = 0; p < o->nproj; p++)
            CHECK(!queue_head(o, p) || !slot_free(o, p),
                  "the tier change left %s with a queue and a free slot", pname[p]);
        expect_releases(o, &c, ts);
        break;
    }
    case WIRE_T_PACK_PURCHASED:
        o->packs += s->pack;
        stats.packs++;
        expect_releases(o, &c, ts);
        break;
    default:
        break;
    }
    /* Silent organizations: every period that ended LEDGER_CLOSE_GRACE_MS before the latest ts
     * closes now, by period end then name; releases are caused now. */
    if (ts > watermark)
        watermark = ts;
    for (;;) {
        morg_t *next = NULL;
        for (int i = 0; i < nseen; i++) {
            morg_t *x = &orgs[seen_order[i]];
            if (x->pe + LEDGER_CLOSE_GRACE_MS > watermark)
                continue;
            if (!next || x->pe < next->pe || (x->pe == next->pe && strcmp(x->name, next->name) < 0))
                next = x;
        }
        if (!next)
            break;
        roll(next, watermark - LEDGER_CLOSE_GRACE_MS);
        stats.sweeps++;
        expect_releases(next, &c, ts);
    }
    CHECK(c.i == res->n, "%zu unexpected decision(s) after the %zu expected", res->n - c.i, c.i);
    CHECK(res->note == note, "note %d, want %d", res->note, note);
    if (note != LEDGER_OK)
        stats.noops++;

    /* invariants after the event */
    for (int p = 0; p < o->nproj; p++)
        CHECK(!queue_head(o, p) || !slot_free(o, p), "starvation in %s: %d running, queue %lld",
              pname[p], o->running[p], (long long)queue_len(o, p));
    if (TIERS[o->tier].hold)
        CHECK(hold_len(o) == 0 || o->counted >= quota_of(o),
              "held workflows with quota left: count %lld quota %lld", (long long)o->counted,
              (long long)quota_of(o));
    else
        CHECK(hold_len(o) == 0, "a %s organization holds workflows", TIERS[o->tier].name);
}

/* describe's view of an organization must be the book's. */
static int64_t jint(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    CHECK(p != NULL, "describe lacks %s: %s", key, json);
    char *end;
    long long v = strtoll(p + strlen(pat), &end, 10);
    CHECK(end != p + strlen(pat), "describe %s is not a number", key);
    return v;
}

static void check_describe(const ledger_t *l, const morg_t *o)
{
    char buf[1024];
    int n = ledger_describe(l, o->name, strlen(o->name), buf, sizeof(buf));
    if (!o->seen) {
        CHECK(n == -1, "an organization never applied is described: %s", buf);
        return;
    }
    CHECK(n > 0 && (size_t)n < sizeof(buf), "describe failed");
    char tier[64];
    snprintf(tier, sizeof(tier), "\"tier\":\"%s\"", TIERS[o->tier].name);
    CHECK(strstr(buf, tier) != NULL, "describe %s, want tier %s", buf, TIERS[o->tier].name);
    int64_t running = 0, queued = 0;
    for (int p = 0; p < o->nproj; p++) {
        running += o->running[p];
        queued += queue_len(o, p);
    }
    CHECK(jint(buf, "running") == running && jint(buf, "queued") == queued &&
              jint(buf, "held") == hold_len(o) && jint(buf, "workflows_counted") == o->counted &&
              jint(buf, "packs") == o->packs && jint(buf, "period_start") == o->ps &&
              jint(buf, "period_end") == o->pe,
          "describe %s; book: running %lld queued %lld held %lld counted %lld packs %lld "
          "period %lld..%lld",
          buf, (long long)running, (long long)queued, (long long)hold_len(o), (long long)o->counted,
          (long long)o->packs, (long long)o->ps, (long long)o->pe);
}

/* ---- the generator ----------------------------------------------------------------------- */

static void init_orgs(void)
{
    memset(orgs, 0, sizeof(orgs));
    /* a busy organization sees about N_EVENTS/2/N_HEAVY + N_EVENTS/2/N_ORGS events, the others
     * N_EVENTS/2/N_ORGS: gaps are chosen so that each spans about SPAN_MS */
    int64_t busy = N_EVENTS / 2 / N_HEAVY + N_EVENTS / 2 / N_ORGS, quiet = N_EVENTS / 2 / N_ORGS;
    for (int i = 0; i < N_ORGS; i++) {
        morg_t *o = &orgs[i];
        snprintf(o->name, sizeof(o->name), "o%04d", i);
        o->nproj = 1 + (int)rnd(MAX_PROJ);
        o->ts = BASE_TS + (int64_t)rnd(5 * DAY);
        o->gap = SPAN_MS / (i < N_HEAVY ? busy : quiet);
    }
}

static const char *pick_ended(char ring[N_ENDED][ID_MAX], int n)
{
    int have = n < N_ENDED ? n : N_ENDED;
    return ring[rnd((uint64_t)have)];
}

static void gen_event(spec_t *s)
{
    memset(s, 0, sizeof(*s));
    int oi = chance(0.5) ? (int)rnd(N_HEAVY) : (int)rnd(N_ORGS);
    morg_t *o = &orgs[oi];
    s->org = oi;
    o->ts += 1 + (int64_t)rnd((uint64_t)(2 * o->gap));
    if (chance(0.01))
        o->ts += (int64_t)rnd(10 * DAY);
    s->ts = o->ts;
    snprintf(s->id, sizeof(s->id), "e%zu", event_index);
    o->n++;
    snprintf(s->project, sizeof(s->project), "%s", pname[rnd((uint64_t)o->nproj)]);
    double x = (double)(rng_next() >> 11) / 9007199254740992.0;
    double p_req = o->nruns < 25 ? 0.30 : 0.12;
    if ((x -= p_req) < 0) {
        s->type = WIRE_T_AGENT_REQUESTED;
        double y = (double)(rng_next() >> 11) / 9007199254740992.0;
        if (y < 0.03 && o->nruns > 0)
            snprintf(s->run, sizeof(s->run), "%s", o->runs[rnd(o->nruns)].id); /* open */
        else if (y < 0.07 && o->nended_runs > 0)
            snprintf(s->run, sizeof(s->run), "%s", pick_ended(o->ended_runs, o->nended_runs));
        else
            snprintf(s->run, sizeof(s->run), "r%d", o->n);
        if (o->nwfs > 0 && chance(0.3))
            snprintf(s->workflow, sizeof(s->workflow), "%s", o->wfs[rnd(o->nwfs)].id);
        return;
    }
    if ((x -= 0.24) < 0 && o->nruns > 0) {
        s->type = chance(0.8) ? WIRE_T_AGENT_FINISHED : WIRE_T_AGENT_CANCELLED;
        snprintf(s->run, sizeof(s->run), "%s", o->runs[rnd(o->nruns)].id);
        return;
    }
    if (x < 0 || (x -= 0.02) < 0) { /* a run that is not open (or may not be) */
        s->type = chance(0.8) ? WIRE_T_AGENT_FINISHED : WIRE_T_AGENT_CANCELLED;
        if (o->nended_runs > 0 && chance(0.5))
            snprintf(s->run, sizeof(s->run), "%s", pick_ended(o->ended_runs, o->nended_runs));
        else
            snprintf(s->run, sizeof(s->run), "g%d", o->n);
        return;
    }
    if ((x -= 0.17) < 0) {
        s->type = WIRE_T_WORKFLOW_STARTED;
        s->cx = (wire_complexity_t)rnd(3);
        double y = (double)(rng_next() >> 11) / 9007199254740992.0;
        if (y < 0.03 && o->nwfs > 0)
            snprintf(s->workflow, sizeof(s->workflow), "%s", o->wfs[rnd(o->nwfs)].id);
        else if (y < 0.06 && o->nended_wfs > 0)
            snprintf(s->workflow, sizeof(s->workflow), "%s",
                     pick_ended(o->ended_wfs, o->nended_wfs));
        else
            snprintf(s->workflow, sizeof(s->workflow), "w%d", o->n);
        return;
    }
    if ((x -= 0.09) < 0 && o->nwfs > 0) {
        s->type = WIRE_T_WORKFLOW_FINISHED;
        s->status = (wire_status_t)rnd(3);
        snprintf(s->workflow, sizeof(s->workflow), "%s", o->wfs[rnd(o->nwfs)].id);
        return;
    }
    if (x < 0 || (x -= 0.01) < 0) {
        s->type = WIRE_T_WORKFLOW_FINISHED;
        s->status = (wire_status_t)rnd(3);
        if (o->nended_wfs > 0 && chance(0.5))
            snprintf(s->workflow, sizeof(s->workflow), "%s",
                     pick_ended(o->ended_wfs, o->nended_wfs));
        else
            snprintf(s->workflow, sizeof(s->workflow), "gw%d", o->n);
        return;
    }
    if ((x -= 0.035) < 0) {
        s->type = WIRE_T_SUBSCRIPTION_CHANGED;
        s->tier_ix = (int)rnd(N_TIERS);
        s->tier = TIERS[s->tier_ix].name;
        double y = (double)(rng_next() >> 11) / 9007199254740992.0;
        if (y < 0.04) {
            s->tier = "platinum";
            s->refused = LEDGER_E_UNKNOWN_TIER;
        } else if (y < 0.08) {
            s->promo = "summer";
            s->refused = LEDGER_E_UNKNOWN_PROMO;
        } else if (y < 0.18) {
            s->promo = "new_year";
        }
        double z = (double)(rng_next() >> 11) / 9007199254740992.0;
        if (z < 0.25) {
            s->ps = s->ts;
            s->pe = cal_add_months(s->ts, 1);
        } else if (z < 0.30) {
            s->ps = s->ts - 10 * DAY;
            s->pe = s->ts + 20 * DAY;
        } else if (z < 0.35) {
            s->ps = s->ts;
        }
        return;
    }
    if ((x -= 0.01) < 0) {
        s->type = WIRE_T_SUBSCRIPTION_CANCELLED;
        return;
    }
    if ((x -= 0.025) < 0) {
        s->type = WIRE_T_PACK_PURCHASED;
        s->pack = chance(0.5) ? 10 : 50;
        return;
    }
    static const wire_type_t others[] = {WIRE_T_LLM_CALL, WIRE_T_API_CALL, WIRE_T_STORAGE_REPORT,
                                         WIRE_T_CREDITS_ADDED, WIRE_T_BUDGET_SET};
    s->type = others[rnd(sizeof(others) / sizeof(others[0]))];
}

static wire_str_t V(const char *s)
{
    return (wire_str_t){s, s ? (uint32_t)strlen(s) : 0};
}

static wire_event_t build_event(const spec_t *s)
{
    wire_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = s->type;
    ev.v = 1;
    ev.ts = s->ts;
    ev.id = V(s->id);
    ev.org = V(orgs[s->org].name);
    bool with_project = s->type == WIRE_T_AGENT_REQUESTED || s->type == WIRE_T_WORKFLOW_STARTED;
    ev.project = with_project ? V(s->project) : V(NULL);
    ev.run = V(s->run[0] ? s->run : NULL);
    ev.workflow = V(s->workflow[0] ? s->workflow : NULL);
    ev.tier = V(s->tier);
    ev.promo = V(s->promo);
    ev.complexity = s->cx;
    ev.status = s->status;
    ev.workflows = s->pack;
    ev.count = 1;
    if (s->type == WIRE_T_LLM_CALL) {
        ev.provider = V("openai");
        ev.model = V("gpt-4o");
        ev.input_tokens = 100;
    }
    if (s->ps) {
        ev.period_start = s->ps;
        ev.present |= WIRE_HAS_PERIOD_START;
    }
    if (s->pe) {
        ev.period_end = s->pe;
        ev.present |= WIRE_HAS_PERIOD_END;
    }
    return ev;
}

/* ---- sealed rows ------------------------------------------------------------------------- */

static int org_of(const char *name)
{
    char *end;
    long v = strtol(name + 1, &end, 10);
    assert_true(name[0] == 'o' && *end == '\0' && v >= 0 && v < N_ORGS);
    return (int)v;
}

static uint8_t *blobs[N_ORGS];
static size_t blob_len[N_ORGS];

/* Seals A: keeps each organization's latest snapshot, and checks every usage and run row
 * against the book (one row per record changed since the last seal, with its current values). */
static void seal_and_check(ledger_t *a, int32_t checkpoint)
{
    pgcopy_t sealed[BATCH_NTABLES];
    for (int i = 0; i < BATCH_NTABLES; i++)
        pgcopy_init(&sealed[i]);
    int64_t nrows[BATCH_NTABLES] = {0};
    ledger_seal(a, checkpoint, sealed, nrows);
    for (int i = 0; i < BATCH_NTABLES; i++)
        assert_false(sealed[i].oom);
    pgcopy_t st = sealed[BATCH_STATE], us = sealed[BATCH_USAGE], ru = sealed[BATCH_RUNS];
    int64_t ns = nrows[BATCH_STATE], nu = nrows[BATCH_USAGE], nr = nrows[BATCH_RUNS];

    reader_t r = {(const uint8_t *)st.p, (const uint8_t *)st.p + st.len};
    int64_t rows = 0;
    while (r.p < r.end) {
        assert_int_equal(rd_be(&r, 2), 3);
        assert_int_equal(rd_be(&r, 4), 4);
        assert_int_equal((int32_t)rd_be(&r, 4), checkpoint);
        char org[32];
        rd_text(&r, org, sizeof(org));
        int oi = org_of(org);
        size_t n = (size_t)rd_be(&r, 4);
        assert_true((size_t)(r.end - r.p) >= n);
        free(blobs[oi]);
        blobs[oi] = malloc(n ? n : 1);
        assert_non_null(blobs[oi]);
        memcpy(blobs[oi], r.p, n);
        blob_len[oi] = n;
        r.p += n;
        rows++;
    }
    assert_int_equal(rows, ns);

    r = (reader_t){(const uint8_t *)us.p, (const uint8_t *)us.p + us.len};
    rows = 0;
    while (r.p < r.end) {
        char org[32], project[ID_MAX], wf[ID_MAX], cx[16], status[16], tier[40];
        assert_int_equal(rd_be(&r, 2), 11);
        rd_text(&r, org, sizeof(org));
        rd_text(&r, project, sizeof(project));
        rd_text(&r, wf, sizeof(wf));
        rd_text(&r, cx, sizeof(cx));
        rd_text(&r, status, sizeof(status));
        rd_text(&r, tier, sizeof(tier));
        int64_t req = rd_ts(&r), started = rd_ts(&r), fin = rd_ts(&r);
        bool billed = rd_bool(&r), overage = rd_bool(&r);
        morg_t *o = &orgs[org_of(org)];
        wfrec_t *w = NULL;
        for (size_t i = 0; i < o->nwfrecs && !w; i++)
            if (wfrecs[o->wfrecs[i]].req == req && strcmp(wfrecs[o->wfrecs[i]].id, wf) == 0)
                w = &wfrecs[o->wfrecs[i]];
        if (!w || !w->dirty || w->matched || strcmp(project, w->project) != 0 ||
            strcmp(cx, CX[w->cx]) != 0 || strcmp(status, WF_STATUS[w->status]) != 0 ||
            strcmp(tier, w->tier) != 0 || started != w->started || fin != w->fin ||
            billed != w->billed || overage != w->overage) {
            print_error("usage row %s/%s req %lld: %s %s %s %s start %lld fin %lld billed %d "
                        "overage %d\n",
                        org, wf, (long long)req, project, cx, status, tier, (long long)started,
                        (long long)fin, billed, overage);
            if (w)
                print_error("  book: dirty %d matched %d %s %s %s %s start %lld fin %lld billed "
                            "%d overage %d\n",
                            w->dirty, w->matched, w->project, CX[w->cx], WF_STATUS[w->status],
                            w->tier, (long long)w->started, (long long)w->fin, w->billed,
                            w->overage);
            fail_msg("usage row at checkpoint %d", checkpoint);
        }
        w->matched = true;
        rows++;
    }
    assert_int_equal(rows, nu);
    for (size_t i = 0; i < ndirty_wfs; i++) {
        wfrec_t *w = &wfrecs[dirty_wfs[i]];
        if (!w->matched)
            fail_msg("no usage row for %s/%s", orgs[w->org].name, w->id);
        w->matched = w->dirty = false;
    }
    assert_int_equal((size_t)nu, ndirty_wfs);
    ndirty_wfs = 0;
    stats.rows_usage += nu;

    r = (reader_t){(const uint8_t *)ru.p, (const uint8_t *)ru.p + ru.len};
    rows = 0;
    while (r.p < r.end) {
        char org[32], project[ID_MAX], run[ID_MAX], wf[ID_MAX], status[16];
        assert_int_equal(rd_be(&r, 2), 10);
        rd_text(&r, org, sizeof(org));
        rd_text(&r, project, sizeof(project));
        rd_text(&r, run, sizeof(run));
        rd_text(&r, wf, sizeof(wf));
        rd_text(&r, status, sizeof(status));
        int64_t req = rd_ts(&r), adm = rd_ts(&r), fin = rd_ts(&r);
        int64_t waited = rd_int8(&r), agent = rd_int8(&r);
        morg_t *o = &orgs[org_of(org)];
        runrec_t *x = NULL;
        for (size_t i = 0; i < o->nrunrecs && !x; i++)
            if (runrecs[o->runrecs[i]].req == req && strcmp(runrecs[o->runrecs[i]].id, run) == 0)
                x = &runrecs[o->runrecs[i]];
        int64_t want_wait = x && x->adm >= 0 ? x->adm - x->req : 0;
        int64_t want_agent = x && x->adm >= 0 && x->fin >= 0 ? x->fin - x->adm : 0;
        if (!x || !x->dirty || x->matched || strcmp(project, x->project) != 0 ||
            strcmp(wf, x->workflow) != 0 || strcmp(status, RUN_STATUS[x->status]) != 0 ||
            adm != x->adm || fin != x->fin || waited != want_wait || agent != want_agent) {
            print_error("run row %s/%s req %lld: %s %s %s adm %lld fin %lld waited %lld agent "
                        "%lld\n",
                        org, run, (long long)req, project, wf, status, (long long)adm,
                        (long long)fin, (long long)waited, (long long)agent);
            if (x)
                print_error("  book: dirty %d matched %d %s %s %s adm %lld fin %lld\n", x->dirty,
                            x->matched, x->project, x->workflow, RUN_STATUS[x->status],
                            (long long)x->adm, (long long)x->fin);
            fail_msg("run row at checkpoint %d", checkpoint);
        }
        x->matched = true;
        rows++;
    }
    assert_int_equal(rows, nr);
    for (size_t i = 0; i < ndirty_runs; i++) {
        runrec_t *x = &runrecs[dirty_runs[i]];
        if (!x->matched)
            fail_msg("no run row for %s/%s", orgs[x->org].name, x->id);
        x->matched = x->dirty = false;
    }
    assert_int_equal((size_t)nr, ndirty_runs);
    ndirty_runs = 0;
    stats.rows_runs += nr;
    for (int i = 0; i < BATCH_NTABLES; i++)
        pgcopy_close(&sealed[i]);
}

/* ---- replay and seal-timing twins -------------------------------------------------------- */

typedef struct {
    ledger_decision_kind_t kind;
    char project[ID_MAX], subject[ID_MAX];
    int64_t waited, position;
} owned_t;

static owned_t *want;
static size_t nwant, capwant;

static void keep_decisions(const ledger_result_t *res)
{
    nwant = 0;
    for (size_t i = 0; i < res->n; i++) {
        GROW(want, nwant, capwant);
        const ledger_decision_t *d = &res->decisions[i];
        owned_t *w = &want[nwant++];
        w->kind = d->kind;
        assert_true(d->project.len < ID_MAX && d->subject.len < ID_MAX);
        memcpy(w->project, d->project.ptr, d->project.len);
        w->project[d->project.len] = '\0';
        memcpy(w->subject, d->subject.ptr, d->subject.len);
        w->subject[d->subject.len] = '\0';
        w->waited = d->waited_ms;
        w->position = d->position;
    }
}

typedef struct {
    const char *name;
    ledger_t *l;
    bool diverged;
    long mismatches;
} twin_t;

static long reported;

static void twin_mismatch(twin_t *t, const char *fmt, ...)
{
    t->mismatches++;
    t->diverged = true;
    if (reported++ >= 8)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const spec_t *s = cur_spec;
    print_error("%s diverges from A at event %zu (org %s %s run %s workflow %s tier %s): %s\n",
                t->name, event_index, orgs[s->org].name, type_name(s->type), s->run, s->workflow,
                s->tier ? s->tier : "-", msg);
    for (size_t i = 0; i < nwant; i++)
        print_error("  A: kind %d %s %s waited %lld position %lld\n", want[i].kind, want[i].project,
                    want[i].subject, (long long)want[i].waited, (long long)want[i].position);
}

static void twin_apply(twin_t *t, const wire_event_t *ev, int want_rc, ledger_note_t want_note,
                       const ledger_t *a)
{
    if (!t->l || t->diverged)
        return;
    ledger_result_t res;
    int rc = ledger_apply(t->l, tiers, ev, 0, &res);
    if (rc != want_rc) {
        twin_mismatch(t, "rc %d, A %d", rc, want_rc);
        return;
    }
    if (rc != 0)
        return;
    if (res.note != want_note || res.n != nwant) {
        twin_mismatch(t, "note %d (A %d), %zu decisions (A %zu)", res.note, want_note, res.n,
                      nwant);
        for (size_t i = 0; i < res.n && reported <= 8; i++)
            print_error("  %s: kind %d %.*s %.*s\n", t->name, res.decisions[i].kind,
                        (int)res.decisions[i].subject.len, res.decisions[i].subject.ptr,
                        (int)res.decisions[i].project.len, res.decisions[i].project.ptr);
        return;
    }
    for (size_t i = 0; i < res.n; i++) {
        const ledger_decision_t *d = &res.decisions[i];
        if (d->kind != want[i].kind || !str_is(d->project, want[i].project) ||
            !str_is(d->subject, want[i].subject) || d->waited_ms != want[i].waited ||
            d->position != want[i].position) {
            twin_mismatch(t, "decision %zu is kind %d %.*s %.*s waited %lld position %lld", i,
                          d->kind, (int)d->project.len, d->project.ptr, (int)d->subject.len,
                          d->subject.ptr, (long long)d->waited_ms, (long long)d->position);
            return;
        }
    }
    const char *org = orgs[cur_spec->org].name;
    char da[1024], dt[1024];
    int na = ledger_describe(a, org, strlen(org), da, sizeof(da));
    int nt = ledger_describe(t->l, org, strlen(org), dt, sizeof(dt));
    if (na != nt || (na > 0 && strcmp(da, dt) != 0))
        twin_mismatch(t, "describe %s, A %s", nt > 0 ? dt : "-", na > 0 ? da : "-");
}

/* Rebuilds B from A's latest snapshots; both must then describe every organization alike. */
static void rebuild_b(twin_t *b, const ledger_t *a)
{
    ledger_free(b->l);
    b->l = ledger_new();
    assert_non_null(b->l);
    b->diverged = false;
    for (int i = 0; i < N_ORGS; i++) {
        if (!orgs[i].seen)
            continue;
        assert_non_null(blobs[i]);
        int rc = ledger_restore(b->l, blobs[i], blob_len[i]);
        if (rc != 0)
            fail_msg("restore of %s: %d", orgs[i].name, rc);
    }
    assert_int_equal(ledger_orgs(b->l), ledger_orgs(a));
    assert_int_equal(ledger_running(b->l), ledger_running(a));
    assert_int_equal(ledger_queued(b->l), ledger_queued(a));
    assert_int_equal(ledger_held(b->l), ledger_held(a));
    for (int i = 0; i < N_ORGS; i++) {
        char da[1024], db[1024];
        int na = ledger_describe(a, orgs[i].name, strlen(orgs[i].name), da, sizeof(da));
        int nb = ledger_describe(b->l, orgs[i].name, strlen(orgs[i].name), db, sizeof(db));
        if (na != nb || (na > 0 && strcmp(da, db) != 0))
            fail_msg("restored %s: %s vs %s", orgs[i].name, na > 0 ? da : "-", nb > 0 ? db : "-");
    }
}

/* ---- the test ---------------------------------------------------------------------------- */

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
    for (int i = 0; i < N_ORGS; i++) {
        free(orgs[i].runs);
        free(orgs[i].wfs);
        free(orgs[i].runrecs);
        free(orgs[i].wfrecs);
        free(blobs[i]);
    }
    free(runrecs);
    free(wfrecs);
    free(dirty_runs);
    free(dirty_wfs);
    free(want);
    return 0;
}

/* The book's tier table is the shipped one. */
static void test_tier_table(void **state)
{
    (void)state;
    assert_int_equal(tiers_count(tiers) >= (size_t)N_TIERS, true);
    for (int i = 0; i < N_TIERS; i++) {
        const tier_t *t = tiers_find(tiers, TIERS[i].name, strlen(TIERS[i].name));
        assert_non_null(t);
        assert_int_equal(t->concurrent_agents, TIERS[i].agents);
        assert_int_equal(t->workflows, TIERS[i].workflows);
        assert_int_equal(t->over_quota == TIERS_OVER_HOLD, TIERS[i].hold);
        assert_int_equal(t->period == TIERS_PERIOD_CALENDAR, TIERS[i].calendar);
    }
    assert_null(tiers_find(tiers, "platinum", 8));
    assert_null(tiers_find_promo(tiers, "summer", 6));
    assert_non_null(tiers_find_promo(tiers, "new_year", 8));
    /* the book's calendar */
    assert_int_equal(cal_month_start(1768021200123LL), 1767225600000LL);
    assert_int_equal(cal_add_months(1769817600000LL, 1), 1772236800000LL); /* Jan 31 → Feb 28 */
    assert_int_equal(cal_add_months(1832889600000LL, 1), 1835395200000LL); /* 2028: Feb 29 */
    assert_int_equal(cal_add_months(1769854830456LL, 1), 1772274030456LL);
}

static void test_properties(void **state)
{
    (void)state;
    rng_seed();
    init_orgs();
    ledger_t *a = ledger_new();
    assert_non_null(a);
    twin_t b = {"B (restored)", NULL, false, 0};
    twin_t c = {"C (sealed at random)", ledger_new(), false, 0};
    twin_t d = {"D (never sealed)", ledger_new(), false, 0};
    assert_non_null(c.l);
    assert_non_null(d.l);
    clock_t t0 = clock();
    for (event_index = 0; event_index < N_EVENTS; event_index++) {
        spec_t s;
        gen_event(&s);
        cur_spec = &s;
        wire_event_t ev = build_event(&s);
        ledger_result_t res;
        int rc = ledger_apply(a, tiers, &ev, 0, &res);
        cur_res = &res;
        book_apply(&s, rc, &res);
        check_describe(a, &orgs[s.org]);
        keep_decisions(&res);
        ledger_note_t note = res.note;
        cur_res = NULL;
        twin_apply(&b, &ev, rc, note, a);
        twin_apply(&c, &ev, rc, note, a);
        twin_apply(&d, &ev, rc, note, a);
        stats.events++;
        if (chance(1.0 / 150)) {
            pgcopy_t rows[BATCH_NTABLES];
            for (int i = 0; i < BATCH_NTABLES; i++)
                pgcopy_init(&rows[i]);
            int64_t nrows[BATCH_NTABLES] = {0};
            ledger_seal(c.l, 1, rows, nrows);
            for (int i = 0; i < BATCH_NTABLES; i++)
                pgcopy_close(&rows[i]);
            stats.seals_c++;
        }
        if ((event_index + 1) % CHECKPOINT == 0) {
            seal_and_check(a, (int32_t)((event_index + 1) / CHECKPOINT));
            rebuild_b(&b, a);
            stats.checkpoints++;
        }
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;

    /* the end: the book's open work is the ledgers' */
    size_t seen = 0, running = 0, queued = 0, held = 0;
    for (int i = 0; i < N_ORGS; i++) {
        morg_t *o = &orgs[i];
        seen += o->seen;
        for (int p = 0; p < o->nproj; p++) {
            running += (size_t)o->running[p];
            queued += (size_t)queue_len(o, p);
        }
        held += (size_t)hold_len(o);
        check_describe(a, o);
    }
    ledger_t *all[] = {a, b.diverged ? NULL : b.l, c.diverged ? NULL : c.l,
                       d.diverged ? NULL : d.l};
    for (size_t i = 0; i < 4; i++) {
        if (!all[i])
            continue;
        assert_int_equal(ledger_orgs(all[i]), seen);
        assert_int_equal(ledger_running(all[i]), running);
        assert_int_equal(ledger_queued(all[i]), queued);
        assert_int_equal(ledger_held(all[i]), held);
    }
    printf("events %ld orgs %zu (%.2f s): admitted %ld queued %ld (longest queue %ld) held %ld "
           "(longest %ld) released %ld; rolls %ld (%ld periods of silent organizations closed), "
           "tier changes %ld (downgrades below the "
           "running count %ld), packs %ld, refused %ld, no-ops %ld; C sealed %ld times; "
           "%ld checkpoints checked %ld usage and %ld run rows; open at the end: running %zu "
           "queued %zu held %zu\n",
           stats.events, seen, secs, stats.admitted, stats.queued, stats.max_queue, stats.held,
           stats.max_hold, stats.released, stats.rolls, stats.sweeps, stats.tier_changes,
           stats.downgrades_over, stats.packs, stats.refused, stats.noops, stats.seals_c,
           stats.checkpoints, stats.rows_usage, stats.rows_runs, running, queued, held);
    printf("replay: B %ld mismatch(es), C %ld, D %ld\n", b.mismatches, c.mismatches, d.mismatches);
    fflush(stdout);
    ledger_free(a);
    ledger_free(b.l);
    ledger_free(c.l);
    ledger_free(d.l);
    /* coverage: the run must have exercised what it checks */
    assert_true(seen >= 1000);
    assert_true(stats.queued > 1000 && stats.held > 100 && stats.released > 100);
    assert_true(stats.downgrades_over > 0 && stats.refused > 0 && stats.noops > 0);
    assert_int_equal(b.mismatches, 0);
    assert_int_equal(c.mismatches, 0);
    assert_int_equal(d.mismatches, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tier_table),
        cmocka_unit_test(test_properties),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
