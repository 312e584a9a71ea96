// Structures (all under the dispatcher's lock):
//   queue    one per (tenant, endpoint): a FIFO of tasks, READY (linked in its
//            tenant's ring), PARKED (linked in its lane's parked list) or IDLE.
//   tenant   a ring of READY queues; tenants with READY queues form the global
//            ring that hk_sched_front walks.
//   chain    one per ordering key (dispatch.ordering = key).
//   heap     delayed tasks, a binary min-heap on due_ms.
//   waiting  tasks whose endpoint has no lane at the cap, oldest first (unbound).
#include "worker/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/log.h"
#include "base/metrics.h"

#define BUCKETS 4096 // of each table

typedef struct tenant tenant_t;
typedef hk_sched_queue_t queue_t;

struct tenant {
    hk_hash_node_t node; // in s_tenant_tab, hashed by name
    hk_link_t ready;     // READY queues (queue_t.ring); the first is served next
    hk_link_t ring;      // in s_tenants while it has READY queues
    size_t queues;
    char name[];
};

enum { Q_IDLE, Q_READY, Q_PARKED };

struct hk_sched_queue {
    hk_hash_node_t node; // in s_queue_tab, hashed by (tenant, lane)
    tenant_t *tenant;
    hk_lane_t *lane;
    hk_task_t *head;
    hk_task_t **tail;
    size_t cnt;
    size_t refs; // bound tasks (queued, delayed or in flight)
    int state;
    hk_link_t ring; // in tenant->ready, or in the lane's parked list
};

// Ordering by key: the tasks of one ordering key. At most one of them is active
// (queued, in a delivery thread, or delayed); the others wait here in offset order.
typedef struct chain chain_t;
struct chain {
    hk_hash_node_t node; // in s_chains, hashed by key
    int active;
    hk_task_t *head; // waiting, not yet active
    hk_task_t **tail;
    char key[];
};

struct hk_sched {
    hk_lanes_t *s_lanes;
    size_t s_max_lanes; // for the lanes_full log line
    hk_hash_t s_tenant_tab, s_queue_tab, s_chains;
    size_t s_queues_cnt, s_tenants_cnt, s_chains_cnt;
    hk_link_t s_tenants; // tenants with READY queues; the first is served next
    size_t s_queued;     // tasks in queues
    hk_task_t **s_heap;  // delayed tasks, min-heap on due_ms
    size_t s_heap_cnt, s_heap_cap;
    // At the lane cap: tasks whose endpoint has no lane and cannot get one yet,
    // oldest first (unbound, due_ms kept). Let in as lanes free.
    hk_task_t *s_waiting, **s_waiting_tail;
    size_t s_waiting_cnt;
    int s_at_cap_logged;
};

static tenant_t *tenant_of(hk_hash_node_t *n)
{
    return n ? HK_CONTAINER_OF(n, tenant_t, node) : NULL;
}

static queue_t *queue_of(hk_hash_node_t *n)
{
    return n ? HK_CONTAINER_OF(n, queue_t, node) : NULL;
}

static chain_t *chain_of(hk_hash_node_t *n)
{
    return n ? HK_CONTAINER_OF(n, chain_t, node) : NULL;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        // A queue or tenant record of a few bytes: nothing sensible to do without it.
        hk_log(HK_LOG_ERROR, "out_of_memory", "{s:s}", "where", "dispatch");
        abort();
    }
    return p;
}

static tenant_t *tenant_find(hk_sched_t *s, const char *name)
{
    uint32_t hash = hk_hash_str(name);
    for (hk_hash_node_t *n = hk_hash_first(&s->s_tenant_tab, hash); n; n = hk_hash_next(n))
        if (strcmp(tenant_of(n)->name, name) == 0)
            return tenant_of(n);
    size_t len = strlen(name);
    tenant_t *t = xcalloc(1, sizeof(*t) + len + 1);
    memcpy(t->name, name, len + 1);
    hk_link_init(&t->ready);
    hk_link_init(&t->ring);
    hk_hash_insert(&s->s_tenant_tab, &t->node, hash);
    s->s_tenants_cnt++;
    return t;
}

