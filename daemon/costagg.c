/*
 * costagg — the cost aggregation map. See costagg.h.
 *
 * Entries are heap blocks holding the entry and its key strings; an open-addressing index of
 * (hash, entry number) finds them. The hash covers every key field, XXH3-64 over the strings
 * with their lengths so that ("ab","c") and ("a","bc") differ.
 */
#include "costagg.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct {
    uint64_t hash;
    uint32_t idx; /* entry number + 1; 0 is empty */
} slot_t;

struct costagg {
    costagg_entry_t **entries;
    size_t n, cap;
    slot_t *slots;
    size_t mask;
};

costagg_t *costagg_new(void)
{
    costagg_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->slots = calloc(256, sizeof(slot_t));
    if (!a->slots) {
        free(a);
        return NULL;
    }
    a->mask = 255;
    return a;
}

void costagg_clear(costagg_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->entries[i]);
    a->n = 0;
    memset(a->slots, 0, (a->mask + 1) * sizeof(slot_t));
}

void costagg_free(costagg_t *a)
{
    if (!a)
        return;
    costagg_clear(a);
    free(a->entries);
    free(a->slots);
    free(a);
}

/* Hashes the key fields laid end to end in a stack buffer (one-shot XXH3 is much faster than
 * the streaming API); keys longer than the buffer, which validated events never have, are
 * hashed in pieces. */
static uint64_t key_hash(const costagg_key_t *k)
{
    unsigned char buf[512];
    uint32_t lens[4] = {k->org_len, k->project_len, k->provider_len, k->model_len};
    const char *strs[4] = {k->org, k->project, k->provider, k->model};
    size_t n = sizeof(lens) + sizeof(k->hour_ms) + 1;
    for (int i = 0; i < 4; i++)
        n += lens[i];
    if (n > sizeof(buf)) {
        uint64_t h = XXH3_64bits(lens, sizeof(lens)) ^ (uint64_t)k->hour_ms ^ k->billable;
        for (int i = 0; i < 4; i++)
            h = XXH3_64bits_withSeed(strs[i], lens[i], h);
        return h;
    }
    size_t off = 0;
    memcpy(buf, lens, sizeof(lens));
    off += sizeof(lens);
    for (int i = 0; i < 4; i++) {
        memcpy(buf + off, strs[i], lens[i]);
        off += lens[i];
    }
    memcpy(buf + off, &k->hour_ms, sizeof(k->hour_ms));
    off += sizeof(k->hour_ms);
    buf[off++] = k->billable;
    return XXH3_64bits(buf, off);
}

static bool same(const costagg_entry_t *e, const costagg_key_t *k)
{
    return e->hour_ms == k->hour_ms && e->billable == k->billable && e->org_len == k->org_len &&
           e->project_len == k->project_len && e->provider_len == k->provider_len &&
           e->model_len == k->model_len && memcmp(e->org, k->org, k->org_len) == 0 &&
           memcmp(e->project, k->project, k->project_len) == 0 &&
           memcmp(e->provider, k->provider, k->provider_len) == 0 &&
           memcmp(e->model, k->model, k->model_len) == 0;
}

static int grow_index(costagg_t *a)
{
    size_t cap = (a->mask + 1) * 2;
    slot_t *slots = calloc(cap, sizeof(slot_t));
    if (!slots)
        return -1;
    for (size_t i = 0; i <= a->mask; i++) {
        if (!a->slots[i].idx)
            continue;
        size_t j = a->slots[i].hash & (cap - 1);
        while (slots[j].idx)
            j = (j + 1) & (cap - 1);
        slots[j] = a->slots[i];
    }
    free(a->slots);
    a->slots = slots;
    a->mask = cap - 1;
    return 0;
}

static char *copy_str(char *dst, const char *s, uint32_t len)
{
    memcpy(dst, s, len);
    dst[len] = '\0';
    return dst;
}

static costagg_entry_t *new_entry(const costagg_key_t *k)
{
    size_t strs = (size_t)k->org_len + k->project_len + k->provider_len + k->model_len + 4;
    costagg_entry_t *e = calloc(1, sizeof(*e) + strs);
    if (!e)
        return NULL;
    char *p = (char *)(e + 1);
    e->org = copy_str(p, k->org, k->org_len);
    p += k->org_len + 1;
    e->project = copy_str(p, k->project, k->project_len);
    p += k->project_len + 1;
    e->provider = copy_str(p, k->provider, k->provider_len);
    p += k->provider_len + 1;
    e->model = copy_str(p, k->model, k->model_len);
    e->org_len = k->org_len;
    e->project_len = k->project_len;
    e->provider_len = k->provider_len;
    e->model_len = k->model_len;
    e->hour_ms = k->hour_ms;
    e->billable = k->billable;
    return e;
}

int costagg_add(costagg_t *a, const costagg_key_t *k, const costagg_vals_t *v)
{
    uint64_t h = key_hash(k);
    size_t i = h & a->mask;
    costagg_entry_t *e = NULL;
    for (; a->slots[i].idx; i = (i + 1) & a->mask) {
        if (a->slots[i].hash == h && same(a->entries[a->slots[i].idx - 1], k)) {
            e = a->entries[a->slots[i].idx - 1];
            break;
        }
    }
    if (!e) {
        if ((a->n + 1) * 2 > a->mask + 1) {
            if (grow_index(a) < 0)
                return -1;
            for (i = h & a->mask; a->slots[i].idx; i = (i + 1) & a->mask)
                ;
        }
        if (a->n == a->cap) {
            size_t cap = a->cap ? a->cap * 2 : 64;
            costagg_entry_t **entries = realloc(a->entries, cap * sizeof(*entries));
            if (!entries)
                return -1;
            a->entries = entries;
            a->cap = cap;
        }
        e = new_entry(k);
        if (!e)
            return -1;
        a->entries[a->n++] = e;
        a->slots[i].hash = h;
        a->slots[i].idx = (uint32_t)a->n;
    }
    e->v.calls += v->calls;
    e->v.input_tokens += v->input_tokens;
    e->v.output_tokens += v->output_tokens;
    e->v.cache_read_tokens += v->cache_read_tokens;
    e->v.cache_write_tokens += v->cache_write_tokens;
    e->v.cost_nanos += v->cost_nanos;
    e->v.unpriced_calls += v->unpriced_calls;
    return 0;
}

size_t costagg_count(const costagg_t *a)
{
    return a->n;
}

const costagg_entry_t *costagg_at(const costagg_t *a, size_t i)
{
    return i < a->n ? a->entries[i] : NULL;
}
