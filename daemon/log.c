/*
 * log — JSON-lines logger. See log.h.
 *
 * Each line is assembled in a stack buffer and written with one fwrite, so lines never
 * interleave even if a helper process shares the stream. Strings are escaped per RFC 8259;
 * bytes that are not printable ASCII are written as \u00XX so that a hostile event id can
 * never break the line structure. A line longer than the buffer is truncated, still valid JSON.
 */
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct log {
    FILE *out;
    log_level_t level;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

log_t *log_new(FILE *out, log_level_t level)
{
    log_t *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return NULL;
    lg->out = out;
    lg->level = level;
    return lg;
}

void log_free(log_t *lg)
{
    free(lg);
}

void log_set_level(log_t *lg, log_level_t level)
{
    lg->level = level;
}

int log_enabled(const log_t *lg, log_level_t level)
{
    return lg && level >= lg->level;
}

int log_level_parse(const char *s, log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n > b->cap)
        n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Writes s[0..n) as a JSON string. When the rest would not fit, stops at a character boundary
 * and still closes the string, so the line stays valid: returns 0 then, 1 when complete. */
static int put_escaped(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (b->len + 2 > b->cap)
        return 0;
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c == '"' || c == '\\' || c == '\n') ? 2 : (c < 0x20 || c >= 0x7f) ? 6 : 1;
        if (b->len + need + 1 > b->cap) { /* + 1: the closing quote */
            put(b, "\"", 1);
            return 0;
        }
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(b, e, 2);
        } else if (c == '\n') {
            put(b, "\\n", 2);
        } else if (c < 0x20 || c >= 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(b, e, 6);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    put(b, "\"", 1);
    return 1;
}

void log_emit(log_t *lg, log_level_t level, const char *msg, const log_kv_t *kvs)
{
    char line[4096];
    /* The tail reserve holds ,"truncated":true}\n should a field not fit. */
    buf_t b = {line, 0, sizeof(line) - 24};
    struct timespec ts;
    struct tm tm;
    char tbuf[48];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(tbuf, sizeof(tbuf), "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000);
    put(&b, tbuf, (size_t)n);
    put(&b, ",\"level\":\"", 10);
    put(&b, level_names[level], strlen(level_names[level]));
    put(&b, "\",\"msg\":", 8);
    /* A message too long for the line is cut (still a valid string) and marked truncated. */
    int truncated = !put_escaped(&b, msg, strlen(msg));
    for (; !truncated && kvs && kvs->kind != LOG_KV_END; kvs++) {
        size_t field_start = b.len;
        put(&b, ",", 1);
        int complete = put_escaped(&b, kvs->key, strlen(kvs->key));
        put(&b, ":", 1);
        if (kvs->kind == LOG_KV_INT) {
            n = snprintf(tbuf, sizeof(tbuf), "%lld", kvs->i);
            put(&b, tbuf, (size_t)n);
        } else if (kvs->s == NULL) {
            put(&b, "null", 4);
        } else {
            complete &= put_escaped(&b, kvs->s, kvs->slen < 0 ? strlen(kvs->s) : (size_t)kvs->slen);
        }
        if (!complete || b.len == b.cap) { /* this field did not fit: drop it and stop */
            b.len = field_start;
            truncated = 1;
            break;
        }
    }
    if (truncated) {
        memcpy(line + b.len, ",\"truncated\":true", 17);
        b.len += 17;
    }
    line[b.len++] = '}';
    line[b.len++] = '\n';
    fwrite(line, 1, b.len, lg->out);
    fflush(lg->out);
}
