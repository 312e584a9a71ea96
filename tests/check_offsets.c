// The offset tracker: a commit never passes an unfinished offset, whatever order
// jobs finish in.
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "queue/offsets.h"

#include "tests/support/ck_main.h"

START_TEST(test_empty_tracker_has_nothing_to_commit)
{
    hk_offsets_t *ot = hk_offsets_new();
    ck_assert_int_eq(hk_offsets_committable(ot), -1);
    ck_assert_uint_eq(hk_offsets_span(ot), 0);
    hk_offsets_destroy(ot);
}
END_TEST

START_TEST(test_in_order_completion_commits_past_last)
{
    hk_offsets_t *ot = hk_offsets_new();
    for (int64_t o = 10; o < 20; o++)
        ck_assert_int_eq(hk_offsets_add(ot, o), 0);
    ck_assert_int_eq(hk_offsets_committable(ot), 10);
    for (int64_t o = 10; o < 20; o++) {
        ck_assert_int_eq(hk_offsets_finish(ot, o), 0);
        ck_assert_int_eq(hk_offsets_committable(ot), o + 1);
    }
    ck_assert_uint_eq(hk_offsets_span(ot), 0);
    hk_offsets_destroy(ot);
}
END_TEST

START_TEST(test_out_of_order_completion_holds_at_first_unfinished)
{
    hk_offsets_t *ot = hk_offsets_new();
    for (int64_t o = 0; o < 5; o++)
        hk_offsets_add(ot, o);
    hk_offsets_finish(ot, 3);
    hk_offsets_finish(ot, 1);
    hk_offsets_finish(ot, 4);
    ck_assert_int_eq(hk_offsets_committable(ot), 0);
    ck_assert_uint_eq(hk_offsets_span(ot), 5);
    ck_assert_uint_eq(hk_offsets_unfinished(ot), 2);
    hk_offsets_finish(ot, 0);
    ck_assert_int_eq(hk_offsets_committable(ot), 2);
    hk_offsets_finish(ot, 2);
    ck_assert_int_eq(hk_offsets_committable(ot), 5);
    hk_offsets_destroy(ot);
}
END_TEST

START_TEST(test_gaps_in_offsets_are_allowed)
{
    hk_offsets_t *ot = hk_offsets_new();
    hk_offsets_add(ot, 5);
    hk_offsets_add(ot, 9); // 6-8: compacted or transaction markers
    hk_offsets_finish(ot, 9);
    ck_assert_int_eq(hk_offsets_committable(ot), 5);
    hk_offsets_finish(ot, 5);
    ck_assert_int_eq(hk_offsets_committable(ot), 10);
    hk_offsets_destroy(ot);
}
END_TEST

