/*
 * log — structured logs: one JSON object per line on stderr (the journal or the container
 * runtime collects it).
 *
 * Loop thread only: the daemon routes librdkafka's own logs through its queues so that every
 * line is written from the loop (see consumer.c). A log_t is a level filter plus an output
 * stream; it holds no other state. Fields are typed key/value pairs so that strings are always
 * escaped and numbers are never quoted:
 *
 *     LOG_INFO(lg, "flush committed", LI("events", n), LS("topic", topic));
 *
 * Secrets never reach a log call: config.c redacts them before anything is printed.
 */
#ifndef METERD_LOG_H
#define METERD_LOG_H

#include <stdint.h>
#include <stdio.h>

typedef enum { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level_t;

typedef enum { LOG_KV_END = 0, LOG_KV_INT, LOG_KV_STR } log_kv_kind_t;

typedef struct {
    const char *key;
    log_kv_kind_t kind;
    long long i;
    const char *s;
    int slen; /* -1: NUL-terminated */
} log_kv_t;

typedef struct log log_t;

/* Creates a logger writing lines of at least `level` to `out` (not owned, not closed). Returns
 * NULL when out of memory. Freed with log_free. */
log_t *log_new(FILE *out, log_level_t level);
void log_free(log_t *lg);
void log_set_level(log_t *lg, log_level_t level);
int log_enabled(const log_t *lg, log_level_t level);

/* Parses "debug", "info", "warn", "error". Returns 0 or -1. */
__attribute__((warn_unused_result)) int log_level_parse(const char *s, log_level_t *out);

/* Writes one line: {"ts":"2026-11-25T08:00:00.123Z","level":"info","msg":...,<fields>}.
 * kvs ends with a LOG_KV_END entry. */
void log_emit(log_t *lg, log_level_t level, const char *msg, const log_kv_t *kvs);

#define LI(k, v)     ((log_kv_t){.key = (k), .kind = LOG_KV_INT, .i = (long long)(v)})
#define LS(k, v)     ((log_kv_t){.key = (k), .kind = LOG_KV_STR, .s = (v), .slen = -1})
#define LSN(k, p, n) ((log_kv_t){.key = (k), .kind = LOG_KV_STR, .s = (p), .slen = (int)(n)})
#define LNONE        ((log_kv_t){.key = NULL, .kind = LOG_KV_END})

#define LOG_AT(lg, lvl, msg, ...)                                                                  \
    do {                                                                                           \
        if (log_enabled((lg), (lvl)))                                                              \
            log_emit((lg), (lvl), (msg), (const log_kv_t[]){__VA_ARGS__, LNONE});                  \
    } while (0)
#define LOG_DEBUG(lg, msg, ...) LOG_AT(lg, LOG_LEVEL_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(lg, msg, ...)  LOG_AT(lg, LOG_LEVEL_INFO, msg, __VA_ARGS__)
#define LOG_WARN(lg, msg, ...)  LOG_AT(lg, LOG_LEVEL_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(lg, msg, ...) LOG_AT(lg, LOG_LEVEL_ERROR, msg, __VA_ARGS__)

#endif
