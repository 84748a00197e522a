/*
 * billing — invoice arithmetic, credits and budget events. See billing.h for the rules.
 *
 * DESIGN. Usage is priced when it happens, with the tier in force then, and kept as items
 * (kind, detail, unit price) → exact raw quantity; the base fee is kept as stretches of the
 * period on one tier and fee. An invoice is computed from both on demand, in 128-bit integers,
 * each line rounded once. Nothing here reads a clock: every instant is an event's ts.
 */
#include "billing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "mpget.h"

#define NANOS_PER_USD   1000000000LL
#define MICROS_PER_CT   10000LL
#define BYTES_PER_GB    1000000000LL
#define MS_PER_HOUR     3600000LL
#define SNAPSHOT_FIELDS 20

static const char *const kind_names[BILL_KINDS] = {
    "base_fee",  "one_time_fee", "workflow_overage", "llm",
    "api_calls", "storage",      "agent_hours",      "credits",
};

static const char *const reason_names[] = {"", "budget", "workflow_quota", "credits"};

static const char *const meter_names[BILL_METERS] = {
    "workflows",      "overage_workflows", "held_workflows", "agent_ms",        "llm_calls",
    "llm_cost_nanos", "llm_billed_nanos",  "api_calls",      "storage_byte_ms",
};

const char *bill_kind_name(bill_kind_t k)
{
    return (unsigned)k < BILL_KINDS ? kind_names[k] : "unknown";
}

const char *bill_reason_name(bill_reason_t r)
{
    return (unsigned)r <= BILL_REASON_CREDITS ? reason_names[r] : "unknown";
}

const char *bill_meter_name(bill_meter_t m)
{
    return (unsigned)m < BILL_METERS ? meter_names[m] : "unknown";
}

int64_t bill_round_div(bill_i128_t num, bill_i128_t den)
{
    if (num >= 0)
        return (int64_t)((2 * num + den) / (2 * den));
    return -(int64_t)((-2 * num + den) / (2 * den));
}

int bill_i128_text(bill_i128_t v, char buf[48])
{
    char tmp[48];
    int n = 0, at = 0;
    bill_u128_t u = v < 0 ? -(bill_u128_t)v : (bill_u128_t)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (v < 0)
        buf[at++] = '-';
    while (n)
        buf[at++] = tmp[--n];
    buf[at] = '\0';
    return at;
}

