// Unit tests of config/: defaults, the sample files, every kind of bad value with
// its message, environment precedence, pass-through lists, [endpoint] sections, the
// redacted dump and the reload check.
#include "config/config.h"

#include <check.h>
#include <ini.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/ck_main.h"

#ifndef HK_SOURCE_DIR
#define HK_SOURCE_DIR "."
#endif

// whsec_ secrets of 16, 32 and 64 bytes, and of 15 and 65 bytes (both too short/long).
#define SECRET16 "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="
#define SECRET32 "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define SECRET64                                                                                   \
    "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2Rl"   \
    "Zg=="
#define SECRET15 "whsec_MDEyMzQ1Njc4OWFiY2Rl"
#define SECRET65                                                                                   \
    "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2Rl"   \
    "Zng="
#define SECRET_ACME "whsec_dGVuYW50LWFjbWUtc2VjcmV0LWJ5dGVz"

// Per-test state, reset and released by the checked fixture.
static hk_config_t *cfg;
static char path[64];

// What delivery.threads = auto (the default) stands for: the CPUs this process
// may run on, 1 to 16.
static int auto_threads(void)
{
    cpu_set_t set;
    ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    int n = CPU_COUNT(&set);
    return n < 1 ? 1 : n > 16 ? 16 : n;
}
static char err[512];

static void setup(void)
{
    cfg = NULL;
    path[0] = '\0';
    err[0] = '\0';
}

static void reset_cfg(void)
{
    hk_config_destroy(cfg);
    cfg = NULL;
}

static void teardown(void)
{
    reset_cfg();
    if (path[0])
        unlink(path);
    path[0] = '\0';
}

