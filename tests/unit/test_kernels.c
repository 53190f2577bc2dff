/*
 * test_kernels.c - every CPU backend op at every ISA level the machine has,
 * against float64 references written here; the integer-dot levels against
 * each other; 1 vs 4 threads bitwise; and a short performance report.
 *
 * Weights are random floats quantized with llm_quantize_ref, and the matmul
 * reference dequantizes them with llm_dequantize_ref and sums in double, so
 * the only error a kernel may add is the activation quantization (bounded per
 * block: half a quantization step times the weight mass of the block) and
 * float accumulation.
 */
#include "testutil.h"

#include <math.h>

#include "llm/cpu/internal.h"

static int n_levels(void) { return cpu_isa_detect() + 1; }

static llm_backend *make_be(int isa, int nth)
{
    llm_backend *be = NULL;
    doc_err err = {0};
    assert_int_equal(cpu_backend_new_isa(nth, isa, &be, &err), DOC_OK);
    assert_int_equal(cpu_backend_isa(be), isa);
    return be;
}

static float *randv(uint64_t *s, size_t n, float amp)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = amp * test_randf(s);
    return v;
}

/* ---- matmul -------------------------------------------------------------- */

typedef struct {
    int type;
    double tol; /* float accumulation tolerance, relative to sum |x||w| */
} mm_case;

static const mm_case mm_cases[] = {
    {LLM_T_F32, 2e-6}, {LLM_T_F16, 2e-6}, {LLM_T_BF16, 2e-6},
    {LLM_T_Q8_0, 2e-6}, {LLM_T_Q4_0, 2e-6}, {LLM_T_Q4_1, 2e-6},
    {LLM_T_Q4_K, 2e-6}, {LLM_T_Q5_K, 2e-6}, {LLM_T_Q6_K, 2e-6},
};

/* quantization error bound of the activations: per block of the activation
 * format, amax/127/2 per element times the dequantized weight mass */
static double act_bound(int act, const float *x, const float *wd, int64_t k)
{
    if (act == LLM_T_F32) return 0.0;
    int qb = act == LLM_T_Q8_1 ? 32 : 256;
    double b = 0.0;
    for (int64_t i = 0; i < k; i += qb) {
        double amax = 0.0, wm = 0.0;
        for (int j = 0; j < qb; j++) {
            amax = fmax(amax, fabs(x[i + j]));
            wm += fabs(wd[i + j]);
        }
        b += amax / 127.0 * 0.5 * wm * 1.001;
    }
    return b;
}

static void check_matmul(uint64_t *seed, const mm_case *mc, int n, int64_t k, int64_t m, int bias)
{
    size_t rb = llm_row_bytes(mc->type, k);
    float *wf = randv(seed, (size_t)m * k, 1.0f);
    for (int64_t r = 0; r < m; r++) /* rows of different magnitude */
        for (int64_t j = 0; j < k; j++) wf[r * k + j] *= 0.1f + (float)(r % 7);
    void *wq = malloc(rb * m);
    float *wd = malloc((size_t)m * k * sizeof(float));
    assert_true(wq && wd);
    for (int64_t r = 0; r < m; r++) {
        llm_quantize_ref(mc->type, wf + r * k, (char *)wq + r * rb, k);
        llm_dequantize_ref(mc->type, (char *)wq + r * rb, wd + r * k, k);
    }
    float *x = randv(seed, (size_t)n * k, 2.0f);
    float *b = bias ? randv(seed, (size_t)m, 1.0f) : NULL;
    int act = cpu_act_type(mc->type);
    llm_weight w = {.type = mc->type, .rows = m, .cols = k, .data = wq, .name = "w"};
    float *yref_lvl = NULL;
    for (int isa = 0; isa < n_levels(); isa++) {
        for (int nth = 1; nth <= 4; nth += 3) {
            llm_backend *be = make_be(isa, nth);
            doc_err err = {0};
            assert_int_equal(be->i->weight_prepare(be, &w, &err), DOC_OK);
            /* AVX-512 repacks Q4_0/Q4_1/Q8_0 into row groups: those cases test that layout */
            if (mc->type == LLM_T_Q4_0 || mc->type == LLM_T_Q4_1 || mc->type == LLM_T_Q8_0)
                assert_true(isa == CPU_ISA_AVX512 ? w.dev != NULL : w.dev == NULL);
            float *y = be->i->alloc(be, (size_t)n * m);
            be->i->matmul(be, y, x, &w, b, n);
            assert_int_equal(be->i->sync(be, &err), DOC_OK);
            for (int t = 0; t < n; t++)
                for (int64_t r = 0; r < m; r++) {
                    double ref = b ? b[r] : 0.0, mass = 0.0;
                    for (int64_t j = 0; j < k; j++) {
                        ref += (double)x[t * k + j] * wd[r * k + j];
                        mass += fabs((double)x[t * k + j] * wd[r * k + j]);
                    }
                    /* BF16 weights take activations rounded to bf16: 2^-8 relative at most */
                    double tol = act_bound(act, x + t * k, wd + r * k, k) + mc->tol * mass + 1e-6 +
                                 (mc->type == LLM_T_BF16 ? 0x1p-8 * mass : 0.0);
                    double got = y[t * m + r];
                    if (fabs(got - ref) > tol)
                        fail_msg("%s isa %d nth %d n %d k %lld m %lld: y[%d][%lld] = %g, ref %g, tol %g",
                                 llm_type(mc->type)->name, isa, nth, n, (long long)k, (long long)m,
                                 t, (long long)r, got, ref, tol);
                    /* every level against the integer/float reference level, tightly */
                    if (yref_lvl) {
                        double rl = yref_lvl[t * m + r];
                        if (fabs(got - rl) > 4e-6 * mass + 1e-6)
                            fail_msg("%s isa %d vs ref level: y[%d][%lld] = %g vs %g",
                                     llm_type(mc->type)->name, isa, t, (long long)r, got, rl);
                    }
                }
            if (!yref_lvl) {
                yref_lvl = malloc((size_t)n * m * sizeof(float));
                memcpy(yref_lvl, y, (size_t)n * m * sizeof(float));
            }
            /* threads: nth 4 must equal nth 1 bit for bit */
            static float *y1;
            if (nth == 1) {
                free(y1);
                y1 = malloc((size_t)n * m * sizeof(float));
                memcpy(y1, y, (size_t)n * m * sizeof(float));
            } else {
                assert_memory_equal(y1, y, (size_t)n * m * sizeof(float));
                free(y1);
                y1 = NULL;
            }
            be->i->weight_release(be, &w);
            be->i->release(be, y);
            llm_backend_free(&be);
        }
    }
    free(yref_lvl);
    free(wf);
    free(wq);
    free(wd);
    free(x);
    free(b);
}