static void set_str(char *dst, size_t max, const char *s)
{
    size_t n = strlen(s);
    if (n > max)
        n = max;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Room for one more element in arr (n in use, *cap allocated), doubling from `first`. Out of
 * memory aborts: the restart replays. */
static void *grow(void *arr, size_t n, size_t *cap, size_t first, size_t size)
{
    if (n < *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : first;
    void *p = realloc(arr, c * size);
    if (!p)
        abort();
    *cap = c;
    return p;
}

/* ---------- lifecycle ---------- */

void bill_init(bill_t *b)
{
    memset(b, 0, sizeof(*b));
}

void bill_destroy(bill_t *b)
{
    free(b->stretches);
    free(b->items);
    memset(b, 0, sizeof(*b));
}

void bill_open_period(bill_t *b, int64_t start, int64_t nominal_end)
{
    /* The tier in force carries into the new period: the caller opens a stretch for it. */
    b->period_start = start;
    b->nominal_end = nominal_end;
    b->nstretches = 0;
    b->nitems = 0;
    memset(b->meters, 0, sizeof(b->meters));
    b->storage_byte_ms = 0;
    b->agent_ms = 0;
    b->warned[0] = b->warned[1] = 0;
    b->exceeded = 0;
    if (b->storage_since < start)
        b->storage_since = start;
}

void bill_set_nominal_end(bill_t *b, int64_t nominal_end)
{
    if (nominal_end > b->period_start)
        b->nominal_end = nominal_end;
}

/* ---------- the base fee ---------- */

int64_t bill_fee_in_force(const tier_t *t, const tier_promo_t *promo, int64_t promo_start,
                          int64_t period_start)
{
    if (!promo || t->period != TIERS_PERIOD_SUBSCRIPTION || promo_start < 0)
        return t->base_fee_micros;
    /* Month k (1-based) starts k - 1 calendar-month steps after the promotion's start. */
    size_t k = 0;
    while (k < promo->months && cal_add_months(promo_start, (int)k + 1) <= period_start)
        k++;
    return k < promo->months ? promo->monthly_fee_micros[k] : t->base_fee_micros;
}

void bill_stretch(bill_t *b, int64_t from, const tier_t *t, const tier_promo_t *promo,
                  int64_t fee_micros)
{
    if (from < b->period_start)
        from = b->period_start;
    const char *pname = promo && t->period == TIERS_PERIOD_SUBSCRIPTION ? promo->name : "";
    if (b->nstretches) {
        bill_stretch_t *last = &b->stretches[b->nstretches - 1];
        if (strcmp(last->tier, t->name) == 0 && strcmp(last->promo, pname) == 0 &&
            last->fee_micros == fee_micros)
            return;               /* nothing changes */
        if (last->from >= from) { /* the same instant: the later change wins */
            set_str(last->tier, TIERS_NAME_MAX, t->name);
            set_str(last->promo, TIERS_NAME_MAX, pname);
            last->fee_micros = fee_micros;
            return;
        }
    }
    b->stretches = grow(b->stretches, b->nstretches, &b->capstretches, 4, sizeof(*b->stretches));
    bill_stretch_t *s = &b->stretches[b->nstretches++];
    s->from = from;
    set_str(s->tier, TIERS_NAME_MAX, t->name);
    set_str(s->promo, TIERS_NAME_MAX, pname);
    s->fee_micros = fee_micros;
}

const char *bill_tier(const bill_t *b)
{
    return b->nstretches ? b->stretches[b->nstretches - 1].tier : "";
}

/* ---------- usage ---------- */

static bill_item_t *item(bill_t *b, bill_kind_t kind, const char *detail, int64_t unit)
{
    for (size_t i = 0; i < b->nitems; i++) {
        bill_item_t *it = &b->items[i];
        if (it->kind == kind && it->unit_price_micros == unit && strcmp(it->detail, detail) == 0)
            return it;
    }
    b->items = grow(b->items, b->nitems, &b->capitems, 8, sizeof(*b->items));
    bill_item_t *it = &b->items[b->nitems++];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    set_str(it->detail, BILL_DETAIL_MAX, detail);
    it->unit_price_micros = unit;
    return it;
}

void bill_one_time(bill_t *b, const tier_t *t)
{
    if (t->one_time_fee_micros <= 0)
        return;
    for (uint32_t i = 0; i < b->npaid_once; i++)
        if (strcmp(b->paid_once[i], t->name) == 0)
            return;
    if (b->npaid_once < BILL_MAX_ONE_TIME)
        set_str(b->paid_once[b->npaid_once++], TIERS_NAME_MAX, t->name);
    item(b, BILL_ONE_TIME_FEE, t->name, t->one_time_fee_micros)->raw += 1;
}

void bill_workflow(bill_t *b, const tier_t *t, wire_complexity_t c, bool overage)
{
    b->meters[BILL_M_WORKFLOWS]++;
    if (!overage)
        return;
    b->meters[BILL_M_OVERAGE]++;
    if (t->overage_micros[c] > 0)
        item(b, BILL_WORKFLOW_OVERAGE, wire_complexity_name(c), t->overage_micros[c])->raw += 1;
}

void bill_workflow_held(bill_t *b)
{
    b->meters[BILL_M_HELD]++;
}

void bill_llm(bill_t *b, const tier_t *t, int64_t cost_nanos, bool byo)
{
    b->meters[BILL_M_LLM_CALLS]++;
    b->meters[BILL_M_LLM_COST_NANOS] += cost_nanos;
    if (byo || !t->llm_billed || cost_nanos <= 0)
        return;
    b->meters[BILL_M_LLM_BILLED_NANOS] += cost_nanos;
    bill_item_t *it = item(b, BILL_LLM, "", 1000000 + 10000 * t->llm_margin_percent);
    it->raw += cost_nanos;
    it->count++;
}

void bill_api(bill_t *b, const tier_t *t, int64_t count)
{
    b->meters[BILL_M_API_CALLS] += count;
    if (t->api_call_micros > 0)
        item(b, BILL_API_CALLS, "", t->api_call_micros)->raw += count;
}

void bill_storage_advance(bill_t *b, const tier_t *t, int64_t now)
{
    if (now <= b->storage_since)
        return;
    bill_i128_t dt = now - b->storage_since;
    b->storage_since = now;
    if (b->storage_bytes <= 0)
        return;
    b->storage_byte_ms += (bill_i128_t)b->storage_bytes * dt;
    int64_t excess =
        t->storage_limit_bytes == TIERS_UNLIMITED ? 0 : b->storage_bytes - t->storage_limit_bytes;
    if (excess > 0 && t->storage_gb_month_micros > 0)
        item(b, BILL_STORAGE, "", t->storage_gb_month_micros)->raw += (bill_i128_t)excess * dt;
}

void bill_storage_report(bill_t *b, const tier_t *t, int64_t now, int64_t bytes)
{
    bill_storage_advance(b, t, now);
    b->storage_bytes = bytes;
}

void bill_agent(bill_t *b, const tier_t *t, int64_t ms)
{
    if (ms <= 0)
        return;
    int64_t before = b->agent_ms;
    b->agent_ms += ms;
    b->meters[BILL_M_AGENT_MS] += ms;
    if (t->included_agent_ms == TIERS_UNLIMITED || t->agent_hour_micros <= 0)
        return;
    int64_t over_before = before > t->included_agent_ms ? before - t->included_agent_ms : 0;
    int64_t over_after =
        b->agent_ms > t->included_agent_ms ? b->agent_ms - t->included_agent_ms : 0;
    if (over_after > over_before)
        item(b, BILL_AGENT_HOURS, "", t->agent_hour_micros)->raw += over_after - over_before;
}

void bill_credits(bill_t *b, int64_t micros)
{
    b->credits_micros += micros;
}

void bill_budget(bill_t *b, int64_t limit_micros, const int32_t *thresholds, uint32_t n)
{
    b->budget_micros = limit_micros;
    if (n > WIRE_MAX_THRESHOLDS)
        n = WIRE_MAX_THRESHOLDS;
    b->nthresholds = n;
    memcpy(b->thresholds, thresholds, n * sizeof(*thresholds));
}

/* ---------- invoices ---------- */

static bill_line_t *push_line(bill_invoice_t *inv)
{
    inv->lines = grow(inv->lines, inv->n, &inv->cap, 8, sizeof(*inv->lines));
    bill_line_t *l = &inv->lines[inv->n++];
    memset(l, 0, sizeof(*l));
    return l;
}

static void add_line(bill_invoice_t *inv, bill_kind_t kind, const char *detail, int64_t unit,
                     bill_i128_t raw, bill_i128_t scale, int64_t count)
{
    if (raw == 0 || unit == 0)
        return;
    bill_line_t *l = push_line(inv);
    l->kind = kind;
    set_str(l->detail, BILL_DETAIL_MAX, detail);
    l->unit_price_micros = unit;
    l->raw = raw;
    l->scale = scale;
    l->count = count;
    l->amount_cents = bill_round_div(raw * unit, scale * MICROS_PER_CT);
}

static bill_i128_t kind_scale(bill_kind_t k, int64_t period_ms)
{
    switch (k) {
    case BILL_BASE_FEE:
        return period_ms;
    case BILL_LLM:
        return NANOS_PER_USD;
    case BILL_STORAGE:
        return (bill_i128_t)BYTES_PER_GB * period_ms;
    case BILL_AGENT_HOURS:
        return MS_PER_HOUR;
    case BILL_CREDITS:
        return 100;
    default:
        return 1;
    }
}

void bill_invoice(const bill_t *b, int64_t end, bill_invoice_t *out)
{
    memset(out, 0, sizeof(*out));
    out->period_start = b->period_start;
    out->nominal_end = b->nominal_end;
    out->final = end >= 0;
    out->period_end = end >= 0 ? end : b->nominal_end;
    int64_t period_ms = b->nominal_end - b->period_start;
    if (period_ms <= 0)
        period_ms = 1;
    /* base fees: the stretches grouped by (tier, fee), in order of first appearance */
    for (size_t i = 0; i < b->nstretches; i++) {
        const bill_stretch_t *s = &b->stretches[i];
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(b->stretches[j].tier, s->tier) == 0 &&
                   b->stretches[j].fee_micros == s->fee_micros;
        if (seen)
            continue;
        bill_i128_t ms = 0;
        for (size_t j = i; j < b->nstretches; j++) {
            const bill_stretch_t *u = &b->stretches[j];
            if (strcmp(u->tier, s->tier) != 0 || u->fee_micros != s->fee_micros)
                continue;
            int64_t to = j + 1 < b->nstretches ? b->stretches[j + 1].from : out->period_end;
            if (to > out->period_end)
                to = out->period_end;
            if (to > u->from)
                ms += to - u->from;
        }
        add_line(out, BILL_BASE_FEE, s->tier, s->fee_micros, ms, period_ms, 0);
    }
    for (bill_kind_t k = BILL_ONE_TIME_FEE; k < BILL_CREDITS; k++)
        for (size_t i = 0; i < b->nitems; i++)
            if (b->items[i].kind == k)
                add_line(out, k, b->items[i].detail, b->items[i].unit_price_micros, b->items[i].raw,
                         kind_scale(k, period_ms), b->items[i].count);
    for (size_t i = 0; i < out->n; i++)
        out->subtotal_cents += out->lines[i].amount_cents;
    int64_t usable = b->credits_micros > 0 ? b->credits_micros / MICROS_PER_CT : 0;
    out->credits_cents = usable < out->subtotal_cents ? usable : out->subtotal_cents;
    if (out->credits_cents < 0)
        out->credits_cents = 0;
    add_line(out, BILL_CREDITS, "", -1000000, out->credits_cents, 100, 0);
    out->total_cents = out->subtotal_cents - out->credits_cents;
}

/* USD from micro-USD: at least 2 decimals, up to 6 ("$50.00", "$0.001"). */
static void fmt_usd(char *buf, size_t len, int64_t micros)
{
    int64_t a = micros < 0 ? -micros : micros;
    char frac[8];
    snprintf(frac, sizeof(frac), "%06lld", (long long)(a % 1000000));
    int keep = 6;
    while (keep > 2 && frac[keep - 1] == '0')
        keep--;
    snprintf(buf, len, "%s$%lld.%.*s", micros < 0 ? "-" : "", (long long)(a / 1000000), keep, frac);
}

/* raw / scale with `decimals` decimals, rounded half-up (raw >= 0). */
static void fmt_frac(char *buf, size_t len, bill_i128_t raw, bill_i128_t scale, int decimals)
{
    bill_i128_t pow = 1;
    for (int i = 0; i < decimals; i++)
        pow *= 10;
    bill_i128_t v = (2 * raw * pow + scale) / (2 * scale);
    char whole[48];
    bill_i128_text(v / pow, whole);
    char frac[48];
    bill_i128_text(v % pow + pow, frac); /* leading 1 keeps the zeros */
    snprintf(buf, len, "%s.%s", whole, frac + 1);
}

void bill_describe(const bill_line_t *l, char *buf, size_t len)
{
    char price[32], q[112];
    fmt_usd(price, sizeof(price), l->unit_price_micros);
    switch (l->kind) {
    case BILL_BASE_FEE:
        fmt_frac(q, sizeof(q), l->raw, l->scale, 6);
        snprintf(buf, len, "%s base fee at %s per period for %s of the period", l->detail, price,
                 q);
        break;
    case BILL_ONE_TIME_FEE:
        snprintf(buf, len, "%s one-time fee", l->detail);
        break;
    case BILL_WORKFLOW_OVERAGE:
        bill_i128_text(l->raw, q);
        snprintf(buf, len, "%s %s workflow%s billed at %s each (beyond the quota; PAYG: all)", q,
                 l->detail, l->raw == 1 ? "" : "s", price);
        break;
    case BILL_LLM:
        fmt_frac(q, sizeof(q), l->raw, l->scale, 9);
        snprintf(buf, len, "LLM usage: %lld calls, provider cost $%s, billed at %s per $1",
                 (long long)l->count, q, price);
        break;
    case BILL_API_CALLS:
        bill_i128_text(l->raw, q);
        snprintf(buf, len, "%s API calls at %s", q, price);
        break;
    case BILL_STORAGE:
        fmt_frac(q, sizeof(q), l->raw, l->scale, 6);
        snprintf(buf, len, "storage beyond the included limit: %s GB-months at %s", q, price);
        break;
    case BILL_AGENT_HOURS:
        fmt_frac(q, sizeof(q), l->raw, l->scale, 6);
        snprintf(buf, len, "agent-hours beyond the included hours: %s h at %s", q, price);
        break;
    default:
        snprintf(buf, len, "prepaid credits applied");
        break;
    }
}

void bill_invoice_free(bill_invoice_t *inv)
{
    free(inv->lines);
    inv->lines = NULL;
    inv->n = inv->cap = 0;
}

void bill_settle(bill_t *b, const bill_invoice_t *final)
{
    b->credits_micros -= final->credits_cents * MICROS_PER_CT;
}

/* ---------- budget events ---------- */

bool bill_watching(const bill_t *b)
{
    return b->budget_micros > 0 || b->credits_micros >= MICROS_PER_CT;
}

static void alert(bill_alert_t *out, size_t cap, size_t *n, bill_alert_t a)
{
    if (*n < cap)
        out[(*n)++] = a;
}

void bill_check(bill_t *b, bool quota_reached, bill_alert_t *out, size_t cap, size_t *n)
{
    bool want_quota = quota_reached && !(b->exceeded & (1u << BILL_REASON_WORKFLOW_QUOTA));
    if (!want_quota && !bill_watching(b))
        return;
    bill_invoice_t inv;
    bill_invoice(b, -1, &inv);
    int64_t spend = inv.subtotal_cents * MICROS_PER_CT;
    bill_invoice_free(&inv);
    bill_alert_t base = {
        .period_start = b->period_start, .spend_micros = spend, .limit_micros = b->budget_micros};
    if (want_quota) {
        b->exceeded |= 1u << BILL_REASON_WORKFLOW_QUOTA;
        bill_alert_t a = base;
        a.kind = BILL_EXCEEDED;
        a.reason = BILL_REASON_WORKFLOW_QUOTA;
        alert(out, cap, n, a);
    }
    if (b->budget_micros > 0) {
        /* warnings ascending, each threshold once */
        for (int32_t t = 1; t < 100; t++) {
            bool listed = false;
            for (uint32_t i = 0; i < b->nthresholds && !listed; i++)
                listed = b->thresholds[i] == t;
            if (!listed || (b->warned[t / 64] >> (t % 64) & 1))
                continue;
            if ((bill_i128_t)spend * 100 >= (bill_i128_t)b->budget_micros * t) {
                b->warned[t / 64] |= 1ull << (t % 64);
                bill_alert_t a = base;
                a.kind = BILL_WARNING;
                a.threshold = t;
                alert(out, cap, n, a);
            }
        }
        if (spend >= b->budget_micros && !(b->exceeded & (1u << BILL_REASON_BUDGET))) {
            b->exceeded |= 1u << BILL_REASON_BUDGET;
            bill_alert_t a = base;
            a.kind = BILL_EXCEEDED;
            a.reason = BILL_REASON_BUDGET;
            alert(out, cap, n, a);
        }
    }
    /* credits apply in whole cents: a balance under a cent has nothing left to run out of */
    int64_t usable = b->credits_micros > 0 ? b->credits_micros / MICROS_PER_CT * MICROS_PER_CT : 0;
    if (usable > 0 && spend >= usable && !(b->exceeded & (1u << BILL_REASON_CREDITS))) {
        b->exceeded |= 1u << BILL_REASON_CREDITS;
        bill_alert_t a = base;
        a.kind = BILL_EXCEEDED;
        a.reason = BILL_REASON_CREDITS;
        a.limit_micros = b->credits_micros;
        alert(out, cap, n, a);
    }
}

/* ---------- snapshot ---------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_i128(msgpack_packer *pk, bill_i128_t v)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_int64(pk, (int64_t)(v >> 64));
    msgpack_pack_uint64(pk, (uint64_t)v);
}

void bill_pack(msgpack_packer *pk, const bill_t *b)
{
    msgpack_pack_array(pk, SNAPSHOT_FIELDS);
    msgpack_pack_int64(pk, b->period_start);
    msgpack_pack_int64(pk, b->nominal_end);
    msgpack_pack_array(pk, b->nstretches);
    for (size_t i = 0; i < b->nstretches; i++) {
        msgpack_pack_array(pk, 4);
        msgpack_pack_int64(pk, b->stretches[i].from);
        pack_str(pk, b->stretches[i].tier);
        pack_str(pk, b->stretches[i].promo);
        msgpack_pack_int64(pk, b->stretches[i].fee_micros);
    }
    msgpack_pack_array(pk, b->nitems);
    for (size_t i = 0; i < b->nitems; i++) {
        msgpack_pack_array(pk, 5);
        msgpack_pack_int64(pk, b->items[i].kind);
        pack_str(pk, b->items[i].detail);
        msgpack_pack_int64(pk, b->items[i].unit_price_micros);
        pack_i128(pk, b->items[i].raw);
        msgpack_pack_int64(pk, b->items[i].count);
    }
    msgpack_pack_array(pk, BILL_METERS);
    for (int m = 0; m < BILL_METERS; m++)
        msgpack_pack_int64(pk, b->meters[m]);
    pack_i128(pk, b->storage_byte_ms);
    msgpack_pack_int64(pk, b->agent_ms);
    msgpack_pack_uint64(pk, b->warned[0]);
    msgpack_pack_uint64(pk, b->warned[1]);
    msgpack_pack_uint64(pk, b->exceeded);
    msgpack_pack_int64(pk, b->credits_micros);
    msgpack_pack_int64(pk, b->budget_micros);
    msgpack_pack_array(pk, b->nthresholds);
    for (uint32_t i = 0; i < b->nthresholds; i++)
        msgpack_pack_int64(pk, b->thresholds[i]);
    msgpack_pack_int64(pk, b->storage_bytes);
    msgpack_pack_int64(pk, b->storage_since);
    msgpack_pack_array(pk, b->npaid_once);
    for (uint32_t i = 0; i < b->npaid_once; i++)
        pack_str(pk, b->paid_once[i]);
    /* reserved, so that a later field does not need a new snapshot version */
    for (int i = 16; i < SNAPSHOT_FIELDS; i++)
        msgpack_pack_nil(pk);
}

static int get_name(const msgpack_object *o, char *dst, uint32_t max)
{
    const char *p;
    uint32_t n;
    if (mpget_str(o, &p, &n, max) < 0)
        return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return strlen(dst) == n ? 0 : -1; /* no NUL inside */
}

static int get_i128(const msgpack_object *o, bill_i128_t *out)
{
    const msgpack_object *f;
    uint32_t n;
    int64_t hi;
    uint64_t lo;
    if (mpget_arr(o, 2, 2, &f, &n) < 0 || mpget_i64(&f[0], &hi) < 0 || mpget_u64(&f[1], &lo) < 0)
        return -1;
    *out = (bill_i128_t)(((bill_u128_t)(uint64_t)hi << 64) | lo);
    return 0;
}

int bill_unpack(bill_t *b, const msgpack_object *o)
{
    const msgpack_object *a, *f, *e;
    uint32_t n, k, m;
    bill_t t;
    bill_init(&t);
    uint64_t exceeded;
    if (mpget_arr(o, SNAPSHOT_FIELDS, UINT32_MAX, &a, &n) < 0 ||
        mpget_i64(&a[0], &t.period_start) < 0 || mpget_i64(&a[1], &t.nominal_end) < 0 ||
        t.nominal_end <= t.period_start)
        goto bad;
    if (mpget_arr(&a[2], 0, UINT32_MAX, &f, &k) < 0)
        goto bad;
    for (uint32_t i = 0; i < k; i++) {
        bill_stretch_t s;
        if (mpget_arr(&f[i], 4, 4, &e, &m) < 0 || mpget_i64(&e[0], &s.from) < 0 ||
            get_name(&e[1], s.tier, TIERS_NAME_MAX) < 0 ||
            get_name(&e[2], s.promo, TIERS_NAME_MAX) < 0 || mpget_i64(&e[3], &s.fee_micros) < 0 ||
            (t.nstretches && s.from <= t.stretches[t.nstretches - 1].from))
            goto bad;
        t.stretches = grow(t.stretches, t.nstretches, &t.capstretches, 4, sizeof(s));
        t.stretches[t.nstretches++] = s;
    }
    if (mpget_arr(&a[3], 0, UINT32_MAX, &f, &k) < 0)
        goto bad;
    for (uint32_t i = 0; i < k; i++) {
        bill_item_t it;
        int64_t kind;
        memset(&it, 0, sizeof(it));
        if (mpget_arr(&f[i], 5, 5, &e, &m) < 0 || mpget_i64(&e[0], &kind) < 0 || kind < 0 ||
            kind >= BILL_CREDITS || kind == BILL_BASE_FEE ||
            get_name(&e[1], it.detail, BILL_DETAIL_MAX) < 0 ||
            mpget_i64(&e[2], &it.unit_price_micros) < 0 || get_i128(&e[3], &it.raw) < 0 ||
            mpget_i64(&e[4], &it.count) < 0)
            goto bad;
        it.kind = (bill_kind_t)kind;
        t.items = grow(t.items, t.nitems, &t.capitems, 8, sizeof(it));
        t.items[t.nitems++] = it;
    }
    if (mpget_arr(&a[4], BILL_METERS, BILL_METERS, &f, &k) < 0)
        goto bad;
    for (int i = 0; i < BILL_METERS; i++)
        if (mpget_i64(&f[i], &t.meters[i]) < 0)
            goto bad;
    if (get_i128(&a[5], &t.storage_byte_ms) < 0 || mpget_i64(&a[6], &t.agent_ms) < 0 ||
        mpget_u64(&a[7], &t.warned[0]) < 0 || mpget_u64(&a[8], &t.warned[1]) < 0 ||
        mpget_u64(&a[9], &exceeded) < 0 || exceeded > UINT32_MAX ||
        mpget_i64(&a[10], &t.credits_micros) < 0 || mpget_i64(&a[11], &t.budget_micros) < 0 ||
        mpget_arr(&a[12], 0, WIRE_MAX_THRESHOLDS, &f, &k) < 0)
        goto bad;
    t.exceeded = (uint32_t)exceeded;
    t.nthresholds = k;
    for (uint32_t i = 0; i < k; i++) {
        int64_t v;
        if (mpget_i64(&f[i], &v) < 0 || v < 1 || v > 100)
            goto bad;
        t.thresholds[i] = (int32_t)v;
    }
    if (mpget_i64(&a[13], &t.storage_bytes) < 0 || mpget_i64(&a[14], &t.storage_since) < 0 ||
        mpget_arr(&a[15], 0, BILL_MAX_ONE_TIME, &f, &k) < 0)
        goto bad;
    for (uint32_t i = 0; i < k; i++)
        if (get_name(&f[i], t.paid_once[i], TIERS_NAME_MAX) < 0)
            goto bad;
    t.npaid_once = k;
    bill_destroy(b);
    *b = t;
    return 0;
bad:
    bill_destroy(&t);
    return -1;
}
