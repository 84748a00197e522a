/*
 * ledger — admission state and its rules. See ledger.h for the rules themselves.
 *
 * DESIGN. Organizations, their projects, runs and workflows live in uthash tables keyed by
 * their ids; queues are doubly linked lists in arrival order (utlist). Iteration order of a
 * uthash table is insertion order, and a project is removed the moment it has neither running
 * nor queued runs, so the order in which a tier change admits across projects depends only on
 * the events — never on when batches were sealed. That is what makes replay exact: a snapshot
 * is written in iteration order and restored in the same order.
 *
 * Determinism also rules the records that ended: a finished run or workflow leaves the id
 * tables at once (it stays only on the dirty list until its row is sealed), so a reused id is a
 * new record whatever the seal timing was.
 *
 * Snapshots are msgpack maps (msgpack-c's packer); they are read back by ledger_restore with
 * msgpack_unpack and checked field by field, since a database can be edited by hand.
 */
#include "ledger.h"

#include <assert.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define uthash_fatal(msg) abort() /* out of memory: stop; the restart replays */
#include <uthash.h>
#include <utlist.h>

#include <xxhash.h>

#include "calendar.h"
#include "mpget.h"

#define SNAPSHOT_VERSION 2

typedef enum { RUN_QUEUED = 0, RUN_RUNNING, RUN_FINISHED, RUN_CANCELLED } run_state_t;
typedef enum { WF_HELD = 0, WF_RUNNING, WF_SUCCEEDED, WF_FAILED, WF_CANCELLED } wf_state_t;

static const char *const run_state_names[] = {"queued", "running", "finished", "cancelled"};
static const char *const wf_state_names[] = {"held", "running", "succeeded", "failed", "cancelled"};

typedef struct project project_t;

typedef struct run {
    char *id;
    uint32_t id_len;
    char *project; /* the project's id (a copy: the project may go before the row is sealed) */
    uint32_t project_len;
    char *workflow; /* optional, "" when absent */
    uint32_t workflow_len;
    run_state_t state;
    int64_t requested_at, admitted_at, finished_at; /* -1: not yet */
    bool dirty;
    struct run *prev, *next; /* the project's queue */
    struct run *dnext;       /* the ledger's dirty list */
    struct org *org;
    UT_hash_handle hh;
} run_t;

struct project {
    char *id;
    uint32_t id_len;
    int64_t running;
    int64_t queued;
    run_t *queue; /* oldest first */
    UT_hash_handle hh;
};

typedef struct workflow {
    char *id;
    uint32_t id_len;
    char *project;
    uint32_t project_len;
    wire_complexity_t complexity;
    wf_state_t state;
    char tier[TIERS_NAME_MAX + 1];                 /* the tier it was counted under */
    int64_t requested_at, started_at, finished_at; /* -1: not yet */
    bool billed;                                   /* counted against a period */
    bool overage;                                  /* counted beyond the quota */
    bool dirty;
    struct workflow *prev, *next; /* the organization's hold queue */
    struct workflow *dnext;
    struct org *org;
    UT_hash_handle hh;
} workflow_t;

typedef struct org {
    char *id;
    uint32_t id_len;
    char tier[TIERS_NAME_MAX + 1];
    char promo[TIERS_NAME_MAX + 1];
    int64_t promo_start;        /* start of the promo's first subscription month; -1 none */
    int64_t anchor;             /* subscription periods start on its monthly anniversaries */
    tiers_period_t period_kind; /* how the next period is computed */
    int64_t period_start, period_end;
    int64_t counted;    /* workflows counted this period */
    int64_t packs;      /* workflows bought this period */
    int64_t clock;      /* the latest ts of its events */
    bool quota_reached; /* a hold tier's quota was reached by the event being applied */
    bill_t bill;        /* the period's invoice items, credits, budget (billing.h) */
    /* What the last seal wrote, so that a seal writes only rows that changed (not in the
     * snapshot: after a restore everything is written once). 0: nothing yet. */
    uint64_t sealed_account, sealed_draft;
    bill_i128_t sealed_meter[BILL_METERS];
    project_t *projects;
    run_t *runs;
    workflow_t *workflows;
    workflow_t *held; /* oldest first */
    int64_t nheld;
    bool dirty;
    struct org *dnext;
    UT_hash_handle hh;
} org_t;

struct ledger {
    org_t *orgs;
    org_t *dirty_orgs;
    run_t *dirty_runs;
    workflow_t *dirty_wfs;
    ledger_decision_t *dec;
    size_t ndec, capdec;
    ledger_alert_t *alerts;
    size_t nalerts, capalerts;
    size_t running, queued, held;
    size_t closed;      /* periods closed by the event being applied */
    int64_t watermark;  /* the latest ts applied in the partition */
    int64_t next_close; /* no period ends before this (a lower bound) */
    /* final invoices not sealed yet, already encoded */
    pgcopy_t fin[BATCH_NTABLES];
    int64_t nfin[BATCH_NTABLES];
    pgcopy_t scratch[BATCH_NTABLES]; /* one organization's rows before deciding to write them */
};

