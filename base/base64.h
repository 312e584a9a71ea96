// base64: standard base64 (RFC 4648 section 4: A-Z a-z 0-9 + /, padded with '='),
// the one codec for whsec_ secrets (worker/sign.c, config checks them through
// sign), job bodies (worker/job.c's body_base64) and signatures. Strict: no
// whitespace, length a multiple of 4, '=' only as the last one or two
// characters. A leaf: pure, no allocation, any thread.
#ifndef HK_BASE64_H
#define HK_BASE64_H

#include <stddef.h>

// Also refuse a last character whose unused bits are not zero (RFC 4648 section
// 3.5), so each byte string has exactly one spelling. whsec_ secrets are checked
// this way; job bodies are taken as producers wrote them.
#define HK_BASE64_CANONICAL 1u

// The decoded length of s[0..n) (not NUL-terminated), or -1 when it is not
// padded standard base64 (under `flags`). "" decodes to 0 bytes.
long hk_base64_decoded_len(const char *s, size_t n, unsigned flags);

// Decodes s[0..n) into out, which has room for hk_base64_decoded_len() bytes.
// Returns that length, or -1 (out untouched) when s is not valid.
long hk_base64_decode(const char *s, size_t n, unsigned char *out, unsigned flags);

// Characters hk_base64_encode() writes for n bytes, not counting the NUL.
size_t hk_base64_encoded_len(size_t n);

// Writes the padded base64 of data[0..n) and a NUL into out, which has room for
// hk_base64_encoded_len(n) + 1 characters. Returns the length without the NUL.
size_t hk_base64_encode(const void *data, size_t n, char *out);

#endif
