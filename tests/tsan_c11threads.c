// ThreadSanitizer builds only (CMakeLists.txt adds this file to every executable
// when HK_SANITIZE contains "thread"). Debian's librdkafka creates its threads and
// takes its locks through glibc's C11 threads (thrd_create, mtx_lock, cnd_wait...),
// which call pthreads internally where TSan cannot intercept them: the first
// librdkafka thread then crashes inside TSan (no thread state), and its locks would
// be invisible, so hand-overs through librdkafka queues would read as races. See
// https://github.com/google/sanitizers/issues/1195 and librdkafka's
// --disable-c11threads (https://github.com/confluentinc/librdkafka/pull/2541).
// Defined in the executable, these win over glibc's for librdkafka.so too (the
// executable comes first in symbol lookup), and forward to the pthread functions
// TSan intercepts. Not linked into release or ASan builds.
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

typedef struct tsan_start {
    thrd_start_t func;
    void *arg;
} tsan_start_t;

static int tsan_rc(int err)
{
    switch (err) {
    case 0:
        return thrd_success;
    case ENOMEM:
        return thrd_nomem;
    case EBUSY:
        return thrd_busy;
    case ETIMEDOUT:
        return thrd_timedout;
    default:
        return thrd_error;
    }
}

static void *tsan_trampoline(void *p)
{
    tsan_start_t s = *(tsan_start_t *)p;
    free(p);
    return (void *)(intptr_t)s.func(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
    tsan_start_t *s = malloc(sizeof *s);
    if (!s)
        return thrd_nomem;
    s->func = func;
    s->arg = arg;
    int err = pthread_create((pthread_t *)thr, NULL, tsan_trampoline, s);
    if (err)
        free(s);
    return tsan_rc(err);
}

int thrd_join(thrd_t thr, int *res)
{
    void *ret = NULL;
    int err = pthread_join((pthread_t)thr, &ret);
    if (!err && res)
        *res = (int)(intptr_t)ret;
    return tsan_rc(err);
}

int thrd_detach(thrd_t thr)
{
    return tsan_rc(pthread_detach((pthread_t)thr));
}

thrd_t thrd_current(void)
{
    return (thrd_t)pthread_self();
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int err = pthread_mutex_init((pthread_mutex_t *)m, &attr);
    pthread_mutexattr_destroy(&attr);
    return tsan_rc(err);
}

int mtx_lock(mtx_t *m)
{
    return tsan_rc(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
    return tsan_rc(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return tsan_rc(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_unlock(mtx_t *m)
{
    return tsan_rc(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    return tsan_rc(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
    return tsan_rc(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return tsan_rc(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return tsan_rc(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return tsan_rc(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}

void call_once(once_flag *flag, void (*func)(void))
{
    pthread_once((pthread_once_t *)flag, func);
}
