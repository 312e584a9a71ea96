// intake: one thread, one consumer. Per partition it keeps an offset tracker and an
// assignment generation; completions from other threads arrive on a locked list
// and are applied here, so the trackers need no lock. A completion whose
// generation is stale (the partition was revoked meanwhile) is dropped.
#include "queue/intake.h"
#include "base/clock.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/headers.h"
#include "queue/kconf.h"
#include "queue/offsets.h"
#include "base/log.h"
#include "base/metrics.h"

#define STORE_INTERVAL_MS      50
#define LAG_INTERVAL_MS        1000
#define REVOKE_WAIT_MAX_MS     5000
#define REVOKE_SETTLE_MS       500 // see revoke(); mock cluster only
#define COMMIT_RETRY_MS        20
#define ASSIGN_SETTLE_MS       1000   // see part_t.settle_until; mock cluster only
#define ORPHAN_TTL_MS          30000  // refused revoke commits are tried again this long (mock)
#define LOST_ORPHAN_TTL_MS     600000 // a lost partition's finished offset is kept this long
#define ORPHAN_RETRY_MS        100
#define COMMITTED_WAIT_MS      2000 // OffsetFetch (rd_kafka_committed) timeout
#define ASSIGN_AFTER_REVOKE_MS 2000 // see in_assign_then_join
#define HOLD_MAX_MS            2000 // see in_hold_since
#define POLL_BATCH_MAX         32   // messages taken per loop turn, see more_now
#define CLOSE_MIN_MS           3000 // see close_consumer

typedef struct part {
    hk_offsets_t *ot;      // NULL when not assigned to us
    uint64_t gen;          // generation of the current assignment
    int64_t stored;        // last offset handed to rd_kafka_offsets_store
    int64_t committed;     // last offset this consumer committed itself (revoke), -1 none
    int dirty;             // finished offsets since the last store
    int span_over;         // span past limits.max_partition_span (hysteresis at 80%)
    int paused;            // paused at the broker (by us)
    int64_t held_until;    // retry topic: head not due before this (monotonic ms), 0 = not held
    int64_t settle_until;  // just assigned (mock cluster): paused until then, then seeks to the
                           // committed offset (the last owner may still be committing), 0 = settled
    hk_offsets_t *lost_ot; // came back after it was lost: its old tracker (see handle)
    long lost_skipped;     // records skipped as finished before the loss
    // Where this assignment's fetch starts, as librdkafka's statistics show it once
    // its OffsetFetch is answered (see note_starts): the group's committed offset,
    // START_LOW where the group has none and auto.offset.reset is earliest, -1 not
    // known (yet). What is finished before the first stored offset (update_lag).
    int64_t group_at;
} part_t;

#define START_LOW (-2) // part_t.group_at: from the low watermark

// A revoked partition's finished offset the mock cluster refused to commit during
// the revoke, or a lost partition's (the group dropped us: after a broker outage
// longer than the session, say): committed once this member has rejoined (see
// in_rejoining), unless the group's committed offset is already there, and where
// the partition comes back to us, where its fetch starts (see assign_from_orphans).
// Any such commit or start is safe from loss: every offset below it finished here.
// The new owner settles meanwhile.
typedef struct orphan {
    struct orphan *next;
    char topic[256];
    int32_t partition;
    int64_t offset;
    int64_t until_ms;
    hk_offsets_t *ot; // a lost partition's tracker: what finished beyond `offset`
} orphan_t;

// The two topics intake consumes: jobs, and hookd's own retry topic.
enum { T_JOBS = 0, T_RETRY = 1, T_CNT = 2 };

typedef struct topic_parts {
    const char *name;
    part_t *parts;
    int cnt;
} topic_parts_t;

struct hk_intake_s {
    const hk_config_t *in_cfg;
    rd_kafka_t *in_rk;
    hk_intake_unqueue_cb *in_unqueue; // revoked partitions: queued tasks back (pipeline)
    void *in_unqueue_arg;
    hk_producer_t *in_producer;

    topic_parts_t in_topics[T_CNT];
    uint64_t in_gen_seq;
    int in_over; // global in-flight limits exceeded (hysteresis at 80%)
    // Over the limits, intake first only stops polling ("holds"): what librdkafka
    // has fetched stays in its queue (bounded by queued.max.messages.kbytes), so
    // the moment the limits allow, work flows again. Pausing at the broker instead
    // drops that prefetch, and librdkafka 2.0 then starts fetching again only at
    // its next broker wake-up, up to a second later: the delivery threads ran dry
    // once per pause. Past HOLD_MAX_MS the partitions are paused at the broker
    // too (in_broker_paused), so that polling, which rebalances need, can go on.
    int64_t in_hold_since; // monotonic ms in_over began, 0 = not over
    int in_broker_paused;
    int in_fc_dirty; // pause state may need to change
    int in_closing;  // in rd_kafka_consumer_close: do not wait on revoke
    // The cluster is librdkafka's mock (its cluster id is "mockCluster..."). It
    // refuses every OffsetCommit while a join is in progress, and until every member
    // has its assignment; a real coordinator accepts commits of the current
    // generation until the join completes, and completes no join before every member
    // has rejoined, i.e. returned from its revoke. So only on the mock do revokes
    // wait REVOKE_SETTLE_MS, refused revoke commits become orphans and new partitions
    // settle (docs/architecture.md, "The mock cluster and a real one").
    int in_mock;
    int in_cluster_known;          // in_mock is set (see detect_cluster)
    int in_assigned_once;          // an assignment callback came (see hk_intake_destroy)
    int in_reset_earliest;         // auto.offset.reset is earliest (see part_t.group_at)
    int in_close_given_up;         // the close outlasted the grace period (see close_consumer)
    int64_t in_close_deadline_ms;  // monotonic; see close_consumer
    int in_bc_pending;             // commit_bounded's commit is unanswered
    rd_kafka_resp_err_t in_bc_err; // and its answer
    // A JoinGroup of ours may be in flight: from a revoke, or a commit refused as
    // the group rebalances, until the next assignment. hookd makes no commit of its
    // own then (outside the revoke callback, where none is): the coordinator
    // answers requests on a connection in order, so a commit queued behind our
    // JoinGroup is judged against the generation that join creates, refused as
    // ILLEGAL_GENERATION, and librdkafka then declares the whole assignment lost,
    // which costs every finished offset not committed yet and another join round.
    int in_rejoining;
    // After a cooperative revoke (not lost, not closing) librdkafka calls the
    // assignment callback with what this rebalance adds, at once, and joins again
    // after it: that call ends no join. Until this time (monotonic ms), 0 = none.
    int64_t in_assign_then_join;
    int64_t in_last_store_ms;
    orphan_t *in_orphans;
    int64_t in_orphans_next_ms;
    int64_t in_last_lag_ms;

    _Atomic(const hk_config_t *) in_next_cfg; // set by hk_intake_set_config
    hk_intake_cancel_cb *in_cancel;
    void *in_cancel_arg;
    hk_intake_batch_cb *in_batch;
    void *in_batch_arg;
    hk_intake_cancel_cb *in_revoking;
    void *in_revoking_arg;
    hk_intake_submit_cb *in_submit;
    void *in_submit_arg;
    atomic_int in_stop;
    atomic_int in_assigned; // partitions assigned (both topics)
    atomic_long in_inflight;

