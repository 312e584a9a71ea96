#include "tests/support/harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/pgsvc.h"
#include "tests/support/sink.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/sign.h"

extern char **environ;

int hk_th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

int64_t hk_th_now_ms(void)
{
    return hk_clock_mono_ms();
}

void hk_th_sleep_ms(int ms)
{
    hk_clock_sleep_ms(ms);
}

long long hk_th_proc_status_bytes(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    long long kib = -1;
    size_t len = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, len) == 0 && line[len] == ':' &&
            sscanf(line + len + 1, "%lld", &kib) == 1)
            break;
    fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

long long hk_th_proc_cpu_ticks(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    // The command name (field 2) may hold spaces and parentheses: skip to its end.
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    // Fields 3..13 after the name, then utime (14) and stime (15).
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void hk_th_rmtree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int hk_th_wait_for(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = hk_th_now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg))
            return 1;
        if (hk_th_now_ms() >= deadline)
            return 0;
        hk_th_sleep_ms(50);
    }
}

// ---- where the programs are (decided at run time, see harness.h) ----

#ifndef HK_TH_INSTALL_SBINDIR
#define HK_TH_INSTALL_SBINDIR "/usr/sbin"
#endif

static int is_executable(const char *path)
{
    return path != NULL && access(path, X_OK) == 0;
}

// The directory part of `path` ("." when it has none) into buf.
static void dir_of(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(buf, size, ".");
    else
        snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

const char *hk_th_hookd_bin(void)
{
    static char buf[4096];
    const char *env = getenv("HOOKD_BIN");
    if (env != NULL && env[0] != '\0')
        return env;
    // A build tree: the suites and benches sit beside build/hookd.
    char self[4096], dir[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        dir_of(self, dir, sizeof(dir));
        if (snprintf(buf, sizeof(buf), "%s/hookd", dir) < (int)sizeof(buf) && is_executable(buf))
            return buf;
    }
    return HK_TH_INSTALL_SBINDIR "/hookd";
}

// The first of `rel` (paths relative to hookd's directory) that is executable.
static const char *beside_hookd(const char *const rel[], char *buf, size_t size)
{
    char dir[4096];
    dir_of(hk_th_hookd_bin(), dir, sizeof(dir));
    for (int i = 0; rel[i]; i++) {
        if (snprintf(buf, size, "%s/%s", dir, rel[i]) < (int)size && is_executable(buf))
            return buf;
    }
    return NULL;
}

const char *hk_th_mockkafka_bin(void)
{
    static char buf[4096];
    const char *env = getenv("HOOKD_MOCKKAFKA");
    if (env != NULL && env[0] != '\0')
        return env;
    // Installed: <prefix>/sbin/hookd and <prefix>/libexec/hookd/hookd-mockkafka;
    // a build tree: build/hookd and build/hk-mockkafka.
    static const char *const rel[] = {"../libexec/hookd/hookd-mockkafka", "hookd-mockkafka",
                                      "hk-mockkafka", NULL};
    return beside_hookd(rel, buf, sizeof(buf));
}

const char *hk_th_kafka_script(void)
{
    static char buf[4096];
    const char *env = getenv("HOOKD_KAFKA_SCRIPT");
    if (env != NULL && env[0] != '\0')
        return env;
    static const char *const rel[] = {"../libexec/hookd/kafka", "../scripts/kafka", NULL};
    return beside_hookd(rel, buf, sizeof(buf));
}

static int spawn(hk_th_proc_t *p, char *const argv[], char *const env[], const char *log,
                 int *stdout_pipe)
{
    int in[2];
    if (pipe(in) != 0)
        return -1;
    int out[2] = {-1, -1};
    if (stdout_pipe && pipe(out) != 0)
        return -1;

    size_t n_env = 0, n_extra = 0;
    while (environ[n_env])
        n_env++;
    while (env && env[n_extra])
        n_extra++;
    char **envp = calloc(n_env + n_extra + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        // Drop inherited HOOKD_* so a developer's shell cannot change a test.
        if (strncmp(environ[i], "HOOKD_", 6) != 0)
            envp[k++] = environ[i];
    }
    for (size_t i = 0; i < n_extra; i++)
        envp[k++] = env[i];
    envp[k] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(envp);
        return -1;
    }
    if (pid == 0) {
        // The child dies with the thread that started it: a test killed by ctest's
        // timeout (or SIGKILL) has no teardown, and a hookd left running would load
        // the machine and hold its group for the suites after it. Parent already gone
        // between fork and prctl: nothing would signal us.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(in[0], STDIN_FILENO);
        close(in[1]);
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (stdout_pipe) {
            dup2(out[1], STDOUT_FILENO);
            close(out[0]);
        } else {
            dup2(fd, STDOUT_FILENO);
        }
        dup2(fd, STDERR_FILENO);
        execve(argv[0], argv, envp);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(envp);
    close(in[0]);
    p->pid = pid;
    p->stdin_fd = in[1];
    fcntl(p->stdin_fd, F_SETFD, FD_CLOEXEC);
    snprintf(p->log, sizeof(p->log), "%s", log ? log : "/dev/null");
    if (stdout_pipe) {
        close(out[1]);
        *stdout_pipe = out[0];
    }
    return 0;
}

int hk_th_spawn(hk_th_proc_t *p, char *const argv[], char *const env[], const char *log)
{
    return spawn(p, argv, env, log, NULL);
}

int hk_th_wait(hk_th_proc_t *p, int timeout_ms)
{
    int64_t deadline = hk_th_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            if (p->stdin_fd >= 0)
                close(p->stdin_fd);
            p->stdin_fd = -1;
            return status;
        }
        if (r < 0 || hk_th_now_ms() >= deadline)
            return -1;
        hk_th_sleep_ms(10);
    }
}