static void tenant_free(hk_sched_t *s, tenant_t *t)
{
    hk_hash_remove(&s->s_tenant_tab, &t->node);
    free(t);
    s->s_tenants_cnt--;
}

static uint32_t queue_hash(const tenant_t *t, const hk_lane_t *l)
{
    return (uint32_t)(((uintptr_t)t * 31u) ^ ((uintptr_t)l >> 4));
}

static queue_t *queue_find(hk_sched_t *s, tenant_t *t, hk_lane_t *l)
{
    uint32_t hash = queue_hash(t, l);
    for (hk_hash_node_t *n = hk_hash_first(&s->s_queue_tab, hash); n; n = hk_hash_next(n))
        if (queue_of(n)->tenant == t && queue_of(n)->lane == l)
            return queue_of(n);
    queue_t *q = xcalloc(1, sizeof(*q));
    q->tenant = t;
    q->lane = l;
    q->tail = &q->head;
    q->state = Q_IDLE;
    hk_link_init(&q->ring);
    hk_hash_insert(&s->s_queue_tab, &q->node, hash);
    t->queues++;
    s->s_queues_cnt++;
    return q;
}

// The queue's last bound task left (so it is empty and IDLE): it goes, and its
// tenant with it when that was the tenant's last queue.
static void queue_free(hk_sched_t *s, queue_t *q)
{
    hk_hash_remove(&s->s_queue_tab, &q->node);
    tenant_t *t = q->tenant;
    free(q);
    s->s_queues_cnt--;
    if (--t->queues == 0)
        tenant_free(s, t);
}

// Binds the task to its (tenant, endpoint) queue (see the top comment). NULL
// when its endpoint has no lane and the cap leaves no room for one.
static queue_t *task_bind(hk_sched_t *s, hk_task_t *task)
{
    if (task->queue)
        return task->queue;
    // The key was computed when the job was attached (hk_task_set_job), not here
    // under the dispatcher's lock.
    hk_lane_t *l = hk_lanes_find(s->s_lanes, task->endpoint[0] ? task->endpoint : "invalid:", 1, 0);
    if (!l)
        return NULL;
    const char *tname = task->job->tenant ? task->job->tenant : "default";
    queue_t *q = queue_find(s, tenant_find(s, tname), l);
    q->refs++;
    hk_lanes_ref(s->s_lanes, l);
    task->queue = q;
    return q;
}

void hk_sched_unbind(hk_sched_t *s, hk_task_t *task, int64_t now_ms)
{
    queue_t *q = task->queue;
    if (!q)
        return;
    task->queue = NULL;
    hk_lanes_unref(s->s_lanes, q->lane, now_ms);
    if (--q->refs == 0)
        queue_free(s, q);
}

// A task for a new endpoint while every lane holds work: it waits, unbound.
static void waiting_push(hk_sched_t *s, hk_task_t *task)
{
    task->next = NULL;
    *s->s_waiting_tail = task;
    s->s_waiting_tail = &task->next;
    s->s_waiting_cnt++;
    hk_metric_add(lane_cap_waits, 1);
    if (!s->s_at_cap_logged) {
        s->s_at_cap_logged = 1;
        hk_log(HK_LOG_WARN, "lanes_full", "{s:I,s:s}", "max_lanes", (json_int_t)s->s_max_lanes,
               "action", "tasks for new endpoints wait until a lane frees");
    }
}

// Makes q READY: linked at the end of its tenant's ring, tenant in the global ring.
static void queue_ready(hk_sched_t *s, queue_t *q)
{
    if (q->state == Q_READY)
        return;
    if (q->state == Q_PARKED)
        hk_link_remove(&q->ring);
    q->state = Q_READY;
    hk_link_insert_before(&q->tenant->ready, &q->ring);
    if (hk_link_alone(&q->tenant->ring))
        hk_link_insert_before(&s->s_tenants, &q->tenant->ring);
}

// Takes q out of its tenant's ring; the tenant leaves the global ring when empty.
static void queue_unready(queue_t *q)
{
    if (q->state != Q_READY)
        return;
    hk_link_remove(&q->ring);
    q->state = Q_IDLE;
    if (hk_link_alone(&q->tenant->ready))
        hk_link_remove(&q->tenant->ring);
}

