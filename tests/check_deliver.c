// Unit tests of worker/deliver.c in process: a real delivery pool (dispatcher,
// network guard, curl) against a small HTTP/1.1 receiver in this file that keeps
// every request byte for byte, in clear text or over TLS (OpenSSL, certificates
// made here with libcrypto: a CA, a wrong CA, an expired server certificate, a
// server that insists on a client certificate).
#include "worker/deliver.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config/config.h"
#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "base/clock.h"
#include "worker/dispatch.h"
#include "model/job.h"
#include "base/netguard.h"
#include "base/sign.h"
#include "model/task.h"

// ---- a receiver that records requests verbatim ----

#define RX_MAX 32

typedef struct rx {
    int fd;
    int port;
    SSL_CTX *tls; // NULL: clear text
    pthread_t tid;
    pthread_mutex_t lock;
    char *reqs[RX_MAX]; // raw requests (head + body), NUL-terminated
    size_t reqs_cnt;
    int handshake_failures;
    int close_after_ms; // > 0: close each connection this long after its first answer
    int conns;          // connections accepted
    // Connection threads still running and their sockets: rx_stop shuts the
    // sockets down and waits for the threads, which read rx, before freeing it.
    int live;
    int live_fds[RX_MAX];
    pthread_cond_t gone;
} rx_t;

typedef struct rx_conn {
    rx_t *rx;
    int fd;
} rx_conn_t;

static int conn_read(SSL *ssl, int fd, char *buf, size_t n)
{
    return ssl ? SSL_read(ssl, buf, (int)n) : (int)read(fd, buf, n);
}

static int conn_write(SSL *ssl, int fd, const char *buf, size_t n)
{
    return ssl ? SSL_write(ssl, buf, (int)n) : (int)write(fd, buf, n);
}

static void *rx_conn_main(void *arg)
{
    rx_conn_t *c = arg;
    rx_t *rx = c->rx;
    SSL *ssl = NULL;
    if (rx->tls) {
        ssl = SSL_new(rx->tls);
        SSL_set_fd(ssl, c->fd);
        if (SSL_accept(ssl) != 1) {
            pthread_mutex_lock(&rx->lock);
            rx->handshake_failures++;
            pthread_mutex_unlock(&rx->lock);
            goto out;
        }
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) { // keep-alive: one request after another
        char *end;
        while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
            if (len == cap)
                goto done;
            int n = conn_read(ssl, c->fd, buf + len, cap - len);
            if (n <= 0)
                goto done;
            len += (size_t)n;
        }
        size_t head = (size_t)(end - buf) + 4, body = 0;
        const char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl && cl < end)
            body = strtoul(cl + 17, NULL, 10);
        while (len < head + body && len < cap) {
            int n = conn_read(ssl, c->fd, buf + len, cap - len);
            if (n <= 0)
                goto done;
            len += (size_t)n;
        }
        char *req = strndup(buf, head + body);
        pthread_mutex_lock(&rx->lock);
        if (rx->reqs_cnt < RX_MAX)
            rx->reqs[rx->reqs_cnt++] = req;
        else
            free(req);
        pthread_mutex_unlock(&rx->lock);
        static const char ans[] = "HTTP/1.1 204 No Content\r\n\r\n";
        if (conn_write(ssl, c->fd, ans, sizeof(ans) - 1) <= 0)
            break;
        if (rx->close_after_ms > 0) { // a receiver whose keep-alive timeout is short
            hk_clock_sleep_ms(rx->close_after_ms);
            break;
        }
        memmove(buf, buf + head + body, len - head - body);
        len -= head + body;
    }
done:
    free(buf);
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    pthread_mutex_lock(&rx->lock);
    for (int i = 0; i < RX_MAX; i++)
        if (rx->live_fds[i] == c->fd) {
            rx->live_fds[i] = -1;
            break;
        }
    close(c->fd);
    rx->live--;
    pthread_cond_broadcast(&rx->gone);
    pthread_mutex_unlock(&rx->lock);
    free(c);
    return NULL;
}

