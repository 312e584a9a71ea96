// mockkafka: librdkafka's mock cluster, for development (`kafka.brokers = mock`),
// the demo and the tests' out-of-process broker (tests/support/mockkafka_main.c).
// It speaks the Kafka protocol on loopback ports: clients use it like a real cluster.
#ifndef HK_MOCKKAFKA_H
#define HK_MOCKKAFKA_H

#include <stddef.h>

typedef struct hk_mockkafka_s hk_mockkafka_t;

// Starts a cluster of `brokers` brokers and creates `topics[i]` with `partitions[i]`
// partitions each. NULL with errstr on failure.
hk_mockkafka_t *hk_mockkafka_new(int brokers, const char *const *topics, const int *partitions,
                                 size_t topics_cnt, char *errstr, size_t errstr_size);

// "127.0.0.1:port,..." for bootstrap.servers. Valid until destroy.
const char *hk_mockkafka_bootstraps(const hk_mockkafka_t *mk);

void hk_mockkafka_destroy(hk_mockkafka_t *mk);

#endif