static void test_matmul(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t c = 0; c < sizeof mm_cases / sizeof mm_cases[0]; c++) {
        const mm_case *mc = &mm_cases[c];
        int blk = llm_type(mc->type)->block;
        /* k: a multiple of the block but not of the SIMD width where the type allows */
        int64_t k = blk == 1 ? 203 : blk == 32 ? 32 * 7 : 256 * 3;
        check_matmul(&seed, mc, 1, k, 37, 0);   /* decode */
        check_matmul(&seed, mc, 37, k, 45, 1);  /* prefill, odd sizes, bias */
        check_matmul(&seed, mc, 3, k, 70, 1);   /* few tokens */
        if (blk == 1) check_matmul(&seed, mc, 29, 64, 96, 0);
        if (blk == 32) {
            /* row groups: whole groups only, several tile rows and token tiles,
             * and k past the kernels' 64-block chunk of activation sums */
            check_matmul(&seed, mc, 1, 32 * 70, 48, 0);
            check_matmul(&seed, mc, 6, 32 * 130, 80, 1);
            check_matmul(&seed, mc, 40, 32 * 5, 144, 0);
        }
    }
}

/* ---- get_rows ------------------------------------------------------------ */

static void test_get_rows(void **state)
{
    (void)state;
    uint64_t seed = 42;
    static const int types[] = {LLM_T_F32, LLM_T_F16, LLM_T_BF16, LLM_T_Q8_0, LLM_T_Q4_0,
                                LLM_T_Q4_1, LLM_T_Q4_K, LLM_T_Q5_K, LLM_T_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int64_t k = 512, m = 11;
        size_t rb = llm_row_bytes(types[ti], k);
        float *wf = randv(&seed, (size_t)m * k, 3.0f), *exp = malloc(k * sizeof(float));
        char *wq = malloc(rb * m);
        for (int64_t r = 0; r < m; r++) llm_quantize_ref(types[ti], wf + r * k, wq + r * rb, k);
        int32_t ids[5] = {3, 0, 10, 3, 7};
        llm_weight w = {.type = types[ti], .rows = m, .cols = k, .data = wq, .name = "emb"};
        for (int isa = 0; isa < n_levels(); isa++) {
            llm_backend *be = make_be(isa, 2);
            float *out = be->i->alloc(be, 5 * k);
            be->i->get_rows(be, out, &w, ids, 5);
            for (int i = 0; i < 5; i++) {
                llm_dequantize_ref(types[ti], wq + ids[i] * rb, exp, k);
                assert_memory_equal(out + i * k, exp, k * sizeof(float));
            }
            be->i->release(be, out);
            llm_backend_free(&be);
        }
        free(wf);
        free(exp);
        free(wq);
    }
}