void hk_th_kill(hk_th_proc_t *p, int sig)
{
    if (p->pid > 0)
        kill(p->pid, sig);
}

int hk_th_stop(hk_th_proc_t *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    hk_th_kill(p, SIGTERM);
    int status = hk_th_wait(p, timeout_ms);
    if (status == -1) {
        hk_th_kill(p, SIGKILL);
        hk_th_wait(p, 5000);
    }
    return status;
}

int hk_th_exited_ok(int status)
{
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Real-Kafka mode (HK_TEST_KAFKA=real, HK_TEST_KAFKA_BOOTSTRAP=host:port,...):
// suites share one cluster and run in parallel, and every test names its topics
// "jobs" and its group "hookd". So each hk_th_kafka_start opens a namespace, a
// prefix "t<pid>_<n>_" put before every topic and group name the harness hands
// to the cluster or to hookd; hk_th_kafka_stop deletes its topics and groups.
// On the mock there is no namespace and names pass unchanged.
#define NS_MAX_TOPICS 32

static struct {
    char prefix[48]; // "" when no namespace is open
    char brokers[512];
    char *topics[NS_MAX_TOPICS]; // the prefixed names created, deleted at stop
    int topic_cnt;
    unsigned seq;
} ns;

static int ns_applies(const char *brokers)
{
    return ns.prefix[0] && brokers && strcmp(brokers, ns.brokers) == 0;
}

// `name` inside the open namespace, in `buf`; `name` itself when there is none
// or it is already prefixed (so mapping twice is harmless).
static const char *ns_map(const char *brokers, const char *name, char *buf, size_t size)
{
    if (!ns_applies(brokers) || !name || !name[0] ||
        strncmp(name, ns.prefix, strlen(ns.prefix)) == 0)
        return name;
    snprintf(buf, size, "%s%s", ns.prefix, name);
    return buf;
}

const char *hk_th_kafka_name(const char *name)
{
    static char buf[4][320];
    static int next;
    char *b = buf[next++ % 4];
    return ns_map(ns.brokers, name, b, sizeof(buf[0]));
}

int hk_th_kafka_real(void)
{
    const char *mode = getenv("HK_TEST_KAFKA");
    return mode && strcmp(mode, "real") == 0;
}

static rd_kafka_t *admin_client(const char *brokers)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka admin: %s\n", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

// Waits up to timeout_ms for the admin result of type `type` on `q`.
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type, int timeout_ms)
{
    int64_t deadline = hk_th_now_ms() + timeout_ms;
    while (hk_th_now_ms() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 200);
        if (!ev)
            continue;
        if (rd_kafka_event_type(ev) == type)
            return ev;
        rd_kafka_event_destroy(ev);
    }
    return NULL;
}

// Every partition of `topic` has a leader in the metadata (so a produce or a
// group join right after does not start with errors).
static int topic_led(rd_kafka_t *rk, const char *topic, int partitions)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int ok = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt == partitions) {
            ok = 1;
            for (int i = 0; i < partitions; i++)
                if (md->topics[0].partitions[i].err || md->topics[0].partitions[i].leader < 0)
                    ok = 0;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return ok;
}

