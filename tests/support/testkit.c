// testkit: the public face (include/hookd/testkit.h, prefix hkt_) of the test
// support hookd's own suites use: the sink (sink.c), the harness (harness.c) and
// the private servers (pgsvc.c, redissvc.c) behind opaque handles, plus the
// scenario fixture. Nothing here is hookd-specific but the defaults hookd is
// started with, so the installed kit and the in-tree suites run the same code.
#include "hookd/testkit.h"

#include "base/err.h"
#include "tests/support/harness.h"
#include "tests/support/pgsvc.h"
#include "tests/support/redissvc.h"
#include "tests/support/sink.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIT_MAX_ENV      48
#define KIT_MAX_REPLICAS 32

// ---- sink: hkt_sink_t is the hk_sink_t itself ----

static hk_sink_t *sk(hkt_sink_t *s)
{
    return (hk_sink_t *)s;
}

hkt_sink_t *hkt_sink_start(const hkt_sink_opts_t *opts, char *err, size_t err_size)
{
    hkt_sink_opts_t none = {0};
    if (opts == NULL)
        opts = &none;
    hk_sink_opts_t o = {.port = opts->port,
                        .secrets = opts->secrets,
                        .threads = opts->threads,
                        .log_errors = opts->log_errors,
                        .seed = opts->seed,
                        .log_requests = opts->log_requests,
                        .tls = opts->tls};
    return (hkt_sink_t *)hk_sink_start(&o, err, err_size);
}

void hkt_sink_stop(hkt_sink_t *sink)
{
    hk_sink_stop(sk(sink));
}

int hkt_sink_port(const hkt_sink_t *sink)
{
    return hk_sink_port((const hk_sink_t *)sink);
}

char *hkt_sink_url(const hkt_sink_t *sink, const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "%s://127.0.0.1:%d%s",
             hk_sink_tls((const hk_sink_t *)sink) ? "https" : "http", hkt_sink_port(sink),
             path ? path : "");
    return buf;
}

const char *hkt_sink_ca_pem(const hkt_sink_t *sink)
{
    return hk_sink_ca_pem((const hk_sink_t *)sink);
}

int hkt_sink_write_ca(const hkt_sink_t *sink, const char *path)
{
    const char *pem = hkt_sink_ca_pem(sink);
    if (pem == NULL || path == NULL) {
        errno = EINVAL;
        return -1;
    }
    return hk_sinktls_write(pem, path, NULL, 0);
}

int hkt_sink_set_rule(hkt_sink_t *sink, const char *prefix, int status, int delay_ms,
                      const char *retry_after)
{
    return hk_sink_set_rule(sk(sink), prefix, status, delay_ms, retry_after);
}

int hkt_sink_set_outage(hkt_sink_t *sink, const char *prefix, int status, int for_ms)
{
    return hk_sink_set_outage(sk(sink), prefix, status, for_ms);
}

int hkt_sink_set_sequence(hkt_sink_t *sink, const char *prefix, const int *codes, size_t n)
{
    return hk_sink_set_sequence(sk(sink), prefix, codes, n);
}

int hkt_sink_refuse(hkt_sink_t *sink, int for_ms)
{
    return hk_sink_refuse(sk(sink), for_ms);
}

int hkt_sink_listen(hkt_sink_t *sink)
{
    return hk_sink_listen(sk(sink));
}

void hkt_sink_stats(hkt_sink_t *sink, hkt_sink_stats_t *out)
{
    hk_sink_stats_t st;
    hk_sink_stats(sk(sink), &st);
    *out = (hkt_sink_stats_t){.requests = st.requests,
                              .ok = st.ok,
                              .failed = st.failed,
                              .unique_ok = st.unique_ok,
                              .duplicate_ok = st.duplicate_ok,
                              .bad_signature = st.bad_signature,
                              .bad_headers = st.bad_headers};
}

char *hkt_sink_stats_json(hkt_sink_t *sink)
{
    return hk_sink_stats_json(sk(sink));
}

