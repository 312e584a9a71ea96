// libFuzzer harness for the Retry-After parser (retry/backoff.h) and, with the
// first byte odd, the retry schedule parser. Checks the documented results: a
// parsed Retry-After is never negative, a date in the past gives 0, and a parsed
// schedule has at least one non-negative entry.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "retry/backoff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *text = malloc(size); // data[1..] plus a NUL, exactly sized
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] & 1) {
        int64_t *ms = NULL;
        size_t cnt = 0;
        char err[256];
        if (hk_backoff_parse_schedule(text, &ms, &cnt, err, sizeof err) == 0) {
            if (!ms || cnt < 1)
                abort();
            for (size_t i = 0; i < cnt; i++)
                if (ms[i] < 0)
                    abort();
            hk_backoff_t b = {.schedule_ms = ms, .schedule_cnt = cnt, .max_delay_ms = 3600000};
            uint64_t rng = 1;
            int64_t d = hk_backoff_next_delay(&b, (int)cnt + 1, (int64_t)data[0] * 1000, &rng);
            if (d < 0 || d > b.max_delay_ms)
                abort();
            free(ms);
        } else if (ms || !err[0]) {
            abort();
        }
    } else {
        // Now: a recent wall clock, the epoch, and the far future.
        static const int64_t nows[] = {1796000000000, 0, INT64_MAX / 2};
        for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
            int64_t delay = -1;
            if (hk_backoff_retry_after(text, nows[i], &delay) == 0 && delay < 0)
                abort();
        }
    }
    free(text);
    return 0;
}
