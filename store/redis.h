// redis: hookd's optional shared state in Redis (DESIGN §10): delivered markers and
// in-flight leases (dedupe across replicas and redeliveries), a shared GCRA rate
// limit per endpoint, and open breakers published to the other replicas.
//
// One background thread owns a hiredis synchronous connection. Every call below
// is non-blocking: it enqueues a request and returns. The thread takes whatever
// is queued (up to HK_REDIS_BATCH_MAX), writes it as one pipeline, reads all the
// replies (one round trip per batch) and runs the callbacks on its own thread.
// Lua scripts are loaded once per connection (SCRIPT LOAD) and run by EVALSHA; a
// NOSCRIPT reply (SCRIPT FLUSH, failover) reloads them and re-sends.
//
// Redis never makes a caller wait: when it is down, unreachable or slower than
// timeout_ms, or when the queue is full, requests complete at once with the
// "unknown" result (HK_CLAIM_UNKNOWN, granted -1) and callers carry on with local
// state. The thread reconnects with exponential backoff (100 ms doubling to 5 s)
// and logs one {"event":"redis_down"} warn line per outage and {"event":"redis_up"}
// on recovery. hk_metrics.redis_up, redis_errors and redis_configured follow it.
//
// Thread safety: every function may be called from any thread, including from
// inside a callback. Callbacks run on the Redis thread, or on the calling thread
// before the call returns (the "unknown" cases): a caller must not hold a lock
// that its callback takes. Callbacks must be quick (they hold up every other
// request) and must not call hk_redis_stop().
#ifndef HK_REDIS_H
#define HK_REDIS_H

#include <stddef.h>
#include <stdint.h>

typedef struct hk_redis_s hk_redis_t;

// Requests the thread sends in one round trip at most.
#define HK_REDIS_BATCH_MAX 1024
// Requests queued or in flight at most, unless opts.queue_max says otherwise.
#define HK_REDIS_QUEUE_MAX 16384
// Longest dedupe name "{<n>:<tenant>:<key>}" and longest endpoint a request
// carries; longer ones complete at once as unknown (job ids are at most 255 bytes,
// tenants 128).
#define HK_REDIS_NAME_MAX 511

// Another replica opened `endpoint`'s breaker until `open_until_wall_ms` (ms since
// the epoch, the publisher's clock). Called on the Redis thread.
typedef void hk_redis_breaker_cb(const char *endpoint, int64_t open_until_wall_ms, void *arg);

typedef struct hk_redis_opts {
    const char *url;                 // redis://[[user]:password@]host[:port][/db] or unix:/path
    int timeout_ms;                  // connect timeout and per-read/write command timeout (>= 1)
    int dedupe_ttl_s;                // lifetime of done markers
    int lease_ms;                    // lifetime of in-flight leases
    int sync_ms;                     // breaker polling period
    const char *instance;            // this replica's id, unique per process, no spaces;
                                     // NULL or "": "<hostname>-<pid>-<random>"
    hk_redis_breaker_cb *on_breaker; // may be NULL
    void *arg;                       // passed to on_breaker
    int queue_max;                   // requests queued or in flight at most; 0: HK_REDIS_QUEUE_MAX
    int watch_chunk;                 // watched keys per poll (MGET) at most; 0: 256
} hk_redis_opts_t;

// Parses opts->url, starts the thread and waits for its first connection attempt
// (at most about 2·timeout_ms) so that early requests find Redis up when it is.
// Being unable to connect is not an error: the thread keeps trying. NULL with a
// sentence in err for a bad URL or option, or when out of memory. The strings in
// opts are copied.
hk_redis_t *hk_redis_start(const hk_redis_opts_t *opts, char *err, size_t err_size);
// Stops the thread and frees everything. Queued claims and permits complete as
// unknown; queued done/release/breaker updates are still sent while Redis is up.
// Returns within about 2·timeout_ms even when Redis hangs (a command or connection
// attempt in progress runs to its timeout). No call on `r` may run concurrently
// or follow, and it must not be called from a callback. NULL is a no-op.
void hk_redis_stop(hk_redis_t *r);
// 1 while connected with the scripts loaded (requests are being sent), else 0.
int hk_redis_up(const hk_redis_t *r);
// This replica's instance id (opts->instance or the generated one).
const char *hk_redis_instance(const hk_redis_t *r);

