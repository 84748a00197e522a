/*
 * meter — the coordinator. See meter.h.
 *
 * DESIGN. Partition slots are indexed by partition number. A slot moves through
 *
 *   NONE → CLAIMING → LOADING → ACTIVE → REVOKING → RETAINED | NONE
 *                                  └──→ FENCED (another instance claimed it) → NONE
 *                                  └──→ STUCK (checkpoint out of the topic's range) → NONE
 *
 * An assignment claims its partitions in PostgreSQL (bumping their epochs), loads the applied
 * identities of those it does not hold, and only then tells librdkafka where to start. A
 * revocation flushes what its partitions applied (bounded by meter.revoke_timeout_ms) and keeps
 * the state of a cleanly flushed partition as RETAINED: if the next claim finds the checkpoint
 * exactly where this instance left it, the state is reused without reloading.
 *
 * Each assignment (and each re-claim) gets a new generation, stamped on its slots; a
 * revocation clears the stamp of the slots it revokes. The claim and load callbacks act only on
 * slots that still carry their assignment's stamp, so a revocation abandons exactly the
 * partitions it revokes (under the cooperative protocol others may still be loading).
 *
 * `uncommitted` counts messages consumed but not yet durable over all partitions; it drives
 * backpressure (pause every owned partition at meter.max_pending_events, resume at half).
 */
#include "meter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "part.h"
#include "producer.h"
#include "store.h"
#include "wire.h"

#define MAX_PARTITIONS 100000

/* Dead-letter reasons beyond the wire's own. */
#define DEAD_KEY_MISMATCH  WIRE_E_COUNT
#define DEAD_UNKNOWN_TIER  (WIRE_E_COUNT + 1)
#define DEAD_UNKNOWN_PROMO (WIRE_E_COUNT + 2)
#define DEAD_COUNT         (WIRE_E_COUNT + 3)

typedef enum {
    S_NONE = 0,
    S_CLAIMING,
    S_LOADING,
    S_ACTIVE,
    S_REVOKING,
    S_RETAINED,
    S_FENCED,
    S_STUCK
} slot_state_t;

typedef struct {
    slot_state_t state;
    part_t *part;
    uint64_t gen; /* the assignment that owns the slot; 0: none */
} slot_t;

/* One assignment in progress. */
typedef struct {
    struct meter *m;
    uint64_t gen;
    int32_t *partitions;
    size_t n;
    size_t loads_left;
    bool claimed;
    bool reclaim; /* re-claiming fenced partitions we still own in Kafka: seek, not assign */
} assign_t;

typedef struct {
    assign_t *a;
    int32_t partition;
    int32_t checkpoint_id;
    bool state_bad; /* a snapshot did not restore */
} load_t;

struct meter {
    uv_loop_t *loop;
    const config_t *cfg;
    log_t *log;
    metrics_t *metrics;
    pricing_t *prices;
    tiers_t *tiers;
    wire_decoder_t *decoder;
    consumer_t *consumer;
    producer_t *producer;
    store_t *store;
    meter_done_cb done;
    void *done_arg;

    slot_t *slots;
    size_t nslots;
    uint64_t assign_gen;

    /* flush */
    uv_timer_t flush_timer;
    batch_t **batches;
    size_t nbatches;
    bool flushing;
    bool awaiting_barrier;
    uint64_t flush_started_ns;
    int64_t uncommitted;
    bool paused;

    /* revoke */
    bool revoking;
    bool revoke_lost;
    uv_timer_t revoke_timer;

    /* stop */
    bool stopping;
    bool no_more_flushes; /* fatal: the state may be inconsistent, replay instead */
    bool consumer_closing;
    bool finished;
    int exit_code;
    uv_timer_t stop_timer;
    uv_timer_t stats_timer;
    uv_timer_t reclaim_timer;
    int handles_open;

    metric_t *m_events[WIRE_T_COUNT];
    metric_t *m_dead[DEAD_COUNT];
    metric_t *m_decisions[WIRE_D_COUNT];
    metric_t *m_decision_latency;
    metric_t *m_budget[4]; /* warnings, then exceeded by bill_reason_t */
    metric_t *m_invoices_final;
    metric_t *m_lag;
    metric_t *m_noops[5]; /* by ledger_note_t */
    metric_t *m_running, *m_queued, *m_held, *m_orgs;
    metric_t *m_duplicates, *m_redelivered, *m_gaps, *m_unpriced, *m_ignored;
    metric_t *m_flushes, *m_flush_seconds, *m_flush_messages, *m_fenced, *m_pending, *m_paused,
        *m_owned, *m_stuck;
};

static void flush_start(meter_t *m);
static void on_reclaim_timer(uv_timer_t *t);
static void maybe_finish_revoke(meter_t *m);
static void stop_progress(meter_t *m);

/* ---------- slots ---------- */

static slot_t *slot_get(meter_t *m, int32_t partition, bool create)
{
    if (partition < 0 || partition >= MAX_PARTITIONS)
        return NULL;
    if ((size_t)partition >= m->nslots) {
        if (!create)
            return NULL;
        size_t n = (size_t)partition + 1;
        if (n < m->nslots * 2)
            n = m->nslots * 2;
        slot_t *s = realloc(m->slots, n * sizeof(slot_t));
        if (!s)
            return NULL;
        memset(s + m->nslots, 0, (n - m->nslots) * sizeof(slot_t));
        m->slots = s;
        m->nslots = n;
    }
    return &m->slots[partition];
}

/* Drops a slot's state; its unflushed messages leave the backpressure count. */
static void slot_release(meter_t *m, slot_t *s, slot_state_t next)
{
    if (s->part) {
        m->uncommitted -= part_uncommitted(s->part);
        part_free(s->part);
        s->part = NULL;
    }
    s->state = next;
}

