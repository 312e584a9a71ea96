// prom: the /metrics exposition (Prometheus text format 0.0.4) of the
// process-wide counters in base/metrics.h, plus the per-endpoint families from
// the dispatcher's lanes (busiest N by traffic and by failures, the rest summed
// under endpoint="other").
#include "worker/prom.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/metrics.h"
#include "retry/breaker.h"
#include "retry/classify.h"

// The per-outcome counter arrays in base/metrics.h are sized without knowing
// the classification (base/ includes nothing of hookd); they must agree.
_Static_assert(HK_METRICS_OUTCOMES == HK_OUTCOME__CNT,
               "HK_METRICS_OUTCOMES (base/metrics.h) must equal HK_OUTCOME__CNT");

// Wall-clock time the process started, in seconds since the epoch; set before
// main() runs, so it is the start of the process within a few milliseconds.
static double start_time_s;

__attribute__((constructor)) static void record_start_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    start_time_s = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

// ---- families ----

static void put_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_counter(FILE *out, const char *name, const char *help, uint_fast64_t v)
{
    put_family(out, name, "counter", help);
    fprintf(out, "%s %llu\n", name, (unsigned long long)v);
}

static void put_gauge(FILE *out, const char *name, const char *help, int_fast64_t v)
{
    put_family(out, name, "gauge", help);
    fprintf(out, "%s %lld\n", name, (long long)v);
}

// One sample with one label: name{label="value"} v
static void put_labeled(FILE *out, const char *name, const char *label, const char *value,
                        unsigned long long v)
{
    fprintf(out, "%s{%s=\"", name, label);
    hk_metrics_put_label_value(out, value);
    fprintf(out, "\"} %llu\n", v);
}

// ---- per endpoint, from the lane objects ----

// Breaker state as a number that grows with trouble: 0 closed, 1 half_open, 2 open.
static int breaker_level(const char *state, double *v)
{
    static const struct {
        hk_breaker_state_t state;
        int level;
    } levels[] = {{HK_BREAKER_CLOSED, 0}, {HK_BREAKER_HALF_OPEN, 1}, {HK_BREAKER_OPEN, 2}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(state, hk_breaker_state_name(levels[i].state)) == 0) {
            *v = levels[i].level;
            return 1;
        }
    }
    return 0;
}

// A lane's value for a per-endpoint family: `field` of its /v1/lanes object
// (booleans as 0/1; "state" as breaker_level). 0 when absent or not a number.
static int lane_value(json_t *lane, const char *field, double *v)
{
    json_t *j = json_object_get(lane, field);
    if (json_is_string(j))
        return breaker_level(json_string_value(j), v);
    if (json_is_boolean(j)) {
        *v = json_is_true(j);
        return 1;
    }
    if (json_is_number(j)) {
        *v = json_number_value(j);
        return 1;
    }
    return 0;
}

typedef enum lane_map {
    LANE_AS_IS,   // the field's value
    LANE_IS_OPEN, // 1 when the breaker level is 2 (open), else 0
} lane_map_t;

static void put_lane_family(FILE *out, json_t *lanes, const char *name, const char *type,
                            const char *field, lane_map_t map, const char *help)
{
    put_family(out, name, type, help);
    size_t i;
    json_t *lane;
    json_array_foreach(lanes, i, lane)
    {
        const char *endpoint = json_string_value(json_object_get(lane, "endpoint"));
        double v;
        const char *f = strcmp(field, "state") == 0 && json_object_get(lane, "state_level")
                            ? "state_level"
                            : field;
        if (!endpoint || !lane_value(lane, f, &v))
            continue;
        if (map == LANE_IS_OPEN)
            v = v == 2;
        fprintf(out, "%s{endpoint=\"", name);
        hk_metrics_put_label_value(out, endpoint);
        fprintf(out, "\"} %.17g\n", v);
    }
}

// Per-endpoint series are bounded (DESIGN §7): lanes a rule keeps ("kept") and
// the busiest `lane_series` by traffic and by failures get their own; the rest
// are summed under endpoint="other" (breaker state: the worst of them).
static atomic_int lane_series = 100;

void hk_prom_set_lane_series(int n)
{
    atomic_store(&lane_series, n < 0 ? 0 : n);
}

typedef struct lane_rank {
    json_t *lane;
    double traffic, failed;
    int keep;
} lane_rank_t;

static int by_traffic(const void *a, const void *b)
{
    const lane_rank_t *x = a, *y = b;
    return x->traffic < y->traffic ? 1 : x->traffic > y->traffic ? -1 : 0;
}

static int by_failed(const void *a, const void *b)
{
    const lane_rank_t *x = a, *y = b;
    return x->failed < y->failed ? 1 : x->failed > y->failed ? -1 : 0;
}