/* ---- norms, rope, elementwise ------------------------------------------- */

static void close_or_fail(const char *what, int isa, const float *got, const double *ref,
                          size_t n, double rel, double abs_)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= rel * fabs(ref[i]) + abs_))
            fail_msg("%s isa %d: [%zu] = %.9g, ref %.9g", what, isa, i, got[i], ref[i]);
}

static void test_norms(void **state)
{
    (void)state;
    uint64_t seed = 7;
    int n = 37, d = 203;
    float *x = randv(&seed, (size_t)n * d, 3.0f), *w = randv(&seed, d, 1.0f),
          *b = randv(&seed, d, 1.0f);
    double *ref = malloc((size_t)n * d * sizeof(double)), *ref2 = malloc((size_t)n * d * sizeof(double));
    for (int i = 0; i < n; i++) {
        double ss = 0, mean = 0, var = 0;
        for (int e = 0; e < d; e++) ss += (double)x[i * d + e] * x[i * d + e], mean += x[i * d + e];
        mean /= d;
        for (int e = 0; e < d; e++) var += (x[i * d + e] - mean) * (x[i * d + e] - mean);
        for (int e = 0; e < d; e++) {
            ref[i * d + e] = x[i * d + e] / sqrt(ss / d + 1e-5) * w[e];
            ref2[i * d + e] = (x[i * d + e] - mean) / sqrt(var / d + 1e-12) * w[e] + b[e];
        }
    }
    for (int isa = 0; isa < n_levels(); isa++) {
        llm_backend *be = make_be(isa, 2);
        float *out = be->i->alloc(be, (size_t)n * d);
        be->i->rmsnorm(be, out, x, w, n, d, 1e-5f);
        close_or_fail("rmsnorm", isa, out, ref, (size_t)n * d, 1e-5, 1e-6);
        be->i->layernorm(be, out, x, w, b, n, d, 1e-12f);
        close_or_fail("layernorm", isa, out, ref2, (size_t)n * d, 1e-5, 1e-5);
        be->i->release(be, out);
        llm_backend_free(&be);
    }
    free(x);
    free(w);
    free(b);
    free(ref);
    free(ref2);
}

static void test_rope(void **state)
{
    (void)state;
    uint64_t seed = 11;
    int n = 5, h = 3, hd = 64;
    int32_t pos[5] = {0, 1, 17, 500, 4095};
    float *x = randv(&seed, (size_t)n * h * hd, 1.0f);
    double *ref = malloc((size_t)n * h * hd * sizeof(double));
    for (int neox = 0; neox <= 1; neox++) {
        for (int i = 0; i < n; i++)
            for (int hh = 0; hh < h; hh++)
                for (int p = 0; p < hd / 2; p++) {
                    double a = pos[i] * pow(10000.0, -2.0 * p / hd);
                    int i0 = neox ? p : 2 * p, i1 = neox ? p + hd / 2 : 2 * p + 1;
                    const float *v = x + (i * h + hh) * hd;
                    double *o = ref + (i * h + hh) * hd;
                    o[i0] = v[i0] * cos(a) - v[i1] * sin(a);
                    o[i1] = v[i0] * sin(a) + v[i1] * cos(a);
                }
        for (int isa = 0; isa < n_levels(); isa++) {
            llm_backend *be = make_be(isa, 2);
            float *y = be->i->alloc(be, (size_t)n * h * hd);
            memcpy(y, x, (size_t)n * h * hd * sizeof(float));
            be->i->rope(be, y, n, h, hd, pos, 10000.0f, neox);
            /* float angles at position 4095 carry ~2.5e-4 absolute phase error */
            close_or_fail(neox ? "rope neox" : "rope", isa, y, ref, (size_t)n * h * hd, 0, 1e-3);
            be->i->release(be, y);
            llm_backend_free(&be);
        }
    }
    free(x);
    free(ref);
}

