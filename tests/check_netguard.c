// Unit tests for base/netguard.c: the SSRF guard's denied ranges, the IPv6 forms
// that embed an IPv4 address, allow CIDRs and their parsing errors.
#include "base/netguard.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "tests/support/ck_main.h"

static hk_netguard_t *ng;

static void setup_default(void)
{
    char err[256] = "";
    ng = hk_netguard_new(NULL, err, sizeof(err));
    ck_assert_msg(ng != NULL, "%s", err);
}

static void teardown(void)
{
    hk_netguard_destroy(ng);
    ng = NULL;
}

// Checks a textual address (IPv4 when it has no ':') through a real sockaddr.
static int check_addr(const hk_netguard_t *guard, const char *ip, const char **why)
{
    if (strchr(ip, ':') == NULL) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(443);
        ck_assert_msg(inet_pton(AF_INET, ip, &sin.sin_addr) == 1, "bad test address %s", ip);
        return hk_netguard_check(guard, (const struct sockaddr *)&sin, sizeof(sin), why);
    }
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(443);
    ck_assert_msg(inet_pton(AF_INET6, ip, &sin6.sin6_addr) == 1, "bad test address %s", ip);
    return hk_netguard_check(guard, (const struct sockaddr *)&sin6, sizeof(sin6), why);
}

// Asserts the verdict: want_why NULL means allowed.
static void expect(const hk_netguard_t *guard, const char *ip, const char *want_why)
{
    const char *why = "unset";
    int ok = check_addr(guard, ip, &why);
    if (want_why == NULL) {
        ck_assert_msg(ok == 1, "%s refused (%s), want allowed", ip, why ? why : "NULL");
        ck_assert_msg(why == NULL, "%s allowed but why = %s", ip, why);
    } else {
        ck_assert_msg(ok == 0, "%s allowed, want refused as %s", ip, want_why);
        ck_assert_msg(why != NULL && strcmp(why, want_why) == 0, "%s refused as %s, want %s", ip,
                      why ? why : "NULL", want_why);
    }
}

// The IPv6 spellings of an IPv4 address that netguard must judge as that address.
enum { FORM_V4, FORM_MAPPED, FORM_COMPAT, FORM_NAT64, FORM_6TO4, FORM_COUNT };

static void v4_form(const char *v4, int form, char *out, size_t out_size)
{
    uint8_t b[4];
    ck_assert_int_eq(inet_pton(AF_INET, v4, b), 1);
    switch (form) {
    case FORM_V4:
        snprintf(out, out_size, "%s", v4);
        break;
    case FORM_MAPPED:
        snprintf(out, out_size, "::ffff:%s", v4);
        break;
    case FORM_COMPAT:
        snprintf(out, out_size, "::%s", v4);
        break;
    case FORM_NAT64:
        snprintf(out, out_size, "64:ff9b::%02x%02x:%02x%02x", b[0], b[1], b[2], b[3]);
        break;
    default:
        snprintf(out, out_size, "2002:%02x%02x:%02x%02x::1", b[0], b[1], b[2], b[3]);
        break;
    }
}

typedef struct case_s {
    const char *ip;
    const char *why; // NULL: allowed
} case_t;

