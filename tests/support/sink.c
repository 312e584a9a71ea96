// sink: the test/demo webhook receiver (contract in sink.h).
// libmicrohttpd answers on a thread pool (epoll). A delayed answer (/slow, /hang,
// a rule delay) suspends its connection and the timer thread resumes it when due,
// when its client disconnects, or when the sink stops, so waiting never holds a
// pool thread and hk_sink_stop() never waits for a sleeper.
// Locks: `mu` guards records, counters and the id table; `rules_mu` the rules;
// `wait_mu` the waiting list and every context field the timer thread writes.
// None is held while another is taken.
// HTTPS (opts.tls): the certificates come from sinktls.c and libmicrohttpd serves
// them; the daemon is made the same way on every reopen after a refusal.
#include "tests/support/sink.h"
#include "base/clock.h"
#include "base/err.h"

#include "base/sign.h"

#include <jansson.h>
#include <microhttpd.h>

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define SINK_MAX_BODY     (8u << 20)
#define SINK_CONN_LIMIT   4096
#define SINK_THREADS      8
#define SINK_POLL_MS      20 // how often waiting clients are checked for disconnects
#define SINK_MAX_DELAY_MS 3600000
#define SINK_RETRY_MAX    64 // Retry-After value, NUL included
#define SINK_STATUS_MAX   600
#define SINK_SEQ_MAX      64  // codes in one status sequence
#define SINK_REFUSE_LAG   200 // ms between POST /_sink/refuse and the close, so its answer gets out

typedef struct sink_rule {
    char *prefix;
    size_t prefix_len;
    int status;
    int delay_ms;
    char retry_after[SINK_RETRY_MAX];
    int64_t until_ms; // monotonic; the rule lapses then (an outage window). 0: never
    int *seq;         // a status sequence: seq[seq_next++], then the last one (NULL: none)
    size_t nseq, seq_next;
} sink_rule_t;

// How far one path has gone through its /seq/<codes> sequence.
typedef struct sink_seqpos {
    char *path;
    size_t next;
} sink_seqpos_t;

// What the sink does instead of answering.
typedef enum { SINK_ANSWER, SINK_RESET, SINK_CLOSE_MID } sink_action_t;

// Per-webhook-id 2xx count: open addressing, linear probing, load <= 1/2.
typedef struct sink_id {
    char *id; // NULL = empty slot
    uint64_t hash;
    unsigned ok;
} sink_id_t;

// One request in progress (MHD's per-request con_cls).
typedef struct sink_ctx {
    char *body; // NUL-terminated once allocated
    size_t len, cap;
    bool too_big;
    bool waiting; // suspended with its answer decided
    bool abandon; // (wait_mu) resumed to be closed unanswered: sink stopping or client gone
    int status;
    char retry_after[SINK_RETRY_MAX];
    // For the request log line (opts.log_requests), set when recorded.
    bool recorded;
    int answered;  // the status queued, 0 none
    int64_t t0_ms; // monotonic, when the request was complete
    int sig;
    char path[128], method[8], id[256];
} sink_ctx_t;

typedef struct sink_waiter {
    struct MHD_Connection *conn;
    sink_ctx_t *ctx;
    int64_t due_ms; // monotonic; INT64_MAX = never (/hang)
    int fd;
} sink_waiter_t;

struct hk_sink_s {
    struct MHD_Daemon *mhd;
    int port;
    int tls_kind;      // opts.tls
    hk_sinktls_t *tls; // NULL: plain HTTP
    char **secrets;
    size_t nsecrets;
    atomic_uint flap;
    uint64_t rng_seed;
    _Atomic uint64_t rng; // splitmix64 state: each draw adds the golden gamma once

    pthread_mutex_t mu;
    hk_sink_req_t *reqs;
    size_t nreqs, reqs_cap;
    hk_sink_stats_t stats;
    uint64_t by_status[SINK_STATUS_MAX];
    sink_id_t *ids;
    size_t nids, ids_cap;

    pthread_mutex_t rules_mu;
    sink_rule_t *rules;
    size_t nrules, rules_cap;
    sink_seqpos_t *seqpos; // /seq/<codes> positions per path
    size_t nseqpos, seqpos_cap;

    // Listening (libmicrohttpd daemon) state: the timer thread closes and reopens
    // the daemon for hk_sink_refuse; wait_mu guards these, state_cv tells callers.
    unsigned threads;
    bool log_errors, log_requests;
    bool refusing;       // (wait_mu) not listening, or about to stop
    int64_t refuse_at;   // (wait_mu) monotonic: close the daemon then; 0 none asked
    int64_t relisten_at; // (wait_mu) monotonic: listen again then; INT64_MAX never
    int listen_err;      // (wait_mu) 1 when listening again failed
    pthread_cond_t state_cv;

    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;
    pthread_t timer;
    bool timer_started;
    bool stopping;
    sink_waiter_t *waiters;
    size_t nwaiters, waiters_cap;
    struct pollfd *pfds; // timer thread scratch, at least nwaiters entries
    size_t pfds_cap;
};

static struct MHD_Daemon *sink_daemon(hk_sink_t *sink, int port);

static int64_t sink_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Grows *arr (of *cap elements of `size` bytes) to hold `need`. 0 ok, -1 out of memory.
static int sink_grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

// ---- id table (caller holds mu) ----

static uint64_t sink_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static sink_id_t *sink_ids_slot(sink_id_t *ids, size_t cap, const char *id, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (ids[i].id != NULL && (ids[i].hash != h || strcmp(ids[i].id, id) != 0))
        i = (i + 1) & (cap - 1);
    return &ids[i];
}

static sink_id_t *sink_ids_find(hk_sink_t *sink, const char *id)
{
    if (sink->ids_cap == 0)
        return NULL;
    sink_id_t *slot = sink_ids_slot(sink->ids, sink->ids_cap, id, sink_hash(id));
    return slot->id ? slot : NULL;
}

