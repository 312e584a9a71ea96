// Real Apache Kafka (scripts/kafka, three KRaft nodes; topics replicated 3 times,
// min.insync.replicas 2): a partition leader SIGKILLed mid-run; hookd replicas
// on a real group coordinator scaling out, draining on SIGTERM and crashing on
// SIGKILL; and the committed offsets, read with Kafka's own kafka-consumer-groups,
// never passing a job that has not finished. Runs on real Kafka only (label
// realkafka; started by scripts/test). Logs: it_realkafka_*.log in the working dir.
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/kcluster.h"
#include "tests/support/sink.h"

#define NODES        3
#define GRACE_MS     10000
#define MAX_REPLICAS 4

static hk_kc_t kc;
static hk_th_scene_t sc;
static hk_th_proc_t *const replicas = sc.hookd; // MAX_REPLICAS of them
static hk_sink_t *sink;
_Static_assert(MAX_REPLICAS <= HK_TH_SCENE_HOOKDS, "a scene's replicas");
static int node_down = -1; // a node this test stopped, started again at teardown

// Every partition replicated on all three nodes, acks=all needing two of them.
// Short broker sessions: a SIGKILLed node's partitions get new leaders within
// seconds (the controller fences it after broker.session.timeout.ms).
static const char *CLUSTER_CONF = "min.insync.replicas=2\n"
                                  "broker.heartbeat.interval.ms=500\n"
                                  "broker.session.timeout.ms=3000\n";

