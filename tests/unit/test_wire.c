/*
 * test_wire — unit tests of the wire decoder (daemon/wire.c).
 *
 * Events are built with msgpack-c's packer from small tables of key/value pairs: a base event
 * per type plus overrides (replace a key, delete it, add it twice, add raw msgpack bytes), so
 * that each refusal case is one table row naming the expected code and field. Hostile byte
 * shapes that the packer cannot produce (forged headers, truncation, nesting) are written out
 * as literal bytes. The randomized mutation test prints its seed; METERD_TEST_SEED=<n> replays it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <msgpack.h>
#include <xxhash.h>

#include "wire.h"

/* ---- building events -------------------------------------------------------------------- */

enum {
    V_END = 0,
    V_INT,   /* signed integer, packed in the smallest form */
    V_UINT,  /* unsigned 64-bit integer */
    V_STR,   /* s[0..n) */
    V_BIN,   /* s[0..n) as bin */
    V_BOOL,  /* i != 0 */
    V_NIL,   /* nil */
    V_FLOAT, /* d */
    V_INTS,  /* array of ints[0..n) */
    V_RAW,   /* the value is the raw msgpack bytes s[0..n) */
    V_RAWKV, /* key and value are the raw msgpack bytes s[0..n); key is only a label */
    V_DEL,   /* override: remove the key from the base event */
};

typedef struct {
    const char *key;
    int kind;
    int64_t i;
    uint64_t u;
    double d;
    const char *s;
    size_t n;
    const int64_t *ints;
    bool dup; /* override: add the key again instead of replacing it */
} kv_t;

/* clang-format off */
#define KI(k, v)         {.key = (k), .kind = V_INT, .i = (v)}
#define KU(k, v)         {.key = (k), .kind = V_UINT, .u = (v)}
#define KS(k, v)         {.key = (k), .kind = V_STR, .s = (v), .n = sizeof(v) - 1}
#define KSN(k, p, len)   {.key = (k), .kind = V_STR, .s = (p), .n = (len)}
#define KBIN(k, v)       {.key = (k), .kind = V_BIN, .s = (v), .n = sizeof(v) - 1}
#define KB(k, v)         {.key = (k), .kind = V_BOOL, .i = (v)}
#define KNIL(k)          {.key = (k), .kind = V_NIL}
#define KF(k, v)         {.key = (k), .kind = V_FLOAT, .d = (v)}
#define KARR(k, ...)     {.key = (k), .kind = V_INTS, .ints = (const int64_t[]){__VA_ARGS__}, \
                          .n = sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)}
#define KEMPTYARR(k)     {.key = (k), .kind = V_INTS, .ints = NULL, .n = 0}
#define KRAW(k, v)       {.key = (k), .kind = V_RAW, .s = (v), .n = sizeof(v) - 1}
#define KRAWKV(label, v) {.key = (label), .kind = V_RAWKV, .s = (v), .n = sizeof(v) - 1, .dup = true}
#define KDEL(k)          {.key = (k), .kind = V_DEL}
#define KDUPS(k, v)      {.key = (k), .kind = V_STR, .s = (v), .n = sizeof(v) - 1, .dup = true}
#define KDUPI(k, v)      {.key = (k), .kind = V_INT, .i = (v), .dup = true}
#define KDUPNIL(k)       {.key = (k), .kind = V_NIL, .dup = true}
#define KEND             {.key = NULL, .kind = V_END}
/* clang-format on */

#define ENVELOPE(t)                                                                                \
    KI("v", 1), KS("id", "6f1c2a9e-8d4b-4c3e-9a7f-0e5d1b2c3a4f"), KS("type", t),                   \
        KS("org", "org-42"), KI("ts", 1767225600000LL)

static const kv_t ev_workflow_started[] = {ENVELOPE("workflow.started"), KS("project", "proj-1"),
                                           KS("workflow", "wf-1"), KS("complexity", "large"), KEND};
static const kv_t ev_workflow_finished[] = {ENVELOPE("workflow.finished"), KS("workflow", "wf-1"),
                                            KS("status", "failed"), KS("project", "proj-1"), KEND};
static const kv_t ev_agent_requested[] = {ENVELOPE("agent.requested"), KS("project", "proj-1"),
                                          KS("run", "run-7"), KS("workflow", "wf-1"), KEND};
static const kv_t ev_agent_finished[] = {ENVELOPE("agent.finished"), KS("run", "run-7"), KEND};
static const kv_t ev_agent_cancelled[] = {ENVELOPE("agent.cancelled"), KS("run", "run-7"),
                                          KS("project", "proj-1"), KEND};
/* The typical 12-field llm.call. */
static const kv_t ev_llm_call[] = {ENVELOPE("llm.call"),
                                   KS("project", "proj-1"),
                                   KS("provider", "anthropic"),
                                   KS("model", "claude-sonnet-4-5"),
                                   KI("input_tokens", 1200),
                                   KI("output_tokens", 350),
                                   KI("cache_read_tokens", 5000),
                                   KI("cache_write_tokens", 0),
                                   KEND};
static const kv_t ev_api_call[] = {ENVELOPE("api.call"), KS("integration", "github"),
                                   KI("count", 3), KS("project", "proj-1"), KEND};
static const kv_t ev_storage_report[] = {ENVELOPE("storage.report"), KI("bytes", 123456789), KEND};
static const kv_t ev_subscription_changed[] = {
    ENVELOPE("subscription.changed"),  KS("tier", "pro"),       KI("period_start", 1767225600000LL),
    KI("period_end", 1769904000000LL), KS("promo", "new_year"), KEND};
static const kv_t ev_subscription_cancelled[] = {ENVELOPE("subscription.cancelled"), KEND};
static const kv_t ev_credits_added[] = {ENVELOPE("credits.added"), KI("amount_micros", 5000000),
                                        KEND};
static const kv_t ev_pack_purchased[] = {ENVELOPE("pack.purchased"), KI("workflows", 50), KEND};
static const kv_t ev_budget_set[] = {ENVELOPE("budget.set"), KI("monthly_limit_micros", 100000000),
                                     KARR("thresholds", 50, 90), KEND};

static const kv_t *const valid_events[WIRE_T_COUNT] = {
    [WIRE_T_WORKFLOW_STARTED] = ev_workflow_started,
    [WIRE_T_WORKFLOW_FINISHED] = ev_workflow_finished,
    [WIRE_T_AGENT_REQUESTED] = ev_agent_requested,
    [WIRE_T_AGENT_FINISHED] = ev_agent_finished,
    [WIRE_T_AGENT_CANCELLED] = ev_agent_cancelled,
    [WIRE_T_LLM_CALL] = ev_llm_call,
    [WIRE_T_API_CALL] = ev_api_call,
    [WIRE_T_STORAGE_REPORT] = ev_storage_report,
    [WIRE_T_SUBSCRIPTION_CHANGED] = ev_subscription_changed,
    [WIRE_T_SUBSCRIPTION_CANCELLED] = ev_subscription_cancelled,
    [WIRE_T_CREDITS_ADDED] = ev_credits_added,
    [WIRE_T_PACK_PURCHASED] = ev_pack_purchased,
    [WIRE_T_BUDGET_SET] = ev_budget_set,
};

/* 300 'a' bytes, for strings at and over their bounds. */
static char A[300];

typedef struct {
    uint8_t data[8192];
    size_t len;
} buf_t;

static void pack_value(msgpack_packer *pk, msgpack_sbuffer *sb, const kv_t *kv)
{
    switch (kv->kind) {
    case V_INT:
        msgpack_pack_int64(pk, kv->i);
        break;
    case V_UINT:
        msgpack_pack_uint64(pk, kv->u);
        break;
    case V_STR:
        msgpack_pack_str(pk, kv->n);
        msgpack_pack_str_body(pk, kv->s, kv->n);
        break;
    case V_BIN:
        msgpack_pack_bin(pk, kv->n);
        msgpack_pack_bin_body(pk, kv->s, kv->n);
        break;
    case V_BOOL:
        if (kv->i)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case V_NIL:
        msgpack_pack_nil(pk);
        break;
    case V_FLOAT:
        msgpack_pack_double(pk, kv->d);
        break;
    case V_INTS:
        msgpack_pack_array(pk, kv->n);
        for (size_t i = 0; i < kv->n; i++)
            msgpack_pack_int64(pk, kv->ints[i]);
        break;
    case V_RAW:
        msgpack_sbuffer_write(sb, kv->s, kv->n);
        break;
    default:
        fail_msg("bad kind %d", kv->kind);
    }
}

