// check_sched: which task runs next (worker/sched.c), on plain tasks and an
// injected clock: tenants and, within a tenant, endpoints are served round robin;
// a parked queue is skipped until its lane unparks it; delayed tasks come out in
// due order and only when due; one task per ordering key is active and the next
// follows on release; a revoke removes exactly its partition's tasks, waiting
// ones included; batch items (task->kind) are never chained nor handed off, and a
// batch pulls back exactly its own items (task->owner), which no revoke takes.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/job.h"
#include "worker/lane.h"
#include "worker/sched.h"
#include "model/task.h"
#include "tests/support/ck_main.h"

static int64_t fake_now;
static hk_lanes_t *ls;
static hk_sched_t *s;

static int64_t fake_clock(void)
{
    return fake_now;
}

static void on_unpark(hk_lane_t *l, void *arg)
{
    (void)arg;
    hk_sched_unpark(s, l);
}

static void setup(void)
{
    fake_now = 1000000;
    hk_lanes_opts_t o = {.breaker = hk_breaker_opts_default(),
                         .aimd = hk_aimd_opts_default(),
                         .idle_ms = 1000,
                         .max_lanes = 100,
                         .gone_max = 10,
                         .gone_ttl_ms = 1000,
                         .hold_default_ms = 1000,
                         .hold_max_ms = 1000,
                         .unpark = on_unpark,
                         .clock_ms = fake_clock};
    ls = hk_lanes_new(&o);
    s = hk_sched_new(ls, 100);
    ck_assert_ptr_nonnull(s);
}

static void teardown(void)
{
    hk_sched_destroy(s);
    hk_lanes_destroy(ls);
}

static hk_task_t *task_for(const char *url, const char *tenant, const char *key, int32_t partition,
                           int64_t offset)
{
    char value[1024];
    snprintf(value, sizeof(value), "{\"url\":\"%s\",\"tenant\":\"%s\",%s%s%s\"body\":{}}", url,
             tenant, key ? "\"ordering_key\":\"" : "", key ? key : "", key ? "\"," : "");
    hk_task_t *task = hk_task_new("jobs", partition, offset, 1, NULL, 0, value, strlen(value));
    ck_assert_ptr_nonnull(task);
    hk_job_defaults_t defs = {.max_attempts = 10, .timeout_ms = 1000, .max_job_bytes = 1 << 20};
    hk_job_src_t src = {.topic = "jobs", .partition = partition, .offset = offset};
    char err[256];
    hk_job_t *job = hk_job_parse(value, strlen(value), &src, &defs, err, sizeof(err));
    ck_assert_msg(job != NULL, "%s: %s", value, err);
    hk_task_set_job(task, job);
    return task;
}

// Takes the next task as the dispatcher would (no lane checks), or NULL.
static hk_task_t *next(void)
{
    hk_sched_queue_t *q = hk_sched_front(s);
    if (!q)
        return NULL;
    hk_task_t *t = hk_sched_pop(s, q);
    hk_sched_rotate(s, q);
    return t;
}

static void done(hk_task_t *t)
{
    hk_sched_unbind(s, t, fake_now);
    hk_sched_release(s, t);
    hk_task_destroy(t);
}

START_TEST(test_sched_tenants_then_their_endpoints_round_robin)
{
    int64_t off = 0;
    for (int i = 0; i < 3; i++)
        hk_sched_add(s, task_for("http://a.example/", "big", NULL, 0, off++), 0, 0);
    for (int i = 0; i < 3; i++)
        hk_sched_add(s, task_for("http://b.example/", "big", NULL, 0, off++), 0, 0);
    hk_sched_add(s, task_for("http://a.example/", "small", NULL, 0, off++), 0, 0);
    // big/a, small/a, big/b, big/a, big/b, big/a, big/b
    const char *want_tenant[] = {"big", "small", "big", "big", "big", "big", "big"};
    const char *want_host[] = {"a", "a", "b", "a", "b", "a", "b"};
    for (int k = 0; k < 7; k++) {
        hk_task_t *t = next();
        ck_assert_ptr_nonnull(t);
        ck_assert_str_eq(t->job->tenant, want_tenant[k]);
        ck_assert_msg(strstr(t->job->url, want_host[k]) == t->job->url + 7, "%d: %s", k,
                      t->job->url);
        done(t);
    }
    ck_assert_ptr_null(next());
    ck_assert_uint_eq(hk_sched_queued(s), 0);
    hk_sched_counts_t c;
    hk_sched_counts(s, &c);
    ck_assert_uint_eq(c.queues, 0);
    ck_assert_uint_eq(c.tenants, 0);
}
END_TEST