// Adds one 2xx for id; returns the new count, 0 when out of memory.
static unsigned sink_ids_add_ok(hk_sink_t *sink, const char *id)
{
    if ((sink->nids + 1) * 2 > sink->ids_cap) {
        size_t ncap = sink->ids_cap ? sink->ids_cap * 2 : 1024;
        sink_id_t *nids = calloc(ncap, sizeof *nids);
        if (nids == NULL)
            return 0;
        for (size_t i = 0; i < sink->ids_cap; i++) {
            if (sink->ids[i].id != NULL)
                *sink_ids_slot(nids, ncap, sink->ids[i].id, sink->ids[i].hash) = sink->ids[i];
        }
        free(sink->ids);
        sink->ids = nids;
        sink->ids_cap = ncap;
    }
    uint64_t h = sink_hash(id);
    sink_id_t *slot = sink_ids_slot(sink->ids, sink->ids_cap, id, h);
    if (slot->id == NULL) {
        slot->id = strdup(id);
        if (slot->id == NULL)
            return 0;
        slot->hash = h;
        sink->nids++;
    }
    return ++slot->ok;
}

static void sink_ids_clear(hk_sink_t *sink)
{
    for (size_t i = 0; i < sink->ids_cap; i++)
        free(sink->ids[i].id);
    free(sink->ids);
    sink->ids = NULL;
    sink->nids = sink->ids_cap = 0;
}

// ---- deciding the answer ----

// One splitmix64 draw. The state only ever advances by a fetch_add, so concurrent
// answering threads each get a distinct draw of the same sequence.
static uint64_t sink_rand(hk_sink_t *sink)
{
    uint64_t z = atomic_fetch_add(&sink->rng, 0x9e3779b97f4a7c15ull) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct sink_plan {
    int status; // 0 = never answer
    int delay_ms;
    char retry_after[SINK_RETRY_MAX];
    sink_action_t action;
} sink_plan_t;

// True when url is `mode` or below it; *rest is what follows "mode/" ("" if none).
static bool sink_path_is(const char *url, const char *mode, const char **rest)
{
    size_t n = strlen(mode);
    if (strncmp(url, mode, n) != 0 || (url[n] != '\0' && url[n] != '/'))
        return false;
    *rest = url[n] == '/' ? url + n + 1 : url + n;
    return true;
}

// The decimal number that makes up the path segment at s, or -1 (empty, not
// digits, above max).
static long sink_seg_num(const char *s, long max)
{
    long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > max)
            return -1;
    }
    return (p == s || (*p != '\0' && *p != '/')) ? -1 : v;
}

// Copies a header value if it fits and has no control characters. 0 ok, -1 not.
static int sink_copy_header_value(char *dst, size_t dst_size, const char *src, size_t len)
{
    if (len == 0 || len >= dst_size)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f)
            return -1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

// Parses "<c1>,<c2>,..." (each 100..599, at most SINK_SEQ_MAX, up to the next '/')
// into codes. The count, 0 when malformed.
static size_t sink_parse_seq(const char *s, int *codes)
{
    size_t n = 0;
    for (;;) {
        long c = 0;
        const char *p = s;
        for (; *p >= '0' && *p <= '9' && c < 1000; p++)
            c = c * 10 + (*p - '0');
        if (p == s || c < 100 || c > 599 || n == SINK_SEQ_MAX)
            return 0;
        codes[n++] = (int)c;
        if (*p == '\0' || *p == '/')
            return n;
        if (*p != ',')
            return 0;
        s = p + 1;
    }
}

// The next code of the /seq sequence at `url` (its own position per path).
static int sink_seq_next(hk_sink_t *sink, const char *url, const int *codes, size_t n)
{
    pthread_mutex_lock(&sink->rules_mu);
    size_t i = 0;
    while (i < sink->nseqpos && strcmp(sink->seqpos[i].path, url) != 0)
        i++;
    if (i == sink->nseqpos) {
        char *path = strdup(url);
        if (path == NULL || sink_grow((void **)&sink->seqpos, &sink->seqpos_cap, i + 1,
                                      sizeof *sink->seqpos) != 0) {
            free(path);
            pthread_mutex_unlock(&sink->rules_mu);
            return 500;
        }
        sink->seqpos[sink->nseqpos++] = (sink_seqpos_t){.path = path};
    }
    size_t k = sink->seqpos[i].next++;
    pthread_mutex_unlock(&sink->rules_mu);
    return codes[k < n ? k : n - 1];
}

static void sink_plan_builtin(hk_sink_t *sink, const char *url, sink_plan_t *plan)
{
    const char *rest;
    plan->status = 200;
    if (sink_path_is(url, "/status", &rest)) {
        long code = sink_seg_num(rest, 999);
        plan->status = (code >= 100 && code <= 599) ? (int)code : 400;
    } else if (sink_path_is(url, "/slow", &rest)) {
        long ms = sink_seg_num(rest, SINK_MAX_DELAY_MS);
        if (ms < 0)
            plan->status = 400;
        else
            plan->delay_ms = (int)ms;
    } else if (sink_path_is(url, "/hang", &rest)) {
        plan->status = 0;
    } else if (sink_path_is(url, "/flap", &rest)) {
        plan->status = atomic_fetch_add(&sink->flap, 1) % 2 == 0 ? 500 : 200;
    } else if (sink_path_is(url, "/random-fail", &rest)) {
        long pct = sink_seg_num(rest, 100);
        if (pct < 0)
            plan->status = 400;
        else
            plan->status = (long)(sink_rand(sink) % 100) < pct ? 503 : 200;
    } else if (sink_path_is(url, "/random-429", &rest)) {
        // Back-pressure half the time (or <pct>%): 429 with "Retry-After: 1".
        long pct = sink_seg_num(rest, 100);
        if (pct < 0) {
            plan->status = 400;
        } else if ((long)(sink_rand(sink) % 100) < pct) {
            plan->status = 429;
            snprintf(plan->retry_after, sizeof plan->retry_after, "1");
        } else {
            plan->status = 200;
        }
    } else if (sink_path_is(url, "/down-until", &rest)) {
        // An outage with a known end: 503 until <unix ms>, then 200.
        char *end;
        long long until = strtoll(rest, &end, 10);
        if (end == rest || (*end != '\0' && *end != '/'))
            plan->status = 400;
        else
            plan->status = hk_clock_wall_ms() < until ? 503 : 200;
    } else if (sink_path_is(url, "/seq", &rest)) {
        int codes[SINK_SEQ_MAX];
        size_t n = sink_parse_seq(rest, codes);
        plan->status = n ? sink_seq_next(sink, url, codes, n) : 400;
    } else if (sink_path_is(url, "/reset", &rest)) {
        plan->status = 0;
        plan->action = SINK_RESET;
    } else if (sink_path_is(url, "/close-mid", &rest)) {
        plan->status = 0;
        plan->action = SINK_CLOSE_MID;
    } else if (sink_path_is(url, "/retry-after", &rest)) {
        const char *end = strchr(rest, '/');
        size_t len = end ? (size_t)(end - rest) : strlen(rest);
        bool ok =
            sink_copy_header_value(plan->retry_after, sizeof plan->retry_after, rest, len) == 0;
        plan->status = ok ? 429 : 400;
    }
}

