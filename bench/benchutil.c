/*
 * benchutil — shared helpers of the benchmark programs. See benchutil.h.
 */
#include "benchutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int bench_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || *s == '\0' || *s == ' ' || *s == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int64_t)v;
    return 0;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_rng_init(bench_rng_t *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t bench_rng_next(bench_rng_t *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t bench_rng_below(bench_rng_t *r, uint64_t n)
{
    return bench_rng_next(r) % n;
}

int bench_buf_put(bench_buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void bench_buf_free(bench_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
