/*
 * f32ref.h - the strict decoder check shared by test_generate_f32.c and
 * test_hf_llama.c: greedy decoding against llama.cpp's F32 reference
 * (tests/fixtures/generate/f32_reference.txt, from
 * tests/reference/gen_generate_f32.py), teacher-forced.  Every greedy token
 * must be identical except at a true tie (llama.cpp's top-2 margin under TIE),
 * and the 4 best reference logits of every step must agree within LOGIT_TOL.
 *
 * Reference file, per prompt:
 *   prompt <i> <n> <ids...>          tokens fed
 *   gen <i> 64 <ids...>              llama.cpp's greedy tokens
 *   margin <i> 64 <m...>             its top1 - top2 logit at each step
 *   top <i> 64 4 <id val>...         its 4 best ids and logits per step
 */
#ifndef DOCENT_TEST_F32REF_H
#define DOCENT_TEST_F32REF_H

#include <math.h>

#include "llm/llm.h"
#include "testutil.h"

#define MAX_PROMPTS 64
#define N_GEN 64
#define TOP 4
#define LOGIT_TOL 2e-3
#define TIE 1e-3

typedef struct {
    int n;
    int32_t *ids;
    int32_t gen[N_GEN];
    float margin[N_GEN];
    int32_t top_id[N_GEN][TOP];
    float top_val[N_GEN][TOP];
} ref_prompt;

static int load_ref(ref_prompt *r, int cap)
{
    char *data;
    size_t len;
    doc_err err = {0};
    assert_int_equal(file_read_all("tests/fixtures/generate/f32_reference.txt", 1 << 24, &data, &len, &err),
                     DOC_OK);
    int np = 0;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *p = line, *end;
        if (!strncmp(p, "prompt ", 7)) {
            assert_true(np < cap);
            ref_prompt *q = &r[np++];
            strtol(p + 7, &end, 10);
            q->n = (int)strtol(end, &end, 10);
            q->ids = malloc((size_t)q->n * sizeof *q->ids);
            for (int i = 0; i < q->n; i++) q->ids[i] = (int32_t)strtol(end, &end, 10);
        } else if (!strncmp(p, "gen ", 4)) {
            strtol(p + 4, &end, 10);
            assert_int_equal(strtol(end, &end, 10), N_GEN);
            for (int i = 0; i < N_GEN; i++) r[np - 1].gen[i] = (int32_t)strtol(end, &end, 10);
        } else if (!strncmp(p, "margin ", 7)) {
            strtol(p + 7, &end, 10);
            strtol(end, &end, 10);
            for (int i = 0; i < N_GEN; i++) r[np - 1].margin[i] = strtof(end, &end);
        } else if (!strncmp(p, "top ", 4)) {
            strtol(p + 4, &end, 10);
            strtol(end, &end, 10);
            assert_int_equal(strtol(end, &end, 10), TOP);
            for (int i = 0; i < N_GEN; i++)
                for (int j = 0; j < TOP; j++) {
                    r[np - 1].top_id[i][j] = (int32_t)strtol(end, &end, 10);
                    r[np - 1].top_val[i][j] = strtof(end, &end);
                }
        }
    }
    free(data);
    return np;
}

static void f32ref_check(llm_model *m, const char *label)
{
    static ref_prompt ref[MAX_PROMPTS];
    int np = load_ref(ref, MAX_PROMPTS);
    assert_true(np >= 20);
    int nv = llm_n_vocab(m);
    float *lg = malloc((size_t)nv * sizeof *lg);
    llm_session *s;
    doc_err err = {0};
    assert_int_equal(llm_session_new(m, &s, &err), DOC_OK);
    int steps = 0, same = 0, ties = 0, bad = 0;
    double max_diff = 0;
    double t0 = time_now();
    for (int p = 0; p < np; p++) {
        ref_prompt *r = &ref[p];
        llm_session_reset(s);
        assert_int_equal(llm_session_eval(s, r->ids, r->n, 0, lg, &err), DOC_OK);
        for (int i = 0; i < N_GEN; i++) {
            int32_t best = 0;
            for (int v = 1; v < nv; v++)
                if (lg[v] > lg[best]) best = v;
            for (int j = 0; j < TOP; j++) {
                double d = fabs((double)lg[r->top_id[i][j]] - r->top_val[i][j]);
                if (d > max_diff || isnan(d)) max_diff = d; /* a NaN sticks and fails */
            }
            steps++;
            if (best == r->gen[i]) {
                same++;
            } else if (r->margin[i] < TIE) {
                ties++;
                printf("prompt %d step %d: tie (llama.cpp margin %.2g): docent %d, llama.cpp %d\n", p, i,
                       r->margin[i], best, r->gen[i]);
            } else {
                bad++;
                printf("prompt %d step %d: docent %d, llama.cpp %d (llama.cpp margin %.4g)\n", p, i, best,
                       r->gen[i], r->margin[i]);
            }
            int32_t next = r->gen[i]; /* teacher forcing */
            assert_int_equal(llm_session_eval(s, &next, 1, 0, lg, &err), DOC_OK);
        }
    }
    printf("%s f32 greedy: %d/%d steps identical, %d ties, %d mismatches; max |logit diff| %.2e "
           "(tolerance %.0e); %.1fs\n",
           label, same, steps, ties, bad, max_diff, LOGIT_TOL, time_now() - t0);
    for (int p = 0; p < np; p++) free(ref[p].ids);
    free(lg);
    llm_session_free(&s);
    assert_int_equal(bad, 0);
    assert_true(max_diff < LOGIT_TOL);
}

#endif
