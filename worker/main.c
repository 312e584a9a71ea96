// hookd: consumes jobs from Kafka and delivers them as signed webhooks.
//
// Threads: main (signals, summary line), intake (the consumer), N delivery threads,
// the producer's poll thread. main wires them together and owns shutdown:
// first SIGTERM/SIGINT drains, a second one exits at once.
#include <curl/curl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "config/config.h"
#include "worker/clock.h"
#include "queue/intake.h"
#include "queue/mockkafka.h"
#include "queue/producer.h"
#include "queue/topics.h"
#include "retry/backoff.h"
#include "store/checkpoint.h"
#include "store/migrate.h"
#include "store/pg.h"
#include "store/redis.h"
#include "worker/admin.h"
#include "worker/batch.h"
#include "worker/deliver.h"
#include "worker/dispatch.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/netguard.h"

extern char **environ;

static volatile sig_atomic_t stop_signals = 0;
static volatile sig_atomic_t reload_requested = 0;

static void on_hup_signal(int sig)
{
    (void)sig;
    reload_requested = 1;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    if (++stop_signals > 1) {
        static const char msg[] = "{\"level\":\"warn\",\"event\":\"exit_now\"}\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        _exit(1);
    }
}

// The reloadable part of what delivery threads decide with: one immutable value
// per config generation, swapped whole on SIGHUP (old ones live until exit, so a
// thread may finish with the one it loaded).
typedef struct policy {
    const hk_config_t *cfg; // the config it was built from
    hk_backoff_t backoff;
    int64_t inline_max_ms;
    int hol_block; // dispatch.head_of_line = block
} policy_t;

typedef struct app {
    const hk_config_t *cfg; // the config hookd started with (non-reloadable keys)
    _Atomic(policy_t *) policy;
    hk_intake_t *intake;
    hk_producer_t *producer;
    hk_dispatch_t *dispatch;
    hk_deliver_t *deliver;
    hk_batch_t *batch; // NULL without Postgres
    hk_redis_t *redis; // NULL without Redis

    pthread_mutex_t reclaim_lock; // tasks whose key another replica has in flight
    hk_task_t *reclaim;           // (lease busy): asked again at task->due_ms
    atomic_int draining;          // shutting down: every retry goes to the retry topic

    pthread_mutex_t admin_pg_lock; // the admin thread's own connection, for GET /v1/batches
    hk_pg_t *admin_pg;
} app_t;

// A task is finished with: batch items go back to their batch, everything else
// to intake (which commits its offset unless task->cancelled).
static void task_done(app_t *app, hk_task_t *task)
{
    if (task->batch)
        hk_batch_item_done(app->batch, task);
    else
        hk_intake_done(task, app->intake);
}

// The producer's acknowledgement: a dead letter (recorded in Postgres too) or a
// retry record. Either way the job left this process: its Redis lease goes.
static void on_produced(hk_task_t *task, void *arg)
{
    app_t *app = arg;
    if (!task->to_retry_topic && app->batch)
        hk_batch_record_dead_letter(app->batch, task);
    if (app->redis && task->job && !task->batch)
        hk_redis_release(app->redis, task->job->tenant, task->job->id);
    task_done(app, task);
}

// ---- Redis (store/redis.h): dedupe across replicas, shared limits ----

#define RECLAIM_MS 500 // a key another replica has in flight is asked about again after this

typedef struct claim {
    app_t *app;
    hk_task_t *task;
    int64_t due_ms;
} claim_t;

static void on_claim(hk_claim_t result, void *arg)
{
    claim_t *c = arg;
    app_t *app = c->app;
    hk_task_t *task = c->task;
    int64_t due = c->due_ms;
    free(c);
    switch (result) {
    case HK_CLAIM_DONE: // delivered already (by another replica, or before a crash)
        hk_metric_add(duplicate_suppressed, 1);
        hk_log(HK_LOG_INFO, "duplicate_suppressed", "{s:s,s:s}", "id", task->job->id, "tenant",
               task->job->tenant);
        task->outcome = HK_OUTCOME_DELIVERED;
        hk_intake_done(task, app->intake);
        return;
    case HK_CLAIM_BUSY: // another replica is sending it right now: ask again soon
        task->due_ms = hk_clock_mono_ms() + RECLAIM_MS;
        task->retry_due_wall_ms = due; // when it may be sent, kept for later
        pthread_mutex_lock(&app->reclaim_lock);
        task->next = app->reclaim;
        app->reclaim = task;
        pthread_mutex_unlock(&app->reclaim_lock);
        return;
    case HK_CLAIM_OK:
    case HK_CLAIM_UNKNOWN: // Redis cannot say: deliver on what this process knows
        if (due)
            hk_dispatch_defer(app->dispatch, task, due);
        else
            hk_dispatch_submit(app->dispatch, task);
        return;
    }
}

