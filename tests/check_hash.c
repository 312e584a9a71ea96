// check_hash: base/hash.c, the one chained hash table of the dispatcher.
//   - hk_hash_str is 32-bit FNV-1a (the known vectors), so lanes, tenants and
//     ordering chains land where they always did;
//   - find visits exactly the nodes with the asked hash, also when many keys
//     with other hashes share their bucket;
//   - remove unlinks the node asked for and only it: head, middle and tail of
//     a chain, and a node whose key another node shares;
//   - a walk visits every node once, bucket 0 first, newest first in a bucket,
//     and may free the node it stands on.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "tests/support/ck_main.h"

typedef struct item {
    int id;
    hk_hash_node_t node;
} item_t;

static item_t *item_of(hk_hash_node_t *n)
{
    return n ? HK_CONTAINER_OF(n, item_t, node) : NULL;
}

// Ids of the nodes find gives for hash, in order; returns how many.
static int find_all(const hk_hash_t *h, uint32_t hash, int *ids, int max)
{
    int cnt = 0;
    for (hk_hash_node_t *n = hk_hash_first(h, hash); n && cnt < max; n = hk_hash_next(n))
        ids[cnt++] = item_of(n)->id;
    return cnt;
}

static int walk_count(const hk_hash_t *h)
{
    int cnt = 0;
    for (hk_hash_node_t *n = hk_hash_walk(h, NULL); n; n = hk_hash_walk(h, n))
        cnt++;
    return cnt;
}

START_TEST(test_str_is_fnv1a)
{
    ck_assert_uint_eq(hk_hash_str(""), 2166136261u);
    ck_assert_uint_eq(hk_hash_str("a"), 0xe40c292cu);
    ck_assert_uint_eq(hk_hash_str("foobar"), 0xbf9cf968u);
    // Bytes are unsigned: a high byte must not sign-extend into the xor.
    ck_assert_uint_eq(hk_hash_str("\xff"), (2166136261u ^ 0xffu) * 16777619u);
}
END_TEST

START_TEST(test_find_in_a_crowded_bucket)
{
    hk_hash_t h;
    ck_assert_int_eq(hk_hash_init(&h, 16), 0);
    enum { N = 200 };
    item_t items[N];
    // Every hash is 3 mod 16: one bucket holds all of them. Ids 0..N-1 get
    // hashes 3 + 16 * (id % 50): four items for each hash.
    for (int i = 0; i < N; i++) {
        items[i].id = i;
        hk_hash_insert(&h, &items[i].node, 3u + 16u * (uint32_t)(i % 50));
    }
    for (int k = 0; k < 50; k++) {
        int ids[N];
        int cnt = find_all(&h, 3u + 16u * (uint32_t)k, ids, N);
        ck_assert_int_eq(cnt, 4);
        // Newest first, and only the items with that hash.
        for (int j = 0; j < 4; j++)
            ck_assert_int_eq(ids[j], k + 50 * (3 - j));
    }
    int ids[1];
    ck_assert_int_eq(find_all(&h, 3u + 16u * 50u, ids, 1), 0); // same bucket, no such hash
    ck_assert_int_eq(find_all(&h, 4u, ids, 1), 0);             // empty bucket
    ck_assert_int_eq(walk_count(&h), N);
    hk_hash_fini(&h);
}
END_TEST

START_TEST(test_remove_head_middle_tail)
{
    hk_hash_t h;
    ck_assert_int_eq(hk_hash_init(&h, 8), 0);
    enum { N = 9 };
    item_t items[N];
    for (int i = 0; i < N; i++) {
        items[i].id = i;
        hk_hash_insert(&h, &items[i].node, (uint32_t)(8 * i + 5)); // all in bucket 5
    }
    // The chain is 8 7 6 5 4 3 2 1 0: take out the middle, the head, the tail.
    int gone[] = {4, 8, 0, 6, 1};
    int present[N];
    for (int i = 0; i < N; i++)
        present[i] = 1;
    for (size_t g = 0; g < sizeof(gone) / sizeof(gone[0]); g++) {
        hk_hash_remove(&h, &items[gone[g]].node);
        present[gone[g]] = 0;
        int left = 0;
        for (int i = 0; i < N; i++) {
            int ids[2];
            int cnt = find_all(&h, (uint32_t)(8 * i + 5), ids, 2);
            ck_assert_int_eq(cnt, present[i]);
            if (cnt)
                ck_assert_int_eq(ids[0], i);
            left += present[i];
        }
        ck_assert_int_eq(walk_count(&h), left);
    }
    // What is left keeps its order: 7 5 3 2.
    int order[4], cnt = 0;
    for (hk_hash_node_t *n = hk_hash_walk(&h, NULL); n; n = hk_hash_walk(&h, n))
        order[cnt++] = item_of(n)->id;
    ck_assert_int_eq(cnt, 4);
    ck_assert_int_eq(order[0], 7);
    ck_assert_int_eq(order[1], 5);
    ck_assert_int_eq(order[2], 3);
    ck_assert_int_eq(order[3], 2);
    hk_hash_fini(&h);
}
END_TEST