static void sink_plan(hk_sink_t *sink, const char *url, sink_plan_t *plan)
{
    memset(plan, 0, sizeof *plan);
    sink_rule_t *best = NULL;
    int64_t now = sink_mono_ms();
    pthread_mutex_lock(&sink->rules_mu);
    for (size_t i = 0; i < sink->nrules; i++) {
        sink_rule_t *r = &sink->rules[i];
        if ((best == NULL || r->prefix_len > best->prefix_len) &&
            (r->until_ms == 0 || now < r->until_ms) && strncmp(url, r->prefix, r->prefix_len) == 0)
            best = r;
    }
    if (best != NULL) {
        plan->status = best->status;
        if (best->seq != NULL) {
            size_t k = best->seq_next++;
            plan->status = best->seq[k < best->nseq ? k : best->nseq - 1];
        }
        plan->delay_ms = best->delay_ms;
        memcpy(plan->retry_after, best->retry_after, sizeof plan->retry_after);
    }
    pthread_mutex_unlock(&sink->rules_mu);
    if (best == NULL)
        sink_plan_builtin(sink, url, plan);
}

// ---- recording ----

static void sink_copy_str(char *dst, size_t dst_size, const char *src)
{
    snprintf(dst, dst_size, "%s", src ? src : "");
}

static int64_t sink_parse_ts(const char *s)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    return (*end != '\0' || errno != 0) ? -1 : (int64_t)v;
}

static int sink_check_sig(hk_sink_t *sink, const char *id, const char *ts, const char *header,
                          const sink_ctx_t *ctx)
{
    if (sink->nsecrets == 0 || ctx->too_big)
        return -2;
    if (header == NULL)
        return -1;
    for (size_t i = 0; i < sink->nsecrets; i++) {
        if (hk_sign_verify(sink->secrets[i], id ? id : "", ts ? ts : "", ctx->body, ctx->len,
                           header) == 1)
            return 1;
    }
    return 0;
}

// Records the request and counts it. Takes ctx->body. 0 ok, -1 out of memory.
static int sink_record(hk_sink_t *sink, struct MHD_Connection *conn, const char *url,
                       const char *method, sink_ctx_t *ctx, int status)
{
    const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-id");
    const char *ts = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-timestamp");
    const char *sig = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-signature");
    const char *idem = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    const char *ua = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");

    hk_sink_req_t rec = {0};
    rec.at_ms = hk_clock_wall_ms();
    sink_copy_str(rec.path, sizeof rec.path, url);
    sink_copy_str(rec.method, sizeof rec.method, method);
    sink_copy_str(rec.webhook_id, sizeof rec.webhook_id, id);
    rec.webhook_ts = sink_parse_ts(ts);
    rec.sig = sink_check_sig(sink, id, ts, sig, ctx);
    rec.idem_ok = id != NULL && idem != NULL && strcmp(id, idem) == 0;
    rec.ua_ok = ua != NULL && strncmp(ua, "hookd/", 6) == 0;
    sink_copy_str(rec.content_type, sizeof rec.content_type, ct);
    sink_copy_str(rec.signature, sizeof rec.signature, sig);
    rec.status = status;
    ctx->recorded = true;
    ctx->t0_ms = sink_mono_ms();
    ctx->sig = rec.sig;
    memcpy(ctx->path, rec.path, sizeof ctx->path);
    memcpy(ctx->method, rec.method, sizeof ctx->method);
    memcpy(ctx->id, rec.webhook_id, sizeof ctx->id);
    if (ctx->body != NULL && !ctx->too_big) {
        rec.body = ctx->body;
        rec.body_len = ctx->len;
        ctx->body = NULL;
    } else {
        rec.body = calloc(1, 1);
        if (rec.body == NULL)
            return -1;
    }
    bool ok2xx = status >= 200 && status <= 299;
    bool bad_headers = id == NULL || rec.webhook_ts < 0 || !rec.idem_ok || !rec.ua_ok;
    bool bad_sig = rec.sig == 0 || (sink->nsecrets > 0 && rec.sig == -1);

    pthread_mutex_lock(&sink->mu);
    if (sink_grow((void **)&sink->reqs, &sink->reqs_cap, sink->nreqs + 1, sizeof *sink->reqs)) {
        pthread_mutex_unlock(&sink->mu);
        free(rec.body);
        return -1;
    }
    sink->reqs[sink->nreqs++] = rec;
    hk_sink_stats_t *st = &sink->stats;
    st->requests++;
    if (ok2xx)
        st->ok++;
    else
        st->failed++;
    if (ok2xx && id != NULL && *id != '\0') {
        if (sink_ids_add_ok(sink, id) == 1)
            st->unique_ok++;
        else
            st->duplicate_ok++;
    }
    st->bad_signature += bad_sig;
    st->bad_headers += bad_headers;
    sink->by_status[status]++;
    pthread_mutex_unlock(&sink->mu);
    return 0;
}

// ---- answering ----

