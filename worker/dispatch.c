// dispatch: lanes per endpoint, queues per (tenant, endpoint), a delay heap.
//
// Structures (all under d_lock):
//   lane_t   one per endpoint: breaker, AIMD limit, disabled flag, 429 hold, and the
//            list of queues parked on it because it had no free slot.
//   queue_t  one per (tenant, endpoint): a FIFO of tasks. It is READY (linked in
//            its tenant's ring), PARKED (linked in its lane's wait list) or IDLE.
//   tenant_t one per tenant: a ring of READY queues; tenants with READY queues
//            form the global ring that take() walks.
// Rings are circular doubly linked lists (O(1) unlink).
//
// Lifetimes (bounded state, DESIGN §7): a task is *bound* (task->queue set, and
// counted in its queue's and lane's refs) while it is queued, delayed or in
// flight; it is unbound whenever it leaves the dispatcher (finished, diverted,
// abandoned, removed), and bound again if it comes back. A queue is freed with its
// last bound task, a tenant with its last queue, a chain with its last task. A
// lane whose refs drop to 0 joins d_idle (oldest first) and is evicted lane_idle_ms
// later unless a rule keeps it or its breaker is OPEN.
#include "worker/dispatch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "retry/ratelimit.h"
#include "worker/clock.h"
#include "worker/log.h"
#include "worker/metrics.h"

#define BUCKETS     4096
#define MAX_WORKERS 256
#define SWEEP_MAX   4096 // lanes looked at per eviction sweep (bounds take()'s time)

typedef struct link {
    struct link *prev, *next;
} link_t;

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static void link_init(link_t *l)
{
    l->prev = l->next = l;
}

static int link_alone(const link_t *l)
{
    return l->next == l;
}

static void link_insert_before(link_t *pos, link_t *l)
{
    l->prev = pos->prev;
    l->next = pos;
    pos->prev->next = l;
    pos->prev = l;
}

static void link_remove(link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
}

typedef struct lane lane_t;
typedef struct tenant tenant_t;
typedef struct queue queue_t;

// One disabled URL of a lane: by a 410 Gone (expires, in d_gone oldest first) or
// by an operator (expires_ms 0: until enabled, not in d_gone).
typedef struct gone {
    link_t fifo;
    lane_t *lane;
    int64_t expires_ms;
    char url[];
} gone_t;

struct lane {
    lane_t *hash_next;
    hk_breaker_t *br;
    hk_aimd_t lim;
    int disabled;
    link_t waiting; // parked queues (queue_t.park)
    int br_stale;   // breaker built with old settings: replace when it closes
    gone_t **gone;  // URLs disabled one by one (410 Gone, or an operator)
    size_t gone_cnt;
    size_t queued; // tasks in this lane's queues (not delayed)
    uint64_t delivered, failed;
    size_t refs;           // bound tasks: queued, delayed or in flight
    link_t idle_link;      // in d_idle while refs == 0
    int64_t idle_since_ms; // when refs last dropped to 0
    int64_t hold_until_ms; // a 429 asked us to wait: nothing new is sent before this

    // Rate limit ([endpoint] rate/burst): permits granted by the shared limiter
    // (Redis GCRA) when there is one and it answers, else a local GCRA.
    double rate; // requests per second, 0 = none
    int burst;
    hk_gcra_t gcra;
    int permits;            // granted, not yet used
    int64_t permits_ms;     // when they were granted (they go stale after a second)
    int permit_asked;       // a request for permits is out
    int64_t shared_down_ms; // the shared limiter could not answer: local until then
    int64_t rate_wake_ms;   // parked until then (rate limit or 429 hold; 0 = not waiting)
    link_t rate_link;       // in d_rate_wait while rate_wake_ms is set
    char key[];
};

struct tenant {
    tenant_t *hash_next;
    link_t ready; // READY queues (queue_t.ring); the first is served next
    link_t ring;  // in d_tenants while it has READY queues
    size_t queues;
    char name[];
};

enum { Q_IDLE, Q_READY, Q_PARKED };

struct queue {
    queue_t *hash_next;
    tenant_t *tenant;
    lane_t *lane;
    hk_task_t *head;
    hk_task_t **tail;
    size_t cnt;
    size_t refs; // bound tasks (queued, delayed or in flight)
    int state;
    link_t ring; // in tenant->ready, or in lane->waiting
};

// Ordering by key: the tasks of one ordering key. At most one of them is active
// (queued, in a delivery thread, or delayed); the others wait here in offset order.
typedef struct chain chain_t;
struct chain {
    chain_t *hash_next;
    int active;
    hk_task_t *head; // waiting, not yet active
    hk_task_t **tail;
    char key[];
};

typedef struct worker {
    hk_dispatch_wake_cb *wake;
    void *arg;
    int idle;
} worker_t;

typedef struct diverted {
    hk_task_t *task;
    hk_divert_t why;
    int64_t due_ms;
} diverted_t;

struct hk_dispatch_s {
    pthread_mutex_t d_lock;
    hk_dispatch_opts_t d_opts;
    lane_t *d_lanes[BUCKETS];
    tenant_t *d_tenant_tab[BUCKETS];
    queue_t *d_queue_tab[BUCKETS];
    chain_t *d_chains[BUCKETS];
    size_t d_lanes_cnt, d_queues_cnt, d_tenants_cnt, d_chains_cnt;
    link_t d_idle;             // lanes without bound tasks, oldest idle first (lane_t.idle_link)
    link_t d_gone;             // 410-disabled URLs, oldest first (gone_t.fifo)
    size_t d_gone_cnt;         // entries in d_gone
    atomic_int d_disabled_cnt; // lanes disabled whole: the peer check is free while 0
    link_t d_tenants;          // tenants with READY queues; the first is served next
    size_t d_queued;           // tasks in queues
    hk_task_t **d_heap;        // delayed tasks, min-heap on due_ms
    size_t d_heap_cnt, d_heap_cap;
    // At the lane cap: tasks whose endpoint has no lane and cannot get one yet,
    // oldest first (unbound, due_ms kept). Let in by take() as lanes free.
    hk_task_t *d_waiting, **d_waiting_tail;
    size_t d_waiting_cnt;
    int d_at_cap_logged;
    link_t d_rate_wait; // lanes parked until a rate-limit or hold time (lane_t.rate_link)
    // Calls to the shared-state hooks, made after the lock is let go.
    struct note {
        int kind; // NOTE_*
        double rate;
        int burst, want;
        int64_t until_wall_ms;
        char *endpoint; // the whole key, however long (malloc'ed)
    } * d_notes;
    size_t d_notes_cnt, d_notes_cap;
    worker_t d_workers[MAX_WORKERS];
    int d_workers_cnt;
    int d_wake_next;
};

static int64_t now_of(const hk_dispatch_t *d)
{
    return d->d_opts.clock_ms ? d->d_opts.clock_ms() : hk_clock_mono_ms();
}

static uint32_t hash_str(const char *s, uint32_t h)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        // A lane or tenant record of a few bytes: nothing sensible to do without it.
        hk_log(HK_LOG_ERROR, "out_of_memory", "{s:s}", "where", "dispatch");
        abort();
    }
    return p;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
}

// An IPv6 address as the key writes it: an IPv4-mapped one as its IPv4 address
// (the same peer), others as inet_ntop writes them, in brackets.
static int ip6_canon(const struct in6_addr *a6, char *out, size_t size)
{
    char buf[INET6_ADDRSTRLEN];
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
        struct in_addr a4;
        memcpy(&a4, &a6->s6_addr[12], 4);
        return inet_ntop(AF_INET, &a4, out, (socklen_t)size) ? 0 : -1;
    }
    if (!inet_ntop(AF_INET6, a6, buf, sizeof(buf)))
        return -1;
    int n = snprintf(out, size, "[%s]", buf);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

