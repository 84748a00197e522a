/*
 * tiers — the pricing tiers: limits that admission enforces and fees that billing charges.
 * See tiers.h.
 *
 * Pure core: no I/O, no globals of our own, no floating point. One thread parses; a finished
 * table is read-only, so look-ups may run on any thread and allocate nothing.
 *
 * Parsing goes through initext (the checked line reader in front of libinih, shared with
 * pricing and config), which numbers every line and refuses what inih would silently mangle.
 * This file checks section names and values. Each key is described once, in key_table: its
 * name, its kind (how its value is spelled) and where it lands in tier_t; every check and
 * every message is driven by that table, so a new key is one row. A section is checked for
 * missing keys when the next one opens (or at the end of the text), so parsing still stops at
 * the first error in file order; that error names the line of the section's header.
 *
 * Numbers. Counts and percentages go through strtoll behind a leading-digit check (strtoll
 * alone would accept white space, a sign and overflow silently clamped). Dollar amounts go
 * through money_parse_usd_micros. Gigabytes and hours allow three decimals and are scaled to
 * bytes and milliseconds exactly: a thousandth of a GB is 10^6 bytes and a thousandth of an
 * hour is 3600 ms, so "0.5" GB is 500000000 bytes, never a rounded double.
 *
 * Look-up is a linear scan: a table has a handful of tiers, compared by length first.
 */
#include "tiers.h"

#include "initext.h"
#include "pricing.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MICROS_PER_USD  1000000LL
#define MAX_FEE_MICROS  (1000000LL * MICROS_PER_USD) /* $1,000,000 for any one amount */
#define MAX_COUNT       1000000000LL                 /* agents or workflows */
#define MAX_GB          1000000LL                    /* a petabyte */
#define MAX_HOURS       1000000LL
#define MAX_PERCENT     1000LL
#define BYTES_PER_GB    1000000000LL
#define MS_PER_HOUR     3600000LL
#define FIXED_DECIMALS  3  /* of GB and hours */
#define VALUE_SHOW      40 /* bytes of a bad value quoted in a message */
#define PROMO_PREFIX    "promo."
#define PROMO_PREFIX_SZ (sizeof(PROMO_PREFIX) - 1)
#define PROMO_KEY       "monthly_fees"

typedef enum {
    K_COUNT,   /* integer min..MAX_COUNT, or "unlimited" */
    K_OVER,    /* hold | bill */
    K_PERIOD,  /* calendar | subscription */
    K_MONEY,   /* USD, up to 6 decimals -> micro-USD */
    K_GB,      /* GB, up to 3 decimals -> bytes, or "unlimited" */
    K_HOURS,   /* hours, up to 3 decimals -> ms, or "unlimited" */
    K_BOOL,    /* true | false */
    K_PERCENT, /* integer 0..MAX_PERCENT */
} key_kind_t;

#define F(field) offsetof(tier_t, field)

static const struct {
    const char *name;
    key_kind_t kind;
    size_t off;  /* of the int64_t field (K_OVER, K_PERIOD, K_BOOL: unused) */
    int64_t min; /* K_COUNT only */
} key_table[] = {
    {"concurrent_agents", K_COUNT, F(concurrent_agents), 1},
    {"workflows", K_COUNT, F(workflows), 0},
    {"over_quota", K_OVER, 0, 0},
    {"period", K_PERIOD, 0, 0},
    {"base_fee", K_MONEY, F(base_fee_micros), 0},
    {"one_time_fee", K_MONEY, F(one_time_fee_micros), 0},
    {"storage_limit_gb", K_GB, F(storage_limit_bytes), 0},
    {"included_agent_hours", K_HOURS, F(included_agent_ms), 0},
    {"overage_small", K_MONEY, F(overage_micros[0]), 0},
    {"overage_medium", K_MONEY, F(overage_micros[1]), 0},
    {"overage_large", K_MONEY, F(overage_micros[2]), 0},
    {"storage_gb_month", K_MONEY, F(storage_gb_month_micros), 0},
    {"agent_hour", K_MONEY, F(agent_hour_micros), 0},
    {"api_call", K_MONEY, F(api_call_micros), 0},
    {"llm_billed", K_BOOL, 0, 0},
    {"llm_margin_percent", K_PERCENT, F(llm_margin_percent), 0},
};

