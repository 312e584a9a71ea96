// check_pgstore: the Postgres layer (store/pg, migrate, checkpoint, dlstore)
// against real throwaway servers (tests/support/pgsvc.h). One server serves the
// whole suite, started in main(); each test gets a fresh schema on it (the
// migration tests a fresh database). The outage tests start a server of their
// own so they can stop and restart it. Works with CK_FORK=yes and CK_FORK=no.
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/checkpoint.h"
#include "store/dlstore.h"
#include "store/migrate.h"
#include "store/pg.h"
#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/pgsvc.h"

static hk_pgsvc_t svc;     // the suite's server
static hk_pgsvc_t outage;  // the outage tests' own server
static char conninfo[768]; // the current test's database
static hk_pg_t *pg;
static char err[1024];

// What a test holds is released in teardown: with CK_FORK=no a failed assertion
// leaves the test by longjmp, and anything freed at its end would leak.
static json_t *held_json[8];
static size_t held_json_cnt;
static hk_pg_t *held_pg[4];
static size_t held_pg_cnt;

static json_t *hold_json(json_t *j)
{
    ck_assert_uint_lt(held_json_cnt, sizeof(held_json) / sizeof(held_json[0]));
    held_json[held_json_cnt++] = j;
    return j;
}

static hk_pg_t *new_pg(const char *ci, int reconnect_max_ms)
{
    hk_pg_opts_t o = {
        .conninfo = ci, .connect_timeout_ms = 2000, .reconnect_max_ms = reconnect_max_ms};
    hk_pg_t *p = hk_pg_new(&o);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_lt(held_pg_cnt, sizeof(held_pg) / sizeof(held_pg[0]));
    held_pg[held_pg_cnt++] = p;
    return p;
}

// A database of its own for the current test on `s`, into conninfo.
static void fresh_db(hk_pgsvc_t *s)
{
    static int seq;
    char name[64];
    snprintf(name, sizeof(name), "t_%d_%d_%lld", (int)getpid(), seq++,
             (long long)(hk_th_now_ms() % 1000000));
    ck_assert_int_eq(hk_pgsvc_create_db(s, name, conninfo, sizeof(conninfo)), 0);
}

// A schema of its own in the server's hookd database, made the connection's
// search_path: as isolated as a fresh database for everything but migrations'
// advisory lock, and ten times quicker to create.
static void fresh_schema(hk_pgsvc_t *s)
{
    static int seq;
    char name[64], sql[128];
    snprintf(name, sizeof(name), "s_%d_%d", (int)getpid(), seq++);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", name);
    ck_assert_int_eq(hk_pgsvc_exec(s->conninfo, sql), 0);
    snprintf(conninfo, sizeof(conninfo), "%s options='-c search_path=%s'", s->conninfo, name);
}

static void migrate_ok(hk_pg_t *p)
{
    int applied = -1;
    ck_assert_msg(hk_migrate_apply(p, &applied, err, sizeof(err)) == 0, "migrate: %s", err);
}

// First cell of a one-row query as text (static buffer), NULL -> "<null>".
static const char *q1(hk_pg_t *p, const char *sql)
{
    static char out[1024];
    PGresult *r = hk_pg_exec_script(p, sql, 0, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s: %s", sql, err);
    ck_assert_msg(PQntuples(r) == 1, "%s: %d rows", sql, PQntuples(r));
    snprintf(out, sizeof(out), "%s", PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static long long q1_int(hk_pg_t *p, const char *sql)
{
    return strtoll(q1(p, sql), NULL, 10);
}

static void setup_schema(void)
{
    fresh_schema(&svc);
    pg = new_pg(conninfo, 500);
}

static void setup_schema_migrated(void)
{
    setup_schema();
    migrate_ok(pg);
}

static void setup_db(void)
{
    fresh_db(&svc);
    pg = new_pg(conninfo, 500);
}

static void setup_outage(void)
{
    ck_assert_msg(hk_pgsvc_start(&outage) == 0, "could not start the outage server");
    fresh_db(&outage);
    pg = new_pg(conninfo, 400);
}

static void teardown(void)
{
    for (size_t i = 0; i < held_json_cnt; i++)
        json_decref(held_json[i]);
    held_json_cnt = 0;
    for (size_t i = 0; i < held_pg_cnt; i++)
        hk_pg_destroy(held_pg[i]);
    held_pg_cnt = 0;
    pg = NULL;
}

static void teardown_outage(void)
{
    teardown();
    hk_pgsvc_destroy(&outage);
}

// ---- pg ----------------------------------------------------------------------

START_TEST(test_pg_exec_prepares_and_reports_server_errors)
{
    const char *params[] = {"41"};
    PGresult *r = hk_pg_exec(pg, "t_add", "SELECT $1::int + 1", 1, params, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "42");
    PQclear(r);
    ck_assert_int_eq(hk_pg_up(pg), 1);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM pg_prepared_statements WHERE name = 't_add'"),
                     1);

    // A server error leaves the connection up, with the server's primary message.
    r = hk_pg_exec(pg, "t_div", "SELECT 1 / $1::int", 1, (const char *[]){"0"}, err, sizeof(err));
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "division by zero");
    ck_assert_int_eq(hk_pg_up(pg), 1);

    // A name is bound to its sql.
    r = hk_pg_exec(pg, "t_add", "SELECT 2", 0, NULL, err, sizeof(err));
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "statement t_add is already prepared with other sql");

    // Detail goes in parentheses.
    hk_pgsvc_exec(conninfo, "CREATE TABLE t_u (k int PRIMARY KEY)");
    r = hk_pg_exec(pg, "t_ins", "INSERT INTO t_u VALUES (1), (1)", 0, NULL, err, sizeof(err));
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "duplicate key value violates unique constraint \"t_u_pkey\" "
                          "(Key (k)=(1) already exists.)");
}
END_TEST

