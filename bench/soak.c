// soak: a long run with mixed outcomes, watching hookd's resources. Not a test: it
// prints figures. Run it from a scratch directory (it writes soak_hookd.log there).
//
//   build/soak [--jobs N] [--interval-ms MS] [--warmup-pct P] [--rate R]
//
// Defaults: 1,000,000 jobs, a sample every 5 s, the first 20% of samples taken as
// warm-up, produced at up to 2000 jobs/s (0 = unpaced), held while 200,000 wait.
// In-process sinks (tests/support/sink.h, verifying signatures) answer by path:
//   84%    /ok               200
//    4%    /status/404       permanent: dead-lettered at once
//    4%    /status/503       5xx: retried (max_attempts 2), then exhausted
//    2%    /slow/400         the job's timeout_ms is 100: timeouts, then exhausted
//    4%    a second endpoint (another sink port) that flaps: /flap (500, 200, ...)
//    2%    not a job at all  dead-lettered as invalid
//    0.02% a third endpoint: /random-429/50, 429 with Retry-After: 1 half the time
//          (max_attempts 2). A 429 holds its whole lane for a second (DESIGN §7),
//          so it has its own host, and few enough jobs (about one every 2.5 s at
//          2000/s) that the held lane keeps up; on the main endpoint, or at 4%,
//          the holds throttled the whole run to ~30 requests a second.
// hookd runs as build/hookd against an out-of-process mock cluster (so the cluster's
// memory is not counted as hookd's), with retry.schedule = 200ms and a breaker that
// does not trip on this mix of failures (the point is the steady state, not the
// breaker). Every interval it samples hookd's RSS (VmRSS), open fds (/proc/PID/fd)
// and threads, plus the sinks' counters and the group's lag. The sinks' request
// records are dropped at each sample (counters carried over), so the bench's own
// memory stays flat too. SIGINT/SIGTERM ends the run early with the summary so far.
//
// At the end: the series, then for the samples after warm-up min, max and the
// least-squares slope per minute of each, and the outcome counts.
#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/harness.h"
#include "tests/support/sink.h"

static volatile sig_atomic_t g_stop; // SIGINT/SIGTERM: summarise what was sampled, stop hookd

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct sample {
    double t_s;    // since hookd started
    double rss_mb; // VmRSS
    long fds;      // entries of /proc/PID/fd
    long threads;  // Threads: in /proc/PID/status
    uint64_t ok;   // 2xx answers so far (all sinks)
    uint64_t reqs; // requests so far (all sinks)
    size_t produced;
    int64_t lag; // jobs topic, group hookd
} sample_t;

#define BACKLOG_MAX 200000 // jobs produced but not committed before the producer waits

typedef struct producer_arg {
    const char *brokers;
    size_t jobs;
    int rate; // jobs per second, 0 = unpaced
    int port, port2, port3;
    atomic_size_t produced;
    atomic_int failed;
    atomic_int hold; // set by the sampler while the group's lag is over BACKLOG_MAX
} producer_arg_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    producer_arg_t *pa = opaque;
    if (m->err)
        atomic_fetch_add(&pa->failed, 1);
    else
        atomic_fetch_add(&pa->produced, 1);
}

// The i-th job of the mix above, into buf.
static int job_value(char *buf, size_t size, size_t i, const producer_arg_t *pa)
{
    // Spread the kinds evenly, in hundredths of a percent.
    unsigned slot = (unsigned)((i * 2654435761u) % 10000);
    const char *path = "/ok";
    const char *extra = "";
    int p = pa->port;
    if (slot < 200)
        return snprintf(buf, size, "not a job %zu", i);
    if (slot < 600)
        path = "/status/404";
    else if (slot < 1000)
        path = "/status/503", extra = ",\"max_attempts\":2";
    else if (slot < 1200)
        path = "/slow/400", extra = ",\"max_attempts\":2,\"timeout_ms\":100";
    else if (slot < 1600)
        path = "/flap", p = pa->port2, extra = ",\"max_attempts\":3";
    else if (slot < 1602)
        path = "/random-429/50", p = pa->port3, extra = ",\"max_attempts\":2";
    return snprintf(buf, size,
                    "{\"id\":\"soak-%zu\",\"tenant\":\"t%zu\",\"url\":\"http://127.0.0.1:%d%s\","
                    "\"body\":{\"n\":%zu,\"pad\":\"0123456789abcdef0123456789abcdef\"}%s}",
                    i, i % 7, p, path, i, extra);
}

