// dispatch: the owner of the lock that composes the lanes (worker/lane.c: per
// endpoint, may it send now?) and the scheduler (worker/sched.c: which task is
// next). It runs a take (sweep, admit waiting tasks, wake lanes, move due tasks,
// then serve queues round robin while their lanes admit), feeds each attempt's
// end back to its lane, wakes idle delivery threads, and makes the lanes'
// shared-state hook calls and the diversions outside the lock.
#include "worker/dispatch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry/ratelimit.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/endpoint.h"
#include "worker/lane.h"
#include "worker/sched.h"

#define MAX_WORKERS 256

typedef struct worker {
    hk_dispatch_wake_cb *wake;
    void *arg;
    int idle;
} worker_t;

typedef struct diverted {
    hk_task_t *task;
    hk_divert_t why;
    int64_t due_ms;
} diverted_t;

struct hk_dispatch_s {
    pthread_mutex_t d_lock;
    hk_dispatch_opts_t d_opts;
    hk_lanes_t *d_lanes;
    hk_sched_t *d_sched;
    worker_t d_workers[MAX_WORKERS];
    int d_workers_cnt;
    int d_wake_next;
};

static int64_t now_of(const hk_dispatch_t *d)
{
    return d->d_opts.clock_ms ? d->d_opts.clock_ms() : hk_clock_mono_ms();
}

// Makes the lanes' queued hook calls, without the lock.
static void flush_notes(hk_dispatch_t *d)
{
    size_t cnt;
    pthread_mutex_lock(&d->d_lock);
    hk_lane_note_t *notes = hk_lanes_take_notes(d->d_lanes, &cnt);
    pthread_mutex_unlock(&d->d_lock);
    void *arg = d->d_opts.arg;
    for (size_t i = 0; i < cnt; i++) {
        hk_lane_note_t *n = &notes[i];
        if (n->kind == HK_LANE_NOTE_LANE)
            d->d_opts.on_lane(n->endpoint, arg);
        else if (n->kind == HK_LANE_NOTE_LANE_GONE)
            d->d_opts.on_lane_gone(n->endpoint, arg);
        else if (n->kind == HK_LANE_NOTE_PERMITS)
            d->d_opts.want_permits(n->endpoint, n->rate, n->burst, n->want, arg);
        else
            d->d_opts.on_breaker(n->endpoint, n->kind == HK_LANE_NOTE_OPEN ? n->until_wall_ms : 0,
                                 arg);
        free(n->endpoint);
    }
    free(notes);
}

// A lane's parked queues may go again (called by the lanes, under the lock).
static void on_unpark(hk_lane_t *l, void *arg)
{
    hk_dispatch_t *d = arg;
    hk_sched_unpark(d->d_sched, l);
}

hk_dispatch_t *hk_dispatch_new(const hk_dispatch_opts_t *opts)
{
    hk_dispatch_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->d_opts = *opts;
    hk_dispatch_opts_t *o = &d->d_opts;
    if (o->lane_idle_ms <= 0)
        o->lane_idle_ms = 30000;
    if (o->max_lanes == 0)
        o->max_lanes = 10000;
    if (o->gone_max == 0)
        o->gone_max = 10000;
    if (o->gone_ttl_ms <= 0)
        o->gone_ttl_ms = 3600000;
    if (o->hold_default_ms <= 0)
        o->hold_default_ms = 1000;
    if (o->hold_max_ms <= 0)
        o->hold_max_ms = 3600000;
    hk_lanes_opts_t lo = {.breaker = o->breaker,
                          .aimd = o->lane,
                          .idle_ms = o->lane_idle_ms,
                          .max_lanes = o->max_lanes,
                          .gone_max = o->gone_max,
                          .gone_ttl_ms = o->gone_ttl_ms,
                          .hold_default_ms = o->hold_default_ms,
                          .hold_max_ms = o->hold_max_ms,
                          .note_lane = o->on_lane != NULL,
                          .note_lane_gone = o->on_lane_gone != NULL,
                          .note_breaker = o->on_breaker != NULL,
                          .shared_permits = o->want_permits != NULL,
                          .unpark = on_unpark,
                          .unpark_arg = d,
                          .clock_ms = o->clock_ms};
    d->d_lanes = hk_lanes_new(&lo);
    d->d_sched = d->d_lanes ? hk_sched_new(d->d_lanes, o->max_lanes) : NULL;
    if (!d->d_sched) {
        hk_lanes_destroy(d->d_lanes);
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->d_lock, NULL);
    return d;
}