// Creates the namespace's topics ("name:partitions", 1 partition when no count)
// with the cluster's default replication factor; 0 when all exist and are led.
static int real_create_topics(const char *const topics[])
{
    rd_kafka_t *rk = admin_client(ns.brokers);
    if (!rk)
        return -1;
    char err[256];
    rd_kafka_NewTopic_t *nt[NS_MAX_TOPICS];
    int parts[NS_MAX_TOPICS];
    int n = 0, rc = 0;
    for (int i = 0; topics[i] && n < NS_MAX_TOPICS; i++) {
        char name[256];
        const char *colon = strchr(topics[i], ':');
        size_t len = colon ? (size_t)(colon - topics[i]) : strlen(topics[i]);
        snprintf(name, sizeof(name), "%s%.*s", ns.prefix, (int)len, topics[i]);
        parts[n] = colon ? atoi(colon + 1) : 1;
        nt[n] = rd_kafka_NewTopic_new(name, parts[n], -1, err, sizeof(err));
        if (!nt[n]) {
            fprintf(stderr, "kafka: topic %s: %s\n", name, err);
            rc = -1;
            break;
        }
        ns.topics[ns.topic_cnt++] = strdup(name);
        n++;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    if (rc == 0) {
        rd_kafka_AdminOptions_t *opt =
            rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, err, sizeof(err));
        rd_kafka_CreateTopics(rk, nt, (size_t)n, opt, q);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, 60000);
        if (!ev || rd_kafka_event_error(ev)) {
            fprintf(stderr, "kafka: CreateTopics: %s\n",
                    ev ? rd_kafka_event_error_string(ev) : "no answer");
            rc = -1;
        } else {
            size_t cnt;
            const rd_kafka_topic_result_t **res =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
            for (size_t i = 0; i < cnt; i++)
                if (rd_kafka_topic_result_error(res[i])) {
                    fprintf(stderr, "kafka: create %s: %s\n", rd_kafka_topic_result_name(res[i]),
                            rd_kafka_topic_result_error_string(res[i]));
                    rc = -1;
                }
        }
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    for (int i = 0; i < n; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    // CreateTopics answers once the controller has the topics; wait until every
    // broker's metadata shows them led.
    int64_t deadline = hk_th_now_ms() + 30000;
    for (int i = 0; rc == 0 && i < n; i++)
        while (!topic_led(rk, ns.topics[ns.topic_cnt - n + i], parts[i])) {
            if (hk_th_now_ms() >= deadline) {
                fprintf(stderr, "kafka: %s has no leaders\n", ns.topics[ns.topic_cnt - n + i]);
                rc = -1;
                break;
            }
            hk_th_sleep_ms(100);
        }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

// Deletes the namespace's topics and its groups (best effort: a group whose
// SIGKILLed member has not timed out yet cannot be deleted and stays behind,
// harmless under its unique name).
static void real_delete_namespace(void)
{
    rd_kafka_t *rk = admin_client(ns.brokers);
    if (!rk)
        return;
    char err[256];
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t *dt[NS_MAX_TOPICS];
    for (int i = 0; i < ns.topic_cnt; i++)
        dt[i] = rd_kafka_DeleteTopic_new(ns.topics[i]);
    if (ns.topic_cnt > 0) {
        rd_kafka_AdminOptions_t *opt =
            rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
        rd_kafka_AdminOptions_set_operation_timeout(opt, 10000, err, sizeof(err));
        rd_kafka_DeleteTopics(rk, dt, (size_t)ns.topic_cnt, opt, q);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_DELETETOPICS_RESULT, 20000);
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    for (int i = 0; i < ns.topic_cnt; i++)
        rd_kafka_DeleteTopic_destroy(dt[i]);

    // The groups hookd and the tests used in this namespace.
    const rd_kafka_ListConsumerGroups_result_t *lr;
    rd_kafka_ListConsumerGroups(rk, NULL, q);
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT, 10000);
    if (ev && (lr = rd_kafka_event_ListConsumerGroups_result(ev))) {
        size_t cnt;
        const rd_kafka_ConsumerGroupListing_t **gl =
            rd_kafka_ListConsumerGroups_result_valid(lr, &cnt);
        rd_kafka_DeleteGroup_t *dg[64];
        size_t ndg = 0;
        for (size_t i = 0; i < cnt && ndg < 64; i++) {
            const char *g = rd_kafka_ConsumerGroupListing_group_id(gl[i]);
            if (strncmp(g, ns.prefix, strlen(ns.prefix)) == 0)
                dg[ndg++] = rd_kafka_DeleteGroup_new(g);
        }
        if (ndg > 0) {
            rd_kafka_DeleteGroups(rk, dg, ndg, NULL, q);
            rd_kafka_event_t *dev = admin_wait(q, RD_KAFKA_EVENT_DELETEGROUPS_RESULT, 10000);
            if (dev)
                rd_kafka_event_destroy(dev);
        }
        for (size_t i = 0; i < ndg; i++)
            rd_kafka_DeleteGroup_destroy(dg[i]);
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void ns_close(void)
{
    for (int i = 0; i < ns.topic_cnt; i++)
        free(ns.topics[i]);
    ns.topic_cnt = 0;
    ns.prefix[0] = '\0';
}

static int real_kafka_start(hk_th_proc_t *p, const char *const topics[], char *bootstraps,
                            size_t size)
{
    const char *boot = getenv("HK_TEST_KAFKA_BOOTSTRAP");
    if (!boot || !boot[0]) {
        fprintf(stderr, "kafka: HK_TEST_KAFKA=real needs HK_TEST_KAFKA_BOOTSTRAP "
                        "(scripts/kafka up prints it)\n");
        return -1;
    }
    if (ns.prefix[0]) {
        real_delete_namespace(); // a test that did not stop its cluster
        ns_close();
    }
    memset(p, 0, sizeof(*p)); // no process: hk_th_kafka_stop only drops the namespace
    p->stdin_fd = -1;
    snprintf(ns.brokers, sizeof(ns.brokers), "%s", boot);
    snprintf(ns.prefix, sizeof(ns.prefix), "t%d_%u_", (int)getpid(), ++ns.seq);
    if (real_create_topics(topics) != 0) {
        real_delete_namespace();
        ns_close();
        return -1;
    }
    snprintf(bootstraps, size, "%s", boot);
    return 0;
}

int hk_th_kafka_start(hk_th_proc_t *p, const char *const topics[], char *bootstraps, size_t size)
{
    if (hk_th_kafka_real())
        return real_kafka_start(p, topics, bootstraps, size);
    char *argv[72];
    int n = 0;
    const char *bin = hk_th_mockkafka_bin();
    if (bin == NULL) {
        fprintf(stderr, "kafka: no hookd-mockkafka (set HOOKD_MOCKKAFKA, or HOOKD_BIN to an "
                        "installed hookd)\n");
        return -1;
    }
    argv[n++] = (char *)bin;
    argv[n++] = "--stdin";
    for (int i = 0; topics[i] && n < 70; i++)
        argv[n++] = (char *)topics[i];
    argv[n] = NULL;
    int out;
    if (spawn(p, argv, NULL, "/dev/null", &out) != 0)
        return -1;
    FILE *f = fdopen(out, "r");
    char line[1024];
    int rc = -1;
    if (fgets(line, sizeof(line), f) && strncmp(line, "BOOTSTRAP ", 10) == 0) {
        line[strcspn(line, "\r\n")] = '\0';
        snprintf(bootstraps, size, "%s", line + 10);
        rc = 0;
    }
    fclose(f);
    return rc;
}

void hk_th_kafka_stop(hk_th_proc_t *p)
{
    if (hk_th_kafka_real()) {
        if (ns.prefix[0]) {
            real_delete_namespace();
            ns_close();
        }
        return;
    }
    hk_th_stop(p, 5000);
}

// 1 when `env` sets the variable named by `entry` ("NAME=value").
static int overridden(char *const env[], const char *entry)
{
    size_t len = strcspn(entry, "=");
    for (int i = 0; env && env[i]; i++)
        if (strncmp(env[i], entry, len) == 0 && env[i][len] == '=')
            return 1;
    return 0;
}

// The [kafka] keys that name topics or the group: their values, defaults and
// test overrides alike, go through the namespace.
static const char *const ns_env_keys[] = {
    "HOOKD_KAFKA_TOPIC=", "HOOKD_KAFKA_GROUP=", "HOOKD_KAFKA_DLQ_TOPIC=",
    "HOOKD_KAFKA_RETRY_TOPIC=", NULL};

int hk_th_hookd_start(hk_th_proc_t *p, const char *brokers, char *const env[], const char *config,
                      const char *log)
{
    return hk_th_hookd_start_bin(p, NULL, brokers, env, config, log);
}

int hk_th_hookd_start_bin(hk_th_proc_t *p, const char *bin, const char *brokers, char *const env[],
                          const char *config, const char *log)
{
    if (bin == NULL)
        bin = hk_th_hookd_bin();
    char b[512];
    snprintf(b, sizeof(b), "HOOKD_KAFKA_BROKERS=%s", brokers);
    // In a namespace hookd's default topic "jobs" and group "hookd" are renamed
    // (the dlq and retry topics derive from the topic name). A -c config file's
    // topic is replaced by this too: env wins over the file.
    char topic[320], group[320];
    int in_ns = ns_applies(brokers);
    snprintf(topic, sizeof(topic), "HOOKD_KAFKA_TOPIC=%sjobs", ns.prefix);
    snprintf(group, sizeof(group), "HOOKD_KAFKA_GROUP=%shookd", ns.prefix);
    char *base[] = {
        b,
        "HOOKD_DELIVERY_ALLOW_CIDRS=127.0.0.0/8,::1/128",
        "HOOKD_SIGNING_SECRET=" HK_TH_SECRET,
        "HOOKD_LOG_SUMMARY_MS=1000",
        "HOOKD_ADMIN_LISTEN=127.0.0.1:0", // logged as event admin_listening
        in_ns ? topic : NULL,
        in_ns ? group : NULL,
        NULL,
    };
    char *all[64];
    char mapped[8][320];
    int n = 0, nm = 0;
    for (int i = 0; i < (int)(sizeof(base) / sizeof(base[0])) - 1; i++)
        if (base[i] && !overridden(env, base[i]))
            all[n++] = base[i];
    for (int i = 0; env && env[i] && n < 63; i++) {
        all[n] = env[i];
        for (int k = 0; in_ns && nm < 8 && ns_env_keys[k]; k++) {
            size_t len = strlen(ns_env_keys[k]);
            if (strncmp(env[i], ns_env_keys[k], len) == 0) {
                char name[256];
                const char *v = ns_map(brokers, env[i] + len, name, sizeof(name));
                snprintf(mapped[nm], sizeof(mapped[0]), "%.*s%s", (int)len, env[i], v);
                all[n] = mapped[nm++];
            }
        }
        n++;
    }
    all[n] = NULL;
    char *argv[] = {(char *)bin, config ? "-c" : NULL, (char *)config, NULL};
    return hk_th_spawn(p, argv, all, log);
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *group)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    if (group)
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    if (type == RD_KAFKA_CONSUMER) { // any record the cluster takes (dead letters can pass 1 MB)
        rd_kafka_conf_set(conf, "fetch.message.max.bytes", "16000000", err, sizeof(err));
        rd_kafka_conf_set(conf, "receive.message.max.bytes", "64000000", err, sizeof(err));
    }
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set(conf, "linger.ms", "10", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka client: %s\n", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static void count_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (!msg->err)
        (*(size_t *)msg->_private)++;
}

size_t hk_th_produce(const char *brokers, const char *topic, char *const *values, char *const *keys,
                     size_t n)
{
    char nsname[320];
    topic = ns_map(brokers, topic, nsname, sizeof(nsname));
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "10", err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(conf, count_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk)
        return 0;
    size_t acked = 0;
    for (size_t i = 0; i < n; i++) {
        const char *key = keys ? keys[i] : NULL;
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                    RD_KAFKA_V_VALUE(values[i], strlen(values[i])), RD_KAFKA_V_OPAQUE(&acked),
                    RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 50);
        if (e)
            fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 30000);
    rd_kafka_destroy(rk);
    return acked;
}

static int partitions_of(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int n = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err)
            n = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

static char *dup_n(const void *p, size_t n)
{
    if (!p)
        return NULL;
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

size_t hk_th_read_topic(const char *brokers, const char *topic, hk_th_record_t **out)
{
    char nsname[320];
    topic = ns_map(brokers, topic, nsname, sizeof(nsname));
    *out = NULL;
    // Assigned, not subscribed: the group only holds the reader's commits (in
    // the namespace, so hk_th_kafka_stop deletes it).
    char nsgroup[320];
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers,
                            ns_map(brokers, "hk-test-reader", nsgroup, sizeof(nsgroup)));
    if (!rk)
        return 0;
    int parts = partitions_of(rk, topic);
    size_t cnt = 0, cap = 0, want = 0;
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new(parts > 0 ? parts : 1);
    for (int i = 0; i < parts; i++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 5000) == 0 && hi > lo) {
            rd_kafka_topic_partition_list_add(list, topic, i)->offset = lo;
            want += (size_t)(hi - lo);
        }
    }
    if (list->cnt)
        rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    hk_th_record_t *recs = NULL;
    int64_t deadline = hk_th_now_ms() + 30000;
    while (cnt < want && hk_th_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "hk_th_read_topic %s: %s\n", topic, rd_kafka_message_errstr(m));
        if (!m->err) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 64;
                recs = realloc(recs, cap * sizeof(*recs));
            }
            hk_th_record_t *r = &recs[cnt++];
            memset(r, 0, sizeof(*r));
            r->partition = m->partition;
            r->offset = m->offset;
            r->key = dup_n(m->key, m->key_len);
            r->value = dup_n(m->payload ? m->payload : "", m->len);
            r->value_len = m->len;
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(m, &h) == 0 && h) {
                size_t hn = rd_kafka_header_cnt(h);
                r->header_names = calloc(hn, sizeof(char *));
                r->header_values = calloc(hn, sizeof(char *));
                for (size_t j = 0; j < hn; j++) {
                    const char *name;
                    const void *val;
                    size_t len;
                    if (rd_kafka_header_get_all(h, j, &name, &val, &len) == 0) {
                        r->header_names[r->headers_cnt] = strdup(name);
                        r->header_values[r->headers_cnt++] = dup_n(val ? val : "", val ? len : 0);
                    }
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    if (cnt < want)
        fprintf(stderr, "hk_th_read_topic %s: read %zu of the %zu records between the watermarks\n",
                topic, cnt, want);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *out = recs;
    return cnt;
}

void hk_th_records_free(hk_th_record_t *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(recs[i].key);
        free(recs[i].value);
        for (size_t j = 0; j < recs[i].headers_cnt; j++) {
            free(recs[i].header_names[j]);
            free(recs[i].header_values[j]);
        }
        free(recs[i].header_names);
        free(recs[i].header_values);
    }
    free(recs);
}

