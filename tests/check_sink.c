// check_sink: the test/demo HTTP sink, driven over real HTTP with libcurl.
#include "tests/support/sink.h"

#include "base/sign.h"
#include "tests/support/ck_main.h"

#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET_A "whsec_AAsWISw3Qk1YY255hI+apbC7xtHc5/L9"
#define SECRET_B "whsec_JTA7RlFcZ3J9iJOeqbS/ytXg6/YBDBci"
#define SECRET_C "whsec_SlVga3aBjJeirbjDztnk7/oFEBsmMTxH"
#define UA       "User-Agent: hookd/0.1.0"
#define MIB      (1024 * 1024)

static hk_sink_t *sink;
static char base[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void sink_up(const hk_sink_opts_t *opts)
{
    char err[256] = "";
    sink = hk_sink_start(opts, err, sizeof err);
    ck_assert_msg(sink != NULL, "hk_sink_start: %s", err);
    ck_assert_int_gt(hk_sink_port(sink), 0);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", hk_sink_port(sink));
}

static void sink_restart(const hk_sink_opts_t *opts)
{
    hk_sink_stop(sink);
    sink = NULL;
    sink_up(opts);
}

static void setup(void)
{
    hk_sink_opts_t opts = {.threads = 4};
    sink_up(&opts);
}

static void teardown(void)
{
    hk_sink_stop(sink);
    sink = NULL;
}

// Waits up to 2 s for hk_sink_pending() to reach n.
static bool pending_reaches(unsigned n)
{
    for (int i = 0; i < 200; i++) {
        if (hk_sink_pending(sink) == n)
            return true;
        sleep_ms(10);
    }
    return false;
}

// ---- HTTP client ----

typedef struct http_res {
    CURLcode rc;
    long status;
    char retry_after[64];
    char body[8192];
    size_t body_len;
    double elapsed_s;
    long connects;
} http_res_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    http_res_t *res = arg;
    size_t n = size * nmemb;
    size_t room = sizeof res->body - 1 - res->body_len;
    size_t take = n < room ? n : room;
    memcpy(res->body + res->body_len, data, take);
    res->body_len += take;
    res->body[res->body_len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    http_res_t *res = arg;
    size_t n = size * nmemb;
    static const char name[] = "Retry-After:";
    if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1;
        size_t len = n - (sizeof name - 1);
        while (len > 0 && *v == ' ')
            v++, len--;
        while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n'))
            len--;
        snprintf(res->retry_after, sizeof res->retry_after, "%.*s", (int)len, v);
    }
    return n;
}

static size_t on_body_discard(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data;
    (void)arg;
    return size * nmemb;
}

// One request on handle h (a fresh one when NULL). body NULL = GET unless
// method says otherwise.
static void http_do(CURL *h, const char *method, const char *path, const char *body,
                    size_t body_len, const struct curl_slist *hdrs, long timeout_ms,
                    http_res_t *res)
{
    memset(res, 0, sizeof *res);
    CURL *own = h ? NULL : curl_easy_init();
    CURL *c = h ? h : own;
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, res);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, res);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    double t0 = now_s();
    res->rc = curl_easy_perform(c);
    res->elapsed_s = now_s() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &res->connects);
    if (own)
        curl_easy_cleanup(own);
}

// The headers hookd sends for (id, ts, body), signed with `secrets` when not NULL.
static struct curl_slist *hookd_headers(const char *id, int64_t ts, const char *body,
                                        const char *secrets)
{
    char line[HK_SIGN_HEADER_MAX + 64];
    struct curl_slist *h = NULL;
    snprintf(line, sizeof line, "webhook-id: %s", id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "webhook-timestamp: %" PRId64, ts);
    h = curl_slist_append(h, line);
    if (secrets != NULL) {
        char sig[HK_SIGN_HEADER_MAX];
        ck_assert_int_gt(hk_sign_header(secrets, id, ts, body, strlen(body), sig, sizeof sig), 0);
        snprintf(line, sizeof line, "webhook-signature: %s", sig);
        h = curl_slist_append(h, line);
    }
    snprintf(line, sizeof line, "Idempotency-Key: %s", id);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, UA);
    h = curl_slist_append(h, "Content-Type: application/json");
    return h;
}

// POSTs body to path as hookd would, with a fresh connection.
static void hookd_post(const char *path, const char *id, const char *body, const char *secrets,
                       http_res_t *res)
{
    struct curl_slist *h = hookd_headers(id, (int64_t)time(NULL), body, secrets);
    http_do(NULL, "POST", path, body, strlen(body), h, 0, res);
    curl_slist_free_all(h);
    ck_assert_msg(res->rc == CURLE_OK, "POST %s: %s", path, curl_easy_strerror(res->rc));
}

static long post_status(const char *path)
{
    http_res_t res;
    hookd_post(path, "evt_1", "{}", NULL, &res);
    return res.status;
}

static hk_sink_stats_t stats(void)
{
    hk_sink_stats_t st;
    hk_sink_stats(sink, &st);
    return st;
}

// ---- fault modes ----

START_TEST(test_ok_answers_200_and_records_every_header)
{
    int64_t ts = (int64_t)time(NULL);
    struct curl_slist *h = hookd_headers("evt_ok", ts, "{\"a\":1}", NULL);
    http_res_t res;
    http_do(NULL, "POST", "/ok", "{\"a\":1}", 7, h, 0, &res);
    curl_slist_free_all(h);
    ck_assert_int_eq(res.rc, CURLE_OK);
    ck_assert_int_eq(res.status, 200);

    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 1);
    ck_assert_str_eq(reqs[0].path, "/ok");
    ck_assert_str_eq(reqs[0].method, "POST");
    ck_assert_str_eq(reqs[0].webhook_id, "evt_ok");
    ck_assert_int_eq(reqs[0].webhook_ts, ts);
    ck_assert_int_eq(reqs[0].sig, -2);
    ck_assert_int_eq(reqs[0].idem_ok, 1);
    ck_assert_int_eq(reqs[0].ua_ok, 1);
    ck_assert_str_eq(reqs[0].content_type, "application/json");
    ck_assert_uint_eq(reqs[0].body_len, 7);
    ck_assert_str_eq(reqs[0].body, "{\"a\":1}");
    ck_assert_int_eq(reqs[0].status, 200);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    ck_assert(reqs[0].at_ms > now_ms - 5000 && reqs[0].at_ms < now_ms + 5000);
    hk_sink_reqs_free(reqs, 1);

    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.requests, 1);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_eq(st.unique_ok, 1);
    ck_assert_uint_eq(st.bad_headers, 0);
    ck_assert_uint_eq(st.bad_signature, 0);
}
END_TEST

START_TEST(test_other_paths_answer_200)
{
    ck_assert_int_eq(post_status("/"), 200);
    ck_assert_int_eq(post_status("/hooks/tenant-a/orders"), 200);
    ck_assert_int_eq(post_status("/ok/below"), 200);
    ck_assert_int_eq(post_status("/okay"), 200);
}
END_TEST

START_TEST(test_status_path_answers_its_code)
{
    ck_assert_int_eq(post_status("/status/503"), 503);
    ck_assert_int_eq(post_status("/status/410"), 410);
    ck_assert_int_eq(post_status("/status/201"), 201);
    ck_assert_int_eq(post_status("/status/204"), 204);
    ck_assert_int_eq(post_status("/status/302"), 302);
    ck_assert_int_eq(post_status("/status/599"), 599);
    ck_assert_int_eq(post_status("/status/404/below"), 404);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.requests, 7);
    ck_assert_uint_eq(st.ok, 2);
    ck_assert_uint_eq(st.failed, 5);
}
END_TEST

START_TEST(test_status_path_rejects_codes_outside_100_599)
{
    ck_assert_int_eq(post_status("/status/99"), 400);
    ck_assert_int_eq(post_status("/status/600"), 400);
    ck_assert_int_eq(post_status("/status/0503"), 503); // leading zero is still 503
    ck_assert_int_eq(post_status("/status/99999999999999999999"), 400);
    ck_assert_int_eq(post_status("/status/abc"), 400);
    ck_assert_int_eq(post_status("/status/5x3"), 400);
    ck_assert_int_eq(post_status("/status/"), 400);
    ck_assert_int_eq(post_status("/status"), 400);
}
END_TEST

