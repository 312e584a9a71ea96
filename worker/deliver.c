// deliver: N threads × (one curl multi + M reusable easy handles).
#include "worker/deliver.h"
#include "worker/clock.h"

#include <curl/curl.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "retry/backoff.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/sign.h"

typedef struct dl_thread dl_thread_t;

typedef struct dl_slot {
    CURL *easy;
    hk_task_t *task;
    struct curl_slist *hdrs;
    dl_thread_t *th;
    size_t resp_bytes;
    char retry_after[128]; // Retry-After of the response, "" when none
    int blocked;
    int peer_disabled; // the connected address is a disabled endpoint (dispatch rule)
    char blocked_addr[64];
    const char *blocked_why;
    char errbuf[CURL_ERROR_SIZE];
} dl_slot_t;

struct dl_thread {
    hk_deliver_t *dl;
    pthread_t tid;
    CURLM *multi;
    int index;        // dispatcher slot
    dl_slot_t *slots; // max_transfers_per_thread of them
    dl_slot_t **free; // stack of free slots
    int free_cnt;
    int slots_cnt;
    atomic_int active;
    atomic_uint_fast64_t cancel_done; // last cancel request this thread carried out
};

struct hk_deliver_s {
    hk_deliver_opts_t dl_opts;
    dl_thread_t *dl_threads;
    int dl_threads_cnt;
    atomic_int dl_run;
    pthread_mutex_t dl_cancel_lock; // one cancel request at a time
    char dl_cancel_topic[256];
    int32_t dl_cancel_partition;
    atomic_uint_fast64_t dl_cancel_seq; // bumped per request
};

static void format_addr(const struct sockaddr *sa, char *out, size_t size)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)size))
        snprintf(out, size, "?");
}

// curl calls this for every address it is about to connect to: the guard judges the
// address actually used, after DNS, so a name that resolves to 127.0.0.1 is caught.
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    dl_slot_t *slot = clientp;
    if (purpose == CURLSOCKTYPE_IPCXN) {
        const char *why = NULL;
        if (!hk_netguard_check(slot->th->dl->dl_opts.guard, &addr->addr, addr->addrlen, &why)) {
            slot->blocked = 1;
            slot->blocked_why = why;
            format_addr(&addr->addr, slot->blocked_addr, sizeof(slot->blocked_addr));
            return CURL_SOCKET_BAD;
        }
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

// Before each request, on a new or a reused connection: rules that name an
// address apply to the peer actually connected, whatever name led there.
static int prereq(void *clientp, char *peer_ip, char *local_ip, int peer_port, int local_port)
{
    (void)local_ip, (void)local_port;
    dl_slot_t *slot = clientp;
    if (!hk_dispatch_peer_disabled(slot->th->dl->dl_opts.dispatch, slot->task->job->url, peer_ip,
                                   peer_port))
        return CURL_PREREQFUNC_OK;
    slot->peer_disabled = 1;
    snprintf(slot->blocked_addr, sizeof(slot->blocked_addr), "%s", peer_ip);
    return CURL_PREREQFUNC_ABORT;
}

// Response bodies are not needed: count them, and stop a transfer that sends more
// than the cap (the status line is already in hand by then).
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    dl_slot_t *slot = userdata;
    size_t n = size * nmemb;
    slot->resp_bytes += n;
    if ((int64_t)slot->resp_bytes > slot->th->dl->dl_opts.cfg->delivery_max_response_bytes)
        return CURL_WRITEFUNC_ERROR;
    return n;
}