    pthread_mutex_t in_lock; // guards the done list
    hk_task_t *in_done;
};

static int topic_index(hk_intake_t *in, const char *topic)
{
    for (int t = 0; t < T_CNT; t++)
        if (strcmp(in->in_topics[t].name, topic) == 0)
            return t;
    return -1;
}

static part_t *part_get(hk_intake_t *in, const char *topic, int32_t partition)
{
    int t = topic_index(in, topic);
    if (t < 0 || partition < 0)
        return NULL;
    topic_parts_t *tp = &in->in_topics[t];
    if (partition >= tp->cnt) {
        int cnt = partition + 1;
        part_t *parts = realloc(tp->parts, (size_t)cnt * sizeof(*parts));
        if (!parts)
            return NULL;
        memset(parts + tp->cnt, 0, (size_t)(cnt - tp->cnt) * sizeof(*parts));
        tp->parts = parts;
        tp->cnt = cnt;
    }
    return &tp->parts[partition];
}

// A task leaves the pipeline: forget its memory.
static void release(hk_intake_t *in, hk_task_t *task)
{
    atomic_fetch_sub(&in->in_inflight, 1);
    hk_metric_add(inflight_jobs, -1);
    hk_metric_add(inflight_bytes, -(int64_t)task->mem_bytes);
    hk_task_destroy(task);
}

static void update_span(hk_intake_t *in, part_t *p)
{
    size_t span = hk_offsets_span(p->ot);
    size_t max = (size_t)in->in_cfg->limits_max_partition_span;
    int over = p->span_over ? span * 10 >= max * 8 : span >= max;
    if (over != p->span_over) {
        p->span_over = over;
        in->in_fc_dirty = 1;
    }
}

void hk_intake_done(hk_task_t *task, void *arg)
{
    hk_intake_t *in = arg;
    pthread_mutex_lock(&in->in_lock);
    task->next = in->in_done;
    in->in_done = task;
    pthread_mutex_unlock(&in->in_lock);
}

static void drain_done(hk_intake_t *in)
{
    pthread_mutex_lock(&in->in_lock);
    hk_task_t *list = in->in_done;
    in->in_done = NULL;
    pthread_mutex_unlock(&in->in_lock);

    while (list) {
        hk_task_t *task = list;
        list = task->next;
        if (task->cancelled) {
            // Revoked mid-transfer: not delivered, not finished; the new owner
            // of the partition redelivers it.
            release(in, task);
            continue;
        }
        if (task->to_retry_topic) {
            hk_metric_add(retried_via_topic, 1);
        } else if (task->outcome == HK_OUTCOME_DELIVERED) {
            hk_metric_add(delivered, 1);
        } else {
            hk_metric_add(dead_lettered, 1);
            hk_metric_add(dlq_by_class[task->outcome], 1);
            hk_log(HK_LOG_INFO, "dead_lettered", "{s:s,s:s,s:s,s:i,s:i,s:s,s:i,s:I}", "id",
                   task->job ? task->job->id : "", "class", hk_outcome_name(task->outcome), "error",
                   task->error, "http_status", task->http_status, "attempts", task->attempts,
                   "topic", task->origin_topic, "partition", (int)task->origin_partition, "offset",
                   (json_int_t)task->origin_offset);
        }
        part_t *p = part_get(in, task->topic, task->partition);
        if (p && p->ot && p->gen == task->generation) {
            if (hk_offsets_finish(p->ot, task->offset) == 0) {
                p->dirty = 1;
                update_span(in, p);
            }
        }
        release(in, task);
    }
}

// Hands every partition's highest contiguous finished offset to librdkafka, which
// commits it on its auto-commit timer (and on revoke / close).
static void store_offsets(hk_intake_t *in)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    for (int t = 0; t < T_CNT; t++) {
        topic_parts_t *tp = &in->in_topics[t];
        for (int i = 0; i < tp->cnt; i++) {
            part_t *p = &tp->parts[i];
            if (!p->ot || !p->dirty)
                continue;
            p->dirty = 0;
            int64_t c = hk_offsets_committable(p->ot);
            if (c <= p->stored)
                continue;
            if (!list)
                list = rd_kafka_topic_partition_list_new(8);
            rd_kafka_topic_partition_list_add(list, tp->name, i)->offset = c;
            p->stored = c;
        }
    }
    if (!list)
        return;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(in->in_rk, list);
    if (err)
        hk_log(HK_LOG_WARN, "offsets_store_failed", "{s:s}", "error", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
}

static void apply_pause(hk_intake_t *in)
{
    long jobs = atomic_load(&in->in_inflight);
    long long bytes = (long long)hk_metric_get(inflight_bytes);
    long max_jobs = in->in_cfg->limits_max_inflight_jobs;
    long long max_bytes = in->in_cfg->limits_max_inflight_bytes;
    int over = in->in_over ? (jobs * 10 >= max_jobs * 8 || bytes * 10 >= max_bytes * 8)
                           : (jobs >= max_jobs || bytes >= max_bytes);
    if (over != in->in_over) {
        in->in_over = over;
        in->in_hold_since = over ? hk_clock_mono_ms() : 0;
        hk_metric_add(paused, over ? 1 : -1);
        hk_log(HK_LOG_INFO, over ? "intake_paused" : "intake_resumed", "{s:i,s:I}", "inflight_jobs",
               (int)jobs, "inflight_bytes", (json_int_t)bytes);
    }
    int broker = in->in_over && hk_clock_mono_ms() - in->in_hold_since >= HOLD_MAX_MS;
    if (broker != in->in_broker_paused) {
        in->in_broker_paused = broker;
        in->in_fc_dirty = 1;
    }
    if (!in->in_fc_dirty)
        return;
    in->in_fc_dirty = 0;

    rd_kafka_topic_partition_list_t *pause = rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_list_t *resume = rd_kafka_topic_partition_list_new(4);
    for (int t = 0; t < T_CNT; t++) {
        topic_parts_t *tp = &in->in_topics[t];
        for (int i = 0; i < tp->cnt; i++) {
            part_t *p = &tp->parts[i];
            if (!p->ot)
                continue;
            int want = in->in_broker_paused || p->span_over || p->held_until || p->settle_until ||
                       atomic_load(&in->in_stop);
            if (want == p->paused)
                continue;
            p->paused = want;
            hk_metric_add(paused_partitions, want ? 1 : -1);
            rd_kafka_topic_partition_list_add(want ? pause : resume, tp->name, i);
            if (p->span_over && !in->in_broker_paused)
                hk_log(HK_LOG_INFO, want ? "partition_paused" : "partition_resumed",
                       "{s:s,s:i,s:i}", "topic", tp->name, "partition", i, "span",
                       (int)hk_offsets_span(p->ot));
        }
    }
    if (pause->cnt)
        rd_kafka_pause_partitions(in->in_rk, pause);
    if (resume->cnt)
        rd_kafka_resume_partitions(in->in_rk, resume);
    rd_kafka_topic_partition_list_destroy(pause);
    rd_kafka_topic_partition_list_destroy(resume);
}

