// check_metrics: hk_prom_render() without HTTP. A strict parser of text
// format 0.0.4 reads every exposition these tests make; when promtool is on PATH
// (scripts/deps.sh installs Debian's prometheus package, which ships it) the
// exposition must also pass `promtool check metrics`, Prometheus' own parser
// and linter.
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/metrics.h"
#include "retry/classify.h"
#include "worker/prom.h"

#include "tests/support/ck_main.h"

// ---- a strict text-format parser ----

#define MAX_FAMILIES 128
#define MAX_SAMPLES  1024
#define MAX_LABELS   4

typedef struct label {
    char name[64];
    char value[512]; // unescaped
} label_t;

typedef struct sample {
    char name[128]; // the sample's own name (with _bucket/_sum/_count)
    int family;     // index into exposition_t.fam
    label_t labels[MAX_LABELS];
    int labels_cnt;
    double value;
} sample_t;

typedef struct family {
    char name[128];
    char type[16];
    int has_help, samples, closed;
} family_t;

typedef struct exposition {
    family_t fam[MAX_FAMILIES];
    int fam_cnt;
    sample_t smp[MAX_SAMPLES];
    int smp_cnt;
} exposition_t;

static int find_family(const exposition_t *e, const char *name)
{
    for (int i = 0; i < e->fam_cnt; i++)
        if (strcmp(e->fam[i].name, name) == 0)
            return i;
    return -1;
}

static int name_char(int c, int first)
{
    return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// The family a sample name belongs to: itself, or for a histogram's
// <name>_bucket / _sum / _count the histogram. -1 if none.
static int family_of_sample(const exposition_t *e, const char *name)
{
    int f = find_family(e, name);
    if (f >= 0)
        return strcmp(e->fam[f].type, "histogram") == 0 ? -1 : f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        if (!has_suffix(name, suffixes[i]))
            continue;
        char base[128];
        snprintf(base, sizeof(base), "%.*s", (int)(strlen(name) - strlen(suffixes[i])), name);
        f = find_family(e, base);
        if (f >= 0 && strcmp(e->fam[f].type, "histogram") == 0)
            return f;
    }
    return -1;
}

static double parse_value(const char *s, const char *line)
{
    if (strcmp(s, "+Inf") == 0)
        return INFINITY;
    if (strcmp(s, "-Inf") == 0)
        return -INFINITY;
    if (strcmp(s, "NaN") == 0)
        return NAN;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    ck_assert_msg(end != s && *end == '\0' && errno == 0, "bad value in: %s", line);
    ck_assert_msg(!isalpha((unsigned char)s[strlen(s) - 1]), "bad value in: %s", line);
    return v;
}