// Keeps the Retry-After header (the only response header hookd acts on).
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    dl_slot_t *slot = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
        const char *v = buf + sizeof(name) - 1;
        size_t len = n - (sizeof(name) - 1);
        while (len > 0 && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len >= sizeof(slot->retry_after))
            len = sizeof(slot->retry_after) - 1;
        memcpy(slot->retry_after, v, len);
        slot->retry_after[len] = '\0';
    }
    return n;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name, const char *value)
{
    char line[8448];
    snprintf(line, sizeof(line), "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(list, line);
    return l ? l : list;
}

static void finish(dl_thread_t *th, dl_slot_t *slot, CURLcode code);

static void start(dl_thread_t *th, hk_task_t *task)
{
    const hk_config_t *cfg = th->dl->dl_opts.cfg;
    const hk_job_t *job = task->job;
    dl_slot_t *slot = th->free[--th->free_cnt];
    CURL *e = slot->easy;

    slot->task = task;
    slot->resp_bytes = 0;
    slot->retry_after[0] = '\0';
    slot->blocked = 0;
    slot->peer_disabled = 0;
    slot->blocked_why = NULL;
    slot->errbuf[0] = '\0';

    int64_t now = hk_clock_wall_ms();
    if (job->expires_at_ms && now >= job->expires_at_ms) {
        hk_task_fail(task, HK_OUTCOME_EXPIRED, 0, "expired before attempt %d", task->attempts + 1);
        slot->task = NULL;
        th->free[th->free_cnt++] = slot;
        th->dl->dl_opts.on_done(task, th->dl->dl_opts.arg);
        return;
    }
    task->attempts++;
    if (task->attempts == 1)
        task->first_attempt_ms = now;
    hk_metric_add(attempts, 1);

    // Headers: the job's own first, then the ones hookd owns (the parser rejected
    // job headers that would collide with them).
    struct curl_slist *h = NULL;
    for (size_t i = 0; i < job->headers_cnt; i++)
        h = add_header(h, job->headers[i].name, job->headers[i].value);
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)(now / 1000));
    h = add_header(h, "webhook-id", job->id);
    h = add_header(h, "webhook-timestamp", ts);
    const char *secrets = hk_config_tenant_secret(cfg, job->tenant);
    if (secrets && *secrets) {
        char sig[HK_SIGN_HEADER_MAX];
        if (hk_sign_header(secrets, job->id, now / 1000, job->body, job->body_len, sig,
                           sizeof(sig)) > 0)
            h = add_header(h, "webhook-signature", sig);
    }
    h = add_header(h, "Idempotency-Key", job->id);
    if (job->content_type)
        h = add_header(h, "Content-Type", job->content_type);
    h = curl_slist_append(h, "Expect:"); // no 100-continue round trip
    slot->hdrs = h;

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, job->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); // never an environment proxy: the guard checks peers
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)job->timeout_ms);
    long connect_ms = cfg->delivery_connect_timeout_ms < job->timeout_ms
                          ? cfg->delivery_connect_timeout_ms
                          : job->timeout_ms;
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "hookd/" HOOKD_VERSION);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, slot);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, slot);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, slot);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, slot);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, slot->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, slot);

    int has_body = job->body != NULL;
    if (strcmp(job->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(job->method, "POST") == 0 || has_body || strcmp(job->method, "DELETE") != 0) {
        // POST, PUT, PATCH, and DELETE with a body: send the bytes as they are.
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, has_body ? job->body : "");
        if (strcmp(job->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, job->method);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }

    CURLMcode mc = curl_multi_add_handle(th->multi, e);
    if (mc != CURLM_OK) {
        snprintf(slot->errbuf, sizeof(slot->errbuf), "curl_multi_add_handle: %s",
                 curl_multi_strerror(mc));
        finish(th, slot, CURLE_FAILED_INIT);
        return;
    }
    atomic_fetch_add(&th->active, 1);
}

static void finish(dl_thread_t *th, dl_slot_t *slot, CURLcode code)
{
    hk_task_t *task = slot->task;
    long status = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_WRITE_ERROR && status > 0)
        code = CURLE_OK; // we cut an oversized body short; the status is what counts

    hk_attempt_result_t res = {.http_status = (int)status,
                               .curl_code = (int)code,
                               .blocked = slot->blocked && status == 0};
    hk_outcome_t outcome = slot->peer_disabled ? HK_OUTCOME_GONE : hk_classify(&res);
    // Per attempt, before main turns a last retryable one into "exhausted".
    curl_off_t total_us = 0;
    if (curl_easy_getinfo(slot->easy, CURLINFO_TOTAL_TIME_T, &total_us) != CURLE_OK)
        total_us = 0;
    hk_metrics_observe_attempt(outcome, (int64_t)total_us);
    task->curl_code = (int)code;
    task->retry_after_ms = -1;
    int64_t delay;
    if (slot->retry_after[0] &&
        hk_backoff_retry_after(slot->retry_after, hk_clock_wall_ms(), &delay) == 0)
        task->retry_after_ms = delay;
    if (outcome == HK_OUTCOME_DELIVERED)
        hk_task_fail(task, outcome, (int)status, "%s", "");
    else if (slot->peer_disabled)
        hk_task_fail(task, outcome, 0, "endpoint disabled (by the peer address %s)",
                     slot->blocked_addr);
    else if (res.blocked)
        hk_task_fail(task, outcome, 0, "blocked: %s address %s", slot->blocked_why,
                     slot->blocked_addr);
    else if (status > 0)
        hk_task_fail(task, outcome, (int)status, "HTTP %ld", status);
    else
        hk_task_fail(task, outcome, 0, "%s",
                     slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(code));

    curl_slist_free_all(slot->hdrs);
    slot->hdrs = NULL;
    slot->task = NULL;
    th->free[th->free_cnt++] = slot;
    th->dl->dl_opts.on_done(task, th->dl->dl_opts.arg);
}

