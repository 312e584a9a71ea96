// it_testkit: the installed hookd-testkit's scenario fixture, through its public
// header only (what a user's suite sees): two hookd replicas found through
// $HOOKD_BIN, jobs produced and delivered, /metrics read by series, a replica
// SIGKILLed and restarted, and a setup that fails with a reason.
#include "hookd/testkit.h"

#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define WAIT_MS 120000

static void fail_setup(const char *why)
{
    ck_abort_msg("%s", why);
}

static const char *const env[] = {"HOOKD_RETRY_BASE_MS=100", NULL};
static const hkt_scenario_opts_t two = {
    .replicas = 2, .partitions = 4, .env = env, .fail = fail_setup};

START_TEST(test_scenario_delivers_reads_metrics_and_restarts_a_killed_replica)
{
    hkt_scenario_t *sc = hkt_fixture();
    ck_assert_ptr_nonnull(sc);
    ck_assert_int_eq(hkt_scenario_replicas(sc), 2);
    // The kit started the hookd CTest named, not one baked into the build.
    ck_assert_str_eq(hkt_hookd_bin(), getenv("HOOKD_BIN"));

    ck_assert_uint_eq(hkt_scenario_produce_jobs(sc, "/ok", "a", 300), 300);
    char *bad[] = {"not json"};
    ck_assert_uint_eq(hkt_scenario_produce(sc, bad, NULL, 1), 1);
    ck_assert(hkt_scenario_wait_delivered(sc, 300, WAIT_MS));
    ck_assert(hkt_scenario_wait_lag_zero(sc, WAIT_MS));

    // Per-replica /metrics, one series or a whole family summed.
    double delivered = 0, invalid = 0, dead = 0;
    for (int i = 0; i < 2; i++) {
        delivered += hkt_scenario_metric(sc, i, "hookd_jobs_delivered_total");
        invalid += hkt_scenario_metric(sc, i, "hookd_jobs_dead_lettered_total{class=\"invalid\"}");
        dead += hkt_scenario_metric(sc, i, "hookd_jobs_dead_lettered_total");
    }
    ck_assert_msg(delivered >= 300, "delivered %.0f", delivered);
    ck_assert_msg(invalid == 1, "invalid %.0f", invalid);
    ck_assert_msg(dead == 1, "dead-lettered %.0f", dead);
    ck_assert(isnan(hkt_scenario_metric(sc, 0, "hookd_no_such_metric")));
    char *text = hkt_scenario_metrics(sc, 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE hookd_jobs_delivered_total counter"));
    free(text);

    // SIGKILL one replica; it is gone, then back under a new PID.
    hkt_proc_t *r1 = hkt_scenario_replica(sc, 1);
    pid_t before = hkt_proc_pid(r1);
    ck_assert_int_gt(before, 0);
    hkt_scenario_kill(sc, 1, SIGKILL);
    int status = hkt_proc_wait(r1, 10000);
    ck_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_eq(hkt_proc_pid(r1), 0);
    ck_assert_ptr_null(hkt_scenario_metrics(sc, 1));
    ck_assert_int_eq(hkt_scenario_restart(sc, 1, NULL), 0);
    pid_t after = hkt_proc_pid(hkt_scenario_replica(sc, 1));
    ck_assert_int_gt(after, 0);
    ck_assert_int_ne(after, before);

    ck_assert_uint_eq(hkt_scenario_produce_jobs(sc, "/ok", "b", 100), 100);
    ck_assert(hkt_scenario_wait_delivered(sc, 400, WAIT_MS));
    ck_assert(hkt_scenario_wait_lag_zero(sc, WAIT_MS));
    ck_assert_uint_eq(hkt_sink_ok_count(hkt_scenario_sink(sc), "b-99"), 1);

    // SIGTERM drains and exits 0.
    ck_assert(hkt_exited_ok(hkt_scenario_stop_replica(sc, 0, 30000)));
}
END_TEST

START_TEST(test_scenario_start_fails_with_a_reason)
{
    hkt_scenario_opts_t opts = {.hookd_bin = "/nonexistent/hookd"};
    char err[512] = "";
    hkt_scenario_t *sc = hkt_scenario_start(&opts, err, sizeof err);
    ck_assert_ptr_null(sc);
    ck_assert_msg(strstr(err, "/nonexistent/hookd") != NULL, "err: %s", err);
    // Without the argument, $HOOKD_BIN decides.
    char *saved = strdup(getenv("HOOKD_BIN"));
    setenv("HOOKD_BIN", "/nonexistent/env/hookd", 1);
    ck_assert_str_eq(hkt_hookd_bin(), "/nonexistent/env/hookd");
    sc = hkt_scenario_start(NULL, err, sizeof err);
    setenv("HOOKD_BIN", saved, 1);
    free(saved);
    ck_assert_ptr_null(sc);
    ck_assert_msg(strstr(err, "/nonexistent/env/hookd") != NULL, "err: %s", err);
}
END_TEST

static void setup(void)
{
    hkt_fixture_use(&two);
    hkt_fixture_setup();
}

int main(void)
{
    Suite *s = suite_create("it_testkit");
    TCase *tc = tcase_create("scenario");
    tcase_add_checked_fixture(tc, setup, hkt_fixture_teardown);
    tcase_add_test(tc, test_scenario_delivers_reads_metrics_and_restarts_a_killed_replica);
    suite_add_tcase(s, tc);
    TCase *bad = tcase_create("setup");
    tcase_add_test(bad, test_scenario_start_fails_with_a_reason);
    suite_add_tcase(s, bad);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
