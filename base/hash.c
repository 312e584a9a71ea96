#include "base/hash.h"

#include <stdlib.h>

uint32_t hk_hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int hk_hash_init(hk_hash_t *h, size_t nbuckets)
{
    h->buckets = calloc(nbuckets, sizeof(*h->buckets));
    h->nbuckets = h->buckets ? nbuckets : 0;
    return h->buckets ? 0 : -1;
}

void hk_hash_fini(hk_hash_t *h)
{
    free(h->buckets);
    h->buckets = NULL;
    h->nbuckets = 0;
}

void hk_hash_insert(hk_hash_t *h, hk_hash_node_t *n, uint32_t hash)
{
    hk_hash_node_t **b = &h->buckets[hash % h->nbuckets];
    n->hash = hash;
    n->next = *b;
    *b = n;
}

void hk_hash_remove(hk_hash_t *h, hk_hash_node_t *n)
{
    for (hk_hash_node_t **pp = &h->buckets[n->hash % h->nbuckets]; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            n->next = NULL;
            return;
        }
    }
}

static hk_hash_node_t *same_hash(hk_hash_node_t *n, uint32_t hash)
{
    while (n && n->hash != hash)
        n = n->next;
    return n;
}

hk_hash_node_t *hk_hash_first(const hk_hash_t *h, uint32_t hash)
{
    return same_hash(h->buckets[hash % h->nbuckets], hash);
}

hk_hash_node_t *hk_hash_next(const hk_hash_node_t *n)
{
    return same_hash(n->next, n->hash);
}

hk_hash_node_t *hk_hash_walk(const hk_hash_t *h, const hk_hash_node_t *prev)
{
    if (prev && prev->next)
        return prev->next;
    for (size_t b = prev ? prev->hash % h->nbuckets + 1 : 0; b < h->nbuckets; b++)
        if (h->buckets[b])
            return h->buckets[b];
    return NULL;
}
