/*
 * cuda.cu - the CUDA backend: op table over one device and one stream.
 *
 * Memory: alloc() is cudaMalloc + an async zero fill on the backend's stream.
 * Weights are converted once, at weight_prepare, to f16 (bf16 when the file
 * holds bf16) on the host, a block of rows at a time so a large matrix never
 * needs an f32 copy of itself, and uploaded; a weight that does not fit in
 * the device's free memory (less a reserve for activations and the KV cache)
 * is DOC_ENOMEM naming the tensor and both byte counts.
 *
 * matmul: the activations are converted to the weight's 16-bit type in a
 * scratch buffer and multiplied with cublasGemmEx (f32 compute, f32 output);
 * a bias is added by a small kernel.  n = 1 goes through the same call
 * (cuBLAS picks a GEMV-like kernel).  The other ops are plain kernels in f32
 * that follow the CPU reference (llm/cpu/ref.c, attn_ref.c) step by step.
 *
 * Attention: one block of 8 warps per (query row, head); each warp walks a
 * strided share of the visible keys with an online (running max) softmax and
 * the warps' partial results are merged in shared memory, so any context
 * length works with a fixed 8 KiB of shared memory and hd <= 256.  Decode
 * (a few rows) would give the GPU only rows x heads blocks, so there the keys
 * are split into spans of ATT_SPLIT_KEYS, one block each, whose partial
 * (max, sum, weighted values) are merged by a second kernel.
 *
 * Host arrays passed to ops (ids, positions, lengths) are copied into one of
 * CU_STAGE_SLOTS pinned staging slots and from there to a device buffer, on
 * the stream; a slot is reused only after the event recorded behind its last
 * copy has completed, so the caller may reuse its array as soon as the op
 * returns.  An array equal to the previous one (rope's positions, layer after
 * layer) is not copied again.
 *
 * Errors: every CUDA and cuBLAS call goes through CU_CHECK / CUBLAS_CHECK
 * (internal.h), which records the first failure with file:line and the CUDA
 * message; ops are void, so sync() (and download()) return it.
 */
#include "llm/cuda/internal.h"

#include <initializer_list>
#include <mma.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EW_THREADS 256
#define NORM_THREADS 256
#define ATT_WARPS 8
#define ATT_MAXE 8                 /* head dim up to 32 * ATT_MAXE = 256 */
#define ATT_SPLIT_KEYS 256         /* keys per block when decode splits the keys */
#define ATT_SPLIT_MAX_ROWS 8       /* causal calls with more rows do not split */
#define ATT_DEC_MIN_SPAN 64        /* attn_decode: keys per split at least */
#define ATT_DEC_MAX_SPLITS 32      /* attn_decode: splits per (row, head) at most */
#define WS_BYTES (32u << 20)       /* cuBLAS workspace */
#define RESERVE_MIN (256ull << 20) /* device bytes weight_prepare leaves free */
#define CONV_ELEMS (4u << 20)      /* elements per host conversion block */

static cu_ctx *ctx_of(llm_backend *be) { return (cu_ctx *)be->ctx; }

/*
 * Device-wide calls and graph captures.  cudaFree and cudaFreeHost wait for
 * the whole device and cudaMalloc / cudaMallocHost may; CUDA makes such a
 * call invalid while any stream of the context is capturing (the capture
 * fails, and the call may too).  The backends of one process (the embedder,
 * each generator) share the device's primary context and run on their own
 * threads, so one lock is held from cudaStreamBeginCapture to
 * cudaStreamEndCapture and around those calls.  A capture only queues work,
 * about a millisecond, so the wait is short.  It is the backend's one
 * global: what it guards, the context, is per process.
 */
static pthread_mutex_t cu_dev_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

#define DEV_LOCKED(call)                                                                   \
    ({                                                                                     \
        pthread_mutex_lock(&cu_dev_lock);                                                  \
        cudaError_t e_l_ = (call);                                                         \
        pthread_mutex_unlock(&cu_dev_lock);                                                \
        e_l_;                                                                              \
    })
static cudaError_t dev_malloc(void **p, size_t n) { return DEV_LOCKED(cudaMalloc(p, n)); }
static cudaError_t host_malloc(void **p, size_t n) { return DEV_LOCKED(cudaMallocHost(p, n)); }
/* a failed free leaves no error behind for the next launch check to blame */
static cudaError_t dev_free(void *p)
{
    cudaError_t e = DEV_LOCKED(cudaFree(p));
    if (e != cudaSuccess) cudaGetLastError();
    return e;
}
static cudaError_t host_free(void *p)
{
    cudaError_t e = DEV_LOCKED(cudaFreeHost(p));
    if (e != cudaSuccess) cudaGetLastError();
    return e;
}

int cu_fail(cu_ctx *c, int rc, const char *file, int line, const char *what, const char *msg)
{
    if (c && !c->err_rc) {
        c->err_rc = rc;
        const char *base = strrchr(file, '/');
        snprintf(c->err_msg, sizeof c->err_msg, "cuda %s:%d: %.120s: %s", base ? base + 1 : file,
                 line, what, msg);
    }
    return rc;
}

static void defer(cu_ctx *c, int rc, const char *msg)
{
    if (!c->err_rc) {
        c->err_rc = rc;
        snprintf(c->err_msg, sizeof c->err_msg, "%s", msg);
    }
}

/* every op first makes the backend's device current for the calling thread */
static int use(cu_ctx *c) { return CU_CHECK(c, cudaSetDevice(c->dev)); }

#define LAUNCHED(c) CU_CHECK(c, cudaGetLastError())

static unsigned ew_blocks(size_t n)
{
    size_t b = (n + EW_THREADS - 1) / EW_THREADS;
    if (b > (1u << 20)) b = 1u << 20; /* grid-stride beyond */
    return b ? (unsigned)b : 1u;
}

/* ---- kernels ------------------------------------------------------------ */

#define GRID_STRIDE(i, n)                                                              \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);             \
         i += (size_t)gridDim.x * blockDim.x)

/* f32 -> f16 saturating at the f16 range (NaN passes through) */
__device__ __forceinline__ __half sat_half(float v)
{
    v = v > 65504.0f ? 65504.0f : v < -65504.0f ? -65504.0f : v;
    return __float2half_rn(v);
}

__global__ void k_to_f16(__half *o, const float *x, size_t n)
{
    GRID_STRIDE(i, n) o[i] = sat_half(x[i]);
}

__global__ void k_to_bf16(__nv_bfloat16 *o, const float *x, size_t n)
{
    GRID_STRIDE(i, n) o[i] = __float2bfloat16_rn(x[i]);
}

__global__ void k_add_bias(float *y, const float *bias, size_t n, int m)
{
    GRID_STRIDE(i, n) y[i] += bias[i % (size_t)m];
}

__global__ void k_get_rows(float *out, const void *tab, int bf16, const int32_t *ids,
                           int64_t rows, int64_t cols)
{
    int i = blockIdx.x;
    int32_t id = ids[i];
    float *o = out + (size_t)i * cols;
    for (int64_t e = threadIdx.x; e < cols; e += blockDim.x) {
        float v = 0.0f;
        if (id >= 0 && id < rows) {
            size_t off = (size_t)id * cols + e;
            v = bf16 ? __bfloat162float(((const __nv_bfloat16 *)tab)[off])
                     : __half2float(((const __half *)tab)[off]);
        }
        o[e] = v;
    }
}

/* sum (or max) over the block; every thread gets the result.  sh: 32 floats */
__device__ float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    v = l < nw ? sh[l] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ float block_max(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    v = l < nw ? sh[l] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__global__ void k_rmsnorm(float *out, const float *x, const float *w, int d, float eps)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * d;
    float *o = out + (size_t)blockIdx.x * d;
    float ss = 0.0f;
    for (int e = threadIdx.x; e < d; e += blockDim.x) ss += xr[e] * xr[e];
    ss = block_sum(ss, sh);
    float s = 1.0f / sqrtf(ss / (float)d + eps);
    for (int e = threadIdx.x; e < d; e += blockDim.x) o[e] = xr[e] * s * w[e];
}

__global__ void k_layernorm(float *out, const float *x, const float *w, const float *b, int d,
                            float eps)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * d;
    float *o = out + (size_t)blockIdx.x * d;
    float sum = 0.0f;
    for (int e = threadIdx.x; e < d; e += blockDim.x) sum += xr[e];
    float mean = block_sum(sum, sh) / (float)d, var = 0.0f;
    for (int e = threadIdx.x; e < d; e += blockDim.x) var += (xr[e] - mean) * (xr[e] - mean);
    var = block_sum(var, sh);
    float s = 1.0f / sqrtf(var / (float)d + eps);
    for (int e = threadIdx.x; e < d; e += blockDim.x) o[e] = (xr[e] - mean) * s * w[e] + b[e];
}

/* one thread per (row i, head, pair p); the frequency as the reference
 * computes it (powf in float), here through a double pow rounded to float */
__global__ void k_rope(float *x, int n, int h, int hd, const int32_t *pos, float theta, int neox)
{
    int half = hd / 2;
    size_t total = (size_t)n * h * half;
    GRID_STRIDE(it, total)
    {
        int p = (int)(it % half);
        size_t ih = it / half;
        int i = (int)(ih / h);
        float ex = (float)(2 * p) / (float)hd;
        float inv = 1.0f / (float)pow((double)theta, (double)ex);
        float a = (float)pos[i] * inv, cs = cosf(a), sn = sinf(a);
        float *v = x + ih * hd;
        int i0 = neox ? p : 2 * p, i1 = neox ? p + half : 2 * p + 1;
        float x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * cs - x1 * sn;
        v[i1] = x0 * sn + x1 * cs;
    }
}

/*
 * attn_keys: one block's share of attention for one (query, head): keys
 * [j0, j1) of kp/vp (rows ldk apart).  Each of the 8 warps walks a strided
 * share of the keys with an online (running max) softmax; the warps' partial
 * results are merged in shared memory.  Writes the normalised result to o
 * (zeros for no keys), or, when pp is set, this share's unnormalised partial
 * (max, sum, acc[hd]) for k_attn_merge.
 */
__device__ __forceinline__ void attn_keys(float *o, float *pp, const float *qp, const float *kp,
                                          const float *vp, int ldk, int hd, float scale, int j0,
                                          int j1)
{
    __shared__ float s_m[ATT_WARPS], s_l[ATT_WARPS], s_acc[ATT_WARPS][32 * ATT_MAXE];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float qr[ATT_MAXE], acc[ATT_MAXE];
#pragma unroll
    for (int u = 0; u < ATT_MAXE; u++) {
        int e = lane + 32 * u;
        qr[u] = e < hd ? qp[e] : 0.0f;
        acc[u] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = j0 + w; j < j1; j += ATT_WARPS) {
        const float *kj = kp + (size_t)j * ldk, *vj = vp + (size_t)j * ldk;
        float d = 0.0f;
#pragma unroll
        for (int u = 0; u < ATT_MAXE; u++) {
            int e = lane + 32 * u;
            if (e < hd) d += qr[u] * kj[e];
        }
        for (int of = 16; of > 0; of >>= 1) d += __shfl_xor_sync(0xffffffffu, d, of);
        float sc = scale * d, mn = fmaxf(m, sc);
        float corr = expf(m - mn), p = expf(sc - mn);
        l = l * corr + p;
#pragma unroll
        for (int u = 0; u < ATT_MAXE; u++) {
            int e = lane + 32 * u;
            if (e < hd) acc[u] = acc[u] * corr + p * vj[e];
        }
        m = mn;
    }
    if (lane == 0) {
        s_m[w] = m;
        s_l[w] = l;
    }
#pragma unroll
    for (int u = 0; u < ATT_MAXE; u++) {
        int e = lane + 32 * u;
        if (e < hd) s_acc[w][e] = acc[u];
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int i = 0; i < ATT_WARPS; i++) mx = fmaxf(mx, s_m[i]);
    float sum = 0.0f, f[ATT_WARPS];
    for (int i = 0; i < ATT_WARPS; i++) {
        f[i] = s_l[i] > 0.0f ? expf(s_m[i] - mx) : 0.0f;
        sum += s_l[i] * f[i];
    }
    if (pp) {
        if (threadIdx.x == 0) {
            pp[0] = sum > 0.0f ? mx : -INFINITY;
            pp[1] = sum;
        }
        for (int e = threadIdx.x; e < hd; e += blockDim.x) {
            float a = 0.0f;
            for (int i = 0; i < ATT_WARPS; i++) a += s_acc[i][e] * f[i];
            pp[2 + e] = a;
        }
        return;
    }
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int e = threadIdx.x; e < hd; e += blockDim.x) {
        float a = 0.0f;
        for (int i = 0; i < ATT_WARPS; i++) a += s_acc[i][e] * f[i];
        o[e] = a * inv;
    }
}

/*
 * Attention for one (query row, head) per block.  Causal (lens == NULL): row r
 * is the query at position pos0 + r, keys 0..pos0+r of kv head head/grp, rows
 * ldk apart.  Bidirectional: row r is token r % t of sequence r / t, keys the
 * sequence's first lens[s] tokens; rows past the length are written as zeros.
 * With part set, block z takes keys [z * span, (z + 1) * span) and writes
 * its partial result there (decode, see k_attn_merge).
 */
