/*
 * billing — the invoice arithmetic of PRODUCT.md for one organization: what it owes for a
 * period, its prepaid credits, its budget and the budget events.
 *
 * Pure core: no I/O, no clock. The ledger owns one bill_t per organization and feeds it the
 * organization's usage at the instant (event ts) it happens, with the tier in force then; the
 * price is taken from the tier at that instant and stored with the usage, so that a later change
 * of the tier table changes future usage only. Money is integers: nano-USD for LLM cost,
 * micro-USD for prices, credits and budgets, cents on invoice lines.
 *
 * ITEMS. A period accumulates items, each (kind, detail, unit price) with an exact raw quantity:
 *
 *   kind              detail        unit_price_micros        raw quantity          scale
 *   base_fee          tier          fee per period           ms at that fee        L
 *   one_time_fee      tier          the fee                  1                     1
 *   workflow_overage  complexity    price per workflow       workflows             1
 *   llm               ""            10^6 + 10^4 × margin %   billable cost, nUSD   10^9
 *   api_calls         ""            price per call           calls                 1
 *   storage           ""            price per GB-month       excess byte-ms        10^9 × L
 *   agent_hours       ""            price per hour           excess ms             3.6 × 10^6
 *   credits           ""            −10^6                    cents applied         100
 *
 * where L = nominal_end − period_start in ms. There is one line per (kind, detail, unit price):
 * stretches of the same tier and fee make one base_fee line. Every line is
 *
 *     amount_cents = round_half_up(raw × unit_price_micros / (scale × 10^4))
 *
 * computed once, exactly (128-bit integers), so that reconciliation can recompute it from the
 * line's own columns. Lines come in the kind order above, and within a kind in the order they
 * first appeared. A line whose price or quantity is zero is left out.
 *
 *  - base_fee: the stretches [a, b) of the period spent on one fee: the tier's base_fee,
 *    or the promotion's fee of the subscription month the period starts in (a promotion
 *    applies to tiers with `period = subscription` only; a subscription.changed without promo
 *    ends it; month 1 is the period the promotion was bought in). In a draft the last stretch
 *    runs to the nominal end — the fee committed to — and in a final invoice to the period's
 *    actual end (earlier when a subscription.changed started a new period), always over L.
 *  - one_time_fee: when the organization changes to a tier with one_time_fee > 0 that it never
 *    paid before (lifetime: $299 once, in the period of purchase, never again).
 *  - workflow_overage: a workflow counted at or over the quota in force (ledger), at the tier's
 *    overage price for its complexity when it was counted. PAYG's quota is 0: every workflow.
 *  - llm: llm.call with byo false on a tier with llm_billed, at the call's cost (prices.ini).
 *  - api_calls: api.call `count` on a tier whose api_call price is > 0.
 *  - storage: ∫ max(0, bytes − storage_limit) dt, the footprint of the latest storage.report,
 *    with the limit and price of the tier in force at each instant. Integrated up to the
 *    organization's clock (its latest event), and to the period's end when the period closes.
 *  - agent_hours: a run's agent ms (admission to its end) counts in the period its end falls
 *    in; the part of the period's total beyond the tier's included hours is billed, at the
 *    price in force when the run ended.
 *  - credits: applied last: min(subtotal, whole cents of the credit balance); never makes the
 *    total negative; what is left is carried to the next period. Credits bought in a period
 *    count for that period's invoice.
 *
 * subtotal = Σ lines except credits; total = subtotal − credits applied. The period's spend,
 * for budgets, is the subtotal in micro-USD (subtotal × 10^4): a draft's spend includes the
 * committed base fee of the whole period at once.
 *
 * BUDGET EVENTS, each at most once per cause per period, checked after every event of the
 * organization that the ledger applies and when a period begins (in this order):
 *   - budget.exceeded reason workflow_quota: a tier that holds (free) reached its workflow
 *     quota (the count reached it, or a workflow was held);
 *   - budget.warning for each threshold t < 100 of the budget, ascending, when spend × 100 ≥
 *     limit × t for the first time in the period;
 *   - budget.exceeded reason budget: spend ≥ limit;
 *   - budget.exceeded reason credits: the credit balance held at least a cent and the spend
 *     reached its whole cents.
 * A budget of 0 micro-USD means no budget. `spend_micros` is the spend; `limit_micros` the
 * budget (0: none) — for reason credits, the credit balance.
 *
 * State is serialized into the ledger's snapshot (bill_pack / bill_unpack).
 */
