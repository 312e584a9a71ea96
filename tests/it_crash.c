// Crash: SIGKILL hookd in the middle of a 20,000-job run, start it again. Every job
// is delivered at least once, and every repeat carries the webhook-id of its first
// delivery (including ids derived from topic/partition/offset).
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

#define N_JOBS 20000

static hk_sink_t *sink;
static hk_th_proc_t kafka;
static char brokers[512];

static void setup(void)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 16};
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

START_TEST(test_sigkill_mid_run_loses_nothing_and_keeps_ids)
{
    char **values = calloc(N_JOBS, sizeof(char *));
    char **keys = calloc(N_JOBS, sizeof(char *));
    int port = hk_sink_port(sink);
    for (size_t i = 0; i < N_JOBS; i++) {
        // /slow/5 keeps the run long enough to kill it in the middle.
        if (i % 2 == 0)
            ck_assert(asprintf(&values[i],
                               "{\"id\":\"job-%zu\",\"url\":\"http://127.0.0.1:%d/slow/5\","
                               "\"body\":{\"n\":%zu}}",
                               i, port, i) > 0);
        else
            ck_assert(asprintf(&values[i],
                               "{\"url\":\"http://127.0.0.1:%d/slow/5\",\"body\":{\"n\":%zu}}",
                               port, i) > 0);
        ck_assert(asprintf(&keys[i], "key-%zu", i % 101) > 0);
    }
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, keys, N_JOBS), N_JOBS);

    char *env[] = {"HOOKD_DELIVERY_THREADS=2", "HOOKD_DELIVERY_MAX_TRANSFERS_PER_THREAD=16", NULL};
    hk_th_proc_t hookd;
    unlink("it_crash_hookd1.log");
    unlink("it_crash_hookd2.log");
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, "it_crash_hookd1.log"), 0);

    uint64_t kill_at = N_JOBS / 4;
    ck_assert_msg(hk_th_wait_unique_ok(sink, kill_at, 120000), "hookd never got going");
    hk_th_kill(&hookd, SIGKILL);
    ck_assert_int_ne(hk_th_wait(&hookd, 10000), -1);
    hk_sink_stats_t at_kill;
    hk_sink_stats(sink, &at_kill);
    ck_assert_msg(at_kill.unique_ok < N_JOBS, "the run ended before the kill: test proves nothing");
    int64_t lag_at_kill = hk_th_group_lag(brokers, "hookd", "jobs");

    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, "it_crash_hookd2.log"), 0);
    uint64_t all = N_JOBS;
    ck_assert_msg(hk_th_wait_unique_ok(sink, all, 240000), "jobs lost after the crash");
    ck_assert_msg(hk_th_wait_lag_zero(brokers, "hookd", "jobs", 30000),
                  "offsets did not reach the end");

    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    printf("it_crash: killed at %llu delivered (uncommitted %lld), after restart %llu unique, "
           "%llu duplicates, %llu bad signatures\n",
           (unsigned long long)at_kill.unique_ok, (long long)lag_at_kill,
           (unsigned long long)st.unique_ok, (unsigned long long)st.duplicate_ok,
           (unsigned long long)st.bad_signature);
    ck_assert_uint_eq(st.unique_ok, N_JOBS);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(st.bad_headers, 0);
    // Duplicates can only come from what was not committed when hookd died.
    ck_assert_int_le((int64_t)st.duplicate_ok, lag_at_kill);

    // Every delivery of job n carries the same webhook-id.
    char **first_id = calloc(N_JOBS, sizeof(char *));
    hk_sink_req_t *reqs;
    size_t nreq = hk_sink_reqs(sink, &reqs);
    size_t repeats = 0;
    for (size_t i = 0; i < nreq; i++) {
        if (reqs[i].status != 200)
            continue;
        json_t *body = json_loads(reqs[i].body, 0, NULL);
        json_int_t seq = json_integer_value(json_object_get(body, "n"));
        json_decref(body);
        ck_assert(seq >= 0 && seq < N_JOBS);
        if (!first_id[seq]) {
            first_id[seq] = strdup(reqs[i].webhook_id);
        } else {
            repeats++;
            ck_assert_msg(strcmp(first_id[seq], reqs[i].webhook_id) == 0,
                          "job %lld redelivered as %s, first as %s", (long long)seq,
                          reqs[i].webhook_id, first_id[seq]);
        }
    }
    ck_assert_uint_eq(repeats, st.duplicate_ok);
    for (size_t i = 0; i < N_JOBS; i++) {
        ck_assert_ptr_nonnull(first_id[i]);
        free(first_id[i]);
    }
    free(first_id);
    hk_sink_reqs_free(reqs, nreq);

    ck_assert_msg(hk_th_exited_ok(hk_th_stop(&hookd, 20000)), "hookd did not exit 0 after SIGTERM");
    for (size_t i = 0; i < N_JOBS; i++) {
        free(values[i]);
        free(keys[i]);
    }
    free(values);
    free(keys);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_crash");
    hk_ck_case(s, "crash", 500, setup, teardown, test_sigkill_mid_run_loses_nothing_and_keeps_ids);
    return s;
}
