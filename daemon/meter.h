/*
 * meter — the daemon's coordinator: routes input messages to the partition states, dead-letters
 * what cannot be applied, schedules flushes, applies backpressure, and runs rebalances and the
 * graceful stop.
 *
 * Loop thread only. It owns the consumer, the producer, the store, the price table and the
 * partition states; main only builds it, forwards signals and waits for it to finish.
 *
 * The flush cycle: every meter.flush_interval_ms (or as soon as meter.flush_max_events are
 * waiting) each owned partition seals its pending batch; the producer seals its generation; when
 * the broker has acknowledged every dead letter of that generation, the store writes the batches
 * in one transaction; on commit the partitions' checkpoints move. One flush runs at a time.
 */
#ifndef METERD_METER_H
#define METERD_METER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "pricing.h"
#include "tiers.h"

typedef struct meter meter_t;

/* Called once when the meter has stopped; exit_code 0 means everything applied is durable. */
typedef void (*meter_done_cb)(void *arg, int exit_code);

/* Builds the meter and starts it (connects to PostgreSQL, joins the consumer group). Takes
 * ownership of prices and tiers. cfg, log and metrics are not owned. On error returns NULL and
 * writes a message to err. */
meter_t *meter_new(uv_loop_t *loop, const config_t *cfg, log_t *log, metrics_t *metrics,
                   pricing_t *prices, tiers_t *tiers, meter_done_cb done, void *arg, char *err,
                   size_t errlen);

/* Graceful stop: stop applying, flush, leave the group, deliver outstanding messages, close.
 * done runs when finished; after that the meter's handles are closing and it frees itself
 * when the loop runs them. Calling it twice is harmless. */
void meter_stop(meter_t *m);

/* Replaces the price and tier tables (ownership passes) for events applied from now on. An
 * organization keeps its tier by name; one whose tier left the table gets the free tier's
 * limits until its next subscription event. */
void meter_set_tables(meter_t *m, pricing_t *prices, tiers_t *tiers);

/* Ready to serve: PostgreSQL up, in the consumer group, every assigned partition loaded, not
 * stopping. Writes the reason (or "ready") into why. */
bool meter_ready(meter_t *m, char *why, size_t len);

/* Refreshes the gauges computed on demand (ledger sizes, consumer lag), e.g. before a scrape. */
void meter_update_gauges(meter_t *m);

/* The live state of organization `org` (NUL-terminated) as JSON (ledger_describe) when one of
 * the active partitions holds it: returns the length it needed, or -1. */
int meter_describe_org(meter_t *m, const char *org, char *buf, size_t len);

/* Writes one stats log line now. */
void meter_log_stats(meter_t *m);

#endif
