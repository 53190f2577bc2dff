/*
 * emu.h - a CPU emulator of the CUDA execution model, for testing
 * llm/cuda/cuda.cu on a machine without a GPU (make cuda-emu-check).
 *
 * What it is: llm/cuda/cuda.cu, passed through translate.py (which rewrites
 * only `k<<<grid, block, smem, stream>>>(...)` and `extern __shared__`), is
 * compiled by g++ against this header and the shim headers in include/ in
 * place of the CUDA toolkit's, and linked with emu.cc into a
 * libdocent-cuda.so that test_cuda loads through DOCENT_CUDA_LIB.  So the
 * backend's own host code and its own kernels run, unchanged; what is
 * emulated is the machine under them:
 *
 *  - Kernels: every thread of a block is a fiber; a block's threads run in
 *    turn, each until it blocks at a barrier (__syncthreads, a warp
 *    collective), so a missing barrier shows up as a stale read, not as a
 *    lucky one.  Warp collectives (shuffles, ballot, __syncwarp, WMMA) are
 *    rendezvous of the lanes in their mask; a lane that is missing (exited,
 *    diverged) is a deadlock, reported with the kernel's name and the
 *    waiting threads.  Shared memory: static __shared__ variables become
 *    function statics (one block runs at a time), filled with 0xff bytes
 *    (NaN as floats, -1 as ints) when a block's first thread reaches them;
 *    dynamic shared memory is a buffer of exactly the launch's size with a
 *    guard page behind it, filled the same way for every block.  WMMA fragments hold the
 *    whole 16x16 tile in every lane; loads check the 32-byte alignment and
 *    the ldm rules.
 *  - Streams run in order but lazily: work queued on a stream runs only when
 *    the host waits for it (stream or event synchronisation, a copy into
 *    pageable memory), so a host read or a staging-buffer reuse that does
 *    not wait sees the old bytes, as it might on a GPU.
 *  - Graph capture records the stream's work (kernel arguments by value,
 *    copies by address); calls that are illegal while capturing fail the
 *    capture as CUDA does.
 *  - Device memory is host memory with a guard page behind every
 *    allocation; the driver's virtual memory (cuMemCreate / cuMemMap) maps
 *    memfd pages into reserved PROT_NONE ranges, so a cache read past its
 *    mapped blocks faults.  cuBLAS GemmEx is a plain f32-accumulating loop
 *    over the same storage types.
 *
 * What it is not: a performance model, a check of register or shared memory
 * limits, of __launch_bounds__, or of the hardware's own rounding (WMMA and
 * GEMMs accumulate in f32 in a fixed order).  Passing here is no substitute
 * for `make gpu-check` on a GPU.
 */
#ifndef DOCENT_CUDA_EMU_H
#define DOCENT_CUDA_EMU_H

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

/* ---- language ----------------------------------------------------------- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define CUDART_VERSION 13000

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

/* the running thread's coordinates (set by the scheduler at each switch) */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

/* ---- 16-bit floats ------------------------------------------------------ */

struct __half {
    unsigned short x;
};
struct __nv_bfloat16 {
    unsigned short x;
};

/* the conversions are core's (core/utf8.c: round to nearest even, overflow to inf) */
extern "C" {
#include "core/core.h"
}

static inline float __half2float(__half h) { return f16_to_f32(h.x); }
static inline __half __float2half_rn(float f) { return __half{f32_to_f16(f)}; }
static inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
static inline float __bfloat162float(__nv_bfloat16 b) { return bf16_to_f32(b.x); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{f32_to_bf16(f)}; }

/* ---- vector types ------------------------------------------------------ */

struct alignas(16) float4 {
    float x, y, z, w;
};

/* ---- intrinsics --------------------------------------------------------- */

static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int __ffs(int v) { return __builtin_ffs(v); }

template <class T> static inline T atomicAdd(T *p, T v)
{
    T o = *p; /* fibers switch only at barriers: this is atomic */
    *p = o + v;
    return o;
}

/* ---- barriers and warp collectives (emu.cc) ----------------------------- */

void __syncthreads(void);
void emu_warp_sync(unsigned mask, const char *what);
/* every lane of mask puts its 8 bytes; each gets lane src's (src outside mask:
 * a reported fault) */