const char *hk_th_header(const hk_th_record_t *rec, const char *name)
{
    for (size_t j = 0; j < rec->headers_cnt; j++)
        if (strcmp(rec->header_names[j], name) == 0)
            return rec->header_values[j];
    return NULL;
}

int64_t hk_th_group_lag(const char *brokers, const char *group, const char *topic)
{
    char nstopic[320], nsgroup[320];
    topic = ns_map(brokers, topic, nstopic, sizeof(nstopic));
    group = ns_map(brokers, group, nsgroup, sizeof(nsgroup));
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
    if (!rk)
        return -1;
    int parts = partitions_of(rk, topic);
    int64_t lag = parts > 0 ? 0 : -1;
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new(parts > 0 ? parts : 1);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(list, topic, i);
    if (parts > 0 && rd_kafka_committed(rk, list, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        lag = -1;
    for (int i = 0; lag >= 0 && i < list->cnt; i++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 5000) != 0) {
            lag = -1;
            break;
        }
        int64_t c = list->elems[i].offset;
        lag += hi - (c >= 0 ? c : lo);
    }
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(rk);
    return lag;
}

int hk_th_admin_port(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int port = 0;
    while (port == 0 && getline(&line, &cap, f) >= 0) {
        if (!strstr(line, "\"admin_listening\""))
            continue;
        json_t *j = json_loads(line, 0, NULL);
        port = (int)json_integer_value(json_object_get(j, "port"));
        json_decref(j);
    }
    free(line);
    fclose(f);
    return port;
}

