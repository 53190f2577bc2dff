/*
 * backend.h - the engine's op table.
 *
 * bert.c and llama.c are written once against this table; a backend (llm/cpu/,
 * llm/cuda/) fills it.  Pointers passed to ops are backend memory obtained from
 * alloc() (on the CPU that is host memory).  Ops are asynchronous in principle:
 * results are only guaranteed visible after download() or sync().
 *
 * Tensor letters used in comments: n tokens, d model width, k input width,
 * m output width, h heads, g kv heads, hd head dim, c context length.
 * Every buffer is row-major with the last dimension contiguous.
 */
#ifndef DOCENT_LLM_BACKEND_H
#define DOCENT_LLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "llm/llm.h"

/* Element types, numbered as in GGUF/ggml so file values map directly. */
enum {
    LLM_T_F32 = 0,
    LLM_T_F16 = 1,
    LLM_T_Q4_0 = 2,
    LLM_T_Q4_1 = 3,
    LLM_T_Q8_0 = 8,
    LLM_T_Q8_1 = 9,
    LLM_T_Q4_K = 12,
    LLM_T_Q5_K = 13,
    LLM_T_Q6_K = 14,
    LLM_T_Q8_K = 15,
    LLM_T_BF16 = 30,
    LLM_T_COUNT = 31,
};

/*
 * llm_weight: a 2-D weight matrix W (rows x cols), each row `cols` elements of
 * `type` stored contiguously (quantized rows are whole blocks).  For a linear
 * layer y = x Wᵀ, cols is the input width k and rows the output width m.
 * `data` is host memory (the file mapping or a converted copy) and is borrowed;
 * `dev` is the backend's private copy or layout, made by weight_prepare and
 * released by weight_release (NULL when the backend uses `data` directly).
 */
typedef struct llm_weight {
    int type;
    int64_t rows, cols;
    const void *data;
    void *dev;
    const char *name; /* for messages */
    int rows_only;    /* only get_rows reads it (an untied embedding table):
                         backends skip their matmul layout */
} llm_weight;

typedef struct llm_backend llm_backend;

#define LLM_GRAPH_RERUN 1 /* graph_end: the step's ops were not run */

