/*
 * pricing — the LLM price table and the money arithmetic of one call. See pricing.h.
 *
 * Pure core: no I/O, no globals of our own, no floating point. Safe to use from one thread at a
 * time while parsing; a finished table is read-only, so look-ups may run on any thread.
 *
 * Parsing goes through initext, which refuses what libinih would silently mangle (truncated
 * section names: "fireworks/accounts/fireworks/models/qwen3-coder-480b-a35b-instruct" is 67
 * bytes; split long lines; NUL bytes; indented lines) and numbers every line. This file only
 * checks that each section is [provider/model] within the wire bounds and each key a known
 * amount. Parsing stops at the first error, reported with its line, section and key.
 *
 * Look-up. An open-addressing table of entry indexes (linear probing, at most half full) over
 * a growing entry array, hashed with FNV-1a over provider, a 0 byte and model. The hash streams
 * over the two caller strings, so a look-up neither allocates nor copies.
 */
#include "pricing.h"

#include "initext.h"
#include "wire.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_INPUT       (1u << 0)
#define KEY_OUTPUT      (1u << 1)
#define KEY_CACHE_READ  (1u << 2)
#define KEY_CACHE_WRITE (1u << 3)
#define KEY_ALL         (KEY_INPUT | KEY_OUTPUT | KEY_CACHE_READ | KEY_CACHE_WRITE)

#define MICROS_PER_USD 1000000LL
#define MAX_DECIMALS   6
#define SECTION_MAX    (WIRE_MAX_PROVIDER + 1 + WIRE_MAX_MODEL)

typedef struct {
    pricing_rate_t rate;
    uint64_t hash;
    uint16_t provider_len, model_len;
    unsigned seen;              /* KEY_* bits given so far */
    int line;                   /* of the section header, for messages */
    char name[SECTION_MAX + 1]; /* "provider/model", NUL-terminated */
} entry_t;

struct pricing {
    entry_t *entries;
    size_t n, cap;
    uint32_t *slots; /* 0 = empty, else entry index + 1 */
    size_t nslots;   /* power of two, > 2 * n */
};

/* One parse in progress. */
typedef struct {
    pricing_t *p;
    entry_t *cur; /* current section, NULL before the first */
} parse_ctx_t;

static const struct {
    const char *name;
    unsigned bit;
} key_names[] = {
    {"input", KEY_INPUT},
    {"output", KEY_OUTPUT},
    {"cache_read", KEY_CACHE_READ},
    {"cache_write", KEY_CACHE_WRITE},
};

static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t hash_key(const char *provider, size_t provider_len, const char *model,
                         size_t model_len)
{
    static const char sep = '\0';
    uint64_t h = 14695981039346656037ULL;
    h = fnv1a(h, provider, provider_len);
    h = fnv1a(h, &sep, 1);
    return fnv1a(h, model, model_len);
}

static entry_t *find(const pricing_t *p, uint64_t hash, const char *provider, size_t provider_len,
                     const char *model, size_t model_len)
{
    if (p->nslots == 0)
        return NULL;
    size_t mask = p->nslots - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        uint32_t s = p->slots[i];
        if (s == 0)
            return NULL;
        entry_t *e = &p->entries[s - 1];
        if (e->hash == hash && e->provider_len == provider_len && e->model_len == model_len &&
            memcmp(e->name, provider, provider_len) == 0 &&
            memcmp(e->name + provider_len + 1, model, model_len) == 0)
            return e;
    }
}

static void slot_insert(uint32_t *slots, size_t nslots, uint64_t hash, uint32_t value)
{
    size_t mask = nslots - 1;
    size_t i = (size_t)hash & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = value;
}

/* Makes room for one more entry: grows the entry array and, past half load, the slot array. */
static int reserve_one(pricing_t *p)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        entry_t *e = realloc(p->entries, cap * sizeof(*e));
        if (!e)
            return -1;
        p->entries = e;
        p->cap = cap;
    }
    if (2 * (p->n + 1) >= p->nslots) {
        size_t nslots = p->nslots ? p->nslots * 2 : 32;
        uint32_t *slots = calloc(nslots, sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < p->n; i++)
            slot_insert(slots, nslots, p->entries[i].hash, (uint32_t)(i + 1));
        free(p->slots);
        p->slots = slots;
        p->nslots = nslots;
    }
    return 0;
}

