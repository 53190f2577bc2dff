/*
 * cpu.c - the CPU backend: op table, ISA dispatch, threading, memory.
 *
 * Design: the leaf kernels live in per-ISA constant tables (ref.c,
 * kern_avx2.c, kern_avx512.c; see internal.h).  At creation the chosen table
 * is copied into the context with NULL entries filled from the reference, so
 * the ops here never test for missing kernels.  Ops split work over the
 * context's persistent pool; small ops (decode-sized norms, one row of
 * anything) run on the calling thread, since a pool job costs microseconds.
 *
 * matmul: quantized weights get their activations quantized once per call
 * (Q8_1 blocks for Q4_0/Q4_1/Q8_0, Q8_K for the K-quants) into scratch owned
 * by the backend; threads take contiguous ranges of output rows and walk them
 * in tiles of rows x tokens so a weight tile stays in L1 while several tokens
 * use it.  Float weights with several tokens go through a packed-panel GEMM:
 * weight_prepare packs W once into panels of CPU_GEMM_NR rows, k-major
 * (w->dev), and threads run the register-tiled micro-kernel over their panels
 * and chunks of tokens sized to stay in L2.  BF16 weights take bf16-rounded
 * activations at every level; where the CPU has AVX512_BF16 their panels stay
 * bf16 and the GEMM is vdpbf16ps (twice the f32 rate).
 *
 * attention: one blocked kernel call per (sequence, head) for encoder batches
 * and per (head, chunk of queries) for prefill (internal.h, cpu_attn_fn);
 * decode keeps the row-at-a-time dot/axpy path.
 *
 * Scratch is planned: it grows (doubling) only when a call needs more than
 * any earlier call, so steady-state decode and prefill never allocate.  An
 * allocation failure inside an op (ops return void) is kept as a deferred
 * error and returned by sync().
 */
#include "llm/cpu/internal.h"

#include <math.h>
#include <stdio.h>
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>

#define MAX_THREADS 256
#define ROW_TILE 8        /* weight rows per dot tile */
#define TOK_TILE 8        /* tokens per dot tile */
#define RG_ROW_TILE 64    /* the same for the row-group layout (a multiple of CPU_RG) */
#define RG_TOK_TILE 32
#define GEMM_MIN_TOKENS 4 /* below this float weights use the dot path */
#define PAR_MIN 16384     /* elements below which elementwise ops stay on one thread */
#define L2_BUDGET (512 * 1024)

typedef struct cpu_ctx {
    cpu_kern k; /* chosen table, NULLs filled from the reference */
    int isa;
    pool *pool;
    int nth;
    void *scratch; /* activations / attention scores / panels */
    size_t scratch_size;
    int err_rc; /* deferred error for sync() */
    char err_msg[256];
    llm_backend_i iface; /* cpu_iface, with kv_reserve / kv_grow under DOCENT_CPU_KV_GROW=1 */
} cpu_ctx;

static cpu_ctx *ctx_of(llm_backend *be) { return be->ctx; }

static void defer_error(cpu_ctx *c, int rc, const char *msg)
{
    if (c->err_rc) return;
    c->err_rc = rc;
    snprintf(c->err_msg, sizeof c->err_msg, "%s", msg);
}

/* scratch: at least size bytes, 64-aligned; NULL (and a deferred error) on failure */
static void *scratch_get(cpu_ctx *c, size_t size)
{
    if (size <= c->scratch_size) return c->scratch;
    size_t want = c->scratch_size * 2 > size ? c->scratch_size * 2 : size;
    want = (want + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, want);
    if (!p) {
        defer_error(c, DOC_ENOMEM, "cpu backend: out of memory growing scratch");
        return NULL;
    }
    free(c->scratch);
    c->scratch = p;
    c->scratch_size = want;
    return p;
}

/* ---- parallel for -------------------------------------------------------- */

typedef void (*range_fn)(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith);

typedef struct {
    cpu_ctx *c;
    range_fn fn;
    void *arg;
    int64_t n, align;
} par_job;

static void par_run(void *p, int ith, int nth)
{
    par_job *j = p;
    int64_t per = (j->n + nth - 1) / nth;
    per = (per + j->align - 1) / j->align * j->align;
    int64_t i0 = per * ith, i1 = i0 + per < j->n ? i0 + per : j->n;
    if (i0 < i1) j->fn(j->c, j->arg, i0, i1, ith);
}

/* par_for: fn over [0, n) split into contiguous ranges aligned to `align`;
 * on one thread when the work (n * cost) is small. */
static void par_for(cpu_ctx *c, int64_t n, int64_t align, double cost, range_fn fn, void *arg)
{
    if (n <= 0) return;
    if (c->nth == 1 || (double)n * cost < PAR_MIN || n <= align) {
        fn(c, arg, 0, n, 0);
        return;
    }
    par_job j = {c, fn, arg, n, align};
    pool_run(c->pool, par_run, &j);
}

/* ---- memory ------------------------------------------------------------- */

/*
 * Backend memory.  A buffer starts 64 bytes after a header that says where it
 * came from.  Small buffers come from aligned_alloc and are zeroed.  Buffers
 * of BIG_ALLOC bytes or more are private anonymous mappings: zero from the
 * kernel and backed by memory only where written, so a KV cache sized for
 * the whole context takes memory for the positions used.
 * With DOCENT_CPU_KV_GROW=1 the backend also offers kv_reserve / kv_grow:
 * a reservation is mapped PROT_NONE and opened KV_GRAIN bytes at a time, so
 * a read or write past what kv_grow opened faults (tests run llama.c's
 * growing-cache layout, the one CUDA uses, on the CPU with it).
 */
#define BIG_ALLOC (1u << 20)
#define KV_GRAIN (64u << 10)
#define PAGE 4096u

enum { MEM_HEAP = 1, MEM_MAP, MEM_RESERVED };
typedef struct {
    uint32_t magic, kind;
    size_t map;   /* MEM_MAP / MEM_RESERVED: length of the mapping */
    size_t ready; /* MEM_RESERVED: bytes opened after the buffer's start */
} mem_hdr;
#define MEM_MAGIC 0xd0ce47u

static mem_hdr *hdr_of(void *p) { return (mem_hdr *)((char *)p - 64); }

