// hookctl: the operator's and producer's command line.
//
//   hookctl [-c FILE] [-b BROKERS] [-t TOPIC] produce [FILE|-]
//   hookctl [-c FILE] [-a HOST:PORT] status | breakers
//   hookctl [-c FILE] [-a HOST:PORT] endpoint enable|disable ENDPOINT
//   hookctl [-c FILE] [-a HOST:PORT] breaker reset ENDPOINT
//   hookctl [-c FILE] [-p CONNINFO] migrate [status]
//   hookctl [-c FILE] [-p CONNINFO] batch show ID [--tenant T] [--json]
//   hookctl [-c FILE] [-p CONNINFO] dlq list [--reason R] [--replayed] [--limit N] [--json]
//   hookctl [-c FILE] [-p CONNINFO] [-b BROKERS] [-t TOPIC] dlq replay --id ID | --reason R | --all
//
// Settings come from the same config file and HOOKD_* environment as hookd;
// -b, -t and -a override them. The admin commands talk HTTP to hookd's admin
// server (worker/admin.h) at admin.listen, with the token from HOOKD_ADMIN_TOKEN.
// The Postgres commands connect to postgres.url (-p overrides).
#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "queue/kconf.h"
#include "store/checkpoint.h"
#include "store/dlstore.h"
#include "store/migrate.h"
#include "store/pg.h"

extern char **environ;

typedef struct produce_stats {
    long produced;
    long acked;
    long failed;
} produce_stats_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    produce_stats_t *st = opaque;
    if (msg->err) {
        st->failed++;
        if (st->failed <= 5)
            fprintf(stderr, "hookctl: record not acknowledged: %s\n", rd_kafka_err2str(msg->err));
    } else {
        st->acked++;
    }
}

// The record key: the job's ordering_key, else its tenant, else none (a line
// that is not a JSON object is still produced: hookd dead-letters it with a reason).
static char *record_key(const char *line, size_t len)
{
    json_t *root = json_loadb(line, len, 0, NULL);
    char *key = NULL;
    if (json_is_object(root)) {
        json_t *k = json_object_get(root, "ordering_key");
        if (!json_is_string(k))
            k = json_object_get(root, "tenant");
        if (json_is_string(k))
            key = strdup(json_string_value(k));
    }
    json_decref(root);
    return key;
}

static int cmd_produce(const hk_config_t *cfg, const char *brokers, const char *topic,
                       const char *path)
{
    FILE *in = stdin;
    if (path && strcmp(path, "-") != 0) {
        in = fopen(path, "r");
        if (!in) {
            fprintf(stderr, "hookctl: cannot open %s: %m\n", path);
            return 1;
        }
    }
    static const char *const defaults[] = {"acks", "all", "linger.ms", "20", NULL};
    char err[512];
    rd_kafka_conf_t *conf = hk_kconf_new(cfg, brokers, defaults, err, sizeof(err));
    if (!conf) {
        fprintf(stderr, "hookctl: %s\n", err);
        return 1;
    }
    produce_stats_t st = {0};
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "hookctl: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char *key = record_key(line, (size_t)len);
        rd_kafka_resp_err_t e;
        do {
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                  RD_KAFKA_V_VALUE(line, (size_t)len), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 100);
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        free(key);
        if (e) {
            st.failed++;
            fprintf(stderr, "hookctl: produce: %s\n", rd_kafka_err2str(e));
            continue;
        }
        st.produced++;
        rd_kafka_poll(rk, 0);
    }
    free(line);
    if (in != stdin)
        fclose(in);
    rd_kafka_flush(rk, 60000);
    rd_kafka_destroy(rk);
    printf("{\"produced\":%ld,\"acknowledged\":%ld,\"failed\":%ld,\"topic\":\"%s\"}\n", st.produced,
           st.acked, st.failed, topic);
    return st.failed == 0 && st.acked == st.produced ? 0 : 1;
}

// ---- Postgres commands ----

static hk_pg_t *pg_open(const hk_config_t *cfg, const char *conninfo)
{
    if (!conninfo)
        conninfo = cfg->postgres_url;
    if (!conninfo[0]) {
        fprintf(stderr, "hookctl: no Postgres configured: set postgres.url (or HOOKD_POSTGRES_URL) "
                        "or pass -p CONNINFO\n");
        return NULL;
    }
    hk_pg_t *pg = hk_pg_new_config(cfg, conninfo);
    char err[512];
    if (!pg || hk_pg_ensure(pg, err, sizeof(err)) != 0) {
        fprintf(stderr, "hookctl: postgres: %s\n", pg ? err : "out of memory");
        hk_pg_destroy(pg);
        return NULL;
    }
    return pg;
}