/* ---------- helpers ---------- */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        abort();
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void set_name(char dst[TIERS_NAME_MAX + 1], const char *s, size_t n)
{
    if (n > TIERS_NAME_MAX)
        n = TIERS_NAME_MAX;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static const tier_t *tier_of(const tiers_t *tiers, const org_t *o)
{
    const tier_t *t = tiers_find(tiers, o->tier, strlen(o->tier));
    return t ? t : tiers_free_tier(tiers); /* a tier removed from the table since */
}

static void mark_org(ledger_t *l, org_t *o)
{
    if (!o->dirty) {
        o->dirty = true;
        o->dnext = l->dirty_orgs;
        l->dirty_orgs = o;
    }
}

static void mark_run(ledger_t *l, run_t *r)
{
    if (!r->dirty) {
        r->dirty = true;
        r->dnext = l->dirty_runs;
        l->dirty_runs = r;
    }
    mark_org(l, r->org);
}

static void mark_wf(ledger_t *l, workflow_t *w)
{
    if (!w->dirty) {
        w->dirty = true;
        w->dnext = l->dirty_wfs;
        l->dirty_wfs = w;
    }
    mark_org(l, w->org);
}

static void decide(ledger_t *l, const org_t *o, ledger_decision_kind_t kind, const char *project,
                   uint32_t project_len, const char *subject, uint32_t subject_len,
                   int64_t waited_ms, int64_t position)
{
    if (l->ndec == l->capdec) {
        size_t cap = l->capdec ? l->capdec * 2 : 16;
        ledger_decision_t *d = realloc(l->dec, cap * sizeof(*d));
        if (!d)
            abort();
        l->dec = d;
        l->capdec = cap;
    }
    l->dec[l->ndec++] = (ledger_decision_t){
        .kind = kind,
        .org = {o->id, o->id_len},
        .project = {project, project_len},
        .subject = {subject, subject_len},
        .waited_ms = waited_ms < 0 ? 0 : waited_ms,
        .position = position,
    };
}

static void alert(ledger_t *l, const org_t *o, const bill_alert_t *a)
{
    if (l->nalerts == l->capalerts) {
        size_t cap = l->capalerts ? l->capalerts * 2 : 8;
        ledger_alert_t *p = realloc(l->alerts, cap * sizeof(*p));
        if (!p)
            abort();
        l->alerts = p;
        l->capalerts = cap;
    }
    l->alerts[l->nalerts++] = (ledger_alert_t){.org = {o->id, o->id_len}, .alert = *a};
}

/* ---------- organizations and projects ---------- */

static org_t *org_new(ledger_t *l, const char *id, size_t len)
{
    org_t *o = calloc(1, sizeof(*o));
    if (!o)
        abort();
    o->id = dupn(id, len);
    o->id_len = (uint32_t)len;
    o->promo_start = -1;
    o->anchor = -1;
    bill_init(&o->bill);
    HASH_ADD_KEYPTR(hh, l->orgs, o->id, o->id_len, o);
    return o;
}

static const tier_promo_t *promo_of(const tiers_t *tiers, const org_t *o)
{
    return o->promo[0] ? tiers_find_promo(tiers, o->promo, strlen(o->promo)) : NULL;
}

/* A base-fee stretch from `from` at the fee in force for the organization's tier. */
static void fee_stretch(const tiers_t *tiers, org_t *o, int64_t from)
{
    const tier_t *t = tier_of(tiers, o);
    const tier_promo_t *promo = promo_of(tiers, o);
    bill_stretch(&o->bill, from, t, promo,
                 bill_fee_in_force(t, promo, o->promo_start, o->period_start));
}

static void note_period_end(ledger_t *l, const org_t *o)
{
    if (o->period_end < l->next_close)
        l->next_close = o->period_end;
}

static org_t *org_get(ledger_t *l, const tiers_t *tiers, const wire_event_t *ev)
{
    org_t *o;
    HASH_FIND(hh, l->orgs, ev->org.ptr, ev->org.len, o);
    if (o)
        return o;
    o = org_new(l, ev->org.ptr, ev->org.len);
    const tier_t *free_tier = tiers_free_tier(tiers);
    set_name(o->tier, free_tier->name, free_tier->name_len);
    o->period_kind = TIERS_PERIOD_CALENDAR;
    o->period_start = cal_month_start(ev->ts);
    o->period_end = cal_add_months(o->period_start, 1);
    o->clock = ev->ts;
    bill_open_period(&o->bill, o->period_start, o->period_end);
    fee_stretch(tiers, o, o->period_start);
    note_period_end(l, o);
    mark_org(l, o);
    return o;
}

static project_t *project_get(org_t *o, const char *id, uint32_t len)
{
    project_t *p;
    HASH_FIND(hh, o->projects, id, len, p);
    if (p)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    p->id = dupn(id, len);
    p->id_len = len;
    HASH_ADD_KEYPTR(hh, o->projects, p->id, p->id_len, p);
    return p;
}

/* A project with nothing running or waiting is forgotten at once (see DESIGN). */
static void project_drop_if_idle(org_t *o, project_t *p)
{
    if (p->running == 0 && p->queued == 0) {
        HASH_DEL(o->projects, p);
        free(p->id);
        free(p);
    }
}

/* ---------- agents ---------- */

static bool slot_free(const tier_t *t, const project_t *p)
{
    return t->concurrent_agents == TIERS_UNLIMITED || p->running < t->concurrent_agents;
}

static void admit(ledger_t *l, project_t *p, run_t *r, int64_t now)
{
    r->state = RUN_RUNNING;
    r->admitted_at = now;
    p->running++;
    l->running++;
    mark_run(l, r);
    decide(l, r->org, LEDGER_AGENT_ADMITTED, p->id, p->id_len, r->id, r->id_len,
           now - r->requested_at, 0);
}

/* Admits the oldest queued runs of p while slots are free. */
static void admit_queued(ledger_t *l, const tier_t *t, project_t *p, int64_t now)
{
    while (p->queue && slot_free(t, p)) {
        run_t *r = p->queue;
        DL_DELETE(p->queue, r);
        p->queued--;
        l->queued--;
        admit(l, p, r, now);
    }
}

static void admit_all_projects(ledger_t *l, const tier_t *t, org_t *o, int64_t now)
{
    project_t *p, *tmp;
    HASH_ITER(hh, o->projects, p, tmp)
    {
        admit_queued(l, t, p, now);
    }
}

static run_t *open_run(org_t *o, const wire_str_t *id)
{
    run_t *r;
    HASH_FIND(hh, o->runs, id->ptr, id->len, r);
    return r;
}

static void agent_requested(ledger_t *l, const tier_t *t, org_t *o, const wire_event_t *ev,
                            ledger_result_t *res)
{
    if (open_run(o, &ev->run)) {
        res->note = LEDGER_NOOP_KNOWN_RUN;
        return;
    }
    run_t *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->id = dupn(ev->run.ptr, ev->run.len);
    r->id_len = ev->run.len;
    r->project = dupn(ev->project.ptr, ev->project.len);
    r->project_len = ev->project.len;
    r->workflow = dupn(ev->workflow.ptr ? ev->workflow.ptr : "", ev->workflow.len);
    r->workflow_len = ev->workflow.len;
    r->requested_at = ev->ts;
    r->admitted_at = r->finished_at = -1;
    r->org = o;
    HASH_ADD_KEYPTR(hh, o->runs, r->id, r->id_len, r);
    project_t *p = project_get(o, ev->project.ptr, ev->project.len);
    if (slot_free(t, p)) {
        admit(l, p, r, ev->ts);
        return;
    }
    r->state = RUN_QUEUED;
    DL_APPEND(p->queue, r);
    p->queued++;
    l->queued++;
    mark_run(l, r);
    decide(l, o, LEDGER_AGENT_QUEUED, p->id, p->id_len, r->id, r->id_len, 0, p->queued);
}

/* agent.finished / agent.cancelled: the run ends; a running one frees its slot. */
static void agent_ended(ledger_t *l, const tier_t *t, org_t *o, const wire_event_t *ev,
                        ledger_result_t *res)
{
    run_t *r = open_run(o, &ev->run);
    if (!r) {
        res->note = LEDGER_NOOP_UNKNOWN_RUN;
        return;
    }
    project_t *p = project_get(o, r->project, r->project_len);
    HASH_DEL(o->runs, r); /* ended: a reused id is a new run (see DESIGN) */
    r->finished_at = ev->ts;
    if (r->state == RUN_QUEUED) {
        DL_DELETE(p->queue, r);
        p->queued--;
        l->queued--;
        r->state = RUN_CANCELLED;
        mark_run(l, r);
    } else {
        r->state = ev->type == WIRE_T_AGENT_FINISHED ? RUN_FINISHED : RUN_CANCELLED;
        bill_agent(&o->bill, t, ev->ts - r->admitted_at);
        p->running--;
        l->running--;
        mark_run(l, r);
        admit_queued(l, t, p, ev->ts);
    }
    project_drop_if_idle(o, p);
}

/* ---------- workflows ---------- */

static int64_t quota_of(const tier_t *t, const org_t *o)
{
    return t->workflows == TIERS_UNLIMITED ? TIERS_UNLIMITED : t->workflows + o->packs;
}

/* Counts w against the period and starts it. */
static void count_workflow(ledger_t *l, const tier_t *t, org_t *o, workflow_t *w, int64_t now)
{
    int64_t quota = quota_of(t, o);
    w->overage = quota != TIERS_UNLIMITED && o->counted >= quota;
    w->billed = true;
    w->state = WF_RUNNING;
    w->started_at = now;
    set_name(w->tier, t->name, t->name_len);
    o->counted++;
    bill_workflow(&o->bill, t, w->complexity, w->overage);
    if (t->over_quota == TIERS_OVER_HOLD && quota != TIERS_UNLIMITED && o->counted >= quota)
        o->quota_reached = true;
    mark_wf(l, w);
}

static bool must_hold(const tier_t *t, const org_t *o)
{
    int64_t quota = quota_of(t, o);
    return t->over_quota == TIERS_OVER_HOLD && quota != TIERS_UNLIMITED && o->counted >= quota;
}

/* Releases held workflows, oldest first, while the quota allows. */
static void release_held(ledger_t *l, const tier_t *t, org_t *o, int64_t now)
{
    while (o->held && !must_hold(t, o)) {
        workflow_t *w = o->held;
        DL_DELETE(o->held, w);
        o->nheld--;
        l->held--;
        count_workflow(l, t, o, w, now);
        decide(l, o, LEDGER_WORKFLOW_RELEASED, w->project, w->project_len, w->id, w->id_len,
               now - w->requested_at, 0);
    }
}

static void workflow_started(ledger_t *l, const tier_t *t, org_t *o, const wire_event_t *ev,
                             ledger_result_t *res)
{
    workflow_t *w;
    HASH_FIND(hh, o->workflows, ev->workflow.ptr, ev->workflow.len, w);
    if (w) {
        res->note = LEDGER_NOOP_KNOWN_WORKFLOW;
        return;
    }
    w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->id = dupn(ev->workflow.ptr, ev->workflow.len);
    w->id_len = ev->workflow.len;
    w->project = dupn(ev->project.ptr, ev->project.len);
    w->project_len = ev->project.len;
    w->complexity = ev->complexity;
    w->requested_at = ev->ts;
    w->started_at = w->finished_at = -1;
    w->org = o;
    HASH_ADD_KEYPTR(hh, o->workflows, w->id, w->id_len, w);
    if (!o->held && !must_hold(t, o)) {
        count_workflow(l, t, o, w, ev->ts);
        return;
    }
    /* Over a free quota (or behind others already waiting): held, never lost. */
    w->state = WF_HELD;
    set_name(w->tier, t->name, t->name_len);
    DL_APPEND(o->held, w);
    o->nheld++;
    l->held++;
    bill_workflow_held(&o->bill);
    o->quota_reached = true;
    mark_wf(l, w);
    decide(l, o, LEDGER_WORKFLOW_HELD, w->project, w->project_len, w->id, w->id_len, 0, o->nheld);
}

static void workflow_finished(ledger_t *l, org_t *o, const wire_event_t *ev, ledger_result_t *res)
{
    workflow_t *w;
    HASH_FIND(hh, o->workflows, ev->workflow.ptr, ev->workflow.len, w);
    if (!w) {
        res->note = LEDGER_NOOP_UNKNOWN_WORKFLOW;
        return;
    }
    HASH_DEL(o->workflows, w);
    if (w->state == WF_HELD) {
        DL_DELETE(o->held, w);
        o->nheld--;
        l->held--;
    }
    w->state = ev->status == WIRE_STATUS_SUCCEEDED ? WF_SUCCEEDED
               : ev->status == WIRE_STATUS_FAILED  ? WF_FAILED
                                                   : WF_CANCELLED;
    w->finished_at = ev->ts;
    mark_wf(l, w);
}

/* ---------- invoices ---------- */

static void copy_ts_or_null(pgcopy_t *b, int64_t ts)
{
    if (ts < 0)
        pgcopy_null(b);
    else
        pgcopy_timestamptz_ms(b, ts);
}

static void copy_i128(pgcopy_t *b, bill_i128_t v)
{
    char buf[48];
    int n = bill_i128_text(v, buf);
    pgcopy_text(b, buf, (size_t)n);
}

static void copy_cstr(pgcopy_t *b, const char *s)
{
    pgcopy_text(b, s, strlen(s));
}

/* invoices.id: the organization, '/', the period start in Unix ms. */
static void copy_invoice_id(pgcopy_t *b, const org_t *o, int64_t period_start)
{
    char id[WIRE_MAX_ID * 4 + 32];
    int n = snprintf(id, sizeof(id), "%.*s/%lld", (int)o->id_len, o->id, (long long)period_start);
    pgcopy_text(b, id, (size_t)n);
}

static bill_i128_t meter_value(const org_t *o, int m)
{
    return m == BILL_M_STORAGE_BYTE_MS ? o->bill.storage_byte_ms : o->bill.meters[m];
}

/* usage_rollups rows of the meters that changed since the last seal (all grow within a period
 * and start at 0, which is never written). */
static void encode_rollups(pgcopy_t *rows, int64_t *nrows, org_t *o, int64_t period_start)
{
    pgcopy_t *r = &rows[BATCH_ROLLUPS];
    for (int m = 0; m < BILL_METERS; m++) {
        bill_i128_t v = meter_value(o, m);
        if (v == o->sealed_meter[m])
            continue;
        o->sealed_meter[m] = v;
        pgcopy_row(r, 4);
        pgcopy_text(r, o->id, o->id_len);
        pgcopy_timestamptz_ms(r, period_start);
        copy_cstr(r, bill_meter_name((bill_meter_t)m));
        copy_i128(r, v);
        nrows[BATCH_ROLLUPS]++;
    }
}

/* The invoice row, its lines and its period's stretches. */
static void encode_invoice(pgcopy_t *rows, int64_t *nrows, const org_t *o,
                           const bill_invoice_t *inv)
{
    pgcopy_t *r = &rows[BATCH_INVOICES];
    pgcopy_row(r, 9);
    copy_invoice_id(r, o, inv->period_start);
    pgcopy_text(r, o->id, o->id_len);
    pgcopy_timestamptz_ms(r, inv->period_start);
    pgcopy_timestamptz_ms(r, inv->period_end);
    pgcopy_timestamptz_ms(r, inv->nominal_end);
    copy_cstr(r, inv->final ? "final" : "draft");
    pgcopy_int8(r, inv->subtotal_cents);
    pgcopy_int8(r, inv->credits_cents);
    pgcopy_int8(r, inv->total_cents);
    nrows[BATCH_INVOICES]++;

    r = &rows[BATCH_LINES];
    for (size_t i = 0; i < inv->n; i++) {
        const bill_line_t *ln = &inv->lines[i];
        char desc[256];
        bill_describe(ln, desc, sizeof(desc));
        pgcopy_row(r, 9);
        copy_invoice_id(r, o, inv->period_start);
        pgcopy_int4(r, (int32_t)i + 1);
        copy_cstr(r, bill_kind_name(ln->kind));
        copy_cstr(r, ln->detail);
        copy_cstr(r, desc);
        copy_i128(r, ln->raw);
        copy_i128(r, ln->scale);
        pgcopy_int8(r, ln->unit_price_micros);
        pgcopy_int8(r, ln->amount_cents);
        nrows[BATCH_LINES]++;
    }

    r = &rows[BATCH_SUBS];
    for (size_t i = 0; i < o->bill.nstretches; i++) {
        const bill_stretch_t *st = &o->bill.stretches[i];
        int64_t to = i + 1 < o->bill.nstretches ? o->bill.stretches[i + 1].from : inv->period_end;
        pgcopy_row(r, 7);
        pgcopy_text(r, o->id, o->id_len);
        pgcopy_timestamptz_ms(r, inv->period_start);
        pgcopy_timestamptz_ms(r, st->from);
        pgcopy_timestamptz_ms(r, to > st->from ? to : st->from);
        copy_cstr(r, st->tier);
        copy_cstr(r, st->promo);
        pgcopy_int8(r, st->fee_micros);
        nrows[BATCH_SUBS]++;
    }
}

/* ---------- periods and tiers ---------- */

/* Closes o's open period at `end`, its actual end: the final invoice is encoded for the next
 * seal and the credits it applied leave the balance. */
static void close_period(ledger_t *l, const tiers_t *tiers, org_t *o, int64_t end)
{
    bill_storage_advance(&o->bill, tier_of(tiers, o), end);
    bill_invoice_t inv;
    bill_invoice(&o->bill, end, &inv);
    encode_invoice(l->fin, l->nfin, o, &inv);
    encode_rollups(l->fin, l->nfin, o, inv.period_start);
    o->sealed_draft = 0; /* the next period's draft is new */
    memset(o->sealed_meter, 0, sizeof(o->sealed_meter));
    l->closed++;
    bill_settle(&o->bill, &inv);
    bill_invoice_free(&inv);
}

static void begin_period(ledger_t *l, const tiers_t *tiers, org_t *o, int64_t start, int64_t end)
{
    o->period_start = start;
    o->period_end = end;
    o->counted = 0;
    o->packs = 0;
    bill_open_period(&o->bill, start, end);
    fee_stretch(tiers, o, start);
    note_period_end(l, o);
}

/* Moves the organization into the period containing ts, closing the periods it leaves;
 * returns whether it moved. */
static bool roll(ledger_t *l, const tiers_t *tiers, org_t *o, int64_t ts)
{
    bool rolled = false;
    while (ts >= o->period_end) {
        int64_t start = o->period_end;
        if (o->period_kind == TIERS_PERIOD_SUBSCRIPTION && (o->anchor < 0 || o->anchor > start))
            o->anchor = start; /* the subscription's first own period */
        int64_t end = o->period_kind == TIERS_PERIOD_CALENDAR
                          ? cal_add_months(cal_month_start(start), 1)
                          : cal_next_anniversary(o->anchor, start);
        close_period(l, tiers, o, start);
        begin_period(l, tiers, o, start, end);
        rolled = true;
    }
    if (rolled)
        mark_org(l, o);
    return rolled;
}

/* Budget events due for o now (billing.h). */
static void check_budget(ledger_t *l, org_t *o)
{
    bill_alert_t a[WIRE_MAX_THRESHOLDS + 4];
    size_t n = 0;
    bill_check(&o->bill, o->quota_reached, a, sizeof(a) / sizeof(a[0]), &n);
    o->quota_reached = false;
    for (size_t i = 0; i < n; i++)
        alert(l, o, &a[i]);
    if (n)
        mark_org(l, o);
}

static void change_tier(ledger_t *l, const tiers_t *tiers, org_t *o, const tier_t *t,
                        const wire_event_t *ev)
{
    if (ev->present & WIRE_HAS_PERIOD_START && ev->period_start > o->period_start) {
        int64_t end = ev->present & WIRE_HAS_PERIOD_END ? ev->period_end
                                                        : cal_add_months(ev->period_start, 1);
        /* the open period ends where the new one starts (at the latest at its own end) */
        close_period(l, tiers, o,
                     ev->period_start < o->period_end ? ev->period_start : o->period_end);
        begin_period(l, tiers, o, ev->period_start, end);
        /* the next periods start on the anniversaries of this one's end if it was given
         * (a trial of a few days, then monthly), else of its start */
        o->anchor = ev->present & WIRE_HAS_PERIOD_END ? end : ev->period_start;
    } else if (ev->present & WIRE_HAS_PERIOD_END && ev->period_end > o->period_start) {
        o->period_end = ev->period_end;
        o->anchor = ev->period_end;
        bill_set_nominal_end(&o->bill, ev->period_end);
        note_period_end(l, o);
    }
    set_name(o->tier, t->name, t->name_len);
    if (t->period != TIERS_PERIOD_SUBSCRIPTION)
        o->anchor = -1; /* a later subscription anchors afresh */
    o->period_kind = t->period;
    if (ev->type == WIRE_T_SUBSCRIPTION_CHANGED && ev->promo.len) {
        /* a promotion restated (a renewal) keeps its months */
        if (strlen(o->promo) != ev->promo.len || memcmp(o->promo, ev->promo.ptr, ev->promo.len)) {
            set_name(o->promo, ev->promo.ptr, ev->promo.len);
            o->promo_start = o->period_start;
        }
    } else {
        o->promo[0] = '\0'; /* a subscription without the promotion ends it */
        o->promo_start = -1;
    }
    fee_stretch(tiers, o, ev->ts > o->period_start ? ev->ts : o->period_start);
    if (ev->type == WIRE_T_SUBSCRIPTION_CHANGED)
        bill_one_time(&o->bill, t);
    mark_org(l, o);
    roll(l, tiers, o, ev->ts); /* an explicit period may already be over */
    const tier_t *now_t = tier_of(tiers, o);
    admit_all_projects(l, now_t, o, ev->ts);
    release_held(l, now_t, o, ev->ts);
}

/* Sweep order: by period end, then id — never the table's order, which a restore changes. */
static int by_end_then_id(const void *a, const void *b)
{
    const org_t *x = *(org_t *const *)a, *y = *(org_t *const *)b;
    if (x->period_end != y->period_end)
        return x->period_end < y->period_end ? -1 : 1;
    size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
    int c = memcmp(x->id, y->id, n);
    return c ? c : (x->id_len > y->id_len) - (x->id_len < y->id_len);
}

/* Closes the periods of silent organizations: every period that ended LEDGER_CLOSE_GRACE_MS
 * before the partition's latest event, organizations in by_end_then_id order. The decisions
 * and budget events it causes are dated `now`, the causing event's ts. */
static void sweep(ledger_t *l, const tiers_t *tiers, int64_t now)
{
    int64_t horizon = l->watermark - LEDGER_CLOSE_GRACE_MS;
    int64_t next = INT64_MAX;
    size_t n = 0;
    for (org_t *x = l->orgs; x; x = x->hh.next)
        n += x->period_end <= horizon;
    org_t **due = n ? malloc(n * sizeof(*due)) : NULL;
    if (n && !due)
        abort(); /* out of memory: the restart replays */
    n = 0;
    for (org_t *x = l->orgs; x; x = x->hh.next)
        if (x->period_end <= horizon)
            due[n++] = x;
    if (n)
        qsort(due, n, sizeof(*due), by_end_then_id);
    for (size_t i = 0; i < n; i++) {
        roll(l, tiers, due[i], horizon);
        release_held(l, tier_of(tiers, due[i]), due[i], now);
        check_budget(l, due[i]);
    }
    free(due);
    for (org_t *x = l->orgs; x; x = x->hh.next)
        if (x->period_end < next)
            next = x->period_end;
    l->next_close = next;
}

/* ---------- apply ---------- */

int ledger_apply(ledger_t *l, const tiers_t *tiers, const wire_event_t *ev, int64_t cost_nanos,
                 ledger_result_t *res)
{
    const tier_t *new_tier = NULL;
    l->ndec = 0;
    l->nalerts = 0;
    l->closed = 0;
    memset(res, 0, sizeof(*res));
    res->decisions = l->dec;
    res->alerts = l->alerts;
    if (ev->type == WIRE_T_SUBSCRIPTION_CHANGED) {
        new_tier = tiers_find(tiers, ev->tier.ptr, ev->tier.len);
        if (!new_tier)
            return LEDGER_E_UNKNOWN_TIER;
        if (ev->promo.len && !tiers_find_promo(tiers, ev->promo.ptr, ev->promo.len))
            return LEDGER_E_UNKNOWN_PROMO;
    } else if (ev->type == WIRE_T_SUBSCRIPTION_CANCELLED) {
        new_tier = tiers_free_tier(tiers);
    }
    org_t *o = org_get(l, tiers, ev);
    if (roll(l, tiers, o, ev->ts))
        release_held(l, tier_of(tiers, o), o, ev->ts);
    if (ev->ts > o->clock)
        o->clock = ev->ts;
    const tier_t *t = tier_of(tiers, o);
    bill_storage_advance(&o->bill, t, ev->ts); /* usage up to the organization's clock */
    mark_org(l, o);
    switch (ev->type) {
    case WIRE_T_AGENT_REQUESTED:
        agent_requested(l, t, o, ev, res);
        break;
    case WIRE_T_AGENT_FINISHED:
    case WIRE_T_AGENT_CANCELLED:
        agent_ended(l, t, o, ev, res);
        break;
    case WIRE_T_WORKFLOW_STARTED:
        workflow_started(l, t, o, ev, res);
        break;
    case WIRE_T_WORKFLOW_FINISHED:
        workflow_finished(l, o, ev, res);
        break;
    case WIRE_T_SUBSCRIPTION_CHANGED:
    case WIRE_T_SUBSCRIPTION_CANCELLED:
        change_tier(l, tiers, o, new_tier, ev);
        break;
    case WIRE_T_PACK_PURCHASED:
        o->packs += ev->workflows;
        release_held(l, t, o, ev->ts);
        break;
    case WIRE_T_LLM_CALL:
        bill_llm(&o->bill, t, cost_nanos, ev->byo);
        break;
    case WIRE_T_API_CALL:
        bill_api(&o->bill, t, ev->count);
        break;
    case WIRE_T_STORAGE_REPORT:
        bill_storage_report(&o->bill, t, ev->ts, ev->bytes);
        break;
    case WIRE_T_CREDITS_ADDED:
        bill_credits(&o->bill, ev->amount_micros);
        break;
    case WIRE_T_BUDGET_SET:
        bill_budget(&o->bill, ev->monthly_limit_micros, ev->thresholds, ev->n_thresholds);
        break;
    default:
        break;
    }
    check_budget(l, o);
    if (ev->ts > l->watermark)
        l->watermark = ev->ts;
    if (l->watermark - LEDGER_CLOSE_GRACE_MS >= l->next_close)
        sweep(l, tiers, ev->ts);
    res->n = l->ndec;
    res->decisions = l->dec;
    res->n_alerts = l->nalerts;
    res->alerts = l->alerts;
    res->closed = l->closed;
    return 0;
}

/* ---------- snapshots ---------- */

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    pack_str(pk, s, strlen(s));
}

