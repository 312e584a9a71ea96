// log: JSON lines on stderr. Each line is built in memory and written with one
// write(2), so lines from different threads never interleave.
#include "base/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = HK_LOG_INFO;
static atomic_int log_full_urls = 0;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void hk_log_set_level(hk_log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

int hk_log_enabled(hk_log_level_t level)
{
    return (int)level >= atomic_load(&log_level);
}

void hk_log_set_full_urls(int full)
{
    atomic_store(&log_full_urls, full ? 1 : 0);
}

int hk_log_full_urls(void)
{
    return atomic_load(&log_full_urls);
}

const char *hk_log_url(const char *url, char *buf, size_t size)
{
    if (atomic_load(&log_full_urls) || size == 0)
        return url;
    const char *sep = strstr(url, "://");
    size_t scheme_len = sep ? (size_t)(sep - url) : 0;
    if (!sep || scheme_len == 0 ||
        strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789+-.") != scheme_len) {
        snprintf(buf, size, "<not a URL>");
        return buf;
    }
    const char *host = sep + 3;
    size_t auth_len = strcspn(host, "/?#");
    // user:password@ is dropped: the last '@' of the authority ends it.
    for (size_t i = auth_len; i > 0; i--) {
        if (host[i - 1] == '@') {
            auth_len -= i;
            host += i;
            break;
        }
    }
    const char *rest = host + auth_len;
    int more = rest[0] != '\0' && strcmp(rest, "/") != 0;
    snprintf(buf, size, "%.*s://%.*s%s", (int)scheme_len, url, (int)auth_len, host,
             more ? "/..." : rest);
    return buf;
}

void hk_log(hk_log_level_t level, const char *event, const char *fmt, ...)
{
    if (!hk_log_enabled(level))
        return;

    json_t *fields = NULL;
    if (fmt) {
        json_error_t jerr;
        va_list ap;
        va_start(ap, fmt);
        fields = json_vpack_ex(&jerr, 0, fmt, ap);
        va_end(ap);
        if (!fields)
            fields = json_pack("{s:s}", "log_error", jerr.text);
    }
    // One place for every log site: a "url" field loses its path and query.
    json_t *url = json_object_get(fields, "url");
    if (json_is_string(url) && !atomic_load(&log_full_urls)) {
        char shown[512];
        json_t *v = json_string(hk_log_url(json_string_value(url), shown, sizeof(shown)));
        json_object_set_new(fields, "url", v ? v : json_string("<not a URL>"));
    }

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

    json_t *line =
        json_pack("{s:s,s:s,s:s}", "ts", ts, "level", level_names[level], "event", event);
    if (fields && json_is_object(fields))
        json_object_update(line, fields);
    json_decref(fields);

    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; // the buffer holds len + 1 bytes: the NUL becomes the newline
    ssize_t off = 0;
    while ((size_t)off < len + 1) {
        ssize_t w = write(STDERR_FILENO, text + off, len + 1 - (size_t)off);
        if (w <= 0)
            break;
        off += w;
    }
    free(text);
}