START_TEST(test_sched_a_parked_queue_waits_for_its_lane)
{
    hk_sched_add(s, task_for("http://a.example/", "t", NULL, 0, 1), 0, 0);
    hk_sched_add(s, task_for("http://b.example/", "t", NULL, 0, 2), 0, 0);
    hk_sched_queue_t *q = hk_sched_front(s);
    hk_lane_t *a = hk_sched_queue_lane(q);
    hk_sched_park(q);
    hk_task_t *t = next();
    ck_assert_str_eq(t->job->url, "http://b.example/");
    done(t);
    ck_assert_ptr_null(hk_sched_front(s));
    ck_assert_uint_eq(hk_sched_queued(s), 1);
    hk_sched_unpark(s, a);
    t = next();
    ck_assert_str_eq(t->job->url, "http://a.example/");
    done(t);
}
END_TEST

START_TEST(test_sched_delayed_tasks_come_out_in_due_order_when_due)
{
    int64_t dues[] = {fake_now + 300, fake_now + 100, fake_now + 200};
    for (int i = 0; i < 3; i++)
        hk_sched_add(s, task_for("http://a.example/", "t", NULL, 0, i), dues[i], 0);
    ck_assert_int_eq(hk_sched_next_due(s), fake_now + 100);
    hk_sched_due(s, fake_now + 99);
    ck_assert_ptr_null(hk_sched_front(s));
    hk_sched_due(s, fake_now + 200);
    hk_task_t *t = next();
    ck_assert_int_eq(t->offset, 1);
    done(t);
    t = next();
    ck_assert_int_eq(t->offset, 2);
    done(t);
    ck_assert_ptr_null(next());
    ck_assert_int_eq(hk_sched_next_due(s), fake_now + 300);
    hk_sched_due(s, fake_now + 300);
    t = next();
    ck_assert_int_eq(t->offset, 0);
    done(t);
    ck_assert_int_eq(hk_sched_next_due(s), INT64_MAX);
}
END_TEST

START_TEST(test_sched_one_task_per_ordering_key_and_the_next_follows_on_release)
{
    hk_sched_add(s, task_for("http://a.example/", "t", "k", 0, 1), 0, 1);
    hk_sched_add(s, task_for("http://a.example/", "t", "k", 0, 2), 0, 1);
    hk_sched_add(s, task_for("http://b.example/", "t", "other", 0, 3), 0, 1);
    hk_task_t *first = next();
    ck_assert_int_eq(first->offset, 1);
    hk_task_t *other = next();
    ck_assert_int_eq(other->offset, 3);
    ck_assert_ptr_null(next()); // offset 2 waits for its key
    hk_sched_unbind(s, first, fake_now);
    ck_assert_int_eq(hk_sched_release(s, first), 1);
    hk_task_destroy(first);
    hk_task_t *second = next();
    ck_assert_ptr_nonnull(second);
    ck_assert_int_eq(second->offset, 2);
    done(second);
    done(other);
    hk_sched_counts_t c;
    hk_sched_counts(s, &c);
    ck_assert_uint_eq(c.chains, 0);
    // Unordered, the same two go out together.
    hk_sched_add(s, task_for("http://a.example/", "t", "k", 0, 4), 0, 0);
    hk_sched_add(s, task_for("http://a.example/", "t", "k", 0, 5), 0, 0);
    hk_task_t *x = next(), *y = next();
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    done(x);
    done(y);
}
END_TEST

START_TEST(test_sched_revoke_removes_exactly_its_partition)
{
    hk_sched_add(s, task_for("http://a.example/", "t", "k", 1, 1), 0, 1);             // active
    hk_sched_add(s, task_for("http://a.example/", "t", "k", 1, 2), 0, 1);             // chained
    hk_sched_add(s, task_for("http://a.example/", "t", NULL, 1, 3), fake_now + 5, 1); // delayed
    hk_sched_add(s, task_for("http://a.example/", "t", NULL, 2, 4), 0, 1);            // kept
    hk_sched_add(s, task_for("http://a.example/", "t", "k", 2, 5), 0, 1);             // chained
    hk_task_t *gone = hk_sched_remove_partition(s, "jobs", 1, fake_now);
    int n = 0;
    for (hk_task_t *t = gone, *nx; t; t = nx, n++) {
        nx = t->next;
        ck_assert_int_eq(t->partition, 1);
        hk_task_destroy(t);
    }
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(hk_sched_next_due(s), INT64_MAX);
    // Partition 2's keyed task took over the key.
    hk_task_t *a = next(), *b = next();
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(a->offset + b->offset, 9);
    ck_assert_ptr_null(next());
    done(a);
    done(b);
    ck_assert_uint_eq(hk_sched_queued(s), 0);
}
END_TEST