static void test_elementwise(void **state)
{
    (void)state;
    uint64_t seed = 13;
    size_t n = 40000 + 13; /* threaded, with a tail */
    float *a = randv(&seed, n, 12.0f), *b = randv(&seed, n, 3.0f);
    double *ref = malloc(n * sizeof(double));
    for (int isa = 0; isa < n_levels(); isa++) {
        llm_backend *be = make_be(isa, 2);
        float *y = be->i->alloc(be, n);
        memcpy(y, a, n * sizeof(float));
        be->i->gelu(be, y, n);
        /* relative 2e-6, widened in the negative tail where rounding z = x/sqrt2 to
         * float alone moves erfc(z) by about z^2 * 1.2e-7 relative */
        for (size_t i = 0; i < n; i++) {
            double r = 0.5 * a[i] * erfc(-a[i] / sqrt(2.0));
            double tol = (2e-6 + (a[i] < 0 ? 1.5e-7 * a[i] * a[i] : 0.0)) * fabs(r) + 1e-30;
            if (!(fabs(y[i] - r) <= tol))
                fail_msg("gelu isa %d: gelu(%.9g) = %.9g, ref %.9g", isa, a[i], y[i], r);
        }
        be->i->swiglu(be, y, a, b, n);
        for (size_t i = 0; i < n; i++) ref[i] = a[i] / (1.0 + exp(-(double)a[i])) * b[i];
        close_or_fail("swiglu", isa, y, ref, n, 2e-6, 1e-30);
        be->i->add(be, y, a, b, n);
        for (size_t i = 0; i < n; i++) ref[i] = (double)a[i] + b[i];
        close_or_fail("add", isa, y, ref, n, 1e-7, 0);
        be->i->copy(be, y, b, n);
        assert_memory_equal(y, b, n * sizeof(float));
        /* softmax over 37 rows of 1081 with a spread of 24 */
        int rows = 37, d = 1081;
        memcpy(y, a, (size_t)rows * d * sizeof(float));
        be->i->softmax(be, y, rows, d);
        for (int r = 0; r < rows; r++) {
            double mx = -1e300, s = 0;
            for (int e = 0; e < d; e++) mx = fmax(mx, a[r * d + e]);
            for (int e = 0; e < d; e++) s += exp(a[r * d + e] - mx);
            for (int e = 0; e < d; e++) ref[r * d + e] = exp(a[r * d + e] - mx) / s;
        }
        /* x - max is rounded to float: up to 1e-6 absolute at -24, so 5e-6 relative */
        close_or_fail("softmax", isa, y, ref, (size_t)rows * d, 5e-6, 1e-30);
        be->i->release(be, y);
        llm_backend_free(&be);
    }
    free(a);
    free(b);
    free(ref);
}

/* ---- attention ----------------------------------------------------------- */

static void attn_ref(double *o, const float *q, const float *k, const float *v, size_t kstride,
                     int nk, int hd, float scale)
{
    double *s = malloc(nk * sizeof(double)), mx = -1e300, sum = 0;
    for (int t = 0; t < nk; t++) {
        double d = 0;
        for (int e = 0; e < hd; e++) d += (double)q[e] * k[t * kstride + e];
        s[t] = d * scale;
        mx = fmax(mx, s[t]);
    }
    for (int t = 0; t < nk; t++) sum += s[t] = exp(s[t] - mx);
    for (int e = 0; e < hd; e++) {
        double a = 0;
        for (int t = 0; t < nk; t++) a += s[t] * v[t * kstride + e];
        o[e] = a / sum;
    }
    free(s);
}

/* attn_causal against the float64 reference, on caches whose positions are
 * g*hd floats apart (layer-major) or further (position-major, other layers'
 * rows in between); then with the chunk's keys and values passed in (kn,
 * vn): stored first, the same output bit for bit */
