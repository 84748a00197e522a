/*
 * wire — decoding and validating input events. See wire.h for the contract and
 * proto/README.md for the protocol as published.
 *
 * Threading: a decoder is used by one thread at a time (the loop thread); it holds no globals,
 * so several decoders may run on several threads.
 *
 * DESIGN
 *
 * Decoding runs in three passes over one event, each of which can refuse it:
 *
 * 1. A pre-scan walks the raw bytes iteratively with an explicit stack of remaining element
 *    counts, at most WIRE_MAX_DEPTH deep. It checks, before anything is allocated, that every
 *    declared str/bin/ext length fits in the bytes that remain, that every array count (and
 *    twice every map count) does too, since each element takes at least one byte, and that
 *    exactly one object fills the buffer. A truncated fixed-size item or header is "malformed";
 *    a declared length or count beyond the input, or nesting too deep, is "limit". After this
 *    pass msgpack-c can allocate at most one msgpack_object per input byte.
 *
 * 2. msgpack_unpack builds the object tree in the decoder's one zone, cleared after every
 *    event: with the default 8 KiB chunk a typical event allocates nothing from the heap.
 *    msgpack_unpack leaves strings pointing into the input buffer, so the event's string views
 *    are those pointers, never copies.
 *
 * 3. The top-level map is walked once: every key must be a string; known keys are matched by
 *    length and memcmp and recorded in a table indexed by field, which detects a known key
 *    given twice; unknown keys are skipped (forward compatibility). Then the fields are
 *    validated in a fixed order, the envelope (v, id, type, org, ts) first, then the fields of
 *    the event's type in the order of the table in proto/README.md, so the first error reported
 *    for a given event never depends on the order of its keys. Fields that the type does not
 *    use are ignored, apart from the duplicate check.
 *
 * Error details may quote a value from the event; they are then printable ASCII only, because
 * they end up in dead-letter headers and logs.
 */
#include "wire.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t: the decision id hashes four pieces */
#include <xxhash.h>

struct wire_decoder {
    msgpack_zone zone;
    size_t max_event_bytes;
};

/* ---- names ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    uint32_t len;
} name_t;

/* clang-format off */
#define NAME(s) {s, sizeof(s) - 1}
/* clang-format on */

static const name_t type_names[WIRE_T_COUNT] = {
    NAME("workflow.started"),
    NAME("workflow.finished"),
    NAME("agent.requested"),
    NAME("agent.finished"),
    NAME("agent.cancelled"),
    NAME("llm.call"),
    NAME("api.call"),
    NAME("storage.report"),
    NAME("subscription.changed"),
    NAME("subscription.cancelled"),
    NAME("credits.added"),
    NAME("pack.purchased"),
    NAME("budget.set"),
};

static const char *const err_names[WIRE_E_COUNT] = {
    "ok",         "too_large",       "malformed",     "limit",       "not_map",
    "bad_key",    "duplicate_field", "missing_field", "wrong_type",  "too_long",
    "bad_string", "out_of_range",    "bad_value",     "bad_version", "unknown_type",
};

static const name_t complexity_names[] = {NAME("small"), NAME("medium"), NAME("large")};
static const name_t status_names[] = {NAME("succeeded"), NAME("failed"), NAME("cancelled")};

const char *wire_type_name(wire_type_t t)
{
    if ((unsigned)t >= WIRE_T_COUNT)
        return "unknown";
    return type_names[t].name;
}

const char *wire_err_name(wire_err_t e)
{
    if ((unsigned)e >= WIRE_E_COUNT)
        return "unknown";
    return err_names[e];
}

const char *wire_complexity_name(wire_complexity_t c)
{
    if ((unsigned)c > WIRE_COMPLEXITY_LARGE)
        return "unknown";
    return complexity_names[c].name;
}

const char *wire_status_name(wire_status_t s)
{
    if ((unsigned)s > WIRE_STATUS_CANCELLED)
        return "unknown";
    return status_names[s].name;
}

/* ---- known fields ----------------------------------------------------------------------- */

typedef enum {
    F_V = 0,
    F_ID,
    F_TYPE,
    F_ORG,
    F_TS,
    F_PROJECT,
    F_WORKFLOW,
    F_COMPLEXITY,
    F_STATUS,
    F_RUN,
    F_PROVIDER,
    F_MODEL,
    F_INPUT_TOKENS,
    F_OUTPUT_TOKENS,
    F_CACHE_READ_TOKENS,
    F_CACHE_WRITE_TOKENS,
    F_BYO,
    F_INTEGRATION,
    F_COUNT,
    F_BYTES,
    F_TIER,
    F_PERIOD_START,
    F_PERIOD_END,
    F_PROMO,
    F_AMOUNT_MICROS,
    F_WORKFLOWS,
    F_MONTHLY_LIMIT_MICROS,
    F_THRESHOLDS,
    F_NFIELDS
} field_t;