static int cmd_migrate(hk_pg_t *pg, int argc, char **argv)
{
    char err[512];
    if (argc > 1 && strcmp(argv[1], "status") == 0) {
        if (hk_migrate_status(pg, stdout, err, sizeof(err)) != 0) {
            fprintf(stderr, "hookctl: %s\n", err);
            return 1;
        }
        return 0;
    }
    int applied = 0;
    if (hk_migrate_apply(pg, &applied, err, sizeof(err)) != 0) {
        fprintf(stderr, "hookctl: migrate: %s\n", err);
        return 1;
    }
    printf("{\"applied\":%d}\n", applied);
    return hk_migrate_status(pg, stdout, err, sizeof(err)) == 0 ? 0 : 1;
}

static const char *str_or(json_t *obj, const char *field, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, field));
    return s ? s : dflt;
}

// A numeric (or boolean: 0/1) field of a JSON object; 0 when missing.
static long long int_of(json_t *obj, const char *field)
{
    json_t *j = json_object_get(obj, field);
    return json_is_boolean(j) ? json_is_true(j) : (long long)json_number_value(j);
}

// An object's "http_status" as text: the code, or "-" when null or missing.
static const char *http_status_of(json_t *obj, char *buf, size_t size)
{
    json_t *st = json_object_get(obj, "http_status");
    snprintf(buf, size, "%lld", (long long)json_integer_value(st));
    return json_is_integer(st) ? buf : "-";
}

static int cmd_batch(hk_pg_t *pg, int argc, char **argv)
{
    // A batch is (tenant, id): the same id may exist in several tenants.
    const char *tenant = "default";
    int as_json = 0, bad = argc < 3 || strcmp(argv[1], "show") != 0;
    for (int i = 3; !bad && i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc)
            tenant = argv[++i];
        else if (strncmp(argv[i], "--tenant=", 9) == 0)
            tenant = argv[i] + 9;
        else
            bad = 1;
    }
    if (bad) {
        fprintf(stderr, "usage: hookctl batch show ID [--tenant T] [--json]\n");
        return 2;
    }
    char err[512];
    json_t *b = hk_ckpt_show(pg, argv[2], tenant, 100, err, sizeof(err));
    if (!b) {
        fprintf(stderr, "hookctl: %s\n", err);
        return 1;
    }
    if (as_json) {
        char *s = json_dumps(b, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        puts(s);
        free(s);
        json_decref(b);
        return 0;
    }
    printf("batch %s (tenant %s): %s\n", argv[2], str_or(b, "tenant", "?"),
           str_or(b, "status", "?"));
    printf("  items %lld: succeeded %lld, failed %lld, skipped %lld, pending %lld (%.1f%% done)\n",
           int_of(b, "total"), int_of(b, "succeeded"), int_of(b, "failed"), int_of(b, "skipped"),
           int_of(b, "pending"), json_number_value(json_object_get(b, "percent")));
    printf("  cursor %lld, created %s, last update %s\n", int_of(b, "cursor"),
           str_or(b, "created_at", "?"), str_or(b, "updated_at", "?"));
    json_t *failed = json_object_get(b, "failed_items");
    if (json_array_size(failed)) {
        printf("  failed items%s:\n",
               json_is_true(json_object_get(b, "failed_items_truncated")) ? " (first 100)" : "");
        size_t i;
        json_t *it;
        json_array_foreach(failed, i, it)
        {
            char status[16];
            printf("    #%-6lld attempts %-3lld HTTP %-4s %s\n", int_of(it, "index"),
                   int_of(it, "attempts"), http_status_of(it, status, sizeof(status)),
                   str_or(it, "error", ""));
        }
    }
    json_decref(b);
    return 0;
}

// Replays produce through one producer, waiting for each record's acknowledgement
// (hk_dls_replay marks a row replayed only once its record is durable).
typedef struct replayer {
    rd_kafka_t *rk;
    const char *topic;
    produce_stats_t st;
} replayer_t;