START_TEST(test_slow_answers_after_its_delay)
{
    http_res_t res;
    hookd_post("/slow/250", "evt_slow", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_msg(res.elapsed_s >= 0.24, "answered after %.3f s", res.elapsed_s);
    ck_assert_msg(res.elapsed_s < 2.0, "answered after %.3f s", res.elapsed_s);
    ck_assert_int_eq(post_status("/slow/0"), 200);
    ck_assert_int_eq(post_status("/slow/abc"), 400);
    ck_assert_int_eq(post_status("/slow/"), 400);
    ck_assert_int_eq(post_status("/slow/99999999"), 400); // over an hour
    ck_assert_uint_eq(hk_sink_pending(sink), 0);
}
END_TEST

START_TEST(test_hang_never_answers_within_client_timeout)
{
    struct curl_slist *h = hookd_headers("evt_hang", (int64_t)time(NULL), "{}", NULL);
    http_res_t res;
    http_do(NULL, "POST", "/hang", "{}", 2, h, 300, &res);
    curl_slist_free_all(h);
    ck_assert_int_eq(res.rc, CURLE_OPERATION_TIMEDOUT);
    ck_assert_int_eq(res.status, 0);
    ck_assert_msg(res.elapsed_s >= 0.29 && res.elapsed_s < 2.0, "gave up after %.3f s",
                  res.elapsed_s);

    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 1);
    ck_assert_str_eq(reqs[0].webhook_id, "evt_hang");
    ck_assert_int_eq(reqs[0].status, 0);
    hk_sink_reqs_free(reqs, 1);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.requests, 1);
    ck_assert_uint_eq(st.ok, 0);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "evt_hang"), 0);
}
END_TEST

START_TEST(test_waiting_request_is_let_go_when_client_leaves)
{
    http_res_t res;
    http_do(NULL, "POST", "/hang", "{}", 2, NULL, 200, &res);
    ck_assert_int_eq(res.rc, CURLE_OPERATION_TIMEDOUT);
    http_do(NULL, "POST", "/slow/60000", "{}", 2, NULL, 200, &res);
    ck_assert_int_eq(res.rc, CURLE_OPERATION_TIMEDOUT);
    ck_assert_msg(pending_reaches(0), "still waiting: %u", hk_sink_pending(sink));
    ck_assert_int_eq(post_status("/ok"), 200);
}
END_TEST

START_TEST(test_flap_alternates_500_then_200)
{
    ck_assert_int_eq(post_status("/flap"), 500);
    ck_assert_int_eq(post_status("/flap"), 200);
    ck_assert_int_eq(post_status("/flap/x"), 500);
    ck_assert_int_eq(post_status("/flap"), 200);
    ck_assert_int_eq(post_status("/ok"), 200); // other paths do not move the phase
    ck_assert_int_eq(post_status("/flap"), 500);
}
END_TEST

START_TEST(test_retry_after_path_answers_429_with_header)
{
    http_res_t res;
    hookd_post("/retry-after/7", "evt_ra", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 429);
    ck_assert_str_eq(res.retry_after, "7");
    hookd_post("/retry-after/Wed,%2021%20Oct%202015%2007:28:00%20GMT", "evt_ra", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 429);
    ck_assert_str_eq(res.retry_after, "Wed, 21 Oct 2015 07:28:00 GMT");
    hookd_post("/retry-after/", "evt_ra", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 400);
    ck_assert_str_eq(res.retry_after, "");
    hookd_post("/ok", "evt_ra", "{}", NULL, &res);
    ck_assert_str_eq(res.retry_after, "");
}
END_TEST

// Many delayed requests in flight on one answering thread must not hold up others.
START_TEST(test_delays_do_not_block_answering_threads)
{
    hk_sink_opts_t opts = {.threads = 1};
    sink_restart(&opts);
    enum { N = 24 };
    CURLM *m = curl_multi_init();
    CURL *easy[N];
    char url[N][128];
    for (int i = 0; i < N; i++) {
        easy[i] = curl_easy_init();
        snprintf(url[i], sizeof url[i], "%s%s", base, i % 2 ? "/slow/400" : "/hang");
        curl_easy_setopt(easy[i], CURLOPT_URL, url[i]);
        curl_easy_setopt(easy[i], CURLOPT_PROXY, "");
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, on_body);
        http_res_t *discard = calloc(1, sizeof *discard);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, discard);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, discard);
        curl_multi_add_handle(m, easy[i]);
    }
    // Drive the multi handle until every request is in the sink.
    int running = N;
    double t0 = now_s();
    while (hk_sink_pending(sink) < N && now_s() - t0 < 5.0) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    ck_assert_uint_eq(hk_sink_pending(sink), N);

    http_res_t res;
    http_do(NULL, "POST", "/ok", "{}", 2, NULL, 0, &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_msg(res.elapsed_s < 1.0, "/ok took %.3f s", res.elapsed_s);

    // The slow half completes together, about 400 ms after it arrived.
    int slow_done = 0;
    while (slow_done < N / 2 && now_s() - t0 < 5.0) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            ck_assert_int_eq(msg->data.result, CURLE_OK);
            ck_assert_int_eq(code, 200);
            slow_done++;
        }
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    ck_assert_int_eq(slow_done, N / 2);
    ck_assert_msg(now_s() - t0 < 3.0, "slow requests took %.3f s", now_s() - t0);
    ck_assert_uint_eq(hk_sink_pending(sink), N / 2);

    for (int i = 0; i < N; i++) {
        void *p;
        curl_easy_getinfo(easy[i], CURLINFO_PRIVATE, (char **)&p);
        free(p);
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(m);
    ck_assert_msg(pending_reaches(0), "still waiting: %u", hk_sink_pending(sink));
}
END_TEST

// ---- rules ----

START_TEST(test_rule_overrides_builtin_mode_with_retry_after)
{
    ck_assert_int_eq(hk_sink_set_rule(sink, "/ok/tenant-a", 503, 0, "2"), 0);
    http_res_t res;
    hookd_post("/ok/tenant-a/x", "evt_r", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(res.retry_after, "2");
    hookd_post("/ok/tenant-b", "evt_r", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.retry_after, "");

    ck_assert_int_eq(hk_sink_set_rule(sink, "/hang", 202, 0, NULL), 0);
    hookd_post("/hang", "evt_r", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 202);
    ck_assert_str_eq(res.retry_after, "");
}
END_TEST

START_TEST(test_rule_longest_prefix_wins)
{
    ck_assert_int_eq(hk_sink_set_rule(sink, "/a", 500, 0, NULL), 0);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/a/b/c", 410, 0, NULL), 0);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/a/b", 429, 0, "1"), 0);
    ck_assert_int_eq(post_status("/a/b/c/d"), 410);
    ck_assert_int_eq(post_status("/a/b/x"), 429);
    ck_assert_int_eq(post_status("/a/x"), 500);
    ck_assert_int_eq(post_status("/ab"), 500); // a prefix, not a path segment
    ck_assert_int_eq(post_status("/b"), 200);
}
END_TEST

START_TEST(test_rule_status_zero_removes_it_and_same_prefix_replaces)
{
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 500, 0, NULL), 0);
    ck_assert_int_eq(post_status("/x"), 500);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 418, 0, NULL), 0);
    ck_assert_int_eq(post_status("/x"), 418);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 0, 0, NULL), 0);
    ck_assert_int_eq(post_status("/x"), 200);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/never-set", 0, 0, NULL), 0);
}
END_TEST

START_TEST(test_rule_delay_delays_the_answer)
{
    ck_assert_int_eq(hk_sink_set_rule(sink, "/d", 503, 200, "3"), 0);
    http_res_t res;
    hookd_post("/d", "evt_d", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(res.retry_after, "3");
    ck_assert_msg(res.elapsed_s >= 0.19 && res.elapsed_s < 2.0, "answered after %.3f s",
                  res.elapsed_s);
}
END_TEST

START_TEST(test_rule_rejects_bad_arguments)
{
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 99, 0, NULL), -1);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 600, 0, NULL), -1);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 200, -1, NULL), -1);
    ck_assert_int_eq(hk_sink_set_rule(sink, "", 200, 0, NULL), -1);
    ck_assert_int_eq(hk_sink_set_rule(sink, NULL, 200, 0, NULL), -1);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 429, 0, "1\r\nX-Evil: 1"), -1);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/x", 429, 0, ""), -1);
    ck_assert_int_eq(post_status("/x"), 200);
}
END_TEST

// ---- signatures ----

static void sig_sink(void)
{
    hk_sink_opts_t opts = {.secrets = SECRET_A " " SECRET_B, .threads = 2};
    sink_restart(&opts);
}

START_TEST(test_signature_valid_with_any_configured_secret)
{
    sig_sink();
    http_res_t res;
    hookd_post("/ok", "evt_a", "{\"n\":1}", SECRET_A, &res);
    hookd_post("/ok", "evt_b", "{\"n\":2}", SECRET_B, &res);
    hookd_post("/ok", "evt_rot", "{\"n\":3}", SECRET_C " " SECRET_B, &res); // rotation
    hookd_post("/ok", "evt_empty", "", SECRET_A, &res);
    hk_sink_req_t *reqs;
    size_t n = hk_sink_reqs(sink, &reqs);
    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(reqs[i].sig == 1, "%s: sig %d", reqs[i].webhook_id, reqs[i].sig);
    hk_sink_reqs_free(reqs, n);
    ck_assert_uint_eq(stats().bad_signature, 0);
    ck_assert_uint_eq(stats().bad_headers, 0);
}
END_TEST