typedef struct http_buf {
    char *data;
    size_t len;
} http_buf_t;

static size_t http_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    http_buf_t *b = arg;
    size_t n = size * nmemb;
    char *d = realloc(b->data, b->len + n + 1);
    if (!d)
        return 0;
    memcpy(d + b->len, ptr, n);
    b->len += n;
    d[b->len] = '\0';
    b->data = d;
    return n;
}

double hk_th_metric_in(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, len) == 0 && p[len] == ' ')
            return strtod(p + len + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

long long hk_th_metric(int port, const char *name)
{
    char url[64], *body = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    long long v = -1;
    if (hk_th_http("GET", url, 2000, &body) == 200 && body)
        v = (long long)hk_th_metric_in(body, name);
    free(body);
    return v;
}

long hk_th_http(const char *method, const char *url, int timeout_ms, char **body)
{
    return hk_th_http_auth(method, url, NULL, timeout_ms, body);
}

long hk_th_http_auth(const char *method, const char *url, const char *token, int timeout_ms,
                     char **body)
{
    CURL *c = curl_easy_init();
    if (!c)
        return 0;
    struct curl_slist *hdrs = NULL;
    if (token) {
        char auth[512];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    http_buf_t b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    if (body)
        *body = b.data;
    else
        free(b.data);
    return status;
}

typedef struct log_wait {
    const char *path, *needle;
    int n;
} log_wait_t;

static int log_reached(void *arg)
{
    log_wait_t *w = arg;
    return hk_th_log_count(w->path, w->needle) >= w->n;
}

int hk_th_wait_for_log(const char *path, const char *needle, int n, int timeout_ms)
{
    log_wait_t w = {path, needle, n};
    return hk_th_wait_for(log_reached, &w, timeout_ms);
}

typedef struct unique_wait {
    hk_sink_t *sink;
    uint64_t n;
} unique_wait_t;

static int unique_reached(void *arg)
{
    unique_wait_t *w = arg;
    hk_sink_stats_t st;
    hk_sink_stats(w->sink, &st);
    return st.unique_ok >= w->n;
}

int hk_th_wait_unique_ok(hk_sink_t *sink, uint64_t n, int timeout_ms)
{
    unique_wait_t w = {sink, n};
    return hk_th_wait_for(unique_reached, &w, timeout_ms);
}

typedef struct lag_wait {
    const char *brokers, *group, *topic;
} lag_wait_t;

static int lag_is_zero(void *arg)
{
    lag_wait_t *w = arg;
    return hk_th_group_lag(w->brokers, w->group, w->topic) == 0;
}

int hk_th_wait_lag_zero(const char *brokers, const char *group, const char *topic, int timeout_ms)
{
    lag_wait_t w = {brokers, group, topic};
    return hk_th_wait_for(lag_is_zero, &w, timeout_ms);
}

hk_th_record_t *hk_th_wait_records(const char *brokers, const char *topic, size_t n, int timeout_ms,
                                   size_t *got)
{
    int64_t deadline = hk_th_now_ms() + timeout_ms;
    hk_th_record_t *recs = NULL;
    for (;;) {
        *got = hk_th_read_topic(brokers, topic, &recs);
        if (*got >= n || hk_th_now_ms() >= deadline)
            break;
        hk_th_records_free(recs, *got);
        recs = NULL;
        hk_th_sleep_ms(100);
    }
    return hk_th_hold(HK_TH_HELD_RECS, recs, *got);
}

typedef struct held {
    hk_th_held_t kind;
    void *p;
    size_t n;
} held_t;

static held_t *held; // grows: polling loops hold what each poll read
static size_t held_cnt, held_cap;

void *hk_th_hold(hk_th_held_t kind, void *p, size_t n)
{
    if (held_cnt == held_cap) {
        size_t cap = held_cap ? held_cap * 2 : 256;
        held_t *h = realloc(held, cap * sizeof(*h));
        if (!h)
            abort();
        held = h;
        held_cap = cap;
    }
    held[held_cnt++] = (held_t){.kind = kind, .p = p, .n = n};
    return p;
}

void *hk_th_hold_mem(void *p)
{
    return hk_th_hold(HK_TH_HELD_MEM, p, 0);
}

void hk_th_release_held(void)
{
    for (size_t i = 0; i < held_cnt; i++) {
        held_t *h = &held[i];
        if (h->kind == HK_TH_HELD_REQS) {
            hk_sink_reqs_free(h->p, h->n);
        } else if (h->kind == HK_TH_HELD_RECS) {
            hk_th_records_free(h->p, h->n);
        } else if (h->kind == HK_TH_HELD_STRS) {
            char **v = h->p;
            for (size_t j = 0; v && j < h->n; j++)
                free(v[j]);
            free(v);
        } else {
            free(h->p);
        }
    }
    held_cnt = 0;
    free(held);
    held = NULL;
    held_cap = 0;
}

int hk_th_log_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, needle))
            n++;
    free(line);
    fclose(f);
    return n;
}

