/*
 * part — the in-memory state of one input partition owned by this instance.
 *
 * Pure core: no I/O. Driven by the consumer's messages (offset + decoded event) and by the
 * flush cycle (seal → written by the store → committed). It owns:
 *   - the offsets: next to consume, and the checkpoint durable in PostgreSQL;
 *   - the claim: the checkpoint row id and the epoch this instance claimed it under;
 *   - the identities of every applied event (idset), loaded at claim and grown by apply;
 *   - the ledger of its organizations (admission state), restored at claim;
 *   - the pending batch: applied identities, cost aggregates and ledger changes not yet sealed.
 *
 * Exactly-once rests on three rules kept here: a message below the next offset is stale and
 * ignored (librdkafka may deliver a message twice, FACTS.md); an event whose identity is known is
 * a duplicate and changes nothing; and every applied event's identity row travels in the same
 * batch, hence the same transaction, as its effects and the checkpoint that covers it.
 */
#ifndef METERD_PART_H
#define METERD_PART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "idset.h"
#include "ledger.h"
#include "pricing.h"
#include "tiers.h"
#include "wire.h"

typedef struct part part_t;

typedef enum {
    PART_APPLIED = 0, /* applied: effects recorded */
    PART_DUPLICATE,   /* the organization already had this id: nothing changed */
    PART_STALE,       /* offset below the next offset: a re-delivery, ignored */
    PART_REFUSED,     /* invalid against the tier table: nothing changed, dead-letter it and
                         call part_skip */
} part_status_t;

/* What applying one event did, for the shell: metrics and the decisions to publish. */
typedef struct {
    bool unpriced;          /* an llm.call whose model is not in the price table */
    ledger_result_t ledger; /* decisions (views valid until the next apply on this part) */
    int refusal;            /* PART_REFUSED: LEDGER_E_UNKNOWN_TIER or LEDGER_E_UNKNOWN_PROMO */
} part_effects_t;

/* New state for `partition` claimed under (checkpoint_id, epoch) with the stored checkpoint
 * next_offset (-1: none, start from the beginning). NULL when out of memory. */
part_t *part_new(int32_t partition, int32_t checkpoint_id, int64_t next_offset, int64_t epoch);
/* Frees the state and any pending batch. */
void part_free(part_t *p);

/* Re-claimed without a gap: the state is reused under the new epoch. */
void part_set_epoch(part_t *p, int64_t epoch);

/* Forgets every restored organization (a snapshot load starts over). */
void part_reset_ledger(part_t *p);

/* Restores one organization's ledger snapshot (a ledger_state row). Returns 0, or -1 when it is
 * malformed. */
__attribute__((warn_unused_result)) int part_load_state(part_t *p, const uint8_t *blob, size_t len);

/* Adds identities loaded from applied_event_ids (n × 16 bytes). Returns 0, -1 when out of memory.
 */
__attribute__((warn_unused_result)) int part_load_ids(part_t *p, const uint8_t *ids, size_t n);

int32_t part_partition(const part_t *p);
int32_t part_checkpoint_id(const part_t *p);
int64_t part_epoch(const part_t *p);
/* The offset to resume consuming from: -1 means the beginning of the partition. */
int64_t part_next_offset(const part_t *p);
/* The durable checkpoint (-1: none). */
int64_t part_committed_offset(const part_t *p);
/* Messages consumed since the durable checkpoint (sealed or not). */
int64_t part_uncommitted(const part_t *p);
/* Messages consumed since the last seal. */
int64_t part_unsealed(const part_t *p);
size_t part_known_ids(const part_t *p);
const ledger_t *part_ledger(const part_t *p);

/* True when the message at `offset` was already consumed (re-delivery). */
bool part_is_stale(const part_t *p, int64_t offset);

/* Applies a validated event found at `offset`. Sets *status and *eff. Returns 0, or -1 when out
 * of memory — the state is then inconsistent and the caller must drop it (the events are
 * replayed from the checkpoint). */
__attribute__((warn_unused_result)) int part_apply(part_t *p, int64_t offset,
                                                   const wire_event_t *ev, const pricing_t *prices,
                                                   const tiers_t *tiers, part_status_t *status,
                                                   part_effects_t *eff);

/* Records that the message at `offset` was consumed without effect (dead-lettered). Returns
 * 0, -1 when out of memory. */
__attribute__((warn_unused_result)) int part_skip(part_t *p, int64_t offset);

/* Seals what was consumed since the last seal into a batch (ownership passes to the caller,
 * who passes it back to part_commit or part_batch_free). Returns NULL when nothing was consumed,
 * and sets *oom when out of memory. */
batch_t *part_seal(part_t *p, bool *oom);

/* The batch is durable: the checkpoint moves to its new_offset. Does not free the batch. */
void part_commit(part_t *p, const batch_t *b);

void part_batch_free(batch_t *b);

#endif