__global__ void __launch_bounds__(ATT_WARPS * 32)
    k_attn(float *out, const float *q, const float *k, const float *v, int ldq, int ldk, int grp,
           int hd, float scale, int pos0, int t, const int32_t *lens, int span, float *part)
{
    const int r = blockIdx.x, hh = blockIdx.y;
    float *o = out + (size_t)r * ldq + (size_t)hh * hd;
    const float *qp = q + (size_t)r * ldq + (size_t)hh * hd, *kp, *vp;
    int nk;
    if (lens) {
        int s = r / t, i = r % t, len = lens[s];
        len = len < 0 ? 0 : len > t ? t : len;
        if (i >= len) {
            for (int e = threadIdx.x; e < hd; e += blockDim.x) o[e] = 0.0f;
            return;
        }
        kp = k + (size_t)s * t * ldk + (size_t)hh * hd;
        vp = v + (size_t)s * t * ldk + (size_t)hh * hd;
        nk = len;
    } else {
        int kv = hh / grp;
        kp = k + (size_t)kv * hd;
        vp = v + (size_t)kv * hd;
        nk = pos0 + r + 1;
    }
    if (!part) {
        attn_keys(o, NULL, qp, kp, vp, ldk, hd, scale, 0, nk);
        return;
    }
    int j0 = blockIdx.z * span, j1 = j0 + span < nk ? j0 + span : nk;
    float *pp = part + ((size_t)(r * gridDim.y + hh) * gridDim.z + blockIdx.z) * (hd + 2);
    attn_keys(NULL, pp, qp, kp, vp, ldk, hd, scale, j0, j1);
}

/*
 * Tiled attention for prefill and encoder batches: a block takes a tile of
 * TA_Q query rows of one head and walks the keys in tiles of TA_K, both held
 * in shared memory (with the values and the tile's probabilities), so each
 * key is read from memory once per TA_Q queries instead of once per query.
 * Thread (ty, tx) of 16 x 16 holds a 4 x 4 block of scores: query rows
 * 4 ty .. 4 ty + 3 and keys tx + 16 jj, then for the same rows the output
 * columns tx + 16 u.  Each row keeps an online softmax (running max m and
 * sum l), reduced across the 16 threads of its row with shuffles.  Rows,
 * keys and lengths as k_attn: causal (lens == NULL) row r of n at position
 * pos0 + r sees keys 0..pos0+r of kv head head/grp; bidirectional, tile x of
 * sequence x / tiles_per_seq, keys its first lens[s] tokens, rows past the
 * length written as zeros.  Head dims 16 * NC (NC = 2, 4, 5, 6, 8); shared
 * memory: ta_smem(NC) bytes, dynamic.
 */
#define TA_Q 64
#define TA_K 64

static size_t ta_smem(int nc)
{
    int hd = 16 * nc;
    return ((size_t)TA_Q * hd + (size_t)TA_K * (hd + 1) + (size_t)TA_K * hd +
            (size_t)TA_Q * (TA_K + 1)) * sizeof(float);
}

/* ta_tile: the part of the work block (blockIdx.x, head hh) of the tiled
 * kernels takes: nrows query rows from row r0 of its sequence (grow0 in q and
 * out), and the keys below klen at kb, vb (causal: those the tile's last row
 * sees; bidirectional: the sequence's length) */
struct ta_tile {
    int r0, nrows, klen;
    size_t grow0;
    const float *kb, *vb;
};

__device__ __forceinline__ ta_tile ta_where(const float *k, const float *v, int ldk, int grp,
                                            int hd, int n, int pos0, int t, const int32_t *lens,
                                            int tiles_per_seq)
{
    ta_tile w;
    const int hh = blockIdx.y;
    if (lens) {
        int sq = blockIdx.x / tiles_per_seq, len = lens[sq];
        len = len < 0 ? 0 : len > t ? t : len;
        w.r0 = blockIdx.x % tiles_per_seq * TA_Q;
        w.nrows = t - w.r0 < TA_Q ? t - w.r0 : TA_Q;
        w.klen = len;
        w.grow0 = (size_t)sq * t + w.r0;
        w.kb = k + (size_t)sq * t * ldk + (size_t)hh * hd;
        w.vb = v + (size_t)sq * t * ldk + (size_t)hh * hd;
    } else {
        w.r0 = blockIdx.x * TA_Q;
        w.nrows = n - w.r0 < TA_Q ? n - w.r0 : TA_Q;
        w.klen = pos0 + w.r0 + w.nrows;
        w.grow0 = (size_t)w.r0;
        w.kb = k + (size_t)(hh / grp) * hd;
        w.vb = v + (size_t)(hh / grp) * hd;
    }
    return w;
}

template <int NC>
__global__ void __launch_bounds__(256)
    k_attn_tiled(float *out, const float *q, const float *k, const float *v, int ldq, int ldk,
                 int grp, float scale, int n, int pos0, int t, const int32_t *lens,
                 int tiles_per_seq)
{
    constexpr int HD = 16 * NC, KP = HD + 1, PP = TA_K + 1;
    extern __shared__ float ta_sm[];
    float *Qs = ta_sm, *Ks = Qs + TA_Q * HD, *Vs = Ks + TA_K * KP, *Ps = Vs + TA_K * HD;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4, hh = blockIdx.y;
    const ta_tile tl = ta_where(k, v, ldk, grp, HD, n, pos0, t, lens, tiles_per_seq);
    const int r0 = tl.r0, nrows = tl.nrows, klen = tl.klen;
    const size_t grow0 = tl.grow0;
    const float *kb = tl.kb, *vb = tl.vb;
    for (int i = tid; i < TA_Q * HD; i += blockDim.x) {
        int r = i / HD, c = i % HD;
        Qs[i] = r < nrows ? q[(grow0 + r) * ldq + (size_t)hh * HD + c] : 0.0f;
    }
    float m[4], l[4], acc[4][NC];
    int lim[4]; /* row 4 ty + i sees keys below lim[i] */
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = ty * 4 + i;
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int u = 0; u < NC; u++) acc[i][u] = 0.0f;
        lim[i] = r >= nrows ? 0 : lens ? (r0 + r < klen ? klen : 0) : pos0 + r0 + r + 1;
    }
    for (int kt = 0; kt < klen; kt += TA_K) {
        __syncthreads(); /* Qs loaded; the last tile's Ks, Vs, Ps read */
        for (int i = tid; i < TA_K * HD; i += blockDim.x) {
            int j = i / HD, c = i % HD, key = kt + j;
            int ok = key < klen;
            Ks[j * KP + c] = ok ? kb[(size_t)key * ldk + c] : 0.0f;
            Vs[j * HD + c] = ok ? vb[(size_t)key * ldk + c] : 0.0f;
        }
        __syncthreads();
        float sc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int jj = 0; jj < 4; jj++) sc[i][jj] = 0.0f;
#pragma unroll 4
        for (int c = 0; c < HD; c++) {
            float qv[4], kv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) qv[i] = Qs[(ty * 4 + i) * HD + c];
#pragma unroll
            for (int jj = 0; jj < 4; jj++) kv[jj] = Ks[(tx + 16 * jj) * KP + c];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int jj = 0; jj < 4; jj++) sc[i][jj] = fmaf(qv[i], kv[jj], sc[i][jj]);
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                int key = kt + tx + 16 * jj;
                sc[i][jj] = key < lim[i] ? scale * sc[i][jj] : -INFINITY;
                mx = fmaxf(mx, sc[i][jj]);
            }
            for (int o = 8; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            float mn = fmaxf(m[i], mx), ps = 0.0f;
            float corr = mn == -INFINITY ? 1.0f : expf(m[i] - mn);
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                float p = sc[i][jj] == -INFINITY ? 0.0f : expf(sc[i][jj] - mn);
                Ps[(ty * 4 + i) * PP + tx + 16 * jj] = p;
                ps += p;
            }
            for (int o = 8; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
            l[i] = l[i] * corr + ps;
            m[i] = mn;
#pragma unroll
            for (int u = 0; u < NC; u++) acc[i][u] *= corr;
        }
        __syncthreads(); /* the rows' probabilities in Ps */
        int jn = klen - kt < TA_K ? klen - kt : TA_K;
        for (int j = 0; j < jn; j++) {
            float pv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) pv[i] = Ps[(ty * 4 + i) * PP + j];
#pragma unroll
            for (int u = 0; u < NC; u++) {
                float vv = Vs[j * HD + tx + 16 * u];
#pragma unroll
                for (int i = 0; i < 4; i++) acc[i][u] = fmaf(pv[i], vv, acc[i][u]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = ty * 4 + i;
        if (r >= nrows) continue;
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        float *o = out + (grow0 + r) * ldq + (size_t)hh * HD;
#pragma unroll
        for (int u = 0; u < NC; u++) o[tx + 16 * u] = acc[i][u] * inv;
    }
}

/*
 * The same tiling on tensor cores (DOCENT_CUDA_ATTN=mma): Q, K and V tiles as
 * f16 in shared memory, S = Q Kᵀ and O += P V as 16x16x16 WMMA products with
 * f32 accumulation (8 warps: two 16x16 blocks of S each, and hd/32 blocks of
 * O), the online softmax on CUDA cores between them (4 threads per query
 * row), O kept in shared memory in f32 so each row can be rescaled.  Inputs
 * rounded to f16 cost about 1e-3 of the output scale, where the f32 kernels
 * are exact to 2e-5; the op tests allow that for this path.
 */
#define TM_PAD 8 /* halves of padding per shared row (keeps 16-byte rows and spreads banks) */

static size_t tm_smem(int nc)
{
    size_t hd = 16 * (size_t)nc, hs = hd + TM_PAD;
    return 3 * (size_t)TA_Q * hs * sizeof(__half)                 /* Qh, Kh, Vh */
           + (size_t)TA_Q * (TA_K + 4) * sizeof(float)            /* S */
           + (size_t)TA_Q * (TA_K + TM_PAD) * sizeof(__half)      /* P */
           + (size_t)TA_Q * (hd + 4) * sizeof(float)              /* O */
           + 2 * (size_t)TA_Q * sizeof(float);                    /* m, l */
}

/* acc += A (16 x 16 ksteps, row-major, lda) . B (16 ksteps x 16, layout LB,
 * ldb; its k-th 16-slice at b + k * bstep), on tensor cores */
template <typename LB>
__device__ __forceinline__ void
mma_16(nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> &acc, const __half *a,
       int lda, const __half *b, int ldb, int bstep, int ksteps)
{
    using namespace nvcuda;
    for (int kk = 0; kk < ksteps; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, LB> fb;
        wmma::load_matrix_sync(fa, a + kk * 16, lda);
        wmma::load_matrix_sync(fb, b + kk * bstep, ldb);
        wmma::mma_sync(acc, fa, fb, acc);
    }
}

template <int NC>
__global__ void __launch_bounds__(256)
    k_attn_mma(float *out, const float *q, const float *k, const float *v, int ldq, int ldk,
               int grp, float scale, int n, int pos0, int t, const int32_t *lens, int tiles_per_seq)
{
    using namespace nvcuda;
    constexpr int HD = 16 * NC, HS = HD + TM_PAD, SS = TA_K + 4, PS = TA_K + TM_PAD, OS = HD + 4;
    extern __shared__ __align__(128) unsigned char tm_sm[];
    __half *Qh = (__half *)tm_sm, *Kh = Qh + TA_Q * HS, *Vh = Kh + TA_K * HS;
    float *S = (float *)(Vh + TA_K * HS);
    __half *Ph = (__half *)(S + TA_Q * SS);
    float *O = (float *)(Ph + TA_Q * PS), *Ms = O + TA_Q * OS, *Ls = Ms + TA_Q;
    const int tid = threadIdx.x, warp = tid >> 5, hh = blockIdx.y;
    const ta_tile tl = ta_where(k, v, ldk, grp, HD, n, pos0, t, lens, tiles_per_seq);
    const int r0 = tl.r0, nrows = tl.nrows, klen = tl.klen;
    const size_t grow0 = tl.grow0;
    const float *kb = tl.kb, *vb = tl.vb;
    for (int i = tid; i < TA_Q * HD; i += blockDim.x) {
        int r = i / HD, c = i % HD;
        Qh[r * HS + c] = sat_half(r < nrows ? q[(grow0 + r) * ldq + (size_t)hh * HD + c] : 0.0f);
        O[r * OS + c] = 0.0f;
    }
    if (tid < TA_Q) {
        Ms[tid] = -INFINITY;
        Ls[tid] = 0.0f;
    }
    /* softmax: row sr, its 16 keys from column 16 * sub */
    const int sr = tid >> 2, sub = tid & 3;
    const int lim = sr >= nrows ? 0 : lens ? (r0 + sr < klen ? klen : 0) : pos0 + r0 + sr + 1;
    for (int kt = 0; kt < klen; kt += TA_K) {
        __syncthreads(); /* Qh, O ready; the last tile's Kh, Vh, Ph read */
        for (int i = tid; i < TA_K * HD; i += blockDim.x) {
            int j = i / HD, c = i % HD, key = kt + j, ok = key < klen;
            Kh[j * HS + c] = sat_half(ok ? kb[(size_t)key * ldk + c] : 0.0f);
            Vh[j * HS + c] = sat_half(ok ? vb[(size_t)key * ldk + c] : 0.0f);
        }
        __syncthreads();
        { /* S = Q Kᵀ: warp w, row block w / 2, column blocks 2 (w % 2) and 2 (w % 2) + 1 */
            const int mb = warp >> 1;
#pragma unroll
            for (int x = 0; x < 2; x++) {
                const int nb = (warp & 1) * 2 + x;
                wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
                wmma::fill_fragment(acc, 0.0f); /* Kᵀ: K's rows read column-major */
                mma_16<wmma::col_major>(acc, Qh + mb * 16 * HS, HS, Kh + nb * 16 * HS, HS, 16, NC);
                wmma::store_matrix_sync(S + mb * 16 * SS + nb * 16, acc, SS, wmma::mem_row_major);
            }
        }
        __syncthreads();
        { /* the online softmax of row sr over this tile; O's row rescaled */
            float sv[16], mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 16; j++) {
                int key = kt + sub * 16 + j;
                sv[j] = key < lim ? scale * S[sr * SS + sub * 16 + j] : -INFINITY;
                mx = fmaxf(mx, sv[j]);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mo = Ms[sr], mn = fmaxf(mo, mx), ps = 0.0f;
            float corr = mn == -INFINITY ? 1.0f : expf(mo - mn);
#pragma unroll
            for (int j = 0; j < 16; j++) {
                float p = sv[j] == -INFINITY ? 0.0f : expf(sv[j] - mn);
                Ph[sr * PS + sub * 16 + j] = __float2half_rn(p);
                ps += p;
            }
            ps += __shfl_xor_sync(0xffffffffu, ps, 1);
            ps += __shfl_xor_sync(0xffffffffu, ps, 2);
            for (int c = sub; c < HD; c += 4) O[sr * OS + c] *= corr;
            __syncwarp();
            if (sub == 0) {
                Ms[sr] = mn;
                Ls[sr] = Ls[sr] * corr + ps;
            }
        }
        __syncthreads();
        { /* O += P V: warp w, row block w / 2, column blocks (w % 2) + 2 i */
            const int mb = warp >> 1;
            for (int jb = warp & 1; jb < NC; jb += 2) {
                wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
                wmma::load_matrix_sync(acc, O + mb * 16 * OS + jb * 16, OS, wmma::mem_row_major);
                mma_16<wmma::row_major>(acc, Ph + mb * 16 * PS, PS, Vh + jb * 16, HS, 16 * HS, TA_K / 16);
                wmma::store_matrix_sync(O + mb * 16 * OS + jb * 16, acc, OS, wmma::mem_row_major);
            }
        }
    }
    __syncthreads();
    for (int i = tid; i < nrows * HD; i += blockDim.x) {
        int r = i / HD, c = i % HD;
        float l = Ls[r];
        out[(grow0 + r) * ldq + (size_t)hh * HD + c] = l > 0.0f ? O[r * OS + c] / l : 0.0f;
    }
}