#define F_UNKNOWN F_NFIELDS

_Static_assert(F_NFIELDS <= 32, "the seen set is a uint32_t");

static const char *const field_names[F_NFIELDS] = {
    "v",
    "id",
    "type",
    "org",
    "ts",
    "project",
    "workflow",
    "complexity",
    "status",
    "run",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "byo",
    "integration",
    "count",
    "bytes",
    "tier",
    "period_start",
    "period_end",
    "promo",
    "amount_micros",
    "workflows",
    "monthly_limit_micros",
    "thresholds",
};

/* Maps a key to its field by length, then by comparing with the one to three names of that
 * length; the constant-size memcmp calls compile to a few integer compares. */
static field_t field_lookup(const char *p, uint32_t n)
{
#define IS(lit) (memcmp(p, lit, sizeof(lit) - 1) == 0)
    switch (n) {
    case 1:
        return p[0] == 'v' ? F_V : F_UNKNOWN;
    case 2:
        if (IS("id"))
            return F_ID;
        if (IS("ts"))
            return F_TS;
        break;
    case 3:
        if (IS("org"))
            return F_ORG;
        if (IS("run"))
            return F_RUN;
        if (IS("byo"))
            return F_BYO;
        break;
    case 4:
        if (IS("type"))
            return F_TYPE;
        if (IS("tier"))
            return F_TIER;
        break;
    case 5:
        if (IS("model"))
            return F_MODEL;
        if (IS("count"))
            return F_COUNT;
        if (IS("bytes"))
            return F_BYTES;
        if (IS("promo"))
            return F_PROMO;
        break;
    case 6:
        if (IS("status"))
            return F_STATUS;
        break;
    case 7:
        if (IS("project"))
            return F_PROJECT;
        break;
    case 8:
        if (IS("workflow"))
            return F_WORKFLOW;
        if (IS("provider"))
            return F_PROVIDER;
        break;
    case 9:
        if (IS("workflows"))
            return F_WORKFLOWS;
        break;
    case 10:
        if (IS("complexity"))
            return F_COMPLEXITY;
        if (IS("thresholds"))
            return F_THRESHOLDS;
        if (IS("period_end"))
            return F_PERIOD_END;
        break;
    case 11:
        if (IS("integration"))
            return F_INTEGRATION;
        break;
    case 12:
        if (IS("input_tokens"))
            return F_INPUT_TOKENS;
        if (IS("period_start"))
            return F_PERIOD_START;
        break;
    case 13:
        if (IS("output_tokens"))
            return F_OUTPUT_TOKENS;
        if (IS("amount_micros"))
            return F_AMOUNT_MICROS;
        break;
    case 17:
        if (IS("cache_read_tokens"))
            return F_CACHE_READ_TOKENS;
        break;
    case 18:
        if (IS("cache_write_tokens"))
            return F_CACHE_WRITE_TOKENS;
        break;
    case 20:
        if (IS("monthly_limit_micros"))
            return F_MONTHLY_LIMIT_MICROS;
        break;
    default:
        break;
    }
    return F_UNKNOWN;
#undef IS
}

