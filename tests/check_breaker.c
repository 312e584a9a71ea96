// check_breaker: every state transition of the circuit breaker, driven by a fake clock.
#include <check.h>
#include <stdlib.h>

#include "retry/breaker.h"

#include "tests/support/ck_main.h"

#define S HK_BREAKER_SUCCESS
#define F HK_BREAKER_FAILURE
#define I HK_BREAKER_IGNORE

static hk_breaker_t *br;

static void setup_default(void)
{
    br = hk_breaker_new(NULL);
    ck_assert_ptr_nonnull(br);
}

static void teardown(void)
{
    hk_breaker_destroy(br);
    br = NULL;
}

static void recreate(hk_breaker_opts_t o)
{
    hk_breaker_destroy(br);
    br = hk_breaker_new(&o);
    ck_assert_ptr_nonnull(br);
}

// One attempt that starts and ends at now_ms. Returns 1 if it was allowed.
static int attempt(int64_t now_ms, hk_breaker_result_t r)
{
    hk_breaker_ticket_t t;
    if (!hk_breaker_allow(br, now_ms, &t))
        return 0;
    hk_breaker_record(br, now_ms, t, r);
    return 1;
}

static void attempts(int64_t now_ms, const char *pattern)
{
    for (const char *p = pattern; *p; p++) {
        ck_assert_msg(attempt(now_ms, *p == 'F'   ? F
                                      : *p == 'S' ? S
                                                  : I),
                      "attempt %d of \"%s\" deferred", (int)(p - pattern) + 1, pattern);
    }
}

static void drain_transitions(void)
{
    hk_breaker_state_t from, to;
    while (hk_breaker_take_transition(br, &from, &to))
        ;
}

static void expect_transition(hk_breaker_state_t from, hk_breaker_state_t to)
{
    hk_breaker_state_t f = HK_BREAKER_CLOSED, t = HK_BREAKER_CLOSED;
    ck_assert_int_eq(hk_breaker_take_transition(br, &f, &t), 1);
    ck_assert_msg(f == from && t == to, "transition %s -> %s, want %s -> %s",
                  hk_breaker_state_name(f), hk_breaker_state_name(t), hk_breaker_state_name(from),
                  hk_breaker_state_name(to));
}

static void expect_no_transition(void)
{
    hk_breaker_state_t f, t;
    ck_assert_int_eq(hk_breaker_take_transition(br, &f, &t), 0);
}

// Trips a default breaker at `now` with consecutive failures.
static void trip(int64_t now)
{
    attempts(now, "FFFFF");
    ck_assert_int_eq(hk_breaker_state(br, now), HK_BREAKER_OPEN);
}

// ---- CLOSED -----------------------------------------------------------------

START_TEST(test_breaker_starts_closed_and_allows)
{
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    ck_assert_int_eq(hk_breaker_open_until(br), 0);
    ck_assert_double_eq(hk_breaker_failure_rate(br), 0.0);
    for (int i = 0; i < 1000; i++)
        ck_assert(attempt(i, S));
    ck_assert_int_eq(hk_breaker_state(br, 1000), HK_BREAKER_CLOSED);
    expect_no_transition();
}
END_TEST

START_TEST(test_breaker_stays_closed_under_min_calls)
{
    hk_breaker_opts_t o = hk_breaker_opts_default();
    o.consecutive_failures = 0; // rate rule only
    recreate(o);
    attempts(0, "FSFSFSFSF"); // 5/9 failed, but only 9 calls
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    ck_assert_double_eq_tol(hk_breaker_failure_rate(br), 5.0 / 9, 1e-9);
    attempts(0, "F"); // 6/10
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_opens_at_failure_rate)
{
    attempts(0, "SFSFSFSFS"); // 4/9
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    attempts(0, "F"); // 5/10 = failure_rate
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_OPEN);
    expect_transition(HK_BREAKER_CLOSED, HK_BREAKER_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 30000);
}
END_TEST

