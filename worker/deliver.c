// deliver: N threads, each an event loop around one curl multi handle driven by
// curl's socket API and epoll, with M preallocated transfer slots.
//
// A thread's turn: take tasks for its free slots from the dispatcher, start them,
// wait in epoll for socket activity, curl's timer, the next delayed task or a
// wakeup (eventfd), let curl act on exactly the sockets that are ready, and finish
// what completed. curl only ever looks at the sockets that moved, so a thread with
// 64 transfers does not walk all 64 on every event.
//
// The request path is lean on purpose: options that never change are set once per
// easy handle; a request sets only its URL, timeouts, method and header list; the
// header list lives in the slot (nodes and line buffer grow but are never freed
// between requests), so a steady stream of jobs allocates nothing here.
#include "worker/deliver.h"
#include "base/clock.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "retry/backoff.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/sign.h"

#define DL_EVENTS_MAX   64
#define DL_IDLE_WAIT_MS 1000 // longest sleep with nothing to do: the loop notices a stop anyway
#define DL_DNS_CACHE_S  1    // seconds a resolved host is kept (see slot_init)
#define DL_OWN_HEADERS                                                                             \
    7 // webhook-id, -timestamp, -signature, Idempotency-Key,
      // Content-Type, Expect, spare

typedef struct dl_thread dl_thread_t;

typedef struct dl_slot {
    CURL *easy;
    hk_task_t *task;
    dl_thread_t *th;
    // The request's header list, built in place: nodes[] link lines held in buf.
    struct curl_slist *nodes;
    size_t nodes_cap;
    char *buf;
    size_t buf_cap;
    size_t resp_bytes;
    char retry_after[128]; // Retry-After of the response, "" when none
    int blocked;
    int peer_disabled; // the connected address is a disabled endpoint (dispatch rule)
    char blocked_addr[64];
    const char *blocked_why;
    char errbuf[CURL_ERROR_SIZE];
    // The [endpoint] TLS/HTTP settings last set on the handle (&dl_defaults_ep:
    // the [delivery] ones): set again only when the next request's differ.
    const hk_endpoint_conf_t *ep_applied;
} dl_slot_t;

struct dl_thread {
    hk_deliver_t *dl;
    pthread_t tid;
    CURLM *multi;
    CURLSH *share; // TLS sessions (and DNS) shared by this thread's handles
    int epfd;
    int evfd;             // wakeups: new work, a freed lane slot, cancel, stop
    int64_t timer_due_ms; // curl's timer (monotonic ms), -1 none
    int index;            // dispatcher slot
    dl_slot_t *slots;     // max_transfers_per_thread of them
    dl_slot_t **free;     // stack of free slots
    int free_cnt;
    int slots_cnt;
    // What epoll holds per fd (EPOLLIN/EPOLLOUT, 0 none) and whether the socket is
    // one of ours (opened in open_socket, closed in close_socket). curl drops a
    // connection's socket at the end of each transfer and asks for it again at
    // the next one; an own socket keeps its EPOLLIN registration meanwhile, which
    // saves the two epoll_ctl calls per request. See on_socket.
    uint8_t *fd_reg;
    uint8_t *fd_own;
    uint8_t *fd_want; // curl watches it (0 after CURL_POLL_REMOVE)
    int fd_cap;
    int completed;  // transfers finished in this turn
    int self_woken; // the dispatcher woke this thread from this thread (see wake)
    atomic_int active;
    atomic_uint_fast64_t cancel_done; // last cancel request this thread carried out
};

struct hk_deliver_s {
    hk_deliver_opts_t dl_opts;
    dl_thread_t *dl_threads;
    int dl_threads_cnt;
    atomic_int dl_run;
    pthread_mutex_t dl_cancel_lock; // one cancel request at a time
    char dl_cancel_topic[256];      // with the partition; "" when by owner
    int32_t dl_cancel_partition;
    const void *dl_cancel_owner;        // a batch's items (task->owner)
    atomic_uint_fast64_t dl_cancel_seq; // bumped per request
    int dl_ep_tls;                      // some [endpoint] sets ca_file, client_cert or http2
    char *dl_default_ca;                // curl's built-in CA bundle (CURLINFO_CAINFO), or NULL
};

static const hk_endpoint_conf_t dl_defaults_ep; // stands for "no [endpoint] settings"

static void format_addr(const struct sockaddr *sa, char *out, size_t size)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)size))
        snprintf(out, size, "?");
}

