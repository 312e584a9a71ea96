// Unit tests for model/job.c: the job contract of DESIGN §4. Every input is handed to
// the parser in an exact-size heap buffer without a trailing NUL, so ASan catches reads
// past the message value.
#include "model/job.h"

#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/ck_main.h"

#define ERRSZ 512

static const hk_job_src_t k_src = {
    .topic = "jobs", .partition = 3, .offset = 1042, .key = "user-42", .key_len = 7};
static const hk_job_defaults_t k_defs = {
    .max_attempts = 10, .timeout_ms = 10000, .max_job_bytes = 1024 * 1024};

static char g_err[ERRSZ];

static hk_job_t *parse_src(const void *in, size_t len, const hk_job_src_t *src,
                           const hk_job_defaults_t *defs)
{
    void *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, in, len);
    memset(g_err, 'X', sizeof g_err); // the parser must terminate what it writes
    hk_job_t *job = hk_job_parse(copy, len, src, defs, g_err, sizeof g_err);
    free(copy);
    ck_assert_ptr_nonnull(memchr(g_err, '\0', sizeof g_err));
    return job;
}

static hk_job_t *parse(const char *json)
{
    return parse_src(json, strlen(json), &k_src, &k_defs);
}

static hk_job_t *parse_ok(const char *json)
{
    hk_job_t *job = parse(json);
    ck_assert_msg(job != NULL, "rejected %s: %s", json, g_err);
    ck_assert_str_eq(g_err, "");
    return job;
}

// The job and what it points to sit inside its one block (or are static constants).
static bool in_block(const hk_job_t *job, const void *p)
{
    const char *base = (const char *)job;
    return (const char *)p >= base && (const char *)p < base + job->mem_bytes;
}

static void assert_reason_printable(void)
{
    ck_assert_msg(g_err[0] != '\0', "empty reason");
    for (const char *p = g_err; *p; p++)
        ck_assert_msg(*p >= 0x20 && *p < 0x7f, "unprintable byte 0x%02x in reason: %s",
                      (unsigned char)*p, g_err);
}

// ---- valid jobs ----

START_TEST(test_minimal_webhook_gets_defaults)
{
    hk_job_t *job = parse_ok("{\"url\":\"https://example.com/hook\"}");
    ck_assert_int_eq(job->type, HK_JOB_WEBHOOK);
    ck_assert_str_eq(job->id, "jobs-3-1042");
    ck_assert_str_eq(job->tenant, "default");
    ck_assert_str_eq(job->url, "https://example.com/hook");
    ck_assert_str_eq(job->method, "POST");
    ck_assert_ptr_null(job->headers);
    ck_assert_uint_eq(job->headers_cnt, 0);
    ck_assert_ptr_null(job->body);
    ck_assert_uint_eq(job->body_len, 0);
    ck_assert_ptr_null(job->content_type);
    ck_assert_int_eq(job->max_attempts, 10);
    ck_assert_int_eq(job->timeout_ms, 10000);
    ck_assert_int_eq(job->expires_at_ms, 0);
    ck_assert_str_eq(job->ordering_key, "user-42");
    ck_assert_ptr_null(job->items);
    ck_assert_uint_eq(job->items_cnt, 0);
    ck_assert(job->max_failure_ratio == 1.0);
    ck_assert_uint_ge(job->mem_bytes, sizeof *job);
    ck_assert(in_block(job, job->id));
    ck_assert(in_block(job, job->url));
    ck_assert(in_block(job, job->ordering_key));
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_all_fields_are_read)
{
    hk_job_t *job = parse_ok("{\"id\":\"order-7:paid_1\",\"type\":\"webhook\",\"tenant\":\"acme\","
                             "\"url\":\"http://hooks.example.com:8080/a/b?x=1&y=%20\","
                             "\"method\":\"PUT\",\"headers\":{\"Authorization\":\"Bearer t\","
                             "\"X-Trace\":\"a\\tb\"},\"body\":{\"a\":[1,2.5,\"x\"],\"b\":null},"
                             "\"max_attempts\":3,\"timeout_ms\":2500,"
                             "\"expires_at\":\"2026-11-21T10:00:00Z\",\"ordering_key\":\"cust-9\","
                             "\"future_field\":{\"ignored\":true}}");
    ck_assert_int_eq(job->type, HK_JOB_WEBHOOK);
    ck_assert_str_eq(job->id, "order-7:paid_1");
    ck_assert_str_eq(job->tenant, "acme");
    ck_assert_str_eq(job->url, "http://hooks.example.com:8080/a/b?x=1&y=%20");
    ck_assert_str_eq(job->method, "PUT");
    ck_assert_uint_eq(job->headers_cnt, 2);
    ck_assert_str_eq(job->headers[0].name, "Authorization");
    ck_assert_str_eq(job->headers[0].value, "Bearer t");
    ck_assert_str_eq(job->headers[1].name, "X-Trace");
    ck_assert_str_eq(job->headers[1].value, "a\tb");
    ck_assert_str_eq(job->body, "{\"a\":[1,2.5,\"x\"],\"b\":null}");
    ck_assert_uint_eq(job->body_len, strlen(job->body));
    ck_assert_str_eq(job->content_type, "application/json");
    ck_assert_int_eq(job->max_attempts, 3);
    ck_assert_int_eq(job->timeout_ms, 2500);
    ck_assert_int_eq(job->expires_at_ms, INT64_C(1795255200000));
    ck_assert_str_eq(job->ordering_key, "cust-9");
    ck_assert(in_block(job, job->headers));
    ck_assert(in_block(job, job->headers[1].value));
    ck_assert(in_block(job, job->body));
    ck_assert(in_block(job, job->tenant));
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_every_method_is_accepted)
{
    static const char *const methods[] = {"POST", "PUT", "PATCH", "DELETE", "GET"};
    for (size_t i = 0; i < 5; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"url\":\"https://e.com/\",\"method\":\"%s\"}", methods[i]);
        hk_job_t *job = parse_ok(json);
        ck_assert_str_eq(job->method, methods[i]);
        hk_job_destroy(job);
    }
}
END_TEST

