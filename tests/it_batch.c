// Batches end to end (DESIGN §4, §6, §9): exact counters and item rows with
// permanent failures, the abort past max_failure_ratio, a SIGKILL mid-batch
// resumed from the checkpoint, a Postgres outage that pauses the batch while
// webhooks flow, four replicas migrating one fresh database, and a dead-letter
// replay with hookctl. One Postgres server for the suite (the runner's,
// hk_ck_run_t.pg, under the run's TMPDIR), one fresh database, mock Kafka
// cluster and sink per test; hookd logs are it_batch_*.log in the working dir.
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/migrate.h"
#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/pgsvc.h"
#include "tests/support/sink.h"

#define MAX_HOOKD 4

static hk_pgsvc_t pgs; // the suite's server
static hk_th_proc_t kafka;
static char brokers[512];
static hk_sink_t *sink;
static hk_th_proc_t hookd[MAX_HOOKD];
static char db[600]; // conninfo of this test's database
static int db_no;
static PGconn *held; // a session holding a lock for a test; closed by teardown

static void setup(void)
{
    for (int i = 0; i < MAX_HOOKD; i++)
        hookd[i] = (hk_th_proc_t){.pid = 0, .stdin_fd = -1};
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 16};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    const char *topics[] = {"jobs:8", "jobs.dlq:2", "jobs.retry:8", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
    char name[32];
    snprintf(name, sizeof(name), "it_batch_%d", ++db_no);
    ck_assert_int_eq(hk_pgsvc_create_db(&pgs, name, db, sizeof(db)), 0);
}

// Runs after a failed assertion too: no child outlives its test, and a test that
// failed during the outage leaves the server running for the next one.
static void teardown(void)
{
    for (int i = 0; i < MAX_HOOKD; i++)
        hk_th_stop(&hookd[i], 15000);
    if (held)
        PQfinish(held);
    held = NULL;
    hk_th_kafka_stop(&kafka);
    if (sink)
        hk_sink_stop(sink);
    sink = NULL;
    if (pgs.pid == 0)
        hk_pgsvc_restart(&pgs);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Starts hookd[slot] on this test's database, with `extra` env ("NAME=value",
// NULL terminated, may be NULL) on top.
static void start_hookd_conf(int slot, const char *log, char *const extra[], const char *conf)
{
    char url[700];
    snprintf(url, sizeof(url), "HOOKD_POSTGRES_URL=%s", db);
    char *env[32];
    int n = 0;
    env[n++] = url;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    unlink(log);
    ck_assert_int_eq(hk_th_hookd_start(&hookd[slot], brokers, env, conf, log), 0);
}

static void start_hookd(int slot, const char *log, char *const extra[])
{
    start_hookd_conf(slot, log, extra, NULL);
}

static void stop_hookd_expect_exit_0(int slot)
{
    int status = hk_th_stop(&hookd[slot], 20000);
    ck_assert_msg(hk_th_exited_ok(status), "hookd %d did not exit 0 after SIGTERM (status %d)",
                  slot, status);
}

static int produce_one(const char *value, const char *key)
{
    char *v[] = {(char *)value};
    char *k[] = {(char *)key};
    return hk_th_produce(brokers, "jobs", v, k, 1) == 1;
}

// --- Postgres (libpq straight to this test's database) ---------------------------

// Runs a query; NULL (error on stderr) when it did not return rows.
__attribute__((format(printf, 1, 2))) static PGresult *pq(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    PGconn *c = PQconnectdb(db);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "it_batch: connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "it_batch: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        r = NULL;
    }
    PQfinish(c);
    return r;
}

// The first column of the first row as an integer; -1 on error or no row.
__attribute__((format(printf, 1, 2))) static long long pq_int(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    PGresult *r = pq("%s", sql);
    long long v = -1;
    if (r && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

typedef struct batch_row {
    char status[32];
    long long total, succeeded, failed, skipped, cursor;
} batch_row_t;

static void read_batch(const char *id, batch_row_t *b)
{
    PGresult *r = pq("SELECT status, total, succeeded, failed, skipped, cursor FROM batches "
                     "WHERE id = '%s'",
                     id);
    ck_assert_msg(r && PQntuples(r) == 1, "no batches row for %s", id);
    snprintf(b->status, sizeof(b->status), "%s", PQgetvalue(r, 0, 0));
    b->total = atoll(PQgetvalue(r, 0, 1));
    b->succeeded = atoll(PQgetvalue(r, 0, 2));
    b->failed = atoll(PQgetvalue(r, 0, 3));
    b->skipped = atoll(PQgetvalue(r, 0, 4));
    b->cursor = atoll(PQgetvalue(r, 0, 5));
    PQclear(r);
}

// Item statuses stored for batch `id`: one byte per index, 0 when there is no
// row, else 'S' succeeded, 'F' failed, 'K' skipped. *rows gets the row count.
static char *read_items(const char *id, size_t n, size_t *rows)
{
    PGresult *r = pq("SELECT idx, status FROM batch_items WHERE batch_id = '%s'", id);
    ck_assert_ptr_nonnull(r);
    char *st = calloc(n ? n : 1, 1);
    *rows = (size_t)PQntuples(r);
    for (int i = 0; i < PQntuples(r); i++) {
        long long idx = atoll(PQgetvalue(r, i, 0));
        const char *s = PQgetvalue(r, i, 1);
        ck_assert_msg(idx >= 0 && (size_t)idx < n, "batch_items row with idx %lld", idx);
        ck_assert_msg(st[idx] == 0, "two rows for item %lld", idx);
        st[idx] = strcmp(s, "succeeded") == 0 ? 'S'
                  : strcmp(s, "failed") == 0  ? 'F'
                  : strcmp(s, "skipped") == 0 ? 'K'
                                              : '?';
        ck_assert_msg(st[idx] != '?', "item %lld has status %s", idx, s);
    }
    PQclear(r);
    return st;
}

typedef struct pq_want {
    const char *sql;
    long long n;
} pq_want_t;

static int pq_at_least(void *arg)
{
    pq_want_t *w = arg;
    return pq_int("%s", w->sql) >= w->n;
}

// --- hookd's log -------------------------------------------------------------------

// Wall clock ms of a log line's "ts" ("2026-01-02T03:04:05.678Z"); -1 if unreadable.
static int64_t line_ts(json_t *line)
{
    return hk_th_log_ts(json_string_value(json_object_get(line, "ts")));
}

typedef struct first_since {
    int64_t since_ms;
    json_t *line;
} first_since_t;

static int first_since(json_t *line, int64_t at_ms, void *arg)
{
    first_since_t *w = arg;
    if (at_ms < w->since_ms)
        return 0;
    w->line = json_incref(line);
    return 1;
}

// The first line of `log` for `event` logged at or after `since_ms` (wall clock),
// as JSON; NULL when there is none.
static json_t *log_event_since(const char *log, const char *event, int64_t since_ms)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event);
    first_since_t w = {since_ms, NULL};
    hk_th_log_each(log, needle, first_since, &w);
    return w.line;
}

