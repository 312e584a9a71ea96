// hookd-testkit: what a Check suite needs to prove that a system built on hookd
// survives its dependencies failing. Prefix hkt_. Link with
//   pkg-config --cflags --libs hookd-testkit        or
//   find_package(hookd) + target_link_libraries(t PRIVATE hookd::testkit)
//
// Parts:
//   hkt_sink_*      an HTTP webhook receiver with fault modes (by path or rules set
//                   at run time); it verifies every Standard Webhooks signature and
//                   records every request;
//   hkt_kafka_*     a Kafka cluster: the mock (the installed hookd-mockkafka, in
//                   its own process) or a real Apache Kafka (the installed
//                   libexec/hookd/kafka script);
//   hkt_pg_*        a private PostgreSQL server, hkt_redis_* a private Redis;
//   hkt_proc_*      child processes (hookd), stopped by PID;
//   hkt_scenario_*  N hookd processes wired to all of the above, as a checked
//                   fixture (hkt_fixture_*): produce jobs, wait for deliveries,
//                   read /metrics, kill and restart;
//   hkt_proxy_*     a TCP fault proxy for Kafka, Postgres and Redis connections
//                   (<hookd/testkit/proxy.h>, included below; tests/support/hkt_proxy.h
//                   in hookd's tree).
// Every server listens on 127.0.0.1 on a free port and dies with the test process.
//
// Programs are found at run time, never baked into the kit:
//   hookd            the `hookd_bin` argument, else $HOOKD_BIN, else the installed
//                    sbin/hookd;
//   the mock cluster $HOOKD_MOCKKAFKA, else libexec/hookd/hookd-mockkafka beside
//                    that hookd (<prefix>/sbin/../libexec);
//   the real cluster $HOOKD_KAFKA_SCRIPT, else libexec/hookd/kafka beside hookd;
//   Postgres         $HK_PG_BINDIR (default /usr/lib/postgresql/15/bin);
//   redis-server     $HK_REDIS_SERVER (default /usr/bin/redis-server).
//
// Errors: functions that start something return NULL or -1 and write a sentence
// into `err`. Not thread-safe unless said: drive the kit from the test's thread
// (the sink answers on its own threads and may be queried from any thread).
#ifndef HOOKD_TESTKIT_H
#define HOOKD_TESTKIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// The installed kit has the proxy beside this header; hookd's own tree includes
// tests/support/hkt_proxy.h where it needs it.
#if defined(__has_include)
#if __has_include(<hookd/testkit/proxy.h>)
#include <hookd/testkit/proxy.h>
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

// The secret hkt_hookd_start and the scenario give hookd (HOOKD_SIGNING_SECRET);
// start the sink with it to verify signatures.
#define HKT_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// ---- fault sink ----
//
// Built-in fault modes by path (a mode matches its path and anything below it;
// any other path answers 200):
//   /ok                 200
//   /status/<code>      <code>, 100..599 (/status/503, /status/410, ...)
//   /slow/<ms>          200 after <ms> milliseconds (latency)
//   /hang               never answers (until the client leaves or the sink stops)
//   /flap               500, 200, 500, ... (per sink)
//   /down-until/<ms>    503 until the wall clock passes <ms> (ms since the epoch)
//   /retry-after/<s>    429 with "Retry-After: <s>"
//   /random-fail/<pct>  503 with probability <pct>/100 (seeded: hkt_sink_opts_t.seed)
//   /random-429/<pct>   429 "Retry-After: 1" with probability <pct>/100
//   /seq/<c1>,<c2>,...  the codes in turn, per distinct path, then the last forever
//   /reset              the connection is reset (TCP RST), no answer
//   /close-mid          headers and part of the body, then the connection closes
// Run-time rules (hkt_sink_set_rule, _set_outage, _set_sequence) override the
// built-in mode for their path prefix, longest prefix first.
// Control API over HTTP (JSON; never recorded, never counted):
//   GET  /_sink/stats      the counters (as hkt_sink_stats_json)
//   POST /_sink/rules      {"prefix":"/a","status":503,"delay_ms":0,"retry_after":"2",
//                           "for_ms":30000,"sequence":[503,503,200]} (status 0 removes;
//                           for_ms: the rule lapses after that long; sequence: the
//                           codes in turn, then the last)
//   POST /_sink/reset      forgets every record and counter
//   POST /_sink/refuse     {"for_ms":N}: stops listening (connection refused) for N ms
// HTTPS: with opts.tls the sink makes, at start and in memory, a throwaway CA
// (EC P-256) and a server certificate signed by it, and answers TLS only. Trust
// the CA (hkt_sink_write_ca into hookd's delivery.ca_file) and hookd delivers;
// without it, or with one of the bad certificates, it must not:
//   HKT_TLS             valid, for localhost, 127.0.0.1 and ::1
//   HKT_TLS_EXPIRED     signed by the CA but expired yesterday
//   HKT_TLS_WRONG_HOST  signed by the CA and valid, but for wrong-host.invalid only
typedef struct hkt_sink hkt_sink_t;

