// redissvc: fork/exec of redis-server with everything on the command line, a
// readiness check that asks the server for its own pid (so a foreign server that
// happens to hold the port is never mistaken for ours), and an exit-time sweep.
#include "tests/support/redissvc.h"
#include "tests/support/harness.h"
#include "base/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SVC_READY_MS     5000
#define SVC_STOP_MS      5000
#define SVC_PORT_RETRIES 5
#define SVC_MAX_LIVE     32
#define SVC_TMP          "/tmp"
#define SVC_PREFIX       "hk-redis-" // SVC_TMP/hk-redis-<pid>-XXXXXX

struct hk_redissvc_s {
    pid_t rs_pid;   // 0 when not running
    pid_t rs_owner; // process that started it (the exit sweep only touches its own)
    int rs_port;
    char rs_dir[64];
    char rs_password[128];
    int rs_unix;
    char rs_url[256];
    char rs_unix_url[128];
};

static hk_redissvc_t *live[SVC_MAX_LIVE];
static int sweep_registered;

// Check ends a failed forked test with _exit(): neither teardown nor atexit run,
// and only the server dies (PR_SET_PDEATHSIG). Directories are named after the
// process that made them, so later runs remove those whose process is gone.
static void remove_stale_dirs(void)
{
    DIR *d = opendir(SVC_TMP);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid = 0;
        if (sscanf(de->d_name, SVC_PREFIX "%d-", &pid) != 1 || pid <= 0 || pid == (int)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[300];
        snprintf(path, sizeof(path), SVC_TMP "/%s", de->d_name);
        hk_th_rmtree(path);
    }
    closedir(d);
}

static void sweep(void)
{
    for (int i = 0; i < SVC_MAX_LIVE; i++) {
        if (live[i] && live[i]->rs_owner == getpid())
            hk_redissvc_destroy(live[i]);
    }
}

static void track(hk_redissvc_t *svc, int add)
{
    if (add && !sweep_registered) {
        atexit(sweep);
        sweep_registered = 1;
    }
    for (int i = 0; i < SVC_MAX_LIVE; i++) {
        if (add && !live[i]) {
            live[i] = svc;
            return;
        }
        if (!add && live[i] == svc) {
            live[i] = NULL;
            return;
        }
    }
}

