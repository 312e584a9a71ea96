// aimd: additive-increase/multiplicative-decrease concurrency limit.
#include "retry/aimd.h"

#include <math.h>
#include <stddef.h>

hk_aimd_opts_t hk_aimd_opts_default(void)
{
    return (hk_aimd_opts_t){.initial = 32, .min = 1, .max = 256, .decrease = 0.9};
}

void hk_aimd_init(hk_aimd_t *lim, const hk_aimd_opts_t *opts)
{
    hk_aimd_opts_t o = opts ? *opts : hk_aimd_opts_default();
    if (o.min < 1)
        o.min = 1;
    if (o.max < o.min)
        o.max = o.min;
    if (o.initial < o.min)
        o.initial = o.min;
    if (o.initial > o.max)
        o.initial = o.max;
    if (!(o.decrease > 0.0 && o.decrease < 1.0))
        o.decrease = 0.9;
    *lim = (hk_aimd_t){.lim_opts = o, .lim_limit = o.initial};
}

int hk_aimd_acquire(hk_aimd_t *lim)
{
    if (lim->lim_in_flight >= lim->lim_limit)
        return 0;
    lim->lim_in_flight++;
    return 1;
}

void hk_aimd_release(hk_aimd_t *lim, hk_aimd_signal_t sig)
{
    if (lim->lim_in_flight == 0)
        return; // unbalanced release: ignore rather than go negative
    int busy = 2 * lim->lim_in_flight >= lim->lim_limit; // counted before this slot frees
    lim->lim_in_flight--;

    switch (sig) {
    case HK_AIMD_OVERLOAD: {
        // The tolerance keeps e.g. 30·0.9 at 27 despite 0.9 not being exact;
        // an overload always lowers the limit by at least one.
        int next = (int)floor(lim->lim_limit * lim->lim_opts.decrease + 1e-9);
        if (next >= lim->lim_limit)
            next = lim->lim_limit - 1;
        lim->lim_limit = next > lim->lim_opts.min ? next : lim->lim_opts.min;
        lim->lim_healthy = 0;
        break;
    }
    case HK_AIMD_OK:
        if (!busy || lim->lim_limit >= lim->lim_opts.max)
            break;
        if (++lim->lim_healthy >= lim->lim_limit) {
            lim->lim_limit++;
            lim->lim_healthy = 0;
        }
        break;
    case HK_AIMD_IGNORE:
        break;
    }
}

int hk_aimd_limit(const hk_aimd_t *lim)
{
    return lim->lim_limit;
}

int hk_aimd_in_flight(const hk_aimd_t *lim)
{
    return lim->lim_in_flight;
}
