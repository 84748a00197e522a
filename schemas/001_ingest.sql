-- 001_ingest: the ingest path — per-partition checkpoints, applied event ids, LLM cost records.
--
-- Applied by meterd (or `meterd migrate`) inside one transaction together with its row in
-- schema_migrations, under an advisory lock, so concurrent instances never race.

-- One row per input topic partition. next_offset is the first offset not yet applied (NULL: no
-- event applied yet, resume from the start of the partition). epoch increases on every claim, so
-- a flush is conditional on (next_offset, epoch) being what its instance last saw: an instance
-- that lost the partition can never overwrite the new owner's work.
CREATE TABLE consumer_checkpoints (
    id          serial PRIMARY KEY,
    topic       text NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    next_offset bigint CHECK (next_offset >= 0),
    epoch       bigint NOT NULL DEFAULT 0,
    owner       text,
    claimed_at  timestamptz,
    updated_at  timestamptz,
    UNIQUE (topic, partition)
);

-- The idempotency record: one row per applied event, keyed by the 128-bit hash of (org, id)
-- (XXH3-128, stored as uuid). Written in the same transaction as the data the event changed and
-- the checkpoint that covers it; loaded into memory when the partition is claimed.
CREATE TABLE applied_events (
    checkpoint_id integer NOT NULL REFERENCES consumer_checkpoints (id),
    id_hash       uuid NOT NULL,
    event_ts      bigint NOT NULL, -- the event's ts (Unix ms), for retention
    PRIMARY KEY (checkpoint_id, id_hash)
);

-- LLM cost aggregated per (org, project, provider, model, hour, billable). project_id is '' for
-- calls without a project. cost_nanos is nano-USD at list price (before any margin); calls whose
-- model is not in the price table are counted in unpriced_calls and cost 0.
CREATE TABLE cost_records (
    org_id             text NOT NULL,
    project_id         text NOT NULL DEFAULT '',
    provider           text NOT NULL,
    model              text NOT NULL,
    hour               timestamptz NOT NULL,
    billable           boolean NOT NULL,
    calls              bigint NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    cost_nanos         bigint NOT NULL DEFAULT 0,
    unpriced_calls     bigint NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, project_id, provider, model, hour, billable)
);
CREATE INDEX cost_records_org_hour ON cost_records (org_id, hour);
