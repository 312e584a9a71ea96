// producer: one rd_kafka producer plus a poll thread that serves delivery reports
// and re-produces records the broker did not acknowledge.
#include "queue/producer.h"
#include "base/clock.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/headers.h"
#include "queue/kconf.h"
#include "base/log.h"

#define REPRODUCE_DELAY_MS 1000

struct hk_producer_s {
    rd_kafka_t *p_rk;
    rd_kafka_topic_t *p_dlq;
    rd_kafka_topic_t *p_retry;
    atomic_int p_retry_parts; // partitions of the retry topic, 0 = unknown yet
    hk_producer_done_cb *p_on_done;
    void *p_arg;
    pthread_t p_thread;
    atomic_int p_run;
    atomic_int p_closing; // set at destroy: failed records are dropped, not re-sent
    atomic_size_t p_outstanding;

    pthread_mutex_t p_lock; // guards p_again
    hk_task_t *p_again;     // records to produce again, oldest first
    hk_task_t **p_again_tail;
    int64_t p_again_due_ms;
    size_t p_abandoned;
};

// Retry records go to a partition chosen by delay tier (floor(log2(seconds))),
// not by key, so one partition's records fall due roughly in order. Chosen here,
// not in a partitioner callback: librdkafka never calls one for NULL keys.
static int32_t retry_partition(hk_producer_t *p, const hk_task_t *task)
{
    int32_t cnt = atomic_load(&p->p_retry_parts);
    if (cnt <= 0)
        return RD_KAFKA_PARTITION_UA;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t secs = (task->retry_due_wall_ms - now) / 1000;
    int32_t tier = 0;
    while (secs > 1 && tier < 62) {
        secs >>= 1;
        tier++;
    }
    return tier % cnt;
}

// Reads the retry topic's partition count (0 when unknown yet).
static void refresh_retry_parts(hk_producer_t *p)
{
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(p->p_rk, 0, p->p_retry, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        atomic_store(&p->p_retry_parts, md->topics[0].partition_cnt);
    rd_kafka_metadata_destroy(md);
}

static rd_kafka_resp_err_t produce(hk_producer_t *p, hk_task_t *task, int block)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(12);
    hk_headers_encode(hdrs, task);

    // RD_KAFKA_V_RKT does not parenthesise its argument: no conditional inside it.
    rd_kafka_topic_t *rkt = task->to_retry_topic ? p->p_retry : p->p_dlq;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->p_rk, RD_KAFKA_V_RKT(rkt),
        RD_KAFKA_V_PARTITION(task->to_retry_topic ? retry_partition(p, task)
                                                  : RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY | (block ? RD_KAFKA_MSG_F_BLOCK : 0)),
        RD_KAFKA_V_KEY(task->key, task->key_len),
        RD_KAFKA_V_VALUE(task->value_omitted ? NULL : task->value,
                         task->value_omitted ? 0 : task->value_len),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(task), RD_KAFKA_V_END);
    if (err)
        rd_kafka_headers_destroy(hdrs); // not taken over on failure
    return err;
}

