// A hostile producer naming hosts (DESIGN §7, issue 10 findings 1 and 5).
//  - 100,000 jobs to 100,000 distinct hosts (10.x.y.z: refused by the network
//    guard after dispatch, so a lane is made per host and nothing leaves the
//    machine): afterwards RSS is back near its baseline (see RSS_BOUND), /metrics stays
//    under 256 KB throughout, and each Redis sync reads a bounded number of keys.
//  - With [endpoint "http://127.0.0.1:P"] disabled, no spelling of that address
//    gets a job through, and a trailing dot shares the lane.
// Logs: it_hosts_*.log in the working dir.
#include <check.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/harness.h"
#include "tests/support/redissvc.h"
#include "tests/support/sink.h"
#include "tests/support/ck_main.h"

// hookd runs under ASan when this test does (the same compile options): RSS is
// then ASan's shadow and quarantine, printed but not asserted, and the burst is
// smaller (as in it_flow).
#if defined(__SANITIZE_ADDRESS__)
#define HK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HK_ASAN 1
#endif
#endif
#ifndef HK_ASAN
#define HK_ASAN 0
#endif

#define MIB (1024LL * 1024LL)
// What 100,000 hosts may leave behind in RSS: 10 MB (the bound). With one
// trim after the burst, +2.4 to +6 MB was usual with +9.4 and +15.4 MB once each
// in 13 runs; memory freed after that trim (curl's DNS entries go only when a
// later transfer ends) stayed. main's follow-up trim 4 s later returns it.
#define RSS_BOUND 10000000LL

static hk_th_proc_t kafka;
static char brokers[512];
static hk_th_proc_t hookd;
static hk_sink_t *sink;
static hk_redissvc_t *redis;

static void setup(void)
{
    hookd = (hk_th_proc_t){.pid = 0, .stdin_fd = -1};
    sink = NULL;
    redis = NULL;
    // 120,000 jobs, keyed (produce_all): 16 partitions keep each under ~8,000
    // records, well inside what librdkafka's mock cluster keeps per partition.
    const char *topics[] = {"jobs:16", "jobs.dlq:4", "jobs.retry:8", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
}

static void teardown(void)
{
    hk_th_stop(&hookd, 15000);
    hk_th_kafka_stop(&kafka);
    if (sink)
        hk_sink_stop(sink);
    if (redis)
        hk_redissvc_destroy(redis);
    sink = NULL;
    redis = NULL;
    hk_th_release_held();
}

// Live lanes: hookd_lanes, or (a build without it, for the before figures) the
// number of per-endpoint hookd_lane_limit series.
static double lanes_of(const char *body)
{
    double v = hk_th_metric_in(body, "hookd_lanes");
    if (v >= 0)
        return v;
    v = 0;
    for (const char *p = body; (p = strstr(p, "\nhookd_lane_limit{")); p++)
        v++;
    return v;
}

static char *scrape(int admin_port, size_t *len)
{
    char url[64], *body = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", admin_port);
    if (hk_th_http("GET", url, 5000, &body) != 200) {
        free(body);
        return NULL;
    }
    *len = strlen(body);
    return body;
}

// Keyed records: without keys librdkafka's sticky partitioner puts a burst on
// one partition, and the mock cluster drops the oldest records of a partition
// that large (it reset hookd to "BEGINNING offset 20003" with 20,000 jobs unread).
// Hashed keys spread them over the 16 partitions. Ordering is off here, so the
// keys change nothing else.
static void produce_all(char **values, size_t n)
{
    char **keys = calloc(n, sizeof(*keys));
    ck_assert_ptr_nonnull(keys);
    for (size_t i = 0; i < n; i++)
        ck_assert(asprintf(&keys[i], "k%zu", i) > 0);
    size_t acked = hk_th_produce(brokers, "jobs", values, keys, n);
    for (size_t i = 0; i < n; i++) {
        free(values[i]);
        free(keys[i]);
    }
    free(values);
    free(keys);
    ck_assert_uint_eq(acked, n);
}

// The most keys any MGET read since the last call, from Redis's slow log (every
// command is logged: slowlog-log-slower-than 0). An entry keeps 32 arguments; the
// last says "... (N more arguments)" when there were more.
static long max_mget_keys(void)
{
    redisReply *rep = hk_redissvc_command(redis, "SLOWLOG GET 100000");
    long max = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 4)
                continue;
            redisReply *args = e->element[3];
            if (args->type != REDIS_REPLY_ARRAY || args->elements < 1 ||
                strcasecmp(args->element[0]->str, "MGET") != 0)
                continue;
            long keys = (long)args->elements - 1;
            const char *last = args->element[args->elements - 1]->str;
            long more = 0;
            if (last && sscanf(last, "... (%ld more arguments)", &more) == 1)
                keys = (long)args->elements - 2 + more;
            if (keys > max)
                max = keys;
        }
    }
    if (rep)
        freeReplyObject(rep);
    void *r = hk_redissvc_command(redis, "SLOWLOG RESET");
    if (r)
        freeReplyObject(r);
    return max;
}

