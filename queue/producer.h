// producer: the one Kafka producer for hookd's own records: dead letters and
// retries. Every record is acknowledged by the broker (acks=all) before the
// task is handed back through on_done; a record the broker does not acknowledge is
// produced again after a pause, so a task is never dropped here.
//
// hk_producer_dead_letter() may be called from any thread. on_done runs on the
// producer's own poll thread.
#ifndef HK_PRODUCER_H
#define HK_PRODUCER_H

#include <stddef.h>

#include "config/config.h"
#include "model/task.h"

typedef struct hk_producer_s hk_producer_t;

typedef void hk_producer_done_cb(hk_task_t *task, void *arg);

hk_producer_t *hk_producer_new(const hk_config_t *cfg, const char *brokers,
                               hk_producer_done_cb *on_done, void *arg, char *errstr,
                               size_t errstr_size);

// Produces the task's DLQ record: original key and value, with headers
// hookd-error-class, hookd-error, hookd-http-status, hookd-attempts,
// hookd-original-topic, hookd-original-partition, hookd-original-offset (where
// the job was first produced, also for jobs that went through the retry topic),
// hookd-first-attempt-at and hookd-job-id; a batch item's record also
// hookd-batch-id and hookd-batch-index (its value is the item as a standalone job).
// Blocks while the local produce queue is full (backpressure, never a drop).
void hk_producer_dead_letter(hk_producer_t *p, hk_task_t *task);

// Produces the task's retry record to the retry topic: original key and value,
// with headers hookd-attempt (attempts made), hookd-due-at (ms since epoch),
// hookd-first-attempt-at, hookd-last-error, hookd-original-topic/-partition/
// -offset and hookd-job-id. Records are spread over the retry topic's partitions
// by delay tier (powers of two of seconds), so the records of one partition are
// due roughly in order and the consumer can hold a partition on its head.
void hk_producer_retry(hk_producer_t *p, hk_task_t *task, int64_t due_wall_ms);

// Records produced and not yet acknowledged.
size_t hk_producer_outstanding(hk_producer_t *p);

// Waits up to timeout_ms for outstanding records, then stops the poll thread.
// Tasks whose records were not acknowledged are destroyed without on_done: their
// offsets stay uncommitted and Kafka redelivers them. Returns how many there were.
size_t hk_producer_destroy(hk_producer_t *p, int timeout_ms);

#endif