START_TEST(test_pg_accepts_postgresql_uri)
{
    char db[128], uri[600];
    PGresult *r = hk_pg_exec_script(pg, "SELECT current_database()", 0, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    snprintf(db, sizeof(db), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    snprintf(uri, sizeof(uri), "postgresql://postgres@/%s?host=%s&port=%d&connect_timeout=2", db,
             svc.dir, svc.port);
    hk_pg_t *p = new_pg(uri, 500);
    ck_assert_msg(hk_pg_ensure(p, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(q1(p, "SELECT current_database()"), db);
    ck_assert_str_eq(q1(p, "SELECT current_setting('application_name')"), "hookd");
    ck_assert_str_eq(q1(p, "SELECT current_setting('statement_timeout')"), "30s");
}
END_TEST

START_TEST(test_pg_commit_of_failed_transaction_fails)
{
    hk_pgsvc_exec(conninfo, "CREATE TABLE t_tx (k int PRIMARY KEY)");
    ck_assert_int_eq(hk_pg_begin(pg, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_pg_in_transaction(pg), 1);
    PGresult *r =
        hk_pg_exec(pg, "t_ins1", "INSERT INTO t_tx VALUES (1)", 0, NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(r);
    PQclear(r);
    r = hk_pg_exec(pg, "t_bad", "SELECT 1 / 0", 0, NULL, err, sizeof(err));
    ck_assert_ptr_null(r);
    ck_assert_int_eq(hk_pg_commit(pg, err, sizeof(err)), -1);
    ck_assert_str_eq(err,
                     "the transaction was rolled back by the server (a statement in it failed)");
    ck_assert_int_eq(hk_pg_in_transaction(pg), 0);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM t_tx"), 0);

    // And a good one commits.
    ck_assert_int_eq(hk_pg_begin(pg, err, sizeof(err)), 0);
    r = hk_pg_exec(pg, "t_ins1", "INSERT INTO t_tx VALUES (1)", 0, NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(r);
    PQclear(r);
    ck_assert_int_eq(hk_pg_commit(pg, err, sizeof(err)), 0);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM t_tx"), 1);
}
END_TEST

START_TEST(test_pg_statement_timeout_cancels_but_keeps_connection)
{
    hk_pg_opts_t o = {.conninfo = conninfo, .query_timeout_ms = 300};
    hk_pg_t *p = hk_pg_new(&o);
    held_pg[held_pg_cnt++] = p;
    int64_t t0 = hk_th_now_ms();
    PGresult *r = hk_pg_exec(p, "t_sleep", "SELECT pg_sleep(3)", 0, NULL, err, sizeof(err));
    int64_t took = hk_th_now_ms() - t0;
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "canceling statement due to statement timeout");
    ck_assert_int_lt(took, 2000);
    ck_assert_int_eq(hk_pg_up(p), 1);
    ck_assert_str_eq(q1(p, "SELECT 'still here'"), "still here");
}
END_TEST

START_TEST(test_pg_connect_times_out_on_silent_server)
{
    // A listening socket that never answers: the TCP handshake completes, the
    // startup packet is never answered.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char ci[128];
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d dbname=x user=x", ntohs(sa.sin_port));
    hk_pg_opts_t o = {.conninfo = ci, .connect_timeout_ms = 300, .reconnect_max_ms = 1000};
    hk_pg_t *p = hk_pg_new(&o);
    held_pg[held_pg_cnt++] = p;
    int64_t t0 = hk_th_now_ms();
    int rc = hk_pg_ensure(p, err, sizeof(err));
    int64_t took = hk_th_now_ms() - t0;
    close(fd);
    ck_assert_int_eq(rc, -1);
    ck_assert_str_eq(err, "postgres unavailable, next attempt in 100 ms: connection attempt timed "
                          "out after 300 ms");
    ck_assert_int_ge(took, 280);
    ck_assert_int_lt(took, 1500);
    ck_assert_int_eq(hk_pg_up(p), 0);
}
END_TEST

START_TEST(test_pg_backoff_doubles_up_to_max)
{
    hk_pg_opts_t o = {.conninfo = "host=/nonexistent-hk port=1 dbname=x user=x",
                      .reconnect_max_ms = 350};
    hk_pg_t *p = hk_pg_new(&o);
    held_pg[held_pg_cnt++] = p;
    const int want[] = {100, 200, 350, 350};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(hk_pg_ensure(p, err, sizeof(err)), -1);
        char prefix[80];
        snprintf(prefix, sizeof(prefix), "postgres unavailable, next attempt in %d ms: ", want[i]);
        ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "attempt %d: %s", i, err);
        ck_assert_ptr_nonnull(strstr(err, "nonexistent-hk"));
        // Inside the window: fails at once, without trying.
        int64_t t0 = hk_th_now_ms();
        ck_assert_int_eq(hk_pg_ensure(p, err, sizeof(err)), -1);
        ck_assert_int_lt(hk_th_now_ms() - t0, 20);
        ck_assert_ptr_nonnull(strstr(err, "postgres unavailable, next attempt in "));
        hk_th_sleep_ms(want[i] + 20);
    }
}
END_TEST

START_TEST(test_pg_utf8_and_arrays)
{
    char *copy;
    const char *ok = "plain ascii and \xc3\xa9";
    ck_assert_ptr_eq(hk_pg_utf8(ok, &copy), ok);
    ck_assert_ptr_null(copy);
    const char *s = hk_pg_utf8("bad \xff and \xc3\x28 and \xed\xa0\x80.", &copy);
    ck_assert_ptr_nonnull(copy);
    ck_assert_str_eq(s, "bad ? and ?( and ???.");
    free(copy);

    hk_pg_array_t a;
    hk_pg_array_init(&a);
    hk_pg_array_text(&a, "a\"b\\c,{}");
    hk_pg_array_text(&a, NULL);
    hk_pg_array_text(&a, "");
    hk_pg_array_text(&a, "NULL");
    const char *lit = hk_pg_array_finish(&a);
    ck_assert_str_eq(lit, "{\"a\\\"b\\\\c,{}\",NULL,\"\",\"NULL\"}");
    // The server reads it back element for element.
    const char *params[] = {lit};
    PGresult *r =
        hk_pg_exec(pg, "t_arr", "SELECT x IS NULL, coalesce(x, '') FROM unnest($1::text[]) AS x", 1,
                   params, err, sizeof(err));
    hk_pg_array_free(&a);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(PQntuples(r), 4);
    ck_assert_str_eq(PQgetvalue(r, 0, 1), "a\"b\\c,{}");
    ck_assert_str_eq(PQgetvalue(r, 1, 0), "t");
    ck_assert_str_eq(PQgetvalue(r, 2, 0), "f");
    ck_assert_str_eq(PQgetvalue(r, 2, 1), "");
    ck_assert_str_eq(PQgetvalue(r, 3, 1), "NULL");
    PQclear(r);
}
END_TEST

// ---- outages (own server) ----------------------------------------------------

START_TEST(test_pg_reconnects_after_outage)
{
    const char *params[] = {"1"};
    const char *sql = "SELECT $1::int + 1";
    PGresult *r = hk_pg_exec(pg, "t_next", sql, 1, params, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    PQclear(r);

    ck_assert_int_eq(hk_pgsvc_stop(&outage), 0);
    r = hk_pg_exec(pg, "t_next", sql, 1, params, err, sizeof(err));
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err, "connection") || strstr(err, "server closed"), "error: %s", err);
    ck_assert_int_eq(hk_pg_up(pg), 0);
    ck_assert_ptr_null(hk_pg_conn(pg));

    // Inside the backoff window: refused at once, saying when the next try is.
    hk_pg_ensure(pg, err, sizeof(err));
    int64_t t0 = hk_th_now_ms();
    ck_assert_int_eq(hk_pg_ensure(pg, err, sizeof(err)), -1);
    ck_assert_int_lt(hk_th_now_ms() - t0, 20);
    ck_assert_msg(strncmp(err, "postgres unavailable, next attempt in ", 38) == 0, "%s", err);

    ck_assert_int_eq(hk_pgsvc_restart(&outage), 0);
    t0 = hk_th_now_ms();
    while (hk_pg_ensure(pg, err, sizeof(err)) != 0) {
        ck_assert_msg(hk_th_now_ms() - t0 < 5000, "no reconnect within 5 s: %s", err);
        hk_th_sleep_ms(50);
    }
    ck_assert_int_eq(hk_pg_up(pg), 1);
    ck_assert_ptr_nonnull(hk_pg_conn(pg));
    // The statement is prepared again on the new connection.
    r = hk_pg_exec(pg, "t_next", sql, 1, params, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "2");
    PQclear(r);
    ck_assert_int_eq(
        q1_int(pg, "SELECT count(*) FROM pg_prepared_statements WHERE name = 't_next'"), 1);
}
END_TEST

START_TEST(test_pg_transaction_not_continued_after_reconnect)
{
    hk_pgsvc_exec(conninfo, "CREATE TABLE t_tx (k int)");
    ck_assert_int_eq(hk_pg_begin(pg, err, sizeof(err)), 0);
    PGresult *r = hk_pg_exec(pg, "t_ins", "INSERT INTO t_tx VALUES (1)", 0, NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(r);
    PQclear(r);

    ck_assert_int_eq(hk_pgsvc_stop(&outage), 0);
    ck_assert_int_eq(hk_pgsvc_restart(&outage), 0);
    // The old connection is gone; the rest of the transaction must not run in
    // autocommit on a new one.
    r = hk_pg_exec(pg, "t_ins", "INSERT INTO t_tx VALUES (1)", 0, NULL, err, sizeof(err));
    ck_assert_ptr_null(r);
    r = hk_pg_exec(pg, "t_ins", "INSERT INTO t_tx VALUES (1)", 0, NULL, err, sizeof(err));
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "the connection to postgres was lost inside a transaction; roll it back");
    ck_assert_int_eq(hk_pg_commit(pg, err, sizeof(err)), -1);
    hk_pg_rollback(pg);
    ck_assert_int_eq(hk_pg_in_transaction(pg), 0);

    int64_t t0 = hk_th_now_ms();
    while (hk_pg_ensure(pg, err, sizeof(err)) != 0) {
        ck_assert_msg(hk_th_now_ms() - t0 < 5000, "no reconnect: %s", err);
        hk_th_sleep_ms(50);
    }
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM t_tx"), 0);
}
END_TEST

START_TEST(test_ckpt_flush_while_down_writes_nothing)
{
    migrate_ok(pg);
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b-out", "acme", 10, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    hk_ckpt_item_t first[] = {{0, HK_ITEM_SUCCEEDED, 1, 200, NULL}};
    ck_assert_int_eq(hk_ckpt_flush(pg, "b-out", "acme", first, 1, 1, NULL, err, sizeof(err)), 0);

    ck_assert_int_eq(hk_pgsvc_stop(&outage), 0);
    hk_ckpt_item_t more[] = {{1, HK_ITEM_SUCCEEDED, 1, 200, NULL},
                             {2, HK_ITEM_FAILED, 3, 500, "HTTP 500"}};
    ck_assert_int_eq(hk_ckpt_flush(pg, "b-out", "acme", more, 2, 3, NULL, err, sizeof(err)), -1);
    ck_assert_msg(err[0] != '\0', "no error message");
    ck_assert_int_eq(hk_pg_up(pg), 0);

    ck_assert_int_eq(hk_pgsvc_restart(&outage), 0);
    int64_t t0 = hk_th_now_ms();
    while (hk_pg_ensure(pg, err, sizeof(err)) != 0) {
        ck_assert_msg(hk_th_now_ms() - t0 < 5000, "no reconnect: %s", err);
        hk_th_sleep_ms(50);
    }
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM batch_items WHERE batch_id = 'b-out'"), 1);
    ck_assert_str_eq(q1(pg, "SELECT succeeded || '/' || failed || '/' || cursor FROM batches"
                            " WHERE id = 'b-out'"),
                     "1/0/1");
    // Retried after the outage, it lands once.
    ck_assert_int_eq(hk_ckpt_flush(pg, "b-out", "acme", more, 2, 3, NULL, err, sizeof(err)), 0);
    ck_assert_str_eq(q1(pg, "SELECT succeeded || '/' || failed || '/' || cursor FROM batches"
                            " WHERE id = 'b-out'"),
                     "2/1/3");
}
END_TEST

// ---- migrations --------------------------------------------------------------

START_TEST(test_migrate_fresh_applies_all_then_none)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_int_eq(hk_migrate_status(pg, out, err, sizeof(err)), 0);
    fclose(out);
    ck_assert_str_eq(buf, "1\tinit\tpending\n2\tbatch_tenant\tpending\n");
    free(buf);

    int applied = -1;
    ck_assert_msg(hk_migrate_apply(pg, &applied, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(applied, (int)hk_migrations_cnt);
    ck_assert_int_eq(applied, 2);
    ck_assert_int_eq(hk_migrate_apply(pg, &applied, err, sizeof(err)), 0);
    ck_assert_int_eq(applied, 0);

    ck_assert_str_eq(q1(pg, "SELECT to_regclass('batches') IS NOT NULL AND"
                            " to_regclass('batch_items') IS NOT NULL AND"
                            " to_regclass('dead_letters') IS NOT NULL"),
                     "t");
    char sum[65];
    hk_migrate_checksum(&hk_migrations[0], sum);
    ck_assert_uint_eq(strlen(sum), 64);
    char want[128];
    snprintf(want, sizeof(want), "1 init %s", sum);
    ck_assert_str_eq(q1(pg, "SELECT version || ' ' || name || ' ' || checksum"
                            " FROM hookd_schema_migrations WHERE version = 1"),
                     want);

    out = open_memstream(&buf, &len);
    ck_assert_int_eq(hk_migrate_status(pg, out, err, sizeof(err)), 0);
    fclose(out);
    ck_assert_msg(strncmp(buf, "1\tinit\t20", 9) == 0 && strchr(buf, 'Z') != NULL, "status: %s",
                  buf);
    free(buf);
}
END_TEST

START_TEST(test_migrate_rejects_changed_checksum)
{
    migrate_ok(pg);
    hk_pgsvc_exec(conninfo, "UPDATE hookd_schema_migrations SET checksum = repeat('0', 64)");
    int applied = -1;
    ck_assert_int_eq(hk_migrate_apply(pg, &applied, err, sizeof(err)), -1);
    ck_assert_int_eq(applied, 0);
    char sum[65], want[512];
    hk_migrate_checksum(&hk_migrations[0], sum);
    snprintf(want, sizeof(want),
             "migration 1 (init) was changed after it was applied: checksum %064d in the "
             "database, %s in this binary",
             0, sum);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(hk_pg_in_transaction(pg), 0);

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_int_eq(hk_migrate_status(pg, out, err, sizeof(err)), 0);
    fclose(out);
    ck_assert_msg(strstr(buf, "\tchanged after it was applied\n") != NULL, "status: %s", buf);
    free(buf);
}
END_TEST

START_TEST(test_migrate_rejects_unknown_version)
{
    migrate_ok(pg);
    hk_pgsvc_exec(conninfo, "INSERT INTO hookd_schema_migrations (version, name, checksum)"
                            " VALUES (7, 'future', 'x')");
    int applied = -1;
    ck_assert_int_eq(hk_migrate_apply(pg, &applied, err, sizeof(err)), -1);
    ck_assert_str_eq(
        err, "database has migration 7, unknown to this hookd (newest known: 2); upgrade hookd");

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_int_eq(hk_migrate_status(pg, out, err, sizeof(err)), 0);
    fclose(out);
    ck_assert_msg(strstr(buf, "\n7\tfuture\t") != NULL &&
                      strstr(buf, "\tunknown to this hookd\n") != NULL,
                  "status: %s", buf);
    free(buf);
}
END_TEST

START_TEST(test_migrate_failure_rolls_back_everything)
{
    hk_pgsvc_exec(conninfo, "CREATE TABLE dead_letters (x int)");
    int applied = -1;
    ck_assert_int_eq(hk_migrate_apply(pg, &applied, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "migration 1 (init) failed: relation \"dead_letters\" already exists");
    ck_assert_int_eq(applied, 0);
    // Not even the bookkeeping table or the first tables of the script remain.
    ck_assert_str_eq(q1(pg, "SELECT coalesce(to_regclass('hookd_schema_migrations')::text, '-')"
                            " || coalesce(to_regclass('batches')::text, '-')"),
                     "--");
}
END_TEST

// 0002 on a database 0001 made and filled: the rows keep their batch's tenant,
// and afterwards the same id can be opened for another tenant.
START_TEST(test_migrate_batch_tenant_keeps_existing_rows)
{
    ck_assert_uint_ge(hk_migrations_cnt, 2);
    ck_assert_str_eq(hk_migrations[1].name, "batch_tenant");
    PGresult *r = hk_pg_exec_script(pg, hk_migrations[0].sql, 0, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    PQclear(r);
    r = hk_pg_exec_script(pg,
                          "INSERT INTO batches (id, tenant, total, succeeded) VALUES"
                          " ('b1', 'acme', 2, 1), ('b2', 'zeta', 1, 0);"
                          " INSERT INTO batch_items (batch_id, idx, status) VALUES"
                          " ('b1', 0, 'succeeded');",
                          0, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    PQclear(r);
    r = hk_pg_exec_script(pg, hk_migrations[1].sql, 0, err, sizeof(err));
    ck_assert_msg(r != NULL, "0002: %s", err);
    PQclear(r);
    ck_assert_str_eq(q1(pg, "SELECT tenant || '/' || batch_id || '/' || idx FROM batch_items"),
                     "acme/b1/0");
    hk_ckpt_batch_t b;
    ck_assert_msg(hk_ckpt_open(pg, "b1", "acme", 2, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(hk_ckpt_is_terminal(&b, 0), 1);
    ck_assert_int_eq(b.succeeded, 1);
    hk_ckpt_batch_free(&b);
    ck_assert_msg(hk_ckpt_open(pg, "b1", "other", 5, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(hk_ckpt_is_terminal(&b, 0), 0);
    hk_ckpt_batch_free(&b);
    hk_ckpt_item_t it[] = {{0, HK_ITEM_FAILED, 1, 500, "x"}};
    ck_assert_msg(hk_ckpt_flush(pg, "b1", "other", it, 1, 1, NULL, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM batch_items"), 2);
    // The items' reference follows (tenant, id): deleting one tenant's batch
    // cascades to its items only.
    r = hk_pg_exec_script(pg, "DELETE FROM batches WHERE tenant = 'other'", 0, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    PQclear(r);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM batch_items"), 1);
}
END_TEST

START_TEST(test_migrate_concurrent_appliers_apply_once)
{
    enum { N = 4 };
    int gate[2];
    ck_assert_int_eq(pipe(gate), 0);
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) < 0 && errno == EINTR)
                ;
            hk_pg_opts_t o = {.conninfo = conninfo, .connect_timeout_ms = 5000};
            hk_pg_t *p = hk_pg_new(&o);
            char e[512];
            int applied = -1;
            int rc = p ? hk_migrate_apply(p, &applied, e, sizeof(e)) : -1;
            if (rc != 0)
                fprintf(stderr, "applier %d: %s\n", i, e);
            hk_pg_destroy(p);
            _exit(rc == 0 ? applied : 100);
        }
    }
    close(gate[0]);
    close(gate[1]); // all start together
    int sum = 0;
    for (int i = 0; i < N; i++) {
        int st;
        ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) < 100, "applier %d failed", i);
        sum += WEXITSTATUS(st);
    }
    ck_assert_int_eq(sum, (int)hk_migrations_cnt);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM hookd_schema_migrations"),
                     (long long)hk_migrations_cnt);
    ck_assert_int_eq(q1_int(pg, "SELECT count(DISTINCT version) FROM hookd_schema_migrations"),
                     (long long)hk_migrations_cnt);
    ck_assert_str_eq(q1(pg, "SELECT to_regclass('dead_letters') IS NOT NULL"), "t");
}
END_TEST

// ---- checkpoint --------------------------------------------------------------

static const char *counters(const char *batch)
{
    char sql[256];
    snprintf(
        sql, sizeof(sql),
        "SELECT succeeded || '/' || failed || '/' || skipped || ' c' || cursor || ' ' || status"
        " FROM batches WHERE id = '%s'",
        batch);
    return q1(pg, sql);
}

static long long stored_items(const char *batch)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM batch_items WHERE batch_id = '%s'", batch);
    return q1_int(pg, sql);
}

static hk_item_status_t status_of(int i)
{
    return i % 3 == 0 ? HK_ITEM_FAILED : i % 3 == 1 ? HK_ITEM_SUCCEEDED : HK_ITEM_SKIPPED;
}

// Flushes items [from, to) with status_of(i) (or `st` when not 0).
static int flush_range(const char *batch, int from, int to, hk_item_status_t st, int64_t cursor)
{
    hk_ckpt_item_t items[1000];
    static char msgs[1000][32];
    size_t n = 0;
    for (int i = from; i < to; i++, n++) {
        snprintf(msgs[n], sizeof(msgs[n]), "error %d", i);
        hk_item_status_t s = st ? st : status_of(i);
        items[n] = (hk_ckpt_item_t){i, s, 1 + i % 4, s == HK_ITEM_FAILED ? 500 : 0,
                                    s == HK_ITEM_FAILED ? msgs[n] : NULL};
    }
    return hk_ckpt_flush(pg, batch, "acme", items, n, cursor, NULL, err, sizeof(err));
}

START_TEST(test_ckpt_open_creates_running_batch)
{
    hk_ckpt_batch_t b;
    ck_assert_msg(hk_ckpt_open(pg, "b1", "acme", 100, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(b.status, "running");
    ck_assert_int_eq(b.total, 100);
    ck_assert_int_eq(b.succeeded + b.failed + b.skipped + b.cursor, 0);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(hk_ckpt_is_terminal(&b, i), 0);
        ck_assert_int_eq(b.item_status[i], 0);
    }
    hk_ckpt_batch_free(&b);
    ck_assert_str_eq(q1(pg, "SELECT tenant || ' ' || total FROM batches WHERE id = 'b1'"),
                     "acme 100");
    ck_assert_str_eq(hk_item_status_name(HK_ITEM_SKIPPED), "skipped");

    // An empty batch is fine too.
    ck_assert_int_eq(hk_ckpt_open(pg, "b0", "acme", 0, &b, err, sizeof(err)), 0);
    ck_assert_int_eq(b.total, 0);
    hk_ckpt_batch_free(&b);
}
END_TEST

START_TEST(test_ckpt_flush_counts_exactly)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b2", "acme", 100, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    ck_assert_msg(flush_range("b2", 0, 100, 0, 100) == 0, "%s", err);
    // 0..99: i%3==0 failed (34), ==1 succeeded (33), ==2 skipped (33)
    ck_assert_str_eq(counters("b2"), "33/34/33 c100 running");
    ck_assert_int_eq(stored_items("b2"), 100);
    ck_assert_str_eq(q1(pg, "SELECT status || ' ' || attempts || ' ' || last_http_status || ' ' ||"
                            " last_error FROM batch_items WHERE batch_id = 'b2' AND idx = 6"),
                     "failed 3 500 error 6");
    ck_assert_str_eq(q1(pg, "SELECT coalesce(last_http_status::text, 'null') || ' ' ||"
                            " coalesce(last_error, 'null') FROM batch_items"
                            " WHERE batch_id = 'b2' AND idx = 7"),
                     "null null");
}
END_TEST

START_TEST(test_ckpt_replayed_flush_never_double_counts)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b3", "acme", 100, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    ck_assert_int_eq(flush_range("b3", 0, 50, HK_ITEM_SUCCEEDED, 50), 0);
    ck_assert_str_eq(counters("b3"), "50/0/0 c50 running");
    // The same flush again: nothing changes.
    ck_assert_int_eq(flush_range("b3", 0, 50, HK_ITEM_SUCCEEDED, 50), 0);
    ck_assert_str_eq(counters("b3"), "50/0/0 c50 running");
    // Overlapping, with other statuses for the items already terminal.
    ck_assert_int_eq(flush_range("b3", 25, 75, HK_ITEM_FAILED, 75), 0);
    ck_assert_str_eq(counters("b3"), "50/25/0 c75 running");
    ck_assert_str_eq(q1(pg, "SELECT status || ' ' || attempts || ' ' ||"
                            " coalesce(last_error, 'null') FROM batch_items"
                            " WHERE batch_id = 'b3' AND idx = 30"),
                     "succeeded 3 null");
    // The same index twice in one flush counts once.
    hk_ckpt_item_t dup[] = {{80, HK_ITEM_SKIPPED, 0, 0, NULL},
                            {80, HK_ITEM_FAILED, 2, 503, "x"},
                            {81, HK_ITEM_SKIPPED, 0, 0, ""}};
    ck_assert_msg(hk_ckpt_flush(pg, "b3", "acme", dup, 3, 82, NULL, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_int_eq(stored_items("b3"), 77);
    ck_assert_int_eq(q1_int(pg, "SELECT succeeded + failed + skipped FROM batches WHERE id = 'b3'"),
                     77);
    ck_assert_str_eq(q1(pg, "SELECT coalesce(last_error, 'null') FROM batch_items"
                            " WHERE batch_id = 'b3' AND idx = 81"),
                     "null");
}
END_TEST

START_TEST(test_ckpt_open_loads_terminal_items)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b4", "acme", 100, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    ck_assert_int_eq(flush_range("b4", 10, 40, 0, 40), 0);
    ck_assert_int_eq(flush_range("b4", 90, 100, 0, 40), 0);

    ck_assert_msg(hk_ckpt_open(pg, "b4", "acme", 100, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(b.cursor, 40);
    int terminal = 0;
    for (int i = 0; i < 100; i++) {
        int want = (i >= 10 && i < 40) || i >= 90;
        ck_assert_msg(hk_ckpt_is_terminal(&b, i) == want, "item %d", i);
        ck_assert_int_eq(b.item_status[i], want ? (int)status_of(i) : 0);
        terminal += want;
    }
    ck_assert_int_eq(b.succeeded + b.failed + b.skipped, terminal);
    ck_assert_int_eq(b.failed, 14); // 12,15,...,39 (10) + 90,93,96,99 (4)
    hk_ckpt_batch_free(&b);
}
END_TEST

START_TEST(test_ckpt_cursor_only_grows_and_status_updates)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b5", "acme", 30, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    ck_assert_int_eq(hk_ckpt_flush(pg, "b5", "acme", NULL, 0, 10, NULL, err, sizeof(err)), 0);
    ck_assert_str_eq(counters("b5"), "0/0/0 c10 running");
    ck_assert_int_eq(hk_ckpt_flush(pg, "b5", "acme", NULL, 0, 5, NULL, err, sizeof(err)), 0);
    ck_assert_str_eq(counters("b5"), "0/0/0 c10 running");
    ck_assert_int_eq(hk_ckpt_flush(pg, "b5", "acme", NULL, 0, 30, "completed", err, sizeof(err)),
                     0);
    ck_assert_str_eq(counters("b5"), "0/0/0 c30 completed");
    ck_assert_int_eq(hk_ckpt_flush(pg, "b5", "acme", NULL, 0, 0, NULL, err, sizeof(err)), 0);
    ck_assert_str_eq(counters("b5"), "0/0/0 c30 completed");
    ck_assert_int_eq(hk_ckpt_flush(pg, "b5", "acme", NULL, 0, 0, "aborted", err, sizeof(err)), 0);
    ck_assert_str_eq(counters("b5"), "0/0/0 c30 aborted");
    ck_assert_int_eq(hk_ckpt_open(pg, "b5", "acme", 30, &b, err, sizeof(err)), 0);
    ck_assert_str_eq(b.status, "aborted");
    ck_assert_int_eq(b.cursor, 30);
    hk_ckpt_batch_free(&b);
}
END_TEST

START_TEST(test_ckpt_total_mismatch_fails)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b6", "acme", 10, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    ck_assert_int_eq(hk_ckpt_open(pg, "b6", "acme", 11, &b, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "batch b6 has 10 items in the store, this job has 11");
    ck_assert_ptr_null(b.terminal);
    ck_assert_int_eq(hk_ckpt_open(pg, "b7", "acme", -1, &b, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "batch b7: -1 items is outside 0..2147483648");
}
END_TEST

// Batch identity is (tenant, id): another tenant's finished batch with the same
// id neither finishes the victim's (same total) nor rejects it (another total).
START_TEST(test_ckpt_same_id_in_two_tenants_are_two_batches)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "inv-1", "evil", 3, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    hk_ckpt_item_t done[] = {{0, HK_ITEM_SUCCEEDED, 1, 200, NULL},
                             {1, HK_ITEM_FAILED, 1, 500, "x"},
                             {2, HK_ITEM_SKIPPED, 0, 0, NULL}};
    ck_assert_int_eq(hk_ckpt_flush(pg, "inv-1", "evil", done, 3, 3, "completed", err, sizeof(err)),
                     0);
    ck_assert_int_eq(hk_ckpt_open(pg, "inv-2", "evil", 5, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    ck_assert_int_eq(hk_ckpt_flush(pg, "inv-2", "evil", NULL, 0, 5, "aborted", err, sizeof(err)),
                     0);

    // Same total: the victim's batch is new, running, with nothing terminal.
    ck_assert_msg(hk_ckpt_open(pg, "inv-1", "victim", 3, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(b.status, "running");
    ck_assert_int_eq(b.succeeded + b.failed + b.skipped + b.cursor, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(hk_ckpt_is_terminal(&b, i), 0);
    hk_ckpt_batch_free(&b);
    // Another total: not "has 5 items in the store".
    ck_assert_msg(hk_ckpt_open(pg, "inv-2", "victim", 7, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(b.status, "running");
    ck_assert_int_eq(b.total, 7);
    hk_ckpt_batch_free(&b);

    // Flushes and lookups stay within their tenant.
    hk_ckpt_item_t one[] = {{0, HK_ITEM_SUCCEEDED, 1, 200, NULL}};
    ck_assert_int_eq(hk_ckpt_flush(pg, "inv-1", "victim", one, 1, 1, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_ckpt_flush(pg, "inv-1", "nobody", one, 1, 1, NULL, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "batch inv-1 of tenant nobody not found");
    json_t *j = hold_json(hk_ckpt_show(pg, "inv-1", "victim", 10, err, sizeof(err)));
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(json_string_value(json_object_get(j, "tenant")), "victim");
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "running");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "succeeded")), 1);
    ck_assert_int_eq(json_array_size(json_object_get(j, "failed_items")), 0);
    j = hold_json(hk_ckpt_show(pg, "inv-1", "evil", 10, err, sizeof(err)));
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "completed");
    ck_assert_int_eq(json_array_size(json_object_get(j, "failed_items")), 1);
    ck_assert_ptr_null(hk_ckpt_show(pg, "inv-1", "nobody", 10, err, sizeof(err)));
    ck_assert_str_eq(err, "batch inv-1 of tenant nobody not found");
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM batch_items WHERE batch_id = 'inv-1'"), 4);

    // The longest tenant (128) and id (255) the job contract allows.
    char tenant[129], id[256];
    memset(tenant, 't', 128);
    tenant[128] = '\0';
    memset(id, 'i', 255);
    id[255] = '\0';
    ck_assert_msg(hk_ckpt_open(pg, id, tenant, 1, &b, err, sizeof(err)) == 0, "%s", err);
    hk_ckpt_batch_free(&b);
    ck_assert_int_eq(hk_ckpt_flush(pg, id, tenant, one, 1, 1, "completed", err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_ckpt_flush_error_writes_nothing)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b8", "acme", 10, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    hk_ckpt_item_t items[] = {{0, HK_ITEM_SUCCEEDED, 1, 200, NULL},
                              {1, HK_ITEM_FAILED, 2, 500, "boom"}};
    // The status fails the batches update after the items were inserted: all or nothing.
    ck_assert_int_eq(hk_ckpt_flush(pg, "b8", "acme", items, 2, 2, "bogus", err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "violates check constraint \"batches_status_check\"") != NULL, "%s",
                  err);
    ck_assert_int_eq(stored_items("b8"), 0);
    ck_assert_str_eq(counters("b8"), "0/0/0 c0 running");

    ck_assert_int_eq(hk_ckpt_flush(pg, "nope", "acme", items, 2, 2, NULL, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "batch nope of tenant acme not found");
    ck_assert_int_eq(hk_ckpt_flush(pg, "nope", "acme", NULL, 0, 2, NULL, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "batch nope of tenant acme not found");
    ck_assert_int_eq(stored_items("nope"), 0);

    hk_ckpt_item_t bad[] = {{-1, HK_ITEM_SUCCEEDED, 1, 0, NULL}};
    ck_assert_int_eq(hk_ckpt_flush(pg, "b8", "acme", bad, 1, 2, NULL, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "batch b8: item -1 has an invalid index or status 1");
}
END_TEST

START_TEST(test_ckpt_show_reports_progress)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "b9", "acme", 7, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    hk_ckpt_item_t items[] = {{0, HK_ITEM_SUCCEEDED, 1, 200, NULL},
                              {1, HK_ITEM_FAILED, 3, 500, "HTTP 500"},
                              {2, HK_ITEM_FAILED, 10, 0, "timeout after 10000 ms"},
                              {3, HK_ITEM_SKIPPED, 0, 0, NULL}};
    ck_assert_int_eq(hk_ckpt_flush(pg, "b9", "acme", items, 4, 4, NULL, err, sizeof(err)), 0);

    json_t *j = hold_json(hk_ckpt_show(pg, "b9", "acme", 1, err, sizeof(err)));
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "b9");
    ck_assert_str_eq(json_string_value(json_object_get(j, "tenant")), "acme");
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "running");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "total")), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "succeeded")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "failed")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "skipped")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "pending")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "cursor")), 4);
    ck_assert_double_eq_tol(json_real_value(json_object_get(j, "percent")), 57.1, 1e-9);
    const char *created = json_string_value(json_object_get(j, "created_at"));
    ck_assert_ptr_nonnull(created);
    ck_assert_msg(strlen(created) == 24 && created[10] == 'T' && created[23] == 'Z', "%s", created);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "updated_at")));
    json_t *failed = json_object_get(j, "failed_items");
    ck_assert_uint_eq(json_array_size(failed), 1);
    json_t *f0 = json_array_get(failed, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(f0, "index")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(f0, "attempts")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(f0, "http_status")), 500);
    ck_assert_str_eq(json_string_value(json_object_get(f0, "error")), "HTTP 500");
    ck_assert(json_is_string(json_object_get(f0, "updated_at")));
    ck_assert(json_is_true(json_object_get(j, "failed_items_truncated")));

    j = hold_json(hk_ckpt_show(pg, "b9", "acme", 10, err, sizeof(err)));
    ck_assert_ptr_nonnull(j);
    failed = json_object_get(j, "failed_items");
    ck_assert_uint_eq(json_array_size(failed), 2);
    json_t *f1 = json_array_get(failed, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(f1, "index")), 2);
    ck_assert(json_is_null(json_object_get(f1, "http_status")));
    ck_assert_str_eq(json_string_value(json_object_get(f1, "error")), "timeout after 10000 ms");
    ck_assert(json_is_false(json_object_get(j, "failed_items_truncated")));

    // percent: never 100 while something is pending; 100 when done.
    ck_assert_int_eq(hk_ckpt_open(pg, "b10", "acme", 10000, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    hk_ckpt_item_t *many = calloc(9999, sizeof(*many));
    for (int i = 0; i < 9999; i++)
        many[i] = (hk_ckpt_item_t){i, HK_ITEM_SUCCEEDED, 1, 200, NULL};
    int rc = hk_ckpt_flush(pg, "b10", "acme", many, 9999, 9999, NULL, err, sizeof(err));
    free(many);
    ck_assert_msg(rc == 0, "%s", err);
    j = hold_json(hk_ckpt_show(pg, "b10", "acme", 5, err, sizeof(err)));
    ck_assert_ptr_nonnull(j);
    ck_assert_double_eq_tol(json_real_value(json_object_get(j, "percent")), 99.9, 1e-9);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "failed_items")), 0);
    ck_assert(json_is_false(json_object_get(j, "failed_items_truncated")));

    ck_assert_ptr_null(hk_ckpt_show(pg, "zz", "acme", 5, err, sizeof(err)));
    ck_assert_str_eq(err, "batch zz of tenant acme not found");
}
END_TEST

