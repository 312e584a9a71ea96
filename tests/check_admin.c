// check_admin: the admin HTTP endpoint served by a real libmicrohttpd daemon on
// 127.0.0.1:0 in front of a real dispatcher, exercised with libcurl.
#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "worker/admin.h"
#include "worker/dispatch.h"
#include "base/clock.h"
#include "model/job.h"
#include "base/log.h"
#include "base/metrics.h"
#include "model/task.h"

#include "tests/support/ck_main.h"

static hk_dispatch_t *disp;
static hk_admin_t *adm;
static int diverted;
static int batch_calls; // calls of fake_batch

static void test_divert(hk_task_t *task, hk_divert_t why, int64_t due_ms, void *arg)
{
    (void)why;
    (void)due_ms;
    (void)arg;
    diverted++;
    hk_task_destroy(task);
}

static void setup(void)
{
    hk_dispatch_opts_t opts = {
        .breaker = hk_breaker_opts_default(),
        .lane = hk_aimd_opts_default(),
        .inline_max_ms = 1000,
        .divert = test_divert,
    };
    batch_calls = 0;
    atomic_store(&hk_metrics.pg_configured, 0);
    atomic_store(&hk_metrics.pg_up, 0);
    atomic_store(&hk_metrics.redis_configured, 0);
    atomic_store(&hk_metrics.redis_up, 0);
    disp = hk_dispatch_new(&opts);
    ck_assert_ptr_nonnull(disp);
    char err[256] = "";
    adm = hk_admin_start("127.0.0.1:0", NULL, disp, err, sizeof(err));
    ck_assert_msg(adm != NULL, "hk_admin_start: %s", err);
    ck_assert_int_gt(hk_admin_port(adm), 0);
}

static void teardown(void)
{
    hk_admin_stop(adm);
    adm = NULL;
    hk_dispatch_destroy(disp);
    disp = NULL;
}

// ---- HTTP client ----

typedef struct http_resp {
    long status;
    char *body; // NUL-terminated
    size_t len;
    char ctype[128];
    char allow[64];
} http_resp_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    http_resp_t *r = arg;
    char *b = realloc(r->body, r->len + size * n + 1);
    ck_assert_ptr_nonnull(b);
    memcpy(b + r->len, p, size * n);
    r->body = b;
    r->len += size * n;
    b[r->len] = '\0';
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    http_resp_t *r = arg;
    size_t len = size * n;
    if (len > 6 && strncasecmp(p, "Allow:", 6) == 0)
        snprintf(r->allow, sizeof(r->allow), "%.*s", (int)(len - 6), p + 6);
    // trim spaces and CRLF
    char *s = r->allow;
    while (*s == ' ')
        memmove(s, s + 1, strlen(s));
    for (size_t k = strlen(s); k > 0 && (s[k - 1] == '\r' || s[k - 1] == '\n'); k--)
        s[k - 1] = '\0';
    return len;
}

// `method` GET, POST, HEAD or any other verb; `path` sent as is.
static http_resp_t http_on(int port, const char *method, const char *path, const char *auth)
{
    http_resp_t r = {0};
    r.body = calloc(1, 1);
    char url[2048];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    struct curl_slist *hdrs = NULL;
    if (auth) {
        hdrs = curl_slist_append(hdrs, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    CURLcode rc = curl_easy_perform(c);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r.ctype, sizeof(r.ctype), "%s", ct ? ct : "");
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return r;
}

static http_resp_t http(const char *method, const char *path)
{
    return http_on(hk_admin_port(adm), method, path, NULL);
}

static void resp_free(http_resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static json_t *resp_json(const http_resp_t *r)
{
    ck_assert_str_eq(r->ctype, "application/json");
    json_error_t jerr;
    json_t *j = json_loads(r->body, 0, &jerr);
    ck_assert_msg(j != NULL, "not JSON (%s): %s", jerr.text, r->body);
    return j;
}

// The lane object of `endpoint` in GET `path` (/v1/lanes or /v1/breakers); NULL if absent.
static json_t *lane_of(const char *path, const char *endpoint)
{
    http_resp_t r = http("GET", path);
    ck_assert_int_eq(r.status, 200);
    json_t *j = resp_json(&r);
    resp_free(&r);
    json_t *lanes = json_object_get(j, "lanes");
    ck_assert(json_is_array(lanes));
    json_t *found = NULL, *lane;
    size_t i;
    json_array_foreach(lanes, i, lane)
    {
        if (strcmp(json_string_value(json_object_get(lane, "endpoint")), endpoint) == 0)
            found = json_incref(lane);
    }
    json_decref(j);
    return found;
}

static int lanes_count(void)
{
    http_resp_t r = http("GET", "/v1/lanes");
    json_t *j = resp_json(&r);
    resp_free(&r);
    int n = (int)json_array_size(json_object_get(j, "lanes"));
    json_decref(j);
    return n;
}

// ---- probes ----

START_TEST(test_healthz_answers_ok)
{
    http_resp_t r = http("GET", "/healthz");
    ck_assert_int_eq(r.status, 200);
    json_t *j = resp_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    resp_free(&r);

    r = http("HEAD", "/healthz");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.len, 0);
    resp_free(&r);
}
END_TEST

START_TEST(test_readyz_follows_set_ready)
{
    http_resp_t r = http("GET", "/readyz");
    ck_assert_int_eq(r.status, 503);
    json_t *j = resp_json(&r);
    ck_assert(json_is_false(json_object_get(j, "ready")));
    json_decref(j);
    resp_free(&r);

    hk_admin_set_ready(adm, 1);
    r = http("GET", "/readyz");
    ck_assert_int_eq(r.status, 200);
    j = resp_json(&r);
    ck_assert(json_is_true(json_object_get(j, "ready")));
    json_decref(j);
    resp_free(&r);

    hk_admin_set_ready(adm, 0);
    r = http("GET", "/readyz");
    ck_assert_int_eq(r.status, 503);
    resp_free(&r);
}
END_TEST

// Postgres is required once configured; Redis down only degrades.
static json_t *readyz(long want_status)
{
    http_resp_t r = http("GET", "/readyz");
    ck_assert_msg(r.status == want_status, "/readyz: %ld %s", r.status, r.body);
    json_t *j = resp_json(&r);
    resp_free(&r);
    return j;
}

static void set_stores(int pg_configured, int pg_up, int redis_configured, int redis_up)
{
    atomic_store(&hk_metrics.pg_configured, pg_configured);
    atomic_store(&hk_metrics.pg_up, pg_up);
    atomic_store(&hk_metrics.redis_configured, redis_configured);
    atomic_store(&hk_metrics.redis_up, redis_up);
}

START_TEST(test_readyz_needs_postgres_up_when_configured)
{
    hk_admin_set_ready(adm, 1);
    set_stores(0, 0, 0, 0);
    json_t *j = readyz(200);
    ck_assert(json_is_true(json_object_get(j, "assigned")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "postgres")), "not configured");
    ck_assert_str_eq(json_string_value(json_object_get(j, "redis")), "not configured");
    json_decref(j);

    set_stores(1, 0, 1, 1);
    j = readyz(503);
    ck_assert(json_is_false(json_object_get(j, "ready")));
    ck_assert(json_is_true(json_object_get(j, "assigned")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "postgres")), "down");
    ck_assert_str_eq(json_string_value(json_object_get(j, "redis")), "up");
    json_decref(j);

    set_stores(1, 1, 1, 1);
    j = readyz(200);
    ck_assert(json_is_true(json_object_get(j, "ready")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "postgres")), "up");
    json_decref(j);

    // Not assigned: unready whatever the stores say.
    hk_admin_set_ready(adm, 0);
    j = readyz(503);
    ck_assert(json_is_false(json_object_get(j, "assigned")));
    json_decref(j);
    set_stores(0, 0, 0, 0);
}
END_TEST