START_TEST(test_signature_invalid_is_counted)
{
    sig_sink();
    int64_t ts = (int64_t)time(NULL);
    http_res_t res;
    hookd_post("/ok", "evt_c", "{}", SECRET_C, &res); // unknown secret
    ck_assert_int_eq(res.status, 200);                // recorded, still answered as the path says

    // Signed for another body, another timestamp, another id.
    struct curl_slist *h = hookd_headers("evt_t", ts, "{\"n\":1}", SECRET_A);
    http_do(NULL, "POST", "/ok", "{\"n\":2}", 7, h, 0, &res);
    curl_slist_free_all(h);
    char sig[HK_SIGN_HEADER_MAX], line[HK_SIGN_HEADER_MAX + 32];
    ck_assert_int_gt(hk_sign_header(SECRET_A, "evt_t", ts - 1, "{}", 2, sig, sizeof sig), 0);
    snprintf(line, sizeof line, "webhook-signature: %s", sig);
    h = hookd_headers("evt_t", ts, "{}", NULL);
    h = curl_slist_append(h, line);
    http_do(NULL, "POST", "/ok", "{}", 2, h, 0, &res);
    curl_slist_free_all(h);
    ck_assert_int_gt(hk_sign_header(SECRET_A, "evt_other", ts, "{}", 2, sig, sizeof sig), 0);
    snprintf(line, sizeof line, "webhook-signature: %s", sig);
    h = hookd_headers("evt_t", ts, "{}", NULL);
    h = curl_slist_append(h, line);
    http_do(NULL, "POST", "/ok", "{}", 2, h, 0, &res);
    curl_slist_free_all(h);
    h = hookd_headers("evt_t", ts, "{}", NULL);
    h = curl_slist_append(h, "webhook-signature: v1,garbage");
    http_do(NULL, "POST", "/ok", "{}", 2, h, 0, &res);
    curl_slist_free_all(h);

    hk_sink_req_t *reqs;
    size_t n = hk_sink_reqs(sink, &reqs);
    ck_assert_uint_eq(n, 5);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(reqs[i].sig == 0, "request %zu: sig %d", i, reqs[i].sig);
    hk_sink_reqs_free(reqs, n);
    ck_assert_uint_eq(stats().bad_signature, 5);
}
END_TEST

START_TEST(test_signature_missing_is_counted_when_secrets_are_set)
{
    sig_sink();
    http_res_t res;
    hookd_post("/ok", "evt_m", "{}", NULL, &res);
    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 1);
    ck_assert_int_eq(reqs[0].sig, -1);
    hk_sink_reqs_free(reqs, 1);
    ck_assert_uint_eq(stats().bad_signature, 1);
    ck_assert_uint_eq(stats().bad_headers, 0);
}
END_TEST

START_TEST(test_signature_not_checked_without_secrets)
{
    http_res_t res;
    hookd_post("/ok", "evt_n", "{}", NULL, &res);
    hookd_post("/ok", "evt_n2", "{}", SECRET_A, &res);
    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 2);
    ck_assert_int_eq(reqs[0].sig, -2);
    ck_assert_int_eq(reqs[1].sig, -2);
    hk_sink_reqs_free(reqs, 2);
    ck_assert_uint_eq(stats().bad_signature, 0);
}
END_TEST

START_TEST(test_start_rejects_malformed_secret)
{
    char err[256] = "";
    hk_sink_opts_t opts = {.secrets = SECRET_A " whsec_short"};
    ck_assert_ptr_null(hk_sink_start(&opts, err, sizeof err));
    ck_assert_msg(strstr(err, "secret 2") != NULL, "errstr: %s", err);
    ck_assert_msg(strstr(err, "whsec_short") == NULL, "secret leaked: %s", err);
    opts.secrets = "nope";
    ck_assert_ptr_null(hk_sink_start(&opts, err, sizeof err));
    opts.secrets = "";
    hk_sink_t *s = hk_sink_start(&opts, err, sizeof err); // no secrets: no check
    ck_assert_ptr_nonnull(s);
    hk_sink_stop(s);
}
END_TEST

START_TEST(test_start_fails_on_a_busy_port)
{
    char err[256] = "";
    hk_sink_opts_t opts = {.port = hk_sink_port(sink)};
    ck_assert_ptr_null(hk_sink_start(&opts, err, sizeof err));
    ck_assert_msg(strstr(err, "127.0.0.1") != NULL, "errstr: %s", err);
    opts.port = 70000;
    ck_assert_ptr_null(hk_sink_start(&opts, err, sizeof err));
}
END_TEST

// ---- headers and bodies ----

START_TEST(test_bad_headers_are_counted)
{
    const char *const cases[][4] = {
        // id, ts, idem, ua: NULL = header left out
        {"webhook-id: e1", "webhook-timestamp: 1700000000", "Idempotency-Key: e1", UA},
        {NULL, "webhook-timestamp: 1700000000", "Idempotency-Key: e2", UA},
        {"webhook-id: e3", NULL, "Idempotency-Key: e3", UA},
        {"webhook-id: e4", "webhook-timestamp: 17e8", "Idempotency-Key: e4", UA},
        {"webhook-id: e5", "webhook-timestamp: 1700000000", NULL, UA},
        {"webhook-id: e6", "webhook-timestamp: 1700000000", "Idempotency-Key: other", UA},
        {"webhook-id: e7", "webhook-timestamp: 1700000000", "Idempotency-Key: e7",
         "User-Agent: curl/8"},
        {"webhook-id: e8", "webhook-timestamp: 1700000000", "Idempotency-Key: e8", NULL},
    };
    size_t ncases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < ncases; i++) {
        struct curl_slist *h = NULL;
        for (int j = 0; j < 4; j++)
            h = curl_slist_append(h, cases[i][j] ? cases[i][j] : "X-Nothing: 1");
        if (cases[i][3] == NULL)
            h = curl_slist_append(h, "User-Agent:"); // curl's own would be sent otherwise
        http_res_t res;
        http_do(NULL, "POST", "/ok", "{}", 2, h, 0, &res);
        curl_slist_free_all(h);
        ck_assert_int_eq(res.status, 200);
    }
    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), ncases);
    ck_assert_int_eq(reqs[0].webhook_ts, 1700000000);
    ck_assert_int_eq(reqs[0].idem_ok && reqs[0].ua_ok, 1);
    ck_assert_str_eq(reqs[1].webhook_id, "");
    ck_assert_int_eq(reqs[1].idem_ok, 0);
    ck_assert_int_eq(reqs[2].webhook_ts, -1);
    ck_assert_int_eq(reqs[3].webhook_ts, -1);
    ck_assert_int_eq(reqs[4].idem_ok, 0);
    ck_assert_int_eq(reqs[5].idem_ok, 0);
    ck_assert_int_eq(reqs[6].ua_ok, 0);
    ck_assert_int_eq(reqs[6].idem_ok, 1);
    ck_assert_int_eq(reqs[7].ua_ok, 0);
    hk_sink_reqs_free(reqs, ncases);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.bad_headers, ncases - 1);
    ck_assert_uint_eq(st.ok, ncases);
    ck_assert_uint_eq(st.unique_ok, ncases - 1); // the one without webhook-id is not an id
}
END_TEST

START_TEST(test_methods_content_type_and_empty_body_recorded)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
    http_res_t res;
    http_do(NULL, "PUT", "/ok", "hello", 5, h, 0, &res);
    ck_assert_int_eq(res.status, 200);
    http_do(NULL, "DELETE", "/ok", NULL, 0, NULL, 0, &res);
    ck_assert_int_eq(res.status, 200);
    http_do(NULL, NULL, "/ok?x=1", NULL, 0, NULL, 0, &res);
    ck_assert_int_eq(res.status, 200);
    curl_slist_free_all(h);

    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 3);
    ck_assert_str_eq(reqs[0].method, "PUT");
    ck_assert_str_eq(reqs[0].content_type, "text/plain; charset=utf-8");
    ck_assert_str_eq(reqs[0].body, "hello");
    ck_assert_str_eq(reqs[1].method, "DELETE");
    ck_assert_str_eq(reqs[1].content_type, "");
    ck_assert_uint_eq(reqs[1].body_len, 0);
    ck_assert_str_eq(reqs[1].body, "");
    ck_assert_str_eq(reqs[2].method, "GET");
    ck_assert_str_eq(reqs[2].path, "/ok"); // the query string is not part of the path
    hk_sink_reqs_free(reqs, 3);
}
END_TEST

START_TEST(test_body_up_to_8mib_is_kept_and_larger_answers_413)
{
    char *big = malloc(8 * MIB + 1);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < 8 * MIB + 1; i++)
        big[i] = (char)('a' + i % 26);
    http_res_t res;
    http_do(NULL, "POST", "/ok", big, 8 * MIB, NULL, 30000, &res);
    ck_assert_int_eq(res.rc, CURLE_OK);
    ck_assert_int_eq(res.status, 200);
    http_do(NULL, "POST", "/ok", big, 8 * MIB + 1, NULL, 30000, &res);
    ck_assert_int_eq(res.rc, CURLE_OK);
    ck_assert_int_eq(res.status, 413);

    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 2);
    ck_assert_uint_eq(reqs[0].body_len, 8 * MIB);
    ck_assert_int_eq(memcmp(reqs[0].body, big, 8 * MIB), 0);
    ck_assert_int_eq(reqs[0].body[8 * MIB], '\0');
    ck_assert_int_eq(reqs[1].status, 413);
    ck_assert_uint_eq(reqs[1].body_len, 0);
    hk_sink_reqs_free(reqs, 2);
    free(big);
}
END_TEST

