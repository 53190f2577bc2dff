/*
 * kern_avx512.c - AVX-512 (F/BW/VL/DQ + VNNI) kernels of the CPU backend.
 *
 * Compiled with only the AVX-512 flags.  It includes kern_avx2.c so the
 * 256-bit kernels are rebuilt here with VNNI: the u8 x s8 block dots become
 * one vpdpbusd instead of maddubs + madd (no s16 intermediate).  What wins
 * from 512-bit registers is replaced: the float GEMM micro-kernel (12 tokens
 * x 32 columns, 24 zmm accumulators), the f32 vector helpers and the
 * activation quantizers.
 *
 * Q4_0 / Q4_1 / Q8_0 use the row-group layout (internal.h, repacked at load):
 * one zmm lane per row of a 16-row group, so a block of 16 rows is 8 vpdpbusd
 * against broadcast activation dwords, one vector convert and FMA against the
 * 16 block scales, and no horizontal sums; Q8_0 is stored +128 so it needs no
 * sign trick (the 128 * sum(x) it adds is taken off per block).
 */
#define CPU_KERN_AVX512 1

#include <immintrin.h>

static inline __m256i dot_us_vnni(__m256i a, __m256i b)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
}

static inline __m256i dot_ss_vnni(__m256i a, __m256i b)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

#define DOT_US dot_us_vnni
#define DOT_SS dot_ss_vnni

/* the 256-bit kernels this file replaces are left unused */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "llm/cpu/kern_avx2.c"

/* ---- row-group kernels (weights repacked at load, see internal.h) -------- */

#define RG_CH 64 /* blocks per chunk of the Q8_0 activation sums */
#define RG_NT 4  /* tokens per pass over a group's weights */

/* 128 * sum of each activation block's quants, for blocks [b0, b0 + nc) */
static void rg_xsums(const block_q8_1 *x, int64_t b0, int64_t nc, int32_t *out)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nc; b++) {
        __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x[b0 + b].qs), flip);
        __m256i s = _mm256_sad_epu8(v, _mm256_setzero_si256()); /* sum of (q + 128) in 4 lanes */
        __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi64(h, _mm_unpackhi_epi64(h, h));
        out[b] = 128 * (_mm_cvtsi128_si32(h) - 32 * 128);
    }
}

/*
 * One group (16 rows) against NT tokens over blocks [b0, b0 + nc): acc[t]
 * lane i = row i's dot with token t.  Per block: the 32 quants of 16 rows are
 * 8 zmm of u8 (nibbles unpacked once for all NT tokens), each dotted with one
 * broadcast activation dword; the block's integer sums are scaled by d_w d_x
 * as one vector.  Same integer sums and scale products as dot_rows_q.
 */
static inline __attribute__((always_inline)) void
rg_tile(int kind, int NT, const uint8_t *g, int64_t nb, int64_t b0, int64_t nc,
        const block_q8_1 *const *xr, const int32_t (*xs)[RG_CH], __m512 *acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    size_t qb = kind == K_Q8_0 ? 512 : 256;
    const uint16_t *dh = (const uint16_t *)(g + nb * qb), *mh = dh + nb * CPU_RG;
    __m512 acc2[RG_NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) acc[t] = acc2[t] = _mm512_setzero_ps();
    for (int64_t b = b0; b < b0 + nc; b++) {
        const uint8_t *q = g + b * qb;
        __m512i w[8];
        if (kind == K_Q8_0) {
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++) w[p] = _mm512_load_si512((const void *)(q + 64 * p));
        } else {
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                __m512i v = _mm512_load_si512((const void *)(q + 64 * p));
                w[p] = _mm512_and_si512(v, m4);
                w[p + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dh + CPU_RG * b)));
        __m512 mn = kind == K_Q4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(mh + CPU_RG * b)))
                                   : _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const block_q8_1 *xb = xr[t] + b;
            const int32_t *xq = (const int32_t *)(const void *)xb->qs;
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], _mm512_set1_epi32(xq[0]));
            __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], _mm512_set1_epi32(xq[1]));
            __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[2], _mm512_set1_epi32(xq[2]));
            __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[3], _mm512_set1_epi32(xq[3]));
            s0 = _mm512_dpbusd_epi32(s0, w[4], _mm512_set1_epi32(xq[4]));
            s1 = _mm512_dpbusd_epi32(s1, w[5], _mm512_set1_epi32(xq[5]));
            s2 = _mm512_dpbusd_epi32(s2, w[6], _mm512_set1_epi32(xq[6]));
            s3 = _mm512_dpbusd_epi32(s3, w[7], _mm512_set1_epi32(xq[7]));
            __m512i is = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
            if (kind == K_Q8_0) is = _mm512_sub_epi32(is, _mm512_set1_epi32(xs[t][b - b0]));
            __m512 sc = _mm512_mul_ps(d, _mm512_set1_ps(xb->d));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), sc, acc[t]);
            if (kind == K_Q4_1) acc2[t] = _mm512_fmadd_ps(mn, _mm512_set1_ps(xb->s), acc2[t]);
            if (kind == K_Q4_0) acc2[t] = _mm512_fmadd_ps(d, _mm512_set1_ps(-8.0f * xb->s), acc2[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) acc[t] = _mm512_add_ps(acc[t], acc2[t]);
}

