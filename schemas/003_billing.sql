-- 003_billing: accounts, subscriptions (tier stretches), per-period usage rollups, invoices and
-- their line items — the arithmetic of daemon/billing.h, written by the same flush transaction
-- as the checkpoint that covers the events they reflect (see 001). docs/billing.md explains
-- every column with a worked example.

-- One row per organization: what the ledger holds for it now.
CREATE TABLE billing_accounts (
    org_id         text COLLATE "C" PRIMARY KEY,
    tier           text NOT NULL,
    promo          text NOT NULL DEFAULT '',
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    credits_micros bigint NOT NULL DEFAULT 0, -- prepaid balance, before the open period's draft
    budget_micros  bigint NOT NULL DEFAULT 0, -- monthly budget; 0 = none
    thresholds     integer[] NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Invoices: one per organization and period, 'draft' while the period is open (rewritten by
-- every flush that changed the organization), 'final' once it closed (never changed again).
--   id:          org_id || '/' || period_start in Unix ms (deterministic);
--   period_end:  the actual end (nominal_end unless a new subscription period cut it short);
--   nominal_end: the end the period was opened with; fees and storage prorate over
--                nominal_end - period_start;
--   total_cents = subtotal_cents - credits_cents, never below 0.
CREATE TABLE invoices (
    id             text COLLATE "C" PRIMARY KEY,
    org_id         text COLLATE "C" NOT NULL,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    nominal_end    timestamptz NOT NULL,
    status         text NOT NULL CHECK (status IN ('draft', 'final')),
    subtotal_cents bigint NOT NULL,
    credits_cents  bigint NOT NULL,
    total_cents    bigint NOT NULL CHECK (total_cents >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, period_start)
);

-- Line items. Every amount is recomputable from its own row:
--   amount_cents = round(quantity_raw * unit_price_micros / (quantity_scale * 10000))
-- (round() on numeric rounds half away from zero: half-up for charges). quantity is
-- quantity_raw / quantity_scale in the line's unit (fraction of the period, workflows, USD of
-- provider cost, calls, GB-months, hours, USD of credits).
CREATE TABLE invoice_line_items (
    invoice_id        text COLLATE "C" NOT NULL REFERENCES invoices (id),
    line_no           integer NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('base_fee', 'one_time_fee', 'workflow_overage',
                                                    'llm', 'api_calls', 'storage', 'agent_hours',
                                                    'credits')),
    detail            text NOT NULL DEFAULT '', -- tier (fees) or complexity (workflows)
    description       text NOT NULL,
    quantity          numeric NOT NULL,
    quantity_raw      numeric NOT NULL,
    quantity_scale    numeric NOT NULL CHECK (quantity_scale > 0),
    unit_price_micros bigint NOT NULL,
    amount_cents      bigint NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);

-- The tier stretches of each period: [started_at, ended_at) on one tier and fee (a promotion's
-- month fee, or the tier's base fee). ended_at is the period's end for the last stretch.
CREATE TABLE subscriptions (
    org_id       text COLLATE "C" NOT NULL,
    period_start timestamptz NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz NOT NULL,
    tier         text NOT NULL,
    promo        text NOT NULL DEFAULT '',
    fee_micros   bigint NOT NULL,
    PRIMARY KEY (org_id, period_start, started_at)
);

-- Usage per organization, period and meter, whatever the tier bills (see bill_meter_t):
-- workflows, overage_workflows, held_workflows, agent_ms, llm_calls, llm_cost_nanos,
-- llm_billed_nanos, api_calls, storage_byte_ms. A meter still at 0 has no row (read a missing
-- row as 0); a flush writes the meters that moved since the last one.
CREATE TABLE usage_rollups (
    org_id       text COLLATE "C" NOT NULL,
    period_start timestamptz NOT NULL,
    meter        text NOT NULL,
    quantity     numeric NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, period_start, meter)
);

