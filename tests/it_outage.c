// Outages and failing receivers, end to end: a 503 outage that trips the breaker
// and recovers, Retry-After (seconds and HTTP date) as a lower bound, permanent
// 4xx, a 410 Gone that disables one URL until an operator re-enables it, and a
// flapping endpoint. Out-of-process mock Kafka, hookd as a child process, the
// real HTTP sink. Figures come from the sink's records (wall clock at_ms) and
// hookd's JSON log lines (wall clock "ts"), both CLOCK_REALTIME on this host.
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

// Clock slack for lower bounds: ms truncation on both sides plus the monotonic
// to wall conversion inside hookd.
#define SLACK_MS 50
// Requests already taken before a trip may still reach the sink just after the
// "to open" log line; later than this after it, a request is a real leak.
#define TRIP_GRACE_MS 250

static hk_sink_t *sink, *sink2;
static hk_th_proc_t kafka, hookd;
static char brokers[512];

static void setup(void)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 8};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    sink2 = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink2 != NULL, "sink2: %s", err);
    const char *topics[] = {"jobs:8", "jobs.dlq:2", "jobs.retry:8", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
    hookd.pid = 0;
}

// Runs after a failed assertion too: no child outlives its test.
static void teardown(void)
{
    hk_th_stop(&hookd, 20000); // no-op when it is not running
    hk_th_kafka_stop(&kafka);
    hk_sink_stop(sink2);
    hk_sink_stop(sink);
    hk_th_release_held();
}

// ---- helpers ------------------------------------------------------------------

static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hookd_start(char *const env[], const char *log)
{
    unlink(log);
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, log), 0);
}

// SIGTERM drains: hookd must exit 0.
static void hookd_stop(void)
{
    int status = hk_th_stop(&hookd, 20000);
    ck_assert_msg(hk_th_exited_ok(status), "hookd did not exit 0 after SIGTERM (status %d)",
                  status);
}

// Waits until the group gave hookd its partitions (the mock's join takes ~3 s).
static void hookd_wait_assigned(const char *log)
{
    ck_assert_msg(hk_th_wait_for_log(log, "\"partitions_assigned\"", 1, 30000),
                  "hookd never got partitions (see %s)", log);
}

// Produces every value (with a NULL key) and frees them.
static void produce(char **values, size_t n)
{
    size_t acked = hk_th_produce(brokers, "jobs", values, NULL, n);
    for (size_t i = 0; i < n; i++)
        free(values[i]);
    ck_assert_uint_eq(acked, n);
}

static char *job(const char *id, int port, const char *path)
{
    char *s = NULL;
    ck_assert(asprintf(&s,
                       "{\"id\":\"%s\",\"url\":\"http://127.0.0.1:%d%s\",\"body\":{\"id\":\"%s\"}}",
                       id, port, path, id) > 0);
    return s;
}

// "http://127.0.0.1:<port>" (held until teardown).
static char *endpoint_of(hk_sink_t *s)
{
    char *e = NULL;
    ck_assert(asprintf(&e, "http://127.0.0.1:%d", hk_sink_port(s)) > 0);
    return hk_th_hold_mem(e);
}

// Every request the sink recorded so far (held until teardown).
static size_t sink_requests(hk_sink_t *s, hk_sink_req_t **out)
{
    size_t n = hk_sink_reqs(s, out);
    hk_th_hold(HK_TH_HELD_REQS, *out, n);
    return n;
}

// Every dead letter so far (held until teardown).
static size_t dlq_records(hk_th_record_t **out)
{
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", out);
    hk_th_hold(HK_TH_HELD_RECS, *out, n);
    return n;
}

static int dlq_reached(void *arg)
{
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    return n >= *(size_t *)arg;
}

static const hk_th_record_t *dlq_find(const hk_th_record_t *recs, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        const char *h = hk_th_header(&recs[i], "hookd-job-id");
        if (h && strcmp(h, id) == 0)
            return &recs[i];
    }
    return NULL;
}

// Asserts the dead letter of `id`: class, attempts, status and error (substring).
static void check_dead_letter(const hk_th_record_t *recs, size_t n, const char *id, const char *cls,
                              const char *attempts, const char *status, const char *error)
{
    const hk_th_record_t *rec = dlq_find(recs, n, id);
    ck_assert_msg(rec != NULL, "no dead letter for job %s", id);
    const char *c = hk_th_header(rec, "hookd-error-class");
    const char *a = hk_th_header(rec, "hookd-attempts");
    const char *s = hk_th_header(rec, "hookd-http-status");
    const char *e = hk_th_header(rec, "hookd-error");
    ck_assert_msg(c && strcmp(c, cls) == 0, "%s: class %s, want %s", id, c ? c : "(none)", cls);
    ck_assert_msg(a && strcmp(a, attempts) == 0, "%s: hookd-attempts %s, want %s", id,
                  a ? a : "(none)", attempts);
    ck_assert_msg(s && strcmp(s, status) == 0, "%s: hookd-http-status %s, want %s", id,
                  s ? s : "(none)", status);
    ck_assert_msg(e && strstr(e, error), "%s: hookd-error \"%s\", want \"%s\"", id,
                  e ? e : "(none)", error);
}

