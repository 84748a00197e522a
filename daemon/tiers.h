/*
 * tiers — the pricing tiers: limits that admission enforces and fees that billing charges.
 *
 * Pure core: parses the tier table from text (the shell reads deploy/tiers.ini) and answers
 * look-ups by name. The table and the price table are the only places limits and prices live.
 * Money is integers: fees in micro-USD.
 *
 * Table format (INI, parsed through initext, one section per tier):
 *
 *     [pro]
 *     concurrent_agents = 5          ; per project; "unlimited" allowed
 *     workflows = 100                ; per period; "unlimited" allowed
 *     over_quota = bill              ; hold | bill (ignored when workflows is unlimited)
 *     period = subscription          ; calendar (UTC months) | subscription
 *     base_fee = 50.00               ; USD per period
 *     one_time_fee = 0               ; USD charged once, in the period of purchase (lifetime)
 *     storage_limit_gb = unlimited   ; decimal GB (10^9 bytes) included; "unlimited" allowed
 *     included_agent_hours = unlimited
 *     overage_small = 5.00           ; USD per workflow beyond the quota, by complexity
 *     overage_medium = 10.00
 *     overage_large = 15.00
 *     storage_gb_month = 0.10        ; USD per GB-month beyond storage_limit_gb
 *     agent_hour = 2.00              ; USD per agent-hour beyond included_agent_hours
 *     api_call = 0                   ; USD per external API call
 *     llm_billed = false             ; bill LLM calls (byo: false ones) at cost + llm_margin
 *     llm_margin_percent = 0
 *
 * PAYG is the tier with `workflows = 0`, `over_quota = bill` and its per-workflow prices as the
 * overage prices: every workflow is beyond a quota of zero, and none is ever held.
 *
 * Promotions are sections named [promo.NAME] with one key, `monthly_fees`: the base fee of the
 * first subscription months, comma-separated ("0.59, 12.99, 12.99" for new_year); from the
 * month after the last one the tier's base_fee applies.
 *
 * At most TIERS_MAX_ONE_TIME tiers may have a one_time_fee.
 *
 * Every key is required in every section, so that a forgotten limit can never silently mean
 * "unlimited". The tiers PRODUCT.md names — free, pro, team, enterprise, lifetime, byo, payg —
 * must all be present (an operator may add more); `free` is the tier of an organization meterd
 * has not seen a subscription for, and the tier `subscription.cancelled` returns to.
 *
 * Values. Counts are plain integers (concurrent_agents >= 1, workflows >= 0, at most 10^9) or
 * "unlimited". USD amounts are read by money_parse_usd_micros: at most 6 decimals, at most
 * $1,000,000 each (api_call = 0.001 is 1000 micro-USD). storage_limit_gb and
 * included_agent_hours take at most 3 decimals (at most 10^6 GB or hours) and are stored
 * exactly as bytes and milliseconds: "0.5" GB is 500000000 bytes, "1.5" hours 5400000 ms.
 * llm_margin_percent is an integer 0..1000. over_quota, period and llm_billed are the
 * lower-case words shown above. No floating point is involved anywhere.
 *
 * Names. A tier name, and the NAME of [promo.NAME], is 1..TIERS_NAME_MAX bytes of a-z, 0-9, '_'
 * and '-'. Tiers and promotions are separate name spaces. Unknown, duplicate or missing keys,
 * duplicate sections, keys before the first section and malformed values are refused; the
 * first error in file order is reported.
 *
 * A parsed table is immutable: look-ups may run on any thread and allocate nothing.
 */
#ifndef METERD_TIERS_H
#define METERD_TIERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIERS_UNLIMITED (-1)
/* Tiers with a one-time fee a table may have: billing remembers, per organization, which it
 * has charged (a one-time fee is charged once ever). */
#define TIERS_MAX_ONE_TIME 8
#define TIERS_NAME_MAX     32

typedef enum { TIERS_OVER_HOLD = 0, TIERS_OVER_BILL } tiers_over_quota_t;
typedef enum { TIERS_PERIOD_CALENDAR = 0, TIERS_PERIOD_SUBSCRIPTION } tiers_period_t;

typedef struct {
    char name[TIERS_NAME_MAX + 1];
    uint32_t name_len;
    int64_t concurrent_agents; /* per project; TIERS_UNLIMITED */
    int64_t workflows;         /* per period; TIERS_UNLIMITED */
    tiers_over_quota_t over_quota;
    tiers_period_t period;
    int64_t base_fee_micros;     /* per period */
    int64_t one_time_fee_micros; /* once, in the period of purchase */
    int64_t storage_limit_bytes; /* TIERS_UNLIMITED */
    int64_t included_agent_ms;   /* TIERS_UNLIMITED */
    int64_t overage_micros[3];   /* per workflow beyond the quota, by wire_complexity_t */
    int64_t storage_gb_month_micros;
    int64_t agent_hour_micros;
    int64_t api_call_micros;
    bool llm_billed;
    int64_t llm_margin_percent;
} tier_t;

#define TIERS_PROMO_MAX_MONTHS 12

typedef struct {
    char name[TIERS_NAME_MAX + 1];
    uint32_t name_len;
    size_t months;                                      /* 1..TIERS_PROMO_MAX_MONTHS */
    int64_t monthly_fee_micros[TIERS_PROMO_MAX_MONTHS]; /* subscription month 1, 2, ... */
} tier_promo_t;

typedef struct tiers tiers_t;

/* Parses a tier table from text[0..len) (need not be NUL-terminated). On success stores a new
 * table in *out (the caller frees it with tiers_free) and returns 0. On error returns -1, leaves
 * *out NULL and writes a NUL-terminated message into err[0..errlen) (err may be NULL): it names
 * the line, section and key ("line 6: [pro] key \"base_fee\": bad value ..."; a section missing
 * a key is named by the line of its header), or the required tier that is missing. */
__attribute__((warn_unused_result)) int tiers_parse(const char *text, size_t len, tiers_t **out,
                                                    char *err, size_t errlen);
/* Frees a table from tiers_parse; NULL is a no-op. Pointers from the look-ups die with it. */
void tiers_free(tiers_t *t);

/* Number of tiers (promotions not counted). */
size_t tiers_count(const tiers_t *t);
/* The i-th tier in file order, i < tiers_count. */
const tier_t *tiers_at(const tiers_t *t, size_t i);
/* The tier named name[0..len) (exact, case-sensitive; need not be NUL-terminated), or NULL
 * (also when len is 0 or over TIERS_NAME_MAX). The pointer lives as long as the table. */
const tier_t *tiers_find(const tiers_t *t, const char *name, size_t len);
/* The `free` tier (always present in a parsed table). */
const tier_t *tiers_free_tier(const tiers_t *t);
/* The promotion named name[0..len) (NAME of [promo.NAME], exact, case-sensitive), or NULL.
 * The pointer lives as long as the table. */
const tier_promo_t *tiers_find_promo(const tiers_t *t, const char *name, size_t len);

#endif
