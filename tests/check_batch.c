// check_batch: the decisions of a batch run (worker/batchplan.c) on plain values:
// the status a batch ends with, where the failure ratio aborts it (strictly more
// failures than the ratio allows, no minimum item count, decided once and only
// on a failure), the cursor over items that finish out of order, each item
// counted once, and a resume that takes the checkpoint's counters as stored.
#include <check.h>
#include <stdint.h>

#include "tests/support/ck_main.h"
#include "worker/batchplan.h"

static hk_batchplan_t *p;

static void teardown(void)
{
    hk_batchplan_destroy(p);
    p = NULL;
}

static hk_batchplan_t *plan(size_t items, double ratio)
{
    p = hk_batchplan_new(items, ratio);
    ck_assert_ptr_nonnull(p);
    return p;
}

// Records items [from, to) with `st`; every one must be recorded (none aborts).
static void record_range(size_t from, size_t to, hk_item_status_t st)
{
    for (size_t i = from; i < to; i++)
        ck_assert_int_eq(hk_batchplan_record(p, i, st), HK_BATCHPLAN_RECORDED);
}

START_TEST(test_batch_every_item_succeeded_ends_completed)
{
    plan(4, 0.5);
    record_range(0, 3, HK_ITEM_SUCCEEDED);
    ck_assert(!hk_batchplan_complete(p));
    record_range(3, 4, HK_ITEM_SUCCEEDED);
    ck_assert(hk_batchplan_complete(p));
    ck_assert_str_eq(hk_batchplan_final_status(p), "completed");
    hk_batchplan_counts_t c = hk_batchplan_counts(p);
    ck_assert_int_eq(c.succeeded, 4);
    ck_assert_int_eq(c.failed + c.skipped, 0);
    ck_assert_int_eq(c.terminal, 4);
}
END_TEST

// Failures within the allowance: completed_with_failures. Skipped items alone
// (none failed) still end "completed".
START_TEST(test_batch_failures_under_the_ratio_end_completed_with_failures)
{
    plan(10, 0.2);
    record_range(0, 8, HK_ITEM_SUCCEEDED);
    record_range(8, 10, HK_ITEM_FAILED); // 2 of 10: exactly the allowance
    ck_assert(hk_batchplan_complete(p));
    ck_assert(!hk_batchplan_aborting(p));
    ck_assert_str_eq(hk_batchplan_final_status(p), "completed_with_failures");
    teardown();

    plan(3, 0.0);
    record_range(0, 2, HK_ITEM_SUCCEEDED);
    record_range(2, 3, HK_ITEM_SKIPPED);
    ck_assert(hk_batchplan_complete(p));
    ck_assert_str_eq(hk_batchplan_final_status(p), "completed");
}
END_TEST

// Past the ratio the plan aborts; the rest are skipped and the batch ends
// "aborted", whatever succeeded.
START_TEST(test_batch_failures_past_the_ratio_end_aborted)
{
    plan(10, 0.1);
    record_range(0, 1, HK_ITEM_FAILED); // 1 of 10: the allowance
    ck_assert_int_eq(hk_batchplan_record(p, 1, HK_ITEM_FAILED), HK_BATCHPLAN_ABORT);
    ck_assert(hk_batchplan_aborting(p));
    ck_assert(!hk_batchplan_complete(p));
    record_range(2, 5, HK_ITEM_SUCCEEDED);
    record_range(5, 10, HK_ITEM_SKIPPED);
    ck_assert(hk_batchplan_complete(p));
    ck_assert_str_eq(hk_batchplan_final_status(p), "aborted");
    hk_batchplan_counts_t c = hk_batchplan_counts(p);
    ck_assert_int_eq(c.failed, 2);
    ck_assert_int_eq(c.succeeded, 3);
    ck_assert_int_eq(c.skipped, 5);
}
END_TEST

