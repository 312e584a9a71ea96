// config: every key hookd reads is one row of cf_rows below. Defaults, the file, the
// environment, the dump and the reload check all walk that table, so adding a key
// means one field in hk_config_t and one row here. [endpoint "<scheme://host:port>"]
// sections work the same way with cf_endpoint_rows and hk_endpoint_conf_t. Besides
// the tables, [kafka] rdkafka.<prop> keys and [tenant "<name>"] sections are
// free-form lists.
//
// inih reads the file through cf_read_line, which counts lines (inih's handler does
// not get them in Debian's build), lets values longer than inih's line buffer
// through, so a signing secret list of any length fits on one line, and reads
// section headers itself: inih cuts a section name at 49 characters and at its
// first ']', which [endpoint "https://[::1]:8443"] contains.
#include "config/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sched.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/err.h"
#include "retry/backoff.h"
#include "base/sign.h"
#include "base/netguard.h"

typedef enum cf_type {
    CF_INT,     // int field
    CF_INT64,   // int64_t field
    CF_DOUBLE,  // double field: a finite decimal number
    CF_BOOL,    // int field, 0 or 1: true/false, yes/no, on/off, 1/0
    CF_STR,     // char * field
    CF_SECRET,  // char * field, never printed
    CF_MS_LIST, // char * field as written, plus its delays parsed by
                // hk_backoff_parse_schedule into an int64_t * and a size_t count
    CF_ENUM,    // enum field (int-sized): one of the row's names, parsed once here
} cf_type_t;

// One word a CF_ENUM key accepts and the value it stands for; a table ends with
// a NULL name.
typedef struct cf_enum_name {
    const char *name;
    int value;
} cf_enum_name_t;

// The suffixes an integer key accepts after its digits.
typedef enum cf_unit {
    CF_PLAIN, // digits only
    CF_BYTES, // k/K, M, G: KiB-based
    CF_MS,    // ms, s, m, h
} cf_unit_t;

typedef enum cf_reload {
    CF_NO_RELOAD, // takes a restart
    CF_RELOAD,    // SIGHUP applies it
} cf_reload_t;

// Extra validation of a string value. On failure writes what the value must be
// ("must be one of debug, info, warn, error") to why and returns false.
typedef bool (*cf_check_fn)(const char *value, char *why, size_t why_size);

typedef struct cf_row {
    const char *section;
    const char *key;
    cf_type_t type;
    cf_unit_t unit;
    size_t offset; // of the field in the struct the table describes
    const char *def;
    int64_t min; // CF_INT, CF_INT64
    int64_t max;
    double dmin; // CF_DOUBLE
    double dmax;
    cf_reload_t reload;
    cf_check_fn check;  // CF_STR, CF_SECRET; NULL: any value
    size_t list_offset; // CF_MS_LIST: the parsed delays (int64_t *) and their count (size_t)
    size_t cnt_offset;
    int (*auto_value)(void);     // CF_INT: what the value "auto" stands for; NULL: not allowed
    const cf_enum_name_t *names; // CF_ENUM: the words it accepts
} cf_row_t;

static bool cf_check_nonempty(const char *value, char *why, size_t why_size);
static bool cf_check_token(const char *value, char *why, size_t why_size);
static bool cf_check_topic(const char *value, char *why, size_t why_size);
static bool cf_check_topic_or_empty(const char *value, char *why, size_t why_size);
static bool cf_check_cidrs(const char *value, char *why, size_t why_size);
static bool cf_check_secrets(const char *value, char *why, size_t why_size);
static bool cf_check_listen(const char *value, char *why, size_t why_size);
static int cf_auto_threads(void);
static bool cf_check_rate(const char *value, char *why, size_t why_size);
static bool cf_check_redis_url(const char *value, char *why, size_t why_size);

// offsetof(S, FIELD), refusing to compile unless the field has type T, so a row
// cannot point an int parser at an int64_t field.
#define CF_FIELD_OF(S, FIELD, T) (offsetof(S, FIELD) + 0 * sizeof(_Generic(((S *)0)->FIELD, T : 1)))

// One row per key type, for a table describing struct S.
#define CF_INT_ROW_OF(S, SEC, KEY, FIELD, UNIT, DEF, MIN, MAX, RELOAD)                             \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_INT, .unit = UNIT,                                  \
        .offset = CF_FIELD_OF(S, FIELD, int), .def = DEF, .min = MIN, .max = MAX, .reload = RELOAD \
    }
#define CF_AUTO_INT_ROW(SEC, KEY, FIELD, DEF, MIN, MAX, RELOAD, AUTO)                              \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_INT, .unit = CF_PLAIN,                              \
        .offset = CF_FIELD_OF(hk_config_t, FIELD, int), .def = DEF, .min = MIN, .max = MAX,        \
        .reload = RELOAD, .auto_value = AUTO                                                       \
    }
#define CF_INT64_ROW_OF(S, SEC, KEY, FIELD, UNIT, DEF, MIN, MAX, RELOAD)                           \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_INT64, .unit = UNIT,                                \
        .offset = CF_FIELD_OF(S, FIELD, int64_t), .def = DEF, .min = MIN, .max = MAX,              \
        .reload = RELOAD                                                                           \
    }
#define CF_DOUBLE_ROW_OF(S, SEC, KEY, FIELD, DEF, MIN, MAX, RELOAD)                                \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_DOUBLE, .offset = CF_FIELD_OF(S, FIELD, double),    \
        .def = DEF, .dmin = MIN, .dmax = MAX, .reload = RELOAD                                     \
    }
#define CF_BOOL_ROW_OF(S, SEC, KEY, FIELD, DEF, RELOAD)                                            \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_BOOL, .offset = CF_FIELD_OF(S, FIELD, int),         \
        .def = DEF, .reload = RELOAD                                                               \
    }
#define CF_STR_ROW_OF(S, SEC, KEY, FIELD, DEF, RELOAD, CHECK)                                      \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_STR, .offset = CF_FIELD_OF(S, FIELD, char *),       \
        .def = DEF, .reload = RELOAD, .check = CHECK                                               \
    }
#define CF_SECRET_ROW_OF(S, SEC, KEY, FIELD, DEF, RELOAD, CHECK)                                   \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_SECRET, .offset = CF_FIELD_OF(S, FIELD, char *),    \
        .def = DEF, .reload = RELOAD, .check = CHECK                                               \
    }
