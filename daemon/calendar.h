/*
 * calendar — UTC calendar arithmetic on Unix milliseconds, for billing periods.
 *
 * Pure: proleptic Gregorian, no time zones, no clock.
 */
#ifndef METERD_CALENDAR_H
#define METERD_CALENDAR_H

#include <stdint.h>

/* The start of the UTC month containing ts. */
int64_t cal_month_start(int64_t ts_ms);
/* ts plus `months` months: the same day and time, clamped to the end of a shorter month. */
int64_t cal_add_months(int64_t ts_ms, int months);
/* The first monthly anniversary of `anchor` after t: the smallest cal_add_months(anchor, k),
 * k >= 1, that is later than t. Counting from the anchor, not step by step, keeps a
 * subscription begun on the 31st renewing on the 31st (or the month's last day). */
int64_t cal_next_anniversary(int64_t anchor, int64_t t);

#endif
