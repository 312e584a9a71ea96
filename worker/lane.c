// Structures: one hk_lane per endpoint in a hash table. A lane without bound
// tasks is on ls_idle (oldest first) and is evicted idle_ms later unless a rule
// keeps it or its breaker is OPEN. URLs disabled by a 410 are on ls_gone (oldest
// first) until they expire; an operator's stay until enabled. Lanes waiting out a
// rate limit or a 429 hold are on ls_rate_wait.
#include "worker/lane.h"

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry/ratelimit.h"
#include "base/clock.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/metrics.h"

#define BUCKETS   4096 // of the lane table
#define SWEEP_MAX 4096 // lanes looked at per eviction sweep (bounds take()'s time)

// One disabled URL of a lane: by a 410 Gone (expires, in ls_gone oldest first) or
// by an operator (expires_ms 0: until enabled, not in ls_gone).
typedef struct gone {
    hk_link_t fifo;
    hk_lane_t *lane;
    int64_t expires_ms;
    char url[];
} gone_t;

struct hk_lane {
    hk_hash_node_t node; // in ls_tab, hashed by key
    hk_breaker_t *br;
    hk_aimd_t lim;
    int disabled;
    hk_link_t waiting; // parked queues (worker/sched.c)
    int br_stale;      // breaker built with old settings: replace when it closes
    gone_t **gone;     // URLs disabled one by one (410 Gone, or an operator)
    size_t gone_cnt;
    size_t queued; // tasks in this lane's queues (not delayed)
    uint64_t delivered, failed;
    size_t refs;           // bound tasks: queued, delayed or in flight
    hk_link_t idle_link;   // in ls_idle while refs == 0
    int64_t idle_since_ms; // when refs last dropped to 0
    int64_t hold_until_ms; // a 429 asked us to wait: nothing new is sent before this

    // Rate limit ([endpoint] rate/burst): permits granted by the shared limiter
    // (Redis GCRA) when there is one and it answers, else a local GCRA.
    double rate; // requests per second, 0 = none
    int burst;
    hk_gcra_t gcra;
    int permits;            // granted, not yet used
    int64_t permits_ms;     // when they were granted (they go stale after a second)
    int permit_asked;       // a request for permits is out
    int64_t shared_down_ms; // the shared limiter could not answer: local until then
    int64_t rate_wake_ms;   // parked until then (rate limit or 429 hold; 0 = not waiting)
    hk_link_t rate_link;    // in ls_rate_wait while rate_wake_ms is set
    char key[];
};

struct hk_lanes {
    hk_lanes_opts_t ls_opts;
    hk_hash_t ls_tab; // lanes by key (hk_lane.node)
    size_t ls_cnt;
    hk_link_t ls_idle;          // lanes without bound tasks, oldest idle first
    hk_link_t ls_gone;          // 410-disabled URLs, oldest first (gone_t.fifo)
    size_t ls_gone_cnt;         // entries in ls_gone
    atomic_int ls_disabled_cnt; // lanes disabled whole: the peer check is free while 0
    hk_link_t ls_rate_wait;     // lanes parked until a rate-limit or hold time
    hk_lane_note_t *ls_notes;
    size_t ls_notes_cnt, ls_notes_cap;
};

static int64_t now_of(const hk_lanes_t *ls)
{
    return ls->ls_opts.clock_ms ? ls->ls_opts.clock_ms() : hk_clock_mono_ms();
}

static hk_lane_t *lane_of(hk_hash_node_t *n)
{
    return n ? HK_CONTAINER_OF(n, hk_lane_t, node) : NULL;
}

// Every lane, in table order.
#define EACH_LANE(ls, l)                                                                           \
    for (hk_lane_t *l = lane_of(hk_hash_walk(&(ls)->ls_tab, NULL)); l;                             \
         l = lane_of(hk_hash_walk(&(ls)->ls_tab, &l->node)))

static void unpark(hk_lanes_t *ls, hk_lane_t *l)
{
    if (ls->ls_opts.unpark)
        ls->ls_opts.unpark(l, ls->ls_opts.unpark_arg);
}

