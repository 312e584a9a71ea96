// libFuzzer harness for the job parser (model/job.h). The input is one Kafka
// message value; its last byte, when the input is long enough, also picks a Kafka
// key length so the ordering-key path is fuzzed. Besides "no crash, no leak", it
// checks two promises of the contract: a rejection names a printable reason, and a
// webhook job survives hk_job_to_json() -> hk_job_parse() with the same identity.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/job.h"

static void check_reason(const char *err)
{
    if (!memchr(err, '\0', 512) || !err[0])
        abort(); // a rejection always says why, terminated
    for (const char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            abort(); // reasons go into a Kafka header and a log line: printable only
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_round_trip(const hk_job_t *job, const hk_job_src_t *src)
{
    size_t len = 0;
    char *json = hk_job_to_json(job, &len);
    if (!json)
        return; // ENOMEM
    // The re-encoded body is base64, a third larger: allow for it.
    hk_job_defaults_t defs = {.max_attempts = 10, .timeout_ms = 10000, .max_job_bytes = len + 1};
    char err[512];
    hk_job_t *again = hk_job_parse(json, len, src, &defs, err, sizeof err);
    if (!again) {
        fprintf(stderr, "round trip rejected: %s\n%.*s\n", err, (int)len, json);
        abort();
    }
    if (!same(job->id, again->id) || !same(job->url, again->url) ||
        !same(job->tenant, again->tenant) || !same(job->method, again->method) ||
        job->body_len != again->body_len ||
        (job->body_len && memcmp(job->body, again->body, job->body_len) != 0) ||
        job->headers_cnt != again->headers_cnt || job->max_attempts != again->max_attempts ||
        job->timeout_ms != again->timeout_ms || job->expires_at_ms != again->expires_at_ms) {
        fprintf(stderr, "round trip changed the job:\n%.*s\n", (int)len, json);
        abort();
    }
    hk_job_destroy(again);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t key_len = size > 1 ? data[size - 1] % 8 : 0;
    if (key_len > size)
        key_len = size;
    hk_job_src_t src = {.topic = "jobs",
                        .partition = 1,
                        .offset = 7,
                        .key = key_len ? data : NULL,
                        .key_len = key_len};
    hk_job_defaults_t defs = {.max_attempts = 10, .timeout_ms = 10000, .max_job_bytes = 64 * 1024};
    // An exact-size copy, so ASan sees a read one past the value.
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    char err[512];
    memset(err, 'X', sizeof err);
    hk_job_t *job = hk_job_parse(copy, size, &src, &defs, err, sizeof err);
    if (!job) {
        check_reason(err);
    } else {
        if (job->type == HK_JOB_WEBHOOK)
            check_round_trip(job, &src);
        for (size_t i = 0; i < job->items_cnt; i++)
            check_round_trip(&job->items[i], &src);
        hk_job_destroy(job);
    }
    free(copy);
    return 0;
}
