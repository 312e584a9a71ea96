// admin: the operator HTTP endpoint (routes in admin.h). One thread of ours runs
// libmicrohttpd's epoll loop (MHD_run_wait) and, between turns, cuts connections
// past their deadline; on_request() and the connection callbacks run there too.
// Every handler only reads process counters or calls the thread-safe operator API
// of worker/dispatch, so the admin thread shares no state of its own with the rest
// of hookd.
//
// Why our own loop: libmicrohttpd's timeout is an idle timeout, which a client that
// sends a byte every few seconds never reaches, and it offers no call to close a
// connection from outside. In our loop the connection list and the sockets belong
// to the one thread that also closes them, so shutdown(2) on a socket can never hit
// a descriptor libmicrohttpd has closed and reused meanwhile.
#include "worker/admin.h"
#include "base/clock.h"

#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>

#include "base/log.h"
#include "base/metrics.h"
#include "worker/prom.h"
#include "base/err.h"
#include "base/endpoint.h"

// A slow client holds one connection for ADMIN_REQUEST_DEADLINE_MS at most, and
// one address holds ADMIN_MAX_PER_IP of ADMIN_MAX_CONNECTIONS: probes and scrapes
// from elsewhere always find room (connections are cheap in the epoll loop).
#define ADMIN_MAX_CONNECTIONS     256
#define ADMIN_MAX_PER_IP          8
#define ADMIN_IDLE_TIMEOUT_S      5     // no byte for this long: closed (libmicrohttpd)
#define ADMIN_REQUEST_DEADLINE_MS 10000 // from accept, or the previous answer on the connection
#define ADMIN_TURN_MS             100   // the loop checks deadlines and stop at least this often

// A connection libmicrohttpd has accepted (its socket context): on the admin
// thread's list until libmicrohttpd closes it.
typedef struct admin_conn {
    struct admin_conn *next, **pprev;
    int fd;
    int64_t deadline_ms; // hk_clock_mono_ms(); INT64_MAX once cut
} admin_conn_t;

struct hk_admin_s {
    struct MHD_Daemon *ad_mhd;
    pthread_t ad_thread;
    atomic_int ad_stop;
    admin_conn_t *ad_conns; // admin thread only
    hk_dispatch_t *ad_dispatch;
    int ad_port;
    atomic_int ad_ready;
    // The token is kept only as its SHA-256: comparing digests with CRYPTO_memcmp
    // takes the same time whatever the presented token's length or content.
    int ad_has_token;
    unsigned char ad_token_sha[SHA256_DIGEST_LENGTH];
    atomic_int ad_starting; // libmicrohttpd messages go to ad_start_err until started
    char ad_start_err[256];
    uint64_t ad_cut;          // connections cut at their deadline, not yet logged (admin thread)
    int64_t ad_cut_logged_ms; // when the last admin_slow_clients_cut line was written
    pthread_mutex_t ad_batch_lock; // guards the two below (set from main, read per request)
    hk_admin_batch_fn *ad_batch_fn;
    void *ad_batch_arg;
};

typedef enum route {
    ROUTE_NONE = 0,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_LANES,
    ROUTE_METRICS,
    ROUTE_ENABLE,
    ROUTE_DISABLE,
    ROUTE_RESET,
    ROUTE_BATCH,
} route_t;

// libmicrohttpd's own messages (bind failures, connection limit reached, ...).
__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    hk_admin_t *adm = cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    if (atomic_load(&adm->ad_starting))
        snprintf(adm->ad_start_err, sizeof(adm->ad_start_err), "%s", msg);
    else
        hk_log(HK_LOG_WARN, "admin_http_error", "{s:s}", "error", msg);
}