// The host part of an endpoint key (see hk_dispatch_endpoint_of). `host` as curl
// gives it (IPv6 in brackets, zone id dropped; IPv4 spellings already dotted).
static int host_canon(const char *host, char *out, size_t size)
{
    size_t len = strlen(host);
    if (len == 0 || len > HK_DISPATCH_HOST_MAX + 2)
        return -1;
    if (host[0] == '[') {
        char inner[INET6_ADDRSTRLEN + 1];
        const char *close = strchr(host, ']');
        size_t n = close ? (size_t)(close - host - 1) : 0;
        struct in6_addr a6;
        if (close && n < sizeof(inner)) {
            memcpy(inner, host + 1, n);
            inner[n] = '\0';
            char *pct = strchr(inner, '%');
            if (pct)
                *pct = '\0';
            if (inet_pton(AF_INET6, inner, &a6) == 1)
                return ip6_canon(&a6, out, size);
        }
        if (len >= size)
            return -1;
        memcpy(out, host, len + 1);
        lower(out);
        return 0;
    }
    char buf[HK_DISPATCH_HOST_MAX + 3];
    memcpy(buf, host, len + 1);
    lower(buf);
    while (len > 0 && buf[len - 1] == '.') // "example.com." is example.com
        buf[--len] = '\0';
    if (len == 0 || len > HK_DISPATCH_HOST_MAX)
        return -1;
    // curl writes IPv4 literals as dotted quads, but not once a trailing dot hid
    // them ("127.1."): read those as curl would (inet_aton takes the same
    // decimal, octal, hex and short forms).
    struct in_addr a4;
    if (strspn(buf, "0123456789abcdefx.") == len && inet_aton(buf, &a4) == 1)
        return inet_ntop(AF_INET, &a4, out, (socklen_t)size) ? 0 : -1;
    if (strcmp(buf, "localhost") == 0) // curl answers it itself, with loopback
        snprintf(buf, sizeof(buf), "127.0.0.1");
    int n = snprintf(out, size, "%s", buf);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

int hk_dispatch_endpoint_of(const char *url, char *out, size_t out_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    char h[HK_DISPATCH_HOST_MAX + 3];
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        host_canon(host, h, sizeof(h)) == 0) {
        lower(scheme);
        char *end;
        long p = strtol(port, &end, 10);
        if (*end == '\0' && p > 0 && p <= 65535) {
            int n = snprintf(out, out_size, "%s://%s:%ld", scheme, h, p);
            rc = n > 0 && (size_t)n < out_size ? 0 : -1;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

enum { NOTE_LANE, NOTE_LANE_GONE, NOTE_OPEN, NOTE_CLOSE, NOTE_PERMITS };

// Queues a call to a shared-state hook (lock held); flush_notes() makes it.
static void note_add(hk_dispatch_t *d, int kind, const lane_t *l, int want)
{
    int hooked = kind == NOTE_PERMITS     ? d->d_opts.want_permits != NULL
                 : kind == NOTE_LANE      ? d->d_opts.on_lane != NULL
                 : kind == NOTE_LANE_GONE ? d->d_opts.on_lane_gone != NULL
                                          : d->d_opts.on_breaker != NULL;
    if (!hooked)
        return;
    if (d->d_notes_cnt == d->d_notes_cap) {
        d->d_notes_cap = d->d_notes_cap ? d->d_notes_cap * 2 : 8;
        d->d_notes = realloc(d->d_notes, d->d_notes_cap * sizeof(*d->d_notes));
        if (!d->d_notes)
            abort();
    }
    struct note *n = &d->d_notes[d->d_notes_cnt++];
    n->kind = kind;
    n->rate = l->rate;
    n->burst = l->burst;
    n->want = want;
    n->until_wall_ms = 0;
    if (kind == NOTE_OPEN) // the hooks speak wall-clock time: it is shared
        n->until_wall_ms = hk_clock_wall_ms() + (hk_breaker_open_until(l->br) - now_of(d));
    // The whole key: a cut one would never find its lane again.
    n->endpoint = strdup(l->key);
    if (!n->endpoint)
        abort();
}

// Makes the queued hook calls, without the lock.
static void flush_notes(hk_dispatch_t *d)
{
    pthread_mutex_lock(&d->d_lock);
    struct note *notes = d->d_notes;
    size_t cnt = d->d_notes_cnt;
    d->d_notes = NULL;
    d->d_notes_cnt = d->d_notes_cap = 0;
    pthread_mutex_unlock(&d->d_lock);
    void *arg = d->d_opts.arg;
    for (size_t i = 0; i < cnt; i++) {
        struct note *n = &notes[i];
        if (n->kind == NOTE_LANE)
            d->d_opts.on_lane(n->endpoint, arg);
        else if (n->kind == NOTE_LANE_GONE)
            d->d_opts.on_lane_gone(n->endpoint, arg);
        else if (n->kind == NOTE_PERMITS)
            d->d_opts.want_permits(n->endpoint, n->rate, n->burst, n->want, arg);
        else
            d->d_opts.on_breaker(n->endpoint, n->kind == NOTE_OPEN ? n->until_wall_ms : 0, arg);
        free(n->endpoint);
    }
    free(notes);
}

// Parks the lane's queues until `when_ms` (a rate limit or a 429 hold); an
// earlier wake-up already set stands (waking early only parks them again).
static void rate_wait(hk_dispatch_t *d, lane_t *l, int64_t when_ms)
{
    if (l->rate_wake_ms == 0 || when_ms < l->rate_wake_ms)
        l->rate_wake_ms = when_ms;
    if (link_alone(&l->rate_link))
        link_insert_before(&d->d_rate_wait, &l->rate_link);
}

// One request's worth of the lane's rate limit; 0 when it must wait (the caller
// parks the queue: an answer from the shared limiter, or the lane's rate wake-up,
// unparks it).
static int rate_take(hk_dispatch_t *d, lane_t *l, int64_t now_ms)
{
    if (l->permits > 0 && now_ms - l->permits_ms > 1000)
        l->permits = 0; // unused for a second: the fleet's budget has moved on
    if (l->permits > 0) {
        l->permits--;
        return 1;
    }
    if (d->d_opts.want_permits && now_ms >= l->shared_down_ms) {
        hk_metric_add(rate_limited, 1);
        if (!l->permit_asked) {
            l->permit_asked = 1;
            size_t want = l->queued + 1;
            note_add(d, NOTE_PERMITS, l, want < (size_t)l->burst ? (int)want : l->burst);
        }
        return 0;
    }
    int64_t retry = 1;
    if (hk_gcra_take(&l->gcra, l->rate, l->burst, 1, now_ms, &retry) == 1)
        return 1;
    hk_metric_add(rate_limited, 1);
    rate_wait(d, l, now_ms + (retry > 0 ? retry : 1));
    return 0;
}

// --- lifetimes -----------------------------------------------------------------

// 1 while a rule keeps the lane whatever its traffic: disabled, a rate limit, or
// disabled URLs (those expire, operator ones excepted).
static int lane_kept(const lane_t *l)
{
    return l->disabled || l->rate > 0 || l->gone_cnt > 0;
}

// 1 when the lane may be evicted now: nothing bound to it, no rule, its breaker
// not OPEN and no 429 hold (forgetting either would let a burst through).
static int lane_evictable(const lane_t *l, int64_t now_ms)
{
    return l->refs == 0 && !lane_kept(l) && l->hold_until_ms <= now_ms &&
           hk_breaker_state(l->br, now_ms) != HK_BREAKER_OPEN;
}

static void lane_evict(hk_dispatch_t *d, lane_t *l)
{
    uint32_t b = hash_str(l->key, 2166136261u) % BUCKETS;
    for (lane_t **pp = &d->d_lanes[b]; *pp; pp = &(*pp)->hash_next) {
        if (*pp == l) {
            *pp = l->hash_next;
            break;
        }
    }
    link_remove(&l->idle_link);
    if (!link_alone(&l->rate_link))
        link_remove(&l->rate_link);
    note_add(d, NOTE_LANE_GONE, l, 0);
    hk_breaker_destroy(l->br);
    free(l->gone);
    free(l);
    d->d_lanes_cnt--;
    hk_metric_add(lanes_evicted, 1);
}

// Evicts lanes idle for lane_idle_ms; those a rule or an open breaker keeps go
// to the back, to be looked at again an idle time later. Bounded per call.
static void lanes_sweep(hk_dispatch_t *d, int64_t now_ms)
{
    for (size_t looked = 0; !link_alone(&d->d_idle) && looked < SWEEP_MAX; looked++) {
        lane_t *l = container_of(d->d_idle.next, lane_t, idle_link);
        if (now_ms - l->idle_since_ms < d->d_opts.lane_idle_ms)
            break;
        if (lane_evictable(l, now_ms)) {
            lane_evict(d, l);
        } else {
            link_remove(&l->idle_link);
            l->idle_since_ms = now_ms;
            link_insert_before(&d->d_idle, &l->idle_link);
        }
    }
}

static void lane_ref(lane_t *l)
{
    if (l->refs++ == 0)
        link_remove(&l->idle_link);
}

static void lane_unref(hk_dispatch_t *d, lane_t *l, int64_t now_ms)
{
    if (--l->refs == 0) {
        l->idle_since_ms = now_ms;
        link_insert_before(&d->d_idle, &l->idle_link);
    }
}

// `force`: a rule names the lane (config, admin API): made even past the cap,
// since rules are few and trusted. Otherwise NULL at the cap when no idle lane
// can make room.
static lane_t *lane_find(hk_dispatch_t *d, const char *key, int create, int force)
{
    uint32_t b = hash_str(key, 2166136261u) % BUCKETS;
    for (lane_t *l = d->d_lanes[b]; l; l = l->hash_next)
        if (strcmp(l->key, key) == 0)
            return l;
    if (!create)
        return NULL;
    int64_t now = now_of(d);
    if (d->d_lanes_cnt >= d->d_opts.max_lanes && !force) {
        // At the cap: the least recently idle lane that may go makes room now,
        // without waiting out its idle time.
        lane_t *victim = NULL;
        size_t looked = 0;
        for (link_t *k = d->d_idle.next; k != &d->d_idle && looked < SWEEP_MAX;
             k = k->next, looked++) {
            lane_t *c = container_of(k, lane_t, idle_link);
            if (lane_evictable(c, now)) {
                victim = c;
                break;
            }
        }
        if (!victim)
            return NULL;
        lane_evict(d, victim);
    }
    size_t len = strlen(key);
    lane_t *l = xcalloc(1, sizeof(*l) + len + 1);
    memcpy(l->key, key, len + 1);
    l->br = hk_breaker_new(&d->d_opts.breaker);
    if (!l->br)
        abort();
    hk_aimd_init(&l->lim, &d->d_opts.lane);
    link_init(&l->waiting);
    link_init(&l->rate_link);
    l->idle_since_ms = now;
    link_insert_before(&d->d_idle, &l->idle_link);
    l->hash_next = d->d_lanes[b];
    d->d_lanes[b] = l;
    d->d_lanes_cnt++;
    note_add(d, NOTE_LANE, l, 0);
    return l;
}

static tenant_t *tenant_find(hk_dispatch_t *d, const char *name)
{
    uint32_t b = hash_str(name, 2166136261u) % BUCKETS;
    for (tenant_t *t = d->d_tenant_tab[b]; t; t = t->hash_next)
        if (strcmp(t->name, name) == 0)
            return t;
    size_t len = strlen(name);
    tenant_t *t = xcalloc(1, sizeof(*t) + len + 1);
    memcpy(t->name, name, len + 1);
    link_init(&t->ready);
    link_init(&t->ring);
    t->hash_next = d->d_tenant_tab[b];
    d->d_tenant_tab[b] = t;
    d->d_tenants_cnt++;
    return t;
}

static void tenant_free(hk_dispatch_t *d, tenant_t *t)
{
    uint32_t b = hash_str(t->name, 2166136261u) % BUCKETS;
    for (tenant_t **pp = &d->d_tenant_tab[b]; *pp; pp = &(*pp)->hash_next) {
        if (*pp == t) {
            *pp = t->hash_next;
            break;
        }
    }
    free(t);
    d->d_tenants_cnt--;
}

static uint32_t queue_bucket(const tenant_t *t, const lane_t *l)
{
    return (uint32_t)(((uintptr_t)t * 31u) ^ ((uintptr_t)l >> 4)) % BUCKETS;
}

static queue_t *queue_find(hk_dispatch_t *d, tenant_t *t, lane_t *l)
{
    uint32_t b = queue_bucket(t, l);
    for (queue_t *q = d->d_queue_tab[b]; q; q = q->hash_next)
        if (q->tenant == t && q->lane == l)
            return q;
    queue_t *q = xcalloc(1, sizeof(*q));
    q->tenant = t;
    q->lane = l;
    q->tail = &q->head;
    q->state = Q_IDLE;
    link_init(&q->ring);
    q->hash_next = d->d_queue_tab[b];
    d->d_queue_tab[b] = q;
    t->queues++;
    d->d_queues_cnt++;
    return q;
}

// The queue's last bound task left (so it is empty and IDLE): it goes, and its
// tenant with it when that was the tenant's last queue.
static void queue_free(hk_dispatch_t *d, queue_t *q)
{
    uint32_t b = queue_bucket(q->tenant, q->lane);
    for (queue_t **pp = &d->d_queue_tab[b]; *pp; pp = &(*pp)->hash_next) {
        if (*pp == q) {
            *pp = q->hash_next;
            break;
        }
    }
    tenant_t *t = q->tenant;
    free(q);
    d->d_queues_cnt--;
    if (--t->queues == 0)
        tenant_free(d, t);
}

// Binds the task to its (tenant, endpoint) queue (see the top comment). NULL
// when its endpoint has no lane and the cap leaves no room for one.
static queue_t *task_bind(hk_dispatch_t *d, hk_task_t *task)
{
    if (task->queue)
        return task->queue;
    char key[HK_DISPATCH_ENDPOINT_MAX];
    if (hk_dispatch_endpoint_of(task->job->url, key, sizeof(key)) != 0)
        snprintf(key, sizeof(key), "invalid:");
    lane_t *l = lane_find(d, key, 1, 0);
    if (!l)
        return NULL;
    const char *tname = task->job->tenant ? task->job->tenant : "default";
    queue_t *q = queue_find(d, tenant_find(d, tname), l);
    q->refs++;
    lane_ref(l);
    task->queue = q;
    return q;
}

// The task leaves the dispatcher (its queue and lane may go).
static void task_unbind(hk_dispatch_t *d, hk_task_t *task, int64_t now_ms)
{
    queue_t *q = task->queue;
    if (!q)
        return;
    task->queue = NULL;
    lane_unref(d, q->lane, now_ms);
    if (--q->refs == 0)
        queue_free(d, q);
}

// A task for a new endpoint while every lane holds work: it waits, unbound.
static void waiting_push(hk_dispatch_t *d, hk_task_t *task)
{
    task->next = NULL;
    *d->d_waiting_tail = task;
    d->d_waiting_tail = &task->next;
    d->d_waiting_cnt++;
    hk_metric_add(lane_cap_waits, 1);
    if (!d->d_at_cap_logged) {
        d->d_at_cap_logged = 1;
        hk_log(HK_LOG_WARN, "lanes_full", "{s:I,s:s}", "max_lanes", (json_int_t)d->d_opts.max_lanes,
               "action", "tasks for new endpoints wait until a lane frees");
    }
}

// Makes q READY: linked at the end of its tenant's ring, tenant in the global ring.
static void queue_ready(hk_dispatch_t *d, queue_t *q)
{
    if (q->state == Q_READY)
        return;
    if (q->state == Q_PARKED)
        link_remove(&q->ring);
    q->state = Q_READY;
    link_insert_before(&q->tenant->ready, &q->ring);
    if (link_alone(&q->tenant->ring))
        link_insert_before(&d->d_tenants, &q->tenant->ring);
}

// Takes q out of its tenant's ring; the tenant leaves the global ring when empty.
static void queue_unready(queue_t *q)
{
    if (q->state != Q_READY)
        return;
    link_remove(&q->ring);
    q->state = Q_IDLE;
    if (link_alone(&q->tenant->ready))
        link_remove(&q->tenant->ring);
}

static void queue_park(queue_t *q)
{
    queue_unready(q);
    q->state = Q_PARKED;
    link_insert_before(&q->lane->waiting, &q->ring);
}

static void queue_push(hk_dispatch_t *d, queue_t *q, hk_task_t *task)
{
    task->next = NULL;
    *q->tail = task;
    q->tail = &task->next;
    q->cnt++;
    q->lane->queued++;
    d->d_queued++;
    if (q->state == Q_IDLE)
        queue_ready(d, q);
}

static hk_task_t *queue_pop(hk_dispatch_t *d, queue_t *q)
{
    hk_task_t *task = q->head;
    q->head = task->next;
    if (!q->head)
        q->tail = &q->head;
    task->next = NULL;
    q->cnt--;
    q->lane->queued--;
    d->d_queued--;
    if (q->cnt == 0) {
        if (q->state == Q_PARKED)
            link_remove(&q->ring);
        queue_unready(q);
        q->state = Q_IDLE;
    }
    return task;
}

// Parked queues of a lane become READY again (a slot or a probe freed up).
static void lane_unpark(hk_dispatch_t *d, lane_t *l)
{
    while (!link_alone(&l->waiting)) {
        queue_t *q = container_of(l->waiting.next, queue_t, ring);
        link_remove(&q->ring);
        q->state = Q_IDLE;
        queue_ready(d, q);
    }
}

// Swaps in a fresh breaker with the current settings; in-flight tickets of the
// old one are simply ignored by the new one.
static void lane_new_breaker(hk_dispatch_t *d, lane_t *l)
{
    hk_breaker_t *br = hk_breaker_new(&d->d_opts.breaker);
    if (!br)
        return;
    hk_breaker_destroy(l->br);
    l->br = br;
    l->br_stale = 0;
}

// --- delay heap ---------------------------------------------------------------

static void heap_swap(hk_dispatch_t *d, size_t a, size_t b)
{
    hk_task_t *t = d->d_heap[a];
    d->d_heap[a] = d->d_heap[b];
    d->d_heap[b] = t;
    d->d_heap[a]->heap_idx = a;
    d->d_heap[b]->heap_idx = b;
}

static void heap_up(hk_dispatch_t *d, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (d->d_heap[p]->due_ms <= d->d_heap[i]->due_ms)
            break;
        heap_swap(d, p, i);
        i = p;
    }
}

static void heap_down(hk_dispatch_t *d, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < d->d_heap_cnt && d->d_heap[l]->due_ms < d->d_heap[m]->due_ms)
            m = l;
        if (r < d->d_heap_cnt && d->d_heap[r]->due_ms < d->d_heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(d, i, m);
        i = m;
    }
}

// Restores the heap order after entries were filtered out or their due times
// changed in place (removing or updating them one by one could skip an entry
// that moves up past the scan).
static void heap_rebuild(hk_dispatch_t *d)
{
    for (size_t i = d->d_heap_cnt / 2; i-- > 0;)
        heap_down(d, i);
}

static void heap_push(hk_dispatch_t *d, hk_task_t *task)
{
    if (d->d_heap_cnt == d->d_heap_cap) {
        size_t cap = d->d_heap_cap ? d->d_heap_cap * 2 : 256;
        hk_task_t **h = realloc(d->d_heap, cap * sizeof(*h));
        if (!h)
            abort();
        d->d_heap = h;
        d->d_heap_cap = cap;
    }
    task->heap_idx = d->d_heap_cnt;
    d->d_heap[d->d_heap_cnt++] = task;
    heap_up(d, task->heap_idx);
}

static hk_task_t *heap_remove(hk_dispatch_t *d, size_t i)
{
    hk_task_t *task = d->d_heap[i];
    d->d_heap_cnt--;
    if (i != d->d_heap_cnt) {
        d->d_heap[i] = d->d_heap[d->d_heap_cnt];
        d->d_heap[i]->heap_idx = i;
        heap_down(d, i);
        heap_up(d, i);
    }
    task->heap_idx = SIZE_MAX;
    return task;
}

// --- public -------------------------------------------------------------------

hk_dispatch_t *hk_dispatch_new(const hk_dispatch_opts_t *opts)
{
    hk_dispatch_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->d_opts = *opts;
    hk_dispatch_opts_t *o = &d->d_opts;
    if (o->lane_idle_ms <= 0)
        o->lane_idle_ms = 30000;
    if (o->max_lanes == 0)
        o->max_lanes = 10000;
    if (o->gone_max == 0)
        o->gone_max = 10000;
    if (o->gone_ttl_ms <= 0)
        o->gone_ttl_ms = 3600000;
    if (o->hold_default_ms <= 0)
        o->hold_default_ms = 1000;
    if (o->hold_max_ms <= 0)
        o->hold_max_ms = 3600000;
    pthread_mutex_init(&d->d_lock, NULL);
    link_init(&d->d_tenants);
    link_init(&d->d_rate_wait);
    link_init(&d->d_idle);
    link_init(&d->d_gone);
    d->d_waiting_tail = &d->d_waiting;
    return d;
}

void hk_dispatch_destroy(hk_dispatch_t *d)
{
    if (!d)
        return;
    for (int b = 0; b < BUCKETS; b++) {
        for (queue_t *q = d->d_queue_tab[b], *next; q; q = next) {
            next = q->hash_next;
            while (q->head) {
                hk_task_t *task = q->head;
                q->head = task->next;
                hk_task_destroy(task);
            }
            free(q);
        }
        for (tenant_t *t = d->d_tenant_tab[b], *next; t; t = next) {
            next = t->hash_next;
            free(t);
        }
        for (chain_t *c = d->d_chains[b], *next; c; c = next) {
            next = c->hash_next;
            while (c->head) {
                hk_task_t *task = c->head;
                c->head = task->next;
                hk_task_destroy(task);
            }
            free(c);
        }
        for (lane_t *l = d->d_lanes[b], *next; l; l = next) {
            next = l->hash_next;
            for (size_t i = 0; i < l->gone_cnt; i++)
                free(l->gone[i]);
            free(l->gone);
            hk_breaker_destroy(l->br);
            free(l);
        }
    }
    for (hk_task_t *task = d->d_waiting, *next; task; task = next) {
        next = task->next;
        hk_task_destroy(task);
    }
    for (size_t i = 0; i < d->d_heap_cnt; i++)
        hk_task_destroy(d->d_heap[i]);
    free(d->d_heap);
    for (size_t i = 0; i < d->d_notes_cnt; i++)
        free(d->d_notes[i].endpoint);
    free(d->d_notes);
    pthread_mutex_destroy(&d->d_lock);
    free(d);
}

int hk_dispatch_register(hk_dispatch_t *d, hk_dispatch_wake_cb *wake, void *arg)
{
    pthread_mutex_lock(&d->d_lock);
    int slot = d->d_workers_cnt < MAX_WORKERS ? d->d_workers_cnt++ : -1;
    if (slot >= 0)
        d->d_workers[slot] = (worker_t){.wake = wake, .arg = arg, .idle = 0};
    pthread_mutex_unlock(&d->d_lock);
    return slot;
}

// Picks an idle worker to wake (called with the lock held; wake it after unlock).
static worker_t pick_idle(hk_dispatch_t *d)
{
    for (int i = 0; i < d->d_workers_cnt; i++) {
        worker_t *w = &d->d_workers[(d->d_wake_next + i) % d->d_workers_cnt];
        if (w->idle) {
            w->idle = 0;
            d->d_wake_next = (d->d_wake_next + i + 1) % d->d_workers_cnt;
            return *w;
        }
    }
    return (worker_t){0};
}

static chain_t *chain_get(hk_dispatch_t *d, const char *key)
{
    uint32_t b = hash_str(key, 2166136261u) % BUCKETS;
    for (chain_t *c = d->d_chains[b]; c; c = c->hash_next)
        if (strcmp(c->key, key) == 0)
            return c;
    size_t len = strlen(key);
    chain_t *c = xcalloc(1, sizeof(*c) + len + 1);
    memcpy(c->key, key, len + 1);
    c->tail = &c->head;
    c->hash_next = d->d_chains[b];
    d->d_chains[b] = c;
    d->d_chains_cnt++;
    return c;
}

static void chain_free(hk_dispatch_t *d, chain_t *c)
{
    uint32_t b = hash_str(c->key, 2166136261u) % BUCKETS;
    for (chain_t **pp = &d->d_chains[b]; *pp; pp = &(*pp)->hash_next) {
        if (*pp == c) {
            *pp = c->hash_next;
            free(c);
            d->d_chains_cnt--;
            return;
        }
    }
}

// Puts an active task where it belongs: the delay heap when it has a due time,
// else its queue; it waits for a lane when the cap leaves no room for its own.
static void task_place(hk_dispatch_t *d, hk_task_t *task)
{
    queue_t *q = task_bind(d, task);
    if (!q)
        waiting_push(d, task);
    else if (task->due_ms > 0)
        heap_push(d, task);
    else
        queue_push(d, q, task);
}

// The key's active task is terminal: the next waiting one becomes active and
// ready, or the chain goes away. Returns 1 when a task became ready.
static int chain_release(hk_dispatch_t *d, hk_task_t *task)
{
    chain_t *c = task->chain;
    if (!c)
        return 0;
    task->chain = NULL;
    if (!c->head) {
        chain_free(d, c);
        return 0;
    }
    hk_task_t *next = c->head;
    c->head = next->next;
    if (!c->head)
        c->tail = &c->head;
    next->next = NULL;
    task_place(d, next); // the heap when e.g. a retry-topic record is not yet due
    return 1;
}

void hk_dispatch_release(hk_dispatch_t *d, hk_task_t *task)
{
    if (!task->chain)
        return;
    pthread_mutex_lock(&d->d_lock);
    worker_t w = chain_release(d, task) ? pick_idle(d) : (worker_t){0};
    int notes = d->d_notes_cnt > 0;
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    if (notes)
        flush_notes(d);
}

void hk_dispatch_submit(hk_dispatch_t *d, hk_task_t *task)
{
    hk_dispatch_defer(d, task, 0);
}

void hk_dispatch_defer(hk_dispatch_t *d, hk_task_t *task, int64_t due_ms)
{
    pthread_mutex_lock(&d->d_lock);
    // Batch items are ordered by their batch, never chained by key (they share one).
    if (d->d_opts.ordered && !task->chain && !task->batch && task->job->ordering_key) {
        chain_t *c = chain_get(d, task->job->ordering_key);
        task->chain = c;
        if (c->active) { // an earlier job of this key is not terminal yet: wait (unbound)
            task->next = NULL;
            task->due_ms = due_ms;
            *c->tail = task;
            c->tail = &task->next;
            pthread_mutex_unlock(&d->d_lock);
            return;
        }
        c->active = 1;
    }
    task->due_ms = due_ms;
    task_place(d, task);
    // An earlier wake-up than any sleeper expects, or work now.
    int first = due_ms > 0 && task->heap_idx == 0 && d->d_heap_cnt > 0 && d->d_heap[0] == task;
    worker_t w = (due_ms == 0 || first) ? pick_idle(d) : (worker_t){0};
    int notes = d->d_notes_cnt > 0;
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    if (notes)
        flush_notes(d);
}

#define HK_URL_NORM_MAX 8448

// The URL as curl writes it back (lowercase scheme, default port dropped, ...),
// so two spellings of one URL compare equal.
static int url_norm(const char *url, char *out, size_t size)
{
    CURLU *u = curl_url();
    char *s = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
        int n = snprintf(out, size, "%s", s);
        rc = n > 0 && (size_t)n < size ? 0 : -1;
    }
    curl_free(s);
    curl_url_cleanup(u);
    return rc;
}

