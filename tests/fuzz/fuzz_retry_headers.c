// libFuzzer harness for the hookd-* headers of retry-topic records: the bounded
// readers of hookd-attempt and hookd-due-at (hk_headers_attempt and
// hk_headers_wait_ms in queue/headers.h). The input is two values separated
// by the first NUL byte (attempt, then due-at); a missing part is an absent
// header. Whatever the bytes, the attempt count stays within 0..ATTEMPTS_MAX and
// the wait within 0..max_wait_ms, at the wall clock of a plausible host and at a
// clock that was never set.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    const void *aval = size ? data : NULL;
    size_t alen = nul ? (size_t)(nul - data) : size;
    const void *dval = nul ? nul + 1 : NULL;
    size_t dlen = nul ? size - alen - 1 : 0;

    int clamped = -1;
    int attempts = hk_headers_attempt(aval, alen, &clamped);
    if (attempts < 0 || attempts > HK_HEADERS_ATTEMPTS_MAX || (clamped != 0 && clamped != 1))
        abort();
    static const int64_t nows[] = {1796000000000, 0};
    static const int64_t maxes[] = {3600000, 0, INT64_MAX};
    for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++)
        for (size_t j = 0; j < sizeof maxes / sizeof maxes[0]; j++) {
            int64_t wait = hk_headers_wait_ms(dval, dlen, nows[i], maxes[j], &clamped);
            if (wait < 0 || wait > maxes[j] || (clamped != 0 && clamped != 1))
                abort();
        }
    return 0;
}