void hk_dispatch_destroy(hk_dispatch_t *d)
{
    if (!d)
        return;
    hk_sched_destroy(d->d_sched);
    hk_lanes_destroy(d->d_lanes);
    pthread_mutex_destroy(&d->d_lock);
    free(d);
}

int hk_dispatch_register(hk_dispatch_t *d, hk_dispatch_wake_cb *wake, void *arg)
{
    pthread_mutex_lock(&d->d_lock);
    int slot = d->d_workers_cnt < MAX_WORKERS ? d->d_workers_cnt++ : -1;
    if (slot >= 0)
        d->d_workers[slot] = (worker_t){.wake = wake, .arg = arg, .idle = 0};
    pthread_mutex_unlock(&d->d_lock);
    return slot;
}

// Picks an idle worker to wake (called with the lock held; wake it after unlock).
static worker_t pick_idle(hk_dispatch_t *d)
{
    for (int i = 0; i < d->d_workers_cnt; i++) {
        worker_t *w = &d->d_workers[(d->d_wake_next + i) % d->d_workers_cnt];
        if (w->idle) {
            w->idle = 0;
            d->d_wake_next = (d->d_wake_next + i + 1) % d->d_workers_cnt;
            return *w;
        }
    }
    return (worker_t){0};
}

// Lets go of the lock, then wakes `w` and makes the queued hook calls.
static void unlock_and_wake(hk_dispatch_t *d, worker_t w)
{
    int notes = hk_lanes_has_notes(d->d_lanes);
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    if (notes)
        flush_notes(d);
}

void hk_dispatch_release(hk_dispatch_t *d, hk_task_t *task)
{
    if (!task->chain)
        return;
    pthread_mutex_lock(&d->d_lock);
    worker_t w = hk_sched_release(d->d_sched, task) ? pick_idle(d) : (worker_t){0};
    unlock_and_wake(d, w);
}

void hk_dispatch_submit(hk_dispatch_t *d, hk_task_t *task)
{
    hk_dispatch_defer(d, task, 0);
}

void hk_dispatch_defer(hk_dispatch_t *d, hk_task_t *task, int64_t due_ms)
{
    pthread_mutex_lock(&d->d_lock);
    int wake = hk_sched_add(d->d_sched, task, due_ms, d->d_opts.ordered);
    unlock_and_wake(d, wake ? pick_idle(d) : (worker_t){0});
}

static void divert_add(diverted_t **list, size_t *cnt, size_t *cap, hk_task_t *task,
                       hk_divert_t why, int64_t due)
{
    if (*cnt == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        diverted_t *n = realloc(*list, *cap * sizeof(**list));
        if (!n)
            abort();
        *list = n;
    }
    (*list)[(*cnt)++] = (diverted_t){.task = task, .why = why, .due_ms = due};
}

