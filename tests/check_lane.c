// check_lane: one endpoint's lane on an injected clock (worker/lane.c): the
// concurrency limit parks and a finish unparks; consecutive failures open the
// breaker and half-open lets probes through; a 429 holds the lane without
// touching the breaker and wakes it on time; the local rate limit spaces sends;
// a 410 disables that URL (every spelling) until it expires; idle lanes are
// evicted after the idle time and the cap makes room from idle lanes only.
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "worker/lane.h"
#include "tests/support/ck_main.h"

static int64_t fake_now;
static hk_lanes_t *ls;
static int unparked; // unpark calls

static int64_t fake_clock(void)
{
    return fake_now;
}

static void on_unpark(hk_lane_t *l, void *arg)
{
    (void)l, (void)arg;
    unparked++;
}

static hk_lanes_opts_t opts(void)
{
    hk_breaker_opts_t br = hk_breaker_opts_default();
    br.consecutive_failures = 3;
    br.failure_rate = 0; // only the consecutive rule
    br.open_ms = 10000;
    br.probes = 1;
    return (hk_lanes_opts_t){
        .breaker = br,
        .aimd = {.initial = 2, .min = 1, .max = 4, .decrease = 0.5},
        .idle_ms = 1000,
        .max_lanes = 2,
        .gone_max = 10,
        .gone_ttl_ms = 5000,
        .hold_default_ms = 1000,
        .hold_max_ms = 60000,
        .note_lane = 1,
        .note_lane_gone = 1,
        .note_breaker = 1,
        .unpark = on_unpark,
        .clock_ms = fake_clock,
    };
}

static void drop_notes(void)
{
    size_t cnt;
    hk_lane_note_t *n = hk_lanes_take_notes(ls, &cnt);
    for (size_t i = 0; i < cnt; i++)
        free(n[i].endpoint);
    free(n);
}

static void setup(void)
{
    fake_now = 1000000;
    unparked = 0;
    hk_lanes_opts_t o = opts();
    ls = hk_lanes_new(&o);
    ck_assert_ptr_nonnull(ls);
}

static void teardown(void)
{
    hk_lanes_destroy(ls);
    ls = NULL;
}

// Admits once for `url`; on SEND finishes with (outcome, status).
static hk_lane_verdict_t attempt(hk_lane_t *l, const char *url, hk_outcome_t outcome, int status,
                                 int64_t retry_after_ms)
{
    hk_breaker_ticket_t t;
    int64_t due = 0;
    hk_lane_verdict_t v = hk_lane_admit(ls, l, url, fake_now, &t, &due);
    if (v == HK_LANE_SEND) {
        hk_lane_result_t r = {.outcome = outcome,
                              .http_status = status,
                              .retry_after_ms = retry_after_ms,
                              .url = url,
                              .ticket = t};
        hk_lane_finish(ls, l, &r, fake_now);
    }
    return v;
}

START_TEST(test_lane_limit_parks_and_a_finish_unparks)
{
    hk_lane_t *l = hk_lanes_find(ls, "http://a.example:80", 1, 0);
    hk_breaker_ticket_t t1, t2, t3;
    int64_t due;
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t1, &due), HK_LANE_SEND);
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t2, &due), HK_LANE_SEND);
    // The limit is 2: the third waits, and nothing unparked it yet.
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t3, &due), HK_LANE_WAIT);
    ck_assert_int_eq(unparked, 0);
    hk_lane_result_t r = {.outcome = HK_OUTCOME_DELIVERED,
                          .http_status = 200,
                          .ticket = t1,
                          .url = "http://a.example/"};
    hk_lane_finish(ls, l, &r, fake_now);
    ck_assert_int_eq(unparked, 1);
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t3, &due), HK_LANE_SEND);
    // A cancelled attempt frees its slot too, and unparks.
    hk_lane_abandon(ls, l, t2, fake_now);
    ck_assert_int_eq(unparked, 2);
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t2, &due), HK_LANE_SEND);
}
END_TEST

