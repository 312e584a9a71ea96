// check_dispatch: the dispatcher on an injected clock (DESIGN §7): idle lanes,
// queues and tenants are freed; the lane cap never grows and loses nothing; a 429
// holds the lane without touching the breaker; tenants are served round robin;
// every spelling of an endpoint is one lane and one rule; keys of the largest size
// survive the shared-state hooks whole; the key is computed once, at parse time.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/dispatch.h"
#include "base/endpoint.h"
#include "model/job.h"
#include "model/task.h"

#include "tests/support/ck_main.h"

static hk_dispatch_t *disp;
static int64_t fake_now;
static int slot;

// Diverted tasks, by reason.
static int diverted[3];

static int64_t fake_clock(void)
{
    return fake_now;
}

static void on_divert(hk_task_t *task, hk_divert_t why, int64_t due_ms, void *arg)
{
    (void)due_ms, (void)arg;
    diverted[why]++;
    hk_task_destroy(task);
}

static void noop_wake(void *arg)
{
    (void)arg;
}

// What the shared-state hooks were told.
static char last_permits_ep[HK_ENDPOINT_KEY_MAX + 64];
static char last_open_ep[HK_ENDPOINT_KEY_MAX + 64];
static int lanes_gone;

static void on_permits(const char *endpoint, double rate, int burst, int want, void *arg)
{
    (void)rate, (void)burst, (void)want, (void)arg;
    snprintf(last_permits_ep, sizeof(last_permits_ep), "%s", endpoint);
}

static void on_breaker(const char *endpoint, int64_t until, void *arg)
{
    (void)arg;
    if (until)
        snprintf(last_open_ep, sizeof(last_open_ep), "%s", endpoint);
}

static void on_lane_gone(const char *endpoint, void *arg)
{
    (void)endpoint, (void)arg;
    lanes_gone++;
}

static hk_dispatch_opts_t base_opts(void)
{
    return (hk_dispatch_opts_t){
        .breaker = hk_breaker_opts_default(),
        .lane = hk_aimd_opts_default(),
        .inline_max_ms = 600000,
        .divert = on_divert,
        .lane_idle_ms = 1000,
        .max_lanes = 100,
        .hold_default_ms = 1000,
        .hold_max_ms = 60000,
        .clock_ms = fake_clock,
    };
}

static void start(hk_dispatch_opts_t opts)
{
    if (disp)
        hk_dispatch_destroy(disp);
    disp = hk_dispatch_new(&opts);
    ck_assert_ptr_nonnull(disp);
    slot = hk_dispatch_register(disp, noop_wake, NULL);
}

static void setup(void)
{
    fake_now = 1000000;
    memset(diverted, 0, sizeof(diverted));
    last_permits_ep[0] = last_open_ep[0] = '\0';
    lanes_gone = 0;
    disp = NULL;
    start(base_opts());
}

static void teardown(void)
{
    hk_dispatch_destroy(disp);
    disp = NULL;
}

static hk_task_t *task_for(const char *url, const char *tenant, int64_t offset)
{
    char value[1024];
    snprintf(value, sizeof(value), "{\"url\":\"%s\",\"tenant\":\"%s\",\"body\":{}}", url, tenant);
    hk_task_t *task = hk_task_new("jobs", 0, offset, 1, NULL, 0, value, strlen(value));
    ck_assert_ptr_nonnull(task);
    hk_job_defaults_t defs = {.max_attempts = 10, .timeout_ms = 1000, .max_job_bytes = 1 << 20};
    hk_job_src_t src = {.topic = "jobs", .partition = 0, .offset = offset};
    char err[256];
    hk_job_t *job = hk_job_parse(value, strlen(value), &src, &defs, err, sizeof(err));
    ck_assert_msg(job != NULL, "%s: %s", url, err);
    hk_task_set_job(task, job);
    return task;
}

static void submit(const char *url, const char *tenant)
{
    static int64_t offset;
    hk_dispatch_submit(disp, task_for(url, tenant, offset++));
}

static size_t take(hk_task_t **out, size_t max)
{
    int64_t next_due;
    return hk_dispatch_take(disp, slot, out, max, fake_now, &next_due);
}

static void finish(hk_task_t *task, hk_outcome_t outcome, int status, int64_t retry_after_ms)
{
    hk_task_fail(task, outcome, status, "HTTP %d", status);
    task->retry_after_ms = retry_after_ms;
    hk_dispatch_finish(disp, task, fake_now);
    hk_dispatch_release(disp, task);
}

static hk_dispatch_counts_t counts(void)
{
    hk_dispatch_counts_t c;
    hk_dispatch_counts(disp, &c);
    return c;
}