void hk_sched_park(queue_t *q)
{
    queue_unready(q);
    q->state = Q_PARKED;
    hk_link_insert_before(hk_lane_parked(q->lane), &q->ring);
}

static void queue_push(hk_sched_t *s, queue_t *q, hk_task_t *task)
{
    task->next = NULL;
    *q->tail = task;
    q->tail = &task->next;
    q->cnt++;
    hk_lane_add_queued(q->lane, 1);
    s->s_queued++;
    if (q->state == Q_IDLE)
        queue_ready(s, q);
}

hk_task_t *hk_sched_pop(hk_sched_t *s, queue_t *q)
{
    hk_task_t *task = q->head;
    q->head = task->next;
    if (!q->head)
        q->tail = &q->head;
    task->next = NULL;
    q->cnt--;
    hk_lane_add_queued(q->lane, -1);
    s->s_queued--;
    if (q->cnt == 0) {
        if (q->state == Q_PARKED)
            hk_link_remove(&q->ring);
        queue_unready(q);
        q->state = Q_IDLE;
    }
    return task;
}

void hk_sched_unpark(hk_sched_t *s, hk_lane_t *l)
{
    hk_link_t *parked = hk_lane_parked(l);
    while (!hk_link_alone(parked)) {
        queue_t *q = HK_CONTAINER_OF(parked->next, queue_t, ring);
        hk_link_remove(&q->ring);
        q->state = Q_IDLE;
        queue_ready(s, q);
    }
}

// --- delay heap ---------------------------------------------------------------

static void heap_swap(hk_sched_t *s, size_t a, size_t b)
{
    hk_task_t *t = s->s_heap[a];
    s->s_heap[a] = s->s_heap[b];
    s->s_heap[b] = t;
    s->s_heap[a]->heap_idx = a;
    s->s_heap[b]->heap_idx = b;
}

static void heap_up(hk_sched_t *s, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->s_heap[p]->due_ms <= s->s_heap[i]->due_ms)
            break;
        heap_swap(s, p, i);
        i = p;
    }
}

static void heap_down(hk_sched_t *s, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->s_heap_cnt && s->s_heap[l]->due_ms < s->s_heap[m]->due_ms)
            m = l;
        if (r < s->s_heap_cnt && s->s_heap[r]->due_ms < s->s_heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(s, i, m);
        i = m;
    }
}

// Restores the heap order after entries were filtered out or their due times
// changed in place (removing or updating them one by one could skip an entry
// that moves up past the scan).
static void heap_rebuild(hk_sched_t *s)
{
    for (size_t i = s->s_heap_cnt / 2; i-- > 0;)
        heap_down(s, i);
}

void hk_sched_delay(hk_sched_t *s, hk_task_t *task)
{
    if (s->s_heap_cnt == s->s_heap_cap) {
        size_t cap = s->s_heap_cap ? s->s_heap_cap * 2 : 256;
        hk_task_t **h = realloc(s->s_heap, cap * sizeof(*h));
        if (!h)
            abort();
        s->s_heap = h;
        s->s_heap_cap = cap;
    }
    task->heap_idx = s->s_heap_cnt;
    s->s_heap[s->s_heap_cnt++] = task;
    heap_up(s, task->heap_idx);
}

static hk_task_t *heap_remove(hk_sched_t *s, size_t i)
{
    hk_task_t *task = s->s_heap[i];
    s->s_heap_cnt--;
    if (i != s->s_heap_cnt) {
        s->s_heap[i] = s->s_heap[s->s_heap_cnt];
        s->s_heap[i]->heap_idx = i;
        heap_down(s, i);
        heap_up(s, i);
    }
    task->heap_idx = SIZE_MAX;
    return task;
}

// --- chains -------------------------------------------------------------------

static chain_t *chain_get(hk_sched_t *s, const char *key)
{
    uint32_t hash = hk_hash_str(key);
    for (hk_hash_node_t *n = hk_hash_first(&s->s_chains, hash); n; n = hk_hash_next(n))
        if (strcmp(chain_of(n)->key, key) == 0)
            return chain_of(n);
    size_t len = strlen(key);
    chain_t *c = xcalloc(1, sizeof(*c) + len + 1);
    memcpy(c->key, key, len + 1);
    c->tail = &c->head;
    hk_hash_insert(&s->s_chains, &c->node, hash);
    s->s_chains_cnt++;
    return c;
}

