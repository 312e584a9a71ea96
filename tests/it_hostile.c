// The hostile-input corpus (tests/hostile/cases.tsv): jobs a careless or hostile
// producer could send. Every one is produced to the mock cluster; hookd must stay
// up, dead-letter each with its expected class and reason, commit past all of
// them, and still deliver the valid job produced after them.
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"
#include "model/job.h"

#define CASES_PATH        HK_SOURCE_DIR "/tests/hostile/cases.tsv"
#define MAX_CASES         1024
#define DLQ_PARTS_STR     "16"
#define MAX_JOB_BYTES_STR "900000" // limits.max_job_bytes (see the KNOWN BUG note)

typedef struct hostile {
    char *name; // also the Kafka key, so each dead letter maps back to its case
    char *cls;  // expected hookd-error-class
    char *why;  // expected substring of hookd-error
    char *value;
    size_t len;
} hostile_t;

static hostile_t g_cases[MAX_CASES];
static size_t g_cnt;
static hk_sink_t *sink;
static hk_th_proc_t kafka;
static hk_th_proc_t hookd; // stopped in teardown too: a failed assertion leaves the test early
static char brokers[512];

// Appends n bytes to a growing buffer.
static void put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
        ck_assert_ptr_nonnull(*buf);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

// Expands {{xNN}}, {{port}} and {{rep N TEXT}} (see cases.tsv).
static char *expand(const char *in, int port, size_t *out_len)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    put(&buf, &len, &cap, "", 0);
    for (const char *p = in; *p;) {
        const char *open = strstr(p, "{{");
        if (!open) {
            put(&buf, &len, &cap, p, strlen(p));
            break;
        }
        // "{{{rep": a JSON brace, then the directive.
        while (open[2] == '{')
            open++;
        put(&buf, &len, &cap, p, (size_t)(open - p));
        const char *close = strstr(open + 2, "}}");
        ck_assert_msg(close != NULL, "unclosed {{ in %s", in);
        const char *d = open + 2;
        size_t dn = (size_t)(close - d);
        char tmp[32];
        if (dn == 3 && d[0] == 'x') {
            char hex[3] = {d[1], d[2], 0};
            char byte = (char)strtol(hex, NULL, 16);
            put(&buf, &len, &cap, &byte, 1);
        } else if (dn == 4 && strncmp(d, "port", 4) == 0) {
            int n = snprintf(tmp, sizeof tmp, "%d", port);
            put(&buf, &len, &cap, tmp, (size_t)n);
        } else if (strncmp(d, "rep ", 4) == 0) {
            char *end;
            long times = strtol(d + 4, &end, 10);
            ck_assert_msg(*end == ' ' && times > 0, "bad rep in %s", in);
            const char *text = end + 1;
            size_t tn = (size_t)(close - text);
            for (long i = 0; i < times; i++) {
                for (size_t k = 0; k < tn; k++) {
                    if (text[k] == '@' && k + 1 < tn && text[k + 1] == 'i') {
                        int n = snprintf(tmp, sizeof tmp, "%ld", i);
                        put(&buf, &len, &cap, tmp, (size_t)n);
                        k++;
                    } else {
                        put(&buf, &len, &cap, &text[k], 1);
                    }
                }
            }
        } else {
            ck_abort_msg("unknown directive in %s", in);
        }
        p = close + 2;
    }
    *out_len = len;
    return buf;
}

static void load_cases(int port)
{
    FILE *f = fopen(CASES_PATH, "r");
    ck_assert_msg(f != NULL, "cannot open %s", CASES_PATH);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *save = NULL;
        char *name = strtok_r(line, "\t", &save);
        char *cls = strtok_r(NULL, "\t", &save);
        char *why = strtok_r(NULL, "\t", &save);
        char *value = strtok_r(NULL, "", &save);
        ck_assert_msg(name && cls && why && value, "malformed line in %s: %s", CASES_PATH, line);
        ck_assert_uint_lt(g_cnt, MAX_CASES);
        hostile_t *c = &g_cases[g_cnt++];
        c->name = strdup(name);
        c->cls = strdup(cls);
        c->why = strdup(why);
        c->value = expand(value, port, &c->len);
        for (size_t i = 0; i + 1 < g_cnt; i++)
            ck_assert_msg(strcmp(g_cases[i].name, name) != 0, "case %s twice", name);
    }
    free(line);
    fclose(f);
}