START_TEST(test_lane_failures_open_the_breaker_until_its_time_then_one_probe)
{
    hk_lane_t *l = hk_lanes_find(ls, "http://a.example:80", 1, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_RETRYABLE, 503, -1),
                         HK_LANE_SEND);
    hk_breaker_ticket_t t;
    int64_t due = 0;
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t, &due), HK_LANE_OPEN);
    ck_assert_int_eq(due, fake_now + 10000);
    fake_now += 9999;
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t, &due), HK_LANE_OPEN);
    fake_now += 1;
    // Half-open: one probe goes, the next waits for its result.
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t, &due), HK_LANE_SEND);
    hk_breaker_ticket_t t2;
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t2, &due), HK_LANE_WAIT);
    hk_lane_result_t r = {.outcome = HK_OUTCOME_DELIVERED,
                          .http_status = 200,
                          .ticket = t,
                          .url = "http://a.example/"};
    hk_lane_finish(ls, l, &r, fake_now);
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t2, &due), HK_LANE_SEND);
}
END_TEST

// 4xx answers say nothing about health: they never open the breaker.
START_TEST(test_lane_permanent_answers_never_open_the_breaker)
{
    hk_lane_t *l = hk_lanes_find(ls, "http://a.example:80", 1, 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_PERMANENT, 404, -1),
                         HK_LANE_SEND);
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_DELIVERED, 200, -1), HK_LANE_SEND);
}
END_TEST

START_TEST(test_lane_429_holds_until_retry_after_and_wakes_on_time)
{
    hk_lane_t *l = hk_lanes_find(ls, "http://a.example:80", 1, 0);
    hk_lanes_ref(ls, l); // a task is bound to it: no idle eviction to wake for
    hk_breaker_ticket_t t1, t2;
    int64_t due;
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t1, &due), HK_LANE_SEND);
    ck_assert_int_eq(hk_lane_admit(ls, l, "http://a.example/", fake_now, &t2, &due), HK_LANE_SEND);
    hk_lane_result_t r = {.outcome = HK_OUTCOME_RETRYABLE,
                          .http_status = 429,
                          .retry_after_ms = 5000,
                          .url = "http://a.example/",
                          .ticket = t1};
    hk_lane_finish(ls, l, &r, fake_now);
    r.ticket = t2;
    hk_lane_finish(ls, l, &r, fake_now);
    // Held: nothing new goes out, and nothing is woken before the hold ends.
    fake_now += 1;
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_DELIVERED, 200, -1), HK_LANE_WAIT);
    int before = unparked;
    fake_now += 4998; // 4999 after the 429s
    hk_lanes_wake_due(ls, fake_now);
    ck_assert_int_eq(unparked, before);
    ck_assert_int_eq(hk_lanes_next_wake(ls, INT64_MAX), fake_now + 1);
    fake_now += 1;
    hk_lanes_wake_due(ls, fake_now);
    ck_assert_int_eq(unparked, before + 1);
    // A third 429 in a row: the breaker (3 consecutive failures) stays closed.
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_RETRYABLE, 429, 0), HK_LANE_SEND);
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_DELIVERED, 200, -1), HK_LANE_SEND);
}
END_TEST

START_TEST(test_lane_local_rate_limit_spaces_sends)
{
    hk_lanes_set_rate(ls, "http://a.example:80", 2, 1); // 2/s, burst 1
    hk_lane_t *l = hk_lanes_find(ls, "http://a.example:80", 0, 0);
    ck_assert_ptr_nonnull(l);
    hk_lanes_ref(ls, l);
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_DELIVERED, 200, -1), HK_LANE_SEND);
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_DELIVERED, 200, -1), HK_LANE_WAIT);
    // It asked to be woken when the next permit is due, 500 ms on.
    ck_assert_int_eq(hk_lanes_next_wake(ls, INT64_MAX), fake_now + 500);
    fake_now += 499;
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_DELIVERED, 200, -1), HK_LANE_WAIT);
    fake_now += 1;
    ck_assert_int_eq(attempt(l, "http://a.example/", HK_OUTCOME_DELIVERED, 200, -1), HK_LANE_SEND);
}
END_TEST