// The first line of `log` for `event` as JSON; NULL when there is none.
static json_t *log_event(const char *log, const char *event)
{
    return log_event_since(log, event, 0);
}

// "event":"<event>", as it stands in a log line.
static const char *event_needle(char *buf, size_t size, const char *event)
{
    snprintf(buf, size, "\"event\":\"%s\"", event);
    return buf;
}

static int log_events(const char *log, const char *event)
{
    char needle[128];
    return hk_th_log_count(log, event_needle(needle, sizeof(needle), event));
}

static int wait_log(const char *log, const char *event, int timeout_ms)
{
    char needle[128];
    return hk_th_wait_for_log(log, event_needle(needle, sizeof(needle), event), 1, timeout_ms);
}

static long long jint(json_t *obj, const char *field)
{
    json_t *v = json_object_get(obj, field);
    ck_assert_msg(json_is_integer(v), "\"%s\" is not an integer", field);
    return (long long)json_integer_value(v);
}

// --- what the sink saw ---------------------------------------------------------------

typedef struct item_seen {
    unsigned reqs, ok;
    int64_t first_ms, last_ms; // arrival of the first and last request
} item_seen_t;

// Requests per item of batch `id` (webhook-id "<id>:<index>", index < n).
// *after (may be NULL) gets how many of them arrived after `after_ms`.
static item_seen_t *seen_items(const char *id, size_t n, int64_t after_ms, size_t *after)
{
    item_seen_t *seen = calloc(n ? n : 1, sizeof(*seen));
    hk_sink_req_t *reqs;
    size_t nreq = hk_sink_reqs(sink, &reqs);
    size_t idlen = strlen(id), late = 0;
    for (size_t i = 0; i < nreq; i++) {
        const char *wid = reqs[i].webhook_id;
        if (strncmp(wid, id, idlen) != 0 || wid[idlen] != ':')
            continue;
        char *end;
        long idx = strtol(wid + idlen + 1, &end, 10);
        ck_assert_msg(*end == '\0' && idx >= 0 && (size_t)idx < n, "unexpected webhook-id %s", wid);
        item_seen_t *s = &seen[idx];
        if (s->reqs++ == 0)
            s->first_ms = reqs[i].at_ms;
        s->last_ms = reqs[i].at_ms;
        if (reqs[i].status >= 200 && reqs[i].status < 300)
            s->ok++;
        if (reqs[i].at_ms > after_ms)
            late++;
    }
    hk_sink_reqs_free(reqs, nreq);
    if (after)
        *after = late;
    return seen;
}

// Requests to paths starting with `path`, answered 2xx, that arrived within [from, to].
static size_t ok_between(const char *path, int64_t from, int64_t to)
{
    hk_sink_req_t *reqs;
    size_t nreq = hk_sink_reqs(sink, &reqs), n = 0;
    for (size_t i = 0; i < nreq; i++)
        if (strncmp(reqs[i].path, path, strlen(path)) == 0 && reqs[i].status >= 200 &&
            reqs[i].status < 300 && reqs[i].at_ms >= from && reqs[i].at_ms <= to)
            n++;
    hk_sink_reqs_free(reqs, nreq);
    return n;
}

// Requests whose webhook-id starts with `prefix` that arrived within [from, to].
static size_t reqs_between(const char *prefix, int64_t from, int64_t to)
{
    hk_sink_req_t *reqs;
    size_t nreq = hk_sink_reqs(sink, &reqs), n = 0;
    for (size_t i = 0; i < nreq; i++)
        if (strncmp(reqs[i].webhook_id, prefix, strlen(prefix)) == 0 && reqs[i].at_ms >= from &&
            reqs[i].at_ms <= to)
            n++;
    hk_sink_reqs_free(reqs, nreq);
    return n;
}

typedef struct ids_ok {
    const char *prefix; // ids are <prefix><0..n-1>
    int n;
} ids_ok_t;

static int all_ids_ok(void *arg)
{
    ids_ok_t *w = arg;
    for (int i = 0; i < w->n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s%d", w->prefix, i);
        if (hk_sink_ok_count(sink, id) == 0)
            return 0;
    }
    return 1;
}

typedef struct topic_want {
    const char *topic;
    size_t n;
} topic_want_t;

static int topic_at_least(void *arg)
{
    topic_want_t *w = arg;
    hk_th_record_t *recs;
    size_t got = hk_th_read_topic(brokers, w->topic, &recs);
    hk_th_records_free(recs, got);
    return got >= w->n;
}

// --- jobs and tools --------------------------------------------------------------------

// Path of item i, or NULL to inherit the batch's url.
typedef const char *item_path_fn(size_t i);

// A batch job of n items for this test's sink; ratio < 0 leaves max_failure_ratio out.
static char *batch_json(const char *id, size_t n, double ratio, const char *path,
                        item_path_fn *item_path)
{
    int port = hk_sink_port(sink);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    fprintf(f, "{\"id\":\"%s\",\"type\":\"batch\",\"tenant\":\"t1\",", id);
    if (ratio >= 0)
        fprintf(f, "\"max_failure_ratio\":%g,", ratio);
    fprintf(f, "\"url\":\"http://127.0.0.1:%d%s\",\"items\":[", port, path);
    for (size_t i = 0; i < n; i++) {
        const char *p = item_path ? item_path(i) : NULL;
        fprintf(f, "%s{", i ? "," : "");
        if (p)
            fprintf(f, "\"url\":\"http://127.0.0.1:%d%s\",", port, p);
        fprintf(f, "\"body\":{\"i\":%zu}}", i);
    }
    fprintf(f, "]}");
    fclose(f);
    return buf;
}

// Runs build/hookctl with `args` appended (shell syntax); returns its stdout
// (caller frees) and its wait status in *status.
__attribute__((format(printf, 2, 3))) static char *hookctl(int *status, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s/hookctl %s", HK_BUILD_DIR, args);
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "popen %s", cmd);
    char *out = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&out, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
        fwrite(buf, 1, n, o);
    fclose(o);
    *status = pclose(p);
    return out;
}