static int too_large(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

// A record the producer or the broker refused as too large would be refused again
// forever, holding its source offset (and every later commit of the partition).
// It becomes one that fits: a retry record is dead-lettered instead (it cannot be
// retried without its value), and a dead letter goes without the job's value,
// with hookd-value-omitted = its size; the job itself stays readable at
// hookd-original-topic/-partition/-offset for the topic's retention. 0 when the
// task was changed and should be produced again, -1 when nothing is left to cut.
static int shrink(hk_task_t *task, rd_kafka_resp_err_t err)
{
    if (task->to_retry_topic) {
        task->to_retry_topic = 0;
        task->outcome = HK_OUTCOME_EXHAUSTED;
        char was[sizeof(task->error)];
        memcpy(was, task->error, sizeof(was));
        int n = snprintf(task->error, sizeof(task->error),
                         "retry record of %zu bytes refused by the retry topic (%s); last error: ",
                         task->value_len, rd_kafka_err2str(err));
        if (n > 0 && (size_t)n < sizeof(task->error)) { // the old error, cut to fit
            size_t len = strnlen(was, sizeof(task->error) - (size_t)n - 1);
            memcpy(task->error + n, was, len);
            task->error[(size_t)n + len] = '\0';
        }
    } else if (!task->value_omitted && task->value_len > 0) {
        task->value_omitted = 1;
    } else {
        return -1;
    }
    hk_log(HK_LOG_WARN, "record_too_large", "{s:s,s:i,s:I,s:I,s:s,s:b}", "topic", task->topic,
           "partition", (int)task->partition, "offset", (json_int_t)task->offset, "bytes",
           (json_int_t)task->value_len, "now", task->value_omitted ? "dlq_without_value" : "dlq",
           "value_omitted", task->value_omitted);
    return 0;
}

static void again(hk_producer_t *p, hk_task_t *task)
{
    pthread_mutex_lock(&p->p_lock);
    task->next = NULL;
    if (!p->p_again)
        p->p_again_due_ms = hk_clock_mono_ms() + REPRODUCE_DELAY_MS;
    *p->p_again_tail = task;
    p->p_again_tail = &task->next;
    pthread_mutex_unlock(&p->p_lock);
}

void hk_producer_retry(hk_producer_t *p, hk_task_t *task, int64_t due_wall_ms)
{
    task->to_retry_topic = 1;
    task->retry_due_wall_ms = due_wall_ms;
    hk_producer_dead_letter(p, task);
}

void hk_producer_dead_letter(hk_producer_t *p, hk_task_t *task)
{
    atomic_fetch_add(&p->p_outstanding, 1);
    rd_kafka_resp_err_t err = produce(p, task, 1);
    while (err && too_large(err) && shrink(task, err) == 0)
        err = produce(p, task, 1);
    if (err) {
        hk_log(HK_LOG_WARN, task->to_retry_topic ? "retry_produce_failed" : "dlq_produce_failed",
               "{s:s,s:i,s:I,s:s}", "topic", task->topic, "partition", (int)task->partition,
               "offset", (json_int_t)task->offset, "error", rd_kafka_err2str(err));
        again(p, task);
    }
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    hk_producer_t *p = opaque;
    hk_task_t *task = msg->_private;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_sub(&p->p_outstanding, 1);
        p->p_on_done(task, p->p_arg);
        return;
    }
    if (atomic_load(&p->p_closing)) {
        atomic_fetch_sub(&p->p_outstanding, 1);
        p->p_abandoned++;
        hk_task_destroy(task);
        return;
    }
    hk_log(HK_LOG_WARN, task->to_retry_topic ? "retry_not_acknowledged" : "dlq_not_acknowledged",
           "{s:s,s:i,s:I,s:s}", "topic", task->topic, "partition", (int)task->partition, "offset",
           (json_int_t)task->offset, "error", rd_kafka_err2str(msg->err));
    if (too_large(msg->err))
        shrink(task, msg->err); // the broker's topic limit is below the producer's
    again(p, task);
}

static void *poll_main(void *arg)
{
    hk_producer_t *p = arg;
    int64_t next_refresh = hk_clock_mono_ms() + 60000;
    while (atomic_load(&p->p_run)) {
        rd_kafka_poll(p->p_rk, 100);
        if (hk_clock_mono_ms() >= next_refresh) { // the topic may have grown
            refresh_retry_parts(p);
            next_refresh = hk_clock_mono_ms() + 60000;
        }

        pthread_mutex_lock(&p->p_lock);
        hk_task_t *list = NULL;
        if (p->p_again && hk_clock_mono_ms() >= p->p_again_due_ms) {
            list = p->p_again;
            p->p_again = NULL;
            p->p_again_tail = &p->p_again;
        }
        pthread_mutex_unlock(&p->p_lock);

        while (list) {
            hk_task_t *task = list;
            list = task->next;
            rd_kafka_resp_err_t err = produce(p, task, 0);
            while (err && too_large(err) && shrink(task, err) == 0)
                err = produce(p, task, 0);
            if (err)
                again(p, task); // queue full or broker trouble: next round
        }
    }
    return NULL;
}

