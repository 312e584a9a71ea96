// Ordering by key end to end (dispatch.ordering = key): the jobs of one ordering
// key reach the receiver one after another in offset order, retries included, while
// different keys run in parallel; a control run without ordering shows the checks
// can fail; a head that keeps failing is dead-lettered and its key moves on.
// Out-of-process mock Kafka, hookd as a child process, the real HTTP sink. Times
// are the sink's wall clock at_ms (when a request had fully arrived); the sink
// records a request before it answers it, so record order is also "arrived after
// the previous answer was decided". Logs: it_ordering_*.log in the working dir.
#include <check.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

// The keyed run: KEYS keys of SEQS jobs each, every attempt failing with 10%.
#define KEYS           100
#define SEQS           100
#define FAIL_PCT       10
#define RETRY_MS       20
#define KEYED_ATTEMPTS 20
// Keys waiting out a retry at once, on average, at the least (see the test).
#define KEYED_MIN_WAITING 3
// The control run without ordering.
#define CTRL_KEYS 10
#define CTRL_SEQS 50
#define CTRL_SLOW 20
// The head-of-line run.
#define HOL_FOLLOWERS 5
#define HOL_ATTEMPTS  3
#define HOL_RETRY_MS  1000
#define HOL_STR_(x)   #x
#define HOL_STR(x)    HOL_STR_(x)

static hk_sink_t *sink;
static hk_th_proc_t kafka, hookd;
static char brokers[512];

static void setup(void)
{
    hookd = (hk_th_proc_t){.pid = 0, .stdin_fd = -1};
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 16};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    const char *topics[] = {"jobs:8", "jobs.dlq:2", "jobs.retry:8", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
}

// Runs after a failed assertion too: no child outlives its test.
static void teardown(void)
{
    hk_th_stop(&hookd, 20000); // no-op when it is not running
    hk_th_kafka_stop(&kafka);
    hk_sink_stop(sink);
    sink = NULL;
    hk_th_release_held();
}

// ---- helpers ------------------------------------------------------------------

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

static char **strs_new(size_t n)
{
    char **v = calloc(n, sizeof(*v));
    ck_assert_ptr_nonnull(v);
    return hk_th_hold(HK_TH_HELD_STRS, v, n);
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(rc, 0);
    return s;
}

// The jobs of `keys` keys with `seqs` sequence numbers each, interleaved (seq 0 of
// every key, then seq 1, ...), so each key's jobs are in sequence order in its
// partition. The Kafka key is the ordering key, which puts a key in one partition.
static size_t produce_keyed(size_t keys, size_t seqs, const char *path)
{
    size_t n = keys * seqs;
    char **values = strs_new(n), **kkeys = strs_new(n);
    int port = hk_sink_port(sink);
    for (size_t s = 0; s < seqs; s++) {
        for (size_t k = 0; k < keys; k++) {
            size_t i = s * keys + k;
            values[i] = str_printf("{\"id\":\"k%zu-s%zu\",\"ordering_key\":\"key-%zu\","
                                   "\"url\":\"http://127.0.0.1:%d%s\","
                                   "\"body\":{\"key\":%zu,\"seq\":%zu}}",
                                   k, s, k, port, path, k, s);
            kkeys[i] = str_printf("key-%zu", k);
        }
    }
    return hk_th_produce(brokers, "jobs", values, kkeys, n);
}

static int dlq_reached(void *arg)
{
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    return n >= *(size_t *)arg;
}

// Every request the sink recorded so far, in record order (held until teardown).
static size_t sink_requests(hk_sink_req_t **out)
{
    size_t n = hk_sink_reqs(sink, out);
    hk_th_hold(HK_TH_HELD_REQS, *out, n);
    return n;
}

// Key and sequence number of a keyed request, from its id "k<K>-s<S>", checked
// against its body {"key":K,"seq":S}. 0 ok, -1 when it is not a keyed job.
static int keyed_req(const hk_sink_req_t *r, int *key, int *seq)
{
    char tail;
    if (sscanf(r->webhook_id, "k%d-s%d%c", key, seq, &tail) != 2)
        return -1;
    json_t *body = json_loads(r->body, 0, NULL);
    json_t *bk = json_object_get(body, "key"), *bs = json_object_get(body, "seq");
    int same = json_is_integer(bk) && json_is_integer(bs) && json_integer_value(bk) == *key &&
               json_integer_value(bs) == *seq;
    json_decref(body);
    ck_assert_msg(same, "request %s carries body %s", r->webhook_id, r->body);
    return 0;
}