/* ta_launch: the tiled kernel for head dim hd (f32, or on tensor cores with
 * DOCENT_CUDA_ATTN=mma); 0 when it has no variant for it (or tiling is
 * off), and the caller uses k_attn */
static int ta_launch(cu_ctx *c, dim3 grid, float *out, const float *q, const float *k,
                     const float *v, int ldq, int ldk, int grp, int hd, float scale, int n,
                     int pos0, int t, const int32_t *lens, int tps)
{
    if (!c->tiled_ok || hd % 16) return 0;
#define TA_CASE(nc)                                                                          \
    case nc:                                                                                 \
        if (c->attn_mma)                                                                     \
            k_attn_mma<nc><<<grid, 256, tm_smem(nc), c->st>>>(out, q, k, v, ldq, ldk, grp, scale, \
                                                              n, pos0, t, lens, tps);        \
        else                                                                                 \
            k_attn_tiled<nc><<<grid, 256, ta_smem(nc), c->st>>>(out, q, k, v, ldq, ldk, grp, \
                                                                scale, n, pos0, t, lens, tps); \
        return 1;
    switch (hd / 16) {
        TA_CASE(2)
        TA_CASE(4)
        TA_CASE(5)
        TA_CASE(6)
        TA_CASE(8)
    default:
        return 0;
    }
#undef TA_CASE
}

/*
 * Decode attention, one launch for a step's rows: row r (one query) attends
 * over its own cache kcs[r], vcs[r] at positions 0..pos[r].  The grid is
 * (rows, heads, splits) whatever the lengths, so a recorded step replays at
 * any length: split z takes the z-th share of the row's keys (at least
 * ATT_DEC_MIN_SPAN of them; shares past the end are empty).  With one split
 * the result goes to out, else to part for k_attn_merge.
 */
__global__ void __launch_bounds__(ATT_WARPS * 32)
    k_attn_dec(float *out, const float *q, const float *const *kcs, const float *const *vcs,
               const int32_t *pos, int grp, int ldk, int hd, float scale, float *part)
{
    const int r = blockIdx.x, hh = blockIdx.y, nsplit = gridDim.z, ldq = gridDim.y * hd;
    const int nk = pos[r] + 1, kv = hh / grp;
    const float *qp = q + (size_t)r * ldq + (size_t)hh * hd;
    const float *kp = kcs[r] + (size_t)kv * hd, *vp = vcs[r] + (size_t)kv * hd;
    if (nsplit == 1) {
        attn_keys(out + (size_t)r * ldq + (size_t)hh * hd, NULL, qp, kp, vp, ldk, hd, scale, 0, nk);
        return;
    }
    int span = (nk + nsplit - 1) / nsplit;
    span = span < ATT_DEC_MIN_SPAN ? ATT_DEC_MIN_SPAN : span;
    int j0 = blockIdx.z * span;
    j0 = j0 < nk ? j0 : nk;
    int j1 = j0 + span < nk ? j0 + span : nk;
    float *pp = part + ((size_t)(r * gridDim.y + hh) * nsplit + blockIdx.z) * (hd + 2);
    attn_keys(NULL, pp, qp, kp, vp, ldk, hd, scale, j0, j1);
}

/* a decode step's new keys and values into their caches: row r at pos[r]
 * (positions ldc floats apart) */
__global__ void k_kv_store(float *const *kcs, float *const *vcs, const int32_t *pos,
                           const float *kn, const float *vn, int kvd, size_t ldc)
{
    const int r = blockIdx.x;
    float *kd = kcs[r] + (size_t)pos[r] * ldc, *vd = vcs[r] + (size_t)pos[r] * ldc;
    for (int e = threadIdx.x; e < kvd; e += blockDim.x) {
        kd[e] = kn[(size_t)r * kvd + e];
        vd[e] = vn[(size_t)r * kvd + e];
    }
}

/* a prompt chunk's keys and values into one cache: row r at position pos0 + r */
__global__ void k_kv_rows(float *kc, float *vc, size_t ldc, int pos0, const float *kn,
                          const float *vn, int kvd)
{
    const int r = blockIdx.x;
    float *kd = kc + (size_t)(pos0 + r) * ldc, *vd = vc + (size_t)(pos0 + r) * ldc;
    for (int e = threadIdx.x; e < kvd; e += blockDim.x) {
        kd[e] = kn[(size_t)r * kvd + e];
        vd[e] = vn[(size_t)r * kvd + e];
    }
}

/* merge the nsplit partial results of k_attn for one (query row, head) */
__global__ void k_attn_merge(float *out, const float *part, int ldq, int hd, int nsplit)
{
    const int r = blockIdx.x, hh = blockIdx.y;
    const float *pp = part + (size_t)(r * gridDim.y + hh) * nsplit * (hd + 2);
    float mx = -INFINITY, sum = 0.0f;
    for (int z = 0; z < nsplit; z++) mx = fmaxf(mx, pp[(size_t)z * (hd + 2)]);
    for (int z = 0; z < nsplit; z++) {
        const float *p = pp + (size_t)z * (hd + 2);
        if (p[1] > 0.0f) sum += p[1] * expf(p[0] - mx);
    }
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    float *o = out + (size_t)r * ldq + (size_t)hh * hd;
    for (int e = threadIdx.x; e < hd; e += blockDim.x) {
        float a = 0.0f;
        for (int z = 0; z < nsplit; z++) {
            const float *p = pp + (size_t)z * (hd + 2);
            if (p[1] > 0.0f) a += p[2 + e] * expf(p[0] - mx);
        }
        o[e] = a * inv;
    }
}

/*
 * Greedy pick, one block per row: the repetition penalty over the row's
 * distinct recent ids (in place, as sampler_pick does on the host), then the
 * first maximum: each thread keeps the first maximum of its strided share,
 * and the shares merge by (larger value, then lower index).
 */
/* the repetition penalty of a row's recent ids, in place (each distinct id
 * once, so no two threads touch one logit); ends with a barrier */
__device__ void pick_penalize(float *x, int vocab, const int32_t *rc, int nrec, float p)
{
    if (p != 1.0f && p > 0.0f)
        for (int i = threadIdx.x; i < nrec; i += blockDim.x) {
            int32_t id = rc[i];
            int seen = id < 0 || id >= vocab;
            for (int j = 0; j < i && !seen; j++) seen = rc[j] == id;
            if (!seen) x[id] = x[id] > 0 ? x[id] / p : x[id] * p;
        }
    __syncthreads();
}

__device__ __forceinline__ bool pick_sampled(const llm_pick &p)
{
    return p.temperature > 0.0f && p.top_k != 1;
}

/* greedy rows (sampled ones are k_sample's): the penalty, then the first
 * maximum */
__global__ void k_pick(int32_t *out, float *logits, int vocab, const int32_t *recent,
                       const int32_t *nrec, int rmax, const llm_pick *pk)
{
    __shared__ float s_v[32];
    __shared__ int s_i[32];
    const int r = blockIdx.x, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (pick_sampled(pk[r])) return;
    float *x = logits + (size_t)r * vocab;
    pick_penalize(x, vocab, recent + (size_t)r * rmax, nrec[r], pk[r].penalty);
    float bv = -INFINITY;
    int bi = INT_MAX;
    if ((int)threadIdx.x < vocab) bv = x[threadIdx.x], bi = threadIdx.x;
    for (int i = threadIdx.x + blockDim.x; i < vocab; i += blockDim.x)
        if (x[i] > bv) bv = x[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (lane == 0) s_v[w] = bv, s_i[w] = bi;
    __syncthreads();
    if (w) return;
    int nw = (blockDim.x + 31) >> 5;
    bv = lane < nw ? s_v[lane] : -INFINITY;
    bi = lane < nw ? s_i[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (lane == 0) out[r] = bi;
}

/*
 * Sampling on the device (k_sample), the order of sample.c's pick_row over
 * one row per block of PICK_THREADS.  Candidates are ranked by a 64-bit key,
 * the logit's bits made order-preserving above the complement of the id, so
 * "best first, ties to the lower id" is plain key order and every set the
 * sampler keeps is the keys >= some threshold.  Thresholds come from radix
 * selection, a byte of the key per pass (a 256-bin histogram in shared
 * memory, one atomic per distinct bin per warp: bin_add), stopping as soon as
 * the remaining bin is decided:
 *   top-k: the key with exactly k keys at or above it (counts);
 *   min-p: the least key whose probability is at least min_p times the best's;
 *   top-p and the draw: the first key, best first, at which the running mass
 *   reaches a target (masses in double; the last key when none does).
 * Probabilities are sample.c's: (float)(expf((l - max) / T) / Z), Z the
 * double sum over the top-k.
 */
#define PICK_THREADS 1024
typedef unsigned long long u64;

typedef struct pick_sh {
    int cnt[256];
    double mass[256];
    double red[32];
    u64 redk[32];
    int bin, n;
    double above;
} pick_sh;

__device__ __forceinline__ u64 rank_key(float l, int i)
{
    unsigned u = __float_as_uint(l);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((u64)u << 32) | (unsigned)~(unsigned)i;
}

__device__ __forceinline__ int key_id(u64 k) { return (int)~(unsigned)(k & 0xffffffffu); }

__device__ double blk_sum(double v, pick_sh *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh->red[threadIdx.x >> 5] = v;
    __syncthreads();
    double t = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += sh->red[w];
    return t;
}

/* the block's largest (big=1) or smallest key */
__device__ u64 blk_key(u64 v, int big, pick_sh *sh)
{
    for (int o = 16; o > 0; o >>= 1) {
        u64 ov = __shfl_xor_sync(0xffffffffu, v, o);
        v = big ? (ov > v ? ov : v) : (ov < v ? ov : v);
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh->redk[threadIdx.x >> 5] = v;
    __syncthreads();
    u64 t = sh->redk[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++)
        t = big ? (sh->redk[w] > t ? sh->redk[w] : t) : (sh->redk[w] < t ? sh->redk[w] : t);
    return t;
}

/* a warp's candidates into the histogram: bin (-1: none) gets a count and,
 * with mass, val.  One atomic per distinct bin in the warp, its lanes' values
 * summed by shuffles first (many lanes share the few bins of a pass's top
 * byte; per-lane double atomics on one address would serialise).  Every lane
 * of the warp calls it. */
__device__ __forceinline__ void bin_add(pick_sh *sh, int bin, double val, bool mass)
{
    const int lane = threadIdx.x & 31;
    unsigned left = __ballot_sync(0xffffffffu, bin >= 0);
    while (left) {
        int lead = __ffs(left) - 1;
        int b = __shfl_sync(0xffffffffu, bin, lead);
        unsigned same = __ballot_sync(0xffffffffu, bin == b);
        double v = bin == b ? val : 0.0;
        if (mass)
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == lead) {
            atomicAdd(&sh->cnt[b], __popc(same));
            if (mass) atomicAdd(&sh->mass[b], v);
        }
        left &= ~same;
    }
}

/* a candidate's probability (sample.c's arithmetic) */
__device__ __forceinline__ float pick_prob(float l, float lmax, float temp, double z)
{
    return (float)((double)expf((l - lmax) / temp) / z);
}

/* the key with exactly m keys of the row at or above it (1 <= m <= vocab) */
__device__ u64 sel_count(const float *x, int vocab, int m, pick_sh *sh)
{
    u64 prefix = 0, mask = 0;
    int need = m;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) sh->cnt[b] = 0;
        __syncthreads();
        for (int base = 0; base < vocab; base += blockDim.x) { /* whole warps, for bin_add */
            int i = base + threadIdx.x, bin = -1;
            if (i < vocab) {
                u64 k = rank_key(x[i], i);
                if ((k & mask) == prefix) bin = (int)((k >> shift) & 255);
            }
            bin_add(sh, bin, 0.0, false);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int cum = 0, b = 255;
            for (; b > 0 && cum + sh->cnt[b] < need; b--) cum += sh->cnt[b];
            sh->bin = b;
            sh->n = sh->cnt[b];
            sh->above = cum;
        }
        __syncthreads();
        need -= (int)sh->above;
        prefix |= (u64)sh->bin << shift;
        mask |= (u64)255 << shift;
        if (sh->n == need) break; /* every key under this prefix is in: prefix is the threshold */
        __syncthreads();
    }
    __syncthreads();
    return prefix;
}