// Requests the sink saw for `id`, and how many of them had path `path` (NULL: any).
static size_t requests_for(hk_sink_req_t *reqs, size_t n, const char *id, const char *path)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if ((!id || strcmp(reqs[i].webhook_id, id) == 0) &&
            (!path || strcmp(reqs[i].path, path) == 0))
            c++;
    return c;
}

// Distinct webhook-ids starting with `prefix` the sink has seen.
static size_t ids_seen(hk_sink_t *s, const char *prefix)
{
    hk_sink_req_t *reqs;
    size_t n = hk_sink_reqs(s, &reqs), distinct = 0;
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(reqs[i].webhook_id, prefix, plen) != 0)
            continue;
        size_t j = 0;
        while (j < i && strcmp(reqs[j].webhook_id, reqs[i].webhook_id) != 0)
            j++;
        distinct += j == i;
    }
    hk_sink_reqs_free(reqs, n);
    return distinct;
}

typedef struct seen_wait {
    hk_sink_t *sink;
    const char *prefix;
    size_t want;
} seen_wait_t;

static int seen_reached(void *arg)
{
    seen_wait_t *w = arg;
    return ids_seen(w->sink, w->prefix) >= w->want;
}

static int cmp_by_id_then_time(const void *a, const void *b)
{
    const hk_sink_req_t *x = *(hk_sink_req_t *const *)a, *y = *(hk_sink_req_t *const *)b;
    int c = strcmp(x->webhook_id, y->webhook_id);
    if (c)
        return c;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x < y ? -1 : x > y; // arrival order
}

// Pointers to the requests whose id starts with `prefix`, grouped by id, each
// group in arrival order. Caller frees the array.
static size_t by_id(hk_sink_req_t *reqs, size_t n, const char *prefix, hk_sink_req_t ***out)
{
    hk_sink_req_t **v = calloc(n ? n : 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(reqs[i].webhook_id, prefix, strlen(prefix)) == 0)
            v[k++] = &reqs[i];
    qsort(v, k, sizeof(*v), cmp_by_id_then_time);
    *out = v;
    return k;
}

typedef struct transition {
    int64_t at_ms; // wall clock of the log line
    char from[16];
    char to[16];
} transition_t;

// The breaker transitions hookd logged for `endpoint`, in log order (held until
// teardown).
static size_t breaker_log(const char *log, const char *endpoint, transition_t **out)
{
    FILE *f = fopen(log, "r");
    ck_assert_msg(f != NULL, "cannot open %s", log);
    transition_t *v = NULL;
    size_t n = 0, cap = 0, bad_ts = 0;
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) >= 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            continue;
        }
        const char *ev = json_string_value(json_object_get(j, "event"));
        const char *ep = json_string_value(json_object_get(j, "endpoint"));
        if (ev && ep && strcmp(ev, "breaker") == 0 && strcmp(ep, endpoint) == 0) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                v = realloc(v, cap * sizeof(*v));
            }
            transition_t *t = &v[n++];
            t->at_ms = hk_th_log_ts(json_string_value(json_object_get(j, "ts")));
            const char *from = json_string_value(json_object_get(j, "from"));
            const char *to = json_string_value(json_object_get(j, "to"));
            snprintf(t->from, sizeof(t->from), "%s", from ? from : "?");
            snprintf(t->to, sizeof(t->to), "%s", to ? to : "?");
            bad_ts += t->at_ms <= 0;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    *out = hk_th_hold_mem(v);
    ck_assert_msg(bad_ts == 0, "%zu breaker lines in %s without a usable ts", bad_ts, log);
    return n;
}

static int is(const transition_t *t, const char *from, const char *to)
{
    return (!from || strcmp(t->from, from) == 0) && strcmp(t->to, to) == 0;
}

// Requests to `path_prefix` with at_ms in [from, to).
static size_t requests_between(hk_sink_req_t *reqs, size_t n, const char *path_prefix, int64_t from,
                               int64_t to)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (reqs[i].at_ms >= from && reqs[i].at_ms < to &&
            strncmp(reqs[i].path, path_prefix, strlen(path_prefix)) == 0)
            c++;
    return c;
}

typedef struct cycle_stats {
    size_t trips;           // transitions to open
    size_t leaked_open;     // requests while open (after TRIP_GRACE_MS)
    size_t max_half_open;   // most requests in one half-open window
    int64_t min_open_slack; // min over trips of (actual open time - expected open time)
} cycle_stats_t;

