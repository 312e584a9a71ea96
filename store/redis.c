// redis: the Redis client service. Callers fill request nodes (rq_t) from a pool
// under rd_lock and link them onto a FIFO; the thread takes up to
// HK_REDIS_BATCH_MAX at a time, appends one command per request (plus one MGET
// when the breaker poll is due), reads the replies in order and completes each
// request. Nodes come from chunks allocated on first need and reused, so the hot
// path allocates nothing once warmed up; after a burst, once the thread has taken
// no request for RD_POOL_IDLE_MS and none is out, it keeps one chunk and frees the
// rest (a burst may have taken up to queue_max nodes, ~9 MB at the default).
//
// rd_up is only 1 while the thread holds a connection with the scripts loaded, and
// is changed under rd_lock together with the queue: a request is either refused at
// once (down) or queued while up, and going down drains the queue, so no request
// waits on a down Redis.
#include "store/redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/err.h"

#define RD_BACKOFF_MIN_MS   100
#define RD_BACKOFF_MAX_MS   5000
#define RD_CHUNK            256   // request nodes allocated at once
#define RD_POOL_IDLE_MS     2000  // no request this long: the pool shrinks to one chunk
#define RD_ERROR_LOG_MS     10000 // at most one redis_error line per this period
#define RD_RATE_IDLE_PAD_MS 1000  // hookd:rate:* lives this long past its TAT
#define RD_STR2(x)          #x
#define RD_STR(x)           RD_STR2(x)

// Lua scripts, loaded once per connection. Keys and arguments are in the
// comments; see redis.h for what each one decides.
enum { SCRIPT_CLAIM = 0, SCRIPT_DONE, SCRIPT_DEL_OWNED, SCRIPT_PERMITS, SCRIPT__CNT };

static const char *const script_src[SCRIPT__CNT] = {
    // KEYS: done, lease. ARGV: instance, lease_ms. 0 OK, 1 DONE, 2 BUSY.
    [SCRIPT_CLAIM] =
        "if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end\n"
        "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end\n"
        "if redis.call('GET', KEYS[2]) == ARGV[1] then\n"
        "  redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
        "  return 0\n"
        "end\n"
        "return 2\n",
    // KEYS: done, lease. ARGV: instance, ttl_s.
    [SCRIPT_DONE] = "redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])\n"
                    "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
                    "return 1\n",
    // KEYS: key. ARGV: instance. Deletes the key when its value is the instance,
    // or starts with "<instance> " (breaker keys).
    [SCRIPT_DEL_OWNED] = "local v = redis.call('GET', KEYS[1])\n"
                         "if v and (v == ARGV[1] or "
                         "string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ' ') then\n"
                         "  return redis.call('DEL', KEYS[1])\n"
                         "end\n"
                         "return 0\n",
    // KEYS: rate key. ARGV: rate per second, burst, want. Returns {granted,
    // retry_in_ms}: retry/ratelimit.c's arithmetic on Redis' own clock.
    [SCRIPT_PERMITS] = "local rate = tonumber(ARGV[1])\n"
                       "local burst = tonumber(ARGV[2])\n"
                       "local want = tonumber(ARGV[3])\n"
                       "local t = redis.call('TIME')\n"
                       "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
                       "local T = 1000 / rate\n"
                       "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
                       "if tat < now then tat = now end\n"
                       "local n = math.floor((now + burst * T - tat) / T + 1e-6)\n"
                       "if n > want then n = want end\n"
                       "if n < 0 then n = 0 end\n"
                       "tat = tat + n * T\n"
                       "local retry = 0\n"
                       "if n < want then\n"
                       "  retry = math.ceil(tat + T - burst * T - now - 1e-6 * T)\n"
                       "  if retry < 1 then retry = 1 end\n"
                       "end\n"
                       "if n > 0 then\n"
                       "  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX',\n"
                       "             string.format('%d', math.ceil(tat - now) + " RD_STR(
                           RD_RATE_IDLE_PAD_MS) "))\n"
                                                "end\n"
                                                "return {n, retry}\n",
};

typedef enum rq_kind {
    RQ_CLAIM = 0,
    RQ_DONE,
    RQ_RELEASE,
    RQ_PERMITS,
    RQ_BREAKER_OPEN,
    RQ_BREAKER_CLOSED,
} rq_kind_t;

typedef struct rq rq_t;
struct rq {
    rq_t *rq_next;
    rq_kind_t rq_kind;
    hk_redis_claim_cb *rq_claim_cb;
    hk_redis_permits_cb *rq_permits_cb;
    void *rq_arg;
    double rq_rate;
    int rq_burst;
    int rq_want;
    int64_t rq_until;
    int rq_sent;     // a reply is expected for this request in the current round
    int rq_reloaded; // already sent again once: a second NOSCRIPT is an error
    char rq_name[HK_REDIS_NAME_MAX + 1]; // "{<tenant length>:<tenant>:<key>}" or the endpoint
};

typedef struct rd_chunk rd_chunk_t;
struct rd_chunk {
    rd_chunk_t *ch_next;
    rq_t ch_rq[RD_CHUNK];
};

typedef struct rd_watch rd_watch_t;
struct rd_watch {
    char *w_endpoint;
    char *w_key;          // hookd:breaker:<endpoint>
    int64_t w_last_until; // last until reported to on_breaker (thread only)
    size_t w_idx;         // position in rd_watch
    rd_watch_t *w_next;   // in its rd_watch_tab bucket, or in rd_watch_dead
};

// Watched endpoints are found by hash: the dispatcher adds and drops one per lane.
#define RD_WATCH_BUCKETS 4096

struct hk_redis_s {
    // Set at start, read-only afterwards.
    hk_redis_url_t rd_url;
    char rd_server[300]; // host:port or the socket path, for logs (no password)
    int rd_timeout_ms;
    int rd_dedupe_ttl_s;
    int rd_lease_ms;
    int rd_sync_ms;
    int rd_queue_max;
    char rd_instance[128];
    hk_redis_breaker_cb *rd_on_breaker;
    void *rd_arg;
    pthread_t rd_thread;

