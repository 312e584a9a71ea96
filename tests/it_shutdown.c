// Shutdown in every documented combination, and jobs of unknown tenants.
//
// For each of admin off, Postgres off, Redis off and all on: hookd delivers a
// run of jobs, gets SIGTERM right after the last one, and exits 0 having made its
// final commit (the group's committed offsets are at the end of every partition
// the moment it has exited). With admin.listen = "" hookd used to end in SIGSEGV.
//
// With per-tenant secrets, a job whose tenant has none is dead-lettered as invalid
// (signing.unknown_tenant = reject, the default), its offset committed; with
// signing.unknown_tenant = default it is signed with signing.secret.
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/pgsvc.h"
#include "tests/support/redissvc.h"
#include "tests/support/sink.h"

#define N_JOBS  300
#define STOP_MS 30000

static hk_pgsvc_t pgs; // the run's server (hk_ck_run_t.pg; a child of this process: CK_NOFORK)
static hk_sink_t *sink;
static hk_th_proc_t kafka, hookd;
static hk_redissvc_t *redis;
static char brokers[512];

__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    return hk_th_hold_mem(s);
}

static void setup(void)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 8};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    kafka = (hk_th_proc_t){.pid = 0, .stdin_fd = -1};
    hookd = (hk_th_proc_t){.pid = 0, .stdin_fd = -1};
    redis = NULL;
    const char *topics[] = {"jobs:4", "jobs.dlq:2", "jobs.retry:4", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
}

static void teardown(void)
{
    hk_th_stop(&hookd, STOP_MS);
    hk_th_kafka_stop(&kafka);
    hk_redissvc_destroy(redis);
    redis = NULL;
    hk_sink_stop(sink);
    hk_th_release_held();
}

static void produce_jobs(const char *prefix, int n)
{
    char **values = hk_th_hold(HK_TH_HELD_STRS, calloc((size_t)n, sizeof(char *)), (size_t)n);
    for (int i = 0; i < n; i++)
        ck_assert(asprintf(&values[i], "{\"id\":\"%s-%d\",\"url\":\"http://127.0.0.1:%d/ok\"}",
                           prefix, i, hk_sink_port(sink)) > 0);
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, NULL, (size_t)n), (size_t)n);
}

static const char *status_name(int status)
{
    static char buf[64];
    if (status == -1)
        return "killed after the timeout";
    if (WIFEXITED(status))
        snprintf(buf, sizeof(buf), "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, sizeof(buf), "signal %d", WTERMSIG(status));
    else
        snprintf(buf, sizeof(buf), "status %d", status);
    return buf;
}

// Starts hookd with `env`, delivers N_JOBS, sends SIGTERM as soon as the last one
// arrived, and checks exit 0, the "stopped" line and lag 0 right after the exit.
static void deliver_then_sigterm(const char *name, char *const env[])
{
    const char *log = fmt("it_shutdown_%s_hookd.log", name);
    unlink(log);
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, log), 0);
    produce_jobs(name, N_JOBS);
    ck_assert_msg(hk_th_wait_unique_ok(sink, N_JOBS, 120000), "%s: jobs not delivered", name);

    int64_t t0 = hk_th_now_ms();
    hk_th_kill(&hookd, SIGTERM);
    int status = hk_th_wait(&hookd, STOP_MS);
    int64_t took = hk_th_now_ms() - t0;
    if (status != -1)
        hookd.pid = 0;
    int64_t lag = hk_th_group_lag(brokers, "hookd", "jobs");
    int stopped = hk_th_log_count(log, "\"event\":\"stopped\"");
    printf("it_shutdown %s: %d delivered, SIGTERM -> %s in %lld ms, stopped lines %d, lag after "
           "exit %lld\n",
           name, N_JOBS, status_name(status), (long long)took, stopped, (long long)lag);
    fflush(stdout);
    ck_assert_msg(hk_th_exited_ok(status), "%s: hookd ended with %s after SIGTERM", name,
                  status_name(status));
    ck_assert_int_eq(stopped, 1);
    ck_assert_msg(lag == 0, "%s: %lld offsets not committed at exit", name, (long long)lag);
}

static const char *pg_env(const char *db)
{
    char conninfo[512];
    ck_assert_int_eq(hk_pgsvc_create_db(&pgs, db, conninfo, sizeof(conninfo)), 0);
    return fmt("HOOKD_POSTGRES_URL=%s", conninfo);
}

static const char *redis_env(void)
{
    char err[256];
    redis = hk_redissvc_start(NULL, err, sizeof(err));
    ck_assert_msg(redis != NULL, "redis: %s", err);
    return fmt("HOOKD_REDIS_URL=%s", hk_redissvc_url(redis));
}

START_TEST(test_admin_off_shuts_down_cleanly)
{
    char *env[] = {"HOOKD_ADMIN_LISTEN=", NULL};
    deliver_then_sigterm("admin_off", env);
}
END_TEST

START_TEST(test_postgres_off_shuts_down_cleanly)
{
    char *env[] = {(char *)redis_env(), NULL};
    deliver_then_sigterm("postgres_off", env);
}
END_TEST

START_TEST(test_redis_off_shuts_down_cleanly)
{
    char *env[] = {(char *)pg_env("shutdown_redis_off"), NULL};
    deliver_then_sigterm("redis_off", env);
}
END_TEST