static void *rx_main(void *arg)
{
    rx_t *rx = arg;
    for (;;) {
        int fd = accept(rx->fd, NULL, NULL);
        if (fd < 0)
            return NULL; // closed by rx_stop
        pthread_mutex_lock(&rx->lock);
        rx->conns++;
        rx->live++;
        for (int i = 0; i < RX_MAX; i++)
            if (rx->live_fds[i] < 0) {
                rx->live_fds[i] = fd;
                break;
            }
        pthread_mutex_unlock(&rx->lock);
        rx_conn_t *c = malloc(sizeof(*c));
        *c = (rx_conn_t){.rx = rx, .fd = fd};
        pthread_t t;
        pthread_create(&t, NULL, rx_conn_main, c);
        pthread_detach(t);
    }
}

static rx_t *rx_start(SSL_CTX *tls)
{
    // rx_stop shuts down the sockets of connections still open; their threads'
    // last SSL_shutdown or write must not end the test with SIGPIPE.
    signal(SIGPIPE, SIG_IGN);
    rx_t *rx = calloc(1, sizeof(*rx));
    rx->tls = tls;
    pthread_mutex_init(&rx->lock, NULL);
    pthread_cond_init(&rx->gone, NULL);
    for (int i = 0; i < RX_MAX; i++)
        rx->live_fds[i] = -1;
    rx->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(rx->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(rx->fd, 64), 0);
    socklen_t al = sizeof(a);
    getsockname(rx->fd, (struct sockaddr *)&a, &al);
    rx->port = ntohs(a.sin_port);
    pthread_create(&rx->tid, NULL, rx_main, rx);
    return rx;
}

static size_t rx_count(rx_t *rx)
{
    pthread_mutex_lock(&rx->lock);
    size_t n = rx->reqs_cnt;
    pthread_mutex_unlock(&rx->lock);
    return n;
}

static void rx_stop(rx_t *rx)
{
    shutdown(rx->fd, SHUT_RDWR);
    close(rx->fd);
    pthread_join(rx->tid, NULL);
    pthread_mutex_lock(&rx->lock);
    for (int i = 0; i < RX_MAX; i++)
        if (rx->live_fds[i] >= 0)
            shutdown(rx->live_fds[i], SHUT_RDWR);
    while (rx->live > 0)
        pthread_cond_wait(&rx->gone, &rx->lock);
    pthread_mutex_unlock(&rx->lock);
    pthread_cond_destroy(&rx->gone);
    for (size_t i = 0; i < rx->reqs_cnt; i++)
        free(rx->reqs[i]);
    if (rx->tls)
        SSL_CTX_free(rx->tls);
    pthread_mutex_destroy(&rx->lock);
    free(rx);
}

// ---- certificates ----

typedef struct cert {
    EVP_PKEY *key;
    X509 *x509;
} cert_t;

// A certificate valid from `from_days` to `to_days` (relative to now), signed by
// `issuer` (NULL: self-signed). A CA when `ca`, else for IP 127.0.0.1.
static cert_t cert_make(const char *cn, const cert_t *issuer, int from_days, int to_days, int ca)
{
    static long serial = 1;
    cert_t c = {.key = EVP_RSA_gen(2048), .x509 = X509_new()};
    ck_assert(c.key && c.x509);
    X509_set_version(c.x509, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c.x509), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c.x509), (long)from_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(c.x509), (long)to_days * 86400);
    X509_set_pubkey(c.x509, c.key);
    X509_NAME *name = X509_get_subject_name(c.x509);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *iss = issuer ? issuer->x509 : c.x509;
    X509_set_issuer_name(c.x509, X509_get_subject_name(iss));
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, iss, c.x509, NULL, NULL, 0);
    const char *exts[][2] = {
        {"basicConstraints", ca ? "critical,CA:TRUE" : "CA:FALSE"},
        {ca ? "keyUsage" : "subjectAltName", ca ? "keyCertSign,cRLSign" : "IP:127.0.0.1"},
    };
    for (size_t i = 0; i < 2; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        ck_assert(ext != NULL);
        X509_add_ext(c.x509, ext, -1);
        X509_EXTENSION_free(ext);
    }
    ck_assert(X509_sign(c.x509, issuer ? issuer->key : c.key, EVP_sha256()) > 0);
    return c;
}