static void assign(hk_intake_t *in, rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        part_t *p = part_get(in, parts->elems[i].topic, parts->elems[i].partition);
        if (!p)
            continue;
        if (!p->ot)
            atomic_fetch_add(&in->in_assigned, 1);
        hk_offsets_destroy(p->ot);
        hk_offsets_destroy(p->lost_ot);
        if (p->paused)
            hk_metric_add(paused_partitions, -1);
        *p = (part_t){.ot = hk_offsets_new(),
                      .gen = ++in->in_gen_seq,
                      .stored = -1,
                      .committed = -1,
                      .group_at = -1,
                      .settle_until = in->in_mock ? hk_clock_mono_ms() + ASSIGN_SETTLE_MS : 0};
    }
    in->in_fc_dirty = 1; // new partitions start paused (settling, or over a limit)
}

// Partitions whose settle time is over: read their committed offsets again (the
// last owner's late commits included), seek there, and let apply_pause resume them.
static void settle(hk_intake_t *in, int64_t now)
{
    if (in->in_rejoining)
        return; // the OffsetFetch would wait behind our JoinGroup: after it
    rd_kafka_topic_partition_list_t *list = NULL;
    for (int t = 0; t < T_CNT; t++) {
        topic_parts_t *tp = &in->in_topics[t];
        for (int i = 0; i < tp->cnt; i++) {
            if (tp->parts[i].ot && tp->parts[i].settle_until && tp->parts[i].settle_until <= now) {
                if (!list)
                    list = rd_kafka_topic_partition_list_new(8);
                rd_kafka_topic_partition_list_add(list, tp->name, i);
            }
        }
    }
    if (!list)
        return;
    rd_kafka_resp_err_t err = rd_kafka_committed(in->in_rk, list, COMMITTED_WAIT_MS);
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(list->cnt);
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *e = &list->elems[i];
        part_t *p = part_get(in, e->topic, e->partition);
        if (err && now < p->settle_until + 5000) {
            p->settle_until = now + 200; // the group is busy: ask again shortly
            continue;
        }
        p->settle_until = 0;
        in->in_fc_dirty = 1;
        if (!err && !e->err && e->offset >= 0) {
            rd_kafka_topic_partition_list_add(seek, e->topic, e->partition)->offset = e->offset;
            p->group_at = e->offset;
        }
    }
    if (seek->cnt) {
        rd_kafka_error_t *error = rd_kafka_seek_partitions(in->in_rk, seek, 5000);
        if (error) {
            hk_log(HK_LOG_WARN, "seek_failed", "{s:s}", "error", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    }
    rd_kafka_topic_partition_list_destroy(seek);
    rd_kafka_topic_partition_list_destroy(list);
}

// Whether a commit's error says the group is between generations (this member
// is about to join, or its join is under way).
static int rebalancing(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
           err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID;
}

static void orphan_free(orphan_t *o)
{
    hk_offsets_destroy(o->ot);
    free(o);
}

static void orphan_done(hk_intake_t *in, orphan_t *o, const char *event, const char *why)
{
    hk_log(strcmp(event, "orphan_commit_failed") ? HK_LOG_INFO : HK_LOG_WARN, event,
           "{s:s,s:i,s:I,s:s}", "topic", o->topic, "partition", (int)o->partition, "offset",
           (json_int_t)o->offset, "why", why);
    for (orphan_t **pp = &in->in_orphans; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    orphan_free(o);
}

// Tries again the revoke commits the broker refused (see orphan_t), between joins.
static void commit_orphans(hk_intake_t *in, int64_t now)
{
    if (!in->in_orphans || in->in_rejoining || now < in->in_orphans_next_ms)
        return;
    in->in_orphans_next_ms = now + ORPHAN_RETRY_MS;
    for (orphan_t *o = in->in_orphans, *next; o; o = next) {
        next = o->next;
        if (now >= o->until_ms)
            orphan_done(in, o, "orphan_commit_failed", "expired");
    }
    if (!in->in_orphans)
        return;
    // Only where the group's committed offset is still behind (the new owner may
    // have committed past it by now).
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(4);
    for (orphan_t *o = in->in_orphans; o; o = o->next)
        rd_kafka_topic_partition_list_add(list, o->topic, o->partition);
    rd_kafka_resp_err_t err = rd_kafka_committed(in->in_rk, list, COMMITTED_WAIT_MS);
    if (err) {
        if (rebalancing(err))
            in->in_rejoining = 1;
        rd_kafka_topic_partition_list_destroy(list);
        return;
    }
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(list->cnt);
    for (orphan_t *o = in->in_orphans, *next; o; o = next) {
        next = o->next;
        rd_kafka_topic_partition_t *e =
            rd_kafka_topic_partition_list_find(list, o->topic, o->partition);
        if (e && !e->err && e->offset >= o->offset)
            orphan_done(in, o, "orphan_superseded", "committed already");
        else
            rd_kafka_topic_partition_list_add(commit, o->topic, o->partition)->offset = o->offset;
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (commit->cnt) {
        err = rd_kafka_commit(in->in_rk, commit, 0);
        if (rebalancing(err)) {
            in->in_rejoining = 1; // again after the next assignment
        } else {
            while (in->in_orphans)
                orphan_done(in, in->in_orphans, err ? "orphan_commit_failed" : "orphan_committed",
                            err ? rd_kafka_err2str(err) : "");
        }
    }
    rd_kafka_topic_partition_list_destroy(commit);
}

static long unfinished(hk_intake_t *in, rd_kafka_topic_partition_list_t *parts)
{
    long n = 0;
    for (int i = 0; i < parts->cnt; i++) {
        part_t *p = part_get(in, parts->elems[i].topic, parts->elems[i].partition);
        if (p && p->ot)
            n += (long)hk_offsets_unfinished(p->ot);
    }
    return n;
}

// Records, per partition, the offsets a commit's answer says were committed.
static void note_committed(hk_intake_t *in, const rd_kafka_topic_partition_list_t *offsets)
{
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        part_t *p = part_get(in, offsets->elems[i].topic, offsets->elems[i].partition);
        if (p && offsets->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            p->committed = offsets->elems[i].offset;
    }
}

// The result of commit_bounded's commit; on the intake thread.
static void bounded_commit_done(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    hk_intake_t *in = opaque;
    note_committed(in, offsets);
    in->in_bc_err = err;
    in->in_bc_pending = 0;
}

// Commits `offsets` and waits for the answer until in_close_deadline_ms. A
// synchronous commit made while the group rebalances waits for the join to end
// (on Kafka, until every member has rejoined): inside the close (the revoke it
// causes) that wait would outlast every stop timeout. A commit not answered in
// time stays in flight; the close waits for it as long as it may.
static rd_kafka_resp_err_t commit_bounded(hk_intake_t *in, rd_kafka_topic_partition_list_t *offsets)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(in->in_rk);
    in->in_bc_pending = 1;
    in->in_bc_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(in->in_rk, offsets, q, bounded_commit_done, in);
    if (!err) {
        while (in->in_bc_pending && hk_clock_mono_ms() < in->in_close_deadline_ms)
            rd_kafka_queue_poll_callback(q, 20);
        err = in->in_bc_pending ? RD_KAFKA_RESP_ERR__TIMED_OUT : in->in_bc_err;
    }
    in->in_bc_pending = 0;
    rd_kafka_queue_destroy(q);
    return err;
}

// Commits, synchronously, the highest finished offset of each of `parts` that is
// past what was last stored, and stores it too, so librdkafka's own commit on
// unassign cannot write an older stored offset back. A commit refused because
// the group is rebalancing is tried again until retry_until_ms (monotonic).
// Returns how many offsets were committed.
static int commit_now(hk_intake_t *in, rd_kafka_topic_partition_list_t *parts, const char *when,
                      int64_t retry_until_ms)
{
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        part_t *p = part_get(in, parts->elems[i].topic, parts->elems[i].partition);
        if (!p || !p->ot)
            continue;
        int64_t c = hk_offsets_committable(p->ot);
        if (c < 0 || c <= p->committed)
            continue;
        rd_kafka_topic_partition_list_add(commit, parts->elems[i].topic, parts->elems[i].partition)
            ->offset = c;
        p->stored = c;
    }
    int n = commit->cnt;
    if (n) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(in->in_rk, commit);
        if (err)
            hk_log(HK_LOG_WARN, "offsets_store_failed", "{s:s,s:s}", "when", when, "error",
                   rd_kafka_err2str(err));
        // While closing, a commit waits at most until the close's deadline (see
        // close_consumer and commit_bounded).
        if (in->in_closing) {
            err = commit_bounded(in, commit);
            if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
                hk_log(HK_LOG_WARN, "commit_failed", "{s:s,s:s}", "when", when, "error",
                       rd_kafka_err2str(err));
            rd_kafka_topic_partition_list_destroy(commit);
            return err && err != RD_KAFKA_RESP_ERR__NO_OFFSET ? 0 : n;
        }
        err = rd_kafka_commit(in->in_rk, commit, 0);
        // A group between assignment and the next join refuses commits until every
        // member has its assignment (the mock cluster does, briefly): try again
        // while the caller can wait.
        while (err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS &&
               hk_clock_mono_ms() + COMMIT_RETRY_MS < retry_until_ms) {
            hk_clock_sleep_ms(COMMIT_RETRY_MS);
            err = rd_kafka_commit(in->in_rk, commit, 0);
        }
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            hk_log(HK_LOG_WARN, "commit_failed", "{s:s,s:s}", "when", when, "error",
                   rd_kafka_err2str(err));
            n = 0;
        } else {
            note_committed(in, commit);
        }
    }
    rd_kafka_topic_partition_list_destroy(commit);
    return n;
}

