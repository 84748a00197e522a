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

#include "pgcopy.h"
#include "tiers.h"
#include "wire.h"

typedef struct ledger ledger_t;

typedef enum {
    LEDGER_AGENT_ADMITTED = 0,
    LEDGER_AGENT_QUEUED,
    LEDGER_WORKFLOW_HELD,
    LEDGER_WORKFLOW_RELEASED,
    LEDGER_DECISION_KINDS
} ledger_decision_kind_t;

typedef struct {
    ledger_decision_kind_t kind;
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

typedef struct {
    ledger_note_t note;
    size_t n;
    const ledger_decision_t *decisions;
} ledger_result_t;

/* Refusals: the event is invalid against the tier table; the shell dead-letters it. */
#define LEDGER_E_UNKNOWN_TIER  (-2)
#define LEDGER_E_UNKNOWN_PROMO (-3)

/* A new empty ledger. NULL when out of memory. */
ledger_t *ledger_new(void);
void ledger_free(ledger_t *l);

/* Applies one validated event of any type (types without admission effect only advance the
 * organization's clock and period). Returns 0 and fills *res; LEDGER_E_UNKNOWN_TIER or
 * LEDGER_E_UNKNOWN_PROMO when a subscription names what the table lacks (nothing changed).
 * Decision views are valid until the next call on l. */
__attribute__((warn_unused_result)) int ledger_apply(ledger_t *l, const tiers_t *tiers,
                                                     const wire_event_t *ev, ledger_result_t *res);

/* Seals what changed since the last seal as binary COPY rows (no header or trailer), with
 * checkpoint_id in the snapshot rows:
 *   state  — ledger_state (checkpoint_id, org_id, state bytea), one per changed organization;
 *   usage  — usage_records (org_id, project_id, workflow_id, complexity, status, tier,
 *            requested_at, started_at, finished_at, billed, overage), one per changed workflow;
 *   runs   — agent_runs (org_id, project_id, run_id, workflow_id, status, requested_at,
 *            admitted_at, finished_at, waited_ms, agent_ms), one per changed run.
 * Adds the row counts to the n* arguments. Drops finished records from memory afterwards. */
void ledger_seal(ledger_t *l, int32_t checkpoint_id, pgcopy_t *state, int64_t *nstate,
                 pgcopy_t *usage, int64_t *nusage, pgcopy_t *runs, int64_t *nruns);

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

/* Calendar arithmetic used for periods (exposed for tests): the start of the UTC month
 * containing ts, and ts plus `months` months (same day and time, clamped to the month's end). */
int64_t ledger_month_start(int64_t ts_ms);
int64_t ledger_add_months(int64_t ts_ms, int months);

#endif