// The /v1/lanes object of `endpoint` (a new reference), or NULL.
static json_t *lane_json(const char *endpoint)
{
    json_t *arr = hk_dispatch_lanes_json(disp, fake_now), *found = NULL, *l;
    size_t i;
    json_array_foreach(arr, i, l)
    {
        if (strcmp(json_string_value(json_object_get(l, "endpoint")), endpoint) == 0)
            found = json_incref(l);
    }
    json_decref(arr);
    return found;
}

static void deliver_one(const char *url, const char *tenant)
{
    submit(url, tenant);
    hk_task_t *t[1];
    ck_assert_uint_eq(take(t, 1), 1);
    finish(t[0], HK_OUTCOME_DELIVERED, 200, -1);
    hk_task_destroy(t[0]);
}

// ---- eviction ---------------------------------------------------------------

START_TEST(test_idle_lane_queue_and_tenant_are_freed_after_the_idle_time)
{
    deliver_one("http://a.example/x", "t1");
    hk_dispatch_counts_t c = counts();
    ck_assert_uint_eq(c.lanes, 1);
    // Queue and tenant go with their last task; the lane waits out its idle time.
    ck_assert_uint_eq(c.queues, 0);
    ck_assert_uint_eq(c.tenants, 0);
    hk_task_t *t[1];
    fake_now += 999;
    take(t, 1);
    ck_assert_uint_eq(counts().lanes, 1);
    fake_now += 1;
    take(t, 1);
    ck_assert_uint_eq(counts().lanes, 0);
}
END_TEST

START_TEST(test_a_lane_with_work_or_an_open_breaker_or_a_rule_is_kept)
{
    // Work: a task delayed past the idle time keeps its lane.
    hk_dispatch_defer(disp, task_for("http://delayed.example/", "t", 1), fake_now + 5000);
    // A rule: disabled.
    ck_assert_int_eq(hk_dispatch_endpoint_disable(disp, "http://off.example", 1), 0);
    // An open breaker: five 503s in a row.
    for (int i = 0; i < 5; i++)
        submit("http://down.example/", "t");
    hk_task_t *t[8];
    ck_assert_uint_eq(take(t, 8), 5);
    for (int i = 0; i < 5; i++) {
        finish(t[i], HK_OUTCOME_RETRYABLE, 503, -1);
        hk_task_destroy(t[i]);
    }
    json_t *down = lane_json("http://down.example:80");
    ck_assert_str_eq(json_string_value(json_object_get(down, "state")), "open");
    json_decref(down);
    fake_now += 2000; // past the idle time, inside the 30 s open period
    take(t, 8);
    ck_assert_uint_eq(counts().lanes, 3);
    fake_now += 30000; // open period over (half-open, idle): it may go now
    size_t n = take(t, 8);
    ck_assert_uint_eq(n, 1); // the delayed task came due
    finish(t[0], HK_OUTCOME_DELIVERED, 200, -1);
    hk_task_destroy(t[0]);
    fake_now += 1000;
    take(t, 8);
    hk_dispatch_counts_t c = counts();
    ck_assert_uint_eq(c.lanes, 1); // only the disabled one stays
    json_t *off = lane_json("http://off.example:80");
    ck_assert_ptr_nonnull(off);
    json_decref(off);
}
END_TEST

START_TEST(test_gone_urls_expire_and_are_capped)
{
    hk_dispatch_opts_t o = base_opts();
    o.gone_max = 2;
    o.gone_ttl_ms = 5000;
    start(o);
    const char *urls[] = {"http://g.example/1", "http://g.example/2", "http://g.example/3"};
    for (int i = 0; i < 3; i++) {
        submit(urls[i], "t");
        hk_task_t *t[1];
        ck_assert_uint_eq(take(t, 1), 1);
        finish(t[0], HK_OUTCOME_GONE, 410, -1);
        hk_task_destroy(t[0]);
    }
    hk_task_t *t[1];
    take(t, 1);
    ck_assert_uint_eq(counts().gone_urls, 2); // the oldest was forgotten
    submit(urls[0], "t");
    ck_assert_uint_eq(take(t, 1), 1); // so it is sent again
    finish(t[0], HK_OUTCOME_DELIVERED, 200, -1);
    hk_task_destroy(t[0]);
    submit(urls[2], "t");
    ck_assert_uint_eq(take(t, 1), 0); // still disabled
    ck_assert_int_eq(diverted[HK_DIVERT_GONE], 1);
    fake_now += 5000;
    take(t, 1);
    ck_assert_uint_eq(counts().gone_urls, 0);
    fake_now += 1000;
    take(t, 1);
    ck_assert_uint_eq(counts().lanes, 0); // nothing keeps the lane any more
}
END_TEST