// Checks each open period of a breaker against the sink's records: no request
// while open (once the in-flight ones have landed), at most `probes` requests
// while half open, and each open period at least as long as the breaker must
// stay open (open_ms from closed, doubled on each re-trip up to max_open_ms).
// Prints the transitions relative to t0_wall.
static cycle_stats_t check_breaker_cycles(const transition_t *tr, size_t ntr, hk_sink_req_t *reqs,
                                          size_t nreq, const char *path_prefix, int64_t open_ms,
                                          int64_t max_open_ms, int probes, int64_t t0_wall)
{
    cycle_stats_t cs = {.min_open_slack = INT64_MAX};
    int64_t dur = open_ms;
    for (size_t i = 0; i < ntr; i++) {
        printf("    %+7.3fs  %s -> %s\n", (double)(tr[i].at_ms - t0_wall) / 1000.0, tr[i].from,
               tr[i].to);
        if (!is(&tr[i], NULL, "open"))
            continue;
        cs.trips++;
        // The open period this trip starts: open_ms from closed, doubled from half open.
        if (strcmp(tr[i].from, "half_open") == 0)
            dur = dur > max_open_ms / 2 ? max_open_ms : dur * 2;
        else
            dur = open_ms;
        if (i + 1 >= ntr)
            continue; // still open when hookd stopped
        ck_assert_msg(is(&tr[i + 1], "open", "half_open"), "after ->open at %+.3fs came %s->%s",
                      (double)(tr[i].at_ms - t0_wall) / 1000.0, tr[i + 1].from, tr[i + 1].to);
        int64_t t_open = tr[i].at_ms, t_half = tr[i + 1].at_ms;
        // Up to the next transition. When that re-opens the breaker, nothing new
        // can start at its millisecond: requests stamped then are probes, so it
        // counts. When it closes, requests let through right after share it.
        int64_t t_next = INT64_MAX;
        if (i + 2 < ntr)
            t_next = tr[i + 2].at_ms + (is(&tr[i + 2], NULL, "open") ? 1 : 0);
        int64_t open_for = t_half - t_open;
        if (open_for - dur < cs.min_open_slack)
            cs.min_open_slack = open_for - dur;
        ck_assert_msg(open_for >= open_ms - SLACK_MS,
                      "breaker half-opened %lld ms after opening, open_ms is %lld",
                      (long long)open_for, (long long)open_ms);
        ck_assert_msg(open_for >= dur - SLACK_MS,
                      "breaker half-opened %lld ms after trip %zu, this open period is %lld ms",
                      (long long)open_for, cs.trips, (long long)dur);
        size_t in_open = requests_between(reqs, nreq, path_prefix, t_open + TRIP_GRACE_MS, t_half);
        size_t in_half = requests_between(reqs, nreq, path_prefix, t_half, t_next);
        printf("              open %lld ms (period %lld): %zu requests open, %zu half open",
               (long long)open_for, (long long)dur, in_open, in_half);
        for (size_t r = 0; r < nreq; r++)
            if (reqs[r].at_ms >= t_half && reqs[r].at_ms < t_next &&
                strncmp(reqs[r].path, path_prefix, strlen(path_prefix)) == 0)
                printf(" [+%.3fs %d]", (double)(reqs[r].at_ms - t0_wall) / 1000.0, reqs[r].status);
        printf("\n");
        cs.leaked_open += in_open;
        if (in_half > cs.max_half_open)
            cs.max_half_open = in_half;
        ck_assert_msg(in_open == 0, "%zu requests reached the sink while the breaker was open",
                      in_open);
        ck_assert_msg(in_half <= (size_t)probes,
                      "%zu requests in one half-open window, probes = %d", in_half, probes);
    }
    return cs;
}

// ---- admin API ------------------------------------------------------------------

static int admin_port(const char *log)
{
    int port = hk_th_admin_port(log);
    ck_assert_msg(port > 0, "no admin_listening line in %s", log);
    return port;
}

// One admin request; returns the HTTP status (0: no answer) and the body in *body
// (caller frees; may be NULL).
static long admin_call(int port, const char *method, const char *path, char **body)
{
    char url[2048];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    return hk_th_http(method, url, 10000, body);
}

// The disabled_urls of `endpoint` in GET /v1/lanes, as one JSON text (held).
static char *lane_disabled_urls(int port, const char *endpoint)
{
    char *body = NULL;
    long status = admin_call(port, "GET", "/v1/lanes", &body);
    hk_th_hold_mem(body);
    ck_assert_msg(status == 200, "GET /v1/lanes answered %ld", status);
    json_t *doc = json_loads(body ? body : "", 0, NULL);
    json_t *arr = json_object_get(doc, "lanes");
    int is_array = json_is_array(arr);
    char *out = NULL;
    size_t i;
    json_t *lane;
    json_array_foreach(arr, i, lane)
    {
        const char *ep = json_string_value(json_object_get(lane, "endpoint"));
        if (ep && strcmp(ep, endpoint) == 0)
            out = json_dumps(json_object_get(lane, "disabled_urls"), JSON_COMPACT);
    }
    json_decref(doc);
    ck_assert_msg(is_array, "/v1/lanes has no \"lanes\" array: %s", body ? body : "");
    return hk_th_hold_mem(out ? out : strdup("(no lane)"));
}

// ---- 1. outage --------------------------------------------------------------------

#define OUT_BATCHES    10
#define OUT_PER_BATCH  30
#define OUT_JOBS       (OUT_BATCHES * OUT_PER_BATCH)
#define SIDE_PER_BATCH 5
#define OUT_OPEN_MS    2000
#define OUT_MAX_OPEN   3000
#define OUT_PROBES     3