// Parses one sample line into e->smp (label values unescaped).
static void parse_sample(exposition_t *e, const char *line)
{
    ck_assert_int_lt(e->smp_cnt, MAX_SAMPLES);
    sample_t *s = &e->smp[e->smp_cnt];
    memset(s, 0, sizeof(*s));
    const char *q = line;
    ck_assert_msg(name_char((unsigned char)*q, 1), "bad metric name: %s", line);
    while (name_char((unsigned char)*q, 0))
        q++;
    ck_assert_msg((size_t)(q - line) < sizeof(s->name), "name too long: %s", line);
    memcpy(s->name, line, (size_t)(q - line));
    if (*q == '{') {
        q++;
        while (*q != '}') {
            ck_assert_msg(s->labels_cnt < MAX_LABELS, "too many labels: %s", line);
            label_t *l = &s->labels[s->labels_cnt++];
            const char *n0 = q;
            ck_assert_msg(name_char((unsigned char)*q, 1) && *q != ':', "bad label name: %s", line);
            while (name_char((unsigned char)*q, 0) && *q != ':')
                q++;
            snprintf(l->name, sizeof(l->name), "%.*s", (int)(q - n0), n0);
            ck_assert_msg(strncmp(l->name, "__", 2) != 0, "reserved label name: %s", line);
            for (int k = 0; k < s->labels_cnt - 1; k++)
                ck_assert_msg(strcmp(s->labels[k].name, l->name) != 0, "label twice: %s", line);
            ck_assert_msg(q[0] == '=' && q[1] == '"', "bad label: %s", line);
            q += 2;
            size_t n = 0;
            while (*q != '"') {
                ck_assert_msg(*q != '\0', "unterminated label value: %s", line);
                char c = *q;
                if (c == '\\') {
                    ck_assert_msg(q[1] == '\\' || q[1] == '"' || q[1] == 'n',
                                  "bad escape \\%c in: %s", q[1], line);
                    c = q[1] == 'n' ? '\n' : q[1];
                    q++;
                }
                ck_assert_msg(n + 1 < sizeof(l->value), "label value too long: %s", line);
                l->value[n++] = c;
                q++;
            }
            l->value[n] = '\0';
            q++;
            if (*q == ',')
                q++;
            else
                ck_assert_msg(*q == '}', "bad label list: %s", line);
        }
        q++;
    }
    ck_assert_msg(*q == ' ' && q[1] != ' ', "want one space before the value: %s", line);
    q++;
    ck_assert_msg(strchr(q, ' ') == NULL, "a timestamp or trailing text: %s", line);
    s->value = parse_value(q, line);

    s->family = family_of_sample(e, s->name);
    ck_assert_msg(s->family >= 0, "%s: sample without a preceding TYPE", s->name);
    family_t *f = &e->fam[s->family];
    ck_assert_msg(f->has_help, "%s: sample without a preceding HELP", s->name);
    ck_assert_msg(!f->closed, "%s: the family's samples are not together", s->name);
    for (int i = 0; i < e->fam_cnt; i++)
        if (i != s->family && e->fam[i].samples > 0)
            e->fam[i].closed = 1;
    if (strcmp(f->type, "histogram") == 0 && has_suffix(s->name, "_bucket")) {
        int has_le = 0;
        for (int k = 0; k < s->labels_cnt; k++)
            has_le |= strcmp(s->labels[k].name, "le") == 0;
        ck_assert_msg(has_le, "bucket without le: %s", line);
    }
    // No two samples of one series.
    for (int i = 0; i < e->smp_cnt; i++) {
        const sample_t *o = &e->smp[i];
        if (strcmp(o->name, s->name) != 0 || o->labels_cnt != s->labels_cnt)
            continue;
        int same = 1;
        for (int k = 0; k < s->labels_cnt && same; k++)
            same = strcmp(o->labels[k].name, s->labels[k].name) == 0 &&
                   strcmp(o->labels[k].value, s->labels[k].value) == 0;
        ck_assert_msg(!same, "series twice: %s", line);
    }
    f->samples++;
    e->smp_cnt++;
}

