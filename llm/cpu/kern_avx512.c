/*
 * kern_avx512.c - AVX-512 (F/BW/VL/DQ + VNNI) kernels of the CPU backend.
 *
 * Compiled with only the AVX-512 flags.  It includes kern_avx2.c so the
 * 256-bit kernels are rebuilt here with VNNI: the u8 x s8 block dots become
 * one vpdpbusd instead of maddubs + madd (no s16 intermediate).  What wins
 * from 512-bit registers is replaced: the float GEMM micro-kernel (12 tokens
 * x 32 columns, 24 zmm accumulators), the f32 vector helpers and the
 * activation quantizers.
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
    .quant_q8_1 = quant_q8_1_512,
    .quant_q8_K = quant_q8_K_512,
    .gemm_mr = MR5,
    .pack = pack,
    .gemm = gemm512,
    .dot_f32 = vdot512,
    .axpy_f32 = axpy512,
    .scale_f32 = scale,
    .exp_sum = exp_sum,
    .gelu = gelu,
    .swiglu = swiglu,
};
