// Real Apache Kafka (scripts/kafka, one KRaft node), broker down: the only node
// is SIGKILLed for 10 s while jobs flow, some of them to the DLQ and some through
// the retry topic. Nothing is lost, DLQ and retry records included; /readyz turns
// 503 while the broker is away and 200 again without a restart of hookd; the
// outage shows in the log and in /metrics; Kafka's own kafka-consumer-groups
// finds no lag at the end. Runs on real Kafka only (label realkafka; started by
// scripts/test). Logs: it_realkafka_outage*.log in the working dir.
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/kcluster.h"
#include "tests/support/sink.h"

// Under ASan hookd runs several times slower: fewer jobs, same shape.
#define N_JOBS       (HK_TH_ASAN ? 20000 : 50000)
#define EVERY        250 // job i % EVERY == 0 goes to the DLQ, == EVERY / 2 through the retry topic
#define OUTAGE_MS    10000
#define JOBS_PARTS   8
#define GRACE_MS     10000
#define MAX_INFLIGHT 2000 // limits.max_inflight_jobs

static hk_kc_t kc;
static hk_th_proc_t kafka, hookd;
static char brokers[512];
static hk_sink_t *sink, *sink_f; // sink_f: the DLQ and retry jobs (own endpoint, own breaker)
static char **values;
static const char *LOG = "it_realkafka_outage.log";

static void setup(void)
{
    hookd = kafka = (hk_th_proc_t){.pid = 0, .stdin_fd = -1};
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 32};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    so.threads = 8;
    sink_f = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink_f != NULL, "sink: %s", err);
}

static void teardown(void)
{
    hk_th_stop(&hookd, GRACE_MS + 5000);
    hk_th_kafka_stop(&kafka);
    hk_sink_stop(sink);
    hk_sink_stop(sink_f);
    for (size_t i = 0; values && i < N_JOBS; i++)
        free(values[i]);
    free(values);
    values = NULL;
    hk_th_release_held();
}

// --- /readyz and /metrics, sampled every 100 ms on a thread of their own ----------

typedef struct probe {
    int port;
    atomic_int run;
    pthread_t tid;
    pthread_mutex_t lock;
    int last;             // last /readyz status (0: no answer)
    int64_t first_503_ms; // first 503 after `armed`, monotonic; 0 none
    int64_t first_200_ms; // first 200 after that 503; 0 none
    int saw_unreachable;  // /metrics said hookd_kafka_unreachable 1 after `armed`
    int samples_down;     // /readyz answers 503 after `armed`
    atomic_int armed;     // set at the kill
    char body_503[256];   // the body of the first 503
} probe_t;

