/*
 * test_part — unit tests of the per-partition state (daemon/part.c).
 *
 * Events are wire_event_t values built by hand from string views (no msgpack). Sealed batches
 * are checked by decoding their binary COPY rows with a small reader written here, so each
 * assertion is about the bytes the store will send to PostgreSQL: the applied_event_ids row
 * (checkpoint_id, end_offset, n, min_ts, max_ts, the identities as one bytea) and
 * cost_staging rows (13 fields). Expected costs are
 * worked out by hand in comments and cross-checked with pricing_cost_nanos.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "part.h"
#include "testcopy.h"
#include "testtiers.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define HOUR_MS    3600000LL

/* USD per 1M tokens → micro-USD per 1M: gpt-4o input 2500000, output 10000000, cache_read
 * 1250000, cache_write 0; claude input 3000000, output 15000000, cache_read 300000,
 * cache_write 3750000. */
static const char PRICES[] = "[openai/gpt-4o]\n"
                             "input = 2.50\n"
                             "output = 10.00\n"
                             "cache_read = 1.25\n"
                             "cache_write = 0\n"
                             "\n"
                             "[anthropic/claude-sonnet-4-5]\n"
                             "input = 3.00\n"
                             "output = 15.00\n"
                             "cache_read = 0.30\n"
                             "cache_write = 3.75\n";

static pricing_t *prices;
static tiers_t *tiers;

static int setup(void **state)
{
    (void)state;
    char err[256];
    if (pricing_parse(PRICES, strlen(PRICES), &prices, err, sizeof(err)) != 0) {
        fprintf(stderr, "price table: %s\n", err);
        return -1;
    }
    tiers = shipped_tiers();
    return tiers ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pricing_free(prices);
    tiers_free(tiers);
    return 0;
}

/* ---- building events -------------------------------------------------------------------- */

static wire_str_t S(const char *s)
{
    return (wire_str_t){s, s ? (uint32_t)strlen(s) : 0};
}

typedef struct {
    const char *org, *id, *project, *provider, *model;
    int64_t ts, in, out, cr, cw;
    bool byo;
} llm_t;

static wire_event_t llm(llm_t c)
{
    wire_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = WIRE_T_LLM_CALL;
    ev.v = 1;
    ev.ts = c.ts ? c.ts : 1700000000000LL;
    ev.id = S(c.id);
    ev.org = S(c.org);
    ev.project = S(c.project);
    ev.provider = S(c.provider ? c.provider : "openai");
    ev.model = S(c.model ? c.model : "gpt-4o");
    ev.input_tokens = c.in;
    ev.output_tokens = c.out;
    ev.cache_read_tokens = c.cr;
    ev.cache_write_tokens = c.cw;
    ev.byo = c.byo;
    return ev;
}

static wire_event_t other(wire_type_t t, const char *org, const char *id, int64_t ts)
{
    wire_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = t;
    ev.v = 1;
    ev.ts = ts;
    ev.id = S(id);
    ev.org = S(org);
    ev.count = 1;
    ev.project = S("proj");
    ev.run = S("run-1");
    ev.workflow = S("wf-1");
    ev.tier = S("pro");
    ev.workflows = 10;
    ev.integration = S("github");
    return ev;
}

static part_status_t apply_ok(part_t *p, int64_t offset, const wire_event_t *ev,
                              part_effects_t *eff)
{
    part_status_t st = (part_status_t)-1;
    part_effects_t dummy;
    assert_int_equal(part_apply(p, offset, ev, prices, tiers, &st, eff ? eff : &dummy), 0);
    return st;
}

static batch_t *seal_ok(part_t *p)
{
    bool oom = true;
    batch_t *b = part_seal(p, &oom);
    assert_false(oom);
    assert_non_null(b);
    return b;
}

static int64_t cost_of(const char *provider, const char *model, int64_t in, int64_t out, int64_t cr,
                       int64_t cw)
{
    const pricing_rate_t *r =
        pricing_lookup(prices, provider, strlen(provider), model, strlen(model));
    assert_non_null(r);
    return pricing_cost_nanos(r, in, out, cr, cw);
}

/* ---- reading COPY rows back ------------------------------------------------------------- */

