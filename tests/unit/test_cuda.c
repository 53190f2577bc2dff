/*
 * test_cuda.c - the CUDA backend against the CPU reference.
 *
 * Without a usable device (or in a build without CUDA) it prints one line
 * saying why and exits 77 (skipped).  With one: every op on random inputs
 * (never zeros) of several shapes - n = 1, odd sizes, head dims 32..256, GQA,
 * a 32k context - against the CPU backend at DOCENT_ISA=ref (f32 ops) or a
 * float64 reference written here (matmul, get_rows).  Device outputs are
 * filled with NaN before every op, so an element an op forgets to write fails.
 *
 * Tolerances.  The GPU multiplies f16 (bf16 for bf16 files) weights with
 * activations rounded to the same type, accumulating in f32: each product
 * then carries a relative error of at most 2^-11 + 2^-11 (f16) or 2^-9
 * (activation) + 0 (bf16 weights are exact) and |y - ref| <= err * sum|x w|
 * ("mass"); we allow 2^-9 (f16) and 2^-7 (bf16) times the mass.  Quantized
 * weights are dequantized exactly, then rounded to f16: same bound as f16.
 * Every f32 op must agree with the reference up to float rounding and
 * summation order: elementwise ops 1e-6 of the largest value (add, copy
 * exactly), norms 3e-5 (sums of up to 4k squares in another order), rope 1e-4
 * at positions < 4096 and 4e-3 near 32k (an ulp of the angle is 2e-3 rad
 * there), attention 2e-5 absolute (outputs are averages of values in [-1, 1];
 * 32k-key sums in another order differ by ~5e-6).
 *
 * DOCENT_TEST_CUDA_SELFTEST=1 runs all this with the CPU backend (best ISA)
 * standing in for the device, quantized matmuls left out: a check of this
 * test's own logic and tolerances on a machine without a GPU.
 *
 * DOCENT_TEST_CUDA_QUICK=1 leaves out the longest cases (contexts of 8k and
 * 32k keys, the 151936-entry vocabulary, half the sampling draws, the
 * generator with weights kept as blocks, whose kernels test_matmul and
 * test_get_rows check op by op): make test
 * runs this test so on the CPU emulator of the device (tests/cuda_emu/,
 * tests/cuda_emu.test.sh), where a 1024-thread block costs what a GPU does in
 * a million; make cuda-emu-check runs it whole.
 *
 * Model parity (skipped when the models are absent): the default embedder on
 * cuda vs cpu (cosine >= 0.999 per text) and the default generator's greedy
 * tokens for 32 steps (identical) with last-token logits close (cosine >=
 * 0.999, max difference <= 2% of the logit range); the CPU side runs with
 * weights_f32 so neither side quantizes activations to 8 bits.
 */
#include "testutil.h"

#include <math.h>

#include "llm/backend.h"
#include "llm/internal.h"
#include "llm/llm.h"
#include "llm/model.h"

static llm_backend *gpu, *cpu;
static const char *gpu_name = "cuda"; /* "cpu" in the self-test (see main) */
static int selftest;
static int quick; /* DOCENT_TEST_CUDA_QUICK=1 */

static float *randv(uint64_t *s, size_t n, float amp)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        float r = test_randf(s);
        v[i] = amp * (r == 0.0f ? 0.5f : r);
    }
    return v;
}

/* n floats of backend memory holding host (or NaN when host is NULL) */
static float *put(llm_backend *be, const float *host, size_t n)
{
    float *d = be->i->alloc(be, n ? n : 1);
    assert_non_null(d);
    float *tmp = NULL;
    if (!host) {
        tmp = malloc((n ? n : 1) * sizeof *tmp);
        assert_non_null(tmp);
        for (size_t i = 0; i < n; i++) tmp[i] = NAN;
        host = tmp;
    }
    assert_int_equal(be->i->upload(be, d, host, n), DOC_OK);
    free(tmp);
    return d;
}

static float *get(llm_backend *be, const float *d, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    doc_err err = {0};
    assert_non_null(h);
    assert_int_equal(be->i->download(be, h, d, n), DOC_OK);
    if (be->i->sync(be, &err)) fail_msg("%s backend: %s", be->i->name, err.msg);
    return h;
}

/* max |a - b| <= tol_rel * scale over n, failing on NaN in a; scale is
 * max |b| when given as 0 */
static void close_to(const char *what, const float *a, const float *b, size_t n, double tol_rel,
                     double scale)
{
    double worst = 0.0, mx = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(b[i]));
    if (scale == 0.0) scale = mx > 0.0 ? mx : 1.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && !isnan(b[i])) fail_msg("%s: element %zu is NaN (ref %g)", what, i, b[i]);
        double e = fabs((double)a[i] - b[i]);
        if (e > worst) worst = e, at = i;
    }
    if (worst > tol_rel * scale)
        fail_msg("%s: max error %g at %zu (gpu %g, ref %g) > %g x scale %g", what, worst, at, a[at],
                 b[at], tol_rel, scale);
}

/* ---- matmul ------------------------------------------------------------- */

static void check_matmul_on(llm_backend *gpu, uint64_t *seed, int type, int n, int64_t k, int64_t m,
                            int bias)
{
    size_t rb = llm_row_bytes(type, k);
    float *wf = randv(seed, (size_t)m * k, 1.0f), *wd = malloc((size_t)m * k * sizeof(float));
    void *wq = malloc(rb * (size_t)m);
    assert_true(wd && wq);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < k; j++) wf[r * k + j] *= 0.1f + (float)(r % 7);
        llm_quantize_ref(type, wf + r * k, (char *)wq + r * rb, k);
        llm_dequantize_ref(type, (char *)wq + r * rb, wd + r * k, k);
    }
    float *x = randv(seed, (size_t)n * k, 2.0f), *b = bias ? randv(seed, (size_t)m, 1.0f) : NULL;
    llm_weight w = {.type = type, .rows = m, .cols = k, .data = wq, .name = "w"};
    doc_err err = {0};
    if (gpu->i->weight_prepare(gpu, &w, &err)) fail_msg("weight_prepare: %s", err.msg);
    float *dx = put(gpu, x, (size_t)n * k), *dy = put(gpu, NULL, (size_t)n * m);
    float *db = b ? put(gpu, b, (size_t)m) : NULL;
    gpu->i->matmul(gpu, dy, dx, &w, db, n);
    float *y = get(gpu, dy, (size_t)n * m);
    double rel = type == LLM_T_BF16 ? 0x1p-7 : 0x1p-9;
    for (int t = 0; t < n; t++)
        for (int64_t r = 0; r < m; r++) {
            double ref = b ? b[r] : 0.0, mass = 0.0;
            for (int64_t j = 0; j < k; j++) {
                double p = (double)x[t * k + j] * wd[r * k + j];
                ref += p;
                mass += fabs(p);
            }
            double got = y[t * m + r], tol = rel * mass + 1e-5;
            if (!(fabs(got - ref) <= tol))
                fail_msg("matmul %s n %d k %lld m %lld: y[%d][%lld] = %g, ref %g, tol %g",
                         llm_type(type)->name, n, (long long)k, (long long)m, t, (long long)r, got,
                         ref, tol);
        }
    gpu->i->weight_release(gpu, &w);
    gpu->i->release(gpu, dx);
    gpu->i->release(gpu, dy);
    gpu->i->release(gpu, db);
    free(wf), free(wd), free(wq), free(x), free(b), free(y);
}

static void check_matmul(uint64_t *seed, int type, int n, int64_t k, int64_t m, int bias)
{
    check_matmul_on(gpu, seed, type, n, k, m, bias);
}

/* a second CUDA backend with DOCENT_CUDA_QUANT=keep (Q4_0/Q4_1/Q8_0 weights
 * stay quantized on the device), or NULL in the self-test */
static llm_backend *keep_backend(void)
{
    if (selftest) return NULL;
    llm_backend *be = NULL;
    doc_err err = {0};
    setenv("DOCENT_CUDA_QUANT", "keep", 1); /* read when a backend is made */
    int rc = llm_cuda_backend_new(0, &be, &err);
    unsetenv("DOCENT_CUDA_QUANT");
    if (rc) fail_msg("cuda backend with DOCENT_CUDA_QUANT=keep: %s", err.msg);
    return be;
}