// 1 when the URL names a whole endpoint (no path beyond "/", no query).
static int url_is_root(const char *url)
{
    CURLU *u = curl_url();
    char *path = NULL, *query = NULL;
    int root = 0;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        root = strcmp(path, "/") == 0 &&
               curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_NO_QUERY;
    }
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return root;
}

static int url_gone(const lane_t *l, const char *url)
{
    char norm[HK_URL_NORM_MAX];
    if (url_norm(url, norm, sizeof(norm)) != 0)
        return 0;
    for (size_t i = 0; i < l->gone_cnt; i++)
        if (strcmp(l->gone[i]->url, norm) == 0)
            return 1;
    return 0;
}

static void gone_remove(hk_dispatch_t *d, lane_t *l, size_t i)
{
    gone_t *g = l->gone[i];
    if (!link_alone(&g->fifo)) {
        link_remove(&g->fifo);
        d->d_gone_cnt--;
    }
    l->gone[i] = l->gone[--l->gone_cnt];
    free(g);
}

// Adds or removes one URL of the lane's disabled list; 1 when that changed it.
// `expires_ms` 0: an operator's, kept until enabled; else a 410's, forgotten
// then, or earlier when more than gone_max are held (oldest first).
static int url_gone_set(hk_dispatch_t *d, lane_t *l, const char *url, int gone, int64_t expires_ms)
{
    for (size_t i = 0; i < l->gone_cnt; i++) {
        gone_t *g = l->gone[i];
        if (strcmp(g->url, url) == 0) {
            if (!gone) {
                gone_remove(d, l, i);
                return 1;
            }
            if (expires_ms == 0 && g->expires_ms != 0 && !link_alone(&g->fifo)) {
                link_remove(&g->fifo); // an operator's now: no longer expires
                d->d_gone_cnt--;
                g->expires_ms = 0;
            }
            return 0;
        }
    }
    if (!gone)
        return 0;
    size_t len = strlen(url);
    gone_t **v = realloc(l->gone, (l->gone_cnt + 1) * sizeof(*v));
    gone_t *g = malloc(sizeof(*g) + len + 1);
    if (!v || !g)
        abort();
    l->gone = v;
    memcpy(g->url, url, len + 1);
    g->lane = l;
    g->expires_ms = expires_ms;
    link_init(&g->fifo);
    l->gone[l->gone_cnt++] = g;
    if (expires_ms != 0) {
        link_insert_before(&d->d_gone, &g->fifo);
        d->d_gone_cnt++;
    }
    return 1;
}