static int count_substr(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

// --- 1. permanent failures inside the ratio -------------------------------------------

#define S1_N 5000

static const char *s1_path(size_t i)
{
    return i % 33 == 0 ? "/status/422" : NULL;
}

START_TEST(test_batch_with_permanent_failures_completes_with_exact_counts)
{
    size_t want_failed = 0;
    for (size_t i = 0; i < S1_N; i++)
        want_failed += i % 33 == 0;
    ck_assert_uint_eq(want_failed, 152);

    char *job = batch_json("b1", S1_N, 0.1, "/ok", s1_path);
    ck_assert(produce_one(job, "b1"));
    free(job);
    const char *log = "it_batch_counts_hookd.log";
    char *env[] = {"HOOKD_BATCH_CONCURRENCY=32", NULL};
    int64_t t0 = hk_th_now_ms();
    start_hookd(0, log, env);
    ck_assert_msg(wait_log(log, "batch_finished", 90000), "b1 did not finish (see %s)", log);
    int64_t took = hk_th_now_ms() - t0;

    batch_row_t b;
    read_batch("b1", &b);
    ck_assert_str_eq(b.status, "completed_with_failures");
    ck_assert_int_eq(b.total, S1_N);
    ck_assert_int_eq(b.succeeded, S1_N - 152);
    ck_assert_int_eq(b.failed, 152);
    ck_assert_int_eq(b.skipped, 0);
    ck_assert_int_eq(b.cursor, S1_N);
    json_t *fin = log_event(log, "batch_finished");
    ck_assert_str_eq(json_string_value(json_object_get(fin, "status")), "completed_with_failures");
    ck_assert_int_eq(jint(fin, "succeeded"), S1_N - 152);
    ck_assert_int_eq(jint(fin, "failed"), 152);
    ck_assert_int_eq(jint(fin, "skipped"), 0);
    json_decref(fin);

    // One row per item; exactly the /status/422 ones failed, once, with their status.
    size_t rows;
    char *st = read_items("b1", S1_N, &rows);
    ck_assert_uint_eq(rows, S1_N);
    for (size_t i = 0; i < S1_N; i++)
        ck_assert_msg(st[i] == (i % 33 == 0 ? 'F' : 'S'), "item %zu stored as %c", i, st[i]);
    free(st);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM batch_items WHERE batch_id = 'b1' AND "
                            "status = 'failed' AND last_http_status = 422 AND attempts = 1"),
                     152);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM batch_items WHERE batch_id = 'b1' AND "
                            "status = 'succeeded' AND attempts >= 1"),
                     S1_N - 152);

    // The sink: every good item delivered, every bad one tried exactly once (422 is permanent).
    item_seen_t *seen = seen_items("b1", S1_N, 0, NULL);
    size_t resent = 0;
    for (size_t i = 0; i < S1_N; i++) {
        if (i % 33 == 0) {
            ck_assert_msg(seen[i].reqs == 1 && seen[i].ok == 0, "item %zu: %u requests, %u ok", i,
                          seen[i].reqs, seen[i].ok);
        } else {
            ck_assert_msg(seen[i].ok >= 1, "item %zu never delivered", i);
            resent += seen[i].ok > 1;
        }
    }
    free(seen);
    hk_sink_stats_t ss;
    hk_sink_stats(sink, &ss);
    ck_assert_uint_eq(ss.bad_signature, 0);
    ck_assert_uint_eq(ss.bad_headers, 0);

    // jobs.dlq: one record per failed item, with the batch headers; its value is the
    // item as a standalone webhook job under the item's key.
    topic_want_t tw = {"jobs.dlq", 152};
    ck_assert_msg(hk_th_wait_for(topic_at_least, &tw, 15000), "fewer than 152 dead letters");
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    ck_assert_uint_eq(nrec, 152);
    unsigned char *hit = calloc(S1_N, 1);
    for (size_t r = 0; r < nrec; r++) {
        const char *bid = hk_th_header(&recs[r], "hookd-batch-id");
        const char *bix = hk_th_header(&recs[r], "hookd-batch-index");
        ck_assert_msg(bid && strcmp(bid, "b1") == 0, "record %zu: hookd-batch-id %s", r,
                      bid ? bid : "(none)");
        ck_assert_ptr_nonnull(bix);
        char *end;
        long idx = strtol(bix, &end, 10);
        ck_assert_msg(*end == '\0' && idx >= 0 && idx < S1_N && idx % 33 == 0 && !hit[idx],
                      "record %zu: hookd-batch-index %s", r, bix);
        hit[idx] = 1;
        const char *cls = hk_th_header(&recs[r], "hookd-error-class");
        ck_assert_msg(cls && strcmp(cls, "permanent") == 0, "item %ld: class %s", idx,
                      cls ? cls : "(none)");
        const char *hs = hk_th_header(&recs[r], "hookd-http-status");
        ck_assert_msg(hs && strcmp(hs, "422") == 0, "item %ld: http status %s", idx,
                      hs ? hs : "(none)");
        json_t *v = json_loadb(recs[r].value, recs[r].value_len, 0, NULL);
        ck_assert_msg(v != NULL, "item %ld: value is not JSON", idx);
        char want_id[32];
        snprintf(want_id, sizeof(want_id), "b1:%ld", idx);
        const char *vid = json_string_value(json_object_get(v, "id"));
        ck_assert_msg(vid && strcmp(vid, want_id) == 0, "item %ld: value id %s", idx,
                      vid ? vid : "(none)");
        const char *type = json_string_value(json_object_get(v, "type"));
        ck_assert_msg(!type || strcmp(type, "webhook") == 0, "item %ld: type %s", idx, type);
        const char *url = json_string_value(json_object_get(v, "url"));
        ck_assert_msg(url && strstr(url, "/status/422"), "item %ld: url %s", idx,
                      url ? url : "(none)");
        json_decref(v);
    }
    free(hit);
    hk_th_records_free(recs, nrec);

    // dead_letters: the same 152, recorded by the runner shortly after.
    pq_want_t pw = {"SELECT count(*) FROM dead_letters", 152};
    ck_assert_msg(hk_th_wait_for(pq_at_least, &pw, 15000), "dead_letters has %lld rows",
                  pq_int("SELECT count(*) FROM dead_letters"));
    ck_assert_int_eq(pq_int("SELECT count(*) FROM dead_letters"), 152);
    ck_assert_int_eq(
        pq_int("SELECT count(DISTINCT item_idx) FROM dead_letters WHERE "
               "batch_id = 'b1' AND item_idx %% 33 = 0 AND job_id = 'b1:' || item_idx "
               "AND error_class = 'permanent' AND http_status = 422 AND tenant = 't1'"),
        152);

    // hookctl batch show, as text and as JSON.
    int rc;
    char *out = hookctl(&rc, "-p '%s' batch show b1 --tenant t1", db);
    ck_assert_msg(hk_th_exited_ok(rc), "hookctl batch show: status %d, output %s", rc, out);
    ck_assert_msg(strstr(out, "completed_with_failures"), "no status in: %s", out);
    ck_assert_msg(strstr(out, "items 5000: succeeded 4848, failed 152, skipped 0, pending 0"),
                  "wrong counts in: %s", out);
    ck_assert_msg(strstr(out, "HTTP 422"), "no failed item listed in: %s", out);
    free(out);
    out = hookctl(&rc, "-p '%s' batch show b1 --json --tenant=t1", db);
    ck_assert_msg(hk_th_exited_ok(rc), "hookctl batch show --json: status %d", rc);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    ck_assert_msg(j != NULL, "batch show --json does not parse (%s): %s", jerr.text, out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "b1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "tenant")), "t1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "completed_with_failures");
    ck_assert_int_eq(jint(j, "total"), S1_N);
    ck_assert_int_eq(jint(j, "succeeded"), S1_N - 152);
    ck_assert_int_eq(jint(j, "failed"), 152);
    ck_assert_int_eq(jint(j, "skipped"), 0);
    ck_assert_int_eq(jint(j, "pending"), 0);
    ck_assert_int_eq(jint(j, "cursor"), S1_N);
    ck_assert(json_number_value(json_object_get(j, "percent")) == 100.0);
    json_t *fi = json_object_get(j, "failed_items");
    ck_assert_uint_eq(json_array_size(fi), 100);
    ck_assert(json_is_true(json_object_get(j, "failed_items_truncated")));
    ck_assert_int_eq(jint(json_array_get(fi, 0), "index"), 0);
    ck_assert_int_eq(jint(json_array_get(fi, 1), "index"), 33);
    ck_assert_int_eq(jint(json_array_get(fi, 0), "http_status"), 422);
    json_decref(j);
    free(out);

    // Batch identity is (tenant, id): another tenant's batch "b1" (10 items) is a
    // batch of its own, neither rejected for t1's 5000 nor finished by it.
    int port = hk_sink_port(sink);
    char other[2048];
    int len = snprintf(other, sizeof(other),
                       "{\"id\":\"b1\",\"type\":\"batch\",\"tenant\":\"t9\","
                       "\"url\":\"http://127.0.0.1:%d/ok/t9\",\"items\":[",
                       port);
    for (int i = 0; i < 10; i++)
        len += snprintf(other + len, sizeof(other) - (size_t)len, "%s{\"body\":{\"i\":%d}}",
                        i ? "," : "", i);
    snprintf(other + len, sizeof(other) - (size_t)len, "]}");
    int64_t t_other = wall_ms();
    ck_assert(produce_one(other, "b1"));
    pq_want_t ow = {"SELECT count(*) FROM batches WHERE id = 'b1' AND tenant = 't9' AND "
                    "status = 'completed' AND succeeded = 10",
                    1};
    ck_assert_msg(hk_th_wait_for(pq_at_least, &ow, 30000),
                  "t9's batch b1 did not complete (see %s)", log);
    ck_assert_uint_eq(ok_between("/ok/t9", t_other, wall_ms()), 10);
    ck_assert_int_eq(log_events(log, "batch_rejected"), 0);
    ck_assert_int_eq(log_events(log, "batch_already_finished"), 0);
    out = hookctl(&rc, "-p '%s' batch show b1 --tenant t9 --json", db);
    ck_assert_msg(hk_th_exited_ok(rc), "hookctl batch show --tenant t9: status %d", rc);
    j = json_loads(out, 0, &jerr);
    ck_assert_msg(j != NULL, "batch show --json does not parse (%s): %s", jerr.text, out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "tenant")), "t9");
    ck_assert_int_eq(jint(j, "total"), 10);
    json_decref(j);
    free(out);
    // t1's b1 is as it was.
    ck_assert_int_eq(pq_int("SELECT total + succeeded FROM batches WHERE id = 'b1' AND "
                            "tenant = 't1'"),
                     S1_N + S1_N - 152);

    stop_hookd_expect_exit_0(0);
    printf("it_batch counts: %d items finished in %lld ms: succeeded %lld, failed %lld, "
           "skipped %lld; 152 dead letters in jobs.dlq and dead_letters; %zu items sent twice\n",
           S1_N, (long long)took, b.succeeded, b.failed, b.skipped, resent);
}
END_TEST

