// check_ratelimit: the GCRA limiter, driven by a fake clock: long-run rate,
// burst after idle, retry hints and fractional rates.
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "retry/ratelimit.h"

#include "tests/support/ck_main.h"

// Deterministic pseudo-random numbers (xorshift), so a failure reproduces.
static uint64_t rng_state;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

START_TEST(test_gcra_idle_limiter_grants_burst_at_once_then_nothing)
{
    hk_gcra_t g = {0};
    int64_t retry = -1;
    ck_assert_int_eq(hk_gcra_take(&g, 10, 5, 100, 1000000, &retry), 5);
    ck_assert_int_eq(retry, 100); // the 6th permit is one emission interval (100 ms) away
    ck_assert_int_eq(hk_gcra_take(&g, 10, 5, 1, 1000000, &retry), 0);
    ck_assert_int_eq(retry, 100);
    ck_assert_int_eq(hk_gcra_take(&g, 10, 5, 1, 1000099, &retry), 0);
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(hk_gcra_take(&g, 10, 5, 1, 1000100, &retry), 1);
    ck_assert_int_eq(retry, 0);
}
END_TEST

START_TEST(test_gcra_burst_is_refilled_after_idle)
{
    hk_gcra_t g = {0};
    int64_t now = 5000;
    ck_assert_int_eq(hk_gcra_take(&g, 100, 20, 20, now, NULL), 20);
    ck_assert_int_eq(hk_gcra_take(&g, 100, 20, 1, now, NULL), 0);
    // Half the burst comes back after half the refill time (10 permits at 10 ms each).
    ck_assert_int_eq(hk_gcra_take(&g, 100, 20, 20, now + 100, NULL), 10);
    // A long idle spell refills the burst, never more.
    ck_assert_int_eq(hk_gcra_take(&g, 100, 20, 50, now + 100000, NULL), 20);
    ck_assert_int_eq(hk_gcra_take(&g, 100, 20, 1, now + 100000, NULL), 0);
}
END_TEST

START_TEST(test_gcra_never_grants_more_than_burst_at_once)
{
    rng_state = 0x9e3779b97f4a7c15ULL;
    hk_gcra_t g = {0};
    int64_t now = 0;
    for (int i = 0; i < 20000; i++) {
        now += rng() % 2000; // up to 2 s between requests: often idle long enough to refill
        int want = 1 + (int)(rng() % 40);
        int got = hk_gcra_take(&g, 50, 7, want, now, NULL);
        ck_assert_int_ge(got, 0);
        ck_assert_int_le(got, want);
        ck_assert_int_le(got, 7);
        // And nothing more at the same instant beyond the burst.
        int more = hk_gcra_take(&g, 50, 7, 40, now, NULL);
        ck_assert_int_le(got + more, 7);
    }
}
END_TEST

// Simulated 60 s of random request patterns against `rate`/`burst`. Callers
// come back early, exactly at the retry hint, or late by less than the burst
// tolerance ((burst-1) emission intervals), and always want more than can have
// refilled since they last drained the limiter: then no capacity is ever lost, and the number
// granted must equal rate·60 + burst within 1%.
static void check_long_run(double rate, int burst, uint64_t seed)
{
    rng_state = seed;
    hk_gcra_t g = {0};
    double t = 1000.0 / rate;
    int64_t start = 123456789, now = start, end = start + 60000;
    long granted = 0;
    while (now < end) {
        int want = burst + 2 + (int)(rng() % 8);
        int64_t retry = 0;
        int got = hk_gcra_take(&g, rate, burst, want, now, &retry);
        granted += got;
        ck_assert_int_lt(got, want);
        ck_assert_int_ge(retry, 1);
        ck_assert_int_le(retry, (int64_t)t + 1);
        switch (rng() % 3) {
        case 0:
            now += rng() % ((uint32_t)retry + 1); // early (or exactly on time)
            break;
        case 1:
            now += retry;
            break;
        default:
            now += retry + rng() % (uint32_t)((burst - 1) * t + 1); // late
            break;
        }
    }
    double expect = rate * 60 + burst;
    // +-1 permit: the one due exactly at the end may or may not be taken.
    ck_assert_msg(granted >= expect * 0.99 - 1 && granted <= expect * 1.01,
                  "%ld permits in 60 s at %g/s burst %d, want %.0f +-1%%", granted, rate, burst,
                  expect);
}

// Random, often idle callers: any one second never sees more than rate + burst,
// and the whole minute never more than rate·60 + burst.
static void check_sparse(double rate, int burst, uint64_t seed)
{
    rng_state = seed;
    hk_gcra_t g = {0};
    int64_t start = 1000, now = start, end = start + 60000;
    long granted = 0;
    long grants_at[4096];
    int64_t times[4096];
    int n = 0;
    while (now < end) {
        int want = 1 + (int)(rng() % (uint32_t)(2 * burst + 1));
        int got = hk_gcra_take(&g, rate, burst, want, now, NULL);
        granted += got;
        if (got > 0 && n < 4096) {
            grants_at[n] = got;
            times[n++] = now;
        }
        now += rng() % (uint32_t)(4000.0 / rate + 1);
    }
    ck_assert_msg(granted <= rate * 60 + burst, "%ld permits in 60 s at %g/s burst %d", granted,
                  rate, burst);
    for (int i = 0; i < n; i++) {
        long in_second = 0;
        for (int j = i; j < n && times[j] < times[i] + 1000; j++)
            in_second += grants_at[j];
        ck_assert_msg(in_second <= rate + burst, "%ld permits within one second at %g/s burst %d",
                      in_second, rate, burst);
    }
}

