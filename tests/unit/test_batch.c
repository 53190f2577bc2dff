/*
 * test_batch.c - continuous batching on the default decoder (SmolLM2-135M
 * Q4_1): llm_sessions_step against one llm_session_eval per session, and
 * llm_generate from several threads on one llm_model_set_parallel model
 * against the same prompts run one at a time.
 *
 * Step parity.  Five sessions with prompts of 7 to ~120 tokens are stepped
 * greedily for 24 steps, once all together and once each on its own.  The
 * batch joins and loses sessions on the way (one starts late, one stops
 * early), so positions differ inside a step.  Required: the same greedy
 * tokens, and logits within 1e-3 of the logit range.  On the CPU the rows
 * of a batch go through the same per-row arithmetic as a single row, so the
 * logits come out bit-identical; the tolerance leaves room for a backend
 * that sums in another order.  DOCENT_TEST_BACKEND picks the backend.
 *
 * Threads.  Six prompts are answered greedily, first one after another
 * (reference), then by six threads at once on a model allowed 4 parallel
 * sequences, with different max_tokens so sequences leave at different
 * times, and with one thread cancelling early.  Required: each thread's text
 * equals its reference text (the cancelled one a prefix of it), and the
 * batch statistics show steps that served more than one sequence.
 */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include "llm/llm.h"

static llm_model *model;

static const char *backend(void)
{
    const char *b = getenv("DOCENT_TEST_BACKEND");
    return b && *b ? b : "cpu";
}

