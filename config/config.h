// config: hookd's configuration, read from an INI file and HOOKD_<SECTION>_<KEY>
// environment overrides, validated, then handed out read-only.
//
// Every key is one row of a table in config.c (section, key, type, field, default,
// bounds, reloadable). Load order: defaults, then the file, then the environment;
// the last one wins. Validation errors name the line (or the variable) and the
// allowed range. A loaded config is immutable; reload builds a new one and swaps.
#ifndef HK_CONFIG_H
#define HK_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "base/log.h" // hk_log_level_t (log.level)

// A name/value pair: `[kafka] rdkafka.<property>` pass-through, per-tenant secrets.
typedef struct hk_kv {
    char *key;
    char *value;
} hk_kv_t;

// The settings that take one of a few words are parsed once, into these enums.

// delivery.http2 and [endpoint] http2: the HTTP version curl asks for.
typedef enum hk_http2 {
    HK_HTTP2_UNSET,           // [endpoint] only (http2 = ""): delivery.http2 applies
    HK_HTTP2_AUTO,            // auto: h2 over TLS by ALPN, HTTP/1.1 in clear
    HK_HTTP2_OFF,             // off: HTTP/1.1
    HK_HTTP2_PRIOR_KNOWLEDGE, // prior_knowledge: h2 from the first byte, TLS or not
} hk_http2_t;

// signing.unknown_tenant: with [tenant] sections, a job of a tenant that has none.
typedef enum hk_unknown_tenant {
    HK_UNKNOWN_TENANT_REJECT,  // reject: dead-lettered as invalid
    HK_UNKNOWN_TENANT_DEFAULT, // default: signed with signing.secret
} hk_unknown_tenant_t;

// dispatch.ordering.
typedef enum hk_ordering {
    HK_ORDERING_NONE, // none: jobs of a lane go in any order
    HK_ORDERING_KEY,  // key: one job per ordering key at a time, in order
} hk_ordering_t;

// dispatch.head_of_line: with ordering = key, a head that keeps failing.
typedef enum hk_head_of_line {
    HK_HEAD_OF_LINE_DEAD_LETTER, // dead_letter_after_attempts: max_attempts applies
    HK_HEAD_OF_LINE_BLOCK,       // block: retried without limit, the key waits
} hk_head_of_line_t;

// Settings of one receiver endpoint, from [endpoint "<scheme://host:port>"]. Each key
// is one row of cf_endpoint_rows in config.c; a key left out keeps its default.
typedef struct hk_endpoint_conf {
    char *endpoint;    // canonical: lower-case scheme and host, IPv6 as [::1], port in decimal
    int disabled;      // 1: nothing is delivered to it, as after a 410 Gone
    char *rate;        // "" = no rate limit, else "<n>/s", "<n>/m" or "<n>/h"
    int burst;         // requests the limit lets through at once
    char *ca_file;     // CA bundle for this receiver, "" = delivery.ca_file / the system's
    char *client_cert; // PEM client certificate for mTLS, "" = none
    char *client_key;  // its PEM private key, "" = in client_cert
    hk_http2_t http2;  // HK_HTTP2_UNSET (http2 = "", the default) = delivery.http2
} hk_endpoint_conf_t;

