/*
 * wire — the msgpack wire contract: decoding and validating input events.
 *
 * Pure core: no I/O, no loop, no globals. A decoder owns one reusable msgpack zone, so decoding
 * allocates nothing per event once warmed up. Before msgpack-c sees a byte, a bounded pre-scan
 * walks the buffer and checks every declared string length and container count against the
 * bytes that remain (msgpack-c trusts declared lengths and would allocate ~100 GB for a forged
 * array header), the nesting depth, and that exactly one object fills the buffer. Only then is
 * the buffer unpacked, so any allocation is bounded by a small multiple of the input size.
 *
 * Decoded strings are views into the caller's buffer: they live as long as that buffer and are
 * not NUL-terminated. Every string that can reach PostgreSQL is checked to be valid UTF-8
 * without NUL bytes, because one such string would otherwise fail a whole flush transaction.
 *
 * The field bounds below are the contract published in proto/README.md.
 */
#ifndef METERD_WIRE_H
#define METERD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION           1
#define WIRE_MAX_ID            64 /* id, org, project, workflow, run, integration */
#define WIRE_MAX_PROVIDER      32
#define WIRE_MAX_MODEL         128
#define WIRE_MAX_TIER          32 /* tier, promo */
#define WIRE_MAX_DEPTH         8  /* nesting of containers in one event, top map = 1 */
#define WIRE_MAX_THRESHOLDS    10
#define WIRE_MAX_TOKENS        1000000000LL     /* per token field of one llm.call */
#define WIRE_MAX_TS            32503680000000LL /* 3000-01-01T00:00:00Z in ms */
#define WIRE_MAX_API_COUNT     1000000LL
#define WIRE_MAX_BYTES         1000000000000000LL /* 1 PB storage footprint */
#define WIRE_MAX_MICROS        10000000000000LL   /* $10M in micro-USD */
#define WIRE_DEFAULT_MAX_EVENT 65536

typedef enum {
    WIRE_T_WORKFLOW_STARTED = 0,
    WIRE_T_WORKFLOW_FINISHED,
    WIRE_T_AGENT_REQUESTED,
    WIRE_T_AGENT_FINISHED,
    WIRE_T_AGENT_CANCELLED,
    WIRE_T_LLM_CALL,
    WIRE_T_API_CALL,
    WIRE_T_STORAGE_REPORT,
    WIRE_T_SUBSCRIPTION_CHANGED,
    WIRE_T_SUBSCRIPTION_CANCELLED,
    WIRE_T_CREDITS_ADDED,
    WIRE_T_PACK_PURCHASED,
    WIRE_T_BUDGET_SET,
    WIRE_T_COUNT
} wire_type_t;

typedef enum {
    WIRE_COMPLEXITY_SMALL = 0,
    WIRE_COMPLEXITY_MEDIUM,
    WIRE_COMPLEXITY_LARGE,
} wire_complexity_t;

typedef enum {
    WIRE_STATUS_SUCCEEDED = 0,
    WIRE_STATUS_FAILED,
    WIRE_STATUS_CANCELLED,
} wire_status_t;

/* Why an event was refused. The names (wire_err_name) go into the dead-letter headers and
 * metric labels, so they are part of the contract: never rename one. */
typedef enum {
    WIRE_OK = 0,
    WIRE_E_TOO_LARGE,       /* more bytes than the decoder's max_event_bytes */
    WIRE_E_MALFORMED,       /* not msgpack: truncated, reserved byte, trailing bytes */
    WIRE_E_LIMIT,           /* a container count, string length or depth beyond the input */
    WIRE_E_NOT_MAP,         /* the top-level object is not a map */
    WIRE_E_BAD_KEY,         /* a map key that is not a string */
    WIRE_E_DUPLICATE_FIELD, /* a known field given twice */
    WIRE_E_MISSING_FIELD,   /* a required field absent (nil counts as absent) */
    WIRE_E_WRONG_TYPE,      /* a field of the wrong msgpack type */
    WIRE_E_TOO_LONG,        /* a string over its bound */
    WIRE_E_BAD_STRING,      /* empty, invalid UTF-8, or containing NUL */
    WIRE_E_OUT_OF_RANGE,    /* an integer outside its bounds */
    WIRE_E_BAD_VALUE,       /* not one of the allowed values (complexity, status, pack size) */
    WIRE_E_BAD_VERSION,     /* v is not WIRE_VERSION */
    WIRE_E_UNKNOWN_TYPE,    /* type is not one of wire_type_t */
    WIRE_E_COUNT
} wire_err_t;

/* A string view into the decoded buffer; not NUL-terminated. len 0 means absent. */
typedef struct {
    const char *ptr;
    uint32_t len;
} wire_str_t;

typedef struct {
    wire_err_t code;
    const char *field; /* static name of the offending field, or NULL */
    char detail[112];  /* human-readable, NUL-terminated */
} wire_error_t;

/* Presence bits for optional fields, so a default can be told from an explicit value. */
#define WIRE_HAS_CACHE_READ   (1u << 0)
#define WIRE_HAS_CACHE_WRITE  (1u << 1)
#define WIRE_HAS_PERIOD_START (1u << 2)
#define WIRE_HAS_PERIOD_END   (1u << 3)
#define WIRE_HAS_THRESHOLDS   (1u << 4)
#define WIRE_HAS_COMPLEXITY   (1u << 5)
#define WIRE_HAS_COUNT        (1u << 6)
#define WIRE_HAS_BYO          (1u << 7)

/* One validated input event. Fields a type does not use are zero / empty. Defaults are filled
 * in: complexity MEDIUM, count 1, byo false, thresholds {50, 80, 100}. */
