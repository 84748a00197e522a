/*
 * store — the asynchronous PostgreSQL shell. See store.h for the contract.
 *
 * DESIGN. One connection, one command in flight. `drive` advances the connection as far as it
 * can without blocking — flushing output, pushing COPY data, reading COPY rows, reading
 * results — and returns when libpq would block, asking the uv_poll for readable and/or writable.
 * Each job is a small state machine of steps; a step sends one command and names the handlers
 * for its results (`on_res`) and for its completion (`on_done`), which sends the next step.
 *
 * Failure is uniform: any unexpected result or I/O error drops the connection (the server rolls
 * the transaction back), and the job at the head of the queue is run again from its first step
 * after reconnecting with exponential back-off. Only a flush whose COMMIT was sent needs more:
 * its outcome is read back from the checkpoints first (VERIFY), because the commit may have
 * happened. Every other step is harmless to repeat: a claim bumps the epoch once more, and
 * identities are loaded idempotently.
 *
 * On connect the session is set up (statement_timeout), the schema is brought up to date under
 * an advisory lock (each migration in its own transaction with its schema_migrations row), and
 * the temporary staging tables are created. Only then is the store up.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrations.h"

#define MIGRATION_LOCK_KEY 7384001    /* pg_advisory_lock key that serializes migrations */
#define COPY_CHUNK         (64 << 10) /* larger pieces make libpq memmove its unsent tail */
#define BACKOFF_MIN_MS     100

typedef enum { JOB_CLAIM, JOB_LOAD, JOB_FLUSH } job_kind_t;

typedef struct job {
    job_kind_t kind;
    struct job *next;
    int step;
    void *arg;
    /* claim */
    int32_t *partitions;
    size_t npart;
    store_claim_cb claim_cb;
    store_claim_t *claims;
    size_t nclaims;
    /* load */
    int32_t checkpoint_id;
    bool load_state; /* ledger snapshots, else applied identities */
    bool delivered;  /* rows were delivered: a retry must say "start over" first */
    store_row_cb row_cb;
    store_done_cb done_cb;
    /* flush */
    batch_t **batches;
    size_t nb;
    store_flush_cb flush_cb;
    bool commit_sent;
    bool committed;
} job_t;

typedef enum {
    C_DOWN,       /* waiting for the reconnect timer */
    C_CONNECTING, /* PQconnectPoll in progress */
    C_SETUP,      /* session set-up and migrations */
    C_READY,
    C_FAILED, /* fatal: schema too old and auto_migrate off */
} conn_state_t;

typedef enum {
    IO_IDLE,     /* no command in flight */
    IO_SENDING,  /* output queued in libpq, flushing */
    IO_READING,  /* reading results */
    IO_COPY_IN,  /* pushing COPY data */
    IO_COPY_OUT, /* reading COPY rows */
} io_state_t;

typedef void (*res_fn)(store_t *s, PGresult *r);
typedef void (*done_fn)(store_t *s);

struct store {
    uv_loop_t *loop;
    const config_t *cfg;
    log_t *log;
    store_state_cb state_cb;
    void *arg;
    bool migrate_only;

    PGconn *conn;
    uv_poll_t *poll; /* heap: re-created whenever the socket changes */
    int poll_fd;
    int poll_events;
    uv_timer_t timer;
    conn_state_t state;
    io_state_t io;
    bool broken; /* set by fail() during drive */
    bool closing;
    bool in_drive; /* drive is on the stack: enqueue must not re-enter it */
    int64_t backoff_ms;
    int setup_step;
    int schema_version;
    size_t mig_next;

    res_fn on_res;
    done_fn on_done;

    /* COPY IN source: the rows of one batch table across the surviving batches */
    int copy_table;
    size_t copy_bi;
    size_t copy_pos;
    int copy_phase; /* 0 header, 1 rows, 2 trailer, 3 end sent */
    pgcopy_t copy_frame;
    bool copy_header_seen;

    job_t *head, *tail;
    size_t njobs;

    metric_t *m_errors, *m_reconnects, *m_up;
};

static void drive(store_t *s);
static void start_connect(store_t *s);
static void run_job(store_t *s);
static void setup_next(store_t *s);

/* ---------- connection plumbing ---------- */

static void fail(store_t *s, const char *what, const char *detail) __attribute__((nonnull(2)));
static void fail(store_t *s, const char *what, const char *detail)
{
    if (s->broken)
        return;
    s->broken = true;
    metric_inc(s->m_errors);
    const char *pqerr = s->conn ? PQerrorMessage(s->conn) : "";
    LOG_ERROR(s->log, "postgres error", LS("what", what), LS("detail", detail ? detail : pqerr),
              LI("retry_ms", s->backoff_ms));
}

static void poll_closed(uv_handle_t *h)
{
    free(h);
}

static void drop_poll(store_t *s)
{
    if (s->poll) {
        uv_close((uv_handle_t *)s->poll, poll_closed);
        s->poll = NULL;
    }
    s->poll_fd = -1;
    s->poll_events = 0;
}

static void on_poll(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *t);

/* Watches the connection's socket for `events`, re-creating the poll if the socket changed. */
static void watch(store_t *s, int events)
{
    int fd = PQsocket(s->conn);
    if (fd < 0) {
        fail(s, "socket", "no socket");
        return;
    }
    if (s->poll && s->poll_fd != fd)
        drop_poll(s);
    if (!s->poll) {
        s->poll = malloc(sizeof(uv_poll_t));
        if (!s->poll || uv_poll_init(s->loop, s->poll, fd) < 0) {
            free(s->poll);
            s->poll = NULL;
            fail(s, "uv_poll_init", "cannot watch the socket");
            return;
        }
        s->poll->data = s;
        s->poll_fd = fd;
        s->poll_events = 0;
    }
    if (s->poll_events != events) {
        uv_poll_start(s->poll, events, on_poll);
        s->poll_events = events;
    }
}

