#include "worker/metrics.h"

hk_metrics_t hk_metrics;