static enum MHD_Result sink_respond(struct MHD_Connection *conn, int status,
                                    const char *retry_after, sink_ctx_t *ctx)
{
    if (ctx != NULL)
        ctx->answered = status;
    char body[32];
    size_t len = 0;
    if (status >= 200 && status != 204 && status != 304)
        len = (size_t)snprintf(body, sizeof body, "{\"status\":%d}\n", status);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    if (len > 0)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (retry_after != NULL && *retry_after != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result sink_respond_stats(hk_sink_t *sink, struct MHD_Connection *conn)
{
    char *json = hk_sink_stats_json(sink);
    if (json == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

// Suspends the connection until the timer thread lets it go (due_ms monotonic).
static enum MHD_Result sink_wait(hk_sink_t *sink, struct MHD_Connection *conn, sink_ctx_t *ctx,
                                 int64_t due_ms)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    pthread_mutex_lock(&sink->wait_mu);
    if (sink->stopping || sink->refusing ||
        sink_grow((void **)&sink->waiters, &sink->waiters_cap, sink->nwaiters + 1,
                  sizeof *sink->waiters)) {
        pthread_mutex_unlock(&sink->wait_mu);
        return MHD_NO;
    }
    // Scratch for the timer thread's poll(), always as large as the list.
    if (sink_grow((void **)&sink->pfds, &sink->pfds_cap, sink->nwaiters + 1, sizeof *sink->pfds)) {
        pthread_mutex_unlock(&sink->wait_mu);
        return MHD_NO;
    }
    sink->waiters[sink->nwaiters++] =
        (sink_waiter_t){.conn = conn, .ctx = ctx, .due_ms = due_ms, .fd = ci ? ci->connect_fd : -1};
    ctx->waiting = true;
    // Under wait_mu, so the timer thread cannot resume it before it is suspended.
    MHD_suspend_connection(conn);
    pthread_cond_signal(&sink->wait_cv);
    pthread_mutex_unlock(&sink->wait_mu);
    return MHD_YES;
}

static int sink_body_append(sink_ctx_t *ctx, const char *data, size_t len)
{
    if (ctx->too_big || ctx->len + len > SINK_MAX_BODY) {
        ctx->too_big = true; // keep reading, answer 413 at the end
        return 0;
    }
    if (ctx->len + len + 1 > ctx->cap) {
        size_t ncap = ctx->cap ? ctx->cap : 1024;
        while (ncap < ctx->len + len + 1)
            ncap *= 2;
        char *p = realloc(ctx->body, ncap);
        if (p == NULL)
            return -1;
        ctx->body = p;
        ctx->cap = ncap;
    }
    memcpy(ctx->body + ctx->len, data, len);
    ctx->len += len;
    ctx->body[ctx->len] = '\0';
    return 0;
}

// /reset: a TCP RST instead of an answer. libmicrohttpd shuts the write side
// (a FIN) before it closes, so an SO_LINGER 0 close would come too late: a
// connect() to AF_UNSPEC disconnects the socket at once, which Linux does with
// an RST; libmicrohttpd then closes a dead socket.
static enum MHD_Result sink_reset_conn(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci != NULL) {
        struct sockaddr unspec = {.sa_family = AF_UNSPEC};
        connect(ci->connect_fd, &unspec, sizeof unspec);
    }
    return MHD_NO;
}

#define SINK_MID_LEN 4096 // Content-Length /close-mid announces; it sends 16 bytes of it

static ssize_t sink_mid_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= 16)
        return MHD_CONTENT_READER_END_WITH_ERROR; // closes the connection mid-body
    size_t n = max < 16 - pos ? max : 16 - (size_t)pos;
    memset(buf, '{', n);
    return (ssize_t)n;
}

// /close-mid: "200 OK" and part of the body, then the connection closes.
static enum MHD_Result sink_close_mid(struct MHD_Connection *conn)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(SINK_MID_LEN, 16, sink_mid_reader, NULL, NULL);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result sink_respond_json(struct MHD_Connection *conn, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result sink_control_error(struct MHD_Connection *conn, const char *why)
{
    return sink_respond_json(conn, MHD_HTTP_BAD_REQUEST, json_pack("{ss}", "error", why));
}

// POST /_sink/rules: one rule as JSON (see sink.h).
static enum MHD_Result sink_control_rule(hk_sink_t *sink, struct MHD_Connection *conn,
                                         const sink_ctx_t *ctx)
{
    json_error_t jerr;
    json_t *j = ctx->body ? json_loadb(ctx->body, ctx->len, 0, &jerr) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return sink_control_error(conn, "the body must be a JSON object");
    }
    const char *prefix = json_string_value(json_object_get(j, "prefix"));
    json_t *st = json_object_get(j, "status"), *dl = json_object_get(j, "delay_ms");
    json_t *ra = json_object_get(j, "retry_after"), *fm = json_object_get(j, "for_ms");
    json_t *seq = json_object_get(j, "sequence");
    const char *why = NULL;
    if (prefix == NULL || prefix[0] != '/')
        why = "\"prefix\" must be a path starting with /";
    else if ((st && !json_is_integer(st)) || (dl && !json_is_integer(dl)) ||
             (fm && !json_is_integer(fm)) || (ra && !json_is_string(ra)) ||
             (seq && !json_is_array(seq)))
        why = "status, delay_ms and for_ms are integers, retry_after a string, sequence an array";
    int rc = 0;
    if (why == NULL && seq != NULL) {
        int codes[SINK_SEQ_MAX];
        size_t n = json_array_size(seq);
        for (size_t i = 0; i < n && i < SINK_SEQ_MAX; i++)
            codes[i] = json_is_integer(json_array_get(seq, i))
                           ? (int)json_integer_value(json_array_get(seq, i))
                           : -1;
        rc = n > SINK_SEQ_MAX ? -1 : hk_sink_set_sequence(sink, prefix, codes, n);
    } else if (why == NULL && fm != NULL) {
        json_int_t f = json_integer_value(fm), code = st ? json_integer_value(st) : 503;
        rc = f < 1 || f > SINK_MAX_DELAY_MS || code < 100 || code > 599
                 ? -1
                 : hk_sink_set_outage(sink, prefix, (int)code, (int)f);
    } else if (why == NULL) {
        json_int_t code = json_integer_value(st), d = json_integer_value(dl);
        rc = code < 0 || code > 599 || d < 0 || d > SINK_MAX_DELAY_MS
                 ? -1
                 : hk_sink_set_rule(sink, prefix, (int)code, (int)d, json_string_value(ra));
    }
    json_decref(j);
    if (why == NULL && rc != 0)
        why = "bad value: status 0 or 100..599, delay_ms and for_ms 0..3600000, sequence of "
              "1..64 codes 100..599, retry_after printable";
    if (why != NULL)
        return sink_control_error(conn, why);
    return sink_respond_json(conn, MHD_HTTP_OK, json_pack("{sb}", "ok", 1));
}