static void set_up(store_t *s, bool up)
{
    metric_set(s->m_up, up ? 1 : 0);
    if (s->state_cb)
        s->state_cb(s->arg, up);
}

/* Drops the connection and schedules a reconnect; the head job will run again. */
static void reset(store_t *s)
{
    bool was_ready = s->state == C_READY;
    drop_poll(s);
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    s->io = IO_IDLE;
    s->broken = false;
    pgcopy_reset(&s->copy_frame);
    if (s->state == C_FAILED || s->closing)
        return;
    s->state = C_DOWN;
    if (s->head)
        s->head->step = 0;
    metric_inc(s->m_reconnects);
    uv_timer_start(&s->timer, on_timer, (uint64_t)s->backoff_ms, 0);
    s->backoff_ms *= 2;
    if (s->backoff_ms > s->cfg->pg_reconnect_max_ms)
        s->backoff_ms = s->cfg->pg_reconnect_max_ms;
    if (was_ready)
        set_up(s, false);
}

/* Server notices go to the log instead of libpq's default (stderr, not JSON). */
static void on_notice(void *arg, const PGresult *r)
{
    store_t *s = arg;
    LOG_DEBUG(s->log, "postgres notice", LS("message", PQresultErrorMessage(r)));
}

static void connect_poll(store_t *s)
{
    switch (PQconnectPoll(s->conn)) {
    case PGRES_POLLING_READING:
        watch(s, UV_READABLE);
        break;
    case PGRES_POLLING_WRITING:
        watch(s, UV_WRITABLE);
        break;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(s->conn, 1) != 0) {
            fail(s, "setnonblocking", NULL);
            break;
        }
        LOG_INFO(s->log, "postgres connected", LS("db", PQdb(s->conn)), LS("host", PQhost(s->conn)),
                 LI("server_version", PQserverVersion(s->conn)));
        s->state = C_SETUP;
        s->setup_step = 0;
        watch(s, UV_READABLE);
        setup_next(s);
        break;
    default:
        fail(s, "connect", NULL);
        break;
    }
}

static void start_connect(store_t *s)
{
    const char *keys[5], *vals[5];
    int n = 0;
    keys[n] = "dbname";
    vals[n++] = s->cfg->pg_dsn;
    keys[n] = "fallback_application_name";
    vals[n++] = "meterd";
    if (s->cfg->pg_password) {
        keys[n] = "password";
        vals[n++] = s->cfg->pg_password;
    }
    keys[n] = NULL;
    vals[n] = NULL;
    s->state = C_CONNECTING;
    s->conn = PQconnectStartParams(keys, vals, 1);
    if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD) {
        fail(s, "connect", s->conn ? NULL : "out of memory");
        reset(s);
        return;
    }
    PQsetNoticeReceiver(s->conn, on_notice, s);
    connect_poll(s);
    if (s->broken)
        reset(s);
    else
        drive(s);
}

static void on_timer(uv_timer_t *t)
{
    start_connect(t->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    store_t *s = h->data;
    if (status < 0) {
        fail(s, "poll", uv_strerror(status));
        reset(s);
        return;
    }
    if (s->state == C_CONNECTING) {
        connect_poll(s);
        if (s->broken)
            reset(s);
        return;
    }
    if ((events & UV_READABLE) && !PQconsumeInput(s->conn)) {
        fail(s, "read", NULL);
        reset(s);
        return;
    }
    drive(s);
}

/* ---------- sending commands ---------- */

static void sent(store_t *s, int ok, res_fn on_res, done_fn on_done)
{
    if (!ok) {
        fail(s, "send", NULL);
        return;
    }
    s->on_res = on_res;
    s->on_done = on_done;
    s->io = IO_SENDING;
}

static void send_sql(store_t *s, const char *sql, res_fn on_res, done_fn on_done)
{
    sent(s, PQsendQuery(s->conn, sql), on_res, on_done);
}

static void send_params(store_t *s, const char *sql, int n, const char *const *vals, res_fn on_res,
                        done_fn on_done)
{
    sent(s, PQsendQueryParams(s->conn, sql, n, NULL, vals, NULL, NULL, 0), on_res, on_done);
}

/* A result handler that accepts only success without rows or with rows ignored. */
static void expect_ok(store_t *s, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail(s, "command", PQresultErrorMessage(r));
}

/* ---------- COPY IN / OUT ---------- */

/* Next piece of COPY data to send, or NULL when done: the frame header, each surviving batch's
 * rows of the current table, the trailer. */
static const char *copy_piece(store_t *s, size_t *len)
{
    job_t *j = s->head;
    for (;;) {
        if (s->copy_phase == 0) {
            s->copy_phase = 1;
            pgcopy_reset(&s->copy_frame);
            pgcopy_header(&s->copy_frame);
            *len = s->copy_frame.len;
            return s->copy_frame.p;
        }
        if (s->copy_phase == 1) {
            while (s->copy_bi < j->nb) {
                batch_t *b = j->batches[s->copy_bi];
                pgcopy_t *rows = &b->rows[s->copy_table];
                if (!b->fenced && s->copy_pos < rows->len) {
                    size_t n = rows->len - s->copy_pos;
                    if (n > COPY_CHUNK)
                        n = COPY_CHUNK;
                    const char *p = rows->p + s->copy_pos;
                    s->copy_pos += n;
                    *len = n;
                    return p;
                }
                s->copy_bi++;
                s->copy_pos = 0;
            }
            s->copy_phase = 2;
            pgcopy_reset(&s->copy_frame);
            pgcopy_trailer(&s->copy_frame);
            *len = s->copy_frame.len;
            return s->copy_frame.p;
        }
        return NULL;
    }
}

static void copy_in(store_t *s)
{
    for (;;) {
        if (s->copy_phase == 3) {
            int r = PQputCopyEnd(s->conn, NULL);
            if (r < 0) {
                fail(s, "copy end", NULL);
                return;
            }
            if (r == 0) {
                watch(s, UV_READABLE | UV_WRITABLE);
                return;
            }
            s->copy_phase = 4;
            s->io = IO_SENDING;
            return;
        }
        size_t len = 0;
        size_t save_bi = s->copy_bi, save_pos = s->copy_pos;
        int save_phase = s->copy_phase;
        const char *p = copy_piece(s, &len);
        if (!p) {
            s->copy_phase = 3;
            continue;
        }
        int r = PQputCopyData(s->conn, p, (int)len);
        if (r < 0) {
            fail(s, "copy data", NULL);
            return;
        }
        if (r == 0) { /* buffers full: rewind and wait until writable */
            s->copy_bi = save_bi;
            s->copy_pos = save_pos;
            s->copy_phase = save_phase;
            watch(s, UV_READABLE | UV_WRITABLE);
            return;
        }
    }
}

/* One COPY OUT row of a load: `COPY (SELECT <one bytea column> ...) TO STDOUT (FORMAT binary)`:
 * int16 field count 1, int32 length, that many bytes. */
static void copy_out_row(store_t *s, const unsigned char *p, int len)
{
    if (!s->copy_header_seen) {
        static const unsigned char sig[11] = {'P',  'G',  'C',  'O',  'P', 'Y',
                                              '\n', 0xff, '\r', '\n', 0};
        if (len < 19 || memcmp(p, sig, 11) != 0) {
            fail(s, "copy out", "bad binary COPY header");
            return;
        }
        uint32_t ext = (uint32_t)p[15] << 24 | (uint32_t)p[16] << 16 | (uint32_t)p[17] << 8 | p[18];
        if ((uint64_t)len < 19 + (uint64_t)ext) {
            fail(s, "copy out", "bad binary COPY header");
            return;
        }
        p += 19 + ext;
        len -= (int)(19 + ext);
        s->copy_header_seen = true;
        if (len == 0)
            return;
    }
    if (len == 2 && p[0] == 0xff && p[1] == 0xff)
        return; /* trailer */
    uint32_t n =
        len >= 6 ? (uint32_t)p[2] << 24 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 8 | p[5] : 0;
    if (len < 6 || p[0] != 0 || p[1] != 1 || (uint64_t)n + 6 != (uint64_t)len) {
        fail(s, "copy out", "unexpected row shape");
        return;
    }
    job_t *j = s->head;
    j->delivered = true;
    j->row_cb(j->arg, p + 6, n);
}

static void copy_out(store_t *s)
{
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(s->conn, &buf, 1);
        if (n > 0) {
            copy_out_row(s, (const unsigned char *)buf, n);
            PQfreemem(buf);
            if (s->broken)
                return;
            continue;
        }
        if (n == 0) {
            watch(s, UV_READABLE);
            return;
        }
        if (n == -1) {
            s->io = IO_READING;
            return;
        }
        fail(s, "copy out", NULL);
        return;
    }
}