static void *producer_main(void *arg)
{
    producer_arg_t *pa = arg;
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", pa->brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, pa);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "soak: producer: %s\n", err);
        atomic_store(&pa->failed, 1);
        return NULL;
    }
    int64_t t0 = hk_th_now_ms();
    size_t i0 = 0; // the pace restarts after each hold, or it would burst to catch up
    char value[512], key[32];
    for (size_t i = 0; i < pa->jobs && !g_stop; i++) {
        if (atomic_load(&pa->hold)) {
            while (atomic_load(&pa->hold) && !g_stop)
                hk_th_sleep_ms(100);
            t0 = hk_th_now_ms();
            i0 = i;
        }
        if (pa->rate > 0 && i % 100 == 0) {
            int64_t due = t0 + (int64_t)((i - i0) * 1000 / (size_t)pa->rate);
            int64_t now = hk_th_now_ms();
            if (due > now)
                hk_th_sleep_ms((int)(due - now));
        }
        int n = job_value(value, sizeof value, i, pa);
        snprintf(key, sizeof key, "k%zu", i % 1009);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("jobs"),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(value, n),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 50);
        if (e)
            atomic_fetch_add(&pa->failed, 1);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    rd_kafka_destroy(rk);
    return NULL;
}

static long count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static long status_field(pid_t pid, const char *name)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t len = strlen(name);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, len) == 0 && line[len] == ':')
            v = atol(line + len + 1);
    fclose(f);
    return v;
}

typedef struct fit {
    double min, max, slope_per_min;
} fit_t;

// min, max and least-squares slope (per minute) of y over samples [from, n).
static fit_t fit(const sample_t *s, size_t from, size_t n, double (*y)(const sample_t *))
{
    fit_t f = {.min = 1e300, .max = -1e300};
    double sx = 0, sy = 0, sxx = 0, sxy = 0, k = (double)(n - from);
    for (size_t i = from; i < n; i++) {
        double x = s[i].t_s / 60.0, v = y(&s[i]);
        f.min = v < f.min ? v : f.min;
        f.max = v > f.max ? v : f.max;
        sx += x, sy += v, sxx += x * x, sxy += x * v;
    }
    double den = k * sxx - sx * sx;
    f.slope_per_min = k > 1 && den != 0 ? (k * sxy - sx * sy) / den : 0;
    return f;
}

static double y_rss(const sample_t *s)
{
    return s->rss_mb;
}
static double y_fds(const sample_t *s)
{
    return (double)s->fds;
}
static double y_thr(const sample_t *s)
{
    return (double)s->threads;
}

