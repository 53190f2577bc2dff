/*
 * attn_avx512.c - blocked AVX-512 attention kernel (cpu_attn_fn, internal.h).
 *
 * Per call (one head of one sequence) K is transposed once into kt (hd, nkp),
 * zero past nk.  Queries then go in blocks of CPU_ATTN_QB = 8:
 *   scores  32 keys at a time in 8 x 2 zmm accumulators, each step one
 *           broadcast of q[i][e] and two loads of kt row e: no horizontal sums;
 *   softmax per score row over its visible keys, max-subtracted, the rest of
 *           the row set to 0 so P.V can run over the block's widest range;
 *   P.V     32 dims of hd at a time in 8 x 2 zmm while value rows stream by,
 *           scaled by 1 / sum on the way out.
 * Rows past nq in the last block repeat the last query and are not stored.
 */
#include "llm/cpu/internal.h"

#include <immintrin.h>
#include <math.h>

#include "llm/cpu/simd_avx512.h"

#define QB CPU_ATTN_QB


static inline __mmask16 tail16(int n) { return (__mmask16)(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1); }

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

void cpu_attn_avx512(float *out, const float *q, const float *k, const float *v, size_t ldq,
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
    const __m512 vscale = _mm512_set1_ps(scale);

    for (int i0 = 0; i0 < nq; i0 += QB) {
        int nb = nq - i0 < QB ? nq - i0 : QB;
        int kmax = pos0 < 0 || pos0 + i0 + nb > nk ? nk : pos0 + i0 + nb;
        int kmaxp = (kmax + 31) & ~31;
        const float *qp[QB];
        const float *pp[QB];
        float inv[QB];
        for (int i = 0; i < QB; i++) {
            int r = i < nb ? i : nb - 1;
            qp[i] = q + (size_t)(i0 + r) * ldq;
            pp[i] = s + (size_t)r * nkp;
        }

        /* scores: s[i][j] = scale * q_i . k_j */
        for (int j0 = 0; j0 < kmaxp; j0 += 32) {
            __m512 c[QB][2];
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
            const float *kp = kt + j0;
            for (int e = 0; e < hd; e++, kp += nkp) {
                __m512 b0 = _mm512_load_ps(kp), b1 = _mm512_load_ps(kp + 16);
#pragma GCC unroll 8
                for (int i = 0; i < QB; i++) {
                    __m512 a = _mm512_set1_ps(qp[i][e]);
                    c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
                    c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
                }
            }
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) {
                _mm512_store_ps(s + (size_t)i * nkp + j0, _mm512_mul_ps(c[i][0], vscale));
                _mm512_store_ps(s + (size_t)i * nkp + j0 + 16, _mm512_mul_ps(c[i][1], vscale));
            }
        }

        /* softmax over each row's visible keys; zeros up to kmaxp */
        for (int i = 0; i < nb; i++) {
            float *si = s + (size_t)i * nkp;
            int nv = pos0 < 0 || pos0 + i0 + i + 1 > nk ? nk : pos0 + i0 + i + 1;
            __m512 vm = _mm512_set1_ps(-INFINITY);
            for (int j = 0; j < nv; j += 16)
                vm = _mm512_mask_max_ps(vm, tail16(nv - j), vm, _mm512_load_ps(si + j));
            __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(vm)), acc = _mm512_setzero_ps();
            for (int j = 0; j < kmaxp; j += 16) {
                __m512 e = _mm512_maskz_mov_ps(tail16(nv - j),
                                               exp16(_mm512_sub_ps(_mm512_load_ps(si + j), vmx)));
                _mm512_store_ps(si + j, e);
                acc = _mm512_add_ps(acc, e);
            }
            inv[i] = 1.0f / _mm512_reduce_add_ps(acc);
        }

        /* out_i = sum_j p[i][j] v_j / sum_i */
        for (int e0 = 0; e0 < hd; e0 += 32) {
            __mmask16 m0 = tail16(hd - e0), m1 = tail16(hd - e0 - 16);
            __m512 c[QB][2];
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
            const float *vp = v + e0;
            for (int j = 0; j < kmax; j++, vp += ldk) {
                __m512 b0 = _mm512_maskz_loadu_ps(m0, vp), b1 = _mm512_maskz_loadu_ps(m1, vp + 16);
#pragma GCC unroll 8
                for (int i = 0; i < QB; i++) {
                    __m512 a = _mm512_set1_ps(pp[i][j]);
                    c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
                    c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
                }
            }
#pragma GCC unroll 8
            for (int i = 0; i < QB; i++) { /* fully unrolled: c stays in registers */
                if (i < nb) {
                    float *o = out + (size_t)(i0 + i) * ldq + e0;
                    __m512 vi = _mm512_set1_ps(inv[i]);
                    _mm512_mask_storeu_ps(o, m0, _mm512_mul_ps(c[i][0], vi));
                    _mm512_mask_storeu_ps(o + 16, m1, _mm512_mul_ps(c[i][1], vi));
                }
            }
        }
    }
}