/* ---------- the driver ---------- */

static void drive(store_t *s)
{
    if (s->in_drive)
        return;
    s->in_drive = true;
    while (!s->broken && s->conn) {
        switch (s->io) {
        case IO_IDLE:
            watch(s, UV_READABLE);
            if (s->state == C_READY && s->head && s->head->step == 0)
                run_job(s);
            if (s->io == IO_IDLE)
                goto out;
            break;
        case IO_SENDING: {
            int r = PQflush(s->conn);
            if (r < 0) {
                fail(s, "flush", NULL);
                break;
            }
            if (r == 1) {
                watch(s, UV_READABLE | UV_WRITABLE);
                goto out;
            }
            s->io = IO_READING;
            break;
        }
        case IO_COPY_IN:
            copy_in(s);
            if (s->io == IO_COPY_IN)
                goto out;
            break;
        case IO_COPY_OUT:
            copy_out(s);
            if (s->io == IO_COPY_OUT)
                goto out;
            break;
        case IO_READING: {
            watch(s, UV_READABLE);
            if (s->broken)
                break;
            if (PQisBusy(s->conn))
                goto out;
            PGresult *r = PQgetResult(s->conn);
            if (!r) {
                s->io = IO_IDLE;
                done_fn d = s->on_done;
                s->on_done = NULL;
                s->on_res = NULL;
                if (d)
                    d(s);
                break;
            }
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_COPY_IN) {
                s->io = IO_COPY_IN;
            } else if (st == PGRES_COPY_OUT) {
                s->copy_header_seen = false;
                s->io = IO_COPY_OUT;
            } else if (s->on_res) {
                s->on_res(s, r);
            }
            PQclear(r);
            break;
        }
        }
    }
out:
    s->in_drive = false;
    if (s->broken)
        reset(s);
}

/* ---------- set-up and migrations ---------- */

static void setup_fail_fatal(store_t *s, const char *msg)
{
    LOG_ERROR(s->log, "postgres schema", LS("error", msg));
    s->state = C_FAILED;
    set_up(s, false);
}

static void on_version(store_t *s, PGresult *r)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fail(s, "schema version", PQresultErrorMessage(r));
        return;
    }
    s->schema_version = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
}

static void setup_done_step(store_t *s)
{
    s->setup_step++;
    setup_next(s);
}

/* Applies the next missing migration, or moves on. */
static void migrate_next(store_t *s)
{
    while (s->mig_next < migrations_count && migrations[s->mig_next].version <= s->schema_version)
        s->mig_next++;
    if (s->mig_next == migrations_count) {
        s->setup_step++;
        setup_next(s);
        return;
    }
    const migration_t *m = &migrations[s->mig_next];
    if (!s->cfg->pg_auto_migrate) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "database schema is at version %d, this binary needs %d "
                 "(postgres.auto_migrate is off: run `meterd migrate`)",
                 s->schema_version, migrations[migrations_count - 1].version);
        setup_fail_fatal(s, msg);
        return;
    }
    size_t n = strlen(m->sql) + 256;
    char *sql = malloc(n);
    if (!sql) {
        fail(s, "migrate", "out of memory");
        return;
    }
    snprintf(sql, n,
             "BEGIN;\n%s\n;INSERT INTO schema_migrations (version, name) VALUES (%d, '%s');\n"
             "COMMIT;",
             m->sql, m->version, m->name);
    LOG_INFO(s->log, "applying migration", LI("version", m->version), LS("name", m->name));
    s->schema_version = m->version;
    s->mig_next++;
    send_sql(s, sql, expect_ok, migrate_next);
    free(sql);
}

