// check_outage: proves that nothing is lost when the webhook receiver is down
// for a while, or when Redis goes away, with hookd between Kafka and the
// receiver. Copy it and put your own receiver paths, job shapes and config in.
//
// Each test gets a fresh scenario from the checked fixture: a fault sink as the
// receiver, a Kafka mock cluster, hookd, and Redis for the second test.
#include <hookd/testkit.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define JOBS      200
#define OUTAGE_MS 3000
#define WAIT_MS   120000 // generous: a loaded CI machine, not a speed target

// Retries and the breaker tuned so that a 3 s outage is ridden out in seconds:
// 50 attempts at most 1 s apart outlast it many times over.
static const char *const fast_retries[] = {
    "HOOKD_RETRY_BASE_MS=200",   "HOOKD_RETRY_MAX_DELAY_MS=1000",  "HOOKD_RETRY_MAX_ATTEMPTS=50",
    "HOOKD_BREAKER_OPEN_MS=500", "HOOKD_BREAKER_MAX_OPEN_MS=1000", NULL,
};

static void fail_setup(const char *why)
{
    ck_abort_msg("%s", why);
}

static const hkt_scenario_opts_t receiver_opts = {.env = fast_retries, .fail = fail_setup};
static const hkt_scenario_opts_t redis_opts = {.env = fast_retries, .redis = 1, .fail = fail_setup};

static void receiver_setup(void)
{
    hkt_fixture_use(&receiver_opts);
    hkt_fixture_setup();
}

static void redis_setup(void)
{
    hkt_fixture_use(&redis_opts);
    hkt_fixture_setup();
}

// What "nothing lost" means here: every job answered 2xx by the receiver, no
// signature the receiver could not verify, nothing dead-lettered, and the
// consumer group caught up with the topic.
static void assert_nothing_lost(hkt_scenario_t *sc)
{
    hkt_sink_t *sink = hkt_scenario_sink(sc);
    ck_assert_msg(hkt_scenario_wait_delivered(sc, JOBS, WAIT_MS), "not every job was delivered");
    hkt_sink_stats_t st;
    hkt_sink_stats(sink, &st);
    ck_assert_uint_eq(st.unique_ok, JOBS);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_msg(hkt_scenario_wait_lag_zero(sc, WAIT_MS), "lag stayed at %lld",
                  (long long)hkt_scenario_lag(sc));
    double dead = hkt_scenario_metric(sc, 0, "hookd_jobs_dead_lettered_total");
    ck_assert_msg(dead == 0, "%.0f jobs dead-lettered", dead); // NAN (no metric) fails too
    double delivered = hkt_scenario_metric(sc, 0, "hookd_jobs_delivered_total");
    ck_assert_msg(delivered >= JOBS, "hookd_jobs_delivered_total = %.0f", delivered);
    printf("check_outage: %d jobs, %llu requests (%llu failed), %llu duplicates\n", JOBS,
           (unsigned long long)st.requests, (unsigned long long)st.failed,
           (unsigned long long)st.duplicate_ok);
}

// Polls replica 0's /metrics until `series` satisfies want(value); 1 if it did.
static int wait_metric(hkt_scenario_t *sc, const char *series, int (*want)(double))
{
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        if (want(hkt_scenario_metric(sc, 0, series)))
            return 1;
        usleep(100 * 1000);
    }
    return 0;
}

static int positive(double v)
{
    return v > 0;
}

static int zero(double v)
{
    return v == 0;
}

static int one(double v)
{
    return v == 1;
}

START_TEST(test_receiver_outage_loses_nothing)
{
    hkt_scenario_t *sc = hkt_fixture();
    hkt_sink_t *sink = hkt_scenario_sink(sc);
    // The receiver answers 503 to everything under /hooks until hookd has met
    // the outage, then for OUTAGE_MS more (an outage window that ends by itself).
    ck_assert_int_eq(hkt_sink_set_rule(sink, "/hooks", 503, 0, NULL), 0);
    ck_assert_uint_eq(hkt_scenario_produce_jobs(sc, "/hooks/orders", "order", JOBS), JOBS);
    hkt_sink_stats_t st = {0};
    for (int waited = 0; st.failed == 0 && waited < WAIT_MS; waited += 50) {
        usleep(50 * 1000);
        hkt_sink_stats(sink, &st);
    }
    ck_assert_msg(st.failed > 0, "hookd never reached the receiver");
    ck_assert_int_eq(hkt_sink_set_outage(sink, "/hooks", 503, OUTAGE_MS), 0);
    assert_nothing_lost(sc);
}
END_TEST