// 300 jobs arrive over 10 s while their endpoint answers 503, then it recovers:
// the breaker opens, half-opens with at most `probes` requests, re-opens while
// the outage lasts and closes after it; nothing is lost or repeated, no attempt
// comes earlier than the schedule says, and another endpoint is not held up.
START_TEST(test_outage_503_then_recovery_delivers_everything_and_breaker_cycles)
{
    static const int64_t schedule[] = {500, 1000, 2000, 4000};
    const char *log = "it_outage_503.log";
    char *env[] = {"HOOKD_BREAKER_OPEN_MS=2000",  "HOOKD_BREAKER_MAX_OPEN_MS=3000",
                   "HOOKD_BREAKER_PROBES=3",      "HOOKD_RETRY_SCHEDULE=500ms,1s,2s,4s",
                   "HOOKD_RETRY_MAX_ATTEMPTS=30", NULL};
    hookd_start(env, log);
    hookd_wait_assigned(log);

    int port = hk_sink_port(sink), port2 = hk_sink_port(sink2);
    int64_t t0_wall = wall_now_ms(), t0 = hk_th_now_ms();
    int64_t down_until = t0_wall + 10000;
    char path[128];
    snprintf(path, sizeof(path), "/down-until/%lld", (long long)down_until);
    for (int b = 0; b < OUT_BATCHES; b++) {
        int64_t wait = t0 + (int64_t)b * 1000 - hk_th_now_ms();
        if (wait > 0)
            hk_th_sleep_ms((int)wait);
        char *values[OUT_PER_BATCH + SIDE_PER_BATCH];
        char id[64];
        for (int i = 0; i < OUT_PER_BATCH; i++) {
            snprintf(id, sizeof(id), "out-%03d", b * OUT_PER_BATCH + i);
            values[i] = job(id, port, path);
        }
        for (int i = 0; i < SIDE_PER_BATCH; i++) {
            snprintf(id, sizeof(id), "side-%02d", b * SIDE_PER_BATCH + i);
            values[OUT_PER_BATCH + i] = job(id, port2, "/ok");
        }
        produce(values, OUT_PER_BATCH + SIDE_PER_BATCH);
    }
    ck_assert_msg(hk_th_wait_unique_ok(sink, OUT_JOBS, 60000), "not every job was delivered");
    ck_assert_msg(hk_th_wait_unique_ok(sink2, OUT_BATCHES * SIDE_PER_BATCH, 10000),
                  "side jobs not delivered");
    int64_t done_wall = wall_now_ms();
    hk_th_sleep_ms(300); // a repeat would show up now
    hookd_stop();

    hk_sink_stats_t st, st2;
    hk_sink_stats(sink, &st);
    hk_sink_stats(sink2, &st2);
    hk_th_record_t *recs;
    size_t ndlq = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, ndlq);

    char *ep = endpoint_of(sink), *ep2 = endpoint_of(sink2);
    transition_t *tr, *tr2;
    size_t ntr = breaker_log(log, ep, &tr), ntr2 = breaker_log(log, ep2, &tr2);
    hk_sink_req_t *reqs;
    size_t nreq = sink_requests(sink, &reqs);

    printf("it_outage 503: %llu requests (%llu answered 503, %llu 2xx), %llu delivered, "
           "duplicates %llu, dead letters %zu, all delivered %.1fs after the outage began "
           "(outage 10.0s)\n",
           (unsigned long long)st.requests, (unsigned long long)st.failed,
           (unsigned long long)st.ok, (unsigned long long)st.unique_ok,
           (unsigned long long)st.duplicate_ok, ndlq, (double)(done_wall - t0_wall) / 1000.0);
    printf("  breaker %s (t=0 when the outage began):\n", ep);
    cycle_stats_t cs = check_breaker_cycles(tr, ntr, reqs, nreq, "/down-until", OUT_OPEN_MS,
                                            OUT_MAX_OPEN, OUT_PROBES, t0_wall);

    // Attempts of each job: gaps at least the schedule's entry (deferrals by the
    // open breaker can only make them longer).
    hk_sink_req_t **v;
    size_t nv = by_id(reqs, nreq, "out-", &v);
    hk_th_hold_mem(v);
    int max_attempts = 0, violations = 0;
    int64_t min_slack = INT64_MAX;
    char worst[400] = "";
    for (size_t i = 0; i < nv;) {
        size_t j = i + 1;
        while (j < nv && strcmp(v[j]->webhook_id, v[i]->webhook_id) == 0)
            j++;
        if ((int)(j - i) > max_attempts)
            max_attempts = (int)(j - i);
        for (size_t k = i + 1; k < j; k++) {
            size_t failures = k - i; // attempts before this one
            int64_t want = schedule[failures < 4 ? failures - 1 : 3];
            int64_t gap = v[k]->at_ms - v[k - 1]->at_ms;
            if (gap - want < min_slack)
                min_slack = gap - want;
            if (gap < want - SLACK_MS) {
                if (!violations++)
                    snprintf(worst, sizeof(worst), "%s: attempt %zu came %lld ms after attempt %zu",
                             v[k]->webhook_id, failures + 1, (long long)gap, failures);
            }
        }
        i = j;
    }
    printf("  attempts per job: max %d; smallest gap minus schedule entry %lld ms; "
           "%d gaps shorter than the schedule\n",
           max_attempts, (long long)min_slack, violations);
    printf("  trips %zu, most requests in one half-open window %zu (probes %d)\n", cs.trips,
           cs.max_half_open, OUT_PROBES);
    printf("  other endpoint %s: %llu requests, %llu delivered, %zu breaker transitions\n", ep2,
           (unsigned long long)st2.requests, (unsigned long long)st2.unique_ok, ntr2);

    ck_assert_uint_eq(st.unique_ok, OUT_JOBS);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(ndlq, 0);
    ck_assert_msg(st.failed > 0, "the outage produced no 503 at all");

    // closed -> open, then open -> half_open, then half_open -> closed, in that order.
    size_t i = 0;
    while (i < ntr && !is(&tr[i], "closed", "open"))
        i++;
    ck_assert_msg(i < ntr, "the breaker never opened during a 10 s outage");
    while (i < ntr && !is(&tr[i], "open", "half_open"))
        i++;
    ck_assert_msg(i < ntr, "the breaker never half-opened");
    while (i < ntr && !is(&tr[i], "half_open", "closed"))
        i++;
    ck_assert_msg(i < ntr, "the breaker never closed after the outage");
    ck_assert_msg(is(&tr[ntr - 1], "half_open", "closed"), "last transition %s -> %s",
                  tr[ntr - 1].from, tr[ntr - 1].to);
    ck_assert_msg(violations == 0, "%d attempts came sooner than the schedule, e.g. %s", violations,
                  worst);

    // The healthy endpoint: every job once, its breaker untouched.
    ck_assert_uint_eq(st2.unique_ok, OUT_BATCHES * SIDE_PER_BATCH);
    ck_assert_uint_eq(st2.requests, OUT_BATCHES * SIDE_PER_BATCH);
    ck_assert_uint_eq(ntr2, 0);
}
END_TEST