static const case_t v4_cases[] = {
    {"0.0.0.0", "unspecified"},
    {"0.1.2.3", "reserved"},
    {"0.255.255.255", "reserved"},
    {"10.0.0.1", "private"},
    {"10.255.255.255", "private"},
    {"9.255.255.255", NULL},
    {"11.0.0.0", NULL},
    {"172.15.255.255", NULL},
    {"172.16.0.0", "private"},
    {"172.20.10.5", "private"},
    {"172.31.255.255", "private"},
    {"172.32.0.0", NULL},
    {"192.168.0.1", "private"},
    {"192.168.255.255", "private"},
    {"192.169.0.0", NULL},
    {"127.0.0.1", "loopback"},
    {"127.255.255.254", "loopback"},
    {"128.0.0.0", NULL},
    {"169.254.169.254", "link-local"},
    {"169.254.0.1", "link-local"},
    {"169.253.255.255", NULL},
    {"100.63.255.255", NULL},
    {"100.64.0.0", "cgnat"},
    {"100.127.255.255", "cgnat"},
    {"100.128.0.0", NULL},
    {"223.255.255.255", NULL},
    {"224.0.0.1", "multicast"},
    {"239.255.255.250", "multicast"},
    {"240.0.0.1", "reserved"},
    {"254.1.2.3", "reserved"},
    {"255.255.255.255", "reserved"},
    {"192.0.0.8", "reserved"},
    {"192.0.1.0", NULL},
    {"192.0.2.1", "reserved"},
    {"198.17.255.255", NULL},
    {"198.18.0.1", "reserved"},
    {"198.19.255.255", "reserved"},
    {"198.20.0.0", NULL},
    {"198.51.100.7", "reserved"},
    {"203.0.113.9", "reserved"},
    {"203.0.114.0", NULL},
    {"8.8.8.8", NULL},
    {"1.1.1.1", NULL},
    {"93.184.216.34", NULL},
};

START_TEST(test_netguard_ipv4_ranges_in_every_form)
{
    const case_t *c = &v4_cases[_i];
    for (int form = 0; form < FORM_COUNT; form++) {
        char ip[64];
        v4_form(c->ip, form, ip, sizeof(ip));
        expect(ng, ip, c->why);
    }
}
END_TEST