    // Under rd_lock.
    pthread_mutex_t rd_lock;
    pthread_cond_t rd_wake;  // the thread waits here for requests, polls, reconnects
    pthread_cond_t rd_ready; // start waits here for the first connection attempt
    rq_t *rd_head, *rd_tail; // queued, oldest first
    rq_t *rd_free;
    int rd_used; // nodes queued or in flight
    rd_chunk_t *rd_chunks;
    atomic_size_t rd_chunk_cnt; // changed under rd_lock, read lock-free by hk_redis_stats()
    int64_t rd_last_batch_ms;   // monotonic: the pool shrinks RD_POOL_IDLE_MS after it
    rd_watch_t **rd_watch;
    size_t rd_watch_cnt, rd_watch_cap;
    rd_watch_t *rd_watch_tab[RD_WATCH_BUCKETS];
    // Unwatched, freed by the thread before its next poll (its last MGET may still
    // be reading them).
    rd_watch_t *rd_watch_dead;
    size_t rd_watch_chunk; // keys per MGET at most
    size_t rd_poll_next;   // where the next poll starts in rd_watch (round robin)
    int rd_stopping;
    int rd_first_done;
    atomic_int rd_up; // written under rd_lock, read lock-free by hk_redis_up()

    atomic_uint_fast64_t rd_round_trips, rd_commands, rd_unknown, rd_queue_full, rd_connects,
        rd_script_loads;

    // Thread only.
    redisContext *rd_ctx;
    char rd_sha[SCRIPT__CNT][41];
    int rd_state; // 0 before the first attempt, 1 up, -1 down (for one log line per change)
    int64_t rd_down_since_ms;
    int64_t rd_backoff_ms;
    int64_t rd_next_connect_ms;
    int64_t rd_next_poll_ms;
    int64_t rd_err_logged_ms;
    uint64_t rd_err_suppressed;
    rd_watch_t **rd_poll; // snapshot of rd_watch for one MGET
    const char **rd_poll_argv;
    size_t rd_poll_cap;
};

static void watch_free_dead(hk_redis_t *r);

// ---------------------------------------------------------------------------
// Helpers