// Grows the per-fd tables to hold `fd`. -1 when out of memory (the caller then
// falls back to plain epoll bookkeeping for that fd).
static int fd_room(dl_thread_t *th, int fd)
{
    if (fd < th->fd_cap)
        return 0;
    if (fd < 0)
        return -1;
    int cap = th->fd_cap ? th->fd_cap : 256;
    while (cap <= fd)
        cap *= 2;
    uint8_t *t[3] = {th->fd_reg, th->fd_own, th->fd_want};
    for (int i = 0; i < 3; i++) {
        uint8_t *n = realloc(t[i], (size_t)cap);
        if (!n)
            return -1;
        memset(n + th->fd_cap, 0, (size_t)(cap - th->fd_cap));
        t[i] = n;
        if (i == 0)
            th->fd_reg = n;
        else if (i == 1)
            th->fd_own = n;
        else
            th->fd_want = n;
    }
    th->fd_cap = cap;
    return 0;
}

// curl calls this for every address it is about to connect to: the guard judges the
// address actually used, after DNS, so a name that resolves to 127.0.0.1 is caught.
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    dl_slot_t *slot = clientp;
    if (purpose == CURLSOCKTYPE_IPCXN) {
        const char *why = NULL;
        if (!hk_netguard_check(slot->th->dl->dl_opts.guard, &addr->addr, addr->addrlen, &why)) {
            slot->blocked = 1;
            slot->blocked_why = why;
            format_addr(&addr->addr, slot->blocked_addr, sizeof(slot->blocked_addr));
            return CURL_SOCKET_BAD;
        }
    }
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    dl_thread_t *th = slot->th;
    if (fd >= 0 && fd_room(th, fd) == 0) {
        th->fd_own[fd] = 1;
        th->fd_reg[fd] = 0;
        th->fd_want[fd] = 0;
    }
    return fd;
}

// Every socket open_socket made is closed here (curl calls it for the
// connection's sockets), so the epoll bookkeeping of a number cannot outlive its
// socket: close() takes the fd out of epoll, and the table forgets it.
static int close_socket(void *clientp, curl_socket_t fd)
{
    dl_slot_t *slot = clientp;
    dl_thread_t *th = slot->th;
    if (fd >= 0 && fd < th->fd_cap)
        th->fd_own[fd] = th->fd_reg[fd] = th->fd_want[fd] = 0;
    return close(fd);
}

// Before each request, on a new or a reused connection: rules that name an
// address apply to the peer actually connected, whatever name led there.
static int prereq(void *clientp, char *peer_ip, char *local_ip, int peer_port, int local_port)
{
    (void)local_ip, (void)local_port;
    dl_slot_t *slot = clientp;
    if (!hk_dispatch_peer_disabled(slot->th->dl->dl_opts.dispatch, slot->task->job->url, peer_ip,
                                   peer_port))
        return CURL_PREREQFUNC_OK;
    slot->peer_disabled = 1;
    snprintf(slot->blocked_addr, sizeof(slot->blocked_addr), "%s", peer_ip);
    return CURL_PREREQFUNC_ABORT;
}

// Response bodies are not needed: count them, and stop a transfer that sends more
// than the cap (the status line is already in hand by then).
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    dl_slot_t *slot = userdata;
    size_t n = size * nmemb;
    slot->resp_bytes += n;
    if ((int64_t)slot->resp_bytes > slot->th->dl->dl_opts.cfg->delivery_max_response_bytes)
        return CURL_WRITEFUNC_ERROR;
    return n;
}

// Keeps the Retry-After header (the only response header hookd acts on).
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    dl_slot_t *slot = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) - 1 && (buf[0] == 'r' || buf[0] == 'R') &&
        strncasecmp(buf, name, sizeof(name) - 1) == 0) {
        const char *v = buf + sizeof(name) - 1;
        size_t len = n - (sizeof(name) - 1);
        while (len > 0 && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len >= sizeof(slot->retry_after))
            len = sizeof(slot->retry_after) - 1;
        memcpy(slot->retry_after, v, len);
        slot->retry_after[len] = '\0';
    }
    return n;
}

// ---- header list, built in the slot ----

typedef struct hdr_builder {
    dl_slot_t *slot;
    size_t used; // bytes of slot->buf taken
    size_t cnt;  // nodes taken
} hdr_builder_t;