static const case_t v6_cases[] = {
    {"::", "unspecified"},
    {"::1", "loopback"},
    {"fe80::1", "link-local"},
    {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"},
    {"fec0::1", "private"},
    {"fc00::1", "private"},
    {"fd00:ec2::254", "private"},
    {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"},
    {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"ff02::1", "multicast"},
    {"ff0e::101", "multicast"},
    {"2001:db8::1", "reserved"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"},
    {"2001:db7:ffff::1", NULL},
    {"2001:db9::1", NULL},
    {"3fff::1", "reserved"},
    {"100::1", "reserved"},
    {"100::ffff:ffff:ffff:ffff", "reserved"},
    {"100:0:0:1::1", NULL},
    {"64:ff9b:1::a00:1", "reserved"},
    {"2606:4700::1111", NULL},
    {"2001:4860:4860::8888", NULL},
    {"2a00:1450:4001:80b::200e", NULL},
    // Embedded IPv4 forms of public addresses stay allowed...
    {"::ffff:8.8.8.8", NULL},
    {"64:ff9b::8.8.8.8", NULL},
    {"2002:808:808::1", NULL},
    // ...and of private ones are refused, whatever the low bits of the 6to4 form.
    {"2002:a9fe:a9fe:ffff:ffff:ffff:ffff:ffff", "link-local"},
    {"::ffff:169.254.169.254", "link-local"},
    {"::ffff:0.0.0.0", "unspecified"},
    {"::0.0.0.2", "reserved"},
};

START_TEST(test_netguard_ipv6_ranges)
{
    expect(ng, v6_cases[_i].ip, v6_cases[_i].why);
}
END_TEST

START_TEST(test_netguard_refuses_unknown_family)
{
    const char *why = NULL;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    ck_assert_int_eq(hk_netguard_check(ng, (const struct sockaddr *)&sun, sizeof(sun), &why), 0);
    ck_assert_str_eq(why, "family");

    why = NULL;
    ck_assert_int_eq(hk_netguard_check(ng, NULL, 0, &why), 0);
    ck_assert_str_eq(why, "family");
}
END_TEST

START_TEST(test_netguard_refuses_truncated_sockaddr)
{
    const char *why = NULL;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, "8.8.8.8", &sin.sin_addr);
    ck_assert_int_eq(hk_netguard_check(ng, (const struct sockaddr *)&sin, 4, &why), 0);
    ck_assert_str_eq(why, "family");

    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2606:4700::1111", &sin6.sin6_addr);
    ck_assert_int_eq(hk_netguard_check(ng, (const struct sockaddr *)&sin6, sizeof(sin), &why), 0);
    ck_assert_str_eq(why, "family");
    ck_assert_int_eq(hk_netguard_check(ng, (const struct sockaddr *)&sin6, sizeof(sin6), &why), 1);
}
END_TEST

START_TEST(test_netguard_why_may_be_null)
{
    ck_assert_int_eq(check_addr(ng, "127.0.0.1", NULL), 0);
    ck_assert_int_eq(check_addr(ng, "8.8.8.8", NULL), 1);
    ck_assert_int_eq(check_addr(NULL, "8.8.8.8", NULL), 1); // NULL guard: defaults only
    ck_assert_int_eq(check_addr(NULL, "10.0.0.1", NULL), 0);
}
END_TEST

static hk_netguard_t *new_ok(const char *allow)
{
    char err[256] = "";
    hk_netguard_t *g = hk_netguard_new(allow, err, sizeof(err));
    ck_assert_msg(g != NULL, "\"%s\" rejected: %s", allow, err);
    return g;
}

START_TEST(test_netguard_empty_allow_list_allows_nothing_extra)
{
    const char *lists[] = {NULL, "", "   ", " , ,\t"};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        hk_netguard_t *g = new_ok(lists[i]);
        expect(g, "127.0.0.1", "loopback");
        expect(g, "::1", "loopback");
        expect(g, "8.8.8.8", NULL);
        hk_netguard_destroy(g);
    }
}
END_TEST

START_TEST(test_netguard_allow_lets_loopback_through)
{
    hk_netguard_t *g = new_ok("127.0.0.0/8, ::1/128");
    expect(g, "127.0.0.1", NULL);
    expect(g, "127.1.2.3", NULL);
    expect(g, "::1", NULL);
    // An IPv4 allow CIDR covers the address in every IPv6 form.
    for (int form = 0; form < FORM_COUNT; form++) {
        char ip[64];
        v4_form("127.0.0.1", form, ip, sizeof(ip));
        expect(g, ip, NULL);
        v4_form("10.0.0.1", form, ip, sizeof(ip));
        expect(g, ip, "private");
    }
    expect(g, "169.254.169.254", "link-local");
    expect(g, "fe80::1", "link-local");
    hk_netguard_destroy(g);
}
END_TEST

START_TEST(test_netguard_allow_separators_and_bare_addresses)
{
    hk_netguard_t *g = new_ok(" 10.1.0.0/16,192.168.7.7\t::1 ,, fd00:ec2::/32 ");
    expect(g, "10.1.2.3", NULL);
    expect(g, "10.2.0.0", "private");
    expect(g, "192.168.7.7", NULL); // bare address: /32
    expect(g, "192.168.7.8", "private");
    expect(g, "::1", NULL); // bare address: /128
    expect(g, "fd00:ec2::254", NULL);
    expect(g, "fd00:ec3::254", "private");
    hk_netguard_destroy(g);
}
END_TEST

START_TEST(test_netguard_ipv6_allow_does_not_open_ipv4)
{
    hk_netguard_t *g = new_ok("::/0");
    expect(g, "fd00::1", NULL);
    expect(g, "::1", NULL);
    expect(g, "127.0.0.1", "loopback");
    expect(g, "::ffff:127.0.0.1", "loopback");
    expect(g, "64:ff9b::7f00:1", "loopback");
    expect(g, "2002:7f00:1::1", "loopback");
    hk_netguard_destroy(g);

    g = new_ok("::1");
    expect(g, "127.0.0.1", "loopback");
    hk_netguard_destroy(g);
}
END_TEST

START_TEST(test_netguard_ipv6_allow_inside_an_embedding_prefix)
{
    hk_netguard_t *g = new_ok("2002:7f00:1::/48");
    expect(g, "2002:7f00:1::5", NULL);
    expect(g, "2002:7f00:2::1", "loopback");
    expect(g, "127.0.0.1", "loopback");
    hk_netguard_destroy(g);

    // Mapped CIDRs are read as the IPv4 CIDR they denote.
    g = new_ok("::ffff:10.0.0.0/104");
    expect(g, "10.9.8.7", NULL);
    expect(g, "::ffff:10.9.8.7", NULL);
    expect(g, "64:ff9b::a09:807", NULL);
    expect(g, "11.0.0.1", NULL);
    expect(g, "192.168.0.1", "private");
    hk_netguard_destroy(g);
}
END_TEST

START_TEST(test_netguard_allow_everything)
{
    hk_netguard_t *g = new_ok("0.0.0.0/0 ::/0");
    for (size_t i = 0; i < sizeof(v4_cases) / sizeof(v4_cases[0]); i++) {
        for (int form = 0; form < FORM_COUNT; form++) {
            char ip[64];
            v4_form(v4_cases[i].ip, form, ip, sizeof(ip));
            expect(g, ip, NULL);
        }
    }
    for (size_t i = 0; i < sizeof(v6_cases) / sizeof(v6_cases[0]); i++)
        expect(g, v6_cases[i].ip, NULL);
    hk_netguard_destroy(g);
}
END_TEST

START_TEST(test_netguard_allow_prefix_edges)
{
    hk_netguard_t *g = new_ok("172.16.0.0/13, fe80::/11, 10.0.0.5/32");
    expect(g, "172.23.255.255", NULL);
    expect(g, "172.24.0.0", "private");
    expect(g, "fe9f:ffff::1", NULL);
    expect(g, "fea0::1", "link-local");
    expect(g, "10.0.0.5", NULL);
    expect(g, "10.0.0.4", "private");
    expect(g, "10.0.0.6", "private");
    hk_netguard_destroy(g);
}
END_TEST

typedef struct bad_s {
    const char *list;
    const char *token; // must be quoted in errstr
    const char *says;  // and the problem mentioned
} bad_t;

static const bad_t bad_cidrs[] = {
    {"10.0.0.0/33", "10.0.0.0/33", "0 to 32"},
    {"::/129", "::/129", "0 to 128"},
    {"fe80::/200", "fe80::/200", "0 to 128"},
    {"garbage", "garbage", "not an IPv4 or IPv6 CIDR"},
    {"127.0.0.0/8, 10.0.0.0/33", "10.0.0.0/33", "0 to 32"},
    {"127.0.0.0/8 localhost ::1", "localhost", "not an IPv4 or IPv6 CIDR"},
    {"10.0.0.0/", "10.0.0.0/", "prefix length"},
    {"10.0.0.0/-1", "10.0.0.0/-1", "prefix length"},
    {"10.0.0.0/+8", "10.0.0.0/+8", "prefix length"},
    {"10.0.0.0/8/8", "10.0.0.0/8/8", "prefix length"},
    {"10.0.0.0/8x", "10.0.0.0/8x", "prefix length"},
    {"::1/0128", "::1/0128", "prefix length"},
    {"/8", "/8", "not an IPv4 or IPv6 CIDR"},
    {"10.0.0/8", "10.0.0/8", "not an IPv4 or IPv6 CIDR"},
    {"1.2.3.4.5", "1.2.3.4.5", "not an IPv4 or IPv6 CIDR"},
    {"256.0.0.0/8", "256.0.0.0/8", "not an IPv4 or IPv6 CIDR"},
    {"fe80::1%eth0", "fe80::1%eth0", "not an IPv4 or IPv6 CIDR"},
    {"10.0.0.0;8", "10.0.0.0;8", "not an IPv4 or IPv6 CIDR"},
    {"10.0.0.1/8", "10.0.0.1/8", "did you mean 10.0.0.0/8?"},
    {"127.0.0.1/8", "127.0.0.1/8", "did you mean 127.0.0.0/8?"},
    {"fd00::1/8", "fd00::1/8", "did you mean fd00::/8?"},
    {"::1/64", "::1/64", "did you mean ::/64?"},
};

START_TEST(test_netguard_rejects_bad_cidr)
{
    const bad_t *b = &bad_cidrs[_i];
    char err[256] = "";
    hk_netguard_t *g = hk_netguard_new(b->list, err, sizeof(err));
    ck_assert_msg(g == NULL, "\"%s\" accepted", b->list);
    char quoted[128];
    snprintf(quoted, sizeof(quoted), "\"%s\"", b->token);
    ck_assert_msg(strstr(err, quoted) != NULL, "errstr \"%s\" does not name %s", err, quoted);
    ck_assert_msg(strstr(err, b->says) != NULL, "errstr \"%s\" does not say \"%s\"", err, b->says);
    // config checks the list with the same rules and gets the same message.
    char check_err[256] = "";
    ck_assert_int_eq(hk_netguard_check_cidrs(b->list, check_err, sizeof(check_err)), -1);
    ck_assert_str_eq(check_err, err);
}
END_TEST

START_TEST(test_netguard_rejects_overlong_token)
{
    char list[512];
    memset(list, '1', sizeof(list) - 1);
    list[sizeof(list) - 1] = '\0';
    char err[256] = "";
    ck_assert_ptr_null(hk_netguard_new(list, err, sizeof(err)));
    ck_assert_msg(strstr(err, "...\": not an IPv4 or IPv6 CIDR") != NULL, "errstr \"%s\"", err);
    ck_assert_ptr_null(hk_netguard_new(list, NULL, 0));
}
END_TEST

START_TEST(test_netguard_accepts_prefix_extremes)
{
    const char *list = "0.0.0.0/0 1.2.3.4/32 ::/0 2001:db8::1/128 ::ffff:1.2.3.4/128";
    hk_netguard_t *g = new_ok(list);
    hk_netguard_destroy(g);
    ck_assert_int_eq(hk_netguard_check_cidrs(list, NULL, 0), 0);
    ck_assert_int_eq(hk_netguard_check_cidrs("", NULL, 0), 0);
    ck_assert_int_eq(hk_netguard_check_cidrs(NULL, NULL, 0), 0);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("netguard");

    TCase *tc = tcase_create("defaults");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_add_loop_test(tc, test_netguard_ipv4_ranges_in_every_form, 0,
                        (int)(sizeof(v4_cases) / sizeof(v4_cases[0])));
    tcase_add_loop_test(tc, test_netguard_ipv6_ranges, 0,
                        (int)(sizeof(v6_cases) / sizeof(v6_cases[0])));
    tcase_add_test(tc, test_netguard_refuses_unknown_family);
    tcase_add_test(tc, test_netguard_refuses_truncated_sockaddr);
    tcase_add_test(tc, test_netguard_why_may_be_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("allow");
    tcase_add_test(tc, test_netguard_empty_allow_list_allows_nothing_extra);
    tcase_add_test(tc, test_netguard_allow_lets_loopback_through);
    tcase_add_test(tc, test_netguard_allow_separators_and_bare_addresses);
    tcase_add_test(tc, test_netguard_ipv6_allow_does_not_open_ipv4);
    tcase_add_test(tc, test_netguard_ipv6_allow_inside_an_embedding_prefix);
    tcase_add_test(tc, test_netguard_allow_everything);
    tcase_add_test(tc, test_netguard_allow_prefix_edges);
    suite_add_tcase(s, tc);

    tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_netguard_rejects_bad_cidr, 0,
                        (int)(sizeof(bad_cidrs) / sizeof(bad_cidrs[0])));
    tcase_add_test(tc, test_netguard_rejects_overlong_token);
    tcase_add_test(tc, test_netguard_accepts_prefix_extremes);
    suite_add_tcase(s, tc);
    return s;
}