static bool name_byte_ok(char ch)
{
    return ch > ' ' && ch < 0x7f; /* printable ASCII, no space */
}

/* A "[provider/model]" line: validates the name and opens a new entry for it. */
static int on_section(initext_t *ix, void *user, int line, const char *name, size_t len)
{
    parse_ctx_t *c = user;
    for (size_t i = 0; i < len; i++) {
        if (!name_byte_ok(name[i])) {
            initext_error(ix, line, "section [%.*s]: want printable ASCII without spaces", (int)len,
                          name);
            return -1;
        }
    }
    const char *slash = memchr(name, '/', len);
    size_t plen = slash ? (size_t)(slash - name) : 0;
    size_t mlen = slash ? len - plen - 1 : 0;
    if (!slash || plen == 0 || mlen == 0) {
        initext_error(ix, line, "section [%.*s]: want [provider/model]", (int)len, name);
        return -1;
    }
    if (plen > WIRE_MAX_PROVIDER || mlen > WIRE_MAX_MODEL) {
        initext_error(ix, line, "section [%.*s]: provider over %d or model over %d bytes", (int)len,
                      name, WIRE_MAX_PROVIDER, WIRE_MAX_MODEL);
        return -1;
    }
    uint64_t hash = hash_key(name, plen, slash + 1, mlen);
    const entry_t *dup = find(c->p, hash, name, plen, slash + 1, mlen);
    if (dup) {
        initext_error(ix, line, "duplicate section [%s] (first at line %d)", dup->name, dup->line);
        return -1;
    }
    if (reserve_one(c->p) != 0) {
        initext_error(ix, line, "section [%.*s]: out of memory", (int)len, name);
        return -1;
    }
    entry_t *e = &c->p->entries[c->p->n];
    memset(e, 0, sizeof(*e));
    e->hash = hash;
    e->provider_len = (uint16_t)plen;
    e->model_len = (uint16_t)mlen;
    e->line = line;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    slot_insert(c->p->slots, c->p->nslots, hash, (uint32_t)(c->p->n + 1));
    c->p->n++;
    c->cur = e;
    return 0;
}

/* One "key = value" line of the current section. */
static int on_entry(initext_t *ix, void *user, int line, const char *section, const char *name,
                    const char *value)
{
    (void)section;
    parse_ctx_t *c = user;
    entry_t *e = c->cur;
    if (!e) {
        initext_error(ix, line, "key \"%s\" outside a section (want [provider/model] first)", name);
        return -1;
    }
    unsigned bit = 0;
    for (size_t i = 0; i < sizeof(key_names) / sizeof(key_names[0]); i++) {
        if (strcmp(name, key_names[i].name) == 0)
            bit = key_names[i].bit;
    }
    if (bit == 0) {
        initext_error(ix, line,
                      "[%s] unknown key \"%s\" (want input, output, cache_read, cache_write)",
                      e->name, name);
        return -1;
    }
    if (e->seen & bit) {
        initext_error(ix, line, "[%s] duplicate key \"%s\"", e->name, name);
        return -1;
    }
    int64_t micros;
    if (money_parse_usd_micros(value, PRICING_MAX_MICROS, &micros) != 0) {
        initext_error(
            ix, line,
            "[%s] key \"%s\": bad amount \"%.40s\" (want USD per 1M tokens, digits with at most "
            "%d decimals, at most %lld)",
            e->name, name, value, MAX_DECIMALS, PRICING_MAX_MICROS / MICROS_PER_USD);
        return -1;
    }
    e->seen |= bit;
    switch (bit) {
    case KEY_INPUT:
        e->rate.input = micros;
        break;
    case KEY_OUTPUT:
        e->rate.output = micros;
        break;
    case KEY_CACHE_READ:
        e->rate.cache_read = micros;
        break;
    default:
        e->rate.cache_write = micros;
        break;
    }
    return 0;
}

