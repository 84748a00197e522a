/*
 * metrics — a registry of counters, gauges and histograms and their Prometheus text exposition.
 *
 * Loop thread only; no locks. Metrics are registered once at start-up (a name, its help text
 * and an optional fixed label set) and then updated through the returned handle, which is a
 * plain integer increment on the hot path. Metrics with the same name form one family and are
 * exposed together under one HELP/TYPE header, in registration order.
 */
#ifndef METERD_METRICS_H
#define METERD_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics_t;
typedef struct metric metric_t;

/* Creates an empty registry; NULL when out of memory. metrics_free frees it and every metric. */
metrics_t *metrics_new(void);
void metrics_free(metrics_t *m);

/* Registers a metric. `labels` is NULL or a Prometheus label list without braces, e.g.
 * "type=\"llm.call\"" (the caller's constant, not escaped here). Registering the same name and
 * labels twice returns the existing metric. Returns NULL when out of memory or when the name
 * is already registered with another kind. The registry owns the metric. */
metric_t *metrics_counter(metrics_t *m, const char *name, const char *help, const char *labels);
metric_t *metrics_gauge(metrics_t *m, const char *name, const char *help, const char *labels);
/* bounds: ascending upper bounds of the buckets (+Inf is implicit), copied. */
metric_t *metrics_histogram(metrics_t *m, const char *name, const char *help, const char *labels,
                            const double *bounds, size_t nbounds);

void metric_inc(metric_t *x);
void metric_add(metric_t *x, uint64_t n);
void metric_set(metric_t *x, int64_t v);
void metric_observe(metric_t *x, double v);
/* Counter or gauge value; a histogram's count. */
int64_t metric_value(const metric_t *x);

/* A histogram's q-quantile (0 < q < 1) estimated by linear interpolation inside the bucket
 * that holds it (as Prometheus' histogram_quantile does); 0 when empty, the largest finite
 * bound when it falls in +Inf. */
double metric_quantile(const metric_t *x, double q);

/* Renders every metric in the text exposition format 0.0.4 into a new NUL-terminated buffer
 * (*out, freed by the caller, length *len). Returns 0, or -1 when out of memory. */
__attribute__((warn_unused_result)) int metrics_render(const metrics_t *m, char **out, size_t *len);

#endif