// Forgets 410s past their time, and the oldest beyond gone_max.
static void gone_sweep(hk_dispatch_t *d, int64_t now_ms)
{
    while (!link_alone(&d->d_gone)) {
        gone_t *g = container_of(d->d_gone.next, gone_t, fifo);
        if (g->expires_ms > now_ms && d->d_gone_cnt <= d->d_opts.gone_max)
            break;
        lane_t *l = g->lane;
        for (size_t i = 0; i < l->gone_cnt; i++) {
            if (l->gone[i] == g) {
                gone_remove(d, l, i);
                break;
            }
        }
    }
}

// Logs the breaker's transitions once each, and has opens and closes published to
// the other replicas (not those another replica caused: `remote`).
static void log_transitions(hk_dispatch_t *d, lane_t *l, int remote)
{
    hk_breaker_state_t from, to;
    while (hk_breaker_take_transition(l->br, &from, &to)) {
        hk_log(HK_LOG_INFO, "breaker", "{s:s,s:s,s:s,s:f,s:b}", "endpoint", l->key, "from",
               hk_breaker_state_name(from), "to", hk_breaker_state_name(to), "failure_rate",
               hk_breaker_failure_rate(l->br), "remote", remote);
        if (!remote && to == HK_BREAKER_OPEN)
            note_add(d, NOTE_OPEN, l, 0);
        else if (!remote && to == HK_BREAKER_CLOSED)
            note_add(d, NOTE_CLOSE, l, 0);
    }
}

