/*
 * test_idset — unit tests of the applied-identity set (daemon/idset.c).
 *
 * The hash is checked against its definition (XXH3-128 of org, 0xFF, id) computed here with
 * xxHash directly, on both sides of the 256-byte stack-buffer boundary where idset.c switches
 * to the streaming API. The set is checked against an independent structure: a sorted array
 * searched with bsearch. Randomized tests print their seed; METERD_TEST_SEED=<n> replays them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "idset.h"
#include "testrng.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------------------------ */

/* The documented definition of an identity, computed without idset.c. */
static idhash_t ref_hash(const char *org, size_t org_len, const char *id, size_t id_len)
{
    size_t n = org_len + 1 + id_len;
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    memcpy(buf, org, org_len);
    buf[org_len] = 0xff;
    memcpy(buf + org_len + 1, id, id_len);
    XXH128_hash_t x = XXH3_128bits(buf, n);
    free(buf);
    idhash_t h = {x.high64, x.low64};
    if (h.hi == 0 && h.lo == 0)
        h.lo = 1;
    return h;
}

static idhash_t hash_s(const char *org, const char *id)
{
    return idset_hash(org, strlen(org), id, strlen(id));
}

static bool eq(idhash_t a, idhash_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static int cmp_hash(const void *a, const void *b)
{
    const idhash_t *x = a, *y = b;
    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return 0;
}

static idhash_t random_hash(void)
{
    idhash_t h;
    do {
        h.hi = rng_next();
        h.lo = rng_next();
    } while (h.hi == 0 && h.lo == 0);
    return h;
}

/* ---- hash -------------------------------------------------------------------------------- */

static void test_hash_deterministic(void **state)
{
    (void)state;
    static const struct {
        const char *org, *id;
    } cases[] = {
        {"org-1", "evt-1"}, {"org-1", "evt-2"}, {"a", "b"}, {"", ""}, {"acme", ""}, {"", "x"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        idhash_t a = hash_s(cases[i].org, cases[i].id);
        idhash_t b = hash_s(cases[i].org, cases[i].id);
        idhash_t r = ref_hash(cases[i].org, strlen(cases[i].org), cases[i].id, strlen(cases[i].id));
        if (!eq(a, b) || !eq(a, r))
            print_error("case %zu (\"%s\",\"%s\") differs\n", i, cases[i].org, cases[i].id);
        assert_true(eq(a, b));
        assert_true(eq(a, r));
    }
    /* The views need not be NUL-terminated: only the given bytes count. */
    idhash_t a = idset_hash("org-1XXX", 5, "evt-1YYY", 5);
    assert_true(eq(a, hash_s("org-1", "evt-1")));
}

/* Both code paths of idset_hash (stack buffer up to 256 bytes, streaming beyond) compute the
 * same definition; the lengths straddle the boundary. */
static void test_hash_long_keys(void **state)
{
    (void)state;
    static char org[600], id[600];
    memset(org, 'o', sizeof(org));
    memset(id, 'i', sizeof(id));
    static const struct {
        size_t org_len, id_len;
    } cases[] = {
        {64, 64}, {127, 128}, {128, 127}, {100, 155}, {100, 156}, {255, 0},
        {0, 255}, {256, 0},   {0, 256},   {200, 300}, {599, 1},   {600, 600},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        idhash_t h = idset_hash(org, cases[i].org_len, id, cases[i].id_len);
        idhash_t r = ref_hash(org, cases[i].org_len, id, cases[i].id_len);
        if (!eq(h, r))
            print_error("case %zu (org %zu, id %zu bytes) differs from XXH3-128\n", i,
                        cases[i].org_len, cases[i].id_len);
        assert_true(eq(h, r));
    }
    /* Same total length, split differently: still different identities on the long path. */
    assert_false(eq(idset_hash(org, 300, id, 300), idset_hash(org, 301, id, 299)));
}

static void test_hash_separation(void **state)
{
    (void)state;
    /* Each pair has the same concatenated bytes or differs only in the split. */
    static const struct {
        const char *org1, *id1, *org2, *id2;
    } cases[] = {
        {"ab", "c", "a", "bc"},   {"abc", "", "", "abc"}, {"a", "b", "b", "a"},
        {"org", "1", "org1", ""}, {"x", "y", "x", "y "},  {"acme", "evt-1", "acme2", "evt-1"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        idhash_t a = hash_s(cases[i].org1, cases[i].id1);
        idhash_t b = hash_s(cases[i].org2, cases[i].id2);
        if (eq(a, b))
            print_error("case %zu: (\"%s\",\"%s\") == (\"%s\",\"%s\")\n", i, cases[i].org1,
                        cases[i].id1, cases[i].org2, cases[i].id2);
        assert_false(eq(a, b));
    }
}

/* The all-zero value is the empty-slot marker. No input is known to hash to it, so this checks
 * many random inputs against the reference (which maps zero to {0, 1}) and that none is zero. */
static void test_hash_never_zero(void **state)
{
    (void)state;
    rng_seed();
    char org[64], id[64];
    for (int i = 0; i < 100000; i++) {
        size_t ol = rng_next() % sizeof(org), il = rng_next() % sizeof(id);
        for (size_t j = 0; j < ol; j++)
            org[j] = (char)rng_next();
        for (size_t j = 0; j < il; j++)
            id[j] = (char)rng_next();
        idhash_t h = idset_hash(org, ol, id, il);
        assert_false(h.hi == 0 && h.lo == 0);
        assert_true(eq(h, ref_hash(org, ol, id, il)));
    }
}

/* ---- bytes ------------------------------------------------------------------------------- */

static void test_bytes_known(void **state)
{
    (void)state;
    idhash_t h = {0x0102030405060708ULL, 0x090a0b0c0d0e0f10ULL};
    uint8_t b[16];
    static const uint8_t want[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    idhash_to_bytes(h, b);
    assert_memory_equal(b, want, 16);
    idhash_t back = idhash_from_bytes(want);
    assert_true(back.hi == h.hi);
    assert_true(back.lo == h.lo);

    idhash_t top = {0xff00000000000000ULL, 0x00000000000000feULL};
    static const uint8_t want_top[16] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe};
    idhash_to_bytes(top, b);
    assert_memory_equal(b, want_top, 16);
    assert_true(eq(idhash_from_bytes(want_top), top));
}

static void test_bytes_round_trip(void **state)
{
    (void)state;
    rng_seed();
    for (int i = 0; i < 10000; i++) {
        idhash_t h = random_hash();
        uint8_t b[16];
        idhash_to_bytes(h, b);
        assert_int_equal(b[0], (uint8_t)(h.hi >> 56));
        assert_int_equal(b[7], (uint8_t)h.hi);
        assert_int_equal(b[8], (uint8_t)(h.lo >> 56));
        assert_int_equal(b[15], (uint8_t)h.lo);
        assert_true(eq(idhash_from_bytes(b), h));
    }
}

/* ---- the set ----------------------------------------------------------------------------- */

static void test_add_contains(void **state)
{
    (void)state;
    idset_t *s = idset_new(0);
    assert_non_null(s);
    assert_int_equal(idset_size(s), 0);
    idhash_t a = hash_s("acme", "1"), b = hash_s("acme", "2"), c = hash_s("other", "1");
    assert_false(idset_contains(s, a));

    static const struct {
        int which; /* 0 a, 1 b, 2 c */
        int rc;
        size_t size;
    } steps[] = {
        {0, 1, 1}, {0, 0, 1}, {1, 1, 2}, {0, 0, 2}, {1, 0, 2}, {2, 1, 3}, {2, 0, 3},
    };
    idhash_t hs[3] = {a, b, c};
    for (size_t i = 0; i < N_ELEMS(steps); i++) {
        int rc = idset_add(s, hs[steps[i].which]);
        if (rc != steps[i].rc || idset_size(s) != steps[i].size)
            print_error("step %zu: rc %d size %zu\n", i, rc, idset_size(s));
        assert_int_equal(rc, steps[i].rc);
        assert_int_equal(idset_size(s), steps[i].size);
        assert_true(idset_contains(s, hs[steps[i].which]));
    }
    assert_true(idset_contains(s, a));
    assert_true(idset_contains(s, b));
    assert_true(idset_contains(s, c));
    assert_false(idset_contains(s, hash_s("acme", "3")));
    /* Differing in one half only is a different identity. */
    idhash_t half = {a.hi, a.lo ^ 1};
    assert_false(idset_contains(s, half));
    idhash_t half2 = {a.hi ^ 1, a.lo};
    assert_false(idset_contains(s, half2));
    idset_free(s);
    idset_free(NULL);
}

/* Identities sharing their low 64 bits land in one probe cluster, including the last slot so
 * that probing wraps around to slot 0. */
static void test_clusters_and_wrap(void **state)
{
    (void)state;
    idset_t *s = idset_new(0);
    assert_non_null(s);
    static const uint64_t los[] = {0, 1, 0x3ff, 0xffffffffffffffffULL};
    const size_t per = 300;
    for (size_t l = 0; l < N_ELEMS(los); l++)
        for (size_t i = 1; i <= per; i++) {
            idhash_t h = {i, los[l]};
            assert_int_equal(idset_add(s, h), 1);
        }
    assert_int_equal(idset_size(s), per * N_ELEMS(los));
    for (size_t l = 0; l < N_ELEMS(los); l++) {
        for (size_t i = 1; i <= per; i++) {
            idhash_t h = {i, los[l]};
            assert_true(idset_contains(s, h));
            assert_int_equal(idset_add(s, h), 0);
        }
        idhash_t absent = {per + 1, los[l]};
        assert_false(idset_contains(s, absent));
    }
    assert_int_equal(idset_size(s), per * N_ELEMS(los));
    idset_free(s);
}

/* One million random identities (with re-adds) across many doublings, compared with a sorted
 * array. */
static void test_growth_random(void **state)
{
    (void)state;
    rng_seed();
    const size_t n = 1000000;
    idhash_t *all = malloc(n * sizeof(*all));
    assert_non_null(all);
    idset_t *s = idset_new(0);
    assert_non_null(s);
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        /* One in eight adds repeats an earlier identity. */
        idhash_t h = (i > 0 && rng_next() % 8 == 0) ? all[rng_next() % i] : random_hash();
        all[i] = h;
        int rc = idset_add(s, h);
        assert_true(rc == 0 || rc == 1);
        added += (size_t)rc;
        if ((i & (i + 1)) == 0) /* at powers of two, i.e. around every resize */
            assert_int_equal(idset_size(s), added);
    }
    qsort(all, n, sizeof(*all), cmp_hash);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || cmp_hash(&all[i - 1], &all[i]) != 0)
            all[unique++] = all[i];
    assert_int_equal(idset_size(s), unique);
    assert_int_equal(added, unique);
    for (size_t i = 0; i < unique; i++)
        assert_true(idset_contains(s, all[i]));
    for (int i = 0; i < 200000; i++) {
        idhash_t h = random_hash();
        bool in = bsearch(&h, all, unique, sizeof(*all), cmp_hash) != NULL;
        assert_int_equal(idset_contains(s, h), in);
    }
    idset_free(s);
    free(all);
}

/* Presized sets behave like grown ones. */
static void test_presized(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 511, 512, 513, 100000};
    for (size_t k = 0; k < N_ELEMS(sizes); k++) {
        idset_t *s = idset_new(sizes[k]);
        assert_non_null(s);
        for (size_t i = 0; i < 5000; i++) {
            idhash_t h = {i * 0x9E3779B97F4A7C15ULL, i + 1};
            assert_int_equal(idset_add(s, h), 1);
        }
        assert_int_equal(idset_size(s), 5000);
        for (size_t i = 0; i < 5000; i++) {
            idhash_t h = {i * 0x9E3779B97F4A7C15ULL, i + 1};
            assert_true(idset_contains(s, h));
        }
        idset_free(s);
    }
}