#ifndef METERD_BILLING_H
#define METERD_BILLING_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgcopy.h"
#include "tiers.h"
#include "wire.h"

typedef enum {
    BILL_BASE_FEE = 0,
    BILL_ONE_TIME_FEE,
    BILL_WORKFLOW_OVERAGE,
    BILL_LLM,
    BILL_API_CALLS,
    BILL_STORAGE,
    BILL_AGENT_HOURS,
    BILL_CREDITS,
    BILL_KINDS
} bill_kind_t;

/* Usage meters kept per period whatever the tier bills (usage_rollups). */
typedef enum {
    BILL_M_WORKFLOWS = 0,  /* workflows counted against the period */
    BILL_M_OVERAGE,        /* of which beyond the quota */
    BILL_M_HELD,           /* workflows held */
    BILL_M_AGENT_MS,       /* agent ms of runs that ended in the period */
    BILL_M_LLM_CALLS,      /* llm.call events */
    BILL_M_LLM_COST_NANOS, /* their cost, byo included */
    BILL_M_LLM_BILLED_NANOS /* the cost that was billed (byo false, llm_billed tier) */,
    BILL_M_API_CALLS,       /* api.call counts */
    BILL_M_STORAGE_BYTE_MS, /* ∫ bytes dt, whole footprint */
    BILL_METERS
} bill_meter_t;

#define BILL_DETAIL_MAX   32
#define BILL_MAX_ONE_TIME TIERS_MAX_ONE_TIME /* one-time fees one organization can pay */

/* Exact arithmetic: GCC and clang's 128-bit integers (C11 has none; __extension__ keeps
 * -Wpedantic quiet). */
__extension__ typedef __int128 bill_i128_t;
__extension__ typedef unsigned __int128 bill_u128_t;

/* Usage priced as it happened (every kind but base_fee, which comes from the stretches). */
typedef struct {
    bill_kind_t kind;
    char detail[BILL_DETAIL_MAX + 1];
    int64_t unit_price_micros;
    bill_i128_t raw; /* exact quantity in the kind's base unit */
    int64_t count;   /* llm: calls billed (informative) */
} bill_item_t;

/* A stretch of the period on one tier and fee, from `from` to the next stretch (or the end). */
typedef struct {
    int64_t from;
    char tier[TIERS_NAME_MAX + 1];
    char promo[TIERS_NAME_MAX + 1]; /* "" when the tier's own fee applies */
    int64_t fee_micros;
} bill_stretch_t;

typedef struct {
    bill_kind_t kind;
    char detail[BILL_DETAIL_MAX + 1];
    int64_t unit_price_micros;
    bill_i128_t raw;
    bill_i128_t scale;
    int64_t count;
    int64_t amount_cents;
} bill_line_t;

typedef struct {
    int64_t period_start;
    int64_t period_end;  /* actual end: the nominal end for a draft */
    int64_t nominal_end; /* the end the period was opened with (or moved to) */
    bool final;
    size_t n, cap;
    bill_line_t *lines; /* owned: bill_invoice_free */
    int64_t subtotal_cents;
    int64_t credits_cents;
    int64_t total_cents;
} bill_invoice_t;

typedef enum {
    BILL_WARNING = 0,
    BILL_EXCEEDED,
} bill_alert_kind_t;

typedef enum {
    BILL_REASON_NONE = 0, /* warnings */
    BILL_REASON_BUDGET,
    BILL_REASON_WORKFLOW_QUOTA,
    BILL_REASON_CREDITS,
} bill_reason_t;

typedef struct {
    bill_alert_kind_t kind;
    bill_reason_t reason;
    int32_t threshold; /* warning: percent */
    int64_t period_start;
    int64_t spend_micros;
    int64_t limit_micros;
} bill_alert_t;

typedef struct {
    /* the period */
    int64_t period_start, nominal_end;
    bill_stretch_t *stretches; /* time order; the first starts at period_start */
    size_t nstretches, capstretches;
    bill_item_t *items;
    size_t nitems, capitems;
    int64_t meters[BILL_METERS];
    bill_i128_t storage_byte_ms; /* BILL_M_STORAGE_BYTE_MS, exact */
    int64_t agent_ms;            /* the period's total, for included hours */
    uint64_t warned[2];          /* thresholds (percent 1..100) warned this period */
    uint32_t exceeded;           /* 1 << bill_reason_t fired this period */
    /* the account, carried across periods */
    int64_t credits_micros;
    int64_t budget_micros; /* 0: none */
    uint32_t nthresholds;
    int32_t thresholds[WIRE_MAX_THRESHOLDS];
    int64_t storage_bytes;                                 /* latest footprint */
    int64_t storage_since;                                 /* integrated up to here */
    char paid_once[BILL_MAX_ONE_TIME][TIERS_NAME_MAX + 1]; /* one-time fees charged */
    uint32_t npaid_once;
} bill_t;

