// sign: Standard Webhooks signatures (https://www.standardwebhooks.com/).
// v1 = base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")), where key is the
// base64-decoded part of a "whsec_<base64>" secret. Pure; any thread.
#ifndef HK_SIGN_H
#define HK_SIGN_H

#include <stddef.h>
#include <stdint.h>

// Enough for a few rotated signatures: "v1,<44 chars>" each, space separated.
#define HK_SIGN_HEADER_MAX 512

// Checks that `secret` is "whsec_<base64 of 16..64 bytes>". 0 ok, -1 with errstr.
int hk_sign_check_secret(const char *secret, char *errstr, size_t errstr_size);

// Writes the webhook-signature header value for `secrets` (one or more whsec_
// secrets separated by spaces: one "v1,<sig>" each, space separated) into out.
// Returns the length written, or -1 (bad secret, out too small).
int hk_sign_header(const char *secrets, const char *id, int64_t timestamp, const void *body,
                   size_t body_len, char *out, size_t out_size);

// Receiver side: 1 when any "v1,<sig>" in `header` matches `secret` for this
// id/timestamp/body (constant-time compare), 0 when none does, -1 on a bad secret.
int hk_sign_verify(const char *secret, const char *id, const char *timestamp, const void *body,
                   size_t body_len, const char *header);

#endif
