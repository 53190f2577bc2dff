/*
 * ew_avx512.c - AVX-512 elementwise and row kernels of the CPU backend that
 * the encoder spends time in besides its matmuls: exact GELU and layernorm.
 *
 * gelu is kern_avx2.c's gelu8 at 16 lanes (the same Numerical Recipes erfc,
 * relative error < 1.2e-7) with one exp of P - z^2 (fused, so z^2 is not
 * rounded first) where gelu8 splits it in two, and the division by (1 + z/2)
 * done as rcp14 plus one Newton step.  layernorm is the reference's
 * two passes (mean, then variance of x - mean) with 16 partial sums.
 */
#include "llm/cpu/internal.h"

#include <immintrin.h>
#include <math.h>

#include "llm/cpu/simd_avx512.h"


static inline __m512 gelu16(__m512 x)
{
    static const float c[10] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f, -0.18628806f,
                                0.27886807f, -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    __m512 z = _mm512_abs_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
    __m512 den = _mm512_fmadd_ps(half, z, one);
    __m512 t = _mm512_rcp14_ps(den);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(den, t, _mm512_set1_ps(2.0f))); /* Newton: ~2^-28 */
    __m512 p = _mm512_set1_ps(c[9]);
    for (int i = 8; i >= 0; i--) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c[i]));
    /* one exp of P - z^2: rounding the sum costs |z^2| * 6e-8 relative, inside
     * the z^2 * 1.2e-7 that rounding z = x / sqrt 2 already costs the tail */
    __m512 e = exp16(_mm512_fnmadd_ps(z, z, p));
    __m512 hc = _mm512_mul_ps(half, _mm512_mul_ps(t, e)); /* erfc(|z|) / 2 */
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mul_ps(x, _mm512_mask_blend_ps(neg, _mm512_sub_ps(one, hc), hc));
}

void cpu_gelu_avx512(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

void cpu_layernorm_avx512(float *out, const float *x, const float *w, const float *b, int d,
                          float eps)
{
    __m512 acc = _mm512_setzero_ps();
    for (int e = 0; e < d; e += 16) {
        __mmask16 m = (__mmask16)(d - e >= 16 ? 0xFFFF : (1u << (d - e)) - 1);
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, x + e));
    }
    float mean = _mm512_reduce_add_ps(acc) / (float)d;
    __m512 vm = _mm512_set1_ps(mean);
    acc = _mm512_setzero_ps();
    for (int e = 0; e < d; e += 16) {
        __mmask16 m = (__mmask16)(d - e >= 16 ? 0xFFFF : (1u << (d - e)) - 1);
        __m512 c = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + e), vm);
        acc = _mm512_fmadd_ps(c, c, acc);
    }
    __m512 s = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(acc) / (float)d + eps));
    for (int e = 0; e < d; e += 16) {
        __mmask16 m = (__mmask16)(d - e >= 16 ? 0xFFFF : (1u << (d - e)) - 1);
        __m512 c = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + e), vm), s);
        _mm512_mask_storeu_ps(out + e, m,
                              _mm512_fmadd_ps(c, _mm512_maskz_loadu_ps(m, w + e),
                                              _mm512_maskz_loadu_ps(m, b + e)));
    }
}
