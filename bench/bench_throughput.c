// bench_throughput: how close hookd's delivery rate comes to what the sink itself
// can take, measured in the same run.
//
//   build-lead/bench_throughput [--jobs N] [--runs R] [--threads T] [--transfers M]
//                               [--sink-threads S]
//
// Defaults: 50,000 jobs, 5 runs, 2 threads x 64 transfers, 8 sink threads; about
// 40 s on 2 cores. Run it from a scratch directory: it writes
// bench_throughput_hookd.log (the last hookd run's log) into the current one.
//
// One in-process libmicrohttpd sink (tests/support/sink.h) verifies every signature
// (secret HK_TH_SECRET) for both sides:
//   baseline  T threads, each a libcurl multi loop keeping M POSTs in flight over
//             keep-alive connections to /ok: the same ~100-byte JSON bodies and the
//             same headers hookd sends (webhook-id/-timestamp/-signature,
//             Idempotency-Key, Content-Type, User-Agent, "Expect:"), signed before
//             the clock starts. The sink's capacity as a lean client sees it.
//   hookd     N jobs produced to a fresh out-of-process mock cluster first, then
//             build/hookd started with delivery.threads = T,
//             max_transfers_per_thread = M and the endpoint's lane limit pinned to
//             T x M (lanes.initial_limit = max_limit), so both sides have T x M in
//             flight.
// Both rates are taken at the sink, from the first request to arrive to the last
// ((N - 1) / span), which leaves out hookd's start-up and the mock cluster's fixed
// ~3 s group join. hookd's peak RSS is VmHWM and its CPU is utime + stime, both read
// from /proc once the last job has arrived (so CPU includes start-up and the join;
// each run line shows how much of it came before the first delivery).
//
// Runs alternate baseline, hookd, baseline, ... so noise on the shared machine hits
// both; the summary gives medians, median(hookd) / median(baseline) and the runs
// with duplicates or stalls (see print_stall() for what a stall prints).
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/harness.h"
#include "tests/support/sink.h"
#include "base/sign.h"

#define BODY_BYTES 100
#define STALL_MS   1000 // a pause between two arrivals longer than this is reported

typedef struct bench_opts {
    size_t jobs;
    int runs;
    int threads;   // hookd delivery.threads and baseline client threads
    int transfers; // per thread
    int sink_threads;
} bench_opts_t;

typedef struct bench_req {
    char id[48];
    char body[BODY_BYTES + 1];
    struct curl_slist *hdrs;
} bench_req_t;

typedef struct bench_client {
    pthread_t tid;
    int index;
    const bench_opts_t *opts;
    bench_req_t *reqs;
    const char *url;
    size_t failed; // transfers that did not end in HTTP 200
} bench_client_t;

static hk_sink_t *sink;

// ~100 bytes of compact JSON, exactly as hookd re-serialises a job's body.
static void make_body(char *out, const char *prefix, size_t i)
{
    int n = snprintf(out, BODY_BYTES + 1,
                     "{\"type\":\"order.created\",\"order\":\"%s-%08zu\",\"total\":\"19.90\","
                     "\"note\":\"",
                     prefix, i);
    if (n < 0 || n + 2 > BODY_BYTES)
        abort(); // prefixes are short ("b12", "h3"): cannot happen
    memset(out + n, 'x', (size_t)(BODY_BYTES - n - 2));
    memcpy(out + BODY_BYTES - 2, "\"}", 3);
}

static size_t discard(char *buf, size_t size, size_t nitems, void *userdata)
{
    (void)buf;
    (void)userdata;
    return size * nitems;
}

static void client_prepare(CURL *e, bench_req_t *rq, const char *url)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "hookd/" HOOKD_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, rq->hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(rq->body));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body);
}