START_TEST(test_all_on_shuts_down_cleanly)
{
    char *env[] = {(char *)pg_env("shutdown_all_on"), (char *)redis_env(), NULL};
    deliver_then_sigterm("all_on", env);
}
END_TEST

START_TEST(test_all_off_shuts_down_cleanly)
{
    char *env[] = {"HOOKD_ADMIN_LISTEN=", NULL};
    // No Postgres and no Redis either: the smallest hookd there is.
    deliver_then_sigterm("all_off", env);
}
END_TEST

// ---- unknown tenants ----

static int dlq_has(void *arg)
{
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    return n >= *(size_t *)arg;
}

static const char *write_conf(const char *name, const char *text)
{
    const char *path = fmt("it_shutdown_%s.conf", name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static void produce_tenant_jobs(void)
{
    int port = hk_sink_port(sink);
    char *values[] = {
        fmt("{\"id\":\"acme-1\",\"tenant\":\"acme\",\"url\":\"http://127.0.0.1:%d/ok\"}", port),
        fmt("{\"id\":\"ghost-1\",\"tenant\":\"ghost\",\"url\":\"http://127.0.0.1:%d/ok\"}", port),
        fmt("{\"id\":\"none-1\",\"url\":\"http://127.0.0.1:%d/ok\"}", port),
        fmt("{\"id\":\"ghost-2\",\"tenant\":\"ghost\",\"url\":\"http://127.0.0.1:%d/ok\"}", port),
        fmt("{\"id\":\"acme-2\",\"tenant\":\"acme\",\"url\":\"http://127.0.0.1:%d/ok\"}", port),
    };
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, NULL, 5), 5);
}

// A tenant without its own secret while others have theirs: dead-lettered as
// invalid, never signed with the default secret; the known tenant and the job
// without a tenant are delivered; every offset is committed.
START_TEST(test_unknown_tenant_is_dead_lettered_as_invalid)
{
    const char *conf = write_conf("reject", "[tenant \"acme\"]\nsecret = " HK_TH_SECRET "\n");
    const char *log = "it_shutdown_tenant_hookd.log";
    unlink(log);
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, NULL, conf, log), 0);
    produce_tenant_jobs();
    ck_assert(hk_th_wait_unique_ok(sink, 3, 60000));
    size_t want = 2;
    ck_assert_msg(hk_th_wait_for(dlq_has, &want, 60000), "no dead letters");
    ck_assert_msg(hk_th_wait_lag_zero(brokers, "hookd", "jobs", 30000), "offsets not committed");

    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, n);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < n; i++) {
        const char *cls = hk_th_header(&recs[i], "hookd-error-class");
        const char *why = hk_th_header(&recs[i], "hookd-error");
        const char *id = hk_th_header(&recs[i], "hookd-job-id");
        printf("it_shutdown unknown tenant: %s dead-lettered, class %s, error %s\n", id ? id : "?",
               cls ? cls : "?", why ? why : "?");
        ck_assert_str_eq(cls, "invalid");
        ck_assert_ptr_nonnull(strstr(why, "unknown tenant \"ghost\""));
        ck_assert(strncmp(id, "ghost-", 6) == 0);
        ck_assert(strstr(recs[i].value, "\"tenant\":\"ghost\"") != NULL); // the record, verbatim
    }
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    ck_assert_uint_eq(st.unique_ok, 3);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "ghost-1") + hk_sink_ok_count(sink, "ghost-2"), 0);
    ck_assert_msg(hk_th_exited_ok(hk_th_stop(&hookd, STOP_MS)), "hookd did not exit 0");
}
END_TEST

START_TEST(test_unknown_tenant_default_uses_the_default_secret)
{
    const char *conf = write_conf("default", "[signing]\nunknown_tenant = default\n"
                                             "[tenant \"acme\"]\nsecret = " HK_TH_SECRET "\n");
    const char *log = "it_shutdown_tenant_default_hookd.log";
    unlink(log);
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, NULL, conf, log), 0);
    produce_tenant_jobs();
    ck_assert(hk_th_wait_unique_ok(sink, 5, 60000));
    ck_assert_msg(hk_th_wait_lag_zero(brokers, "hookd", "jobs", 30000), "offsets not committed");
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    ck_assert_uint_eq(st.bad_signature, 0); // signed with signing.secret (HK_TH_SECRET)
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    ck_assert_uint_eq(n, 0);
    ck_assert_msg(hk_th_exited_ok(hk_th_stop(&hookd, STOP_MS)), "hookd did not exit 0");
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    // The Postgres server is a child of this process: tests must run in it too.
    run->nofork = true;
    run->pg = &pgs;
    Suite *s = suite_create("it_shutdown");
    TCase *tc = tcase_create("shutdown");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_admin_off_shuts_down_cleanly);
    tcase_add_test(tc, test_postgres_off_shuts_down_cleanly);
    tcase_add_test(tc, test_redis_off_shuts_down_cleanly);
    tcase_add_test(tc, test_all_on_shuts_down_cleanly);
    tcase_add_test(tc, test_all_off_shuts_down_cleanly);
    suite_add_tcase(s, tc);
    tc = tcase_create("tenants");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_unknown_tenant_is_dead_lettered_as_invalid);
    tcase_add_test(tc, test_unknown_tenant_default_uses_the_default_secret);
    suite_add_tcase(s, tc);
    return s;
}