// Makes room for `lines` header lines of `bytes` bytes in all. Grows the slot's
// buffers (never shrinks them), so steady traffic reuses the same memory. -1 ENOMEM.
static int hdr_reserve(dl_slot_t *slot, size_t lines, size_t bytes)
{
    if (lines > slot->nodes_cap) {
        struct curl_slist *n = realloc(slot->nodes, lines * sizeof(*n));
        if (!n)
            return -1;
        slot->nodes = n;
        slot->nodes_cap = lines;
    }
    if (bytes > slot->buf_cap) {
        size_t cap = slot->buf_cap ? slot->buf_cap : 1024;
        while (cap < bytes)
            cap *= 2;
        char *b = realloc(slot->buf, cap);
        if (!b)
            return -1;
        slot->buf = b;
        slot->buf_cap = cap;
    }
    return 0;
}

// Appends "name: value" (or `name` alone when value is NULL). The space was
// reserved from the lengths of the very same strings, so nothing is ever cut.
static void hdr_add(hdr_builder_t *hb, const char *name, const char *value)
{
    dl_slot_t *slot = hb->slot;
    char *line = slot->buf + hb->used;
    size_t nl = strlen(name);
    memcpy(line, name, nl);
    size_t len = nl;
    if (value) {
        size_t vl = strlen(value);
        line[len++] = ':';
        line[len++] = ' ';
        memcpy(line + len, value, vl);
        len += vl;
    }
    line[len] = '\0';
    hb->used += len + 1;
    struct curl_slist *node = &slot->nodes[hb->cnt];
    node->data = line;
    node->next = NULL;
    if (hb->cnt > 0)
        slot->nodes[hb->cnt - 1].next = node;
    hb->cnt++;
}

static size_t hdr_len(const char *name, const char *value)
{
    return strlen(name) + (value ? 2 + strlen(value) : 0) + 1;
}

// ---- one attempt ----

static long http_version(hk_http2_t http2)
{
    if (http2 == HK_HTTP2_OFF)
        return CURL_HTTP_VERSION_1_1;
    if (http2 == HK_HTTP2_PRIOR_KNOWLEDGE)
        return CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    return CURL_HTTP_VERSION_2TLS; // auto: h2 over TLS by ALPN, HTTP/1.1 in clear
}

static int has_endpoint_tls(const hk_endpoint_conf_t *ep)
{
    return *ep->ca_file || *ep->client_cert || *ep->client_key || ep->http2 != HK_HTTP2_UNSET;
}

// The receiver's own [endpoint] CA, client certificate and HTTP version, else the
// [delivery] ones. Only when some section sets them. The endpoint key is the one
// computed when the job was attached to its task (base/endpoint.h); a task
// without one (its URL has no key) gets the defaults. Connections are matched on
// these by curl, so no connection made with one client certificate serves a
// request meant for another.
static void apply_endpoint(hk_deliver_t *dl, dl_slot_t *slot, const hk_task_t *task)
{
    const hk_config_t *cfg = dl->dl_opts.cfg;
    const hk_endpoint_conf_t *ep = NULL;
    if (task->endpoint[0])
        ep = hk_config_endpoint(cfg, task->endpoint);
    if (!ep || !has_endpoint_tls(ep))
        ep = &dl_defaults_ep;
    if (ep == slot->ep_applied)
        return;
    slot->ep_applied = ep;
    CURL *e = slot->easy;
    const char *ca = ep->ca_file && *ep->ca_file ? ep->ca_file
                     : *cfg->delivery_ca_file    ? cfg->delivery_ca_file
                                                 : dl->dl_default_ca;
    curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    curl_easy_setopt(e, CURLOPT_SSLCERT,
                     ep->client_cert && *ep->client_cert ? ep->client_cert : NULL);
    curl_easy_setopt(e, CURLOPT_SSLKEY, ep->client_key && *ep->client_key ? ep->client_key : NULL);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     http_version(ep->http2 != HK_HTTP2_UNSET ? ep->http2 : cfg->delivery_http2));
}

static void finish(dl_thread_t *th, dl_slot_t *slot, CURLcode code);

// Ends an attempt that never reached the network (expired, cannot be signed, out
// of memory): the task goes to on_done with its outcome already set.
static void give_back(dl_thread_t *th, dl_slot_t *slot)
{
    hk_task_t *task = slot->task;
    slot->task = NULL;
    th->free[th->free_cnt++] = slot;
    th->dl->dl_opts.on_done(task, th->dl->dl_opts.arg);
}

static void set_method(CURL *e, const hk_job_t *job)
{
    const char *m = job->method;
    int has_body = job->body != NULL;
    if (m[0] == 'G') { // GET
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    } else if (m[0] != 'D' || has_body) {
        // POST, PUT, PATCH, and DELETE with a body: send the bytes as they are.
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, has_body ? job->body : "");
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(m, "POST") == 0 ? NULL : m);
    } else { // DELETE without a body
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
}

