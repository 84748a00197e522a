/*
 * consumer — Kafka in: the consumer group on the input topic, woken into the loop.
 *
 * Loop thread only. librdkafka's threads only signal a non-blocking pipe when the consumer
 * queue goes from empty to non-empty; the loop then drains up to meter.poll_batch messages with
 * rd_kafka_consumer_poll(0) and, if more remain, continues on the next loop iteration through an
 * idle handle, so timers and PostgreSQL I/O are never starved. The main queue (librdkafka's logs
 * and errors) is forwarded to the same queue.
 *
 * Offsets come from PostgreSQL, not Kafka: on assignment the owner (meter) claims the partitions
 * and loads their checkpoints asynchronously, then calls consumer_assign_done with the offsets
 * (librdkafka waits for that call). auto.offset.reset is "error", so a checkpoint that fell out
 * of the topic's retention stops that partition loudly instead of skipping events. Offsets are
 * committed to Kafka only after they are durable in PostgreSQL, for lag monitoring.
 */
#ifndef METERD_CONSUMER_H
#define METERD_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

typedef struct consumer consumer_t;

typedef struct {
    /* One message of the input topic; the consumer destroys it after the call returns. */
    void (*on_message)(void *arg, const rd_kafka_message_t *m);
    /* Partitions assigned: the owner must eventually call consumer_assign_done. */
    void (*on_assign)(void *arg, const int32_t *partitions, size_t n);
    /* Partitions revoked (lost: taken away without a clean rebalance): the owner must
     * eventually call consumer_revoke_done. */
    void (*on_revoke)(void *arg, const int32_t *partitions, size_t n, bool lost);
    /* A partition cannot be consumed from its checkpoint (out of range); it is paused. */
    void (*on_partition_error)(void *arg, int32_t partition, const char *reason);
    /* The consumer finished closing (after consumer_close). */
    void (*on_closed)(void *arg);
} consumer_cbs_t;

/* Creates the consumer and subscribes to the input topic. cfg, log and metrics are not owned.
 * On error returns NULL and writes a message naming the offending property to err. */
consumer_t *consumer_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                         const consumer_cbs_t *cbs, void *arg, char *err, size_t errlen);

/* Completes an assignment: starts consuming each partition at its offset (-1: the beginning). */
void consumer_assign_done(consumer_t *c, const int32_t *partitions, const int64_t *offsets,
                          size_t n);
/* Completes a revocation. */
void consumer_revoke_done(consumer_t *c);

/* Backpressure: pause or resume fetching of partitions (never stop polling). */
void consumer_pause(consumer_t *c, const int32_t *partitions, size_t n, bool pause);

/* True while `partition` is in this consumer's current assignment. */
bool consumer_owns(consumer_t *c, int32_t partition);

/* The partition's high watermark as last seen in a fetch response (no broker round trip):
 * returns it, or -1 when not known yet. */
int64_t consumer_high_watermark(consumer_t *c, int32_t partition);
/* Moves the fetch position of an assigned partition (-1: the beginning). */
void consumer_seek(consumer_t *c, int32_t partition, int64_t offset);

/* Records durable offsets in Kafka (asynchronously, for lag monitoring only). */
void consumer_commit(consumer_t *c, const int32_t *partitions, const int64_t *offsets, size_t n);

/* Starts leaving the group; on_closed runs when done. */
void consumer_close(consumer_t *c);
/* Destroys the handle after on_closed and frees c from its handles' close callbacks. */
void consumer_free(consumer_t *c);

#endif
