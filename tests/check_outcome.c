// check_outcome: the decision an ended attempt leads to (model/outcome.c), every
// branch and its boundaries: last attempt, head-of-line block, expiry exactly at
// the next attempt, the max-delay clamp, the in-memory bound, batch items,
// ordered tasks and draining.
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "model/outcome.h"
#include "tests/support/ck_main.h"

// 2025-06-01T00:00:00Z
#define NOW_MS INT64_C(1748736000000)

static const int64_t sched[] = {1000, 5000, 60000};

// A schedule (exact delays, no jitter): 1 s, 5 s, then 60 s; capped at 30 s;
// delays up to 2 s wait in memory.
static hk_outcome_policy_t policy(void)
{
    return (hk_outcome_policy_t){
        .backoff = {.schedule_ms = sched, .schedule_cnt = 3, .max_delay_ms = 30000},
        .inline_max_ms = 2000,
        .hol_block = 0,
    };
}

// A webhook whose first of 5 attempts failed with a retryable error.
static hk_outcome_facts_t retryable(void)
{
    return (hk_outcome_facts_t){
        .outcome = HK_OUTCOME_RETRYABLE,
        .attempts = 1,
        .max_attempts = 5,
        .expires_at_ms = 0,
        .retry_after_ms = -1,
        .last_error = "HTTP 503",
        .now_wall_ms = NOW_MS,
    };
}

START_TEST(test_outcome_2xx_is_delivered)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.outcome = HK_OUTCOME_DELIVERED;
    f.attempts = 5; // even on the last attempt, and past expiry
    f.expires_at_ms = NOW_MS - 1;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_DELIVERED);
    ck_assert_int_eq(d.outcome, HK_OUTCOME_DELIVERED);
}
END_TEST

// Every class that retrying cannot help is a dead letter at once, with its own
// class and the attempt's error, whatever attempts are left.
static const hk_outcome_t permanent_classes[] = {
    HK_OUTCOME_PERMANENT, HK_OUTCOME_GONE,    HK_OUTCOME_BLOCKED,
    HK_OUTCOME_INVALID,   HK_OUTCOME_EXPIRED, HK_OUTCOME_EXHAUSTED,
};

START_TEST(test_outcome_permanent_classes_are_dead_letters_as_classified)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.outcome = permanent_classes[_i];
    f.last_error = "HTTP 404";
    f.ordered = 1; // head_of_line = block retries only retryable results
    pol.hol_block = 1;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_DEAD_LETTER);
    ck_assert_int_eq(d.outcome, permanent_classes[_i]);
    ck_assert_str_eq(d.reason, "HTTP 404");
}
END_TEST

START_TEST(test_outcome_short_delay_retries_in_memory)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_MEMORY);
    ck_assert_int_eq(d.outcome, HK_OUTCOME_RETRYABLE);
    ck_assert_int_eq(d.delay_ms, 1000);
    ck_assert_int_eq(d.due_wall_ms, NOW_MS + 1000);
    ck_assert_str_eq(d.reason, "HTTP 503");
}
END_TEST

// The in-memory bound is inclusive: a delay of exactly inline_max_ms stays in
// memory, one ms more goes through the retry topic.
START_TEST(test_outcome_inline_bound_is_inclusive)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.attempts = 2; // 5 s
    pol.inline_max_ms = 5000;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_MEMORY);
    ck_assert_int_eq(d.delay_ms, 5000);
    pol.inline_max_ms = 4999;
    d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_TOPIC);
    ck_assert_int_eq(d.delay_ms, 5000);
    ck_assert_int_eq(d.due_wall_ms, NOW_MS + 5000);
}
END_TEST

// Webhook vs batch item vs ordered task with the same long delay: only the
// webhook may leave through the retry topic.
START_TEST(test_outcome_long_delay_topic_only_for_unordered_webhooks)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.attempts = 3; // 60 s, clamped to 30 s
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_TOPIC);
    ck_assert_int_eq(d.due_wall_ms, NOW_MS + 30000);

    f.batch_item = 1;
    d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_MEMORY);
    ck_assert_int_eq(d.delay_ms, 30000);

    f.batch_item = 0;
    f.ordered = 1;
    d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_MEMORY);
}
END_TEST