static void start(dl_thread_t *th, hk_task_t *task)
{
    const hk_config_t *cfg = th->dl->dl_opts.cfg;
    const hk_job_t *job = task->job;
    dl_slot_t *slot = th->free[--th->free_cnt];
    CURL *e = slot->easy;

    slot->task = task;
    slot->resp_bytes = 0;
    slot->retry_after[0] = '\0';
    slot->blocked = 0;
    slot->peer_disabled = 0;
    slot->blocked_why = NULL;
    slot->errbuf[0] = '\0';

    int64_t now = hk_clock_wall_ms();
    if (job->expires_at_ms && now >= job->expires_at_ms) {
        hk_task_fail(task, HK_OUTCOME_EXPIRED, 0, "expired before attempt %d", task->attempts + 1);
        give_back(th, slot);
        return;
    }
    task->attempts++;
    if (task->attempts == 1)
        task->first_attempt_ms = now;
    hk_metric_add(attempts, 1);

    // Signature first: a request is never sent unsigned while its tenant has
    // secrets. A secret that cannot sign fails the same way every time: permanent.
    char sig[HK_SIGN_HEADER_MAX];
    const char *secrets = hk_config_tenant_secret(cfg, job->tenant);
    int signed_ = 0;
    if (secrets && *secrets) {
        if (hk_sign_header(secrets, job->id, now / 1000, job->body, job->body_len, sig,
                           sizeof(sig)) < 0) {
            hk_task_fail(task, HK_OUTCOME_PERMANENT, 0,
                         "signing failed for tenant %.64s: not sent unsigned", job->tenant);
            give_back(th, slot);
            return;
        }
        signed_ = 1;
    }
    char ts[HK_SIGN_TIMESTAMP_MAX];
    hk_sign_timestamp_text(now / 1000, ts); // the digits the signature covers

    // Headers: the job's own first, then the ones hookd owns (the parser rejected
    // job headers that would collide with them). Sized from the strings themselves.
    size_t lines = job->headers_cnt + DL_OWN_HEADERS, bytes = 0;
    for (size_t i = 0; i < job->headers_cnt; i++)
        bytes += hdr_len(job->headers[i].name, job->headers[i].value);
    bytes += hdr_len("webhook-id", job->id) + hdr_len("webhook-timestamp", ts) +
             (signed_ ? hdr_len("webhook-signature", sig) : 0) +
             hdr_len("Idempotency-Key", job->id) +
             (job->content_type ? hdr_len("Content-Type", job->content_type) : 0) +
             hdr_len("Expect:", NULL);
    if (hdr_reserve(slot, lines, bytes) != 0) {
        // Nothing was sent: the attempt is not charged, the job tries again later.
        task->attempts--;
        hk_task_fail(task, HK_OUTCOME_RETRYABLE, 0, "out of memory building headers");
        give_back(th, slot);
        return;
    }
    hdr_builder_t hb = {.slot = slot};
    for (size_t i = 0; i < job->headers_cnt; i++)
        hdr_add(&hb, job->headers[i].name, job->headers[i].value);
    hdr_add(&hb, "webhook-id", job->id);
    hdr_add(&hb, "webhook-timestamp", ts);
    if (signed_)
        hdr_add(&hb, "webhook-signature", sig);
    hdr_add(&hb, "Idempotency-Key", job->id);
    if (job->content_type)
        hdr_add(&hb, "Content-Type", job->content_type);
    hdr_add(&hb, "Expect:", NULL); // no 100-continue round trip

    // Only what differs between requests; the rest was set once (slot_init).
    if (th->dl->dl_ep_tls)
        apply_endpoint(th->dl, slot, task);
    curl_easy_setopt(e, CURLOPT_URL, job->url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)job->timeout_ms);
    long connect_ms = cfg->delivery_connect_timeout_ms < job->timeout_ms
                          ? cfg->delivery_connect_timeout_ms
                          : job->timeout_ms;
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, slot->nodes);
    set_method(e, job);

    CURLMcode mc = curl_multi_add_handle(th->multi, e);
    if (mc != CURLM_OK) {
        snprintf(slot->errbuf, sizeof(slot->errbuf), "curl_multi_add_handle: %s",
                 curl_multi_strerror(mc));
        atomic_fetch_add(&th->active, 1); // finish() takes it off again
        finish(th, slot, CURLE_FAILED_INIT);
        return;
    }
    atomic_fetch_add(&th->active, 1);
}

