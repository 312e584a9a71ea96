// ratelimit: GCRA. With T = 1000/rate ms between permits and a tolerance of
// burst·T, n permits conform at `now` when max(tat, now) + n·T - now <= burst·T;
// granting them moves tat to max(tat, now) + n·T.
#include "retry/ratelimit.h"

#include <math.h>

// Absorbs float error in the conformance test, so that asking again exactly at
// the advertised retry time always succeeds (1e-6 of a permit).
#define GCRA_EPSILON 1e-6

int hk_gcra_take(hk_gcra_t *g, double rate, int burst, int want, int64_t now_ms,
                 int64_t *retry_in_ms)
{
    if (retry_in_ms)
        *retry_in_ms = 0;
    if (want <= 0)
        return 0;
    if (!(rate > 0) || isinf(rate))
        return want;
    if (burst < 1)
        burst = 1;

    double t = 1000.0 / rate;
    double now = (double)now_ms;
    double tat = g->tat_ms > now ? g->tat_ms : now;
    // Permits that fit between tat and now + burst·T.
    double fit = floor((now + burst * t - tat) / t + GCRA_EPSILON);
    int granted = fit <= 0 ? 0 : fit >= want ? want : (int)fit;
    tat += granted * t;
    g->tat_ms = tat;

    if (granted < want && retry_in_ms) {
        // The next permit conforms once tat + T - now' <= burst·T.
        double wait = ceil(tat + t - burst * t - now - GCRA_EPSILON * t);
        *retry_in_ms = wait < 1 ? 1 : (int64_t)wait;
    }
    return granted;
}