static struct timeval ms_tv(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

// Absolute CLOCK_MONOTONIC time `ms` from now, for pthread_cond_timedwait.
static struct timespec mono_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void count_unknown(hk_redis_t *r)
{
    atomic_fetch_add_explicit(&r->rd_unknown, 1, memory_order_relaxed);
}

// Runs a request's callback with the "unknown" result.
static void complete_unknown(hk_redis_t *r, rq_kind_t kind, hk_redis_claim_cb *claim_cb,
                             hk_redis_permits_cb *permits_cb, void *arg)
{
    count_unknown(r);
    if (kind == RQ_CLAIM && claim_cb)
        claim_cb(HK_CLAIM_UNKNOWN, arg);
    else if (kind == RQ_PERMITS && permits_cb)
        permits_cb(-1, 0, arg);
}

static void rq_unknown(hk_redis_t *r, rq_t *rq)
{
    complete_unknown(r, rq->rq_kind, rq->rq_claim_cb, rq->rq_permits_cb, rq->rq_arg);
}

// Returns a list of finished nodes to the pool.
static void pool_put(hk_redis_t *r, rq_t *head)
{
    if (!head)
        return;
    int n = 0;
    rq_t *tail = head;
    for (rq_t *rq = head; rq; rq = rq->rq_next) {
        n++;
        tail = rq;
    }
    pthread_mutex_lock(&r->rd_lock);
    tail->rq_next = r->rd_free;
    r->rd_free = head;
    r->rd_used -= n;
    pthread_mutex_unlock(&r->rd_lock);
}

// Completes every node of a list as unknown and returns them to the pool.
static void fail_list(hk_redis_t *r, rq_t *head)
{
    for (rq_t *rq = head; rq; rq = rq->rq_next)
        rq_unknown(r, rq);
    pool_put(r, head);
}

// Chunks (~150 KB) are mapped, not taken from malloc: glibc would keep a freed
// chunk in its heap until some malloc_trim, mapped ones go back to the kernel the
// moment the pool shrinks.
static rd_chunk_t *chunk_new(void)
{
    void *p =
        mmap(NULL, sizeof(rd_chunk_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void chunk_free(rd_chunk_t *ch)
{
    munmap(ch, sizeof(*ch));
}

// Under rd_lock: a free node, or NULL when the queue is at its bound.
static rq_t *pool_get_locked(hk_redis_t *r)
{
    if (r->rd_used >= r->rd_queue_max)
        return NULL;
    if (!r->rd_free) {
        rd_chunk_t *ch = chunk_new();
        if (!ch)
            return NULL;
        ch->ch_next = r->rd_chunks;
        r->rd_chunks = ch;
        r->rd_chunk_cnt++;
        for (int i = 0; i < RD_CHUNK; i++) {
            ch->ch_rq[i].rq_next = r->rd_free;
            r->rd_free = &ch->ch_rq[i];
        }
    }
    rq_t *rq = r->rd_free;
    r->rd_free = rq->rq_next;
    r->rd_used++;
    return rq;
}

// Queues one request described by `tmpl` (name in `a`, or the dedupe name of
// tenant a and key b when b is not NULL, see hk_redis_claim()), or completes it
// at once as unknown when Redis is down, the queue is full or the name does not
// fit.
static void submit(hk_redis_t *r, const rq_t *tmpl, const char *a, const char *b)
{
    size_t alen = a ? strlen(a) : 0, blen = b ? strlen(b) : 0;
    // "{<alen>:<a>:<b>}": the length says where the tenant ends, whatever it holds.
    char prefix[24] = "";
    size_t plen = b ? (size_t)snprintf(prefix, sizeof(prefix), "{%zu:", alen) : 0;
    size_t need = plen + alen + (b ? 1 + blen + 1 : 0);
    if (!r || !a || need > HK_REDIS_NAME_MAX) {
        if (r)
            complete_unknown(r, tmpl->rq_kind, tmpl->rq_claim_cb, tmpl->rq_permits_cb,
                             tmpl->rq_arg);
        else if (tmpl->rq_kind == RQ_CLAIM && tmpl->rq_claim_cb)
            tmpl->rq_claim_cb(HK_CLAIM_UNKNOWN, tmpl->rq_arg);
        else if (tmpl->rq_kind == RQ_PERMITS && tmpl->rq_permits_cb)
            tmpl->rq_permits_cb(-1, 0, tmpl->rq_arg);
        return;
    }

    pthread_mutex_lock(&r->rd_lock);
    rq_t *rq = NULL;
    int full = 0;
    if (!r->rd_stopping && atomic_load_explicit(&r->rd_up, memory_order_relaxed)) {
        rq = pool_get_locked(r);
        full = rq == NULL;
    }
    if (rq) {
        rq->rq_kind = tmpl->rq_kind;
        rq->rq_claim_cb = tmpl->rq_claim_cb;
        rq->rq_permits_cb = tmpl->rq_permits_cb;
        rq->rq_arg = tmpl->rq_arg;
        rq->rq_rate = tmpl->rq_rate;
        rq->rq_burst = tmpl->rq_burst;
        rq->rq_want = tmpl->rq_want;
        rq->rq_until = tmpl->rq_until;
        rq->rq_sent = rq->rq_reloaded = 0;
        char *w = rq->rq_name;
        memcpy(w, prefix, plen);
        w += plen;
        memcpy(w, a, alen);
        w += alen;
        if (b) {
            *w++ = ':';
            memcpy(w, b, blen);
            w += blen;
            *w++ = '}';
        }
        *w = '\0';
        rq->rq_next = NULL;
        int was_empty = r->rd_head == NULL;
        if (r->rd_tail)
            r->rd_tail->rq_next = rq;
        else
            r->rd_head = rq;
        r->rd_tail = rq;
        if (was_empty)
            pthread_cond_signal(&r->rd_wake);
    }
    pthread_mutex_unlock(&r->rd_lock);

    if (!rq) {
        if (full)
            atomic_fetch_add_explicit(&r->rd_queue_full, 1, memory_order_relaxed);
        complete_unknown(r, tmpl->rq_kind, tmpl->rq_claim_cb, tmpl->rq_permits_cb, tmpl->rq_arg);
    }
}

// A failed command on a live connection (an error reply): counted, logged at most
// once per RD_ERROR_LOG_MS.
static void command_error(hk_redis_t *r, const char *what, const char *msg)
{
    hk_metric_add(redis_errors, 1);
    int64_t now = hk_clock_mono_ms();
    if (r->rd_err_logged_ms && now - r->rd_err_logged_ms < RD_ERROR_LOG_MS) {
        r->rd_err_suppressed++;
        return;
    }
    hk_log(HK_LOG_WARN, "redis_error", "{s:s,s:s,s:s,s:I}", "server", r->rd_server, "command", what,
           "error", msg, "suppressed", (json_int_t)r->rd_err_suppressed);
    r->rd_err_logged_ms = now;
    r->rd_err_suppressed = 0;
}

// ---------------------------------------------------------------------------
// Connection (thread only)

static const char *ctx_error(const redisContext *c)
{
    if (!c)
        return "out of memory";
    // A read or write past SO_RCVTIMEO/SO_SNDTIMEO fails with EAGAIN.
    if (c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily unavailable"))
        return "timed out";
    if (c->err == REDIS_ERR_EOF)
        return "connection closed by the server";
    return c->errstr[0] ? c->errstr : "connection error";
}

// The connection failed or Redis could not be reached: drops the connection,
// completes everything queued as unknown, schedules the next attempt.
static void go_down(hk_redis_t *r, const char *why)
{
    pthread_mutex_lock(&r->rd_lock);
    atomic_store_explicit(&r->rd_up, 0, memory_order_relaxed);
    rq_t *pending = r->rd_head;
    r->rd_head = r->rd_tail = NULL;
    int stopping = r->rd_stopping;
    pthread_mutex_unlock(&r->rd_lock);

    if (r->rd_ctx) {
        redisFree(r->rd_ctx);
        r->rd_ctx = NULL;
    }
    hk_metric_add(redis_errors, 1);
    atomic_store_explicit(&hk_metrics.redis_up, 0, memory_order_relaxed);
    int64_t now = hk_clock_mono_ms();
    if (r->rd_state != -1) {
        if (!stopping)
            hk_log(HK_LOG_WARN, "redis_down", "{s:s,s:s,s:i}", "server", r->rd_server, "error", why,
                   "retry_ms", (int)r->rd_backoff_ms);
        r->rd_state = -1;
        r->rd_down_since_ms = now;
    } else {
        hk_log(HK_LOG_DEBUG, "redis_connect_failed", "{s:s,s:s,s:i}", "server", r->rd_server,
               "error", why, "retry_ms", (int)r->rd_backoff_ms);
    }
    r->rd_next_connect_ms = now + r->rd_backoff_ms;
    r->rd_backoff_ms *= 2;
    if (r->rd_backoff_ms > RD_BACKOFF_MAX_MS)
        r->rd_backoff_ms = RD_BACKOFF_MAX_MS;
    fail_list(r, pending);
}

// Reads `n` replies; the first error reply's message goes to err. Returns 0 when
// all were read and none was an error, -1 on a connection error (err says why),
// -2 when a reply was an error.
static int read_replies(hk_redis_t *r, int n, redisReply **replies, char *err, size_t err_size)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        void *p = NULL;
        if (redisGetReply(r->rd_ctx, &p) != REDIS_OK) {
            hk_err_set(err, err_size, "%s", ctx_error(r->rd_ctx));
            for (int j = 0; j < i; j++)
                freeReplyObject(replies[j]);
            return -1;
        }
        replies[i] = p;
        if (replies[i]->type == REDIS_REPLY_ERROR && rc == 0) {
            hk_err_set(err, err_size, "%.*s", (int)replies[i]->len, replies[i]->str);
            rc = -2;
        }
    }
    atomic_fetch_add_explicit(&r->rd_round_trips, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->rd_commands, (uint64_t)n, memory_order_relaxed);
    return rc;
}

// SCRIPT LOAD for every script, in one round trip (after AUTH/SELECT when
// `handshake`). 0, or -1 (connection error) / -2 (error reply) with err set.
static int load_scripts(hk_redis_t *r, int handshake, char *err, size_t err_size)
{
    redisReply *replies[SCRIPT__CNT + 2];
    int n = 0;
    if (handshake && r->rd_url.password[0]) {
        if (r->rd_url.user[0])
            redisAppendCommand(r->rd_ctx, "AUTH %s %s", r->rd_url.user, r->rd_url.password);
        else
            redisAppendCommand(r->rd_ctx, "AUTH %s", r->rd_url.password);
        n++;
    }
    if (handshake && r->rd_url.db > 0) {
        redisAppendCommand(r->rd_ctx, "SELECT %d", r->rd_url.db);
        n++;
    }
    int first_script = n;
    for (int s = 0; s < SCRIPT__CNT; s++, n++)
        redisAppendCommand(r->rd_ctx, "SCRIPT LOAD %s", script_src[s]);
    atomic_fetch_add_explicit(&r->rd_script_loads, 1, memory_order_relaxed);

    int rc = read_replies(r, n, replies, err, err_size);
    if (rc == -1)
        return -1;
    for (int s = 0; rc == 0 && s < SCRIPT__CNT; s++) {
        const redisReply *rep = replies[first_script + s];
        if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
            hk_err_set(err, err_size, "SCRIPT LOAD: unexpected reply");
            rc = -2;
            break;
        }
        memcpy(r->rd_sha[s], rep->str, 40);
        r->rd_sha[s][40] = '\0';
    }
    for (int i = 0; i < n; i++)
        freeReplyObject(replies[i]);
    return rc;
}

static void try_connect(hk_redis_t *r)
{
    struct timeval tv = ms_tv(r->rd_timeout_ms);
    redisContext *c = r->rd_url.path[0]
                          ? redisConnectUnixWithTimeout(r->rd_url.path, tv)
                          : redisConnectWithTimeout(r->rd_url.host, r->rd_url.port, tv);
    r->rd_ctx = c;
    if (!c || c->err) {
        go_down(r, ctx_error(c));
        return;
    }
    char err[256] = "";
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        go_down(r, ctx_error(c));
        return;
    }
    int rc = load_scripts(r, 1, err, sizeof(err));
    if (rc != 0) {
        go_down(r, err);
        return;
    }

    int64_t now = hk_clock_mono_ms();
    if (r->rd_state == -1)
        hk_log(HK_LOG_INFO, "redis_up", "{s:s,s:I}", "server", r->rd_server, "down_ms",
               (json_int_t)(now - r->rd_down_since_ms));
    else
        hk_log(HK_LOG_INFO, "redis_up", "{s:s}", "server", r->rd_server);
    r->rd_state = 1;
    r->rd_backoff_ms = RD_BACKOFF_MIN_MS;
    r->rd_next_poll_ms = now;
    atomic_fetch_add_explicit(&r->rd_connects, 1, memory_order_relaxed);
    atomic_store_explicit(&hk_metrics.redis_up, 1, memory_order_relaxed);
    pthread_mutex_lock(&r->rd_lock);
    atomic_store_explicit(&r->rd_up, 1, memory_order_relaxed);
    pthread_mutex_unlock(&r->rd_lock);
}

// ---------------------------------------------------------------------------
// Requests (thread only)

// Appends the command for one request; sets rq_sent when a reply will come.
static void append_rq(hk_redis_t *r, rq_t *rq)
{
    redisContext *c = r->rd_ctx;
    const char *n = rq->rq_name;
    rq->rq_sent = 1;
    switch (rq->rq_kind) {
    case RQ_CLAIM:
        redisAppendCommand(c, "EVALSHA %s 2 hookd:done:%s hookd:lease:%s %s %d",
                           r->rd_sha[SCRIPT_CLAIM], n, n, r->rd_instance, r->rd_lease_ms);
        break;
    case RQ_DONE:
        redisAppendCommand(c, "EVALSHA %s 2 hookd:done:%s hookd:lease:%s %s %d",
                           r->rd_sha[SCRIPT_DONE], n, n, r->rd_instance, r->rd_dedupe_ttl_s);
        break;
    case RQ_RELEASE:
        redisAppendCommand(c, "EVALSHA %s 1 hookd:lease:%s %s", r->rd_sha[SCRIPT_DEL_OWNED], n,
                           r->rd_instance);
        break;
    case RQ_BREAKER_CLOSED:
        redisAppendCommand(c, "EVALSHA %s 1 hookd:breaker:%s %s", r->rd_sha[SCRIPT_DEL_OWNED], n,
                           r->rd_instance);
        break;
    case RQ_PERMITS: {
        char rate[32];
        snprintf(rate, sizeof(rate), "%.17g", rq->rq_rate);
        redisAppendCommand(c, "EVALSHA %s 1 hookd:rate:%s %s %d %d", r->rd_sha[SCRIPT_PERMITS], n,
                           rate, rq->rq_burst < 1 ? 1 : rq->rq_burst, rq->rq_want);
        break;
    }
    case RQ_BREAKER_OPEN: {
        int64_t ttl = rq->rq_until - hk_clock_wall_ms();
        if (ttl <= 0) {
            rq->rq_sent = 0; // already over: nothing to publish
            break;
        }
        char val[160];
        snprintf(val, sizeof(val), "%s %lld", r->rd_instance, (long long)rq->rq_until);
        redisAppendCommand(c, "SET hookd:breaker:%s %s PX %lld", n, val, (long long)ttl);
        break;
    }
    }
}

static const char *rq_command_name(const rq_t *rq)
{
    switch (rq->rq_kind) {
    case RQ_CLAIM:
        return "claim";
    case RQ_DONE:
        return "done";
    case RQ_RELEASE:
        return "release";
    case RQ_PERMITS:
        return "permits";
    case RQ_BREAKER_OPEN:
        return "breaker_open";
    case RQ_BREAKER_CLOSED:
        return "breaker_closed";
    }
    return "?";
}

// Completes one request from its reply. Returns 1 when it must be sent again
// after reloading the scripts (NOSCRIPT), else 0.
static int complete_rq(hk_redis_t *r, rq_t *rq, const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        if (strncmp(rep->str, "NOSCRIPT", 8) == 0 && !rq->rq_reloaded) {
            rq->rq_reloaded = 1;
            return 1;
        }
        char msg[200];
        snprintf(msg, sizeof(msg), "%.*s", (int)rep->len, rep->str);
        command_error(r, rq_command_name(rq), msg);
        rq_unknown(r, rq);
        return 0;
    }
    if (rq->rq_kind == RQ_CLAIM) {
        if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0 && rep->integer <= 2) {
            static const hk_claim_t map[] = {HK_CLAIM_OK, HK_CLAIM_DONE, HK_CLAIM_BUSY};
            if (rq->rq_claim_cb)
                rq->rq_claim_cb(map[rep->integer], rq->rq_arg);
        } else {
            command_error(r, "claim", "unexpected reply");
            rq_unknown(r, rq);
        }
    } else if (rq->rq_kind == RQ_PERMITS) {
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[0]->type == REDIS_REPLY_INTEGER &&
            rep->element[1]->type == REDIS_REPLY_INTEGER) {
            if (rq->rq_permits_cb)
                rq->rq_permits_cb((int)rep->element[0]->integer, rep->element[1]->integer,
                                  rq->rq_arg);
        } else {
            command_error(r, "permits", "unexpected reply");
            rq_unknown(r, rq);
        }
    }
    return 0;
}

