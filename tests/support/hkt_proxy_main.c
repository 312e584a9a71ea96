// hookd-proxy: the fault proxy (hkt_proxy.h) as a program, for test suites
// written in other languages.
//   hookd-proxy LISTEN_PORT UPSTREAM_HOST:PORT
// LISTEN_PORT 0 picks a free port. Prints {"event":"proxy_listening","port":P}
// once listening, then reads one command per line on stdin and answers each with
// one line on stdout: "ok", a JSON object (stats), or "error: <why>". A command
// is in force when its answer is printed. It exits 0 on EOF on stdin (so it dies
// with the test that holds its pipe), on "quit", SIGTERM or SIGINT.
//
// Commands (DIR is to-server, to-client or both; default both):
//   latency MS [JITTER_MS] [DIR]    delay every chunk (0 = off)
//   bandwidth BYTES_PER_S [DIR]     throttle each connection (0 = unlimited)
//   blackhole on|off                accept and read, forward nothing
//   close-after BYTES [DIR]         cut a connection after BYTES (0 = never)
//   reset                           RST every open connection
//   reset-new on|off                RST every new connection at once
//   down | up                       refuse connections / listen again, same port
//   clear                           every fault off, up
//   stats                           {"accepted":..,"active":..,"bytes_to_server":..,...}
//   quit
#include "tests/support/hkt_proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t run = 1;

static void on_signal(int sig)
{
    (void)sig;
    run = 0;
}

// A whole decimal number within [min, max]. 0 ok, -1 not.
static int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || errno != 0 || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_dir(const char *s, hkt_proxy_dir_t *out)
{
    if (s == NULL || strcmp(s, "both") == 0)
        *out = HKT_BOTH_WAYS;
    else if (strcmp(s, "to-server") == 0)
        *out = HKT_TO_SERVER;
    else if (strcmp(s, "to-client") == 0)
        *out = HKT_TO_CLIENT;
    else
        return -1;
    return 0;
}