// Writes text to a new temporary file, named in `path`, and returns the name.
static const char *write_conf(const char *text)
{
    if (path[0])
        unlink(path);
    snprintf(path, sizeof(path), "/tmp/hk-check-config-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

// Loads `text` as a config file into `cfg`, failing the test on an error.
static hk_config_t *load_ok(const char *text, char *const *envp)
{
    cfg = hk_config_load(write_conf(text), envp, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    return cfg;
}

// Loads `text` expecting a failure with exactly the message `want`.
static void assert_load_fails(const char *text, char *const *envp, const char *want)
{
    cfg = hk_config_load(write_conf(text), envp, err, sizeof(err));
    ck_assert_msg(cfg == NULL, "loaded although expected: %s", want);
    ck_assert_str_eq(err, want);
}

// Loads `text` expecting a failure whose message contains `want`.
static void assert_load_fails_with(const char *text, const char *want)
{
    cfg = hk_config_load(write_conf(text), NULL, err, sizeof(err));
    ck_assert_msg(cfg == NULL, "loaded although expected: %s", want);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

// hk_config_dump() into a malloc'ed string.
static char *dump_str(const hk_config_t *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    hk_config_dump(c, f);
    ck_assert_int_eq(fclose(f), 0);
    return buf;
}

START_TEST(test_defaults_without_file)
{
    cfg = hk_config_load(NULL, NULL, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_str_eq(cfg->kafka_brokers, "mock");
    ck_assert_str_eq(cfg->kafka_topic, "jobs");
    ck_assert_str_eq(cfg->kafka_group, "hookd");
    ck_assert_str_eq(cfg->kafka_dlq_topic, "jobs.dlq");
    ck_assert_str_eq(cfg->kafka_retry_topic, "jobs.retry");
    ck_assert_int_eq(cfg->kafka_mock_partitions, 8);
    ck_assert_uint_eq(cfg->kafka_props_cnt, 0);
    ck_assert_int_eq(cfg->delivery_threads, auto_threads());
    ck_assert_int_eq(cfg->delivery_max_transfers_per_thread, 64);
    ck_assert_int_eq(cfg->delivery_timeout_ms, 10000);
    ck_assert_int_eq(cfg->delivery_connect_timeout_ms, 5000);
    ck_assert_int_eq(cfg->delivery_max_response_bytes, 65536);
    ck_assert_str_eq(cfg->delivery_allow_cidrs, "");
    ck_assert_str_eq(cfg->signing_secret, "");
    ck_assert_uint_eq(cfg->tenant_secrets_cnt, 0);
    ck_assert_int_eq(cfg->limits_max_job_bytes, 1048576);
    ck_assert_int_eq(cfg->limits_max_inflight_jobs, 10000);
    ck_assert_int_eq(cfg->limits_max_inflight_bytes, 268435456);
    ck_assert_int_eq(cfg->limits_max_partition_span, 20000);
    ck_assert_int_eq(cfg->retry_max_attempts, 10);
    ck_assert_str_eq(cfg->retry_schedule, "");
    ck_assert_ptr_null(cfg->retry_schedule_ms);
    ck_assert_uint_eq(cfg->retry_schedule_cnt, 0);
    ck_assert_int_eq(cfg->retry_base_ms, 1000);
    ck_assert_double_eq(cfg->retry_multiplier, 2.0);
    ck_assert_int_eq(cfg->retry_max_delay_ms, 3600000);
    ck_assert_int_eq(cfg->retry_inline_max_ms, 30000);
    ck_assert_int_eq(cfg->breaker_window, 20);
    ck_assert_int_eq(cfg->breaker_min_calls, 10);
    ck_assert_double_eq(cfg->breaker_failure_rate, 0.5);
    ck_assert_int_eq(cfg->breaker_consecutive_failures, 5);
    ck_assert_int_eq(cfg->breaker_open_ms, 30000);
    ck_assert_int_eq(cfg->breaker_max_open_ms, 600000);
    ck_assert_int_eq(cfg->breaker_probes, 3);
    ck_assert_int_eq(cfg->lanes_initial_limit, 32);
    ck_assert_int_eq(cfg->lanes_min_limit, 1);
    ck_assert_int_eq(cfg->lanes_max_limit, 256);
    ck_assert_ptr_null(cfg->endpoints);
    ck_assert_uint_eq(cfg->endpoints_cnt, 0);
    ck_assert_ptr_null(hk_config_endpoint(cfg, "https://api.example.com:443"));
    ck_assert_int_eq(cfg->log_level, HK_LOG_INFO);
    ck_assert_int_eq(cfg->log_summary_ms, 5000);
    ck_assert_int_eq(cfg->shutdown_grace_ms, 10000);
    ck_assert_str_eq(cfg->admin_listen, "127.0.0.1:9464");
}
END_TEST

START_TEST(test_empty_file_gives_defaults)
{
    load_ok("", NULL);
    ck_assert_str_eq(cfg->kafka_topic, "jobs");
    ck_assert_int_eq(cfg->delivery_threads, auto_threads());
}
END_TEST

START_TEST(test_threads_auto_is_the_cpus_and_a_number_wins)
{
    load_ok("[delivery]\nthreads = auto\n", NULL);
    ck_assert_int_eq(cfg->delivery_threads, auto_threads());
    reset_cfg();
    load_ok("[delivery]\nthreads = 3\n", NULL);
    ck_assert_int_eq(cfg->delivery_threads, 3);
    reset_cfg();
    assert_load_fails(
        "[delivery]\nthreads = automatic\n", NULL,
        "config line 2: delivery.threads must be between 1 and 256, got \"automatic\"");
}
END_TEST

// Collects "\n<section>.<key>" of every pair inih reads into a string.
static int collect_keys(void *user, const char *section, const char *name, const char *value)
{
    (void)value;
    char *keys = user;
    size_t len = strlen(keys);
    snprintf(keys + len, 8192 - len, "\n%s.%s", section, name);
    return 1;
}

START_TEST(test_sample_hookd_conf_sets_every_key_to_its_default)
{
    char *defaults_dump;
    {
        hk_config_t *defaults = hk_config_load(NULL, NULL, err, sizeof(err));
        ck_assert_ptr_nonnull(defaults);
        defaults_dump = dump_str(defaults);
        hk_config_destroy(defaults);
    }
    cfg = hk_config_load(HK_SOURCE_DIR "/config/hookd.conf", NULL, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    char *sample_dump = dump_str(cfg);
    ck_assert_str_eq(sample_dump, defaults_dump);

    // Every key the dump shows is written out (and so documented) in the sample.
    static char sample_keys[8192], dump_keys[8192];
    sample_keys[0] = dump_keys[0] = '\0';
    ck_assert_int_eq(ini_parse(HK_SOURCE_DIR "/config/hookd.conf", collect_keys, sample_keys), 0);
    ck_assert_int_eq(ini_parse_string(defaults_dump, collect_keys, dump_keys), 0);
    strcat(sample_keys, "\n");
    for (char *k = strtok(dump_keys, "\n"); k; k = strtok(NULL, "\n")) {
        char needle[128];
        snprintf(needle, sizeof(needle), "\n%s\n", k);
        ck_assert_msg(strstr(sample_keys, needle) != NULL, "hookd.conf lacks %s", k);
    }
    free(sample_dump);
    free(defaults_dump);
}
END_TEST

START_TEST(test_dev_conf_loads)
{
    cfg = hk_config_load(HK_SOURCE_DIR "/config/dev.conf", NULL, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_str_eq(cfg->kafka_brokers, "mock");
    ck_assert_str_eq(cfg->delivery_allow_cidrs, "127.0.0.0/8,::1/128");
    ck_assert_int_eq(strncmp(cfg->signing_secret, "whsec_", 6), 0);
    ck_assert_str_eq(hk_config_tenant_secret(cfg, "default"), cfg->signing_secret);
    ck_assert_uint_eq(cfg->retry_schedule_cnt, 3);
    ck_assert_int_eq(cfg->retry_schedule_ms[2], 15000);
    ck_assert_int_eq(cfg->breaker_open_ms, 5000);
}
END_TEST

START_TEST(test_file_overrides_defaults)
{
    load_ok("[kafka]\n"
            "brokers = k1:9092,k2:9092\n"
            "topic = orders\n"
            "group = g1\n"
            "dlq_topic = dead\n"
            "retry_topic = later\n"
            "[delivery]\n"
            "threads = 16\n"
            "allow_cidrs = 10.0.0.0/8\n"
            "[retry]\n"
            "max_attempts = 3\n"
            "[admin]\n"
            "listen = 0.0.0.0:9000\n"
            "token = 0123456789abcdef\n",
            NULL);
    ck_assert_str_eq(cfg->kafka_brokers, "k1:9092,k2:9092");
    ck_assert_str_eq(cfg->kafka_topic, "orders");
    ck_assert_str_eq(cfg->kafka_group, "g1");
    ck_assert_str_eq(cfg->kafka_dlq_topic, "dead");
    ck_assert_str_eq(cfg->kafka_retry_topic, "later");
    ck_assert_int_eq(cfg->delivery_threads, 16);
    ck_assert_str_eq(cfg->delivery_allow_cidrs, "10.0.0.0/8");
    ck_assert_int_eq(cfg->retry_max_attempts, 3);
    ck_assert_str_eq(cfg->admin_listen, "0.0.0.0:9000");
    ck_assert_int_eq(cfg->delivery_timeout_ms, 10000);
}
END_TEST

START_TEST(test_derived_topics_follow_topic)
{
    load_ok("[kafka]\ntopic = orders\n", NULL);
    ck_assert_str_eq(cfg->kafka_dlq_topic, "orders.dlq");
    ck_assert_str_eq(cfg->kafka_retry_topic, "orders.retry");
}
END_TEST

START_TEST(test_quoted_values_are_unquoted)
{
    load_ok("[kafka]\ntopic = \"orders\"\ndlq_topic = \"\"\n[delivery]\nthreads = \"4\"\n", NULL);
    ck_assert_str_eq(cfg->kafka_topic, "orders");
    ck_assert_str_eq(cfg->kafka_dlq_topic, "orders.dlq");
    ck_assert_int_eq(cfg->delivery_threads, 4);
}
END_TEST

START_TEST(test_later_duplicate_key_wins)
{
    load_ok("[delivery]\nthreads = 4\nthreads = 6\n[delivery]\nthreads = 8\n", NULL);
    ck_assert_int_eq(cfg->delivery_threads, 8);
}
END_TEST

START_TEST(test_crlf_line_endings_are_accepted)
{
    load_ok("[delivery]\r\nthreads = 4\r\n[log]\r\nlevel = warn\r\n", NULL);
    ck_assert_int_eq(cfg->delivery_threads, 4);
    ck_assert_int_eq(cfg->log_level, HK_LOG_WARN);
}
END_TEST

START_TEST(test_env_overrides_file)
{
    char *envp[] = {"HOOKD_DELIVERY_THREADS=8", "HOOKD_KAFKA_GROUP=from-env", NULL};
    load_ok("[delivery]\nthreads = 4\ntimeout_ms = 2000\n[kafka]\ngroup = from-file\n", envp);
    ck_assert_int_eq(cfg->delivery_threads, 8);       // env over file
    ck_assert_str_eq(cfg->kafka_group, "from-env");   // env over file
    ck_assert_int_eq(cfg->delivery_timeout_ms, 2000); // file over default
    ck_assert_int_eq(cfg->retry_max_attempts, 10);    // default
}
END_TEST

START_TEST(test_env_overrides_defaults_without_file)
{
    char *envp[] = {"PATH=/usr/bin", "HOOKD_RETRY_MAX_ATTEMPTS=5", NULL};
    cfg = hk_config_load(NULL, envp, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg->retry_max_attempts, 5);
}
END_TEST

START_TEST(test_env_names_are_upper_section_and_key)
{
    char *envp[] = {"HOOKD_KAFKA_BROKERS=b1:9092",
                    "HOOKD_DELIVERY_ALLOW_CIDRS=10.0.0.0/8, fd00::/8",
                    "HOOKD_SIGNING_SECRET=" SECRET32,
                    "HOOKD_LIMITS_MAX_INFLIGHT_JOBS=123",
                    "HOOKD_LIMITS_MAX_INFLIGHT_BYTES=2G",
                    "HOOKD_LOG_LEVEL=error",
                    "HOOKD_SHUTDOWN_GRACE_MS=1m",
                    "HOOKD_ADMIN_LISTEN=",
                    NULL};
    cfg = hk_config_load(NULL, envp, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_str_eq(cfg->kafka_brokers, "b1:9092");
    ck_assert_str_eq(cfg->delivery_allow_cidrs, "10.0.0.0/8, fd00::/8");
    ck_assert_str_eq(cfg->signing_secret, SECRET32);
    ck_assert_int_eq(cfg->limits_max_inflight_jobs, 123);
    ck_assert_int_eq(cfg->limits_max_inflight_bytes, 2147483648LL);
    ck_assert_int_eq(cfg->log_level, HK_LOG_ERROR);
    ck_assert_int_eq(cfg->shutdown_grace_ms, 60000);
    ck_assert_str_eq(cfg->admin_listen, "");
}
END_TEST

START_TEST(test_env_lookalike_names_are_ignored)
{
    char *envp[] = {"HOOKD_DELIVERY_THREADSX=9", "XHOOKD_DELIVERY_THREADS=9",
                    "HOOKD_DELIVERY_THREADS", "hookd_delivery_threads=9", NULL};
    cfg = hk_config_load(NULL, envp, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg->delivery_threads, auto_threads());
}
END_TEST

START_TEST(test_env_topic_feeds_derived_topics)
{
    char *envp[] = {"HOOKD_KAFKA_TOPIC=orders", NULL};
    load_ok("[kafka]\ntopic = ignored\n", envp);
    ck_assert_str_eq(cfg->kafka_dlq_topic, "orders.dlq");
    ck_assert_str_eq(cfg->kafka_retry_topic, "orders.retry");
}
END_TEST

START_TEST(test_env_bad_value_names_the_variable)
{
    char *envp[] = {"HOOKD_DELIVERY_THREADS=abc", NULL};
    assert_load_fails("", envp,
                      "env HOOKD_DELIVERY_THREADS: delivery.threads must be between 1 and 256, "
                      "got \"abc\"");
}
END_TEST

START_TEST(test_env_value_is_not_trimmed)
{
    char *envp[] = {"HOOKD_RETRY_MAX_ATTEMPTS=5 ", NULL};
    assert_load_fails("", envp,
                      "env HOOKD_RETRY_MAX_ATTEMPTS: retry.max_attempts must be between 1 and 100, "
                      "got \"5 \"");
}
END_TEST

START_TEST(test_non_number_is_rejected_with_its_line)
{
    assert_load_fails(
        "[kafka]\n# comment\n\n[delivery]\ntimeout_ms = 100\n; another\nthreads = abc\n", NULL,
        "config line 7: delivery.threads must be between 1 and 256, got \"abc\"");
}
END_TEST

START_TEST(test_value_below_min_is_rejected)
{
    assert_load_fails("[delivery]\nthreads = 0\n", NULL,
                      "config line 2: delivery.threads must be between 1 and 256, got \"0\"");
}
END_TEST

START_TEST(test_value_above_max_is_rejected)
{
    assert_load_fails("[limits]\nmax_inflight_bytes = 68719476737\n", NULL,
                      "config line 2: limits.max_inflight_bytes must be between 1048576 and "
                      "68719476736, got \"68719476737\"");
}
END_TEST

START_TEST(test_overflow_is_rejected)
{
    assert_load_fails("[limits]\nmax_inflight_bytes = 99999999999999999999999\n", NULL,
                      "config line 2: limits.max_inflight_bytes must be between 1048576 and "
                      "68719476736, got \"99999999999999999999999\"");
    reset_cfg();
    assert_load_fails_with("[limits]\nmax_inflight_bytes = 9223372036854775808\n",
                           "got \"9223372036854775808\"");
    reset_cfg();
    // The digits fit in int64_t, the product with the suffix does not.
    assert_load_fails_with("[limits]\nmax_inflight_bytes = 9007199254740993G\n",
                           "got \"9007199254740993G\"");
    reset_cfg();
    assert_load_fails_with("[delivery]\nthreads = 4294967298\n", "got \"4294967298\"");
}
END_TEST

START_TEST(test_negative_is_rejected)
{
    assert_load_fails("[shutdown]\ngrace_ms = -1\n", NULL,
                      "config line 2: shutdown.grace_ms must be between 0 and 600000, got \"-1\"");
    reset_cfg();
    assert_load_fails_with("[shutdown]\ngrace_ms = +5\n", "got \"+5\"");
}
END_TEST

START_TEST(test_trailing_junk_is_rejected)
{
    const char *bad[] = {"12abc", "1.5", "12 34", "0x10", "1e3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[64], want[128];
        snprintf(text, sizeof(text), "[retry]\nmax_attempts = %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 "config line 2: retry.max_attempts must be between 1 and 100, got \"%s\"", bad[i]);
        assert_load_fails(text, NULL, want);
        reset_cfg();
    }
}
END_TEST

START_TEST(test_empty_integer_is_rejected)
{
    assert_load_fails("[delivery]\nthreads =\n", NULL,
                      "config line 2: delivery.threads must be between 1 and 256, got \"\"");
}
END_TEST

START_TEST(test_byte_suffixes_are_kib_based)
{
    load_ok("[delivery]\nmax_response_bytes = 1M\n"
            "[limits]\nmax_job_bytes = 64k\nmax_inflight_bytes = 2G\n",
            NULL);
    ck_assert_int_eq(cfg->delivery_max_response_bytes, 1048576);
    ck_assert_int_eq(cfg->limits_max_job_bytes, 65536);
    ck_assert_int_eq(cfg->limits_max_inflight_bytes, 2147483648LL);
    reset_cfg();
    load_ok("[limits]\nmax_job_bytes = 2K\nmax_inflight_bytes = 64G\n", NULL);
    ck_assert_int_eq(cfg->limits_max_job_bytes, 2048);
    ck_assert_int_eq(cfg->limits_max_inflight_bytes, 68719476736LL);
}
END_TEST

START_TEST(test_ms_suffixes_convert_to_ms)
{
    load_ok("[delivery]\ntimeout_ms = 30s\nconnect_timeout_ms = 250ms\n"
            "[log]\nsummary_ms = 1h\n[shutdown]\ngrace_ms = 2m\n",
            NULL);
    ck_assert_int_eq(cfg->delivery_timeout_ms, 30000);
    ck_assert_int_eq(cfg->delivery_connect_timeout_ms, 250);
    ck_assert_int_eq(cfg->log_summary_ms, 3600000);
    ck_assert_int_eq(cfg->shutdown_grace_ms, 120000);
}
END_TEST

START_TEST(test_wrong_suffix_is_rejected)
{
    const char *bad[] = {
        "[delivery]\ntimeout_ms = 10k\n",  // a size suffix on a duration
        "[limits]\nmax_job_bytes = 10s\n", // a duration suffix on a size
        "[delivery]\nthreads = 2k\n",      // no suffix on a plain count
        "[limits]\nmax_job_bytes = 1KB\n", // only k, K, M, G
        "[log]\nsummary_ms = 5S\n",        // suffixes are case sensitive
        "[shutdown]\ngrace_ms = 5 s\n",    // no space before the suffix
        "[limits]\nmax_job_bytes = k\n",   // digits first
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg = hk_config_load(write_conf(bad[i]), NULL, err, sizeof(err));
        ck_assert_msg(cfg == NULL, "accepted %s", bad[i]);
        ck_assert_msg(strstr(err, "config line 2: ") == err && strstr(err, " must be between "),
                      "%s", err);
    }
}
END_TEST

START_TEST(test_suffixed_value_out_of_range_is_rejected)
{
    assert_load_fails("[delivery]\ntimeout_ms = 3m\n", NULL,
                      "config line 2: delivery.timeout_ms must be between 100 and 120000, got "
                      "\"3m\"");
}
END_TEST

START_TEST(test_every_log_level_is_accepted)
{
    const char *levels[] = {"debug", "info", "warn", "error"};
    const hk_log_level_t values[] = {HK_LOG_DEBUG, HK_LOG_INFO, HK_LOG_WARN, HK_LOG_ERROR};
    for (size_t i = 0; i < 4; i++) {
        char text[64];
        snprintf(text, sizeof(text), "[log]\nlevel = %s\n", levels[i]);
        load_ok(text, NULL);
        ck_assert_int_eq(cfg->log_level, values[i]);
        reset_cfg();
    }
}
END_TEST

START_TEST(test_bad_log_level_is_rejected)
{
    assert_load_fails("[log]\nlevel = verbose\n", NULL,
                      "config line 2: log.level must be one of debug, info, warn, error, got "
                      "\"verbose\"");
    reset_cfg();
    assert_load_fails_with("[log]\nlevel = INFO\n", "got \"INFO\"");
}
END_TEST

START_TEST(test_signing_secret_rotation_list_is_accepted)
{
    load_ok("[signing]\nsecret = " SECRET16 "  " SECRET64 "\n", NULL);
    ck_assert_str_eq(cfg->signing_secret, SECRET16 "  " SECRET64);
}
END_TEST

START_TEST(test_bad_signing_secret_is_rejected_without_echo)
{
    static const struct {
        const char *secret;
        const char *problem;
    } cases[] = {
        {"abcdefghijklmnopqrstuvwx", "secret 1 of 1 does not start with whsec_"},
        {"whsec_", "secret 1 of 1 is not canonical padded base64 after whsec_"},
        {"whsec_!!!!MDEyMzQ1Njc4OWFiY2RlZg==", "secret 1 of 1 is not canonical padded base64"},
        {"whsec_MDEyMzQ1Njc4OWFiY2RlZg",
         "secret 1 of 1 is not canonical padded base64"}, // unpadded
        {"whsec_MDEy=zQ1Njc4OWFiY2RlZg==", "secret 1 of 1 is not canonical padded base64"},
        {"whsec_MDEyMzQ1Njc4OWFiY2RlZh==", "secret 1 of 1 is not canonical padded base64"},
        {SECRET15, "secret 1 of 1 decodes to 15 bytes"},
        {SECRET65, "secret 1 of 1 decodes to 65 bytes"},
        {SECRET32 " " SECRET15, "secret 2 of 2 decodes to 15 bytes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), "[signing]\nsecret = %s\n", cases[i].secret);
        cfg = hk_config_load(write_conf(text), NULL, err, sizeof(err));
        ck_assert_msg(cfg == NULL, "accepted %s", cases[i].secret);
        ck_assert_msg(strstr(err, "config line 2: signing.secret must be whsec_") == err, "%s",
                      err);
        ck_assert_msg(strstr(err, cases[i].problem), "\"%s\" lacks \"%s\"", err, cases[i].problem);
        const char *body = cases[i].secret + 6; // what follows whsec_, if anything
        ck_assert_msg(body[0] == '\0' || strstr(err, body) == NULL, "secret echoed: %s", err);
    }
    char *envp[] = {"HOOKD_SIGNING_SECRET=" SECRET15, NULL};
    cfg = hk_config_load(NULL, envp, err, sizeof(err));
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, "env HOOKD_SIGNING_SECRET: signing.secret must be whsec_<base64 of 16 "
                          "to 64 bytes>, several separated by spaces; secret 1 of 1 decodes to 15 "
                          "bytes (secrets are not shown)");
}
END_TEST

START_TEST(test_unknown_key_names_line_and_section)
{
    assert_load_fails("# hookd\n[kafka]\nbrokers = mock\n\ntopic = jobs\n\nfoo = 1\n", NULL,
                      "config line 7: unknown key \"foo\" in [kafka]");
}
END_TEST

START_TEST(test_unknown_section_is_rejected)
{
    assert_load_fails("[kafka]\n[foo]\nbar = 1\n", NULL, "config line 3: unknown section [foo]");
}
END_TEST

START_TEST(test_key_outside_a_section_is_rejected)
{
    assert_load_fails("threads = 2\n", NULL,
                      "config line 1: key \"threads\" must be inside a [section]");
}
END_TEST

START_TEST(test_missing_file_names_path_and_reason)
{
    cfg = hk_config_load("/nonexistent/hookd.conf", NULL, err, sizeof(err));
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err,
                     "cannot open config file /nonexistent/hookd.conf: No such file or directory");
}
END_TEST

START_TEST(test_syntax_error_names_its_line)
{
    assert_load_fails("[kafka]\nbrokers = mock\nthis line has no equals sign\n", NULL,
                      "config line 3: expected [section], key = value or a # comment");
    reset_cfg();
    assert_load_fails("[kafka\nbrokers = mock\n", NULL,
                      "config line 1: expected [section], key = value or a # comment");
}
END_TEST

START_TEST(test_first_error_is_the_one_reported)
{
    assert_load_fails("[delivery]\nthreads = 0\nnope\n[log]\nlevel = loud\n", NULL,
                      "config line 2: delivery.threads must be between 1 and 256, got \"0\"");
    reset_cfg();
    assert_load_fails("[delivery]\nnope\nthreads = 0\n", NULL,
                      "config line 2: expected [section], key = value or a # comment");
}
END_TEST

START_TEST(test_indented_continuation_line_is_rejected)
{
    assert_load_fails("[kafka]\nbrokers = a:9092\n  b:9092\n", NULL,
                      "config line 3: indented line continues \"brokers\"; write each key on one "
                      "unindented line");
}
END_TEST

START_TEST(test_long_lines_are_read_whole)
{
    // Longer than inih's 200-byte line buffer: a comment, a secret list with an
    // inline comment, then an error whose line number must still be right.
    char text[2048] = "[signing]\n# ";
    for (int i = 0; i < 300; i++)
        strcat(text, "c");
    strcat(text, "\nsecret = " SECRET64 " " SECRET64 "   " SECRET64 " ; three of them\n");
    load_ok(text, NULL);
    ck_assert_str_eq(cfg->signing_secret, SECRET64 " " SECRET64 "   " SECRET64);
    reset_cfg();
    strcat(text, "[kafka]\nbad = 1\n");
    assert_load_fails(text, NULL, "config line 5: unknown key \"bad\" in [kafka]");
}
END_TEST

START_TEST(test_long_bad_value_names_its_line)
{
    char text[1024] = "[kafka]\nbrokers = mock\ntopic = ";
    for (int i = 0; i < 250; i++)
        strcat(text, "t");
    strcat(text, "\n");
    assert_load_fails_with(text, "config line 3: kafka.topic must be a Kafka topic name");
}
END_TEST

START_TEST(test_rdkafka_props_pass_through_in_file_order)
{
    load_ok("[kafka]\n"
            "rdkafka.security.protocol = sasl_ssl\n"
            "brokers = b:9092\n"
            "rdkafka.sasl.username = hookd\n"
            "rdkafka.fetch.wait.max.ms = 50\n"
            "rdkafka.security.protocol = ssl\n",
            NULL);
    ck_assert_uint_eq(cfg->kafka_props_cnt, 3);
    ck_assert_str_eq(cfg->kafka_props[0].key, "security.protocol");
    ck_assert_str_eq(cfg->kafka_props[0].value, "ssl"); // a repeat replaces in place
    ck_assert_str_eq(cfg->kafka_props[1].key, "sasl.username");
    ck_assert_str_eq(cfg->kafka_props[1].value, "hookd");
    ck_assert_str_eq(cfg->kafka_props[2].key, "fetch.wait.max.ms");
    ck_assert_str_eq(cfg->kafka_props[2].value, "50");
}
END_TEST

START_TEST(test_rdkafka_prop_needs_a_name_and_the_kafka_section)
{
    assert_load_fails("[kafka]\nrdkafka. = 1\n", NULL,
                      "config line 2: rdkafka. needs a librdkafka property name after it");
    reset_cfg();
    assert_load_fails("[delivery]\nrdkafka.debug = all\n", NULL,
                      "config line 2: unknown key \"rdkafka.debug\" in [delivery]");
}
END_TEST

START_TEST(test_tenant_secrets_and_fallback_to_default)
{
    load_ok("[signing]\nsecret = " SECRET32 "\n"
            "[tenant \"acme\"]\nsecret = " SECRET_ACME "\n"
            "[tenant \"quiet\"]\nsecret = \"\"\n"
            "[tenant \"beta\"]\nsecret = " SECRET16 " " SECRET64 "\n",
            NULL);
    ck_assert_uint_eq(cfg->tenant_secrets_cnt, 3);
    ck_assert_str_eq(cfg->tenant_secrets[0].key, "acme");
    ck_assert_str_eq(hk_config_tenant_secret(cfg, "acme"), SECRET_ACME);
    ck_assert_str_eq(hk_config_tenant_secret(cfg, "beta"), SECRET16 " " SECRET64);
    ck_assert_str_eq(hk_config_tenant_secret(cfg, "quiet"), ""); // signing off for it
    ck_assert_str_eq(hk_config_tenant_secret(cfg, "other"), SECRET32);
    ck_assert_str_eq(hk_config_tenant_secret(cfg, "default"), SECRET32);
    ck_assert_str_eq(hk_config_tenant_secret(cfg, NULL), SECRET32);
}
END_TEST

START_TEST(test_tenant_without_own_secret_and_no_default_is_unsigned)
{
    load_ok("[tenant \"acme\"]\nsecret = " SECRET_ACME "\n", NULL);
    ck_assert_str_eq(hk_config_tenant_secret(cfg, "other"), "");
}
END_TEST

START_TEST(test_bad_tenant_sections_are_rejected)
{
    assert_load_fails_with("[tenant \"acme\"]\nsecret = " SECRET15 "\n",
                           "config line 2: [tenant \"acme\"] secret must be whsec_");
    reset_cfg();
    assert_load_fails("[tenant \"acme\"]\nkey = x\n", NULL,
                      "config line 2: unknown key \"key\" in [tenant \"acme\"]");
    reset_cfg();
    assert_load_fails("[tenant]\nsecret = " SECRET16 "\n", NULL,
                      "config line 2: section [tenant] must be written [tenant \"<name>\"]");
    reset_cfg();
    assert_load_fails("[tenant acme]\nsecret = " SECRET16 "\n", NULL,
                      "config line 2: section [tenant acme] must be written [tenant \"<name>\"]");
    reset_cfg();
    assert_load_fails_with("[tenant \"\"]\nsecret = " SECRET16 "\n", "must be written");
}
END_TEST

START_TEST(test_bad_allow_cidrs_are_rejected)
{
    const char *bad[] = {"10.0.0.0/33", "10.0.0.1/8", "nonsense/8",    "::1/129",    "10.0.0.0/",
                         "10.0.0.0/8x", "fd00::1/8",  "10.0.0.0/0008", "10.0.0.0/-8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[128], want[256];
        snprintf(text, sizeof(text), "[delivery]\nallow_cidrs = 127.0.0.0/8, %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 "config line 2: delivery.allow_cidrs must be CIDRs such as 10.0.0.0/8 or "
                 "::1/128 (host bits zero), separated by commas or spaces, got \"127.0.0.0/8, %s\"",
                 bad[i]);
        assert_load_fails(text, NULL, want);
        reset_cfg();
    }
    // A bare address is one host.
    load_ok("[delivery]\nallow_cidrs = 10.0.0.0/8 fd00::/8,127.0.0.1/32,, ::ffff:10.0.0.0/104 "
            "192.168.1.7 ::1 0.0.0.0/0\n",
            NULL);
}
END_TEST

START_TEST(test_admin_listen_must_be_host_port_or_empty)
{
    const char *good[] = {"[::1]:9464", "localhost:1", "127.0.0.1:0", "127.9.9.9:1", "\"\""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[admin]\nlisten = %s\n", good[i]);
        load_ok(text, NULL);
        reset_cfg();
    }
    // Off loopback the API needs a token: --check-config says so before hookd starts.
    const char *open[] = {"0.0.0.0:9464", "[::]:9464", "10.1.2.3:80", "[2001:db8::1]:9464"};
    for (size_t i = 0; i < sizeof(open) / sizeof(open[0]); i++) {
        char text[160], want[160];
        snprintf(text, sizeof(text), "[admin]\nlisten = %s\n", open[i]);
        snprintf(want, sizeof(want), "config: admin.listen %s is not loopback: set admin.token",
                 open[i]);
        assert_load_fails(text, NULL, want);
        reset_cfg();
        snprintf(text, sizeof(text), "[admin]\nlisten = %s\ntoken = 0123456789abcdef\n", open[i]);
        load_ok(text, NULL);
        reset_cfg();
    }
    const char *bad[] = {"9464",     "localhost", "host:-1", "host:70000",
                         "::1:9464", "[::1]9464", ":9464",   "[]:9464"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[128], want[256];
        snprintf(text, sizeof(text), "[admin]\nlisten = %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 "config line 2: admin.listen must be host:port (port 0 to 65535, 0 = any free "
                 "port), or empty to turn it off, got \"%s\"",
                 bad[i]);
        assert_load_fails(text, NULL, want);
        reset_cfg();
    }
}
END_TEST

START_TEST(test_bad_topic_names_are_rejected)
{
    assert_load_fails("[kafka]\ntopic = jobs/1\n", NULL,
                      "config line 2: kafka.topic must be a Kafka topic name (1 to 249 of A-Z "
                      "a-z 0-9 . _ -), got \"jobs/1\"");
    reset_cfg();
    assert_load_fails_with("[kafka]\ntopic = \"\"\n", "kafka.topic must be a Kafka topic name");
    reset_cfg();
    assert_load_fails_with("[kafka]\nbrokers = \"\"\n", "kafka.brokers must not be empty");
}
END_TEST

START_TEST(test_topics_must_differ)
{
    assert_load_fails("[kafka]\ntopic = jobs\ndlq_topic = jobs\n", NULL,
                      "config: kafka.dlq_topic must differ from kafka.topic (\"jobs\")");
    reset_cfg();
    assert_load_fails("[kafka]\nretry_topic = jobs\n", NULL,
                      "config: kafka.retry_topic must differ from kafka.topic (\"jobs\")");
    reset_cfg();
    assert_load_fails("[kafka]\nretry_topic = x\ndlq_topic = x\n", NULL,
                      "config: kafka.dlq_topic and kafka.retry_topic must differ (both \"x\")");
}
END_TEST

START_TEST(test_job_bytes_must_fit_inflight_bytes)
{
    assert_load_fails("[limits]\nmax_job_bytes = 2M\nmax_inflight_bytes = 1M\n", NULL,
                      "config: limits.max_job_bytes (2097152) must not exceed "
                      "limits.max_inflight_bytes (1048576)");
}
END_TEST

// "s s s ..." of n secrets (SECRET16 and SECRET32 alternating) into buf.
static const char *secret_list(char *buf, size_t size, int n)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s", i ? " " : "", i % 2 ? SECRET32 : SECRET16);
    }
    return buf;
}

// A webhook-signature header carries ten signatures (base/sign.h): ten secrets
// load, the eleventh is refused with its line, in [signing] and [tenant] alike.
START_TEST(test_secret_list_at_the_limit_loads_and_one_past_is_refused)
{
    char list[2048], text[8192];
    secret_list(list, sizeof(list), 10);
    snprintf(text, sizeof(text), "[signing]\nsecret = %s\n[tenant \"acme\"]\nsecret = %s\n", list,
             list);
    load_ok(text, NULL);
    reset_cfg();

    secret_list(list, sizeof(list), 11);
    snprintf(text, sizeof(text), "# rotation\n[signing]\nsecret = %s\n", list);
    assert_load_fails(text, NULL,
                      "config line 3: signing.secret holds 11 secrets, more than the 10 one "
                      "webhook-signature header carries; remove retired secrets");
    reset_cfg();
    snprintf(text, sizeof(text), "[tenant \"acme\"]\nsecret = %s\n", list);
    assert_load_fails(text, NULL,
                      "config line 2: [tenant \"acme\"] secret holds 11 secrets, more than the 10 "
                      "one webhook-signature header carries; remove retired secrets");
    reset_cfg();
    char env[2100];
    snprintf(env, sizeof(env), "HOOKD_SIGNING_SECRET=%s", list);
    char *envp[] = {env, NULL};
    cfg = hk_config_load(NULL, envp, err, sizeof(err));
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, "env HOOKD_SIGNING_SECRET: signing.secret holds 11 secrets") == err,
                  "%s", err);
    ck_assert_msg(strstr(err, &SECRET16[6]) == NULL, "secret echoed: %s", err);
}
END_TEST

// Runs build/hookd --check-config -c <text>; returns the exit code, output in out.
static int check_config_binary(const char *text, char *out, size_t out_size)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/hookd --check-config -c %s 2>&1", HK_BUILD_DIR,
             write_conf(text));
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, out_size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

START_TEST(test_check_config_refuses_too_many_secrets_and_redacts)
{
    static char out[65536];
    char list[2048], text[8192];
    secret_list(list, sizeof(list), 11);
    snprintf(text, sizeof(text), "[signing]\nsecret = %s\n", list);
    ck_assert_int_eq(check_config_binary(text, out, sizeof(out)), 2);
    ck_assert_msg(strstr(out, "hookd: config line 2: signing.secret holds 11 secrets") != NULL,
                  "%s", out);

    snprintf(text, sizeof(text),
             "[kafka]\nrdkafka.ssl.key.passphrase = pp-hunter\nrdkafka.sasl.username = "
             "user-hunter\nrdkafka.sasl.password = pw-hunter\n[signing]\nsecret = %s\n",
             secret_list(list, sizeof(list), 10));
    ck_assert_int_eq(check_config_binary(text, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "hunter") == NULL && strstr(out, &SECRET16[6]) == NULL, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "rdkafka.ssl.key.passphrase = <redacted>\n"));
    ck_assert_ptr_nonnull(strstr(out, "rdkafka.sasl.username = <redacted>\n"));
}
END_TEST

// Every *password*, *passphrase*, *secret* key and every rdkafka.sasl.* one.
START_TEST(test_dump_redacts_every_credential_shaped_key)
{
    load_ok("[kafka]\n"
            "rdkafka.ssl.key.passphrase = v-passphrase\n"
            "rdkafka.SSL.Keystore.Password = v-keystore\n"
            "rdkafka.sasl.mechanism = v-mechanism\n"
            "rdkafka.sasl.username = v-username\n"
            "rdkafka.sasl.kerberos.keytab = v-keytab\n"
            "rdkafka.sasl.oauthbearer.client.secret = v-oauth\n"
            "rdkafka.ssl.key.pem = v-pem\n"
            "rdkafka.client.secret.thing = v-thing\n"
            "rdkafka.ssl.ca.location = /etc/ca.pem\n"
            "rdkafka.security.protocol = sasl_ssl\n"
            "[postgres]\nurl = postgresql://u:v-pg@db/hookd\n"
            "[redis]\nurl = redis://:v-redis@127.0.0.1:6379\n"
            "[admin]\ntoken = v-token-0123456789\n",
            NULL);
    char *out = dump_str(cfg);
    ck_assert_msg(strstr(out, "v-") == NULL, "dump shows a secret:\n%s", out);
    const char *shown[] = {"rdkafka.ssl.key.passphrase = <redacted>\n",
                           "rdkafka.SSL.Keystore.Password = <redacted>\n",
                           "rdkafka.sasl.mechanism = <redacted>\n",
                           "rdkafka.sasl.username = <redacted>\n",
                           "rdkafka.sasl.kerberos.keytab = <redacted>\n",
                           "rdkafka.client.secret.thing = <redacted>\n",
                           "rdkafka.ssl.ca.location = /etc/ca.pem\n",
                           "rdkafka.security.protocol = sasl_ssl\n",
                           "[postgres]\nurl = <redacted>\n",
                           "[redis]\nurl = <redacted>\n",
                           "token = <redacted>\n",
                           "unknown_tenant = reject\n"};
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
        ck_assert_msg(strstr(out, shown[i]) != NULL, "dump lacks %s:\n%s", shown[i], out);
    free(out);
}
END_TEST

// Settings that take one of a few words are enums, parsed once; the dump shows the words.
START_TEST(test_word_settings_are_parsed_into_enums)
{
    load_ok("", NULL);
    ck_assert_int_eq(cfg->delivery_http2, HK_HTTP2_OFF);
    ck_assert_int_eq(cfg->dispatch_ordering, HK_ORDERING_NONE);
    ck_assert_int_eq(cfg->dispatch_head_of_line, HK_HEAD_OF_LINE_DEAD_LETTER);
    ck_assert_int_eq(cfg->signing_unknown_tenant, HK_UNKNOWN_TENANT_REJECT);
    reset_cfg();

    char *envp[] = {"HOOKD_DELIVERY_HTTP2=prior_knowledge", NULL};
    load_ok("[delivery]\nhttp2 = auto\n[signing]\nunknown_tenant = default\n"
            "[dispatch]\nordering = key\nhead_of_line = block\n"
            "[endpoint \"https://a.example.com:443\"]\nhttp2 = off\n"
            "[endpoint \"https://b.example.com:443\"]\nhttp2 = \"\"\n"
            "[endpoint \"https://c.example.com:443\"]\ndisabled = no\n",
            envp);
    ck_assert_int_eq(cfg->delivery_http2, HK_HTTP2_PRIOR_KNOWLEDGE); // the environment wins
    ck_assert_int_eq(cfg->signing_unknown_tenant, HK_UNKNOWN_TENANT_DEFAULT);
    ck_assert_int_eq(cfg->dispatch_ordering, HK_ORDERING_KEY);
    ck_assert_int_eq(cfg->dispatch_head_of_line, HK_HEAD_OF_LINE_BLOCK);
    ck_assert_uint_eq(cfg->endpoints_cnt, 3);
    ck_assert_int_eq(cfg->endpoints[0].http2, HK_HTTP2_OFF);
    ck_assert_int_eq(cfg->endpoints[1].http2, HK_HTTP2_UNSET);
    ck_assert_int_eq(cfg->endpoints[2].http2, HK_HTTP2_UNSET); // left out: the default
    char *out = dump_str(cfg);
    ck_assert_msg(strstr(out, "\nhttp2 = prior_knowledge\n") && strstr(out, "\nordering = key\n") &&
                      strstr(out, "\nhead_of_line = block\n") &&
                      strstr(out, "\nunknown_tenant = default\n") &&
                      strstr(out, "\nhttp2 = off\n") && strstr(out, "\nhttp2 = \"\"\n"),
                  "%s", out);
    free(out);
    reset_cfg();

    assert_load_fails("[delivery]\nhttp2 = on\n", NULL,
                      "config line 2: delivery.http2 must be auto, off or prior_knowledge, got "
                      "\"on\"");
    reset_cfg();
    assert_load_fails("[dispatch]\nordering = Key\n", NULL,
                      "config line 2: dispatch.ordering must be none or key, got \"Key\"");
    reset_cfg();
    assert_load_fails("[dispatch]\nhead_of_line = \"\"\n", NULL,
                      "config line 2: dispatch.head_of_line must be block or "
                      "dead_letter_after_attempts, got \"\"");
    reset_cfg();
    assert_load_fails_with("[endpoint \"https://a.example.com:443\"]\nhttp2 = h2\n",
                           "http2 must be auto, off or prior_knowledge, got \"h2\"");
}
END_TEST

START_TEST(test_unknown_tenant_rule)
{
    // Without [tenant] sections every tenant is signed with signing.secret.
    load_ok("[signing]\nsecret = " SECRET32 "\n", NULL);
    ck_assert_int_eq(cfg->signing_unknown_tenant, HK_UNKNOWN_TENANT_REJECT);
    ck_assert_int_eq(hk_config_tenant_known(cfg, "anyone"), 1);
    reset_cfg();

    load_ok("[signing]\nsecret = " SECRET32 "\n[tenant \"acme\"]\nsecret = " SECRET_ACME "\n",
            NULL);
    ck_assert_int_eq(hk_config_tenant_known(cfg, "acme"), 1);
    ck_assert_int_eq(hk_config_tenant_known(cfg, "default"), 1); // jobs that name none
    ck_assert_int_eq(hk_config_tenant_known(cfg, NULL), 1);
    ck_assert_int_eq(hk_config_tenant_known(cfg, "acme2"), 0);
    ck_assert_int_eq(hk_config_tenant_known(cfg, "ACME"), 0);
    ck_assert_int_eq(hk_config_tenant_known(cfg, ""), 0);
    reset_cfg();

    char *envp[] = {"HOOKD_SIGNING_UNKNOWN_TENANT=default", NULL};
    load_ok("[tenant \"acme\"]\nsecret = " SECRET_ACME "\n", envp);
    ck_assert_int_eq(hk_config_tenant_known(cfg, "acme2"), 1);
    reset_cfg();

    assert_load_fails("[signing]\nunknown_tenant = allow\n", NULL,
                      "config line 2: signing.unknown_tenant must be reject or default, got "
                      "\"allow\"");
}
END_TEST

START_TEST(test_full_urls_is_a_reloadable_bool_off_by_default)
{
    load_ok("", NULL);
    ck_assert_int_eq(cfg->log_full_urls, 0);
    hk_config_t *old = cfg;
    cfg = NULL;
    load_ok("[log]\nfull_urls = yes\n", NULL);
    ck_assert_int_eq(cfg->log_full_urls, 1);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), 0);
    hk_config_destroy(old);
    reset_cfg();
    assert_load_fails_with("[log]\nfull_urls = maybe\n", "config line 2: log.full_urls must be");
}
END_TEST

