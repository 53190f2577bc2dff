/*
 * batch.c - one local decoder shared by several threads: continuous batching.
 *
 * After llm_model_set_parallel, llm_generate (and llm_generate_chat) may run
 * on one model from up to n threads at once.  Their decode steps meet here
 * and run as one llm_sessions_step: a sequence joins the batch when its
 * prefill is done and leaves when it stops, between any two steps.
 *
 * The backend is used by one thread at a time (`exec`).  A thread that wants
 * a decode step queues its request and waits; the first waiter to find no
 * step running and the batch ready runs one step for the queue's first `max`
 * requests, its own or not, and wakes their owners.  The batch is ready when
 * every decoding sequence has a request in (the usual case: they all sampled
 * their last token), when `max` are in, or when the oldest request has
 * waited GATHER_S: a sequence held up between steps (its caller's callback
 * writing to a slow client) delays the others by at most that.  A prefill
 * runs in chunks; before each one it lets one pending step go first, so a
 * long prompt does not stall the answers already streaming.
 */
#include "llm/model.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define GATHER_S 0.002  /* longest a ready request waits for the rest of the batch */
#define PREFILL_CHUNK 256

typedef struct breq {
    struct breq *next;
    llm_step_row row; /* the session, its token, and what comes back */
    double since;     /* when it was queued */
    int done, rc;
    doc_err err;
} breq;

struct llm_batcher {
    pthread_mutex_t mu; /* everything below */
    pthread_cond_t cv;
    pthread_mutex_t exec; /* held while the backend runs */
    int max;              /* sequences per step */
    int decoding;         /* sequences between their prefill and their end */
    breq *head, **tail;   /* queued requests, oldest first */
    int pending;
    int stepping; /* a thread is running a step */
    uint64_t steps, tokens;
    llm_step_row *rows; /* (max) the step being run */
};

int llm_model_set_parallel(llm_model *m, int n, doc_err *err)
{
    if (n < 1 || n > 64) return doc_errf(err, DOC_EINVAL, "parallel sequences must be 1 to 64, not %d", n);
    if (m->remote) return DOC_OK; /* remote models take concurrent calls as they are */
    if (m->kind != LLM_DECODER)
        return doc_errf(err, DOC_EINVAL, "%s: parallel generation needs a decoder model", m->src.path);
    if (m->batcher) return doc_errf(err, DOC_ESTATE, "%s: parallel generation is already set", m->src.path);
    int rc = model_plan(m, n, err); /* n answers of the full context at once */
    if (rc) return rc;
    if (n == 1) return DOC_OK;
    llm_batcher *b = calloc(1, sizeof *b);
    if (b) b->rows = calloc((size_t)n, sizeof *b->rows);
    if (!b || !b->rows) {
        free(b);
        return doc_errf(err, DOC_ENOMEM, "out of memory for a batch of %d", n);
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->exec, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->max = n;
    b->tail = &b->head;
    m->batcher = b;
    return DOC_OK;
}

void batch_free(llm_model *m)
{
    llm_batcher *b = m->batcher;
    if (!b) return;
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->exec);
    pthread_cond_destroy(&b->cv);
    free(b->rows);
    free(b);
    m->batcher = NULL;
}

void llm_model_batch_stats(const llm_model *m, uint64_t *steps, uint64_t *tokens)
{
    llm_batcher *b = m->batcher;
    *steps = *tokens = 0;
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    *steps = b->steps;
    *tokens = b->tokens;
    pthread_mutex_unlock(&b->mu);
}

void batch_exec(llm_model *m, int on)
{
    if (!m->batcher) return;
    if (on) pthread_mutex_lock(&m->batcher->exec);
    else pthread_mutex_unlock(&m->batcher->exec);
}

void batch_join(llm_model *m, int on)
{
    llm_batcher *b = m->batcher;
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->decoding += on ? 1 : -1;
    pthread_cond_broadcast(&b->cv); /* the others may be complete now */
    pthread_mutex_unlock(&b->mu);
}

static void wait_until(llm_batcher *b, double until)
{
    struct timespec ts;
    ts.tv_sec = (time_t)until;
    ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
    int rc = pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    (void)rc; /* ETIMEDOUT or a wake-up: the caller re-checks */
}


/* run one step for the queue's first requests; called and returns with mu held */
static void lead(llm_model *m)
{
    llm_batcher *b = m->batcher;
    breq *batch[64];
    int n = 0;
    while (b->head && n < b->max) {
        breq *r = b->head;
        b->head = r->next;
        batch[n] = r;
        b->rows[n] = r->row;
        n++;
    }
    if (!b->head) b->tail = &b->head;
    b->pending -= n;
    b->stepping = 1;
    pthread_mutex_unlock(&b->mu);

    doc_err err = {0};
    pthread_mutex_lock(&b->exec);
    int rc = llm_sessions_step_rows(b->rows, n, &err);
    pthread_mutex_unlock(&b->exec);
    for (int i = 0; i < n; i++) { /* logits went straight to each owner's buffer */
        batch[i]->row.next = b->rows[i].next;
        batch[i]->rc = rc;
        if (rc) batch[i]->err = err;
    }

    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < n; i++) batch[i]->done = 1;
    b->stepping = 0;
    b->steps++;
    b->tokens += (uint64_t)n;
    pthread_cond_broadcast(&b->cv);
}

/* with mu held: run a step if the queue is ready (see the top), else wait
 * for a change (a step ended, a request came, a sequence left) or the
 * oldest request's gathering time to pass; the queue is not empty */
static void advance(llm_model *m)
{
    llm_batcher *b = m->batcher;
    if (b->stepping) {
        pthread_cond_wait(&b->cv, &b->mu);
        return;
    }
    double until = b->head->since + GATHER_S;
    if (b->pending >= b->decoding || b->pending >= b->max || time_now() >= until) lead(m);
    else wait_until(b, until);
}

int batch_decode(llm_model *m, llm_session *s, int32_t id, sampler *smp, int32_t *next,
                 doc_err *err)
{
    llm_batcher *b = m->batcher;
    breq r = {.row = {.s = s, .id = id}, .since = time_now()};
    sampler_row(smp, &r.row);
    int rc;
    if (!b) {
        rc = llm_sessions_step_rows(&r.row, 1, err);
        if (!rc) *next = r.row.next;
        return rc;
    }
    pthread_mutex_lock(&b->mu);
    *b->tail = &r;
    b->tail = &r.next;
    b->pending++;
    pthread_cond_broadcast(&b->cv);
    while (!r.done) advance(m);
    pthread_mutex_unlock(&b->mu);
    if (r.rc && err) *err = r.err;
    if (!r.rc) *next = r.row.next;
    return r.rc;
}

int batch_prefill(llm_model *m, llm_session *s, const int32_t *ids, int n, float *logits,
                  doc_err *err)
{
    llm_batcher *b = m->batcher;
    if (!b) return llm_session_eval(s, ids, n, 0, logits, err);
    for (int done = 0; done < n;) {
        int c = n - done < PREFILL_CHUNK ? n - done : PREFILL_CHUNK;
        pthread_mutex_lock(&b->mu);
        uint64_t seen = b->steps; /* let one waiting step go first */
        while (b->pending > 0 && b->steps == seen) advance(m);
        pthread_mutex_unlock(&b->mu);
        pthread_mutex_lock(&b->exec);
        int rc = llm_session_eval(s, ids + done, c, 0, logits, err);
        pthread_mutex_unlock(&b->exec);
        if (rc) return rc;
        done += c;
    }
    return DOC_OK;
}