START_TEST(test_receiver_refusing_connections_loses_nothing)
{
    hkt_scenario_t *sc = hkt_fixture();
    hkt_sink_t *sink = hkt_scenario_sink(sc);
    // The receiver's host is down: connections are refused until hookd has
    // tried, then for OUTAGE_MS more.
    ck_assert_int_eq(hkt_sink_refuse(sink, 0), 0);
    ck_assert_uint_eq(hkt_scenario_produce_jobs(sc, "/hooks/orders", "order", JOBS), JOBS);
    ck_assert_msg(wait_metric(sc, "hookd_delivery_attempts_total", positive),
                  "hookd never tried to deliver");
    usleep(OUTAGE_MS * 1000);
    ck_assert_int_eq(hkt_sink_listen(sink), 0);
    assert_nothing_lost(sc);
    // Some attempts never reached the receiver: they were refused.
    hkt_sink_stats_t st;
    hkt_sink_stats(sink, &st);
    double attempts = hkt_scenario_metric(sc, 0, "hookd_delivery_attempts_total");
    ck_assert_msg(attempts > (double)st.requests, "%.0f attempts, %llu reached the receiver",
                  attempts, (unsigned long long)st.requests);
}
END_TEST

START_TEST(test_redis_outage_loses_nothing)
{
    hkt_scenario_t *sc = hkt_fixture();
    hkt_redis_t *redis = hkt_scenario_redis(sc);
    ck_assert_uint_eq(hkt_scenario_produce_jobs(sc, "/hooks/orders", "order", JOBS / 2), JOBS / 2);
    ck_assert_msg(wait_metric(sc, "hookd_redis_up", one), "hookd never connected to Redis");
    ck_assert_int_eq(hkt_redis_stop(redis), 0); // Redis goes away mid-run
    ck_assert_int_eq(hkt_redis_pid(redis), 0);
    ck_assert_msg(wait_metric(sc, "hookd_redis_up", zero), "hookd did not notice Redis go");
    hkt_proc_t *hookd = hkt_scenario_replica(sc, 0);
    // More jobs while it is down; hookd keeps delivering without it.
    char **more = malloc(JOBS / 2 * sizeof *more);
    char url[128];
    hkt_sink_url(hkt_scenario_sink(sc), "/hooks/orders", url, sizeof url);
    for (int i = 0; i < JOBS / 2; i++) {
        more[i] = malloc(256);
        snprintf(more[i], 256, "{\"id\":\"late-%d\",\"url\":\"%s\",\"body\":{}}", i, url);
    }
    ck_assert_uint_eq(hkt_scenario_produce(sc, more, NULL, JOBS / 2), JOBS / 2);
    for (int i = 0; i < JOBS / 2; i++)
        free(more[i]);
    free(more);
    ck_assert_msg(hkt_sink_wait_delivered(hkt_scenario_sink(sc), JOBS, WAIT_MS),
                  "jobs stuck while Redis was down");
    ck_assert_int_gt(hkt_proc_pid(hookd), 0); // hookd stayed up
    ck_assert_int_eq(hkt_redis_restart(redis), 0);
    ck_assert_msg(wait_metric(sc, "hookd_redis_up", one), "hookd did not reconnect to Redis");
    assert_nothing_lost(sc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("check_outage");
    TCase *receiver = tcase_create("receiver");
    tcase_add_checked_fixture(receiver, receiver_setup, hkt_fixture_teardown);
    tcase_set_timeout(receiver, 240);
    tcase_add_test(receiver, test_receiver_outage_loses_nothing);
    tcase_add_test(receiver, test_receiver_refusing_connections_loses_nothing);
    suite_add_tcase(s, receiver);
    TCase *redis = tcase_create("redis");
    tcase_add_checked_fixture(redis, redis_setup, hkt_fixture_teardown);
    tcase_set_timeout(redis, 240);
    tcase_add_test(redis, test_redis_outage_loses_nothing);
    suite_add_tcase(s, redis);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
