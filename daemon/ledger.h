/*
 * ledger — per-organization admission state of one partition: tier, billing period, workflow
 * counts and packs, running agents per project, and the FIFO queues of work that does not fit.
 *
 * Pure core: no I/O, no clock. Driven only by validated events (wire_event_t) and their `ts`,
 * so that replaying the same events from the same snapshot rebuilds exactly the same state and
 * emits exactly the same decisions. The rules are PRODUCT.md's:
 *
 *  - agent.requested is admitted when its project has a free slot (tier concurrent_agents),
 *    else queued; agent.finished / agent.cancelled free the slot and admit the oldest queued
 *    runs of that project. A queued run that is cancelled (or finishes) just leaves the queue.
 *  - workflow.started counts one workflow against the period's quota (tier workflows + packs
 *    bought this period). Over the quota, a `hold` tier (free) holds it; a `bill` tier counts
 *    it as overage. Held workflows are released oldest first when quota frees: a new period, a
 *    pack, an upgrade. workflow.finished closes the workflow's record; a held workflow that
 *    finishes (is cancelled upstream) leaves the hold queue.
 *  - Tier changes (subscription.changed / subscription.cancelled) take effect at the event's
 *    ts: limits change at once (running agents are never pre-empted; queued ones are admitted
 *    if the new limit allows), held workflows are released if the new quota allows.
 *  - Periods: the first event of an organization opens the calendar month (UTC) containing its
 *    ts, on the free tier. A period ends at period_end; the first event at or after it rolls the
 *    organization into the next period (counts and packs reset, held workflows released). The
 *    next period is the next calendar month for `calendar` tiers, or one month after the end
 *    (same day, clamped) for `subscription` tiers. subscription.changed may carry its own
 *    period_start / period_end: a period_start later than the current period's start begins a
 *    new period there.
 *  - Billing (billing.h) rides along: every event feeds the organization's bill_t with the
 *    tier in force at its ts; a period that ends is closed — its final invoice encoded for the
 *    next seal, its credits settled — and the next one opened with the tier's fee in force.
 *    A period closes when the organization's own next event is at or after its end, or, for
 *    a silent organization, when any event of the partition is LEDGER_CLOSE_GRACE_MS (1 hour) or
 *    more past its end: the partition's latest ts is the only notion of "now" replay can
 *    reproduce, and the grace lets the organizations of one partition lag one another a
 *    little. Budget events (billing.h) come out like decisions, with the organization they
 *    concern — which, for a sweep of silent organizations, is not the event's.
 *  - Time is the events' ts and nothing else: a wait is the causing event's ts minus the
 *    request's ts, never negative; periods only move forward (a late event counts in the
 *    current period). Events are applied in partition order, whatever their ts.
 *
 * Decisions are returned in ledger_result_t, in the order they happened; each names the id of
 * the event that caused it (the event being applied), so that the shell can derive a
 * deterministic decision id. Durable state is produced at seal time: one snapshot per changed
 * organization, one usage_records row per changed workflow, one agent_runs row per changed run
 * (see ledger_seal). Strings in results are views valid until the next call on the ledger.
 *
 * Memory: per organization its open state only; finished runs and workflows are dropped once
 * sealed. Out-of-memory aborts (uthash's policy): the restart replays from the checkpoint.
 */
#ifndef METERD_LEDGER_H
#define METERD_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "billing.h"
#include "pgcopy.h"
#include "tiers.h"
#include "wire.h"

typedef struct ledger ledger_t;

/* A silent organization's period closes once an event of its partition is this far past the
 * period's end. A constant, not a setting: replay must close periods at the same events. */
#define LEDGER_CLOSE_GRACE_MS 3600000LL

typedef enum {
    LEDGER_AGENT_ADMITTED = 0,
    LEDGER_AGENT_QUEUED,
    LEDGER_WORKFLOW_HELD,
    LEDGER_WORKFLOW_RELEASED,
    LEDGER_DECISION_KINDS
} ledger_decision_kind_t;

typedef struct {
    ledger_decision_kind_t kind;
    wire_str_t org; /* the organization it concerns */
    wire_str_t project;
    wire_str_t subject; /* the run (agent.*) or the workflow (workflow.*) */
    int64_t waited_ms;  /* admitted, released */
    int64_t position;   /* queued, held: 1 = next */
} ledger_decision_t;