static void pack_kv(msgpack_packer *pk, msgpack_sbuffer *sb, const kv_t *kv)
{
    if (kv->kind == V_RAWKV) {
        msgpack_sbuffer_write(sb, kv->s, kv->n);
        return;
    }
    size_t kl = strlen(kv->key);
    msgpack_pack_str(pk, kl);
    msgpack_pack_str_body(pk, kv->key, kl);
    pack_value(pk, sb, kv);
}

static const kv_t *find_override(const kv_t *over, const char *key)
{
    for (const kv_t *o = over; o && o->kind != V_END; o++)
        if (!o->dup && strcmp(o->key, key) == 0)
            return o;
    return NULL;
}

static bool in_base(const kv_t *base, const char *key)
{
    for (const kv_t *b = base; b->kind != V_END; b++)
        if (strcmp(b->key, key) == 0)
            return true;
    return false;
}

/* Packs base with the overrides applied: a non-dup override replaces the base value of its key
 * (V_DEL removes it) or, for a new key, is appended; a dup override is always appended. */
static void build(const kv_t *base, const kv_t *over, buf_t *out)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n = 0;

    for (const kv_t *b = base; b->kind != V_END; b++) {
        const kv_t *o = find_override(over, b->key);
        n += !(o && o->kind == V_DEL);
    }
    for (const kv_t *o = over; o && o->kind != V_END; o++)
        n += o->dup || (o->kind != V_DEL && !in_base(base, o->key));

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n);
    for (const kv_t *b = base; b->kind != V_END; b++) {
        const kv_t *o = find_override(over, b->key);
        if (o && o->kind == V_DEL)
            continue;
        pack_kv(&pk, &sb, o ? o : b);
    }
    for (const kv_t *o = over; o && o->kind != V_END; o++)
        if (o->dup || (o->kind != V_DEL && !in_base(base, o->key)))
            pack_kv(&pk, &sb, o);
    assert_true(sb.size <= sizeof(out->data));
    memcpy(out->data, sb.data, sb.size);
    out->len = sb.size;
    msgpack_sbuffer_destroy(&sb);
}

/* ---- checking results ------------------------------------------------------------------- */

static bool view_ok(wire_str_t s, const uint8_t *buf, size_t len, uint32_t max)
{
    if (s.len == 0)
        return true;
    const uint8_t *p = (const uint8_t *)s.ptr;
    return s.len <= max && p >= buf && p + s.len <= buf + len;
}

static void check_views(const wire_event_t *ev, const uint8_t *buf, size_t len)
{
    assert_true(view_ok(ev->id, buf, len, WIRE_MAX_ID) && ev->id.len > 0);
    assert_true(view_ok(ev->org, buf, len, WIRE_MAX_ID) && ev->org.len > 0);
    assert_true(view_ok(ev->project, buf, len, WIRE_MAX_ID));
    assert_true(view_ok(ev->workflow, buf, len, WIRE_MAX_ID));
    assert_true(view_ok(ev->run, buf, len, WIRE_MAX_ID));
    assert_true(view_ok(ev->integration, buf, len, WIRE_MAX_ID));
    assert_true(view_ok(ev->provider, buf, len, WIRE_MAX_PROVIDER));
    assert_true(view_ok(ev->model, buf, len, WIRE_MAX_MODEL));
    assert_true(view_ok(ev->tier, buf, len, WIRE_MAX_TIER));
    assert_true(view_ok(ev->promo, buf, len, WIRE_MAX_TIER));
}

