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

typedef struct cpu_kern {
    const char *name;
    cpu_dot_fn dot[LLM_T_COUNT];
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
} cpu_kern;

extern const cpu_kern cpu_kern_ref;
extern const cpu_kern cpu_kern_avx2;
extern const cpu_kern cpu_kern_avx512;

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