static void divert_add(diverted_t **list, size_t *cnt, size_t *cap, hk_task_t *task,
                       hk_divert_t why, int64_t due)
{
    if (*cnt == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        diverted_t *n = realloc(*list, *cap * sizeof(**list));
        if (!n)
            abort();
        *list = n;
    }
    (*list)[(*cnt)++] = (diverted_t){.task = task, .why = why, .due_ms = due};
}

// Tasks that waited for a lane at the cap get one, oldest first, while there is
// room (an idle lane to evict, or their endpoint's lane is live again).
static void waiting_admit(hk_dispatch_t *d)
{
    while (d->d_waiting) {
        hk_task_t *task = d->d_waiting;
        if (!task_bind(d, task))
            return;
        d->d_waiting = task->next;
        if (!d->d_waiting)
            d->d_waiting_tail = &d->d_waiting;
        d->d_waiting_cnt--;
        task->next = NULL;
        if (task->due_ms > 0)
            heap_push(d, task);
        else
            queue_push(d, task->queue, task);
    }
    d->d_at_cap_logged = 0;
}

size_t hk_dispatch_take(hk_dispatch_t *d, int slot, hk_task_t **out, size_t max, int64_t now_ms,
                        int64_t *next_due_ms)
{
    diverted_t *div = NULL;
    size_t div_cnt = 0, div_cap = 0, n = 0;

    pthread_mutex_lock(&d->d_lock);
    gone_sweep(d, now_ms);
    lanes_sweep(d, now_ms);
    waiting_admit(d);
    for (link_t *k = d->d_rate_wait.next, *kn; k != &d->d_rate_wait; k = kn) {
        kn = k->next;
        lane_t *l = container_of(k, lane_t, rate_link);
        if (l->rate_wake_ms <= now_ms) {
            link_remove(&l->rate_link);
            l->rate_wake_ms = 0;
            lane_unpark(d, l);
        }
    }
    while (d->d_heap_cnt > 0 && d->d_heap[0]->due_ms <= now_ms) {
        hk_task_t *task = heap_remove(d, 0);
        task->due_ms = 0;
        task->open_deferred = 0;
        queue_push(d, task->queue, task);
    }

    // Diverted tasks stay bound until the loop is over: unbinding may free their
    // queue, which the loop may still be reading.
    while (n < max && !link_alone(&d->d_tenants)) {
        tenant_t *t = container_of(d->d_tenants.next, tenant_t, ring);
        queue_t *q = container_of(t->ready.next, queue_t, ring);
        lane_t *l = q->lane;

        if (l->disabled) {
            while (q->cnt)
                divert_add(&div, &div_cnt, &div_cap, queue_pop(d, q), HK_DIVERT_DISABLED, 0);
            continue;
        }
        if (l->gone_cnt && url_gone(l, q->head->job->url)) {
            divert_add(&div, &div_cnt, &div_cap, queue_pop(d, q), HK_DIVERT_GONE, 0);
            continue;
        }
        hk_breaker_state_t st = hk_breaker_state(l->br, now_ms);
        if (st == HK_BREAKER_OPEN) {
            // Deferred whole until the breaker half-opens; no attempt is charged.
            int64_t due = hk_breaker_open_until(l->br);
            while (q->cnt) {
                hk_task_t *task = queue_pop(d, q);
                hk_metric_add(deferred_open, 1);
                if (due - now_ms <= d->d_opts.inline_max_ms || task->chain || task->batch) {
                    task->due_ms = due;
                    task->open_deferred = 1;
                    heap_push(d, task);
                } else {
                    divert_add(&div, &div_cnt, &div_cap, task, HK_DIVERT_RETRY_TOPIC, due);
                }
            }
            continue;
        }
        if (l->hold_until_ms > now_ms) {
            // A 429 asked for a pause: the whole lane waits it out.
            queue_park(q);
            rate_wait(d, l, l->hold_until_ms);
            continue;
        }
        if (!hk_aimd_acquire(&l->lim)) {
            queue_park(q);
            continue;
        }
        if (l->rate > 0 && !rate_take(d, l, now_ms)) {
            hk_aimd_release(&l->lim, HK_AIMD_IGNORE);
            queue_park(q);
            continue;
        }
        hk_breaker_ticket_t ticket;
        if (!hk_breaker_allow(l->br, now_ms, &ticket)) {
            hk_aimd_release(&l->lim, HK_AIMD_IGNORE);
            queue_park(q); // half-open with every probe out: wait for a result
            log_transitions(d, l, 0);
            continue;
        }
        log_transitions(d, l, 0);
        hk_task_t *task = queue_pop(d, q);
        task->lane_held = 1;
        task->ticket = ticket;
        out[n++] = task;

        // Round robin: this queue goes to the back of its tenant's ring, the
        // tenant to the back of the global ring.
        if (q->state == Q_READY) {
            link_remove(&q->ring);
            link_insert_before(&t->ready, &q->ring);
        }
        if (!link_alone(&t->ring)) {
            link_remove(&t->ring);
            link_insert_before(&d->d_tenants, &t->ring);
        }
    }
    for (size_t i = 0; i < div_cnt; i++)
        task_unbind(d, div[i].task, now_ms);
    if (slot >= 0 && slot < d->d_workers_cnt)
        d->d_workers[slot].idle = (n < max);
    if (next_due_ms) {
        *next_due_ms = d->d_heap_cnt ? d->d_heap[0]->due_ms : INT64_MAX;
        for (link_t *k = d->d_rate_wait.next; k != &d->d_rate_wait; k = k->next) {
            lane_t *l = container_of(k, lane_t, rate_link);
            if (l->rate_wake_ms < *next_due_ms)
                *next_due_ms = l->rate_wake_ms;
        }
        // Idle lanes are evicted on time, and waiting tasks let in, only when
        // someone takes: a sleeper comes back for them.
        if (!link_alone(&d->d_idle)) {
            lane_t *l = container_of(d->d_idle.next, lane_t, idle_link);
            int64_t due = l->idle_since_ms + d->d_opts.lane_idle_ms;
            if (due < *next_due_ms)
                *next_due_ms = due;
        }
        if (d->d_waiting && now_ms + 100 < *next_due_ms)
            *next_due_ms = now_ms + 100;
    }
    int notes = d->d_notes_cnt > 0;
    pthread_mutex_unlock(&d->d_lock);

    for (size_t i = 0; i < div_cnt; i++)
        d->d_opts.divert(div[i].task, div[i].why, div[i].due_ms, d->d_opts.arg);
    free(div);
    if (notes)
        flush_notes(d);
    return n;
}