#define HKT_TLS            1
#define HKT_TLS_EXPIRED    2
#define HKT_TLS_WRONG_HOST 3

typedef struct hkt_sink_opts {
    int port;            // 0: a free port, read it back with hkt_sink_port()
    const char *secrets; // whsec_ secrets (space separated) to verify with; NULL: no check
    int threads;         // answering threads; 0: 8
    int log_errors;      // 1: libmicrohttpd's error messages on stderr
    uint64_t seed;       // /random-* draws; 0: from the clock
    int log_requests;    // 1: one JSON line per answered request on stdout
    int tls;             // 0: plain HTTP; HKT_TLS, HKT_TLS_EXPIRED or HKT_TLS_WRONG_HOST
} hkt_sink_opts_t;

// One received request. Strings are NUL-terminated and cut to their field.
typedef struct hkt_sink_req {
    int64_t at_ms;        // wall clock ms since the epoch when the request was complete
    char path[128];       // without the query string
    char method[8];       //
    char webhook_id[256]; // "" when missing
    int64_t webhook_ts;   // webhook-timestamp, -1 when missing or not a number
    int sig;              // 1 valid, 0 invalid, -1 header missing, -2 not checked (no secrets)
    int status;           // what the sink answered (0: never)
    char *body;           // NUL-terminated copy, owned by the array
    size_t body_len;
} hkt_sink_req_t;

typedef struct hkt_sink_stats {
    uint64_t requests;      // every webhook request (not the control API)
    uint64_t ok;            // answered 2xx
    uint64_t failed;        // answered anything else, or never
    uint64_t unique_ok;     // distinct webhook-ids answered 2xx: the jobs delivered
    uint64_t duplicate_ok;  // 2xx for a webhook-id already answered 2xx
    uint64_t bad_signature; // invalid, or missing while secrets are set
    uint64_t bad_headers;   // missing webhook-id/timestamp, Idempotency-Key, User-Agent
} hkt_sink_stats_t;

hkt_sink_t *hkt_sink_start(const hkt_sink_opts_t *opts, char *err, size_t err_size);
void hkt_sink_stop(hkt_sink_t *sink); // stops answering and frees everything
int hkt_sink_port(const hkt_sink_t *sink);
// "http://127.0.0.1:<port><path>" into buf ("https://" with TLS); returns buf.
char *hkt_sink_url(const hkt_sink_t *sink, const char *path, char *buf, size_t size);
// The PEM of the CA that signed the sink's certificate, NULL without TLS. Owned by
// the sink (valid until hkt_sink_stop).
const char *hkt_sink_ca_pem(const hkt_sink_t *sink);
// Writes that PEM to `path` (for hookd's delivery.ca_file). 0 ok; -1 without TLS
// or when the file cannot be written (errno says why).
int hkt_sink_write_ca(const hkt_sink_t *sink, const char *path);

// Requests below `prefix` get `status` (0 removes the rule) after `delay_ms`, with
// "Retry-After: <retry_after>" when not NULL. 0 ok, -1 bad argument.
int hkt_sink_set_rule(hkt_sink_t *sink, const char *prefix, int status, int delay_ms,
                      const char *retry_after);