// Reports breakers other instances opened, from the MGET of `n` watched keys.
static void poll_result(hk_redis_t *r, const redisReply *rep, size_t n)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        char msg[200] = "unexpected reply";
        if (rep->type == REDIS_REPLY_ERROR)
            snprintf(msg, sizeof(msg), "%.*s", (int)rep->len, rep->str);
        command_error(r, "breaker_poll", msg);
        return;
    }
    int64_t now = hk_clock_wall_ms();
    size_t ilen = strlen(r->rd_instance);
    for (size_t i = 0; i < n; i++) {
        const redisReply *v = rep->element[i];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        const char *sp = memchr(v->str, ' ', v->len);
        if (!sp)
            continue;
        size_t owner_len = (size_t)(sp - v->str);
        if (owner_len == ilen && memcmp(v->str, r->rd_instance, ilen) == 0)
            continue; // our own publication
        char num[32];
        size_t num_len = v->len - owner_len - 1;
        if (num_len == 0 || num_len >= sizeof(num))
            continue;
        memcpy(num, sp + 1, num_len);
        num[num_len] = '\0';
        char *end;
        long long until = strtoll(num, &end, 10);
        if (*end != '\0' || until <= now)
            continue;
        rd_watch_t *w = r->rd_poll[i];
        if (until == w->w_last_until)
            continue;
        w->w_last_until = until;
        if (r->rd_on_breaker)
            r->rd_on_breaker(w->w_endpoint, until, r->rd_arg);
    }
}

