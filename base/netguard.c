// netguard: the SSRF guard (DESIGN §12, contract in netguard.h).
// An address is judged in three steps:
//  1. IPv6 forms that carry an IPv4 address (::ffff:a.b.c.d mapped, ::a.b.c.d
//     compatible, ::ffff:0:a.b.c.d SIIT-translated, 64:ff9b::/96 NAT64, 2002::/16
//     6to4) are reduced to that IPv4
//     address: the packet ends up there, so ::ffff:127.0.0.1 is loopback.
//  2. An allow CIDR covering the address lets it through. An IPv4 CIDR covers the
//     IPv4 address in every form above. An IPv6 CIDR covers IPv6 addresses, and an
//     embedded-IPv4 form only when the CIDR lies inside that form's prefix (so
//     "2002:7f00:1::/48" allows that 6to4 block, but "::/0" does not open IPv4).
//     IPv6 CIDRs inside ::ffff:0:0/96 are stored as the IPv4 CIDR they denote.
//  3. Otherwise the built-in denied ranges below refuse it, with a name for logs.
// Allow CIDR syntax: "a.b.c.d/n" or "ipv6/n", or a bare address meaning /32 or
// /128. Host bits past the prefix are rejected ("10.0.0.1/8"), since such an entry
// is usually a typo for something narrower; the error suggests the network form.
// Besides the usual special-purpose ranges, fec0::/10 (deprecated site-local),
// 64:ff9b:1::/48 (local-use NAT64, whose IPv4 embedding is network-specific) and
// 3fff::/20 (documentation, RFC 9637) are refused. Teredo (2001::/32) is refused whole:
// its client address is obfuscated and its packets go through a relay, so it is not
// unwrapped. 192.88.99.0/24 (6to4 relay anycast, deprecated by RFC 7526) is refused.
// hk_netguard_check() only reads the immutable table: no allocation, no locks.
#include "base/netguard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NG_SEPARATORS " ,\t\r\n"
#define NG_TOKEN_MAX  (INET6_ADDRSTRLEN + 4) // address + "/128"
#define NG_ERR_TOKEN  64                     // longest token quoted in an error

typedef struct ng_cidr {
    uint8_t nc_addr[16]; // IPv4 in the first 4 bytes
    uint8_t nc_bits;
    uint8_t nc_v4; // 1: IPv4 CIDR, 0: IPv6 CIDR
} ng_cidr_t;

struct hk_netguard_s {
    size_t ng_count;
    ng_cidr_t ng_cidrs[];
};

typedef struct ng_range {
    uint8_t nr_addr[16];
    uint8_t nr_bits;
    const char *nr_why;
} ng_range_t;

// First match wins, so the narrow entries come before the ranges containing them.
static const ng_range_t ng_denied_v4[] = {
    {{0, 0, 0, 0}, 32, "unspecified"},
    {{0, 0, 0, 0}, 8, "reserved"}, // "this network"
    {{10, 0, 0, 0}, 8, "private"},
    {{100, 64, 0, 0}, 10, "cgnat"},
    {{127, 0, 0, 0}, 8, "loopback"},
    {{169, 254, 0, 0}, 16, "link-local"}, // includes metadata 169.254.169.254
    {{172, 16, 0, 0}, 12, "private"},
    {{192, 0, 0, 0}, 24, "reserved"}, // IETF protocol assignments
    {{192, 0, 2, 0}, 24, "reserved"}, // TEST-NET-1
    {{192, 168, 0, 0}, 16, "private"},
    {{192, 88, 99, 0}, 24, "reserved"},  // 6to4 relay anycast
    {{198, 18, 0, 0}, 15, "reserved"},   // benchmarking
    {{198, 51, 100, 0}, 24, "reserved"}, // TEST-NET-2
    {{203, 0, 113, 0}, 24, "reserved"},  // TEST-NET-3
    {{224, 0, 0, 0}, 4, "multicast"},
    {{255, 255, 255, 255}, 32, "reserved"}, // limited broadcast
    {{240, 0, 0, 0}, 4, "reserved"},
};

static const ng_range_t ng_denied_v6[] = {
    {{0}, 128, "unspecified"},
    {{[15] = 1}, 128, "loopback"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "private"}, // deprecated site-local
    {{0xfc, 0x00}, 7, "private"},  // unique local, includes metadata fd00:ec2::254
    {{0xff, 0x00}, 8, "multicast"},
    {{0x20, 0x01, 0x00, 0x00}, 32, "reserved"},             // Teredo
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "reserved"},             // documentation
    {{0x3f, 0xff}, 20, "reserved"},                         // documentation
    {{0x01, 0x00}, 64, "reserved"},                         // discard-only
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "reserved"}, // local-use NAT64
};

