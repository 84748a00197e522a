/*
 * pricing — the LLM price table and the money arithmetic of one call.
 *
 * Pure core: parses a price table from text (the shell reads the file), answers look-ups, and
 * prices token counts. Money is integers only: prices are micro-USD per 1M tokens, a call's cost
 * is nano-USD. The cost of one call is
 *
 *     round_half_up( (in*p_in + out*p_out + cache_read*p_cr + cache_write*p_cw) / 1000 )
 *
 * nano-USD, which is exact for every price with at most six decimals of a dollar. Token counts
 * are bounded by WIRE_MAX_TOKENS and prices by PRICING_MAX_MICROS, so the sum fits in int64.
 *
 * Table format (INI, one section per model, the provider before the first '/'):
 *
 *     [anthropic/claude-sonnet-4-5]
 *     input = 3.00          ; USD per 1M uncached input tokens
 *     output = 15.00
 *     cache_read = 0.30
 *     cache_write = 3.75
 *
 * All four keys are required: a missing cache price would silently make cached tokens free.
 * Unknown keys, duplicate keys, duplicate sections, keys before the first section, malformed
 * amounts and indented lines are refused with a message naming the line, section and key. The
 * provider is 1..WIRE_MAX_PROVIDER bytes, the model (which may contain '/') 1..WIRE_MAX_MODEL
 * bytes, both printable ASCII without spaces. A table without any section is refused.
 *
 * A parsed table is immutable: look-ups and costs may run on any thread, and allocate nothing.
 */
#ifndef METERD_PRICING_H
#define METERD_PRICING_H

#include <stddef.h>
#include <stdint.h>

#define PRICING_MAX_MICROS 1000000000LL /* $1,000 per 1M tokens */

typedef struct {
    int64_t input, output, cache_read, cache_write; /* micro-USD per 1M tokens */
} pricing_rate_t;

typedef struct pricing pricing_t;

/* Parses a price table from text[0..len). On success stores a new table in *out (the caller
 * frees it with pricing_free) and returns 0. On error returns -1, leaves *out NULL and writes a
 * NUL-terminated message naming the line, section and key into err[0..errlen). */
__attribute__((warn_unused_result)) int pricing_parse(const char *text, size_t len, pricing_t **out,
                                                      char *err, size_t errlen);
void pricing_free(pricing_t *p);

/* Number of models in the table. */
size_t pricing_count(const pricing_t *p);

/* The rate of (provider, model), exact and case-sensitive, or NULL when the model is unknown
 * (also when either length is 0 or over its WIRE_MAX_* bound). The strings need not be
 * NUL-terminated. The pointer lives as long as the table. */
const pricing_rate_t *pricing_lookup(const pricing_t *p, const char *provider, size_t provider_len,
                                     const char *model, size_t model_len);

/* Cost of one call in nano-USD, rounded half up (see the file comment). Token counts must be in
 * 0..WIRE_MAX_TOKENS. */
int64_t pricing_cost_nanos(const pricing_rate_t *r, int64_t input_tokens, int64_t output_tokens,
                           int64_t cache_read_tokens, int64_t cache_write_tokens);

/* Parses a non-negative decimal dollar amount ("3", "0.30", "12.990000"; at most six decimals,
 * no sign, no exponent, no spaces) from the NUL-terminated s into micro-USD. Returns 0, or -1
 * when malformed or above max_micros (>= 0), leaving *out untouched. */
__attribute__((warn_unused_result)) int money_parse_usd_micros(const char *s, int64_t max_micros,
                                                               int64_t *out);

#endif