START_TEST(test_rejects_non_increasing_and_unknown_offsets)
{
    hk_offsets_t *ot = hk_offsets_new();
    ck_assert_int_eq(hk_offsets_add(ot, 7), 0);
    ck_assert_int_eq(hk_offsets_add(ot, 7), -1);
    ck_assert_int_eq(hk_offsets_add(ot, 3), -1);
    ck_assert_int_eq(hk_offsets_finish(ot, 8), -1);
    ck_assert_int_eq(hk_offsets_finish(ot, 7), 0);
    ck_assert_int_eq(hk_offsets_finish(ot, 7), -1); // twice
    hk_offsets_destroy(ot);
}
END_TEST

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Property: across random interleavings of consume and finish (with gaps), the
// committable offset never exceeds the smallest unfinished offset, never goes
// backwards, and equals last+1 once everything finished.
// What a lost partition's tracker answers when the partition comes back: finished
// offsets (popped or still behind an unfinished head) are 1; unfinished ones, gaps
// and offsets never added here (before the first, after the last) are 0.
START_TEST(test_was_finished_answers_for_popped_held_gaps_and_outside)
{
    hk_offsets_t *ot = hk_offsets_new();
    ck_assert_int_eq(hk_offsets_was_finished(ot, 0), 0);
    ck_assert_int_eq(hk_offsets_last(ot), -1);
    const int64_t added[] = {10, 11, 12, 14, 15, 16, 20};
    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++)
        ck_assert_int_eq(hk_offsets_add(ot, added[i]), 0);
    ck_assert_int_eq(hk_offsets_finish(ot, 10), 0);
    ck_assert_int_eq(hk_offsets_finish(ot, 11), 0); // 10, 11 popped: committable 12
    ck_assert_int_eq(hk_offsets_finish(ot, 15), 0); // held behind 12
    ck_assert_int_eq(hk_offsets_finish(ot, 20), 0);
    ck_assert_int_eq(hk_offsets_committable(ot), 12);
    ck_assert_int_eq(hk_offsets_last(ot), 20);
    const struct {
        int64_t offset;
        int want;
    } cases[] = {{9, 0},  {10, 1}, {11, 1}, {12, 0}, {13, 0}, {14, 0},
                 {15, 1}, {16, 0}, {17, 0}, {19, 0}, {20, 1}, {21, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(hk_offsets_was_finished(ot, cases[i].offset) == cases[i].want,
                      "offset %lld: want %d", (long long)cases[i].offset, cases[i].want);
    hk_offsets_destroy(ot);
}
END_TEST

START_TEST(test_property_commit_never_passes_unfinished)
{
    uint64_t seed = 0x5eed0000u + (uint64_t)_i;
    for (int round = 0; round < 50; round++) {
        hk_offsets_t *ot = hk_offsets_new();
        enum { N = 3000 };
        int64_t offsets[N];
        int finished[N] = {0};
        int64_t o = (int64_t)(rng_next(&seed) % 1000);
        for (int i = 0; i < N; i++) {
            o += 1 + (int64_t)(rng_next(&seed) % 3 == 0 ? rng_next(&seed) % 5 : 0);
            offsets[i] = o;
        }
        int open[N], open_cnt = 0;           // indices added and not yet finished
        int added = 0, left = N, lowest = 0; // lowest: index of the first unfinished
        int64_t prev = -1;
        while (left > 0) {
            if (added < N && (rng_next(&seed) % 3 != 0 || open_cnt == 0)) {
                if (hk_offsets_add(ot, offsets[added]) != 0)
                    ck_abort_msg("add %lld refused", (long long)offsets[added]);
                open[open_cnt++] = added++;
            } else {
                // finish a random unfinished offset among those added
                int k = (int)(rng_next(&seed) % (uint64_t)open_cnt);
                int pick = open[k];
                open[k] = open[--open_cnt];
                if (hk_offsets_finish(ot, offsets[pick]) != 0)
                    ck_abort_msg("finish %lld refused", (long long)offsets[pick]);
                finished[pick] = 1;
                left--;
            }
            int64_t c = hk_offsets_committable(ot);
            while (lowest < added && finished[lowest])
                lowest++;
            int64_t min_unfinished = lowest < added ? offsets[lowest] : -1;
            // Plain checks in the hot loop: every ck_assert costs a message to the runner.
            if (min_unfinished >= 0 && c > min_unfinished)
                ck_abort_msg("committable %lld passes unfinished %lld", (long long)c,
                             (long long)min_unfinished);
            if (min_unfinished < 0 && c != offsets[added - 1] + 1)
                ck_abort_msg("all finished but committable %lld", (long long)c);
            if (c < prev)
                ck_abort_msg("committable went back from %lld to %lld", (long long)prev,
                             (long long)c);
            prev = c;
        }
        ck_assert_int_eq(hk_offsets_committable(ot), offsets[N - 1] + 1);
        ck_assert_uint_eq(hk_offsets_span(ot), 0);
        hk_offsets_destroy(ot);
    }
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("offsets");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_empty_tracker_has_nothing_to_commit);
    tcase_add_test(tc, test_in_order_completion_commits_past_last);
    tcase_add_test(tc, test_out_of_order_completion_holds_at_first_unfinished);
    tcase_add_test(tc, test_gaps_in_offsets_are_allowed);
    tcase_add_test(tc, test_rejects_non_increasing_and_unknown_offsets);
    tcase_add_test(tc, test_was_finished_answers_for_popped_held_gaps_and_outside);
    tcase_add_loop_test(tc, test_property_commit_never_passes_unfinished, 0, 4);
    suite_add_tcase(s, tc);
    return s;
}
