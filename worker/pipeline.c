// pipeline: a job's path through hookd. Every hop of a task between the threads
// is a callback defined here, in the order a job meets them:
//
//   queue/intake.c        consumes a record, parses it (worker/job.c, worker/task.c)
//     │ on_intake_submit  ── unknown tenant ──────────────────────────► DLQ
//     │ (batch job: on_batch_intake → worker/batch.c, items come back below)
//   store/redis.c         claim: on_claim (done → hk_intake_done; busy → reclaim_due)
//     │
//   worker/dispatch.c     lanes, breakers, fairness, the delay heap
//     │ on_divert         ── gone/disabled ─► DLQ;  breaker open, long ─► retry topic
//     │ on_lane, on_breaker, want_permits → store/redis.c (shared state)
//   worker/deliver.c      one attempt per delivery thread (signing, curl, classify)
//     │ on_delivery_done  model/outcome.c decides:
//     │                     delivered ─────────► task_done
//     │                     retry in memory ───► hk_dispatch_defer (back to dispatch)
//     │                     retry via topic ───► queue/producer.c (hk_producer_retry)
//     │                     exhausted/expired/dead letter ─► queue/producer.c (DLQ)
//     │ on_delivery_cancel (partition revoked) ► task_done, not committed
//   queue/producer.c      on_produced (broker acked) → task_done
//     │
//   task_done             webhook → hk_intake_done (queue/offsets.c commits);
//                         batch item → hk_batch_item_done (worker/batch.c)
//
// Threads: the hops run on the thread that calls them (intake, Redis, delivery,
// producer poll, batch runner); the pipeline's own state is the reclaim list
// (under reclaim_lock), the draining flag and the current policy (atomic).
#include "worker/pipeline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/outcome.h"
#include "queue/intake.h"
#include "queue/producer.h"
#include "retry/backoff.h"
#include "store/redis.h"
#include "worker/batch.h"
#include "base/clock.h"
#include "worker/deliver.h"
#include "base/log.h"
#include "base/metrics.h"

// The reloadable part of what delivery threads decide with: one immutable value
// per config generation, swapped whole on SIGHUP (old ones live until exit, so a
// thread may finish with the one it loaded).
typedef struct policy {
    struct policy *next;        // the older ones (hk_pipeline.policies)
    const hk_config_t *cfg;     // the config it was built from
    hk_outcome_policy_t limits; // backoff, inline-retry bound, head-of-line mode
} policy_t;

struct hk_pipeline {
    const hk_config_t *cfg; // the config hookd started with (non-reloadable keys)
    _Atomic(policy_t *) policy;
    policy_t *policies; // every policy made, newest first: threads may hold any, freed at destroy
    hk_netguard_t *guard;
    hk_intake_t *intake;
    hk_producer_t *producer;
    hk_dispatch_t *dispatch;
    hk_deliver_t *deliver;
    hk_batch_t *batch; // NULL without Postgres
    hk_redis_t *redis; // NULL without Redis

    pthread_mutex_t reclaim_lock; // tasks whose key another replica has in flight
    hk_task_t *reclaim;           // (lease busy): asked again at task->due_ms
    atomic_int draining;          // shutting down: every retry goes to the retry topic

    pthread_t intake_tid;
    int intake_running;
};

// A task is finished with: batch items go back to their batch, everything else
// to intake (which commits its offset unless task->cancelled).
static void task_done(hk_pipeline_t *pl, hk_task_t *task)
{
    if (task->kind == HK_TASK_BATCH_ITEM)
        hk_batch_item_done(pl->batch, task);
    else
        hk_intake_done(task, pl->intake);
}

// The producer's acknowledgement: a dead letter (recorded in Postgres too) or a
// retry record. Either way the job left this process: its Redis lease goes.
static void on_produced(hk_task_t *task, void *arg)
{
    hk_pipeline_t *pl = arg;
    if (!task->to_retry_topic && pl->batch)
        hk_batch_record_dead_letter(pl->batch, task);
    if (pl->redis && task->job && task->kind == HK_TASK_WEBHOOK)
        hk_redis_release(pl->redis, task->job->tenant, task->job->id);
    task_done(pl, task);
}