static void cert_free(cert_t *c)
{
    EVP_PKEY_free(c->key);
    X509_free(c->x509);
}

static void cert_write(const cert_t *c, const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    PEM_write_X509(f, c->x509);
    fclose(f);
}

// A TLS server context presenting `leaf`; with `client_ca`, it refuses clients
// without a certificate from that CA.
static SSL_CTX *tls_server(const cert_t *leaf, const cert_t *client_ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ck_assert(SSL_CTX_use_certificate(ctx, leaf->x509) == 1);
    ck_assert(SSL_CTX_use_PrivateKey(ctx, leaf->key) == 1);
    if (client_ca) {
        X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), client_ca->x509);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
}

// ---- a delivery pool ----

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

typedef struct pool {
    hk_config_t *cfg;
    hk_dispatch_t *dispatch;
    hk_netguard_t *guard;
    hk_deliver_t *dl;
    pthread_mutex_t lock;
    hk_task_t *done; // finished tasks, newest first
    size_t done_cnt;
    hk_task_t *cancelled; // tasks back from hk_deliver_cancel*, newest first
    size_t cancelled_cnt;
} pool_t;

static pool_t pool;
static char dir[256];

static void on_done(hk_task_t *task, void *arg)
{
    pool_t *p = arg;
    hk_dispatch_finish(p->dispatch, task, hk_clock_mono_ms());
    pthread_mutex_lock(&p->lock);
    task->next = p->done;
    p->done = task;
    p->done_cnt++;
    pthread_mutex_unlock(&p->lock);
}

// A cancelled transfer gives its lane slot back, as worker/pipeline.c does.
static void on_cancel(hk_task_t *task, void *arg)
{
    pool_t *p = arg;
    hk_dispatch_abandon(p->dispatch, task);
    pthread_mutex_lock(&p->lock);
    task->next = p->cancelled;
    p->cancelled = task;
    p->cancelled_cnt++;
    pthread_mutex_unlock(&p->lock);
}

static void on_divert(hk_task_t *task, hk_divert_t why, int64_t due_ms, void *arg)
{
    (void)why, (void)due_ms, (void)arg;
    hk_task_destroy(task);
}

// Starts a pool from a config file whose [delivery] section gets `delivery_extra`
// lines, and whose other sections are `extra`.
static void pool_start(const char *delivery_extra, const char *extra)
{
    char path[300], err[512];
    snprintf(path, sizeof(path), "%s/hookd.conf", dir);
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fprintf(f,
            "[delivery]\nthreads = 1\nmax_transfers_per_thread = 1\nallow_cidrs = 127.0.0.0/8\n"
            "timeout_ms = 5000\n%s\n[signing]\nsecret = " SECRET "\n%s\n",
            delivery_extra, extra);
    fclose(f);
    char *envp[] = {NULL};
    pool.cfg = hk_config_load(path, envp, err, sizeof(err));
    ck_assert_msg(pool.cfg != NULL, "%s", err);
    hk_dispatch_opts_t dopts = {
        .breaker = {.window = 20,
                    .min_calls = 10,
                    .failure_rate = 0.5,
                    .consecutive_failures = 1000,
                    .open_ms = 30000,
                    .max_open_ms = 60000,
                    .probes = 3},
        .lane = {.initial = 32, .min = 1, .max = 256, .decrease = 0.9},
        .inline_max_ms = 30000,
        .divert = on_divert,
    };
    pool.dispatch = hk_dispatch_new(&dopts);
    pool.guard = hk_netguard_new(pool.cfg->delivery_allow_cidrs, err, sizeof(err));
    ck_assert_msg(pool.guard != NULL, "%s", err);
    pthread_mutex_init(&pool.lock, NULL);
    hk_deliver_opts_t o = {.cfg = pool.cfg,
                           .dispatch = pool.dispatch,
                           .guard = pool.guard,
                           .on_done = on_done,
                           .on_cancel = on_cancel,
                           .arg = &pool};
    pool.dl = hk_deliver_start(&o, err, sizeof(err));
    ck_assert_msg(pool.dl != NULL, "%s", err);
}