START_TEST(test_ckpt_flush_1000_items_in_one_statement)
{
    hk_ckpt_batch_t b;
    ck_assert_int_eq(hk_ckpt_open(pg, "big", "acme", 1000, &b, err, sizeof(err)), 0);
    hk_ckpt_batch_free(&b);
    // Errors that need quoting in an array literal, and invalid UTF-8.
    static const char *const errs[] = {"say \"hi\"", "back\\slash", "{a,b}",
                                       "NULL",       "caf\xc3\xa9", "bad \xff byte"};
    hk_ckpt_item_t items[1000];
    for (int i = 0; i < 1000; i++)
        items[i] = (hk_ckpt_item_t){i, HK_ITEM_FAILED, 2, 400 + i % 100, errs[i % 6]};
    int64_t t0 = hk_th_now_ms();
    ck_assert_msg(hk_ckpt_flush(pg, "big", "acme", items, 1000, 1000, "completed_with_failures",
                                err, sizeof(err)) == 0,
                  "%s", err);
    int64_t took = hk_th_now_ms() - t0;
    ck_assert_msg(took < 2000, "1000-item flush took %lld ms", (long long)took);
    ck_assert_str_eq(counters("big"), "0/1000/0 c1000 completed_with_failures");
    ck_assert_str_eq(q1(pg, "SELECT last_error FROM batch_items WHERE batch_id='big' AND idx=0"),
                     "say \"hi\"");
    ck_assert_str_eq(q1(pg, "SELECT last_error FROM batch_items WHERE batch_id='big' AND idx=1"),
                     "back\\slash");
    ck_assert_str_eq(q1(pg, "SELECT last_error FROM batch_items WHERE batch_id='big' AND idx=2"),
                     "{a,b}");
    ck_assert_str_eq(q1(pg, "SELECT last_error FROM batch_items WHERE batch_id='big' AND idx=3"),
                     "NULL");
    ck_assert_str_eq(q1(pg, "SELECT last_error FROM batch_items WHERE batch_id='big' AND idx=4"),
                     "caf\xc3\xa9");
    ck_assert_str_eq(q1(pg, "SELECT last_error FROM batch_items WHERE batch_id='big' AND idx=5"),
                     "bad ? byte");
    ck_assert_int_eq(q1_int(pg, "SELECT last_http_status FROM batch_items"
                                " WHERE batch_id='big' AND idx=999"),
                     499);
}
END_TEST