// The number in the n digits at s (checked to be digits by the caller).
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int64_t hk_th_log_ts(const char *ts)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (!ts)
        return -1;
    // Up to and including shape's NUL: a shorter ts stops at its own NUL, a longer one fails there.
    for (size_t i = 0; i < sizeof(shape); i++)
        if (shape[i] == 'd' ? ts[i] < '0' || ts[i] > '9' : ts[i] != shape[i])
            return -1;
    int mon = digits(ts + 5, 2), day = digits(ts + 8, 2);
    struct tm tm = {.tm_year = digits(ts, 4) - 1900,
                    .tm_mon = mon - 1,
                    .tm_mday = day,
                    .tm_hour = digits(ts + 11, 2),
                    .tm_min = digits(ts + 14, 2),
                    .tm_sec = digits(ts + 17, 2)};
    if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
        return -1;
    time_t t = timegm(&tm);
    // timegm normalises: a day past the month's end (or a month 0 or 13) moves them.
    if (tm.tm_mon != mon - 1 || tm.tm_mday != day)
        return -1;
    return (int64_t)t * 1000 + digits(ts + 20, 3);
}

int hk_th_log_each(const char *path, const char *needle, hk_th_log_fn *fn, void *arg)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, stop = 0;
    while (!stop && getline(&line, &cap, f) >= 0) {
        if (needle && !strstr(line, needle))
            continue;
        json_t *j = json_loads(line, 0, NULL);
        if (json_is_object(j)) {
            n++;
            stop = fn(j, hk_th_log_ts(json_string_value(json_object_get(j, "ts"))), arg);
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return n;
}

static int count_held(json_t *line, int64_t at_ms, void *arg)
{
    (void)at_ms;
    int *count = arg;
    const char *ev = json_string_value(json_object_get(line, "event"));
    if (ev && strcmp(ev, "partitions_assigned") == 0)
        *count += (int)json_integer_value(json_object_get(line, "count"));
    else if (ev && strcmp(ev, "partition_revoked") == 0)
        (*count)--;
    return 0;
}

int hk_th_partitions_held(const char *path)
{
    int count = 0;
    hk_th_log_each(path, "\"event\":\"partition", count_held, &count);
    return count;
}

int hk_th_holds_partitions(void *path)
{
    return hk_th_partitions_held(path) > 0;
}

const char *const hk_th_replica_secret[4] = {HK_TH_R1_SECRET, HK_TH_R2_SECRET, HK_TH_R3_SECRET,
                                             HK_TH_R4_SECRET};

int hk_th_signer(const hk_sink_req_t *r, const char *const secrets[], int n)
{
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)r->webhook_ts);
    for (int i = 0; i < n; i++)
        if (hk_sign_verify(secrets[i], r->webhook_id, ts, r->body, r->body_len, r->signature) == 1)
            return i;
    return -1;
}

