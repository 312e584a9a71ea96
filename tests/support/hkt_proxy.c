// hkt_proxy: see hkt_proxy.h. One thread polls a wake-up eventfd, the listener
// and both sockets of every connection. Each direction of a connection is a FIFO
// of chunks stamped with the time they may leave (latency); a pacer meters them
// out in slices (bandwidth). Control calls change the shared settings under `mu`,
// wake the thread and wait until it acknowledges, so a fault is in force when
// the call returns and the thread never races a caller over a socket.
//
// Why one poll loop rather than a thread per connection: down, reset and stop
// must close every socket at a known moment, which is trivial when one thread
// owns them all and needs cross-thread shutdown() dances otherwise; and latency
// and bandwidth are timers, which one loop handles with one poll timeout.
#include "tests/support/hkt_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"

#define READ_SIZE   16384        // one recv() per readable socket per turn
#define QUEUE_CAP   (256 * 1024) // bytes queued per direction before the proxy stops reading
#define MAX_MS      3600000
#define DEFAULT_MAX 256

// Directions, also the index of the socket each one reads: a connection's
// fd[TO_SERVER] is the client's socket, fd[TO_CLIENT] the upstream's.
enum { TO_SERVER = 0, TO_CLIENT = 1 };

typedef struct settings {
    int64_t latency_ms[2], jitter_ms[2];
    int64_t rate[2];        // bytes/s, 0 unlimited
    int64_t close_after[2]; // bytes, 0 never
    int blackhole;
    int reset_new;
    int want_up;
    uint64_t resets; // hkt_proxy_reset() calls so far
    int stopping;
} settings_t;

typedef struct chunk {
    struct chunk *next;
    int64_t due_ns; // monotonic time it may be written (latency)
    size_t len, off;
    char data[];
} chunk_t;

typedef struct dir {
    chunk_t *head, *tail;
    size_t queued; // bytes in the chunks not written yet
    int eof;       // the source sent FIN
    int shut;      // and it was passed on (shutdown of the destination's write side)
    int64_t last_due_ns;
    // Pacer: a slice of pay_n bytes may be written at pay_at_ns, the time the
    // link would have taken to carry it; paid is what is left of a due slice.
    int64_t link_free_ns, pay_at_ns;
    size_t pay_n, paid;
    uint64_t sent;
} dir_t;

typedef struct conn {
    int fd[2];      // [TO_SERVER] client socket, [TO_CLIENT] upstream socket
    int connecting; // the upstream connect() is in progress
    int hup[2];     // POLLHUP seen: leave the socket out of poll() while not reading it
    dir_t d[2];
} conn_t;

struct hkt_proxy_s {
    pthread_mutex_t mu;
    pthread_cond_t acked;
    settings_t set;            // under mu: what callers asked for
    uint64_t req_seq, ack_seq; // under mu
    hkt_proxy_stats_t stats;   // under mu: published at each acknowledgement
    char up_err[256];          // under mu: why the last bind failed
    int up_failed;             // under mu

    pthread_t thread;
    int wake_fd;
    int port;
    struct sockaddr_storage upstream;
    socklen_t upstream_len;
    int max_conns;