static void test_matmul(void **state)
{
    (void)state;
    uint64_t seed = 0x6d61746d756cULL;
    const int types[] = {LLM_T_F32, LLM_T_F16, LLM_T_BF16, LLM_T_Q8_0, LLM_T_Q4_0,
                         LLM_T_Q4_1, LLM_T_Q4_K, LLM_T_Q5_K, LLM_T_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (selftest && llm_type(types[i])->block > 1) continue;
        int qk = llm_type(types[i])->block;
        int64_t k1 = qk > 32 ? 256 : 96, k2 = qk > 32 ? 512 : 544;
        check_matmul(&seed, types[i], 1, k1, 67, 1);   /* decode: a GEMV */
        check_matmul(&seed, types[i], 7, k2, 33, 0);   /* odd sizes */
        check_matmul(&seed, types[i], 130, k1, 129, 1); /* prefill-sized */
    }
    check_matmul(&seed, LLM_T_F32, 3, 7, 5, 1); /* k not a multiple of 8 */
    /* weights kept quantized: the GEMV up to 8 rows (1, 7, 8), the f16 expansion
     * and GEMM beyond (9, 130), against the same reference and tolerance */
    llm_backend *kb = keep_backend();
    if (!kb) return;
    const int kept[] = {LLM_T_Q4_0, LLM_T_Q4_1, LLM_T_Q8_0};
    for (size_t i = 0; i < 3; i++) {
        check_matmul_on(kb, &seed, kept[i], 1, 96, 67, 1);
        check_matmul_on(kb, &seed, kept[i], 7, 544, 33, 0);
        check_matmul_on(kb, &seed, kept[i], 8, 2048, 300, 1);
        check_matmul_on(kb, &seed, kept[i], 9, 96, 129, 0);
        check_matmul_on(kb, &seed, kept[i], 130, 544, 129, 1);
    }
    llm_backend_free(&kb);
}

/* ---- get_rows ----------------------------------------------------------- */

static void test_get_rows(void **state)
{
    (void)state;
    uint64_t seed = 0x726f7773ULL;
    const int types[] = {LLM_T_F32, LLM_T_F16, LLM_T_BF16, LLM_T_Q8_0, LLM_T_Q4_1, LLM_T_Q6_K, LLM_T_Q4_0};
    llm_backend *main_gpu = gpu, *kb = keep_backend();
    for (int pass = 0; pass < (kb ? 2 : 1); pass++)
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        llm_backend *gpu = pass ? kb : main_gpu; /* pass 1: quantized tables kept as they are */
        int type = types[ti];
        int64_t rows = 1000, cols = 256;
        size_t rb = llm_row_bytes(type, cols);
        float *f = randv(&seed, (size_t)rows * cols, 3.0f), *ref = malloc(9 * (size_t)cols * sizeof(float));
        void *q = malloc(rb * rows);
        assert_true(ref && q);
        for (int64_t r = 0; r < rows; r++) llm_quantize_ref(type, f + r * cols, (char *)q + r * rb, cols);
        llm_weight w = {.type = type, .rows = rows, .cols = cols, .data = q, .name = "emb", .rows_only = 1};
        doc_err err = {0};
        if (gpu->i->weight_prepare(gpu, &w, &err)) fail_msg("%s", err.msg);
        int32_t ids[9] = {0, 999, 5, 5, 123, 998, 1, 500, 7};
        float *d = put(gpu, NULL, 9 * (size_t)cols);
        gpu->i->get_rows(gpu, d, &w, ids, 9);
        for (int i = 0; i < 9; i++) ids[i] = -1; /* the op must have copied them */
        float *got = get(gpu, d, 9 * (size_t)cols);
        int32_t orig[9] = {0, 999, 5, 5, 123, 998, 1, 500, 7};
        for (int i = 0; i < 9; i++) llm_dequantize_ref(type, (char *)q + orig[i] * rb, ref + i * cols, cols);
        /* the table is held as f16 (bf16 for bf16): rounding of 2^-11 relative */
        for (int64_t i = 0; i < 9 * cols; i++)
            if (!(fabs(got[i] - ref[i]) <= fabs(ref[i]) * 0x1p-10 + 1e-7))
                fail_msg("get_rows %s: element %lld = %g, ref %g", llm_type(type)->name,
                         (long long)i, got[i], ref[i]);
        gpu->i->weight_release(gpu, &w);
        gpu->i->release(gpu, d);
        free(f), free(ref), free(q), free(got);
    }
    if (kb) llm_backend_free(&kb);
}

/* ---- f32 ops against the CPU backend ------------------------------------ */

/* run op on both backends: inputs uploaded, output poisoned, compared */
typedef struct {
    float *g, *c; /* device / cpu pointers of one buffer */
    size_t n;
} pair;

static pair pair_of(const float *host, size_t n)
{
    pair p = {put(gpu, host, n), put(cpu, host, n), n};
    return p;
}

static void pair_free(pair *p)
{
    gpu->i->release(gpu, p->g);
    cpu->i->release(cpu, p->c);
}

static void pair_check_scaled(const char *what, pair *p, double tol, double scale)
{
    float *a = get(gpu, p->g, p->n), *b = get(cpu, p->c, p->n);
    close_to(what, a, b, p->n, tol, scale);
    free(a), free(b);
}

static void pair_check(const char *what, pair *p, double tol) { pair_check_scaled(what, p, tol, 0.0); }

/* a second CUDA backend with DOCENT_CUDA_ATTN=mma (prefill and encoder
 * attention on tensor cores, inputs rounded to f16), or NULL in the self-test */
static llm_backend *mma_backend(void)
{
    if (selftest) return NULL;
    llm_backend *be = NULL;
    doc_err err = {0};
    setenv("DOCENT_CUDA_ATTN", "mma", 1);
    int rc = llm_cuda_backend_new(0, &be, &err);
    unsetenv("DOCENT_CUDA_ATTN");
    if (rc) fail_msg("cuda backend with DOCENT_CUDA_ATTN=mma: %s", err.msg);
    return be;
}

/* the same attention on the mma backend against the CPU's output (in p.c):
 * f16 inputs allow 3e-3 of the output scale (1: averages of |v| <= 1) */
static void mma_check(llm_backend *mb, const char *what, pair *po, const float *q, size_t qs,
                      const float *k, const float *v, size_t ks, size_t ldc, int causal, int n,
                      int pos0, int h, int g, int hd, float scale, int b, int t, const int *lens)
{
    float *dq = put(mb, q, qs), *dk = put(mb, k, ks), *dv = put(mb, v, ks), *dout = put(mb, NULL, qs);
    if (causal) mb->i->attn_causal(mb, dout, dq, dk, dv, ldc, NULL, NULL, n, pos0, h, g, hd, scale);
    else mb->i->attn_bidir(mb, dout, dq, dk, dv, b, t, h, hd, lens, scale);
    float *a = get(mb, dout, qs), *ref = get(cpu, po->c, qs);
    char w2[128];
    snprintf(w2, sizeof w2, "%s (mma)", what);
    close_to(w2, a, ref, qs, 3e-3, 1.0);
    free(a), free(ref);
    mb->i->release(mb, dq), mb->i->release(mb, dk), mb->i->release(mb, dv), mb->i->release(mb, dout);
}

static void test_norms(void **state)
{
    (void)state;
    uint64_t seed = 0x6e6f726dULL;
    const int shapes[][2] = {{1, 576}, {5, 384}, {33, 2048}, {3, 4097}, {2, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s][0], d = shapes[s][1];
        float *x = randv(&seed, (size_t)n * d, 4.0f), *w = randv(&seed, (size_t)d, 1.0f),
              *b = randv(&seed, (size_t)d, 1.0f);
        pair px = pair_of(x, (size_t)n * d), pw = pair_of(w, d), pb = pair_of(b, d),
             po = pair_of(NULL, (size_t)n * d);
        gpu->i->rmsnorm(gpu, po.g, px.g, pw.g, n, d, 1e-5f);
        cpu->i->rmsnorm(cpu, po.c, px.c, pw.c, n, d, 1e-5f);
        pair_check("rmsnorm", &po, 3e-5);
        gpu->i->layernorm(gpu, po.g, px.g, pw.g, pb.g, n, d, 1e-12f);
        cpu->i->layernorm(cpu, po.c, px.c, pw.c, pb.c, n, d, 1e-12f);
        pair_check("layernorm", &po, 3e-5);
        gpu->i->rmsnorm(gpu, px.g, px.g, pw.g, n, d, 1e-6f); /* in place */
        cpu->i->rmsnorm(cpu, px.c, px.c, pw.c, n, d, 1e-6f);
        pair_check("rmsnorm in place", &px, 3e-5);
        pair_free(&px), pair_free(&pw), pair_free(&pb), pair_free(&po);
        free(x), free(w), free(b);
    }
}

