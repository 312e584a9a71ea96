// producer: the one Kafka producer for hookd's own records (dead letters now,
// retries later). Every record is acknowledged by the broker (acks=all) before the
// task is handed back through on_done; a record the broker does not acknowledge is
// produced again after a pause, so a task is never dropped here.
//
// hk_producer_dead_letter() may be called from any thread. on_done runs on the
// producer's own poll thread.
#ifndef HK_PRODUCER_H
#define HK_PRODUCER_H

#include <stddef.h>

#include "config/config.h"
#include "worker/task.h"

typedef struct hk_producer_s hk_producer_t;

typedef void hk_producer_done_cb(hk_task_t *task, void *arg);

hk_producer_t *hk_producer_new(const hk_config_t *cfg, const char *brokers,
                               hk_producer_done_cb *on_done, void *arg, char *errstr,
                               size_t errstr_size);

// Produces the task's DLQ record: original key and value, with headers
// hookd-error-class, hookd-error, hookd-http-status, hookd-attempts,
// hookd-original-topic, hookd-original-partition, hookd-original-offset.
// Blocks while the local produce queue is full (backpressure, never a drop).
void hk_producer_dead_letter(hk_producer_t *p, hk_task_t *task);

// Records produced and not yet acknowledged.
size_t hk_producer_outstanding(hk_producer_t *p);

// Waits up to timeout_ms for outstanding records, then stops the poll thread.
// Tasks whose records were not acknowledged are destroyed without on_done: their
// offsets stay uncommitted and Kafka redelivers them. Returns how many there were.
size_t hk_producer_destroy(hk_producer_t *p, int timeout_ms);

#endif
