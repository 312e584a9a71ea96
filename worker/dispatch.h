// dispatch: the queue between intake and the delivery threads. Tasks wait in one
// FIFO per tenant; delivery threads pull from the tenants in round-robin order, so
// one tenant's backlog cannot starve another's. This is the seam where per-endpoint
// lanes (breakers, concurrency limits) plug in.
//
// Bounding is intake's job (it pauses partitions past the in-flight limits); the
// dispatcher never drops and never blocks. All functions are thread-safe.
#ifndef HK_DISPATCH_H
#define HK_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "worker/task.h"

typedef struct hk_dispatch_s hk_dispatch_t;

// Called, without the dispatcher's lock held, to wake an idle delivery thread.
typedef void hk_dispatch_wake_cb(void *arg);

hk_dispatch_t *hk_dispatch_new(void);

// Destroys the dispatcher and every task still queued in it.
void hk_dispatch_destroy(hk_dispatch_t *d);

// Registers a delivery thread; returns its slot number for hk_dispatch_take().
int hk_dispatch_register(hk_dispatch_t *d, hk_dispatch_wake_cb *wake, void *arg);

void hk_dispatch_submit(hk_dispatch_t *d, hk_task_t *task);

// Takes up to `max` tasks for worker `slot`, round-robin across tenants. When it
// returns fewer than `max` the worker has spare capacity: it is marked idle and
// the next submit wakes it.
size_t hk_dispatch_take(hk_dispatch_t *d, int slot, hk_task_t **out, size_t max);

// Removes every queued task of `partition` (revoked) and returns them as a list
// linked through task->next, oldest first.
hk_task_t *hk_dispatch_remove_partition(hk_dispatch_t *d, int32_t partition);

size_t hk_dispatch_queued(hk_dispatch_t *d);

#endif