// --- 2. abort past max_failure_ratio ----------------------------------------------------

#define S2_N    2000
#define S2_CONC 8

static int s2_fails(size_t i)
{
    return i >= 100 && i % 5 == 0;
}

static const char *s2_path(size_t i)
{
    return s2_fails(i) ? "/status/400" : NULL;
}

START_TEST(test_batch_aborts_past_max_failure_ratio_and_skips_the_rest)
{
    char *job = batch_json("b2", S2_N, 0.02, "/ok", s2_path);
    ck_assert(produce_one(job, "b2"));
    free(job);
    const char *log = "it_batch_abort_hookd.log";
    char conc[64];
    snprintf(conc, sizeof(conc), "HOOKD_BATCH_CONCURRENCY=%d", S2_CONC);
    char *env[] = {conc, NULL};
    start_hookd(0, log, env);
    ck_assert_msg(wait_log(log, "batch_finished", 90000), "b2 did not finish (see %s)", log);

    batch_row_t b;
    read_batch("b2", &b);
    ck_assert_str_eq(b.status, "aborted");
    ck_assert_int_eq(b.total, S2_N);
    ck_assert_int_gt(b.skipped, 0);
    ck_assert_int_eq(b.succeeded + b.failed + b.skipped, S2_N);
    ck_assert_int_eq(b.cursor, S2_N);
    // 0.02 × 2000 = 40: the 41st failure decides, and at most the items then in
    // flight can fail after it.
    json_t *ab = log_event(log, "batch_aborting");
    ck_assert_msg(ab != NULL, "no batch_aborting in %s", log);
    ck_assert_int_eq(jint(ab, "failed"), 41);
    int64_t abort_ms = line_ts(ab);
    ck_assert_int_gt(abort_ms, 0);
    json_decref(ab);
    ck_assert_int_ge(b.failed, 41);
    ck_assert_int_le(b.failed, 41 + S2_CONC);
    json_t *fin = log_event(log, "batch_finished");
    ck_assert_str_eq(json_string_value(json_object_get(fin, "status")), "aborted");
    ck_assert_int_eq(jint(fin, "skipped"), b.skipped);
    json_decref(fin);

    size_t rows, after_abort;
    char *st = read_items("b2", S2_N, &rows);
    ck_assert_uint_eq(rows, S2_N);
    item_seen_t *seen = seen_items("b2", S2_N, abort_ms, &after_abort);
    size_t requested = 0, n_s = 0, n_f = 0, n_k = 0;
    for (size_t i = 0; i < S2_N; i++) {
        requested += seen[i].reqs;
        switch (st[i]) {
        case 'S':
            n_s++;
            ck_assert_msg(!s2_fails(i) && seen[i].reqs == 1 && seen[i].ok == 1,
                          "succeeded item %zu: %u requests, %u ok", i, seen[i].reqs, seen[i].ok);
            break;
        case 'F':
            n_f++;
            ck_assert_msg(s2_fails(i) && seen[i].reqs == 1 && seen[i].ok == 0,
                          "failed item %zu: %u requests, %u ok", i, seen[i].reqs, seen[i].ok);
            break;
        case 'K':
            n_k++;
            ck_assert_msg(seen[i].reqs == 0, "skipped item %zu was requested %u times", i,
                          seen[i].reqs);
            break;
        default:
            ck_abort_msg("item %zu has no row", i);
        }
    }
    free(st);
    free(seen);
    ck_assert_int_eq((long long)n_s, b.succeeded);
    ck_assert_int_eq((long long)n_f, b.failed);
    ck_assert_int_eq((long long)n_k, b.skipped);
    ck_assert_uint_eq(requested, n_s + n_f);
    // What was sent after the decision: only what was already on its way.
    ck_assert_msg(after_abort <= S2_CONC, "%zu item requests arrived after batch_aborting",
                  after_abort);

    // Failed items are dead-lettered one by one; skipped ones are not.
    topic_want_t tw = {"jobs.dlq", n_f};
    ck_assert(hk_th_wait_for(topic_at_least, &tw, 15000));
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    ck_assert_uint_eq(nrec, n_f);
    for (size_t r = 0; r < nrec; r++) {
        const char *bid = hk_th_header(&recs[r], "hookd-batch-id");
        const char *bix = hk_th_header(&recs[r], "hookd-batch-index");
        ck_assert(bid && strcmp(bid, "b2") == 0);
        ck_assert(bix && s2_fails((size_t)atol(bix)));
    }
    hk_th_records_free(recs, nrec);

    stop_hookd_expect_exit_0(0);
    printf("it_batch abort: %d items, ratio 0.02, concurrency %d: aborted at 41 failures; "
           "succeeded %zu, failed %zu, skipped %zu; %zu item requests, %zu after the abort\n",
           S2_N, S2_CONC, n_s, n_f, n_k, requested, after_abort);
}
END_TEST