START_TEST(test_gcra_long_run_rate_is_exact_within_one_percent)
{
    check_long_run(200, 10, 1);
    check_long_run(200, 10, 2);
    check_long_run(1000, 50, 3);
    check_long_run(7, 1, 4);
    check_long_run(25, 5, 5);
    check_long_run(0.5, 2, 6);
    check_sparse(200, 10, 7);
    check_sparse(25, 5, 8);
    check_sparse(3, 1, 9);
}
END_TEST

START_TEST(test_gcra_retry_in_ms_is_when_the_next_permit_conforms)
{
    hk_gcra_t g = {0};
    int64_t now = 10000, retry = 0;
    ck_assert_int_eq(hk_gcra_take(&g, 4, 2, 3, now, &retry), 2); // T = 250 ms
    ck_assert_int_eq(retry, 250);
    now += 100;
    ck_assert_int_eq(hk_gcra_take(&g, 4, 2, 1, now, &retry), 0);
    ck_assert_int_eq(retry, 150);
    // One ms early: still nothing, and the hint counts down.
    now += 149;
    ck_assert_int_eq(hk_gcra_take(&g, 4, 2, 1, now, &retry), 0);
    ck_assert_int_eq(retry, 1);
    now += 1;
    ck_assert_int_eq(hk_gcra_take(&g, 4, 2, 2, now, &retry), 1);
    ck_assert_int_eq(retry, 250);
    // Coming back exactly at every hint is granted every time, for any rate.
    const double rates[] = {3, 7, 25, 0.5, 333, 1000.0 / 3};
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
        hk_gcra_t h = {0};
        int64_t t = 777;
        hk_gcra_take(&h, rates[r], 3, 3, t, NULL);
        for (int i = 0; i < 500; i++) {
            ck_assert_int_eq(hk_gcra_take(&h, rates[r], 3, 1, t, &retry), 0);
            ck_assert_int_ge(retry, 1);
            ck_assert_int_le(retry, (int64_t)(1000.0 / rates[r]) + 1);
            t += retry;
            ck_assert_msg(hk_gcra_take(&h, rates[r], 3, 1, t, NULL) == 1,
                          "rate %g: no permit at the advertised time", rates[r]);
        }
    }
}
END_TEST

START_TEST(test_gcra_fractional_rates)
{
    // 25/s = one permit every 40 ms.
    hk_gcra_t g = {0};
    int64_t now = 0, retry;
    ck_assert_int_eq(hk_gcra_take(&g, 25, 1, 1, now, &retry), 1);
    ck_assert_int_eq(hk_gcra_take(&g, 25, 1, 1, now + 39, &retry), 0);
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(hk_gcra_take(&g, 25, 1, 1, now + 40, &retry), 1);
    long n = 0;
    for (int64_t t = 41; t <= 10040; t++) // 10 s more, asking every ms: 80, 120, ..., 10040
        n += hk_gcra_take(&g, 25, 1, 1, t, NULL);
    ck_assert_int_eq(n, 250);

    // 0.5/s = one permit every 2 s; a burst of 2 after idle.
    hk_gcra_t h = {0};
    ck_assert_int_eq(hk_gcra_take(&h, 0.5, 2, 5, 1000, &retry), 2);
    ck_assert_int_eq(retry, 2000);
    ck_assert_int_eq(hk_gcra_take(&h, 0.5, 2, 1, 2999, &retry), 0);
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(hk_gcra_take(&h, 0.5, 2, 1, 3000, &retry), 1);
    n = 0;
    for (int64_t t = 3010; t <= 63000; t += 10) // a minute more, asking every 10 ms
        n += hk_gcra_take(&h, 0.5, 2, 1, t, NULL);
    ck_assert_int_eq(n, 30); // at 5000, 7000, ..., 63000
}
END_TEST

START_TEST(test_gcra_edge_arguments)
{
    hk_gcra_t g = {0};
    int64_t retry = 42;
    ck_assert_int_eq(hk_gcra_take(&g, 0, 1, 7, 0, &retry), 7); // no limit
    ck_assert_int_eq(retry, 0);
    ck_assert_int_eq(hk_gcra_take(&g, -3, 1, 7, 0, NULL), 7);
    retry = 42;
    ck_assert_int_eq(hk_gcra_take(&g, 10, 1, 0, 0, &retry), 0);
    ck_assert_int_eq(retry, 0);
    ck_assert_int_eq(hk_gcra_take(&g, 10, 0, 5, 0, &retry), 1); // burst < 1 counts as 1
    ck_assert_int_eq(retry, 100);
    // The clock going backwards (a caller mixing clocks) grants nothing extra.
    ck_assert_int_eq(hk_gcra_take(&g, 10, 1, 5, -100000, &retry), 0);
    ck_assert_int_ge(retry, 1);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("gcra");
    tcase_add_test(tc, test_gcra_idle_limiter_grants_burst_at_once_then_nothing);
    tcase_add_test(tc, test_gcra_burst_is_refilled_after_idle);
    tcase_add_test(tc, test_gcra_never_grants_more_than_burst_at_once);
    tcase_add_test(tc, test_gcra_long_run_rate_is_exact_within_one_percent);
    tcase_add_test(tc, test_gcra_retry_in_ms_is_when_the_next_permit_conforms);
    tcase_add_test(tc, test_gcra_fractional_rates);
    tcase_add_test(tc, test_gcra_edge_arguments);
    suite_add_tcase(s, tc);
    return s;
}