// GET /_sink/requests: every record but the bodies, as a JSON array.
static enum MHD_Result sink_control_requests(hk_sink_t *sink, struct MHD_Connection *conn)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&sink->mu);
    for (size_t i = 0; arr != NULL && i < sink->nreqs; i++) {
        const hk_sink_req_t *r = &sink->reqs[i];
        json_array_append_new(arr, json_pack("{sIsssssssisisI}", "at_ms", (json_int_t)r->at_ms,
                                             "method", r->method, "path", r->path, "webhook_id",
                                             r->webhook_id, "sig", r->sig, "status", r->status,
                                             "body_len", (json_int_t)r->body_len));
    }
    pthread_mutex_unlock(&sink->mu);
    return sink_respond_json(conn, MHD_HTTP_OK, arr);
}

static void sink_ask_refuse(hk_sink_t *sink, int64_t at, int for_ms)
{
    pthread_mutex_lock(&sink->wait_mu);
    sink->refuse_at = at;
    sink->relisten_at = for_ms > 0 ? at + for_ms : INT64_MAX;
    pthread_cond_signal(&sink->wait_cv);
    pthread_mutex_unlock(&sink->wait_mu);
}

// The control API under /_sink/ (rest is what follows it). Never recorded.
static enum MHD_Result sink_control(hk_sink_t *sink, struct MHD_Connection *conn, const char *rest,
                                    const char *method, const sink_ctx_t *ctx)
{
    bool post = strcmp(method, "POST") == 0;
    if (strcmp(rest, "stats") == 0)
        return sink_respond_stats(sink, conn);
    if (strcmp(rest, "requests") == 0)
        return sink_control_requests(sink, conn);
    if (strcmp(rest, "rules") == 0 && post)
        return sink_control_rule(sink, conn, ctx);
    if (strcmp(rest, "reset") == 0 && post) {
        hk_sink_reset(sink);
        return sink_respond_json(conn, MHD_HTTP_OK, json_pack("{sb}", "ok", 1));
    }
    if (strcmp(rest, "refuse") == 0 && post) {
        json_t *j = ctx->body ? json_loadb(ctx->body, ctx->len, 0, NULL) : NULL;
        json_t *fm = json_object_get(j, "for_ms");
        bool is_int = json_is_integer(fm);
        json_int_t f = json_integer_value(fm);
        json_decref(j);
        if (!is_int || f < 1 || f > SINK_MAX_DELAY_MS)
            return sink_control_error(conn, "{\"for_ms\": 1..3600000} is required");
        // Later than now, so that this answer leaves before the daemon closes.
        sink_ask_refuse(sink, sink_mono_ms() + SINK_REFUSE_LAG, (int)f);
        return sink_respond_json(conn, MHD_HTTP_OK, json_pack("{sb}", "ok", 1));
    }
    return sink_respond_json(conn, MHD_HTTP_NOT_FOUND,
                             json_pack("{ss}", "error",
                                       "control paths: GET stats, GET requests, "
                                       "POST rules, POST reset, POST refuse"));
}

