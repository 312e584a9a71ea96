// check_err: hk_err_set formats, truncates with a NUL, and leaves alone a
// buffer the caller did not give.
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tests/support/ck_main.h"

START_TEST(test_err_formats_the_message)
{
    char err[64];
    memset(err, 'x', sizeof(err));
    hk_err_set(err, sizeof(err), "config line %d: %s must be %s", 12, "retry.base_ms", "positive");
    ck_assert_str_eq(err, "config line 12: retry.base_ms must be positive");
}
END_TEST

START_TEST(test_err_truncates_and_terminates)
{
    char err[8];
    memset(err, 'x', sizeof(err));
    hk_err_set(err, sizeof(err), "%s", "a message longer than eight");
    ck_assert_str_eq(err, "a messa");
    char one[1] = {'x'};
    hk_err_set(one, sizeof(one), "anything");
    ck_assert_uint_eq(one[0], '\0');
}
END_TEST

START_TEST(test_err_null_or_empty_buffer_is_left_alone)
{
    hk_err_set(NULL, 64, "no buffer %d", 1); // must not crash
    char err[4] = {'x', 'y', 'z', 'w'};
    hk_err_set(err, 0, "size 0 %d", 1);
    ck_assert_mem_eq(err, "xyzw", 4);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("err");
    TCase *tc = tcase_create("set");
    tcase_add_test(tc, test_err_formats_the_message);
    tcase_add_test(tc, test_err_truncates_and_terminates);
    tcase_add_test(tc, test_err_null_or_empty_buffer_is_left_alone);
    suite_add_tcase(s, tc);
    return s;
}