// FIELD (char *) keeps the text, FIELD##_ms (int64_t *) and FIELD##_cnt (size_t) the
// delays; "" leaves them NULL and 0.
#define CF_MS_LIST_ROW_OF(S, SEC, KEY, FIELD, DEF, RELOAD)                                         \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_MS_LIST, .offset = CF_FIELD_OF(S, FIELD, char *),   \
        .def = DEF, .reload = RELOAD, .list_offset = CF_FIELD_OF(S, FIELD##_ms, int64_t *),        \
        .cnt_offset = CF_FIELD_OF(S, FIELD##_cnt, size_t)                                          \
    }

// FIELD has enum type T, stored as an int: the first line refuses another type or size.
#define CF_ENUM_ROW_OF(S, SEC, KEY, FIELD, T, DEF, RELOAD, NAMES)                                  \
    {                                                                                              \
        .section = SEC, .key = KEY, .type = CF_ENUM,                                               \
        .offset = CF_FIELD_OF(S, FIELD, T) + 0 * sizeof(char[sizeof(T) == sizeof(int) ? 1 : -1]),  \
        .def = DEF, .reload = RELOAD, .names = NAMES                                               \
    }

#define CF_INT_ROW(...)     CF_INT_ROW_OF(hk_config_t, __VA_ARGS__)
#define CF_INT64_ROW(...)   CF_INT64_ROW_OF(hk_config_t, __VA_ARGS__)
#define CF_DOUBLE_ROW(...)  CF_DOUBLE_ROW_OF(hk_config_t, __VA_ARGS__)
#define CF_BOOL_ROW(...)    CF_BOOL_ROW_OF(hk_config_t, __VA_ARGS__)
#define CF_STR_ROW(...)     CF_STR_ROW_OF(hk_config_t, __VA_ARGS__)
#define CF_SECRET_ROW(...)  CF_SECRET_ROW_OF(hk_config_t, __VA_ARGS__)
#define CF_MS_LIST_ROW(...) CF_MS_LIST_ROW_OF(hk_config_t, __VA_ARGS__)
#define CF_ENUM_ROW(...)    CF_ENUM_ROW_OF(hk_config_t, __VA_ARGS__)

static const cf_enum_name_t cf_http2_names[] = {{"auto", HK_HTTP2_AUTO},
                                                {"off", HK_HTTP2_OFF},
                                                {"prior_knowledge", HK_HTTP2_PRIOR_KNOWLEDGE},
                                                {NULL, 0}};
static const cf_enum_name_t cf_log_level_names[] = {{"debug", HK_LOG_DEBUG},
                                                    {"info", HK_LOG_INFO},
                                                    {"warn", HK_LOG_WARN},
                                                    {"error", HK_LOG_ERROR},
                                                    {NULL, 0}};
// [endpoint] http2 = "" (the default) takes delivery.http2.
static const cf_enum_name_t cf_endpoint_http2_names[] = {
    {"", HK_HTTP2_UNSET},
    {"auto", HK_HTTP2_AUTO},
    {"off", HK_HTTP2_OFF},
    {"prior_knowledge", HK_HTTP2_PRIOR_KNOWLEDGE},
    {NULL, 0}};
static const cf_enum_name_t cf_unknown_tenant_names[] = {
    {"reject", HK_UNKNOWN_TENANT_REJECT}, {"default", HK_UNKNOWN_TENANT_DEFAULT}, {NULL, 0}};
static const cf_enum_name_t cf_ordering_names[] = {
    {"none", HK_ORDERING_NONE}, {"key", HK_ORDERING_KEY}, {NULL, 0}};
static const cf_enum_name_t cf_head_of_line_names[] = {
    {"block", HK_HEAD_OF_LINE_BLOCK},
    {"dead_letter_after_attempts", HK_HEAD_OF_LINE_DEAD_LETTER},
    {NULL, 0}};

// The order here is the order of hk_config_dump() and of the sample hookd.conf.
static const cf_row_t cf_rows[] = {
    CF_STR_ROW("kafka", "brokers", kafka_brokers, "mock", CF_NO_RELOAD, cf_check_nonempty),
    CF_STR_ROW("kafka", "topic", kafka_topic, "jobs", CF_NO_RELOAD, cf_check_topic),
    CF_STR_ROW("kafka", "group", kafka_group, "hookd", CF_NO_RELOAD, cf_check_nonempty),
    CF_STR_ROW("kafka", "dlq_topic", kafka_dlq_topic, "", CF_NO_RELOAD, cf_check_topic_or_empty),
    CF_STR_ROW("kafka", "retry_topic", kafka_retry_topic, "", CF_NO_RELOAD,
               cf_check_topic_or_empty),
    CF_INT_ROW("kafka", "mock_partitions", kafka_mock_partitions, CF_PLAIN, "8", 1, 1024,
               CF_NO_RELOAD),
    CF_BOOL_ROW("kafka", "create_topics", kafka_create_topics, "false", CF_NO_RELOAD),
    CF_INT_ROW("kafka", "topic_partitions", kafka_topic_partitions, CF_PLAIN, "0", 0, 100000,
               CF_NO_RELOAD),
    CF_INT_ROW("kafka", "topic_replication", kafka_topic_replication, CF_PLAIN, "0", 0, 32767,
               CF_NO_RELOAD),
    CF_INT_ROW("kafka", "startup_timeout_ms", kafka_startup_timeout_ms, CF_MS, "30000", 1000,
               600000, CF_NO_RELOAD),

    CF_AUTO_INT_ROW("delivery", "threads", delivery_threads, "auto", 1, 256, CF_NO_RELOAD,
                    cf_auto_threads),
    CF_INT_ROW("delivery", "max_transfers_per_thread", delivery_max_transfers_per_thread, CF_PLAIN,
               "64", 1, 4096, CF_NO_RELOAD),
    CF_INT_ROW("delivery", "timeout_ms", delivery_timeout_ms, CF_MS, "10000", 100, 120000,
               CF_NO_RELOAD),
    CF_INT_ROW("delivery", "connect_timeout_ms", delivery_connect_timeout_ms, CF_MS, "5000", 10,
               120000, CF_NO_RELOAD),
    CF_INT64_ROW("delivery", "max_response_bytes", delivery_max_response_bytes, CF_BYTES, "65536",
                 0, 16777216, CF_NO_RELOAD),
    CF_STR_ROW("delivery", "allow_cidrs", delivery_allow_cidrs, "", CF_NO_RELOAD, cf_check_cidrs),
    CF_STR_ROW("delivery", "ca_file", delivery_ca_file, "", CF_NO_RELOAD, NULL),
    CF_STR_ROW("delivery", "ca_path", delivery_ca_path, "", CF_NO_RELOAD, NULL),
    CF_ENUM_ROW("delivery", "http2", delivery_http2, hk_http2_t, "off", CF_NO_RELOAD,
                cf_http2_names),

    CF_SECRET_ROW("signing", "secret", signing_secret, "", CF_NO_RELOAD, cf_check_secrets),
    CF_ENUM_ROW("signing", "unknown_tenant", signing_unknown_tenant, hk_unknown_tenant_t, "reject",
                CF_NO_RELOAD, cf_unknown_tenant_names),

    CF_INT64_ROW("limits", "max_job_bytes", limits_max_job_bytes, CF_BYTES, "1048576", 1024,
                 67108864, CF_RELOAD),
    CF_INT_ROW("limits", "max_inflight_jobs", limits_max_inflight_jobs, CF_PLAIN, "10000", 1,
               10000000, CF_RELOAD),
    CF_INT64_ROW("limits", "max_inflight_bytes", limits_max_inflight_bytes, CF_BYTES, "268435456",
                 1048576, INT64_C(68719476736), CF_RELOAD),
    CF_INT_ROW("limits", "max_partition_span", limits_max_partition_span, CF_PLAIN, "20000", 1,
               10000000, CF_RELOAD),

    CF_INT_ROW("retry", "max_attempts", retry_max_attempts, CF_PLAIN, "10", 1, 100, CF_RELOAD),
    CF_MS_LIST_ROW("retry", "schedule", retry_schedule, "", CF_RELOAD),
    CF_INT_ROW("retry", "base_ms", retry_base_ms, CF_MS, "1000", 1, 3600000, CF_RELOAD),
    CF_DOUBLE_ROW("retry", "multiplier", retry_multiplier, "2.0", 1.0, 10.0, CF_RELOAD),
    CF_INT64_ROW("retry", "max_delay_ms", retry_max_delay_ms, CF_MS, "3600000", 0, 604800000,
                 CF_RELOAD),
    CF_INT_ROW("retry", "inline_max_ms", retry_inline_max_ms, CF_MS, "30000", 0, 600000, CF_RELOAD),

    CF_INT_ROW("breaker", "window", breaker_window, CF_PLAIN, "20", 1, 1000, CF_RELOAD),
    CF_INT_ROW("breaker", "min_calls", breaker_min_calls, CF_PLAIN, "10", 1, 1000, CF_RELOAD),
    CF_DOUBLE_ROW("breaker", "failure_rate", breaker_failure_rate, "0.5", 0.01, 1.0, CF_RELOAD),
    CF_INT_ROW("breaker", "consecutive_failures", breaker_consecutive_failures, CF_PLAIN, "5", 1,
               10000, CF_RELOAD),
    CF_INT64_ROW("breaker", "open_ms", breaker_open_ms, CF_MS, "30000", 100, 3600000, CF_RELOAD),
    CF_INT64_ROW("breaker", "max_open_ms", breaker_max_open_ms, CF_MS, "600000", 100, 86400000,
                 CF_RELOAD),
    CF_INT_ROW("breaker", "probes", breaker_probes, CF_PLAIN, "3", 1, 100, CF_RELOAD),

    CF_INT_ROW("lanes", "initial_limit", lanes_initial_limit, CF_PLAIN, "32", 1, 4096, CF_RELOAD),
    CF_INT_ROW("lanes", "min_limit", lanes_min_limit, CF_PLAIN, "1", 1, 4096, CF_RELOAD),
    CF_INT_ROW("lanes", "max_limit", lanes_max_limit, CF_PLAIN, "256", 1, 4096, CF_RELOAD),

    CF_ENUM_ROW("dispatch", "ordering", dispatch_ordering, hk_ordering_t, "none", CF_NO_RELOAD,
                cf_ordering_names),
    CF_ENUM_ROW("dispatch", "head_of_line", dispatch_head_of_line, hk_head_of_line_t,
                "dead_letter_after_attempts", CF_RELOAD, cf_head_of_line_names),
    CF_INT64_ROW("dispatch", "lane_idle_ms", dispatch_lane_idle_ms, CF_MS, "30000", 10, 86400000,
                 CF_NO_RELOAD),
    CF_INT_ROW("dispatch", "max_lanes", dispatch_max_lanes, CF_PLAIN, "10000", 1, 10000000,
               CF_NO_RELOAD),
    CF_INT_ROW("dispatch", "gone_urls_max", dispatch_gone_urls_max, CF_PLAIN, "10000", 1, 10000000,
               CF_NO_RELOAD),
    CF_INT64_ROW("dispatch", "gone_ttl_ms", dispatch_gone_ttl_ms, CF_MS, "3600000", 1000, 604800000,
                 CF_NO_RELOAD),
    CF_INT64_ROW("dispatch", "hold_429_ms", dispatch_hold_429_ms, CF_MS, "1000", 1, 600000,
                 CF_NO_RELOAD),

    CF_ENUM_ROW("log", "level", log_level, hk_log_level_t, "info", CF_RELOAD, cf_log_level_names),
    CF_INT_ROW("log", "summary_ms", log_summary_ms, CF_MS, "5000", 0, 3600000, CF_RELOAD),
    CF_BOOL_ROW("log", "full_urls", log_full_urls, "false", CF_RELOAD),

    CF_INT_ROW("shutdown", "grace_ms", shutdown_grace_ms, CF_MS, "10000", 0, 600000, CF_RELOAD),

    CF_SECRET_ROW("postgres", "url", postgres_url, "", CF_NO_RELOAD, NULL),
    CF_INT_ROW("postgres", "connect_timeout_ms", postgres_connect_timeout_ms, CF_MS, "2000", 100,
               60000, CF_NO_RELOAD),
    CF_INT_ROW("postgres", "reconnect_max_ms", postgres_reconnect_max_ms, CF_MS, "5000", 100,
               600000, CF_NO_RELOAD),

    CF_INT_ROW("batch", "concurrency", batch_concurrency, CF_PLAIN, "16", 1, 10000, CF_NO_RELOAD),
    CF_INT_ROW("batch", "checkpoint_items", batch_checkpoint_items, CF_PLAIN, "100", 1, 100000,
               CF_NO_RELOAD),
    CF_INT_ROW("batch", "checkpoint_ms", batch_checkpoint_ms, CF_MS, "1000", 10, 600000,
               CF_NO_RELOAD),

    CF_SECRET_ROW("redis", "url", redis_url, "", CF_NO_RELOAD, cf_check_redis_url),
    CF_INT_ROW("redis", "timeout_ms", redis_timeout_ms, CF_MS, "200", 10, 60000, CF_NO_RELOAD),
    CF_INT_ROW("redis", "dedupe_ttl_s", redis_dedupe_ttl_s, CF_PLAIN, "86400", 1, 31536000,
               CF_NO_RELOAD),
    CF_INT_ROW("redis", "lease_ms", redis_lease_ms, CF_MS, "30000", 100, 3600000, CF_NO_RELOAD),
    CF_INT_ROW("redis", "sync_ms", redis_sync_ms, CF_MS, "250", 10, 10000, CF_NO_RELOAD),
    CF_INT_ROW("redis", "watch_chunk", redis_watch_chunk, CF_PLAIN, "256", 1, 100000, CF_NO_RELOAD),

    CF_STR_ROW("admin", "listen", admin_listen, "127.0.0.1:9464", CF_NO_RELOAD, cf_check_listen),
    CF_SECRET_ROW("admin", "token", admin_token, "", CF_NO_RELOAD, cf_check_token),
    CF_INT_ROW("admin", "metrics_lanes", admin_metrics_lanes, CF_PLAIN, "100", 0, 100000,
               CF_NO_RELOAD),
};

#define CF_ROWS_CNT (sizeof(cf_rows) / sizeof(cf_rows[0]))

// The keys of an [endpoint "<scheme://host:port>"] section, fields of
// hk_endpoint_conf_t; a section sets some, the rest keep these defaults. Not
// settable from the environment.
static const cf_row_t cf_endpoint_rows[] = {
    CF_BOOL_ROW_OF(hk_endpoint_conf_t, "endpoint", "disabled", disabled, "false", CF_RELOAD),
    CF_STR_ROW_OF(hk_endpoint_conf_t, "endpoint", "rate", rate, "", CF_RELOAD, cf_check_rate),
    CF_INT_ROW_OF(hk_endpoint_conf_t, "endpoint", "burst", burst, CF_PLAIN, "1", 1, 1000000,
                  CF_RELOAD),
    // TLS and HTTP version, read by the delivery threads at start: not reloadable.
    CF_STR_ROW_OF(hk_endpoint_conf_t, "endpoint", "ca_file", ca_file, "", CF_NO_RELOAD, NULL),
    CF_STR_ROW_OF(hk_endpoint_conf_t, "endpoint", "client_cert", client_cert, "", CF_NO_RELOAD,
                  NULL),
    CF_STR_ROW_OF(hk_endpoint_conf_t, "endpoint", "client_key", client_key, "", CF_NO_RELOAD, NULL),
    CF_ENUM_ROW_OF(hk_endpoint_conf_t, "endpoint", "http2", http2, hk_http2_t, "", CF_NO_RELOAD,
                   cf_endpoint_http2_names),
};

#define CF_ENDPOINT_ROWS_CNT (sizeof(cf_endpoint_rows) / sizeof(cf_endpoint_rows[0]))

// Integer keys that must not exceed another key, checked once the file and the
// environment are both applied.
static const struct {
    const char *lo; // section.key
    const char *hi;
} cf_order_rules[] = {
    // A job as large as max_job_bytes must fit under the in-flight cap, or intake
    // would pause forever on it.
    {"limits.max_job_bytes", "limits.max_inflight_bytes"},
    // A window that can never hold min_calls calls never opens on the failure rate.
    {"breaker.min_calls", "breaker.window"},
    {"breaker.open_ms", "breaker.max_open_ms"},
    {"lanes.min_limit", "lanes.initial_limit"},
    {"lanes.initial_limit", "lanes.max_limit"},
};

static const struct {
    cf_unit_t unit;
    const char *suffix;
    int64_t mult;
} cf_suffixes[] = {
    {CF_BYTES, "k", 1024},
    {CF_BYTES, "K", 1024},
    {CF_BYTES, "M", 1024 * 1024},
    {CF_BYTES, "G", INT64_C(1024) * 1024 * 1024},
    {CF_MS, "ms", 1},
    {CF_MS, "s", 1000},
    {CF_MS, "m", 60 * 1000},
    {CF_MS, "h", 60 * 60 * 1000},
};

static const struct {
    const char *word; // compared without regard to case
    int value;
} cf_bool_words[] = {
    {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0}, {"on", 1}, {"off", 0}, {"1", 1}, {"0", 0},
};

// Key names whose values are credentials: the dump hides them. A name matches when
// it contains one of these words (any case), or, for an rdkafka.<prop> key, when
// the property starts with "sasl." (every SASL setting: mechanism and user names
// say who we are, the rest are passwords, keytabs and OAuth configs).
static const char *const cf_secret_words[] = {"password", "passphrase", "secret", "key.pem",
                                              "oauthbearer.config"};

// Longest section name, quotes and all, between the brackets of a header line.
#define CF_SECTION_MAX 512

// A value from a file line too long for inih is handed to inih as this marker and
// read back from cf_parse_t.long_value.
#define CF_LONG_VALUE_MARK "\x01"

// Fields of `base`, the struct a row's table describes (hk_config_t, hk_endpoint_conf_t).
static void *cf_field(void *base, size_t offset)
{
    return (char *)base + offset;
}

static const void *cf_cfield(const void *base, size_t offset)
{
    return (const char *)base + offset;
}

static int cf_get_int(const void *base, const cf_row_t *row)
{
    return *(const int *)cf_cfield(base, row->offset);
}

static int64_t cf_get_int64(const void *base, const cf_row_t *row)
{
    return *(const int64_t *)cf_cfield(base, row->offset);
}

static double cf_get_double(const void *base, const cf_row_t *row)
{
    return *(const double *)cf_cfield(base, row->offset);
}

static const char *cf_get_str(const void *base, const cf_row_t *row)
{
    const char *s = *(char *const *)cf_cfield(base, row->offset);
    return s ? s : "";
}

static const cf_row_t *cf_find_in(const cf_row_t *rows, size_t cnt, const char *section,
                                  const char *key)
{
    for (size_t i = 0; i < cnt; i++)
        if (strcmp(rows[i].section, section) == 0 && strcmp(rows[i].key, key) == 0)
            return &rows[i];
    return NULL;
}

static const cf_row_t *cf_find(const char *section, const char *key)
{
    return cf_find_in(cf_rows, CF_ROWS_CNT, section, key);
}

// "limits.max_job_bytes" -> its row.
static const cf_row_t *cf_find_dotted(const char *name)
{
    for (size_t i = 0; i < CF_ROWS_CNT; i++) {
        size_t slen = strlen(cf_rows[i].section);
        if (strncmp(name, cf_rows[i].section, slen) == 0 && name[slen] == '.' &&
            strcmp(name + slen + 1, cf_rows[i].key) == 0)
            return &cf_rows[i];
    }
    return NULL;
}

static bool cf_section_known(const char *section)
{
    for (size_t i = 0; i < CF_ROWS_CNT; i++)
        if (strcmp(cf_rows[i].section, section) == 0)
            return true;
    return false;
}

// Secret strings are wiped before they go back to the allocator.
static void cf_free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

// `name` is "section.key" for a table row, "rdkafka.<prop>" for a pass-through one.
static bool cf_name_is_secret(const char *name)
{
    if (strncasecmp(name, "rdkafka.sasl.", 13) == 0)
        return true;
    for (size_t i = 0; i < sizeof(cf_secret_words) / sizeof(cf_secret_words[0]); i++)
        if (strcasestr(name, cf_secret_words[i]))
            return true;
    return false;
}

// ---- value parsing and checks ----

// Decimal digits, then one of the unit's suffixes. False on anything else: sign,
// spaces, junk, or a result above INT64_MAX.
static bool cf_parse_integer(const char *s, cf_unit_t unit, int64_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    int64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        int d = *s - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    int64_t mult = 1;
    if (*s != '\0') {
        mult = 0;
        for (size_t i = 0; i < sizeof(cf_suffixes) / sizeof(cf_suffixes[0]); i++)
            if (cf_suffixes[i].unit == unit && strcmp(s, cf_suffixes[i].suffix) == 0)
                mult = cf_suffixes[i].mult;
        if (mult == 0 || v > INT64_MAX / mult)
            return false;
    }
    *out = v * mult;
    return true;
}

// A decimal number as strtod reads it ("0.5", "2", ".25", "1e-3", "1e+06"): no
// spaces, no leading '+', no hex, nan or inf, nothing strtod leaves over, nothing
// out of double's range. (strtod follows LC_NUMERIC, which hookd leaves at "C"; in
// another locale "0.5" fails here rather than reading as 0.)
static bool cf_parse_double(const char *s, double *out)
{
    if (s[0] == '\0' || s[0] == '+' || s[strspn(s, "0123456789.eE+-")] != '\0')
        return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

// %g (0.5, 2, 10, 1e-05), with more digits only when %g's six would not read back as
// v: a dump loaded again gives the same config.
static void cf_format_double(char *buf, size_t size, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static bool cf_parse_bool(const char *s, int *out)
{
    for (size_t i = 0; i < sizeof(cf_bool_words) / sizeof(cf_bool_words[0]); i++) {
        if (strcasecmp(s, cf_bool_words[i].word) == 0) {
            *out = cf_bool_words[i].value;
            return true;
        }
    }
    return false;
}

static bool cf_check_nonempty(const char *value, char *why, size_t why_size)
{
    if (value[0] != '\0')
        return true;
    hk_err_set(why, why_size, "must not be empty");
    return false;
}

static bool cf_check_topic(const char *value, char *why, size_t why_size)
{
    size_t len = strlen(value);
    bool ok =
        len >= 1 && len <= 249 && strcmp(value, ".") != 0 && strcmp(value, "..") != 0 &&
        strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
    if (!ok)
        hk_err_set(why, why_size, "must be a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)");
    return ok;
}

static bool cf_check_topic_or_empty(const char *value, char *why, size_t why_size)
{
    return value[0] == '\0' || cf_check_topic(value, why, why_size);
}

// The rules are netguard's (hk_netguard_new() reads the same value); the message
// is config's, and the line's value follows it.
static bool cf_check_cidrs(const char *value, char *why, size_t why_size)
{
    if (hk_netguard_check_cidrs(value, NULL, 0) == 0)
        return true;
    hk_err_set(why, why_size,
               "must be CIDRs such as 10.0.0.0/8 or ::1/128 (host bits zero), separated by "
               "commas or spaces");
    return false;
}

// "" (signing off) or whsec_<base64 of 16..64 bytes>, up to HK_SIGN_MAX_SECRETS
// separated by spaces during rotation; each secret by sign's rule (hk_sign_check_secret_n). The
// message says which one is wrong and how, never what it is.
static bool cf_check_secrets(const char *value, char *why, size_t why_size)
{
    const char *sep = " \t";
    size_t total = 0;
    for (const char *p = value + strspn(value, sep); *p; p += strspn(p, sep)) {
        p += strcspn(p, sep);
        total++;
    }
    // More would not fit one webhook-signature header: refused here, so hookd never
    // has to choose between sending a partial header and none (base/sign.h).
    if (total > HK_SIGN_MAX_SECRETS) {
        hk_err_set(why, why_size,
                   "holds %zu secrets, more than the %d one webhook-signature header carries; "
                   "remove retired secrets",
                   total, HK_SIGN_MAX_SECRETS);
        return false;
    }
    size_t nth = 0;
    for (const char *p = value + strspn(value, sep); *p; p += strspn(p, sep)) {
        size_t len = strcspn(p, sep);
        nth++;
        char problem[64];
        if (hk_sign_check_secret_n(p, len, problem, sizeof(problem)) < 0) {
            hk_err_set(why, why_size,
                       "must be whsec_<base64 of 16 to 64 bytes>, several separated by spaces; "
                       "secret %zu of %zu %s (secrets are not shown)",
                       nth, total, problem);
            return false;
        }
        p += len;
    }
    return true;
}

// delivery.threads = auto: one per CPU this process may run on (affinity and
// cpusets count), at most 16. Each delivery thread is an event loop that keeps a
// core busy at line rate. Measured on 2 cores (bench/compare.sh, README): 2
// threads beat 1 and 4 while the machine was otherwise quiet; under heavy
// outside load 1 did about as well.
static int cf_auto_threads(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
    if (n <= 0)
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : n;
}

// "" (no token) or 16 to 256 visible ASCII characters.
static bool cf_check_token(const char *value, char *why, size_t why_size)
{
    size_t len = strlen(value);
    bool ok = len == 0 || (len >= 16 && len <= 256);
    for (size_t i = 0; ok && i < len; i++)
        ok = value[i] > 0x20 && value[i] < 0x7f;
    if (!ok)
        hk_err_set(why, why_size, "must be 16 to 256 visible ASCII characters, or empty for none");
    return ok;
}

// "" (admin server off), host:port or [v6 address]:port.
int hk_config_parse_rate(const char *rate, double *per_second)
{
    *per_second = 0;
    if (rate[0] == '\0')
        return 0;
    char *end;
    errno = 0;
    double n = strtod(rate, &end);
    if (errno || end == rate || !(n > 0) || n > 1e6 || *end != '/')
        return -1;
    double secs;
    if (strcmp(end, "/s") == 0)
        secs = 1;
    else if (strcmp(end, "/m") == 0)
        secs = 60;
    else if (strcmp(end, "/h") == 0)
        secs = 3600;
    else
        return -1;
    *per_second = n / secs;
    return 0;
}

static bool cf_check_rate(const char *value, char *why, size_t why_size)
{
    double r;
    if (hk_config_parse_rate(value, &r) == 0)
        return true;
    hk_err_set(why, why_size, "must be empty or a rate such as 200/s, 1500/m or 10/h");
    return false;
}

static bool cf_check_redis_url(const char *value, char *why, size_t why_size)
{
    if (value[0] == '\0' || strncmp(value, "redis://", 8) == 0 || strncmp(value, "unix:", 5) == 0)
        return true;
    hk_err_set(why, why_size, "must be empty, redis://[:password@]host:port[/db] or unix:/path");
    return false;
}

// 0 when `listen` ("host:port", "[v6]:port") names an address literal that is not
// loopback (0.0.0.0 and :: included); 1 for loopback literals and host names.
static int cf_listen_maybe_loopback(const char *listen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    if (n >= sizeof(host))
        return 1;
    memcpy(host, listen, n);
    host[n] = '\0';
    char *h = host;
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h[n - 1] = '\0';
        h++;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 1;
}

static bool cf_check_listen(const char *value, char *why, size_t why_size)
{
    if (value[0] == '\0')
        return true;
    const char *colon = strrchr(value, ':');
    bool ok = colon != NULL && colon > value && strpbrk(value, " \t") == NULL;
    if (ok && value[0] == '[')
        ok = colon[-1] == ']' && colon - value > 2;
    else if (ok)
        ok = memchr(value, ':', (size_t)(colon - value)) == NULL;
    int64_t port;
    if (!ok || !cf_parse_integer(colon + 1, CF_PLAIN, &port) || port < 0 || port > 65535) {
        hk_err_set(
            why, why_size,
            "must be host:port (port 0 to 65535, 0 = any free port), or empty to turn it off");
        return false;
    }
    return true;
}

// An [endpoint "..."] name: scheme://host:port with scheme http or https, host a
// name or IPv4 address (letters, digits, '.', '-') or a bracketed IPv6 address, port
// 1 to 65535, nothing else. Writes the canonical form to out: scheme and host in
// lower case, IPv6 as inet_ntop writes it, the port without leading zeros, so one
// endpoint written two ways is one endpoint.
static bool cf_endpoint_canon(const char *name, char *out, size_t out_size)
{
    const char *scheme = strncasecmp(name, "https://", 8) == 0  ? "https"
                         : strncasecmp(name, "http://", 7) == 0 ? "http"
                                                                : NULL;
    if (!scheme)
        return false;
    const char *host = name + strlen(scheme) + 3;
    char canon_host[256];
    const char *colon;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        char v6[INET6_ADDRSTRLEN], v6_canon[INET6_ADDRSTRLEN];
        struct in6_addr addr;
        if (!close || (size_t)(close - host - 1) >= sizeof(v6))
            return false;
        memcpy(v6, host + 1, (size_t)(close - host - 1));
        v6[close - host - 1] = '\0';
        if (inet_pton(AF_INET6, v6, &addr) != 1 ||
            !inet_ntop(AF_INET6, &addr, v6_canon, sizeof(v6_canon)))
            return false;
        snprintf(canon_host, sizeof(canon_host), "[%s]", v6_canon);
        colon = close + 1;
    } else {
        size_t len =
            strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
        if (len == 0 || len >= sizeof(canon_host) || host[0] == '.' || host[0] == '-')
            return false;
        for (size_t i = 0; i < len; i++)
            canon_host[i] =
                (host[i] >= 'A' && host[i] <= 'Z') ? (char)(host[i] - 'A' + 'a') : host[i];
        canon_host[len] = '\0';
        colon = host + len;
    }
    int64_t port;
    if (colon[0] != ':' || strlen(colon + 1) > 5 || !cf_parse_integer(colon + 1, CF_PLAIN, &port) ||
        port < 1 || port > 65535)
        return false;
    int n = snprintf(out, out_size, "%s://%s:%d", scheme, canon_host, (int)port);
    return n > 0 && (size_t)n < out_size;
}

// Parses `value` for `row` and stores it in the struct at `base`. `where` starts the
// error message ("config line 12", "env HOOKD_DELIVERY_THREADS"); the key is named
// A CF_ENUM row's value from one of its names. The error lists the names: "must be
// none or key", "must be auto, off or prior_knowledge", "must be one of a, b, c, d".
static int cf_set_enum(void *field, const cf_row_t *row, const char *name, const char *value,
                       const char *where, char *errstr, size_t errstr_size)
{
    size_t cnt = 0;
    for (const cf_enum_name_t *n = row->names; n->name; n++) {
        if (strcmp(value, n->name) == 0) {
            *(int *)field = n->value;
            return 0;
        }
        cnt += n->name[0] != '\0'; // "" (unset) is not offered
    }
    char list[256] = "";
    size_t len = 0, nth = 0;
    for (const cf_enum_name_t *n = row->names; n->name && len < sizeof(list); n++) {
        if (n->name[0] == '\0')
            continue;
        nth++;
        const char *sep = nth == 1 ? "" : nth == cnt && cnt <= 3 ? " or " : ", ";
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", sep, n->name);
    }
    hk_err_set(errstr, errstr_size, "%s: %s must be %s%s, got \"%s\"", where, name,
               cnt > 3 ? "one of " : "", list, value);
    return -1;
}

// The name a CF_ENUM row's value stands for ("" when none does).
static const char *cf_enum_name(const void *base, const cf_row_t *row)
{
    int v = *(const int *)cf_cfield(base, row->offset);
    for (const cf_enum_name_t *n = row->names; n->name; n++)
        if (n->value == v)
            return n->name;
    return "";
}

// section.key, or "<prefix> key" when prefix is set (`[endpoint "..."] disabled`).
static int cf_set(void *base, const cf_row_t *row, const char *prefix, const char *value,
                  const char *where, char *errstr, size_t errstr_size)
{
    char name[CF_SECTION_MAX + 64];
    if (prefix)
        snprintf(name, sizeof(name), "%s %s", prefix, row->key);
    else
        snprintf(name, sizeof(name), "%s.%s", row->section, row->key);
    void *field = cf_field(base, row->offset);

    switch (row->type) {
    case CF_INT:
    case CF_INT64: {
        int64_t v;
        if (row->auto_value && strcmp(value, "auto") == 0) {
            *(int *)field = row->auto_value();
            return 0;
        }
        if (!cf_parse_integer(value, row->unit, &v) || v < row->min || v > row->max) {
            hk_err_set(errstr, errstr_size, "%s: %s must be between %lld and %lld, got \"%s\"",
                       where, name, (long long)row->min, (long long)row->max, value);
            return -1;
        }
        if (row->type == CF_INT)
            *(int *)field = (int)v;
        else
            *(int64_t *)field = v;
        return 0;
    }
    case CF_DOUBLE: {
        double v;
        if (!cf_parse_double(value, &v) || v < row->dmin || v > row->dmax) {
            char lo[32], hi[32];
            cf_format_double(lo, sizeof(lo), row->dmin);
            cf_format_double(hi, sizeof(hi), row->dmax);
            hk_err_set(errstr, errstr_size, "%s: %s must be between %s and %s, got \"%s\"", where,
                       name, lo, hi, value);
            return -1;
        }
        *(double *)field = v;
        return 0;
    }
    case CF_BOOL:
        if (!cf_parse_bool(value, (int *)field)) {
            hk_err_set(errstr, errstr_size,
                       "%s: %s must be true or false (or yes/no, on/off, 1/0), got \"%s\"", where,
                       name, value);
            return -1;
        }
        return 0;
    case CF_ENUM:
        return cf_set_enum(field, row, name, value, where, errstr, errstr_size);
    case CF_MS_LIST:
    case CF_STR:
    case CF_SECRET:
        break;
    }

    char why[256];
    int64_t *list = NULL;
    size_t list_cnt = 0;
    if (row->type == CF_MS_LIST && value[0] != '\0' &&
        hk_backoff_parse_schedule(value, &list, &list_cnt, why, sizeof(why)) != 0) {
        hk_err_set(errstr, errstr_size, "%s: %s: %s", where, name, why);
        return -1;
    }
    if (row->check && !row->check(value, why, sizeof(why))) {
        if (row->type == CF_SECRET)
            hk_err_set(errstr, errstr_size, "%s: %s %s", where, name, why);
        else
            hk_err_set(errstr, errstr_size, "%s: %s %s, got \"%s\"", where, name, why, value);
        return -1;
    }
    char *copy = strdup(value);
    if (!copy) {
        free(list);
        hk_err_set(errstr, errstr_size, "%s: out of memory", where);
        return -1;
    }
    char **str = field;
    if (row->type == CF_SECRET)
        cf_free_secret(*str);
    else
        free(*str);
    *str = copy;
    if (row->type == CF_MS_LIST) {
        int64_t **list_field = cf_field(base, row->list_offset);
        free(*list_field);
        *list_field = list;
        *(size_t *)cf_field(base, row->cnt_offset) = list_cnt;
    }
    return 0;
}

// Sets every row of a table to its default. Fails only when out of memory.
static int cf_set_defaults(void *base, const cf_row_t *rows, size_t cnt, char *errstr,
                           size_t errstr_size)
{
    for (size_t i = 0; i < cnt; i++)
        if (cf_set(base, &rows[i], NULL, rows[i].def, "default", errstr, errstr_size) != 0)
            return -1;
    return 0;
}

static void cf_free_fields(void *base, const cf_row_t *rows, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++) {
        char **str = cf_field(base, rows[i].offset);
        if (rows[i].type == CF_SECRET)
            cf_free_secret(*str);
        else if (rows[i].type == CF_STR || rows[i].type == CF_MS_LIST)
            free(*str);
        if (rows[i].type == CF_MS_LIST)
            free(*(int64_t **)cf_field(base, rows[i].list_offset));
    }
}

static bool cf_row_equal(const void *a, const void *b, const cf_row_t *row)
{
    switch (row->type) {
    case CF_INT:
    case CF_BOOL:
    case CF_ENUM:
        return cf_get_int(a, row) == cf_get_int(b, row);
    case CF_INT64:
        return cf_get_int64(a, row) == cf_get_int64(b, row);
    case CF_DOUBLE:
        return cf_get_double(a, row) == cf_get_double(b, row);
    case CF_STR:
    case CF_SECRET:
    case CF_MS_LIST:
        break;
    }
    return strcmp(cf_get_str(a, row), cf_get_str(b, row)) == 0;
}

// An integer row's value, whichever of int and int64_t it is.
static int64_t cf_get_integer(const void *base, const cf_row_t *row)
{
    return row->type == CF_INT64 ? cf_get_int64(base, row) : cf_get_int(base, row);
}

// Sets key to value in a name/value list: replaces an existing key in place (a key
// keeps its first position), else appends.
static int cf_kv_set(hk_kv_t **list, size_t *cnt, const char *key, const char *value)
{
    char *v = strdup(value);
    if (!v)
        return -1;
    for (size_t i = 0; i < *cnt; i++) {
        if (strcmp((*list)[i].key, key) == 0) {
            cf_free_secret((*list)[i].value);
            (*list)[i].value = v;
            return 0;
        }
    }
    char *k = strdup(key);
    hk_kv_t *grown = k ? realloc(*list, (*cnt + 1) * sizeof(**list)) : NULL;
    if (!grown) {
        free(k);
        free(v);
        return -1;
    }
    grown[*cnt] = (hk_kv_t){.key = k, .value = v};
    *list = grown;
    (*cnt)++;
    return 0;
}

static void cf_kv_free(hk_kv_t *list, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++) {
        free(list[i].key);
        cf_free_secret(list[i].value);
    }
    free(list);
}

