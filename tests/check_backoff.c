// check_backoff: schedules, exponential full jitter, Retry-After parsing and
// how they combine.
#include <check.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "retry/backoff.h"

#include "tests/support/ck_main.h"

// Sun, 06 Nov 1994 08:49:37 GMT
#define RFC_EXAMPLE_MS INT64_C(784111777000)
// 2025-06-01T00:00:00Z
#define NOW_2025_MS INT64_C(1748736000000)

// ---- schedule ---------------------------------------------------------------

START_TEST(test_backoff_schedule_is_exact_and_last_entry_repeats)
{
    static const int64_t sched[] = {5000, 30000, 120000};
    hk_backoff_t b = {.schedule_ms = sched, .schedule_cnt = 3, .max_delay_ms = 3600000};
    uint64_t rng = 1;
    ck_assert_int_eq(hk_backoff_delay(&b, 1, &rng), 5000);
    ck_assert_int_eq(hk_backoff_delay(&b, 2, &rng), 30000);
    ck_assert_int_eq(hk_backoff_delay(&b, 3, &rng), 120000);
    ck_assert_int_eq(hk_backoff_delay(&b, 4, &rng), 120000);
    ck_assert_int_eq(hk_backoff_delay(&b, 1000, &rng), 120000);
    ck_assert_int_eq(hk_backoff_delay(&b, INT_MAX, &rng), 120000);
    ck_assert_int_eq(hk_backoff_delay(&b, 0, &rng), 5000); // below 1 counts as 1
    ck_assert_int_eq(hk_backoff_delay(&b, 2, NULL), 30000);
}
END_TEST

START_TEST(test_backoff_schedule_is_capped_by_max_delay)
{
    static const int64_t sched[] = {5000, 3600000};
    hk_backoff_t b = {.schedule_ms = sched, .schedule_cnt = 2, .max_delay_ms = 600000};
    ck_assert_int_eq(hk_backoff_delay(&b, 1, NULL), 5000);
    ck_assert_int_eq(hk_backoff_delay(&b, 2, NULL), 600000);
    b.max_delay_ms = 0; // unbounded
    ck_assert_int_eq(hk_backoff_delay(&b, 2, NULL), 3600000);
}
END_TEST