// Sends `head` (and the breaker poll of `poll_n` watched keys when > 0) as one
// pipeline and completes every request. Requests answered NOSCRIPT are sent once
// more after reloading the scripts. On a connection error the rest complete as
// unknown and the connection goes down.
static void run_batch(hk_redis_t *r, rq_t *head, size_t poll_n)
{
    while (head || poll_n > 0) {
        int expected = 0;
        for (rq_t *rq = head; rq; rq = rq->rq_next) {
            append_rq(r, rq);
            expected += rq->rq_sent;
        }
        if (poll_n > 0) {
            for (size_t i = 0; i < poll_n; i++)
                r->rd_poll_argv[i + 1] = r->rd_poll[i]->w_key;
            r->rd_poll_argv[0] = "MGET";
            redisAppendCommandArgv(r->rd_ctx, (int)poll_n + 1, r->rd_poll_argv, NULL);
            expected++;
        }
        if (expected == 0) {
            pool_put(r, head);
            return;
        }

        rq_t *resend = NULL, **resend_tail = &resend, *done = NULL;
        rq_t *rq = head;
        int failed = 0;
        char err[256] = "";
        while (rq) {
            rq_t *next = rq->rq_next;
            if (rq->rq_sent) {
                void *p = NULL;
                if (redisGetReply(r->rd_ctx, &p) != REDIS_OK) {
                    snprintf(err, sizeof(err), "%s", ctx_error(r->rd_ctx));
                    failed = 1;
                    break;
                }
                if (complete_rq(r, rq, p)) {
                    rq->rq_next = NULL;
                    *resend_tail = rq;
                    resend_tail = &rq->rq_next;
                    freeReplyObject(p);
                    rq = next;
                    continue;
                }
                freeReplyObject(p);
            }
            rq->rq_next = done;
            done = rq;
            rq = next;
        }
        if (!failed && poll_n > 0) {
            void *p = NULL;
            if (redisGetReply(r->rd_ctx, &p) != REDIS_OK) {
                snprintf(err, sizeof(err), "%s", ctx_error(r->rd_ctx));
                failed = 1;
            } else {
                poll_result(r, p, poll_n);
                freeReplyObject(p);
            }
        }
        atomic_fetch_add_explicit(&r->rd_round_trips, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->rd_commands, (uint64_t)expected, memory_order_relaxed);
        pool_put(r, done);
        if (failed) {
            // rq and what follows it were not answered; neither are those waiting to be
            // resent. Down first, so their callbacks already see hk_redis_up() == 0.
            go_down(r, err);
            fail_list(r, rq);
            fail_list(r, resend);
            return;
        }
        if (!resend)
            return;
        int rc = load_scripts(r, 0, err, sizeof(err));
        if (rc != 0) {
            if (rc == -1)
                go_down(r, err);
            else
                command_error(r, "script_load", err);
            fail_list(r, resend);
            return;
        }
        head = resend;
        poll_n = 0;
    }
}

// Under rd_lock, with no node out (rd_used 0, so every node is on rd_free):
// keeps the newest chunk, frees the others and rebuilds the free list from it.
static void pool_shrink_locked(hk_redis_t *r)
{
    rd_chunk_t *keep = r->rd_chunks;
    for (rd_chunk_t *ch = keep->ch_next, *next; ch; ch = next) {
        next = ch->ch_next;
        chunk_free(ch);
    }
    keep->ch_next = NULL;
    r->rd_chunk_cnt = 1;
    r->rd_free = NULL;
    for (int i = 0; i < RD_CHUNK; i++) {
        keep->ch_rq[i].rq_next = r->rd_free;
        r->rd_free = &keep->ch_rq[i];
    }
}

// ---------------------------------------------------------------------------
// Thread