static size_t owned_count(const meter_t *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nslots; i++)
        n += m->slots[i].state == S_ACTIVE;
    return n;
}

static bool flushable(slot_state_t st)
{
    return st == S_ACTIVE || st == S_REVOKING || st == S_STUCK;
}

/* ---------- backpressure ---------- */

static void set_paused(meter_t *m, bool pause)
{
    int32_t *ps = malloc((m->nslots ? m->nslots : 1) * sizeof(int32_t));
    size_t n = 0;
    if (!ps)
        return; /* try again on the next message or flush */
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].state == S_ACTIVE)
            ps[n++] = (int32_t)i;
    consumer_pause(m->consumer, ps, n, pause);
    free(ps);
    m->paused = pause;
    metric_set(m->m_paused, pause);
    LOG_INFO(m->log, pause ? "backpressure: consumption paused" : "backpressure: resumed",
             LI("uncommitted", m->uncommitted), LI("partitions", n));
}

static void check_backpressure(meter_t *m)
{
    metric_set(m->m_pending, m->uncommitted);
    if (!m->paused && m->uncommitted >= m->cfg->max_pending_events)
        set_paused(m, true);
    else if (m->paused && m->uncommitted <= m->cfg->max_pending_events / 2)
        set_paused(m, false);
}

/* ---------- messages ---------- */

static void fatal(meter_t *m, const char *what, const char *where);

/* Produces msg unchanged to the dead-letter topic. Returns 0, or -1 when librdkafka refused it
 * at once: the offset must then not count as consumed. */
static int dead_letter(meter_t *m, const rd_kafka_message_t *msg, int reason, const char *name,
                       const char *field, const char *detail)
{
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    producer_header_t h[6] = {{"error", name},
                              {"error_field", field ? field : ""},
                              {"error_detail", detail},
                              {"source_topic", m->cfg->kafka_input_topic},
                              {"source_partition", part},
                              {"source_offset", off}};
    if (producer_send(m->producer, m->cfg->kafka_dlq_topic, msg->key, msg->key_len, msg->payload,
                      msg->len, h, 6, NULL, 0) < 0)
        return -1;
    metric_inc(m->m_dead[reason]);
    return 0;
}

/* Stops without flushing another batch: the in-memory state may be inconsistent (out of
 * memory in the middle of an event) or an event could not be handled. What was already
 * sealed is consistent and may still commit; everything else is replayed from the checkpoint
 * on restart. */
static void fatal(meter_t *m, const char *what, const char *where)
{
    LOG_ERROR(m->log, what, LS("where", where));
    m->exit_code = 1;
    m->no_more_flushes = true;
    meter_stop(m);
}

static void fatal_oom(meter_t *m, const char *where)
{
    fatal(m, "out of memory; stopping (unflushed events are replayed on restart)", where);
}

/* Publishes the decisions and budget events one event caused, keyed by the organization each
 * concerns; decisions are timed from the event's arrival. */
static int publish_decisions(meter_t *m, const wire_event_t *ev, const ledger_result_t *res,
                             uint64_t arrived)
{
    static const wire_decision_type_t types[LEDGER_DECISION_KINDS] = {
        [LEDGER_AGENT_ADMITTED] = WIRE_D_AGENT_ADMITTED,
        [LEDGER_AGENT_QUEUED] = WIRE_D_AGENT_QUEUED,
        [LEDGER_WORKFLOW_HELD] = WIRE_D_WORKFLOW_HELD,
        [LEDGER_WORKFLOW_RELEASED] = WIRE_D_WORKFLOW_RELEASED,
    };
    char buf[4096];
    for (size_t i = 0; i < res->n; i++) {
        const ledger_decision_t *ld = &res->decisions[i];
        wire_decision_t d = {
            .type = types[ld->kind],
            .org = ld->org,
            .ts = ev->ts,
            .cause = ev->id,
            .project = ld->project,
            .subject = ld->subject,
            .waited_ms = ld->waited_ms,
            .position = ld->position,
        };
        int n = wire_encode_decision(&d, buf, sizeof(buf));
        if (n < 0 ||
            producer_send(m->producer, m->cfg->kafka_decisions_topic, ld->org.ptr, ld->org.len, buf,
                          (size_t)n, NULL, 0, m->m_decision_latency, arrived) < 0)
            return -1;
        metric_inc(m->m_decisions[d.type]);
    }
    for (size_t i = 0; i < res->n_alerts; i++) {
        const ledger_alert_t *la = &res->alerts[i];
        wire_budget_event_t b = {
            .exceeded = la->alert.kind == BILL_EXCEEDED,
            .org = la->org,
            .ts = ev->ts,
            .cause = ev->id,
            .period_start = la->alert.period_start,
            .threshold = la->alert.threshold,
            .reason = bill_reason_name(la->alert.reason),
            .spend_micros = la->alert.spend_micros,
            .limit_micros = la->alert.limit_micros,
        };
        int n = wire_encode_budget_event(&b, buf, sizeof(buf));
        if (n < 0 || producer_send(m->producer, m->cfg->kafka_budget_topic, la->org.ptr,
                                   la->org.len, buf, (size_t)n, NULL, 0, NULL, 0) < 0)
            return -1;
        metric_inc(m->m_budget[b.exceeded ? la->alert.reason : 0]);
    }
    return 0;
}