static void setup(void)
{
    ck_assert_int_eq(hk_th_scene_start(&sc, NULL), 0); // each test starts its topics
    char err[256];
    sink = hk_th_scene_sink(&sc, (hk_sink_opts_t){.secrets = HK_TH_REPLICA_SECRETS, .threads = 32},
                            err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
}

static void teardown(void)
{
    hk_th_scene_stop(&sc, GRACE_MS + 5000);
    if (node_down >= 0 && kc.dir[0]) // the next test needs all three
        hk_kc_start_node(&kc, node_down);
    node_down = -1;
}

// The job number in a body {"n":<n>}, -1 when there is none.
static long long body_n(const char *body)
{
    const char *at = body ? strstr(body, "\"n\":") : NULL;
    return at ? atoll(at + 4) : -1;
}

// n jobs job-<i> with body {"n":i} to `path` on the sink (held by the test), keys
// spread over every partition; `path_of` may pick another path for job i.
static char **make_jobs(size_t n, char ***keys_out, const char *(*path_of)(size_t i),
                        const char *extra)
{
    char **values = hk_th_hold(HK_TH_HELD_STRS, calloc(n, sizeof(char *)), n);
    char **keys = hk_th_hold(HK_TH_HELD_STRS, calloc(n, sizeof(char *)), n);
    int port = hk_sink_port(sink);
    for (size_t i = 0; i < n; i++) {
        const char *path = path_of(i);
        ck_assert(asprintf(&values[i],
                           "{\"id\":\"job-%zu\",\"url\":\"http://127.0.0.1:%d%s/%zu\"%s%s,"
                           "\"body\":{\"n\":%zu}}",
                           i, port, path, i, path[1] == 'h' ? "," : "", path[1] == 'h' ? extra : "",
                           i) > 0);
        ck_assert(asprintf(&keys[i], "key-%zu", i % 101) > 0);
    }
    *keys_out = keys;
    return values;
}

// Asserts that kafka-consumer-groups --describe shows LAG 0 on every partition of
// `topic` (`parts` of them) for hookd's group.
static void assert_tool_lag_zero(const char *what, const char *topic, int parts)
{
    hk_kc_row_t rows[64];
    int n = hk_kc_describe_group(&kc, hk_th_kafka_name("hookd"), hk_th_kafka_name(topic), rows, 64);
    ck_assert_msg(n >= 0, "%s: kafka-consumer-groups --describe failed", what);
    for (int i = 0; i < n; i++)
        ck_assert_msg(rows[i].lag == 0, "%s: kafka-consumer-groups: %s/%d lag %lld (current %lld)",
                      what, rows[i].topic, rows[i].partition, (long long)rows[i].lag,
                      (long long)rows[i].current);
    printf("%s: kafka-consumer-groups: %d partitions of %s, LAG 0 on all\n", what, n, topic);
    ck_assert_int_eq(n, parts);
}

// ---- 1. leader failover -------------------------------------------------------------

#define FO_JOBS  30000
#define FO_EVERY 10 // job i % FO_EVERY == 0 goes to the DLQ: many DLQ records in flight at the kill
#define FO_PARTS 6

static const char *fo_path(size_t i)
{
    // 32 transfers of at least 20 ms each: at most 1,600 jobs/s, so 3/4 of the run
    // (over 14 s) is left at the kill, whatever the machine's speed.
    return i % FO_EVERY == 0 ? "/status/400" : "/slow/20";
}

typedef struct leaders {
    int32_t of[FO_PARTS];
    int n;
} leaders_t;

// No partition of jobs is led by node `arg` any more, and each has a leader.
static int moved_off(void *arg)
{
    int node = *(int *)arg;
    leaders_t l;
    l.n = hk_kc_leaders(sc.brokers, hk_th_kafka_name("jobs"), l.of, FO_PARTS);
    if (l.n != FO_PARTS)
        return 0;
    for (int i = 0; i < l.n; i++)
        if (l.of[i] < 0 || l.of[i] == node)
            return 0;
    return 1;
}

START_TEST(test_leader_sigkilled_mid_run_loses_nothing)
{
    const char *topics[] = {"jobs:6", "jobs.dlq:2", "jobs.retry:3", NULL};
    ck_assert_int_eq(hk_th_scene_kafka(&sc, topics), 0);
    // Kafka's own view of the topic: 3 replicas, min.insync.replicas 2.
    char args[1024];
    snprintf(args, sizeof(args), "kafka-topics --bootstrap-server %s --describe --topic %s",
             kc.bootstrap, hk_th_kafka_name("jobs"));
    char *desc = hk_th_hold_mem(hk_kc_tool(&kc, args));
    ck_assert_msg(desc && strstr(desc, "ReplicationFactor: 3"), "kafka-topics: %s", desc);
    snprintf(args, sizeof(args),
             "kafka-configs --bootstrap-server %s --describe --all --entity-type topics "
             "--entity-name %s",
             kc.bootstrap, hk_th_kafka_name("jobs.dlq"));
    char *cfgs = hk_th_hold_mem(hk_kc_tool(&kc, args));
    ck_assert_msg(cfgs && strstr(cfgs, "min.insync.replicas=2"), "kafka-configs: %s", cfgs);

    char **keys, **values = make_jobs(FO_JOBS, &keys, fo_path, "");
    ck_assert_uint_eq(hk_th_produce(sc.brokers, "jobs", values, keys, FO_JOBS), FO_JOBS);
    size_t n_dlq = (FO_JOBS + FO_EVERY - 1) / FO_EVERY;

    const char *log = "it_realkafka_failover.log";
    unlink(log);
    char *env[] = {"HOOKD_DELIVERY_THREADS=2", "HOOKD_DELIVERY_MAX_TRANSFERS_PER_THREAD=16",
                   "HOOKD_LIMITS_MAX_INFLIGHT_JOBS=2000", NULL};
    int64_t t0 = hk_th_now_ms();
    ck_assert_int_eq(hk_th_hookd_start(&replicas[0], sc.brokers, env, NULL, log), 0);
    uint64_t quarter = FO_JOBS / 4;
    ck_assert_msg(hk_th_wait_unique_ok(sink, quarter, 240000), "hookd never got going");

    // The node leading the most jobs partitions.
    leaders_t l;
    l.n = hk_kc_leaders(sc.brokers, hk_th_kafka_name("jobs"), l.of, FO_PARTS);
    ck_assert_int_eq(l.n, FO_PARTS);
    // The victim leads some jobs partitions and, if any node does, a DLQ partition:
    // DLQ records in flight to it must survive (acks=all, idempotence).
    int led[NODES] = {0}, dlq_of[NODES] = {0}, victim = -1;
    for (int i = 0; i < l.n; i++)
        if (l.of[i] >= 0 && l.of[i] < NODES)
            led[l.of[i]]++;
    int32_t dlq_leaders[2];
    int nd = hk_kc_leaders(sc.brokers, hk_th_kafka_name("jobs.dlq"), dlq_leaders, 2);
    for (int i = 0; i < nd; i++)
        if (dlq_leaders[i] >= 0 && dlq_leaders[i] < NODES)
            dlq_of[dlq_leaders[i]]++;
    for (int i = 0; i < NODES; i++)
        if (led[i] > 0 && (victim < 0 || dlq_of[i] > dlq_of[victim] ||
                           (dlq_of[i] == dlq_of[victim] && led[i] > led[victim])))
            victim = i;
    ck_assert_int_ge(victim, 0);
    int dlq_led = dlq_of[victim];
    hk_sink_stats_t at_kill;
    hk_sink_stats(sink, &at_kill);
    int64_t lag_at_kill = hk_th_group_lag(sc.brokers, "hookd", "jobs");
    int64_t t_kill = hk_th_now_ms();
    ck_assert_int_eq(hk_kc_stop_node(&kc, victim), 0);
    node_down = victim;
    ck_assert_msg(at_kill.unique_ok < FO_JOBS - n_dlq, "the run ended before the kill");

    ck_assert_msg(hk_th_wait_for(moved_off, &victim, 60000),
                  "jobs partitions still led by node %d 60 s after its kill", victim);
    int64_t t_moved = hk_th_now_ms();
    hk_sink_stats_t at_moved;
    hk_sink_stats(sink, &at_moved);
    uint64_t more = at_moved.unique_ok + 500;
    if (more > FO_JOBS - n_dlq)
        more = FO_JOBS - n_dlq;
    int resumed = hk_th_wait_unique_ok(sink, more, 120000);
    int64_t t_resumed = hk_th_now_ms();
    ck_assert_msg(resumed, "deliveries did not resume after the failover");
    uint64_t all = FO_JOBS - n_dlq;
    ck_assert_msg(hk_th_wait_unique_ok(sink, all, 300000), "jobs lost");
    int64_t t_all = hk_th_now_ms();
    ck_assert_msg(hk_th_wait_lag_zero(sc.brokers, "hookd", "jobs", 60000),
                  "offsets did not reach the end");

    // Each DLQ job's record present; more records than attempts would be the
    // producer's own duplicates.
    unsigned *attempts400 = hk_th_hold_mem(calloc(FO_JOBS, sizeof(unsigned)));
    hk_sink_req_t *reqs;
    size_t nreq = hk_sink_reqs(sink, &reqs);
    hk_th_hold(HK_TH_HELD_REQS, reqs, nreq);
    for (size_t i = 0; i < nreq; i++) {
        long long k = body_n(reqs[i].body);
        ck_assert(k >= 0 && k < FO_JOBS);
        attempts400[k] += reqs[i].status == 400;
    }
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(sc.brokers, "jobs.dlq", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, nrec);
    unsigned *in_dlq = hk_th_hold_mem(calloc(FO_JOBS, sizeof(unsigned)));
    for (size_t i = 0; i < nrec; i++) {
        long long k = body_n(recs[i].value);
        ck_assert_msg(k >= 0 && k < FO_JOBS && k % FO_EVERY == 0, "DLQ record %s", recs[i].value);
        in_dlq[k]++;
    }
    size_t dlq_lost = 0, dlq_extra = 0, dlq_repeats = 0;
    for (size_t i = 0; i < FO_JOBS; i += FO_EVERY) {
        dlq_lost += in_dlq[i] == 0;
        dlq_extra += in_dlq[i] > attempts400[i] ? in_dlq[i] - attempts400[i] : 0;
        dlq_repeats += in_dlq[i] > 1 ? in_dlq[i] - 1 : 0;
    }
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    int lost_assign = hk_th_log_count(log, "\"lost\":true");
    printf("it_realkafka_failover: %d jobs (%zu to the DLQ), node %d killed (led %d of %d jobs "
           "partitions, %d of %d DLQ partitions) with %llu delivered, lag %lld; leaders moved "
           "after %.1fs (%llu delivered then), 500 more %.1fs after the kill; all delivered "
           "%.1fs after it; "
           "lost %llu, duplicates %llu (partitions lost by hookd: %d, commit_failed lines: %d), "
           "DLQ %zu records (lost %zu, repeats %zu, more than attempts %zu), lag at the end 0, "
           "run %.1fs\n",
           FO_JOBS, n_dlq, victim, led[victim], FO_PARTS, dlq_led, nd,
           (unsigned long long)at_kill.unique_ok, (long long)lag_at_kill,
           (double)(t_moved - t_kill) / 1000.0, (unsigned long long)at_moved.unique_ok,
           (double)(t_resumed - t_kill) / 1000.0, (double)(t_all - t_kill) / 1000.0,
           (unsigned long long)(FO_JOBS - n_dlq - st.unique_ok),
           (unsigned long long)st.duplicate_ok, lost_assign,
           hk_th_log_count(log, "\"event\":\"commit_failed\""), nrec, dlq_lost, dlq_repeats,
           dlq_extra, (double)(t_all - t0) / 1000.0);
    ck_assert_uint_eq(st.unique_ok, FO_JOBS - n_dlq);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(dlq_lost, 0);
    ck_assert_uint_eq(dlq_extra, 0);
    // hookd kept its assignment: the failover moved leaders, not partitions, so a
    // repeat could only come from a commit the group lost, bounded by the lag then.
    ck_assert_int_le((int64_t)st.duplicate_ok, lag_at_kill);
    ck_assert_int_eq(hk_th_log_count(log, "\"event\":\"started\""), 1);

    int status = hk_th_stop(&replicas[0], GRACE_MS + 5000);
    ck_assert_msg(hk_th_exited_ok(status), "hookd did not exit 0 (status %d)", status);
    assert_tool_lag_zero("it_realkafka_failover", "jobs", FO_PARTS);
    ck_assert_int_eq(hk_kc_start_node(&kc, victim), 0);
    node_down = -1;
}
END_TEST

// ---- 2. replicas on a real coordinator ------------------------------------------------

#define RP_JOBS  30000
#define RP_PARTS 12

static const char *replica_log[MAX_REPLICAS] = {
    "it_realkafka_replica1.log", "it_realkafka_replica2.log", "it_realkafka_replica3.log",
    "it_realkafka_replica4.log"};

static const char *rp_path(size_t i)
{
    (void)i;
    return "/slow/5";
}

// When a replica's log says it last gave each jobs partition away while alive
// (wall clock ms, 0 never). Assignments are logged as counts only: a member may
// get a partition back after giving it away.
typedef struct revokes {
    int64_t last_ms[32];
} revokes_t;

static int note_revoke(json_t *line, int64_t at_ms, void *arg)
{
    revokes_t *rv = arg;
    const char *t = json_string_value(json_object_get(line, "topic"));
    json_int_t p = json_integer_value(json_object_get(line, "partition"));
    if (t && strcmp(t, hk_th_kafka_name("jobs")) == 0 && p >= 0 && p < 32)
        rv->last_ms[p] = at_ms;
    return 0;
}

static revokes_t revokes_of(const char *path)
{
    revokes_t rv = {0};
    hk_th_log_each(path, "\"event\":\"partition_revoked\"", note_revoke, &rv);
    return rv;
}

static void assert_running(int i, const char *when)
{
    int status = replicas[i].pid > 0 ? hk_th_wait(&replicas[i], 0) : -1;
    ck_assert_msg(replicas[i].pid > 0 && status == -1, "replica %d gone %s (status %d, see %s)",
                  i + 1, when, status, replica_log[i]);
}

START_TEST(test_replicas_repeat_only_the_killed_members_uncommitted_jobs)
{
    const char *topics[] = {"jobs:12", "jobs.dlq:2", "jobs.retry:4", NULL};
    ck_assert_int_eq(hk_th_scene_kafka(&sc, topics), 0);
    char **keys, **values = make_jobs(RP_JOBS, &keys, rp_path, "");
    ck_assert_uint_eq(hk_th_produce(sc.brokers, "jobs", values, keys, RP_JOBS), RP_JOBS);

    // A short session so the killed member's partitions move on within seconds
    // (scripts/kafka lowers the broker's floor to 1 s); few transfers per replica so
    // the run outlasts the three changes.
    const char *conf = "it_realkafka_replicas.conf";
    FILE *cf = fopen(conf, "w");
    ck_assert_ptr_nonnull(cf);
    fprintf(cf, "[kafka]\nrdkafka.session.timeout.ms = 3000\n");
    fclose(cf);
    char *env[MAX_REPLICAS][5] = {{"HOOKD_SIGNING_SECRET=" HK_TH_R1_SECRET},
                                  {"HOOKD_SIGNING_SECRET=" HK_TH_R2_SECRET},
                                  {"HOOKD_SIGNING_SECRET=" HK_TH_R3_SECRET},
                                  {"HOOKD_SIGNING_SECRET=" HK_TH_R4_SECRET}};
    for (int i = 0; i < MAX_REPLICAS; i++) {
        env[i][1] = "HOOKD_DELIVERY_THREADS=1";
        env[i][2] = "HOOKD_DELIVERY_MAX_TRANSFERS_PER_THREAD=4";
        env[i][3] = "HOOKD_LIMITS_MAX_INFLIGHT_JOBS=1000";
        unlink(replica_log[i]);
    }
    int64_t t0 = hk_th_now_ms();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(hk_th_hookd_start(&replicas[i], sc.brokers, env[i], conf, replica_log[i]),
                         0);

    // Scale out.
    uint64_t scale_at = RP_JOBS * 15 / 100;
    ck_assert_msg(hk_th_wait_unique_ok(sink, scale_at, 240000), "the replicas never got going");
    hk_sink_stats_t at_scale;
    hk_sink_stats(sink, &at_scale);
    int64_t t_scale = hk_th_now_ms();
    ck_assert_int_eq(hk_th_hookd_start(&replicas[3], sc.brokers, env[3], conf, replica_log[3]), 0);
    ck_assert_msg(hk_th_wait_for(hk_th_holds_partitions, (void *)replica_log[3], 60000),
                  "replica 4 never got a partition");
    int64_t t_joined = hk_th_now_ms();
    hk_th_sleep_ms(2000);

    // Scale in: SIGTERM replica 1.
    for (int i = 0; i < MAX_REPLICAS; i++)
        assert_running(i, "before the SIGTERM");
    hk_sink_stats_t at_term;
    hk_sink_stats(sink, &at_term);
    ck_assert_msg(at_term.unique_ok < RP_JOBS, "the run ended before the SIGTERM");
    int64_t t_term = hk_th_now_ms();
    hk_th_kill(&replicas[0], SIGTERM);
    int status = hk_th_wait(&replicas[0], GRACE_MS + 5000);
    int64_t term_ms = hk_th_now_ms() - t_term;
    ck_assert_msg(hk_th_exited_ok(status), "replica 1 did not exit 0 after SIGTERM (status %d)",
                  status);
    hk_th_sleep_ms(3000);

    // SIGKILL replica 2.
    for (int i = 1; i < MAX_REPLICAS; i++)
        assert_running(i, "before the SIGKILL");
    ck_assert_msg(hk_th_partitions_held(replica_log[1]) > 0, "replica 2 holds no partition");
    hk_sink_stats_t at_kill;
    hk_sink_stats(sink, &at_kill);
    ck_assert_msg(at_kill.unique_ok < RP_JOBS, "the run ended before the kill");
    int64_t t_kill = hk_th_now_ms();
    hk_th_kill(&replicas[1], SIGKILL);
    ck_assert_int_ne(hk_th_wait(&replicas[1], 10000), -1);
    int64_t lag_at_kill = hk_th_group_lag(sc.brokers, "hookd", "jobs");
    ck_assert_int_ge(lag_at_kill, 0);

    uint64_t all = RP_JOBS;
    ck_assert_msg(hk_th_wait_unique_ok(sink, all, 300000), "jobs lost");
    int64_t t_all = hk_th_now_ms();
    ck_assert_msg(hk_th_wait_lag_zero(sc.brokers, "hookd", "jobs", 60000),
                  "offsets did not reach the end");
    for (int i = 2; i < MAX_REPLICAS; i++)
        assert_running(i, "at the end");

    // Which partition each job is on.
    int32_t *part_of = hk_th_hold_mem(malloc(RP_JOBS * sizeof(int32_t)));
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(sc.brokers, "jobs", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, nrec);
    ck_assert_uint_eq(nrec, RP_JOBS);
    for (size_t i = 0; i < nrec; i++) {
        long long k = body_n(recs[i].value);
        ck_assert(k >= 0 && k < RP_JOBS);
        part_of[k] = recs[i].partition;
    }
    revokes_t killed = revokes_of(replica_log[1]);

    // A repeat (2xx for a job already answered 2xx) is the crash's when replica 2
    // delivered it first, after it last gave that job's partition away (so it held
    // the partition from then until it died), and the repeat came after the kill.
    // Any other repeat is a graceful move's (scale-out, SIGTERM): a revoke commits
    // what the member finished. Both clocks are this host's wall clock.
    int8_t *first_by = hk_th_hold_mem(malloc(RP_JOBS));
    memset(first_by, -1, RP_JOBS);
    int64_t *first_at = hk_th_hold_mem(calloc(RP_JOBS, sizeof(int64_t)));
    hk_sink_req_t *reqs;
    size_t nreq = hk_sink_reqs(sink, &reqs);
    hk_th_hold(HK_TH_HELD_REQS, reqs, nreq);
    uint64_t dups = 0, from_crash = 0, graceful = 0, sent_by[MAX_REPLICAS] = {0};
    char first_graceful[256] = "";
    for (size_t i = 0; i < nreq; i++) {
        hk_sink_req_t *r = &reqs[i];
        long long k = body_n(r->body);
        ck_assert_msg(k >= 0 && k < RP_JOBS, "unexpected body %s", r->body);
        int by = hk_th_signer(r, hk_th_replica_secret, MAX_REPLICAS);
        ck_assert_msg(by >= 0, "job %lld signed by no replica's secret", k);
        if (r->status < 200 || r->status > 299)
            continue;
        sent_by[by]++;
        if (first_by[k] < 0) {
            first_by[k] = (int8_t)by;
            first_at[k] = r->at_ms;
            continue;
        }
        dups++;
        if (i >= at_kill.requests && first_by[k] == 1 && first_at[k] > killed.last_ms[part_of[k]]) {
            from_crash++;
        } else if (graceful++ == 0) {
            snprintf(first_graceful, sizeof(first_graceful),
                     "job %lld (partition %d) first by replica %d, again by replica %d (request "
                     "%zu; SIGTERM at %llu, kill at %llu)",
                     k, part_of[k], first_by[k] + 1, by + 1, i,
                     (unsigned long long)at_term.requests, (unsigned long long)at_kill.requests);
        }
    }
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    int live_end = hk_th_partitions_held(replica_log[2]) + hk_th_partitions_held(replica_log[3]);
    printf("it_realkafka_replicas: %d jobs, lost %llu, duplicates %llu: %llu from the SIGKILL "
           "(lag at kill %lld), %llu from graceful moves; 2xx sent by replica 1..4: %llu %llu "
           "%llu %llu\n",
           RP_JOBS, (unsigned long long)(RP_JOBS - st.unique_ok), (unsigned long long)dups,
           (unsigned long long)from_crash, (long long)lag_at_kill, (unsigned long long)graceful,
           (unsigned long long)sent_by[0], (unsigned long long)sent_by[1],
           (unsigned long long)sent_by[2], (unsigned long long)sent_by[3]);
    printf("it_realkafka_replicas: 3 replicas %.1fs (%llu delivered), replica 4 assigned %.1fs "
           "after its start, SIGTERM exit %lld ms, kill at %llu delivered, kill->all delivered "
           "%.1fs; run %.1fs; survivors hold %d partitions\n",
           (double)(t_scale - t0) / 1000.0, (unsigned long long)at_scale.unique_ok,
           (double)(t_joined - t_scale) / 1000.0, (long long)term_ms,
           (unsigned long long)at_kill.unique_ok, (double)(t_all - t_kill) / 1000.0,
           (double)(t_all - t0) / 1000.0, live_end);
    ck_assert_uint_eq(st.unique_ok, RP_JOBS);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(dups, st.duplicate_ok);
    ck_assert_int_le((int64_t)from_crash, lag_at_kill);
    ck_assert_int_eq(live_end, RP_PARTS + 4);
    for (int i = 2; i < MAX_REPLICAS; i++) {
        status = hk_th_stop(&replicas[i], GRACE_MS + 5000);
        ck_assert_msg(hk_th_exited_ok(status), "replica %d did not exit 0 (status %d)", i + 1,
                      status);
    }
    assert_tool_lag_zero("it_realkafka_replicas", "jobs", RP_PARTS);
    ck_assert_msg(graceful == 0, "%llu repeats from graceful moves: %s",
                  (unsigned long long)graceful, first_graceful);
}
END_TEST

// ---- 3. the committed offset never passes an unfinished job ------------------------------

#define CO_JOBS  4000
#define CO_HELD  100 // job i % CO_HELD == 50 is held by the sink until released
#define CO_PARTS 4

static const char *co_path(size_t i)
{
    return i % CO_HELD == CO_HELD / 2 ? "/held" : "/ok";
}

typedef struct sampler {
    atomic_int run;
    pthread_t tid;
    int64_t first_held[CO_PARTS]; // offset of the first held job per partition, -1 none
    int64_t end[CO_PARTS];        // high watermark
    int samples;
    int passed; // samples where some committed offset passed the first held job
    char msg[256];
    int64_t last[CO_PARTS];
} sampler_t;

static void *sampler_main(void *arg)
{
    sampler_t *s = arg;
    while (atomic_load(&s->run)) {
        int64_t c[CO_PARTS];
        if (hk_kc_committed(sc.brokers, hk_th_kafka_name("hookd"), hk_th_kafka_name("jobs"), c,
                            CO_PARTS) == CO_PARTS) {
            s->samples++;
            for (int p = 0; p < CO_PARTS; p++) {
                s->last[p] = c[p];
                if (s->first_held[p] >= 0 && c[p] > s->first_held[p] && s->passed++ == 0)
                    snprintf(s->msg, sizeof(s->msg),
                             "partition %d committed at %lld, past unfinished job at offset %lld",
                             p, (long long)c[p], (long long)s->first_held[p]);
            }
        }
        hk_th_sleep_ms(200);
    }
    return NULL;
}

// Every partition committed as far as it can be: up to its first held job, or
// to its end.
static int committed_up_to_holes(void *arg)
{
    sampler_t *s = arg;
    for (int p = 0; p < CO_PARTS; p++)
        if (s->last[p] != (s->first_held[p] >= 0 ? s->first_held[p] : s->end[p]))
            return 0;
    return 1;
}

START_TEST(test_committed_offset_never_passes_an_unfinished_job)
{
    const char *topics[] = {"jobs:4", "jobs.dlq:1", "jobs.retry:2", NULL};
    ck_assert_int_eq(hk_th_scene_kafka(&sc, topics), 0);
    // Held jobs: the sink keeps them unanswered; each attempt times out after 5 s and
    // is retried in memory (its offset held) until the test lifts the rule.
    ck_assert_int_eq(hk_sink_set_rule(sink, "/held", 200, 3600000, NULL), 0);
    char **keys,
        **values = make_jobs(CO_JOBS, &keys, co_path, "\"timeout_ms\":5000,\"max_attempts\":100");
    ck_assert_uint_eq(hk_th_produce(sc.brokers, "jobs", values, keys, CO_JOBS), CO_JOBS);

    sampler_t s = {.samples = 0};
    for (int p = 0; p < CO_PARTS; p++)
        s.first_held[p] = s.last[p] = -1;
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(sc.brokers, "jobs", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, nrec);
    ck_assert_uint_eq(nrec, CO_JOBS);
    int with_hole = 0;
    size_t n_held = 0;
    for (size_t i = 0; i < nrec; i++) {
        int32_t p = recs[i].partition;
        ck_assert(p >= 0 && p < CO_PARTS);
        if (recs[i].offset + 1 > s.end[p])
            s.end[p] = recs[i].offset + 1;
        if (!strstr(recs[i].value, "/held/"))
            continue;
        n_held++;
        if (s.first_held[p] < 0 || recs[i].offset < s.first_held[p]) {
            with_hole += s.first_held[p] < 0;
            s.first_held[p] = recs[i].offset;
        }
    }
    ck_assert_int_ge(with_hole, 2);

    const char *log = "it_realkafka_commit.log";
    unlink(log);
    char *env[] = {"HOOKD_RETRY_SCHEDULE=500ms",   "HOOKD_BREAKER_CONSECUTIVE_FAILURES=10000",
                   "HOOKD_BREAKER_WINDOW=1000",    "HOOKD_BREAKER_MIN_CALLS=1000",
                   "HOOKD_BREAKER_FAILURE_RATE=1", NULL};
    atomic_store(&s.run, 1);
    ck_assert_int_eq(pthread_create(&s.tid, NULL, sampler_main, &s), 0);
    ck_assert_int_eq(hk_th_hookd_start(&replicas[0], sc.brokers, env, NULL, log), 0);
    uint64_t others = CO_JOBS - n_held;
    int flowed = hk_th_wait_unique_ok(sink, others, 240000);
    // Committed as far as it may go, then a few more auto-commit rounds (1 s each)
    // in which nothing may move past the holes.
    int settled = flowed && hk_th_wait_for(committed_up_to_holes, &s, 60000);
    int64_t t_settled = hk_th_now_ms();
    int samples_at_settle = s.samples;
    hk_th_sleep_ms(3000);

    // Kafka's own tool, while the held jobs are still unfinished.
    hk_kc_row_t rows[CO_PARTS];
    int nrows = hk_kc_describe_group(&kc, hk_th_kafka_name("hookd"), hk_th_kafka_name("jobs"), rows,
                                     CO_PARTS);
    atomic_store(&s.run, 0);
    pthread_join(s.tid, NULL);
    ck_assert_msg(flowed, "the other jobs were not delivered");
    printf("it_realkafka_commit: %zu held jobs in %d of %d partitions; %d samples of the "
           "committed offsets (%d after they settled, over %.1fs), %d passed an unfinished job\n",
           n_held, with_hole, CO_PARTS, s.samples, s.samples - samples_at_settle,
           (double)(hk_th_now_ms() - t_settled) / 1000.0, s.passed);
    ck_assert_msg(s.passed == 0, "%s", s.msg);
    ck_assert_msg(settled, "committed offsets never reached the first held jobs");
    ck_assert_int_eq(nrows, CO_PARTS);
    for (int i = 0; i < nrows; i++) {
        int p = rows[i].partition;
        int64_t want = s.first_held[p] >= 0 ? s.first_held[p] : s.end[p];
        printf("it_realkafka_commit: kafka-consumer-groups: partition %d current %lld end %lld "
               "lag %lld (first held job at %lld)\n",
               p, (long long)rows[i].current, (long long)rows[i].end, (long long)rows[i].lag,
               (long long)s.first_held[p]);
        ck_assert_int_eq(rows[i].current, want);
    }

    // Released: everything finishes and the lag goes to 0.
    ck_assert_int_eq(hk_sink_set_rule(sink, "/held", 0, 0, NULL), 0);
    uint64_t all = CO_JOBS;
    ck_assert_msg(hk_th_wait_unique_ok(sink, all, 120000), "held jobs never delivered");
    ck_assert_msg(hk_th_wait_lag_zero(sc.brokers, "hookd", "jobs", 60000),
                  "offsets did not reach the end");
    int status = hk_th_stop(&replicas[0], GRACE_MS + 5000);
    ck_assert_msg(hk_th_exited_ok(status), "hookd did not exit 0 (status %d)", status);
    assert_tool_lag_zero("it_realkafka_commit", "jobs", CO_PARTS);
}
END_TEST

// One cluster for the three cases (CK_RUN_CASE=failover|replicas|commit runs one).
static int before(void)
{
    if (hk_kc_up(&kc, NODES, CLUSTER_CONF) != 0) {
        fprintf(stderr, "it_realkafka_group: scripts/kafka up --nodes %d failed\n", NODES);
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
    Suite *s = suite_create("it_realkafka_group");
    hk_ck_case(s, "failover", 900, setup, teardown, test_leader_sigkilled_mid_run_loses_nothing);
    hk_ck_case(s, "replicas", 900, setup, teardown,
               test_replicas_repeat_only_the_killed_members_uncommitted_jobs);
    hk_ck_case(s, "commit", 900, setup, teardown,
               test_committed_offset_never_passes_an_unfinished_job);
    return s;
}
