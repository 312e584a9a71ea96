// aimd: one endpoint's adaptive concurrency limit (DESIGN §7). Additive
// increase, multiplicative decrease, as TCP congestion control does:
//  - overload (timeout, 429, 5xx): limit = max(min, floor(limit·decrease)) on
//    every such response, so a burst of failures backs off quickly;
//  - healthy response: +1 per round, a round being `limit` healthy responses
//    (classic AIMD: the window grows by one per window's worth of good
//    results, not by one per result, which would double it every round);
//  - only responses that come back while at least half the limit is in use
//    count towards growth, so an endpoint that sees little traffic does not
//    drift up to `max` and then take a whole burst at once.
// A plain value: embed it in the endpoint lane. Not thread-safe: the caller
// holds the lane's lock.
#ifndef HK_AIMD_H
#define HK_AIMD_H

typedef enum hk_aimd_signal {
    HK_AIMD_OK = 0,   // healthy response
    HK_AIMD_OVERLOAD, // timeout, 429 or 5xx: the endpoint is struggling
    HK_AIMD_IGNORE,   // says nothing about load (4xx, cancelled, blocked): just frees the slot
} hk_aimd_signal_t;

// Defaults: initial 32, min 1, max 256, decrease 0.9. hk_aimd_init() clamps:
// min >= 1, max >= min, initial into [min, max], decrease into (0, 1)
// (outside that range: 0.9).
typedef struct hk_aimd_opts {
    int initial;
    int min;
    int max;
    double decrease;
} hk_aimd_opts_t;

typedef struct hk_aimd {
    hk_aimd_opts_t lim_opts;
    int lim_limit;
    int lim_in_flight;
    int lim_healthy; // counted healthy responses in the current round
} hk_aimd_t;

hk_aimd_opts_t hk_aimd_opts_default(void);

// `opts` NULL = defaults.
void hk_aimd_init(hk_aimd_t *lim, const hk_aimd_opts_t *opts);

// 1 and in_flight+1 when in_flight < limit; 0 when the lane is full.
int hk_aimd_acquire(hk_aimd_t *lim);

// Ends one acquired attempt with what its response said about load.
void hk_aimd_release(hk_aimd_t *lim, hk_aimd_signal_t sig);

int hk_aimd_limit(const hk_aimd_t *lim);
int hk_aimd_in_flight(const hk_aimd_t *lim);

#endif
