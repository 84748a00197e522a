/*
 * producer — Kafka out: the dead-letter topic now, decisions and budget events later.
 *
 * Loop thread only. librdkafka's own threads only wake the loop: the producer's main queue
 * signals a non-blocking pipe watched by a uv_poll, and delivery reports are served on the loop.
 * Messages are produced idempotently with an unbounded message timeout, so librdkafka retries
 * transient broker errors for ever; a permanent failure is logged, counted, and the message is
 * produced again after a second, because nothing meterd emits may be lost.
 *
 * The delivery barrier: a flush may make durable only input whose outputs were acknowledged by
 * the broker, otherwise a crash could lose an output that replay would never re-create. The
 * meter seals a generation (producer_seal) when it seals a flush, and starts the PostgreSQL
 * transaction only when every message of sealed generations is delivered
 * (producer_sealed_pending() == 0); drain_cb says when that happens.
 */
#ifndef METERD_PRODUCER_H
#define METERD_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

typedef struct producer producer_t;

/* A header to attach: name and a NUL-terminated value. */
typedef struct {
    const char *name;
    const char *value;
} producer_header_t;

/* Called when the sealed generations become fully delivered. */
typedef void (*producer_drain_cb)(void *arg);

/* Creates the producer handle and its loop wake-up. cfg, log and metrics are not owned and must
 * outlive it. On error returns NULL and writes a message to err. */
producer_t *producer_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                         producer_drain_cb drain_cb, void *arg, char *err, size_t errlen);

/* Produces one message (payload and key copied) to `topic`, partitioned by key. When latency is
 * not NULL, the time from t0_ns (uv_hrtime) to the broker's acknowledgement is observed in it.
 * Returns 0, or -1 when librdkafka refused it at once (the error is logged; the caller must not
 * treat the message as sent). */
__attribute__((warn_unused_result)) int
producer_send(producer_t *p, const char *topic, const void *key, size_t key_len,
              const void *payload, size_t len, const producer_header_t *headers, size_t nheaders,
              metric_t *latency, uint64_t t0_ns);

/* Seals the current generation: messages sent so far join the sealed set. */
void producer_seal(producer_t *p);
/* Messages of sealed generations not yet acknowledged. */
int64_t producer_sealed_pending(const producer_t *p);
/* All messages not yet acknowledged. */
int64_t producer_outstanding(const producer_t *p);

/* Stops the wake-up and destroys the handle after waiting at most timeout_ms for outstanding
 * messages (rd_kafka_flush: the only blocking call, made once at exit). Frees p from the poll's
 * close callback. Returns the number of messages still undelivered. */
int64_t producer_close(producer_t *p, int timeout_ms);

#endif