/* a mapping of len bytes, the buffer one page in (its header just before) */
static void *map_buf(size_t bytes, int reserve)
{
    size_t len = (bytes + 2 * PAGE - 1) & ~(size_t)(PAGE - 1);
    char *base = mmap(NULL, len, reserve ? PROT_NONE : PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) return NULL;
    if (reserve && mprotect(base, PAGE, PROT_READ | PROT_WRITE)) {
        munmap(base, len);
        return NULL;
    }
    mem_hdr *h = (mem_hdr *)(base + PAGE - 64);
    *h = (mem_hdr){MEM_MAGIC, reserve ? MEM_RESERVED : MEM_MAP, len, 0};
    return base + PAGE;
}

static float *cpu_alloc(llm_backend *be, size_t n)
{
    (void)be;
    if (n > SIZE_MAX / sizeof(float) - 2 * PAGE) return NULL;
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    if (!bytes) bytes = 64;
    if (bytes >= BIG_ALLOC) return map_buf(bytes, 0);
    char *base = aligned_alloc(64, bytes + 64);
    if (!base) return NULL;
    memset(base + 64, 0, bytes);
    *(mem_hdr *)base = (mem_hdr){MEM_MAGIC, MEM_HEAP, 0, 0};
    return (float *)(base + 64);
}

static void cpu_release(llm_backend *be, void *p)
{
    (void)be;
    if (!p) return;
    mem_hdr *h = hdr_of(p);
    if (h->magic != MEM_MAGIC) abort(); /* not from cpu_alloc: a bug, not bad input */
    if (h->kind == MEM_HEAP) free(h);
    else munmap((char *)p - PAGE, h->map);
}

static float *cpu_kv_reserve(llm_backend *be, size_t n)
{
    (void)be;
    if (n > SIZE_MAX / sizeof(float) - 2 * PAGE - KV_GRAIN) return NULL;
    return map_buf((n * sizeof(float) + KV_GRAIN - 1) & ~(size_t)(KV_GRAIN - 1), 1);
}

static int cpu_kv_grow(llm_backend *be, float *p, size_t n, size_t *ready, doc_err *err)
{
    (void)be;
    mem_hdr *h = hdr_of(p);
    size_t cap = h->map - PAGE, want = (n * sizeof(float) + KV_GRAIN - 1) & ~(size_t)(KV_GRAIN - 1);
    if (h->kind != MEM_RESERVED || n > cap / sizeof(float))
        return doc_errf(err, DOC_EINVAL, "cpu kv_grow: %zu floats are past the reservation (%zu)", n,
                        cap / sizeof(float));
    if (want > cap) want = cap;
    if (want > h->ready) {
        if (mprotect((char *)p + h->ready, want - h->ready, PROT_READ | PROT_WRITE))
            return doc_errf(err, DOC_ENOMEM, "cpu kv_grow: cannot open %zu more bytes: %s",
                            want - h->ready, strerror(errno));
        h->ready = want;
    }
    *ready = h->ready / sizeof(float);
    return DOC_OK;
}

/* rg_pack: rows x k of Q4_0 / Q4_1 / Q8_0 into the row-group layout (internal.h) at dst */
static void rg_pack(int type, const void *src, int64_t rows, int64_t k, uint8_t *dst)
{
    size_t rb = llm_row_bytes(type, k), gbs = cpu_rg_bytes(type, k), qb = cpu_rg_qbytes(type);
    int64_t nb = k / 32, ng = (rows + CPU_RG - 1) / CPU_RG;
    memset(dst, 0, (size_t)ng * gbs);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *g = dst + (size_t)(r / CPU_RG) * gbs;
        uint16_t *dh = (uint16_t *)(void *)(g + nb * qb), *mh = dh + nb * CPU_RG;
        int i = (int)(r % CPU_RG);
        const char *row = (const char *)src + (size_t)r * rb;
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *q = g + b * qb + 4 * i;
            const uint8_t *qs;
            uint8_t flip = 0;
            if (type == LLM_T_Q4_0) {
                const block_q4_0 *blk = (const block_q4_0 *)row + b;
                dh[CPU_RG * b + i] = blk->d;
                qs = blk->qs;
            } else if (type == LLM_T_Q4_1) {
                const block_q4_1 *blk = (const block_q4_1 *)row + b;
                dh[CPU_RG * b + i] = blk->d;
                mh[CPU_RG * b + i] = blk->m;
                qs = blk->qs;
            } else {
                const block_q8_0 *blk = (const block_q8_0 *)row + b;
                dh[CPU_RG * b + i] = blk->d;
                qs = (const uint8_t *)blk->qs;
                flip = 0x80;
            }
            for (size_t p = 0; p < qb / 64; p++)
                for (int t = 0; t < 4; t++) q[64 * p + t] = qs[4 * p + t] ^ flip;
        }
    }
}

typedef struct {
    const llm_weight *w;
    float *panels;
} fpack_job;

/* panels [p0, p1) of a BF16 weight in the bf16 pair layout (cpu_gemm_bf16_i) */
static void fpack_bf16_range(cpu_ctx *c, void *arg, int64_t p0, int64_t p1, int ith)
{
    (void)c;
    (void)ith;
    fpack_job *j = arg;
    const llm_weight *w = j->w;
    int64_t k = w->cols, kp = (k + 1) & ~(int64_t)1;
    size_t wbs = llm_row_bytes(w->type, k);
    for (int64_t p = p0; p < p1; p++) {
        uint16_t *panel = (uint16_t *)(void *)j->panels + p * kp * CPU_GEMM_NR;
        memset(panel, 0, (size_t)kp * CPU_GEMM_NR * sizeof(uint16_t));
        for (int r = 0; r < CPU_GEMM_NR && p * CPU_GEMM_NR + r < w->rows; r++) {
            const uint16_t *row = (const uint16_t *)(const void *)((const char *)w->data +
                                                                   (p * CPU_GEMM_NR + r) * wbs);
            for (int64_t kk = 0; kk < k; kk++)
                panel[(kk >> 1) * 2 * CPU_GEMM_NR + 2 * r + (kk & 1)] = row[kk];
        }
    }
}

static void fpack_range(cpu_ctx *c, void *arg, int64_t p0, int64_t p1, int ith)
{
    (void)ith;
    fpack_job *j = arg;
    const llm_weight *w = j->w;
    size_t wbs = llm_row_bytes(w->type, w->cols), psize = (size_t)w->cols * CPU_GEMM_NR;
    for (int64_t p = p0; p < p1; p++) {
        int64_t r = p * CPU_GEMM_NR;
        int nc = (int)(w->rows - r < CPU_GEMM_NR ? w->rows - r : CPU_GEMM_NR);
        c->k.pack(w->type, (const char *)w->data + r * wbs, wbs, w->cols, nc, j->panels + p * psize);
    }
}

