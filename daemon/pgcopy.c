/*
 * pgcopy — binary COPY encoder. See pgcopy.h and PostgreSQL's "COPY ... Binary Format".
 */
#include "pgcopy.h"

#include <stdlib.h>
#include <string.h>

/* Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01T00:00:00Z). */
#define PG_EPOCH_SHIFT_US 946684800000000LL

void pgcopy_init(pgcopy_t *b)
{
    memset(b, 0, sizeof(*b));
}

void pgcopy_close(pgcopy_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void pgcopy_reset(pgcopy_t *b)
{
    b->len = 0;
    b->oom = false;
}

static bool reserve(pgcopy_t *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void pgcopy_append(pgcopy_t *b, const void *p, size_t n)
{
    if (n && reserve(b, n)) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

static void be16(pgcopy_t *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    pgcopy_append(b, x, 2);
}

static void be32(pgcopy_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    pgcopy_append(b, x, 4);
}

static void be64(pgcopy_t *b, uint64_t v)
{
    be32(b, (uint32_t)(v >> 32));
    be32(b, (uint32_t)v);
}

void pgcopy_header(pgcopy_t *b)
{
    static const char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
    pgcopy_append(b, sig, sizeof(sig));
    be32(b, 0); /* flags: no OIDs */
    be32(b, 0); /* header extension length */
}

void pgcopy_trailer(pgcopy_t *b)
{
    be16(b, 0xffff);
}

void pgcopy_row(pgcopy_t *b, int16_t nfields)
{
    be16(b, (uint16_t)nfields);
}

void pgcopy_int4(pgcopy_t *b, int32_t v)
{
    be32(b, 4);
    be32(b, (uint32_t)v);
}

void pgcopy_int8(pgcopy_t *b, int64_t v)
{
    be32(b, 8);
    be64(b, (uint64_t)v);
}

void pgcopy_bool(pgcopy_t *b, bool v)
{
    uint8_t x = v ? 1 : 0;
    be32(b, 1);
    pgcopy_append(b, &x, 1);
}

void pgcopy_text(pgcopy_t *b, const char *s, size_t len)
{
    be32(b, (uint32_t)len);
    pgcopy_append(b, s, len);
}

void pgcopy_bytea(pgcopy_t *b, const void *p, size_t len)
{
    be32(b, (uint32_t)len);
    pgcopy_append(b, p, len);
}

void pgcopy_uuid(pgcopy_t *b, const uint8_t bytes[16])
{
    be32(b, 16);
    pgcopy_append(b, bytes, 16);
}

void pgcopy_timestamptz_ms(pgcopy_t *b, int64_t unix_ms)
{
    be32(b, 8);
    be64(b, (uint64_t)(unix_ms * 1000 - PG_EPOCH_SHIFT_US));
}

void pgcopy_null(pgcopy_t *b)
{
    be32(b, 0xffffffffu);
}