static void test_rope(void **state)
{
    (void)state;
    uint64_t seed = 0x726f7065ULL;
    const int cases[][4] = {{1, 9, 64, 4095}, {7, 3, 128, 4095}, {64, 4, 64, 4095},
                            {5, 2, 256, 4095}, {3, 8, 64, 32767}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int neox = 0; neox <= 1; neox++) {
            int n = cases[ci][0], h = cases[ci][1], hd = cases[ci][2], maxp = cases[ci][3];
            size_t sz = (size_t)n * h * hd;
            float *x = randv(&seed, sz, 1.0f);
            int32_t pos[64];
            for (int i = 0; i < n; i++) pos[i] = (int32_t)(test_rand(&seed) % (uint64_t)(maxp + 1));
            pair p = pair_of(x, sz);
            gpu->i->rope(gpu, p.g, n, h, hd, pos, 10000.0f, neox);
            cpu->i->rope(cpu, p.c, n, h, hd, pos, 10000.0f, neox);
            pair_check(neox ? "rope neox" : "rope", &p, maxp > 4096 ? 4e-3 : 1e-4);
            pair_free(&p);
            free(x);
        }
}

static void test_attn_causal(void **state)
{
    (void)state;
    llm_backend *mb = mma_backend(); /* takes the calls of 9 rows and more, head dims 16k <= 128 */
    uint64_t seed = 0x63617573ULL;
    /* n, pos0, h, g, hd */
    const int cases[][5] = {
        {1, 0, 9, 3, 64},     {1, 511, 9, 3, 64},  {17, 100, 9, 3, 64}, {64, 0, 32, 8, 128},
        {3, 40, 4, 4, 256},   {5, 7, 6, 2, 32},    {1, 32767, 4, 1, 64}, {4, 8000, 8, 2, 128},
        {256, 256, 12, 4, 64},
        /* decode with the keys split in spans of 256 (cuda.cu): partial last span, 8 rows */
        {1, 700, 9, 3, 64},   {8, 600, 8, 8, 128},
        /* prefill, tiled (9 rows and more): partial tiles, head dims 32/80/96/128 */
        {65, 64, 3, 3, 80},   {130, 7, 2, 1, 32},  {9, 300, 2, 2, 96},  {200, 1000, 4, 2, 128},
    };
    /* every case on a layer-major cache (positions g*hd apart), then on a
     * position-major one (other layers' rows in between, as growing caches
     * are laid out) with the chunk's keys and values passed in to be stored */
    for (size_t ci = 0; ci < 2 * sizeof cases / sizeof cases[0]; ci++) {
        int cj = (int)(ci / 2), strided = (int)(ci % 2);
        int n = cases[cj][0], pos0 = cases[cj][1], h = cases[cj][2], g = cases[cj][3], hd = cases[cj][4];
        if (quick && pos0 >= 8000) continue;
        int c = pos0 + n;
        size_t kvd = (size_t)g * hd, ldc = strided ? 3 * kvd + 16 : kvd;
        size_t qs = (size_t)n * h * hd, ks = (size_t)c * ldc, ns = (size_t)n * kvd;
        float *q = randv(&seed, qs, 1.0f), *k = randv(&seed, ks, 1.0f), *v = randv(&seed, ks, 1.0f);
        float *kn = malloc(ns * sizeof(float)), *vn = malloc(ns * sizeof(float));
        assert_true(kn && vn);
        for (int i = 0; i < n; i++) {
            memcpy(kn + i * kvd, k + (size_t)(pos0 + i) * ldc, kvd * sizeof(float));
            memcpy(vn + i * kvd, v + (size_t)(pos0 + i) * ldc, kvd * sizeof(float));
        }
        pair pq = pair_of(q, qs), pk = pair_of(k, ks), pv = pair_of(v, ks), po = pair_of(NULL, qs);
        pair pkn = pair_of(kn, ns), pvn = pair_of(vn, ns);
        float scale = 1.0f / sqrtf((float)hd) * 3.0f; /* peaky scores: exercises the max */
        cpu->i->attn_causal(cpu, po.c, pq.c, pk.c, pv.c, ldc, NULL, NULL, n, pos0, h, g, hd, scale);
        if (strided) { /* the chunk's rows poisoned on the device: they must come from kn, vn */
            float *nanv = malloc(kvd * sizeof(float));
            assert_true(nanv);
            for (size_t e = 0; e < kvd; e++) nanv[e] = NAN;
            for (int i = 0; i < n; i++) {
                assert_int_equal(gpu->i->upload(gpu, pk.g + (size_t)(pos0 + i) * ldc, nanv, kvd), 0);
                assert_int_equal(gpu->i->upload(gpu, pv.g + (size_t)(pos0 + i) * ldc, nanv, kvd), 0);
            }
            free(nanv);
            gpu->i->attn_causal(gpu, po.g, pq.g, pk.g, pv.g, ldc, pkn.g, pvn.g, n, pos0, h, g, hd, scale);
        } else {
            gpu->i->attn_causal(gpu, po.g, pq.g, pk.g, pv.g, ldc, NULL, NULL, n, pos0, h, g, hd, scale);
        }
        char what[112];
        snprintf(what, sizeof what, "attn_causal n %d pos0 %d h %d g %d hd %d ldc %zu%s", n, pos0, h, g,
                 hd, ldc, strided ? " (stored)" : "");
        pair_check_scaled(what, &po, 2e-5, 1.0); /* outputs are averages of |v| <= 1 */
        if (strided) { /* the stored rows are copies: exact */
            pair_check_scaled(what, &pk, 0.0, 1.0);
            pair_check_scaled(what, &pv, 0.0, 1.0);
        }
        if (mb) mma_check(mb, what, &po, q, qs, k, v, ks, ldc, 1, n, pos0, h, g, hd, scale, 0, 0, NULL);
        pair_free(&pq), pair_free(&pk), pair_free(&pv), pair_free(&po), pair_free(&pkn), pair_free(&pvn);
        free(q), free(k), free(v), free(kn), free(vn);
    }
    if (mb) llm_backend_free(&mb);
}

/* attn_decode: each row over its own cache (its own length), its new key
 * and value stored first; the output and the caches against the CPU */