#undef F

#define N_KEYS (sizeof(key_table) / sizeof(key_table[0]))

/* The tiers PRODUCT.md names; a table that lacks one of them is refused. */
static const char *const required_tiers[] = {"free",     "pro", "team", "enterprise",
                                             "lifetime", "byo", "payg"};

struct tiers {
    tier_t *tiers;
    size_t n, cap;
    tier_promo_t *promos;
    size_t npromos, pcap;
    size_t free_index; /* of the "free" tier */
};

/* One parse in progress: the table so far and the section being read. */
typedef struct {
    tiers_t *t;
    enum { SEC_NONE, SEC_TIER, SEC_PROMO } kind;
    size_t index;                  /* of the current tier or promo */
    char name[TIERS_NAME_MAX + 1]; /* its name without "promo.", for messages */
    int line;                      /* of its header */
    int key_line[N_KEYS];          /* where each key was given, 0 = not yet (tier) */
    int promo_line;                /* where monthly_fees was given, 0 = not yet (promo) */
} parse_ctx_t;

/* Makes room for one more tier or promotion; -1 when out of memory. */
static int reserve_tier(tiers_t *t)
{
    if (t->n < t->cap)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : 8;
    tier_t *p = realloc(t->tiers, cap * sizeof(*p));
    if (!p)
        return -1;
    t->tiers = p;
    t->cap = cap;
    return 0;
}

static int reserve_promo(tiers_t *t)
{
    if (t->npromos < t->pcap)
        return 0;
    size_t cap = t->pcap ? t->pcap * 2 : 4;
    tier_promo_t *p = realloc(t->promos, cap * sizeof(*p));
    if (!p)
        return -1;
    t->promos = p;
    t->pcap = cap;
    return 0;
}

static const tier_t *find_tier(const tiers_t *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->tiers[i].name_len == len && memcmp(t->tiers[i].name, name, len) == 0)
            return &t->tiers[i];
    }
    return NULL;
}

static const tier_promo_t *find_promo(const tiers_t *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->npromos; i++) {
        if (t->promos[i].name_len == len && memcmp(t->promos[i].name, name, len) == 0)
            return &t->promos[i];
    }
    return NULL;
}

/* ---------- values ---------- */

