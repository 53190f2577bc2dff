/*
 * internal.h - private to llm/cpu: the per-ISA kernel table.
 *
 * cpu.c owns everything above the kernels (dispatch, threading, scratch,
 * activation planning); each ISA file (ref.c, kern_avx2.c, kern_avx512.c)
 * fills one constant cpu_kern table with leaf kernels that work on a tile
 * handed to them by one thread.  A NULL entry means "use the reference".
 *
 * Activation formats for the integer paths: weights of type Q4_0, Q4_1 and
 * Q8_0 are dotted with activations quantized to block_q8_1 (float d, float
 * s = d * sum(qs), 32 int8); the K-quants with block_q8_K.  Float weights
 * (F32, F16, BF16) take f32 activations.  All levels quantize activations the
 * same way (amax / 127, round half to even), so integer sums agree exactly
 * between levels and only the float accumulation order differs.
 */
#ifndef DOCENT_LLM_CPU_INTERNAL_H
#define DOCENT_LLM_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "llm/internal.h"

enum { CPU_ISA_REF = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2 };

/* Panel geometry of the float GEMM (shared by every level so panels can be
 * packed by any of them): NR output columns per panel, interleaved k-major. */
#define CPU_GEMM_NR 32

/*
 * cpu_dot_fn: s[j * lds + i] = dot(weight row i, activation row j) for
 * i < nw, j < nx.  Weight rows are wbs bytes apart, activation rows xbs bytes
 * apart (in the weight type's activation format), k elements each.
 */
typedef void (*cpu_dot_fn)(int64_t k, float *s, size_t lds, const void *w, size_t wbs,
                           const void *x, size_t xbs, int nw, int nx);

/*
 * Row-group layout of Q4_0 / Q4_1 / Q8_0 weights.  A level that fills
 * dotg[type] gets those weights repacked at load (weight_prepare, into
 * w->dev) and matmul calls dotg, with the cpu_dot_fn arguments meaning: w is
 * the group holding row 0 of the range, wbs the bytes per group
 * (cpu_rg_bytes), nw the rows (the last group may be partial).
 *
 * Rows go in groups of CPU_RG (the last group zero-padded).  A group of a
 * k-column matrix with nb = k / 32 blocks is
 *   quants: nb records of cpu_rg_qbytes bytes; record b is 64-byte chunks,
 *           chunk p holding for row i (0..15) four bytes at 64 p + 4 i:
 *           Q4_0/Q4_1: bytes qs[4p .. 4p+3] of the row's block b (p < 4: low
 *           nibbles are elements 4p.., high nibbles elements 16 + 4p..);
 *           Q8_0: qs[4p .. 4p+3] + 128 as unsigned bytes (p < 8);
 *   d:      nb x 16 f16 block scales (the block's d, row i at 16 b + i);
 *   m:      Q4_1 only, nb x 16 f16 block mins, same order;
 * padded to a multiple of 64 bytes.  So one 32-bit lane per row: a u8 x s8
 * dot of a chunk against one broadcast activation dword sums four products
 * of each of 16 rows, and the per-block scales load as one vector.
 */
#define CPU_RG 16

static inline size_t cpu_rg_qbytes(int type) { return type == LLM_T_Q8_0 ? 512 : 256; }

static inline size_t cpu_rg_bytes(int type, int64_t k)
{
    size_t nb = (size_t)(k / 32), per = cpu_rg_qbytes(type) + (type == LLM_T_Q4_1 ? 64 : 32);
    return (nb * per + 63) & ~(size_t)63;
}

/*
 * cpu_attn_fn: softmax attention of one head of one sequence.  Query i
 * (i < nq) attends to keys [0, nk) when pos0 < 0 (bidirectional) and to keys
 * [0, min(nk, pos0 + i + 1)) otherwise (causal, query i at position pos0 + i):
 *   out[i * ldq + e] = sum_j softmax_j(scale * q_i . k_j) v[j * ldk + e], e < hd.
 * q and out rows are ldq floats apart, k and v rows ldk apart.  work holds
 * cpu_attn_work(nk, hd) floats (one thread's; contents undefined after).
 * The fast levels transpose K into (hd, nk) so a block of CPU_ATTN_QB queries
 * scores keys with plain FMAs, then run P.V with the output rows in registers.
 */