static void test_attn_decode(void **state)
{
    (void)state;
    uint64_t seed = 0x64656364ULL;
    enum { MAXN = 64 };
    /* n, h, g, hd, then the rows' positions (row i beyond the list: 37 * i % 900) */
    static const int cases[][8] = {
        {1, 9, 3, 64, 0},           {1, 9, 3, 64, 5000},        {3, 8, 2, 128, 1, 700, 300},
        {5, 6, 2, 32, 0, 1, 2, 3},  {2, 4, 4, 256, 260, 33},    {8, 32, 8, 64, 63, 64, 65, 1000},
        {64, 9, 3, 64, 2047},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int n = cases[ci][0], h = cases[ci][1], g = cases[ci][2], hd = cases[ci][3];
        size_t kvd = (size_t)g * hd, qs = (size_t)n * h * hd;
        size_t ldc = ci % 2 ? 2 * kvd + 8 : kvd; /* every other case position-major */
        int32_t pos[MAXN];
        pair kc[MAXN], vc[MAXN];
        float *kg[MAXN], *vg[MAXN], *kcpu[MAXN], *vcpu[MAXN];
        for (int i = 0; i < n; i++) {
            pos[i] = i + 4 < 8 && (i == 0 || cases[ci][4 + i]) ? cases[ci][4 + i] : 37 * i % 900;
            size_t cs = (size_t)(pos[i] + 3) * ldc;
            float *k = randv(&seed, cs, 1.0f), *v = randv(&seed, cs, 1.0f);
            kc[i] = pair_of(k, cs), vc[i] = pair_of(v, cs);
            kg[i] = kc[i].g, vg[i] = vc[i].g, kcpu[i] = kc[i].c, vcpu[i] = vc[i].c;
            free(k), free(v);
        }
        float *q = randv(&seed, qs, 1.0f), *kn = randv(&seed, (size_t)n * kvd, 1.0f),
              *vn = randv(&seed, (size_t)n * kvd, 1.0f);
        pair pq = pair_of(q, qs), pkn = pair_of(kn, (size_t)n * kvd), pvn = pair_of(vn, (size_t)n * kvd),
             po = pair_of(NULL, qs);
        float scale = 1.0f / sqrtf((float)hd) * 3.0f;
        gpu->i->attn_decode(gpu, po.g, pq.g, kg, vg, ldc, pos, pkn.g, pvn.g, n, h, g, hd, scale);
        cpu->i->attn_decode(cpu, po.c, pq.c, kcpu, vcpu, ldc, pos, pkn.c, pvn.c, n, h, g, hd, scale);
        char what[96];
        snprintf(what, sizeof what, "attn_decode n %d h %d g %d hd %d pos[0] %d ldc %zu", n, h, g, hd,
                 pos[0], ldc);
        pair_check_scaled(what, &po, 2e-5, 1.0);
        for (int i = 0; i < n; i++) { /* the stored rows are copies: exact */
            snprintf(what, sizeof what, "attn_decode n %d: cache of row %d", n, i);
            pair_check_scaled(what, &kc[i], 0.0, 1.0);
            pair_check_scaled(what, &vc[i], 0.0, 1.0);
            pair_free(&kc[i]), pair_free(&vc[i]);
        }
        pair_free(&pq), pair_free(&pkn), pair_free(&pvn), pair_free(&po);
        free(q), free(kn), free(vn);
    }
}

/* growing caches (kv_reserve / kv_grow): a reservation of several device
 * blocks grown in three steps, filled across block boundaries, read by
 * attn_causal (a 17-row chunk stored at the end) and attn_decode against the
 * CPU on the same numbers; a grow past the reservation is an error naming
 * it; released and reserved again (blocks from the pool) it works the same */
static void test_kv_grow(void **state)
{
    (void)state;
    if (!gpu->i->kv_reserve) {
        printf("kv_grow: the %s backend allocates caches whole (no driver virtual memory, or "
               "DOCENT_CUDA_KV_GROW=0), skipped\n", gpu_name);
        return;
    }
    uint64_t seed = 0x6b76677277ULL;
    enum { P = 3000, N = 17, H = 8, G = 2, HD = 128 };
    const size_t kvd = (size_t)G * HD, ldc = 2 * kvd + 8, cs = (size_t)P * ldc; /* 6.2 MB */
    doc_err err = {0};
    for (int round = 0; round < 2; round++) {
        float *kr = gpu->i->kv_reserve(gpu, cs), *vr = gpu->i->kv_reserve(gpu, cs);
        assert_true(kr && vr);
        const int steps[] = {100, 1500, P};
        size_t ready = 0, prev = 0;
        for (int i = 0; i < 3; i++) {
            size_t want = (size_t)steps[i] * ldc;
            if (gpu->i->kv_grow(gpu, kr, want, &ready, &err) || ready < want || ready < prev)
                fail_msg("kv_grow to %zu floats: rc, ready %zu: %s", want, ready, err.msg);
            if (gpu->i->kv_grow(gpu, vr, want, &ready, &err)) fail_msg("kv_grow: %s", err.msg);
            prev = ready;
        }
        assert_true(ready <= cs + (4u << 20)); /* within the reservation's last block */
        assert_int_equal(gpu->i->kv_grow(gpu, kr, cs + (64u << 20), &ready, &err), DOC_EINVAL);
        assert_non_null(strstr(err.msg, "past the reservation"));
        float *k = randv(&seed, cs, 1.0f), *v = randv(&seed, cs, 1.0f);
        assert_int_equal(gpu->i->upload(gpu, kr, k, cs), DOC_OK);
        assert_int_equal(gpu->i->upload(gpu, vr, v, cs), DOC_OK);
        float *kc = put(cpu, k, cs), *vc = put(cpu, v, cs);
        /* the chunk: its rows poisoned in the caches, passed as kn, vn */
        size_t ns = (size_t)N * kvd, qs = (size_t)N * H * HD;
        float *kn = malloc(ns * sizeof(float)), *vn = malloc(ns * sizeof(float)), *nanv = malloc(kvd * sizeof(float));
        assert_true(kn && vn && nanv);
        for (size_t e = 0; e < kvd; e++) nanv[e] = NAN;
        for (int i = 0; i < N; i++) {
            memcpy(kn + i * kvd, k + (size_t)(P - N + i) * ldc, kvd * sizeof(float));
            memcpy(vn + i * kvd, v + (size_t)(P - N + i) * ldc, kvd * sizeof(float));
            assert_int_equal(gpu->i->upload(gpu, kr + (size_t)(P - N + i) * ldc, nanv, kvd), DOC_OK);
            assert_int_equal(gpu->i->upload(gpu, vr + (size_t)(P - N + i) * ldc, nanv, kvd), DOC_OK);
        }
        float *q = randv(&seed, qs, 1.0f);
        pair pq = pair_of(q, qs), po = pair_of(NULL, qs), pkn = pair_of(kn, ns), pvn = pair_of(vn, ns);
        float scale = 3.0f / sqrtf((float)HD);
        gpu->i->attn_causal(gpu, po.g, pq.g, kr, vr, ldc, pkn.g, pvn.g, N, P - N, H, G, HD, scale);
        cpu->i->attn_causal(cpu, po.c, pq.c, kc, vc, ldc, NULL, NULL, N, P - N, H, G, HD, scale);
        pair_check_scaled("attn_causal over a grown cache", &po, 2e-5, 1.0);
        float *back = get(gpu, kr, cs);
        assert_memory_equal(back, k, cs * sizeof(float)); /* every block, the stored rows too */
        free(back);
        /* decode rows over the same cache at positions in different blocks */
        int32_t pos[4] = {90, 1100, 2047, P - 1};
        float *kg[4] = {kr, kr, kr, kr}, *vg[4] = {vr, vr, vr, vr};
        float *kcp[4] = {kc, kc, kc, kc}, *vcp[4] = {vc, vc, vc, vc};
        pair pd = pair_of(NULL, (size_t)4 * H * HD), pq4 = pair_of(q, (size_t)4 * H * HD);
        gpu->i->attn_decode(gpu, pd.g, pq4.g, kg, vg, ldc, pos, NULL, NULL, 4, H, G, HD, scale);
        cpu->i->attn_decode(cpu, pd.c, pq4.c, kcp, vcp, ldc, pos, NULL, NULL, 4, H, G, HD, scale);
        pair_check_scaled("attn_decode over a grown cache", &pd, 2e-5, 1.0);
        if (gpu->i->describe) {
            char line[512];
            gpu->i->describe(gpu, line, sizeof line);
            printf("kv_grow round %d: %s\n", round, line);
        }
        pair_free(&pq), pair_free(&po), pair_free(&pkn), pair_free(&pvn), pair_free(&pd), pair_free(&pq4);
        gpu->i->release(gpu, kr), gpu->i->release(gpu, vr);
        cpu->i->release(cpu, kc), cpu->i->release(cpu, vc);
        if (gpu->i->sync(gpu, &err)) fail_msg("%s", err.msg);
        free(k), free(v), free(kn), free(vn), free(nanv), free(q);
    }
}

/* pick, greedy rows: penalties over recent ids (repeats, ids out of range),
 * planted ties (the lower id wins), a vocabulary smaller than a block; exact
 * ids */