// Copies untrusted text (a request path) for an error message: at most 200 bytes,
// bytes outside printable ASCII as '?', so it is always valid JSON text.
static void sanitize(const char *in, char *out, size_t out_size)
{
    size_t n = 0;
    for (; *in && n + 1 < out_size && n < 200; in++)
        out[n++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
    out[n] = '\0';
}

// ---- listen address ----

// Splits "host:port" or "[v6]:port". 0 ok.
static int split_listen(const char *listen, char *host, size_t host_size, char *port,
                        size_t port_size, int *bracketed)
{
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return -1;
    const char *h = listen, *h_end = colon;
    *bracketed = listen[0] == '[';
    if (*bracketed) {
        if (colon - listen < 3 || colon[-1] != ']')
            return -1;
        h = listen + 1;
        h_end = colon - 1;
    } else if (memchr(listen, ':', (size_t)(colon - listen))) {
        return -1; // a bare IPv6 address: ambiguous without brackets
    }
    size_t hlen = (size_t)(h_end - h), plen = strlen(colon + 1);
    if (hlen == 0 || hlen >= host_size || plen == 0 || plen > 5 || plen >= port_size)
        return -1;
    if (strspn(colon + 1, "0123456789") != plen || atoi(colon + 1) > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, colon + 1, plen + 1);
    return 0;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof(in));
        return (ntohl(in.sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof(in6));
        return IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr) && in6.sin6_addr.s6_addr[12] == 127);
    }
    return 0;
}

// ---- Host and Origin (no token) ----

// Whether `authority` ("host[:port]", "[v6][:port]") names this server on
// loopback: localhost, 127.0.0.0/8 or ::1, and our port (no port: only when ours
// is 80). Anything else could be a DNS name an attacker rebound to 127.0.0.1.
static int loopback_authority(const char *authority, size_t len, int port)
{
    char host[64];
    const char *colon = NULL;
    size_t hlen;
    if (len > 0 && authority[0] == '[') {
        const char *close = memchr(authority, ']', len);
        if (!close)
            return 0;
        hlen = (size_t)(close - authority) + 1;
        if (hlen < len) {
            if (close[1] != ':')
                return 0;
            colon = close + 1;
        }
    } else {
        colon = memchr(authority, ':', len);
        hlen = colon ? (size_t)(colon - authority) : len;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return 0;
    memcpy(host, authority, hlen);
    host[hlen] = '\0';

    int want = 80;
    if (colon) {
        size_t plen = len - (size_t)(colon + 1 - authority);
        if (plen == 0 || plen > 5 || strspn(colon + 1, "0123456789") < plen)
            return 0;
        want = atoi(colon + 1);
    }
    if (want != port)
        return 0;

    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (host[0] == '[') {
        host[hlen - 1] = '\0';
        return inet_pton(AF_INET6, host + 1, &a6) == 1 &&
               (IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127));
    }
    return 0;
}

// Without a token the API trusts whoever reaches its loopback address, which a
// web page can do through the browser: by DNS rebinding (a name of the attacker's
// that resolves to 127.0.0.1: the Host header still says that name) or a form POST
// (the Origin header says the page's site). 0 ok, else the HTTP status to refuse with.
static unsigned int browser_guard(const hk_admin_t *adm, struct MHD_Connection *conn)
{
    if (adm->ad_has_token)
        return 0;
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    // No Host at all is HTTP/1.0 (libmicrohttpd refuses HTTP/1.1 without one), never
    // a browser.
    if (host && !loopback_authority(host, strlen(host), adm->ad_port))
        return MHD_HTTP_MISDIRECTED_REQUEST;
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (origin && (strncasecmp(origin, "http://", 7) != 0 ||
                   !loopback_authority(origin + 7, strlen(origin + 7), adm->ad_port)))
        return MHD_HTTP_FORBIDDEN;
    const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    if (site && (strcasecmp(site, "cross-site") == 0 || strcasecmp(site, "same-site") == 0))
        return MHD_HTTP_FORBIDDEN;
    return 0;
}

// ---- responses ----

// Queues `body` (stolen) as the JSON answer. MHD_NO (drop the connection) only
// when out of memory.
static enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned int status, json_t *body,
                                  const char *allow)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(body);
    if (!text)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