/* Temporary staging tables, one per merged target, emptied by every commit. */
static const char staging_sql[] =
    "CREATE TEMP TABLE cost_staging (org_id text COLLATE \"C\" NOT NULL,"
    " project_id text COLLATE \"C\" NOT NULL, provider text COLLATE \"C\" NOT NULL,"
    " model text COLLATE \"C\" NOT NULL, hour timestamptz NOT NULL,"
    " billable boolean NOT NULL, calls bigint NOT NULL, input_tokens bigint NOT NULL,"
    " output_tokens bigint NOT NULL, cache_read_tokens bigint NOT NULL,"
    " cache_write_tokens bigint NOT NULL, cost_nanos bigint NOT NULL,"
    " unpriced_calls bigint NOT NULL) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE state_staging (checkpoint_id integer NOT NULL,"
    " org_id text COLLATE \"C\" NOT NULL, state bytea NOT NULL) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE usage_staging (org_id text COLLATE \"C\" NOT NULL,"
    " project_id text COLLATE \"C\" NOT NULL, workflow_id text COLLATE \"C\" NOT NULL,"
    " complexity text NOT NULL, status text NOT NULL, tier text NOT NULL,"
    " requested_at timestamptz NOT NULL, started_at timestamptz, finished_at timestamptz,"
    " billed boolean NOT NULL, overage boolean NOT NULL) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE runs_staging (org_id text COLLATE \"C\" NOT NULL,"
    " project_id text COLLATE \"C\" NOT NULL, run_id text COLLATE \"C\" NOT NULL,"
    " workflow_id text COLLATE \"C\" NOT NULL, status text NOT NULL,"
    " requested_at timestamptz NOT NULL, admitted_at timestamptz, finished_at timestamptz,"
    " waited_ms bigint NOT NULL, agent_ms bigint NOT NULL) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE accounts_staging (org_id text COLLATE \"C\" NOT NULL, tier text NOT NULL,"
    " promo text NOT NULL, period_start timestamptz NOT NULL, period_end timestamptz NOT NULL,"
    " credits_micros bigint NOT NULL, budget_micros bigint NOT NULL, thresholds text NOT NULL)"
    " ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE invoices_staging (id text COLLATE \"C\" NOT NULL,"
    " org_id text COLLATE \"C\" NOT NULL, period_start timestamptz NOT NULL,"
    " period_end timestamptz NOT NULL, nominal_end timestamptz NOT NULL, status text NOT NULL,"
    " subtotal_cents bigint NOT NULL, credits_cents bigint NOT NULL, total_cents bigint NOT NULL)"
    " ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE lines_staging (invoice_id text COLLATE \"C\" NOT NULL,"
    " line_no integer NOT NULL, kind text NOT NULL, detail text NOT NULL,"
    " description text NOT NULL, quantity_raw text NOT NULL, quantity_scale text NOT NULL,"
    " unit_price_micros bigint NOT NULL, amount_cents bigint NOT NULL) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE rollups_staging (org_id text COLLATE \"C\" NOT NULL,"
    " period_start timestamptz NOT NULL, meter text NOT NULL, quantity text NOT NULL)"
    " ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE subs_staging (org_id text COLLATE \"C\" NOT NULL,"
    " period_start timestamptz NOT NULL, started_at timestamptz NOT NULL,"
    " ended_at timestamptz NOT NULL, tier text NOT NULL, promo text NOT NULL,"
    " fee_micros bigint NOT NULL) ON COMMIT DELETE ROWS";

/* How each batch table reaches PostgreSQL: a binary COPY, into the table itself or into its
 * staging table, then (for staged ones) one statement that merges staging into the table.
 * Merges are safe even if two partitions carried the same key (GROUP BY / DISTINCT ON). */
