/*
 * test_costagg — unit tests of the cost aggregation map (daemon/costagg.c).
 *
 * Keys are built from a base key with one field changed per table row, so every key field is
 * shown to separate aggregates. The randomized test draws keys from a numbered key space whose
 * fields are derived from the key number, so the naive aggregation it is compared with is an
 * array indexed by key number: no hashing shared with the code under test. It prints its seed;
 * METERD_TEST_SEED=<n> replays it.
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

#include "costagg.h"
#include "testrng.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define HOUR_MS    3600000LL

/* ---- helpers ------------------------------------------------------------------------------ */

static costagg_key_t key(const char *org, const char *project, const char *provider,
                         const char *model, int64_t hour_ms, bool billable)
{
    return (costagg_key_t){
        .org = org,
        .org_len = (uint32_t)strlen(org),
        .project = project,
        .project_len = (uint32_t)strlen(project),
        .provider = provider,
        .provider_len = (uint32_t)strlen(provider),
        .model = model,
        .model_len = (uint32_t)strlen(model),
        .hour_ms = hour_ms,
        .billable = billable,
    };
}

static costagg_vals_t one_call(int64_t scale)
{
    /* Distinct per field, so that a value added to the wrong field shows. */
    return (costagg_vals_t){
        .calls = 1,
        .input_tokens = 2 * scale,
        .output_tokens = 3 * scale,
        .cache_read_tokens = 5 * scale,
        .cache_write_tokens = 7 * scale,
        .cost_nanos = 11 * scale,
        .unpriced_calls = scale % 2,
    };
}

static void assert_vals(const costagg_vals_t *got, const costagg_vals_t *want)
{
    assert_int_equal(got->calls, want->calls);
    assert_int_equal(got->input_tokens, want->input_tokens);
    assert_int_equal(got->output_tokens, want->output_tokens);
    assert_int_equal(got->cache_read_tokens, want->cache_read_tokens);
    assert_int_equal(got->cache_write_tokens, want->cache_write_tokens);
    assert_int_equal(got->cost_nanos, want->cost_nanos);
    assert_int_equal(got->unpriced_calls, want->unpriced_calls);
}

/* An entry's key equals k, and its strings are NUL-terminated copies. */
static void assert_entry_key(const costagg_entry_t *e, const costagg_key_t *k)
{
    assert_non_null(e);
    const char *es[4] = {e->org, e->project, e->provider, e->model};
    const uint32_t el[4] = {e->org_len, e->project_len, e->provider_len, e->model_len};
    const char *ks[4] = {k->org, k->project, k->provider, k->model};
    const uint32_t kl[4] = {k->org_len, k->project_len, k->provider_len, k->model_len};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(el[i], kl[i]);
        assert_memory_equal(es[i], ks[i], kl[i]);
        assert_int_equal(es[i][kl[i]], '\0');
        assert_int_equal(strlen(es[i]), kl[i]);
    }
    assert_int_equal(e->hour_ms, k->hour_ms);
    assert_int_equal(e->billable, k->billable);
}

