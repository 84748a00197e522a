/*
 * test_pgcopy — unit tests of the binary COPY encoder (daemon/pgcopy.c).
 *
 * Every field type is checked byte for byte against PostgreSQL's documented binary format
 * ("COPY ... Binary Format"; int4/int8 in network order, bool one byte, uuid 16 bytes, NULL as
 * length -1, timestamptz as int8 microseconds since 2000-01-01 UTC). The expected bytes are
 * written out literally; the large-buffer test decodes what it encoded with an independent
 * reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgcopy.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void assert_bytes(const pgcopy_t *b, const void *want, size_t n)
{
    if (b->len != n)
        print_error("length %zu, want %zu\n", b->len, n);
    assert_int_equal(b->len, n);
    assert_false(b->oom);
    assert_memory_equal(b->p, want, n);
}

static void test_init_close(void **state)
{
    (void)state;
    pgcopy_t b;
    memset(&b, 0xab, sizeof(b));
    pgcopy_init(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_false(b.oom);
    pgcopy_int4(&b, 1);
    assert_non_null(b.p);
    pgcopy_close(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    pgcopy_close(&b); /* closing twice is harmless */
}

static void test_header_trailer(void **state)
{
    (void)state;
    pgcopy_t b;
    pgcopy_init(&b);
    pgcopy_header(&b);
    static const uint8_t header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n',
                                       0,   0,   0,   0,   0,   0,   0,    0,    0};
    assert_bytes(&b, header, sizeof(header));
    pgcopy_reset(&b);
    pgcopy_trailer(&b);
    static const uint8_t trailer[2] = {0xff, 0xff};
    assert_bytes(&b, trailer, 2);
    pgcopy_close(&b);
}

/* One encoded field per row of the table: the call and the bytes it must produce. */
typedef enum { F_ROW, F_INT4, F_INT8, F_BOOL, F_TEXT, F_UUID, F_TS, F_NULL } field_t;

static void encode(pgcopy_t *b, field_t f, int64_t i, const char *s, size_t slen)
{
    switch (f) {
    case F_ROW:
        pgcopy_row(b, (int16_t)i);
        break;
    case F_INT4:
        pgcopy_int4(b, (int32_t)i);
        break;
    case F_INT8:
        pgcopy_int8(b, i);
        break;
    case F_BOOL:
        pgcopy_bool(b, i != 0);
        break;
    case F_TEXT:
        pgcopy_text(b, s, slen);
        break;
    case F_UUID:
        pgcopy_uuid(b, (const uint8_t *)s);
        break;
    case F_TS:
        pgcopy_timestamptz_ms(b, i);
        break;
    case F_NULL:
        pgcopy_null(b);
        break;
    }
}

