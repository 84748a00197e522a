-- 001_ingest: the ingest path — per-partition checkpoints, applied event ids, LLM cost records.
--
-- Applied by meterd (or `meterd migrate`) inside one transaction together with its row in
-- schema_migrations, under an advisory lock, so concurrent instances never race.
--
-- Identifier columns use COLLATE "C": they are opaque ids, compared byte-wise, and the
-- database's default collation would make every key comparison of every flush a locale-aware
-- strcoll.

-- One row per input topic partition. next_offset is the first offset not yet applied (NULL: no
-- event applied yet, resume from the start of the partition). epoch increases on every claim, so
-- a flush is conditional on (next_offset, epoch) being what its instance last saw: an instance
-- that lost the partition can never overwrite the new owner's work.
CREATE TABLE consumer_checkpoints (
    id          serial PRIMARY KEY,
    topic       text COLLATE "C" NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    next_offset bigint CHECK (next_offset >= 0),
    epoch       bigint NOT NULL DEFAULT 0,
    owner       text,
    claimed_at  timestamptz,
    updated_at  timestamptz,
    UNIQUE (topic, partition)
);

-- The idempotency record. Each flush writes, per partition, one row holding the identities of
-- the events it applied: consecutive 16-byte XXH3-128 hashes of (org, 0xFF, id), in offset
-- order. It is written in the same transaction as the data those events changed and the
-- checkpoint that covers them, and loaded into memory when the partition is claimed. One row per
-- flush instead of one per event keeps the cost of exactly-once to a few kilobytes of COPY.
CREATE TABLE applied_event_ids (
    checkpoint_id integer NOT NULL,  -- consumer_checkpoints.id
    end_offset    bigint NOT NULL,   -- the checkpoint this flush moved the partition to
    n             integer NOT NULL CHECK (n > 0),
    min_ts        bigint NOT NULL,   -- event ts range (Unix ms), for retention
    max_ts        bigint NOT NULL,
    ids           bytea NOT NULL CHECK (length(ids) = 16 * n),
    PRIMARY KEY (checkpoint_id, end_offset)
);
-- Random bytes do not compress: store them out of line without trying.
ALTER TABLE applied_event_ids ALTER COLUMN ids SET STORAGE EXTERNAL;

-- LLM cost aggregated per (org, project, provider, model, hour, billable). project_id is '' for
-- calls without a project. cost_nanos is nano-USD at list price (before any margin); calls whose
-- model is not in the price table are counted in unpriced_calls and cost 0. A flush adds its
-- deltas to existing rows; the fill factor leaves room for those updates to stay HOT (no index
-- insertion).
CREATE TABLE cost_records (
    org_id             text COLLATE "C" NOT NULL,
    project_id         text COLLATE "C" NOT NULL DEFAULT '',
    provider           text COLLATE "C" NOT NULL,
    model              text COLLATE "C" NOT NULL,
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
) WITH (fillfactor = 80);