static int open_model(llm_model **m)
{
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    doc_err err = {0};
    llm_opts o = {.n_threads = 2, .n_ctx = 1024, .backend = backend()};
    if (llm_model_open(path, &o, m, &err)) {
        printf("open: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return open_model(&model);
}

static int teardown(void **state)
{
    (void)state;
    llm_model_close(&model);
    return 0;
}

static const char *const prompts[] = {
    "The capital of France is",
    "<|im_start|>user\nWhat does the SQLite VACUUM command do?<|im_end|>\n<|im_start|>assistant\n",
    "Debian packages are installed with dpkg and apt. To remove a package and its configuration files, run",
    "<|im_start|>system\nYou answer questions about PostgreSQL from its manual.<|im_end|>\n"
    "<|im_start|>user\nHow do I create an index concurrently, and what are the caveats when the build "
    "fails part way through? Explain what state the index is left in, how to find such indexes in the "
    "catalog, and how to clean them up afterwards.<|im_end|>\n<|im_start|>assistant\n",
    "1, 2, 3, 4, 5,",
    "Write a haiku about write-ahead logging:",
};
#define NP ((int)(sizeof prompts / sizeof prompts[0]))

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void test_step_parity(void **state)
{
    (void)state;
    enum { NS = 5, STEPS = 24 };
    const int nv = llm_n_vocab(model);
    doc_err err = {0};
    llm_session *bat[NS], *one[NS];
    int32_t next_b[NS], next_o[NS];
    int start[NS] = {0, 0, 0, 6, 0}, stop[NS] = {STEPS, STEPS, 10, STEPS, STEPS};
    float *lb = malloc((size_t)NS * nv * sizeof(float)), *lo = malloc((size_t)nv * sizeof(float));
    assert_non_null(lb);
    assert_non_null(lo);
    for (int i = 0; i < NS; i++) {
        int32_t *ids;
        int n;
        assert_int_equal(llm_tokenize(model, prompts[i], strlen(prompts[i]), 1, 1, &ids, &n, &err), 0);
        assert_int_equal(llm_session_new(model, &bat[i], &err), 0);
        assert_int_equal(llm_session_new(model, &one[i], &err), 0);
        assert_int_equal(llm_session_eval(bat[i], ids, n, 0, lo, &err), 0);
        next_b[i] = argmax(lo, nv);
        assert_int_equal(llm_session_eval(one[i], ids, n, 0, lo, &err), 0);
        next_o[i] = argmax(lo, nv);
        assert_int_equal(next_b[i], next_o[i]);
        free(ids);
    }
    double worst = 0;
    int batched_rows = 0, max_rows = 0;
    for (int step = 0; step < STEPS; step++) {
        llm_session *ss[NS];
        int32_t ids[NS];
        int who[NS], n = 0;
        for (int i = 0; i < NS; i++)
            if (step >= start[i] && step < stop[i]) {
                ss[n] = bat[i];
                ids[n] = next_b[i];
                who[n++] = i;
            }
        if (n > max_rows) max_rows = n;
        batched_rows += n;
        assert_int_equal(llm_sessions_step(ss, ids, n, lb, &err), 0);
        for (int r = 0; r < n; r++) {
            int i = who[r];
            assert_int_equal(llm_session_eval(one[i], &next_o[i], 1, 0, lo, &err), 0);
            const float *b = lb + (size_t)r * nv;
            float mn = lo[0], mx = lo[0];
            double d = 0;
            for (int v = 0; v < nv; v++) {
                mn = lo[v] < mn ? lo[v] : mn;
                mx = lo[v] > mx ? lo[v] : mx;
                double e = fabs((double)b[v] - lo[v]);
                d = e > d ? e : d;
            }
            d /= (double)(mx - mn);
            worst = d > worst ? d : worst;
            next_b[i] = argmax(b, nv);
            next_o[i] = argmax(lo, nv);
            if (next_b[i] != next_o[i])
                fail_msg("step %d, session %d: batched token %d, alone %d", step, i, next_b[i], next_o[i]);
            assert_int_equal(llm_session_pos(bat[i]), llm_session_pos(one[i]));
        }
    }
    printf("step parity: %d rows in %d steps (up to %d per step), max |diff|/range %.3g\n",
           batched_rows, STEPS, max_rows, worst);
    assert_true(worst <= 1e-3);
    for (int i = 0; i < NS; i++) {
        llm_session_free(&bat[i]);
        llm_session_free(&one[i]);
    }
    free(lb);
    free(lo);
}

/* the greedy pick with a repetition penalty, written out here as the
 * reference: each distinct recent id once, positive logits divided by the
 * penalty and negative ones multiplied, then the first maximum */
static int ref_pick(float *x, int nv, const int32_t *recent, int nr, float pen)
{
    for (int i = 0; i < nr; i++) {
        int dup = 0;
        for (int j = 0; j < i; j++) dup |= recent[j] == recent[i];
        if (!dup) x[recent[i]] = x[recent[i]] > 0 ? x[recent[i]] / pen : x[recent[i]] * pen;
    }
    return argmax(x, nv);
}

/* llm_sessions_step_rows: one row returning logits, two picking greedily on
 * the backend (one with a penalty over its recent ids, repeats included),
 * against llm_sessions_step on copies of the sessions and ref_pick */
static void test_step_rows(void **state)
{
    (void)state;
    enum { NS = 3, STEPS = 12, RMAX = 64 };
    const int nv = llm_n_vocab(model);
    const float pens[NS] = {1.0f, 1.3f, 1.0f};
    doc_err err = {0};
    llm_session *a[NS], *b[NS];
    int32_t next[NS], recent[NS][RMAX];
    int nrec[NS];
    float *lr = malloc((size_t)nv * sizeof(float)), *lb = malloc((size_t)NS * nv * sizeof(float));
    assert_true(lr && lb);
    for (int i = 0; i < NS; i++) {
        int32_t *ids;
        int n;
        assert_int_equal(llm_tokenize(model, prompts[i + 2], strlen(prompts[i + 2]), 1, 1, &ids, &n, &err), 0);
        assert_int_equal(llm_session_new(model, &a[i], &err), 0);
        assert_int_equal(llm_session_new(model, &b[i], &err), 0);
        assert_int_equal(llm_session_eval(a[i], ids, n, 0, lr, &err), 0);
        assert_int_equal(llm_session_copy(b[i], a[i]), 0);
        nrec[i] = n < 40 ? n : 40;
        memcpy(recent[i], ids + n - nrec[i], (size_t)nrec[i] * sizeof(int32_t));
        next[i] = ref_pick(lr, nv, recent[i], nrec[i], pens[i]);
        free(ids);
    }
    int penalised_differs = 0;
    for (int step = 0; step < STEPS; step++) {
        llm_step_row rows[NS];
        llm_session *bs[NS];
        for (int i = 0; i < NS; i++) {
            recent[i][nrec[i]++] = next[i]; /* as the sampler accepts a token before the step */
            rows[i] = (llm_step_row){.s = a[i], .id = next[i], .logits = i == 0 ? lr : NULL,
                                     .recent = recent[i], .n_recent = nrec[i], .pick = {.penalty = pens[i]}};
            bs[i] = b[i];
        }
        assert_int_equal(llm_sessions_step_rows(rows, NS, &err), 0);
        assert_int_equal(llm_sessions_step(bs, next, NS, lb, &err), 0);
        for (int i = 0; i < NS; i++) {
            float *x = lb + (size_t)i * nv;
            if (i == 0) assert_memory_equal(lr, x, (size_t)nv * sizeof(float));
            int plain = argmax(x, nv), want = ref_pick(x, nv, recent[i], nrec[i], pens[i]);
            int got = i == 0 ? argmax(lr, nv) : rows[i].next;
            if (got != want)
                fail_msg("step %d row %d: picked %d, reference %d (penalty %.1f)", step, i, got, want, pens[i]);
            penalised_differs += pens[i] != 1.0f && plain != want;
            next[i] = want;
            assert_int_equal(llm_session_pos(a[i]), llm_session_pos(b[i]));
        }
    }
    printf("step rows: %d steps of 3 rows; the penalty changed the pick %d times\n", STEPS, penalised_differs);
    for (int i = 0; i < NS; i++) {
        llm_session_free(&a[i]);
        llm_session_free(&b[i]);
    }
    free(lr);
    free(lb);
}

/* the memory plan at open and at llm_model_set_parallel: a context that
 * does not fit the configured working memory is refused with the numbers
 * (SmolLM2-135M: 30 layers x 3 kv heads x 64 x 2 (K, V) x 4 bytes = 45 KiB
 * per position, so 45 MiB of KV cache for 1,024 positions) */
static void test_memory_plan(void **state)
{
    (void)state;
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    doc_err err = {0};
    llm_model *m = NULL;
    llm_opts o = {.n_threads = 2, .n_ctx = 1024, .backend = "cpu", .mem_limit_mb = 100};
    assert_int_equal(llm_model_open(path, &o, &m, &err), DOC_ENOMEM);
    assert_null(m);
    printf("limit 100 MiB: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "1 session of 1024 positions (KV cache 45 MiB"));
    assert_non_null(strstr(err.msg, "memory_limit_mb allows 100 MiB"));
    /* 300 MiB: one answer, and two at once, but not eight */
    o.mem_limit_mb = 300;
    if (llm_model_open(path, &o, &m, &err)) fail_msg("open with 300 MiB: %s", err.msg);
    assert_int_equal(llm_model_set_parallel(m, 8, &err), DOC_ENOMEM);
    printf("parallel 8: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "8 sessions of 1024 positions"));
    assert_int_equal(llm_model_set_parallel(m, 2, &err), DOC_OK);
    llm_model_close(&m);
    /* the encoder: one full batch */
    test_model_path(path, sizeof path, TEST_EMBEDDER);
    llm_opts e = {.n_threads = 2, .backend = "cpu", .batch = 32, .mem_limit_mb = 16};
    assert_int_equal(llm_model_open(path, &e, &m, &err), DOC_ENOMEM);
    assert_non_null(strstr(err.msg, "a batch of 32 x 256 tokens"));
    e.mem_limit_mb = 0; /* the host's available memory */
    if (llm_model_open(path, &e, &m, &err)) fail_msg("encoder: %s", err.msg);
    llm_model_close(&m);
}

/* resident memory of this process, in bytes */
static size_t rss_bytes(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static int same_logits(const float *a, const float *b, int nv) { return !memcmp(a, b, (size_t)nv * sizeof(float)); }

/*
 * Caches that grow.  A second model whose CPU backend grows caches as CUDA
 * does (DOCENT_CPU_KV_GROW=1: positions laid out one after another with all
 * their layers, memory opened in 64 KiB blocks as they are reached, and a
 * fault past them) gives logits bit-identical to the default layout: over a
 * prompt of three 256-token chunks, a session copied from it, and decode
 * steps of both.  Under a memory limit the caches stop growing at the limit
 * with an error naming it, and the default layout only takes memory for
 * positions written.
 */
static void test_growing_caches(void **state)
{
    (void)state;
    if (strcmp(backend(), "cpu")) { /* the comparisons below are bit for bit, CPU to CPU */
        printf("growing caches: a check of the CPU backend's two layouts, not run on %s "
               "(test_cuda's test_kv_grow checks the device's)\n", backend());
        return;
    }
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    doc_err err = {0};
    const int nv = llm_n_vocab(model);
    llm_model *g = NULL;
    llm_opts o = {.n_threads = 2, .n_ctx = 1024, .backend = "cpu"};
    setenv("DOCENT_CPU_KV_GROW", "1", 1); /* read when the backend is made */
    int rc = llm_model_open(path, &o, &g, &err);
    if (rc) fail_msg("open with growing caches: %s", err.msg);
    buf text;
    buf_init(&text, 0);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < NP; j++) assert_int_equal(buf_puts(&text, prompts[j]), 0);
    int32_t *ids;
    int n;
    assert_int_equal(llm_tokenize(model, text.data, text.len, 1, 1, &ids, &n, &err), 0);
    if (n <= 512 || n >= 1000) fail_msg("the long prompt has %d tokens", n);
    float *la = malloc((size_t)2 * nv * sizeof(float)), *lb = malloc((size_t)2 * nv * sizeof(float));
    assert_true(la && lb);
    llm_session *a[2], *b[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(llm_session_new(model, &a[i], &err), 0);
        assert_int_equal(llm_session_new(g, &b[i], &err), 0);
    }
    assert_int_equal(llm_session_eval(a[0], ids, n, 0, la, &err), 0);
    assert_int_equal(llm_session_eval(b[0], ids, n, 0, lb, &err), 0);
    assert_true(same_logits(la, lb, nv));
    assert_int_equal(llm_session_copy(a[1], a[0]), 0);
    assert_int_equal(llm_session_copy(b[1], b[0]), 0);
    int32_t next[2] = {argmax(la, nv), (argmax(la, nv) + 1) % nv}; /* the copies go their own ways */
    for (int step = 0; step < 20; step++) {
        assert_int_equal(llm_sessions_step(a, next, 2, la, &err), 0);
        if (llm_sessions_step(b, next, 2, lb, &err)) fail_msg("step %d (growing): %s", step, err.msg);
        for (int i = 0; i < 2; i++) {
            if (!same_logits(la + (size_t)i * nv, lb + (size_t)i * nv, nv))
                fail_msg("step %d, session %d: logits differ between the layouts", step, i);
            next[i] = argmax(la + (size_t)i * nv, nv);
        }
    }
    printf("growing caches: %d-token prompt, a copy, 20 steps of 2: logits bit-identical to the default layout\n", n);
    for (int i = 0; i < 2; i++) {
        llm_session_free(&a[i]);
        llm_session_free(&b[i]);
    }
    llm_model_close(&g);

    /* a limit that plans one answer of the full context (1,024 positions,
     * 45 MiB) leaves the caches about that much: a second long answer stops
     * growing partway, with the limit in the error */
    o.mem_limit_mb = 125;
    rc = llm_model_open(path, &o, &g, &err);
    unsetenv("DOCENT_CPU_KV_GROW");
    if (rc) fail_msg("open with growing caches and 125 MiB: %s", err.msg);
    assert_int_equal(llm_session_new(g, &b[0], &err), 0);
    assert_int_equal(llm_session_new(g, &b[1], &err), 0);
    assert_int_equal(llm_session_eval(b[0], ids, n, 0, lb, &err), 0);
    assert_int_equal(llm_session_eval(b[1], ids, n, 0, lb, &err), DOC_ENOMEM);
    printf("second answer under the limit: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "KV cache"));
    assert_non_null(strstr(err.msg, "memory_limit_mb"));
    llm_session_free(&b[1]); /* its memory goes back: a new answer fits again */
    assert_int_equal(llm_session_new(g, &b[1], &err), 0);
    llm_session_free(&b[0]);
    assert_int_equal(llm_session_eval(b[1], ids, n, 0, lb, &err), 0);
    llm_session_free(&b[1]);
    llm_model_close(&g);

    /* the default layout: a session of 1,024 positions (45 MiB of cache)
     * with 8 tokens in it takes a few pages per layer */
    size_t before = rss_bytes();
    assert_int_equal(llm_session_new(model, &a[0], &err), 0);
    assert_int_equal(llm_session_eval(a[0], ids, 8, 0, la, &err), 0);
    size_t grew = rss_bytes() - before;
    printf("a 1,024-position session after 8 tokens: resident memory +%.1f MiB\n", grew / 1048576.0);
    assert_true(before > 0 && grew < (20u << 20));
    llm_session_free(&a[0]);
    free(ids);
    free(la);
    free(lb);
    buf_free(&text);
}

static void test_step_bad_input(void **state)
{
    (void)state;
    doc_err err = {0};
    llm_session *a, *b, *tiny;
    float *lg = malloc((size_t)3 * llm_n_vocab(model) * sizeof(float));
    assert_int_equal(llm_session_new(model, &a, &err), 0);
    assert_int_equal(llm_session_new(model, &b, &err), 0);
    llm_session *ss[3] = {a, b, a};
    int32_t ids[3] = {1, 2, 3};
    assert_int_equal(llm_sessions_step(ss, ids, 0, lg, &err), DOC_EINVAL);
    assert_int_equal(llm_sessions_step(ss, ids, 3, lg, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    int32_t bad[2] = {1, -5};
    assert_int_equal(llm_sessions_step(ss, bad, 2, lg, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "vocabulary"));
    assert_int_equal(llm_session_pos(a), 0); /* nothing was appended */
    /* a session of another model */
    llm_model *other;
    assert_int_equal(open_model(&other), 0);
    assert_int_equal(llm_session_new(other, &tiny, &err), 0);
    llm_session *mixed[2] = {a, tiny};
    assert_int_equal(llm_sessions_step(mixed, ids, 2, lg, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "another model"));
    llm_session_free(&tiny);
    llm_model_close(&other);
    assert_int_equal(llm_sessions_step(ss, ids, 2, lg, &err), 0);
    assert_int_equal(llm_session_pos(a), 1);
    assert_int_equal(llm_session_pos(b), 1);
    llm_session_free(&a);
    llm_session_free(&b);
    free(lg);
}

typedef struct {
    int i, max_tokens, cancel_after;
    buf text;
    int chunks, rc;
    llm_gen_stats st;
    char msg[sizeof(doc_err)];
} job;

static int on_text(void *ud, const char *t, size_t n)
{
    job *j = ud;
    if (!n) return 0;
    buf_append(&j->text, t, n);
    j->chunks++;
    return j->cancel_after && j->chunks >= j->cancel_after;
}

static void run_job(llm_model *m, job *j)
{
    llm_sampling s;
    llm_sampling_default(&s);
    s.max_tokens = j->max_tokens;
    buf_init(&j->text, 0);
    j->chunks = 0;
    doc_err err = {0};
    j->rc = llm_generate(m, prompts[j->i], &s, on_text, j, &j->st, &err);
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
}

static llm_model *shared;

static void *thread_main(void *arg)
{
    run_job(shared, arg);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    job ref[NP], par[NP];
    for (int i = 0; i < NP; i++) {
        ref[i] = (job){.i = i, .max_tokens = 16 + 6 * i};
        run_job(model, &ref[i]);
        assert_int_equal(ref[i].rc, 0);
    }
    assert_int_equal(open_model(&shared), 0);
    doc_err err = {0};
    assert_int_equal(llm_model_set_parallel(shared, 4, &err), 0);
    assert_int_equal(llm_model_set_parallel(shared, 4, &err), DOC_ESTATE);
    pthread_t th[NP];
    for (int i = 0; i < NP; i++) {
        par[i] = (job){.i = i, .max_tokens = 16 + 6 * i, .cancel_after = i == 2 ? 5 : 0};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &par[i]), 0);
    }
    for (int i = 0; i < NP; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NP; i++) {
        if (par[i].rc) fail_msg("thread %d: %s", i, par[i].msg);
        const char *r = ref[i].text.data ? ref[i].text.data : "";
        const char *p = par[i].text.data ? par[i].text.data : "";
        if (par[i].cancel_after) {
            assert_int_equal(par[i].st.stop_reason, LLM_STOP_CANCELLED);
            if (strncmp(r, p, strlen(p)))
                fail_msg("thread %d (cancelled): \"%s\" is not a prefix of \"%s\"", i, p, r);
        } else if (strcmp(r, p)) {
            fail_msg("thread %d: batched \"%s\"\nalone \"%s\"", i, p, r);
        } else {
            assert_int_equal(par[i].st.n_gen, ref[i].st.n_gen);
        }
    }
    uint64_t steps, tokens;
    llm_model_batch_stats(shared, &steps, &tokens);
    printf("threads: %llu tokens in %llu steps (mean batch %.2f)\n", (unsigned long long)tokens,
           (unsigned long long)steps, steps ? (double)tokens / steps : 0.0);
    assert_true(steps > 0);
    assert_true(tokens > steps); /* some steps served several sequences */
    for (int i = 0; i < NP; i++) {
        buf_free(&ref[i].text);
        buf_free(&par[i].text);
    }
    llm_model_close(&shared);
}

static void test_parallel_bad_input(void **state)
{
    (void)state;
    doc_err err = {0};
    llm_model *m;
    assert_int_equal(open_model(&m), 0);
    assert_int_equal(llm_model_set_parallel(m, 0, &err), DOC_EINVAL);
    assert_int_equal(llm_model_set_parallel(m, 65, &err), DOC_EINVAL);
    assert_int_equal(llm_model_set_parallel(m, 1, &err), 0); /* one thread: nothing to share */
    llm_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_parity),
        cmocka_unit_test(test_step_rows),
        cmocka_unit_test(test_memory_plan),
        cmocka_unit_test(test_growing_caches),
        cmocka_unit_test(test_step_bad_input),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_parallel_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