/* ---- errors ----------------------------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int fail(wire_error_t *err, wire_err_t code,
                                                      const char *field, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->field = field;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
    va_end(ap);
    return -1;
}

/* Writes a printable-ASCII rendering of at most 24 bytes of p[0..n) to dst, for details. */
static const char *quote(char *dst, size_t cap, const char *p, uint32_t n)
{
    size_t max = n < 24 ? n : 24, o = 0;
    assert(cap >= 28);
    for (size_t i = 0; i < max; i++) {
        unsigned char c = (unsigned char)p[i];
        dst[o++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    if (n > max) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}

static const char *obj_kind(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "a bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "a float";
    case MSGPACK_OBJECT_STR:
        return "a string";
    case MSGPACK_OBJECT_BIN:
        return "binary";
    case MSGPACK_OBJECT_ARRAY:
        return "an array";
    case MSGPACK_OBJECT_MAP:
        return "a map";
    case MSGPACK_OBJECT_EXT:
        return "an ext";
    }
    return "unknown";
}

/* ---- pass 1: pre-scan ------------------------------------------------------------------- */

static uint64_t read_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Checks that p[0..len) is exactly one msgpack object whose declared sizes fit in the input
 * and whose nesting is at most WIRE_MAX_DEPTH. Returns 0, or -1 with *err filled. */
static int prescan(const uint8_t *p, size_t len, wire_error_t *err)
{
    /* left[0] is a virtual container holding the one top-level object; left[1..top] are the
     * open containers, innermost last, each with its number of elements still to come. */
    size_t left[WIRE_MAX_DEPTH + 1];
    unsigned top = 0;
    size_t pos = 0;

    left[0] = 1;
    for (;;) {
        while (left[top] == 0) {
            if (top == 0)
                goto done;
            top--;
        }
        left[top]--;
        if (pos >= len)
            return fail(err, WIRE_E_MALFORMED, NULL, "truncated: input ends at byte %zu", len);

        size_t at = pos;
        uint8_t b = p[pos++];
        unsigned lenbytes = 0; /* size of the length/count field after b */
        unsigned fixed = 0;    /* fixed payload size, or ext's type byte */
        uint64_t n = 0;        /* declared length or count */
        int kind = 0;          /* 0 scalar, 1 str/bin/ext, 2 array, 3 map */
        const char *what = "";

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            continue;
        if (b <= 0x8f) {
            kind = 3, n = b & 0x0f;
        } else if (b <= 0x9f) {
            kind = 2, n = b & 0x0f;
        } else if (b <= 0xbf) {
            kind = 1, n = b & 0x1f, what = "str";
        } else {
            switch (b) {
            case 0xc1:
                return fail(err, WIRE_E_MALFORMED, NULL, "reserved byte 0xc1 at byte %zu", at);
            case 0xc4:
            case 0xc5:
            case 0xc6:
                kind = 1, lenbytes = 1u << (b - 0xc4), what = "bin";
                break;
            case 0xc7:
            case 0xc8:
            case 0xc9:
                kind = 1, lenbytes = 1u << (b - 0xc7), fixed = 1, what = "ext";
                break;
            case 0xca:
                fixed = 4;
                break;
            case 0xcb:
                fixed = 8;
                break;
            case 0xcc:
            case 0xcd:
            case 0xce:
            case 0xcf:
                fixed = 1u << (b - 0xcc);
                break;
            case 0xd0:
            case 0xd1:
            case 0xd2:
            case 0xd3:
                fixed = 1u << (b - 0xd0);
                break;
            case 0xd4:
            case 0xd5:
            case 0xd6:
            case 0xd7:
            case 0xd8:
                fixed = 1 + (1u << (b - 0xd4));
                break;
            case 0xd9:
            case 0xda:
            case 0xdb:
                kind = 1, lenbytes = 1u << (b - 0xd9), what = "str";
                break;
            case 0xdc:
            case 0xdd:
                kind = 2, lenbytes = 2u << (b - 0xdc);
                break;
            case 0xde:
            case 0xdf:
                kind = 3, lenbytes = 2u << (b - 0xde);
                break;
            default: /* all 256 byte values are handled above */
                assert(0);
                break;
            }
        }

        if (len - pos < (size_t)lenbytes + fixed)
            return fail(err, WIRE_E_MALFORMED, NULL, "truncated: item at byte %zu needs %u bytes",
                        at, 1 + lenbytes + fixed);
        if (lenbytes)
            n = read_be(p + pos, lenbytes);
        pos += (size_t)lenbytes + fixed;
        size_t avail = len - pos;

        if (kind == 1) {
            if (n > avail)
                return fail(err, WIRE_E_LIMIT, NULL,
                            "%s of %" PRIu64 " bytes at byte %zu, only %zu remain", what, n, at,
                            avail);
            pos += (size_t)n;
        } else if (kind >= 2) {
            uint64_t elems = kind == 3 ? 2 * n : n;
            if (top >= WIRE_MAX_DEPTH)
                return fail(err, WIRE_E_LIMIT, NULL, "nesting deeper than %d at byte %zu",
                            WIRE_MAX_DEPTH, at);
            if (elems > avail)
                return fail(err, WIRE_E_LIMIT, NULL,
                            "%s of %" PRIu64 " entries at byte %zu, only %zu bytes remain",
                            kind == 3 ? "map" : "array", n, at, avail);
            left[++top] = (size_t)elems;
        }
    }
done:
    if (pos != len)
        return fail(err, WIRE_E_MALFORMED, NULL, "%zu trailing byte(s) after the event at byte %zu",
                    len - pos, pos);
    return 0;
}

/* ---- pass 3: fields --------------------------------------------------------------------- */

typedef struct {
    const msgpack_object *val[F_NFIELDS]; /* valid where the bit is set in seen */
    uint32_t seen;
    wire_error_t *err;
} fields_t;

/* The value of field f, or NULL when absent or nil. */
static inline const msgpack_object *get(const fields_t *fs, field_t f)
{
    if (!(fs->seen & (1u << f)))
        return NULL;
    const msgpack_object *o = fs->val[f];
    return o->type == MSGPACK_OBJECT_NIL ? NULL : o;
}

static int missing(const fields_t *fs, field_t f)
{
    return fail(fs->err, WIRE_E_MISSING_FIELD, field_names[f], "%s is required", field_names[f]);
}

static int wrong_type(const fields_t *fs, field_t f, const msgpack_object *o, const char *want)
{
    return fail(fs->err, WIRE_E_WRONG_TYPE, field_names[f], "%s is %s, expected %s", field_names[f],
                obj_kind(o), want);
}

/* Returns the offset of the first byte of p[0..n) that is NUL or breaks UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF included), or n when the string is clean. */
static uint32_t utf8_check(const uint8_t *p, uint32_t n)
{
    uint32_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes without NUL at a time: the common case for ids and names. */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ull) ||
                ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c == 0)
                return i;
            i++;
            continue;
        }
        uint32_t need;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return i;
        }
        if (n - i <= need)
            return i;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return i;
        for (uint32_t k = 2; k <= need; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                return i;
        i += need + 1;
    }
    return n;
}

