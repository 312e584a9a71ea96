// mockkafka: hosts rd_kafka_mock_cluster on a private producer handle.
#include "queue/mockkafka.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hk_mockkafka_s {
    rd_kafka_t *mk_rk; // owns the cluster's threads
    rd_kafka_mock_cluster_t *mk_cluster;
    char *mk_bootstraps;
};

hk_mockkafka_t *hk_mockkafka_new(int brokers, const char *const *topics, const int *partitions,
                                 size_t topics_cnt, char *errstr, size_t errstr_size)
{
    char kerr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", kerr, sizeof(kerr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "mock kafka: %s", kerr);
        return NULL;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        rd_kafka_destroy(rk);
        snprintf(errstr, errstr_size, "mock kafka: could not start a %d-broker cluster", brokers);
        return NULL;
    }
    for (size_t i = 0; i < topics_cnt; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i], partitions[i], 1);
        if (err) {
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            snprintf(errstr, errstr_size, "mock kafka: create topic %s: %s", topics[i],
                     rd_kafka_err2str(err));
            return NULL;
        }
    }
    hk_mockkafka_t *mk = calloc(1, sizeof(*mk));
    mk->mk_rk = rk;
    mk->mk_cluster = mc;
    mk->mk_bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(mc));
    return mk;
}

const char *hk_mockkafka_bootstraps(const hk_mockkafka_t *mk)
{
    return mk->mk_bootstraps;
}

void hk_mockkafka_destroy(hk_mockkafka_t *mk)
{
    if (!mk)
        return;
    rd_kafka_mock_cluster_destroy(mk->mk_cluster);
    rd_kafka_destroy(mk->mk_rk);
    free(mk->mk_bootstraps);
    free(mk);
}
