// pg: the connection is opened with PQconnectStartParams/PQconnectPoll and used
// in nonblocking mode, so every wait is a poll() with a deadline rather than a
// blocking libpq call. Statements prepared on the current connection are
// remembered by name; the list is dropped with the connection. A generation
// number, bumped per connection, ties a transaction to the connection it began
// on, so a reconnect can never silently continue a transaction in autocommit.
#include "store/pg.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"

#define PG_BACKOFF_FIRST_MS 100
#define PG_CLIENT_GRACE_MS  5000 // the client waits this much longer than statement_timeout

typedef struct pg_stmt {
    char *name;
    char *sql;
} pg_stmt_t;

struct hk_pg_s {
    char *pg_conninfo;
    int pg_connect_timeout_ms;
    int pg_reconnect_max_ms;
    int pg_query_timeout_ms;

    PGconn *pg_conn;       // NULL while down
    uint64_t pg_gen;       // bumped on every new connection
    int pg_backoff_ms;     // current window; 0 after a good attempt
    int64_t pg_next_ms;    // monotonic: no attempt before this
    char pg_last_err[512]; // why the last attempt failed

    int pg_tx;          // between begin and commit/rollback
    uint64_t pg_tx_gen; // the connection the transaction began on

    pg_stmt_t *pg_stmts; // prepared on pg_conn
    size_t pg_stmts_cnt;
    size_t pg_stmts_cap;
};

// Copies `msg` into err with runs of whitespace (libpq's newlines and tabs)
// folded into one space and no trailing space.
static void set_err_trimmed(char *err, size_t err_size, const char *msg)
{
    if (err == NULL || err_size == 0)
        return;
    size_t n = 0;
    int space = 0;
    for (const char *p = msg ? msg : ""; *p && n + 1 < err_size; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            space = 1;
            continue;
        }
        if (space && n > 0 && n + 2 < err_size)
            err[n++] = ' ';
        space = 0;
        err[n++] = *p;
    }
    err[n] = '\0';
}

// "<primary> (<detail>)" from a failed result, else libpq's message.
static void set_err_result(hk_pg_t *pg, const PGresult *r, char *err, size_t err_size)
{
    const char *prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (prim == NULL) {
        const char *m = r ? PQresultErrorMessage(r) : "";
        if (*m == '\0')
            m = pg->pg_conn ? PQerrorMessage(pg->pg_conn) : "no connection";
        if (*m == '\0' && r)
            m = PQresStatus(PQresultStatus(r));
        set_err_trimmed(err, err_size, m);
        return;
    }
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    char buf[1024];
    if (detail)
        snprintf(buf, sizeof(buf), "%s (%s)", prim, detail);
    else
        snprintf(buf, sizeof(buf), "%s", prim);
    set_err_trimmed(err, err_size, buf);
}

static void stmts_clear(hk_pg_t *pg)
{
    for (size_t i = 0; i < pg->pg_stmts_cnt; i++) {
        free(pg->pg_stmts[i].name);
        free(pg->pg_stmts[i].sql);
    }
    pg->pg_stmts_cnt = 0;
}

// Drops the connection: the next hk_pg_ensure opens a new one.
static void mark_down(hk_pg_t *pg)
{
    if (pg->pg_conn)
        PQfinish(pg->pg_conn);
    pg->pg_conn = NULL;
    stmts_clear(pg);
}

hk_pg_t *hk_pg_new_config(const hk_config_t *cfg, const char *conninfo)
{
    hk_pg_opts_t po = {.conninfo = conninfo ? conninfo : cfg->postgres_url,
                       .connect_timeout_ms = cfg->postgres_connect_timeout_ms,
                       .reconnect_max_ms = cfg->postgres_reconnect_max_ms};
    return hk_pg_new(&po);
}

hk_pg_t *hk_pg_new(const hk_pg_opts_t *opts)
{
    if (opts == NULL || opts->conninfo == NULL)
        return NULL;
    hk_pg_t *pg = calloc(1, sizeof(*pg));
    if (pg == NULL)
        return NULL;
    pg->pg_conninfo = strdup(opts->conninfo);
    if (pg->pg_conninfo == NULL) {
        free(pg);
        return NULL;
    }
    pg->pg_connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 5000;
    pg->pg_reconnect_max_ms = opts->reconnect_max_ms > 0 ? opts->reconnect_max_ms : 30000;
    pg->pg_query_timeout_ms = opts->query_timeout_ms > 0 ? opts->query_timeout_ms : 30000;
    return pg;
}

