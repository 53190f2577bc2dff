/*
 * pool.c - persistent thread pool.
 *
 * Design: a job is n shares (n = the pool's size), each run exactly once by
 * whichever thread claims it first.  The job word `claim` packs the job's
 * generation (high 32 bits) and the next unclaimed share (low 32 bits); the
 * caller publishes a job by storing (gen, 0), then claims shares itself like
 * any worker, and returns when `done` reaches n.  A worker claims with a CAS
 * on the word it read, so a worker that wakes late (descheduled on a busy
 * machine) never runs a share of a job that already moved on, and the caller
 * never waits for a thread that has not started: it runs the unclaimed
 * shares itself.  Workers spin on the word for a short while (decode issues
 * one job per matmul, tens of microseconds apart), then sleep on a condition
 * variable.  Invariant: only one job is in flight.
 */
#include "core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define SPIN_ITERS 4000 /* ~100 us of pause: longer than the gap between matmuls, short enough to yield to a descheduled peer */

struct pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t claim; /* generation << 32 | next share */
    atomic_int done;        /* shares of the current job finished */
    atomic_int stop;
    _Atomic(pool_fn) fn;
    _Atomic(void *) ctx;
};

typedef struct {
    pool *p;
} worker_arg;

/* run the shares of the job whose word is v that this thread can still claim */
static void run_shares(pool *p, uint64_t v)
{
    for (;;) {
        uint32_t s = (uint32_t)v;
        if (s >= (uint32_t)p->n) return;
        pool_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&p->claim, &v, v + 1, memory_order_acquire,
                                                  memory_order_acquire)) {
            fn(ctx, (int)s, p->n);
            atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
            v = atomic_load_explicit(&p->claim, memory_order_acquire);
        }
    }
}

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    pool *p = wa->p;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        uint64_t v;
        int spins = 0;
        while ((uint32_t)((v = atomic_load_explicit(&p->claim, memory_order_acquire)) >> 32) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while ((uint32_t)(atomic_load(&p->claim) >> 32) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = (uint32_t)(v >> 32);
        run_shares(p, v);
    }
}

int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int pool_new(int nthreads, pool **out)
{
    *out = NULL;
    if (nthreads <= 0) nthreads = cpu_count();
    pool *p = calloc(1, sizeof *p);
    if (!p) return DOC_ENOMEM;
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)nthreads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return DOC_ENOMEM;
    }
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&p->threads[i], NULL, worker, (wa->p = p, wa))) {
            free(wa);
            p->n = i; /* the ones started so far */
            pool_free(&p);
            return DOC_ENOMEM;
        }
    }
    *out = p;
    return DOC_OK;
}

int pool_size(const pool *p) { return p ? p->n : 1; }

void pool_run(pool *p, pool_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint64_t gen = (atomic_load_explicit(&p->claim, memory_order_relaxed) >> 32) + 1;
    if ((uint32_t)gen == 0) gen = 1; /* workers start having seen generation 0 */
    uint64_t v = (uint64_t)(uint32_t)gen << 32;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->claim, v, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    run_shares(p, v);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < p->n) {
        if (++spins > SPIN_ITERS) sched_yield();
#if defined(__x86_64__)
        else __builtin_ia32_pause();
#endif
    }
}

void pool_free(pool **pp)
{
    pool *p = pp ? *pp : NULL;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
    *pp = NULL;
}