// ---- the cap ----------------------------------------------------------------

START_TEST(test_at_the_cap_an_idle_lane_makes_room_at_once)
{
    hk_dispatch_opts_t o = base_opts();
    o.max_lanes = 2;
    o.on_lane_gone = on_lane_gone;
    start(o);
    deliver_one("http://h1.example/", "t");
    deliver_one("http://h2.example/", "t");
    deliver_one("http://h3.example/", "t"); // no idle time passed: h1 makes room
    ck_assert_uint_eq(counts().lanes, 2);
    ck_assert_int_eq(lanes_gone, 1);
}
END_TEST

START_TEST(test_at_the_cap_a_new_endpoint_waits_for_a_lane_and_is_not_lost)
{
    hk_dispatch_opts_t o = base_opts();
    o.max_lanes = 2;
    start(o);
    submit("http://h1.example/", "t");
    submit("http://h2.example/", "t");
    hk_task_t *t[4];
    ck_assert_uint_eq(take(t, 4), 2); // both lanes hold work in flight
    submit("http://h3.example/", "t");
    hk_dispatch_counts_t c = counts();
    ck_assert_uint_eq(c.lanes, 2);
    ck_assert_uint_eq(c.waiting_for_lane, 1);
    ck_assert_uint_eq(hk_dispatch_queued(disp), 1);
    hk_task_t *u[4];
    ck_assert_uint_eq(take(u, 4), 0);
    finish(t[0], HK_OUTCOME_DELIVERED, 200, -1);
    hk_task_destroy(t[0]);
    ck_assert_uint_eq(take(u, 4), 1); // h1 went idle: h3 gets its place
    ck_assert_str_eq(u[0]->job->url, "http://h3.example/");
    ck_assert_uint_eq(counts().lanes, 2);
    finish(t[1], HK_OUTCOME_DELIVERED, 200, -1);
    finish(u[0], HK_OUTCOME_DELIVERED, 200, -1);
    hk_task_destroy(t[1]);
    hk_task_destroy(u[0]);
}
END_TEST

START_TEST(test_ten_thousand_hosts_never_grow_past_the_cap)
{
    hk_dispatch_opts_t o = base_opts();
    o.max_lanes = 50;
    start(o);
    hk_task_t *t[64];
    size_t peak = 0, done = 0;
    for (int i = 0; i < 10000; i++) {
        char url[64];
        snprintf(url, sizeof(url), "http://h%d.example/", i);
        submit(url, i % 2 ? "a" : "b");
        if (i % 10 == 9) {
            size_t n = take(t, 64);
            for (size_t k = 0; k < n; k++) {
                finish(t[k], HK_OUTCOME_DELIVERED, 200, -1);
                hk_task_destroy(t[k]);
            }
            done += n;
            if (counts().lanes > peak)
                peak = counts().lanes;
        }
    }
    for (size_t n; (n = take(t, 64)) > 0; done += n)
        for (size_t k = 0; k < n; k++) {
            finish(t[k], HK_OUTCOME_DELIVERED, 200, -1);
            hk_task_destroy(t[k]);
        }
    ck_assert_uint_eq(done, 10000);
    ck_assert_uint_le(peak, 50);
    fake_now += 1000;
    take(t, 1);
    hk_dispatch_counts_t c = counts();
    ck_assert_uint_eq(c.lanes + c.queues + c.tenants + c.waiting_for_lane, 0);
}
END_TEST

// ---- 429 ---------------------------------------------------------------------

START_TEST(test_429_holds_the_lane_and_never_opens_the_breaker)
{
    for (int i = 0; i < 40; i++)
        submit(i % 2 ? "http://h.example/busy" : "http://h.example/ok", "t");
    int64_t next_due;
    hk_task_t *t[64];
    int held = 0;
    for (int round = 0; round < 10; round++) {
        // One 429 (Retry-After 2 s) per round, from the busy path.
        size_t n = hk_dispatch_take(disp, slot, t, 2, fake_now, &next_due);
        ck_assert_uint_eq(n, 2);
        for (size_t k = 0; k < n; k++) {
            int busy = strstr(t[k]->job->url, "busy") != NULL;
            finish(t[k], busy ? HK_OUTCOME_RETRYABLE : HK_OUTCOME_DELIVERED, busy ? 429 : 200,
                   busy ? 2000 : -1);
            hk_task_destroy(t[k]);
        }
        // The whole lane, healthy path included, waits out the Retry-After.
        fake_now += 1999;
        ck_assert_uint_eq(hk_dispatch_take(disp, slot, t, 2, fake_now, &next_due), 0);
        ck_assert_int_le(next_due, fake_now + 1);
        fake_now += 1;
        held++;
    }
    json_t *l = lane_json("http://h.example:80");
    ck_assert_str_eq(json_string_value(json_object_get(l, "state")), "closed");
    ck_assert_int_eq(json_integer_value(json_object_get(l, "trips")), 0);
    json_decref(l);
    ck_assert_int_eq(held, 10);
}
END_TEST