START_TEST(test_lane_410_disables_that_url_in_every_spelling_until_it_expires)
{
    hk_lane_t *l = hk_lanes_find(ls, "http://a.example:80", 1, 0);
    ck_assert_int_eq(attempt(l, "http://a.example/hook", HK_OUTCOME_GONE, 410, -1), HK_LANE_SEND);
    ck_assert_uint_eq(hk_lanes_gone_count(ls), 1);
    ck_assert_int_eq(attempt(l, "HTTP://a.example/hook", HK_OUTCOME_DELIVERED, 200, -1),
                     HK_LANE_GONE);
    ck_assert_int_eq(attempt(l, "http://a.example/other", HK_OUTCOME_DELIVERED, 200, -1),
                     HK_LANE_SEND);
    fake_now += 4999;
    hk_lanes_sweep(ls, fake_now);
    ck_assert_uint_eq(hk_lanes_gone_count(ls), 1);
    fake_now += 1;
    hk_lanes_sweep(ls, fake_now);
    ck_assert_uint_eq(hk_lanes_gone_count(ls), 0);
    ck_assert_int_eq(attempt(l, "http://a.example/hook", HK_OUTCOME_DELIVERED, 200, -1),
                     HK_LANE_SEND);
}
END_TEST

START_TEST(test_lane_idle_lanes_are_evicted_after_the_idle_time)
{
    hk_lane_t *l = hk_lanes_find(ls, "http://a.example:80", 1, 0);
    hk_lanes_ref(ls, l);
    fake_now += 5000;
    hk_lanes_sweep(ls, fake_now); // bound: kept however long
    ck_assert_uint_eq(hk_lanes_count(ls), 1);
    hk_lanes_unref(ls, l, fake_now);
    drop_notes();
    fake_now += 999;
    hk_lanes_sweep(ls, fake_now);
    ck_assert_ptr_eq(hk_lanes_find(ls, "http://a.example:80", 0, 0), l);
    fake_now += 1;
    hk_lanes_sweep(ls, fake_now);
    ck_assert_ptr_null(hk_lanes_find(ls, "http://a.example:80", 0, 0));
    ck_assert_uint_eq(hk_lanes_count(ls), 0);
    size_t cnt;
    hk_lane_note_t *n = hk_lanes_take_notes(ls, &cnt);
    ck_assert_uint_eq(cnt, 1);
    ck_assert_int_eq(n[0].kind, HK_LANE_NOTE_LANE_GONE);
    ck_assert_str_eq(n[0].endpoint, "http://a.example:80");
    free(n[0].endpoint);
    free(n);
}
END_TEST

// At max_lanes (2) an idle lane makes room at once; lanes with work never do.
START_TEST(test_lane_cap_evicts_only_idle_lanes)
{
    hk_lane_t *a = hk_lanes_find(ls, "http://a.example:80", 1, 0);
    hk_lane_t *b = hk_lanes_find(ls, "http://b.example:80", 1, 0);
    hk_lanes_ref(ls, a);
    hk_lanes_ref(ls, b);
    ck_assert_ptr_null(hk_lanes_find(ls, "http://c.example:80", 1, 0));
    ck_assert_uint_eq(hk_lanes_count(ls), 2);
    hk_lanes_unref(ls, b, fake_now);
    ck_assert_ptr_nonnull(hk_lanes_find(ls, "http://c.example:80", 1, 0));
    ck_assert_ptr_null(hk_lanes_find(ls, "http://b.example:80", 0, 0));
    ck_assert_ptr_eq(hk_lanes_find(ls, "http://a.example:80", 0, 0), a);
    ck_assert_uint_eq(hk_lanes_count(ls), 2);
    // A rule's lane is made even past the cap.
    ck_assert_ptr_nonnull(hk_lanes_find(ls, "http://r.example:80", 1, 1));
    ck_assert_uint_eq(hk_lanes_count(ls), 3);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("lane");
    TCase *tc = tcase_create("lane");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_lane_limit_parks_and_a_finish_unparks);
    tcase_add_test(tc, test_lane_failures_open_the_breaker_until_its_time_then_one_probe);
    tcase_add_test(tc, test_lane_permanent_answers_never_open_the_breaker);
    tcase_add_test(tc, test_lane_429_holds_until_retry_after_and_wakes_on_time);
    tcase_add_test(tc, test_lane_local_rate_limit_spaces_sends);
    tcase_add_test(tc, test_lane_410_disables_that_url_in_every_spelling_until_it_expires);
    tcase_add_test(tc, test_lane_idle_lanes_are_evicted_after_the_idle_time);
    tcase_add_test(tc, test_lane_cap_evicts_only_idle_lanes);
    suite_add_tcase(s, tc);
    return s;
}