static void *thread_main(void *arg)
{
    hk_redis_t *r = arg;
    try_connect(r);
    pthread_mutex_lock(&r->rd_lock);
    r->rd_first_done = 1;
    pthread_cond_broadcast(&r->rd_ready);

    for (;;) {
        // Under rd_lock here. Wait for work: requests, a poll, a reconnect.
        int64_t now = hk_clock_mono_ms();
        int poll_due = r->rd_ctx && r->rd_watch_cnt > 0 && now >= r->rd_next_poll_ms;
        if (r->rd_stopping)
            break;
        if (!r->rd_ctx && now >= r->rd_next_connect_ms) {
            pthread_mutex_unlock(&r->rd_lock);
            try_connect(r);
            pthread_mutex_lock(&r->rd_lock);
            continue;
        }
        if (!(r->rd_ctx && r->rd_head) && !poll_due) {
            // Unwatched lanes are freed before a sleep too: an idle thread would
            // otherwise keep the last burst's for good (it_hosts).
            watch_free_dead(r);
            int64_t until = -1;
            if (!r->rd_ctx)
                until = r->rd_next_connect_ms;
            else if (r->rd_watch_cnt > 0)
                until = r->rd_next_poll_ms;
            // Same for the request pool, once the burst is over (see the top).
            if (r->rd_chunk_cnt > 1 && r->rd_used == 0) {
                int64_t shrink_at = r->rd_last_batch_ms + RD_POOL_IDLE_MS;
                if (now >= shrink_at)
                    pool_shrink_locked(r);
                else if (until < 0 || shrink_at < until)
                    until = shrink_at;
            }
            if (until < 0) {
                pthread_cond_wait(&r->rd_wake, &r->rd_lock);
            } else {
                struct timespec ts = mono_deadline(until - now);
                pthread_cond_timedwait(&r->rd_wake, &r->rd_lock, &ts);
            }
            continue;
        }

        watch_free_dead(r); // no MGET is reading them now
        // Take one batch, and the watched keys when the poll is due.
        rq_t *head = r->rd_head, *tail = NULL;
        int n = 0;
        for (rq_t *rq = head; rq && n < HK_REDIS_BATCH_MAX; rq = rq->rq_next, n++)
            tail = rq;
        if (tail) {
            r->rd_last_batch_ms = now; // the thread's clock: submit reads none
            r->rd_head = tail->rq_next;
            if (!r->rd_head)
                r->rd_tail = NULL;
            tail->rq_next = NULL;
        } else {
            head = NULL;
        }
        size_t poll_n = 0;
        if (poll_due) {
            // A bounded chunk per sync, taking the watched keys in turn.
            poll_n = r->rd_watch_cnt < r->rd_watch_chunk ? r->rd_watch_cnt : r->rd_watch_chunk;
            if (poll_n > r->rd_poll_cap) {
                size_t cap = poll_n * 2;
                rd_watch_t **pw = realloc(r->rd_poll, cap * sizeof(*pw));
                if (pw)
                    r->rd_poll = pw;
                const char **pa = pw ? realloc(r->rd_poll_argv, (cap + 1) * sizeof(*pa)) : NULL;
                if (pa) {
                    r->rd_poll_argv = pa;
                    r->rd_poll_cap = cap;
                }
            }
            if (poll_n > r->rd_poll_cap)
                poll_n = r->rd_poll_cap; // out of memory: poll what fits
            if (r->rd_poll_next >= r->rd_watch_cnt)
                r->rd_poll_next = 0;
            for (size_t i = 0; i < poll_n; i++)
                r->rd_poll[i] = r->rd_watch[(r->rd_poll_next + i) % r->rd_watch_cnt];
            r->rd_poll_next = (r->rd_poll_next + poll_n) % r->rd_watch_cnt;
            r->rd_next_poll_ms = now + r->rd_sync_ms;
        }
        pthread_mutex_unlock(&r->rd_lock);

        run_batch(r, head, poll_n);
        pthread_mutex_lock(&r->rd_lock);
    }

    // Stopping: flush what is queued while still connected. Callers are no
    // longer waiting for claims and permits (they complete as unknown at once);
    // done markers, lease releases and breaker updates are still sent.
    rq_t *pending = r->rd_head;
    r->rd_head = r->rd_tail = NULL;
    pthread_mutex_unlock(&r->rd_lock);

    rq_t *send = NULL, **send_tail = &send, *skip = NULL;
    for (rq_t *rq = pending, *next; rq; rq = next) {
        next = rq->rq_next;
        rq->rq_next = NULL;
        if (r->rd_ctx && rq->rq_kind != RQ_CLAIM && rq->rq_kind != RQ_PERMITS) {
            *send_tail = rq;
            send_tail = &rq->rq_next;
        } else {
            rq->rq_next = skip;
            skip = rq;
        }
    }
    fail_list(r, skip);
    while (send && r->rd_ctx) {
        rq_t *batch = send, *tail = send;
        for (int n = 1; n < HK_REDIS_BATCH_MAX && tail->rq_next; n++)
            tail = tail->rq_next;
        send = tail->rq_next;
        tail->rq_next = NULL;
        run_batch(r, batch, 0);
    }
    fail_list(r, send);
    if (r->rd_ctx) {
        redisFree(r->rd_ctx);
        r->rd_ctx = NULL;
    }
    return NULL;
}

// ---------------------------------------------------------------------------
// URL