static bool str_is(wire_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static int decode(wire_decoder_t *d, const void *p, size_t len, wire_event_t *ev, wire_error_t *err)
{
    int rc = wire_decode(d, p, len, ev, err);
    assert_true(rc == 0 || rc == -1);
    if (rc == 0) {
        assert_int_equal(err->code, WIRE_OK);
        check_views(ev, p, len);
    } else {
        assert_true(err->code > WIRE_OK && err->code < WIRE_E_COUNT);
        assert_true(memchr(err->detail, '\0', sizeof(err->detail)) != NULL);
        assert_true(err->detail[0] != '\0');
    }
    return rc;
}

static void expect_ok(const char *name, wire_decoder_t *d, const void *p, size_t len,
                      wire_event_t *ev)
{
    wire_error_t err;
    if (decode(d, p, len, ev, &err) != 0)
        fail_msg("%s: refused with %s (field %s): %s", name, wire_err_name(err.code),
                 err.field ? err.field : "-", err.detail);
}

static void expect_err(const char *name, wire_decoder_t *d, const void *p, size_t len,
                       wire_err_t code, const char *field)
{
    wire_event_t ev;
    wire_error_t err;
    if (decode(d, p, len, &ev, &err) == 0)
        fail_msg("%s: accepted, expected %s", name, wire_err_name(code));
    bool field_ok = field ? (err.field && strcmp(err.field, field) == 0) : err.field == NULL;
    if (err.code != code || !field_ok)
        fail_msg("%s: got %s (field %s: %s), expected %s (field %s)", name, wire_err_name(err.code),
                 err.field ? err.field : "-", err.detail, wire_err_name(code), field ? field : "-");
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_names(void **state)
{
    (void)state;
    static const char *const errs[] = {
        "ok",         "too_large",       "malformed",     "limit",       "not_map",
        "bad_key",    "duplicate_field", "missing_field", "wrong_type",  "too_long",
        "bad_string", "out_of_range",    "bad_value",     "bad_version", "unknown_type"};
    assert_int_equal(sizeof(errs) / sizeof(errs[0]), WIRE_E_COUNT);
    for (int e = 0; e < WIRE_E_COUNT; e++)
        assert_string_equal(wire_err_name((wire_err_t)e), errs[e]);
    assert_string_equal(wire_err_name(WIRE_E_COUNT), "unknown");
    assert_string_equal(wire_err_name((wire_err_t)-1), "unknown");

    for (int t = 0; t < WIRE_T_COUNT; t++) {
        /* Each valid event spells its type as wire_type_name does. */
        assert_string_equal(wire_type_name((wire_type_t)t), valid_events[t][2].s);
    }
    assert_string_equal(wire_type_name(WIRE_T_COUNT), "unknown");
    assert_string_equal(wire_complexity_name(WIRE_COMPLEXITY_SMALL), "small");
    assert_string_equal(wire_complexity_name(WIRE_COMPLEXITY_MEDIUM), "medium");
    assert_string_equal(wire_complexity_name(WIRE_COMPLEXITY_LARGE), "large");
    assert_string_equal(wire_complexity_name((wire_complexity_t)3), "unknown");
    assert_string_equal(wire_status_name(WIRE_STATUS_SUCCEEDED), "succeeded");
    assert_string_equal(wire_status_name(WIRE_STATUS_FAILED), "failed");
    assert_string_equal(wire_status_name(WIRE_STATUS_CANCELLED), "cancelled");
    assert_string_equal(wire_status_name((wire_status_t)3), "unknown");
}

static void test_valid_each_type(void **state)
{
    wire_decoder_t *d = *state;
    wire_event_t ev;
    buf_t b;

    for (int t = 0; t < WIRE_T_COUNT; t++) {
        build(valid_events[t], NULL, &b);
        expect_ok(wire_type_name((wire_type_t)t), d, b.data, b.len, &ev);
        assert_int_equal(ev.type, t);
        assert_int_equal(ev.v, 1);
        assert_int_equal(ev.ts, 1767225600000LL);
        assert_true(str_is(ev.id, "6f1c2a9e-8d4b-4c3e-9a7f-0e5d1b2c3a4f"));
        assert_true(str_is(ev.org, "org-42"));
        /* Views point into the input, not into a copy. */
        assert_true((const uint8_t *)ev.id.ptr > b.data &&
                    (const uint8_t *)ev.id.ptr < b.data + b.len);
    }

    build(ev_workflow_started, NULL, &b);
    expect_ok("workflow.started", d, b.data, b.len, &ev);
    assert_true(str_is(ev.project, "proj-1") && str_is(ev.workflow, "wf-1"));
    assert_int_equal(ev.complexity, WIRE_COMPLEXITY_LARGE);
    assert_int_equal(ev.present, WIRE_HAS_COMPLEXITY);

    build(ev_workflow_finished, NULL, &b);
    expect_ok("workflow.finished", d, b.data, b.len, &ev);
    assert_true(str_is(ev.workflow, "wf-1") && str_is(ev.project, "proj-1"));
    assert_int_equal(ev.status, WIRE_STATUS_FAILED);

    build(ev_agent_requested, NULL, &b);
    expect_ok("agent.requested", d, b.data, b.len, &ev);
    assert_true(str_is(ev.project, "proj-1") && str_is(ev.run, "run-7") &&
                str_is(ev.workflow, "wf-1"));

    build(ev_agent_finished, NULL, &b);
    expect_ok("agent.finished", d, b.data, b.len, &ev);
    assert_true(str_is(ev.run, "run-7") && ev.project.len == 0);

    build(ev_agent_cancelled, NULL, &b);
    expect_ok("agent.cancelled", d, b.data, b.len, &ev);
    assert_true(str_is(ev.run, "run-7") && str_is(ev.project, "proj-1"));

    build(ev_llm_call, NULL, &b);
    expect_ok("llm.call", d, b.data, b.len, &ev);
    assert_true(str_is(ev.provider, "anthropic") && str_is(ev.model, "claude-sonnet-4-5"));
    assert_true(str_is(ev.project, "proj-1") && ev.workflow.len == 0 && ev.run.len == 0);
    assert_int_equal(ev.input_tokens, 1200);
    assert_int_equal(ev.output_tokens, 350);
    assert_int_equal(ev.cache_read_tokens, 5000);
    assert_int_equal(ev.cache_write_tokens, 0);
    assert_false(ev.byo);
    assert_int_equal(ev.present, WIRE_HAS_CACHE_READ | WIRE_HAS_CACHE_WRITE);

    build(ev_api_call, NULL, &b);
    expect_ok("api.call", d, b.data, b.len, &ev);
    assert_true(str_is(ev.integration, "github") && str_is(ev.project, "proj-1"));
    assert_int_equal(ev.count, 3);
    assert_int_equal(ev.present, WIRE_HAS_COUNT);

    build(ev_storage_report, NULL, &b);
    expect_ok("storage.report", d, b.data, b.len, &ev);
    assert_int_equal(ev.bytes, 123456789);

    build(ev_subscription_changed, NULL, &b);
    expect_ok("subscription.changed", d, b.data, b.len, &ev);
    assert_true(str_is(ev.tier, "pro") && str_is(ev.promo, "new_year"));
    assert_int_equal(ev.period_start, 1767225600000LL);
    assert_int_equal(ev.period_end, 1769904000000LL);
    assert_int_equal(ev.present, WIRE_HAS_PERIOD_START | WIRE_HAS_PERIOD_END);

    build(ev_subscription_cancelled, NULL, &b);
    expect_ok("subscription.cancelled", d, b.data, b.len, &ev);
    assert_int_equal(ev.present, 0);

    build(ev_credits_added, NULL, &b);
    expect_ok("credits.added", d, b.data, b.len, &ev);
    assert_int_equal(ev.amount_micros, 5000000);

    build(ev_pack_purchased, NULL, &b);
    expect_ok("pack.purchased", d, b.data, b.len, &ev);
    assert_int_equal(ev.workflows, 50);

    build(ev_budget_set, NULL, &b);
    expect_ok("budget.set", d, b.data, b.len, &ev);
    assert_int_equal(ev.monthly_limit_micros, 100000000);
    assert_int_equal(ev.n_thresholds, 2);
    assert_int_equal(ev.thresholds[0], 50);
    assert_int_equal(ev.thresholds[1], 90);
    assert_int_equal(ev.present, WIRE_HAS_THRESHOLDS);
}

static void test_defaults(void **state)
{
    wire_decoder_t *d = *state;
    wire_event_t ev;
    buf_t b;

    build(ev_workflow_started, (kv_t[]){KDEL("complexity"), KEND}, &b);
    expect_ok("complexity absent", d, b.data, b.len, &ev);
    assert_int_equal(ev.complexity, WIRE_COMPLEXITY_MEDIUM);
    assert_int_equal(ev.present, 0);

    build(ev_workflow_started, (kv_t[]){KNIL("complexity"), KEND}, &b);
    expect_ok("complexity nil", d, b.data, b.len, &ev);
    assert_int_equal(ev.complexity, WIRE_COMPLEXITY_MEDIUM);
    assert_int_equal(ev.present, 0);

    build(ev_workflow_started, (kv_t[]){KS("complexity", "small"), KEND}, &b);
    expect_ok("complexity small", d, b.data, b.len, &ev);
    assert_int_equal(ev.complexity, WIRE_COMPLEXITY_SMALL);

    build(ev_workflow_started, (kv_t[]){KS("complexity", "medium"), KEND}, &b);
    expect_ok("complexity medium", d, b.data, b.len, &ev);
    assert_int_equal(ev.complexity, WIRE_COMPLEXITY_MEDIUM);
    assert_int_equal(ev.present, WIRE_HAS_COMPLEXITY);

    build(ev_llm_call,
          (kv_t[]){KDEL("cache_read_tokens"), KNIL("cache_write_tokens"), KDEL("project"), KEND},
          &b);
    expect_ok("llm.call minimal", d, b.data, b.len, &ev);
    assert_int_equal(ev.present, 0);
    assert_int_equal(ev.cache_read_tokens, 0);
    assert_int_equal(ev.cache_write_tokens, 0);
    assert_false(ev.byo);
    assert_int_equal(ev.project.len, 0);

    build(ev_llm_call, (kv_t[]){KB("byo", true), KS("workflow", "wf-9"), KS("run", "r"), KEND}, &b);
    expect_ok("llm.call byo", d, b.data, b.len, &ev);
    assert_true(ev.byo);
    assert_true(ev.present & WIRE_HAS_BYO);
    assert_true(str_is(ev.workflow, "wf-9") && str_is(ev.run, "r"));

    build(ev_llm_call, (kv_t[]){KB("byo", false), KEND}, &b);
    expect_ok("llm.call byo false", d, b.data, b.len, &ev);
    assert_false(ev.byo);
    assert_true(ev.present & WIRE_HAS_BYO);

    build(ev_api_call, (kv_t[]){KDEL("count"), KEND}, &b);
    expect_ok("api.call default count", d, b.data, b.len, &ev);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.present, 0);

    build(ev_budget_set, (kv_t[]){KDEL("thresholds"), KEND}, &b);
    expect_ok("budget.set default thresholds", d, b.data, b.len, &ev);
    assert_int_equal(ev.n_thresholds, 3);
    assert_int_equal(ev.thresholds[0], 50);
    assert_int_equal(ev.thresholds[1], 80);
    assert_int_equal(ev.thresholds[2], 100);
    assert_int_equal(ev.present, 0);

    build(ev_budget_set, (kv_t[]){KNIL("thresholds"), KEND}, &b);
    expect_ok("budget.set nil thresholds", d, b.data, b.len, &ev);
    assert_int_equal(ev.n_thresholds, 3);

    build(ev_budget_set, (kv_t[]){KARR("thresholds", 1, 2, 3, 4, 5, 6, 7, 8, 9, 100), KEND}, &b);
    expect_ok("budget.set 10 thresholds", d, b.data, b.len, &ev);
    assert_int_equal(ev.n_thresholds, 10);
    assert_int_equal(ev.thresholds[9], 100);

    build(ev_subscription_changed, (kv_t[]){KDEL("period_start"), KDEL("promo"), KEND}, &b);
    expect_ok("subscription.changed partial", d, b.data, b.len, &ev);
    assert_int_equal(ev.present, WIRE_HAS_PERIOD_END);
    assert_int_equal(ev.period_start, 0);
    assert_int_equal(ev.promo.len, 0);

    build(ev_pack_purchased, (kv_t[]){KI("workflows", 10), KEND}, &b);
    expect_ok("pack 10", d, b.data, b.len, &ev);
    assert_int_equal(ev.workflows, 10);

    build(ev_workflow_finished, (kv_t[]){KS("status", "succeeded"), KDEL("project"), KEND}, &b);
    expect_ok("status succeeded", d, b.data, b.len, &ev);
    assert_int_equal(ev.status, WIRE_STATUS_SUCCEEDED);
    build(ev_workflow_finished, (kv_t[]){KS("status", "cancelled"), KEND}, &b);
    expect_ok("status cancelled", d, b.data, b.len, &ev);
    assert_int_equal(ev.status, WIRE_STATUS_CANCELLED);
}

/* Short names for the tables below: the base events, and error codes. */
#define WS     ev_workflow_started
#define WF     ev_workflow_finished
#define AR     ev_agent_requested
#define AF     ev_agent_finished
#define AC     ev_agent_cancelled
#define LLM    ev_llm_call
#define API    ev_api_call
#define STOR   ev_storage_report
#define SUB    ev_subscription_changed
#define CRED   ev_credits_added
#define PACK   ev_pack_purchased
#define BUDGET ev_budget_set
#define E(x)   WIRE_E_##x

/* Accepted variations: bounds at their edges, tolerated extras. */
typedef struct {
    const char *name;
    const kv_t *base;
    kv_t over[5]; /* at most 4 overrides; the rest are zero, i.e. V_END */
} ok_case_t;

static const ok_case_t ok_cases[] = {
    {"id 64 bytes", LLM, {KSN("id", A, 64)}},
    {"org 64 bytes", LLM, {KSN("org", A, 64)}},
    {"project 64 bytes", LLM, {KSN("project", A, 64)}},
    {"provider 32 bytes", LLM, {KSN("provider", A, 32)}},
    {"model 128 bytes", LLM, {KSN("model", A, 128)}},
    {"tier 32 bytes", SUB, {KSN("tier", A, 32), KSN("promo", A, 32)}},
    {"integration 64 bytes", API, {KSN("integration", A, 64)}},
    {"utf-8 2,3,4 bytes", LLM, {KS("model", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")}},
    {"utf-8 edges", LLM, {KS("model", "\xc2\x80\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf")}},
    {"ts 1", LLM, {KI("ts", 1)}},
    {"ts max", LLM, {KI("ts", WIRE_MAX_TS)}},
    {"tokens 0", LLM, {KI("input_tokens", 0), KI("output_tokens", 0)}},
    {"tokens max",
     LLM,
     {KI("input_tokens", WIRE_MAX_TOKENS), KI("output_tokens", WIRE_MAX_TOKENS),
      KI("cache_read_tokens", WIRE_MAX_TOKENS), KI("cache_write_tokens", WIRE_MAX_TOKENS)}},
    {"tokens as uint64", LLM, {KU("input_tokens", 7)}},
    {"tokens as int8", LLM, {KRAW("input_tokens", "\xd0\x05")}},
    {"count 1", API, {KI("count", 1)}},
    {"count max", API, {KI("count", WIRE_MAX_API_COUNT)}},
    {"bytes 0", STOR, {KI("bytes", 0)}},
    {"bytes max", STOR, {KI("bytes", WIRE_MAX_BYTES)}},
    {"amount 1", CRED, {KI("amount_micros", 1)}},
    {"amount max", CRED, {KI("amount_micros", WIRE_MAX_MICROS)}},
    {"limit 0", BUDGET, {KI("monthly_limit_micros", 0)}},
    {"limit max", BUDGET, {KI("monthly_limit_micros", WIRE_MAX_MICROS)}},
    {"thresholds 1 and 100", BUDGET, {KARR("thresholds", 1, 100)}},
    {"period 1..max", SUB, {KI("period_start", 1), KI("period_end", WIRE_MAX_TS)}},
    {"unknown fields",
     LLM,
     {KF("latency", 0.25), KRAW("extra", "\x82\xa1\x61\x91\x01\xa1\x62\xc0"),
      KBIN("blob", "\x00\x01"), KRAW("ext", "\xd4\x01\x02")}},
    {"unknown int key-like names",
     LLM,
     {KI("vv", 1), KI("tsx", 2), KI("typ", 3), KI("monthly_limit_microz", 4)}},
    {"unused known fields ignored",
     LLM,
     {KI("tier", 5), KS("status", "nope"), KARR("thresholds", 0), KI("workflows", 20)}},
    {"unused known fields on workflow.started", WS, {KI("run", 1), KB("byo", 1), KI("count", 0)}},
    {"nil optional strings", LLM, {KNIL("project"), KNIL("workflow"), KNIL("run"), KNIL("byo")}},
    {"depth 8", LLM, {KRAW("nest", "\x91\x91\x91\x91\x91\x91\x91\x01")}},
    {"depth 8 empty", LLM, {KRAW("nest", "\x91\x91\x91\x91\x91\x91\x90")}},
    {"duplicate unknown key", LLM, {KDUPI("x", 1), KDUPI("x", 2)}},
    {"empty unknown key", LLM, {KI("", 1)}},
};

static void test_ok_table(void **state)
{
    wire_decoder_t *d = *state;
    wire_event_t ev;
    buf_t b;
    for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
        build(ok_cases[i].base, ok_cases[i].over, &b);
        expect_ok(ok_cases[i].name, d, b.data, b.len, &ev);
    }
}

/* Refusals of well-formed msgpack: one row per case. */
typedef struct {
    const char *name;
    const kv_t *base;
    kv_t over[5]; /* at most 4 overrides; the rest are zero, i.e. V_END */
    wire_err_t code;
    const char *field;
} err_case_t;

#define U64_ABOVE_INT64 ((uint64_t)INT64_MAX + 1)

static const err_case_t err_cases[] = {
    /* envelope: missing */
    {"v missing", LLM, {KDEL("v")}, E(MISSING_FIELD), "v"},
    {"id missing", LLM, {KDEL("id")}, E(MISSING_FIELD), "id"},
    {"type missing", LLM, {KDEL("type")}, E(MISSING_FIELD), "type"},
    {"org missing", LLM, {KDEL("org")}, E(MISSING_FIELD), "org"},
    {"ts missing", LLM, {KDEL("ts")}, E(MISSING_FIELD), "ts"},
    {"id nil", LLM, {KNIL("id")}, E(MISSING_FIELD), "id"},
    /* llm.call: missing */
    {"provider missing", LLM, {KDEL("provider")}, E(MISSING_FIELD), "provider"},
    {"model missing", LLM, {KDEL("model")}, E(MISSING_FIELD), "model"},
    {"input_tokens missing", LLM, {KDEL("input_tokens")}, E(MISSING_FIELD), "input_tokens"},
    {"output_tokens missing", LLM, {KDEL("output_tokens")}, E(MISSING_FIELD), "output_tokens"},
    {"provider nil", LLM, {KNIL("provider")}, E(MISSING_FIELD), "provider"},
    /* other types: missing */
    {"ws project missing", WS, {KDEL("project")}, E(MISSING_FIELD), "project"},
    {"ws workflow missing", WS, {KDEL("workflow")}, E(MISSING_FIELD), "workflow"},
    {"wf workflow missing", WF, {KDEL("workflow")}, E(MISSING_FIELD), "workflow"},
    {"wf status missing", WF, {KDEL("status")}, E(MISSING_FIELD), "status"},
    {"ar project missing", AR, {KDEL("project")}, E(MISSING_FIELD), "project"},
    {"ar run missing", AR, {KDEL("run")}, E(MISSING_FIELD), "run"},
    {"af run missing", AF, {KDEL("run")}, E(MISSING_FIELD), "run"},
    {"ac run nil", AC, {KNIL("run")}, E(MISSING_FIELD), "run"},
    {"api integration missing", API, {KDEL("integration")}, E(MISSING_FIELD), "integration"},
    {"bytes missing", STOR, {KDEL("bytes")}, E(MISSING_FIELD), "bytes"},
    {"tier missing", SUB, {KDEL("tier")}, E(MISSING_FIELD), "tier"},
    {"amount missing", CRED, {KDEL("amount_micros")}, E(MISSING_FIELD), "amount_micros"},
    {"workflows missing", PACK, {KDEL("workflows")}, E(MISSING_FIELD), "workflows"},
    {"limit missing",
     BUDGET,
     {KDEL("monthly_limit_micros")},
     E(MISSING_FIELD),
     "monthly_limit_micros"},
    /* duplicates */
    {"id twice", LLM, {KDUPS("id", "other")}, E(DUPLICATE_FIELD), "id"},
    {"v twice same value", LLM, {KDUPI("v", 1)}, E(DUPLICATE_FIELD), "v"},
    {"unused field twice",
     LLM,
     {KDUPS("tier", "a"), KDUPS("tier", "b")},
     E(DUPLICATE_FIELD),
     "tier"},
    {"nil twice", LLM, {KDUPNIL("run"), KDUPNIL("run")}, E(DUPLICATE_FIELD), "run"},
    /* wrong types */
    {"v string", LLM, {KS("v", "1")}, E(WRONG_TYPE), "v"},
    {"v float", LLM, {KF("v", 1.0)}, E(WRONG_TYPE), "v"},
    {"id int", LLM, {KI("id", 5)}, E(WRONG_TYPE), "id"},
    {"id bin", LLM, {KBIN("id", "abc")}, E(WRONG_TYPE), "id"},
    {"type int", LLM, {KI("type", 5)}, E(WRONG_TYPE), "type"},
    {"org bool", LLM, {KB("org", 1)}, E(WRONG_TYPE), "org"},
    {"ts float", LLM, {KF("ts", 1.5e12)}, E(WRONG_TYPE), "ts"},
    {"ts string", LLM, {KS("ts", "1767225600000")}, E(WRONG_TYPE), "ts"},
    {"provider bin", LLM, {KBIN("provider", "anthropic")}, E(WRONG_TYPE), "provider"},
    {"model array", LLM, {KARR("model", 1)}, E(WRONG_TYPE), "model"},
    {"input_tokens float", LLM, {KF("input_tokens", 3.0)}, E(WRONG_TYPE), "input_tokens"},
    {"input_tokens bool", LLM, {KB("input_tokens", 1)}, E(WRONG_TYPE), "input_tokens"},
    {"output_tokens str", LLM, {KS("output_tokens", "3")}, E(WRONG_TYPE), "output_tokens"},
    {"cache_read map",
     LLM,
     {KRAW("cache_read_tokens", "\x80")},
     E(WRONG_TYPE),
     "cache_read_tokens"},
    {"byo int", LLM, {KI("byo", 1)}, E(WRONG_TYPE), "byo"},
    {"byo string", LLM, {KS("byo", "true")}, E(WRONG_TYPE), "byo"},
    {"project int (optional)", LLM, {KI("project", 1)}, E(WRONG_TYPE), "project"},
    {"complexity int", WS, {KI("complexity", 1)}, E(WRONG_TYPE), "complexity"},
    {"status bool", WF, {KB("status", 1)}, E(WRONG_TYPE), "status"},
    {"count float", API, {KF("count", 1.0)}, E(WRONG_TYPE), "count"},
    {"workflows string", PACK, {KS("workflows", "10")}, E(WRONG_TYPE), "workflows"},
    {"workflows float", PACK, {KF("workflows", 10.0)}, E(WRONG_TYPE), "workflows"},
    {"thresholds int", BUDGET, {KI("thresholds", 50)}, E(WRONG_TYPE), "thresholds"},
    {"thresholds map", BUDGET, {KRAW("thresholds", "\x81\x01\x02")}, E(WRONG_TYPE), "thresholds"},
    {"thresholds str element",
     BUDGET,
     {KRAW("thresholds", "\x92\x32\xa1x")},
     E(WRONG_TYPE),
     "thresholds"},
    {"thresholds nil element",
     BUDGET,
     {KRAW("thresholds", "\x92\x32\xc0")},
     E(WRONG_TYPE),
     "thresholds"},
    {"thresholds float element",
     BUDGET,
     {KRAW("thresholds", "\x91\xcb\x40\x49\x00\x00\x00\x00\x00\x00")},
     E(WRONG_TYPE),
     "thresholds"},
    {"tier int", SUB, {KI("tier", 1)}, E(WRONG_TYPE), "tier"},
    {"period_start str", SUB, {KS("period_start", "x")}, E(WRONG_TYPE), "period_start"},
    /* string bounds and content */
    {"id 65 bytes", LLM, {KSN("id", A, 65)}, E(TOO_LONG), "id"},
    {"org 65 bytes", LLM, {KSN("org", A, 65)}, E(TOO_LONG), "org"},
    {"project 65 bytes", LLM, {KSN("project", A, 65)}, E(TOO_LONG), "project"},
    {"workflow 65 bytes", WS, {KSN("workflow", A, 65)}, E(TOO_LONG), "workflow"},
    {"run 65 bytes", AF, {KSN("run", A, 65)}, E(TOO_LONG), "run"},
    {"provider 33 bytes", LLM, {KSN("provider", A, 33)}, E(TOO_LONG), "provider"},
    {"model 129 bytes", LLM, {KSN("model", A, 129)}, E(TOO_LONG), "model"},
    {"integration 65 bytes", API, {KSN("integration", A, 65)}, E(TOO_LONG), "integration"},
    {"tier 33 bytes", SUB, {KSN("tier", A, 33)}, E(TOO_LONG), "tier"},
    {"promo 33 bytes", SUB, {KSN("promo", A, 33)}, E(TOO_LONG), "promo"},
    {"model 300 bytes (str16)", LLM, {KSN("model", A, 300)}, E(TOO_LONG), "model"},
    {"id empty", LLM, {KS("id", "")}, E(BAD_STRING), "id"},
    {"org empty", LLM, {KS("org", "")}, E(BAD_STRING), "org"},
    {"project empty (optional)", LLM, {KS("project", "")}, E(BAD_STRING), "project"},
    {"id NUL", LLM, {KS("id", "ab\0cd")}, E(BAD_STRING), "id"},
    {"id NUL at 9", LLM, {KS("id", "abcdefghi\0")}, E(BAD_STRING), "id"},
    {"model NUL only", LLM, {KS("model", "\0")}, E(BAD_STRING), "model"},
    {"org lone continuation", LLM, {KS("org", "a\x80")}, E(BAD_STRING), "org"},
    {"org overlong 2", LLM, {KS("org", "\xc0\xaf")}, E(BAD_STRING), "org"},
    {"org overlong c1", LLM, {KS("org", "\xc1\xbf")}, E(BAD_STRING), "org"},
    {"org overlong 3", LLM, {KS("org", "\xe0\x80\xaf")}, E(BAD_STRING), "org"},
    {"org overlong 4", LLM, {KS("org", "\xf0\x80\x80\xaf")}, E(BAD_STRING), "org"},
    {"org surrogate", LLM, {KS("org", "\xed\xa0\x80")}, E(BAD_STRING), "org"},
    {"org above U+10FFFF", LLM, {KS("org", "\xf4\x90\x80\x80")}, E(BAD_STRING), "org"},
    {"org f5", LLM, {KS("org", "\xf5\x80\x80\x80")}, E(BAD_STRING), "org"},
    {"org ff", LLM, {KS("org", "abcdefgh\xff")}, E(BAD_STRING), "org"},
    {"org truncated sequence", LLM, {KS("org", "x\xe2\x82")}, E(BAD_STRING), "org"},
    {"org bad continuation", LLM, {KS("org", "\xe2\x28\xa1")}, E(BAD_STRING), "org"},
    {"org bad 4th byte", LLM, {KS("org", "\xf0\x9f\x98\x28")}, E(BAD_STRING), "org"},
    /* integers */
    {"ts 0", LLM, {KI("ts", 0)}, E(OUT_OF_RANGE), "ts"},
    {"ts negative", LLM, {KI("ts", -1)}, E(OUT_OF_RANGE), "ts"},
    {"ts max+1", LLM, {KI("ts", WIRE_MAX_TS + 1)}, E(OUT_OF_RANGE), "ts"},
    {"ts above int64", LLM, {KU("ts", U64_ABOVE_INT64)}, E(OUT_OF_RANGE), "ts"},
    {"ts uint64 max", LLM, {KU("ts", UINT64_MAX)}, E(OUT_OF_RANGE), "ts"},
    {"input_tokens -1", LLM, {KI("input_tokens", -1)}, E(OUT_OF_RANGE), "input_tokens"},
    {"input_tokens int64 min",
     LLM,
     {KI("input_tokens", INT64_MIN)},
     E(OUT_OF_RANGE),
     "input_tokens"},
    {"output_tokens max+1",
     LLM,
     {KI("output_tokens", WIRE_MAX_TOKENS + 1)},
     E(OUT_OF_RANGE),
     "output_tokens"},
    {"cache_read max+1",
     LLM,
     {KI("cache_read_tokens", WIRE_MAX_TOKENS + 1)},
     E(OUT_OF_RANGE),
     "cache_read_tokens"},
    {"cache_write -1", LLM, {KI("cache_write_tokens", -1)}, E(OUT_OF_RANGE), "cache_write_tokens"},
    {"cache_write above int64",
     LLM,
     {KU("cache_write_tokens", U64_ABOVE_INT64)},
     E(OUT_OF_RANGE),
     "cache_write_tokens"},
    {"count 0", API, {KI("count", 0)}, E(OUT_OF_RANGE), "count"},
    {"count max+1", API, {KI("count", WIRE_MAX_API_COUNT + 1)}, E(OUT_OF_RANGE), "count"},
    {"bytes -1", STOR, {KI("bytes", -1)}, E(OUT_OF_RANGE), "bytes"},
    {"bytes max+1", STOR, {KI("bytes", WIRE_MAX_BYTES + 1)}, E(OUT_OF_RANGE), "bytes"},
    {"amount 0", CRED, {KI("amount_micros", 0)}, E(OUT_OF_RANGE), "amount_micros"},
    {"amount max+1",
     CRED,
     {KI("amount_micros", WIRE_MAX_MICROS + 1)},
     E(OUT_OF_RANGE),
     "amount_micros"},
    {"limit -1", BUDGET, {KI("monthly_limit_micros", -1)}, E(OUT_OF_RANGE), "monthly_limit_micros"},
    {"limit max+1",
     BUDGET,
     {KI("monthly_limit_micros", WIRE_MAX_MICROS + 1)},
     E(OUT_OF_RANGE),
     "monthly_limit_micros"},
    {"period_start 0", SUB, {KI("period_start", 0)}, E(OUT_OF_RANGE), "period_start"},
    {"period_end max+1", SUB, {KI("period_end", WIRE_MAX_TS + 1)}, E(OUT_OF_RANGE), "period_end"},
    {"period start == end",
     SUB,
     {KI("period_start", 5000), KI("period_end", 5000)},
     E(OUT_OF_RANGE),
     "period_end"},
    {"period start > end",
     SUB,
     {KI("period_start", 5001), KI("period_end", 5000)},
     E(OUT_OF_RANGE),
     "period_end"},
    {"thresholds empty", BUDGET, {KEMPTYARR("thresholds")}, E(OUT_OF_RANGE), "thresholds"},
    {"thresholds 11",
     BUDGET,
     {KARR("thresholds", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)},
     E(OUT_OF_RANGE),
     "thresholds"},
    {"thresholds 0", BUDGET, {KARR("thresholds", 50, 0)}, E(OUT_OF_RANGE), "thresholds"},
    {"thresholds 101", BUDGET, {KARR("thresholds", 101)}, E(OUT_OF_RANGE), "thresholds"},
    {"thresholds -5", BUDGET, {KARR("thresholds", -5)}, E(OUT_OF_RANGE), "thresholds"},
    {"thresholds above int64",
     BUDGET,
     {KRAW("thresholds", "\x91\xcf\x80\x00\x00\x00\x00\x00\x00\x00")},
     E(OUT_OF_RANGE),
     "thresholds"},
    /* values */
    {"complexity huge", WS, {KS("complexity", "huge")}, E(BAD_VALUE), "complexity"},
    {"complexity case", WS, {KS("complexity", "Small")}, E(BAD_VALUE), "complexity"},
    {"complexity empty", WS, {KS("complexity", "")}, E(BAD_VALUE), "complexity"},
    {"status done", WF, {KS("status", "done")}, E(BAD_VALUE), "status"},
    {"pack 20", PACK, {KI("workflows", 20)}, E(BAD_VALUE), "workflows"},
    {"pack 0", PACK, {KI("workflows", 0)}, E(BAD_VALUE), "workflows"},
    {"pack -10", PACK, {KI("workflows", -10)}, E(BAD_VALUE), "workflows"},
    {"pack uint64 max", PACK, {KU("workflows", UINT64_MAX)}, E(BAD_VALUE), "workflows"},
    /* version and type */
    {"v 2", LLM, {KI("v", 2)}, E(BAD_VERSION), "v"},
    {"v 0", LLM, {KI("v", 0)}, E(BAD_VERSION), "v"},
    {"v -1", LLM, {KI("v", -1)}, E(BAD_VERSION), "v"},
    {"v uint64 max", LLM, {KU("v", UINT64_MAX)}, E(BAD_VERSION), "v"},
    {"type unknown", LLM, {KS("type", "llm.calls")}, E(UNKNOWN_TYPE), "type"},
    {"type prefix", LLM, {KS("type", "llm.cal")}, E(UNKNOWN_TYPE), "type"},
    {"type case", LLM, {KS("type", "LLM.CALL")}, E(UNKNOWN_TYPE), "type"},
    {"type empty", LLM, {KS("type", "")}, E(UNKNOWN_TYPE), "type"},
    {"type output", LLM, {KS("type", "agent.admitted")}, E(UNKNOWN_TYPE), "type"},
    {"type with NUL", LLM, {KS("type", "llm.call\0")}, E(UNKNOWN_TYPE), "type"},
    /* keys */
    {"int key", LLM, {KRAWKV("1: 2", "\x01\x02")}, E(BAD_KEY), NULL},
    {"nil key", LLM, {KRAWKV("nil: 2", "\xc0\x02")}, E(BAD_KEY), NULL},
    {"bin key", LLM, {KRAWKV("bin v: 1", "\xc4\x01v\x01")}, E(BAD_KEY), NULL},
    {"array key", LLM, {KRAWKV("[]: 1", "\x90\x01")}, E(BAD_KEY), NULL},
    /* nesting */
    {"depth 9", LLM, {KRAW("nest", "\x91\x91\x91\x91\x91\x91\x91\x91\x01")}, E(LIMIT), NULL},
    {"depth 9 empty", LLM, {KRAW("nest", "\x91\x91\x91\x91\x91\x91\x91\x90")}, E(LIMIT), NULL},
    {"depth 9 maps",
     LLM,
     {KRAW("nest", "\x81\x01\x81\x01\x81\x01\x81\x01\x81\x01\x81\x01\x81\x01\x80")},
     E(LIMIT),
     NULL},
    {"reserved byte in value", LLM, {KRAW("bad", "\xc1")}, E(MALFORMED), NULL},
    {"forged array in value", LLM, {KRAW("bad", "\xdd\xff\xff\xff\xff")}, E(LIMIT), NULL},
    {"forged map in value", LLM, {KRAW("bad", "\xdf\xff\xff\xff\xff")}, E(LIMIT), NULL},
    {"forged str in value", LLM, {KRAW("bad", "\xdb\xff\xff\xff\xff")}, E(LIMIT), NULL},
    /* the first error in the documented order wins, whatever the key order */
    {"order: v before id", LLM, {KSN("id", A, 65), KI("v", 3)}, E(BAD_VERSION), "v"},
    {"order: id before type", LLM, {KS("type", "nope"), KS("id", "")}, E(BAD_STRING), "id"},
    {"order: type before org", LLM, {KDEL("org"), KS("type", "nope")}, E(UNKNOWN_TYPE), "type"},
    {"order: org before ts", LLM, {KI("ts", 0), KDEL("org")}, E(MISSING_FIELD), "org"},
    {"order: ts before provider", LLM, {KDEL("provider"), KI("ts", 0)}, E(OUT_OF_RANGE), "ts"},
    {"order: provider before model",
     LLM,
     {KDEL("model"), KDEL("provider")},
     E(MISSING_FIELD),
     "provider"},
    {"order: tokens before project",
     LLM,
     {KS("project", ""), KI("output_tokens", -1)},
     E(OUT_OF_RANGE),
     "output_tokens"},
    {"order: duplicate before field errors",
     LLM,
     {KI("v", 9), KDUPS("model", "m")},
     E(DUPLICATE_FIELD),
     "model"},
    {"order: bad key before field errors",
     LLM,
     {KDEL("v"), KRAWKV("1: 2", "\x01\x02")},
     E(BAD_KEY),
     NULL},
};

static void test_err_table(void **state)
{
    wire_decoder_t *d = *state;
    buf_t b;
    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
        const err_case_t *c = &err_cases[i];
        build(c->base, c->over, &b);
        expect_err(c->name, d, b.data, b.len, c->code, c->field);
    }
}

static void test_details(void **state)
{
    wire_decoder_t *d = *state;
    wire_event_t ev;
    wire_error_t err;
    buf_t b;

    build(ev_llm_call, (kv_t[]){KSN("id", A, 65), KEND}, &b);
    assert_int_equal(wire_decode(d, b.data, b.len, &ev, &err), -1);
    assert_string_equal(err.detail, "id is 65 bytes, max 64");

    build(ev_llm_call, (kv_t[]){KI("ts", 0), KEND}, &b);
    assert_int_equal(wire_decode(d, b.data, b.len, &ev, &err), -1);
    assert_string_equal(err.detail, "ts is 0, min 1");

    build(ev_llm_call, (kv_t[]){KDEL("model"), KEND}, &b);
    assert_int_equal(wire_decode(d, b.data, b.len, &ev, &err), -1);
    assert_string_equal(err.detail, "model is required");

    build(ev_llm_call, (kv_t[]){KI("v", 2), KEND}, &b);
    assert_int_equal(wire_decode(d, b.data, b.len, &ev, &err), -1);
    assert_string_equal(err.detail, "v is 2, expected 1");

    /* A hostile value is quoted as printable ASCII only, and cut. */
    build(ev_llm_call,
          (kv_t[]){KS("type", "x\"\n\xff\x01yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"), KEND}, &b);
    assert_int_equal(wire_decode(d, b.data, b.len, &ev, &err), -1);
    assert_int_equal(err.code, WIRE_E_UNKNOWN_TYPE);
    for (const char *p = err.detail; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    assert_non_null(strstr(err.detail, "..."));

    build(ev_budget_set, (kv_t[]){KARR("thresholds", 50, 80, 120), KEND}, &b);
    assert_int_equal(wire_decode(d, b.data, b.len, &ev, &err), -1);
    assert_string_equal(err.detail, "thresholds[2] is 120, max 100");

    /* Success clears a previous error. */
    build(ev_llm_call, NULL, &b);
    assert_int_equal(wire_decode(d, b.data, b.len, &ev, &err), 0);
    assert_int_equal(err.code, WIRE_OK);
    assert_null(err.field);
    assert_string_equal(err.detail, "");
}

/* Byte shapes the packer cannot produce. */
typedef struct {
    const char *name;
    const char *bytes;
    size_t len;
    wire_err_t code;
} raw_case_t;

/* clang-format off */
#define RAW(name, s, code) {name, s, sizeof(s) - 1, code}
/* clang-format on */

static const raw_case_t raw_cases[] = {
    {"empty", "", 0, WIRE_E_MALFORMED},
    RAW("reserved byte", "\xc1", WIRE_E_MALFORMED),
    RAW("map then reserved", "\x81\xa1v\xc1", WIRE_E_MALFORMED),
    RAW("forged array32", "\xdd\xff\xff\xff\xff", WIRE_E_LIMIT),
    RAW("forged map32", "\xdf\xff\xff\xff\xff", WIRE_E_LIMIT),
    RAW("forged str32", "\xdb\xff\xff\xff\xff", WIRE_E_LIMIT),
    RAW("forged bin32", "\xc6\xff\xff\xff\xff", WIRE_E_LIMIT),
    RAW("forged ext32", "\xc9\xff\xff\xff\xff\x01", WIRE_E_LIMIT),
    RAW("forged ext8", "\xc7\x05\x01\x00", WIRE_E_LIMIT),
    RAW("forged array16", "\xdc\xff\xff\x01\x02", WIRE_E_LIMIT),
    RAW("forged map16", "\xde\x00\x03\x01\x01\x01\x01\x01", WIRE_E_LIMIT),
    RAW("map16 fits, int keys", "\xde\x00\x03\x01\x01\x01\x01\x01\x01", WIRE_E_BAD_KEY),
    RAW("fixarray over input", "\x9f\x01\x02", WIRE_E_LIMIT),
    RAW("fixmap over input", "\x83\xa1v\x01", WIRE_E_LIMIT),
    RAW("fixstr over input", "\x81\xa5v\x01", WIRE_E_LIMIT),
    RAW("map32 inside forged", "\x81\xa1x\xdf\x7f\xff\xff\xff", WIRE_E_LIMIT),
    RAW("truncated array32 header", "\xdd\xff", WIRE_E_MALFORMED),
    RAW("truncated str8 header", "\xd9", WIRE_E_MALFORMED),
    RAW("truncated ext8 type byte", "\xc7\x00", WIRE_E_MALFORMED),
    RAW("truncated uint64", "\xcf\x00\x01", WIRE_E_MALFORMED),
    RAW("truncated float64", "\xcb\x00", WIRE_E_MALFORMED),
    RAW("truncated fixext16", "\xd8\x01\x00", WIRE_E_MALFORMED),
    RAW("map missing its value", "\x81\xa1v", WIRE_E_MALFORMED),
    RAW("trailing nil", "\x80\xc0", WIRE_E_MALFORMED),
    RAW("two maps", "\x80\x80", WIRE_E_MALFORMED),
    RAW("not a map: int", "\x01", WIRE_E_NOT_MAP),
    RAW("not a map: nil", "\xc0", WIRE_E_NOT_MAP),
    RAW("not a map: str",
        "\xa3"
        "abc",
        WIRE_E_NOT_MAP),
    RAW("not a map: array", "\x92\x01\x02", WIRE_E_NOT_MAP),
    RAW("not a map: float", "\xca\x00\x00\x00\x00", WIRE_E_NOT_MAP),
    RAW("not a map: ext", "\xd4\x01\x02", WIRE_E_NOT_MAP),
    RAW("not a map: depth 8 arrays", "\x91\x91\x91\x91\x91\x91\x91\x90", WIRE_E_NOT_MAP),
    RAW("depth 9 arrays", "\x91\x91\x91\x91\x91\x91\x91\x91\x90", WIRE_E_LIMIT),
    RAW("empty map", "\x80", WIRE_E_MISSING_FIELD),
    RAW("int key", "\x81\x01\x02", WIRE_E_BAD_KEY),
    RAW("float key", "\x81\xca\x00\x00\x00\x00\x01", WIRE_E_BAD_KEY),
    RAW("map key", "\x81\x80\x01", WIRE_E_BAD_KEY),
};

static void test_raw_table(void **state)
{
    wire_decoder_t *d = *state;
    for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
        const raw_case_t *c = &raw_cases[i];
        const char *field = c->code == WIRE_E_MISSING_FIELD ? "v" : NULL;
        expect_err(c->name, d, c->bytes, c->len, c->code, field);
    }
}

static void test_deep_nesting(void **state)
{
    wire_decoder_t *d = *state;
    static uint8_t deep[60000];
    wire_event_t ev;
    wire_error_t err;

    /* Far deeper than any recursive decoder's stack would survive. */
    memset(deep, 0x91, sizeof(deep));
    assert_int_equal(decode(d, deep, sizeof(deep), &ev, &err), -1);
    assert_int_equal(err.code, WIRE_E_LIMIT);
    memset(deep, 0x81, sizeof(deep));
    assert_int_equal(decode(d, deep, sizeof(deep), &ev, &err), -1);
    assert_int_equal(err.code, WIRE_E_LIMIT);
}

static void test_truncation(void **state)
{
    wire_decoder_t *d = *state;
    wire_event_t ev;
    wire_error_t err;
    buf_t b;

    for (int t = 0; t < WIRE_T_COUNT; t++) {
        build(valid_events[t], NULL, &b);
        for (size_t n = 0; n < b.len; n++) {
            /* A heap copy of exactly n bytes, so ASan sees any read past the end. */
            uint8_t *p = malloc(n ? n : 1);
            assert_non_null(p);
            memcpy(p, b.data, n);
            int rc = decode(d, p, n, &ev, &err);
            if (rc != -1 || (err.code != WIRE_E_MALFORMED && err.code != WIRE_E_LIMIT))
                fail_msg("%s cut at %zu: rc %d code %s", wire_type_name((wire_type_t)t), n, rc,
                         wire_err_name(err.code));
            free(p);
        }
        /* And a trailing byte after each. */
        b.data[b.len] = 0xc0;
        expect_err("trailing byte", d, b.data, b.len + 1, WIRE_E_MALFORMED, NULL);
    }
}

static void test_too_large(void **state)
{
    (void)state;
    wire_event_t ev;
    wire_error_t err;
    buf_t b;

    build(ev_llm_call, NULL, &b);
    wire_decoder_t *exact = wire_decoder_new(b.len);
    wire_decoder_t *small = wire_decoder_new(b.len - 1);
    assert_non_null(exact);
    assert_non_null(small);
    expect_ok("exactly max", exact, b.data, b.len, &ev);
    expect_err("one over max", small, b.data, b.len, WIRE_E_TOO_LARGE, NULL);
    /* The size check comes before any parsing. */
    expect_err("over max, garbage", small, "\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc1",
               b.len, WIRE_E_TOO_LARGE, NULL);
    wire_decoder_free(exact);
    wire_decoder_free(small);

    /* The default bound is WIRE_DEFAULT_MAX_EVENT. */
    wire_decoder_t *def = wire_decoder_new(0);
    static uint8_t big[WIRE_DEFAULT_MAX_EVENT + 1];
    assert_int_equal(decode(def, big, sizeof(big), &ev, &err), -1);
    assert_int_equal(err.code, WIRE_E_TOO_LARGE);
    assert_string_equal(err.detail, "the event is 65537 bytes, max 65536");
    wire_decoder_free(def);
    wire_decoder_free(NULL);
}

/* A valid event the size of the limit, with a large unknown array, decodes; the zone grows
 * for it and the next small event still decodes. */
static void test_big_event(void **state)
{
    wire_decoder_t *d = *state;
    static uint8_t big[WIRE_DEFAULT_MAX_EVENT];
    wire_event_t ev;
    buf_t b;
    size_t n = WIRE_DEFAULT_MAX_EVENT - 400;

    build(ev_llm_call, (kv_t[]){KRAW("zz", "\xdc\x00\x00"), KEND}, &b);
    /* Patch the trailing array16 header to hold n - b.len nils. */
    size_t elems = n - b.len;
    b.data[b.len - 2] = (uint8_t)(elems >> 8);
    b.data[b.len - 1] = (uint8_t)elems;
    memcpy(big, b.data, b.len);
    memset(big + b.len, 0xc0, elems);
    expect_ok("big", d, big, n, &ev);
    build(ev_llm_call, NULL, &b);
    expect_ok("small after big", d, b.data, b.len, &ev);
}

/* ---- randomized mutations --------------------------------------------------------------- */

#include "testrng.h"

static uint32_t rng(void)
{
    return (uint32_t)(rng_next() >> 32);
}

static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                      0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc6, 0xc7, 0xc9, 0xca,
                                      0xcb, 0xcc, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xdb,
                                      0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};

static void test_mutation(void **state)
{
    wire_decoder_t *d = *state;
    buf_t base[WIRE_T_COUNT];
    static uint8_t work[1024];
    unsigned long accepted = 0, codes[WIRE_E_COUNT] = {0};

    rng_seed();

    for (int t = 0; t < WIRE_T_COUNT; t++)
        build(valid_events[t], NULL, &base[t]);

    for (int it = 0; it < 200000; it++) {
        const buf_t *src = &base[rng() % WIRE_T_COUNT];
        size_t len = src->len;
        memcpy(work, src->data, len);
        int nmut = 1 + (int)(rng() % 4);
        for (int m = 0; m < nmut; m++) {
            size_t at = len ? rng() % len : 0;
            switch (rng() % 6) {
            case 0: /* flip a bit */
                if (len)
                    work[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1: /* overwrite with a random byte */
                if (len)
                    work[at] = (uint8_t)rng();
                break;
            case 2: /* overwrite with an interesting byte */
                if (len)
                    work[at] = interesting[rng() % sizeof(interesting)];
                break;
            case 3: /* insert a byte */
                if (len < sizeof(work)) {
                    memmove(work + at + 1, work + at, len - at);
                    work[at] =
                        rng() % 2 ? (uint8_t)rng() : interesting[rng() % sizeof(interesting)];
                    len++;
                }
                break;
            case 4: /* delete a byte */
                if (len) {
                    memmove(work + at, work + at + 1, len - at - 1);
                    len--;
                }
                break;
            case 5: /* truncate */
                len = at;
                break;
            }
        }
        /* Decode from an exact-size heap copy so ASan catches any overread. */
        uint8_t *p = malloc(len ? len : 1);
        wire_event_t ev;
        wire_error_t err;
        assert_non_null(p);
        memcpy(p, work, len);
        int rc = decode(d, p, len, &ev, &err);
        if (rc == 0)
            accepted++;
        else
            codes[err.code]++;
        free(p);
    }
    printf("mutation: %lu accepted;", accepted);
    for (int e = 1; e < WIRE_E_COUNT; e++)
        printf(" %s=%lu", wire_err_name((wire_err_t)e), codes[e]);
    printf("\n");
}

/* ---- main ------------------------------------------------------------------------------- */

static int setup(void **state)
{
    *state = wire_decoder_new(0);
    return *state ? 0 : -1;
}

/* ---- output messages ---------------------------------------------------------------------- */

/* The expected id, assembled independently: prefix, '-', hex of XXH3-128 over the parts, each
 * followed by 0xFF, high 64 bits first. */
static void expect_id(const char *got, char prefix, const char *const *parts, size_t n)
{
    unsigned char buf[512];
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + at, parts[i], strlen(parts[i]));
        at += strlen(parts[i]);
        buf[at++] = 0xFF;
    }
    XXH128_hash_t h = XXH3_128bits(buf, at);
    char want[40];
    snprintf(want, sizeof(want), "%c-%016llx%016llx", prefix, (unsigned long long)h.high64,
             (unsigned long long)h.low64);
    assert_string_equal(got, want);
}

