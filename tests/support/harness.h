// harness: what integration tests need around hookd: child processes (hookd, the
// out-of-process mock Kafka cluster), and a Kafka client to produce jobs, read
// topics back and check committed offsets. Prefix hk_th_.
#ifndef HK_HARNESS_H
#define HK_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/support/sink.h"

typedef struct hk_th_proc {
    pid_t pid;
    int stdin_fd;  // write end of the child's stdin pipe, -1 if none
    char log[256]; // file receiving the child's stdout and stderr
} hk_th_proc_t;

// Starts argv[0] with the current environment plus `env` ("NAME=value", NULL
// terminated; may be NULL), stdout+stderr appended to `log`. The child gets
// SIGKILL when the thread that started it exits (PR_SET_PDEATHSIG), so a test
// killed before its teardown leaves no process behind: start long-lived
// children from the test's own thread, not from a short-lived helper thread.
int hk_th_spawn(hk_th_proc_t *p, char *const argv[], char *const env[], const char *log);
// Waits up to timeout_ms; returns the wait status, or -1 on timeout.
int hk_th_wait(hk_th_proc_t *p, int timeout_ms);
void hk_th_kill(hk_th_proc_t *p, int sig);
// SIGTERM, then waits up to timeout_ms (SIGKILL after that). Returns the wait
// status, or -1 when it had to be killed. No-op (-1) when not running.
int hk_th_stop(hk_th_proc_t *p, int timeout_ms);
// 1 when a wait status says "exited with code 0".
int hk_th_exited_ok(int status);

// Out-of-process mock cluster. `topics` like {"jobs:8", "jobs.dlq:2", NULL}.
// Writes the bootstrap servers into `bootstraps`. 0 ok.
// With HK_TEST_KAFKA=real and HK_TEST_KAFKA_BOOTSTRAP=host:port,... (a cluster
// from scripts/kafka up) no mock starts: the topics are created on that cluster
// inside a namespace unique to this call, a prefix "t<pid>_<n>_" that the
// harness puts before every topic and group name it is given (hk_th_produce,
// hk_th_read_topic, hk_th_group_lag, and hookd's HOOKD_KAFKA_TOPIC, _GROUP,
// _DLQ_TOPIC, _RETRY_TOPIC, set by hk_th_hookd_start). hk_th_kafka_stop deletes
// the namespace's topics and groups.
int hk_th_kafka_start(hk_th_proc_t *p, const char *const topics[], char *bootstraps, size_t size);
void hk_th_kafka_stop(hk_th_proc_t *p);
// 1 when the suites run on a real cluster (HK_TEST_KAFKA=real).
int hk_th_kafka_real(void);
// The name the cluster knows topic or group `name` by: prefixed in a real-Kafka
// namespace, `name` itself on the mock. For comparing with what hookd reports
// (a record's hookd-original-topic header, a derived webhook id, a log line's
// topic). The string lives until the 4th call after.
const char *hk_th_kafka_name(const char *name);

// Starts hookd (hk_th_hookd_bin()) against `brokers` with the test defaults (allow
// loopback, signing secret HK_TH_SECRET, summary every second); `env` entries
// replace defaults of the same name; `config` is passed as -c when not NULL.
int hk_th_hookd_start(hk_th_proc_t *p, const char *brokers, char *const env[], const char *config,
                      const char *log);
// The same with the program given (NULL: hk_th_hookd_bin()).
int hk_th_hookd_start_bin(hk_th_proc_t *p, const char *bin, const char *brokers, char *const env[],
                          const char *config, const char *log);

// The programs the harness starts, found at run time, never baked into the build
// (CTest sets the variables for the in-tree suites, as a user's suite sets them):
//   hookd:        $HOOKD_BIN, else "hookd" beside the running program (a build
//                 tree), else HK_TH_INSTALL_SBINDIR/hookd (the configured install);
//   mock cluster: $HOOKD_MOCKKAFKA, else beside hookd: ../libexec/hookd/hookd-mockkafka
//                 (installed), hookd-mockkafka or hk-mockkafka (build tree); NULL
//                 when none is there;
//   real cluster: $HOOKD_KAFKA_SCRIPT, else beside hookd: ../libexec/hookd/kafka
//                 (installed) or ../scripts/kafka; NULL when none is there.
// The strings live until the next call of the same function.
const char *hk_th_hookd_bin(void);
const char *hk_th_mockkafka_bin(void);
const char *hk_th_kafka_script(void);

// 1 when this code is built with AddressSanitizer. CMake applies HK_SANITIZE to
// every target, so it also says whether hookd runs under ASan, whose shadow
// memory and quarantine make RSS figures meaningless: suites print them instead
// of asserting them.
#if defined(__SANITIZE_ADDRESS__)
#define HK_TH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HK_TH_ASAN 1
#endif
#endif
#ifndef HK_TH_ASAN
#define HK_TH_ASAN 0
#endif