void hk_pg_destroy(hk_pg_t *pg)
{
    if (pg == NULL)
        return;
    mark_down(pg);
    free(pg->pg_stmts);
    free(pg->pg_conninfo);
    free(pg);
}

int hk_pg_up(const hk_pg_t *pg)
{
    return pg->pg_conn != NULL && PQstatus(pg->pg_conn) == CONNECTION_OK;
}

int hk_pg_in_transaction(const hk_pg_t *pg)
{
    return pg->pg_tx;
}

PGconn *hk_pg_conn(hk_pg_t *pg)
{
    return hk_pg_up(pg) ? pg->pg_conn : NULL;
}

// Waits until the connection's socket is ready for `events` or `deadline`
// (monotonic ms; < 0 = none). 1 ready, 0 timed out, -1 error.
static int wait_socket(PGconn *c, short events, int64_t deadline)
{
    int fd = PQsocket(c);
    if (fd < 0)
        return -1;
    for (;;) {
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - hk_clock_mono_ms();
            if (left <= 0)
                return 0;
            timeout = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int rc = poll(&pfd, 1, timeout);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

// Sends what libpq has buffered and collects the results of the query just
// sent. Returns the last result when every one succeeded; otherwise NULL with
// err (the first error wins) and, when the connection broke or did not answer
// in time, the connection dropped.
static PGresult *collect(hk_pg_t *pg, int timeout_ms, char *err, size_t err_size)
{
    PGconn *c = pg->pg_conn;
    int64_t deadline = timeout_ms < 0 ? -1 : hk_clock_mono_ms() + timeout_ms;
    PGresult *keep = NULL;

    for (;;) {
        int f = PQflush(c);
        if (f == 0)
            break;
        if (f < 0)
            goto broken;
        int w = wait_socket(c, POLLOUT | POLLIN, deadline);
        if (w == 0)
            goto timeout;
        if (w < 0 || PQconsumeInput(c) == 0)
            goto broken;
    }
    for (;;) {
        while (PQisBusy(c)) {
            int w = wait_socket(c, POLLIN, deadline);
            if (w == 0)
                goto timeout;
            if (w < 0 || PQconsumeInput(c) == 0)
                goto broken;
        }
        PGresult *r = PQgetResult(c);
        if (r == NULL)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            // Not something hookd sends; the connection is unusable for us now.
            PQclear(r);
            PQclear(keep);
            hk_err_set(err, err_size, "%s", "unexpected COPY in a statement; connection reset");
            mark_down(pg);
            return NULL;
        }
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
            PQclear(r); // keep the first error
            continue;
        }
        PQclear(keep);
        keep = r;
    }

    if (keep == NULL) {
        hk_err_set(err, err_size, "%s", "postgres returned no result");
        return NULL;
    }
    ExecStatusType st = PQresultStatus(keep);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return keep;
    set_err_result(pg, keep, err, err_size);
    PQclear(keep);
    if (PQstatus(c) == CONNECTION_BAD)
        mark_down(pg);
    return NULL;

timeout:
    PQclear(keep);
    if (err && err_size)
        snprintf(err, err_size, "postgres did not answer within %d ms; connection reset",
                 timeout_ms);
    mark_down(pg);
    return NULL;
broken:
    PQclear(keep);
    set_err_trimmed(err, err_size, PQerrorMessage(c));
    if (err && err_size && err[0] == '\0')
        hk_err_set(err, err_size, "%s", "connection to postgres lost");
    mark_down(pg);
    return NULL;
}

static int client_timeout(const hk_pg_t *pg)
{
    return pg->pg_query_timeout_ms + PG_CLIENT_GRACE_MS;
}

// Server notices ("relation ... already exists, skipping") are not errors; libpq
// would print them to stderr.
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