START_TEST(test_dump_redacts_secrets)
{
    load_ok("[kafka]\n"
            "rdkafka.security.protocol = sasl_ssl\n"
            "rdkafka.sasl.password = hunter2-kafka\n"
            "rdkafka.ssl.key.password = hunter3-key\n"
            "rdkafka.sasl.oauthbearer.client.secret = hunter4-oauth\n"
            "[signing]\nsecret = " SECRET32 "\n"
            "[tenant \"acme\"]\nsecret = " SECRET_ACME "\n",
            NULL);
    char *out = dump_str(cfg);
    const char *hidden[] = {&SECRET32[6], &SECRET_ACME[6], "hunter2", "hunter3", "hunter4"};
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
        ck_assert_msg(strstr(out, hidden[i]) == NULL, "dump shows %s:\n%s", hidden[i], out);
    ck_assert_ptr_nonnull(strstr(out, "[signing]\nsecret = <redacted>\n"));
    ck_assert_ptr_nonnull(strstr(out, "[tenant \"acme\"]\nsecret = <redacted>\n"));
    ck_assert_ptr_nonnull(strstr(out, "rdkafka.sasl.password = <redacted>\n"));
    ck_assert_ptr_nonnull(strstr(out, "rdkafka.security.protocol = sasl_ssl\n"));
    char threads[64]; // the dump shows the effective count, "auto" resolved
    snprintf(threads, sizeof(threads), "[delivery]\nthreads = %d\n", auto_threads());
    ck_assert_ptr_nonnull(strstr(out, threads));
    ck_assert_ptr_nonnull(strstr(out, "dlq_topic = jobs.dlq\n"));
    free(out);
}
END_TEST