static void wake(void *arg)
{
    dl_thread_t *th = arg;
    curl_multi_wakeup(th->multi);
}

// Drops this thread's transfers of (topic, partition); on the delivery thread.
static void cancel_matching(dl_thread_t *th, const char *topic, int32_t partition)
{
    for (int i = 0; i < th->slots_cnt; i++) {
        dl_slot_t *slot = &th->slots[i];
        hk_task_t *task = slot->task;
        if (!task || task->partition != partition || strcmp(task->topic, topic) != 0)
            continue;
        curl_multi_remove_handle(th->multi, slot->easy);
        curl_slist_free_all(slot->hdrs);
        slot->hdrs = NULL;
        slot->task = NULL;
        th->free[th->free_cnt++] = slot;
        atomic_fetch_sub(&th->active, 1);
        task->cancelled = 1;
        hk_log(HK_LOG_INFO, "transfer_cancelled", "{s:s,s:s,s:i,s:I}", "id", task->job->id, "topic",
               topic, "partition", (int)partition, "offset", (json_int_t)task->offset);
        if (th->dl->dl_opts.on_cancel)
            th->dl->dl_opts.on_cancel(task, th->dl->dl_opts.arg);
        else
            hk_task_destroy(task);
    }
}

void hk_deliver_cancel(hk_deliver_t *dl, const char *topic, int32_t partition)
{
    pthread_mutex_lock(&dl->dl_cancel_lock);
    snprintf(dl->dl_cancel_topic, sizeof(dl->dl_cancel_topic), "%s", topic);
    dl->dl_cancel_partition = partition;
    uint64_t seq = atomic_fetch_add(&dl->dl_cancel_seq, 1) + 1;
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        curl_multi_wakeup(dl->dl_threads[t].multi);
    for (int t = 0; t < dl->dl_threads_cnt; t++) {
        while (atomic_load(&dl->dl_threads[t].cancel_done) < seq && atomic_load(&dl->dl_run)) {
            hk_clock_sleep_ms(1);
        }
    }
    pthread_mutex_unlock(&dl->dl_cancel_lock);
}

static void *thread_main(void *arg)
{
    dl_thread_t *th = arg;
    hk_deliver_t *dl = th->dl;
    hk_task_t **batch = calloc((size_t)th->slots_cnt, sizeof(*batch));

    while (atomic_load(&dl->dl_run)) {
        uint64_t seq = atomic_load(&dl->dl_cancel_seq);
        if (seq != atomic_load(&th->cancel_done)) {
            cancel_matching(th, dl->dl_cancel_topic, dl->dl_cancel_partition);
            atomic_store(&th->cancel_done, seq);
        }
        int64_t next_due = INT64_MAX;
        size_t asked = (size_t)th->free_cnt, taken = 0, completed = 0;
        if (asked > 0) {
            taken = hk_dispatch_take(dl->dl_opts.dispatch, th->index, batch, asked,
                                     hk_clock_mono_ms(), &next_due);
            for (size_t i = 0; i < taken; i++)
                start(th, batch[i]);
        }
        int running = 0;
        curl_multi_perform(th->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(th->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            dl_slot_t *slot = NULL;
            CURL *easy = msg->easy_handle;
            CURLcode code = msg->data.result;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&slot);
            curl_multi_remove_handle(th->multi, easy);
            atomic_fetch_sub(&th->active, 1);
            finish(th, slot, code);
            completed++;
        }
        // Go round at once only when there may be more to take now: slots freed in
        // this turn, or every free slot filled. Otherwise sleep until socket
        // activity, the next delayed task, or a wakeup from the dispatcher (new
        // work, a freed lane slot): a thread never spins while work waits.
        int64_t wait = 1000;
        if (completed > 0 || (asked > 0 && taken == asked)) {
            wait = 0;
        } else if (th->free_cnt > 0 && next_due != INT64_MAX) {
            int64_t until = next_due - hk_clock_mono_ms();
            wait = until < 0 ? 0 : until < wait ? until : wait;
        }
        curl_multi_poll(th->multi, NULL, 0, (int)wait, NULL);
    }

    // Abort what is still running: those tasks stay uncommitted and come back.
    for (int i = 0; i < th->slots_cnt; i++) {
        dl_slot_t *slot = &th->slots[i];
        if (!slot->task)
            continue;
        curl_multi_remove_handle(th->multi, slot->easy);
        curl_slist_free_all(slot->hdrs);
        hk_task_destroy(slot->task);
        slot->task = NULL;
    }
    free(batch);
    return NULL;
}

