// End to end: jobs produced to an out-of-process Kafka (mock cluster), hookd as a
// child process, a real HTTP sink that verifies every signature.
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
#include "base/sign.h"

// Tenant "t1" signs with its own secret (from a [tenant "t1"] section).
#define T1_SECRET "whsec_aG9va2QtdGVzdC10ZW5hbnQtc2VjcmV0"

#define N_JOBS 20000

static hk_sink_t *sink;
static hk_th_proc_t kafka;
static char brokers[512];

static void setup(void)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET " " T1_SECRET, .threads = 16};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    const char *topics[] = {"jobs:8", "jobs.dlq:2", "jobs.retry:8", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
}

static void teardown(void)
{
    hk_th_kafka_stop(&kafka);
    hk_sink_stop(sink);
}

typedef struct bad_job {
    const char *value; // %d is replaced by the sink's port
    const char *cls;   // expected hookd-error-class
    const char *error; // expected substring of hookd-error
    const char *status;
} bad_job_t;

static const bad_job_t bad_jobs[] = {
    {"not json at all", "invalid", "invalid JSON", "0"},
    {"", "invalid", "$", "0"},
    {"[1,2,3]", "invalid", "must be a JSON object", "0"},
    {"{\"url\":\"ftp://127.0.0.1:%d/ok\"}", "invalid", "$.url", "0"},
    {"{\"body\":{\"a\":1}}", "invalid", "$.url", "0"},
    {"{\"url\":\"http://127.0.0.1:%d/ok\",\"headers\":{\"X-A\":\"a\\r\\nb\"}}", "invalid",
     "$.headers.X-A", "0"},
    {"{\"url\":\"http://127.0.0.1:%d/ok\",\"max_attempts\":0}", "invalid", "$.max_attempts", "0"},
    {"{\"id\":\"bad id!\",\"url\":\"http://127.0.0.1:%d/ok\"}", "invalid", "$.id", "0"},
    {"{\"url\":\"http://127.0.0.1:%d/ok\",\"method\":\"CONNECT\"}", "invalid", "$.method", "0"},
    {"{\"url\":\"http://127.0.0.1:%d/ok\",\"headers\":{\"webhook-id\":\"x\"}}", "invalid",
     "$.headers.webhook-id", "0"},
    {"{\"id\":\"s500\",\"max_attempts\":2,\"url\":\"http://127.0.0.1:%d/status/500\"}", "exhausted",
     "2 attempts, last: HTTP 500", "500"},
    {"{\"id\":\"s404\",\"url\":\"http://127.0.0.1:%d/status/404\"}", "permanent", "HTTP 404",
     "404"},
    {"{\"id\":\"s302\",\"url\":\"http://127.0.0.1:%d/status/302\"}", "permanent", "HTTP 302",
     "302"},
    {"{\"id\":\"s410\",\"url\":\"http://127.0.0.1:%d/status/410\"}", "gone", "HTTP 410", "410"},
    {"{\"id\":\"meta\",\"url\":\"http://169.254.169.254/latest/meta-data\"}", "blocked",
     "link-local", "0"},
    {"{\"id\":\"private\",\"url\":\"http://10.0.0.1:%d/ok\"}", "blocked", "private", "0"},
    {"{\"id\":\"expired\",\"url\":\"http://127.0.0.1:%d/"
     "ok\",\"expires_at\":\"2001-01-01T00:00:00Z\"}",
     "expired", "expired", "0"},
};
#define N_BAD (sizeof(bad_jobs) / sizeof(bad_jobs[0]))

// Replaces the first "%d" in `f` with the sink's port.
static char *fmt_port(const char *f)
{
    const char *at = strstr(f, "%d");
    char *s = NULL;
    int rc = at ? asprintf(&s, "%.*s%d%s", (int)(at - f), f, hk_sink_port(sink), at + 2)
                : asprintf(&s, "%s", f);
    if (rc < 0)
        abort();
    return s;
}

typedef struct progress {
    uint64_t want_ok;
    size_t want_dlq;
} progress_t;

static int sink_done(void *arg)
{
    progress_t *pr = arg;
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    return st.unique_ok >= pr->want_ok;
}

static int dlq_done(void *arg)
{
    progress_t *pr = arg;
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    return n >= pr->want_dlq;
}

