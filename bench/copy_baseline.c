/*
 * copy_baseline — how fast PostgreSQL takes one narrow identity row per event by COPY on this
 * machine: the PostgreSQL-side anchor of meterd's benchmark.
 *
 *     copy_baseline --dsn DSN --rows N [--batch B] [--partitions P] [--seed S]
 *                   [--schema NAME] [--variants full,pk,heap]
 *
 * The row is the one meterd wrote per applied event up to commit abc9ea9, into applied_events
 * (checkpoint_id int4, id_hash uuid, event_ts int8, PRIMARY KEY (checkpoint_id, id_hash),
 * checkpoint_id REFERENCES consumer_checkpoints), advancing the partitions' checkpoint rows in
 * the same transaction. (meterd now stores the identities of a flush as one row per partition,
 * so this is the cost of the simplest exactly-once design, an anchor, not meterd's own work.)
 * In a scratch schema this tool creates a checkpoint table with P rows and the identity table,
 * then writes N rows in transactions of B rows:
 *
 *     BEGIN; UPDATE checkpoints (all P rows); COPY applied_events FROM STDIN (FORMAT binary);
 *     COMMIT
 *
 * The rows of a transaction are grouped by checkpoint id (B / P per partition, as meterd's
 * per-partition batches are); id_hash is 16 seeded random bytes (meterd's is an XXH3-128 hash,
 * just as random for the index). Variants, each on a fresh table:
 *   full  primary key and foreign key, as meterd's applied_events had them
 *   pk    primary key only (no foreign-key check per row)
 *   heap  no constraint at all: what the index and the foreign key cost, by difference
 *
 * The blocking libpq API is fine in a one-shot tool. Timing covers the transactions only (the
 * rows are encoded before each BEGIN). Output: one JSON object on stdout with, per variant,
 * rows, seconds, rate and the transaction duration's median and maximum. Exit status: 0, 1
 * runtime failure, 2 usage.
 */
#include <libpq-fe.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#define EXIT_USAGE 2
#define CHUNK      (1 << 20)
#define BASE_TS    1767225600000LL

typedef struct {
    const char *dsn;
    const char *schema;
    const char *variants;
    int64_t rows, batch, partitions, seed;
} options_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: copy_baseline --dsn DSN --rows N [--batch B] [--partitions P]\n"
                 "                     [--seed S] [--schema NAME] [--variants full,pk,heap]\n");
}

static int parse_args(int argc, char **argv, options_t *o)
{
    *o = (options_t){.schema = "bench_copy",
                     .variants = "full,pk,heap",
                     .batch = 50000,
                     .partitions = 64,
                     .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "copy_baseline: %s: unknown argument or missing value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(a, "--dsn") == 0)
            o->dsn = v;
        else if (strcmp(a, "--schema") == 0)
            o->schema = v;
        else if (strcmp(a, "--variants") == 0)
            o->variants = v;
        else if (strcmp(a, "--rows") == 0)
            rc = bench_parse_i64(v, 1, INT64_C(1) << 40, &o->rows);
        else if (strcmp(a, "--batch") == 0)
            rc = bench_parse_i64(v, 1, 100000000, &o->batch);
        else if (strcmp(a, "--partitions") == 0)
            rc = bench_parse_i64(v, 1, 100000, &o->partitions);
        else if (strcmp(a, "--seed") == 0)
            rc = bench_parse_i64(v, 0, INT64_MAX, &o->seed);
        else {
            fprintf(stderr, "copy_baseline: unknown argument \"%s\"\n", a);
            usage(stderr);
            return -1;
        }
        if (rc != 0) {
            fprintf(stderr, "copy_baseline: bad value \"%s\" for %s\n", v, a);
            return -1;
        }
    }
    if (!o->dsn || o->rows == 0) {
        fprintf(stderr, "copy_baseline: --dsn and --rows are required\n");
        return -1;
    }
    for (const char *p = o->schema; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            fprintf(stderr, "copy_baseline: --schema must be [a-z0-9_]+\n");
            return -1;
        }
    }
    return 0;
}

