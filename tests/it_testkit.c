// it_testkit: the installed hookd-testkit's scenario fixture, through its public
// header only (what a user's suite sees): two hookd replicas found through
// $HOOKD_BIN, jobs produced and delivered, /metrics read by series, a replica
// SIGKILLed and restarted, and a setup that fails with a reason. Then the sink
// with TLS (opts.sink_tls): hookd delivers when it trusts the sink's CA, and
// dead-letters with the TLS error when it does not, when the certificate has
// expired and when it names another host. The kit has no dead-letter reader, so
// those read jobs.dlq with the harness's (tests/support/harness.h).
#include "hookd/testkit.h"

#include "tests/support/harness.h"

#include <check.h>
#include <inttypes.h>
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

// ---- TLS ----

#define TLS_JOBS 200

// Retryable TLS failures end as "exhausted" after 3 quick attempts.
static const char *const tls_env[] = {"HOOKD_RETRY_SCHEDULE=100ms", "HOOKD_RETRY_MAX_ATTEMPTS=3",
                                      NULL};
// The same with delivery.ca_file empty: the system's CA bundle, which does not
// hold the sink's CA.
static const char *const system_ca_env[] = {
    "HOOKD_RETRY_SCHEDULE=100ms", "HOOKD_RETRY_MAX_ATTEMPTS=3", "HOOKD_DELIVERY_CA_FILE=", NULL};
static const hkt_scenario_opts_t tls_trusted = {
    .partitions = 2, .env = tls_env, .fail = fail_setup, .sink_tls = HKT_TLS};
static const hkt_scenario_opts_t tls_untrusted = {
    .partitions = 2, .env = system_ca_env, .fail = fail_setup, .sink_tls = HKT_TLS};
static const hkt_scenario_opts_t tls_expired = {
    .partitions = 2, .env = tls_env, .fail = fail_setup, .sink_tls = HKT_TLS_EXPIRED};
static const hkt_scenario_opts_t tls_wrong_host = {
    .partitions = 2, .env = tls_env, .fail = fail_setup, .sink_tls = HKT_TLS_WRONG_HOST};

typedef struct dlq_wait {
    const char *brokers;
    size_t n;
} dlq_wait_t;