// Queues a call to a shared-state hook; the owner makes it without the lock.
static void note_add(hk_lanes_t *ls, hk_lane_note_kind_t kind, const hk_lane_t *l, int want)
{
    const hk_lanes_opts_t *o = &ls->ls_opts;
    int hooked = kind == HK_LANE_NOTE_PERMITS     ? o->shared_permits
                 : kind == HK_LANE_NOTE_LANE      ? o->note_lane
                 : kind == HK_LANE_NOTE_LANE_GONE ? o->note_lane_gone
                                                  : o->note_breaker;
    if (!hooked)
        return;
    if (ls->ls_notes_cnt == ls->ls_notes_cap) {
        ls->ls_notes_cap = ls->ls_notes_cap ? ls->ls_notes_cap * 2 : 8;
        ls->ls_notes = realloc(ls->ls_notes, ls->ls_notes_cap * sizeof(*ls->ls_notes));
        if (!ls->ls_notes)
            abort();
    }
    hk_lane_note_t *n = &ls->ls_notes[ls->ls_notes_cnt++];
    n->kind = kind;
    n->rate = l->rate;
    n->burst = l->burst;
    n->want = want;
    n->until_wall_ms = 0;
    if (kind == HK_LANE_NOTE_OPEN) // the hooks speak wall-clock time: it is shared
        n->until_wall_ms = hk_clock_wall_ms() + (hk_breaker_open_until(l->br) - now_of(ls));
    // The whole key: a cut one would never find its lane again.
    n->endpoint = strdup(l->key);
    if (!n->endpoint)
        abort();
}

int hk_lanes_has_notes(const hk_lanes_t *ls)
{
    return ls->ls_notes_cnt > 0;
}

hk_lane_note_t *hk_lanes_take_notes(hk_lanes_t *ls, size_t *cnt)
{
    hk_lane_note_t *notes = ls->ls_notes;
    *cnt = ls->ls_notes_cnt;
    ls->ls_notes = NULL;
    ls->ls_notes_cnt = ls->ls_notes_cap = 0;
    return notes;
}

// Parks the lane's queues until `when_ms` (a rate limit or a 429 hold); an
// earlier wake-up already set stands (waking early only parks them again).
static void rate_wait(hk_lanes_t *ls, hk_lane_t *l, int64_t when_ms)
{
    if (l->rate_wake_ms == 0 || when_ms < l->rate_wake_ms)
        l->rate_wake_ms = when_ms;
    if (hk_link_alone(&l->rate_link))
        hk_link_insert_before(&ls->ls_rate_wait, &l->rate_link);
}

// One request's worth of the lane's rate limit; 0 when it must wait (the caller
// parks the queue: an answer from the shared limiter, or the lane's rate wake-up,
// unparks it).
static int rate_take(hk_lanes_t *ls, hk_lane_t *l, int64_t now_ms)
{
    if (l->permits > 0 && now_ms - l->permits_ms > 1000)
        l->permits = 0; // unused for a second: the fleet's budget has moved on
    if (l->permits > 0) {
        l->permits--;
        return 1;
    }
    if (ls->ls_opts.shared_permits && now_ms >= l->shared_down_ms) {
        hk_metric_add(rate_limited, 1);
        if (!l->permit_asked) {
            l->permit_asked = 1;
            size_t want = l->queued + 1;
            note_add(ls, HK_LANE_NOTE_PERMITS, l, want < (size_t)l->burst ? (int)want : l->burst);
        }
        return 0;
    }
    int64_t retry = 1;
    if (hk_gcra_take(&l->gcra, l->rate, l->burst, 1, now_ms, &retry) == 1)
        return 1;
    hk_metric_add(rate_limited, 1);
    rate_wait(ls, l, now_ms + (retry > 0 ? retry : 1));
    return 0;
}

// --- lifetimes -----------------------------------------------------------------

// 1 while a rule keeps the lane whatever its traffic: disabled, a rate limit, or
// disabled URLs (those expire, operator ones excepted).
static int lane_kept(const hk_lane_t *l)
{
    return l->disabled || l->rate > 0 || l->gone_cnt > 0;
}

