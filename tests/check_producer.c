// The producer of hookd's own records (queue/producer.c) against librdkafka's mock
// cluster in this process: dead letters and retry records land on their topics
// with their hookd-* headers, every record is handed back through on_done once
// acknowledged, and a record too large for its topic becomes one that fits
// instead of being produced again forever (it_bigrecords runs the same through
// hookd end to end).
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "queue/mockkafka.h"
#include "queue/producer.h"
#include "retry/classify.h"
#include "base/clock.h"
#include "model/task.h"

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"

#define RETRY_PARTS 8

static hk_mockkafka_t *mk;
static const char *brokers;
static hk_config_t *cfg;
static hk_producer_t *prod;
static char conf_path[64];

// Tasks handed back through on_done, in order.
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static hk_task_t *done[16];
static size_t done_cnt;

static void on_done(hk_task_t *task, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&done_lock);
    if (done_cnt < sizeof(done) / sizeof(done[0]))
        done[done_cnt] = task;
    done_cnt++;
    pthread_mutex_unlock(&done_lock);
}

static int done_reached(void *arg)
{
    pthread_mutex_lock(&done_lock);
    size_t n = done_cnt;
    pthread_mutex_unlock(&done_lock);
    return n >= *(size_t *)arg;
}

// A producer with `kafka_extra` in the [kafka] section of its config file.
static void start(const char *kafka_extra)
{
    const char *topics[] = {"jobs", "jobs.dlq", "jobs.retry"};
    const int parts[] = {2, 2, RETRY_PARTS};
    char err[256];
    mk = hk_mockkafka_new(1, topics, parts, 3, err, sizeof(err));
    ck_assert_msg(mk != NULL, "mock cluster: %s", err);
    brokers = hk_mockkafka_bootstraps(mk);
    snprintf(conf_path, sizeof(conf_path), "/tmp/check_producer-%d.conf", (int)getpid());
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[kafka]\ntopic = jobs\n%s", kafka_extra ? kafka_extra : "");
    fclose(f);
    char *envp[] = {NULL};
    cfg = hk_config_load(conf_path, envp, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "config: %s", err);
    prod = hk_producer_new(cfg, brokers, on_done, NULL, err, sizeof(err));
    ck_assert_msg(prod != NULL, "producer: %s", err);
}

static void teardown(void)
{
    if (prod)
        hk_producer_destroy(prod, 5000);
    prod = NULL;
    for (size_t i = 0; i < done_cnt && i < sizeof(done) / sizeof(done[0]); i++)
        hk_task_destroy(done[i]);
    done_cnt = 0;
    hk_config_destroy(cfg);
    cfg = NULL;
    hk_mockkafka_destroy(mk);
    mk = NULL;
    if (conf_path[0])
        unlink(conf_path);
    conf_path[0] = '\0';
    hk_th_release_held();
}

// A task from jobs[1]@7 whose last attempt failed with a 503.
static hk_task_t *failed_task(size_t value_len)
{
    char *value = malloc(value_len);
    ck_assert_ptr_nonnull(value);
    memset(value, 'v', value_len);
    hk_task_t *t = hk_task_new("jobs", 1, 7, 1, "key-7", 5, value, value_len);
    free(value);
    ck_assert_ptr_nonnull(t);
    snprintf(t->origin_topic, sizeof(t->origin_topic), "jobs");
    t->origin_partition = 1;
    t->origin_offset = 7;
    t->attempts = 3;
    t->first_attempt_ms = hk_clock_wall_ms() - 60000;
    t->http_status = 503;
    t->outcome = HK_OUTCOME_EXHAUSTED;
    snprintf(t->error, sizeof(t->error), "HTTP 503");
    return t;
}

// The records of `topic`, waiting up to 10 s for at least `n`; held until teardown.
static hk_th_record_t *records(const char *topic, size_t n, size_t *got)
{
    return hk_th_wait_records(brokers, topic, n, 10000, got);
}

static void wait_done(size_t n)
{
    ck_assert_msg(hk_th_wait_for(done_reached, &n, 20000), "%zu of %zu records acknowledged",
                  done_cnt, n);
    ck_assert_uint_eq(hk_producer_outstanding(prod), 0);
}