static void setup(void)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
    load_cases(hk_sink_port(sink));
}

static void teardown(void)
{
    for (size_t i = 0; i < g_cnt; i++) {
        free(g_cases[i].name);
        free(g_cases[i].cls);
        free(g_cases[i].why);
        free(g_cases[i].value);
    }
    g_cnt = 0;
    if (hookd.pid > 0)
        hk_th_stop(&hookd, 20000);
    hookd.pid = 0;
    if (kafka.pid > 0)
        hk_th_kafka_stop(&kafka);
    hk_sink_stop(sink);
    hk_th_release_held();
}

// The parser alone: every case the job contract itself must refuse is refused
// with its reason (fast, and names the case when the integration run would not).
START_TEST(test_parser_rejects_each_invalid_case)
{
    ck_assert_uint_ge(g_cnt, 60);
    hk_job_src_t src = {.topic = "jobs", .partition = 0, .offset = 1};
    hk_job_defaults_t defs = {
        .max_attempts = 10, .timeout_ms = 10000, .max_job_bytes = (size_t)atol(MAX_JOB_BYTES_STR)};
    size_t checked = 0;
    for (size_t i = 0; i < g_cnt; i++) {
        hostile_t *c = &g_cases[i];
        if (strcmp(c->cls, "invalid") != 0 || strstr(c->why, "Postgres"))
            continue; // judged after parsing: by hookd, not by the contract
        char err[512];
        src.key = c->name;
        src.key_len = strlen(c->name);
        hk_job_t *job = hk_job_parse(c->value, c->len, &src, &defs, err, sizeof err);
        if (job)
            hk_job_destroy(job);
        ck_assert_msg(job == NULL, "%s: accepted", c->name);
        ck_assert_msg(strstr(err, c->why) != NULL, "%s: reason \"%s\", want \"%s\"", c->name, err,
                      c->why);
        checked++;
    }
    printf("it_hostile: parser rejected %zu invalid cases with their reasons\n", checked);
}
END_TEST

static void count_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (!m->err)
        (*(size_t *)m->_private)++;
    else
        fprintf(stderr, "produce: %s\n", rd_kafka_err2str(m->err));
}

// hk_th_produce() takes NUL-terminated values; these hold NUL bytes and exceed the
// producer's default 1 MB message limit, so they are produced here with lengths.
static size_t produce_cases(void)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "message.max.bytes", "2000000", err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "10", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(conf, count_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(rk != NULL, "producer: %s", err);
    size_t acked = 0;
    for (size_t i = 0; i < g_cnt; i++) {
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC("jobs"), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY(g_cases[i].name, strlen(g_cases[i].name)),
                    RD_KAFKA_V_VALUE(g_cases[i].value, g_cases[i].len), RD_KAFKA_V_OPAQUE(&acked),
                    RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 50);
        ck_assert_msg(e == 0, "%s: produce: %s", g_cases[i].name, rd_kafka_err2str(e));
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
    rd_kafka_destroy(rk);
    return acked;
}

typedef struct want {
    size_t dlq;
} want_t;

static int dlq_done(void *arg)
{
    want_t *w = arg;
    hk_th_record_t *recs;
    size_t n = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_records_free(recs, n);
    return n >= w->dlq;
}