hk_producer_t *hk_producer_new(const hk_config_t *cfg, const char *brokers,
                               hk_producer_done_cb *on_done, void *arg, char *errstr,
                               size_t errstr_size)
{
    // Idempotent: librdkafka re-sends a batch whose acknowledgement it did not get
    // (a broker restart, a leader change, a timeout), and without producer ids and
    // sequence numbers the broker would append that batch twice: a second DLQ
    // record, or a retry record that delivers the job once more.
    // A dead letter carries the whole job, up to limits.max_job_bytes, plus its
    // headers: librdkafka's default message.max.bytes (1,000,000) is below the
    // default job limit (1 MiB). The broker's own limit may still be lower
    // (shrink() above).
    char max_bytes[32];
    int64_t want = cfg->limits_max_job_bytes + 65536;
    snprintf(max_bytes, sizeof(max_bytes), "%lld",
             (long long)(want > 1000000 ? (want < 1000000000 ? want : 1000000000) : 1000000));
    const char *const defaults[] = {
        "acks",
        "all",
        "linger.ms",
        "5",
        "message.timeout.ms",
        "30000",
        "enable.idempotence",
        "true",
        "message.max.bytes",
        max_bytes,
        NULL,
    };
    rd_kafka_conf_t *conf = hk_kconf_new(cfg, brokers, defaults, errstr, errstr_size);
    if (!conf)
        return NULL;

    hk_producer_t *p = calloc(1, sizeof(*p));
    p->p_on_done = on_done;
    p->p_arg = arg;
    p->p_again_tail = &p->p_again;
    pthread_mutex_init(&p->p_lock, NULL);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);

    char kerr[256];
    p->p_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (!p->p_rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka producer: %s", kerr);
        pthread_mutex_destroy(&p->p_lock);
        free(p);
        return NULL;
    }
    p->p_dlq = rd_kafka_topic_new(p->p_rk, cfg->kafka_dlq_topic, NULL);
    p->p_retry = rd_kafka_topic_new(p->p_rk, cfg->kafka_retry_topic, NULL);
    refresh_retry_parts(p);
    atomic_store(&p->p_run, 1);
    pthread_create(&p->p_thread, NULL, poll_main, p);
    return p;
}

size_t hk_producer_outstanding(hk_producer_t *p)
{
    return atomic_load(&p->p_outstanding);
}

size_t hk_producer_destroy(hk_producer_t *p, int timeout_ms)
{
    if (!p)
        return 0;
    // Let the poll thread serve delivery reports while we wait.
    int64_t deadline = hk_clock_mono_ms() + timeout_ms;
    while (atomic_load(&p->p_outstanding) > 0 && hk_clock_mono_ms() < deadline) {
        hk_clock_sleep_ms(10);
    }
    atomic_store(&p->p_closing, 1);
    atomic_store(&p->p_run, 0);
    pthread_join(p->p_thread, NULL);

    rd_kafka_purge(p->p_rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(p->p_rk, 1000); // serves the purged records' reports
    while (p->p_again) {
        hk_task_t *task = p->p_again;
        p->p_again = task->next;
        p->p_abandoned++;
        hk_task_destroy(task);
    }
    size_t abandoned = p->p_abandoned;
    rd_kafka_topic_destroy(p->p_dlq);
    rd_kafka_topic_destroy(p->p_retry);
    rd_kafka_destroy(p->p_rk);
    pthread_mutex_destroy(&p->p_lock);
    free(p);
    return abandoned;
}