// 20,000 jobs over 8 partitions, half with ids and half with derived ones, plus
// malformed and failing jobs: each good job delivered exactly once with valid
// headers, each bad one dead-lettered with its class and reason, offsets at the end.
START_TEST(test_jobs_delivered_once_and_bad_jobs_dead_lettered)
{
    size_t n = N_JOBS + N_BAD;
    char **values = calloc(n, sizeof(char *));
    char **keys = calloc(n, sizeof(char *));
    int port = hk_sink_port(sink);
    for (size_t i = 0; i < N_JOBS; i++) {
        if (i % 2 == 0)
            ck_assert(
                asprintf(
                    &values[i],
                    "{\"id\":\"job-%zu\",\"tenant\":\"t%zu\",\"url\":\"http://127.0.0.1:%d/ok\","
                    "\"body\":{\"n\":%zu}}",
                    i, i % 5, port, i) > 0);
        else
            ck_assert(
                asprintf(&values[i],
                         "{\"tenant\":\"t%zu\",\"url\":\"http://localhost:%d/ok\","
                         "\"method\":\"PUT\",\"headers\":{\"X-Seq\":\"%zu\"},\"body\":{\"n\":%zu}}",
                         i % 5, port, i, i) > 0);
        ck_assert(asprintf(&keys[i], "key-%zu", i % 97) > 0);
    }
    for (size_t i = 0; i < N_BAD; i++) {
        values[N_JOBS + i] = fmt_port(bad_jobs[i].value);
        ck_assert(asprintf(&keys[N_JOBS + i], "bad-%zu", i) > 0);
    }
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, keys, n), n);

    hk_th_proc_t hookd;
    const char *log = "it_deliver_hookd.log";
    const char *conf = "it_deliver_hookd.conf";
    FILE *cf = fopen(conf, "w");
    ck_assert_ptr_nonnull(cf);
    fprintf(cf, "[tenant \"t1\"]\nsecret = %s\n", T1_SECRET);
    fclose(cf);
    unlink(log);
    // Tenants t0, t2, t3, t4 have no section: they sign with the default secret.
    char *env[] = {"HOOKD_RETRY_SCHEDULE=100ms", "HOOKD_SIGNING_UNKNOWN_TENANT=default", NULL};
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, conf, log), 0);

    progress_t pr = {.want_ok = N_JOBS, .want_dlq = N_BAD};
    int64_t t0 = hk_th_now_ms();
    ck_assert_msg(hk_th_wait_for(sink_done, &pr, 180000), "not every job was delivered");
    double secs = (double)(hk_th_now_ms() - t0) / 1000.0;
    ck_assert_msg(hk_th_wait_for(dlq_done, &pr, 30000), "dead letters missing");
    ck_assert_msg(hk_th_wait_lag_zero(brokers, "hookd", "jobs", 30000),
                  "committed offsets did not reach the end");

    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    printf("it_deliver: %llu delivered in %.1fs (incl. group join), duplicates %llu, "
           "bad signatures %llu, bad headers %llu\n",
           (unsigned long long)st.unique_ok, secs, (unsigned long long)st.duplicate_ok,
           (unsigned long long)st.bad_signature, (unsigned long long)st.bad_headers);
    ck_assert_uint_eq(st.unique_ok, N_JOBS);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(st.bad_headers, 0);

    // Every request: the right method, job id, and the job's own headers.
    hk_sink_req_t *reqs;
    size_t nreq = hk_sink_reqs(sink, &reqs);
    size_t derived = 0;
    for (size_t i = 0; i < nreq; i++) {
        hk_sink_req_t *r = &reqs[i];
        if (r->status != 200)
            continue;
        json_t *body = json_loads(r->body, 0, NULL);
        ck_assert_msg(body != NULL, "body not JSON: %s", r->body);
        json_int_t seq = json_integer_value(json_object_get(body, "n"));
        json_decref(body);
        ck_assert_str_eq(r->content_type, "application/json");
        ck_assert_int_eq(r->sig, 1);
        // The tenant's own secret signs its jobs; the default secret signs the rest.
        char ts[24];
        snprintf(ts, sizeof(ts), "%lld", (long long)r->webhook_ts);
        int t1 = seq % 5 == 1;
        ck_assert_int_eq(
            hk_sign_verify(T1_SECRET, r->webhook_id, ts, r->body, r->body_len, r->signature), t1);
        ck_assert_int_eq(
            hk_sign_verify(HK_TH_SECRET, r->webhook_id, ts, r->body, r->body_len, r->signature),
            !t1);
        if (seq % 2 == 0) {
            char want[64];
            snprintf(want, sizeof(want), "job-%lld", (long long)seq);
            ck_assert_str_eq(r->webhook_id, want);
            ck_assert_str_eq(r->method, "POST");
        } else {
            // <topic>-<partition>-<offset>, the topic as the cluster knows it.
            char prefix[320];
            snprintf(prefix, sizeof(prefix), "%s-", hk_th_kafka_name("jobs"));
            ck_assert_msg(strncmp(r->webhook_id, prefix, strlen(prefix)) == 0, "derived id %s",
                          r->webhook_id);
            ck_assert_str_eq(r->method, "PUT");
            derived++;
        }
    }
    ck_assert_uint_eq(derived, N_JOBS / 2);
    hk_sink_reqs_free(reqs, nreq);

    // Dead letters: original value and key, class, reason, status, source position.
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    ck_assert_uint_eq(nrec, N_BAD);
    for (size_t i = 0; i < N_BAD; i++) {
        const hk_th_record_t *rec = NULL;
        for (size_t j = 0; j < nrec; j++)
            if (strcmp(recs[j].value, values[N_JOBS + i]) == 0)
                rec = &recs[j];
        ck_assert_msg(rec != NULL, "no dead letter for %s", values[N_JOBS + i]);
        const char *cls = hk_th_header(rec, "hookd-error-class");
        const char *error = hk_th_header(rec, "hookd-error");
        ck_assert_msg(cls && strcmp(cls, bad_jobs[i].cls) == 0, "%s: class %s, want %s",
                      values[N_JOBS + i], cls ? cls : "(none)", bad_jobs[i].cls);
        ck_assert_msg(error && strstr(error, bad_jobs[i].error), "%s: error \"%s\", want \"%s\"",
                      values[N_JOBS + i], error ? error : "(none)", bad_jobs[i].error);
        ck_assert_str_eq(hk_th_header(rec, "hookd-http-status"), bad_jobs[i].status);
        ck_assert_str_eq(hk_th_header(rec, "hookd-original-topic"), hk_th_kafka_name("jobs"));
        ck_assert_ptr_nonnull(hk_th_header(rec, "hookd-original-partition"));
        ck_assert_ptr_nonnull(hk_th_header(rec, "hookd-original-offset"));
        ck_assert_ptr_nonnull(hk_th_header(rec, "hookd-attempts"));
        ck_assert_ptr_nonnull(rec->key);
        ck_assert_str_eq(rec->key, keys[N_JOBS + i]);
    }
    hk_th_records_free(recs, nrec);

    // Drain on SIGTERM: exit 0.
    int status = hk_th_stop(&hookd, 20000);
    ck_assert_msg(hk_th_exited_ok(status), "hookd did not exit 0 after SIGTERM (status %d)",
                  status);

    // The log: one JSON object per line, with periodic summaries.
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, summaries = 0;
    while (getline(&line, &cap, f) >= 0) {
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(json_is_object(j), "log line is not a JSON object: %s", line);
        ck_assert_ptr_nonnull(json_object_get(j, "event"));
        if (strcmp(json_string_value(json_object_get(j, "event")), "summary") == 0)
            summaries++;
        json_decref(j);
        lines++;
    }
    free(line);
    fclose(f);
    ck_assert_int_gt(lines, 0);
    ck_assert_int_gt(summaries, 0);

    for (size_t i = 0; i < n; i++) {
        free(values[i]);
        free(keys[i]);
    }
    free(values);
    free(keys);
}
END_TEST