static inline __attribute__((always_inline)) void
rg_dot(int kind, int64_t k, float *s, size_t lds, const void *w, size_t gbs, const void *x,
       size_t xbs, int nw, int nx)
{
    int64_t nb = k / 32;
    int ng = (nw + CPU_RG - 1) / CPU_RG;
    for (int j0 = 0; j0 < nx; j0 += RG_NT) {
        int nt = nx - j0 < RG_NT ? nx - j0 : RG_NT;
        const block_q8_1 *xr[RG_NT];
        for (int t = 0; t < RG_NT; t++)
            xr[t] = (const block_q8_1 *)((const char *)x + (size_t)(j0 + (t < nt ? t : nt - 1)) * xbs);
        for (int64_t b0 = 0; b0 < nb; b0 += RG_CH) {
            int64_t nc = nb - b0 < RG_CH ? nb - b0 : RG_CH;
            int32_t xs[RG_NT][RG_CH];
            if (kind == K_Q8_0)
                for (int t = 0; t < nt; t++) rg_xsums(xr[t], b0, nc, xs[t]);
            for (int g = 0; g < ng; g++) {
                const uint8_t *gp = (const uint8_t *)w + (size_t)g * gbs;
                __m512 acc[RG_NT];
                switch (nt) {
                case 1: rg_tile(kind, 1, gp, nb, b0, nc, xr, xs, acc); break;
                case 2: rg_tile(kind, 2, gp, nb, b0, nc, xr, xs, acc); break;
                case 3: rg_tile(kind, 3, gp, nb, b0, nc, xr, xs, acc); break;
                default: rg_tile(kind, 4, gp, nb, b0, nc, xr, xs, acc); break;
                }
                int rows = nw - g * CPU_RG < CPU_RG ? nw - g * CPU_RG : CPU_RG;
                __mmask16 msk = (__mmask16)(rows == CPU_RG ? 0xFFFF : (1u << rows) - 1);
                for (int t = 0; t < nt; t++) {
                    float *o = s + (size_t)(j0 + t) * lds + (size_t)g * CPU_RG;
                    __m512 v = acc[t];
                    if (b0) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(msk, o));
                    _mm512_mask_storeu_ps(o, msk, v);
                }
            }
        }
    }
}

#define RG_FN(name, kind)                                                                     \
    static void name(int64_t k, float *s, size_t lds, const void *w, size_t wbs, const void *x, \
                     size_t xbs, int nw, int nx)                                              \
    {                                                                                         \
        rg_dot(kind, k, s, lds, w, wbs, x, xbs, nw, nx);                                      \
    }

RG_FN(dotg_q4_0, K_Q4_0)
RG_FN(dotg_q4_1, K_Q4_1)
RG_FN(dotg_q8_0, K_Q8_0)

/* ---- float GEMM micro-kernel: 12 tokens x 32 columns ---------------------- */

