/*
 * ref.c - scalar reference kernels of the CPU backend.
 *
 * Obviously-correct loops, compiled without ISA flags.  They are the "ref"
 * level, the fallback for any NULL entry of a faster table, and what the
 * tests compare the SIMD kernels with.  Integer dot products are exact; the
 * block scales are applied in float, in block order.
 */
#include "llm/cpu/internal.h"

#include <math.h>
#include <string.h>

/* ---- activation quantizers --------------------------------------------- */

static void quant_q8_1(const float *x, block_q8_1 *q, int64_t k)
{
    for (int64_t b = 0; b < k / QK8_1; b++, x += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            int v = (int)nearbyintf(x[j] * id);
            q[b].qs[j] = (int8_t)v;
            sum += v;
        }
        q8_1_scales(&q[b], d, sum);
    }
}

static void quant_q8_K(const float *x, block_q8_K *q, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++, x += QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK_K; j++) q[b].qs[j] = (int8_t)(int)nearbyintf(x[j] * id);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += q[b].qs[g * 16 + j];
            q[b].bsums[g] = (int16_t)sum;
        }
        q[b].d = d;
    }
}

/* ---- one-row dot products ---------------------------------------------- */

static float dot1_q4_0(int64_t k, const block_q4_0 *w, const block_q8_1 *x)
{
    float s = 0.0f;
    for (int64_t b = 0; b < k / QK4_0; b++) {
        int isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++)
            isum += (w[b].qs[j] & 0xF) * x[b].qs[j] + (w[b].qs[j] >> 4) * x[b].qs[j + 16];
        s += f16_to_f32(w[b].d) * (x[b].d * (float)isum - 8.0f * x[b].s);
    }
    return s;
}

static float dot1_q4_1(int64_t k, const block_q4_1 *w, const block_q8_1 *x)
{
    float s = 0.0f;
    for (int64_t b = 0; b < k / QK4_1; b++) {
        int isum = 0;
        for (int j = 0; j < QK4_1 / 2; j++)
            isum += (w[b].qs[j] & 0xF) * x[b].qs[j] + (w[b].qs[j] >> 4) * x[b].qs[j + 16];
        s += f16_to_f32(w[b].d) * x[b].d * (float)isum + f16_to_f32(w[b].m) * x[b].s;
    }
    return s;
}

static float dot1_q8_0(int64_t k, const block_q8_0 *w, const block_q8_1 *x)
{
    float s = 0.0f;
    for (int64_t b = 0; b < k / QK8_0; b++) {
        int isum = 0;
        for (int j = 0; j < QK8_0; j++) isum += w[b].qs[j] * x[b].qs[j];
        s += f16_to_f32(w[b].d) * x[b].d * (float)isum;
    }
    return s;
}

/* 6-bit scale and min j (0..7) of a Q4_K / Q5_K block */
static void k_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static float dot1_q4_K(int64_t k, const block_q4_K *w, const block_q8_K *x)
{
    float s = 0.0f;
    for (int64_t b = 0; b < k / QK_K; b++) {
        int isum = 0, msum = 0;
        for (int i = 0; i < 4; i++) {
            const uint8_t *q = w[b].qs + 32 * i;
            const int8_t *a = x[b].qs + 64 * i;
            int s1 = 0, s2 = 0, sc1, m1, sc2, m2;
            for (int l = 0; l < 32; l++) {
                s1 += (q[l] & 0xF) * a[l];
                s2 += (q[l] >> 4) * a[l + 32];
            }
            k_scale_min(2 * i, w[b].scales, &sc1, &m1);
            k_scale_min(2 * i + 1, w[b].scales, &sc2, &m2);
            isum += sc1 * s1 + sc2 * s2;
            const int16_t *bs = x[b].bsums + 4 * i;
            msum += m1 * (bs[0] + bs[1]) + m2 * (bs[2] + bs[3]);
        }
        s += x[b].d * (f16_to_f32(w[b].d) * (float)isum - f16_to_f32(w[b].dmin) * (float)msum);
    }
    return s;
}

