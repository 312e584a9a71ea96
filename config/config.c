// config: every key hookd reads is one row of cf_rows below. Defaults, the file, the
// environment, the dump and the reload check all walk that table, so adding a key
// means one field in hk_config_t and one row here. Besides the table, [kafka]
// rdkafka.<prop> keys and [tenant "<name>"] sections are free-form lists.
//
// inih reads the file through cf_read_line, which counts lines (inih's handler does
// not get them in Debian's build) and lets values longer than inih's line buffer
// through, so a signing secret list of any length fits on one line.
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef enum cf_type {
    CF_INT,    // int field
    CF_INT64,  // int64_t field
    CF_STR,    // char * field
    CF_SECRET, // char * field, never printed
} cf_type_t;

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
    size_t offset; // of the field in hk_config_t
    const char *def;
    int64_t min; // integers only
    int64_t max;
    cf_reload_t reload;
    cf_check_fn check; // strings only; NULL: any value
} cf_row_t;

static bool cf_check_nonempty(const char *value, char *why, size_t why_size);
static bool cf_check_topic(const char *value, char *why, size_t why_size);
static bool cf_check_topic_or_empty(const char *value, char *why, size_t why_size);
static bool cf_check_cidrs(const char *value, char *why, size_t why_size);
static bool cf_check_secrets(const char *value, char *why, size_t why_size);
static bool cf_check_log_level(const char *value, char *why, size_t why_size);
static bool cf_check_listen(const char *value, char *why, size_t why_size);

// offsetof(hk_config_t, field), refusing to compile unless the field has type T, so a
// row cannot point an int parser at an int64_t field.
#define CF_FIELD(field, T)                                                                         \
    (offsetof(hk_config_t, field) + 0 * sizeof(_Generic(((hk_config_t *)0)->field, T : 1)))

#define CF_INT_ROW(sec, key, field, unit, def, min, max, reload)                                   \
    {                                                                                              \
        sec, key, CF_INT, unit, CF_FIELD(field, int), def, min, max, reload, NULL                  \
    }
#define CF_INT64_ROW(sec, key, field, unit, def, min, max, reload)                                 \
    {                                                                                              \
        sec, key, CF_INT64, unit, CF_FIELD(field, int64_t), def, min, max, reload, NULL            \
    }
#define CF_STR_ROW(sec, key, field, def, reload, check)                                            \
    {                                                                                              \
        sec, key, CF_STR, CF_PLAIN, CF_FIELD(field, char *), def, 0, 0, reload, check              \
    }
#define CF_SECRET_ROW(sec, key, field, def, reload, check)                                         \
    {                                                                                              \
        sec, key, CF_SECRET, CF_PLAIN, CF_FIELD(field, char *), def, 0, 0, reload, check           \
    }

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

    CF_INT_ROW("delivery", "threads", delivery_threads, CF_PLAIN, "2", 1, 256, CF_NO_RELOAD),
    CF_INT_ROW("delivery", "max_transfers_per_thread", delivery_max_transfers_per_thread, CF_PLAIN,
               "64", 1, 4096, CF_NO_RELOAD),
    CF_INT_ROW("delivery", "timeout_ms", delivery_timeout_ms, CF_MS, "10000", 100, 120000,
               CF_NO_RELOAD),
    CF_INT_ROW("delivery", "connect_timeout_ms", delivery_connect_timeout_ms, CF_MS, "5000", 10,
               120000, CF_NO_RELOAD),
    CF_INT64_ROW("delivery", "max_response_bytes", delivery_max_response_bytes, CF_BYTES, "65536",
                 0, 16777216, CF_NO_RELOAD),
    CF_STR_ROW("delivery", "allow_cidrs", delivery_allow_cidrs, "", CF_NO_RELOAD, cf_check_cidrs),

    CF_SECRET_ROW("signing", "secret", signing_secret, "", CF_NO_RELOAD, cf_check_secrets),

    CF_INT64_ROW("limits", "max_job_bytes", limits_max_job_bytes, CF_BYTES, "1048576", 1024,
                 67108864, CF_RELOAD),
    CF_INT_ROW("limits", "max_inflight_jobs", limits_max_inflight_jobs, CF_PLAIN, "10000", 1,
               10000000, CF_RELOAD),
    CF_INT64_ROW("limits", "max_inflight_bytes", limits_max_inflight_bytes, CF_BYTES, "268435456",
                 1048576, INT64_C(68719476736), CF_RELOAD),
    CF_INT_ROW("limits", "max_partition_span", limits_max_partition_span, CF_PLAIN, "20000", 1,
               10000000, CF_RELOAD),

    CF_INT_ROW("retry", "max_attempts", retry_max_attempts, CF_PLAIN, "10", 1, 100, CF_RELOAD),

    CF_STR_ROW("log", "level", log_level, "info", CF_RELOAD, cf_check_log_level),
    CF_INT_ROW("log", "summary_ms", log_summary_ms, CF_MS, "5000", 0, 3600000, CF_RELOAD),

    CF_INT_ROW("shutdown", "grace_ms", shutdown_grace_ms, CF_MS, "10000", 0, 600000, CF_RELOAD),

    CF_STR_ROW("admin", "listen", admin_listen, "127.0.0.1:9464", CF_NO_RELOAD, cf_check_listen),
};