#define HK_TH_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// Produces values[i] with keys[i] (keys may be NULL or hold NULLs); waits for all
// acknowledgements. Returns how many were acknowledged.
size_t hk_th_produce(const char *brokers, const char *topic, char *const *values, char *const *keys,
                     size_t n);

typedef struct hk_th_record {
    int32_t partition;
    int64_t offset;
    char *key; // NUL-terminated copies, NULL when absent
    char *value;
    size_t value_len;
    size_t headers_cnt;
    char **header_names;
    char **header_values;
} hk_th_record_t;

// Reads every record of `topic` from the beginning up to the current end, with
// fetch sizes that take any record the cluster takes (a value is "" when the
// record has none); notes on stderr when it read fewer than the watermarks span.
size_t hk_th_read_topic(const char *brokers, const char *topic, hk_th_record_t **out);
void hk_th_records_free(hk_th_record_t *recs, size_t n);
const char *hk_th_header(const hk_th_record_t *rec, const char *name);

// Waits up to timeout_ms (reading every 100 ms) for `topic` to hold at least `n`
// records; returns the last read, held until hk_th_release_held(), with their
// count in *got (n = 0: one read). For a test that waits for its dead letters.
hk_th_record_t *hk_th_wait_records(const char *brokers, const char *topic, size_t n, int timeout_ms,
                                   size_t *got);

// Sum over partitions of (high watermark - committed offset of `group`), i.e. the
// group's lag; -1 on error. Partitions with no commit count their whole length.
int64_t hk_th_group_lag(const char *brokers, const char *group, const char *topic);
// Waits up to timeout_ms for hk_th_group_lag() to be 0 (every record of `topic`
// committed by `group`); 1 if it was.
int hk_th_wait_lag_zero(const char *brokers, const char *group, const char *topic, int timeout_ms);

// A numeric macro as a string literal, for "NAME=" HK_TH_STR(VALUE) in an env list.
#define HK_TH_STR_(x) #x
#define HK_TH_STR(x)  HK_TH_STR_(x)

int64_t hk_th_now_ms(void);

// A "Name:   123 kB" field of /proc/<pid>/status in bytes; -1 when unreadable.
long long hk_th_proc_status_bytes(pid_t pid, const char *field);
// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/<pid>/stat);
// -1 when unreadable.
long long hk_th_proc_cpu_ticks(pid_t pid);

// Removes `dir` and everything below it (does not follow symlinks).
void hk_th_rmtree(const char *dir);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read
// back, closed), for servers the tests start; -1 on error.
int hk_th_free_port(void);
void hk_th_sleep_ms(int ms);

// Polls `cond(arg)` every 50 ms until true or timeout; returns 1 if it became true.
int hk_th_wait_for(int (*cond)(void *), void *arg, int timeout_ms);

// The admin port hookd logged as {"event":"admin_listening","port":N} in `log`
// (the harness starts it with admin.listen 127.0.0.1:0); 0 when not (yet) there.
int hk_th_admin_port(const char *log);

// One HTTP request to `url` (no proxy; POST sends an empty body). Returns the
// status, 0 when there was no answer; the body goes to *body (caller frees) when
// body is not NULL.
long hk_th_http(const char *method, const char *url, int timeout_ms, char **body);
// The same with "Authorization: Bearer <token>" (none when token is NULL).
long hk_th_http_auth(const char *method, const char *url, const char *token, int timeout_ms,
                     char **body);
// The value of an unlabelled metric on hookd's admin /metrics at 127.0.0.1:port;
// -1 when there is no answer or no such line.
long long hk_th_metric(int port, const char *name);
// The value of the sample written exactly as `series` (name plus labels as hookd
// renders them) in a /metrics exposition; -1 when there is none.
double hk_th_metric_in(const char *text, const char *series);

// Counts lines of file `path` containing `needle`.
int hk_th_log_count(const char *path, const char *needle);
// Waits up to timeout_ms for at least `n` lines of `path` to contain `needle`;
// 1 if they did.
int hk_th_wait_for_log(const char *path, const char *needle, int n, int timeout_ms);

// Waits up to timeout_ms for `sink` to have answered 2xx to at least `n` distinct
// jobs (hk_sink_stats' unique_ok); 1 if it did.
int hk_th_wait_unique_ok(hk_sink_t *sink, uint64_t n, int timeout_ms);

// What a test holds, freed by hk_th_release_held() from its teardown: with
// CK_FORK=no a failed assertion leaves the test by longjmp, so anything freed at
// the test's end would leak under ASan. HK_TH_HELD_STRS is an array of `n`
// malloc'd strings, REQS hk_sink_reqs() output, RECS hk_th_read_topic() output.
typedef enum { HK_TH_HELD_MEM, HK_TH_HELD_STRS, HK_TH_HELD_REQS, HK_TH_HELD_RECS } hk_th_held_t;
void *hk_th_hold(hk_th_held_t kind, void *p, size_t n); // returns p
void *hk_th_hold_mem(void *p);                          // hk_th_hold(HK_TH_HELD_MEM, p, 0)
void hk_th_release_held(void);