// 1 when the lane may be evicted now: nothing bound to it, no rule, its breaker
// not OPEN and no 429 hold (forgetting either would let a burst through).
static int lane_evictable(const hk_lane_t *l, int64_t now_ms)
{
    return l->refs == 0 && !lane_kept(l) && l->hold_until_ms <= now_ms &&
           hk_breaker_state(l->br, now_ms) != HK_BREAKER_OPEN;
}

static void lane_evict(hk_lanes_t *ls, hk_lane_t *l)
{
    hk_hash_remove(&ls->ls_tab, &l->node);
    hk_link_remove(&l->idle_link);
    if (!hk_link_alone(&l->rate_link))
        hk_link_remove(&l->rate_link);
    note_add(ls, HK_LANE_NOTE_LANE_GONE, l, 0);
    hk_breaker_destroy(l->br);
    free(l->gone);
    free(l);
    ls->ls_cnt--;
    hk_metric_add(lanes_evicted, 1);
}

// Evicts lanes idle for idle_ms; those a rule or an open breaker keeps go to the
// back, to be looked at again an idle time later. Bounded per call.
static void lanes_sweep(hk_lanes_t *ls, int64_t now_ms)
{
    for (size_t looked = 0; !hk_link_alone(&ls->ls_idle) && looked < SWEEP_MAX; looked++) {
        hk_lane_t *l = HK_CONTAINER_OF(ls->ls_idle.next, hk_lane_t, idle_link);
        if (now_ms - l->idle_since_ms < ls->ls_opts.idle_ms)
            break;
        if (lane_evictable(l, now_ms)) {
            lane_evict(ls, l);
        } else {
            hk_link_remove(&l->idle_link);
            l->idle_since_ms = now_ms;
            hk_link_insert_before(&ls->ls_idle, &l->idle_link);
        }
    }
}

void hk_lanes_ref(hk_lanes_t *ls, hk_lane_t *l)
{
    (void)ls;
    if (l->refs++ == 0)
        hk_link_remove(&l->idle_link);
}

void hk_lanes_unref(hk_lanes_t *ls, hk_lane_t *l, int64_t now_ms)
{
    if (--l->refs == 0) {
        l->idle_since_ms = now_ms;
        hk_link_insert_before(&ls->ls_idle, &l->idle_link);
    }
}

hk_lane_t *hk_lanes_find(hk_lanes_t *ls, const char *key, int create, int force)
{
    uint32_t hash = hk_hash_str(key);
    for (hk_hash_node_t *n = hk_hash_first(&ls->ls_tab, hash); n; n = hk_hash_next(n))
        if (strcmp(lane_of(n)->key, key) == 0)
            return lane_of(n);
    if (!create)
        return NULL;
    int64_t now = now_of(ls);
    if (ls->ls_cnt >= ls->ls_opts.max_lanes && !force) {
        // At the cap: the least recently idle lane that may go makes room now,
        // without waiting out its idle time.
        hk_lane_t *victim = NULL;
        size_t looked = 0;
        for (hk_link_t *k = ls->ls_idle.next; k != &ls->ls_idle && looked < SWEEP_MAX;
             k = k->next, looked++) {
            hk_lane_t *c = HK_CONTAINER_OF(k, hk_lane_t, idle_link);
            if (lane_evictable(c, now)) {
                victim = c;
                break;
            }
        }
        if (!victim)
            return NULL;
        lane_evict(ls, victim);
    }
    size_t len = strlen(key);
    hk_lane_t *l = calloc(1, sizeof(*l) + len + 1);
    if (!l) {
        // A lane record of a few bytes: nothing sensible to do without it.
        hk_log(HK_LOG_ERROR, "out_of_memory", "{s:s}", "where", "dispatch");
        abort();
    }
    memcpy(l->key, key, len + 1);
    l->br = hk_breaker_new(&ls->ls_opts.breaker);
    if (!l->br)
        abort();
    hk_aimd_init(&l->lim, &ls->ls_opts.aimd);
    hk_link_init(&l->waiting);
    hk_link_init(&l->rate_link);
    l->idle_since_ms = now;
    hk_link_insert_before(&ls->ls_idle, &l->idle_link);
    hk_hash_insert(&ls->ls_tab, &l->node, hash);
    ls->ls_cnt++;
    note_add(ls, HK_LANE_NOTE_LANE, l, 0);
    return l;
}

