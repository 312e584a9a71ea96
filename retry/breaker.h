// breaker: one endpoint's circuit breaker (DESIGN §7). Decides whether an
// attempt may start now and learns from each attempt's result; the time is
// always passed in (ms), so tests drive it with a fake clock.
//
//   CLOSED    --failure rate over the window, or consecutive failures-->  OPEN
//   OPEN      --open_until reached (seen by allow/state)--------------->  HALF_OPEN
//   HALF_OPEN --`probes` successes-------------------------------------->  CLOSED
//   HALF_OPEN --any probe failure (re-trip, open time doubled)--------->  OPEN
//
// Each allow() that returns 1 hands out a ticket; pass it back to record()
// exactly once when that attempt ends. Tickets tie results to the state they
// started in: a result for an attempt started before the latest transition
// (e.g. a late success while OPEN, or a slow pre-trip failure arriving during
// HALF_OPEN) is ignored rather than mistaken for a probe or a fresh call.
//
// Not thread-safe: the caller holds the endpoint lane's lock around every call.
#ifndef HK_BREAKER_H
#define HK_BREAKER_H

#include <stdint.h>

typedef struct hk_breaker_s hk_breaker_t;

typedef enum hk_breaker_state {
    HK_BREAKER_CLOSED = 0,
    HK_BREAKER_OPEN,
    HK_BREAKER_HALF_OPEN,
} hk_breaker_state_t;

typedef enum hk_breaker_result {
    HK_BREAKER_SUCCESS = 0, // delivered (2xx)
    HK_BREAKER_FAILURE,     // a retryable failure: timeout, connect/TLS error, 429, 5xx
    HK_BREAKER_IGNORE,      // says nothing about health (4xx, gone, blocked, cancelled):
                            // not counted; in HALF_OPEN it frees the probe slot
} hk_breaker_result_t;

// Options (the [breaker] config). Out-of-range values are clamped by
// hk_breaker_new(): window >= 1, min_calls in [1, window], probes >= 1,
// open_ms >= 1, max_open_ms >= open_ms. failure_rate outside (0, 1] or
// consecutive_failures <= 0 disables that rule.
typedef struct hk_breaker_opts {
    int window;               // calls remembered for the failure rate (20)
    int min_calls;            // calls needed in the window before the rate counts (10)
    double failure_rate;      // trip when failures/calls reaches this (0.5)
    int consecutive_failures; // trip after this many failures in a row (5)
    int64_t open_ms;          // first OPEN period (30000)
    int64_t max_open_ms;      // OPEN doubles on each re-trip up to this (600000)
    int probes;               // attempts let through in HALF_OPEN (3)
} hk_breaker_opts_t;

hk_breaker_opts_t hk_breaker_opts_default(void);

// Identifies one allowed attempt; see the top comment.
typedef struct hk_breaker_ticket {
    uint64_t gen;
} hk_breaker_ticket_t;

// A read-only view for /v1/breakers and metrics.
typedef struct hk_breaker_snapshot {
    hk_breaker_state_t state; // as hk_breaker_state() at now_ms
    double failure_rate;      // over the window, 0 when empty
    int calls;                // calls in the window (CLOSED only; cleared on close)
    int failures;             // failures among them
    int consecutive_failures; // current run of failures while CLOSED
    int64_t open_until_ms;    // when state is OPEN: when it ends; else 0
    int64_t open_duration_ms; // OPEN period length: the current (or just ended) one,
                              // or when CLOSED the next trip's (open_ms)
    int probes_in_flight;     // HALF_OPEN: probes started and not yet recorded
    int probes_succeeded;     // HALF_OPEN: successful probes so far
    uint64_t trips;           // times it went to OPEN since creation
} hk_breaker_snapshot_t;

// `opts` NULL = defaults; copied. NULL only when out of memory.
hk_breaker_t *hk_breaker_new(const hk_breaker_opts_t *opts);
void hk_breaker_destroy(hk_breaker_t *br);

// 1: the attempt may start now; *ticket identifies it for hk_breaker_record()
// (in HALF_OPEN this takes one of the `probes` slots). 0: deferred, don't
// attempt and don't charge an attempt; retry after hk_breaker_open_until()
// when OPEN, or after the next record() when HALF_OPEN's probes are all out.
// Every 1 must be followed by exactly one record() with its ticket: a HALF_OPEN
// slot is only given back by record(), so a lost ticket strands the breaker in
// HALF_OPEN. `ticket` may be NULL only for a call that cannot be allowed or
// that will never be attempted.
int hk_breaker_allow(hk_breaker_t *br, int64_t now_ms, hk_breaker_ticket_t *ticket);

// The result of the attempt `ticket` was handed out for. Stale tickets (from
// before the latest transition) are ignored.
void hk_breaker_record(hk_breaker_t *br, int64_t now_ms, hk_breaker_ticket_t ticket,
                       hk_breaker_result_t r);

// The state at now_ms: OPEN reads as HALF_OPEN once open_until has passed
// (the stored state, and the reported transition, follow at the next allow()).
hk_breaker_state_t hk_breaker_state(const hk_breaker_t *br, int64_t now_ms);

// Another replica opened this endpoint's breaker (shared through Redis): be OPEN
// until `until_ms` (this breaker's clock). An open breaker is only held longer;
// results of calls already in flight no longer count (their tickets go stale),
// and it half-opens at `until_ms` as usual. Returns 1 when anything changed.
int hk_breaker_force_open(hk_breaker_t *br, int64_t now_ms, int64_t until_ms);

// When the current OPEN period ends (ms), 0 when not OPEN. It may already have
// passed: see hk_breaker_state().
int64_t hk_breaker_open_until(const hk_breaker_t *br);

// failures/calls over the window, 0 when it is empty.
double hk_breaker_failure_rate(const hk_breaker_t *br);

void hk_breaker_snapshot(const hk_breaker_t *br, int64_t now_ms, hk_breaker_snapshot_t *snap);

// Pops the oldest state change not yet taken: 1 with *from/*to set, 0 when
// there is none. Each change is returned once, so the caller logs each once.
// Take after every allow()/record() (each makes at most one change); if more
// than HK_BREAKER_TRANSITIONS_MAX pile up, the oldest are dropped.
#define HK_BREAKER_TRANSITIONS_MAX 8
int hk_breaker_take_transition(hk_breaker_t *br, hk_breaker_state_t *from, hk_breaker_state_t *to);

// "closed", "open", "half_open": for logs, metrics labels and /v1/breakers.
const char *hk_breaker_state_name(hk_breaker_state_t state);

#endif