/* Runs one statement that must succeed with status want; prints the error otherwise. */
static int exec(PGconn *c, const char *sql, ExecStatusType want)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == want;
    if (!ok)
        fprintf(stderr, "copy_baseline: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static int put_u16(bench_buf_t *b, uint16_t v)
{
    v = htons(v);
    return bench_buf_put(b, &v, 2);
}

static int put_u32(bench_buf_t *b, uint32_t v)
{
    v = htonl(v);
    return bench_buf_put(b, &v, 4);
}

static int put_u64(bench_buf_t *b, uint64_t v)
{
    return put_u32(b, (uint32_t)(v >> 32)) || put_u32(b, (uint32_t)v);
}

/* Encodes the n rows starting at row number first as one binary COPY stream into b. */
static int encode_batch(const options_t *o, bench_rng_t *r, int64_t first, int64_t n,
                        bench_buf_t *b)
{
    static const char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
    b->len = 0;
    if (bench_buf_put(b, sig, sizeof(sig)) || put_u32(b, 0) || put_u32(b, 0))
        return -1;
    for (int64_t i = 0; i < n; i++) {
        /* Contiguous runs per partition, as meterd's per-partition batches are. */
        uint32_t checkpoint_id = 1 + (uint32_t)(i * o->partitions / n);
        uint64_t h1 = bench_rng_next(r), h2 = bench_rng_next(r);
        if (put_u16(b, 3) || put_u32(b, 4) || put_u32(b, checkpoint_id) || put_u32(b, 16) ||
            put_u64(b, h1) || put_u64(b, h2) || put_u32(b, 8) ||
            put_u64(b, (uint64_t)(BASE_TS + first + i)))
            return -1;
    }
    return put_u16(b, 0xffff);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double seconds, tx_p50_ms, tx_max_ms;
} result_t;

static int run_variant(PGconn *c, const options_t *o, const char *variant, result_t *res)
{
    char sql[1024];
    char cons[256];
    if (strcmp(variant, "full") == 0)
        snprintf(cons, sizeof(cons),
                 ", PRIMARY KEY (checkpoint_id, id_hash),"
                 " FOREIGN KEY (checkpoint_id) REFERENCES %s.checkpoints (id)",
                 o->schema);
    else if (strcmp(variant, "pk") == 0)
        snprintf(cons, sizeof(cons), ", PRIMARY KEY (checkpoint_id, id_hash)");
    else if (strcmp(variant, "heap") == 0)
        cons[0] = '\0';
    else {
        fprintf(stderr, "copy_baseline: unknown variant \"%s\" (full, pk or heap)\n", variant);
        return -1;
    }
    snprintf(sql, sizeof(sql),
             "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s;"
             " CREATE TABLE %s.checkpoints (id serial PRIMARY KEY, partition int4 NOT NULL,"
             " next_offset int8, epoch int8 NOT NULL DEFAULT 1, updated_at timestamptz);"
             " INSERT INTO %s.checkpoints (partition) SELECT generate_series(0, %d);"
             " CREATE TABLE %s.applied_events (checkpoint_id int4 NOT NULL, id_hash uuid NOT NULL,"
             " event_ts int8 NOT NULL%s)",
             o->schema, o->schema, o->schema, o->schema, (int)o->partitions - 1, o->schema, cons);
    /* A checkpoint first, so every variant starts with the same full-page-write debt. */
    if (exec(c, sql, PGRES_COMMAND_OK) < 0 || exec(c, "CHECKPOINT", PGRES_COMMAND_OK) < 0)
        return -1;
    char update[256], copy[256];
    snprintf(update, sizeof(update),
             "UPDATE %s.checkpoints SET next_offset = coalesce(next_offset, 0) + $1::int8,"
             " updated_at = now()",
             o->schema);
    snprintf(copy, sizeof(copy),
             "COPY %s.applied_events (checkpoint_id, id_hash, event_ts) FROM STDIN"
             " (FORMAT binary)",
             o->schema);

    int64_t nbatches = (o->rows + o->batch - 1) / o->batch;
    double *tx = calloc((size_t)nbatches, sizeof(double));
    bench_buf_t buf = {0};
    bench_rng_t rng;
    bench_rng_init(&rng, (uint64_t)o->seed);
    int status = tx ? 0 : -1;
    double total = 0;
    for (int64_t k = 0; k < nbatches && status == 0; k++) {
        int64_t first = k * o->batch;
        int64_t n = o->rows - first < o->batch ? o->rows - first : o->batch;
        if (encode_batch(o, &rng, first, n, &buf) < 0) {
            fprintf(stderr, "copy_baseline: out of memory\n");
            status = -1;
            break;
        }
        char per[32];
        snprintf(per, sizeof(per), "%" PRId64, n / o->partitions);
        const char *params[1] = {per};
        double t0 = bench_now();
        if (exec(c, "BEGIN", PGRES_COMMAND_OK) < 0) {
            status = -1;
            break;
        }
        PGresult *r = PQexecParams(c, update, 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "copy_baseline: update: %s", PQresultErrorMessage(r));
            status = -1;
        }
        PQclear(r);
        if (status == 0 && exec(c, copy, PGRES_COPY_IN) < 0)
            status = -1;
        for (size_t off = 0; status == 0 && off < buf.len; off += CHUNK) {
            size_t len = buf.len - off < CHUNK ? buf.len - off : CHUNK;
            if (PQputCopyData(c, (const char *)buf.data + off, (int)len) != 1) {
                fprintf(stderr, "copy_baseline: copy data: %s", PQerrorMessage(c));
                status = -1;
            }
        }
        if (status == 0) {
            if (PQputCopyEnd(c, NULL) != 1) {
                fprintf(stderr, "copy_baseline: copy end: %s", PQerrorMessage(c));
                status = -1;
            }
            while ((r = PQgetResult(c)) != NULL) {
                if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                    fprintf(stderr, "copy_baseline: copy: %s", PQresultErrorMessage(r));
                    status = -1;
                }
                PQclear(r);
            }
        }
        if (status == 0 && exec(c, "COMMIT", PGRES_COMMAND_OK) < 0)
            status = -1;
        tx[k] = bench_now() - t0;
        total += tx[k];
    }
    if (status == 0) {
        qsort(tx, (size_t)nbatches, sizeof(double), cmp_double);
        res->seconds = total;
        res->tx_p50_ms = tx[nbatches / 2] * 1000;
        res->tx_max_ms = tx[nbatches - 1] * 1000;
        /* Check that every row landed. */
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.applied_events", o->schema);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK ||
            strtoll(PQgetvalue(r, 0, 0), NULL, 10) != o->rows) {
            fprintf(stderr, "copy_baseline: row count check failed\n");
            status = -1;
        }
        PQclear(r);
    }
    bench_buf_free(&buf);
    free(tx);
    return status;
}

