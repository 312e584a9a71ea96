// headers: hookd-* record headers written and read in one place (queue/headers.h).
#include "queue/headers.h"

#include <stdio.h>
#include <string.h>

#include "retry/classify.h"

static void add_str(rd_kafka_headers_t *hdrs, const char *name, const char *v)
{
    rd_kafka_header_add(hdrs, name, -1, v, -1);
}

static void add_int(rd_kafka_headers_t *hdrs, const char *name, long long v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", v);
    rd_kafka_header_add(hdrs, name, -1, buf, -1);
}

void hk_headers_encode(rd_kafka_headers_t *hdrs, const hk_task_t *task)
{
    if (task->to_retry_topic) {
        add_int(hdrs, "hookd-attempt", task->attempts);
        add_int(hdrs, "hookd-due-at", task->retry_due_wall_ms);
        add_str(hdrs, "hookd-last-error", task->error);
    } else {
        add_str(hdrs, "hookd-error-class", hk_outcome_name(task->outcome));
        add_str(hdrs, "hookd-error", task->error);
        add_int(hdrs, "hookd-http-status", task->http_status);
        add_int(hdrs, "hookd-attempts", task->attempts);
    }
    if (task->first_attempt_ms)
        add_int(hdrs, "hookd-first-attempt-at", task->first_attempt_ms);
    add_str(hdrs, "hookd-original-topic", task->origin_topic);
    add_int(hdrs, "hookd-original-partition", task->origin_partition);
    add_int(hdrs, "hookd-original-offset", task->origin_offset);
    if (task->job)
        add_str(hdrs, "hookd-job-id", task->job->id);
    if (task->batch_id) {
        add_str(hdrs, "hookd-batch-id", task->batch_id);
        add_int(hdrs, "hookd-batch-index", task->item_idx);
    }
    if (task->value_omitted)
        add_int(hdrs, "hookd-value-omitted", (long long)task->value_len);
}

// A strict decimal int64: optional '-', 1 to 19 digits, no overflow. 0 or -1.
static int parse_i64(const void *val, size_t len, int64_t *out)
{
    const char *s = val;
    if (!s || len == 0)
        return -1;
    int neg = s[0] == '-';
    size_t i = (size_t)neg;
    if (len == i || len - i > 19)
        return -1;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0'); // 19 digits fit in 64 unsigned bits
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
        return -1;
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

int hk_headers_attempt(const void *val, size_t len, int *clamped)
{
    int64_t v = 0;
    int ok = val && parse_i64(val, len, &v) == 0;
    int64_t out = !ok || v < 0 ? 0 : v > HK_HEADERS_ATTEMPTS_MAX ? HK_HEADERS_ATTEMPTS_MAX : v;
    if (clamped)
        *clamped = val && (!ok || out != v);
    return (int)out;
}

int64_t hk_headers_wait_ms(const void *val, size_t len, int64_t now_wall_ms, int64_t max_wait_ms,
                           int *clamped)
{
    int64_t due = 0;
    int ok = val && parse_i64(val, len, &due) == 0;
    if (clamped)
        *clamped = val && !ok;
    if (!ok || due <= now_wall_ms)
        return 0;
    // due > now_wall_ms: the difference is positive and cannot overflow when
    // now_wall_ms >= 0; a negative clock would be a bug, not input.
    uint64_t wait = (uint64_t)due - (uint64_t)now_wall_ms;
    if (max_wait_ms < 0)
        max_wait_ms = 0;
    if (wait > (uint64_t)max_wait_ms) {
        if (clamped)
            *clamped = 1;
        return max_wait_ms;
    }
    return (int64_t)wait;
}

// The raw value of a header, the last one of that name (NULL when absent).
static const void *raw(rd_kafka_headers_t *hdrs, const char *name, size_t *len)
{
    const void *val = NULL;
    *len = 0;
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return val;
}

// A header as a NUL-terminated string in buf, cut to size-1 bytes; "" when absent.
static void get_str(rd_kafka_headers_t *hdrs, const char *name, char *buf, size_t size)
{
    size_t len;
    const void *val = raw(hdrs, name, &len);
    if (!val)
        len = 0;
    if (len >= size)
        len = size - 1;
    if (len)
        memcpy(buf, val, len);
    buf[len] = '\0';
}

// A header as a number; `dflt` when absent or unreadable.
static int64_t get_int(rd_kafka_headers_t *hdrs, const char *name, int64_t dflt)
{
    size_t len;
    const void *val = raw(hdrs, name, &len);
    int64_t v;
    return val && parse_i64(val, len, &v) == 0 ? v : dflt;
}

void hk_headers_decode(rd_kafka_headers_t *hdrs, int64_t now_wall_ms, int64_t max_wait_ms,
                       hk_headers_t *out)
{
    memset(out, 0, sizeof(*out));
    out->attempt_raw = raw(hdrs, "hookd-attempt", &out->attempt_raw_len);
    out->due_raw = raw(hdrs, "hookd-due-at", &out->due_raw_len);
    out->attempt =
        hk_headers_attempt(out->attempt_raw, out->attempt_raw_len, &out->attempt_clamped);
    out->wait_ms = hk_headers_wait_ms(out->due_raw, out->due_raw_len, now_wall_ms, max_wait_ms,
                                      &out->due_clamped);
    get_str(hdrs, "hookd-last-error", out->last_error, sizeof(out->last_error));

    get_str(hdrs, "hookd-error-class", out->error_class, sizeof(out->error_class));
    get_str(hdrs, "hookd-error", out->error, sizeof(out->error));
    int64_t status = get_int(hdrs, "hookd-http-status", 0);
    out->http_status = status >= 0 && status <= 999 ? (int)status : 0;
    size_t len;
    const void *val = raw(hdrs, "hookd-attempts", &len);
    out->attempts = hk_headers_attempt(val, len, NULL);

    out->first_attempt_ms = get_int(hdrs, "hookd-first-attempt-at", 0);
    get_str(hdrs, "hookd-original-topic", out->original_topic, sizeof(out->original_topic));
    int64_t part = get_int(hdrs, "hookd-original-partition", 0);
    out->original_partition = part >= INT32_MIN && part <= INT32_MAX ? (int32_t)part : 0;
    out->original_offset = get_int(hdrs, "hookd-original-offset", 0);
    get_str(hdrs, "hookd-job-id", out->job_id, sizeof(out->job_id));
    get_str(hdrs, "hookd-batch-id", out->batch_id, sizeof(out->batch_id));
    out->batch_index = get_int(hdrs, "hookd-batch-index", -1);
    out->value_omitted = get_int(hdrs, "hookd-value-omitted", 0);
}