static void pool_stop(void)
{
    hk_deliver_stop(pool.dl);
    while (pool.done) {
        hk_task_t *t = pool.done;
        pool.done = t->next;
        hk_task_destroy(t);
    }
    pool.done_cnt = 0;
    while (pool.cancelled) {
        hk_task_t *t = pool.cancelled;
        pool.cancelled = t->next;
        hk_task_destroy(t);
    }
    hk_dispatch_destroy(pool.dispatch);
    hk_netguard_destroy(pool.guard);
    hk_config_destroy(pool.cfg);
    pthread_mutex_destroy(&pool.lock);
    memset(&pool, 0, sizeof(pool));
}

static int64_t offset_seq;

// A webhook task of partition 0 of "jobs" for `json`.
static hk_task_t *task_of(const char *json)
{
    char reason[512];
    hk_task_t *task = hk_task_new("jobs", 0, offset_seq++, 1, NULL, 0, json, strlen(json));
    ck_assert(task != NULL);
    hk_job_src_t src = {.topic = "jobs", .partition = 0, .offset = task->offset};
    hk_job_defaults_t defs = {.max_attempts = 3, .timeout_ms = 5000, .max_job_bytes = 1 << 20};
    hk_job_t *job = hk_job_parse(json, strlen(json), &src, &defs, reason, sizeof(reason));
    ck_assert_msg(job != NULL, "%s", reason);
    hk_task_set_job(task, job);
    return task;
}

static void submit(const char *json)
{
    hk_dispatch_submit(pool.dispatch, task_of(json));
}

static int done_reached(void *arg)
{
    size_t want = *(size_t *)arg;
    pthread_mutex_lock(&pool.lock);
    size_t n = pool.done_cnt;
    pthread_mutex_unlock(&pool.lock);
    return n >= want;
}

// Waits for `n` finished tasks; returns the newest.
static hk_task_t *wait_done(size_t n)
{
    ck_assert_msg(hk_th_wait_for(done_reached, &n, 30000), "only %zu of %zu attempts finished",
                  pool.done_cnt, n);
    return pool.done;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_deliver.XXXXXX");
    ck_assert(mkdtemp(dir) != NULL);
}

static void teardown(void)
{
    hk_th_rmtree(dir);
}

// ---- tests ----

// The longest header a job may carry (a 256-byte name, an 8192-byte value) goes
// out whole, next to hookd's own headers.
START_TEST(test_longest_job_header_is_sent_whole)
{
    rx_t *rx = rx_start(NULL);
    pool_start("", "");
    char name[257], *value = malloc(8193);
    memset(name, 'N', 256);
    name[0] = 'X', name[1] = '-', name[256] = '\0';
    for (int i = 0; i < 8192; i++)
        value[i] = (char)('a' + i % 26);
    value[8191] = 'Z';
    value[8192] = '\0';
    char *json = NULL;
    ck_assert(
        asprintf(&json,
                 "{\"id\":\"long\",\"url\":\"http://127.0.0.1:%d/h\",\"headers\":{\"%s\":\"%s\","
                 "\"X-Short\":\"s\"},\"body\":{\"a\":1}}",
                 rx->port, name, value) > 0);
    submit(json);
    hk_task_t *t = wait_done(1);
    ck_assert_msg(t->outcome == HK_OUTCOME_DELIVERED, "%s", t->error);
    ck_assert_uint_eq(rx_count(rx), 1);
    char *line = NULL;
    ck_assert(asprintf(&line, "\r\n%s: %s\r\n", name, value) > 0);
    ck_assert_msg(strstr(rx->reqs[0], line) != NULL, "the long header was not sent whole");
    ck_assert(strstr(rx->reqs[0], "\r\nX-Short: s\r\n") != NULL);
    ck_assert(strstr(rx->reqs[0], "\r\nwebhook-id: long\r\n") != NULL);
    free(line);
    free(json);
    free(value);
    pool_stop();
    rx_stop(rx);
}
END_TEST

