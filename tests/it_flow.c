// Flow control and operation end to end (DESIGN §8, §11): a backlog far larger
// than the in-flight limits is worked off with intake paused and resumed, memory
// bounded and every job delivered once; an idle hookd, and one whose every
// breaker is open, burns next to no CPU; SIGHUP reloads a valid config and keeps
// the running one when the new file is invalid or changes a non-reloadable key.
// Each test runs its own out-of-process Kafka mock cluster, its own sinks and its
// own hookd; their logs are it_flow_*.log in the working dir.
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

#define MIB (1024LL * 1024LL)

static hk_th_scene_t sc;
static hk_th_proc_t *const hookd = &sc.hookd[0]; // the one replica of each test
static hk_sink_t *sink_a, *sink_b;

static void setup(void)
{
    sink_a = sink_b = NULL;
    const char *topics[] = {"jobs:8", "jobs.dlq:2", "jobs.retry:8", NULL};
    ck_assert_int_eq(hk_th_scene_start(&sc, topics), 0);
}

// Runs after a failed assertion too: no child outlives its test.
static void teardown(void)
{
    hk_th_scene_stop(&sc, 15000);
    sink_a = sink_b = NULL;
}

static hk_sink_t *start_sink(int threads)
{
    char err[256];
    hk_sink_t *s = hk_th_scene_sink(&sc, (hk_sink_opts_t){.threads = threads}, err, sizeof(err));
    ck_assert_msg(s != NULL, "sink: %s", err);
    return s;
}

static void start_hookd(char *const env[], const char *conf, const char *log)
{
    ck_assert_int_eq(hk_th_scene_hookd(&sc, 0, env, conf, log), 0);
}

static void stop_hookd_expect_exit_0(void)
{
    int status = hk_th_stop(hookd, 20000);
    ck_assert_msg(hk_th_exited_ok(status), "hookd did not exit 0 after SIGTERM (status %d)",
                  status);
}

// 1 while hookd has not exited (reaps it when it has).
static int hookd_running(void)
{
    return hookd->pid > 0 && hk_th_wait(hookd, 0) == -1;
}

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

// --- /proc ----------------------------------------------------------------------

// CPU hookd uses over `ms` of wall time, in percent of one core.
static double cpu_percent_over(int ms)
{
    long long t0 = hk_th_proc_cpu_ticks(hookd->pid);
    int64_t w0 = hk_th_now_ms();
    hk_th_sleep_ms(ms);
    long long t1 = hk_th_proc_cpu_ticks(hookd->pid);
    int64_t w1 = hk_th_now_ms();
    ck_assert_msg(t0 >= 0 && t1 >= t0, "cannot read /proc/%d/stat", (int)hookd->pid);
    double cpu_s = (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK);
    return cpu_s * 100.0 / ((double)(w1 - w0) / 1000.0);
}

// --- hookd's log ------------------------------------------------------------------

// Lines of `log` containing both `a` and `b` (b may be NULL).
static int log_count2(const char *log, const char *a, const char *b)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, a) && (!b || strstr(line, b)))
            n++;
    free(line);
    fclose(f);
    return n;
}

// The `nth` (0-based) line of `log` containing `needle`, as JSON; NULL if none.
static json_t *log_nth(const char *log, const char *needle, int nth)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return NULL;
    char *line = NULL;
    size_t cap = 0;
    json_t *j = NULL;
    while (!j && getline(&line, &cap, f) >= 0)
        if (strstr(line, needle) && nth-- == 0)
            j = json_loads(line, 0, NULL);
    free(line);
    fclose(f);
    return j;
}

// Largest value of `field` over every summary line; -1 when there is none.
static int64_t summary_max(const char *log, const char *field, int *lines)
{
    FILE *f = fopen(log, "r");
    *lines = 0;
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    int64_t max = -1;
    while (getline(&line, &cap, f) >= 0) {
        if (!strstr(line, "\"event\":\"summary\""))
            continue;
        json_t *j = json_loads(line, 0, NULL);
        json_t *v = j ? json_object_get(j, field) : NULL;
        if (json_is_integer(v)) {
            (*lines)++;
            if (json_integer_value(v) > max)
                max = (int64_t)json_integer_value(v);
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return max;
}

// A field of the last summary line; -1 when there is none.
static int64_t summary_last(const char *log, const char *field)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return -1;
    char *line = NULL, *last = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        if (strstr(line, "\"event\":\"summary\"")) {
            free(last);
            last = strdup(line);
        }
    }
    free(line);
    fclose(f);
    json_t *j = last ? json_loads(last, 0, NULL) : NULL;
    free(last);
    json_t *v = j ? json_object_get(j, field) : NULL;
    int64_t r = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    json_decref(j);
    return r;
}

