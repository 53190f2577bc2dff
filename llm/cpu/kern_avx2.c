/*
 * kern_avx2.c - AVX2/FMA/F16C kernels of the CPU backend.
 *
 * Compiled with only -mavx2 -mfma -mf16c; cpu.c calls into the table only
 * when cpuid reports those.  Integer dots use maddubs (u8 x s8 -> s16 pairs)
 * then madd (-> s32); the nibble and 6-bit values keep the s16 pair sums far
 * from saturation.  The Q4_0/Q4_1/Q8_0 decode path dots four weight rows per
 * pass so each activation block is loaded once for four rows.
 *
 * kern_avx512.c includes this file (with CPU_KERN_AVX512 defined) to reuse
 * these kernels compiled for AVX-512 and replaces the ones it does better;
 * the table at the end is then left out.
 */
#include "llm/cpu/internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "llm/cpu/simd_avx2.h"

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum8i(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* ---- activation quantizers (same rounding as ref.c) ---------------------- */

/* 32 floats -> 32 int8 at scale id; returns the integer sum */
static inline int quant32(const float *x, float id, int8_t *out)
{
    __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
    int sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, b);
    return sum;
}

static inline float amax_n(const float *x, int n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    return hmax8(m);
}

static void quant_q8_1(const float *x, block_q8_1 *q, int64_t k)
{
    for (int64_t b = 0; b < k / QK8_1; b++, x += QK8_1) {
        float amax = amax_n(x, QK8_1), id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = quant32(x, id, q[b].qs);
        q8_1_scales(&q[b], amax / 127.0f, sum);
    }
}

static void quant_q8_K(const float *x, block_q8_K *q, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++, x += QK_K) {
        float d = amax_n(x, QK_K) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK_K; j += 32) quant32(x + j, id, q[b].qs + j);
        for (int g = 0; g < QK_K / 16; g++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(q[b].qs + 16 * g));
            __m256i w = _mm256_cvtepi8_epi16(v);
            __m256i s = _mm256_madd_epi16(w, _mm256_set1_epi16(1));
            q[b].bsums[g] = (int16_t)hsum8i(s);
        }
        q[b].d = d;
    }
}

/* ---- Q4_0 / Q4_1 / Q8_0 against Q8_1 activations ------------------------ */

/* 16 packed nibble bytes -> 32 values 0..15 in element order */
static inline __m256i unpack_nib(const uint8_t *qs)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0xF));
}

/* sum over 32 of u8 a * s8 b as eight s32 lanes */
static inline __m256i dot_us(__m256i a, __m256i b)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}

static inline __m256i dot_ss(__m256i a, __m256i b)
{
    return dot_us(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

#ifndef DOT_US
#define DOT_US dot_us
#define DOT_SS dot_ss
#endif

/* R rows (R <= 4) of Q4_0/Q4_1/Q8_0 against one activation row; kind selects the type */
enum { K_Q4_0, K_Q4_1, K_Q8_0 };

static inline void dot_rows_q(int kind, int64_t nb, const char *w, size_t wbs, const block_q8_1 *x,
                              float *s, int R)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    float corr[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].qs);
        float dx = x[b].d, sx = x[b].s;
        for (int r = 0; r < R; r++) {
            const char *row = w + r * wbs;
            __m256i p;
            float dw;
            if (kind == K_Q4_0) {
                const block_q4_0 *wb = (const block_q4_0 *)row + b;
                dw = h2f(wb->d);
                p = DOT_US(unpack_nib(wb->qs), xv);
                corr[r] -= 8.0f * dw * sx;
            } else if (kind == K_Q4_1) {
                const block_q4_1 *wb = (const block_q4_1 *)row + b;
                dw = h2f(wb->d);
                p = DOT_US(unpack_nib(wb->qs), xv);
                corr[r] += h2f(wb->m) * sx;
            } else {
                const block_q8_0 *wb = (const block_q8_0 *)row + b;
                dw = h2f(wb->d);
                p = DOT_SS(_mm256_loadu_si256((const __m256i *)wb->qs), xv);
            }
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) s[r] = hsum8(acc[r]) + corr[r];
}