static enum MHD_Result sink_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    (void)version;
    hk_sink_t *sink = cls;
    sink_ctx_t *ctx = *con_cls;

    if (ctx == NULL) {
        ctx = calloc(1, sizeof *ctx);
        if (ctx == NULL)
            return MHD_NO;
        *con_cls = ctx;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (sink_body_append(ctx, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ctx->waiting) {
        pthread_mutex_lock(&sink->wait_mu);
        bool abandon = ctx->abandon;
        pthread_mutex_unlock(&sink->wait_mu);
        return abandon ? MHD_NO : sink_respond(conn, ctx->status, ctx->retry_after, ctx);
    }
    if (strcmp(url, "/_stats") == 0)
        return sink_respond_stats(sink, conn);
    if (strncmp(url, "/_sink/", 7) == 0)
        return sink_control(sink, conn, url + 7, method, ctx);

    sink_plan_t plan;
    if (ctx->too_big)
        plan = (sink_plan_t){.status = 413};
    else
        sink_plan(sink, url, &plan);
    if (sink_record(sink, conn, url, method, ctx, plan.status) != 0)
        return MHD_NO;
    if (plan.action == SINK_RESET)
        return sink_reset_conn(conn);
    if (plan.action == SINK_CLOSE_MID)
        return sink_close_mid(conn);
    if (plan.status == 0)
        return sink_wait(sink, conn, ctx, INT64_MAX);
    if (plan.delay_ms > 0) {
        ctx->status = plan.status;
        memcpy(ctx->retry_after, plan.retry_after, sizeof ctx->retry_after);
        return sink_wait(sink, conn, ctx, sink_mono_ms() + plan.delay_ms);
    }
    return sink_respond(conn, plan.status, plan.retry_after, ctx);
}

// One JSON line on stdout for a finished request (opts.log_requests). status is
// what the client got whole: 0 when it got no complete answer.
static void sink_log_request(const sink_ctx_t *ctx, bool complete)
{
    json_t *j = json_pack("{sIssssssso*sisI}", "ts_ms", (json_int_t)hk_clock_wall_ms(), "method",
                          ctx->method, "path", ctx->path, "webhook_id", ctx->id, "signature_valid",
                          ctx->sig == -2 ? json_null() : json_boolean(ctx->sig == 1), "status",
                          complete ? ctx->answered : 0, "latency_ms",
                          (json_int_t)(sink_mono_ms() - ctx->t0_ms));
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (line != NULL) {
        flockfile(stdout);
        fputs(line, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        funlockfile(stdout);
        free(line);
    }
}

static void sink_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    hk_sink_t *sink = cls;
    sink_ctx_t *ctx = *con_cls;
    if (ctx != NULL && ctx->recorded && sink->log_requests)
        sink_log_request(ctx, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && ctx->answered > 0);
    if (ctx != NULL) {
        free(ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

// ---- timer thread ----

// Caller holds wait_mu. Lets waiter i go and removes it (order is not kept).
static void sink_release(hk_sink_t *sink, size_t i, bool abandon)
{
    sink_waiter_t w = sink->waiters[i];
    w.ctx->abandon = abandon;
    MHD_resume_connection(w.conn);
    sink->waiters[i] = sink->waiters[--sink->nwaiters];
}

// Caller (the timer thread) holds wait_mu. Stops listening: every waiting
// connection is let go unanswered (a server going down), then the daemon closes
// with wait_mu released, since its workers take it.
static void sink_close_daemon(hk_sink_t *sink)
{
    sink->refuse_at = 0;
    sink->refusing = true;
    while (sink->nwaiters > 0)
        sink_release(sink, sink->nwaiters - 1, true);
    struct MHD_Daemon *mhd = sink->mhd;
    pthread_mutex_unlock(&sink->wait_mu);
    if (mhd != NULL)
        MHD_stop_daemon(mhd);
    pthread_mutex_lock(&sink->wait_mu);
    sink->mhd = NULL;
    pthread_cond_broadcast(&sink->state_cv);
}

// Caller (the timer thread) holds wait_mu. Listens again on the same port.
static void sink_reopen_daemon(hk_sink_t *sink)
{
    pthread_mutex_unlock(&sink->wait_mu);
    struct MHD_Daemon *mhd = sink_daemon(sink, sink->port);
    pthread_mutex_lock(&sink->wait_mu);
    sink->mhd = mhd;
    sink->listen_err = mhd == NULL;
    sink->refusing = false;
    sink->relisten_at = INT64_MAX;
    pthread_cond_broadcast(&sink->state_cv);
}

static void *sink_timer_main(void *arg)
{
    hk_sink_t *sink = arg;
    pthread_mutex_lock(&sink->wait_mu);
    while (!sink->stopping) {
        int64_t now = sink_mono_ms();
        for (size_t i = 0; i < sink->nwaiters; i++) {
            sink->pfds[i] = (struct pollfd){.fd = sink->waiters[i].fd, .events = POLLRDHUP};
        }
        size_t n = sink->nwaiters;
        if (n > 0 && poll(sink->pfds, n, 0) < 0)
            memset(sink->pfds, 0, n * sizeof *sink->pfds);
        // Walk backwards: a release moves the last waiter into the freed place,
        // and pfds[i] still describes waiters[i] for every index not yet visited.
        int64_t next = INT64_MAX;
        for (size_t i = n; i-- > 0;) {
            bool gone = sink->pfds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL);
            if (sink->waiters[i].due_ms <= now || gone)
                sink_release(sink, i, gone);
            else if (sink->waiters[i].due_ms < next)
                next = sink->waiters[i].due_ms;
        }
        if (sink->refuse_at != 0 && sink->refuse_at <= now) {
            sink_close_daemon(sink);
            continue;
        }
        if (sink->refusing && sink->relisten_at <= now) {
            sink_reopen_daemon(sink);
            continue;
        }
        if (sink->refuse_at != 0 && sink->refuse_at < next)
            next = sink->refuse_at;
        if (sink->refusing && sink->relisten_at < next)
            next = sink->relisten_at;
        if (sink->nwaiters == 0 && next == INT64_MAX) {
            pthread_cond_wait(&sink->wait_cv, &sink->wait_mu);
            continue;
        }
        if (next > now + SINK_POLL_MS)
            next = now + SINK_POLL_MS;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t wait_ns = (next - now) * 1000000 + ts.tv_nsec;
        ts.tv_sec += wait_ns / 1000000000;
        ts.tv_nsec = wait_ns % 1000000000;
        pthread_cond_timedwait(&sink->wait_cv, &sink->wait_mu, &ts);
    }
    // Stopping: every suspended connection must be resumed before MHD_stop_daemon.
    while (sink->nwaiters > 0)
        sink_release(sink, sink->nwaiters - 1, true);
    pthread_mutex_unlock(&sink->wait_mu);
    return NULL;
}

// ---- lifecycle ----

static int sink_parse_secrets(hk_sink_t *sink, const char *secrets, char *errstr,
                              size_t errstr_size)
{
    const char *p = secrets;
    while (p != NULL && *p != '\0') {
        p += strspn(p, " \t");
        size_t len = strcspn(p, " \t");
        if (len == 0)
            break;
        char *s = strndup(p, len);
        char **arr = realloc(sink->secrets, (sink->nsecrets + 1) * sizeof *arr);
        if (s == NULL || arr == NULL) {
            free(s);
            if (arr != NULL)
                sink->secrets = arr;
            hk_err_set(errstr, errstr_size, "sink: out of memory");
            return -1;
        }
        sink->secrets = arr;
        sink->secrets[sink->nsecrets++] = s;
        char why[256];
        if (hk_sign_check_secret(s, why, sizeof why) != 0) {
            hk_err_set(errstr, errstr_size, "sink: secret %zu: %s", sink->nsecrets, why);
            return -1;
        }
        p += len;
    }
    return 0;
}

static struct MHD_Daemon *sink_daemon(hk_sink_t *sink, int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (sink->log_errors)
        flags |= MHD_USE_ERROR_LOG;
    // The certificate and key are the sink's strings (GnuTLS copies them), the same
    // on every reopen after hk_sink_refuse.
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
    if (sink->tls != NULL) {
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
                                         (void *)hk_sinktls_key_pem(sink->tls)};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                         (void *)hk_sinktls_cert_pem(sink->tls)};
    }
    return MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, sink_access, sink,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_THREAD_POOL_SIZE, sink->threads, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)SINK_CONN_LIMIT, MHD_OPTION_NOTIFY_COMPLETED, sink_completed,
                            sink, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
}

static void sink_free(hk_sink_t *sink)
{
    for (size_t i = 0; i < sink->nreqs; i++)
        free(sink->reqs[i].body);
    free(sink->reqs);
    sink_ids_clear(sink);
    for (size_t i = 0; i < sink->nrules; i++) {
        free(sink->rules[i].prefix);
        free(sink->rules[i].seq);
    }
    free(sink->rules);
    for (size_t i = 0; i < sink->nseqpos; i++)
        free(sink->seqpos[i].path);
    free(sink->seqpos);
    for (size_t i = 0; i < sink->nsecrets; i++)
        free(sink->secrets[i]);
    free(sink->secrets);
    free(sink->waiters);
    free(sink->pfds);
    hk_sinktls_destroy(sink->tls);
    pthread_mutex_destroy(&sink->mu);
    pthread_mutex_destroy(&sink->rules_mu);
    pthread_mutex_destroy(&sink->wait_mu);
    pthread_cond_destroy(&sink->wait_cv);
    pthread_cond_destroy(&sink->state_cv);
    free(sink);
}