START_TEST(test_derived_id_sanitizes_topic)
{
    hk_job_src_t src = {.topic = "my.jobs/eu west", .partition = 0, .offset = 7};
    const char *json = "{\"url\":\"https://e.com/\"}";
    hk_job_t *job = parse_src(json, strlen(json), &src, &k_defs);
    ck_assert_ptr_nonnull(job);
    ck_assert_str_eq(job->id, "my_jobs_eu_west-0-7");
    ck_assert_ptr_null(job->ordering_key);
    hk_job_destroy(job);

    // A long topic is cut so the id still fits 255 characters.
    char topic[400];
    memset(topic, 't', sizeof topic - 1);
    topic[sizeof topic - 1] = '\0';
    src = (hk_job_src_t){.topic = topic, .partition = 11, .offset = INT64_C(9000000000)};
    job = parse_src(json, strlen(json), &src, &k_defs);
    ck_assert_ptr_nonnull(job);
    ck_assert_uint_eq(strlen(job->id), 255);
    ck_assert_str_eq(job->id + 255 - strlen("-11-9000000000"), "-11-9000000000");
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_id_required_without_kafka_source)
{
    const char *json = "{\"url\":\"https://e.com/\"}";
    ck_assert_ptr_null(parse_src(json, strlen(json), NULL, &k_defs));
    ck_assert_ptr_nonnull(strstr(g_err, "$.id: required"));
    json = "{\"id\":\"x\",\"url\":\"https://e.com/\"}";
    hk_job_t *job = parse_src(json, strlen(json), NULL, NULL); // built-in defaults
    ck_assert_ptr_nonnull(job);
    ck_assert_str_eq(job->id, "x");
    ck_assert_ptr_null(job->ordering_key);
    ck_assert_int_eq(job->max_attempts, 10);
    ck_assert_int_eq(job->timeout_ms, 10000);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_defaults_come_from_config)
{
    hk_job_defaults_t defs = {.max_attempts = 4, .timeout_ms = 777, .max_job_bytes = 4096};
    const char *json = "{\"url\":\"https://e.com/\",\"tenant\":null,\"method\":null,\"body\":null}";
    hk_job_t *job = parse_src(json, strlen(json), &k_src, &defs);
    ck_assert_msg(job != NULL, "%s", g_err);
    ck_assert_int_eq(job->max_attempts, 4);
    ck_assert_int_eq(job->timeout_ms, 777);
    ck_assert_str_eq(job->tenant, "default");
    ck_assert_str_eq(job->method, "POST");
    ck_assert_ptr_null(job->body);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_ordering_key_from_kafka_key)
{
    const char *json = "{\"url\":\"https://e.com/\"}";
    struct {
        const char *key;
        size_t len;
        const char *want;
    } cases[] = {
        {"user-42", 7, "user-42"},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
        {"a\0b", 3, NULL},         // NUL
        {"\xff\xfe", 2, NULL},     // not UTF-8
        {"\xc0\xaf", 2, NULL},     // overlong
        {"\xed\xa0\x80", 3, NULL}, // encoded surrogate
        {"\xe2\x82", 2, NULL},     // truncated sequence
        {"", 0, NULL},
        {NULL, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hk_job_src_t src = k_src;
        src.key = cases[i].key;
        src.key_len = cases[i].len;
        hk_job_t *job = parse_src(json, strlen(json), &src, &k_defs);
        ck_assert_ptr_nonnull(job);
        if (cases[i].want)
            ck_assert_str_eq(job->ordering_key, cases[i].want);
        else
            ck_assert_msg(job->ordering_key == NULL, "case %zu", i);
        hk_job_destroy(job);
    }
    // The field wins over the Kafka key.
    hk_job_t *job = parse_ok("{\"url\":\"https://e.com/\",\"ordering_key\":\"k1\"}");
    ck_assert_str_eq(job->ordering_key, "k1");
    hk_job_destroy(job);
}
END_TEST

// A Kafka key used as the ordering key is at most 255 bytes as it stands; a
// longer one becomes "sha256:<64 hex>" of its bytes: the same key, the same
// chain, in bounded memory, and the job is not lost.
START_TEST(test_long_kafka_key_is_hashed_into_the_ordering_key)
{
    const char *json = "{\"url\":\"https://e.com/\"}";
    static char key[70000];
    memset(key, 'k', sizeof(key));
    hk_job_src_t src = k_src;
    src.key = key;
    src.key_len = 255; // the longest taken as it stands
    hk_job_t *job = parse_src(json, strlen(json), &src, &k_defs);
    ck_assert_ptr_nonnull(job);
    ck_assert_uint_eq(strlen(job->ordering_key), 255);
    ck_assert_mem_eq(job->ordering_key, key, 255);
    hk_job_destroy(job);

    src.key_len = 256; // one past it
    job = parse_src(json, strlen(json), &src, &k_defs);
    ck_assert_ptr_nonnull(job);
    // printf 'k%.0s' $(seq 256) | sha256sum
    ck_assert_str_eq(job->ordering_key,
                     "sha256:ce16fe78208a4e93f7158e62393680e025b2ad584f4e875ce903a654bb74cf93");
    hk_job_destroy(job);

    // Different long keys stay apart; the same long key maps to the same chain.
    src.key_len = sizeof(key);
    job = parse_src(json, strlen(json), &src, &k_defs);
    ck_assert_ptr_nonnull(job);
    ck_assert_uint_eq(strlen(job->ordering_key), 7 + 64);
    char first[80];
    snprintf(first, sizeof(first), "%s", job->ordering_key);
    hk_job_destroy(job);
    job = parse_src(json, strlen(json), &src, &k_defs);
    ck_assert_str_eq(job->ordering_key, first);
    hk_job_destroy(job);
    key[sizeof(key) - 1] = 'x';
    job = parse_src(json, strlen(json), &src, &k_defs);
    ck_assert_str_ne(job->ordering_key, first);
    ck_assert(strncmp(job->ordering_key, "sha256:", 7) == 0);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_base64_body_is_decoded)
{
    hk_job_t *job = parse_ok("{\"url\":\"https://e.com/\",\"body_base64\":\"aGVsbG8AIHdvcmxk\","
                             "\"content_type\":\"application/octet-stream\"}");
    ck_assert_uint_eq(job->body_len, 12);
    ck_assert_mem_eq(job->body, "hello\0 world", 12);
    ck_assert_str_eq(job->content_type, "application/octet-stream");
    ck_assert(in_block(job, job->body));
    ck_assert(in_block(job, job->content_type));
    hk_job_destroy(job);

    static const struct {
        const char *b64;
        const char *raw;
    } pads[] = {{"", ""}, {"YQ==", "a"}, {"YWI=", "ab"}, {"YWJj", "abc"}, {"+/+/", "\xfb\xff\xbf"}};
    for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"url\":\"https://e.com/\",\"body_base64\":\"%s\",\"content_type\":\"a/b\"}",
                 pads[i].b64);
        job = parse_ok(json);
        ck_assert_ptr_nonnull(job->body);
        ck_assert_uint_eq(job->body_len, strlen(pads[i].raw));
        ck_assert_mem_eq(job->body, pads[i].raw, job->body_len);
        hk_job_destroy(job);
    }
}
END_TEST

START_TEST(test_content_type_header_moves_to_content_type)
{
    hk_job_t *job = parse_ok("{\"url\":\"https://e.com/\",\"body\":[1],\"headers\":{\"X-A\":\"1\","
                             "\"content-type\":\"application/cloudevents+json\",\"X-B\":\"2\"}}");
    ck_assert_str_eq(job->content_type, "application/cloudevents+json");
    ck_assert_uint_eq(job->headers_cnt, 2);
    ck_assert_str_eq(job->headers[0].name, "X-A");
    ck_assert_str_eq(job->headers[1].name, "X-B");
    hk_job_destroy(job);

    // A Content-Type header satisfies body_base64; the content_type field wins over it.
    job = parse_ok("{\"url\":\"https://e.com/\",\"body_base64\":\"YQ==\","
                   "\"headers\":{\"Content-Type\":\"text/plain\"}}");
    ck_assert_str_eq(job->content_type, "text/plain");
    ck_assert_uint_eq(job->headers_cnt, 0);
    hk_job_destroy(job);
    job = parse_ok("{\"url\":\"https://e.com/\",\"body\":\"x\",\"content_type\":\"text/x-a\","
                   "\"headers\":{\"Content-Type\":\"text/plain\"}}");
    ck_assert_str_eq(job->content_type, "text/x-a");
    hk_job_destroy(job);

    // No body, no content type.
    job = parse_ok("{\"url\":\"https://e.com/\",\"method\":\"GET\","
                   "\"headers\":{\"Content-Type\":\"text/plain\"}}");
    ck_assert_ptr_null(job->content_type);
    ck_assert_uint_eq(job->headers_cnt, 0);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_body_is_compact_json_of_any_value)
{
    static const struct {
        const char *body;
        const char *sent;
    } cases[] = {
        {"{ \"a\" : [ 1 , 2 ] , \"z\" : { } }", "{\"a\":[1,2],\"z\":{}}"},
        {"\"hi\\n\"", "\"hi\\n\""},
        {"\"\"", "\"\""},
        {"0.1", "0.1"},
        {"-12", "-12"},
        {"true", "true"},
        {"[]", "[]"},
        {"\t[\r\n]\n", "[]"},
        // Escapes stay as written, raw UTF-8 too.
        {"\"caf\\u00e9 \\ud83d\\ude00\"", "\"caf\\u00e9 \\ud83d\\ude00\""},
        {"\"caf\xc3\xa9 \\/\"", "\"caf\xc3\xa9 \\/\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"url\":\"https://e.com/\",\"body\":%s}", cases[i].body);
        hk_job_t *job = parse_ok(json);
        ck_assert_str_eq(job->body, cases[i].sent);
        ck_assert_uint_eq(job->body_len, strlen(cases[i].sent));
        ck_assert_str_eq(job->content_type, "application/json");
        hk_job_destroy(job);
    }
}
END_TEST

