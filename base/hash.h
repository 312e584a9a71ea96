// hash: the one chained hash table shape of hookd. An element embeds an
// hk_hash_node_t and is found back with HK_CONTAINER_OF (base/link.h); the
// table keeps no keys of its own. The caller hashes its key (hk_hash_str for
// strings), walks the nodes with that hash and compares its own key:
//
//     for (hk_hash_node_t *n = hk_hash_first(&tab, h); n; n = hk_hash_next(n))
//         if (strcmp(HK_CONTAINER_OF(n, lane_t, node)->key, key) == 0) ...
//
// Inserts go to the head of their bucket; a walk visits bucket 0 first. No
// locking of its own.
#ifndef HK_HASH_H
#define HK_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "base/link.h"

typedef struct hk_hash_node {
    struct hk_hash_node *next; // in the same bucket
    uint32_t hash;             // the element's key hash, cached at insert
} hk_hash_node_t;

typedef struct hk_hash {
    hk_hash_node_t **buckets;
    size_t nbuckets;
} hk_hash_t;

// 32-bit FNV-1a of a NUL-terminated string.
uint32_t hk_hash_str(const char *s);

// 0, or -1 when the buckets cannot be allocated (nbuckets must be > 0).
int hk_hash_init(hk_hash_t *h, size_t nbuckets);
// Frees the buckets, never the elements (walk them first).
void hk_hash_fini(hk_hash_t *h);

void hk_hash_insert(hk_hash_t *h, hk_hash_node_t *n, uint32_t hash);
// Unlinks n, which must be in h.
void hk_hash_remove(hk_hash_t *h, hk_hash_node_t *n);

// The first node with this hash, then the next with the same hash; NULL after
// the last. Several keys may share a hash: the caller compares its key.
hk_hash_node_t *hk_hash_first(const hk_hash_t *h, uint32_t hash);
hk_hash_node_t *hk_hash_next(const hk_hash_node_t *n);

// Every node, bucket by bucket: prev NULL gives the first. The node after prev
// is computed from prev alone, so take it before freeing prev.
hk_hash_node_t *hk_hash_walk(const hk_hash_t *h, const hk_hash_node_t *prev);

#endif