// An outage window: `status` (e.g. 503) below `prefix` for the next `for_ms`, then
// the built-in mode again. 0 ok, -1 bad argument.
int hkt_sink_set_outage(hkt_sink_t *sink, const char *prefix, int status, int for_ms);
// A status sequence below `prefix`: the n codes in turn (one per request), then
// the last one forever. 0 ok, -1 bad argument.
int hkt_sink_set_sequence(hkt_sink_t *sink, const char *prefix, const int *codes, size_t n);
// Connection refused: closes the listening socket for `for_ms` (0: until
// hkt_sink_listen), then listens on the same port again. 0 ok, -1 on error.
int hkt_sink_refuse(hkt_sink_t *sink, int for_ms);
// Listens again now (after hkt_sink_refuse). 0 ok, -1 the port was taken.
int hkt_sink_listen(hkt_sink_t *sink);

void hkt_sink_stats(hkt_sink_t *sink, hkt_sink_stats_t *out);
// The counters as JSON (plus "by_status"); caller frees.
char *hkt_sink_stats_json(hkt_sink_t *sink);
// Every request so far, in arrival order; free with hkt_sink_reqs_free. 0 when none.
size_t hkt_sink_reqs(hkt_sink_t *sink, hkt_sink_req_t **out);
void hkt_sink_reqs_free(hkt_sink_req_t *reqs, size_t n);
// 2xx answers given for `webhook_id` (0: never delivered).
unsigned hkt_sink_ok_count(hkt_sink_t *sink, const char *webhook_id);
// Forgets records and counters (rules stay).
void hkt_sink_reset(hkt_sink_t *sink);
// Requests whose answer is still being delayed.
unsigned hkt_sink_pending(hkt_sink_t *sink);
// Waits up to timeout_ms for `n` distinct jobs answered 2xx; 1 if they were.
int hkt_sink_wait_delivered(hkt_sink_t *sink, uint64_t n, int timeout_ms);

// ---- processes ----
typedef struct hkt_proc hkt_proc_t;

// Starts hookd (hookd_bin, NULL: see the top) against `brokers` with test
// defaults: loopback allowed as a destination, HKT_SECRET as signing secret,
// admin API on a free loopback port, a summary line every second. `env` entries
// ("HOOKD_X=v", NULL terminated) override them and any config key; `config` is
// passed as -c when not NULL. stdout and stderr are appended to `log`.
hkt_proc_t *hkt_hookd_start(const char *hookd_bin, const char *brokers, char *const env[],
                            const char *config, const char *log, char *err, size_t err_size);
pid_t hkt_proc_pid(const hkt_proc_t *p); // 0 once it has exited
const char *hkt_proc_log(const hkt_proc_t *p);
void hkt_proc_kill(hkt_proc_t *p, int sig);
// SIGTERM, then waits up to timeout_ms (SIGKILL after). The wait status, -1 when
// it had to be killed or was not running.
int hkt_proc_stop(hkt_proc_t *p, int timeout_ms);
// Waits up to timeout_ms for it to exit by itself; the wait status or -1.
int hkt_proc_wait(hkt_proc_t *p, int timeout_ms);
// 1 when a wait status says "exited with 0".
int hkt_exited_ok(int status);
void hkt_proc_free(hkt_proc_t *p); // stops it (SIGKILL) if running
// hookd's admin port, read from its log (0: not listening yet).
int hkt_hookd_admin_port(const hkt_proc_t *p);
// Which hookd the kit starts (hookd_bin NULL): $HOOKD_BIN, else the installed one.
const char *hkt_hookd_bin(void);

// ---- Kafka ----
typedef struct hkt_kafka hkt_kafka_t;

