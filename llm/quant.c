/*
 * quant.c - element types and the reference (scalar) quantizers.
 *
 * One table describes every element type docent knows: its name, elements per
 * block and bytes per block.  The block layouts (internal.h) are the ones GGUF
 * files store, byte for byte, little-endian.  The functions here are the
 * obviously-correct versions: the CPU kernels and the CUDA backend are tested
 * against them, and tests use the quantizers to make real blocks.
 *
 * Layout notes (all from the GGUF block format definitions):
 *   q4_0/q4_1  byte j holds element j in its low nibble and element j+16 in
 *              its high nibble.
 *   q4_K/q5_K  a 256-element super-block of 8 sub-blocks of 32; each sub-block
 *              has a 6-bit scale and a 6-bit min packed into 12 bytes; value
 *              = d*sc*q - dmin*m.  qs byte l of chunk c (64 elements) holds
 *              element 64c+l (low nibble) and 64c+32+l (high nibble); for q5_K
 *              bit 2c of qh[l] is the 5th bit of the low one, bit 2c+1 of the
 *              high one.
 *   q6_K       16 sub-blocks of 16 with int8 scales; each half (128 elements)
 *              uses 64 bytes of ql and 32 of qh: element l, l+32, l+64, l+96
 *              take the low nibble of ql[l], of ql[l+32], the high nibble of
 *              ql[l], of ql[l+32], and 2-bit fields 0, 1, 2, 3 of qh[l].
 */
#include "llm/internal.h"

#include <math.h>
#include <string.h>

/* ---- the type table --------------------------------------------------- */

static const llm_type_info type_table[LLM_T_COUNT] = {
    [LLM_T_F32] = {"f32", 1, 4, 1},
    [LLM_T_F16] = {"f16", 1, 2, 1},
    [LLM_T_BF16] = {"bf16", 1, 2, 1},
    [LLM_T_Q4_0] = {"q4_0", QK4_0, sizeof(block_q4_0), 1},
    [LLM_T_Q4_1] = {"q4_1", QK4_1, sizeof(block_q4_1), 1},
    [LLM_T_Q8_0] = {"q8_0", QK8_0, sizeof(block_q8_0), 1},
    [LLM_T_Q8_1] = {"q8_1", QK8_1, sizeof(block_q8_1), 0},
    [LLM_T_Q4_K] = {"q4_K", QK_K, sizeof(block_q4_K), 1},
    [LLM_T_Q5_K] = {"q5_K", QK_K, sizeof(block_q5_K), 1},
    [LLM_T_Q6_K] = {"q6_K", QK_K, sizeof(block_q6_K), 1},
    [LLM_T_Q8_K] = {"q8_K", QK_K, sizeof(block_q8_K), 0},
};

/* the block structs must be packed exactly as in the files */
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0");
_Static_assert(sizeof(block_q8_1) == 40, "block_q8_1");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K");

/* llm_type: the table entry, or NULL for ids outside it or holes in it. */
const llm_type_info *llm_type(int type)
{
    if (type < 0 || type >= LLM_T_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

/* llm_row_bytes: n / block * block_size; 0 for an unknown type. */
size_t llm_row_bytes(int type, int64_t n)
{
    const llm_type_info *t = llm_type(type);
    if (!t || n < 0) return 0;
    return (size_t)(n / t->block) * t->block_size;
}

/* ---- helpers ----------------------------------------------------------- */

/* 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes: the
 * first four of each live in the low 6 bits of bytes 0..3 (scales) and 4..7
 * (mins); the last four have their low 4 bits in bytes 8..11 (scale low
 * nibble, min high nibble) and their top 2 bits in the spare top bits of
 * bytes 0..3 (scales) and 4..7 (mins). */
static void k_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* the inverse of k_scale_min for all eight sub-blocks (values 0..63) */
static void k_pack_scales(uint8_t *q, const uint8_t *sc, const uint8_t *m)
{
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4));
    }
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* nearest integer, ties away from zero */
static int iround(float x) { return (int)lroundf(x); }

/* ---- dequantization ----------------------------------------------------- */

