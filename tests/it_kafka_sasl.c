// Secured cluster, on real Apache Kafka only: this suite starts its own 1-node
// cluster (scripts/kafka up --conf) with a SASL_SSL listener whose certificate
// is signed by a CA made here with openssl, and a SCRAM-SHA-512 user. hookd
// reaches it only through its [kafka] rdkafka.* pass-through (a config file
// written here); the topics are made, the jobs produced and the lag read through
// the PLAINTEXT listener, hookd's own traffic is all SASL_SSL. A wrong password
// or an untrusted CA must stop start-up with librdkafka's reason, at once, not
// after kafka.startup_timeout_ms.
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/ck_main.h"
#include "tests/support/harness.h"
#include "tests/support/sink.h"

#define PASSWORD       "hk-sasl-pw-7f3a"
#define WRONG_PASSWORD "hk-wrong-pw-2c9d"
// Long enough that a start which waits for it instead of failing at once is
// plain to see (a refused start took ~1.1 s here, a hang takes all of it).
#define STARTUP_TIMEOUT_MS 60000

static char work[256];        // certificates, configs, logs
static char kdir[256];        // KAFKA_DIR of the cluster
static char plain_boot[256];  // PLAINTEXT listener: topics, produce, lag
static char secure_boot[256]; // SASL_SSL listener: hookd
static hk_th_proc_t kafka;    // the harness's topic namespace on plain_boot
static char brokers[512];
static hk_sink_t *sink;
static char logpath[320];

// Runs a shell command built from fmt; its exit status (0 ok).
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// A CA, a broker certificate it signs (for 127.0.0.1 and localhost), and a
// second CA that signed nothing (the "wrong CA").
static void make_certificates(void)
{
    ck_assert_msg(
        sh("cd '%s' && ( "
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
           "-subj /CN=hookd-test-ca && "
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem "
           "-days 2 -subj /CN=hookd-test-ca && "
           "openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr "
           "-subj /CN=localhost && "
           "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' >broker.ext && "
           "openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
           "-out broker.crt -days 2 -extfile broker.ext && "
           "cat broker.key broker.crt >broker.pem ) >openssl.log 2>&1",
           work) == 0,
        "openssl failed; see %s/openssl.log", work);
}

// The extra listener, SASL_SSL with SCRAM-SHA-512 and PLAIN; the inter-broker
// and controller listeners stay PLAINTEXT. The keystore is PEM (key + chain in
// one file), which Kafka 4 reads without keytool.
static void write_server_conf(const char *path)
{
    char text[2048];
    snprintf(
        text, sizeof(text),
        "listeners=PLAINTEXT://127.0.0.1:@BROKER_PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,"
        "SASL_SSL://127.0.0.1:@EXTRA_PORT@\n"
        "advertised.listeners=PLAINTEXT://127.0.0.1:@BROKER_PORT@,"
        "SASL_SSL://127.0.0.1:@EXTRA_PORT@\n"
        "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN\n"
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        "listener.name.sasl_ssl.plain.sasl.jaas.config="
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        "user_hookd=\"" PASSWORD "\";\n"
        "ssl.keystore.type=PEM\n"
        "ssl.keystore.location=%s/broker.pem\n",
        work);
    write_file(path, text);
}

// Reads NAME=value lines of scripts/kafka up.
static void read_up_line(const char *line)
{
    char val[256];
    if (sscanf(line, "KAFKA_BOOTSTRAP=%255s", val) == 1)
        snprintf(plain_boot, sizeof(plain_boot), "%s", val);
    else if (sscanf(line, "KAFKA_DIR=%255s", val) == 1)
        snprintf(kdir, sizeof(kdir), "%s", val);
    else if (sscanf(line, "KAFKA_EXTRA_BOOTSTRAP=%255s", val) == 1)
        snprintf(secure_boot, sizeof(secure_boot), "%s", val);
}

static void cluster_up(void)
{
    snprintf(work, sizeof(work), "/tmp/it_kafka_sasl.XXXXXX");
    ck_assert_msg(mkdtemp(work) != NULL, "mkdtemp");
    make_certificates();
    char conf[320];
    snprintf(conf, sizeof(conf), "%s/server.conf", work);
    write_server_conf(conf);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/kafka' up --conf '%s'", HK_SOURCE_DIR, conf);
    FILE *up = popen(cmd, "r");
    ck_assert_msg(up != NULL, "cannot run %s", cmd);
    char line[512];
    while (fgets(line, sizeof(line), up))
        read_up_line(line);
    int st = pclose(up);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0 && kdir[0] && plain_boot[0] &&
                      secure_boot[0],
                  "scripts/kafka up failed (status %d)", st);

    // The SCRAM user, stored by the controller; set through the PLAINTEXT
    // listener with Kafka's own tool.
    ck_assert_msg(sh("'%s/scripts/kafka' tool '%s' kafka-configs --bootstrap-server %s --alter "
                     "--add-config 'SCRAM-SHA-512=[password=" PASSWORD "]' --entity-type users "
                     "--entity-name hookd >'%s/scram.log' 2>&1",
                     HK_SOURCE_DIR, kdir, plain_boot, work) == 0,
                  "kafka-configs could not add the SCRAM user (see %s/scram.log)", work);

    // The harness makes the topics (in a namespace) through the PLAINTEXT
    // listener; hookd is pointed at the secure one with the namespaced names.
    setenv("HK_TEST_KAFKA", "real", 1);
    setenv("HK_TEST_KAFKA_BOOTSTRAP", plain_boot, 1);
    const char *topics[] = {"jobs:4", "jobs.retry:4", "jobs.dlq:1", NULL};
    ck_assert_int_eq(hk_th_kafka_start(&kafka, topics, brokers, sizeof(brokers)), 0);
}

