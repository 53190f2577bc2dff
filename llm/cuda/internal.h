/*
 * internal.h - private state of the CUDA backend (llm/cuda/).
 *
 * Everything the backend owns lives in one cu_ctx: the device id, its stream,
 * the cuBLAS handle and workspace, scratch buffers (f16 activations for the
 * GEMMs, a device copy of host index arrays), pinned staging slots for those
 * host arrays, and the deferred error that sync() returns (ops are void).
 * The one global is the process-wide lock around captures (cuda.cu, dev_malloc).
 */
#ifndef DOCENT_LLM_CUDA_INTERNAL_H
#define DOCENT_LLM_CUDA_INTERNAL_H

#include <cuda.h> /* driver API types only: its calls are reached through cudaGetDriverEntryPoint */
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
    int qtype;    /* 0, or LLM_T_Q4_0 / Q4_1 / Q8_0: d holds the file's blocks as they
                     are (DOCENT_CUDA_QUANT=keep), row_bytes apart */
    size_t row_bytes;
    size_t bytes;
} cu_weight;

#define CU_GRAPHS 64 /* recorded decode steps kept (one per batch size) */

enum { G_NONE, G_WARM, G_CAPTURE, G_REPLAY }; /* cu_ctx.g_mode inside a graph step */

/* a recorded step (graph_begin's key): the CUDA graph and the arena its host
 * arrays are staged through (a pinned copy and its device image, at the same
 * offsets, in call order) */
typedef struct cu_graph {
    uint64_t key, used; /* used: the step clock at the last use (LRU) */
    int valid;          /* the entry holds a key */
    int runs;           /* steps run under the key */
    int fails;          /* failed recordings in a row; 3 and the key stays eager */
    cudaGraphExec_t exec;
    uint64_t hash;      /* of the ops recorded, checked on every replay */
    size_t staged;      /* arena bytes the recording used */
    unsigned gen;       /* cu_ctx.scratch_gen at recording */
    void *host, *dev;   /* the arena */
    size_t arena, need; /* its size; bytes the first (eager) run staged */
    cudaEvent_t done;   /* recorded after the last launch */
} cu_graph;

/* growing KV caches (kv_reserve / kv_grow): driver virtual memory.  A
 * reservation is an address range; blocks of `gran` bytes of device memory
 * (cuMemCreate handles) are mapped behind it in order as it grows, and go
 * back to a pool (up to CU_KV_POOL bytes, the rest to the driver) when it is
 * released. */
#define CU_KV_POOL (256ull << 20)
typedef struct cu_kv {
    CUdeviceptr base;
    size_t size;                      /* reserved bytes (a multiple of gran) */
    size_t n_h, cap_h;                /* blocks mapped, from base up */
    CUmemGenericAllocationHandle *h;
} cu_kv;

typedef struct cu_vmm {
    CUresult (*reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
    CUresult (*addr_free)(CUdeviceptr, size_t);
    CUresult (*create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                       unsigned long long);
    CUresult (*release)(CUmemGenericAllocationHandle);
    CUresult (*map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
    CUresult (*unmap)(CUdeviceptr, size_t);
    CUresult (*access)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
    CUresult (*error_string)(CUresult, const char **);
    CUmemAllocationProp prop;
    CUmemAccessDesc acc;
    size_t gran;
    cu_kv *kv; /* live reservations */
    int n_kv, cap_kv;
    CUmemGenericAllocationHandle *pool; /* unmapped blocks kept for reuse */
    int n_pool, cap_pool;
    size_t mapped; /* bytes mapped behind all reservations */
} cu_vmm;

typedef struct cu_ctx {
    int dev;
    llm_backend_i iface; /* the op table; kv_reserve / kv_grow only with driver virtual memory */
    cu_vmm vmm;
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
    void *picks; /* pick's results */
    size_t picks_size;
    void *wdq; /* a kept-quantized weight dequantized to f16 for a GEMM of many rows */
    size_t wdq_size;
    int quant_keep; /* DOCENT_CUDA_QUANT=keep: Q4_0/Q4_1/Q8_0 weights stay quantized */
    int32_t *idx_host; /* what idx holds (after queued copies), to skip repeats */
    size_t idx_n, idx_host_cap;
    void *stage[CU_STAGE_SLOTS]; /* pinned host staging for those arrays */
    cudaEvent_t stage_ev[CU_STAGE_SLOTS];
    size_t stage_size;
    int stage_next;
    size_t free_at_open, total; /* bytes, from cudaMemGetInfo at creation */
    size_t reserve;             /* bytes weight_prepare leaves free for activations */
    int n_sm;                   /* streaming multiprocessors */
    void *pack;                 /* host scratch for packing op arguments */
    size_t pack_size;
    unsigned scratch_gen;       /* bumped when a scratch buffer moves (graphs hold pointers) */
    int graphs_on;              /* DOCENT_CUDA_GRAPHS != 0 */
    int tiled_ok;               /* the tiled attention kernels are usable (and not turned off) */
    int attn_mma;               /* DOCENT_CUDA_ATTN=mma: the tiled attention on tensor cores */
    cu_graph graphs[CU_GRAPHS];
    uint64_t g_clock;
    int g_mode;                 /* G_*: the open graph step's mode */
    cu_graph *g;                /* its entry */
    uint64_t g_hash;            /* of the ops so far */
    size_t g_off;               /* arena bytes staged so far (G_WARM: counted) */
    int g_bad;                  /* the step cannot be recorded / replayed as it is */
    int g_err0;                 /* err_rc when the step began */
    uint64_t n_captured, n_replayed, n_rerun;
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
