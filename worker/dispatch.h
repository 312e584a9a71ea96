// dispatch: everything between "a job is ready" and "a delivery thread sends it".
//
// Tasks wait in one FIFO per (tenant, endpoint). Tenants are served round robin,
// and within a tenant its endpoints are served round robin, so one tenant's
// backlog or one dead endpoint cannot take over the delivery slots.
// Each endpoint (scheme://host:port) has a lane: a circuit breaker (retry/breaker)
// and an adaptive concurrency limit (retry/aimd). A queue whose lane is full, or
// whose breaker is half-open with no probe free, is parked on the lane until a
// slot frees. A queue whose breaker is OPEN is deferred whole until the breaker
// half-opens, without charging an attempt (in memory for batch items and keyed
// tasks, whatever the wait). Tasks may also wait in a delay heap
// until a due time (inline retries).
//
// What the dispatcher will not deliver now it hands to `divert`, outside its lock:
// tasks for a disabled endpoint (410 Gone earlier), and deferrals longer than
// inline_max_ms (the caller sends those to the retry topic).
//
// State is bounded (DESIGN §7): a (tenant, endpoint) queue and a tenant exist only
// while tasks are bound to them (queued, delayed or in flight); a lane outlives its
// last task by lane_idle_ms, and longer only while its breaker is OPEN or a rule
// keeps it (disabled, a rate limit, disabled URLs). At most max_lanes lanes live:
// at the cap the least recently idle lane without work is evicted at once, and
// when every lane holds work a task for a new endpoint waits (in memory, counted
// in hk_dispatch_queued) until one frees: nothing is dropped, and intake's
// in-flight limits bound how many can wait. URLs disabled by 410 Gone expire after
// gone_ttl_ms; past gone_max the oldest are forgotten.
//
// A 429 is back-pressure, not a failure: it does not feed the breaker, it drops
// the lane's concurrency limit (once per hold) and holds the whole lane until its
// Retry-After (hold_default_ms when absent, at most hold_max_ms).
//
// Inside, worker/lane.c keeps each endpoint's lane (breaker, limit, permits, hold,
// gone URLs, eviction) and worker/sched.c decides which task goes next (round
// robin, key chains, delay heap); this module owns the one lock around both.
//
// All functions are thread-safe. Times are CLOCK_MONOTONIC milliseconds.
#ifndef HK_DISPATCH_H
#define HK_DISPATCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "retry/aimd.h"
#include "retry/breaker.h"
#include "model/task.h"

typedef struct hk_dispatch_s hk_dispatch_t;

typedef enum hk_divert {
    HK_DIVERT_GONE,        // the URL answered 410 Gone before: dead-letter as gone
    HK_DIVERT_DISABLED,    // an operator (or the config) disabled the endpoint: the same
    HK_DIVERT_RETRY_TOPIC, // deferred past inline_max_ms: produce to the retry topic, due at due_ms
} hk_divert_t;

// `due_ms` is CLOCK_MONOTONIC (HK_DIVERT_RETRY_TOPIC only). Called without the lock.
typedef void hk_dispatch_divert_cb(hk_task_t *task, hk_divert_t why, int64_t due_ms, void *arg);

// Called, without the lock held, to wake an idle delivery thread.
typedef void hk_dispatch_wake_cb(void *arg);

// Shared-state hooks (Redis, store/redis.h), all optional, all called without
// the lock. A new endpoint appeared (watch other replicas' breakers for it), or
// its lane was evicted (stop watching):
typedef void hk_dispatch_lane_cb(const char *endpoint, void *arg);
// Its breaker opened until `until_wall_ms` (ms since the epoch), or closed (0):
typedef void hk_dispatch_breaker_cb(const char *endpoint, int64_t until_wall_ms, void *arg);
// It needs up to `want` permits of its rate limit; answer with hk_dispatch_permits():
typedef void hk_dispatch_permits_cb(const char *endpoint, double rate, int burst, int want,
                                    void *arg);

typedef struct hk_dispatch_opts {
    hk_breaker_opts_t breaker;
    hk_aimd_opts_t lane;
    int64_t inline_max_ms;
    int ordered; // dispatch.ordering = key: one task per ordering key at a time
    hk_dispatch_divert_cb *divert;
    hk_dispatch_lane_cb *on_lane;
    hk_dispatch_breaker_cb *on_breaker;
    hk_dispatch_permits_cb *want_permits; // NULL: rate limits are this process's own
    hk_dispatch_lane_cb *on_lane_gone;    // a lane was evicted (may be NULL)
    void *arg;

    // Bounds (0 = the default in brackets).
    int64_t lane_idle_ms;    // an idle lane lives this long [30000]
    size_t max_lanes;        // live lanes at most [10000]
    size_t gone_max;         // URLs disabled by 410 Gone, all lanes together [10000]
    int64_t gone_ttl_ms;     // a 410 disables its URL this long [3600000]
    int64_t hold_default_ms; // a 429 without Retry-After holds its lane this long [1000]
    int64_t hold_max_ms;     // no 429 holds a lane longer (retry.max_delay_ms) [3600000]
    // CLOCK_MONOTONIC ms for the calls that take no time argument; NULL =
    // hk_clock_mono_ms (tests inject their own).
    int64_t (*clock_ms)(void);
} hk_dispatch_opts_t;

hk_dispatch_t *hk_dispatch_new(const hk_dispatch_opts_t *opts);

// Destroys the dispatcher and every task still queued or delayed in it.
void hk_dispatch_destroy(hk_dispatch_t *d);

// Registers a delivery thread; returns its slot number for hk_dispatch_take().
int hk_dispatch_register(hk_dispatch_t *d, hk_dispatch_wake_cb *wake, void *arg);