// Counters since start, for tests and /metrics.
typedef struct hk_redis_stats {
    uint64_t round_trips;  // pipelines written and read back (script loads included)
    uint64_t commands;     // commands sent
    uint64_t unknown;      // requests completed as unknown (down, timeout, error, full)
    uint64_t queue_full;   // of which because the queue was full
    uint64_t connects;     // connections established (scripts loaded)
    uint64_t script_loads; // SCRIPT LOAD rounds (one per connection, plus NOSCRIPT reloads)
    size_t pool_nodes;     // request nodes allocated (free or out); one chunk's worth when idle
} hk_redis_stats_t;
void hk_redis_stats(const hk_redis_t *r, hk_redis_stats_t *st);

// Dedupe keys are hookd:done:{<n>:<tenant>:<key>} and hookd:lease:{<n>:<tenant>:<key>}
// with n the tenant's length in bytes (decimal): ("a:b", "c") and ("a", "b:c")
// are {3:a:b:c} and {1:a:b:c}, never the same key whatever the parts contain.
// The braces are a Redis Cluster hash tag: a job's done and lease keys share a
// slot (the scripts touch both), and different jobs spread over the slots.
// Keys of the old "<tenant>:<key>" form are never read; they expire by TTL.
//
// Dedupe, before a job's first attempt. One script: DONE when
// hookd:done:{..} exists; else OK when SET hookd:lease:{..}
// <instance> NX PX lease_ms succeeds, or when the lease is already ours (its PX is
// refreshed); else BUSY (another replica has it in flight). UNKNOWN: Redis could
// not say (down, timeout, error, queue full): deliver without dedupe.
typedef enum hk_claim {
    HK_CLAIM_OK = 0,
    HK_CLAIM_DONE,
    HK_CLAIM_BUSY,
    HK_CLAIM_UNKNOWN,
} hk_claim_t;
typedef void hk_redis_claim_cb(hk_claim_t result, void *arg);
void hk_redis_claim(hk_redis_t *r, const char *tenant, const char *key, hk_redis_claim_cb *cb,
                    void *arg);
// After a 2xx: SET hookd:done:{..} 1 EX dedupe_ttl_s and delete our
// lease (only if it is ours). Fire and forget.
void hk_redis_done(hk_redis_t *r, const char *tenant, const char *key);
// The job ended without delivery or left this process (dead-lettered, handed to
// the retry topic, revoked): delete our lease if it is ours. Fire and forget.
void hk_redis_release(hk_redis_t *r, const char *tenant, const char *key);

// Shared rate limit: GCRA (as retry/ratelimit.h) in a script on
// hookd:rate:<endpoint>, timed by Redis TIME so replicas' clocks do not matter,
// granting up to `want` permits now. cb(granted, retry_in_ms): granted 0..want
// from Redis, retry_in_ms as hk_gcra_take(); granted -1 (retry_in_ms 0) when
// Redis is down or could not say, or rate <= 0: fall back to the local limiter.
// The key expires once idle (PX: time until it is idle again + 1 s).
typedef void hk_redis_permits_cb(int granted, int64_t retry_in_ms, void *arg);
void hk_redis_permits(hk_redis_t *r, const char *endpoint, double rate, int burst, int want,
                      hk_redis_permits_cb *cb, void *arg);

// Shared breakers. Opening publishes hookd:breaker:<endpoint> =
// "<instance> <open_until_wall_ms>" PX (until - now); closing deletes it if it is
// ours. Fire and forget; dropped while Redis is down. The thread polls the
// endpoints registered with hk_redis_watch() (one MGET of at most watch_chunk keys
// every sync_ms, taking the watched endpoints in turn, so a sync costs the same
// however many endpoints are live) and calls opts->on_breaker(endpoint, until) for
// each key set by another instance whose until is in the future, once per
// distinct until value.
void hk_redis_breaker_open(hk_redis_t *r, const char *endpoint, int64_t open_until_wall_ms);
void hk_redis_breaker_closed(hk_redis_t *r, const char *endpoint);
// Idempotent, O(1). The dispatcher watches each live lane (worker/dispatch.h
// on_lane) and unwatches it when the lane is evicted (on_lane_gone), so the watch
// list is bounded by dispatch.max_lanes.
void hk_redis_watch(hk_redis_t *r, const char *endpoint);
void hk_redis_unwatch(hk_redis_t *r, const char *endpoint);

// A parsed opts->url. Exposed so config validation can check it up front.
typedef struct hk_redis_url {
    char host[256]; // TCP host (IPv6 without brackets), "" for a unix socket
    int port;       // 6379 when left out
    char path[256]; // unix socket path, "" for TCP
    char user[128]; // "" when left out (AUTH <password> only)
    char password[256];
    int db; // SELECT db when > 0
} hk_redis_url_t;
// 0, or -1 with a sentence in err (never containing the password).
int hk_redis_parse_url(const char *url, hk_redis_url_t *out, char *err, size_t err_size);

#endif