int main(int argc, char **argv)
{
    size_t jobs = 1000000;
    int interval_ms = 5000, warmup_pct = 20, rate = 2000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
            jobs = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
            interval_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--warmup-pct") == 0 && i + 1 < argc)
            warmup_pct = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: soak [--jobs N] [--interval-ms MS] [--warmup-pct P] "
                            "[--rate R]\n");
            return 2;
        }
    }
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 32, .seed = 1};
    hk_sink_t *sink = hk_sink_start(&so, err, sizeof err);
    hk_sink_t *sink2 = sink ? hk_sink_start(&so, err, sizeof err) : NULL;
    hk_sink_opts_t so3 = so;
    so3.threads = 4; // a trickle of jobs
    hk_sink_t *sink3 = sink2 ? hk_sink_start(&so3, err, sizeof err) : NULL;
    if (!sink || !sink2 || !sink3) {
        fprintf(stderr, "soak: sink: %s\n", err);
        return 1;
    }
    hk_th_proc_t kafka, hookd;
    char brokers[512];
    // librdkafka's mock cluster keeps at most 5 MB (and 100,000 records) per
    // partition and drops the oldest past that: enough partitions, and a producer
    // held back while the backlog is large (see producer_main), keep every job.
    const char *topics[] = {"jobs:32", "jobs.dlq:8", "jobs.retry:32", NULL};
    if (hk_th_kafka_start(&kafka, topics, brokers, sizeof brokers) != 0) {
        fprintf(stderr, "soak: mock cluster did not start\n");
        return 1;
    }
    // Breaker: a window of 1000 calls that all must fail. Toward the end of a run
    // only the failing jobs are left, which would otherwise open it and stretch
    // the tail by whole open periods.
    char *env[] = {"HOOKD_RETRY_SCHEDULE=200ms",
                   "HOOKD_BREAKER_WINDOW=1000",
                   "HOOKD_BREAKER_MIN_CALLS=1000",
                   "HOOKD_BREAKER_FAILURE_RATE=1.0",
                   "HOOKD_BREAKER_CONSECUTIVE_FAILURES=1000",
                   "HOOKD_BREAKER_OPEN_MS=1s",
                   "HOOKD_BREAKER_MAX_OPEN_MS=2s",
                   "HOOKD_LOG_LEVEL=warn",
                   NULL};
    const char *log = "soak_hookd.log";
    unlink(log);
    if (hk_th_hookd_start(&hookd, brokers, env, NULL, log) != 0) {
        fprintf(stderr, "soak: hookd did not start\n");
        return 1;
    }
    producer_arg_t pa = {.brokers = brokers,
                         .jobs = jobs,
                         .rate = rate,
                         .port = hk_sink_port(sink),
                         .port2 = hk_sink_port(sink2),
                         .port3 = hk_sink_port(sink3)};
    pthread_t ptid;
    pthread_create(&ptid, NULL, producer_main, &pa);
    printf("soak: %zu jobs at up to %d/s, sample every %d ms; hookd pid %d, log %s\n", jobs, rate,
           interval_ms, (int)hookd.pid, log);
    printf("%8s %9s %6s %8s %10s %10s %10s %9s\n", "t_s", "rss_mb", "fds", "threads", "produced",
           "requests", "ok", "lag");

    size_t cap = 1024, n = 0;
    sample_t *s = malloc(cap * sizeof *s);
    uint64_t ok_base = 0, req_base = 0;
    int64_t t0 = hk_th_now_ms();
    int done = 0, died = 0, zero_lag_runs = 0;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!done && !g_stop) {
        hk_th_sleep_ms(interval_ms);
        if (hk_th_wait(&hookd, 0) != -1) {
            died = 1;
            break;
        }
        hk_sink_stats_t a, b, c;
        hk_sink_stats(sink, &a);
        hk_sink_stats(sink2, &b);
        hk_sink_stats(sink3, &c);
        hk_sink_reset(sink); // drop the records; the counters are carried here
        hk_sink_reset(sink2);
        hk_sink_reset(sink3);
        ok_base += a.ok + b.ok + c.ok;
        req_base += a.requests + b.requests + c.requests;
        if (n == cap)
            s = realloc(s, (cap *= 2) * sizeof *s);
        sample_t *x = &s[n++];
        x->t_s = (double)(hk_th_now_ms() - t0) / 1000.0;
        x->rss_mb = (double)status_field(hookd.pid, "VmRSS") / 1024.0;
        x->fds = count_fds(hookd.pid);
        x->threads = status_field(hookd.pid, "Threads");
        x->ok = ok_base;
        x->reqs = req_base;
        x->produced = atomic_load(&pa.produced);
        x->lag = hk_th_group_lag(brokers, "hookd", "jobs");
        atomic_store(&pa.hold, x->lag > BACKLOG_MAX);
        printf("%8.0f %9.1f %6ld %8ld %10zu %10llu %10llu %9lld\n", x->t_s, x->rss_mb, x->fds,
               x->threads, x->produced, (unsigned long long)x->reqs, (unsigned long long)x->ok,
               (long long)x->lag);
        fflush(stdout);
        // Done when everything was produced and the group's lag on both topics stayed
        // 0 for two samples (retries parked in the retry topic come back first).
        int64_t rlag = hk_th_group_lag(brokers, "hookd", "jobs.retry");
        if (x->produced + (size_t)atomic_load(&pa.failed) >= jobs && x->lag == 0 && rlag <= 0)
            done = ++zero_lag_runs >= 2;
        else
            zero_lag_runs = 0;
    }
    pthread_join(ptid, NULL);

    size_t from = n * (size_t)warmup_pct / 100;
    if (n - from < 2)
        from = 0;
    printf("\nsoak: %zu jobs produced (%d failed), %llu requests, %llu answered 2xx, %.0f s, "
           "%zu samples (%zu after warm-up)%s\n",
           atomic_load(&pa.produced), atomic_load(&pa.failed), (unsigned long long)req_base,
           (unsigned long long)ok_base, n ? s[n - 1].t_s : 0.0, n, n - from,
           died ? "; HOOKD EXITED" : "");
    if (n > from) {
        fit_t r = fit(s, from, n, y_rss), f = fit(s, from, n, y_fds), t = fit(s, from, n, y_thr);
        printf("soak: after warm-up (t >= %.0f s):\n", s[from].t_s);
        printf("  rss_mb   min %8.1f  max %8.1f  slope %+8.3f /min\n", r.min, r.max,
               r.slope_per_min);
        printf("  fds      min %8.0f  max %8.0f  slope %+8.3f /min\n", f.min, f.max,
               f.slope_per_min);
        printf("  threads  min %8.0f  max %8.0f  slope %+8.3f /min\n", t.min, t.max,
               t.slope_per_min);
        printf("  peak RSS (VmHWM) %.1f MB\n",
               (double)hk_th_proc_status_bytes(hookd.pid, "VmHWM") / 1048576.0);
    }
    int st = hk_th_stop(&hookd, 30000);
    printf("soak: hookd %s after SIGTERM\n", hk_th_exited_ok(st) ? "exited 0" : "did NOT exit 0");
    hk_th_kafka_stop(&kafka);
    hk_sink_stop(sink);
    hk_sink_stop(sink2);
    hk_sink_stop(sink3);
    free(s);
    return died ? 1 : 0;
}