/* A text field that must equal want. */
static void rd_text_is(reader_t *r, const char *want)
{
    size_t n = strlen(want);
    uint64_t len = rd_be(r, 4);
    if (len != n)
        print_error("text length %llu, want %zu (\"%s\")\n", (unsigned long long)len, n, want);
    assert_int_equal(len, n);
    assert_true((size_t)(r->end - r->p) >= n);
    assert_memory_equal(r->p, want, n);
    r->p += n;
}

/* The applied_event_ids row of a batch, up to its identities: the reader is left at the first
 * of the n 16-byte identities. */
static void rd_ids_row(reader_t *r, int32_t checkpoint_id, int64_t end_offset, int32_t n,
                       int64_t min_ts, int64_t max_ts)
{
    rd_row(r, 6);
    assert_int_equal(rd_int4(r), checkpoint_id);
    assert_int_equal(rd_int8(r), end_offset);
    assert_int_equal(rd_int4(r), n);
    assert_int_equal(rd_int8(r), min_ts);
    assert_int_equal(rd_int8(r), max_ts);
    assert_int_equal(rd_be(r, 4), 16 * (uint64_t)n);
    assert_true(r->end - r->p >= 16 * n);
}

/* The next identity: the hash of (org, id). */
static void rd_applied(reader_t *r, const char *org, const char *id)
{
    uint8_t want[16];
    idhash_to_bytes(idset_hash(org, strlen(org), id, strlen(id)), want);
    assert_true(r->end - r->p >= 16);
    assert_memory_equal(r->p, want, 16);
    r->p += 16;
}

typedef struct {
    const char *org, *project, *provider, *model;
    int64_t hour_ms;
    bool billable;
    int64_t calls, in, out, cr, cw, cost, unpriced;
} cost_row_t;

static void rd_cost(reader_t *r, const cost_row_t *w)
{
    rd_row(r, 13);
    rd_text_is(r, w->org);
    rd_text_is(r, w->project);
    rd_text_is(r, w->provider);
    rd_text_is(r, w->model);
    assert_int_equal(rd_ts(r), w->hour_ms);
    assert_int_equal(rd_bool(r), w->billable);
    assert_int_equal(rd_int8(r), w->calls);
    assert_int_equal(rd_int8(r), w->in);
    assert_int_equal(rd_int8(r), w->out);
    assert_int_equal(rd_int8(r), w->cr);
    assert_int_equal(rd_int8(r), w->cw);
    assert_int_equal(rd_int8(r), w->cost);
    assert_int_equal(rd_int8(r), w->unpriced);
}