size_t hkt_sink_reqs(hkt_sink_t *sink, hkt_sink_req_t **out)
{
    *out = NULL;
    hk_sink_req_t *in;
    size_t n = hk_sink_reqs(sk(sink), &in);
    if (n == 0)
        return 0;
    hkt_sink_req_t *r = calloc(n, sizeof *r);
    if (r == NULL) {
        hk_sink_reqs_free(in, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        r[i].at_ms = in[i].at_ms;
        snprintf(r[i].path, sizeof r[i].path, "%s", in[i].path);
        snprintf(r[i].method, sizeof r[i].method, "%s", in[i].method);
        snprintf(r[i].webhook_id, sizeof r[i].webhook_id, "%s", in[i].webhook_id);
        r[i].webhook_ts = in[i].webhook_ts;
        r[i].sig = in[i].sig;
        r[i].status = in[i].status;
        r[i].body = in[i].body; // moved
        r[i].body_len = in[i].body_len;
        in[i].body = NULL;
    }
    hk_sink_reqs_free(in, n);
    *out = r;
    return n;
}

void hkt_sink_reqs_free(hkt_sink_req_t *reqs, size_t n)
{
    for (size_t i = 0; reqs != NULL && i < n; i++)
        free(reqs[i].body);
    free(reqs);
}

unsigned hkt_sink_ok_count(hkt_sink_t *sink, const char *webhook_id)
{
    return hk_sink_ok_count(sk(sink), webhook_id);
}

void hkt_sink_reset(hkt_sink_t *sink)
{
    hk_sink_reset(sk(sink));
}

unsigned hkt_sink_pending(hkt_sink_t *sink)
{
    return hk_sink_pending(sk(sink));
}

int hkt_sink_wait_delivered(hkt_sink_t *sink, uint64_t n, int timeout_ms)
{
    return hk_th_wait_unique_ok(sk(sink), n, timeout_ms);
}

// ---- processes ----

struct hkt_proc {
    hk_th_proc_t p;
};

hkt_proc_t *hkt_hookd_start(const char *hookd_bin, const char *brokers, char *const env[],
                            const char *config, const char *log, char *err, size_t err_size)
{
    const char *bin = hookd_bin ? hookd_bin : hk_th_hookd_bin();
    if (access(bin, X_OK) != 0) {
        hk_err_set(err, err_size, "hookd: cannot run %s (%s); set HOOKD_BIN", bin, strerror(errno));
        return NULL;
    }
    hkt_proc_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        hk_err_set(err, err_size, "hookd: out of memory");
        return NULL;
    }
    if (hk_th_hookd_start_bin(&p->p, bin, brokers, env, config, log) != 0) {
        hk_err_set(err, err_size, "hookd: cannot start %s: %s", bin, strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

pid_t hkt_proc_pid(const hkt_proc_t *p)
{
    return p->p.pid;
}

const char *hkt_proc_log(const hkt_proc_t *p)
{
    return p->p.log;
}

void hkt_proc_kill(hkt_proc_t *p, int sig)
{
    hk_th_kill(&p->p, sig);
}

int hkt_proc_stop(hkt_proc_t *p, int timeout_ms)
{
    return hk_th_stop(&p->p, timeout_ms);
}

int hkt_proc_wait(hkt_proc_t *p, int timeout_ms)
{
    return hk_th_wait(&p->p, timeout_ms);
}

int hkt_exited_ok(int status)
{
    return hk_th_exited_ok(status);
}

void hkt_proc_free(hkt_proc_t *p)
{
    if (p == NULL)
        return;
    if (p->p.pid > 0) {
        hk_th_kill(&p->p, SIGKILL);
        hk_th_wait(&p->p, 5000);
    }
    if (p->p.stdin_fd >= 0)
        close(p->p.stdin_fd);
    free(p);
}

int hkt_hookd_admin_port(const hkt_proc_t *p)
{
    return hk_th_admin_port(p->p.log);
}

const char *hkt_hookd_bin(void)
{
    return hk_th_hookd_bin();
}

// ---- Kafka ----

struct hkt_kafka {
    hk_th_proc_t mock; // pid 0 for a real cluster
    int real;
    char dir[512]; // a real cluster's KAFKA_DIR
    char bootstraps[1024];
};

hkt_kafka_t *hkt_kafka_mock_start(const char *const topics[], char *err, size_t err_size)
{
    hkt_kafka_t *k = calloc(1, sizeof *k);
    if (k == NULL) {
        hk_err_set(err, err_size, "kafka: out of memory");
        return NULL;
    }
    if (hk_th_kafka_start(&k->mock, topics, k->bootstraps, sizeof k->bootstraps) != 0) {
        const char *bin = hk_th_mockkafka_bin();
        hk_err_set(err, err_size, "kafka: the mock cluster (%s) did not start; set HOOKD_MOCKKAFKA",
                   bin ? bin : "hookd-mockkafka not found");
        free(k);
        return NULL;
    }
    return k;
}

// Runs `script` with args; its stdout into out (NUL-terminated). The exit status.
static int run_capture(char *const argv[], char *out, size_t size)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], out + len, size - 1 - len)) > 0 && len + (size_t)r < size - 1)
        len += (size_t)r;
    if (r > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

// The value of line "NAME=value" in text, into buf. 0 found.
static int kv_line(const char *text, const char *name, char *buf, size_t size)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            size_t len = strcspn(p + n + 1, "\r\n");
            snprintf(buf, size, "%.*s", (int)len, p + n + 1);
            return 0;
        }
    }
    return -1;
}