START_TEST(test_breaker_rate_is_checked_on_every_call)
{
    // The success that brings the window to min_calls shows 5/10.
    attempts(0, "FSFSFSFSF");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    attempts(0, "S");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_stays_closed_below_failure_rate)
{
    for (int i = 0; i < 50; i++)
        attempts(0, "SSF"); // 1/3 < 0.5, never 5 in a row
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 0, &snap);
    ck_assert_int_eq(snap.calls, 20); // the window, not all 150 calls
    ck_assert_int_le(snap.failures, 7);
    expect_no_transition();
}
END_TEST

START_TEST(test_breaker_window_is_a_ring_of_the_last_calls)
{
    hk_breaker_opts_t o = hk_breaker_opts_default();
    o.window = 4;
    o.min_calls = 4;
    o.failure_rate = 0.75;
    o.consecutive_failures = 0;
    recreate(o);
    attempts(0, "FFSS"); // [F F S S] 2/4
    attempts(0, "F");    // [F S S F] 2/4: the first F fell out
    attempts(0, "F");    // [S S F F] 2/4
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    ck_assert_double_eq_tol(hk_breaker_failure_rate(br), 0.5, 1e-9);
    attempts(0, "F"); // [S F F F] 3/4 (cumulative would be 5/7, below 0.75)
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_opens_on_consecutive_failures)
{
    attempts(0, "SSSSSSSSSS");
    attempts(0, "FFFF");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    attempts(0, "S"); // breaks the run
    attempts(0, "FFFF");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    attempts(0, "F"); // 5 in a row; the rate is only 9/20
    ck_assert_double_eq_tol(hk_breaker_failure_rate(br), 9.0 / 20, 1e-9);
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_OPEN);
    expect_transition(HK_BREAKER_CLOSED, HK_BREAKER_OPEN);
    expect_no_transition();

    recreate(hk_breaker_opts_default());
    attempts(100, "FFFFF"); // 5 calls: under min_calls, the run alone trips
    ck_assert_int_eq(hk_breaker_state(br, 100), HK_BREAKER_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 30100);
}
END_TEST

START_TEST(test_breaker_ignores_4xx)
{
    for (int i = 0; i < 100; i++)
        attempts(0, "I");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 0, &snap);
    ck_assert_int_eq(snap.calls, 0);

    // ignored results neither count nor break a run of failures
    attempts(0, "FFFFIIIIIIIIII");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_CLOSED);
    hk_breaker_snapshot(br, 0, &snap);
    ck_assert_int_eq(snap.calls, 4);
    ck_assert_int_eq(snap.consecutive_failures, 4);
    attempts(0, "F");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_OPEN);
}
END_TEST

// ---- OPEN -------------------------------------------------------------------

START_TEST(test_breaker_open_defers_until_open_ms)
{
    trip(1000);
    ck_assert_int_eq(hk_breaker_open_until(br), 31000);
    for (int64_t now = 1000; now < 31000; now += 997) {
        hk_breaker_ticket_t t = {.gen = 12345};
        ck_assert_int_eq(hk_breaker_allow(br, now, &t), 0);
        ck_assert_uint_eq(t.gen, 0); // a deferred attempt gets no valid ticket
        ck_assert_int_eq(hk_breaker_state(br, now), HK_BREAKER_OPEN);
    }
    ck_assert_int_eq(hk_breaker_allow(br, 30999, NULL), 0);
    ck_assert_int_eq(hk_breaker_state(br, 30999), HK_BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_half_open_after_open_ms)
{
    trip(0);
    drain_transitions();
    // state() already reads HALF_OPEN, without changing anything
    ck_assert_int_eq(hk_breaker_state(br, 30000), HK_BREAKER_HALF_OPEN);
    expect_no_transition();
    hk_breaker_ticket_t t;
    ck_assert_int_eq(hk_breaker_allow(br, 30000, &t), 1);
    expect_transition(HK_BREAKER_OPEN, HK_BREAKER_HALF_OPEN);
    ck_assert_int_eq(hk_breaker_state(br, 30000), HK_BREAKER_HALF_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 0);
}
END_TEST

// ---- HALF_OPEN ----------------------------------------------------------------

START_TEST(test_breaker_half_open_limits_probes)
{
    trip(0);
    hk_breaker_ticket_t t[4];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(hk_breaker_allow(br, 30000, &t[i]), 1);
    ck_assert_int_eq(hk_breaker_allow(br, 30000, &t[3]), 0);
    ck_assert_int_eq(hk_breaker_allow(br, 99999, &t[3]), 0);

    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 30000, &snap);
    ck_assert_int_eq(snap.probes_in_flight, 3);

    // a 4xx says nothing about health: the slot goes to another attempt
    hk_breaker_record(br, 30001, t[0], I);
    ck_assert_int_eq(hk_breaker_state(br, 30001), HK_BREAKER_HALF_OPEN);
    ck_assert_int_eq(hk_breaker_allow(br, 30001, &t[0]), 1);
    ck_assert_int_eq(hk_breaker_allow(br, 30001, &t[3]), 0);

    // a success keeps its slot: only `probes` successes in total close it
    hk_breaker_record(br, 30002, t[1], S);
    ck_assert_int_eq(hk_breaker_allow(br, 30002, &t[3]), 0);
    hk_breaker_snapshot(br, 30002, &snap);
    ck_assert_int_eq(snap.probes_in_flight, 2);
    ck_assert_int_eq(snap.probes_succeeded, 1);
}
END_TEST