static int is_2xx(const hk_sink_req_t *r)
{
    return r->status >= 200 && r->status <= 299;
}

// Per (key, seq) of a keyed run: where its first request and its 2xx are among
// the sink's records, and when they arrived. -1 = none.
typedef struct seq_seen {
    long first_idx, ok_idx;
    int64_t first_at, ok_at;
} seq_seen_t;

// Indexes the keyed requests (held until teardown); asserts every request is one
// of keys x seqs.
static seq_seen_t *index_keyed(const hk_sink_req_t *reqs, size_t n, int keys, int seqs)
{
    seq_seen_t *seen = calloc((size_t)keys * (size_t)seqs, sizeof(*seen));
    ck_assert_ptr_nonnull(seen);
    hk_th_hold(HK_TH_HELD_MEM, seen, 0);
    for (size_t i = 0; i < (size_t)keys * (size_t)seqs; i++)
        seen[i] = (seq_seen_t){-1, -1, -1, -1};
    for (size_t i = 0; i < n; i++) {
        int k, s;
        ck_assert_msg(keyed_req(&reqs[i], &k, &s) == 0, "unexpected request %s",
                      reqs[i].webhook_id);
        ck_assert_msg(k >= 0 && k < keys && s >= 0 && s < seqs, "unexpected request %s",
                      reqs[i].webhook_id);
        seq_seen_t *e = &seen[k * seqs + s];
        if (e->first_idx < 0) {
            e->first_idx = (long)i;
            e->first_at = reqs[i].at_ms;
        }
        if (is_2xx(&reqs[i]) && e->ok_idx < 0) {
            e->ok_idx = (long)i;
            e->ok_at = reqs[i].at_ms;
        }
    }
    return seen;
}

// The in-flight check: pairs (key, S) where the first request for S+1 arrived
// before the 2xx answer to S was given (its arrival plus `answer_ms`, how long the
// sink holds it). With one job per key at a time there are none. The first one
// found goes to `example` (may be NULL).
static size_t overlapping_pairs(const seq_seen_t *seen, int keys, int seqs, int answer_ms,
                                char *example, size_t example_size)
{
    size_t bad = 0;
    if (example != NULL)
        example[0] = '\0';
    for (int k = 0; k < keys; k++) {
        for (int s = 0; s + 1 < seqs; s++) {
            const seq_seen_t *a = &seen[k * seqs + s], *b = &seen[k * seqs + s + 1];
            if (a->ok_at < 0 || b->first_at < 0 || b->first_at >= a->ok_at + answer_ms)
                continue;
            if (bad++ == 0 && example != NULL)
                snprintf(example, example_size,
                         "k%d-s%d arrived at %lld, %lld ms before the answer to k%d-s%d", k, s + 1,
                         (long long)b->first_at, (long long)(a->ok_at + answer_ms - b->first_at), k,
                         s);
        }
    }
    return bad;
}

// Most requests of one key that arrived within `answer_ms` of each other, i.e.
// were held by the sink at the same time.
static int max_in_flight_per_key(const hk_sink_req_t *reqs, size_t n, int keys, int answer_ms)
{
    int best = 0;
    int64_t *at = calloc(n ? n : 1, sizeof(*at));
    ck_assert_ptr_nonnull(at);
    hk_th_hold(HK_TH_HELD_MEM, at, 0);
    for (int k = 0; k < keys; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            int rk, rs;
            if (keyed_req(&reqs[i], &rk, &rs) == 0 && rk == k)
                at[m++] = reqs[i].at_ms;
        }
        // Arrival times are nearly sorted already; insertion sort.
        for (size_t i = 1; i < m; i++) {
            int64_t v = at[i];
            size_t j = i;
            for (; j > 0 && at[j - 1] > v; j--)
                at[j] = at[j - 1];
            at[j] = v;
        }
        for (size_t lo = 0, hi = 0; hi < m; hi++) {
            while (at[hi] - at[lo] >= answer_ms)
                lo++;
            if ((int)(hi - lo + 1) > best)
                best = (int)(hi - lo + 1);
        }
    }
    return best;
}

