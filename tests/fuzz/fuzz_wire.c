/*
 * fuzz_wire — libFuzzer target for the wire decoder.
 *
 * Feeds each input to wire_decode on one decoder created on first use (a static: the fuzz
 * target is the one place where that is fine), and checks the decoder's promises beyond "does
 * not crash": the result is 0 or -1 with a valid error code and a NUL-terminated detail; on
 * success every string view lies inside the input, respects its bound and is non-empty where
 * the field is required; integers are within their documented ranges; and msgpack-c never
 * refuses a buffer that the pre-scan let through.
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -Idaemon tests/fuzz/fuzz_wire.c \
 *         daemon/wire.c -lmsgpackc -o fuzz_wire
 *     /usr/bin/python3 tests/fuzz/make_corpus.py corpus && ./fuzz_wire -max_len=4096 corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_wire: check failed: %s (line %d)\n", #cond, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_view(wire_str_t s, const uint8_t *data, size_t size, uint32_t max, int required)
{
    if (s.len == 0) {
        CHECK(!required);
        return;
    }
    const uint8_t *p = (const uint8_t *)s.ptr;
    CHECK(s.len <= max);
    CHECK(p >= data && p <= data + size && s.len <= (size_t)(data + size - p));
    CHECK(memchr(p, 0, s.len) == NULL);
}

static void check_range(int64_t v, int64_t min, int64_t max)
{
    CHECK(v >= min && v <= max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wire_decoder_t *d;
    wire_event_t ev;
    wire_error_t err;

    if (!d) {
        d = wire_decoder_new(0);
        CHECK(d != NULL);
    }
    int rc = wire_decode(d, data, size, &ev, &err);
    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(err.code > WIRE_OK && err.code < WIRE_E_COUNT);
        CHECK(memchr(err.detail, 0, sizeof(err.detail)) != NULL);
        /* The pre-scan must make msgpack-c's own refusals unreachable. */
        CHECK(strncmp(err.detail, "msgpack-c", 9) != 0);
        return 0;
    }

    CHECK(err.code == WIRE_OK);
    CHECK((unsigned)ev.type < WIRE_T_COUNT);
    CHECK(ev.v == WIRE_VERSION);
    check_range(ev.ts, 1, WIRE_MAX_TS);
    check_view(ev.id, data, size, WIRE_MAX_ID, 1);
    check_view(ev.org, data, size, WIRE_MAX_ID, 1);
    check_view(ev.project, data, size, WIRE_MAX_ID, 0);
    check_view(ev.workflow, data, size, WIRE_MAX_ID, 0);
    check_view(ev.run, data, size, WIRE_MAX_ID, 0);
    check_view(ev.integration, data, size, WIRE_MAX_ID, ev.type == WIRE_T_API_CALL);
    check_view(ev.provider, data, size, WIRE_MAX_PROVIDER, ev.type == WIRE_T_LLM_CALL);
    check_view(ev.model, data, size, WIRE_MAX_MODEL, ev.type == WIRE_T_LLM_CALL);
    check_view(ev.tier, data, size, WIRE_MAX_TIER, ev.type == WIRE_T_SUBSCRIPTION_CHANGED);
    check_view(ev.promo, data, size, WIRE_MAX_TIER, 0);
    check_range(ev.input_tokens, 0, WIRE_MAX_TOKENS);
    check_range(ev.output_tokens, 0, WIRE_MAX_TOKENS);
    check_range(ev.cache_read_tokens, 0, WIRE_MAX_TOKENS);
    check_range(ev.cache_write_tokens, 0, WIRE_MAX_TOKENS);
    check_range(ev.bytes, 0, WIRE_MAX_BYTES);
    check_range(ev.amount_micros, 0, WIRE_MAX_MICROS);
    check_range(ev.monthly_limit_micros, 0, WIRE_MAX_MICROS);
    check_range(ev.period_start, 0, WIRE_MAX_TS);
    check_range(ev.period_end, 0, WIRE_MAX_TS);
    CHECK(ev.n_thresholds <= WIRE_MAX_THRESHOLDS);
    for (uint32_t i = 0; i < ev.n_thresholds; i++)
        check_range(ev.thresholds[i], 1, 100);
    switch (ev.type) {
    case WIRE_T_WORKFLOW_STARTED:
        CHECK(ev.project.len && ev.workflow.len);
        CHECK((unsigned)ev.complexity <= WIRE_COMPLEXITY_LARGE);
        break;
    case WIRE_T_WORKFLOW_FINISHED:
        CHECK(ev.workflow.len && (unsigned)ev.status <= WIRE_STATUS_CANCELLED);
        break;
    case WIRE_T_AGENT_REQUESTED:
        CHECK(ev.project.len && ev.run.len);
        break;
    case WIRE_T_AGENT_FINISHED:
    case WIRE_T_AGENT_CANCELLED:
        CHECK(ev.run.len);
        break;
    case WIRE_T_API_CALL:
        check_range(ev.count, 1, WIRE_MAX_API_COUNT);
        break;
    case WIRE_T_SUBSCRIPTION_CHANGED:
        if ((ev.present & WIRE_HAS_PERIOD_START) && (ev.present & WIRE_HAS_PERIOD_END))
            CHECK(ev.period_start < ev.period_end);
        break;
    case WIRE_T_CREDITS_ADDED:
        CHECK(ev.amount_micros >= 1);
        break;
    case WIRE_T_PACK_PURCHASED:
        CHECK(ev.workflows == 10 || ev.workflows == 50);
        break;
    case WIRE_T_BUDGET_SET:
        CHECK(ev.n_thresholds >= 1);
        break;
    default:
        break;
    }
    return 0;
}