static const struct {
    const char *copy;
    const char *merge;
} targets[BATCH_NTABLES] = {
    [BATCH_APPLIED] = {"COPY applied_event_ids (checkpoint_id, end_offset, n, min_ts, max_ts, ids)"
                       " FROM STDIN (FORMAT binary)",
                       NULL},
    [BATCH_COST] =
        {"COPY cost_staging (org_id, project_id, provider, model, hour, billable, calls,"
         " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_nanos,"
         " unpriced_calls) FROM STDIN (FORMAT binary)",
         "INSERT INTO cost_records (org_id, project_id, provider, model, hour, billable, calls,"
         " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_nanos,"
         " unpriced_calls)"
         " SELECT org_id, project_id, provider, model, hour, billable, sum(calls),"
         " sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
         " sum(cache_write_tokens), sum(cost_nanos), sum(unpriced_calls)"
         " FROM cost_staging GROUP BY 1, 2, 3, 4, 5, 6"
         " ON CONFLICT (org_id, project_id, provider, model, hour, billable) DO UPDATE SET"
         " calls = cost_records.calls + EXCLUDED.calls,"
         " input_tokens = cost_records.input_tokens + EXCLUDED.input_tokens,"
         " output_tokens = cost_records.output_tokens + EXCLUDED.output_tokens,"
         " cache_read_tokens = cost_records.cache_read_tokens + EXCLUDED.cache_read_tokens,"
         " cache_write_tokens = cost_records.cache_write_tokens + EXCLUDED.cache_write_tokens,"
         " cost_nanos = cost_records.cost_nanos + EXCLUDED.cost_nanos,"
         " unpriced_calls = cost_records.unpriced_calls + EXCLUDED.unpriced_calls,"
         " updated_at = now()"},
    [BATCH_STATE] = {"COPY state_staging (checkpoint_id, org_id, state) FROM STDIN (FORMAT binary)",
                     "INSERT INTO ledger_state (checkpoint_id, org_id, state)"
                     " SELECT checkpoint_id, org_id, state FROM state_staging"
                     " ON CONFLICT (checkpoint_id, org_id) DO UPDATE SET"
                     " state = EXCLUDED.state, updated_at = now()"},
    [BATCH_USAGE] =
        {"COPY usage_staging (org_id, project_id, workflow_id, complexity, status, tier,"
         " requested_at, started_at, finished_at, billed, overage) FROM STDIN (FORMAT binary)",
         "INSERT INTO usage_records (org_id, project_id, workflow_id, complexity, status, tier,"
         " requested_at, started_at, finished_at, billed, overage)"
         " SELECT DISTINCT ON (org_id, workflow_id, requested_at) org_id, project_id,"
         " workflow_id, complexity, status, tier, requested_at, started_at, finished_at, billed,"
         " overage FROM usage_staging"
         " ON CONFLICT (org_id, workflow_id, requested_at) DO UPDATE SET"
         " project_id = EXCLUDED.project_id, complexity = EXCLUDED.complexity,"
         " status = EXCLUDED.status, tier = EXCLUDED.tier, started_at = EXCLUDED.started_at,"
         " finished_at = EXCLUDED.finished_at, billed = EXCLUDED.billed,"
         " overage = EXCLUDED.overage, updated_at = now()"},
    [BATCH_RUNS] =
        {"COPY runs_staging (org_id, project_id, run_id, workflow_id, status, requested_at,"
         " admitted_at, finished_at, waited_ms, agent_ms) FROM STDIN (FORMAT binary)",
         "INSERT INTO agent_runs (org_id, project_id, run_id, workflow_id, status, requested_at,"
         " admitted_at, finished_at, waited_ms, agent_ms)"
         " SELECT DISTINCT ON (org_id, run_id, requested_at) org_id, project_id, run_id,"
         " workflow_id, status, requested_at, admitted_at, finished_at, waited_ms, agent_ms"
         " FROM runs_staging"
         " ON CONFLICT (org_id, run_id, requested_at) DO UPDATE SET"
         " project_id = EXCLUDED.project_id, workflow_id = EXCLUDED.workflow_id,"
         " status = EXCLUDED.status, admitted_at = EXCLUDED.admitted_at,"
         " finished_at = EXCLUDED.finished_at, waited_ms = EXCLUDED.waited_ms,"
         " agent_ms = EXCLUDED.agent_ms, updated_at = now()"},
    [BATCH_ACCOUNTS] =
        {"COPY accounts_staging (org_id, tier, promo, period_start, period_end, credits_micros,"
         " budget_micros, thresholds) FROM STDIN (FORMAT binary)",
         "INSERT INTO billing_accounts (org_id, tier, promo, period_start, period_end,"
         " credits_micros, budget_micros, thresholds)"
         " SELECT DISTINCT ON (org_id) org_id, tier, promo, period_start, period_end,"
         " credits_micros, budget_micros,"
         " coalesce(string_to_array(nullif(thresholds, ''), ',')::integer[], '{}')"
         " FROM accounts_staging"
         " ON CONFLICT (org_id) DO UPDATE SET tier = EXCLUDED.tier, promo = EXCLUDED.promo,"
         " period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,"
         " credits_micros = EXCLUDED.credits_micros, budget_micros = EXCLUDED.budget_micros,"
         " thresholds = EXCLUDED.thresholds, updated_at = now()"},
    /* An invoice is rewritten whole: its row upserted, its lines and its period's stretches
     * deleted here and inserted again by the next two targets. */
    [BATCH_INVOICES] =
        {"COPY invoices_staging (id, org_id, period_start, period_end, nominal_end, status,"
         " subtotal_cents, credits_cents, total_cents) FROM STDIN (FORMAT binary)",
         "WITH up AS (INSERT INTO invoices (id, org_id, period_start, period_end, nominal_end,"
         " status, subtotal_cents, credits_cents, total_cents)"
         " SELECT DISTINCT ON (id) id, org_id, period_start, period_end, nominal_end, status,"
         " subtotal_cents, credits_cents, total_cents FROM invoices_staging"
         " ON CONFLICT (id) DO UPDATE SET period_end = EXCLUDED.period_end,"
         " nominal_end = EXCLUDED.nominal_end, status = EXCLUDED.status,"
         " subtotal_cents = EXCLUDED.subtotal_cents, credits_cents = EXCLUDED.credits_cents,"
         " total_cents = EXCLUDED.total_cents, updated_at = now() RETURNING id),"
         " subs AS (DELETE FROM subscriptions s USING invoices_staging i"
         " WHERE s.org_id = i.org_id AND s.period_start = i.period_start)"
         " DELETE FROM invoice_line_items WHERE invoice_id IN (SELECT id FROM up)"},
    [BATCH_LINES] =
        {"COPY lines_staging (invoice_id, line_no, kind, detail, description, quantity_raw,"
         " quantity_scale, unit_price_micros, amount_cents) FROM STDIN (FORMAT binary)",
         "INSERT INTO invoice_line_items (invoice_id, line_no, kind, detail, description,"
         " quantity, quantity_raw, quantity_scale, unit_price_micros, amount_cents)"
         " SELECT DISTINCT ON (invoice_id, line_no) invoice_id, line_no, kind, detail,"
         " description, quantity_raw::numeric / quantity_scale::numeric, quantity_raw::numeric,"
         " quantity_scale::numeric, unit_price_micros, amount_cents FROM lines_staging"},
    [BATCH_ROLLUPS] =
        {"COPY rollups_staging (org_id, period_start, meter, quantity) FROM STDIN (FORMAT binary)",
         "INSERT INTO usage_rollups (org_id, period_start, meter, quantity)"
         " SELECT DISTINCT ON (org_id, period_start, meter) org_id, period_start, meter,"
         " quantity::numeric FROM rollups_staging"
         " ON CONFLICT (org_id, period_start, meter) DO UPDATE SET"
         " quantity = EXCLUDED.quantity, updated_at = now()"},
    [BATCH_SUBS] =
        {"COPY subs_staging (org_id, period_start, started_at, ended_at, tier, promo, fee_micros)"
         " FROM STDIN (FORMAT binary)",
         "INSERT INTO subscriptions (org_id, period_start, started_at, ended_at, tier, promo,"
         " fee_micros)"
         " SELECT DISTINCT ON (org_id, period_start, started_at) org_id, period_start,"
         " started_at, ended_at, tier, promo, fee_micros FROM subs_staging"},
};