__attribute__((format(printf, 4, 5))) static enum MHD_Result
reply_error(struct MHD_Connection *conn, unsigned int status, const char *allow, const char *fmt,
            ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return reply_json(conn, status, json_pack("{s:s}", "error", msg), allow);
}

// ---- /metrics ----

static enum MHD_Result reply_metrics(hk_admin_t *adm, struct MHD_Connection *conn)
{
    size_t len = 0;
    json_t *lanes = hk_dispatch_lanes_json(adm->ad_dispatch, hk_clock_mono_ms());
    char *text = hk_prom_render(lanes, &len);
    json_decref(lanes);
    if (!text)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result r = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return r;
}

// ---- /v1/lanes ----

// The lanes, their disabled URLs shown as the logs show URLs (hk_log_url): a path
// or query can carry a receiver's token.
static json_t *lanes_json(hk_admin_t *adm)
{
    json_t *lanes = hk_dispatch_lanes_json(adm->ad_dispatch, hk_clock_mono_ms());
    size_t i, j;
    json_t *lane, *url;
    json_array_foreach(lanes, i, lane)
    {
        json_t *urls = json_object_get(lane, "disabled_urls");
        json_array_foreach(urls, j, url)
        {
            char shown[512];
            const char *v = json_string_value(url);
            json_t *s = v ? json_string(hk_log_url(v, shown, sizeof(shown))) : NULL;
            json_array_set_new(urls, j, s ? s : json_string("<not a URL>"));
        }
    }
    return lanes;
}

// ---- operator actions ----

// The endpoint key of what the path names: "scheme://host:port" or an http(s)
// URL. 0 ok.
static int endpoint_key(const char *raw, char *key, size_t key_size)
{
    if (raw[0] == '\0' || !strstr(raw, "://"))
        return -1;
    if (hk_endpoint_of(raw, key, key_size) != 0)
        return -1;
    if (strncmp(key, "http://", 7) != 0 && strncmp(key, "https://", 8) != 0)
        return -1;
    for (const char *p = key; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return -1;
    return 0;
}

static void peer_name(struct MHD_Connection *conn, char *out, size_t out_size)
{
    snprintf(out, out_size, "unknown");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    socklen_t sl =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    char host[NI_MAXHOST];
    if (getnameinfo(sa, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST) == 0)
        snprintf(out, out_size, "%s", host);
}

static enum MHD_Result handle_action(hk_admin_t *adm, struct MHD_Connection *conn, route_t route,
                                     const char *raw)
{
    char key[1024];
    if (endpoint_key(raw, key, sizeof(key)) != 0) {
        char shown[256];
        sanitize(raw, shown, sizeof(shown));
        return reply_error(conn, MHD_HTTP_BAD_REQUEST, NULL,
                           "\"%s\" is not an endpoint: want scheme://host:port or an http(s) URL "
                           "(URL-encoded in the path)",
                           shown);
    }
    const char *action;
    json_t *body;
    if (route == ROUTE_RESET) {
        action = "breaker_reset";
        if (hk_dispatch_breaker_reset(adm->ad_dispatch, key) != 0)
            return reply_error(conn, MHD_HTTP_NOT_FOUND, NULL,
                               "unknown endpoint %s: no job has gone to it since hookd started",
                               key);
        body = json_pack("{s:s,s:b}", "endpoint", key, "reset", 1);
    } else {
        int disable = route == ROUTE_DISABLE;
        action = disable ? "disable" : "enable";
        // A URL with a path names that URL alone; a bare endpoint names the lane.
        if (hk_dispatch_endpoint_disable(adm->ad_dispatch, raw, disable) != 0)
            return reply_error(conn, MHD_HTTP_NOT_FOUND, NULL,
                               "nothing to enable at %s: no such endpoint, or not disabled", raw);
        body = json_pack("{s:s,s:s,s:b}", "endpoint", key, "target", raw, "disabled", disable);
    }
    char peer[NI_MAXHOST];
    peer_name(conn, peer, sizeof(peer));
    hk_log(HK_LOG_WARN, "admin_action", "{s:s,s:s,s:s}", "action", action, "endpoint", key, "peer",
           peer);
    return reply_json(conn, MHD_HTTP_OK, body, NULL);
}

// ---- /readyz ----

// Ready = this replica has partitions to work on, reaches the Kafka brokers it
// needs (hk_metrics.kafka_unreachable), and every store it cannot work without
// is up. Postgres is required once configured (batches and dead-letter
// records live there); Redis only degrades hookd to local state, so it is
// reported but never makes the replica unready.
static enum MHD_Result reply_readyz(hk_admin_t *adm, struct MHD_Connection *conn)
{
    int assigned = atomic_load(&adm->ad_ready);
    int pg_configured = hk_metric_get(pg_configured) > 0, pg_up = hk_metric_get(pg_up) > 0;
    int redis_configured = hk_metric_get(redis_configured) > 0,
        redis_up = hk_metric_get(redis_up) > 0;
    int kafka_up = hk_metric_get(kafka_unreachable) == 0;
    int ready = assigned && kafka_up && (!pg_configured || pg_up);
    const char *pg = !pg_configured ? "not configured" : pg_up ? "up" : "down";
    const char *redis = !redis_configured ? "not configured"
                        : redis_up        ? "up"
                                          : "down (degraded: local state)";
    return reply_json(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                      json_pack("{s:b,s:b,s:s,s:s,s:s}", "ready", ready, "assigned", assigned,
                                "kafka", kafka_up ? "up" : "unreachable", "postgres", pg, "redis",
                                redis),
                      NULL);
}

// ---- /v1/batches/<id> ----

// The job contract's id rule (DESIGN §4): 1 to 255 of [A-Za-z0-9_:-].
static int valid_batch_id(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 255)
        return 0;
    return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_:-") == n;
}

