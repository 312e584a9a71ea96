// The hookd-* record headers (queue/headers.c): what the producer writes reads
// back the same, and hookd-attempt and hookd-due-at are taken with bounds,
// whatever a producer wrote into them.
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/headers.h"
#include "retry/classify.h"
#include "model/task.h"

#include "tests/support/ck_main.h"

#define NOW      1790000000000LL // a wall clock in ms (2026)
#define MAX_WAIT 3600000LL       // retry.max_delay_ms's default

// hk_headers_attempt() of a NUL-terminated value (NULL: absent).
static int attempts(const char *v, int *clamped)
{
    return hk_headers_attempt(v, v ? strlen(v) : 0, clamped);
}

static int64_t wait_of(const char *v, int *clamped)
{
    return hk_headers_wait_ms(v, v ? strlen(v) : 0, NOW, MAX_WAIT, clamped);
}

#define ck_attempts(v, want, want_clamped)                                                         \
    do {                                                                                           \
        int c_ = -1;                                                                               \
        int got_ = attempts((v), &c_);                                                             \
        ck_assert_msg(got_ == (want) && c_ == (want_clamped),                                      \
                      "hookd-attempt \"%s\": %d (clamped %d), want %d (clamped %d)", (v), got_,    \
                      c_, (want), (want_clamped));                                                 \
    } while (0)

#define ck_wait(v, want, want_clamped)                                                             \
    do {                                                                                           \
        int c_ = -1;                                                                               \
        int64_t got_ = wait_of((v), &c_);                                                          \
        ck_assert_msg(got_ == (want) && c_ == (want_clamped),                                      \
                      "hookd-due-at \"%s\": wait %lld (clamped %d), want %lld (clamped %d)", (v),  \
                      (long long)got_, c_, (long long)(want), (want_clamped));                     \
    } while (0)