int pricing_parse(const char *text, size_t len, pricing_t **out, char *err, size_t errlen)
{
    assert(out);
    assert(text || len == 0);
    *out = NULL;
    if (err && errlen > 0)
        err[0] = '\0';

    pricing_t *p = calloc(1, sizeof(*p));
    if (!p) {
        if (err && errlen > 0)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    parse_ctx_t c = {.p = p, .cur = NULL};
    static const initext_spec_t spec = {
        .on_section = on_section,
        .on_entry = on_entry,
        .syntax_hint = "want [provider/model], key = value, or a ; comment",
    };
    int rc = initext_parse(text, len, &spec, &c, err, errlen);
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        const entry_t *e = &p->entries[i];
        for (size_t k = 0; k < sizeof(key_names) / sizeof(key_names[0]); k++) {
            if (!(e->seen & key_names[k].bit)) {
                if (err && errlen > 0)
                    snprintf(err, errlen,
                             "line %d: [%s] missing key \"%s\" (all of input, output, "
                             "cache_read, cache_write are required)",
                             e->line, e->name, key_names[k].name);
                rc = -1;
                break;
            }
        }
    }
    if (rc == 0 && p->n == 0) {
        rc = -1;
        if (err && errlen > 0)
            snprintf(err, errlen, "no [provider/model] sections in the price table");
    }
    if (rc < 0) {
        pricing_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

void pricing_free(pricing_t *p)
{
    if (!p)
        return;
    free(p->entries);
    free(p->slots);
    free(p);
}

size_t pricing_count(const pricing_t *p)
{
    assert(p);
    return p->n;
}

const pricing_rate_t *pricing_lookup(const pricing_t *p, const char *provider, size_t provider_len,
                                     const char *model, size_t model_len)
{
    assert(p);
    if (provider_len == 0 || provider_len > WIRE_MAX_PROVIDER || model_len == 0 ||
        model_len > WIRE_MAX_MODEL)
        return NULL;
    assert(provider && model);
    const entry_t *e = find(p, hash_key(provider, provider_len, model, model_len), provider,
                            provider_len, model, model_len);
    return e ? &e->rate : NULL;
}

int64_t pricing_cost_nanos(const pricing_rate_t *r, int64_t input_tokens, int64_t output_tokens,
                           int64_t cache_read_tokens, int64_t cache_write_tokens)
{
    assert(r);
    assert(input_tokens >= 0 && input_tokens <= WIRE_MAX_TOKENS);
    assert(output_tokens >= 0 && output_tokens <= WIRE_MAX_TOKENS);
    assert(cache_read_tokens >= 0 && cache_read_tokens <= WIRE_MAX_TOKENS);
    assert(cache_write_tokens >= 0 && cache_write_tokens <= WIRE_MAX_TOKENS);
    assert(r->input >= 0 && r->input <= PRICING_MAX_MICROS);
    assert(r->output >= 0 && r->output <= PRICING_MAX_MICROS);
    assert(r->cache_read >= 0 && r->cache_read <= PRICING_MAX_MICROS);
    assert(r->cache_write >= 0 && r->cache_write <= PRICING_MAX_MICROS);
    _Static_assert(4 * WIRE_MAX_TOKENS * PRICING_MAX_MICROS <= INT64_MAX - 500,
                   "the sum of four token*price terms must fit in int64");

    /* t tokens at p micro-USD per 1e6 tokens cost t * p / 1e6 micro-USD = t * p / 1000 nano-USD.
     * Sum the four exact products first and divide once, so a call is rounded once. */
    int64_t sum = input_tokens * r->input + output_tokens * r->output +
                  cache_read_tokens * r->cache_read + cache_write_tokens * r->cache_write;
    return (sum + 500) / 1000;
}

int money_parse_usd_micros(const char *s, int64_t max_micros, int64_t *out)
{
    assert(s && out);
    assert(max_micros >= 0);
    const int64_t max_whole = max_micros / MICROS_PER_USD;
    int64_t whole = 0;
    size_t i = 0;

    if (s[0] < '0' || s[0] > '9')
        return -1; /* empty, sign, space, leading '.' */
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        whole = whole * 10 + (s[i] - '0');
        if (whole > max_whole)
            return -1; /* also keeps whole * 10 far from overflow */
    }
    int64_t frac = 0;
    int decimals = 0;
    if (s[i] == '.') {
        i++;
        for (; s[i] >= '0' && s[i] <= '9'; i++) {
            if (++decimals > MAX_DECIMALS)
                return -1;
            frac = frac * 10 + (s[i] - '0');
        }
        if (decimals == 0)
            return -1; /* "3." */
    }
    if (s[i] != '\0')
        return -1; /* exponent, comma, space, anything else */
    for (int d = decimals; d < MAX_DECIMALS; d++)
        frac *= 10;
    int64_t micros = whole * MICROS_PER_USD + frac;
    if (micros > max_micros)
        return -1;
    *out = micros;
    return 0;
}
