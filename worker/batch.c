// batch: one runner thread. Other threads only append to its inbox (new batches,
// returned items, suspend requests, dead letters to record); everything else,
// including the Postgres connection, belongs to the thread, so batches need no
// lock of their own.
#include "worker/batch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/checkpoint.h"
#include "store/dlstore.h"
#include "store/migrate.h"
#include "store/pg.h"
#include "worker/batchplan.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"

#define IDLE_WAIT_MS   200 // longest sleep; also how often a down Postgres is retried
#define DLS_CHUNK      500 // dead letters per insert transaction
#define DLS_MAX_QUEUED 100000
#define STOP_WAIT_MS   2000 // at stop, how long items may take to come back

typedef enum bstate {
    B_OPENING, // waiting for Postgres to load (or create) its checkpoint
    B_RUNNING, // sending items
} bstate_t;

typedef struct batch batch_t;
struct batch {
    batch_t *next;
    hk_task_t *task; // the batch job's own task
    const hk_job_t *job;
    bstate_t state;

    // Which items are terminal (stored or pending), the counters, the cursor and
    // whether the failure ratio was passed (then nothing more is sent).
    hk_batchplan_t *plan;
    size_t next_idx; // next index to consider sending
    int in_flight;   // item tasks out (dispatcher, delivery, producer)
    int64_t resumed; // items found terminal in Postgres at open

    int abort_swept;       // queued items were taken back and the rest marked skipped
    int suspend;           // hand back without finishing (revoke, shutdown)
    int suspend_swept;     // queued items were taken back
    int cancelled;         // in-flight items were cancelled
    int64_t suspend_until; // in-flight items may end until then (monotonic ms)

    hk_ckpt_item_t *pending; // terminal since the last checkpoint
    size_t pending_cnt, pending_cap;
    int64_t last_flush_ms;
};

// Something for the runner from another thread.
typedef enum msg_kind { M_SUBMIT, M_ITEM, M_SUSPEND, M_SUSPEND_ALL, M_DEAD_LETTER } msg_kind_t;

typedef struct msg msg_t;
struct msg {
    msg_t *next;
    msg_kind_t kind;
    hk_task_t *task;     // M_SUBMIT, M_ITEM
    int32_t partition;   // M_SUSPEND
    int wait_ms;         // M_SUSPEND, M_SUSPEND_ALL
    hk_dls_record_t rec; // M_DEAD_LETTER: strings and bytes in `buf`
    char topic[256];     // M_SUSPEND
    char buf[];
};

struct hk_batch_s {
    hk_batch_opts_t opts;
    pthread_t thread;
    int started;

    pthread_mutex_t lock; // guards the inbox and `stop`
    pthread_cond_t cond;
    msg_t *inbox, **inbox_tail;
    int stop;
    atomic_int active;
    atomic_long dls_queued;

    // Runner thread only.
    hk_pg_t *pg;
    int migrated;
    int pg_was_up;
    int pg_stalled; // a checkpoint failed: send no new items until one succeeds
    batch_t *batches;
    msg_t *dls, **dls_tail; // dead letters waiting to be inserted
    size_t dls_cnt;
};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