// --- 1. a backlog far beyond the limits ---------------------------------------------

// The 100,000; under ASan (whose pass checks memory errors, not the RSS
// bound) a quarter of that, which keeps pausing and resuming intake just as well
// and keeps scripts/test under 10 minutes on 2 cores.
#define BL_JOBS         (HK_TH_ASAN ? 25000 : 100000)
#define BL_PARTS        8 // partitions of the jobs topic
#define BL_MAX_INFLIGHT 2000
#define BL_MAX_BYTES    (8 * MIB)

typedef struct backlog_progress {
    uint64_t want;
    long long max_rss; // largest VmRSS seen while it ran
    long long hwm;     // latest VmHWM
    int admin_port;
    long long max_inflight; // largest hookd_inflight_jobs seen
    long long max_lag;      // largest hookd_consumer_lag seen
    int metric_samples;
} backlog_progress_t;

static void sample_rss(backlog_progress_t *pr)
{
    long long rss = hk_th_proc_status_bytes(hookd->pid, "VmRSS");
    long long hwm = hk_th_proc_status_bytes(hookd->pid, "VmHWM");
    if (rss > pr->max_rss)
        pr->max_rss = rss;
    if (hwm > pr->hwm)
        pr->hwm = hwm;
}

static int backlog_delivered(void *arg)
{
    backlog_progress_t *pr = arg;
    sample_rss(pr);
    if (!pr->admin_port)
        pr->admin_port = hk_th_admin_port("it_flow_backlog.log");
    long long inflight = pr->admin_port ? hk_th_metric(pr->admin_port, "hookd_inflight_jobs") : -1;
    if (inflight >= 0) {
        pr->metric_samples++;
        if (inflight > pr->max_inflight)
            pr->max_inflight = inflight;
        long long lag = hk_th_metric(pr->admin_port, "hookd_consumer_lag");
        if (lag > pr->max_lag)
            pr->max_lag = lag;
    }
    hk_sink_stats_t st;
    hk_sink_stats(sink_a, &st);
    return st.unique_ok >= pr->want;
}

