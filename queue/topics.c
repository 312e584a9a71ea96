#include "queue/topics.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <librdkafka/rdkafka.h>

#include "queue/kconf.h"
#include "base/clock.h"
#include "base/log.h"

// The last error librdkafka reported for the cluster, kept so a time-out can say
// why (a refused TLS handshake or SASL login is otherwise only a log line).
typedef struct probe {
    pthread_mutex_t lock;
    rd_kafka_resp_err_t err;
    char why[512];
    int fatal; // authentication or TLS: waiting longer will not help
} probe_t;

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    probe_t *pr = opaque;
    pthread_mutex_lock(&pr->lock);
    // The refusal is the reason; the "all brokers are down" that follows it
    // (one poll later) must not replace it.
    if (pr->fatal) {
        pthread_mutex_unlock(&pr->lock);
        return;
    }
    pr->err = (rd_kafka_resp_err_t)err;
    snprintf(pr->why, sizeof(pr->why), "%s", reason);
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL ||
        err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
        err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED)
        pr->fatal = 1;
    pthread_mutex_unlock(&pr->lock);
}

// 1 when librdkafka reported an error that waiting will not fix; copies its text.
static int probe_failed(probe_t *pr, char *why, size_t why_size)
{
    pthread_mutex_lock(&pr->lock);
    int fatal = pr->fatal;
    snprintf(why, why_size, "%s", pr->why[0] ? pr->why : "no answer from any broker");
    pthread_mutex_unlock(&pr->lock);
    return fatal;
}

// librdkafka before 2.6.1 sends a SCRAM proof that Kafka 4.x brokers reject
// (they check the nonce strictly), so the login fails with the right password
// too. Said next to the broker's "invalid credentials", or the operator hunts
// for a password that is not wrong.
static const char *scram_hint(const hk_config_t *cfg, rd_kafka_resp_err_t err, char *buf,
                              size_t size)
{
    buf[0] = '\0';
    if (err != RD_KAFKA_RESP_ERR__AUTHENTICATION &&
        err != RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED)
        return buf;
    if (rd_kafka_version() >= 0x020601ff)
        return buf;
    for (size_t i = 0; i < cfg->kafka_props_cnt; i++) {
        const char *key = cfg->kafka_props[i].key;
        if ((strcmp(key, "sasl.mechanisms") == 0 || strcmp(key, "sasl.mechanism") == 0) &&
            strncasecmp(cfg->kafka_props[i].value, "SCRAM-", 6) == 0)
            snprintf(buf, size,
                     " (Kafka 4.x refuses SCRAM from librdkafka < 2.6.1 even with the right "
                     "password; this is %s: use PLAIN over TLS or a newer librdkafka)",
                     rd_kafka_version_str());
    }
    return buf;
}

// What the cluster says of `topic`: 1 exists, 0 missing, -1 could not tell (errstr).
static int topic_exists(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                        size_t errstr_size)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(err));
        return -1;
    }
    int found = 0;
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *t = &md->topics[i];
        if (strcmp(t->topic, topic) != 0)
            continue;
        if (t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt > 0)
            found = 1;
        else if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            found = 0;
        else {
            snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(t->err));
            found = -1;
        }
    }
    rd_kafka_metadata_destroy(md);
    return found;
}

