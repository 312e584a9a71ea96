// sinktls: the throwaway certificates behind the sink's HTTPS (hk_sink_opts_t.tls).
// At start the sink makes, in memory with OpenSSL, a CA (EC P-256, CA:TRUE, valid
// from an hour ago for a year) and a server certificate it signs, with a fresh
// key each. The server certificate is the fault the sink was asked for:
//   HK_SINKTLS_GOOD        subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1
//   HK_SINKTLS_EXPIRED     the same names, but notAfter was yesterday
//   HK_SINKTLS_WRONG_HOST  valid, but for DNS:wrong-host.invalid only
// Nothing is written to disk; the PEM strings live as long as the handle.
// Thread-safe once made (read-only).
#ifndef HK_SINKTLS_H
#define HK_SINKTLS_H

#include <stddef.h>

typedef enum {
    HK_SINKTLS_GOOD = 1,
    HK_SINKTLS_EXPIRED = 2,
    HK_SINKTLS_WRONG_HOST = 3,
} hk_sinktls_kind_t;

typedef struct hk_sinktls_s hk_sinktls_t;

// A CA and a server certificate of `kind`. NULL with errstr on failure.
hk_sinktls_t *hk_sinktls_new(hk_sinktls_kind_t kind, char *errstr, size_t errstr_size);
void hk_sinktls_destroy(hk_sinktls_t *tls);

const char *hk_sinktls_ca_pem(const hk_sinktls_t *tls);   // the CA certificate
const char *hk_sinktls_cert_pem(const hk_sinktls_t *tls); // the server certificate
const char *hk_sinktls_key_pem(const hk_sinktls_t *tls);  // its key (PKCS#8, unencrypted)

// Writes `pem` to `path` (created 0644 or truncated). 0 ok, -1 with errstr.
int hk_sinktls_write(const char *pem, const char *path, char *errstr, size_t errstr_size);

#endif