static void finish(dl_thread_t *th, dl_slot_t *slot, CURLcode code)
{
    hk_task_t *task = slot->task;
    long status = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_WRITE_ERROR && status > 0)
        code = CURLE_OK; // we cut an oversized body short; the status is what counts

    hk_attempt_result_t res = {.http_status = (int)status,
                               .curl_code = (int)code,
                               .blocked = slot->blocked && status == 0};
    hk_outcome_t outcome = slot->peer_disabled ? HK_OUTCOME_GONE : hk_classify(&res);
    // Per attempt, before main turns a last retryable one into "exhausted".
    curl_off_t total_us = 0;
    if (curl_easy_getinfo(slot->easy, CURLINFO_TOTAL_TIME_T, &total_us) != CURLE_OK)
        total_us = 0;
    hk_metrics_observe_attempt(outcome, (int64_t)total_us);
    task->curl_code = (int)code;
    task->retry_after_ms = -1;
    int64_t delay;
    if (slot->retry_after[0] &&
        hk_backoff_retry_after(slot->retry_after, hk_clock_wall_ms(), &delay) == 0)
        task->retry_after_ms = delay;
    if (outcome == HK_OUTCOME_DELIVERED) {
        task->outcome = outcome;
        task->http_status = (int)status;
        task->error[0] = '\0';
    } else if (slot->peer_disabled) {
        hk_task_fail(task, outcome, 0, "endpoint disabled (by the peer address %s)",
                     slot->blocked_addr);
    } else if (res.blocked) {
        hk_task_fail(task, outcome, 0, "blocked: %s address %s", slot->blocked_why,
                     slot->blocked_addr);
    } else if (status > 0) {
        hk_task_fail(task, outcome, (int)status, "HTTP %ld", status);
    } else {
        // curl's error buffer names the cause (the TLS verify error, the refused
        // connection); it goes into the dead letter after the last attempt.
        hk_task_fail(task, outcome, 0, "%s",
                     slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(code));
    }

    atomic_fetch_sub(&th->active, 1);
    th->completed++;
    give_back(th, slot);
}

// ---- the event loop ----

// curl tells which sockets to watch for what: mirror it into epoll.
//
// A kept-alive connection's socket is dropped by curl when a transfer ends and
// asked for again (EPOLLIN) when the next request goes out on it: an own socket
// (see close_socket) keeps its EPOLLIN registration in between, so a request on a
// warm connection costs no epoll_ctl. The loop takes an idle socket out once it
// reports something curl is not waiting for (the receiver closed it): see
// idle_event. Sockets curl made itself (the resolver's) are mirrored exactly.
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy, (void)socketp;
    dl_thread_t *th = userp;
    int own = s >= 0 && s < th->fd_cap && th->fd_own[s];
    uint32_t cur = own ? th->fd_reg[s] : 0;
    if (what == CURL_POLL_REMOVE) {
        if (own) {
            th->fd_want[s] = 0;
            if (cur == EPOLLIN)
                return 0; // kept: see above
            th->fd_reg[s] = 0;
        }
        // The socket may be closed already (then epoll dropped it by itself).
        epoll_ctl(th->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    uint32_t want = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        want |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        want |= EPOLLOUT;
    if (own) {
        th->fd_want[s] = (uint8_t)want;
        if (cur == want)
            return 0;
        th->fd_reg[s] = (uint8_t)want;
    }
    struct epoll_event ev = {.events = want, .data.fd = s};
    // Own sockets: the table knows. Others: try MOD first, ADD when new.
    int op = own ? (cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD) : EPOLL_CTL_MOD;
    if (epoll_ctl(th->epfd, op, s, &ev) != 0) {
        // Our bookkeeping and the kernel's can part when a number is reused.
        op = errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(th->epfd, op, s, &ev) != 0)
            hk_log(HK_LOG_WARN, "epoll_ctl_failed", "{s:i,s:s}", "fd", (int)s, "error",
                   strerror(errno));
    }
    return 0;
}

// An event on an own socket that curl does not watch: an idle kept-alive
// connection that the receiver closed (or wrote to). Stop watching it so level
// triggering does not spin; curl finds it dead when it next looks at it (before
// reuse, or its once-a-second prune). 1 when the event was such a one.
static int idle_event(dl_thread_t *th, int fd)
{
    if (fd < 0 || fd >= th->fd_cap || !th->fd_own[fd] || th->fd_want[fd])
        return 0;
    if (th->fd_reg[fd]) {
        th->fd_reg[fd] = 0;
        epoll_ctl(th->epfd, EPOLL_CTL_DEL, fd, NULL);
    }
    return 1;
}

