#include "tests/support/kcluster.h"
#include "tests/support/harness.h"

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// Found at run time (harness.h: $HOOKD_KAFKA_SCRIPT, which CTest sets, or beside
// hookd), since this file is part of the installed hookd-testkit.
#define KAFKA_SCRIPT kcluster_script()

static const char *kcluster_script(void)
{
    const char *s = hk_th_kafka_script();
    return s ? s : "scripts/kafka";
}

// The watchdog: a child in its own session (a signal to the suite's process
// group does not reach it) that waits for its pipe to close. A "done" byte
// means the suite stopped the cluster itself; EOF without it means the suite
// died, and the watchdog runs `scripts/kafka down DIR`.
static int watchdog_start(hk_kc_t *kc)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        setsid();
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < (max > 0 ? max : 1024); fd++)
            if (fd != fds[0])
                close(fd);
        char c;
        ssize_t n;
        while ((n = read(fds[0], &c, 1)) < 0)
            ;
        if (n == 1)
            _exit(0);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(KAFKA_SCRIPT, KAFKA_SCRIPT, "down", kc->dir, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC); // hookd and the scripts must not hold it open
    kc->watchdog = pid;
    kc->watchdog_fd = fds[1];
    return 0;
}

static int up_once(hk_kc_t *kc, int nodes, const char *conf);

int hk_kc_up(hk_kc_t *kc, int nodes, const char *conf)
{
    // One more try: scripts/kafka's random cluster id starts with '-' one time in
    // 64, and kafka-storage then takes it for an option.
    if (up_once(kc, nodes, conf) == 0)
        return 0;
    fprintf(stderr, "kcluster: trying scripts/kafka up once more\n");
    return up_once(kc, nodes, conf);
}

static int up_once(hk_kc_t *kc, int nodes, const char *conf)
{
    memset(kc, 0, sizeof(*kc));
    kc->watchdog_fd = -1;
    kc->nodes = nodes;
    char conf_path[] = "/tmp/hk-kc-conf.XXXXXX";
    int have_conf = 0;
    if (conf) {
        int fd = mkstemp(conf_path);
        if (fd < 0)
            return -1;
        size_t len = strlen(conf);
        int ok = write(fd, conf, len) == (ssize_t)len;
        close(fd);
        if (!ok) {
            unlink(conf_path);
            return -1;
        }
        have_conf = 1;
    }
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s up --nodes %d%s%s", KAFKA_SCRIPT, nodes,
             have_conf ? " --conf " : "", have_conf ? conf_path : "");
    FILE *f = popen(cmd, "r");
    if (!f) {
        if (have_conf)
            unlink(conf_path);
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "KAFKA_BOOTSTRAP=", 16) == 0)
            snprintf(kc->bootstrap, sizeof(kc->bootstrap), "%.500s", line + 16);
        else if (strncmp(line, "KAFKA_DIR=", 10) == 0)
            snprintf(kc->dir, sizeof(kc->dir), "%.250s", line + 10);
    }
    int status = pclose(f);
    if (have_conf)
        unlink(conf_path);
    if (!kc->dir[0] || !kc->bootstrap[0] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "kcluster: `%s` failed (status %d)\n", cmd, status);
        if (kc->dir[0])
            hk_kc_down(kc);
        return -1;
    }
    if (watchdog_start(kc) != 0) {
        hk_kc_down(kc);
        return -1;
    }
    setenv("HK_TEST_KAFKA", "real", 1);
    setenv("HK_TEST_KAFKA_BOOTSTRAP", kc->bootstrap, 1);
    return 0;
}

static int run(hk_kc_t *kc, const char *verb, int i)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s %s %s %d", KAFKA_SCRIPT, verb, kc->dir, i);
    int status = system(cmd);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