START_TEST(test_breaker_closes_when_all_probes_succeed)
{
    attempts(0, "SSSSSSSSSS");
    trip(0);
    drain_transitions();
    hk_breaker_ticket_t t[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(hk_breaker_allow(br, 30000, &t[i]), 1);
    hk_breaker_record(br, 30010, t[0], S);
    hk_breaker_record(br, 30020, t[1], S);
    ck_assert_int_eq(hk_breaker_state(br, 30020), HK_BREAKER_HALF_OPEN);
    hk_breaker_record(br, 30030, t[2], S);
    ck_assert_int_eq(hk_breaker_state(br, 30030), HK_BREAKER_CLOSED);
    expect_transition(HK_BREAKER_OPEN, HK_BREAKER_HALF_OPEN);
    expect_transition(HK_BREAKER_HALF_OPEN, HK_BREAKER_CLOSED);
    expect_no_transition();

    // the window was cleared: a fresh start
    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 30030, &snap);
    ck_assert_int_eq(snap.calls, 0);
    ck_assert_int_eq(snap.failures, 0);
    ck_assert_int_eq(snap.consecutive_failures, 0);
    ck_assert_double_eq(snap.failure_rate, 0.0);
    ck_assert_int_eq(hk_breaker_open_until(br), 0);
    attempts(30040, "FFFF");
    ck_assert_int_eq(hk_breaker_state(br, 30040), HK_BREAKER_CLOSED);
}
END_TEST

START_TEST(test_breaker_probe_failure_reopens_with_doubled_time)
{
    trip(0);
    hk_breaker_ticket_t t[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(hk_breaker_allow(br, 30000, &t[i]), 1);
    hk_breaker_record(br, 30100, t[0], S);
    hk_breaker_record(br, 30200, t[1], F); // any failure re-trips
    ck_assert_int_eq(hk_breaker_state(br, 30200), HK_BREAKER_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 30200 + 60000);
    ck_assert_int_eq(hk_breaker_allow(br, 90199, NULL), 0);
    ck_assert_int_eq(hk_breaker_state(br, 90200), HK_BREAKER_HALF_OPEN);

    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 30200, &snap);
    ck_assert_int_eq(snap.open_duration_ms, 60000);
    ck_assert_uint_eq(snap.trips, 2);
}
END_TEST

START_TEST(test_breaker_doubling_is_capped_at_max_open_ms)
{
    static const int64_t want[] = {60000, 120000, 240000, 480000, 600000, 600000, 600000};
    int64_t now = 0;
    trip(now);
    int64_t until = hk_breaker_open_until(br);
    ck_assert_int_eq(until - now, 30000);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        now = until;
        ck_assert(attempt(now, F)); // the first probe fails
        until = hk_breaker_open_until(br);
        ck_assert_int_eq(until - now, want[i]);
    }
}
END_TEST