#define Q_TILE(name, kind, wblock)                                                          \
    static void name(int64_t k, float *s, size_t lds, const void *w, size_t wbs,            \
                     const void *x, size_t xbs, int nw, int nx)                             \
    {                                                                                       \
        int64_t nb = k / 32;                                                                \
        for (int j = 0; j < nx; j++) {                                                      \
            const block_q8_1 *xr = (const block_q8_1 *)((const char *)x + j * xbs);         \
            float *sr = s + (size_t)j * lds;                                                \
            int i = 0;                                                                      \
            for (; i + 4 <= nw; i += 4)                                                     \
                dot_rows_q(kind, nb, (const char *)w + i * wbs, wbs, xr, sr + i, 4);         \
            for (; i < nw; i++) dot_rows_q(kind, nb, (const char *)w + i * wbs, wbs, xr, sr + i, 1); \
        }                                                                                   \
    }

Q_TILE(dot_q4_0, K_Q4_0, block_q4_0)
Q_TILE(dot_q4_1, K_Q4_1, block_q4_1)
Q_TILE(dot_q8_0, K_Q8_0, block_q8_0)

/* ---- K-quants against Q8_K activations ---------------------------------- */

static inline void scales_mins(const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* sum of u8 a * s8 b times a per-lane-pair s16 scale, as s32 lanes */
static inline __m256i dot_scaled(__m256i a, __m256i b, __m256i sc)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), sc);
}

static float dot1_q4_K(int64_t k, const block_q4_K *w, const block_q8_K *x)
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t b = 0; b < k / QK_K; b++) {
        uint8_t sc[8], mn[8];
        scales_mins(w[b].scales, sc, mn);
        __m256i isum = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * i));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * i));
            __m256i x2 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * i + 32));
            isum = _mm256_add_epi32(isum, dot_scaled(_mm256_and_si256(raw, m4), x1,
                                                     _mm256_set1_epi16(sc[2 * i])));
            isum = _mm256_add_epi32(isum, dot_scaled(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4),
                                                     x2, _mm256_set1_epi16(sc[2 * i + 1])));
        }
        int msum = 0;
        for (int j = 0; j < 8; j++) msum += mn[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(x[b].d * h2f(w[b].d)), acc);
        corr += x[b].d * h2f(w[b].dmin) * (float)msum;
    }
    return hsum8(acc) - corr;
}

static float dot1_q5_K(int64_t k, const block_q5_K *w, const block_q8_K *x)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), b4 = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t b = 0; b < k / QK_K; b++) {
        uint8_t sc[8], mn[8];
        scales_mins(w[b].scales, sc, mn);
        __m256i qh = _mm256_loadu_si256((const __m256i *)w[b].qh);
        __m256i isum = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * i));
            __m256i u1 = _mm256_set1_epi8((char)(1 << (2 * i))), u2 = _mm256_set1_epi8((char)(2 << (2 * i)));
            __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, u1), u1), b4);
            __m256i h2 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, u2), u2), b4);
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(raw, m4), h1);
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), h2);
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * i));
            __m256i x2 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * i + 32));
            isum = _mm256_add_epi32(isum, dot_scaled(q1, x1, _mm256_set1_epi16(sc[2 * i])));
            isum = _mm256_add_epi32(isum, dot_scaled(q2, x2, _mm256_set1_epi16(sc[2 * i + 1])));
        }
        int msum = 0;
        for (int j = 0; j < 8; j++) msum += mn[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(x[b].d * h2f(w[b].d)), acc);
        corr += x[b].d * h2f(w[b].dmin) * (float)msum;
    }
    return hsum8(acc) - corr;
}