START_TEST(test_dump_reads_back_as_the_same_config)
{
    load_ok("[kafka]\ntopic = orders\nrdkafka.client.rack = r1\n"
            "[delivery]\nallow_cidrs = 10.0.0.0/8, fd00::/8\ntimeout_ms = 30s\n"
            "[limits]\nmax_job_bytes = 64k\n[admin]\nlisten = \"\"\n",
            NULL);
    char *first = dump_str(cfg);
    hk_config_t *again = hk_config_load(write_conf(first), NULL, err, sizeof(err));
    ck_assert_msg(again != NULL, "%s\n%s", err, first);
    char *second = dump_str(again);
    ck_assert_str_eq(second, first);
    ck_assert_int_eq(hk_config_reloadable_diff(cfg, again, err, sizeof(err)), 0);
    ck_assert_int_eq(again->delivery_timeout_ms, 30000);
    ck_assert_str_eq(again->admin_listen, "");
    free(second);
    free(first);
    hk_config_destroy(again);
}
END_TEST

START_TEST(test_reload_accepts_changes_to_reloadable_keys)
{
    hk_config_t *old = hk_config_load(NULL, NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(old);
    load_ok("[limits]\nmax_job_bytes = 2M\nmax_inflight_jobs = 5\nmax_inflight_bytes = 1G\n"
            "max_partition_span = 7\n[retry]\nmax_attempts = 3\nschedule = 1s,1m\nbase_ms = 5\n"
            "multiplier = 3.5\nmax_delay_ms = 0\ninline_max_ms = 0\n"
            "[breaker]\nwindow = 50\nmin_calls = 50\nfailure_rate = 0.9\n"
            "consecutive_failures = 1\nopen_ms = 1s\nmax_open_ms = 1s\nprobes = 1\n"
            "[lanes]\ninitial_limit = 8\nmin_limit = 2\nmax_limit = 8\n"
            "[endpoint \"https://a.example:443\"]\ndisabled = true\n"
            "[log]\nlevel = debug\nsummary_ms = 0\n[shutdown]\ngrace_ms = 1s\n",
            NULL);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_config_reloadable_diff(cfg, old, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_config_reloadable_diff(old, old, err, sizeof(err)), 0);
    hk_config_destroy(old);
}
END_TEST

START_TEST(test_reload_names_first_fixed_key_that_changed)
{
    hk_config_t *old = hk_config_load(NULL, NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(old);
    load_ok("[delivery]\nthreads = 3\ntimeout_ms = 1s\n[log]\nlevel = warn\n", NULL);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), -1);
    ck_assert_str_eq(err,
                     "delivery.threads cannot be changed by a reload; restart hookd to apply it");
    reset_cfg();

    load_ok("[signing]\nsecret = " SECRET32 "\n", NULL);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), -1);
    ck_assert_str_eq(err,
                     "signing.secret cannot be changed by a reload; restart hookd to apply it");
    reset_cfg();

    load_ok("[kafka]\ntopic = orders\n", NULL); // the derived topics change with it
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "kafka.topic cannot be changed by a reload; restart hookd to apply it");
    hk_config_destroy(old);
}
END_TEST

