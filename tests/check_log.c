// Unit tests of base/log.c: how URLs appear in logs (log.full_urls).
#include "base/log.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/ck_main.h"

static void teardown(void)
{
    hk_log_set_full_urls(0);
}

START_TEST(test_url_keeps_scheme_host_and_port_only)
{
    static const struct {
        const char *url, *shown;
    } cases[] = {
        {"https://hooks.example.com/in/tok_SECRET", "https://hooks.example.com/..."},
        {"https://hooks.example.com:8443/in?token=SECRET", "https://hooks.example.com:8443/..."},
        {"http://127.0.0.1:9000?token=SECRET", "http://127.0.0.1:9000/..."},
        {"http://h.example#SECRET", "http://h.example/..."},
        {"https://user:SECRET@h.example/x", "https://h.example/..."},
        {"https://a@b:SECRET@h.example", "https://h.example"},
        {"https://[::1]:8443/SECRET", "https://[::1]:8443/..."},
        {"https://h.example/", "https://h.example/"},
        {"https://h.example", "https://h.example"},
        {"not a url SECRET", "<not a URL>"},
        {"://SECRET", "<not a URL>"},
        {"ht tp://SECRET/x", "<not a URL>"},
        {"", "<not a URL>"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256];
        ck_assert_str_eq(hk_log_url(cases[i].url, buf, sizeof(buf)), cases[i].shown);
    }
    // A buffer too small cuts, never overflows.
    char tiny[8];
    ck_assert_int_eq(strlen(hk_log_url("https://hooks.example.com/x", tiny, sizeof(tiny))), 7);
}
END_TEST

START_TEST(test_full_urls_shows_them_whole)
{
    hk_log_set_full_urls(1);
    ck_assert_int_eq(hk_log_full_urls(), 1);
    char buf[64];
    const char *url = "https://h.example/in?token=abc";
    ck_assert_ptr_eq(hk_log_url(url, buf, sizeof(buf)), url);
}
END_TEST

// What hk_log writes to stderr while `url` is logged as field "url" (and "other").
static char *log_line_with_url(const char *url)
{
    char path[] = "/tmp/check_log_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    hk_log(HK_LOG_WARN, "url_disabled", "{s:s,s:s,s:i}", "url", url, "endpoint", "e", "n", 1);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)len + 1);
    ck_assert_int_eq(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    return text;
}

// Every log site that names its field "url" gets the short form: the one place
// that decides, so no call site can forget.
START_TEST(test_log_lines_show_url_fields_short)
{
    char *line = log_line_with_url("https://h.example/in/tok_SECRET?sig=SECRET");
    ck_assert_msg(strstr(line, "\"url\":\"https://h.example/...\"") != NULL, "%s", line);
    ck_assert_msg(strstr(line, "SECRET") == NULL, "%s", line);
    ck_assert_ptr_nonnull(strstr(line, "\"endpoint\":\"e\""));
    free(line);
    hk_log_set_full_urls(1);
    line = log_line_with_url("https://h.example/in/tok_SECRET");
    ck_assert_msg(strstr(line, "\"url\":\"https://h.example/in/tok_SECRET\"") != NULL, "%s", line);
    free(line);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("urls");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_url_keeps_scheme_host_and_port_only);
    tcase_add_test(tc, test_full_urls_shows_them_whole);
    tcase_add_test(tc, test_log_lines_show_url_fields_short);
    suite_add_tcase(s, tc);
    return s;
}