int hk_th_scene_start(hk_th_scene_t *sc, const char *const topics[])
{
    *sc = (hk_th_scene_t){.kafka = {.pid = 0, .stdin_fd = -1}};
    for (int i = 0; i < HK_TH_SCENE_HOOKDS; i++)
        sc->hookd[i] = (hk_th_proc_t){.pid = 0, .stdin_fd = -1};
    return topics ? hk_th_scene_kafka(sc, topics) : 0;
}

int hk_th_scene_kafka(hk_th_scene_t *sc, const char *const topics[])
{
    return hk_th_kafka_start(&sc->kafka, topics, sc->brokers, sizeof(sc->brokers));
}

hk_sink_t *hk_th_scene_sink(hk_th_scene_t *sc, hk_sink_opts_t opts, char *err, size_t size)
{
    int i = 0;
    while (i < HK_TH_SCENE_SINKS && sc->sinks[i])
        i++;
    if (i == HK_TH_SCENE_SINKS) {
        hk_err_set(err, size, "a scene holds %d sinks at most", HK_TH_SCENE_SINKS);
        return NULL;
    }
    if (!opts.secrets)
        opts.secrets = HK_TH_SECRET;
    sc->sinks[i] = hk_sink_start(&opts, err, size);
    return sc->sinks[i];
}