/*
 * float_prepare: a float-type weight (F32, F16, BF16) packed once into the
 * GEMM's k-major panels (internal.h), all of them in w->dev, so prefill and
 * encoder matmuls stream panels instead of repacking W for every chunk of
 * tokens.  w->data stays in use for get_rows and the few-token dot path.
 * Costs one f32 copy of the weight, or one bf16 copy for a BF16 weight on a
 * level with the BF16 GEMM (bf16 pair panels, cpu_gemm_bf16_i).
 */
static int float_prepare(cpu_ctx *c, llm_weight *w, const char *name, doc_err *err)
{
    int bf16 = w->type == LLM_T_BF16 && c->k.gemm_bf16;
    int64_t np = (w->rows + CPU_GEMM_NR - 1) / CPU_GEMM_NR;
    size_t esize = bf16 ? sizeof(uint16_t) : sizeof(float);
    size_t psize = (size_t)(bf16 ? (w->cols + 1) & ~(int64_t)1 : w->cols) * CPU_GEMM_NR;
    if ((size_t)np > SIZE_MAX / esize / psize)
        return doc_errf(err, DOC_ELIMIT, "weight %s: %lld x %lld too large to pack", name,
                        (long long)w->rows, (long long)w->cols);
    fpack_job j = {w, aligned_alloc(64, (size_t)np * psize * esize)};
    if (!j.panels)
        return doc_errf(err, DOC_ENOMEM, "weight %s: out of memory packing %zu bytes", name,
                        (size_t)np * psize * esize);
    par_for(c, np, 1, (double)psize, bf16 ? fpack_bf16_range : fpack_range, &j);
    w->dev = j.panels;
    return DOC_OK;
}

static int cpu_weight_prepare(llm_backend *be, llm_weight *w, doc_err *err)
{
    const llm_type_info *ti = llm_type(w->type);
    const char *name = w->name ? w->name : "(unnamed)";
    if (!ti || cpu_act_type(w->type) < 0)
        return doc_errf(err, DOC_EUNSUPPORTED, "weight %s: type %d not supported by the cpu backend",
                        name, w->type);
    if (w->rows <= 0 || w->cols <= 0 || w->cols % ti->block)
        return doc_errf(err, DOC_EFORMAT, "weight %s: shape %lld x %lld invalid for type %s", name,
                        (long long)w->rows, (long long)w->cols, ti->name);
    if (!w->data) return doc_errf(err, DOC_EINVAL, "weight %s: no data", name);
    w->dev = NULL;
    if (w->rows_only) return DOC_OK; /* get_rows reads w->data */
    if (cpu_act_type(w->type) == LLM_T_F32) return float_prepare(ctx_of(be), w, name, err);
    if (!ctx_of(be)->k.dotg[w->type]) return DOC_OK;
    size_t ng = (size_t)((w->rows + CPU_RG - 1) / CPU_RG), gbs = cpu_rg_bytes(w->type, w->cols);
    if (ng > SIZE_MAX / gbs)
        return doc_errf(err, DOC_ELIMIT, "weight %s: %lld rows too many to repack", name,
                        (long long)w->rows);
    w->dev = aligned_alloc(64, ng * gbs);
    if (!w->dev)
        return doc_errf(err, DOC_ENOMEM, "weight %s: out of memory repacking %zu bytes", name,
                        ng * gbs);
    rg_pack(w->type, w->data, w->rows, w->cols, w->dev);
    return DOC_OK;
}

static void cpu_weight_release(llm_backend *be, llm_weight *w)
{
    (void)be;
    free(w->dev);
    w->dev = NULL;
}

static int cpu_upload(llm_backend *be, float *dst, const float *src, size_t n)
{
    (void)be;
    memmove(dst, src, n * sizeof(float));
    return DOC_OK;
}

static int cpu_download(llm_backend *be, float *dst, const float *src, size_t n)
{
    (void)be;
    memmove(dst, src, n * sizeof(float));
    return DOC_OK;
}


/* ---- matmul ------------------------------------------------------------- */

typedef struct {
    float *y;
    const float *x;
    void *xq;   /* activations in the weight's format (x itself for floats) */
    size_t xbs; /* bytes per activation row */
    const char *w;
    size_t wbs; /* bytes per weight row */
    int wtype, act;
    int grouped; /* w is the row-group layout (w->dev), wbs the bytes per group */
    const float *bias;
    int64_t k, m;
    int n;
    float *panels;     /* gemm: one panel of k x NR floats per thread */
    const void *prepacked; /* gemm: every panel, made by weight_prepare (or NULL) */
    int64_t tok_chunk; /* gemm: tokens per L2-sized chunk */
} mm_job;

static void quant_rows(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)ith;
    mm_job *j = arg;
    for (int64_t t = i0; t < i1; t++) {
        void *dst = (char *)j->xq + t * j->xbs;
        if (j->act == LLM_T_Q8_1) c->k.quant_q8_1(j->x + t * j->k, dst, j->k);
        else c->k.quant_q8_K(j->x + t * j->k, dst, j->k);
    }
}

static void add_bias(float *y, int64_t m, const float *bias, int64_t r0, int64_t r1, int n)
{
    for (int t = 0; t < n; t++)
        for (int64_t r = r0; r < r1; r++) y[t * m + r] += bias[r];
}

/* rows [r0, r1) of y through the dot kernels, tiled rows x tokens */
static void mm_dot_rows(cpu_ctx *c, void *arg, int64_t r0, int64_t r1, int ith)
{
    (void)ith;
    mm_job *j = arg;
    cpu_dot_fn dot = j->grouped ? c->k.dotg[j->wtype] : c->k.dot[j->wtype];
    int tt = j->n == 1 ? 1 : j->grouped ? RG_TOK_TILE : TOK_TILE;
    int64_t rt = j->n == 1 ? r1 - r0 : j->grouped ? RG_ROW_TILE : ROW_TILE;
    for (int64_t r = r0; r < r1; r += rt) {
        int nw = (int)(r + rt < r1 ? rt : r1 - r);
        /* r0 is a multiple of CPU_RG (par_for's alignment), so r is one too */
        const char *w = j->grouped ? j->w + r / CPU_RG * j->wbs : j->w + r * j->wbs;
        for (int t = 0; t < j->n; t += tt) {
            int nx = t + tt < j->n ? tt : j->n - t;
            dot(j->k, j->y + t * j->m + r, (size_t)j->m, w, j->wbs,
                (const char *)j->xq + t * j->xbs, j->xbs, nw, nx);
        }
    }
    if (j->bias) add_bias(j->y, j->m, j->bias, r0, r1, j->n);
}