static void test_attn_causal(void **state)
{
    (void)state;
    uint64_t seed = 17;
    /* one query (decode) takes attn_q1 where a level has it for the head size
     * (64, 128; 80 has none), with a tail of keys past a multiple of 16 */
    static const int shapes[][5] = {/* n, pos0, h, g, hd */ {1, 0, 4, 4, 64}, {1, 70, 9, 3, 64},
                                    {1, 300, 8, 2, 64}, {1, 45, 4, 2, 128}, {1, 20, 2, 1, 80},
                                    {37, 0, 6, 2, 64}, {13, 29, 3, 3, 64}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
        for (int strided = 0; strided < 2; strided++) {
            int n = shapes[c][0], pos0 = shapes[c][1], h = shapes[c][2], g = shapes[c][3];
            int hd = shapes[c][4];
            int ctx = pos0 + n + 5;
            size_t kvd = (size_t)g * hd, ldc = strided ? 3 * kvd + 16 : kvd;
            float *q = randv(&seed, (size_t)n * h * hd, 2.0f);
            float *kc = randv(&seed, (size_t)ctx * ldc, 2.0f), *vc = randv(&seed, (size_t)ctx * ldc, 1.0f);
            double *ref = malloc((size_t)n * h * hd * sizeof(double));
            float *kn = malloc((size_t)n * kvd * sizeof(float)), *vn = malloc((size_t)n * kvd * sizeof(float));
            assert_true(ref && kn && vn);
            float scale = 1.0f / sqrtf((float)hd);
            for (int i = 0; i < n; i++) {
                memcpy(kn + i * kvd, kc + (size_t)(pos0 + i) * ldc, kvd * sizeof(float));
                memcpy(vn + i * kvd, vc + (size_t)(pos0 + i) * ldc, kvd * sizeof(float));
                for (int hh = 0; hh < h; hh++) {
                    int kv = hh / (h / g);
                    attn_ref(ref + (i * h + hh) * hd, q + (i * h + hh) * hd, kc + kv * hd, vc + kv * hd,
                             ldc, pos0 + i + 1, hd, scale);
                }
            }
            float *y1 = NULL;
            for (int isa = 0; isa < n_levels(); isa++)
                for (int nth = 1; nth <= 4; nth += 3) {
                    llm_backend *be = make_be(isa, nth);
                    float *out = be->i->alloc(be, (size_t)n * h * hd);
                    be->i->attn_causal(be, out, q, kc, vc, ldc, NULL, NULL, n, pos0, h, g, hd, scale);
                    close_or_fail("attn_causal", isa, out, ref, (size_t)n * h * hd, 1e-5, 1e-6);
                    if (nth == 1) {
                        free(y1);
                        y1 = malloc((size_t)n * h * hd * sizeof(float));
                        memcpy(y1, out, (size_t)n * h * hd * sizeof(float));
                    } else {
                        assert_memory_equal(y1, out, (size_t)n * h * hd * sizeof(float));
                    }
                    for (int i = 0; i < n; i++) /* the chunk's rows come from kn, vn */
                        for (size_t e = 0; e < kvd; e++)
                            kc[(size_t)(pos0 + i) * ldc + e] = vc[(size_t)(pos0 + i) * ldc + e] = NAN;
                    be->i->attn_causal(be, out, q, kc, vc, ldc, kn, vn, n, pos0, h, g, hd, scale);
                    assert_memory_equal(y1, out, (size_t)n * h * hd * sizeof(float));
                    for (int i = 0; i < n; i++) {
                        assert_memory_equal(kc + (size_t)(pos0 + i) * ldc, kn + i * kvd, kvd * sizeof(float));
                        assert_memory_equal(vc + (size_t)(pos0 + i) * ldc, vn + i * kvd, kvd * sizeof(float));
                    }
                    be->i->release(be, out);
                    llm_backend_free(&be);
                }
            free(y1);
            free(q);
            free(kc);
            free(vc);
            free(kn);
            free(vn);
            free(ref);
        }
}

/* attn_decode: a decode step's rows, each over its own cache and position,
 * against the float64 reference and bit-equal to attn_causal row by row */
static void test_attn_decode(void **state)
{
    (void)state;
    uint64_t seed = 23;
    enum { N = 4, H = 9, G = 3 };
    static const int pos[N] = {0, 17, 130, 64};
    for (int hi = 0; hi < 2; hi++) {
        int hd = hi ? 128 : 64, ctx = 140;
        size_t kvd = (size_t)G * hd;
        float *q = randv(&seed, (size_t)N * H * hd, 2.0f), *kc[N], *vc[N];
        double *ref = malloc((size_t)N * H * hd * sizeof(double));
        float scale = 1.0f / sqrtf((float)hd);
        for (int i = 0; i < N; i++) {
            kc[i] = randv(&seed, (size_t)ctx * kvd, 2.0f);
            vc[i] = randv(&seed, (size_t)ctx * kvd, 1.0f);
            for (int hh = 0; hh < H; hh++) {
                int kv = hh / (H / G);
                attn_ref(ref + ((size_t)i * H + hh) * hd, q + ((size_t)i * H + hh) * hd, kc[i] + kv * hd,
                         vc[i] + kv * hd, kvd, pos[i] + 1, hd, scale);
            }
        }
        int32_t p32[N];
        for (int i = 0; i < N; i++) p32[i] = pos[i];
        for (int isa = 0; isa < n_levels(); isa++)
            for (int nth = 1; nth <= 4; nth += 3) {
                llm_backend *be = make_be(isa, nth);
                float *out = be->i->alloc(be, (size_t)N * H * hd), *one = be->i->alloc(be, (size_t)H * hd);
                be->i->attn_decode(be, out, q, kc, vc, kvd, p32, NULL, NULL, N, H, G, hd, scale);
                close_or_fail("attn_decode", isa, out, ref, (size_t)N * H * hd, 1e-5, 1e-6);
                for (int i = 0; i < N; i++) {
                    be->i->attn_causal(be, one, q + (size_t)i * H * hd, kc[i], vc[i], kvd, NULL, NULL, 1,
                                       pos[i], H, G, hd, scale);
                    assert_memory_equal(one, out + (size_t)i * H * hd, (size_t)H * hd * sizeof(float));
                }
                /* with the new keys and values passed in: stored at pos[i] first */
                float *kn = malloc((size_t)N * kvd * sizeof(float)), *vn = malloc((size_t)N * kvd * sizeof(float));
                float *out2 = be->i->alloc(be, (size_t)N * H * hd);
                assert_true(kn && vn && out2);
                for (int i = 0; i < N; i++) {
                    memcpy(kn + i * kvd, kc[i] + (size_t)pos[i] * kvd, kvd * sizeof(float));
                    memcpy(vn + i * kvd, vc[i] + (size_t)pos[i] * kvd, kvd * sizeof(float));
                    for (size_t e = 0; e < kvd; e++) kc[i][(size_t)pos[i] * kvd + e] = vc[i][(size_t)pos[i] * kvd + e] = NAN;
                }
                be->i->attn_decode(be, out2, q, kc, vc, kvd, p32, kn, vn, N, H, G, hd, scale);
                assert_memory_equal(out2, out, (size_t)N * H * hd * sizeof(float));
                for (int i = 0; i < N; i++) {
                    assert_memory_equal(kc[i] + (size_t)pos[i] * kvd, kn + i * kvd, kvd * sizeof(float));
                    assert_memory_equal(vc[i] + (size_t)pos[i] * kvd, vn + i * kvd, kvd * sizeof(float));
                }
                be->i->release(be, out2);
                free(kn);
                free(vn);
                be->i->release(be, out);
                be->i->release(be, one);
                llm_backend_free(&be);
            }
        for (int i = 0; i < N; i++) {
            free(kc[i]);
            free(vc[i]);
        }
        free(q);
        free(ref);
    }
}

static void test_attn_bidir(void **state)
{
    (void)state;
    uint64_t seed = 19;
    int b = 3, t = 11, h = 6, hd = 32;
    int lens[3] = {11, 4, 1};
    size_t sz = (size_t)b * t * h * hd, ks = (size_t)h * hd;
    float *q = randv(&seed, sz, 2.0f), *k = randv(&seed, sz, 2.0f), *v = randv(&seed, sz, 1.0f);
    double *ref = calloc(sz, sizeof(double));
    float scale = 0.17f;
    for (int s = 0; s < b; s++)
        for (int i = 0; i < lens[s]; i++)
            for (int hh = 0; hh < h; hh++) {
                size_t base = (size_t)s * t * ks;
                attn_ref(ref + base + i * ks + hh * hd, q + base + i * ks + hh * hd, k + base + hh * hd,
                         v + base + hh * hd, ks, lens[s], hd, scale);
            }
    for (int isa = 0; isa < n_levels(); isa++) {
        llm_backend *be = make_be(isa, 2);
        float *out = be->i->alloc(be, sz);
        for (size_t i = 0; i < sz; i++) out[i] = 99.0f; /* padded rows must be overwritten */
        be->i->attn_bidir(be, out, q, k, v, b, t, h, hd, lens, scale);
        close_or_fail("attn_bidir", isa, out, ref, sz, 1e-5, 1e-6);
        be->i->release(be, out);
        llm_backend_free(&be);
    }
    free(q);
    free(k);
    free(v);
    free(ref);
}

/* the blocked attention kernels (cpu_attn_fn) of every level against the
 * float64 reference and against the scalar cpu_attn_ref: bidirectional and
 * causal, head widths that are and are not multiples of the SIMD width, key
 * counts around the 32-key padding, strided rows (two heads per row, keys
 * with their own stride as under GQA); columns outside the head untouched */
static void test_attn_kernels(void **state)
{
    (void)state;
    static const cpu_attn_fn fns[] = {cpu_attn_ref, cpu_attn_avx2, cpu_attn_avx512};
    static const int cases[][4] = {/* nq, nk, pos0 (-1 bidir), hd */
        {1, 1, -1, 32}, {5, 5, -1, 16}, {33, 33, -1, 32}, {70, 70, -1, 64}, {40, 40, -1, 24},
        {19, 19, -1, 20}, {8, 31, -1, 32}, {37, 42, 5, 64}, {9, 9, 0, 32}, {13, 45, 32, 40},
        {64, 64, 0, 32}};
    uint64_t seed = 23;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int nq = cases[ci][0], nk = cases[ci][1], pos0 = cases[ci][2], hd = cases[ci][3];
        size_t ldq = 2 * (size_t)hd + 3, ldk = 3 * (size_t)hd + 1;
        float *q = randv(&seed, nq * ldq, 2.0f), *k = randv(&seed, nk * ldk, 2.0f);
        float *v = randv(&seed, nk * ldk, 1.0f), *out = malloc(nq * ldq * sizeof(float));
        float *scalar = malloc(nq * ldq * sizeof(float));
        double *ref = calloc(nq * ldq, sizeof(double));
        float *work = aligned_alloc(64, (cpu_attn_work(nk, hd) * sizeof(float) + 63) & ~(size_t)63);
        assert_true(out && scalar && ref && work);
        float scale = 1.0f / sqrtf((float)hd);
        for (int i = 0; i < nq; i++) {
            int nv = pos0 < 0 || pos0 + i + 1 > nk ? nk : pos0 + i + 1;
            attn_ref(ref + i * ldq + hd, q + i * ldq + hd, k + 1, v + 1, ldk, nv, hd, scale);
            for (size_t e = 0; e < ldq; e++)
                if (e < (size_t)hd || e >= 2 * (size_t)hd) ref[i * ldq + e] = 7.0;
        }
        for (int isa = 0; isa < n_levels(); isa++) {
            for (size_t e = 0; e < nq * ldq; e++) out[e] = 7.0f;
            fns[isa](out + hd, q + hd, k + 1, v + 1, ldq, ldk, nq, nk, pos0, hd, scale, work);
            close_or_fail("attn kernel", isa, out, ref, nq * ldq, 1e-5, 1e-6);
            if (isa == 0) memcpy(scalar, out, nq * ldq * sizeof(float));
            for (size_t e = 0; e < nq * ldq; e++) /* and close to the scalar kernel */
                if (fabs(out[e] - scalar[e]) > 2e-6 * fabs(scalar[e]) + 2e-7)
                    fail_msg("attn kernel isa %d case %zu: [%zu] %.9g vs scalar %.9g", isa, ci, e,
                             out[e], scalar[e]);
        }
        free(q);
        free(k);
        free(v);
        free(out);
        free(scalar);
        free(ref);
        free(work);
    }
}