/* among keys >= lo, best first: the first key at which the running total of
 * probabilities reaches target, or the last key when none does */
__device__ u64 sel_mass(const float *x, int vocab, u64 lo, double target, float lmax, float temp,
                        double z, pick_sh *sh)
{
    u64 prefix = 0, mask = 0;
    double above = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) sh->cnt[b] = 0, sh->mass[b] = 0;
        __syncthreads();
        for (int base = 0; base < vocab; base += blockDim.x) { /* whole warps, for bin_add */
            int i = base + threadIdx.x, bin = -1;
            double pv = 0.0;
            if (i < vocab) {
                u64 k = rank_key(x[i], i);
                if (k >= lo && (k & mask) == prefix) {
                    bin = (int)((k >> shift) & 255);
                    pv = (double)pick_prob(x[i], lmax, temp, z);
                }
            }
            bin_add(sh, bin, pv, true);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double cum = above, last_cum = above;
            int b = 255, last = -1, found = -1;
            for (; b >= 0; b--) {
                if (!sh->cnt[b]) continue;
                last = b, last_cum = cum;
                if (cum + sh->mass[b] >= target) {
                    found = b;
                    break;
                }
                cum += sh->mass[b];
            }
            sh->bin = found >= 0 ? found : last;
            sh->above = found >= 0 ? cum : last_cum;
            sh->n = sh->bin >= 0 ? sh->cnt[sh->bin] : 0;
        }
        __syncthreads();
        if (sh->bin < 0) return lo; /* an empty set: cannot happen (the best key is in) */
        above = sh->above;
        prefix |= (u64)sh->bin << shift;
        mask |= (u64)255 << shift;
        if (sh->n == 1) { /* one key left under the prefix: find it */
            u64 best = 0;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
                u64 k = rank_key(x[i], i);
                if (k >= lo && (k & mask) == prefix) best = k;
            }
            return blk_key(best, 1, sh);
        }
        __syncthreads();
    }
    return prefix;
}

__global__ void __launch_bounds__(PICK_THREADS)
    k_sample(int32_t *out, float *logits, int vocab, const int32_t *recent, const int32_t *nrec,
             int rmax, const llm_pick *pk)
{
    __shared__ pick_sh sh;
    const int r = blockIdx.x;
    if (!pick_sampled(pk[r])) return;
    const int top_k = pk[r].top_k;
    const float top_p = pk[r].top_p, min_p = pk[r].min_p;
    const double u = pk[r].u;
    float *x = logits + (size_t)r * vocab;
    pick_penalize(x, vocab, recent + (size_t)r * rmax, nrec[r], pk[r].penalty);
    /* the best candidate */
    u64 kbest = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        u64 k = rank_key(x[i], i);
        kbest = k > kbest ? k : kbest;
    }
    kbest = blk_key(kbest, 1, &sh);
    const float lmax = x[key_id(kbest)], temp = pk[r].temperature;
    /* top-k, then the softmax's sum over it */
    u64 lo = top_k > 0 && top_k < vocab ? sel_count(x, vocab, top_k, &sh) : 0;
    double z = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        if (rank_key(x[i], i) >= lo) z += (double)expf((x[i] - lmax) / temp);
    z = blk_sum(z, &sh);
    /* min-p: the least key whose probability reaches min_p of the best's */
    if (min_p > 0.0f) {
        float floor_p = min_p * (float)(1.0 / z);
        u64 least = ~0ull;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            u64 k = rank_key(x[i], i);
            if (k >= lo && k < least && pick_prob(x[i], lmax, temp, z) >= floor_p) least = k;
        }
        least = blk_key(least, 0, &sh);
        lo = least > lo ? least : lo;
    }
    /* top-p: the fewest best whose mass reaches top_p */
    if (top_p > 0.0f && top_p < 1.0f)
        lo = sel_mass(x, vocab, lo, (double)top_p, lmax, temp, z, &sh);
    /* the draw over what is kept */
    double mass = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        if (rank_key(x[i], i) >= lo) mass += (double)pick_prob(x[i], lmax, temp, z);
    mass = blk_sum(mass, &sh);
    u64 k = sel_mass(x, vocab, lo, u * mass, lmax, temp, z, &sh);
    if (threadIdx.x == 0) out[r] = key_id(k);
}

/* erfc form, as cpu_gelu1: keeps the negative tail's relative precision */
__global__ void k_gelu(float *x, size_t n)
{
    GRID_STRIDE(i, n) x[i] = 0.5f * x[i] * erfcf(-x[i] * 0.70710678118654752f);
}

__global__ void k_swiglu(float *out, const float *g, const float *u, size_t n)
{
    GRID_STRIDE(i, n) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void k_add(float *y, const float *a, const float *b, size_t n)
{
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

__global__ void k_softmax(float *x, int d)
{
    __shared__ float sh[32];
    float *xr = x + (size_t)blockIdx.x * d, mx = -INFINITY, sum = 0.0f;
    for (int e = threadIdx.x; e < d; e += blockDim.x) mx = fmaxf(mx, xr[e]);
    mx = block_max(mx, sh);
    for (int e = threadIdx.x; e < d; e += blockDim.x) sum += xr[e] = expf(xr[e] - mx);
    float inv = 1.0f / block_sum(sum, sh);
    for (int e = threadIdx.x; e < d; e += blockDim.x) xr[e] *= inv;
}

/* ---- weights kept quantized (DOCENT_CUDA_QUANT=keep) ---------------------
 *
 * Q4_0, Q4_1 and Q8_0 rows stay in the file's blocks of 32 weights (18, 20
 * and 34 bytes), read by: k_gemv_q, a matrix-vector product for up to
 * QV_ROWS activation rows (decode), one warp per output row, each lane
 * dequantizing whole blocks in registers and multiplying them with every
 * activation row in f32; k_dequant_q, which expands a weight to f16 for a
 * cuBLAS GEMM when more rows come (prefill); and k_get_rows_q.  The weights
 * then take 0.56 (Q4_0) to 1.06 (Q8_0) bytes each instead of 2.
 */
#define QV_ROWS 8

template <int T> struct qblk;
template <> struct qblk<LLM_T_Q4_0> { static constexpr int bytes = 18; };
template <> struct qblk<LLM_T_Q4_1> { static constexpr int bytes = 20; };
template <> struct qblk<LLM_T_Q8_0> { static constexpr int bytes = 34; };

/* the 32 weights of one block, as llm_dequantize_ref computes them */
template <int T> __device__ __forceinline__ void dq32(const uint8_t *b, float *w)
{
    const uint16_t *h = (const uint16_t *)b; /* blocks are 2-byte aligned */
    float d = __half2float(__ushort_as_half(h[0]));
    if (T == LLM_T_Q8_0) {
#pragma unroll
        for (int j = 0; j < 16; j++) {
            uint16_t two = h[1 + j];
            w[2 * j] = (float)(int8_t)(two & 0xff) * d;
            w[2 * j + 1] = (float)(int8_t)(two >> 8) * d;
        }
    } else {
        float mn = T == LLM_T_Q4_1 ? __half2float(__ushort_as_half(h[1])) : 0.0f;
        const uint16_t *qs = h + (T == LLM_T_Q4_1 ? 2 : 1);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            uint16_t two = qs[j];
            int b0 = two & 0xff, b1 = two >> 8;
            if (T == LLM_T_Q4_1) {
                w[2 * j] = (float)(b0 & 15) * d + mn;
                w[2 * j + 16] = (float)(b0 >> 4) * d + mn;
                w[2 * j + 1] = (float)(b1 & 15) * d + mn;
                w[2 * j + 17] = (float)(b1 >> 4) * d + mn;
            } else {
                w[2 * j] = (float)((b0 & 15) - 8) * d;
                w[2 * j + 16] = (float)((b0 >> 4) - 8) * d;
                w[2 * j + 1] = (float)((b1 & 15) - 8) * d;
                w[2 * j + 17] = (float)((b1 >> 4) - 8) * d;
            }
        }
    }
}

/* y (n, rows) = x (n, cols) . Wᵀ for n <= QV_ROWS; 8 warps per block, one row each */
template <int T>
__global__ void __launch_bounds__(256)
    k_gemv_q(float *y, const float *x, const uint8_t *w, size_t row_bytes, int rows, int cols, int n)
{
    const int r = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return; /* the whole warp */
    const uint8_t *wr = w + (size_t)r * row_bytes;
    float acc[QV_ROWS];
#pragma unroll
    for (int t = 0; t < QV_ROWS; t++) acc[t] = 0.0f;
    for (int b = lane; b < cols / 32; b += 32) {
        float wv[32];
        dq32<T>(wr + (size_t)b * qblk<T>::bytes, wv);
#pragma unroll
        for (int t = 0; t < QV_ROWS; t++) {
            if (t >= n) break;
            const float4 *xt = (const float4 *)(x + (size_t)t * cols + (size_t)b * 32);
            float s = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float4 xv = xt[j];
                s = fmaf(wv[4 * j], xv.x, s);
                s = fmaf(wv[4 * j + 1], xv.y, s);
                s = fmaf(wv[4 * j + 2], xv.z, s);
                s = fmaf(wv[4 * j + 3], xv.w, s);
            }
            acc[t] += s;
        }
    }
#pragma unroll
    for (int t = 0; t < QV_ROWS; t++) {
        if (t >= n) break;
        float s = acc[t];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) y[(size_t)t * rows + r] = s;
    }
}

/* the whole weight as f16 (rows x cols), one thread per block of 32 */
template <int T>
__global__ void k_dequant_q(__half *o, const uint8_t *w, size_t row_bytes, int rows, int cols)
{
    const size_t nb = (size_t)cols / 32;
    GRID_STRIDE(i, (size_t)rows * nb)
    {
        size_t r = i / nb, b = i % nb;
        float wv[32];
        dq32<T>(w + r * row_bytes + b * qblk<T>::bytes, wv);
        __half *or_ = o + r * cols + b * 32;
#pragma unroll
        for (int j = 0; j < 32; j++) or_[j] = sat_half(wv[j]);
    }
}

/* rows ids[i] of a quantized table, in f32 (zeros for an id out of range) */
template <int T>
__global__ void k_get_rows_q(float *out, const uint8_t *tab, size_t row_bytes, const int32_t *ids,
                             int64_t rows, int64_t cols)
{
    const int i = blockIdx.x;
    const int32_t id = ids[i];
    float *o = out + (size_t)i * cols;
    for (int64_t b = threadIdx.x; b < cols / 32; b += blockDim.x) {
        float wv[32];
        if (id >= 0 && id < rows) dq32<T>(tab + (size_t)id * row_bytes + b * qblk<T>::bytes, wv);
        else
            for (int j = 0; j < 32; j++) wv[j] = 0.0f;
        for (int j = 0; j < 32; j++) o[b * 32 + j] = wv[j];
    }
}

#define Q_DISPATCH(type, launch)                                                              \
    switch (type) {                                                                           \
    case LLM_T_Q4_0: { constexpr int QT = LLM_T_Q4_0; launch; } break;                       \
    case LLM_T_Q4_1: { constexpr int QT = LLM_T_Q4_1; launch; } break;                       \
    default: { constexpr int QT = LLM_T_Q8_0; launch; } break;                               \
    }

/* ---- scratch and staging ------------------------------------------------ */

/* grow_dev: *p to at least size bytes (doubling); waits for the stream first
 * since queued work may still read the old buffer.  Recorded steps hold the
 * addresses of the buffers they use (graphed: xh, att, wdq), so moving one of
 * those records them again (scratch_gen); idx and picks are used outside
 * recordings only.  Inside a step being recorded or replayed a buffer cannot
 * move: the step is marked bad. */
static int grow_dev(cu_ctx *c, void **p, size_t *have, size_t size, int graphed)
{
    if (size <= *have) return DOC_OK;
    if (c->g_mode == G_CAPTURE || c->g_mode == G_REPLAY) {
        c->g_bad = 1;
        return DOC_ELIMIT;
    }
    size_t want = *have * 2 > size ? *have * 2 : size;
    if (CU_CHECK(c, cudaStreamSynchronize(c->st))) return c->err_rc;
    dev_free(*p);
    *p = NULL;
    *have = 0;
    if (graphed) c->scratch_gen++; /* recorded steps hold its address: record them again */
    if (dev_malloc(p, want) != cudaSuccess) {
        cudaGetLastError();
        *p = NULL;
        char msg[160];
        snprintf(msg, sizeof msg, "cuda: out of device memory growing a scratch buffer to %zu bytes",
                 want);
        defer(c, DOC_ENOMEM, msg);
        return DOC_ENOMEM;
    }
    *have = want;
    return DOC_OK;
}

#define ARENA_ALIGN(b) (((b) + 15) & ~(size_t)15)

/* mix: v into a step's running hash (FNV-1a over 64-bit words) */
static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