// ---- dead letters ------------------------------------------------------------

static const unsigned char key_bin[] = {0x00, 0xff, 'k', 0x00};
static const unsigned char val_bin[] = {'{', 0x00, 0xff, 0xc3, 0x28, 0xfe, '}'};

static hk_dls_record_t rec(const char *job, int64_t offset, const char *cls, const char *error,
                           int http)
{
    return (hk_dls_record_t){
        .job_id = job,
        .tenant = "acme",
        .topic = "jobs",
        .partition = 3,
        .offset = offset,
        .key = key_bin,
        .key_len = sizeof(key_bin),
        .value = val_bin,
        .value_len = sizeof(val_bin),
        .error_class = cls,
        .error = error,
        .http_status = http,
        .attempts = 2,
        .batch_id = NULL,
        .item_idx = -1,
    };
}

typedef struct got {
    int calls;
    int fail_at; // 1-based call that fails, 0 = none
    char keys[2000][16];
    size_t key_lens[2000];
    int key_null[2000];
    unsigned char vals[2000][64];
    size_t val_lens[2000];
} got_t;

static got_t got;

static int produce(const void *key, size_t key_len, const void *value, size_t value_len, void *arg)
{
    got_t *g = arg;
    if (g->fail_at && g->calls + 1 == g->fail_at)
        return -1;
    int i = g->calls++;
    ck_assert_int_lt(i, 2000);
    g->key_null[i] = key == NULL;
    g->key_lens[i] = key_len;
    if (key)
        memcpy(g->keys[i], key, key_len < 16 ? key_len : 16);
    g->val_lens[i] = value_len;
    memcpy(g->vals[i], value, value_len < 64 ? value_len : 64);
    return 0;
}