static void on_message(void *arg, const rd_kafka_message_t *msg)
{
    meter_t *m = arg;
    uint64_t arrived = uv_hrtime();
    slot_t *s = slot_get(m, msg->partition, false);
    if (!s || s->state != S_ACTIVE || m->stopping) {
        metric_inc(m->m_ignored);
        return;
    }
    part_t *p = s->part;
    if (part_is_stale(p, msg->offset)) {
        metric_inc(m->m_redelivered);
        return;
    }
    int64_t next = part_next_offset(p);
    if (next >= 0 && msg->offset > next) {
        /* Normal after compaction or transaction markers; worth seeing otherwise. */
        metric_inc(m->m_gaps);
        LOG_DEBUG(m->log, "offset gap", LI("partition", msg->partition), LI("expected", next),
                  LI("got", msg->offset));
    }

    wire_event_t ev;
    wire_error_t werr;
    int rc;
    if (wire_decode(m->decoder, msg->payload, msg->len, &ev, &werr) < 0) {
        rc = dead_letter(m, msg, werr.code, wire_err_name(werr.code), werr.field, werr.detail);
        if (rc == 0)
            rc = part_skip(p, msg->offset);
    } else if (msg->key_len != ev.org.len || memcmp(msg->key, ev.org.ptr, ev.org.len) != 0) {
        /* All events of an organization must share one partition, or its ordering and its
         * ledger would split between instances. */
        rc = dead_letter(m, msg, DEAD_KEY_MISMATCH, "key_mismatch", "org",
                         msg->key_len ? "the message key differs from org"
                                      : "the message has no key");
        if (rc == 0)
            rc = part_skip(p, msg->offset);
    } else {
        part_status_t st;
        part_effects_t eff;
        rc = part_apply(p, msg->offset, &ev, m->prices, m->tiers, &st, &eff);
        if (rc == 0 && st == PART_APPLIED) {
            metric_inc(m->m_events[ev.type]);
            if (eff.unpriced)
                metric_inc(m->m_unpriced);
            if (eff.ledger.note != LEDGER_OK)
                metric_inc(m->m_noops[eff.ledger.note]);
            metric_add(m->m_invoices_final, eff.ledger.closed);
            rc = publish_decisions(m, &ev, &eff.ledger, arrived);
        } else if (rc == 0 && st == PART_DUPLICATE) {
            metric_inc(m->m_duplicates);
        } else if (rc == 0 && st == PART_REFUSED) {
            bool tier = eff.refusal == LEDGER_E_UNKNOWN_TIER;
            char detail[96];
            snprintf(detail, sizeof(detail), "%s \"%.*s\" is not in the tier table",
                     tier ? "tier" : "promo", (int)(tier ? ev.tier.len : ev.promo.len),
                     tier ? ev.tier.ptr : ev.promo.ptr);
            rc = dead_letter(m, msg, tier ? DEAD_UNKNOWN_TIER : DEAD_UNKNOWN_PROMO,
                             tier ? "unknown_tier" : "unknown_promo", tier ? "tier" : "promo",
                             detail);
            if (rc == 0)
                rc = part_skip(p, msg->offset);
        }
    }
    if (rc < 0) {
        /* Out of memory, or a dead letter librdkafka refused (its queue is sized above
         * meter.max_pending_events, so that means memory too): this message is not consumed. */
        fatal(m, "cannot apply or dead-letter a message; stopping so that it is replayed",
              "message");
        return;
    }
    m->uncommitted++;
    if (part_unsealed(p) >= m->cfg->flush_max_events && !m->flushing)
        flush_start(m);
    check_backpressure(m);
}

/* ---------- flush ---------- */

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void on_flushed(void *arg, batch_t **batches, size_t n)
{
    meter_t *m = arg;
    int32_t *cps = malloc((n ? n : 1) * sizeof(int32_t));
    int64_t *cos = malloc((n ? n : 1) * sizeof(int64_t));
    size_t nc = 0;
    int64_t messages = 0;
    for (size_t i = 0; i < n; i++) {
        batch_t *b = batches[i];
        slot_t *s = slot_get(m, b->partition, false);
        bool mine = s && s->part && part_epoch(s->part) == b->epoch;
        if (b->fenced) {
            metric_inc(m->m_fenced);
            if (mine) {
                LOG_WARN(m->log, "partition lost to another instance; dropping its state",
                         LI("partition", b->partition));
                slot_release(m, s, S_FENCED);
                consumer_pause(m->consumer, &b->partition, 1, true);
                /* If Kafka still assigns it to us, the other claim was a stale one (an
                 * abandoned assignment elsewhere): claim it back after a pause that lets a
                 * pending revocation arrive first. */
                if (!uv_is_active((uv_handle_t *)&m->reclaim_timer))
                    uv_timer_start(&m->reclaim_timer, on_reclaim_timer, 1000, 0);
            }
        } else if (mine) {
            part_commit(s->part, b);
            m->uncommitted -= b->messages;
            messages += b->messages;
            if (cps && cos) {
                cps[nc] = b->partition;
                cos[nc++] = b->new_offset;
            }
        }
        part_batch_free(b);
    }
    consumer_commit(m->consumer, cps, cos, nc);
    free(cps);
    free(cos);
    free(m->batches);
    m->batches = NULL;
    m->nbatches = 0;
    m->flushing = false;
    metric_inc(m->m_flushes);
    metric_observe(m->m_flush_seconds, (double)(now_ns() - m->flush_started_ns) / 1e9);
    metric_observe(m->m_flush_messages, (double)messages);
    metric_set(m->m_owned, (int64_t)owned_count(m));
    check_backpressure(m);
    maybe_finish_revoke(m);
    stop_progress(m);
    /* Catch up at once if the next batch is already full. */
    for (size_t i = 0; i < m->nslots && !m->flushing; i++)
        if (m->slots[i].part && flushable(m->slots[i].state) &&
            part_unsealed(m->slots[i].part) >= m->cfg->flush_max_events)
            flush_start(m);
}