static void setup_next(store_t *s)
{
    char sql[256];
    switch (s->setup_step) {
    case 0:
        /* A frozen instance must not hold its checkpoint rows' locks for ever: the new owner's
         * claim waits on them. */
        snprintf(sql, sizeof(sql),
                 "SET statement_timeout = %lld; SET idle_in_transaction_session_timeout = %lld",
                 (long long)s->cfg->pg_statement_timeout_ms,
                 (long long)s->cfg->pg_idle_in_transaction_timeout_ms);
        send_sql(s, sql, expect_ok, setup_done_step);
        break;
    case 1:
        snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%d)", MIGRATION_LOCK_KEY);
        send_sql(s, sql, expect_ok, setup_done_step);
        break;
    case 2:
        send_sql(s,
                 "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                 " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                 expect_ok, setup_done_step);
        break;
    case 3:
        send_sql(s, "SELECT coalesce(max(version), 0) FROM schema_migrations", on_version,
                 setup_done_step);
        break;
    case 4:
        if (s->schema_version > migrations[migrations_count - 1].version)
            LOG_WARN(s->log, "database schema is newer than this binary",
                     LI("database", s->schema_version),
                     LI("binary", migrations[migrations_count - 1].version));
        s->mig_next = 0;
        migrate_next(s);
        break;
    case 5:
        snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%d)", MIGRATION_LOCK_KEY);
        send_sql(s, sql, expect_ok, setup_done_step);
        break;
    case 6:
        if (s->migrate_only) {
            s->setup_step = 7;
            setup_next(s);
            break;
        }
        send_sql(s, staging_sql, expect_ok, setup_done_step);
        break;
    default:
        s->state = C_READY;
        s->backoff_ms = BACKOFF_MIN_MS;
        set_up(s, true);
        break;
    }
}

/* ---------- jobs ---------- */

static void job_free(job_t *j)
{
    free(j->partitions);
    free(j->claims);
    free(j);
}

static void enqueue(store_t *s, job_t *j)
{
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->njobs++;
    if (s->state == C_READY && s->io == IO_IDLE && s->head == j)
        drive(s);
}

/* The head job completed: dequeue it, call back, start the next. */
static void job_complete(store_t *s)
{
    job_t *j = s->head;
    s->head = j->next;
    if (!s->head)
        s->tail = NULL;
    s->njobs--;
    s->backoff_ms = BACKOFF_MIN_MS;
    switch (j->kind) {
    case JOB_CLAIM:
        j->claim_cb(j->arg, j->claims, j->nclaims);
        break;
    case JOB_LOAD:
        j->done_cb(j->arg);
        break;
    case JOB_FLUSH:
        j->flush_cb(j->arg, j->batches, j->nb);
        break;
    }
    job_free(j);
}

/* Formats "{a,b,c}" for an int array parameter; NULL entries (value -1 when null_neg) as NULL. */
static char *int_array(const int64_t *v, size_t n, bool null_neg)
{
    size_t cap = n * 21 + 3, len = 0;
    char *p = malloc(cap);
    if (!p)
        return NULL;
    p[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            p[len++] = ',';
        if (null_neg && v[i] < 0)
            len += (size_t)snprintf(p + len, cap - len, "NULL");
        else
            len += (size_t)snprintf(p + len, cap - len, "%lld", (long long)v[i]);
    }
    p[len++] = '}';
    p[len] = '\0';
    return p;
}

/* claim */

static void on_claim_rows(store_t *s, PGresult *r)
{
    job_t *j = s->head;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || (size_t)PQntuples(r) != j->npart) {
        fail(s, "claim", PQresultErrorMessage(r));
        return;
    }
    j->nclaims = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        store_claim_t *c = &j->claims[j->nclaims++];
        c->checkpoint_id = (int32_t)strtol(PQgetvalue(r, i, 0), NULL, 10);
        c->partition = (int32_t)strtol(PQgetvalue(r, i, 1), NULL, 10);
        c->next_offset = PQgetisnull(r, i, 2) ? -1 : strtoll(PQgetvalue(r, i, 2), NULL, 10);
        c->epoch = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    }
}

static void run_claim(store_t *s, job_t *j)
{
    int64_t *v = malloc(j->npart * sizeof(int64_t));
    if (!v) {
        fail(s, "claim", "out of memory");
        return;
    }
    for (size_t i = 0; i < j->npart; i++)
        v[i] = j->partitions[i];
    char *arr = int_array(v, j->npart, false);
    free(v);
    if (!arr) {
        fail(s, "claim", "out of memory");
        return;
    }
    const char *params[3] = {s->cfg->kafka_input_topic, arr, s->cfg->instance_id};
    j->step = 1;
    send_params(s,
                "INSERT INTO consumer_checkpoints (topic, partition, epoch, owner, claimed_at)"
                " SELECT $1, p, 1, $3, now() FROM unnest($2::int4[]) AS p ORDER BY p"
                " ON CONFLICT (topic, partition) DO UPDATE SET"
                " epoch = consumer_checkpoints.epoch + 1, owner = EXCLUDED.owner,"
                " claimed_at = now()"
                " RETURNING id, partition, next_offset, epoch",
                3, params, on_claim_rows, job_complete);
    free(arr);
}

