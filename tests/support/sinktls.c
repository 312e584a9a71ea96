// sinktls: the sink's throwaway CA and server certificate (contract in sinktls.h).
// OpenSSL (libcrypto only) makes them; libmicrohttpd, built with GnuTLS, serves
// them from the PEM strings.
#include "tests/support/sinktls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define TLS_HOUR_S 3600L
#define TLS_DAY_S  (24 * TLS_HOUR_S)
#define TLS_YEAR_S (365 * TLS_DAY_S)

struct hk_sinktls_s {
    char *ca_pem;
    char *cert_pem;
    char *key_pem;
};

// Appends OpenSSL's own reason for the failure just written to errstr (by
// hk_err_set), when it left one, and clears its error queue.
static void tls_reason(char *errstr, size_t errstr_size)
{
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0 || errstr == NULL || errstr_size == 0)
        return;
    size_t n = strlen(errstr);
    if (n + 3 < errstr_size) {
        char why[256];
        ERR_error_string_n(e, why, sizeof why);
        snprintf(errstr + n, errstr_size - n, " (%s)", why);
    }
}

// One extension by its config-file text ("critical,CA:TRUE"). 0 ok, -1 not.
static int tls_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int rc = X509_add_ext(x, ext, -1) == 1 ? 0 : -1;
    X509_EXTENSION_free(ext);
    return rc;
}

// A certificate for `key` named `cn`, valid from now+from_s to now+to_s, signed by
// issuer/issuer_key (NULL: self-signed). san NULL makes a CA. NULL on failure.
static X509 *tls_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                      long from_s, long to_s, const char *san)
{
    X509 *x = X509_new();
    if (x == NULL)
        return NULL;
    uint64_t serial = 0;
    int ok =
        X509_set_version(x, 2) == 1 && RAND_bytes((unsigned char *)&serial, sizeof serial) == 1;
    serial &= INT64_MAX; // positive, and never 0
    serial |= 1;
    ok = ok && ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) == 1 &&
         X509_gmtime_adj(X509_getm_notBefore(x), from_s) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), to_s) != NULL && X509_set_pubkey(x, key) == 1;
    X509_NAME *name = X509_get_subject_name(x);
    ok = ok &&
         X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"hookd-testkit",
                                    -1, -1, 0) == 1 &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                    0) == 1;
    ok = ok && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1;
    X509 *signer = issuer ? issuer : x;
    ok = ok && tls_ext(x, signer, NID_subject_key_identifier, "hash") == 0;
    if (san == NULL) {
        ok = ok && tls_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
             tls_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
    } else {
        ok = ok && tls_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             tls_ext(x, signer, NID_authority_key_identifier, "keyid:always") == 0 &&
             tls_ext(x, signer, NID_key_usage, "critical,digitalSignature") == 0 &&
             tls_ext(x, signer, NID_ext_key_usage, "serverAuth") == 0 &&
             tls_ext(x, signer, NID_subject_alt_name, san) == 0;
    }
    ok = ok && X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

// The PEM text of a certificate (key NULL) or of a private key (x NULL); NULL
// when out of memory.
static char *tls_pem(X509 *x, EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return NULL;
    int ok = x ? PEM_write_bio_X509(bio, x)
               : PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    // The BIO's memory is not NUL-terminated: copied by length (strndup would
    // look for a NUL past it, which ASan's strict_string_checks reports).
    char *out = ok == 1 && len > 0 ? malloc((size_t)len + 1) : NULL;
    if (out) {
        memcpy(out, data, (size_t)len);
        out[len] = '\0';
    }
    BIO_free(bio);
    return out;
}

hk_sinktls_t *hk_sinktls_new(hk_sinktls_kind_t kind, char *errstr, size_t errstr_size)
{
    if (kind != HK_SINKTLS_GOOD && kind != HK_SINKTLS_EXPIRED && kind != HK_SINKTLS_WRONG_HOST) {
        hk_err_set(errstr, errstr_size, "sink: unknown TLS mode %d", (int)kind);
        return NULL;
    }
    hk_sinktls_t *tls = calloc(1, sizeof *tls);
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *ca = NULL, *cert = NULL;
    if (tls == NULL || ca_key == NULL || key == NULL) {
        hk_err_set(errstr, errstr_size, "sink: cannot make a P-256 key");
        tls_reason(errstr, errstr_size);
        goto fail;
    }
    ca = tls_cert(ca_key, "hookd-testkit sink CA", NULL, NULL, -TLS_HOUR_S, TLS_YEAR_S, NULL);
    if (ca == NULL) {
        hk_err_set(errstr, errstr_size, "sink: cannot make the CA certificate");
        tls_reason(errstr, errstr_size);
        goto fail;
    }
    // The expired one was valid for a day, until yesterday; the wrong host's is
    // valid but names no address the sink listens on.
    long from = kind == HK_SINKTLS_EXPIRED ? -2 * TLS_DAY_S : -TLS_HOUR_S;
    long to = kind == HK_SINKTLS_EXPIRED ? -TLS_DAY_S : TLS_YEAR_S;
    const char *san = kind == HK_SINKTLS_WRONG_HOST ? "DNS:wrong-host.invalid"
                                                    : "DNS:localhost,IP:127.0.0.1,IP:::1";
    const char *cn = kind == HK_SINKTLS_WRONG_HOST ? "wrong-host.invalid" : "localhost";
    cert = tls_cert(key, cn, ca, ca_key, from, to, san);
    if (cert == NULL) {
        hk_err_set(errstr, errstr_size, "sink: cannot make the server certificate");
        tls_reason(errstr, errstr_size);
        goto fail;
    }
    tls->ca_pem = tls_pem(ca, NULL);
    tls->cert_pem = tls_pem(cert, NULL);
    tls->key_pem = tls_pem(NULL, key);
    if (tls->ca_pem == NULL || tls->cert_pem == NULL || tls->key_pem == NULL) {
        hk_err_set(errstr, errstr_size, "sink: out of memory writing the certificates");
        tls_reason(errstr, errstr_size);
        goto fail;
    }
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return tls;
fail:
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    hk_sinktls_destroy(tls);
    return NULL;
}

void hk_sinktls_destroy(hk_sinktls_t *tls)
{
    if (tls == NULL)
        return;
    free(tls->ca_pem);
    free(tls->cert_pem);
    // The key is a secret only for as long as the test runs, but wipe it anyway.
    if (tls->key_pem != NULL)
        OPENSSL_cleanse(tls->key_pem, strlen(tls->key_pem));
    free(tls->key_pem);
    free(tls);
}

const char *hk_sinktls_ca_pem(const hk_sinktls_t *tls)
{
    return tls->ca_pem;
}

const char *hk_sinktls_cert_pem(const hk_sinktls_t *tls)
{
    return tls->cert_pem;
}

const char *hk_sinktls_key_pem(const hk_sinktls_t *tls)
{
    return tls->key_pem;
}

int hk_sinktls_write(const char *pem, const char *path, char *errstr, size_t errstr_size)
{
    if (pem == NULL || path == NULL || *path == '\0') {
        hk_err_set(errstr, errstr_size, "sink: no CA to write (TLS is off) or no path");
        return -1;
    }
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        hk_err_set(errstr, errstr_size, "sink: cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    size_t len = strlen(pem);
    int rc = fwrite(pem, 1, len, f) == len ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc != 0)
        hk_err_set(errstr, errstr_size, "sink: cannot write %s: %s", path, strerror(errno));
    return rc;
}