START_TEST(test_reload_detects_prop_and_tenant_changes)
{
    hk_config_t *old = hk_config_load(
        write_conf("[kafka]\nrdkafka.a = 1\n[tenant \"acme\"]\nsecret = " SECRET_ACME "\n"), NULL,
        err, sizeof(err));
    ck_assert_msg(old != NULL, "%s", err);

    load_ok("[kafka]\nrdkafka.a = 2\n[tenant \"acme\"]\nsecret = " SECRET_ACME "\n", NULL);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), -1);
    ck_assert_str_eq(err,
                     "kafka.rdkafka.a cannot be changed by a reload; restart hookd to apply it");
    reset_cfg();

    load_ok("[kafka]\nrdkafka.a = 1\nrdkafka.b = 1\n[tenant \"acme\"]\nsecret = " SECRET_ACME "\n",
            NULL);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), -1);
    ck_assert_str_eq(err,
                     "kafka.rdkafka.b cannot be changed by a reload; restart hookd to apply it");
    reset_cfg();

    load_ok("[kafka]\nrdkafka.a = 1\n[tenant \"acme\"]\nsecret = " SECRET16 "\n", NULL);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), -1);
    ck_assert_str_eq(err,
                     "[tenant \"acme\"] secret cannot be changed by a reload; restart hookd to "
                     "apply it");
    reset_cfg();

    load_ok("[kafka]\nrdkafka.a = 1\n", NULL); // tenant removed
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "[tenant \"acme\"] secret"));
    hk_config_destroy(old);
}
END_TEST

START_TEST(test_destroy_null_is_a_no_op)
{
    hk_config_destroy(NULL);
}
END_TEST

START_TEST(test_load_without_errstr_still_fails_cleanly)
{
    char *envp[] = {"HOOKD_DELIVERY_THREADS=0", NULL};
    ck_assert_ptr_null(hk_config_load(NULL, envp, NULL, 0));
    ck_assert_ptr_null(hk_config_load("/nonexistent/hookd.conf", NULL, NULL, 0));
}
END_TEST

// ---- [retry], [breaker], [lanes] ----

START_TEST(test_retry_schedule_is_parsed_into_delays)
{
    load_ok("[retry]\nschedule = 5s,30s,2m,10m,30m,1h\n", NULL);
    ck_assert_str_eq(cfg->retry_schedule, "5s,30s,2m,10m,30m,1h");
    const int64_t want[] = {5000, 30000, 120000, 600000, 1800000, 3600000};
    ck_assert_uint_eq(cfg->retry_schedule_cnt, 6);
    for (size_t i = 0; i < 6; i++)
        ck_assert_int_eq(cfg->retry_schedule_ms[i], want[i]);
    reset_cfg();

    // Spaces around entries, no unit (ms) and days, as hk_backoff_parse_schedule takes them.
    load_ok("[retry]\nschedule = \"250, 1s ,1d\"\n", NULL);
    ck_assert_uint_eq(cfg->retry_schedule_cnt, 3);
    ck_assert_int_eq(cfg->retry_schedule_ms[0], 250);
    ck_assert_int_eq(cfg->retry_schedule_ms[1], 1000);
    ck_assert_int_eq(cfg->retry_schedule_ms[2], 86400000);
}
END_TEST