static void claim(app_t *app, hk_task_t *task, int64_t due_ms)
{
    claim_t *c = malloc(sizeof(*c));
    if (!c)
        abort();
    *c = (claim_t){.app = app, .task = task, .due_ms = due_ms};
    hk_redis_claim(app->redis, task->job->tenant, task->job->id, on_claim, c);
}

// With per-tenant secrets, a job of a tenant that has none would be signed with
// the default secret, which another tenant's receiver may hold too: it is
// dead-lettered as invalid unless signing.unknown_tenant = default. 1 when it was.
static int reject_unknown_tenant(app_t *app, hk_task_t *task)
{
    if (hk_config_tenant_known(app->cfg, task->job->tenant))
        return 0;
    hk_metric_add(invalid, 1);
    hk_task_fail(task, HK_OUTCOME_INVALID, 0,
                 "unknown tenant \"%s\": no [tenant] secret and signing.unknown_tenant = reject",
                 task->job->tenant);
    hk_producer_dead_letter(app->producer, task);
    return 1;
}

// Intake hands over each webhook job: with Redis, dedupe first.
static void on_intake_submit(hk_task_t *task, int64_t due_ms, void *arg)
{
    app_t *app = arg;
    if (reject_unknown_tenant(app, task)) {
        return;
    } else if (app->redis) {
        claim(app, task, due_ms);
    } else if (due_ms) {
        hk_dispatch_defer(app->dispatch, task, due_ms);
    } else {
        hk_dispatch_submit(app->dispatch, task);
    }
}