static void pack_wf(msgpack_packer *pk, const workflow_t *w)
{
    msgpack_pack_array(pk, 9);
    pack_str(pk, w->id, w->id_len);
    pack_str(pk, w->project, w->project_len);
    msgpack_pack_int64(pk, w->complexity);
    msgpack_pack_int64(pk, w->state);
    pack_cstr(pk, w->tier);
    msgpack_pack_int64(pk, w->requested_at);
    msgpack_pack_int64(pk, w->started_at);
    msgpack_pack_int64(pk, w->billed);
    msgpack_pack_int64(pk, w->overage);
}

/* The snapshot of one organization: a msgpack array (positional, versioned). Tables are
 * written in their iteration order and queues as id lists, so that a restored organization
 * iterates exactly as the original did (see DESIGN). */
#define SNAPSHOT_FIELDS 17
static void pack_org(msgpack_packer *pk, const org_t *o)
{
    msgpack_pack_array(pk, SNAPSHOT_FIELDS);
    msgpack_pack_int64(pk, SNAPSHOT_VERSION);
    pack_str(pk, o->id, o->id_len);
    pack_cstr(pk, o->tier);
    pack_cstr(pk, o->promo);
    msgpack_pack_int64(pk, o->promo_start);
    msgpack_pack_int64(pk, o->period_kind);
    msgpack_pack_int64(pk, o->period_start);
    msgpack_pack_int64(pk, o->period_end);
    msgpack_pack_int64(pk, o->counted);
    msgpack_pack_int64(pk, o->packs);
    msgpack_pack_int64(pk, o->clock);
    /* open runs, in id-table order; queues are listed per project below */
    msgpack_pack_array(pk, HASH_COUNT(o->runs));
    for (const run_t *r = o->runs; r; r = r->hh.next) {
        msgpack_pack_array(pk, 6);
        pack_str(pk, r->id, r->id_len);
        pack_str(pk, r->project, r->project_len);
        pack_str(pk, r->workflow, r->workflow_len);
        msgpack_pack_int64(pk, r->state);
        msgpack_pack_int64(pk, r->requested_at);
        msgpack_pack_int64(pk, r->admitted_at);
    }
    /* projects in table order, each with its queue oldest first */
    msgpack_pack_array(pk, HASH_COUNT(o->projects));
    for (const project_t *p = o->projects; p; p = p->hh.next) {
        msgpack_pack_array(pk, 2);
        pack_str(pk, p->id, p->id_len);
        msgpack_pack_array(pk, (size_t)p->queued);
        for (const run_t *r = p->queue; r; r = r->next)
            pack_str(pk, r->id, r->id_len);
    }
    /* open workflows in table order, then the hold queue as ids, oldest first */
    msgpack_pack_array(pk, HASH_COUNT(o->workflows));
    for (const workflow_t *w = o->workflows; w; w = w->hh.next)
        pack_wf(pk, w);
    msgpack_pack_array(pk, (size_t)o->nheld);
    for (const workflow_t *w = o->held; w; w = w->next)
        pack_str(pk, w->id, w->id_len);
    bill_pack(pk, &o->bill);
    msgpack_pack_int64(pk, o->anchor);
}

