// sign: Standard Webhooks v1 signatures (see sign.h and DESIGN §5).
// The signed message "<id>.<timestamp>.<body>" is streamed through HMAC in five
// updates, never concatenated, and every buffer is on the stack. Each thread keeps
// one HMAC context (pthread key, freed at thread exit) so a call only re-keys it
// instead of fetching the algorithm and building a context every time.
// Secrets are never copied into error messages.
#include "base/sign.h"

#include "base/base64.h"
#include "base/err.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define SIGN_PREFIX     "whsec_"
#define SIGN_PREFIX_LEN (sizeof(SIGN_PREFIX) - 1)
#define SIGN_KEY_MIN    16
#define SIGN_KEY_MAX    64
#define SIGN_MAC_LEN    32                 // SHA-256
#define SIGN_B64_LEN    44                 // base64 of 32 bytes, padded
#define SIGN_ENTRY_LEN  (3 + SIGN_B64_LEN) // "v1," + signature

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

// What is wrong with a secret, if anything.
typedef enum sign_problem {
    SIGN_OK,
    SIGN_NO_PREFIX,  // does not start with "whsec_"
    SIGN_NOT_BASE64, // nothing, or not canonical padded base64, after it
    SIGN_KEY_SIZE,   // well formed, but the key is not 16..64 bytes
} sign_problem_t;

// Checks one "whsec_<base64>" secret of length `len` (not NUL-terminated):
// canonical padded standard base64 (base/base64.h) of 16..64 bytes, and *bytes
// is its decoded length when it is base64. With `key` it also decodes into it.
static sign_problem_t sign_decode_secret(const char *s, size_t len, unsigned char *key, long *bytes)
{
    *bytes = -1;
    if (len < SIGN_PREFIX_LEN || memcmp(s, SIGN_PREFIX, SIGN_PREFIX_LEN) != 0)
        return SIGN_NO_PREFIX;
    const char *b64 = s + SIGN_PREFIX_LEN;
    size_t n = len - SIGN_PREFIX_LEN;
    *bytes = n == 0 ? -1 : hk_base64_decoded_len(b64, n, HK_BASE64_CANONICAL);
    if (*bytes < 0)
        return SIGN_NOT_BASE64;
    if (*bytes < SIGN_KEY_MIN || *bytes > SIGN_KEY_MAX)
        return SIGN_KEY_SIZE;
    if (key != NULL)
        hk_base64_decode(b64, n, key, HK_BASE64_CANONICAL);
    return SIGN_OK;
}

int hk_sign_check_secret_n(const char *secret, size_t len, char *why, size_t why_size)
{
    long bytes;
    switch (sign_decode_secret(secret, len, NULL, &bytes)) {
    case SIGN_OK:
        return 0;
    case SIGN_NO_PREFIX:
        hk_err_set(why, why_size, "does not start with whsec_");
        break;
    case SIGN_NOT_BASE64:
        hk_err_set(why, why_size, "is not canonical padded base64 after whsec_");
        break;
    case SIGN_KEY_SIZE:
        hk_err_set(why, why_size, "decodes to %ld bytes", bytes);
        break;
    }
    return -1;
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
    hk_base64_encode(mac, SIGN_MAC_LEN, sig); // 44 chars + NUL
    return 0;
}

int hk_sign_check_secret(const char *secret, char *errstr, size_t errstr_size)
{
    char why[64] = "is missing";
    if (secret != NULL && hk_sign_check_secret_n(secret, strlen(secret), why, sizeof(why)) == 0)
        return 0;
    hk_err_set(errstr, errstr_size, "webhook secret %s (16 to 64 bytes as whsec_<base64>)", why);
    return -1;
}

// Decimal text of v into out (at least 21 bytes), NUL-terminated; its length.
// The hot path signs every attempt: snprintf's format machinery costs more than
// the digits.
int hk_sign_timestamp_text(int64_t v, char out[HK_SIGN_TIMESTAMP_MAX])
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

    char ts[HK_SIGN_TIMESTAMP_MAX];
    int ts_len = hk_sign_timestamp_text(timestamp, ts);
    unsigned char key[SIGN_KEY_MAX];
    size_t len = 0;
    int entries = 0;
    int rc = 0;

    for (const char *p = secrets + strspn(secrets, SIGN_SEPARATORS); *p != '\0';
         p += strspn(p, SIGN_SEPARATORS)) {
        size_t tok_len = strcspn(p, SIGN_SEPARATORS);
        long keylen = 0;
        char sig[SIGN_B64_LEN + 1];
        size_t need = (entries > 0) + SIGN_ENTRY_LEN;

        if (sign_decode_secret(p, tok_len, key, &keylen) != SIGN_OK ||
            sign_compute(key, (size_t)keylen, id, ts, (size_t)ts_len, body, body_len, sig) < 0) {
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
    unsigned char key[SIGN_KEY_MAX];
    long keylen = 0;
    char sig[SIGN_B64_LEN + 1];

    if (secret == NULL || sign_decode_secret(secret, strlen(secret), key, &keylen) != SIGN_OK) {
        OPENSSL_cleanse(key, sizeof(key));
        return -1;
    }
    if (id == NULL || timestamp == NULL || header == NULL || (body == NULL && body_len > 0)) {
        OPENSSL_cleanse(key, sizeof(key));
        return 0;
    }
    int rc =
        sign_compute(key, (size_t)keylen, id, timestamp, strlen(timestamp), body, body_len, sig);
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