static void write_batches(meter_t *m)
{
    m->awaiting_barrier = false;
    if (store_flush(m->store, m->batches, m->nbatches, on_flushed, m) < 0)
        fatal_oom(m, "flush");
}

static void on_producer_drained(void *arg)
{
    meter_t *m = arg;
    if (m->awaiting_barrier)
        write_batches(m);
}

static void flush_start(meter_t *m)
{
    if (m->flushing || m->no_more_flushes)
        return;
    size_t n = 0;
    for (size_t i = 0; i < m->nslots; i++)
        n += m->slots[i].part && flushable(m->slots[i].state) && part_unsealed(m->slots[i].part);
    if (!n)
        return;
    m->batches = calloc(n, sizeof(batch_t *));
    if (!m->batches) {
        fatal_oom(m, "seal");
        return;
    }
    for (size_t i = 0; i < m->nslots; i++) {
        slot_t *s = &m->slots[i];
        if (!s->part || !flushable(s->state) || !part_unsealed(s->part))
            continue;
        bool oom;
        batch_t *b = part_seal(s->part, &oom);
        if (oom) {
            part_batch_free(b);
            fatal_oom(m, "seal");
            return;
        }
        m->batches[m->nbatches++] = b;
    }
    m->flushing = true;
    m->flush_started_ns = now_ns();
    producer_seal(m->producer);
    if (producer_sealed_pending(m->producer) == 0)
        write_batches(m);
    else
        m->awaiting_barrier = true;
}

static void on_flush_timer(uv_timer_t *t)
{
    flush_start(t->data);
}

/* ---------- assignment ---------- */

static void assign_release(assign_t *a)
{
    if (a->claimed && a->loads_left == 0) {
        free(a->partitions);
        free(a);
    }
}

/* The slot of `partition` if it still belongs to assignment a. */
static slot_t *assigned_slot(const assign_t *a, int32_t partition)
{
    slot_t *s = slot_get(a->m, partition, false);
    return s && s->gen == a->gen ? s : NULL;
}

/* Every partition of the assignment is loaded: start consuming those still assigned. */
static void assign_finish(assign_t *a)
{
    meter_t *m = a->m;
    int32_t *ps = malloc(a->n * sizeof(int32_t));
    int64_t *offsets = malloc(a->n * sizeof(int64_t));
    size_t n = 0;
    if (!ps || !offsets) {
        free(ps);
        free(offsets);
        fatal_oom(m, "assign");
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        slot_t *s = assigned_slot(a, a->partitions[i]);
        if (!s || s->state != S_ACTIVE)
            continue; /* revoked meanwhile */
        ps[n] = a->partitions[i];
        offsets[n] = part_next_offset(s->part);
        LOG_INFO(m->log, "partition ready", LI("partition", ps[n]), LI("offset", offsets[n]),
                 LI("epoch", part_epoch(s->part)),
                 LI("known_ids", (long long)part_known_ids(s->part)));
        n++;
    }
    if (a->reclaim) {
        for (size_t i = 0; i < n; i++) {
            consumer_seek(m->consumer, ps[i], offsets[i]);
            if (!m->paused)
                consumer_pause(m->consumer, &ps[i], 1, false);
        }
    } else if (n) {
        /* With none left, a revocation already answered librdkafka (assign NULL). */
        consumer_assign_done(m->consumer, ps, offsets, n);
    }
    metric_set(m->m_owned, (int64_t)owned_count(m));
    if (m->paused)
        consumer_pause(m->consumer, ps, n, true);
    free(ps);
    free(offsets);
}

/* Loading a claimed partition: its applied identities, then its ledger snapshots. */
static void on_ids(void *arg, const uint8_t *ids, size_t len)
{
    load_t *l = arg;
    slot_t *s = assigned_slot(l->a, l->partition);
    if (ids && s && s->state == S_LOADING && part_load_ids(s->part, ids, len / 16) < 0)
        fatal_oom(l->a->m, "load ids");
}

static void on_state_row(void *arg, const uint8_t *blob, size_t len)
{
    load_t *l = arg;
    slot_t *s = assigned_slot(l->a, l->partition);
    if (!s || s->state != S_LOADING)
        return;
    if (!blob) { /* the load restarts after a lost connection */
        part_reset_ledger(s->part);
        l->state_bad = false;
        return;
    }
    if (part_load_state(s->part, blob, len) < 0)
        l->state_bad = true;
}

static void on_state_loaded(void *arg)
{
    load_t *l = arg;
    assign_t *a = l->a;
    slot_t *s = assigned_slot(a, l->partition);
    if (s && s->state == S_LOADING && l->state_bad) {
        /* The database holds a snapshot this binary cannot read: never guess a queue. */
        LOG_ERROR(a->m->log, "malformed ledger snapshot; stopping", LI("partition", l->partition));
        fatal(a->m, "cannot restore the ledger of a partition", "load state");
    } else if (s && s->state == S_LOADING) {
        s->state = S_ACTIVE;
    }
    free(l);
    a->loads_left--;
    if (a->loads_left == 0)
        assign_finish(a);
    assign_release(a);
}

static void on_ids_loaded(void *arg)
{
    load_t *l = arg;
    if (store_load_state(l->a->m->store, l->checkpoint_id, on_state_row, on_state_loaded, l) < 0)
        fatal_oom(l->a->m, "load state"); /* l stays with the (stopping) meter */
}

