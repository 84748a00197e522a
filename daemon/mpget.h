/*
 * mpget — checked readers of msgpack-c objects that come back from outside the process (ledger
 * snapshots read from PostgreSQL, which can be edited by hand): each returns 0 and stores the
 * value, or -1 when the object has another type or is out of bounds. Header-only, pure.
 */
#ifndef METERD_MPGET_H
#define METERD_MPGET_H

#include <msgpack.h>
#include <stdint.h>

/* A signed integer that fits int64_t. */
static inline int mpget_i64(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        return -1;
    return 0;
}

/* A non-negative integer. */
static inline int mpget_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    *out = o->via.u64;
    return 0;
}

/* A string of at most max bytes, as a view (not NUL-terminated). */
static inline int mpget_str(const msgpack_object *o, const char **p, uint32_t *n, uint32_t max)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max)
        return -1;
    *p = o->via.str.ptr;
    *n = o->via.str.size;
    return 0;
}

/* An array of n_min..n_max elements. */
static inline int mpget_arr(const msgpack_object *o, uint32_t n_min, uint32_t n_max,
                            const msgpack_object **items, uint32_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < n_min || o->via.array.size > n_max)
        return -1;
    *items = o->via.array.ptr;
    *n = o->via.array.size;
    return 0;
}

#endif