START_TEST(test_body_is_the_producers_bytes_compacted)
{
    hk_job_t *job = parse_ok("\n {\"url\":\"https://e.com/\",\n \"body\" :\t{\"amount\": 19.90, "
                             "\"x\": 0.1, \"e\": 1e2,\n  \"s\": \"caf\\u00e9\", \"n\": [1, 2 , "
                             "{\"a\" : null}]\r\n }\n}\n");
    static const char want[] =
        "{\"amount\":19.90,\"x\":0.1,\"e\":1e2,\"s\":\"caf\\u00e9\",\"n\":[1,2,{\"a\":null}]}";
    ck_assert_str_eq(job->body, want);
    ck_assert_uint_eq(job->body_len, sizeof want - 1);
    ck_assert_str_eq(job->content_type, "application/json");
    ck_assert(in_block(job, job->body));
    hk_job_destroy(job);

    // Key order, duplicate-looking text inside strings and numbers in every form survive.
    job = parse_ok("{\"body\":{\"z\":-0, \"a\":1E+2, \"m\":[ 2.50e-3 , 100000000000000000000.0 ],"
                   "\"k\":\"{\\\"z\\\": 1,  \\\"a\\\" : 2}\"}, \"url\":\"https://e.com/\"}");
    ck_assert_str_eq(job->body, "{\"z\":-0,\"a\":1E+2,\"m\":[2.50e-3,100000000000000000000.0],"
                                "\"k\":\"{\\\"z\\\": 1,  \\\"a\\\" : 2}\"}");
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_scalar_body_keeps_its_bytes)
{
    static const struct {
        const char *body;
        const char *sent; // NULL: no body
    } cases[] = {
        {" \"a b\" ", "\"a b\""},
        {"\"  \"", "\"  \""},
        {"\"x\\\" y\\\\ \"", "\"x\\\" y\\\\ \""}, // escaped quote and backslash before spaces
        {"\"\\\\\"", "\"\\\\\""},
        {"-0.0", "-0.0"},
        {"\n-0.0\n", "-0.0"},
        {"0", "0"},
        {"true", "true"},
        {"false", "false"},
        {"null", NULL},
        {" null ", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"url\":\"https://e.com/\",\"body\":%s}", cases[i].body);
        hk_job_t *job = parse_ok(json);
        if (cases[i].sent) {
            ck_assert_str_eq(job->body, cases[i].sent);
            ck_assert_uint_eq(job->body_len, strlen(cases[i].sent));
            ck_assert_str_eq(job->content_type, "application/json");
        } else {
            ck_assert_msg(job->body == NULL, "case %zu: body %s", i, job->body);
            ck_assert_uint_eq(job->body_len, 0);
            ck_assert_ptr_null(job->content_type);
        }
        hk_job_destroy(job);
    }
}
END_TEST

START_TEST(test_body_key_written_with_escapes_is_found)
{
    hk_job_t *job = parse_ok("{\"url\":\"https://e.com/\",\"b\\u006fdy\":[1.50]}");
    ck_assert_str_eq(job->body, "[1.50]");
    hk_job_destroy(job);
    job = parse_ok("{\"url\":\"https://e.com/\",\"\\u0062\\u006F\\u0064\\u0079\" : 2.0}");
    ck_assert_str_eq(job->body, "2.0");
    hk_job_destroy(job);

    // Keys that only look like it are other fields.
    job = parse_ok("{\"url\":\"https://e.com/\",\"bodyx\":1,\"bod\":2,\"b\\u006fdy\\u0020\":3,"
                   "\"Body\":4,\"b\\\\ody\":5,\"\\u00e9body\":6}");
    ck_assert_ptr_null(job->body);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_nested_body_key_is_not_the_body)
{
    hk_job_t *job = parse_ok("{\"meta\":{\"body\":1},\"headers\":{\"body\":\"2\"},"
                             "\"note\":\"\\\"body\\\":3\",\"list\":[{\"body\":4}],"
                             "\"url\":\"https://e.com/\"}");
    ck_assert_ptr_null(job->body);
    ck_assert_uint_eq(job->headers_cnt, 1);
    ck_assert_str_eq(job->headers[0].name, "body");
    hk_job_destroy(job);

    job =
        parse_ok("{\"meta\":{\"body\":1},\"headers\":{\"body\":\"2\"},\"note\":\"\\\"body\\\":3\","
                 "\"list\":[{\"body\":4}],\"url\":\"https://e.com/\",\"body\":{\"body\":5}}");
    ck_assert_str_eq(job->body, "{\"body\":5}");
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_batch_item_bodies_are_the_producers_bytes)
{
    hk_job_t *job = parse_ok(
        "{\"type\":\"batch\",\"id\":\"b2\",\"url\":\"https://e.com/\",\"body\" : {\"batch\": 1.0},"
        "\"meta\":{\"items\":[{\"body\":0}]},\"items\" : [ {\"body\": {\"amount\": 19.90}} ,\n"
        "{\"note\":{\"body\":0}, \"b\\u006fdy\" : [ 1e2 ]},{\"url\":\"https://f.example/\"},"
        "{\"body\":\"{\\\"body\\\": 1}\",\"headers\":{\"Content-Type\":\"text/x-a\"}},"
        "{\"body\":null,\"body_base64\":\"YQ==\",\"content_type\":\"a/b\"}, {\"body\" : 0.10}]}");
    ck_assert_ptr_null(job->body); // a batch sends no body of its own
    ck_assert_uint_eq(job->items_cnt, 6);

    static const char *const want[] = {
        "{\"amount\":19.90}", "[1e2]", NULL, "\"{\\\"body\\\": 1}\"", "a", "0.10",
    };
    static const char *const ctype[] = {
        "application/json", "application/json", NULL, "text/x-a", "a/b", "application/json",
    };
    for (size_t i = 0; i < 6; i++) {
        const hk_job_t *it = &job->items[i];
        if (!want[i]) {
            // Items inherit missing fields from the batch, but not its body: "body" is
            // not a batch-level field (the batch's own is ignored).
            ck_assert_msg(it->body == NULL, "item %zu: body %s", i, it->body);
            ck_assert_ptr_null(it->content_type);
            continue;
        }
        ck_assert_str_eq(it->body, want[i]);
        ck_assert_uint_eq(it->body_len, strlen(want[i]));
        ck_assert_str_eq(it->content_type, ctype[i]);
        ck_assert(in_block(job, it->body));
    }
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_body_keeps_integers_beyond_int64)
{
    hk_job_t *job = parse_ok(
        "{\"url\":\"https://e.com/\",\"max_attempts\":3,\"body\":{\"big\": "
        "123456789012345678901234567890, \"neg\": -9223372036854775809, \"max\": "
        "9223372036854775807, \"min\": -9223372036854775808, \"over\": 9223372036854775808,"
        " \"r\": 99999999999999999999.5, \"s\": \"99999999999999999999\", \"l\": "
        "[18446744073709551616,-18446744073709551616]}}");
    ck_assert_str_eq(job->body, "{\"big\":123456789012345678901234567890,"
                                "\"neg\":-9223372036854775809,\"max\":9223372036854775807,"
                                "\"min\":-9223372036854775808,\"over\":9223372036854775808,"
                                "\"r\":99999999999999999999.5,\"s\":\"99999999999999999999\","
                                "\"l\":[18446744073709551616,-18446744073709551616]}");
    ck_assert_int_eq(job->max_attempts, 3);
    hk_job_destroy(job);

    job = parse_ok("{\"b\\u006fdy\":99999999999999999999,\"url\":\"https://e.com/\"}");
    ck_assert_str_eq(job->body, "99999999999999999999");
    hk_job_destroy(job);

    job = parse_ok("{\"type\":\"batch\",\"url\":\"https://e.com/\",\"items\":[{\"body\":1},"
                   "{\"body\": [ 99999999999999999999 ] ,\"timeout_ms\":200}]}");
    ck_assert_str_eq(job->items[0].body, "1");
    ck_assert_str_eq(job->items[1].body, "[99999999999999999999]");
    ck_assert_int_eq(job->items[1].timeout_ms, 200);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_batch_items_inherit_and_get_ids)
{
    hk_job_t *job = parse_ok(
        "{\"type\":\"batch\",\"id\":\"b1\",\"tenant\":\"acme\",\"url\":\"https://e.com/all\","
        "\"method\":\"PATCH\",\"headers\":{\"X-Batch\":\"1\",\"Content-Type\":\"text/plain\"},"
        "\"max_attempts\":5,\"timeout_ms\":3000,\"expires_at\":\"2026-11-21T10:00:00Z\","
        "\"max_failure_ratio\":0.25,\"body\":\"ignored for a batch\",\"items\":["
        "{\"body\":{\"n\":0}},"
        "{\"url\":\"http://other.example/x\",\"method\":\"DELETE\",\"tenant\":\"beta\","
        "\"headers\":{\"X-Item\":\"2\"},\"max_attempts\":1,\"timeout_ms\":100,"
        "\"expires_at\":\"2027-01-01T00:00:00Z\",\"ordering_key\":\"k\",\"id\":\"ignored\"},"
        "{\"type\":\"webhook\",\"body_base64\":\"YQ==\"}]}");
    ck_assert_int_eq(job->type, HK_JOB_BATCH);
    ck_assert_str_eq(job->id, "b1");
    ck_assert_ptr_null(job->body);
    ck_assert_ptr_null(job->content_type);
    ck_assert_str_eq(job->ordering_key, "user-42");
    ck_assert(job->max_failure_ratio == 0.25);
    ck_assert_uint_eq(job->items_cnt, 3);
    ck_assert(in_block(job, job->items));

    const hk_job_t *it = &job->items[0];
    ck_assert_int_eq(it->type, HK_JOB_WEBHOOK);
    ck_assert_str_eq(it->id, "b1:0");
    ck_assert_str_eq(it->tenant, "acme");
    ck_assert_str_eq(it->url, "https://e.com/all");
    ck_assert_str_eq(it->method, "PATCH");
    ck_assert_ptr_eq(it->headers, job->headers);
    ck_assert_uint_eq(it->headers_cnt, 1);
    ck_assert_str_eq(it->headers[0].name, "X-Batch");
    ck_assert_str_eq(it->body, "{\"n\":0}");
    ck_assert_str_eq(it->content_type, "text/plain"); // from the inherited headers
    ck_assert_int_eq(it->max_attempts, 5);
    ck_assert_int_eq(it->timeout_ms, 3000);
    ck_assert_int_eq(it->expires_at_ms, INT64_C(1795255200000));
    ck_assert_ptr_null(it->ordering_key);
    ck_assert_ptr_null(it->items);
    ck_assert_uint_eq(it->mem_bytes, 0);
    ck_assert(in_block(job, it->id));
    ck_assert(in_block(job, it->body));

    it = &job->items[1];
    ck_assert_str_eq(it->id, "b1:1");
    ck_assert_str_eq(it->tenant, "beta");
    ck_assert_str_eq(it->url, "http://other.example/x");
    ck_assert_str_eq(it->method, "DELETE");
    ck_assert_uint_eq(it->headers_cnt, 1);
    ck_assert_str_eq(it->headers[0].name, "X-Item");
    ck_assert_ptr_null(it->body);
    ck_assert_ptr_null(it->content_type);
    ck_assert_int_eq(it->max_attempts, 1);
    ck_assert_int_eq(it->timeout_ms, 100);
    ck_assert_int_eq(it->expires_at_ms, INT64_C(1798761600000));
    ck_assert_str_eq(it->ordering_key, "k");

    it = &job->items[2];
    ck_assert_str_eq(it->id, "b1:2");
    ck_assert_uint_eq(it->body_len, 1);
    ck_assert_str_eq(it->content_type, "text/plain");
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_batch_without_top_url_and_derived_id)
{
    hk_job_t *job = parse_ok("{\"type\":\"batch\",\"items\":[{\"url\":\"https://a.example/\"},"
                             "{\"url\":\"https://b.example/\"}]}");
    ck_assert_ptr_null(job->url);
    ck_assert_ptr_null(job->headers);
    ck_assert(job->max_failure_ratio == 1.0);
    ck_assert_str_eq(job->items[0].id, "jobs-3-1042:0");
    ck_assert_str_eq(job->items[1].id, "jobs-3-1042:1");
    ck_assert_str_eq(job->items[1].url, "https://b.example/");
    ck_assert_str_eq(job->items[1].tenant, "default");
    ck_assert_str_eq(job->items[1].method, "POST");
    ck_assert_int_eq(job->items[1].max_attempts, 10);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_batch_of_100000_items_is_one_block)
{
    size_t n = 100000, cap = n * 3 + 128;
    char *json = malloc(cap);
    ck_assert_ptr_nonnull(json);
    size_t len = (size_t)snprintf(json, cap,
                                  "{\"type\":\"batch\",\"url\":\"https://e.com/\","
                                  "\"id\":\"big\",\"items\":[");
    for (size_t i = 0; i < n; i++) {
        memcpy(json + len, i ? ",{}" : "{}", i ? 3 : 2);
        len += i ? 3 : 2;
    }
    memcpy(json + len, "]}", 2);
    len += 2;
    hk_job_t *job = parse_src(json, len, &k_src, &k_defs);
    ck_assert_msg(job != NULL, "%s", g_err);
    ck_assert_uint_eq(job->items_cnt, n);
    ck_assert_str_eq(job->items[n - 1].id, "big:99999");
    ck_assert_ptr_eq(job->items[n - 1].url, job->url);
    ck_assert(in_block(job, job->items[n - 1].id));
    ck_assert_uint_ge(job->mem_bytes, (n + 1) * sizeof(hk_job_t));
    hk_job_destroy(job);

    // One more is too many.
    memcpy(json + len - 2, ",{}]}", 5);
    ck_assert_ptr_null(parse_src(json, len + 3, &k_src, &k_defs));
    ck_assert_ptr_nonnull(strstr(g_err, "$.items: must be an array of 1-100000"));
    free(json);
}
END_TEST