const char *hk_lane_key(const hk_lane_t *l)
{
    return l->key;
}

hk_link_t *hk_lane_parked(hk_lane_t *l)
{
    return &l->waiting;
}

void hk_lane_add_queued(hk_lane_t *l, long delta)
{
    l->queued = (size_t)((long)l->queued + delta);
}

// Swaps in a fresh breaker with the current settings; in-flight tickets of the
// old one are simply ignored by the new one.
static void lane_new_breaker(hk_lanes_t *ls, hk_lane_t *l)
{
    hk_breaker_t *br = hk_breaker_new(&ls->ls_opts.breaker);
    if (!br)
        return;
    hk_breaker_destroy(l->br);
    l->br = br;
    l->br_stale = 0;
}

// --- disabled URLs ---------------------------------------------------------------

// The URL as curl writes it back (lowercase scheme, default port dropped, ...),
// so two spellings of one URL compare equal.
static int url_norm(const char *url, char *out, size_t size)
{
    CURLU *u = curl_url();
    char *s = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
        int n = snprintf(out, size, "%s", s);
        rc = n > 0 && (size_t)n < size ? 0 : -1;
    }
    curl_free(s);
    curl_url_cleanup(u);
    return rc;
}

// 1 when the URL names a whole endpoint (no path beyond "/", no query).
static int url_is_root(const char *url)
{
    CURLU *u = curl_url();
    char *path = NULL, *query = NULL;
    int root = 0;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        root = strcmp(path, "/") == 0 &&
               curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_NO_QUERY;
    }
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return root;
}

static int url_gone(const hk_lane_t *l, const char *url)
{
    char norm[HK_LANE_URL_NORM_MAX];
    if (url_norm(url, norm, sizeof(norm)) != 0)
        return 0;
    for (size_t i = 0; i < l->gone_cnt; i++)
        if (strcmp(l->gone[i]->url, norm) == 0)
            return 1;
    return 0;
}

static void gone_remove(hk_lanes_t *ls, hk_lane_t *l, size_t i)
{
    gone_t *g = l->gone[i];
    if (!hk_link_alone(&g->fifo)) {
        hk_link_remove(&g->fifo);
        ls->ls_gone_cnt--;
    }
    l->gone[i] = l->gone[--l->gone_cnt];
    free(g);
}

// Adds or removes one URL of the lane's disabled list; 1 when that changed it.
// `expires_ms` 0: an operator's, kept until enabled; else a 410's, forgotten
// then, or earlier when more than gone_max are held (oldest first).
static int url_gone_set(hk_lanes_t *ls, hk_lane_t *l, const char *url, int gone, int64_t expires_ms)
{
    for (size_t i = 0; i < l->gone_cnt; i++) {
        gone_t *g = l->gone[i];
        if (strcmp(g->url, url) == 0) {
            if (!gone) {
                gone_remove(ls, l, i);
                return 1;
            }
            if (expires_ms == 0 && g->expires_ms != 0 && !hk_link_alone(&g->fifo)) {
                hk_link_remove(&g->fifo); // an operator's now: no longer expires
                ls->ls_gone_cnt--;
                g->expires_ms = 0;
            }
            return 0;
        }
    }
    if (!gone)
        return 0;
    size_t len = strlen(url);
    gone_t **v = realloc(l->gone, (l->gone_cnt + 1) * sizeof(*v));
    gone_t *g = malloc(sizeof(*g) + len + 1);
    if (!v || !g)
        abort();
    l->gone = v;
    memcpy(g->url, url, len + 1);
    g->lane = l;
    g->expires_ms = expires_ms;
    hk_link_init(&g->fifo);
    l->gone[l->gone_cnt++] = g;
    if (expires_ms != 0) {
        hk_link_insert_before(&ls->ls_gone, &g->fifo);
        ls->ls_gone_cnt++;
    }
    return 1;
}