static void got_reset(int fail_at)
{
    memset(&got, 0, sizeof(got));
    got.fail_at = fail_at;
}

START_TEST(test_dls_insert_round_trips_binary_and_is_idempotent)
{
    hk_dls_record_t r[3] = {rec("j1", 10, "permanent", "HTTP 404", 404),
                            rec("j2", 11, "exhausted", "attempts exhausted", 503),
                            rec("b:4", 12, "blocked", "private \xff address", 0)};
    r[1].key = NULL;
    r[1].key_len = 0;
    r[2].batch_id = "b";
    r[2].item_idx = 4;
    ck_assert_msg(hk_dls_insert(pg, r, 3, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(hk_dls_insert(pg, r, 3, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_dls_insert(pg, &r[0], 1, err, sizeof(err)), 0);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM dead_letters"), 3);

    ck_assert_str_eq(q1(pg, "SELECT encode(key, 'hex') || ' ' || encode(value, 'hex')"
                            " FROM dead_letters WHERE job_id = 'j1'"),
                     "00ff6b00 7b00ffc328fe7d");
    ck_assert_str_eq(q1(pg, "SELECT coalesce(encode(key, 'hex'), 'null') FROM dead_letters"
                            " WHERE job_id = 'j2'"),
                     "null");
    ck_assert_str_eq(q1(pg, "SELECT error || ' ' || coalesce(http_status::text, 'null') || ' ' ||"
                            " batch_id || ' ' || item_idx FROM dead_letters WHERE job_id = 'b:4'"),
                     "private ? address null b 4");

    // A bad record in a group: nothing of the group is inserted.
    hk_dls_record_t bad[2] = {rec("j9", 90, "permanent", "x", 400),
                              rec(NULL, 91, "permanent", "x", 400)};
    ck_assert_int_eq(hk_dls_insert(pg, bad, 2, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "dead letter 1: job_id, topic and error_class are required");
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM dead_letters"), 3);
    ck_assert_int_eq(hk_pg_in_transaction(pg), 0);
}
END_TEST

START_TEST(test_dls_list_filters_by_reason)
{
    hk_dls_record_t r[3] = {rec("j1", 1, "permanent", "HTTP 404 Not Found", 404),
                            rec("j2", 2, "exhausted", "10 attempts, last: HTTP 503", 503),
                            rec("j3", 3, "blocked", "address 10.0.0.1 is private", 0)};
    r[2].batch_id = "bb";
    r[2].item_idx = 7;
    for (int i = 0; i < 3; i++) // separate inserts: distinct created_at order
        ck_assert_int_eq(hk_dls_insert(pg, &r[i], 1, err, sizeof(err)), 0);

    json_t *all = hold_json(hk_dls_list(pg, NULL, 0, 0, err, sizeof(err)));
    ck_assert_msg(all != NULL, "%s", err);
    ck_assert_uint_eq(json_array_size(all), 3);
    json_t *newest = json_array_get(all, 0);
    ck_assert_str_eq(json_string_value(json_object_get(newest, "job_id")), "j3");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 2), "job_id")), "j1");
    ck_assert(json_is_null(json_object_get(newest, "http_status")));
    ck_assert_str_eq(json_string_value(json_object_get(newest, "batch_id")), "bb");
    ck_assert_int_eq(json_integer_value(json_object_get(newest, "item_idx")), 7);
    ck_assert_str_eq(json_string_value(json_object_get(newest, "tenant")), "acme");
    ck_assert_str_eq(json_string_value(json_object_get(newest, "error_class")), "blocked");
    ck_assert_str_eq(json_string_value(json_object_get(newest, "original_topic")), "jobs");
    ck_assert_int_eq(json_integer_value(json_object_get(newest, "original_partition")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(newest, "original_offset")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(newest, "attempts")), 2);
    ck_assert(json_is_integer(json_object_get(newest, "id")));
    ck_assert(json_is_string(json_object_get(newest, "created_at")));
    ck_assert(json_is_null(json_object_get(newest, "replayed_at")));
    json_t *oldest = json_array_get(all, 2);
    ck_assert_int_eq(json_integer_value(json_object_get(oldest, "http_status")), 404);
    ck_assert(json_is_null(json_object_get(oldest, "batch_id")));
    ck_assert(json_is_null(json_object_get(oldest, "item_idx")));

    json_t *j = hold_json(hk_dls_list(pg, "permanent", 0, 0, err, sizeof(err)));
    ck_assert_uint_eq(json_array_size(j), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "job_id")), "j1");
    j = hold_json(hk_dls_list(pg, "http 503", 0, 0, err, sizeof(err)));
    ck_assert_uint_eq(json_array_size(j), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "job_id")), "j2");
    j = hold_json(hk_dls_list(pg, "HTTP", 0, 0, err, sizeof(err)));
    ck_assert_uint_eq(json_array_size(j), 2);
    j = hold_json(hk_dls_list(pg, NULL, 0, 1, err, sizeof(err)));
    ck_assert_uint_eq(json_array_size(j), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "job_id")), "j3");
    j = hold_json(hk_dls_list(pg, "nothing like it", 1, 0, err, sizeof(err)));
    ck_assert_uint_eq(json_array_size(j), 0);
}
END_TEST