// Parses `text` strictly: only HELP and TYPE comments, each once per family and
// before its samples; every sample after its family's TYPE and HELP, a family's
// samples together; counters named *_total and nothing else named so; names
// prefixed hookd_ (or process_, the standard process metrics); label values with
// only \\ \" \n escapes; numbers as values; no blank lines; ends with a newline.
static void parse(const char *text, exposition_t *e)
{
    memset(e, 0, sizeof(*e));
    size_t tlen = strlen(text);
    ck_assert_msg(tlen > 0 && text[tlen - 1] == '\n', "the exposition must end with a newline");
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        char line[2048];
        ck_assert_msg((size_t)(eol - p) < sizeof(line), "line too long");
        memcpy(line, p, (size_t)(eol - p));
        line[eol - p] = '\0';
        p = eol + 1;
        ck_assert_msg(line[0] != '\0', "blank line");
        if (line[0] != '#') {
            parse_sample(e, line);
            continue;
        }
        int is_help = strncmp(line, "# HELP ", 7) == 0, is_type = strncmp(line, "# TYPE ", 7) == 0;
        ck_assert_msg(is_help || is_type, "a comment that is neither HELP nor TYPE: %s", line);
        const char *name = line + 7, *sp = strchr(name, ' ');
        ck_assert_msg(sp != NULL && sp[1] != '\0', "%s: empty", line);
        char fname[128];
        snprintf(fname, sizeof(fname), "%.*s", (int)(sp - name), name);
        for (const char *c = fname; *c; c++)
            ck_assert_msg(name_char((unsigned char)*c, c == fname), "bad family name: %s", line);
        ck_assert_msg(strncmp(fname, "hookd_", 6) == 0 || strncmp(fname, "process_", 8) == 0,
                      "%s: neither hookd_ nor process_", fname);
        int fi = find_family(e, fname);
        if (fi < 0) {
            ck_assert_int_lt(e->fam_cnt, MAX_FAMILIES);
            fi = e->fam_cnt++;
            snprintf(e->fam[fi].name, sizeof(e->fam[fi].name), "%s", fname);
        }
        family_t *f = &e->fam[fi];
        ck_assert_msg(f->samples == 0 && !f->closed, "%s: HELP/TYPE after its samples", fname);
        if (is_help) {
            ck_assert_msg(!f->has_help, "%s: two HELP lines", fname);
            f->has_help = 1;
            // HELP text: only \\ and \n escapes.
            for (const char *c = sp + 1; *c; c++)
                if (*c == '\\') {
                    ck_assert_msg(c[1] == '\\' || c[1] == 'n', "bad HELP escape: %s", line);
                    c++;
                }
            continue;
        }
        ck_assert_msg(f->type[0] == '\0', "%s: two TYPE lines", fname);
        const char *type = sp + 1;
        ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                          strcmp(type, "histogram") == 0,
                      "%s: unexpected type %s", fname, type);
        snprintf(f->type, sizeof(f->type), "%s", type);
        if (strcmp(type, "counter") == 0)
            ck_assert_msg(has_suffix(fname, "_total"), "counter %s: not *_total", fname);
        else
            ck_assert_msg(!has_suffix(fname, "_total"), "%s %s: named *_total", type, fname);
    }
    for (int i = 0; i < e->fam_cnt; i++)
        ck_assert_msg(e->fam[i].has_help && e->fam[i].type[0], "%s: HELP or TYPE missing",
                      e->fam[i].name);
}

static const char *label_of(const sample_t *s, const char *name)
{
    for (int k = 0; k < s->labels_cnt; k++)
        if (strcmp(s->labels[k].name, name) == 0)
            return s->labels[k].value;
    return NULL;
}

// The value of sample `name` whose label `label` is `value` (label NULL: the
// sample without labels). Fails the test when absent.
static double value_of(const exposition_t *e, const char *name, const char *label,
                       const char *value)
{
    for (int i = 0; i < e->smp_cnt; i++) {
        const sample_t *s = &e->smp[i];
        if (strcmp(s->name, name) != 0)
            continue;
        if (!label ? s->labels_cnt == 0
                   : label_of(s, label) && strcmp(label_of(s, label), value) == 0)
            return s->value;
    }
    ck_abort_msg("no sample %s{%s=\"%s\"}", name, label ? label : "", value ? value : "");
    return NAN;
}

static int has_sample(const exposition_t *e, const char *name, const char *label, const char *value)
{
    for (int i = 0; i < e->smp_cnt; i++) {
        const sample_t *s = &e->smp[i];
        if (strcmp(s->name, name) == 0 && label_of(s, label) &&
            strcmp(label_of(s, label), value) == 0)
            return 1;
    }
    return 0;
}

static const family_t *family(const exposition_t *e, const char *name)
{
    int f = find_family(e, name);
    ck_assert_msg(f >= 0, "no family %s", name);
    return &e->fam[f];
}

// ---- helpers ----

static exposition_t expo; // large: one static instance