// --- 3. SIGKILL mid-batch, resume from the checkpoint --------------------------------------

#define S3_N          5000
#define S3_CONC       16
#define S3_CKPT       100
#define S3_SESSION_MS 3000

START_TEST(test_batch_resumes_from_its_checkpoint_after_sigkill)
{
    const char *seed_env = getenv("IT_BATCH_SEED");
    unsigned seed = seed_env ? (unsigned)atol(seed_env) : (unsigned)time(NULL);
    srand(seed);
    uint64_t kill_at = S3_N / 5 + (uint64_t)rand() % (S3_N * 3 / 5); // 20% .. 80%

    char *job = batch_json("b3", S3_N, -1, "/slow/5", NULL);
    ck_assert(produce_one(job, "b3"));
    free(job);
    char conc[64], ckpt[64];
    snprintf(conc, sizeof(conc), "HOOKD_BATCH_CONCURRENCY=%d", S3_CONC);
    snprintf(ckpt, sizeof(ckpt), "HOOKD_BATCH_CHECKPOINT_ITEMS=%d", S3_CKPT);
    char *env[] = {conc, ckpt, NULL};
    const char *log1 = "it_batch_crash_hookd1.log", *log2 = "it_batch_crash_hookd2.log";
    // The killed member holds its partitions until its session times out: keep
    // that short so the restart does not wait for hookd's 10 s default.
    const char *conf = "it_batch_crash.conf";
    FILE *cf = fopen(conf, "w");
    ck_assert_ptr_nonnull(cf);
    fprintf(cf, "[kafka]\nrdkafka.session.timeout.ms = %d\n", S3_SESSION_MS);
    fclose(cf);
    start_hookd_conf(0, log1, env, conf);
    ck_assert_msg(hk_th_wait_unique_ok(sink, kill_at, 90000), "b3 never reached %llu",
                  (unsigned long long)kill_at);
    hk_th_kill(&hookd[0], SIGKILL);
    ck_assert_int_ne(hk_th_wait(&hookd[0], 10000), -1);
    hk_sink_stats_t at_kill;
    hk_sink_stats(sink, &at_kill);
    ck_assert_msg(at_kill.unique_ok < S3_N, "the batch ended before the kill: proves nothing");
    // A checkpoint being committed at the kill lands (or not) before the server
    // notices the client is gone: read the store once hookd's sessions have ended.
    pq_want_t gone = {"SELECT 1 - count(*) FROM pg_stat_activity WHERE datname = "
                      "current_database() AND pid <> pg_backend_pid()",
                      1};
    ck_assert_msg(hk_th_wait_for(pq_at_least, &gone, 10000), "hookd's sessions outlived it");

    // What the checkpoint holds now is what the next hookd resumes from.
    batch_row_t b;
    read_batch("b3", &b);
    ck_assert_str_eq(b.status, "running");
    size_t stored_n;
    char *stored = read_items("b3", S3_N, &stored_n);
    ck_assert_msg(stored_n > 0, "no checkpoint after %llu delivered items",
                  (unsigned long long)at_kill.unique_ok);
    ck_assert_uint_le(stored_n, at_kill.unique_ok);
    ck_assert_int_eq(b.succeeded, (long long)stored_n);
    for (size_t i = 0; i < S3_N; i++) {
        ck_assert(stored[i] == 0 || stored[i] == 'S');
        ck_assert_msg(i >= (size_t)b.cursor || stored[i], "cursor %lld but item %zu not stored",
                      b.cursor, i);
    }
    size_t unflushed = at_kill.unique_ok - stored_n;
    ck_assert_msg(unflushed <= S3_CKPT + 2 * S3_CONC,
                  "%zu delivered items were not checkpointed at the kill", unflushed);

    int64_t restart_ms = wall_ms();
    start_hookd_conf(1, log2, env, conf);
    ck_assert_msg(wait_log(log2, "batch_finished", 90000), "b3 did not finish (see %s)", log2);
    json_t *res = log_event(log2, "batch_resumed");
    ck_assert_msg(res != NULL, "no batch_resumed in %s", log2);
    ck_assert_int_eq(jint(res, "items"), S3_N);
    long long resumed = jint(res, "terminal_already");
    ck_assert_int_eq(resumed, (long long)stored_n);
    json_decref(res);

    read_batch("b3", &b);
    ck_assert_str_eq(b.status, "completed");
    ck_assert_int_eq(b.total, S3_N);
    ck_assert_int_eq(b.succeeded, S3_N);
    ck_assert_int_eq(b.failed, 0);
    ck_assert_int_eq(b.skipped, 0);
    ck_assert_int_eq(b.cursor, S3_N);
    size_t rows;
    char *st = read_items("b3", S3_N, &rows);
    ck_assert_uint_eq(rows, S3_N);
    for (size_t i = 0; i < S3_N; i++)
        ck_assert_msg(st[i] == 'S', "item %zu stored as %c", i, st[i]);
    free(st);

    item_seen_t *seen = seen_items("b3", S3_N, 0, NULL);
    size_t resent = 0;
    for (size_t i = 0; i < S3_N; i++) {
        ck_assert_msg(seen[i].ok >= 1, "item %zu never delivered", i);
        resent += seen[i].ok > 1;
        // An item terminal in the checkpoint is never sent again.
        if (stored[i])
            ck_assert_msg(seen[i].last_ms < restart_ms,
                          "checkpointed item %zu was sent again after the restart", i);
    }
    free(seen);
    free(stored);
    ck_assert_msg(resent <= S3_CKPT + 2 * S3_CONC, "%zu items sent twice", resent);
    hk_sink_stats_t ss;
    hk_sink_stats(sink, &ss);
    ck_assert_uint_eq(ss.unique_ok, S3_N);
    ck_assert_uint_eq(ss.bad_signature, 0);

    stop_hookd_expect_exit_0(1);
    printf("it_batch crash: killed at %llu delivered, resumed with %lld terminal, re-sent %zu "
           "items (seed %u, unflushed at the kill %zu)\n",
           (unsigned long long)at_kill.unique_ok, resumed, resent, seed, unflushed);
}
END_TEST