// Eleven rotated secrets need more room than a signature header has: the attempt
// fails PERMANENT with the reason, and nothing is sent unsigned.
START_TEST(test_signing_failure_fails_permanent_and_sends_nothing)
{
    rx_t *rx = rx_start(NULL);
    pool_start("", "[tenant \"rot\"]\nsecret = " SECRET);
    // The config refuses more secrets than a webhook-signature header carries,
    // so a signing failure cannot come from a valid file any more; deliver must
    // still fail closed if one happens (a secret list changed under it, a bug).
    // Swap in 11 secrets, one past what hk_sign_header can write.
    char many[1024] = "";
    for (int i = 0; i < 11; i++)
        strcat(many, i ? " " SECRET : SECRET);
    hk_config_t *cfg = pool.cfg;
    for (size_t i = 0; i < cfg->tenant_secrets_cnt; i++)
        if (strcmp(cfg->tenant_secrets[i].key, "rot") == 0) {
            free(cfg->tenant_secrets[i].value);
            cfg->tenant_secrets[i].value = strdup(many);
        }
    char *json = NULL;
    ck_assert(asprintf(&json,
                       "{\"id\":\"unsignable\",\"tenant\":\"rot\",\"url\":\"http://127.0.0.1:%d/"
                       "h\",\"body\":{\"a\":1}}",
                       rx->port) > 0);
    submit(json);
    hk_task_t *t = wait_done(1);
    ck_assert_int_eq(t->outcome, HK_OUTCOME_PERMANENT);
    ck_assert_msg(strstr(t->error, "signing failed") != NULL, "%s", t->error);
    // A job of another tenant still goes out, signed: nothing was left stuck.
    free(json);
    ck_assert(asprintf(&json, "{\"id\":\"fine\",\"url\":\"http://127.0.0.1:%d/h\"}", rx->port) > 0);
    submit(json);
    t = wait_done(2);
    ck_assert_msg(t->outcome == HK_OUTCOME_DELIVERED, "%s", t->error);
    ck_assert_uint_eq(rx_count(rx), 1);
    ck_assert(strstr(rx->reqs[0], "webhook-id: fine\r\n") != NULL);
    ck_assert(strstr(rx->reqs[0], "webhook-signature: v1,") != NULL);
    free(json);
    pool_stop();
    rx_stop(rx);
}
END_TEST

static const char *header_of(const char *req, const char *name, char *out, size_t size)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\r\n%s: ", name);
    const char *p = strcasestr(req, needle);
    out[0] = '\0';
    if (p) {
        p += strlen(needle);
        size_t n = strcspn(p, "\r");
        snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), p);
    }
    return out;
}

// One easy handle (one slot) serves every method in turn without a reset: each
// request has its own method, body and headers, and a valid signature.
START_TEST(test_one_handle_serves_each_method_as_its_own_request)
{
    rx_t *rx = rx_start(NULL);
    pool_start("", "");
    static const struct {
        const char *method;
        const char *body; // JSON, NULL = none
    } reqs[] = {{"POST", "{\"a\":1}"}, {"GET", NULL},  {"PUT", "{\"b\":2}"}, {"DELETE", NULL},
                {"PATCH", NULL},       {"POST", NULL}, {"DELETE", "[3]"},    {"GET", NULL}};
    size_t n = sizeof(reqs) / sizeof(reqs[0]);
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        ck_assert(asprintf(&json,
                           "{\"id\":\"m%zu\",\"method\":\"%s\",\"url\":\"http://127.0.0.1:%d/"
                           "m\"%s%s}",
                           i, reqs[i].method, rx->port, reqs[i].body ? ",\"body\":" : "",
                           reqs[i].body ? reqs[i].body : "") > 0);
        submit(json);
        wait_done(i + 1); // one at a time: the same handle every time
        free(json);
    }
    ck_assert_uint_eq(rx_count(rx), n);
    for (size_t i = 0; i < n; i++) {
        const char *req = rx->reqs[i];
        char want[64], id[64], ts[32], sig[600], cl[32];
        snprintf(want, sizeof(want), "%s /m HTTP/1.1\r\n", reqs[i].method);
        ck_assert_msg(strncmp(req, want, strlen(want)) == 0, "request %zu: %.40s", i, req);
        snprintf(want, sizeof(want), "m%zu", i);
        ck_assert_str_eq(header_of(req, "webhook-id", id, sizeof(id)), want);
        const char *body = strstr(req, "\r\n\r\n") + 4;
        size_t blen = strlen(body);
        if (reqs[i].body) {
            ck_assert_str_eq(body, reqs[i].body);
        } else {
            ck_assert_uint_eq(blen, 0);
            if (strcmp(reqs[i].method, "GET") == 0 || strcmp(reqs[i].method, "DELETE") == 0)
                ck_assert_msg(!*header_of(req, "Content-Length", cl, sizeof(cl)) ||
                                  strcmp(cl, "0") == 0,
                              "request %zu has Content-Length %s", i, cl);
        }
        header_of(req, "webhook-timestamp", ts, sizeof(ts));
        header_of(req, "webhook-signature", sig, sizeof(sig));
        ck_assert_int_eq(hk_sign_verify(SECRET, id, ts, body, blen, sig), 1);
    }
    pool_stop();
    rx_stop(rx);
}
END_TEST