/* stage_graph: stage() inside a recorded or replayed step: the next slice of
 * the step's arena; a recording queues its copy, a replay only refills the
 * pinned side (the recording copies it when launched) */
static const void *stage_graph(cu_ctx *c, const void *host, size_t bytes)
{
    cu_graph *g = c->g;
    size_t off = c->g_off;
    c->g_off += ARENA_ALIGN(bytes);
    c->g_hash = mix(c->g_hash, bytes);
    if (c->g_off > g->arena) {
        c->g_bad = 1;
        return NULL;
    }
    memcpy((char *)g->host + off, host, bytes);
    if (c->g_mode == G_CAPTURE &&
        CU_CHECK(c, cudaMemcpyAsync((char *)g->dev + off, (char *)g->host + off, bytes,
                                    cudaMemcpyHostToDevice, c->st))) {
        c->g_bad = 1;
        return NULL;
    }
    return (char *)g->dev + off;
}

/* stage: bytes of host data (ids, positions, pointers) onto the device (see
 * the file comment); the device pointer, or NULL with a deferred error */
static const void *stage(cu_ctx *c, const void *host, size_t bytes)
{
    if (!bytes) bytes = sizeof(int32_t);
    if (c->g_mode == G_CAPTURE || c->g_mode == G_REPLAY) return stage_graph(c, host, bytes);
    if (c->g_mode == G_WARM) c->g_off += ARENA_ALIGN(bytes); /* the arena a recording needs */
    if (bytes > c->stage_size) {
        size_t want = bytes > 65536 ? bytes * 2 : 65536;
        if (CU_CHECK(c, cudaStreamSynchronize(c->st))) return NULL;
        for (int i = 0; i < CU_STAGE_SLOTS; i++) {
            host_free(c->stage[i]);
            c->stage[i] = NULL;
        }
        c->stage_size = 0;
        for (int i = 0; i < CU_STAGE_SLOTS; i++)
            if (CU_CHECK(c, host_malloc(&c->stage[i], want))) return NULL;
        c->stage_size = want;
    }
    /* the same bytes as the last upload (rope's positions, layer after layer):
     * idx already holds them, or will once the queued copy has run */
    if (bytes == c->idx_n && !memcmp(host, c->idx_host, bytes)) return c->idx;
    if (bytes > c->idx_size) c->idx_n = 0;
    if (grow_dev(c, (void **)&c->idx, &c->idx_size, bytes, 0)) return NULL;
    if (bytes > c->idx_host_cap) {
        void *h = realloc(c->idx_host, bytes);
        if (!h) {
            defer(c, DOC_ENOMEM, "cuda: out of host memory");
            return NULL;
        }
        c->idx_host = (int32_t *)h;
        c->idx_host_cap = bytes;
    }
    int s = c->stage_next;
    c->stage_next = (s + 1) % CU_STAGE_SLOTS;
    if (CU_CHECK(c, cudaEventSynchronize(c->stage_ev[s]))) return NULL;
    memcpy(c->stage[s], host, bytes);
    if (CU_CHECK(c, cudaMemcpyAsync(c->idx, c->stage[s], bytes, cudaMemcpyHostToDevice, c->st)) ||
        CU_CHECK(c, cudaEventRecord(c->stage_ev[s], c->st))) {
        c->idx_n = 0;
        return NULL;
    }
    memcpy(c->idx_host, host, bytes);
    c->idx_n = bytes;
    return c->idx;
}

static const int32_t *stage_idx(cu_ctx *c, const void *host, size_t n)
{
    return (const int32_t *)stage(c, host, n * sizeof(int32_t));
}

/* pack_buf: the host scratch for an op's packed arguments, at least bytes */
static void *pack_buf(cu_ctx *c, size_t bytes)
{
    if (bytes > c->pack_size) {
        void *p = realloc(c->pack, bytes);
        if (!p) {
            defer(c, DOC_ENOMEM, "cuda: out of host memory");
            return NULL;
        }
        c->pack = p;
        c->pack_size = bytes;
    }
    return c->pack;
}

/* ---- recorded steps (CUDA graphs) ---------------------------------------
 *
 * graph_begin(key) .. graph_end bracket a decode step.  The first step under
 * a key runs as usual and counts the bytes its host arrays take; the second
 * is recorded by stream capture (its host arrays staged through the key's
 * arena) and then launched; later ones are replayed: each op only refills its
 * slice of the arena and mixes its arguments into a hash, and graph_end
 * launches the recording when the hash matches the recording's, else drops
 * it and has the caller run the step again.  A recording also goes when a
 * scratch buffer it uses moves.  DOCENT_CUDA_GRAPHS=0 turns all this off.
 */

enum { OP_MATMUL = 1, OP_GET_ROWS, OP_RMSNORM, OP_LAYERNORM, OP_ROPE, OP_ATTN_CAUSAL,
       OP_ATTN_BIDIR, OP_GELU, OP_SWIGLU, OP_ADD, OP_COPY, OP_SOFTMAX, OP_ATTN_DECODE };

static uint64_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* rec: inside a recorded or replayed step, mix the op and its arguments into
 * the step's hash; 1 when the op must not launch (a replay) */
static int rec_(cu_ctx *c, std::initializer_list<uint64_t> v)
{
    if (c->g_mode != G_CAPTURE && c->g_mode != G_REPLAY) return 0;
    for (uint64_t x : v) c->g_hash = mix(c->g_hash, x);
    return c->g_mode == G_REPLAY;
}
#define REC(c, ...) rec_((c), {__VA_ARGS__})
#define P(p) ((uint64_t)(uintptr_t)(p))

/* outside_graph: 1 for calls that may run (not inside a recorded step) */
static int outside_graph(cu_ctx *c, const char *what)
{
    if (c->g_mode != G_CAPTURE && c->g_mode != G_REPLAY) return 1;
    c->g_bad = 1;
    char msg[128];
    snprintf(msg, sizeof msg, "cuda %s: not allowed inside a graph step", what);
    defer(c, DOC_ESTATE, msg);
    return 0;
}

static void graph_drop(cu_graph *g)
{
    if (!g->exec) return;
    cudaEventSynchronize(g->done);
    cudaGraphExecDestroy(g->exec);
    cudaGetLastError();
    g->exec = NULL;
}

/* graph_entry: the entry for key, made from the least recently used one */
static cu_graph *graph_entry(cu_ctx *c, uint64_t key)
{
    cu_graph *g = NULL;
    for (int i = 0; i < CU_GRAPHS; i++) {
        cu_graph *e = &c->graphs[i];
        if (e->valid && e->key == key) {
            g = e;
            break;
        }
        if (!g || (g->valid && (!e->valid || e->used < g->used))) g = e;
    }
    if (!g->valid || g->key != key) {
        graph_drop(g);
        if (!g->done && CU_CHECK(c, cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming)))
            return NULL;
        g->valid = 1;
        g->key = key;
        g->runs = g->fails = 0;
        g->need = 0;
    }
    g->used = ++c->g_clock;
    return g;
}

static void cu_graph_begin(llm_backend *be, uint64_t key)
{
    cu_ctx *c = ctx_of(be);
    if (!c->graphs_on || c->g_mode || use(c)) return;
    cu_graph *g = graph_entry(c, key);
    if (!g || g->fails >= 3) return;
    c->g = g;
    c->g_hash = 0xcbf29ce484222325ull;
    c->g_off = 0;
    c->g_bad = 0;
    c->g_err0 = c->err_rc;
    if (g->exec && g->gen != c->scratch_gen) graph_drop(g);
    if (g->exec) { /* its last launch must be done with the arena before we refill it */
        if (!CU_CHECK(c, cudaEventSynchronize(g->done))) c->g_mode = G_REPLAY;
        return;
    }
    if (!g->runs) {
        c->g_mode = G_WARM;
        return;
    }
    if (g->arena < g->need) {
        host_free(g->host);
        dev_free(g->dev);
        g->host = g->dev = NULL;
        g->arena = 0;
        if (host_malloc(&g->host, g->need) != cudaSuccess ||
            dev_malloc(&g->dev, g->need) != cudaSuccess) {
            cudaGetLastError();
            g->fails = 3; /* no memory for it: this key stays eager */
            return;
        }
        g->arena = g->need;
    }
    pthread_mutex_lock(&cu_dev_lock); /* until cudaStreamEndCapture: see dev_malloc */
    if (cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        pthread_mutex_unlock(&cu_dev_lock);
        cudaGetLastError();
        g->fails++;
        return;
    }
    c->g_mode = G_CAPTURE;
}

static int cu_graph_end(llm_backend *be, doc_err *err)
{
    cu_ctx *c = ctx_of(be);
    int mode = c->g_mode;
    cu_graph *g = c->g;
    c->g_mode = G_NONE;
    c->g = NULL;
    if (mode == G_NONE) return DOC_OK;
    if (mode == G_WARM) {
        g->need = c->g_off;
        g->runs++;
        return DOC_OK;
    }
    if (mode == G_CAPTURE) {
        cudaGraph_t graph = NULL;
        cudaError_t e = cudaStreamEndCapture(c->st, &graph);
        pthread_mutex_unlock(&cu_dev_lock);
        int bad = e != cudaSuccess || c->g_bad || c->err_rc != c->g_err0;
        if (!bad && cudaGraphInstantiate(&g->exec, graph, 0) != cudaSuccess) {
            g->exec = NULL;
            bad = 1;
        }
        if (graph) cudaGraphDestroy(graph);
        if (bad) { /* nothing ran: the caller runs the step as usual */
            cudaGetLastError();
            if (!c->g_err0) c->err_rc = 0;
            if (c->g_off > g->need) g->need = c->g_off; /* the arena was too small */
            g->fails++;
            c->n_rerun++;
            return LLM_GRAPH_RERUN;
        }
        g->hash = c->g_hash;
        g->staged = c->g_off;
        g->gen = c->scratch_gen;
        g->fails = 0;
        c->n_captured++;
    } else if (c->g_bad || c->g_hash != g->hash || c->g_off != g->staged) {
        graph_drop(g); /* the step changed: record it again next time */
        if (c->g_off > g->need) g->need = c->g_off;
        c->n_rerun++;
        return LLM_GRAPH_RERUN;
    } else {
        c->n_replayed++;
    }
    g->runs++;
    if (CU_CHECK(c, cudaGraphLaunch(g->exec, c->st)) || CU_CHECK(c, cudaEventRecord(g->done, c->st))) {
        int rc = doc_errf(err, c->err_rc, "%s", c->err_msg);
        c->err_rc = 0;
        return rc;
    }
    return DOC_OK;
}

static int cu_mem_info(llm_backend *be, size_t *free_bytes, size_t *total_bytes)
{
    cu_ctx *c = ctx_of(be);
    if (!outside_graph(c, "mem_info") || use(c)) return c->err_rc ? c->err_rc : DOC_EDEVICE;
    if (cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
        cudaGetLastError();
        return DOC_EDEVICE;
    }
    return DOC_OK;
}

static void cu_describe(llm_backend *be, char *buf, size_t size)
{
    cu_ctx *c = ctx_of(be);
    int n = snprintf(buf, size, "cuda device %d, %d SMs; graphs %s: %llu recorded, %llu replayed, %llu run again",
                     c->dev, c->n_sm, c->graphs_on ? "on" : "off", (unsigned long long)c->n_captured,
                     (unsigned long long)c->n_replayed, (unsigned long long)c->n_rerun);
    if (n < 0 || (size_t)n >= size) return;
    if (c->iface.kv_reserve)
        snprintf(buf + n, size - n, "; KV caches grow in %zu MiB blocks: %d caches, %zu MiB mapped, %zu MiB pooled",
                 c->vmm.gran >> 20, c->vmm.n_kv, c->vmm.mapped >> 20, (size_t)c->vmm.n_pool * c->vmm.gran >> 20);
    else
        snprintf(buf + n, size - n, "; KV caches allocated whole");
}

/* ---- memory ------------------------------------------------------------- */

static float *cu_alloc(llm_backend *be, size_t n)
{
    cu_ctx *c = ctx_of(be);
    if (!outside_graph(c, "alloc") || use(c) || n > SIZE_MAX / sizeof(float) - 256) return NULL;
    size_t bytes = n ? n * sizeof(float) : 256;
    void *p = NULL;
    if (dev_malloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError(); /* not sticky: keep it out of later launch checks */
        return NULL;
    }
    if (CU_CHECK(c, cudaMemsetAsync(p, 0, bytes, c->st))) {
        dev_free(p);
        return NULL;
    }
    return (float *)p;
}

/* ---- growing KV caches (driver virtual memory, internal.h) --------------- */

static const char *drv_msg(const cu_ctx *c, CUresult r)
{
    const char *m = NULL;
    if (c->vmm.error_string) c->vmm.error_string(r, &m);
    return m ? m : "unknown driver error";
}

/* vmm_init: the driver's virtual memory calls, when the device has them; 0
 * without (or with DOCENT_CUDA_KV_GROW=0): caches are then allocated whole */