// 100,000 jobs are waiting before hookd starts; the receiver takes 50 ms per
// request, so hookd cannot keep up with its intake and must pause it at 2,000
// jobs in flight, resume below 80%, and so on until the backlog is gone. Memory
// stays bounded by the limits (not by the backlog), every job is delivered once,
// and the committed offsets reach the end.
START_TEST(test_backlog_stays_under_memory_bound_and_everything_is_delivered)
{
    sink_a = start_sink(8);
    int port = hk_sink_port(sink_a);
    // The sink answers after 50 ms; the lane starts at the full 128 transfers so the
    // run is bound by the sink's latency, not by the adaptive limit's ramp-up.
    char *env[] = {"HOOKD_LIMITS_MAX_INFLIGHT_JOBS=2000",
                   "HOOKD_LIMITS_MAX_INFLIGHT_BYTES=8M",
                   "HOOKD_DELIVERY_THREADS=2",
                   "HOOKD_DELIVERY_MAX_TRANSFERS_PER_THREAD=64",
                   "HOOKD_LANES_INITIAL_LIMIT=128",
                   NULL};

    // Baseline: an idle hookd with the same settings, in a group of its own so it
    // never owns a partition of the real run.
    char *idle_env[] = {"HOOKD_LIMITS_MAX_INFLIGHT_JOBS=2000",
                        "HOOKD_LIMITS_MAX_INFLIGHT_BYTES=8M",
                        "HOOKD_DELIVERY_THREADS=2",
                        "HOOKD_DELIVERY_MAX_TRANSFERS_PER_THREAD=64",
                        "HOOKD_LANES_INITIAL_LIMIT=128",
                        "HOOKD_KAFKA_GROUP=hookd-idle-baseline",
                        NULL};
    const char *idle_log = "it_flow_baseline.log";
    start_hookd(idle_env, NULL, idle_log);
    ck_assert_msg(hk_th_wait_for_log(idle_log, "\"event\":\"partitions_assigned\"", 1, 30000),
                  "idle hookd never joined the group");
    hk_th_sleep_ms(1000);
    long long base_rss = hk_th_proc_status_bytes(hookd->pid, "VmRSS");
    long long base_hwm = hk_th_proc_status_bytes(hookd->pid, "VmHWM");
    ck_assert_int_gt(base_rss, 0);
    stop_hookd_expect_exit_0();

    char **values = calloc(BL_JOBS, sizeof(char *));
    char **keys = calloc(BL_JOBS, sizeof(char *));
    for (int i = 0; i < BL_JOBS; i++) {
        ck_assert(asprintf(&values[i],
                           "{\"id\":\"bl-%d\",\"url\":\"http://127.0.0.1:%d/slow/50\","
                           "\"body\":{\"n\":%d}}",
                           i, port, i) > 0);
        ck_assert(asprintf(&keys[i], "key-%d", i % 1009) > 0);
    }
    int64_t p0 = hk_th_now_ms();
    ck_assert_uint_eq(hk_th_produce(sc.brokers, "jobs", values, keys, BL_JOBS), BL_JOBS);
    int64_t produce_ms = hk_th_now_ms() - p0;
    free_strs(values, BL_JOBS);
    free_strs(keys, BL_JOBS);

    const char *log = "it_flow_backlog.log";
    int64_t t0 = hk_th_now_ms();
    start_hookd(env, NULL, log);
    backlog_progress_t pr = {.want = BL_JOBS};
    int done = hk_th_wait_for(backlog_delivered, &pr, 180000);
    double secs = (double)(hk_th_now_ms() - t0) / 1000.0;
    hk_sink_stats_t st;
    hk_sink_stats(sink_a, &st);
    ck_assert_msg(done, "%llu of %d jobs delivered after %.0f s", (unsigned long long)st.unique_ok,
                  BL_JOBS, secs);
    ck_assert_msg(hk_th_wait_lag_zero(sc.brokers, "hookd", "jobs", 30000),
                  "committed offsets did not reach the end (lag %lld)",
                  (long long)hk_th_group_lag(sc.brokers, "hookd", "jobs"));

    // hookd's own view of the lag: the backlog while it ran, nothing once done
    // (it is refreshed every second).
    long long lag_end = -1;
    for (int i = 0; i < 40 && lag_end != 0; i++) {
        hk_th_sleep_ms(100);
        lag_end = hk_th_metric(pr.admin_port, "hookd_consumer_lag");
    }

    // The peak, just before SIGTERM.
    sample_rss(&pr);
    long long peak = pr.hwm;
    stop_hookd_expect_exit_0();

    hk_sink_stats(sink_a, &st);
    int summaries;
    int64_t max_inflight = summary_max(log, "inflight", &summaries);
    int64_t max_inflight_bytes = summary_max(log, "inflight_bytes", &summaries);
    int paused = hk_th_log_count(log, "\"event\":\"intake_paused\"");
    int resumed = hk_th_log_count(log, "\"event\":\"intake_resumed\"");
    long long bound = base_rss + BL_MAX_BYTES + 64 * MIB;
    printf("it_flow backlog: %d jobs produced in %.1f s; delivered %llu (duplicates %llu) in "
           "%.1f s incl. group join (%.0f jobs/s); intake paused %d times, resumed %d; summaries "
           "%d, max inflight %lld jobs / %lld bytes (limit %d jobs / %lld bytes); /metrics "
           "samples %d, max hookd_inflight_jobs %lld, hookd_consumer_lag max %lld, at the end "
           "%lld\n",
           BL_JOBS, (double)produce_ms / 1000.0, (unsigned long long)st.unique_ok,
           (unsigned long long)st.duplicate_ok, secs, (double)st.unique_ok / secs, paused, resumed,
           summaries, (long long)max_inflight, (long long)max_inflight_bytes, BL_MAX_INFLIGHT,
           (long long)BL_MAX_BYTES, pr.metric_samples, pr.max_inflight, pr.max_lag, lag_end);
    ck_assert_msg(pr.max_lag > BL_JOBS / 2, "hookd_consumer_lag peaked at %lld with %d waiting",
                  pr.max_lag, BL_JOBS);
    ck_assert_msg(pr.max_lag <= BL_JOBS, "hookd_consumer_lag %lld exceeds the %d jobs", pr.max_lag,
                  BL_JOBS);
    ck_assert_int_eq(lag_end, 0);
    printf("it_flow backlog: RSS baseline (idle) %.1f MiB (its VmHWM %.1f MiB), peak VmHWM %.1f "
           "MiB, largest VmRSS seen %.1f MiB, bound %.1f MiB (baseline + 8 MiB in flight + 64 MiB "
           "fetch queue, curl and slack)%s\n",
           (double)base_rss / MIB, (double)base_hwm / MIB, (double)peak / MIB,
           (double)pr.max_rss / MIB, (double)bound / MIB,
           HK_TH_ASAN ? " [ASan build: not asserted]" : "");

    ck_assert_uint_eq(st.unique_ok, BL_JOBS);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_msg(paused >= 1, "intake never paused with %d jobs waiting", BL_JOBS);
    ck_assert_msg(resumed >= 1, "intake never resumed after pausing");
    ck_assert_int_gt(summaries, 0);
    // The limit is checked after each consumed message; the records already
    // fetched for each assigned partition (jobs and jobs.retry: 2 x 8) may add one
    // each before the pause takes hold.
    ck_assert_msg(max_inflight <= BL_MAX_INFLIGHT + 2 * BL_PARTS, "%lld jobs in flight, limit %d",
                  (long long)max_inflight, BL_MAX_INFLIGHT);
    ck_assert_msg(max_inflight > 0, "no summary showed a job in flight");
    // The same, sampled far more often (every 50 ms) through the admin API.
    ck_assert_int_gt(pr.metric_samples, 0);
    ck_assert_msg(pr.max_inflight <= BL_MAX_INFLIGHT + 2 * BL_PARTS,
                  "/metrics showed %lld jobs in flight, limit %d", pr.max_inflight,
                  BL_MAX_INFLIGHT);
    if (!HK_TH_ASAN)
        ck_assert_msg(peak > 0 && peak <= bound,
                      "peak RSS %.1f MiB over the bound %.1f MiB (idle baseline %.1f MiB)",
                      (double)peak / MIB, (double)bound / MIB, (double)base_rss / MIB);
}
END_TEST

