// pg: one Postgres connection (libpq) that reconnects by itself, with backoff, and
// keeps prepared statements per connection (DESIGN §9). Every store module
// (migrate, checkpoint, dlstore) talks to Postgres through an hk_pg_t.
//
// Bounded waits: connecting gives up after connect_timeout_ms; every statement
// runs under the server's statement_timeout (query_timeout_ms) and the client
// stops waiting for an answer shortly after that and drops the connection. TCP
// keepalives and tcp_user_timeout notice a peer that vanished without closing
// the socket; a stopped server closes it, which the next call sees at once.
//
// Threads: an hk_pg_t is used by one thread at a time (no locks inside); give
// each thread its own, or hold a lock around every call including the use of a
// returned PGresult's connection. hk_metrics.pg_* are left to the caller.
#ifndef HK_PG_H
#define HK_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "config/config.h"

typedef struct hk_pg_s hk_pg_t;

typedef struct hk_pg_opts {
    const char *conninfo;   // libpq conninfo or postgresql:// URI (copied)
    int connect_timeout_ms; // per attempt (0 = 5000)
    int reconnect_max_ms;   // backoff after failures grows (x2 from 100 ms) up to this (0 = 30000)
    int query_timeout_ms;   // statement_timeout; the client waits 5 s more (0 = 30000)
} hk_pg_opts_t;

// No I/O yet; NULL on ENOMEM (or a NULL conninfo).
hk_pg_t *hk_pg_new(const hk_pg_opts_t *opts);

// hk_pg_new() with the [postgres] settings of `cfg`; `conninfo` NULL means
// postgres.url.
hk_pg_t *hk_pg_new_config(const hk_config_t *cfg, const char *conninfo);
// Closes the connection (an open transaction is rolled back by the server).
void hk_pg_destroy(hk_pg_t *pg);

// 0 when connected, connecting when needed (a connection whose socket the server
// closed is noticed here and replaced). -1 with err when the attempt failed, or
// at once while inside the backoff window after a failed attempt:
// "postgres unavailable, next attempt in N ms: <last error>". A failed attempt
// doubles the window (from 100 ms up to reconnect_max_ms); a good one resets it.
int hk_pg_ensure(hk_pg_t *pg, char *err, size_t err_size);

// 1 while the connection is good (as far as the last call knows).
int hk_pg_up(const hk_pg_t *pg);

// Runs `sql` as a statement prepared once per connection under `name` (text
// params; a NULL element is SQL NULL). Connects first when needed (hk_pg_ensure),
// except inside a transaction whose connection was lost: that fails until
// hk_pg_rollback(). Returns the PGresult on PGRES_COMMAND_OK / PGRES_TUPLES_OK
// (caller PQclear()s), else NULL with the server's message in err ("<primary
// message> (<detail>)"). When the connection broke it is marked down (the next
// hk_pg_ensure reconnects) and the prepared statements are forgotten. A name
// must always be used with the same sql.
PGresult *hk_pg_exec(hk_pg_t *pg, const char *name, const char *sql, int nparams,
                     const char *const *params, char *err, size_t err_size);

// hk_pg_exec with per-parameter lengths and formats (1 = binary, e.g. bytea
// bytes; NULL arrays = all text) and the result format (0 text, 1 binary).
PGresult *hk_pg_exec_params(hk_pg_t *pg, const char *name, const char *sql, int nparams,
                            const char *const *values, const int *lengths, const int *formats,
                            int result_format, char *err, size_t err_size);

// Runs `sql` unprepared, through the simple query protocol: it may hold several
// statements (a migration script); the last statement's result is returned.
// timeout_ms bounds the client's wait (0 = query_timeout_ms + 5 s); the server's
// statement_timeout still applies unless the script changes it.
PGresult *hk_pg_exec_script(hk_pg_t *pg, const char *sql, int timeout_ms, char *err,
                            size_t err_size);

// Transactions. begin connects when needed; 0 ok. commit fails (-1) also when
// the server rolled the transaction back (an earlier statement failed).
// rollback is best effort and always leaves the handle outside a transaction.
int hk_pg_begin(hk_pg_t *pg, char *err, size_t err_size);
int hk_pg_commit(hk_pg_t *pg, char *err, size_t err_size);
void hk_pg_rollback(hk_pg_t *pg);
// 1 between hk_pg_begin and hk_pg_commit/hk_pg_rollback.
int hk_pg_in_transaction(const hk_pg_t *pg);

// The live connection for migrate and tools; NULL when down. It is in
// nonblocking mode (PQexec still blocks); don't PQfinish it.
PGconn *hk_pg_conn(hk_pg_t *pg);

// Text for a text column: `s` itself when it is valid UTF-8 (or NULL), else a
// copy in *tofree with each invalid byte replaced by '?' (caller frees *tofree;
// NULL when no copy was needed or memory ran out, then `s` is returned).
const char *hk_pg_utf8(const char *s, char **tofree);

// A Postgres array literal for one text parameter, so a statement can take a
// whole column at once ("unnest($1::integer[], $2::text[])"):
//   hk_pg_array_t a; hk_pg_array_init(&a); hk_pg_array_int(&a, 7); hk_pg_array_text(&a, NULL);
//   const char *lit = hk_pg_array_finish(&a);   // "{7,NULL}"; NULL when out of memory
//   ...; hk_pg_array_free(&a);
// Text elements are quoted and escaped; invalid UTF-8 bytes become '?'.
typedef struct hk_pg_array {
    char *buf;
    size_t len, cap;
    int oom; // an append ran out of memory: finish() returns NULL
} hk_pg_array_t;

void hk_pg_array_init(hk_pg_array_t *a);
void hk_pg_array_int(hk_pg_array_t *a, long long v);
void hk_pg_array_text(hk_pg_array_t *a, const char *s); // NULL = a NULL element
const char *hk_pg_array_finish(hk_pg_array_t *a);
void hk_pg_array_free(hk_pg_array_t *a);

// RFC 3339 UTC with milliseconds, as a SQL expression over a timestamptz column:
// HK_PG_RFC3339("created_at") -> "2024-05-01T12:00:00.123Z".
#define HK_PG_RFC3339(col)                                                                         \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

#endif