START_TEST(test_429_drops_the_limit_once_per_hold_and_5xx_still_count)
{
    for (int i = 0; i < 10; i++)
        submit("http://h.example/", "t");
    hk_task_t *t[16];
    ck_assert_uint_eq(take(t, 3), 3);
    json_t *l = lane_json("http://h.example:80");
    int before = (int)json_integer_value(json_object_get(l, "limit"));
    json_decref(l);
    for (int k = 0; k < 3; k++) { // three 429s of one burst, no Retry-After
        finish(t[k], HK_OUTCOME_RETRYABLE, 429, -1);
        hk_task_destroy(t[k]);
    }
    l = lane_json("http://h.example:80");
    int after = (int)json_integer_value(json_object_get(l, "limit"));
    ck_assert_int_eq((int)json_integer_value(json_object_get(l, "hold_ms")), 1000); // the default
    json_decref(l);
    ck_assert_int_eq(after, (int)(before * 0.9));
    // 5xx are still failures: five in a row open the breaker.
    fake_now += 1000;
    ck_assert_uint_eq(take(t, 5), 5);
    for (int k = 0; k < 5; k++) {
        finish(t[k], HK_OUTCOME_RETRYABLE, 503, -1);
        hk_task_destroy(t[k]);
    }
    l = lane_json("http://h.example:80");
    ck_assert_str_eq(json_string_value(json_object_get(l, "state")), "open");
    json_decref(l);
}
END_TEST

// ---- endpoint key at parse time ----------------------------------------------

// The key is computed once, when the job is attached to its task, and the
// dispatcher uses the stored key: it never parses the URL under its lock.
START_TEST(test_the_endpoint_key_is_computed_when_the_job_is_attached)
{
    hk_task_t *task = task_for("http://LOCALHOST.:8080/hook?x=1", "a", 1);
    ck_assert_str_eq(task->endpoint, "http://127.0.0.1:8080");
    hk_task_t *https = task_for("HTTPS://[::ffff:10.0.0.1]/", "a", 2);
    ck_assert_str_eq(https->endpoint, "https://10.0.0.1:443");
    hk_task_destroy(https);

    snprintf(task->endpoint, sizeof(task->endpoint), "http://stored.example:1");
    hk_dispatch_submit(disp, task);
    hk_task_t *t[1];
    ck_assert_uint_eq(take(t, 1), 1);
    json_t *stored = lane_json("http://stored.example:1");
    ck_assert_ptr_nonnull(stored);
    json_decref(stored);
    ck_assert_ptr_null(lane_json("http://127.0.0.1:8080"));
    finish(t[0], HK_OUTCOME_DELIVERED, 200, -1);
    hk_task_destroy(t[0]);
}
END_TEST

// ---- fairness ----------------------------------------------------------------

START_TEST(test_tenants_are_served_round_robin)
{
    for (int i = 0; i < 10; i++)
        submit("http://a.example/", "big");
    submit("http://b.example/", "small");
    submit("http://b.example/", "small");
    hk_task_t *t[4];
    ck_assert_uint_eq(take(t, 4), 4);
    const char *want[] = {"big", "small", "big", "small"};
    for (int k = 0; k < 4; k++) {
        ck_assert_str_eq(t[k]->job->tenant, want[k]);
        finish(t[k], HK_OUTCOME_DELIVERED, 200, -1);
        hk_task_destroy(t[k]);
    }
}
END_TEST

// ---- identity ----------------------------------------------------------------