// --- 2. idle CPU ------------------------------------------------------------------

#define IDLE_PER_ENDPOINT 50
#define IDLE_CPU_MAX      2.0 // percent of one core

typedef struct open_wait {
    const char *log;
    char needle[2][128];
} open_wait_t;

static int both_open(void *arg)
{
    open_wait_t *w = arg;
    for (int i = 0; i < 2; i++)
        if (log_count2(w->log, w->needle[i], "\"to\":\"open\"") == 0)
            return 0;
    return 1;
}

// No traffic: hookd waits on its sockets and timers, it does not spin. The same
// with jobs waiting in memory behind two open breakers: nothing is due for a
// minute, so nothing should run.
START_TEST(test_idle_cpu_is_near_zero)
{
    sink_a = start_sink(4);
    sink_b = start_sink(4);
    char *env[] = {"HOOKD_BREAKER_CONSECUTIVE_FAILURES=3", "HOOKD_BREAKER_OPEN_MS=60000",
                   "HOOKD_RETRY_INLINE_MAX_MS=120000", NULL};
    const char *log = "it_flow_idle.log";
    start_hookd(env, NULL, log);
    ck_assert_msg(hk_th_wait_for_log(log, "\"event\":\"partitions_assigned\"", 1, 30000),
                  "hookd never joined the group");
    hk_th_sleep_ms(1000);
    double idle = cpu_percent_over(5000);
    printf("it_flow idle: no traffic, %.2f%% of one core over 5 s\n", idle);
    ck_assert_msg(idle < IDLE_CPU_MAX, "idle hookd uses %.2f%% of a core (limit %.1f%%)", idle,
                  IDLE_CPU_MAX);

    // Every endpoint failing: both breakers open, the jobs wait in memory.
    hk_sink_t *sinks[2] = {sink_a, sink_b};
    size_t n = 2 * IDLE_PER_ENDPOINT;
    char **values = calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        ck_assert(asprintf(&values[i],
                           "{\"id\":\"open-%zu\",\"url\":\"http://127.0.0.1:%d/status/503\","
                           "\"max_attempts\":100}",
                           i, hk_sink_port(sinks[i % 2])) > 0);
    ck_assert_uint_eq(hk_th_produce(sc.brokers, "jobs", values, NULL, n), n);
    free_strs(values, n);
    open_wait_t ow = {.log = log};
    for (int i = 0; i < 2; i++)
        snprintf(ow.needle[i], sizeof(ow.needle[i]),
                 "\"event\":\"breaker\",\"endpoint\":\"http://127.0.0.1:%d\"",
                 hk_sink_port(sinks[i]));
    ck_assert_msg(hk_th_wait_for(both_open, &ow, 30000), "the breakers did not both open");
    hk_th_sleep_ms(1000); // the last failed attempts' retries come due and are deferred

    hk_sink_stats_t a0, b0, a1, b1;
    hk_sink_stats(sink_a, &a0);
    hk_sink_stats(sink_b, &b0);
    double open = cpu_percent_over(5000);
    hk_sink_stats(sink_a, &a1);
    hk_sink_stats(sink_b, &b1);
    int64_t inflight = summary_last(log, "inflight");
    int64_t via_topic = summary_last(log, "retried_via_topic");
    printf("it_flow idle: both breakers open, %zu jobs deferred (summary: inflight %lld, retried "
           "via topic %lld), %.2f%% of one core over 5 s; requests before the window %llu + %llu, "
           "during it %llu + %llu\n",
           n, (long long)inflight, (long long)via_topic, open, (unsigned long long)a0.requests,
           (unsigned long long)b0.requests, (unsigned long long)(a1.requests - a0.requests),
           (unsigned long long)(b1.requests - b0.requests));
    // The scenario is what it should be: every job waits in memory, none went to
    // the retry topic, and no request reached the open endpoints.
    ck_assert_int_eq(inflight, (int64_t)n);
    ck_assert_int_eq(via_topic, 0);
    ck_assert_uint_eq(a1.requests, a0.requests);
    ck_assert_uint_eq(b1.requests, b0.requests);
    ck_assert_msg(open < IDLE_CPU_MAX,
                  "hookd uses %.2f%% of a core with every breaker open (limit %.1f%%)", open,
                  IDLE_CPU_MAX);

    stop_hookd_expect_exit_0();
}
END_TEST

