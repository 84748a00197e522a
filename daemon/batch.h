/*
 * batch — what one flush writes for one partition: encoded rows per target table, the offsets
 * the checkpoint moves between, and the claim (checkpoint row and epoch) it is fenced by.
 *
 * Plain data shared by part (which fills it, pure) and store (which writes it). Rows are
 * binary-COPY encoded (pgcopy) without header or trailer, so that the store can concatenate
 * the rows of many partitions into one COPY.
 */
#ifndef METERD_BATCH_H
#define METERD_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "pgcopy.h"

/* Target tables, in the order a flush writes them (see store.c for each table's COPY). */
typedef enum {
    BATCH_APPLIED = 0, /* applied_event_ids: one row, the identities of the batch's events */
    BATCH_COST,        /* cost_records deltas, merged by key */
    BATCH_STATE,       /* ledger_state: one snapshot per changed organization */
    BATCH_USAGE,       /* usage_records: one row per changed workflow */
    BATCH_RUNS,        /* agent_runs: one row per changed run */
    BATCH_ACCOUNTS,    /* billing_accounts: one row per changed organization */
    BATCH_INVOICES,    /* invoices: drafts of changed organizations, finals of closed periods */
    BATCH_LINES,       /* invoice_line_items of those invoices (replacing theirs) */
    BATCH_ROLLUPS,     /* usage_rollups of those invoices' periods */
    BATCH_SUBS,        /* subscriptions: the tier stretches of those periods (replacing) */
    BATCH_NTABLES
} batch_table_t;

typedef struct batch {
    int32_t partition;
    int32_t checkpoint_id;   /* consumer_checkpoints.id */
    int64_t epoch;           /* the claim this batch was applied under */
    int64_t expected_offset; /* checkpoint before the batch; -1 = NULL (nothing applied yet) */
    int64_t new_offset;      /* checkpoint after the batch */
    int64_t messages;        /* input messages covered: applied, duplicate and dead-lettered */
    int64_t applied;         /* of which applied */
    pgcopy_t rows[BATCH_NTABLES];
    int64_t nrows[BATCH_NTABLES];
    bool fenced; /* set by the store when the claim was lost: the batch was not written */
} batch_t;

#endif