void hk_kc_down(hk_kc_t *kc)
{
    if (!kc->dir[0])
        return;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s down %s", KAFKA_SCRIPT, kc->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "kcluster: `%s` failed\n", cmd);
    if (kc->watchdog_fd >= 0) {
        if (write(kc->watchdog_fd, "x", 1) != 1)
            fprintf(stderr, "kcluster: watchdog gone\n");
        close(kc->watchdog_fd);
        waitpid(kc->watchdog, NULL, 0);
    }
    kc->watchdog_fd = -1;
    kc->dir[0] = '\0';
    unsetenv("HK_TEST_KAFKA");
    unsetenv("HK_TEST_KAFKA_BOOTSTRAP");
}

int hk_kc_stop_node(hk_kc_t *kc, int i)
{
    return run(kc, "stop-node", i);
}

int hk_kc_start_node(hk_kc_t *kc, int i)
{
    return run(kc, "start-node", i);
}

char *hk_kc_tool(hk_kc_t *kc, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s tool %s %s", KAFKA_SCRIPT, kc->dir, args);
    FILE *f = popen(cmd, "r");
    if (!f)
        return NULL;
    char *out = NULL;
    size_t len = 0, cap = 0;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            out = realloc(out, cap);
        }
        memcpy(out + len, buf, n);
        len += n;
    }
    int status = pclose(f);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "kcluster: `%s` failed (status %d): %.*s\n", cmd, status, (int)len,
                out ? out : "");
        free(out);
        return NULL;
    }
    if (!out)
        out = calloc(1, 1);
    else
        out[len] = '\0';
    return out;
}

// "-" (no committed offset, or no lag known) as -1.
static int64_t num_or_dash(const char *s)
{
    return strcmp(s, "-") == 0 ? -1 : strtoll(s, NULL, 10);
}

int hk_kc_describe_group(hk_kc_t *kc, const char *group, const char *topic, hk_kc_row_t *rows,
                         int max)
{
    char args[1024];
    snprintf(args, sizeof(args),
             "kafka-consumer-groups --bootstrap-server %s --describe --group %s", kc->bootstrap,
             group);
    char *out = hk_kc_tool(kc, args);
    if (!out)
        return -1;
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    int n = 0, header = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char g[256], t[256], part[32], cur[32], end[32], lag[32];
        if (sscanf(line, "%255s %255s %31s %31s %31s %31s", g, t, part, cur, end, lag) != 6)
            continue;
        if (strcmp(g, "GROUP") == 0) {
            header = 1;
            continue;
        }
        if (!header || strcmp(g, group) != 0 || (topic && strcmp(t, topic) != 0) || n >= max)
            continue;
        hk_kc_row_t *r = &rows[n++];
        snprintf(r->topic, sizeof(r->topic), "%s", t);
        r->partition = (int32_t)atoi(part);
        r->current = num_or_dash(cur);
        r->end = num_or_dash(end);
        r->lag = num_or_dash(lag);
    }
    free(out);
    return header ? n : -1;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *group)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "2", err, sizeof(err)); // not a stopped node's refusals
    if (group)
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kcluster: %s\n", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

// Partition leaders of `topic` as rk's metadata has them; the partition count.
static int leaders_of(rd_kafka_t *rk, const char *topic, int32_t *leaders, int max)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int n = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err) {
            n = md->topics[0].partition_cnt;
            for (int i = 0; i < n && i < max; i++)
                leaders[i] = md->topics[0].partitions[i].leader;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

int hk_kc_leaders(const char *brokers, const char *topic, int32_t *leaders, int max)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return -1;
    int n = leaders_of(rk, topic, leaders, max);
    rd_kafka_destroy(rk);
    return n;
}

int hk_kc_committed(const char *brokers, const char *group, const char *topic, int64_t *committed,
                    int max)
{
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
    if (!rk)
        return -1;
    int32_t leaders[256];
    int n = leaders_of(rk, topic, leaders, 256);
    if (n > max)
        n = max;
    if (n > 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, topic, i);
        if (rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int i = 0; i < l->cnt; i++)
                committed[l->elems[i].partition] = l->elems[i].err          ? -2
                                                   : l->elems[i].offset < 0 ? -1
                                                                            : l->elems[i].offset;
        } else {
            n = -1;
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}
