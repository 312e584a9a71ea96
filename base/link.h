// link: an intrusive circular doubly linked list (O(1) unlink), shared by the
// dispatcher's lanes (worker/lane.c) and scheduler (worker/sched.c). A list head
// is a hk_link_t of its own; an element embeds one and is found back with
// HK_CONTAINER_OF. Header only; no locking of its own.
#ifndef HK_LINK_H
#define HK_LINK_H

#include <stddef.h>

typedef struct hk_link {
    struct hk_link *prev, *next;
} hk_link_t;

#define HK_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void hk_link_init(hk_link_t *l)
{
    l->prev = l->next = l;
}

// 1 for an empty list head, or an element in no list.
static inline int hk_link_alone(const hk_link_t *l)
{
    return l->next == l;
}

// Inserts l before pos (before the head: at the end of the list).
static inline void hk_link_insert_before(hk_link_t *pos, hk_link_t *l)
{
    l->prev = pos->prev;
    l->next = pos;
    pos->prev->next = l;
    pos->prev = l;
}

static inline void hk_link_remove(hk_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    hk_link_init(l);
}

#endif