static float dot1_q6_K(int64_t k, const block_q6_K *w, const block_q8_K *x)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < k / QK_K; b++) {
        __m256i isum = _mm256_setzero_si256();
        const int8_t *sc = w[b].scales;
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
            for (int i = 0; i < 4; i++) {
                const int8_t *s2 = sc + 8 * h + 2 * i;
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(s2[1]), _mm_set1_epi16(s2[0]));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x[b].qs + 128 * h + 32 * i));
                isum = _mm256_add_epi32(isum, dot_scaled(q[i], xv, scv));
            }
        }
        int corr = 0;
        for (int g = 0; g < 16; g++) corr += sc[g] * x[b].bsums[g];
        __m256 fs = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, _mm256_setr_epi32(32 * corr, 0, 0, 0, 0, 0, 0, 0)));
        acc = _mm256_fmadd_ps(fs, _mm256_set1_ps(x[b].d * h2f(w[b].d)), acc);
    }
    return hsum8(acc);
}

/* ---- float weights, dot form (few tokens) -------------------------------- */

static inline __m256 load_w8(int type, const void *w, int64_t i)
{
    if (type == LLM_T_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (type == LLM_T_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float load_w1(int type, const void *w, int64_t i)
{
    if (type == LLM_T_F32) return ((const float *)w)[i];
    uint16_t h = ((const uint16_t *)w)[i];
    return type == LLM_T_F16 ? h2f(h) : bf16_to_f32(h);
}

static inline float dot1_float(int type, int64_t k, const void *w, const float *x)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        a0 = _mm256_fmadd_ps(load_w8(type, w, i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_w8(type, w, i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(load_w8(type, w, i), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < k; i++) s += load_w1(type, w, i) * x[i];
    return s;
}

static float dot1_f32(int64_t k, const void *w, const void *x) { return dot1_float(LLM_T_F32, k, w, x); }
static float dot1_f16(int64_t k, const void *w, const void *x) { return dot1_float(LLM_T_F16, k, w, x); }
static float dot1_bf16(int64_t k, const void *w, const void *x) { return dot1_float(LLM_T_BF16, k, w, x); }


CPU_ONE_TILE(dot_q4_K, dot1_q4_K, block_q4_K, block_q8_K)
CPU_ONE_TILE(dot_q5_K, dot1_q5_K, block_q5_K, block_q8_K)
CPU_ONE_TILE(dot_q6_K, dot1_q6_K, block_q6_K, block_q8_K)
CPU_ONE_TILE(dot_f32, dot1_f32, void, void)
CPU_ONE_TILE(dot_f16, dot1_f16, void, void)
CPU_ONE_TILE(dot_bf16, dot1_bf16, void, void)

/* ---- float GEMM micro-kernel: 6 tokens x 16 columns, two halves ---------- */

#define MR2 6

static void gemm(int64_t k, const float *panel, const float *x, size_t ldx, float *y, size_t ldy,
                 int nt, int nc, const float *bias)
{
    const float *xp[MR2];
    for (int t = 0; t < MR2; t++) xp[t] = x + (size_t)(t < nt ? t : nt - 1) * ldx;
    float tmp[MR2 * CPU_GEMM_NR];
    for (int h = 0; h < 2; h++) {
        __m256 c[MR2][2];
#pragma GCC unroll 8
        for (int t = 0; t < MR2; t++) c[t][0] = c[t][1] = _mm256_setzero_ps();
        const float *p = panel + 16 * h;
        for (int64_t kk = 0; kk < k; kk++, p += CPU_GEMM_NR) {
            __m256 b0 = _mm256_load_ps(p), b1 = _mm256_load_ps(p + 8);
#pragma GCC unroll 8
            for (int t = 0; t < MR2; t++) {
                __m256 a = _mm256_broadcast_ss(xp[t] + kk);
                c[t][0] = _mm256_fmadd_ps(a, b0, c[t][0]);
                c[t][1] = _mm256_fmadd_ps(a, b1, c[t][1]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < MR2; t++) {
            _mm256_storeu_ps(tmp + t * CPU_GEMM_NR + 16 * h, c[t][0]);
            _mm256_storeu_ps(tmp + t * CPU_GEMM_NR + 16 * h + 8, c[t][1]);
        }
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nc; r++) y[t * ldy + r] = tmp[t * CPU_GEMM_NR + r] + (bias ? bias[r] : 0.0f);
}

/* pack: transpose 8x8 blocks where the shape allows, scalar otherwise */
static void pack(int type, const void *w, size_t wbs, int64_t k, int nrows, float *panel)
{
    if (nrows < CPU_GEMM_NR) memset(panel, 0, (size_t)k * CPU_GEMM_NR * sizeof(float));
    int64_t k8 = k / 8 * 8;
    for (int r = 0; r < nrows; r++) {
        const char *row = (const char *)w + (size_t)r * wbs;
        for (int64_t kk = 0; kk < k8; kk += 8) {
            float v[8];
            _mm256_storeu_ps(v, load_w8(type, row, kk));
            for (int e = 0; e < 8; e++) panel[(kk + e) * CPU_GEMM_NR + r] = v[e];
        }
        for (int64_t kk = k8; kk < k; kk++) panel[kk * CPU_GEMM_NR + r] = load_w1(type, row, kk);
    }
}

/* ---- f32 helpers --------------------------------------------------------- */

static float vdot(const float *a, const float *b, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float a, const float *x, float *y, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void scale(float a, float *y, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}


static float exp_sum(const float *x, float *y, float mx, int64_t n)
{
    __m256 acc = _mm256_setzero_ps(), vm = _mm256_set1_ps(mx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(y + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum8(acc);
    for (; i < n; i++) s += y[i] = expf(x[i] - mx);
    return s;
}

static void swiglu(float *out, const float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(zero, gv));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)),
                                                _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* gelu(x) = x (1 - erfc(z) / 2) for x >= 0 and x erfc(|z|) / 2 below, z = x / sqrt 2,
 * with the Chebyshev-fitted erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2) of
 * Numerical Recipes (fractional error < 1.2e-7 for all z >= 0). */
static inline __m256 gelu8(__m256 x)
{
    static const float c[10] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f, -0.18628806f,
                                0.27886807f, -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    __m256 z = _mm256_andnot_ps(sign, _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(half, z, one));
    __m256 p = _mm256_set1_ps(c[9]);
    for (int i = 8; i >= 0; i--) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(c[i]));
    __m256 zz = _mm256_mul_ps(z, z);
    __m256 zlo = _mm256_fmsub_ps(z, z, zz); /* z^2 = zz + zlo exactly */
    __m256 e = _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_setzero_ps(), zz)),
                             exp8(_mm256_sub_ps(p, zlo)));
    __m256 hc = _mm256_mul_ps(half, _mm256_mul_ps(t, e)); /* erfc(|z|) / 2 */
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_mul_ps(x, _mm256_blendv_ps(_mm256_sub_ps(one, hc), hc, neg));
}

static void gelu(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = cpu_gelu1(x[i]);
}

#ifndef CPU_KERN_AVX512
const cpu_kern cpu_kern_avx2 = {
    .name = "avx2",
    .dot = {
        [LLM_T_F32] = dot_f32, [LLM_T_F16] = dot_f16, [LLM_T_BF16] = dot_bf16,
        [LLM_T_Q4_0] = dot_q4_0, [LLM_T_Q4_1] = dot_q4_1, [LLM_T_Q8_0] = dot_q8_0,
        [LLM_T_Q4_K] = dot_q4_K, [LLM_T_Q5_K] = dot_q5_K, [LLM_T_Q6_K] = dot_q6_K,
    },
    .quant_q8_1 = quant_q8_1,
    .quant_q8_K = quant_q8_K,
    .gemm_mr = MR2,
    .pack = pack,
    .gemm = gemm,
    .dot_f32 = vdot,
    .axpy_f32 = axpy,
    .scale_f32 = scale,
    .exp_sum = exp_sum,
    .gelu = gelu,
    .swiglu = swiglu,
    .attn = cpu_attn_avx2,
};
#endif