static int vmm_init(cu_ctx *c)
{
    cu_vmm *v = &c->vmm;
    const char *env = getenv("DOCENT_CUDA_KV_GROW");
    if (env && *env == '0') return 0;
    CUresult (*dev_get)(CUdevice *, int) = NULL;
    CUresult (*dev_attr)(int *, CUdevice_attribute, CUdevice) = NULL;
    CUresult (*gran)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags) = NULL;
    const struct { const char *name; void **fn; } syms[] = {
        {"cuDeviceGet", (void **)&dev_get},
        {"cuDeviceGetAttribute", (void **)&dev_attr},
        {"cuMemGetAllocationGranularity", (void **)&gran},
        {"cuMemAddressReserve", (void **)&v->reserve},
        {"cuMemAddressFree", (void **)&v->addr_free},
        {"cuMemCreate", (void **)&v->create},
        {"cuMemRelease", (void **)&v->release},
        {"cuMemMap", (void **)&v->map},
        {"cuMemUnmap", (void **)&v->unmap},
        {"cuMemSetAccess", (void **)&v->access},
        {"cuGetErrorString", (void **)&v->error_string},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion(syms[i].name, syms[i].fn, 12000, cudaEnableDefault, &q) !=
                cudaSuccess ||
            q != cudaDriverEntryPointSuccess || !*syms[i].fn) {
            cudaGetLastError();
            memset(v, 0, sizeof *v);
            return 0;
        }
    }
    CUdevice d = 0;
    int ok = 0;
    v->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    v->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    if (dev_get(&d, c->dev) != CUDA_SUCCESS ||
        dev_attr(&ok, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, d) != CUDA_SUCCESS || !ok ||
        (v->prop.location.id = d,
         gran(&v->gran, &v->prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) != CUDA_SUCCESS) ||
        !v->gran) {
        memset(v, 0, sizeof *v);
        return 0;
    }
    v->acc.location = v->prop.location;
    v->acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    /* the attribute is not the whole story (a virtualised or proxied device
     * may refuse the calls): one block through the whole cycle, or caches
     * are allocated whole */
    CUdeviceptr p = 0;
    CUmemGenericAllocationHandle h = 0;
    int reserved = 0, created = 0, mapped = 0;
    ok = (reserved = v->reserve(&p, v->gran, 0, 0, 0) == CUDA_SUCCESS) &&
         (created = v->create(&h, v->gran, &v->prop, 0) == CUDA_SUCCESS) &&
         (mapped = v->map(p, v->gran, 0, h, 0) == CUDA_SUCCESS) &&
         v->access(p, v->gran, &v->acc, 1) == CUDA_SUCCESS;
    if (mapped && v->unmap(p, v->gran) != CUDA_SUCCESS) ok = 0;
    if (created && v->release(h) != CUDA_SUCCESS) ok = 0;
    if (reserved && v->addr_free(p, v->gran) != CUDA_SUCCESS) ok = 0;
    if (!ok) {
        memset(v, 0, sizeof *v);
        return 0;
    }
    return 1;
}

static int kv_find(const cu_ctx *c, const void *p)
{
    for (int i = 0; i < c->vmm.n_kv; i++)
        if (c->vmm.kv[i].base == (CUdeviceptr)p) return i;
    return -1;
}

/* kv_drop: unmap reservation i (its blocks to the pool or the driver) and
 * free its addresses; the stream has been synchronised */
static void kv_drop(cu_ctx *c, int i)
{
    cu_vmm *v = &c->vmm;
    cu_kv *k = &v->kv[i];
    for (size_t j = 0; j < k->n_h; j++) {
        v->unmap(k->base + j * v->gran, v->gran);
        if (v->n_pool < v->cap_pool && (size_t)(v->n_pool + 1) * v->gran <= CU_KV_POOL)
            v->pool[v->n_pool++] = k->h[j];
        else
            v->release(k->h[j]);
    }
    v->mapped -= k->n_h * v->gran;
    v->addr_free(k->base, k->size);
    free(k->h);
    v->kv[i] = v->kv[--v->n_kv];
}

static float *cu_kv_reserve(llm_backend *be, size_t n)
{
    cu_ctx *c = ctx_of(be);
    cu_vmm *v = &c->vmm;
    if (!outside_graph(c, "kv_reserve") || use(c) || n > (SIZE_MAX - v->gran) / sizeof(float))
        return NULL;
    size_t size = (n * sizeof(float) + v->gran - 1) / v->gran * v->gran;
    if (!size) size = v->gran;
    if (v->n_kv == v->cap_kv) {
        int cap = v->cap_kv ? 2 * v->cap_kv : 16;
        cu_kv *kv = (cu_kv *)realloc(v->kv, (size_t)cap * sizeof *kv);
        if (!kv) return NULL;
        v->kv = kv;
        v->cap_kv = cap;
    }
    if (!v->pool) {
        v->cap_pool = (int)(CU_KV_POOL / v->gran) + 1;
        v->pool = (CUmemGenericAllocationHandle *)malloc((size_t)v->cap_pool * sizeof *v->pool);
        if (!v->pool) {
            v->cap_pool = 0;
            return NULL;
        }
    }
    CUdeviceptr p = 0;
    if (v->reserve(&p, size, 0, 0, 0) != CUDA_SUCCESS) return NULL;
    v->kv[v->n_kv++] = cu_kv{p, size, 0, 0, NULL};
    return (float *)p;
}

static int cu_kv_grow(llm_backend *be, float *p, size_t n, size_t *ready, doc_err *err)
{
    cu_ctx *c = ctx_of(be);
    cu_vmm *v = &c->vmm;
    const double MB = 1048576.0;
    if (!outside_graph(c, "kv_grow") || use(c))
        return doc_errf(err, c->err_rc ? c->err_rc : DOC_EDEVICE, "cuda kv_grow: %s", c->err_msg);
    int i = kv_find(c, p);
    if (i < 0) return doc_errf(err, DOC_EINVAL, "cuda kv_grow: %p is not a KV reservation", (void *)p);
    cu_kv *k = &v->kv[i];
    if (n > k->size / sizeof(float))
        return doc_errf(err, DOC_EINVAL, "cuda kv_grow: %zu floats are past the reservation (%zu)", n,
                        k->size / sizeof(float));
    size_t want = (n * sizeof(float) + v->gran - 1) / v->gran;
    if (want > k->cap_h) {
        size_t cap = k->size / v->gran;
        CUmemGenericAllocationHandle *h =
            (CUmemGenericAllocationHandle *)realloc(k->h, cap * sizeof *h);
        if (!h) return doc_errf(err, DOC_ENOMEM, "out of memory");
        k->h = h;
        k->cap_h = cap;
    }
    while (k->n_h < want) {
        CUmemGenericAllocationHandle h = 0;
        CUresult r = CUDA_SUCCESS;
        if (v->n_pool) h = v->pool[--v->n_pool];
        else r = v->create(&h, v->gran, &v->prop, 0);
        if (r != CUDA_SUCCESS)
            return doc_errf(err, r == CUDA_ERROR_OUT_OF_MEMORY ? DOC_ENOMEM : DOC_EDEVICE,
                            "cuda: no device memory for another %.0f MiB block of KV cache (%.0f MiB "
                            "in use by the caches): %s",
                            v->gran / MB, v->mapped / MB, drv_msg(c, r));
        CUdeviceptr at = k->base + k->n_h * v->gran;
        int mapped = 0;
        if ((r = v->map(at, v->gran, 0, h, 0)) == CUDA_SUCCESS) mapped = 1;
        if (mapped && (r = v->access(at, v->gran, &v->acc, 1)) == CUDA_SUCCESS) {
            k->h[k->n_h++] = h;
            v->mapped += v->gran;
            continue;
        }
        if (mapped) v->unmap(at, v->gran);
        v->release(h);
        return doc_errf(err, DOC_EDEVICE, "cuda: cannot map a KV cache block at %.0f MiB of %.0f: %s",
                        k->n_h * v->gran / MB, k->size / MB, drv_msg(c, r));
    }
    *ready = k->n_h * v->gran / sizeof(float);
    return DOC_OK;
}

static void cu_release(llm_backend *be, void *p)
{
    cu_ctx *c = ctx_of(be);
    if (!p || !outside_graph(c, "release") || use(c)) return;
    /* queued work may still use p: wait for it rather than rely on cudaFree */
    CU_CHECK(c, cudaStreamSynchronize(c->st));
    int k = c->vmm.n_kv ? kv_find(c, p) : -1;
    if (k >= 0) kv_drop(c, k);
    else CU_CHECK(c, dev_free(p));
}

static int supported_type(int t)
{
    switch (t) {
    case LLM_T_F32: case LLM_T_F16: case LLM_T_BF16: case LLM_T_Q4_0: case LLM_T_Q4_1:
    case LLM_T_Q8_0: case LLM_T_Q4_K: case LLM_T_Q5_K: case LLM_T_Q6_K:
        return 1;
    default:
        return 0;
    }
}

/* convert rows of w (host, any supported type) to 16-bit and upload to d,
 * CONV_ELEMS elements at a time through one pinned buffer */
static int upload_converted(cu_ctx *c, const llm_weight *w, void *d, int bf16, doc_err *err,
                            const char *name)
{
    int64_t rows_per = (int64_t)CONV_ELEMS / w->cols;
    if (rows_per < 1) rows_per = 1;
    size_t rb = llm_row_bytes(w->type, w->cols), elems = (size_t)rows_per * w->cols;
    float *f = (float *)malloc(elems * sizeof(float));
    uint16_t *h = NULL;
    int rc = DOC_OK;
    if (!f) return doc_errf(err, DOC_ENOMEM, "weight %s: out of host memory converting", name);
    if (CU_CHECK(c, host_malloc((void **)&h, elems * sizeof(uint16_t)))) {
        rc = doc_errf(err, c->err_rc, "weight %s: %s", name, c->err_msg);
        c->err_rc = 0;
        goto done;
    }
    for (int64_t r = 0; r < w->rows; r += rows_per) {
        int64_t nr = w->rows - r < rows_per ? w->rows - r : rows_per;
        size_t ne = (size_t)nr * w->cols;
        llm_dequantize_ref(w->type, (const char *)w->data + (size_t)r * rb, f, (int64_t)ne);
        for (size_t i = 0; i < ne; i++) {
            float v = f[i];
            if (bf16) {
                h[i] = f32_to_bf16(v);
            } else {
                v = v > 65504.0f ? 65504.0f : v < -65504.0f ? -65504.0f : v;
                h[i] = f32_to_f16(v);
            }
        }
        /* on the backend's stream, waited for before h is refilled */
        if (CU_CHECK(c, cudaMemcpyAsync((uint16_t *)d + (size_t)r * w->cols, h, ne * sizeof(uint16_t),
                                        cudaMemcpyHostToDevice, c->st)) ||
            CU_CHECK(c, cudaStreamSynchronize(c->st))) {
            rc = doc_errf(err, c->err_rc, "weight %s: %s", name, c->err_msg);
            c->err_rc = 0;
            goto done;
        }
    }
done:
    if (h) host_free(h);
    free(f);
    return rc;
}

static int cu_weight_prepare(llm_backend *be, llm_weight *w, doc_err *err)
{
    cu_ctx *c = ctx_of(be);
    const llm_type_info *ti = llm_type(w->type);
    const char *name = w->name ? w->name : "(unnamed)";
    if (!ti || !supported_type(w->type))
        return doc_errf(err, DOC_EUNSUPPORTED, "weight %s: type %d not supported by the cuda backend",
                        name, w->type);
    if (w->rows <= 0 || w->cols <= 0 || w->cols % ti->block || w->rows > INT32_MAX ||
        w->cols > INT32_MAX)
        return doc_errf(err, DOC_EFORMAT, "weight %s: shape %lld x %lld invalid for type %s", name,
                        (long long)w->rows, (long long)w->cols, ti->name);
    if (!w->data) return doc_errf(err, DOC_EINVAL, "weight %s: no data", name);
    w->dev = NULL;
    if (!outside_graph(c, "weight_prepare") || use(c)) goto cuda_fail;
    {
        int bf16 = w->type == LLM_T_BF16;
        int keep = c->quant_keep && w->cols % 32 == 0 &&
                   (w->type == LLM_T_Q4_0 || w->type == LLM_T_Q4_1 || w->type == LLM_T_Q8_0);
        size_t rb = llm_row_bytes(w->type, w->cols);
        size_t bytes = keep ? (size_t)w->rows * rb : (size_t)w->rows * (size_t)w->cols * sizeof(uint16_t),
               fr = 0, tot = 0;
        if (CU_CHECK(c, cudaMemGetInfo(&fr, &tot))) goto cuda_fail;
        if (bytes + c->reserve > fr)
            return doc_errf(err, DOC_ENOMEM,
                            "weight %s: %zu bytes do not fit on cuda device %d: %zu bytes free, "
                            "%zu kept for activations and the KV cache",
                            name, bytes, c->dev, fr, c->reserve);
        cu_weight *cw = (cu_weight *)calloc(1, sizeof *cw);
        if (!cw) return doc_errf(err, DOC_ENOMEM, "weight %s: out of memory", name);
        if (dev_malloc(&cw->d, bytes) != cudaSuccess) {
            cudaGetLastError();
            free(cw);
            return doc_errf(err, DOC_ENOMEM, "weight %s: cudaMalloc of %zu bytes failed (%zu free)",
                            name, bytes, fr);
        }
        cw->bf16 = bf16;
        cw->bytes = bytes;
        cw->qtype = keep ? w->type : 0;
        cw->row_bytes = rb;
        int rc;
        if (keep || w->type == LLM_T_F16 || w->type == LLM_T_BF16) { /* the bytes as they are */
            /* on the backend's stream: a cudaMemcpy from pageable memory returns
             * before its DMA is done, and nothing orders the legacy stream's
             * work before this non-blocking stream's kernels */
            rc = CU_CHECK(c, cudaMemcpyAsync(cw->d, w->data, bytes, cudaMemcpyHostToDevice, c->st));
            if (!rc) rc = CU_CHECK(c, cudaStreamSynchronize(c->st));
            if (rc) {
                rc = doc_errf(err, rc, "weight %s: %s", name, c->err_msg);
                c->err_rc = 0;
            }
        } else {
            rc = upload_converted(c, w, cw->d, bf16, err, name);
        }
        if (rc) {
            dev_free(cw->d);
            free(cw);
            return rc;
        }
        w->dev = cw;
        return DOC_OK;
    }
cuda_fail: {
    int rc = doc_errf(err, c->err_rc, "weight %s: %s", name, c->err_msg);
    c->err_rc = 0;
    return rc;
}
}