START_TEST(test_remove_one_of_equal_hashes)
{
    // Two elements with one hash (two keys that collide): removing one leaves
    // the other findable, whichever of the two goes.
    for (int which = 0; which < 2; which++) {
        hk_hash_t h;
        ck_assert_int_eq(hk_hash_init(&h, 4), 0);
        item_t a = {.id = 1}, b = {.id = 2}, other = {.id = 3};
        hk_hash_insert(&h, &a.node, 6);
        hk_hash_insert(&h, &other.node, 10); // same bucket, another hash
        hk_hash_insert(&h, &b.node, 6);
        hk_hash_remove(&h, which ? &b.node : &a.node);
        int ids[3];
        ck_assert_int_eq(find_all(&h, 6, ids, 3), 1);
        ck_assert_int_eq(ids[0], which ? 1 : 2);
        ck_assert_int_eq(find_all(&h, 10, ids, 3), 1);
        ck_assert_int_eq(ids[0], 3);
        hk_hash_fini(&h);
    }
}
END_TEST

START_TEST(test_walk_every_node_in_bucket_order)
{
    hk_hash_t h;
    ck_assert_int_eq(hk_hash_init(&h, 4096), 0);
    ck_assert_ptr_null(hk_hash_walk(&h, NULL));
    enum { N = 3000 };
    item_t *items = calloc(N, sizeof(*items));
    ck_assert_ptr_nonnull(items);
    char key[32];
    for (int i = 0; i < N; i++) {
        items[i].id = i;
        snprintf(key, sizeof(key), "https://host-%d.example/hook", i);
        hk_hash_insert(&h, &items[i].node, hk_hash_str(key));
    }
    char *seen = calloc(N, 1);
    ck_assert_ptr_nonnull(seen);
    size_t last_bucket = 0;
    int cnt = 0;
    for (hk_hash_node_t *n = hk_hash_walk(&h, NULL); n; n = hk_hash_walk(&h, n)) {
        size_t bucket = n->hash % 4096;
        ck_assert_uint_ge(bucket, last_bucket);
        last_bucket = bucket;
        ck_assert_int_eq(seen[item_of(n)->id], 0);
        seen[item_of(n)->id] = 1;
        cnt++;
    }
    ck_assert_int_eq(cnt, N);
    // Every key is found by its own hash and string.
    for (int i = 0; i < N; i += 7) {
        snprintf(key, sizeof(key), "https://host-%d.example/hook", i);
        int found = 0;
        for (hk_hash_node_t *n = hk_hash_first(&h, hk_hash_str(key)); n; n = hk_hash_next(n))
            found += item_of(n)->id == i;
        ck_assert_int_eq(found, 1);
    }
    // A walk that unlinks (and could free) the node it stands on.
    for (hk_hash_node_t *n = hk_hash_walk(&h, NULL), *next; n; n = next) {
        next = hk_hash_walk(&h, n);
        hk_hash_remove(&h, n);
    }
    ck_assert_ptr_null(hk_hash_walk(&h, NULL));
    free(seen);
    free(items);
    hk_hash_fini(&h);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("hash");
    TCase *tc = tcase_create("hash");
    tcase_add_test(tc, test_str_is_fnv1a);
    tcase_add_test(tc, test_find_in_a_crowded_bucket);
    tcase_add_test(tc, test_remove_head_middle_tail);
    tcase_add_test(tc, test_remove_one_of_equal_hashes);
    tcase_add_test(tc, test_walk_every_node_in_bucket_order);
    suite_add_tcase(s, tc);
    return s;
}