// ---- 2. Retry-After -----------------------------------------------------------------

#define RA_JOBS 20

typedef struct ra_figures {
    size_t gaps;       // second-or-later attempts that followed a 429
    size_t violations; // of them, too early
    int64_t min_gap;   // smallest (next attempt - 429'd attempt), ms
    int64_t max_gap;
    char first[400]; // the first violation, in words
} ra_figures_t;

// Every attempt that follows a 429 of the same job must come no earlier than
// `not_before(prev)`: prev->at_ms + seconds, or the date.
static ra_figures_t ra_check(hk_sink_req_t *reqs, size_t n, const char *prefix, int64_t delta_ms,
                             int64_t date_ms)
{
    ra_figures_t f = {.min_gap = INT64_MAX, .max_gap = INT64_MIN};
    hk_sink_req_t **v;
    size_t nv = by_id(reqs, n, prefix, &v);
    for (size_t k = 1; k < nv; k++) {
        hk_sink_req_t *prev = v[k - 1], *cur = v[k];
        if (strcmp(prev->webhook_id, cur->webhook_id) != 0 || prev->status != 429)
            continue;
        int64_t gap = cur->at_ms - prev->at_ms;
        int64_t not_before = date_ms ? date_ms : prev->at_ms + delta_ms;
        f.gaps++;
        if (gap < f.min_gap)
            f.min_gap = gap;
        if (gap > f.max_gap)
            f.max_gap = gap;
        if (cur->at_ms < not_before - SLACK_MS && !f.violations++)
            snprintf(f.first, sizeof(f.first),
                     "%s: next attempt %lld ms after the 429, %lld ms before it was allowed",
                     cur->webhook_id, (long long)gap, (long long)(not_before - cur->at_ms));
    }
    free(v);
    return f;
}