    // Owned by the proxy thread once it runs.
    settings_t cur; // the settings in force
    uint64_t resets_done;
    int listen_fd; // -1 while down
    conn_t **conns;
    int nconns;
    struct pollfd *pfd; // [0] wake, [1] listener, then two per connection
    hkt_proxy_stats_t live;
    uint64_t rng;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// splitmix64: jitter needs spread, not quality.
static uint64_t next_rand(hkt_proxy_t *p)
{
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void set_nodelay(int fd)
{
    // Small request/reply protocols (Redis, Postgres) would otherwise pick up
    // Nagle + delayed-ACK stalls the real dependency does not have.
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Closes with RST instead of FIN.
static void close_abort(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

// A listening socket on 127.0.0.1:port (0: any free port, written to *bound),
// or -1 with err.
static int listen_on(int port, int *bound, char *err, size_t errsz)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        hk_err_set(err, errsz, "proxy: socket: %s", strerror(errno));
        return -1;
    }
    // Up after down must rebind while the old connections sit in TIME_WAIT.
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        hk_err_set(err, errsz, "proxy: cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

static void conn_close(hkt_proxy_t *p, conn_t *c, int abortive)
{
    for (int k = 0; k < 2; k++) {
        if (abortive)
            close_abort(c->fd[k]);
        else
            close(c->fd[k]);
        chunk_t *ch = c->d[k].head;
        while (ch != NULL) {
            chunk_t *next = ch->next;
            free(ch);
            ch = next;
        }
    }
    free(c);
    p->live.active--;
}

static void close_all(hkt_proxy_t *p, int abortive)
{
    for (int i = 0; i < p->nconns; i++)
        conn_close(p, p->conns[i], abortive);
    p->nconns = 0;
}

// Applies what callers asked for since the last turn and acknowledges it.
// Returns 1 when the proxy is to stop.
static int apply_control(hkt_proxy_t *p)
{
    uint64_t v;
    if (read(p->wake_fd, &v, sizeof(v)) < 0) {
        // EAGAIN: nobody asked; the sequence numbers below decide anyway.
    }
    pthread_mutex_lock(&p->mu);
    if (p->ack_seq != p->req_seq) {
        p->cur = p->set;
        if (p->set.resets != p->resets_done) {
            close_all(p, 1);
            p->resets_done = p->set.resets;
        }
        if (!p->set.want_up && p->listen_fd >= 0) {
            close(p->listen_fd);
            p->listen_fd = -1;
            close_all(p, 0);
        }
        if (p->set.want_up && p->listen_fd < 0) {
            int bound;
            p->listen_fd = listen_on(p->port, &bound, p->up_err, sizeof(p->up_err));
            p->up_failed = p->listen_fd < 0;
            if (p->up_failed)
                p->set.want_up = p->cur.want_up = 0;
        }
        p->stats = p->live;
        p->ack_seq = p->req_seq;
        pthread_cond_broadcast(&p->acked);
    }
    int stop = p->set.stopping;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static int can_read(const conn_t *c, int d)
{
    if (d == TO_CLIENT && c->connecting)
        return 0;
    return !c->d[d].eof && c->d[d].queued < QUEUE_CAP;
}

// When direction d may write next: 0 now, > 0 at that monotonic time, -1 when
// it has nothing it may write. Advances the pacer.
static int64_t write_time(hkt_proxy_t *p, conn_t *c, int d, int64_t now)
{
    dir_t *dr = &c->d[d];
    if (c->connecting || p->cur.blackhole || dr->head == NULL)
        return -1;
    if (dr->head->due_ns > now)
        return dr->head->due_ns;
    int64_t rate = p->cur.rate[d];
    if (rate == 0) {
        dr->paid = 0;
        dr->pay_at_ns = 0;
        dr->link_free_ns = 0;
        return 0;
    }
    if (dr->paid > 0)
        return 0;
    if (dr->pay_at_ns == 0) {
        // Slices of 20 ms of the link: a slice is written only once the time
        // the link needs for it has passed, so N bytes take at least N / rate.
        size_t n = dr->head->len - dr->head->off;
        size_t slice = rate / 50 > 0 ? (size_t)(rate / 50) : 1;
        if (n > slice)
            n = slice;
        int64_t start = dr->link_free_ns > now ? dr->link_free_ns : now;
        dr->pay_n = n;
        int64_t bits = (int64_t)n * 1000000000; // n <= READ_SIZE: no overflow
        dr->pay_at_ns = start + bits / rate + (bits % rate != 0);
    }
    if (dr->pay_at_ns > now)
        return dr->pay_at_ns;
    dr->paid = dr->pay_n;
    dr->link_free_ns = dr->pay_at_ns;
    dr->pay_at_ns = 0;
    return 0;
}

// One recv() for direction d. 0 ok, -1 when the connection is to be reset.
static int fill(hkt_proxy_t *p, conn_t *c, int d, int64_t now)
{
    dir_t *dr = &c->d[d];
    char buf[READ_SIZE];
    ssize_t r = recv(c->fd[d], buf, sizeof(buf), MSG_DONTWAIT);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (r == 0) {
        dr->eof = 1;
        return 0;
    }
    if (p->cur.blackhole) {
        p->live.bytes_dropped += (uint64_t)r;
        return 0;
    }
    chunk_t *ch = malloc(sizeof(*ch) + (size_t)r);
    if (ch == NULL)
        return -1;
    memcpy(ch->data, buf, (size_t)r);
    ch->len = (size_t)r;
    ch->off = 0;
    ch->next = NULL;
    int64_t delay_ms = p->cur.latency_ms[d];
    if (p->cur.jitter_ms[d] > 0)
        delay_ms += (int64_t)(next_rand(p) % (uint64_t)(p->cur.jitter_ms[d] + 1));
    ch->due_ns = now + delay_ms * 1000000;
    if (ch->due_ns < dr->last_due_ns) // jitter never reorders
        ch->due_ns = dr->last_due_ns;
    dr->last_due_ns = ch->due_ns;
    if (dr->tail != NULL)
        dr->tail->next = ch;
    else
        dr->head = ch;
    dr->tail = ch;
    dr->queued += (size_t)r;
    return 0;
}

// Writes what direction d may write now, then passes a FIN on once drained.
// 0 keep, 1 close (close-after reached), -1 reset (write error).
static int flush(hkt_proxy_t *p, conn_t *c, int d, int64_t now)
{
    dir_t *dr = &c->d[d];
    int dst = c->fd[!d];
    int64_t limit = p->cur.close_after[d];
    while (write_time(p, c, d, now) == 0) {
        if (limit > 0 && dr->sent >= (uint64_t)limit)
            return 1;
        chunk_t *ch = dr->head;
        size_t n = ch->len - ch->off;
        if (p->cur.rate[d] > 0 && n > dr->paid)
            n = dr->paid;
        if (limit > 0 && dr->sent + n > (uint64_t)limit)
            n = (size_t)((uint64_t)limit - dr->sent);
        if (n == 0)
            return 0; // cannot happen (write_time() said go); never spin on it
        ssize_t w = send(dst, ch->data + ch->off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        ch->off += (size_t)w;
        dr->queued -= (size_t)w;
        dr->sent += (uint64_t)w;
        if (p->cur.rate[d] > 0)
            dr->paid -= (size_t)w;
        if (d == TO_SERVER)
            p->live.bytes_to_server += (uint64_t)w;
        else
            p->live.bytes_to_client += (uint64_t)w;
        if (limit > 0 && dr->sent >= (uint64_t)limit)
            return 1;
        if (ch->off == ch->len) {
            dr->head = ch->next;
            if (dr->head == NULL)
                dr->tail = NULL;
            free(ch);
        }
        if ((size_t)w < n)
            return 0; // the socket is full: poll() says when it drains
    }
    if (dr->eof && dr->head == NULL && !dr->shut && !c->connecting && !p->cur.blackhole) {
        shutdown(dst, SHUT_WR);
        dr->shut = 1;
    }
    return 0;
}

// One turn for a connection after poll(). 0 keep, 1 close, -1 reset.
static int step(hkt_proxy_t *p, conn_t *c, const struct pollfd *pf, int64_t now)
{
    for (int k = 0; k < 2; k++)
        if (pf[k].revents & POLLHUP)
            c->hup[k] = 1;
    if (c->connecting) {
        if (pf[TO_CLIENT].revents != 0) {
            int e = 0;
            socklen_t len = sizeof(e);
            if (getsockopt(c->fd[TO_CLIENT], SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e != 0) {
                p->live.upstream_failed++;
                return -1; // the client sees a reset, as from a dead host
            }
            c->connecting = 0;
            c->hup[TO_CLIENT] = 0;
            set_nodelay(c->fd[TO_CLIENT]);
        }
    } else if (pf[TO_CLIENT].revents & POLLERR) {
        return -1; // reset by the server: pass it on
    }
    if (pf[TO_SERVER].revents & POLLERR)
        return -1; // reset by the client
    for (int d = 0; d < 2; d++)
        if ((pf[d].revents & (POLLIN | POLLHUP)) && can_read(c, d) && fill(p, c, d, now) != 0)
            return -1;
    for (int d = 0; d < 2; d++) {
        int r = flush(p, c, d, now);
        if (r != 0)
            return r;
    }
    return c->d[0].shut && c->d[1].shut ? 1 : 0;
}

static void accept_all(hkt_proxy_t *p)
{
    while (p->listen_fd >= 0 && p->nconns < p->max_conns) {
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; // EAGAIN; or a transient error (ECONNABORTED, EMFILE): next turn
        p->live.accepted++;
        if (p->cur.reset_new) {
            close_abort(fd);
            continue;
        }
        conn_t *c = calloc(1, sizeof(*c));
        int up = socket(p->upstream.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c == NULL || up < 0) {
            close_abort(fd);
            if (up >= 0)
                close(up);
            free(c);
            continue;
        }
        set_nodelay(fd);
        c->fd[TO_SERVER] = fd;
        c->fd[TO_CLIENT] = up;
        if (connect(up, (struct sockaddr *)&p->upstream, p->upstream_len) == 0) {
            set_nodelay(up);
        } else if (errno == EINPROGRESS) {
            c->connecting = 1;
        } else {
            p->live.upstream_failed++;
            close_abort(fd);
            close(up);
            free(c);
            continue;
        }
        p->conns[p->nconns++] = c;
        p->live.active++;
    }
}

static void *proxy_main(void *arg)
{
    hkt_proxy_t *p = arg;
    while (!apply_control(p)) {
        int64_t now = now_ns();
        int64_t wake_at = INT64_MAX;
        p->pfd[0] = (struct pollfd){.fd = p->wake_fd, .events = POLLIN};
        p->pfd[1] =
            (struct pollfd){.fd = p->nconns < p->max_conns ? p->listen_fd : -1, .events = POLLIN};
        int polled = p->nconns;
        for (int i = 0; i < polled; i++) {
            conn_t *c = p->conns[i];
            short ev[2] = {0, 0};
            if (c->connecting)
                ev[TO_CLIENT] |= POLLOUT;
            for (int d = 0; d < 2; d++) {
                if (can_read(c, d))
                    ev[d] |= POLLIN;
                int64_t t = write_time(p, c, d, now);
                if (t == 0)
                    ev[!d] |= POLLOUT;
                else if (t > 0 && t < wake_at)
                    wake_at = t;
            }
            for (int k = 0; k < 2; k++) {
                int fd = ev[k] == 0 && c->hup[k] ? -1 : c->fd[k];
                p->pfd[2 + 2 * i + k] = (struct pollfd){.fd = fd, .events = ev[k]};
            }
        }
        int timeout = -1;
        if (wake_at != INT64_MAX) {
            int64_t ms = (wake_at - now + 999999) / 1000000;
            timeout = ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
        }
        if (poll(p->pfd, (nfds_t)(2 + 2 * polled), timeout) < 0) {
            if (errno != EINTR)
                usleep(1000); // ENOMEM: retry rather than spin
            continue;
        }
        now = now_ns();
        int kept = 0;
        for (int i = 0; i < polled; i++) {
            conn_t *c = p->conns[i];
            int r = step(p, c, &p->pfd[2 + 2 * i], now);
            if (r != 0)
                conn_close(p, c, r < 0);
            else
                p->conns[kept++] = c;
        }
        p->nconns = kept;
        if (p->pfd[1].revents & POLLIN)
            accept_all(p);
    }
    close_all(p, 0);
    if (p->listen_fd >= 0)
        close(p->listen_fd);
    p->listen_fd = -1;
    return NULL;
}

static void free_proxy(hkt_proxy_t *p)
{
    if (p->listen_fd >= 0)
        close(p->listen_fd);
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    pthread_cond_destroy(&p->acked);
    pthread_mutex_destroy(&p->mu);
    free(p->conns);
    free(p->pfd);
    free(p);
}

hkt_proxy_t *hkt_proxy_start(const hkt_proxy_opts_t *opts, char *err, size_t errsz)
{
    if (opts == NULL || opts->upstream_host == NULL || opts->upstream_host[0] == '\0') {
        hk_err_set(err, errsz, "proxy: an upstream host is required");
        return NULL;
    }
    if (opts->port < 0 || opts->port > 65535 || opts->upstream_port < 1 ||
        opts->upstream_port > 65535) {
        hk_err_set(err, errsz,
                   "proxy: ports must be 0..65535 (listen) and 1..65535 (upstream), got %d and %d",
                   opts->port, opts->upstream_port);
        return NULL;
    }
    if (opts->max_conns < 0 || opts->max_conns > 65536) {
        hk_err_set(err, errsz, "proxy: max_conns must be 0..65536, got %d", opts->max_conns);
        return NULL;
    }
    char service[8];
    snprintf(service, sizeof(service), "%d", opts->upstream_port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(opts->upstream_host, service, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        hk_err_set(err, errsz, "proxy: upstream host \"%s\" does not resolve: %s",
                   opts->upstream_host, gai_strerror(gai));
        return NULL;
    }

    hkt_proxy_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        freeaddrinfo(ai);
        hk_err_set(err, errsz, "proxy: out of memory");
        return NULL;
    }
    memcpy(&p->upstream, ai->ai_addr, ai->ai_addrlen);
    p->upstream_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->acked, NULL);
    p->listen_fd = -1;
    p->max_conns = opts->max_conns > 0 ? opts->max_conns : DEFAULT_MAX;
    p->set.want_up = 1;
    p->cur = p->set;
    p->rng = (uint64_t)now_ns();
    p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->conns = calloc((size_t)p->max_conns, sizeof(*p->conns));
    p->pfd = calloc(2 + 2 * (size_t)p->max_conns, sizeof(*p->pfd));
    if (p->wake_fd < 0 || p->conns == NULL || p->pfd == NULL) {
        hk_err_set(err, errsz, "proxy: out of memory or file descriptors");
        free_proxy(p);
        return NULL;
    }
    p->listen_fd = listen_on(opts->port, &p->port, err, errsz);
    if (p->listen_fd < 0) {
        free_proxy(p);
        return NULL;
    }
    int rc = pthread_create(&p->thread, NULL, proxy_main, p);
    if (rc != 0) {
        hk_err_set(err, errsz, "proxy: cannot start its thread: %s", strerror(rc));
        free_proxy(p);
        return NULL;
    }
    return p;
}

void hkt_proxy_stop(hkt_proxy_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->set.stopping = 1;
    p->req_seq++;
    uint64_t one = 1;
    if (write(p->wake_fd, &one, sizeof(one)) < 0) {
        // Cannot fail on an eventfd short of overflow; the thread wakes anyway.
    }
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    free_proxy(p);
}

int hkt_proxy_port(const hkt_proxy_t *p)
{
    return p->port;
}

// Under mu: wakes the proxy thread and waits until it has applied p->set.
static void sync_locked(hkt_proxy_t *p)
{
    uint64_t mine = ++p->req_seq;
    uint64_t one = 1;
    if (write(p->wake_fd, &one, sizeof(one)) < 0) {
        // See hkt_proxy_stop().
    }
    while (p->ack_seq < mine)
        pthread_cond_wait(&p->acked, &p->mu);
}

static int dir_ok(hkt_proxy_dir_t dir)
{
    return dir == HKT_TO_SERVER || dir == HKT_TO_CLIENT || dir == HKT_BOTH_WAYS;
}

// Sets field[d] = v for the directions in `dir`.
static void set_dirs(int64_t *field, hkt_proxy_dir_t dir, int64_t v)
{
    if (dir & HKT_TO_SERVER)
        field[TO_SERVER] = v;
    if (dir & HKT_TO_CLIENT)
        field[TO_CLIENT] = v;
}

int hkt_proxy_set_latency(hkt_proxy_t *p, hkt_proxy_dir_t dir, int ms, int jitter_ms)
{
    if (!dir_ok(dir) || ms < 0 || ms > MAX_MS || jitter_ms < 0 || jitter_ms > MAX_MS)
        return -1;
    pthread_mutex_lock(&p->mu);
    set_dirs(p->set.latency_ms, dir, ms);
    set_dirs(p->set.jitter_ms, dir, jitter_ms);
    sync_locked(p);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int hkt_proxy_set_bandwidth(hkt_proxy_t *p, hkt_proxy_dir_t dir, int64_t bytes_per_s)
{
    if (!dir_ok(dir) || bytes_per_s < 0)
        return -1;
    pthread_mutex_lock(&p->mu);
    set_dirs(p->set.rate, dir, bytes_per_s);
    sync_locked(p);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int hkt_proxy_set_blackhole(hkt_proxy_t *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->set.blackhole = on != 0;
    sync_locked(p);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int hkt_proxy_set_close_after(hkt_proxy_t *p, hkt_proxy_dir_t dir, int64_t bytes)
{
    if (!dir_ok(dir) || bytes < 0)
        return -1;
    pthread_mutex_lock(&p->mu);
    set_dirs(p->set.close_after, dir, bytes);
    sync_locked(p);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void hkt_proxy_reset(hkt_proxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->set.resets++;
    sync_locked(p);
    pthread_mutex_unlock(&p->mu);
}

void hkt_proxy_set_reset_new(hkt_proxy_t *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->set.reset_new = on != 0;
    sync_locked(p);
    pthread_mutex_unlock(&p->mu);
}

void hkt_proxy_down(hkt_proxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->set.want_up = 0;
    sync_locked(p);
    pthread_mutex_unlock(&p->mu);
}

// Under mu: asks for the listener back and reports whether the bind worked.
static int up_locked(hkt_proxy_t *p, char *err, size_t errsz)
{
    p->set.want_up = 1;
    p->up_failed = 0;
    sync_locked(p);
    if (p->up_failed) {
        hk_err_set(err, errsz, "%s", p->up_err);
        return -1;
    }
    return 0;
}

int hkt_proxy_up(hkt_proxy_t *p, char *err, size_t errsz)
{
    pthread_mutex_lock(&p->mu);
    int rc = up_locked(p, err, errsz);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int hkt_proxy_clear(hkt_proxy_t *p, char *err, size_t errsz)
{
    pthread_mutex_lock(&p->mu);
    settings_t *s = &p->set;
    memset(s->latency_ms, 0, sizeof(s->latency_ms));
    memset(s->jitter_ms, 0, sizeof(s->jitter_ms));
    memset(s->rate, 0, sizeof(s->rate));
    memset(s->close_after, 0, sizeof(s->close_after));
    s->blackhole = 0;
    s->reset_new = 0;
    int rc = up_locked(p, err, errsz);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void hkt_proxy_stats(hkt_proxy_t *p, hkt_proxy_stats_t *out)
{
    pthread_mutex_lock(&p->mu);
    sync_locked(p);
    *out = p->stats;
    pthread_mutex_unlock(&p->mu);
}