#define MR5 12

static void gemm512(int64_t k, const float *panel, const float *x, size_t ldx, float *y,
                    size_t ldy, int nt, int nc, const float *bias)
{
    const float *xp[MR5];
    for (int t = 0; t < MR5; t++) xp[t] = x + (size_t)(t < nt ? t : nt - 1) * ldx;
    __m512 c[MR5][2];
#pragma GCC unroll 16
    for (int t = 0; t < MR5; t++) c[t][0] = c[t][1] = _mm512_setzero_ps();
    const float *p = panel;
    for (int64_t kk = 0; kk < k; kk++, p += CPU_GEMM_NR) {
        __m512 b0 = _mm512_load_ps(p), b1 = _mm512_load_ps(p + 16);
#pragma GCC unroll 16
        for (int t = 0; t < MR5; t++) {
            __m512 a = _mm512_set1_ps(xp[t][kk]);
            c[t][0] = _mm512_fmadd_ps(a, b0, c[t][0]);
            c[t][1] = _mm512_fmadd_ps(a, b1, c[t][1]);
        }
    }
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xFFFF : (1u << nc) - 1);
    __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (1u << (nc - 16)) - 1);
    if (bias) {
        b0 = _mm512_maskz_loadu_ps(m0, bias);
        b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
#pragma GCC unroll 16
    for (int t = 0; t < MR5; t++) {
        if (t < nt) {
            _mm512_mask_storeu_ps(y + t * ldy, m0, _mm512_add_ps(c[t][0], b0));
            _mm512_mask_storeu_ps(y + t * ldy + 16, m1, _mm512_add_ps(c[t][1], b1));
        }
    }
}

/* ---- f32 helpers ---------------------------------------------------------- */

static float vdot512(const float *a, const float *b, int64_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), a1);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), a0);
        i += 16;
        if (i < n) {
            m = (__mmask16)((1u << (n - i)) - 1);
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), a1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static void axpy512(float a, const float *x, float *y, int64_t n)
{
    __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        __m512 v = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

/* ---- decode attention: one query ------------------------------------------- */

/* element j of the result = the sum of p[j]'s 16 lanes: pairs within 128-bit
 * lanes (unpack), then quads (shuffle), then across the four 128-bit lanes */
static inline __m512 hsum16x16(const __m512 *p)
{
    __m512 a[8], b[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        a[i] = _mm512_add_ps(_mm512_unpacklo_ps(p[2 * i], p[2 * i + 1]),
                             _mm512_unpackhi_ps(p[2 * i], p[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0xEE));
    __m512 x01 = _mm512_add_ps(_mm512_shuffle_f32x4(b[0], b[1], 0x88), _mm512_shuffle_f32x4(b[0], b[1], 0xDD));
    __m512 x23 = _mm512_add_ps(_mm512_shuffle_f32x4(b[2], b[3], 0x88), _mm512_shuffle_f32x4(b[2], b[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x01, x23, 0x88), _mm512_shuffle_f32x4(x01, x23, 0xDD));
}

/* NV = hd / 16 vectors per row.  Scores 16 keys at a time with the query in
 * registers (one horizontal-sum tree per 16 keys), softmax, then P.V with the
 * output row in registers while value rows stream by. */
static inline __attribute__((always_inline)) void
attn_q1_nv(int NV, float *out, const float *q, const float *k, const float *v, size_t ldk, int nk,
           float scale, float *s)
{
    __m512 qv[8], o[8];
#pragma GCC unroll 8
    for (int e = 0; e < NV; e++) qv[e] = _mm512_loadu_ps(q + 16 * e);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 16 <= nk; j += 16) {
        __m512 p[16];
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            const float *kr = k + (size_t)(j + t) * ldk;
            __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kr));
#pragma GCC unroll 8
            for (int e = 1; e < NV; e++) a = _mm512_fmadd_ps(qv[e], _mm512_loadu_ps(kr + 16 * e), a);
            p[t] = a;
        }
        __m512 sc = _mm512_mul_ps(hsum16x16(p), _mm512_set1_ps(scale));
        _mm512_storeu_ps(s + j, sc);
        vmax = _mm512_max_ps(vmax, sc);
    }
    float mx = _mm512_reduce_max_ps(vmax);
    for (; j < nk; j++) {
        const float *kr = k + (size_t)j * ldk;
        __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kr));
        for (int e = 1; e < NV; e++) a = _mm512_fmadd_ps(qv[e], _mm512_loadu_ps(kr + 16 * e), a);
        s[j] = scale * _mm512_reduce_add_ps(a);
        mx = s[j] > mx ? s[j] : mx;
    }
    float sum = exp_sum(s, s, mx, nk);