// A 429's Retry-After (delta seconds, then an IMF-fixdate) holds the next attempt
// back although the schedule (100 ms) would retry much sooner.
START_TEST(test_retry_after_seconds_and_date_are_lower_bounds)
{
    const char *log = "it_outage_retry_after.log";
    // Debug level logs each retry_scheduled with its delay_ms.
    char *env[] = {"HOOKD_RETRY_SCHEDULE=100ms",
                   "HOOKD_RETRY_MAX_ATTEMPTS=10",
                   "HOOKD_LOG_LEVEL=debug",
                   "HOOKD_BREAKER_CONSECUTIVE_FAILURES=1000",
                   "HOOKD_BREAKER_MIN_CALLS=1000",
                   "HOOKD_BREAKER_WINDOW=1000",
                   NULL};
    hookd_start(env, log);
    hookd_wait_assigned(log);
    int port = hk_sink_port(sink);
    char *values[RA_JOBS];
    char id[64], path[64];

    // Phase 1: "Retry-After: 2".
    ck_assert_int_eq(hk_sink_set_rule(sink, "/ra", 429, 0, "2"), 0);
    for (int i = 0; i < RA_JOBS; i++) {
        snprintf(id, sizeof(id), "ra-%02d", i);
        snprintf(path, sizeof(path), "/ra/%d", i);
        values[i] = job(id, port, path);
    }
    produce(values, RA_JOBS);
    seen_wait_t sw = {sink, "ra-", RA_JOBS};
    ck_assert_msg(hk_th_wait_for(seen_reached, &sw, 30000), "not every ra- job was attempted");
    ck_assert_int_eq(hk_sink_set_rule(sink, "/ra", 0, 0, NULL), 0);
    int ok1 = hk_th_wait_unique_ok(sink, RA_JOBS, 30000);

    // Phase 2: an HTTP date 4-5 s ahead (whole seconds, as the header carries them),
    // so the first attempts come well before it even on a slow machine.
    time_t date = (time_t)(wall_now_ms() / 1000 + 5);
    int64_t date_ms = (int64_t)date * 1000;
    struct tm tm;
    gmtime_r(&date, &tm);
    char http_date[64];
    strftime(http_date, sizeof(http_date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/rd", 429, 0, http_date), 0);
    for (int i = 0; i < RA_JOBS; i++) {
        snprintf(id, sizeof(id), "rd-%02d", i);
        snprintf(path, sizeof(path), "/rd/%d", i);
        values[i] = job(id, port, path);
    }
    produce(values, RA_JOBS);
    sw.prefix = "rd-";
    ck_assert_msg(hk_th_wait_for(seen_reached, &sw, 30000), "not every rd- job was attempted");
    int64_t all_seen_wall = wall_now_ms();
    ck_assert_int_eq(hk_sink_set_rule(sink, "/rd", 0, 0, NULL), 0);
    int ok2 = hk_th_wait_unique_ok(sink, 2 * RA_JOBS, 30000);
    hk_th_sleep_ms(300);
    hookd_stop();

    hk_sink_req_t *reqs;
    size_t nreq = sink_requests(sink, &reqs);
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    hk_th_record_t *recs;
    size_t ndlq = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, ndlq);

    ra_figures_t f1 = ra_check(reqs, nreq, "ra-", 2000, 0);
    ra_figures_t f2 = ra_check(reqs, nreq, "rd-", 0, date_ms);
    // For phase 2 to mean anything, a first attempt (the one whose 429 named the
    // date) must come well before the date. Not every first attempt: a 429 holds
    // the whole lane until its Retry-After (DESIGN section 7), so jobs not yet sent
    // when the first 429 came back wait for the date too, which is right.
    int64_t earliest_first = INT64_MAX;
    for (size_t i = 0; i < nreq; i++) {
        if (strncmp(reqs[i].webhook_id, "rd-", 3) != 0)
            continue;
        if (reqs[i].at_ms < earliest_first)
            earliest_first = reqs[i].at_ms;
    }
    printf("it_outage Retry-After: %llu requests, %llu delivered, dead letters %zu\n",
           (unsigned long long)st.requests, (unsigned long long)st.unique_ok, ndlq);
    printf("  \"Retry-After: 2\": %zu retries after a 429, gap min %lld ms max %lld ms "
           "(want >= %d), %zu too early%s%s\n",
           f1.gaps, (long long)f1.min_gap, (long long)f1.max_gap, 2000 - SLACK_MS, f1.violations,
           f1.violations ? ": " : "", f1.first);
    printf("  \"Retry-After: %s\": date is %lld ms after the first attempt (all seen %lld ms "
           "before it); %zu retries, gap min %lld ms max %lld ms, %zu before the date%s%s\n",
           http_date, (long long)(date_ms - earliest_first), (long long)(date_ms - all_seen_wall),
           f2.gaps, (long long)f2.min_gap, (long long)f2.max_gap, f2.violations,
           f2.violations ? ": " : "", f2.first);

    ck_assert_msg(ok1 && ok2, "not every job was delivered after the rules were removed");
    ck_assert_uint_eq(st.unique_ok, 2 * RA_JOBS);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(ndlq, 0);
    ck_assert_uint_ge(f1.gaps, RA_JOBS);
    ck_assert_uint_ge(f2.gaps, RA_JOBS);
    ck_assert_msg(date_ms - earliest_first >= 1000,
                  "the first attempt came too late for the date to matter (%lld ms before it)",
                  (long long)(date_ms - earliest_first));
    ck_assert_msg(f1.violations == 0, "Retry-After: 2 not honoured: %zu retries too early, e.g. %s",
                  f1.violations, f1.first);
    ck_assert_msg(f2.violations == 0,
                  "Retry-After: <HTTP date> not honoured: %zu retries before the date, e.g. %s",
                  f2.violations, f2.first);
}
END_TEST

// ---- 3. permanent 4xx ------------------------------------------------------------------

#define PERM_EACH 10

// 400 and 422 are the request's fault: dead-lettered after one attempt, and they
// say nothing about the endpoint's health (its breaker stays closed).
START_TEST(test_400_and_422_are_dead_lettered_after_one_attempt)
{
    const char *log = "it_outage_permanent.log";
    int port = hk_sink_port(sink);
    char *values[2 * PERM_EACH];
    char id[64], path[64];
    for (int i = 0; i < 2 * PERM_EACH; i++) {
        int code = i < PERM_EACH ? 400 : 422;
        snprintf(id, sizeof(id), "p%d-%02d", code, i);
        snprintf(path, sizeof(path), "/status/%d/%d", code, i);
        values[i] = job(id, port, path);
    }
    produce(values, 2 * PERM_EACH);
    char *env[] = {"HOOKD_RETRY_SCHEDULE=100ms", "HOOKD_RETRY_MAX_ATTEMPTS=10", NULL};
    hookd_start(env, log);
    size_t want = 2 * PERM_EACH;
    ck_assert_msg(hk_th_wait_for(dlq_reached, &want, 60000), "dead letters missing");
    hk_th_sleep_ms(1000); // a retry (100 ms schedule) would show up by now
    hookd_stop();

    hk_th_record_t *recs;
    size_t nrec = dlq_records(&recs);
    hk_sink_req_t *reqs;
    size_t nreq = sink_requests(sink, &reqs);
    char *ep = endpoint_of(sink);
    transition_t *tr;
    size_t ntr = breaker_log(log, ep, &tr);
    printf("it_outage permanent: %zu jobs, %zu requests, %zu dead letters, %zu breaker "
           "transitions\n",
           (size_t)(2 * PERM_EACH), nreq, nrec, ntr);

    ck_assert_uint_eq(nrec, 2 * PERM_EACH);
    ck_assert_uint_eq(nreq, 2 * PERM_EACH);
    for (int i = 0; i < 2 * PERM_EACH; i++) {
        int code = i < PERM_EACH ? 400 : 422;
        char status[8], error[16];
        snprintf(id, sizeof(id), "p%d-%02d", code, i);
        snprintf(status, sizeof(status), "%d", code);
        snprintf(error, sizeof(error), "HTTP %d", code);
        check_dead_letter(recs, nrec, id, "permanent", "1", status, error);
        ck_assert_msg(requests_for(reqs, nreq, id, NULL) == 1, "%s: %zu requests, want 1", id,
                      requests_for(reqs, nreq, id, NULL));
    }
    ck_assert_msg(ntr == 0, "4xx answers moved the breaker (%s -> %s)", ntr ? tr[0].from : "",
                  ntr ? tr[0].to : "");
}
END_TEST

// ---- 4. 410 Gone -------------------------------------------------------------------

// A 410 disables the URL that answered it, not its host: later jobs to it are
// dead-lettered as gone without a request, other URLs of the host still work,
// and an operator's enable lets the URL be tried again.
START_TEST(test_410_disables_that_url_and_later_jobs_are_gone_without_a_request)
{
    const char *log = "it_outage_gone.log";
    int port = hk_sink_port(sink);
    char *ep = endpoint_of(sink);
    char url[256];
    snprintf(url, sizeof(url), "%s/status/410", ep);
    // /v1/lanes names disabled URLs in full only with log.full_urls (a path can
    // carry a receiver's token); this test tells one URL from another by path.
    char *env[] = {"HOOKD_RETRY_SCHEDULE=100ms", "HOOKD_LOG_FULL_URLS=true", NULL};
    hookd_start(env, log);

    char *first[] = {job("gone-1", port, "/status/410")};
    produce(first, 1);
    size_t want = 1;
    ck_assert_msg(hk_th_wait_for(dlq_reached, &want, 60000), "gone-1 not dead-lettered");
    int aport = admin_port(log);
    char *disabled_before = lane_disabled_urls(aport, ep);

    char *more[] = {job("gone-2", port, "/status/410"), job("gone-3", port, "/status/410"),
                    job("gone-4", port, "/status/410"), job("ok-1", port, "/ok"),
                    job("ok-2", port, "/ok"),           job("ok-3", port, "/ok/other")};
    produce(more, 6);
    want = 4;
    ck_assert_msg(hk_th_wait_for(dlq_reached, &want, 30000), "gone-2..4 not dead-lettered");
    ck_assert_msg(hk_th_wait_unique_ok(sink, 3, 30000), "jobs to /ok not delivered");
    size_t gone_requests = 0;
    {
        hk_sink_req_t *reqs;
        size_t n = hk_sink_reqs(sink, &reqs);
        gone_requests = requests_for(reqs, n, NULL, "/status/410");
        hk_sink_reqs_free(reqs, n);
    }

    // Re-enable that URL (URL-encoded in the path), then a new job reaches the sink.
    CURL *c = curl_easy_init();
    char *enc = curl_easy_escape(c, url, 0);
    char apath[512];
    snprintf(apath, sizeof(apath), "/v1/endpoints/%s/enable", enc);
    curl_free(enc);
    curl_easy_cleanup(c);
    char *answer = NULL;
    long enable_status = admin_call(aport, "POST", apath, &answer);
    hk_th_hold_mem(answer);
    char *disabled_after = lane_disabled_urls(aport, ep);
    char *last[] = {job("gone-5", port, "/status/410")};
    produce(last, 1);
    want = 5;
    int dlq5 = hk_th_wait_for(dlq_reached, &want, 30000);
    hk_th_sleep_ms(300);
    hookd_stop();

    hk_th_record_t *recs;
    size_t nrec = dlq_records(&recs);
    hk_sink_req_t *reqs;
    size_t nreq = sink_requests(sink, &reqs);
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    printf("it_outage gone: requests to /status/410 after 4 jobs: %zu; disabled_urls %s; "
           "enable -> %ld %s; disabled_urls then %s; after gone-5: %zu requests to /status/410, "
           "%zu dead letters, /ok delivered %llu\n",
           gone_requests, disabled_before, enable_status, answer ? answer : "", disabled_after,
           requests_for(reqs, nreq, NULL, "/status/410"), nrec, (unsigned long long)st.unique_ok);

    check_dead_letter(recs, nrec, "gone-1", "gone", "1", "410", "HTTP 410");
    for (int i = 2; i <= 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "gone-%d", i);
        check_dead_letter(recs, nrec, id, "gone", "0", "0",
                          "URL disabled after 410 Gone (or by an operator)");
        ck_assert_msg(requests_for(reqs, nreq, id, NULL) == 0, "%s reached the sink", id);
    }
    ck_assert_uint_eq(gone_requests, 1);
    ck_assert_msg(strstr(disabled_before, "/status/410") != NULL,
                  "/v1/lanes does not list the disabled URL: %s", disabled_before);
    ck_assert_uint_eq(st.unique_ok, 3);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "ok-1"), 1);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "ok-2"), 1);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "ok-3"), 1);

    ck_assert_msg(enable_status == 200, "enable answered %ld: %s", enable_status,
                  answer ? answer : "");
    ck_assert_msg(strstr(disabled_after, "/status/410") == NULL,
                  "URL still disabled after enable: %s", disabled_after);
    ck_assert_msg(dlq5, "gone-5 not dead-lettered");
    ck_assert_msg(requests_for(reqs, nreq, "gone-5", "/status/410") == 1,
                  "gone-5 did not reach the sink after the URL was re-enabled");
    check_dead_letter(recs, nrec, "gone-5", "gone", "1", "410", "HTTP 410");
    ck_assert_uint_eq(nrec, 5);
}
END_TEST