typedef struct hk_config {
    // [kafka]
    char *kafka_brokers;          // "mock" starts an in-process mock cluster
    char *kafka_topic;            // jobs topic
    char *kafka_group;            // consumer group id
    char *kafka_dlq_topic;        // default "<topic>.dlq"
    char *kafka_retry_topic;      // default "<topic>.retry"
    int kafka_mock_partitions;    // partitions of each topic in the mock cluster
    int kafka_create_topics;      // create missing jobs/retry/DLQ topics at start (else refuse)
    int kafka_topic_partitions;   // ... with this many partitions (0: the broker's default)
    int kafka_topic_replication;  // ... and this replication factor (0: the broker's default)
    int kafka_startup_timeout_ms; // the cluster must answer within this at start
    hk_kv_t *kafka_props;         // rdkafka.<prop> = value, passed to librdkafka as is
    size_t kafka_props_cnt;

    // [delivery]
    int delivery_threads; // "auto" (the default): the CPUs available, 1-16
    int delivery_max_transfers_per_thread;
    int delivery_timeout_ms; // per attempt, unless the job sets timeout_ms
    int delivery_connect_timeout_ms;
    int64_t delivery_max_response_bytes; // response body bytes kept (rest discarded)
    char *delivery_allow_cidrs;          // comma/space separated CIDRs the guard lets through
    char *delivery_ca_file;              // CA bundle for HTTPS ("" = the system's)
    char *delivery_ca_path;              // directory of hashed CA certificates ("" = none)
    hk_http2_t delivery_http2;           // auto (h2 by ALPN), off, prior_knowledge

    // [signing]
    char *signing_secret;    // default whsec_ secret(s), space separated during rotation
    hk_kv_t *tenant_secrets; // from [tenant "<name>"] secret = ...
    size_t tenant_secrets_cnt;
    hk_unknown_tenant_t signing_unknown_tenant; // with [tenant] sections, a job of
                                                // another tenant: reject or default

    // [limits]
    int64_t limits_max_job_bytes;
    int limits_max_inflight_jobs;
    int64_t limits_max_inflight_bytes;
    int limits_max_partition_span;

    // [retry]
    int retry_max_attempts;
    char *retry_schedule;       // as written; "" = exponential backoff
    int64_t *retry_schedule_ms; // retry_schedule parsed (hk_backoff_parse_schedule); NULL if ""
    size_t retry_schedule_cnt;
    int retry_base_ms;          // exponential: delay bound after the first failure
    double retry_multiplier;    // exponential: growth per failure
    int64_t retry_max_delay_ms; // bounds every delay, schedule and Retry-After included
    int retry_inline_max_ms;    // delays up to this wait in memory; longer ones go to the
                                // retry topic

    // [breaker] per endpoint
    int breaker_window;               // last calls the failure rate is taken over
    int breaker_min_calls;            // calls in the window before the rate counts
    double breaker_failure_rate;      // opens at this share of failures in the window
    int breaker_consecutive_failures; // or after this many failures in a row
    int64_t breaker_open_ms;          // first open period
    int64_t breaker_max_open_ms;      // open periods grow up to this
    int breaker_probes;               // half-open trial calls

    // [lanes] per-endpoint concurrency limit (AIMD)
    int lanes_initial_limit;
    int lanes_min_limit;
    int lanes_max_limit;

    // [dispatch]
    hk_ordering_t dispatch_ordering;         // none, or key
    hk_head_of_line_t dispatch_head_of_line; // with ordering = key, a failing head
    int64_t dispatch_lane_idle_ms;           // an endpoint's lane outlives its last job this long
    int dispatch_max_lanes;       // live lanes at most; past it new endpoints wait for a lane
    int dispatch_gone_urls_max;   // URLs disabled by 410 Gone, at most (oldest forgotten)
    int64_t dispatch_gone_ttl_ms; // a 410 disables its URL this long
    int64_t dispatch_hold_429_ms; // a 429 without Retry-After holds its lane this long

    // [log]
    hk_log_level_t log_level; // debug, info, warn, error
    int log_summary_ms;       // periodic summary line; 0 = off
    int log_full_urls;        // 0: logs and /v1/lanes show scheme://host:port only (paths and
                              // queries can carry tokens); 1: whole URLs

    // [shutdown]
    int shutdown_grace_ms;

    // [postgres] (optional for webhooks, required for batches)
    char *postgres_url;              // libpq conninfo or postgresql:// URI; "" = off
    int postgres_connect_timeout_ms; // per connection attempt
    int postgres_reconnect_max_ms;   // reconnect backoff grows up to this

    // [batch]
    int batch_concurrency;      // items in flight per batch
    int batch_checkpoint_items; // flush progress after this many items became terminal
    int batch_checkpoint_ms;    // ... or after this long

    // [redis] (optional: dedupe, shared rate limits and breakers across replicas)
    char *redis_url;        // redis://[:password@]host:port[/db] or unix:/path; "" = off
    int redis_timeout_ms;   // connect and command timeout
    int redis_dedupe_ttl_s; // lifetime of the delivered marker hookd:done:<tenant>:<key>
    int redis_lease_ms;     // lifetime of the in-flight lease hookd:lease:<tenant>:<key>
    int redis_sync_ms;      // how often shared breaker state and rate tokens are refreshed
    int redis_watch_chunk;  // breaker keys read per sync at most (live lanes, in turn)

    // [admin]
    char *admin_listen;      // host:port, "" = off
    char *admin_token;       // bearer token for the admin API; "" = none (loopback only)
    int admin_metrics_lanes; // /metrics per-endpoint series: configured ones + this many
                             // busiest; the rest summed under endpoint="other"

    // [endpoint "<scheme://host:port>"] sections, in the order they first appear
    hk_endpoint_conf_t *endpoints;
    size_t endpoints_cnt;
} hk_config_t;