START_TEST(test_backoff_parse_schedule_units)
{
    int64_t *v = NULL;
    size_t n = 0;
    char err[256] = "";
    ck_assert_int_eq(hk_backoff_parse_schedule("5s,30s,2m,10m,30m,1h", &v, &n, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(n, 6);
    static const int64_t want[] = {5000, 30000, 120000, 600000, 1800000, 3600000};
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(v[i], want[i]);
    free(v);

    ck_assert_int_eq(hk_backoff_parse_schedule("250ms", &v, &n, err, sizeof(err)), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(v[0], 250);
    free(v);

    ck_assert_int_eq(hk_backoff_parse_schedule("1500", &v, &n, err, sizeof(err)), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(v[0], 1500);
    free(v);

    ck_assert_int_eq(hk_backoff_parse_schedule(" 0 , 1d,\t2h ", &v, &n, err, sizeof(err)), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(v[0], 0);
    ck_assert_int_eq(v[1], 86400000);
    ck_assert_int_eq(v[2], 7200000);
    free(v);
}
END_TEST

typedef struct bad_schedule {
    const char *text;
    const char *errpart; // must appear in errstr
} bad_schedule_t;

static const bad_schedule_t bad_schedules[] = {
    {"5x", "entry 1 \"5x\""},
    {"5s,30sec", "entry 2 \"30sec\""},
    {"5s,,30s", "entry 2 is empty"},
    {"5s,", "entry 2 is empty"},
    {"", "empty schedule"},
    {"   ", "empty schedule"},
    {"1.5s", "entry 1 \"1.5s\""},
    {"-5s", "entry 1 \"-5s\""},
    {"5 s", "entry 1 \"5 s\""},
    {"1m,s", "entry 2 \"s\""},
    {"5S", "entry 1 \"5S\""},
    {"99999999999999999999", "entry 1 \"99999999999999999999\": delay too large"},
    {"1s,9999999999999999h", "entry 2 \"9999999999999999h\": delay too large"},
};

START_TEST(test_backoff_parse_schedule_names_the_bad_entry)
{
    const bad_schedule_t *c = &bad_schedules[_i];
    int64_t *v = (int64_t *)&v; // must be reset to NULL
    size_t n = 99;
    char err[256] = "";
    ck_assert_int_eq(hk_backoff_parse_schedule(c->text, &v, &n, err, sizeof(err)), -1);
    ck_assert_ptr_null(v);
    ck_assert_uint_eq(n, 0);
    ck_assert_msg(strstr(err, c->errpart) != NULL, "\"%s\": errstr \"%s\" lacks \"%s\"", c->text,
                  err, c->errpart);
}
END_TEST

START_TEST(test_backoff_parse_schedule_truncates_errstr_safely)
{
    int64_t *v = NULL;
    size_t n = 0;
    char err[8];
    ck_assert_int_eq(hk_backoff_parse_schedule("nonsense", &v, &n, err, sizeof(err)), -1);
    ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
    ck_assert_int_eq(hk_backoff_parse_schedule(NULL, &v, &n, err, sizeof(err)), -1);
}
END_TEST

// ---- exponential ------------------------------------------------------------

static void check_full_jitter(const hk_backoff_t *b, int failures, int64_t bound)
{
    enum { SAMPLES = 100000 };
    uint64_t rng = 0x1234;
    double sum = 0;
    int64_t lo = INT64_MAX, hi = -1;
    ck_assert_int_eq(hk_backoff_delay(b, failures, NULL), bound);
    for (int i = 0; i < SAMPLES; i++) {
        int64_t d = hk_backoff_delay(b, failures, &rng);
        sum += (double)d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    ck_assert_int_ge(lo, 0);
    ck_assert_int_le(hi, bound);
    double mean = sum / SAMPLES;
    ck_assert_double_eq_tol(mean, bound / 2.0, bound / 2.0 * 0.05);
    // the whole range is used, not a slice of it
    ck_assert_int_le(lo, bound / 100);
    ck_assert_int_ge(hi, bound - bound / 100);
}

START_TEST(test_backoff_full_jitter_stays_in_range_with_mean_half_the_cap)
{
    hk_backoff_t b = {.base_ms = 100, .multiplier = 2.0, .max_delay_ms = 10000};
    check_full_jitter(&b, 20, 10000); // capped
    check_full_jitter(&b, 3, 400);    // 100·2^2, under the cap
    check_full_jitter(&b, 1, 100);    // the base
}
END_TEST

START_TEST(test_backoff_exponential_bound_grows_then_caps)
{
    hk_backoff_t b = {.base_ms = 1000, .multiplier = 2.0, .max_delay_ms = 3600000};
    ck_assert_int_eq(hk_backoff_delay(&b, 1, NULL), 1000);
    ck_assert_int_eq(hk_backoff_delay(&b, 2, NULL), 2000);
    ck_assert_int_eq(hk_backoff_delay(&b, 5, NULL), 16000);
    ck_assert_int_eq(hk_backoff_delay(&b, 12, NULL), 2048000);
    ck_assert_int_eq(hk_backoff_delay(&b, 13, NULL), 3600000);
    b.multiplier = 1.5;
    ck_assert_int_eq(hk_backoff_delay(&b, 3, NULL), 2250);
}
END_TEST

START_TEST(test_backoff_cap_holds_for_many_failures_without_overflow)
{
    hk_backoff_t b = {.base_ms = 500, .multiplier = 3.0, .max_delay_ms = 600000};
    uint64_t rng = 42;
    for (int f = 1; f <= 200; f++) {
        int64_t bound = hk_backoff_delay(&b, f, NULL);
        ck_assert_int_ge(bound, 500);
        ck_assert_int_le(bound, 600000);
        int64_t lo = INT64_MAX, hi = -1;
        for (int k = 0; k < 100; k++) {
            int64_t d = hk_backoff_delay(&b, f, &rng);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        ck_assert_int_ge(lo, 0);
        ck_assert_int_le(hi, bound);
    }
    ck_assert_int_eq(hk_backoff_delay(&b, 200, NULL), 600000);
    ck_assert_int_eq(hk_backoff_delay(&b, INT_MAX, NULL), 600000);

    // unbounded: saturates at INT64_MAX instead of overflowing
    b.max_delay_ms = 0;
    b.multiplier = 10.0;
    ck_assert_int_eq(hk_backoff_delay(&b, 200, NULL), INT64_MAX);
    ck_assert_int_eq(hk_backoff_delay(&b, INT_MAX, NULL), INT64_MAX);
    int64_t d = hk_backoff_delay(&b, 200, &rng);
    ck_assert_int_ge(d, 0);
}
END_TEST

START_TEST(test_backoff_multiplier_one_is_constant)
{
    hk_backoff_t b = {.base_ms = 2000, .multiplier = 1.0, .max_delay_ms = 60000};
    for (int f = 1; f <= 200; f++)
        ck_assert_int_eq(hk_backoff_delay(&b, f, NULL), 2000);
    check_full_jitter(&b, 150, 2000);
    b.multiplier = 0.5; // below 1 counts as 1: delays never shrink
    ck_assert_int_eq(hk_backoff_delay(&b, 10, NULL), 2000);
    b.base_ms = 0;
    uint64_t rng = 7;
    ck_assert_int_eq(hk_backoff_delay(&b, 10, &rng), 0);
}
END_TEST

START_TEST(test_backoff_rand_is_deterministic_per_seed)
{
    uint64_t a = 0, b = 0, c = 1;
    uint64_t a1 = hk_backoff_rand(&a);
    ck_assert_uint_eq(a1, hk_backoff_rand(&b));
    ck_assert_uint_ne(a1, hk_backoff_rand(&c));
    ck_assert_uint_ne(a1, hk_backoff_rand(&a));
}
END_TEST

// ---- Retry-After --------------------------------------------------------------

typedef struct ra_case {
    const char *value;
    int64_t now_ms;
    int rc;
    int64_t delay_ms;
} ra_case_t;

static const ra_case_t ra_cases[] = {
    // delta-seconds
    {"120", NOW_2025_MS, 0, 120000},
    {"0", NOW_2025_MS, 0, 0},
    {"  5\t", NOW_2025_MS, 0, 5000},
    {"007", NOW_2025_MS, 0, 7000},
    {"31536000000", NOW_2025_MS, 0, INT64_C(31536000000000)}, // 1000 years: caller caps
    {"9223372036854775", NOW_2025_MS, 0, INT64_C(9223372036854775000)},
    {"9223372036854776", NOW_2025_MS, -1, 0}, // ms overflow int64
    {"99999999999999999999999999", NOW_2025_MS, -1, 0},
    {"-5", NOW_2025_MS, -1, 0},
    {"+5", NOW_2025_MS, -1, 0},
    {"1.5", NOW_2025_MS, -1, 0},
    {"10s", NOW_2025_MS, -1, 0},
    {"10 20", NOW_2025_MS, -1, 0},
    {"abc", NOW_2025_MS, -1, 0},
    {"", NOW_2025_MS, -1, 0},
    {"   ", NOW_2025_MS, -1, 0},

    // the three HTTP-date forms, one minute ahead of now
    {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS - 60000, 0, 60000},
    {"Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE_MS - 60000, 0, 60000},
    {"Sun Nov  6 08:49:37 1994", RFC_EXAMPLE_MS - 60000, 0, 60000},
    {"Sun Nov 06 08:49:37 1994", RFC_EXAMPLE_MS - 60000, 0, 60000},
    {"Sun, 6 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS - 60000, 0, 60000},
    {" Sun, 06 Nov 1994 08:49:37 GMT ", RFC_EXAMPLE_MS - 1500, 0, 1500},
    {"sun, 06 nov 1994 08:49:37 gmt", RFC_EXAMPLE_MS - 1000, 0, 1000},
    {"Wed, 21 Oct 2015 07:28:00 GMT", INT64_C(1445412480000) - 3600000, 0, 3600000},
    {"Thu, 29 Feb 2024 23:59:59 GMT", INT64_C(1709251199000) - 1, 0, 1},
    {"Sun, 06 Nov 1994 08:49:37 GMT", NOW_2025_MS, 0, 0}, // in the past
    {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS, 0, 0},
    {"Sunday, 06-Nov-94 08:49:37 GMT", NOW_2025_MS, 0, 0},                      // 1994, not 2094
    {"Sunday, 06-Nov-94 08:49:37 GMT", INT64_C(3939871777000) - 5000, 0, 5000}, // seen in 2094

    // malformed dates
    {"Sun, 31 Feb 1994 08:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sat, 29 Feb 2025 08:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Nov 1994 24:00:00 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Nov 1994 08:60:00 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Foo 1994 08:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Nov 1994 08:49:37", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Nov 1994 08:49:37 UTC", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Nov 1994 08:49:37 GMT+1", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Nov 94 08:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sun, 06 Nov 1994 8:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Funday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sun 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sunday, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS, -1, 0},
    {"Sun Nov  6 08:49:37 94", RFC_EXAMPLE_MS, -1, 0},
    {"1994-11-06T08:49:37Z", RFC_EXAMPLE_MS, -1, 0},
};

START_TEST(test_backoff_retry_after_values)
{
    const ra_case_t *c = &ra_cases[_i];
    int64_t d = -42;
    int rc = hk_backoff_retry_after(c->value, c->now_ms, &d);
    ck_assert_msg(rc == c->rc, "\"%s\": rc %d, want %d", c->value, rc, c->rc);
    if (c->rc == 0)
        ck_assert_msg(d == c->delay_ms, "\"%s\": delay %lld, want %lld", c->value, (long long)d,
                      (long long)c->delay_ms);
    else
        ck_assert_int_eq(d, -42); // untouched on failure
}
END_TEST

START_TEST(test_backoff_retry_after_null)
{
    int64_t d = 0;
    ck_assert_int_eq(hk_backoff_retry_after(NULL, NOW_2025_MS, &d), -1);
}
END_TEST

// ---- next_delay ---------------------------------------------------------------

START_TEST(test_backoff_next_delay_takes_the_longer_and_caps)
{
    static const int64_t sched[] = {5000, 30000};
    hk_backoff_t b = {.schedule_ms = sched, .schedule_cnt = 2, .max_delay_ms = 60000};
    uint64_t rng = 3;
    ck_assert_int_eq(hk_backoff_next_delay(&b, 1, -1, &rng), 5000);       // no Retry-After
    ck_assert_int_eq(hk_backoff_next_delay(&b, 1, 20000, &rng), 20000);   // Retry-After longer
    ck_assert_int_eq(hk_backoff_next_delay(&b, 2, 20000, &rng), 30000);   // backoff longer
    ck_assert_int_eq(hk_backoff_next_delay(&b, 2, 0, &rng), 30000);       // "Retry-After: 0"
    ck_assert_int_eq(hk_backoff_next_delay(&b, 1, 3600000, &rng), 60000); // capped
    ck_assert_int_eq(hk_backoff_next_delay(&b, 1, INT64_MAX, &rng), 60000);

    hk_backoff_t e = {.base_ms = 1000, .multiplier = 2.0, .max_delay_ms = 60000};
    for (int i = 0; i < 1000; i++) {
        int64_t d = hk_backoff_next_delay(&e, 3, 10000, &rng);
        ck_assert_int_eq(d, 10000); // jitter bound 4000 < Retry-After
        d = hk_backoff_next_delay(&e, 50, 10000, &rng);
        ck_assert_int_ge(d, 10000);
        ck_assert_int_le(d, 60000);
    }

    b.max_delay_ms = 0; // unbounded: Retry-After is honoured as is
    ck_assert_int_eq(hk_backoff_next_delay(&b, 1, 3600000, &rng), 3600000);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("backoff");

    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, test_backoff_schedule_is_exact_and_last_entry_repeats);
    tcase_add_test(tc, test_backoff_schedule_is_capped_by_max_delay);
    tcase_add_test(tc, test_backoff_parse_schedule_units);
    tcase_add_loop_test(tc, test_backoff_parse_schedule_names_the_bad_entry, 0,
                        (int)(sizeof(bad_schedules) / sizeof(bad_schedules[0])));
    tcase_add_test(tc, test_backoff_parse_schedule_truncates_errstr_safely);
    suite_add_tcase(s, tc);

    tc = tcase_create("exponential");
    tcase_add_test(tc, test_backoff_full_jitter_stays_in_range_with_mean_half_the_cap);
    tcase_add_test(tc, test_backoff_exponential_bound_grows_then_caps);
    tcase_add_test(tc, test_backoff_cap_holds_for_many_failures_without_overflow);
    tcase_add_test(tc, test_backoff_multiplier_one_is_constant);
    tcase_add_test(tc, test_backoff_rand_is_deterministic_per_seed);
    suite_add_tcase(s, tc);

    tc = tcase_create("retry_after");
    tcase_add_loop_test(tc, test_backoff_retry_after_values, 0,
                        (int)(sizeof(ra_cases) / sizeof(ra_cases[0])));
    tcase_add_test(tc, test_backoff_retry_after_null);
    tcase_add_test(tc, test_backoff_next_delay_takes_the_longer_and_caps);
    suite_add_tcase(s, tc);
    return s;
}
