/*
 * attn_avx2.c - blocked AVX2/FMA attention kernel (cpu_attn_fn, internal.h).
 *
 * The AVX-512 kernel's scheme (see attn_avx512.c) at 8 lanes: K transposed
 * once into kt (hd, nkp); per block of CPU_ATTN_QB = 8 queries the scores of
 * 8 keys at a time sit in 8 ymm accumulators (one load of kt row e, eight
 * broadcasts); a max-subtracted softmax per row over its visible keys; then
 * P.V over 8 dims of hd at a time, 8 ymm accumulators, scaled by 1 / sum.
 */
#include "llm/cpu/internal.h"

#include <immintrin.h>
#include <math.h>

#include "llm/cpu/simd_avx2.h"

#define QB CPU_ATTN_QB

/* lanes [0, n) set (n clamped to 0..8) */
static inline __m256i tail8(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

/* kt (hd, nkp) = K (nk, hd) transposed, zero past nk: 8 x 8 blocks through
 * registers (unpack, shuffle, lane permute), scalar for the edges */
static inline void tr8x8(const float *src, size_t lds, float *dst, size_t ldd)
{
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds);
    __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
    __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(s3, s7, 0x31));
}

static void transpose_k(const float *k, size_t ldk, int nk, int hd, float *kt, size_t nkp)
{
    int nk8 = nk & ~7, hd8 = hd & ~7;
    for (int j = 0; j < nk8; j += 8)
        for (int e = 0; e < hd8; e += 8) tr8x8(k + (size_t)j * ldk + e, ldk, kt + (size_t)e * nkp + j, nkp);
    for (int e = 0; e < hd; e++) {
        float *kte = kt + (size_t)e * nkp;
        for (int j = e < hd8 ? nk8 : 0; j < nk; j++) kte[j] = k[(size_t)j * ldk + e];
        for (size_t j = (size_t)nk; j < nkp; j++) kte[j] = 0.0f;
    }
}

void cpu_attn_avx2(float *out, const float *q, const float *k, const float *v, size_t ldq,
                   size_t ldk, int nq, int nk, int pos0, int hd, float scale, float *work)
{
    if (nk <= 0) { /* nothing visible: zero rows, as the reference */
        for (int i = 0; i < nq; i++)
            for (int e = 0; e < hd; e++) out[(size_t)i * ldq + e] = 0.0f;
        return;
    }
    const size_t nkp = cpu_attn_nkp(nk);
    float *kt = work, *s = work + (size_t)hd * nkp; /* (hd, nkp), (QB, nkp) */
    transpose_k(k, ldk, nk, hd, kt, nkp);
    const __m256 vscale = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);

    for (int i0 = 0; i0 < nq; i0 += QB) {
        int nb = nq - i0 < QB ? nq - i0 : QB;
        int kmax = pos0 < 0 || pos0 + i0 + nb > nk ? nk : pos0 + i0 + nb;
        int kmaxp = (kmax + 7) & ~7;
        const float *qp[QB];
        const float *pp[QB];
        float inv[QB];
        for (int i = 0; i < QB; i++) {
            int r = i < nb ? i : nb - 1;
            qp[i] = q + (size_t)(i0 + r) * ldq;
            pp[i] = s + (size_t)r * nkp;
        }

        for (int j0 = 0; j0 < kmaxp; j0 += 8) {
            __m256 c[QB];
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) c[i] = _mm256_setzero_ps();
            const float *kp = kt + j0;
            for (int e = 0; e < hd; e++, kp += nkp) {
                __m256 b = _mm256_load_ps(kp);
#pragma GCC unroll 8
                for (int i = 0; i < QB; i++) c[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(qp[i] + e), b, c[i]);
            }
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) _mm256_store_ps(s + (size_t)i * nkp + j0, _mm256_mul_ps(c[i], vscale));
        }

        for (int i = 0; i < nb; i++) {
            float *si = s + (size_t)i * nkp;
            int nv = pos0 < 0 || pos0 + i0 + i + 1 > nk ? nk : pos0 + i0 + i + 1;
            __m256 vm = ninf;
            for (int j = 0; j < nv; j += 8)
                vm = _mm256_max_ps(vm, _mm256_blendv_ps(ninf, _mm256_load_ps(si + j),
                                                        _mm256_castsi256_ps(tail8(nv - j))));
            __m256 vmx = _mm256_set1_ps(hmax(vm)), acc = _mm256_setzero_ps();
            for (int j = 0; j < kmaxp; j += 8) {
                __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_load_ps(si + j), vmx)),
                                         _mm256_castsi256_ps(tail8(nv - j)));
                _mm256_store_ps(si + j, e);
                acc = _mm256_add_ps(acc, e);
            }
            inv[i] = 1.0f / hsum(acc);
        }

        for (int e0 = 0; e0 < hd; e0 += 8) {
            __m256i m = tail8(hd - e0);
            __m256 c[QB];
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) c[i] = _mm256_setzero_ps();
            const float *vp = v + e0;
            for (int j = 0; j < kmax; j++, vp += ldk) {
                __m256 b = _mm256_maskload_ps(vp, m);
#pragma GCC unroll 8
                for (int i = 0; i < QB; i++) c[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(pp[i] + j), b, c[i]);
            }
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) /* fully unrolled: c stays in registers */
                if (i < nb)
                    _mm256_maskstore_ps(out + (size_t)(i0 + i) * ldq + e0, m,
                                        _mm256_mul_ps(c[i], _mm256_set1_ps(inv[i])));
        }
    }
}
