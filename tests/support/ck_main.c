// The one main() of every Check suite (tests/support/ck_main.h). Named *_main.c so
// the testkit library leaves it out; CMakeLists.txt links it into each suite.
#include "tests/support/ck_main.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/support/harness.h"

TCase *hk_ck_case(Suite *s, const char *name, int timeout_s, void (*setup)(void),
                  void (*teardown)(void), const TTest *test)
{
    TCase *tc = tcase_create(name);
    if (timeout_s > 0)
        tcase_set_timeout(tc, timeout_s);
    if (setup || teardown)
        tcase_add_checked_fixture(tc, setup, teardown);
    if (test)
        tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
    return tc;
}

int main(void)
{
    hk_ck_run_t run = {0};
    SRunner *sr = srunner_create(hk_test_suite(&run));
    if (run.nofork)
        srunner_set_fork_status(sr, CK_NOFORK);
    if (run.curl)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = 1;
    static char pg_tmp[] = "/tmp/hk-run-XXXXXX";
    bool pg_up = run.pg && hk_th_pg_run_start(run.pg, pg_tmp, program_invocation_short_name) == 0;
    if (run.pg && !pg_up) {
        fprintf(stderr, "the suite's Postgres did not start: no test ran\n");
    } else if (!run.before || run.before() == 0) {
        srunner_run_all(sr, run.print_from_env ? CK_ENV : CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        if (run.after)
            run.after(failed);
    } else {
        fprintf(stderr, "the suite's set-up failed: no test ran\n");
    }
    if (pg_up)
        hk_th_pg_run_stop(run.pg, pg_tmp);
    srunner_free(sr);
    if (run.curl)
        curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