START_TEST(test_a_hundred_thousand_hosts_leave_no_trace)
{
    const int n = HK_ASAN ? 20000 : 100000;
    char err[256];
    redis = hk_redissvc_start(NULL, err, sizeof(err));
    ck_assert_msg(redis != NULL, "redis: %s", err);
    void *r = hk_redissvc_command(redis, "CONFIG SET slowlog-log-slower-than 0");
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    r = hk_redissvc_command(redis, "CONFIG SET slowlog-max-len 100000");
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);

    char redis_env[300];
    snprintf(redis_env, sizeof(redis_env), "HOOKD_REDIS_URL=%s", hk_redissvc_url(redis));
    char *env[] = {"HOOKD_DISPATCH_LANE_IDLE_MS=500", redis_env, NULL};
    const char *log = "it_hosts_burst.log";
    unlink(log);
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, log), 0);
    int admin = 0;
    for (int i = 0; i < 300 && !(admin = hk_th_admin_port(log)); i++)
        hk_th_sleep_ms(100);
    ck_assert_int_gt(admin, 0);

    // Warm-up on one blocked host, as many jobs as the in-flight limit holds
    // twice over: intake, librdkafka's and curl's buffers reach their working
    // size, so the baseline is hookd at full load on one endpoint and the
    // difference is what the hosts themselves left behind.
    const int warm = HK_ASAN ? 5000 : 20000;
    char **values = calloc((size_t)warm, sizeof(*values));
    for (int i = 0; i < warm; i++)
        ck_assert(asprintf(&values[i], "{\"id\":\"w%d\",\"url\":\"http://10.0.0.1/\",\"body\":{}}",
                           i) > 0);
    produce_all(values, (size_t)warm);
    size_t len = 0;
    char *body = NULL;
    double warm_inflight_max = 0;
    for (int i = 0; i < 1200; i++) {
        free(body);
        body = scrape(admin, &len);
        if (body && hk_th_metric_in(body, "hookd_inflight_jobs") > warm_inflight_max)
            warm_inflight_max = hk_th_metric_in(body, "hookd_inflight_jobs");
        if (body &&
            hk_th_metric_in(body, "hookd_jobs_dead_lettered_total{class=\"blocked\"}") >= warm &&
            lanes_of(body) <= 1 && (lanes_of(body) == 0 || i > 100))
            break;
        hk_th_sleep_ms(100);
    }
    ck_assert_msg(body && lanes_of(body) <= 1, "warm-up did not finish (see %s)", log);
    free(body);
    // As after the burst below: hookd trims its heap a second after the lane went.
    hk_th_sleep_ms(2500);
    long long base = hk_th_proc_status_bytes(hookd.pid, "VmRSS");
    max_mget_keys();

    values = calloc((size_t)n, sizeof(*values));
    for (int i = 0; i < n; i++) // 10.1.0.0 + i: one host each
        ck_assert(asprintf(&values[i],
                           "{\"id\":\"h%d\",\"url\":\"http://10.%d.%d.%d/x\",\"body\":{}}", i,
                           1 + i / 65536, (i / 256) % 256, i % 256) > 0);
    int64_t t0 = hk_th_now_ms();
    produce_all(values, (size_t)n);

    // While it works: the largest /metrics, the most lanes, the largest MGET.
    size_t metrics_max = 0;
    double lanes_max = 0, blocked = 0, inflight_max = 0;
    long mget_max = 0;
    long long rss_peak = base;
    int64_t deadline = hk_th_now_ms() + 480000, all_done_ms = 0;
    for (;;) {
        body = scrape(admin, &len);
        long keys = max_mget_keys();
        if (keys > mget_max)
            mget_max = keys;
        long long rss = hk_th_proc_status_bytes(hookd.pid, "VmRSS");
        if (rss > rss_peak)
            rss_peak = rss;
        if (body) {
            if (len > metrics_max)
                metrics_max = len;
            double lanes = lanes_of(body);
            if (lanes > lanes_max)
                lanes_max = lanes;
            if (hk_th_metric_in(body, "hookd_inflight_jobs") > inflight_max)
                inflight_max = hk_th_metric_in(body, "hookd_inflight_jobs");
            blocked =
                hk_th_metric_in(body, "hookd_jobs_dead_lettered_total{class=\"blocked\"}") - warm;
            if (blocked >= n && !all_done_ms)
                all_done_ms = hk_th_now_ms();
            // Done when the lanes are gone, or (if they never go) 10 s after the last job.
            int done = blocked >= n && (lanes == 0 || hk_th_now_ms() - all_done_ms > 10000);
            free(body);
            if (done)
                break;
        }
        if (hk_th_now_ms() > deadline)
            break;
        hk_th_sleep_ms(500);
    }
    int64_t t1 = hk_th_now_ms();
    // hookd hands freed memory back once evictions pause for a second (worker/
    // main.c, TRIM_QUIET_MS): RSS is sampled for 2 s, then until it is back
    // within the bound or 10 s have passed.
    long long after = 0;
    for (int i = 0; i < 20; i++) {
        hk_th_sleep_ms(500);
        after = hk_th_proc_status_bytes(hookd.pid, "VmRSS");
        if (i >= 3 && (HK_ASAN || after - base <= RSS_BOUND))
            break;
    }
    body = scrape(admin, &len);
    ck_assert_ptr_nonnull(body);
    size_t metrics_after = len;
    double lanes_after = lanes_of(body);
    free(body);

    printf("it_hosts: %d jobs to %d hosts dead-lettered as blocked in %.1f s; lanes peak %.0f, "
           "after %.0f\n",
           (int)blocked, n, (double)(t1 - t0) / 1000.0, lanes_max, lanes_after);
    printf("it_hosts: jobs in flight at most %.0f in the warm-up, %.0f in the burst\n",
           warm_inflight_max, inflight_max);
    printf("it_hosts: RSS baseline %.1f MiB, peak %.1f MiB, after %.1f MiB (%+.2f MB; %s)\n",
           (double)base / MIB, (double)rss_peak / MIB, (double)after / MIB,
           (double)(after - base) / 1e6, HK_ASAN ? "ASan: not asserted" : "bound 10 MB");
    printf("it_hosts: /metrics largest %zu bytes, after %zu bytes; largest Redis MGET %ld keys\n",
           metrics_max, metrics_after, mget_max);

    ck_assert_msg(blocked >= n, "only %.0f of %d jobs were dead-lettered (see %s)", blocked, n,
                  log);
    // The guard runs after dispatch: each host had its lane (the cap is 10,000).
    ck_assert_msg(lanes_max >= 100, "lanes peaked at %.0f: were lanes made per host?", lanes_max);
    ck_assert_msg(lanes_max <= 10000, "lanes peaked at %.0f, past dispatch.max_lanes", lanes_max);
    ck_assert_msg(lanes_after == 0, "%.0f lanes left after the idle time", lanes_after);
    ck_assert_msg(metrics_max < 256 * 1024, "/metrics reached %zu bytes", metrics_max);
    ck_assert_msg(mget_max <= 256, "one Redis sync read %ld keys (redis.watch_chunk is 256)",
                  mget_max);
    // The first code kept ~2.5 KB per host for good (250 MB here). Under ASan, RSS
    // is mostly shadow memory and the quarantine of freed blocks (ASan holds them
    // back on purpose), so it says nothing about what hookd keeps: not asserted.
    if (!HK_ASAN)
        ck_assert_msg(after - base <= RSS_BOUND,
                      "RSS %.1f MiB after, baseline %.1f MiB: more than 10 MB left",
                      (double)after / MIB, (double)base / MIB);
}
END_TEST