/* panels [p0, p1) (CPU_GEMM_NR rows each) through pack + micro-kernel */
static void mm_gemm_panels(cpu_ctx *c, void *arg, int64_t p0, int64_t p1, int ith)
{
    mm_job *j = arg;
    size_t psize = (size_t)j->k * CPU_GEMM_NR;
    int mr = c->k.gemm_mr;
    for (int64_t t0 = 0; t0 < j->n; t0 += j->tok_chunk) {
        int64_t t1 = t0 + j->tok_chunk < j->n ? t0 + j->tok_chunk : j->n;
        for (int64_t p = p0; p < p1; p++) {
            int64_t r = p * CPU_GEMM_NR;
            int nc = (int)(j->m - r < CPU_GEMM_NR ? j->m - r : CPU_GEMM_NR);
            const float *panel;
            if (j->prepacked) {
                panel = (const float *)j->prepacked + p * psize;
            } else {
                panel = j->panels + ith * psize;
                c->k.pack(j->wtype, j->w + r * j->wbs, j->wbs, j->k, nc, j->panels + ith * psize);
            }
            for (int64_t t = t0; t < t1; t += mr) {
                int nt = (int)(t + mr < t1 ? mr : t1 - t);
                c->k.gemm(j->k, panel, j->x + t * j->k, (size_t)j->k, j->y + t * j->m + r,
                          (size_t)j->m, nt, nc, j->bias ? j->bias + r : NULL);
            }
        }
    }
}

/*
 * Float weights.  BF16 weights take activations rounded to bf16 (nearest
 * even) at every level and every token count, so the levels agree up to the
 * order of f32 additions (bf16 x bf16 products are exact in f32); the level
 * with AVX512_BF16 keeps them as bf16 and runs vdpbf16ps on bf16 panels.
 */
static inline uint16_t bf16_round(float f) /* core's f32_to_bf16, inline to vectorize */
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline int64_t bf16_kp(int64_t k) { return (k + 1) & ~(int64_t)1; }

/* x rows rounded to bf16: as bf16 (xb, rows kp long, zero-padded) or as f32 (xr) */
typedef struct {
    const float *x;
    int64_t k;
    uint16_t *xb;
    float *xr;
} bfx_job;

static void bf16_rows(cpu_ctx *c, void *arg, int64_t t0, int64_t t1, int ith)
{
    (void)ith;
    bfx_job *j = arg;
    int64_t k = j->k, kp = bf16_kp(k);
    for (int64_t t = t0; t < t1; t++) {
        const float *x = j->x + t * k;
        if (j->xb) {
            uint16_t *o = j->xb + t * kp;
            c->k.gemm_bf16->round(x, o, k);
            if (kp > k) o[k] = 0;
        } else {
            float *o = j->xr + t * k;
            for (int64_t i = 0; i < k; i++) {
                uint32_t u = (uint32_t)bf16_round(x[i]) << 16;
                memcpy(o + i, &u, sizeof u);
            }
        }
    }
}

/* panels [p0, p1) of a BF16 weight through the AVX512_BF16 micro-kernel */
static void mm_bf16_panels(cpu_ctx *c, void *arg, int64_t p0, int64_t p1, int ith)
{
    (void)ith;
    mm_job *j = arg;
    const cpu_gemm_bf16_i *g = c->k.gemm_bf16;
    int64_t kp = bf16_kp(j->k);
    const uint16_t *xb = j->xq;
    for (int64_t t0 = 0; t0 < j->n; t0 += j->tok_chunk) {
        int64_t t1 = t0 + j->tok_chunk < j->n ? t0 + j->tok_chunk : j->n;
        for (int64_t p = p0; p < p1; p++) {
            int64_t r = p * CPU_GEMM_NR;
            int nc = (int)(j->m - r < CPU_GEMM_NR ? j->m - r : CPU_GEMM_NR);
            const uint16_t *panel = (const uint16_t *)j->prepacked + p * kp * CPU_GEMM_NR;
            for (int64_t t = t0; t < t1; t += g->mr) {
                int nt = (int)(t + g->mr < t1 ? g->mr : t1 - t);
                g->gemm(kp, panel, xb + t * kp, (size_t)kp, j->y + t * j->m + r, (size_t)j->m, nt,
                        nc, j->bias ? j->bias + r : NULL);
            }
        }
    }
}

/* mm_float: matmul of a float-type weight: GEMM over panels (weight_prepare's,
 * or packed per call) from GEMM_MIN_TOKENS tokens, the dot kernels below */
static int mm_float(cpu_ctx *c, mm_job *j, const llm_weight *w)
{
    int64_t k = j->k, n = j->n, np = (j->m + CPU_GEMM_NR - 1) / CPU_GEMM_NR;
    int gemm = n >= GEMM_MIN_TOKENS, bf16 = w->type == LLM_T_BF16;
    j->prepacked = gemm ? w->dev : NULL;
    if (bf16 && gemm && w->dev && c->k.gemm_bf16) { /* w->dev holds bf16 panels */
        int64_t kp = bf16_kp(k), mr = c->k.gemm_bf16->mr;
        bfx_job b = {j->x, k, scratch_get(c, (size_t)(n * kp) * sizeof(uint16_t)), NULL};
        if (!b.xb) return DOC_ENOMEM;
        par_for(c, n, 1, (double)k * 2, bf16_rows, &b);
        j->xq = b.xb;
        int64_t chunk = L2_BUDGET / (kp * (int64_t)sizeof(uint16_t)) / mr * mr;
        j->tok_chunk = chunk < mr ? mr : chunk;
        par_for(c, np, 1, (double)n * k * CPU_GEMM_NR, mm_bf16_panels, j);
        return DOC_OK;
    }
    size_t xsize = bf16 ? (size_t)(n * k) * sizeof(float) : 0, psize = 0;
    if (gemm && !j->prepacked) psize = (size_t)k * CPU_GEMM_NR * sizeof(float) * c->nth;
    char *scr = xsize + psize ? scratch_get(c, xsize + psize) : NULL;
    if (xsize + psize && !scr) return DOC_ENOMEM;
    if (bf16) {
        bfx_job b = {j->x, k, NULL, (float *)scr};
        par_for(c, n, 1, (double)k * 2, bf16_rows, &b);
        j->x = b.xr;
    }
    if (gemm) {
        j->panels = psize ? (float *)(scr + xsize) : NULL;
        int mr = c->k.gemm_mr;
        int64_t chunk = L2_BUDGET / (k * (int64_t)sizeof(float)) / mr * mr;
        j->tok_chunk = chunk < mr ? mr : chunk;
        par_for(c, np, 1, (double)n * k * CPU_GEMM_NR, mm_gemm_panels, j);
        return DOC_OK;
    }
    j->xq = (void *)j->x;
    j->xbs = (size_t)k * sizeof(float);
    par_for(c, j->m, CPU_RG, (double)n * k, mm_dot_rows, j);
    return DOC_OK;
}