static void test_pick(void **state)
{
    (void)state;
    uint64_t seed = 0x7069636bULL;
    const int vocabs[] = {49152, 100, 257};
    for (int vi = 0; vi < 3; vi++) {
        enum { N = 6, RMAX = 8 };
        int nv = vocabs[vi];
        float *x = randv(&seed, (size_t)N * nv, 8.0f), pen[N] = {1.0f, 1.3f, 0.7f, 1.1f, 1.0f, 2.0f};
        int32_t recent[N * RMAX], nrec[N], ids[N], want[N];
        llm_pick pk[N];
        for (int r = 0; r < N; r++) {
            float *xr = x + (size_t)r * nv;
            int top = (int)(test_rand(&seed) % (uint64_t)nv);
            pk[r] = (llm_pick){.penalty = pen[r], .top_k = r == 5 ? 1 : 0, .temperature = r == 5 ? 1.0f : 0.0f};
            nrec[r] = r % 3 == 0 ? 0 : RMAX;
            for (int j = 0; j < RMAX; j++) recent[r * RMAX + j] = (int32_t)(test_rand(&seed) % (uint64_t)nv);
            if (nrec[r]) {
                recent[r * RMAX + 0] = top;                /* the top is penalised ... */
                recent[r * RMAX + 3] = top;                /* ... once */
                recent[r * RMAX + 5] = nv + 3;             /* out of range: ignored */
            }
            xr[top] = 9.0f;
            if (r == 4) xr[nv - 1] = xr[nv / 2] = 9.5f; /* a tie: the lower id */
            /* the reference, on a copy */
            float *c = malloc((size_t)nv * sizeof *c);
            memcpy(c, xr, (size_t)nv * sizeof *c);
            if (pen[r] != 1.0f && pen[r] > 0)
                for (int j = 0; j < nrec[r]; j++) {
                    int32_t id = recent[r * RMAX + j];
                    int dup = id < 0 || id >= nv;
                    for (int k = 0; k < j; k++) dup |= recent[r * RMAX + k] == id;
                    if (!dup) c[id] = c[id] > 0 ? c[id] / pen[r] : c[id] * pen[r];
                }
            want[r] = 0;
            for (int i = 1; i < nv; i++)
                if (c[i] > c[want[r]]) want[r] = i;
            free(c);
        }
        float *d = put(gpu, x, (size_t)N * nv);
        doc_err err = {0};
        if (gpu->i->pick(gpu, ids, d, N, nv, recent, nrec, RMAX, pk, &err)) fail_msg("pick: %s", err.msg);
        for (int r = 0; r < N; r++)
            if (ids[r] != want[r])
                fail_msg("pick (greedy) vocab %d row %d: %d, reference %d", nv, r, ids[r], want[r]);
        gpu->i->release(gpu, d);
        free(x);
    }
}

/* pick, sampled rows: top-k (with a tie at its boundary), top-p, min-p,
 * temperature, all of them together, the whole vocabulary, and greedy rows
 * in the same call, over vocabularies of 100 to 151,936, each with several
 * draws u, against sample.c's pick_row on the same logits and u.  A token
 * that differs is excused only when pick_row itself picks it after moving u,
 * top_p or min_p by 2e-6 (float rounding at a boundary: the device sums in
 * another order); excused picks are counted and may not pass 2%.  (In the
 * self-test the stand-in's pick is pick_row itself: only this test's own
 * logic runs.) */
static void test_sample(void **state)
{
    (void)state;
    uint64_t seed = 0x73616d70ULL;
    enum { N = 8, RMAX = 4, DRAWS = 6 };
    const llm_pick base[N] = {
        {.penalty = 1.0f, .temperature = 0.7f, .top_k = 40},
        {.penalty = 1.0f, .temperature = 1.0f, .top_p = 0.9f},
        {.penalty = 1.0f, .temperature = 1.3f, .min_p = 0.05f},
        {.penalty = 1.2f, .temperature = 0.8f, .top_k = 50, .top_p = 0.95f, .min_p = 0.02f},
        {.penalty = 1.0f, .temperature = 1.0f},
        {.penalty = 1.0f, .temperature = 0.5f, .top_k = 3}, /* a tie at the top-k boundary */
        {.penalty = 1.3f, .temperature = 2.0f, .top_p = 0.5f},
        {.penalty = 1.0f, .temperature = 0.0f}, /* greedy among them */
    };
    const int vocabs[] = {49152, 100, 257, 151936};
    int picks = 0, excused = 0;
    for (int vi = 0; vi < (quick ? 3 : 4); vi++) {
        int nv = vocabs[vi];
        float *x = randv(&seed, (size_t)N * nv, 6.0f), *c = malloc((size_t)nv * sizeof *c);
        pick_cand *cand = malloc((size_t)nv * sizeof *cand);
        assert_true(c && cand);
        int32_t recent[N * RMAX], nrec[N], ids[N];
        for (int r = 0; r < N; r++) {
            nrec[r] = RMAX;
            for (int j = 0; j < RMAX; j++) recent[r * RMAX + j] = (int32_t)(test_rand(&seed) % (uint64_t)nv);
        }
        float *xr5 = x + (size_t)5 * nv; /* the 2nd..4th best tie: the lower ids are kept */
        xr5[nv / 3] = 7.0f, xr5[nv / 5] = 6.5f, xr5[nv / 2] = 6.5f, xr5[nv - 1] = 6.5f;
        for (int t = 0; t < (quick ? DRAWS / 2 : DRAWS); t++) {
            llm_pick pk[N];
            for (int r = 0; r < N; r++) {
                pk[r] = base[r];
                pk[r].u = t == 0 ? 0.0 : t == 1 ? 0.999999 : (double)(test_rand(&seed) >> 11) * 0x1p-53;
            }
            float *d = put(gpu, x, (size_t)N * nv);
            doc_err err = {0};
            if (gpu->i->pick(gpu, ids, d, N, nv, recent, nrec, RMAX, pk, &err)) fail_msg("pick: %s", err.msg);
            gpu->i->release(gpu, d);
            for (int r = 0; r < N; r++) {
                const float *xr = x + (size_t)r * nv;
                memcpy(c, xr, (size_t)nv * sizeof *c);
                int32_t want = pick_row(c, nv, recent + r * RMAX, nrec[r], &pk[r], cand);
                picks++;
                if (ids[r] == want) continue;
                int ok = 0; /* the same pick with u, top_p, min_p moved by 2e-6 */
                for (int m = 0; m < 27 && !ok; m++) {
                    llm_pick q = pk[r];
                    q.u += (m % 3 - 1) * 2e-6;
                    q.u = q.u < 0 ? 0 : q.u >= 1 ? 0.999999999 : q.u;
                    if (q.top_p > 0 && q.top_p < 1) q.top_p += (float)((m / 3 % 3 - 1) * 2e-6);
                    if (q.min_p > 0) q.min_p += (float)((m / 9 - 1) * 2e-6);
                    memcpy(c, xr, (size_t)nv * sizeof *c);
                    ok = pick_row(c, nv, recent + r * RMAX, nrec[r], &q, cand) == ids[r];
                }
                if (!ok)
                    fail_msg("sample vocab %d row %d draw %d (u %.9f): picked %d, reference %d", nv, r, t,
                             pk[r].u, ids[r], want);
                excused++;
            }
        }
        free(x), free(c), free(cand);
    }
    printf("sample: %d picks against pick_row, %d at a rounding boundary\n", picks, excused);
    assert_true(excused * 50 <= picks);
}

/* ---- recorded steps (CUDA graphs) ----------------------------------------- */

enum { GD = 128, GH = 4, GG = 2, GHD = 32, GV = 500, GCTX = 64, GROWS = 3 };

typedef struct {
    llm_backend *be;
    llm_weight emb, wq, wk, wv;
    float *nw, *x, *x2, *y, *q, *kn, *vn, *att, *kc[GROWS], *vc[GROWS];
} gstep;