START_TEST(test_hostile_jobs_dead_lettered_hookd_stays_up)
{
    // 16 partitions each: librdkafka's mock cluster keeps at most 5 MB per partition
    // and drops the oldest records past that, and the "mb-" cases add up to more.
    const char *topics[] = {"jobs:16", "jobs.dlq:" DLQ_PARTS_STR, "jobs.retry:4", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
    ck_assert_uint_eq(produce_cases(), g_cnt);
    char *after = NULL;
    ck_assert(asprintf(&after, "{\"id\":\"after-hostile\",\"url\":\"http://127.0.0.1:%d/ok\"}",
                       hk_sink_port(sink)) > 0);
    hk_th_hold_mem(after);
    char *values[] = {after}, *keys[] = {"after-hostile"};
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, keys, 1), 1);

    const char *log = "it_hostile_hookd.log";
    unlink(log);
    // KNOWN BUG (reported with issue 10): hookd's dead-letter producer keeps
    // librdkafka's default message.max.bytes (1000000) while limits.max_job_bytes
    // defaults to 1048576, so a job over ~1 MB cannot be dead-lettered: it is
    // re-produced forever ("dlq_produce_failed", logged with "error":"Success"), its
    // offset is never committed and the partition's commits stall. Raising
    // rdkafka.message.max.bytes is no way out on the mock cluster (records batched
    // with a large one went missing), so until hookd sizes its producer from the
    // limit, the suite runs with a limit under the producer's: every "mb-" case is
    // 800 kB and the over-limit one 950 kB.
    // Only the sink's own address is allowed: every other loopback spelling is SSRF.
    char *env[] = {"HOOKD_DELIVERY_ALLOW_CIDRS=127.0.0.1/32", "HOOKD_RETRY_SCHEDULE=100ms",
                   "HOOKD_LIMITS_MAX_JOB_BYTES=" MAX_JOB_BYTES_STR,
                   "HOOKD_DELIVERY_CONNECT_TIMEOUT_MS=1000", NULL};
    ck_assert_int_eq(hk_th_hookd_start(&hookd, brokers, env, NULL, log), 0);

    ck_assert_msg(hk_th_wait_unique_ok(sink, 1, 120000), "the job after the hostile ones was "
                                                         "not delivered");
    want_t w = {.dlq = g_cnt};
    int all = hk_th_wait_for(dlq_done, &w, 120000);

    hk_th_record_t *recs;
    size_t nrec = hk_th_read_topic(brokers, "jobs.dlq", &recs);
    hk_th_hold(HK_TH_HELD_RECS, recs, nrec);
    size_t bad = 0;
    for (size_t i = 0; i < g_cnt; i++) {
        const hostile_t *c = &g_cases[i];
        const hk_th_record_t *rec = NULL;
        for (size_t j = 0; j < nrec; j++)
            if (recs[j].key && strcmp(recs[j].key, c->name) == 0)
                rec = &recs[j];
        const char *cls = rec ? hk_th_header(rec, "hookd-error-class") : NULL;
        const char *error = rec ? hk_th_header(rec, "hookd-error") : NULL;
        if (!rec) {
            printf("it_hostile: %s: no dead letter\n", c->name);
            bad++;
        } else if (!cls || strcmp(cls, c->cls) != 0 || !error || !strstr(error, c->why)) {
            printf("it_hostile: %s: dead-lettered as %s \"%s\", want %s \"%s\"\n", c->name,
                   cls ? cls : "(none)", error ? error : "(none)", c->cls, c->why);
            bad++;
        } else if (rec->value_len != c->len || memcmp(rec->value, c->value, c->len) != 0) {
            printf("it_hostile: %s: the dead letter does not carry the original value\n", c->name);
            bad++;
        }
    }
    ck_assert_msg(hk_th_wait(&hookd, 0) == -1, "hookd exited (see %s)", log);
    ck_assert_msg(hk_th_wait_lag_zero(brokers, "hookd", "jobs", 30000),
                  "committed offsets did not reach the end");
    printf("it_hostile: %zu hostile jobs, %zu dead letters, %zu not as expected, valid job after "
           "them delivered, lag 0\n",
           g_cnt, nrec, bad);
    ck_assert_msg(all, "only %zu of %zu dead letters arrived", nrec, g_cnt);
    ck_assert_uint_eq(bad, 0);
    ck_assert_uint_eq(nrec, g_cnt);

    int status = hk_th_stop(&hookd, 20000);
    hookd.pid = 0;
    ck_assert_msg(hk_th_exited_ok(status), "hookd did not exit 0 after SIGTERM (status %d)",
                  status);
    hk_th_kafka_stop(&kafka);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("corpus");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, test_parser_rejects_each_invalid_case);
    tcase_add_test(tc, test_hostile_jobs_dead_lettered_hookd_stays_up);
    suite_add_tcase(s, tc);
    return s;
}
