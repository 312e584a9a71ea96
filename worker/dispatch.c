// dispatch: per-tenant FIFOs in a chained hash table; the tenants that have work
// form a ring that hk_dispatch_take() walks one task at a time.
#include "worker/dispatch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TENANT_BUCKETS 256
#define MAX_WORKERS    256

typedef struct tenant tenant_t;
struct tenant {
    tenant_t *hash_next;
    tenant_t *ring_next; // next tenant with work (circular), NULL when idle
    hk_task_t *head;
    hk_task_t **tail;
    size_t cnt;
    char name[];
};

typedef struct worker {
    hk_dispatch_wake_cb *wake;
    void *arg;
    int idle;
} worker_t;

struct hk_dispatch_s {
    pthread_mutex_t d_lock;
    tenant_t *d_buckets[TENANT_BUCKETS];
    tenant_t *d_ring; // the tenant served next, NULL when nothing is queued
    size_t d_queued;
    worker_t d_workers[MAX_WORKERS];
    int d_workers_cnt;
    int d_wake_next; // round-robin start for waking idle workers
};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static tenant_t *tenant_get(hk_dispatch_t *d, const char *name)
{
    uint32_t b = hash(name) % TENANT_BUCKETS;
    for (tenant_t *t = d->d_buckets[b]; t; t = t->hash_next)
        if (strcmp(t->name, name) == 0)
            return t;
    size_t len = strlen(name);
    tenant_t *t = calloc(1, sizeof(*t) + len + 1);
    if (!t)
        abort(); // out of memory for a tenant record: nothing sensible to do
    memcpy(t->name, name, len + 1);
    t->tail = &t->head;
    t->hash_next = d->d_buckets[b];
    d->d_buckets[b] = t;
    return t;
}

hk_dispatch_t *hk_dispatch_new(void)
{
    hk_dispatch_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    pthread_mutex_init(&d->d_lock, NULL);
    return d;
}

void hk_dispatch_destroy(hk_dispatch_t *d)
{
    if (!d)
        return;
    for (int b = 0; b < TENANT_BUCKETS; b++) {
        tenant_t *t = d->d_buckets[b];
        while (t) {
            tenant_t *next = t->hash_next;
            while (t->head) {
                hk_task_t *task = t->head;
                t->head = task->next;
                hk_task_destroy(task);
            }
            free(t);
            t = next;
        }
    }
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

// Links `t` into the ring right after the tenant served next: a newcomer waits
// at most one task for its first turn.
static void ring_insert(hk_dispatch_t *d, tenant_t *t)
{
    if (!d->d_ring) {
        t->ring_next = t;
        d->d_ring = t;
        return;
    }
    t->ring_next = d->d_ring->ring_next;
    d->d_ring->ring_next = t;
}

void hk_dispatch_submit(hk_dispatch_t *d, hk_task_t *task)
{
    const char *name = task->job && task->job->tenant ? task->job->tenant : "default";
    worker_t wake = {0};

    pthread_mutex_lock(&d->d_lock);
    tenant_t *t = tenant_get(d, name);
    task->next = NULL;
    *t->tail = task;
    t->tail = &task->next;
    if (t->cnt++ == 0)
        ring_insert(d, t);
    d->d_queued++;
    for (int i = 0; i < d->d_workers_cnt; i++) {
        worker_t *w = &d->d_workers[(d->d_wake_next + i) % d->d_workers_cnt];
        if (w->idle) {
            w->idle = 0;
            wake = *w;
            d->d_wake_next = (d->d_wake_next + i + 1) % d->d_workers_cnt;
            break;
        }
    }
    pthread_mutex_unlock(&d->d_lock);

    if (wake.wake)
        wake.wake(wake.arg);
}

// Unlinks the ring head `t` (whose queue just became empty); `prev` precedes it.
static void ring_remove_head(hk_dispatch_t *d, tenant_t *prev, tenant_t *t)
{
    if (t->ring_next == t) {
        d->d_ring = NULL;
    } else {
        prev->ring_next = t->ring_next;
        d->d_ring = t->ring_next;
    }
    t->ring_next = NULL;
}

static tenant_t *ring_prev(tenant_t *t)
{
    tenant_t *p = t;
    while (p->ring_next != t)
        p = p->ring_next;
    return p;
}

size_t hk_dispatch_take(hk_dispatch_t *d, int slot, hk_task_t **out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&d->d_lock);
    while (n < max && d->d_ring) {
        tenant_t *t = d->d_ring;
        hk_task_t *task = t->head;
        t->head = task->next;
        if (!t->head)
            t->tail = &t->head;
        task->next = NULL;
        out[n++] = task;
        d->d_queued--;
        if (--t->cnt == 0)
            ring_remove_head(d, ring_prev(t), t);
        else
            d->d_ring = t->ring_next;
    }
    if (slot >= 0 && slot < d->d_workers_cnt)
        d->d_workers[slot].idle = (n < max); // spare capacity: wake on next submit
    pthread_mutex_unlock(&d->d_lock);
    return n;
}

hk_task_t *hk_dispatch_remove_partition(hk_dispatch_t *d, int32_t partition)
{
    hk_task_t *removed = NULL, **rtail = &removed;
    pthread_mutex_lock(&d->d_lock);
    for (int b = 0; b < TENANT_BUCKETS; b++) {
        for (tenant_t *t = d->d_buckets[b]; t; t = t->hash_next) {
            hk_task_t **pp = &t->head;
            t->tail = &t->head;
            while (*pp) {
                hk_task_t *task = *pp;
                if (task->partition == partition) {
                    *pp = task->next;
                    task->next = NULL;
                    *rtail = task;
                    rtail = &task->next;
                    t->cnt--;
                    d->d_queued--;
                } else {
                    pp = &task->next;
                    t->tail = pp;
                }
            }
            if (t->cnt == 0 && t->ring_next) {
                tenant_t *prev = ring_prev(t);
                if (d->d_ring == t) {
                    ring_remove_head(d, prev, t);
                } else {
                    prev->ring_next = t->ring_next;
                    t->ring_next = NULL;
                }
            }
        }
    }
    pthread_mutex_unlock(&d->d_lock);
    return removed;
}

size_t hk_dispatch_queued(hk_dispatch_t *d)
{
    pthread_mutex_lock(&d->d_lock);
    size_t n = d->d_queued;
    pthread_mutex_unlock(&d->d_lock);
    return n;
}