// Forgets 410s past their time, and the oldest beyond gone_max.
static void gone_sweep(hk_lanes_t *ls, int64_t now_ms)
{
    while (!hk_link_alone(&ls->ls_gone)) {
        gone_t *g = HK_CONTAINER_OF(ls->ls_gone.next, gone_t, fifo);
        if (g->expires_ms > now_ms && ls->ls_gone_cnt <= ls->ls_opts.gone_max)
            break;
        hk_lane_t *l = g->lane;
        for (size_t i = 0; i < l->gone_cnt; i++) {
            if (l->gone[i] == g) {
                gone_remove(ls, l, i);
                break;
            }
        }
    }
}

// Logs the breaker's transitions once each, and has opens and closes published to
// the other replicas (not those another replica caused: `remote`).
static void log_transitions(hk_lanes_t *ls, hk_lane_t *l, int remote)
{
    hk_breaker_state_t from, to;
    while (hk_breaker_take_transition(l->br, &from, &to)) {
        hk_log(HK_LOG_INFO, "breaker", "{s:s,s:s,s:s,s:f,s:b}", "endpoint", l->key, "from",
               hk_breaker_state_name(from), "to", hk_breaker_state_name(to), "failure_rate",
               hk_breaker_failure_rate(l->br), "remote", remote);
        if (!remote && to == HK_BREAKER_OPEN)
            note_add(ls, HK_LANE_NOTE_OPEN, l, 0);
        else if (!remote && to == HK_BREAKER_CLOSED)
            note_add(ls, HK_LANE_NOTE_CLOSE, l, 0);
    }
}

// --- the lanes -----------------------------------------------------------------

hk_lanes_t *hk_lanes_new(const hk_lanes_opts_t *opts)
{
    hk_lanes_t *ls = calloc(1, sizeof(*ls));
    if (!ls)
        return NULL;
    if (hk_hash_init(&ls->ls_tab, BUCKETS) < 0) {
        free(ls);
        return NULL;
    }
    ls->ls_opts = *opts;
    hk_link_init(&ls->ls_idle);
    hk_link_init(&ls->ls_gone);
    hk_link_init(&ls->ls_rate_wait);
    return ls;
}

void hk_lanes_destroy(hk_lanes_t *ls)
{
    if (!ls)
        return;
    for (hk_hash_node_t *n = hk_hash_walk(&ls->ls_tab, NULL), *next; n; n = next) {
        next = hk_hash_walk(&ls->ls_tab, n);
        hk_lane_t *l = lane_of(n);
        for (size_t i = 0; i < l->gone_cnt; i++)
            free(l->gone[i]);
        free(l->gone);
        hk_breaker_destroy(l->br);
        free(l);
    }
    hk_hash_fini(&ls->ls_tab);
    for (size_t i = 0; i < ls->ls_notes_cnt; i++)
        free(ls->ls_notes[i].endpoint);
    free(ls->ls_notes);
    free(ls);
}

hk_lane_verdict_t hk_lane_admit(hk_lanes_t *ls, hk_lane_t *l, const char *url, int64_t now_ms,
                                hk_breaker_ticket_t *ticket, int64_t *open_until_ms)
{
    if (l->disabled)
        return HK_LANE_DISABLED;
    if (l->gone_cnt && url_gone(l, url))
        return HK_LANE_GONE;
    if (hk_breaker_state(l->br, now_ms) == HK_BREAKER_OPEN) {
        *open_until_ms = hk_breaker_open_until(l->br);
        return HK_LANE_OPEN;
    }
    if (l->hold_until_ms > now_ms) {
        // A 429 asked for a pause: the whole lane waits it out.
        rate_wait(ls, l, l->hold_until_ms);
        return HK_LANE_WAIT;
    }
    if (!hk_aimd_acquire(&l->lim))
        return HK_LANE_WAIT;
    if (l->rate > 0 && !rate_take(ls, l, now_ms)) {
        hk_aimd_release(&l->lim, HK_AIMD_IGNORE);
        return HK_LANE_WAIT;
    }
    if (!hk_breaker_allow(l->br, now_ms, ticket)) {
        hk_aimd_release(&l->lim, HK_AIMD_IGNORE);
        log_transitions(ls, l, 0); // half-open with every probe out: wait for a result
        return HK_LANE_WAIT;
    }
    log_transitions(ls, l, 0);
    return HK_LANE_SEND;
}