// The mock cluster in its own process, with `topics` like {"jobs:4", NULL}.
hkt_kafka_t *hkt_kafka_mock_start(const char *const topics[], char *err, size_t err_size);
// A real Apache Kafka with `nodes` nodes (scripts/kafka up; needs Java 17+, Maven
// and kcat) and `topics` created with their partition counts. Minutes the first
// time (it fetches Kafka), seconds after.
hkt_kafka_t *hkt_kafka_real_start(int nodes, const char *const topics[], char *err,
                                  size_t err_size);
const char *hkt_kafka_bootstraps(const hkt_kafka_t *k);
pid_t hkt_kafka_pid(const hkt_kafka_t *k); // the mock's process; 0 for a real cluster
void hkt_kafka_stop(hkt_kafka_t *k);       // stops it (by PID) and frees k
// Produces values[i] with keys[i] (keys may be NULL); waits for the acks and
// returns how many were acknowledged.
size_t hkt_produce(const char *brokers, const char *topic, char *const *values, char *const *keys,
                   size_t n);
// The group's lag on `topic`: sum over partitions of end offset minus committed
// offset (a partition with no commit counts whole); -1 on error.
int64_t hkt_group_lag(const char *brokers, const char *group, const char *topic);

// ---- PostgreSQL and Redis ----
typedef struct hkt_pg hkt_pg_t;
typedef struct hkt_redis hkt_redis_t;

// initdb into a temp dir and start on a free port, with a database "hookd".
hkt_pg_t *hkt_pg_start(char *err, size_t err_size);
const char *hkt_pg_conninfo(const hkt_pg_t *pg); // for libpq and HOOKD_POSTGRES_URL
int hkt_pg_port(const hkt_pg_t *pg);
pid_t hkt_pg_pid(const hkt_pg_t *pg); // the postmaster, 0 when stopped
int hkt_pg_stop(hkt_pg_t *pg);        // an outage: data kept. 0 ok
int hkt_pg_restart(hkt_pg_t *pg);     // same dir and port. 0 ok
int hkt_pg_exec(const hkt_pg_t *pg, const char *sql);
void hkt_pg_destroy(hkt_pg_t *pg); // stops it and removes its dir

// password may be NULL.
hkt_redis_t *hkt_redis_start(const char *password, char *err, size_t err_size);
const char *hkt_redis_url(const hkt_redis_t *r); // "redis://127.0.0.1:<port>"
int hkt_redis_port(const hkt_redis_t *r);
pid_t hkt_redis_pid(const hkt_redis_t *r); // 0 when stopped
int hkt_redis_stop(hkt_redis_t *r);        // an outage (SIGTERM). 0 ok
int hkt_redis_restart(hkt_redis_t *r);     // same port. 0 ok
void hkt_redis_pause(hkt_redis_t *r);      // SIGSTOP: accepts, never answers
void hkt_redis_resume(hkt_redis_t *r);
void hkt_redis_destroy(hkt_redis_t *r);

// ---- scenario: N hookd against a sink, a Kafka cluster and optional stores ----
typedef struct hkt_scenario hkt_scenario_t;

typedef struct hkt_scenario_opts {
    const char *hookd_bin;         // NULL: $HOOKD_BIN, else the installed hookd
    int replicas;                  // hookd processes; 0: 1
    int partitions;                // of the jobs topic; 0: 4
    int real_kafka;                // 1: hkt_kafka_real_start(1, ...) instead of the mock
    int redis;                     // 1: a private Redis, given as HOOKD_REDIS_URL
    int postgres;                  // 1: a private Postgres, given as HOOKD_POSTGRES_URL
    const char *const *env;        // config overrides for every replica, NULL terminated
    const char *config;            // -c file for every replica, or NULL
    int start_timeout_ms;          // for each replica to report ready; 0: 30000
    void (*fail)(const char *why); // called on a setup failure; NULL: print, abort()
    int sink_tls;                  // the sink's opts.tls (HKT_TLS...); its CA is written to
                                   // <dir>/sink-ca.pem and given to every replica as
                                   // HOOKD_DELIVERY_CA_FILE unless `env` sets that
} hkt_scenario_opts_t;

