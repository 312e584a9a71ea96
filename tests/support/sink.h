// sink: a real HTTP webhook receiver for tests and the demo (libmicrohttpd).
// Verifies every Standard Webhooks signature, records every request, and answers
// according to fault modes chosen by path or set at run time.
//
// Paths (the built-in fault modes; anything else answers 200):
//   /ok                 200
//   /status/<code>      <code>, 100..599 (e.g. /status/503, /status/410; a 1xx is sent as
//                       is, so the client keeps waiting for a final answer)
//   /slow/<ms>          200 after <ms> milliseconds
//   /hang               never answers (until the sink stops or the client leaves)
//   /flap               alternates 500, 200, 500, ... (per sink)
//   /down-until/<ms>    503 until the wall clock passes <ms> (ms since epoch), then 200
//   /retry-after/<s>    429 with "Retry-After: <s>"
//   /random-fail/<pct>  503 with probability <pct>/100 (0..100), else 200; the draws come
//                       from one splitmix64 sequence per sink (seed: hk_sink_opts_t.seed)
//   /random-429/<pct>   429 with "Retry-After: 1" with probability <pct>/100, else 200
//                       (the same sequence as /random-fail)
//   /seq/<c1>,<c2>,...  the codes (100..599, at most 64) in turn, one per request to
//                       this exact path, then the last one forever (/seq/503,503,200)
//   /reset              no answer: the connection is reset (TCP RST); recorded as 0
//   /close-mid          "200 OK", 16 of the 4096 body bytes announced, then the
//                       connection closes; recorded as 0 (no complete answer)
// A mode matches its path and anything below it (/ok/x, /status/503/x). Malformed
// numbers (/status/99, /slow/abc) answer 400; bodies over 8 MiB answer 413.
// A rule set with hk_sink_set_rule() overrides the built-in mode for its path prefix.
// A request is recorded and counted when it has fully arrived, before any delay.
// GET /_stats returns the counters as JSON (used by scripts/demo).
// Control API (JSON, never recorded or counted), for suites in other languages
// driving hookd-sink:
//   GET  /_sink/stats     as /_stats
//   GET  /_sink/requests  every record without its body: [{"at_ms","method","path",
//                         "webhook_id","sig","status","body_len"}]
//   POST /_sink/rules     {"prefix":"/p", then one of
//                           "status":S[,"delay_ms":D][,"retry_after":"R"]  (hk_sink_set_rule;
//                                                                        status 0 removes)
//                           "status":S,"for_ms":F                      (hk_sink_set_outage)
//                           "sequence":[S1,S2,...]                     (hk_sink_set_sequence)}
//   POST /_sink/reset     hk_sink_reset
//   POST /_sink/refuse    {"for_ms":F}: stops listening 0.2 s later, for F ms
// Bad requests answer 400 {"error":"..."}, unknown paths 404.
//
// HTTPS: with opts.tls the sink makes a throwaway CA and a server certificate at
// start (sinktls.h) and answers only TLS; hk_sink_ca_pem() is the CA to trust.
// opts.tls picks the certificate: HK_SINKTLS_GOOD (names localhost, 127.0.0.1 and
// ::1), HK_SINKTLS_EXPIRED (expired yesterday) or HK_SINKTLS_WRONG_HOST (names
// another host), so a client's handling of bad certificates can be tested.
//
// Thread-safe: the sink answers on its own threads; query it from any thread.
#ifndef HK_SINK_H
#define HK_SINK_H

#include "tests/support/sinktls.h"

#include <stddef.h>
#include <stdint.h>

typedef struct hk_sink_s hk_sink_t;

typedef struct hk_sink_opts {
    int port;            // 0 = ephemeral, read it back with hk_sink_port()
    const char *secrets; // whsec_ secrets (space separated) to verify with; NULL = no check
    int threads;         // answering threads; 0 = 8
    int log_errors;      // 1 = libmicrohttpd error messages on stderr
    uint64_t seed;       // /random-fail sequence; 0 = seeded from the clock at start
    int log_requests;    // 1 = one JSON line per finished request on stdout: ts_ms, method,
                         // path, webhook_id, signature_valid (null: not checked), status
                         // (0: no complete answer), latency_ms (complete to answered)
    int tls;             // 0 plain HTTP; else HTTPS with a hk_sinktls_kind_t certificate
} hk_sink_opts_t;