START_TEST(test_expires_at_forms)
{
    static const struct {
        const char *at;
        int64_t ms;
    } cases[] = {
        {"2026-11-21T10:00:00Z", INT64_C(1795255200000)},
        {"2026-11-21t10:00:00z", INT64_C(1795255200000)},
        {"2026-11-21T10:00:00+00:00", INT64_C(1795255200000)},
        {"2026-11-21T10:00:00-00:00", INT64_C(1795255200000)},
        {"2026-11-21T10:00:00+02:00", INT64_C(1795248000000)},
        {"2026-11-21T10:00:00-05:30", INT64_C(1795275000000)},
        {"2026-11-21T10:00:00.5Z", INT64_C(1795255200500)},
        {"2026-11-21T10:00:00.123456789Z", INT64_C(1795255200123)},
        {"2026-11-21T10:00:00.07+02:00", INT64_C(1795248000070)},
        {"2024-02-29T23:59:59.999Z", INT64_C(1709251199999)},
        {"2000-01-01T00:00:00Z", INT64_C(946684800000)},
        {"1970-01-01T00:00:00.001Z", 1},
        {"2016-12-31T23:59:60Z", INT64_C(1483228800000)}, // leap second
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[160];
        snprintf(json, sizeof json, "{\"url\":\"https://e.com/\",\"expires_at\":\"%s\"}",
                 cases[i].at);
        hk_job_t *job = parse_ok(json);
        ck_assert_msg(job->expires_at_ms == cases[i].ms, "%s -> %lld, want %lld", cases[i].at,
                      (long long)job->expires_at_ms, (long long)cases[i].ms);
        hk_job_destroy(job);
    }
}
END_TEST

START_TEST(test_size_limit_boundary)
{
    hk_job_defaults_t defs = k_defs;
    const char *json = "{\"url\":\"https://e.com/\"}";
    defs.max_job_bytes = strlen(json);
    hk_job_t *job = parse_src(json, strlen(json), &k_src, &defs);
    ck_assert_ptr_nonnull(job);
    hk_job_destroy(job);
    defs.max_job_bytes = strlen(json) - 1;
    ck_assert_ptr_null(parse_src(json, strlen(json), &k_src, &defs));
    ck_assert_ptr_nonnull(strstr(g_err, "$: job is 24 bytes, more than limits.max_job_bytes (23)"));
}
END_TEST

START_TEST(test_depth_limit_boundary)
{
    // The top-level object counts as one level: 63 more fit, 64 more do not.
    for (int extra = 63; extra <= 64; extra++) {
        char json[256];
        int n = snprintf(json, sizeof json, "{\"url\":\"https://e.com/\",\"body\":");
        for (int i = 0; i < extra; i++)
            json[n++] = '[';
        for (int i = 0; i < extra; i++)
            json[n++] = ']';
        json[n++] = '}';
        hk_job_t *job = parse_src(json, (size_t)n, &k_src, &k_defs);
        if (extra == 63) {
            ck_assert_msg(job != NULL, "%s", g_err);
            hk_job_destroy(job);
        } else {
            ck_assert_ptr_null(job);
            ck_assert_ptr_nonnull(strstr(g_err, "nested deeper than 64 levels"));
        }
    }
    // Brackets inside strings do not count.
    char json[512];
    int n = snprintf(json, sizeof json, "{\"url\":\"https://e.com/\",\"body\":\"");
    for (int i = 0; i < 200; i++)
        json[n++] = i % 2 ? '{' : '[';
    n += snprintf(json + n, sizeof json - (size_t)n, "\\\"\"}");
    hk_job_t *job = parse_src(json, (size_t)n, &k_src, &k_defs);
    ck_assert_msg(job != NULL, "%s", g_err);
    hk_job_destroy(job);
}
END_TEST