START_TEST(test_attempt_is_taken_within_0_to_max)
{
    int c = -1;
    ck_assert_int_eq(hk_headers_attempt(NULL, 0, &c), 0); // absent: a new job
    ck_assert_int_eq(c, 0);
    ck_attempts("0", 0, 0);
    ck_attempts("7", 7, 0);
    ck_attempts("100", HK_HEADERS_ATTEMPTS_MAX, 0); // the maximum, as it stands
    ck_attempts("101", HK_HEADERS_ATTEMPTS_MAX, 1); // one past it
    ck_attempts("2147483648", HK_HEADERS_ATTEMPTS_MAX, 1);
    ck_attempts("9223372036854775807", HK_HEADERS_ATTEMPTS_MAX, 1);
    ck_attempts("-1", 0, 1);
    ck_attempts("-9223372036854775808", 0, 1);
    // Unreadable: counted as a new job.
    const char *bad[] = {"",
                         "9223372036854775808",
                         "99999999999999999999",
                         "1e3",
                         " 5",
                         "5 ",
                         "+5",
                         "0x10",
                         "-",
                         "--1",
                         "5\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_attempts(bad[i], 0, 1);
    // The value is `len` bytes, not a C string.
    ck_assert_int_eq(hk_headers_attempt("12345", 2, &c), 12);
    ck_assert_int_eq(c, 0);
    ck_assert_int_eq(hk_headers_attempt("3\0"
                                        "00",
                                        4, &c),
                     0);
    ck_assert_int_eq(c, 1);
    ck_assert_int_eq(hk_headers_attempt("5", 1, NULL), 5);
}
END_TEST

START_TEST(test_due_at_waits_at_most_max_delay)
{
    char v[32];
    int c = -1;
    ck_assert_int_eq(hk_headers_wait_ms(NULL, 0, NOW, MAX_WAIT, &c), 0); // absent: now
    ck_assert_int_eq(c, 0);
    snprintf(v, sizeof(v), "%lld", NOW - 5);
    ck_wait(v, 0, 0); // past
    snprintf(v, sizeof(v), "%lld", NOW);
    ck_wait(v, 0, 0);
    snprintf(v, sizeof(v), "%lld", NOW + 1);
    ck_wait(v, 1, 0);
    snprintf(v, sizeof(v), "%lld", NOW + MAX_WAIT); // the furthest hookd schedules
    ck_wait(v, MAX_WAIT, 0);
    snprintf(v, sizeof(v), "%lld", NOW + MAX_WAIT + 1); // one past it
    ck_wait(v, MAX_WAIT, 1);
    ck_wait("9223372036854775807", MAX_WAIT, 1); // the year 292 million
    ck_wait("-9223372036854775808", 0, 0);       // long past: no overflow
    ck_wait("0", 0, 0);
    const char *bad[] = {"", "9223372036854775808", "soon", "1.5e12", "-", "17900000000000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_wait(bad[i], 0, 1);
    // retry.max_delay_ms = 0: everything is due now.
    snprintf(v, sizeof(v), "%lld", NOW + 10);
    ck_assert_int_eq(hk_headers_wait_ms(v, strlen(v), NOW, 0, &c), 0);
    ck_assert_int_eq(c, 1);
    // The furthest a wall clock and a due time can be apart.
    ck_assert_int_eq(hk_headers_wait_ms("9223372036854775807", 19, 0, INT64_MAX, &c), INT64_MAX);
    ck_assert_int_eq(c, 0);
}
END_TEST

// A retry-topic task as the pipeline hands it to the producer. *job is the
// task's job (its id only); the caller unhooks it before hk_task_destroy.
static hk_task_t *retry_task(hk_job_t *job)
{
    hk_task_t *t = hk_task_new("jobs", 3, 41, 1, "k", 1, "{}", 2);
    ck_assert_ptr_nonnull(t);
    snprintf(t->origin_topic, sizeof(t->origin_topic), "jobs");
    t->origin_partition = 3;
    t->origin_offset = 41;
    t->attempts = 4;
    t->first_attempt_ms = NOW - 90000;
    t->retry_due_wall_ms = NOW + 30000;
    t->to_retry_topic = 1;
    snprintf(t->error, sizeof(t->error), "HTTP 503 from 127.0.0.1:8080");
    t->job = job;
    return t;
}

static hk_headers_t round_trip(const hk_task_t *t)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(12);
    hk_headers_encode(hdrs, t);
    hk_headers_t h;
    hk_headers_decode(hdrs, NOW, MAX_WAIT, &h);
    // The raw values point into hdrs: gone with it.
    h.attempt_raw = h.due_raw = NULL;
    rd_kafka_headers_destroy(hdrs);
    return h;
}

START_TEST(test_retry_record_reads_back_as_written)
{
    hk_job_t job = {.id = "order-77"};
    hk_task_t *t = retry_task(&job);
    hk_headers_t h = round_trip(t);
    ck_assert_int_eq(h.attempt, 4);
    ck_assert_int_eq(h.wait_ms, 30000);
    ck_assert_int_eq(h.attempt_clamped, 0);
    ck_assert_int_eq(h.due_clamped, 0);
    ck_assert_str_eq(h.last_error, "HTTP 503 from 127.0.0.1:8080");
    ck_assert_int_eq(h.first_attempt_ms, NOW - 90000);
    ck_assert_str_eq(h.original_topic, "jobs");
    ck_assert_int_eq(h.original_partition, 3);
    ck_assert_int_eq(h.original_offset, 41);
    ck_assert_str_eq(h.job_id, "order-77");
    // A retry record carries none of the dead letter's headers.
    ck_assert_str_eq(h.error_class, "");
    ck_assert_str_eq(h.error, "");
    ck_assert_int_eq(h.attempts, 0);
    ck_assert_str_eq(h.batch_id, "");
    ck_assert_int_eq(h.batch_index, -1);
    ck_assert_int_eq(h.value_omitted, 0);
    t->job = NULL;
    hk_task_destroy(t);
}
END_TEST

START_TEST(test_dead_letter_reads_back_as_written)
{
    hk_task_t *t = retry_task(NULL);
    t->to_retry_topic = 0;
    t->outcome = HK_OUTCOME_EXHAUSTED;
    t->http_status = 503;
    t->attempts = HK_HEADERS_ATTEMPTS_MAX;
    t->first_attempt_ms = 0; // never attempted: no hookd-first-attempt-at
    t->origin_partition = INT32_MAX;
    t->origin_offset = INT64_MAX;
    t->batch_id = "b-2026-12";
    t->item_idx = 4999;
    t->value_omitted = 1;
    t->value_len = 300000;
    hk_headers_t h = round_trip(t);
    ck_assert_str_eq(h.error_class, "exhausted");
    ck_assert_str_eq(h.error, "HTTP 503 from 127.0.0.1:8080");
    ck_assert_int_eq(h.http_status, 503);
    ck_assert_int_eq(h.attempts, HK_HEADERS_ATTEMPTS_MAX);
    ck_assert_int_eq(h.first_attempt_ms, 0);
    ck_assert_str_eq(h.original_topic, "jobs");
    ck_assert_int_eq(h.original_partition, INT32_MAX);
    ck_assert_int_eq(h.original_offset, INT64_MAX);
    ck_assert_str_eq(h.job_id, ""); // not a valid job: no hookd-job-id
    ck_assert_str_eq(h.batch_id, "b-2026-12");
    ck_assert_int_eq(h.batch_index, 4999);
    ck_assert_int_eq(h.value_omitted, 300000);
    // None of the retry record's.
    ck_assert_int_eq(h.attempt, 0);
    ck_assert_int_eq(h.wait_ms, 0);
    ck_assert_str_eq(h.last_error, "");
    hk_task_destroy(t);
}
END_TEST

// Each outcome's name is its hookd-error-class, as the DLQ's readers match it.
START_TEST(test_every_error_class_reads_back)
{
    hk_task_t *t = retry_task(NULL);
    t->to_retry_topic = 0;
    for (int o = 0; o < HK_OUTCOME__CNT; o++) {
        t->outcome = (hk_outcome_t)o;
        hk_headers_t h = round_trip(t);
        ck_assert_str_eq(h.error_class, hk_outcome_name((hk_outcome_t)o));
    }
    hk_task_destroy(t);
}
END_TEST

// A record whose headers were written by someone else: bounds, the last of a
// repeated header, and strings cut to their buffers.
START_TEST(test_foreign_retry_headers_are_clamped_and_cut)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    rd_kafka_header_add(hdrs, "hookd-attempt", -1, "2", -1);
    rd_kafka_header_add(hdrs, "hookd-attempt", -1, "5000", -1); // the last one counts
    char due[32];
    snprintf(due, sizeof(due), "%lld", NOW + MAX_WAIT * 24);
    rd_kafka_header_add(hdrs, "hookd-due-at", -1, due, -1);
    char long_error[600];
    memset(long_error, 'e', sizeof(long_error) - 1);
    long_error[sizeof(long_error) - 1] = '\0';
    rd_kafka_header_add(hdrs, "hookd-last-error", -1, long_error, -1);
    rd_kafka_header_add(hdrs, "hookd-original-partition", -1, "3x", -1);
    rd_kafka_header_add(hdrs, "hookd-original-offset", -1, "99999999999999999999", -1);
    rd_kafka_header_add(hdrs, "hookd-first-attempt-at", -1, NULL, 0);
    hk_headers_t h;
    hk_headers_decode(hdrs, NOW, MAX_WAIT, &h);
    ck_assert_int_eq(h.attempt, HK_HEADERS_ATTEMPTS_MAX);
    ck_assert_int_eq(h.attempt_clamped, 1);
    ck_assert_int_eq(h.attempt_raw_len, 4);
    ck_assert_int_eq(memcmp(h.attempt_raw, "5000", 4), 0);
    ck_assert_int_eq(h.wait_ms, MAX_WAIT);
    ck_assert_int_eq(h.due_clamped, 1);
    ck_assert_uint_eq(strlen(h.last_error), sizeof(h.last_error) - 1);
    ck_assert_int_eq(h.original_partition, 0); // unreadable
    ck_assert_int_eq(h.original_offset, 0);    // overflows
    ck_assert_int_eq(h.first_attempt_ms, 0);   // a header with no value
    ck_assert_str_eq(h.original_topic, "");
    rd_kafka_headers_destroy(hdrs);

    hk_headers_decode(NULL, NOW, MAX_WAIT, &h); // a record with no headers at all
    ck_assert_int_eq(h.attempt, 0);
    ck_assert_int_eq(h.wait_ms, 0);
    ck_assert_int_eq(h.attempt_clamped + h.due_clamped, 0);
    ck_assert_ptr_null(h.attempt_raw);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("headers");
    TCase *tc = tcase_create("bounds");
    tcase_add_test(tc, test_attempt_is_taken_within_0_to_max);
    tcase_add_test(tc, test_due_at_waits_at_most_max_delay);
    suite_add_tcase(s, tc);
    tc = tcase_create("round_trip");
    tcase_add_test(tc, test_retry_record_reads_back_as_written);
    tcase_add_test(tc, test_dead_letter_reads_back_as_written);
    tcase_add_test(tc, test_every_error_class_reads_back);
    tcase_add_test(tc, test_foreign_retry_headers_are_clamped_and_cut);
    suite_add_tcase(s, tc);
    return s;
}