void hk_dispatch_abandon(hk_dispatch_t *d, hk_task_t *task)
{
    pthread_mutex_lock(&d->d_lock);
    int64_t now = now_of(d);
    if (task->lane_held) {
        task->lane_held = 0;
        lane_t *l = ((queue_t *)task->queue)->lane;
        hk_breaker_record(l->br, now, task->ticket, HK_BREAKER_IGNORE);
        hk_aimd_release(&l->lim, HK_AIMD_IGNORE);
        lane_unpark(d, l);
    }
    task_unbind(d, task, now);
    int woke = chain_release(d, task);
    worker_t w = woke ? pick_idle(d) : (worker_t){0};
    int notes = d->d_notes_cnt > 0;
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    if (notes)
        flush_notes(d);
}

void hk_dispatch_finish(hk_dispatch_t *d, hk_task_t *task, int64_t now_ms)
{
    if (!task->lane_held)
        return;
    task->lane_held = 0;
    queue_t *q = task->queue;
    lane_t *l = q->lane;
    int status = task->http_status;

    hk_breaker_result_t br_res = HK_BREAKER_IGNORE;
    hk_aimd_signal_t lim_sig = HK_AIMD_IGNORE;
    int too_many = task->outcome == HK_OUTCOME_RETRYABLE && status == 429;
    switch (task->outcome) {
    case HK_OUTCOME_DELIVERED:
        br_res = HK_BREAKER_SUCCESS;
        lim_sig = HK_AIMD_OK;
        break;
    case HK_OUTCOME_RETRYABLE:
        // A 429 says "slower", not "down": back-pressure below, never the breaker.
        br_res = too_many ? HK_BREAKER_IGNORE : HK_BREAKER_FAILURE;
        // Timeouts and 5xx mean "too much": back off. A refused connection
        // or a DNS failure says nothing about load.
        if (status == 408 || status >= 500 || task->curl_code == CURLE_OPERATION_TIMEDOUT)
            lim_sig = HK_AIMD_OVERLOAD;
        break;
    case HK_OUTCOME_PERMANENT:
    case HK_OUTCOME_GONE:
        lim_sig = HK_AIMD_OK; // the endpoint answered promptly
        break;
    default:
        break;
    }

    pthread_mutex_lock(&d->d_lock);
    if (too_many) {
        // The whole lane holds until Retry-After (capped), and the limit drops
        // once per hold: the 429s of one burst are one signal, not many.
        int64_t hold = task->retry_after_ms >= 0 ? task->retry_after_ms : d->d_opts.hold_default_ms;
        if (hold > d->d_opts.hold_max_ms)
            hold = d->d_opts.hold_max_ms;
        if (l->hold_until_ms <= now_ms)
            lim_sig = HK_AIMD_OVERLOAD;
        if (now_ms + hold > l->hold_until_ms)
            l->hold_until_ms = now_ms + hold;
        hk_metric_add(lane_holds, 1);
    }
    hk_breaker_record(l->br, now_ms, task->ticket, br_res);
    hk_aimd_release(&l->lim, lim_sig);
    if (task->outcome == HK_OUTCOME_DELIVERED)
        l->delivered++;
    else
        l->failed++;
    char norm[HK_URL_NORM_MAX];
    if (task->outcome == HK_OUTCOME_GONE && task->http_status == 410 &&
        url_norm(task->job->url, norm, sizeof(norm)) == 0 &&
        url_gone_set(d, l, norm, 1, now_ms + d->d_opts.gone_ttl_ms))
        hk_log(HK_LOG_WARN, "url_disabled", "{s:s,s:s,s:s}", "endpoint", l->key, "url",
               task->job->url, "reason", "410 Gone");
    log_transitions(d, l, 0);
    if (l->br_stale && hk_breaker_state(l->br, now_ms) == HK_BREAKER_CLOSED)
        lane_new_breaker(d, l);
    lane_unpark(d, l);
    task_unbind(d, task, now_ms);
    worker_t w = pick_idle(d);
    int notes = d->d_notes_cnt > 0;
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    if (notes)
        flush_notes(d);
}