static void gstep_init(gstep *s, llm_backend *be, const float *e, const float *w, const float *nw)
{
    doc_err err = {0};
    memset(s, 0, sizeof *s);
    s->be = be;
    s->emb = (llm_weight){.type = LLM_T_F32, .rows = GV, .cols = GD, .data = e, .name = "emb", .rows_only = 1};
    s->wq = (llm_weight){.type = LLM_T_F32, .rows = GH * GHD, .cols = GD, .data = w, .name = "wq"};
    s->wk = (llm_weight){.type = LLM_T_F32, .rows = GG * GHD, .cols = GD, .data = w + GD * GD, .name = "wk"};
    s->wv = (llm_weight){.type = LLM_T_F32, .rows = GG * GHD, .cols = GD, .data = w + 2 * GD * GD, .name = "wv"};
    llm_weight *ws[] = {&s->emb, &s->wq, &s->wk, &s->wv};
    for (int i = 0; i < 4; i++)
        if (be->i->weight_prepare(be, ws[i], &err)) fail_msg("weight_prepare: %s", err.msg);
    s->nw = put(be, nw, GD);
    float **bufs[] = {&s->x, &s->x2, &s->y, &s->q, &s->att};
    for (int i = 0; i < 5; i++) *bufs[i] = put(be, NULL, (size_t)GROWS * GD);
    s->kn = put(be, NULL, (size_t)GROWS * GG * GHD);
    s->vn = put(be, NULL, (size_t)GROWS * GG * GHD);
    for (int i = 0; i < GROWS; i++) {
        s->kc[i] = be->i->alloc(be, (size_t)GCTX * GG * GHD);
        s->vc[i] = be->i->alloc(be, (size_t)GCTX * GG * GHD);
        assert_true(s->kc[i] && s->vc[i]);
    }
}

static void gstep_free(gstep *s)
{
    llm_weight *ws[] = {&s->emb, &s->wq, &s->wk, &s->wv};
    for (int i = 0; i < 4; i++) s->be->i->weight_release(s->be, ws[i]);
    float *bufs[] = {s->nw, s->x, s->x2, s->y, s->q, s->kn, s->vn, s->att};
    for (int i = 0; i < 8; i++) s->be->i->release(s->be, bufs[i]);
    for (int i = 0; i < GROWS; i++) s->be->i->release(s->be, s->kc[i]), s->be->i->release(s->be, s->vc[i]);
}

/* the ops of one decode-like step for n rows: x = emb[ids] + attn(...) into
 * out; step t's ids and positions differ from every other step's */
static void gstep_ops(gstep *s, int t, int n, float *out)
{
    llm_backend *be = s->be;
    int32_t ids[GROWS], pos[GROWS];
    float *kcs[GROWS], *vcs[GROWS];
    for (int i = 0; i < n; i++) {
        ids[i] = (t * 7 + i * 131) % GV;
        pos[i] = (t + 5 * i) % GCTX;
        kcs[i] = s->kc[i], vcs[i] = s->vc[i];
    }
    be->i->get_rows(be, s->x, &s->emb, ids, n);
    be->i->rmsnorm(be, s->y, s->x, s->nw, n, GD, 1e-5f);
    be->i->matmul(be, s->q, s->y, &s->wq, NULL, n);
    be->i->matmul(be, s->kn, s->y, &s->wk, NULL, n);
    be->i->matmul(be, s->vn, s->y, &s->wv, NULL, n);
    be->i->rope(be, s->q, n, GH, GHD, pos, 10000.0f, 0);
    be->i->rope(be, s->kn, n, GG, GHD, pos, 10000.0f, 0);
    be->i->attn_decode(be, s->att, s->q, kcs, vcs, (size_t)GG * GHD, pos, s->kn, s->vn, n, GH, GG,
                       GHD, 0.17f);
    be->i->add(be, out, s->x, s->att, (size_t)n * GD);
}

static void test_graphs(void **state)
{
    (void)state;
    if (!gpu->i->graph_begin) {
        printf("graphs: the %s backend records none, skipped\n", gpu_name);
        return;
    }
    doc_err err = {0};
    llm_backend *eager = NULL;
    setenv("DOCENT_CUDA_GRAPHS", "0", 1); /* read when a backend is made */
    int rc = llm_cuda_backend_new(0, &eager, &err);
    unsetenv("DOCENT_CUDA_GRAPHS");
    if (rc) fail_msg("second cuda backend: %s", err.msg);
    uint64_t seed = 0x67726170ULL;
    float *e = randv(&seed, (size_t)GV * GD, 1.0f), *w = randv(&seed, (size_t)3 * GD * GD, 0.1f),
          *nw = randv(&seed, GD, 1.0f);
    gstep sg, se;
    gstep_init(&sg, gpu, e, w, nw);
    gstep_init(&se, eager, e, w, nw);
    char before[256], after[256];
    gpu->i->describe(gpu, before, sizeof before);
    unsigned long long r0[3] = {0}, r1[3] = {0};
    const char *fmt = "%*[^:]: %llu recorded, %llu replayed, %llu run again";
    assert_int_equal(sscanf(strstr(before, "graphs"), fmt, &r0[0], &r0[1], &r0[2]), 3);
    int identical = 1;
    for (int t = 0; t < 14; t++) {
        int n = t % 2 ? 1 : GROWS;       /* two keys, each recorded on its second step */
        float *out = t == 10 ? sg.x2 : sg.x; /* step 10 changes a buffer: replay refused */
        gpu->i->graph_begin(gpu, (uint64_t)n);
        gstep_ops(&sg, t, n, out);
        rc = gpu->i->graph_end(gpu, &err);
        if (rc == LLM_GRAPH_RERUN) gstep_ops(&sg, t, n, out);
        else if (rc) fail_msg("graph_end at step %d: %s", t, err.msg);
        gstep_ops(&se, t, n, t == 10 ? se.x2 : se.x);
        float *a = get(gpu, out, (size_t)n * GD), *b = get(eager, t == 10 ? se.x2 : se.x, (size_t)n * GD);
        char what[64];
        snprintf(what, sizeof what, "graph step %d (n %d)", t, n);
        close_to(what, a, b, (size_t)n * GD, 1e-6, 0.0);
        identical &= !memcmp(a, b, (size_t)n * GD * sizeof(float));
        free(a), free(b);
        for (int i = 0; i < n; i++) { /* the caches the steps wrote */
            float *ka = get(gpu, sg.kc[i], (size_t)GCTX * GG * GHD), *kb = get(eager, se.kc[i], (size_t)GCTX * GG * GHD);
            close_to("graph step: key cache", ka, kb, (size_t)GCTX * GG * GHD, 1e-6, 0.0);
            free(ka), free(kb);
        }
    }
    gpu->i->describe(gpu, after, sizeof after);
    assert_int_equal(sscanf(strstr(after, "graphs"), fmt, &r1[0], &r1[1], &r1[2]), 3);
    printf("graphs: 14 steps, 2 keys: %llu recorded, %llu replayed, %llu run again; outputs %s\n",
           r1[0] - r0[0], r1[1] - r0[1], r1[2] - r0[2], identical ? "bit-identical" : "within 1e-6");
    /* steps 0,1 run eagerly, 2,3 are recorded, 4..13 replayed but for step 10
     * (refused: a new output buffer), and key 3 is recorded again at step 12 */
    if (r1[0] - r0[0] < 2 || r1[1] - r0[1] < 8 || r1[2] - r0[2] < 1)
        fail_msg("graphs were not recorded and replayed as expected: %s", after);
    gstep_free(&sg);
    gstep_free(&se);
    llm_backend_free(&eager);
    free(e), free(w), free(nw);
}