// Draining: even a short retry goes to the retry topic, except for batch items
// and ordered tasks, which stay in memory.
START_TEST(test_outcome_draining_sends_short_retries_to_the_topic)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.draining = 1;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_TOPIC);
    ck_assert_int_eq(d.due_wall_ms, NOW_MS + 1000);
    f.batch_item = 1;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_RETRY_MEMORY);
    f.batch_item = 0;
    f.ordered = 1;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_RETRY_MEMORY);
}
END_TEST

// The last attempt: attempts == max_attempts is exhausted, one fewer retries.
START_TEST(test_outcome_last_attempt_is_exhausted)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.attempts = 4;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_RETRY_TOPIC);
    f.attempts = 5;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_EXHAUSTED);
    ck_assert_int_eq(d.outcome, HK_OUTCOME_EXHAUSTED);
    ck_assert_str_eq(d.reason, "5 attempts, last: HTTP 503");
    f.attempts = 6; // past it: still exhausted
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXHAUSTED);
    f.attempts = 1; // a job that allows one attempt
    f.max_attempts = 1;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXHAUSTED);
    // Batch items and ordered tasks are exhausted the same way by default.
    f.batch_item = 1;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXHAUSTED);
    f.batch_item = 0;
    f.ordered = 1;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXHAUSTED);
}
END_TEST

// head_of_line = block: an ordered head is never exhausted; an unordered task
// under the same policy is.
START_TEST(test_outcome_hol_block_retries_an_ordered_head_without_limit)
{
    hk_outcome_policy_t pol = policy();
    pol.hol_block = 1;
    hk_outcome_facts_t f = retryable();
    f.attempts = 1000;
    f.ordered = 1;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_MEMORY);
    ck_assert_int_eq(d.delay_ms, 30000); // the schedule's last entry, capped
    f.ordered = 0;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXHAUSTED);
}
END_TEST

// Expiry exactly at the next attempt's time is expired; one ms later is not.
START_TEST(test_outcome_expiry_at_the_next_attempt_is_expired)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.attempts = 2; // next in 5 s
    f.expires_at_ms = NOW_MS + 5000;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_EXPIRED);
    ck_assert_int_eq(d.outcome, HK_OUTCOME_EXPIRED);
    ck_assert_str_eq(d.reason, "expires before attempt 3, last: HTTP 503");
    f.expires_at_ms = NOW_MS + 5001;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_RETRY_TOPIC);
    // Already past, or exactly now: expired even with a 0 ms delay.
    static const int64_t zero[] = {0};
    pol.backoff.schedule_ms = zero;
    pol.backoff.schedule_cnt = 1;
    f.expires_at_ms = NOW_MS;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXPIRED);
    f.expires_at_ms = 0; // never expires
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_RETRY_MEMORY);
}
END_TEST

// Exhaustion is decided before expiry: the last attempt says "exhausted".
START_TEST(test_outcome_exhausted_wins_over_expired)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.attempts = 5;
    f.expires_at_ms = NOW_MS;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXHAUSTED);
}
END_TEST

// Retry-After lengthens the delay, never beyond max_delay_ms; a long one sends
// the retry through the topic, and can make the job expire.
START_TEST(test_outcome_retry_after_lengthens_up_to_the_clamp)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    f.retry_after_ms = 10000;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.action, HK_OUTCOME_ACT_RETRY_TOPIC);
    ck_assert_int_eq(d.delay_ms, 10000);
    ck_assert_int_eq(d.due_wall_ms, NOW_MS + 10000);
    f.retry_after_ms = 3600000; // an hour: clamped to max_delay_ms
    d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_int_eq(d.delay_ms, 30000);
    f.expires_at_ms = NOW_MS + 30000;
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).action, HK_OUTCOME_ACT_EXPIRED);
    f.retry_after_ms = 0; // shorter than the schedule: the schedule wins
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).delay_ms, 1000);
}
END_TEST