// Revoked partitions: commit what finished so far, drop their queued tasks, give
// in-flight ones a bounded time to finish, commit what finished meanwhile (unless
// the assignment was lost), forget the rest.
static void revoke(hk_intake_t *in, rd_kafka_topic_partition_list_t *parts, int lost)
{
    // Commit first, before waiting: what finished before the revoke is most of what
    // is uncommitted; the second commit below covers what was in flight. On the
    // mock cluster (see in_mock) the first member to rejoin starts a join during
    // which every commit is refused: there no member rejoins before
    // REVOKE_SETTLE_MS, and within that time refused commits are tried again.
    int64_t revoke_start = hk_clock_mono_ms();
    int64_t settle_end = in->in_closing || !in->in_mock ? 0 : revoke_start + REVOKE_SETTLE_MS;
    drain_done(in);
    if (!lost)
        commit_now(in, parts, "revoke", settle_end);
    // Batches of these partitions checkpoint and come back (worker/batch.h).
    for (int i = 0; in->in_revoking && i < parts->cnt; i++)
        in->in_revoking(parts->elems[i].topic, parts->elems[i].partition, in->in_revoking_arg);

    // Queued tasks are dropped at once. Their offsets stay unfinished (the new
    // owner sends them), so they are counted out of what the wait below waits for.
    long *dropped = calloc((size_t)parts->cnt + 1, sizeof(*dropped));
    long dropped_all = 0;
    for (int i = 0; i < parts->cnt; i++) {
        hk_task_t *list = in->in_unqueue
                              ? in->in_unqueue(parts->elems[i].topic, parts->elems[i].partition,
                                               in->in_unqueue_arg)
                              : NULL;
        while (list) {
            hk_task_t *task = list;
            list = task->next;
            release(in, task);
            if (dropped)
                dropped[i]++;
            dropped_all++;
        }
    }
    // In-flight deliveries get a bounded time to finish.
    if (!lost && !in->in_closing) {
        int wait = in->in_cfg->shutdown_grace_ms < REVOKE_WAIT_MAX_MS
                       ? in->in_cfg->shutdown_grace_ms
                       : REVOKE_WAIT_MAX_MS;
        int64_t deadline = hk_clock_mono_ms() + wait;
        while (unfinished(in, parts) > dropped_all && hk_clock_mono_ms() < deadline) {
            hk_clock_sleep_ms(5);
            drain_done(in);
        }
    }
    drain_done(in);
    // What is still being sent would race the partition's new owner: cancel it.
    for (int i = 0; in->in_cancel && i < parts->cnt; i++) {
        part_t *p = part_get(in, parts->elems[i].topic, parts->elems[i].partition);
        long mine = dropped ? dropped[i] : 0;
        if (p && p->ot && (long)hk_offsets_unfinished(p->ot) > mine)
            in->in_cancel(parts->elems[i].topic, parts->elems[i].partition, in->in_cancel_arg);
    }
    drain_done(in);
    free(dropped);

    if (!lost)
        commit_now(in, parts, "revoke", settle_end);
    if (!lost && !in->in_closing) {
        // Returning rejoins the group: not before the settle time is over.
        int64_t settle = settle_end - hk_clock_mono_ms();
        if (settle > 0)
            hk_clock_sleep_ms((int)settle);
    }
    for (int i = 0; i < parts->cnt; i++) {
        part_t *p = part_get(in, parts->elems[i].topic, parts->elems[i].partition);
        if (!p || !p->ot)
            continue;
        int64_t finished = hk_offsets_committable(p->ot);
        orphan_t *keep = NULL;
        int beyond = lost && finished >= 0 && hk_offsets_last(p->ot) >= finished;
        if (finished >= 0 && (((lost || in->in_mock) && finished > p->committed) || beyond)) {
            orphan_t *o = calloc(1, sizeof(*o));
            if (o) {
                snprintf(o->topic, sizeof(o->topic), "%s", parts->elems[i].topic);
                o->partition = parts->elems[i].partition;
                o->offset = finished;
                o->until_ms = hk_clock_mono_ms() + (lost ? LOST_ORPHAN_TTL_MS : ORPHAN_TTL_MS);
                // What finished past the first unfinished offset (behind a DLQ job
                // waiting for the broker, say) is skipped if the partition comes back.
                if (beyond)
                    keep = o;
                o->next = in->in_orphans;
                in->in_orphans = o;
            }
        }
        hk_log(HK_LOG_INFO, "partition_revoked", "{s:s,s:i,s:I,s:I,s:i,s:b}", "topic",
               parts->elems[i].topic, "partition", parts->elems[i].partition, "committed",
               (json_int_t)p->committed, "finished", (json_int_t)hk_offsets_committable(p->ot),
               "abandoned", (int)hk_offsets_unfinished(p->ot), "lost", lost);
        if (keep)
            keep->ot = p->ot;
        else
            hk_offsets_destroy(p->ot);
        hk_offsets_destroy(p->lost_ot);
        atomic_fetch_sub(&in->in_assigned, 1);
        if (p->paused)
            hk_metric_add(paused_partitions, -1);
        *p = (part_t){.gen = ++in->in_gen_seq, .stored = -1, .committed = -1, .group_at = -1};
    }
}