/* The claim-time load: identities written as 16-byte uuids, read back into a fresh set. */
static void test_load_from_bytes(void **state)
{
    (void)state;
    rng_seed();
    const size_t n = 20000;
    uint8_t *bytes = malloc(n * 16);
    idhash_t *hs = malloc(n * sizeof(*hs));
    assert_non_null(bytes);
    assert_non_null(hs);
    for (size_t i = 0; i < n; i++) {
        char org[16], id[32];
        snprintf(org, sizeof(org), "org-%u", (unsigned)(rng_next() % 50));
        snprintf(id, sizeof(id), "evt-%zu", i);
        hs[i] = hash_s(org, id);
        idhash_to_bytes(hs[i], bytes + 16 * i);
    }
    idset_t *s = idset_new(n);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(idset_add(s, idhash_from_bytes(bytes + 16 * i)), 1);
    assert_int_equal(idset_size(s), n);
    for (size_t i = 0; i < n; i++) {
        assert_true(idset_contains(s, hs[i]));
        assert_int_equal(idset_add(s, hs[i]), 0);
    }
    assert_int_equal(idset_size(s), n);
    idset_free(s);
    free(hs);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_deterministic), cmocka_unit_test(test_hash_long_keys),
        cmocka_unit_test(test_hash_separation),    cmocka_unit_test(test_hash_never_zero),
        cmocka_unit_test(test_bytes_known),        cmocka_unit_test(test_bytes_round_trip),
        cmocka_unit_test(test_add_contains),       cmocka_unit_test(test_clusters_and_wrap),
        cmocka_unit_test(test_growth_random),      cmocka_unit_test(test_presized),
        cmocka_unit_test(test_load_from_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