/* The value of key k in the msgpack map m (which must have it exactly once). */
static const msgpack_object *map_get(const msgpack_object *m, const char *k)
{
    const msgpack_object *found = NULL;
    assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *key = &m->via.map.ptr[i].key;
        assert_int_equal(key->type, MSGPACK_OBJECT_STR);
        if (key->via.str.size == strlen(k) && memcmp(key->via.str.ptr, k, key->via.str.size) == 0) {
            assert_null(found);
            found = &m->via.map.ptr[i].val;
        }
    }
    assert_non_null(found);
    return found;
}

static void expect_str(const msgpack_object *m, const char *k, const char *want)
{
    const msgpack_object *v = map_get(m, k);
    assert_int_equal(v->type, MSGPACK_OBJECT_STR);
    assert_int_equal(v->via.str.size, strlen(want));
    assert_memory_equal(v->via.str.ptr, want, strlen(want));
}

static void expect_int(const msgpack_object *m, const char *k, int64_t want)
{
    const msgpack_object *v = map_get(m, k);
    assert_true(v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_int_equal(v->via.i64, want);
}

static void test_budget_events(void **state)
{
    (void)state;
    char buf[1024], id[WIRE_OUTPUT_ID_LEN + 1];
    wire_budget_event_t b = {
        .exceeded = false,
        .org = {"acme", 4},
        .ts = 1772323200123,
        .cause = {"ev-9", 4},
        .period_start = 1772323200000,
        .threshold = 80,
        .spend_micros = 50000000,
        .limit_micros = 60000000,
    };
    int n = wire_encode_budget_event(&b, buf, sizeof(buf));
    assert_true(n > 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, buf, (size_t)n, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, (size_t)n);
    const msgpack_object *m = &u.data;
    assert_int_equal(m->via.map.size, 10);
    expect_int(m, "v", 1);
    expect_str(m, "type", "budget.warning");
    expect_str(m, "org", "acme");
    expect_int(m, "ts", 1772323200123);
    expect_int(m, "period_start", 1772323200000);
    expect_int(m, "threshold", 80);
    expect_int(m, "spend_micros", 50000000);
    expect_int(m, "limit_micros", 60000000);
    expect_str(m, "cause", "ev-9");
    const msgpack_object *idv = map_get(m, "id");
    assert_int_equal(idv->via.str.size, WIRE_OUTPUT_ID_LEN);
    memcpy(id, idv->via.str.ptr, WIRE_OUTPUT_ID_LEN);
    id[WIRE_OUTPUT_ID_LEN] = '\0';
    static const char *const warn_parts[] = {"acme", "1772323200000", "budget.warning", "80"};
    expect_id(id, 'b', warn_parts, 4);
    /* the id does not depend on the cause, the time or the amounts: one per cause per period */
    char again[WIRE_OUTPUT_ID_LEN + 1];
    wire_budget_event_t c = b;
    c.cause = (wire_str_t){"other", 5};
    c.ts++;
    c.spend_micros++;
    wire_budget_event_id(&c, again);
    assert_string_equal(id, again);
    c.threshold = 50;
    wire_budget_event_id(&c, again);
    assert_string_not_equal(id, again);

    b.exceeded = true;
    b.reason = "credits";
    n = wire_encode_budget_event(&b, buf, sizeof(buf));
    assert_true(n > 0);
    off = 0;
    assert_int_equal(msgpack_unpack_next(&u, buf, (size_t)n, &off), MSGPACK_UNPACK_SUCCESS);
    m = &u.data;
    assert_int_equal(m->via.map.size, 10);
    expect_str(m, "type", "budget.exceeded");
    expect_str(m, "reason", "credits");
    wire_budget_event_id(&b, id);
    static const char *const exc_parts[] = {"acme", "1772323200000", "budget.exceeded", "credits"};
    expect_id(id, 'b', exc_parts, 4);
    assert_int_equal(wire_encode_budget_event(&b, buf, 40), -1); /* too small: refused */
    msgpack_unpacked_destroy(&u);
}

static void test_decisions(void **state)
{
    (void)state;
    char buf[1024], id[WIRE_OUTPUT_ID_LEN + 1];
    wire_decision_t d = {
        .type = WIRE_D_WORKFLOW_HELD,
        .org = {"acme", 4},
        .ts = 5,
        .cause = {"ev-1", 4},
        .project = {"p1", 2},
        .subject = {"w7", 2},
        .position = 3,
    };
    int n = wire_encode_decision(&d, buf, sizeof(buf));
    assert_true(n > 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, buf, (size_t)n, &off), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *m = &u.data;
    assert_int_equal(m->via.map.size, 10);
    expect_str(m, "type", "workflow.held");
    expect_str(m, "workflow", "w7");
    expect_str(m, "reason", "workflow_quota");
    expect_int(m, "position", 3);
    wire_decision_id(&d, id);
    static const char *const parts[] = {"acme", "ev-1", "workflow.held", "w7"};
    expect_id(id, 'd', parts, 4);
    msgpack_unpacked_destroy(&u);
}

static int teardown(void **state)
{
    wire_decoder_free(*state);
    return 0;
}

int main(void)
{
    memset(A, 'a', sizeof(A));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),      cmocka_unit_test(test_valid_each_type),
        cmocka_unit_test(test_defaults),   cmocka_unit_test(test_ok_table),
        cmocka_unit_test(test_err_table),  cmocka_unit_test(test_details),
        cmocka_unit_test(test_raw_table),  cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_truncation), cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_big_event),  cmocka_unit_test(test_mutation),
        cmocka_unit_test(test_decisions),  cmocka_unit_test(test_budget_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