size_t hk_dispatch_take(hk_dispatch_t *d, int slot, hk_task_t **out, size_t max, int64_t now_ms,
                        int64_t *next_due_ms)
{
    diverted_t *div = NULL;
    size_t div_cnt = 0, div_cap = 0, n = 0;
    hk_sched_t *s = d->d_sched;

    pthread_mutex_lock(&d->d_lock);
    hk_lanes_sweep(d->d_lanes, now_ms);
    hk_sched_admit_waiting(s);
    hk_lanes_wake_due(d->d_lanes, now_ms);
    hk_sched_due(s, now_ms);

    // Diverted tasks stay bound until the loop is over: unbinding may free their
    // queue, which the loop may still be reading.
    hk_sched_queue_t *q;
    while (n < max && (q = hk_sched_front(s))) {
        hk_lane_t *l = hk_sched_queue_lane(q);
        hk_breaker_ticket_t ticket;
        int64_t due = 0;
        switch (
            hk_lane_admit(d->d_lanes, l, hk_sched_queue_head(q)->job->url, now_ms, &ticket, &due)) {
        case HK_LANE_DISABLED:
            while (hk_sched_queue_cnt(q))
                divert_add(&div, &div_cnt, &div_cap, hk_sched_pop(s, q), HK_DIVERT_DISABLED, 0);
            continue;
        case HK_LANE_GONE:
            divert_add(&div, &div_cnt, &div_cap, hk_sched_pop(s, q), HK_DIVERT_GONE, 0);
            continue;
        case HK_LANE_OPEN:
            // Deferred whole until the breaker half-opens; no attempt is charged.
            while (hk_sched_queue_cnt(q)) {
                hk_task_t *task = hk_sched_pop(s, q);
                hk_metric_add(deferred_open, 1);
                if (due - now_ms <= d->d_opts.inline_max_ms || task->chain ||
                    task->kind == HK_TASK_BATCH_ITEM) {
                    task->due_ms = due;
                    task->open_deferred = 1;
                    hk_sched_delay(s, task);
                } else {
                    divert_add(&div, &div_cnt, &div_cap, task, HK_DIVERT_RETRY_TOPIC, due);
                }
            }
            continue;
        case HK_LANE_WAIT:
            hk_sched_park(q);
            continue;
        case HK_LANE_SEND:
            break;
        }
        hk_task_t *task = hk_sched_pop(s, q);
        task->lane_held = 1;
        task->ticket = ticket;
        out[n++] = task;
        hk_sched_rotate(s, q); // round robin
    }
    for (size_t i = 0; i < div_cnt; i++)
        hk_sched_unbind(s, div[i].task, now_ms);
    if (slot >= 0 && slot < d->d_workers_cnt)
        d->d_workers[slot].idle = (n < max);
    if (next_due_ms) {
        // Idle lanes are evicted on time, and waiting tasks let in, only when
        // someone takes: a sleeper comes back for them.
        *next_due_ms = hk_lanes_next_wake(d->d_lanes, hk_sched_next_due(s));
        if (hk_sched_has_waiting(s) && now_ms + 100 < *next_due_ms)
            *next_due_ms = now_ms + 100;
    }
    int notes = hk_lanes_has_notes(d->d_lanes);
    pthread_mutex_unlock(&d->d_lock);

    for (size_t i = 0; i < div_cnt; i++)
        d->d_opts.divert(div[i].task, div[i].why, div[i].due_ms, d->d_opts.arg);
    free(div);
    if (notes)
        flush_notes(d);
    return n;
}

void hk_dispatch_abandon(hk_dispatch_t *d, hk_task_t *task)
{
    pthread_mutex_lock(&d->d_lock);
    int64_t now = now_of(d);
    if (task->lane_held) {
        task->lane_held = 0;
        hk_lane_abandon(d->d_lanes, hk_sched_lane_of(task), task->ticket, now);
    }
    hk_sched_unbind(d->d_sched, task, now);
    int woke = hk_sched_release(d->d_sched, task);
    unlock_and_wake(d, woke ? pick_idle(d) : (worker_t){0});
}

void hk_dispatch_finish(hk_dispatch_t *d, hk_task_t *task, int64_t now_ms)
{
    if (!task->lane_held)
        return;
    task->lane_held = 0;
    hk_lane_result_t r = {.outcome = task->outcome,
                          .http_status = task->http_status,
                          .curl_code = task->curl_code,
                          .retry_after_ms = task->retry_after_ms,
                          .url = task->job->url,
                          .ticket = task->ticket};
    pthread_mutex_lock(&d->d_lock);
    hk_lane_finish(d->d_lanes, hk_sched_lane_of(task), &r, now_ms);
    hk_sched_unbind(d->d_sched, task, now_ms);
    unlock_and_wake(d, pick_idle(d));
}

void hk_dispatch_set_policy(hk_dispatch_t *d, const hk_breaker_opts_t *breaker,
                            const hk_aimd_opts_t *lane, int64_t inline_max_ms)
{
    pthread_mutex_lock(&d->d_lock);
    d->d_opts.breaker = *breaker;
    d->d_opts.lane = *lane;
    d->d_opts.inline_max_ms = inline_max_ms;
    hk_lanes_set_policy(d->d_lanes, breaker, lane);
    pthread_mutex_unlock(&d->d_lock);
}

int hk_dispatch_endpoint_disable(hk_dispatch_t *d, const char *target, int disabled)
{
    char key[HK_ENDPOINT_KEY_MAX];
    if (hk_endpoint_of(target, key, sizeof(key)) != 0)
        return -1;
    pthread_mutex_lock(&d->d_lock);
    int rc = hk_lanes_disable(d->d_lanes, key, target, disabled);
    unlock_and_wake(d, (worker_t){0});
    return rc;
}

int hk_dispatch_peer_disabled(hk_dispatch_t *d, const char *url, const char *ip, long port)
{
    if (!hk_lanes_any_disabled(d->d_lanes) || !url || !ip)
        return 0;
    char key[HK_ENDPOINT_KEY_MAX];
    if (hk_endpoint_peer_key(url, ip, port, key, sizeof(key)) != 0)
        return 0;
    pthread_mutex_lock(&d->d_lock);
    int disabled = hk_lanes_disabled(d->d_lanes, key);
    pthread_mutex_unlock(&d->d_lock);
    return disabled;
}