/* Reads string field f into *dst (left empty when absent). Bounds are in bytes. */
static int get_str(const fields_t *fs, field_t f, uint32_t max, bool required, wire_str_t *dst)
{
    const msgpack_object *o = get(fs, f);
    if (!o)
        return required ? missing(fs, f) : 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return wrong_type(fs, f, o, "a string");
    uint32_t n = o->via.str.size;
    if (n == 0)
        return fail(fs->err, WIRE_E_BAD_STRING, field_names[f], "%s is empty", field_names[f]);
    if (n > max)
        return fail(fs->err, WIRE_E_TOO_LONG, field_names[f],
                    "%s is %" PRIu32 " bytes, max %" PRIu32, field_names[f], n, max);
    uint32_t bad = utf8_check((const uint8_t *)o->via.str.ptr, n);
    if (bad != n)
        return fail(fs->err, WIRE_E_BAD_STRING, field_names[f], "%s has %s at byte %" PRIu32,
                    field_names[f], o->via.str.ptr[bad] ? "invalid UTF-8" : "a NUL", bad);
    dst->ptr = o->via.str.ptr;
    dst->len = n;
    return 0;
}

/* Reads an integer object into *v; anything else but an int64 is refused. */
static int as_int(const fields_t *fs, field_t f, const char *label, const msgpack_object *o,
                  int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return fail(fs->err, WIRE_E_OUT_OF_RANGE, field_names[f],
                        "%s is %" PRIu64 ", above int64", label, o->via.u64);
        *v = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    return fail(fs->err, WIRE_E_WRONG_TYPE, field_names[f], "%s is %s, expected an integer", label,
                obj_kind(o));
}

static int check_range(const fields_t *fs, field_t f, const char *label, int64_t v, int64_t min,
                       int64_t max)
{
    if (v < min)
        return fail(fs->err, WIRE_E_OUT_OF_RANGE, field_names[f], "%s is %" PRId64 ", min %" PRId64,
                    label, v, min);
    if (v > max)
        return fail(fs->err, WIRE_E_OUT_OF_RANGE, field_names[f], "%s is %" PRId64 ", max %" PRId64,
                    label, v, max);
    return 0;
}

/* Reads integer field f in [min, max] into *dst. Returns 1 when given, 0 when absent. */
static int get_int(const fields_t *fs, field_t f, int64_t min, int64_t max, bool required,
                   int64_t *dst)
{
    const msgpack_object *o = get(fs, f);
    int64_t v;
    if (!o)
        return required ? missing(fs, f) : 0;
    if (as_int(fs, f, field_names[f], o, &v) || check_range(fs, f, field_names[f], v, min, max))
        return -1;
    *dst = v;
    return 1;
}

/* Reads a string field that must be one of names[0..n) and stores its index in *dst. Returns 1
 * when given, 0 when absent (the caller sets the default), or -1. */
static int get_enum(const fields_t *fs, field_t f, const name_t *names, int n, bool required,
                    const char *allowed, int *dst)
{
    const msgpack_object *o = get(fs, f);
    char q[32];
    if (!o)
        return required ? missing(fs, f) : 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return wrong_type(fs, f, o, "a string");
    for (int i = 0; i < n; i++) {
        if (o->via.str.size == names[i].len &&
            memcmp(o->via.str.ptr, names[i].name, names[i].len) == 0) {
            *dst = i;
            return 1;
        }
    }
    return fail(fs->err, WIRE_E_BAD_VALUE, field_names[f], "%s \"%s\" is not %s", field_names[f],
                quote(q, sizeof(q), o->via.str.ptr, o->via.str.size), allowed);
}

static int get_bool(const fields_t *fs, field_t f, bool *dst)
{
    const msgpack_object *o = get(fs, f);
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return wrong_type(fs, f, o, "a bool");
    *dst = o->via.boolean;
    return 1;
}