#pragma GCC unroll 8
    for (int e = 0; e < NV; e++) o[e] = _mm512_setzero_ps();
    for (j = 0; j < nk; j++) {
        const float *vr = v + (size_t)j * ldk;
        __m512 pj = _mm512_set1_ps(s[j]);
#pragma GCC unroll 8
        for (int e = 0; e < NV; e++) o[e] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr + 16 * e), o[e]);
    }
    __m512 inv = _mm512_set1_ps(1.0f / sum);
#pragma GCC unroll 8
    for (int e = 0; e < NV; e++) _mm512_storeu_ps(out + 16 * e, _mm512_mul_ps(o[e], inv));
}

static int attn_q1_512(float *out, const float *q, const float *k, const float *v, size_t ldk,
                       int nk, int hd, float scale, float *s)
{
    switch (hd) {
    case 64: attn_q1_nv(4, out, q, k, v, ldk, nk, scale, s); return 1;
    case 128: attn_q1_nv(8, out, q, k, v, ldk, nk, scale, s); return 1;
    default: return 0;
    }
}

/* ---- activation quantizers ------------------------------------------------ */

static void quant_q8_1_512(const float *x, block_q8_1 *q, int64_t k)
{
    for (int64_t b = 0; b < k / QK8_1; b++, x += QK8_1) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)q[b].qs, _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q[b].qs + 16), _mm512_cvtsepi32_epi8(i1));
        q8_1_scales(&q[b], amax / 127.0f, _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1)));
    }
}

static void quant_q8_K_512(const float *x, block_q8_K *q, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < QK_K; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        float d = _mm512_reduce_max_ps(m) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        for (int g = 0; g < QK_K / 16; g++) {
            __m512i iv = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), vid));
            _mm_storeu_si128((__m128i *)(q[b].qs + 16 * g), _mm512_cvtsepi32_epi8(iv));
            q[b].bsums[g] = (int16_t)_mm512_reduce_add_epi32(iv);
        }
        q[b].d = d;
    }
}

const cpu_kern cpu_kern_avx512 = {
    .name = "avx512",
    .dot = {
        [LLM_T_F32] = dot_f32, [LLM_T_F16] = dot_f16, [LLM_T_BF16] = dot_bf16,
        [LLM_T_Q4_0] = dot_q4_0, [LLM_T_Q4_1] = dot_q4_1, [LLM_T_Q8_0] = dot_q8_0,
        [LLM_T_Q4_K] = dot_q4_K, [LLM_T_Q5_K] = dot_q5_K, [LLM_T_Q6_K] = dot_q6_K,
    },
    .dotg = {[LLM_T_Q4_0] = dotg_q4_0, [LLM_T_Q4_1] = dotg_q4_1, [LLM_T_Q8_0] = dotg_q8_0},
    .quant_q8_1 = quant_q8_1_512,
    .quant_q8_K = quant_q8_K_512,
    .gemm_mr = MR5,
    .pack = pack,
    .gemm = gemm512,
    .dot_f32 = vdot512,
    .axpy_f32 = axpy512,
    .scale_f32 = scale,
    .exp_sum = exp_sum,
    .gelu = cpu_gelu_avx512,
    .swiglu = swiglu,
    .attn = cpu_attn_avx512,
    .attn_q1 = attn_q1_512,
    .gemm_bf16 = &cpu_gemm_bf16_avx512,
    .layernorm = cpu_layernorm_avx512,
};