START_TEST(test_a_disabled_address_is_disabled_in_every_spelling)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 4};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    int p = hk_sink_port(sink);
    const char *conf = "it_hosts_disabled.conf";
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[endpoint \"http://127.0.0.1:%d\"]\ndisabled = true\n", p);
    fclose(f);
    const char *log = "it_hosts_disabled.log";
    unlink(log);
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, NULL, conf, log), 0);
    ck_assert_msg(hk_th_wait_for_log(log, "\"partitions_assigned\"", 1, 30000),
                  "hookd never got partitions (see %s)", log);

    // Host spellings of 127.0.0.1 (the port follows).
    const char *spellings[] = {"http://localhost", "http://[::ffff:127.0.0.1]", "http://127.0.0.1.",
                               "HTTP://127.0.0.1", "http://2130706433",         "http://0x7f.0.0.1",
                               "http://127.0.0.1"};
    const size_t cnt = sizeof(spellings) / sizeof(spellings[0]);
    char **values = calloc(cnt, sizeof(*values));
    for (size_t i = 0; i < cnt; i++) {
        char url[128];
        snprintf(url, sizeof(url), "%s:%d/s%zu", spellings[i], p, i);
        ck_assert(asprintf(&values[i], "{\"id\":\"s%zu\",\"url\":\"%s\",\"body\":{}}", i, url) > 0);
    }
    produce_all(values, cnt);

    // Each is dead-lettered as gone ("endpoint disabled ..."), none delivered.
    hk_th_record_t *recs = NULL;
    size_t got = 0;
    for (int i = 0; i < 300 && got < cnt; i++) {
        if (recs)
            hk_th_records_free(recs, got);
        recs = NULL;
        got = hk_th_read_topic(brokers, "jobs.dlq", &recs);
        if (got < cnt)
            hk_th_sleep_ms(100);
    }
    hk_th_hold(HK_TH_HELD_RECS, recs, got);
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    printf("it_hosts: %zu spellings of a disabled address: %zu dead-lettered, %llu requests "
           "reached it\n",
           cnt, got, (unsigned long long)st.requests);
    ck_assert_uint_eq(st.requests, 0);
    ck_assert_uint_eq(got, cnt);
    for (size_t i = 0; i < got; i++) {
        const char *cls = hk_th_header(&recs[i], "hookd-error-class");
        ck_assert_msg(cls && strcmp(cls, "gone") == 0, "record %zu: class %s", i,
                      cls ? cls : "(none)");
    }
    // Every spelling went to the one disabled lane: there is no other.
    int admin = hk_th_admin_port(log);
    char url[64], *body = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/lanes", admin);
    ck_assert_int_eq(hk_th_http("GET", url, 5000, &body), 200);
    hk_th_hold_mem(body);
    json_t *j = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *lanes = json_object_get(j, "lanes");
    ck_assert_uint_eq(json_array_size(lanes), 1);
    char want[64];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d", p);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(lanes, 0), "endpoint")),
                     want);
    json_decref(j);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("hosts");
    TCase *tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_a_disabled_address_is_disabled_in_every_spelling);
    tcase_add_test(tc, test_a_hundred_thousand_hosts_leave_no_trace);
    suite_add_tcase(s, tc);
    return s;
}