void hk_lane_finish(hk_lanes_t *ls, hk_lane_t *l, const hk_lane_result_t *r, int64_t now_ms)
{
    int status = r->http_status;
    hk_breaker_result_t br_res = HK_BREAKER_IGNORE;
    hk_aimd_signal_t lim_sig = HK_AIMD_IGNORE;
    int too_many = r->outcome == HK_OUTCOME_RETRYABLE && status == 429;
    switch (r->outcome) {
    case HK_OUTCOME_DELIVERED:
        br_res = HK_BREAKER_SUCCESS;
        lim_sig = HK_AIMD_OK;
        break;
    case HK_OUTCOME_RETRYABLE:
        // A 429 says "slower", not "down": back-pressure below, never the breaker.
        br_res = too_many ? HK_BREAKER_IGNORE : HK_BREAKER_FAILURE;
        // Timeouts and 5xx mean "too much": back off. A refused connection
        // or a DNS failure says nothing about load.
        if (status == 408 || status >= 500 || r->curl_code == CURLE_OPERATION_TIMEDOUT)
            lim_sig = HK_AIMD_OVERLOAD;
        break;
    case HK_OUTCOME_PERMANENT:
    case HK_OUTCOME_GONE:
        lim_sig = HK_AIMD_OK; // the endpoint answered promptly
        break;
    default:
        break;
    }
    if (too_many) {
        // The whole lane holds until Retry-After (capped), and the limit drops
        // once per hold: the 429s of one burst are one signal, not many.
        int64_t hold = r->retry_after_ms >= 0 ? r->retry_after_ms : ls->ls_opts.hold_default_ms;
        if (hold > ls->ls_opts.hold_max_ms)
            hold = ls->ls_opts.hold_max_ms;
        if (l->hold_until_ms <= now_ms)
            lim_sig = HK_AIMD_OVERLOAD;
        if (now_ms + hold > l->hold_until_ms)
            l->hold_until_ms = now_ms + hold;
        hk_metric_add(lane_holds, 1);
    }
    hk_breaker_record(l->br, now_ms, r->ticket, br_res);
    hk_aimd_release(&l->lim, lim_sig);
    if (r->outcome == HK_OUTCOME_DELIVERED)
        l->delivered++;
    else
        l->failed++;
    char norm[HK_LANE_URL_NORM_MAX];
    if (r->outcome == HK_OUTCOME_GONE && status == 410 &&
        url_norm(r->url, norm, sizeof(norm)) == 0 &&
        url_gone_set(ls, l, norm, 1, now_ms + ls->ls_opts.gone_ttl_ms))
        hk_log(HK_LOG_WARN, "url_disabled", "{s:s,s:s,s:s}", "endpoint", l->key, "url", r->url,
               "reason", "410 Gone");
    log_transitions(ls, l, 0);
    if (l->br_stale && hk_breaker_state(l->br, now_ms) == HK_BREAKER_CLOSED)
        lane_new_breaker(ls, l);
    unpark(ls, l);
}

void hk_lane_abandon(hk_lanes_t *ls, hk_lane_t *l, hk_breaker_ticket_t ticket, int64_t now_ms)
{
    hk_breaker_record(l->br, now_ms, ticket, HK_BREAKER_IGNORE);
    hk_aimd_release(&l->lim, HK_AIMD_IGNORE);
    unpark(ls, l);
}