// The threshold is strict: exactly ratio × items failures is allowed, one more
// aborts, and the abort is reported once. Fractional allowances round down in
// effect; there is no minimum item count (one item, ratio 0.5: its failure
// aborts); ratio 0 aborts on the first failure and ratio 1 never.
START_TEST(test_batch_abort_threshold_edges)
{
    plan(100, 0.05);
    record_range(0, 5, HK_ITEM_FAILED); // exactly at the ratio
    ck_assert(!hk_batchplan_aborting(p));
    ck_assert_int_eq(hk_batchplan_record(p, 5, HK_ITEM_FAILED), HK_BATCHPLAN_ABORT);
    ck_assert_int_eq(hk_batchplan_record(p, 6, HK_ITEM_FAILED), HK_BATCHPLAN_RECORDED);
    ck_assert(hk_batchplan_aborting(p));
    teardown();

    plan(10, 0.25); // 2.5 allowed
    record_range(0, 2, HK_ITEM_FAILED);
    ck_assert_int_eq(hk_batchplan_record(p, 2, HK_ITEM_FAILED), HK_BATCHPLAN_ABORT);
    teardown();

    plan(1, 0.5);
    ck_assert_int_eq(hk_batchplan_record(p, 0, HK_ITEM_FAILED), HK_BATCHPLAN_ABORT);
    teardown();

    plan(5, 0.0);
    record_range(0, 3, HK_ITEM_SUCCEEDED);
    ck_assert_int_eq(hk_batchplan_record(p, 3, HK_ITEM_FAILED), HK_BATCHPLAN_ABORT);
    teardown();

    plan(5, 1.0);
    record_range(0, 5, HK_ITEM_FAILED);
    ck_assert(!hk_batchplan_aborting(p));
    ck_assert_str_eq(hk_batchplan_final_status(p), "completed_with_failures");
}
END_TEST

// Only failures count toward the ratio: skipped items past it abort nothing,
// nor does a failure within the allowance after them.
START_TEST(test_batch_skipped_items_never_abort)
{
    plan(4, 0.25);
    record_range(0, 3, HK_ITEM_SKIPPED);
    ck_assert(!hk_batchplan_aborting(p));
    record_range(3, 4, HK_ITEM_FAILED); // 1 of 4: the allowance
    ck_assert(!hk_batchplan_aborting(p));
    ck_assert_str_eq(hk_batchplan_final_status(p), "completed_with_failures");
    teardown();

    plan(2, 0.0);
    record_range(0, 2, HK_ITEM_SKIPPED);
    ck_assert_str_eq(hk_batchplan_final_status(p), "completed");
}
END_TEST

// Items [0, cursor) are all terminal: the cursor waits for the lowest unfinished
// item and then jumps over everything that finished after it.
START_TEST(test_batch_cursor_advances_over_out_of_order_finishes)
{
    plan(7, 1.0);
    hk_batchplan_record(p, 2, HK_ITEM_SUCCEEDED);
    hk_batchplan_record(p, 1, HK_ITEM_FAILED);
    hk_batchplan_record(p, 4, HK_ITEM_SKIPPED);
    ck_assert_int_eq(hk_batchplan_counts(p).cursor, 0);
    hk_batchplan_record(p, 0, HK_ITEM_SUCCEEDED);
    ck_assert_int_eq(hk_batchplan_counts(p).cursor, 3);
    hk_batchplan_record(p, 6, HK_ITEM_SUCCEEDED);
    ck_assert_int_eq(hk_batchplan_counts(p).cursor, 3);
    hk_batchplan_record(p, 3, HK_ITEM_SUCCEEDED);
    ck_assert_int_eq(hk_batchplan_counts(p).cursor, 5);
    hk_batchplan_record(p, 5, HK_ITEM_SUCCEEDED);
    ck_assert_int_eq(hk_batchplan_counts(p).cursor, 7);
    ck_assert(hk_batchplan_complete(p));
}
END_TEST

