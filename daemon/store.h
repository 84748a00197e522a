/*
 * store — PostgreSQL: connection, migrations, partition claims, id loading and flushes.
 *
 * Loop thread only. One libpq connection used only through the asynchronous API with a
 * uv_poll_t on its socket; never a blocking call. Work is a FIFO of jobs run one at a time on
 * that connection; a job survives a lost connection and is retried after reconnecting (with
 * exponential back-off), so the caller sees each job complete exactly once.
 *
 * A flush is one transaction: it moves each partition's checkpoint from the offset the batch
 * expects to its new offset, conditional on the claim epoch, then writes the batch rows of the
 * partitions whose checkpoint moved (COPY binary into the tables or into staging tables that
 * are merged), then commits. A partition whose checkpoint did not match was claimed by another
 * instance: its batch is marked fenced and not written. When the connection drops after COMMIT
 * was sent, the outcome is read back from the checkpoints before the job is retried.
 */
#ifndef METERD_STORE_H
#define METERD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "batch.h"
#include "config.h"
#include "log.h"
#include "metrics.h"

typedef struct store store_t;

typedef struct {
    int32_t partition;
    int32_t checkpoint_id;
    int64_t next_offset; /* -1: none */
    int64_t epoch;       /* the epoch this claim created */
} store_claim_t;

/* Called once when a claim job completes: claims[0..n) for the partitions asked. */
typedef void (*store_claim_cb)(void *arg, const store_claim_t *claims, size_t n);
/* Called with each row of a load. When a load is retried after a lost connection, rows are
 * delivered again from the first, preceded by one call with data NULL ("start over"). */
typedef void (*store_row_cb)(void *arg, const uint8_t *data, size_t len);
typedef void (*store_done_cb)(void *arg);
/* Called once when a flush job committed (or found every batch fenced); each batch's fenced
 * flag tells whether it was written. */
typedef void (*store_flush_cb)(void *arg, batch_t **batches, size_t n);
/* Readiness changes: up = connected with the schema in place. */
typedef void (*store_state_cb)(void *arg, bool up);

/* Creates the store and starts connecting. Neither cfg, log nor metrics is owned; they must
 * outlive the store. Returns NULL when out of memory. If migrate_only, the store applies the
 * migrations then reports up and runs no jobs. */
store_t *store_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                   bool migrate_only, store_state_cb state_cb, void *arg);

/* Closes the connection and the poll/timer handles; frees the store from their close callbacks
 * (pending jobs are dropped without callbacks). */
void store_close(store_t *s);

bool store_is_up(const store_t *s);
/* A fatal condition (schema too old with auto_migrate off): the daemon must stop. */
bool store_failed(const store_t *s);
/* Jobs queued or running. */
size_t store_jobs(const store_t *s);

/* Claims `partitions` of the input topic for this instance: creates missing checkpoint rows
 * and increments the epoch of each. The array is copied. Returns 0, or -1 when out of memory. */
__attribute__((warn_unused_result)) int store_claim(store_t *s, const int32_t *partitions, size_t n,
                                                    store_claim_cb cb, void *arg);

/* Streams the applied-event identities of a partition (one row per flush: n × 16 bytes) to
 * row_cb, then calls done_cb. Loading the same identities twice is harmless. */
__attribute__((warn_unused_result)) int store_load_ids(store_t *s, int32_t checkpoint_id,
                                                       store_row_cb row_cb, store_done_cb done_cb,
                                                       void *arg);

/* Streams the ledger snapshots of a partition (one row per organization) to row_cb, then calls
 * done_cb. */
__attribute__((warn_unused_result)) int store_load_state(store_t *s, int32_t checkpoint_id,
                                                         store_row_cb row_cb, store_done_cb done_cb,
                                                         void *arg);

/* Writes batches[0..n) in one transaction. The array and the batches stay owned by the
 * caller and must not change until cb runs. */
__attribute__((warn_unused_result)) int store_flush(store_t *s, batch_t **batches, size_t n,
                                                    store_flush_cb cb, void *arg);

#endif
