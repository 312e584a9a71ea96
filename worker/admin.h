// admin: the operator HTTP endpoint (DESIGN §11): health and readiness probes,
// Prometheus /metrics, and the lane/breaker controls of worker/dispatch.
//
//   GET  /healthz                              200 {"status":"ok"}
//   GET  /readyz                               200 | 503 {"ready":..,"assigned":..,
//                                              "postgres":..,"redis":..} (hk_admin_set_ready)
//   GET  /v1/lanes, /v1/breakers               200 {"lanes":[...]} (hk_dispatch_lanes_json)
//   POST /v1/endpoints/<endpoint>/enable       200 {"endpoint":...,"disabled":false} | 404
//   POST /v1/endpoints/<endpoint>/disable      200 {"endpoint":...,"disabled":true}
//   POST /v1/breakers/<endpoint>/reset         200 {"endpoint":...,"reset":true} | 404
//   GET  /v1/batches/<id>[?tenant=T]           what hk_admin_set_batch_fn's fn answers
//                                              for (T or "default", id); 400 bad id or
//                                              tenant, 404, 503 no fn (no Postgres)
//   GET  /metrics                              Prometheus text format 0.0.4 (hk_prom_render)
//
// <endpoint> is "scheme://host:port" or any http(s) URL (reduced to its endpoint
// key), URL-encoded or literal; anything else is 400. Unknown paths are 404, a
// known path with another method 405. With a token, every route but /healthz
// needs "Authorization: Bearer <token>" (401 otherwise). Without one (loopback
// only), the Host header must name loopback (localhost, 127.0.0.0/8, [::1]) with
// the admin port (421 otherwise: DNS rebinding), and a browser's cross-site
// request (Origin not such a loopback origin, or Sec-Fetch-Site cross-site/same-
// site) is 403. Every request is answered from its headers: no body is ever read.
// Every POST that acts logs one "admin_action" line. Disabled URLs in /v1/lanes
// are shown as hk_log_url() shows them (log.full_urls).
//
// libmicrohttpd serves it from one thread of admin.c (epoll): at most 256
// connections, 8 per client address; a connection is closed after 5 s without a
// byte, and cut 10 s after it was accepted or its previous answer, however it
// trickles (a slowloris cannot starve /healthz).
#ifndef HK_ADMIN_H
#define HK_ADMIN_H

#include <jansson.h>
#include <stddef.h>

#include "worker/dispatch.h"

typedef struct hk_admin_s hk_admin_t;

// Binds `listen` ("127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464", "localhost:0";
// port 0 picks a free one) and starts serving. `token` NULL or "" = no
// authentication, which is only allowed on a loopback address. `token` is copied;
// `dispatch` is borrowed and must outlive the server. Not ready until
// hk_admin_set_ready(). NULL with a sentence in errstr, e.g. `admin.listen
// 0.0.0.0:9464 is not loopback: set admin.token`.
hk_admin_t *hk_admin_start(const char *listen, const char *token, hk_dispatch_t *dispatch,
                           char *errstr, size_t errstr_size);

// Stops serving (waits for the server thread, at most ~100 ms) and frees. NULL is a
// no-op.
void hk_admin_stop(hk_admin_t *adm);

// The bound TCP port.
int hk_admin_port(const hk_admin_t *adm);

// Whether this replica has work assigned (initially 0). /readyz answers 200 when
// it has and Postgres, if configured (hk_metrics.pg_configured), is up
// (hk_metrics.pg_up); Redis being down is reported in the body as degraded but
// never makes the replica unready. Any thread; NULL (admin off) is a no-op.
void hk_admin_set_ready(hk_admin_t *adm, int ready);

// Looks up batch `id` (already validated: 1-255 of [A-Za-z0-9_:-]) of `tenant`
// (validated: 1-128 printable ASCII, no spaces) for GET /v1/batches/<id>?tenant=.
// Returns the JSON body to send (the admin takes ownership)
// with *http_status (preset to 200) left or changed; or NULL with *http_status
// 404 (no such batch), 503 (Postgres down) or anything else (500). Runs on the
// admin thread, one request at a time: it must use its own Postgres connection
// or a lock, and should answer within a few seconds.
typedef json_t *hk_admin_batch_fn(const char *id, const char *tenant, int *http_status, void *arg);

// Registers the batch lookup (NULL fn: none, GET /v1/batches/<id> answers 503
// "batches need Postgres (postgres.url)"). `arg` is borrowed and must outlive the
// server or the next call. Any thread, any time; NULL adm is a no-op.
void hk_admin_set_batch_fn(hk_admin_t *adm, hk_admin_batch_fn *fn, void *arg);

#endif