static int kafka_create_topics(const char *brokers, const char *const topics[], char *err,
                               size_t err_size)
{
    char e[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof e);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (rk == NULL) {
        hk_err_set(err, err_size, "kafka: %s", e);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_NewTopic_t *nt[64];
    size_t n = 0;
    int rc = 0;
    for (; topics[n] && n < 64; n++) {
        char name[256];
        const char *colon = strchr(topics[n], ':');
        size_t len = colon ? (size_t)(colon - topics[n]) : strlen(topics[n]);
        snprintf(name, sizeof name, "%.*s", (int)len, topics[n]);
        nt[n] = rd_kafka_NewTopic_new(name, colon ? atoi(colon + 1) : 1, -1, e, sizeof e);
        if (nt[n] == NULL) {
            hk_err_set(err, err_size, "kafka: topic %s: %s", name, e);
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opt =
            rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, e, sizeof e);
        rd_kafka_CreateTopics(rk, nt, n, opt, q);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
        if (ev == NULL || rd_kafka_event_error(ev)) {
            hk_err_set(err, err_size, "kafka: CreateTopics: %s",
                       ev ? rd_kafka_event_error_string(ev) : "no answer");
            rc = -1;
        } else {
            size_t cnt;
            const rd_kafka_topic_result_t **res =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
            for (size_t i = 0; i < cnt; i++) {
                if (rd_kafka_topic_result_error(res[i])) {
                    hk_err_set(err, err_size, "kafka: create %s: %s",
                               rd_kafka_topic_result_name(res[i]),
                               rd_kafka_topic_result_error_string(res[i]));
                    rc = -1;
                }
            }
        }
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
    }
    for (size_t i = 0; i < n && nt[i]; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    rd_kafka_destroy(rk);
    return rc;
}

hkt_kafka_t *hkt_kafka_real_start(int nodes, const char *const topics[], char *err, size_t err_size)
{
    const char *script = hk_th_kafka_script();
    if (script == NULL) {
        hk_err_set(err, err_size, "kafka: no kafka script found; set HOOKD_KAFKA_SCRIPT");
        return NULL;
    }
    hkt_kafka_t *k = calloc(1, sizeof *k);
    if (k == NULL) {
        hk_err_set(err, err_size, "kafka: out of memory");
        return NULL;
    }
    k->real = 1;
    k->mock.stdin_fd = -1;
    char n[16], *out = malloc(8192);
    snprintf(n, sizeof n, "%d", nodes > 0 ? nodes : 1);
    char *argv[] = {(char *)script, "up", "--nodes", n, NULL};
    int st = out ? run_capture(argv, out, 8192) : -1;
    if (!hk_th_exited_ok(st) ||
        kv_line(out, "KAFKA_BOOTSTRAP", k->bootstraps, sizeof k->bootstraps) != 0 ||
        kv_line(out, "KAFKA_DIR", k->dir, sizeof k->dir) != 0) {
        hk_err_set(err, err_size, "kafka: %s up failed (its messages are on stderr)", script);
        free(out);
        hkt_kafka_stop(k);
        return NULL;
    }
    free(out);
    if (topics != NULL && topics[0] != NULL &&
        kafka_create_topics(k->bootstraps, topics, err, err_size) != 0) {
        hkt_kafka_stop(k);
        return NULL;
    }
    return k;
}

const char *hkt_kafka_bootstraps(const hkt_kafka_t *k)
{
    return k->bootstraps;
}

pid_t hkt_kafka_pid(const hkt_kafka_t *k)
{
    return k->real ? 0 : k->mock.pid;
}

void hkt_kafka_stop(hkt_kafka_t *k)
{
    if (k == NULL)
        return;
    if (k->real) {
        const char *script = hk_th_kafka_script();
        if (k->dir[0] && script) {
            char out[512];
            char *argv[] = {(char *)script, "down", k->dir, NULL};
            run_capture(argv, out, sizeof out);
        }
    } else {
        hk_th_kafka_stop(&k->mock);
    }
    free(k);
}

size_t hkt_produce(const char *brokers, const char *topic, char *const *values, char *const *keys,
                   size_t n)
{
    return hk_th_produce(brokers, topic, values, keys, n);
}

int64_t hkt_group_lag(const char *brokers, const char *group, const char *topic)
{
    return hk_th_group_lag(brokers, group, topic);
}

// ---- PostgreSQL and Redis ----

struct hkt_pg {
    hk_pgsvc_t s;
};

hkt_pg_t *hkt_pg_start(char *err, size_t err_size)
{
    hkt_pg_t *pg = calloc(1, sizeof *pg);
    if (pg == NULL) {
        hk_err_set(err, err_size, "postgres: out of memory");
        return NULL;
    }
    if (hk_pgsvc_start(&pg->s) != 0) {
        hk_err_set(err, err_size,
                   "postgres: did not start (its log is on stderr; $HK_PG_BINDIR "
                   "names the server's bin dir)");
        hk_pgsvc_destroy(&pg->s);
        free(pg);
        return NULL;
    }
    return pg;
}

const char *hkt_pg_conninfo(const hkt_pg_t *pg)
{
    return pg->s.conninfo;
}

int hkt_pg_port(const hkt_pg_t *pg)
{
    return pg->s.port;
}

pid_t hkt_pg_pid(const hkt_pg_t *pg)
{
    return pg->s.pid;
}

int hkt_pg_stop(hkt_pg_t *pg)
{
    return hk_pgsvc_stop(&pg->s);
}

int hkt_pg_restart(hkt_pg_t *pg)
{
    return hk_pgsvc_restart(&pg->s);
}

int hkt_pg_exec(const hkt_pg_t *pg, const char *sql)
{
    return hk_pgsvc_exec(pg->s.conninfo, sql);
}

void hkt_pg_destroy(hkt_pg_t *pg)
{
    if (pg == NULL)
        return;
    hk_pgsvc_destroy(&pg->s);
    free(pg);
}

static hk_redissvc_t *rs(const hkt_redis_t *r)
{
    return (hk_redissvc_t *)r;
}

hkt_redis_t *hkt_redis_start(const char *password, char *err, size_t err_size)
{
    hk_redissvc_opts_t o = {.password = password};
    return (hkt_redis_t *)hk_redissvc_start(&o, err, err_size);
}

const char *hkt_redis_url(const hkt_redis_t *r)
{
    return hk_redissvc_url(rs(r));
}

int hkt_redis_port(const hkt_redis_t *r)
{
    return hk_redissvc_port(rs(r));
}

pid_t hkt_redis_pid(const hkt_redis_t *r)
{
    return hk_redissvc_pid(rs(r));
}

int hkt_redis_stop(hkt_redis_t *r)
{
    return hk_redissvc_stop(rs(r));
}

int hkt_redis_restart(hkt_redis_t *r)
{
    return hk_redissvc_restart(rs(r));
}

void hkt_redis_pause(hkt_redis_t *r)
{
    hk_redissvc_pause(rs(r));
}

void hkt_redis_resume(hkt_redis_t *r)
{
    hk_redissvc_resume(rs(r));
}

void hkt_redis_destroy(hkt_redis_t *r)
{
    if (r != NULL)
        hk_redissvc_destroy(rs(r));
}

// ---- scenario ----

struct hkt_scenario {
    hkt_scenario_opts_t opts;
    const char *bin;
    char dir[256];
    hkt_sink_t *sink;
    hkt_kafka_t *kafka;
    hkt_redis_t *redis;
    hkt_pg_t *pg;
    char redis_env[320];
    char pg_env[640];
    char ca_env[330]; // HOOKD_DELIVERY_CA_FILE=<dir>/sink-ca.pem, "" when not given
    int n;
    hkt_proc_t *replicas[KIT_MAX_REPLICAS];
    int starts[KIT_MAX_REPLICAS];
};

typedef struct admin_wait {
    hkt_proc_t *p;
} admin_wait_t;

static int admin_answers(void *arg)
{
    hkt_proc_t *p = arg;
    if (p->p.pid <= 0 || waitpid(p->p.pid, NULL, WNOHANG) == p->p.pid) {
        p->p.pid = 0; // exited: stop waiting
        return 1;
    }
    int port = hkt_hookd_admin_port(p);
    if (port <= 0)
        return 0;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    return hk_th_http("GET", url, 1000, NULL) == 200;
}

static int replica_start(hkt_scenario_t *sc, int i, char *const extra[], char *err, size_t err_size)
{
    char *env[KIT_MAX_ENV + 1];
    int n = 0;
    if (sc->redis)
        env[n++] = sc->redis_env;
    if (sc->pg)
        env[n++] = sc->pg_env;
    for (int k = 0; sc->opts.env && sc->opts.env[k] && n < KIT_MAX_ENV; k++)
        env[n++] = (char *)sc->opts.env[k];
    for (int k = 0; extra && extra[k] && n < KIT_MAX_ENV; k++)
        env[n++] = extra[k];
    // Last: hookd takes the first of a name, so the test's own setting wins.
    if (sc->ca_env[0] && n < KIT_MAX_ENV)
        env[n++] = sc->ca_env;
    env[n] = NULL;
    // A log per start: the admin port is read from the log's first admin line.
    char log[320];
    snprintf(log, sizeof log, "%s/hookd-%d.%d.log", sc->dir, i, ++sc->starts[i]);
    hkt_proc_free(sc->replicas[i]);
    sc->replicas[i] = hkt_hookd_start(sc->bin, hkt_kafka_bootstraps(sc->kafka), env,
                                      sc->opts.config, log, err, err_size);
    if (sc->replicas[i] == NULL)
        return -1;
    int timeout = sc->opts.start_timeout_ms > 0 ? sc->opts.start_timeout_ms : 30000;
    if (!hk_th_wait_for(admin_answers, sc->replicas[i], timeout) || sc->replicas[i]->p.pid == 0) {
        hk_err_set(err, err_size, "hookd replica %d did not come up within %d ms (log: %s)", i,
                   timeout, log);
        return -1;
    }
    return 0;
}

// True when one of env's entries starts with `key` ("NAME=").
static bool kit_env_sets(const char *const *env, const char *key)
{
    for (int k = 0; env && env[k]; k++) {
        if (strncmp(env[k], key, strlen(key)) == 0)
            return true;
    }
    return false;
}

hkt_scenario_t *hkt_scenario_start(const hkt_scenario_opts_t *opts, char *err, size_t err_size)
{
    hkt_scenario_t *sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        hk_err_set(err, err_size, "scenario: out of memory");
        return NULL;
    }
    if (opts != NULL)
        sc->opts = *opts;
    sc->n = sc->opts.replicas > 0 ? sc->opts.replicas : 1;
    if (sc->n > KIT_MAX_REPLICAS) {
        hk_err_set(err, err_size, "scenario: at most %d replicas", KIT_MAX_REPLICAS);
        free(sc);
        return NULL;
    }
    sc->bin = sc->opts.hookd_bin ? sc->opts.hookd_bin : hk_th_hookd_bin();
    if (access(sc->bin, X_OK) != 0) {
        hk_err_set(err, err_size, "scenario: cannot run hookd at %s (%s); set HOOKD_BIN", sc->bin,
                   strerror(errno));
        free(sc);
        return NULL;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(sc->dir, sizeof sc->dir, "%s/hkt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(sc->dir) == NULL) {
        hk_err_set(err, err_size, "scenario: mkdtemp %s: %s", sc->dir, strerror(errno));
        sc->dir[0] = '\0';
        hkt_scenario_stop(sc);
        return NULL;
    }
    hkt_sink_opts_t so = {.secrets = HKT_SECRET, .tls = sc->opts.sink_tls};
    if ((sc->sink = hkt_sink_start(&so, err, err_size)) == NULL)
        goto fail;
    if (sc->opts.sink_tls && !kit_env_sets(sc->opts.env, "HOOKD_DELIVERY_CA_FILE=")) {
        char ca[300];
        snprintf(ca, sizeof ca, "%s/sink-ca.pem", sc->dir);
        if (hkt_sink_write_ca(sc->sink, ca) != 0) {
            hk_err_set(err, err_size, "scenario: cannot write %s: %s", ca, strerror(errno));
            goto fail;
        }
        snprintf(sc->ca_env, sizeof sc->ca_env, "HOOKD_DELIVERY_CA_FILE=%s", ca);
    }
    int parts = sc->opts.partitions > 0 ? sc->opts.partitions : 4;
    char jobs[32], retry[32];
    snprintf(jobs, sizeof jobs, "jobs:%d", parts);
    snprintf(retry, sizeof retry, "jobs.retry:%d", parts);
    const char *topics[] = {jobs, "jobs.dlq:1", retry, NULL};
    sc->kafka = sc->opts.real_kafka ? hkt_kafka_real_start(1, topics, err, err_size)
                                    : hkt_kafka_mock_start(topics, err, err_size);
    if (sc->kafka == NULL)
        goto fail;
    if (sc->opts.redis) {
        if ((sc->redis = hkt_redis_start(NULL, err, err_size)) == NULL)
            goto fail;
        snprintf(sc->redis_env, sizeof sc->redis_env, "HOOKD_REDIS_URL=%s",
                 hkt_redis_url(sc->redis));
    }
    if (sc->opts.postgres) {
        if ((sc->pg = hkt_pg_start(err, err_size)) == NULL)
            goto fail;
        snprintf(sc->pg_env, sizeof sc->pg_env, "HOOKD_POSTGRES_URL=%s", hkt_pg_conninfo(sc->pg));
    }
    for (int i = 0; i < sc->n; i++) {
        if (replica_start(sc, i, NULL, err, err_size) != 0)
            goto fail;
    }
    return sc;
fail:
    hkt_scenario_stop(sc);
    return NULL;
}

void hkt_scenario_stop(hkt_scenario_t *sc)
{
    if (sc == NULL)
        return;
    for (int i = 0; i < sc->n; i++) {
        if (sc->replicas[i] != NULL)
            hkt_proc_stop(sc->replicas[i], 10000);
        hkt_proc_free(sc->replicas[i]);
    }
    hkt_kafka_stop(sc->kafka);
    hkt_redis_destroy(sc->redis);
    hkt_pg_destroy(sc->pg);
    hkt_sink_stop(sc->sink);
    const char *keep = getenv("HKT_KEEP");
    if (sc->dir[0] && !(keep && *keep))
        hk_th_rmtree(sc->dir);
    free(sc);
}

hkt_sink_t *hkt_scenario_sink(hkt_scenario_t *sc)
{
    return sc->sink;
}

hkt_redis_t *hkt_scenario_redis(hkt_scenario_t *sc)
{
    return sc->redis;
}

hkt_pg_t *hkt_scenario_pg(hkt_scenario_t *sc)
{
    return sc->pg;
}

hkt_kafka_t *hkt_scenario_kafka(hkt_scenario_t *sc)
{
    return sc->kafka;
}

const char *hkt_scenario_brokers(hkt_scenario_t *sc)
{
    return hkt_kafka_bootstraps(sc->kafka);
}

const char *hkt_scenario_dir(hkt_scenario_t *sc)
{
    return sc->dir;
}

int hkt_scenario_replicas(hkt_scenario_t *sc)
{
    return sc->n;
}

size_t hkt_scenario_produce(hkt_scenario_t *sc, char *const *values, char *const *keys, size_t n)
{
    return hk_th_produce(hkt_scenario_brokers(sc), "jobs", values, keys, n);
}

size_t hkt_scenario_produce_jobs(hkt_scenario_t *sc, const char *path, const char *prefix, size_t n)
{
    // One block: n keys of 128 bytes, then n values of 640, then the pointers.
    enum { KEY = 128, VAL = 640 };
    char *block = malloc(n * (KEY + VAL + 2 * sizeof(char *)) + 1);
    if (block == NULL)
        return 0;
    char **keys = (char **)(block + n * (KEY + VAL)), **vals = keys + n;
    char url[512];
    for (size_t i = 0; i < n; i++) {
        keys[i] = block + i * KEY;
        vals[i] = block + n * KEY + i * VAL;
        snprintf(keys[i], KEY, "%s-%zu", prefix ? prefix : "job", i);
        snprintf(vals[i], VAL, "{\"id\":\"%s\",\"url\":\"%s\",\"body\":{\"i\":%zu}}", keys[i],
                 hkt_sink_url(sc->sink, path ? path : "/ok", url, sizeof url), i);
    }
    size_t acked = n ? hkt_scenario_produce(sc, vals, keys, n) : 0;
    free(block);
    return acked;
}

int hkt_scenario_wait_delivered(hkt_scenario_t *sc, uint64_t n, int timeout_ms)
{
    return hkt_sink_wait_delivered(sc->sink, n, timeout_ms);
}

int64_t hkt_scenario_lag(hkt_scenario_t *sc)
{
    return hk_th_group_lag(hkt_scenario_brokers(sc), "hookd", "jobs");
}

static int lag_zero(void *arg)
{
    return hkt_scenario_lag(arg) == 0;
}

int hkt_scenario_wait_lag_zero(hkt_scenario_t *sc, int timeout_ms)
{
    return hk_th_wait_for(lag_zero, sc, timeout_ms);
}

char *hkt_scenario_metrics(hkt_scenario_t *sc, int i)
{
    if (i < 0 || i >= sc->n || sc->replicas[i] == NULL)
        return NULL;
    int port = hkt_hookd_admin_port(sc->replicas[i]);
    if (port <= 0)
        return NULL;
    char url[64], *body = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    if (hk_th_http("GET", url, 5000, &body) != 200) {
        free(body);
        return NULL;
    }
    return body;
}

double hkt_scenario_metric(hkt_scenario_t *sc, int i, const char *series)
{
    char *body = hkt_scenario_metrics(sc, i);
    if (body == NULL)
        return NAN;
    // A bare name also matches its labelled samples ("name{...} v"), summed.
    bool bare = strchr(series, '{') == NULL;
    double v = NAN;
    size_t len = strlen(series);
    for (char *line = body; line && *line;) {
        char *next = strchr(line, '\n');
        if (strncmp(line, series, len) == 0 && (line[len] == ' ' || (bare && line[len] == '{'))) {
            const char *val = line[len] == ' ' ? line + len + 1 : strstr(line + len, "} ");
            if (val != NULL) {
                double x = strtod(line[len] == ' ' ? val : val + 2, NULL);
                v = isnan(v) ? x : v + x;
            }
        }
        line = next ? next + 1 : NULL;
    }
    free(body);
    return v;
}

hkt_proc_t *hkt_scenario_replica(hkt_scenario_t *sc, int i)
{
    return i >= 0 && i < sc->n ? sc->replicas[i] : NULL;
}

void hkt_scenario_kill(hkt_scenario_t *sc, int i, int sig)
{
    if (i >= 0 && i < sc->n && sc->replicas[i] != NULL)
        hkt_proc_kill(sc->replicas[i], sig);
}

int hkt_scenario_stop_replica(hkt_scenario_t *sc, int i, int timeout_ms)
{
    if (i < 0 || i >= sc->n || sc->replicas[i] == NULL)
        return -1;
    return hkt_proc_stop(sc->replicas[i], timeout_ms);
}

int hkt_scenario_restart(hkt_scenario_t *sc, int i, char *const env[])
{
    if (i < 0 || i >= sc->n)
        return -1;
    char err[512];
    if (replica_start(sc, i, env, err, sizeof err) != 0) {
        fprintf(stderr, "hkt_scenario_restart: %s\n", err);
        return -1;
    }
    return 0;
}

// ---- fixture ----

static const hkt_scenario_opts_t *fixture_opts;
static hkt_scenario_t *fixture_sc;

void hkt_fixture_use(const hkt_scenario_opts_t *opts)
{
    fixture_opts = opts;
}

void hkt_fixture_setup(void)
{
    char err[1024] = "";
    fixture_sc = hkt_scenario_start(fixture_opts, err, sizeof err);
    if (fixture_sc != NULL)
        return;
    char why[1100];
    snprintf(why, sizeof why, "hkt_fixture_setup: %s", err);
    if (fixture_opts != NULL && fixture_opts->fail != NULL) {
        fixture_opts->fail(why);
        return;
    }
    fprintf(stderr, "%s\n", why);
    abort();
}

void hkt_fixture_teardown(void)
{
    hkt_scenario_stop(fixture_sc);
    fixture_sc = NULL;
}

hkt_scenario_t *hkt_fixture(void)
{
    return fixture_sc;
}