static int get_thresholds(const fields_t *fs, wire_event_t *ev)
{
    const msgpack_object *o = get(fs, F_THRESHOLDS);
    char label[24];
    if (!o) {
        ev->n_thresholds = 3;
        ev->thresholds[0] = 50;
        ev->thresholds[1] = 80;
        ev->thresholds[2] = 100;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return wrong_type(fs, F_THRESHOLDS, o, "an array of integers");
    uint32_t n = o->via.array.size;
    if (n < 1 || n > WIRE_MAX_THRESHOLDS)
        return fail(fs->err, WIRE_E_OUT_OF_RANGE, field_names[F_THRESHOLDS],
                    "thresholds has %" PRIu32 " entries, expected 1 to %d", n, WIRE_MAX_THRESHOLDS);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        int64_t v = 0;
        if (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER && e->via.u64 >= 1 && e->via.u64 <= 100) {
            ev->thresholds[i] = (int32_t)e->via.u64;
            continue;
        }
        /* Refused: name the element in the detail. */
        snprintf(label, sizeof(label), "thresholds[%" PRIu32 "]", i);
        if (as_int(fs, F_THRESHOLDS, label, e, &v) == 0)
            check_range(fs, F_THRESHOLDS, label, v, 1, 100);
        return -1;
    }
    ev->n_thresholds = n;
    ev->present |= WIRE_HAS_THRESHOLDS;
    return 0;
}

