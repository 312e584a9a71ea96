// check_classify: the outcome table of DESIGN §6 over HTTP statuses and curl codes.
#include <check.h>
#include <stdlib.h>

#include <curl/curl.h>

#include "retry/classify.h"

#include "tests/support/ck_main.h"

typedef struct status_case {
    int status;
    hk_outcome_t want;
} status_case_t;

static const status_case_t status_cases[] = {
    {200, HK_OUTCOME_DELIVERED}, {201, HK_OUTCOME_DELIVERED}, {202, HK_OUTCOME_DELIVERED},
    {204, HK_OUTCOME_DELIVERED}, {299, HK_OUTCOME_DELIVERED},

    {408, HK_OUTCOME_RETRYABLE}, {425, HK_OUTCOME_RETRYABLE}, {429, HK_OUTCOME_RETRYABLE},
    {500, HK_OUTCOME_RETRYABLE}, {502, HK_OUTCOME_RETRYABLE}, {503, HK_OUTCOME_RETRYABLE},
    {504, HK_OUTCOME_RETRYABLE},

    {410, HK_OUTCOME_GONE},

    {100, HK_OUTCOME_PERMANENT}, {101, HK_OUTCOME_PERMANENT}, {199, HK_OUTCOME_PERMANENT},
    {300, HK_OUTCOME_PERMANENT}, {301, HK_OUTCOME_PERMANENT}, {302, HK_OUTCOME_PERMANENT},
    {304, HK_OUTCOME_PERMANENT}, {307, HK_OUTCOME_PERMANENT}, {308, HK_OUTCOME_PERMANENT},
    {400, HK_OUTCOME_PERMANENT}, {401, HK_OUTCOME_PERMANENT}, {403, HK_OUTCOME_PERMANENT},
    {404, HK_OUTCOME_PERMANENT}, {405, HK_OUTCOME_PERMANENT}, {409, HK_OUTCOME_PERMANENT},
    {411, HK_OUTCOME_PERMANENT}, {413, HK_OUTCOME_PERMANENT}, {415, HK_OUTCOME_PERMANENT},
    {422, HK_OUTCOME_PERMANENT}, {426, HK_OUTCOME_PERMANENT}, {431, HK_OUTCOME_PERMANENT},
    {451, HK_OUTCOME_PERMANENT}, {499, HK_OUTCOME_PERMANENT}, {501, HK_OUTCOME_PERMANENT},
    {505, HK_OUTCOME_PERMANENT}, {506, HK_OUTCOME_PERMANENT}, {507, HK_OUTCOME_PERMANENT},
    {508, HK_OUTCOME_PERMANENT}, {511, HK_OUTCOME_PERMANENT}, {599, HK_OUTCOME_PERMANENT},
    {600, HK_OUTCOME_PERMANENT}, {999, HK_OUTCOME_PERMANENT}, {-1, HK_OUTCOME_PERMANENT},
};

START_TEST(test_classify_status_table)
{
    const status_case_t *c = &status_cases[_i];
    hk_attempt_result_t res = {.http_status = c->status, .curl_code = CURLE_OK};
    ck_assert_msg(hk_classify(&res) == c->want, "status %d: got %s, want %s", c->status,
                  hk_outcome_name(hk_classify(&res)), hk_outcome_name(c->want));
}
END_TEST

typedef struct curl_case {
    int code;
    hk_outcome_t want;
} curl_case_t;