// One connection attempt, bounded by connect_timeout_ms. 0 ok.
static int connect_once(hk_pg_t *pg, char *err, size_t err_size)
{
    // Keepalives notice a dead peer on an idle connection within ~60 s,
    // tcp_user_timeout one that stops acknowledging what we send.
    char user_to[16];
    snprintf(user_to, sizeof(user_to), "%d", client_timeout(pg));
    // Ours first: the conninfo (expanded from dbname, processed last) may override them.
    const char *const kw[] = {"keepalives",       "keepalives_idle",  "keepalives_interval",
                              "keepalives_count", "tcp_user_timeout", "application_name",
                              "client_encoding",  "dbname",           NULL};
    const char *const val[] = {"1", "30", "10", "3", user_to, "hookd", "UTF8", pg->pg_conninfo,
                               NULL};

    PGconn *c = PQconnectStartParams(kw, val, 1);
    if (c == NULL) {
        hk_err_set(err, err_size, "%s", "out of memory");
        return -1;
    }
    int64_t deadline = hk_clock_mono_ms() + pg->pg_connect_timeout_ms;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int w = wait_socket(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (w == 0) {
            if (err && err_size)
                snprintf(err, err_size, "connection attempt timed out after %d ms",
                         pg->pg_connect_timeout_ms);
            PQfinish(c);
            return -1;
        }
        if (w < 0)
            break;
        st = PQconnectPoll(c);
    }
    if (PQstatus(c) != CONNECTION_OK) {
        set_err_trimmed(err, err_size, PQerrorMessage(c));
        if (err && err_size && err[0] == '\0')
            hk_err_set(err, err_size, "%s", "connection failed");
        PQfinish(c);
        return -1;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);
    if (PQsetnonblocking(c, 1) != 0) {
        set_err_trimmed(err, err_size, PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }

    pg->pg_conn = c;
    pg->pg_gen++;
    stmts_clear(pg);
    char sql[64];
    snprintf(sql, sizeof(sql), "SET statement_timeout = %d", pg->pg_query_timeout_ms);
    if (PQsendQuery(c, sql) == 0) {
        set_err_trimmed(err, err_size, PQerrorMessage(c));
        mark_down(pg);
        return -1;
    }
    PGresult *r = collect(pg, client_timeout(pg), err, err_size);
    if (r == NULL) {
        mark_down(pg);
        return -1;
    }
    PQclear(r);
    return 0;
}

int hk_pg_ensure(hk_pg_t *pg, char *err, size_t err_size)
{
    if (pg->pg_conn) {
        // Reading what is there (never blocks) notices a socket the server closed.
        if (PQstatus(pg->pg_conn) == CONNECTION_OK && PQconsumeInput(pg->pg_conn) == 1 &&
            PQstatus(pg->pg_conn) == CONNECTION_OK)
            return 0;
        mark_down(pg);
    }

    int64_t now = hk_clock_mono_ms();
    if (now < pg->pg_next_ms) {
        if (err && err_size)
            snprintf(err, err_size, "postgres unavailable, next attempt in %lld ms: %s",
                     (long long)(pg->pg_next_ms - now), pg->pg_last_err);
        return -1;
    }
    char why[sizeof(pg->pg_last_err)];
    if (connect_once(pg, why, sizeof(why)) == 0) {
        pg->pg_backoff_ms = 0;
        pg->pg_next_ms = 0;
        pg->pg_last_err[0] = '\0';
        return 0;
    }
    if (pg->pg_backoff_ms == 0)
        pg->pg_backoff_ms = PG_BACKOFF_FIRST_MS;
    else if (pg->pg_backoff_ms <= pg->pg_reconnect_max_ms / 2)
        pg->pg_backoff_ms *= 2;
    else
        pg->pg_backoff_ms = pg->pg_reconnect_max_ms;
    if (pg->pg_backoff_ms > pg->pg_reconnect_max_ms)
        pg->pg_backoff_ms = pg->pg_reconnect_max_ms;
    pg->pg_next_ms = hk_clock_mono_ms() + pg->pg_backoff_ms;
    memcpy(pg->pg_last_err, why, sizeof(why));
    if (err && err_size)
        snprintf(err, err_size, "postgres unavailable, next attempt in %d ms: %s",
                 pg->pg_backoff_ms, why);
    return -1;
}

// Connected and, inside a transaction, still on the connection it began on.
static int ready(hk_pg_t *pg, char *err, size_t err_size)
{
    if (pg->pg_tx) {
        if (pg->pg_conn == NULL || pg->pg_gen != pg->pg_tx_gen) {
            hk_err_set(err, err_size, "%s",
                       "the connection to postgres was lost inside a transaction; roll it back");
            return -1;
        }
        return 0;
    }
    return hk_pg_ensure(pg, err, err_size);
}

static int stmt_prepared(hk_pg_t *pg, const char *name, const char *sql, char *err, size_t err_size)
{
    for (size_t i = 0; i < pg->pg_stmts_cnt; i++) {
        if (strcmp(pg->pg_stmts[i].name, name) == 0) {
            if (strcmp(pg->pg_stmts[i].sql, sql) == 0)
                return 1;
            hk_err_set(err, err_size, "statement %s is already prepared with other sql", name);
            return -1;
        }
    }
    return 0;
}

static int stmt_remember(hk_pg_t *pg, const char *name, const char *sql)
{
    if (pg->pg_stmts_cnt == pg->pg_stmts_cap) {
        size_t cap = pg->pg_stmts_cap ? pg->pg_stmts_cap * 2 : 16;
        pg_stmt_t *s = realloc(pg->pg_stmts, cap * sizeof(*s));
        if (s == NULL)
            return -1;
        pg->pg_stmts = s;
        pg->pg_stmts_cap = cap;
    }
    char *n = strdup(name), *q = strdup(sql);
    if (n == NULL || q == NULL) {
        free(n);
        free(q);
        return -1;
    }
    pg->pg_stmts[pg->pg_stmts_cnt++] = (pg_stmt_t){n, q};
    return 0;
}

// After a failed PQsend*: the connection may be gone.
static void send_failed(hk_pg_t *pg, char *err, size_t err_size)
{
    set_err_trimmed(err, err_size, PQerrorMessage(pg->pg_conn));
    if (PQstatus(pg->pg_conn) == CONNECTION_BAD)
        mark_down(pg);
}

PGresult *hk_pg_exec_params(hk_pg_t *pg, const char *name, const char *sql, int nparams,
                            const char *const *values, const int *lengths, const int *formats,
                            int result_format, char *err, size_t err_size)
{
    if (ready(pg, err, err_size) != 0)
        return NULL;
    int known = stmt_prepared(pg, name, sql, err, err_size);
    if (known < 0)
        return NULL;
    if (known == 0) {
        if (PQsendPrepare(pg->pg_conn, name, sql, 0, NULL) == 0) {
            send_failed(pg, err, err_size);
            return NULL;
        }
        PGresult *r = collect(pg, client_timeout(pg), err, err_size);
        if (r == NULL)
            return NULL;
        PQclear(r);
        if (stmt_remember(pg, name, sql) != 0) {
            hk_err_set(err, err_size, "%s", "out of memory");
            mark_down(pg); // the server has it; forget the connection rather than mismatch
            return NULL;
        }
    }
    if (PQsendQueryPrepared(pg->pg_conn, name, nparams, values, lengths, formats, result_format) ==
        0) {
        send_failed(pg, err, err_size);
        return NULL;
    }
    return collect(pg, client_timeout(pg), err, err_size);
}

PGresult *hk_pg_exec(hk_pg_t *pg, const char *name, const char *sql, int nparams,
                     const char *const *params, char *err, size_t err_size)
{
    return hk_pg_exec_params(pg, name, sql, nparams, params, NULL, NULL, 0, err, err_size);
}

PGresult *hk_pg_exec_script(hk_pg_t *pg, const char *sql, int timeout_ms, char *err,
                            size_t err_size)
{
    if (ready(pg, err, err_size) != 0)
        return NULL;
    if (PQsendQuery(pg->pg_conn, sql) == 0) {
        send_failed(pg, err, err_size);
        return NULL;
    }
    return collect(pg, timeout_ms > 0 ? timeout_ms : client_timeout(pg), err, err_size);
}

int hk_pg_begin(hk_pg_t *pg, char *err, size_t err_size)
{
    if (pg->pg_tx) {
        hk_err_set(err, err_size, "%s", "a transaction is already open");
        return -1;
    }
    PGresult *r = hk_pg_exec_script(pg, "BEGIN", 0, err, err_size);
    if (r == NULL)
        return -1;
    PQclear(r);
    pg->pg_tx = 1;
    pg->pg_tx_gen = pg->pg_gen;
    return 0;
}

int hk_pg_commit(hk_pg_t *pg, char *err, size_t err_size)
{
    if (!pg->pg_tx) {
        hk_err_set(err, err_size, "%s", "no transaction is open");
        return -1;
    }
    if (ready(pg, err, err_size) != 0) {
        pg->pg_tx = 0;
        return -1;
    }
    PGresult *r = hk_pg_exec_script(pg, "COMMIT", 0, err, err_size);
    pg->pg_tx = 0;
    if (r == NULL)
        return -1;
    // COMMIT of a failed transaction "succeeds" with the tag ROLLBACK.
    int ok = strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (!ok) {
        hk_err_set(err, err_size, "%s",
                   "the transaction was rolled back by the server (a statement in it failed)");
        return -1;
    }
    return 0;
}

void hk_pg_rollback(hk_pg_t *pg)
{
    if (!pg->pg_tx)
        return;
    if (pg->pg_conn && pg->pg_gen == pg->pg_tx_gen) {
        char err[256];
        PGresult *r = hk_pg_exec_script(pg, "ROLLBACK", 0, err, sizeof(err));
        PQclear(r);
    }
    pg->pg_tx = 0;
}

// Length of the valid UTF-8 sequence at p (as Postgres accepts it: no
// overlongs, no surrogates, at most U+10FFFF), 0 when invalid.
static size_t utf8_seq(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

const char *hk_pg_utf8(const char *s, char **tofree)
{
    *tofree = NULL;
    if (s == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    while (p[i] && (n = utf8_seq(p + i)) > 0)
        i += n;
    if (p[i] == '\0')
        return s;
    char *copy = strdup(s);
    if (copy == NULL)
        return s;
    unsigned char *q = (unsigned char *)copy;
    while (q[i]) {
        n = utf8_seq(q + i);
        if (n == 0) {
            q[i] = '?';
            n = 1;
        }
        i += n;
    }
    *tofree = copy;
    return copy;
}

static void arr_put(hk_pg_array_t *a, const char *p, size_t n)
{
    if (a->oom)
        return;
    if (a->len + n + 2 > a->cap) { // room for '}' and NUL
        size_t cap = a->cap ? a->cap : 256;
        while (a->len + n + 2 > cap)
            cap *= 2;
        char *b = realloc(a->buf, cap);
        if (b == NULL) {
            a->oom = 1;
            return;
        }
        a->buf = b;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

void hk_pg_array_init(hk_pg_array_t *a)
{
    *a = (hk_pg_array_t){0};
    arr_put(a, "{", 1);
}

static void arr_sep(hk_pg_array_t *a)
{
    if (a->len > 1)
        arr_put(a, ",", 1);
}

void hk_pg_array_int(hk_pg_array_t *a, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", v);
    arr_sep(a);
    arr_put(a, num, (size_t)n);
}

void hk_pg_array_text(hk_pg_array_t *a, const char *s)
{
    arr_sep(a);
    if (s == NULL) {
        arr_put(a, "NULL", 4);
        return;
    }
    arr_put(a, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_seq(p);
        if (n == 0) {
            arr_put(a, "?", 1);
            p++;
            continue;
        }
        if (*p == '"' || *p == '\\')
            arr_put(a, "\\", 1);
        arr_put(a, (const char *)p, n);
        p += n;
    }
    arr_put(a, "\"", 1);
}

const char *hk_pg_array_finish(hk_pg_array_t *a)
{
    if (a->oom || a->buf == NULL)
        return NULL;
    a->buf[a->len] = '}';
    a->buf[a->len + 1] = '\0';
    return a->buf;
}

void hk_pg_array_free(hk_pg_array_t *a)
{
    free(a->buf);
    *a = (hk_pg_array_t){0};
}
