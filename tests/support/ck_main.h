// ck_main: the one Check runner every suite shares (tests/support/ck_main.c holds
// main). A suite file defines hk_test_suite(), which builds its Suite and may set
// what the run needs around it in *run; main creates the runner, runs it in
// CK_NORMAL mode (CK_FORK and CK_RUN_SUITE/CK_RUN_CASE from the environment as
// Check reads them, unless `nofork`), and exits non-zero when a test failed.
#ifndef HK_CK_MAIN_H
#define HK_CK_MAIN_H

#include <check.h>
#include <stdbool.h>

typedef struct hk_ck_run {
    // Tests run in this process (CK_NOFORK) whatever CK_FORK says: the suite
    // keeps servers it started (its children) or state across tests.
    bool nofork;
    // curl_global_init before the run, curl_global_cleanup after.
    bool curl;
    // Print mode from CK_VERBOSITY (CK_ENV) instead of CK_NORMAL.
    bool print_from_env;
    // A private Postgres for the whole run, started before `before` and stopped
    // after `after` (hk_th_pg_run_start): every server of the run lives under one
    // temp dir, its TMPDIR, removed at the end, since a test that fails inside a
    // forked child cannot clean up its own.
    struct hk_pgsvc *pg;
    // Once before the run (servers, temp dirs). Nonzero: no test runs and the
    // suite fails (before cleans up what it started itself).
    int (*before)(void);
    // Once after the run with the number of failed tests (stops what before started).
    void (*after)(int failed);
} hk_ck_run_t;

// Defined by each suite file; *run starts zeroed.
Suite *hk_test_suite(hk_ck_run_t *run);

// One case of one test: `name` for CK_RUN_CASE, `timeout_s` (0: Check's default),
// `setup`/`teardown` checked fixtures (may be NULL).
TCase *hk_ck_case(Suite *s, const char *name, int timeout_s, void (*setup)(void),
                  void (*teardown)(void), const TTest *test);

#endif