static int replay_one(const void *key, size_t key_len, const void *value, size_t value_len,
                      void *arg)
{
    replayer_t *r = arg;
    long failed = r->st.failed, acked = r->st.acked;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        r->rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_END);
    if (e) {
        fprintf(stderr, "hookctl: produce: %s\n", rd_kafka_err2str(e));
        return -1;
    }
    r->st.produced++;
    rd_kafka_flush(r->rk, 30000);
    return r->st.acked == acked + 1 && r->st.failed == failed ? 0 : -1;
}

static int cmd_dlq(const hk_config_t *cfg, hk_pg_t *pg, const char *brokers, const char *topic,
                   int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    const char *reason = NULL;
    long long id = 0, limit = 50;
    int replayed = 0, all = 0, as_json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            reason = argv[++i];
        else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
            id = atoll(argv[++i]);
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = atoll(argv[++i]);
        else if (strcmp(argv[i], "--replayed") == 0)
            replayed = 1;
        else if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else {
            fprintf(stderr, "hookctl: dlq: unknown argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    char err[512];
    if (strcmp(sub, "list") == 0) {
        json_t *rows =
            hk_dls_list(pg, reason, replayed, limit > 0 ? (size_t)limit : 50, err, sizeof(err));
        if (!rows) {
            fprintf(stderr, "hookctl: %s\n", err);
            return 1;
        }
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r)
        {
            if (as_json) {
                char *s = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
                puts(s);
                free(s);
                continue;
            }
            char status[16];
            printf("%-8lld %-24s %-10s %-10s HTTP %-4s attempts %-3lld %s%s\n", int_of(r, "id"),
                   str_or(r, "created_at", ""), str_or(r, "error_class", ""),
                   str_or(r, "tenant", ""), http_status_of(r, status, sizeof(status)),
                   int_of(r, "attempts"), str_or(r, "job_id", ""),
                   json_is_null(json_object_get(r, "replayed_at")) ? "" : " (replayed)");
            printf("         %s\n", str_or(r, "error", ""));
        }
        if (!as_json)
            printf("%zu dead letter(s)\n", json_array_size(rows));
        json_decref(rows);
        return 0;
    }
    if (strcmp(sub, "replay") != 0) {
        fprintf(stderr, "usage: hookctl dlq list|replay ...\n");
        return 2;
    }
    if (!id && !reason && !all) {
        fprintf(stderr, "hookctl: dlq replay needs --id ID, --reason R or --all\n");
        return 2;
    }
    if (strcmp(brokers, "mock") == 0) {
        fprintf(stderr, "hookctl: kafka.brokers is \"mock\": pass the cluster's address with -b\n");
        return 1;
    }
    static const char *const defaults[] = {"acks", "all", "linger.ms", "0", NULL};
    rd_kafka_conf_t *conf = hk_kconf_new(cfg, brokers, defaults, err, sizeof(err));
    if (!conf) {
        fprintf(stderr, "hookctl: %s\n", err);
        return 1;
    }
    replayer_t rp = {.topic = topic};
    rd_kafka_conf_set_opaque(conf, &rp.st);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    if (!(rp.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
        fprintf(stderr, "hookctl: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    long n = hk_dls_replay(pg, id > 0 ? id : -1, reason, replay_one, &rp, err, sizeof(err));
    rd_kafka_destroy(rp.rk);
    if (n < 0) {
        fprintf(stderr, "hookctl: dlq replay: %s\n", err);
        return 1;
    }
    printf("{\"replayed\":%ld,\"topic\":\"%s\"}\n", n, topic);
    return 0;
}

static int is_pg_command(const char *cmd)
{
    return strcmp(cmd, "migrate") == 0 || strcmp(cmd, "batch") == 0 || strcmp(cmd, "dlq") == 0;
}

// ---- admin commands: HTTP to hookd's admin server ----

typedef struct admin_client {
    char base[300];    // "http://host:port"
    const char *token; // HOOKD_ADMIN_TOKEN, NULL when unset or empty
} admin_client_t;

typedef struct admin_reply {
    long status;
    char *body; // NUL-terminated, never NULL after admin_call() returns 0
    size_t len;
} admin_reply_t;

// "0.0.0.0:9464" and "[::]:9464" listen everywhere: connect to loopback.
static int admin_client_init(admin_client_t *ac, const char *listen)
{
    if (!listen || !listen[0]) {
        fprintf(stderr, "hookctl: admin.listen is empty (the admin server is off); "
                        "pass -a HOST:PORT\n");
        return -1;
    }
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen) {
        fprintf(stderr, "hookctl: admin address \"%s\" must be host:port\n", listen);
        return -1;
    }
    size_t hlen = (size_t)(colon - listen);
    const char *host = listen;
    if (hlen == 7 && strncmp(listen, "0.0.0.0", 7) == 0) {
        host = "127.0.0.1";
        hlen = 9;
    } else if (hlen == 4 && strncmp(listen, "[::]", 4) == 0) {
        host = "[::1]";
        hlen = 5;
    }
    snprintf(ac->base, sizeof(ac->base), "http://%.*s%s", (int)hlen, host, colon);
    const char *tok = getenv("HOOKD_ADMIN_TOKEN");
    ac->token = tok && tok[0] ? tok : NULL;
    return 0;
}

static size_t admin_on_body(char *p, size_t size, size_t n, void *arg)
{
    admin_reply_t *r = arg;
    size_t len = size * n;
    if (r->len + len > (8u << 20))
        return 0; // no admin answer is this big
    char *b = realloc(r->body, r->len + len + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, len);
    r->body = b;
    r->len += len;
    b[r->len] = '\0';
    return len;
}

// `method` "GET" or "POST". 0 with r filled in (any HTTP status), -1 when no
// answer came (the reason is printed).
static int admin_call(const admin_client_t *ac, const char *method, const char *path,
                      admin_reply_t *r)
{
    *r = (admin_reply_t){0};
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", ac->base, path);
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "hookctl: out of memory\n");
        return -1;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    char auth[1024] = "";
    if (ac->token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ac->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, admin_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "hookctl/" HOOKD_VERSION);
    if (hdrs)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (auth[0])
        memset(auth, 0, sizeof(auth));
    if (rc != CURLE_OK) {
        fprintf(stderr, "hookctl: %s %s: %s\n", method, url,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
        free(r->body);
        r->body = NULL;
        return -1;
    }
    if (!r->body)
        r->body = calloc(1, 1);
    return r->body ? 0 : -1;
}

static int is_2xx(long status)
{
    return status >= 200 && status < 300;
}

// Prints the server's {"error":...} (or its raw body) for a non-2xx answer.
static void admin_print_error(const char *what, const admin_reply_t *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    const char *msg = json_string_value(json_object_get(j, "error"));
    fprintf(stderr, "hookctl: %s: HTTP %ld: %s\n", what, r->status,
            msg ? msg : (r->body[0] ? r->body : "(no body)"));
    json_decref(j);
}

static int cmd_status(const admin_client_t *ac)
{
    static const char *const probes[] = {"/healthz", "/readyz"};
    int rc = 0;
    for (size_t i = 0; i < 2; i++) {
        admin_reply_t r;
        if (admin_call(ac, "GET", probes[i], &r) != 0)
            return 1;
        size_t n = r.len;
        while (n > 0 && (r.body[n - 1] == '\n' || r.body[n - 1] == '\r'))
            r.body[--n] = '\0';
        printf("%-8s %ld %s\n", probes[i] + 1, r.status, r.body);
        if (!is_2xx(r.status))
            rc = 1;
        free(r.body);
    }
    return rc;
}

static int lane_cmp(const void *a, const void *b)
{
    const char *ea = json_string_value(json_object_get(*(json_t *const *)a, "endpoint"));
    const char *eb = json_string_value(json_object_get(*(json_t *const *)b, "endpoint"));
    return strcmp(ea ? ea : "", eb ? eb : "");
}

static int cmd_breakers(const admin_client_t *ac)
{
    admin_reply_t r;
    if (admin_call(ac, "GET", "/v1/lanes", &r) != 0)
        return 1;
    if (!is_2xx(r.status)) {
        admin_print_error("breakers", &r);
        free(r.body);
        return 1;
    }
    json_error_t jerr;
    json_t *root = json_loads(r.body, 0, &jerr);
    free(r.body);
    json_t *lanes = json_object_get(root, "lanes");
    if (!json_is_array(lanes)) {
        fprintf(stderr, "hookctl: breakers: the answer has no \"lanes\" array\n");
        json_decref(root);
        return 1;
    }
    size_t cnt = json_array_size(lanes);
    json_t **rows = calloc(cnt + 1, sizeof(*rows));
    if (!rows) {
        json_decref(root);
        return 1;
    }
    int width = (int)strlen("ENDPOINT");
    for (size_t i = 0; i < cnt; i++) {
        rows[i] = json_array_get(lanes, i);
        const char *e = json_string_value(json_object_get(rows[i], "endpoint"));
        if (e && (int)strlen(e) > width)
            width = (int)strlen(e);
    }
    qsort(rows, cnt, sizeof(*rows), lane_cmp);
    printf("%-*s  %-9s  %8s  %9s  %5s  %6s  %10s  %s\n", width, "ENDPOINT", "STATE", "FAILURE%",
           "IN_FLIGHT", "LIMIT", "QUEUED", "NEXT_PROBE", "DISABLED");
    for (size_t i = 0; i < cnt; i++) {
        json_t *l = rows[i];
        const char *e = json_string_value(json_object_get(l, "endpoint"));
        const char *state = json_string_value(json_object_get(l, "state"));
        // The time until an open breaker lets a probe through ("open_for_ms" in
        // older builds).
        json_t *np = json_object_get(l, "next_probe_in_ms");
        if (!np)
            np = json_object_get(l, "open_for_ms");
        long long next_ms = json_is_number(np) ? (long long)json_number_value(np) : 0;
        char next[32] = "-";
        if (next_ms >= 60000)
            snprintf(next, sizeof(next), "%lldm%02llds", next_ms / 60000, next_ms % 60000 / 1000);
        else if (next_ms > 0)
            snprintf(next, sizeof(next), "%.1fs", (double)next_ms / 1000.0);
        printf("%-*s  %-9s  %8.1f  %9lld  %5lld  %6lld  %10s  %s\n", width, e ? e : "?",
               state ? state : "?", json_number_value(json_object_get(l, "failure_rate")) * 100.0,
               int_of(l, "in_flight"), int_of(l, "limit"), int_of(l, "queued"), next,
               int_of(l, "disabled") ? "yes" : "no");
    }
    free(rows);
    json_decref(root);
    return 0;
}

// POST /v1/<collection>/<endpoint, URL-encoded>/<action>; prints the answer.
static int admin_action(const admin_client_t *ac, const char *collection, const char *endpoint,
                        const char *action, const char *what)
{
    CURL *c = curl_easy_init();
    char *esc = c ? curl_easy_escape(c, endpoint, 0) : NULL;
    curl_easy_cleanup(c);
    if (!esc) {
        fprintf(stderr, "hookctl: out of memory\n");
        return 1;
    }
    char path[1536];
    int n = snprintf(path, sizeof(path), "/v1/%s/%s/%s", collection, esc, action);
    curl_free(esc);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fprintf(stderr, "hookctl: endpoint too long\n");
        return 1;
    }
    admin_reply_t r;
    if (admin_call(ac, "POST", path, &r) != 0)
        return 1;
    int rc = 0;
    if (is_2xx(r.status)) {
        printf("%s\n", r.body);
    } else {
        admin_print_error(what, &r);
        rc = 1;
    }
    free(r.body);
    return rc;
}

// Runs an admin command (argv[0] is its name). 2 on a usage error.
static int cmd_admin(const hk_config_t *cfg, const char *listen, int argc, char **argv)
{
    const char *cmd = argv[0];
    const char *sub = argc > 1 ? argv[1] : NULL;
    const char *arg = argc > 2 ? argv[2] : NULL;
    const char *collection = NULL, *action = NULL;
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "breakers") == 0) {
        if (argc != 1) {
            fprintf(stderr, "hookctl: %s takes no arguments\n", cmd);
            return 2;
        }
    } else if (strcmp(cmd, "endpoint") == 0) {
        if (argc != 3 || (strcmp(sub, "enable") != 0 && strcmp(sub, "disable") != 0)) {
            fprintf(stderr, "hookctl: usage: endpoint enable|disable ENDPOINT-OR-URL\n");
            return 2;
        }
        collection = "endpoints";
        action = sub;
    } else {
        if (argc != 3 || strcmp(sub, "reset") != 0) {
            fprintf(stderr, "hookctl: usage: breaker reset ENDPOINT-OR-URL\n");
            return 2;
        }
        collection = "breakers";
        action = sub;
    }
    admin_client_t ac;
    if (admin_client_init(&ac, listen ? listen : cfg->admin_listen) != 0)
        return 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "hookctl: curl_global_init failed\n");
        return 1;
    }
    char what[64];
    snprintf(what, sizeof(what), "%s %s", cmd, action ? action : "");
    int rc;
    if (strcmp(cmd, "status") == 0)
        rc = cmd_status(&ac);
    else if (strcmp(cmd, "breakers") == 0)
        rc = cmd_breakers(&ac);
    else
        rc = admin_action(&ac, collection, arg, action, what);
    curl_global_cleanup();
    return rc;
}

