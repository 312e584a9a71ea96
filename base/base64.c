// base64: see base64.h. Table-free on purpose: the alphabet is four ranges, and
// a branch per character is fast enough for bodies of a few megabytes.
#include "base/base64.h"

#include <limits.h>
#include <stdint.h>

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The 6-bit value of one character, or -1 for anything outside the alphabet ('=' too).
static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

long hk_base64_decoded_len(const char *s, size_t n, unsigned flags)
{
    if (n % 4 != 0 || n / 4 * 3 > LONG_MAX)
        return -1;
    if (n == 0)
        return 0;
    size_t pad = s[n - 1] != '=' ? 0 : s[n - 2] == '=' ? 2 : 1;
    // Everything before the padding is alphabet: an '=' anywhere else is refused here.
    for (size_t i = 0; i < n - pad; i++)
        if (base64_value((unsigned char)s[i]) < 0)
            return -1;
    if ((flags & HK_BASE64_CANONICAL) && pad > 0) {
        // One '=' leaves 2 unused bits in the character before it, two leave 4.
        int last = base64_value((unsigned char)s[n - 1 - pad]);
        if (last & (pad == 1 ? 0x3 : 0xf))
            return -1;
    }
    return (long)(n / 4 * 3 - pad);
}

long hk_base64_decode(const char *s, size_t n, unsigned char *out, unsigned flags)
{
    long len = hk_base64_decoded_len(s, n, flags);
    if (len < 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t acc = 0;
        for (size_t k = 0; k < 4; k++) {
            int v = base64_value((unsigned char)s[i + k]);
            acc = acc << 6 | (uint32_t)(v < 0 ? 0 : v); // '=' (validated above) counts as 0
        }
        unsigned char group[3] = {(unsigned char)(acc >> 16), (unsigned char)(acc >> 8),
                                  (unsigned char)acc};
        for (size_t k = 0; k < 3 && o < (size_t)len; k++)
            out[o++] = group[k];
    }
    return len;
}

size_t hk_base64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t hk_base64_encode(const void *data, size_t n, char *out)
{
    const unsigned char *in = data;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        size_t left = n - i;
        uint32_t acc = (uint32_t)in[i] << 16;
        if (left > 1)
            acc |= (uint32_t)in[i + 1] << 8;
        if (left > 2)
            acc |= in[i + 2];
        out[o++] = base64_alphabet[acc >> 18 & 0x3f];
        out[o++] = base64_alphabet[acc >> 12 & 0x3f];
        out[o++] = left > 1 ? base64_alphabet[acc >> 6 & 0x3f] : '=';
        out[o++] = left > 2 ? base64_alphabet[acc & 0x3f] : '=';
    }
    out[o] = '\0';
    return o;
}