static void test_attn_bidir(void **state)
{
    (void)state;
    llm_backend *mb = mma_backend();
    uint64_t seed = 0x62696469ULL;
    /* head dims 16k up to 128 take the tiled kernel (several tiles: t 200), 256 the other */
    const int shapes[][4] = {{3, 13, 12, 32}, {2, 128, 6, 64}, {1, 1, 2, 128}, {4, 9, 3, 256},
                             {2, 200, 2, 64}, {3, 70, 2, 96}};
    const int lens_all[][4] = {{13, 5, 1, 0}, {128, 77, 0, 0}, {1, 0, 0, 0}, {9, 0, 4, 2},
                               {200, 131, 0, 0}, {70, 64, 65, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int b = shapes[si][0], t = shapes[si][1], h = shapes[si][2], hd = shapes[si][3];
        int lens[4];
        memcpy(lens, lens_all[si], sizeof lens);
        size_t sz = (size_t)b * t * h * hd;
        float *q = randv(&seed, sz, 1.0f), *k = randv(&seed, sz, 1.0f), *v = randv(&seed, sz, 1.0f);
        pair pq = pair_of(q, sz), pk = pair_of(k, sz), pv = pair_of(v, sz), po = pair_of(NULL, sz);
        float scale = 1.0f / sqrtf((float)hd);
        gpu->i->attn_bidir(gpu, po.g, pq.g, pk.g, pv.g, b, t, h, hd, lens, scale);
        memset(lens, 0, sizeof lens); /* the op must have copied them */
        memcpy(lens, lens_all[si], sizeof lens);
        cpu->i->attn_bidir(cpu, po.c, pq.c, pk.c, pv.c, b, t, h, hd, lens, scale);
        char what[96];
        snprintf(what, sizeof what, "attn_bidir b %d t %d h %d hd %d", b, t, h, hd);
        pair_check_scaled(what, &po, 2e-5, 1.0); /* outputs are averages of |v| <= 1 */
        if (mb) mma_check(mb, what, &po, q, sz, k, v, sz, 0, 0, 0, 0, h, h, hd, scale, b, t, lens);
        float *o = get(gpu, po.g, sz); /* padded rows exactly zero */
        for (int s = 0; s < b; s++)
            for (int i = lens[s]; i < t; i++)
                for (int e = 0; e < h * hd; e++)
                    if (o[((size_t)s * t + i) * h * hd + e] != 0.0f)
                        fail_msg("%s: padded row %d of sequence %d not zero", what, i, s);
        free(o);
        pair_free(&pq), pair_free(&pk), pair_free(&pv), pair_free(&po);
        free(q), free(k), free(v);
    }
    if (mb) llm_backend_free(&mb);
}

static void test_elementwise(void **state)
{
    (void)state;
    uint64_t seed = 0x656c656dULL;
    const size_t sizes[] = {1, 1000, 100003};
    for (size_t si = 0; si < 3; si++) {
        size_t n = sizes[si];
        float *a = randv(&seed, n, 6.0f), *b = randv(&seed, n, 3.0f);
        pair pa = pair_of(a, n), pb = pair_of(b, n), po = pair_of(NULL, n);
        gpu->i->swiglu(gpu, po.g, pa.g, pb.g, n);
        cpu->i->swiglu(cpu, po.c, pa.c, pb.c, n);
        pair_check("swiglu", &po, 1e-6);
        gpu->i->add(gpu, po.g, pa.g, pb.g, n);
        cpu->i->add(cpu, po.c, pa.c, pb.c, n);
        pair_check("add", &po, 0.0);
        gpu->i->add(gpu, pa.g, pa.g, pb.g, n); /* y aliasing a */
        cpu->i->add(cpu, pa.c, pa.c, pb.c, n);
        pair_check("add in place", &pa, 0.0);
        gpu->i->copy(gpu, po.g, pb.g, n);
        cpu->i->copy(cpu, po.c, pb.c, n);
        pair_check("copy", &po, 0.0);
        gpu->i->gelu(gpu, pa.g, n);
        cpu->i->gelu(cpu, pa.c, n);
        pair_check("gelu", &pa, 1e-6);
        pair_free(&pa), pair_free(&pb), pair_free(&po);
        free(a), free(b);
    }
    const int sm[][2] = {{1, 1}, {7, 5}, {3, 49152}, {2, 1025}};
    for (size_t i = 0; i < 4; i++) {
        size_t n = (size_t)sm[i][0] * sm[i][1];
        float *x = randv(&seed, n, 20.0f);
        pair p = pair_of(x, n);
        gpu->i->softmax(gpu, p.g, sm[i][0], sm[i][1]);
        cpu->i->softmax(cpu, p.c, sm[i][0], sm[i][1]);
        pair_check("softmax", &p, 1e-4); /* sums of up to 49k terms in another order */
        pair_free(&p);
        free(x);
    }
}

static void test_errors(void **state)
{
    (void)state;
    doc_err err = {0};
    /* a deferred error comes back from sync, once */
    float *d = gpu->i->alloc(gpu, 64);
    assert_non_null(d);
    uint16_t tab[64 * 2];
    memset(tab, 0, sizeof tab);
    llm_weight w = {.type = LLM_T_F16, .rows = 2, .cols = 64, .data = tab, .name = "t", .rows_only = 1};
    assert_int_equal(gpu->i->weight_prepare(gpu, &w, &err), DOC_OK);
    int32_t bad = 7;
    gpu->i->get_rows(gpu, d, &w, &bad, 1);
    assert_int_equal(gpu->i->sync(gpu, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "out of range"));
    assert_int_equal(gpu->i->sync(gpu, &err), DOC_OK);
    /* allocations come back zeroed */
    float *e = gpu->i->alloc(gpu, 1000);
    float *h = get(gpu, e, 1000);
    for (int i = 0; i < 1000; i++) assert_true(h[i] == 0.0f);
    free(h);
    /* an unsupported type is refused by name */
    llm_weight q = {.type = LLM_T_Q8_K, .rows = 1, .cols = 256, .data = tab, .name = "odd"};
    assert_int_equal(gpu->i->weight_prepare(gpu, &q, &err), DOC_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "odd"));
    gpu->i->weight_release(gpu, &w);
    gpu->i->release(gpu, d);
    gpu->i->release(gpu, e);
}

/* ---- whole models --------------------------------------------------------- */

static int model_present(const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", test_models_dir(), name);
    if (file_exists(path)) return 1;
    printf("model parity: %s is missing, that part is skipped\n", path);
    return 0;
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb + 1e-30);
}

static void test_embedder(void **state)
{
    (void)state;
    char path[1024];
    if (!model_present(TEST_EMBEDDER, path, sizeof path)) return;
    llm_model *mg = NULL, *mc = NULL;
    doc_err err = {0};
    llm_opts og = {.backend = gpu_name, .weights_f32 = selftest}, oc = {.backend = "cpu", .weights_f32 = 1};
    if (llm_model_open(path, &og, &mg, &err)) fail_msg("open on cuda: %s", err.msg);
    if (llm_model_open(path, &oc, &mc, &err)) fail_msg("open on cpu: %s", err.msg);
    const char *texts[] = {
        "SQLite is a C-language library that implements a small, fast, self-contained SQL database engine.",
        "How do I create an index?",
        "x",
        "The quick brown fox jumps over the lazy dog, again and again, until the dog finally wakes up "
        "and chases it across the field and into the woods where they both disappear from view.",
    };
    int n = 4, d = llm_embed_dim(mg);
    float *eg = malloc((size_t)n * d * sizeof(float)), *ec = malloc((size_t)n * d * sizeof(float));
    assert_true(eg && ec);
    if (llm_embed(mg, texts, n, eg, NULL, &err)) fail_msg("embed on cuda: %s", err.msg);
    if (llm_embed(mc, texts, n, ec, NULL, &err)) fail_msg("embed on cpu: %s", err.msg);
    for (int i = 0; i < n; i++) {
        double cs = cosine(eg + (size_t)i * d, ec + (size_t)i * d, d);
        printf("embedder text %d: cosine cuda/cpu %.6f\n", i, cs);
        if (!(cs >= 0.999)) fail_msg("embedder text %d: cosine %.6f < 0.999", i, cs);
    }
    free(eg), free(ec);
    llm_model_close(&mg);
    llm_model_close(&mc);
}

/* gen_run: the generator on one backend: prefill, then 32 greedy tokens into
 * toks.  pick: the steps pick on the backend (llm_step_row without logits),
 * as llm_generate does; else they return logits and the host picks, each
 * step's logits kept in step_lg (32 x n_vocab) when given.  first: the
 * prefill's logits; last: the logits after the 32nd token. */
