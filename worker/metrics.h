// metrics: process-wide counters and gauges, updated lock-free from any thread,
// read by the periodic summary line and (later) the admin /metrics endpoint.
#ifndef HK_METRICS_H
#define HK_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "retry/classify.h"

typedef struct hk_metrics {
    atomic_uint_fast64_t consumed;      // messages read from the jobs topic
    atomic_uint_fast64_t invalid;       // of which rejected by the parser
    atomic_uint_fast64_t attempts;      // HTTP attempts started
    atomic_uint_fast64_t delivered;     // jobs delivered (2xx)
    atomic_uint_fast64_t dead_lettered; // jobs whose DLQ record was acknowledged
    atomic_uint_fast64_t dlq_by_class[HK_OUTCOME__CNT];
    atomic_uint_fast64_t retries_inline;    // retries that waited in memory (delay heap)
    atomic_uint_fast64_t retried_via_topic; // retry records acknowledged by the broker
    atomic_uint_fast64_t deferred_open;     // tasks deferred by an open breaker (not charged)
    atomic_uint_fast64_t committed;         // offset commits that succeeded
    atomic_int_fast64_t inflight_jobs;      // consumed, not yet finished
    atomic_int_fast64_t inflight_bytes;     // memory those jobs hold
    atomic_int_fast64_t paused;             // 1 while intake is paused for flow control
    atomic_int_fast64_t paused_partitions;  // partitions paused now (limits, span, retry hold)
    atomic_int_fast64_t consumer_lag;       // messages behind the high watermark, assigned parts

    // Batches (worker/batch.c)
    atomic_uint_fast64_t batches_started;   // batch jobs taken up (including resumed ones)
    atomic_uint_fast64_t batches_finished;  // reached a terminal status
    atomic_uint_fast64_t batch_items_succeeded;
    atomic_uint_fast64_t batch_items_failed;
    atomic_uint_fast64_t batch_items_skipped;
    atomic_uint_fast64_t batch_items_resumed; // found terminal in Postgres on resume: not sent
    atomic_uint_fast64_t checkpoints;         // checkpoint transactions committed
    atomic_int_fast64_t batches_active;       // batches being worked on now

    // Stores: 1 while connected (0 when down or not configured; see *_configured)
    atomic_int_fast64_t pg_configured;
    atomic_int_fast64_t pg_up;
    atomic_uint_fast64_t pg_errors;
    atomic_int_fast64_t redis_configured;
    atomic_int_fast64_t redis_up;
    atomic_uint_fast64_t redis_errors;
    atomic_uint_fast64_t duplicate_suppressed; // jobs skipped: Redis says already delivered
    atomic_uint_fast64_t rate_limited;         // times a lane waited for a rate-limit permit
} hk_metrics_t;

extern hk_metrics_t hk_metrics;

#define hk_metric_add(name, n)                                                                     \
    atomic_fetch_add_explicit(&hk_metrics.name, (n), memory_order_relaxed)
#define hk_metric_get(name) atomic_load_explicit(&hk_metrics.name, memory_order_relaxed)

#endif