void bill_init(bill_t *b);
void bill_destroy(bill_t *b);

/* Opens a period [start, nominal_end): items, meters and fired events start over; the account
 * (credits, budget, storage footprint) carries on. The storage integral resumes at start. */
void bill_open_period(bill_t *b, int64_t start, int64_t nominal_end);
/* Moves the nominal end (a subscription.changed carrying period_end). */
void bill_set_nominal_end(bill_t *b, int64_t nominal_end);

/* The base fee in force for tier t with an optional promotion bought at promo_start (the start
 * of the period it was bought in), for the period starting at period_start. */
int64_t bill_fee_in_force(const tier_t *t, const tier_promo_t *promo, int64_t promo_start,
                          int64_t period_start);
/* A new stretch from `from` (clamped to the period start; one at the same instant replaces the
 * previous one; the same tier, promotion and fee continue the open one). */
void bill_stretch(bill_t *b, int64_t from, const tier_t *t, const tier_promo_t *promo,
                  int64_t fee_micros);
/* The tier of the open stretch ("" before any). */
const char *bill_tier(const bill_t *b);
/* Charges t's one-time fee unless it was charged before (ever). */
void bill_one_time(bill_t *b, const tier_t *t);
/* A workflow counted; `overage` when beyond the quota. */
void bill_workflow(bill_t *b, const tier_t *t, wire_complexity_t c, bool overage);
void bill_workflow_held(bill_t *b);
void bill_llm(bill_t *b, const tier_t *t, int64_t cost_nanos, bool byo);
void bill_api(bill_t *b, const tier_t *t, int64_t count);
/* Integrates the storage footprint up to `now` under tier t (no-op when now is not later). */
void bill_storage_advance(bill_t *b, const tier_t *t, int64_t now);
/* A storage.report at `now`: integrates up to it, then the footprint is `bytes`. */
void bill_storage_report(bill_t *b, const tier_t *t, int64_t now, int64_t bytes);
/* A run that ran `ms` ended. */
void bill_agent(bill_t *b, const tier_t *t, int64_t ms);
void bill_credits(bill_t *b, int64_t micros);
void bill_budget(bill_t *b, int64_t limit_micros, const int32_t *thresholds, uint32_t n);

/* The invoice of the open period: a draft (end < 0: stretches run to the nominal end) or the
 * final one ending at `end`. */
void bill_invoice(const bill_t *b, int64_t end, bill_invoice_t *out);
void bill_invoice_free(bill_invoice_t *inv);
/* A final invoice was issued: its credits leave the balance. */
void bill_settle(bill_t *b, const bill_invoice_t *final);

/* Budget events due now, in the order of the header, appended to out[0..cap) from *n.
 * quota_reached: a hold tier's quota is reached. Marks them fired. */
void bill_check(bill_t *b, bool quota_reached, bill_alert_t *out, size_t cap, size_t *n);

/* Whether bill_check can fire anything but workflow_quota (a budget or credits exist). */
bool bill_watching(const bill_t *b);

const char *bill_kind_name(bill_kind_t k);
const char *bill_reason_name(bill_reason_t r);
const char *bill_meter_name(bill_meter_t m);

/* A human description of a line ("7 medium workflows beyond the quota at $10.00"), NUL-terminated
 * in buf[0..len). */
void bill_describe(const bill_line_t *l, char *buf, size_t len);

/* round_half_up(num / den) for num >= 0, den > 0; negative num rounds half away from zero. */
int64_t bill_round_div(bill_i128_t num, bill_i128_t den);
/* Decimal text of v (for numeric columns). Returns the length written into buf[0..48). */
int bill_i128_text(bill_i128_t v, char buf[48]);

/* Snapshot: one msgpack array. bill_unpack returns 0, or -1 when o is malformed. */
void bill_pack(msgpack_packer *pk, const bill_t *b);
__attribute__((warn_unused_result)) int bill_unpack(bill_t *b, const msgpack_object *o);

#endif