void hk_lanes_sweep(hk_lanes_t *ls, int64_t now_ms)
{
    gone_sweep(ls, now_ms);
    lanes_sweep(ls, now_ms);
}

void hk_lanes_wake_due(hk_lanes_t *ls, int64_t now_ms)
{
    for (hk_link_t *k = ls->ls_rate_wait.next, *kn; k != &ls->ls_rate_wait; k = kn) {
        kn = k->next;
        hk_lane_t *l = HK_CONTAINER_OF(k, hk_lane_t, rate_link);
        if (l->rate_wake_ms <= now_ms) {
            hk_link_remove(&l->rate_link);
            l->rate_wake_ms = 0;
            unpark(ls, l);
        }
    }
}

int64_t hk_lanes_next_wake(hk_lanes_t *ls, int64_t next_ms)
{
    for (hk_link_t *k = ls->ls_rate_wait.next; k != &ls->ls_rate_wait; k = k->next) {
        hk_lane_t *l = HK_CONTAINER_OF(k, hk_lane_t, rate_link);
        if (l->rate_wake_ms < next_ms)
            next_ms = l->rate_wake_ms;
    }
    // Idle lanes are evicted on time only when someone takes: a sleeper comes
    // back for them.
    if (!hk_link_alone(&ls->ls_idle)) {
        hk_lane_t *l = HK_CONTAINER_OF(ls->ls_idle.next, hk_lane_t, idle_link);
        int64_t due = l->idle_since_ms + ls->ls_opts.idle_ms;
        if (due < next_ms)
            next_ms = due;
    }
    return next_ms;
}

void hk_lanes_set_policy(hk_lanes_t *ls, const hk_breaker_opts_t *breaker,
                         const hk_aimd_opts_t *aimd)
{
    ls->ls_opts.breaker = *breaker;
    ls->ls_opts.aimd = *aimd;
    int64_t now = now_of(ls);
    EACH_LANE(ls, l)
    {
        l->lim.lim_opts.min = aimd->min;
        l->lim.lim_opts.max = aimd->max;
        l->lim.lim_opts.decrease = aimd->decrease;
        if (l->lim.lim_limit < aimd->min)
            l->lim.lim_limit = aimd->min;
        if (l->lim.lim_limit > aimd->max)
            l->lim.lim_limit = aimd->max;
        if (hk_breaker_state(l->br, now) == HK_BREAKER_CLOSED)
            lane_new_breaker(ls, l);
        else
            l->br_stale = 1;
        unpark(ls, l); // a larger limit frees slots
    }
}

int hk_lanes_disable(hk_lanes_t *ls, const char *key, const char *target, int disabled)
{
    char norm[HK_LANE_URL_NORM_MAX];
    if (url_norm(target, norm, sizeof(norm)) != 0)
        return -1;
    int whole = url_is_root(target);
    hk_lane_t *l = hk_lanes_find(ls, key, disabled, 1);
    int rc = -1;
    if (l && whole) {
        if (l->disabled != disabled) {
            hk_log(HK_LOG_WARN, disabled ? "endpoint_disabled" : "endpoint_enabled", "{s:s,s:s}",
                   "endpoint", l->key, "reason", "operator");
            atomic_fetch_add(&ls->ls_disabled_cnt, disabled ? 1 : -1);
        }
        l->disabled = disabled;
        while (!disabled && l->gone_cnt) // enabling an endpoint enables every URL under it
            gone_remove(ls, l, 0);
        rc = 0;
    } else if (l) {
        int changed = url_gone_set(ls, l, norm, disabled, 0);
        if (changed)
            hk_log(HK_LOG_WARN, disabled ? "url_disabled" : "url_enabled", "{s:s,s:s,s:s}",
                   "endpoint", l->key, "url", norm, "reason", "operator");
        rc = disabled || changed ? 0 : -1;
    }
    if (rc == 0 && !disabled)
        unpark(ls, l);
    return rc;
}

int hk_lanes_disabled(hk_lanes_t *ls, const char *key)
{
    hk_lane_t *l = hk_lanes_find(ls, key, 0, 0);
    return l && l->disabled;
}