// One client thread: requests index, index + T, index + 2T, ..., M at a time.
static void *client_main(void *arg)
{
    bench_client_t *cl = arg;
    size_t step = (size_t)cl->opts->threads;
    size_t next = (size_t)cl->index;
    int m = cl->opts->transfers;
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)m * 4);
    CURL **easy = calloc((size_t)m, sizeof(*easy));
    int running = 0;
    for (int k = 0; k < m && next < cl->opts->jobs; k++, next += step) {
        easy[k] = curl_easy_init();
        client_prepare(easy[k], &cl->reqs[next], cl->url);
        curl_multi_add_handle(multi, easy[k]);
        running++;
    }
    while (running > 0) {
        int still;
        curl_multi_perform(multi, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200)
                cl->failed++;
            curl_multi_remove_handle(multi, e);
            running--;
            if (next < cl->opts->jobs) {
                client_prepare(e, &cl->reqs[next], cl->url);
                next += step;
                curl_multi_add_handle(multi, e);
                running++;
            }
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (int k = 0; k < m; k++) {
        if (easy[k])
            curl_easy_cleanup(easy[k]);
    }
    free(easy);
    curl_multi_cleanup(multi);
    return NULL;
}

// One run of either side, as the sink saw it (hookd's /proc figures too).
typedef struct run_result {
    int ok;              // every job answered 2xx, signatures, headers and bodies right
    double rate;         // (jobs - 1) / span
    double span_s;       // first arrival to last
    double max_gap_s;    // longest pause between two arrivals
    uint64_t duplicates; // 2xx answers for an id already answered 2xx
    uint64_t failed;     // non-2xx answers (none expected on /ok)
    double rss_mib;      // hookd only
    double cpu_s;        // hookd only: at the last delivery
    double cpu_first_s;  // hookd only: at the first request seen
} run_result_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// Fills res from the sink's records and counters; res->ok says whether the run
// counts. Duplicates and long gaps are kept as figures, not failures: they are
// what a benchmark should show.
static void sink_measure(const char *who, size_t want, run_result_t *res)
{
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    hk_sink_req_t *reqs;
    size_t n = hk_sink_reqs(sink, &reqs);
    int64_t *at = malloc((n ? n : 1) * sizeof(*at));
    size_t ok = 0, odd_body = 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].status < 200 || reqs[i].status > 299)
            continue;
        if (reqs[i].body_len != BODY_BYTES)
            odd_body++;
        at[ok++] = reqs[i].at_ms;
    }
    hk_sink_reqs_free(reqs, n);
    qsort(at, ok, sizeof(*at), cmp_i64);
    int64_t gap = 0;
    for (size_t i = 1; i < ok; i++)
        if (at[i] - at[i - 1] > gap)
            gap = at[i] - at[i - 1];
    res->duplicates = st.duplicate_ok;
    res->failed = st.failed;
    res->max_gap_s = (double)gap / 1000.0;
    res->span_s = ok ? (double)(at[ok - 1] - at[0]) / 1000.0 : 0.0;
    free(at);
    res->rate = want > 1 && res->span_s > 0 ? (double)(want - 1) / res->span_s : 0.0;
    res->ok = st.unique_ok == want && st.bad_signature == 0 && st.bad_headers == 0 &&
              odd_body == 0 && res->rate > 0;
    if (!res->ok)
        fprintf(stderr,
                "bench_throughput: %s: sink saw %llu unique ok of %zu, %llu bad signatures, "
                "%llu bad headers, %zu bodies not %d bytes\n",
                who, (unsigned long long)st.unique_ok, want, (unsigned long long)st.bad_signature,
                (unsigned long long)st.bad_headers, odd_body, BODY_BYTES);
}