static int64_t id_of(const char *job)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT id FROM dead_letters WHERE job_id = '%s'", job);
    return q1_int(pg, sql);
}

START_TEST(test_dls_replay_by_id_reason_all)
{
    hk_dls_record_t r[5] = {
        rec("j1", 1, "permanent", "HTTP 404", 404), rec("j2", 2, "exhausted", "HTTP 503", 503),
        rec("j3", 3, "exhausted", "timeout", 0),    rec("j4", 4, "gone", "HTTP 410", 410),
        rec("j5", 5, "permanent", "HTTP 422", 422),
    };
    r[3].key = NULL;
    r[3].key_len = 0;
    ck_assert_int_eq(hk_dls_insert(pg, r, 5, err, sizeof(err)), 0);

    got_reset(0);
    ck_assert_int_eq(hk_dls_replay(pg, id_of("j4"), "ignored when an id is given", produce, &got,
                                   err, sizeof(err)),
                     1);
    ck_assert_int_eq(got.calls, 1);
    ck_assert_int_eq(got.key_null[0], 1);
    ck_assert_uint_eq(got.val_lens[0], sizeof(val_bin));
    ck_assert_mem_eq(got.vals[0], val_bin, sizeof(val_bin));
    // Already replayed: not again.
    ck_assert_int_eq(hk_dls_replay(pg, id_of("j4"), NULL, produce, &got, err, sizeof(err)), 0);
    ck_assert_int_eq(got.calls, 1);

    got_reset(0);
    ck_assert_int_eq(hk_dls_replay(pg, 0, "EXHAUSTED", produce, &got, err, sizeof(err)), 2);
    ck_assert_int_eq(got.calls, 2);
    ck_assert_int_eq(got.key_null[0], 0);
    ck_assert_uint_eq(got.key_lens[0], sizeof(key_bin));
    ck_assert_mem_eq(got.keys[0], key_bin, sizeof(key_bin));
    ck_assert_mem_eq(got.vals[1], val_bin, sizeof(val_bin));

    got_reset(0);
    ck_assert_int_eq(hk_dls_replay(pg, 0, NULL, produce, &got, err, sizeof(err)), 2);
    ck_assert_int_eq(got.calls, 2);
    got_reset(0);
    ck_assert_int_eq(hk_dls_replay(pg, 0, NULL, produce, &got, err, sizeof(err)), 0);
    ck_assert_int_eq(got.calls, 0);

    json_t *j = hold_json(hk_dls_list(pg, NULL, 0, 0, err, sizeof(err)));
    ck_assert_uint_eq(json_array_size(j), 0);
    j = hold_json(hk_dls_list(pg, NULL, 1, 0, err, sizeof(err)));
    ck_assert_uint_eq(json_array_size(j), 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert(json_is_string(json_object_get(json_array_get(j, i), "replayed_at")));
}
END_TEST

START_TEST(test_dls_replay_stops_at_failed_produce)
{
    char jobs[5][8];
    hk_dls_record_t r[5];
    for (int i = 0; i < 5; i++) {
        snprintf(jobs[i], sizeof(jobs[i]), "j%d", i);
        r[i] = rec(jobs[i], i, "exhausted", "HTTP 503", 503);
        r[i].key = jobs[i]; // the key says which record it is
        r[i].key_len = strlen(jobs[i]);
    }
    ck_assert_int_eq(hk_dls_insert(pg, r, 5, err, sizeof(err)), 0);

    got_reset(3); // the third produce fails
    ck_assert_int_eq(hk_dls_replay(pg, 0, NULL, produce, &got, err, sizeof(err)), -1);
    char want[160];
    snprintf(want, sizeof(want),
             "dead letter replay stopped after 2 replayed: producing dead letter %" PRId64
             " failed",
             id_of("j2"));
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(got.calls, 2);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"), 3);
    ck_assert_str_eq(q1(pg, "SELECT string_agg(job_id, ',' ORDER BY id) FROM dead_letters"
                            " WHERE replayed_at IS NOT NULL"),
                     "j0,j1");

    // The rest, oldest first.
    got_reset(0);
    ck_assert_int_eq(hk_dls_replay(pg, 0, NULL, produce, &got, err, sizeof(err)), 3);
    ck_assert_int_eq(got.calls, 3);
    ck_assert_mem_eq(got.keys[0], "j2", 2);
    ck_assert_mem_eq(got.keys[1], "j3", 2);
    ck_assert_mem_eq(got.keys[2], "j4", 2);
}
END_TEST

START_TEST(test_dls_replay_spans_chunks)
{
    enum { N = HK_DLS_REPLAY_CHUNK * 2 + 100 };
    static hk_dls_record_t r[N];
    static char jobs[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(jobs[i], sizeof(jobs[i]), "j%d", i);
        r[i] = rec(jobs[i], i, "exhausted", "HTTP 503", 503);
    }
    ck_assert_msg(hk_dls_insert(pg, r, N, err, sizeof(err)) == 0, "%s", err);
    got_reset(0);
    ck_assert_int_eq(hk_dls_replay(pg, 0, "exhausted", produce, &got, err, sizeof(err)), N);
    ck_assert_int_eq(got.calls, N);
    ck_assert_int_eq(q1_int(pg, "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"), 0);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->pg = &svc;
    Suite *s = suite_create("pgstore");

    TCase *tc = tcase_create("pg");
    tcase_add_checked_fixture(tc, setup_schema, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_pg_exec_prepares_and_reports_server_errors);
    tcase_add_test(tc, test_pg_accepts_postgresql_uri);
    tcase_add_test(tc, test_pg_commit_of_failed_transaction_fails);
    tcase_add_test(tc, test_pg_statement_timeout_cancels_but_keeps_connection);
    tcase_add_test(tc, test_pg_connect_times_out_on_silent_server);
    tcase_add_test(tc, test_pg_backoff_doubles_up_to_max);
    tcase_add_test(tc, test_pg_utf8_and_arrays);
    suite_add_tcase(s, tc);

    tc = tcase_create("outage");
    tcase_add_checked_fixture(tc, setup_outage, teardown_outage);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pg_reconnects_after_outage);
    tcase_add_test(tc, test_pg_transaction_not_continued_after_reconnect);
    tcase_add_test(tc, test_ckpt_flush_while_down_writes_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("migrate");
    tcase_add_checked_fixture(tc, setup_db, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_migrate_fresh_applies_all_then_none);
    tcase_add_test(tc, test_migrate_rejects_changed_checksum);
    tcase_add_test(tc, test_migrate_rejects_unknown_version);
    tcase_add_test(tc, test_migrate_failure_rolls_back_everything);
    tcase_add_test(tc, test_migrate_concurrent_appliers_apply_once);
    tcase_add_test(tc, test_migrate_batch_tenant_keeps_existing_rows);
    suite_add_tcase(s, tc);

    tc = tcase_create("checkpoint");
    tcase_add_checked_fixture(tc, setup_schema_migrated, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_ckpt_open_creates_running_batch);
    tcase_add_test(tc, test_ckpt_flush_counts_exactly);
    tcase_add_test(tc, test_ckpt_replayed_flush_never_double_counts);
    tcase_add_test(tc, test_ckpt_open_loads_terminal_items);
    tcase_add_test(tc, test_ckpt_cursor_only_grows_and_status_updates);
    tcase_add_test(tc, test_ckpt_total_mismatch_fails);
    tcase_add_test(tc, test_ckpt_same_id_in_two_tenants_are_two_batches);
    tcase_add_test(tc, test_ckpt_flush_error_writes_nothing);
    tcase_add_test(tc, test_ckpt_show_reports_progress);
    tcase_add_test(tc, test_ckpt_flush_1000_items_in_one_statement);
    suite_add_tcase(s, tc);

    tc = tcase_create("dlstore");
    tcase_add_checked_fixture(tc, setup_schema_migrated, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_dls_insert_round_trips_binary_and_is_idempotent);
    tcase_add_test(tc, test_dls_list_filters_by_reason);
    tcase_add_test(tc, test_dls_replay_by_id_reason_all);
    tcase_add_test(tc, test_dls_replay_stops_at_failed_produce);
    tcase_add_test(tc, test_dls_replay_spans_chunks);
    suite_add_tcase(s, tc);
    return s;
}