static const curl_case_t curl_cases[] = {
    {CURLE_OK, HK_OUTCOME_RETRYABLE}, // finished, but no status: no response
    {CURLE_COULDNT_RESOLVE_PROXY, HK_OUTCOME_RETRYABLE},
    {CURLE_COULDNT_RESOLVE_HOST, HK_OUTCOME_RETRYABLE},
    {CURLE_COULDNT_CONNECT, HK_OUTCOME_RETRYABLE},
    {CURLE_OPERATION_TIMEDOUT, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_CONNECT_ERROR, HK_OUTCOME_RETRYABLE},
    {CURLE_PEER_FAILED_VERIFICATION, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_CERTPROBLEM, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_CIPHER, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_CACERT_BADFILE, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_ENGINE_NOTFOUND, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_ENGINE_SETFAILED, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_ENGINE_INITFAILED, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_ISSUER_ERROR, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_PINNEDPUBKEYNOTMATCH, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_INVALIDCERTSTATUS, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_SHUTDOWN_FAILED, HK_OUTCOME_RETRYABLE},
    {CURLE_SSL_CRL_BADFILE, HK_OUTCOME_RETRYABLE},
    {CURLE_SEND_ERROR, HK_OUTCOME_RETRYABLE},
    {CURLE_RECV_ERROR, HK_OUTCOME_RETRYABLE},
    {CURLE_GOT_NOTHING, HK_OUTCOME_RETRYABLE},
    {CURLE_PARTIAL_FILE, HK_OUTCOME_RETRYABLE},
    {CURLE_HTTP2, HK_OUTCOME_RETRYABLE},
    {CURLE_HTTP2_STREAM, HK_OUTCOME_RETRYABLE},
    {CURLE_WEIRD_SERVER_REPLY, HK_OUTCOME_RETRYABLE}, // unlisted transport errors retry
    {CURLE_OUT_OF_MEMORY, HK_OUTCOME_RETRYABLE},

    {CURLE_URL_MALFORMAT, HK_OUTCOME_PERMANENT},
    {CURLE_UNSUPPORTED_PROTOCOL, HK_OUTCOME_PERMANENT},
    {CURLE_BAD_FUNCTION_ARGUMENT, HK_OUTCOME_PERMANENT},
    {CURLE_TOO_MANY_REDIRECTS, HK_OUTCOME_PERMANENT},
    {CURLE_NOT_BUILT_IN, HK_OUTCOME_PERMANENT},
    {CURLE_UNKNOWN_OPTION, HK_OUTCOME_PERMANENT},
};

START_TEST(test_classify_curl_code_without_response)
{
    const curl_case_t *c = &curl_cases[_i];
    hk_attempt_result_t res = {.http_status = 0, .curl_code = c->code};
    ck_assert_msg(hk_classify(&res) == c->want, "curl code %d: got %s, want %s", c->code,
                  hk_outcome_name(hk_classify(&res)), hk_outcome_name(c->want));
}
END_TEST

START_TEST(test_classify_blocked_wins)
{
    hk_attempt_result_t res = {.http_status = 0, .curl_code = CURLE_COULDNT_CONNECT, .blocked = 1};
    ck_assert_int_eq(hk_classify(&res), HK_OUTCOME_BLOCKED);
    res.curl_code = CURLE_OK;
    ck_assert_int_eq(hk_classify(&res), HK_OUTCOME_BLOCKED);
}
END_TEST

START_TEST(test_classify_status_decides_over_later_transport_error)
{
    // e.g. the body was cut off by the response-size cap after a 200
    hk_attempt_result_t res = {.http_status = 200, .curl_code = CURLE_WRITE_ERROR};
    ck_assert_int_eq(hk_classify(&res), HK_OUTCOME_DELIVERED);
    res = (hk_attempt_result_t){.http_status = 404, .curl_code = CURLE_OPERATION_TIMEDOUT};
    ck_assert_int_eq(hk_classify(&res), HK_OUTCOME_PERMANENT);
    res = (hk_attempt_result_t){.http_status = 503, .curl_code = CURLE_RECV_ERROR};
    ck_assert_int_eq(hk_classify(&res), HK_OUTCOME_RETRYABLE);
}
END_TEST

START_TEST(test_outcome_names_are_stable)
{
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_DELIVERED), "delivered");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_RETRYABLE), "retryable");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_PERMANENT), "permanent");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_GONE), "gone");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_BLOCKED), "blocked");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_EXHAUSTED), "exhausted");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_EXPIRED), "expired");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME_INVALID), "invalid");
    ck_assert_str_eq(hk_outcome_name(HK_OUTCOME__CNT), "unknown");
    ck_assert_str_eq(hk_outcome_name((hk_outcome_t)-1), "unknown");
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("classify");
    TCase *tc = tcase_create("classify");
    tcase_add_loop_test(tc, test_classify_status_table, 0,
                        (int)(sizeof(status_cases) / sizeof(status_cases[0])));
    tcase_add_loop_test(tc, test_classify_curl_code_without_response, 0,
                        (int)(sizeof(curl_cases) / sizeof(curl_cases[0])));
    tcase_add_test(tc, test_classify_blocked_wins);
    tcase_add_test(tc, test_classify_status_decides_over_later_transport_error);
    tcase_add_test(tc, test_outcome_names_are_stable);
    suite_add_tcase(s, tc);
    return s;
}