static void cpu_matmul(llm_backend *be, float *y, const float *x, const llm_weight *w,
                       const float *bias, int n)
{
    cpu_ctx *c = ctx_of(be);
    int64_t k = w->cols, m = w->rows;
    mm_job j = {.y = y, .x = x, .w = w->data, .wbs = llm_row_bytes(w->type, k),
                .wtype = w->type, .act = cpu_act_type(w->type), .bias = bias,
                .k = k, .m = m, .n = n};
    if (n <= 0) return;
    if (w->dev && j.act != LLM_T_F32) { /* a float weight's dev holds GEMM panels */
        j.w = w->dev;
        j.wbs = cpu_rg_bytes(w->type, k);
        j.grouped = 1;
    }
    if (j.act < 0) {
        defer_error(c, DOC_EUNSUPPORTED, "cpu matmul: unsupported weight type");
        memset(y, 0, (size_t)n * m * sizeof(float));
        return;
    }
    if (j.act == LLM_T_F32) {
        if (mm_float(c, &j, w)) goto fail;
        return;
    }
    j.xbs = llm_row_bytes(j.act, k);
    j.xq = scratch_get(c, j.xbs * n);
    if (!j.xq) goto fail;
    par_for(c, n, 1, (double)k * 4, quant_rows, &j);
    par_for(c, m, CPU_RG, (double)n * k, mm_dot_rows, &j);
    return;
fail:
    memset(y, 0, (size_t)n * m * sizeof(float));
}

/* ---- get_rows ----------------------------------------------------------- */

static void cpu_get_rows(llm_backend *be, float *out, const llm_weight *emb, const int32_t *ids,
                         int n)
{
    cpu_ctx *c = ctx_of(be);
    size_t rb = llm_row_bytes(emb->type, emb->cols);
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * emb->cols;
        if (ids[i] < 0 || ids[i] >= emb->rows) {
            defer_error(c, DOC_EINVAL, "cpu get_rows: token id out of range");
            memset(o, 0, (size_t)emb->cols * sizeof(float));
            continue;
        }
        const void *row = (const char *)emb->data + (size_t)ids[i] * rb;
        if (emb->type == LLM_T_F32) memcpy(o, row, (size_t)emb->cols * sizeof(float));
        else llm_dequantize_ref(emb->type, row, o, emb->cols);
    }
}

/* ---- norms -------------------------------------------------------------- */

typedef struct {
    float *out;
    const float *x, *w, *b;
    int d;
    float eps;
} norm_job;

static void rms_rows(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)ith;
    norm_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        const float *x = j->x + i * j->d;
        float *o = j->out + i * j->d;
        float ss = c->k.dot_f32(x, x, j->d);
        float s = 1.0f / sqrtf(ss / (float)j->d + j->eps);
        for (int e = 0; e < j->d; e++) o[e] = x[e] * s * j->w[e];
    }
}

static void cpu_rmsnorm(llm_backend *be, float *out, const float *x, const float *w, int n, int d,
                        float eps)
{
    norm_job j = {out, x, w, NULL, d, eps};
    par_for(ctx_of(be), n, 1, d, rms_rows, &j);
}

static void ln_rows(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)ith;
    norm_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        const float *x = j->x + i * j->d;
        float *o = j->out + i * j->d;
        if (c->k.layernorm) {
            c->k.layernorm(o, x, j->w, j->b, j->d, j->eps);
            continue;
        }
        float mean = 0.0f, var = 0.0f;
        for (int e = 0; e < j->d; e++) mean += x[e];
        mean /= (float)j->d;
        for (int e = 0; e < j->d; e++) var += (x[e] - mean) * (x[e] - mean);
        float s = 1.0f / sqrtf(var / (float)j->d + j->eps);
        for (int e = 0; e < j->d; e++) o[e] = (x[e] - mean) * s * j->w[e] + j->b[e];
    }
}

static void cpu_layernorm(llm_backend *be, float *out, const float *x, const float *w,
                          const float *b, int n, int d, float eps)
{
    norm_job j = {out, x, w, b, d, eps};
    par_for(ctx_of(be), n, 1, 2.0 * d, ln_rows, &j);
}

/* ---- rope --------------------------------------------------------------- */

typedef struct {
    float *x;
    int h, hd, neox;
    const int32_t *pos;
    float theta;
} rope_job;

static void rope_rows(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)c;
    (void)ith;
    rope_job *j = arg;
    int half = j->hd / 2;
    for (int64_t i = i0; i < i1; i++) {
        for (int p = 0; p < half; p++) {
            float inv = 1.0f / powf(j->theta, (float)(2 * p) / (float)j->hd);
            float a = (float)j->pos[i] * inv, cs = cosf(a), sn = sinf(a);
            for (int hh = 0; hh < j->h; hh++) {
                float *v = j->x + (i * j->h + hh) * j->hd;
                int i0p = j->neox ? p : 2 * p, i1p = j->neox ? p + half : 2 * p + 1;
                float x0 = v[i0p], x1 = v[i1p];
                v[i0p] = x0 * cs - x1 * sn;
                v[i1p] = x0 * sn + x1 * cs;
            }
        }
    }
}

static void cpu_rope(llm_backend *be, float *x, int n, int h, int hd, const int32_t *pos,
                     float theta, int neox)
{
    rope_job j = {x, h, hd, neox, pos, theta};
    par_for(ctx_of(be), n, 1, 4.0 * h * hd, rope_rows, &j);
}