// Main loop: asks again about keys that were busy. With `topic`, instead hands
// back that partition's waiting tasks cancelled (revoked).
static void reclaim_due(app_t *app, const char *topic, int32_t partition)
{
    int64_t now = hk_clock_mono_ms();
    hk_task_t *ready = NULL, *gone = NULL;
    pthread_mutex_lock(&app->reclaim_lock);
    for (hk_task_t **pp = &app->reclaim; *pp;) {
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
    pthread_mutex_unlock(&app->reclaim_lock);
    while (ready) {
        hk_task_t *t = ready;
        ready = t->next;
        t->due_ms = 0;
        claim(app, t, t->retry_due_wall_ms);
    }
    while (gone) {
        hk_task_t *t = gone;
        gone = t->next;
        t->cancelled = 1;
        hk_intake_done(t, app->intake);
    }
}

static void on_lane(const char *endpoint, void *arg)
{
    app_t *app = arg;
    if (app->redis)
        hk_redis_watch(app->redis, endpoint);
}

static void on_lane_gone(const char *endpoint, void *arg)
{
    app_t *app = arg;
    if (app->redis)
        hk_redis_unwatch(app->redis, endpoint);
}

static void on_breaker(const char *endpoint, int64_t until_wall_ms, void *arg)
{
    app_t *app = arg;
    if (!app->redis)
        return;
    if (until_wall_ms)
        hk_redis_breaker_open(app->redis, endpoint, until_wall_ms);
    else
        hk_redis_breaker_closed(app->redis, endpoint);
}

// Another replica's breaker for `endpoint` opened (Redis thread).
static void on_remote_breaker(const char *endpoint, int64_t until_wall_ms, void *arg)
{
    app_t *app = arg;
    int64_t until = hk_clock_mono_ms() + (until_wall_ms - hk_clock_wall_ms());
    hk_dispatch_remote_open(app->dispatch, endpoint, until);
}

typedef struct permits_req {
    app_t *app;
    char endpoint[]; // the whole lane key: a cut one would never find its lane
} permits_req_t;

static void on_permits(int granted, int64_t retry_in_ms, void *arg)
{
    permits_req_t *r = arg;
    hk_dispatch_permits(r->app->dispatch, r->endpoint, granted, retry_in_ms);
    free(r);
}

static void want_permits(const char *endpoint, double rate, int burst, int want, void *arg)
{
    size_t len = strlen(endpoint);
    permits_req_t *r = malloc(sizeof(*r) + len + 1);
    if (!r)
        abort();
    r->app = arg;
    memcpy(r->endpoint, endpoint, len + 1);
    hk_redis_permits(r->app->redis, endpoint, rate, burst, want, on_permits, r);
}

static policy_t *policy_new(const hk_config_t *cfg)
{
    policy_t *pol = calloc(1, sizeof(*pol));
    if (!pol)
        abort();
    pol->cfg = cfg;
    pol->backoff = (hk_backoff_t){.schedule_ms = cfg->retry_schedule_ms,
                                  .schedule_cnt = cfg->retry_schedule_cnt,
                                  .base_ms = cfg->retry_base_ms,
                                  .multiplier = cfg->retry_multiplier,
                                  .max_delay_ms = cfg->retry_max_delay_ms};
    pol->inline_max_ms = cfg->retry_inline_max_ms;
    pol->hol_block = strcmp(cfg->dispatch_head_of_line, "block") == 0;
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

// Waits `delay_ms` before the next attempt: in memory when short, else through
// the retry topic (the source offset is then committed once that record is acked).
// A job with an ordering key always waits in memory: through the retry topic the
// key's next job would overtake it. So does a batch item: its batch holds it.
static void schedule_retry(app_t *app, const policy_t *pol, hk_task_t *task, int64_t delay_ms)
{
    int in_memory = task->chain || task->batch ||
                    (delay_ms <= pol->inline_max_ms && !atomic_load(&app->draining));
    hk_log(HK_LOG_DEBUG, "retry_scheduled", "{s:s,s:i,s:I,s:s,s:s}", "id", task->job->id,
           "attempts", task->attempts, "delay_ms", (json_int_t)delay_ms, "via",
           in_memory ? "memory" : "topic", "error", task->error);
    if (in_memory) {
        hk_metric_add(retries_inline, 1);
        hk_dispatch_defer(app->dispatch, task, hk_clock_mono_ms() + delay_ms);
    } else {
        hk_producer_retry(app->producer, task, hk_clock_wall_ms() + delay_ms);
    }
}

// An attempt ended (delivery thread). This is the one place where an outcome
// becomes an action: done, retry later, or dead-letter.
static void on_delivery_done(hk_task_t *task, void *arg)
{
    app_t *app = arg;
    const policy_t *pol = atomic_load(&app->policy);
    hk_dispatch_finish(app->dispatch, task, hk_clock_mono_ms());

    switch (task->outcome) {
    case HK_OUTCOME_DELIVERED:
        hk_dispatch_release(app->dispatch, task);
        if (app->redis && !task->batch)
            hk_redis_done(app->redis, task->job->tenant, task->job->id);
        task_done(app, task);
        return;
    case HK_OUTCOME_RETRYABLE: {
        const hk_job_t *job = task->job;
        // head_of_line = block: an ordered head is retried until it succeeds.
        int unlimited = task->chain && pol->hol_block;
        if (task->attempts >= job->max_attempts && !unlimited) {
            char last[sizeof(task->error)];
            snprintf(last, sizeof(last), "%s", task->error);
            hk_task_fail(task, HK_OUTCOME_EXHAUSTED, task->http_status, "%d attempts, last: %s",
                         task->attempts, last);
            break;
        }
        int64_t delay =
            hk_backoff_next_delay(&pol->backoff, task->attempts, task->retry_after_ms, rng());
        if (job->expires_at_ms && hk_clock_wall_ms() + delay >= job->expires_at_ms) {
            char last[sizeof(task->error)];
            snprintf(last, sizeof(last), "%s", task->error);
            hk_task_fail(task, HK_OUTCOME_EXPIRED, task->http_status,
                         "expires before attempt %d, last: %s", task->attempts + 1, last);
            break;
        }
        schedule_retry(app, pol, task, delay);
        return;
    }
    default:
        break;
    }
    hk_dispatch_release(app->dispatch, task);
    hk_producer_dead_letter(app->producer, task);
}

// A transfer of a revoked partition was cancelled: no outcome, not committed.
static void on_delivery_cancel(hk_task_t *task, void *arg)
{
    app_t *app = arg;
    hk_dispatch_abandon(app->dispatch, task);
    if (app->redis && !task->batch)
        hk_redis_release(app->redis, task->job->tenant, task->job->id);
    task_done(app, task);
}

// Intake asks: cancel what is still being sent for a revoked partition.
static void cancel_partition(const char *topic, int32_t partition, void *arg)
{
    app_t *app = arg;
    hk_deliver_cancel(app->deliver, topic, partition);
    reclaim_due(app, topic, partition);
}

// The dispatcher will not deliver these now (see worker/dispatch.h).
static void on_divert(hk_task_t *task, hk_divert_t why, int64_t due_ms, void *arg)
{
    app_t *app = arg;
    if (why == HK_DIVERT_GONE || why == HK_DIVERT_DISABLED) {
        hk_task_fail(task, HK_OUTCOME_GONE, 0, "%s",
                     why == HK_DIVERT_GONE ? "URL disabled after 410 Gone (or by an operator)"
                                           : "endpoint disabled by an operator or the config");
        hk_dispatch_release(app->dispatch, task);
        hk_producer_dead_letter(app->producer, task);
        return;
    }
    hk_producer_retry(app->producer, task, hk_clock_wall_ms() + (due_ms - hk_clock_mono_ms()));
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
    app_t *app = arg;
    if (!reject_unknown_tenant(app, task))
        hk_batch_submit(app->batch, task);
}

static void on_batch_done(hk_task_t *task, void *arg)
{
    app_t *app = arg;
    hk_intake_done(task, app->intake);
}

static void on_batch_dead_letter(hk_task_t *task, void *arg)
{
    app_t *app = arg;
    hk_producer_dead_letter(app->producer, task);
}

static void on_batch_cancel(int32_t no, void *arg)
{
    app_t *app = arg;
    hk_deliver_cancel(app->deliver, HK_TASK_ITEM_TOPIC, no);
}

static void on_revoking(const char *topic, int32_t partition, void *arg)
{
    app_t *app = arg;
    hk_batch_suspend(app->batch, topic, partition,
                     batch_revoke_wait_ms(atomic_load(&app->policy)->cfg));
}

// GET /v1/batches/<id>?tenant=, on the admin thread, with its own connection.
static json_t *admin_batch(const char *id, const char *tenant, int *http_status, void *arg)
{
    app_t *app = arg;
    char err[512];
    pthread_mutex_lock(&app->admin_pg_lock);
    json_t *out = NULL;
    if (hk_pg_ensure(app->admin_pg, err, sizeof(err)) != 0) {
        *http_status = 503;
    } else if (!(out = hk_ckpt_show(app->admin_pg, id, tenant, 100, err, sizeof(err)))) {
        *http_status = strstr(err, "not found") ? 404 : hk_pg_up(app->admin_pg) ? 500 : 503;
    } else {
        *http_status = 200;
    }
    pthread_mutex_unlock(&app->admin_pg_lock);
    return out ? out : json_pack("{s:s}", "error", err);
}

// Applies the schema migrations before anything is consumed. A changed or unknown
// applied migration stops startup; an unreachable Postgres does not (webhooks
// flow, and the batch runner migrates once it connects).
static int migrate_at_start(const hk_config_t *cfg, char *err, size_t err_size)
{
    hk_pg_t *pg = hk_pg_new_config(cfg, NULL);
    if (!pg) {
        snprintf(err, err_size, "postgres: out of memory");
        return -1;
    }
    int rc = 0, applied = 0;
    char why[400];
    if (hk_pg_ensure(pg, why, sizeof(why)) != 0) {
        hk_log(HK_LOG_WARN, "postgres_unavailable", "{s:s,s:s}", "error", why, "effect",
               "batches wait until it is reachable; webhook jobs flow");
    } else if (hk_migrate_apply(pg, &applied, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "postgres migrations: %s", why);
        rc = -1;
    } else {
        hk_log(HK_LOG_INFO, "migrations_checked", "{s:i}", "applied", applied);
    }
    hk_pg_destroy(pg);
    return rc;
}

static void *intake_main(void *arg)
{
    app_t *app = arg;
    hk_intake_run(app->intake, app->producer);
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hookd [-c FILE] [--check-config] [--version]\n"
            "  -c, --config FILE   read FILE (INI); HOOKD_<SECTION>_<KEY> env vars override it\n"
            "      --check-config  validate, print the effective config (secrets redacted), exit\n"
            "  -V, --version       print the version and exit\n");
}

static hk_dispatch_opts_t dispatch_opts_of(const hk_config_t *cfg, app_t *app)
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
        .ordered = strcmp(cfg->dispatch_ordering, "key") == 0,
        .divert = on_divert,
        .on_lane = cfg->redis_url[0] ? on_lane : NULL,
        .on_breaker = cfg->redis_url[0] ? on_breaker : NULL,
        .want_permits = cfg->redis_url[0] ? want_permits : NULL,
        .on_lane_gone = cfg->redis_url[0] ? on_lane_gone : NULL,
        .arg = app,
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

// The keys whose values differ between two configs, as "section.key" strings
// (from the redacted dumps, so secrets are compared without being shown).
static json_t *changed_keys(const hk_config_t *a, const hk_config_t *b)
{
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    FILE *fa = open_memstream(&da, &la), *fb = open_memstream(&db, &lb);
    hk_config_dump(a, fa);
    hk_config_dump(b, fb);
    fclose(fa);
    fclose(fb);
    json_t *out = json_array();
    char section[256] = "";
    char *save_a = NULL;
    for (char *line = strtok_r(da, "\n", &save_a); line; line = strtok_r(NULL, "\n", &save_a)) {
        if (line[0] == '[') {
            snprintf(section, sizeof(section), "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            continue;
        }
        // Is the same line, in the same section, in the other dump?
        char needle[1024];
        snprintf(needle, sizeof(needle), "[%s]", section);
        const char *sec = strstr(db, needle);
        const char *end = sec ? strstr(sec + 1, "\n[") : NULL;
        const char *hit = sec ? strstr(sec, line) : NULL;
        if (!hit || (end && hit > end)) {
            char key[512];
            snprintf(key, sizeof(key), "%s.%.*s", section, (int)strcspn(line, " ="), line);
            json_array_append_new(out, json_string(key));
        }
    }
    free(da);
    free(db);
    return out;
}

// Configs and policies of past reloads: threads may still hold them, so they
// live until exit.
typedef struct kept {
    struct kept *next;
    hk_config_t *cfg;
    policy_t *pol;
} kept_t;

// SIGHUP: load the file again; keep the running config unless the new one is
// valid and changes only reloadable keys.
static const hk_config_t *reload(app_t *app, const char *path, const hk_config_t *cur,
                                 kept_t **kept)
{
    char err[512];
    hk_config_t *next = hk_config_load(path, environ, err, sizeof(err));
    if (next && hk_config_reloadable_diff(cur, next, err, sizeof(err)) != 0) {
        hk_config_destroy(next);
        next = NULL;
    }
    if (!next) {
        hk_log(HK_LOG_ERROR, "config_reload_failed", "{s:s,s:s}", "error", err, "kept",
               "the running config");
        return cur;
    }
    hk_log_set_level_name(next->log_level);
    hk_log_set_full_urls(next->log_full_urls);
    policy_t *pol = policy_new(next);
    atomic_store(&app->policy, pol);
    hk_dispatch_opts_t dopts = dispatch_opts_of(next, app);
    hk_dispatch_set_policy(app->dispatch, &dopts.breaker, &dopts.lane, dopts.inline_max_ms);
    apply_endpoints(app->dispatch, next, cur);
    hk_intake_set_config(app->intake, next);
    hk_log(HK_LOG_INFO, "config_reloaded", "{s:o}", "changed", changed_keys(cur, next));
    kept_t *k = calloc(1, sizeof(*k));
    if (!k)
        abort();
    *k = (kept_t){.next = *kept, .cfg = next, .pol = pol};
    *kept = k;
    return next;
}

// A burst of hosts frees its lanes, queues, tasks and curl's per-host state
// all at once, in chunks spread over every thread's heap; glibc keeps such
// memory (only the top of each heap goes back by itself), so RSS would stay at
// the burst's peak. Once evictions pause for TRIM_QUIET_MS, and every
// TRIM_EVERY_MS while they go on, malloc_trim(0) returns the free pages of all
// arenas. Waiting for the pause lets what others free after the lanes (the
// Redis watch list) go too. Main thread only (docs/operations.md, Memory).
#define TRIM_QUIET_MS 1000
#define TRIM_EVERY_MS 10000

typedef struct trim_state {
    uint64_t seen;    // lanes_evicted at the last look
    int64_t first_ms; // first eviction not trimmed yet (0: none)
    int64_t last_ms;  // latest eviction seen
} trim_state_t;

static void trim_after_evictions(trim_state_t *ts, int64_t now_ms)
{
    uint64_t evicted = hk_metric_get(lanes_evicted);
    if (evicted != ts->seen) {
        ts->seen = evicted;
        ts->last_ms = now_ms;
        if (!ts->first_ms)
            ts->first_ms = now_ms;
    }
    if (!ts->first_ms ||
        (now_ms - ts->last_ms < TRIM_QUIET_MS && now_ms - ts->first_ms < TRIM_EVERY_MS))
        return;
    ts->first_ms = 0;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

// glibc raises its mmap and trim thresholds as the process frees large blocks
// (up to 32 and 64 MB), and a thread arena then keeps that much free memory at
// its top, which malloc_trim() does not reach: in it_hosts librdkafka's broker
// thread kept ~2-3 MB so after the burst. Fixed thresholds stop that: blocks
// from 4 MiB up are mapped on their own (fetch and job buffers stay below), and
// an arena hands back its top past 1 MiB free. Left alone when the environment
// sets glibc's tunables (docs/operations.md, Memory).
static void malloc_setup(void)
{
#ifdef __GLIBC__
    if (getenv("GLIBC_TUNABLES") || getenv("MALLOC_TRIM_THRESHOLD_") ||
        getenv("MALLOC_MMAP_THRESHOLD_"))
        return;
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 20);
#endif
}

static void summary(int64_t *last_ms, uint64_t *last_done)
{
    int64_t now = hk_clock_mono_ms();
    uint64_t done = hk_metric_get(delivered) + hk_metric_get(dead_lettered);
    double secs = (double)(now - *last_ms) / 1000.0;
    double rate = secs > 0 ? (double)(done - *last_done) / secs : 0;
    json_t *by_class = json_object();
    for (int c = 0; c < HK_OUTCOME__CNT; c++) {
        uint64_t n = hk_metric_get(dlq_by_class[c]);
        if (n)
            json_object_set_new(by_class, hk_outcome_name((hk_outcome_t)c),
                                json_integer((json_int_t)n));
    }
    hk_log(HK_LOG_INFO, "summary", "{s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}",
           "consumed", (json_int_t)hk_metric_get(consumed), "attempts",
           (json_int_t)hk_metric_get(attempts), "delivered", (json_int_t)hk_metric_get(delivered),
           "dead_lettered", (json_int_t)hk_metric_get(dead_lettered), "dead_lettered_by_class",
           by_class, "retries_inline", (json_int_t)hk_metric_get(retries_inline),
           "retried_via_topic", (json_int_t)hk_metric_get(retried_via_topic), "deferred_open",
           (json_int_t)hk_metric_get(deferred_open), "invalid", (json_int_t)hk_metric_get(invalid),
           "inflight", (json_int_t)hk_metric_get(inflight_jobs), "inflight_bytes",
           (json_int_t)hk_metric_get(inflight_bytes), "paused_partitions",
           (json_int_t)hk_metric_get(paused_partitions), "batches",
           (json_int_t)hk_metric_get(batches_active), "rate", rate);
    *last_ms = now;
    *last_done = done;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    malloc_setup(); // before any thread allocates
    const char *path = NULL;
    int check_only = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check_only = 1;
            break;
        case 'V':
            printf("hookd %s\n", HOOKD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }

    char err[512];
    hk_config_t *cfg = hk_config_load(path, environ, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "hookd: %s\n", err);
        return 2;
    }
    if (check_only) {
        hk_config_dump(cfg, stdout);
        hk_config_destroy(cfg);
        return 0;
    }
    hk_log_set_level_name(cfg->log_level);
    hk_log_set_full_urls(cfg->log_full_urls);

    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sigaction hup = {0};
    hup.sa_handler = on_hup_signal;
    sigemptyset(&hup.sa_mask);
    sigaction(SIGHUP, &hup, NULL);
    signal(SIGPIPE, SIG_IGN);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    hk_metrics_set_lane_series(cfg->admin_metrics_lanes);
    int rc = 1;
    hk_mockkafka_t *mock = NULL;
    hk_netguard_t *guard = NULL;
    hk_dispatch_t *dispatch = NULL;
    hk_deliver_t *deliver = NULL;
    hk_admin_t *admin = NULL;
    app_t app = {.cfg = cfg};
    pthread_mutex_init(&app.admin_pg_lock, NULL);
    pthread_mutex_init(&app.reclaim_lock, NULL);
    policy_t *first_policy = policy_new(cfg);
    atomic_store(&app.policy, first_policy);
    kept_t *kept = NULL;
    const hk_config_t *cur = cfg;

    const char *brokers = cfg->kafka_brokers;
    if (strcmp(brokers, "mock") == 0) {
        const char *topics[] = {cfg->kafka_topic, cfg->kafka_dlq_topic, cfg->kafka_retry_topic};
        int parts[] = {cfg->kafka_mock_partitions, cfg->kafka_mock_partitions,
                       cfg->kafka_mock_partitions};
        mock = hk_mockkafka_new(1, topics, parts, 3, err, sizeof(err));
        if (!mock)
            goto out;
        brokers = hk_mockkafka_bootstraps(mock);
        hk_log(HK_LOG_INFO, "mock_cluster", "{s:s,s:i}", "bootstraps", brokers, "partitions",
               cfg->kafka_mock_partitions);
    }
    // The cluster answers and the topics exist (or are created) before anything
    // joins the group: a wrong password, CA or topic name stops start-up with a
    // reason instead of a consumer that waits forever.
    if (!mock && hk_topics_check(cfg, brokers, err, sizeof(err)) != 0)
        goto out;
    if (!(guard = hk_netguard_new(cfg->delivery_allow_cidrs, err, sizeof(err))))
        goto out;
    if (cfg->postgres_url[0] && migrate_at_start(cfg, err, sizeof(err)) != 0)
        goto out;
    hk_dispatch_opts_t dispatch_opts = dispatch_opts_of(cfg, &app);
    if (cfg->redis_url[0]) {
        hk_redis_opts_t ro = {.url = cfg->redis_url,
                              .timeout_ms = cfg->redis_timeout_ms,
                              .dedupe_ttl_s = cfg->redis_dedupe_ttl_s,
                              .lease_ms = cfg->redis_lease_ms,
                              .sync_ms = cfg->redis_sync_ms,
                              .watch_chunk = cfg->redis_watch_chunk,
                              .on_breaker = on_remote_breaker,
                              .arg = &app};
        if (!(app.redis = hk_redis_start(&ro, err, sizeof(err))))
            goto out;
        hk_log(HK_LOG_INFO, "redis_configured", "{s:s,s:b}", "instance",
               hk_redis_instance(app.redis), "up", hk_redis_up(app.redis));
    }
    dispatch = app.dispatch = hk_dispatch_new(&dispatch_opts);
    apply_endpoints(dispatch, cfg, NULL);
    // The admin server first: a listen address it cannot use stops startup before
    // hookd joins the consumer group (a member that joins and dies holds up the
    // group's next join).
    if (cfg->admin_listen[0] &&
        !(admin = hk_admin_start(cfg->admin_listen, cfg->admin_token, dispatch, err, sizeof(err))))
        goto out;
    if (!(app.intake = hk_intake_new(cfg, brokers, dispatch, err, sizeof(err))))
        goto out;
    hk_intake_set_cancel(app.intake, cancel_partition, &app);
    hk_intake_set_submit(app.intake, on_intake_submit, &app);
    if (!(app.producer = hk_producer_new(cfg, brokers, on_produced, &app, err, sizeof(err))))
        goto out;
    if (cfg->postgres_url[0]) {
        hk_batch_opts_t bopts = {.cfg = cfg,
                                 .dispatch = dispatch,
                                 .done = on_batch_done,
                                 .dead_letter = on_batch_dead_letter,
                                 .cancel = on_batch_cancel,
                                 .arg = &app};
        if (!(app.batch = hk_batch_start(&bopts, err, sizeof(err))))
            goto out;
        hk_intake_set_batch(app.intake, on_batch_intake, &app);
        hk_intake_set_revoking(app.intake, on_revoking, &app);
        app.admin_pg = hk_pg_new_config(cfg, NULL);
    }
    hk_deliver_opts_t dopts = {.cfg = cfg,
                               .dispatch = dispatch,
                               .guard = guard,
                               .on_done = on_delivery_done,
                               .on_cancel = on_delivery_cancel,
                               .arg = &app};
    if (!(deliver = app.deliver = hk_deliver_start(&dopts, err, sizeof(err))))
        goto out;
    if (admin && app.admin_pg)
        hk_admin_set_batch_fn(admin, admin_batch, &app);

    hk_log(HK_LOG_INFO, "started", "{s:s,s:s,s:s,s:i,s:i}", "version", HOOKD_VERSION, "topic",
           cfg->kafka_topic, "group", cfg->kafka_group, "threads", cfg->delivery_threads,
           "transfers_per_thread", cfg->delivery_max_transfers_per_thread);

    pthread_t intake_tid;
    pthread_create(&intake_tid, NULL, intake_main, &app);

    int64_t last_ms = hk_clock_mono_ms(), next_summary = last_ms + cfg->log_summary_ms;
    uint64_t last_done = 0;
    trim_state_t trim = {0};
    while (!stop_signals) {
        hk_clock_sleep_ms(50);
        trim_after_evictions(&trim, hk_clock_mono_ms());
        // Ready while the group gave us partitions to work on.
        if (admin)
            hk_admin_set_ready(admin, hk_intake_assigned(app.intake) > 0);
        if (app.redis)
            reclaim_due(&app, NULL, 0);
        if (reload_requested) {
            reload_requested = 0;
            cur = reload(&app, path, cur, &kept);
        }
        if (cur->log_summary_ms > 0 && hk_clock_mono_ms() >= next_summary) {
            summary(&last_ms, &last_done);
            next_summary = hk_clock_mono_ms() + cur->log_summary_ms;
        }
    }
    if (admin) // admin.listen = "" turns it off
        hk_admin_set_ready(admin, 0);
    hk_log(HK_LOG_INFO, "shutdown", "{s:i}", "grace_ms", cur->shutdown_grace_ms);
    int64_t t0 = hk_clock_mono_ms();
    // Batches checkpoint and hand their tasks back uncommitted: they resume from
    // their checkpoints wherever their partitions go next.
    if (app.batch)
        hk_batch_suspend_all(app.batch, batch_revoke_wait_ms(cur));
    hk_intake_stop(app.intake);
    // Retries waiting in memory would hold their offsets for the whole grace
    // period: hand them to the retry topic (attempts and due time kept), so their
    // offsets can be committed as soon as the broker has the records.
    atomic_store(&app.draining, 1);
    int handed_off = 0;
    for (hk_task_t *task = hk_dispatch_remove_delayed(dispatch), *next; task; task = next) {
        next = task->next;
        int64_t wait = task->due_ms - hk_clock_mono_ms();
        hk_producer_retry(app.producer, task, hk_clock_wall_ms() + (wait > 0 ? wait : 0));
        handed_off++;
    }
    if (handed_off)
        hk_log(HK_LOG_INFO, "retries_handed_off", "{s:i}", "count", handed_off);
    pthread_join(intake_tid, NULL);
    size_t aborted = hk_deliver_stop(deliver);
    deliver = app.deliver = NULL;
    size_t abandoned = hk_producer_destroy(app.producer, 1000);
    app.producer = NULL;
    hk_batch_stop(app.batch);
    app.batch = NULL;
    summary(&last_ms, &last_done);
    hk_log(HK_LOG_INFO, "stopped", "{s:i,s:i,s:i}", "aborted_transfers", (int)aborted,
           "unacked_dead_letters", (int)abandoned, "shutdown_ms", (int)(hk_clock_mono_ms() - t0));
    rc = 0;

out:
    if (rc != 0)
        hk_log(HK_LOG_ERROR, "startup_failed", "{s:s}", "error", err);
    hk_deliver_stop(deliver);
    hk_producer_destroy(app.producer, 0);
    hk_batch_stop(app.batch);
    hk_redis_stop(app.redis); // pending claims complete now (their tasks go to the dispatcher)
    while (app.reclaim) {
        hk_task_t *t = app.reclaim;
        app.reclaim = t->next;
        hk_task_destroy(t);
    }
    hk_intake_destroy(app.intake);
    hk_admin_stop(admin);
    pthread_mutex_destroy(&app.reclaim_lock);
    hk_pg_destroy(app.admin_pg);
    pthread_mutex_destroy(&app.admin_pg_lock);
    hk_dispatch_destroy(dispatch);
    hk_netguard_destroy(guard);
    hk_mockkafka_destroy(mock);
    while (kept) {
        kept_t *k = kept;
        kept = k->next;
        hk_config_destroy(k->cfg);
        free(k->pol);
        free(k);
    }
    free(first_policy);
    hk_config_destroy(cfg);
    curl_global_cleanup();
    return rc;
}