// ---- ordering = key under random failures ---------------------------------------

// 100 keys x 100 jobs, every attempt failing with 503 at 10% and retried after
// 20 ms: each job delivered once, and per key, in the sink's record order, every
// request is for the key's next undelivered job (so seq never goes back, the 2xx
// answers are exactly 0..99 in order, and nothing is resent after its 2xx); the
// first request for S+1 arrives no earlier than the 2xx of S. Keys run in
// parallel: several keys wait out a retry delay at the same time.
START_TEST(test_key_order_holds_under_random_503s)
{
    ck_assert_uint_eq(produce_keyed(KEYS, SEQS, "/random-fail/10"), (size_t)KEYS * SEQS);
    char *env[] = {"HOOKD_DISPATCH_ORDERING=key",
                   "HOOKD_RETRY_SCHEDULE=20ms",
                   "HOOKD_RETRY_MAX_ATTEMPTS=20",
                   "HOOKD_BREAKER_CONSECUTIVE_FAILURES=1000",
                   "HOOKD_BREAKER_MIN_CALLS=1000",
                   "HOOKD_BREAKER_WINDOW=1000",
                   NULL};
    const char *log = "it_ordering_keyed.log";
    int64_t t0 = hk_th_now_ms();
    hookd_start(env, log);
    int all = hk_th_wait_unique_ok(sink, KEYS * SEQS, 60000);
    double from_start_s = (double)(hk_th_now_ms() - t0) / 1000.0;

    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    ck_assert_msg(all, "only %llu of %d jobs delivered after 60 s (see %s)",
                  (unsigned long long)st.unique_ok, KEYS * SEQS, log);
    ck_assert_msg(hk_th_wait_lag_zero(brokers, "hookd", "jobs", 30000),
                  "committed offsets did not reach the end");

    hk_sink_req_t *reqs;
    size_t n = sink_requests(&reqs);
    seq_seen_t *seen = index_keyed(reqs, n, KEYS, SEQS);

    // One pass in record order, per key: the next undelivered seq and the last seq.
    int next[KEYS], last[KEYS];
    int64_t span_first[KEYS], span_last[KEYS], failed_at[KEYS];
    for (int k = 0; k < KEYS; k++)
        next[k] = 0, last[k] = -1, span_first[k] = -1, span_last[k] = -1, failed_at[k] = -1;
    int64_t waits = 0; // sum of the keys' retry waits: from a 503 to the key's next request
    size_t went_back = 0, not_next = 0, injected = 0, other = 0;
    char went_back_ex[160] = "", not_next_ex[160] = "";
    int64_t first_at = INT64_MAX, last_at = 0;
    for (size_t i = 0; i < n; i++) {
        const hk_sink_req_t *r = &reqs[i];
        int k, s;
        keyed_req(r, &k, &s);
        injected += r->status == 503;
        other += r->status != 503 && !is_2xx(r);
        if (s < last[k] && went_back++ == 0)
            snprintf(went_back_ex, sizeof(went_back_ex),
                     "record %zu: k%d-s%d (%d) after k%d-s%d was requested", i, k, s, r->status, k,
                     last[k]);
        if (s != next[k] && not_next++ == 0)
            snprintf(not_next_ex, sizeof(not_next_ex),
                     "record %zu: k%d-s%d (%d) while k%d-s%d was not yet delivered", i, k, s,
                     r->status, k, next[k]);
        if (s > last[k])
            last[k] = s;
        if (is_2xx(r) && s == next[k])
            next[k]++;
        if (failed_at[k] >= 0)
            waits += r->at_ms - failed_at[k];
        failed_at[k] = r->status == 503 ? r->at_ms : -1;
        if (span_first[k] < 0)
            span_first[k] = r->at_ms;
        span_last[k] = r->at_ms;
        first_at = r->at_ms < first_at ? r->at_ms : first_at;
        last_at = r->at_ms > last_at ? r->at_ms : last_at;
    }
    // The first request of S+1 after the 2xx of S, in time and in record order.
    char overlap_ex[200];
    size_t overlaps = overlapping_pairs(seen, KEYS, SEQS, 0, overlap_ex, sizeof(overlap_ex));
    size_t before_in_order = 0;
    for (int k = 0; k < KEYS; k++)
        for (int s = 0; s + 1 < SEQS; s++)
            before_in_order += seen[k * SEQS + s + 1].first_idx >= 0 &&
                               seen[k * SEQS + s + 1].first_idx < seen[k * SEQS + s].ok_idx;
    int incomplete = 0;
    for (int k = 0; k < KEYS; k++)
        incomplete += next[k] != SEQS;

    // Parallelism. If the keys went one after another, each key's retry delays
    // alone would add up: injected x 20 ms. Sum of per-key spans / window is how
    // many keys were under way at once on average (interleaved, not necessarily
    // in parallel); sum of the measured retry waits / window is how many keys
    // were waiting out a retry at once on average.
    int64_t window = last_at - first_at;
    int64_t serial_floor = (int64_t)injected * RETRY_MS;
    int64_t spans = 0;
    for (int k = 0; k < KEYS; k++)
        spans += span_last[k] - span_first[k];
    double parallel = window > 0 ? (double)spans / (double)window : 0.0;
    double waiting = window > 0 ? (double)waits / (double)window : 0.0;
    printf("it_ordering keyed: %d jobs over %d keys delivered, %zu requests, %zu x 503 injected "
           "(%.1f%%), %llu duplicates\n",
           KEYS * SEQS, KEYS, n, injected, 100.0 * (double)injected / (double)n,
           (unsigned long long)st.duplicate_ok);
    printf("  %.2f s from hookd start (incl. ~3 s group join); first to last request %.2f s; "
           "retry delays alone, keys one after another: %.1f s (%.0fx); keys under way at once: "
           "%.1f on average, waiting out a retry at once: %.1f on average (%.1f s of retry waits); "
           "mean time per request within a key %.1f ms\n",
           from_start_s, (double)window / 1000.0, (double)serial_floor / 1000.0,
           window > 0 ? (double)serial_floor / (double)window : 0.0, parallel, waiting,
           (double)waits / 1000.0, (double)spans / (double)n);
    printf("  order: %zu went back, %zu not the next undelivered, %zu S+1 before the 2xx of S "
           "(time), %zu (record order), %d keys incomplete\n",
           went_back, not_next, overlaps, before_in_order, incomplete);

    ck_assert_uint_eq(st.unique_ok, (uint64_t)KEYS * SEQS);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(st.bad_headers, 0);
    ck_assert_msg(other == 0, "%zu answers other than 200/503", other);
    ck_assert_msg(injected > 0, "the sink injected no 503 at 10%%");
    ck_assert_msg(went_back == 0, "%zu requests went back in sequence, first: %s", went_back,
                  went_back_ex);
    ck_assert_msg(not_next == 0, "%zu requests for a job other than the key's next, first: %s",
                  not_next, not_next_ex);
    ck_assert_msg(overlaps == 0, "%zu times two jobs of one key were in flight at once, first: %s",
                  overlaps, overlap_ex);
    ck_assert_uint_eq(before_in_order, 0);
    ck_assert_msg(incomplete == 0, "%d keys did not see 2xx for 0..%d in order", incomplete,
                  SEQS - 1);
    // With one job in flight at a time (keys one after another), nothing else is
    // sent while a key waits out a retry: the waits cannot overlap and add up to
    // the window at most, 1 at once. With the keys in parallel each key spends
    // ~10% of its time (one 503 in ten, each wait a 20 ms delay plus the time
    // to send the retry) waiting, and ~70 keys are under way at once: ~7 or
    // more, however slow the box, since a slow box stretches the measured waits
    // with the window. (Comparing the window with a fixed 20 ms per retry
    // needed ~1100 requests/s.) The keys' spans cannot serve: keys sent one
    // after another but interleaved overlap all the same.
    ck_assert_msg(waiting >= KEYED_MIN_WAITING,
                  "keys do not run in parallel: %.1f waiting out a retry at once on average "
                  "(want %d; one at a time gives 1 at most), %lld ms for %lld ms of retry waits",
                  waiting, KEYED_MIN_WAITING, (long long)window, (long long)waits);

    hk_th_record_t *recs;
    size_t ndlq = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, ndlq);
    ck_assert_msg(ndlq == 0, "%zu jobs dead-lettered", ndlq);
    hookd_stop();
}
END_TEST

