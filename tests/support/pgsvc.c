// pgsvc: initdb and postgres are exec'd directly (not via pg_ctl or runuser)
// from a forked child that drops to the postgres user itself, so the pid we get
// is the postmaster's and nothing sits in between.
#include "tests/support/pgsvc.h"
#include "tests/support/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
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

#define PGSVC_READY_MS 15000
#define PGSVC_STOP_MS  15000

static const char *bindir(void)
{
    const char *d = getenv("HK_PG_BINDIR");
    return d && *d ? d : HK_PGSVC_BIN;
}

// Who the server runs as: postgres when we are root (initdb and postgres refuse
// root), else ourselves (uid -1).
static int server_user(uid_t *uid, gid_t *gid)
{
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL) {
        fprintf(stderr, "pgsvc: running as root and there is no postgres user\n");
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

// Forks argv with stdout+stderr appended to `log`, as the server user. The
// child gets SIGQUIT (postgres: immediate shutdown) if the calling thread dies.
static pid_t spawn(char *const argv[], const char *log)
{
    uid_t uid;
    gid_t gid;
    if (server_user(&uid, &gid) != 0)
        return -1;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "pgsvc: %s: %s\n", log, strerror(errno));
        return -1;
    }
    if (uid != (uid_t)-1 && fchown(fd, uid, gid) != 0) {
        close(fd);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (uid != (uid_t)-1) {
            if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
                _exit(126);
        }
        // After setuid, which clears it; checked against a parent already gone.
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        if (getppid() != parent)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd);
    return pid;
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "---- %s ----\n", path);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---- end of %s ----\n", path);
    fclose(f);
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void admin_conninfo(const hk_pgsvc_t *s, const char *db, char *out, size_t size)
{
    snprintf(out, size, "host=%s port=%d dbname=%s user=postgres connect_timeout=2", s->dir,
             s->port, db);
}

// 1 once `pid` has exited: reaped here, or (not our child) gone or a zombie.
static int exited(pid_t pid)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
        return 1;
    if (r == 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 1;
    int zombie = 0;
    if (fgets(buf, sizeof(buf), f)) {
        char *p = strrchr(buf, ')');
        zombie = p && p[1] == ' ' && p[2] == 'Z';
    }
    fclose(f);
    return zombie;
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = hk_th_now_ms() + timeout_ms;
    while (!exited(pid)) {
        if (hk_th_now_ms() >= deadline)
            return -1;
        hk_th_sleep_ms(10);
    }
    return 0;
}

// Starts the postmaster on s->dir/data and s->port and waits until it accepts
// connections. 0 ok; -1 failed (*bind_failed set when the port was taken).
static int launch(hk_pgsvc_t *s, int *bind_failed)
{
    *bind_failed = 0;
    char postgres[512], data[300], log[300], port[16], ping[600];
    snprintf(postgres, sizeof(postgres), "%s/postgres", bindir());
    snprintf(data, sizeof(data), "%s/data", s->dir);
    snprintf(log, sizeof(log), "%s/postgres.log", s->dir);
    snprintf(port, sizeof(port), "%d", s->port);
    char *const argv[] = {postgres,
                          "-D",
                          data,
                          "-k",
                          s->dir,
                          "-p",
                          port,
                          "-c",
                          "listen_addresses=127.0.0.1",
                          "-c",
                          "fsync=off",
                          "-c",
                          "synchronous_commit=off",
                          "-c",
                          "full_page_writes=off",
                          "-c",
                          "autovacuum=off",
                          "-c",
                          "shared_buffers=16MB",
                          "-c",
                          "max_connections=50",
                          NULL};
    pid_t pid = spawn(argv, log);
    if (pid < 0)
        return -1;
    admin_conninfo(s, "postgres", ping, sizeof(ping));
    int64_t deadline = hk_th_now_ms() + PGSVC_READY_MS;
    for (;;) {
        if (PQping(ping) == PQPING_OK) {
            s->pid = pid;
            return 0;
        }
        if (exited(pid)) {
            *bind_failed = file_contains(log, "could not bind") ||
                           file_contains(log, "could not create any TCP/IP sockets");
            break;
        }
        if (hk_th_now_ms() >= deadline) {
            fprintf(stderr, "pgsvc: postgres not ready after %d ms\n", PGSVC_READY_MS);
            kill(pid, SIGQUIT);
            wait_exit(pid, 5000);
            break;
        }
        hk_th_sleep_ms(20);
    }
    if (!*bind_failed)
        print_file(log);
    return -1;
}

static int initdb(hk_pgsvc_t *s)
{
    char prog[512], data[300], log[300];
    snprintf(prog, sizeof(prog), "%s/initdb", bindir());
    snprintf(data, sizeof(data), "%s/data", s->dir);
    snprintf(log, sizeof(log), "%s/initdb.log", s->dir);
    char *const argv[] = {prog,    "-D", data,   "-U",         "postgres",  "-A",
                          "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
                          NULL};
    pid_t pid = spawn(argv, log);
    if (pid < 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "pgsvc: initdb failed\n");
        print_file(log);
        return -1;
    }
    return 0;
}

