/*
 * gemm_bf16_avx512.c - BF16 GEMM micro-kernel (AVX512_BF16, vdpbf16ps).
 *
 * For BF16 weights on CPUs with AVX512_BF16 (checked at run time through
 * cpuid; only the functions here carry the target attribute, so the rest of
 * the AVX-512 level runs on CPUs without it).  One vdpbf16ps multiplies 32
 * bf16 pairs and adds each pair's sum into 16 f32 lanes: twice the work of an
 * f32 FMA per instruction.  Products of two bf16 values are exact in f32, so
 * the result differs from the f32 kernels fed the same bf16-rounded
 * activations only in the order of the f32 additions.
 *
 * Layouts (internal.h, cpu_bf16_panel_*): a panel of CPU_GEMM_NR = 32 output
 * columns holds, for each pair of inputs (2q, 2q+1), 64 bf16: column r's two
 * weights at 2r, 2r+1; so columns 0..15 of a pair are one zmm, 16..31 the
 * next.  Activation rows are bf16 with an even length kp (zero-padded).
 */
#include "llm/cpu/internal.h"

#include <immintrin.h>
#include <string.h>

#define MRB 12 /* tokens per call: 12 x 2 zmm accumulators */

__attribute__((target("avx512f,avx512bf16")))
static void gemm_bf16(int64_t kp, const uint16_t *panel, const uint16_t *x, size_t ldx, float *y,
                      size_t ldy, int nt, int nc, const float *bias)
{
    const uint16_t *xp[MRB];
    for (int t = 0; t < MRB; t++) xp[t] = x + (size_t)(t < nt ? t : nt - 1) * ldx;
    __m512 c[MRB][2];
#pragma GCC unroll 16
    for (int t = 0; t < MRB; t++) c[t][0] = c[t][1] = _mm512_setzero_ps();
    const uint16_t *p = panel;
    for (int64_t kk = 0; kk < kp; kk += 2, p += 2 * CPU_GEMM_NR) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(p), b1 = (__m512bh)_mm512_load_si512(p + 32);
#pragma GCC unroll 16
        for (int t = 0; t < MRB; t++) {
            int32_t pair;
            memcpy(&pair, xp[t] + kk, sizeof pair);
            __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
            c[t][0] = _mm512_dpbf16_ps(c[t][0], a, b0);
            c[t][1] = _mm512_dpbf16_ps(c[t][1], a, b1);
        }
    }
    /* the same masked epilogue as kern_avx512.c's f32 gemm, written out in
     * both: handing the register tile to a shared helper takes its address and
     * GCC then keeps it in memory (measured 13% slower encoder) */
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xFFFF : (1u << nc) - 1);
    __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (1u << (nc - 16)) - 1);
    if (bias) {
        b0 = _mm512_maskz_loadu_ps(m0, bias);
        b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
#pragma GCC unroll 16
    for (int t = 0; t < MRB; t++) {
        if (t < nt) {
            _mm512_mask_storeu_ps(y + t * ldy, m0, _mm512_add_ps(c[t][0], b0));
            _mm512_mask_storeu_ps(y + t * ldy + 16, m1, _mm512_add_ps(c[t][1], b1));
        }
    }
}

/* f32 -> bf16, nearest even, by vcvtneps2bf16.  It reads f32 denormals as 0
 * where core's f32_to_bf16 keeps them, but vdpbf16ps reads bf16 denormals as
 * 0 too, so the GEMM's products are the same either way. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void round_bf16(const float *x, uint16_t *out, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512(out + i, (__m512i)h);
    }
    for (; i < n; i += 16) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
        _mm256_mask_storeu_epi16(out + i, m, (__m256i)h);
    }
}

const cpu_gemm_bf16_i cpu_gemm_bf16_avx512 = {MRB, round_bf16, gemm_bf16};