// ---- Redis (store/redis.h): dedupe across replicas, shared limits ----

#define RECLAIM_MS 500 // a key another replica has in flight is asked about again after this

typedef struct claim {
    hk_pipeline_t *pl;
    hk_task_t *task;
    int64_t due_ms;
} claim_t;

static void on_claim(hk_claim_t result, void *arg)
{
    claim_t *c = arg;
    hk_pipeline_t *pl = c->pl;
    hk_task_t *task = c->task;
    int64_t due = c->due_ms;
    free(c);
    switch (result) {
    case HK_CLAIM_DONE: // delivered already (by another replica, or before a crash)
        hk_metric_add(duplicate_suppressed, 1);
        hk_log(HK_LOG_INFO, "duplicate_suppressed", "{s:s,s:s}", "id", task->job->id, "tenant",
               task->job->tenant);
        task->outcome = HK_OUTCOME_DELIVERED;
        hk_intake_done(task, pl->intake);
        return;
    case HK_CLAIM_BUSY: // another replica is sending it right now: ask again soon
        task->due_ms = hk_clock_mono_ms() + RECLAIM_MS;
        task->retry_due_wall_ms = due; // when it may be sent, kept for later
        pthread_mutex_lock(&pl->reclaim_lock);
        task->next = pl->reclaim;
        pl->reclaim = task;
        pthread_mutex_unlock(&pl->reclaim_lock);
        return;
    case HK_CLAIM_OK:
    case HK_CLAIM_UNKNOWN: // Redis cannot say: deliver on what this process knows
        if (due)
            hk_dispatch_defer(pl->dispatch, task, due);
        else
            hk_dispatch_submit(pl->dispatch, task);
        return;
    }
}

static void claim(hk_pipeline_t *pl, hk_task_t *task, int64_t due_ms)
{
    claim_t *c = malloc(sizeof(*c));
    if (!c)
        abort();
    *c = (claim_t){.pl = pl, .task = task, .due_ms = due_ms};
    hk_redis_claim(pl->redis, task->job->tenant, task->job->id, on_claim, c);
}

// With per-tenant secrets, a job of a tenant that has none would be signed with
// the default secret, which another tenant's receiver may hold too: it is
// dead-lettered as invalid unless signing.unknown_tenant = default. 1 when it was.
static int reject_unknown_tenant(hk_pipeline_t *pl, hk_task_t *task)
{
    if (hk_config_tenant_known(pl->cfg, task->job->tenant))
        return 0;
    hk_metric_add(invalid, 1);
    hk_task_fail(task, HK_OUTCOME_INVALID, 0,
                 "unknown tenant \"%s\": no [tenant] secret and signing.unknown_tenant = reject",
                 task->job->tenant);
    hk_producer_dead_letter(pl->producer, task);
    return 1;
}

// Intake hands over each webhook job: with Redis, dedupe first.
static void on_intake_submit(hk_task_t *task, int64_t due_ms, void *arg)
{
    hk_pipeline_t *pl = arg;
    if (reject_unknown_tenant(pl, task)) {
        return;
    } else if (pl->redis) {
        claim(pl, task, due_ms);
    } else if (due_ms) {
        hk_dispatch_defer(pl->dispatch, task, due_ms);
    } else {
        hk_dispatch_submit(pl->dispatch, task);
    }
}