int hk_th_scene_hookd(hk_th_scene_t *sc, int i, char *const env[], const char *config,
                      const char *log)
{
    if (i < 0 || i >= HK_TH_SCENE_HOOKDS)
        return -1;
    unlink(log);
    return hk_th_hookd_start(&sc->hookd[i], sc->brokers, env, config, log);
}

void hk_th_scene_stop(hk_th_scene_t *sc, int stop_ms)
{
    for (int i = 0; i < HK_TH_SCENE_HOOKDS; i++)
        hk_th_stop(&sc->hookd[i], stop_ms); // no-op when not running
    hk_th_kafka_stop(&sc->kafka);
    for (int i = 0; i < HK_TH_SCENE_SINKS; i++) {
        if (sc->sinks[i])
            hk_sink_stop(sc->sinks[i]);
        sc->sinks[i] = NULL;
    }
    hk_th_release_held();
}

int hk_th_pg_run_start(hk_pgsvc_t *pg, char *tmp, const char *who)
{
    if (mkdtemp(tmp) == NULL || chmod(tmp, 0755) != 0 || setenv("TMPDIR", tmp, 1) != 0) {
        fprintf(stderr, "%s: temp dir: %s\n", who, strerror(errno));
        return -1;
    }
    if (hk_pgsvc_start(pg) != 0) {
        fprintf(stderr, "%s: could not start postgres\n", who);
        hk_th_rmtree(tmp);
        return -1;
    }
    return 0;
}

void hk_th_pg_run_stop(hk_pgsvc_t *pg, const char *tmp)
{
    hk_pgsvc_destroy(pg);
    hk_th_rmtree(tmp);
}
