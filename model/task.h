// task: one consumed message in flight, from intake until its offset may be
// committed. Holds the source position, a copy of the original key and value (the
// DLQ record needs them verbatim), the parsed job, and the attempt state.
//
// Ownership moves with the task: intake creates it, hands it to the dispatcher or
// the producer, and it comes back to intake (hk_task_done) once terminal, where it
// is destroyed. Exactly one thread touches a task at a time.
#ifndef HK_TASK_H
#define HK_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "retry/breaker.h"
#include "retry/classify.h"
#include "model/job.h"
#include "base/endpoint.h"

// What a task is: a webhook job from Kafka (it comes back to intake, whose offset
// tracker commits it), or an item of a Postgres batch (it comes back to its batch,
// task->owner; never the retry topic, never a key chain, never Redis dedupe, never
// taken by a partition's revoke). Every place where the two behave differently
// reads this.
typedef enum hk_task_kind {
    HK_TASK_WEBHOOK = 0,
    HK_TASK_BATCH_ITEM,
} hk_task_kind_t;

typedef struct hk_task hk_task_t;
struct hk_task {
    hk_task_t *next;     // intrusive link for whichever queue holds the task
    hk_task_kind_t kind; // HK_TASK_WEBHOOK unless worker/batch.c made it an item

    // Source position: what intake consumed (topic points into the config: jobs or
    // retry topic). A batch item carries its batch job's position, for logs only:
    // its batch, not intake, takes it back (see `owner`).
    const char *topic;
    int32_t partition;
    int64_t offset;
    uint64_t generation; // assignment generation the offset belongs to

    // Where the job was first produced: the source itself, or for a record from the
    // retry topic the jobs-topic position it carries in its headers. Derived job
    // ids and dead-letter headers use this, so they never change across retries.
    char origin_topic[256];
    int32_t origin_partition;
    int64_t origin_offset;

    void *key; // original key/value, NULL/0 when absent
    size_t key_len;
    void *value;
    size_t value_len;

    hk_job_t *job; // NULL when the message is not a valid job
    // The endpoint key of job->url (base/endpoint.h), computed once by
    // hk_task_set_job; "invalid:" when the URL has none. The dispatcher's lane.
    char endpoint[HK_ENDPOINT_KEY_MAX];

    // Attempt state.
    int attempts;
    int64_t first_attempt_ms; // wall clock
    int64_t retry_after_ms;   // from the last response's Retry-After, -1 when none

    // Dispatcher state (worker/dispatch.c).
    void *queue;   // the (tenant, endpoint) queue the task belongs to
    void *chain;   // its ordering-key chain (dispatch.ordering = key), or NULL
    int cancelled; // its transfer was cancelled (partition revoked): no outcome
    int lane_held; // taken: holds a lane slot and a breaker ticket
    hk_breaker_ticket_t ticket;
    int64_t due_ms;    // CLOCK_MONOTONIC time it may be taken, 0 = now
    int open_deferred; // waits in the delay heap for its endpoint's breaker to half-open
    size_t heap_idx;   // position in the delay heap, SIZE_MAX when not in it

    hk_outcome_t outcome; // final outcome once terminal
    int http_status;      // last HTTP status, 0 when none
    int curl_code;        // last transfer's CURLcode, 0 when none
    char error[256];      // last error in words (never a body or a secret)

    int64_t retry_due_wall_ms; // set when handed to the retry topic (ms since epoch)
    int to_retry_topic;        // its record goes to the retry topic, not the DLQ
    int value_omitted;         // its DLQ record was too large for the topic: sent without
                               // the job's value (queue/producer.c)

    size_t mem_bytes; // memory held by the task and its job

    // Batch items (kind HK_TASK_BATCH_ITEM, worker/batch.c); NULL/-1 otherwise.
    // `owner` is the batch the item goes back to: the dispatcher and the delivery
    // threads pull back or cancel one batch's items by it (hk_dispatch_remove_owned,
    // hk_deliver_cancel_owned) without knowing what a batch is.
    void *owner;
    const char *batch_id; // its id (lives as long as the batch)
    int32_t item_idx;     // the item's index in the batch, -1 for other tasks
};

// Copies key and value into one allocation with the task. NULL on ENOMEM.
hk_task_t *hk_task_new(const char *topic, int32_t partition, int64_t offset, uint64_t generation,
                       const void *key, size_t key_len, const void *value, size_t value_len);

// Attaches the parsed job (ownership passes to the task) and computes its
// endpoint key.
void hk_task_set_job(hk_task_t *task, hk_job_t *job);

// Records the terminal outcome and a printf-style error.
void hk_task_fail(hk_task_t *task, hk_outcome_t outcome, int http_status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void hk_task_destroy(hk_task_t *task);

#endif