hk_deliver_t *hk_deliver_start(const hk_deliver_opts_t *opts, char *errstr, size_t errstr_size)
{
    const hk_config_t *cfg = opts->cfg;
    hk_deliver_t *dl = calloc(1, sizeof(*dl));
    dl->dl_opts = *opts;
    dl->dl_threads_cnt = cfg->delivery_threads;
    dl->dl_threads = calloc((size_t)dl->dl_threads_cnt, sizeof(*dl->dl_threads));
    atomic_store(&dl->dl_run, 1);
    pthread_mutex_init(&dl->dl_cancel_lock, NULL);

    for (int t = 0; t < dl->dl_threads_cnt; t++) {
        dl_thread_t *th = &dl->dl_threads[t];
        th->dl = dl;
        th->multi = curl_multi_init();
        th->slots_cnt = cfg->delivery_max_transfers_per_thread;
        th->slots = calloc((size_t)th->slots_cnt, sizeof(*th->slots));
        th->free = calloc((size_t)th->slots_cnt, sizeof(*th->free));
        if (!th->multi || !th->slots || !th->free) {
            snprintf(errstr, errstr_size, "delivery thread %d: out of memory", t);
            dl->dl_threads_cnt = t + 1;
            hk_deliver_stop(dl);
            return NULL;
        }
        // Keep a warm connection per concurrent transfer, to every endpoint in use.
        curl_multi_setopt(th->multi, CURLMOPT_MAXCONNECTS, (long)th->slots_cnt * 4);
        for (int i = 0; i < th->slots_cnt; i++) {
            th->slots[i].easy = curl_easy_init();
            th->slots[i].th = th;
            th->free[th->free_cnt++] = &th->slots[i];
        }
        th->index = hk_dispatch_register(opts->dispatch, wake, th);
    }
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        pthread_create(&dl->dl_threads[t].tid, NULL, thread_main, &dl->dl_threads[t]);
    return dl;
}

size_t hk_deliver_active(hk_deliver_t *dl)
{
    size_t n = 0;
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        n += (size_t)atomic_load(&dl->dl_threads[t].active);
    return n;
}

size_t hk_deliver_stop(hk_deliver_t *dl)
{
    if (!dl)
        return 0;
    size_t aborted = hk_deliver_active(dl);
    atomic_store(&dl->dl_run, 0);
    for (int t = 0; t < dl->dl_threads_cnt; t++)
        if (dl->dl_threads[t].multi)
            curl_multi_wakeup(dl->dl_threads[t].multi);
    for (int t = 0; t < dl->dl_threads_cnt; t++) {
        dl_thread_t *th = &dl->dl_threads[t];
        if (th->tid)
            pthread_join(th->tid, NULL);
        for (int i = 0; th->slots && i < th->slots_cnt; i++)
            if (th->slots[i].easy)
                curl_easy_cleanup(th->slots[i].easy);
        if (th->multi)
            curl_multi_cleanup(th->multi);
        free(th->slots);
        free(th->free);
    }
    free(dl->dl_threads);
    pthread_mutex_destroy(&dl->dl_cancel_lock);
    free(dl);
    return aborted;
}