static void assert_cost_rows(const batch_t *b, const cost_row_t *rows, size_t n)
{
    assert_int_equal(b->nrows[BATCH_COST], (int64_t)n);
    reader_t r = copy_reader(&b->rows[BATCH_COST]);
    for (size_t i = 0; i < n; i++)
        rd_cost(&r, &rows[i]);
    assert_ptr_equal(r.p, r.end);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_fresh(void **state)
{
    (void)state;
    part_t *p = part_new(3, 17, -1, 5);
    assert_non_null(p);
    assert_int_equal(part_partition(p), 3);
    assert_int_equal(part_checkpoint_id(p), 17);
    assert_int_equal(part_epoch(p), 5);
    assert_int_equal(part_next_offset(p), -1);
    assert_int_equal(part_committed_offset(p), -1);
    assert_int_equal(part_uncommitted(p), 0);
    assert_int_equal(part_unsealed(p), 0);
    assert_int_equal(part_known_ids(p), 0);
    static const int64_t offsets[] = {0, 1, 1000, INT64_MAX};
    for (size_t i = 0; i < N_ELEMS(offsets); i++)
        assert_false(part_is_stale(p, offsets[i]));
    bool oom = true;
    assert_null(part_seal(p, &oom));
    assert_false(oom);
    part_free(p);
    part_free(NULL);
    part_batch_free(NULL);
}

static void test_resumed_offset(void **state)
{
    (void)state;
    part_t *p = part_new(0, 1, 100, 2);
    assert_non_null(p);
    assert_int_equal(part_next_offset(p), 100);
    assert_int_equal(part_committed_offset(p), 100);
    static const struct {
        int64_t offset;
        bool stale;
    } cases[] = {{0, true}, {99, true}, {100, false}, {101, false}, {5000, false}};
    for (size_t i = 0; i < N_ELEMS(cases); i++)
        assert_int_equal(part_is_stale(p, cases[i].offset), cases[i].stale);
    /* The first batch after a resume expects the stored checkpoint. */
    wire_event_t ev = llm((llm_t){.org = "acme", .id = "e1", .in = 1});
    assert_int_equal(apply_ok(p, 100, &ev, NULL), PART_APPLIED);
    batch_t *b = seal_ok(p);
    assert_int_equal(b->expected_offset, 100);
    assert_int_equal(b->new_offset, 101);
    part_batch_free(b);
    part_free(p);
}

static void test_apply_duplicate_stale(void **state)
{
    (void)state;
    part_t *p = part_new(0, 9, -1, 1);
    assert_non_null(p);
    wire_event_t a = llm((llm_t){.org = "acme", .id = "e1", .in = 1000, .out = 500});
    wire_event_t dup = llm((llm_t){.org = "acme", .id = "e1", .in = 7, .out = 7});
    wire_event_t other_org = llm((llm_t){.org = "beta", .id = "e1", .in = 10});
    static const struct {
        int64_t offset;
        int which; /* 0 a, 1 dup, 2 other_org */
        part_status_t status;
        int64_t next;
        int64_t unsealed;
        size_t known;
    } steps[] = {
        {0, 0, PART_APPLIED, 1, 1, 1},   {1, 1, PART_DUPLICATE, 2, 2, 1},
        {2, 2, PART_APPLIED, 3, 3, 2},   {1, 0, PART_STALE, 3, 3, 2},
        {0, 2, PART_STALE, 3, 3, 2},     {2, 1, PART_STALE, 3, 3, 2},
        {3, 0, PART_DUPLICATE, 4, 4, 2}, {7, 2, PART_DUPLICATE, 8, 5, 2}, /* a gap is fine */
    };
    const wire_event_t *evs[3] = {&a, &dup, &other_org};
    for (size_t i = 0; i < N_ELEMS(steps); i++) {
        part_effects_t eff = {.unpriced = true};
        part_status_t st = apply_ok(p, steps[i].offset, evs[steps[i].which], &eff);
        if (st != steps[i].status)
            print_error("step %zu: status %d, want %d\n", i, st, steps[i].status);
        assert_int_equal(st, steps[i].status);
        assert_false(eff.unpriced);
        assert_int_equal(part_next_offset(p), steps[i].next);
        assert_int_equal(part_unsealed(p), steps[i].unsealed);
        assert_int_equal(part_uncommitted(p), steps[i].unsealed);
        assert_int_equal(part_known_ids(p), steps[i].known);
    }
    batch_t *b = seal_ok(p);
    assert_int_equal(b->messages, 5);
    assert_int_equal(b->applied, 2);
    assert_int_equal(b->nrows[BATCH_APPLIED], 1);
    assert_int_equal(b->expected_offset, -1);
    assert_int_equal(b->new_offset, 8);
    /* The duplicate's tokens are not counted. gpt-4o: 1000 × 2.5 + 500 × 10 = 7500 µUSD·M
     * → 7,500,000 nano-USD; beta: 10 × 2.5 = 25 → 25,000 nano-USD. */
    const cost_row_t rows[] = {
        {"acme", "", "openai", "gpt-4o", 1699999200000LL, true, 1, 1000, 500, 0, 0, 7500000, 0},
        {"beta", "", "openai", "gpt-4o", 1699999200000LL, true, 1, 10, 0, 0, 0, 25000, 0},
    };
    assert_int_equal(rows[0].cost, cost_of("openai", "gpt-4o", 1000, 500, 0, 0));
    assert_cost_rows(b, rows, N_ELEMS(rows));
    reader_t r = copy_reader(&b->rows[BATCH_APPLIED]);
    rd_ids_row(&r, 9, 8, 2, 1700000000000LL, 1700000000000LL);
    rd_applied(&r, "acme", "e1");
    rd_applied(&r, "beta", "e1");
    assert_ptr_equal(r.p, r.end);
    part_batch_free(b);
    part_free(p);
}

static void test_skip(void **state)
{
    (void)state;
    part_t *p = part_new(4, 2, -1, 1);
    assert_non_null(p);
    assert_int_equal(part_skip(p, 0), 0);
    assert_int_equal(part_skip(p, 1), 0);
    assert_int_equal(part_next_offset(p), 2);
    assert_int_equal(part_unsealed(p), 2);
    assert_int_equal(part_uncommitted(p), 2);
    assert_true(part_is_stale(p, 1));
    wire_event_t ev = llm((llm_t){.org = "acme", .id = "x"});
    assert_int_equal(apply_ok(p, 1, &ev, NULL), PART_STALE);
    assert_int_equal(part_known_ids(p), 0);
    batch_t *b = seal_ok(p);
    assert_int_equal(b->partition, 4);
    assert_int_equal(b->messages, 2);
    assert_int_equal(b->applied, 0);
    assert_int_equal(b->nrows[BATCH_APPLIED], 0);
    assert_int_equal(b->nrows[BATCH_COST], 0);
    assert_int_equal(b->rows[BATCH_APPLIED].len, 0);
    assert_int_equal(b->rows[BATCH_COST].len, 0);
    assert_int_equal(b->expected_offset, -1);
    assert_int_equal(b->new_offset, 2);
    assert_int_equal(part_unsealed(p), 0);
    assert_int_equal(part_uncommitted(p), 2);
    part_batch_free(b);
    part_free(p);
}

/* Stale applies change nothing: no batch appears when only stale messages arrive. */
static void test_stale_only_seals_nothing(void **state)
{
    (void)state;
    part_t *p = part_new(0, 1, 10, 1);
    assert_non_null(p);
    wire_event_t ev = llm((llm_t){.org = "acme", .id = "x", .in = 5});
    for (int64_t o = 0; o < 10; o++)
        assert_int_equal(apply_ok(p, o, &ev, NULL), PART_STALE);
    assert_int_equal(part_next_offset(p), 10);
    assert_int_equal(part_unsealed(p), 0);
    assert_int_equal(part_uncommitted(p), 0);
    assert_int_equal(part_known_ids(p), 0);
    bool oom = true;
    assert_null(part_seal(p, &oom));
    assert_false(oom);
    part_free(p);
}

static void test_seal_contents(void **state)
{
    (void)state;
    part_t *p = part_new(6, 42, -1, 7);
    assert_non_null(p);
    const int64_t h0 = 1700000000000LL - 1700000000000LL % HOUR_MS; /* 1699999200000 */
    static const struct {
        llm_t e;
        part_status_t st;
    } evs[] = {
        /* acme/p1/openai/gpt-4o, hour 0: two calls aggregate. */
        {{"acme", "1", "p1", "openai", "gpt-4o", 1700000000000LL, 1000, 500, 200, 0, false},
         PART_APPLIED},
        {{"acme", "2", "p1", "openai", "gpt-4o", 1700000000001LL, 3, 4, 5, 6, false}, PART_APPLIED},
        /* Same key but byo: not billable, a row of its own. */
        {{"acme", "3", "p1", "openai", "gpt-4o", 1700000000002LL, 100, 0, 0, 0, true},
         PART_APPLIED},
        /* Another provider and model. */
        {{"acme", "4", "p1", "anthropic", "claude-sonnet-4-5", 1700000000003LL, 10, 20, 30, 40,
          false},
         PART_APPLIED},
        /* A duplicate of "2" with other tokens: ignored. */
        {{"acme", "2", "p1", "openai", "gpt-4o", 1700000000004LL, 999, 999, 999, 999, false},
         PART_DUPLICATE},
        /* No project: "". */
        {{"acme", "5", NULL, "openai", "gpt-4o", 1700000000005LL, 1, 1, 1, 1, false}, PART_APPLIED},
        /* Empty project is the same key as no project. */
        {{"acme", "6", "", "openai", "gpt-4o", 1700000000006LL, 2, 2, 2, 2, false}, PART_APPLIED},
        /* Unknown model: cost 0, unpriced. */
        {{"acme", "7", "p1", "openai", "gpt-9", 1700000000007LL, 50, 60, 70, 80, false},
         PART_APPLIED},
        {{"acme", "8", "p1", "openai", "gpt-9", 1700000000008LL, 1, 0, 0, 0, false}, PART_APPLIED},
    };
    for (size_t i = 0; i < N_ELEMS(evs); i++) {
        wire_event_t ev = llm(evs[i].e);
        bool unpriced = evs[i].st == PART_APPLIED && !strcmp(evs[i].e.model, "gpt-9");
        part_effects_t eff = {.unpriced = !unpriced}; /* overwritten either way */
        part_status_t st = apply_ok(p, (int64_t)i + 10, &ev, &eff);
        if (st != evs[i].st)
            print_error("event %zu: status %d\n", i, st);
        assert_int_equal(st, evs[i].st);
        assert_int_equal(eff.unpriced, unpriced);
    }
    batch_t *b = seal_ok(p);
    assert_int_equal(b->partition, 6);
    assert_int_equal(b->checkpoint_id, 42);
    assert_int_equal(b->epoch, 7);
    assert_int_equal(b->expected_offset, -1);
    assert_int_equal(b->new_offset, 10 + (int64_t)N_ELEMS(evs));
    assert_int_equal(b->messages, N_ELEMS(evs));
    assert_int_equal(b->applied, N_ELEMS(evs) - 1);
    assert_int_equal(b->nrows[BATCH_APPLIED], 1);
    assert_false(b->fenced);

    /* gpt-4o call 1: 1000×2.5 + 500×10 + 200×1.25 = 2500 + 5000 + 250 = 7750 µUSD → 7,750,000
     * nUSD; call 2: (3×2500000 + 4×10000000 + 5×1250000) / 1000 = 53750 nUSD. */
    int64_t c1 = cost_of("openai", "gpt-4o", 1000, 500, 200, 0);
    int64_t c2 = cost_of("openai", "gpt-4o", 3, 4, 5, 6);
    assert_int_equal(c1, 7750000);
    assert_int_equal(c2, 53750);
    /* claude: (10×3000000 + 20×15000000 + 30×300000 + 40×3750000) / 1000
     *       = (30,000,000 + 300,000,000 + 9,000,000 + 150,000,000) / 1000 = 489,000 nUSD. */
    int64_t c4 = cost_of("anthropic", "claude-sonnet-4-5", 10, 20, 30, 40);
    assert_int_equal(c4, 489000);
    int64_t c5 = cost_of("openai", "gpt-4o", 1, 1, 1, 1);
    int64_t c6 = cost_of("openai", "gpt-4o", 2, 2, 2, 2);
    /* 1 token each: (2500000 + 10000000 + 1250000 + 0) / 1000 = 13750 nUSD; 2 tokens 27500. */
    assert_int_equal(c5, 13750);
    assert_int_equal(c6, 27500);
    const cost_row_t rows[] = {
        {"acme", "p1", "openai", "gpt-4o", h0, true, 2, 1003, 504, 205, 6, c1 + c2, 0},
        {"acme", "p1", "openai", "gpt-4o", h0, false, 1, 100, 0, 0, 0, 250000, 0},
        {"acme", "p1", "anthropic", "claude-sonnet-4-5", h0, true, 1, 10, 20, 30, 40, c4, 0},
        {"acme", "", "openai", "gpt-4o", h0, true, 2, 3, 3, 3, 3, c5 + c6, 0},
        {"acme", "p1", "openai", "gpt-9", h0, true, 2, 51, 60, 70, 80, 0, 2},
    };
    assert_cost_rows(b, rows, N_ELEMS(rows));

    reader_t r = copy_reader(&b->rows[BATCH_APPLIED]);
    /* The duplicate (ts ...004) is not among them; ts run from ...000 to ...008. */
    rd_ids_row(&r, 42, 10 + (int64_t)N_ELEMS(evs), (int32_t)N_ELEMS(evs) - 1, 1700000000000LL,
               1700000000008LL);
    for (size_t i = 0; i < N_ELEMS(evs); i++)
        if (evs[i].st == PART_APPLIED)
            rd_applied(&r, evs[i].e.org, evs[i].e.id);
    assert_ptr_equal(r.p, r.end);
    part_batch_free(b);

    /* The aggregates were handed over: an empty next seal. */
    bool oom = true;
    assert_null(part_seal(p, &oom));
    assert_false(oom);
    part_free(p);
}

/* The hour of a cost row is the UTC hour containing ts: [h, h + 3600000). */
static void test_hour_bucketing(void **state)
{
    (void)state;
    static const struct {
        int64_t ts, hour;
    } cases[] = {
        {1, 0},
        {3599999, 0},
        {3600000, 3600000},
        {3600001, 3600000},
        {7199999, 3600000},
        {7200000, 7200000},
        {946684800000LL, 946684800000LL},
        {1700000000000LL, 1699999200000LL},
        {32503680000000LL, 32503680000000LL}, /* WIRE_MAX_TS */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        part_t *p = part_new(0, 1, -1, 1);
        assert_non_null(p);
        wire_event_t ev = llm((llm_t){.org = "o", .id = "i", .ts = cases[i].ts, .in = 1});
        assert_int_equal(apply_ok(p, 0, &ev, NULL), PART_APPLIED);
        batch_t *b = seal_ok(p);
        const cost_row_t row = {"o", "", "openai", "gpt-4o", cases[i].hour, true, 1,
                                1,   0,  0,        0,        2500,          0};
        if (b->nrows[BATCH_COST] != 1)
            print_error("case ts %lld\n", (long long)cases[i].ts);
        assert_cost_rows(b, &row, 1);
        part_batch_free(b);
        part_free(p);
    }
    /* Both sides of an hour boundary in one batch: two rows, in order. */
    part_t *p = part_new(0, 1, -1, 1);
    assert_non_null(p);
    wire_event_t a = llm((llm_t){.org = "o", .id = "a", .ts = 3599999, .in = 1});
    wire_event_t b2 = llm((llm_t){.org = "o", .id = "b", .ts = 3600000, .in = 2});
    wire_event_t c = llm((llm_t){.org = "o", .id = "c", .ts = 1, .in = 4});
    assert_int_equal(apply_ok(p, 0, &a, NULL), PART_APPLIED);
    assert_int_equal(apply_ok(p, 1, &b2, NULL), PART_APPLIED);
    assert_int_equal(apply_ok(p, 2, &c, NULL), PART_APPLIED);
    batch_t *b = seal_ok(p);
    const cost_row_t rows[] = {
        {"o", "", "openai", "gpt-4o", 0, true, 2, 5, 0, 0, 0, 12500, 0},
        {"o", "", "openai", "gpt-4o", 3600000, true, 1, 2, 0, 0, 0, 5000, 0},
    };
    assert_cost_rows(b, rows, N_ELEMS(rows));
    part_batch_free(b);
    part_free(p);
}

static void test_unpriced(void **state)
{
    (void)state;
    static const struct {
        const char *provider, *model;
        bool unpriced;
    } cases[] = {
        {"openai", "gpt-4o", false},
        {"openai", "gpt-4", true},  /* prefix of a known model */
        {"openai", "GPT-4o", true}, /* case-sensitive */
        {"azure", "gpt-4o", true},  /* known model, other provider */
        {"anthropic", "claude-sonnet-4-5", false},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        bool unpriced = cases[i].unpriced;
        part_t *p = part_new(0, 1, -1, 1);
        assert_non_null(p);
        wire_event_t ev = llm((llm_t){.org = "o",
                                      .id = "i",
                                      .provider = cases[i].provider,
                                      .model = cases[i].model,
                                      .in = 1000,
                                      .out = 1000});
        part_effects_t eff = {.unpriced = !unpriced};
        assert_int_equal(apply_ok(p, 0, &ev, &eff), PART_APPLIED);
        if (eff.unpriced != unpriced)
            print_error("case %s/%s\n", cases[i].provider, cases[i].model);
        assert_int_equal(eff.unpriced, unpriced);
        /* A duplicate of an unpriced call reports no effect. */
        assert_int_equal(apply_ok(p, 1, &ev, &eff), PART_DUPLICATE);
        assert_false(eff.unpriced);
        batch_t *b = seal_ok(p);
        int64_t cost = unpriced ? 0 : cost_of(cases[i].provider, cases[i].model, 1000, 1000, 0, 0);
        const cost_row_t row = {
            "o", "",   cases[i].provider, cases[i].model, 1699999200000LL, true, 1, 1000, 1000, 0,
            0,   cost, unpriced ? 1 : 0};
        assert_cost_rows(b, &row, 1);
        part_batch_free(b);
        part_free(p);
    }
}

/* Types other than llm.call are applied (their identity is kept) but have no cost. */
static void test_other_types(void **state)
{
    (void)state;
    for (int t = 0; t < WIRE_T_COUNT; t++) {
        if (t == WIRE_T_LLM_CALL)
            continue;
        part_t *p = part_new(0, 5, -1, 1);
        assert_non_null(p);
        wire_event_t ev = other((wire_type_t)t, "acme", "evt", 1234);
        part_effects_t eff = {.unpriced = true};
        part_status_t st = apply_ok(p, 0, &ev, &eff);
        if (st != PART_APPLIED)
            print_error("type %s: status %d\n", wire_type_name((wire_type_t)t), st);
        assert_int_equal(st, PART_APPLIED);
        assert_false(eff.unpriced);
        assert_int_equal(apply_ok(p, 1, &ev, &eff), PART_DUPLICATE);
        /* The identity is shared across types: an llm.call with the same id is a duplicate. */
        wire_event_t call = llm((llm_t){.org = "acme", .id = "evt", .in = 5});
        assert_int_equal(apply_ok(p, 2, &call, &eff), PART_DUPLICATE);
        batch_t *b = seal_ok(p);
        assert_int_equal(b->messages, 3);
        assert_int_equal(b->applied, 1);
        assert_int_equal(b->nrows[BATCH_COST], 0);
        assert_int_equal(b->rows[BATCH_COST].len, 0);
        assert_int_equal(b->nrows[BATCH_APPLIED], 1);
        reader_t r = copy_reader(&b->rows[BATCH_APPLIED]);
        rd_ids_row(&r, 5, b->new_offset, 1, 1234, 1234);
        rd_applied(&r, "acme", "evt");
        assert_ptr_equal(r.p, r.end);
        part_batch_free(b);
        part_free(p);
    }
}

static void test_seal_chain_and_commit(void **state)
{
    (void)state;
    part_t *p = part_new(1, 3, -1, 1);
    assert_non_null(p);
    char id[16];
    int64_t off = 0;
    /* Batch 1: offsets 0..2 (one skipped). */
    for (; off < 3; off++) {
        if (off == 1) {
            assert_int_equal(part_skip(p, off), 0);
            continue;
        }
        snprintf(id, sizeof(id), "e%lld", (long long)off);
        wire_event_t ev = llm((llm_t){.org = "o", .id = id, .in = 1});
        assert_int_equal(apply_ok(p, off, &ev, NULL), PART_APPLIED);
    }
    batch_t *b1 = seal_ok(p);
    assert_int_equal(b1->expected_offset, -1);
    assert_int_equal(b1->new_offset, 3);
    assert_int_equal(b1->messages, 3);
    assert_int_equal(b1->applied, 2);
    assert_int_equal(part_unsealed(p), 0);
    assert_int_equal(part_uncommitted(p), 3);
    assert_int_equal(part_committed_offset(p), -1);

    /* Batch 2 while batch 1 is in flight: offsets jump to 10..13. */
    for (off = 10; off < 14; off++) {
        snprintf(id, sizeof(id), "e%lld", (long long)off);
        wire_event_t ev = llm((llm_t){.org = "o", .id = id, .in = 1});
        assert_int_equal(apply_ok(p, off, &ev, NULL), PART_APPLIED);
    }
    assert_int_equal(part_unsealed(p), 4);
    assert_int_equal(part_uncommitted(p), 7);
    batch_t *b2 = seal_ok(p);
    assert_int_equal(b2->expected_offset, b1->new_offset);
    assert_int_equal(b2->new_offset, 14);
    assert_int_equal(b2->messages, 4);
    assert_int_equal(b2->nrows[BATCH_COST], 1);

    part_commit(p, b1);
    assert_int_equal(part_committed_offset(p), 3);
    assert_int_equal(part_uncommitted(p), 4);
    assert_int_equal(part_next_offset(p), 14);
    part_batch_free(b1);

    /* Batch 3: one more message, then commit batch 2 and 3. */
    assert_int_equal(part_skip(p, 14), 0);
    batch_t *b3 = seal_ok(p);
    assert_int_equal(b3->expected_offset, 14);
    assert_int_equal(b3->new_offset, 15);
    assert_int_equal(b3->applied, 0);
    part_commit(p, b2);
    assert_int_equal(part_committed_offset(p), 14);
    assert_int_equal(part_uncommitted(p), 1);
    part_commit(p, b3);
    assert_int_equal(part_committed_offset(p), 15);
    assert_int_equal(part_uncommitted(p), 0);
    part_batch_free(b2);
    part_batch_free(b3);

    /* Identities survive seals: the first event is still a duplicate. */
    wire_event_t again = llm((llm_t){.org = "o", .id = "e0", .in = 1});
    assert_int_equal(apply_ok(p, 15, &again, NULL), PART_DUPLICATE);
    assert_int_equal(part_known_ids(p), 6);
    part_free(p); /* frees the pending batch too */
}

static void test_load_ids(void **state)
{
    (void)state;
    static const struct {
        const char *org, *id;
    } loaded[] = {{"acme", "1"}, {"acme", "2"}, {"beta", "1"}};
    uint8_t bytes[N_ELEMS(loaded) * 16];
    for (size_t i = 0; i < N_ELEMS(loaded); i++)
        idhash_to_bytes(
            idset_hash(loaded[i].org, strlen(loaded[i].org), loaded[i].id, strlen(loaded[i].id)),
            bytes + 16 * i);
    part_t *p = part_new(0, 1, 50, 2);
    assert_non_null(p);
    assert_int_equal(part_load_ids(p, bytes, 0), 0);
    assert_int_equal(part_known_ids(p), 0);
    assert_int_equal(part_load_ids(p, bytes, N_ELEMS(loaded)), 0);
    assert_int_equal(part_known_ids(p), 3);
    assert_int_equal(part_load_ids(p, bytes, N_ELEMS(loaded)), 0); /* idempotent */
    assert_int_equal(part_known_ids(p), 3);
    static const struct {
        const char *org, *id;
        part_status_t st;
    } cases[] = {
        {"acme", "1", PART_DUPLICATE}, {"acme", "2", PART_DUPLICATE}, {"beta", "1", PART_DUPLICATE},
        {"beta", "2", PART_APPLIED},   {"acme", "3", PART_APPLIED},   {"acme", "3", PART_DUPLICATE},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        wire_event_t ev = llm((llm_t){.org = cases[i].org, .id = cases[i].id, .in = 1});
        assert_int_equal(apply_ok(p, 50 + (int64_t)i, &ev, NULL), cases[i].st);
    }
    assert_int_equal(part_known_ids(p), 5);
    batch_t *b = seal_ok(p);
    assert_int_equal(b->applied, 2);
    assert_int_equal(b->messages, 6);
    assert_int_equal(b->expected_offset, 50);
    assert_int_equal(b->new_offset, 56);
    part_batch_free(b);
    part_free(p);
}

static void test_set_epoch(void **state)
{
    (void)state;
    part_t *p = part_new(2, 8, 20, 4);
    assert_non_null(p);
    wire_event_t ev = llm((llm_t){.org = "o", .id = "x", .in = 1});
    assert_int_equal(apply_ok(p, 20, &ev, NULL), PART_APPLIED);
    part_set_epoch(p, 5);
    assert_int_equal(part_epoch(p), 5);
    /* Pending work is kept across a re-claim and sealed under the new epoch. */
    assert_int_equal(part_unsealed(p), 1);
    assert_int_equal(part_next_offset(p), 21);
    batch_t *b = seal_ok(p);
    assert_int_equal(b->epoch, 5);
    assert_int_equal(b->checkpoint_id, 8);
    assert_int_equal(b->expected_offset, 20);
    assert_int_equal(b->new_offset, 21);
    part_batch_free(b);
    part_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh),
        cmocka_unit_test(test_resumed_offset),
        cmocka_unit_test(test_apply_duplicate_stale),
        cmocka_unit_test(test_skip),
        cmocka_unit_test(test_stale_only_seals_nothing),
        cmocka_unit_test(test_seal_contents),
        cmocka_unit_test(test_hour_bucketing),
        cmocka_unit_test(test_unpriced),
        cmocka_unit_test(test_other_types),
        cmocka_unit_test(test_seal_chain_and_commit),
        cmocka_unit_test(test_load_ids),
        cmocka_unit_test(test_set_epoch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