-- Half-up rounding of num / den for den > 0, exact (numeric division would keep only about 16
-- significant digits; div() is integer division).
CREATE FUNCTION meterd_round_div(num numeric, den numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS 'SELECT sign(num) * div(2 * abs(num) + den, 2 * den)';

-- Reconciliation: one row per invoice, ok when
--   bad_lines = 0      every line's amount equals its recomputation from its own columns,
--                      round_half_up(quantity_raw * unit_price_micros / (quantity_scale * 10^4));
--   the invoice's subtotal and credits equal the sums of its lines, and total = subtotal - credits;
--   each billed quantity is backed by the period's usage rollup: billed overage workflows, API
--   calls, agent ms and storage byte-ms at most what was used (a tier that does not bill a
--   meter leaves part of it unbilled), billed LLM cost exactly the llm_billed_nanos meter.
-- docs/billing.md shows how to read it.
CREATE VIEW invoice_reconciliation AS
WITH lines AS (
    SELECT invoice_id,
           count(*) AS lines,
           count(*) FILTER (WHERE amount_cents <> meterd_round_div(
                                quantity_raw * unit_price_micros, quantity_scale * 10000))
               AS bad_lines,
           coalesce(sum(amount_cents) FILTER (WHERE kind <> 'credits'), 0) AS subtotal,
           coalesce(-sum(amount_cents) FILTER (WHERE kind = 'credits'), 0) AS credits,
           coalesce(sum(quantity_raw) FILTER (WHERE kind = 'workflow_overage'), 0) AS overage,
           coalesce(sum(quantity_raw) FILTER (WHERE kind = 'llm'), 0) AS llm_nanos,
           coalesce(sum(quantity_raw) FILTER (WHERE kind = 'api_calls'), 0) AS api_calls,
           coalesce(sum(quantity_raw) FILTER (WHERE kind = 'agent_hours'), 0) AS agent_ms,
           coalesce(sum(quantity_raw) FILTER (WHERE kind = 'storage'), 0) AS storage_byte_ms
    FROM invoice_line_items GROUP BY invoice_id
), meters AS (
    SELECT org_id, period_start,
           coalesce(sum(quantity) FILTER (WHERE meter = 'overage_workflows'), 0) AS overage,
           coalesce(sum(quantity) FILTER (WHERE meter = 'llm_billed_nanos'), 0) AS llm_nanos,
           coalesce(sum(quantity) FILTER (WHERE meter = 'api_calls'), 0) AS api_calls,
           coalesce(sum(quantity) FILTER (WHERE meter = 'agent_ms'), 0) AS agent_ms,
           coalesce(sum(quantity) FILTER (WHERE meter = 'storage_byte_ms'), 0) AS storage_byte_ms
    FROM usage_rollups GROUP BY org_id, period_start
), checked AS (
    SELECT i.id AS invoice_id, i.org_id, i.period_start, i.period_end, i.status,
           i.subtotal_cents, i.credits_cents, i.total_cents,
           coalesce(l.lines, 0) AS lines,
           coalesce(l.bad_lines, 0) AS bad_lines,
           coalesce(l.subtotal, 0) AS lines_subtotal_cents,
           coalesce(l.credits, 0) AS lines_credits_cents,
           coalesce(l.overage, 0) AS billed_overage_workflows,
           coalesce(m.overage, 0) AS overage_workflows,
           coalesce(l.llm_nanos, 0) AS billed_llm_nanos,
           coalesce(m.llm_nanos, 0) AS llm_billed_nanos,
           coalesce(l.api_calls, 0) AS billed_api_calls,
           coalesce(m.api_calls, 0) AS api_calls,
           coalesce(l.agent_ms, 0) AS billed_agent_ms,
           coalesce(m.agent_ms, 0) AS agent_ms,
           coalesce(l.storage_byte_ms, 0) AS billed_storage_byte_ms,
           coalesce(m.storage_byte_ms, 0) AS storage_byte_ms
    FROM invoices i
    LEFT JOIN lines l ON l.invoice_id = i.id
    LEFT JOIN meters m ON m.org_id = i.org_id AND m.period_start = i.period_start
)
SELECT *,
       (bad_lines = 0
        AND subtotal_cents = lines_subtotal_cents
        AND credits_cents = lines_credits_cents
        AND total_cents = subtotal_cents - credits_cents
        AND billed_overage_workflows <= overage_workflows
        AND billed_llm_nanos = llm_billed_nanos
        AND billed_api_calls <= api_calls
        AND billed_agent_ms <= agent_ms
        AND billed_storage_byte_ms <= storage_byte_ms) AS ok
FROM checked;
