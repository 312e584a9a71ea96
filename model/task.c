#include "model/task.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hk_task_t *hk_task_new(const char *topic, int32_t partition, int64_t offset, uint64_t generation,
                       const void *key, size_t key_len, const void *value, size_t value_len)
{
    size_t size = sizeof(hk_task_t) + key_len + value_len;
    hk_task_t *task = calloc(1, size);
    if (!task)
        return NULL;
    char *p = (char *)(task + 1);
    task->topic = topic;
    task->partition = partition;
    task->offset = offset;
    task->generation = generation;
    snprintf(task->origin_topic, sizeof(task->origin_topic), "%s", topic);
    task->origin_partition = partition;
    task->origin_offset = offset;
    task->retry_after_ms = -1;
    task->heap_idx = SIZE_MAX;
    task->item_idx = -1;
    if (key) {
        task->key = p;
        task->key_len = key_len;
        memcpy(p, key, key_len);
        p += key_len;
    }
    if (value) {
        task->value = p;
        task->value_len = value_len;
        memcpy(p, value, value_len);
    }
    task->mem_bytes = size;
    return task;
}

void hk_task_set_job(hk_task_t *task, hk_job_t *job)
{
    task->job = job;
    task->mem_bytes += job->mem_bytes;
    if (!job->url || hk_endpoint_of(job->url, task->endpoint, sizeof(task->endpoint)) != 0)
        snprintf(task->endpoint, sizeof(task->endpoint), "invalid:");
}

void hk_task_fail(hk_task_t *task, hk_outcome_t outcome, int http_status, const char *fmt, ...)
{
    task->outcome = outcome;
    task->http_status = http_status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(task->error, sizeof(task->error), fmt, ap);
    va_end(ap);
}

void hk_task_destroy(hk_task_t *task)
{
    if (!task)
        return;
    hk_job_destroy(task->job);
    free(task);
}
