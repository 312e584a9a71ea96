// hookctl: the operator's and producer's command line.
//
//   hookctl [-c FILE] [-b BROKERS] [-t TOPIC] produce [FILE|-]
//
// Settings come from the same config file and HOOKD_* environment as hookd;
// -b and -t override them.
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "queue/kconf.h"

extern char **environ;

typedef struct produce_stats {
    long produced;
    long acked;
    long failed;
} produce_stats_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    produce_stats_t *st = opaque;
    if (msg->err) {
        st->failed++;
        if (st->failed <= 5)
            fprintf(stderr, "hookctl: record not acknowledged: %s\n", rd_kafka_err2str(msg->err));
    } else {
        st->acked++;
    }
}

// The record key: the job's ordering_key, else its tenant, else none (a line
// that is not a JSON object is still produced: hookd dead-letters it with a reason).
static char *record_key(const char *line, size_t len)
{
    json_t *root = json_loadb(line, len, 0, NULL);
    char *key = NULL;
    if (json_is_object(root)) {
        json_t *k = json_object_get(root, "ordering_key");
        if (!json_is_string(k))
            k = json_object_get(root, "tenant");
        if (json_is_string(k))
            key = strdup(json_string_value(k));
    }
    json_decref(root);
    return key;
}

static int cmd_produce(const hk_config_t *cfg, const char *brokers, const char *topic,
                       const char *path)
{
    FILE *in = stdin;
    if (path && strcmp(path, "-") != 0) {
        in = fopen(path, "r");
        if (!in) {
            fprintf(stderr, "hookctl: cannot open %s: %m\n", path);
            return 1;
        }
    }
    static const char *const defaults[] = {"acks", "all", "linger.ms", "20", NULL};
    char err[512];
    rd_kafka_conf_t *conf = hk_kconf_new(cfg, brokers, defaults, err, sizeof(err));
    if (!conf) {
        fprintf(stderr, "hookctl: %s\n", err);
        return 1;
    }
    produce_stats_t st = {0};
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "hookctl: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char *key = record_key(line, (size_t)len);
        rd_kafka_resp_err_t e;
        do {
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                  RD_KAFKA_V_VALUE(line, (size_t)len), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 100);
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        free(key);
        if (e) {
            st.failed++;
            fprintf(stderr, "hookctl: produce: %s\n", rd_kafka_err2str(e));
            continue;
        }
        st.produced++;
        rd_kafka_poll(rk, 0);
    }
    free(line);
    if (in != stdin)
        fclose(in);
    rd_kafka_flush(rk, 60000);
    rd_kafka_destroy(rk);
    printf("{\"produced\":%ld,\"acknowledged\":%ld,\"failed\":%ld,\"topic\":\"%s\"}\n", st.produced,
           st.acked, st.failed, topic);
    return st.failed == 0 && st.acked == st.produced ? 0 : 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hookctl [-c FILE] [-b BROKERS] [-t TOPIC] COMMAND\n"
            "commands:\n"
            "  produce [FILE|-]   produce each line of FILE (JSONL; default stdin) to the jobs\n"
            "                     topic, key = ordering_key or tenant; prints how many were\n"
            "                     acknowledged; exit 0 only if all were\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL, *brokers = NULL, *topic = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+c:b:t:h")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'b':
            brokers = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    char err[512];
    hk_config_t *cfg = hk_config_load(path, environ, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "hookctl: %s\n", err);
        return 2;
    }
    if (!brokers)
        brokers = cfg->kafka_brokers;
    if (!topic)
        topic = cfg->kafka_topic;
    int rc = 2;
    if (strcmp(brokers, "mock") == 0) {
        fprintf(stderr, "hookctl: kafka.brokers is \"mock\": pass the mock cluster's address "
                        "with -b (hookd logs it as event \"mock_cluster\")\n");
    } else if (strcmp(argv[optind], "produce") == 0) {
        rc = cmd_produce(cfg, brokers, topic, optind + 1 < argc ? argv[optind + 1] : NULL);
    } else {
        fprintf(stderr, "hookctl: unknown command \"%s\"\n", argv[optind]);
        usage(stderr);
    }
    hk_config_destroy(cfg);
    return rc;
}