int hk_pgsvc_exec(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    int rc = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pgsvc: connect %s: %s", conninfo, PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
            rc = 0;
        else
            fprintf(stderr, "pgsvc: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

int hk_pgsvc_create_db(hk_pgsvc_t *s, const char *name, char *conninfo, size_t size)
{
    char admin[600], sql[300];
    admin_conninfo(s, "postgres", admin, sizeof(admin));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (hk_pgsvc_exec(admin, sql) != 0)
        return -1;
    admin_conninfo(s, name, conninfo, size);
    return 0;
}

int hk_pgsvc_start(hk_pgsvc_t *s)
{
    memset(s, 0, sizeof(*s));
    uid_t uid;
    gid_t gid;
    if (server_user(&uid, &gid) != 0)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof(s->dir), "%s/hk-pg-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(s->dir) == NULL) {
        fprintf(stderr, "pgsvc: mkdtemp: %s\n", strerror(errno));
        s->dir[0] = '\0';
        return -1;
    }
    if (strlen(s->dir) + sizeof("/.s.PGSQL.65535") > 108) {
        fprintf(stderr, "pgsvc: %s is too long for a unix socket path; shorten TMPDIR\n", s->dir);
        hk_pgsvc_destroy(s);
        return -1;
    }
    if (uid != (uid_t)-1 && chown(s->dir, uid, gid) != 0) {
        fprintf(stderr, "pgsvc: chown %s: %s\n", s->dir, strerror(errno));
        hk_pgsvc_destroy(s);
        return -1;
    }
    if (initdb(s) != 0) {
        hk_pgsvc_destroy(s);
        return -1;
    }
    // Another process may take the port between pick and bind: try a few.
    int ok = 0;
    for (int attempt = 0; attempt < 5 && !ok; attempt++) {
        s->port = hk_th_free_port();
        int bind_failed = 0;
        if (s->port > 0 && launch(s, &bind_failed) == 0)
            ok = 1;
        else if (!bind_failed)
            break;
    }
    char admin[600];
    admin_conninfo(s, "postgres", admin, sizeof(admin));
    if (!ok || hk_pgsvc_exec(admin, "CREATE DATABASE hookd") != 0) {
        fprintf(stderr, "pgsvc: could not start postgres in %s\n", s->dir);
        hk_pgsvc_destroy(s);
        return -1;
    }
    admin_conninfo(s, "hookd", s->conninfo, sizeof(s->conninfo));
    return 0;
}

// The postmaster's pid: ours, else the one postmaster.pid names if it is a postgres.
static pid_t server_pid(const hk_pgsvc_t *s)
{
    if (s->pid > 0)
        return s->pid;
    char path[300], comm[64] = "";
    snprintf(path, sizeof(path), "%s/data/postmaster.pid", s->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int pid = 0;
    if (fscanf(f, "%d", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(comm, sizeof(comm), f) == NULL)
        comm[0] = '\0';
    fclose(f);
    return strncmp(comm, "postgres", 8) == 0 ? (pid_t)pid : 0;
}

int hk_pgsvc_stop(hk_pgsvc_t *s)
{
    pid_t pid = server_pid(s);
    s->pid = 0;
    if (pid <= 0)
        return 0;
    if (kill(pid, SIGINT) != 0 && errno == ESRCH) {
        exited(pid); // reap
        return 0;
    }
    if (wait_exit(pid, PGSVC_STOP_MS) == 0)
        return 0;
    fprintf(stderr, "pgsvc: postgres %d ignored fast shutdown; killing it\n", (int)pid);
    kill(pid, SIGQUIT);
    if (wait_exit(pid, 5000) == 0)
        return -1;
    kill(pid, SIGKILL);
    wait_exit(pid, 5000);
    return -1;
}

int hk_pgsvc_restart(hk_pgsvc_t *s)
{
    if (s->dir[0] == '\0' || s->port <= 0)
        return -1;
    if (server_pid(s) > 0)
        return 0;
    int bind_failed;
    if (launch(s, &bind_failed) != 0) {
        fprintf(stderr, "pgsvc: restart on port %d failed%s\n", s->port,
                bind_failed ? " (port taken)" : "");
        if (bind_failed) {
            char log[300];
            snprintf(log, sizeof(log), "%s/postgres.log", s->dir);
            print_file(log);
        }
        return -1;
    }
    return 0;
}

void hk_pgsvc_destroy(hk_pgsvc_t *s)
{
    hk_pgsvc_stop(s);
    if (s->dir[0])
        hk_th_rmtree(s->dir);
    memset(s, 0, sizeof(*s));
}