/* ---------- sealing ---------- */

static void free_run(run_t *r)
{
    free(r->id);
    free(r->project);
    free(r->workflow);
    free(r);
}

static void free_wf(workflow_t *w)
{
    free(w->id);
    free(w->project);
    free(w);
}

/* billing_accounts: what the organization's account holds now. */
static void encode_account(pgcopy_t *r, const org_t *o)
{
    char th[WIRE_MAX_THRESHOLDS * 5 + 1];
    size_t at = 0;
    for (uint32_t i = 0; i < o->bill.nthresholds; i++)
        at += (size_t)snprintf(th + at, sizeof(th) - at, "%s%d", i ? "," : "",
                               (int)o->bill.thresholds[i]);
    th[at] = '\0';
    pgcopy_row(r, 8);
    pgcopy_text(r, o->id, o->id_len);
    copy_cstr(r, o->tier);
    copy_cstr(r, o->promo);
    pgcopy_timestamptz_ms(r, o->period_start);
    pgcopy_timestamptz_ms(r, o->period_end);
    pgcopy_int8(r, o->bill.credits_micros);
    pgcopy_int8(r, o->bill.budget_micros);
    pgcopy_text(r, th, at);
}

void ledger_seal(ledger_t *l, int32_t checkpoint_id, pgcopy_t rows[BATCH_NTABLES],
                 int64_t nrows[BATCH_NTABLES])
{
    pgcopy_t *state = &rows[BATCH_STATE], *usage = &rows[BATCH_USAGE], *runs = &rows[BATCH_RUNS];
    int64_t *nstate = &nrows[BATCH_STATE], *nusage = &nrows[BATCH_USAGE],
            *nruns = &nrows[BATCH_RUNS];
    /* the final invoices of periods closed since the last seal, then every changed
     * organization's account and draft */
    for (int t = 0; t < BATCH_NTABLES; t++) {
        if (l->nfin[t]) {
            pgcopy_append(&rows[t], l->fin[t].p, l->fin[t].len);
            nrows[t] += l->nfin[t];
        }
        pgcopy_reset(&l->fin[t]);
        l->nfin[t] = 0;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (org_t *o = l->dirty_orgs, *next; o; o = next) {
        next = o->dnext;
        o->dirty = false;
        o->dnext = NULL;
        msgpack_sbuffer_clear(&sb);
        pack_org(&pk, o);
        pgcopy_row(state, 3);
        pgcopy_int4(state, checkpoint_id);
        pgcopy_text(state, o->id, o->id_len);
        pgcopy_bytea(state, sb.data, sb.size);
        (*nstate)++;
        /* the account and the draft only when they changed: most events (an llm.call of a
         * tier that does not bill it) change only the rollups */
        pgcopy_t *sc = l->scratch;
        int64_t nsc[BATCH_NTABLES] = {0};
        for (int t = 0; t < BATCH_NTABLES; t++)
            pgcopy_reset(&sc[t]);
        encode_account(&sc[BATCH_ACCOUNTS], o);
        uint64_t h = XXH3_64bits(sc[BATCH_ACCOUNTS].p, sc[BATCH_ACCOUNTS].len);
        if (h != o->sealed_account) {
            o->sealed_account = h;
            pgcopy_append(&rows[BATCH_ACCOUNTS], sc[BATCH_ACCOUNTS].p, sc[BATCH_ACCOUNTS].len);
            nrows[BATCH_ACCOUNTS]++;
        }
        bill_invoice_t inv;
        bill_invoice(&o->bill, -1, &inv);
        encode_invoice(sc, nsc, o, &inv);
        static const batch_table_t draft_tables[] = {BATCH_INVOICES, BATCH_LINES, BATCH_SUBS};
        h = 0;
        for (size_t i = 0; i < 3; i++) /* chained: each table's hash seeds the next */
            h = XXH3_64bits_withSeed(sc[draft_tables[i]].p, sc[draft_tables[i]].len, h);
        if (h != o->sealed_draft) {
            o->sealed_draft = h;
            for (size_t i = 0; i < 3; i++) {
                pgcopy_append(&rows[draft_tables[i]], sc[draft_tables[i]].p,
                              sc[draft_tables[i]].len);
                nrows[draft_tables[i]] += nsc[draft_tables[i]];
            }
        }
        encode_rollups(rows, nrows, o, inv.period_start);
        bill_invoice_free(&inv);
    }
    l->dirty_orgs = NULL;
    msgpack_sbuffer_destroy(&sb);

    for (workflow_t *w = l->dirty_wfs, *next; w; w = next) {
        next = w->dnext;
        w->dirty = false;
        w->dnext = NULL;
        pgcopy_row(usage, 11);
        pgcopy_text(usage, w->org->id, w->org->id_len);
        pgcopy_text(usage, w->project, w->project_len);
        pgcopy_text(usage, w->id, w->id_len);
        pgcopy_text(usage, wire_complexity_name(w->complexity),
                    strlen(wire_complexity_name(w->complexity)));
        pgcopy_text(usage, wf_state_names[w->state], strlen(wf_state_names[w->state]));
        pgcopy_text(usage, w->tier, strlen(w->tier));
        pgcopy_timestamptz_ms(usage, w->requested_at);
        copy_ts_or_null(usage, w->started_at);
        copy_ts_or_null(usage, w->finished_at);
        pgcopy_bool(usage, w->billed);
        pgcopy_bool(usage, w->overage);
        (*nusage)++;
        if (w->state >= WF_SUCCEEDED)
            free_wf(w); /* ended and written: no longer in any table */
    }
    l->dirty_wfs = NULL;

    for (run_t *r = l->dirty_runs, *next; r; r = next) {
        next = r->dnext;
        r->dirty = false;
        r->dnext = NULL;
        pgcopy_row(runs, 10);
        pgcopy_text(runs, r->org->id, r->org->id_len);
        pgcopy_text(runs, r->project, r->project_len);
        pgcopy_text(runs, r->id, r->id_len);
        pgcopy_text(runs, r->workflow, r->workflow_len);
        pgcopy_text(runs, run_state_names[r->state], strlen(run_state_names[r->state]));
        pgcopy_timestamptz_ms(runs, r->requested_at);
        copy_ts_or_null(runs, r->admitted_at);
        copy_ts_or_null(runs, r->finished_at);
        int64_t waited = r->admitted_at >= 0 ? r->admitted_at - r->requested_at : 0;
        int64_t ran =
            r->admitted_at >= 0 && r->finished_at >= 0 ? r->finished_at - r->admitted_at : 0;
        pgcopy_int8(runs, waited < 0 ? 0 : waited);
        pgcopy_int8(runs, ran < 0 ? 0 : ran);
        (*nruns)++;
        if (r->state >= RUN_FINISHED)
            free_run(r);
    }
    l->dirty_runs = NULL;
}

/* ---------- restore ---------- */

typedef struct {
    const msgpack_object *items;
    uint32_t n;
} arr_t;

static int get_arr(const msgpack_object *o, uint32_t n_min, arr_t *out)
{
    return mpget_arr(o, n_min, UINT32_MAX, &out->items, &out->n);
}

static int get_name(const msgpack_object *o, char dst[TIERS_NAME_MAX + 1])
{
    const char *p;
    uint32_t n;
    if (mpget_str(o, &p, &n, TIERS_NAME_MAX) < 0)
        return -1;
    set_name(dst, p, n);
    return 0;
}

static int restore_runs(ledger_t *l, org_t *o, const arr_t *runs, const arr_t *projects)
{
    /* Projects first, in the snapshot's order: it is the order a tier change admits in. */
    arr_t *queues = calloc(projects->n ? projects->n : 1, sizeof(arr_t));
    if (!queues)
        abort();
    for (uint32_t i = 0; i < projects->n; i++) {
        arr_t f;
        const char *pid;
        uint32_t pidn;
        project_t *dup;
        if (get_arr(&projects->items[i], 2, &f) < 0 ||
            mpget_str(&f.items[0], &pid, &pidn, 1024) < 0 ||
            get_arr(&f.items[1], 0, &queues[i]) < 0) {
            free(queues);
            return -1;
        }
        HASH_FIND(hh, o->projects, pid, pidn, dup);
        if (dup) {
            free(queues);
            return -1;
        }
        project_get(o, pid, pidn);
    }
    for (uint32_t i = 0; i < runs->n; i++) {
        arr_t f;
        const char *id, *proj, *wf;
        uint32_t idn, projn, wfn;
        int64_t state, req, adm;
        if (get_arr(&runs->items[i], 6, &f) < 0 || mpget_str(&f.items[0], &id, &idn, 1024) < 0 ||
            mpget_str(&f.items[1], &proj, &projn, 1024) < 0 ||
            mpget_str(&f.items[2], &wf, &wfn, 1024) < 0 || mpget_i64(&f.items[3], &state) < 0 ||
            mpget_i64(&f.items[4], &req) < 0 || mpget_i64(&f.items[5], &adm) < 0 ||
            (state != RUN_QUEUED && state != RUN_RUNNING)) {
            free(queues);
            return -1;
        }
        project_t *p;
        HASH_FIND(hh, o->projects, proj, projn, p);
        if (!p) { /* a run of a project the snapshot does not list */
            free(queues);
            return -1;
        }
        run_t *r = calloc(1, sizeof(*r));
        if (!r)
            abort();
        r->id = dupn(id, idn);
        r->id_len = idn;
        r->project = dupn(proj, projn);
        r->project_len = projn;
        r->workflow = dupn(wf, wfn);
        r->workflow_len = wfn;
        r->state = (run_state_t)state;
        r->requested_at = req;
        r->admitted_at = adm;
        r->finished_at = -1;
        r->org = o;
        run_t *dup;
        HASH_FIND(hh, o->runs, r->id, r->id_len, dup);
        if (dup) {
            free_run(r);
            free(queues);
            return -1;
        }
        HASH_ADD_KEYPTR(hh, o->runs, r->id, r->id_len, r);
        /* counted as they enter the table, so that a failed restore subtracts exactly this */
        if (r->state == RUN_RUNNING) {
            p->running++;
            l->running++;
        } else {
            l->queued++;
        }
    }
    uint32_t i = 0;
    for (project_t *p = o->projects; p; p = p->hh.next, i++) {
        const arr_t *q = &queues[i];
        for (uint32_t k = 0; k < q->n; k++) {
            const char *rid;
            uint32_t ridn;
            run_t *r;
            if (mpget_str(&q->items[k], &rid, &ridn, 1024) < 0) {
                free(queues);
                return -1;
            }
            HASH_FIND(hh, o->runs, rid, ridn, r);
            if (!r || r->state != RUN_QUEUED || r->project_len != p->id_len ||
                memcmp(r->project, p->id, p->id_len) != 0 || r->prev) {
                free(queues);
                return -1;
            }
            DL_APPEND(p->queue, r);
            p->queued++;
        }
    }
    free(queues);
    /* every queued run must be on its project's queue */
    for (run_t *r = o->runs; r; r = r->hh.next)
        if (r->state == RUN_QUEUED && !r->prev)
            return -1;
    return 0;
}

static int restore_workflows(ledger_t *l, org_t *o, const arr_t *wfs, const arr_t *held)
{
    for (uint32_t i = 0; i < wfs->n; i++) {
        arr_t f;
        const char *id, *proj;
        uint32_t idn, projn;
        int64_t cx, state, req, started, billed, overage;
        workflow_t *w = calloc(1, sizeof(*w));
        if (!w)
            abort();
        if (get_arr(&wfs->items[i], 9, &f) < 0 || mpget_str(&f.items[0], &id, &idn, 1024) < 0 ||
            mpget_str(&f.items[1], &proj, &projn, 1024) < 0 || mpget_i64(&f.items[2], &cx) < 0 ||
            mpget_i64(&f.items[3], &state) < 0 || get_name(&f.items[4], w->tier) < 0 ||
            mpget_i64(&f.items[5], &req) < 0 || mpget_i64(&f.items[6], &started) < 0 ||
            mpget_i64(&f.items[7], &billed) < 0 || mpget_i64(&f.items[8], &overage) < 0 || cx < 0 ||
            cx > WIRE_COMPLEXITY_LARGE || (state != WF_HELD && state != WF_RUNNING)) {
            free(w);
            return -1;
        }
        w->id = dupn(id, idn);
        w->id_len = idn;
        w->project = dupn(proj, projn);
        w->project_len = projn;
        w->complexity = (wire_complexity_t)cx;
        w->state = (wf_state_t)state;
        w->requested_at = req;
        w->started_at = started;
        w->finished_at = -1;
        w->billed = billed != 0;
        w->overage = overage != 0;
        w->org = o;
        workflow_t *dup;
        HASH_FIND(hh, o->workflows, w->id, w->id_len, dup);
        if (dup) {
            free_wf(w);
            return -1;
        }
        HASH_ADD_KEYPTR(hh, o->workflows, w->id, w->id_len, w);
        if (w->state == WF_HELD)
            l->held++; /* counted as it enters the table (see restore_runs) */
    }
    for (uint32_t i = 0; i < held->n; i++) {
        const char *id;
        uint32_t idn;
        workflow_t *w;
        if (mpget_str(&held->items[i], &id, &idn, 1024) < 0)
            return -1;
        HASH_FIND(hh, o->workflows, id, idn, w);
        if (!w || w->state != WF_HELD || w->prev)
            return -1;
        DL_APPEND(o->held, w);
        o->nheld++;
    }
    /* every held workflow must be on the hold queue */
    for (workflow_t *w = o->workflows; w; w = w->hh.next)
        if (w->state == WF_HELD && !w->prev)
            return -1;
    return 0;
}

static void org_clear(ledger_t *l, org_t *o);

int ledger_restore(ledger_t *l, const uint8_t *blob, size_t len)
{
    msgpack_zone zone;
    msgpack_object root;
    size_t off = 0;
    if (!msgpack_zone_init(&zone, 4096))
        abort();
    int rc = -1;
    /* A snapshot comes back from a database that can be edited by hand: its declared lengths
     * are checked before msgpack-c allocates for them. */
    if (wire_prescan(blob, len) < 0 ||
        msgpack_unpack((const char *)blob, len, &off, &zone, &root) != MSGPACK_UNPACK_SUCCESS ||
        off != len)
        goto out;
    arr_t a, runs, projects, wfs, held;
    int64_t version, promo_start, kind, ps, pe, counted, packs, clock;
    const char *id;
    uint32_t idn;
    if (get_arr(&root, SNAPSHOT_FIELDS, &a) < 0 || mpget_i64(&a.items[0], &version) < 0 ||
        version != SNAPSHOT_VERSION || mpget_str(&a.items[1], &id, &idn, 1024) < 0 || idn == 0)
        goto out;
    org_t *o;
    HASH_FIND(hh, l->orgs, id, idn, o);
    if (o)
        goto out; /* restored twice */
    o = org_new(l, id, idn);
    if (get_name(&a.items[2], o->tier) < 0 || get_name(&a.items[3], o->promo) < 0 ||
        mpget_i64(&a.items[4], &promo_start) < 0 || mpget_i64(&a.items[5], &kind) < 0 ||
        (kind != TIERS_PERIOD_CALENDAR && kind != TIERS_PERIOD_SUBSCRIPTION) ||
        mpget_i64(&a.items[6], &ps) < 0 || mpget_i64(&a.items[7], &pe) < 0 || pe <= ps ||
        mpget_i64(&a.items[8], &counted) < 0 || mpget_i64(&a.items[9], &packs) < 0 ||
        mpget_i64(&a.items[10], &clock) < 0 || get_arr(&a.items[11], 0, &runs) < 0 ||
        get_arr(&a.items[12], 0, &projects) < 0 || get_arr(&a.items[13], 0, &wfs) < 0 ||
        get_arr(&a.items[14], 0, &held) < 0 || bill_unpack(&o->bill, &a.items[15]) < 0 ||
        mpget_i64(&a.items[16], &o->anchor) < 0 || o->bill.period_start != ps)
        goto bad;
    o->promo_start = promo_start;
    o->period_kind = (tiers_period_t)kind;
    o->period_start = ps;
    o->period_end = pe;
    o->counted = counted;
    o->packs = packs;
    o->clock = clock;
    if (clock > l->watermark)
        l->watermark = clock;
    l->next_close = 0; /* the next apply recomputes it (sweep) */
    if (restore_runs(l, o, &runs, &projects) < 0 || restore_workflows(l, o, &wfs, &held) < 0)
        goto bad;
    /* projects restored without running or queued runs would break the determinism rule */
    for (project_t *p = o->projects; p; p = p->hh.next)
        if (p->running == 0 && p->queued == 0)
            goto bad;
    rc = 0;
    goto out;
bad:
    org_clear(l, o);
    HASH_DEL(l->orgs, o);
    free(o->id);
    free(o);
out:
    msgpack_zone_destroy(&zone);
    return rc;
}

/* ---------- lifecycle and inspection ---------- */

ledger_t *ledger_new(void)
{
    ledger_t *l = calloc(1, sizeof(ledger_t));
    if (l)
        for (int t = 0; t < BATCH_NTABLES; t++) {
            pgcopy_init(&l->fin[t]);
            pgcopy_init(&l->scratch[t]);
        }
    return l;
}

static void org_clear(ledger_t *l, org_t *o)
{
    run_t *r, *rt;
    HASH_ITER(hh, o->runs, r, rt)
    {
        HASH_DEL(o->runs, r);
        if (r->state == RUN_RUNNING)
            l->running--;
        else if (r->state == RUN_QUEUED)
            l->queued--;
        free_run(r);
    }
    project_t *p, *pt;
    HASH_ITER(hh, o->projects, p, pt)
    {
        HASH_DEL(o->projects, p);
        free(p->id);
        free(p);
    }
    workflow_t *w, *wt;
    HASH_ITER(hh, o->workflows, w, wt)
    {
        HASH_DEL(o->workflows, w);
        if (w->state == WF_HELD)
            l->held--;
        free_wf(w);
    }
    o->held = NULL;
    o->nheld = 0;
    bill_destroy(&o->bill);
}

void ledger_free(ledger_t *l)
{
    if (!l)
        return;
    /* Ended records live only on the dirty lists; open ones are in their tables too and are
     * freed with their organization. */
    for (run_t *r = l->dirty_runs, *next; r; r = next) {
        next = r->dnext;
        if (r->state >= RUN_FINISHED)
            free_run(r);
    }
    for (workflow_t *w = l->dirty_wfs, *next; w; w = next) {
        next = w->dnext;
        if (w->state >= WF_SUCCEEDED)
            free_wf(w);
    }
    org_t *o, *ot;
    HASH_ITER(hh, l->orgs, o, ot)
    {
        org_clear(l, o);
        HASH_DEL(l->orgs, o);
        free(o->id);
        free(o);
    }
    free(l->dec);
    free(l->alerts);
    for (int t = 0; t < BATCH_NTABLES; t++) {
        pgcopy_close(&l->fin[t]);
        pgcopy_close(&l->scratch[t]);
    }
    free(l);
}

size_t ledger_orgs(const ledger_t *l)
{
    return HASH_COUNT(l->orgs);
}

size_t ledger_running(const ledger_t *l)
{
    return l->running;
}

size_t ledger_queued(const ledger_t *l)
{
    return l->queued;
}

size_t ledger_held(const ledger_t *l)
{
    return l->held;
}

/* Appends s[0..n) to buf as a JSON string body (quotes, backslashes, control bytes escaped). */
static size_t json_escape(char *buf, size_t len, size_t at, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        int k;
        if (c == '"' || c == '\\')
            k = snprintf(esc, sizeof(esc), "\\%c", c);
        else if (c < 0x20)
            k = snprintf(esc, sizeof(esc), "\\u%04x", c);
        else
            k = snprintf(esc, sizeof(esc), "%c", c);
        for (int j = 0; j < k; j++, at++)
            if (at + 1 < len)
                buf[at] = esc[j];
    }
    return at;
}

