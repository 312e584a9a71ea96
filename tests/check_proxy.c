// check_proxy: the testkit's fault proxy (tests/support/hkt_proxy.h) between real
// clients and real servers: hiredis to a private redis-server, libpq to a private
// Postgres, and the standalone build/hookd-proxy driven over its stdin. Timing
// checks are lower bounds only (a fault must cost at least what it says), never
// upper bounds, so a loaded machine cannot fail them. Every test checks that the
// proxy leaves no file descriptor open behind it.
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/hkt_proxy.h"
#include "tests/support/pgsvc.h"
#include "tests/support/redissvc.h"

static hk_pgsvc_t pg; // one Postgres for the run, started in main()
static hk_redissvc_t *rs;
static hkt_proxy_t *px;
static int fds_before;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static hkt_proxy_t *start_proxy(int upstream_port)
{
    char err[256] = "";
    hkt_proxy_opts_t o = {.upstream_host = "127.0.0.1", .upstream_port = upstream_port};
    hkt_proxy_t *p = hkt_proxy_start(&o, err, sizeof(err));
    ck_assert_msg(p != NULL, "proxy: %s", err);
    return p;
}

static void redis_setup(void)
{
    char err[256] = "";
    rs = hk_redissvc_start(NULL, err, sizeof(err));
    ck_assert_msg(rs != NULL, "redis-server: %s", err);
    fds_before = count_fds();
    px = start_proxy(hk_redissvc_port(rs));
}

static void redis_teardown(void)
{
    hkt_proxy_stop(px);
    px = NULL;
    int after = count_fds();
    hk_redissvc_destroy(rs);
    rs = NULL;
    ck_assert_int_eq(after, fds_before);
}

// A hiredis connection through the proxy, with a command timeout.
static redisContext *via_proxy(int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", hkt_proxy_port(px), tv);
    ck_assert_ptr_nonnull(c);
    if (c->err == 0)
        ck_assert_int_eq(redisSetTimeout(c, tv), REDIS_OK);
    return c;
}