static int ng_prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned full = bits / 8;
    unsigned rest = bits % 8;
    if (memcmp(a, net, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

// When the IPv6 address a carries an IPv4 address, copies it to v4 and returns the
// length of the prefix that marks the form; 0 for a plain IPv6 address.
static unsigned ng_embedded_v4(const uint8_t a[16], uint8_t v4[4])
{
    static const uint8_t zero[12];
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const uint8_t translated[12] = {[8] = 0xff, [9] = 0xff}; // SIIT, RFC 2765

    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 || memcmp(a, translated, 12) == 0) {
        memcpy(v4, a + 12, 4);
        return 96;
    }
    if (memcmp(a, zero, 12) == 0) {
        // :: and ::1 are IPv6's own unspecified and loopback addresses.
        static const uint8_t lo[4] = {0, 0, 0, 1};
        if (memcmp(a + 12, zero, 4) == 0 || memcmp(a + 12, lo, 4) == 0)
            return 0;
        memcpy(v4, a + 12, 4);
        return 96;
    }
    if (a[0] == 0x20 && a[1] == 0x02) {
        memcpy(v4, a + 2, 4);
        return 16;
    }
    return 0;
}

// v4 may be NULL (plain IPv6); v6 may be NULL (AF_INET). embed_bits as above.
static int ng_allowed(const hk_netguard_t *ng, const uint8_t *v4, const uint8_t *v6,
                      unsigned embed_bits)
{
    for (size_t i = 0; ng != NULL && i < ng->ng_count; i++) {
        const ng_cidr_t *nc = &ng->ng_cidrs[i];
        if (nc->nc_v4) {
            if (v4 != NULL && ng_prefix_match(v4, nc->nc_addr, nc->nc_bits))
                return 1;
        } else if (v6 != NULL && nc->nc_bits >= embed_bits &&
                   ng_prefix_match(v6, nc->nc_addr, nc->nc_bits)) {
            return 1;
        }
    }
    return 0;
}

static const char *ng_denied(const ng_range_t *ranges, size_t n, const uint8_t *a)
{
    for (size_t i = 0; i < n; i++) {
        if (ng_prefix_match(a, ranges[i].nr_addr, ranges[i].nr_bits))
            return ranges[i].nr_why;
    }
    return NULL;
}

int hk_netguard_check(const hk_netguard_t *ng, const struct sockaddr *sa, socklen_t salen,
                      const char **why)
{
    const uint8_t *v6 = NULL;
    uint8_t v6_buf[16];
    uint8_t v4[4];
    unsigned embed_bits = 0;
    int has_v4 = 0;
    const char *reason;

    if (sa != NULL && sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        // Copied by offset: curl's sockaddr need not be aligned for sockaddr_in.
        memcpy(v4, (const char *)sa + offsetof(struct sockaddr_in, sin_addr), 4);
        has_v4 = 1;
    } else if (sa != NULL && sa->sa_family == AF_INET6 &&
               salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(v6_buf, (const char *)sa + offsetof(struct sockaddr_in6, sin6_addr), 16);
        v6 = v6_buf;
        embed_bits = ng_embedded_v4(v6, v4);
        has_v4 = embed_bits > 0;
    } else {
        reason = "family";
        goto refused;
    }

    if (ng_allowed(ng, has_v4 ? v4 : NULL, v6, embed_bits)) {
        if (why != NULL)
            *why = NULL;
        return 1;
    }
    if (has_v4)
        reason = ng_denied(ng_denied_v4, sizeof(ng_denied_v4) / sizeof(ng_denied_v4[0]), v4);
    else
        reason = ng_denied(ng_denied_v6, sizeof(ng_denied_v6) / sizeof(ng_denied_v6[0]), v6);
    if (reason == NULL) {
        if (why != NULL)
            *why = NULL;
        return 1;
    }
refused:
    if (why != NULL)
        *why = reason;
    return 0;
}

static int ng_error(char *errstr, size_t errstr_size, const char *tok, size_t len,
                    const char *problem)
{
    if (errstr != NULL && errstr_size > 0) {
        int shown = len > NG_ERR_TOKEN ? NG_ERR_TOKEN : (int)len;
        snprintf(errstr, errstr_size, "allow CIDR \"%.*s%s\": %s", shown, tok,
                 len > NG_ERR_TOKEN ? "..." : "", problem);
    }
    return -1;
}

// Parses one token ("addr" or "addr/bits", not NUL-terminated) into nc.
static int ng_parse_cidr(const char *tok, size_t len, ng_cidr_t *nc, char *errstr,
                         size_t errstr_size)
{
    char buf[NG_TOKEN_MAX + 1];
    if (len > NG_TOKEN_MAX)
        return ng_error(errstr, errstr_size, tok, len, "not an IPv4 or IPv6 CIDR");
    memcpy(buf, tok, len);
    buf[len] = '\0';

    char *slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    int v4 = strchr(buf, ':') == NULL;
    unsigned max = v4 ? 32 : 128;
    memset(nc, 0, sizeof(*nc));
    if (inet_pton(v4 ? AF_INET : AF_INET6, buf, nc->nc_addr) != 1)
        return ng_error(errstr, errstr_size, tok, len, "not an IPv4 or IPv6 CIDR");

    unsigned bits = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t digits = strspn(p, "0123456789");
        if (digits == 0 || digits > 3 || p[digits] != '\0' || (bits = (unsigned)atoi(p)) > max)
            return ng_error(errstr, errstr_size, tok, len,
                            v4 ? "prefix length must be 0 to 32 for IPv4"
                               : "prefix length must be 0 to 128 for IPv6");
    }

    // Host bits must be zero: suggest the network the prefix describes.
    uint8_t net[16];
    memcpy(net, nc->nc_addr, sizeof(net));
    for (unsigned i = bits; i < max; i++)
        net[i / 8] &= (uint8_t) ~(0x80 >> (i % 8));
    if (memcmp(net, nc->nc_addr, sizeof(net)) != 0) {
        char text[INET6_ADDRSTRLEN];
        char problem[INET6_ADDRSTRLEN + 64];
        inet_ntop(v4 ? AF_INET : AF_INET6, net, text, sizeof(text));
        snprintf(problem, sizeof(problem), "host bits are set (did you mean %s/%u?)", text, bits);
        return ng_error(errstr, errstr_size, tok, len, problem);
    }

    // ::ffff:a.b.c.d/n is the IPv4 CIDR a.b.c.d/(n-96).
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (!v4 && bits >= 96 && memcmp(nc->nc_addr, mapped, 12) == 0) {
        memmove(nc->nc_addr, nc->nc_addr + 12, 4);
        memset(nc->nc_addr + 4, 0, 12);
        bits -= 96;
        v4 = 1;
    }
    nc->nc_bits = (uint8_t)bits;
    nc->nc_v4 = (uint8_t)v4;
    return 0;
}