static int create_topic(rd_kafka_t *rk, const hk_config_t *cfg, const char *topic, int timeout_ms,
                        char *errstr, size_t errstr_size)
{
    char kerr[256];
    // 0 in the config: the broker's num.partitions / default.replication.factor.
    int parts = cfg->kafka_topic_partitions ? cfg->kafka_topic_partitions : -1;
    int repl = cfg->kafka_topic_replication ? cfg->kafka_topic_replication : -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, parts, repl, kerr, sizeof(kerr));
    if (!nt) {
        snprintf(errstr, errstr_size, "cannot create Kafka topic \"%s\": %s", topic, kerr);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, kerr, sizeof(kerr));
    rd_kafka_CreateTopics(rk, &nt, 1, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    int rc = -1;
    if (!ev) {
        snprintf(errstr, errstr_size, "creating Kafka topic \"%s\" timed out", topic);
    } else if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "cannot create Kafka topic \"%s\": %s", topic,
                 rd_kafka_event_error_string(ev));
    } else {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t err = n ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
        // Another replica starting at the same time may have created it first.
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            rc = 0;
            hk_log(HK_LOG_INFO, "topic_created", "{s:s,s:i,s:i,s:b}", "topic", topic, "partitions",
                   cfg->kafka_topic_partitions, "replication", cfg->kafka_topic_replication,
                   "existed", err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS);
        } else {
            const char *msg = n ? rd_kafka_topic_result_error_string(res[0]) : NULL;
            snprintf(errstr, errstr_size, "cannot create Kafka topic \"%s\": %s", topic,
                     msg && *msg ? msg : rd_kafka_err2str(err));
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int hk_topics_check(const hk_config_t *cfg, const char *brokers, char *errstr, size_t errstr_size)
{
    // A metadata request for a topic must not create it through the broker's
    // auto.create.topics.enable: what exists is what the operator made.
    static const char *const defaults[] = {"allow.auto.create.topics", "false", NULL};
    probe_t pr = {.err = RD_KAFKA_RESP_ERR_NO_ERROR};
    pthread_mutex_init(&pr.lock, NULL);
    rd_kafka_conf_t *conf = hk_kconf_new(cfg, brokers, defaults, errstr, errstr_size);
    if (!conf) {
        pthread_mutex_destroy(&pr.lock);
        return -1;
    }
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, &pr);
    char kerr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka client: %s", kerr);
        pthread_mutex_destroy(&pr.lock);
        return -1;
    }

    const char *topics[] = {cfg->kafka_topic, cfg->kafka_retry_topic, cfg->kafka_dlq_topic};
    int64_t deadline = hk_clock_mono_ms() + cfg->kafka_startup_timeout_ms;
    int rc = 0;
    for (size_t i = 0; i < 3 && rc == 0; i++) {
        char why[512] = "";
        int exists = -1;
        // Ask again in short rounds until the deadline, so an authentication or
        // TLS failure ends the wait at once instead of at the deadline.
        while (exists < 0) {
            int64_t left = deadline - hk_clock_mono_ms();
            if (left <= 0)
                break;
            exists = topic_exists(rk, topics[i], left < 1000 ? (int)left : 1000, why, sizeof(why));
            // The error callback runs only from rd_kafka_poll: without it a
            // refused login or handshake is never seen and start waits out the
            // whole timeout with "no answer".
            rd_kafka_poll(rk, 0);
            if (exists < 0 && probe_failed(&pr, why, sizeof(why)))
                break;
        }
        if (exists < 0) {
            char last[512], hint[256];
            int fatal = probe_failed(&pr, last, sizeof(last));
            if (fatal)
                snprintf(errstr, errstr_size, "Kafka at %s refused hookd: %s%s", brokers, last,
                         scram_hint(cfg, pr.err, hint, sizeof(hint)));
            else
                snprintf(errstr, errstr_size,
                         "Kafka at %s did not answer within kafka.startup_timeout_ms (%d ms): %s",
                         brokers, cfg->kafka_startup_timeout_ms, last);
            rc = -1;
        } else if (exists == 0 && !cfg->kafka_create_topics) {
            snprintf(errstr, errstr_size,
                     "Kafka topic \"%s\" does not exist at %s: create it (docs/operations.md, "
                     "\"Topics\"), or set kafka.create_topics = true to let hookd create it",
                     topics[i], brokers);
            rc = -1;
        } else if (exists == 0) {
            int64_t left = deadline - hk_clock_mono_ms();
            rc = create_topic(rk, cfg, topics[i], left > 1000 ? (int)left : 1000, errstr,
                              errstr_size);
        }
    }
    rd_kafka_destroy(rk);
    pthread_mutex_destroy(&pr.lock);
    return rc;
}
