// kconf: builds librdkafka configurations from hookd's config: bootstrap servers,
// client id, and every `[kafka] rdkafka.<property>` pass-through, applied last so
// an operator can override any default hookd sets.
#ifndef HK_KCONF_H
#define HK_KCONF_H

#include <librdkafka/rdkafka.h>

#include "config/config.h"

// `defaults` is a NULL-terminated list of name, value pairs hookd wants for this
// client. Returns a new conf or NULL with errstr naming the bad property.
rd_kafka_conf_t *hk_kconf_new(const hk_config_t *cfg, const char *brokers,
                              const char *const *defaults, char *errstr, size_t errstr_size);

#endif
