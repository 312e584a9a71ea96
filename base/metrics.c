// metrics: the process-wide counters and the latency histogram (metrics.h);
// worker/prom.c renders them for /metrics.
#include "base/metrics.h"

hk_metrics_t hk_metrics;

const int64_t hk_latency_bounds_us[HK_LATENCY_BUCKETS] = {
    5000,    10000,   25000,   50000,    100000,   250000,   500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 120000000,
};

void hk_metrics_observe_attempt(int outcome, int64_t latency_us)
{
    if (outcome >= 0 && outcome < HK_METRICS_OUTCOMES)
        hk_metric_add(attempts_by_outcome[outcome], 1);
    if (latency_us < 0)
        latency_us = 0;
    int b = 0;
    while (b < HK_LATENCY_BUCKETS && latency_us > hk_latency_bounds_us[b])
        b++;
    // The sum first: a scrape in between sees a sum a little ahead of the
    // count, which rate(sum)/rate(count) absorbs.
    hk_metric_add(latency_sum_us, (uint_fast64_t)latency_us);
    hk_metric_add(latency_buckets[b], 1);
}

void hk_metrics_put_label_value(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", out);
        else if (*s == '"')
            fputs("\\\"", out);
        else if (*s == '\n')
            fputs("\\n", out);
        else
            fputc(*s, out);
    }
}