// --- 4. Postgres outage mid-batch ------------------------------------------------------------

#define S4_N      5000
#define S4_CONC   8
#define S4_CKPT   100 // the default batch.checkpoint_items
#define S4_WEB    3000
#define S4_ROUNDS 5

START_TEST(test_postgres_outage_pauses_the_batch_while_webhooks_flow)
{
    char *job = batch_json("b4", S4_N, -1, "/slow/2", NULL);
    ck_assert(produce_one(job, "b4"));
    free(job);
    char conc[64];
    snprintf(conc, sizeof(conc), "HOOKD_BATCH_CONCURRENCY=%d", S4_CONC);
    char *env[] = {conc, "HOOKD_POSTGRES_RECONNECT_MAX_MS=500", NULL};
    const char *log = "it_batch_outage_hookd.log";
    start_hookd(0, log, env);
    ck_assert_msg(hk_th_wait_unique_ok(sink, S4_N / 4, 90000), "b4 never reached 25%%");

    ck_assert_int_eq(hk_pgsvc_stop(&pgs), 0);
    int64_t t_down = wall_ms();
    hk_sink_stats_t at_down;
    hk_sink_stats(sink, &at_down);
    ck_assert_msg(at_down.unique_ok < S4_N, "the batch ended before the outage");

    // Webhook jobs produced during the outage are delivered during it.
    int port = hk_sink_port(sink);
    char **values = calloc(S4_WEB, sizeof(char *));
    char **keys = calloc(S4_WEB, sizeof(char *));
    for (int i = 0; i < S4_WEB; i++) {
        ck_assert(asprintf(&values[i],
                           "{\"id\":\"w-%d\",\"tenant\":\"t4\",\"url\":\"http://127.0.0.1:%d/ok/"
                           "web\",\"body\":{\"n\":%d}}",
                           i, port, i) > 0);
        ck_assert(asprintf(&keys[i], "w-%d", i % 97) > 0);
    }
    // Each round's jobs must arrive while Postgres is still down; the outage lasts
    // at least S4_ROUNDS seconds.
    size_t per_round = S4_WEB / S4_ROUNDS, web[S4_ROUNDS];
    int64_t round_ms[S4_ROUNDS];
    for (int r = 0; r < S4_ROUNDS; r++) {
        int64_t r0 = wall_ms();
        ck_assert_uint_eq(
            hk_th_produce(brokers, "jobs", values + r * per_round, keys + r * per_round, per_round),
            per_round);
        size_t want = (size_t)(r + 1) * per_round;
        int64_t deadline = r0 + 10000;
        while ((web[r] = ok_between("/ok/web", t_down, wall_ms())) < want && wall_ms() < deadline)
            hk_th_sleep_ms(20);
        round_ms[r] = wall_ms() - r0;
        ck_assert_msg(web[r] == want,
                      "webhook deliveries stalled during the outage: %zu after round %d, want %zu",
                      web[r], r + 1, want);
        int64_t until = t_down + (r + 1) * 1000;
        if (wall_ms() < until)
            hk_th_sleep_ms((int)(until - wall_ms()));
    }
    int64_t t_up = wall_ms();
    ck_assert_int_eq(hk_pgsvc_restart(&pgs), 0);
    for (int i = 0; i < S4_WEB; i++) {
        free(values[i]);
        free(keys[i]);
    }
    free(values);
    free(keys);

    ck_assert_msg(wait_log(log, "batch_finished", 90000), "b4 did not finish (see %s)", log);
    ck_assert_msg(log_events(log, "postgres_down") >= 1, "no postgres_down in %s", log);
    ck_assert_msg(log_events(log, "postgres_up") >= 1, "no postgres_up in %s", log);
    // Down during the outage, up again only after the restart.
    json_t *down = log_event_since(log, "postgres_down", t_down - 1000);
    ck_assert_msg(down != NULL, "no postgres_down after the server stopped");
    ck_assert_int_le(line_ts(down), t_up);
    json_t *up = log_event_since(log, "postgres_up", line_ts(down));
    ck_assert_msg(up != NULL, "no postgres_up after postgres_down");
    ck_assert_int_ge(line_ts(up), t_up);
    json_decref(down);
    json_decref(up);

    batch_row_t b;
    read_batch("b4", &b);
    ck_assert_str_eq(b.status, "completed");
    ck_assert_int_eq(b.total, S4_N);
    ck_assert_int_eq(b.succeeded, S4_N);
    ck_assert_int_eq(b.failed, 0);
    ck_assert_int_eq(b.skipped, 0);
    ck_assert_int_eq(b.cursor, S4_N);
    size_t rows;
    char *st = read_items("b4", S4_N, &rows);
    ck_assert_uint_eq(rows, S4_N);
    for (size_t i = 0; i < S4_N; i++)
        ck_assert_msg(st[i] == 'S', "item %zu stored as %c", i, st[i]);
    free(st);
    item_seen_t *seen = seen_items("b4", S4_N, 0, NULL);
    for (size_t i = 0; i < S4_N; i++)
        ck_assert_msg(seen[i].ok >= 1, "item %zu never delivered", i);
    free(seen);

    // Nothing failed for the outage: no dead letter, every webhook delivered.
    ids_ok_t all = {"w-", S4_WEB};
    ck_assert_msg(hk_th_wait_for(all_ids_ok, &all, 30000), "webhook jobs not all delivered");
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, nrec);
    ck_assert_uint_eq(nrec, 0);

    // The batch paused: after the first failed checkpoint nothing new went out.
    size_t web_during = ok_between("/ok/web", t_down, t_up);
    size_t items_during = reqs_between("b4:", t_down, t_up);
    ck_assert_msg(items_during <= S4_CKPT + 2 * S4_CONC,
                  "%zu batch items were sent while Postgres was down", items_during);
    ck_assert_uint_eq(web_during, S4_WEB);

    stop_hookd_expect_exit_0(0);
    printf("it_batch outage: postgres down %lld ms at %llu of %d items; webhook deliveries "
           "during it %zu (rounds of %zu delivered in %lld %lld %lld %lld %lld ms), batch items "
           "sent during it %zu; batch completed %lld/%d\n",
           (long long)(t_up - t_down), (unsigned long long)at_down.unique_ok, S4_N, web_during,
           per_round, (long long)round_ms[0], (long long)round_ms[1], (long long)round_ms[2],
           (long long)round_ms[3], (long long)round_ms[4], items_during, b.succeeded, S4_N);
}
END_TEST

