/*
 * test_generate_parity.c - SmolLM2-135M (Q4_1 GGUF) decoding against llama.cpp.
 *
 * The fixture (tests/fixtures/generate/, made by tests/reference/gen_generate.py
 * with llama-cpp-python) holds 22 prompts about Debian documentation (chat-
 * templated and raw, 7 to 577 tokens), the token ids llama.cpp fed for each,
 * its 64 greedy tokens, the top-2 margin and best 8 ids and logits of every
 * step, and for
 * three prompts the logits of every step (top 32 ids and values, the min/max
 * logit, and the whole vocabulary at the first step).
 *
 * The recorded ids are fed as they are (not re-tokenized), so the decoding
 * checks isolate the model; the tokenizer is checked on its own against the
 * same ids.
 *
 * Token rule.  At each step docent's argmax (lowest id on a tie, as numpy
 * does) is compared with llama.cpp's token.  After a mismatch the reference
 * token is fed (teacher forcing), so every step of every prompt is compared in
 * llama.cpp's context; when all tokens match this is exactly free-running
 * greedy decoding.  A mismatch is
 *   - "within noise" when llama.cpp ranks docent's token at most NOISE_MARGIN
 *     (1.0) logits below its own (docent's token must be in its stored top 8)
 *     and docent ranks llama.cpp's token at most NOISE_MARGIN below its own;
 *   - a failure otherwise.
 * Mismatches within noise are printed and counted, and may be at most
 * MAX_MISMATCH_RATE (6%) of the steps.  Those at a near-tie in llama.cpp's own
 * logits (top-2 margin < 1e-2) are counted separately: that stricter rule
 * (identical tokens except at near-ties) is reported, and enforced with
 * DOCENT_PARITY_STRICT=1.
 * Why not identical tokens: the engines' arithmetic differs (llama.cpp rounds
 * activations to 8 bits with f16 scales and keeps an f16 KV cache; docent
 * rounds its own way; summation orders differ), and such rounding noise is
 * independent between two implementations.  gen_generate.py --check-f32
 * measures two other evaluations of the same weights against llama.cpp, on
 * the 3 logit prompts (192 steps):
 *                          max |diff|/range  mean   max |diff|  argmax differs
 *   exact f32                    0.0276      0.0081   0.72         6 (3.1%)
 *   8-bit activations            0.0288      0.0095   0.94         7 (3.6%)
 * Exact arithmetic thus picks another token than llama.cpp at 3% of steps, at
 * llama.cpp margins up to 0.14.
 *
 * Logit rule.  Per step, err = max |docent - llama.cpp| over the stored ids
 * (top 32; all 49152 at the first step) divided by llama.cpp's logit range at
 * that step (max - min, about 40).  Require err <= LOGIT_TOL_MAX (0.045) at
 * every step and a mean <= LOGIT_TOL_MEAN (0.0125) over the steps.  Docent
 * carries its own rounding noise on top of llama.cpp's, so its distance to
 * llama.cpp is expected near sqrt(2) times that of exact f32 (0.039 max,
 * 0.0115 mean); the tolerances sit just above.  What a real bug looks like
 * (measured the same way on prompt 0): a RoPE base of 10000 instead of 100000
 * gives max 0.15, mean 0.052 and 13/64 tokens differing; an RMSNorm epsilon
 * off by 10x (1e-4 or 1e-6) is below the noise and passes (it is harmless).
 *
 * Length.  The three prompts with stored logits always run all 64 steps; the
 * others run the first SHORT_STEPS steps, or all 64 with DOCENT_TEST_LONG=1
 * (make test-long).  DOCENT_TEST_BACKEND picks the backend (default "cpu").
 */
#include "testutil.h"

#include <math.h>

#include "llm/llm.h"

#define FIX_DIR "tests/fixtures/generate"
#define N_GEN 64
#define MAX_PROMPTS 64
#define NEAR_TIE 1e-2f
#define NOISE_MARGIN 1.0f
#define MAX_MISMATCH_RATE 0.06
#define TOP_ALL 8
#define LOGIT_TOL_MAX 0.045
#define LOGIT_TOL_MEAN 0.0125
#define SHORT_STEPS 24