// curl asks to be called back after timeout_ms (-1: no timer).
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    dl_thread_t *th = userp;
    th->timer_due_ms = timeout_ms < 0 ? -1 : hk_clock_mono_ms() + timeout_ms;
    return 0;
}

static _Thread_local dl_thread_t *tl_self; // the delivery thread running, NULL elsewhere

static void wake(void *arg)
{
    dl_thread_t *th = arg;
    if (th == tl_self) {
        // A finish in our own on_done freed a lane slot: no syscall to tell
        // ourselves, just do not sleep this turn.
        th->self_woken = 1;
        return;
    }
    uint64_t one = 1;
    ssize_t n = write(th->evfd, &one, sizeof(one));
    (void)n; // a full counter already means "wake up"
}

// Finishes every transfer curl reports done.
static void reap(dl_thread_t *th)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(th->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        dl_slot_t *slot = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&slot);
        curl_multi_remove_handle(th->multi, easy);
        finish(th, slot, code);
    }
}

// Whether a cancel request means this task: a revoked partition's webhooks (a
// batch item carries its batch's source position, but its batch cancels it), or
// one owner's items.
static int cancel_means(const hk_deliver_t *dl, const hk_task_t *task)
{
    if (!dl->dl_cancel_topic[0])
        return task->owner == dl->dl_cancel_owner;
    return task->kind == HK_TASK_WEBHOOK && task->partition == dl->dl_cancel_partition &&
           strcmp(task->topic, dl->dl_cancel_topic) == 0;
}

// Drops this thread's transfers the pending cancel request means; on the delivery
// thread.
static void cancel_matching(dl_thread_t *th)
{
    for (int i = 0; i < th->slots_cnt; i++) {
        dl_slot_t *slot = &th->slots[i];
        hk_task_t *task = slot->task;
        if (!task || !cancel_means(th->dl, task))
            continue;
        curl_multi_remove_handle(th->multi, slot->easy);
        slot->task = NULL;
        th->free[th->free_cnt++] = slot;
        atomic_fetch_sub(&th->active, 1);
        task->cancelled = 1;
        hk_log(HK_LOG_INFO, "transfer_cancelled", "{s:s,s:s,s:i,s:I}", "id", task->job->id, "topic",
               task->topic, "partition", (int)task->partition, "offset", (json_int_t)task->offset);
        if (th->dl->dl_opts.on_cancel)
            th->dl->dl_opts.on_cancel(task, th->dl->dl_opts.arg);
        else
            hk_task_destroy(task);
    }
}

// Posts a cancel request (the topic, or "" with an owner) to every thread and
// waits until each has served it.
static void cancel_request(hk_deliver_t *dl, const char *topic, int32_t partition,
                           const void *owner)
{
    pthread_mutex_lock(&dl->dl_cancel_lock);
    snprintf(dl->dl_cancel_topic, sizeof(dl->dl_cancel_topic), "%s", topic);
    dl->dl_cancel_partition = partition;
    dl->dl_cancel_owner = owner;
    uint64_t seq = atomic_fetch_add(&dl->dl_cancel_seq, 1) + 1;
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        wake(&dl->dl_threads[t]);
    for (int t = 0; t < dl->dl_threads_cnt; t++) {
        while (atomic_load(&dl->dl_threads[t].cancel_done) < seq && atomic_load(&dl->dl_run)) {
            hk_clock_sleep_ms(1);
        }
    }
    pthread_mutex_unlock(&dl->dl_cancel_lock);
}

void hk_deliver_cancel(hk_deliver_t *dl, const char *topic, int32_t partition)
{
    if (topic && topic[0])
        cancel_request(dl, topic, partition, NULL);
}

void hk_deliver_cancel_owned(hk_deliver_t *dl, const void *owner)
{
    if (owner) // webhooks have none: never "every webhook"
        cancel_request(dl, "", -1, owner);
}

