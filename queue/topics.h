// topics: hookd's start-up check of the Kafka cluster and of the three topics it
// uses (jobs, retry, dead letters).
//
// A consumer subscribed to a missing topic waits silently, and a missing
// dead-letter topic would hold every failed job forever (its offset is committed
// only once the DLQ record is acknowledged). So hookd checks at start: a missing
// topic is created when `kafka.create_topics` is on, and refused with a reason
// otherwise. The same check turns a cluster that refuses us (wrong password, an
// untrusted certificate) or never answers into a clear start-up error instead of a
// consumer that hangs.
//
// Called once from main before intake starts; uses its own short-lived client.
#ifndef HK_TOPICS_H
#define HK_TOPICS_H

#include <stddef.h>

#include "config/config.h"

// Checks that the cluster at `brokers` answers within kafka.startup_timeout_ms and
// that cfg's jobs, retry and DLQ topics exist, creating the missing ones when
// kafka.create_topics is on (kafka.topic_partitions and kafka.topic_replication,
// 0 meaning the broker's default). 0 ok; -1 with a sentence in errstr, such as
// `Kafka topic "jobs.dlq" does not exist ...` or `Kafka at host:9092 refused
// hookd: SASL authentication error: ...`.
int hk_topics_check(const hk_config_t *cfg, const char *brokers, char *errstr, size_t errstr_size);

#endif
