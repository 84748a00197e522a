/*
 * idset — the set of applied event identities of one partition, for exactly-once application.
 *
 * Pure. An identity is the 128-bit XXH3 hash of (org, 0xFF, id): 0xFF never occurs in UTF-8, so
 * the pair is encoded unambiguously, and at 128 bits an accidental collision is out of reach
 * (about 10^-20 after 10^9 events). Open addressing with linear probing over 16-byte slots, load
 * at most 1/2, so a look-up is one or two cache lines. The all-zero hash marks an empty slot;
 * idset_hash never returns it.
 */
#ifndef METERD_IDSET_H
#define METERD_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t hi, lo;
} idhash_t;

typedef struct idset idset_t;

/* The identity of event `id` of organization `org`. */
idhash_t idset_hash(const char *org, size_t org_len, const char *id, size_t id_len);

/* 16 bytes, big-endian hi then lo: how an identity is stored in applied_event_ids.ids. */
void idhash_to_bytes(idhash_t h, uint8_t out[16]);
idhash_t idhash_from_bytes(const uint8_t in[16]);

/* A new empty set sized for `expected` entries; NULL when out of memory. */
idset_t *idset_new(size_t expected);
void idset_free(idset_t *s);

/* Adds h. Returns 1 if added, 0 if already present, -1 when out of memory (set unchanged). */
__attribute__((warn_unused_result)) int idset_add(idset_t *s, idhash_t h);
bool idset_contains(const idset_t *s, idhash_t h);
size_t idset_size(const idset_t *s);

#endif