// Sets in_mock from the cluster id in librdkafka's metadata cache (no request, no
// wait); known by the first rebalance, since joining needs the topics' metadata.
static void detect_cluster(hk_intake_t *in)
{
    if (in->in_cluster_known)
        return;
    char *cluster = rd_kafka_clusterid(in->in_rk, 0);
    if (!cluster)
        return;
    in->in_cluster_known = 1;
    in->in_mock = strncmp(cluster, "mockCluster", 11) == 0;
    hk_log(HK_LOG_INFO, "kafka_cluster", "{s:s,s:b}", "cluster_id", cluster, "mock", in->in_mock);
    rd_kafka_mem_free(in->in_rk, cluster);
}

// Partitions that come back to us with an orphan (above) start where we had
// finished, not at the group's committed offset, which the lost session never
// moved: without this, everything finished since the last commit before an outage
// longer than the session was sent again. A start below the group's committed
// offset (another member went further meanwhile) only repeats; one above it skips
// only what finished here. The orphan itself is committed once the join is over.
static void assign_from_orphans(hk_intake_t *in, rd_kafka_topic_partition_list_t *parts)
{
    for (orphan_t *o = in->in_orphans; o; o = o->next) {
        rd_kafka_topic_partition_t *e =
            rd_kafka_topic_partition_list_find(parts, o->topic, o->partition);
        if (!e || e->offset != RD_KAFKA_OFFSET_INVALID)
            continue;
        e->offset = o->offset;
        part_t *p = part_get(in, o->topic, o->partition);
        if (p)
            p->group_at = o->offset; // no OffsetFetch: librdkafka's committed_offset is older
        if (p && o->ot) {
            p->lost_ot = o->ot; // see handle
            p->lost_skipped = 0;
            o->ot = NULL;
        }
        hk_log(HK_LOG_INFO, "assigned_from_finished", "{s:s,s:i,s:I,s:I}", "topic", o->topic,
               "partition", (int)o->partition, "offset", (json_int_t)o->offset, "finished_up_to",
               (json_int_t)(p && p->lost_ot ? hk_offsets_last(p->lost_ot) : o->offset - 1));
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    hk_intake_t *in = opaque;
    detect_cluster(in);
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        // A join ended (cooperative rebalancing calls this after every one, with
        // what it adds, maybe nothing): commits of our own can go out again. Not
        // if this is the assignment that follows a revoke within one rebalance:
        // librdkafka joins again right after it (the partitions revoked here go
        // to their new owners in that next join).
        if (in->in_assign_then_join && hk_clock_mono_ms() < in->in_assign_then_join) {
            in->in_assign_then_join = 0;
        } else {
            in->in_assign_then_join = 0;
            in->in_rejoining = 0;
            in->in_orphans_next_ms = 0;
        }
        in->in_assigned_once = 1;
        assign(in, parts);
        assign_from_orphans(in, parts);
        hk_log(HK_LOG_INFO, "partitions_assigned", "{s:i,s:s}", "count", parts->cnt, "protocol",
               rd_kafka_rebalance_protocol(rk));
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        // Paused while they settle (see part_t.settle_until).
        if (in->in_mock && parts->cnt && !error) {
            rd_kafka_pause_partitions(rk, parts);
            for (int i = 0; i < parts->cnt; i++) {
                part_t *p = part_get(in, parts->elems[i].topic, parts->elems[i].partition);
                if (p && !p->paused) {
                    p->paused = 1;
                    hk_metric_add(paused_partitions, 1);
                }
            }
        }
    } else {
        int lost = rd_kafka_assignment_lost(rk);
        if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            revoke(in, parts, lost);
        else
            hk_log(HK_LOG_ERROR, "rebalance_error", "{s:s}", "error", rd_kafka_err2str(err));
        in->in_rejoining = 1; // librdkafka joins again once this returns
        in->in_assign_then_join =
            cooperative && !lost && !in->in_closing && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                ? hk_clock_mono_ms() + ASSIGN_AFTER_REVOKE_MS
                : 0;
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
    }
    if (error) {
        hk_log(HK_LOG_ERROR, "rebalance_failed", "{s:s}", "error", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)offsets;
    hk_intake_t *in = opaque;
    if (rebalancing(err))
        in->in_rejoining = 1;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        hk_metric_add(committed, 1);
    else if (err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        hk_log(HK_LOG_WARN, "commit_failed", "{s:s,s:s}", "when", "auto", "error",
               rd_kafka_err2str(err));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    hk_log(HK_LOG_WARN, "kafka_error", "{s:s,s:s}", "error",
           rd_kafka_err2name((rd_kafka_resp_err_t)err), "reason", reason);
}

// From librdkafka's statistics, where each assigned jobs partition's fetch
// starts (part_t.group_at): its committed_offset is the group's, read by the
// OffsetFetch librdkafka makes on assignment, once its fetch_state is "active"
// (before that it may still hold an earlier assignment's). Reading it here costs
// no request: a rd_kafka_committed in the loop would wait for the coordinator.
static void note_starts(hk_intake_t *in, json_t *root)
{
    topic_parts_t *tp = &in->in_topics[T_JOBS];
    json_t *parts =
        json_object_get(json_object_get(json_object_get(root, "topics"), tp->name), "partitions");
    const char *key;
    json_t *jp;
    json_object_foreach(parts, key, jp)
    {
        long i = strtol(key, NULL, 10);
        if (i < 0 || i >= tp->cnt || !tp->parts[i].ot || tp->parts[i].group_at != -1)
            continue;
        const char *state = json_string_value(json_object_get(jp, "fetch_state"));
        json_t *c = json_object_get(jp, "committed_offset");
        if (!state || strcmp(state, "active") != 0 || !json_is_integer(c))
            continue;
        int64_t committed = json_integer_value(c);
        tp->parts[i].group_at = committed >= 0 ? committed : in->in_reset_earliest ? START_LOW : -1;
    }
}

// librdkafka keeps an assignment while every broker is away, so neither the
// group nor the error callback says when the cluster is back. Its statistics
// (every second, served by the consumer poll) list each broker's connection
// state: a broker counts when it has a node id and its connection is UP. Zero
// while brokers are in use (some connection is being tried) means unreachable:
// /readyz answers 503 until a connection is up again.
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    json_t *root = json_loadb(json, json_len, 0, NULL);
    note_starts(opaque, root);
    json_t *brokers = json_object_get(root, "brokers"), *b;
    const char *name;
    int up = 0, in_use = 0;
    json_object_foreach(brokers, name, b)
    {
        const char *state = json_string_value(json_object_get(b, "state"));
        if (json_integer_value(json_object_get(b, "nodeid")) < 0 || !state)
            continue;
        if (strcmp(state, "UP") == 0)
            up++;
        else if (strcmp(state, "INIT") != 0) // INIT: never needed, never tried
            in_use++;
    }
    json_decref(root);
    if (!brokers)
        return 0;
    atomic_store(&hk_metrics.kafka_brokers_up, up);
    int unreachable = up == 0 && in_use > 0;
    static int64_t since_ms; // intake's thread only
    if (unreachable && !hk_metric_get(kafka_unreachable)) {
        since_ms = hk_clock_mono_ms();
        atomic_store(&hk_metrics.kafka_unreachable, 1);
        hk_metric_add(kafka_unreachable_total, 1);
        hk_log(HK_LOG_WARN, "kafka_unreachable", "{s:i}", "brokers_tried", in_use);
    } else if (!unreachable && hk_metric_get(kafka_unreachable)) {
        atomic_store(&hk_metrics.kafka_unreachable, 0);
        hk_log(HK_LOG_INFO, "kafka_reachable", "{s:i,s:I}", "brokers_up", up, "down_ms",
               (json_int_t)(hk_clock_mono_ms() - since_ms));
    }
    return 0; // librdkafka frees json
}

hk_intake_t *hk_intake_new(const hk_config_t *cfg, const char *brokers, char *errstr,
                           size_t errstr_size)
{
    const char *defaults[] = {
        "group.id",
        cfg->kafka_group,
        "enable.auto.commit",
        "true",
        "auto.commit.interval.ms",
        "1000",
        "enable.auto.offset.store",
        "false",
        "auto.offset.reset",
        "earliest",
        "partition.assignment.strategy",
        "cooperative-sticky",
        "session.timeout.ms",
        "10000",
        "heartbeat.interval.ms",
        "1000",
        // The prefetch intake holds on to while over its in-flight limit (see
        // in_hold_since): about a second of delivery at line rate, in a few MB.
        "queued.max.messages.kbytes",
        "4096",
        "max.partition.fetch.bytes",
        "262144",
        "statistics.interval.ms", // see stats_cb
        "1000",
        NULL,
    };
    rd_kafka_conf_t *conf = hk_kconf_new(cfg, brokers, defaults, errstr, errstr_size);
    if (!conf)
        return NULL;

    hk_intake_t *in = calloc(1, sizeof(*in));
    in->in_cfg = cfg;
    in->in_rejoining = 1; // until the first assignment
    pthread_mutex_init(&in->in_lock, NULL);
    rd_kafka_conf_set_opaque(conf, in);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);

    char kerr[256];
    in->in_rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (!in->in_rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka consumer: %s", kerr);
        hk_intake_destroy(in);
        return NULL;
    }
    rd_kafka_poll_set_consumer(in->in_rk);
    char reset[32];
    size_t reset_size = sizeof(reset);
    if (rd_kafka_conf_get(rd_kafka_conf(in->in_rk), "auto.offset.reset", reset, &reset_size) ==
        RD_KAFKA_CONF_OK)
        in->in_reset_earliest = strcmp(reset, "smallest") == 0 || strcmp(reset, "earliest") == 0 ||
                                strcmp(reset, "beginning") == 0;

    in->in_topics[T_JOBS].name = cfg->kafka_topic;
    in->in_topics[T_RETRY].name = cfg->kafka_retry_topic;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, cfg->kafka_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, cfg->kafka_retry_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(in->in_rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errstr_size, "kafka subscribe %s, %s: %s", cfg->kafka_topic,
                 cfg->kafka_retry_topic, rd_kafka_err2str(err));
        hk_intake_destroy(in);
        return NULL;
    }
    return in;
}

