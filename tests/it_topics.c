// Start-up checks of the cluster and the topics (queue/topics.h): a missing
// topic is refused with its name, or created when kafka.create_topics is on; a
// cluster that does not answer fails start-up with a reason instead of a hang.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

static hk_sink_t *sink;
static hk_th_proc_t kafka;
static char brokers[512];
static char logpath[256];

static void setup(void)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 4};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    kafka.pid = 0;
    snprintf(logpath, sizeof(logpath), "/tmp/it_topics-%d.log", (int)getpid());
    unlink(logpath);
}

static void teardown(void)
{
    if (kafka.pid > 0)
        hk_th_kafka_stop(&kafka);
    hk_sink_stop(sink);
    hk_th_release_held();
}

static void start_kafka(const char *const topics[])
{
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
}

START_TEST(test_missing_dlq_topic_refused_with_its_name)
{
    const char *topics[] = {"jobs:4", "jobs.retry:4", NULL};
    start_kafka(topics);
    hk_th_proc_t hookd;
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, NULL, NULL, logpath), 0);
    int st = hk_th_wait(&hookd, 60000);
    if (st < 0)
        hk_th_stop(&hookd, 5000);
    ck_assert_msg(st >= 0, "hookd kept running with no dead-letter topic");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "hookd exited with status %d", st);
    ck_assert_msg(hk_th_log_count(logpath, ".dlq\\\" does not exist") == 1,
                  "no reason naming jobs.dlq in %s", logpath);
    ck_assert_int_eq(hk_th_log_count(logpath, "\"event\":\"started\""), 0);
}
END_TEST

START_TEST(test_missing_topics_created_when_configured)
{
    const char *topics[] = {"jobs:4", NULL};
    start_kafka(topics);
    char *env[] = {"HOOKD_KAFKA_CREATE_TOPICS=true", "HOOKD_KAFKA_TOPIC_PARTITIONS=3", NULL};
    hk_th_proc_t hookd;
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, logpath), 0);
    ck_assert_msg(hk_th_wait_for_log(logpath, "\"event\":\"started\"", 1, 60000),
                  "hookd did not start; see %s", logpath);
    ck_assert_int_eq(hk_th_log_count(logpath, "\"event\":\"topic_created\""), 2);

    // The created topics work: a permanent failure lands in the new DLQ topic
    // and a good job is delivered.
    char v1[256], v2[256];
    snprintf(v1, sizeof(v1), "{\"id\":\"gone-1\",\"url\":\"http://127.0.0.1:%d/status/404\"}",
             hk_sink_port(sink));
    snprintf(v2, sizeof(v2), "{\"id\":\"ok-1\",\"url\":\"http://127.0.0.1:%d/ok\"}",
             hk_sink_port(sink));
    char *values[] = {v1, v2};
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, NULL, 2), 2);
    ck_assert(hk_th_wait_unique_ok(sink, 1, 60000));
    hk_th_record_t *recs = NULL;
    size_t n = 0;
    for (int i = 0; i < 600 && n == 0; i++) {
        n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
        if (n == 0) {
            hk_th_records_free(recs, n);
            recs = NULL;
            hk_th_sleep_ms(100);
        }
    }
    hk_th_hold(HK_TH_HELD_RECS, recs, n);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(hk_th_header(&recs[0], "hookd-job-id"), "gone-1");
    ck_assert_msg(recs[0].partition >= 0 && recs[0].partition < 3, "partition %d",
                  (int)recs[0].partition);
    int st = hk_th_stop(&hookd, 30000);
    ck_assert_msg(hk_th_exited_ok(st), "hookd exit status %d", st);
}
END_TEST

START_TEST(test_silent_cluster_fails_start_with_a_reason)
{
    int port = hk_th_free_port();
    char b[64];
    snprintf(b, sizeof(b), "127.0.0.1:%d", port);
    char *env[] = {"HOOKD_KAFKA_STARTUP_TIMEOUT_MS=2000", NULL};
    hk_th_proc_t hookd;
    ck_assert_int_eq(hk_th_hookd_start(&hookd, b, env, NULL, logpath), 0);
    int st = hk_th_wait(&hookd, 60000);
    if (st < 0)
        hk_th_stop(&hookd, 5000);
    ck_assert_msg(st >= 0, "hookd hung on a cluster that does not answer");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "hookd exited with status %d", st);
    ck_assert_msg(hk_th_log_count(logpath, "did not answer within kafka.startup_timeout_ms") == 1,
                  "no reason in %s", logpath);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_topics");
    TCase *tc = tcase_create("topics");
    tcase_set_timeout(tc, 180);
    tcase_add_checked_fixture(tc, setup, teardown);
    // librdkafka's mock cluster creates every topic a client asks about, so a
    // missing topic exists only on a real broker (HK_TEST_KAFKA=real, with
    // auto.create.topics.enable=false as scripts/kafka starts it).
    const char *kind = getenv("HK_TEST_KAFKA");
    if (kind && strcmp(kind, "real") == 0) {
        tcase_add_test(tc, test_missing_dlq_topic_refused_with_its_name);
        tcase_add_test(tc, test_missing_topics_created_when_configured);
    }
    tcase_add_test(tc, test_silent_cluster_fails_start_with_a_reason);
    suite_add_tcase(s, tc);
    return s;
}