typedef struct {
    wire_type_t type;
    int64_t v;
    int64_t ts; /* Unix ms, 1 .. WIRE_MAX_TS */
    wire_str_t id, org, project, workflow, run;
    wire_str_t provider, model, integration, tier, promo;
    wire_complexity_t complexity;
    wire_status_t status;
    int64_t input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
    bool byo;
    int64_t count; /* api.call */
    int64_t bytes; /* storage.report */
    int64_t period_start, period_end;
    int64_t amount_micros;        /* credits.added */
    int64_t workflows;            /* pack.purchased: 10 or 50 */
    int64_t monthly_limit_micros; /* budget.set */
    uint32_t n_thresholds;
    int32_t thresholds[WIRE_MAX_THRESHOLDS]; /* percent, 1..100, as given */
    uint32_t present;                        /* WIRE_HAS_* bits */
} wire_event_t;

typedef struct wire_decoder wire_decoder_t;

/* Creates a decoder that refuses events larger than max_event_bytes (0: WIRE_DEFAULT_MAX_EVENT).
 * Returns NULL when out of memory. The caller frees it with wire_decoder_free. */
wire_decoder_t *wire_decoder_new(size_t max_event_bytes);
void wire_decoder_free(wire_decoder_t *d);

/* Decodes and validates one event from buf[0..len). On success fills *out (string views into
 * buf, valid until buf changes or the next wire_decode on this decoder), sets err->code to
 * WIRE_OK and returns 0. On refusal returns -1 and fills *err; *out is then unspecified.
 * d, out and err must not be NULL; buf may be NULL only when len is 0. Never allocates more
 * than a bounded multiple of len, never reads outside buf. */
__attribute__((warn_unused_result)) int wire_decode(wire_decoder_t *d, const void *buf, size_t len,
                                                    wire_event_t *out, wire_error_t *err);

/* ---- output messages ---------------------------------------------------------------------- */

/* A decision on meter.decisions (PRODUCT.md, "The wire contract (output)"). `subject` is the run
 * for agent.* decisions and the workflow for workflow.* ones. */
typedef enum {
    WIRE_D_AGENT_ADMITTED = 0,
    WIRE_D_AGENT_QUEUED,
    WIRE_D_WORKFLOW_HELD,
    WIRE_D_WORKFLOW_RELEASED,
    WIRE_D_COUNT
} wire_decision_type_t;

typedef struct {
    wire_decision_type_t type;
    wire_str_t org;
    int64_t ts;       /* the causing event's ts */
    wire_str_t cause; /* the causing event's id */
    wire_str_t project;
    wire_str_t subject;
    int64_t waited_ms; /* admitted, released */
    int64_t position;  /* queued, held */
} wire_decision_t;

#define WIRE_OUTPUT_ID_LEN 34 /* "d-" + 32 hex digits */

/* The decision's deterministic id: "d-" and the hex XXH3-128 of (org, cause, type, subject),
 * each followed by 0xFF. The same cause always yields the same id, so a decision repeated after
 * a crash is recognisable. out gets WIRE_OUTPUT_ID_LEN characters and a NUL. */
void wire_decision_id(const wire_decision_t *d, char out[WIRE_OUTPUT_ID_LEN + 1]);

/* Encodes d as one msgpack map (envelope v, id, type, org, ts, then the type's fields) into
 * out[0..cap). Returns the length, or -1 when cap is too small (4 KiB always suffices for
 * wire-bounded strings). */
int wire_encode_decision(const wire_decision_t *d, char *out, size_t cap);

const char *wire_decision_name(wire_decision_type_t t);

/* A budget event on budget.events (PRODUCT.md): budget.warning carries `threshold`,
 * budget.exceeded `reason` ("budget", "workflow_quota" or "credits"). */
typedef struct {
    bool exceeded;
    wire_str_t org;
    int64_t ts;       /* the causing event's ts */
    wire_str_t cause; /* the causing event's id */
    int64_t period_start;
    int32_t threshold;  /* warning: percent */
    const char *reason; /* exceeded */
    int64_t spend_micros;
    int64_t limit_micros;
} wire_budget_event_t;

/* The budget event's deterministic id: "b-" and the hex XXH3-128 of (org, decimal
 * period_start, type, decimal threshold or reason), each followed by 0xFF: one id per cause
 * per period, so that a repeat is recognisable. */
void wire_budget_event_id(const wire_budget_event_t *b, char out[WIRE_OUTPUT_ID_LEN + 1]);

/* Encodes b as one msgpack map into out[0..cap). Returns the length, or -1 when cap is too
 * small (1 KiB always suffices). */
int wire_encode_budget_event(const wire_budget_event_t *b, char *out, size_t cap);

/* Checks that buf[0..len) is exactly one msgpack object whose declared lengths and counts fit
 * in the bytes that follow and whose nesting is at most WIRE_MAX_DEPTH — what makes
 * msgpack_unpack safe on untrusted bytes (its allocations stay a small multiple of len).
 * Returns 0, or -1. Used for anything msgpack read back from outside (ledger snapshots). */
__attribute__((warn_unused_result)) int wire_prescan(const void *buf, size_t len);

/* Stable names: the wire spelling for types ("workflow.started"), snake_case for errors
 * ("too_large", "malformed", "limit", "not_map", "bad_key", "duplicate_field", "missing_field",
 * "wrong_type", "too_long", "bad_string", "out_of_range", "bad_value", "bad_version",
 * "unknown_type"). Out-of-range values give "unknown". */
const char *wire_type_name(wire_type_t t);
const char *wire_err_name(wire_err_t e);
const char *wire_complexity_name(wire_complexity_t c);
const char *wire_status_name(wire_status_t s);

#endif
