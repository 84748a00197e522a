/*
 * part — per-partition state and the application of one event. See part.h.
 *
 * DESIGN: applying an event appends its 16-byte identity to the pending identities and adds its
 * cost to an aggregate; both are encoded once at seal time — the identities as one
 * applied_event_ids row, the aggregates as one cost row each — so a flush does no per-event
 * work, in meterd or in PostgreSQL. Every applied event goes through the ledger (admission);
 * llm.call also through pricing and the cost aggregates. The ledger is asked first, so that an
 * event it refuses (a tier the table lacks) changes nothing, not even the identity set.
 */
#include "part.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "costagg.h"

#define HOUR_MS 3600000LL

struct part {
    int32_t partition;
    int32_t checkpoint_id;
    int64_t epoch;
    int64_t next_offset;      /* -1: nothing consumed yet, resume at the beginning */
    int64_t committed_offset; /* -1: no checkpoint */
    int64_t sealed_offset;    /* next_offset at the last seal; -1 none */
    int64_t uncommitted;      /* messages since the committed checkpoint */
    idset_t *ids;
    ledger_t *ledger;
    batch_t *pending; /* NULL until the first message after a seal */
    costagg_t *agg;
    pgcopy_t new_ids; /* identities applied since the last seal, 16 bytes each */
    int64_t min_ts, max_ts;
};

part_t *part_new(int32_t partition, int32_t checkpoint_id, int64_t next_offset, int64_t epoch)
{
    part_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->partition = partition;
    p->checkpoint_id = checkpoint_id;
    p->epoch = epoch;
    p->next_offset = next_offset;
    p->committed_offset = next_offset;
    p->sealed_offset = next_offset;
    p->ids = idset_new(1024);
    p->agg = costagg_new();
    p->ledger = ledger_new();
    pgcopy_init(&p->new_ids);
    if (!p->ids || !p->agg || !p->ledger) {
        part_free(p);
        return NULL;
    }
    return p;
}

void part_batch_free(batch_t *b)
{
    if (!b)
        return;
    for (int t = 0; t < BATCH_NTABLES; t++)
        pgcopy_close(&b->rows[t]);
    free(b);
}

void part_free(part_t *p)
{
    if (!p)
        return;
    idset_free(p->ids);
    costagg_free(p->agg);
    ledger_free(p->ledger);
    part_batch_free(p->pending);
    pgcopy_close(&p->new_ids);
    free(p);
}

int part_load_ids(part_t *p, const uint8_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (idset_add(p->ids, idhash_from_bytes(ids + 16 * i)) < 0)
            return -1;
    return 0;
}

void part_set_epoch(part_t *p, int64_t epoch)
{
    p->epoch = epoch;
}

void part_reset_ledger(part_t *p)
{
    ledger_t *fresh = ledger_new();
    if (!fresh)
        abort(); /* out of memory: the restart replays */
    ledger_free(p->ledger);
    p->ledger = fresh;
}

int part_load_state(part_t *p, const uint8_t *blob, size_t len)
{
    return ledger_restore(p->ledger, blob, len);
}

const ledger_t *part_ledger(const part_t *p)
{
    return p->ledger;
}

int32_t part_partition(const part_t *p)
{
    return p->partition;
}

int32_t part_checkpoint_id(const part_t *p)
{
    return p->checkpoint_id;
}

int64_t part_epoch(const part_t *p)
{
    return p->epoch;
}

int64_t part_next_offset(const part_t *p)
{
    return p->next_offset;
}

int64_t part_committed_offset(const part_t *p)
{
    return p->committed_offset;
}

int64_t part_uncommitted(const part_t *p)
{
    return p->uncommitted;
}

int64_t part_unsealed(const part_t *p)
{
    return p->pending ? p->pending->messages : 0;
}

size_t part_known_ids(const part_t *p)
{
    return idset_size(p->ids);
}

bool part_is_stale(const part_t *p, int64_t offset)
{
    return p->next_offset >= 0 && offset < p->next_offset;
}

static batch_t *pending(part_t *p)
{
    if (!p->pending) {
        p->pending = calloc(1, sizeof(batch_t));
        if (!p->pending)
            return NULL;
        for (int t = 0; t < BATCH_NTABLES; t++)
            pgcopy_init(&p->pending->rows[t]);
    }
    return p->pending;
}

/* Every consumed message, applied or not, moves the offset and counts toward the batch. */
static int consume(part_t *p, int64_t offset)
{
    batch_t *b = pending(p);
    if (!b)
        return -1;
    assert(!part_is_stale(p, offset));
    p->next_offset = offset + 1;
    p->uncommitted++;
    b->messages++;
    return 0;
}

int part_skip(part_t *p, int64_t offset)
{
    return consume(p, offset);
}

static int apply_llm(part_t *p, const wire_event_t *ev, const pricing_rate_t *rate,
                     int64_t cost_nanos, part_effects_t *eff)
{
    costagg_key_t k = {
        .org = ev->org.ptr,
        .org_len = ev->org.len,
        .project = ev->project.ptr ? ev->project.ptr : "",
        .project_len = ev->project.len,
        .provider = ev->provider.ptr,
        .provider_len = ev->provider.len,
        .model = ev->model.ptr,
        .model_len = ev->model.len,
        .hour_ms = ev->ts - ev->ts % HOUR_MS,
        .billable = !ev->byo,
    };
    costagg_vals_t v = {
        .calls = 1,
        .input_tokens = ev->input_tokens,
        .output_tokens = ev->output_tokens,
        .cache_read_tokens = ev->cache_read_tokens,
        .cache_write_tokens = ev->cache_write_tokens,
        .cost_nanos = cost_nanos,
        .unpriced_calls = rate ? 0 : 1,
    };
    eff->unpriced = rate == NULL;
    return costagg_add(p->agg, &k, &v);
}