typedef struct ref_prompt {
    const char *text; /* points into fixture.prompts_raw */
    size_t text_len;
    int32_t *ids;
    int n_ids;
    int32_t gen[N_GEN];
    float margin[N_GEN];
    int32_t top_id[N_GEN][TOP_ALL]; /* llama.cpp's best ids per step */
    float top_val[N_GEN][TOP_ALL];
    int logit_rec; /* index into fixture.lrec or -1 */
} ref_prompt;

typedef struct logit_rec {
    int prompt;
    const float *lo, *hi;   /* (n_pos) */
    const int32_t *top_ids; /* (n_pos, topk) */
    const float *top_val;   /* (n_pos, topk) */
    float *full;            /* (n_vocab): every logit at step 0 */
} logit_rec;

typedef struct fixture {
    char *prompts_raw, *ref_raw, *logits_raw;
    ref_prompt p[MAX_PROMPTS];
    int n;
    logit_rec lrec[8];
    int n_lrec, topk, n_vocab;
    llm_model *model;
    llm_session *sess;
    float *logits; /* (n_vocab) */
} fixture;

/* ---- fixture files ----------------------------------------------------- */

static int parse_prompts(fixture *f, size_t len)
{
    char *p = f->prompts_raw, *end = p + len;
    while (p < end) {
        int idx;
        long nb;
        if (sscanf(p, "@@ %d %ld", &idx, &nb) != 2 || idx != f->n || nb < 0 || f->n >= MAX_PROMPTS)
            return -1;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl || nl + 1 + nb >= end || nl[1 + nb] != '\n') return -1;
        f->p[f->n].text = nl + 1;
        f->p[f->n].text_len = (size_t)nb;
        f->p[f->n].logit_rec = -1;
        f->n++;
        p = nl + 2 + nb;
    }
    return f->n > 0 ? 0 : -1;
}

/* parse_reference: the "prompt", "gen" and "margin" lines of reference.txt. */
static int parse_reference(fixture *f)
{
    int seen = 0;
    for (char *line = strtok(f->ref_raw, "\n"); line; line = strtok(NULL, "\n")) {
        char kind[16];
        int idx, cnt, off;
        if (line[0] == '#') continue;
        if (sscanf(line, "%15s %d %d%n", kind, &idx, &cnt, &off) != 3 || idx < 0 || idx >= f->n ||
            cnt <= 0)
            return -1;
        ref_prompt *rp = &f->p[idx];
        char *s = line + off, *e;
        if (strcmp(kind, "top") == 0) {
            long k = strtol(s, &e, 10);
            if (cnt != N_GEN || k != TOP_ALL) return -1;
            s = e;
            for (int i = 0; i < N_GEN * TOP_ALL; i++) {
                long id = strtol(s, &e, 10);
                if (e == s) return -1;
                s = e;
                double v = strtod(s, &e);
                if (e == s) return -1;
                s = e;
                rp->top_id[i / TOP_ALL][i % TOP_ALL] = (int32_t)id;
                rp->top_val[i / TOP_ALL][i % TOP_ALL] = (float)v;
            }
            seen++;
            continue;
        }
        if (strcmp(kind, "prompt") == 0) {
            rp->ids = malloc((size_t)cnt * sizeof *rp->ids);
            if (!rp->ids) return -1;
            rp->n_ids = cnt;
        } else if (cnt != N_GEN) {
            return -1;
        }
        for (int i = 0; i < cnt; i++) {
            double v = strtod(s, &e);
            if (e == s) return -1;
            s = e;
            if (kind[0] == 'p') rp->ids[i] = (int32_t)v;
            else if (kind[0] == 'g') rp->gen[i] = (int32_t)v;
            else if (kind[0] == 'm') rp->margin[i] = (float)v;
            else return -1;
        }
        seen++;
    }
    return seen == 4 * f->n ? 0 : -1;
}