// ---- control: ordering = none --------------------------------------------------

// The same shape without ordering (the default), every answer held 20 ms: some
// key has two requests in flight at once, so test_key_order_holds_under_random_503s'
// in-flight check can fail.
START_TEST(test_ordering_none_does_not_serialize)
{
    ck_assert_uint_eq(produce_keyed(CTRL_KEYS, CTRL_SEQS, "/slow/20"),
                      (size_t)CTRL_KEYS * CTRL_SEQS);
    const char *log = "it_ordering_none.log";
    hookd_start(NULL, log);
    ck_assert_msg(hk_th_wait_unique_ok(sink, CTRL_KEYS * CTRL_SEQS, 60000),
                  "not every job delivered (see %s)", log);

    hk_sink_req_t *reqs;
    size_t n = sink_requests(&reqs);
    seq_seen_t *seen = index_keyed(reqs, n, CTRL_KEYS, CTRL_SEQS);
    char example[200];
    size_t overlaps =
        overlapping_pairs(seen, CTRL_KEYS, CTRL_SEQS, CTRL_SLOW, example, sizeof(example));
    int keys_overlapping = 0;
    for (int k = 0; k < CTRL_KEYS; k++) {
        keys_overlapping +=
            overlapping_pairs(seen + k * CTRL_SEQS, 1, CTRL_SEQS, CTRL_SLOW, NULL, 0) > 0;
    }
    int most = max_in_flight_per_key(reqs, n, CTRL_KEYS, CTRL_SLOW);
    printf("it_ordering none: %zu requests; %zu pairs S, S+1 overlapping in %d of %d keys; up to "
           "%d requests of one key in flight at once; e.g. %s\n",
           n, overlaps, keys_overlapping, CTRL_KEYS, most, example);
    ck_assert_msg(overlaps > 0 && most >= 2,
                  "without ordering no key ever had two requests in flight: the in-flight "
                  "check proves nothing");
    hookd_stop();
}
END_TEST