static void add_ok(costagg_t *a, const costagg_key_t *k, const costagg_vals_t *v)
{
    assert_int_equal(costagg_add(a, k, v), 0);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_empty(void **state)
{
    (void)state;
    costagg_t *a = costagg_new();
    assert_non_null(a);
    assert_int_equal(costagg_count(a), 0);
    assert_null(costagg_at(a, 0));
    costagg_clear(a);
    assert_int_equal(costagg_count(a), 0);
    costagg_free(a);
    costagg_free(NULL);
}

static void test_same_key_sums(void **state)
{
    (void)state;
    costagg_t *a = costagg_new();
    assert_non_null(a);
    costagg_key_t k = key("acme", "proj", "openai", "gpt-4o", 7 * HOUR_MS, true);
    costagg_vals_t v1 = one_call(1), v2 = one_call(10), v3 = one_call(100);
    add_ok(a, &k, &v1);
    add_ok(a, &k, &v2);
    /* The same key through different buffers is the same aggregate. */
    char org[] = "acme", proj[] = "proj", prov[] = "openai", model[] = "gpt-4o";
    costagg_key_t k2 = key(org, proj, prov, model, 7 * HOUR_MS, true);
    add_ok(a, &k2, &v3);
    assert_int_equal(costagg_count(a), 1);
    costagg_vals_t want = {
        .calls = 3,
        .input_tokens = 222,
        .output_tokens = 333,
        .cache_read_tokens = 555,
        .cache_write_tokens = 777,
        .cost_nanos = 1221,
        .unpriced_calls = 1,
    };
    const costagg_entry_t *e = costagg_at(a, 0);
    assert_entry_key(e, &k);
    assert_vals(&e->v, &want);
    assert_null(costagg_at(a, 1));

    /* Negative and large values are summed as given. */
    costagg_vals_t big = {1, INT64_C(1) << 40, 0, 0, 0, -5, 0};
    add_ok(a, &k, &big);
    e = costagg_at(a, 0);
    assert_int_equal(e->v.calls, 4);
    assert_int_equal(e->v.input_tokens, 222 + (INT64_C(1) << 40));
    assert_int_equal(e->v.cost_nanos, 1216);
    costagg_free(a);
}

/* Keys differing from the base in exactly one field, or with the same bytes split differently
 * between fields, are separate aggregates. */
static void test_key_fields_separate(void **state)
{
    (void)state;
    const costagg_key_t base = key("ab", "c", "openai", "gpt-4o", 5 * HOUR_MS, true);
    static const struct {
        const char *name;
        const char *org, *project, *provider, *model;
        int64_t hour_ms;
        bool billable;
    } cases[] = {
        {"org", "ax", "c", "openai", "gpt-4o", 5 * HOUR_MS, true},
        {"org prefix", "a", "c", "openai", "gpt-4o", 5 * HOUR_MS, true},
        {"org longer", "abc", "c", "openai", "gpt-4o", 5 * HOUR_MS, true},
        {"project", "ab", "d", "openai", "gpt-4o", 5 * HOUR_MS, true},
        {"project empty", "ab", "", "openai", "gpt-4o", 5 * HOUR_MS, true},
        {"provider", "ab", "c", "anthropic", "gpt-4o", 5 * HOUR_MS, true},
        {"model", "ab", "c", "openai", "gpt-4o-mini", 5 * HOUR_MS, true},
        {"hour", "ab", "c", "openai", "gpt-4o", 6 * HOUR_MS, true},
        {"hour by 1 ms", "ab", "c", "openai", "gpt-4o", 5 * HOUR_MS + 1, true},
        {"billable", "ab", "c", "openai", "gpt-4o", 5 * HOUR_MS, false},
        {"org/project shift", "a", "bc", "openai", "gpt-4o", 5 * HOUR_MS, true},
        {"org/project shift 2", "abc", "", "openai", "gpt-4o", 5 * HOUR_MS, true},
        {"project/provider shift", "ab", "co", "penai", "gpt-4o", 5 * HOUR_MS, true},
        {"provider/model shift", "ab", "c", "openaig", "pt-4o", 5 * HOUR_MS, true},
        {"provider/model shift 2", "ab", "c", "opena", "igpt-4o", 5 * HOUR_MS, true},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        costagg_t *a = costagg_new();
        assert_non_null(a);
        costagg_key_t other = key(cases[i].org, cases[i].project, cases[i].provider, cases[i].model,
                                  cases[i].hour_ms, cases[i].billable);
        costagg_vals_t v1 = one_call(1), v2 = one_call(2);
        add_ok(a, &base, &v1);
        add_ok(a, &other, &v2);
        add_ok(a, &base, &v1);
        if (costagg_count(a) != 2)
            print_error("case \"%s\": %zu aggregates\n", cases[i].name, costagg_count(a));
        assert_int_equal(costagg_count(a), 2);
        assert_entry_key(costagg_at(a, 0), &base);
        assert_entry_key(costagg_at(a, 1), &other);
        costagg_vals_t want0 = one_call(2);
        want0.calls = 2;
        want0.unpriced_calls = 2;
        assert_vals(&costagg_at(a, 0)->v, &want0);
        assert_vals(&costagg_at(a, 1)->v, &v2);
        costagg_free(a);
    }
}

/* Keys longer than costagg's 512-byte hashing buffer take the piecewise hash path. */
static void test_long_keys(void **state)
{
    (void)state;
    static char s1[400], s2[400];
    memset(s1, 'a', sizeof(s1) - 1);
    memset(s2, 'a', sizeof(s2) - 1);
    s2[sizeof(s2) - 2] = 'b'; /* differs in the last byte only */
    costagg_t *a = costagg_new();
    assert_non_null(a);
    costagg_key_t k1 = key(s1, s1, "p", "m", 0, true);
    costagg_key_t k2 = key(s1, s2, "p", "m", 0, true);
    costagg_key_t k3 = key(s1, s1, "p", "m", HOUR_MS, true);
    costagg_key_t k4 = key(s1, s1, "p", "m", 0, false);
    costagg_vals_t v = one_call(1);
    add_ok(a, &k1, &v);
    add_ok(a, &k2, &v);
    add_ok(a, &k3, &v);
    add_ok(a, &k4, &v);
    add_ok(a, &k1, &v);
    assert_int_equal(costagg_count(a), 4);
    assert_entry_key(costagg_at(a, 0), &k1);
    assert_entry_key(costagg_at(a, 1), &k2);
    assert_entry_key(costagg_at(a, 2), &k3);
    assert_entry_key(costagg_at(a, 3), &k4);
    assert_int_equal(costagg_at(a, 0)->v.calls, 2);
    assert_int_equal(costagg_at(a, 1)->v.calls, 1);
    costagg_free(a);
}

static void test_insertion_order(void **state)
{
    (void)state;
    static const char *const orgs[] = {"zeta", "alpha", "mid", "beta", "a", "zz", "m2", "b1"};
    costagg_t *a = costagg_new();
    assert_non_null(a);
    costagg_vals_t v = one_call(1);
    for (size_t i = 0; i < N_ELEMS(orgs); i++) {
        costagg_key_t k = key(orgs[i], "", "openai", "gpt-4o", 0, true);
        add_ok(a, &k, &v);
    }
    /* Adding again in reverse order does not reorder. */
    for (size_t i = N_ELEMS(orgs); i-- > 0;) {
        costagg_key_t k = key(orgs[i], "", "openai", "gpt-4o", 0, true);
        add_ok(a, &k, &v);
    }
    assert_int_equal(costagg_count(a), N_ELEMS(orgs));
    for (size_t i = 0; i < N_ELEMS(orgs); i++) {
        assert_string_equal(costagg_at(a, i)->org, orgs[i]);
        assert_int_equal(costagg_at(a, i)->v.calls, 2);
    }
    costagg_free(a);
}

/* The costagg copies the key: the caller's buffers may change or die after the add. */
static void test_strings_are_copies(void **state)
{
    (void)state;
    char buf[64];
    memcpy(buf, "org-1|proj-1|openai|gpt-4o|TAIL", 32);
    costagg_key_t k = {
        .org = buf,
        .org_len = 5,
        .project = buf + 6,
        .project_len = 6,
        .provider = buf + 13,
        .provider_len = 6,
        .model = buf + 20,
        .model_len = 6,
        .hour_ms = 0,
        .billable = true,
    };
    costagg_t *a = costagg_new();
    assert_non_null(a);
    costagg_vals_t v = one_call(1);
    add_ok(a, &k, &v);
    memset(buf, 'X', sizeof(buf));
    const costagg_entry_t *e = costagg_at(a, 0);
    assert_string_equal(e->org, "org-1");
    assert_string_equal(e->project, "proj-1");
    assert_string_equal(e->provider, "openai");
    assert_string_equal(e->model, "gpt-4o");
    assert_true(e->org < buf || e->org >= buf + sizeof(buf));
    /* The mutated buffer is now another key. */
    add_ok(a, &k, &v);
    assert_int_equal(costagg_count(a), 2);
    assert_string_equal(costagg_at(a, 1)->org, "XXXXX");
    assert_string_equal(costagg_at(a, 0)->org, "org-1");
    costagg_free(a);
}

static void test_clear_reuse(void **state)
{
    (void)state;
    costagg_t *a = costagg_new();
    assert_non_null(a);
    costagg_key_t k1 = key("o1", "p", "openai", "gpt-4o", 0, true);
    costagg_key_t k2 = key("o2", "p", "openai", "gpt-4o", 0, true);
    costagg_vals_t v = one_call(3);
    for (int round = 0; round < 3; round++) {
        /* Enough keys to grow the index in the first round. */
        for (int i = 0; i < 1000; i++) {
            char org[16];
            snprintf(org, sizeof(org), "bulk-%d", i);
            costagg_key_t k = key(org, "", "p", "m", 0, false);
            add_ok(a, &k, &v);
        }
        add_ok(a, &k2, &v);
        add_ok(a, &k1, &v);
        add_ok(a, &k2, &v);
        assert_int_equal(costagg_count(a), 1002);
        assert_entry_key(costagg_at(a, 1000), &k2);
        assert_entry_key(costagg_at(a, 1001), &k1);
        assert_int_equal(costagg_at(a, 1000)->v.calls, 2); /* not carried over from a round */
        assert_int_equal(costagg_at(a, 1000)->v.input_tokens, 12);
        assert_int_equal(costagg_at(a, 1001)->v.calls, 1);
        assert_int_equal(costagg_at(a, 0)->v.calls, 1);
        costagg_clear(a);
        assert_int_equal(costagg_count(a), 0);
        assert_null(costagg_at(a, 0));
    }
    costagg_free(a);
}

/* ---- randomized, against a naive aggregation -------------------------------------------- */

#define KS_ORGS  4000
#define KS_SHAPE 48 /* 3 projects × 2 providers × 2 models × 2 hours × 2 billable */
#define KS_KEYS  (KS_ORGS * KS_SHAPE)

typedef struct {
    char org[16], project[8], provider[16], model[24];
    int64_t hour_ms;
    bool billable;
} key_fields_t;

/* Key number → fields, injective. Org names vary in length so that adjacent fields shift. */
static void key_of(uint32_t n, key_fields_t *f)
{
    static const char *const projects[] = {"", "p1", "p12"};
    static const char *const providers[] = {"openai", "openai1"};
    static const char *const models[] = {"gpt-4o", "1gpt-4o"};
    uint32_t o = n / KS_SHAPE, r = n % KS_SHAPE;
    snprintf(f->org, sizeof(f->org), "o%u", o);
    snprintf(f->project, sizeof(f->project), "%s", projects[r % 3]);
    snprintf(f->provider, sizeof(f->provider), "%s", providers[(r / 3) % 2]);
    snprintf(f->model, sizeof(f->model), "%s", models[(r / 6) % 2]);
    f->hour_ms = ((r / 12) % 2) * HOUR_MS + 1000 * HOUR_MS;
    f->billable = (r / 24) % 2;
}

static void test_random_vs_naive(void **state)
{
    (void)state;
    rng_seed();
    costagg_vals_t *naive = calloc(KS_KEYS, sizeof(*naive));
    int32_t *first = malloc(KS_KEYS * sizeof(*first));  /* key number → order of first add */
    uint32_t *order = malloc(KS_KEYS * sizeof(*order)); /* order → key number */
    assert_non_null(naive);
    assert_non_null(first);
    assert_non_null(order);
    for (size_t i = 0; i < KS_KEYS; i++)
        first[i] = -1;
    size_t distinct = 0;
    costagg_t *a = costagg_new();
    assert_non_null(a);
    for (int i = 0; i < 400000; i++) {
        /* Skewed: half of the adds go to the first 2% of the key space. */
        uint32_t n =
            (uint32_t)(rng_next() % 2 ? rng_next() % (KS_KEYS / 50) : rng_next() % KS_KEYS);
        key_fields_t f;
        key_of(n, &f);
        costagg_key_t k = key(f.org, f.project, f.provider, f.model, f.hour_ms, f.billable);
        costagg_vals_t v = {
            .calls = 1,
            .input_tokens = (int64_t)(rng_next() % 1000000),
            .output_tokens = (int64_t)(rng_next() % 100000),
            .cache_read_tokens = (int64_t)(rng_next() % 50000),
            .cache_write_tokens = (int64_t)(rng_next() % 5000),
            .cost_nanos = (int64_t)(rng_next() % 1000000000),
            .unpriced_calls = (int64_t)(rng_next() % 2),
        };
        add_ok(a, &k, &v);
        if (first[n] < 0) {
            first[n] = (int32_t)distinct;
            order[distinct++] = n;
        }
        costagg_vals_t *s = &naive[n];
        s->calls += v.calls;
        s->input_tokens += v.input_tokens;
        s->output_tokens += v.output_tokens;
        s->cache_read_tokens += v.cache_read_tokens;
        s->cache_write_tokens += v.cache_write_tokens;
        s->cost_nanos += v.cost_nanos;
        s->unpriced_calls += v.unpriced_calls;
    }
    printf("distinct keys: %zu\n", distinct);
    assert_true(distinct > 100000);
    assert_int_equal(costagg_count(a), distinct);
    for (size_t i = 0; i < distinct; i++) {
        key_fields_t f;
        key_of(order[i], &f);
        costagg_key_t k = key(f.org, f.project, f.provider, f.model, f.hour_ms, f.billable);
        const costagg_entry_t *e = costagg_at(a, i);
        assert_entry_key(e, &k);
        assert_vals(&e->v, &naive[order[i]]);
    }
    costagg_free(a);
    free(order);
    free(first);
    free(naive);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_same_key_sums),
        cmocka_unit_test(test_key_fields_separate),
        cmocka_unit_test(test_long_keys),
        cmocka_unit_test(test_insertion_order),
        cmocka_unit_test(test_strings_are_copies),
        cmocka_unit_test(test_clear_reuse),
        cmocka_unit_test(test_random_vs_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
