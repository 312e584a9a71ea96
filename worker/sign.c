// sign: Standard Webhooks v1 signatures (see sign.h and DESIGN §5).
// The signed message "<id>.<timestamp>.<body>" is streamed through HMAC in five
// updates, never concatenated, and every buffer is on the stack. Each thread keeps
// one HMAC context (pthread key, freed at thread exit) so a call only re-keys it
// instead of fetching the algorithm and building a context every time.
// Secrets are never copied into error messages.
#include "worker/sign.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define SIGN_PREFIX      "whsec_"
#define SIGN_PREFIX_LEN  (sizeof(SIGN_PREFIX) - 1)
#define SIGN_KEY_MIN     16
#define SIGN_KEY_MAX     64
#define SIGN_KEY_B64_MAX (((SIGN_KEY_MAX + 2) / 3) * 4) // 88 characters
#define SIGN_MAC_LEN     32                             // SHA-256
#define SIGN_B64_LEN     44                             // base64 of 32 bytes, padded
#define SIGN_ENTRY_LEN   (3 + SIGN_B64_LEN)             // "v1," + signature

_Static_assert(SIGN_ENTRY_LEN == HK_SIGN_ENTRY_LEN, "sign.h's entry length is wrong");
#define SIGN_SEPARATORS " \t"

static pthread_once_t sign_once = PTHREAD_ONCE_INIT;
static pthread_key_t sign_key;
static EVP_MAC *sign_mac; // fetched once, kept for the life of the process
static int sign_ready;

static void sign_ctx_free(void *ctx)
{
    EVP_MAC_CTX_free(ctx);
}

static void sign_init_once(void)
{
    if (pthread_key_create(&sign_key, sign_ctx_free) != 0)
        return;
    sign_mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    sign_ready = sign_mac != NULL;
}

// The calling thread's HMAC-SHA256 context, created on first use.
static EVP_MAC_CTX *sign_thread_ctx(void)
{
    static char digest[] = "SHA256";

    if (pthread_once(&sign_once, sign_init_once) != 0 || !sign_ready)
        return NULL;
    EVP_MAC_CTX *ctx = pthread_getspecific(sign_key);
    if (ctx != NULL)
        return ctx;
    ctx = EVP_MAC_CTX_new(sign_mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (ctx == NULL || !EVP_MAC_CTX_set_params(ctx, params) ||
        pthread_setspecific(sign_key, ctx) != 0) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int sign_is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static unsigned sign_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : 63;
}

// Decodes one "whsec_<base64>" secret of length `len` (not NUL-terminated) into
// key. Strict: standard alphabet, padded to a multiple of 4, '=' only at the end,
// unused trailing bits zero, 16..64 bytes. 0 ok, -1 with *reason.
static int sign_decode_secret(const char *s, size_t len, unsigned char key[SIGN_KEY_MAX + 3],
                              size_t *keylen, const char **reason)
{
    if (len < SIGN_PREFIX_LEN || memcmp(s, SIGN_PREFIX, SIGN_PREFIX_LEN) != 0) {
        *reason = "must start with \"whsec_\"";
        return -1;
    }
    const unsigned char *b64 = (const unsigned char *)s + SIGN_PREFIX_LEN;
    size_t n = len - SIGN_PREFIX_LEN;
    if (n == 0 || n % 4 != 0) {
        *reason = "the part after \"whsec_\" must be padded base64 (length a multiple of 4)";
        return -1;
    }
    if (n > SIGN_KEY_B64_MAX) {
        *reason = "the key must decode to 16 to 64 bytes";
        return -1;
    }
    size_t pad = 0;
    while (pad < 2 && b64[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++) {
        if (!sign_is_b64(b64[i])) {
            *reason = "the part after \"whsec_\" is not valid base64";
            return -1;
        }
    }
    // Canonical form: the bits past the last whole byte must be zero.
    unsigned last = pad ? sign_b64_value(b64[n - 1 - pad]) : 0;
    if ((pad == 1 && (last & 0x3)) || (pad == 2 && (last & 0xf))) {
        *reason = "the part after \"whsec_\" is not canonical base64";
        return -1;
    }
    size_t want = n / 4 * 3 - pad;
    if (want < SIGN_KEY_MIN || want > SIGN_KEY_MAX) {
        *reason = "the key must decode to 16 to 64 bytes";
        return -1;
    }
    // EVP_DecodeBlock counts the zero bytes produced by '=' padding: drop them.
    int got = EVP_DecodeBlock(key, b64, (int)n);
    if (got < 0 || (size_t)got != want + pad) {
        *reason = "the part after \"whsec_\" is not valid base64";
        return -1;
    }
    *keylen = want;
    return 0;
}

// The key the calling thread's context holds (sign_last_len 0: none). A tenant's
// jobs come one after another with the same key, and re-keying HMAC costs two
// extra SHA-256 blocks plus the provider's set-up: with the same key the context
// is only reset to its keyed state.
static _Thread_local unsigned char sign_last_key[SIGN_KEY_MAX];
static _Thread_local size_t sign_last_len;

static int sign_init_key(EVP_MAC_CTX *ctx, const unsigned char *key, size_t keylen)
{
    if (keylen == sign_last_len && keylen > 0 && CRYPTO_memcmp(key, sign_last_key, keylen) == 0)
        return EVP_MAC_init(ctx, NULL, 0, NULL);
    sign_last_len = 0;
    if (keylen > sizeof(sign_last_key) || !EVP_MAC_init(ctx, key, keylen, NULL))
        return 0;
    memcpy(sign_last_key, key, keylen);
    sign_last_len = keylen;
    return 1;
}

// sig = base64(HMAC-SHA256(key, id "." ts "." body)), NUL-terminated.
static int sign_compute(const unsigned char *key, size_t keylen, const char *id, const char *ts,
                        size_t ts_len, const void *body, size_t body_len,
                        char sig[SIGN_B64_LEN + 1])
{
    EVP_MAC_CTX *ctx = sign_thread_ctx();
    unsigned char mac[SIGN_MAC_LEN];
    size_t mac_len = 0;

    if (ctx == NULL || !sign_init_key(ctx, key, keylen) ||
        !EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, ts_len) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1)) {
        sign_last_len = 0;
        return -1;
    }
    if (body_len > 0 && !EVP_MAC_update(ctx, body, body_len)) {
        sign_last_len = 0; // key the context afresh next time
        return -1;
    }
    if (!EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) || mac_len != SIGN_MAC_LEN) {
        sign_last_len = 0;
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)sig, mac, SIGN_MAC_LEN); // 44 chars + NUL
    return 0;
}