int main(int argc, char **argv)
{
    options_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;
    PGconn *c = PQconnectdb(o.dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "copy_baseline: connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    if (exec(c, "SET client_min_messages = warning", PGRES_COMMAND_OK) < 0) {
        PQfinish(c);
        return 1;
    }
    PGresult *r =
        PQexec(c, "SELECT current_setting('fsync'), current_setting('synchronous_commit')");
    char fsync[16] = "?", sync[16] = "?";
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        snprintf(fsync, sizeof(fsync), "%s", PQgetvalue(r, 0, 0));
        snprintf(sync, sizeof(sync), "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);

    printf("{\"rows\":%" PRId64 ",\"batch\":%" PRId64 ",\"partitions\":%" PRId64
           ",\"fsync\":\"%s\",\"synchronous_commit\":\"%s\",\"variants\":[",
           o.rows, o.batch, o.partitions, fsync, sync);
    int status = 0;
    char list[256];
    snprintf(list, sizeof(list), "%s", o.variants);
    bool firstv = true;
    for (char *s = list; s && *s && status == 0;) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = '\0';
        result_t res;
        if (run_variant(c, &o, s, &res) < 0) {
            status = 1;
            break;
        }
        printf("%s{\"name\":\"%s\",\"rows\":%" PRId64 ",\"seconds\":%.6f,\"rate\":%.1f,"
               "\"tx_p50_ms\":%.3f,\"tx_max_ms\":%.3f}",
               firstv ? "" : ",", s, o.rows, res.seconds, (double)o.rows / res.seconds,
               res.tx_p50_ms, res.tx_max_ms);
        fflush(stdout);
        firstv = false;
        s = comma ? comma + 1 : NULL;
    }
    printf("]}\n");
    if (status == 0) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", o.schema);
        if (exec(c, sql, PGRES_COMMAND_OK) < 0)
            status = 1;
    }
    PQfinish(c);
    return status;
}