static redisContext *connect_svc(const hk_redissvc_t *svc, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", svc->rs_port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (svc->rs_password[0]) {
        redisReply *rep = redisCommand(c, "AUTH %s", svc->rs_password);
        int ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

// 1 when the server on our port is up and is our process.
static int answers(const hk_redissvc_t *svc)
{
    redisContext *c = connect_svc(svc, 200);
    if (!c)
        return 0;
    redisReply *rep = redisCommand(c, "INFO server");
    int ours = 0;
    if (rep && rep->type == REDIS_REPLY_STRING) {
        const char *p = strstr(rep->str, "process_id:");
        ours = p && atoi(p + strlen("process_id:")) == (int)svc->rs_pid;
    }
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return ours;
}

// Waits up to ms for the child to exit. 1 if it did (reaped), 0 if not.
static int reap(hk_redissvc_t *svc, int ms)
{
    int64_t end = hk_th_now_ms() + ms;
    for (;;) {
        int status;
        pid_t p = waitpid(svc->rs_pid, &status, WNOHANG);
        if (p == svc->rs_pid || (p < 0 && errno == ECHILD)) {
            svc->rs_pid = 0;
            return 1;
        }
        if (hk_th_now_ms() >= end)
            return 0;
        hk_th_sleep_ms(10);
    }
}

static int spawn(hk_redissvc_t *svc, char *err, size_t err_size)
{
    char port[16], dir[80], logfile[96], sock[96];
    snprintf(port, sizeof(port), "%d", svc->rs_port);
    snprintf(dir, sizeof(dir), "%s", svc->rs_dir);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", svc->rs_dir);
    snprintf(sock, sizeof(sock), "%s/redis.sock", svc->rs_dir);
    const char *bin = getenv("HK_REDIS_SERVER");
    if (!bin || !*bin)
        bin = "/usr/bin/redis-server";

    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = dir;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--logfile";
    argv[n++] = logfile;
    if (svc->rs_password[0]) {
        argv[n++] = "--requirepass";
        argv[n++] = svc->rs_password;
    }
    if (svc->rs_unix) {
        argv[n++] = "--unixsocket";
        argv[n++] = sock;
        argv[n++] = "--unixsocketperm";
        argv[n++] = "700";
    }
    argv[n] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        hk_err_set(err, err_size, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        close_range(3, ~0U, 0); // nothing of the test's (client sockets, listeners) lives on
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    svc->rs_pid = pid;

    int64_t end = hk_th_now_ms() + SVC_READY_MS;
    while (hk_th_now_ms() < end) {
        if (reap(svc, 0)) {
            hk_err_set(err, err_size, "redis-server on port %d exited at start (see %s)",
                       svc->rs_port, logfile);
            return -1;
        }
        if (answers(svc))
            return 0;
        hk_th_sleep_ms(10);
    }
    hk_err_set(err, err_size, "redis-server on port %d did not answer within %d ms", svc->rs_port,
               SVC_READY_MS);
    hk_redissvc_stop(svc);
    return -1;
}

hk_redissvc_t *hk_redissvc_start(const hk_redissvc_opts_t *opts, char *err, size_t err_size)
{
    hk_redissvc_t *svc = calloc(1, sizeof(*svc));
    if (!svc) {
        hk_err_set(err, err_size, "out of memory");
        return NULL;
    }
    svc->rs_owner = getpid();
    remove_stale_dirs();
    snprintf(svc->rs_dir, sizeof(svc->rs_dir), SVC_TMP "/" SVC_PREFIX "%d-XXXXXX", (int)getpid());
    if (!mkdtemp(svc->rs_dir)) {
        hk_err_set(err, err_size, "mkdtemp: %s", strerror(errno));
        free(svc);
        return NULL;
    }
    if (opts && opts->password)
        snprintf(svc->rs_password, sizeof(svc->rs_password), "%s", opts->password);
    svc->rs_unix = opts && opts->unix_socket;
    track(svc, 1);

    // A port found free can be taken before redis-server binds it (suites run in
    // parallel): then redis-server exits and another port is tried.
    char why[256] = "";
    for (int attempt = 0; attempt < SVC_PORT_RETRIES; attempt++) {
        svc->rs_port = hk_th_free_port();
        if (svc->rs_port <= 0) {
            snprintf(why, sizeof(why), "no free port: %s", strerror(errno));
            continue;
        }
        if (spawn(svc, why, sizeof(why)) == 0) {
            if (svc->rs_password[0])
                snprintf(svc->rs_url, sizeof(svc->rs_url), "redis://:%s@127.0.0.1:%d",
                         svc->rs_password, svc->rs_port);
            else
                snprintf(svc->rs_url, sizeof(svc->rs_url), "redis://127.0.0.1:%d", svc->rs_port);
            if (svc->rs_unix)
                snprintf(svc->rs_unix_url, sizeof(svc->rs_unix_url), "unix:%s/redis.sock",
                         svc->rs_dir);
            return svc;
        }
    }
    hk_err_set(err, err_size, "%s", why);
    hk_redissvc_destroy(svc);
    return NULL;
}

int hk_redissvc_stop(hk_redissvc_t *svc)
{
    if (!svc || svc->rs_pid <= 0)
        return 0;
    kill(svc->rs_pid, SIGTERM);
    kill(svc->rs_pid, SIGCONT); // a paused server only acts on SIGTERM once continued
    if (reap(svc, SVC_STOP_MS))
        return 0;
    kill(svc->rs_pid, SIGKILL);
    reap(svc, SVC_STOP_MS);
    svc->rs_pid = 0;
    return -1;
}

int hk_redissvc_restart(hk_redissvc_t *svc)
{
    if (svc->rs_pid > 0)
        return 0;
    char err[256];
    if (spawn(svc, err, sizeof(err)) != 0) {
        fprintf(stderr, "hk_redissvc_restart: %s\n", err);
        return -1;
    }
    return 0;
}

void hk_redissvc_pause(hk_redissvc_t *svc)
{
    if (svc->rs_pid > 0)
        kill(svc->rs_pid, SIGSTOP);
}

void hk_redissvc_resume(hk_redissvc_t *svc)
{
    if (svc->rs_pid > 0)
        kill(svc->rs_pid, SIGCONT);
}

void hk_redissvc_destroy(hk_redissvc_t *svc)
{
    if (!svc)
        return;
    hk_redissvc_stop(svc);
    hk_th_rmtree(svc->rs_dir);
    track(svc, 0);
    free(svc);
}

int hk_redissvc_port(const hk_redissvc_t *svc)
{
    return svc->rs_port;
}

pid_t hk_redissvc_pid(const hk_redissvc_t *svc)
{
    return svc->rs_pid;
}

const char *hk_redissvc_url(const hk_redissvc_t *svc)
{
    return svc->rs_url;
}

const char *hk_redissvc_unix_url(const hk_redissvc_t *svc)
{
    return svc->rs_unix ? svc->rs_unix_url : NULL;
}

static void *vcommand(const hk_redissvc_t *svc, const char *fmt, va_list ap)
{
    redisContext *c = connect_svc(svc, 2000);
    if (!c)
        return NULL;
    void *rep = redisvCommand(c, fmt, ap);
    redisFree(c);
    return rep;
}

void *hk_redissvc_command(const hk_redissvc_t *svc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    void *rep = vcommand(svc, fmt, ap);
    va_end(ap);
    return rep;
}

long long hk_redissvc_int(const hk_redissvc_t *svc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = vcommand(svc, fmt, ap);
    va_end(ap);
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -999;
    if (rep)
        freeReplyObject(rep);
    return v;
}