// The job contract's tenant rule: 1 to 128 printable ASCII characters, no spaces.
static int valid_tenant(const char *t)
{
    size_t n = strlen(t);
    if (n < 1 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return 0;
    return 1;
}

static enum MHD_Result handle_batch(hk_admin_t *adm, struct MHD_Connection *conn, const char *id)
{
    if (!valid_batch_id(id)) {
        char shown[256];
        sanitize(id, shown, sizeof(shown));
        return reply_error(conn, MHD_HTTP_BAD_REQUEST, NULL,
                           "\"%s\" is not a batch id: want 1 to 255 of [A-Za-z0-9_:-]", shown);
    }
    // A batch is (tenant, id); ?tenant= picks the tenant, "default" when absent.
    const char *tenant = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "tenant");
    if (!tenant)
        tenant = "default";
    if (!valid_tenant(tenant)) {
        char shown[256];
        sanitize(tenant, shown, sizeof(shown));
        return reply_error(conn, MHD_HTTP_BAD_REQUEST, NULL,
                           "\"%s\" is not a tenant: want 1 to 128 printable characters, no spaces",
                           shown);
    }
    pthread_mutex_lock(&adm->ad_batch_lock);
    hk_admin_batch_fn *fn = adm->ad_batch_fn;
    void *arg = adm->ad_batch_arg;
    pthread_mutex_unlock(&adm->ad_batch_lock);
    if (!fn)
        return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                           "batches need Postgres (postgres.url)");
    int status = MHD_HTTP_OK;
    json_t *body = fn(id, tenant, &status, arg);
    if (!body) {
        if (status == MHD_HTTP_NOT_FOUND)
            return reply_error(conn, MHD_HTTP_NOT_FOUND, NULL, "no batch %s of tenant %s", id,
                               tenant);
        if (status < 400 || status > 599)
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        return reply_error(conn, (unsigned int)status, NULL,
                           status == MHD_HTTP_SERVICE_UNAVAILABLE
                               ? "batch %s: Postgres is unavailable, try again"
                               : "batch %s: lookup failed (see the log)",
                           id);
    }
    if (status < 200 || status > 599)
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    return reply_json(conn, (unsigned int)status, body, NULL);
}