static void cu_weight_release(llm_backend *be, llm_weight *w)
{
    cu_weight *cw = (cu_weight *)w->dev;
    if (!cw) return;
    cu_ctx *c = ctx_of(be);
    if (outside_graph(c, "weight_release") && !use(c) && !CU_CHECK(c, cudaStreamSynchronize(c->st)))
        CU_CHECK(c, dev_free(cw->d));
    free(cw);
    w->dev = NULL;
}

/* host <-> device copies are synchronous: upload's source may be freed and
 * download's result read as soon as they return */
static int cu_upload(llm_backend *be, float *dst, const float *src, size_t n)
{
    cu_ctx *c = ctx_of(be);
    int rc;
    if (!outside_graph(c, "upload")) return DOC_ESTATE;
    if ((rc = use(c)) ||
        (rc = CU_CHECK(c, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, c->st))) ||
        (rc = CU_CHECK(c, cudaStreamSynchronize(c->st))))
        return rc;
    return DOC_OK;
}

static int cu_download(llm_backend *be, float *dst, const float *src, size_t n)
{
    cu_ctx *c = ctx_of(be);
    int rc;
    if (!outside_graph(c, "download")) return DOC_ESTATE;
    if ((rc = use(c)) ||
        (rc = CU_CHECK(c, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, c->st))) ||
        (rc = CU_CHECK(c, cudaStreamSynchronize(c->st))))
        return rc;
    return DOC_OK;
}

/* ---- ops ---------------------------------------------------------------- */

static void cu_matmul(llm_backend *be, float *y, const float *x, const llm_weight *w,
                      const float *bias, int n)
{
    cu_ctx *c = ctx_of(be);
    const cu_weight *cw = (const cu_weight *)w->dev;
    if (n <= 0 || use(c)) return;
    if (!cw) {
        defer(c, DOC_ESTATE, "cuda matmul: weight not prepared for the cuda backend (rows_only?)");
        return;
    }
    int m = (int)w->rows, k = (int)w->cols;
    size_t nx = (size_t)n * k;
    if (REC(c, OP_MATMUL, P(y), P(x), P(cw), P(bias), (uint64_t)n)) return;
    const void *wd = cw->d;
    if (cw->qtype && n <= QV_ROWS && !((uintptr_t)x & 15)) { /* decode: straight from the blocks */
        Q_DISPATCH(cw->qtype, (k_gemv_q<QT><<<(m + 7) / 8, 256, 0, c->st>>>(
                                  y, x, (const uint8_t *)cw->d, cw->row_bytes, m, k, n)));
        if (LAUNCHED(c)) return;
        if (bias) {
            size_t ny = (size_t)n * m;
            k_add_bias<<<ew_blocks(ny), EW_THREADS, 0, c->st>>>(y, bias, ny, m);
            LAUNCHED(c);
        }
        return;
    }
    if (cw->qtype) { /* many rows: expand to f16 once for the GEMM */
        size_t ne = (size_t)m * k;
        if (grow_dev(c, &c->wdq, &c->wdq_size, ne * sizeof(uint16_t), 1)) return;
        Q_DISPATCH(cw->qtype, (k_dequant_q<QT><<<ew_blocks(ne / 32), EW_THREADS, 0, c->st>>>(
                                  (__half *)c->wdq, (const uint8_t *)cw->d, cw->row_bytes, m, k)));
        if (LAUNCHED(c)) return;
        wd = c->wdq;
    }
    if (grow_dev(c, &c->xh, &c->xh_size, nx * sizeof(uint16_t), 1)) return;
    if (cw->bf16) k_to_bf16<<<ew_blocks(nx), EW_THREADS, 0, c->st>>>((__nv_bfloat16 *)c->xh, x, nx);
    else k_to_f16<<<ew_blocks(nx), EW_THREADS, 0, c->st>>>((__half *)c->xh, x, nx);
    if (LAUNCHED(c)) return;
    const float one = 1.0f, zero = 0.0f;
    cudaDataType dt = cw->bf16 ? CUDA_R_16BF : CUDA_R_16F;
    /* column-major view: Yᵀ (m x n) = W (k x m)ᵀ · Xᵀ (k x n) */
    if (CUBLAS_CHECK(c, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, wd, dt, k,
                                     c->xh, dt, k, &zero, y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT)))
        return;
    if (bias) {
        size_t ny = (size_t)n * m;
        k_add_bias<<<ew_blocks(ny), EW_THREADS, 0, c->st>>>(y, bias, ny, m);
        LAUNCHED(c);
    }
}

static void cu_get_rows(llm_backend *be, float *out, const llm_weight *emb, const int32_t *ids,
                        int n)
{
    cu_ctx *c = ctx_of(be);
    const cu_weight *cw = (const cu_weight *)emb->dev;
    if (n <= 0 || use(c)) return;
    if (!cw) {
        defer(c, DOC_ESTATE, "cuda get_rows: table not prepared for the cuda backend");
        return;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= emb->rows) {
            defer(c, DOC_EINVAL, "cuda get_rows: token id out of range");
            break; /* the kernel writes zeros for it */
        }
    const int32_t *d = stage_idx(c, ids, (size_t)n);
    if (!d || REC(c, OP_GET_ROWS, P(out), P(cw), (uint64_t)n)) return;
    if (cw->qtype)
        Q_DISPATCH(cw->qtype, (k_get_rows_q<QT><<<n, 128, 0, c->st>>>(
                                  out, (const uint8_t *)cw->d, cw->row_bytes, d, emb->rows, emb->cols)))
    else
        k_get_rows<<<n, 256, 0, c->st>>>(out, cw->d, cw->bf16, d, emb->rows, emb->cols);
    LAUNCHED(c);
}

static void cu_rmsnorm(llm_backend *be, float *out, const float *x, const float *w, int n, int d,
                       float eps)
{
    cu_ctx *c = ctx_of(be);
    if (n <= 0 || use(c) || REC(c, OP_RMSNORM, P(out), P(x), P(w), (uint64_t)n, (uint64_t)d, fbits(eps)))
        return;
    k_rmsnorm<<<n, NORM_THREADS, 0, c->st>>>(out, x, w, d, eps);
    LAUNCHED(c);
}

static void cu_layernorm(llm_backend *be, float *out, const float *x, const float *w,
                         const float *b, int n, int d, float eps)
{
    cu_ctx *c = ctx_of(be);
    if (n <= 0 || use(c) ||
        REC(c, OP_LAYERNORM, P(out), P(x), P(w), P(b), (uint64_t)n, (uint64_t)d, fbits(eps)))
        return;
    k_layernorm<<<n, NORM_THREADS, 0, c->st>>>(out, x, w, b, d, eps);
    LAUNCHED(c);
}

static void cu_rope(llm_backend *be, float *x, int n, int h, int hd, const int32_t *pos,
                    float theta, int neox)
{
    cu_ctx *c = ctx_of(be);
    if (n <= 0 || use(c)) return;
    const int32_t *d = stage_idx(c, pos, (size_t)n);
    if (!d || REC(c, OP_ROPE, P(x), (uint64_t)n, (uint64_t)h, (uint64_t)hd, fbits(theta), (uint64_t)neox))
        return;
    size_t total = (size_t)n * h * (hd / 2);
    k_rope<<<ew_blocks(total), EW_THREADS, 0, c->st>>>(x, n, h, hd, d, theta, neox);
    LAUNCHED(c);
}

static void cu_attn_causal(llm_backend *be, float *out, const float *q, float *kc, float *vc,
                           size_t ldc, const float *kn, const float *vn, int n, int pos0, int h,
                           int g, int hd, float scale)
{
    cu_ctx *c = ctx_of(be);
    if (n <= 0 || use(c) ||
        REC(c, OP_ATTN_CAUSAL, P(out), P(q), P(kc), P(vc), (uint64_t)ldc, P(kn), P(vn), (uint64_t)n,
            (uint64_t)pos0, (uint64_t)h, (uint64_t)g, (uint64_t)hd, fbits(scale)))
        return;
    if (g <= 0 || h % g || hd > 32 * ATT_MAXE || h > 65535 || ldc < (size_t)g * hd || ldc > INT_MAX) {
        defer(c, DOC_EINVAL, "cuda attn_causal: heads not a multiple of kv heads, head dim > 256, "
                             "or cache rows narrower than g*hd");
        CU_CHECK(c, cudaMemsetAsync(out, 0, (size_t)n * h * hd * sizeof(float), c->st));
        return;
    }
    if (kn) {
        k_kv_rows<<<n, 256, 0, c->st>>>(kc, vc, ldc, pos0, kn, vn, g * hd);
        if (LAUNCHED(c)) return;
    }
    const int ldk = (int)ldc;
    int nk = pos0 + n;
    if (n <= ATT_SPLIT_MAX_ROWS && nk > 2 * ATT_SPLIT_KEYS) {
        /* decode: too few (row, head) blocks to fill the GPU; split the keys */
        int nsplit = (nk + ATT_SPLIT_KEYS - 1) / ATT_SPLIT_KEYS;
        size_t need = (size_t)n * h * nsplit * (hd + 2) * sizeof(float);
        if (nsplit > 65535 || grow_dev(c, &c->att, &c->att_size, need, 1)) {
            if (nsplit > 65535) defer(c, DOC_ELIMIT, "cuda attn_causal: context too long");
            return;
        }
        dim3 grid((unsigned)n, (unsigned)h, (unsigned)nsplit);
        k_attn<<<grid, ATT_WARPS * 32, 0, c->st>>>(out, q, kc, vc, h * hd, ldk, h / g, hd,
                                                   scale, pos0, 0, NULL, ATT_SPLIT_KEYS,
                                                   (float *)c->att);
        if (LAUNCHED(c)) return;
        k_attn_merge<<<dim3((unsigned)n, (unsigned)h), 128, 0, c->st>>>(out, (const float *)c->att,
                                                                        h * hd, hd, nsplit);
        LAUNCHED(c);
        return;
    }
    /* prefill: query tiles share their keys */
    if (n > ATT_SPLIT_MAX_ROWS &&
        ta_launch(c, dim3((unsigned)((n + TA_Q - 1) / TA_Q), (unsigned)h), out, q, kc, vc, h * hd,
                  ldk, h / g, hd, scale, n, pos0, 0, NULL, 0)) {
        LAUNCHED(c);
        return;
    }
    dim3 grid((unsigned)n, (unsigned)h);
    k_attn<<<grid, ATT_WARPS * 32, 0, c->st>>>(out, q, kc, vc, h * hd, ldk, h / g, hd, scale,
                                               pos0, 0, NULL, 0, NULL);
    LAUNCHED(c);
}

/* dec_splits: key splits per (row, head) so a decode step of n rows has
 * about two blocks per SM */
static int dec_splits(const cu_ctx *c, int n, int h)
{
    int rows = n * h, want = 2 * (c->n_sm > 0 ? c->n_sm : 1);
    int s = (want + rows - 1) / rows;
    return s < 1 ? 1 : s > ATT_DEC_MAX_SPLITS ? ATT_DEC_MAX_SPLITS : s;
}

static void cu_attn_decode(llm_backend *be, float *out, const float *q, float *const *kc,
                           float *const *vc, size_t ldc, const int32_t *pos, const float *kn,
                           const float *vn, int n, int h, int g, int hd, float scale)
{
    cu_ctx *c = ctx_of(be);
    if (n <= 0 || use(c)) return;
    if (g <= 0 || h % g || hd > 32 * ATT_MAXE || h > 65535 || n > 65535 || ldc < (size_t)g * hd ||
        ldc > INT_MAX) {
        defer(c, DOC_EINVAL, "cuda attn_decode: heads not a multiple of kv heads, head dim > 256, "
                             "or cache rows narrower than g*hd");
        return;
    }
    /* one staged block: the rows' key caches, value caches, positions */
    size_t pb = (size_t)n * sizeof(float *);
    char *pk = (char *)pack_buf(c, 2 * pb + (size_t)n * sizeof(int32_t));
    if (!pk) return;
    memcpy(pk, kc, pb);
    memcpy(pk + pb, vc, pb);
    memcpy(pk + 2 * pb, pos, (size_t)n * sizeof(int32_t));
    const char *d = (const char *)stage(c, pk, 2 * pb + (size_t)n * sizeof(int32_t));
    int nsplit = dec_splits(c, n, h);
    if (!d || REC(c, OP_ATTN_DECODE, P(out), P(q), P(kn), P(vn), (uint64_t)ldc, (uint64_t)n,
                  (uint64_t)h, (uint64_t)g, (uint64_t)hd, fbits(scale), (uint64_t)nsplit))
        return;
    float *const *dk = (float *const *)d, *const *dv = (float *const *)(d + pb);
    const int32_t *dp = (const int32_t *)(d + 2 * pb);
    if (nsplit > 1 &&
        grow_dev(c, &c->att, &c->att_size, (size_t)n * h * nsplit * (hd + 2) * sizeof(float), 1))
        return;
    if (kn) {
        k_kv_store<<<n, 256, 0, c->st>>>(dk, dv, dp, kn, vn, g * hd, ldc);
        if (LAUNCHED(c)) return;
    }
    k_attn_dec<<<dim3((unsigned)n, (unsigned)h, (unsigned)nsplit), ATT_WARPS * 32, 0, c->st>>>(
        out, q, (const float *const *)dk, (const float *const *)dv, dp, h / g, (int)ldc, hd, scale,
        nsplit > 1 ? (float *)c->att : NULL);
    if (LAUNCHED(c) || nsplit == 1) return;
    k_attn_merge<<<dim3((unsigned)n, (unsigned)h), 128, 0, c->st>>>(out, (const float *)c->att,
                                                                    h * hd, hd, nsplit);
    LAUNCHED(c);
}

