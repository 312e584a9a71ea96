// batch: the batch runner. One thread that owns a Postgres connection and works
// every batch job this process holds: it expands a batch's items into tasks,
// feeds them to the dispatcher (so breakers, lanes and retries apply per item),
// keeps batch.concurrency items of each batch in flight, and checkpoints item
// statuses, counters and the cursor in one transaction every
// batch.checkpoint_items items or batch.checkpoint_ms. A batch ends completed,
// completed_with_failures or aborted; only then is its task handed back, so its
// Kafka offset is committed only once the batch is terminal in Postgres.
//
// A redelivered batch (crash, rebalance) resumes from Postgres: items already
// terminal there are not sent again, so only items that finished after the last
// checkpoint can be sent twice (with the same key). While Postgres is away,
// batches pause (nothing is marked failed for it) and resume on reconnect;
// webhook jobs are not affected.
//
// The same thread also records dead letters in the dead_letters table, since it
// owns the connection (best effort: the DLQ topic stays the record of truth).
//
// Item tasks are ordinary tasks of kind HK_TASK_BATCH_ITEM with task->owner the
// batch (the dispatcher pulls them back and the delivery threads cancel them by
// it) and the batch job's source position (logs only: a revoke of that partition
// does not take them). Every item task the runner hands out comes back to it
// exactly once, through hk_batch_item_done(). The run's decisions (terminal
// items, cursor, abort, final status) are worker/batchplan.h's.
#ifndef HK_BATCH_H
#define HK_BATCH_H

#include <jansson.h>

#include "config/config.h"
#include "worker/dispatch.h"
#include "model/task.h"

typedef struct hk_batch_s hk_batch_t;

// Hands a task back: a batch task that is terminal (task->outcome delivered) or
// given up (task->cancelled: revoked or shutting down, not to be committed).
typedef void hk_batch_task_cb(hk_task_t *task, void *arg);
// Cancels the in-flight transfers of the items owned by `owner`
// (hk_deliver_cancel_owned); they come back through hk_batch_item_done, cancelled.
typedef void hk_batch_cancel_cb(const void *owner, void *arg);

typedef struct hk_batch_opts {
    const hk_config_t *cfg;
    hk_dispatch_t *dispatch;
    hk_batch_task_cb *done;        // batch tasks, terminal or given up
    hk_batch_task_cb *dead_letter; // a task to dead-letter (hk_producer_dead_letter)
    hk_batch_cancel_cb *cancel;
    void *arg;
} hk_batch_opts_t;

// Starts the runner thread. Connecting is the thread's business: Postgres being
// down now is not an error. NULL with errstr on failure.
hk_batch_t *hk_batch_start(const hk_batch_opts_t *opts, char *errstr, size_t errstr_size);

// Stops the thread. Batches still held are handed back cancelled first.
void hk_batch_stop(hk_batch_t *b);

// A batch job consumed by intake (task->job->type == HK_JOB_BATCH). Any thread.
void hk_batch_submit(hk_batch_t *b, hk_task_t *task);

// An item task is back: delivered (task->outcome), dead-lettered (its DLQ record
// acknowledged), or cancelled (task->cancelled). Any thread.
void hk_batch_item_done(hk_batch_t *b, hk_task_t *task);

// The partition of these batches is being revoked: stop sending their items,
// give in-flight items until `wait_ms` to end (then cancel them), checkpoint,
// and hand the batch tasks back cancelled. Any thread; returns at once.
void hk_batch_suspend(hk_batch_t *b, const char *topic, int32_t partition, int wait_ms);

// Shutdown: the same for every batch.
void hk_batch_suspend_all(hk_batch_t *b, int wait_ms);

// Records a dead-lettered task (its DLQ record was acknowledged) in the
// dead_letters table, later, from the runner thread. Copies what it needs.
void hk_batch_record_dead_letter(hk_batch_t *b, const hk_task_t *task);

// Batches held now.
int hk_batch_active(hk_batch_t *b);

#endif
