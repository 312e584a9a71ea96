// curl_floor: what libcurl alone costs per request, on this machine and sink.
//
// The leanest libcurl client of the shape hookd uses: one thread, the multi
// socket API driven by epoll, C easy handles configured once and re-added for
// each request (no reset, no per-request setopt but the header list's text),
// keep-alive connections, the response body discarded. It POSTs the same
// requests as the shared bench's wrk script (a small JSON body, Content-Type,
// webhook-id and Idempotency-Key) and prints the rate and its CPU (utime +
// stime) per 1,000 requests. Read next to wrk's CPU per request (the HTTP
// exchange itself, bench/compare.sh's floor line) and hookd's CPU per job: the
// difference to wrk is libcurl's own cost, the difference to hookd is hookd's.
//
// usage: curl_floor URL [REQUESTS [CONCURRENCY]]     (default 400000 64)
//   CURL_FLOOR_CA_FILE  CA bundle for an https URL
//   CURL_FLOOR_HTTP2=1  HTTP/2 by ALPN over TLS (default HTTP/1.1, as hookd's
//                       delivery.http2 = off)
// Prints: curl_floor n=N secs=S rate=R/s cpu_ms_per_1000=C errors=E
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>

#define CF_HEADERS  3
#define CF_LINE_MAX 96
#define CF_EVENTS   64

typedef struct {
    CURL *easy;
    struct curl_slist nodes[CF_HEADERS];
    char lines[CF_HEADERS][CF_LINE_MAX];
    char body[32];
} cf_slot_t;

typedef struct {
    int epfd;
    long timeout_ms; // curl's timer: -1 none
} cf_loop_t;

static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
    (void)e;
    (void)sockp;
    cf_loop_t *loop = arg;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = s};
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, s, &ev) != 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_ADD, s, &ev);
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *arg)
{
    (void)m;
    ((cf_loop_t *)arg)->timeout_ms = timeout_ms;
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

// The request's three header lines and body, rewritten in place: the list's
// nodes are the slot's own, so nothing is allocated per request.
static void slot_prepare(cf_slot_t *s, long n)
{
    snprintf(s->lines[0], CF_LINE_MAX, "Content-Type: application/json");
    snprintf(s->lines[1], CF_LINE_MAX, "webhook-id: cf-%ld", n);
    snprintf(s->lines[2], CF_LINE_MAX, "Idempotency-Key: cf-%ld", n);
    for (int i = 0; i < CF_HEADERS; i++) {
        s->nodes[i].data = s->lines[i];
        s->nodes[i].next = i + 1 < CF_HEADERS ? &s->nodes[i + 1] : NULL;
    }
    snprintf(s->body, sizeof(s->body), "{\"n\":%ld}", n);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s URL [REQUESTS [CONCURRENCY]]\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    long total = argc > 2 ? strtol(argv[2], NULL, 10) : 400000;
    long conc = argc > 3 ? strtol(argv[3], NULL, 10) : 64;
    if (total < 1 || conc < 1 || conc > 4096) {
        fprintf(stderr, "curl_floor: REQUESTS >= 1 and 1 <= CONCURRENCY <= 4096\n");
        return 2;
    }
    const char *ca = getenv("CURL_FLOOR_CA_FILE");
    int h2 = getenv("CURL_FLOOR_HTTP2") && strcmp(getenv("CURL_FLOOR_HTTP2"), "1") == 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cf_loop_t loop = {.epfd = epoll_create1(EPOLL_CLOEXEC), .timeout_ms = -1};
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, &loop);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, &loop);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, conc);

    cf_slot_t *slots = calloc((size_t)conc, sizeof(*slots));
    if (loop.epfd < 0 || !multi || !slots) {
        fprintf(stderr, "curl_floor: out of resources\n");
        return 1;
    }
    long started = 0, done = 0, errors = 0;
    for (long i = 0; i < conc && started < total; i++) {
        cf_slot_t *s = &slots[i];
        s->easy = curl_easy_init();
        curl_easy_setopt(s->easy, CURLOPT_URL, url);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->nodes);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION,
                         h2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
        if (ca)
            curl_easy_setopt(s->easy, CURLOPT_CAINFO, ca);
        slot_prepare(s, ++started);
        curl_multi_add_handle(multi, s->easy);
    }

    double t0 = now_s();
    int running = 1;
    curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    struct epoll_event evs[CF_EVENTS];
    while (done < total) {
        int n = epoll_wait(loop.epfd, evs, CF_EVENTS,
                           loop.timeout_ms < 0 ? 1000 : (int)loop.timeout_ms);
        if (n == 0)
            curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
        for (int i = 0; i < n; i++) {
            int flags = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                        ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                        ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(multi, evs[i].data.fd, flags, &running);
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result != CURLE_OK || code < 200 || code > 299) {
                if (errors++ == 0)
                    fprintf(stderr, "curl_floor: first error: %s, HTTP %ld\n",
                            curl_easy_strerror(msg->data.result), code);
            }
            done++;
            cf_slot_t *s;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
            curl_multi_remove_handle(multi, e);
            if (started < total) {
                slot_prepare(s, ++started);
                curl_multi_add_handle(multi, e);
            }
        }
        // A handle just added asks for a zero timeout: run it now.
        if (loop.timeout_ms == 0)
            curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    double secs = now_s() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("curl_floor n=%ld secs=%.2f rate=%.0f/s cpu_ms_per_1000=%.1f errors=%ld libcurl=%s\n",
           done, secs, (double)done / secs, cpu * 1000.0 / ((double)done / 1000.0), errors,
           curl_version_info(CURLVERSION_NOW)->version);
    for (long i = 0; i < conc; i++) {
        if (slots[i].easy) {
            curl_multi_remove_handle(multi, slots[i].easy);
            curl_easy_cleanup(slots[i].easy);
        }
    }
    free(slots);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    return errors ? 1 : 0;
}