// 1 when PING answers PONG on c.
static int ping_ok(redisContext *c)
{
    redisReply *r = redisCommand(c, "PING");
    int ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

// Milliseconds one PING takes on c (asserting it works).
static int64_t ping_ms(redisContext *c)
{
    int64_t t0 = now_ms();
    ck_assert_msg(ping_ok(c), "PING failed: %s", c->errstr);
    return now_ms() - t0;
}

static int wait_active(uint64_t n, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    hkt_proxy_stats_t st;
    for (;;) {
        hkt_proxy_stats(px, &st);
        if (st.active == n || now_ms() > end)
            return st.active == n;
        usleep(10000);
    }
}

// Waits (up to 10 s) until the proxy has dropped n bytes in all; returns the count.
static uint64_t wait_dropped(uint64_t n)
{
    int64_t end = now_ms() + 10000;
    hkt_proxy_stats_t st;
    for (;;) {
        hkt_proxy_stats(px, &st);
        if (st.bytes_dropped >= n || now_ms() > end)
            return st.bytes_dropped;
        usleep(5000);
    }
}

START_TEST(test_proxy_forwards_and_counts_each_byte)
{
    redisContext *c = via_proxy(2000);
    ck_assert_int_eq(c->err, 0);
    ck_assert(ping_ok(c));
    hkt_proxy_stats_t st;
    hkt_proxy_stats(px, &st);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_uint_eq(st.active, 1);
    // "*1\r\n$4\r\nPING\r\n" one way, "+PONG\r\n" the other.
    ck_assert_uint_eq(st.bytes_to_server, 14);
    ck_assert_uint_eq(st.bytes_to_client, 7);
    redisFree(c);
    // The client's FIN goes through and the connection is gone on both sides.
    ck_assert_msg(wait_active(0, 5000), "connection still open after the client left");
}
END_TEST

START_TEST(test_proxy_latency_is_added_each_way)
{
    redisContext *c = via_proxy(5000);
    ck_assert_int_eq(c->err, 0);
    ping_ms(c);
    ck_assert_int_eq(hkt_proxy_set_latency(px, HKT_TO_SERVER, 200, 0), 0);
    int64_t one_way = ping_ms(c);
    ck_assert_msg(one_way >= 200, "round trip %lld ms with 200 ms to the server",
                  (long long)one_way);
    ck_assert_int_eq(hkt_proxy_set_latency(px, HKT_TO_CLIENT, 200, 50), 0);
    int64_t both = ping_ms(c);
    ck_assert_msg(both >= 400, "round trip %lld ms with 200 ms each way", (long long)both);
    ck_assert_int_eq(hkt_proxy_set_latency(px, HKT_TO_SERVER, -1, 0), -1);
    ck_assert_int_eq(hkt_proxy_set_latency(px, 0, 10, 0), -1);
    fprintf(stderr, "check_proxy: round trips %lld ms (200 ms one way), %lld ms (both)\n",
            (long long)one_way, (long long)both);
    redisFree(c);
}
END_TEST

START_TEST(test_proxy_blackhole_hangs_then_lifts)
{
    redisContext *c = via_proxy(500);
    ck_assert_int_eq(c->err, 0);
    ck_assert(ping_ok(c));
    hkt_proxy_stats_t before, after;
    hkt_proxy_stats(px, &before);
    hkt_proxy_set_blackhole(px, 1);
    int64_t t0 = now_ms();
    redisReply *r = redisCommand(c, "PING");
    int64_t waited = now_ms() - t0;
    ck_assert_ptr_null(r);
    // A hang, not a close or a reset: the client gave up on its own timeout.
    ck_assert_int_eq(c->err, REDIS_ERR_IO);
    ck_assert_msg(waited >= 450, "gave up after %lld ms, timeout 500", (long long)waited);
    // New connections are accepted, and hang too.
    redisContext *c2 = via_proxy(500);
    ck_assert_int_eq(c2->err, 0);
    ck_assert(!ping_ok(c2));
    hkt_proxy_stats(px, &after);
    ck_assert_uint_eq(after.bytes_to_server, before.bytes_to_server);
    ck_assert_uint_eq(after.bytes_to_client, before.bytes_to_client);
    // Both PINGs were read and dropped (the proxy may read them a little later).
    ck_assert_uint_eq(wait_dropped(before.bytes_dropped + 14 + 14), before.bytes_dropped + 28);
    ck_assert_uint_eq(after.accepted, before.accepted + 1);
    // Not even a client's close goes through: the server side stays open.
    redisFree(c2);
    usleep(300000);
    hkt_proxy_stats(px, &after);
    ck_assert_uint_eq(after.active, 2);
    hkt_proxy_set_blackhole(px, 0);
    redisContext *c3 = via_proxy(2000);
    ck_assert(ping_ok(c3));
    redisFree(c);
    redisFree(c3);
    // Lifted, the held close goes through with the others.
    ck_assert_msg(wait_active(0, 5000), "connections still open after the black hole");
}
END_TEST

// Data the proxy had already read when the hole opened stays where it is.
START_TEST(test_proxy_blackhole_stops_data_in_flight)
{
    redisContext *c = via_proxy(10000);
    ck_assert(ping_ok(c));
    hkt_proxy_stats_t st, held;
    hkt_proxy_stats(px, &st);
    // 20 B/s: the 7-byte PONG trickles out a byte at a time.
    ck_assert_int_eq(hkt_proxy_set_bandwidth(px, HKT_TO_CLIENT, 20), 0);
    ck_assert_int_eq(redisAppendCommand(c, "PING"), REDIS_OK);
    int done = 0;
    ck_assert_int_eq(redisBufferWrite(c, &done), REDIS_OK);
    int64_t end = now_ms() + 10000;
    do {
        usleep(5000);
        hkt_proxy_stats(px, &held);
    } while (held.bytes_to_client == st.bytes_to_client && now_ms() < end);
    ck_assert_uint_gt(held.bytes_to_client, st.bytes_to_client);
    hkt_proxy_set_blackhole(px, 1);
    hkt_proxy_stats(px, &held);
    usleep(300000);
    hkt_proxy_stats(px, &st);
    ck_assert_uint_eq(st.bytes_to_client, held.bytes_to_client);
    redisFree(c);
}
END_TEST

// What a client sends into a black hole is dropped, not delivered late.
START_TEST(test_proxy_blackhole_drops_what_it_reads)
{
    redisContext *c = via_proxy(2000);
    ck_assert(ping_ok(c));
    hkt_proxy_set_blackhole(px, 1);
    hkt_proxy_stats_t st;
    hkt_proxy_stats(px, &st);
    uint64_t dropped = st.bytes_dropped;
    const char *lost = "*1\r\n$4\r\nPING\r\n";
    ck_assert_int_eq(write(c->fd, lost, strlen(lost)), (ssize_t)strlen(lost));
    ck_assert_uint_eq(wait_dropped(dropped + strlen(lost)), dropped + strlen(lost));
    hkt_proxy_set_blackhole(px, 0);
    // The first reply on the connection is the ECHO's: the PING never arrived.
    redisReply *r = redisCommand(c, "ECHO after");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, "after");
    freeReplyObject(r);
    redisFree(c);
}
END_TEST