static void *thread_main(void *arg)
{
    dl_thread_t *th = arg;
    hk_deliver_t *dl = th->dl;
    hk_task_t **batch = calloc((size_t)th->slots_cnt, sizeof(*batch));
    struct epoll_event evs[DL_EVENTS_MAX];
    int running = 0;
    tl_self = th;

    while (atomic_load(&dl->dl_run)) {
        uint64_t seq = atomic_load(&dl->dl_cancel_seq);
        if (seq != atomic_load(&th->cancel_done)) {
            cancel_matching(th);
            atomic_store(&th->cancel_done, seq);
        }
        // 1. Fill free slots. curl_multi_add_handle arms a 0 ms timer, which step
        // 3 serves, so new transfers go out in this same turn.
        int64_t next_due = INT64_MAX;
        size_t asked = (size_t)th->free_cnt, taken = 0;
        th->completed = 0;
        if (asked > 0 && batch) {
            taken = hk_dispatch_take(dl->dl_opts.dispatch, th->index, batch, asked,
                                     hk_clock_mono_ms(), &next_due);
            for (size_t i = 0; i < taken; i++)
                start(th, batch[i]);
        }

        // 2. Sleep until something can move: a socket, curl's timer, the next
        // delayed task, or a wakeup from the dispatcher (new work, a freed lane
        // slot). Not at all when there may be more to take right now.
        int64_t now = hk_clock_mono_ms();
        int64_t wait = DL_IDLE_WAIT_MS;
        if (th->completed > 0 || th->self_woken || (asked > 0 && taken == asked))
            wait = 0;
        th->self_woken = 0;
        if (th->timer_due_ms >= 0 && th->timer_due_ms - now < wait)
            wait = th->timer_due_ms - now;
        if (th->free_cnt > 0 && next_due != INT64_MAX && next_due - now < wait)
            wait = next_due - now;
        if (wait < 0)
            wait = 0;
        int n = epoll_wait(th->epfd, evs, DL_EVENTS_MAX, (int)wait);

        // 3. Let curl act on what moved, then on its timer.
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == th->evfd) {
                uint64_t v;
                ssize_t r = read(th->evfd, &v, sizeof(v));
                (void)r;
                continue;
            }
            if (idle_event(th, evs[i].data.fd))
                continue;
            int flags = 0;
            if (evs[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(th->multi, evs[i].data.fd, flags, &running);
        }
        if (th->timer_due_ms >= 0 && hk_clock_mono_ms() >= th->timer_due_ms) {
            th->timer_due_ms = -1;
            curl_multi_socket_action(th->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        // 4. Hand over what completed (this frees slots for the next turn).
        reap(th);
    }

    // Abort what is still running: those tasks stay uncommitted and come back.
    for (int i = 0; i < th->slots_cnt; i++) {
        dl_slot_t *slot = &th->slots[i];
        if (!slot->task)
            continue;
        curl_multi_remove_handle(th->multi, slot->easy);
        hk_task_destroy(slot->task);
        slot->task = NULL;
    }
    free(batch);
    return NULL;
}

// ---- set-up ----

// Options that are the same for every request of this handle.
static int slot_init(dl_thread_t *th, dl_slot_t *slot)
{
    const hk_config_t *cfg = th->dl->dl_opts.cfg;
    CURL *e = slot->easy = curl_easy_init();
    if (!e)
        return -1;
    slot->th = th;
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); // never an environment proxy: the guard checks peers
    // No host goes through a proxy: also spares curl reading no_proxy/NO_PROXY
    // from the environment for every transfer.
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "hookd/" HOOKD_VERSION);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, slot);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, slot);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, slot);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, slot);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, slot);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, slot->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, slot);
    curl_easy_setopt(e, CURLOPT_SHARE, th->share);
    // curl keeps each resolved host (an IP literal too) for this long, and drops
    // old entries only when a later transfer ends. With its 60 s default, a burst
    // of distinct hosts left up to a minute of them (~200 bytes each, 5 MB per
    // delivery thread in it_hosts) until the next transfer. Open connections are
    // reused without a lookup, and one second still lets the connections a lane
    // opens together share one (docs/operations.md, Memory).
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, (long)DL_DNS_CACHE_S);
    // HTTP/2 streams share one connection when the receiver offers h2 by ALPN:
    // wait for that answer instead of opening a second connection meanwhile.
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, http_version(cfg->delivery_http2));
    slot->ep_applied = &dl_defaults_ep;
    if (cfg->delivery_ca_file && *cfg->delivery_ca_file &&
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->delivery_ca_file) != CURLE_OK)
        return -1;
    if (cfg->delivery_ca_path && *cfg->delivery_ca_path &&
        curl_easy_setopt(e, CURLOPT_CAPATH, cfg->delivery_ca_path) != CURLE_OK)
        return -1;
    return 0;
}