// One received request, as the sink saw it.
typedef struct hk_sink_req {
    int64_t at_ms; // wall clock ms since epoch when the request was complete
    char path[128];
    char method[8];
    char webhook_id[256]; // "" when the header was missing (longer ids are cut here only)
    int64_t webhook_ts;   // webhook-timestamp, -1 when missing or not a number
    int sig;              // 1 valid, 0 invalid, -1 header missing, -2 not checked (no secrets)
    int idem_ok;          // Idempotency-Key present and equal to webhook-id
    int ua_ok;            // User-Agent starts with "hookd/"
    char content_type[64];
    char signature[512]; // webhook-signature as received ("" when missing)
    char *body;          // NUL-terminated copy of the body (owned by the record)
    size_t body_len;
    int status; // what the sink answers (0: never, /hang)
} hk_sink_req_t;

typedef struct hk_sink_stats {
    uint64_t requests;      // every webhook request (not /_stats)
    uint64_t ok;            // answered 2xx
    uint64_t failed;        // answered anything else, or never (/hang)
    uint64_t unique_ok;     // distinct webhook-ids answered 2xx (requests without one: ok only)
    uint64_t duplicate_ok;  // 2xx answers for a webhook-id already answered 2xx
    uint64_t bad_signature; // sig == 0 or (secrets set and sig == -1)
    uint64_t bad_headers;   // missing webhook-id/timestamp, idem_ok == 0 or ua_ok == 0
} hk_sink_stats_t;

// Starts the sink on 127.0.0.1. NULL with errstr on failure.
hk_sink_t *hk_sink_start(const hk_sink_opts_t *opts, char *errstr, size_t errstr_size);
void hk_sink_stop(hk_sink_t *sink); // stops answering, frees everything
int hk_sink_port(const hk_sink_t *sink);
// The opts.tls it was started with (0: plain HTTP).
int hk_sink_tls(const hk_sink_t *sink);
// The PEM of the CA that signed the sink's certificate; NULL without TLS. Owned
// by the sink, valid until hk_sink_stop().
const char *hk_sink_ca_pem(const hk_sink_t *sink);

// Runtime fault rule: requests whose path starts with `prefix` are answered with
// `status` (plus "Retry-After: <retry_after>" when not NULL) after `delay_ms`.
// status 0 removes the rule. Rules are matched longest prefix first.
// 0 ok; -1 on a bad argument (status not 0 or 100..599, delay not 0..3600000,
// retry_after empty or with control characters) or out of memory.
int hk_sink_set_rule(hk_sink_t *sink, const char *prefix, int status, int delay_ms,
                     const char *retry_after);

// An outage window: requests below `prefix` get `status` (100..599) for the next
// `for_ms` (1..3600000), then the rule lapses. 0 ok, -1 bad argument.
int hk_sink_set_outage(hk_sink_t *sink, const char *prefix, int status, int for_ms);
// A status sequence below `prefix`: codes[0], codes[1], ... one per request, then
// codes[n-1] forever (n 1..64, each 100..599). Replaces the rule for that
// prefix; a set_rule with status 0 removes it. 0 ok, -1 bad argument.
int hk_sink_set_sequence(hk_sink_t *sink, const char *prefix, const int *codes, size_t n);
// Connection refused: closes the listening socket (requests waiting for a delayed
// answer are dropped, as when a server goes down) and returns once it is closed;
// listens again on the same port after `for_ms` (0: only on hk_sink_listen).
// 0 ok, -1 bad argument.
int hk_sink_refuse(hk_sink_t *sink, int for_ms);
// Listens again now; returns once listening. 0 ok, -1 the port could not be bound.
int hk_sink_listen(hk_sink_t *sink);

void hk_sink_stats(hk_sink_t *sink, hk_sink_stats_t *out);

// Copies every record so far (in arrival order). Free with hk_sink_reqs_free().
size_t hk_sink_reqs(hk_sink_t *sink, hk_sink_req_t **out);
void hk_sink_reqs_free(hk_sink_req_t *reqs, size_t n);

// Number of 2xx answers seen for `webhook_id` (0 if never delivered).
unsigned hk_sink_ok_count(hk_sink_t *sink, const char *webhook_id);

// Forgets every record and counter, the /flap phase included, and restarts the
// /random-fail sequence from its seed (rules stay).
void hk_sink_reset(hk_sink_t *sink);

// Requests received whose answer is still being delayed (/slow, /hang, rule delay).
// A waiting request is let go as soon as its client disconnects.
unsigned hk_sink_pending(hk_sink_t *sink);

// The counters as one JSON object, as served at GET /_stats: the hk_sink_stats_t
// fields plus "by_status" ({"<code>": count}, "0" = never answered). Caller frees;
// NULL when out of memory.
char *hk_sink_stats_json(hk_sink_t *sink);

#endif