static run_result_t run_baseline(const bench_opts_t *o, int run)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", hk_sink_port(sink));
    bench_req_t *reqs = calloc(o->jobs, sizeof(*reqs));
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "b%d", run);
    int64_t ts = time(NULL);
    char tsv[24];
    snprintf(tsv, sizeof(tsv), "%lld", (long long)ts);
    for (size_t i = 0; i < o->jobs; i++) {
        bench_req_t *rq = &reqs[i];
        snprintf(rq->id, sizeof(rq->id), "%s-%zu", prefix, i);
        make_body(rq->body, prefix, i);
        char sig[HK_SIGN_HEADER_MAX], line[HK_SIGN_HEADER_MAX + 64];
        hk_sign_header(HK_TH_SECRET, rq->id, ts, rq->body, strlen(rq->body), sig, sizeof(sig));
        struct curl_slist *h = NULL;
        snprintf(line, sizeof(line), "webhook-id: %s", rq->id);
        h = curl_slist_append(h, line);
        snprintf(line, sizeof(line), "webhook-timestamp: %s", tsv);
        h = curl_slist_append(h, line);
        snprintf(line, sizeof(line), "webhook-signature: %s", sig);
        h = curl_slist_append(h, line);
        snprintf(line, sizeof(line), "Idempotency-Key: %s", rq->id);
        h = curl_slist_append(h, line);
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Expect:");
        rq->hdrs = h;
    }

    hk_sink_reset(sink);
    bench_client_t *cl = calloc((size_t)o->threads, sizeof(*cl));
    for (int t = 0; t < o->threads; t++) {
        cl[t] = (bench_client_t){.index = t, .opts = o, .reqs = reqs, .url = url};
        pthread_create(&cl[t].tid, NULL, client_main, &cl[t]);
    }
    size_t failed = 0;
    for (int t = 0; t < o->threads; t++) {
        pthread_join(cl[t].tid, NULL);
        failed += cl[t].failed;
    }
    free(cl);
    for (size_t i = 0; i < o->jobs; i++)
        curl_slist_free_all(reqs[i].hdrs);
    free(reqs);

    run_result_t res = {0};
    sink_measure("baseline", o->jobs, &res);
    if (failed) {
        fprintf(stderr, "bench_throughput: baseline: %zu transfers failed\n", failed);
        res.ok = 0;
    }
    return res;
}

// utime + stime of `pid` in seconds, -1 when unreadable.
static double proc_cpu_s(pid_t pid)
{
    long long ticks = hk_th_proc_cpu_ticks(pid);
    return ticks < 0 ? -1 : (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

// VmHWM of `pid` in MiB, -1 when unreadable.
static double proc_hwm_mib(pid_t pid)
{
    long long bytes = hk_th_proc_status_bytes(pid, "VmHWM");
    return bytes < 0 ? -1 : (double)bytes / (1024.0 * 1024.0);
}

// Where the bytes wait during a stall: unread data on established loopback TCP
// connections to the sink's port, on the sink's side (the sink is not reading
// requests) and on the client's side (hookd is not reading answers).
static void print_stall(int run, uint64_t seen, size_t want)
{
    int port = hk_sink_port(sink);
    unsigned long sink_q = 0, client_q = 0;
    int open_conns = 0, sink_conns = 0, client_conns = 0;
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        unsigned lport, rport, st;
        unsigned long txq, rxq;
        if (sscanf(line, " %*d: %*x:%x %*x:%x %x %lx:%lx", &lport, &rport, &st, &txq, &rxq) != 5 ||
            st != 1) // 1: ESTABLISHED
            continue;
        if ((int)lport == port) {
            open_conns++;
            sink_q += rxq;
            sink_conns += rxq > 0;
        } else if ((int)rport == port) {
            client_q += rxq;
            client_conns += rxq > 0;
        }
    }
    if (f)
        fclose(f);
    printf("  run %d     hookd    stalled after %llu of %zu requests; of %d connections, %d "
           "hold %lu bytes the sink has not read, %d hold %lu bytes hookd has not read\n",
           run + 1, (unsigned long long)seen, want, open_conns, sink_conns, sink_q, client_conns,
           client_q);
    fflush(stdout);
}

static const char *syscall_name(long nr)
{
    switch (nr) {
    case SYS_futex:
        return "futex";
    case SYS_epoll_wait:
        return "epoll_wait";
    case SYS_epoll_pwait:
        return "epoll_pwait";
    case SYS_poll:
        return "poll";
    case SYS_ppoll:
        return "ppoll";
    case SYS_select:
        return "select";
    case SYS_clock_nanosleep:
        return "clock_nanosleep";
    case SYS_nanosleep:
        return "nanosleep";
    case SYS_accept4:
        return "accept4";
    default:
        return NULL;
    }
}

// What this process's threads (the sink's among them) are blocked in, grouped by
// thread name: tells a sink waiting on a lock from one waiting for events.
static void print_threads(void)
{
    char names[64][128];
    int counts[64], n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[320], comm[24] = "?", sc[64] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(comm, sizeof(comm), f))
                comm[strcspn(comm, "\n")] = '\0';
            fclose(f);
        }
        snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", de->d_name);
        f = fopen(path, "r");
        if (f) {
            if (fgets(sc, sizeof(sc), f))
                sc[strcspn(sc, " \n")] = '\0';
            fclose(f);
        }
        const char *name = syscall_name(strtol(sc, NULL, 10));
        char key[128];
        snprintf(key, sizeof(key), "%s in %s", comm, name ? name : sc);
        int i = 0;
        while (i < n && strcmp(names[i], key) != 0)
            i++;
        if (i == n && n < 64) {
            snprintf(names[n], sizeof(names[n]), "%s", key);
            counts[n++] = 0;
        }
        if (i < n)
            counts[i]++;
    }
    if (d)
        closedir(d);
    printf("            threads of this process (sink included):");
    for (int i = 0; i < n; i++)
        printf("%s %s x%d", i ? "," : "", names[i], counts[i]);
    printf("\n");
}