// --- 5. four replicas, one fresh database -------------------------------------------------------

// Runs one command on `c`; 1 when it worked.
static int pq_cmd(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "it_batch: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

START_TEST(test_four_replicas_migrate_a_fresh_database_once)
{
    ck_assert_int_eq(pq_int("SELECT count(*) FROM pg_tables WHERE tablename = "
                            "'hookd_schema_migrations'"),
                     0);
    // Line the replicas up: while this session holds the migration lock, each one
    // must queue on it; releasing it lets all four go at the same moment.
    held = PQconnectdb(db);
    ck_assert_int_eq(PQstatus(held), CONNECTION_OK);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%lld)", (long long)HK_MIGRATE_LOCK_KEY);
    ck_assert(pq_cmd(held, sql));

    char logs[MAX_HOOKD][64];
    for (int i = 0; i < MAX_HOOKD; i++) {
        snprintf(logs[i], sizeof(logs[i]), "it_batch_migrate_hookd%d.log", i + 1);
        unlink(logs[i]);
    }
    char url[700];
    snprintf(url, sizeof(url), "HOOKD_POSTGRES_URL=%s", db);
    char *env[] = {url, NULL};
    for (int i = 0; i < MAX_HOOKD; i++)
        ck_assert_int_eq(hk_th_hookd_start(&hookd[i], brokers, env, NULL, logs[i]), 0);
    pq_want_t queued = {"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT "
                        "granted AND database = (SELECT oid FROM pg_database WHERE datname = "
                        "current_database())",
                        MAX_HOOKD};
    ck_assert_msg(hk_th_wait_for(pq_at_least, &queued, 20000),
                  "%lld of %d replicas wait for the migration lock", pq_int("%s", queued.sql),
                  MAX_HOOKD);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM pg_tables WHERE tablename = "
                            "'hookd_schema_migrations'"),
                     0);
    for (int i = 0; i < MAX_HOOKD; i++) {
        ck_assert_int_eq(log_events(logs[i], "started"), 0);
        ck_assert_msg(hk_th_wait(&hookd[i], 0) == -1, "hookd %d exited", i + 1);
    }

    int64_t t0 = hk_th_now_ms();
    PQfinish(held); // releases the lock
    held = NULL;
    for (int i = 0; i < MAX_HOOKD; i++)
        ck_assert_msg(wait_log(logs[i], "started", 30000), "hookd %d did not start (see %s)", i + 1,
                      logs[i]);
    int64_t took = hk_th_now_ms() - t0;

    int applied_by = 0, applied_sum = 0;
    for (int i = 0; i < MAX_HOOKD; i++) {
        ck_assert_msg(hk_th_wait(&hookd[i], 0) == -1, "hookd %d exited", i + 1);
        ck_assert_int_eq(log_events(logs[i], "migrations_checked"), 1);
        ck_assert_int_eq(log_events(logs[i], "startup_failed"), 0);
        json_t *m = log_event(logs[i], "migrations_checked");
        int applied = (int)jint(m, "applied");
        json_decref(m);
        applied_sum += applied;
        applied_by += applied > 0;
        int port = 0;
        for (int k = 0; k < 100 && !(port = hk_th_admin_port(logs[i])); k++)
            hk_th_sleep_ms(50);
        ck_assert_msg(port > 0, "hookd %d: no admin port", i + 1);
        char u[128];
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/healthz", port);
        ck_assert_int_eq(hk_th_http("GET", u, 5000, NULL), 200);
    }
    ck_assert_int_eq(applied_by, 1);
    ck_assert_int_eq(applied_sum, (int)hk_migrations_cnt);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM hookd_schema_migrations"),
                     (long long)hk_migrations_cnt);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM hookd_schema_migrations WHERE version = 1"), 1);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM pg_tables WHERE tablename IN "
                            "('batches', 'batch_items', 'dead_letters')"),
                     3);

    for (int i = 0; i < MAX_HOOKD; i++)
        hk_th_kill(&hookd[i], SIGTERM);
    for (int i = 0; i < MAX_HOOKD; i++) {
        int status = hk_th_wait(&hookd[i], 20000);
        ck_assert_msg(hk_th_exited_ok(status), "hookd %d did not exit 0 after SIGTERM (%d)", i + 1,
                      status);
    }
    printf("it_batch migrate: %d replicas queued on the migration lock, all started %lld ms "
           "after its release; %d applied "
           "the migration, hookd_schema_migrations has %lld row(s); all exited 0\n",
           MAX_HOOKD, (long long)took, applied_by,
           pq_int("SELECT count(*) FROM hookd_schema_migrations"));
}
END_TEST

// --- 6. dead letters replayed once the endpoint is fixed ----------------------------------------

#define S6_N 50