static int is_admin_command(const char *cmd)
{
    return strcmp(cmd, "status") == 0 || strcmp(cmd, "breakers") == 0 ||
           strcmp(cmd, "endpoint") == 0 || strcmp(cmd, "breaker") == 0;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: hookctl [-c FILE] [-b BROKERS] [-t TOPIC] [-a HOST:PORT] [-p CONNINFO] COMMAND\n"
        "commands:\n"
        "  produce [FILE|-]   produce each line of FILE (JSONL; default stdin) to the jobs\n"
        "                     topic, key = ordering_key or tenant; prints how many were\n"
        "                     acknowledged; exit 0 only if all were\n"
        "  status             hookd's /healthz and /readyz answers\n"
        "  breakers           every endpoint's lane: breaker state, failure rate,\n"
        "                     concurrency, queue, time to the next probe, disabled\n"
        "  endpoint enable|disable ENDPOINT\n"
        "                     stop or resume deliveries to ENDPOINT (scheme://host:port or\n"
        "                     any URL on it); disabled endpoints' jobs are dead-lettered\n"
        "  breaker reset ENDPOINT\n"
        "                     close ENDPOINT's circuit breaker and forget its failures\n"
        "  migrate [status]   apply hookd's schema migrations (or list them)\n"
        "  batch show ID [--tenant T] [--json]\n"
        "                     a batch's status, counts, progress and failed items\n"
        "                     (tenant T, default \"default\")\n"
        "  dlq list [--reason R] [--replayed] [--limit N] [--json]\n"
        "                     dead letters, newest first (R: error class or error text)\n"
        "  dlq replay --id ID | --reason R | --all\n"
        "                     produce dead letters again to the jobs topic (attempts start\n"
        "                     over) and mark them replayed\n"
        "The Postgres commands use postgres.url (-p CONNINFO overrides).\n"
        "The admin commands call hookd's admin server at admin.listen (-a overrides),\n"
        "sending HOOKD_ADMIN_TOKEN as a bearer token when set; exit 0 on a 2xx answer,\n"
        "1 otherwise.\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL, *brokers = NULL, *topic = NULL, *admin = NULL, *conninfo = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+c:b:t:a:p:h")) != -1) {
        switch (opt) {
        case 'p':
            conninfo = optarg;
            break;
        case 'c':
            path = optarg;
            break;
        case 'b':
            brokers = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'a':
            admin = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    char err[512];
    hk_config_t *cfg = hk_config_load(path, environ, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "hookctl: %s\n", err);
        return 2;
    }
    if (!brokers)
        brokers = cfg->kafka_brokers;
    if (!topic)
        topic = cfg->kafka_topic;
    int rc = 2;
    if (is_admin_command(argv[optind])) {
        rc = cmd_admin(cfg, admin, argc - optind, argv + optind);
    } else if (is_pg_command(argv[optind])) {
        hk_pg_t *pg = pg_open(cfg, conninfo);
        rc = 1;
        if (pg && strcmp(argv[optind], "migrate") == 0)
            rc = cmd_migrate(pg, argc - optind, argv + optind);
        else if (pg && strcmp(argv[optind], "batch") == 0)
            rc = cmd_batch(pg, argc - optind, argv + optind);
        else if (pg)
            rc = cmd_dlq(cfg, pg, brokers, topic, argc - optind, argv + optind);
        hk_pg_destroy(pg);
    } else if (strcmp(brokers, "mock") == 0) {
        fprintf(stderr, "hookctl: kafka.brokers is \"mock\": pass the mock cluster's address "
                        "with -b (hookd logs it as event \"mock_cluster\")\n");
    } else if (strcmp(argv[optind], "produce") == 0) {
        rc = cmd_produce(cfg, brokers, topic, optind + 1 < argc ? argv[optind + 1] : NULL);
    } else {
        fprintf(stderr, "hookctl: unknown command \"%s\"\n", argv[optind]);
        usage(stderr);
    }
    hk_config_destroy(cfg);
    return rc;
}