START_TEST(test_readyz_redis_down_is_degraded_not_unready)
{
    hk_admin_set_ready(adm, 1);
    set_stores(1, 1, 1, 0);
    json_t *j = readyz(200);
    ck_assert(json_is_true(json_object_get(j, "ready")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "redis")),
                     "down (degraded: local state)");
    json_decref(j);
    set_stores(0, 0, 0, 0);
}
END_TEST

// ---- batches ----

// A stand-in for the Postgres lookup: "b-1" exists, "pgdown" finds Postgres down,
// "broken" fails oddly, "queued" answers 202 with a body; anything else is 404.
static json_t *fake_batch(const char *id, const char *tenant, int *http_status, void *arg)
{
    ck_assert_ptr_eq(arg, &batch_calls);
    batch_calls++;
    if (strcmp(id, "b-1") == 0 || strcmp(id, "tenant:batch_2") == 0)
        return json_pack("{s:s,s:s,s:s,s:i,s:i,s:i}", "id", id, "tenant", tenant, "status",
                         "running", "total", 10, "succeeded", 4, "failed", 1);
    if (strcmp(id, "pgdown") == 0) {
        *http_status = 503;
        return NULL;
    }
    if (strcmp(id, "broken") == 0) {
        *http_status = 200; // NULL with a success status: still an error
        return NULL;
    }
    if (strcmp(id, "queued") == 0) {
        *http_status = 202;
        return json_pack("{s:s}", "status", "queued");
    }
    *http_status = 404;
    return NULL;
}

static json_t *get_batch(const char *path, long want_status)
{
    http_resp_t r = http("GET", path);
    ck_assert_msg(r.status == want_status, "%s: %ld %s", path, r.status, r.body);
    json_t *j = resp_json(&r);
    resp_free(&r);
    if (want_status >= 400)
        ck_assert_msg(json_is_string(json_object_get(j, "error")), "%s: no error", path);
    return j;
}

START_TEST(test_batch_without_lookup_is_503_naming_postgres)
{
    json_t *j = get_batch("/v1/batches/b-1", 503);
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")),
                     "batches need Postgres (postgres.url)");
    json_decref(j);
    http_resp_t r = http("POST", "/v1/batches/b-1");
    ck_assert_int_eq(r.status, 405);
    resp_free(&r);
}
END_TEST

START_TEST(test_batch_lookup_answers_found_missing_and_down)
{
    hk_admin_set_batch_fn(adm, fake_batch, &batch_calls);
    json_t *j = get_batch("/v1/batches/b-1", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "b-1");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "succeeded")), 4);
    json_decref(j);
    j = get_batch("/v1/batches/tenant%3Abatch_2", 200); // URL-encoded ':'
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "tenant:batch_2");
    json_decref(j);
    j = get_batch("/v1/batches/nope", 404);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(j, "error")), "nope"));
    json_decref(j);
    json_decref(get_batch("/v1/batches/pgdown", 503));
    json_decref(get_batch("/v1/batches/broken", 500));
    j = get_batch("/v1/batches/queued", 202);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "queued");
    json_decref(j);
    ck_assert_int_eq(batch_calls, 6);

    hk_admin_set_batch_fn(adm, NULL, NULL);
    json_decref(get_batch("/v1/batches/b-1", 503));
    ck_assert_int_eq(batch_calls, 6);
}
END_TEST

START_TEST(test_batch_id_is_validated_before_lookup)
{
    hk_admin_set_batch_fn(adm, fake_batch, &batch_calls);
    char long_id[300] = "/v1/batches/";
    memset(long_id + strlen(long_id), 'a', 256);
    const char *bad[] = {
        "/v1/batches/",     "/v1/batches/a%20b", "/v1/batches/a/b",    "/v1/batches/a%2Fb",
        "/v1/batches/%22x", "/v1/batches/a.b",   "/v1/batches/%C3%A9", long_id};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        json_decref(get_batch(bad[i], 400));
    ck_assert_int_eq(batch_calls, 0);
    long_id[strlen(long_id) - 1] = '\0'; // 255: the longest id allowed
    json_decref(get_batch(long_id, 404));
    ck_assert_int_eq(batch_calls, 1);
}
END_TEST

// A batch is (tenant, id): ?tenant= reaches the lookup, "default" without it,
// and a tenant the job contract would refuse is 400 before any lookup.
START_TEST(test_batch_lookup_takes_the_tenant_from_the_query)
{
    hk_admin_set_batch_fn(adm, fake_batch, &batch_calls);
    json_t *j = get_batch("/v1/batches/b-1", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "tenant")), "default");
    json_decref(j);
    j = get_batch("/v1/batches/b-1?tenant=a%3Ab", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "tenant")), "a:b");
    json_decref(j);
    char path[400] = "/v1/batches/b-1?tenant=";
    memset(path + strlen(path), 't', 128); // 128: the longest tenant
    j = get_batch(path, 200);
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "tenant"))), 128);
    json_decref(j);
    ck_assert_int_eq(batch_calls, 3);
    strcat(path, "t"); // 129
    const char *bad[] = {"/v1/batches/b-1?tenant=", "/v1/batches/b-1?tenant=a%20b",
                         "/v1/batches/b-1?tenant=%C3%A9", "/v1/batches/b-1?tenant=a%0Ab", path};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        json_decref(get_batch(bad[i], 400));
    ck_assert_int_eq(batch_calls, 3);
}
END_TEST

// ---- lanes and operator actions ----