static void chain_free(hk_sched_t *s, chain_t *c)
{
    hk_hash_remove(&s->s_chains, &c->node);
    free(c);
    s->s_chains_cnt--;
}

// Puts an active task where it belongs: the delay heap when it has a due time,
// else its queue; it waits for a lane when the cap leaves no room for its own.
static void task_place(hk_sched_t *s, hk_task_t *task)
{
    queue_t *q = task_bind(s, task);
    if (!q)
        waiting_push(s, task);
    else if (task->due_ms > 0)
        hk_sched_delay(s, task);
    else
        queue_push(s, q, task);
}

int hk_sched_release(hk_sched_t *s, hk_task_t *task)
{
    chain_t *c = task->chain;
    if (!c)
        return 0;
    task->chain = NULL;
    if (!c->head) {
        chain_free(s, c);
        return 0;
    }
    hk_task_t *next = c->head;
    c->head = next->next;
    if (!c->head)
        c->tail = &c->head;
    next->next = NULL;
    task_place(s, next); // the heap when e.g. a retry-topic record is not yet due
    return 1;
}

int hk_sched_add(hk_sched_t *s, hk_task_t *task, int64_t due_ms, int ordered)
{
    // Batch items are ordered by their batch, never chained by key (they share one).
    if (ordered && !task->chain && task->kind == HK_TASK_WEBHOOK && task->job->ordering_key) {
        chain_t *c = chain_get(s, task->job->ordering_key);
        task->chain = c;
        if (c->active) { // an earlier job of this key is not terminal yet: wait (unbound)
            task->next = NULL;
            task->due_ms = due_ms;
            *c->tail = task;
            c->tail = &task->next;
            return 0;
        }
        c->active = 1;
    }
    task->due_ms = due_ms;
    task_place(s, task);
    // An earlier wake-up than any sleeper expects, or work now.
    int first = due_ms > 0 && task->heap_idx == 0 && s->s_heap_cnt > 0 && s->s_heap[0] == task;
    return due_ms == 0 || first;
}

// --- take ---------------------------------------------------------------------

void hk_sched_admit_waiting(hk_sched_t *s)
{
    while (s->s_waiting) {
        hk_task_t *task = s->s_waiting;
        if (!task_bind(s, task))
            return;
        s->s_waiting = task->next;
        if (!s->s_waiting)
            s->s_waiting_tail = &s->s_waiting;
        s->s_waiting_cnt--;
        task->next = NULL;
        if (task->due_ms > 0)
            hk_sched_delay(s, task);
        else
            queue_push(s, task->queue, task);
    }
    s->s_at_cap_logged = 0;
}

void hk_sched_due(hk_sched_t *s, int64_t now_ms)
{
    while (s->s_heap_cnt > 0 && s->s_heap[0]->due_ms <= now_ms) {
        hk_task_t *task = heap_remove(s, 0);
        task->due_ms = 0;
        task->open_deferred = 0;
        queue_push(s, task->queue, task);
    }
}

hk_sched_queue_t *hk_sched_front(hk_sched_t *s)
{
    if (hk_link_alone(&s->s_tenants))
        return NULL;
    tenant_t *t = HK_CONTAINER_OF(s->s_tenants.next, tenant_t, ring);
    return HK_CONTAINER_OF(t->ready.next, queue_t, ring);
}

hk_lane_t *hk_sched_queue_lane(const queue_t *q)
{
    return q->lane;
}

hk_task_t *hk_sched_queue_head(const queue_t *q)
{
    return q->head;
}

size_t hk_sched_queue_cnt(const queue_t *q)
{
    return q->cnt;
}

void hk_sched_rotate(hk_sched_t *s, queue_t *q)
{
    tenant_t *t = q->tenant;
    if (q->state == Q_READY) {
        hk_link_remove(&q->ring);
        hk_link_insert_before(&t->ready, &q->ring);
    }
    if (!hk_link_alone(&t->ring)) {
        hk_link_remove(&t->ring);
        hk_link_insert_before(&s->s_tenants, &t->ring);
    }
}

