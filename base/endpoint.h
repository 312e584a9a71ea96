// endpoint: the endpoint key of a URL, "scheme://host:port", the identity that
// lanes, rules and shared state use (worker/lane.c, worker/dispatch.h). The host
// is normalised once, here: lower case, trailing dots dropped, IP literals
// canonical (IPv4 in any spelling curl accepts - decimal, octal, hex, short forms
// - as dotted quad; IPv4-mapped IPv6 as the IPv4 address; other IPv6 as inet_ntop
// writes it, in brackets), and "localhost" as 127.0.0.1; the port in decimal, the
// default filled in. A task computes its key once, when its job is attached
// (hk_task_set_job), so the dispatcher never parses URLs under its lock.
//
// A leaf: uses libcurl's URL parser and libc, nothing of hookd. Any thread.
#ifndef HK_ENDPOINT_H
#define HK_ENDPOINT_H

#include <stddef.h>

// The longest key: "https://" + a 255-byte host (DNS names stop at 253) +
// ":65535" + NUL. Size key buffers with it.
#define HK_ENDPOINT_HOST_MAX 255
#define HK_ENDPOINT_KEY_MAX  (8 + HK_ENDPOINT_HOST_MAX + 6 + 1)

// The key of `url`. 0 ok, -1 not a usable URL (or a host longer than
// HK_ENDPOINT_HOST_MAX, or `out` too small).
int hk_endpoint_of(const char *url, char *out, size_t out_size);

// The key "scheme://<ip>:<port>" of the peer actually connected (scheme from
// `url`; `ip` as curl reports it: IPv4, or IPv6 without brackets). 0 ok, -1 when
// `ip` is not an IP address.
int hk_endpoint_peer_key(const char *url, const char *ip, long port, char *out, size_t out_size);

#endif