static void post(hk_batch_t *b, msg_t *m)
{
    m->next = NULL;
    pthread_mutex_lock(&b->lock);
    *b->inbox_tail = m;
    b->inbox_tail = &m->next;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

void hk_batch_submit(hk_batch_t *b, hk_task_t *task)
{
    msg_t *m = xcalloc(1, sizeof(*m));
    m->kind = M_SUBMIT;
    m->task = task;
    post(b, m);
}

void hk_batch_item_done(hk_batch_t *b, hk_task_t *task)
{
    msg_t *m = xcalloc(1, sizeof(*m));
    m->kind = M_ITEM;
    m->task = task;
    post(b, m);
}

void hk_batch_suspend(hk_batch_t *b, const char *topic, int32_t partition, int wait_ms)
{
    msg_t *m = xcalloc(1, sizeof(*m));
    m->kind = M_SUSPEND;
    snprintf(m->topic, sizeof(m->topic), "%s", topic);
    m->partition = partition;
    m->wait_ms = wait_ms;
    post(b, m);
}

void hk_batch_suspend_all(hk_batch_t *b, int wait_ms)
{
    msg_t *m = xcalloc(1, sizeof(*m));
    m->kind = M_SUSPEND_ALL;
    m->wait_ms = wait_ms;
    post(b, m);
}

int hk_batch_active(hk_batch_t *b)
{
    return b ? atomic_load(&b->active) : 0;
}

// Copies a string into m->buf at *off; returns the copy.
static const char *put_str(msg_t *m, size_t *off, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *dst = m->buf + *off;
    memcpy(dst, s, n);
    *off += n;
    return dst;
}

void hk_batch_record_dead_letter(hk_batch_t *b, const hk_task_t *task)
{
    if (atomic_load(&b->dls_queued) >= DLS_MAX_QUEUED) {
        hk_metric_add(pg_errors, 1);
        return; // the DLQ topic keeps it; the table is a convenience
    }
    const hk_job_t *job = task->job;
    const char *job_id = job ? job->id : "";
    char derived[HK_JOB_ID_MAX + 1] = "";
    if (!job) { // not a valid job: the id it would have had without one
        hk_job_derive_id(task->origin_topic, task->origin_partition, task->origin_offset, derived);
        job_id = derived;
    }
    const char *tenant = job ? job->tenant : "default";
    const char *cls = hk_outcome_name(task->outcome);
    size_t size = strlen(job_id) + strlen(tenant) + strlen(task->origin_topic) + strlen(cls) +
                  strlen(task->error) + (task->batch_id ? strlen(task->batch_id) : 0) + 6 +
                  task->key_len + task->value_len;
    msg_t *m = xcalloc(1, sizeof(*m) + size);
    m->kind = M_DEAD_LETTER;
    size_t off = 0;
    hk_dls_record_t *r = &m->rec;
    r->job_id = put_str(m, &off, job_id);
    r->tenant = put_str(m, &off, tenant);
    r->topic = put_str(m, &off, task->origin_topic);
    r->partition = task->origin_partition;
    r->offset = task->origin_offset;
    r->error_class = put_str(m, &off, cls);
    r->error = put_str(m, &off, task->error);
    r->http_status = task->http_status;
    r->attempts = task->attempts;
    r->batch_id = put_str(m, &off, task->batch_id);
    r->item_idx = task->batch_id ? task->item_idx : -1;
    if (task->key) {
        memcpy(m->buf + off, task->key, task->key_len);
        r->key = m->buf + off;
        r->key_len = task->key_len;
        off += task->key_len;
    }
    memcpy(m->buf + off, task->value, task->value_len);
    r->value = m->buf + off;
    r->value_len = task->value_len;
    atomic_fetch_add(&b->dls_queued, 1);
    post(b, m);
}

// ---- the runner thread ----

static batch_t *batch_of_task(hk_batch_t *b, const hk_task_t *task)
{
    for (batch_t *bt = b->batches; bt; bt = bt->next)
        if (bt == task->owner)
            return bt;
    return NULL;
}

static void pg_state(hk_batch_t *b)
{
    int up = hk_pg_up(b->pg);
    if (up != b->pg_was_up) {
        b->pg_was_up = up;
        hk_log(up ? HK_LOG_INFO : HK_LOG_WARN, up ? "postgres_up" : "postgres_down", "{s:i}",
               "batches", atomic_load(&b->active));
    }
    atomic_store_explicit(&hk_metrics.pg_up, up, memory_order_relaxed);
}

// Connected and migrated; 0 ok.
static int pg_ready(hk_batch_t *b)
{
    char err[512];
    if (hk_pg_ensure(b->pg, err, sizeof(err)) != 0) {
        pg_state(b);
        return -1;
    }
    if (!b->migrated) {
        int applied = 0;
        if (hk_migrate_apply(b->pg, &applied, err, sizeof(err)) != 0) {
            hk_metric_add(pg_errors, 1);
            hk_log(HK_LOG_ERROR, "migrate_failed", "{s:s}", "error", err);
            pg_state(b);
            return -1;
        }
        b->migrated = 1;
        if (applied)
            hk_log(HK_LOG_INFO, "migrated", "{s:i}", "applied", applied);
    }
    pg_state(b);
    return 0;
}

// Item `idx` is terminal: the plan counts it, and it waits for the next
// checkpoint. Returns what the plan made of it (HK_BATCHPLAN_ABORT: this failure
// passed the ratio).
static hk_batchplan_rec_t add_pending(batch_t *bt, int32_t idx, hk_item_status_t st, int attempts,
                                      int http_status, const char *error)
{
    hk_batchplan_rec_t rec = hk_batchplan_record(bt->plan, (size_t)idx, st);
    if (rec == HK_BATCHPLAN_IGNORED)
        return rec; // terminal already (cannot happen: each item is out once)
    if (st == HK_ITEM_SUCCEEDED)
        hk_metric_add(batch_items_succeeded, 1);
    else if (st == HK_ITEM_FAILED)
        hk_metric_add(batch_items_failed, 1);
    else
        hk_metric_add(batch_items_skipped, 1);
    if (bt->pending_cnt == bt->pending_cap) {
        bt->pending_cap = bt->pending_cap ? bt->pending_cap * 2 : 64;
        bt->pending = realloc(bt->pending, bt->pending_cap * sizeof(*bt->pending));
        if (!bt->pending)
            abort();
    }
    bt->pending[bt->pending_cnt++] = (hk_ckpt_item_t){
        .idx = idx,
        .status = st,
        .attempts = attempts,
        .http_status = http_status,
        .error = error && error[0] ? strdup(error) : NULL,
    };
    return rec;
}

// Writes the pending items, counters and cursor (and `status` unless NULL) in one
// transaction. 0 ok; on failure everything stays pending.
static int flush(hk_batch_t *b, batch_t *bt, const char *status)
{
    if (pg_ready(b) != 0) {
        b->pg_stalled = 1;
        return -1;
    }
    char err[512];
    hk_batchplan_counts_t c = hk_batchplan_counts(bt->plan);
    if (hk_ckpt_flush(b->pg, bt->job->id, bt->job->tenant, bt->pending, bt->pending_cnt, c.cursor,
                      status, err, sizeof(err)) != 0) {
        hk_metric_add(pg_errors, 1);
        hk_log(HK_LOG_WARN, "checkpoint_failed", "{s:s,s:s,s:I,s:s}", "batch", bt->job->id,
               "tenant", bt->job->tenant, "items", (json_int_t)bt->pending_cnt, "error", err);
        b->pg_stalled = 1;
        pg_state(b);
        return -1;
    }
    for (size_t i = 0; i < bt->pending_cnt; i++)
        free((char *)bt->pending[i].error);
    hk_log(HK_LOG_DEBUG, "checkpoint", "{s:s,s:I,s:I,s:I,s:I,s:I}", "batch", bt->job->id, "items",
           (json_int_t)bt->pending_cnt, "cursor", (json_int_t)c.cursor, "succeeded",
           (json_int_t)c.succeeded, "failed", (json_int_t)c.failed, "skipped",
           (json_int_t)c.skipped);
    bt->pending_cnt = 0;
    bt->last_flush_ms = hk_clock_mono_ms();
    b->pg_stalled = 0;
    hk_metric_add(checkpoints, 1);
    return 0;
}

static void batch_free(batch_t *bt)
{
    for (size_t i = 0; i < bt->pending_cnt; i++)
        free((char *)bt->pending[i].error);
    free(bt->pending);
    hk_batchplan_destroy(bt->plan);
    free(bt);
}

static void unlink_batch(hk_batch_t *b, batch_t *bt)
{
    for (batch_t **pp = &b->batches; *pp; pp = &(*pp)->next) {
        if (*pp == bt) {
            *pp = bt->next;
            break;
        }
    }
    atomic_fetch_sub(&b->active, 1);
    hk_metric_add(batches_active, -1);
    batch_free(bt);
}

// Hands the batch task back and forgets the batch.
static void hand_back(hk_batch_t *b, batch_t *bt, int cancelled)
{
    hk_task_t *task = bt->task;
    task->cancelled = cancelled;
    if (!cancelled)
        task->outcome = HK_OUTCOME_DELIVERED;
    unlink_batch(b, bt);
    b->opts.done(task, b->opts.arg);
}

// An item task for item `idx`: the item as a standalone webhook job (so a dead
// letter carries a job a replay can send on its own), keyed like the batch. Its
// kind says it is an item and its owner is the batch, which is how the
// dispatcher and the delivery threads find it to pull back or cancel; its source
// position is the batch job's (logs only).
static hk_task_t *item_task(batch_t *bt, size_t idx)
{
    const hk_job_t *item = &bt->job->items[idx];
    size_t len = 0;
    char *value = hk_job_to_json(item, &len);
    if (!value)
        return NULL;
    hk_task_t *parent = bt->task;
    hk_task_t *t = hk_task_new(parent->topic, parent->partition, parent->offset, parent->generation,
                               parent->key, parent->key_len, value, len);
    if (!t) {
        free(value);
        return NULL;
    }
    hk_job_src_t src = {.topic = parent->origin_topic,
                        .partition = parent->origin_partition,
                        .offset = parent->origin_offset};
    hk_job_defaults_t defs = {.max_attempts = item->max_attempts,
                              .timeout_ms = item->timeout_ms,
                              .max_job_bytes = len + 1};
    char err[256];
    hk_job_t *job = hk_job_parse(value, len, &src, &defs, err, sizeof(err));
    free(value);
    if (!job) {
        // Cannot happen: the item passed validation as part of its batch.
        hk_task_destroy(t);
        return NULL;
    }
    hk_task_set_job(t, job);
    snprintf(t->origin_topic, sizeof(t->origin_topic), "%s", parent->origin_topic);
    t->origin_partition = parent->origin_partition;
    t->origin_offset = parent->origin_offset;
    t->kind = HK_TASK_BATCH_ITEM;
    t->owner = bt;
    t->batch_id = bt->job->id;
    t->item_idx = (int32_t)idx;
    return t;
}

// Loads (or creates) the batch's checkpoint. Returns 0 while it waits for
// Postgres, 1 when it runs, 2 when it went away (finished before, or rejected).
static int open_batch(hk_batch_t *b, batch_t *bt)
{
    if (pg_ready(b) != 0)
        return 0;
    const hk_job_t *job = bt->job;
    hk_ckpt_batch_t st = {0};
    char err[512];
    if (hk_ckpt_open(b->pg, job->id, job->tenant, (int64_t)job->items_cnt, &st, err, sizeof(err)) !=
        0) {
        hk_metric_add(pg_errors, 1);
        pg_state(b);
        if (hk_pg_up(b->pg)) {
            // Postgres answered and refused: this batch cannot run (the tenant
            // reused an id for a different batch). Dead-letter it rather than
            // retry forever.
            hk_log(HK_LOG_ERROR, "batch_rejected", "{s:s,s:s,s:s}", "batch", job->id, "tenant",
                   job->tenant, "error", err);
            hk_task_t *task = bt->task;
            hk_task_fail(task, HK_OUTCOME_INVALID, 0, "batch %s: %s", job->id, err);
            unlink_batch(b, bt);
            b->opts.dead_letter(task, b->opts.arg);
            return 2;
        }
        return 0;
    }
    hk_batchplan_resume(bt->plan, st.item_status, st.succeeded, st.failed, st.skipped,
                        strcmp(st.status, "aborted") == 0);
    hk_batchplan_counts_t c = hk_batchplan_counts(bt->plan);
    bt->resumed = c.terminal;
    bt->next_idx = (size_t)c.cursor;
    int done_before = strcmp(st.status, "running") != 0;
    hk_ckpt_batch_free(&st);
    bt->state = B_RUNNING;
    bt->last_flush_ms = hk_clock_mono_ms();
    hk_metric_add(batches_started, 1);
    hk_metric_add(batch_items_resumed, (uint64_t)bt->resumed);
    hk_log(HK_LOG_INFO, bt->resumed ? "batch_resumed" : "batch_started", "{s:s,s:s,s:I,s:I,s:I}",
           "batch", job->id, "tenant", job->tenant, "items", (json_int_t)job->items_cnt,
           "terminal_already", (json_int_t)bt->resumed, "cursor", (json_int_t)c.cursor);
    if (done_before) {
        // Finished before, but its offset was not committed: nothing to send.
        hk_log(HK_LOG_INFO, "batch_already_finished", "{s:s,s:s}", "batch", job->id, "tenant",
               job->tenant);
        hk_metric_add(batches_finished, 1);
        hand_back(b, bt, 0);
        return 2;
    }
    return 1;
}

// The failure ratio passed: take back what waits in the dispatcher. Items never
// sent are skipped; items waiting for a retry are failed (dead-lettered).
static void sweep_abort(hk_batch_t *b, batch_t *bt)
{
    bt->abort_swept = 1;
    hk_task_t *list = hk_dispatch_remove_owned(b->opts.dispatch, bt);
    while (list) {
        hk_task_t *t = list;
        list = t->next;
        if (t->attempts == 0) {
            add_pending(bt, t->item_idx, HK_ITEM_SKIPPED, 0, 0, "batch aborted before it was sent");
            bt->in_flight--;
            hk_task_destroy(t);
        } else {
            char last[sizeof(t->error)];
            snprintf(last, sizeof(last), "%s", t->error);
            hk_task_fail(t, HK_OUTCOME_EXHAUSTED, t->http_status,
                         "batch aborted after %d attempts, last: %s", t->attempts, last);
            b->opts.dead_letter(t, b->opts.arg); // comes back through hk_batch_item_done
        }
    }
    for (size_t i = bt->next_idx; i < bt->job->items_cnt; i++)
        if (!hk_batchplan_status(bt->plan, i))
            add_pending(bt, (int32_t)i, HK_ITEM_SKIPPED, 0, 0, "batch aborted before it was sent");
    bt->next_idx = bt->job->items_cnt;
}

static void item_back(hk_batch_t *b, hk_task_t *t)
{
    batch_t *bt = batch_of_task(b, t);
    if (!bt) { // cannot happen: a batch waits for all its items
        hk_log(HK_LOG_ERROR, "batch_item_orphan", "{s:s}", "id", t->job ? t->job->id : "");
        hk_task_destroy(t);
        return;
    }
    bt->in_flight--;
    if (!t->cancelled) {
        int ok = t->outcome == HK_OUTCOME_DELIVERED;
        if (add_pending(bt, t->item_idx, ok ? HK_ITEM_SUCCEEDED : HK_ITEM_FAILED, t->attempts,
                        t->http_status, ok ? NULL : t->error) == HK_BATCHPLAN_ABORT)
            hk_log(HK_LOG_WARN, "batch_aborting", "{s:s,s:I,s:I,s:f}", "batch", bt->job->id,
                   "failed", (json_int_t)hk_batchplan_counts(bt->plan).failed, "items",
                   (json_int_t)bt->job->items_cnt, "max_failure_ratio", bt->job->max_failure_ratio);
    }
    hk_task_destroy(t);
}

static void suspend(batch_t *bt, int wait_ms)
{
    if (bt->suspend)
        return;
    bt->suspend = 1;
    bt->suspend_until = hk_clock_mono_ms() + wait_ms;
}

// One turn over a batch. Returns 1 when the batch went away.
static int step(hk_batch_t *b, batch_t *bt, int64_t now)
{
    const hk_config_t *cfg = b->opts.cfg;
    if (bt->state == B_OPENING) {
        if (bt->suspend) { // nothing sent yet
            hand_back(b, bt, 1);
            return 1;
        }
        int r = open_batch(b, bt);
        if (r != 1)
            return r == 2;
    }

    if (bt->suspend) {
        if (!bt->suspend_swept) {
            bt->suspend_swept = 1;
            hk_task_t *list = hk_dispatch_remove_owned(b->opts.dispatch, bt);
            while (list) {
                hk_task_t *t = list;
                list = t->next;
                bt->in_flight--;
                hk_task_destroy(t); // not terminal: sent again after the resume
            }
        }
        if (bt->in_flight > 0 && now >= bt->suspend_until && !bt->cancelled) {
            bt->cancelled = 1;
            b->opts.cancel(bt, b->opts.arg);
        }
        if (bt->in_flight > 0)
            return 0;
        if (bt->pending_cnt)
            flush(b, bt, NULL); // best effort: what is not written is sent again
        hk_log(HK_LOG_INFO, "batch_suspended", "{s:s,s:I,s:I}", "batch", bt->job->id, "terminal",
               (json_int_t)hk_batchplan_counts(bt->plan).terminal, "items",
               (json_int_t)bt->job->items_cnt);
        hand_back(b, bt, 1);
        return 1;
    }

    if (hk_batchplan_aborting(bt->plan) && !bt->abort_swept)
        sweep_abort(b, bt);

    // Send more, unless Postgres is failing us (the batch pauses until it is back).
    while (!hk_batchplan_aborting(bt->plan) && !b->pg_stalled &&
           bt->in_flight < cfg->batch_concurrency && bt->next_idx < bt->job->items_cnt) {
        size_t idx = bt->next_idx++;
        if (hk_batchplan_status(bt->plan, idx))
            continue;
        hk_task_t *t = item_task(bt, idx);
        if (!t) {
            bt->next_idx--;
            break;
        }
        bt->in_flight++;
        hk_dispatch_submit(b->opts.dispatch, t);
    }

    if (bt->in_flight == 0 && hk_batchplan_complete(bt->plan)) {
        const char *status = hk_batchplan_final_status(bt->plan);
        if (flush(b, bt, status) != 0)
            return 0; // Postgres is away: try again later
        hk_batchplan_counts_t c = hk_batchplan_counts(bt->plan);
        hk_metric_add(batches_finished, 1);
        hk_log(HK_LOG_INFO, "batch_finished", "{s:s,s:s,s:I,s:I,s:I,s:I}", "batch", bt->job->id,
               "status", status, "items", (json_int_t)bt->job->items_cnt, "succeeded",
               (json_int_t)c.succeeded, "failed", (json_int_t)c.failed, "skipped",
               (json_int_t)c.skipped);
        hand_back(b, bt, 0);
        return 1;
    }
    if (bt->pending_cnt && ((int)bt->pending_cnt >= cfg->batch_checkpoint_items ||
                            now - bt->last_flush_ms >= cfg->batch_checkpoint_ms))
        flush(b, bt, NULL);
    return 0;
}

// Forgets the first `n` queued dead letters.
static void drop_dead_letters(hk_batch_t *b, size_t n)
{
    while (n--) {
        msg_t *m = b->dls;
        b->dls = m->next;
        free(m);
        b->dls_cnt--;
        atomic_fetch_sub(&b->dls_queued, 1);
    }
    if (!b->dls)
        b->dls_tail = &b->dls;
}

static void insert_dead_letters(hk_batch_t *b)
{
    while (b->dls_cnt) {
        if (pg_ready(b) != 0)
            return;
        hk_dls_record_t recs[DLS_CHUNK];
        size_t n = 0;
        for (msg_t *m = b->dls; m && n < DLS_CHUNK; m = m->next)
            recs[n++] = m->rec;
        char err[512];
        if (hk_dls_insert(b->pg, recs, n, err, sizeof(err)) != 0) {
            hk_metric_add(pg_errors, 1);
            hk_log(HK_LOG_WARN, "dead_letter_record_failed", "{s:i,s:s}", "records", (int)n,
                   "error", err);
            pg_state(b);
            if (hk_pg_up(b->pg)) // refused, not unreachable: do not retry forever
                drop_dead_letters(b, n);
            return;
        }
        drop_dead_letters(b, n);
    }
}

static void take_msg(hk_batch_t *b, msg_t *m)
{
    switch (m->kind) {
    case M_SUBMIT: {
        batch_t *bt = xcalloc(1, sizeof(*bt));
        bt->task = m->task;
        bt->job = m->task->job;
        bt->state = B_OPENING;
        if (!(bt->plan = hk_batchplan_new(bt->job->items_cnt, bt->job->max_failure_ratio)))
            abort();
        bt->next_idx = 0;
        // Appended: batches are worked in the order they came.
        batch_t **pp = &b->batches;
        while (*pp)
            pp = &(*pp)->next;
        *pp = bt;
        atomic_fetch_add(&b->active, 1);
        hk_metric_add(batches_active, 1);
        free(m);
        return;
    }
    case M_ITEM:
        item_back(b, m->task);
        free(m);
        return;
    case M_SUSPEND:
        for (batch_t *bt = b->batches; bt; bt = bt->next)
            if (bt->task->partition == m->partition && strcmp(bt->task->topic, m->topic) == 0)
                suspend(bt, m->wait_ms);
        free(m);
        return;
    case M_SUSPEND_ALL:
        for (batch_t *bt = b->batches; bt; bt = bt->next)
            suspend(bt, m->wait_ms);
        free(m);
        return;
    case M_DEAD_LETTER:
        m->next = NULL;
        *b->dls_tail = m;
        b->dls_tail = &m->next;
        b->dls_cnt++;
        return;
    }
}

static void *run(void *arg)
{
    hk_batch_t *b = arg;
    const hk_config_t *cfg = b->opts.cfg;
    int64_t stop_ms = 0;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        msg_t *inbox = b->inbox;
        b->inbox = NULL;
        b->inbox_tail = &b->inbox;
        int stopping = b->stop;
        pthread_mutex_unlock(&b->lock);
        if (stopping && !stop_ms)
            stop_ms = hk_clock_mono_ms();

        while (inbox) {
            msg_t *m = inbox;
            inbox = m->next;
            take_msg(b, m);
        }
        if (stopping) {
            for (batch_t *bt = b->batches; bt; bt = bt->next)
                suspend(bt, 0);
        }
        int64_t now = hk_clock_mono_ms();
        int64_t wake = now + IDLE_WAIT_MS;
        for (batch_t *bt = b->batches, *next; bt; bt = next) {
            next = bt->next;
            step(b, bt, now);
        }
        for (batch_t *bt = b->batches; bt; bt = bt->next) {
            if (bt->pending_cnt && bt->last_flush_ms + cfg->batch_checkpoint_ms < wake)
                wake = bt->last_flush_ms + cfg->batch_checkpoint_ms;
            if (bt->suspend && bt->suspend_until < wake && !bt->cancelled)
                wake = bt->suspend_until;
        }
        if (b->dls_cnt)
            insert_dead_letters(b);
        if (stopping && b->batches && hk_clock_mono_ms() - stop_ms > STOP_WAIT_MS) {
            // Items that never came back (their threads are gone): let the batches go
            // uncommitted; they resume from their checkpoints next time.
            while (b->batches) {
                hk_log(HK_LOG_WARN, "batch_abandoned", "{s:s,s:i}", "batch", b->batches->job->id,
                       "items_out", b->batches->in_flight);
                hand_back(b, b->batches, 1);
            }
        }
        if (stopping && !b->batches)
            break;

        pthread_mutex_lock(&b->lock);
        if (!b->inbox && !b->stop) {
            int64_t wait = wake - hk_clock_mono_ms();
            if (wait > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += wait / 1000;
                ts.tv_nsec += (wait % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&b->cond, &b->lock, &ts);
            }
        } else if (stopping && b->batches) {
            // Waiting for items to come back: do not spin.
            pthread_mutex_unlock(&b->lock);
            hk_clock_sleep_ms(5);
            pthread_mutex_lock(&b->lock);
        }
    }
    return NULL;
}