START_TEST(test_lanes_list_an_endpoint_disabled_through_the_api)
{
    ck_assert_int_eq(lanes_count(), 0);
    ck_assert_int_eq(hk_dispatch_endpoint_disable(disp, "http://127.0.0.1:8080", 1), 0);
    const char *paths[] = {"/v1/lanes", "/v1/breakers"};
    for (int i = 0; i < 2; i++) {
        json_t *lane = lane_of(paths[i], "http://127.0.0.1:8080");
        ck_assert_msg(lane != NULL, "%s lacks the lane", paths[i]);
        ck_assert_str_eq(json_string_value(json_object_get(lane, "state")), "closed");
        ck_assert(json_is_true(json_object_get(lane, "disabled")));
        ck_assert(json_is_integer(json_object_get(lane, "limit")));
        json_decref(lane);
    }
}
END_TEST

static void assert_action(const char *method, const char *path, long want_status,
                          const char *want_endpoint, int want_disabled)
{
    http_resp_t r = http(method, path);
    ck_assert_msg(r.status == want_status, "%s %s: %ld %s", method, path, r.status, r.body);
    json_t *j = resp_json(&r);
    if (want_status == 200) {
        ck_assert_str_eq(json_string_value(json_object_get(j, "endpoint")), want_endpoint);
        if (want_disabled >= 0)
            ck_assert_int_eq(json_is_true(json_object_get(j, "disabled")), want_disabled);
    } else {
        ck_assert_msg(json_is_string(json_object_get(j, "error")), "no error in %s", r.body);
    }
    json_decref(j);
    resp_free(&r);
}

START_TEST(test_disable_then_enable_url_encoded_endpoint)
{
    assert_action("POST", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable", 200,
                  "http://127.0.0.1:8080", 1);
    json_t *lane = lane_of("/v1/lanes", "http://127.0.0.1:8080");
    ck_assert_ptr_nonnull(lane);
    ck_assert(json_is_true(json_object_get(lane, "disabled")));
    json_decref(lane);

    assert_action("POST", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/enable", 200,
                  "http://127.0.0.1:8080", 0);
    lane = lane_of("/v1/lanes", "http://127.0.0.1:8080");
    ck_assert(json_is_false(json_object_get(lane, "disabled")));
    json_decref(lane);
}
END_TEST

START_TEST(test_disable_then_enable_literal_endpoint)
{
    assert_action("POST", "/v1/endpoints/http://127.0.0.1:8080/disable", 200,
                  "http://127.0.0.1:8080", 1);
    assert_action("POST", "/v1/endpoints/http://127.0.0.1:8080/enable", 200,
                  "http://127.0.0.1:8080", 0);
    ck_assert_int_eq(lanes_count(), 1);
}
END_TEST

// A URL with a path names that URL alone, under its endpoint's lane (upper case,
// default port, path and query reduce to one endpoint key); the bare endpoint
// names the whole lane, and enabling it enables every URL under it.
START_TEST(test_url_with_path_targets_that_url_under_its_endpoint)
{
    assert_action("POST", "/v1/endpoints/HTTPS%3A%2F%2FExample.COM%2Fhooks%2Fin%3Fa%3D1/disable",
                  200, "https://example.com:443", 1);
    json_t *lane = lane_of("/v1/lanes", "https://example.com:443");
    ck_assert_ptr_nonnull(lane);
    ck_assert(json_is_false(json_object_get(lane, "disabled"))); // the lane itself is not
    ck_assert_int_eq(json_array_size(json_object_get(lane, "disabled_urls")), 1);
    json_decref(lane);
    // Another URL of the same endpoint was never disabled: nothing to enable.
    assert_action("POST", "/v1/endpoints/https://example.com/other/enable", 404, NULL, -1);
    assert_action("POST", "/v1/endpoints/https%3A%2F%2Fexample.com%3A443/enable", 200,
                  "https://example.com:443", 0);
    lane = lane_of("/v1/lanes", "https://example.com:443");
    ck_assert_int_eq(json_array_size(json_object_get(lane, "disabled_urls")), 0);
    json_decref(lane);
    assert_action("POST", "/v1/endpoints/https%3A%2F%2F%5B%3A%3A1%5D%3A9000%2Fx/disable", 200,
                  "https://[::1]:9000", 1);
    ck_assert_int_eq(lanes_count(), 2);
}
END_TEST