// Main loop: asks again about keys that were busy. With `topic`, instead hands
// back that partition's waiting tasks cancelled (revoked).
static void reclaim_due(hk_pipeline_t *pl, const char *topic, int32_t partition)
{
    int64_t now = hk_clock_mono_ms();
    hk_task_t *ready = NULL, *gone = NULL;
    pthread_mutex_lock(&pl->reclaim_lock);
    for (hk_task_t **pp = &pl->reclaim; *pp;) {
        hk_task_t *t = *pp;
        int revoked = topic && t->partition == partition && strcmp(t->topic, topic) == 0;
        if (revoked || (!topic && t->due_ms <= now)) {
            *pp = t->next;
            if (revoked) {
                t->next = gone;
                gone = t;
            } else {
                t->next = ready;
                ready = t;
            }
        } else {
            pp = &t->next;
        }
    }
    pthread_mutex_unlock(&pl->reclaim_lock);
    while (ready) {
        hk_task_t *t = ready;
        ready = t->next;
        t->due_ms = 0;
        claim(pl, t, t->retry_due_wall_ms);
    }
    while (gone) {
        hk_task_t *t = gone;
        gone = t->next;
        t->cancelled = 1;
        hk_intake_done(t, pl->intake);
    }
}

static void on_lane(const char *endpoint, void *arg)
{
    hk_pipeline_t *pl = arg;
    if (pl->redis)
        hk_redis_watch(pl->redis, endpoint);
}

static void on_lane_gone(const char *endpoint, void *arg)
{
    hk_pipeline_t *pl = arg;
    if (pl->redis)
        hk_redis_unwatch(pl->redis, endpoint);
}

static void on_breaker(const char *endpoint, int64_t until_wall_ms, void *arg)
{
    hk_pipeline_t *pl = arg;
    if (!pl->redis)
        return;
    if (until_wall_ms)
        hk_redis_breaker_open(pl->redis, endpoint, until_wall_ms);
    else
        hk_redis_breaker_closed(pl->redis, endpoint);
}

// Another replica's breaker for `endpoint` opened (Redis thread).
static void on_remote_breaker(const char *endpoint, int64_t until_wall_ms, void *arg)
{
    hk_pipeline_t *pl = arg;
    int64_t until = hk_clock_mono_ms() + (until_wall_ms - hk_clock_wall_ms());
    hk_dispatch_remote_open(pl->dispatch, endpoint, until);
}

typedef struct permits_req {
    hk_pipeline_t *pl;
    char endpoint[]; // the whole lane key: a cut one would never find its lane
} permits_req_t;

static void on_permits(int granted, int64_t retry_in_ms, void *arg)
{
    permits_req_t *r = arg;
    hk_dispatch_permits(r->pl->dispatch, r->endpoint, granted, retry_in_ms);
    free(r);
}

static void want_permits(const char *endpoint, double rate, int burst, int want, void *arg)
{
    size_t len = strlen(endpoint);
    permits_req_t *r = malloc(sizeof(*r) + len + 1);
    if (!r)
        abort();
    r->pl = arg;
    memcpy(r->endpoint, endpoint, len + 1);
    hk_redis_permits(r->pl->redis, endpoint, rate, burst, want, on_permits, r);
}

static policy_t *policy_new(const hk_config_t *cfg)
{
    policy_t *pol = calloc(1, sizeof(*pol));
    if (!pol)
        abort();
    pol->cfg = cfg;
    pol->limits.backoff = (hk_backoff_t){.schedule_ms = cfg->retry_schedule_ms,
                                         .schedule_cnt = cfg->retry_schedule_cnt,
                                         .base_ms = cfg->retry_base_ms,
                                         .multiplier = cfg->retry_multiplier,
                                         .max_delay_ms = cfg->retry_max_delay_ms};
    pol->limits.inline_max_ms = cfg->retry_inline_max_ms;
    pol->limits.hol_block = cfg->dispatch_head_of_line == HK_HEAD_OF_LINE_BLOCK;
    return pol;
}

// Jitter needs a random source per delivery thread.
static _Thread_local uint64_t rng_state;

static uint64_t *rng(void)
{
    if (rng_state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rng_state =
            ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&rng_state ^ 0x9e3779b97f4a7c15ull;
    }
    return &rng_state;
}