// ---- counters ----

START_TEST(test_duplicates_and_ok_count_per_webhook_id)
{
    http_res_t res;
    hookd_post("/ok", "evt_dup", "{}", NULL, &res);
    hookd_post("/ok", "evt_dup", "{}", NULL, &res);
    hookd_post("/status/503", "evt_retry", "{}", NULL, &res);
    hookd_post("/ok", "evt_retry", "{}", NULL, &res);
    hookd_post("/status/410", "evt_gone", "{}", NULL, &res);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "evt_dup"), 2);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "evt_retry"), 1);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "evt_gone"), 0);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "never-seen"), 0);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.requests, 5);
    ck_assert_uint_eq(st.ok, 3);
    ck_assert_uint_eq(st.failed, 2);
    ck_assert_uint_eq(st.unique_ok, 2);
    ck_assert_uint_eq(st.duplicate_ok, 1);
}
END_TEST

START_TEST(test_stats_endpoint_serves_json_and_is_not_counted)
{
    http_res_t res;
    hookd_post("/ok", "evt_s1", "{}", NULL, &res);
    hookd_post("/ok", "evt_s1", "{}", NULL, &res);
    hookd_post("/status/503", "evt_s2", "{}", NULL, &res);
    http_do(NULL, NULL, "/hang", NULL, 0, NULL, 100, &res);
    http_do(NULL, NULL, "/_stats", NULL, 0, NULL, 0, &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.body, "{\"requests\":4,\"ok\":2,\"failed\":2,\"unique_ok\":1,"
                               "\"duplicate_ok\":1,\"bad_signature\":0,\"bad_headers\":1,"
                               "\"by_status\":{\"0\":1,\"200\":2,\"503\":1}}");
    ck_assert_uint_eq(stats().requests, 4);

    char *json = hk_sink_stats_json(sink);
    ck_assert_str_eq(json, res.body);
    free(json);
}
END_TEST

START_TEST(test_reset_forgets_records_and_counters_but_keeps_rules)
{
    ck_assert_int_eq(hk_sink_set_rule(sink, "/r", 503, 0, NULL), 0);
    http_res_t res;
    hookd_post("/ok", "evt_x", "{}", NULL, &res);
    hookd_post("/flap", "evt_x", "{}", NULL, &res);
    hookd_post("/r", "evt_x", "{}", NULL, &res);
    hk_sink_reset(sink);

    hk_sink_stats_t st = stats();
    hk_sink_stats_t zero = {0};
    ck_assert_int_eq(memcmp(&st, &zero, sizeof st), 0);
    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 0);
    ck_assert_ptr_null(reqs);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "evt_x"), 0);
    char *json = hk_sink_stats_json(sink);
    ck_assert_str_eq(json, "{\"requests\":0,\"ok\":0,\"failed\":0,\"unique_ok\":0,"
                           "\"duplicate_ok\":0,\"bad_signature\":0,\"bad_headers\":0,"
                           "\"by_status\":{}}");
    free(json);

    ck_assert_int_eq(post_status("/r"), 503);
    ck_assert_int_eq(post_status("/flap"), 500);
    hookd_post("/ok", "evt_x", "{}", NULL, &res);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "evt_x"), 1);
    ck_assert_uint_eq(stats().unique_ok, 1);
}
END_TEST

START_TEST(test_keepalive_connection_is_reused)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = hookd_headers("evt_ka", (int64_t)time(NULL), "{}", NULL);
    long connects = 0;
    const char *paths[] = {"/ok", "/status/503", "/slow/20", "/retry-after/1", "/status/410"};
    for (int i = 0; i < 50; i++) {
        http_res_t res;
        http_do(c, "POST", paths[i % 5], "{}", 2, h, 0, &res);
        ck_assert_int_eq(res.rc, CURLE_OK);
        connects += res.connects;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    ck_assert_int_eq(connects, 1);
    ck_assert_uint_eq(stats().requests, 50);
}
END_TEST

typedef struct load_arg {
    int worker;
    int n;
    int failures;
} load_arg_t;

static void *load_main(void *p)
{
    load_arg_t *arg = p;
    CURL *c = curl_easy_init();
    for (int i = 0; i < arg->n; i++) {
        char id[64], body[96];
        snprintf(id, sizeof id, "load-%d-%d", arg->worker, i);
        snprintf(body, sizeof body, "{\"worker\":%d,\"i\":%d}", arg->worker, i);
        char idh[96], idem[96];
        snprintf(idh, sizeof idh, "webhook-id: %s", id);
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", id);
        struct curl_slist *h = curl_slist_append(NULL, idh);
        h = curl_slist_append(h, idem);
        h = curl_slist_append(h, "webhook-timestamp: 1700000000");
        h = curl_slist_append(h, UA);
        http_res_t res;
        http_do(c, "POST", "/ok", body, strlen(body), h, 0, &res);
        curl_slist_free_all(h);
        if (res.rc != CURLE_OK || res.status != 200)
            arg->failures++;
    }
    curl_easy_cleanup(c);
    return NULL;
}

START_TEST(test_many_clients_and_ids_are_all_counted)
{
    enum { WORKERS = 4, PER = 2500 };
    pthread_t th[WORKERS];
    load_arg_t args[WORKERS];
    double t0 = now_s();
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (load_arg_t){.worker = i, .n = PER};
        ck_assert_int_eq(pthread_create(&th[i], NULL, load_main, &args[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].failures, 0);
    }
    double took = now_s() - t0;
    fprintf(stderr, "check_sink: %d requests in %.2f s (%.0f/s)\n", WORKERS * PER, took,
            WORKERS * PER / took);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.requests, WORKERS * PER);
    ck_assert_uint_eq(st.ok, WORKERS * PER);
    ck_assert_uint_eq(st.unique_ok, WORKERS * PER);
    ck_assert_uint_eq(st.duplicate_ok, 0);
    ck_assert_uint_eq(st.bad_headers, 0);
    for (int w = 0; w < WORKERS; w++) {
        for (int i = 0; i < PER; i++) {
            char id[64];
            snprintf(id, sizeof id, "load-%d-%d", w, i);
            ck_assert_uint_eq(hk_sink_ok_count(sink, id), 1);
        }
    }
    hk_sink_req_t *reqs;
    size_t n = hk_sink_reqs(sink, &reqs);
    ck_assert_uint_eq(n, WORKERS * PER);
    hk_sink_reqs_free(reqs, n);
}
END_TEST

// ---- stopping ----

typedef struct client_arg {
    const char *path;
    CURLcode rc;
    double elapsed_s;
} client_arg_t;

static void *client_main(void *p)
{
    client_arg_t *arg = p;
    http_res_t res;
    http_do(NULL, "POST", arg->path, "{}", 2, NULL, 30000, &res);
    arg->rc = res.rc;
    arg->elapsed_s = res.elapsed_s;
    return NULL;
}

static void stop_with_open_request(const char *path)
{
    client_arg_t arg = {.path = path};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, client_main, &arg), 0);
    ck_assert_msg(pending_reaches(1), "the request did not arrive");

    double t0 = now_s();
    hk_sink_stop(sink);
    sink = NULL;
    double took = now_s() - t0;
    pthread_join(th, NULL);
    ck_assert_msg(took < 1.0, "hk_sink_stop took %.3f s", took);
    ck_assert_msg(arg.rc != CURLE_OK, "the client got an answer");
    ck_assert_msg(arg.elapsed_s < 5.0, "the client waited %.3f s", arg.elapsed_s);
}

START_TEST(test_stop_returns_promptly_while_hang_is_open)
{
    stop_with_open_request("/hang");
}
END_TEST

START_TEST(test_stop_returns_promptly_while_slow_is_open)
{
    stop_with_open_request("/slow/60000");
}
END_TEST

START_TEST(test_stop_closes_idle_keepalive_connections)
{
    CURL *c = curl_easy_init();
    http_res_t res;
    http_do(c, "POST", "/ok", "{}", 2, NULL, 0, &res);
    ck_assert_int_eq(res.status, 200);
    double t0 = now_s();
    hk_sink_stop(sink);
    sink = NULL;
    ck_assert_msg(now_s() - t0 < 1.0, "hk_sink_stop took %.3f s", now_s() - t0);
    http_do(c, "POST", "/ok", "{}", 2, NULL, 1000, &res);
    ck_assert_int_ne(res.rc, CURLE_OK);
    curl_easy_cleanup(c);
}
END_TEST

typedef struct busy_arg {
    atomic_bool *quit;
    int worker;
    atomic_int answered; // read by the test while the worker runs
} busy_arg_t;