static void gen_run(const char *path, const char *backend, int keep, int pick, int32_t *toks,
                    float *first, float *last, float *step_lg)
{
    doc_err err = {0};
    llm_model *m = NULL;
    int cpu_side = !strcmp(backend, "cpu") && !selftest;
    llm_opts o = {.backend = backend, .n_ctx = 512, .weights_f32 = cpu_side || selftest};
    if (keep) setenv("DOCENT_CUDA_QUANT", "keep", 1);
    int rc = llm_model_open(path, &o, &m, &err);
    unsetenv("DOCENT_CUDA_QUANT");
    if (rc) fail_msg("open (%s%s): %s", backend, keep ? ", keep" : "", err.msg);
    const char *prompt = "<|im_start|>user\nWhat is a B-tree index?<|im_end|>\n<|im_start|>assistant\n";
    int nv = llm_n_vocab(m), n = 0;
    int32_t *ids = NULL;
    assert_int_equal(llm_tokenize(m, prompt, strlen(prompt), 1, 1, &ids, &n, &err), DOC_OK);
    llm_session *s = NULL;
    assert_int_equal(llm_session_new(m, &s, &err), DOC_OK);
    float *lg = malloc((size_t)nv * sizeof(float));
    assert_non_null(lg);
    if (llm_session_eval(s, ids, n, 0, lg, &err)) fail_msg("prefill (%s): %s", backend, err.msg);
    memcpy(first, lg, (size_t)nv * sizeof(float));
    int32_t next = 0;
    for (int i = 1; i < nv; i++)
        if (lg[i] > lg[next]) next = i;
    if (step_lg) memcpy(step_lg, lg, (size_t)nv * sizeof(float));
    for (int t = 0; t < 32; t++) {
        toks[t] = next;
        llm_step_row row = {.s = s, .id = next, .pick = {.penalty = 1.0f}};
        if (!pick || t == 31) row.logits = lg;
        if (llm_sessions_step_rows(&row, 1, &err)) fail_msg("decode (%s): %s", backend, err.msg);
        if (row.logits) {
            next = 0;
            for (int i = 1; i < nv; i++)
                if (lg[i] > lg[next]) next = i;
            if (step_lg && t < 31) memcpy(step_lg + (size_t)(t + 1) * nv, lg, (size_t)nv * sizeof(float));
        } else {
            next = row.next;
        }
    }
    memcpy(last, lg, (size_t)nv * sizeof(float));
    char info[256];
    llm_model_backend_info(m, info, sizeof info);
    if (*info) printf("generator (%s%s): %s\n", backend, keep ? ", keep" : "", info);
    free(lg);
    free(ids);
    llm_session_free(&s);
    llm_model_close(&m);
}

/* cosine and max difference of a against b, b's range */
static void logit_diff(const float *a, const float *b, int nv, double *cs, double *worst, double *range)
{
    double lo = 1e30, hi = -1e30;
    *worst = 0;
    for (int i = 0; i < nv; i++) {
        lo = fmin(lo, b[i]), hi = fmax(hi, b[i]);
        *worst = fmax(*worst, fabs((double)a[i] - b[i]));
    }
    *cs = cosine(a, b, nv);
    *range = hi - lo;
}

/*
 * The default generator (or DOCENT_TEST_CUDA_GGUF: make gpu-check carries a
 * 2-layer cut of it, tests/gpu/make_tiny_gguf.py) on cuda, with weights
 * expanded to f16 and kept as blocks, against the CPU in f32: the prefill's
 * logits close (cosine >= 0.999, max difference <= 2% of the range) and 32
 * greedy tokens picked on the device identical to the CPU's, a divergence
 * excused only at a near tie (the CPU's margin between the two tokens within
 * 1% of its logit range; reported), and then the last logits close.
 */
static void test_generator(void **state)
{
    (void)state;
    char path[1024];
    const char *env = getenv("DOCENT_TEST_CUDA_GGUF");
    if (env && *env) snprintf(path, sizeof path, "%s", env);
    else if (!model_present(TEST_GGUF, path, sizeof path)) return;
    if (!file_exists(path)) fail_msg("DOCENT_TEST_CUDA_GGUF=%s: no such file", path);
    enum { MAXV = 1 << 18 };
    float *first[2], *last[2], *steps = malloc((size_t)32 * MAXV * sizeof(float));
    int32_t toks[2][32];
    for (int k = 0; k < 2; k++) {
        first[k] = malloc((size_t)MAXV * sizeof(float));
        last[k] = malloc((size_t)MAXV * sizeof(float));
        assert_true(first[k] && last[k]);
    }
    assert_non_null(steps);
    gen_run(path, "cpu", 0, 0, toks[1], first[1], last[1], steps);
    llm_model *probe = NULL;
    doc_err err = {0};
    llm_opts po = {.backend = "cpu", .n_ctx = 64};
    assert_int_equal(llm_model_open(path, &po, &probe, &err), DOC_OK);
    int nv = llm_n_vocab(probe);
    llm_model_close(&probe);
    assert_true(nv <= MAXV);
    for (int keep = 0; keep < (selftest || quick ? 1 : 2); keep++) { /* quick: f16 only */
        const char *what = keep ? "cuda, weights kept as blocks" : gpu_name;
        gen_run(path, gpu_name, keep, 1, toks[0], first[0], last[0], NULL);
        double cs, worst, range;
        logit_diff(first[0], first[1], nv, &cs, &worst, &range);
        printf("generator (%s): prefill logits cosine %.6f, max diff %.4f (range %.2f)\n", what, cs, worst, range);
        if (!(cs >= 0.999) || worst > 0.02 * range)
            fail_msg("%s: prefill logits differ: cosine %.6f, max diff %g of range %g", what, cs, worst, range);
        int same = 0;
        while (same < 32 && toks[0][same] == toks[1][same]) same++;
        if (same < 32) {
            const float *c = steps + (size_t)same * nv;
            double lo = 1e30, hi = -1e30;
            for (int i = 0; i < nv; i++) lo = fmin(lo, c[i]), hi = fmax(hi, c[i]);
            double margin = (double)c[toks[1][same]] - c[toks[0][same]];
            if (margin > 0.01 * (hi - lo))
                fail_msg("%s: greedy token %d is %d, cpu %d (cpu margin %g, range %g)", what, same,
                         toks[0][same], toks[1][same], margin, hi - lo);
            printf("generator (%s): tokens agree for %d steps, then a near tie (cpu margin %.4g)\n", what,
                   same, margin);
        } else {
            logit_diff(last[0], last[1], nv, &cs, &worst, &range);
            printf("generator (%s): 32 greedy tokens identical; last logits cosine %.6f, max diff %.4f\n",
                   what, cs, worst);
            if (!(cs >= 0.999) || worst > 0.02 * range)
                fail_msg("%s: last-token logits differ: cosine %.6f, max diff %g of range %g", what, cs,
                         worst, range);
        }
    }
    for (int k = 0; k < 2; k++) free(first[k]), free(last[k]);
    free(steps);
}

int main(void)
{
    doc_err err = {0};
    /* DOCENT_TEST_CUDA_SELFTEST=1: the CPU backend at its best level stands in
     * for the device, to check this test itself on a machine without a GPU
     * (quantized matmuls are left out: the CPU quantizes activations to 8 bits) */
    const char *self = getenv("DOCENT_TEST_CUDA_SELFTEST");
    selftest = self && *self == '1';
    const char *qk = getenv("DOCENT_TEST_CUDA_QUICK");
    quick = qk && *qk == '1';
    if (selftest) { /* the stand-in grows its caches as the device does */
        gpu_name = "cpu";
        setenv("DOCENT_CPU_KV_GROW", "1", 1);
    }
    int rc = selftest ? llm_cpu_backend_new(2, &gpu, &err) : llm_cuda_backend_new(0, &gpu, &err);
    if (rc) {
        printf("skipped: no usable CUDA backend: %s\n", err.msg);
        return 77;
    }
    setenv("DOCENT_ISA", "ref", 1);
    unsetenv("DOCENT_CPU_KV_GROW"); /* the reference allocates caches whole */
    if (llm_cpu_backend_new(1, &cpu, &err)) {
        printf("cpu backend: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),      cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_norms),       cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attn_causal), cmocka_unit_test(test_attn_decode),
        cmocka_unit_test(test_graphs),      cmocka_unit_test(test_pick),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_attn_bidir),  cmocka_unit_test(test_kv_grow),
        cmocka_unit_test(test_elementwise), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_embedder),    cmocka_unit_test(test_generator),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    llm_backend_free(&gpu);
    llm_backend_free(&cpu);
    return rc;
}