// --- 3. SIGHUP --------------------------------------------------------------------

#define HUP_CONF "it_flow_hup.conf"
#define HUP_LOG  "it_flow_hup.log"

// Replaces the config file in one step (write a copy, rename), so hookd never
// reads half of it.
static void write_conf(const char *text)
{
    FILE *f = fopen(HUP_CONF ".tmp", "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(HUP_CONF ".tmp", HUP_CONF), 0);
}

typedef struct delivered {
    hk_sink_t *sink;
    const char *id;
} delivered_t;

static int id_delivered(void *arg)
{
    delivered_t *d = arg;
    return hk_sink_ok_count(d->sink, d->id) > 0;
}

// Produces one job `id` to `path` of sink_a and waits until it is delivered.
static void deliver_one(const char *id, const char *path)
{
    char *value;
    ck_assert(asprintf(&value, "{\"id\":\"%s\",\"url\":\"http://127.0.0.1:%d%s\"}", id,
                       hk_sink_port(sink_a), path) > 0);
    ck_assert_uint_eq(hk_th_produce(sc.brokers, "jobs", &value, NULL, 1), 1);
    free(value);
    delivered_t d = {sink_a, id};
    ck_assert_msg(hk_th_wait_for(id_delivered, &d, 20000), "job %s not delivered", id);
    ck_assert_uint_eq(hk_sink_ok_count(sink_a, id), 1);
}

// Number of debug-level retry_scheduled lines for job `id`.
static int debug_retries_of(const char *id)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"id\":\"%s\"", id);
    int n = 0;
    for (int i = 0;; i++) {
        json_t *j = log_nth(HUP_LOG, "\"event\":\"retry_scheduled\"", i);
        if (!j)
            break;
        const char *jid = json_string_value(json_object_get(j, "id"));
        const char *level = json_string_value(json_object_get(j, "level"));
        if (jid && strcmp(jid, id) == 0 && level && strcmp(level, "debug") == 0)
            n++;
        json_decref(j);
    }
    return n;
}

// Sends SIGHUP and waits up to 2 s for the `nth` (0-based) line with `event`;
// returns it as JSON. Fails the test when hookd exits or never answers.
static json_t *hup_and_wait(const char *event, int nth)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event);
    hk_th_kill(hookd, SIGHUP);
    int got = hk_th_wait_for_log(HUP_LOG, needle, nth + 1, 2000);
    ck_assert_msg(hookd_running(), "hookd exited on SIGHUP");
    ck_assert_msg(got, "no %s line within 2 s of SIGHUP", event);
    json_t *j = log_nth(HUP_LOG, needle, nth);
    ck_assert_ptr_nonnull(j);
    return j;
}