// Loads defaults, then `path` (NULL: no file), then overrides from `envp`
// (NULL-terminated "NAME=value" strings, usually `environ`; NULL: none).
// Returns a new config, or NULL with a sentence in errstr such as
// `config line 12: delivery.threads must be between 1 and 256, got "abc"`.
// Variables that name no key (HOOKD_FOO_BAR) are ignored. No global state: the
// caller owns the result; any thread may read it, none may change it.
hk_config_t *hk_config_load(const char *path, char *const *envp, char *errstr, size_t errstr_size);

void hk_config_destroy(hk_config_t *cfg);

// Prints the effective config as INI, every secret replaced by "<redacted>": the
// secret keys, and any key whose name contains password, passphrase or secret (any
// case), or is [kafka] rdkafka.sasl.*. Reading the output back gives the same
// config, secrets aside.
void hk_config_dump(const hk_config_t *cfg, FILE *out);

// The tenant of a job that names none (model/job.c): always known, signed with
// signing.secret.
#define HK_CONFIG_DEFAULT_TENANT "default"

// Whether a job of `tenant` may be signed: 1 when no [tenant] section exists, when
// signing.unknown_tenant = default, for the default tenant (or NULL), and for a
// tenant with a section; 0 otherwise (the job is dead-lettered as invalid).
int hk_config_tenant_known(const hk_config_t *cfg, const char *tenant);

// The signing secret(s) for `tenant`: its own if configured, else the default.
// NULL or "" when signing is off for that tenant.
const char *hk_config_tenant_secret(const hk_config_t *cfg, const char *tenant);

// The [endpoint "..."] settings of `endpoint` (canonical scheme://host:port, as in
// hk_endpoint_conf_t.endpoint), or NULL when it has no section: defaults apply.
const hk_endpoint_conf_t *hk_config_endpoint(const hk_config_t *cfg, const char *endpoint);

// Parses an endpoint rate ("200/s", "1500/m", "10/h"; "" = none) into requests per
// second (0 for none). 0 ok, -1 not a rate.
int hk_config_parse_rate(const char *rate, double *per_second);

// Reload check (SIGHUP): 0 when `new` differs from `old` only in reloadable keys
// (limits.*, retry.*, breaker.*, lanes.*, log.*, shutdown.grace_ms, and [endpoint]
// sections, which may also come and go); -1 with a sentence naming the first other
// key that changed, e.g. `kafka.brokers cannot be changed by a reload; restart hookd
// to apply it`. Secrets are named, never shown.
int hk_config_reloadable_diff(const hk_config_t *old, const hk_config_t *new, char *errstr,
                              size_t errstr_size);

#endif