// Up to size-1 bytes of a raw value for a log line, anything but printable ASCII
// as '?'; "(absent)" for NULL.
static const char *shown(const void *val, size_t len, char *out, size_t size)
{
    if (!val)
        return "(absent)";
    size_t n = len < size - 1 ? len : size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = ((const unsigned char *)val)[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
    return out;
}

// A record from the retry topic: restores where the job came from and its attempt
// state. Returns the monotonic time it is due (0 = now).
static int64_t restore_retry(const hk_intake_t *in, hk_task_t *task, rd_kafka_message_t *msg)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_headers(msg, &hdrs);
    hk_headers_t h;
    hk_headers_decode(hdrs, hk_clock_wall_ms(), in->in_cfg->retry_max_delay_ms, &h);
    if (h.original_topic[0]) {
        snprintf(task->origin_topic, sizeof(task->origin_topic), "%s", h.original_topic);
        task->origin_partition = h.original_partition;
        task->origin_offset = h.original_offset;
    }
    task->attempts = h.attempt;
    task->first_attempt_ms = h.first_attempt_ms;
    snprintf(task->error, sizeof(task->error), "%s", h.last_error);
    int64_t wait = h.wait_ms;
    if (h.attempt_clamped || h.due_clamped) {
        // Not a record this hookd wrote as it stands: say what was made of it.
        char a_raw[32], d_raw[32];
        hk_log(HK_LOG_WARN, "retry_headers_clamped", "{s:s,s:i,s:I,s:s,s:i,s:s,s:I}", "topic",
               rd_kafka_topic_name(msg->rkt), "partition", (int)msg->partition, "offset",
               (json_int_t)msg->offset, "hookd_attempt",
               shown(h.attempt_raw, h.attempt_raw_len, a_raw, sizeof(a_raw)), "attempts",
               task->attempts, "hookd_due_at",
               shown(h.due_raw, h.due_raw_len, d_raw, sizeof(d_raw)), "wait_ms", (json_int_t)wait);
    }
    return wait > 0 ? hk_clock_mono_ms() + wait : 0;
}

// A partition that came back after it was lost (see assign_from_orphans) starts
// at its first unfinished offset; records past it that had finished here before
// the loss (delivered, dead-lettered or sent to the retry topic, each
// acknowledged) are not sent again: they are finished at once. Once the fetch is
// past the old tracker's last offset, the tracker goes. 1 when `offset` was
// skipped (the caller already added it to p->ot).
static int skip_finished(hk_intake_t *in, part_t *p, const char *topic, int32_t partition,
                         int64_t offset)
{
    if (offset > hk_offsets_last(p->lost_ot)) {
        hk_log(HK_LOG_INFO, "lost_partition_caught_up", "{s:s,s:i,s:I,s:I}", "topic", topic,
               "partition", (int)partition, "skipped", (json_int_t)p->lost_skipped, "at",
               (json_int_t)offset);
        hk_offsets_destroy(p->lost_ot);
        p->lost_ot = NULL;
        return 0;
    }
    if (!hk_offsets_was_finished(p->lost_ot, offset))
        return 0;
    if (hk_offsets_finish(p->ot, offset) == 0) {
        p->dirty = 1;
        update_span(in, p);
    }
    p->lost_skipped++;
    return 1;
}

