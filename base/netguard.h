// netguard: the SSRF guard of DESIGN §12. Decides whether hookd may connect to an
// address: loopback, private, link-local (cloud metadata), CGNAT, multicast,
// reserved and unspecified ranges, IPv4 and IPv6 (IPv4-mapped, SIIT-translated,
// NAT64 and 6to4 forms map to their IPv4 address; Teredo is refused whole), are
// refused unless an allow CIDR covers them.
// Called from curl's open-socket callback with the address actually connected.
// Immutable after hk_netguard_new(): any thread may call hk_netguard_check().
#ifndef HK_NETGUARD_H
#define HK_NETGUARD_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct hk_netguard_s hk_netguard_t;

// `allow_cidrs`: CIDRs separated by commas and/or spaces ("127.0.0.0/8, ::1/128");
// NULL or "" allows nothing extra. Returns NULL with errstr on a bad CIDR.
hk_netguard_t *hk_netguard_new(const char *allow_cidrs, char *errstr, size_t errstr_size);
void hk_netguard_destroy(hk_netguard_t *ng);

// Checks `allow_cidrs` by the rules of hk_netguard_new() without building a guard
// (config's validation of delivery.allow_cidrs). 0 ok, -1 with errstr naming the
// first bad entry.
int hk_netguard_check_cidrs(const char *allow_cidrs, char *errstr, size_t errstr_size);

// 1 allowed, 0 refused. On refusal *why (when not NULL) names the range, e.g.
// "loopback", "private", "link-local", "cgnat", "multicast", "reserved".
int hk_netguard_check(const hk_netguard_t *ng, const struct sockaddr *sa, socklen_t salen,
                      const char **why);

#endif
