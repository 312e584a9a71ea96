// intake: the consumer thread. It alone owns the rd_kafka consumer (poll, pause,
// resume, commit). It turns each message into a task, records its offset in the
// partition's tracker, and routes it: valid jobs to the dispatcher, invalid ones to
// the dead-letter producer. Finished tasks come back through hk_intake_done() from
// any thread; intake marks their offsets finished and stores the highest
// contiguous one, which librdkafka commits (enable.auto.offset.store=false).
//
// Flow control: past limits.max_inflight_jobs / max_inflight_bytes every assigned
// partition is paused, past limits.max_partition_span that partition; each resumes
// below 80%. Nothing is dropped.
#ifndef HK_INTAKE_H
#define HK_INTAKE_H

#include <stdint.h>

#include "config/config.h"
#include "queue/producer.h"
#include "model/task.h"

typedef struct hk_intake_s hk_intake_t;

// Creates the consumer and subscribes to cfg->kafka_topic. Nothing is fetched
// until hk_intake_run().
hk_intake_t *hk_intake_new(const hk_config_t *cfg, const char *brokers, char *errstr,
                           size_t errstr_size);

// The consumer loop; returns after hk_intake_stop() once in-flight work finished
// (or shutdown.grace_ms passed), offsets were committed and the group was left.
// `producer` receives invalid jobs.
void hk_intake_run(hk_intake_t *in, hk_producer_t *producer);

// Any thread: ask the loop to drain and return. Async-signal-unsafe: call from a
// normal thread (main turns signals into a flag first).
void hk_intake_stop(hk_intake_t *in);

// Any thread: a task reached its terminal state (delivered, or its DLQ record was
// acknowledged). Intake takes ownership. Signature fits hk_producer_done_cb.
void hk_intake_done(hk_task_t *task, void *in);

// Called on the intake thread for a revoked partition whose in-flight work did not
// finish within the revoke wait: the callee cancels it (hk_deliver_cancel), and
// the cancelled tasks come back through hk_intake_done with task->cancelled set.
typedef void hk_intake_cancel_cb(const char *topic, int32_t partition, void *arg);
void hk_intake_set_cancel(hk_intake_t *in, hk_intake_cancel_cb *cancel, void *arg);

// Batch jobs go to `batch` (the batch runner) instead of the dispatcher; without
// one they are dead-lettered as invalid. Set before hk_intake_run().
typedef void hk_intake_batch_cb(hk_task_t *task, void *arg);
void hk_intake_set_batch(hk_intake_t *in, hk_intake_batch_cb *batch, void *arg);

// Valid webhook jobs go to `submit` (the pipeline: Redis claim, then the
// dispatcher). `due_ms` is when it may be sent (CLOCK_MONOTONIC; 0 = now): the
// callee queues it or hands the task back through hk_intake_done. Required: set
// before hk_intake_run(). Intake knows nothing of the dispatcher beyond these
// two callbacks (queue/ sits below worker/, see docs/architecture.md).
typedef void hk_intake_submit_cb(hk_task_t *task, int64_t due_ms, void *arg);
void hk_intake_set_submit(hk_intake_t *in, hk_intake_submit_cb *submit, void *arg);

// Called on the intake thread for each revoked partition: the callee takes the
// partition's queued, not yet started tasks out of its queues and returns them as
// a list linked by task->next (NULL when none). Intake drops them (their offsets
// stay unfinished for the new owner). Set before hk_intake_run().
typedef hk_task_t *hk_intake_unqueue_cb(const char *topic, int32_t partition, void *arg);
void hk_intake_set_unqueue(hk_intake_t *in, hk_intake_unqueue_cb *unqueue, void *arg);

// Called on the intake thread as a revoke begins, once per partition, before the
// bounded wait for its in-flight work (batches use it to checkpoint and hand
// their tasks back within that wait). Set before hk_intake_run().
void hk_intake_set_revoking(hk_intake_t *in, hk_intake_cancel_cb *revoking, void *arg);

// SIGHUP: the limits and shutdown.grace_ms of `cfg` apply from the intake loop's
// next turn. `cfg` must live until hk_intake_destroy(). Any thread.
void hk_intake_set_config(hk_intake_t *in, const hk_config_t *cfg);

// Partitions currently assigned to this consumer (both topics). Any thread.
int hk_intake_assigned(hk_intake_t *in);

// Unfinished tasks owned by the pipeline (consumed, not yet returned).
long hk_intake_inflight(hk_intake_t *in);

void hk_intake_destroy(hk_intake_t *in);

#endif
