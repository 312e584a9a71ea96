// check_aimd: the adaptive per-endpoint concurrency limit.
#include <check.h>
#include <stdlib.h>

#include "retry/aimd.h"

#include "tests/support/ck_main.h"

// Keeps the lane full and ends `n` attempts with `sig`, refilling after each.
static void busy_releases(hk_aimd_t *lim, int n, hk_aimd_signal_t sig)
{
    for (int i = 0; i < n; i++) {
        while (hk_aimd_acquire(lim))
            ;
        hk_aimd_release(lim, sig);
    }
}

START_TEST(test_aimd_starts_at_32_and_admits_up_to_the_limit)
{
    hk_aimd_t lim;
    hk_aimd_init(&lim, NULL);
    ck_assert_int_eq(hk_aimd_limit(&lim), 32);
    ck_assert_int_eq(hk_aimd_in_flight(&lim), 0);
    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(hk_aimd_acquire(&lim), 1);
    ck_assert_int_eq(hk_aimd_acquire(&lim), 0);
    ck_assert_int_eq(hk_aimd_in_flight(&lim), 32);
    hk_aimd_release(&lim, HK_AIMD_IGNORE);
    ck_assert_int_eq(hk_aimd_in_flight(&lim), 31);
    ck_assert_int_eq(hk_aimd_limit(&lim), 32);
    ck_assert_int_eq(hk_aimd_acquire(&lim), 1);
}
END_TEST

START_TEST(test_aimd_overload_decreases_by_a_tenth_down_to_min)
{
    static const int want[] = {28, 25, 22, 19, 17, 15, 13, 11, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1, 1};
    hk_aimd_t lim;
    hk_aimd_init(&lim, NULL);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ck_assert_int_eq(hk_aimd_acquire(&lim), 1);
        hk_aimd_release(&lim, HK_AIMD_OVERLOAD);
        ck_assert_int_eq(hk_aimd_limit(&lim), want[i]);
    }

    hk_aimd_opts_t o = hk_aimd_opts_default();
    o.min = 4;
    o.initial = 30;
    hk_aimd_init(&lim, &o);
    busy_releases(&lim, 1, HK_AIMD_OVERLOAD);
    ck_assert_int_eq(hk_aimd_limit(&lim), 27); // 30·0.9 exactly, despite rounding
    busy_releases(&lim, 100, HK_AIMD_OVERLOAD);
    ck_assert_int_eq(hk_aimd_limit(&lim), 4);
}
END_TEST

START_TEST(test_aimd_lower_limit_holds_back_new_attempts)
{
    hk_aimd_t lim;
    hk_aimd_init(&lim, NULL);
    while (hk_aimd_acquire(&lim))
        ;
    for (int i = 0; i < 10; i++)
        hk_aimd_release(&lim, HK_AIMD_OVERLOAD);
    ck_assert_int_eq(hk_aimd_in_flight(&lim), 22);
    ck_assert_int_lt(hk_aimd_limit(&lim), 22);
    ck_assert_int_eq(hk_aimd_acquire(&lim), 0); // over the new limit until drained
}
END_TEST

START_TEST(test_aimd_healthy_responses_add_one_per_round)
{
    hk_aimd_t lim;
    hk_aimd_init(&lim, NULL);
    busy_releases(&lim, 31, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 32);
    busy_releases(&lim, 1, HK_AIMD_OK); // 32 healthy responses: one round
    ck_assert_int_eq(hk_aimd_limit(&lim), 33);
    busy_releases(&lim, 32, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 33);
    busy_releases(&lim, 1, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 34);
}
END_TEST

START_TEST(test_aimd_overload_restarts_the_round)
{
    hk_aimd_t lim;
    hk_aimd_init(&lim, NULL);
    busy_releases(&lim, 31, HK_AIMD_OK);
    busy_releases(&lim, 1, HK_AIMD_OVERLOAD); // 28
    busy_releases(&lim, 27, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 28);
    busy_releases(&lim, 1, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 29);
}
END_TEST