#define CF_ROWS_CNT (sizeof(cf_rows) / sizeof(cf_rows[0]))

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

static const char *const cf_log_levels[] = {"debug", "info", "warn", "error"};

// rdkafka.<prop> names whose values are credentials: the dump hides them.
static const char *const cf_secret_prop_words[] = {"password", "secret", "key.pem",
                                                   "oauthbearer.config"};

#define CF_TENANT_PREFIX "tenant \""

// A value from a file line too long for inih is handed to inih as this marker and
// read back from cf_parse_t.long_value.
#define CF_LONG_VALUE_MARK "\x01"

__attribute__((format(printf, 3, 4))) static void cf_errf(char *errstr, size_t errstr_size,
                                                          const char *fmt, ...)
{
    if (errstr == NULL || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

static int *cf_int(hk_config_t *cfg, const cf_row_t *row)
{
    return (int *)((char *)cfg + row->offset);
}

static int64_t *cf_int64(hk_config_t *cfg, const cf_row_t *row)
{
    return (int64_t *)((char *)cfg + row->offset);
}

static char **cf_str(hk_config_t *cfg, const cf_row_t *row)
{
    return (char **)((char *)cfg + row->offset);
}

static int cf_get_int(const hk_config_t *cfg, const cf_row_t *row)
{
    return *(const int *)((const char *)cfg + row->offset);
}

static int64_t cf_get_int64(const hk_config_t *cfg, const cf_row_t *row)
{
    return *(const int64_t *)((const char *)cfg + row->offset);
}

static const char *cf_get_str(const hk_config_t *cfg, const cf_row_t *row)
{
    const char *s = *(char *const *)((const char *)cfg + row->offset);
    return s ? s : "";
}

static const cf_row_t *cf_find(const char *section, const char *key)
{
    for (size_t i = 0; i < CF_ROWS_CNT; i++)
        if (strcmp(cf_rows[i].section, section) == 0 && strcmp(cf_rows[i].key, key) == 0)
            return &cf_rows[i];
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

static bool cf_prop_is_secret(const char *name)
{
    for (size_t i = 0; i < sizeof(cf_secret_prop_words) / sizeof(cf_secret_prop_words[0]); i++)
        if (strcasestr(name, cf_secret_prop_words[i]))
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

static int cf_base64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

// Decoded length of canonical padded standard base64 (RFC 4648 section 4: '=' only
// at the end, unused trailing bits zero), or -1. As strict as sign.c's decoder.
static long cf_base64_len(const char *s, size_t n)
{
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t pad = 0;
    if (s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < n - pad; i++)
        if (cf_base64_value(s[i]) < 0)
            return -1;
    int last = pad ? cf_base64_value(s[n - 1 - pad]) : 0;
    if ((pad == 1 && (last & 0x3)) || (pad == 2 && (last & 0xf)))
        return -1;
    return (long)(n / 4 * 3 - pad);
}

static bool cf_check_nonempty(const char *value, char *why, size_t why_size)
{
    if (value[0] != '\0')
        return true;
    cf_errf(why, why_size, "must not be empty");
    return false;
}

static bool cf_check_topic(const char *value, char *why, size_t why_size)
{
    size_t len = strlen(value);
    bool ok =
        len >= 1 && len <= 249 && strcmp(value, ".") != 0 && strcmp(value, "..") != 0 &&
        strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
    if (!ok)
        cf_errf(why, why_size, "must be a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)");
    return ok;
}

static bool cf_check_topic_or_empty(const char *value, char *why, size_t why_size)
{
    return value[0] == '\0' || cf_check_topic(value, why, why_size);
}

// One allow_cidrs entry: an IPv4 or IPv6 address, optionally /prefix (1 to 3 digits),
// host bits zero: the rules of hk_netguard_new(), checked here to name the line.
static bool cf_cidr_ok(const char *p, size_t len)
{
    char tok[INET6_ADDRSTRLEN + 8];
    if (len >= sizeof(tok))
        return false;
    memcpy(tok, p, len);
    tok[len] = '\0';
    char *slash = strchr(tok, '/');
    if (slash)
        *slash = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    int64_t max = inet_pton(AF_INET, tok, addr) == 1    ? 32
                  : inet_pton(AF_INET6, tok, addr) == 1 ? 128
                                                        : -1;
    int64_t prefix = max;
    if (max < 0 || (slash && (strlen(slash + 1) > 3 ||
                              !cf_parse_integer(slash + 1, CF_PLAIN, &prefix) || prefix > max)))
        return false;
    for (int64_t bit = prefix; bit < max; bit++)
        if (addr[bit / 8] & (0x80 >> (bit % 8)))
            return false;
    return true;
}

// Entries separated by commas and/or spaces, as hk_netguard_new() takes them.
static bool cf_check_cidrs(const char *value, char *why, size_t why_size)
{
    const char *sep = ", \t";
    for (const char *p = value + strspn(value, sep); *p; p += strspn(p, sep)) {
        size_t len = strcspn(p, sep);
        if (!cf_cidr_ok(p, len)) {
            cf_errf(why, why_size,
                    "must be CIDRs such as 10.0.0.0/8 or ::1/128 (host bits zero), separated by "
                    "commas or spaces");
            return false;
        }
        p += len;
    }
    return true;
}

// "" (signing off) or whsec_<base64 of 16..64 bytes>, several separated by spaces
// during rotation. The message says which one is wrong and how, never what it is.
static bool cf_check_secrets(const char *value, char *why, size_t why_size)
{
    const char *sep = " \t";
    size_t total = 0;
    for (const char *p = value + strspn(value, sep); *p; p += strspn(p, sep)) {
        p += strcspn(p, sep);
        total++;
    }
    size_t nth = 0;
    for (const char *p = value + strspn(value, sep); *p; p += strspn(p, sep)) {
        size_t len = strcspn(p, sep);
        nth++;
        char problem[64] = "";
        long bytes;
        if (len < 6 || strncmp(p, "whsec_", 6) != 0)
            snprintf(problem, sizeof(problem), "does not start with whsec_");
        else if ((bytes = cf_base64_len(p + 6, len - 6)) < 0)
            snprintf(problem, sizeof(problem), "is not canonical padded base64 after whsec_");
        else if (bytes < 16 || bytes > 64)
            snprintf(problem, sizeof(problem), "decodes to %ld bytes", bytes);
        if (problem[0]) {
            cf_errf(why, why_size,
                    "must be whsec_<base64 of 16 to 64 bytes>, several separated by spaces; "
                    "secret %zu of %zu %s (secrets are not shown)",
                    nth, total, problem);
            return false;
        }
        p += len;
    }
    return true;
}

static bool cf_check_log_level(const char *value, char *why, size_t why_size)
{
    for (size_t i = 0; i < sizeof(cf_log_levels) / sizeof(cf_log_levels[0]); i++)
        if (strcmp(value, cf_log_levels[i]) == 0)
            return true;
    cf_errf(why, why_size, "must be one of debug, info, warn, error");
    return false;
}

// "" (admin server off), host:port or [v6 address]:port.
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
    if (!ok || !cf_parse_integer(colon + 1, CF_PLAIN, &port) || port < 1 || port > 65535) {
        cf_errf(why, why_size, "must be host:port (port 1 to 65535), or empty to turn it off");
        return false;
    }
    return true;
}

// Parses `value` for `row` and stores it in cfg. `where` starts the error message:
// "config line 12", "env HOOKD_DELIVERY_THREADS".
static int cf_set(hk_config_t *cfg, const cf_row_t *row, const char *value, const char *where,
                  char *errstr, size_t errstr_size)
{
    if (row->type == CF_INT || row->type == CF_INT64) {
        int64_t v;
        if (!cf_parse_integer(value, row->unit, &v) || v < row->min || v > row->max) {
            cf_errf(errstr, errstr_size, "%s: %s.%s must be between %lld and %lld, got \"%s\"",
                    where, row->section, row->key, (long long)row->min, (long long)row->max, value);
            return -1;
        }
        if (row->type == CF_INT)
            *cf_int(cfg, row) = (int)v;
        else
            *cf_int64(cfg, row) = v;
        return 0;
    }

    char why[256];
    if (row->check && !row->check(value, why, sizeof(why))) {
        if (row->type == CF_SECRET)
            cf_errf(errstr, errstr_size, "%s: %s.%s %s", where, row->section, row->key, why);
        else
            cf_errf(errstr, errstr_size, "%s: %s.%s %s, got \"%s\"", where, row->section, row->key,
                    why, value);
        return -1;
    }
    char *copy = strdup(value);
    if (!copy) {
        cf_errf(errstr, errstr_size, "%s: out of memory", where);
        return -1;
    }
    char **field = cf_str(cfg, row);
    if (row->type == CF_SECRET)
        cf_free_secret(*field);
    else
        free(*field);
    *field = copy;
    return 0;
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

// ---- the file ----

typedef struct cf_parse {
    hk_config_t *cfg;
    FILE *fp;
    int lineno; // of the line last handed to inih
    char *line; // that line as read (getline buffer)
    size_t line_cap;
    char *long_value;       // value of that line when it was too long for inih, else NULL
    char prev_section[256]; // section and key of the previous handler call
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
    if (*p == '[' || sep == NULL || sep - p > num / 2) {
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
// number of everything inih reports until the next call.
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

// `[tenant "acme"]` -> "acme" in name; false if section is not a tenant section.
static bool cf_tenant_name(const char *section, char *name, size_t name_size)
{
    size_t plen = strlen(CF_TENANT_PREFIX);
    if (strncmp(section, CF_TENANT_PREFIX, plen) != 0)
        return false;
    const char *start = section + plen;
    size_t len = strlen(start);
    if (len < 2 || start[len - 1] != '"' || memchr(start, '"', len - 1) || len > name_size)
        return false;
    memcpy(name, start, len - 1);
    name[len - 1] = '\0';
    return true;
}

static void cf_on_pair(cf_parse_t *ps, const char *section, const char *name, const char *value)
{
    hk_config_t *cfg = ps->cfg;
    char tenant[256];

    if (section[0] == '\0') {
        cf_parse_fail(ps, "key \"%s\" must be inside a [section]", name);
    } else if (cf_tenant_name(section, tenant, sizeof(tenant))) {
        char why[256];
        if (strcmp(name, "secret") != 0)
            cf_parse_fail(ps, "unknown key \"%s\" in [%s]", name, section);
        else if (!cf_check_secrets(value, why, sizeof(why)))
            cf_parse_fail(ps, "[%s] secret %s", section, why);
        else if (cf_kv_set(&cfg->tenant_secrets, &cfg->tenant_secrets_cnt, tenant, value) != 0)
            cf_parse_fail(ps, "out of memory");
    } else if (strncmp(section, "tenant", 6) == 0 && (section[6] == '\0' || section[6] == ' ')) {
        cf_parse_fail(ps, "section [%s] must be written [tenant \"<name>\"]", section);
    } else if (strcmp(section, "kafka") == 0 && strncmp(name, "rdkafka.", 8) == 0) {
        if (name[8] == '\0')
            cf_parse_fail(ps, "rdkafka. needs a librdkafka property name after it");
        else if (cf_kv_set(&cfg->kafka_props, &cfg->kafka_props_cnt, name + 8, value) != 0)
            cf_parse_fail(ps, "out of memory");
    } else {
        const cf_row_t *row = cf_find(section, name);
        char where[32];
        snprintf(where, sizeof(where), "config line %d", ps->lineno);
        if (row == NULL && cf_section_known(section))
            cf_parse_fail(ps, "unknown key \"%s\" in [%s]", name, section);
        else if (row == NULL)
            cf_parse_fail(ps, "unknown section [%s]", section);
        else if (cf_set(cfg, row, value, where, ps->errstr, ps->errstr_size) != 0)
            ps->err_line = ps->lineno;
    }
}

static int cf_on_ini_pair(void *user, const char *section, const char *name, const char *value)
{
    cf_parse_t *ps = user;
    if (ps->err_line)
        return 1; // only the first error is reported
    if (ps->long_value && strcmp(value, CF_LONG_VALUE_MARK) == 0)
        value = ps->long_value;

    // inih passes an indented line as another value of the previous key; one key
    // silently taking the last of several lines would surprise, so refuse it.
    bool continued = (ps->line[0] == ' ' || ps->line[0] == '\t') &&
                     strcmp(section, ps->prev_section) == 0 && strcmp(name, ps->prev_key) == 0;
    snprintf(ps->prev_section, sizeof(ps->prev_section), "%s", section);
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
        cf_on_pair(ps, section, name, v);
    cf_free_secret(v);
    return ps->err_line ? 0 : 1;
}

static int cf_load_file(hk_config_t *cfg, const char *path, char *errstr, size_t errstr_size)
{
    cf_parse_t ps = {.cfg = cfg, .errstr = errstr, .errstr_size = errstr_size};
    ps.fp = fopen(path, "r");
    if (!ps.fp) {
        cf_errf(errstr, errstr_size, "cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(cf_read_line, &ps, cf_on_ini_pair, &ps);
    if (ferror(ps.fp) && !ps.err_line) {
        cf_errf(errstr, errstr_size, "cannot read config file %s: %s", path, strerror(errno));
        ps.err_line = -1;
    } else if (rc > 0 && (ps.err_line == 0 || rc < ps.err_line)) {
        // inih found a line that is neither [section], key = value nor a comment.
        cf_errf(errstr, errstr_size,
                "config line %d: expected [section], key = value or a # comment", rc);
        ps.err_line = rc;
    } else if (rc < 0 && !ps.err_line) {
        cf_errf(errstr, errstr_size, "cannot parse config file %s: out of memory", path);
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
        if (value && cf_set(cfg, &cf_rows[i], value, where, errstr, errstr_size) != 0)
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
        cf_errf(errstr, errstr_size, "config: out of memory");
        return -1;
    }
    char why[128];
    if (!cf_check_topic(cfg->kafka_dlq_topic, why, sizeof(why)) ||
        !cf_check_topic(cfg->kafka_retry_topic, why, sizeof(why))) {
        cf_errf(errstr, errstr_size,
                "config: kafka.topic \"%s\" is too long to derive the dlq and retry topic names "
                "from; set kafka.dlq_topic and kafka.retry_topic",
                cfg->kafka_topic);
        return -1;
    }
    const char *same = strcmp(cfg->kafka_dlq_topic, cfg->kafka_topic) == 0     ? "kafka.dlq_topic"
                       : strcmp(cfg->kafka_retry_topic, cfg->kafka_topic) == 0 ? "kafka.retry_topic"
                                                                               : NULL;
    if (same) {
        cf_errf(errstr, errstr_size, "config: %s must differ from kafka.topic (\"%s\")", same,
                cfg->kafka_topic);
        return -1;
    }
    if (strcmp(cfg->kafka_dlq_topic, cfg->kafka_retry_topic) == 0) {
        cf_errf(errstr, errstr_size,
                "config: kafka.dlq_topic and kafka.retry_topic must differ (both \"%s\")",
                cfg->kafka_dlq_topic);
        return -1;
    }
    // A job that may be as large as max_job_bytes must fit under the in-flight cap,
    // or intake would pause forever on it.
    if (cfg->limits_max_job_bytes > cfg->limits_max_inflight_bytes) {
        cf_errf(errstr, errstr_size,
                "config: limits.max_job_bytes (%lld) must not exceed limits.max_inflight_bytes "
                "(%lld)",
                (long long)cfg->limits_max_job_bytes, (long long)cfg->limits_max_inflight_bytes);
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
        cf_errf(errstr, errstr_size, "config: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < CF_ROWS_CNT; i++) {
        if (cf_set(cfg, &cf_rows[i], cf_rows[i].def, "default", errstr, errstr_size) != 0)
            goto fail;
    }
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
    for (size_t i = 0; i < CF_ROWS_CNT; i++) {
        const cf_row_t *row = &cf_rows[i];
        if (row->type == CF_SECRET)
            cf_free_secret(*cf_str(cfg, row));
        else if (row->type == CF_STR)
            free(*cf_str(cfg, row));
    }
    cf_kv_free(cfg->kafka_props, cfg->kafka_props_cnt);
    cf_kv_free(cfg->tenant_secrets, cfg->tenant_secrets_cnt);
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
                    fprintf(out, "rdkafka.%s = ", kv->key);
                    cf_dump_value(out, cf_prop_is_secret(kv->key) ? "<redacted>" : kv->value);
                }
            }
            section = row->section;
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
        }
        fprintf(out, "%s = ", row->key);
        if (row->type == CF_INT)
            fprintf(out, "%d\n", cf_get_int(cfg, row));
        else if (row->type == CF_INT64)
            fprintf(out, "%lld\n", (long long)cf_get_int64(cfg, row));
        else if (row->type == CF_SECRET && cf_get_str(cfg, row)[0] != '\0')
            cf_dump_value(out, "<redacted>");
        else
            cf_dump_value(out, cf_get_str(cfg, row));
    }
    for (size_t j = 0; j < cfg->tenant_secrets_cnt; j++) {
        const hk_kv_t *kv = &cfg->tenant_secrets[j];
        fprintf(out, "\n[tenant \"%s\"]\nsecret = ", kv->key);
        cf_dump_value(out, kv->value[0] ? "<redacted>" : "");
    }
}

const char *hk_config_tenant_secret(const hk_config_t *cfg, const char *tenant)
{
    for (size_t i = 0; tenant && i < cfg->tenant_secrets_cnt; i++)
        if (strcmp(cfg->tenant_secrets[i].key, tenant) == 0)
            return cfg->tenant_secrets[i].value;
    return cfg->signing_secret;
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

int hk_config_reloadable_diff(const hk_config_t *old, const hk_config_t *new, char *errstr,
                              size_t errstr_size)
{
    const char *tail = "cannot be changed by a reload; restart hookd to apply it";
    for (size_t i = 0; i < CF_ROWS_CNT; i++) {
        const cf_row_t *row = &cf_rows[i];
        if (row->reload == CF_RELOAD)
            continue;
        bool same = row->type == CF_INT ? cf_get_int(old, row) == cf_get_int(new, row)
                    : row->type == CF_INT64
                        ? cf_get_int64(old, row) == cf_get_int64(new, row)
                        : strcmp(cf_get_str(old, row), cf_get_str(new, row)) == 0;
        if (!same) {
            cf_errf(errstr, errstr_size, "%s.%s %s", row->section, row->key, tail);
            return -1;
        }
    }
    const hk_kv_t *kv = cf_kv_first_change(old->kafka_props, old->kafka_props_cnt, new->kafka_props,
                                           new->kafka_props_cnt);
    if (!kv)
        kv = cf_kv_first_change(new->kafka_props, new->kafka_props_cnt, old->kafka_props,
                                old->kafka_props_cnt);
    if (kv) {
        cf_errf(errstr, errstr_size, "kafka.rdkafka.%s %s", kv->key, tail);
        return -1;
    }
    kv = cf_kv_first_change(old->tenant_secrets, old->tenant_secrets_cnt, new->tenant_secrets,
                            new->tenant_secrets_cnt);
    if (!kv)
        kv = cf_kv_first_change(new->tenant_secrets, new->tenant_secrets_cnt, old->tenant_secrets,
                                old->tenant_secrets_cnt);
    if (kv) {
        cf_errf(errstr, errstr_size, "[tenant \"%s\"] secret %s", kv->key, tail);
        return -1;
    }
    return 0;
}