hk_sink_t *hk_sink_start(const hk_sink_opts_t *opts, char *errstr, size_t errstr_size)
{
    if (opts->port < 0 || opts->port > 65535 || opts->threads < 0 || opts->threads > 1024) {
        hk_err_set(errstr, errstr_size, "sink: port must be 0..65535 and threads 0..1024");
        return NULL;
    }
    hk_sink_t *sink = calloc(1, sizeof *sink);
    if (sink == NULL) {
        hk_err_set(errstr, errstr_size, "sink: out of memory");
        return NULL;
    }
    pthread_mutex_init(&sink->mu, NULL);
    pthread_mutex_init(&sink->rules_mu, NULL);
    pthread_mutex_init(&sink->wait_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sink->wait_cv, &ca);
    pthread_cond_init(&sink->state_cv, &ca);
    pthread_condattr_destroy(&ca);
    sink->relisten_at = INT64_MAX;
    atomic_init(&sink->flap, 0);
    // Without a seed, the start time in ns, mixed with the address so that two sinks
    // started together still differ.
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sink->rng_seed = opts->seed != 0
                         ? opts->seed
                         : ((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec) ^
                               (uint64_t)(uintptr_t)sink;
    atomic_init(&sink->rng, sink->rng_seed);

    if (sink_parse_secrets(sink, opts->secrets, errstr, errstr_size) != 0) {
        sink_free(sink);
        return NULL;
    }
    if (opts->tls != 0) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            hk_err_set(errstr, errstr_size, "sink: this libmicrohttpd was built without TLS");
            sink_free(sink);
            return NULL;
        }
        sink->tls = hk_sinktls_new((hk_sinktls_kind_t)opts->tls, errstr, errstr_size);
        if (sink->tls == NULL) {
            sink_free(sink);
            return NULL;
        }
        sink->tls_kind = opts->tls;
    }
    if (pthread_create(&sink->timer, NULL, sink_timer_main, sink) != 0) {
        hk_err_set(errstr, errstr_size, "sink: cannot start the timer thread");
        sink_free(sink);
        return NULL;
    }
    sink->timer_started = true;

    sink->threads = opts->threads > 0 ? (unsigned)opts->threads : SINK_THREADS;
    sink->log_errors = opts->log_errors;
    sink->log_requests = opts->log_requests;
    sink->mhd = sink_daemon(sink, opts->port);
    if (sink->mhd == NULL) {
        hk_err_set(errstr, errstr_size,
                   "sink: cannot listen on 127.0.0.1:%d (port in use, or out of resources)",
                   opts->port);
        hk_sink_stop(sink);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(sink->mhd, MHD_DAEMON_INFO_BIND_PORT);
    sink->port = di ? di->port : opts->port;
    return sink;
}

void hk_sink_stop(hk_sink_t *sink)
{
    if (sink == NULL)
        return;
    // No MHD_quiesce_daemon(): with an epoll thread pool it races the workers
    // (libmicrohttpd 0.9.75 panics "Failed to remove listen FD from epoll set").
    // Requests that arrive meanwhile are answered, or closed if they would wait.
    pthread_mutex_lock(&sink->wait_mu);
    sink->stopping = true;
    pthread_cond_signal(&sink->wait_cv);
    pthread_mutex_unlock(&sink->wait_mu);
    if (sink->timer_started)
        pthread_join(sink->timer, NULL);
    if (sink->mhd != NULL)
        MHD_stop_daemon(sink->mhd);
    sink_free(sink);
}

int hk_sink_port(const hk_sink_t *sink)
{
    return sink->port;
}

int hk_sink_tls(const hk_sink_t *sink)
{
    return sink->tls_kind;
}

const char *hk_sink_ca_pem(const hk_sink_t *sink)
{
    return sink->tls ? hk_sinktls_ca_pem(sink->tls) : NULL;
}

int hk_sink_refuse(hk_sink_t *sink, int for_ms)
{
    if (for_ms < 0 || for_ms > SINK_MAX_DELAY_MS)
        return -1;
    sink_ask_refuse(sink, sink_mono_ms(), for_ms);
    pthread_mutex_lock(&sink->wait_mu);
    while (sink->mhd != NULL && !sink->stopping)
        pthread_cond_wait(&sink->state_cv, &sink->wait_mu);
    pthread_mutex_unlock(&sink->wait_mu);
    return 0;
}

int hk_sink_listen(hk_sink_t *sink)
{
    pthread_mutex_lock(&sink->wait_mu);
    if (sink->refusing || sink->refuse_at != 0) {
        sink->refuse_at = 0;
        sink->relisten_at = sink_mono_ms();
        pthread_cond_signal(&sink->wait_cv);
        while (sink->refusing && !sink->stopping)
            pthread_cond_wait(&sink->state_cv, &sink->wait_mu);
    }
    int rc = sink->mhd != NULL ? 0 : -1;
    pthread_mutex_unlock(&sink->wait_mu);
    return rc;
}

// Puts `rule` (taking its seq) in place of the rule for `prefix`, or removes that
// rule when rule->status is 0 and it has no sequence. 0 ok, -1 out of memory.
static int sink_put_rule(hk_sink_t *sink, const char *prefix, sink_rule_t rule)
{
    pthread_mutex_lock(&sink->rules_mu);
    size_t i = 0;
    while (i < sink->nrules && strcmp(sink->rules[i].prefix, prefix) != 0)
        i++;
    int ret = 0;
    if (rule.status == 0 && rule.seq == NULL) {
        if (i < sink->nrules) {
            free(sink->rules[i].prefix);
            free(sink->rules[i].seq);
            sink->rules[i] = sink->rules[--sink->nrules];
        }
    } else if (i < sink->nrules) {
        rule.prefix = sink->rules[i].prefix;
        rule.prefix_len = sink->rules[i].prefix_len;
        free(sink->rules[i].seq);
        sink->rules[i] = rule;
        rule.seq = NULL;
    } else if ((rule.prefix = strdup(prefix)) == NULL ||
               sink_grow((void **)&sink->rules, &sink->rules_cap, sink->nrules + 1,
                         sizeof *sink->rules) != 0) {
        free(rule.prefix);
        ret = -1;
    } else {
        rule.prefix_len = strlen(prefix);
        sink->rules[sink->nrules++] = rule;
        rule.seq = NULL;
    }
    pthread_mutex_unlock(&sink->rules_mu);
    if (ret != 0 || rule.status == 0)
        free(rule.seq);
    return ret;
}