static int parse_onoff(const char *s, int *out)
{
    if (s != NULL && strcmp(s, "on") == 0)
        *out = 1;
    else if (s != NULL && strcmp(s, "off") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

// Runs one command line; prints its answer. Returns 1 on quit.
static int command(hkt_proxy_t *p, char *line)
{
    char *argv[5] = {0};
    int argc = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t != NULL;
         t = strtok_r(NULL, " \t\r\n", &save)) {
        if (argc == 4) {
            printf("error: too many arguments\n");
            return 0;
        }
        argv[argc++] = t;
    }
    if (argc == 0)
        return 0; // blank line: no answer, as a shell would
    const char *cmd = argv[0];
    int64_t a = 0, b = 0;
    int on = 0;
    hkt_proxy_dir_t dir;
    char err[256] = "";
    if (strcmp(cmd, "latency") == 0) {
        // latency MS [JITTER_MS] [DIR]: a second number is the jitter.
        int has_jitter = argc > 2 && parse_i64(argv[2], 0, 3600000, &b) == 0;
        const char *d = argv[has_jitter ? 3 : 2];
        if (parse_i64(argv[1], 0, 3600000, &a) != 0 || parse_dir(d, &dir) != 0 ||
            argc > (has_jitter ? 4 : 3)) {
            printf("error: usage: latency MS [JITTER_MS] [to-server|to-client|both], "
                   "MS and JITTER_MS 0..3600000\n");
            return 0;
        }
        hkt_proxy_set_latency(p, dir, (int)a, (int)b);
    } else if (strcmp(cmd, "bandwidth") == 0 || strcmp(cmd, "close-after") == 0) {
        if (parse_i64(argv[1], 0, INT64_MAX, &a) != 0 || parse_dir(argv[2], &dir) != 0 ||
            argc > 3) {
            printf("error: usage: %s %s [to-server|to-client|both]\n", cmd,
                   cmd[0] == 'b' ? "BYTES_PER_S" : "BYTES");
            return 0;
        }
        if (cmd[0] == 'b')
            hkt_proxy_set_bandwidth(p, dir, a);
        else
            hkt_proxy_set_close_after(p, dir, a);
    } else if (strcmp(cmd, "blackhole") == 0 || strcmp(cmd, "reset-new") == 0) {
        if (parse_onoff(argv[1], &on) != 0 || argc > 2) {
            printf("error: usage: %s on|off\n", cmd);
            return 0;
        }
        if (cmd[0] == 'b')
            hkt_proxy_set_blackhole(p, on);
        else
            hkt_proxy_set_reset_new(p, on);
    } else if (argc > 1) {
        printf("error: %s takes no arguments (or is unknown)\n", cmd);
        return 0;
    } else if (strcmp(cmd, "reset") == 0) {
        hkt_proxy_reset(p);
    } else if (strcmp(cmd, "down") == 0) {
        hkt_proxy_down(p);
    } else if (strcmp(cmd, "up") == 0 || strcmp(cmd, "clear") == 0) {
        int rc = cmd[0] == 'u' ? hkt_proxy_up(p, err, sizeof(err))
                               : hkt_proxy_clear(p, err, sizeof(err));
        if (rc != 0) {
            printf("error: %s\n", err);
            return 0;
        }
    } else if (strcmp(cmd, "stats") == 0) {
        hkt_proxy_stats_t st;
        hkt_proxy_stats(p, &st);
        printf("{\"accepted\":%" PRIu64 ",\"active\":%" PRIu64 ",\"bytes_to_server\":%" PRIu64
               ",\"bytes_to_client\":%" PRIu64 ",\"upstream_failed\":%" PRIu64
               ",\"bytes_dropped\":%" PRIu64 "}\n",
               st.accepted, st.active, st.bytes_to_server, st.bytes_to_client, st.upstream_failed,
               st.bytes_dropped);
        return 0;
    } else if (strcmp(cmd, "quit") == 0) {
        printf("ok\n");
        return 1;
    } else {
        printf("error: unknown command \"%s\"\n", cmd);
        return 0;
    }
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: hookd-proxy LISTEN_PORT UPSTREAM_HOST:PORT\n"
                        "       then commands on stdin (see docs/testing.md)\n");
        return 2;
    }
    int64_t port, up_port;
    char host[256];
    const char *colon = strrchr(argv[2], ':');
    size_t hlen = colon ? (size_t)(colon - argv[2]) : 0;
    if (parse_i64(argv[1], 0, 65535, &port) != 0 || colon == NULL || hlen == 0 ||
        hlen >= sizeof(host) || parse_i64(colon + 1, 1, 65535, &up_port) != 0) {
        fprintf(stderr,
                "hookd-proxy: want LISTEN_PORT (0..65535) and UPSTREAM_HOST:PORT, "
                "got \"%s\" \"%s\"\n",
                argv[1], argv[2]);
        return 2;
    }
    memcpy(host, argv[2], hlen);
    host[hlen] = '\0';
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') { // [::1]:6379
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }

    // No SA_RESTART: a signal interrupts the blocking read of stdin.
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); // a reader that left: exit on the next stdin EOF instead
    setvbuf(stdout, NULL, _IOLBF, 0);

    char err[256] = "";
    hkt_proxy_opts_t opts = {
        .port = (int)port, .upstream_host = host, .upstream_port = (int)up_port};
    hkt_proxy_t *p = hkt_proxy_start(&opts, err, sizeof(err));
    if (p == NULL) {
        fprintf(stderr, "hookd-proxy: %s\n", err);
        return 1;
    }
    printf("{\"event\":\"proxy_listening\",\"port\":%d}\n", hkt_proxy_port(p));
    char line[512];
    while (run && fgets(line, sizeof(line), stdin) != NULL) {
        if (strchr(line, '\n') == NULL && !feof(stdin)) {
            int ch;
            while ((ch = getchar()) != EOF && ch != '\n') {
            }
            printf("error: line too long\n");
            continue;
        }
        if (command(p, line))
            break;
    }
    hkt_proxy_stop(p);
    return 0;
}