/* Why an event had no effect (counted by the shell). */
typedef enum {
    LEDGER_OK = 0,
    LEDGER_NOOP_KNOWN_RUN,       /* agent.requested for a run already queued or running */
    LEDGER_NOOP_UNKNOWN_RUN,     /* agent.finished / agent.cancelled for a run not open here */
    LEDGER_NOOP_KNOWN_WORKFLOW,  /* workflow.started for a workflow already open */
    LEDGER_NOOP_UNKNOWN_WORKFLOW /* workflow.finished for a workflow not open here */
} ledger_note_t;

/* A budget event due (billing.h), for the organization `org`. */
typedef struct {
    wire_str_t org;
    bill_alert_t alert;
} ledger_alert_t;

typedef struct {
    ledger_note_t note;
    size_t n;
    const ledger_decision_t *decisions;
    size_t n_alerts;
    const ledger_alert_t *alerts;
    size_t closed; /* periods closed (final invoices issued) by this event */
} ledger_result_t;

/* Refusals: the event is invalid against the tier table; the shell dead-letters it. */
#define LEDGER_E_UNKNOWN_TIER  (-2)
#define LEDGER_E_UNKNOWN_PROMO (-3)

/* A new empty ledger. NULL when out of memory. */
ledger_t *ledger_new(void);
void ledger_free(ledger_t *l);

/* Applies one validated event of any type; cost_nanos is an llm.call's priced cost (0 for
 * other types). Returns 0 and fills *res; LEDGER_E_UNKNOWN_TIER or LEDGER_E_UNKNOWN_PROMO when
 * a subscription names what the table lacks (nothing changed). Decision and alert views are
 * valid until the next call on l. */
__attribute__((warn_unused_result)) int ledger_apply(ledger_t *l, const tiers_t *tiers,
                                                     const wire_event_t *ev, int64_t cost_nanos,
                                                     ledger_result_t *res);

/* Seals what changed since the last seal as binary COPY rows (no header or trailer) into the
 * batch tables, adding the row counts to nrows (checkpoint_id goes into the snapshot rows):
 *   BATCH_STATE    ledger_state (checkpoint_id, org_id, state bytea), per changed organization;
 *   BATCH_USAGE    usage_records (org_id, project_id, workflow_id, complexity, status, tier,
 *                  requested_at, started_at, finished_at, billed, overage), per changed workflow;
 *   BATCH_RUNS     agent_runs (org_id, project_id, run_id, workflow_id, status, requested_at,
 *                  admitted_at, finished_at, waited_ms, agent_ms), per changed run;
 *   BATCH_ACCOUNTS billing_accounts (org_id, tier, promo, period_start, period_end,
 *                  credits_micros, budget_micros, thresholds as "50,80,100"), per organization
 *                  whose row differs from the one it last sealed;
 *   BATCH_INVOICES invoices (id, org_id, period_start, period_end, nominal_end, status,
 *                  subtotal_cents, credits_cents, total_cents): every final invoice of a period
 *                  closed since the last seal, and the draft of every changed organization
 *                  whose draft (invoice, lines, stretches) differs from the one it last sealed;
 *   BATCH_LINES    invoice_line_items (invoice_id, line_no, kind, detail, description,
 *                  quantity_raw text, quantity_scale text, unit_price_micros, amount_cents), the
 *                  whole set of each invoice written;
 *   BATCH_ROLLUPS  usage_rollups (org_id, period_start, meter, quantity text), the meters that
 *                  moved since the last seal;
 *   BATCH_SUBS     subscriptions (org_id, period_start, started_at, ended_at, tier, promo,
 *                  fee_micros), the stretches of each invoice written.
 * "Since the last seal" assumes every sealed batch is committed or the state dropped (a fenced
 * or failed partition is reloaded), which is how the meter uses it.
 * Drops finished records from memory afterwards. */
void ledger_seal(ledger_t *l, int32_t checkpoint_id, pgcopy_t rows[BATCH_NTABLES],
                 int64_t nrows[BATCH_NTABLES]);

/* Restores one organization from a snapshot written by ledger_seal. Returns 0, or -1 when the
 * blob is malformed (the caller must not use the partition). */
__attribute__((warn_unused_result)) int ledger_restore(ledger_t *l, const uint8_t *blob,
                                                       size_t len);

/* Organizations held; open (queued or running) runs; held workflows. For metrics and tests. */
size_t ledger_orgs(const ledger_t *l);
size_t ledger_running(const ledger_t *l);
size_t ledger_queued(const ledger_t *l);
size_t ledger_held(const ledger_t *l);

/* Inspection for tests and the admin endpoint: a NUL-terminated JSON description of one
 * organization's state written into buf (truncated to len). Returns the length it needed, or -1
 * when the organization is unknown. */
int ledger_describe(const ledger_t *l, const char *org, size_t org_len, char *buf, size_t len);

#endif
