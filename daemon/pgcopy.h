/*
 * pgcopy — an encoder for PostgreSQL's binary COPY format (COPY ... FROM STDIN (FORMAT binary)).
 *
 * Pure: appends to a growable byte buffer, no I/O. Rows are encoded when events are applied or
 * batches sealed, so that a flush only concatenates buffers. Binary COPY is about twice as fast
 * as text COPY (FACTS.md) and needs no escaping. Values are in network byte order; a
 * timestamptz is microseconds since 2000-01-01 UTC.
 *
 * Out-of-memory is sticky: the first failed growth sets `oom`, later appends do nothing, and
 * the owner checks `oom` once before using the buffer.
 */
#ifndef METERD_PGCOPY_H
#define METERD_PGCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} pgcopy_t;

/* Caller-allocated: pgcopy_init zeroes it, pgcopy_close frees its memory. */
void pgcopy_init(pgcopy_t *b);
void pgcopy_close(pgcopy_t *b);
void pgcopy_reset(pgcopy_t *b); /* empties, keeps the memory */

/* Appends raw bytes (e.g. rows encoded into another buffer). */
void pgcopy_append(pgcopy_t *b, const void *p, size_t n);

/* The 19-byte file header and the 2-byte trailer that frame a COPY stream. */
void pgcopy_header(pgcopy_t *b);
void pgcopy_trailer(pgcopy_t *b);

/* A row starts with its field count; then one call per field in column order. */
void pgcopy_row(pgcopy_t *b, int16_t nfields);
void pgcopy_int4(pgcopy_t *b, int32_t v);
void pgcopy_int8(pgcopy_t *b, int64_t v);
void pgcopy_bool(pgcopy_t *b, bool v);
void pgcopy_text(pgcopy_t *b, const char *s, size_t len);
void pgcopy_bytea(pgcopy_t *b, const void *p, size_t len);
void pgcopy_uuid(pgcopy_t *b, const uint8_t bytes[16]);
void pgcopy_timestamptz_ms(pgcopy_t *b, int64_t unix_ms);
void pgcopy_null(pgcopy_t *b);

#endif