// Starts everything: the sink (secret HKT_SECRET), Kafka with topics jobs,
// jobs.dlq and jobs.retry, the stores asked for, then the replicas, and waits
// until each one's admin API answers. NULL with err on failure.
hkt_scenario_t *hkt_scenario_start(const hkt_scenario_opts_t *opts, char *err, size_t err_size);
// SIGTERMs the replicas, stops every server, removes the temp dir (logs are
// kept there when $HKT_KEEP is set).
void hkt_scenario_stop(hkt_scenario_t *sc);

hkt_sink_t *hkt_scenario_sink(hkt_scenario_t *sc);
hkt_redis_t *hkt_scenario_redis(hkt_scenario_t *sc); // NULL unless opts.redis
hkt_pg_t *hkt_scenario_pg(hkt_scenario_t *sc);       // NULL unless opts.postgres
hkt_kafka_t *hkt_scenario_kafka(hkt_scenario_t *sc);
const char *hkt_scenario_brokers(hkt_scenario_t *sc);
// The temp dir holding the logs: hookd-<i>.<n>.log for replica i's n-th start.
const char *hkt_scenario_dir(hkt_scenario_t *sc);
int hkt_scenario_replicas(hkt_scenario_t *sc);

// Produces n jobs {"id":"<prefix>-<i>","url":"<sink><path>","body":{"i":<i>}} to
// the jobs topic, keyed by id. Returns how many were acknowledged.
size_t hkt_scenario_produce_jobs(hkt_scenario_t *sc, const char *path, const char *prefix,
                                 size_t n);
// Produces raw job values (keys may be NULL) to the jobs topic.
size_t hkt_scenario_produce(hkt_scenario_t *sc, char *const *values, char *const *keys, size_t n);
// Waits up to timeout_ms until the sink has answered 2xx to n distinct jobs.
int hkt_scenario_wait_delivered(hkt_scenario_t *sc, uint64_t n, int timeout_ms);
// The consumer group's lag on the jobs topic (-1 on error), and a wait for 0.
int64_t hkt_scenario_lag(hkt_scenario_t *sc);
int hkt_scenario_wait_lag_zero(hkt_scenario_t *sc, int timeout_ms);

// Replica i's GET /metrics body (caller frees), NULL when it did not answer.
char *hkt_scenario_metrics(hkt_scenario_t *sc, int i);
// The value of the sample `series` in replica i's /metrics: a name with labels
// exactly as exported (`hookd_jobs_dead_lettered_total{class="invalid"}`) is that
// one sample; a bare name is the sum of all its samples, labelled or not
// ("hookd_jobs_dead_lettered_total": every class). NAN when absent or unreachable.
double hkt_scenario_metric(hkt_scenario_t *sc, int i, const char *series);

hkt_proc_t *hkt_scenario_replica(hkt_scenario_t *sc, int i);
void hkt_scenario_kill(hkt_scenario_t *sc, int i, int sig); // e.g. SIGKILL
// SIGTERM replica i and wait (SIGKILL after timeout_ms): its wait status, or -1.
int hkt_scenario_stop_replica(hkt_scenario_t *sc, int i, int timeout_ms);
// Starts replica i again (after kill or stop) with the same settings plus `env`
// (may be NULL), and waits until its admin API answers. 0 ok.
int hkt_scenario_restart(hkt_scenario_t *sc, int i, char *const env[]);

// ---- the scenario as a Check checked fixture ----
//   static const hkt_scenario_opts_t opts = {.replicas = 2, .redis = 1};
//   hkt_fixture_use(&opts);   // before srunner_run_all
//   tcase_add_checked_fixture(tc, hkt_fixture_setup, hkt_fixture_teardown);
//   ... in a test: hkt_scenario_t *sc = hkt_fixture();
// `opts` (and what it points to) must outlive the runs.
void hkt_fixture_use(const hkt_scenario_opts_t *opts);
void hkt_fixture_setup(void);    // starts; opts->fail (or abort) on failure
void hkt_fixture_teardown(void); // stops
hkt_scenario_t *hkt_fixture(void);

#ifdef __cplusplus
}
#endif

#endif
