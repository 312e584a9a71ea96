// metrics: process-wide counters, gauges and the delivery latency histogram,
// updated lock-free from any thread, read by the periodic summary line and
// rendered for the admin /metrics endpoint by worker/prom.c (the metric names
// and labels are listed in docs/operations.md). A leaf: includes nothing of hookd.
#ifndef HK_METRICS_H
#define HK_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Classes of an attempt's outcome counted per class (retry/classify.h,
// hk_outcome_t; worker/prom.c asserts the two agree).
#define HK_METRICS_OUTCOMES 8

// Upper bounds of the delivery latency histogram, in microseconds (rendered in
// seconds: 0.005 .. 120; the last bucket, +Inf, is implicit). 120 s is the
// largest per-attempt timeout a job may ask for.
#define HK_LATENCY_BUCKETS 14
extern const int64_t hk_latency_bounds_us[HK_LATENCY_BUCKETS];

typedef struct hk_metrics {
    atomic_uint_fast64_t consumed;      // messages read from the jobs topic
    atomic_uint_fast64_t invalid;       // of which rejected by the parser
    atomic_uint_fast64_t attempts;      // HTTP attempts started
    atomic_uint_fast64_t delivered;     // jobs delivered (2xx)
    atomic_uint_fast64_t dead_lettered; // jobs whose DLQ record was acknowledged
    atomic_uint_fast64_t dlq_by_class[HK_METRICS_OUTCOMES];
    atomic_uint_fast64_t retries_inline;    // retries that waited in memory (delay heap)
    atomic_uint_fast64_t retried_via_topic; // retry records acknowledged by the broker
    atomic_uint_fast64_t deferred_open;     // tasks deferred by an open breaker (not charged)
    atomic_uint_fast64_t committed;         // offset commits that succeeded
    atomic_int_fast64_t inflight_jobs;      // consumed, not yet finished
    atomic_int_fast64_t inflight_bytes;     // memory those jobs hold
    atomic_int_fast64_t paused;             // 1 while intake is paused for flow control
    atomic_int_fast64_t paused_partitions;  // partitions paused now (limits, span, retry hold)
    atomic_int_fast64_t consumer_lag;       // messages behind the high watermark, assigned parts

    // Per attempt (worker/deliver.c, hk_metrics_observe_attempt): the attempt's
    // own outcome as hk_classify() saw it (delivered, retryable, permanent, gone,
    // blocked), and its transfer time. latency_buckets[i] counts the attempts
    // that took at most hk_latency_bounds_us[i] and more than the bound before it
    // (not cumulative); latency_buckets[HK_LATENCY_BUCKETS] those above the last.
    atomic_uint_fast64_t attempts_by_outcome[HK_METRICS_OUTCOMES];
    atomic_uint_fast64_t latency_buckets[HK_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latency_sum_us;

    // Batches (worker/batch.c)
    atomic_uint_fast64_t batches_started;  // batch jobs taken up (including resumed ones)
    atomic_uint_fast64_t batches_finished; // reached a terminal status
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

    // Bounded per-endpoint state (worker/dispatch.c)
    atomic_uint_fast64_t lanes_evicted;  // idle lanes freed (idle time, or room at the cap)
    atomic_uint_fast64_t lane_cap_waits; // tasks that waited for a lane at dispatch.max_lanes
    atomic_uint_fast64_t lane_holds;     // 429 answers that held their lane (back-pressure)

    // Kafka, as the consumer sees it (queue/intake.c stats_cb, once a second)
    atomic_int_fast64_t kafka_brokers_up;         // brokers it holds an open connection to
    atomic_int_fast64_t kafka_unreachable;        // 1 while none of the brokers it needs answers
    atomic_uint_fast64_t kafka_unreachable_total; // times it became unreachable
} hk_metrics_t;

extern hk_metrics_t hk_metrics;

#define hk_metric_add(name, n)                                                                     \
    atomic_fetch_add_explicit(&hk_metrics.name, (n), memory_order_relaxed)
#define hk_metric_get(name) atomic_load_explicit(&hk_metrics.name, memory_order_relaxed)

// One finished delivery attempt: its classified outcome and how long the
// transfer took (microseconds; negative counts as 0). Lock-free; any thread.
void hk_metrics_observe_attempt(int outcome, int64_t latency_us);

// Writes `s` as a Prometheus label value: backslash, double quote and newline
// escaped (\\, \", \n), everything else as is.
void hk_metrics_put_label_value(FILE *out, const char *s);

#endif
