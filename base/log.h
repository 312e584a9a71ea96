// log: one JSON object per line on stderr: {"ts":"...","level":"info","event":"...",...}.
// Fields are given as a jansson json_pack() format and arguments, so every value is
// escaped correctly. Never log bodies or secrets. Thread-safe (one write per line).
#ifndef HK_LOG_H
#define HK_LOG_H

#include <jansson.h> // json_int_t for "I" fields
#include <stddef.h>

typedef enum hk_log_level {
    HK_LOG_DEBUG = 0,
    HK_LOG_INFO,
    HK_LOG_WARN,
    HK_LOG_ERROR,
} hk_log_level_t;

// Sets the minimum level written (log.level, parsed by config).
void hk_log_set_level(hk_log_level_t level);
int hk_log_enabled(hk_log_level_t level);

// URLs in logs (log.full_urls). Off (the default): a string field named "url" is
// written as hk_log_url() shows it. Any thread.
void hk_log_set_full_urls(int full);
int hk_log_full_urls(void);

// `url` as logs and /v1/lanes may show it: whole when log.full_urls is on, else
// "scheme://host:port" plus "/..." when a path or query followed (they can carry
// tokens); user:password@ is always dropped, and anything that is not
// scheme://... becomes "<not a URL>". Returns url itself or buf.
const char *hk_log_url(const char *url, char *buf, size_t size);

// hk_log(HK_LOG_INFO, "delivered", "{s:s,s:i}", "id", job->id, "status", 200);
// `fmt` may be NULL for an event without fields.
void hk_log(hk_log_level_t level, const char *event, const char *fmt, ...);

#endif