int part_apply(part_t *p, int64_t offset, const wire_event_t *ev, const pricing_t *prices,
               const tiers_t *tiers, part_status_t *status, part_effects_t *eff)
{
    memset(eff, 0, sizeof(*eff));
    if (part_is_stale(p, offset)) {
        *status = PART_STALE;
        return 0;
    }
    idhash_t h = idset_hash(ev->org.ptr, ev->org.len, ev->id.ptr, ev->id.len);
    if (idset_contains(p->ids, h)) {
        *status = PART_DUPLICATE;
        return consume(p, offset);
    }
    /* priced first: billing (in the ledger) needs the cost */
    const pricing_rate_t *rate = NULL;
    int64_t cost_nanos = 0;
    if (ev->type == WIRE_T_LLM_CALL) {
        rate = pricing_lookup(prices, ev->provider.ptr, ev->provider.len, ev->model.ptr,
                              ev->model.len);
        if (rate)
            cost_nanos = pricing_cost_nanos(rate, ev->input_tokens, ev->output_tokens,
                                            ev->cache_read_tokens, ev->cache_write_tokens);
    }
    int rc = ledger_apply(p->ledger, tiers, ev, cost_nanos, &eff->ledger);
    if (rc < 0) {
        *status = PART_REFUSED;
        eff->refusal = rc;
        return 0;
    }
    if (consume(p, offset) < 0 || idset_add(p->ids, h) < 0)
        return -1;
    *status = PART_APPLIED;
    if (ev->type == WIRE_T_LLM_CALL && apply_llm(p, ev, rate, cost_nanos, eff) < 0)
        return -1;
    uint8_t bytes[16];
    idhash_to_bytes(h, bytes);
    pgcopy_append(&p->new_ids, bytes, sizeof(bytes));
    if (p->pending->applied++ == 0 || ev->ts < p->min_ts)
        p->min_ts = ev->ts;
    if (p->pending->applied == 1 || ev->ts > p->max_ts)
        p->max_ts = ev->ts;
    return p->new_ids.oom ? -1 : 0;
}

/* Encodes the cost aggregates as rows of the cost staging table (see store.c). */
static void encode_costs(const costagg_t *agg, batch_t *b)
{
    pgcopy_t *r = &b->rows[BATCH_COST];
    for (size_t i = 0; i < costagg_count(agg); i++) {
        const costagg_entry_t *e = costagg_at(agg, i);
        pgcopy_row(r, 13);
        pgcopy_text(r, e->org, e->org_len);
        pgcopy_text(r, e->project, e->project_len);
        pgcopy_text(r, e->provider, e->provider_len);
        pgcopy_text(r, e->model, e->model_len);
        pgcopy_timestamptz_ms(r, e->hour_ms);
        pgcopy_bool(r, e->billable);
        pgcopy_int8(r, e->v.calls);
        pgcopy_int8(r, e->v.input_tokens);
        pgcopy_int8(r, e->v.output_tokens);
        pgcopy_int8(r, e->v.cache_read_tokens);
        pgcopy_int8(r, e->v.cache_write_tokens);
        pgcopy_int8(r, e->v.cost_nanos);
        pgcopy_int8(r, e->v.unpriced_calls);
    }
    b->nrows[BATCH_COST] = (int64_t)costagg_count(agg);
}

/* Encodes the identities applied since the last seal as one applied_event_ids row. */
static void encode_ids(part_t *p, batch_t *b)
{
    if (!b->applied)
        return;
    pgcopy_t *r = &b->rows[BATCH_APPLIED];
    pgcopy_row(r, 6);
    pgcopy_int4(r, p->checkpoint_id);
    pgcopy_int8(r, p->next_offset);
    pgcopy_int4(r, (int32_t)b->applied);
    pgcopy_int8(r, p->min_ts);
    pgcopy_int8(r, p->max_ts);
    pgcopy_bytea(r, p->new_ids.p, p->new_ids.len);
    b->nrows[BATCH_APPLIED] = 1;
    pgcopy_reset(&p->new_ids);
}

batch_t *part_seal(part_t *p, bool *oom)
{
    *oom = false;
    batch_t *b = p->pending;
    if (!b)
        return NULL;
    encode_ids(p, b);
    encode_costs(p->agg, b);
    costagg_clear(p->agg);
    ledger_seal(p->ledger, p->checkpoint_id, b->rows, b->nrows);
    for (int t = 0; t < BATCH_NTABLES; t++)
        *oom = *oom || b->rows[t].oom;
    b->partition = p->partition;
    b->checkpoint_id = p->checkpoint_id;
    b->epoch = p->epoch;
    b->expected_offset = p->sealed_offset;
    b->new_offset = p->next_offset;
    p->sealed_offset = p->next_offset;
    p->pending = NULL;
    return b;
}

void part_commit(part_t *p, const batch_t *b)
{
    assert(b->partition == p->partition);
    p->committed_offset = b->new_offset;
    p->uncommitted -= b->messages;
    assert(p->uncommitted >= 0);
}
