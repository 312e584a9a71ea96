// 429 is back-pressure, not an outage (DESIGN §7, issue 10 finding 8): one host
// serves a path that answers "429 Retry-After: 1" to half its requests and a
// healthy path. The breaker must never open (that would defer the healthy path
// too), every job must be delivered, the healthy path must not be starved, and
// the request rate to the busy path settles near what it accepts.
// Logs: it_backpressure_*.log in the working dir.
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

static hk_th_scene_t sc;

static void setup(void)
{
    const char *topics[] = {"jobs:4", "jobs.dlq:1", "jobs.retry:4", NULL};
    ck_assert_int_eq(hk_th_scene_start(&sc, topics), 0);
}

static void teardown(void)
{
    hk_th_scene_stop(&sc, 15000);
}

static int is_busy(const hk_sink_req_t *r)
{
    return strncmp(r->path, "/random-429/", 12) == 0;
}

#define JOBS 200 // half to each path

START_TEST(test_429_slows_the_lane_without_opening_the_breaker)
{
    char err[256];
    hk_sink_t *sink =
        hk_th_scene_sink(&sc, (hk_sink_opts_t){.threads = 8, .seed = 42}, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    int port = hk_sink_port(sink);

    // Every 429 is a retryable attempt: allow enough of them that a job's run of
    // 429s (p = 1/2 each) cannot exhaust it.
    char *env[] = {"HOOKD_RETRY_SCHEDULE=200ms", "HOOKD_RETRY_MAX_ATTEMPTS=40", NULL};
    const char *log = "it_backpressure_429.log";
    ck_assert_int_eq(hk_th_scene_hookd(&sc, 0, env, NULL, log), 0);
    ck_assert_msg(hk_th_wait_for_log(log, "\"partitions_assigned\"", 1, 30000),
                  "hookd never got partitions (see %s)", log);

    char **values = calloc(JOBS, sizeof(*values));
    for (int i = 0; i < JOBS; i++) {
        const char *path = i % 2 ? "/random-429/50/" : "/ok/";
        ck_assert(asprintf(&values[i],
                           "{\"id\":\"j%d\",\"url\":\"http://127.0.0.1:%d%s%d\",\"body\":{}}", i,
                           port, path, i) > 0);
    }
    int64_t t0 = hk_th_now_ms();
    size_t acked = hk_th_produce(sc.brokers, "jobs", values, NULL, JOBS);
    for (int i = 0; i < JOBS; i++)
        free(values[i]);
    free(values);
    ck_assert_uint_eq(acked, JOBS);

    int all = hk_th_wait_unique_ok(sink, JOBS, 240000);
    int64_t t1 = hk_th_now_ms();
    int opened = hk_th_log_count(log, "\"to\":\"open\"");
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    hk_sink_req_t *reqs;
    size_t n = hk_sink_reqs(sink, &reqs);
    hk_th_hold(HK_TH_HELD_REQS, reqs, n);

    // Figures: when each path was done, and the busy path's rate over the run.
    int64_t first = n ? reqs[0].at_ms : t0, ok_last = 0, busy_last = 0;
    size_t ok_reqs = 0, busy_reqs = 0, busy_429 = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_busy(&reqs[i])) {
            busy_reqs++;
            busy_429 += reqs[i].status == 429;
            if (reqs[i].status == 200)
                busy_last = reqs[i].at_ms;
        } else {
            ok_reqs++;
            if (reqs[i].status == 200)
                ok_last = reqs[i].at_ms;
        }
    }
    double span_s = (double)(busy_last - first) / 1000.0;
    // The second half of the busy path's span: the settled rate.
    int64_t mid = first + (busy_last - first) / 2;
    size_t late_reqs = 0, late_ok = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_busy(&reqs[i]) && reqs[i].at_ms >= mid) {
            late_reqs++;
            late_ok += reqs[i].status == 200;
        }
    }
    double late_s = (double)(busy_last - mid) / 1000.0;
    printf("it_backpressure: %d jobs in %.1f s (all delivered: %s); breaker opened %d times\n",
           JOBS, (double)(t1 - t0) / 1000.0, all ? "yes" : "no", opened);
    printf("it_backpressure: healthy path: %zu requests, last delivered %.1f s after the first "
           "request; busy path: %zu requests (%zu answered 429), last delivered after %.1f s\n",
           ok_reqs, (double)(ok_last - first) / 1000.0, busy_reqs, busy_429, span_s);
    if (late_s > 0)
        printf("it_backpressure: busy path, second half: %.1f requests/s sent, %.1f/s accepted "
               "(%.0f%% accepted)\n",
               (double)late_reqs / late_s, (double)late_ok / late_s,
               late_reqs ? 100.0 * (double)late_ok / (double)late_reqs : 0.0);

    ck_assert_msg(opened == 0, "a 429 opened the breaker %d times (see %s)", opened, log);
    ck_assert_msg(all, "not every job was delivered: %llu of %d (see %s)",
                  (unsigned long long)st.unique_ok, JOBS, log);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(st.bad_signature, 0);
    // The healthy path is never refused: one request per job.
    ck_assert_uint_eq(ok_reqs, JOBS / 2);
    // Not starved: the healthy path was done no later than the busy one (measured
    // against the busy path's own span, not a fixed speed).
    ck_assert_msg(ok_last <= busy_last, "healthy path done %.1f s after the busy one",
                  (double)(ok_last - busy_last) / 1000.0);
    // Back-pressure was applied: Retry-After held the lane, so the busy path was
    // not hammered (each 429 costs at least a second of that job's time).
    ck_assert_uint_ge(busy_429, 1);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("backpressure");
    TCase *tc = tcase_create("429");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, test_429_slows_the_lane_without_opening_the_breaker);
    suite_add_tcase(s, tc);
    return s;
}