int ledger_describe(const ledger_t *l, const char *org, size_t org_len, char *buf, size_t len)
{
    org_t *o;
    HASH_FIND(hh, l->orgs, org, org_len, o);
    if (!o)
        return -1;
    int64_t running = 0, queued = 0;
    for (const project_t *p = o->projects; p; p = p->hh.next) {
        running += p->running;
        queued += p->queued;
    }
    bill_invoice_t inv;
    bill_invoice(&o->bill, -1, &inv);
    size_t at = 0;
    char tail[768];
    const char *head = "{\"org\":\"";
    for (size_t i = 0; head[i]; i++, at++)
        if (at + 1 < len)
            buf[at] = head[i];
    at = json_escape(buf, len, at, o->id, o->id_len);
    int n =
        snprintf(tail, sizeof(tail),
                 "\",\"tier\":\"%s\",\"promo\":\"%s\",\"period_start\":%lld,"
                 "\"period_end\":%lld,\"workflows_counted\":%lld,\"packs\":%lld,"
                 "\"running\":%lld,\"queued\":%lld,\"held\":%lld,\"projects\":%u,"
                 "\"credits_micros\":%lld,\"budget_micros\":%lld,"
                 "\"draft_subtotal_cents\":%lld,\"draft_credits_cents\":%lld,"
                 "\"draft_total_cents\":%lld}",
                 o->tier, o->promo, (long long)o->period_start, (long long)o->period_end,
                 (long long)o->counted, (long long)o->packs, (long long)running, (long long)queued,
                 (long long)o->nheld, HASH_COUNT(o->projects), (long long)o->bill.credits_micros,
                 (long long)o->bill.budget_micros, (long long)inv.subtotal_cents,
                 (long long)inv.credits_cents, (long long)inv.total_cents);
    bill_invoice_free(&inv);
    for (int i = 0; i < n; i++, at++)
        if (at + 1 < len)
            buf[at] = tail[i];
    if (len)
        buf[at + 1 < len ? at : len - 1] = '\0';
    return (int)at;
}