// A valid file with a new log level is applied at once; a file with an invalid
// value, or with a change to a key that needs a restart, is refused as a whole
// (the log level in the same file included) and hookd carries on with the config
// it had, delivering as before.
START_TEST(test_sighup_reloads_valid_config_and_keeps_old_on_invalid)
{
    sink_a = start_sink(4);
    // /flap answers 500 then 200, alternately: a job sent there fails once and is
    // retried (a debug-level retry_scheduled line), then delivered.
    write_conf("[log]\nlevel = info\n[retry]\nschedule = 100ms\n");
    start_hookd(NULL, HUP_CONF, HUP_LOG);
    ck_assert_msg(hk_th_wait_for_log(HUP_LOG, "\"event\":\"partitions_assigned\"", 1, 30000),
                  "hookd never joined the group");
    deliver_one("hup-pre", "/flap");
    ck_assert_int_eq(hk_th_log_count(HUP_LOG, "\"level\":\"debug\""), 0);

    // (a) valid: info -> debug.
    write_conf("[log]\nlevel = debug\n[retry]\nschedule = 100ms\n");
    json_t *ok = hup_and_wait("config_reloaded", 0);
    json_t *changed = json_object_get(ok, "changed");
    char *changed_s = json_dumps(changed, JSON_COMPACT);
    printf("it_flow hup: (a) config_reloaded, changed %s\n", changed_s ? changed_s : "(none)");
    ck_assert_msg(json_is_array(changed) && json_array_size(changed) == 1 &&
                      json_string_value(json_array_get(changed, 0)) &&
                      strcmp(json_string_value(json_array_get(changed, 0)), "log.level") == 0,
                  "changed is %s, want [\"log.level\"]", changed_s ? changed_s : "(none)");
    free(changed_s);
    json_decref(ok);
    deliver_one("hup-a", "/flap");
    ck_assert_msg(debug_retries_of("hup-a") >= 1, "no debug line after the reload to debug");
    ck_assert_int_eq(debug_retries_of("hup-pre"), 0);

    // (b) an invalid reloadable value; the same file sets the level back to info,
    // which must not be applied either.
    write_conf("[log]\nlevel = info\n[retry]\nschedule = 100ms\n[limits]\nmax_inflight_jobs = 0\n");
    json_t *bad = hup_and_wait("config_reload_failed", 0);
    const char *error = json_string_value(json_object_get(bad, "error"));
    printf("it_flow hup: (b) config_reload_failed, error \"%s\"\n", error ? error : "(none)");
    ck_assert_msg(error && strstr(error, "config line 6: limits.max_inflight_jobs must be between"),
                  "error \"%s\"", error ? error : "(none)");
    json_decref(bad);
    deliver_one("hup-b-ok", "/ok");
    deliver_one("hup-b", "/flap");
    ck_assert_msg(debug_retries_of("hup-b") >= 1,
                  "the refused file's log level was applied (no debug line any more)");

    // (c) a key that needs a restart; again with level = info beside it.
    write_conf("[log]\nlevel = info\n[retry]\nschedule = 100ms\n[kafka]\ntopic = other\n");
    json_t *nr = hup_and_wait("config_reload_failed", 1);
    error = json_string_value(json_object_get(nr, "error"));
    printf("it_flow hup: (c) config_reload_failed, error \"%s\"\n", error ? error : "(none)");
    ck_assert_msg(error && strstr(error, "kafka.topic"), "error \"%s\" does not name kafka.topic",
                  error ? error : "(none)");
    json_decref(nr);
    deliver_one("hup-c-ok", "/ok");
    deliver_one("hup-c", "/flap");
    ck_assert_msg(debug_retries_of("hup-c") >= 1,
                  "the refused file's log level was applied (no debug line any more)");
    ck_assert_int_eq(hk_th_log_count(HUP_LOG, "\"event\":\"config_reloaded\""), 1);

    hk_sink_stats_t st;
    hk_sink_stats(sink_a, &st);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    stop_hookd_expect_exit_0();
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_flow");
    // One case per scenario, so CK_RUN_CASE=backlog|idle|sighup runs one alone.
    hk_ck_case(s, "backlog", 400, setup, teardown,
               test_backlog_stays_under_memory_bound_and_everything_is_delivered);
    hk_ck_case(s, "idle", 400, setup, teardown, test_idle_cpu_is_near_zero);
    hk_ck_case(s, "sighup", 400, setup, teardown,
               test_sighup_reloads_valid_config_and_keeps_old_on_invalid);
    return s;
}