/* BF16 weights: the AVX512_BF16 GEMM (when this CPU has it) against the f32
 * GEMM of the reference level fed the same bf16-rounded activations, on
 * encoder-sized shapes (k even and odd, partial panels and token tiles) */
static void test_gemm_bf16(void **state)
{
    (void)state;
    if (!llm_cpu_bf16()) {
        printf("no AVX512_BF16 on this CPU: bf16 GEMM not tested\n");
        return;
    }
    static const int shapes[][3] = {/* n, k, m */ {128, 384, 384}, {53, 1536, 384}, {12, 77, 33}};
    uint64_t seed = 31;
    for (size_t si = 0; si < 3; si++) {
        int n = shapes[si][0], k = shapes[si][1], m = shapes[si][2];
        uint16_t *wb = malloc((size_t)m * k * sizeof(uint16_t));
        float *wf = randv(&seed, (size_t)m * k, 0.2f), *x = randv(&seed, (size_t)n * k, 3.0f);
        float *bias = randv(&seed, m, 1.0f);
        for (size_t i = 0; i < (size_t)m * k; i++) wb[i] = f32_to_bf16(wf[i]);
        float *y[2];
        for (int lvl = 0; lvl < 2; lvl++) {
            llm_backend *be = make_be(lvl ? CPU_ISA_AVX512 : CPU_ISA_REF, 2);
            llm_weight w = {.type = LLM_T_BF16, .rows = m, .cols = k, .data = wb, .name = "wb"};
            doc_err err = {0};
            assert_int_equal(be->i->weight_prepare(be, &w, &err), DOC_OK);
            y[lvl] = malloc((size_t)n * m * sizeof(float));
            be->i->matmul(be, y[lvl], x, &w, bias, n);
            assert_int_equal(be->i->sync(be, &err), DOC_OK);
            be->i->weight_release(be, &w);
            llm_backend_free(&be);
        }
        for (int t = 0; t < n; t++)
            for (int r = 0; r < m; r++) {
                double mass = fabs(bias[r]);
                for (int kk = 0; kk < k; kk++)
                    mass += fabs(bf16_to_f32(f32_to_bf16(x[t * k + kk])) * bf16_to_f32(wb[r * k + kk]));
                double a = y[0][t * m + r], b = y[1][t * m + r];
                if (fabs(a - b) > 2e-6 * mass + 1e-7)
                    fail_msg("bf16 gemm n %d k %d m %d: y[%d][%d] = %.9g, ref level %.9g", n, k, m, t,
                             r, b, a);
            }
        free(y[0]);
        free(y[1]);
        free(wb);
        free(wf);
        free(x);
        free(bias);
    }
}

