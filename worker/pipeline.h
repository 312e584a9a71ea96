// pipeline: a job's path through hookd, and the one place that wires it. Owns
// the parts a task passes through (intake, the Redis claim, the dispatcher, the
// delivery threads, the producer, the batch runner) and every hop between them;
// worker/pipeline.c draws the path. main.c keeps config, signals and the order
// of start-up and shutdown, and calls these in that order:
//
//   hk_pipeline_new → hk_pipeline_prepare → (admin server) → hk_pipeline_start →
//   hk_pipeline_run → hk_pipeline_tick every 50 ms (hk_pipeline_reload on SIGHUP) →
//   hk_pipeline_drain → hk_pipeline_stop → (admin server stops) → hk_pipeline_destroy
//
// Every function is called from the main thread. On a failed start-up main skips
// to hk_pipeline_stop and hk_pipeline_destroy, which cope with any stage.
#ifndef HK_PIPELINE_H
#define HK_PIPELINE_H

#include <stddef.h>

#include "config/config.h"
#include "worker/dispatch.h"
#include "base/netguard.h"

typedef struct hk_pipeline hk_pipeline_t;

// Borrows cfg and guard: both must outlive the pipeline. Aborts on ENOMEM.
hk_pipeline_t *hk_pipeline_new(const hk_config_t *cfg, hk_netguard_t *guard);

// Connects Redis (when redis.url is set) and creates the dispatcher with the
// [endpoint] sections applied. Nothing is consumed yet. 0, or -1 with errstr.
int hk_pipeline_prepare(hk_pipeline_t *pl, char *errstr, size_t errstr_size);

// The dispatcher (for the admin server), after hk_pipeline_prepare.
hk_dispatch_t *hk_pipeline_dispatch(hk_pipeline_t *pl);

// Creates intake (which joins the group at hk_pipeline_run), the producer, the
// batch runner (when postgres.url is set) and the delivery threads.
// 0, or -1 with errstr.
int hk_pipeline_start(hk_pipeline_t *pl, const char *brokers, char *errstr, size_t errstr_size);

// Starts the intake thread: jobs flow.
void hk_pipeline_run(hk_pipeline_t *pl);

// The main loop's turn: asks Redis again about keys another replica had in flight.
void hk_pipeline_tick(hk_pipeline_t *pl);

// 1 while the group has given this process partitions to work on.
int hk_pipeline_ready(hk_pipeline_t *pl);

// SIGHUP with a valid config: a new retry policy, breaker and lane settings,
// [endpoint] flags and intake limits. `next` must live until the pipeline is
// destroyed (threads may still hold `cur`).
void hk_pipeline_reload(hk_pipeline_t *pl, const hk_config_t *next, const hk_config_t *cur);

// The first SIGTERM: batches hand their tasks back, intake stops, retries waiting
// in memory go to the retry topic, then the delivery threads, the producer (1 s to
// flush) and the batch runner stop. Counts what was cut short.
void hk_pipeline_drain(hk_pipeline_t *pl, const hk_config_t *cur, size_t *aborted_transfers,
                       size_t *unacked_dead_letters);

// Stops whatever is still running and destroys intake; the dispatcher stays for
// the admin server until hk_pipeline_destroy.
void hk_pipeline_stop(hk_pipeline_t *pl);

void hk_pipeline_destroy(hk_pipeline_t *pl);

#endif