/* Validates the envelope and the fields of the event's type, in the documented order. */
static int extract(const fields_t *fs, wire_event_t *ev)
{
    const msgpack_object *o;
    int r, e;
    char q[32];

    /* v: any integer but WIRE_VERSION is a version this decoder does not know */
    if (!(o = get(fs, F_V)))
        return missing(fs, F_V);
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 != WIRE_VERSION)
            return fail(fs->err, WIRE_E_BAD_VERSION, "v", "v is %" PRIu64 ", expected %d",
                        o->via.u64, WIRE_VERSION);
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        return fail(fs->err, WIRE_E_BAD_VERSION, "v", "v is %" PRId64 ", expected %d", o->via.i64,
                    WIRE_VERSION);
    } else {
        return wrong_type(fs, F_V, o, "an integer");
    }
    ev->v = WIRE_VERSION;

    if (get_str(fs, F_ID, WIRE_MAX_ID, true, &ev->id))
        return -1;

    /* type */
    if (!(o = get(fs, F_TYPE)))
        return missing(fs, F_TYPE);
    if (o->type != MSGPACK_OBJECT_STR)
        return wrong_type(fs, F_TYPE, o, "a string");
    for (e = 0; e < WIRE_T_COUNT; e++)
        if (o->via.str.size == type_names[e].len &&
            memcmp(o->via.str.ptr, type_names[e].name, type_names[e].len) == 0)
            break;
    if (e == WIRE_T_COUNT)
        return fail(fs->err, WIRE_E_UNKNOWN_TYPE, "type", "type \"%s\" is unknown",
                    quote(q, sizeof(q), o->via.str.ptr, o->via.str.size));
    ev->type = (wire_type_t)e;

    if (get_str(fs, F_ORG, WIRE_MAX_ID, true, &ev->org) < 0)
        return -1;
    if (get_int(fs, F_TS, 1, WIRE_MAX_TS, true, &ev->ts) < 0)
        return -1;

    switch (ev->type) {
    case WIRE_T_WORKFLOW_STARTED:
        if (get_str(fs, F_PROJECT, WIRE_MAX_ID, true, &ev->project) ||
            get_str(fs, F_WORKFLOW, WIRE_MAX_ID, true, &ev->workflow))
            return -1;
        r = get_enum(fs, F_COMPLEXITY, complexity_names, 3, false, "small, medium or large", &e);
        if (r < 0)
            return -1;
        ev->complexity = r ? (wire_complexity_t)e : WIRE_COMPLEXITY_MEDIUM;
        if (r)
            ev->present |= WIRE_HAS_COMPLEXITY;
        break;
    case WIRE_T_WORKFLOW_FINISHED:
        if (get_str(fs, F_WORKFLOW, WIRE_MAX_ID, true, &ev->workflow))
            return -1;
        if (get_enum(fs, F_STATUS, status_names, 3, true, "succeeded, failed or cancelled", &e) < 0)
            return -1;
        ev->status = (wire_status_t)e;
        if (get_str(fs, F_PROJECT, WIRE_MAX_ID, false, &ev->project))
            return -1;
        break;
    case WIRE_T_AGENT_REQUESTED:
        if (get_str(fs, F_PROJECT, WIRE_MAX_ID, true, &ev->project) ||
            get_str(fs, F_RUN, WIRE_MAX_ID, true, &ev->run) ||
            get_str(fs, F_WORKFLOW, WIRE_MAX_ID, false, &ev->workflow))
            return -1;
        break;
    case WIRE_T_AGENT_FINISHED:
    case WIRE_T_AGENT_CANCELLED:
        if (get_str(fs, F_RUN, WIRE_MAX_ID, true, &ev->run) ||
            get_str(fs, F_PROJECT, WIRE_MAX_ID, false, &ev->project))
            return -1;
        break;
    case WIRE_T_LLM_CALL:
        if (get_str(fs, F_PROVIDER, WIRE_MAX_PROVIDER, true, &ev->provider) ||
            get_str(fs, F_MODEL, WIRE_MAX_MODEL, true, &ev->model))
            return -1;
        if (get_int(fs, F_INPUT_TOKENS, 0, WIRE_MAX_TOKENS, true, &ev->input_tokens) < 0 ||
            get_int(fs, F_OUTPUT_TOKENS, 0, WIRE_MAX_TOKENS, true, &ev->output_tokens) < 0)
            return -1;
        if ((r = get_int(fs, F_CACHE_READ_TOKENS, 0, WIRE_MAX_TOKENS, false,
                         &ev->cache_read_tokens)) < 0)
            return -1;
        if (r)
            ev->present |= WIRE_HAS_CACHE_READ;
        if ((r = get_int(fs, F_CACHE_WRITE_TOKENS, 0, WIRE_MAX_TOKENS, false,
                         &ev->cache_write_tokens)) < 0)
            return -1;
        if (r)
            ev->present |= WIRE_HAS_CACHE_WRITE;
        if ((r = get_bool(fs, F_BYO, &ev->byo)) < 0)
            return -1;
        if (r)
            ev->present |= WIRE_HAS_BYO;
        if (get_str(fs, F_PROJECT, WIRE_MAX_ID, false, &ev->project) ||
            get_str(fs, F_WORKFLOW, WIRE_MAX_ID, false, &ev->workflow) ||
            get_str(fs, F_RUN, WIRE_MAX_ID, false, &ev->run))
            return -1;
        break;
    case WIRE_T_API_CALL:
        if (get_str(fs, F_INTEGRATION, WIRE_MAX_ID, true, &ev->integration))
            return -1;
        ev->count = 1;
        if ((r = get_int(fs, F_COUNT, 1, WIRE_MAX_API_COUNT, false, &ev->count)) < 0)
            return -1;
        if (r)
            ev->present |= WIRE_HAS_COUNT;
        if (get_str(fs, F_PROJECT, WIRE_MAX_ID, false, &ev->project))
            return -1;
        break;
    case WIRE_T_STORAGE_REPORT:
        if (get_int(fs, F_BYTES, 0, WIRE_MAX_BYTES, true, &ev->bytes) < 0)
            return -1;
        break;
    case WIRE_T_SUBSCRIPTION_CHANGED:
        if (get_str(fs, F_TIER, WIRE_MAX_TIER, true, &ev->tier))
            return -1;
        if ((r = get_int(fs, F_PERIOD_START, 1, WIRE_MAX_TS, false, &ev->period_start)) < 0)
            return -1;
        if (r)
            ev->present |= WIRE_HAS_PERIOD_START;
        if ((r = get_int(fs, F_PERIOD_END, 1, WIRE_MAX_TS, false, &ev->period_end)) < 0)
            return -1;
        if (r)
            ev->present |= WIRE_HAS_PERIOD_END;
        if ((ev->present & WIRE_HAS_PERIOD_START) && (ev->present & WIRE_HAS_PERIOD_END) &&
            ev->period_start >= ev->period_end)
            return fail(fs->err, WIRE_E_OUT_OF_RANGE, "period_end",
                        "period_end %" PRId64 " is not after period_start %" PRId64, ev->period_end,
                        ev->period_start);
        if (get_str(fs, F_PROMO, WIRE_MAX_TIER, false, &ev->promo))
            return -1;
        break;
    case WIRE_T_SUBSCRIPTION_CANCELLED:
        break;
    case WIRE_T_CREDITS_ADDED:
        if (get_int(fs, F_AMOUNT_MICROS, 1, WIRE_MAX_MICROS, true, &ev->amount_micros) < 0)
            return -1;
        break;
    case WIRE_T_PACK_PURCHASED:
        if (!(o = get(fs, F_WORKFLOWS)))
            return missing(fs, F_WORKFLOWS);
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return fail(fs->err, WIRE_E_BAD_VALUE, "workflows",
                        "workflows is %" PRId64 ", expected 10 or 50", o->via.i64);
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return wrong_type(fs, F_WORKFLOWS, o, "an integer");
        if (o->via.u64 != 10 && o->via.u64 != 50)
            return fail(fs->err, WIRE_E_BAD_VALUE, "workflows",
                        "workflows is %" PRIu64 ", expected 10 or 50", o->via.u64);
        ev->workflows = (int64_t)o->via.u64;
        break;
    case WIRE_T_BUDGET_SET:
        if (get_int(fs, F_MONTHLY_LIMIT_MICROS, 0, WIRE_MAX_MICROS, true,
                    &ev->monthly_limit_micros) < 0 ||
            get_thresholds(fs, ev))
            return -1;
        break;
    case WIRE_T_COUNT:
        assert(0);
        break;
    }
    return 0;
}