static double process_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

// The receiver closes each kept-alive connection while it sits idle in curl's
// cache. The delivery thread keeps an idle socket in epoll between requests (no
// epoll_ctl per request); the receiver's FIN must take it out, not make the loop
// spin, and the next jobs go out on new connections (socket numbers reused).
START_TEST(test_receiver_closing_idle_connections_neither_spins_nor_loses_jobs)
{
    rx_t *rx = rx_start(NULL);
    rx->close_after_ms = 50;
    pool_start("", "");
    for (int i = 0; i < 3; i++) {
        char *json = NULL;
        ck_assert(
            asprintf(&json, "{\"id\":\"c%d\",\"url\":\"http://127.0.0.1:%d/c\"}", i, rx->port) > 0);
        submit(json);
        hk_task_t *t = wait_done((size_t)i + 1);
        ck_assert_msg(t->outcome == HK_OUTCOME_DELIVERED, "job %d: %s", i, t->error);
        free(json);
        // The receiver closes after 50 ms; then watch the idle process for a
        // second. Idle, the delivery thread wakes about once; a loop spinning on
        // the closed socket's readiness burns what the scheduler gives it (on a
        // loaded 2-core machine still well over 100 ms of a second).
        hk_clock_sleep_ms(200);
        double cpu0 = process_cpu_ms();
        hk_clock_sleep_ms(1000);
        double used = process_cpu_ms() - cpu0;
        ck_assert_msg(used < 40.0, "after job %d the idle process used %.1f ms of CPU in 1 s", i,
                      used);
    }
    ck_assert_uint_eq(rx_count(rx), 3);
    pthread_mutex_lock(&rx->lock);
    int conns = rx->conns;
    pthread_mutex_unlock(&rx->lock);
    ck_assert_int_eq(conns, 3); // each job found its old connection closed
    pool_stop();
    rx_stop(rx);
}
END_TEST

static int active_is(void *arg)
{
    return hk_deliver_active(pool.dl) == *(size_t *)arg;
}

// A batch's cancel takes exactly its own items' transfers, and a revoke of the
// partition its batch job came from takes that partition's webhooks but not the
// items that carry its position: those are their batch's to cancel. The receiver
// accepts connections (the kernel's backlog) and never answers, so all four
// transfers stay in flight until cancelled.
START_TEST(test_cancel_by_owner_takes_only_that_batchs_items)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    pool_start("max_transfers_per_thread = 4", "");
    int batch_a, batch_b; // two batches: only their addresses matter
    hk_task_t *t[4];
    for (int i = 0; i < 4; i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"id\":\"x%d\",\"url\":\"http://127.0.0.1:%d/x\",\"timeout_ms\":120000}", i,
                 ntohs(a.sin_port));
        t[i] = task_of(json); // all four from partition 0 of "jobs"
    }
    t[0]->kind = t[1]->kind = HK_TASK_BATCH_ITEM;
    t[0]->owner = &batch_a;
    t[1]->owner = &batch_b;
    for (int i = 0; i < 4; i++)
        hk_dispatch_submit(pool.dispatch, t[i]);
    size_t want = 4;
    ck_assert_msg(hk_th_wait_for(active_is, &want, 30000), "%zu transfers in flight",
                  hk_deliver_active(pool.dl));

    hk_deliver_cancel_owned(pool.dl, NULL); // no owner: nothing
    ck_assert_uint_eq(pool.cancelled_cnt, 0);
    hk_deliver_cancel_owned(pool.dl, &batch_a);
    ck_assert_uint_eq(pool.cancelled_cnt, 1); // on_cancel ran before the call returned
    ck_assert_ptr_eq(pool.cancelled, t[0]);
    ck_assert_int_eq(t[0]->cancelled, 1);
    ck_assert_uint_eq(hk_deliver_active(pool.dl), 3);

    hk_deliver_cancel(pool.dl, "jobs", 0);
    ck_assert_uint_eq(pool.cancelled_cnt, 3);
    for (hk_task_t *c = pool.cancelled; c; c = c->next)
        ck_assert_msg(c != t[1], "the revoke cancelled batch b's item");
    ck_assert_uint_eq(hk_deliver_active(pool.dl), 1); // batch b's item, still sending
    ck_assert_uint_eq(pool.done_cnt, 0);
    pool_stop();
    close(fd);
}
END_TEST

