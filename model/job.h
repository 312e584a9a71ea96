// job: the job contract of DESIGN §4. Parses and validates one Kafka message value
// into an immutable hk_job_t held in a single allocation, or rejects it with a
// precise reason naming the JSON path (`$.headers.X-A: value contains CR/LF`).
//
// Pure: no I/O, no globals. Any thread may call it.
#ifndef HK_JOB_H
#define HK_JOB_H

#include <stddef.h>
#include <stdint.h>

typedef enum hk_job_type { HK_JOB_WEBHOOK = 0, HK_JOB_BATCH = 1 } hk_job_type_t;

typedef struct hk_job_header {
    const char *name;
    const char *value;
} hk_job_header_t;

// Where a message came from; also the fallback id "<topic>-<partition>-<offset>".
typedef struct hk_job_src {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key; // Kafka message key, may be NULL
    size_t key_len;
} hk_job_src_t;

// Defaults taken from the config for fields the job leaves out.
typedef struct hk_job_defaults {
    int max_attempts;     // retry.max_attempts
    int timeout_ms;       // delivery.timeout_ms
    size_t max_job_bytes; // limits.max_job_bytes
} hk_job_defaults_t;

typedef struct hk_job hk_job_t;
struct hk_job {
    hk_job_type_t type;
    const char *id;     // 1-255 of [A-Za-z0-9_:-]; derived from src when absent
    const char *tenant; // "default" when absent
    const char *url;    // absolute http(s) URL (webhook, and batch items after inheritance)
    const char *method; // POST, PUT, PATCH, DELETE or GET
    const hk_job_header_t *headers; // the job's own headers, validated
    size_t headers_cnt;
    const char *body; // bytes to send: the producer's own bytes of `body`, compacted (numbers,
                      // escapes, key order as written), or decoded body_base64; NULL = empty
    size_t body_len;
    const char *content_type; // "application/json" for JSON bodies, the given one for base64, NULL
                              // if no body
    int max_attempts;         // 1-100
    int timeout_ms;           // 100-120000
    int64_t expires_at_ms;    // ms since epoch, 0 = never
    const char *ordering_key; // the field (1-255 bytes), else the Kafka key as a string (a
                              // key over 255 bytes: "sha256:<64 hex>" of it), else NULL

    // batch only
    hk_job_t *items;          // items_cnt jobs, each a webhook inheriting from the batch
    size_t items_cnt;         //   with id "<batch id>:<index>"
    double max_failure_ratio; // 0-1, default 1.0

    size_t mem_bytes; // bytes this job holds (for limits.max_inflight_bytes)
};

// Parses `value` (`len` bytes). Returns a new job, or NULL with the reason in
// errstr. The caller owns the job and frees it with hk_job_destroy().
hk_job_t *hk_job_parse(const void *value, size_t len, const hk_job_src_t *src,
                       const hk_job_defaults_t *defs, char *errstr, size_t errstr_size);

void hk_job_destroy(hk_job_t *job);

// The webhook `job` (for instance a batch item, after inheritance) as a standalone
// job message that hk_job_parse() reads back as the same job: what a failed item's
// dead letter carries, so a replay sends it on its own, with the same id. The body
// goes as body_base64 + content_type, so its bytes survive exactly. Caller frees;
// NULL on ENOMEM. *len (may be NULL) gets the length.
char *hk_job_to_json(const hk_job_t *job, size_t *len);

#define HK_JOB_ID_MAX 255

// The id of a job without one: "<topic>-<partition>-<offset>", the topic's
// characters outside [A-Za-z0-9_:-] replaced by '_' and the topic cut so the
// whole fits HK_JOB_ID_MAX. Writes it into `out`; returns its length (0: none).
size_t hk_job_derive_id(const char *topic, int32_t partition, int64_t offset,
                        char out[HK_JOB_ID_MAX + 1]);

#endif
