// sign: Standard Webhooks signatures (https://www.standardwebhooks.com/).
// v1 = base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")), where key is the
// base64-decoded part of a "whsec_<base64>" secret. Pure; any thread.
#ifndef HK_SIGN_H
#define HK_SIGN_H

#include <stddef.h>
#include <stdint.h>

// The most secrets one signature header carries: during rotation a few are live at
// once, so ten is plenty. config refuses more (signing.secret and [tenant] secret),
// so every configured list fits HK_SIGN_HEADER_MAX.
#define HK_SIGN_MAX_SECRETS 10
// One entry is "v1," + 44 base64 characters, and entries are space separated: n
// secrets need 48n - 1 characters plus the NUL.
#define HK_SIGN_ENTRY_LEN  47
#define HK_SIGN_HEADER_MAX 512
_Static_assert(HK_SIGN_MAX_SECRETS *(HK_SIGN_ENTRY_LEN + 1) <= HK_SIGN_HEADER_MAX,
               "HK_SIGN_HEADER_MAX must hold HK_SIGN_MAX_SECRETS signatures");

// hk_sign_header's failures: the caller must not send the request unsigned.
#define HK_SIGN_EINVAL  (-1) // a bad secret, no secret at all, or a NULL argument
#define HK_SIGN_ETOOBIG (-2) // the header does not fit in out_size

// Checks that `secret` is "whsec_<base64 of 16..64 bytes>". 0 ok, -1 with errstr.
int hk_sign_check_secret(const char *secret, char *errstr, size_t errstr_size);

// The same rule for one secret of `len` characters (not NUL-terminated), e.g. one
// entry of a rotation list, which is how config checks signing.secret. 0 ok; -1
// with the reason in why ("does not start with whsec_", "is not canonical padded
// base64 after whsec_", "decodes to 15 bytes"), which never quotes the secret.
int hk_sign_check_secret_n(const char *secret, size_t len, char *why, size_t why_size);

// The decimal text of a webhook-timestamp (seconds), as it is signed: the
// header value and the signed content must be the same digits. Returns its
// length; out holds the text and a NUL.
#define HK_SIGN_TIMESTAMP_MAX 24
int hk_sign_timestamp_text(int64_t seconds, char out[HK_SIGN_TIMESTAMP_MAX]);

// Writes the webhook-signature header value for `secrets` (one or more whsec_
// secrets separated by spaces: one "v1,<sig>" each, space separated) into out.
// Returns the length written (> 0), or HK_SIGN_EINVAL / HK_SIGN_ETOOBIG with out
// set to "": never a header with some signatures left out.
int hk_sign_header(const char *secrets, const char *id, int64_t timestamp, const void *body,
                   size_t body_len, char *out, size_t out_size);

// Receiver side: 1 when any "v1,<sig>" in `header` matches `secret` for this
// id/timestamp/body (constant-time compare), 0 when none does, -1 on a bad secret.
int hk_sign_verify(const char *secret, const char *id, const char *timestamp, const void *body,
                   size_t body_len, const char *header);

#endif