static float dot1_q5_K(int64_t k, const block_q5_K *w, const block_q8_K *x)
{
    float s = 0.0f;
    for (int64_t b = 0; b < k / QK_K; b++) {
        int isum = 0, msum = 0;
        for (int i = 0; i < 4; i++) {
            const uint8_t *q = w[b].qs + 32 * i, *qh = w[b].qh;
            const int8_t *a = x[b].qs + 64 * i;
            int u1 = 1 << (2 * i), u2 = 2 << (2 * i);
            int s1 = 0, s2 = 0, sc1, m1, sc2, m2;
            for (int l = 0; l < 32; l++) {
                s1 += ((q[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) * a[l];
                s2 += ((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) * a[l + 32];
            }
            k_scale_min(2 * i, w[b].scales, &sc1, &m1);
            k_scale_min(2 * i + 1, w[b].scales, &sc2, &m2);
            isum += sc1 * s1 + sc2 * s2;
            const int16_t *bs = x[b].bsums + 4 * i;
            msum += m1 * (bs[0] + bs[1]) + m2 * (bs[2] + bs[3]);
        }
        s += x[b].d * (f16_to_f32(w[b].d) * (float)isum - f16_to_f32(w[b].dmin) * (float)msum);
    }
    return s;
}

static float dot1_q6_K(int64_t k, const block_q6_K *w, const block_q8_K *x)
{
    float s = 0.0f;
    for (int64_t b = 0; b < k / QK_K; b++) {
        int isum = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const int8_t *sc = w[b].scales + 8 * h, *a = x[b].qs + 128 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                isum += sc[is] * q1 * a[l] + sc[is + 2] * q2 * a[l + 32] +
                        sc[is + 4] * q3 * a[l + 64] + sc[is + 6] * q4 * a[l + 96];
            }
        }
        s += x[b].d * f16_to_f32(w[b].d) * (float)isum;
    }
    return s;
}

static float dot1_f32(int64_t k, const float *w, const float *x)
{
    float s = 0.0f;
    for (int64_t i = 0; i < k; i++) s += w[i] * x[i];
    return s;
}

static float dot1_f16(int64_t k, const uint16_t *w, const float *x)
{
    float s = 0.0f;
    for (int64_t i = 0; i < k; i++) s += f16_to_f32(w[i]) * x[i];
    return s;
}

static float dot1_bf16(int64_t k, const uint16_t *w, const float *x)
{
    float s = 0.0f;
    for (int64_t i = 0; i < k; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}


CPU_ONE_TILE(dot_q4_0, dot1_q4_0, block_q4_0, block_q8_1)
CPU_ONE_TILE(dot_q4_1, dot1_q4_1, block_q4_1, block_q8_1)
CPU_ONE_TILE(dot_q8_0, dot1_q8_0, block_q8_0, block_q8_1)
CPU_ONE_TILE(dot_q4_K, dot1_q4_K, block_q4_K, block_q8_K)
CPU_ONE_TILE(dot_q5_K, dot1_q5_K, block_q5_K, block_q8_K)
CPU_ONE_TILE(dot_q6_K, dot1_q6_K, block_q6_K, block_q8_K)
CPU_ONE_TILE(dot_f32, dot1_f32, float, float)
CPU_ONE_TILE(dot_f16, dot1_f16, uint16_t, float)
CPU_ONE_TILE(dot_bf16, dot1_bf16, uint16_t, float)

/* ---- float GEMM (panel layout of internal.h) ---------------------------- */

static void pack(int type, const void *w, size_t wbs, int64_t k, int nrows, float *panel)
{
    for (int r = 0; r < CPU_GEMM_NR; r++) {
        const char *row = (const char *)w + (size_t)r * wbs;
        for (int64_t kk = 0; kk < k; kk++) {
            float v = 0.0f;
            if (r < nrows) {
                if (type == LLM_T_F32) v = ((const float *)row)[kk];
                else if (type == LLM_T_F16) v = f16_to_f32(((const uint16_t *)row)[kk]);
                else v = bf16_to_f32(((const uint16_t *)row)[kk]);
            }
            panel[kk * CPU_GEMM_NR + r] = v;
        }
    }
}

static void gemm(int64_t k, const float *panel, const float *x, size_t ldx, float *y, size_t ldy,
                 int nt, int nc, const float *bias)
{
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nc; r++) {
            float s = 0.0f;
            for (int64_t kk = 0; kk < k; kk++) s += x[t * ldx + kk] * panel[kk * CPU_GEMM_NR + r];
            y[t * ldy + r] = s + (bias ? bias[r] : 0.0f);
        }
}

/* ---- f32 helpers -------------------------------------------------------- */

static float vdot(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float a, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale(float a, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

static float exp_sum(const float *x, float *y, float mx, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += y[i] = expf(x[i] - mx);
    return s;
}

/* written with erfc so the negative tail keeps its relative precision
 * (1 + erf(z) cancels to 0 below z = -4) */
float cpu_gelu1(float x)
{
    return 0.5f * x * erfcf(-x * 0.70710678118654752f);
}

static void gelu(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = cpu_gelu1(x[i]);
}

static void swiglu(float *out, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

int cpu_act_type(int wtype)
{
    switch (wtype) {
    case LLM_T_Q4_0: case LLM_T_Q4_1: case LLM_T_Q8_0: return LLM_T_Q8_1;
    case LLM_T_Q4_K: case LLM_T_Q5_K: case LLM_T_Q6_K: return LLM_T_Q8_K;
    case LLM_T_F32: case LLM_T_F16: case LLM_T_BF16: return LLM_T_F32;
    default: return -1;
    }
}

const cpu_kern cpu_kern_ref = {
    .name = "ref",
    .dot = {
        [LLM_T_F32] = dot_f32, [LLM_T_F16] = dot_f16, [LLM_T_BF16] = dot_bf16,
        [LLM_T_Q4_0] = dot_q4_0, [LLM_T_Q4_1] = dot_q4_1, [LLM_T_Q8_0] = dot_q8_0,
        [LLM_T_Q4_K] = dot_q4_K, [LLM_T_Q5_K] = dot_q5_K, [LLM_T_Q6_K] = dot_q6_K,
    },
    .quant_q8_1 = quant_q8_1,
    .quant_q8_K = quant_q8_K,
    .gemm_mr = 4,
    .pack = pack,
    .gemm = gemm,
    .dot_f32 = vdot,
    .axpy_f32 = axpy,
    .scale_f32 = scale,
    .exp_sum = exp_sum,
    .gelu = gelu,
    .swiglu = swiglu,
    .attn = cpu_attn_ref,
};
