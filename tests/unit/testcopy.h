/*
 * testcopy — reading binary COPY rows (pgcopy's output) back in unit tests. Each read checks
 * the field's declared length and fails the test on anything unexpected.
 */
#ifndef METERD_TESTCOPY_H
#define METERD_TESTCOPY_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pgcopy.h"

#define PG_EPOCH_MS 946684800000LL /* 2000-01-01, PostgreSQL's epoch, in Unix ms */

typedef struct {
    const uint8_t *p, *end;
} reader_t;

static inline reader_t copy_reader(const pgcopy_t *b)
{
    assert_false(b->oom);
    return (reader_t){(const uint8_t *)b->p, (const uint8_t *)b->p + b->len};
}

static inline uint64_t rd_be(reader_t *r, int n)
{
    assert_true(r->end - r->p >= n);
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | *r->p++;
    return v;
}

static inline void rd_row(reader_t *r, int nfields)
{
    assert_int_equal((int16_t)rd_be(r, 2), nfields);
}

static inline int32_t rd_int4(reader_t *r)
{
    assert_int_equal(rd_be(r, 4), 4);
    return (int32_t)rd_be(r, 4);
}

static inline int64_t rd_int8(reader_t *r)
{
    assert_int_equal(rd_be(r, 4), 8);
    return (int64_t)rd_be(r, 8);
}

static inline bool rd_bool(reader_t *r)
{
    assert_int_equal(rd_be(r, 4), 1);
    uint64_t v = rd_be(r, 1);
    assert_true(v == 0 || v == 1);
    return v == 1;
}

/* A text field into out[0..cap) (NUL-terminated). */
static inline void rd_text(reader_t *r, char *out, size_t cap)
{
    uint64_t n = rd_be(r, 4);
    assert_true(n < cap);
    assert_true((uint64_t)(r->end - r->p) >= n);
    memcpy(out, r->p, n);
    out[n] = '\0';
    r->p += n;
}

/* A timestamptz in Unix ms, or -1 for NULL. */
static inline int64_t rd_ts(reader_t *r)
{
    if (r->end - r->p >= 4 && r->p[0] == 0xFF && r->p[1] == 0xFF && r->p[2] == 0xFF &&
        r->p[3] == 0xFF) {
        r->p += 4;
        return -1;
    }
    int64_t us = rd_int8(r);
    assert_int_equal(us % 1000, 0);
    return us / 1000 + PG_EPOCH_MS;
}

#endif