/* ---- public ----------------------------------------------------------------------------- */

wire_decoder_t *wire_decoder_new(size_t max_event_bytes)
{
    wire_decoder_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    if (!msgpack_zone_init(&d->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        free(d);
        return NULL;
    }
    d->max_event_bytes = max_event_bytes ? max_event_bytes : WIRE_DEFAULT_MAX_EVENT;
    /* String sizes are uint32_t on the wire and in wire_str_t. */
    if (d->max_event_bytes > UINT32_MAX)
        d->max_event_bytes = UINT32_MAX;
    return d;
}

void wire_decoder_free(wire_decoder_t *d)
{
    if (!d)
        return;
    msgpack_zone_destroy(&d->zone);
    free(d);
}

/* Passes 2 and 3 on a buffer that passed the pre-scan. */
static int decode_fields(wire_decoder_t *d, const char *buf, size_t len, wire_event_t *out,
                         wire_error_t *err)
{
    msgpack_object root;
    size_t off = 0;
    fields_t fs;

    msgpack_unpack_return ur = msgpack_unpack(buf, len, &off, &d->zone, &root);
    if (ur != MSGPACK_UNPACK_SUCCESS) {
        /* After the pre-scan only a failed zone allocation is left. */
        return fail(err, WIRE_E_LIMIT, NULL, "msgpack-c refused the event (%d): out of memory",
                    (int)ur);
    }
    if (root.type != MSGPACK_OBJECT_MAP)
        return fail(err, WIRE_E_NOT_MAP, NULL, "the event is %s, expected a map", obj_kind(&root));

    fs.seen = 0;
    fs.err = err;
    for (uint32_t i = 0; i < root.via.map.size; i++) {
        const msgpack_object_kv *kv = &root.via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            return fail(err, WIRE_E_BAD_KEY, NULL, "key #%" PRIu32 " is %s, expected a string",
                        i + 1, obj_kind(&kv->key));
        field_t f = field_lookup(kv->key.via.str.ptr, kv->key.via.str.size);
        if (f == F_UNKNOWN)
            continue;
        if (fs.seen & (1u << f))
            return fail(err, WIRE_E_DUPLICATE_FIELD, field_names[f], "%s is given twice",
                        field_names[f]);
        fs.seen |= 1u << f;
        fs.val[f] = &kv->val;
    }

    memset(out, 0, sizeof(*out));
    return extract(&fs, out);
}

int wire_decode(wire_decoder_t *d, const void *buf, size_t len, wire_event_t *out,
                wire_error_t *err)
{
    int rc;
    assert(d && out && err && (buf || len == 0));

    err->code = WIRE_OK;
    err->field = NULL;
    err->detail[0] = '\0';
    if (len > d->max_event_bytes)
        return fail(err, WIRE_E_TOO_LARGE, NULL, "the event is %zu bytes, max %zu", len,
                    d->max_event_bytes);
    if (len == 0)
        return fail(err, WIRE_E_MALFORMED, NULL, "the event is empty");
    if (prescan(buf, len, err))
        return -1;
    rc = decode_fields(d, buf, len, out, err);
    msgpack_zone_clear(&d->zone);
    if (rc) {
        assert(err->code != WIRE_OK);
        return -1;
    }
    return 0;
}

int wire_prescan(const void *buf, size_t len)
{
    wire_error_t err;
    return len && prescan(buf, len, &err) == 0 ? 0 : -1;
}

/* ---- output messages ------------------------------------------------------------------------ */

static const char *const decision_names[WIRE_D_COUNT] = {"agent.admitted", "agent.queued",
                                                         "workflow.held", "workflow.released"};

const char *wire_decision_name(wire_decision_type_t t)
{
    return (unsigned)t < WIRE_D_COUNT ? decision_names[t] : "unknown";
}

/* "<prefix>-" and the hex XXH3-128 of the parts, each followed by 0xFF. */
static void output_id(char prefix, const wire_str_t *parts, size_t n,
                      char out[WIRE_OUTPUT_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    static const unsigned char sep = 0xff;
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    for (size_t i = 0; i < n; i++) {
        XXH3_128bits_update(&st, parts[i].ptr, parts[i].len);
        XXH3_128bits_update(&st, &sep, 1);
    }
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    out[0] = prefix;
    out[1] = '-';
    for (int i = 0; i < 16; i++) {
        uint8_t b = (uint8_t)((i < 8 ? h.high64 >> (56 - 8 * i) : h.low64 >> (56 - 8 * (i - 8))));
        out[2 + 2 * i] = hex[b >> 4];
        out[3 + 2 * i] = hex[b & 15];
    }
    out[WIRE_OUTPUT_ID_LEN] = '\0';
}

void wire_decision_id(const wire_decision_t *d, char out[WIRE_OUTPUT_ID_LEN + 1])
{
    const char *type = wire_decision_name(d->type);
    wire_str_t parts[4] = {d->org, d->cause, {type, (uint32_t)strlen(type)}, d->subject};
    output_id('d', parts, 4, out);
}

void wire_budget_event_id(const wire_budget_event_t *b, char out[WIRE_OUTPUT_ID_LEN + 1])
{
    char start[24], what[24];
    const char *type = b->exceeded ? "budget.exceeded" : "budget.warning";
    int ns = snprintf(start, sizeof(start), "%lld", (long long)b->period_start);
    int nw = b->exceeded ? (int)strlen(b->reason)
                         : snprintf(what, sizeof(what), "%d", (int)b->threshold);
    wire_str_t parts[4] = {b->org,
                           {start, (uint32_t)ns},
                           {type, (uint32_t)strlen(type)},
                           {b->exceeded ? b->reason : what, (uint32_t)nw}};
    output_id('b', parts, 4, out);
}

/* A fixed-buffer msgpack writer: msgpack-c's packer over a bounded buffer. */
typedef struct {
    char *p;
    size_t len, cap;
    bool overflow;
} fixbuf_t;

static int fixbuf_write(void *data, const char *buf, size_t len)
{
    fixbuf_t *f = data;
    if (f->len + len > f->cap) {
        f->overflow = true;
        return -1;
    }
    memcpy(f->p + f->len, buf, len);
    f->len += len;
    return 0;
}

static void kv_str(msgpack_packer *pk, const char *k, const char *v, size_t n)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, v, n);
}