START_TEST(test_dead_letters_replayed_after_the_endpoint_is_fixed)
{
    ck_assert_int_eq(hk_sink_set_rule(sink, "/fixme", 400, 0, NULL), 0);
    int port = hk_sink_port(sink);
    char *values[S6_N], *keys[S6_N];
    for (int i = 0; i < S6_N; i++) {
        ck_assert(asprintf(&values[i],
                           "{\"id\":\"fix-%d\",\"tenant\":\"t6\",\"url\":\"http://127.0.0.1:%d/"
                           "fixme\",\"body\":{\"n\":%d}}",
                           i, port, i) > 0);
        ck_assert(asprintf(&keys[i], "k-%d", i) > 0);
    }
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, keys, S6_N), S6_N);
    for (int i = 0; i < S6_N; i++) {
        free(values[i]);
        free(keys[i]);
    }
    const char *log = "it_batch_replay_hookd.log";
    start_hookd(0, log, NULL);
    ck_assert_msg(wait_log(log, "started", 30000), "hookd did not start (see %s)", log);

    pq_want_t pw = {"SELECT count(*) FROM dead_letters", S6_N};
    ck_assert_msg(hk_th_wait_for(pq_at_least, &pw, 60000), "dead_letters has %lld rows",
                  pq_int("SELECT count(*) FROM dead_letters"));
    topic_want_t tw = {"jobs.dlq", S6_N};
    ck_assert(hk_th_wait_for(topic_at_least, &tw, 15000));
    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    ck_assert_uint_eq(nrec, S6_N);
    for (size_t r = 0; r < nrec; r++) {
        const char *cls = hk_th_header(&recs[r], "hookd-error-class");
        const char *hs = hk_th_header(&recs[r], "hookd-http-status");
        ck_assert(cls && strcmp(cls, "permanent") == 0);
        ck_assert(hs && strcmp(hs, "400") == 0);
        ck_assert_ptr_null(hk_th_header(&recs[r], "hookd-batch-id"));
    }
    hk_th_records_free(recs, nrec);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM dead_letters"), S6_N);
    ck_assert_int_eq(pq_int("SELECT count(DISTINCT job_id) FROM dead_letters WHERE job_id LIKE "
                            "'fix-%%' AND error_class = 'permanent' AND http_status = 400 AND "
                            "tenant = 't6' AND batch_id IS NULL AND item_idx IS NULL AND "
                            "original_topic = '%s' AND replayed_at IS NULL",
                            hk_th_kafka_name("jobs")),
                     S6_N);
    hk_sink_stats_t before;
    hk_sink_stats(sink, &before);
    ck_assert_uint_eq(before.ok, 0);
    ck_assert_uint_eq(before.requests, S6_N);

    int rc;
    char *out = hookctl(&rc, "-p '%s' dlq list --limit 1000", db);
    ck_assert_msg(hk_th_exited_ok(rc), "dlq list: status %d", rc);
    ck_assert_msg(strstr(out, "50 dead letter(s)"), "dlq list: %s", out);
    ck_assert_int_eq(count_substr(out, " permanent "), S6_N);
    free(out);

    // The endpoint is fixed; replay what failed for it.
    ck_assert_int_eq(hk_sink_set_rule(sink, "/fixme", 0, 0, NULL), 0);
    out = hookctl(&rc, "-p '%s' -b '%s' -t '%s' dlq replay --reason permanent", db, brokers,
                  hk_th_kafka_name("jobs"));
    ck_assert_msg(hk_th_exited_ok(rc), "dlq replay: status %d, output %s", rc, out);
    json_t *j = json_loads(out, 0, NULL);
    ck_assert_msg(j != NULL, "dlq replay printed %s", out);
    ck_assert_int_eq(jint(j, "replayed"), S6_N);
    ck_assert_str_eq(json_string_value(json_object_get(j, "topic")), hk_th_kafka_name("jobs"));
    json_decref(j);
    free(out);

    ids_ok_t all = {"fix-", S6_N};
    ck_assert_msg(hk_th_wait_for(all_ids_ok, &all, 30000), "replayed jobs not all delivered");
    ck_assert_int_eq(pq_int("SELECT count(*) FROM dead_letters WHERE replayed_at IS NOT NULL"),
                     S6_N);
    out = hookctl(&rc, "-p '%s' dlq list --limit 1000", db);
    ck_assert_msg(hk_th_exited_ok(rc) && strstr(out, "0 dead letter(s)") == out,
                  "dlq list after the replay: %s", out);
    free(out);
    out = hookctl(&rc, "-p '%s' dlq list --replayed --limit 1000", db);
    ck_assert_msg(hk_th_exited_ok(rc), "dlq list --replayed: status %d", rc);
    ck_assert_int_eq(count_substr(out, "(replayed)"), S6_N);
    ck_assert_msg(strstr(out, "50 dead letter(s)"), "dlq list --replayed: %s", out);
    free(out);
    // A second replay finds nothing; the delivered jobs left no new dead letter.
    out = hookctl(&rc, "-p '%s' -b '%s' -t '%s' dlq replay --reason permanent", db, brokers,
                  hk_th_kafka_name("jobs"));
    ck_assert_msg(hk_th_exited_ok(rc) && strstr(out, "{\"replayed\":0,"), "second replay: %s", out);
    free(out);
    hk_sink_stats_t after;
    hk_sink_stats(sink, &after);
    ck_assert_uint_eq(after.unique_ok, S6_N);
    ck_assert_uint_eq(after.bad_signature, 0);
    ck_assert_int_eq(pq_int("SELECT count(*) FROM dead_letters"), S6_N);
    nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, nrec);
    ck_assert_uint_eq(nrec, S6_N);

    stop_hookd_expect_exit_0(0);
    printf("it_batch replay: %d dead letters (permanent, HTTP 400), replayed %d, delivered %llu "
           "with 2xx, %d rows marked replayed\n",
           S6_N, S6_N, (unsigned long long)after.unique_ok, S6_N);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    // The Postgres server is a child of this process: tests must run in it too.
    run->nofork = true;
    run->pg = &pgs;
    Suite *s = suite_create("it_batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_batch_with_permanent_failures_completes_with_exact_counts);
    tcase_add_test(tc, test_batch_aborts_past_max_failure_ratio_and_skips_the_rest);
    tcase_add_test(tc, test_batch_resumes_from_its_checkpoint_after_sigkill);
    tcase_add_test(tc, test_postgres_outage_pauses_the_batch_while_webhooks_flow);
    tcase_add_test(tc, test_four_replicas_migrate_a_fresh_database_once);
    tcase_add_test(tc, test_dead_letters_replayed_after_the_endpoint_is_fixed);
    suite_add_tcase(s, tc);
    return s;
}