typedef void (*cpu_attn_fn)(float *out, const float *q, const float *k, const float *v,
                            size_t ldq, size_t ldk, int nq, int nk, int pos0, int hd, float scale,
                            float *work);

#define CPU_ATTN_QB 8 /* queries per block of the blocked attention kernels */

/* keys padded to a multiple of 32; work = transposed K + one block of scores */
static inline size_t cpu_attn_nkp(int nk) { return ((size_t)nk + 31) & ~(size_t)31; }
static inline size_t cpu_attn_work(int nk, int hd)
{
    return ((size_t)hd + CPU_ATTN_QB) * cpu_attn_nkp(nk);
}

/* CPU_ONE_TILE: a cpu_dot_fn `name` from a one-pair kernel
 * `float one(k, const wt *w_row, const xt *x_row)`, over every (weight row,
 * activation row) pair of the tile. */
#define CPU_ONE_TILE(name, one, wt, xt)                                                    \
    static void name(int64_t k, float *s, size_t lds, const void *w, size_t wbs,          \
                     const void *x, size_t xbs, int nw, int nx)                           \
    {                                                                                     \
        for (int j = 0; j < nx; j++)                                                      \
            for (int i = 0; i < nw; i++)                                                  \
                s[(size_t)j * lds + i] = one(k, (const wt *)((const char *)w + i * wbs),  \
                                             (const xt *)((const char *)x + j * xbs));    \
    }

typedef struct cpu_kern {
    const char *name;
    cpu_dot_fn dot[LLM_T_COUNT];
    cpu_dot_fn dotg[LLM_T_COUNT]; /* row-group layout kernels; NULL: no repacking */
    /* quantize one activation row of k elements (k a multiple of the block) */
    void (*quant_q8_1)(const float *x, block_q8_1 *q, int64_t k);
    void (*quant_q8_K)(const float *x, block_q8_K *q, int64_t k);
    /* float GEMM.  pack: rows [0, nrows) of a float-type weight (row stride wbs
     * bytes, k columns) into panel[kk * CPU_GEMM_NR + r], zero past nrows.
     * gemm: y[t * ldy + r] = sum_kk x[t * ldx + kk] * panel[kk * NR + r] (+
     * bias[r]) for t < nt (nt <= gemm_mr), r < nc. */
    int gemm_mr;
    void (*pack)(int type, const void *w, size_t wbs, int64_t k, int nrows, float *panel);
    void (*gemm)(int64_t k, const float *panel, const float *x, size_t ldx, float *y, size_t ldy,
                 int nt, int nc, const float *bias);
    /* f32 vector helpers for attention and norms */
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*axpy_f32)(float a, const float *x, float *y, int64_t n); /* y += a x */
    void (*scale_f32)(float a, float *y, int64_t n);                /* y *= a */
    /* y[i] = exp(x[i] - mx), returns the sum (softmax numerator) */
    float (*exp_sum)(const float *x, float *y, float mx, int64_t n);
    void (*gelu)(float *x, int64_t n);
    void (*swiglu)(float *out, const float *g, const float *u, int64_t n);
    cpu_attn_fn attn; /* attention of one (sequence, head) */
    /* one query (decode): out (hd) = softmax_j(scale q.k_j) v_j over keys
     * [0, nk), rows of k and v ldk floats apart; s holds nk floats.  Returns 0
     * (nothing done) for a head size it has no kernel for; may be NULL. */
    int (*attn_q1)(float *out, const float *q, const float *k, const float *v, size_t ldk, int nk,
                   int hd, float scale, float *s);
    /* BF16 GEMM for BF16 weights, or NULL (also cleared at run time on CPUs
     * without AVX512_BF16); see cpu_gemm_bf16_i */
    const struct cpu_gemm_bf16_i *gemm_bf16;
    /* one row: out = (x - mean) / sqrt(var + eps) * w + b; NULL: cpu.c's loop */
    void (*layernorm)(float *out, const float *x, const float *w, const float *b, int d, float eps);
} cpu_kern;