static void kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
    msgpack_pack_int64(pk, v);
}

int wire_encode_decision(const wire_decision_t *d, char *out, size_t cap)
{
    fixbuf_t f = {out, 0, cap, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f, fixbuf_write);
    char id[WIRE_OUTPUT_ID_LEN + 1];
    wire_decision_id(d, id);
    const char *type = wire_decision_name(d->type);
    bool agent = d->type == WIRE_D_AGENT_ADMITTED || d->type == WIRE_D_AGENT_QUEUED;
    /* envelope (5) + project + run|workflow + cause + the type's own (1 or 2) */
    msgpack_pack_map(&pk, d->type == WIRE_D_WORKFLOW_HELD ? 10 : 9);
    kv_int(&pk, "v", WIRE_VERSION);
    kv_str(&pk, "id", id, WIRE_OUTPUT_ID_LEN);
    kv_str(&pk, "type", type, strlen(type));
    kv_str(&pk, "org", d->org.ptr, d->org.len);
    kv_int(&pk, "ts", d->ts);
    kv_str(&pk, "project", d->project.ptr, d->project.len);
    kv_str(&pk, agent ? "run" : "workflow", d->subject.ptr, d->subject.len);
    kv_str(&pk, "cause", d->cause.ptr, d->cause.len);
    switch (d->type) {
    case WIRE_D_AGENT_ADMITTED:
    case WIRE_D_WORKFLOW_RELEASED:
        kv_int(&pk, "waited_ms", d->waited_ms);
        break;
    case WIRE_D_AGENT_QUEUED:
        kv_int(&pk, "position", d->position);
        break;
    case WIRE_D_WORKFLOW_HELD:
        kv_str(&pk, "reason", "workflow_quota", 14);
        kv_int(&pk, "position", d->position);
        break;
    default:
        return -1;
    }
    return f.overflow ? -1 : (int)f.len;
}

int wire_encode_budget_event(const wire_budget_event_t *b, char *out, size_t cap)
{
    fixbuf_t f = {out, 0, cap, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f, fixbuf_write);
    char id[WIRE_OUTPUT_ID_LEN + 1];
    wire_budget_event_id(b, id);
    const char *type = b->exceeded ? "budget.exceeded" : "budget.warning";
    msgpack_pack_map(&pk, 10);
    kv_int(&pk, "v", WIRE_VERSION);
    kv_str(&pk, "id", id, WIRE_OUTPUT_ID_LEN);
    kv_str(&pk, "type", type, strlen(type));
    kv_str(&pk, "org", b->org.ptr, b->org.len);
    kv_int(&pk, "ts", b->ts);
    kv_int(&pk, "period_start", b->period_start);
    if (b->exceeded)
        kv_str(&pk, "reason", b->reason, strlen(b->reason));
    else
        kv_int(&pk, "threshold", b->threshold);
    kv_int(&pk, "spend_micros", b->spend_micros);
    kv_int(&pk, "limit_micros", b->limit_micros);
    kv_str(&pk, "cause", b->cause.ptr, b->cause.len);
    return f.overflow ? -1 : (int)f.len;
}