static char *render(json_t *lanes)
{
    size_t len = 0;
    char *text = hk_prom_render(lanes, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

static json_t *lane(const char *endpoint, const char *state, int trips, int in_flight, int limit)
{
    return json_pack("{s:s,s:s,s:f,s:i,s:i,s:i,s:i,s:i,s:i,s:b,s:[],s:i,s:i}", "endpoint", endpoint,
                     "state", state, "failure_rate", 0.0, "calls", 0, "trips", trips,
                     "next_probe_in_ms", 0, "in_flight", in_flight, "limit", limit, "queued", 3,
                     "disabled", 0, "disabled_urls", "delivered", 0, "failed", 0);
}

static json_t *sample_lanes(void)
{
    json_t *lanes = json_array();
    json_array_append_new(lanes, lane("http://closed.example:80", "closed", 0, 1, 32));
    json_array_append_new(lanes, lane("http://half.example:80", "half_open", 2, 3, 12));
    json_array_append_new(lanes, lane("https://open.example:443", "open", 5, 0, 7));
    return lanes;
}

// ---- tests ----

START_TEST(test_exposition_parses_strictly_with_every_family)
{
    json_t *lanes = sample_lanes();
    char *text = render(lanes);
    json_decref(lanes);
    parse(text, &expo);

    static const struct {
        const char *name, *type;
    } want[] = {
        {"hookd_build_info", "gauge"},
        {"process_start_time_seconds", "gauge"},
        {"hookd_jobs_consumed_total", "counter"},
        {"hookd_jobs_invalid_total", "counter"},
        {"hookd_consumer_lag", "gauge"},
        {"hookd_inflight_jobs", "gauge"},
        {"hookd_inflight_bytes", "gauge"},
        {"hookd_intake_paused", "gauge"},
        {"hookd_paused_partitions", "gauge"},
        {"hookd_offset_commits_total", "counter"},
        {"hookd_delivery_attempts_total", "counter"},
        {"hookd_deliveries_total", "counter"},
        {"hookd_delivery_duration_seconds", "histogram"},
        {"hookd_jobs_delivered_total", "counter"},
        {"hookd_jobs_dead_lettered_total", "counter"},
        {"hookd_retries_total", "counter"},
        {"hookd_deferred_open_breaker_total", "counter"},
        {"hookd_rate_limited_total", "counter"},
        {"hookd_duplicates_suppressed_total", "counter"},
        {"hookd_batches_started_total", "counter"},
        {"hookd_batches_finished_total", "counter"},
        {"hookd_batches_active", "gauge"},
        {"hookd_batch_items_total", "counter"},
        {"hookd_batch_checkpoints_total", "counter"},
        {"hookd_postgres_configured", "gauge"},
        {"hookd_postgres_up", "gauge"},
        {"hookd_postgres_errors_total", "counter"},
        {"hookd_redis_configured", "gauge"},
        {"hookd_redis_up", "gauge"},
        {"hookd_redis_errors_total", "counter"},
        {"hookd_breaker_state", "gauge"},
        {"hookd_breaker_open", "gauge"},
        {"hookd_breaker_trips_total", "counter"},
        {"hookd_lane_inflight", "gauge"},
        {"hookd_lane_limit", "gauge"},
        {"hookd_lane_queued", "gauge"},
        {"hookd_endpoint_disabled", "gauge"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const family_t *f = family(&expo, want[i].name);
        ck_assert_msg(strcmp(f->type, want[i].type) == 0, "%s: TYPE %s", f->name, f->type);
        ck_assert_msg(f->samples > 0, "%s: no samples", f->name);
    }
    ck_assert_double_eq(value_of(&expo, "hookd_build_info", "version", HOOKD_VERSION), 1);
    double start = value_of(&expo, "process_start_time_seconds", NULL, NULL);
    ck_assert_msg(start > 1.6e9 && start <= (double)time(NULL) + 1, "start time %f", start);

    // Every label of a fixed family is there even at zero.
    const char *via[] = {"memory", "topic"};
    for (int i = 0; i < 2; i++)
        ck_assert(has_sample(&expo, "hookd_retries_total", "via", via[i]));
    const char *status[] = {"succeeded", "failed", "skipped", "resumed"};
    for (int i = 0; i < 4; i++)
        ck_assert(has_sample(&expo, "hookd_batch_items_total", "status", status[i]));
    for (int c = 0; c < HK_OUTCOME__CNT; c++)
        ck_assert_int_eq(has_sample(&expo, "hookd_jobs_dead_lettered_total", "class",
                                    hk_outcome_name((hk_outcome_t)c)),
                         c != HK_OUTCOME_DELIVERED);
    const char *attempt_outcomes[] = {"delivered", "retryable", "permanent", "gone", "blocked"};
    for (int i = 0; i < 5; i++)
        ck_assert(has_sample(&expo, "hookd_deliveries_total", "outcome", attempt_outcomes[i]));
    free(text);
}
END_TEST

START_TEST(test_per_endpoint_families_follow_the_lanes)
{
    json_t *lanes = sample_lanes();
    char *text = render(lanes);
    json_decref(lanes);
    parse(text, &expo);

    // state: 0 closed, 1 half_open, 2 open; open: one-hot for open.
    ck_assert_double_eq(
        value_of(&expo, "hookd_breaker_state", "endpoint", "http://closed.example:80"), 0);
    ck_assert_double_eq(
        value_of(&expo, "hookd_breaker_state", "endpoint", "http://half.example:80"), 1);
    ck_assert_double_eq(
        value_of(&expo, "hookd_breaker_state", "endpoint", "https://open.example:443"), 2);
    ck_assert_double_eq(
        value_of(&expo, "hookd_breaker_open", "endpoint", "http://closed.example:80"), 0);
    ck_assert_double_eq(value_of(&expo, "hookd_breaker_open", "endpoint", "http://half.example:80"),
                        0);
    ck_assert_double_eq(
        value_of(&expo, "hookd_breaker_open", "endpoint", "https://open.example:443"), 1);
    ck_assert_double_eq(
        value_of(&expo, "hookd_breaker_trips_total", "endpoint", "https://open.example:443"), 5);
    ck_assert_double_eq(value_of(&expo, "hookd_lane_limit", "endpoint", "http://half.example:80"),
                        12);
    ck_assert_double_eq(
        value_of(&expo, "hookd_lane_inflight", "endpoint", "http://half.example:80"), 3);
    ck_assert_double_eq(
        value_of(&expo, "hookd_lane_queued", "endpoint", "http://closed.example:80"), 3);
    ck_assert_int_eq(family(&expo, "hookd_breaker_state")->samples, 3);
    free(text);

    // No lanes (NULL or empty): the families are still declared, without samples.
    text = render(NULL);
    parse(text, &expo);
    const family_t *f = family(&expo, "hookd_lane_limit");
    ck_assert(f->has_help && strcmp(f->type, "gauge") == 0 && f->samples == 0);
    free(text);
}
END_TEST

START_TEST(test_label_values_are_escaped)
{
    const char *nasty = "http://a\"b\\c\nd:80";
    json_t *lanes = json_array();
    json_array_append_new(lanes, lane(nasty, "open", 1, 0, 1));
    char *text = render(lanes);
    json_decref(lanes);
    ck_assert_ptr_nonnull(strstr(text, "{endpoint=\"http://a\\\"b\\\\c\\nd:80\"} 2\n"));
    parse(text, &expo); // the parser unescapes
    ck_assert_double_eq(value_of(&expo, "hookd_breaker_state", "endpoint", nasty), 2);
    free(text);

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    hk_metrics_put_label_value(f, "plain \\ \" \n é");
    fclose(f);
    ck_assert_str_eq(out, "plain \\\\ \\\" \\n é");
    free(out);
}
END_TEST

START_TEST(test_counters_reflect_increments)
{
    char *text = render(NULL);
    parse(text, &expo);
    free(text);
    double consumed = value_of(&expo, "hookd_jobs_consumed_total", NULL, NULL);
    double gone = value_of(&expo, "hookd_jobs_dead_lettered_total", "class", "gone");
    double topic = value_of(&expo, "hookd_retries_total", "via", "topic");
    double skipped = value_of(&expo, "hookd_batch_items_total", "status", "skipped");
    double retryable = value_of(&expo, "hookd_deliveries_total", "outcome", "retryable");
    double suppressed = value_of(&expo, "hookd_duplicates_suppressed_total", NULL, NULL);
    double pg_errors = value_of(&expo, "hookd_postgres_errors_total", NULL, NULL);

    hk_metric_add(consumed, 7);
    hk_metric_add(dlq_by_class[HK_OUTCOME_GONE], 2);
    hk_metric_add(retried_via_topic, 3);
    hk_metric_add(batch_items_skipped, 4);
    hk_metric_add(duplicate_suppressed, 5);
    hk_metric_add(pg_errors, 6);
    hk_metric_add(inflight_jobs, 11);
    hk_metric_add(redis_configured, 1);
    hk_metric_add(consumer_lag, 1234);
    hk_metrics_observe_attempt(HK_OUTCOME_RETRYABLE, 1000);
    hk_metrics_observe_attempt(HK_OUTCOME_RETRYABLE, 1000);

    text = render(NULL);
    parse(text, &expo);
    free(text);
    ck_assert_double_eq(value_of(&expo, "hookd_jobs_consumed_total", NULL, NULL), consumed + 7);
    ck_assert_double_eq(value_of(&expo, "hookd_jobs_dead_lettered_total", "class", "gone"),
                        gone + 2);
    ck_assert_double_eq(value_of(&expo, "hookd_retries_total", "via", "topic"), topic + 3);
    ck_assert_double_eq(value_of(&expo, "hookd_batch_items_total", "status", "skipped"),
                        skipped + 4);
    ck_assert_double_eq(value_of(&expo, "hookd_duplicates_suppressed_total", NULL, NULL),
                        suppressed + 5);
    ck_assert_double_eq(value_of(&expo, "hookd_postgres_errors_total", NULL, NULL), pg_errors + 6);
    ck_assert_double_eq(value_of(&expo, "hookd_deliveries_total", "outcome", "retryable"),
                        retryable + 2);
    ck_assert_double_eq(value_of(&expo, "hookd_inflight_jobs", NULL, NULL),
                        (double)hk_metric_get(inflight_jobs));
    ck_assert_double_eq(value_of(&expo, "hookd_redis_configured", NULL, NULL),
                        (double)hk_metric_get(redis_configured));
    ck_assert_double_eq(value_of(&expo, "hookd_consumer_lag", NULL, NULL),
                        (double)hk_metric_get(consumer_lag));
}
END_TEST

typedef struct bucket {
    double le;
    double count;
} bucket_t;

// The histogram's buckets in exposition order; checks they are sorted by le,
// end with +Inf, are cumulative, and that _count equals the +Inf bucket.
static int histogram(const exposition_t *e, const char *name, bucket_t *out, int max, double *count,
                     double *sum)
{
    char bname[160], cname[160], sname[160];
    snprintf(bname, sizeof(bname), "%s_bucket", name);
    snprintf(cname, sizeof(cname), "%s_count", name);
    snprintf(sname, sizeof(sname), "%s_sum", name);
    int n = 0;
    for (int i = 0; i < e->smp_cnt; i++) {
        if (strcmp(e->smp[i].name, bname) != 0)
            continue;
        ck_assert_int_lt(n, max);
        const char *le = label_of(&e->smp[i], "le");
        out[n].le = parse_value(le, le);
        out[n].count = e->smp[i].value;
        if (n > 0) {
            ck_assert_msg(out[n].le > out[n - 1].le, "le %s not ascending", le);
            ck_assert_msg(out[n].count >= out[n - 1].count, "bucket le=%s not cumulative", le);
        }
        n++;
    }
    ck_assert_int_gt(n, 1);
    ck_assert_msg(isinf(out[n - 1].le), "the last bucket is not +Inf");
    *count = value_of(e, cname, NULL, NULL);
    *sum = value_of(e, sname, NULL, NULL);
    ck_assert_double_eq(*count, out[n - 1].count);
    return n;
}

START_TEST(test_latency_histogram_is_cumulative_and_counts_agree)
{
    bucket_t before[32], after[32];
    double count0, sum0, count1, sum1;
    char *text = render(NULL);
    parse(text, &expo);
    free(text);
    int n = histogram(&expo, "hookd_delivery_duration_seconds", before, 32, &count0, &sum0);
    ck_assert_int_eq(n, HK_LATENCY_BUCKETS + 1);
    ck_assert_double_eq(before[0].le, 0.005);

    // Bounds are inclusive (le): 5 ms is in the first bucket, 5.001 ms in the second.
    hk_metrics_observe_attempt(HK_OUTCOME_DELIVERED, 0);
    hk_metrics_observe_attempt(HK_OUTCOME_DELIVERED, 5000);
    hk_metrics_observe_attempt(HK_OUTCOME_DELIVERED, 5001);
    hk_metrics_observe_attempt(HK_OUTCOME_RETRYABLE, 1500000);   // 1.5 s: le=2.5
    hk_metrics_observe_attempt(HK_OUTCOME_RETRYABLE, 200000000); // 200 s: +Inf only
    hk_metrics_observe_attempt(HK_OUTCOME_PERMANENT, -5);        // clock oddity: as 0

    text = render(NULL);
    parse(text, &expo);
    free(text);
    ck_assert_int_eq(histogram(&expo, "hookd_delivery_duration_seconds", after, 32, &count1, &sum1),
                     n);
    ck_assert_double_eq(count1, count0 + 6);
    ck_assert_double_eq_tol(sum1, sum0 + 0.005 + 0.005001 + 1.5 + 200, 1e-6);
    double want_added[][2] = {{0.005, 3}, {0.01, 4}, {1, 4}, {2.5, 5}, {120, 5}, {INFINITY, 6}};
    for (size_t w = 0; w < sizeof(want_added) / sizeof(want_added[0]); w++) {
        int found = 0;
        for (int i = 0; i < n; i++) {
            if (after[i].le != want_added[w][0])
                continue;
            ck_assert_msg(after[i].count - before[i].count == want_added[w][1],
                          "le=%g: +%g, want +%g", after[i].le, after[i].count - before[i].count,
                          want_added[w][1]);
            found = 1;
        }
        ck_assert_msg(found, "no bucket le=%g", want_added[w][0]);
    }
}
END_TEST

// docs/operations.md is the metrics reference: every family rendered has a row.
START_TEST(test_every_family_is_documented)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/docs/operations.md", HK_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *doc = NULL;
    size_t doc_len = 0;
    FILE *mem = open_memstream(&doc, &doc_len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, mem);
    fclose(f);
    fclose(mem);

    json_t *lanes = sample_lanes();
    char *text = render(lanes);
    json_decref(lanes);
    parse(text, &expo);
    for (int i = 0; i < expo.fam_cnt; i++) {
        char quoted[160];
        snprintf(quoted, sizeof(quoted), "| `%s` |", expo.fam[i].name);
        ck_assert_msg(strstr(doc, quoted) != NULL, "%s is not in the table of %s", expo.fam[i].name,
                      path);
    }
    free(text);
    free(doc);
}
END_TEST

// The first executable file named `name` on PATH, or "" when there is none.
static void find_on_path(const char *name, char *out, size_t size)
{
    out[0] = '\0';
    const char *path = getenv("PATH");
    if (!path)
        return;
    char *copy = strdup(path), *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, size, "%s/%s", *dir ? dir : ".", name);
        if (access(out, X_OK) == 0)
            break;
        out[0] = '\0';
    }
    free(copy);
}

