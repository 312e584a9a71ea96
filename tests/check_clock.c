// check_clock: base/clock.c, the two clocks and the sleep hookd uses.
//   - the monotonic clock never goes back and advances with real time;
//   - the wall clock is the epoch time time(2) gives, in milliseconds;
//   - hk_clock_sleep_ms sleeps at least what it is asked, even when signals
//     interrupt it every few milliseconds (it resumes with the time left).
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/clock.h"
#include "tests/support/ck_main.h"

START_TEST(test_mono_never_goes_back)
{
    int64_t prev = hk_clock_mono_ms();
    for (int i = 0; i < 200000; i++) {
        int64_t now = hk_clock_mono_ms();
        ck_assert_int_ge(now, prev);
        prev = now;
    }
}
END_TEST

START_TEST(test_wall_is_epoch_milliseconds)
{
    int64_t before = (int64_t)time(NULL) * 1000;
    int64_t wall = hk_clock_wall_ms();
    int64_t after = ((int64_t)time(NULL) + 1) * 1000;
    // Milliseconds, not seconds or microseconds: within the second time(2) saw.
    ck_assert_int_ge(wall, before);
    ck_assert_int_lt(wall, after);
}
END_TEST

START_TEST(test_sleep_lasts_at_least_what_was_asked)
{
    int64_t t0 = hk_clock_mono_ms();
    hk_clock_sleep_ms(120);
    int64_t slept = hk_clock_mono_ms() - t0;
    ck_assert_int_ge(slept, 120);
    // A sleep that took seconds would be a unit error (ms read as s); a loaded
    // machine stretches 120 ms by far less than that.
    ck_assert_int_lt(slept, 5000);
}
END_TEST

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
    (void)sig;
    ticks++;
}

START_TEST(test_sleep_resumes_after_signals)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; // no SA_RESTART: nanosleep returns EINTR
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval every_5ms = {{0, 5000}, {0, 5000}};
    setitimer(ITIMER_REAL, &every_5ms, NULL);
    ticks = 0;
    int64_t t0 = hk_clock_mono_ms();
    hk_clock_sleep_ms(200);
    int64_t slept = hk_clock_mono_ms() - t0;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    ck_assert_msg(ticks >= 5, "only %d signals arrived during the sleep", (int)ticks);
    ck_assert_msg(slept >= 200, "slept %lld ms of 200 with %d signals", (long long)slept,
                  (int)ticks);
}
END_TEST

START_TEST(test_sleep_zero_returns_at_once)
{
    int64_t t0 = hk_clock_mono_ms();
    hk_clock_sleep_ms(0);
    ck_assert_int_lt(hk_clock_mono_ms() - t0, 1000);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("clock");
    TCase *tc = tcase_create("clock");
    tcase_add_test(tc, test_mono_never_goes_back);
    tcase_add_test(tc, test_wall_is_epoch_milliseconds);
    tcase_add_test(tc, test_sleep_lasts_at_least_what_was_asked);
    tcase_add_test(tc, test_sleep_resumes_after_signals);
    tcase_add_test(tc, test_sleep_zero_returns_at_once);
    suite_add_tcase(s, tc);
    return s;
}