/* A non-negative decimal integer, digits only, into *out; -1 when malformed or over max. */
static int parse_int(const char *s, int64_t max, int64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1; /* empty, sign, white space: strtoll would take the last two */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* A non-negative decimal with at most FIXED_DECIMALS decimals ("2", "0.5", "1.125") scaled
 * exactly: *out = value * scale, where scale is a multiple of 1000. -1 when malformed or when
 * the whole part is over max_whole. */
static int parse_fixed3(const char *s, int64_t max_whole, int64_t scale, int64_t *out)
{
    assert(scale % 1000 == 0 && max_whole <= INT64_MAX / scale - 1);
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    long long whole = strtoll(s, &end, 10);
    if (errno != 0 || whole > max_whole)
        return -1;
    int64_t milli = 0;
    if (*end == '.') {
        int decimals = 0;
        for (end++; *end >= '0' && *end <= '9'; end++) {
            if (++decimals > FIXED_DECIMALS)
                return -1;
            milli = milli * 10 + (*end - '0');
        }
        if (decimals == 0)
            return -1; /* "3." */
        for (; decimals < FIXED_DECIMALS; decimals++)
            milli *= 10;
    }
    if (*end != '\0')
        return -1;
    int64_t v = (int64_t)whole * scale + milli * (scale / 1000);
    if (v > max_whole * scale)
        return -1; /* "1000000.5" with max 1000000 */
    *out = v;
    return 0;
}

static const char *want_of(key_kind_t kind, int64_t min, char *buf, size_t len)
{
    switch (kind) {
    case K_COUNT:
        snprintf(buf, len, "an integer %lld..%lld or unlimited", (long long)min,
                 (long long)MAX_COUNT);
        return buf;
    case K_OVER:
        return "hold or bill";
    case K_PERIOD:
        return "calendar or subscription";
    case K_MONEY:
        snprintf(buf, len, "USD, digits with at most 6 decimals, at most %lld",
                 (long long)(MAX_FEE_MICROS / MICROS_PER_USD));
        return buf;
    case K_GB:
        snprintf(buf, len, "decimal GB with at most 3 decimals, at most %lld, or unlimited",
                 (long long)MAX_GB);
        return buf;
    case K_HOURS:
        snprintf(buf, len, "hours with at most 3 decimals, at most %lld, or unlimited",
                 (long long)MAX_HOURS);
        return buf;
    case K_BOOL:
        return "true or false";
    case K_PERCENT:
        snprintf(buf, len, "an integer 0..%lld", (long long)MAX_PERCENT);
        return buf;
    }
    return "?";
}

/* Stores one value of key k into tier; -1 when the value is not spelled as the key wants. */
static int set_value(tier_t *tier, size_t k, const char *v)
{
    bool unlimited = strcmp(v, "unlimited") == 0;
    key_kind_t kind = key_table[k].kind;
    int64_t *field = NULL; /* the int64_t member, for the kinds that store one */
    if (kind != K_OVER && kind != K_PERIOD && kind != K_BOOL)
        field = (int64_t *)(void *)((char *)tier + key_table[k].off);
    switch (kind) {
    case K_COUNT:
        if (unlimited) {
            *field = TIERS_UNLIMITED;
            return 0;
        }
        if (parse_int(v, MAX_COUNT, field) != 0 || *field < key_table[k].min)
            return -1;
        return 0;
    case K_OVER:
        if (strcmp(v, "hold") == 0)
            tier->over_quota = TIERS_OVER_HOLD;
        else if (strcmp(v, "bill") == 0)
            tier->over_quota = TIERS_OVER_BILL;
        else
            return -1;
        return 0;
    case K_PERIOD:
        if (strcmp(v, "calendar") == 0)
            tier->period = TIERS_PERIOD_CALENDAR;
        else if (strcmp(v, "subscription") == 0)
            tier->period = TIERS_PERIOD_SUBSCRIPTION;
        else
            return -1;
        return 0;
    case K_MONEY:
        return money_parse_usd_micros(v, MAX_FEE_MICROS, field);
    case K_GB:
        if (unlimited) {
            *field = TIERS_UNLIMITED;
            return 0;
        }
        return parse_fixed3(v, MAX_GB, BYTES_PER_GB, field);
    case K_HOURS:
        if (unlimited) {
            *field = TIERS_UNLIMITED;
            return 0;
        }
        return parse_fixed3(v, MAX_HOURS, MS_PER_HOUR, field);
    case K_BOOL:
        if (strcmp(v, "true") == 0)
            tier->llm_billed = true;
        else if (strcmp(v, "false") == 0)
            tier->llm_billed = false;
        else
            return -1;
        return 0;
    case K_PERCENT:
        return parse_int(v, MAX_PERCENT, field);
    }
    return -1;
}

/* "0.59, 12.99, 12.99" into the promo's months; a message into why[0..len) on error. */
static int parse_fees(tier_promo_t *p, const char *v, char *why, size_t len)
{
    size_t months = 0;
    const char *s = v;
    for (;;) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        const char *e = end;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t n = (size_t)(e - s);
        if (months == TIERS_PROMO_MAX_MONTHS) {
            snprintf(why, len, "more than %d months", TIERS_PROMO_MAX_MONTHS);
            return -1;
        }
        if (n == 0) {
            snprintf(why, len, "empty amount for month %zu", months + 1);
            return -1;
        }
        /* money_parse_usd_micros wants a NUL-terminated amount; a longer one is bad anyway. */
        char amount[32];
        int rc = -1;
        if (n < sizeof(amount)) {
            memcpy(amount, s, n);
            amount[n] = '\0';
            rc = money_parse_usd_micros(amount, MAX_FEE_MICROS, &p->monthly_fee_micros[months]);
        }
        if (rc != 0) {
            snprintf(why, len, "bad amount \"%.*s\" for month %zu",
                     (int)(n < VALUE_SHOW ? n : VALUE_SHOW), s, months + 1);
            return -1;
        }
        months++;
        if (!comma)
            break;
        s = comma + 1;
    }
    p->months = months;
    return 0;
}

/* ---------- sections ---------- */

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len > TIERS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Checks that the section being read has all its keys. Returns 0, or -1 with a message in
 * why[0..len). */
