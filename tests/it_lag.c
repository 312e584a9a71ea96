// Lag: hookd_consumer_lag of a replica that takes over partitions whose jobs the
// previous owner delivered and committed. Until it consumes a message of its own
// it has no stored offset and no fetch position there; the gauge must count from
// the group's committed offset, not report the partitions' whole history (the
// HookdConsumerLagGrowing alert and replica scaling read this gauge).
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

#define N_FIRST  2000 // delivered and committed by replica 1
#define N_SECOND 300  // produced once replica 2 holds the partitions
#define DELAY_MS 2000 // sink's answer delay while the second jobs are in flight

static hk_th_scene_t sc;
static hk_sink_t *sink;

static void setup(void)
{
    const char *topics[] = {"jobs:4", "jobs.dlq:2", "jobs.retry:2", NULL};
    ck_assert_int_eq(hk_th_scene_start(&sc, topics), 0);
    char err[256];
    sink = hk_th_scene_sink(&sc, (hk_sink_opts_t){.threads = 16}, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
}

// Runs after a failed assertion too: no child outlives the test.
static void teardown(void)
{
    hk_th_scene_stop(&sc, 15000);
}

// Produces n jobs (ids prefixed `tag`) to the sink's /lag path, keyed over every partition.
static void produce(const char *tag, size_t n)
{
    char **values = hk_th_hold(HK_TH_HELD_STRS, calloc(n, sizeof(char *)), n);
    char **keys = hk_th_hold(HK_TH_HELD_STRS, calloc(n, sizeof(char *)), n);
    ck_assert(values && keys);
    for (size_t i = 0; i < n; i++) {
        ck_assert(asprintf(&values[i], "{\"id\":\"%s-%zu\",\"url\":\"http://127.0.0.1:%d/lag\"}",
                           tag, i, hk_sink_port(sink)) > 0);
        ck_assert(asprintf(&keys[i], "key-%zu", i % 53) > 0);
    }
    ck_assert_uint_eq(hk_th_produce(sc.brokers, "jobs", values, keys, n), n);
}

START_TEST(test_takeover_reports_lag_from_the_committed_offset)
{
    const char *log1 = "it_lag_r1.log", *log2 = "it_lag_r2.log";
    produce("first", N_FIRST);
    ck_assert_int_eq(hk_th_scene_hookd(&sc, 0, NULL, NULL, log1), 0);
    ck_assert_msg(hk_th_wait_unique_ok(sink, N_FIRST, 60000), "replica 1 did not deliver");
    ck_assert_msg(hk_th_wait_lag_zero(sc.brokers, "hookd", "jobs", 30000),
                  "replica 1 did not commit everything");
    int status = hk_th_stop(&sc.hookd[0], 15000);
    ck_assert_msg(hk_th_exited_ok(status), "replica 1 did not exit 0 (status %d)", status);
    ck_assert_int_eq(hk_th_group_lag(sc.brokers, "hookd", "jobs"), 0);

    // Replica 2 takes every partition over; nothing new arrives. Sampled for 4 s
    // after it holds them: its settle time (1 s on the mock) and several of its
    // once-a-second lag updates.
    ck_assert_int_eq(hk_th_scene_hookd(&sc, 1, NULL, NULL, log2), 0);
    ck_assert_msg(hk_th_wait_for(hk_th_holds_partitions, (void *)log2, 30000),
                  "replica 2 was assigned nothing");
    int port = 0;
    for (int i = 0; i < 100 && !(port = hk_th_admin_port(log2)); i++)
        hk_th_sleep_ms(100);
    ck_assert_msg(port > 0, "replica 2 logged no admin port");
    long long idle_max = -1, idle_last = -1;
    int samples = 0;
    for (int i = 0; i < 16; i++) {
        long long v = hk_th_metric(port, "hookd_consumer_lag");
        if (v >= 0) {
            samples++;
            idle_last = v;
            idle_max = v > idle_max ? v : idle_max;
        }
        hk_th_sleep_ms(250);
    }
    int held = hk_th_partitions_held(log2);

    // New jobs while the sink holds every answer DELAY_MS: the gauge counts them
    // (unfinished for at least DELAY_MS, over a lag update or two), and only them.
    // Sampled for twice DELAY_MS from the produce on; the answers held by then
    // still come DELAY_MS after their request.
    ck_assert_int_eq(hk_sink_set_rule(sink, "/lag", 200, DELAY_MS, NULL), 0);
    produce("second", N_SECOND);
    long long busy_max = -1;
    int64_t until = hk_th_now_ms() + 2 * DELAY_MS;
    do {
        long long v = hk_th_metric(port, "hookd_consumer_lag");
        busy_max = v > busy_max ? v : busy_max;
        hk_th_sleep_ms(100);
    } while (hk_th_now_ms() < until);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/lag", 0, 0, NULL), 0);
    ck_assert_msg(hk_th_wait_unique_ok(sink, N_FIRST + N_SECOND, 30000),
                  "replica 2 did not deliver the new jobs");
    ck_assert_msg(hk_th_wait_lag_zero(sc.brokers, "hookd", "jobs", 30000),
                  "replica 2 did not commit the new jobs");
    long long end = -1;
    for (int i = 0; i < 100 && (end = hk_th_metric(port, "hookd_consumer_lag")) != 0; i++)
        hk_th_sleep_ms(100);

    printf("it_lag: replica 2 holds %d partitions after a takeover of %d committed jobs: "
           "hookd_consumer_lag idle max %lld, last %lld (%d samples); with %d new jobs in "
           "flight max %lld; after they are committed %lld\n",
           held, N_FIRST, idle_max, idle_last, samples, N_SECOND, busy_max, end);
    ck_assert_int_gt(samples, 0);
    ck_assert_msg(idle_max == 0,
                  "hookd_consumer_lag %lld on a replica that took over %d committed jobs and "
                  "got nothing new",
                  idle_max, N_FIRST);
    ck_assert_msg(busy_max > 0 && busy_max <= N_SECOND,
                  "hookd_consumer_lag peaked at %lld with %d jobs unfinished", busy_max, N_SECOND);
    ck_assert_msg(end == 0, "hookd_consumer_lag %lld once everything was committed", end);
    status = hk_th_stop(&sc.hookd[1], 15000);
    ck_assert_msg(hk_th_exited_ok(status), "replica 2 did not exit 0 (status %d)", status);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_lag");
    hk_ck_case(s, "lag", 300, setup, teardown, test_takeover_reports_lag_from_the_committed_offset);
    return s;
}