hk_lane_t *hk_sched_lane_of(const hk_task_t *task)
{
    return ((const queue_t *)task->queue)->lane;
}

int64_t hk_sched_next_due(const hk_sched_t *s)
{
    return s->s_heap_cnt ? s->s_heap[0]->due_ms : INT64_MAX;
}

int hk_sched_has_waiting(const hk_sched_t *s)
{
    return s->s_waiting != NULL;
}

size_t hk_sched_release_deferred(hk_sched_t *s, const hk_lane_t *l, int64_t now_ms)
{
    size_t released = 0;
    for (size_t i = 0; i < s->s_heap_cnt; i++) {
        hk_task_t *task = s->s_heap[i];
        if (task->open_deferred && ((queue_t *)task->queue)->lane == l) {
            task->due_ms = now_ms;
            released++;
        }
    }
    if (released)
        heap_rebuild(s);
    return released;
}

// --- lifecycle and removal ----------------------------------------------------

hk_sched_t *hk_sched_new(hk_lanes_t *ls, size_t max_lanes)
{
    hk_sched_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (hk_hash_init(&s->s_tenant_tab, BUCKETS) < 0 || hk_hash_init(&s->s_queue_tab, BUCKETS) < 0 ||
        hk_hash_init(&s->s_chains, BUCKETS) < 0) {
        hk_hash_fini(&s->s_tenant_tab);
        hk_hash_fini(&s->s_queue_tab);
        hk_hash_fini(&s->s_chains);
        free(s);
        return NULL;
    }
    s->s_lanes = ls;
    s->s_max_lanes = max_lanes;
    hk_link_init(&s->s_tenants);
    s->s_waiting_tail = &s->s_waiting;
    return s;
}

void hk_sched_destroy(hk_sched_t *s)
{
    if (!s)
        return;
    for (hk_hash_node_t *n = hk_hash_walk(&s->s_queue_tab, NULL), *next; n; n = next) {
        next = hk_hash_walk(&s->s_queue_tab, n);
        queue_t *q = queue_of(n);
        while (q->head) {
            hk_task_t *task = q->head;
            q->head = task->next;
            hk_task_destroy(task);
        }
        free(q);
    }
    for (hk_hash_node_t *n = hk_hash_walk(&s->s_tenant_tab, NULL), *next; n; n = next) {
        next = hk_hash_walk(&s->s_tenant_tab, n);
        free(tenant_of(n));
    }
    for (hk_hash_node_t *n = hk_hash_walk(&s->s_chains, NULL), *next; n; n = next) {
        next = hk_hash_walk(&s->s_chains, n);
        chain_t *c = chain_of(n);
        while (c->head) {
            hk_task_t *task = c->head;
            c->head = task->next;
            hk_task_destroy(task);
        }
        free(c);
    }
    hk_hash_fini(&s->s_tenant_tab);
    hk_hash_fini(&s->s_queue_tab);
    hk_hash_fini(&s->s_chains);
    for (hk_task_t *task = s->s_waiting, *next; task; task = next) {
        next = task->next;
        hk_task_destroy(task);
    }
    for (size_t i = 0; i < s->s_heap_cnt; i++)
        hk_task_destroy(s->s_heap[i]);
    free(s->s_heap);
    free(s);
}

// Which tasks a removal takes: a revoked partition's webhooks, or one owner's
// (a batch's) items.
typedef struct match {
    const char *topic; // with partition; NULL when by owner
    int32_t partition;
    const void *owner;
} match_t;

static int task_of(const hk_task_t *task, const match_t *m)
{
    if (!m->topic)
        return task->owner == m->owner;
    // A batch item carries its batch job's source position, but a revoke does not
    // take it: its batch pulls it back (hk_sched_remove_owned).
    return task->kind == HK_TASK_WEBHOOK && task->partition == m->partition &&
           strcmp(task->topic, m->topic) == 0;
}