/* ---- misc ---------------------------------------------------------------- */

static void test_memory_and_errors(void **state)
{
    (void)state;
    llm_backend *be = NULL;
    doc_err err = {0};
    assert_int_equal(llm_cpu_backend_new(2, &be, &err), DOC_OK);
    assert_non_null(llm_cpu_isa());
    float *p = be->i->alloc(be, 1000);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++) assert_true(p[i] == 0.0f);
    be->i->release(be, p);
    be->i->release(be, NULL);
    uint8_t junk[64] = {0};
    llm_weight w = {.type = LLM_T_Q8_K, .rows = 1, .cols = 256, .data = junk, .name = "blk.0.bad"};
    assert_int_equal(be->i->weight_prepare(be, &w, &err), DOC_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "blk.0.bad"));
    w.type = LLM_T_Q4_0;
    w.cols = 100; /* not a multiple of 32 */
    assert_int_equal(be->i->weight_prepare(be, &w, &err), DOC_EFORMAT);
    /* out-of-range id: zeros and a deferred error from sync */
    float row[32] = {0}, out[32];
    w = (llm_weight){.type = LLM_T_F32, .rows = 1, .cols = 32, .data = row, .name = "e"};
    int32_t id = 5;
    be->i->get_rows(be, out, &w, &id, 1);
    assert_int_equal(be->i->sync(be, &err), DOC_EINVAL);
    assert_int_equal(be->i->sync(be, &err), DOC_OK);
    llm_backend_free(&be);
    assert_null(be);
}