static void handle(hk_intake_t *in, rd_kafka_message_t *msg)
{
    if (msg->err) {
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            hk_log(HK_LOG_WARN, "consume_error", "{s:s}", "error", rd_kafka_message_errstr(msg));
        return;
    }
    const char *topic = rd_kafka_topic_name(msg->rkt);
    int ti = topic_index(in, topic);
    part_t *p = part_get(in, topic, msg->partition);
    if (!p || !p->ot) {
        // Not (or no longer) ours: leave it uncommitted for the owner.
        hk_log(HK_LOG_WARN, "message_unassigned", "{s:s,s:i,s:I}", "topic", topic, "partition",
               (int)msg->partition, "offset", (json_int_t)msg->offset);
        return;
    }
    if (p->settle_until) {
        // Fetched before the pause took hold: the seek at the end of the settle
        // time delivers it again.
        return;
    }
    const hk_config_t *cfg = in->in_cfg;
    hk_task_t *task = hk_task_new(in->in_topics[ti].name, msg->partition, msg->offset, p->gen,
                                  msg->key, msg->key_len, msg->payload, msg->len);
    if (!task || hk_offsets_add(p->ot, msg->offset) != 0) {
        hk_log(HK_LOG_ERROR, "message_not_tracked", "{s:s,s:i,s:I,s:s}", "topic", topic,
               "partition", (int)msg->partition, "offset", (json_int_t)msg->offset, "error",
               task ? "offset not increasing" : "out of memory");
        hk_task_destroy(task);
        return;
    }
    if (p->lost_ot && skip_finished(in, p, topic, msg->partition, msg->offset)) {
        hk_task_destroy(task);
        return;
    }
    int64_t due = 0;
    if (ti == T_RETRY) {
        due = restore_retry(in, task, msg);
        if (due) {
            // Hold the partition on its head until it is due; records behind it
            // were produced for a similar delay (see producer.c), so wait too.
            p->held_until = due;
            in->in_fc_dirty = 1;
        }
    } else {
        hk_metric_add(consumed, 1);
    }

    // A derived id comes from the origin, so it is the same on every retry.
    hk_job_src_t src = {.topic = task->origin_topic,
                        .partition = task->origin_partition,
                        .offset = task->origin_offset,
                        .key = msg->key,
                        .key_len = msg->key_len};
    hk_job_defaults_t defs = {.max_attempts = cfg->retry_max_attempts,
                              .timeout_ms = cfg->delivery_timeout_ms,
                              .max_job_bytes = (size_t)cfg->limits_max_job_bytes};
    char reason[512];
    hk_job_t *job = hk_job_parse(msg->payload, msg->len, &src, &defs, reason, sizeof(reason));
    if (job && job->type == HK_JOB_BATCH && !in->in_batch) {
        snprintf(reason, sizeof(reason),
                 "$.type: batch jobs need Postgres, and this hookd has none (postgres.url)");
        hk_job_destroy(job);
        job = NULL;
    }
    if (job)
        hk_task_set_job(task, job);

    atomic_fetch_add(&in->in_inflight, 1);
    hk_metric_add(inflight_jobs, 1);
    hk_metric_add(inflight_bytes, (int64_t)task->mem_bytes);
    update_span(in, p);

    if (!job) {
        hk_metric_add(invalid, 1);
        hk_task_fail(task, HK_OUTCOME_INVALID, 0, "%s", reason);
        hk_producer_dead_letter(in->in_producer, task);
        return;
    }
    if (job->type == HK_JOB_BATCH)
        in->in_batch(task, in->in_batch_arg);
    else
        in->in_submit(task, due, in->in_submit_arg);
}

// hookd_consumer_lag: over the assigned jobs partitions, messages between what is
// finished and the high watermark. Finished: the offset stored for commit; before
// any, where this assignment's fetch started (part_t.group_at: what was taken
// since is not finished); while that is not known yet, the fetch position. A
// partition with none of them (its OffsetFetch unanswered, no statistics since,
// nothing consumed) is left out: counted from its low watermark, a takeover of
// committed partitions reported their whole history as lag for as long as no
// new message came, and replicas are scaled on this gauge. Watermarks are
// librdkafka's cached ones: no broker round trip.
static void update_lag(hk_intake_t *in)
{
    topic_parts_t *tp = &in->in_topics[T_JOBS];
    rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new(tp->cnt);
    for (int i = 0; i < tp->cnt; i++)
        if (tp->parts[i].ot && tp->parts[i].stored < 0 && tp->parts[i].group_at == -1)
            rd_kafka_topic_partition_list_add(pos, tp->name, i);
    if (pos->cnt)
        rd_kafka_position(in->in_rk, pos);
    int64_t lag = 0;
    for (int i = 0; i < tp->cnt; i++) {
        part_t *p = &tp->parts[i];
        int64_t lo, hi;
        if (!p->ot || rd_kafka_get_watermark_offsets(in->in_rk, tp->name, i, &lo, &hi) != 0 ||
            hi < 0)
            continue;
        int64_t done = p->stored;
        if (done < 0) {
            rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(pos, tp->name, i);
            done = p->group_at == START_LOW ? lo
                   : p->group_at >= 0       ? p->group_at
                   : e && e->offset >= 0    ? e->offset
                                            : -1;
        }
        if (done < 0)
            continue;
        if (hi > done)
            lag += hi - done;
    }
    rd_kafka_topic_partition_list_destroy(pos);
    atomic_store_explicit(&hk_metrics.consumer_lag, lag, memory_order_relaxed);
}

// Releases retry partitions whose held head is due.
static void release_held(hk_intake_t *in, int64_t now)
{
    topic_parts_t *tp = &in->in_topics[T_RETRY];
    for (int i = 0; i < tp->cnt; i++) {
        if (tp->parts[i].held_until && tp->parts[i].held_until <= now) {
            tp->parts[i].held_until = 0;
            in->in_fc_dirty = 1;
        }
    }
}

// One turn of the shutdown drain: serves the group (rebalance callbacks) for up
// to `poll_ms`, then takes in what finished. Messages fetched before the pause
// took hold are left uncommitted.
static void drain_turn(hk_intake_t *in, int poll_ms)
{
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(in->in_rk, poll_ms);
    if (msg)
        rd_kafka_message_destroy(msg);
    drain_done(in);
    store_offsets(in);
}

// Whether the loop may take another message before its housekeeping: not when a
// pause is pending (in_fc_dirty), a flow-control limit is reached, or a stop or a
// new config is waiting. Taking a burst of what librdkafka already holds spares
// the per-turn bookkeeping (done list, pauses, timers) for every message.
static int more_now(hk_intake_t *in)
{
    return !in->in_fc_dirty && !atomic_load(&in->in_stop) && !atomic_load(&in->in_next_cfg) &&
           atomic_load(&in->in_inflight) < in->in_cfg->limits_max_inflight_jobs &&
           hk_metric_get(inflight_bytes) < in->in_cfg->limits_max_inflight_bytes;
}

