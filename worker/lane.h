// lane: per-endpoint delivery state, one lane per endpoint key
// ("scheme://host:port", base/endpoint.h): its circuit breaker
// (retry/breaker), AIMD concurrency limit (retry/aimd), rate permits (retry/
// ratelimit locally, or the shared limiter's), the 429 hold, the disabled flag
// and the URLs that answered 410 Gone (or an operator disabled), and the eviction
// of idle lanes. It decides whether a lane may send now (hk_lane_admit) and
// learns from each attempt's end (hk_lane_finish); which queue goes next is
// worker/sched.c's business, and worker/dispatch.c composes the two under its
// lock.
//
// @locks: none of its own. Every function runs under the owner's lock (the
// dispatcher's), except hk_lanes_any_disabled. Times are CLOCK_MONOTONIC ms; the
// clock is injected (hk_lanes_opts_t.clock_ms) for the calls that take no time.
#ifndef HK_LANE_H
#define HK_LANE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "retry/aimd.h"
#include "retry/breaker.h"
#include "retry/classify.h"
#include "base/link.h"

typedef struct hk_lane hk_lane_t;
typedef struct hk_lanes hk_lanes_t;

// Calls to the shared-state hooks the lanes want made (without the lock).
typedef enum hk_lane_note_kind {
    HK_LANE_NOTE_LANE,      // a new lane (watch other replicas' breakers for it)
    HK_LANE_NOTE_LANE_GONE, // a lane was evicted
    HK_LANE_NOTE_OPEN,      // its breaker opened until until_wall_ms
    HK_LANE_NOTE_CLOSE,     // its breaker closed
    HK_LANE_NOTE_PERMITS,   // it wants `want` permits of its rate limit
} hk_lane_note_kind_t;

typedef struct hk_lane_note {
    hk_lane_note_kind_t kind;
    double rate;
    int burst, want;
    int64_t until_wall_ms;
    char *endpoint; // the whole key, however long (malloc'ed: the taker frees it)
} hk_lane_note_t;

// Called (under the lock) when the queues parked on a lane may go again: a slot,
// a probe or a permit freed up, a hold ended, a rule changed.
typedef void hk_lane_unpark_cb(hk_lane_t *l, void *arg);

typedef struct hk_lanes_opts {
    hk_breaker_opts_t breaker;
    hk_aimd_opts_t aimd;
    int64_t idle_ms;         // an idle lane lives this long
    size_t max_lanes;        // live lanes at most
    size_t gone_max;         // URLs disabled by 410 Gone, all lanes together
    int64_t gone_ttl_ms;     // a 410 disables its URL this long
    int64_t hold_default_ms; // a 429 without Retry-After holds its lane this long
    int64_t hold_max_ms;     // no 429 holds a lane longer
    // Which notes someone listens to (the others are never queued).
    int note_lane, note_lane_gone, note_breaker;
    int shared_permits; // permits come from the shared limiter (HK_LANE_NOTE_PERMITS)
    hk_lane_unpark_cb *unpark;
    void *unpark_arg;
    int64_t (*clock_ms)(void); // NULL: hk_clock_mono_ms
} hk_lanes_opts_t;

// The longest normalised URL kept for a disabled URL.
#define HK_LANE_URL_NORM_MAX 8448

hk_lanes_t *hk_lanes_new(const hk_lanes_opts_t *opts);
// Frees every lane (parked lists must be empty of live queues by then).
void hk_lanes_destroy(hk_lanes_t *ls);

// The lane of `key`. `create`: made when missing; `force`: a rule names it
// (config, admin API), made even past max_lanes. Otherwise NULL at the cap when no
// idle lane can make room (the least recently idle evictable one goes at once).
hk_lane_t *hk_lanes_find(hk_lanes_t *ls, const char *key, int create, int force);

// A task bound to the lane (queued, delayed or in flight) / no longer: a lane
// without refs joins the idle list and is evicted idle_ms later.
void hk_lanes_ref(hk_lanes_t *ls, hk_lane_t *l);
void hk_lanes_unref(hk_lanes_t *ls, hk_lane_t *l, int64_t now_ms);