static void *busy_main(void *p)
{
    busy_arg_t *arg = p;
    const char *paths[] = {"/ok", "/slow/1", "/slow/5", "/flap", "/hang"};
    CURL *c = curl_easy_init();
    for (int i = arg->worker; !atomic_load(arg->quit); i++) {
        http_res_t res;
        http_do(c, "POST", paths[i % 5], "{}", 2, NULL, 30, &res);
        if (res.rc == CURLE_OK)
            atomic_fetch_add(&arg->answered, 1);
    }
    curl_easy_cleanup(c);
    return NULL;
}

START_TEST(test_stop_returns_promptly_under_load)
{
    enum { WORKERS = 6 };
    atomic_bool quit = false;
    pthread_t th[WORKERS];
    busy_arg_t args[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (busy_arg_t){.quit = &quit, .worker = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, busy_main, &args[i]), 0);
    }
    // Under load means the sink has been answering: wait for a first answer
    // within its 30 ms client timeout (which a slow machine can take a while to
    // see) rather than trusting 300 ms to be enough. A sink that never answers
    // still fails here.
    sleep_ms(300);
    int answered = 0;
    for (double end = now_s() + 5.0;; sleep_ms(10)) {
        for (int i = 0; i < WORKERS; i++)
            answered += atomic_load(&args[i].answered);
        if (answered > 0 || now_s() >= end)
            break;
    }
    ck_assert_msg(answered > 0, "no request answered in 5 s of load");
    double t0 = now_s();
    hk_sink_stop(sink);
    sink = NULL;
    double took = now_s() - t0;
    atomic_store(&quit, true);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    ck_assert_msg(took < 1.0, "hk_sink_stop took %.3f s", took);
}
END_TEST

typedef struct random_arg {
    int n;
    int failed; // 503 answers
    int other;  // anything but 200 and 503, or a transfer error
} random_arg_t;

static void *random_main(void *p)
{
    random_arg_t *arg = p;
    CURL *c = curl_easy_init();
    for (int i = 0; i < arg->n; i++) {
        http_res_t res;
        http_do(c, "POST", "/random-fail/30", "{}", 2, NULL, 0, &res);
        if (res.rc == CURLE_OK && res.status == 503)
            arg->failed++;
        else if (res.rc != CURLE_OK || res.status != 200)
            arg->other++;
    }
    curl_easy_cleanup(c);
    return NULL;
}

// /random-fail/<pct>: 503 at about pct percent; bounds and bad numbers; the same seed
// replays the same answers, and concurrent clients share one sequence without
// repeating or skipping a draw: N draws split over threads fail exactly as often as
// the same N draws taken one by one.
START_TEST(test_random_fail_answers_503_at_its_rate_from_one_seeded_sequence)
{
    enum { N = 2000, WORKERS = 8 };
    hk_sink_opts_t opts = {.threads = 4, .seed = 42};
    sink_restart(&opts);
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(post_status("/random-fail/0"), 200);
        ck_assert_int_eq(post_status("/random-fail/100"), 503);
    }
    ck_assert_int_eq(post_status("/random-fail/101"), 400);
    ck_assert_int_eq(post_status("/random-fail/-1"), 400);
    ck_assert_int_eq(post_status("/random-fail/abc"), 400);
    ck_assert_int_eq(post_status("/random-fail/"), 400);
    ck_assert_int_eq(post_status("/random-fail"), 400);
    ck_assert_int_eq(post_status("/random-fail/100/below"), 503);

    // One by one, recording the answers.
    static char first[N];
    hk_sink_reset(sink);
    CURL *c = curl_easy_init();
    int failed = 0;
    for (int i = 0; i < N; i++) {
        http_res_t res;
        http_do(c, "POST", "/random-fail/30", "{}", 2, NULL, 0, &res);
        ck_assert_int_eq(res.rc, CURLE_OK);
        ck_assert(res.status == 200 || res.status == 503);
        first[i] = res.status == 503;
        failed += first[i];
    }
    // Binomial(2000, 0.3): mean 600, sd 20.5.
    ck_assert_msg(failed > 500 && failed < 700, "%d of %d failed at 30%%", failed, N);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.requests, N);
    ck_assert_uint_eq(st.failed, (uint64_t)failed);

    // reset restarts the sequence; a new sink with the same seed starts it too.
    for (int round = 0; round < 2; round++) {
        if (round == 0)
            hk_sink_reset(sink);
        else
            sink_restart(&opts);
        curl_easy_reset(c);
        for (int i = 0; i < 200; i++) {
            http_res_t res;
            http_do(c, "POST", "/random-fail/30", "{}", 2, NULL, 0, &res);
            ck_assert_msg((res.status == 503) == first[i], "round %d, draw %d differs", round, i);
        }
    }
    // Another seed, another sequence.
    hk_sink_opts_t other = {.threads = 4, .seed = 43};
    sink_restart(&other);
    curl_easy_reset(c);
    int same = 0;
    for (int i = 0; i < 200; i++) {
        http_res_t res;
        http_do(c, "POST", "/random-fail/30", "{}", 2, NULL, 0, &res);
        same += (res.status == 503) == first[i];
    }
    curl_easy_cleanup(c);
    ck_assert_msg(same < 200, "seed 43 replayed seed 42");

    // Concurrently, from the seed again.
    sink_restart(&opts);
    pthread_t th[WORKERS];
    random_arg_t args[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (random_arg_t){.n = N / WORKERS};
        ck_assert_int_eq(pthread_create(&th[i], NULL, random_main, &args[i]), 0);
    }
    int cfailed = 0, cother = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        cfailed += args[i].failed;
        cother += args[i].other;
    }
    ck_assert_int_eq(cother, 0);
    ck_assert_int_eq(cfailed, failed);
    st = stats();
    ck_assert_uint_eq(st.requests, N);
    ck_assert_uint_eq(st.failed, (uint64_t)failed);
    ck_assert_uint_eq(st.ok, (uint64_t)(N - failed));

    // Without a seed, two sinks draw different sequences.
    hk_sink_opts_t unseeded = {.threads = 2};
    sink_restart(&unseeded);
    char a[200];
    for (int i = 0; i < 200; i++)
        a[i] = post_status("/random-fail/50") == 503;
    sink_restart(&unseeded);
    same = 0;
    for (int i = 0; i < 200; i++)
        same += (post_status("/random-fail/50") == 503) == a[i];
    ck_assert_msg(same < 200, "two time-seeded sinks drew the same 200 answers");
}
END_TEST

// ---- faults added for the testkit: sequences, windows, reset, close, refuse ----

START_TEST(test_seq_path_answers_its_codes_in_turn_then_the_last)
{
    ck_assert_int_eq(post_status("/seq/503,429,200"), 503);
    ck_assert_int_eq(post_status("/seq/503,429,200"), 429);
    ck_assert_int_eq(post_status("/seq/503,429,200"), 200);
    ck_assert_int_eq(post_status("/seq/503,429,200"), 200);
    // Each path has its own position; a reset starts them over.
    ck_assert_int_eq(post_status("/seq/503,429,200/other"), 503);
    hk_sink_reset(sink);
    ck_assert_int_eq(post_status("/seq/503,429,200"), 503);
    // Malformed sequences are a client error.
    ck_assert_int_eq(post_status("/seq/"), 400);
    ck_assert_int_eq(post_status("/seq/503,,200"), 400);
    ck_assert_int_eq(post_status("/seq/99"), 400);
    ck_assert_int_eq(post_status("/seq/503,abc"), 400);
}
END_TEST

START_TEST(test_sequence_rule_answers_in_turn_below_its_prefix)
{
    const int codes[] = {500, 410};
    ck_assert_int_eq(hk_sink_set_sequence(sink, "/a", codes, 2), 0);
    ck_assert_int_eq(post_status("/a/x"), 500);
    ck_assert_int_eq(post_status("/a/y"), 410); // one sequence for the whole prefix
    ck_assert_int_eq(post_status("/a/x"), 410);
    ck_assert_int_eq(post_status("/b"), 200);
    ck_assert_int_eq(hk_sink_set_rule(sink, "/a", 0, 0, NULL), 0); // removes it
    ck_assert_int_eq(post_status("/a/x"), 200);
    const int bad[] = {500, 99};
    ck_assert_int_eq(hk_sink_set_sequence(sink, "/a", bad, 2), -1);
    ck_assert_int_eq(hk_sink_set_sequence(sink, "/a", codes, 0), -1);
}
END_TEST

START_TEST(test_outage_window_answers_its_status_then_lapses)
{
    ck_assert_int_eq(hk_sink_set_outage(sink, "/w", 503, 60000), 0);
    ck_assert_int_eq(post_status("/w/1"), 503);
    ck_assert_int_eq(post_status("/other"), 200);
    // The same prefix again with a window already over: the built-in mode answers.
    ck_assert_int_eq(hk_sink_set_outage(sink, "/w", 503, 1), 0);
    sleep_ms(20);
    ck_assert_int_eq(post_status("/w/1"), 200);
    ck_assert_int_eq(post_status("/w/status/410"), 200); // "/w/status" is not a mode path
    ck_assert_int_eq(hk_sink_set_outage(sink, "/w", 503, 0), -1);
    ck_assert_int_eq(hk_sink_set_outage(sink, "/w", 600, 10), -1);
}
END_TEST

