// kcluster: a real Apache Kafka cluster for a real-Kafka suite, through
// scripts/kafka (up, stop-node, start-node, tool, down). Prefix hk_kc_.
// A watchdog process brings the cluster down when the suite dies without doing
// so (a crash, a CTest timeout): no JVM outlives the suite.
#ifndef HK_KCLUSTER_H
#define HK_KCLUSTER_H

#include <stdint.h>
#include <sys/types.h>

typedef struct hk_kc {
    char dir[256];       // KAFKA_DIR, "" when no cluster runs
    char bootstrap[512]; // KAFKA_BOOTSTRAP
    int nodes;
    pid_t watchdog;
    int watchdog_fd; // write end of the watchdog's pipe
} hk_kc_t;

// Starts a cluster of `nodes` nodes; `conf` (may be NULL) is appended to every
// node's server.properties. On success also sets HK_TEST_KAFKA=real and
// HK_TEST_KAFKA_BOOTSTRAP, so hk_th_kafka_start creates topics on it. 0 ok;
// -1 with the script's output on stderr.
int hk_kc_up(hk_kc_t *kc, int nodes, const char *conf);
// Stops every node and removes the directory; no-op when none runs.
void hk_kc_down(hk_kc_t *kc);
// SIGKILLs node i (0-based); returns when it is gone. 0 ok.
int hk_kc_stop_node(hk_kc_t *kc, int i);
// Restarts node i; returns once it has started. 0 ok.
int hk_kc_start_node(hk_kc_t *kc, int i);

// Runs `scripts/kafka tool DIR <args>` (a shell-quoted argument string) and
// returns its stdout (caller frees); NULL when it failed.
char *hk_kc_tool(hk_kc_t *kc, const char *args);

typedef struct hk_kc_row {
    char topic[256];
    int32_t partition;
    int64_t current; // CURRENT-OFFSET, -1 for "-"
    int64_t end;     // LOG-END-OFFSET
    int64_t lag;     // LAG, -1 for "-"
} hk_kc_row_t;

// kafka-consumer-groups --describe --group `group`, parsed: up to `max` rows of
// topic `topic` (NULL: every topic). Returns the row count, -1 when the tool failed
// or printed no table.
int hk_kc_describe_group(hk_kc_t *kc, const char *group, const char *topic, hk_kc_row_t *rows,
                         int max);

// The node leading each partition of `topic` (leaders[p], -1 when none), from
// the cluster's metadata. Returns the partition count, -1 on error.
int hk_kc_leaders(const char *brokers, const char *topic, int32_t *leaders, int max);

// The committed offset of `group` on each partition of `topic` (committed[p], -1
// when none), through an OffsetFetch. Returns the partition count, -1 on error.
int hk_kc_committed(const char *brokers, const char *group, const char *topic, int64_t *committed,
                    int max);

#endif