/* ---- attention ---------------------------------------------------------- */

/*
 * Encoder batches and prefill go through the kernel table's blocked attn
 * kernel, one (head, sequence) or (head, query chunk) per work item, each
 * thread with its own work area in scratch.  Decode-sized causal calls (a few
 * queries) keep the row-at-a-time path: transposing the whole K cache for one
 * query would cost as much as the dot products it saves.
 */
#define ATTN_BLOCK_MIN 8 /* causal calls with fewer queries go row by row */
#define ATTN_CHUNK 64    /* queries per causal work item */

typedef struct {
    float *out;
    const float *q, *k, *v;
    int n, pos0, h, g, hd, t, b;
    const int *lens;
    float scale;
    float *scores; /* per thread: span floats */
    int64_t span;
    float *const *kcs, *const *vcs; /* attn_decode: each row's cache */
    const int32_t *pos;
    size_t ldc; /* causal and decode: floats between a cache's positions */
} attn_job;

/* out_row (hd) = softmax(scale * q . keys) . values over nk keys */
static void attn_one(cpu_ctx *c, float *o, const float *q, const float *k, const float *v,
                     size_t kstride, int nk, int hd, float scale, float *s)
{
    if (nk > 0 && c->k.attn_q1 && c->k.attn_q1(o, q, k, v, kstride, nk, hd, scale, s)) return;
    float mx = -INFINITY;
    for (int t = 0; t < nk; t++) {
        s[t] = scale * c->k.dot_f32(q, k + t * kstride, hd);
        if (s[t] > mx) mx = s[t];
    }
    float sum = c->k.exp_sum(s, s, mx, nk);
    memset(o, 0, (size_t)hd * sizeof(float));
    for (int t = 0; t < nk; t++) c->k.axpy_f32(s[t], v + t * kstride, o, hd);
    c->k.scale_f32(1.0f / sum, o, hd);
}

/* items (query row, head), one row at a time: over one cache at positions
 * pos0 + i (attn_causal), or each row over its own cache (attn_decode) */
static void row_items(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    attn_job *j = arg;
    float *s = j->scores + ith * j->span;
    int grp = j->h / j->g;
    size_t kstride = j->ldc;
    for (int64_t it = i0; it < i1; it++) {
        int i = (int)(it / j->h), hh = (int)(it % j->h), kv = hh / grp;
        size_t off = ((size_t)i * j->h + hh) * j->hd;
        const float *k = j->kcs ? j->kcs[i] : j->k, *v = j->vcs ? j->vcs[i] : j->v;
        int nk = j->pos ? j->pos[i] + 1 : j->pos0 + i + 1;
        attn_one(c, j->out + off, j->q + off, k + kv * j->hd, v + kv * j->hd, kstride, nk, j->hd,
                 j->scale, s);
    }
}

static void cpu_attn_decode(llm_backend *be, float *out, const float *q, float *const *kc,
                            float *const *vc, size_t ldc, const int32_t *pos, const float *kn,
                            const float *vn, int n, int h, int g, int hd, float scale)
{
    cpu_ctx *c = ctx_of(be);
    size_t kvd = (size_t)g * hd;
    if (kn && g > 0 && ldc >= kvd) /* the new keys and values into their rows of the caches */
        for (int i = 0; i < n; i++) {
            memcpy(kc[i] + (size_t)pos[i] * ldc, kn + i * kvd, kvd * sizeof(float));
            memcpy(vc[i] + (size_t)pos[i] * ldc, vn + i * kvd, kvd * sizeof(float));
        }
    int maxpos = 0;
    for (int i = 0; i < n; i++) maxpos = pos[i] > maxpos ? pos[i] : maxpos;
    attn_job j = {.out = out, .q = q, .n = n, .h = h, .g = g, .hd = hd, .scale = scale,
                  .kcs = kc, .vcs = vc, .pos = pos, .ldc = ldc};
    j.span = ((int64_t)maxpos + 1 + 15) & ~15;
    j.scores = scratch_get(c, (size_t)j.span * c->nth * sizeof(float));
    if (!j.scores || g <= 0 || h % g || ldc < kvd) {
        if (j.scores) defer_error(c, DOC_EINVAL, "cpu attn_decode: heads not a multiple of kv heads, or cache rows narrower than g*hd");
        memset(out, 0, (size_t)n * h * hd * sizeof(float));
        return;
    }
    par_for(c, (int64_t)n * h, 1, 2.0 * (maxpos + 1) * hd, row_items, &j);
}

/* items (head, chunk of ATTN_CHUNK queries), head-major so the contiguous
 * ranges par_for hands out mix cheap early chunks with dear late ones */
static void causal_blocks(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    attn_job *j = arg;
    float *work = j->scores + ith * j->span;
    int nch = (j->n + ATTN_CHUNK - 1) / ATTN_CHUNK, grp = j->h / j->g;
    size_t ldq = (size_t)j->h * j->hd, ldk = j->ldc;
    for (int64_t it = i0; it < i1; it++) {
        int hh = (int)(it / nch), q0 = (int)(it % nch) * ATTN_CHUNK, kv = hh / grp;
        int nq = j->n - q0 < ATTN_CHUNK ? j->n - q0 : ATTN_CHUNK;
        size_t off = (size_t)q0 * ldq + (size_t)hh * j->hd;
        c->k.attn(j->out + off, j->q + off, j->k + (size_t)kv * j->hd, j->v + (size_t)kv * j->hd,
                  ldq, ldk, nq, j->pos0 + q0 + nq, j->pos0 + q0, j->hd, j->scale, work);
    }
}