START_TEST(test_reset_path_resets_the_connection)
{
    struct curl_slist *h = hookd_headers("evt_rst", (int64_t)time(NULL), "{}", NULL);
    http_res_t res;
    http_do(NULL, "POST", "/reset", "{}", 2, h, 0, &res);
    curl_slist_free_all(h);
    // A reset, not an orderly close (that would be CURLE_GOT_NOTHING).
    ck_assert_msg(res.rc == CURLE_RECV_ERROR, "POST /reset: %s", curl_easy_strerror(res.rc));
    ck_assert_int_eq(res.status, 0);
    hk_sink_req_t *reqs;
    ck_assert_uint_eq(hk_sink_reqs(sink, &reqs), 1);
    ck_assert_int_eq(reqs[0].status, 0);
    hk_sink_reqs_free(reqs, 1);
    ck_assert_uint_eq(stats().failed, 1);
}
END_TEST

START_TEST(test_close_mid_path_closes_after_part_of_the_body)
{
    struct curl_slist *h = hookd_headers("evt_mid", (int64_t)time(NULL), "{}", NULL);
    http_res_t res;
    http_do(NULL, "POST", "/close-mid", "{}", 2, h, 0, &res);
    curl_slist_free_all(h);
    ck_assert_msg(res.rc == CURLE_PARTIAL_FILE, "POST /close-mid: %s", curl_easy_strerror(res.rc));
    ck_assert_int_eq(res.status, 200); // the status line came, the body did not
    ck_assert_uint_lt(res.body_len, 4096);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.ok, 0); // not a delivery
    ck_assert_uint_eq(st.failed, 1);
}
END_TEST

START_TEST(test_refuse_closes_the_port_and_listen_reopens_it)
{
    http_res_t res;
    ck_assert_int_eq(hk_sink_refuse(sink, 0), 0);
    http_do(NULL, "GET", "/ok", NULL, 0, NULL, 2000, &res);
    ck_assert_msg(res.rc == CURLE_COULDNT_CONNECT, "while refusing: %s",
                  curl_easy_strerror(res.rc));
    ck_assert_int_eq(hk_sink_listen(sink), 0);
    ck_assert_int_eq(post_status("/ok"), 200);
    // With a duration it listens again by itself (on the same port).
    ck_assert_int_eq(hk_sink_refuse(sink, 300), 0);
    http_do(NULL, "GET", "/ok", NULL, 0, NULL, 2000, &res);
    ck_assert_int_eq(res.rc, CURLE_COULDNT_CONNECT);
    int answered = 0;
    for (int i = 0; i < 500 && !answered; i++) {
        sleep_ms(20);
        http_do(NULL, "GET", "/ok", NULL, 0, NULL, 2000, &res);
        answered = res.rc == CURLE_OK && res.status == 200;
    }
    ck_assert_msg(answered, "the sink did not listen again");
}
END_TEST

START_TEST(test_refuse_drops_waiting_requests)
{
    CURLM *multi = curl_multi_init();
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "%s/hang", base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_multi_add_handle(multi, c);
    int running = 1;
    for (int i = 0; i < 400 && hk_sink_pending(sink) == 0; i++)
        curl_multi_perform(multi, &running), curl_multi_wait(multi, NULL, 0, 10, NULL);
    ck_assert_uint_eq(hk_sink_pending(sink), 1);
    ck_assert_int_eq(hk_sink_refuse(sink, 0), 0);
    ck_assert_uint_eq(hk_sink_pending(sink), 0);
    for (int i = 0; i < 400 && running; i++)
        curl_multi_perform(multi, &running), curl_multi_wait(multi, NULL, 0, 10, NULL);
    ck_assert_int_eq(running, 0); // the client saw the connection go, well before 20 s
    curl_multi_remove_handle(multi, c);
    curl_easy_cleanup(c);
    curl_multi_cleanup(multi);
    ck_assert_int_eq(hk_sink_listen(sink), 0);
}
END_TEST

// ---- control API ----

static long control(const char *method, const char *path, const char *json, http_res_t *res)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    http_do(NULL, method, path, json, json ? strlen(json) : 0, h, 0, res);
    curl_slist_free_all(h);
    ck_assert_msg(res->rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(res->rc));
    return res->status;
}

START_TEST(test_control_api_sets_rules_windows_and_sequences)
{
    http_res_t res;
    ck_assert_int_eq(
        control("POST", "/_sink/rules",
                "{\"prefix\":\"/r\",\"status\":429,\"delay_ms\":0,\"retry_after\":\"7\"}", &res),
        200);
    hookd_post("/r/1", "evt_r", "{}", NULL, &res);
    ck_assert_int_eq(res.status, 429);
    ck_assert_str_eq(res.retry_after, "7");
    ck_assert_int_eq(control("POST", "/_sink/rules", "{\"prefix\":\"/r\",\"status\":0}", &res),
                     200);
    ck_assert_int_eq(post_status("/r/1"), 200);
    ck_assert_int_eq(
        control("POST", "/_sink/rules", "{\"prefix\":\"/s\",\"sequence\":[502,201]}", &res), 200);
    ck_assert_int_eq(post_status("/s"), 502);
    ck_assert_int_eq(post_status("/s"), 201);
    ck_assert_int_eq(control("POST", "/_sink/rules",
                             "{\"prefix\":\"/o\",\"status\":503,\"for_ms\":60000}", &res),
                     200);
    ck_assert_int_eq(post_status("/o"), 503);
    // Bad bodies are refused with a reason, and change nothing.
    const char *bad[] = {"",
                         "[]",
                         "{\"status\":503}",
                         "{\"prefix\":\"x\",\"status\":503}",
                         "{\"prefix\":\"/o\",\"status\":\"503\"}",
                         "{\"prefix\":\"/o\",\"status\":700}",
                         "{\"prefix\":\"/o\",\"sequence\":[503,1]}",
                         "{\"prefix\":\"/o\",\"retry_after\":\"a\\nb\",\"status\":429}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(control("POST", "/_sink/rules", bad[i], &res) == 400, "%s: %ld", bad[i],
                      res.status);
        ck_assert_ptr_nonnull(strstr(res.body, "\"error\""));
    }
    ck_assert_int_eq(post_status("/o"), 503);
    ck_assert_int_eq(control("GET", "/_sink/nope", NULL, &res), 404);
}
END_TEST

START_TEST(test_control_api_stats_requests_and_reset_are_not_counted)
{
    http_res_t res;
    hookd_post("/status/500", "evt_c", "{\"k\":1}", NULL, &res);
    ck_assert_int_eq(control("GET", "/_sink/stats", NULL, &res), 200);
    ck_assert_ptr_nonnull(strstr(res.body, "\"requests\":1,"));
    ck_assert_int_eq(control("GET", "/_sink/requests", NULL, &res), 200);
    ck_assert_ptr_nonnull(strstr(res.body, "\"path\":\"/status/500\""));
    ck_assert_ptr_nonnull(strstr(res.body, "\"webhook_id\":\"evt_c\""));
    ck_assert_ptr_nonnull(strstr(res.body, "\"status\":500"));
    ck_assert_ptr_null(strstr(res.body, "/_sink"));
    ck_assert_uint_eq(stats().requests, 1);
    ck_assert_int_eq(control("POST", "/_sink/reset", "", &res), 200);
    ck_assert_uint_eq(stats().requests, 0);
}
END_TEST

START_TEST(test_control_api_refuse_answers_then_closes_then_reopens)
{
    http_res_t res;
    ck_assert_int_eq(control("POST", "/_sink/refuse", "{\"for_ms\":0}", &res), 400);
    ck_assert_int_eq(control("POST", "/_sink/refuse", "{\"for_ms\":1500}", &res), 200);
    int refused = 0, back = 0;
    for (int i = 0; i < 1000 && !back; i++) {
        http_do(NULL, "GET", "/ok", NULL, 0, NULL, 2000, &res);
        refused |= res.rc == CURLE_COULDNT_CONNECT;
        back = refused && res.rc == CURLE_OK;
        sleep_ms(10);
    }
    ck_assert_msg(refused, "the port never refused a connection");
    ck_assert_msg(back, "the port did not open again");
}
END_TEST

// Runs fn with stdout going to a temp file; returns the file (rewound).
static FILE *capture_stdout(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    ck_assert_ptr_nonnull(tmp);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(tmp), STDOUT_FILENO);
    fn();
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    return tmp;
}