static run_result_t run_hookd(const bench_opts_t *o, int run)
{
    run_result_t res = {0};
    hk_th_proc_t kafka;
    char brokers[512];
    const char *topics[] = {"jobs:8", "jobs.dlq:2", "jobs.retry:8", NULL};
    if (hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)) != 0) {
        fprintf(stderr, "bench_throughput: could not start %s/hk-mockkafka\n", HK_BUILD_DIR);
        return res;
    }

    char prefix[16];
    snprintf(prefix, sizeof(prefix), "h%d", run);
    // Keys spread the jobs over the 8 partitions (dispatch.ordering is "none").
    char **values = calloc(o->jobs, sizeof(*values));
    char **keys = calloc(o->jobs, sizeof(*keys));
    for (size_t i = 0; i < o->jobs; i++) {
        char body[BODY_BYTES + 1];
        make_body(body, prefix, i);
        if (asprintf(&values[i],
                     "{\"id\":\"%s-%zu\",\"url\":\"http://127.0.0.1:%d/ok\",\"body\":%s}", prefix,
                     i, hk_sink_port(sink), body) < 0)
            abort();
        if (asprintf(&keys[i], "key-%zu", i % 97) < 0)
            abort();
    }
    size_t acked = hk_th_produce(brokers, "jobs", values, keys, o->jobs);
    for (size_t i = 0; i < o->jobs; i++) {
        free(values[i]);
        free(keys[i]);
    }
    free(values);
    free(keys);
    if (acked != o->jobs) {
        fprintf(stderr, "bench_throughput: produced %zu of %zu jobs\n", acked, o->jobs);
        hk_th_kafka_stop(&kafka);
        return res;
    }

    int in_flight = o->threads * o->transfers;
    char threads[64], transfers[64], lane_init[64], lane_max[64];
    snprintf(threads, sizeof(threads), "HOOKD_DELIVERY_THREADS=%d", o->threads);
    snprintf(transfers, sizeof(transfers), "HOOKD_DELIVERY_MAX_TRANSFERS_PER_THREAD=%d",
             o->transfers);
    snprintf(lane_init, sizeof(lane_init), "HOOKD_LANES_INITIAL_LIMIT=%d", in_flight);
    snprintf(lane_max, sizeof(lane_max), "HOOKD_LANES_MAX_LIMIT=%d", in_flight);
    char *env[] = {threads, transfers, lane_init, lane_max, "HOOKD_LOG_SUMMARY_MS=5000", NULL};
    const char *log = "bench_throughput_hookd.log";
    unlink(log);
    hk_sink_reset(sink);
    hk_th_proc_t hookd;
    if (hk_th_hookd_start(&hookd, brokers, env, NULL, log) != 0) {
        fprintf(stderr, "bench_throughput: could not start %s/hookd\n", HK_BUILD_DIR);
        hk_th_kafka_stop(&kafka);
        return res;
    }
    pid_t pid = hookd.pid;

    // Poll the sink; /proc is read while hookd is still running.
    int64_t deadline = hk_th_now_ms() + 120000;
    int seen_first = 0, done = 0, stall_shown = 0;
    uint64_t last_seen = 0;
    int64_t last_change = hk_th_now_ms();
    while (hk_th_now_ms() < deadline) {
        hk_sink_stats_t st;
        hk_sink_stats(sink, &st);
        if (!seen_first && st.requests > 0) {
            res.cpu_first_s = proc_cpu_s(pid);
            seen_first = 1;
        }
        if (st.requests != last_seen) {
            last_seen = st.requests;
            last_change = hk_th_now_ms();
        } else if (seen_first && !stall_shown && hk_th_now_ms() - last_change > 2 * STALL_MS) {
            print_stall(run, st.requests, o->jobs);
            print_threads();
            stall_shown = 1;
        }
        if (st.unique_ok >= o->jobs) {
            res.cpu_s = proc_cpu_s(pid);
            res.rss_mib = proc_hwm_mib(pid);
            done = 1;
            break;
        }
        if (hk_th_wait(&hookd, 0) != -1) {
            fprintf(stderr, "bench_throughput: hookd exited early, see %s\n", log);
            break;
        }
        hk_th_sleep_ms(5);
    }
    if (!done)
        fprintf(stderr, "bench_throughput: hookd did not deliver every job, see %s\n", log);
    int status = hk_th_stop(&hookd, 20000);
    hk_th_kafka_stop(&kafka);
    if (done && !hk_th_exited_ok(status))
        fprintf(stderr, "bench_throughput: hookd did not exit 0 on SIGTERM, see %s\n", log);

    sink_measure("hookd", o->jobs, &res); // leaves the /proc figures alone
    res.ok = res.ok && done;
    return res;
}