// ---- 5. flapping ---------------------------------------------------------------------

#define FLAP_JOBS     200
#define FLAP_OPEN_MS  500
#define FLAP_MAX_OPEN 1000

// An endpoint that alternates 500 and 200 trips the breaker on its failure rate
// again and again: every job still gets through, and the breaker never lets
// probes through sooner than its open time.
START_TEST(test_flapping_endpoint_loses_nothing_and_breaker_respects_open_time)
{
    const char *log = "it_outage_flap.log";
    int port = hk_sink_port(sink);
    char *values[FLAP_JOBS];
    char id[64];
    for (int i = 0; i < FLAP_JOBS; i++) {
        snprintf(id, sizeof(id), "flap-%03d", i);
        values[i] = job(id, port, "/flap");
    }
    produce(values, FLAP_JOBS);
    // One probe: with strict alternation, three probes in a row can never all
    // succeed. The 50% failure rate over 100 calls trips the breaker; runs of
    // failures (responses of one thread arrive in clusters) are left out so each
    // closed period is long enough to move the backlog.
    char *env[] = {"HOOKD_RETRY_SCHEDULE=50ms,100ms,200ms",
                   "HOOKD_RETRY_MAX_ATTEMPTS=20",
                   "HOOKD_BREAKER_OPEN_MS=500",
                   "HOOKD_BREAKER_MAX_OPEN_MS=1000",
                   "HOOKD_BREAKER_PROBES=1",
                   "HOOKD_BREAKER_WINDOW=100",
                   "HOOKD_BREAKER_MIN_CALLS=100",
                   "HOOKD_BREAKER_CONSECUTIVE_FAILURES=1000",
                   NULL};
    int64_t t0_wall = wall_now_ms();
    hookd_start(env, log);
    int all = hk_th_wait_unique_ok(sink, FLAP_JOBS, 60000);
    int64_t done_wall = wall_now_ms();
    hk_th_sleep_ms(300);
    hookd_stop();

    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    hk_th_record_t *recs;
    size_t ndlq = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, ndlq);
    hk_sink_req_t *reqs;
    size_t nreq = sink_requests(sink, &reqs);
    char *ep = endpoint_of(sink);
    transition_t *tr;
    size_t ntr = breaker_log(log, ep, &tr);
    printf("it_outage flap: %llu requests (%llu answered 500), %llu delivered in %.1fs incl. "
           "join, duplicates %llu, dead letters %zu\n",
           (unsigned long long)st.requests, (unsigned long long)st.failed,
           (unsigned long long)st.unique_ok, (double)(done_wall - t0_wall) / 1000.0,
           (unsigned long long)st.duplicate_ok, ndlq);
    printf("  breaker %s (t=0 when hookd started):\n", ep);
    cycle_stats_t cs =
        check_breaker_cycles(tr, ntr, reqs, nreq, "/flap", FLAP_OPEN_MS, FLAP_MAX_OPEN, 1, t0_wall);
    printf("  trips %zu; open periods exceed their length by at least %lld ms\n", cs.trips,
           (long long)cs.min_open_slack);

    ck_assert_msg(all, "only %llu of %d jobs delivered", (unsigned long long)st.unique_ok,
                  FLAP_JOBS);
    ck_assert_uint_eq(st.unique_ok, FLAP_JOBS);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(ndlq, 0);
    ck_assert_msg(cs.trips >= 1, "the breaker never opened on a 50%% failure rate");
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_outage");
    TCase *tc = tcase_create("outage");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_outage_503_then_recovery_delivers_everything_and_breaker_cycles);
    tcase_add_test(tc, test_retry_after_seconds_and_date_are_lower_bounds);
    tcase_add_test(tc, test_400_and_422_are_dead_lettered_after_one_attempt);
    tcase_add_test(tc, test_410_disables_that_url_and_later_jobs_are_gone_without_a_request);
    tcase_add_test(tc, test_flapping_endpoint_loses_nothing_and_breaker_respects_open_time);
    suite_add_tcase(s, tc);
    return s;
}