// ---- routing ----

// The route of `url`; for the actions *endpoint (allocated) is the path's
// <endpoint> part, for a batch its <id>, as libmicrohttpd unescaped it.
static route_t route_of(const char *url, char **endpoint)
{
    static const struct {
        const char *path;
        route_t route;
    } fixed[] = {
        {"/healthz", ROUTE_HEALTHZ},   {"/readyz", ROUTE_READYZ},   {"/v1/lanes", ROUTE_LANES},
        {"/v1/breakers", ROUTE_LANES}, {"/metrics", ROUTE_METRICS},
    };
    static const struct {
        const char *prefix;
        const char *suffix;
        route_t route;
    } actions[] = {
        {"/v1/endpoints/", "/enable", ROUTE_ENABLE},
        {"/v1/endpoints/", "/disable", ROUTE_DISABLE},
        {"/v1/breakers/", "/reset", ROUTE_RESET},
    };
    static const char batches[] = "/v1/batches/";
    *endpoint = NULL;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (strcmp(url, fixed[i].path) == 0)
            return fixed[i].route;
    if (strncmp(url, batches, sizeof(batches) - 1) == 0) {
        *endpoint = strdup(url + sizeof(batches) - 1); // the id, validated by handle_batch
        return *endpoint ? ROUTE_BATCH : ROUTE_NONE;
    }
    size_t len = strlen(url);
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        size_t pl = strlen(actions[i].prefix), sl = strlen(actions[i].suffix);
        if (len >= pl + sl && strncmp(url, actions[i].prefix, pl) == 0 &&
            strcmp(url + len - sl, actions[i].suffix) == 0) {
            *endpoint = strndup(url + pl, len - pl - sl);
            return *endpoint ? actions[i].route : ROUTE_NONE;
        }
    }
    return ROUTE_NONE;
}

static int authorized(const hk_admin_t *adm, struct MHD_Connection *conn)
{
    if (!adm->ad_has_token)
        return 1;
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    unsigned char sha[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)h, strlen(h), sha);
    return CRYPTO_memcmp(sha, adm->ad_token_sha, sizeof(sha)) == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    static int answered;
    hk_admin_t *adm = cls;
    // Every request is answered in the first call, once its headers are in: no route
    // takes a body, and a refusal (421, 403, 401) must not wait for one, which a
    // client could send as slowly and as large as it likes. libmicrohttpd then
    // closes the connection instead of reading what is left.
    if (*con_cls != NULL) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    *con_cls = &answered;

    char *endpoint = NULL;
    route_t route = route_of(url, &endpoint);
    int is_post = route == ROUTE_ENABLE || route == ROUTE_DISABLE || route == ROUTE_RESET;
    enum MHD_Result r;
    char shown[256];
    unsigned int refused = browser_guard(adm, conn);
    if (refused == MHD_HTTP_MISDIRECTED_REQUEST) {
        r = reply_error(conn, refused, NULL,
                        "Host must name this server on loopback (localhost, 127.0.0.1 or [::1] "
                        "with port %d) when admin.token is not set",
                        adm->ad_port);
    } else if (refused) {
        r = reply_error(conn, refused, NULL,
                        "cross-site browser requests are refused when admin.token is not set");
    } else if (route != ROUTE_HEALTHZ && !authorized(adm, conn)) {
        r = reply_error(conn, MHD_HTTP_UNAUTHORIZED, NULL,
                        "missing or wrong \"Authorization: Bearer <admin token>\"");
    } else if (route == ROUTE_NONE) {
        sanitize(url, shown, sizeof(shown));
        r = reply_error(conn, MHD_HTTP_NOT_FOUND, NULL, "no such route: %s", shown);
    } else if (is_post ? strcmp(method, MHD_HTTP_METHOD_POST) != 0
                       : strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
                             strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        sanitize(url, shown, sizeof(shown));
        r = reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, is_post ? "POST" : "GET, HEAD",
                        "%s needs %s", shown, is_post ? "POST" : "GET");
    } else {
        switch (route) {
        case ROUTE_HEALTHZ:
            r = reply_json(conn, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"), NULL);
            break;
        case ROUTE_READYZ:
            r = reply_readyz(adm, conn);
            break;
        case ROUTE_BATCH:
            r = handle_batch(adm, conn, endpoint);
            break;
        case ROUTE_LANES:
            r = reply_json(conn, MHD_HTTP_OK, json_pack("{s:o}", "lanes", lanes_json(adm)), NULL);
            break;
        case ROUTE_METRICS:
            r = reply_metrics(adm, conn);
            break;
        default:
            r = handle_action(adm, conn, route, endpoint);
            break;
        }
    }
    free(endpoint);
    return r;
}