START_TEST(test_later_schedule_replaces_earlier_one)
{
    // The file's list is freed when the later line, then the environment, replace it
    // (the sanitizer build checks nothing leaks).
    char *envp[] = {"HOOKD_RETRY_SCHEDULE=2s", NULL};
    load_ok("[retry]\nschedule = 1s,2s,3s\nschedule = 4s,5s\n", envp);
    ck_assert_str_eq(cfg->retry_schedule, "2s");
    ck_assert_uint_eq(cfg->retry_schedule_cnt, 1);
    ck_assert_int_eq(cfg->retry_schedule_ms[0], 2000);
    reset_cfg();

    // An empty value in the environment goes back to exponential backoff.
    char *clear[] = {"HOOKD_RETRY_SCHEDULE=", NULL};
    load_ok("[retry]\nschedule = 1s,2s\n", clear);
    ck_assert_str_eq(cfg->retry_schedule, "");
    ck_assert_ptr_null(cfg->retry_schedule_ms);
    ck_assert_uint_eq(cfg->retry_schedule_cnt, 0);
}
END_TEST

START_TEST(test_bad_retry_schedule_names_line_and_entry)
{
    assert_load_fails("[kafka]\n\n[retry]\nschedule = 5s,5x\n", NULL,
                      "config line 4: retry.schedule: entry 2 \"5x\": expected a whole number "
                      "with an optional unit ms, s, m, h or d, such as 30s");
    reset_cfg();
    assert_load_fails("[retry]\nschedule = 5s,,30s\n", NULL,
                      "config line 2: retry.schedule: entry 2 is empty: expected delays such as "
                      "5s,30s,2m");
    reset_cfg();
    assert_load_fails_with("[retry]\nschedule = -5s\n", "config line 2: retry.schedule: entry 1");
    reset_cfg();
    assert_load_fails_with("[retry]\nschedule = 1.5s\n", "entry 1 \"1.5s\"");
    reset_cfg();
    assert_load_fails_with("[retry]\nschedule = 99999999999999999999d\n", "delay too large");
    reset_cfg();
    char *envp[] = {"HOOKD_RETRY_SCHEDULE=1s,2w", NULL};
    cfg = hk_config_load(NULL, envp, err, sizeof(err));
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, "env HOOKD_RETRY_SCHEDULE: retry.schedule: entry 2 \"2w\": expected a "
                          "whole number with an optional unit ms, s, m, h or d, such as 30s");
}
END_TEST

START_TEST(test_double_keys_take_decimal_numbers)
{
    static const struct {
        const char *text;
        double want;
    } cases[] = {
        {"0.25", 0.25}, {"1", 1.0},     {"1.0", 1.0},   {".5", 0.5},
        {"5e-1", 0.5},  {"1E-2", 0.01}, {"0.01", 0.01},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "[breaker]\nfailure_rate = %s\n", cases[i].text);
        load_ok(text, NULL);
        ck_assert_double_eq(cfg->breaker_failure_rate, cases[i].want);
        reset_cfg();
    }
    load_ok("[retry]\nmultiplier = 1.5\n", NULL);
    ck_assert_double_eq(cfg->retry_multiplier, 1.5);
    reset_cfg();
    load_ok("[retry]\nmultiplier = 1e+1\n", NULL);
    ck_assert_double_eq(cfg->retry_multiplier, 10.0);
}
END_TEST

START_TEST(test_double_junk_nan_and_inf_are_rejected)
{
    const char *bad[] = {"abc",  "0.5x",   "0.5.5", "1e",  "0x1p-1",   "nan",  "NaN",
                         "-nan", "inf",    "-inf",  "INF", "infinity", "+0.5", "0,5",
                         "5%",   "1e-400", "1e999", "-",   ".",        "\"\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[64], want[160];
        snprintf(text, sizeof(text), "[breaker]\nfailure_rate = %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 "config line 2: breaker.failure_rate must be between 0.01 and 1, got \"%s\"",
                 strcmp(bad[i], "\"\"") == 0 ? "" : bad[i]);
        assert_load_fails(text, NULL, want);
        reset_cfg();
    }
    // No trimming in the environment either.
    char *envp[] = {"HOOKD_BREAKER_FAILURE_RATE= 0.5", NULL};
    assert_load_fails("", envp,
                      "env HOOKD_BREAKER_FAILURE_RATE: breaker.failure_rate must be between 0.01 "
                      "and 1, got \" 0.5\"");
}
END_TEST

START_TEST(test_double_out_of_range_is_rejected)
{
    assert_load_fails("[breaker]\nfailure_rate = 0.009\n", NULL,
                      "config line 2: breaker.failure_rate must be between 0.01 and 1, got "
                      "\"0.009\"");
    reset_cfg();
    assert_load_fails_with("[breaker]\nfailure_rate = 1.0001\n", "got \"1.0001\"");
    reset_cfg();
    assert_load_fails_with("[breaker]\nfailure_rate = -0.5\n", "got \"-0.5\"");
    reset_cfg();
    assert_load_fails("[retry]\nmultiplier = 0.99\n", NULL,
                      "config line 2: retry.multiplier must be between 1 and 10, got \"0.99\"");
    reset_cfg();
    assert_load_fails_with("[retry]\nmultiplier = 10.5\n", "got \"10.5\"");
}
END_TEST