// Appends "<who> run <n>: ..." to buf when the run had duplicates, non-2xx
// answers or a stall. These runs still count: the medians absorb them, and the
// summary names them so nobody mistakes a stall for noise.
static void note_anomalies(char *buf, size_t size, const char *who, int run,
                           const run_result_t *res)
{
    if (!res->duplicates && !res->failed && res->max_gap_s * 1000.0 <= STALL_MS)
        return;
    size_t len = strlen(buf);
    snprintf(buf + len, size - len,
             "%s%s run %d: %llu duplicate deliveries, %llu non-2xx, longest gap %.2f s",
             len ? "; " : "", who, run + 1, (unsigned long long)res->duplicates,
             (unsigned long long)res->failed, res->max_gap_s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double *s = malloc((size_t)n * sizeof(*s));
    memcpy(s, v, (size_t)n * sizeof(*s));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
    free(s);
    return m;
}

static void print_runs(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        printf("%s%.0f", i ? " " : "", v[i]);
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_throughput [--jobs N (100..1000000, default 50000)]\n"
                    "                        [--runs R (1..50, default 5)]\n"
                    "                        [--threads T (1..64, default 2)]\n"
                    "                        [--transfers M per thread (1..1024, default 64)]\n"
                    "                        [--sink-threads S (1..64, default 8)]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench_opts_t o = {.jobs = 50000, .runs = 5, .threads = 2, .transfers = 64, .sink_threads = 8};
    for (int i = 1; i < argc; i++) {
        long v;
        const char *val = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(argv[i], "--jobs") == 0 && parse_int(val, 100, 1000000, &v) == 0)
            o.jobs = (size_t)v;
        else if (strcmp(argv[i], "--runs") == 0 && parse_int(val, 1, 50, &v) == 0)
            o.runs = (int)v;
        else if (strcmp(argv[i], "--threads") == 0 && parse_int(val, 1, 64, &v) == 0)
            o.threads = (int)v;
        else if (strcmp(argv[i], "--transfers") == 0 && parse_int(val, 1, 1024, &v) == 0)
            o.transfers = (int)v;
        else if (strcmp(argv[i], "--sink-threads") == 0 && parse_int(val, 1, 64, &v) == 0)
            o.sink_threads = (int)v;
        else
            usage();
        i++;
    }
    if (o.threads * o.transfers > 4096) {
        fprintf(stderr,
                "bench_throughput: threads x transfers must be at most 4096 "
                "(lanes.max_limit's bound), got %d\n",
                o.threads * o.transfers);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = o.sink_threads};
    sink = hk_sink_start(&so, err, sizeof(err));
    if (!sink) {
        fprintf(stderr, "bench_throughput: %s\n", err);
        return 1;
    }

    int in_flight = o.threads * o.transfers;
    printf("bench_throughput: %d runs of %zu jobs; %d x %d in flight; sink: %d threads, "
           "verifying signatures\n",
           o.runs, o.jobs, o.threads, o.transfers, o.sink_threads);
    double *base = calloc((size_t)o.runs, sizeof(double));
    double *rate = calloc((size_t)o.runs, sizeof(double));
    double *rss = calloc((size_t)o.runs, sizeof(double));
    double *cpu = calloc((size_t)o.runs, sizeof(double));
    double *pair = calloc((size_t)o.runs, sizeof(double));
    char anomalies[4096] = "";
    int failed = 0;
    for (int r = 0; r < o.runs && !failed; r++) {
        run_result_t b = run_baseline(&o, r);
        if (!b.ok) {
            failed = 1;
            break;
        }
        base[r] = b.rate;
        printf("  run %d/%d  baseline %8.0f req/s   (%zu in %.2f s, longest gap %.3f s)\n", r + 1,
               o.runs, b.rate, o.jobs, b.span_s, b.max_gap_s);
        note_anomalies(anomalies, sizeof(anomalies), "baseline", r, &b);
        fflush(stdout);

        run_result_t h = run_hookd(&o, r);
        if (!h.ok) {
            failed = 1;
            break;
        }
        rate[r] = h.rate;
        rss[r] = h.rss_mib;
        cpu[r] = h.cpu_s / ((double)o.jobs / 1000.0);
        pair[r] = h.rate / b.rate;
        printf("  run %d/%d  hookd    %8.0f jobs/s  (%zu in %.2f s, longest gap %.3f s), "
               "peak RSS %.1f MiB, CPU %.2f s (%.2f s before the first delivery)\n",
               r + 1, o.runs, h.rate, o.jobs, h.span_s, h.max_gap_s, h.rss_mib, h.cpu_s,
               h.cpu_first_s);
        note_anomalies(anomalies, sizeof(anomalies), "hookd", r, &h);
        fflush(stdout);
    }
    hk_sink_stop(sink);
    if (failed) {
        fprintf(stderr, "bench_throughput: a run failed; no summary\n");
        return 1;
    }

    double mb = median(base, o.runs), mh = median(rate, o.runs);
    printf("bench_throughput: %d runs, %zu jobs each\n", o.runs, o.jobs);
    printf("  baseline (curl multi, %d in flight): median %.0f req/s (runs: ", in_flight, mb);
    print_runs(base, o.runs);
    printf(")\n");
    printf("  hookd (%d threads x %d):              median %.0f jobs/s (runs: ", o.threads,
           o.transfers, mh);
    print_runs(rate, o.runs);
    printf(")   ratio %.2f (median of per-run ratios %.2f)\n", mh / mb, median(pair, o.runs));
    printf("  hookd peak RSS median %.1f MiB, CPU %.3f s per 1000 jobs (incl. start-up and join)\n",
           median(rss, o.runs), median(cpu, o.runs));
    printf("  anomalies (duplicate deliveries, non-2xx, gaps over %.1f s): %s\n", STALL_MS / 1000.0,
           anomalies[0] ? anomalies : "none");
    free(base);
    free(rate);
    free(rss);
    free(cpu);
    free(pair);
    curl_global_cleanup();
    return 0;
}
