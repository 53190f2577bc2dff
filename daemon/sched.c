/*
 * sched.c - who uses the store, the embedder and the generators, and when.
 *
 * The store and each model are single-threaded objects; requests share them:
 *
 *   store       a mutex, held for one store call at a time (a search, a
 *               listing, one document's rows), never across model work
 *   writer      a mutex held from the start of a write transaction to its
 *               commit (an ingest job's batch of documents, a delete, a
 *               collection change), so two writers never interleave
 *   embedder    a pool of one slot with two queues: query embeddings
 *               (searches, answers, /v1/embeddings) are served before bulk
 *               ingest, which takes the embedder one batch at a time
 *   generators  a pool of generators x parallel slots, first come first
 *               served, spread over the instances; the answers on one
 *               instance decode as one batch (llm_model_set_parallel); a
 *               question that waits longer than queue_timeout_s is refused
 *
 * Lock order: a generator, then the writer, then the store or the embedder;
 * the store and the embedder are never held together.  Nothing waits for a
 * generator while holding anything else.  reload_rw is read-locked around
 * an answer and for short reads of reloadable settings, anywhere in that
 * order; its writer (SIGHUP) takes nothing else, and readers go first.
 *
 * A pool hands a freed slot directly to the oldest waiter of the highest
 * priority, so a queue is served in order and a slot is never stolen by a
 * late arrival.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "daemon/internal.h"

typedef struct dd_waiter {
    struct dd_waiter *next;
    pthread_cond_t cv;
    int slot;                   /* -1 until granted */
} dd_waiter;

int dd_pool_init(dd_pool *p, int n)
{
    memset(p, 0, sizeof *p);
    if (n < 1 || n > 64) return DOC_EINVAL;
    p->n = n;
    p->free_mask = n == 64 ? ~0ull : (1ull << n) - 1;
    pthread_mutex_init(&p->mu, NULL);
    return DOC_OK;
}

void dd_pool_destroy(dd_pool *p)
{
    pthread_mutex_destroy(&p->mu);
}

static int take_free(dd_pool *p)
{
    int s = __builtin_ctzll(p->free_mask);
    p->free_mask &= ~(1ull << s);
    return s;
}

static void unlink_waiter(dd_pool *p, int prio, dd_waiter *w)
{
    dd_waiter **pp = &p->head[prio], *prev = NULL;
    while (*pp && *pp != w) prev = *pp, pp = &(*pp)->next;
    if (!*pp) return;
    *pp = w->next;
    if (p->tail[prio] == w) p->tail[prio] = prev;
    p->waiting[prio]--;
}

int dd_pool_take(dd_pool *p, int prio, double timeout_s, const volatile int *cancel,
                 const volatile int *stopping)
{
    pthread_mutex_lock(&p->mu);
    if (p->free_mask && !p->head[DD_PRIO_HIGH] && (prio == DD_PRIO_HIGH || !p->head[DD_PRIO_LOW])) {
        int s = take_free(p);
        p->taken++;
        pthread_mutex_unlock(&p->mu);
        return s;
    }
    dd_waiter w = {.slot = -1};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (p->tail[prio]) p->tail[prio]->next = &w;
    else p->head[prio] = &w;
    p->tail[prio] = &w;
    p->waiting[prio]++;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int rc = 0;
    while (w.slot < 0) {
        /* wake every quarter second to notice a client that went away */
        struct timespec until = start, now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
        if ((cancel && *cancel) || (stopping && *stopping)) {
            rc = DD_POOL_CANCELLED;
            break;
        }
        if (timeout_s > 0 && waited >= timeout_s) {
            rc = DD_POOL_TIMEOUT;
            break;
        }
        double step = waited + 0.25;
        if (timeout_s > 0 && step > timeout_s) step = timeout_s;
        until.tv_sec += (time_t)step;
        until.tv_nsec += (long)((step - (double)(time_t)step) * 1e9);
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&w.cv, &p->mu, &until);
    }
    if (w.slot >= 0) { /* granted, possibly while we decided to leave: keep it */
        rc = w.slot;
        p->taken++;
    } else {
        unlink_waiter(p, prio, &w);
        if (rc == DD_POOL_TIMEOUT) p->timeouts++;
    }
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

void dd_pool_give(dd_pool *p, int slot)
{
    if (slot < 0) return;
    pthread_mutex_lock(&p->mu);
    int prio = p->head[DD_PRIO_HIGH] ? DD_PRIO_HIGH : DD_PRIO_LOW;
    dd_waiter *w = p->head[prio];
    if (w) { /* hand over: the waiter owns the slot before it wakes */
        p->head[prio] = w->next;
        if (!w->next) p->tail[prio] = NULL;
        p->waiting[prio]--;
        w->next = NULL;
        w->slot = slot;
        pthread_cond_signal(&w->cv);
    } else {
        p->free_mask |= 1ull << slot;
    }
    pthread_mutex_unlock(&p->mu);
}

void dd_pool_depth(dd_pool *p, int *high, int *low, int *busy)
{
    pthread_mutex_lock(&p->mu);
    if (high) *high = p->waiting[DD_PRIO_HIGH];
    if (low) *low = p->waiting[DD_PRIO_LOW];
    if (busy) *busy = p->n - __builtin_popcountll(p->free_mask);
    pthread_mutex_unlock(&p->mu);
}