int hk_sign_check_secret(const char *secret, char *errstr, size_t errstr_size)
{
    unsigned char key[SIGN_KEY_MAX + 3];
    size_t keylen = 0;
    const char *reason = "is missing";

    int rc =
        secret == NULL ? -1 : sign_decode_secret(secret, strlen(secret), key, &keylen, &reason);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc < 0 && errstr != NULL && errstr_size > 0)
        snprintf(errstr, errstr_size, "webhook secret %s", reason);
    return rc;
}

// Decimal text of v into out (at least 21 bytes), NUL-terminated; its length.
// The hot path signs every attempt: snprintf's format machinery costs more than
// the digits.
static int sign_format_i64(int64_t v, char *out)
{
    char tmp[24];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int n = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    int len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

int hk_sign_header(const char *secrets, const char *id, int64_t timestamp, const void *body,
                   size_t body_len, char *out, size_t out_size)
{
    if (out != NULL && out_size > 0)
        out[0] = '\0';
    if (secrets == NULL || id == NULL || out == NULL || (body == NULL && body_len > 0))
        return HK_SIGN_EINVAL;

    char ts[24];
    int ts_len = sign_format_i64(timestamp, ts);
    unsigned char key[SIGN_KEY_MAX + 3];
    size_t len = 0;
    int entries = 0;
    int rc = 0;

    for (const char *p = secrets + strspn(secrets, SIGN_SEPARATORS); *p != '\0';
         p += strspn(p, SIGN_SEPARATORS)) {
        size_t tok_len = strcspn(p, SIGN_SEPARATORS);
        size_t keylen = 0;
        const char *reason;
        char sig[SIGN_B64_LEN + 1];
        size_t need = (entries > 0) + SIGN_ENTRY_LEN;

        if (sign_decode_secret(p, tok_len, key, &keylen, &reason) < 0 ||
            sign_compute(key, keylen, id, ts, (size_t)ts_len, body, body_len, sig) < 0) {
            rc = HK_SIGN_EINVAL;
            break;
        }
        // Room for this entry and the NUL, or no header at all: a header missing
        // one of the rotated signatures would fail at receivers that only know it.
        if (need >= out_size - len || len + need > INT_MAX) {
            rc = HK_SIGN_ETOOBIG;
            break;
        }
        if (entries > 0)
            out[len++] = ' ';
        memcpy(out + len, "v1,", 3);
        memcpy(out + len + 3, sig, SIGN_B64_LEN + 1); // with its NUL
        len += SIGN_ENTRY_LEN;
        entries++;
        p += tok_len;
    }
    OPENSSL_cleanse(key, sizeof(key));
    if (rc < 0 || entries == 0) {
        if (out_size > 0)
            out[0] = '\0';
        return rc < 0 ? rc : HK_SIGN_EINVAL;
    }
    return (int)len;
}

int hk_sign_verify(const char *secret, const char *id, const char *timestamp, const void *body,
                   size_t body_len, const char *header)
{
    unsigned char key[SIGN_KEY_MAX + 3];
    size_t keylen = 0;
    const char *reason;
    char sig[SIGN_B64_LEN + 1];

    if (secret == NULL || sign_decode_secret(secret, strlen(secret), key, &keylen, &reason) < 0) {
        OPENSSL_cleanse(key, sizeof(key));
        return -1;
    }
    if (id == NULL || timestamp == NULL || header == NULL || (body == NULL && body_len > 0)) {
        OPENSSL_cleanse(key, sizeof(key));
        return 0;
    }
    int rc = sign_compute(key, keylen, id, timestamp, strlen(timestamp), body, body_len, sig);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc < 0)
        return 0;

    // Entries are space separated; anything that is not "v1,<44 chars>" is skipped.
    int match = 0;
    for (const char *p = header + strspn(header, SIGN_SEPARATORS); *p != '\0';
         p += strspn(p, SIGN_SEPARATORS)) {
        size_t tok_len = strcspn(p, SIGN_SEPARATORS);
        if (tok_len == SIGN_ENTRY_LEN && memcmp(p, "v1,", 3) == 0 &&
            CRYPTO_memcmp(p + 3, sig, SIGN_B64_LEN) == 0)
            match = 1;
        p += tok_len;
    }
    return match;
}