static void on_claimed(void *arg, const store_claim_t *claims, size_t n)
{
    assign_t *a = arg;
    meter_t *m = a->m;
    a->claimed = true;
    for (size_t i = 0; i < n; i++) {
        const store_claim_t *c = &claims[i];
        slot_t *s = assigned_slot(a, c->partition);
        if (!s)
            continue; /* revoked while claiming */
        part_t *old = s->part;
        if (old && part_uncommitted(old) == 0 && part_epoch(old) + 1 == c->epoch &&
            part_committed_offset(old) == c->next_offset) {
            /* Nobody claimed it since we let go: the retained state is exact. */
            part_set_epoch(old, c->epoch);
            s->state = S_ACTIVE;
            continue;
        }
        slot_release(m, s, S_LOADING);
        s->part = part_new(c->partition, c->checkpoint_id, c->next_offset, c->epoch);
        load_t *l = malloc(sizeof(*l));
        if (!s->part || !l) {
            free(l);
            fatal_oom(m, "claim");
            return;
        }
        *l = (load_t){.a = a, .partition = c->partition, .checkpoint_id = c->checkpoint_id};
        a->loads_left++;
        if (store_load_ids(m->store, c->checkpoint_id, on_ids, on_ids_loaded, l) < 0) {
            free(l);
            a->loads_left--;
            fatal_oom(m, "claim");
            return;
        }
    }
    if (a->loads_left == 0)
        assign_finish(a);
    assign_release(a);
}

static void on_reclaim_timer(uv_timer_t *t)
{
    meter_t *m = t->data;
    if (m->stopping)
        return;
    assign_t *a = calloc(1, sizeof(*a));
    if (a)
        a->partitions = malloc((m->nslots ? m->nslots : 1) * sizeof(int32_t));
    if (!a || !a->partitions) {
        free(a);
        fatal_oom(m, "reclaim");
        return;
    }
    a->m = m;
    a->gen = ++m->assign_gen;
    a->reclaim = true;
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].state != S_FENCED)
            continue;
        if (consumer_owns(m->consumer, (int32_t)i)) {
            m->slots[i].state = S_CLAIMING;
            m->slots[i].gen = a->gen;
            a->partitions[a->n++] = (int32_t)i;
        } else {
            m->slots[i].state = S_NONE; /* its revocation is on the way */
        }
    }
    if (a->n == 0) {
        free(a->partitions);
        free(a);
        return;
    }
    LOG_WARN(m->log, "re-claiming fenced partitions still assigned here",
             LI("count", (long long)a->n));
    if (store_claim(m->store, a->partitions, a->n, on_claimed, a) < 0) {
        free(a->partitions);
        free(a);
        fatal_oom(m, "reclaim");
    }
}

static void on_assign(void *arg, const int32_t *partitions, size_t n)
{
    meter_t *m = arg;
    assign_t *a = calloc(1, sizeof(*a));
    if (a)
        a->partitions = malloc((n ? n : 1) * sizeof(int32_t));
    if (!a || !a->partitions) {
        free(a);
        fatal_oom(m, "assign");
        return;
    }
    a->m = m;
    a->gen = ++m->assign_gen;
    memcpy(a->partitions, partitions, n * sizeof(int32_t));
    a->n = n;
    for (size_t i = 0; i < n; i++) {
        slot_t *s = slot_get(m, partitions[i], true);
        if (!s) {
            LOG_ERROR(m->log, "partition number out of range", LI("partition", partitions[i]));
            fatal_oom(m, "assign");
            return;
        }
        if (s->state != S_RETAINED)
            slot_release(m, s, S_CLAIMING);
        s->state = S_CLAIMING;
        s->gen = a->gen;
    }
    if (n == 0) {
        a->claimed = true;
        consumer_assign_done(m->consumer, NULL, NULL, 0);
        assign_release(a);
        return;
    }
    if (store_claim(m->store, partitions, n, on_claimed, a) < 0) {
        free(a->partitions);
        free(a);
        fatal_oom(m, "claim");
    }
}

/* ---------- revocation ---------- */

static bool revoke_clean(const meter_t *m)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].state == S_REVOKING && part_uncommitted(m->slots[i].part) > 0)
            return false;
    return true;
}

static void finish_revoke(meter_t *m)
{
    uv_timer_stop(&m->revoke_timer);
    for (size_t i = 0; i < m->nslots; i++) {
        slot_t *s = &m->slots[i];
        if (s->state != S_REVOKING)
            continue;
        if (!m->revoke_lost && s->part && part_uncommitted(s->part) == 0)
            s->state = S_RETAINED;
        else
            slot_release(m, s, S_NONE);
    }
    m->revoking = false;
    metric_set(m->m_owned, (int64_t)owned_count(m));
    consumer_revoke_done(m->consumer);
    check_backpressure(m);
    stop_progress(m);
}

static void maybe_finish_revoke(meter_t *m)
{
    if (!m->revoking)
        return;
    if (revoke_clean(m)) {
        finish_revoke(m);
        return;
    }
    flush_start(m); /* messages applied after the last seal */
}

static void on_revoke_timeout(uv_timer_t *t)
{
    meter_t *m = t->data;
    LOG_WARN(m->log, "revocation flush timed out; the new owner replays unflushed events",
             LI("timeout_ms", m->cfg->revoke_timeout_ms));
    finish_revoke(m);
}

static void on_revoke(void *arg, const int32_t *partitions, size_t n, bool lost)
{
    meter_t *m = arg;
    for (size_t i = 0; i < n; i++) {
        slot_t *s = slot_get(m, partitions[i], false);
        if (!s)
            continue;
        s->gen = 0; /* abandons its assignment if still claiming or loading */
        if (s->state == S_ACTIVE || s->state == S_STUCK)
            s->state = S_REVOKING;
        else
            slot_release(m, s, S_NONE);
    }
    m->revoking = true;
    m->revoke_lost = lost;
    if (lost || revoke_clean(m)) {
        finish_revoke(m);
        return;
    }
    uv_timer_start(&m->revoke_timer, on_revoke_timeout, (uint64_t)m->cfg->revoke_timeout_ms, 0);
    flush_start(m);
}