int hk_dispatch_breaker_reset(hk_dispatch_t *d, const char *endpoint)
{
    char key[HK_ENDPOINT_KEY_MAX];
    if (hk_endpoint_of(endpoint, key, sizeof(key)) != 0)
        snprintf(key, sizeof(key), "%s", endpoint);
    pthread_mutex_lock(&d->d_lock);
    hk_lane_t *l = hk_lanes_reset(d->d_lanes, key);
    worker_t w = {0};
    if (l) {
        // What the open breaker deferred is due now, not when it would have half-opened.
        size_t released = hk_sched_release_deferred(d->d_sched, l, now_of(d));
        hk_log(HK_LOG_WARN, "breaker_reset", "{s:s,s:I}", "endpoint", hk_lane_key(l), "released",
               (json_int_t)released);
        w = pick_idle(d);
    }
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    flush_notes(d);
    return l ? 0 : -1;
}

void hk_dispatch_set_rate(hk_dispatch_t *d, const char *endpoint, double rate, int burst)
{
    char key[HK_ENDPOINT_KEY_MAX];
    if (hk_endpoint_of(endpoint, key, sizeof(key)) != 0)
        return;
    pthread_mutex_lock(&d->d_lock);
    hk_lanes_set_rate(d->d_lanes, key, rate, burst);
    worker_t w = pick_idle(d);
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    flush_notes(d);
}

void hk_dispatch_permits(hk_dispatch_t *d, const char *endpoint, int granted, int64_t retry_in_ms)
{
    pthread_mutex_lock(&d->d_lock);
    hk_lanes_permits(d->d_lanes, endpoint, granted, retry_in_ms);
    // Wake someone either way: a sleeper must learn the new wake-up time.
    worker_t w = pick_idle(d);
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
}

void hk_dispatch_remote_open(hk_dispatch_t *d, const char *endpoint, int64_t until_ms)
{
    pthread_mutex_lock(&d->d_lock);
    hk_lanes_remote_open(d->d_lanes, endpoint, until_ms);
    pthread_mutex_unlock(&d->d_lock);
}

json_t *hk_dispatch_lanes_json(hk_dispatch_t *d, int64_t now_ms)
{
    pthread_mutex_lock(&d->d_lock);
    json_t *arr = hk_lanes_json(d->d_lanes, now_ms);
    pthread_mutex_unlock(&d->d_lock);
    return arr;
}

void hk_dispatch_counts(hk_dispatch_t *d, hk_dispatch_counts_t *out)
{
    pthread_mutex_lock(&d->d_lock);
    hk_sched_counts_t sc;
    hk_sched_counts(d->d_sched, &sc);
    *out = (hk_dispatch_counts_t){.lanes = hk_lanes_count(d->d_lanes),
                                  .queues = sc.queues,
                                  .tenants = sc.tenants,
                                  .chains = sc.chains,
                                  .gone_urls = hk_lanes_gone_count(d->d_lanes),
                                  .waiting_for_lane = sc.waiting_for_lane};
    pthread_mutex_unlock(&d->d_lock);
}

hk_task_t *hk_dispatch_remove_partition(hk_dispatch_t *d, const char *topic, int32_t partition)
{
    pthread_mutex_lock(&d->d_lock);
    hk_task_t *removed = hk_sched_remove_partition(d->d_sched, topic, partition, now_of(d));
    unlock_and_wake(d, (worker_t){0});
    return removed;
}

hk_task_t *hk_dispatch_remove_owned(hk_dispatch_t *d, const void *owner)
{
    pthread_mutex_lock(&d->d_lock);
    hk_task_t *removed = hk_sched_remove_owned(d->d_sched, owner, now_of(d));
    unlock_and_wake(d, (worker_t){0});
    return removed;
}

hk_task_t *hk_dispatch_remove_delayed(hk_dispatch_t *d)
{
    pthread_mutex_lock(&d->d_lock);
    hk_task_t *removed = hk_sched_remove_delayed(d->d_sched, now_of(d));
    pthread_mutex_unlock(&d->d_lock);
    return removed;
}

size_t hk_dispatch_queued(hk_dispatch_t *d)
{
    pthread_mutex_lock(&d->d_lock);
    size_t n = hk_sched_queued(d->d_sched);
    pthread_mutex_unlock(&d->d_lock);
    return n;
}