START_TEST(test_enable_unknown_endpoint_is_404)
{
    assert_action("POST", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A9999/enable", 404, NULL, -1);
    ck_assert_int_eq(lanes_count(), 0); // enable does not create a lane
}
END_TEST

START_TEST(test_malformed_endpoint_is_400_and_creates_nothing)
{
    const char *bad[] = {
        "/v1/endpoints/not-a-url/disable",
        "/v1/endpoints//disable",
        "/v1/endpoints/localhost%3A8080/disable",
        "/v1/endpoints/ftp%3A%2F%2Fexample.com%3A21/disable",
        "/v1/endpoints/http%3A%2F%2F/disable",
        "/v1/endpoints/http%3A%2F%2Fa%20b%3A80/disable",
        "/v1/endpoints/%FF%FE/disable",
        "/v1/breakers/garbage/reset",
        "/v1/endpoints/not-a-url/enable",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_action("POST", bad[i], 400, NULL, -1);
    ck_assert_int_eq(lanes_count(), 0);
}
END_TEST

START_TEST(test_breaker_reset_known_and_unknown)
{
    assert_action("POST", "/v1/breakers/http%3A%2F%2F127.0.0.1%3A8080/reset", 404, NULL, -1);
    ck_assert_int_eq(hk_dispatch_endpoint_disable(disp, "http://127.0.0.1:8080", 1), 0);
    assert_action("POST", "/v1/breakers/http%3A%2F%2F127.0.0.1%3A8080/reset", 200,
                  "http://127.0.0.1:8080", -1);
    assert_action("POST", "/v1/breakers/http://127.0.0.1:8080/path/reset", 200,
                  "http://127.0.0.1:8080", -1);
}
END_TEST

static void noop_wake(void *arg)
{
    (void)arg;
}

// Five 503s in a row on http://127.0.0.1:9 open its breaker (consecutive_failures = 5).
static void trip_breaker(void)
{
    int slot = hk_dispatch_register(disp, noop_wake, NULL);
    const char *value = "{\"url\":\"http://127.0.0.1:9/hook\",\"body\":{}}";
    hk_job_defaults_t defs = {.max_attempts = 10, .timeout_ms = 1000, .max_job_bytes = 1 << 20};
    for (int i = 0; i < 5; i++) {
        hk_task_t *task = hk_task_new("jobs", 0, i, 1, NULL, 0, value, strlen(value));
        ck_assert_ptr_nonnull(task);
        hk_job_src_t src = {.topic = "jobs", .partition = 0, .offset = i};
        char err[256];
        hk_job_t *job = hk_job_parse(value, strlen(value), &src, &defs, err, sizeof(err));
        ck_assert_msg(job != NULL, "%s", err);
        hk_task_set_job(task, job);
        hk_dispatch_submit(disp, task);
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    hk_task_t *taken[8];
    int64_t next_due;
    size_t n = hk_dispatch_take(disp, slot, taken, 8, now, &next_due);
    ck_assert_uint_eq(n, 5);
    for (size_t i = 0; i < n; i++) {
        hk_task_fail(taken[i], HK_OUTCOME_RETRYABLE, 503, "HTTP 503");
        hk_dispatch_finish(disp, taken[i], now);
        hk_task_destroy(taken[i]);
    }
}

START_TEST(test_reset_closes_an_open_breaker)
{
    trip_breaker();
    json_t *lane = lane_of("/v1/breakers", "http://127.0.0.1:9");
    ck_assert_ptr_nonnull(lane);
    ck_assert_str_eq(json_string_value(json_object_get(lane, "state")), "open");
    json_decref(lane);

    assert_action("POST", "/v1/breakers/http%3A%2F%2F127.0.0.1%3A9/reset", 200,
                  "http://127.0.0.1:9", -1);
    lane = lane_of("/v1/breakers", "http://127.0.0.1:9");
    ck_assert_str_eq(json_string_value(json_object_get(lane, "state")), "closed");
    json_decref(lane);
}
END_TEST

// Runs `fn` with fd 2 sent to a file; returns what was written there.
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/check_admin_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)len + 1);
    ck_assert_int_eq(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    return text;
}

static void disable_once(void)
{
    assert_action("POST", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable", 200,
                  "http://127.0.0.1:8080", 1);
}

START_TEST(test_state_changing_post_logs_admin_action)
{
    char *text = capture_stderr(disable_once);
    const char *line = strstr(text, "\"event\":\"admin_action\"");
    ck_assert_msg(line != NULL, "no admin_action line in: %s", text);
    const char *eol = strchr(line, '\n');
    ck_assert_ptr_nonnull(eol);
    char *copy = strndup(line, (size_t)(eol - line));
    ck_assert_ptr_nonnull(strstr(copy, "\"action\":\"disable\""));
    ck_assert_ptr_nonnull(strstr(copy, "\"endpoint\":\"http://127.0.0.1:8080\""));
    ck_assert_ptr_nonnull(strstr(copy, "\"peer\":\"127.0.0.1\""));
    free(copy);
    free(text);
}
END_TEST

// ---- /metrics ----

typedef struct family {
    char name[128];
    char type[16];
    int help, samples, closed;
} family_t;

typedef struct exposition {
    family_t fam[64];
    int cnt;
} exposition_t;

static family_t *family_get(exposition_t *e, const char *name)
{
    for (int i = 0; i < e->cnt; i++)
        if (strcmp(e->fam[i].name, name) == 0)
            return &e->fam[i];
    ck_assert_int_lt(e->cnt, 64);
    family_t *f = &e->fam[e->cnt++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

static int is_name_char(int c, int first)
{
    return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

// Checks text format 0.0.4 line by line: HELP and TYPE before a family's samples,
// a family's samples together, `name{label="value",...} value` with only \\ \" \n
// escapes in label values, and a number as value.
static void parse_exposition(const char *text, exposition_t *e)
{
    memset(e, 0, sizeof(*e));
    size_t tlen = strlen(text);
    ck_assert_msg(tlen > 0 && text[tlen - 1] == '\n', "exposition must end with a newline");
    family_t *current = NULL;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        char *line = strndup(p, (size_t)(eol - p));
        p = eol + 1;
        char name[128];
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            const char *sp = strchr(line + 7, ' ');
            ck_assert_msg(sp != NULL, "bad comment: %s", line);
            snprintf(name, sizeof(name), "%.*s", (int)(sp - line - 7), line + 7);
            family_t *f = family_get(e, name);
            ck_assert_msg(f->samples == 0, "%s: HELP/TYPE after samples", name);
            if (line[2] == 'H') {
                ck_assert_msg(!f->help, "%s: two HELP lines", name);
                f->help = 1;
            } else {
                ck_assert_msg(f->type[0] == '\0', "%s: two TYPE lines", name);
                ck_assert_msg(strcmp(sp + 1, "counter") == 0 || strcmp(sp + 1, "gauge") == 0 ||
                                  strcmp(sp + 1, "histogram") == 0,
                              "%s: type %s", name, sp + 1);
                snprintf(f->type, sizeof(f->type), "%s", sp + 1);
            }
            free(line);
            continue;
        }
        ck_assert_msg(line[0] != '#' && line[0] != '\0', "unexpected line: \"%s\"", line);
        const char *q = line;
        ck_assert_msg(is_name_char((unsigned char)*q, 1), "bad name: %s", line);
        while (is_name_char((unsigned char)*q, 0))
            q++;
        snprintf(name, sizeof(name), "%.*s", (int)(q - line), line);
        if (*q == '{') {
            q++;
            while (*q != '}') {
                ck_assert_msg(is_name_char((unsigned char)*q, 1), "bad label name: %s", line);
                while (is_name_char((unsigned char)*q, 0))
                    q++;
                ck_assert_msg(q[0] == '=' && q[1] == '"', "bad label: %s", line);
                q += 2;
                while (*q != '"') {
                    ck_assert_msg(*q != '\0', "unterminated label value: %s", line);
                    if (*q == '\\') {
                        ck_assert_msg(q[1] == '\\' || q[1] == '"' || q[1] == 'n', "bad escape: %s",
                                      line);
                        q++;
                    }
                    q++;
                }
                q++;
                if (*q == ',')
                    q++;
                else
                    ck_assert_msg(*q == '}', "bad label list: %s", line);
            }
            q++;
        }
        ck_assert_msg(*q == ' ', "no space before the value: %s", line);
        char *end;
        strtod(q + 1, &end);
        ck_assert_msg(end != q + 1 && *end == '\0', "bad value: %s", line);

        // A histogram's samples are <name>_bucket, <name>_sum and <name>_count.
        static const char *const hsuffix[] = {"_bucket", "_sum", "_count"};
        for (size_t k = 0; k < 3; k++) {
            size_t nl = strlen(name), sl = strlen(hsuffix[k]);
            if (nl > sl && strcmp(name + nl - sl, hsuffix[k]) == 0) {
                char base[128];
                snprintf(base, sizeof(base), "%.*s", (int)(nl - sl), name);
                for (int i = 0; i < e->cnt; i++)
                    if (strcmp(e->fam[i].name, base) == 0 &&
                        strcmp(e->fam[i].type, "histogram") == 0)
                        snprintf(name, sizeof(name), "%s", base);
            }
        }
        family_t *f = family_get(e, name);
        ck_assert_msg(f->help && f->type[0], "%s: sample before HELP and TYPE", name);
        ck_assert_msg(!f->closed, "%s: samples not together", name);
        if (current && current != f)
            current->closed = 1;
        current = f;
        f->samples++;
        free(line);
    }
}

static http_resp_t get_metrics(void)
{
    http_resp_t r = http("GET", "/metrics");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.ctype, "text/plain; version=0.0.4");
    return r;
}

START_TEST(test_metrics_has_help_and_type_for_every_family)
{
    trip_breaker();
    ck_assert_int_eq(hk_dispatch_endpoint_disable(disp, "http://127.0.0.1:8080", 1), 0);
    hk_metric_add(consumed, 3);
    http_resp_t r = get_metrics();
    exposition_t e;
    parse_exposition(r.body, &e);

    static const struct {
        const char *name, *type;
        int min_samples;
    } want[] = {
        {"hookd_jobs_consumed_total", "counter", 1},
        {"hookd_delivery_attempts_total", "counter", 1},
        {"hookd_deliveries_total", "counter", 5},
        {"hookd_delivery_duration_seconds", "histogram", HK_LATENCY_BUCKETS + 3},
        {"hookd_postgres_up", "gauge", 1},
        {"hookd_redis_up", "gauge", 1},
        {"hookd_build_info", "gauge", 1},
        {"hookd_jobs_delivered_total", "counter", 1},
        {"hookd_jobs_dead_lettered_total", "counter", HK_OUTCOME__CNT - 1},
        {"hookd_retries_total", "counter", 2},
        {"hookd_deferred_open_breaker_total", "counter", 1},
        {"hookd_offset_commits_total", "counter", 1},
        {"hookd_inflight_jobs", "gauge", 1},
        {"hookd_inflight_bytes", "gauge", 1},
        {"hookd_intake_paused", "gauge", 1},
        {"hookd_breaker_state", "gauge", 2},
        {"hookd_breaker_open", "gauge", 2},
        {"hookd_breaker_trips_total", "counter", 2},
        {"hookd_lane_inflight", "gauge", 2},
        {"hookd_lane_limit", "gauge", 2},
        {"hookd_lane_queued", "gauge", 2},
        {"hookd_endpoint_disabled", "gauge", 2},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        family_t *f = family_get(&e, want[i].name);
        ck_assert_msg(f->help, "%s: no HELP", want[i].name);
        ck_assert_msg(strcmp(f->type, want[i].type) == 0, "%s: TYPE %s", want[i].name, f->type);
        ck_assert_msg(f->samples >= want[i].min_samples, "%s: %d samples", want[i].name,
                      f->samples);
    }
    for (int i = 0; i < e.cnt; i++)
        ck_assert_msg(e.fam[i].help && e.fam[i].type[0], "%s: no HELP or TYPE", e.fam[i].name);

    ck_assert_ptr_nonnull(
        strstr(r.body, "\nhookd_breaker_state{endpoint=\"http://127.0.0.1:9\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "\nhookd_breaker_open{endpoint=\"http://127.0.0.1:9\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "\nhookd_breaker_trips_total{endpoint=\"http://127.0.0.1:9\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "\nhookd_breaker_state{endpoint=\"http://127.0.0.1:8080\"} 0\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "\nhookd_endpoint_disabled{endpoint=\"http://127.0.0.1:8080\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "\nhookd_endpoint_disabled{endpoint=\"http://127.0.0.1:9\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "\nhookd_jobs_dead_lettered_total{class=\"gone\"} "));
    ck_assert_ptr_nonnull(strstr(r.body, "\nhookd_retries_total{via=\"memory\"} "));
    ck_assert_ptr_nonnull(strstr(r.body, "\nhookd_retries_total{via=\"topic\"} "));
    char want_consumed[64];
    snprintf(want_consumed, sizeof(want_consumed), "\nhookd_jobs_consumed_total %llu\n",
             (unsigned long long)hk_metric_get(consumed));
    ck_assert_ptr_nonnull(strstr(r.body, want_consumed));
    resp_free(&r);
}
END_TEST

START_TEST(test_metrics_without_lanes_still_declares_lane_families)
{
    http_resp_t r = get_metrics();
    exposition_t e;
    parse_exposition(r.body, &e);
    family_t *f = family_get(&e, "hookd_lane_limit");
    ck_assert(f->help && strcmp(f->type, "gauge") == 0 && f->samples == 0);
    resp_free(&r);
}
END_TEST

START_TEST(test_metrics_lane_keys_cannot_carry_quotes)
{
    // Lane keys come from curl's URL parser, so quotes and backslashes cannot reach
    // them; the escaping itself is tested in check_metrics.
    ck_assert_int_eq(hk_dispatch_endpoint_disable(disp, "http://a\"b\\c\nd:80", 1), -1);
    ck_assert_int_eq(lanes_count(), 0);
}
END_TEST

// ---- routing and auth ----

START_TEST(test_unknown_path_is_404)
{
    const char *paths[] = {"/",
                           "/nope",
                           "/v1/endpoints/http%3A%2F%2Fa%3A80",
                           "/v1/endpoints/http%3A%2F%2Fa%3A80/frobnicate",
                           "/v1/lanes/extra",
                           "/metrics/",
                           "/v1/batches",
                           "/v1/batch/1"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        http_resp_t r = http("GET", paths[i]);
        ck_assert_msg(r.status == 404, "%s: %ld", paths[i], r.status);
        json_decref(resp_json(&r));
        resp_free(&r);
    }
}
END_TEST

START_TEST(test_wrong_method_is_405_with_allow)
{
    http_resp_t r = http("POST", "/healthz");
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "GET, HEAD");
    resp_free(&r);

    r = http("DELETE", "/metrics");
    ck_assert_int_eq(r.status, 405);
    resp_free(&r);

    r = http("GET", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable");
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "POST");
    resp_free(&r);

    r = http("PUT", "/v1/breakers/http%3A%2F%2F127.0.0.1%3A8080/reset");
    ck_assert_int_eq(r.status, 405);
    resp_free(&r);
    ck_assert_int_eq(lanes_count(), 0);
}
END_TEST

START_TEST(test_token_is_required_except_for_healthz)
{
    char err[256] = "";
    hk_admin_t *sec = hk_admin_start("127.0.0.1:0", "s3cret-token", disp, err, sizeof(err));
    ck_assert_msg(sec != NULL, "%s", err);
    int port = hk_admin_port(sec);
    hk_admin_set_ready(sec, 1);

    http_resp_t r = http_on(port, "GET", "/healthz", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);

    const char *guarded[] = {"/readyz", "/metrics", "/v1/lanes", "/v1/breakers", "/nope"};
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++) {
        r = http_on(port, "GET", guarded[i], NULL);
        ck_assert_msg(r.status == 401, "%s without token: %ld", guarded[i], r.status);
        resp_free(&r);
        r = http_on(port, "GET", guarded[i], "Authorization: Bearer s3cret-tokeX");
        ck_assert_msg(r.status == 401, "%s with a wrong token: %ld", guarded[i], r.status);
        resp_free(&r);
        r = http_on(port, "GET", guarded[i], "Authorization: Bearer s3cret");
        ck_assert_msg(r.status == 401, "%s with a prefix of the token: %ld", guarded[i], r.status);
        resp_free(&r);
        r = http_on(port, "GET", guarded[i], "Authorization: Basic czNjcmV0LXRva2Vu");
        ck_assert_int_eq(r.status, 401);
        resp_free(&r);
        r = http_on(port, "GET", guarded[i], "Authorization: Bearer s3cret-token");
        ck_assert_msg(r.status == (strcmp(guarded[i], "/nope") == 0 ? 404 : 200),
                      "%s with the token: %ld", guarded[i], r.status);
        resp_free(&r);
    }

    r = http_on(port, "POST", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable", NULL);
    ck_assert_int_eq(r.status, 401);
    resp_free(&r);
    ck_assert_int_eq(lanes_count(), 0); // refused before acting
    r = http_on(port, "POST", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable",
                "authorization: bearer s3cret-token");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    hk_admin_stop(sec);
}
END_TEST

START_TEST(test_non_loopback_without_token_is_refused)
{
    const char *open[] = {"0.0.0.0:9464", "0.0.0.0:0", "[::]:0"};
    for (size_t i = 0; i < sizeof(open) / sizeof(open[0]); i++) {
        char err[256] = "";
        ck_assert_ptr_null(hk_admin_start(open[i], NULL, disp, err, sizeof(err)));
        char want[128];
        snprintf(want, sizeof(want), "admin.listen %s is not loopback: set admin.token", open[i]);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_null(hk_admin_start(open[i], "", disp, err, sizeof(err)));
    }
    char err[256] = "";
    hk_admin_t *a = hk_admin_start("0.0.0.0:0", "tok", disp, err, sizeof(err));
    ck_assert_msg(a != NULL, "with a token: %s", err);
    hk_admin_stop(a);
    a = hk_admin_start("localhost:0", NULL, disp, err, sizeof(err));
    ck_assert_msg(a != NULL, "localhost: %s", err);
    hk_admin_stop(a);
}
END_TEST

// On 0.0.0.0 (as in a container) a token is mandatory, and it is enforced on
// every route but /healthz, new ones included.
START_TEST(test_non_loopback_listener_enforces_its_token)
{
    char err[256] = "";
    hk_admin_t *a = hk_admin_start("0.0.0.0:0", "container-token", disp, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    hk_admin_set_ready(a, 1);
    hk_admin_set_batch_fn(a, fake_batch, &batch_calls);
    int port = hk_admin_port(a);
    http_resp_t r = http_on(port, "GET", "/healthz", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    const char *guarded[] = {"/readyz", "/metrics", "/v1/breakers", "/v1/batches/b-1",
                             "/v1/batches/bad%20id"};
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++) {
        r = http_on(port, "GET", guarded[i], NULL);
        ck_assert_msg(r.status == 401, "%s without the token: %ld", guarded[i], r.status);
        resp_free(&r);
    }
    ck_assert_int_eq(batch_calls, 0); // refused before the lookup
    r = http_on(port, "GET", "/v1/batches/b-1", "Authorization: Bearer container-token");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    r = http_on(port, "GET", "/metrics", "Authorization: Bearer container-token");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    ck_assert_int_eq(batch_calls, 1);
    hk_admin_stop(a);
}
END_TEST

START_TEST(test_bad_listen_address_is_refused)
{
    const char *bad[] = {"nonsense", "127.0.0.1", "127.0.0.1:",     ":9464", "127.0.0.1:70000",
                         "::1:9464", "[::1]",     "127.0.0.1:94x4", "[]:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        ck_assert_msg(hk_admin_start(bad[i], NULL, disp, err, sizeof(err)) == NULL, "%s", bad[i]);
        ck_assert_msg(strstr(err, "must be host:port") != NULL, "%s: %s", bad[i], err);
    }
    // The port is taken by the fixture's server.
    char listen[64], err[256] = "";
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", hk_admin_port(adm));
    ck_assert_ptr_null(hk_admin_start(listen, NULL, disp, err, sizeof(err)));
    ck_assert_msg(strstr(err, "cannot start the admin server") != NULL, "%s", err);
}
END_TEST

START_TEST(test_ipv6_loopback_listens)
{
    char err[256] = "";
    hk_admin_t *a = hk_admin_start("[::1]:0", NULL, disp, err, sizeof(err));
    if (!a) {
        // No IPv6 in this environment: the failure must still be explained.
        ck_assert_msg(strstr(err, "cannot start the admin server") != NULL, "%s", err);
        return;
    }
    char url[64];
    snprintf(url, sizeof(url), "http://[::1]:%d/healthz", hk_admin_port(a));
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    ck_assert_int_eq(status, 200);
    curl_easy_cleanup(c);
    hk_admin_stop(a);
}
END_TEST

// ---- hostile clients ----

// A TCP connection to the admin port from `src` (any 127.0.0.0/8 address on
// Linux), nonblocking once connected; -1 when it could not connect.
static int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    ck_assert_int_eq(inet_pton(AF_INET, src, &a.sin_addr), 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void send_str(int fd, const char *text)
{
    ssize_t w = send(fd, text, strlen(text), MSG_NOSIGNAL);
    (void)w; // a closed socket shows up in peer_closed()
}

// Whether the server closed `fd` (EOF or reset). Nonblocking.
static int peer_closed(int fd)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// A slowloris socket from `src`: a request line and one header, never finished.
static int slow_open(const char *src, int port)
{
    int fd = connect_from(src, port);
    if (fd >= 0)
        send_str(fd, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    return fd;
}

// GET /healthz as a probe does it: the status (0: no answer within 5 s) and how
// long it took.
static long probe_healthz(int port, int64_t *took_ms)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    int64_t t0 = hk_clock_mono_ms();
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    *took_ms = hk_clock_mono_ms() - t0;
    curl_easy_cleanup(c);
    return status;
}

#define SLOW_SOCKETS 100

// 100 slow clients from 100 addresses, each sending one header line every 2 s and
// reconnecting when cut: /healthz answers within 1 s on every probe, for longer
// than the request deadline (so through the cuts and reconnects too).
START_TEST(test_healthz_answers_under_a_slowloris)
{
    int port = hk_admin_port(adm);
    int fds[SLOW_SOCKETS];
    char src[SLOW_SOCKETS][32];
    for (int i = 0; i < SLOW_SOCKETS; i++) {
        snprintf(src[i], sizeof(src[i]), "127.0.%d.%d", 1 + i / 200, 2 + i % 200);
        fds[i] = slow_open(src[i], port);
    }
    int probes = 0, failed = 0, reopened = 0;
    int64_t worst = 0, start = hk_clock_mono_ms(), next_trickle = start + 2000;
    while (hk_clock_mono_ms() - start < 14000) {
        int64_t took;
        long status = probe_healthz(port, &took);
        probes++;
        if (status != 200 || took >= 1000)
            failed++;
        if (took > worst)
            worst = took;
        int64_t now = hk_clock_mono_ms();
        for (int i = 0; i < SLOW_SOCKETS; i++) {
            if (fds[i] < 0 || peer_closed(fds[i])) {
                if (fds[i] >= 0)
                    close(fds[i]);
                fds[i] = slow_open(src[i], port);
                reopened++;
            } else if (now >= next_trickle) {
                send_str(fds[i], "X-Slow: 1\r\n");
            }
        }
        if (now >= next_trickle)
            next_trickle = now + 2000;
        hk_clock_sleep_ms(200);
    }
    int open_at_end = 0;
    for (int i = 0; i < SLOW_SOCKETS; i++) {
        open_at_end += fds[i] >= 0 && !peer_closed(fds[i]);
        if (fds[i] >= 0)
            close(fds[i]);
    }
    printf("slowloris: %d slow sockets, %d probes, %d failed or >= 1 s, worst %lld ms, %d "
           "reconnects, %d open at the end\n",
           SLOW_SOCKETS, probes, failed, (long long)worst, reopened, open_at_end);
    fflush(stdout);
    ck_assert_msg(failed == 0,
                  "%d of %d /healthz probes failed or took 1 s or more (worst %lld ms)", failed,
                  probes, (long long)worst);
    ck_assert_int_ge(probes, 10);
}
END_TEST

// One address holds at most 8 connections; the rest are closed at once, and
// everyone else is still served.
START_TEST(test_one_address_holds_at_most_eight_connections)
{
    int port = hk_admin_port(adm);
    enum { N = 20 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = slow_open("127.0.3.7", port);
    int closed = 0;
    for (int tries = 0; tries < 40; tries++) {
        hk_clock_sleep_ms(100);
        closed = 0;
        for (int i = 0; i < N; i++)
            closed += fds[i] < 0 || peer_closed(fds[i]);
        if (closed >= N - 8)
            break;
    }
    int64_t took;
    ck_assert_int_eq(probe_healthz(port, &took), 200);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    ck_assert_int_eq(closed, N - 8);
}
END_TEST

// A client that keeps sending a header line every 500 ms never goes idle; the
// absolute deadline (10 s from accept) cuts it anyway.
START_TEST(test_trickling_request_is_cut_at_the_deadline)
{
    int port = hk_admin_port(adm);
    int64_t t0 = hk_clock_mono_ms();
    int fd = slow_open("127.0.0.1", port);
    ck_assert_int_ge(fd, 0);
    int64_t cut = -1;
    while (hk_clock_mono_ms() - t0 < 30000) {
        hk_clock_sleep_ms(100);
        if (peer_closed(fd)) {
            cut = hk_clock_mono_ms() - t0;
            break;
        }
        if ((hk_clock_mono_ms() - t0) % 500 < 100)
            send_str(fd, "X-Trickle: 1\r\n");
    }
    close(fd);
    printf("trickling client cut after %lld ms\n", (long long)cut);
    fflush(stdout);
    ck_assert_msg(cut >= 0, "still open after 30 s");
    ck_assert_int_ge(cut, 9900);
}
END_TEST

// Sends `request` on a new connection and returns the first line of the answer
// ("" when none came within 3 s). No body is sent, whatever the request announces.
static void raw_request(int port, const char *request, char *line, size_t size)
{
    int fd = connect_from("127.0.0.1", port);
    ck_assert_int_ge(fd, 0);
    send_str(fd, request);
    line[0] = '\0';
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t got = 0;
    int64_t t0 = hk_clock_mono_ms();
    while (got + 1 < size && hk_clock_mono_ms() - t0 < 3000) {
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, line + got, size - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        line[got] = '\0';
        if (strstr(line, "\r\n"))
            break;
    }
    close(fd);
    line[strcspn(line, "\r\n")] = '\0';
}

// 401 (and 421) are answered from the headers: a client announcing a 100 MB body
// and sending none still gets its answer.
START_TEST(test_refusals_come_before_any_body_is_read)
{
    char err[256] = "";
    hk_admin_t *sec = hk_admin_start("127.0.0.1:0", "s3cret-token-0123", disp, err, sizeof(err));
    ck_assert_msg(sec != NULL, "%s", err);
    char req[512], line[256];
    snprintf(req, sizeof(req),
             "POST /v1/endpoints/http%%3A%%2F%%2F127.0.0.1%%3A8080/disable HTTP/1.1\r\n"
             "Host: 127.0.0.1:%d\r\nContent-Length: 100000000\r\n\r\n",
             hk_admin_port(sec));
    raw_request(hk_admin_port(sec), req, line, sizeof(line));
    hk_admin_stop(sec);
    ck_assert_str_eq(line, "HTTP/1.1 401 Unauthorized");

    snprintf(req, sizeof(req),
             "POST /v1/endpoints/http%%3A%%2F%%2F127.0.0.1%%3A8080/disable HTTP/1.1\r\n"
             "Host: rebound.example:%d\r\nContent-Length: 100000000\r\n\r\n",
             hk_admin_port(adm));
    raw_request(hk_admin_port(adm), req, line, sizeof(line));
    ck_assert_str_eq(line, "HTTP/1.1 421 Misdirected Request");
    ck_assert_int_eq(lanes_count(), 0); // nothing acted on
}
END_TEST

static long status_with_header(int port, const char *method, const char *path, const char *header)
{
    http_resp_t r = http_on(port, method, path, header);
    long status = r.status;
    resp_free(&r);
    return status;
}

// Without a token, only loopback names with our port are served (DNS rebinding),
// and a browser's cross-site request is refused (a form POST from a web page).
START_TEST(test_without_token_host_and_origin_must_be_loopback)
{
    int port = hk_admin_port(adm);
    static const struct {
        const char *host; // "P" stands for our port
        long want;
    } hosts[] = {
        {"127.0.0.1:P", 200},       {"localhost:P", 200},  {"LocalHost:P", 200},
        {"127.9.8.7:P", 200},       {"[::1]:P", 200},      {"[::ffff:127.0.0.1]:P", 200},
        {"rebound.example:P", 421}, {"localhost.:P", 421}, {"127.0.0.1.nip.io:P", 421},
        {"0x7f.0.0.1:P", 421},      {"10.0.0.1:P", 421},   {"[::2]:P", 421},
        {"localhost", 421},         {"localhost:Px", 421}, {"[::1]x:P", 421},
    };
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        const char *p = strchr(hosts[i].host, 'P');
        char h[128];
        if (p)
            snprintf(h, sizeof(h), "Host: %.*s%d%s", (int)(p - hosts[i].host), hosts[i].host, port,
                     p + 1);
        else
            snprintf(h, sizeof(h), "Host: %s", hosts[i].host);
        ck_assert_msg(status_with_header(port, "GET", "/v1/lanes", h) == hosts[i].want, "%s", h);
    }
    char h[128];
    snprintf(h, sizeof(h), "Host: localhost:%d", port + 1);
    ck_assert_int_eq(status_with_header(port, "GET", "/healthz", h), 421);

    ck_assert_int_eq(status_with_header(port, "POST",
                                        "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable",
                                        "Origin: http://attacker.example"),
                     403);
    ck_assert_int_eq(status_with_header(port, "POST",
                                        "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable",
                                        "Origin: null"),
                     403);
    ck_assert_int_eq(status_with_header(port, "POST",
                                        "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable",
                                        "Sec-Fetch-Site: cross-site"),
                     403);
    ck_assert_int_eq(lanes_count(), 0);
    snprintf(h, sizeof(h), "Origin: http://localhost:%d", port);
    ck_assert_int_eq(
        status_with_header(port, "POST", "/v1/endpoints/http%3A%2F%2F127.0.0.1%3A8080/disable", h),
        200);

    // With a token the token decides, whatever the Host says.
    char err[256] = "";
    hk_admin_t *sec = hk_admin_start("127.0.0.1:0", "s3cret-token-0123", disp, err, sizeof(err));
    ck_assert_msg(sec != NULL, "%s", err);
    int sport = hk_admin_port(sec);
    http_resp_t r = http_on(sport, "GET", "/healthz", "Host: anything.example");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    hk_admin_stop(sec);
}
END_TEST

// Paths and queries of disabled URLs can carry receivers' tokens: /v1/lanes shows
// scheme://host:port/... unless log.full_urls is on.
START_TEST(test_lanes_hide_url_paths_unless_full_urls)
{
    ck_assert_int_eq(
        hk_dispatch_endpoint_disable(disp, "https://example.com/hooks/tok-SECRET?sig=abc", 1), 0);
    http_resp_t r = http("GET", "/v1/lanes");
    ck_assert_msg(strstr(r.body, "SECRET") == NULL && strstr(r.body, "sig=") == NULL, "%s", r.body);
    resp_free(&r);
    json_t *lane = lane_of("/v1/lanes", "https://example.com:443");
    ck_assert_ptr_nonnull(lane);
    json_t *urls = json_object_get(lane, "disabled_urls");
    ck_assert_int_eq(json_array_size(urls), 1);
    const char *shown = json_string_value(json_array_get(urls, 0));
    ck_assert_msg(strncmp(shown, "https://example.com", 19) == 0 && strstr(shown, "/...") != NULL,
                  "%s", shown);
    json_decref(lane);

    hk_log_set_full_urls(1);
    r = http("GET", "/v1/lanes");
    hk_log_set_full_urls(0);
    ck_assert_msg(strstr(r.body, "tok-SECRET") != NULL, "%s", r.body);
    resp_free(&r);
}
END_TEST

START_TEST(test_stop_null_is_a_noop)
{
    hk_admin_stop(NULL);
    hk_admin_set_ready(NULL, 1); // hookd with admin.listen = "" calls it at shutdown
    hk_admin_set_batch_fn(NULL, NULL, NULL);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->curl = true;
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("probes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_healthz_answers_ok);
    tcase_add_test(tc, test_readyz_follows_set_ready);
    tcase_add_test(tc, test_readyz_needs_postgres_up_when_configured);
    tcase_add_test(tc, test_readyz_redis_down_is_degraded_not_unready);
    suite_add_tcase(s, tc);

    tc = tcase_create("batches");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_batch_without_lookup_is_503_naming_postgres);
    tcase_add_test(tc, test_batch_lookup_answers_found_missing_and_down);
    tcase_add_test(tc, test_batch_id_is_validated_before_lookup);
    tcase_add_test(tc, test_batch_lookup_takes_the_tenant_from_the_query);
    suite_add_tcase(s, tc);

    tc = tcase_create("actions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_lanes_list_an_endpoint_disabled_through_the_api);
    tcase_add_test(tc, test_disable_then_enable_url_encoded_endpoint);
    tcase_add_test(tc, test_disable_then_enable_literal_endpoint);
    tcase_add_test(tc, test_url_with_path_targets_that_url_under_its_endpoint);
    tcase_add_test(tc, test_enable_unknown_endpoint_is_404);
    tcase_add_test(tc, test_malformed_endpoint_is_400_and_creates_nothing);
    tcase_add_test(tc, test_breaker_reset_known_and_unknown);
    tcase_add_test(tc, test_reset_closes_an_open_breaker);
    tcase_add_test(tc, test_state_changing_post_logs_admin_action);
    suite_add_tcase(s, tc);

    tc = tcase_create("metrics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_metrics_has_help_and_type_for_every_family);
    tcase_add_test(tc, test_metrics_without_lanes_still_declares_lane_families);
    tcase_add_test(tc, test_metrics_lane_keys_cannot_carry_quotes);
    suite_add_tcase(s, tc);

    tc = tcase_create("routing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_unknown_path_is_404);
    tcase_add_test(tc, test_wrong_method_is_405_with_allow);
    tcase_add_test(tc, test_token_is_required_except_for_healthz);
    tcase_add_test(tc, test_non_loopback_without_token_is_refused);
    tcase_add_test(tc, test_non_loopback_listener_enforces_its_token);
    tcase_add_test(tc, test_bad_listen_address_is_refused);
    tcase_add_test(tc, test_ipv6_loopback_listens);
    tcase_add_test(tc, test_stop_null_is_a_noop);
    tcase_add_test(tc, test_refusals_come_before_any_body_is_read);
    tcase_add_test(tc, test_without_token_host_and_origin_must_be_loopback);
    tcase_add_test(tc, test_lanes_hide_url_paths_unless_full_urls);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_healthz_answers_under_a_slowloris);
    tcase_add_test(tc, test_one_address_holds_at_most_eight_connections);
    tcase_add_test(tc, test_trickling_request_is_cut_at_the_deadline);
    suite_add_tcase(s, tc);
    return s;
}