// ---- connections and their deadlines (admin thread) ----

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    hk_admin_t *adm = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        admin_conn_t *c = calloc(1, sizeof(*c));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!c || !ci) {
            free(c); // untracked: the idle timeout still closes it
            return;
        }
        c->fd = ci->connect_fd;
        c->deadline_ms = hk_clock_mono_ms() + ADMIN_REQUEST_DEADLINE_MS;
        c->next = adm->ad_conns;
        c->pprev = &adm->ad_conns;
        if (c->next)
            c->next->pprev = &c->next;
        adm->ad_conns = c;
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        admin_conn_t *c = *socket_context;
        *c->pprev = c->next;
        if (c->next)
            c->next->pprev = c->pprev;
        free(c);
        *socket_context = NULL;
    }
}

// A request was answered: the next one on the connection gets a deadline of its own.
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)con_cls;
    (void)toe;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    admin_conn_t *c = ci ? ci->socket_context : NULL;
    if (c && c->deadline_ms != INT64_MAX)
        c->deadline_ms = hk_clock_mono_ms() + ADMIN_REQUEST_DEADLINE_MS;
}

// Cuts every connection past its deadline: shutdown(2) makes libmicrohttpd's next
// read or write fail, and it closes the connection (and frees our entry) itself.
static void cut_overdue(hk_admin_t *adm)
{
    int64_t now = hk_clock_mono_ms();
    for (admin_conn_t *c = adm->ad_conns; c; c = c->next) {
        if (now < c->deadline_ms)
            continue;
        shutdown(c->fd, SHUT_RDWR);
        c->deadline_ms = INT64_MAX;
        adm->ad_cut++;
    }
    // One line per 10 s at most: a slowloris must not flood the log either.
    if (adm->ad_cut && now - adm->ad_cut_logged_ms >= 10000) {
        hk_log(HK_LOG_WARN, "admin_slow_clients_cut", "{s:I,s:i}", "connections",
               (json_int_t)adm->ad_cut, "deadline_ms", ADMIN_REQUEST_DEADLINE_MS);
        adm->ad_cut = 0;
        adm->ad_cut_logged_ms = now;
    }
}

static void *admin_loop(void *arg)
{
    hk_admin_t *adm = arg;
    while (!atomic_load(&adm->ad_stop)) {
        MHD_run_wait(adm->ad_mhd, ADMIN_TURN_MS);
        cut_overdue(adm);
    }
    return NULL;
}

// ---- lifecycle ----

