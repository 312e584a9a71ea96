// sched: which task runs next. Tasks wait in one FIFO per (tenant, endpoint);
// tenants are served round robin, and within a tenant its endpoints' queues, so
// one tenant's backlog or one dead endpoint cannot take over the delivery slots.
// A queue is READY (in its tenant's ring), PARKED on its lane (worker/lane.h:
// no slot, permit or probe) or IDLE. With ordering by key, at most one task of a
// key is active (queued, in flight or delayed); the others wait on its chain in
// the order they came. Tasks due later wait in a min-heap on their due time; at
// the lane cap, tasks for an endpoint without a lane wait, unbound, for one.
//
// Lifetimes: a task is *bound* (task->queue set, counted in its queue's and
// lane's refs) while queued, delayed or in flight; a queue is freed with its last
// bound task, a tenant with its last queue, a chain with its last task.
//
// @locks: none of its own: worker/dispatch.c calls it under its lock. Times are
// CLOCK_MONOTONIC ms passed in.
#ifndef HK_SCHED_H
#define HK_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "worker/lane.h"
#include "model/task.h"

typedef struct hk_sched hk_sched_t;
typedef struct hk_sched_queue hk_sched_queue_t;

// Borrows the lanes (queues bind to lanes through hk_lanes_find/ref/unref).
hk_sched_t *hk_sched_new(hk_lanes_t *ls, size_t max_lanes);
// Destroys every task still queued, delayed, chained or waiting for a lane.
void hk_sched_destroy(hk_sched_t *s);

// A task comes in, ready at due_ms (0 = now). `ordered`: chained by its ordering
// key (batch items never are); while an earlier task of its key is active it waits
// on the chain. 1 when a delivery thread should be woken: it is ready now, or is
// the new earliest in the delay heap.
int hk_sched_add(hk_sched_t *s, hk_task_t *task, int64_t due_ms, int ordered);

// The task's key chain moves on (the task is terminal, or left): the next waiting
// task of the key becomes active. 1 when one did.
int hk_sched_release(hk_sched_t *s, hk_task_t *task);

// The task leaves (its queue, tenant and lane ref may go).
void hk_sched_unbind(hk_sched_t *s, hk_task_t *task, int64_t now_ms);

// Before a take: tasks waiting for a lane get one while there is room, then
// delayed tasks that are due join their queues.
void hk_sched_admit_waiting(hk_sched_t *s);
void hk_sched_due(hk_sched_t *s, int64_t now_ms);

// The queue to serve next (front of the front tenant), NULL when none is READY.
hk_sched_queue_t *hk_sched_front(hk_sched_t *s);
hk_lane_t *hk_sched_queue_lane(const hk_sched_queue_t *q);
hk_task_t *hk_sched_queue_head(const hk_sched_queue_t *q);
size_t hk_sched_queue_cnt(const hk_sched_queue_t *q);
hk_task_t *hk_sched_pop(hk_sched_t *s, hk_sched_queue_t *q);
// The queue waits on its lane until hk_sched_unpark.
void hk_sched_park(hk_sched_queue_t *q);
// After a task was taken from q: q goes to the back of its tenant's ring, the
// tenant to the back of the global ring.
void hk_sched_rotate(hk_sched_t *s, hk_sched_queue_t *q);
// A bound task waits in the delay heap until task->due_ms.
void hk_sched_delay(hk_sched_t *s, hk_task_t *task);
// The lane's parked queues become READY again.
void hk_sched_unpark(hk_sched_t *s, hk_lane_t *l);
// The lane a bound task belongs to.
hk_lane_t *hk_sched_lane_of(const hk_task_t *task);

// The earliest delayed task's due time, or INT64_MAX; and whether tasks wait
// for a lane.
int64_t hk_sched_next_due(const hk_sched_t *s);
int hk_sched_has_waiting(const hk_sched_t *s);

// Tasks that an OPEN breaker of `l` deferred are due now (breaker reset). How many.
size_t hk_sched_release_deferred(hk_sched_t *s, const hk_lane_t *l, int64_t now_ms);

// See hk_dispatch_remove_partition / hk_dispatch_remove_owned /
// hk_dispatch_remove_delayed.
hk_task_t *hk_sched_remove_partition(hk_sched_t *s, const char *topic, int32_t partition,
                                     int64_t now_ms);
hk_task_t *hk_sched_remove_owned(hk_sched_t *s, const void *owner, int64_t now_ms);
hk_task_t *hk_sched_remove_delayed(hk_sched_t *s, int64_t now_ms);

// Queued + delayed + waiting for a lane.
size_t hk_sched_queued(const hk_sched_t *s);
typedef struct hk_sched_counts {
    size_t queues, tenants, chains, waiting_for_lane;
} hk_sched_counts_t;
void hk_sched_counts(const hk_sched_t *s, hk_sched_counts_t *out);

#endif