uint64_t emu_warp_exchange(unsigned mask, uint64_t mine, int src, const char *what);
/* every lane of mask puts its bit; each gets the mask of lanes that put 1 */
unsigned emu_warp_ballot(unsigned mask, int pred, const char *what);
void emu_fault(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void *emu_dyn_smem(void);
void emu_smem_poison(void *p, size_t n); /* translate.py puts one after each __shared__ */

static inline unsigned emu_lane(void)
{
    return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31u;
}

static inline void __syncwarp(unsigned mask = 0xffffffffu) { emu_warp_sync(mask, "__syncwarp"); }

template <class T> static inline T emu_shfl(unsigned mask, T v, int src, const char *what)
{
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    b = emu_warp_exchange(mask, b, src, what);
    T r;
    memcpy(&r, &b, sizeof r);
    return r;
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32)
{
    int lane = (int)emu_lane();
    int src = lane ^ lm;
    if (src >= ((lane / width) + 1) * width) src = lane; /* outside the segment: own value */
    return emu_shfl(mask, v, src, "__shfl_xor_sync");
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    int lane = (int)emu_lane();
    return emu_shfl(mask, v, (lane / width) * width + (src % width), "__shfl_sync");
}
static inline unsigned __ballot_sync(unsigned mask, int pred)
{
    return emu_warp_ballot(mask, pred, "__ballot_sync");
}

/* ---- WMMA --------------------------------------------------------------- */

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    /* the whole tile, in every lane: rows x cols, row-major */
    static const int rows = std::is_same<Use, matrix_b>::value ? K : M;
    static const int cols = std::is_same<Use, matrix_a>::value ? K : N;
    float v[rows * cols];
};

void emu_wmma_check(const void *p, unsigned ldm, size_t esize, const char *what);

template <class T> static inline float emu_wmma_get(const T *p, size_t i);
template <> inline float emu_wmma_get<__half>(const __half *p, size_t i) { return __half2float(p[i]); }
template <> inline float emu_wmma_get<float>(const float *p, size_t i) { return p[i]; }

template <class Use, int M, int N, int K, class T, class L>
static inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm)
{
    typedef fragment<Use, M, N, K, T, L> F;
    emu_warp_sync(0xffffffffu, "wmma::load_matrix_sync");
    emu_wmma_check(p, ldm, sizeof(T), "wmma::load_matrix_sync");
    const bool rm = std::is_same<L, row_major>::value;
    for (int r = 0; r < F::rows; r++)
        for (int c = 0; c < F::cols; c++)
            f.v[r * F::cols + c] = emu_wmma_get(p, rm ? (size_t)r * ldm + c : (size_t)c * ldm + r);
    emu_warp_sync(0xffffffffu, "wmma::load_matrix_sync");
}

template <int M, int N, int K>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p,
                                    unsigned ldm, layout_t l)
{
    emu_warp_sync(0xffffffffu, "wmma::load_matrix_sync");
    emu_wmma_check(p, ldm, sizeof(float), "wmma::load_matrix_sync");
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            f.v[r * N + c] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
    emu_warp_sync(0xffffffffu, "wmma::load_matrix_sync");
}

template <int M, int N, int K>
static inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f,
                                     unsigned ldm, layout_t l)
{
    emu_warp_sync(0xffffffffu, "wmma::store_matrix_sync");
    emu_wmma_check(p, ldm, sizeof(float), "wmma::store_matrix_sync");
    if (emu_lane() == 0)
        for (int r = 0; r < M; r++)
            for (int c = 0; c < N; c++)
                (l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) = f.v[r * N + c];
    emu_warp_sync(0xffffffffu, "wmma::store_matrix_sync");
}

template <class Use, int M, int N, int K, class T, class L>
static inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, float x)
{
    for (float &e : f.v) e = x;
}

template <int M, int N, int K, class T, class LA, class LB>
static inline void mma_sync(fragment<accumulator, M, N, K, float> &d,
                            const fragment<matrix_a, M, N, K, T, LA> &a,
                            const fragment<matrix_b, M, N, K, T, LB> &b,
                            const fragment<accumulator, M, N, K, float> &c)
{
    emu_warp_sync(0xffffffffu, "wmma::mma_sync");
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.v[i * N + j];
            for (int k = 0; k < K; k++) s += a.v[i * K + k] * b.v[k * N + j];
            out[i * N + j] = s;
        }
    memcpy(d.v, out, sizeof out);
}
} // namespace wmma
} // namespace nvcuda

/* ---- launches ----------------------------------------------------------- */

struct emu_stream;
typedef struct emu_stream *cudaStream_t;

/* queue a kernel launch (run: every thread calls it) on a stream; a bad
 * configuration is the launch's error (cudaGetLastError) */
#include <functional>
void emu_enqueue_kernel(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem,
                        cudaStream_t st, std::function<void()> run);

template <class... P> struct emu_launcher {
    void (*k)(P...);
    const char *name;
    dim3 g, b;
    size_t smem;
    cudaStream_t st;
    void operator()(P... a) const /* the kernel's parameter types: arguments convert as in a call */
    {
        std::tuple<P...> args(a...);
        void (*fn)(P...) = k;
        emu_enqueue_kernel(name, (const void *)fn, g, b, smem, st,
                           [fn, args]() { std::apply(fn, args); });
    }
};

template <class... P>
static inline emu_launcher<P...> emu_launch(void (*k)(P...), const char *name, dim3 g, dim3 b,
                                            size_t smem = 0, cudaStream_t st = 0)
{
    return emu_launcher<P...>{k, name, g, b, smem, st};
}

#include "emu_api.h"

#endif