static void on_partition_error(void *arg, int32_t partition, const char *reason)
{
    meter_t *m = arg;
    slot_t *s = slot_get(m, partition, false);
    LOG_ERROR(m->log,
              "partition stopped: its checkpoint is outside the topic's retained range; "
              "events were lost upstream and need an operator (see docs/operations.md)",
              LI("partition", partition), LS("reason", reason));
    metric_inc(m->m_stuck);
    if (s && s->state == S_ACTIVE)
        s->state = S_STUCK;
}

/* ---------- stop ---------- */

static void handle_closed(uv_handle_t *h)
{
    meter_t *m = h->data;
    if (--m->handles_open == 0) {
        pricing_free(m->prices);
        tiers_free(m->tiers);
        wire_decoder_free(m->decoder);
        free(m->slots);
        free(m);
    }
}

static void finish(meter_t *m)
{
    if (m->finished)
        return;
    m->finished = true;
    meter_log_stats(m);
    log_kv_t kv[WIRE_T_COUNT + 1];
    for (int i = 0; i < WIRE_T_COUNT; i++)
        kv[i] = LI(wire_type_name((wire_type_t)i), metric_value(m->m_events[i]));
    kv[WIRE_T_COUNT] = LNONE;
    if (log_enabled(m->log, LOG_LEVEL_INFO))
        log_emit(m->log, LOG_LEVEL_INFO, "applied by type", kv);
    int64_t left = producer_close(m->producer, 2000);
    if (left) {
        LOG_ERROR(m->log, "messages left undelivered at exit", LI("count", left));
        m->exit_code = 1;
    }
    consumer_free(m->consumer);
    store_close(m->store);
    for (size_t i = 0; i < m->nslots; i++)
        slot_release(m, &m->slots[i], S_NONE);
    for (size_t i = 0; i < m->nbatches; i++)
        part_batch_free(m->batches[i]);
    free(m->batches);
    m->batches = NULL;
    uv_timer_t *timers[5] = {&m->flush_timer, &m->revoke_timer, &m->stop_timer, &m->stats_timer,
                             &m->reclaim_timer};
    m->handles_open = 5;
    meter_done_cb done = m->done;
    void *done_arg = m->done_arg;
    int code = m->exit_code;
    for (int i = 0; i < 5; i++)
        uv_close((uv_handle_t *)timers[i], handle_closed);
    done(done_arg, code);
}

static void on_closed(void *arg)
{
    meter_t *m = arg;
    LOG_INFO(m->log, "left the consumer group", LNONE);
    finish(m);
}

/* Advances the graceful stop: flush everything, then leave the group. */
static void stop_progress(meter_t *m)
{
    if (!m->stopping || m->consumer_closing)
        return;
    bool unsealed = false;
    for (size_t i = 0; i < m->nslots; i++)
        unsealed |=
            m->slots[i].part && flushable(m->slots[i].state) && part_unsealed(m->slots[i].part) > 0;
    if (m->flushing || m->revoking)
        return;
    if (m->no_more_flushes)
        unsealed = false; /* left for replay */
    if (unsealed && store_is_up(m->store)) {
        flush_start(m);
        return;
    }
    if (unsealed)
        return; /* wait for PostgreSQL, bounded by the stop deadline */
    m->consumer_closing = true;
    LOG_INFO(m->log, "flushed; leaving the consumer group", LNONE);
    consumer_close(m->consumer);
}

static void on_stop_deadline(uv_timer_t *t)
{
    meter_t *m = t->data;
    LOG_ERROR(m->log, "stop deadline passed; exiting with unflushed events (replayed on restart)",
              LI("uncommitted", m->uncommitted));
    m->exit_code = 1;
    finish(m);
}

void meter_stop(meter_t *m)
{
    if (m->stopping)
        return;
    m->stopping = true;
    LOG_INFO(m->log, "stopping: draining", LI("uncommitted", m->uncommitted));
    uv_timer_start(&m->stop_timer, on_stop_deadline, (uint64_t)m->cfg->shutdown_timeout_ms, 0);
    stop_progress(m);
}

/* ---------- misc ---------- */

void meter_set_tables(meter_t *m, pricing_t *prices, tiers_t *tiers)
{
    pricing_free(m->prices);
    m->prices = prices;
    tiers_free(m->tiers);
    m->tiers = tiers;
}

/* The ledger gauges, summed over the owned partitions. */
static void ledger_gauges(meter_t *m)
{
    int64_t running = 0, queued = 0, held = 0, orgs = 0, lag = 0;
    for (size_t i = 0; i < m->nslots; i++) {
        const part_t *p = m->slots[i].part;
        if (!p || !flushable(m->slots[i].state))
            continue;
        running += (int64_t)ledger_running(part_ledger(p));
        queued += (int64_t)ledger_queued(part_ledger(p));
        held += (int64_t)ledger_held(part_ledger(p));
        orgs += (int64_t)ledger_orgs(part_ledger(p));
        /* lag: messages in Kafka not yet applied here (the fetch's view of the log end) */
        int64_t hi = m->consumer ? consumer_high_watermark(m->consumer, part_partition(p)) : -1;
        int64_t next = part_next_offset(p) < 0 ? 0 : part_next_offset(p);
        if (hi > next)
            lag += hi - next;
    }
    metric_set(m->m_running, running);
    metric_set(m->m_queued, queued);
    metric_set(m->m_held, held);
    metric_set(m->m_orgs, orgs);
    metric_set(m->m_lag, lag);
}

void meter_update_gauges(meter_t *m)
{
    ledger_gauges(m);
}