// Carries out a retry decision: the delay heap, or the retry topic (the source
// offset is then committed once that record is acked).
static void schedule_retry(hk_pipeline_t *pl, hk_task_t *task, const hk_outcome_decision_t *d)
{
    int in_memory = d->action == HK_OUTCOME_ACT_RETRY_MEMORY;
    hk_log(HK_LOG_DEBUG, "retry_scheduled", "{s:s,s:i,s:I,s:s,s:s}", "id", task->job->id,
           "attempts", task->attempts, "delay_ms", (json_int_t)d->delay_ms, "via",
           in_memory ? "memory" : "topic", "error", task->error);
    if (in_memory) {
        hk_metric_add(retries_inline, 1);
        hk_dispatch_defer(pl->dispatch, task, hk_clock_mono_ms() + d->delay_ms);
    } else {
        hk_producer_retry(pl->producer, task, d->due_wall_ms);
    }
}

// An attempt ended (delivery thread). model/outcome.c decides what it means
// (done, retry later, or dead-letter); this carries the decision out.
static void on_delivery_done(hk_task_t *task, void *arg)
{
    hk_pipeline_t *pl = arg;
    const policy_t *pol = atomic_load(&pl->policy);
    hk_dispatch_finish(pl->dispatch, task, hk_clock_mono_ms());

    const hk_outcome_facts_t facts = {
        .outcome = task->outcome,
        .attempts = task->attempts,
        .max_attempts = task->job->max_attempts,
        .expires_at_ms = task->job->expires_at_ms,
        .retry_after_ms = task->retry_after_ms,
        .last_error = task->error,
        .ordered = task->chain != NULL,
        .batch_item = task->kind == HK_TASK_BATCH_ITEM,
        .draining = atomic_load(&pl->draining),
        .now_wall_ms = hk_clock_wall_ms(),
    };
    hk_outcome_decision_t d = hk_outcome_decide(&facts, &pol->limits, rng());
    switch (d.action) {
    case HK_OUTCOME_ACT_DELIVERED:
        hk_dispatch_release(pl->dispatch, task);
        if (pl->redis && task->kind == HK_TASK_WEBHOOK)
            hk_redis_done(pl->redis, task->job->tenant, task->job->id);
        task_done(pl, task);
        return;
    case HK_OUTCOME_ACT_RETRY_MEMORY:
    case HK_OUTCOME_ACT_RETRY_TOPIC:
        schedule_retry(pl, task, &d);
        return;
    case HK_OUTCOME_ACT_EXHAUSTED:
    case HK_OUTCOME_ACT_EXPIRED:
        hk_task_fail(task, d.outcome, task->http_status, "%s", d.reason);
        break;
    default:
        break;
    }
    hk_dispatch_release(pl->dispatch, task);
    hk_producer_dead_letter(pl->producer, task);
}

// A transfer of a revoked partition was cancelled: no outcome, not committed.
static void on_delivery_cancel(hk_task_t *task, void *arg)
{
    hk_pipeline_t *pl = arg;
    hk_dispatch_abandon(pl->dispatch, task);
    if (pl->redis && task->kind == HK_TASK_WEBHOOK)
        hk_redis_release(pl->redis, task->job->tenant, task->job->id);
    task_done(pl, task);
}

// Intake asks: cancel what is still being sent for a revoked partition.
// A revoked partition's queued tasks, taken out of the dispatcher (intake drops
// them; the partition's new owner sends them).
static hk_task_t *unqueue_partition(const char *topic, int32_t partition, void *arg)
{
    hk_pipeline_t *pl = arg;
    return hk_dispatch_remove_partition(pl->dispatch, topic, partition);
}

static void cancel_partition(const char *topic, int32_t partition, void *arg)
{
    hk_pipeline_t *pl = arg;
    hk_deliver_cancel(pl->deliver, topic, partition);
    reclaim_due(pl, topic, partition);
}