hk_batch_t *hk_batch_start(const hk_batch_opts_t *opts, char *errstr, size_t errstr_size)
{
    const hk_config_t *cfg = opts->cfg;
    hk_batch_t *b = xcalloc(1, sizeof(*b));
    b->opts = *opts;
    b->inbox_tail = &b->inbox;
    b->dls_tail = &b->dls;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    if (!(b->pg = hk_pg_new_config(cfg, NULL))) {
        snprintf(errstr, errstr_size, "batch runner: out of memory");
        hk_batch_stop(b);
        return NULL;
    }
    atomic_store_explicit(&hk_metrics.pg_configured, 1, memory_order_relaxed);
    if (pthread_create(&b->thread, NULL, run, b) != 0) {
        snprintf(errstr, errstr_size, "batch runner: cannot start its thread");
        hk_batch_stop(b);
        return NULL;
    }
    b->started = 1;
    return b;
}

void hk_batch_stop(hk_batch_t *b)
{
    if (!b)
        return;
    if (b->started) {
        pthread_mutex_lock(&b->lock);
        b->stop = 1;
        pthread_cond_signal(&b->cond);
        pthread_mutex_unlock(&b->lock);
        pthread_join(b->thread, NULL);
    }
    // Whatever arrived after the thread ended (nothing should) is let go.
    while (b->inbox) {
        msg_t *m = b->inbox;
        b->inbox = m->next;
        if (m->kind == M_SUBMIT || m->kind == M_ITEM)
            hk_task_destroy(m->task);
        free(m);
    }
    while (b->dls) {
        msg_t *m = b->dls;
        b->dls = m->next;
        free(m);
    }
    hk_pg_destroy(b->pg);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