int hk_lanes_any_disabled(hk_lanes_t *ls)
{
    return atomic_load(&ls->ls_disabled_cnt) != 0;
}

hk_lane_t *hk_lanes_reset(hk_lanes_t *ls, const char *key)
{
    hk_lane_t *l = hk_lanes_find(ls, key, 0, 0);
    if (!l)
        return NULL;
    lane_new_breaker(ls, l);
    l->hold_until_ms = 0;
    note_add(ls, HK_LANE_NOTE_CLOSE, l, 0);
    unpark(ls, l);
    return l;
}

void hk_lanes_set_rate(hk_lanes_t *ls, const char *key, double rate, int burst)
{
    hk_lane_t *l = hk_lanes_find(ls, key, 1, 1);
    if (l->rate != rate || l->burst != burst)
        l->gcra = (hk_gcra_t){0};
    l->rate = rate > 0 ? rate : 0;
    l->burst = burst > 0 ? burst : 1;
    l->permits = 0;
    unpark(ls, l);
}

void hk_lanes_permits(hk_lanes_t *ls, const char *key, int granted, int64_t retry_in_ms)
{
    int64_t now = now_of(ls);
    hk_lane_t *l = hk_lanes_find(ls, key, 0, 0);
    if (!l)
        return;
    l->permit_asked = 0;
    if (granted < 0) {
        l->shared_down_ms = now + 1000; // local limiter for a second
        unpark(ls, l);
    } else if (granted > 0) {
        l->permits += granted;
        l->permits_ms = now;
        unpark(ls, l);
    } else {
        rate_wait(ls, l, now + (retry_in_ms > 0 ? retry_in_ms : 1));
    }
}

void hk_lanes_remote_open(hk_lanes_t *ls, const char *key, int64_t until_ms)
{
    hk_lane_t *l = hk_lanes_find(ls, key, 0, 0);
    if (l && hk_breaker_force_open(l->br, now_of(ls), until_ms))
        log_transitions(ls, l, 1);
}

json_t *hk_lanes_json(hk_lanes_t *ls, int64_t now_ms)
{
    json_t *arr = json_array();
    EACH_LANE(ls, l)
    {
        hk_breaker_snapshot_t s;
        hk_breaker_snapshot(l->br, now_ms, &s);
        int64_t open_for =
            s.state == HK_BREAKER_OPEN && s.open_until_ms > now_ms ? s.open_until_ms - now_ms : 0;
        json_t *gone = json_array();
        for (size_t i = 0; i < l->gone_cnt; i++)
            json_array_append_new(gone, json_string(l->gone[i]->url));
        json_t *o = json_pack(
            "{s:s,s:s,s:f,s:i,s:I,s:I,s:i,s:i,s:I,s:b,s:o,s:I,s:I}", "endpoint", l->key, "state",
            hk_breaker_state_name(s.state), "failure_rate", s.failure_rate, "calls", s.calls,
            "trips", (json_int_t)s.trips, "next_probe_in_ms", (json_int_t)open_for, "in_flight",
            hk_aimd_in_flight(&l->lim), "limit", hk_aimd_limit(&l->lim), "queued",
            (json_int_t)l->queued, "disabled", l->disabled, "disabled_urls", gone, "delivered",
            (json_int_t)l->delivered, "failed", (json_int_t)l->failed);
        if (o) {
            json_object_set_new(o, "hold_ms",
                                json_integer(l->hold_until_ms > now_ms
                                                 ? (json_int_t)(l->hold_until_ms - now_ms)
                                                 : 0));
            json_object_set_new(o, "kept", json_boolean(lane_kept(l)));
            json_array_append_new(arr, o);
        }
    }
    return arr;
}

size_t hk_lanes_count(const hk_lanes_t *ls)
{
    return ls->ls_cnt;
}

size_t hk_lanes_gone_count(hk_lanes_t *ls)
{
    size_t gone = 0;
    EACH_LANE(ls, l)
    gone += l->gone_cnt;
    return gone;
}
