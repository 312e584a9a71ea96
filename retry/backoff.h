// backoff: how long to wait before the next attempt (DESIGN §6). Either an
// explicit schedule ("5s,30s,2m,10m,30m,1h", the last entry repeats) or
// exponential min(max_delay, base·multiplier^(failures-1)) with full jitter,
// combined with the receiver's Retry-After. Pure: no I/O, no clock (callers
// pass now_ms), no hidden random state (callers own the rng state). Any thread
// may call these functions; an rng state must not be shared between threads
// without a lock.
#ifndef HK_BACKOFF_H
#define HK_BACKOFF_H

#include <stddef.h>
#include <stdint.h>

// A plain value, usually built from the [retry] config; it borrows schedule_ms.
typedef struct hk_backoff {
    const int64_t *schedule_ms; // explicit delays; NULL/0 entries: exponential
    size_t schedule_cnt;
    int64_t base_ms;      // exponential: delay bound after the first failure
    double multiplier;    // exponential: growth per failure; below 1 counts as 1
    int64_t max_delay_ms; // bounds every delay, schedule and Retry-After included;
                          // <= 0: unbounded
} hk_backoff_t;

// Next pseudo-random value of a splitmix64 generator; any seed (0 too) works.
// Seed once per thread, e.g. from the clock and the thread id.
uint64_t hk_backoff_rand(uint64_t *state);

// The delay after `failures` failed attempts (1 after the first failure;
// values below 1 count as 1), in ms, never above max_delay_ms:
//  - schedule: schedule_ms[min(failures, cnt) - 1], exact (no jitter);
//  - exponential: uniform in [0, min(max_delay_ms, base_ms·multiplier^(failures-1))]
//    ("full jitter"), drawn from *rng. A NULL rng gives the upper bound.
int64_t hk_backoff_delay(const hk_backoff_t *b, int failures, uint64_t *rng);

// hk_backoff_delay(), raised to the receiver's Retry-After when that is longer
// (retry_after_ms < 0: none), then capped at max_delay_ms.
int64_t hk_backoff_next_delay(const hk_backoff_t *b, int failures, int64_t retry_after_ms,
                              uint64_t *rng);

// Parses a schedule: comma-separated whole numbers with an optional unit, ms,
// s, m, h or d (no unit = ms), spaces around entries allowed: "5s, 30s,2m",
// "250ms", "1500". On success returns 0 and a malloc'd array in *out (the
// caller frees it) with *cnt >= 1 entries. On failure returns -1, leaves *out
// NULL and names the bad entry in errstr, e.g.
// `entry 2 "5x": expected a whole number with an optional unit ms, s, m, h or d, such as 30s`.
int hk_backoff_parse_schedule(const char *text, int64_t **out, size_t *cnt, char *errstr,
                              size_t errstr_size);

// Parses a Retry-After header value (RFC 9110 §10.2.3): delta-seconds ("120")
// or an HTTP-date in IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), obsolete
// RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") or asctime ("Sun Nov  6 08:49:37 1994")
// form, independent of the locale. Returns 0 with *delay_ms >= 0 (a date in the
// past gives 0), or -1 for anything else: garbage, fractions, a sign, an empty
// value, or seconds too large for an int64 of ms.
int hk_backoff_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms);

#endif
