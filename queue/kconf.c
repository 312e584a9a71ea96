#include "queue/kconf.h"

#include <stdio.h>

#include "base/log.h"

// librdkafka's own log lines, as JSON lines like everything else hookd prints.
static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    hk_log_level_t lv = level <= 3   ? HK_LOG_ERROR
                        : level <= 4 ? HK_LOG_WARN
                        : level <= 6 ? HK_LOG_INFO
                                     : HK_LOG_DEBUG;
    hk_log(lv, "kafka_log", "{s:s,s:s,s:s}", "client", rd_kafka_name(rk), "facility", fac,
           "message", buf);
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
               size_t errstr_size)
{
    char kerr[256];
    if (rd_kafka_conf_set(conf, name, value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka property %s: %s", name, kerr);
        return -1;
    }
    return 0;
}

rd_kafka_conf_t *hk_kconf_new(const hk_config_t *cfg, const char *brokers,
                              const char *const *defaults, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    if (set(conf, "bootstrap.servers", brokers, errstr, errstr_size) != 0 ||
        set(conf, "client.id", "hookd/" HOOKD_VERSION, errstr, errstr_size) != 0)
        goto fail;
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (set(conf, defaults[i], defaults[i + 1], errstr, errstr_size) != 0)
            goto fail;
    for (size_t i = 0; i < cfg->kafka_props_cnt; i++)
        if (set(conf, cfg->kafka_props[i].key, cfg->kafka_props[i].value, errstr, errstr_size) != 0)
            goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