/* load */

static void run_load(store_t *s, job_t *j)
{
    char sql[224];
    if (j->delivered) {
        j->delivered = false;
        j->row_cb(j->arg, NULL, 0);
    }
    if (j->load_state)
        snprintf(sql, sizeof(sql),
                 "COPY (SELECT state FROM ledger_state WHERE checkpoint_id = %d"
                 " ORDER BY org_id) TO STDOUT (FORMAT binary)",
                 (int)j->checkpoint_id);
    else
        snprintf(sql, sizeof(sql),
                 "COPY (SELECT ids FROM applied_event_ids WHERE checkpoint_id = %d"
                 " ORDER BY end_offset) TO STDOUT (FORMAT binary)",
                 (int)j->checkpoint_id);
    j->step = 1;
    send_sql(s, sql, expect_ok, job_complete);
}

/* flush */

static void flush_step(store_t *s);

static void flush_next(store_t *s)
{
    s->head->step++;
    flush_step(s);
}

static size_t live_rows(const job_t *j, int table)
{
    size_t n = 0;
    for (size_t i = 0; i < j->nb; i++)
        if (!j->batches[i]->fenced)
            n += (size_t)j->batches[i]->nrows[table];
    return n;
}

static size_t live_batches(const job_t *j)
{
    size_t n = 0;
    for (size_t i = 0; i < j->nb; i++)
        n += !j->batches[i]->fenced;
    return n;
}

/* The checkpoint UPDATE returns the ids whose checkpoint moved; the others are fenced. */
static void on_checkpoint_rows(store_t *s, PGresult *r)
{
    job_t *j = s->head;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(s, "checkpoint update", PQresultErrorMessage(r));
        return;
    }
    for (size_t i = 0; i < j->nb; i++) {
        bool found = false;
        for (int k = 0; k < PQntuples(r) && !found; k++)
            found = strtol(PQgetvalue(r, k, 0), NULL, 10) == j->batches[i]->checkpoint_id;
        j->batches[i]->fenced = !found;
        if (!found)
            LOG_WARN(s->log, "partition fenced: another instance claimed it",
                     LI("partition", j->batches[i]->partition), LI("epoch", j->batches[i]->epoch));
    }
}

/* After a lost connection with COMMIT sent: did the transaction commit? */
static void on_verify_rows(store_t *s, PGresult *r)
{
    job_t *j = s->head;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(s, "verify", PQresultErrorMessage(r));
        return;
    }
    int committed = 0, not_committed = 0;
    for (size_t i = 0; i < j->nb; i++) {
        batch_t *b = j->batches[i];
        b->fenced = true;
        for (int k = 0; k < PQntuples(r); k++) {
            if (strtol(PQgetvalue(r, k, 0), NULL, 10) != b->checkpoint_id)
                continue;
            int64_t off = PQgetisnull(r, k, 1) ? -1 : strtoll(PQgetvalue(r, k, 1), NULL, 10);
            int64_t epoch = strtoll(PQgetvalue(r, k, 2), NULL, 10);
            if (epoch != b->epoch)
                break; /* claimed by another instance since: fenced either way */
            b->fenced = false;
            if (off == b->new_offset)
                committed++;
            else if (off == b->expected_offset)
                not_committed++;
            else
                fail(s, "verify", "checkpoint moved unexpectedly under our own claim");
        }
    }
    assert(!(committed && not_committed) || s->broken);
    j->committed = committed > 0;
    LOG_INFO(s->log, "flush outcome after reconnect", LS("committed", committed ? "yes" : "no"));
}

static void after_verify(store_t *s)
{
    job_t *j = s->head;
    j->commit_sent = false;
    if (j->committed || live_batches(j) == 0) {
        job_complete(s);
        return;
    }
    j->step = 1;
    flush_step(s);
}

static void after_commit(store_t *s)
{
    s->head->commit_sent = false;
    job_complete(s);
}

static void start_copy(store_t *s, int table, const char *sql)
{
    s->copy_table = table;
    s->copy_bi = 0;
    s->copy_pos = 0;
    s->copy_phase = 0;
    send_sql(s, sql, expect_ok, flush_next);
}