// ---- TLS ----

static cert_t ca, wrong_ca, leaf, expired, client;

static void tls_setup(void)
{
    setup();
    ca = cert_make("hookd test CA", NULL, -1, 30, 1);
    wrong_ca = cert_make("someone else's CA", NULL, -1, 30, 1);
    leaf = cert_make("127.0.0.1", &ca, -1, 30, 0);
    expired = cert_make("127.0.0.1", &ca, -30, -1, 0);
    client = cert_make("hookd client", &ca, -1, 30, 0);
    char path[300];
    snprintf(path, sizeof(path), "%s/client.pem", dir);
    cert_write(&client, path);
    snprintf(path, sizeof(path), "%s/client.key", dir);
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    PEM_write_PrivateKey(f, client.key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    cert_write(&ca, path);
    snprintf(path, sizeof(path), "%s/wrong_ca.pem", dir);
    cert_write(&wrong_ca, path);
}

static void tls_teardown(void)
{
    cert_free(&ca);
    cert_free(&wrong_ca);
    cert_free(&leaf);
    cert_free(&expired);
    cert_free(&client);
    teardown();
}

// Sends one job to an HTTPS receiver with delivery.ca_file = <dir>/<ca_name>
// and more config `sections`; returns the finished task (owned by the pool until
// pool_stop).
static hk_task_t *send_tls_with(rx_t *rx, const char *ca_name, const char *sections)
{
    char line[400];
    snprintf(line, sizeof(line), "ca_file = %s/%s", dir, ca_name);
    pool_start(line, sections);
    char *json = NULL;
    ck_assert(asprintf(&json, "{\"id\":\"tls\",\"url\":\"https://127.0.0.1:%d/t\",\"body\":{}}",
                       rx->port) > 0);
    submit(json);
    free(json);
    return wait_done(1);
}

static hk_task_t *send_tls(rx_t *rx, const char *ca_name)
{
    return send_tls_with(rx, ca_name, "");
}

START_TEST(test_tls_receiver_signed_by_the_configured_ca_gets_the_job)
{
    rx_t *rx = rx_start(tls_server(&leaf, NULL));
    hk_task_t *t = send_tls(rx, "ca.pem");
    ck_assert_msg(t->outcome == HK_OUTCOME_DELIVERED, "%s", t->error);
    ck_assert_uint_eq(rx_count(rx), 1);
    ck_assert(strstr(rx->reqs[0], "webhook-signature: v1,") != NULL);
    pool_stop();
    rx_stop(rx);
}
END_TEST

START_TEST(test_tls_wrong_ca_is_retryable_with_the_tls_error)
{
    rx_t *rx = rx_start(tls_server(&leaf, NULL));
    hk_task_t *t = send_tls(rx, "wrong_ca.pem");
    ck_assert_int_eq(t->outcome, HK_OUTCOME_RETRYABLE);
    ck_assert_int_eq(t->curl_code, CURLE_PEER_FAILED_VERIFICATION);
    ck_assert_msg(strstr(t->error, "certificate") != NULL, "%s", t->error);
    ck_assert_uint_eq(rx_count(rx), 0);
    pool_stop();
    rx_stop(rx);
}
END_TEST

START_TEST(test_tls_expired_certificate_is_retryable_with_the_tls_error)
{
    rx_t *rx = rx_start(tls_server(&expired, NULL));
    hk_task_t *t = send_tls(rx, "ca.pem");
    ck_assert_int_eq(t->outcome, HK_OUTCOME_RETRYABLE);
    ck_assert_int_eq(t->curl_code, CURLE_PEER_FAILED_VERIFICATION);
    ck_assert_msg(strstr(t->error, "expired") != NULL, "%s", t->error);
    ck_assert_uint_eq(rx_count(rx), 0);
    pool_stop();
    rx_stop(rx);
}
END_TEST

START_TEST(test_tls_refused_without_client_certificate_is_retryable)
{
    rx_t *rx = rx_start(tls_server(&leaf, &ca));
    hk_task_t *t = send_tls(rx, "ca.pem");
    ck_assert_int_eq(t->outcome, HK_OUTCOME_RETRYABLE);
    ck_assert_msg(t->curl_code != CURLE_OK && t->http_status == 0, "curl %d status %d",
                  t->curl_code, t->http_status);
    ck_assert_msg(t->error[0] != '\0', "no TLS error kept");
    ck_assert_uint_eq(rx_count(rx), 0);
    pool_stop();
    rx_stop(rx);
}
END_TEST

// [endpoint] ca_file wins over delivery.ca_file for its receiver.
START_TEST(test_tls_endpoint_ca_file_wins_over_the_delivery_one)
{
    rx_t *rx = rx_start(tls_server(&leaf, NULL));
    char sections[1024];
    snprintf(sections, sizeof(sections),
             "[endpoint \"https://127.0.0.1:%d\"]\nca_file = %s/ca.pem\n", rx->port, dir);
    hk_task_t *t = send_tls_with(rx, "wrong_ca.pem", sections);
    ck_assert_msg(t->outcome == HK_OUTCOME_DELIVERED, "%s", t->error);
    ck_assert_uint_eq(rx_count(rx), 1);
    pool_stop();
    rx_stop(rx);
}
END_TEST

// mTLS: the [endpoint] client certificate gets through a receiver that refuses
// clients without one.
START_TEST(test_tls_endpoint_client_certificate_passes_mtls)
{
    rx_t *rx = rx_start(tls_server(&leaf, &ca));
    char sections[1024];
    snprintf(sections, sizeof(sections),
             "[endpoint \"https://127.0.0.1:%d\"]\nclient_cert = %s/client.pem\nclient_key = "
             "%s/client.key\nhttp2 = off\n",
             rx->port, dir, dir);
    hk_task_t *t = send_tls_with(rx, "ca.pem", sections);
    ck_assert_msg(t->outcome == HK_OUTCOME_DELIVERED, "%s", t->error);
    ck_assert_uint_eq(rx_count(rx), 1);
    pool_stop();
    rx_stop(rx);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->curl = true;
    Suite *s = suite_create("deliver");
    TCase *tc = tcase_create("requests");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_longest_job_header_is_sent_whole);
    tcase_add_test(tc, test_signing_failure_fails_permanent_and_sends_nothing);
    tcase_add_test(tc, test_one_handle_serves_each_method_as_its_own_request);
    tcase_add_test(tc, test_receiver_closing_idle_connections_neither_spins_nor_loses_jobs);
    tcase_add_test(tc, test_cancel_by_owner_takes_only_that_batchs_items);
    suite_add_tcase(s, tc);
    TCase *tls = tcase_create("tls");
    tcase_set_timeout(tls, 60);
    tcase_add_checked_fixture(tls, tls_setup, tls_teardown);
    tcase_add_test(tls, test_tls_receiver_signed_by_the_configured_ca_gets_the_job);
    tcase_add_test(tls, test_tls_wrong_ca_is_retryable_with_the_tls_error);
    tcase_add_test(tls, test_tls_expired_certificate_is_retryable_with_the_tls_error);
    tcase_add_test(tls, test_tls_refused_without_client_certificate_is_retryable);
    tcase_add_test(tls, test_tls_endpoint_ca_file_wins_over_the_delivery_one);
    tcase_add_test(tls, test_tls_endpoint_client_certificate_passes_mtls);
    suite_add_tcase(s, tls);
    return s;
}