static int dlq_count(void *arg)
{
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    return n >= *(size_t *)arg;
}

// The guard judges the address curl connects to, not the URL's text: a name or a
// numeric form that ends up on loopback is refused when loopback is not allowed,
// and nothing reaches the sink.
START_TEST(test_guard_judges_the_address_connected)
{
    const char *forms[] = {"localhost",          "127.1", "2130706433", "0x7f000001",
                           "[::ffff:127.0.0.1]", "[::1]"};
    size_t n = sizeof(forms) / sizeof(forms[0]);
    char **values = calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        ck_assert(asprintf(&values[i], "{\"id\":\"guard-%zu\",\"url\":\"http://%s:%d/ok\"}", i,
                           forms[i], hk_sink_port(sink)) > 0);
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, NULL, n), n);

    char *env[] = {"HOOKD_DELIVERY_ALLOW_CIDRS=", NULL};
    hk_th_proc_t hookd;
    unlink("it_deliver_guard.log");
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, "it_deliver_guard.log"), 0);
    ck_assert_msg(hk_th_wait_for(dlq_count, &n, 60000), "blocked jobs not dead-lettered");

    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    ck_assert_uint_eq(nrec, n);
    for (size_t i = 0; i < nrec; i++) {
        ck_assert_str_eq(hk_th_header(&recs[i], "hookd-error-class"), "blocked");
        ck_assert_msg(strstr(hk_th_header(&recs[i], "hookd-error"), "loopback"), "%s",
                      hk_th_header(&recs[i], "hookd-error"));
    }
    hk_th_records_free(recs, nrec);
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    ck_assert_uint_eq(st.requests, 0);

    ck_assert(hk_th_exited_ok(hk_th_stop(&hookd, 20000)));
    for (size_t i = 0; i < n; i++)
        free(values[i]);
    free(values);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_deliver");
    TCase *tc = tcase_create("e2e");
    tcase_set_timeout(tc, 400);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_jobs_delivered_once_and_bad_jobs_dead_lettered);
    tcase_add_test(tc, test_guard_judges_the_address_connected);
    suite_add_tcase(s, tc);
    return s;
}