static int close_section(const parse_ctx_t *c, char *why, size_t len)
{
    if (c->kind == SEC_TIER) {
        for (size_t k = 0; k < N_KEYS; k++) {
            if (c->key_line[k] == 0) {
                snprintf(why, len, "[%s] missing key \"%s\" (every tier needs all %zu keys)",
                         c->name, key_table[k].name, N_KEYS);
                return -1;
            }
        }
    } else if (c->kind == SEC_PROMO && c->promo_line == 0) {
        snprintf(why, len, "[" PROMO_PREFIX "%s] missing key \"" PROMO_KEY "\"", c->name);
        return -1;
    }
    return 0;
}

/* A "[name]" or "[promo.name]" header: closes the previous section and opens this one. */
static int on_section(initext_t *ix, void *user, int line, const char *name, size_t len)
{
    parse_ctx_t *c = user;
    char why[256];
    if (close_section(c, why, sizeof(why)) != 0) {
        initext_error(ix, c->line, "%s", why);
        return -1;
    }
    bool promo = len >= PROMO_PREFIX_SZ && memcmp(name, PROMO_PREFIX, PROMO_PREFIX_SZ) == 0;
    const char *base = promo ? name + PROMO_PREFIX_SZ : name;
    size_t blen = promo ? len - PROMO_PREFIX_SZ : len;
    if (!name_ok(base, blen)) {
        initext_error(ix, line,
                      "section [%.*s]: want a tier name or promo.NAME, the name 1..%d bytes of "
                      "a-z, 0-9, _ and -",
                      (int)(len < 80 ? len : 80), name, TIERS_NAME_MAX);
        return -1;
    }
    tiers_t *t = c->t;
    memcpy(c->name, base, blen);
    c->name[blen] = '\0';
    memset(c->key_line, 0, sizeof(c->key_line));
    c->promo_line = 0;
    c->line = line;
    if (promo) {
        if (find_promo(t, base, blen)) {
            initext_error(ix, line, "duplicate section [%.*s]", (int)len, name);
            return -1;
        }
        if (reserve_promo(t) != 0) {
            initext_error(ix, line, "section [%.*s]: out of memory", (int)len, name);
            return -1;
        }
        tier_promo_t *p = &t->promos[t->npromos];
        memset(p, 0, sizeof(*p));
        memcpy(p->name, base, blen);
        p->name_len = (uint32_t)blen;
        c->kind = SEC_PROMO;
        c->index = t->npromos++;
    } else {
        if (find_tier(t, base, blen)) {
            initext_error(ix, line, "duplicate section [%.*s]", (int)len, name);
            return -1;
        }
        if (reserve_tier(t) != 0) {
            initext_error(ix, line, "section [%.*s]: out of memory", (int)len, name);
            return -1;
        }
        tier_t *tier = &t->tiers[t->n];
        memset(tier, 0, sizeof(*tier));
        memcpy(tier->name, base, blen);
        tier->name_len = (uint32_t)blen;
        c->kind = SEC_TIER;
        c->index = t->n++;
    }
    return 0;
}

/* One "key = value" line of a promo section. */
static int promo_entry(initext_t *ix, parse_ctx_t *c, int line, const char *key, const char *value)
{
    const char *sec = c->name;
    if (strcmp(key, PROMO_KEY) != 0) {
        initext_error(ix, line,
                      "[" PROMO_PREFIX "%s] unknown key \"%s\" (a promo has one key, " PROMO_KEY
                      ")",
                      sec, key);
        return -1;
    }
    if (c->promo_line != 0) {
        initext_error(ix, line, "[" PROMO_PREFIX "%s] duplicate key \"%s\" (first at line %d)", sec,
                      key, c->promo_line);
        return -1;
    }
    char why[128];
    if (parse_fees(&c->t->promos[c->index], value, why, sizeof(why)) != 0) {
        initext_error(ix, line,
                      "[" PROMO_PREFIX "%s] key \"%s\": %s (want 1..%d comma-separated USD "
                      "amounts)",
                      sec, key, why, TIERS_PROMO_MAX_MONTHS);
        return -1;
    }
    c->promo_line = line;
    return 0;
}

