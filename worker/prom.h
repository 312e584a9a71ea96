// prom: renders the /metrics exposition (Prometheus text format 0.0.4) from
// base/metrics.h's counters and the dispatcher's lanes.
#ifndef HK_PROM_H
#define HK_PROM_H

#include <jansson.h>
#include <stddef.h>

// The whole exposition in Prometheus text format 0.0.4: every counter, gauge
// and the latency histogram, plus per-endpoint families from `lanes` (the
// array of hk_dispatch_lanes_json(); borrowed; NULL = no endpoints yet).
// malloc'ed and NUL-terminated, *len without the NUL; NULL when out of memory.
// Any thread: the values are read one by one, so a scrape that races updates
// may see one counter a step ahead of another, never a torn value; a histogram's
// buckets, _count and +Inf always agree with each other.
// Per-endpoint series: lanes a rule keeps plus the hk_prom_set_lane_series()
// busiest (by traffic, and by failures); the others summed under endpoint="other".
char *hk_prom_render(json_t *lanes, size_t *len);

// How many busiest lanes get their own series (admin.metrics_lanes; default 100).
void hk_prom_set_lane_series(int n);

// How many busiest lanes get their own series (admin.metrics_lanes; default 100).
void hk_prom_set_lane_series(int n);

#endif
