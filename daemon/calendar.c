/*
 * calendar — UTC calendar arithmetic. See calendar.h.
 */
#include "calendar.h"

#define DAY_MS 86400000LL

/* Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, UTC). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp + (mp < 10 ? 3 : -9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t cal_month_start(int64_t ts_ms)
{
    int64_t y, m, d;
    civil_from_days(floor_div(ts_ms, DAY_MS), &y, &m, &d);
    return days_from_civil(y, m, 1) * DAY_MS;
}

int64_t cal_add_months(int64_t ts_ms, int months)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t day = floor_div(ts_ms, DAY_MS);
    int64_t in_day = ts_ms - day * DAY_MS;
    int64_t y, m, d;
    civil_from_days(day, &y, &m, &d);
    int64_t idx = y * 12 + (m - 1) + months;
    y = floor_div(idx, 12);
    m = idx - y * 12 + 1;
    int64_t last = mdays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    if (d > last)
        d = last;
    return days_from_civil(y, m, d) * DAY_MS + in_day;
}

int64_t cal_next_anniversary(int64_t anchor, int64_t t)
{
    int64_t ya, ma, da, yt, mt, dt;
    civil_from_days(floor_div(anchor, DAY_MS), &ya, &ma, &da);
    civil_from_days(floor_div(t, DAY_MS), &yt, &mt, &dt);
    int64_t k = (yt - ya) * 12 + (mt - ma);
    if (k < 1)
        k = 1;
    while (k > 1 && cal_add_months(anchor, (int)k - 1) > t)
        k--;
    while (cal_add_months(anchor, (int)k) <= t)
        k++;
    return cal_add_months(anchor, (int)k);
}