// A task ready now. Its endpoint is taken from task->job->url.
void hk_dispatch_submit(hk_dispatch_t *d, hk_task_t *task);

// A task ready at `due_ms` (an inline retry, or a retry-topic record not yet due).
void hk_dispatch_defer(hk_dispatch_t *d, hk_task_t *task, int64_t due_ms);

// Takes up to `max` tasks for worker `slot`. Every task taken holds a slot of its
// lane and a breaker ticket until hk_dispatch_finish(). *next_due_ms (may be NULL)
// is when the earliest delayed task becomes ready (INT64_MAX: none). When fewer
// than `max` are returned the worker is marked idle and the next submit wakes it.
size_t hk_dispatch_take(hk_dispatch_t *d, int slot, hk_task_t **out, size_t max, int64_t now_ms,
                        int64_t *next_due_ms);

// With ordering by key: the task is terminal (delivered, or about to be
// dead-lettered): the next task of its key, if any, becomes ready. Must be called
// once for every terminal task (a no-op for tasks without a key chain).
void hk_dispatch_release(hk_dispatch_t *d, hk_task_t *task);

// A taken task whose transfer was cancelled (its partition was revoked): frees its
// lane slot without feeding the breaker or limit, and releases its key.
void hk_dispatch_abandon(hk_dispatch_t *d, hk_task_t *task);

// The attempt of a taken task ended with task->outcome (and http_status): frees
// its lane slot, feeds the breaker and the concurrency limit, disables the
// endpoint on 410. Must be called exactly once per taken task, before the task
// is deferred, diverted or returned.
void hk_dispatch_finish(hk_dispatch_t *d, hk_task_t *task, int64_t now_ms);

// SIGHUP: new breaker, lane and inline-retry settings. Lanes take the new limit
// bounds at once; a CLOSED breaker is replaced by a fresh one with the new
// settings, an OPEN or HALF_OPEN one when it next closes.
void hk_dispatch_set_policy(hk_dispatch_t *d, const hk_breaker_opts_t *breaker,
                            const hk_aimd_opts_t *lane, int64_t inline_max_ms);

// Operator controls. `target` is an endpoint ("scheme://host:port", or a URL with
// no path): the whole lane, and enabling it also enables every URL under it; or a
// URL with a path or query: that URL alone (a 410 Gone disables exactly the URL
// that answered it, never the whole host). Disabling creates what it names;
// enabling something unknown or not disabled returns -1. 0 ok.
int hk_dispatch_endpoint_disable(hk_dispatch_t *d, const char *target, int disabled);
int hk_dispatch_breaker_reset(hk_dispatch_t *d, const char *endpoint);

// [endpoint] rate and burst: at most `rate` requests per second (0 = no limit),
// `burst` at once. With want_permits the permits come from the shared limiter
// (the whole fleet's rate); while it cannot answer, from a local GCRA.
void hk_dispatch_set_rate(hk_dispatch_t *d, const char *endpoint, double rate, int burst);

// The shared limiter's answer to want_permits: `granted` permits (0: none until
// retry_in_ms from now; -1: it could not say, use the local limiter for now).
void hk_dispatch_permits(hk_dispatch_t *d, const char *endpoint, int granted, int64_t retry_in_ms);

// Another replica opened `endpoint`'s breaker: hold ours open until `until_ms`
// (CLOCK_MONOTONIC). In-flight attempts finish; nothing new is sent until then.
void hk_dispatch_remote_open(hk_dispatch_t *d, const char *endpoint, int64_t until_ms);

// Lane and breaker state, one object per endpoint: endpoint, state, failure_rate,
// calls, trips, next_probe_in_ms (0 unless open), in_flight, limit, queued,
// disabled, disabled_urls, delivered, failed, hold_ms (429 hold left, 0 if
// none), kept (a rule keeps the lane: disabled, rate, disabled URLs).
json_t *hk_dispatch_lanes_json(hk_dispatch_t *d, int64_t now_ms);

// Removes every queued or delayed webhook task of (topic, partition) (revoked) and
// returns them as a list linked through task->next. Batch items are left alone,
// whatever source position they carry: their batch pulls them back.
hk_task_t *hk_dispatch_remove_partition(hk_dispatch_t *d, const char *topic, int32_t partition);

// Removes every queued or delayed task whose task->owner is `owner` (a batch
// pulling back its items: suspended or aborted) and returns them linked through
// task->next. A NULL owner removes nothing.
hk_task_t *hk_dispatch_remove_owned(hk_dispatch_t *d, const void *owner);

// Removes every delayed task (inline retries, breaker deferrals) and returns them
// linked through task->next, each with its due_ms kept (for a hand-off to the
// retry topic at shutdown). Tasks of an ordering key stay: handing one off would
// let the key's next job overtake it; uncommitted, they are redelivered in order.
// Batch items stay too: their batch takes them back (worker/batch.h).
hk_task_t *hk_dispatch_remove_delayed(hk_dispatch_t *d);

// Tasks queued or delayed (not in a delivery thread).
size_t hk_dispatch_queued(hk_dispatch_t *d);

// Rules that name an address also apply to the address actually connected: 1
// when the endpoint "scheme://<ip>:<port>" (scheme from `url`) is disabled, so a
// transfer for `url` that reached that peer under another name must not be sent.
// `ip` as curl reports it (IPv4, or IPv6 without brackets). Any thread.
int hk_dispatch_peer_disabled(hk_dispatch_t *d, const char *url, const char *ip, long port);

// Live lanes, (tenant, endpoint) queues and tenants (for tests and /metrics).
typedef struct hk_dispatch_counts {
    size_t lanes, queues, tenants, chains, gone_urls, waiting_for_lane;
} hk_dispatch_counts_t;
void hk_dispatch_counts(hk_dispatch_t *d, hk_dispatch_counts_t *out);

#endif
