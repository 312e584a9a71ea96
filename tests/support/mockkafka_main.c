// hk-mockkafka: a Kafka mock cluster in its own process, so tests and the demo can
// run hookd (and kill it) against a broker that outlives it.
//
//   hk-mockkafka [--brokers N] [--stdin] TOPIC:PARTITIONS...
//
// Prints "BOOTSTRAP <servers>" on stdout once listening, then runs until SIGTERM or
// SIGINT, or with --stdin until its stdin closes (so it dies with the test that
// started it, even one that crashed).
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/mockkafka.h"

static volatile sig_atomic_t stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int brokers = 1, watch_stdin = 0;
    const char *topics[64];
    int parts[64];
    size_t cnt = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            brokers = atoi(argv[++i]);
            continue;
        }
        if (strcmp(argv[i], "--stdin") == 0) {
            watch_stdin = 1;
            continue;
        }
        char *colon = strrchr(argv[i], ':');
        if (!colon || cnt == 64) {
            fprintf(stderr, "usage: hk-mockkafka [--brokers N] [--stdin] TOPIC:PARTITIONS...\n");
            return 2;
        }
        *colon = '\0';
        topics[cnt] = argv[i];
        parts[cnt++] = atoi(colon + 1);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    char err[256];
    hk_mockkafka_t *mk = hk_mockkafka_new(brokers, topics, parts, cnt, err, sizeof(err));
    if (!mk) {
        fprintf(stderr, "hk-mockkafka: %s\n", err);
        return 1;
    }
    printf("BOOTSTRAP %s\n", hk_mockkafka_bootstraps(mk));
    fflush(stdout);

    while (!stop) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int n = poll(&pfd, watch_stdin ? 1 : 0, 200);
        if (n > 0 && watch_stdin) {
            char buf[256];
            if (read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
                break; // parent went away
        }
    }
    hk_mockkafka_destroy(mk);
    return 0;
}
