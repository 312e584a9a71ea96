// headers: the hookd-* headers of hookd's own Kafka records (DESIGN §6), in one
// codec: the producer writes them with hk_headers_encode() and intake reads a
// retry record back with hk_headers_decode(). Prefix hk_headers_.
//
// A retry record (task->to_retry_topic) carries hookd-attempt, hookd-due-at
// (ms since the epoch) and hookd-last-error; a dead letter hookd-error-class,
// hookd-error, hookd-http-status and hookd-attempts. Both carry
// hookd-first-attempt-at (when known), hookd-original-topic/-partition/-offset
// (where the job was first produced), hookd-job-id (a valid job), hookd-batch-id
// and hookd-batch-index (a batch item) and hookd-value-omitted (a dead letter
// sent without the job's value, which was this many bytes). Numbers are plain
// decimal text.
#ifndef HK_HEADERS_H
#define HK_HEADERS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "model/job.h"
#include "model/task.h"

// The job contract's largest max_attempts: no hookd-attempt read back is above it.
#define HK_HEADERS_ATTEMPTS_MAX 100

// Adds the task's record headers to `hdrs` (the retry set or the dead-letter set,
// by task->to_retry_topic; retry_due_wall_ms, outcome, error and the rest as the
// task holds them).
void hk_headers_encode(rd_kafka_headers_t *hdrs, const hk_task_t *task);

// Every hookd-* header of one record, as hk_headers_decode() read it. Strings are
// NUL-terminated copies ("" when absent, cut to the buffer); numbers 0 when
// absent or unreadable.
typedef struct hk_headers {
    // Retry records.
    int attempt;     // hookd-attempt, 0..HK_HEADERS_ATTEMPTS_MAX (hk_headers_attempt)
    int64_t wait_ms; // hookd-due-at as a wait from now, 0..max_wait_ms (hk_headers_wait_ms)
    char last_error[256];
    // Set when hookd-attempt or hookd-due-at was present and not taken as it
    // stands; their raw bytes (NULL when absent; valid while `hdrs` lives) say
    // what was there.
    int attempt_clamped, due_clamped;
    const void *attempt_raw, *due_raw;
    size_t attempt_raw_len, due_raw_len;
    // Dead letters.
    char error_class[32];
    char error[256];
    int http_status;
    int attempts;
    // Both.
    int64_t first_attempt_ms;
    char original_topic[256];
    int32_t original_partition;
    int64_t original_offset;
    char job_id[HK_JOB_ID_MAX + 1];
    char batch_id[256];
    int64_t batch_index; // -1 when absent
    int64_t value_omitted;
} hk_headers_t;

// Reads every hookd-* header of `hdrs` (NULL: none) into *out. hookd writes
// these headers, but anyone who can produce to its topics can write them too, so
// the two that steer a retry are read with bounds (hk_headers_attempt,
// hk_headers_wait_ms, at `now_wall_ms` with retry.max_delay_ms `max_wait_ms`).
void hk_headers_decode(rd_kafka_headers_t *hdrs, int64_t now_wall_ms, int64_t max_wait_ms,
                       hk_headers_t *out);

// The bounded readers. `val` is the raw header value (`len` bytes, no NUL needed;
// NULL = absent). A number is an optional '-' and 1 to 19 digits that fit 64
// bits; anything else is unreadable. *clamped (may be NULL) is set to 1 when a
// present value was not taken as it stands, else 0.
//
// hookd-attempt (attempts already made): 0..HK_HEADERS_ATTEMPTS_MAX. Absent,
// unreadable or negative: 0 (counted as a new job). Above the maximum: the
// maximum, which is at least any job's max_attempts, so the job gets one last
// attempt before it is exhausted.
int hk_headers_attempt(const void *val, size_t len, int *clamped);

// hookd-due-at (ms since the epoch): how long after `now_wall_ms` the record is
// due, 0..max_wait_ms (retry.max_delay_ms, the longest delay hookd schedules).
// Absent, unreadable or past: 0 (due now). Further out than max_wait_ms:
// max_wait_ms.
int64_t hk_headers_wait_ms(const void *val, size_t len, int64_t now_wall_ms, int64_t max_wait_ms,
                           int *clamped);

#endif