// Exponential backoff draws its jitter from the caller's rng, within the bound.
START_TEST(test_outcome_jitter_comes_from_the_callers_rng)
{
    hk_outcome_policy_t pol = {
        .backoff = {.base_ms = 1000, .multiplier = 2, .max_delay_ms = 30000},
        .inline_max_ms = 60000,
    };
    hk_outcome_facts_t f = retryable();
    f.attempts = 3; // bound 4 s
    uint64_t a = 42, b = 42;
    for (int i = 0; i < 100; i++) {
        hk_outcome_decision_t d1 = hk_outcome_decide(&f, &pol, &a);
        hk_outcome_decision_t d2 = hk_outcome_decide(&f, &pol, &b);
        ck_assert_int_eq(d1.delay_ms, d2.delay_ms);
        ck_assert_int_ge(d1.delay_ms, 0);
        ck_assert_int_le(d1.delay_ms, 4000);
        ck_assert_int_eq(d1.action, HK_OUTCOME_ACT_RETRY_MEMORY);
    }
    ck_assert_int_eq(hk_outcome_decide(&f, &pol, NULL).delay_ms, 4000);
    // No draw when no retry is possible.
    uint64_t before = a;
    f.attempts = 5;
    hk_outcome_decide(&f, &pol, &a);
    ck_assert(a == before);
}
END_TEST

START_TEST(test_outcome_long_errors_are_cut_not_overrun)
{
    hk_outcome_policy_t pol = policy();
    hk_outcome_facts_t f = retryable();
    char long_err[600];
    memset(long_err, 'e', sizeof(long_err) - 1);
    long_err[sizeof(long_err) - 1] = '\0';
    f.last_error = long_err;
    f.attempts = 5;
    hk_outcome_decision_t d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_uint_eq(strlen(d.reason), HK_OUTCOME_REASON_MAX - 1);
    ck_assert(strncmp(d.reason, "5 attempts, last: eee", 21) == 0);
    f.last_error = NULL;
    d = hk_outcome_decide(&f, &pol, NULL);
    ck_assert_str_eq(d.reason, "5 attempts, last: ");
}
END_TEST

START_TEST(test_outcome_action_names)
{
    ck_assert_str_eq(hk_outcome_action_name(HK_OUTCOME_ACT_DELIVERED), "delivered");
    ck_assert_str_eq(hk_outcome_action_name(HK_OUTCOME_ACT_RETRY_MEMORY), "retry_memory");
    ck_assert_str_eq(hk_outcome_action_name(HK_OUTCOME_ACT_RETRY_TOPIC), "retry_topic");
    ck_assert_str_eq(hk_outcome_action_name(HK_OUTCOME_ACT_EXHAUSTED), "exhausted");
    ck_assert_str_eq(hk_outcome_action_name(HK_OUTCOME_ACT_EXPIRED), "expired");
    ck_assert_str_eq(hk_outcome_action_name(HK_OUTCOME_ACT_DEAD_LETTER), "dead_letter");
    ck_assert_str_eq(hk_outcome_action_name(HK_OUTCOME_ACT__CNT), "unknown");
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("outcome");
    TCase *tc = tcase_create("terminal");
    tcase_add_test(tc, test_outcome_2xx_is_delivered);
    tcase_add_loop_test(tc, test_outcome_permanent_classes_are_dead_letters_as_classified, 0,
                        (int)(sizeof(permanent_classes) / sizeof(permanent_classes[0])));
    tcase_add_test(tc, test_outcome_last_attempt_is_exhausted);
    tcase_add_test(tc, test_outcome_hol_block_retries_an_ordered_head_without_limit);
    tcase_add_test(tc, test_outcome_expiry_at_the_next_attempt_is_expired);
    tcase_add_test(tc, test_outcome_exhausted_wins_over_expired);
    tcase_add_test(tc, test_outcome_long_errors_are_cut_not_overrun);
    tcase_add_test(tc, test_outcome_action_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("retry");
    tcase_add_test(tc, test_outcome_short_delay_retries_in_memory);
    tcase_add_test(tc, test_outcome_inline_bound_is_inclusive);
    tcase_add_test(tc, test_outcome_long_delay_topic_only_for_unordered_webhooks);
    tcase_add_test(tc, test_outcome_draining_sends_short_retries_to_the_topic);
    tcase_add_test(tc, test_outcome_retry_after_lengthens_up_to_the_clamp);
    tcase_add_test(tc, test_outcome_jitter_comes_from_the_callers_rng);
    suite_add_tcase(s, tc);
    return s;
}
