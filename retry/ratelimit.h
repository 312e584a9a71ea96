// ratelimit: one endpoint's request rate limit as GCRA (generic cell rate
// algorithm, DESIGN §7): `rate` requests per second on average, up to `burst`
// at once after an idle spell. The whole state is one number, the theoretical
// arrival time (TAT): the moment the limiter would be back to "empty" if every
// permit granted so far had been spaced exactly 1/rate apart. A request
// conforms when, after adding its share, TAT is at most burst/rate ahead of now.
//
// store/redis.c runs the same arithmetic as a Lua script, so the local limiter
// (used when Redis is off or down) and the shared one agree.
//
// A plain value: zero-initialise it (TAT 0 = idle). Pure: the time is passed
// in, no I/O. Not thread-safe: the caller holds the endpoint lane's lock.
#ifndef HK_RATELIMIT_H
#define HK_RATELIMIT_H

#include <stdint.h>

typedef struct hk_gcra {
    double tat_ms; // theoretical arrival time, in the clock of the now_ms passed in
} hk_gcra_t;

// Takes up to `want` permits at `now_ms` (any monotonic ms clock, used
// consistently for one limiter) and returns how many were granted, 0..want,
// greedily: as many as conform now. When fewer than `want` were granted,
// *retry_in_ms (may be NULL) is the time until the next permit conforms (>= 1);
// otherwise it is 0.
//   rate <= 0, infinite or not a number: no limit, every permit is granted.
//   burst < 1 counts as 1. want <= 0 grants nothing and sets *retry_in_ms = 0.
int hk_gcra_take(hk_gcra_t *g, double rate, int burst, int want, int64_t now_ms,
                 int64_t *retry_in_ms);

#endif
