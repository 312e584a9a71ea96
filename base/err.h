// err: fills the caller's error buffer, the `char *errstr, size_t errstr_size`
// pair every setup and parsing function takes (docs/architecture.md). A leaf;
// any thread.
#ifndef HK_ERR_H
#define HK_ERR_H

#include <stddef.h>

// printf into errstr, truncated to size - 1 characters and always NUL-terminated.
// A NULL errstr or a size of 0 means the caller wants no message: nothing is written.
__attribute__((format(printf, 3, 4))) void hk_err_set(char *errstr, size_t size, const char *fmt,
                                                      ...);

#endif