void hk_dispatch_set_policy(hk_dispatch_t *d, const hk_breaker_opts_t *breaker,
                            const hk_aimd_opts_t *lane, int64_t inline_max_ms)
{
    pthread_mutex_lock(&d->d_lock);
    d->d_opts.breaker = *breaker;
    d->d_opts.lane = *lane;
    d->d_opts.inline_max_ms = inline_max_ms;
    int64_t now = now_of(d);
    for (int b = 0; b < BUCKETS; b++) {
        for (lane_t *l = d->d_lanes[b]; l; l = l->hash_next) {
            l->lim.lim_opts.min = lane->min;
            l->lim.lim_opts.max = lane->max;
            l->lim.lim_opts.decrease = lane->decrease;
            if (l->lim.lim_limit < lane->min)
                l->lim.lim_limit = lane->min;
            if (l->lim.lim_limit > lane->max)
                l->lim.lim_limit = lane->max;
            if (hk_breaker_state(l->br, now) == HK_BREAKER_CLOSED)
                lane_new_breaker(d, l);
            else
                l->br_stale = 1;
            lane_unpark(d, l); // a larger limit frees slots
        }
    }
    pthread_mutex_unlock(&d->d_lock);
}

int hk_dispatch_endpoint_disable(hk_dispatch_t *d, const char *target, int disabled)
{
    char key[HK_DISPATCH_ENDPOINT_MAX], norm[HK_URL_NORM_MAX];
    if (hk_dispatch_endpoint_of(target, key, sizeof(key)) != 0 ||
        url_norm(target, norm, sizeof(norm)) != 0)
        return -1;
    int whole = url_is_root(target);
    pthread_mutex_lock(&d->d_lock);
    lane_t *l = lane_find(d, key, disabled, 1);
    int rc = -1;
    if (l && whole) {
        if (l->disabled != disabled) {
            hk_log(HK_LOG_WARN, disabled ? "endpoint_disabled" : "endpoint_enabled", "{s:s,s:s}",
                   "endpoint", l->key, "reason", "operator");
            atomic_fetch_add(&d->d_disabled_cnt, disabled ? 1 : -1);
        }
        l->disabled = disabled;
        while (!disabled && l->gone_cnt) // enabling an endpoint enables every URL under it
            gone_remove(d, l, 0);
        rc = 0;
    } else if (l) {
        int changed = url_gone_set(d, l, norm, disabled, 0);
        if (changed)
            hk_log(HK_LOG_WARN, disabled ? "url_disabled" : "url_enabled", "{s:s,s:s,s:s}",
                   "endpoint", l->key, "url", norm, "reason", "operator");
        rc = disabled || changed ? 0 : -1;
    }
    if (rc == 0 && !disabled)
        lane_unpark(d, l);
    int notes = d->d_notes_cnt > 0;
    pthread_mutex_unlock(&d->d_lock);
    if (notes)
        flush_notes(d);
    return rc;
}

int hk_dispatch_peer_disabled(hk_dispatch_t *d, const char *url, const char *ip, long port)
{
    if (atomic_load(&d->d_disabled_cnt) == 0 || !url || !ip)
        return 0;
    char addr[INET6_ADDRSTRLEN + 2], key[HK_DISPATCH_ENDPOINT_MAX];
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        if (!inet_ntop(AF_INET, &a4, addr, sizeof(addr)))
            return 0;
    } else if (inet_pton(AF_INET6, ip, &a6) != 1 || ip6_canon(&a6, addr, sizeof(addr)) != 0) {
        return 0;
    }
    const char *scheme = strncasecmp(url, "https:", 6) == 0 ? "https" : "http";
    snprintf(key, sizeof(key), "%s://%s:%ld", scheme, addr, port);
    pthread_mutex_lock(&d->d_lock);
    lane_t *l = lane_find(d, key, 0, 0);
    int disabled = l && l->disabled;
    pthread_mutex_unlock(&d->d_lock);
    return disabled;
}

int hk_dispatch_breaker_reset(hk_dispatch_t *d, const char *endpoint)
{
    char key[HK_DISPATCH_ENDPOINT_MAX];
    if (hk_dispatch_endpoint_of(endpoint, key, sizeof(key)) != 0)
        snprintf(key, sizeof(key), "%s", endpoint);
    pthread_mutex_lock(&d->d_lock);
    lane_t *l = lane_find(d, key, 0, 0);
    worker_t w = {0};
    if (l) {
        lane_new_breaker(d, l);
        l->hold_until_ms = 0;
        // What the open breaker deferred is due now, not when it would have half-opened.
        int64_t now = now_of(d);
        size_t released = 0;
        for (size_t i = 0; i < d->d_heap_cnt; i++) {
            hk_task_t *task = d->d_heap[i];
            if (task->open_deferred && ((queue_t *)task->queue)->lane == l) {
                task->due_ms = now;
                released++;
            }
        }
        if (released)
            heap_rebuild(d);
        hk_log(HK_LOG_WARN, "breaker_reset", "{s:s,s:I}", "endpoint", l->key, "released",
               (json_int_t)released);
        note_add(d, NOTE_CLOSE, l, 0);
        lane_unpark(d, l);
        w = pick_idle(d);
    }
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    flush_notes(d);
    return l ? 0 : -1;
}

void hk_dispatch_set_rate(hk_dispatch_t *d, const char *endpoint, double rate, int burst)
{
    char key[HK_DISPATCH_ENDPOINT_MAX];
    if (hk_dispatch_endpoint_of(endpoint, key, sizeof(key)) != 0)
        return;
    pthread_mutex_lock(&d->d_lock);
    lane_t *l = lane_find(d, key, 1, 1);
    if (l->rate != rate || l->burst != burst)
        l->gcra = (hk_gcra_t){0};
    l->rate = rate > 0 ? rate : 0;
    l->burst = burst > 0 ? burst : 1;
    l->permits = 0;
    lane_unpark(d, l);
    worker_t w = pick_idle(d);
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
    flush_notes(d);
}

