// Dead-letter and retry records that do not fit their topic. A record the
// producer or the broker refuses as too large must not be produced again forever
// (its source offset, and every later commit of its partition, would be held):
// hookd raises librdkafka's message.max.bytes to fit limits.max_job_bytes, and a
// record still refused becomes one that fits (queue/producer.c, shrink()).
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

static hk_th_scene_t sc;
static hk_sink_t *sink;
static char conf_path[256];

static void setup(void)
{
    const char *topics[] = {"jobs:2", "jobs.dlq:2", "jobs.retry:2", NULL};
    ck_assert_int_eq(hk_th_scene_start(&sc, topics), 0);
    char err[256];
    sink = hk_th_scene_sink(&sc, (hk_sink_opts_t){.threads = 4}, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    conf_path[0] = '\0';
}

static void teardown(void)
{
    hk_th_scene_stop(&sc, 10000);
    if (conf_path[0])
        unlink(conf_path);
}

// The harness's producer keeps librdkafka's 1,000,000-byte limit: this one
// takes records up to 2 MB.
static void produce_big(const char *value)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", sc.brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "message.max.bytes", "2000000", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(rk != NULL, "producer: %s", err);
    rd_kafka_resp_err_t e =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(hk_th_kafka_name("jobs")), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    ck_assert_msg(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
    ck_assert_int_eq(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

// A job of `size` bytes: `url`, and a string body padding it out.
static char *big_job(const char *id, const char *url, size_t size, const char *extra)
{
    char head[512];
    int n = snprintf(head, sizeof(head), "{\"id\":\"%s\",\"url\":\"%s\",%s\"body\":\"", id, url,
                     extra ? extra : "");
    char *v = malloc(size + 1);
    memcpy(v, head, (size_t)n);
    memset(v + n, 'a', size - (size_t)n - 2);
    memcpy(v + size - 2, "\"}", 3);
    return hk_th_hold_mem(v);
}

// Waits for the big job's offset to be committed, then for its one dead letter;
// returns it (held until teardown).
static hk_th_record_t *the_dead_letter(void)
{
    ck_assert_msg(hk_th_wait_lag_zero(sc.brokers, "hookd", "jobs", 120000),
                  "the big job's offset was never committed (its dead letter never went out)");
    size_t n;
    hk_th_record_t *recs = hk_th_wait_records(sc.brokers, "jobs.dlq", 1, 60000, &n);
    ck_assert_uint_eq(n, 1);
    return &recs[0];
}

static void start_hookd(const char *conf_text, char *const env[], const char *log)
{
    if (conf_text) {
        snprintf(conf_path, sizeof(conf_path), "/tmp/it_bigrecords-%d.conf", (int)getpid());
        FILE *f = fopen(conf_path, "w");
        ck_assert(f != NULL);
        fputs(conf_text, f);
        fclose(f);
    }
    ck_assert_int_eq(hk_th_scene_hookd(&sc, 0, env, conf_text ? conf_path : NULL, log), 0);
}

START_TEST(test_a_dead_letter_over_a_megabyte_is_produced_whole)
{
    // 1,040,000 bytes: under limits.max_job_bytes (1 MiB), over librdkafka's
    // default message.max.bytes; invalid (an ftp URL), so it is dead-lettered.
    start_hookd(NULL, NULL, "it_bigrecords_whole.log");
    produce_big(big_job("big-invalid", "ftp://127.0.0.1/x", 1040000, NULL));
    const hk_th_record_t *dl = the_dead_letter();
    ck_assert_str_eq(hk_th_header(dl, "hookd-error-class"), "invalid");
    ck_assert_uint_eq(dl->value_len, 1040000);
    ck_assert_ptr_null(hk_th_header(dl, "hookd-value-omitted"));
    printf("it_bigrecords whole: a 1040000-byte dead letter produced whole, lag 0\n");
}
END_TEST

// librdkafka's own limit lowered below the jobs: stands for a DLQ or retry topic
// whose broker-side max.message.bytes is smaller than limits.max_job_bytes.
static const char small_topics_conf[] = "[kafka]\nrdkafka.message.max.bytes = 100000\n";

START_TEST(test_a_dead_letter_too_large_for_its_topic_goes_without_its_value)
{
    start_hookd(small_topics_conf, NULL, "it_bigrecords_omitted.log");
    produce_big(big_job("big-invalid-2", "ftp://127.0.0.1/x", 300000, NULL));
    const hk_th_record_t *dl = the_dead_letter();
    ck_assert_str_eq(hk_th_header(dl, "hookd-error-class"), "invalid");
    ck_assert_uint_eq(dl->value_len, 0);
    ck_assert_str_eq(hk_th_header(dl, "hookd-value-omitted"), "300000");
    ck_assert_str_eq(hk_th_header(dl, "hookd-original-offset"), "0");
    ck_assert_int_eq(hk_th_log_count("it_bigrecords_omitted.log", "\"event\":\"record_too_large\""),
                     1);
}
END_TEST

START_TEST(test_a_retry_record_too_large_for_its_topic_is_dead_lettered)
{
    // Every retry goes through the retry topic (inline_max_ms below the first
    // delay); the record does not fit, so the job is dead-lettered as exhausted.
    char *env[] = {"HOOKD_RETRY_SCHEDULE=5s", "HOOKD_RETRY_INLINE_MAX_MS=100", NULL};
    start_hookd(small_topics_conf, env, "it_bigrecords_retry.log");
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/status/503", hk_sink_port(sink));
    produce_big(big_job("big-retry", url, 300000, "\"max_attempts\":3,"));
    const hk_th_record_t *dl = the_dead_letter();
    ck_assert_str_eq(hk_th_header(dl, "hookd-error-class"), "exhausted");
    const char *why = hk_th_header(dl, "hookd-error");
    ck_assert_msg(why && strstr(why, "refused by the retry topic") && strstr(why, "HTTP 503"),
                  "hookd-error: %s", why ? why : "(none)");
    ck_assert_str_eq(hk_th_header(dl, "hookd-value-omitted"), "300000");
    printf("it_bigrecords retry: %s\n", why);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_bigrecords");
    TCase *tc = tcase_create("bigrecords");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_dead_letter_over_a_megabyte_is_produced_whole);
    tcase_add_test(tc, test_a_dead_letter_too_large_for_its_topic_goes_without_its_value);
    tcase_add_test(tc, test_a_retry_record_too_large_for_its_topic_is_dead_lettered);
    suite_add_tcase(s, tc);
    return s;
}