static int dlq_has(void *arg)
{
    dlq_wait_t *w = arg;
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(w->brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    return n >= w->n;
}

START_TEST(test_tls_sink_gets_every_job_once_when_hookd_trusts_its_ca)
{
    hkt_scenario_t *sc = hkt_fixture();
    hkt_sink_t *sink = hkt_scenario_sink(sc);
    char url[128];
    hkt_sink_url(sink, "/ok", url, sizeof url);
    ck_assert_msg(strncmp(url, "https://127.0.0.1:", 18) == 0, "url %s", url);
    // The CA hookd was given is the sink's.
    char path[512], pem[4096] = "";
    snprintf(path, sizeof path, "%s/sink-ca.pem", hkt_scenario_dir(sc));
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    size_t len = fread(pem, 1, sizeof pem - 1, f);
    fclose(f);
    pem[len] = '\0';
    ck_assert_ptr_nonnull(hkt_sink_ca_pem(sink));
    ck_assert_str_eq(pem, hkt_sink_ca_pem(sink));
    ck_assert_ptr_nonnull(strstr(pem, "-----BEGIN CERTIFICATE-----"));

    ck_assert_uint_eq(hkt_scenario_produce_jobs(sc, "/ok", "tls", TLS_JOBS), TLS_JOBS);
    ck_assert(hkt_scenario_wait_delivered(sc, TLS_JOBS, WAIT_MS));
    ck_assert(hkt_scenario_wait_lag_zero(sc, WAIT_MS));
    hkt_sink_stats_t st;
    hkt_sink_stats(sink, &st);
    printf("it_testkit tls: %" PRIu64 " requests, %" PRIu64 " delivered, %" PRIu64
           " duplicates, %" PRIu64 " bad signatures\n",
           st.requests, st.unique_ok, st.duplicate_ok, st.bad_signature);
    ck_assert_uint_eq(st.unique_ok, TLS_JOBS);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(st.bad_headers, 0);
    hkt_sink_req_t *reqs;
    size_t n = hkt_sink_reqs(sink, &reqs);
    ck_assert_uint_eq(n, st.requests);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(reqs[i].sig == 1, "request %zu (%s): sig %d", i, reqs[i].webhook_id,
                      reqs[i].sig);
    hkt_sink_reqs_free(reqs, n);
    hk_th_record_t *recs;
    size_t ndlq = hk_th_read_topic(hkt_scenario_brokers(sc), "jobs.dlq", &recs);
    hk_th_records_free(recs, ndlq);
    ck_assert_uint_eq(ndlq, 0);
}
END_TEST

// Produces one job to the TLS sink and checks that it is dead-lettered as
// exhausted after its 3 attempts, with a TLS error holding `want`, and that the
// sink never saw a request.
static void check_refused(const char *want)
{
    hkt_scenario_t *sc = hkt_fixture();
    ck_assert_uint_eq(hkt_scenario_produce_jobs(sc, "/ok", "bad", 1), 1);
    dlq_wait_t w = {hkt_scenario_brokers(sc), 1};
    ck_assert_msg(hk_th_wait_for(dlq_has, &w, WAIT_MS), "no dead letter");
    ck_assert(hkt_scenario_wait_lag_zero(sc, WAIT_MS));
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(w.brokers, "jobs.dlq", &recs);
    ck_assert_uint_eq(n, 1);
    const char *id = hk_th_header(&recs[0], "hookd-job-id");
    const char *cls = hk_th_header(&recs[0], "hookd-error-class");
    const char *attempts = hk_th_header(&recs[0], "hookd-attempts");
    const char *status = hk_th_header(&recs[0], "hookd-http-status");
    const char *error = hk_th_header(&recs[0], "hookd-error");
    printf("it_testkit tls refused: %s %s after %s attempts: %s\n", id ? id : "?", cls ? cls : "?",
           attempts ? attempts : "?", error ? error : "?");
    ck_assert_str_eq(id ? id : "", "bad-0");
    ck_assert_str_eq(cls ? cls : "", "exhausted");
    ck_assert_str_eq(attempts ? attempts : "", "3");
    ck_assert_str_eq(status ? status : "", "0");
    ck_assert_msg(error && strstr(error, want), "hookd-error \"%s\", want \"%s\"",
                  error ? error : "(none)", want);
    hk_th_records_free(recs, n);
    hkt_sink_stats_t st;
    hkt_sink_stats(hkt_scenario_sink(sc), &st);
    ck_assert_uint_eq(st.requests, 0);
    double exhausted =
        hkt_scenario_metric(sc, 0, "hookd_jobs_dead_lettered_total{class=\"exhausted\"}");
    ck_assert_msg(exhausted == 1, "exhausted %.0f", exhausted);
}

START_TEST(test_tls_sink_is_refused_with_the_system_ca_bundle)
{
    check_refused("unable to get local issuer certificate");
}
END_TEST

START_TEST(test_tls_sink_with_an_expired_certificate_is_refused)
{
    check_refused("certificate has expired");
}
END_TEST

START_TEST(test_tls_sink_with_a_wrong_host_certificate_is_refused)
{
    check_refused("no alternative certificate subject name matches target host name");
}
END_TEST

static void setup(void)
{
    hkt_fixture_use(&two);
    hkt_fixture_setup();
}

static void setup_tls_trusted(void)
{
    hkt_fixture_use(&tls_trusted);
    hkt_fixture_setup();
}

static void setup_tls_untrusted(void)
{
    hkt_fixture_use(&tls_untrusted);
    hkt_fixture_setup();
}

static void setup_tls_expired(void)
{
    hkt_fixture_use(&tls_expired);
    hkt_fixture_setup();
}

static void setup_tls_wrong_host(void)
{
    hkt_fixture_use(&tls_wrong_host);
    hkt_fixture_setup();
}

int main(void)
{
    Suite *s = suite_create("it_testkit");
    TCase *tc = tcase_create("scenario");
    tcase_add_checked_fixture(tc, setup, hkt_fixture_teardown);
    tcase_add_test(tc, test_scenario_delivers_reads_metrics_and_restarts_a_killed_replica);
    suite_add_tcase(s, tc);
    struct {
        const char *name;
        void (*setup)(void);
        const TTest *test;
    } tls[] = {
        {"tls", setup_tls_trusted, test_tls_sink_gets_every_job_once_when_hookd_trusts_its_ca},
        {"tls-system-ca", setup_tls_untrusted, test_tls_sink_is_refused_with_the_system_ca_bundle},
        {"tls-expired", setup_tls_expired, test_tls_sink_with_an_expired_certificate_is_refused},
        {"tls-wrong-host", setup_tls_wrong_host,
         test_tls_sink_with_a_wrong_host_certificate_is_refused},
    };
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++) {
        TCase *t = tcase_create(tls[i].name);
        tcase_add_checked_fixture(t, tls[i].setup, hkt_fixture_teardown);
        tcase_add_test(t, tls[i].test);
        suite_add_tcase(s, t);
    }
    TCase *bad = tcase_create("setup");
    tcase_add_test(bad, test_scenario_start_fails_with_a_reason);
    suite_add_tcase(s, bad);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