// The dispatcher will not deliver these now (see worker/dispatch.h).
static void on_divert(hk_task_t *task, hk_divert_t why, int64_t due_ms, void *arg)
{
    hk_pipeline_t *pl = arg;
    if (why == HK_DIVERT_GONE || why == HK_DIVERT_DISABLED) {
        hk_task_fail(task, HK_OUTCOME_GONE, 0, "%s",
                     why == HK_DIVERT_GONE ? "URL disabled after 410 Gone (or by an operator)"
                                           : "endpoint disabled by an operator or the config");
        hk_dispatch_release(pl->dispatch, task);
        hk_producer_dead_letter(pl->producer, task);
        return;
    }
    hk_producer_retry(pl->producer, task, hk_clock_wall_ms() + (due_ms - hk_clock_mono_ms()));
}

// ---- batches (worker/batch.h) ----

// The longest a revoked partition's batches may take to hand their tasks back:
// inside intake's own bounded revoke wait, with room for the checkpoint.
static int batch_revoke_wait_ms(const hk_config_t *cfg)
{
    int wait = cfg->shutdown_grace_ms < 5000 ? cfg->shutdown_grace_ms : 5000;
    return wait > 1000 ? wait - 1000 : wait / 2;
}

static void on_batch_intake(hk_task_t *task, void *arg)
{
    hk_pipeline_t *pl = arg;
    if (!reject_unknown_tenant(pl, task))
        hk_batch_submit(pl->batch, task);
}

static void on_batch_done(hk_task_t *task, void *arg)
{
    hk_pipeline_t *pl = arg;
    hk_intake_done(task, pl->intake);
}

static void on_batch_dead_letter(hk_task_t *task, void *arg)
{
    hk_pipeline_t *pl = arg;
    hk_producer_dead_letter(pl->producer, task);
}

static void on_batch_cancel(const void *owner, void *arg)
{
    hk_pipeline_t *pl = arg;
    hk_deliver_cancel_owned(pl->deliver, owner);
}

static void on_revoking(const char *topic, int32_t partition, void *arg)
{
    hk_pipeline_t *pl = arg;
    hk_batch_suspend(pl->batch, topic, partition,
                     batch_revoke_wait_ms(atomic_load(&pl->policy)->cfg));
}

static void *intake_main(void *arg)
{
    hk_pipeline_t *pl = arg;
    hk_intake_run(pl->intake, pl->producer);
    return NULL;
}

static hk_dispatch_opts_t dispatch_opts_of(const hk_config_t *cfg, hk_pipeline_t *pl)
{
    return (hk_dispatch_opts_t){
        .breaker = {.window = cfg->breaker_window,
                    .min_calls = cfg->breaker_min_calls,
                    .failure_rate = cfg->breaker_failure_rate,
                    .consecutive_failures = cfg->breaker_consecutive_failures,
                    .open_ms = cfg->breaker_open_ms,
                    .max_open_ms = cfg->breaker_max_open_ms,
                    .probes = cfg->breaker_probes},
        .lane = {.initial = cfg->lanes_initial_limit,
                 .min = cfg->lanes_min_limit,
                 .max = cfg->lanes_max_limit,
                 .decrease = 0.9},
        .inline_max_ms = cfg->retry_inline_max_ms,
        .ordered = cfg->dispatch_ordering == HK_ORDERING_KEY,
        .divert = on_divert,
        .on_lane = cfg->redis_url[0] ? on_lane : NULL,
        .on_breaker = cfg->redis_url[0] ? on_breaker : NULL,
        .want_permits = cfg->redis_url[0] ? want_permits : NULL,
        .on_lane_gone = cfg->redis_url[0] ? on_lane_gone : NULL,
        .arg = pl,
        .lane_idle_ms = cfg->dispatch_lane_idle_ms,
        .max_lanes = (size_t)cfg->dispatch_max_lanes,
        .gone_max = (size_t)cfg->dispatch_gone_urls_max,
        .gone_ttl_ms = cfg->dispatch_gone_ttl_ms,
        .hold_default_ms = cfg->dispatch_hold_429_ms,
        .hold_max_ms = cfg->retry_max_delay_ms,
    };
}