// Called from main once the tests have run (also after a cluster_up that
// failed half-way, when check runs no teardown), so no JVM is left behind.
// The work dir (hookd's logs) is kept when a test failed.
static void cluster_down(int keep)
{
    if (brokers[0])
        hk_th_kafka_stop(&kafka);
    brokers[0] = '\0';
    if (kdir[0])
        sh("'%s/scripts/kafka' down '%s'", HK_SOURCE_DIR, kdir);
    kdir[0] = '\0';
    if (work[0] && !keep)
        hk_th_rmtree(work);
    else if (work[0])
        fprintf(stderr, "it_kafka_sasl: logs kept in %s\n", work);
    work[0] = '\0';
}

static void setup(void)
{
    char err[256];
    hk_sink_opts_t so = {.port = 0, .secrets = HK_TH_SECRET, .threads = 4};
    sink = hk_sink_start(&so, err, sizeof(err));
    ck_assert_msg(sink != NULL, "sink: %s", err);
}

static void teardown(void)
{
    hk_sink_stop(sink);
    hk_th_release_held();
}

// hookd's [kafka] section: how an operator would write it.
static const char *write_hookd_conf(const char *name, const char *mechanism, const char *password,
                                    const char *ca)
{
    static char path[320];
    char text[1024];
    snprintf(path, sizeof(path), "%s/%s.conf", work, name);
    snprintf(text, sizeof(text),
             "[kafka]\n"
             "startup_timeout_ms = %d\n"
             "rdkafka.security.protocol = SASL_SSL\n"
             "rdkafka.sasl.mechanisms = %s\n"
             "rdkafka.sasl.username = hookd\n"
             "rdkafka.sasl.password = %s\n"
             "rdkafka.ssl.ca.location = %s/%s\n",
             STARTUP_TIMEOUT_MS, mechanism, password, work, ca);
    write_file(path, text);
    snprintf(logpath, sizeof(logpath), "%s/%s.log", work, name);
    return path;
}

// Starts hookd on the SASL_SSL listener with the namespaced topic and `group`.
static void start_hookd(hk_th_proc_t *hookd, const char *conf, const char *group)
{
    char topic[320], grp[320];
    snprintf(topic, sizeof(topic), "HOOKD_KAFKA_TOPIC=%s", hk_th_kafka_name("jobs"));
    snprintf(grp, sizeof(grp), "HOOKD_KAFKA_GROUP=%s", hk_th_kafka_name(group));
    char *env[] = {topic, grp, NULL};
    ck_assert_int_eq(hk_th_hookd_start(hookd, secure_boot, env, conf, logpath), 0);
}

// N jobs through SASL_SSL to the sink; SIGTERM exits 0 with nothing left behind.
static void delivers_end_to_end(const char *conf, const char *group, const char *id_prefix)
{
    hk_th_proc_t hookd;
    start_hookd(&hookd, conf, group);
    ck_assert_msg(hk_th_wait_for_log(logpath, "\"event\":\"started\"", 1, 120000),
                  "hookd did not start over SASL_SSL; see %s", logpath);
    enum { N = 300 };
    char **values = hk_th_hold(HK_TH_HELD_STRS, calloc(N, sizeof(char *)), N);
    for (int i = 0; i < N; i++) {
        values[i] = malloc(160);
        snprintf(values[i], 160, "{\"id\":\"%s-%d\",\"url\":\"http://127.0.0.1:%d/ok\"}", id_prefix,
                 i, hk_sink_port(sink));
    }
    hk_sink_stats_t ss;
    hk_sink_stats(sink, &ss);
    uint64_t before = ss.unique_ok;
    ck_assert_uint_eq(hk_th_produce(brokers, "jobs", values, NULL, N), N);
    int all = hk_th_wait_unique_ok(sink, before + N, 120000);
    hk_sink_stats(sink, &ss);
    ck_assert_msg(all, "delivered %llu of %d; see %s", (unsigned long long)(ss.unique_ok - before),
                  N, logpath);
    int st = hk_th_stop(&hookd, 30000);
    ck_assert_msg(hk_th_exited_ok(st), "hookd exit status %d; see %s", st, logpath);
    int64_t lag = hk_th_group_lag(brokers, group, "jobs");
    printf("it_kafka_sasl: %s: %d jobs delivered over SASL_SSL, %llu duplicates, lag %lld\n", group,
           N, (unsigned long long)ss.duplicate_ok, (long long)lag);
    ck_assert_int_eq(lag, 0);
    ck_assert_msg(hk_th_log_count(logpath, PASSWORD) == 0, "the SASL password is in %s", logpath);
}

