/*
 * costagg — LLM cost aggregated in memory per (org, project, provider, model, hour, billable),
 * the key of a cost_records row.
 *
 * Pure. Holds only the deltas since the last seal: a flush adds them to the stored rows, so the
 * table never needs the totals in memory. Entries keep their insertion order, which makes the
 * rows of a flush deterministic for a given event order. Keys are copied in; the caller's
 * strings need not outlive the call.
 */
#ifndef METERD_COSTAGG_H
#define METERD_COSTAGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *org, *project, *provider, *model;
    uint32_t org_len, project_len, provider_len, model_len;
    int64_t hour_ms; /* start of the UTC hour, Unix ms */
    bool billable;
} costagg_key_t;

typedef struct {
    int64_t calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
    int64_t cost_nanos, unpriced_calls;
} costagg_vals_t;

/* One aggregate. The strings are NUL-terminated copies owned by the costagg. */
typedef struct {
    const char *org, *project, *provider, *model;
    uint32_t org_len, project_len, provider_len, model_len;
    int64_t hour_ms;
    bool billable;
    costagg_vals_t v;
} costagg_entry_t;

typedef struct costagg costagg_t;

costagg_t *costagg_new(void);
void costagg_free(costagg_t *a);

/* Adds vals to the aggregate of key, creating it. Returns 0, or -1 when out of memory (the
 * aggregate is then unchanged). */
__attribute__((warn_unused_result)) int costagg_add(costagg_t *a, const costagg_key_t *key,
                                                    const costagg_vals_t *vals);

size_t costagg_count(const costagg_t *a);
/* The i-th aggregate in insertion order, i < costagg_count. Valid until the next add/clear. */
const costagg_entry_t *costagg_at(const costagg_t *a, size_t i);
/* Forgets every aggregate, keeping memory for reuse. */
void costagg_clear(costagg_t *a);

#endif