hk_admin_t *hk_admin_start(const char *listen, const char *token, hk_dispatch_t *dispatch,
                           char *errstr, size_t errstr_size)
{
    char host[256], port[8];
    int bracketed;
    if (!listen || split_listen(listen, host, sizeof(host), port, sizeof(port), &bracketed) != 0) {
        hk_err_set(errstr, errstr_size,
                   "admin.listen \"%s\" must be host:port or [IPv6 address]:port (port 0 to 65535)",
                   listen ? listen : "");
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0)};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        hk_err_set(errstr, errstr_size, "admin.listen %s: cannot resolve \"%s\": %s", listen, host,
                   gai_strerror(gai));
        return NULL;
    }
    int has_token = token && token[0];
    if (!has_token && !is_loopback(ai->ai_addr)) {
        hk_err_set(errstr, errstr_size, "admin.listen %s is not loopback: set admin.token", listen);
        freeaddrinfo(ai);
        return NULL;
    }

    hk_admin_t *adm = calloc(1, sizeof(*adm));
    if (!adm) {
        hk_err_set(errstr, errstr_size, "admin: out of memory");
        freeaddrinfo(ai);
        return NULL;
    }
    adm->ad_dispatch = dispatch;
    adm->ad_has_token = has_token;
    if (has_token)
        SHA256((const unsigned char *)token, strlen(token), adm->ad_token_sha);
    atomic_init(&adm->ad_ready, 0);
    atomic_init(&adm->ad_starting, 1);
    pthread_mutex_init(&adm->ad_batch_lock, NULL);

    // No internal thread: admin_loop runs libmicrohttpd (see the top of this file).
    unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    adm->ad_mhd = MHD_start_daemon(
        flags, (uint16_t)atoi(port), NULL, NULL, on_request, adm, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, adm, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)ADMIN_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)ADMIN_MAX_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)ADMIN_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, on_connection, adm,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, adm, MHD_OPTION_END);
    freeaddrinfo(ai);
    atomic_store(&adm->ad_starting, 0);
    if (!adm->ad_mhd) {
        hk_err_set(errstr, errstr_size, "admin.listen %s: cannot start the admin server: %s",
                   listen,
                   adm->ad_start_err[0] ? adm->ad_start_err : "libmicrohttpd refused the options");
        pthread_mutex_destroy(&adm->ad_batch_lock);
        free(adm);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(adm->ad_mhd, MHD_DAEMON_INFO_BIND_PORT);
    adm->ad_port = info ? info->port : atoi(port);
    atomic_init(&adm->ad_stop, 0);
    if (pthread_create(&adm->ad_thread, NULL, admin_loop, adm) != 0) {
        hk_err_set(errstr, errstr_size, "admin.listen %s: cannot start the admin thread", listen);
        MHD_stop_daemon(adm->ad_mhd);
        pthread_mutex_destroy(&adm->ad_batch_lock);
        free(adm);
        return NULL;
    }
    hk_log(HK_LOG_INFO, "admin_listening", "{s:s,s:i,s:b}", "listen", listen, "port", adm->ad_port,
           "token", has_token);
    return adm;
}

void hk_admin_stop(hk_admin_t *adm)
{
    if (!adm)
        return;
    atomic_store(&adm->ad_stop, 1);
    pthread_join(adm->ad_thread, NULL);
    MHD_stop_daemon(adm->ad_mhd); // closes what is left, here (on_connection frees the list)
    OPENSSL_cleanse(adm->ad_token_sha, sizeof(adm->ad_token_sha));
    pthread_mutex_destroy(&adm->ad_batch_lock);
    free(adm);
}

int hk_admin_port(const hk_admin_t *adm)
{
    return adm->ad_port;
}

void hk_admin_set_ready(hk_admin_t *adm, int ready)
{
    if (!adm)
        return;
    atomic_store(&adm->ad_ready, ready ? 1 : 0);
}

void hk_admin_set_batch_fn(hk_admin_t *adm, hk_admin_batch_fn *fn, void *arg)
{
    if (!adm)
        return;
    pthread_mutex_lock(&adm->ad_batch_lock);
    adm->ad_batch_fn = fn;
    adm->ad_batch_arg = arg;
    pthread_mutex_unlock(&adm->ad_batch_lock);
}