static void test_fields(void **state)
{
    (void)state;
    static const uint8_t uuid[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    static const struct {
        const char *name;
        field_t f;
        int64_t i;
        const char *s;
        size_t slen;
        size_t n;
        uint8_t want[32];
    } cases[] = {
        {"row 3", F_ROW, 3, NULL, 0, 2, {0x00, 0x03}},
        {"row 13", F_ROW, 13, NULL, 0, 2, {0x00, 0x0d}},
        {"row 0x1234", F_ROW, 0x1234, NULL, 0, 2, {0x12, 0x34}},
        {"int4 0", F_INT4, 0, NULL, 0, 8, {0, 0, 0, 4, 0, 0, 0, 0}},
        {"int4 0x01020304", F_INT4, 0x01020304, NULL, 0, 8, {0, 0, 0, 4, 1, 2, 3, 4}},
        {"int4 -2", F_INT4, -2, NULL, 0, 8, {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe}},
        {"int4 min", F_INT4, INT32_MIN, NULL, 0, 8, {0, 0, 0, 4, 0x80, 0, 0, 0}},
        {"int8 0x0102030405060708",
         F_INT8,
         0x0102030405060708LL,
         NULL,
         0,
         12,
         {0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}},
        {"int8 -1",
         F_INT8,
         -1,
         NULL,
         0,
         12,
         {0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
        {"int8 -256",
         F_INT8,
         -256,
         NULL,
         0,
         12,
         {0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}},
        {"int8 min", F_INT8, INT64_MIN, NULL, 0, 12, {0, 0, 0, 8, 0x80, 0, 0, 0, 0, 0, 0, 0}},
        {"bool true", F_BOOL, 1, NULL, 0, 5, {0, 0, 0, 1, 1}},
        {"bool false", F_BOOL, 0, NULL, 0, 5, {0, 0, 0, 1, 0}},
        {"text", F_TEXT, 0, "gpt-4o", 6, 10, {0, 0, 0, 6, 'g', 'p', 't', '-', '4', 'o'}},
        {"text prefix of a longer buffer", F_TEXT, 0, "abcdef", 2, 6, {0, 0, 0, 2, 'a', 'b'}},
        {"text empty", F_TEXT, 0, "", 0, 4, {0, 0, 0, 0}},
        {"text utf-8", F_TEXT, 0, "h\xc3\xa9", 3, 7, {0, 0, 0, 3, 'h', 0xc3, 0xa9}},
        {"uuid", F_UUID, 0, (const char *)uuid, 16, 20, {0,    0,    0,    16,   0x00, 0x11, 0x22,
                                                         0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99,
                                                         0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}},
        {"null", F_NULL, 0, NULL, 0, 4, {0xff, 0xff, 0xff, 0xff}},
        /* timestamptz: Unix ms → µs since 2000-01-01T00:00:00Z. */
        {"ts pg epoch", F_TS, 946684800000LL, NULL, 0, 12, {0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}},
        {"ts pg epoch + 1 ms",
         F_TS,
         946684800001LL,
         NULL,
         0,
         12,
         {0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8}},
        /* -946684800000000 µs */
        {"ts unix epoch",
         F_TS,
         0,
         NULL,
         0,
         12,
         {0, 0, 0, 8, 0xff, 0xfc, 0xa2, 0xfe, 0xc4, 0xc8, 0x20, 0x00}},
        /* 2023-11-14T22:13:20.123Z: (1700000000123 - 946684800000) * 1000 µs */
        {"ts 2023",
         F_TS,
         1700000000123LL,
         NULL,
         0,
         12,
         {0, 0, 0, 8, 0x00, 0x02, 0xad, 0x22, 0xdc, 0xe8, 0x40, 0x78}},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        pgcopy_t b;
        pgcopy_init(&b);
        encode(&b, cases[i].f, cases[i].i, cases[i].s, cases[i].slen);
        if (b.len != cases[i].n || memcmp(b.p, cases[i].want, cases[i].n) != 0)
            print_error("case \"%s\" differs\n", cases[i].name);
        assert_bytes(&b, cases[i].want, cases[i].n);
        pgcopy_close(&b);
    }
}

/* A whole stream: header, two rows, trailer, as PostgreSQL would read it. */
static void test_stream(void **state)
{
    (void)state;
    pgcopy_t b;
    pgcopy_init(&b);
    pgcopy_header(&b);
    pgcopy_row(&b, 2);
    pgcopy_int4(&b, 7);
    pgcopy_text(&b, "x", 1);
    pgcopy_row(&b, 2);
    pgcopy_null(&b);
    pgcopy_bool(&b, true);
    pgcopy_trailer(&b);
    static const uint8_t want[] = {
        'P',  'G',  'C',  'O',  'P',  'Y',  '\n', 0xff, '\r', '\n', 0, 0, 0, 0, 0,
        0,    0,    0,    0,                                                         /* */
        0,    2,    0,    0,    0,    4,    0,    0,    0,    7,    0, 0, 0, 1, 'x', /* */
        0,    2,    0xff, 0xff, 0xff, 0xff, 0,    0,    0,    1,    1,               /* */
        0xff, 0xff,
    };
    assert_bytes(&b, want, sizeof(want));
    pgcopy_close(&b);
}

static void test_append(void **state)
{
    (void)state;
    pgcopy_t rows, out;
    pgcopy_init(&rows);
    pgcopy_init(&out);
    pgcopy_row(&rows, 1);
    pgcopy_int8(&rows, 42);
    pgcopy_header(&out);
    size_t hl = out.len;
    pgcopy_append(&out, rows.p, rows.len);
    pgcopy_append(&out, rows.p, rows.len);
    pgcopy_append(&out, NULL, 0); /* nothing to append is fine */
    pgcopy_trailer(&out);
    assert_int_equal(out.len, hl + 2 * rows.len + 2);
    assert_memory_equal(out.p + hl, rows.p, rows.len);
    assert_memory_equal(out.p + hl + rows.len, rows.p, rows.len);
    assert_int_equal((uint8_t)out.p[out.len - 1], 0xff);
    pgcopy_close(&rows);
    pgcopy_close(&out);
}

static void test_reset_keeps_capacity(void **state)
{
    (void)state;
    pgcopy_t b;
    pgcopy_init(&b);
    for (int i = 0; i < 2000; i++)
        pgcopy_int8(&b, i);
    assert_int_equal(b.len, 2000 * 12);
    size_t cap = b.cap;
    char *p = b.p;
    assert_true(cap >= b.len);
    pgcopy_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.p, p);
    pgcopy_int4(&b, -1);
    static const uint8_t want[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
    assert_bytes(&b, want, sizeof(want));
    assert_ptr_equal(b.p, p);
    pgcopy_close(&b);
}

/* Out of memory is sticky until reset: simulated by setting the flag, since the documented
 * contract is that appends after a failed growth do nothing. */
static void test_oom_sticky(void **state)
{
    (void)state;
    pgcopy_t b;
    pgcopy_init(&b);
    pgcopy_int4(&b, 1);
    size_t len = b.len;
    b.oom = true;
    pgcopy_int8(&b, 2);
    pgcopy_text(&b, "abc", 3);
    pgcopy_append(&b, "xyz", 3);
    assert_int_equal(b.len, len);
    assert_true(b.oom);
    pgcopy_reset(&b);
    assert_false(b.oom);
    pgcopy_int4(&b, 1);
    assert_int_equal(b.len, 8);
    pgcopy_close(&b);
}

/* ---- growth, decoded back --------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} reader_t;

static uint64_t rd_be(reader_t *r, int n)
{
    assert_true(r->end - r->p >= n);
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | *r->p++;
    return v;
}

static void test_growth(void **state)
{
    (void)state;
    const int n = 200000;
    pgcopy_t b;
    pgcopy_init(&b);
    size_t last_cap = 0;
    int grows = 0;
    for (int i = 0; i < n; i++) {
        char text[32];
        int tl = snprintf(text, sizeof(text), "row-%d", i);
        pgcopy_row(&b, 4);
        pgcopy_int4(&b, i);
        pgcopy_int8(&b, -(int64_t)i * 1000003);
        pgcopy_text(&b, text, (size_t)tl);
        if (i % 3 == 0)
            pgcopy_null(&b);
        else
            pgcopy_bool(&b, i % 3 == 1);
        if (b.cap != last_cap) {
            grows++;
            last_cap = b.cap;
        }
    }
    assert_false(b.oom);
    assert_true(grows > 5);
    assert_true(b.cap >= b.len);
    reader_t r = {(const uint8_t *)b.p, (const uint8_t *)b.p + b.len};
    for (int i = 0; i < n; i++) {
        char text[32];
        int tl = snprintf(text, sizeof(text), "row-%d", i);
        assert_int_equal(rd_be(&r, 2), 4);
        assert_int_equal(rd_be(&r, 4), 4);
        assert_int_equal((int32_t)rd_be(&r, 4), i);
        assert_int_equal(rd_be(&r, 4), 8);
        assert_int_equal((int64_t)rd_be(&r, 8), -(int64_t)i * 1000003);
        assert_int_equal(rd_be(&r, 4), (uint64_t)tl);
        assert_true(r.end - r.p >= tl);
        assert_memory_equal(r.p, text, (size_t)tl);
        r.p += tl;
        if (i % 3 == 0) {
            assert_int_equal(rd_be(&r, 4), 0xffffffffu);
        } else {
            assert_int_equal(rd_be(&r, 4), 1);
            assert_int_equal(rd_be(&r, 1), i % 3 == 1);
        }
    }
    assert_ptr_equal(r.p, r.end);
    pgcopy_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_close), cmocka_unit_test(test_header_trailer),
        cmocka_unit_test(test_fields),     cmocka_unit_test(test_stream),
        cmocka_unit_test(test_append),     cmocka_unit_test(test_reset_keeps_capacity),
        cmocka_unit_test(test_oom_sticky), cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
