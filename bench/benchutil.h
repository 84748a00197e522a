/*
 * benchutil — the small pieces the benchmark programs share: strict argument parsing, a
 * monotonic clock, a seeded pseudo-random generator and a growable byte buffer.
 *
 * Threading: no globals; every function works on what it is given. Only the benchmark tools
 * under bench/ use this module; the daemon never links it.
 */
#ifndef METERD_BENCHUTIL_H
#define METERD_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Parses a whole decimal integer in [min, max] (no sign tricks, no trailing text) into *out.
 * Returns 0, or -1 when s is not such a number (then *out is unchanged). */
__attribute__((warn_unused_result)) int bench_parse_i64(const char *s, int64_t min, int64_t max,
                                                        int64_t *out);

/* Seconds on the monotonic clock, for measuring durations. */
double bench_now(void);

/* splitmix64: a tiny, fast, well-mixed generator; the same seed gives the same sequence on
 * every machine, which is what makes a pre-filled topic reproducible. */
typedef struct {
    uint64_t state;
} bench_rng_t;

void bench_rng_init(bench_rng_t *r, uint64_t seed);
uint64_t bench_rng_next(bench_rng_t *r);
/* An integer in [0, n), n > 0; the modulo bias (< n / 2^64) does not matter here. */
uint64_t bench_rng_below(bench_rng_t *r, uint64_t n);

/* A byte buffer that grows by doubling. The caller owns `data` and frees it with
 * bench_buf_free. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} bench_buf_t;

/* Appends n bytes; returns 0 or -1 when memory runs out (the buffer is then unchanged). */
__attribute__((warn_unused_result)) int bench_buf_put(bench_buf_t *b, const void *p, size_t n);
void bench_buf_free(bench_buf_t *b);

#endif