// [endpoint] sections: disabled, rate and burst. Endpoints `old` had and `cfg`
// has not lose their rate limit.
static void apply_endpoints(hk_dispatch_t *d, const hk_config_t *cfg, const hk_config_t *old)
{
    for (size_t i = 0; old && i < old->endpoints_cnt; i++)
        if (!hk_config_endpoint(cfg, old->endpoints[i].endpoint) && old->endpoints[i].rate[0])
            hk_dispatch_set_rate(d, old->endpoints[i].endpoint, 0, 1);
    for (size_t i = 0; i < cfg->endpoints_cnt; i++) {
        const hk_endpoint_conf_t *ep = &cfg->endpoints[i];
        hk_dispatch_endpoint_disable(d, ep->endpoint, ep->disabled);
        double rate = 0;
        if (hk_config_parse_rate(ep->rate, &rate) == 0 && (rate > 0 || old))
            hk_dispatch_set_rate(d, ep->endpoint, rate, ep->burst);
    }
}

// ---- start-up and shutdown, in the order main.c calls them ----

hk_pipeline_t *hk_pipeline_new(const hk_config_t *cfg, hk_netguard_t *guard)
{
    hk_pipeline_t *pl = calloc(1, sizeof(*pl));
    if (!pl)
        abort();
    pl->cfg = cfg;
    pl->guard = guard;
    pthread_mutex_init(&pl->reclaim_lock, NULL);
    pl->policies = policy_new(cfg);
    atomic_store(&pl->policy, pl->policies);
    return pl;
}

int hk_pipeline_prepare(hk_pipeline_t *pl, char *err, size_t err_size)
{
    const hk_config_t *cfg = pl->cfg;
    hk_dispatch_opts_t dispatch_opts = dispatch_opts_of(cfg, pl);
    if (cfg->redis_url[0]) {
        hk_redis_opts_t ro = {.url = cfg->redis_url,
                              .timeout_ms = cfg->redis_timeout_ms,
                              .dedupe_ttl_s = cfg->redis_dedupe_ttl_s,
                              .lease_ms = cfg->redis_lease_ms,
                              .sync_ms = cfg->redis_sync_ms,
                              .watch_chunk = cfg->redis_watch_chunk,
                              .on_breaker = on_remote_breaker,
                              .arg = pl};
        if (!(pl->redis = hk_redis_start(&ro, err, err_size)))
            return -1;
        hk_log(HK_LOG_INFO, "redis_configured", "{s:s,s:b}", "instance",
               hk_redis_instance(pl->redis), "up", hk_redis_up(pl->redis));
    }
    pl->dispatch = hk_dispatch_new(&dispatch_opts);
    apply_endpoints(pl->dispatch, cfg, NULL);
    return 0;
}

hk_dispatch_t *hk_pipeline_dispatch(hk_pipeline_t *pl)
{
    return pl->dispatch;
}

int hk_pipeline_start(hk_pipeline_t *pl, const char *brokers, char *err, size_t err_size)
{
    const hk_config_t *cfg = pl->cfg;
    if (!(pl->intake = hk_intake_new(cfg, brokers, err, err_size)))
        return -1;
    hk_intake_set_cancel(pl->intake, cancel_partition, pl);
    hk_intake_set_submit(pl->intake, on_intake_submit, pl);
    hk_intake_set_unqueue(pl->intake, unqueue_partition, pl);
    if (!(pl->producer = hk_producer_new(cfg, brokers, on_produced, pl, err, err_size)))
        return -1;
    if (cfg->postgres_url[0]) {
        hk_batch_opts_t bopts = {.cfg = cfg,
                                 .dispatch = pl->dispatch,
                                 .done = on_batch_done,
                                 .dead_letter = on_batch_dead_letter,
                                 .cancel = on_batch_cancel,
                                 .arg = pl};
        if (!(pl->batch = hk_batch_start(&bopts, err, err_size)))
            return -1;
        hk_intake_set_batch(pl->intake, on_batch_intake, pl);
        hk_intake_set_revoking(pl->intake, on_revoking, pl);
    }
    hk_deliver_opts_t dopts = {.cfg = cfg,
                               .dispatch = pl->dispatch,
                               .guard = pl->guard,
                               .on_done = on_delivery_done,
                               .on_cancel = on_delivery_cancel,
                               .arg = pl};
    if (!(pl->deliver = hk_deliver_start(&dopts, err, err_size)))
        return -1;
    return 0;
}