START_TEST(test_small_or_missing_errstr_is_safe)
{
    char small[8];
    memset(small, 'X', sizeof small);
    ck_assert_ptr_null(hk_job_parse("[1]", 3, &k_src, &k_defs, small, sizeof small));
    ck_assert_str_eq(small, "$: must");
    ck_assert_ptr_null(hk_job_parse("[1]", 3, &k_src, &k_defs, NULL, 0));
    ck_assert_ptr_null(hk_job_parse(NULL, 0, &k_src, &k_defs, small, 1));
    ck_assert_str_eq(small, "");
    hk_job_destroy(NULL);
}
END_TEST

// ---- malformed and hostile jobs ----

typedef struct bad_case {
    const char *json;
    size_t len; // 0: strlen(json)
    const char *reason;
} bad_case_t;

#define U "\"url\":\"https://e.com/\""

static const bad_case_t k_bad[] = {
    // Framing and JSON itself.
    {"", 0, "$: empty job"},
    {"   ", 0, "$: invalid JSON at line 1"},
    {"[]", 0, "$: must be a JSON object"},
    {"[{\"url\":\"https://e.com/\"}]", 0, "$: must be a JSON object"},
    {"\"https://e.com/\"", 0, "$: must be a JSON object"},
    {"42", 0, "$: must be a JSON object"},
    {"null", 0, "$: must be a JSON object"},
    {"{" U "} trailing", 0, "end of file expected"},
    {"{" U "}{}", 0, "end of file expected"},
    {"{\"url\":", 0, "$: invalid JSON"},
    {"{" U ",}", 0, "$: invalid JSON"},
    {"{'url':'https://e.com/'}", 0, "$: invalid JSON"},
    {"{\"url\":\"https://a/\",\"url\":\"https://b/\"}", 0, "duplicate object key"},
    {"{" U ",\"body\":{\"a\":1,\"a\":2}}", 0, "duplicate object key"},
    {"{" U ",\"body\":\"\xff\"}", 0, "invalid UTF-8"},
    {"{" U ",\"body\":\"\xc0\xaf\"}", 0, "invalid UTF-8"},
    {"{" U ",\"body\":\"\xed\xa0\x80\"}", 0, "invalid UTF-8"},
    {"{" U ",\"tenant\":\"\xf5\x80\x80\x80\"}", 0, "invalid UTF-8"},
    {"{" U ",\"body\":\"\\ud800\"}", 0, "unpaired UTF-16 surrogate"},
    {"{" U ",\"body\":\"\\udc00\\ud800\"}", 0, "unpaired UTF-16 surrogate"},
    {"{\"url\":\"https://e.com/\\u0000.evil\"}", 0, "must not contain \\u0000 (NUL)"},
    {"{" U ",\"headers\":{\"X-A\":\"a\\u0000b\"}}", 0, "must not contain \\u0000 (NUL)"},
    {"{" U ",\"headers\":{\"X\\u0000A\":\"b\"}}", 0, "must not contain \\u0000 (NUL)"},
    {"{\"url\":\"https://e.com/\0\"}", sizeof "{\"url\":\"https://e.com/\0\"}" - 1,
     "$: invalid JSON"},
    {"{" U ",\"body\":\"a\x01\"}", 0, "control character"},
    {"{" U ",\"max_attempts\":99999999999999999999}", 0, "too big integer"},
    {"{" U ",\"body\":1e999}", 0, "real number overflow"},
    // Integers beyond int64 pass only inside a body, where they are sent as written.
    {"{" U ",\"meta\":{\"body\":99999999999999999999}}", 0, "too big integer"},
    {"{" U ",\"body\":1,\"extra\":-99999999999999999999}", 0, "too big negative integer"},
    {"{" U ",\"body\":[99999999999999999999],\"timeout_ms\":99999999999999999999}", 0,
     "line 1 column 87: too big integer"},
    {"{" U ",\"body\":[99999999999999999999],\"x\":}", 0, "line 1 column 59: unexpected token"},
    {"{" U ",\"body\":{\"a\":99999999999999999999,\"a\":1}}", 0, "duplicate object key"},
    {"{" U ",\"body\":[1e999,99999999999999999999]}", 0, "real number overflow"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"body\":1,\"x\":99999999999999999999}]}", 0,
     "too big integer"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"meta\":{\"body\":99999999999999999999}}]}", 0,
     "too big integer"},
    // id, type, tenant.
    {"{" U ",\"id\":42}", 0, "$.id: must be 1-255 characters of [A-Za-z0-9_:-]"},
    {"{" U ",\"id\":\"\"}", 0, "$.id: must be 1-255 characters"},
    {"{" U ",\"id\":\"a b\"}", 0, "$.id: must be 1-255 characters"},
    {"{" U ",\"id\":\"../etc\"}", 0, "$.id: must be 1-255 characters"},
    {"{" U ",\"id\":\"caf\xc3\xa9\"}", 0, "$.id: must be 1-255 characters"},
    {"{" U ",\"type\":\"cron\"}", 0, "$.type: must be \"webhook\" or \"batch\""},
    {"{" U ",\"type\":1}", 0, "$.type: must be \"webhook\" or \"batch\""},
    {"{" U ",\"type\":\"Webhook\"}", 0, "$.type: must be"},
    {"{" U ",\"tenant\":\"a b\"}", 0, "$.tenant: must be 1-128 printable ASCII"},
    {"{" U ",\"tenant\":\"\"}", 0, "$.tenant: must be"},
    {"{" U ",\"tenant\":\"a\\tb\"}", 0, "$.tenant: must be"},
    {"{" U ",\"tenant\":7}", 0, "$.tenant: must be"},
    {"{" U ",\"tenant\":\"caf\xc3\xa9\"}", 0, "$.tenant: must be"},
    // url.
    {"{}", 0, "$.url: required for a webhook job"},
    {"{\"url\":null}", 0, "$.url: required"},
    {"{\"items\":[{\"url\":\"https://e.com/\"}]}", 0, "needs \"type\": \"batch\""},
    {"{\"url\":42}", 0, "$.url: must be a string"},
    {"{\"url\":[\"https://e.com/\"]}", 0, "$.url: must be a string"},
    {"{\"url\":\"\"}", 0, "$.url: must be an absolute http(s) URL"},
    {"{\"url\":\"ftp://e.com/x\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"file:///etc/passwd\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"javascript:alert(1)\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"gopher://e.com:70/_x\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"/hooks/1\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"e.com/hooks\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"//e.com/hooks\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"http:/e.com/\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"https://\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"http:///path\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"http://e.com:99999/\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"http://exa mple.com/\"}", 0, "$.url: contains a space or control character"},
    {"{\"url\":\"http://e.com/a b\"}", 0, "$.url: contains a space or control character"},
    {"{\"url\":\"http://e.com/\\r\\nX: y\"}", 0, "$.url: contains a space or control"},
    {"{\"url\":\"http://e.com/\\u00e9\"}", 0, "$.url: contains non-ASCII bytes"},
    {"{\"url\":\"http://e.com\\\\@evil.example/\"}", 0, "$.url: contains a backslash"},
    {"{\"url\":\"https://?x=1\"}", 0, "$.url: not an absolute http(s) URL"},
    {"{\"url\":\"https://user:pass@e.com/\"}", 0, "$.url: must not contain credentials"},
    {"{\"url\":\"https://user@e.com/\"}", 0, "$.url: must not contain credentials"},
    {"{\"url\":\"https://:pw@e.com/\"}", 0, "$.url: must not contain credentials"},
    // method.
    {"{" U ",\"method\":\"post\"}", 0, "$.method: must be one of POST, PUT, PATCH, DELETE, GET"},
    {"{" U ",\"method\":\"CONNECT\"}", 0, "$.method: must be one of"},
    {"{" U ",\"method\":\"GET \"}", 0, "$.method: must be one of"},
    {"{" U ",\"method\":1}", 0, "$.method: must be one of"},
    // headers.
    {"{" U ",\"headers\":[\"X-A: 1\"]}", 0, "$.headers: must be an object"},
    {"{" U ",\"headers\":\"X-A: 1\"}", 0, "$.headers: must be an object"},
    {"{" U ",\"headers\":{\"X-A\":1}}", 0, "$.headers.X-A: value must be a string"},
    {"{" U ",\"headers\":{\"X-A\":null}}", 0, "$.headers.X-A: value must be a string"},
    {"{" U ",\"headers\":{\"X-A\":\"a\\r\\nInjected: 1\"}}", 0,
     "$.headers.X-A: value contains CR/LF"},
    {"{" U ",\"headers\":{\"X-A\":\"a\\nb\"}}", 0, "$.headers.X-A: value contains CR/LF"},
    {"{" U ",\"headers\":{\"X-A\":\"a\\u0007b\"}}", 0, "$.headers.X-A: value contains a control"},
    {"{" U ",\"headers\":{\"X-A\\r\\nHost\":\"b\"}}", 0, "name contains CR/LF"},
    {"{" U ",\"headers\":{\"X A\":\"b\"}}", 0, "$.headers.X A: name must be an HTTP token"},
    {"{" U ",\"headers\":{\"X-A:\":\"b\"}}", 0, "name must be an HTTP token"},
    {"{" U ",\"headers\":{\"\":\"b\"}}", 0, "$.headers.: name must be an HTTP token"},
    {"{" U ",\"headers\":{\"Host\":\"internal\"}}", 0, "$.headers.Host: header not allowed"},
    {"{" U ",\"headers\":{\"content-length\":\"0\"}}", 0, "$.headers.content-length: header not"},
    {"{" U ",\"headers\":{\"Transfer-Encoding\":\"chunked\"}}", 0,
     "$.headers.Transfer-Encoding: "
     "header not allowed"},
    {"{" U ",\"headers\":{\"webhook-id\":\"x\"}}", 0, "$.headers.webhook-id: header not allowed"},
    {"{" U ",\"headers\":{\"Webhook-Signature\":\"v1,x\"}}", 0, "header not allowed"},
    {"{" U ",\"headers\":{\"Idempotency-Key\":\"x\"}}", 0, "header not allowed (set by hookd)"},
    {"{" U ",\"headers\":{\"Connection\":\"close\"}}", 0, "header not allowed (hop-by-hop)"},
    {"{" U ",\"headers\":{\"te\":\"trailers\"}}", 0, "$.headers.te: header not allowed"},
    {"{" U ",\"headers\":{\"Upgrade\":\"h2c\"}}", 0, "header not allowed (hop-by-hop)"},
    {"{" U ",\"headers\":{\"Proxy-Authorization\":\"x\"}}", 0, "header not allowed (proxy"},
    {"{" U ",\"headers\":{\"Content-Type\":\"a\\r\\nb\"}}", 0, "value contains CR/LF"},
    // body, body_base64, content_type.
    {"{" U ",\"body\":{},\"body_base64\":\"YQ==\",\"content_type\":\"a/b\"}", 0,
     "$: body and body_base64 are mutually exclusive"},
    {"{" U ",\"body_base64\":\"abc\",\"content_type\":\"a/b\"}", 0, "$.body_base64: not valid"},
    {"{" U ",\"body_base64\":\"a$==\",\"content_type\":\"a/b\"}", 0, "$.body_base64: not valid"},
    {"{" U ",\"body_base64\":\"YQ==YQ==\",\"content_type\":\"a/b\"}", 0, "$.body_base64: not"},
    {"{" U ",\"body_base64\":\"Y===\",\"content_type\":\"a/b\"}", 0, "$.body_base64: not valid"},
    {"{" U ",\"body_base64\":\"YQ==\\n\",\"content_type\":\"a/b\"}", 0, "$.body_base64: not"},
    {"{" U ",\"body_base64\":\"YW Jj\",\"content_type\":\"a/b\"}", 0, "$.body_base64: not"},
    {"{" U ",\"body_base64\":\"YWJj-_==\",\"content_type\":\"a/b\"}", 0, "$.body_base64: not"},
    {"{" U ",\"body_base64\":42,\"content_type\":\"a/b\"}", 0, "$.body_base64: must be a string"},
    {"{" U ",\"body_base64\":\"YQ==\"}", 0, "$.content_type: required with body_base64"},
    {"{" U ",\"body_base64\":\"YQ==\",\"content_type\":\"text/plain\\r\\nX: 1\"}", 0,
     "$.content_type: contains CR/LF"},
    {"{" U ",\"body_base64\":\"YQ==\",\"content_type\":\"\"}", 0, "$.content_type: must be 1-255"},
    {"{" U ",\"body_base64\":\"YQ==\",\"content_type\":3}", 0, "$.content_type: must be a string"},
    // Numbers.
    {"{" U ",\"max_attempts\":0}", 0, "$.max_attempts: must be an integer between 1 and 100"},
    {"{" U ",\"max_attempts\":101}", 0, "$.max_attempts: must be an integer between 1 and 100"},
    {"{" U ",\"max_attempts\":-1}", 0, "$.max_attempts: must be an integer between 1 and 100"},
    {"{" U ",\"max_attempts\":1.5}", 0, "$.max_attempts: must be an integer between 1 and 100"},
    {"{" U ",\"max_attempts\":3.0}", 0, "$.max_attempts: must be an integer between 1 and 100"},
    {"{" U ",\"max_attempts\":\"3\"}", 0, "$.max_attempts: must be an integer between 1 and 100"},
    {"{" U ",\"max_attempts\":true}", 0, "$.max_attempts: must be an integer"},
    {"{" U ",\"max_attempts\":4294967297}", 0, "$.max_attempts: must be an integer"},
    {"{" U ",\"timeout_ms\":99}", 0, "$.timeout_ms: must be an integer between 100 and 120000"},
    {"{" U ",\"timeout_ms\":120001}", 0, "$.timeout_ms: must be an integer between 100"},
    {"{" U ",\"timeout_ms\":\"1000\"}", 0, "$.timeout_ms: must be an integer"},
    // expires_at.
    {"{" U ",\"expires_at\":\"tomorrow\"}", 0, "$.expires_at: must be an RFC 3339 time"},
    {"{" U ",\"expires_at\":1795255200}", 0, "$.expires_at: must be an RFC 3339 time"},
    {"{" U ",\"expires_at\":\"2026-11-21T10:00:00\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-11-21\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-11-21 10:00:00Z\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-13-01T00:00:00Z\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-02-29T00:00:00Z\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-11-31T00:00:00Z\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-11-21T24:00:00Z\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-11-21T10:00:00.Z\"}", 0, "$.expires_at: must be an RFC 3339"},
    {"{" U ",\"expires_at\":\"2026-11-21T10:00:00+2:00\"}", 0, "$.expires_at: must be an RFC"},
    {"{" U ",\"expires_at\":\"2026-11-21T10:00:00+24:00\"}", 0, "$.expires_at: must be an RFC"},
    {"{" U ",\"expires_at\":\"2026-11-21T10:00:00Zjunk\"}", 0, "$.expires_at: must be an RFC"},
    {"{" U ",\"expires_at\":\"+2026-11-21T10:00:00Z\"}", 0, "$.expires_at: must be an RFC"},
    {"{" U ",\"expires_at\":\"1969-12-31T23:59:59Z\"}", 0, "$.expires_at: must be after 1970"},
    // ordering_key.
    {"{" U ",\"ordering_key\":5}", 0, "$.ordering_key: must be a string of 1-255 bytes"},
    {"{" U ",\"ordering_key\":\"\"}", 0, "$.ordering_key: must be a string of 1-255 bytes"},
    // Batches.
    {"{\"type\":\"batch\"," U "}", 0, "$.items: required for a batch job"},
    {"{\"type\":\"batch\"," U ",\"items\":[]}", 0, "$.items: must be an array of 1-100000"},
    {"{\"type\":\"batch\"," U ",\"items\":{}}", 0, "$.items: must be an array of 1-100000"},
    {"{\"type\":\"batch\"," U ",\"items\":[{},42]}", 0, "$.items[1]: must be a JSON object"},
    {"{\"type\":\"batch\",\"items\":[{\"url\":\"https://e.com/\"},{}]}", 0,
     "$.items[1].url: required (neither the item nor the batch has one)"},
    {"{\"type\":\"batch\"," U ",\"items\":[{},{},{},{\"url\":\"ftp://e.com/\"}]}", 0,
     "$.items[3].url: not an absolute http(s) URL"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"headers\":{\"Host\":\"x\"}}]}", 0,
     "$.items[0].headers.Host: header not allowed"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"headers\":{\"X-A\":\"\\r\"}}]}", 0,
     "$.items[0].headers.X-A: value contains CR/LF"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"type\":\"batch\",\"items\":[{}]}]}", 0,
     "$.items[0].type: batch items are webhooks"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"max_attempts\":0}]}", 0,
     "$.items[0].max_attempts: must be an integer between 1 and 100"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"body\":1,\"body_base64\":\"\"}]}", 0,
     "$.items[0]: body and body_base64 are mutually exclusive"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"expires_at\":\"soon\"}]}", 0,
     "$.items[0].expires_at: must be an RFC 3339 time"},
    {"{\"type\":\"batch\"," U ",\"items\":[{\"tenant\":\"a b\"}]}", 0, "$.items[0].tenant: must"},
    {"{\"type\":\"batch\"," U ",\"items\":[{}],\"max_failure_ratio\":1.5}", 0,
     "$.max_failure_ratio: must be a number between 0 and 1"},
    {"{\"type\":\"batch\"," U ",\"items\":[{}],\"max_failure_ratio\":-0.1}", 0,
     "$.max_failure_ratio: must be a number between 0 and 1"},
    {"{\"type\":\"batch\"," U ",\"items\":[{}],\"max_failure_ratio\":\"0.5\"}", 0,
     "$.max_failure_ratio: must be a number"},
    {"{\"type\":\"batch\",\"url\":\"gopher://e.com/\",\"items\":[{}]}", 0,
     "$.url: not an absolute http(s) URL"},
};

START_TEST(test_rejects_malformed_job)
{
    const bad_case_t *bc = &k_bad[_i];
    size_t len = bc->len ? bc->len : strlen(bc->json);
    hk_job_t *job = parse_src(bc->json, len, &k_src, &k_defs);
    if (job)
        hk_job_destroy(job);
    ck_assert_msg(job == NULL, "accepted case %d: %s", _i, bc->json);
    ck_assert_msg(strstr(g_err, bc->reason) != NULL, "case %d: %s\n  reason: %s\n  wanted: %s", _i,
                  bc->json, g_err, bc->reason);
    assert_reason_printable();
}
END_TEST

// Inputs too large to write inline.
typedef struct big_case {
    const char *what;
    char *(*make)(size_t *len);
    const char *reason;
} big_case_t;

static char *fill_json(size_t *len, const char *pre, char ch, size_t n, const char *post)
{
    size_t pl = strlen(pre), ql = strlen(post);
    char *s = malloc(pl + n + ql + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, pre, pl);
    memset(s + pl, ch, n);
    memcpy(s + pl + n, post, ql + 1);
    *len = pl + n + ql;
    return s;
}

static char *make_long_id(size_t *len)
{
    return fill_json(len, "{" U ",\"id\":\"", 'a', 256, "\"}");
}

static char *make_long_tenant(size_t *len)
{
    return fill_json(len, "{" U ",\"tenant\":\"", 'a', 129, "\"}");
}

static char *make_long_header_value(size_t *len)
{
    return fill_json(len, "{" U ",\"headers\":{\"X-A\":\"", 'v', 10 * 1024, "\"}}");
}

static char *make_long_header_name(size_t *len)
{
    return fill_json(len, "{" U ",\"headers\":{\"", 'N', 257, "\":\"v\"}}");
}

static char *make_long_url(size_t *len)
{
    return fill_json(len, "{\"url\":\"https://e.com/", 'p', 8200, "\"}");
}

static char *make_long_ordering_key(size_t *len)
{
    return fill_json(len, "{" U ",\"ordering_key\":\"", 'k', 256, "\"}");
}

static char *make_long_content_type(size_t *len)
{
    return fill_json(len, "{" U ",\"body\":1,\"content_type\":\"", 't', 256, "\"}");
}

static char *make_2mb_job(size_t *len)
{
    return fill_json(len, "{" U ",\"body\":\"", 'b', 2 * 1024 * 1024, "\"}");
}

static char *make_deep_body(size_t *len)
{
    char *s = fill_json(len, "{" U ",\"body\":", '[', 200, "");
    size_t l = *len;
    s = realloc(s, l + 200 + 2);
    ck_assert_ptr_nonnull(s);
    memset(s + l, ']', 200);
    s[l + 200] = '}';
    *len = l + 201;
    return s;
}

static char *make_deep_unclosed(size_t *len)
{
    return fill_json(len, "{\"a\":", '{', 100000, "");
}

static char *make_65_headers(size_t *len)
{
    char *s = malloc(4096);
    ck_assert_ptr_nonnull(s);
    size_t n = (size_t)snprintf(s, 4096, "{" U ",\"headers\":{");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(s + n, 4096 - n, "%s\"X-H%d\":\"v\"", i ? "," : "", i);
    n += (size_t)snprintf(s + n, 4096 - n, "}}");
    *len = n;
    return s;
}

static const big_case_t k_big[] = {
    {"id of 256 characters", make_long_id, "$.id: must be 1-255 characters"},
    {"tenant of 129 characters", make_long_tenant, "$.tenant: must be 1-128"},
    {"10 KB header value", make_long_header_value, "$.headers.X-A: value longer than 8192 bytes"},
    {"257-character header name", make_long_header_name, "name must be an HTTP token of 1-256"},
    {"URL over 8192 bytes", make_long_url, "$.url: must be an absolute http(s) URL of at most"},
    {"ordering_key of 256 bytes", make_long_ordering_key, "$.ordering_key: must be a string"},
    {"content_type of 256 bytes", make_long_content_type, "$.content_type: must be 1-255 bytes"},
    {"2 MB job", make_2mb_job, "more than limits.max_job_bytes (1048576)"},
    {"200 levels of [ in body", make_deep_body, "$: nested deeper than 64 levels"},
    {"100000 unclosed {", make_deep_unclosed, "$: nested deeper than 64 levels"},
    {"65 headers", make_65_headers, "$.headers: at most 64 headers, got 65"},
};

START_TEST(test_rejects_oversized_job)
{
    const big_case_t *bc = &k_big[_i];
    size_t len;
    char *json = bc->make(&len);
    hk_job_t *job = parse_src(json, len, &k_src, &k_defs);
    free(json);
    if (job)
        hk_job_destroy(job);
    ck_assert_msg(job == NULL, "accepted %s", bc->what);
    ck_assert_msg(strstr(g_err, bc->reason) != NULL, "%s: reason %s, wanted %s", bc->what, g_err,
                  bc->reason);
    assert_reason_printable();
}
END_TEST

// ---- random mutations ----

static uint64_t g_rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

// Integers as doubles, so messages with integers beyond int64 compare too.
#define JOB_CMP_FLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL)

// A JSON body read back equals what jansson reads from the message.
static void assert_body_matches(const hk_job_t *job, const json_t *obj)
{
    json_t *want = json_object_get(obj, "body");
    if (!want || json_is_null(want))
        return;
    json_error_t err;
    json_t *got = json_loadb(job->body, job->body_len, JOB_CMP_FLAGS, &err);
    ck_assert_msg(got != NULL, "sent body %s: %s", job->body, err.text);
    ck_assert_msg(json_equal(got, want), "sent body %s", job->body);
    ck_assert_uint_eq(strlen(job->body), job->body_len);
    json_decref(got);
}

static void assert_bodies_match(const hk_job_t *job, const char *in, size_t len)
{
    json_t *root = json_loadb(in, len, JOB_CMP_FLAGS, NULL);
    if (!root)
        return;
    if (job->type == HK_JOB_WEBHOOK)
        assert_body_matches(job, root);
    json_t *items = json_object_get(root, "items");
    for (size_t i = 0; i < job->items_cnt; i++)
        assert_body_matches(&job->items[i], json_array_get(items, i));
    json_decref(root);
}

START_TEST(test_random_mutations_never_crash)
{
    static const char *const seeds[] = {
        "{\"id\":\"j-1\",\"tenant\":\"acme\",\"url\":\"https://hooks.example.com/a?b=1\","
        "\"method\":\"PUT\",\"headers\":{\"Authorization\":\"Bearer x\",\"X-A\":\"1\"},"
        "\"body\":{\"k\":[1,2.5,\"\\u00e9\",null,true],\"o\":{\"p\":\"q\"}},\"max_attempts\":3,"
        "\"timeout_ms\":5000,\"expires_at\":\"2026-11-21T10:00:00.250+02:00\","
        "\"ordering_key\":\"c-1\"}",
        "{\"type\":\"batch\",\"id\":\"b-9\",\"url\":\"http://e.com:8080/\",\"headers\":"
        "{\"Content-Type\":\"text/plain\"},\"max_failure_ratio\":0.5,\"items\":[{\"body\":\"x\"},"
        "{\"url\":\"https://f.example/\",\"body_base64\":\"aGk=\"},{\"method\":\"GET\"}]}",
        "{\"type\":\"batch\",\"url\":\"https://e.com/\",\"meta\":{\"body\":[1]},\"body\":2,"
        "\"items\":[{\"b\\u006fdy\": {\"a\": 19.90, \"s\": \"x\\\" \\\\\"}},"
        "{\"body\":[ 1e2 , -0.0, 99999999999999999999 ]},{\"note\":{\"body\":0},\"body\":\"a "
        "b\"}]}",
    };
    static const char tokens[] = "{}[]\",:\\0123456789.eE+-tfnu \xff\xc0";
    size_t accepted = 0, rejected = 0;
    for (int iter = 0; iter < 20000; iter++) {
        const char *seed = seeds[iter % 3];
        size_t len = strlen(seed);
        char buf[1024];
        memcpy(buf, seed, len);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t pos = (size_t)(rnd() % len);
            switch (rnd() % 6) {
            case 0: // flip a bit
                buf[pos] = (char)(buf[pos] ^ (1u << (rnd() % 8)));
                break;
            case 1: // random byte
                buf[pos] = (char)(rnd() & 0xff);
                break;
            case 2: // JSON-ish byte
                buf[pos] = tokens[rnd() % (sizeof tokens - 1)];
                break;
            case 3: // truncate
                len = pos;
                break;
            case 4: // delete a byte
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
                break;
            default: // insert a byte
                if (len < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = tokens[rnd() % (sizeof tokens - 1)];
                    len++;
                }
                break;
            }
        }
        hk_job_t *job = parse_src(buf, len, &k_src, &k_defs);
        if (job) {
            accepted++;
            ck_assert_str_eq(g_err, "");
            ck_assert_ptr_nonnull(job->id);
            ck_assert(job->type == HK_JOB_BATCH || job->url != NULL);
            for (size_t i = 0; i < job->items_cnt; i++)
                ck_assert_ptr_nonnull(job->items[i].url);
            assert_bodies_match(job, buf, len);
            hk_job_destroy(job);
        } else {
            rejected++;
            assert_reason_printable();
            ck_assert_msg(strstr(g_err, "internal error") == NULL, "%s", g_err);
        }
    }
    ck_assert_uint_gt(accepted, 0);
    ck_assert_uint_gt(rejected, 0);
}
END_TEST

