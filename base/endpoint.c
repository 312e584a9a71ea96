#include "base/endpoint.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
}

// An IPv6 address as the key writes it: an IPv4-mapped one as its IPv4 address
// (the same peer), others as inet_ntop writes them, in brackets.
static int ip6_canon(const struct in6_addr *a6, char *out, size_t size)
{
    char buf[INET6_ADDRSTRLEN];
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
        struct in_addr a4;
        memcpy(&a4, &a6->s6_addr[12], 4);
        return inet_ntop(AF_INET, &a4, out, (socklen_t)size) ? 0 : -1;
    }
    if (!inet_ntop(AF_INET6, a6, buf, sizeof(buf)))
        return -1;
    int n = snprintf(out, size, "[%s]", buf);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

// The host part of an endpoint key (see hk_endpoint_of). `host` as curl
// gives it (IPv6 in brackets, zone id dropped; IPv4 spellings already dotted).
static int host_canon(const char *host, char *out, size_t size)
{
    size_t len = strlen(host);
    if (len == 0 || len > HK_ENDPOINT_HOST_MAX + 2)
        return -1;
    if (host[0] == '[') {
        char inner[INET6_ADDRSTRLEN + 1];
        const char *close = strchr(host, ']');
        size_t n = close ? (size_t)(close - host - 1) : 0;
        struct in6_addr a6;
        if (close && n < sizeof(inner)) {
            memcpy(inner, host + 1, n);
            inner[n] = '\0';
            char *pct = strchr(inner, '%');
            if (pct)
                *pct = '\0';
            if (inet_pton(AF_INET6, inner, &a6) == 1)
                return ip6_canon(&a6, out, size);
        }
        if (len >= size)
            return -1;
        memcpy(out, host, len + 1);
        lower(out);
        return 0;
    }
    char buf[HK_ENDPOINT_HOST_MAX + 3];
    memcpy(buf, host, len + 1);
    lower(buf);
    while (len > 0 && buf[len - 1] == '.') // "example.com." is example.com
        buf[--len] = '\0';
    if (len == 0 || len > HK_ENDPOINT_HOST_MAX)
        return -1;
    // curl writes IPv4 literals as dotted quads, but not once a trailing dot hid
    // them ("127.1."): read those as curl would (inet_aton takes the same
    // decimal, octal, hex and short forms).
    struct in_addr a4;
    if (strspn(buf, "0123456789abcdefx.") == len && inet_aton(buf, &a4) == 1)
        return inet_ntop(AF_INET, &a4, out, (socklen_t)size) ? 0 : -1;
    if (strcmp(buf, "localhost") == 0) // curl answers it itself, with loopback
        snprintf(buf, sizeof(buf), "127.0.0.1");
    int n = snprintf(out, size, "%s", buf);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

int hk_endpoint_of(const char *url, char *out, size_t out_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    char h[HK_ENDPOINT_HOST_MAX + 3];
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        host_canon(host, h, sizeof(h)) == 0) {
        lower(scheme);
        char *end;
        long p = strtol(port, &end, 10);
        if (*end == '\0' && p > 0 && p <= 65535) {
            int n = snprintf(out, out_size, "%s://%s:%ld", scheme, h, p);
            rc = n > 0 && (size_t)n < out_size ? 0 : -1;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

int hk_endpoint_peer_key(const char *url, const char *ip, long port, char *out, size_t out_size)
{
    char addr[INET6_ADDRSTRLEN + 2];
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        if (!inet_ntop(AF_INET, &a4, addr, sizeof(addr)))
            return -1;
    } else if (inet_pton(AF_INET6, ip, &a6) != 1 || ip6_canon(&a6, addr, sizeof(addr)) != 0) {
        return -1;
    }
    const char *scheme = strncasecmp(url, "https:", 6) == 0 ? "https" : "http";
    snprintf(out, out_size, "%s://%s:%ld", scheme, addr, port);
    return 0;
}
