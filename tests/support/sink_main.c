// hookd-sink (build/hk-sink in a build tree): the testkit's fault sink as a
// process, for suites in any language, scripts/demo and manual runs.
//   hookd-sink [--port P] [--secret S] [--threads N] [--seed N] [--no-log] [--quiet]
//              [--tls | --tls-expired | --tls-wrong-host] [--ca-out FILE]
// Prints {"event":"sink_listening","port":P,"scheme":"http"|"https"} once
// listening, then one JSON line per finished request ({"ts_ms","method","path",
// "webhook_id","signature_valid","status","latency_ms"}; --no-log turns them
// off), serves until SIGTERM/SIGINT,
// then prints {"event":"sink_stats",...counters} and exits 0.
// Fault modes by path (/status/503, /seq/503,503,200, /slow/2000, /hang, /reset,
// /close-mid, ...) and the control API under /_sink/ (rules, outage windows,
// sequences, refusing connections, stats, requests, reset) are in sink.h.
// --secret may be repeated (or hold several space-separated secrets); --quiet
// silences libmicrohttpd's error messages. Counters are also at GET /_stats.
// --tls serves HTTPS with a certificate signed by a CA made at start (for
// localhost, 127.0.0.1 and ::1); --tls-expired and --tls-wrong-host serve a bad
// one instead (expired yesterday; for another host name), signed the same way.
// --ca-out writes that CA's PEM to FILE before sink_listening is printed (give
// it to the client, e.g. hookd's delivery.ca_file).
#include "tests/support/sink.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t run = 1;

static void on_signal(int sig)
{
    (void)sig;
    run = 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: hookd-sink [--port P] [--secret whsec_...] [--threads N] [--seed N] "
               "[--no-log] [--quiet]\n"
               "                  [--tls | --tls-expired | --tls-wrong-host] [--ca-out FILE]\n");
}

// Parses a whole decimal number within [min, max]. 0 ok, -1 not.
static int parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},    {"secret", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},          {"no-log", no_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 'S'},    {"tls", no_argument, NULL, 'T'},
        {"tls-expired", no_argument, NULL, 'E'},   {"tls-wrong-host", no_argument, NULL, 'W'},
        {"ca-out", required_argument, NULL, 'C'},  {NULL, 0, NULL, 0},
    };
    hk_sink_opts_t opts = {.log_errors = 1, .log_requests = 1};
    char *secrets = NULL;
    const char *ca_out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "p:s:t:qhnS:", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (parse_int(optarg, 0, 65535, &opts.port) != 0) {
                fprintf(stderr, "hookd-sink: --port must be 0..65535, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (parse_int(optarg, 1, 1024, &opts.threads) != 0) {
                fprintf(stderr, "hookd-sink: --threads must be 1..1024, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 's': {
            size_t old = secrets ? strlen(secrets) : 0;
            char *p = realloc(secrets, old + strlen(optarg) + 2);
            if (p == NULL) {
                fprintf(stderr, "hookd-sink: out of memory\n");
                free(secrets);
                return 1;
            }
            secrets = p;
            sprintf(secrets + old, "%s%s", old ? " " : "", optarg);
            break;
        }
        case 'q':
            opts.log_errors = 0;
            break;
        case 'n':
            opts.log_requests = 0;
            break;
        case 'S': {
            char *end;
            errno = 0;
            opts.seed = strtoull(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || errno != 0) {
                fprintf(stderr, "hookd-sink: --seed must be a whole number, got \"%s\"\n", optarg);
                free(secrets);
                return 2;
            }
            break;
        }
        case 'T':
        case 'E':
        case 'W': {
            int kind = c == 'T'   ? HK_SINKTLS_GOOD
                       : c == 'E' ? HK_SINKTLS_EXPIRED
                                  : HK_SINKTLS_WRONG_HOST;
            if (opts.tls != 0 && opts.tls != kind) {
                fprintf(stderr, "hookd-sink: --tls, --tls-expired and --tls-wrong-host are one "
                                "choice\n");
                free(secrets);
                return 2;
            }
            opts.tls = kind;
            break;
        }
        case 'C':
            ca_out = optarg;
            break;
        case 'h':
            usage(stdout);
            free(secrets);
            return 0;
        default:
            usage(stderr);
            free(secrets);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        free(secrets);
        return 2;
    }
    if (ca_out != NULL && opts.tls == 0) {
        fprintf(stderr, "hookd-sink: --ca-out needs --tls, --tls-expired or --tls-wrong-host\n");
        free(secrets);
        return 2;
    }
    opts.secrets = secrets;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    hk_sink_t *sink = hk_sink_start(&opts, err, sizeof err);
    if (sink == NULL) {
        fprintf(stderr, "hookd-sink: cannot start: %s\n", err);
        free(secrets);
        return 1;
    }
    if (ca_out != NULL && hk_sinktls_write(hk_sink_ca_pem(sink), ca_out, err, sizeof err) != 0) {
        fprintf(stderr, "hookd-sink: %s\n", err);
        hk_sink_stop(sink);
        free(secrets);
        return 1;
    }
    printf("{\"event\":\"sink_listening\",\"port\":%d,\"scheme\":\"%s\"}\n", hk_sink_port(sink),
           opts.tls ? "https" : "http");
    fflush(stdout);

    while (run) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    char *json = hk_sink_stats_json(sink);
    hk_sink_stop(sink);
    if (json != NULL)
        printf("{\"event\":\"sink_stats\",%s\n", json + 1); // json starts with '{'
    fflush(stdout);
    free(json);
    free(secrets);
    return 0;
}