static void *probe_main(void *arg)
{
    probe_t *pr = arg;
    char url[128], murl[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", pr->port);
    snprintf(murl, sizeof(murl), "http://127.0.0.1:%d/metrics", pr->port);
    while (atomic_load(&pr->run)) {
        char *body = NULL;
        long st = hk_th_http("GET", url, 2000, &body);
        int64_t now = hk_th_now_ms();
        char *m = NULL;
        int unreachable = hk_th_http("GET", murl, 2000, &m) == 200 &&
                          hk_th_metric_in(m, "hookd_kafka_unreachable") == 1;
        free(m);
        pthread_mutex_lock(&pr->lock);
        pr->last = (int)st;
        if (atomic_load(&pr->armed)) {
            if (st == 503) {
                pr->samples_down++;
                if (!pr->first_503_ms) {
                    pr->first_503_ms = now;
                    snprintf(pr->body_503, sizeof(pr->body_503), "%s", body ? body : "");
                }
            } else if (st == 200 && pr->first_503_ms && !pr->first_200_ms) {
                pr->first_200_ms = now;
            }
            pr->saw_unreachable |= unreachable;
        }
        pthread_mutex_unlock(&pr->lock);
        free(body);
        hk_th_sleep_ms(100);
    }
    return NULL;
}

static int probe_ready(void *arg)
{
    probe_t *pr = arg;
    pthread_mutex_lock(&pr->lock);
    int ok = pr->last == 200;
    pthread_mutex_unlock(&pr->lock);
    return ok;
}

static int probe_recovered(void *arg)
{
    probe_t *pr = arg;
    pthread_mutex_lock(&pr->lock);
    int ok = pr->first_200_ms != 0;
    pthread_mutex_unlock(&pr->lock);
    return ok;
}

static uint64_t delivered(void)
{
    hk_sink_stats_t a, b;
    hk_sink_stats(sink, &a);
    hk_sink_stats(sink_f, &b);
    return a.unique_ok + b.unique_ok;
}

static int reached(void *arg)
{
    return delivered() >= *(uint64_t *)arg;
}

static int lag_zero(void *arg)
{
    (void)arg;
    return hk_th_group_lag(brokers, "hookd", "jobs") == 0 &&
           hk_th_group_lag(brokers, "hookd", "jobs.retry") == 0;
}

// The job number in a body {"n":<n>}, -1 when there is none.
static long long body_n(const char *body)
{
    const char *at = body ? strstr(body, "\"n\":") : NULL;
    return at ? atoll(at + 4) : -1;
}

START_TEST(test_broker_down_10s_loses_nothing_and_readyz_follows)
{
    const char *topics[] = {"jobs:8", "jobs.dlq:2", "jobs.retry:4", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
    // The retry jobs' endpoint fails until the broker is back; they carry enough
    // attempts to outlast the outage, so each ends delivered.
    ck_assert_int_eq(hk_sink_set_rule(sink_f, "/retry", 503, 0, NULL), 0);
    values = calloc(N_JOBS, sizeof(char *));
    size_t n_dlq = 0, n_retry = 0;
    for (size_t i = 0; i < N_JOBS; i++) {
        int port = hk_sink_port(sink), port_f = hk_sink_port(sink_f);
        if (i % EVERY == 0) {
            n_dlq++;
            ck_assert(asprintf(&values[i],
                               "{\"id\":\"job-%zu\",\"url\":\"http://127.0.0.1:%d/status/400\","
                               "\"body\":{\"n\":%zu}}",
                               i, port_f, i) > 0);
        } else if (i % EVERY == EVERY / 2) {
            n_retry++;
            ck_assert(asprintf(&values[i],
                               "{\"id\":\"job-%zu\",\"url\":\"http://127.0.0.1:%d/retry/%zu\","
                               "\"max_attempts\":100,\"body\":{\"n\":%zu}}",
                               i, port_f, i, i) > 0);
        } else {
            ck_assert(asprintf(&values[i],
                               "{\"id\":\"job-%zu\",\"url\":\"http://127.0.0.1:%d/slow/5\","
                               "\"body\":{\"n\":%zu}}",
                               i, port, i) > 0);
        }
    }
    char **keys = hk_th_hold(HK_TH_HELD_STRS, calloc(N_JOBS, sizeof(char *)), N_JOBS);
    for (size_t i = 0; i < N_JOBS; i++) // spread over every partition
        ck_assert(asprintf(&keys[i], "key-%zu", i % 101) > 0);
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, keys, N_JOBS), N_JOBS);

    // Every retry through the retry topic; no breaker or lane in the way of the
    // failing jobs' many attempts.
    char *env[] = {"HOOKD_DELIVERY_THREADS=2",
                   "HOOKD_DELIVERY_MAX_TRANSFERS_PER_THREAD=16",
                   "HOOKD_LIMITS_MAX_INFLIGHT_JOBS=" HK_TH_STR(MAX_INFLIGHT),
                   "HOOKD_RETRY_INLINE_MAX_MS=0",
                   "HOOKD_RETRY_SCHEDULE=1s",
                   "HOOKD_BREAKER_WINDOW=1000",
                   "HOOKD_BREAKER_MIN_CALLS=1000",
                   "HOOKD_BREAKER_FAILURE_RATE=1",
                   "HOOKD_BREAKER_CONSECUTIVE_FAILURES=10000",
                   NULL};
    unlink(LOG);
    int64_t t0 = hk_th_now_ms();
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, LOG), 0);
    probe_t pr = {.port = 0};
    for (int k = 0; k < 600 && !(pr.port = hk_th_admin_port(LOG)); k++)
        hk_th_sleep_ms(100);
    ck_assert_msg(pr.port > 0, "no admin port in %s", LOG);
    pthread_mutex_init(&pr.lock, NULL);
    atomic_store(&pr.run, 1);
    ck_assert_int_eq(pthread_create(&pr.tid, NULL, probe_main, &pr), 0);

    uint64_t fifth = N_JOBS / 5;
    int going = hk_th_wait_for(reached, &fifth, 240000) && hk_th_wait_for(probe_ready, &pr, 60000);
    int64_t lag_before = hk_th_group_lag(brokers, "hookd", "jobs");
    uint64_t at_kill = delivered();
    int64_t t_kill = hk_th_now_ms();
    atomic_store(&pr.armed, 1);
    int killed = going && hk_kc_stop_node(&kc, 0) == 0;
    if (killed)
        hk_th_sleep_ms(OUTAGE_MS);
    uint64_t at_restart = delivered();
    int64_t t_restart = hk_th_now_ms();
    int restarted = killed && hk_kc_start_node(&kc, 0) == 0;
    int64_t t_back = hk_th_now_ms();
    int recovered = restarted && hk_th_wait_for(probe_recovered, &pr, 180000);
    int64_t t_ready = hk_th_now_ms();
    uint64_t at_ready = delivered();
    ck_assert_int_eq(hk_sink_set_rule(sink_f, "/retry", 0, 0, NULL), 0); // retries succeed now
    uint64_t all = N_JOBS - n_dlq;
    int done = recovered && hk_th_wait_for(reached, &all, 300000);
    int64_t t_done = hk_th_now_ms();
    int lag0 = done && hk_th_wait_for(lag_zero, NULL, 60000);
    atomic_store(&pr.run, 0);
    pthread_join(pr.tid, NULL);
    pthread_mutex_destroy(&pr.lock);
    ck_assert_msg(going, "hookd never got going (%llu delivered)", (unsigned long long)delivered());
    ck_assert_msg(killed, "scripts/kafka stop-node failed");
    ck_assert_msg(restarted, "scripts/kafka start-node failed");
    ck_assert_msg(at_restart < N_JOBS - n_dlq, "the run ended during the outage: proves nothing");

    // The outage in /readyz, /metrics and the log.
    printf("it_realkafka_outage: readyz 503 %lld ms after the kill (%d samples 503, body %s), "
           "200 again %lld ms after the node was back (start-node took %lld ms)\n",
           pr.first_503_ms ? (long long)(pr.first_503_ms - t_kill) : -1LL, pr.samples_down,
           pr.body_503, pr.first_200_ms ? (long long)(pr.first_200_ms - t_back) : -1LL,
           (long long)(t_back - t_restart));
    ck_assert_msg(pr.first_503_ms && pr.first_503_ms < t_back,
                  "/readyz never answered 503 while the broker was away");
    ck_assert_msg(strstr(pr.body_503, "\"kafka\":\"unreachable\""), "503 body: %s", pr.body_503);
    ck_assert_msg(recovered, "/readyz not 200 again within 180 s of the broker's return");
    ck_assert_msg(pr.saw_unreachable, "/metrics never showed hookd_kafka_unreachable 1");
    ck_assert_int_ge(hk_th_log_count(LOG, "\"event\":\"kafka_unreachable\""), 1);
    ck_assert_int_ge(hk_th_log_count(LOG, "\"event\":\"kafka_reachable\""), 1);
    char murl[128], *m = NULL;
    snprintf(murl, sizeof(murl), "http://127.0.0.1:%d/metrics", pr.port);
    ck_assert_int_eq(hk_th_http("GET", murl, 5000, &m), 200);
    hk_th_hold_mem(m);
    ck_assert_int_ge((long long)hk_th_metric_in(m, "hookd_kafka_unreachable_total"), 1);
    ck_assert_int_eq((long long)hk_th_metric_in(m, "hookd_kafka_unreachable"), 0);
    ck_assert_int_ge((long long)hk_th_metric_in(m, "hookd_kafka_brokers_up"), 1);
    ck_assert_msg(done, "jobs lost: %llu of %zu delivered", (unsigned long long)delivered(),
                  N_JOBS - n_dlq);
    ck_assert_msg(lag0, "offsets did not reach the end: lag %lld (jobs) %lld (retry)",
                  (long long)hk_th_group_lag(brokers, "hookd", "jobs"),
                  (long long)hk_th_group_lag(brokers, "hookd", "jobs.retry"));
    // hookd was never restarted.
    ck_assert_int_eq(hk_th_log_count(LOG, "\"event\":\"started\""), 1);

    // Deliveries: each non-DLQ job 2xx at least once, DLQ jobs never 2xx.
    hk_sink_stats_t st, stf;
    hk_sink_stats(sink, &st);
    hk_sink_stats(sink_f, &stf);
    unsigned char *ok = calloc(N_JOBS, 1);
    hk_th_hold_mem(ok);
    // Failed attempts per job: each 400 makes one DLQ record, each 503 one retry record.
    unsigned *failed = calloc(N_JOBS, sizeof(unsigned));
    hk_th_hold_mem(failed);
    hk_sink_t *sinks[] = {sink, sink_f};
    for (int s = 0; s < 2; s++) {
        hk_sink_req_t *reqs;
        size_t nreq = hk_sink_reqs(sinks[s], &reqs);
        hk_th_hold(HK_TH_HELD_REQS, reqs, nreq);
        for (size_t i = 0; i < nreq; i++) {
            long long k = body_n(reqs[i].body);
            ck_assert_msg(k >= 0 && k < N_JOBS, "unexpected body %s", reqs[i].body);
            if (reqs[i].status >= 200 && reqs[i].status < 300)
                ok[k] = 1;
            else if (reqs[i].status == 400 || reqs[i].status == 503)
                failed[k]++;
        }
    }
    size_t lost = 0;
    for (size_t i = 0; i < N_JOBS; i++)
        if (i % EVERY != 0 && !ok[i])
            lost++;

    // The DLQ holds each DLQ job, the retry topic at least one record of each retry
    // job that failed before the rule was lifted.
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, nrec);
    unsigned *in_dlq = calloc(N_JOBS, sizeof(unsigned));
    hk_th_hold_mem(in_dlq);
    size_t dlq_dups = 0, dlq_lost = 0, dlq_extra = 0;
    for (size_t i = 0; i < nrec; i++) {
        long long k = body_n(recs[i].value);
        ck_assert_msg(k >= 0 && k < N_JOBS && k % EVERY == 0, "unexpected DLQ record %s",
                      recs[i].value);
        if (in_dlq[k]++)
            dlq_dups++;
    }
    // A DLQ job attempted twice (its offset uncommitted when the group dropped hookd)
    // is dead-lettered twice; more records than attempts are the producer's own.
    for (size_t i = 0; i < N_JOBS; i += EVERY) {
        dlq_lost += in_dlq[i] == 0;
        dlq_extra += in_dlq[i] > failed[i] ? in_dlq[i] - failed[i] : 0;
    }
    size_t nretry_rec = hk_th_read_topic(brokers, "jobs.retry", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, nretry_rec);
    unsigned *retried = calloc(N_JOBS, sizeof(unsigned));
    hk_th_hold_mem(retried);
    size_t retried_jobs = 0, retry_extra = 0, retry_lost = 0;
    for (size_t i = 0; i < nretry_rec; i++) {
        long long k = body_n(recs[i].value);
        ck_assert_msg(k >= 0 && k < N_JOBS && k % EVERY == EVERY / 2, "unexpected retry record %s",
                      recs[i].value);
        if (!retried[k]++)
            retried_jobs++;
    }
    for (size_t i = EVERY / 2; i < N_JOBS; i += EVERY) {
        retry_extra += retried[i] > failed[i] ? retried[i] - failed[i] : 0;
        retry_lost += failed[i] > 0 && retried[i] == 0;
    }
    // Repeats come from offsets finished but not committed when the group dropped
    // hookd: the jobs delivered before the kill above what was committed then.
    int64_t committed_before = N_JOBS - lag_before;
    int64_t repeat_bound = (int64_t)at_restart + (int64_t)(n_dlq + n_retry) - committed_before;
    printf("it_realkafka_outage: %d jobs (%zu to the DLQ, %zu via the retry topic), lost %zu; "
           "delivered %llu before the kill, %llu by the restart, %llu by /readyz 200, all %.1fs "
           "after the restart; duplicates %llu (+%llu on the retry endpoint; at most %lld: "
           "delivered by the restart, uncommitted before the kill), group session lost %d time(s); "
           "lag before "
           "the kill %lld, at the end 0\n",
           N_JOBS, n_dlq, n_retry, lost, (unsigned long long)at_kill,
           (unsigned long long)at_restart, (unsigned long long)at_ready,
           (double)(t_done - t_restart) / 1000.0, (unsigned long long)st.duplicate_ok,
           (unsigned long long)stf.duplicate_ok, (long long)repeat_bound,
           hk_th_log_count(LOG, "session timed out"), (long long)lag_before);
    printf("it_realkafka_outage: DLQ %zu records for %zu jobs (lost %zu, repeats %zu, more "
           "than attempts %zu); retry topic %zu records for %zu of %zu retry jobs (lost %zu, "
           "more than failed attempts %zu); recover: /readyz 200 %.1fs after the node was back, "
           "run %.1fs in all\n",
           nrec, n_dlq, dlq_lost, dlq_dups, dlq_extra, nretry_rec, retried_jobs, n_retry,
           retry_lost, retry_extra, (double)(t_ready - t_back) / 1000.0,
           (double)(t_done - t0) / 1000.0);
    ck_assert_uint_eq(lost, 0);
    ck_assert_uint_eq(dlq_lost, 0);
    ck_assert_msg(retried_jobs > 0, "no job went through the retry topic: proves nothing");
    ck_assert_uint_eq(st.bad_signature + stf.bad_signature, 0);
    ck_assert_uint_eq(retry_lost, 0);
    // The idempotent producer stores each record once, resends after the outage included.
    ck_assert_uint_eq(dlq_extra, 0);
    ck_assert_uint_eq(retry_extra, 0);
    ck_assert_int_le((int64_t)(st.duplicate_ok + stf.duplicate_ok), repeat_bound);
    // When the group dropped hookd, the partitions it got back started where it had
    // finished, not at the offsets committed before the kill (which is all the
    // bound above allows for), and skipped what it had finished beyond that (past
    // a DLQ or retry job that could not finish while the broker was away): only
    // what was in flight when the session was lost may come again, at most
    // limits.max_inflight_jobs (2000 here). Before: ~42,700 repeats.
    int lost_sessions = hk_th_log_count(LOG, "\"lost\":true");
    int from_finished = hk_th_log_count(LOG, "\"event\":\"assigned_from_finished\"");
    printf("it_realkafka_outage: partitions lost %d, assigned again from where they had "
           "finished %d\n",
           lost_sessions, from_finished);
    if (lost_sessions > 0)
        ck_assert_msg(from_finished > 0,
                      "%d partitions lost, none assigned again from its finished offset",
                      lost_sessions);
    ck_assert_msg(st.duplicate_ok <= MAX_INFLIGHT,
                  "%llu jobs sent again, more than were in flight (%d): finished jobs of the lost "
                  "partitions came again",
                  (unsigned long long)st.duplicate_ok, MAX_INFLIGHT);

    int status = hk_th_stop(&hookd, GRACE_MS + 5000);
    ck_assert_msg(hk_th_exited_ok(status), "hookd did not exit 0 after SIGTERM (status %d)",
                  status);

    // Kafka's own tool agrees: every partition of both topics committed to its end.
    hk_kc_row_t rows[32];
    int nrows = hk_kc_describe_group(&kc, hk_th_kafka_name("hookd"), NULL, rows, 32);
    ck_assert_msg(nrows >= 0, "kafka-consumer-groups --describe failed");
    int jobs_rows = 0;
    for (int i = 0; i < nrows; i++) {
        ck_assert_msg(rows[i].lag == 0, "kafka-consumer-groups: %s/%d lag %lld (current %lld)",
                      rows[i].topic, rows[i].partition, (long long)rows[i].lag,
                      (long long)rows[i].current);
        jobs_rows += strcmp(rows[i].topic, hk_th_kafka_name("jobs")) == 0;
    }
    printf("it_realkafka_outage: kafka-consumer-groups: %d partitions, LAG 0 on all\n", nrows);
    ck_assert_int_eq(jobs_rows, JOBS_PARTS);
}
END_TEST

static int before(void)
{
    if (hk_kc_up(&kc, 1, NULL) != 0) {
        fprintf(stderr, "it_realkafka_outage: scripts/kafka up --nodes 1 failed\n");
        return -1;
    }
    return 0;
}

static void after(int failed)
{
    (void)failed;
    hk_kc_down(&kc);
}

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    run->before = before;
    run->after = after;
    Suite *s = suite_create("it_realkafka_outage");
    hk_ck_case(s, "outage", 900, setup, teardown,
               test_broker_down_10s_loses_nothing_and_readyz_follows);
    return s;
}