// The lanes that get their own series, plus one "other" object; a new array.
static json_t *select_lanes(json_t *lanes)
{
    size_t n = json_array_size(lanes), top = (size_t)atomic_load(&lane_series);
    json_t *sel = json_array();
    lane_rank_t *r = n ? calloc(n, sizeof(*r)) : NULL;
    if (!sel || (n && !r)) {
        free(r);
        return sel;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(lanes, i);
        double dv = 0, fv = 0, kept = 0;
        lane_value(l, "delivered", &dv);
        lane_value(l, "failed", &fv);
        lane_value(l, "kept", &kept);
        r[i] = (lane_rank_t){.lane = l, .traffic = dv + fv, .failed = fv, .keep = kept != 0};
    }
    if (n > top) {
        qsort(r, n, sizeof(*r), by_traffic);
        for (size_t i = 0; i < top; i++)
            r[i].keep = 1;
        qsort(r, n, sizeof(*r), by_failed);
        for (size_t i = 0; i < top && r[i].failed > 0; i++)
            r[i].keep = 1;
    } else {
        for (size_t i = 0; i < n; i++)
            r[i].keep = 1;
    }
    double state = 0, trips = 0, in_flight = 0, limit = 0, queued = 0, disabled = 0;
    size_t rest = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].keep) {
            json_array_append(sel, r[i].lane);
            continue;
        }
        double v;
        rest++;
        if (lane_value(r[i].lane, "state", &v) && v > state)
            state = v;
        if (lane_value(r[i].lane, "trips", &v))
            trips += v;
        if (lane_value(r[i].lane, "in_flight", &v))
            in_flight += v;
        if (lane_value(r[i].lane, "limit", &v))
            limit += v;
        if (lane_value(r[i].lane, "queued", &v))
            queued += v;
        if (lane_value(r[i].lane, "disabled", &v))
            disabled += v;
    }
    free(r);
    if (rest)
        json_array_append_new(sel, json_pack("{s:s,s:f,s:f,s:f,s:f,s:f,s:f}", "endpoint", "other",
                                             "state_level", state, "trips", trips, "in_flight",
                                             in_flight, "limit", limit, "queued", queued,
                                             "disabled", disabled));
    return sel;
}

// ---- the latency histogram ----

static void put_latency(FILE *out)
{
    static const char name[] = "hookd_delivery_duration_seconds";
    put_family(out, name, "histogram",
               "Transfer time of each finished delivery attempt (connect, TLS, request and "
               "response), in seconds.");
    // One snapshot of the buckets: _count is the +Inf bucket by construction.
    uint_fast64_t counts[HK_LATENCY_BUCKETS + 1];
    for (int b = 0; b <= HK_LATENCY_BUCKETS; b++)
        counts[b] = hk_metric_get(latency_buckets[b]);
    uint_fast64_t sum_us = hk_metric_get(latency_sum_us);
    unsigned long long cum = 0;
    for (int b = 0; b < HK_LATENCY_BUCKETS; b++) {
        cum += counts[b];
        fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, (double)hk_latency_bounds_us[b] / 1e6,
                cum);
    }
    cum += counts[HK_LATENCY_BUCKETS];
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
    fprintf(out, "%s_sum %llu.%06llu\n", name, (unsigned long long)(sum_us / 1000000),
            (unsigned long long)(sum_us % 1000000));
    fprintf(out, "%s_count %llu\n", name, cum);
}

// ---- the process ----

static void put_process(FILE *out)
{
    put_family(out, "process_start_time_seconds", "gauge",
               "Start time of the process since the Unix epoch, in seconds.");
    fprintf(out, "process_start_time_seconds %.3f\n", start_time_s);

    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        put_family(out, "process_cpu_seconds_total", "counter",
                   "User and system CPU time spent, in seconds.");
        fprintf(out, "process_cpu_seconds_total %.6f\n", cpu);
    }

    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm) {
        unsigned long long size_pages, rss_pages;
        if (fscanf(statm, "%llu %llu", &size_pages, &rss_pages) == 2) {
            long page = sysconf(_SC_PAGESIZE);
            put_gauge(out, "process_resident_memory_bytes", "Resident memory size, in bytes.",
                      (int_fast64_t)(rss_pages * (unsigned long long)page));
            put_gauge(out, "process_virtual_memory_bytes", "Virtual memory size, in bytes.",
                      (int_fast64_t)(size_pages * (unsigned long long)page));
        }
        fclose(statm);
    }

    DIR *fds = opendir("/proc/self/fd");
    if (fds) {
        long long n = 0;
        for (struct dirent *de; (de = readdir(fds));)
            if (de->d_name[0] != '.')
                n++;
        closedir(fds);
        put_gauge(out, "process_open_fds", "Open file descriptors (this scrape's included).",
                  (int_fast64_t)n);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        put_gauge(out, "process_max_fds", "Limit on open file descriptors.",
                  (int_fast64_t)rl.rlim_cur);
}