START_TEST(test_proxy_reset_breaks_open_and_new_connections)
{
    redisContext *c = via_proxy(2000);
    ck_assert(ping_ok(c));
    hkt_proxy_reset(px);
    ck_assert(!ping_ok(c));
    // A reset, not an orderly close (that would be REDIS_ERR_EOF).
    ck_assert_int_eq(c->err, REDIS_ERR_IO);
    ck_assert_msg(strstr(c->errstr, "reset") != NULL, "%s", c->errstr);
    hkt_proxy_stats_t st;
    hkt_proxy_stats(px, &st);
    ck_assert_uint_eq(st.active, 0);
    redisFree(c);
    // One reset only: the next connection works.
    c = via_proxy(2000);
    ck_assert(ping_ok(c));
    redisFree(c);

    hkt_proxy_set_reset_new(px, 1);
    c = via_proxy(2000);
    // The kernel completes the handshake before the proxy accepts and resets:
    // the connect works, the command meets the RST (not a read timeout).
    ck_assert(c->err != 0 || !ping_ok(c));
    ck_assert_msg(strstr(c->errstr, "reset") != NULL, "%s", c->errstr);
    redisFree(c);
    hkt_proxy_set_reset_new(px, 0);
    c = via_proxy(2000);
    ck_assert(ping_ok(c));
    redisFree(c);
}
END_TEST

// connect() to 127.0.0.1:port: 0, or the errno it failed with.
static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

START_TEST(test_proxy_down_refuses_and_up_reopens_the_same_port)
{
    int port = hkt_proxy_port(px);
    redisContext *c = via_proxy(2000);
    ck_assert(ping_ok(c));
    hkt_proxy_down(px);
    ck_assert(!ping_ok(c)); // the open connection was closed
    redisFree(c);
    ck_assert_int_eq(raw_connect(port), ECONNREFUSED);
    c = via_proxy(2000);
    ck_assert_int_ne(c->err, 0);
    redisFree(c);
    hkt_proxy_down(px); // twice is fine
    char err[256] = "";
    ck_assert_msg(hkt_proxy_up(px, err, sizeof(err)) == 0, "up: %s", err);
    ck_assert_int_eq(hkt_proxy_port(px), port);
    c = via_proxy(2000);
    ck_assert(ping_ok(c));
    ck_assert_int_eq(hkt_proxy_up(px, err, sizeof(err)), 0); // already up
    ck_assert(ping_ok(c));
    redisFree(c);
}
END_TEST

START_TEST(test_proxy_up_reports_a_taken_port)
{
    int port = hkt_proxy_port(px);
    hkt_proxy_down(px);
    // Someone else takes the port while the proxy is down.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    char err[256] = "";
    ck_assert_int_eq(hkt_proxy_up(px, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "cannot listen") != NULL, "err: %s", err);
    close(fd);
    ck_assert_msg(hkt_proxy_up(px, err, sizeof(err)) == 0, "up: %s", err);
    redisContext *c = via_proxy(2000);
    ck_assert(ping_ok(c));
    redisFree(c);
}
END_TEST

