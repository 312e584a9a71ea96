// libFuzzer harness for the hookd-* headers of retry-topic records
// (hk_intake_decode_retry in queue/intake.h). The input is a list of headers,
// "name=value" separated by NUL bytes; duplicates are kept (the last one counts).
// The decoded task must hold NUL-terminated strings and a due time >= 0.
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/intake.h"
#include "worker/task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        const uint8_t *stop = memchr(p, '\0', (size_t)(end - p));
        if (!stop)
            stop = end;
        const uint8_t *eq = memchr(p, '=', (size_t)(stop - p));
        if (eq) {
            char name[64];
            size_t n = (size_t)(eq - p) < sizeof name - 1 ? (size_t)(eq - p) : sizeof name - 1;
            memcpy(name, p, n);
            name[n] = '\0';
            rd_kafka_header_add(hdrs, name, -1, eq + 1, (ssize_t)(stop - eq - 1));
        }
        p = stop + 1;
    }
    hk_task_t *task = hk_task_new("jobs.retry", 0, 1, 1, NULL, 0, "{}", 2);
    if (task) {
        // The wall clock of a plausible host: now, and one whose clock was never set.
        static const int64_t nows[] = {1796000000000, 0};
        for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
            int64_t wait = hk_intake_decode_retry(task, hdrs, nows[i]);
            if (wait < 0)
                abort();
            if (!memchr(task->origin_topic, '\0', sizeof task->origin_topic) ||
                !memchr(task->error, '\0', sizeof task->error))
                abort();
        }
        hk_task_destroy(task);
    }
    rd_kafka_headers_destroy(hdrs);
    return 0;
}