static int take_error(json_t *line, int64_t at_ms, void *arg)
{
    (void)at_ms;
    const char *e = json_string_value(json_object_get(line, "error"));
    snprintf(arg, 1024, "%s", e ? e : "");
    return 1;
}

// The "error" of the startup_failed line ("" when there is none): librdkafka's
// own log lines in the same file repeat its reasons, so only this line counts.
static const char *startup_error(void)
{
    static char err[1024];
    err[0] = '\0';
    hk_th_log_each(logpath, "\"event\":\"startup_failed\"", take_error, err);
    return err;
}

// hookd must exit non-zero, quickly, with a startup_failed line that says the
// cluster refused it and contains `why`; returns how long it took.
static int64_t refused_at_start(const char *conf, const char *why)
{
    hk_th_proc_t hookd;
    int64_t t0 = hk_th_now_ms();
    start_hookd(&hookd, conf, "refused");
    int st = hk_th_wait(&hookd, STARTUP_TIMEOUT_MS + 30000);
    int64_t took = hk_th_now_ms() - t0;
    if (st < 0)
        hk_th_stop(&hookd, 5000);
    ck_assert_msg(st >= 0, "hookd kept running although the cluster refused it; see %s", logpath);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "hookd exit status %d", st);
    ck_assert_int_eq(hk_th_log_count(logpath, "\"event\":\"started\""), 0);
    ck_assert_msg(hk_th_log_count(logpath, "\"event\":\"startup_failed\"") == 1,
                  "no startup_failed line in %s", logpath);
    const char *err = startup_error();
    ck_assert_msg(strstr(err, "refused hookd") && strstr(err, why),
                  "the startup_failed reason does not say \"refused hookd ... %s\": \"%s\"", why,
                  err);
    // Half the timeout: a start that waits for the timeout takes all 60 s,
    // one that fails on the refusal took ~1.1 s on 2 loaded cores.
    ck_assert_msg(took < STARTUP_TIMEOUT_MS / 2,
                  "refused start took %lld ms (kafka.startup_timeout_ms %d)", (long long)took,
                  STARTUP_TIMEOUT_MS);
    return took;
}

START_TEST(test_plain_over_tls_delivers)
{
    const char *conf = write_hookd_conf("plain", "PLAIN", PASSWORD, "ca.pem");
    delivers_end_to_end(conf, "sasl-plain", "plain");
}
END_TEST

// librdkafka before 2.6.1 computes a SCRAM proof that Kafka 4.x rejects
// (librdkafka#4895, the nonce sent twice), whatever the password. With such a
// librdkafka (Debian's 2.0.2) hookd must say so at start; with a fixed one it
// must deliver.
START_TEST(test_scram_sha512)
{
    const char *conf = write_hookd_conf("scram", "SCRAM-SHA-512", PASSWORD, "ca.pem");
    if (rd_kafka_version() >= 0x020601ff) {
        delivers_end_to_end(conf, "sasl-scram", "scram");
        return;
    }
    int64_t took = refused_at_start(conf, "librdkafka < 2.6.1");
    ck_assert_msg(strstr(startup_error(), "invalid credentials with SASL mechanism SCRAM-SHA-512"),
                  "%s", startup_error());
    printf("it_kafka_sasl: SCRAM-SHA-512 on librdkafka %s refused in %lld ms, with the hint\n",
           rd_kafka_version_str(), (long long)took);
}
END_TEST

START_TEST(test_wrong_password_refused_at_start)
{
    const char *conf = write_hookd_conf("wrong-password", "PLAIN", WRONG_PASSWORD, "ca.pem");
    int64_t took = refused_at_start(conf, "SASL authentication error");
    ck_assert_int_eq(hk_th_log_count(logpath, WRONG_PASSWORD), 0);
    // A wrong PLAIN password is just that: no SCRAM hint.
    ck_assert_ptr_null(strstr(startup_error(), "librdkafka < 2.6.1"));
    printf("it_kafka_sasl: wrong password refused in %lld ms (timeout %d ms)\n", (long long)took,
           STARTUP_TIMEOUT_MS);
}
END_TEST

START_TEST(test_untrusted_ca_refused_at_start)
{
    const char *conf = write_hookd_conf("wrong-ca", "PLAIN", PASSWORD, "other-ca.pem");
    int64_t took = refused_at_start(conf, "SSL handshake failed");
    printf("it_kafka_sasl: untrusted CA refused in %lld ms (timeout %d ms)\n", (long long)took,
           STARTUP_TIMEOUT_MS);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    run->nofork = true;
    run->after = cluster_down;
    Suite *s = suite_create("it_kafka_sasl");
    TCase *tc = tcase_create("sasl_ssl");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, cluster_up, NULL);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_plain_over_tls_delivers);
    tcase_add_test(tc, test_scram_sha512);
    tcase_add_test(tc, test_wrong_password_refused_at_start);
    tcase_add_test(tc, test_untrusted_ca_refused_at_start);
    suite_add_tcase(s, tc);
    return s;
}