static void logged_requests(void)
{
    hk_sink_opts_t opts = {.threads = 2, .secrets = SECRET_A, .log_requests = 1};
    sink_restart(&opts);
    http_res_t res;
    hookd_post("/ok", "evt_l1", "{}", SECRET_A, &res);
    hookd_post("/slow/150", "evt_l2", "{}", SECRET_B, &res);
    http_do(NULL, "GET", "/_sink/stats", NULL, 0, NULL, 0, &res); // not logged
    http_do(NULL, "POST", "/reset", "{}", 2, NULL, 0, &res);
    // The log line is written when the request finishes, after the answer left.
    for (int i = 0; i < 200 && hk_sink_pending(sink) > 0; i++)
        sleep_ms(10);
    sink_restart(&opts); // stop: every line is out
}

START_TEST(test_request_log_has_one_json_line_per_request)
{
    FILE *f = capture_stdout(logged_requests);
    char line[2048];
    json_t *l[4] = {0};
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        ck_assert_int_lt(n, 3);
        l[n] = json_loads(line, 0, NULL);
        ck_assert_msg(l[n] != NULL, "not JSON: %s", line);
        n++;
    }
    fclose(f);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(json_string_value(json_object_get(l[0], "path")), "/ok");
    ck_assert_str_eq(json_string_value(json_object_get(l[0], "method")), "POST");
    ck_assert_str_eq(json_string_value(json_object_get(l[0], "webhook_id")), "evt_l1");
    ck_assert(json_is_true(json_object_get(l[0], "signature_valid")));
    ck_assert_int_eq(json_integer_value(json_object_get(l[0], "status")), 200);
    ck_assert(json_is_integer(json_object_get(l[0], "ts_ms")));
    ck_assert_str_eq(json_string_value(json_object_get(l[1], "path")), "/slow/150");
    ck_assert(json_is_false(json_object_get(l[1], "signature_valid"))); // signed with B
    ck_assert_int_ge(json_integer_value(json_object_get(l[1], "latency_ms")), 150);
    ck_assert_str_eq(json_string_value(json_object_get(l[2], "path")), "/reset");
    ck_assert_int_eq(json_integer_value(json_object_get(l[2], "status")), 0);
    for (int i = 0; i < n; i++)
        json_decref(l[i]);
}
END_TEST

// ---- TLS ----

static char tls_dir[64];
static char tls_ca[128]; // the running sink's CA, written by tls_up

static void tls_setup(void)
{
    snprintf(tls_dir, sizeof tls_dir, "/tmp/check_sink_tls-XXXXXX");
    ck_assert(mkdtemp(tls_dir) != NULL);
    snprintf(tls_ca, sizeof tls_ca, "%s/ca.pem", tls_dir);
}

static void tls_teardown(void)
{
    hk_sink_stop(sink);
    sink = NULL;
    unlink(tls_ca);
    rmdir(tls_dir);
}

// Starts the sink with HTTPS of `kind` (secret A) and writes its CA to tls_ca.
static void tls_up(hk_sinktls_kind_t kind)
{
    hk_sink_opts_t opts = {.threads = 2, .secrets = SECRET_A, .tls = kind};
    char err[256] = "";
    sink = hk_sink_start(&opts, err, sizeof err);
    ck_assert_msg(sink != NULL, "hk_sink_start: %s", err);
    ck_assert_int_eq(hk_sink_tls(sink), kind);
    ck_assert_ptr_nonnull(hk_sink_ca_pem(sink));
    ck_assert_int_eq(hk_sinktls_write(hk_sink_ca_pem(sink), tls_ca, err, sizeof err), 0);
}

typedef struct tls_res {
    CURLcode rc;
    long status;
    char error[CURL_ERROR_SIZE];
} tls_res_t;

// POSTs a signed {} to <scheme>://<host>:<port>/ok; ca NULL: curl's own CA bundle.
static tls_res_t tls_post_to(int port, const char *scheme, const char *host, const char *ca,
                             bool verify_host)
{
    tls_res_t res = {0};
    char url[256];
    snprintf(url, sizeof url, "%s://%s:%d/ok", scheme, host, port);
    struct curl_slist *h = hookd_headers("evt_tls", (int64_t)time(NULL), "{}", SECRET_A);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, res.error);
    if (ca != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, verify_host ? 2L : 0L);
    // localhost resolves to ::1 first; the sink listens on 127.0.0.1 only.
    struct curl_slist *resolve = NULL;
    char entry[64];
    snprintf(entry, sizeof entry, "localhost:%d:127.0.0.1", port);
    resolve = curl_slist_append(resolve, entry);
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    res.rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res.status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    curl_slist_free_all(resolve);
    return res;
}

static tls_res_t tls_post(const char *scheme, const char *host, const char *ca, bool verify_host)
{
    return tls_post_to(hk_sink_port(sink), scheme, host, ca, verify_host);
}

// The sink's certificate as OpenSSL sees it, checked against its own CA.
static X509 *tls_server_cert(hk_sinktls_kind_t kind)
{
    hk_sinktls_t *t = hk_sinktls_new(kind, NULL, 0);
    ck_assert_ptr_nonnull(t);
    BIO *b = BIO_new_mem_buf(hk_sinktls_cert_pem(t), -1);
    X509 *cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_mem_buf(hk_sinktls_ca_pem(t), -1);
    X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    ck_assert(cert != NULL && ca != NULL);
    ck_assert_int_eq(X509_check_ca(ca), 1);
    ck_assert_int_eq(X509_check_issued(ca, cert), X509_V_OK);
    EVP_PKEY *ca_key = X509_get0_pubkey(ca);
    ck_assert_int_eq(X509_verify(cert, ca_key), 1);
    X509_free(ca);
    hk_sinktls_destroy(t);
    return cert;
}

