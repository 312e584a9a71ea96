// err: see err.h.
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>

void hk_err_set(char *errstr, size_t size, const char *fmt, ...)
{
    if (errstr == NULL || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}