START_TEST(test_dead_letter_keeps_key_value_and_carries_its_headers)
{
    start(NULL);
    hk_task_t *t = failed_task(64);
    hk_producer_dead_letter(prod, t);
    wait_done(1);
    ck_assert_ptr_eq(done[0], t); // handed back once acknowledged, the same task
    size_t n;
    hk_th_record_t *r = records("jobs.dlq", 1, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(r[0].key, "key-7");
    ck_assert_uint_eq(r[0].value_len, 64);
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-error-class"), "exhausted");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-error"), "HTTP 503");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-http-status"), "503");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-attempts"), "3");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-original-topic"), "jobs");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-original-partition"), "1");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-original-offset"), "7");
    ck_assert_ptr_nonnull(hk_th_header(&r[0], "hookd-first-attempt-at"));
    ck_assert_ptr_null(hk_th_header(&r[0], "hookd-attempt")); // retry records only
    ck_assert_ptr_null(hk_th_header(&r[0], "hookd-value-omitted"));
    size_t retry_n;
    records("jobs.retry", 0, &retry_n);
    ck_assert_uint_eq(retry_n, 0);
}
END_TEST

START_TEST(test_retry_record_goes_to_the_partition_of_its_delay_tier)
{
    start(NULL);
    // Due in 12 s: floor(log2(12)) = 3, so partition 3 of 8; due in 1 s: tier 0.
    int64_t now = hk_clock_wall_ms();
    hk_task_t *later = failed_task(16), *soon = failed_task(16);
    hk_producer_retry(prod, later, now + 12000);
    hk_producer_retry(prod, soon, now + 1000);
    wait_done(2);
    size_t n;
    hk_th_record_t *r = records("jobs.retry", 2, &n);
    ck_assert_uint_eq(n, 2);
    char due[32];
    for (size_t i = 0; i < n; i++) {
        const char *at = hk_th_header(&r[i], "hookd-due-at");
        ck_assert_ptr_nonnull(at);
        int is_later = atoll(at) == now + 12000;
        snprintf(due, sizeof(due), "%lld", (long long)(is_later ? now + 12000 : now + 1000));
        ck_assert_str_eq(at, due);
        ck_assert_int_eq(r[i].partition, is_later ? 3 : 0);
        ck_assert_str_eq(hk_th_header(&r[i], "hookd-attempt"), "3");
        ck_assert_str_eq(hk_th_header(&r[i], "hookd-last-error"), "HTTP 503");
        ck_assert_ptr_null(hk_th_header(&r[i], "hookd-error-class")); // dead letters only
    }
    size_t dlq_n;
    records("jobs.dlq", 0, &dlq_n);
    ck_assert_uint_eq(dlq_n, 0);
}
END_TEST

// librdkafka's own limit lowered below the job: stands for a DLQ or retry topic
// whose max.message.bytes is smaller than limits.max_job_bytes.
static const char small_limit[] = "rdkafka.message.max.bytes = 100000\n";

START_TEST(test_dead_letter_too_large_goes_without_its_value)
{
    start(small_limit);
    hk_task_t *t = failed_task(300000);
    hk_producer_dead_letter(prod, t);
    wait_done(1);
    ck_assert_int_eq(t->value_omitted, 1);
    size_t n;
    hk_th_record_t *r = records("jobs.dlq", 1, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(r[0].value_len, 0);
    ck_assert_str_eq(r[0].key, "key-7");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-value-omitted"), "300000");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-error-class"), "exhausted");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-original-offset"), "7");
}
END_TEST

START_TEST(test_retry_record_too_large_is_dead_lettered_as_exhausted)
{
    start(small_limit);
    hk_task_t *t = failed_task(300000);
    t->outcome = HK_OUTCOME_RETRYABLE;
    hk_producer_retry(prod, t, hk_clock_wall_ms() + 5000);
    wait_done(1);
    size_t n;
    hk_th_record_t *r = records("jobs.dlq", 1, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-error-class"), "exhausted");
    const char *why = hk_th_header(&r[0], "hookd-error");
    ck_assert_msg(why && strstr(why, "refused by the retry topic") && strstr(why, "HTTP 503"),
                  "hookd-error: %s", why ? why : "(none)");
    ck_assert_str_eq(hk_th_header(&r[0], "hookd-value-omitted"), "300000");
    size_t retry_n;
    records("jobs.retry", 0, &retry_n);
    ck_assert_uint_eq(retry_n, 0);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("producer");
    TCase *tc = tcase_create("records");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_dead_letter_keeps_key_value_and_carries_its_headers);
    tcase_add_test(tc, test_retry_record_goes_to_the_partition_of_its_delay_tier);
    suite_add_tcase(s, tc);
    tc = tcase_create("too_large");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_dead_letter_too_large_goes_without_its_value);
    tcase_add_test(tc, test_retry_record_too_large_is_dead_lettered_as_exhausted);
    suite_add_tcase(s, tc);
    return s;
}