/* ---- the shared objects ------------------------------------------------------ */

int dd_take_generator(dd_job *j, doc_err *e)
{
    dd_server *srv = j->srv;
    const volatile int *cancel = j->stream ? &j->stream->cancel : NULL;
    double t0 = time_now();
    dd_settings set;
    dd_settings_get(srv, &set);
    int slot = dd_pool_take(&srv->gen_pool, DD_PRIO_HIGH, set.queue_timeout_s, cancel, &srv->stopping);
    if (slot == DD_POOL_TIMEOUT) {
        j->busy = 1;
        return doc_errf(e, DOC_ELIMIT,
                        "busy: no generator came free within %d s ([daemon] queue_timeout_s); "
                        "retry later",
                        set.queue_timeout_s);
    }
    if (slot < 0) return doc_errf(e, DOC_ECANCELLED, "cancelled while waiting for a generator");
    j->queued_s = time_now() - t0;
    int limit = set.answer_timeout_s;
    if (j->timeout_s > 0 && j->timeout_s < limit) limit = j->timeout_s;
    j->deadline = time_now() + limit;
    return slot;
}

llm_model *dd_generator(dd_server *srv, int slot)
{
    return srv->n_generators ? srv->generators[slot % srv->n_generators] : NULL;
}

void dd_decode_stats(dd_server *srv, uint64_t *steps, uint64_t *tokens)
{
    *steps = *tokens = 0;
    for (int i = 0; i < srv->n_generators; i++) {
        uint64_t s, t;
        llm_model_batch_stats(srv->generators[i], &s, &t);
        *steps += s;
        *tokens += t;
    }
}

void dd_settings_get(dd_server *srv, dd_settings *out)
{
    pthread_rwlock_rdlock(&srv->reload_rw);
    *out = (dd_settings){.max_body_kb = srv->cfg.max_body_kb,
                         .max_json_depth = srv->cfg.max_json_depth,
                         .max_per_caller = srv->cfg.max_per_caller,
                         .queue_timeout_s = srv->cfg.queue_timeout_s,
                         .answer_timeout_s = srv->cfg.answer_timeout_s};
    pthread_rwlock_unlock(&srv->reload_rw);
}

int dd_server_init(dd_server *srv, int n_generators)
{
    pthread_mutex_init(&srv->store_mu, NULL);
    pthread_mutex_init(&srv->writer_mu, NULL);
    pthread_mutex_init(&srv->ingest_mu, NULL);
    /* readers first: a reader may take it while holding the store (dd_is_admin
     * in a route) as another holds it and waits for the store (an answer), so
     * a waiting SIGHUP must not block new readers */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_READER_NP);
    pthread_rwlock_init(&srv->reload_rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&srv->stats, NULL);
    pthread_cond_init(&srv->producers_done, NULL);
    pthread_cond_init(&srv->jobs_changed, NULL);
    dd_pool_init(&srv->embed_pool, 1);
    return dd_pool_init(&srv->gen_pool, n_generators);
}

void dd_server_destroy(dd_server *srv)
{
    pthread_mutex_destroy(&srv->store_mu);
    pthread_mutex_destroy(&srv->writer_mu);
    pthread_mutex_destroy(&srv->ingest_mu);
    pthread_rwlock_destroy(&srv->reload_rw);
    pthread_mutex_destroy(&srv->stats);
    pthread_cond_destroy(&srv->producers_done);
    pthread_cond_destroy(&srv->jobs_changed);
    dd_pool_destroy(&srv->embed_pool);
    dd_pool_destroy(&srv->gen_pool);
}

void dd_use(dd_server *srv, int what, int prio, int on)
{
    switch (what) {
    case DD_USE_STORE:
        if (on) pthread_mutex_lock(&srv->store_mu);
        else pthread_mutex_unlock(&srv->store_mu);
        break;
    case DD_USE_WRITER:
        if (on) pthread_mutex_lock(&srv->writer_mu);
        else pthread_mutex_unlock(&srv->writer_mu);
        break;
    case DD_USE_EMBEDDER:
        /* no timeout: one embedding batch is the longest anyone waits behind */
        if (on) (void)dd_pool_take(&srv->embed_pool, prio, 0, NULL, NULL);
        else dd_pool_give(&srv->embed_pool, 0);
        break;
    }
}

/* the rag lock hook: answers are queries (high priority); the generator is
 * taken by dd_run_ask before the answer starts */
static void rag_lock(void *ud, int what, int on)
{
    dd_server *srv = ud;
    if (what == RAG_USE_STORE) dd_use(srv, DD_USE_STORE, DD_PRIO_HIGH, on);
    else if (what == RAG_USE_EMBEDDER) dd_use(srv, DD_USE_EMBEDDER, DD_PRIO_HIGH, on);
}

void dd_rag_env(dd_server *srv, llm_model *generator, rag_env *env)
{
    /* the caller holds srv->reload_rw for reading while env is in use */
    memset(env, 0, sizeof *env);
    env->store = srv->store;
    env->embedder = srv->embedder;
    env->generator = generator;
    env->prompts = srv->prompts;
    env->opts = srv->opts;
    env->lock = rag_lock;
    env->lock_ud = srv;
}