const char *hk_lane_key(const hk_lane_t *l);
// The lane's list of parked queues (worker/sched.c links its queues here).
hk_link_t *hk_lane_parked(hk_lane_t *l);
// Tasks queued for the lane (not delayed): sizes a permit request.
void hk_lane_add_queued(hk_lane_t *l, long delta);

typedef enum hk_lane_verdict {
    HK_LANE_SEND,     // a slot (and rate permit) and a breaker ticket are taken
    HK_LANE_DISABLED, // the endpoint is disabled: divert its whole queue
    HK_LANE_GONE,     // this URL is disabled (410 Gone, or an operator): divert the task
    HK_LANE_OPEN,     // the breaker is OPEN until *open_until_ms: defer the whole queue
    HK_LANE_WAIT,     // a 429 hold, no slot, no permit or no probe: park the queue
} hk_lane_verdict_t;

// May the lane send the task for `url` now? On HK_LANE_SEND the caller owes
// hk_lane_finish or hk_lane_abandon with *ticket.
hk_lane_verdict_t hk_lane_admit(hk_lanes_t *ls, hk_lane_t *l, const char *url, int64_t now_ms,
                                hk_breaker_ticket_t *ticket, int64_t *open_until_ms);

// What one attempt's end tells the lane.
typedef struct hk_lane_result {
    hk_outcome_t outcome;
    int http_status;
    int curl_code;
    int64_t retry_after_ms; // -1 when none
    const char *url;        // disabled when it answered 410 Gone
    hk_breaker_ticket_t ticket;
} hk_lane_result_t;

// Frees the slot, feeds the breaker and the limit (a 429 holds the lane instead
// of failing the breaker), disables the URL on 410, and unparks the lane.
void hk_lane_finish(hk_lanes_t *ls, hk_lane_t *l, const hk_lane_result_t *r, int64_t now_ms);
// Frees the slot without feeding the breaker or the limit (cancelled), unparks.
void hk_lane_abandon(hk_lanes_t *ls, hk_lane_t *l, hk_breaker_ticket_t ticket, int64_t now_ms);

// Housekeeping for a take: forgets expired 410s and evicts idle lanes.
void hk_lanes_sweep(hk_lanes_t *ls, int64_t now_ms);
// Unparks the lanes whose rate-limit or 429-hold wait is over.
void hk_lanes_wake_due(hk_lanes_t *ls, int64_t now_ms);
// The earliest of `next_ms`, a rate/hold wake-up and the next idle eviction.
int64_t hk_lanes_next_wake(hk_lanes_t *ls, int64_t next_ms);

// Queued hook calls: taken (and the array handed over) to be made without the lock.
int hk_lanes_has_notes(const hk_lanes_t *ls);
hk_lane_note_t *hk_lanes_take_notes(hk_lanes_t *ls, size_t *cnt);

// SIGHUP: new limit bounds at once; a CLOSED breaker is replaced now, an OPEN or
// HALF_OPEN one when it next closes. Every lane is unparked.
void hk_lanes_set_policy(hk_lanes_t *ls, const hk_breaker_opts_t *breaker,
                         const hk_aimd_opts_t *aimd);

// Operator rules (see hk_dispatch_endpoint_disable): the lane `key` whole when
// `target` names no path, else the URL alone. 0 ok, -1 unknown/unchanged.
int hk_lanes_disable(hk_lanes_t *ls, const char *key, const char *target, int disabled);
// 1 when the lane `key` exists and is disabled whole.
int hk_lanes_disabled(hk_lanes_t *ls, const char *key);
// Lock-free: 0 while no lane is disabled whole (the peer check is then free).
int hk_lanes_any_disabled(hk_lanes_t *ls);
// A fresh breaker and no 429 hold; the lane is unparked. NULL lane: nothing.
hk_lane_t *hk_lanes_reset(hk_lanes_t *ls, const char *key);
void hk_lanes_set_rate(hk_lanes_t *ls, const char *key, double rate, int burst);
void hk_lanes_permits(hk_lanes_t *ls, const char *key, int granted, int64_t retry_in_ms);
void hk_lanes_remote_open(hk_lanes_t *ls, const char *key, int64_t until_ms);

json_t *hk_lanes_json(hk_lanes_t *ls, int64_t now_ms);
size_t hk_lanes_count(const hk_lanes_t *ls);
size_t hk_lanes_gone_count(hk_lanes_t *ls);

#endif
