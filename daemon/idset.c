/*
 * idset — open-addressing set of 128-bit identities. See idset.h.
 */
#include "idset.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t for the rare long-key path */
#include <xxhash.h>

struct idset {
    idhash_t *slots;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t size;
};

idhash_t idset_hash(const char *org, size_t org_len, const char *id, size_t id_len)
{
    static const unsigned char sep = 0xff;
    XXH128_hash_t x;
    unsigned char buf[256];
    if (org_len + 1 + id_len <= sizeof(buf)) { /* always, for wire-validated events */
        memcpy(buf, org, org_len);
        buf[org_len] = sep;
        memcpy(buf + org_len + 1, id, id_len);
        x = XXH3_128bits(buf, org_len + 1 + id_len);
    } else {
        XXH3_state_t st;
        XXH3_128bits_reset(&st);
        XXH3_128bits_update(&st, org, org_len);
        XXH3_128bits_update(&st, &sep, 1);
        XXH3_128bits_update(&st, id, id_len);
        x = XXH3_128bits_digest(&st);
    }
    idhash_t h = {x.high64, x.low64};
    if (h.hi == 0 && h.lo == 0)
        h.lo = 1; /* keep the empty marker free; a 2^-128 event */
    return h;
}

void idhash_to_bytes(idhash_t h, uint8_t out[16])
{
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(h.hi >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(h.lo >> (56 - 8 * i));
    }
}

idhash_t idhash_from_bytes(const uint8_t in[16])
{
    idhash_t h = {0, 0};
    for (int i = 0; i < 8; i++) {
        h.hi = (h.hi << 8) | in[i];
        h.lo = (h.lo << 8) | in[8 + i];
    }
    return h;
}

idset_t *idset_new(size_t expected)
{
    idset_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    size_t cap = 1024;
    while (cap < expected * 2)
        cap *= 2;
    s->slots = calloc(cap, sizeof(idhash_t));
    if (!s->slots) {
        free(s);
        return NULL;
    }
    s->mask = cap - 1;
    return s;
}

void idset_free(idset_t *s)
{
    if (!s)
        return;
    free(s->slots);
    free(s);
}

static bool is_empty(idhash_t h)
{
    return h.hi == 0 && h.lo == 0;
}

/* The slot holding h, or the empty slot where it belongs. */
static size_t probe(const idset_t *s, idhash_t h)
{
    size_t i = (size_t)h.lo & s->mask;
    while (!is_empty(s->slots[i]) && (s->slots[i].hi != h.hi || s->slots[i].lo != h.lo))
        i = (i + 1) & s->mask;
    return i;
}

static int grow(idset_t *s)
{
    size_t cap = (s->mask + 1) * 2;
    idhash_t *old = s->slots;
    size_t old_cap = s->mask + 1;
    s->slots = calloc(cap, sizeof(idhash_t));
    if (!s->slots) {
        s->slots = old;
        return -1;
    }
    s->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++)
        if (!is_empty(old[i]))
            s->slots[probe(s, old[i])] = old[i];
    free(old);
    return 0;
}

int idset_add(idset_t *s, idhash_t h)
{
    size_t i = probe(s, h);
    if (!is_empty(s->slots[i]))
        return 0;
    if ((s->size + 1) * 2 > s->mask + 1) {
        if (grow(s) < 0)
            return -1;
        i = probe(s, h);
    }
    s->slots[i] = h;
    s->size++;
    return 1;
}

bool idset_contains(const idset_t *s, idhash_t h)
{
    return !is_empty(s->slots[probe(s, h)]);
}

size_t idset_size(const idset_t *s)
{
    return s->size;
}
