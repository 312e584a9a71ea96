// libFuzzer harness for the admin API (worker/admin.h). Routing lives in
// libmicrohttpd callbacks, so the harness runs a real admin server in-process on
// 127.0.0.1:0 (with a token, so both the 401 path and authorised routes are
// reached) and sends each input as one HTTP request over loopback:
//   line 1: method, line 2: path (sent as is), then header lines, then an empty
//   line and a body. "Authorization: Bearer fuzz-token" is added when the input's
//   first byte is odd.
// Every 64 inputs /healthz must still answer 200: the server survived.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "retry/aimd.h"
#include "retry/breaker.h"
#include "worker/admin.h"
#include "worker/dispatch.h"
#include "base/log.h"

#define TOKEN "fuzz-token"

static hk_admin_t *g_adm;
static hk_dispatch_t *g_disp;

static int setup(void)
{
    hk_log_set_level(HK_LOG_ERROR);
    hk_dispatch_opts_t opts = {.breaker = hk_breaker_opts_default(),
                               .lane = hk_aimd_opts_default(),
                               .inline_max_ms = 30000};
    g_disp = hk_dispatch_new(&opts);
    char err[256];
    g_adm = g_disp ? hk_admin_start("127.0.0.1:0", TOKEN, g_disp, err, sizeof err) : NULL;
    if (!g_adm) {
        fprintf(stderr, "admin: %s\n", err);
        abort();
    }
    hk_admin_set_ready(g_adm, 1);
    return 0;
}

// Sends `req` and reads the answer until the server closes (or 2 s pass). Returns
// the status code, 0 when none came.
static int exchange(const char *req, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)hk_admin_port(g_adm)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = -1;
    // libFuzzer's timeout timer (SIGALRM) can interrupt a blocking call.
    // An interrupted connect goes on in the background: EALREADY until it is done,
    // then EISCONN.
    while (fd >= 0 && (rc = connect(fd, (struct sockaddr *)&sa, sizeof sa)) != 0 &&
           (errno == EINTR || errno == EALREADY))
        usleep(1000);
    if (rc != 0 && errno == EISCONN)
        rc = 0;
    if (fd < 0 || rc != 0) {
        perror("connect");
        abort(); // the listener must always accept
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; // the server may close early on a bad request
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    char buf[4096];
    size_t got = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = poll(&pfd, 1, 2000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            break;
        ssize_t n = recv(fd, got < 16 ? buf + got : buf + 16,
                         got < 16 ? sizeof buf - got : sizeof buf - 16, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (got < 16)
            got += (size_t)n;
    }
    close(fd);
    int status = 0;
    // buf is not NUL-terminated: copy the three status digits out (scripts/test
    // runs this with ASan's strict_string_checks, which checks atoi's whole string).
    if (got >= 12 && memcmp(buf, "HTTP/1.", 7) == 0) {
        char code[4] = {buf[9], buf[10], buf[11], '\0'};
        status = atoi(code);
    }
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static unsigned runs;
    if (!ready)
        ready = setup() == 0;
    if (size == 0 || size > 8192)
        return 0;
    // Split: method \n path \n headers... \n\n body
    const char *in = (const char *)data + 1, *end = (const char *)data + size;
    const char *nl1 = memchr(in, '\n', (size_t)(end - in));
    if (!nl1)
        return 0;
    const char *nl2 = memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1));
    if (!nl2)
        nl2 = end;
    const char *hdr = nl2 < end ? nl2 + 1 : end;
    const char *body = hdr;
    size_t hdr_len = 0;
    for (const char *p = hdr; p < end; p++)
        if (*p == '\n' && p + 1 < end && p[1] == '\n') {
            hdr_len = (size_t)(p - hdr);
            body = p + 2;
            break;
        }
    if (body == hdr) { // no empty line: everything is headers
        hdr_len = (size_t)(end - hdr);
        body = end;
    }
    size_t body_len = (size_t)(end - body);

    size_t cap = size * 2 + 256;
    char *req = malloc(cap);
    if (!req)
        return 0;
    size_t n = 0;
    n += (size_t)snprintf(req + n, cap - n, "%.*s %.*s HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                          (int)(nl1 - in), in, (int)(nl2 - nl1 - 1), nl1 + 1);
    if (data[0] & 1)
        n += (size_t)snprintf(req + n, cap - n, "Authorization: Bearer " TOKEN "\r\n");
    for (size_t i = 0; i < hdr_len && n + 3 < cap; i++) {
        if (hdr[i] == '\n')
            req[n++] = '\r';
        req[n++] = hdr[i];
    }
    if (hdr_len)
        n += (size_t)snprintf(req + n, cap - n, "\r\n");
    n += (size_t)snprintf(req + n, cap - n, "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                          body_len);
    if (n + body_len <= cap) {
        memcpy(req + n, body, body_len);
        n += body_len;
    }
    exchange(req, n);
    free(req);

    if (++runs % 64 == 0) {
        static const char probe[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
                                    "close\r\n\r\n";
        int st = exchange(probe, sizeof probe - 1);
        if (st != 200) {
            fprintf(stderr, "/healthz answered %d after %u requests\n", st, runs);
            abort();
        }
    }
    return 0;
}
