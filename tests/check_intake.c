// The retry-topic headers intake reads back: hookd-attempt and hookd-due-at are
// taken with bounds, whatever a producer wrote into them.
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/intake.h"

#include "tests/support/ck_main.h"

#define NOW      1790000000000LL // a wall clock in ms (2026)
#define MAX_WAIT 3600000LL       // retry.max_delay_ms's default

// hk_intake_retry_attempts() of a NUL-terminated value (NULL: absent).
static int attempts(const char *v, int *clamped)
{
    return hk_intake_retry_attempts(v, v ? strlen(v) : 0, clamped);
}

static int64_t wait_of(const char *v, int *clamped)
{
    return hk_intake_retry_wait_ms(v, v ? strlen(v) : 0, NOW, MAX_WAIT, clamped);
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
    ck_assert_int_eq(hk_intake_retry_attempts(NULL, 0, &c), 0); // absent: a new job
    ck_assert_int_eq(c, 0);
    ck_attempts("0", 0, 0);
    ck_attempts("7", 7, 0);
    ck_attempts("100", HK_INTAKE_ATTEMPTS_MAX, 0); // the maximum, as it stands
    ck_attempts("101", HK_INTAKE_ATTEMPTS_MAX, 1); // one past it
    ck_attempts("2147483648", HK_INTAKE_ATTEMPTS_MAX, 1);
    ck_attempts("9223372036854775807", HK_INTAKE_ATTEMPTS_MAX, 1);
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
    ck_assert_int_eq(hk_intake_retry_attempts("12345", 2, &c), 12);
    ck_assert_int_eq(c, 0);
    ck_assert_int_eq(hk_intake_retry_attempts("3\0"
                                              "00",
                                              4, &c),
                     0);
    ck_assert_int_eq(c, 1);
    ck_assert_int_eq(hk_intake_retry_attempts("5", 1, NULL), 5);
}
END_TEST

START_TEST(test_due_at_waits_at_most_max_delay)
{
    char v[32];
    int c = -1;
    ck_assert_int_eq(hk_intake_retry_wait_ms(NULL, 0, NOW, MAX_WAIT, &c), 0); // absent: now
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
    ck_assert_int_eq(hk_intake_retry_wait_ms(v, strlen(v), NOW, 0, &c), 0);
    ck_assert_int_eq(c, 1);
    // The furthest a wall clock and a due time can be apart.
    ck_assert_int_eq(hk_intake_retry_wait_ms("9223372036854775807", 19, 0, INT64_MAX, &c),
                     INT64_MAX);
    ck_assert_int_eq(c, 0);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("intake");
    TCase *tc = tcase_create("retry_headers");
    tcase_add_test(tc, test_attempt_is_taken_within_0_to_max);
    tcase_add_test(tc, test_due_at_waits_at_most_max_delay);
    suite_add_tcase(s, tc);
    return s;
}