static int parse_int(const char *s, size_t len, int min, int max, int *out)
{
    if (len == 0 || len > 9)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int hk_redis_parse_url(const char *url, hk_redis_url_t *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url || !*url) {
        hk_err_set(err, err_size, "redis.url is empty");
        return -1;
    }
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2; // unix:///path
        if (*p != '/' || strlen(p) >= sizeof(out->path)) {
            hk_err_set(err, err_size,
                       "redis.url: a unix socket URL is unix:/absolute/path (at most %zu bytes)",
                       sizeof(out->path) - 1);
            return -1;
        }
        snprintf(out->path, sizeof(out->path), "%s", p);
        return 0;
    }
    if (strncmp(url, "rediss://", 9) == 0) {
        hk_err_set(err, err_size, "redis.url: TLS (rediss://) is not supported; use redis://");
        return -1;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        hk_err_set(err, err_size,
                   "redis.url must be redis://[:password@]host[:port][/db] or unix:/path");
        return -1;
    }
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            hk_err_set(err, err_size,
                       "redis.url: put the password after a colon: redis://:password@host:port");
            return -1;
        }
        size_t ulen = (size_t)(colon - p), plen = (size_t)(at - colon - 1);
        if (ulen >= sizeof(out->user) || plen >= sizeof(out->password) || plen == 0) {
            hk_err_set(err, err_size, "redis.url: the user or password is empty or too long");
            return -1;
        }
        memcpy(out->user, p, ulen);
        memcpy(out->password, colon + 1, plen);
        p = at + 1;
    }
    const char *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end) {
            hk_err_set(err, err_size, "redis.url: missing ']' after the IPv6 address");
            return -1;
        }
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof(out->host)) {
        hk_err_set(err, err_size, "redis.url: the host is empty or too long");
        return -1;
    }
    memcpy(out->host, host, hlen);
    if (*p == ':') {
        p++;
        size_t len = strcspn(p, "/");
        if (parse_int(p, len, 1, 65535, &out->port) != 0) {
            hk_err_set(err, err_size, "redis.url: the port must be a number between 1 and 65535");
            return -1;
        }
        p += len;
    }
    if (*p == '/') {
        p++;
        if (*p && parse_int(p, strlen(p), 0, 100000, &out->db) != 0) {
            hk_err_set(err, err_size,
                       "redis.url: the database after '/' must be a number, e.g. /0");
            return -1;
        }
        p += strlen(p);
    }
    if (*p) {
        hk_err_set(err, err_size, "redis.url: unexpected text after the host");
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// API

hk_redis_t *hk_redis_start(const hk_redis_opts_t *opts, char *err, size_t err_size)
{
    hk_redis_url_t url;
    if (hk_redis_parse_url(opts->url, &url, err, err_size) != 0)
        return NULL;
    if (opts->timeout_ms < 1 || opts->dedupe_ttl_s < 1 || opts->lease_ms < 1 || opts->sync_ms < 1 ||
        opts->queue_max < 0) {
        hk_err_set(err, err_size,
                   "redis: timeout_ms, dedupe_ttl_s, lease_ms and sync_ms must be at least 1");
        return NULL;
    }
    const char *inst = opts->instance;
    if (inst && *inst && (strlen(inst) >= 100 || strpbrk(inst, " \t\r\n"))) {
        hk_err_set(err, err_size, "redis: the instance id must be 1-99 bytes without spaces");
        return NULL;
    }

    hk_redis_t *r = calloc(1, sizeof(*r));
    if (!r) {
        hk_err_set(err, err_size, "redis: out of memory");
        return NULL;
    }
    r->rd_url = url;
    if (url.path[0])
        snprintf(r->rd_server, sizeof(r->rd_server), "unix:%s", url.path);
    else if (strchr(url.host, ':'))
        snprintf(r->rd_server, sizeof(r->rd_server), "[%s]:%d", url.host, url.port);
    else
        snprintf(r->rd_server, sizeof(r->rd_server), "%s:%d", url.host, url.port);
    r->rd_timeout_ms = opts->timeout_ms;
    r->rd_dedupe_ttl_s = opts->dedupe_ttl_s;
    r->rd_lease_ms = opts->lease_ms;
    r->rd_sync_ms = opts->sync_ms;
    r->rd_watch_chunk = opts->watch_chunk > 0 ? (size_t)opts->watch_chunk : 256;
    r->rd_queue_max = opts->queue_max > 0 ? opts->queue_max : HK_REDIS_QUEUE_MAX;
    if (inst && *inst) {
        snprintf(r->rd_instance, sizeof(r->rd_instance), "%s", inst);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        host[strcspn(host, " \t\r\n")] = '\0';
        unsigned int rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            rnd = (unsigned int)hk_clock_mono_ms() ^ (unsigned int)getpid();
        snprintf(r->rd_instance, sizeof(r->rd_instance), "%s-%d-%08x", host, (int)getpid(), rnd);
    }
    r->rd_on_breaker = opts->on_breaker;
    r->rd_arg = opts->arg;
    r->rd_backoff_ms = RD_BACKOFF_MIN_MS;

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->rd_lock, NULL);
    pthread_cond_init(&r->rd_wake, &ca);
    pthread_cond_init(&r->rd_ready, &ca);
    pthread_condattr_destroy(&ca);

    atomic_store(&hk_metrics.redis_configured, 1);
    atomic_store(&hk_metrics.redis_up, 0);

    // The thread takes no signals: process-directed ones go to the daemon's own
    // threads, and a write to a closed socket fails with EPIPE instead of SIGPIPE.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&r->rd_thread, NULL, thread_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        hk_err_set(err, err_size, "redis: cannot start its thread: %s", strerror(rc));
        pthread_mutex_destroy(&r->rd_lock);
        pthread_cond_destroy(&r->rd_wake);
        pthread_cond_destroy(&r->rd_ready);
        free(r);
        return NULL;
    }

    struct timespec ts = mono_deadline(2 * (int64_t)r->rd_timeout_ms + 100);
    pthread_mutex_lock(&r->rd_lock);
    while (!r->rd_first_done) {
        if (pthread_cond_timedwait(&r->rd_ready, &r->rd_lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&r->rd_lock);
    return r;
}

void hk_redis_stop(hk_redis_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->rd_lock);
    r->rd_stopping = 1;
    pthread_cond_signal(&r->rd_wake);
    pthread_mutex_unlock(&r->rd_lock);
    pthread_join(r->rd_thread, NULL);

    atomic_store(&hk_metrics.redis_up, 0);
    atomic_store(&hk_metrics.redis_configured, 0);
    for (rd_chunk_t *ch = r->rd_chunks, *next; ch; ch = next) {
        next = ch->ch_next;
        chunk_free(ch);
    }
    for (size_t i = 0; i < r->rd_watch_cnt; i++) {
        free(r->rd_watch[i]->w_endpoint);
        free(r->rd_watch[i]->w_key);
        free(r->rd_watch[i]);
    }
    watch_free_dead(r);
    free(r->rd_watch);
    free(r->rd_poll);
    free(r->rd_poll_argv);
    pthread_mutex_destroy(&r->rd_lock);
    pthread_cond_destroy(&r->rd_wake);
    pthread_cond_destroy(&r->rd_ready);
    free(r);
}