static int cu_pick(llm_backend *be, int32_t *ids, float *logits, int n, int vocab,
                   const int32_t *recent, const int32_t *nrec, int rmax, const llm_pick *p,
                   doc_err *err)
{
    cu_ctx *c = ctx_of(be);
    int rc = DOC_OK;
    if (n <= 0) return DOC_OK;
    if (!outside_graph(c, "pick") || use(c)) goto fail;
    {
        /* one staged block: the picks (n), recent (n, rmax), nrec (n); the
         * chosen ids come back through the device scratch behind it */
        size_t pb = (size_t)n * sizeof(llm_pick), rb = (size_t)n * rmax * sizeof(int32_t),
               nb = (size_t)n * sizeof(int32_t);
        char *pk = (char *)pack_buf(c, pb + rb + nb);
        if (!pk) goto fail;
        int sampled = 0;
        for (int i = 0; i < n; i++) sampled += p[i].temperature > 0.0f && p[i].top_k != 1;
        memcpy(pk, p, pb);
        if (rb) memcpy(pk + pb, recent, rb);
        memcpy(pk + pb + rb, nrec, nb);
        const char *d = (const char *)stage(c, pk, pb + rb + nb);
        if (!d || grow_dev(c, &c->picks, &c->picks_size, nb, 0)) goto fail;
        const llm_pick *dp = (const llm_pick *)d;
        const int32_t *dr = (const int32_t *)(d + pb), *dn = (const int32_t *)(d + pb + rb);
        if (sampled < n) { /* the greedy rows */
            k_pick<<<n, 256, 0, c->st>>>((int32_t *)c->picks, logits, vocab, dr, dn, rmax, dp);
            if (LAUNCHED(c)) goto fail;
        }
        if (sampled) {
            k_sample<<<n, PICK_THREADS, 0, c->st>>>((int32_t *)c->picks, logits, vocab, dr, dn, rmax, dp);
            if (LAUNCHED(c)) goto fail;
        }
        if (CU_CHECK(c, cudaMemcpyAsync(ids, c->picks, nb, cudaMemcpyDeviceToHost, c->st)) ||
            CU_CHECK(c, cudaStreamSynchronize(c->st)))
            goto fail;
    }
    if (!c->err_rc) return DOC_OK;
fail:
    rc = doc_errf(err, c->err_rc ? c->err_rc : DOC_ENOMEM, "pick: %s", c->err_msg);
    c->err_rc = 0;
    return rc;
}

static void cu_attn_bidir(llm_backend *be, float *out, const float *q, const float *k,
                          const float *v, int b, int t, int h, int hd, const int *lens,
                          float scale)
{
    cu_ctx *c = ctx_of(be);
    if (b <= 0 || t <= 0 || use(c)) return;
    if (hd > 32 * ATT_MAXE || h > 65535) {
        defer(c, DOC_EINVAL, "cuda attn_bidir: head dim > 256");
        CU_CHECK(c, cudaMemsetAsync(out, 0, (size_t)b * t * h * hd * sizeof(float), c->st));
        return;
    }
    const int32_t *d = stage_idx(c, lens, (size_t)b);
    if (!d || REC(c, OP_ATTN_BIDIR, P(out), P(q), P(k), P(v), (uint64_t)b, (uint64_t)t, (uint64_t)h,
                  (uint64_t)hd, fbits(scale)))
        return;
    int tps = (t + TA_Q - 1) / TA_Q;
    if (ta_launch(c, dim3((unsigned)(b * tps), (unsigned)h), out, q, k, v, h * hd, h * hd, 1, hd,
                  scale, 0, 0, t, d, tps)) {
        LAUNCHED(c);
        return;
    }
    dim3 grid((unsigned)(b * t), (unsigned)h);
    k_attn<<<grid, ATT_WARPS * 32, 0, c->st>>>(out, q, k, v, h * hd, h * hd, 1, hd, scale, 0, t, d,
                                               0, NULL);
    LAUNCHED(c);
}

static void cu_gelu(llm_backend *be, float *x, size_t n)
{
    cu_ctx *c = ctx_of(be);
    if (!n || use(c) || REC(c, OP_GELU, P(x), (uint64_t)n)) return;
    k_gelu<<<ew_blocks(n), EW_THREADS, 0, c->st>>>(x, n);
    LAUNCHED(c);
}

static void cu_swiglu(llm_backend *be, float *out, const float *gate, const float *up, size_t n)
{
    cu_ctx *c = ctx_of(be);
    if (!n || use(c) || REC(c, OP_SWIGLU, P(out), P(gate), P(up), (uint64_t)n)) return;
    k_swiglu<<<ew_blocks(n), EW_THREADS, 0, c->st>>>(out, gate, up, n);
    LAUNCHED(c);
}

static void cu_add(llm_backend *be, float *y, const float *a, const float *b, size_t n)
{
    cu_ctx *c = ctx_of(be);
    if (!n || use(c) || REC(c, OP_ADD, P(y), P(a), P(b), (uint64_t)n)) return;
    k_add<<<ew_blocks(n), EW_THREADS, 0, c->st>>>(y, a, b, n);
    LAUNCHED(c);
}

static void cu_copy(llm_backend *be, float *dst, const float *src, size_t n)
{
    cu_ctx *c = ctx_of(be);
    if (!n || dst == src || use(c) || REC(c, OP_COPY, P(dst), P(src), (uint64_t)n)) return;
    CU_CHECK(c, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, c->st));
}

static void cu_softmax(llm_backend *be, float *x, int n, int d)
{
    cu_ctx *c = ctx_of(be);
    if (n <= 0 || d <= 0 || use(c) || REC(c, OP_SOFTMAX, P(x), (uint64_t)n, (uint64_t)d)) return;
    k_softmax<<<n, NORM_THREADS, 0, c->st>>>(x, d);
    LAUNCHED(c);
}

/* ---- lifetime ----------------------------------------------------------- */

static int cu_sync(llm_backend *be, doc_err *err)
{
    cu_ctx *c = ctx_of(be);
    if (outside_graph(c, "sync") && !use(c)) CU_CHECK(c, cudaStreamSynchronize(c->st));
    int rc = c->err_rc;
    if (rc) {
        doc_errf(err, rc, "%s", c->err_msg);
        c->err_rc = 0;
    }
    return rc;
}

static void ctx_free(cu_ctx *c)
{
    if (!c) return;
    cudaSetDevice(c->dev);
    if (c->st) cudaStreamSynchronize(c->st);
    while (c->vmm.n_kv) kv_drop(c, c->vmm.n_kv - 1); /* caches not freed by their sessions */
    for (int i = 0; i < c->vmm.n_pool; i++) c->vmm.release(c->vmm.pool[i]);
    free(c->vmm.pool);
    free(c->vmm.kv);
    if (c->blas) cublasDestroy(c->blas);
    for (int i = 0; i < CU_STAGE_SLOTS; i++) {
        if (c->stage[i]) host_free(c->stage[i]);
        if (c->stage_ev[i]) cudaEventDestroy(c->stage_ev[i]);
    }
    dev_free(c->ws);
    dev_free(c->xh);
    dev_free(c->idx);
    dev_free(c->att);
    dev_free(c->picks);
    dev_free(c->wdq);
    free(c->idx_host);
    free(c->pack);
    for (int i = 0; i < CU_GRAPHS; i++) {
        cu_graph *g = &c->graphs[i];
        if (g->exec) cudaGraphExecDestroy(g->exec);
        if (g->done) cudaEventDestroy(g->done);
        if (g->host) host_free(g->host);
        dev_free(g->dev);
    }
    if (c->st) cudaStreamDestroy(c->st);
    cudaGetLastError();
    free(c);
}

static void cu_destroy(llm_backend *be)
{
    ctx_free(ctx_of(be));
    free(be);
}

static const llm_backend_i cu_iface = {
    "cuda",
    cu_alloc,
    cu_release,
    cu_weight_prepare,
    cu_weight_release,
    cu_upload,
    cu_download,
    cu_matmul,
    cu_get_rows,
    cu_rmsnorm,
    cu_layernorm,
    cu_rope,
    cu_attn_causal,
    cu_attn_bidir,
    cu_gelu,
    cu_swiglu,
    cu_add,
    cu_copy,
    cu_softmax,
    cu_sync,
    cu_destroy,
    cu_attn_decode,
    cu_graph_begin,
    cu_graph_end,
    cu_pick,
    cu_mem_info,
    cu_describe,
    NULL, /* kv_reserve, kv_grow: set in the context's copy when the driver has virtual memory */
    NULL,
};

/* docent_cuda_backend_new: the entry point llm_cuda_backend_new (llm/model.c)
 * finds with dlsym once it has loaded this library */
extern "C" __attribute__((visibility("default"))) int docent_cuda_backend_new(int device,
                                                                             llm_backend **out,
                                                                             doc_err *err);
int docent_cuda_backend_new(int device, llm_backend **out, doc_err *err)
{
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        if (e == cudaErrorInsufficientDriver)
            return doc_errf(err, DOC_EDEVICE,
                            "no CUDA device (no NVIDIA driver, or one older than this build's CUDA "
                            "runtime %d.%d)", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        return doc_errf(err, DOC_EDEVICE, "no CUDA device (%s)",
                        e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device < 0 || device >= count)
        return doc_errf(err, DOC_EDEVICE, "no CUDA device %d (%d present)", device, count);
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
        cudaGetLastError();
        return doc_errf(err, DOC_EDEVICE, "CUDA device %d: cannot read its compute capability", device);
    }
    if (major < 8)
        return doc_errf(err, DOC_EDEVICE,
                        "CUDA device %d has compute capability %d.%d; docent is built for 8.0 and up",
                        device, major, minor);
    llm_backend *be = (llm_backend *)calloc(1, sizeof *be);
    cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
    int rc = DOC_OK;
    if (!be || !c) {
        free(be);
        free(c);
        return doc_errf(err, DOC_ENOMEM, "cuda backend: out of memory");
    }
    c->dev = device;
    if (CU_CHECK(c, cudaSetDevice(device)) ||
        CU_CHECK(c, cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking)) ||
        CUBLAS_CHECK(c, cublasCreate(&c->blas)) || CUBLAS_CHECK(c, cublasSetStream(c->blas, c->st)) ||
        CU_CHECK(c, dev_malloc(&c->ws, WS_BYTES)) ||
        CUBLAS_CHECK(c, cublasSetWorkspace(c->blas, c->ws, WS_BYTES)) ||
        CU_CHECK(c, cudaMemGetInfo(&c->free_at_open, &c->total)))
        goto fail;
    c->ws_size = WS_BYTES;
    for (int i = 0; i < CU_STAGE_SLOTS; i++)
        if (CU_CHECK(c, cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming))) goto fail;
    c->reserve = c->total / 20 > RESERVE_MIN ? c->total / 20 : RESERVE_MIN;
    if (CU_CHECK(c, cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, device))) goto fail;
    {
        const char *gr = getenv("DOCENT_CUDA_GRAPHS"), *ta = getenv("DOCENT_CUDA_ATTN"),
                   *qk = getenv("DOCENT_CUDA_QUANT");
        c->graphs_on = !(gr && *gr == '0');
        c->quant_keep = qk && !strcmp(qk, "keep");
        /* the tiled attention kernels take more than the default 48 KiB of
         * shared memory; DOCENT_CUDA_ATTN=simple keeps k_attn everywhere */
        c->attn_mma = ta && !strcmp(ta, "mma");
#define SMEM_OPT(kern, bytes) \
    (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(bytes)) == cudaSuccess)
        c->tiled_ok = !(ta && !strcmp(ta, "simple")) &&
                      (c->attn_mma ? SMEM_OPT(k_attn_mma<2>, tm_smem(2)) && SMEM_OPT(k_attn_mma<4>, tm_smem(4)) &&
                                         SMEM_OPT(k_attn_mma<5>, tm_smem(5)) && SMEM_OPT(k_attn_mma<6>, tm_smem(6)) &&
                                         SMEM_OPT(k_attn_mma<8>, tm_smem(8))
                                   : SMEM_OPT(k_attn_tiled<2>, ta_smem(2)) && SMEM_OPT(k_attn_tiled<4>, ta_smem(4)) &&
                                         SMEM_OPT(k_attn_tiled<5>, ta_smem(5)) && SMEM_OPT(k_attn_tiled<6>, ta_smem(6)) &&
                                         SMEM_OPT(k_attn_tiled<8>, ta_smem(8)));
#undef SMEM_OPT
        cudaGetLastError();
    }
    c->iface = cu_iface;
    if (vmm_init(c)) {
        c->iface.kv_reserve = cu_kv_reserve;
        c->iface.kv_grow = cu_kv_grow;
    }
    be->i = &c->iface;
    be->ctx = c;
    *out = be;
    return DOC_OK;
fail:
    rc = doc_errf(err, c->err_rc ? c->err_rc : DOC_EDEVICE, "cuda backend on device %d: %s", device,
                  c->err_msg);
    ctx_free(c);
    free(be);
    return rc;
}