typedef struct llm_backend_i {
    const char *name; /* "cpu", "cuda" */

    /* ---- memory ---- */
    /* alloc: n floats of backend memory, zeroed; NULL on failure. */
    float *(*alloc)(llm_backend *be, size_t n);
    void (*release)(llm_backend *be, void *p); /* accepts NULL */
    /* weight_prepare: make w usable by matmul/get_rows (upload, repack).  May set
     * w->dev.  Returns 0 or a DOC_E* code with the weight's name in err. */
    int (*weight_prepare)(llm_backend *be, llm_weight *w, doc_err *err);
    void (*weight_release)(llm_backend *be, llm_weight *w);
    /* copies between host and backend memory (n floats) */
    int (*upload)(llm_backend *be, float *dst, const float *src, size_t n);
    int (*download)(llm_backend *be, float *dst, const float *src, size_t n);

    /* ---- ops ---- */
    /* y (n, m) = x (n, k) · Wᵀ (+ bias (m) when not NULL); k = w->cols, m = w->rows. */
    void (*matmul)(llm_backend *be, float *y, const float *x, const llm_weight *w,
                   const float *bias, int n);
    /* out (n, cols) = rows ids[i] of emb, dequantized to f32.  ids are host memory. */
    void (*get_rows)(llm_backend *be, float *out, const llm_weight *emb, const int32_t *ids, int n);
    /* out (n, d) = x / rms(x) * w */
    void (*rmsnorm)(llm_backend *be, float *out, const float *x, const float *w, int n, int d,
                    float eps);
    /* out (n, d) = (x - mean) / sqrt(var + eps) * w + b */
    void (*layernorm)(llm_backend *be, float *out, const float *x, const float *w,
                      const float *b, int n, int d, float eps);
    /* rotate x (n, h, hd) in place, row i at position pos[i] (host memory).
     * neox=0: pairs (2j, 2j+1) as in GGUF llama; neox=1: pairs (j, j+hd/2) as
     * in Hugging Face / Qwen2.  freq_j = theta^(-2j/hd). */
    void (*rope)(llm_backend *be, float *x, int n, int h, int hd, const int32_t *pos,
                 float theta, int neox);
    /* causal attention over a KV cache.  q (n, h, hd) are the queries at positions
     * pos0..pos0+n-1; kc, vc hold the keys/values of position p at kc + p*ldc
     * (g*hd floats each; ldc >= g*hd) for positions 0..pos0+n-1: already, or,
     * when kn, vn (n, g*hd) are given, for positions before pos0 and the call
     * first stores row i of kn, vn at position pos0 + i.  out (n, h*hd).
     * Query head j uses kv head j/(h/g). */
    void (*attn_causal)(llm_backend *be, float *out, const float *q, float *kc, float *vc,
                        size_t ldc, const float *kn, const float *vn, int n, int pos0, int h,
                        int g, int hd, float scale);
    /* bidirectional attention for an encoder batch of b sequences padded to t:
     * q, k, v, out (b, t, h*hd); sequence s has lens[s] valid tokens (host
     * memory); padded keys are masked, padded query rows are written as zeros. */
    void (*attn_bidir)(llm_backend *be, float *out, const float *q, const float *k,
                       const float *v, int b, int t, int h, int hd, const int *lens, float scale);
    void (*gelu)(llm_backend *be, float *x, size_t n); /* exact (erf) GELU, in place */
    /* out = silu(gate) * up, elementwise */
    void (*swiglu)(llm_backend *be, float *out, const float *gate, const float *up, size_t n);
    void (*add)(llm_backend *be, float *y, const float *a, const float *b, size_t n); /* y = a + b */
    void (*copy)(llm_backend *be, float *dst, const float *src, size_t n);
    void (*softmax)(llm_backend *be, float *x, int n, int d); /* each of n rows of d */

    /* sync: wait for queued work; returns a deferred device error if any. */
    int (*sync)(llm_backend *be, doc_err *err);
    void (*destroy)(llm_backend *be);

    /* ---- optional ops (NULL: the caller composes the required ones) ---- */
    /* attention for a decode step of n sequences, one query each: q (n, h, hd);
     * row i attends over kc[i], vc[i] (position p at + p*ldc, as in
     * attn_causal) at positions 0..pos[i].  When kn, vn (n, g*hd) are given,
     * row i's new key and value are first written at position pos[i] of kc[i],
     * vc[i]; when NULL they are there already.  out (n, h*hd).  kc, vc and pos
     * are host arrays (of backend pointers).  Equal to n calls of
     * attn_causal(1 query, pos0 = pos[i]). */
    void (*attn_decode)(llm_backend *be, float *out, const float *q, float *const *kc,
                        float *const *vc, size_t ldc, const int32_t *pos, const float *kn,
                        const float *vn, int n, int h, int g, int hd, float scale);

    /* Replayable steps (CUDA graphs).  The ops between graph_begin(key) and
     * graph_end form one step that the caller repeats under the same key: the
     * same ops on the same buffers with the same sizes, only the contents of
     * the host arrays they take (ids, positions, cache pointers) changing.
     * The backend may run them as usual, record them, or replay a recording:
     * then the ops only take their host arrays and graph_end launches the
     * recording.  No other backend call may come in between.  graph_end
     * returns DOC_OK, a DOC_E* code, or LLM_GRAPH_RERUN when the ops were not
     * run (a replay found the step changed): the caller runs them again
     * without graph_begin. */
    void (*graph_begin)(llm_backend *be, uint64_t key);
    int (*graph_end)(llm_backend *be, doc_err *err);
    /* pick (every backend has it): row i of logits (n, vocab) gets its next
     * token in ids[i], chosen as p[i] says (llm.h, llm_pick; sample.c's
     * pick_row is the reference), the penalty over the ids
     * recent[i * rmax ..][0 .. nrec[i]).  The logits are modified.  recent, nrec, p and ids are host arrays; ids are written
     * when it returns DOC_OK (it waits for the device). */
    int (*pick)(llm_backend *be, int32_t *ids, float *logits, int n, int vocab,
                const int32_t *recent, const int32_t *nrec, int rmax, const llm_pick *p,
                doc_err *err);
    /* mem_info: the memory the backend can still hand out and its total, in
     * bytes (the device's; on the CPU the host's available memory); 0, or a
     * DOC_E* code when it cannot tell */
    int (*mem_info)(llm_backend *be, size_t *free_bytes, size_t *total_bytes);
    /* describe: one line of the backend's counters (graphs recorded, replayed) */
    void (*describe)(llm_backend *be, char *buf, size_t size);

    /* KV caches that grow with their sequence.  Without these ops a cache is
     * alloc()ed whole (on the CPU only its written pages take memory).
     * kv_reserve: address space for n floats with no memory behind it yet
     * (NULL when none is left).  kv_grow: memory behind at least the first n
     * floats of reservation p, added in the backend's blocks; *ready gets how
     * many floats are usable now (>= n; new ones hold anything).  0, or
     * DOC_ENOMEM / DOC_EDEVICE with the numbers in err.  release() frees a
     * reservation and its blocks.  Layout: a growing cache keeps each
     * position's layers together, so any prefix of positions is one prefix
     * of the reservation. */
    float *(*kv_reserve)(llm_backend *be, size_t n);
    int (*kv_grow)(llm_backend *be, float *p, size_t n, size_t *ready, doc_err *err);
} llm_backend_i;

struct llm_backend {
    const llm_backend_i *i;
    void *ctx; /* the backend's private context */
};

/* llm_cpu_backend_new: the CPU backend with n_threads workers (<= 0: all
 * online CPUs).  Kernels are picked from cpuid: AVX-512 (F/BW/VL + VNNI),
 * AVX2/FMA/F16C, or the scalar reference.  DOCENT_ISA=ref|avx2|avx512 forces a
 * lower level (for tests and benchmarks).  Caller frees with llm_backend_free. */
int llm_cpu_backend_new(int n_threads, llm_backend **out, doc_err *err);
/* llm_cpu_isa: name of the kernel set the CPU backend chose ("avx512", ...). */
const char *llm_cpu_isa(void);
/* llm_cpu_bf16: 1 when the CPU backend (at the level DOCENT_ISA allows) runs
 * BF16 weights through its AVX512_BF16 GEMM, at twice the F32 rate; BF16
 * weights take activations rounded to bf16 on every level. */
int llm_cpu_bf16(void);

/* llm_cuda_backend_new: the CUDA backend (DOC_EDEVICE without a usable device,
 * DOC_EUNSUPPORTED in a build without CUDA). */
int llm_cuda_backend_new(int device, llm_backend **out, doc_err *err);

void llm_backend_free(llm_backend **be);

#endif
