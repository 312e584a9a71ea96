// pgsvc: a throwaway Postgres server for tests (DESIGN §9). Each server gets its
// own temp dir (data dir, unix socket, log) and its own free TCP port on
// 127.0.0.1, so suites running at the same time never share one. Durability is
// off (fsync, synchronous_commit, full_page_writes) for speed.
//
// The dir is $TMPDIR/hk-pg-XXXXXX (TMPDIR unset: /tmp); keep TMPDIR short, the
// socket path must fit in 107 bytes. Run as root, initdb and postgres run as
// the `postgres` user and the dir is owned by it. The server is a child of the
// calling process and thread (it is sent SIGQUIT if that thread exits without
// stopping it), so start, stop, restart and destroy it from the same process;
// with CK_FORK=yes that means either at the top of main() or inside one test.
#ifndef HK_PGSVC_H
#define HK_PGSVC_H

#include <stddef.h>
#include <sys/types.h>

#define HK_PGSVC_BIN "/usr/lib/postgresql/15/bin" // override with $HK_PG_BINDIR

typedef struct hk_pgsvc {
    char dir[256];      // data dir (dir/data), socket dir and logs (temp)
    int port;           // 127.0.0.1 TCP port, also names the socket
    char conninfo[512]; // "host=<dir> port=<port> dbname=hookd user=postgres connect_timeout=2"
    pid_t pid;          // postmaster, 0 when stopped
} hk_pgsvc_t;

// initdb (once: when s->dir is empty) + start + CREATE DATABASE hookd. 0 ok; on
// failure the server's log is printed to stderr and -1 returned.
int hk_pgsvc_start(hk_pgsvc_t *s);
// Fast shutdown (SIGINT to the postmaster) and waits until it is gone; data kept
// (for outage tests). 0 ok (also when not running).
int hk_pgsvc_stop(hk_pgsvc_t *s);
// Starts again on the same dir and port after stop. 0 ok.
int hk_pgsvc_restart(hk_pgsvc_t *s);
// Stops and removes the dir.
void hk_pgsvc_destroy(hk_pgsvc_t *s);

// CREATE DATABASE `name` (an identifier: [a-z0-9_]) on the server and writes a
// conninfo for it into `conninfo`. 0 ok.
int hk_pgsvc_create_db(hk_pgsvc_t *s, const char *name, char *conninfo, size_t size);

// Runs one SQL command (no result needed) against `conninfo`; 0 ok, else -1
// with the error on stderr. For test setup and tampering.
int hk_pgsvc_exec(const char *conninfo, const char *sql);

#endif
