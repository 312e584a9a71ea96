// hkt_proxy: a fault-injecting TCP proxy for test suites (part of hookd-testkit).
// It listens on 127.0.0.1 and forwards every connection it accepts to one
// upstream host:port (Redis, Postgres, a Kafka broker), so a test can put a
// dependency behind it and then slow it down, throttle it, black-hole it, reset
// its connections, cut them after N bytes, or take it down and up again on the
// same port, while the code under test keeps its usual client.
//
// Threads: hkt_proxy_start() starts one thread that owns the listener and every
// connection (a poll loop, at most opts.max_conns connections). Every other
// function may be called from any thread, including several at once. A call that
// changes a fault returns once the proxy thread has applied it: after
// hkt_proxy_down() returns a connect is refused; after hkt_proxy_set_latency()
// returns every chunk read from then on is delayed. Data already read keeps the
// fault it was read under (a chunk queued with 200 ms of latency still waits).
//
// Ownership: the proxy copies what it needs from opts (the upstream host is
// resolved once, at start). hkt_proxy_stop() closes every socket it opened and
// frees the handle; the proxy never closes or touches the caller's sockets.
//
// Errors: functions that can fail return 0 or -1; start and up fill `err` with a
// sentence (NULL err is allowed). Setters fail only on an out-of-range argument.
// Prefix hkt_proxy_ (the testkit's prefix is hkt_, not the daemon's hk_).
#ifndef HKT_PROXY_H
#define HKT_PROXY_H

#include <stddef.h>
#include <stdint.h>

typedef struct hkt_proxy_s hkt_proxy_t;

typedef struct hkt_proxy_opts {
    int port;                  // listen port on 127.0.0.1; 0 = ephemeral (hkt_proxy_port())
    const char *upstream_host; // name or address, resolved once at start
    int upstream_port;         // 1..65535
    int max_conns;             // connections open at once; 0 = 256. More wait in the backlog.
} hkt_proxy_opts_t;

// Which way a fault applies. To the server: what the client sends (requests);
// to the client: what the server answers (replies).
typedef enum hkt_proxy_dir {
    HKT_TO_SERVER = 1,
    HKT_TO_CLIENT = 2,
    HKT_BOTH_WAYS = 3,
} hkt_proxy_dir_t;

typedef struct hkt_proxy_stats {
    uint64_t accepted;        // connections accepted since start (reset ones too)
    uint64_t active;          // connections open now
    uint64_t bytes_to_server; // bytes written to the upstream
    uint64_t bytes_to_client; // bytes written to clients
    uint64_t upstream_failed; // connections closed because the upstream connect failed
    uint64_t bytes_dropped;   // bytes read during a black hole and discarded
} hkt_proxy_stats_t;

// Binds the listener and starts the proxy thread. Faults start off and the
// proxy up. NULL with a sentence in err (bad options, port taken, the upstream
// host does not resolve, out of memory). The upstream need not be running yet:
// each connection connects to it when accepted, and a client whose upstream
// connect fails is reset.
hkt_proxy_t *hkt_proxy_start(const hkt_proxy_opts_t *opts, char *err, size_t errsz);
// Closes every connection and the listener, joins the thread, frees `p`. NULL ok.
void hkt_proxy_stop(hkt_proxy_t *p);
// The listen port (the same after down and up).
int hkt_proxy_port(const hkt_proxy_t *p);

// Adds `ms` (0..3600000) to every chunk read in `dir`, plus a random 0..jitter_ms
// (0..3600000) per chunk. Chunks keep their order, so latency is a lower bound.
int hkt_proxy_set_latency(hkt_proxy_t *p, hkt_proxy_dir_t dir, int ms, int jitter_ms);
// Limits each connection to `bytes_per_s` in `dir` (0 = unlimited). A transfer
// of N bytes takes at least N / bytes_per_s seconds.
int hkt_proxy_set_bandwidth(hkt_proxy_t *p, hkt_proxy_dir_t dir, int64_t bytes_per_s);
// 1: connections are still accepted and read, but nothing is forwarded either
// way (not even a close), so clients hang until their own timeouts. What is read
// meanwhile is discarded; 0 forwards what arrives from then on.
int hkt_proxy_set_blackhole(hkt_proxy_t *p, int on);
// Closes a connection (both sides) once it has forwarded `bytes` in `dir`
// (0 = never): a reply or request cut mid-stream.
int hkt_proxy_set_close_after(hkt_proxy_t *p, hkt_proxy_dir_t dir, int64_t bytes);
// Resets every open connection, client and upstream side (RST: SO_LINGER 0).
void hkt_proxy_reset(hkt_proxy_t *p);
// 1: every connection accepted from now on is reset at once (the TCP handshake
// completes, then the first read or write fails); 0: forwarded again.
void hkt_proxy_set_reset_new(hkt_proxy_t *p, int on);
// Closes every connection and the listener: connects are refused.
void hkt_proxy_down(hkt_proxy_t *p);
// Listens again on the same port. 0, or -1 with a sentence in err when the port
// was taken meanwhile by someone else. 0 when already up.
int hkt_proxy_up(hkt_proxy_t *p, char *err, size_t errsz);
// Every fault off (latency, bandwidth, black hole, close-after, reset-new) and
// up again; -1 with err when the listener cannot be bound again.
int hkt_proxy_clear(hkt_proxy_t *p, char *err, size_t errsz);

// Counters as of the call: every byte a client could have seen is counted.
void hkt_proxy_stats(hkt_proxy_t *p, hkt_proxy_stats_t *out);

#endif