hk_netguard_t *hk_netguard_new(const char *allow_cidrs, char *errstr, size_t errstr_size)
{
    const char *list = allow_cidrs != NULL ? allow_cidrs : "";
    size_t count = 0;
    for (const char *p = list + strspn(list, NG_SEPARATORS); *p != '\0';
         p += strspn(p, NG_SEPARATORS)) {
        p += strcspn(p, NG_SEPARATORS);
        count++;
    }

    hk_netguard_t *ng = calloc(1, sizeof(*ng) + count * sizeof(ng->ng_cidrs[0]));
    if (ng == NULL) {
        if (errstr != NULL && errstr_size > 0)
            snprintf(errstr, errstr_size, "allow CIDRs: out of memory");
        return NULL;
    }
    for (const char *p = list + strspn(list, NG_SEPARATORS); *p != '\0';
         p += strspn(p, NG_SEPARATORS)) {
        size_t len = strcspn(p, NG_SEPARATORS);
        if (ng_parse_cidr(p, len, &ng->ng_cidrs[ng->ng_count], errstr, errstr_size) < 0) {
            free(ng);
            return NULL;
        }
        ng->ng_count++;
        p += len;
    }
    return ng;
}

int hk_netguard_check_cidrs(const char *allow_cidrs, char *errstr, size_t errstr_size)
{
    const char *list = allow_cidrs != NULL ? allow_cidrs : "";
    for (const char *p = list + strspn(list, NG_SEPARATORS); *p != '\0';
         p += strspn(p, NG_SEPARATORS)) {
        size_t len = strcspn(p, NG_SEPARATORS);
        ng_cidr_t nc;
        if (ng_parse_cidr(p, len, &nc, errstr, errstr_size) < 0)
            return -1;
        p += len;
    }
    return 0;
}

void hk_netguard_destroy(hk_netguard_t *ng)
{
    free(ng);
}