START_TEST(test_tls_certificate_names_localhost_and_both_loopbacks_signed_by_a_ca)
{
    X509 *good = tls_server_cert(HK_SINKTLS_GOOD);
    ck_assert_int_eq(X509_check_host(good, "localhost", 0, 0, NULL), 1);
    ck_assert_int_eq(X509_check_ip_asc(good, "127.0.0.1", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(good, "::1", 0), 1);
    ck_assert_int_eq(X509_check_ca(good), 0);
    ck_assert_int_lt(X509_cmp_current_time(X509_get0_notBefore(good)), 0);
    ck_assert_int_gt(X509_cmp_current_time(X509_get0_notAfter(good)), 0);
    X509_free(good);

    X509 *expired = tls_server_cert(HK_SINKTLS_EXPIRED);
    ck_assert_int_eq(X509_check_ip_asc(expired, "127.0.0.1", 0), 1);
    ck_assert_int_lt(X509_cmp_current_time(X509_get0_notAfter(expired)), 0);
    X509_free(expired);

    X509 *wrong = tls_server_cert(HK_SINKTLS_WRONG_HOST);
    ck_assert_int_eq(X509_check_host(wrong, "localhost", 0, 0, NULL), 0);
    ck_assert_int_eq(X509_check_ip_asc(wrong, "127.0.0.1", 0), 0);
    ck_assert_int_eq(X509_check_ip_asc(wrong, "::1", 0), 0);
    ck_assert_int_gt(X509_cmp_current_time(X509_get0_notAfter(wrong)), 0);
    X509_free(wrong);
    ck_assert_ptr_null(hk_sinktls_new((hk_sinktls_kind_t)7, NULL, 0));
}
END_TEST

START_TEST(test_tls_sink_is_verified_with_its_ca_and_checks_signatures)
{
    tls_up(HK_SINKTLS_GOOD);
    tls_res_t r = tls_post("https", "127.0.0.1", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_OK && r.status == 200, "curl %d status %ld: %s", r.rc, r.status,
                  r.error);
    r = tls_post("https", "localhost", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_OK && r.status == 200, "curl %d status %ld: %s", r.rc, r.status,
                  r.error);
    hk_sink_stats_t st = stats();
    ck_assert_uint_eq(st.requests, 2);
    ck_assert_uint_eq(st.ok, 2);
    ck_assert_uint_eq(st.bad_signature, 0);
    ck_assert_uint_eq(hk_sink_ok_count(sink, "evt_tls"), 2);
    // Listening again after a refusal serves the same certificate.
    ck_assert_int_eq(hk_sink_refuse(sink, 0), 0);
    ck_assert_int_eq(hk_sink_listen(sink), 0);
    r = tls_post("https", "127.0.0.1", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_OK && r.status == 200, "after relisten: curl %d: %s", r.rc,
                  r.error);
}
END_TEST

START_TEST(test_tls_sink_refuses_plain_http_and_clients_without_its_ca)
{
    tls_up(HK_SINKTLS_GOOD);
    tls_res_t r = tls_post("http", "127.0.0.1", NULL, true);
    ck_assert_msg(r.status != 200, "plain HTTP answered 200 (curl %d)", r.rc);
    r = tls_post("https", "127.0.0.1", NULL, true); // curl's own bundle
    ck_assert_msg(r.rc == CURLE_PEER_FAILED_VERIFICATION, "curl %d: %s", r.rc, r.error);
    ck_assert_uint_eq(stats().ok, 0);
}
END_TEST

START_TEST(test_tls_expired_certificate_fails_verification)
{
    tls_up(HK_SINKTLS_EXPIRED);
    tls_res_t r = tls_post("https", "127.0.0.1", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_PEER_FAILED_VERIFICATION, "curl %d: %s", r.rc, r.error);
    ck_assert_msg(strstr(r.error, "expired") != NULL, "%s", r.error);
    ck_assert_uint_eq(stats().requests, 0);
}
END_TEST

START_TEST(test_tls_wrong_host_fails_only_the_name_check)
{
    tls_up(HK_SINKTLS_WRONG_HOST);
    tls_res_t r = tls_post("https", "127.0.0.1", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_PEER_FAILED_VERIFICATION, "curl %d: %s", r.rc, r.error);
    r = tls_post("https", "localhost", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_PEER_FAILED_VERIFICATION, "curl %d: %s", r.rc, r.error);
    ck_assert_uint_eq(stats().requests, 0);
    // The chain itself is good: without the name check it is answered.
    r = tls_post("https", "127.0.0.1", tls_ca, false);
    ck_assert_msg(r.rc == CURLE_OK && r.status == 200, "curl %d: %s", r.rc, r.error);
}
END_TEST

START_TEST(test_plain_sink_has_no_ca)
{
    hk_sink_opts_t opts = {.threads = 2};
    sink_up(&opts);
    ck_assert_int_eq(hk_sink_tls(sink), 0);
    ck_assert_ptr_null(hk_sink_ca_pem(sink));
    char err[256] = "";
    ck_assert_int_eq(hk_sinktls_write(hk_sink_ca_pem(sink), tls_ca, err, sizeof err), -1);
    ck_assert_msg(*err != '\0', "no reason given");
}
END_TEST

// hookd-sink (build/hk-sink) with `args`: its exit status; its first stdout line
// in `line` when `keep` is not NULL, and the process left running in *keep.
static int hookd_sink_run(const char *const *args, char *line, size_t line_size, pid_t *keep,
                          FILE **out)
{
    char bin[512];
    snprintf(bin, sizeof bin, "%s/hk-sink", HK_BUILD_DIR);
    const char *argv[12] = {bin};
    for (int i = 0; args[i] && i < 10; i++)
        argv[i + 1] = args[i];
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    if (keep != NULL) {
        ck_assert_msg(fgets(line, (int)line_size, f) != NULL, "hookd-sink printed nothing");
        *keep = pid;
        *out = f;
        return 0;
    }
    int status;
    fclose(f);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(test_hookd_sink_tls_writes_its_ca_and_serves_https)
{
    const char *args[] = {"--tls",   "--ca-out", tls_ca,   "--no-log",
                          "--quiet", "--secret", SECRET_A, NULL};
    char line[512];
    pid_t pid;
    FILE *out;
    hookd_sink_run(args, line, sizeof line, &pid, &out);
    json_t *j = json_loads(line, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", line);
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "sink_listening");
    ck_assert_str_eq(json_string_value(json_object_get(j, "scheme")), "https");
    int port = (int)json_integer_value(json_object_get(j, "port"));
    json_decref(j);
    tls_res_t r = tls_post_to(port, "https", "127.0.0.1", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_OK && r.status == 200, "curl %d status %ld: %s", r.rc, r.status,
                  r.error);
    r = tls_post_to(port, "https", "127.0.0.1", NULL, true);
    ck_assert_msg(r.rc == CURLE_PEER_FAILED_VERIFICATION, "curl %d: %s", r.rc, r.error);
    kill(pid, SIGTERM);
    ck_assert_msg(fgets(line, sizeof line, out) != NULL, "no stats line");
    fclose(out);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_msg(strstr(line, "\"ok\":1,") != NULL && strstr(line, "\"bad_signature\":0") != NULL,
                  "stats: %s", line);

    // The bad certificates are flags too; --ca-out alone or two TLS modes are usage errors.
    const char *expired[] = {"--tls-expired", "--ca-out", tls_ca, "--no-log", "--quiet", NULL};
    hookd_sink_run(expired, line, sizeof line, &pid, &out);
    j = json_loads(line, 0, NULL);
    port = (int)json_integer_value(json_object_get(j, "port"));
    json_decref(j);
    r = tls_post_to(port, "https", "127.0.0.1", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_PEER_FAILED_VERIFICATION && strstr(r.error, "expired"),
                  "curl %d: %s", r.rc, r.error);
    kill(pid, SIGTERM);
    fclose(out);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    const char *wrong[] = {"--tls-wrong-host", "--ca-out", tls_ca, "--no-log", "--quiet", NULL};
    hookd_sink_run(wrong, line, sizeof line, &pid, &out);
    j = json_loads(line, 0, NULL);
    port = (int)json_integer_value(json_object_get(j, "port"));
    json_decref(j);
    r = tls_post_to(port, "https", "127.0.0.1", tls_ca, true);
    ck_assert_msg(r.rc == CURLE_PEER_FAILED_VERIFICATION && strstr(r.error, "host name"),
                  "curl %d: %s", r.rc, r.error);
    kill(pid, SIGTERM);
    fclose(out);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    const char *no_tls[] = {"--ca-out", tls_ca, NULL};
    ck_assert_int_eq(hookd_sink_run(no_tls, NULL, 0, NULL, NULL), 2);
    const char *two[] = {"--tls", "--tls-expired", NULL};
    ck_assert_int_eq(hookd_sink_run(two, NULL, 0, NULL, NULL), 2);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->curl = true;
    run->print_from_env = true;
    Suite *s = suite_create("sink");
    struct {
        const char *name;
        const TTest *tests[16];
    } cases[] = {
        {"modes",
         {test_ok_answers_200_and_records_every_header, test_other_paths_answer_200,
          test_status_path_answers_its_code, test_status_path_rejects_codes_outside_100_599,
          test_slow_answers_after_its_delay, test_hang_never_answers_within_client_timeout,
          test_waiting_request_is_let_go_when_client_leaves, test_flap_alternates_500_then_200,
          test_retry_after_path_answers_429_with_header, test_delays_do_not_block_answering_threads,
          test_random_fail_answers_503_at_its_rate_from_one_seeded_sequence}},
        {"rules",
         {test_rule_overrides_builtin_mode_with_retry_after, test_rule_longest_prefix_wins,
          test_rule_status_zero_removes_it_and_same_prefix_replaces,
          test_rule_delay_delays_the_answer, test_rule_rejects_bad_arguments}},
        {"signatures",
         {test_signature_valid_with_any_configured_secret, test_signature_invalid_is_counted,
          test_signature_missing_is_counted_when_secrets_are_set,
          test_signature_not_checked_without_secrets, test_start_rejects_malformed_secret,
          test_start_fails_on_a_busy_port}},
        {"requests",
         {test_bad_headers_are_counted, test_methods_content_type_and_empty_body_recorded,
          test_body_up_to_8mib_is_kept_and_larger_answers_413}},
        {"counters",
         {test_duplicates_and_ok_count_per_webhook_id,
          test_stats_endpoint_serves_json_and_is_not_counted,
          test_reset_forgets_records_and_counters_but_keeps_rules,
          test_keepalive_connection_is_reused, test_many_clients_and_ids_are_all_counted}},
        {"faults",
         {test_seq_path_answers_its_codes_in_turn_then_the_last,
          test_sequence_rule_answers_in_turn_below_its_prefix,
          test_outage_window_answers_its_status_then_lapses, test_reset_path_resets_the_connection,
          test_close_mid_path_closes_after_part_of_the_body,
          test_refuse_closes_the_port_and_listen_reopens_it, test_refuse_drops_waiting_requests}},
        {"control",
         {test_control_api_sets_rules_windows_and_sequences,
          test_control_api_stats_requests_and_reset_are_not_counted,
          test_control_api_refuse_answers_then_closes_then_reopens,
          test_request_log_has_one_json_line_per_request}},
        {"stop",
         {test_stop_returns_promptly_while_hang_is_open,
          test_stop_returns_promptly_while_slow_is_open,
          test_stop_closes_idle_keepalive_connections, test_stop_returns_promptly_under_load}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        for (size_t j = 0; j < 16 && cases[i].tests[j] != NULL; j++)
            tcase_add_test(tc, cases[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    // Each TLS test starts its own sink.
    TCase *tls = tcase_create("tls");
    tcase_add_checked_fixture(tls, tls_setup, tls_teardown);
    tcase_set_timeout(tls, 120);
    tcase_add_test(tls, test_tls_certificate_names_localhost_and_both_loopbacks_signed_by_a_ca);
    tcase_add_test(tls, test_tls_sink_is_verified_with_its_ca_and_checks_signatures);
    tcase_add_test(tls, test_tls_sink_refuses_plain_http_and_clients_without_its_ca);
    tcase_add_test(tls, test_tls_expired_certificate_fails_verification);
    tcase_add_test(tls, test_tls_wrong_host_fails_only_the_name_check);
    tcase_add_test(tls, test_plain_sink_has_no_ca);
    tcase_add_test(tls, test_hookd_sink_tls_writes_its_ca_and_serves_https);
    suite_add_tcase(s, tls);
    return s;
}
