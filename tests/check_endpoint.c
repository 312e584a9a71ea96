// check_endpoint: the endpoint key (base/endpoint.h). Every spelling of one
// address gives one key; names are lower-cased without their trailing dots; a
// host of the largest size fills a key buffer of HK_ENDPOINT_KEY_MAX exactly and
// a longer one, or a buffer too small, is refused rather than cut; the peer key
// writes an address the way the URL key does. The dispatcher's use of the key
// (one lane, one rule per address) is check_dispatch's.
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "base/endpoint.h"
#include "tests/support/ck_main.h"

START_TEST(test_every_spelling_of_an_address_is_one_key)
{
    const char *same[] = {"http://127.0.0.1:8080/",
                          "HTTP://127.0.0.1:8080/x",
                          "http://localhost:8080/",
                          "http://LOCALHOST.:8080/",
                          "http://[::ffff:127.0.0.1]:8080/",
                          "http://[::FFFF:7f00:1]:8080/",
                          "http://127.0.0.1.:8080/",
                          "http://2130706433:8080/",
                          "http://0x7f.1:8080/",
                          "http://017700000001:8080/",
                          "http://127.1.:8080/"};
    char key[HK_ENDPOINT_KEY_MAX];
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        ck_assert_msg(hk_endpoint_of(same[i], key, sizeof(key)) == 0, "%s", same[i]);
        ck_assert_msg(strcmp(key, "http://127.0.0.1:8080") == 0, "%s -> %s", same[i], key);
    }
    ck_assert_int_eq(hk_endpoint_of("http://[0:0::1]/", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "http://[::1]:80");
}
END_TEST

START_TEST(test_a_name_is_lower_case_without_trailing_dots_and_with_its_port)
{
    char key[HK_ENDPOINT_KEY_MAX];
    ck_assert_int_eq(hk_endpoint_of("https://Example.COM./a", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "https://example.com:443");
    ck_assert_int_eq(hk_endpoint_of("http://shop.example../", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "http://shop.example:80");
    ck_assert_int_eq(hk_endpoint_of("http://shop.example:8443", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "http://shop.example:8443");
    ck_assert_int_eq(hk_endpoint_of("not a url", key, sizeof(key)), -1);
    ck_assert_int_eq(hk_endpoint_of("http://./", key, sizeof(key)), -1);
}
END_TEST

START_TEST(test_the_largest_host_fills_the_key_and_a_longer_one_is_refused)
{
    char host[HK_ENDPOINT_HOST_MAX + 1], url[512], key[HK_ENDPOINT_KEY_MAX];
    for (int i = 0; i < HK_ENDPOINT_HOST_MAX; i++)
        host[i] = (i % 64 == 63) ? '.' : 'a';
    host[HK_ENDPOINT_HOST_MAX] = '\0';
    snprintf(url, sizeof(url), "https://%s:65535/x", host);
    ck_assert_int_eq(hk_endpoint_of(url, key, sizeof(key)), 0);
    ck_assert_uint_eq(strlen(key), HK_ENDPOINT_KEY_MAX - 1);
    // One byte more is refused, however large the buffer.
    char longer[600], big[600];
    snprintf(longer, sizeof(longer), "https://a%s:65535/x", host);
    ck_assert_int_eq(hk_endpoint_of(longer, big, sizeof(big)), -1);
    // A buffer one byte short is refused, its key never cut.
    ck_assert_int_eq(hk_endpoint_of(url, key, sizeof(key) - 1), -1);
    ck_assert_int_eq(hk_endpoint_of("http://a.example/", key, strlen("http://a.example:80")), -1);
}
END_TEST

START_TEST(test_the_peer_key_writes_an_address_as_the_url_key_does)
{
    char key[HK_ENDPOINT_KEY_MAX], url_key[HK_ENDPOINT_KEY_MAX];
    ck_assert_int_eq(
        hk_endpoint_peer_key("HTTPS://any.example/", "::ffff:127.0.0.1", 8443, key, sizeof(key)),
        0);
    ck_assert_str_eq(key, "https://127.0.0.1:8443");
    ck_assert_int_eq(hk_endpoint_peer_key("http://any.example/", "0:0::1", 80, key, sizeof(key)),
                     0);
    ck_assert_int_eq(hk_endpoint_of("http://[::1]/", url_key, sizeof(url_key)), 0);
    ck_assert_str_eq(key, url_key);
    ck_assert_int_eq(
        hk_endpoint_peer_key("http://any.example/", "any.example", 80, key, sizeof(key)), -1);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("endpoint");
    TCase *tc = tcase_create("keys");
    tcase_add_test(tc, test_every_spelling_of_an_address_is_one_key);
    tcase_add_test(tc, test_a_name_is_lower_case_without_trailing_dots_and_with_its_port);
    tcase_add_test(tc, test_the_largest_host_fills_the_key_and_a_longer_one_is_refused);
    tcase_add_test(tc, test_the_peer_key_writes_an_address_as_the_url_key_does);
    suite_add_tcase(s, tc);
    return s;
}