/* ---- performance report (not a pass/fail test) ------------------------- */

static double bench_mm(llm_backend *be, int type, int n, int64_t k, int64_t m, int reps,
                       double *gbs)
{
    uint64_t seed = 5;
    size_t rb = llm_row_bytes(type, k);
    float *wf = randv(&seed, (size_t)k * 64, 1.0f);
    char *wq = malloc(rb * m);
    for (int64_t r = 0; r < m; r++) llm_quantize_ref(type, wf + (r % 64) * k, wq + r * rb, k);
    float *x = randv(&seed, (size_t)n * k, 1.0f), *y = be->i->alloc(be, (size_t)n * m);
    llm_weight w = {.type = type, .rows = m, .cols = k, .data = wq, .name = "b"};
    doc_err err = {0};
    assert_int_equal(be->i->weight_prepare(be, &w, &err), DOC_OK);
    be->i->matmul(be, y, x, &w, NULL, n);
    double t0 = time_now();
    for (int i = 0; i < reps; i++) be->i->matmul(be, y, x, &w, NULL, n);
    double dt = (time_now() - t0) / reps;
    *gbs = (double)rb * m / dt / 1e9;
    be->i->weight_release(be, &w);
    be->i->release(be, y);
    free(wf);
    free(wq);
    free(x);
    return 2.0 * n * k * m / dt / 1e9;
}

static void test_perf(void **state)
{
    (void)state;
    for (int nth = 1; nth <= 2; nth++) {
        llm_backend *be = make_be(cpu_isa_detect(), nth);
        double gbs, gf;
        static const char *const names[] = {"ref", "avx2", "avx512"};
        printf("perf (isa %s, %d thread%s; numbers from a shared machine are noisy):\n",
               names[cpu_backend_isa(be)], nth, nth > 1 ? "s" : "");
        bench_mm(be, LLM_T_Q4_1, 1, 576, 1536, 400, &gbs);
        printf("  matvec q4_1 576->1536:   %6.1f GB/s of weights\n", gbs);
        bench_mm(be, LLM_T_Q4_1, 1, 1536, 576, 400, &gbs);
        printf("  matvec q4_1 1536->576:   %6.1f GB/s of weights\n", gbs);
        bench_mm(be, LLM_T_Q8_0, 1, 576, 49152, 10, &gbs);
        printf("  matvec q8_0 576->49152:  %6.1f GB/s of weights\n", gbs);
        bench_mm(be, LLM_T_Q4_1, 1, 576, 49152, 10, &gbs);
        printf("  matvec q4_1 576->49152:  %6.1f GB/s of weights\n", gbs);
        gf = bench_mm(be, LLM_T_Q4_1, 64, 576, 1536, 10, &gbs);
        printf("  prefill q4_1 n=64 576->1536: %6.1f GFLOP/s\n", gf);
        gf = bench_mm(be, LLM_T_F32, 8192, 384, 1536, 1, &gbs);
        printf("  gemm f32 (8192x384)(1536x384)^T: %6.1f GFLOP/s\n", gf);
        llm_backend_free(&be);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),      cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_norms),       cmocka_unit_test(test_rope),
        cmocka_unit_test(test_elementwise), cmocka_unit_test(test_attn_causal),
        cmocka_unit_test(test_attn_bidir),  cmocka_unit_test(test_attn_kernels),
        cmocka_unit_test(test_attn_decode),
        cmocka_unit_test(test_gemm_bf16),   cmocka_unit_test(test_memory_and_errors),
        cmocka_unit_test(test_perf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