void hk_dispatch_permits(hk_dispatch_t *d, const char *endpoint, int granted, int64_t retry_in_ms)
{
    pthread_mutex_lock(&d->d_lock);
    int64_t now = now_of(d);
    lane_t *l = lane_find(d, endpoint, 0, 0);
    if (l) {
        l->permit_asked = 0;
        if (granted < 0) {
            l->shared_down_ms = now + 1000; // local limiter for a second
            lane_unpark(d, l);
        } else if (granted > 0) {
            l->permits += granted;
            l->permits_ms = now;
            lane_unpark(d, l);
        } else {
            rate_wait(d, l, now + (retry_in_ms > 0 ? retry_in_ms : 1));
        }
    }
    // Wake someone either way: a sleeper must learn the new wake-up time.
    worker_t w = pick_idle(d);
    pthread_mutex_unlock(&d->d_lock);
    if (w.wake)
        w.wake(w.arg);
}

void hk_dispatch_remote_open(hk_dispatch_t *d, const char *endpoint, int64_t until_ms)
{
    pthread_mutex_lock(&d->d_lock);
    lane_t *l = lane_find(d, endpoint, 0, 0);
    if (l && hk_breaker_force_open(l->br, now_of(d), until_ms))
        log_transitions(d, l, 1);
    pthread_mutex_unlock(&d->d_lock);
}

json_t *hk_dispatch_lanes_json(hk_dispatch_t *d, int64_t now_ms)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&d->d_lock);
    for (int b = 0; b < BUCKETS; b++) {
        for (lane_t *l = d->d_lanes[b]; l; l = l->hash_next) {
            hk_breaker_snapshot_t s;
            hk_breaker_snapshot(l->br, now_ms, &s);
            int64_t open_for = s.state == HK_BREAKER_OPEN && s.open_until_ms > now_ms
                                   ? s.open_until_ms - now_ms
                                   : 0;
            json_t *gone = json_array();
            for (size_t i = 0; i < l->gone_cnt; i++)
                json_array_append_new(gone, json_string(l->gone[i]->url));
            json_t *o = json_pack(
                "{s:s,s:s,s:f,s:i,s:I,s:I,s:i,s:i,s:I,s:b,s:o,s:I,s:I}", "endpoint", l->key,
                "state", hk_breaker_state_name(s.state), "failure_rate", s.failure_rate, "calls",
                s.calls, "trips", (json_int_t)s.trips, "next_probe_in_ms", (json_int_t)open_for,
                "in_flight", hk_aimd_in_flight(&l->lim), "limit", hk_aimd_limit(&l->lim), "queued",
                (json_int_t)l->queued, "disabled", l->disabled, "disabled_urls", gone, "delivered",
                (json_int_t)l->delivered, "failed", (json_int_t)l->failed);
            if (o) {
                json_object_set_new(o, "hold_ms",
                                    json_integer(l->hold_until_ms > now_ms
                                                     ? (json_int_t)(l->hold_until_ms - now_ms)
                                                     : 0));
                json_object_set_new(o, "kept", json_boolean(lane_kept(l)));
                json_array_append_new(arr, o);
            }
        }
    }
    pthread_mutex_unlock(&d->d_lock);
    return arr;
}

void hk_dispatch_counts(hk_dispatch_t *d, hk_dispatch_counts_t *out)
{
    pthread_mutex_lock(&d->d_lock);
    size_t gone = 0;
    for (int b = 0; b < BUCKETS; b++)
        for (lane_t *l = d->d_lanes[b]; l; l = l->hash_next)
            gone += l->gone_cnt;
    *out = (hk_dispatch_counts_t){.lanes = d->d_lanes_cnt,
                                  .queues = d->d_queues_cnt,
                                  .tenants = d->d_tenants_cnt,
                                  .chains = d->d_chains_cnt,
                                  .gone_urls = gone,
                                  .waiting_for_lane = d->d_waiting_cnt};
    pthread_mutex_unlock(&d->d_lock);
}

static int task_of(const hk_task_t *task, const char *topic, int32_t partition)
{
    return task->partition == partition && strcmp(task->topic, topic) == 0;
}

hk_task_t *hk_dispatch_remove_partition(hk_dispatch_t *d, const char *topic, int32_t partition)
{
    hk_task_t *removed = NULL;
    pthread_mutex_lock(&d->d_lock);
    int64_t now = now_of(d);
    // Tasks waiting on their key chain: not active (nor bound), so just unlinked.
    for (int b = 0; b < BUCKETS; b++) {
        for (chain_t *c = d->d_chains[b]; c; c = c->hash_next) {
            hk_task_t **pp = &c->head;
            c->tail = &c->head;
            while (*pp) {
                hk_task_t *task = *pp;
                if (task_of(task, topic, partition)) {
                    *pp = task->next;
                    task->chain = NULL;
                    task->next = removed;
                    removed = task;
                } else {
                    pp = &task->next;
                    c->tail = pp;
                }
            }
        }
    }
    hk_task_t *waiting_removed = removed;
    // Tasks waiting for a lane (unbound; active in their chain, if any).
    d->d_waiting_tail = &d->d_waiting;
    for (hk_task_t **pp = &d->d_waiting; *pp;) {
        hk_task_t *task = *pp;
        if (task_of(task, topic, partition)) {
            *pp = task->next;
            d->d_waiting_cnt--;
            task->next = removed;
            removed = task;
        } else {
            pp = &task->next;
            d->d_waiting_tail = pp;
        }
    }
    for (int b = 0; b < BUCKETS; b++) {
        for (queue_t *q = d->d_queue_tab[b]; q; q = q->hash_next) {
            hk_task_t *keep = NULL, **ktail = &keep;
            size_t kept = 0, dropped = 0;
            while (q->head) {
                hk_task_t *task = q->head;
                q->head = task->next;
                task->next = NULL;
                if (task_of(task, topic, partition)) {
                    task->next = removed;
                    removed = task;
                    dropped++;
                } else {
                    *ktail = task;
                    ktail = &task->next;
                    kept++;
                }
            }
            q->head = keep;
            q->tail = kept ? ktail : &q->head; // never the local `keep`
            q->cnt = kept;
            q->lane->queued -= dropped;
            d->d_queued -= dropped;
            if (kept == 0 && q->state != Q_IDLE) {
                if (q->state == Q_PARKED)
                    link_remove(&q->ring);
                queue_unready(q);
                q->state = Q_IDLE;
            }
        }
    }
    // Filter the delay heap, then rebuild it.
    size_t kept = 0;
    for (size_t i = 0; i < d->d_heap_cnt; i++) {
        hk_task_t *task = d->d_heap[i];
        if (task_of(task, topic, partition)) {
            task->heap_idx = SIZE_MAX;
            task->next = removed;
            removed = task;
        } else {
            task->heap_idx = kept;
            d->d_heap[kept++] = task;
        }
    }
    d->d_heap_cnt = kept;
    heap_rebuild(d);
    // Removed active tasks hand their key to its next waiting task (the waiting
    // ones of this partition were taken out first), and leave their queues.
    for (hk_task_t *task = removed; task != waiting_removed; task = task->next) {
        task_unbind(d, task, now);
        chain_release(d, task);
    }
    int notes = d->d_notes_cnt > 0;
    pthread_mutex_unlock(&d->d_lock);
    if (notes)
        flush_notes(d);
    return removed;
}

hk_task_t *hk_dispatch_remove_delayed(hk_dispatch_t *d)
{
    hk_task_t *removed = NULL;
    pthread_mutex_lock(&d->d_lock);
    int64_t now = now_of(d);
    size_t kept = 0;
    for (size_t i = 0; i < d->d_heap_cnt; i++) {
        hk_task_t *task = d->d_heap[i];
        if (task->chain || task->batch) {
            task->heap_idx = kept;
            d->d_heap[kept++] = task;
            continue;
        }
        task->heap_idx = SIZE_MAX;
        task->next = removed;
        removed = task;
    }
    d->d_heap_cnt = kept;
    heap_rebuild(d);
    for (hk_task_t *task = removed; task; task = task->next)
        task_unbind(d, task, now);
    pthread_mutex_unlock(&d->d_lock);
    return removed;
}

size_t hk_dispatch_queued(hk_dispatch_t *d)
{
    pthread_mutex_lock(&d->d_lock);
    size_t n = d->d_queued + d->d_heap_cnt + d->d_waiting_cnt;
    pthread_mutex_unlock(&d->d_lock);
    return n;
}