/* One "key = value" line. */
static int on_entry(initext_t *ix, void *user, int line, const char *section, const char *key,
                    const char *value)
{
    (void)section;
    parse_ctx_t *c = user;
    if (c->kind == SEC_NONE) {
        initext_error(ix, line, "key \"%s\" outside a section (want a [tier] header first)", key);
        return -1;
    }
    if (c->kind == SEC_PROMO)
        return promo_entry(ix, c, line, key, value);

    size_t k = 0;
    while (k < N_KEYS && strcmp(key, key_table[k].name) != 0)
        k++;
    if (k == N_KEYS) {
        initext_error(ix, line, "[%s] unknown key \"%s\"", c->name, key);
        return -1;
    }
    if (c->key_line[k] != 0) {
        initext_error(ix, line, "[%s] duplicate key \"%s\" (first at line %d)", c->name, key,
                      c->key_line[k]);
        return -1;
    }
    if (set_value(&c->t->tiers[c->index], k, value) != 0) {
        char buf[96];
        initext_error(ix, line, "[%s] key \"%s\": bad value \"%.*s\" (want %s)", c->name, key,
                      VALUE_SHOW, value,
                      want_of(key_table[k].kind, key_table[k].min, buf, sizeof(buf)));
        return -1;
    }
    c->key_line[k] = line;
    return 0;
}

/* ---------- the table ---------- */

int tiers_parse(const char *text, size_t len, tiers_t **out, char *err, size_t errlen)
{
    assert(out);
    assert(text || len == 0);
    *out = NULL;
    if (err && errlen > 0)
        err[0] = '\0';

    tiers_t *t = calloc(1, sizeof(*t));
    if (!t) {
        if (err && errlen > 0)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    parse_ctx_t c = {.t = t, .kind = SEC_NONE};
    static const initext_spec_t spec = {
        .on_section = on_section,
        .on_entry = on_entry,
        .syntax_hint = "want [tier], [promo.NAME], key = value, or a ; comment",
    };
    int rc = initext_parse(text, len, &spec, &c, err, errlen);
    if (rc == 0) {
        char why[256];
        if (close_section(&c, why, sizeof(why)) != 0) {
            rc = -1;
            if (err && errlen > 0)
                snprintf(err, errlen, "line %d: %s", c.line, why);
        }
    }
    for (size_t i = 0; i < sizeof(required_tiers) / sizeof(required_tiers[0]) && rc == 0; i++) {
        const char *name = required_tiers[i];
        if (!find_tier(t, name, strlen(name))) {
            rc = -1;
            if (err && errlen > 0)
                snprintf(err, errlen,
                         "missing tier [%s] (free, pro, team, enterprise, lifetime, byo and payg "
                         "are all required)",
                         name);
        }
    }
    size_t one_time = 0;
    for (size_t i = 0; i < t->n && rc == 0; i++)
        one_time += t->tiers[i].one_time_fee_micros > 0;
    if (rc == 0 && one_time > TIERS_MAX_ONE_TIME) {
        rc = -1;
        if (err && errlen > 0)
            snprintf(err, errlen, "%zu tiers have a one_time_fee; at most %d may", one_time,
                     TIERS_MAX_ONE_TIME);
    }
    if (rc != 0) {
        tiers_free(t);
        return -1;
    }
    t->free_index = (size_t)(find_tier(t, "free", 4) - t->tiers);
    *out = t;
    return 0;
}

void tiers_free(tiers_t *t)
{
    if (!t)
        return;
    free(t->tiers);
    free(t->promos);
    free(t);
}

size_t tiers_count(const tiers_t *t)
{
    assert(t);
    return t->n;
}

const tier_t *tiers_at(const tiers_t *t, size_t i)
{
    assert(t && i < t->n);
    return &t->tiers[i];
}

const tier_t *tiers_find(const tiers_t *t, const char *name, size_t len)
{
    assert(t);
    if (len == 0 || len > TIERS_NAME_MAX)
        return NULL;
    assert(name);
    return find_tier(t, name, len);
}

const tier_t *tiers_free_tier(const tiers_t *t)
{
    assert(t && t->free_index < t->n);
    return &t->tiers[t->free_index];
}

const tier_promo_t *tiers_find_promo(const tiers_t *t, const char *name, size_t len)
{
    assert(t);
    if (len == 0 || len > TIERS_NAME_MAX)
        return NULL;
    assert(name);
    return find_promo(t, name, len);
}