// Revokes (committing) and leaves the group, within what is left of the grace
// period (at least CLOSE_MIN_MS). rd_kafka_consumer_close alone can block for a
// whole session.timeout.ms (45 s) while the group rebalances, which outlasts
// every supervisor's stop timeout: the close runs on a queue of its own, served
// here (so the rebalance callback still runs on this thread) until it is done or
// the time is up. A close given up leaves the group to the session timeout and
// the partitions' last commits as they are (their jobs come back, never lost).
static void close_consumer(hk_intake_t *in, int64_t deadline)
{
    int64_t now = hk_clock_mono_ms();
    int64_t close_deadline = deadline > now + CLOSE_MIN_MS ? deadline : now + CLOSE_MIN_MS;
    in->in_close_deadline_ms = close_deadline;
    rd_kafka_queue_t *q = rd_kafka_queue_new(in->in_rk);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(in->in_rk, q);
    if (error) {
        hk_log(HK_LOG_WARN, "consumer_close_failed", "{s:s}", "error",
               rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else {
        while (!rd_kafka_consumer_closed(in->in_rk) && hk_clock_mono_ms() < close_deadline)
            rd_kafka_queue_poll_callback(q, 50);
    }
    in->in_close_given_up = !rd_kafka_consumer_closed(in->in_rk);
    if (in->in_close_given_up)
        hk_log(HK_LOG_WARN, "consumer_close_given_up", "{s:i,s:s}", "after_ms",
               (int)(hk_clock_mono_ms() - now), "why", "the group is still rebalancing");
    rd_kafka_queue_destroy(q);
}

void hk_intake_run(hk_intake_t *in, hk_producer_t *producer)
{
    in->in_producer = producer;
    while (!atomic_load(&in->in_stop)) {
        const hk_config_t *next = atomic_exchange(&in->in_next_cfg, NULL);
        if (next) {
            in->in_cfg = next;
            in->in_fc_dirty = 1;
        }
        if (in->in_over && !in->in_broker_paused) {
            hk_clock_sleep_ms(1); // holding: wait for completions, see in_hold_since
        } else {
            rd_kafka_message_t *msg = rd_kafka_consumer_poll(in->in_rk, 20);
            for (int taken = 0; msg; taken++) {
                handle(in, msg);
                rd_kafka_message_destroy(msg);
                msg = taken + 1 < POLL_BATCH_MAX && more_now(in)
                          ? rd_kafka_consumer_poll(in->in_rk, 0)
                          : NULL;
            }
        }
        drain_done(in);
        detect_cluster(in);
        int64_t now = hk_clock_mono_ms();
        release_held(in, now);
        apply_pause(in);
        if (now - in->in_last_store_ms >= STORE_INTERVAL_MS) {
            store_offsets(in);
            in->in_last_store_ms = now;
        }
        settle(in, now);
        commit_orphans(in, now);
        if (now - in->in_last_lag_ms >= LAG_INTERVAL_MS) {
            update_lag(in);
            in->in_last_lag_ms = now;
        }
    }

    // Drain: stop fetching, let in-flight work finish within the grace period.
    in->in_fc_dirty = 1;
    apply_pause(in);
    int64_t t0 = hk_clock_mono_ms();
    int64_t deadline = t0 + in->in_cfg->shutdown_grace_ms;
    while (atomic_load(&in->in_inflight) > 0 && hk_clock_mono_ms() < deadline)
        drain_turn(in, 10);
    drain_done(in);
    store_offsets(in);
    // The group may be rebalancing while we drain: keep serving it (poll) until
    // our join is over, and commit between joins (see in_rejoining), within the
    // grace period (at least a couple of seconds).
    int64_t commit_deadline =
        deadline > hk_clock_mono_ms() + 2000 ? deadline : hk_clock_mono_ms() + 2000;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__NO_OFFSET;
    int waited = 0;
    while (atomic_load(&in->in_assigned) > 0 && hk_clock_mono_ms() < commit_deadline) {
        err = RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
        if (in->in_rejoining) {
            if (!waited++)
                hk_log(HK_LOG_INFO, "shutdown_commit_waits", "{s:s}", "for", "join");
            drain_turn(in, 50);
            continue;
        }
        err = rd_kafka_commit(in->in_rk, NULL, 0);
        if (!rebalancing(err))
            break;
        in->in_rejoining = 1;
    }
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        hk_log(HK_LOG_WARN, "commit_failed", "{s:s,s:s}", "when", "shutdown", "error",
               rd_kafka_err2str(err));
    } else {
        // Committed: the revokes of rd_kafka_consumer_close need not commit again.
        for (int t = 0; t < T_CNT; t++)
            for (int i = 0; i < in->in_topics[t].cnt; i++)
                if (in->in_topics[t].parts[i].ot)
                    in->in_topics[t].parts[i].committed = in->in_topics[t].parts[i].stored;
    }
    hk_log(HK_LOG_INFO, "intake_drained", "{s:I,s:i}", "unfinished",
           (json_int_t)atomic_load(&in->in_inflight), "drain_ms", (int)(hk_clock_mono_ms() - t0));
    in->in_closing = 1;
    close_consumer(in, deadline);
}

void hk_intake_stop(hk_intake_t *in)
{
    atomic_store(&in->in_stop, 1);
}

void hk_intake_set_config(hk_intake_t *in, const hk_config_t *cfg)
{
    atomic_store(&in->in_next_cfg, cfg);
}

void hk_intake_set_cancel(hk_intake_t *in, hk_intake_cancel_cb *cancel, void *arg)
{
    in->in_cancel = cancel;
    in->in_cancel_arg = arg;
}

void hk_intake_set_batch(hk_intake_t *in, hk_intake_batch_cb *batch, void *arg)
{
    in->in_batch = batch;
    in->in_batch_arg = arg;
}

void hk_intake_set_submit(hk_intake_t *in, hk_intake_submit_cb *submit, void *arg)
{
    in->in_submit = submit;
    in->in_submit_arg = arg;
}

void hk_intake_set_unqueue(hk_intake_t *in, hk_intake_unqueue_cb *unqueue, void *arg)
{
    in->in_unqueue = unqueue;
    in->in_unqueue_arg = arg;
}

void hk_intake_set_revoking(hk_intake_t *in, hk_intake_cancel_cb *revoking, void *arg)
{
    in->in_revoking = revoking;
    in->in_revoking_arg = arg;
}

int hk_intake_assigned(hk_intake_t *in)
{
    return atomic_load(&in->in_assigned);
}

long hk_intake_inflight(hk_intake_t *in)
{
    return atomic_load(&in->in_inflight);
}

void hk_intake_destroy(hk_intake_t *in)
{
    if (!in)
        return;
    // librdkafka before 2.3 aborts in rd_kafka_destroy when a cooperative-sticky
    // member is destroyed after its JoinGroup answer but before its first
    // assignment (the assignor has no state yet): a SIGTERM during the first join
    // did, on a real cluster and on the mock. The consumer is closed (it left the
    // group) and the process is exiting: leave the handle, and what its threads
    // may still reach, to the exit.
    if (in->in_closing && !in->in_assigned_once) {
        hk_log(HK_LOG_INFO, "consumer_left_undestroyed", "{s:s}", "why",
               "closed before its first assignment (librdkafka < 2.3 would abort)");
        return;
    }
    // A close given up is still running inside librdkafka, and rd_kafka_destroy
    // would wait for it: the process is exiting, leave the handle to the exit.
    if (in->in_close_given_up) {
        hk_log(HK_LOG_INFO, "consumer_left_undestroyed", "{s:s}", "why", "its close was given up");
        return;
    }
    if (in->in_rk)
        rd_kafka_destroy(in->in_rk);
    drain_done(in);
    while (in->in_orphans) {
        orphan_t *o = in->in_orphans;
        in->in_orphans = o->next;
        orphan_free(o); // a lost partition's may still hold its tracker
    }
    for (int t = 0; t < T_CNT; t++) {
        for (int i = 0; i < in->in_topics[t].cnt; i++) {
            hk_offsets_destroy(in->in_topics[t].parts[i].ot);
            hk_offsets_destroy(in->in_topics[t].parts[i].lost_ot);
        }
        free(in->in_topics[t].parts);
    }
    pthread_mutex_destroy(&in->in_lock);
    free(in);
}