static uint32_t rd_u32(const char *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* parse_logits: logits.bin (see gen_generate.py).  The host is little-endian
 * (x86-64), so the f32/i32 arrays are used in place. */
static int parse_logits(fixture *f, size_t len)
{
    const char *d = f->logits_raw;
    if (len < 20 || memcmp(d, "DLG1", 4) != 0) return -1;
    uint32_t n_rec = rd_u32(d + 4), n_vocab = rd_u32(d + 8), topk = rd_u32(d + 12);
    uint32_t n_pos = rd_u32(d + 16);
    if (n_rec > 8 || n_pos != N_GEN || topk == 0 || topk > 1024 || n_vocab > 1u << 20) return -1;
    size_t rec = 4 + 8 * (size_t)n_pos + 8 * (size_t)n_pos * topk + 2 * (size_t)n_vocab;
    if (len != 20 + n_rec * rec) return -1;
    f->topk = (int)topk;
    f->n_vocab = (int)n_vocab;
    for (uint32_t r = 0; r < n_rec; r++) {
        const char *q = d + 20 + r * rec;
        logit_rec *lr = &f->lrec[r];
        lr->prompt = (int)rd_u32(q);
        if (lr->prompt >= f->n) return -1;
        q += 4;
        lr->lo = (const float *)q;
        q += 4 * n_pos;
        lr->hi = (const float *)q;
        q += 4 * n_pos;
        lr->top_ids = (const int32_t *)q;
        q += 4 * (size_t)n_pos * topk;
        lr->top_val = (const float *)q;
        q += 4 * (size_t)n_pos * topk;
        lr->full = malloc(n_vocab * sizeof *lr->full);
        if (!lr->full) return -1;
        for (uint32_t i = 0; i < n_vocab; i++) {
            const uint8_t *b = (const uint8_t *)q + 2 * i;
            lr->full[i] = f16_to_f32((uint16_t)(b[0] | b[1] << 8));
        }
        f->p[lr->prompt].logit_rec = (int)r;
        f->n_lrec++;
    }
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    doc_err err = {0};
    size_t len;
    char path[512];
    if (!f) return -1;
    *state = f;
    test_model_path(path, sizeof path, TEST_GGUF);

    if (file_read_all(FIX_DIR "/prompts.txt", 1 << 24, &f->prompts_raw, &len, &err) != 0 ||
        parse_prompts(f, len) != 0) {
        print_error("%s/prompts.txt: %s\n", FIX_DIR, err.msg[0] ? err.msg : "malformed");
        return -1;
    }
    if (file_read_all(FIX_DIR "/reference.txt", 1 << 24, &f->ref_raw, &len, &err) != 0 ||
        parse_reference(f) != 0) {
        print_error("%s/reference.txt: %s\n", FIX_DIR, err.msg[0] ? err.msg : "malformed");
        return -1;
    }
    if (file_read_all(FIX_DIR "/logits.bin", 1 << 24, &f->logits_raw, &len, &err) != 0 ||
        parse_logits(f, len) != 0) {
        print_error("%s/logits.bin: %s\n", FIX_DIR, err.msg[0] ? err.msg : "malformed");
        return -1;
    }

    const char *be = getenv("DOCENT_TEST_BACKEND");
    llm_opts o = {.n_threads = 0, .n_ctx = 2048, .backend = be && *be ? be : "cpu"};
    if (llm_model_open(path, &o, &f->model, &err) != 0) {
        print_error("llm_model_open %s: %s\n", path, err.msg);
        return -1;
    }
    if (llm_n_vocab(f->model) != f->n_vocab) {
        print_error("model has %d tokens, fixture %d\n", llm_n_vocab(f->model), f->n_vocab);
        return -1;
    }
    if (llm_session_new(f->model, &f->sess, &err) != 0) {
        print_error("llm_session_new: %s\n", err.msg);
        return -1;
    }
    f->logits = malloc((size_t)f->n_vocab * sizeof *f->logits);
    if (!f->logits) return -1;
    printf("model: %s; %d prompts, logits for %d\n", llm_model_desc(f->model), f->n, f->n_lrec);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f) return 0;
    llm_session_free(&f->sess);
    llm_model_close(&f->model);
    for (int i = 0; i < f->n; i++) free(f->p[i].ids);
    for (int i = 0; i < f->n_lrec; i++) free(f->lrec[i].full);
    free(f->prompts_raw);
    free(f->ref_raw);
    free(f->logits_raw);
    free(f->logits);
    free(f);
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* step_error: max |docent - reference| over the stored ids of step p, over the
 * reference's logit range at p. */
static double step_error(const fixture *f, const logit_rec *lr, int p, const float *logits)
{
    double e = 0;
    for (int k = 0; k < f->topk; k++) {
        int32_t id = lr->top_ids[(size_t)p * f->topk + k];
        double d = fabs((double)logits[id] - lr->top_val[(size_t)p * f->topk + k]);
        if (d > e) e = d;
    }
    if (p == 0)
        for (int i = 0; i < f->n_vocab; i++) {
            double d = fabs((double)logits[i] - lr->full[i]);
            if (d > e) e = d;
        }
    return e / ((double)lr->hi[p] - lr->lo[p]);
}

/* ---- tests ------------------------------------------------------------- */

/* The tokenizer reproduces the ids llama.cpp fed (special tokens parsed, BOS
 * as the GGUF says). */
static void test_tokenize_prompts(void **state)
{
    fixture *f = *state;
    doc_err err = {0};
    int bad = 0;
    for (int i = 0; i < f->n; i++) {
        const ref_prompt *rp = &f->p[i];
        int32_t *ids = NULL;
        int n = 0;
        int rc = llm_tokenize(f->model, rp->text, rp->text_len, 1, 1, &ids, &n, &err);
        if (rc != 0) {
            printf("prompt %d: llm_tokenize: %s\n", i, err.msg);
            bad++;
            continue;
        }
        int j = 0;
        while (j < n && j < rp->n_ids && ids[j] == rp->ids[j]) j++;
        if (j < n || n != rp->n_ids) {
            printf("prompt %d: %d ids, reference %d; first difference at %d: %d vs %d\n", i, n,
                   rp->n_ids, j, j < n ? ids[j] : -1, j < rp->n_ids ? rp->ids[j] : -1);
            bad++;
        }
        free(ids);
    }
    printf("tokenizer: %d/%d prompts match\n", f->n - bad, f->n);
    assert_int_equal(bad, 0);
}

/* Greedy decoding and per-step logits against llama.cpp (rules above). */
static void test_greedy_parity(void **state)
{
    fixture *f = *state;
    doc_err err = {0};
    int hard = 0, noise = 0, near = 0, steps = 0;
    double worst = 0, sum_err = 0;
    int n_err = 0, bad_logit_steps = 0;
    const char *long_env = getenv("DOCENT_TEST_LONG");
    int long_run = long_env && *long_env && strcmp(long_env, "0") != 0;
    const char *strict_env = getenv("DOCENT_PARITY_STRICT");
    int strict = strict_env && *strict_env && strcmp(strict_env, "0") != 0;
    double t0 = time_now();

    for (int i = 0; i < f->n; i++) {
        const ref_prompt *rp = &f->p[i];
        const logit_rec *lr = rp->logit_rec >= 0 ? &f->lrec[rp->logit_rec] : NULL;
        int first_diff = -1;
        int n_steps = lr || long_run ? N_GEN : SHORT_STEPS;
        llm_session_reset(f->sess);
        int rc = llm_session_eval(f->sess, rp->ids, rp->n_ids, 0, f->logits, &err);
        if (rc != 0) print_error("prompt %d: eval of %d ids: %s\n", i, rp->n_ids, err.msg);
        assert_int_equal(rc, DOC_OK);
        for (int s = 0; s < n_steps; s++) {
            int tok = argmax(f->logits, f->n_vocab);
            int want = rp->gen[s];
            steps++;
            if (lr) {
                double e = step_error(f, lr, s, f->logits);
                sum_err += e;
                n_err++;
                if (e > worst) worst = e;
                if (!(e <= LOGIT_TOL_MAX)) {
                    printf("prompt %d step %d: logit error %.4f of the range > %.3f\n", i, s, e,
                           LOGIT_TOL_MAX);
                    bad_logit_steps++;
                }
            }
            if (tok != want) {
                float ref_m = INFINITY, our_m = f->logits[tok] - f->logits[want];
                for (int k = 0; k < TOP_ALL; k++)
                    if (rp->top_id[s][k] == tok) ref_m = rp->top_val[s][0] - rp->top_val[s][k];
                int is_noise = ref_m < NOISE_MARGIN && our_m < NOISE_MARGIN;
                if (rp->margin[s] < NEAR_TIE) near++;
                if (is_noise) noise++;
                else hard++;
                if (first_diff < 0) first_diff = s;
                printf("prompt %d step %d: docent %d, llama.cpp %d (%s): llama.cpp prefers its "
                       "token by %.4f (top-2 margin %.4f), docent prefers its own by %.4f\n",
                       i, s, tok, want, is_noise ? "within noise" : "MISMATCH", ref_m,
                       rp->margin[s], our_m);
            }
            /* teacher forcing: continue in llama.cpp's context */
            rc = llm_session_eval(f->sess, &rp->gen[s], 1, 0, f->logits, &err);
            if (rc != 0) print_error("prompt %d step %d: %s\n", i, s, err.msg);
            assert_int_equal(rc, DOC_OK);
        }
        assert_int_equal(llm_session_pos(f->sess), rp->n_ids + n_steps);
        if (first_diff >= 0) printf("prompt %d: first difference at step %d\n", i, first_diff);
    }
    double mean = n_err ? sum_err / n_err : 0;
    int mismatches = hard + noise;
    printf("greedy (%s): %d/%d steps match (%.1f%%); mismatches: %d within noise (< %.2f "
           "logits both ways), %d beyond; %.1fs\n",
           long_run ? "64 steps each" : "64 steps for the logit prompts, 24 for the others",
           steps - mismatches, steps, 100.0 * (steps - mismatches) / steps, noise,
           (double)NOISE_MARGIN, hard, time_now() - t0);
    printf("strict rule (identical except at llama.cpp near-ties < %.0e): %d of %d mismatches "
           "are near-ties, %d are not%s\n",
           (double)NEAR_TIE, near, mismatches, mismatches - near, strict ? " (enforced)" : "");
    printf("logits: %d steps of %d prompts: max |diff|/range %.5f (tolerance %.3f), mean %.5f "
           "(tolerance %.4f)\n",
           n_err, f->n_lrec, worst, LOGIT_TOL_MAX, mean, LOGIT_TOL_MEAN);
    assert_int_equal(hard, 0);
    assert_true(mismatches <= MAX_MISMATCH_RATE * steps);
    if (strict) assert_int_equal(mismatches - near, 0);
    assert_int_equal(bad_logit_steps, 0);
    assert_true(mean <= LOGIT_TOL_MEAN);
}

/* The prompt's last logits are the same whether the prompt is evaluated in one
 * pass with all=0, in one pass with all=1 (last row), or in two chunks (the
 * second reading the first from the KV cache). */
static void test_session_consistency(void **state)
{
    fixture *f = *state;
    doc_err err = {0};
    const ref_prompt *rp = NULL;
    for (int i = 0; i < f->n; i++)
        if (f->p[i].logit_rec >= 0 && f->p[i].n_ids >= 32) {
            rp = &f->p[i];
            break;
        }
    assert_non_null(rp);
    int n = rp->n_ids, V = f->n_vocab;
    float *all = malloc((size_t)n * V * sizeof *all);
    float *one = malloc((size_t)V * sizeof *one);
    assert_non_null(all);
    assert_non_null(one);

    llm_session_reset(f->sess);
    assert_int_equal(llm_session_eval(f->sess, rp->ids, n, 0, one, &err), DOC_OK);
    llm_session_reset(f->sess);
    assert_int_equal(llm_session_eval(f->sess, rp->ids, n, 1, all, &err), DOC_OK);
    const float *last = all + (size_t)(n - 1) * V;
    llm_session_reset(f->sess);
    int half = n / 2;
    assert_int_equal(llm_session_eval(f->sess, rp->ids, half, 0, f->logits, &err), DOC_OK);
    assert_int_equal(llm_session_pos(f->sess), half);
    assert_int_equal(llm_session_eval(f->sess, rp->ids + half, n - half, 0, f->logits, &err),
                     DOC_OK);

    float lo = one[0], hi = one[0], d_all = 0, d_split = 0;
    for (int i = 0; i < V; i++) {
        lo = fminf(lo, one[i]);
        hi = fmaxf(hi, one[i]);
        d_all = fmaxf(d_all, fabsf(last[i] - one[i]));
        d_split = fmaxf(d_split, fabsf(f->logits[i] - one[i]));
    }
    printf("last logits: all=1 vs all=0 max |diff| %.2e, two chunks vs one %.2e (range %.1f)\n",
           d_all, d_split, hi - lo);
    /* the same tokens through the same kernels: only summation order may differ */
    assert_true(d_all <= 1e-3f * (hi - lo));
    assert_true(d_split <= 1e-3f * (hi - lo));
    free(all);
    free(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_prompts),
        cmocka_unit_test(test_greedy_parity),
        cmocka_unit_test(test_session_consistency),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