/*
 * cpu_gemm_bf16_i: y[t * ldy + r] = sum_kk x[t * ldx + kk] * panel(kk, r)
 * (+ bias[r]) for t < nt (nt <= mr), r < nc, over kp (even) inputs, x and the
 * panel in bf16.  Panel layout: for each input pair q, 2 * CPU_GEMM_NR bf16,
 * column r's weights for inputs 2q and 2q+1 at 2r and 2r+1 (zero past the
 * weight's rows and columns); 64-byte aligned.
 */
typedef struct cpu_gemm_bf16_i {
    int mr;
    /* out[i] = x[i] rounded to bf16, nearest even (as core's f32_to_bf16 up
     * to denormals, which the GEMM reads as 0 anyway) */
    void (*round)(const float *x, uint16_t *out, int64_t n);
    void (*gemm)(int64_t kp, const uint16_t *panel, const uint16_t *x, size_t ldx, float *y,
                 size_t ldy, int nt, int nc, const float *bias);
} cpu_gemm_bf16_i;

extern const cpu_gemm_bf16_i cpu_gemm_bf16_avx512;

/* ew_avx512.c: the AVX-512 level's gelu and layernorm row */
void cpu_gelu_avx512(float *x, int64_t n);
void cpu_layernorm_avx512(float *out, const float *x, const float *w, const float *b, int d,
                          float eps);

extern const cpu_kern cpu_kern_ref;
extern const cpu_kern cpu_kern_avx2;
extern const cpu_kern cpu_kern_avx512;

/* attention kernels of each level (attn_ref.c, attn_avx2.c, attn_avx512.c) */
void cpu_attn_ref(float *out, const float *q, const float *k, const float *v, size_t ldq,
                  size_t ldk, int nq, int nk, int pos0, int hd, float scale, float *work);
void cpu_attn_avx2(float *out, const float *q, const float *k, const float *v, size_t ldq,
                   size_t ldk, int nq, int nk, int pos0, int hd, float scale, float *work);
void cpu_attn_avx512(float *out, const float *q, const float *k, const float *v, size_t ldq,
                     size_t ldk, int nq, int nk, int pos0, int hd, float scale, float *work);

/* cpu_act_type: activation format for a weight type (LLM_T_Q8_1, LLM_T_Q8_K or
 * LLM_T_F32), or -1 when matmul does not support the type. */
int cpu_act_type(int wtype);

/* cpu_isa_detect: the highest level this CPU runs (CPU_ISA_*). */
int cpu_isa_detect(void);

/*
 * cpu_backend_new_isa: the CPU backend at a given level (capped at what the
 * CPU has; the level actually used is reported by cpu_backend_isa).  For tests
 * and benchmarks; llm_cpu_backend_new picks the level from cpuid/DOCENT_ISA.
 */
int cpu_backend_new_isa(int n_threads, int isa, llm_backend **out, doc_err *err);
int cpu_backend_isa(const llm_backend *be);

/*
 * q8_1_scales: store a Q8_1 activation block's scale d and s = d * sum(qs),
 * each rounded to half precision as GGUF's own Q8_1 blocks carry them (the
 * in-memory fields stay float).  Rounding here, and quantizing with
 * id = 127 / amax and round-half-to-even, makes docent's integer dot products
 * see the same activation blocks as llama.cpp's CPU backend, so greedy
 * decoding agrees token for token instead of drifting on quantization noise.
 */
static inline void q8_1_scales(block_q8_1 *q, float d, int sum)
{
    q->d = f16_to_f32(f32_to_f16(d));
    q->s = f16_to_f32(f32_to_f16(d * (float)sum));
}

/* scalar gelu used by every level for the tails: 0.5 x (1 + erf(x / sqrt 2)) */
float cpu_gelu1(float x);

#endif