// A hookd log "ts" ("2026-11-21T11:04:26.176Z", UTC) as wall clock ms since the
// epoch; -1 when ts is NULL or not exactly that shape.
int64_t hk_th_log_ts(const char *ts);

// Called by hk_th_log_each with one log line (owned by the caller: json_incref to
// keep it) and its "ts" as hk_th_log_ts gives it (-1 when absent or malformed).
// Nonzero stops the scan.
typedef int hk_th_log_fn(json_t *line, int64_t at_ms, void *arg);
// Calls fn, in file order, for each line of log file `path` that contains
// `needle` (NULL: every line) and parses as a JSON object; other lines are
// skipped. Returns how many lines fn was given (the one that stopped the scan
// included), -1 when `path` cannot be opened.
int hk_th_log_each(const char *path, const char *needle, hk_th_log_fn *fn, void *arg);

// Partitions a replica holds by its log `path`: what its partitions_assigned
// lines count minus its partition_revoked lines (0 when there is no log).
int hk_th_partitions_held(const char *path);
// For hk_th_wait_for: 1 when the replica logging to `path` (a const char *)
// holds a partition.
int hk_th_holds_partitions(void *path);

// A signing secret each for up to four replicas, so that a sink given
// HK_TH_REPLICA_SECRETS (HK_TH_SECRET and these) can tell who sent a request
// (hk_th_signer with hk_th_replica_secret).
#define HK_TH_R1_SECRET "whsec_1SwOdW7evseEX/gGPdKAPFMLMC3SeoLV"
#define HK_TH_R2_SECRET "whsec_MqbuveAPxclFA9lOmN4+bPK8v3XwX02h"
#define HK_TH_R3_SECRET "whsec_mAIrCDFADSQ+iTg6bkktQHwZhR1W/6JF"
#define HK_TH_R4_SECRET "whsec_SA3552rxBv5PmFUTXAh+GMoY9ofqItOe"
#define HK_TH_REPLICA_SECRETS                                                                      \
    HK_TH_SECRET " " HK_TH_R1_SECRET " " HK_TH_R2_SECRET " " HK_TH_R3_SECRET " " HK_TH_R4_SECRET
extern const char *const hk_th_replica_secret[4];

// Which of `n` secrets signed the sink's request `r` (a replica each, when each
// replica signs with its own): its index, -1 when none.
int hk_th_signer(const hk_sink_req_t *r, const char *const secrets[], int n);

// A scenario: a Kafka cluster (hk_th_kafka_start), the sinks and the hookd
// replicas of one test. A suite keeps one in a static, starts it from its setup
// and stops it from its teardown, which runs after a failed assertion too, so no
// child outlives its test.
#define HK_TH_SCENE_SINKS  4
#define HK_TH_SCENE_HOOKDS 4
typedef struct hk_th_scene {
    hk_th_proc_t kafka;
    char brokers[512];
    hk_th_proc_t hookd[HK_TH_SCENE_HOOKDS]; // pid 0 when not started
    hk_sink_t *sinks[HK_TH_SCENE_SINKS];    // NULL when not started
} hk_th_scene_t;

// Clears `sc` and starts its cluster with `topics` (as hk_th_kafka_start); with
// topics NULL the test starts it later with hk_th_scene_kafka. 0 ok.
int hk_th_scene_start(hk_th_scene_t *sc, const char *const topics[]);
int hk_th_scene_kafka(hk_th_scene_t *sc, const char *const topics[]);
// Starts a sink with `opts` (secrets NULL: HK_TH_SECRET) that hk_th_scene_stop
// stops; NULL with the reason in err when it does not start or all are taken.
hk_sink_t *hk_th_scene_sink(hk_th_scene_t *sc, hk_sink_opts_t opts, char *err, size_t size);
// Starts replica `i` with hk_th_hookd_start against the scene's cluster, its log
// `log` emptied first (the harness appends: a test counts its own run's lines). 0 ok.
int hk_th_scene_hookd(hk_th_scene_t *sc, int i, char *const env[], const char *config,
                      const char *log);
// Stops every replica (SIGTERM, SIGKILL after stop_ms), the cluster and the
// sinks, and releases what the test held (hk_th_release_held).
void hk_th_scene_stop(hk_th_scene_t *sc, int stop_ms);

// A private Postgres for a whole run (what hk_ck_run_t's `pg` starts): a temp
// dir made from the mkdtemp template `tmp` (filled in) becomes TMPDIR, so every
// server the run starts lives under it and is removed with it, also those of a
// test that failed inside a forked child. `who` names the suite in messages.
// 0 ok; on failure what it made is removed.
typedef struct hk_pgsvc hk_pgsvc_t;
int hk_th_pg_run_start(hk_pgsvc_t *pg, char *tmp, const char *who);
void hk_th_pg_run_stop(hk_pgsvc_t *pg, const char *tmp);

#endif