// A batch item written back as a standalone job (what its dead letter carries)
// parses to the same job: id, tenant, url, method, headers, exact body bytes
// (JSON and raw, every length mod 3 for the base64), limits, expiry, key.
START_TEST(test_item_to_json_round_trips)
{
    hk_job_t *batch = parse_ok(
        "{\"id\":\"b7\",\"type\":\"batch\",\"tenant\":\"acme\",\"url\":\"https://a.example/h\","
        "\"headers\":{\"X-Run\":\"n1\"},\"max_attempts\":4,\"timeout_ms\":2500,"
        "\"expires_at\":\"2031-01-02T03:04:05.678Z\",\"ordering_key\":\"k1\",\"items\":["
        "{\"body\":{\"total\": 19.90, \"x\":[1,2]}},"
        "{\"method\":\"PUT\",\"body_base64\":\"AAH/\",\"content_type\":\"application/x-b\"},"
        "{\"body_base64\":\"AAH/AA==\",\"content_type\":\"a/b\"},"
        "{\"body_base64\":\"AAH/AAE=\",\"content_type\":\"a/b\"},"
        "{\"url\":\"http://b.example:8080/x?y=1\"}]}");
    ck_assert_uint_eq(batch->items_cnt, 5);
    for (size_t i = 0; i < batch->items_cnt; i++) {
        const hk_job_t *a = &batch->items[i];
        size_t len = 0;
        char *json = hk_job_to_json(a, &len);
        ck_assert_ptr_nonnull(json);
        ck_assert_uint_eq(len, strlen(json));
        hk_job_t *b = parse_ok(json);
        ck_assert_str_eq(b->id, a->id);
        ck_assert_str_eq(b->tenant, a->tenant);
        ck_assert_str_eq(b->url, a->url);
        ck_assert_str_eq(b->method, a->method);
        ck_assert_uint_eq(b->headers_cnt, a->headers_cnt);
        for (size_t h = 0; h < a->headers_cnt; h++) {
            ck_assert_str_eq(b->headers[h].name, a->headers[h].name);
            ck_assert_str_eq(b->headers[h].value, a->headers[h].value);
        }
        ck_assert_uint_eq(b->body_len, a->body_len);
        ck_assert(a->body_len == 0 || memcmp(b->body, a->body, a->body_len) == 0);
        if (a->content_type)
            ck_assert_str_eq(b->content_type, a->content_type);
        ck_assert_int_eq(b->max_attempts, a->max_attempts);
        ck_assert_int_eq(b->timeout_ms, a->timeout_ms);
        ck_assert_int_eq(b->expires_at_ms, a->expires_at_ms);
        if (a->ordering_key) // else b's comes from the test's Kafka key
            ck_assert_str_eq(b->ordering_key, a->ordering_key);
        hk_job_destroy(b);
        free(json);
    }
    ck_assert_str_eq(batch->items[0].body, "{\"total\":19.90,\"x\":[1,2]}");
    ck_assert_uint_eq(batch->items[1].body_len, 3);
    ck_assert_uint_eq(batch->items[2].body_len, 4);
    ck_assert_uint_eq(batch->items[3].body_len, 5);
    hk_job_destroy(batch);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("job");

    TCase *tc = tcase_create("valid");
    tcase_add_test(tc, test_minimal_webhook_gets_defaults);
    tcase_add_test(tc, test_item_to_json_round_trips);
    tcase_add_test(tc, test_all_fields_are_read);
    tcase_add_test(tc, test_every_method_is_accepted);
    tcase_add_test(tc, test_derived_id_sanitizes_topic);
    tcase_add_test(tc, test_id_required_without_kafka_source);
    tcase_add_test(tc, test_defaults_come_from_config);
    tcase_add_test(tc, test_ordering_key_from_kafka_key);
    tcase_add_test(tc, test_long_kafka_key_is_hashed_into_the_ordering_key);
    tcase_add_test(tc, test_base64_body_is_decoded);
    tcase_add_test(tc, test_content_type_header_moves_to_content_type);
    tcase_add_test(tc, test_body_is_compact_json_of_any_value);
    tcase_add_test(tc, test_body_is_the_producers_bytes_compacted);
    tcase_add_test(tc, test_scalar_body_keeps_its_bytes);
    tcase_add_test(tc, test_body_key_written_with_escapes_is_found);
    tcase_add_test(tc, test_nested_body_key_is_not_the_body);
    tcase_add_test(tc, test_batch_item_bodies_are_the_producers_bytes);
    tcase_add_test(tc, test_body_keeps_integers_beyond_int64);
    tcase_add_test(tc, test_batch_items_inherit_and_get_ids);
    tcase_add_test(tc, test_batch_without_top_url_and_derived_id);
    tcase_add_test(tc, test_batch_of_100000_items_is_one_block);
    tcase_add_test(tc, test_expires_at_forms);
    tcase_add_test(tc, test_size_limit_boundary);
    tcase_add_test(tc, test_depth_limit_boundary);
    tcase_add_test(tc, test_small_or_missing_errstr_is_safe);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_add_loop_test(tc, test_rejects_malformed_job, 0, (int)(sizeof k_bad / sizeof k_bad[0]));
    tcase_add_loop_test(tc, test_rejects_oversized_job, 0, (int)(sizeof k_big / sizeof k_big[0]));
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("fuzz");
    tcase_add_test(tc, test_random_mutations_never_crash);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);
    return s;
}