int hk_sink_set_rule(hk_sink_t *sink, const char *prefix, int status, int delay_ms,
                     const char *retry_after)
{
    if (prefix == NULL || *prefix == '\0' || (status != 0 && (status < 100 || status > 599)) ||
        delay_ms < 0 || delay_ms > SINK_MAX_DELAY_MS)
        return -1;
    sink_rule_t rule = {.status = status, .delay_ms = delay_ms};
    if (retry_after != NULL && sink_copy_header_value(rule.retry_after, sizeof rule.retry_after,
                                                      retry_after, strlen(retry_after)) != 0)
        return -1;
    return sink_put_rule(sink, prefix, rule);
}

int hk_sink_set_outage(hk_sink_t *sink, const char *prefix, int status, int for_ms)
{
    if (prefix == NULL || *prefix == '\0' || status < 100 || status > 599 || for_ms <= 0 ||
        for_ms > SINK_MAX_DELAY_MS)
        return -1;
    sink_rule_t rule = {.status = status, .until_ms = sink_mono_ms() + for_ms};
    return sink_put_rule(sink, prefix, rule);
}

int hk_sink_set_sequence(hk_sink_t *sink, const char *prefix, const int *codes, size_t n)
{
    if (prefix == NULL || *prefix == '\0' || codes == NULL || n == 0 || n > SINK_SEQ_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (codes[i] < 100 || codes[i] > 599)
            return -1;
    }
    sink_rule_t rule = {.status = codes[n - 1], .nseq = n, .seq = malloc(n * sizeof(int))};
    if (rule.seq == NULL)
        return -1;
    memcpy(rule.seq, codes, n * sizeof(int));
    return sink_put_rule(sink, prefix, rule);
}

void hk_sink_stats(hk_sink_t *sink, hk_sink_stats_t *out)
{
    pthread_mutex_lock(&sink->mu);
    *out = sink->stats;
    pthread_mutex_unlock(&sink->mu);
}

char *hk_sink_stats_json(hk_sink_t *sink)
{
    // 7 counters plus up to 600 "code":count pairs, each well under 32 bytes.
    size_t cap = 256 + SINK_STATUS_MAX * 32, len = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    pthread_mutex_lock(&sink->mu);
    const hk_sink_stats_t *st = &sink->stats;
    len += (size_t)snprintf(out + len, cap - len,
                            "{\"requests\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"failed\":%" PRIu64
                            ",\"unique_ok\":%" PRIu64 ",\"duplicate_ok\":%" PRIu64
                            ",\"bad_signature\":%" PRIu64 ",\"bad_headers\":%" PRIu64
                            ",\"by_status\":{",
                            st->requests, st->ok, st->failed, st->unique_ok, st->duplicate_ok,
                            st->bad_signature, st->bad_headers);
    const char *sep = "";
    for (int code = 0; code < SINK_STATUS_MAX; code++) {
        if (sink->by_status[code] == 0)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s\"%d\":%" PRIu64, sep, code,
                                sink->by_status[code]);
        sep = ",";
    }
    pthread_mutex_unlock(&sink->mu);
    snprintf(out + len, cap - len, "}}");
    return out;
}

size_t hk_sink_reqs(hk_sink_t *sink, hk_sink_req_t **out)
{
    *out = NULL;
    pthread_mutex_lock(&sink->mu);
    size_t n = sink->nreqs;
    hk_sink_req_t *copy = n ? malloc(n * sizeof *copy) : NULL;
    size_t done = 0;
    for (; copy != NULL && done < n; done++) {
        copy[done] = sink->reqs[done];
        copy[done].body = malloc(sink->reqs[done].body_len + 1);
        if (copy[done].body == NULL)
            break;
        memcpy(copy[done].body, sink->reqs[done].body, sink->reqs[done].body_len + 1);
    }
    pthread_mutex_unlock(&sink->mu);
    if (done < n) {
        hk_sink_reqs_free(copy, done);
        return 0;
    }
    *out = copy;
    return n;
}

void hk_sink_reqs_free(hk_sink_req_t *reqs, size_t n)
{
    for (size_t i = 0; reqs != NULL && i < n; i++)
        free(reqs[i].body);
    free(reqs);
}

unsigned hk_sink_ok_count(hk_sink_t *sink, const char *webhook_id)
{
    pthread_mutex_lock(&sink->mu);
    const sink_id_t *slot = sink_ids_find(sink, webhook_id);
    unsigned n = slot ? slot->ok : 0;
    pthread_mutex_unlock(&sink->mu);
    return n;
}

void hk_sink_reset(hk_sink_t *sink)
{
    pthread_mutex_lock(&sink->mu);
    for (size_t i = 0; i < sink->nreqs; i++)
        free(sink->reqs[i].body);
    free(sink->reqs);
    sink->reqs = NULL;
    sink->nreqs = sink->reqs_cap = 0;
    sink_ids_clear(sink);
    memset(&sink->stats, 0, sizeof sink->stats);
    memset(sink->by_status, 0, sizeof sink->by_status);
    atomic_store(&sink->flap, 0);
    atomic_store(&sink->rng, sink->rng_seed);
    pthread_mutex_unlock(&sink->mu);
    pthread_mutex_lock(&sink->rules_mu);
    for (size_t i = 0; i < sink->nseqpos; i++)
        free(sink->seqpos[i].path);
    sink->nseqpos = 0;
    for (size_t i = 0; i < sink->nrules; i++)
        sink->rules[i].seq_next = 0;
    pthread_mutex_unlock(&sink->rules_mu);
}

unsigned hk_sink_pending(hk_sink_t *sink)
{
    pthread_mutex_lock(&sink->wait_mu);
    unsigned n = (unsigned)sink->nwaiters;
    pthread_mutex_unlock(&sink->wait_mu);
    return n;
}