START_TEST(test_aimd_idle_lane_does_not_grow)
{
    hk_aimd_t lim;
    hk_aimd_init(&lim, NULL);
    for (int i = 0; i < 10000; i++) { // one at a time: far below half the limit
        ck_assert_int_eq(hk_aimd_acquire(&lim), 1);
        hk_aimd_release(&lim, HK_AIMD_OK);
    }
    ck_assert_int_eq(hk_aimd_limit(&lim), 32);

    // at half the limit it does
    for (int i = 0; i < 15; i++)
        ck_assert_int_eq(hk_aimd_acquire(&lim), 1);
    for (int i = 0; i < 32; i++) {
        ck_assert_int_eq(hk_aimd_acquire(&lim), 1); // 16 in flight
        hk_aimd_release(&lim, HK_AIMD_OK);
    }
    ck_assert_int_eq(hk_aimd_limit(&lim), 33);
}
END_TEST

START_TEST(test_aimd_growth_stops_at_max)
{
    hk_aimd_opts_t o = hk_aimd_opts_default();
    o.max = 40;
    hk_aimd_t lim;
    hk_aimd_init(&lim, &o);
    busy_releases(&lim, 100000, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 40);

    hk_aimd_init(&lim, NULL);
    busy_releases(&lim, 1000000, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 256);
}
END_TEST

START_TEST(test_aimd_ignore_and_unbalanced_release_change_nothing)
{
    hk_aimd_t lim;
    hk_aimd_init(&lim, NULL);
    hk_aimd_release(&lim, HK_AIMD_OVERLOAD); // nothing acquired
    hk_aimd_release(&lim, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_in_flight(&lim), 0);
    ck_assert_int_eq(hk_aimd_limit(&lim), 32);
    busy_releases(&lim, 1000, HK_AIMD_IGNORE);
    ck_assert_int_eq(hk_aimd_limit(&lim), 32);
}
END_TEST

START_TEST(test_aimd_opts_are_clamped)
{
    hk_aimd_t lim;
    hk_aimd_opts_t o = {.initial = 500, .min = 0, .max = 300, .decrease = 1.5};
    hk_aimd_init(&lim, &o);
    ck_assert_int_eq(hk_aimd_limit(&lim), 300); // initial into [min, max]
    busy_releases(&lim, 1, HK_AIMD_OVERLOAD);
    ck_assert_int_eq(hk_aimd_limit(&lim), 270); // invalid decrease: 0.9

    o = (hk_aimd_opts_t){.initial = 0, .min = 8, .max = 2, .decrease = 0.5};
    hk_aimd_init(&lim, &o);
    ck_assert_int_eq(hk_aimd_limit(&lim), 8); // max raised to min
    busy_releases(&lim, 5, HK_AIMD_OVERLOAD);
    busy_releases(&lim, 1000, HK_AIMD_OK);
    ck_assert_int_eq(hk_aimd_limit(&lim), 8);

    o = (hk_aimd_opts_t){.initial = 10, .min = 1, .max = 256, .decrease = 0.999999};
    hk_aimd_init(&lim, &o);
    busy_releases(&lim, 1, HK_AIMD_OVERLOAD);
    ck_assert_int_eq(hk_aimd_limit(&lim), 9); // an overload always lowers it
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("aimd");
    TCase *tc = tcase_create("aimd");
    tcase_add_test(tc, test_aimd_starts_at_32_and_admits_up_to_the_limit);
    tcase_add_test(tc, test_aimd_overload_decreases_by_a_tenth_down_to_min);
    tcase_add_test(tc, test_aimd_lower_limit_holds_back_new_attempts);
    tcase_add_test(tc, test_aimd_healthy_responses_add_one_per_round);
    tcase_add_test(tc, test_aimd_overload_restarts_the_round);
    tcase_add_test(tc, test_aimd_idle_lane_does_not_grow);
    tcase_add_test(tc, test_aimd_growth_stops_at_max);
    tcase_add_test(tc, test_aimd_ignore_and_unbalanced_release_change_nothing);
    tcase_add_test(tc, test_aimd_opts_are_clamped);
    suite_add_tcase(s, tc);
    return s;
}
