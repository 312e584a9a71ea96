// redissvc: a throwaway redis-server for tests. Each one gets its own free port
// on 127.0.0.1 and its own temporary directory (config-free: no persistence, no
// daemonizing), so suites running at the same time never share a server. It can
// be stopped and started again on the same port, and paused (SIGSTOP) to play a
// server that accepts connections but never answers. Prefix hk_redissvc_.
//
// The server dies with the thread that started it (PR_SET_PDEATHSIG). Servers
// still running at exit() are destroyed; the directories of processes that ended
// without exit() (a failed forked Check test ends with _exit) are removed by the
// next hk_redissvc_start(). Not thread-safe: one thread drives a server.
#ifndef HK_REDISSVC_H
#define HK_REDISSVC_H

#include <sys/types.h>

typedef struct hk_redissvc_s hk_redissvc_t;

typedef struct hk_redissvc_opts {
    const char *password; // --requirepass; NULL: none
    int unix_socket;      // 1: also listen on <dir>/redis.sock
} hk_redissvc_opts_t;

// Starts /usr/bin/redis-server (HK_REDIS_SERVER overrides the path) and waits
// until it answers PING. `opts` may be NULL. NULL with a sentence in err.
hk_redissvc_t *hk_redissvc_start(const hk_redissvc_opts_t *opts, char *err, size_t err_size);
// Stops the server (SIGTERM, waits; SIGKILL after 5 s) and removes its directory.
void hk_redissvc_destroy(hk_redissvc_t *svc);

// SIGTERM and wait for it to exit. 0, or -1 when it had to be killed.
int hk_redissvc_stop(hk_redissvc_t *svc);
// Starts it again on the same port (after stop). 0, or -1 (the port was taken, or
// it did not answer within 5 s).
int hk_redissvc_restart(hk_redissvc_t *svc);
// SIGSTOP / SIGCONT: connections are still accepted by the kernel, never answered.
void hk_redissvc_pause(hk_redissvc_t *svc);
void hk_redissvc_resume(hk_redissvc_t *svc);

int hk_redissvc_port(const hk_redissvc_t *svc);
pid_t hk_redissvc_pid(const hk_redissvc_t *svc); // 0 when stopped
// "redis://127.0.0.1:<port>", with ":<password>@" when there is one.
const char *hk_redissvc_url(const hk_redissvc_t *svc);
// "unix:<dir>/redis.sock" (opts.unix_socket), else NULL.
const char *hk_redissvc_unix_url(const hk_redissvc_t *svc);

// Runs one command on a fresh connection (redisCommand format) and returns the
// hiredis reply (caller frees with freeReplyObject), NULL when it failed.
void *hk_redissvc_command(const hk_redissvc_t *svc, const char *fmt, ...);
// The same, for the common case of an integer reply (TTL, PTTL, EXISTS, DBSIZE):
// returns it, or -999 when the command failed or did not return an integer.
long long hk_redissvc_int(const hk_redissvc_t *svc, const char *fmt, ...);

#endif