START_TEST(test_every_spelling_of_an_address_is_one_lane)
{
    // The key itself is check_endpoint's; here, that a task's key picks its lane.
    const char *same[] = {"http://127.0.0.1:8080/", "HTTP://localhost:8080/x",
                          "http://[::ffff:127.0.0.1]:8080/", "http://2130706433:8080/",
                          "http://127.1.:8080/"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        deliver_one(same[i], "t");
    ck_assert_uint_eq(counts().lanes, 1);
    json_t *lane = lane_json("http://127.0.0.1:8080");
    ck_assert_ptr_nonnull(lane);
    json_decref(lane);
    // A trailing dot shares the lane.
    deliver_one("http://shop.example./", "t");
    deliver_one("http://shop.example/", "t");
    ck_assert_uint_eq(counts().lanes, 2);
}
END_TEST

START_TEST(test_a_disabled_address_rule_matches_every_spelling_and_the_peer)
{
    ck_assert_int_eq(hk_dispatch_endpoint_disable(disp, "http://127.0.0.1:8080", 1), 0);
    const char *urls[] = {"http://localhost:8080/", "http://[::ffff:127.0.0.1]:8080/",
                          "http://127.0.0.1.:8080/", "HTTP://127.0.0.1:8080/",
                          "http://2130706433:8080/"};
    for (size_t i = 0; i < 5; i++)
        submit(urls[i], "t");
    hk_task_t *t[8];
    ck_assert_uint_eq(take(t, 8), 0);
    ck_assert_int_eq(diverted[HK_DIVERT_DISABLED], 5);
    // A name that resolved to the disabled address is caught at connect time.
    ck_assert_int_eq(hk_dispatch_peer_disabled(disp, "http://any.example:8080/", "127.0.0.1", 8080),
                     1);
    ck_assert_int_eq(
        hk_dispatch_peer_disabled(disp, "http://any.example:8080/", "::ffff:127.0.0.1", 8080), 1);
    ck_assert_int_eq(hk_dispatch_peer_disabled(disp, "http://any.example:8081/", "127.0.0.1", 8081),
                     0);
    ck_assert_int_eq(
        hk_dispatch_peer_disabled(disp, "https://any.example:8080/", "127.0.0.1", 8080), 0);
}
END_TEST

// ---- key sizes ---------------------------------------------------------------

START_TEST(test_the_largest_keys_reach_the_hooks_whole)
{
    hk_dispatch_opts_t o = base_opts();
    o.want_permits = on_permits;
    o.on_breaker = on_breaker;
    start(o);
    // A host of the largest size (check_endpoint: its key fills HK_ENDPOINT_KEY_MAX).
    char host[HK_ENDPOINT_HOST_MAX + 1], url[512], ep[HK_ENDPOINT_KEY_MAX];
    for (int i = 0; i < HK_ENDPOINT_HOST_MAX; i++)
        host[i] = (i % 64 == 63) ? '.' : 'a';
    host[HK_ENDPOINT_HOST_MAX] = '\0';
    snprintf(url, sizeof(url), "https://%s:65535/x", host);
    ck_assert_int_eq(hk_endpoint_of(url, ep, sizeof(ep)), 0);
    ck_assert_uint_eq(strlen(ep), HK_ENDPOINT_KEY_MAX - 1);
    hk_dispatch_set_rate(disp, ep, 10, 1);
    for (int i = 0; i < 6; i++)
        submit(url, "t");
    hk_task_t *t[8];
    ck_assert_uint_eq(take(t, 8), 0); // waits for the shared limiter
    ck_assert_str_eq(last_permits_ep, ep);
    hk_dispatch_permits(disp, last_permits_ep, 5, 0); // answered with the key it was given
    ck_assert_uint_eq(take(t, 8), 5);
    for (int k = 0; k < 5; k++) {
        finish(t[k], HK_OUTCOME_RETRYABLE, 503, -1);
        hk_task_destroy(t[k]);
    }
    ck_assert_str_eq(last_open_ep, ep);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("dispatch");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_idle_lane_queue_and_tenant_are_freed_after_the_idle_time);
    tcase_add_test(tc, test_a_lane_with_work_or_an_open_breaker_or_a_rule_is_kept);
    tcase_add_test(tc, test_gone_urls_expire_and_are_capped);
    tcase_add_test(tc, test_at_the_cap_an_idle_lane_makes_room_at_once);
    tcase_add_test(tc, test_at_the_cap_a_new_endpoint_waits_for_a_lane_and_is_not_lost);
    tcase_add_test(tc, test_ten_thousand_hosts_never_grow_past_the_cap);
    tcase_add_test(tc, test_429_holds_the_lane_and_never_opens_the_breaker);
    tcase_add_test(tc, test_429_drops_the_limit_once_per_hold_and_5xx_still_count);
    tcase_add_test(tc, test_tenants_are_served_round_robin);
    tcase_add_test(tc, test_the_endpoint_key_is_computed_when_the_job_is_attached);
    tcase_add_test(tc, test_every_spelling_of_an_address_is_one_lane);
    tcase_add_test(tc, test_a_disabled_address_rule_matches_every_spelling_and_the_peer);
    tcase_add_test(tc, test_the_largest_keys_reach_the_hooks_whole);
    suite_add_tcase(s, tc);
    return s;
}
