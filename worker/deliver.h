// deliver: the delivery threads. Each thread is an event loop (epoll + curl's socket
// API) around one curl multi handle (and so its own connection cache, reused across
// jobs with keep-alive, HTTP/2 streams multiplexed when the receiver offers h2, TLS
// sessions shared by its handles) and delivery.max_transfers_per_thread
// preallocated transfer slots. Threads pull tasks from the dispatcher whenever they
// have free slots, send each as one signed HTTP request, classify the result and
// hand the task to on_done with task->outcome set. A task whose tenant has secrets
// that cannot sign it is never sent: it fails PERMANENT.
//
// Every request carries the Standard Webhooks headers, Idempotency-Key and
// User-Agent; redirects are not followed; the network guard checks the address
// actually connected; response bodies are read up to delivery.max_response_bytes.
#ifndef HK_DELIVER_H
#define HK_DELIVER_H

#include <stddef.h>

#include "config/config.h"
#include "worker/dispatch.h"
#include "base/netguard.h"
#include "model/task.h"

typedef struct hk_deliver_s hk_deliver_t;

// Runs on the delivery thread that finished the attempt. Ownership of the task
// passes to the callback.
typedef void hk_deliver_done_cb(hk_task_t *task, void *arg);

typedef struct hk_deliver_opts {
    const hk_config_t *cfg; // must outlive the pool
    hk_dispatch_t *dispatch;
    const hk_netguard_t *guard;
    hk_deliver_done_cb *on_done;
    hk_deliver_done_cb *on_cancel; // a transfer cancelled by hk_deliver_cancel(); may be NULL
    void *arg;
} hk_deliver_opts_t;

// Starts cfg->delivery_threads threads. NULL with errstr on failure.
// curl_global_init() must have been called.
hk_deliver_t *hk_deliver_start(const hk_deliver_opts_t *opts, char *errstr, size_t errstr_size);

// Cancels every webhook transfer in progress for (topic, partition) (a revoked
// partition whose in-flight work outlived the revoke wait): each task goes to
// on_cancel with task->cancelled set. Batch items are left alone, whatever source
// position they carry. Returns once every thread has done so.
// Any thread but a delivery thread.
void hk_deliver_cancel(hk_deliver_t *dl, const char *topic, int32_t partition);

// The same for every transfer whose task->owner is `owner` (a batch's items, once
// its suspend wait is over). A NULL owner cancels nothing.
void hk_deliver_cancel_owned(hk_deliver_t *dl, const void *owner);

// Transfers in progress across all threads.
size_t hk_deliver_active(hk_deliver_t *dl);

// Stops the threads. Transfers still running are aborted and their tasks destroyed
// without on_done (their offsets stay uncommitted). Returns how many there were.
size_t hk_deliver_stop(hk_deliver_t *dl);

#endif