// ---- head of line: dead_letter_after_attempts ----------------------------------

// One key (the Kafka key only, no ordering_key field): a head to /status/503 with
// max_attempts 3, then 5 jobs to /ok. The head is dead-lettered as exhausted after
// its 3 attempts, then the followers are delivered in order, none before the
// head's last attempt. Another key's jobs, produced after them, do not wait: all
// 6 are done before the head's last attempt. The head's retries wait 1 s each,
// so that is 2 s for 6 requests one after another (and the other key's
// partition possibly fetched later), ample on a slow box; had the key waited for
// the head, its jobs would come after the head's last attempt.
START_TEST(test_head_of_line_dead_letter_moves_on)
{
    int port = hk_sink_port(sink);
    size_t n = 2 + 2 * HOL_FOLLOWERS;
    char **values = strs_new(n), **keys = strs_new(n);
    size_t i = 0;
    values[i] =
        str_printf("{\"id\":\"hol-0\",\"max_attempts\":%d,\"url\":\"http://127.0.0.1:%d/status/"
                   "503\",\"body\":{\"seq\":0}}",
                   HOL_ATTEMPTS, port);
    keys[i++] = str_printf("hol");
    for (int s = 1; s <= HOL_FOLLOWERS; s++) {
        values[i] = str_printf(
            "{\"id\":\"hol-%d\",\"url\":\"http://127.0.0.1:%d/ok\",\"body\":{\"seq\":%d}}", s, port,
            s);
        keys[i++] = str_printf("hol");
    }
    for (int s = 0; s <= HOL_FOLLOWERS; s++) {
        values[i] = str_printf(
            "{\"id\":\"free-%d\",\"url\":\"http://127.0.0.1:%d/ok\",\"body\":{\"seq\":%d}}", s,
            port, s);
        keys[i++] = str_printf("free");
    }
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, keys, n), n);

    char *env[] = {"HOOKD_DISPATCH_ORDERING=key",
                   "HOOKD_RETRY_SCHEDULE=" HOL_STR(HOL_RETRY_MS) "ms", NULL};
    const char *log = "it_ordering_hol.log";
    hookd_start(env, log);
    ck_assert_msg(hk_th_wait_unique_ok(sink, 2 * HOL_FOLLOWERS + 1, 30000),
                  "followers not delivered (see %s)", log);
    size_t one = 1;
    ck_assert_msg(hk_th_wait_for(dlq_reached, &one, 30000), "head not dead-lettered");
    ck_assert_msg(hk_th_wait_lag_zero(brokers, "hookd", "jobs", 30000),
                  "committed offsets did not reach the end");

    hk_th_record_t *recs;
    size_t ndlq = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, ndlq);
    ck_assert_uint_eq(ndlq, 1);
    const char *id = hk_th_header(&recs[0], "hookd-job-id");
    const char *cls = hk_th_header(&recs[0], "hookd-error-class");
    const char *attempts = hk_th_header(&recs[0], "hookd-attempts");
    const char *status = hk_th_header(&recs[0], "hookd-http-status");
    ck_assert_str_eq(id ? id : "(none)", "hol-0");
    ck_assert_str_eq(cls ? cls : "(none)", "exhausted");
    ck_assert_str_eq(attempts ? attempts : "(none)", "3");
    ck_assert_str_eq(status ? status : "(none)", "503");
    ck_assert_str_eq(recs[0].key ? recs[0].key : "(none)", "hol");

    hk_sink_req_t *reqs;
    size_t nreq = sink_requests(&reqs);
    int head_attempts = 0, next = 1;
    int64_t head_first_at = -1, head_last_at = -1, free_last_at = -1, follower_first_at = -1;
    size_t early = 0, out_of_order = 0;
    for (size_t r = 0; r < nreq; r++) {
        int s;
        if (strcmp(reqs[r].webhook_id, "hol-0") == 0) {
            ck_assert_int_eq(reqs[r].status, 503);
            head_attempts++;
            head_last_at = reqs[r].at_ms;
            if (head_first_at < 0)
                head_first_at = reqs[r].at_ms;
        } else if (sscanf(reqs[r].webhook_id, "hol-%d", &s) == 1) {
            ck_assert_int_eq(reqs[r].status, 200);
            if (follower_first_at < 0)
                follower_first_at = reqs[r].at_ms;
            early += head_attempts < HOL_ATTEMPTS;
            out_of_order += s != next;
            next = s + 1;
        } else {
            free_last_at = reqs[r].at_ms;
        }
    }
    printf("it_ordering head of line: head attempts %d at +0..+%lld ms, first follower at +%lld "
           "ms, other key done at +%lld ms; %zu followers early, %zu out of order\n",
           head_attempts, (long long)(head_last_at - head_first_at),
           (long long)(follower_first_at - head_first_at),
           (long long)(free_last_at - head_first_at), early, out_of_order);
    ck_assert_int_eq(head_attempts, HOL_ATTEMPTS);
    ck_assert_msg(early == 0, "%zu followers were sent before the head's last attempt", early);
    ck_assert_msg(follower_first_at >= head_last_at,
                  "a follower arrived %lld ms before the head's "
                  "last attempt",
                  (long long)(head_last_at - follower_first_at));
    ck_assert_msg(out_of_order == 0, "followers out of order");
    ck_assert_int_eq(next, HOL_FOLLOWERS + 1);
    for (int s = 1; s <= HOL_FOLLOWERS; s++) {
        char fid[32];
        snprintf(fid, sizeof(fid), "hol-%d", s);
        ck_assert_uint_eq(hk_sink_ok_count(sink, fid), 1);
    }
    // The other key went on while the head was failing.
    ck_assert_msg(free_last_at < head_last_at,
                  "key \"free\" waited for key \"hol\": done %lld ms after the head's last attempt",
                  (long long)(free_last_at - head_last_at));
    hookd_stop();
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    Suite *s = suite_create("it_ordering");
    TCase *tc = tcase_create("ordering");
    tcase_set_timeout(tc, 180);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_key_order_holds_under_random_503s);
    tcase_add_test(tc, test_ordering_none_does_not_serialize);
    tcase_add_test(tc, test_head_of_line_dead_letter_moves_on);
    suite_add_tcase(s, tc);
    return s;
}
