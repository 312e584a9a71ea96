// check_civil: day counts of known dates (checked against timegm() where the C
// library covers them), leap-year rules, and the round trip over ±1000 years.
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "base/civil.h"
#include "tests/support/ck_main.h"

static const struct {
    int64_t year;
    int month, day;
    int64_t days; // since 1970-01-01
} known[] = {
    {1970, 1, 1, 0},           {1969, 12, 31, -1},    {1970, 3, 1, 59}, // 1970 is not leap: 31 + 28
    {1972, 3, 1, 790},                                // 1972 is: 2 * 365 + 31 + 29
    {2000, 2, 29, 11016},                             // 2000 is leap (every 400th year)
    {2000, 3, 1, 11017},       {2100, 2, 28, 47540},  // 2100 is not (every 100th year)
    {2100, 3, 1, 47541},       {2038, 1, 19, 24855},  // 32-bit time_t's last day
    {1600, 1, 1, -135140},                            // an era boundary, leap
    {1, 1, 1, -719162},                               // 0001-01-01
    {0, 3, 1, -719468},                               // the algorithm's origin; year 0 is leap
    {0, 1, 1, -719528},        {-1, 12, 31, -719529}, // 2 BC's last day
    {-400, 1, 1, -865625},                            // one 146097-day era before 0000-01-01
    {-4713, 11, 24, -2440588},                        // Julian day 0 (proleptic Gregorian)
    {9999, 12, 31, 2932896},
};

START_TEST(test_civil_known_dates)
{
    ck_assert_int_eq(hk_civil_days_from_civil(known[_i].year, known[_i].month, known[_i].day),
                     known[_i].days);
    int64_t y = 0;
    int m = 0, d = 0;
    hk_civil_from_days(known[_i].days, &y, &m, &d);
    ck_assert_int_eq(y, known[_i].year);
    ck_assert_int_eq(m, known[_i].month);
    ck_assert_int_eq(d, known[_i].day);
}
END_TEST

// Every day from 1901 to 2199 against the C library, which covers that span
// on any 64-bit time_t.
START_TEST(test_civil_matches_timegm)
{
    for (int year = 1901; year < 2200; year++) {
        for (int month = 1; month <= 12; month++) {
            for (int day = 1; day <= hk_civil_days_in_month(year, month); day++) {
                struct tm tm = {.tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day};
                int64_t want = (int64_t)timegm(&tm) / 86400;
                ck_assert_msg(hk_civil_days_from_civil(year, month, day) == want, "%d-%02d-%02d",
                              year, month, day);
            }
        }
    }
}
END_TEST

START_TEST(test_civil_leap_years)
{
    ck_assert(hk_civil_is_leap(2000));
    ck_assert(hk_civil_is_leap(2024));
    ck_assert(hk_civil_is_leap(0));
    ck_assert(hk_civil_is_leap(-4));
    ck_assert(hk_civil_is_leap(-400));
    ck_assert(!hk_civil_is_leap(1900));
    ck_assert(!hk_civil_is_leap(2100));
    ck_assert(!hk_civil_is_leap(2023));
    ck_assert(!hk_civil_is_leap(-1));
    ck_assert(!hk_civil_is_leap(-100));
    ck_assert_int_eq(hk_civil_days_in_month(2000, 2), 29);
    ck_assert_int_eq(hk_civil_days_in_month(1900, 2), 28);
    ck_assert_int_eq(hk_civil_days_in_month(2100, 2), 28);
    ck_assert_int_eq(hk_civil_days_in_month(2024, 4), 30);
    ck_assert_int_eq(hk_civil_days_in_month(2023, 12), 31);
    ck_assert_int_eq(hk_civil_days_in_month(2023, 0), 0);
    ck_assert_int_eq(hk_civil_days_in_month(2023, 13), 0);
}
END_TEST

// Consecutive days map to consecutive dates, and each date back to its count,
// from 1000 years before 1970 to 1000 years after.
START_TEST(test_civil_round_trip_is_continuous)
{
    int64_t py = 0;
    int pm = 0, pd = 0;
    hk_civil_from_days(-365243, &py, &pm, &pd);
    for (int64_t z = -365242; z <= 365243; z++) {
        int64_t y;
        int m, d;
        hk_civil_from_days(z, &y, &m, &d);
        ck_assert_int_eq(hk_civil_days_from_civil(y, m, d), z);
        if (d == 1) // a new month starts after the last day of the previous one
            ck_assert_int_eq(pd, hk_civil_days_in_month(py, pm));
        else
            ck_assert(y == py && m == pm && d == pd + 1);
        py = y, pm = m, pd = d;
    }
}
END_TEST

START_TEST(test_civil_from_days_takes_null_outputs)
{
    int64_t y = 0;
    hk_civil_from_days(11016, &y, NULL, NULL);
    ck_assert_int_eq(y, 2000);
    int d = 0;
    hk_civil_from_days(11016, NULL, NULL, &d);
    ck_assert_int_eq(d, 29);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("civil");
    TCase *tc = tcase_create("dates");
    tcase_add_loop_test(tc, test_civil_known_dates, 0, (int)(sizeof(known) / sizeof(known[0])));
    tcase_add_test(tc, test_civil_matches_timegm);
    tcase_add_test(tc, test_civil_leap_years);
    tcase_add_test(tc, test_civil_round_trip_is_continuous);
    tcase_add_test(tc, test_civil_from_days_takes_null_outputs);
    suite_add_tcase(s, tc);
    return s;
}
