// check_link: base/link.h, the intrusive list of the dispatcher's lanes and
// scheduler.
//   - a fresh head, and an element in no list, are alone;
//   - insert before the head appends, before an element puts it in front of it,
//     and both directions of the ring agree;
//   - remove unlinks one element from the head, the middle or the tail, leaves
//     the others in order and the removed element alone;
//   - HK_CONTAINER_OF gives back the element a member belongs to.
#include <check.h>
#include <stddef.h>

#include "base/link.h"
#include "tests/support/ck_main.h"

typedef struct item {
    int id;
    double pad; // the link is not the first member: container_of must subtract
    hk_link_t link;
} item_t;

// The ids from head to tail into ids; checks the backward walk matches.
static int ids_of(hk_link_t *head, int *ids, int max)
{
    int cnt = 0;
    for (hk_link_t *k = head->next; k != head && cnt < max; k = k->next)
        ids[cnt++] = HK_CONTAINER_OF(k, item_t, link)->id;
    int back = cnt;
    for (hk_link_t *k = head->prev; k != head && back > 0; k = k->prev)
        ck_assert_int_eq(HK_CONTAINER_OF(k, item_t, link)->id, ids[--back]);
    ck_assert_int_eq(back, 0);
    return cnt;
}

START_TEST(test_fresh_is_alone)
{
    hk_link_t head;
    hk_link_init(&head);
    ck_assert(hk_link_alone(&head));
    item_t a = {.id = 1};
    hk_link_init(&a.link);
    ck_assert(hk_link_alone(&a.link));
    hk_link_insert_before(&head, &a.link);
    ck_assert(!hk_link_alone(&head));
    ck_assert(!hk_link_alone(&a.link));
}
END_TEST

START_TEST(test_insert_before)
{
    hk_link_t head;
    hk_link_init(&head);
    item_t it[4] = {{.id = 0}, {.id = 1}, {.id = 2}, {.id = 3}};
    hk_link_insert_before(&head, &it[0].link);       // 0
    hk_link_insert_before(&head, &it[2].link);       // 0 2
    hk_link_insert_before(&it[2].link, &it[1].link); // 0 1 2
    hk_link_insert_before(&it[0].link, &it[3].link); // 3 0 1 2
    int ids[8];
    ck_assert_int_eq(ids_of(&head, ids, 8), 4);
    ck_assert_int_eq(ids[0], 3);
    ck_assert_int_eq(ids[1], 0);
    ck_assert_int_eq(ids[2], 1);
    ck_assert_int_eq(ids[3], 2);
}
END_TEST

START_TEST(test_remove_head_middle_tail)
{
    hk_link_t head;
    hk_link_init(&head);
    item_t it[5];
    for (int i = 0; i < 5; i++) {
        it[i].id = i;
        hk_link_insert_before(&head, &it[i].link);
    }
    int ids[8];
    hk_link_remove(&it[2].link); // middle
    ck_assert(hk_link_alone(&it[2].link));
    ck_assert_int_eq(ids_of(&head, ids, 8), 4);
    ck_assert_int_eq(ids[0], 0);
    ck_assert_int_eq(ids[1], 1);
    ck_assert_int_eq(ids[2], 3);
    ck_assert_int_eq(ids[3], 4);
    hk_link_remove(&it[0].link); // first
    hk_link_remove(&it[4].link); // last
    ck_assert(hk_link_alone(&it[0].link));
    ck_assert(hk_link_alone(&it[4].link));
    ck_assert_int_eq(ids_of(&head, ids, 8), 2);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], 3);
    hk_link_remove(&it[1].link);
    hk_link_remove(&it[3].link);
    ck_assert(hk_link_alone(&head));
    // A removed element can go back in (lanes go idle and busy again).
    hk_link_insert_before(&head, &it[2].link);
    ck_assert_int_eq(ids_of(&head, ids, 8), 1);
    ck_assert_int_eq(ids[0], 2);
}
END_TEST

START_TEST(test_container_of)
{
    item_t a = {.id = 42};
    hk_link_t *l = &a.link;
    ck_assert_ptr_eq(HK_CONTAINER_OF(l, item_t, link), &a);
    ck_assert_int_eq(HK_CONTAINER_OF(l, item_t, link)->id, 42);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("link");
    TCase *tc = tcase_create("link");
    tcase_add_test(tc, test_fresh_is_alone);
    tcase_add_test(tc, test_insert_before);
    tcase_add_test(tc, test_remove_head_middle_tail);
    tcase_add_test(tc, test_container_of);
    suite_add_tcase(s, tc);
    return s;
}