START_TEST(test_breaker_open_time_resets_after_close)
{
    int64_t now = 0;
    trip(now);
    for (int i = 0; i < 3; i++) { // 60 s, 120 s, 240 s
        now = hk_breaker_open_until(br);
        ck_assert(attempt(now, F));
    }
    ck_assert_int_eq(hk_breaker_open_until(br) - now, 240000);
    now = hk_breaker_open_until(br);
    attempts(now, "SSS");
    ck_assert_int_eq(hk_breaker_state(br, now), HK_BREAKER_CLOSED);
    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, now, &snap);
    ck_assert_int_eq(snap.open_duration_ms, 30000);

    trip(now + 1);
    ck_assert_int_eq(hk_breaker_open_until(br), now + 1 + 30000);
    ck_assert(attempt(now + 1 + 30000, F));
    ck_assert_int_eq(hk_breaker_open_until(br), now + 1 + 30000 + 60000);
}
END_TEST

// ---- late results ---------------------------------------------------------------

START_TEST(test_breaker_ignores_late_results)
{
    // five slow attempts start while CLOSED
    hk_breaker_ticket_t slow[5];
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(hk_breaker_allow(br, 0, &slow[i]), 1);
    trip(10);
    drain_transitions();

    // a late success while OPEN does not close it
    hk_breaker_record(br, 20, slow[0], S);
    ck_assert_int_eq(hk_breaker_state(br, 20), HK_BREAKER_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 30010);

    // in HALF_OPEN, late results are neither probe successes nor probe failures
    hk_breaker_ticket_t probe[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(hk_breaker_allow(br, 30010, &probe[i]), 1);
    hk_breaker_record(br, 30020, slow[1], F);
    hk_breaker_record(br, 30020, slow[2], S);
    hk_breaker_record(br, 30020, slow[3], S);
    hk_breaker_record(br, 30020, slow[4], I); // nor does it free a probe slot
    ck_assert_int_eq(hk_breaker_state(br, 30020), HK_BREAKER_HALF_OPEN);
    ck_assert_int_eq(hk_breaker_allow(br, 30020, NULL), 0);
    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 30020, &snap);
    ck_assert_int_eq(snap.probes_in_flight, 3);
    ck_assert_int_eq(snap.probes_succeeded, 0);

    // a probe fails: re-trip; the other probes' results are now late too
    hk_breaker_record(br, 30030, probe[0], F);
    ck_assert_int_eq(hk_breaker_state(br, 30030), HK_BREAKER_OPEN);
    hk_breaker_record(br, 30040, probe[1], S);
    hk_breaker_record(br, 30040, probe[2], S);
    ck_assert_int_eq(hk_breaker_state(br, 30040), HK_BREAKER_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 30030 + 60000);

    // ... and after closing, results from before do not enter the new window
    int64_t now = hk_breaker_open_until(br);
    hk_breaker_ticket_t last_probe;
    ck_assert_int_eq(hk_breaker_allow(br, now, &last_probe), 1);
    attempts(now, "SS");
    hk_breaker_record(br, now, last_probe, S); // third success closes
    ck_assert_int_eq(hk_breaker_state(br, now), HK_BREAKER_CLOSED);
    hk_breaker_record(br, now, last_probe, F); // recorded twice by mistake: stale now
    hk_breaker_record(br, now, slow[1], F);
    hk_breaker_snapshot(br, now, &snap);
    ck_assert_int_eq(snap.calls, 0);
    ck_assert_int_eq(snap.consecutive_failures, 0);
}
END_TEST

START_TEST(test_breaker_deferred_ticket_is_never_counted)
{
    trip(0);
    hk_breaker_ticket_t t;
    ck_assert_int_eq(hk_breaker_allow(br, 1, &t), 0);
    attempts(30000, "SSS");
    ck_assert_int_eq(hk_breaker_state(br, 30000), HK_BREAKER_CLOSED);
    hk_breaker_record(br, 30001, t, F);
    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 30001, &snap);
    ck_assert_int_eq(snap.calls, 0);
}
END_TEST

// ---- reporting ------------------------------------------------------------------