// The [endpoint "<name>"] entry of `canon`, added with the defaults if it is new.
// Returns its index, or -1 when out of memory.
static long cf_endpoint_get(hk_config_t *cfg, const char *canon, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < cfg->endpoints_cnt; i++)
        if (strcmp(cfg->endpoints[i].endpoint, canon) == 0)
            return (long)i;
    hk_endpoint_conf_t *grown =
        realloc(cfg->endpoints, (cfg->endpoints_cnt + 1) * sizeof(*cfg->endpoints));
    if (!grown)
        return -1;
    cfg->endpoints = grown;
    hk_endpoint_conf_t *ep = &grown[cfg->endpoints_cnt++];
    *ep = (hk_endpoint_conf_t){.endpoint = strdup(canon)};
    if (!ep->endpoint ||
        cf_set_defaults(ep, cf_endpoint_rows, CF_ENDPOINT_ROWS_CNT, errstr, errstr_size) != 0)
        return -1;
    return (long)(cfg->endpoints_cnt - 1);
}

// ---- the file ----

typedef struct cf_parse {
    hk_config_t *cfg;
    FILE *fp;
    int lineno; // of the line last handed to inih
    char *line; // that line as read (getline buffer)
    size_t line_cap;
    char *long_value;             // value of that line when it was too long for inih, else NULL
    char section[CF_SECTION_MAX]; // current section, as written between the brackets
    long endpoint;                // its index in cfg->endpoints if it is an [endpoint "..."]
    char prev_section[CF_SECTION_MAX]; // section and key of the previous handler call
    char prev_key[256];
    int err_line; // line of the first error; 0: none yet
    char *errstr;
    size_t errstr_size;
} cf_parse_t;

