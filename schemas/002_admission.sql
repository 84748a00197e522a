-- 002_admission: the ledger's durable state — per-organization snapshots, one usage record per
-- workflow, one row per agent run.
--
-- All three are written by the same flush transaction as the checkpoint that covers the events
-- they reflect (see 001). The snapshot is what a new owner loads before replaying the events
-- after the checkpoint; usage_records and agent_runs are for reporting and billing.

-- One snapshot per (partition, organization): tier, period, counts, packs, running agents,
-- queues and held workflows, msgpack-encoded by daemon/ledger.c. Keyed by the partition's
-- checkpoint row as well, so that an organization wrongly spread over two partitions keeps two
-- separate states rather than overwriting one another.
CREATE TABLE ledger_state (
    checkpoint_id integer NOT NULL,
    org_id        text COLLATE "C" NOT NULL,
    state         bytea NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (checkpoint_id, org_id)
);

-- One row per workflow, from its workflow.started to its workflow.finished.
--   requested_at: the workflow.started event's ts;
--   started_at:   when it was counted against a period (NULL while held);
--   billed:       counted against a period (false for a held workflow that never ran);
--   overage:      counted while the period's count was at or over the quota in force
--                 (tier quota + packs) — billed by complexity; PAYG's quota is 0;
--   tier:         the tier it was counted (or held) under.
CREATE TABLE usage_records (
    org_id       text COLLATE "C" NOT NULL,
    project_id   text COLLATE "C" NOT NULL,
    workflow_id  text COLLATE "C" NOT NULL,
    complexity   text NOT NULL CHECK (complexity IN ('small', 'medium', 'large')),
    status       text NOT NULL
                 CHECK (status IN ('held', 'running', 'succeeded', 'failed', 'cancelled')),
    tier         text NOT NULL,
    requested_at timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz,
    billed       boolean NOT NULL,
    overage      boolean NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, workflow_id, requested_at)
);
CREATE INDEX usage_records_org_started ON usage_records (org_id, started_at);

-- One row per agent run: waited_ms from request to admission, agent_ms from admission to its
-- end (agent-hours accrue over agent_ms, attributed to the period in which the run finishes).
CREATE TABLE agent_runs (
    org_id       text COLLATE "C" NOT NULL,
    project_id   text COLLATE "C" NOT NULL,
    run_id       text COLLATE "C" NOT NULL,
    workflow_id  text COLLATE "C" NOT NULL DEFAULT '',
    status       text NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'cancelled')),
    requested_at timestamptz NOT NULL,
    admitted_at  timestamptz,
    finished_at  timestamptz,
    waited_ms    bigint NOT NULL DEFAULT 0,
    agent_ms     bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, run_id, requested_at)
);
CREATE INDEX agent_runs_org_finished ON agent_runs (org_id, finished_at);
