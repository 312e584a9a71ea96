// hookd: consumes jobs from Kafka and delivers them as signed webhooks.
//
// main holds config, signals, the summary line and the order of start-up and
// shutdown: first SIGTERM/SIGINT drains, a second one exits at once. A job's path
// (intake, Redis claim, dispatch, delivery, outcome, producer, batches) and its
// threads live in worker/pipeline.c.
#include <curl/curl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "config/config.h"
#include "base/clock.h"
#include "queue/mockkafka.h"
#include "queue/topics.h"
#include "store/checkpoint.h"
#include "store/migrate.h"
#include "store/pg.h"
#include "worker/admin.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/netguard.h"
#include "worker/pipeline.h"
#include "worker/prom.h"

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

// The admin thread's own Postgres connection, for GET /v1/batches.
typedef struct admin_pg {
    pthread_mutex_t lock;
    hk_pg_t *pg;
} admin_pg_t;

// GET /v1/batches/<id>?tenant=, on the admin thread, with its own connection.
static json_t *admin_batch(const char *id, const char *tenant, int *http_status, void *arg)
{
    admin_pg_t *app = arg;
    char err[512];
    pthread_mutex_lock(&app->lock);
    json_t *out = NULL;
    if (hk_pg_ensure(app->pg, err, sizeof(err)) != 0) {
        *http_status = 503;
    } else if (!(out = hk_ckpt_show(app->pg, id, tenant, 100, err, sizeof(err)))) {
        *http_status = strstr(err, "not found") ? 404 : hk_pg_up(app->pg) ? 500 : 503;
    } else {
        *http_status = 200;
    }
    pthread_mutex_unlock(&app->lock);
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

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hookd [-c FILE] [--check-config] [--version]\n"
            "  -c, --config FILE   read FILE (INI); HOOKD_<SECTION>_<KEY> env vars override it\n"
            "      --check-config  validate, print the effective config (secrets redacted), exit\n"
            "  -V, --version       print the version and exit\n");
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
} kept_t;

// SIGHUP: load the file again; keep the running config unless the new one is
// valid and changes only reloadable keys.
static const hk_config_t *reload(hk_pipeline_t *pl, const char *path, const hk_config_t *cur,
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
    hk_log_set_level(next->log_level);
    hk_log_set_full_urls(next->log_full_urls);
    hk_pipeline_reload(pl, next, cur);
    hk_log(HK_LOG_INFO, "config_reloaded", "{s:o}", "changed", changed_keys(cur, next));
    kept_t *k = calloc(1, sizeof(*k));
    if (!k)
        abort();
    *k = (kept_t){.next = *kept, .cfg = next};
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
// What is freed late (curl's DNS entries go when a later transfer ends, Redis
// replies in flight) misses that trim: one more follows TRIM_AGAIN_MS after it.
#define TRIM_QUIET_MS 1000
#define TRIM_EVERY_MS 10000
#define TRIM_AGAIN_MS 4000

typedef struct trim_state {
    uint64_t seen;    // lanes_evicted at the last look
    int64_t first_ms; // first eviction not trimmed yet (0: none)
    int64_t last_ms;  // latest eviction seen
    int64_t again_ms; // the follow-up trim is due (0: none)
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
    int again = ts->again_ms && now_ms >= ts->again_ms;
    if (!again && (!ts->first_ms ||
                   (now_ms - ts->last_ms < TRIM_QUIET_MS && now_ms - ts->first_ms < TRIM_EVERY_MS)))
        return;
    // A trim for evictions schedules its follow-up; the follow-up schedules none.
    ts->again_ms = ts->first_ms ? now_ms + TRIM_AGAIN_MS : 0;
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
    hk_log_set_level(cfg->log_level);
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
    hk_prom_set_lane_series(cfg->admin_metrics_lanes);
    int rc = 1;
    hk_mockkafka_t *mock = NULL;
    hk_netguard_t *guard = NULL;
    hk_pipeline_t *pl = NULL;
    hk_admin_t *admin = NULL;
    admin_pg_t admin_pg = {.pg = NULL};
    pthread_mutex_init(&admin_pg.lock, NULL);
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
    // Redis and the dispatcher: nothing is consumed yet.
    pl = hk_pipeline_new(cfg, guard);
    if (hk_pipeline_prepare(pl, err, sizeof(err)) != 0)
        goto out;
    // The admin server first: a listen address it cannot use stops startup before
    // hookd joins the consumer group (a member that joins and dies holds up the
    // group's next join).
    if (cfg->admin_listen[0] &&
        !(admin = hk_admin_start(cfg->admin_listen, cfg->admin_token, hk_pipeline_dispatch(pl), err,
                                 sizeof(err))))
        goto out;
    // Intake, producer, batch runner, delivery threads.
    if (hk_pipeline_start(pl, brokers, err, sizeof(err)) != 0)
        goto out;
    if (cfg->postgres_url[0])
        admin_pg.pg = hk_pg_new_config(cfg, NULL);
    if (admin && admin_pg.pg)
        hk_admin_set_batch_fn(admin, admin_batch, &admin_pg);

    hk_log(HK_LOG_INFO, "started", "{s:s,s:s,s:s,s:i,s:i}", "version", HOOKD_VERSION, "topic",
           cfg->kafka_topic, "group", cfg->kafka_group, "threads", cfg->delivery_threads,
           "transfers_per_thread", cfg->delivery_max_transfers_per_thread);

    hk_pipeline_run(pl);

    int64_t last_ms = hk_clock_mono_ms(), next_summary = last_ms + cfg->log_summary_ms;
    uint64_t last_done = 0;
    trim_state_t trim = {0};
    while (!stop_signals) {
        hk_clock_sleep_ms(50);
        trim_after_evictions(&trim, hk_clock_mono_ms());
        // Ready while the group gave us partitions to work on.
        if (admin)
            hk_admin_set_ready(admin, hk_pipeline_ready(pl));
        hk_pipeline_tick(pl);
        if (reload_requested) {
            reload_requested = 0;
            cur = reload(pl, path, cur, &kept);
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
    size_t aborted = 0, abandoned = 0;
    hk_pipeline_drain(pl, cur, &aborted, &abandoned);
    summary(&last_ms, &last_done);
    hk_log(HK_LOG_INFO, "stopped", "{s:i,s:i,s:i}", "aborted_transfers", (int)aborted,
           "unacked_dead_letters", (int)abandoned, "shutdown_ms", (int)(hk_clock_mono_ms() - t0));
    rc = 0;

out:
    if (rc != 0)
        hk_log(HK_LOG_ERROR, "startup_failed", "{s:s}", "error", err);
    hk_pipeline_stop(pl);
    hk_admin_stop(admin);
    hk_pg_destroy(admin_pg.pg);
    pthread_mutex_destroy(&admin_pg.lock);
    hk_pipeline_destroy(pl); // the dispatcher, which the admin server read
    hk_netguard_destroy(guard);
    hk_mockkafka_destroy(mock);
    while (kept) {
        kept_t *k = kept;
        kept = k->next;
        hk_config_destroy(k->cfg);
        free(k);
    }
    hk_config_destroy(cfg);
    curl_global_cleanup();
    return rc;
}