START_TEST(test_promtool_accepts_the_exposition)
{
    char promtool[1024];
    find_on_path("promtool", promtool, sizeof(promtool));
    if (!promtool[0]) {
        fprintf(stderr, "\n*** check_metrics: SKIPPED `promtool check metrics`: promtool is not "
                        "on PATH. scripts/deps.sh installs it (Debian package prometheus); "
                        "the strict parser in this suite still ran. ***\n\n");
        return;
    }
    // Values everywhere, a nasty label value, and every breaker state.
    hk_metric_add(consumed, 1);
    hk_metrics_observe_attempt(HK_OUTCOME_DELIVERED, 42000);
    json_t *lanes = sample_lanes();
    json_array_append_new(lanes, lane("http://a\"b\\c\nd:80", "open", 1, 0, 1));
    char *text = render(lanes);
    json_decref(lanes);

    char in_path[] = "/tmp/check_metrics_XXXXXX";
    int fd = mkstemp(in_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    free(text);

    char cmd[2200];
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' 2>&1", promtool, in_path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(in_path);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "promtool check metrics: status %d:\n%s",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
    ck_assert_msg(n == 0, "promtool check metrics reported:\n%s", out);
    printf("check_metrics: promtool check metrics (%s): ok\n", promtool);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, test_exposition_parses_strictly_with_every_family);
    tcase_add_test(tc, test_per_endpoint_families_follow_the_lanes);
    tcase_add_test(tc, test_label_values_are_escaped);
    tcase_add_test(tc, test_counters_reflect_increments);
    tcase_add_test(tc, test_latency_histogram_is_cumulative_and_counts_agree);
    tcase_add_test(tc, test_every_family_is_documented);
    suite_add_tcase(s, tc);

    tc = tcase_create("promtool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_promtool_accepts_the_exposition);
    suite_add_tcase(s, tc);
    return s;
}