static void cpu_attn_causal(llm_backend *be, float *out, const float *q, float *kc, float *vc,
                            size_t ldc, const float *kn, const float *vn, int n, int pos0, int h,
                            int g, int hd, float scale)
{
    cpu_ctx *c = ctx_of(be);
    size_t kvd = (size_t)g * hd;
    if (kn && g > 0 && ldc >= kvd) /* the new keys and values into the cache */
        for (int i = 0; i < n; i++) {
            memcpy(kc + (size_t)(pos0 + i) * ldc, kn + i * kvd, kvd * sizeof(float));
            memcpy(vc + (size_t)(pos0 + i) * ldc, vn + i * kvd, kvd * sizeof(float));
        }
    int blocked = n >= ATTN_BLOCK_MIN;
    attn_job j = {out, q, kc, vc, n, pos0, h, g, hd, 0, 0, NULL, scale, NULL, pos0 + n, NULL, NULL, NULL, ldc};
    j.span = blocked ? (int64_t)cpu_attn_work(pos0 + n, hd) : (j.span + 15) & ~15;
    j.scores = scratch_get(c, (size_t)j.span * c->nth * sizeof(float));
    if (!j.scores || g <= 0 || h % g || ldc < kvd) {
        if (j.scores) defer_error(c, DOC_EINVAL, "cpu attn_causal: heads not a multiple of kv heads, or cache rows narrower than g*hd");
        memset(out, 0, (size_t)n * h * hd * sizeof(float));
        return;
    }
    if (blocked) {
        int64_t items = (int64_t)h * ((n + ATTN_CHUNK - 1) / ATTN_CHUNK);
        par_for(c, items, 1, 2.0 * ATTN_CHUNK * (pos0 + n) * hd, causal_blocks, &j);
    } else {
        par_for(c, (int64_t)n * h, 1, 2.0 * (pos0 + n) * hd, row_items, &j);
    }
}

/* items (head, sequence), head-major: sequences come sorted by length, so a
 * contiguous range of heads x all sequences keeps threads evenly loaded */
static void bidir_items(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    attn_job *j = arg;
    float *work = j->scores + ith * j->span;
    size_t ld = (size_t)j->h * j->hd;
    for (int64_t it = i0; it < i1; it++) {
        int hh = (int)(it / j->b), b = (int)(it % j->b);
        size_t base = (size_t)b * j->t * ld + (size_t)hh * j->hd;
        int len = j->lens[b] < j->t ? j->lens[b] : j->t;
        if (len < 0) len = 0;
        c->k.attn(j->out + base, j->q + base, j->k + base, j->v + base, ld, ld, len, len, -1, j->hd,
                  j->scale, work);
        for (int i = len; i < j->t; i++) memset(j->out + base + i * ld, 0, (size_t)j->hd * sizeof(float));
    }
}

static void cpu_attn_bidir(llm_backend *be, float *out, const float *q, const float *k,
                           const float *v, int b, int t, int h, int hd, const int *lens,
                           float scale)
{
    cpu_ctx *c = ctx_of(be);
    attn_job j = {out, q, k, v, 0, 0, h, 1, hd, t, b, lens, scale, NULL, 0, NULL, NULL, NULL, 0};
    j.span = (int64_t)cpu_attn_work(t, hd);
    j.scores = scratch_get(c, (size_t)j.span * c->nth * sizeof(float));
    if (!j.scores) {
        memset(out, 0, (size_t)b * t * h * hd * sizeof(float));
        return;
    }
    par_for(c, (int64_t)b * h, 1, 4.0 * t * t * hd, bidir_items, &j);
}

/* ---- elementwise -------------------------------------------------------- */

typedef struct {
    float *y;
    const float *a, *b;
} ew_job;

static void gelu_range(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)ith;
    ew_job *j = arg;
    c->k.gelu(j->y + i0, i1 - i0);
}

static void cpu_gelu(llm_backend *be, float *x, size_t n)
{
    ew_job j = {x, NULL, NULL};
    par_for(ctx_of(be), (int64_t)n, 64, 8.0, gelu_range, &j);
}

static void swiglu_range(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)ith;
    ew_job *j = arg;
    c->k.swiglu(j->y + i0, j->a + i0, j->b + i0, i1 - i0);
}

static void cpu_swiglu(llm_backend *be, float *out, const float *gate, const float *up, size_t n)
{
    ew_job j = {out, gate, up};
    par_for(ctx_of(be), (int64_t)n, 64, 4.0, swiglu_range, &j);
}

static void add_range(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)c;
    (void)ith;
    ew_job *j = arg;
    typedef float v8 __attribute__((vector_size(32))); /* y may be a or b: load, add, store */
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        v8 a, b;
        memcpy(&a, j->a + i, sizeof a);
        memcpy(&b, j->b + i, sizeof b);
        a += b;
        memcpy(j->y + i, &a, sizeof a);
    }
    for (; i < i1; i++) j->y[i] = j->a[i] + j->b[i];
}

/* threaded like the other elementwise ops: an encoder's residual adds are
 * batch x t x d floats, a serial loop there caps the speed-up of threads */
static void cpu_add(llm_backend *be, float *y, const float *a, const float *b, size_t n)
{
    ew_job j = {y, a, b};
    par_for(ctx_of(be), (int64_t)n, 64, 1.0, add_range, &j);
}

static void cpu_copy(llm_backend *be, float *dst, const float *src, size_t n)
{
    (void)be;
    memmove(dst, src, n * sizeof(float));
}

typedef struct {
    float *x;
    int d;
} sm_job;

static void softmax_rows(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)ith;
    sm_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        float *x = j->x + i * j->d, mx = -INFINITY;
        for (int e = 0; e < j->d; e++)
            if (x[e] > mx) mx = x[e];
        float sum = c->k.exp_sum(x, x, mx, j->d);
        c->k.scale_f32(1.0f / sum, x, j->d);
    }
}

static void cpu_softmax(llm_backend *be, float *x, int n, int d)
{
    sm_job j = {x, d};
    par_for(ctx_of(be), n, 1, 4.0 * d, softmax_rows, &j);
}

/* ---- lifetime ----------------------------------------------------------- */

static int cpu_sync(llm_backend *be, doc_err *err)
{
    cpu_ctx *c = ctx_of(be);
    int rc = c->err_rc;
    if (rc) {
        doc_errf(err, rc, "%s", c->err_msg);
        c->err_rc = 0;
    }
    return rc;
}

static void cpu_destroy(llm_backend *be)
{
    cpu_ctx *c = ctx_of(be);
    if (c) {
        pool_free(&c->pool);
        free(c->scratch);
        free(c);
    }
    free(be);
}

/* pick: each row with sample.c's pick_row, in place (rows in parallel, each
 * thread with its candidates in scratch) */
typedef struct {
    int32_t *ids;
    float *logits;
    int vocab, rmax;
    const int32_t *recent, *nrec;
    const llm_pick *p;
    pick_cand *cand;
} pick_job;