int hk_redis_up(const hk_redis_t *r)
{
    return r && atomic_load_explicit(&r->rd_up, memory_order_relaxed);
}

const char *hk_redis_instance(const hk_redis_t *r)
{
    return r->rd_instance;
}

void hk_redis_stats(const hk_redis_t *r, hk_redis_stats_t *st)
{
    st->round_trips = atomic_load(&r->rd_round_trips);
    st->commands = atomic_load(&r->rd_commands);
    st->unknown = atomic_load(&r->rd_unknown);
    st->queue_full = atomic_load(&r->rd_queue_full);
    st->connects = atomic_load(&r->rd_connects);
    st->script_loads = atomic_load(&r->rd_script_loads);
    st->pool_nodes = atomic_load(&r->rd_chunk_cnt) * RD_CHUNK;
}

void hk_redis_claim(hk_redis_t *r, const char *tenant, const char *key, hk_redis_claim_cb *cb,
                    void *arg)
{
    rq_t t = {.rq_kind = RQ_CLAIM, .rq_claim_cb = cb, .rq_arg = arg};
    submit(r, &t, tenant, key ? key : "");
}

void hk_redis_done(hk_redis_t *r, const char *tenant, const char *key)
{
    rq_t t = {.rq_kind = RQ_DONE};
    submit(r, &t, tenant, key ? key : "");
}

void hk_redis_release(hk_redis_t *r, const char *tenant, const char *key)
{
    rq_t t = {.rq_kind = RQ_RELEASE};
    submit(r, &t, tenant, key ? key : "");
}

void hk_redis_permits(hk_redis_t *r, const char *endpoint, double rate, int burst, int want,
                      hk_redis_permits_cb *cb, void *arg)
{
    if (want <= 0) {
        if (cb)
            cb(0, 0, arg);
        return;
    }
    rq_t t = {.rq_kind = RQ_PERMITS,
              .rq_permits_cb = cb,
              .rq_arg = arg,
              .rq_rate = rate,
              .rq_burst = burst,
              .rq_want = want};
    if (!(rate > 0) || rate > 1e9)
        endpoint = NULL; // completes as unknown: the local limiter decides
    submit(r, &t, endpoint, NULL);
}

void hk_redis_breaker_open(hk_redis_t *r, const char *endpoint, int64_t open_until_wall_ms)
{
    rq_t t = {.rq_kind = RQ_BREAKER_OPEN, .rq_until = open_until_wall_ms};
    submit(r, &t, endpoint, NULL);
}

void hk_redis_breaker_closed(hk_redis_t *r, const char *endpoint)
{
    rq_t t = {.rq_kind = RQ_BREAKER_CLOSED};
    submit(r, &t, endpoint, NULL);
}

static uint32_t watch_bucket(const char *endpoint)
{
    uint32_t h = 2166136261u;
    for (const char *p = endpoint; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h % RD_WATCH_BUCKETS;
}

// Frees what hk_redis_unwatch() dropped (rd_lock held, on the thread or at stop).
static void watch_free_dead(hk_redis_t *r)
{
    for (rd_watch_t *w = r->rd_watch_dead, *next; w; w = next) {
        next = w->w_next;
        free(w->w_endpoint);
        free(w->w_key);
        free(w);
    }
    r->rd_watch_dead = NULL;
}

void hk_redis_watch(hk_redis_t *r, const char *endpoint)
{
    if (!r || !endpoint || strlen(endpoint) > HK_REDIS_NAME_MAX)
        return;
    uint32_t b = watch_bucket(endpoint);
    pthread_mutex_lock(&r->rd_lock);
    for (rd_watch_t *w = r->rd_watch_tab[b]; w; w = w->w_next) {
        if (strcmp(w->w_endpoint, endpoint) == 0) {
            pthread_mutex_unlock(&r->rd_lock);
            return;
        }
    }
    if (r->rd_watch_cnt == r->rd_watch_cap) {
        size_t cap = r->rd_watch_cap ? r->rd_watch_cap * 2 : 16;
        rd_watch_t **nw = realloc(r->rd_watch, cap * sizeof(*nw));
        if (!nw) {
            pthread_mutex_unlock(&r->rd_lock);
            return;
        }
        r->rd_watch = nw;
        r->rd_watch_cap = cap;
    }
    rd_watch_t *w = calloc(1, sizeof(*w));
    size_t klen = strlen("hookd:breaker:") + strlen(endpoint) + 1;
    if (w) {
        w->w_endpoint = strdup(endpoint);
        w->w_key = malloc(klen);
    }
    if (!w || !w->w_endpoint || !w->w_key) {
        if (w) {
            free(w->w_endpoint);
            free(w->w_key);
        }
        free(w);
        pthread_mutex_unlock(&r->rd_lock);
        return;
    }
    snprintf(w->w_key, klen, "hookd:breaker:%s", endpoint);
    int first = r->rd_watch_cnt == 0;
    w->w_idx = r->rd_watch_cnt;
    r->rd_watch[r->rd_watch_cnt++] = w;
    w->w_next = r->rd_watch_tab[b];
    r->rd_watch_tab[b] = w;
    if (first)
        pthread_cond_signal(&r->rd_wake); // it may be sleeping without a poll deadline
    pthread_mutex_unlock(&r->rd_lock);
}

void hk_redis_unwatch(hk_redis_t *r, const char *endpoint)
{
    if (!r || !endpoint)
        return;
    uint32_t b = watch_bucket(endpoint);
    pthread_mutex_lock(&r->rd_lock);
    for (rd_watch_t **pp = &r->rd_watch_tab[b]; *pp; pp = &(*pp)->w_next) {
        rd_watch_t *w = *pp;
        if (strcmp(w->w_endpoint, endpoint) != 0)
            continue;
        *pp = w->w_next;
        rd_watch_t *last = r->rd_watch[--r->rd_watch_cnt];
        r->rd_watch[w->w_idx] = last;
        last->w_idx = w->w_idx;
        w->w_next = r->rd_watch_dead;
        r->rd_watch_dead = w;
        break;
    }
    pthread_mutex_unlock(&r->rd_lock);
}