START_TEST(test_proxy_close_after_cuts_a_reply)
{
    enum { N = 100000 };
    char *val = malloc(N);
    memset(val, 'v', N);
    redisContext *c = via_proxy(2000);
    redisReply *r = redisCommand(c, "SET big %b", val, (size_t)N);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    free(val);
    redisFree(c);

    ck_assert_int_eq(hkt_proxy_set_close_after(px, HKT_TO_CLIENT, 1000), 0);
    hkt_proxy_stats_t before, after;
    hkt_proxy_stats(px, &before);
    c = via_proxy(2000);
    r = redisCommand(c, "GET big");
    ck_assert_ptr_null(r);
    ck_assert_int_eq(c->err, REDIS_ERR_EOF); // closed, not reset, not timed out
    redisFree(c);
    hkt_proxy_stats(px, &after);
    ck_assert_uint_eq(after.bytes_to_client - before.bytes_to_client, 1000);
    // Requests are not cut: a short reply goes through.
    c = via_proxy(2000);
    ck_assert(ping_ok(c));
    redisFree(c);
}
END_TEST

START_TEST(test_proxy_bandwidth_is_a_lower_bound_each_way)
{
    enum { N = 200000, RATE = 400000 }; // half a second each way at least
    char *val = malloc(N);
    for (int i = 0; i < N; i++)
        val[i] = (char)('a' + i % 26);
    redisContext *c = via_proxy(10000);
    ck_assert_int_eq(hkt_proxy_set_bandwidth(px, HKT_TO_SERVER, RATE), 0);
    int64_t t0 = now_ms();
    redisReply *r = redisCommand(c, "SET big %b", val, (size_t)N);
    int64_t up_ms = now_ms() - t0;
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    ck_assert_msg(up_ms >= (int64_t)N * 1000 / RATE, "SET of %d bytes at %d B/s took %lld ms", N,
                  RATE, (long long)up_ms);

    ck_assert_int_eq(hkt_proxy_set_bandwidth(px, HKT_BOTH_WAYS, 0), 0);
    ck_assert_int_eq(hkt_proxy_set_bandwidth(px, HKT_TO_CLIENT, RATE), 0);
    t0 = now_ms();
    r = redisCommand(c, "GET big");
    int64_t down_ms = now_ms() - t0;
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(r->len, N);
    ck_assert(memcmp(r->str, val, N) == 0); // paced, not mangled
    freeReplyObject(r);
    ck_assert_msg(down_ms >= (int64_t)N * 1000 / RATE, "GET of %d bytes at %d B/s took %lld ms", N,
                  RATE, (long long)down_ms);
    fprintf(stderr, "check_proxy: %d bytes at %d B/s: SET %lld ms, GET %lld ms\n", N, RATE,
            (long long)up_ms, (long long)down_ms);
    ck_assert_int_eq(hkt_proxy_set_bandwidth(px, HKT_TO_CLIENT, -5), -1);
    free(val);
    redisFree(c);
}
END_TEST

START_TEST(test_proxy_dead_upstream_resets_clients)
{
    ck_assert_int_eq(hk_redissvc_stop(rs), 0);
    redisContext *c = via_proxy(2000);
    ck_assert(c->err != 0 || !ping_ok(c));
    redisFree(c);
    hkt_proxy_stats_t st;
    hkt_proxy_stats(px, &st);
    ck_assert_uint_ge(st.upstream_failed, 1);
    ck_assert_int_eq(hk_redissvc_restart(rs), 0);
    c = via_proxy(2000);
    ck_assert(ping_ok(c));
    redisFree(c);
}
END_TEST

START_TEST(test_proxy_stop_closes_every_socket)
{
    enum { CONNS = 20 };
    redisContext *cs[CONNS];
    for (int i = 0; i < CONNS; i++) {
        cs[i] = via_proxy(2000);
        ck_assert(ping_ok(cs[i]));
    }
    // Leave data queued behind latency in some, and some hung in a black hole.
    ck_assert_int_eq(hkt_proxy_set_latency(px, HKT_TO_CLIENT, 60000, 0), 0);
    for (int i = 0; i < CONNS / 2; i++)
        ck_assert_int_eq(redisAppendCommand(cs[i], "PING"), REDIS_OK);
    for (int i = 0; i < CONNS / 2; i++) {
        int done = 0;
        ck_assert_int_eq(redisBufferWrite(cs[i], &done), REDIS_OK);
    }
    hkt_proxy_set_blackhole(px, 1);
    hkt_proxy_stats_t st;
    hkt_proxy_stats(px, &st);
    ck_assert_uint_eq(st.active, CONNS);
    hkt_proxy_stop(px);
    px = NULL;
    for (int i = 0; i < CONNS; i++)
        redisFree(cs[i]);
    // The fixture's teardown compares the fd count with the one before start.
}
END_TEST