static void pick_rows(cpu_ctx *c, void *arg, int64_t i0, int64_t i1, int ith)
{
    (void)c;
    pick_job *j = arg;
    for (int64_t r = i0; r < i1; r++)
        j->ids[r] = pick_row(j->logits + r * j->vocab, j->vocab, j->recent + r * j->rmax, j->nrec[r],
                             &j->p[r], j->cand + (size_t)ith * j->vocab);
}

static int cpu_pick(llm_backend *be, int32_t *ids, float *logits, int n, int vocab,
                    const int32_t *recent, const int32_t *nrec, int rmax, const llm_pick *p,
                    doc_err *err)
{
    cpu_ctx *c = ctx_of(be);
    if (n <= 0) return DOC_OK;
    pick_job j = {ids, logits, vocab, rmax, recent, nrec, p, NULL};
    j.cand = scratch_get(c, (size_t)c->nth * vocab * sizeof(pick_cand));
    if (!j.cand) return doc_errf(err, DOC_ENOMEM, "cpu pick: out of memory");
    par_for(c, n, 1, 8.0 * vocab, pick_rows, &j);
    return DOC_OK;
}

/* the host's available memory (MemAvailable: free plus what the kernel can
 * reclaim) and its total, from /proc/meminfo */
static int cpu_mem_info(llm_backend *be, size_t *free_bytes, size_t *total_bytes)
{
    (void)be;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return DOC_EIO;
    char line[256];
    unsigned long long avail = 0, total = 0, v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) avail = v;
        else if (sscanf(line, "MemTotal: %llu kB", &v) == 1) total = v;
    }
    fclose(f);
    if (!avail || !total) return DOC_EFORMAT;
    *free_bytes = (size_t)(avail << 10);
    *total_bytes = (size_t)(total << 10);
    return DOC_OK;
}

static const llm_backend_i cpu_iface = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .weight_prepare = cpu_weight_prepare,
    .weight_release = cpu_weight_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .matmul = cpu_matmul,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .layernorm = cpu_layernorm,
    .rope = cpu_rope,
    .attn_causal = cpu_attn_causal,
    .attn_decode = cpu_attn_decode,
    .mem_info = cpu_mem_info,
    .pick = cpu_pick,
    .attn_bidir = cpu_attn_bidir,
    .gelu = cpu_gelu,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .copy = cpu_copy,
    .softmax = cpu_softmax,
    .sync = cpu_sync,
    .destroy = cpu_destroy,
};

static const char *const isa_names[] = {"ref", "avx2", "avx512"};
static const cpu_kern *const isa_tables[] = {&cpu_kern_ref, &cpu_kern_avx2, &cpu_kern_avx512};

/* F16C through cpuid leaf 1 (ECX bit 29): clang's __builtin_cpu_supports lacks it */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

/* AVX512_BF16 through cpuid leaf 7 subleaf 1 (EAX bit 5) */
static int has_avx512bf16(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}

int cpu_isa_detect(void)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512vnni");
    return avx512 ? CPU_ISA_AVX512 : avx2 ? CPU_ISA_AVX2 : CPU_ISA_REF;
}

/* the level DOCENT_ISA asks for (capped at the CPU's), or the CPU's */
static int isa_wanted(void)
{
    int have = cpu_isa_detect();
    const char *e = getenv("DOCENT_ISA");
    if (e && *e)
        for (int i = 0; i <= CPU_ISA_AVX512; i++)
            if (!strcmp(e, isa_names[i])) return i < have ? i : have;
    return have;
}

const char *llm_cpu_isa(void) { return isa_names[isa_wanted()]; }

int llm_cpu_bf16(void) { return isa_tables[isa_wanted()]->gemm_bf16 && has_avx512bf16(); }

/* copy table t into dst, taking every NULL entry from the reference */
static void fill_table(cpu_kern *dst, const cpu_kern *t)
{
    const cpu_kern *r = &cpu_kern_ref;
    *dst = *t;
    for (int i = 0; i < LLM_T_COUNT; i++)
        if (!dst->dot[i]) dst->dot[i] = r->dot[i];
#define FILL(f) \
    if (!dst->f) dst->f = r->f
    FILL(quant_q8_1);
    FILL(quant_q8_K);
    FILL(dot_f32);
    FILL(axpy_f32);
    FILL(scale_f32);
    FILL(exp_sum);
    FILL(gelu);
    FILL(swiglu);
    FILL(attn);
#undef FILL
    if (dst->gemm_bf16 && !has_avx512bf16()) dst->gemm_bf16 = NULL;
    if (!dst->gemm) {
        dst->gemm = r->gemm;
        dst->gemm_mr = r->gemm_mr;
    }
    if (!dst->pack) dst->pack = r->pack;
}

int cpu_backend_new_isa(int n_threads, int isa, llm_backend **out, doc_err *err)
{
    *out = NULL;
    int have = cpu_isa_detect();
    if (isa < CPU_ISA_REF) isa = CPU_ISA_REF;
    if (isa > have) isa = have;
    if (n_threads <= 0) n_threads = cpu_count();
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    llm_backend *be = calloc(1, sizeof *be);
    cpu_ctx *c = calloc(1, sizeof *c);
    int rc = DOC_OK;
    if (!be || !c) {
        rc = doc_errf(err, DOC_ENOMEM, "cpu backend: out of memory");
        goto done;
    }
    fill_table(&c->k, isa_tables[isa]);
    c->isa = isa;
    c->nth = n_threads;
    if (pool_new(n_threads, &c->pool)) {
        rc = doc_errf(err, DOC_ENOMEM, "cpu backend: cannot start %d threads", n_threads);
        goto done;
    }
    c->nth = pool_size(c->pool);
    c->iface = cpu_iface;
    const char *grow = getenv("DOCENT_CPU_KV_GROW");
    if (grow && *grow == '1') {
        c->iface.kv_reserve = cpu_kv_reserve;
        c->iface.kv_grow = cpu_kv_grow;
    }
    be->i = &c->iface;
    be->ctx = c;
    *out = be;
    be = NULL;
    c = NULL;
done:
    if (c) pool_free(&c->pool);
    free(c);
    free(be);
    return rc;
}

int cpu_backend_isa(const llm_backend *be) { return ((const cpu_ctx *)be->ctx)->isa; }

int llm_cpu_backend_new(int n_threads, llm_backend **out, doc_err *err)
{
    return cpu_backend_new_isa(n_threads, isa_wanted(), out, err);
}

void llm_backend_free(llm_backend **be)
{
    if (!be || !*be) return;
    (*be)->i->destroy(*be);
    *be = NULL;
}