static int thread_init(hk_deliver_t *dl, dl_thread_t *th, const hk_config_t *cfg)
{
    th->dl = dl;
    th->epfd = th->evfd = -1;
    th->timer_due_ms = -1;
    th->multi = curl_multi_init();
    th->share = curl_share_init();
    th->slots_cnt = cfg->delivery_max_transfers_per_thread;
    th->slots = calloc((size_t)th->slots_cnt, sizeof(*th->slots));
    th->free = calloc((size_t)th->slots_cnt, sizeof(*th->free));
    th->epfd = epoll_create1(EPOLL_CLOEXEC);
    th->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!th->multi || !th->share || !th->slots || !th->free || th->epfd < 0 || th->evfd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = th->evfd};
    if (epoll_ctl(th->epfd, EPOLL_CTL_ADD, th->evfd, &ev) != 0)
        return -1;
    // One thread uses the share: no lock callbacks needed.
    curl_share_setopt(th->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(th->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_multi_setopt(th->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(th->multi, CURLMOPT_SOCKETDATA, th);
    curl_multi_setopt(th->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(th->multi, CURLMOPT_TIMERDATA, th);
    curl_multi_setopt(th->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    // Keep a warm connection per concurrent transfer, to every endpoint in use.
    curl_multi_setopt(th->multi, CURLMOPT_MAXCONNECTS, (long)th->slots_cnt * 4);
    for (int i = 0; i < th->slots_cnt; i++) {
        if (slot_init(th, &th->slots[i]) != 0)
            return -1;
        th->free[th->free_cnt++] = &th->slots[i];
    }
    return 0;
}

hk_deliver_t *hk_deliver_start(const hk_deliver_opts_t *opts, char *errstr, size_t errstr_size)
{
    const hk_config_t *cfg = opts->cfg;
    hk_deliver_t *dl = calloc(1, sizeof(*dl));
    if (!dl) {
        snprintf(errstr, errstr_size, "delivery: out of memory");
        return NULL;
    }
    dl->dl_opts = *opts;
    dl->dl_threads_cnt = cfg->delivery_threads;
    dl->dl_threads = calloc((size_t)dl->dl_threads_cnt, sizeof(*dl->dl_threads));
    atomic_store(&dl->dl_run, 1);
    pthread_mutex_init(&dl->dl_cancel_lock, NULL);
    for (size_t i = 0; i < cfg->endpoints_cnt; i++)
        dl->dl_ep_tls |= has_endpoint_tls(&cfg->endpoints[i]);
    if (dl->dl_ep_tls) {
        // To go back from an endpoint's own CA to the default one.
        CURL *probe = curl_easy_init();
        char *ca = NULL;
        if (probe && curl_easy_getinfo(probe, CURLINFO_CAINFO, &ca) == CURLE_OK && ca)
            dl->dl_default_ca = strdup(ca);
        curl_easy_cleanup(probe);
    }

    for (int t = 0; t < dl->dl_threads_cnt; t++) {
        dl_thread_t *th = &dl->dl_threads[t];
        if (thread_init(dl, th, cfg) != 0) {
            snprintf(errstr, errstr_size,
                     "delivery thread %d: cannot set up (out of memory, file descriptors, or a "
                     "CA setting curl refuses)",
                     t);
            dl->dl_threads_cnt = t + 1;
            hk_deliver_stop(dl);
            return NULL;
        }
        th->index = hk_dispatch_register(opts->dispatch, wake, th);
    }
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        pthread_create(&dl->dl_threads[t].tid, NULL, thread_main, &dl->dl_threads[t]);
    return dl;
}

size_t hk_deliver_active(hk_deliver_t *dl)
{
    size_t n = 0;
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        n += (size_t)atomic_load(&dl->dl_threads[t].active);
    return n;
}

size_t hk_deliver_stop(hk_deliver_t *dl)
{
    if (!dl)
        return 0;
    size_t aborted = hk_deliver_active(dl);
    atomic_store(&dl->dl_run, 0);
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        if (dl->dl_threads[t].evfd >= 0)
            wake(&dl->dl_threads[t]);
    for (int t = 0; t < dl->dl_threads_cnt; t++) {
        dl_thread_t *th = &dl->dl_threads[t];
        if (th->tid)
            pthread_join(th->tid, NULL);
        for (int i = 0; th->slots && i < th->slots_cnt; i++) {
            if (th->slots[i].easy)
                curl_easy_cleanup(th->slots[i].easy);
            free(th->slots[i].nodes);
            free(th->slots[i].buf);
        }
        if (th->multi)
            curl_multi_cleanup(th->multi);
        if (th->share)
            curl_share_cleanup(th->share);
        if (th->epfd >= 0)
            close(th->epfd);
        if (th->evfd >= 0)
            close(th->evfd);
        free(th->slots);
        free(th->free);
        free(th->fd_reg);
        free(th->fd_own);
        free(th->fd_want);
    }
    free(dl->dl_threads);
    free(dl->dl_default_ca);
    pthread_mutex_destroy(&dl->dl_cancel_lock);
    free(dl);
    return aborted;
}
