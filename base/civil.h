// civil: proleptic Gregorian dates as day counts from 1970-01-01, what timegm()
// computes but for any year and without the C library's time zone state. Used by
// the RFC 3339 parser (worker/job.c: deliver_after) and the HTTP-date parser
// (retry/backoff.c: Retry-After). A leaf: pure, any thread.
#ifndef HK_CIVIL_H
#define HK_CIVIL_H

#include <stdbool.h>
#include <stdint.h>

// Whether `year` has a 29 February (every 4th year, not every 100th, every 400th).
bool hk_civil_is_leap(int64_t year);

// Days in `month` (1..12) of `year`; 0 for a month outside 1..12.
int hk_civil_days_in_month(int64_t year, int month);

// Days since 1970-01-01 of year-month-day (month 1..12, day 1..31; not checked
// against the month's length), negative before 1970. Year 0 is 1 BC.
int64_t hk_civil_days_from_civil(int64_t year, int month, int day);

// The inverse: the date of a day count. Any argument may be NULL.
void hk_civil_from_days(int64_t days, int64_t *year, int *month, int *day);

#endif
