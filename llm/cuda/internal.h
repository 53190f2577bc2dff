/*
 * internal.h - private state of the CUDA backend (llm/cuda/).
 *
 * Everything the backend owns lives in one cu_ctx: the device id, its stream,
 * the cuBLAS handle and workspace, scratch buffers (f16 activations for the
 * GEMMs, a device copy of host index arrays), pinned staging slots for those
 * host arrays, and the deferred error that sync() returns (ops are void).
 * There are no globals.
 */
#ifndef DOCENT_LLM_CUDA_INTERNAL_H
#define DOCENT_LLM_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "llm/backend.h"
#include "llm/internal.h"
}

#define CU_STAGE_SLOTS 32 /* pinned staging slots for host index arrays */

/* a prepared weight (llm_weight.dev): the matrix on the device as f16, or as
 * bf16 when the file holds bf16 (as the CPU backend, activations are then
 * rounded to bf16 too) */
typedef struct cu_weight {
    void *d;      /* rows x cols, row-major */
    int bf16;     /* element type of d: 0 f16, 1 bf16 */
    size_t bytes;
} cu_weight;

typedef struct cu_ctx {
    int dev;
    cudaStream_t st;
    cublasHandle_t blas;
    void *ws; /* cuBLAS workspace */
    size_t ws_size;
    void *xh; /* f16/bf16 copy of a matmul's activations */
    size_t xh_size;
    int32_t *idx; /* device copy of ids / positions / lengths */
    size_t idx_size;
    void *att; /* partial results of split decode attention */
    size_t att_size;
    int32_t *idx_host; /* what idx holds (after queued copies), to skip repeats */
    size_t idx_n, idx_host_cap;
    void *stage[CU_STAGE_SLOTS]; /* pinned host staging for those arrays */
    cudaEvent_t stage_ev[CU_STAGE_SLOTS];
    size_t stage_size;
    int stage_next;
    size_t free_at_open, total; /* bytes, from cudaMemGetInfo at creation */
    size_t reserve;             /* bytes weight_prepare leaves free for activations */
    int smem_max;               /* opt-in shared memory per block */
    int err_rc;                 /* deferred error for sync() */
    char err_msg[320];
} cu_ctx;

/* cu_fail: record the first error (code, "file:line: what: cuda message"). */
int cu_fail(cu_ctx *c, int rc, const char *file, int line, const char *what, const char *msg);

/* CU_CHECK / CUBLAS_CHECK: evaluate a CUDA runtime / cuBLAS call; on failure
 * record it in c and yield the DOC_E* code, else 0. */
#define CU_CHECK(c, call)                                                                  \
    ({                                                                                     \
        cudaError_t e_ = (call);                                                           \
        e_ == cudaSuccess ? 0                                                              \
                          : cu_fail((c), e_ == cudaErrorMemoryAllocation ? DOC_ENOMEM      \
                                                                         : DOC_EDEVICE,    \
                                    __FILE__, __LINE__, #call, cudaGetErrorString(e_));    \
    })
#define CUBLAS_CHECK(c, call)                                                              \
    ({                                                                                     \
        cublasStatus_t s_ = (call);                                                        \
        s_ == CUBLAS_STATUS_SUCCESS                                                        \
            ? 0                                                                            \
            : cu_fail((c), s_ == CUBLAS_STATUS_ALLOC_FAILED ? DOC_ENOMEM : DOC_EDEVICE,    \
                      __FILE__, __LINE__, #call, cublasGetStatusString(s_));               \
    })

#endif