static void flush_step(store_t *s)
{
    job_t *j = s->head;
    switch (j->step) {
    case 0: { /* entry: a retry whose COMMIT may have landed verifies first */
        for (size_t i = 0; i < j->nb; i++)
            j->batches[i]->fenced = false;
        if (!j->commit_sent) {
            j->step = 1;
            flush_step(s);
            return;
        }
        int64_t *ids = malloc(j->nb * sizeof(int64_t));
        char *arr = NULL;
        if (ids) {
            for (size_t i = 0; i < j->nb; i++)
                ids[i] = j->batches[i]->checkpoint_id;
            arr = int_array(ids, j->nb, false);
            free(ids);
        }
        if (!arr) {
            fail(s, "verify", "out of memory");
            return;
        }
        const char *params[1] = {arr};
        send_params(s,
                    "SELECT id, next_offset, epoch FROM consumer_checkpoints"
                    " WHERE id = ANY($1::int4[])",
                    1, params, on_verify_rows, after_verify);
        free(arr);
        return;
    }
    case 1:
        send_sql(s, "BEGIN", expect_ok, flush_next);
        return;
    case 2: {
        int64_t *v = malloc(4 * j->nb * sizeof(int64_t));
        char *arr[4] = {NULL, NULL, NULL, NULL};
        if (v) {
            for (size_t i = 0; i < j->nb; i++) {
                v[i] = j->batches[i]->checkpoint_id;
                v[j->nb + i] = j->batches[i]->expected_offset;
                v[2 * j->nb + i] = j->batches[i]->new_offset;
                v[3 * j->nb + i] = j->batches[i]->epoch;
            }
            for (int k = 0; k < 4; k++)
                arr[k] = int_array(v + (size_t)k * j->nb, j->nb, k == 1);
            free(v);
        }
        if (!arr[0] || !arr[1] || !arr[2] || !arr[3]) {
            for (int k = 0; k < 4; k++)
                free(arr[k]);
            fail(s, "flush", "out of memory");
            return;
        }
        const char *params[4] = {arr[0], arr[1], arr[2], arr[3]};
        send_params(s,
                    "UPDATE consumer_checkpoints c SET next_offset = v.new_offset,"
                    " updated_at = now()"
                    " FROM unnest($1::int4[], $2::int8[], $3::int8[], $4::int8[])"
                    " AS v(id, expected, new_offset, epoch)"
                    " WHERE c.id = v.id AND c.epoch = v.epoch"
                    " AND c.next_offset IS NOT DISTINCT FROM v.expected"
                    " RETURNING c.id",
                    4, params, on_checkpoint_rows, flush_next);
        for (int k = 0; k < 4; k++)
            free(arr[k]);
        return;
    }
    default:
        break;
    }
    /* Steps 3 .. 3 + 2 * BATCH_NTABLES - 1: each table's COPY then its merge; then COMMIT. */
    if (live_batches(j) == 0) { /* every partition fenced: nothing to write */
        send_sql(s, "ROLLBACK", expect_ok, job_complete);
        return;
    }
    for (;;) {
        int k = j->step - 3;
        if (k >= 2 * BATCH_NTABLES) {
            j->commit_sent = true;
            send_sql(s, "COMMIT", expect_ok, after_commit);
            return;
        }
        int table = k / 2;
        if (live_rows(j, table) == 0 || (k % 2 == 1 && !targets[table].merge)) {
            j->step++;
            continue;
        }
        if (k % 2 == 0)
            start_copy(s, table, targets[table].copy);
        else
            send_sql(s, targets[table].merge, expect_ok, flush_next);
        return;
    }
}

static void run_job(store_t *s)
{
    job_t *j = s->head;
    switch (j->kind) {
    case JOB_CLAIM:
        run_claim(s, j);
        break;
    case JOB_LOAD:
        run_load(s, j);
        break;
    case JOB_FLUSH:
        flush_step(s);
        break;
    }
}

/* ---------- public ---------- */

store_t *store_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                   bool migrate_only, store_state_cb state_cb, void *arg)
{
    store_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = loop;
    s->cfg = cfg;
    s->log = log;
    s->state_cb = state_cb;
    s->arg = arg;
    s->migrate_only = migrate_only;
    s->poll_fd = -1;
    s->backoff_ms = BACKOFF_MIN_MS;
    pgcopy_init(&s->copy_frame);
    s->m_errors =
        metrics_counter(metrics, "meterd_pg_errors_total",
                        "PostgreSQL errors (each drops the connection and retries).", NULL);
    s->m_reconnects =
        metrics_counter(metrics, "meterd_pg_reconnects_total", "PostgreSQL reconnections.", NULL);
    s->m_up = metrics_gauge(metrics, "meterd_pg_up",
                            "1 when connected to PostgreSQL with the schema in place.", NULL);
    if (!s->m_errors || !s->m_reconnects || !s->m_up) {
        free(s);
        return NULL;
    }
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_timer, 0, 0);
    return s;
}

static void timer_closed(uv_handle_t *h)
{
    store_t *s = h->data;
    pgcopy_close(&s->copy_frame);
    free(s);
}

void store_close(store_t *s)
{
    s->closing = true;
    uv_timer_stop(&s->timer);
    drop_poll(s);
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    while (s->head) {
        job_t *j = s->head;
        s->head = j->next;
        job_free(j);
    }
    s->tail = NULL;
    s->njobs = 0;
    uv_close((uv_handle_t *)&s->timer, timer_closed);
}

bool store_is_up(const store_t *s)
{
    return s->state == C_READY;
}

bool store_failed(const store_t *s)
{
    return s->state == C_FAILED;
}

size_t store_jobs(const store_t *s)
{
    return s->njobs;
}

int store_claim(store_t *s, const int32_t *partitions, size_t n, store_claim_cb cb, void *arg)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->kind = JOB_CLAIM;
    j->partitions = malloc(n * sizeof(int32_t));
    j->claims = calloc(n, sizeof(store_claim_t));
    if (!j->partitions || !j->claims) {
        job_free(j);
        return -1;
    }
    memcpy(j->partitions, partitions, n * sizeof(int32_t));
    j->npart = n;
    j->claim_cb = cb;
    j->arg = arg;
    enqueue(s, j);
    return 0;
}

static int load(store_t *s, int32_t checkpoint_id, bool state, store_row_cb row_cb,
                store_done_cb done_cb, void *arg)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->kind = JOB_LOAD;
    j->checkpoint_id = checkpoint_id;
    j->load_state = state;
    j->row_cb = row_cb;
    j->done_cb = done_cb;
    j->arg = arg;
    enqueue(s, j);
    return 0;
}

int store_load_ids(store_t *s, int32_t checkpoint_id, store_row_cb row_cb, store_done_cb done_cb,
                   void *arg)
{
    return load(s, checkpoint_id, false, row_cb, done_cb, arg);
}

int store_load_state(store_t *s, int32_t checkpoint_id, store_row_cb row_cb, store_done_cb done_cb,
                     void *arg)
{
    return load(s, checkpoint_id, true, row_cb, done_cb, arg);
}

int store_flush(store_t *s, batch_t **batches, size_t n, store_flush_cb cb, void *arg)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->kind = JOB_FLUSH;
    j->batches = batches;
    j->nb = n;
    j->flush_cb = cb;
    j->arg = arg;
    enqueue(s, j);
    return 0;
}