bool meter_ready(meter_t *m, char *why, size_t len)
{
    const char *reason = NULL;
    if (m->stopping)
        reason = "stopping";
    else if (!store_is_up(m->store))
        reason = "PostgreSQL is not reachable";
    else if (m->assign_gen == 0)
        reason = "not yet in the consumer group (Kafka not reachable, or joining)";
    for (size_t i = 0; !reason && i < m->nslots; i++)
        if (m->slots[i].state == S_CLAIMING || m->slots[i].state == S_LOADING)
            reason = "loading partitions";
    if (why && len)
        snprintf(why, len, "%s", reason ? reason : "ready");
    return reason == NULL;
}

int meter_describe_org(meter_t *m, const char *org, char *buf, size_t len)
{
    for (size_t i = 0; i < m->nslots; i++) {
        const part_t *p = m->slots[i].part;
        if (!p || m->slots[i].state != S_ACTIVE)
            continue;
        int n = ledger_describe(part_ledger(p), org, strlen(org), buf, len);
        if (n >= 0)
            return n;
    }
    return -1;
}

void meter_log_stats(meter_t *m)
{
    int64_t applied = 0, dead = 0, decisions = 0;
    for (int i = 0; i < WIRE_T_COUNT; i++)
        applied += metric_value(m->m_events[i]);
    for (int i = 1; i < DEAD_COUNT; i++) /* 0 is WIRE_OK, not a reason */
        dead += metric_value(m->m_dead[i]);
    for (int i = 0; i < WIRE_D_COUNT; i++)
        decisions += metric_value(m->m_decisions[i]);
    ledger_gauges(m);
    LOG_INFO(
        m->log, "stats", LI("applied", applied), LI("duplicates", metric_value(m->m_duplicates)),
        LI("dead_lettered", dead), LI("unpriced", metric_value(m->m_unpriced)),
        LI("flushes", metric_value(m->m_flushes)), LI("uncommitted", m->uncommitted),
        LI("partitions", (long long)owned_count(m)), LI("paused", m->paused),
        LI("decisions", decisions), LI("running", metric_value(m->m_running)),
        LI("queued", metric_value(m->m_queued)), LI("held", metric_value(m->m_held)),
        LI("decision_p50_us", (long long)(metric_quantile(m->m_decision_latency, 0.5) * 1e6)),
        LI("decision_p99_us", (long long)(metric_quantile(m->m_decision_latency, 0.99) * 1e6)));
}

static void on_stats_timer(uv_timer_t *t)
{
    meter_log_stats(t->data);
}

static void on_store_state(void *arg, bool up)
{
    meter_t *m = arg;
    if (store_failed(m->store)) {
        m->exit_code = 1;
        meter_stop(m);
        return;
    }
    if (up)
        stop_progress(m);
}