void hk_pipeline_run(hk_pipeline_t *pl)
{
    pthread_create(&pl->intake_tid, NULL, intake_main, pl);
    pl->intake_running = 1;
}

void hk_pipeline_tick(hk_pipeline_t *pl)
{
    if (pl->redis)
        reclaim_due(pl, NULL, 0);
}

int hk_pipeline_ready(hk_pipeline_t *pl)
{
    return hk_intake_assigned(pl->intake) > 0;
}

void hk_pipeline_reload(hk_pipeline_t *pl, const hk_config_t *next, const hk_config_t *cur)
{
    policy_t *pol = policy_new(next);
    pol->next = pl->policies;
    pl->policies = pol;
    atomic_store(&pl->policy, pol);
    hk_dispatch_opts_t dopts = dispatch_opts_of(next, pl);
    hk_dispatch_set_policy(pl->dispatch, &dopts.breaker, &dopts.lane, dopts.inline_max_ms);
    apply_endpoints(pl->dispatch, next, cur);
    hk_intake_set_config(pl->intake, next);
}

void hk_pipeline_drain(hk_pipeline_t *pl, const hk_config_t *cur, size_t *aborted_transfers,
                       size_t *unacked_dead_letters)
{
    // Batches checkpoint and hand their tasks back uncommitted: they resume from
    // their checkpoints wherever their partitions go next.
    if (pl->batch)
        hk_batch_suspend_all(pl->batch, batch_revoke_wait_ms(cur));
    hk_intake_stop(pl->intake);
    // Retries waiting in memory would hold their offsets for the whole grace
    // period: hand them to the retry topic (attempts and due time kept), so their
    // offsets can be committed as soon as the broker has the records.
    atomic_store(&pl->draining, 1);
    int handed_off = 0;
    for (hk_task_t *task = hk_dispatch_remove_delayed(pl->dispatch), *next; task; task = next) {
        next = task->next;
        int64_t wait = task->due_ms - hk_clock_mono_ms();
        hk_producer_retry(pl->producer, task, hk_clock_wall_ms() + (wait > 0 ? wait : 0));
        handed_off++;
    }
    if (handed_off)
        hk_log(HK_LOG_INFO, "retries_handed_off", "{s:i}", "count", handed_off);
    if (pl->intake_running)
        pthread_join(pl->intake_tid, NULL);
    pl->intake_running = 0;
    *aborted_transfers = hk_deliver_stop(pl->deliver);
    pl->deliver = NULL;
    *unacked_dead_letters = hk_producer_destroy(pl->producer, 1000);
    pl->producer = NULL;
    hk_batch_stop(pl->batch);
    pl->batch = NULL;
}

void hk_pipeline_stop(hk_pipeline_t *pl)
{
    if (!pl)
        return;
    hk_deliver_stop(pl->deliver);
    pl->deliver = NULL;
    hk_producer_destroy(pl->producer, 0);
    pl->producer = NULL;
    hk_batch_stop(pl->batch);
    pl->batch = NULL;
    hk_redis_stop(pl->redis); // pending claims complete now (their tasks go to the dispatcher)
    pl->redis = NULL;
    while (pl->reclaim) {
        hk_task_t *t = pl->reclaim;
        pl->reclaim = t->next;
        hk_task_destroy(t);
    }
    hk_intake_destroy(pl->intake);
    pl->intake = NULL;
}

void hk_pipeline_destroy(hk_pipeline_t *pl)
{
    if (!pl)
        return;
    pthread_mutex_destroy(&pl->reclaim_lock);
    hk_dispatch_destroy(pl->dispatch);
    while (pl->policies) {
        policy_t *pol = pl->policies;
        pl->policies = pol->next;
        free(pol);
    }
    free(pl);
}
