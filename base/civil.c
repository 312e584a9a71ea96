// civil: see civil.h. The day-count conversions follow Howard Hinnant's
// "chrono-Compatible Low-Level Date Algorithms": shift the year to start in March
// so 29 February is the last day of a year, then count 400-year eras of 146097
// days, which repeat exactly.
#include "base/civil.h"

// Days from 0000-03-01 to 1970-01-01.
#define CIVIL_EPOCH_SHIFT 719468

bool hk_civil_is_leap(int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int hk_civil_days_in_month(int64_t year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12)
        return 0;
    return days[month - 1] + (month == 2 && hk_civil_is_leap(year));
}

int64_t hk_civil_days_from_civil(int64_t year, int month, int day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t yoe = year - era * 400;                                              // 0..399
    int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1; // from 1 March
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;                         // 0..146096
    return era * 146097 + doe - CIVIL_EPOCH_SHIFT;
}

void hk_civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    days += CIVIL_EPOCH_SHIFT;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153; // 0 = March .. 11 = February
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    if (year)
        *year = yoe + era * 400 + (m <= 2);
    if (month)
        *month = m;
    if (day)
        *day = (int)(doy - (153 * mp + 2) / 5 + 1);
}
