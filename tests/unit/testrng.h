/*
 * testrng — the seeded generator of the randomized unit tests.
 *
 * rng_seed() takes METERD_TEST_SEED when set (to replay a failure), else a clock-based seed,
 * and prints it as "seed=N" before anything random happens. rng_next() is xorshift64*: the
 * same sequence everywhere for one seed. Header-only: each test executable has its own state.
 */
#ifndef METERD_TESTRNG_H
#define METERD_TESTRNG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state;

static void rng_seed(void)
{
    unsigned seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    const char *env = getenv("METERD_TEST_SEED");
    if (env && env[0]) {
        char *end;
        unsigned long v = strtoul(env, &end, 10);
        if (*end == '\0')
            seed = (unsigned)v;
    }
    printf("seed=%u (replay with METERD_TEST_SEED=%u)\n", seed, seed);
    fflush(stdout);
    rng_state = 0x9E3779B97F4A7C15ULL ^ seed;
    if (rng_state == 0)
        rng_state = 1;
}

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

#endif