// Postgres: the proxy in front of the run's server, one per test.
static void pg_setup(void)
{
    fds_before = count_fds();
    px = start_proxy(pg.port);
}

static void pg_teardown(void)
{
    hkt_proxy_stop(px);
    px = NULL;
    ck_assert_int_eq(count_fds(), fds_before);
}

static PGconn *pg_via_proxy(void)
{
    char conninfo[256];
    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%d dbname=hookd user=postgres connect_timeout=5",
             hkt_proxy_port(px));
    return PQconnectdb(conninfo);
}

// 1 when SELECT 41 + 1 answers 42 on c.
static int pg_query_ok(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT 41 + 1");
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "42") == 0;
    PQclear(r);
    return ok;
}

START_TEST(test_proxy_postgres_down_and_up)
{
    PGconn *c = pg_via_proxy();
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    ck_assert(pg_query_ok(c));
    hkt_proxy_down(px);
    ck_assert(!pg_query_ok(c));
    PQfinish(c);
    c = pg_via_proxy();
    ck_assert_int_eq(PQstatus(c), CONNECTION_BAD);
    ck_assert_msg(strstr(PQerrorMessage(c), "refused") != NULL, "%s", PQerrorMessage(c));
    PQfinish(c);
    char err[256] = "";
    ck_assert_msg(hkt_proxy_up(px, err, sizeof(err)) == 0, "up: %s", err);
    c = pg_via_proxy();
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect after up: %s", PQerrorMessage(c));
    ck_assert(pg_query_ok(c));
    PQfinish(c);
}
END_TEST

START_TEST(test_proxy_postgres_latency_and_reset)
{
    PGconn *c = pg_via_proxy();
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    hkt_proxy_set_latency(px, HKT_TO_CLIENT, 200, 0);
    int64_t t0 = now_ms();
    ck_assert(pg_query_ok(c));
    int64_t took = now_ms() - t0;
    ck_assert_msg(took >= 200, "query took %lld ms with 200 ms latency", (long long)took);
    hkt_proxy_reset(px);
    ck_assert(!pg_query_ok(c));
    ck_assert_int_eq(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);
}
END_TEST

// hookd-proxy: the program, driven the way a suite in another language would.
typedef struct tool {
    pid_t pid;
    FILE *in, *out;
} tool_t;

static void tool_start(tool_t *t, int upstream_port)
{
    int to[2], from[2];
    ck_assert_int_eq(pipe(to), 0);
    ck_assert_int_eq(pipe(from), 0);
    char upstream[64];
    snprintf(upstream, sizeof(upstream), "127.0.0.1:%d", upstream_port);
    t->pid = fork();
    ck_assert_int_ge(t->pid, 0);
    if (t->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        execl(HK_BUILD_DIR "/hookd-proxy", "hookd-proxy", "0", upstream, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    t->in = fdopen(to[1], "w");
    t->out = fdopen(from[0], "r");
    setvbuf(t->in, NULL, _IOLBF, 0);
}

// Sends one command and returns its answer line (static buffer, no newline).
static const char *tool_cmd(tool_t *t, const char *cmd)
{
    static char line[512];
    fprintf(t->in, "%s\n", cmd);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), t->out));
    line[strcspn(line, "\n")] = '\0';
    return line;
}