// Each item counts once: a second result for an item, or an index past the end,
// changes nothing. An item's status is what it was recorded with.
START_TEST(test_batch_terminal_counts_each_item_once)
{
    plan(3, 0.0);
    ck_assert_int_eq(hk_batchplan_status(p, 1), 0);
    ck_assert_int_eq(hk_batchplan_record(p, 1, HK_ITEM_SUCCEEDED), HK_BATCHPLAN_RECORDED);
    ck_assert_int_eq(hk_batchplan_status(p, 1), HK_ITEM_SUCCEEDED);
    ck_assert_int_eq(hk_batchplan_record(p, 1, HK_ITEM_FAILED), HK_BATCHPLAN_IGNORED);
    ck_assert_int_eq(hk_batchplan_record(p, 3, HK_ITEM_SUCCEEDED), HK_BATCHPLAN_IGNORED);
    ck_assert_int_eq(hk_batchplan_status(p, 1), HK_ITEM_SUCCEEDED);
    ck_assert_int_eq(hk_batchplan_status(p, 3), 0);
    hk_batchplan_counts_t c = hk_batchplan_counts(p);
    ck_assert_int_eq(c.terminal, 1);
    ck_assert_int_eq(c.succeeded, 1);
    ck_assert_int_eq(c.failed, 0);
    ck_assert(!hk_batchplan_aborting(p)); // the ignored failure did not count
    ck_assert(!hk_batchplan_complete(p));
    hk_batchplan_record(p, 0, HK_ITEM_SKIPPED);
    hk_batchplan_record(p, 2, HK_ITEM_SUCCEEDED);
    c = hk_batchplan_counts(p);
    ck_assert_int_eq(c.terminal, 3);
    ck_assert_int_eq(c.items, 3);
    ck_assert(hk_batchplan_complete(p));
}
END_TEST

// A resume takes the checkpoint's statuses and counters as stored (the counters
// are what later checkpoints add to), puts the cursor past the terminal prefix,
// and aborts only when stored as aborted: a stored failure count over the ratio
// waits for the next failure, as before the crash.
START_TEST(test_batch_resume_takes_the_checkpoint_as_stored)
{
    plan(6, 0.1);
    const uint8_t st[6] = {HK_ITEM_SUCCEEDED, HK_ITEM_FAILED, 0, HK_ITEM_SKIPPED, 0, 0};
    hk_batchplan_resume(p, st, 10, 20, 30, 0);
    hk_batchplan_counts_t c = hk_batchplan_counts(p);
    ck_assert_int_eq(c.cursor, 2);
    ck_assert_int_eq(c.succeeded, 10);
    ck_assert_int_eq(c.failed, 20);
    ck_assert_int_eq(c.skipped, 30);
    ck_assert_int_eq(c.terminal, 60);
    ck_assert_int_eq(hk_batchplan_status(p, 3), HK_ITEM_SKIPPED);
    ck_assert(!hk_batchplan_aborting(p));
    ck_assert_int_eq(hk_batchplan_record(p, 1, HK_ITEM_SUCCEEDED), HK_BATCHPLAN_IGNORED);
    ck_assert_int_eq(hk_batchplan_record(p, 2, HK_ITEM_SUCCEEDED), HK_BATCHPLAN_RECORDED);
    ck_assert_int_eq(hk_batchplan_counts(p).cursor, 4);
    ck_assert(!hk_batchplan_aborting(p));
    ck_assert_int_eq(hk_batchplan_record(p, 4, HK_ITEM_FAILED), HK_BATCHPLAN_ABORT);
    teardown();

    plan(2, 1.0);
    const uint8_t none[2] = {0, 0};
    hk_batchplan_resume(p, none, 0, 0, 0, 1);
    ck_assert(hk_batchplan_aborting(p));
    ck_assert_str_eq(hk_batchplan_final_status(p), "aborted");
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("plan");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_batch_every_item_succeeded_ends_completed);
    tcase_add_test(tc, test_batch_failures_under_the_ratio_end_completed_with_failures);
    tcase_add_test(tc, test_batch_failures_past_the_ratio_end_aborted);
    tcase_add_test(tc, test_batch_abort_threshold_edges);
    tcase_add_test(tc, test_batch_skipped_items_never_abort);
    tcase_add_test(tc, test_batch_cursor_advances_over_out_of_order_finishes);
    tcase_add_test(tc, test_batch_terminal_counts_each_item_once);
    tcase_add_test(tc, test_batch_resume_takes_the_checkpoint_as_stored);
    suite_add_tcase(s, tc);
    return s;
}