static hk_task_t *remove_matching(hk_sched_t *s, const match_t *m, int64_t now_ms)
{
    hk_task_t *removed = NULL;
    // Tasks waiting on their key chain: not active (nor bound), so just unlinked.
    for (chain_t *c = chain_of(hk_hash_walk(&s->s_chains, NULL)); c;
         c = chain_of(hk_hash_walk(&s->s_chains, &c->node))) {
        hk_task_t **pp = &c->head;
        c->tail = &c->head;
        while (*pp) {
            hk_task_t *task = *pp;
            if (task_of(task, m)) {
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
    hk_task_t *waiting_removed = removed;
    // Tasks waiting for a lane (unbound; active in their chain, if any).
    s->s_waiting_tail = &s->s_waiting;
    for (hk_task_t **pp = &s->s_waiting; *pp;) {
        hk_task_t *task = *pp;
        if (task_of(task, m)) {
            *pp = task->next;
            s->s_waiting_cnt--;
            task->next = removed;
            removed = task;
        } else {
            pp = &task->next;
            s->s_waiting_tail = pp;
        }
    }
    for (queue_t *q = queue_of(hk_hash_walk(&s->s_queue_tab, NULL)); q;
         q = queue_of(hk_hash_walk(&s->s_queue_tab, &q->node))) {
        hk_task_t *keep = NULL, **ktail = &keep;
        size_t kept = 0, dropped = 0;
        while (q->head) {
            hk_task_t *task = q->head;
            q->head = task->next;
            task->next = NULL;
            if (task_of(task, m)) {
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
        hk_lane_add_queued(q->lane, -(long)dropped);
        s->s_queued -= dropped;
        if (kept == 0 && q->state != Q_IDLE) {
            if (q->state == Q_PARKED)
                hk_link_remove(&q->ring);
            queue_unready(q);
            q->state = Q_IDLE;
        }
    }
    // Filter the delay heap, then rebuild it.
    size_t kept = 0;
    for (size_t i = 0; i < s->s_heap_cnt; i++) {
        hk_task_t *task = s->s_heap[i];
        if (task_of(task, m)) {
            task->heap_idx = SIZE_MAX;
            task->next = removed;
            removed = task;
        } else {
            task->heap_idx = kept;
            s->s_heap[kept++] = task;
        }
    }
    s->s_heap_cnt = kept;
    heap_rebuild(s);
    // Removed active tasks hand their key to its next waiting task (the waiting
    // ones of this partition were taken out first), and leave their queues.
    for (hk_task_t *task = removed; task != waiting_removed; task = task->next) {
        hk_sched_unbind(s, task, now_ms);
        hk_sched_release(s, task);
    }
    return removed;
}

hk_task_t *hk_sched_remove_partition(hk_sched_t *s, const char *topic, int32_t partition,
                                     int64_t now_ms)
{
    return remove_matching(s, &(match_t){.topic = topic, .partition = partition}, now_ms);
}

hk_task_t *hk_sched_remove_owned(hk_sched_t *s, const void *owner, int64_t now_ms)
{
    if (!owner) // webhooks have none: never "every webhook"
        return NULL;
    return remove_matching(s, &(match_t){.owner = owner}, now_ms);
}

hk_task_t *hk_sched_remove_delayed(hk_sched_t *s, int64_t now_ms)
{
    hk_task_t *removed = NULL;
    size_t kept = 0;
    for (size_t i = 0; i < s->s_heap_cnt; i++) {
        hk_task_t *task = s->s_heap[i];
        if (task->chain || task->kind == HK_TASK_BATCH_ITEM) {
            task->heap_idx = kept;
            s->s_heap[kept++] = task;
            continue;
        }
        task->heap_idx = SIZE_MAX;
        task->next = removed;
        removed = task;
    }
    s->s_heap_cnt = kept;
    heap_rebuild(s);
    for (hk_task_t *task = removed; task; task = task->next)
        hk_sched_unbind(s, task, now_ms);
    return removed;
}

size_t hk_sched_queued(const hk_sched_t *s)
{
    return s->s_queued + s->s_heap_cnt + s->s_waiting_cnt;
}

void hk_sched_counts(const hk_sched_t *s, hk_sched_counts_t *out)
{
    *out = (hk_sched_counts_t){.queues = s->s_queues_cnt,
                               .tenants = s->s_tenants_cnt,
                               .chains = s->s_chains_cnt,
                               .waiting_for_lane = s->s_waiting_cnt};
}