START_TEST(test_proxy_tool_follows_stdin_commands)
{
    tool_t t;
    tool_start(&t, hk_redissvc_port(rs));
    char line[256];
    int port = 0;
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), t.out));
    ck_assert_int_eq(sscanf(line, "{\"event\":\"proxy_listening\",\"port\":%d}", &port), 1);
    ck_assert_int_gt(port, 0);

    struct timeval tv = {.tv_sec = 2};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    ck_assert(ping_ok(c));
    ck_assert_str_eq(tool_cmd(&t, "latency 200 to-client"), "ok");
    int64_t t0 = now_ms();
    ck_assert(ping_ok(c));
    ck_assert_int_ge(now_ms() - t0, 200);
    ck_assert_str_eq(tool_cmd(&t, "down"), "ok");
    ck_assert(!ping_ok(c));
    redisFree(c);
    ck_assert_int_eq(raw_connect(port), ECONNREFUSED);
    ck_assert_str_eq(tool_cmd(&t, "clear"), "ok");
    c = redisConnectWithTimeout("127.0.0.1", port, tv);
    ck_assert(ping_ok(c));
    const char *st = tool_cmd(&t, "stats");
    ck_assert_msg(strstr(st, "\"accepted\":2,\"active\":1,") != NULL, "stats: %s", st);
    ck_assert_str_eq(tool_cmd(&t, "blackhole on"), "ok");
    redisSetTimeout(c, (struct timeval){.tv_usec = 300000});
    ck_assert(!ping_ok(c));
    redisFree(c);
    ck_assert(strncmp(tool_cmd(&t, "latency fast"), "error: ", 7) == 0);
    ck_assert(strncmp(tool_cmd(&t, "blackhole maybe"), "error: ", 7) == 0);
    ck_assert(strncmp(tool_cmd(&t, "teleport"), "error: ", 7) == 0);
    ck_assert(strncmp(tool_cmd(&t, "down now"), "error: ", 7) == 0);
    ck_assert_str_eq(tool_cmd(&t, "bandwidth 1000 to-server"), "ok");
    ck_assert_str_eq(tool_cmd(&t, "close-after 10"), "ok");
    ck_assert_str_eq(tool_cmd(&t, "reset-new on"), "ok");
    ck_assert_str_eq(tool_cmd(&t, "reset"), "ok");
    // EOF on stdin: it exits 0.
    fclose(t.in);
    int status = 0;
    ck_assert_int_eq(waitpid(t.pid, &status, 0), t.pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fclose(t.out);
}
END_TEST

START_TEST(test_proxy_start_rejects_bad_options)
{
    char err[256] = "";
    hkt_proxy_opts_t o = {.upstream_host = "127.0.0.1", .upstream_port = 0};
    ck_assert_ptr_null(hkt_proxy_start(&o, err, sizeof(err)));
    ck_assert_msg(strstr(err, "1..65535") != NULL, "%s", err);
    o = (hkt_proxy_opts_t){.upstream_host = "no-such-host.invalid", .upstream_port = 5432};
    ck_assert_ptr_null(hkt_proxy_start(&o, err, sizeof(err)));
    ck_assert_msg(strstr(err, "does not resolve") != NULL, "%s", err);
    o = (hkt_proxy_opts_t){
        .port = hkt_proxy_port(px), .upstream_host = "127.0.0.1", .upstream_port = 5432};
    ck_assert_ptr_null(hkt_proxy_start(&o, err, sizeof(err)));
    ck_assert_msg(strstr(err, "cannot listen") != NULL, "%s", err);
    ck_assert_ptr_null(hkt_proxy_start(NULL, NULL, 0));
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->pg = &pg;
    Suite *s = suite_create("proxy");
    TCase *tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, redis_setup, redis_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_proxy_forwards_and_counts_each_byte);
    tcase_add_test(tc, test_proxy_latency_is_added_each_way);
    tcase_add_test(tc, test_proxy_blackhole_hangs_then_lifts);
    tcase_add_test(tc, test_proxy_blackhole_drops_what_it_reads);
    tcase_add_test(tc, test_proxy_blackhole_stops_data_in_flight);
    tcase_add_test(tc, test_proxy_reset_breaks_open_and_new_connections);
    tcase_add_test(tc, test_proxy_down_refuses_and_up_reopens_the_same_port);
    tcase_add_test(tc, test_proxy_up_reports_a_taken_port);
    tcase_add_test(tc, test_proxy_close_after_cuts_a_reply);
    tcase_add_test(tc, test_proxy_bandwidth_is_a_lower_bound_each_way);
    tcase_add_test(tc, test_proxy_dead_upstream_resets_clients);
    tcase_add_test(tc, test_proxy_stop_closes_every_socket);
    tcase_add_test(tc, test_proxy_tool_follows_stdin_commands);
    tcase_add_test(tc, test_proxy_start_rejects_bad_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("postgres");
    tcase_add_checked_fixture(tc, pg_setup, pg_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_proxy_postgres_down_and_up);
    tcase_add_test(tc, test_proxy_postgres_latency_and_reset);
    suite_add_tcase(s, tc);
    return s;
}
