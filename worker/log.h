// log: one JSON object per line on stderr: {"ts":"...","level":"info","event":"...",...}.
// Fields are given as a jansson json_pack() format and arguments, so every value is
// escaped correctly. Never log bodies or secrets. Thread-safe (one write per line).
#ifndef HK_LOG_H
#define HK_LOG_H

#include <jansson.h> // json_int_t for "I" fields

typedef enum hk_log_level {
    HK_LOG_DEBUG = 0,
    HK_LOG_INFO,
    HK_LOG_WARN,
    HK_LOG_ERROR,
} hk_log_level_t;

// Sets the minimum level written. Parses "debug", "info", "warn", "error"; -1 if unknown.
int hk_log_set_level_name(const char *name);
void hk_log_set_level(hk_log_level_t level);
int hk_log_enabled(hk_log_level_t level);

// hk_log(HK_LOG_INFO, "delivered", "{s:s,s:i}", "id", job->id, "status", 200);
// `fmt` may be NULL for an event without fields.
void hk_log(hk_log_level_t level, const char *event, const char *fmt, ...);

#endif