// ---- the exposition ----

static void put_all(FILE *out, json_t *all_lanes, json_t *lanes)
{
    // What it is.
    put_family(out, "hookd_build_info", "gauge",
               "Always 1; the labels say which hookd build is running.");
    fputs("hookd_build_info{version=\"", out);
    hk_metrics_put_label_value(out, HOOKD_VERSION);
    fputs("\"} 1\n", out);
    put_process(out);

    // Intake.
    put_counter(out, "hookd_jobs_consumed_total", "Messages read from the jobs topic.",
                hk_metric_get(consumed));
    put_counter(out, "hookd_jobs_invalid_total",
                "Messages rejected by the job parser (dead-lettered as invalid).",
                hk_metric_get(invalid));
    put_gauge(out, "hookd_consumer_lag",
              "Messages behind the high watermark, summed over the assigned partitions.",
              hk_metric_get(consumer_lag));
    put_gauge(out, "hookd_inflight_jobs",
              "Jobs consumed and not yet finished (including retries waiting in memory).",
              hk_metric_get(inflight_jobs));
    put_gauge(out, "hookd_inflight_bytes", "Memory held by in-flight jobs, in bytes.",
              hk_metric_get(inflight_bytes));
    put_gauge(out, "hookd_intake_paused",
              "1 while intake is paused because an in-flight limit (jobs or bytes) is reached.",
              hk_metric_get(paused));
    put_gauge(out, "hookd_paused_partitions",
              "Partitions paused now: in-flight limits, partition span, or a retry partition "
              "held until its head is due.",
              hk_metric_get(paused_partitions));
    put_counter(out, "hookd_offset_commits_total", "Offset commits that succeeded.",
                hk_metric_get(committed));

    // Delivery.
    put_counter(out, "hookd_delivery_attempts_total", "HTTP delivery attempts started.",
                hk_metric_get(attempts));
    put_family(out, "hookd_deliveries_total", "counter",
               "Finished delivery attempts by outcome: delivered (2xx), retryable, permanent, "
               "gone (410), blocked (network guard).");
    for (int o = 0; o < HK_OUTCOME__CNT; o++) {
        uint_fast64_t v = hk_metric_get(attempts_by_outcome[o]);
        // exhausted, expired and invalid describe jobs, not attempts: shown only
        // if something ever counted one.
        if (v == 0 &&
            (o == HK_OUTCOME_EXHAUSTED || o == HK_OUTCOME_EXPIRED || o == HK_OUTCOME_INVALID))
            continue;
        put_labeled(out, "hookd_deliveries_total", "outcome", hk_outcome_name((hk_outcome_t)o),
                    (unsigned long long)v);
    }
    put_latency(out);
    put_counter(out, "hookd_jobs_delivered_total", "Jobs delivered with a 2xx response.",
                hk_metric_get(delivered));
    put_family(out, "hookd_jobs_dead_lettered_total", "counter",
               "Jobs whose dead-letter record was acknowledged, by error class.");
    for (int c = 0; c < HK_OUTCOME__CNT; c++) {
        if (c == HK_OUTCOME_DELIVERED)
            continue; // never a dead-letter class
        put_labeled(out, "hookd_jobs_dead_lettered_total", "class",
                    hk_outcome_name((hk_outcome_t)c),
                    (unsigned long long)hk_metric_get(dlq_by_class[c]));
    }
    put_family(out, "hookd_retries_total", "counter",
               "Retries scheduled: via=\"memory\" waited in the delay heap, via=\"topic\" "
               "went to the retry topic (acknowledged by the broker).");
    put_labeled(out, "hookd_retries_total", "via", "memory",
                (unsigned long long)hk_metric_get(retries_inline));
    put_labeled(out, "hookd_retries_total", "via", "topic",
                (unsigned long long)hk_metric_get(retried_via_topic));
    put_counter(out, "hookd_deferred_open_breaker_total",
                "Tasks deferred by an open circuit breaker, without charging an attempt.",
                hk_metric_get(deferred_open));
    put_counter(out, "hookd_rate_limited_total",
                "Times a lane waited for a rate-limit permit (endpoint rate/burst).",
                hk_metric_get(rate_limited));
    put_counter(out, "hookd_lanes_evicted_total",
                "Idle endpoint lanes freed (after dispatch.lane_idle_ms, or to make room at "
                "dispatch.max_lanes).",
                hk_metric_get(lanes_evicted));
    put_counter(out, "hookd_lane_cap_waits_total",
                "Jobs for a new endpoint that waited for a lane at dispatch.max_lanes.",
                hk_metric_get(lane_cap_waits));
    put_counter(out, "hookd_lane_holds_total",
                "429 answers that held their endpoint's lane until Retry-After (back-pressure, "
                "not a breaker failure).",
                hk_metric_get(lane_holds));
    put_gauge(out, "hookd_lanes", "Endpoint lanes alive now (bounded by dispatch.max_lanes).",
              (int_fast64_t)json_array_size(all_lanes));
    put_counter(out, "hookd_duplicates_suppressed_total",
                "Jobs not sent because Redis already held their delivered marker.",
                hk_metric_get(duplicate_suppressed));

    // Batches.
    put_counter(out, "hookd_batches_started_total",
                "Batch jobs taken up, including ones resumed from a checkpoint.",
                hk_metric_get(batches_started));
    put_counter(out, "hookd_batches_finished_total", "Batch jobs that reached a terminal status.",
                hk_metric_get(batches_finished));
    put_gauge(out, "hookd_batches_active", "Batch jobs being worked on now.",
              hk_metric_get(batches_active));
    put_family(out, "hookd_batch_items_total", "counter",
               "Batch items by status: succeeded, failed, skipped (batch aborted), resumed "
               "(already terminal in Postgres after a restart: not sent again).");
    put_labeled(out, "hookd_batch_items_total", "status", "succeeded",
                (unsigned long long)hk_metric_get(batch_items_succeeded));
    put_labeled(out, "hookd_batch_items_total", "status", "failed",
                (unsigned long long)hk_metric_get(batch_items_failed));
    put_labeled(out, "hookd_batch_items_total", "status", "skipped",
                (unsigned long long)hk_metric_get(batch_items_skipped));
    put_labeled(out, "hookd_batch_items_total", "status", "resumed",
                (unsigned long long)hk_metric_get(batch_items_resumed));
    put_counter(out, "hookd_batch_checkpoints_total",
                "Batch checkpoint transactions committed to Postgres.", hk_metric_get(checkpoints));

    // Stores.
    put_gauge(out, "hookd_postgres_configured", "1 when postgres.url is set.",
              hk_metric_get(pg_configured));
    put_gauge(out, "hookd_postgres_up",
              "1 while connected to Postgres (0 when down or not configured).",
              hk_metric_get(pg_up));
    put_counter(out, "hookd_postgres_errors_total",
                "Postgres connection and query errors (each one also logged).",
                hk_metric_get(pg_errors));
    put_gauge(out, "hookd_redis_configured", "1 when redis.url is set.",
              hk_metric_get(redis_configured));
    put_gauge(out, "hookd_redis_up",
              "1 while connected to Redis (0 when down or not configured; down means local "
              "state only, not unready).",
              hk_metric_get(redis_up));
    put_counter(out, "hookd_redis_errors_total",
                "Redis connection and command errors (each one also logged).",
                hk_metric_get(redis_errors));

    put_gauge(out, "hookd_kafka_brokers_up",
              "Kafka brokers the consumer holds an open connection to (librdkafka statistics, "
              "every second).",
              hk_metric_get(kafka_brokers_up));
    put_gauge(out, "hookd_kafka_unreachable",
              "1 while no broker the consumer needs answers (the replica is unready).",
              hk_metric_get(kafka_unreachable));
    put_counter(out, "hookd_kafka_unreachable_total",
                "Times the consumer lost every broker it needs (each one also logged).",
                hk_metric_get(kafka_unreachable_total));

    // Per endpoint.
    put_lane_family(out, lanes, "hookd_breaker_state", "gauge", "state", LANE_AS_IS,
                    "Circuit breaker state per endpoint: 0 closed, 1 half_open, 2 open.");
    put_lane_family(out, lanes, "hookd_breaker_open", "gauge", "state", LANE_IS_OPEN,
                    "1 while the endpoint's circuit breaker is open, else 0.");
    put_lane_family(out, lanes, "hookd_breaker_trips_total", "counter", "trips", LANE_AS_IS,
                    "Times the endpoint's circuit breaker opened.");
    put_lane_family(out, lanes, "hookd_lane_inflight", "gauge", "in_flight", LANE_AS_IS,
                    "Attempts in flight per endpoint.");
    put_lane_family(out, lanes, "hookd_lane_limit", "gauge", "limit", LANE_AS_IS,
                    "Adaptive concurrency limit per endpoint.");
    put_lane_family(out, lanes, "hookd_lane_queued", "gauge", "queued", LANE_AS_IS,
                    "Tasks queued or delayed per endpoint.");
    put_lane_family(out, lanes, "hookd_endpoint_disabled", "gauge", "disabled", LANE_AS_IS,
                    "1 while the whole endpoint is disabled (410 Gone or operator).");
}

char *hk_prom_render(json_t *lanes, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (!out)
        return NULL;
    json_t *sel = select_lanes(lanes);
    put_all(out, lanes, sel);
    json_decref(sel);
    if (ferror(out)) {
        fclose(out);
        free(buf);
        return NULL;
    }
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}