static void cf_parse_fail(cf_parse_t *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void cf_parse_fail(cf_parse_t *ps, const char *fmt, ...)
{
    if (ps->err_line)
        return;
    ps->err_line = ps->lineno;
    int n = snprintf(ps->errstr, ps->errstr_size, "config line %d: ", ps->lineno);
    if (n < 0 || (size_t)n >= ps->errstr_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->errstr + n, ps->errstr_size - (size_t)n, fmt, ap);
    va_end(ap);
}

static char *cf_rstrip(char *start, char *end)
{
    while (end > start && strchr(" \t\r\n", end[-1]))
        end--;
    *end = '\0';
    return start;
}

// `<word> "<name>"` -> name; false if section is not of that form.
static bool cf_quoted_name(const char *section, const char *word, char *name, size_t name_size)
{
    size_t wlen = strlen(word);
    if (strncmp(section, word, wlen) != 0 || strncmp(section + wlen, " \"", 2) != 0)
        return false;
    const char *start = section + wlen + 2;
    size_t len = strlen(start);
    if (len < 2 || start[len - 1] != '"' || memchr(start, '"', len - 1) || len > name_size)
        return false;
    memcpy(name, start, len - 1);
    name[len - 1] = '\0';
    return true;
}

// Whether section is `word` or starts with `word `: [tenant], [tenant acme].
static bool cf_section_is(const char *section, const char *word)
{
    size_t wlen = strlen(word);
    return strncmp(section, word, wlen) == 0 && (section[wlen] == '\0' || section[wlen] == ' ');
}

// A new section begins. An [endpoint "..."] is checked and registered here, so its
// errors name the header line and a section without keys still counts; other
// sections are checked at their first key.
static void cf_on_section(cf_parse_t *ps)
{
    ps->endpoint = -1;
    if (ps->err_line || !cf_section_is(ps->section, "endpoint"))
        return;
    char name[CF_SECTION_MAX], canon[CF_SECTION_MAX];
    if (!cf_quoted_name(ps->section, "endpoint", name, sizeof(name))) {
        cf_parse_fail(ps, "section [%s] must be written [endpoint \"<scheme://host:port>\"]",
                      ps->section);
    } else if (!cf_endpoint_canon(name, canon, sizeof(canon))) {
        cf_parse_fail(ps, "[%s]: must be scheme://host:port, e.g. https://api.example.com:443",
                      ps->section);
    } else {
        ps->endpoint = cf_endpoint_get(ps->cfg, canon, ps->errstr, ps->errstr_size);
        if (ps->endpoint < 0)
            cf_parse_fail(ps, "out of memory");
    }
}

// A `[name]` line, p at its '['. After the ']' only spaces and a # or ; comment may
// follow. A ']' inside double quotes is part of the name.
static void cf_read_section(cf_parse_t *ps, const char *p)
{
    const char *start = p + 1, *end = start;
    bool quoted = false;
    for (; *end && *end != '\n' && *end != '\r' && (quoted || *end != ']'); end++)
        if (*end == '"')
            quoted = !quoted;
    const char *rest = *end == ']' ? end + 1 + strspn(end + 1, " \t\r\n") : NULL;
    if (!rest || (*rest != '\0' && *rest != '#' && *rest != ';')) {
        cf_parse_fail(ps, "expected [section], key = value or a # comment");
    } else if ((size_t)(end - start) >= sizeof(ps->section)) {
        cf_parse_fail(ps, "section name is longer than %zu characters", sizeof(ps->section) - 1);
    } else {
        memcpy(ps->section, start, (size_t)(end - start));
        ps->section[end - start] = '\0';
        cf_on_section(ps);
    }
}

// A line longer than inih's buffer. Comments become an empty comment; "key = value"
// becomes "key = <mark>" with the value kept in long_value, split as inih would
// (first '=' or ':', inline comment from " ;"). Anything else is an error.
static char *cf_shorten_line(cf_parse_t *ps, char *str, int num)
{
    char *p = ps->line;
    if (ps->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    p += strspn(p, " \t");
    if (*p == ';' || *p == '#') {
        snprintf(str, (size_t)num, ";\n");
        return str;
    }
    char *sep = strpbrk(p, "=:");
    if (sep == NULL || sep - p > num / 2) {
        cf_parse_fail(ps, "line is longer than %d characters and is not a key = value line",
                      num - 3);
        return NULL;
    }
    char *value = sep + 1 + strspn(sep + 1, " \t");
    for (char *c = value; *c; c++) {
        if (*c == ';' && c > value && (c[-1] == ' ' || c[-1] == '\t')) {
            *c = '\0';
            break;
        }
    }
    ps->long_value = strdup(cf_rstrip(value, value + strlen(value)));
    if (!ps->long_value) {
        cf_parse_fail(ps, "out of memory");
        return NULL;
    }
    *sep = '\0';
    snprintf(str, (size_t)num, "%s = " CF_LONG_VALUE_MARK "\n", cf_rstrip(p, sep));
    return str;
}

// inih's fgets-style reader: one call per line, so the count of calls is the line
// number of everything inih reports until the next call. Section headers are read
// here into ps->section; inih gets an empty "[]" in their place.
static char *cf_read_line(char *str, int num, void *stream)
{
    cf_parse_t *ps = stream;
    if (ps->long_value) {
        cf_free_secret(ps->long_value);
        ps->long_value = NULL;
    }
    ssize_t len = getline(&ps->line, &ps->line_cap, ps->fp);
    if (len < 0)
        return NULL;
    ps->lineno++;
    const char *p = ps->line;
    if (ps->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    p += strspn(p, " \t");
    if (*p == '[') {
        cf_read_section(ps, p);
        snprintf(str, (size_t)num, "[]\n");
        return str;
    }
    if (len < num) {
        memcpy(str, ps->line, (size_t)len + 1);
        return str;
    }
    return cf_shorten_line(ps, str, num);
}

// Strips one pair of surrounding double quotes: `dlq_topic = ""` is the empty string.
static char *cf_unquote(const char *value)
{
    size_t len = strlen(value);
    if (len >= 2 && value[0] == '"' && value[len - 1] == '"')
        return strndup(value + 1, len - 2);
    return strdup(value);
}

static void cf_on_pair(cf_parse_t *ps, const char *section, const char *name, const char *value)
{
    hk_config_t *cfg = ps->cfg;
    char tenant[CF_SECTION_MAX];
    char where[32];
    snprintf(where, sizeof(where), "config line %d", ps->lineno);

    if (section[0] == '\0') {
        cf_parse_fail(ps, "key \"%s\" must be inside a [section]", name);
    } else if (cf_quoted_name(section, "tenant", tenant, sizeof(tenant))) {
        char why[256];
        if (strcmp(name, "secret") != 0)
            cf_parse_fail(ps, "unknown key \"%s\" in [%s]", name, section);
        else if (!cf_check_secrets(value, why, sizeof(why)))
            cf_parse_fail(ps, "[%s] secret %s", section, why);
        else if (cf_kv_set(&cfg->tenant_secrets, &cfg->tenant_secrets_cnt, tenant, value) != 0)
            cf_parse_fail(ps, "out of memory");
    } else if (cf_section_is(section, "tenant")) {
        cf_parse_fail(ps, "section [%s] must be written [tenant \"<name>\"]", section);
    } else if (ps->endpoint >= 0) {
        // cf_on_section has checked the header and made the entry.
        const cf_row_t *row = cf_find_in(cf_endpoint_rows, CF_ENDPOINT_ROWS_CNT, "endpoint", name);
        char prefix[CF_SECTION_MAX + 2];
        snprintf(prefix, sizeof(prefix), "[%s]", section);
        if (row == NULL)
            cf_parse_fail(ps, "unknown key \"%s\" in [%s]", name, section);
        else if (cf_set(&cfg->endpoints[ps->endpoint], row, prefix, value, where, ps->errstr,
                        ps->errstr_size) != 0)
            ps->err_line = ps->lineno;
    } else if (strcmp(section, "kafka") == 0 && strncmp(name, "rdkafka.", 8) == 0) {
        if (name[8] == '\0')
            cf_parse_fail(ps, "rdkafka. needs a librdkafka property name after it");
        else if (cf_kv_set(&cfg->kafka_props, &cfg->kafka_props_cnt, name + 8, value) != 0)
            cf_parse_fail(ps, "out of memory");
    } else {
        const cf_row_t *row = cf_find(section, name);
        if (row == NULL && cf_section_known(section))
            cf_parse_fail(ps, "unknown key \"%s\" in [%s]", name, section);
        else if (row == NULL)
            cf_parse_fail(ps, "unknown section [%s]", section);
        else if (cf_set(cfg, row, NULL, value, where, ps->errstr, ps->errstr_size) != 0)
            ps->err_line = ps->lineno;
    }
}

// inih's section argument is always "" (see cf_read_line); ps->section has the real one.
static int cf_on_ini_pair(void *user, const char *ini_section, const char *name, const char *value)
{
    (void)ini_section;
    cf_parse_t *ps = user;
    if (ps->err_line)
        return 1; // only the first error is reported
    if (ps->long_value && strcmp(value, CF_LONG_VALUE_MARK) == 0)
        value = ps->long_value;

    // inih passes an indented line as another value of the previous key; one key
    // silently taking the last of several lines would surprise, so refuse it.
    bool continued = (ps->line[0] == ' ' || ps->line[0] == '\t') &&
                     strcmp(ps->section, ps->prev_section) == 0 && strcmp(name, ps->prev_key) == 0;
    snprintf(ps->prev_section, sizeof(ps->prev_section), "%s", ps->section);
    snprintf(ps->prev_key, sizeof(ps->prev_key), "%s", name);
    if (continued) {
        cf_parse_fail(ps, "indented line continues \"%s\"; write each key on one unindented line",
                      name);
        return 0;
    }

    char *v = cf_unquote(value);
    if (!v)
        cf_parse_fail(ps, "out of memory");
    else
        cf_on_pair(ps, ps->section, name, v);
    cf_free_secret(v);
    return ps->err_line ? 0 : 1;
}

static int cf_load_file(hk_config_t *cfg, const char *path, char *errstr, size_t errstr_size)
{
    cf_parse_t ps = {.cfg = cfg, .endpoint = -1, .errstr = errstr, .errstr_size = errstr_size};
    ps.fp = fopen(path, "r");
    if (!ps.fp) {
        hk_err_set(errstr, errstr_size, "cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(cf_read_line, &ps, cf_on_ini_pair, &ps);
    if (ferror(ps.fp) && !ps.err_line) {
        hk_err_set(errstr, errstr_size, "cannot read config file %s: %s", path, strerror(errno));
        ps.err_line = -1;
    } else if (rc > 0 && (ps.err_line == 0 || rc < ps.err_line)) {
        // inih found a line that is neither [section], key = value nor a comment.
        hk_err_set(errstr, errstr_size,
                   "config line %d: expected [section], key = value or a # comment", rc);
        ps.err_line = rc;
    } else if (rc < 0 && !ps.err_line) {
        hk_err_set(errstr, errstr_size, "cannot parse config file %s: out of memory", path);
        ps.err_line = -1;
    }
    fclose(ps.fp);
    if (ps.line) {
        OPENSSL_cleanse(ps.line, ps.line_cap);
        free(ps.line);
    }
    cf_free_secret(ps.long_value);
    return ps.err_line ? -1 : 0;
}

// ---- environment ----

static const char *cf_env_get(char *const *envp, const char *name)
{
    size_t len = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
            return *envp + len + 1;
    return NULL;
}

// HOOKD_<SECTION>_<KEY>, upper case: delivery.allow_cidrs -> HOOKD_DELIVERY_ALLOW_CIDRS.
static void cf_env_name(const cf_row_t *row, char *name, size_t name_size)
{
    snprintf(name, name_size, "HOOKD_%s_%s", row->section, row->key);
    for (char *c = name; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
}

static int cf_load_env(hk_config_t *cfg, char *const *envp, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < CF_ROWS_CNT; i++) {
        char name[128];
        cf_env_name(&cf_rows[i], name, sizeof(name));
        const char *value = cf_env_get(envp, name);
        char where[160];
        snprintf(where, sizeof(where), "env %s", name);
        if (value && cf_set(cfg, &cf_rows[i], NULL, value, where, errstr, errstr_size) != 0)
            return -1;
    }
    return 0;
}

// ---- after loading ----

static int cf_derive_topic(char **field, const char *topic, const char *suffix)
{
    if ((*field)[0] != '\0')
        return 0;
    size_t len = strlen(topic) + strlen(suffix) + 1;
    char *s = malloc(len);
    if (!s)
        return -1;
    snprintf(s, len, "%s%s", topic, suffix);
    free(*field);
    *field = s;
    return 0;
}

static int cf_finish(hk_config_t *cfg, char *errstr, size_t errstr_size)
{
    if (cf_derive_topic(&cfg->kafka_dlq_topic, cfg->kafka_topic, ".dlq") != 0 ||
        cf_derive_topic(&cfg->kafka_retry_topic, cfg->kafka_topic, ".retry") != 0) {
        hk_err_set(errstr, errstr_size, "config: out of memory");
        return -1;
    }
    char why[128];
    if (!cf_check_topic(cfg->kafka_dlq_topic, why, sizeof(why)) ||
        !cf_check_topic(cfg->kafka_retry_topic, why, sizeof(why))) {
        hk_err_set(errstr, errstr_size,
                   "config: kafka.topic \"%s\" is too long to derive the dlq and retry topic names "
                   "from; set kafka.dlq_topic and kafka.retry_topic",
                   cfg->kafka_topic);
        return -1;
    }
    const char *same = strcmp(cfg->kafka_dlq_topic, cfg->kafka_topic) == 0     ? "kafka.dlq_topic"
                       : strcmp(cfg->kafka_retry_topic, cfg->kafka_topic) == 0 ? "kafka.retry_topic"
                                                                               : NULL;
    if (same) {
        hk_err_set(errstr, errstr_size, "config: %s must differ from kafka.topic (\"%s\")", same,
                   cfg->kafka_topic);
        return -1;
    }
    if (strcmp(cfg->kafka_dlq_topic, cfg->kafka_retry_topic) == 0) {
        hk_err_set(errstr, errstr_size,
                   "config: kafka.dlq_topic and kafka.retry_topic must differ (both \"%s\")",
                   cfg->kafka_dlq_topic);
        return -1;
    }
    for (size_t i = 0; i < sizeof(cf_order_rules) / sizeof(cf_order_rules[0]); i++) {
        const cf_row_t *lo = cf_find_dotted(cf_order_rules[i].lo);
        const cf_row_t *hi = cf_find_dotted(cf_order_rules[i].hi);
        assert(lo && hi && (lo->type == CF_INT || lo->type == CF_INT64) &&
               (hi->type == CF_INT || hi->type == CF_INT64));
        if (cf_get_integer(cfg, lo) > cf_get_integer(cfg, hi)) {
            hk_err_set(errstr, errstr_size, "config: %s (%lld) must not exceed %s (%lld)",
                       cf_order_rules[i].lo, (long long)cf_get_integer(cfg, lo),
                       cf_order_rules[i].hi, (long long)cf_get_integer(cfg, hi));
            return -1;
        }
    }
    // The admin API off loopback needs a token. Addresses are judged here when
    // they are literals (hookd judges the resolved address again when it binds).
    if (cfg->admin_listen[0] && !cfg->admin_token[0] &&
        !cf_listen_maybe_loopback(cfg->admin_listen)) {
        hk_err_set(errstr, errstr_size, "config: admin.listen %s is not loopback: set admin.token",
                   cfg->admin_listen);
        return -1;
    }
    return 0;
}

// ---- public ----

hk_config_t *hk_config_load(const char *path, char *const *envp, char *errstr, size_t errstr_size)
{
    char scratch[1];
    if (errstr == NULL || errstr_size == 0) {
        errstr = scratch;
        errstr_size = sizeof(scratch);
    }
    errstr[0] = '\0';

    hk_config_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        hk_err_set(errstr, errstr_size, "config: out of memory");
        return NULL;
    }
    if (cf_set_defaults(cfg, cf_rows, CF_ROWS_CNT, errstr, errstr_size) != 0)
        goto fail;
    if (path && cf_load_file(cfg, path, errstr, errstr_size) != 0)
        goto fail;
    if (cf_load_env(cfg, envp, errstr, errstr_size) != 0)
        goto fail;
    if (cf_finish(cfg, errstr, errstr_size) != 0)
        goto fail;
    return cfg;
fail:
    hk_config_destroy(cfg);
    return NULL;
}

void hk_config_destroy(hk_config_t *cfg)
{
    if (!cfg)
        return;
    cf_free_fields(cfg, cf_rows, CF_ROWS_CNT);
    cf_kv_free(cfg->kafka_props, cfg->kafka_props_cnt);
    cf_kv_free(cfg->tenant_secrets, cfg->tenant_secrets_cnt);
    for (size_t i = 0; i < cfg->endpoints_cnt; i++) {
        cf_free_fields(&cfg->endpoints[i], cf_endpoint_rows, CF_ENDPOINT_ROWS_CNT);
        free(cfg->endpoints[i].endpoint);
    }
    free(cfg->endpoints);
    free(cfg);
}

// Quoted when inih would not read it back as is: empty, surrounding spaces, quotes,
// an inline comment.
static void cf_dump_value(FILE *out, const char *value)
{
    size_t len = strlen(value);
    bool quote = len == 0 || strchr(" \t\"", value[0]) || strchr(" \t\"", value[len - 1]) ||
                 strstr(value, " ;") || strstr(value, "\t;");
    fprintf(out, quote ? "\"%s\"\n" : "%s\n", value);
}

static void cf_dump_row(FILE *out, const void *base, const cf_row_t *row)
{
    fprintf(out, "%s = ", row->key);
    char num[32], name[128];
    snprintf(name, sizeof(name), "%s.%s", row->section, row->key);
    if (row->type == CF_STR && cf_name_is_secret(name)) {
        cf_dump_value(out, cf_get_str(base, row)[0] != '\0' ? "<redacted>" : "");
        return;
    }
    switch (row->type) {
    case CF_INT:
        fprintf(out, "%d\n", cf_get_int(base, row));
        break;
    case CF_INT64:
        fprintf(out, "%lld\n", (long long)cf_get_int64(base, row));
        break;
    case CF_DOUBLE:
        cf_format_double(num, sizeof(num), cf_get_double(base, row));
        fprintf(out, "%s\n", num);
        break;
    case CF_BOOL:
        fprintf(out, "%s\n", cf_get_int(base, row) ? "true" : "false");
        break;
    case CF_SECRET:
        cf_dump_value(out, cf_get_str(base, row)[0] != '\0' ? "<redacted>" : "");
        break;
    case CF_STR:
    case CF_MS_LIST:
        cf_dump_value(out, cf_get_str(base, row));
        break;
    case CF_ENUM:
        cf_dump_value(out, cf_enum_name(base, row));
        break;
    }
}

void hk_config_dump(const hk_config_t *cfg, FILE *out)
{
    const char *section = NULL;
    for (size_t i = 0; i < CF_ROWS_CNT; i++) {
        const cf_row_t *row = &cf_rows[i];
        if (!section || strcmp(section, row->section) != 0) {
            // The pass-through properties close the [kafka] section.
            if (section && strcmp(section, "kafka") == 0) {
                for (size_t j = 0; j < cfg->kafka_props_cnt; j++) {
                    const hk_kv_t *kv = &cfg->kafka_props[j];
                    char name[512];
                    snprintf(name, sizeof(name), "rdkafka.%s", kv->key);
                    fprintf(out, "%s = ", name);
                    cf_dump_value(out, cf_name_is_secret(name) ? "<redacted>" : kv->value);
                }
            }
            section = row->section;
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
        }
        cf_dump_row(out, cfg, row);
    }
    for (size_t j = 0; j < cfg->tenant_secrets_cnt; j++) {
        const hk_kv_t *kv = &cfg->tenant_secrets[j];
        fprintf(out, "\n[tenant \"%s\"]\nsecret = ", kv->key);
        cf_dump_value(out, kv->value[0] ? "<redacted>" : "");
    }
    for (size_t j = 0; j < cfg->endpoints_cnt; j++) {
        fprintf(out, "\n[endpoint \"%s\"]\n", cfg->endpoints[j].endpoint);
        for (size_t i = 0; i < CF_ENDPOINT_ROWS_CNT; i++)
            cf_dump_row(out, &cfg->endpoints[j], &cf_endpoint_rows[i]);
    }
}

int hk_config_tenant_known(const hk_config_t *cfg, const char *tenant)
{
    if (cfg->tenant_secrets_cnt == 0 || cfg->signing_unknown_tenant == HK_UNKNOWN_TENANT_DEFAULT)
        return 1;
    if (!tenant || strcmp(tenant, HK_CONFIG_DEFAULT_TENANT) == 0)
        return 1;
    for (size_t i = 0; i < cfg->tenant_secrets_cnt; i++)
        if (strcmp(cfg->tenant_secrets[i].key, tenant) == 0)
            return 1;
    return 0;
}

const char *hk_config_tenant_secret(const hk_config_t *cfg, const char *tenant)
{
    for (size_t i = 0; tenant && i < cfg->tenant_secrets_cnt; i++)
        if (strcmp(cfg->tenant_secrets[i].key, tenant) == 0)
            return cfg->tenant_secrets[i].value;
    return cfg->signing_secret;
}

const hk_endpoint_conf_t *hk_config_endpoint(const hk_config_t *cfg, const char *endpoint)
{
    for (size_t i = 0; endpoint && i < cfg->endpoints_cnt; i++)
        if (strcmp(cfg->endpoints[i].endpoint, endpoint) == 0)
            return &cfg->endpoints[i];
    return NULL;
}

// The first key of `a` that `b` lacks or holds with another value.
static const hk_kv_t *cf_kv_first_change(const hk_kv_t *a, size_t a_cnt, const hk_kv_t *b,
                                         size_t b_cnt)
{
    for (size_t i = 0; i < a_cnt; i++) {
        size_t j = 0;
        while (j < b_cnt && strcmp(a[i].key, b[j].key) != 0)
            j++;
        if (j == b_cnt || strcmp(a[i].value, b[j].value) != 0)
            return &a[i];
    }
    return NULL;
}

// The first non-reloadable endpoint key whose value differs between `a` and `b`; an
// endpoint without a section has the defaults in `def`. NULL: none. With every row
// of cf_endpoint_rows reloadable, as today, always NULL.
static const cf_row_t *cf_endpoint_first_change(const hk_config_t *a, const hk_config_t *b,
                                                const hk_endpoint_conf_t *def,
                                                const char **endpoint)
{
    for (int pass = 0; pass < 2; pass++) {
        const hk_config_t *x = pass ? b : a, *y = pass ? a : b;
        for (size_t i = 0; i < x->endpoints_cnt; i++) {
            const hk_endpoint_conf_t *ex = &x->endpoints[i];
            const hk_endpoint_conf_t *ey = hk_config_endpoint(y, ex->endpoint);
            for (size_t r = 0; r < CF_ENDPOINT_ROWS_CNT; r++) {
                const cf_row_t *row = &cf_endpoint_rows[r];
                if (row->reload == CF_NO_RELOAD && !cf_row_equal(ex, ey ? ey : def, row)) {
                    *endpoint = ex->endpoint;
                    return row;
                }
            }
        }
    }
    return NULL;
}

int hk_config_reloadable_diff(const hk_config_t *old, const hk_config_t *new, char *errstr,
                              size_t errstr_size)
{
    const char *tail = "cannot be changed by a reload; restart hookd to apply it";
    for (size_t i = 0; i < CF_ROWS_CNT; i++) {
        const cf_row_t *row = &cf_rows[i];
        if (row->reload == CF_NO_RELOAD && !cf_row_equal(old, new, row)) {
            hk_err_set(errstr, errstr_size, "%s.%s %s", row->section, row->key, tail);
            return -1;
        }
    }
    const hk_kv_t *kv = cf_kv_first_change(old->kafka_props, old->kafka_props_cnt, new->kafka_props,
                                           new->kafka_props_cnt);
    if (!kv)
        kv = cf_kv_first_change(new->kafka_props, new->kafka_props_cnt, old->kafka_props,
                                old->kafka_props_cnt);
    if (kv) {
        hk_err_set(errstr, errstr_size, "kafka.rdkafka.%s %s", kv->key, tail);
        return -1;
    }
    kv = cf_kv_first_change(old->tenant_secrets, old->tenant_secrets_cnt, new->tenant_secrets,
                            new->tenant_secrets_cnt);
    if (!kv)
        kv = cf_kv_first_change(new->tenant_secrets, new->tenant_secrets_cnt, old->tenant_secrets,
                                old->tenant_secrets_cnt);
    if (kv) {
        hk_err_set(errstr, errstr_size, "[tenant \"%s\"] secret %s", kv->key, tail);
        return -1;
    }

    hk_endpoint_conf_t def = {0};
    if (cf_set_defaults(&def, cf_endpoint_rows, CF_ENDPOINT_ROWS_CNT, errstr, errstr_size) != 0) {
        cf_free_fields(&def, cf_endpoint_rows, CF_ENDPOINT_ROWS_CNT);
        return -1;
    }
    const char *endpoint = NULL;
    const cf_row_t *row = cf_endpoint_first_change(old, new, &def, &endpoint);
    cf_free_fields(&def, cf_endpoint_rows, CF_ENDPOINT_ROWS_CNT);
    if (row) {
        hk_err_set(errstr, errstr_size, "[endpoint \"%s\"] %s %s", endpoint, row->key, tail);
        return -1;
    }
    return 0;
}