START_TEST(test_new_integer_keys_take_units_and_bounds)
{
    load_ok("[retry]\nbase_ms = 2s\nmax_delay_ms = 168h\ninline_max_ms = 10m\n"
            "[breaker]\nopen_ms = 100ms\nmax_open_ms = 24h\n",
            NULL);
    ck_assert_int_eq(cfg->retry_base_ms, 2000);
    ck_assert_int_eq(cfg->retry_max_delay_ms, 604800000);
    ck_assert_int_eq(cfg->retry_inline_max_ms, 600000);
    ck_assert_int_eq(cfg->breaker_open_ms, 100);
    ck_assert_int_eq(cfg->breaker_max_open_ms, 86400000);
    reset_cfg();

    static const struct {
        const char *text;
        const char *want;
    } bad[] = {
        {"[retry]\nbase_ms = 0\n", "retry.base_ms must be between 1 and 3600000, got \"0\""},
        {"[retry]\nmax_delay_ms = 169h\n",
         "retry.max_delay_ms must be between 0 and 604800000, got \"169h\""},
        {"[retry]\ninline_max_ms = 11m\n",
         "retry.inline_max_ms must be between 0 and 600000, got \"11m\""},
        {"[breaker]\nwindow = 0\n", "breaker.window must be between 1 and 1000, got \"0\""},
        {"[breaker]\nmin_calls = 1001\n",
         "breaker.min_calls must be between 1 and 1000, got \"1001\""},
        {"[breaker]\nconsecutive_failures = 10001\n",
         "breaker.consecutive_failures must be between 1 and 10000, got \"10001\""},
        {"[breaker]\nopen_ms = 99\n", "breaker.open_ms must be between 100 and 3600000, got "
                                      "\"99\""},
        {"[breaker]\nmax_open_ms = 25h\n",
         "breaker.max_open_ms must be between 100 and 86400000, got \"25h\""},
        {"[breaker]\nprobes = 101\n", "breaker.probes must be between 1 and 100, got \"101\""},
        {"[breaker]\nwindow = 2k\n", "breaker.window must be between 1 and 1000, got \"2k\""},
        {"[lanes]\ninitial_limit = 4097\n",
         "lanes.initial_limit must be between 1 and 4096, got \"4097\""},
        {"[lanes]\nmin_limit = 0\n", "lanes.min_limit must be between 1 and 4096, got \"0\""},
        {"[lanes]\nmax_limit = 1.5\n", "lanes.max_limit must be between 1 and 4096, got \"1.5\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[256];
        snprintf(want, sizeof(want), "config line 2: %s", bad[i].want);
        assert_load_fails(bad[i].text, NULL, want);
        reset_cfg();
    }
}
END_TEST

START_TEST(test_env_overrides_retry_and_breaker_keys)
{
    char *envp[] = {"HOOKD_RETRY_SCHEDULE=1s, 10s", "HOOKD_BREAKER_FAILURE_RATE=0.25",
                    "HOOKD_RETRY_INLINE_MAX_MS=1m", "HOOKD_RETRY_MULTIPLIER=3",
                    "HOOKD_LANES_MAX_LIMIT=64",     NULL};
    load_ok("[retry]\nschedule = 5s\ninline_max_ms = 5s\n[breaker]\nfailure_rate = 0.9\n", envp);
    ck_assert_str_eq(cfg->retry_schedule, "1s, 10s");
    ck_assert_uint_eq(cfg->retry_schedule_cnt, 2);
    ck_assert_int_eq(cfg->retry_schedule_ms[0], 1000);
    ck_assert_int_eq(cfg->retry_schedule_ms[1], 10000);
    ck_assert_double_eq(cfg->breaker_failure_rate, 0.25);
    ck_assert_int_eq(cfg->retry_inline_max_ms, 60000);
    ck_assert_double_eq(cfg->retry_multiplier, 3.0);
    ck_assert_int_eq(cfg->lanes_max_limit, 64);
    reset_cfg();

    char *bad[] = {"HOOKD_RETRY_INLINE_MAX_MS=1h", NULL};
    assert_load_fails("", bad,
                      "env HOOKD_RETRY_INLINE_MAX_MS: retry.inline_max_ms must be between 0 and "
                      "600000, got \"1h\"");
    reset_cfg();
    char *nan[] = {"HOOKD_BREAKER_FAILURE_RATE=nan", NULL};
    assert_load_fails("", nan,
                      "env HOOKD_BREAKER_FAILURE_RATE: breaker.failure_rate must be between 0.01 "
                      "and 1, got \"nan\"");
}
END_TEST

START_TEST(test_breaker_keys_must_be_consistent)
{
    assert_load_fails("[breaker]\nwindow = 5\n", NULL,
                      "config: breaker.min_calls (10) must not exceed breaker.window (5)");
    reset_cfg();
    assert_load_fails("[breaker]\nopen_ms = 11m\n", NULL,
                      "config: breaker.open_ms (660000) must not exceed breaker.max_open_ms "
                      "(600000)");
    reset_cfg();
    // The environment can break a rule the file keeps.
    char *envp[] = {"HOOKD_BREAKER_MAX_OPEN_MS=1s", NULL};
    assert_load_fails("[breaker]\nopen_ms = 1s\nmax_open_ms = 1m\n[breaker]\nopen_ms = 2s\n", envp,
                      "config: breaker.open_ms (2000) must not exceed breaker.max_open_ms (1000)");
    reset_cfg();
    load_ok("[breaker]\nwindow = 7\nmin_calls = 7\nopen_ms = 1s\nmax_open_ms = 1s\n", NULL);
}
END_TEST

START_TEST(test_lane_limits_must_be_ordered)
{
    assert_load_fails("[lanes]\nmin_limit = 64\n", NULL,
                      "config: lanes.min_limit (64) must not exceed lanes.initial_limit (32)");
    reset_cfg();
    assert_load_fails("[lanes]\ninitial_limit = 300\n", NULL,
                      "config: lanes.initial_limit (300) must not exceed lanes.max_limit (256)");
    reset_cfg();
    assert_load_fails("[lanes]\nmax_limit = 16\n", NULL,
                      "config: lanes.initial_limit (32) must not exceed lanes.max_limit (16)");
    reset_cfg();
    load_ok("[lanes]\ninitial_limit = 4\nmin_limit = 4\nmax_limit = 4\n", NULL);
    ck_assert_int_eq(cfg->lanes_initial_limit, 4);
}
END_TEST

// ---- [endpoint "..."] ----

START_TEST(test_endpoint_rate_and_burst)
{
    load_ok("[endpoint \"http://127.0.0.1:8080\"]\nrate = 200/s\nburst = 50\n"
            "[endpoint \"http://127.0.0.1:8081\"]\nrate = 1500/m\n",
            NULL);
    ck_assert_str_eq(cfg->endpoints[0].rate, "200/s");
    ck_assert_int_eq(cfg->endpoints[0].burst, 50);
    ck_assert_str_eq(cfg->endpoints[1].rate, "1500/m");
    ck_assert_int_eq(cfg->endpoints[1].burst, 1); // default
    double r = -1;
    ck_assert_int_eq(hk_config_parse_rate("200/s", &r), 0);
    ck_assert_double_eq(r, 200);
    ck_assert_int_eq(hk_config_parse_rate("1500/m", &r), 0);
    ck_assert_double_eq(r, 25);
    ck_assert_int_eq(hk_config_parse_rate("", &r), 0);
    ck_assert_double_eq(r, 0);
    const char *bad[] = {"200", "0/s", "-1/s", "abc/s", "200/d", "200/s ", "nan/s", "1e9/s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(hk_config_parse_rate(bad[i], &r) == -1, "%s accepted", bad[i]);
    reset_cfg();
    assert_load_fails_with("[endpoint \"http://127.0.0.1:8080\"]\nrate = 200\n",
                           "must be empty or a rate such as 200/s");
    reset_cfg();
    assert_load_fails_with("[endpoint \"http://127.0.0.1:8080\"]\nburst = 0\n",
                           "burst must be between 1 and 1000000");
}
END_TEST

START_TEST(test_store_sections)
{
    load_ok("[postgres]\nurl = host=/tmp dbname=hookd password=hunter2\n"
            "[redis]\nurl = redis://:pw@127.0.0.1:6390/2\ntimeout_ms = 1s\n"
            "[batch]\nconcurrency = 8\ncheckpoint_items = 50\ncheckpoint_ms = 250ms\n",
            NULL);
    ck_assert_str_eq(cfg->postgres_url, "host=/tmp dbname=hookd password=hunter2");
    ck_assert_str_eq(cfg->redis_url, "redis://:pw@127.0.0.1:6390/2");
    ck_assert_int_eq(cfg->redis_timeout_ms, 1000);
    ck_assert_int_eq(cfg->batch_concurrency, 8);
    ck_assert_int_eq(cfg->batch_checkpoint_items, 50);
    ck_assert_int_eq(cfg->batch_checkpoint_ms, 250);
    char *d = dump_str(cfg);
    ck_assert_ptr_null(strstr(d, "hunter2"));
    ck_assert_ptr_null(strstr(d, ":pw@"));
    free(d);
    reset_cfg();
    assert_load_fails_with("[redis]\nurl = 127.0.0.1:6379\n", "must be empty, redis://");
}
END_TEST

START_TEST(test_endpoint_sections_are_read)
{
    load_ok("[endpoint \"https://api.example.com:443\"]\ndisabled = true\n"
            "[delivery]\nthreads = 3\n"
            "[endpoint \"http://10.1.2.3:8080\"]\n"
            "[endpoint \"http://[::1]:9000\"]\ndisabled = no\n"
            "[endpoint \"https://api.example.com:443\"] # the same one again\ndisabled = off\n"
            "disabled = on\n",
            NULL);
    ck_assert_int_eq(cfg->delivery_threads, 3);
    ck_assert_uint_eq(cfg->endpoints_cnt, 3);
    ck_assert_str_eq(cfg->endpoints[0].endpoint, "https://api.example.com:443");
    ck_assert_int_eq(cfg->endpoints[0].disabled, 1); // the last value wins
    ck_assert_str_eq(cfg->endpoints[1].endpoint, "http://10.1.2.3:8080");
    ck_assert_int_eq(cfg->endpoints[1].disabled, 0); // no keys: the defaults
    ck_assert_str_eq(cfg->endpoints[2].endpoint, "http://[::1]:9000");
    ck_assert_int_eq(cfg->endpoints[2].disabled, 0);

    const hk_endpoint_conf_t *ep = hk_config_endpoint(cfg, "https://api.example.com:443");
    ck_assert_ptr_eq(ep, &cfg->endpoints[0]);
    ck_assert_ptr_eq(hk_config_endpoint(cfg, "http://[::1]:9000"), &cfg->endpoints[2]);
    ck_assert_ptr_null(hk_config_endpoint(cfg, "https://api.example.com:8443"));
    ck_assert_ptr_null(hk_config_endpoint(cfg, NULL));
}
END_TEST

START_TEST(test_endpoint_names_are_canonical)
{
    load_ok("[endpoint \"HTTPS://API.Example.COM:0443\"]\ndisabled = 1\n"
            "[endpoint \"https://api.example.com:443\"]\n"
            "[endpoint \"http://[2001:DB8:0:0:0:0:0:10]:8080\"]\n"
            "[endpoint \"http://[2001:db8::10]:8080\"]\n"
            "[endpoint \"https://hooks.a-rather-long-customer-name.example.com:8443\"]\n",
            NULL);
    ck_assert_uint_eq(cfg->endpoints_cnt, 3);
    ck_assert_str_eq(cfg->endpoints[0].endpoint, "https://api.example.com:443");
    ck_assert_int_eq(cfg->endpoints[0].disabled, 1);
    ck_assert_str_eq(cfg->endpoints[1].endpoint, "http://[2001:db8::10]:8080");
    // Longer than the 49 characters inih keeps of a section name.
    ck_assert_str_eq(cfg->endpoints[2].endpoint,
                     "https://hooks.a-rather-long-customer-name.example.com:8443");
}
END_TEST

START_TEST(test_bad_endpoint_names_are_rejected)
{
    const char *bad[] = {
        "x",
        "api.example.com:443",
        "https://api.example.com",
        "https://api.example.com:",
        "https://api.example.com:0",
        "https://api.example.com:65536",
        "https://api.example.com:443/",
        "https://api.example.com:443/hooks",
        "https://api.example.com:443?x=1",
        "https://api.example.com:https",
        "https://api.example.com:+443",
        "https://api.example.com:000443",
        "ftp://api.example.com:21",
        "https//api.example.com:443",
        "https://:443",
        "https://user@api.example.com:443",
        "https://api_example.com:443",
        "https://.example.com:443",
        "https://-example.com:443",
        "https://api.example.com :443",
        "https://::1:443",
        "https://[::1:443",
        "https://[::g]:443",
        "https://[]:443",
        "https://[::1]443",
        "https://[fe80::1%eth0]:443",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256], want[512];
        snprintf(text, sizeof(text), "[kafka]\n[endpoint \"%s\"]\ndisabled = true\n", bad[i]);
        snprintf(want, sizeof(want),
                 "config line 2: [endpoint \"%s\"]: must be scheme://host:port, e.g. "
                 "https://api.example.com:443",
                 bad[i]);
        assert_load_fails(text, NULL, want);
        reset_cfg();
    }
    // Checked at the header, with or without keys after it.
    assert_load_fails("[endpoint \"x\"]\n", NULL,
                      "config line 1: [endpoint \"x\"]: must be scheme://host:port, e.g. "
                      "https://api.example.com:443");
}
END_TEST

START_TEST(test_endpoint_section_must_be_quoted)
{
    assert_load_fails("[endpoint]\ndisabled = true\n", NULL,
                      "config line 1: section [endpoint] must be written [endpoint "
                      "\"<scheme://host:port>\"]");
    reset_cfg();
    assert_load_fails("[endpoint https://a.example:443]\n", NULL,
                      "config line 1: section [endpoint https://a.example:443] must be written "
                      "[endpoint \"<scheme://host:port>\"]");
    reset_cfg();
    assert_load_fails_with("[endpoint \"https://a.example:443\" \"x\"]\n", "must be written");
    reset_cfg();
    assert_load_fails_with("[endpoint \"\"]\n", "must be written");
    reset_cfg();
    assert_load_fails("[endpoints]\ndisabled = true\n", NULL,
                      "config line 2: unknown section [endpoints]");
}
END_TEST

START_TEST(test_endpoint_disabled_takes_boolean_words)
{
    static const struct {
        const char *word;
        int want;
    } cases[] = {
        {"true", 1},  {"TRUE", 1},  {"yes", 1}, {"On", 1},  {"1", 1}, {"\"yes\"", 1},
        {"false", 0}, {"False", 0}, {"no", 0},  {"OFF", 0}, {"0", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[endpoint \"https://a.example:443\"]\ndisabled = %s\n",
                 cases[i].word);
        load_ok(text, NULL);
        ck_assert_msg(cfg->endpoints[0].disabled == cases[i].want, "%s", cases[i].word);
        reset_cfg();
    }
}
END_TEST

START_TEST(test_bad_endpoint_disabled_is_rejected)
{
    const char *bad[] = {"maybe", "2", "y", "n", "truee", "enabled", "\"\"", "-1", "t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[128], want[256];
        snprintf(text, sizeof(text), "# x\n[endpoint \"https://a.example:443\"]\ndisabled = %s\n",
                 bad[i]);
        snprintf(want, sizeof(want),
                 "config line 3: [endpoint \"https://a.example:443\"] disabled must be true or "
                 "false (or yes/no, on/off, 1/0), got \"%s\"",
                 strcmp(bad[i], "\"\"") == 0 ? "" : bad[i]);
        assert_load_fails(text, NULL, want);
        reset_cfg();
    }
}
END_TEST

START_TEST(test_unknown_endpoint_key_is_rejected)
{
    assert_load_fails(
        "[endpoint \"https://a.example:443\"]\ndisabled = true\nratelimit = 5\n", NULL,
        "config line 3: unknown key \"ratelimit\" in [endpoint \"https://a.example:443\"]");
}
END_TEST

START_TEST(test_section_headers_are_read_whole)
{
    // Longer than inih keeps (49 characters), and longer than its 200-byte line.
    char name[300], text[512];
    memset(name, 'a', 250);
    name[250] = '\0';
    snprintf(text, sizeof(text), "[tenant \"%s\"]\nsecret = " SECRET_ACME "\n", name);
    load_ok(text, NULL);
    ck_assert_uint_eq(cfg->tenant_secrets_cnt, 1);
    ck_assert_str_eq(cfg->tenant_secrets[0].key, name);
    ck_assert_str_eq(hk_config_tenant_secret(cfg, name), SECRET_ACME);
    reset_cfg();

    // Comments after the header, indentation and CRLF are fine.
    load_ok("  [delivery] ; threads\r\nthreads = 5\r\n[log]\t# level\nlevel = warn\n", NULL);
    ck_assert_int_eq(cfg->delivery_threads, 5);
    ck_assert_int_eq(cfg->log_level, HK_LOG_WARN);
    reset_cfg();

    // Anything else after the ']' is refused rather than ignored.
    assert_load_fails("[delivery]\nthreads = 5\n[log] level = warn\n", NULL,
                      "config line 3: expected [section], key = value or a # comment");
    reset_cfg();
    assert_load_fails("[endpoint \"https://[::1]:443]\ndisabled = true\n", NULL,
                      "config line 1: expected [section], key = value or a # comment");
    reset_cfg();
    char huge[700] = "[tenant \"";
    memset(huge + 9, 'a', 600);
    strcpy(huge + 609, "\"]\nsecret = \"\"\n");
    assert_load_fails(huge, NULL, "config line 1: section name is longer than 511 characters");
}
END_TEST

START_TEST(test_dump_shows_new_keys_and_endpoints)
{
    load_ok("[retry]\nschedule = 5s, 30s,2m\nmultiplier = 1.5\n"
            "[breaker]\nfailure_rate = 0.125\n"
            "[endpoint \"https://api.example.com:443\"]\ndisabled = yes\n"
            "[endpoint \"http://[::1]:8080\"]\n",
            NULL);
    char *out = dump_str(cfg);
    const char *want[] = {
        "[retry]\nmax_attempts = 10\nschedule = 5s, 30s,2m\nbase_ms = 1000\nmultiplier = 1.5\n"
        "max_delay_ms = 3600000\ninline_max_ms = 30000\n\n",
        "[breaker]\nwindow = 20\nmin_calls = 10\nfailure_rate = 0.125\n"
        "consecutive_failures = 5\nopen_ms = 30000\nmax_open_ms = 600000\nprobes = 3\n\n",
        "[lanes]\ninitial_limit = 32\nmin_limit = 1\nmax_limit = 256\n\n",
        "\n[endpoint \"https://api.example.com:443\"]\ndisabled = true\nrate = \"\"\nburst = 1\n"
        "ca_file = \"\"\nclient_cert = \"\"\nclient_key = \"\"\nhttp2 = \"\"\n"
        "\n[endpoint \"http://[::1]:8080\"]\ndisabled = false\nrate = \"\"\nburst = 1\n"
        "ca_file = \"\"\nclient_cert = \"\"\nclient_key = \"\"\nhttp2 = \"\"\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_msg(strstr(out, want[i]) != NULL, "dump lacks:\n%s\ndump:\n%s", want[i], out);
    free(out);
    reset_cfg();

    load_ok("", NULL);
    out = dump_str(cfg);
    ck_assert_ptr_nonnull(strstr(out, "schedule = \"\"\n"));
    ck_assert_ptr_nonnull(strstr(out, "multiplier = 2\n"));
    ck_assert_ptr_nonnull(strstr(out, "failure_rate = 0.5\n"));
    ck_assert_ptr_null(strstr(out, "[endpoint"));
    free(out);
}
END_TEST

START_TEST(test_dump_round_trips_doubles_and_endpoints)
{
    load_ok("[retry]\nschedule = 1s,1h\nmultiplier = 1.23456789\n"
            "[breaker]\nfailure_rate = 0.3333333333333333\n"
            "[endpoint \"HTTPS://A.example:443\"]\ndisabled = on\n",
            NULL);
    char *first = dump_str(cfg);
    hk_config_t *again = hk_config_load(write_conf(first), NULL, err, sizeof(err));
    ck_assert_msg(again != NULL, "%s\n%s", err, first);
    char *second = dump_str(again);
    ck_assert_str_eq(second, first);
    ck_assert_double_eq(again->retry_multiplier, 1.23456789);
    ck_assert_double_eq(again->breaker_failure_rate, 0.3333333333333333);
    ck_assert_uint_eq(again->retry_schedule_cnt, 2);
    ck_assert_int_eq(again->retry_schedule_ms[1], 3600000);
    ck_assert_uint_eq(again->endpoints_cnt, 1);
    ck_assert_str_eq(again->endpoints[0].endpoint, "https://a.example:443");
    ck_assert_int_eq(again->endpoints[0].disabled, 1);
    free(second);
    free(first);
    hk_config_destroy(again);
}
END_TEST

START_TEST(test_reload_accepts_endpoint_changes)
{
    hk_config_t *old =
        hk_config_load(write_conf("[endpoint \"https://a.example:443\"]\ndisabled = false\n"
                                  "[endpoint \"https://b.example:443\"]\ndisabled = true\n"),
                       NULL, err, sizeof(err));
    ck_assert_msg(old != NULL, "%s", err);
    // a flips, b goes away, c is new.
    load_ok("[endpoint \"https://a.example:443\"]\ndisabled = true\n"
            "[endpoint \"https://c.example:443\"]\ndisabled = true\n",
            NULL);
    ck_assert_int_eq(hk_config_reloadable_diff(old, cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_config_reloadable_diff(cfg, old, err, sizeof(err)), 0);
    hk_config_destroy(old);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);

    tcase_add_test(tc, test_defaults_without_file);
    tcase_add_test(tc, test_empty_file_gives_defaults);
    tcase_add_test(tc, test_threads_auto_is_the_cpus_and_a_number_wins);
    tcase_add_test(tc, test_sample_hookd_conf_sets_every_key_to_its_default);
    tcase_add_test(tc, test_dev_conf_loads);
    tcase_add_test(tc, test_file_overrides_defaults);
    tcase_add_test(tc, test_derived_topics_follow_topic);
    tcase_add_test(tc, test_quoted_values_are_unquoted);
    tcase_add_test(tc, test_later_duplicate_key_wins);
    tcase_add_test(tc, test_crlf_line_endings_are_accepted);

    tcase_add_test(tc, test_env_overrides_file);
    tcase_add_test(tc, test_env_overrides_defaults_without_file);
    tcase_add_test(tc, test_env_names_are_upper_section_and_key);
    tcase_add_test(tc, test_env_lookalike_names_are_ignored);
    tcase_add_test(tc, test_env_topic_feeds_derived_topics);
    tcase_add_test(tc, test_env_bad_value_names_the_variable);
    tcase_add_test(tc, test_env_value_is_not_trimmed);

    tcase_add_test(tc, test_non_number_is_rejected_with_its_line);
    tcase_add_test(tc, test_value_below_min_is_rejected);
    tcase_add_test(tc, test_value_above_max_is_rejected);
    tcase_add_test(tc, test_overflow_is_rejected);
    tcase_add_test(tc, test_negative_is_rejected);
    tcase_add_test(tc, test_trailing_junk_is_rejected);
    tcase_add_test(tc, test_empty_integer_is_rejected);
    tcase_add_test(tc, test_byte_suffixes_are_kib_based);
    tcase_add_test(tc, test_ms_suffixes_convert_to_ms);
    tcase_add_test(tc, test_wrong_suffix_is_rejected);
    tcase_add_test(tc, test_suffixed_value_out_of_range_is_rejected);
    tcase_add_test(tc, test_every_log_level_is_accepted);
    tcase_add_test(tc, test_bad_log_level_is_rejected);
    tcase_add_test(tc, test_signing_secret_rotation_list_is_accepted);
    tcase_add_test(tc, test_bad_signing_secret_is_rejected_without_echo);

    tcase_add_test(tc, test_unknown_key_names_line_and_section);
    tcase_add_test(tc, test_unknown_section_is_rejected);
    tcase_add_test(tc, test_key_outside_a_section_is_rejected);
    tcase_add_test(tc, test_missing_file_names_path_and_reason);
    tcase_add_test(tc, test_syntax_error_names_its_line);
    tcase_add_test(tc, test_first_error_is_the_one_reported);
    tcase_add_test(tc, test_indented_continuation_line_is_rejected);
    tcase_add_test(tc, test_long_lines_are_read_whole);
    tcase_add_test(tc, test_long_bad_value_names_its_line);

    tcase_add_test(tc, test_rdkafka_props_pass_through_in_file_order);
    tcase_add_test(tc, test_rdkafka_prop_needs_a_name_and_the_kafka_section);
    tcase_add_test(tc, test_tenant_secrets_and_fallback_to_default);
    tcase_add_test(tc, test_tenant_without_own_secret_and_no_default_is_unsigned);
    tcase_add_test(tc, test_bad_tenant_sections_are_rejected);
    tcase_add_test(tc, test_bad_allow_cidrs_are_rejected);
    tcase_add_test(tc, test_admin_listen_must_be_host_port_or_empty);
    tcase_add_test(tc, test_bad_topic_names_are_rejected);
    tcase_add_test(tc, test_topics_must_differ);
    tcase_add_test(tc, test_job_bytes_must_fit_inflight_bytes);

    tcase_add_test(tc, test_retry_schedule_is_parsed_into_delays);
    tcase_add_test(tc, test_later_schedule_replaces_earlier_one);
    tcase_add_test(tc, test_bad_retry_schedule_names_line_and_entry);
    tcase_add_test(tc, test_double_keys_take_decimal_numbers);
    tcase_add_test(tc, test_double_junk_nan_and_inf_are_rejected);
    tcase_add_test(tc, test_double_out_of_range_is_rejected);
    tcase_add_test(tc, test_new_integer_keys_take_units_and_bounds);
    tcase_add_test(tc, test_env_overrides_retry_and_breaker_keys);
    tcase_add_test(tc, test_breaker_keys_must_be_consistent);
    tcase_add_test(tc, test_lane_limits_must_be_ordered);
    tcase_add_test(tc, test_endpoint_sections_are_read);
    tcase_add_test(tc, test_endpoint_rate_and_burst);
    tcase_add_test(tc, test_store_sections);
    tcase_add_test(tc, test_endpoint_names_are_canonical);
    tcase_add_test(tc, test_bad_endpoint_names_are_rejected);
    tcase_add_test(tc, test_endpoint_section_must_be_quoted);
    tcase_add_test(tc, test_endpoint_disabled_takes_boolean_words);
    tcase_add_test(tc, test_bad_endpoint_disabled_is_rejected);
    tcase_add_test(tc, test_unknown_endpoint_key_is_rejected);
    tcase_add_test(tc, test_section_headers_are_read_whole);
    tcase_add_test(tc, test_dump_shows_new_keys_and_endpoints);
    tcase_add_test(tc, test_dump_round_trips_doubles_and_endpoints);
    tcase_add_test(tc, test_reload_accepts_endpoint_changes);

    tcase_add_test(tc, test_dump_redacts_secrets);
    tcase_add_test(tc, test_dump_redacts_every_credential_shaped_key);
    tcase_add_test(tc, test_secret_list_at_the_limit_loads_and_one_past_is_refused);
    tcase_add_test(tc, test_check_config_refuses_too_many_secrets_and_redacts);
    tcase_add_test(tc, test_unknown_tenant_rule);
    tcase_add_test(tc, test_word_settings_are_parsed_into_enums);
    tcase_add_test(tc, test_full_urls_is_a_reloadable_bool_off_by_default);
    tcase_add_test(tc, test_dump_reads_back_as_the_same_config);
    tcase_add_test(tc, test_reload_accepts_changes_to_reloadable_keys);
    tcase_add_test(tc, test_reload_names_first_fixed_key_that_changed);
    tcase_add_test(tc, test_reload_detects_prop_and_tenant_changes);
    tcase_add_test(tc, test_destroy_null_is_a_no_op);
    tcase_add_test(tc, test_load_without_errstr_still_fails_cleanly);

    suite_add_tcase(s, tc);
    return s;
}