static int register_metrics(meter_t *m)
{
    metrics_t *r = m->metrics;
    char labels[96];
    for (int i = 0; i < WIRE_T_COUNT; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", wire_type_name((wire_type_t)i));
        m->m_events[i] = metrics_counter(r, "meterd_events_total",
                                         "Events applied (exactly once), by type.", labels);
        if (!m->m_events[i])
            return -1;
    }
    for (int i = 1; i < DEAD_COUNT; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"",
                 i == DEAD_KEY_MISMATCH    ? "key_mismatch"
                 : i == DEAD_UNKNOWN_TIER  ? "unknown_tier"
                 : i == DEAD_UNKNOWN_PROMO ? "unknown_promo"
                                           : wire_err_name((wire_err_t)i));
        m->m_dead[i] =
            metrics_counter(r, "meterd_dead_letters_total",
                            "Messages sent to the dead-letter topic, by reason.", labels);
        if (!m->m_dead[i])
            return -1;
    }
    for (int i = 0; i < WIRE_D_COUNT; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"",
                 wire_decision_name((wire_decision_type_t)i));
        m->m_decisions[i] = metrics_counter(r, "meterd_decisions_total",
                                            "Admission decisions published, by type.", labels);
        if (!m->m_decisions[i])
            return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (i == 0)
            snprintf(labels, sizeof(labels), "type=\"budget.warning\",reason=\"threshold\"");
        else
            snprintf(labels, sizeof(labels), "type=\"budget.exceeded\",reason=\"%s\"",
                     bill_reason_name((bill_reason_t)i));
        m->m_budget[i] = metrics_counter(r, "meterd_budget_events_total",
                                         "Budget events published, by type and reason.", labels);
        if (!m->m_budget[i])
            return -1;
    }
    m->m_invoices_final = metrics_counter(
        r, "meterd_invoices_finalized_total",
        "Periods closed: final invoices issued (written with the next flush).", NULL);
    if (!m->m_invoices_final)
        return -1;
    static const char *const notes[5] = {NULL, "known_run", "unknown_run", "known_workflow",
                                         "unknown_workflow"};
    for (int i = 1; i < 5; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", notes[i]);
        m->m_noops[i] = metrics_counter(
            r, "meterd_ledger_noops_total",
            "Admission events without effect (a run or workflow already open, or not open here).",
            labels);
        if (!m->m_noops[i])
            return -1;
    }
    static const double lat[] = {0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
                                 0.015,  0.02,  0.03,  0.05,  0.075, 0.1,   0.15,   0.2,
                                 0.3,    0.5,   0.75,  1,     2,     5};
    m->m_decision_latency = metrics_histogram(
        r, "meterd_decision_latency_seconds",
        "From the causing event's arrival in meterd to the broker's acknowledgement of the "
        "decision.",
        NULL, lat, sizeof(lat) / sizeof(lat[0]));
    m->m_running =
        metrics_gauge(r, "meterd_agents_running", "Agent runs admitted and running.", NULL);
    m->m_queued = metrics_gauge(r, "meterd_agents_queued",
                                "Agent runs waiting for a concurrent-agent slot.", NULL);
    m->m_held = metrics_gauge(r, "meterd_workflows_held",
                              "Workflows held over a Free organization's quota.", NULL);
    m->m_orgs =
        metrics_gauge(r, "meterd_organizations", "Organizations in the owned partitions.", NULL);
    m->m_lag = metrics_gauge(r, "meterd_consumer_lag_messages",
                             "Messages in the owned partitions not yet applied here (log end "
                             "offset from the latest fetch minus the next offset).",
                             NULL);
    if (!m->m_decision_latency || !m->m_running || !m->m_queued || !m->m_held || !m->m_orgs ||
        !m->m_lag)
        return -1;
    static const double secs[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,  0.5,    1,     2.5,  5,     10};
    static const double msgs[] = {1, 10, 100, 1000, 5000, 10000, 25000, 50000, 100000, 250000};
    m->m_duplicates =
        metrics_counter(r, "meterd_events_duplicate_total",
                        "Events whose id the organization already had (no effect).", NULL);
    m->m_redelivered =
        metrics_counter(r, "meterd_redelivered_total",
                        "Messages below the partition's next offset (ignored).", NULL);
    m->m_gaps = metrics_counter(r, "meterd_offset_gaps_total",
                                "Times a partition's offsets jumped forward.", NULL);
    m->m_unpriced = metrics_counter(r, "meterd_llm_unpriced_total",
                                    "llm.call events whose model is not in the price table.", NULL);
    m->m_ignored = metrics_counter(r, "meterd_messages_ignored_total",
                                   "Messages of partitions not (or no longer) active here.", NULL);
    m->m_flushes =
        metrics_counter(r, "meterd_flushes_total", "Flush transactions committed.", NULL);
    m->m_flush_seconds = metrics_histogram(r, "meterd_flush_duration_seconds",
                                           "Time from sealing a flush to its commit.", NULL, secs,
                                           sizeof(secs) / sizeof(secs[0]));
    m->m_flush_messages =
        metrics_histogram(r, "meterd_flush_messages", "Input messages made durable per flush.",
                          NULL, msgs, sizeof(msgs) / sizeof(msgs[0]));
    m->m_fenced =
        metrics_counter(r, "meterd_partitions_fenced_total",
                        "Batches refused because another instance claimed the partition.", NULL);
    m->m_pending = metrics_gauge(r, "meterd_uncommitted_messages",
                                 "Messages consumed but not yet durable in PostgreSQL.", NULL);
    m->m_paused = metrics_gauge(r, "meterd_consumer_paused",
                                "1 while backpressure pauses consumption.", NULL);
    m->m_owned = metrics_gauge(r, "meterd_partitions_owned",
                               "Input partitions this instance consumes.", NULL);
    m->m_stuck =
        metrics_counter(r, "meterd_partitions_stuck_total",
                        "Partitions stopped because their checkpoint is out of range.", NULL);
    return m->m_duplicates && m->m_redelivered && m->m_gaps && m->m_unpriced && m->m_ignored &&
                   m->m_flushes && m->m_flush_seconds && m->m_flush_messages && m->m_fenced &&
                   m->m_pending && m->m_paused && m->m_owned && m->m_stuck
               ? 0
               : -1;
}

meter_t *meter_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                   pricing_t *prices, tiers_t *tiers, meter_done_cb done, void *arg, char *err,
                   size_t errlen)
{
    meter_t *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        pricing_free(prices);
        tiers_free(tiers);
        return NULL;
    }
    m->tiers = tiers;
    m->loop = loop;
    m->cfg = cfg;
    m->log = log;
    m->metrics = metrics;
    m->prices = prices;
    m->done = done;
    m->done_arg = arg;
    m->decoder = wire_decoder_new((size_t)cfg->max_event_bytes);
    if (!m->decoder || register_metrics(m) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    m->producer = producer_new(loop, cfg, log, metrics, on_producer_drained, m, err, errlen);
    if (!m->producer)
        goto fail;
    m->store = store_new(loop, cfg, log, metrics, false, on_store_state, m);
    if (!m->store) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    consumer_cbs_t cbs = {on_message, on_assign, on_revoke, on_partition_error, on_closed};
    m->consumer = consumer_new(loop, cfg, log, metrics, &cbs, m, err, errlen);
    if (!m->consumer)
        goto fail;
    uv_timer_t *timers[5] = {&m->flush_timer, &m->revoke_timer, &m->stop_timer, &m->stats_timer,
                             &m->reclaim_timer};
    for (int i = 0; i < 5; i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = m;
    }
    uv_timer_start(&m->flush_timer, on_flush_timer, (uint64_t)cfg->flush_interval_ms,
                   (uint64_t)cfg->flush_interval_ms);
    if (cfg->stats_interval_ms > 0)
        uv_timer_start(&m->stats_timer, on_stats_timer, (uint64_t)cfg->stats_interval_ms,
                       (uint64_t)cfg->stats_interval_ms);
    LOG_INFO(log, "meterd started", LS("version", METERD_VERSION), LS("instance", cfg->instance_id),
             LS("brokers", cfg->kafka_brokers), LS("topic", cfg->kafka_input_topic),
             LS("group", cfg->kafka_group_id),
             LI("models_priced", (long long)pricing_count(prices)));
    return m;
fail:
    /* Only reachable before the loop ran: the partly built shell is torn down in order. */
    if (m->store)
        store_close(m->store);
    if (m->producer)
        producer_close(m->producer, 0);
    pricing_free(m->prices);
    tiers_free(m->tiers);
    wire_decoder_free(m->decoder);
    free(m);
    return NULL;
}