static void deq_q4_0(const block_q4_0 *b, float *y)
{
    float d = f16_to_f32(b->d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        y[j] = (float)((b->qs[j] & 0x0F) - 8) * d;
        y[j + QK4_0 / 2] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const block_q4_1 *b, float *y)
{
    float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
    for (int j = 0; j < QK4_1 / 2; j++) {
        y[j] = (float)(b->qs[j] & 0x0F) * d + m;
        y[j + QK4_1 / 2] = (float)(b->qs[j] >> 4) * d + m;
    }
}

static void deq_q8_0(const block_q8_0 *b, float *y)
{
    float d = f16_to_f32(b->d);
    for (int j = 0; j < QK8_0; j++) y[j] = (float)b->qs[j] * d;
}

static void deq_q8_1(const block_q8_1 *b, float *y)
{
    for (int j = 0; j < QK8_1; j++) y[j] = (float)b->qs[j] * b->d;
}

static void deq_q4_K(const block_q4_K *b, float *y)
{
    float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
    for (int c = 0; c < 4; c++) { /* chunks of 64: sub-blocks 2c, 2c+1 */
        int sc, m;
        k_scale_min(b->scales, 2 * c, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        k_scale_min(b->scales, 2 * c + 1, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = d1 * (float)(q[l] & 0x0F) - m1;
            y[64 * c + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void deq_q5_K(const block_q5_K *b, float *y)
{
    float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
    for (int c = 0; c < 4; c++) {
        int sc, m;
        k_scale_min(b->scales, 2 * c, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        k_scale_min(b->scales, 2 * c + 1, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * c;
        uint8_t u1 = (uint8_t)(1u << (2 * c)), u2 = (uint8_t)(2u << (2 * c));
        for (int l = 0; l < 32; l++) {
            int lo = (q[l] & 0x0F) + ((b->qh[l] & u1) ? 16 : 0);
            int hi = (q[l] >> 4) + ((b->qh[l] & u2) ? 16 : 0);
            y[64 * c + l] = d1 * (float)lo - m1;
            y[64 * c + 32 + l] = d2 * (float)hi - m2;
        }
    }
}

static void deq_q6_K(const block_q6_K *b, float *y)
{
    float d = f16_to_f32(b->d);
    for (int h = 0; h < 2; h++) { /* halves of 128 */
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *sc = b->scales + 8 * h;
        float *o = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            o[l] = d * (float)sc[is] * (float)q1;
            o[l + 32] = d * (float)sc[is + 2] * (float)q2;
            o[l + 64] = d * (float)sc[is + 4] * (float)q3;
            o[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

static void deq_q8_K(const block_q8_K *b, float *y)
{
    for (int j = 0; j < QK_K; j++) y[j] = b->d * (float)b->qs[j];
}

/* one block of any type, aligned: blocks in a mapping may be unaligned, so
 * the reference code copies each one into this first */
typedef union {
    uint16_t h;
    float f;
    block_q4_0 q4_0;
    block_q4_1 q4_1;
    block_q8_0 q8_0;
    block_q8_1 q8_1;
    block_q4_K q4_K;
    block_q5_K q5_K;
    block_q6_K q6_K;
    block_q8_K q8_K;
} any_block;

/* llm_dequantize_ref: n elements (a multiple of the block) of type to f32.
 * Unknown types leave dst untouched (a programmer error). */
void llm_dequantize_ref(int type, const void *src, float *dst, int64_t n)
{
    const llm_type_info *t = llm_type(type);
    if (!t) return;
    const uint8_t *p = src;
    int64_t nb = n / t->block;
    for (int64_t i = 0; i < nb; i++, p += t->block_size, dst += t->block) {
        /* blocks in a mapping may be unaligned: copy each one out first */
        any_block b;
        memcpy(&b, p, t->block_size);
        switch (type) {
        case LLM_T_F32: dst[0] = b.f; break;
        case LLM_T_F16: dst[0] = f16_to_f32(b.h); break;
        case LLM_T_BF16: dst[0] = bf16_to_f32(b.h); break;
        case LLM_T_Q4_0: deq_q4_0(&b.q4_0, dst); break;
        case LLM_T_Q4_1: deq_q4_1(&b.q4_1, dst); break;
        case LLM_T_Q8_0: deq_q8_0(&b.q8_0, dst); break;
        case LLM_T_Q8_1: deq_q8_1(&b.q8_1, dst); break;
        case LLM_T_Q4_K: deq_q4_K(&b.q4_K, dst); break;
        case LLM_T_Q5_K: deq_q5_K(&b.q5_K, dst); break;
        case LLM_T_Q6_K: deq_q6_K(&b.q6_K, dst); break;
        case LLM_T_Q8_K: deq_q8_K(&b.q8_K, dst); break;
        default: return;
        }
    }
}

/* ---- quantization ------------------------------------------------------- */

static float absmax(const float *x, int n)
{
    float a = 0;
    for (int j = 0; j < n; j++) a = fmaxf(a, fabsf(x[j]));
    return a;
}

/* q4_0: d = -(value of largest magnitude)/8 so that value maps to 0 and the
 * range [-8d, 7d] is used without waste on that side. */
static void q_q4_0(const float *x, block_q4_0 *b)
{
    float big = 0;
    for (int j = 0; j < QK4_0; j++)
        if (fabsf(x[j]) > fabsf(big)) big = x[j];
    float d = big / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b->d = f32_to_f16(d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        int lo = clampi(iround(x[j] * id) + 8, 0, 15);
        int hi = clampi(iround(x[j + QK4_0 / 2] * id) + 8, 0, 15);
        b->qs[j] = (uint8_t)(lo | (hi << 4));
    }
}

static void q_q4_1(const float *x, block_q4_1 *b)
{
    float lo = x[0], hi = x[0];
    for (int j = 1; j < QK4_1; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    float d = (hi - lo) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b->d = f32_to_f16(d);
    b->m = f32_to_f16(lo);
    float m = f16_to_f32(b->m); /* quantize against the stored min */
    for (int j = 0; j < QK4_1 / 2; j++) {
        int q0 = clampi(iround((x[j] - m) * id), 0, 15);
        int q1 = clampi(iround((x[j + QK4_1 / 2] - m) * id), 0, 15);
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void q_q8_0(const float *x, block_q8_0 *b)
{
    float d = absmax(x, QK8_0) / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b->d = f32_to_f16(d);
    for (int j = 0; j < QK8_0; j++) b->qs[j] = (int8_t)clampi(iround(x[j] * id), -127, 127);
}

static void q_q8_1(const float *x, block_q8_1 *b)
{
    float d = absmax(x, QK8_1) / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK8_1; j++) {
        b->qs[j] = (int8_t)clampi(iround(x[j] * id), -127, 127);
        sum += b->qs[j];
    }
    b->d = d;
    b->s = d * (float)sum;
}

static void q_q8_K(const float *x, block_q8_K *b)
{
    float d = absmax(x, QK_K) / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b->d = d;
    for (int g = 0; g < QK_K / 16; g++) {
        int sum = 0;
        for (int j = 16 * g; j < 16 * g + 16; j++) {
            b->qs[j] = (int8_t)clampi(iround(x[j] * id), -127, 127);
            sum += b->qs[j];
        }
        b->bsums[g] = (int16_t)sum;
    }
}

/* Shared by q4_K and q5_K (nmax 15 or 31): per 32-element sub-block, an
 * affine map lo + s*q with lo <= 0 (the format subtracts a non-negative min);
 * the eight scales and mins are then quantized to 6 bits against the
 * super-block's d and dmin, and the elements against the rounded values. */
static void q_k_affine(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out,
                       uint8_t *scales, uint8_t *q)
{
    float s[8], mn[8], max_s = 0, max_m = 0;
    for (int j = 0; j < 8; j++) {
        float lo = 0, hi = x[32 * j];
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        s[j] = (hi - lo) / (float)nmax;
        mn[j] = -lo;
        max_s = fmaxf(max_s, s[j]);
        max_m = fmaxf(max_m, mn[j]);
    }
    *d_out = f32_to_f16(max_s / 63.0f);
    *dmin_out = f32_to_f16(max_m / 63.0f);
    float d = f16_to_f32(*d_out), dmin = f16_to_f32(*dmin_out);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        /* round scales up so the sub-block range still fits in nmax steps */
        sc[j] = (uint8_t)(d > 0 ? clampi((int)ceilf(s[j] / d), 0, 63) : 0);
        m[j] = (uint8_t)(dmin > 0 ? clampi(iround(mn[j] / dmin), 0, 63) : 0);
        float dj = d * (float)sc[j], mj = dmin * (float)m[j];
        for (int l = 0; l < 32; l++) {
            float v = dj > 0 ? (x[32 * j + l] + mj) / dj : 0.0f;
            q[32 * j + l] = (uint8_t)clampi(iround(v), 0, nmax);
        }
    }
    k_pack_scales(scales, sc, m);
}

static void q_q4_K(const float *x, block_q4_K *b)
{
    uint8_t q[QK_K];
    q_k_affine(x, 15, &b->d, &b->dmin, b->scales, q);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

static void q_q5_K(const float *x, block_q5_K *b)
{
    uint8_t q[QK_K];
    q_k_affine(x, 31, &b->d, &b->dmin, b->scales, q);
    memset(b->qh, 0, sizeof b->qh);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            b->qs[32 * c + l] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
            if (lo & 16) b->qh[l] |= (uint8_t)(1u << (2 * c));
            if (hi & 16) b->qh[l] |= (uint8_t)(2u << (2 * c));
        }
}

/* q6_K: symmetric 16-element sub-blocks, scale s_j = amax_j/31 quantized to
 * int8 against d = max s_j / 127, elements to -32..31. */
static void q_q6_K(const float *x, block_q6_K *b)
{
    float s[16], max_s = 0;
    for (int j = 0; j < 16; j++) {
        s[j] = absmax(x + 16 * j, 16) / 31.0f;
        max_s = fmaxf(max_s, s[j]);
    }
    b->d = f32_to_f16(max_s / 127.0f);
    float d = f16_to_f32(b->d);
    int8_t q[QK_K];
    for (int j = 0; j < 16; j++) {
        int sc = d > 0 ? clampi((int)ceilf(s[j] / d), 0, 127) : 0;
        b->scales[j] = (int8_t)sc;
        float dj = d * (float)sc;
        for (int l = 0; l < 16; l++)
            q[16 * j + l] = (int8_t)(dj > 0 ? clampi(iround(x[16 * j + l] / dj), -32, 31) : 0);
    }
    memset(b->qh, 0, sizeof b->qh);
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *v = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            int q1 = v[l] + 32, q2 = v[l + 32] + 32, q3 = v[l + 64] + 32, q4 = v[l + 96] + 32;
            ql[l] = (uint8_t)((q1 & 0x0F) | ((q3 & 0x0F) << 4));
            ql[l + 32] = (uint8_t)((q2 & 0x0F) | ((q4 & 0x0F) << 4));
            qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

/* llm_quantize_ref: n f32 values (a multiple of the block) to type.  Types
 * without a quantizer leave dst untouched. */
void llm_quantize_ref(int type, const float *src, void *dst, int64_t n)
{
    const llm_type_info *t = llm_type(type);
    if (!t) return;
    uint8_t *p = dst;
    int64_t nb = n / t->block;
    for (int64_t i = 0; i < nb; i++, p += t->block_size, src += t->block) {
        any_block b;
        switch (type) {
        case LLM_T_F32: b.f = src[0]; break;
        case LLM_T_F16: b.h = f32_to_f16(src[0]); break;
        case LLM_T_BF16: b.h = f32_to_bf16(src[0]); break;
        case LLM_T_Q4_0: q_q4_0(src, &b.q4_0); break;
        case LLM_T_Q4_1: q_q4_1(src, &b.q4_1); break;
        case LLM_T_Q8_0: q_q8_0(src, &b.q8_0); break;
        case LLM_T_Q8_1: q_q8_1(src, &b.q8_1); break;
        case LLM_T_Q4_K: q_q4_K(src, &b.q4_K); break;
        case LLM_T_Q5_K: q_q5_K(src, &b.q5_K); break;
        case LLM_T_Q6_K: q_q6_K(src, &b.q6_K); break;
        case LLM_T_Q8_K: q_q8_K(src, &b.q8_K); break;
        default: return;
        }
        memcpy(p, &b, t->block_size);
    }
}