// Batch items (by their kind) share their batch's ordering key but are never
// chained by it, and a shutdown hand-off leaves their delayed retries alone (the
// batch takes them back); a webhook's delayed retry is handed off.
START_TEST(test_sched_batch_items_are_never_chained_nor_handed_off)
{
    hk_task_t *a = task_for("http://a.example/", "t", "k", 0, 1);
    hk_task_t *b = task_for("http://a.example/", "t", "k", 0, 2);
    a->kind = b->kind = HK_TASK_BATCH_ITEM;
    hk_sched_add(s, a, 0, 1);
    hk_sched_add(s, b, 0, 1);
    hk_task_t *x = next(), *y = next();
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y); // both at once: no chain
    ck_assert_ptr_null(x->chain);
    hk_sched_counts_t c;
    hk_sched_counts(s, &c);
    ck_assert_uint_eq(c.chains, 0);
    done(x);
    done(y);

    hk_task_t *item = task_for("http://a.example/", "t", NULL, 0, 3);
    item->kind = HK_TASK_BATCH_ITEM;
    hk_sched_add(s, item, fake_now + 1000, 0);
    hk_sched_add(s, task_for("http://a.example/", "t", NULL, 0, 4), fake_now + 1000, 0);
    hk_task_t *handed = hk_sched_remove_delayed(s, fake_now);
    ck_assert_ptr_nonnull(handed);
    ck_assert_int_eq(handed->offset, 4);
    ck_assert_ptr_null(handed->next);
    hk_task_destroy(handed);
    ck_assert_uint_eq(hk_sched_queued(s), 1);
    hk_sched_due(s, fake_now + 1000);
    hk_task_t *back = next();
    ck_assert_ptr_eq(back, item);
    done(back);
}
END_TEST

// A batch pulls back its own items, queued or waiting for a retry, and no other
// batch's; a revoke of the partition the batches came from takes its webhooks and
// none of the items, although they carry that partition's position.
START_TEST(test_sched_owner_removal_takes_exactly_its_batch_items)
{
    int batch_a, batch_b; // two batches: only their addresses matter
    hk_task_t *a1 = task_for("http://a.example/", "t", NULL, 0, 1);
    hk_task_t *a2 = task_for("http://b.example/", "t", NULL, 0, 2);
    hk_task_t *b1 = task_for("http://a.example/", "t", NULL, 0, 3);
    hk_task_t *w = task_for("http://a.example/", "t", NULL, 0, 4);
    a1->kind = a2->kind = b1->kind = HK_TASK_BATCH_ITEM;
    a1->owner = a2->owner = &batch_a;
    b1->owner = &batch_b;
    hk_sched_add(s, a1, 0, 0);
    hk_sched_add(s, a2, fake_now + 1000, 0); // a retry, in the delay heap
    hk_sched_add(s, b1, 0, 0);
    hk_sched_add(s, w, 0, 0);

    ck_assert_ptr_null(hk_sched_remove_owned(s, NULL, fake_now)); // webhooks have no owner
    ck_assert_uint_eq(hk_sched_queued(s), 4);

    hk_task_t *gone = hk_sched_remove_owned(s, &batch_a, fake_now);
    int n = 0;
    for (hk_task_t *t = gone, *nx; t; t = nx, n++) {
        nx = t->next;
        ck_assert_msg(t == a1 || t == a2, "took offset %lld", (long long)t->offset);
        hk_task_destroy(t);
    }
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(hk_sched_next_due(s), INT64_MAX);
    ck_assert_uint_eq(hk_sched_queued(s), 2);

    hk_task_t *revoked = hk_sched_remove_partition(s, "jobs", 0, fake_now);
    ck_assert_ptr_eq(revoked, w);
    ck_assert_ptr_null(revoked->next);
    hk_task_destroy(revoked);

    ck_assert_ptr_eq(next(), b1);
    ck_assert_ptr_null(next());
    done(b1);
    ck_assert_uint_eq(hk_sched_queued(s), 0);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *su = suite_create("sched");
    TCase *tc = tcase_create("sched");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sched_tenants_then_their_endpoints_round_robin);
    tcase_add_test(tc, test_sched_a_parked_queue_waits_for_its_lane);
    tcase_add_test(tc, test_sched_delayed_tasks_come_out_in_due_order_when_due);
    tcase_add_test(tc, test_sched_one_task_per_ordering_key_and_the_next_follows_on_release);
    tcase_add_test(tc, test_sched_revoke_removes_exactly_its_partition);
    tcase_add_test(tc, test_sched_batch_items_are_never_chained_nor_handed_off);
    tcase_add_test(tc, test_sched_owner_removal_takes_exactly_its_batch_items);
    suite_add_tcase(su, tc);
    return su;
}