START_TEST(test_breaker_reports_each_transition_once)
{
    trip(0);
    expect_transition(HK_BREAKER_CLOSED, HK_BREAKER_OPEN);
    expect_no_transition();
    ck_assert_int_eq(hk_breaker_allow(br, 100, NULL), 0); // still OPEN: nothing new
    expect_no_transition();

    ck_assert(attempt(30000, F));
    expect_transition(HK_BREAKER_OPEN, HK_BREAKER_HALF_OPEN);
    expect_transition(HK_BREAKER_HALF_OPEN, HK_BREAKER_OPEN);
    expect_no_transition();

    attempts(90000, "SS");
    expect_transition(HK_BREAKER_OPEN, HK_BREAKER_HALF_OPEN);
    expect_no_transition();
    attempts(90000, "S");
    expect_transition(HK_BREAKER_HALF_OPEN, HK_BREAKER_CLOSED);
    expect_no_transition();
    attempts(90000, "SSSSSSSSSS");
    expect_no_transition();
}
END_TEST

START_TEST(test_breaker_keeps_the_newest_transitions_when_not_taken)
{
    // 1 trip + 5 re-trips = 11 transitions, more than the queue holds
    int64_t now = 0;
    trip(now);
    for (int i = 0; i < 5; i++) {
        now = hk_breaker_open_until(br);
        ck_assert(attempt(now, F));
    }
    int n = 0;
    hk_breaker_state_t from, to, last_from = HK_BREAKER_CLOSED, last_to = HK_BREAKER_CLOSED;
    while (hk_breaker_take_transition(br, &from, &to)) {
        last_from = from;
        last_to = to;
        n++;
    }
    ck_assert_int_eq(n, HK_BREAKER_TRANSITIONS_MAX);
    ck_assert_int_eq(last_from, HK_BREAKER_HALF_OPEN);
    ck_assert_int_eq(last_to, HK_BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_snapshot_describes_the_state)
{
    attempts(0, "SSFSF");
    hk_breaker_snapshot_t snap;
    hk_breaker_snapshot(br, 5, &snap);
    ck_assert_int_eq(snap.state, HK_BREAKER_CLOSED);
    ck_assert_int_eq(snap.calls, 5);
    ck_assert_int_eq(snap.failures, 2);
    ck_assert_double_eq_tol(snap.failure_rate, 0.4, 1e-9);
    ck_assert_int_eq(snap.consecutive_failures, 1);
    ck_assert_int_eq(snap.open_until_ms, 0);
    ck_assert_int_eq(snap.open_duration_ms, 30000);
    ck_assert_uint_eq(snap.trips, 0);

    attempts(10, "FFFF");
    hk_breaker_snapshot(br, 10, &snap);
    ck_assert_int_eq(snap.state, HK_BREAKER_OPEN);
    ck_assert_int_eq(snap.open_until_ms, 30010);
    ck_assert_int_eq(snap.consecutive_failures, 5);
    ck_assert_uint_eq(snap.trips, 1);

    hk_breaker_snapshot(br, 30010, &snap);
    ck_assert_int_eq(snap.state, HK_BREAKER_HALF_OPEN);
    ck_assert_int_eq(snap.open_until_ms, 0);

    ck_assert_str_eq(hk_breaker_state_name(HK_BREAKER_CLOSED), "closed");
    ck_assert_str_eq(hk_breaker_state_name(HK_BREAKER_OPEN), "open");
    ck_assert_str_eq(hk_breaker_state_name(HK_BREAKER_HALF_OPEN), "half_open");
}
END_TEST

START_TEST(test_breaker_opts_are_clamped)
{
    hk_breaker_opts_t o = {
        .window = 0,
        .min_calls = 50,
        .failure_rate = 1.0,
        .consecutive_failures = 0,
        .open_ms = 0,
        .max_open_ms = -5,
        .probes = 0,
    };
    recreate(o); // window 1, min_calls 1, probes 1, open 1 ms, max 1 ms
    attempts(0, "F");
    ck_assert_int_eq(hk_breaker_state(br, 0), HK_BREAKER_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 1);
    ck_assert(attempt(1, F));
    ck_assert_int_eq(hk_breaker_open_until(br), 2); // doubling capped at 1 ms
    ck_assert(attempt(2, S));                       // one probe is enough
    ck_assert_int_eq(hk_breaker_state(br, 2), HK_BREAKER_CLOSED);

    // both rules off: never trips
    o = hk_breaker_opts_default();
    o.failure_rate = 0;
    o.consecutive_failures = 0;
    recreate(o);
    for (int i = 0; i < 100; i++)
        ck_assert(attempt(i, F));
    ck_assert_int_eq(hk_breaker_state(br, 100), HK_BREAKER_CLOSED);
}
END_TEST

// Another replica's open breaker (shared through Redis) opens this one until its
// end, holds an open one longer, and makes in-flight results stale.
START_TEST(test_breaker_force_open)
{
    hk_breaker_ticket_t t;
    ck_assert(hk_breaker_allow(br, 1000, &t)); // in flight when the remote trip arrives
    ck_assert_int_eq(hk_breaker_force_open(br, 1000, 1000), 0); // not in the future
    ck_assert_int_eq(hk_breaker_force_open(br, 1000, 5000), 1);
    ck_assert_int_eq(hk_breaker_state(br, 1000), HK_BREAKER_OPEN);
    ck_assert_int_eq(hk_breaker_open_until(br), 5000);
    expect_transition(HK_BREAKER_CLOSED, HK_BREAKER_OPEN);
    hk_breaker_record(br, 1100, t, S); // stale ticket: no effect
    ck_assert_int_eq(hk_breaker_state(br, 1100), HK_BREAKER_OPEN);
    ck_assert(!attempt(4999, S));
    // Held longer, never shortened.
    ck_assert_int_eq(hk_breaker_force_open(br, 2000, 4000), 0);
    ck_assert_int_eq(hk_breaker_open_until(br), 5000);
    ck_assert_int_eq(hk_breaker_force_open(br, 2000, 6000), 1);
    ck_assert_int_eq(hk_breaker_open_until(br), 6000);
    // Half-opens at the end as usual, and closes on good probes.
    ck_assert(!attempt(5999, S));
    attempts(6000, "SSS");
    ck_assert_int_eq(hk_breaker_state(br, 6000), HK_BREAKER_CLOSED);
}
END_TEST

START_TEST(test_breaker_open_until_saturates)
{
    int64_t now = INT64_MAX - 10;
    trip(now);
    ck_assert_int_eq(hk_breaker_open_until(br), INT64_MAX);
    ck_assert_int_eq(hk_breaker_allow(br, INT64_MAX - 1, NULL), 0);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("breaker");

    TCase *tc = tcase_create("closed");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_add_test(tc, test_breaker_starts_closed_and_allows);
    tcase_add_test(tc, test_breaker_stays_closed_under_min_calls);
    tcase_add_test(tc, test_breaker_opens_at_failure_rate);
    tcase_add_test(tc, test_breaker_rate_is_checked_on_every_call);
    tcase_add_test(tc, test_breaker_stays_closed_below_failure_rate);
    tcase_add_test(tc, test_breaker_window_is_a_ring_of_the_last_calls);
    tcase_add_test(tc, test_breaker_opens_on_consecutive_failures);
    tcase_add_test(tc, test_breaker_ignores_4xx);
    suite_add_tcase(s, tc);

    tc = tcase_create("open");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_add_test(tc, test_breaker_open_defers_until_open_ms);
    tcase_add_test(tc, test_breaker_half_open_after_open_ms);
    tcase_add_test(tc, test_breaker_open_until_saturates);
    suite_add_tcase(s, tc);

    tc = tcase_create("half_open");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_add_test(tc, test_breaker_half_open_limits_probes);
    tcase_add_test(tc, test_breaker_closes_when_all_probes_succeed);
    tcase_add_test(tc, test_breaker_probe_failure_reopens_with_doubled_time);
    tcase_add_test(tc, test_breaker_doubling_is_capped_at_max_open_ms);
    tcase_add_test(tc, test_breaker_open_time_resets_after_close);
    suite_add_tcase(s, tc);

    tc = tcase_create("late_results");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_add_test(tc, test_breaker_ignores_late_results);
    tcase_add_test(tc, test_breaker_deferred_ticket_is_never_counted);
    suite_add_tcase(s, tc);

    tc = tcase_create("reporting");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_add_test(tc, test_breaker_reports_each_transition_once);
    tcase_add_test(tc, test_breaker_keeps_the_newest_transitions_when_not_taken);
    tcase_add_test(tc, test_breaker_snapshot_describes_the_state);
    tcase_add_test(tc, test_breaker_opts_are_clamped);
    tcase_add_test(tc, test_breaker_force_open);
    suite_add_tcase(s, tc);
    return s;
}
