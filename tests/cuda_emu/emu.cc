/*
 * emu.cc - the CUDA emulator's machine: fibers for threads, lazy in-order
 * streams, graph capture, device memory with guard pages, driver virtual
 * memory over memfd, and a reference GemmEx.  See emu.h for what it is for
 * and what it does not check.
 *
 * Every API call holds one process-wide lock; kernels run inside the call
 * that waits for them (a synchronisation), one block at a time, on the
 * calling OS thread.  A fault (deadlock, a lane outside a collective's mask,
 * a misaligned WMMA pointer, a launch of more dynamic shared memory than the
 * kernel was allowed) prints the kernel, block and thread and aborts: the
 * test that ran it fails there.
 */
#include "emu.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

/* ---- the lock and the last error --------------------------------------- */

static std::recursive_mutex g_mu;
#define LOCK std::lock_guard<std::recursive_mutex> lock_(g_mu)
static thread_local cudaError_t t_last = cudaSuccess;

static cudaError_t ret(cudaError_t e)
{
    if (e != cudaSuccess) t_last = e;
    return e;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureWrongThread: return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    }
    return "unknown error";
}

/* ---- machine settings --------------------------------------------------- */

static long env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

/* DOCENT_CUDA_EMU_MEM_MB: device memory (default 4096); DOCENT_CUDA_EMU_CC:
 * compute capability as major*10+minor (default 90) */
static size_t mem_total(void) { return (size_t)env_long("DOCENT_CUDA_EMU_MEM_MB", 4096) << 20; }
static int cc(void) { return (int)env_long("DOCENT_CUDA_EMU_CC", 90); }
static int smem_optin(void) { return cc() >= 90 ? 232448 : cc() >= 80 ? 166912 : 49152; }

/* ---- memory ------------------------------------------------------------- */

enum { M_DEV, M_PINNED, M_VMM };
struct region {
    size_t size;  /* usable bytes from the key */
    int kind;
    void *map;    /* the mmap behind it (M_DEV, M_PINNED) */
    size_t map_len;
};
static std::map<uintptr_t, region> g_regions;
static size_t g_used; /* device bytes: allocations and VMM handles */
static const size_t PAGE = 4096;

/* the region holding [p, p + n), or NULL */
static region *find(const void *p, size_t n, uintptr_t *base = NULL)
{
    uintptr_t a = (uintptr_t)p;
    auto it = g_regions.upper_bound(a);
    if (it == g_regions.begin()) return NULL;
    --it;
    if (a < it->first || a + n > it->first + it->second.size || a + n < a) return NULL;
    if (base) *base = it->first;
    return &it->second;
}

static bool is_dev(const void *p, size_t n)
{
    region *r = find(p, n);
    return r && (r->kind == M_DEV || r->kind == M_VMM);
}
static bool is_pinned(const void *p, size_t n)
{
    region *r = find(p, n);
    return r && r->kind == M_PINNED;
}

/* bytes at the end of fresh pages, a PROT_NONE page behind them; filled with
 * 0xff (NaN as floats), as device memory is not cleared */
static void *guarded(size_t n, size_t align, region *r)
{
    size_t body = (n + align - 1) / align * align;
    if (!body) body = align;
    size_t len = (body + PAGE - 1) / PAGE * PAGE + PAGE;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    mprotect((char *)m + len - PAGE, PAGE, PROT_NONE);
    char *p = (char *)m + len - PAGE - body;
    memset(p, 0xff, body);
    r->size = body;
    r->map = m;
    r->map_len = len;
    return p;
}

/* ---- streams, events, graphs ------------------------------------------- */

typedef std::function<void()> op_fn;

struct emu_graph {
    std::vector<op_fn> nodes;
};
struct emu_graph_exec {
    std::vector<op_fn> nodes;
};

struct emu_stream {
    std::deque<op_fn> q;
    uint64_t enq = 0, done = 0; /* ops queued / run, ever */
    bool capturing = false, cap_bad = false;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
    pthread_t cap_thread;
    emu_graph *cap = NULL;
};

struct emu_event {
    emu_stream *st = NULL;
    uint64_t seq = 0;
    bool in_capture = false;
};

static emu_stream g_legacy;
static std::vector<emu_stream *> g_streams;

static emu_stream *S(cudaStream_t st) { return st ? st : &g_legacy; }

/* run st's queued work up to op number seq */
static void run_until(emu_stream *s, uint64_t seq)
{
    while (s->done < seq && !s->q.empty()) {
        op_fn f = std::move(s->q.front());
        s->q.pop_front();
        f();
        s->done++;
    }
}
static void drain(emu_stream *s) { run_until(s, s->enq); }

static void drain_all(void)
{
    drain(&g_legacy);
    for (emu_stream *s : g_streams) drain(s);
}

/* The calling thread may not make potentially unsafe calls while it (or, in
 * global mode, any thread) captures; a call that waits for the whole device
 * (cudaFree, cudaDeviceSynchronize) is invalid while any stream captures,
 * from any thread.  The capture is invalidated and the call fails. */
static bool capture_forbids(bool device_wide = false)
{
    bool bad = false;
    for (emu_stream *s : g_streams)
        if (s->capturing && s->mode != cudaStreamCaptureModeRelaxed &&
            (device_wide || s->mode == cudaStreamCaptureModeGlobal ||
             pthread_equal(s->cap_thread, pthread_self()))) {
            s->cap_bad = true;
            bad = true;
        }
    return bad;
}

static void enqueue(emu_stream *s, op_fn f)
{
    if (s->capturing) {
        s->cap->nodes.push_back(std::move(f));
        return;
    }
    s->q.push_back(std::move(f));
    s->enq++;
}

/* ---- kernels ------------------------------------------------------------ */

/* Switching fibers: on x86-64 a plain stack switch (the callee-saved
 * registers pushed, the stack pointer swapped): swapcontext also saves the
 * signal mask, a system call per switch, and a 1024-thread block switches
 * millions of times.  Elsewhere ucontext. */
#if defined(__x86_64__)
#define EMU_FAST_SWITCH 1
extern "C" void emu_switch(void **save_sp, void *to_sp);
__asm__(".text\n"
        ".globl emu_switch\n"
        ".type emu_switch,@function\n"
        "emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_switch,.-emu_switch\n");
#else
#define EMU_FAST_SWITCH 0
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

struct fiber {
#if EMU_FAST_SWITCH
    void *sp; /* saved stack pointer (callee-saved registers above it) */
#else
    ucontext_t uc;
#endif
    char *stack;
    bool done;
    const char *wait; /* the barrier it waits at */
    uint3 tid;
};

struct warp_state {
    int count = 0;
    unsigned gen = 0, mask = 0;
    const char *what = NULL;
    uint64_t slot[32];
};

static const size_t STACK = 256u << 10;
static std::vector<fiber> g_fib; /* a pool: the block's threads are the first g_n */
static int g_n;
static std::vector<warp_state> g_warps;
#if EMU_FAST_SWITCH
static void *g_sched_sp;
#else
static ucontext_t g_sched;
#endif
static fiber *g_cur;
static const std::function<void()> *g_body;
static const char *g_kname;
static int g_live, g_bar_count;
static unsigned g_bar_gen;
static uint64_t g_progress;
static void *g_smem;
static size_t g_smem_size;
static std::map<const void *, int> g_smem_allowed;

void emu_fault(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda-emu: ");
    if (g_kname && g_cur)
        fprintf(stderr, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): ", g_kname, blockIdx.x,
                blockIdx.y, blockIdx.z, g_cur->tid.x, g_cur->tid.y, g_cur->tid.z);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static int linear(void) { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }

static void yield(void)
{
#if EMU_FAST_SWITCH
    emu_switch(&g_cur->sp, g_sched_sp);
#else
    swapcontext(&g_cur->uc, &g_sched);
#endif
}

/* static shared memory: poisoned (0xff bytes) when the first thread of a
 * block reaches its declaration, as a block's shared memory starts undefined */
static uint64_t g_block_serial;
static std::map<void *, uint64_t> g_poisoned;
void emu_smem_poison(void *p, size_t n)
{
    uint64_t &s = g_poisoned[p];
    if (s != g_block_serial) {
        s = g_block_serial;
        memset(p, 0xff, n);
    }
}

void *emu_dyn_smem(void)
{
    if (!g_smem_size) emu_fault("extern __shared__ memory used by a launch that gave none");
    return g_smem;
}

void __syncthreads(void)
{
    unsigned gen = g_bar_gen;
    g_cur->wait = "__syncthreads";
    g_bar_count++;
    g_progress++;
    if (g_bar_count == g_live) {
        g_bar_count = 0;
        g_bar_gen++;
    } else {
        while (g_bar_gen == gen) yield();
    }
    g_cur->wait = NULL;
}

void emu_warp_sync(unsigned mask, const char *what)
{
    int t = linear(), lane = t & 31, w = t >> 5, n = g_n;
    if (!((mask >> lane) & 1u)) emu_fault("%s with mask %08x, which leaves out the calling lane %d", what, mask, lane);
    for (int l = 0; l < 32; l++)
        if (((mask >> l) & 1u) && w * 32 + l >= n)
            emu_fault("%s with mask %08x names lane %d, past the block's %d threads", what, mask, l, n);
    warp_state &ws = g_warps[w];
    if (ws.count == 0) {
        ws.mask = mask;
        ws.what = what;
    } else if (ws.mask != mask || strcmp(ws.what, what)) {
        emu_fault("warp %d diverged: lanes wait at %s (mask %08x) while lane %d reaches %s (mask %08x)", w,
                  ws.what, ws.mask, lane, what, mask);
    }
    unsigned gen = ws.gen;
    g_cur->wait = what;
    ws.count++;
    g_progress++;
    if (ws.count == __builtin_popcount(mask)) {
        ws.count = 0;
        ws.gen++;
    } else {
        while (ws.gen == gen) yield();
    }
    g_cur->wait = NULL;
}

uint64_t emu_warp_exchange(unsigned mask, uint64_t mine, int src, const char *what)
{
    int t = linear(), lane = t & 31;
    warp_state &ws = g_warps[t >> 5];
    if (!((mask >> lane) & 1u)) emu_fault("%s with mask %08x, which leaves out the calling lane %d", what, mask, lane);
    if (src < 0 || src > 31 || !((mask >> src) & 1u))
        emu_fault("%s: lane %d reads lane %d, outside the mask %08x", what, lane, src, mask);
    ws.slot[lane] = mine;
    emu_warp_sync(mask, what);
    uint64_t r = ws.slot[src];
    emu_warp_sync(mask, what);
    return r;
}

unsigned emu_warp_ballot(unsigned mask, int pred, const char *what)
{
    int t = linear(), lane = t & 31;
    warp_state &ws = g_warps[t >> 5];
    ws.slot[lane] = pred != 0;
    emu_warp_sync(mask, what);
    unsigned r = 0;
    for (int l = 0; l < 32; l++)
        if (((mask >> l) & 1u) && ws.slot[l]) r |= 1u << l;
    emu_warp_sync(mask, what);
    return r;
}

void nvcuda::wmma::emu_wmma_check(const void *p, unsigned ldm, size_t esize, const char *what)
{
    if ((uintptr_t)p % 32) emu_fault("%s: pointer %p is not 256-bit aligned", what, p);
    if ((ldm * esize) % 16) emu_fault("%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}

static void fiber_main(void)
{
    (*g_body)();
    g_cur->done = true;
    g_live--;
    g_progress++;
    if (g_bar_count && g_bar_count == g_live) { /* exited threads count as arrived */
        g_bar_count = 0;
        g_bar_gen++;
    }
#if EMU_FAST_SWITCH
    yield(); /* never resumed: the scheduler skips finished threads */
    abort();
#endif
}

/* a thread's first entry: fiber_main on its own stack */
static void fiber_init(fiber &f)
{
#if EMU_FAST_SWITCH
    uintptr_t top = ((uintptr_t)f.stack + STACK - 64) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *sp = (void *)fiber_main; /* emu_switch's ret; entry with rsp = 8 mod 16, as after a call */
    for (int i = 1; i <= 6; i++) sp[-i] = NULL; /* rbp rbx r12 r13 r14 r15 */
    f.sp = sp - 6;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stack;
    f.uc.uc_stack.ss_size = STACK;
    f.uc.uc_link = &g_sched;
    makecontext(&f.uc, fiber_main, 0);
#endif
}

static void resume(fiber &f)
{
#if EMU_FAST_SWITCH
    emu_switch(&g_sched_sp, f.sp);
#else
    swapcontext(&g_sched, &f.uc);
#endif
}

static void deadlock(void)
{
    std::string who;
    int shown = 0;
    for (int i = 0; i < g_n && shown < 8; i++)
        if (!g_fib[i].done) {
            char b[96];
            snprintf(b, sizeof b, "%sthread %d at %s", shown ? ", " : "", i,
                     g_fib[i].wait ? g_fib[i].wait : "?");
            who += b;
            shown++;
        }
    g_cur = NULL;
    emu_fault("kernel %s, block (%u,%u,%u): deadlock, %d threads wait (%s%s); the others exited",
              g_kname, blockIdx.x, blockIdx.y, blockIdx.z, g_live, who.c_str(),
              g_live > shown ? ", ..." : "");
}

static void run_kernel(const char *name, dim3 grid, dim3 block, size_t smem,
                       const std::function<void()> &body)
{
    int n = (int)(block.x * block.y * block.z);
    size_t old = g_fib.size();
    if ((size_t)n > old) {
        g_fib.resize(n);
        for (size_t i = old; i < (size_t)n; i++) {
            void *s = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (s == MAP_FAILED) emu_fault("no memory for thread stacks");
            g_fib[i].stack = (char *)s;
        }
    }
    g_n = n;
    g_warps.assign((n + 31) / 32, warp_state());
    region sr{};
    void *smem_buf = NULL;
    if (smem) smem_buf = guarded(smem, 256, &sr);
    g_smem = smem_buf;
    g_smem_size = smem;
    g_kname = name;
    g_body = &body;
    blockDim = block;
    gridDim = grid;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = uint3{bx, by, bz};
                g_block_serial++;
                if (smem_buf) memset(smem_buf, 0xff, sr.size);
                for (int i = 0; i < n; i++) {
                    fiber &f = g_fib[i];
                    fiber_init(f);
                    f.done = false;
                    f.wait = NULL;
                    f.tid = uint3{(unsigned)i % block.x, (unsigned)i / block.x % block.y,
                                  (unsigned)i / (block.x * block.y)};
                }
                g_live = n;
                g_bar_count = 0;
                for (warp_state &w : g_warps) w.count = 0;
                while (g_live) {
                    uint64_t p0 = g_progress;
                    for (int i = 0; i < n; i++) {
                        if (g_fib[i].done) continue;
                        g_cur = &g_fib[i];
                        threadIdx = g_fib[i].tid;
                        resume(g_fib[i]);
                    }
                    if (g_live && g_progress == p0) deadlock();
                }
            }
    g_cur = NULL;
    g_kname = NULL;
    if (smem_buf) munmap(sr.map, sr.map_len);
    g_smem = NULL;
    g_smem_size = 0;
}

void emu_enqueue_kernel(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem,
                        cudaStream_t st, std::function<void()> run)
{
    LOCK;
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (!threads || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || !grid.x ||
        !grid.y || !grid.z || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "cuda-emu: launch of %s: grid (%u,%u,%u), block (%u,%u,%u) is not a valid configuration\n",
                name, grid.x, grid.y, grid.z, block.x, block.y, block.z);
        ret(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem > 49152) {
        auto it = g_smem_allowed.find(fn);
        if (it == g_smem_allowed.end() || (size_t)it->second < smem) {
            fprintf(stderr, "cuda-emu: launch of %s asks %zu bytes of dynamic shared memory; "
                            "cudaFuncSetAttribute allowed it %d\n",
                    name, smem, it == g_smem_allowed.end() ? 49152 : it->second);
            ret(cudaErrorInvalidValue);
            return;
        }
    }
    enqueue(S(st), [name, grid, block, smem, run]() { run_kernel(name, grid, block, smem, run); });
}

cudaError_t emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v)
{
    LOCK;
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > smem_optin())
        return ret(cudaErrorInvalidValue);
    g_smem_allowed[fn] = v;
    return cudaSuccess;
}

/* ---- device ------------------------------------------------------------- */

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = (int)env_long("DOCENT_CUDA_EMU_DEVICES", 1);
    return *n ? cudaSuccess : ret(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int d)
{
    int n = 0;
    cudaGetDeviceCount(&n);
    return d >= 0 && d < n ? cudaSuccess : ret(cudaErrorInvalidDevice);
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d)
{
    if (cudaSetDevice(d) != cudaSuccess) return cudaErrorInvalidDevice;
    switch (a) {
    case cudaDevAttrComputeCapabilityMajor: *v = cc() / 10; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *v = cc() % 10; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *v = cc() >= 90 ? 132 : 108; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 49152; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = smem_optin(); return cudaSuccess;
    }
    return ret(cudaErrorInvalidValue);
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    LOCK;
    size_t t = mem_total();
    *total_b = t;
    *free_b = g_used < t ? t - g_used : 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    LOCK;
    if (capture_forbids(true)) return ret(cudaErrorStreamCaptureUnsupported);
    drain_all();
    return cudaSuccess;
}

/* device (M_DEV, counted against the device's memory) or pinned host memory */
static cudaError_t region_alloc(void **p, size_t n, int kind)
{
    LOCK;
    *p = NULL;
    if (capture_forbids()) return ret(cudaErrorStreamCaptureUnsupported);
    size_t body = n ? (n + 255) / 256 * 256 : 256;
    if (kind == M_DEV && g_used + body > mem_total()) return ret(cudaErrorMemoryAllocation);
    region r{};
    void *q = guarded(n, 256, &r);
    if (!q) return ret(cudaErrorMemoryAllocation);
    r.kind = kind;
    g_regions[(uintptr_t)q] = r;
    if (kind == M_DEV) g_used += r.size;
    *p = q;
    return cudaSuccess;
}

/* both frees wait for the whole device first */
static cudaError_t region_free(void *p, int kind)
{
    LOCK;
    if (!p) return cudaSuccess;
    if (capture_forbids(true)) return ret(cudaErrorStreamCaptureUnsupported);
    auto it = g_regions.find((uintptr_t)p);
    if (it == g_regions.end() || it->second.kind != kind) return ret(cudaErrorInvalidValue);
    drain_all();
    munmap(it->second.map, it->second.map_len);
    if (kind == M_DEV) g_used -= it->second.size;
    g_regions.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) { return region_alloc(p, n, M_DEV); }
cudaError_t cudaFree(void *p) { return region_free(p, M_DEV); }
cudaError_t cudaMallocHost(void **p, size_t n) { return region_alloc(p, n, M_PINNED); }
cudaError_t cudaFreeHost(void *p) { return region_free(p, M_PINNED); }

/* a copy's direction checked against where its pointers are */
static cudaError_t check_kind(void *dst, const void *src, size_t n, cudaMemcpyKind *k)
{
    bool dd = is_dev(dst, n), sd = is_dev(src, n);
    if (*k == cudaMemcpyDefault) *k = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                         : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    bool ok = *k == cudaMemcpyHostToDevice ? dd && !sd : *k == cudaMemcpyDeviceToHost ? sd && !dd
              : *k == cudaMemcpyDeviceToDevice ? dd && sd : !dd && !sd;
    if (!ok) {
        fprintf(stderr, "cuda-emu: copy of %zu bytes, kind %d, from %p (%s) to %p (%s)\n", n, (int)*k,
                src, sd ? "device" : "host", dst, dd ? "device" : "host");
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

static void copy_op(emu_stream *s, void *dst, const void *src, size_t n)
{
    enqueue(s, [dst, src, n]() { memcpy(dst, src, n); });
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t st)
{
    LOCK;
    if (!n) return cudaSuccess;
    if (check_kind(dst, src, n, &k)) return ret(cudaErrorInvalidValue);
    emu_stream *s = S(st);
    if (k == cudaMemcpyHostToDevice && !is_pinned(src, n)) {
        if (s->capturing) { /* a graph cannot hold a copy from pageable memory */
            s->cap_bad = true;
            return ret(cudaErrorStreamCaptureUnsupported);
        }
        /* pageable: staged now, the DMA comes in stream order */
        auto snap = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        enqueue(s, [dst, snap]() { memcpy(dst, snap->data(), snap->size()); });
        return cudaSuccess;
    }
    if (k == cudaMemcpyDeviceToHost && !is_pinned(dst, n)) {
        if (s->capturing) {
            s->cap_bad = true;
            return ret(cudaErrorStreamCaptureUnsupported);
        }
        /* into pageable memory: returns when the copy is done */
        drain(s);
        memcpy(dst, src, n);
        return cudaSuccess;
    }
    copy_op(s, dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k)
{
    LOCK;
    if (!n) return cudaSuccess;
    if (capture_forbids()) return ret(cudaErrorStreamCaptureUnsupported);
    if (check_kind(dst, src, n, &k)) return ret(cudaErrorInvalidValue);
    if (k == cudaMemcpyHostToDevice && !is_pinned(src, n)) {
        /* from pageable memory the call returns once the bytes are staged;
         * the DMA is legacy-stream work that a non-blocking stream does not
         * wait for */
        auto snap = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        enqueue(&g_legacy, [dst, snap]() { memcpy(dst, snap->data(), snap->size()); });
        return cudaSuccess;
    }
    if (k == cudaMemcpyDeviceToDevice) {
        copy_op(&g_legacy, dst, src, n);
        return cudaSuccess;
    }
    drain(&g_legacy);
    memcpy(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st)
{
    LOCK;
    if (!n) return cudaSuccess;
    if (!is_dev(p, n)) {
        fprintf(stderr, "cuda-emu: memset of %zu bytes at %p, not device memory\n", n, p);
        return ret(cudaErrorInvalidValue);
    }
    enqueue(S(st), [p, v, n]() { memset(p, v, n); });
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *st, unsigned flags)
{
    LOCK;
    *st = NULL;
    if (!(flags & cudaStreamNonBlocking)) { /* blocking streams would order against the legacy one */
        fprintf(stderr, "cuda-emu: only non-blocking streams are emulated\n");
        return ret(cudaErrorInvalidValue);
    }
    *st = new emu_stream();
    g_streams.push_back(*st);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t st)
{
    LOCK;
    if (!st) return ret(cudaErrorInvalidResourceHandle);
    drain(st); /* pending work still completes */
    for (size_t i = 0; i < g_streams.size(); i++)
        if (g_streams[i] == st) g_streams.erase(g_streams.begin() + (long)i);
    delete st;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t st)
{
    LOCK;
    if (capture_forbids()) return ret(cudaErrorStreamCaptureUnsupported);
    drain(S(st));
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned flags)
{
    (void)flags;
    *ev = new emu_event();
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t ev)
{
    delete ev;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t st)
{
    LOCK;
    emu_stream *s = S(st);
    if (s->capturing) {
        ev->in_capture = true; /* a node of the graph; nothing to wait on from the host */
        return cudaSuccess;
    }
    ev->in_capture = false;
    ev->st = s;
    ev->seq = s->enq;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t ev)
{
    LOCK;
    if (ev->in_capture || capture_forbids()) return ret(cudaErrorStreamCaptureUnsupported);
    if (ev->st) run_until(ev->st, ev->seq); /* exactly the work before the record */
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t st, cudaStreamCaptureMode mode)
{
    LOCK;
    if (!st || st->capturing) return ret(cudaErrorStreamCaptureUnsupported);
    st->capturing = true;
    st->cap_bad = false;
    st->mode = mode;
    st->cap_thread = pthread_self();
    st->cap = new emu_graph();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t *g)
{
    LOCK;
    *g = NULL;
    if (!st || !st->capturing) return ret(cudaErrorInvalidValue);
    st->capturing = false;
    emu_graph *gr = st->cap;
    st->cap = NULL;
    if (st->cap_bad) {
        delete gr;
        return ret(cudaErrorStreamCaptureInvalidated);
    }
    *g = gr;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags)
{
    (void)flags;
    if (!g) return ret(cudaErrorInvalidValue);
    *e = new emu_graph_exec{g->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t st)
{
    LOCK;
    if (!e) return ret(cudaErrorInvalidValue);
    for (const op_fn &f : e->nodes) enqueue(S(st), f);
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
    delete e;
    return cudaSuccess;
}

/* ---- driver: virtual memory -------------------------------------------- */

static const size_t GRAN = 2u << 20;

struct vmm_handle {
    int fd;
    size_t size;
};
struct vmm_range {
    size_t size;
    std::map<uintptr_t, size_t> maps; /* mapped pieces: address -> bytes */
};
static std::map<uintptr_t, vmm_range> g_vranges;

static bool vmm_on(void) { return env_long("DOCENT_CUDA_EMU_VMM", 1) != 0; }

static CUresult cu_device_get(CUdevice *d, int ordinal)
{
    int n = 0;
    cudaGetDeviceCount(&n);
    if (ordinal < 0 || ordinal >= n) return CUDA_ERROR_INVALID_VALUE;
    *d = ordinal;
    return CUDA_SUCCESS;
}

static CUresult cu_device_attr(int *v, CUdevice_attribute a, CUdevice d)
{
    (void)d;
    if (a != CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) return CUDA_ERROR_INVALID_VALUE;
    *v = vmm_on();
    return CUDA_SUCCESS;
}

static bool prop_ok(const CUmemAllocationProp *p)
{
    return p && p->type == CU_MEM_ALLOCATION_TYPE_PINNED && p->location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
           p->location.id == 0;
}

static CUresult cu_gran(size_t *g, const CUmemAllocationProp *p, CUmemAllocationGranularity_flags f)
{
    (void)f;
    if (!prop_ok(p)) return CUDA_ERROR_INVALID_VALUE;
    *g = GRAN;
    return CUDA_SUCCESS;
}

static CUresult cu_reserve(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr, unsigned long long fl)
{
    LOCK;
    (void)addr;
    (void)fl;
    if (!size || size % GRAN || (align && align % GRAN)) return CUDA_ERROR_INVALID_VALUE;
    size_t a = align ? align : GRAN;
    void *m = mmap(NULL, size + a, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    uintptr_t b = ((uintptr_t)m + a - 1) / a * a;
    if (b > (uintptr_t)m) munmap(m, b - (uintptr_t)m);
    uintptr_t end = (uintptr_t)m + size + a;
    if (end > b + size) munmap((void *)(b + size), end - (b + size));
    g_vranges[b] = vmm_range{size, {}};
    region r{};
    r.size = size;
    r.kind = M_VMM;
    g_regions[b] = r;
    *p = b;
    return CUDA_SUCCESS;
}

static CUresult cu_addr_free(CUdeviceptr p, size_t size)
{
    LOCK;
    auto it = g_vranges.find(p);
    if (it == g_vranges.end() || it->second.size != size) return CUDA_ERROR_INVALID_VALUE;
    if (!it->second.maps.empty()) {
        fprintf(stderr, "cuda-emu: cuMemAddressFree of a range with %zu mappings left\n", it->second.maps.size());
        return CUDA_ERROR_INVALID_VALUE;
    }
    munmap((void *)p, size);
    g_vranges.erase(it);
    g_regions.erase(p);
    return CUDA_SUCCESS;
}

static CUresult cu_create(CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *p,
                          unsigned long long fl)
{
    LOCK;
    (void)fl;
    if (!prop_ok(p) || !size || size % GRAN) return CUDA_ERROR_INVALID_VALUE;
    if (g_used + size > mem_total()) return CUDA_ERROR_OUT_OF_MEMORY;
    int fd = memfd_create("cuda-emu-vmm", 0);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        if (fd >= 0) close(fd);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    /* fresh device memory is not cleared */
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) {
        memset(m, 0xff, size);
        munmap(m, size);
    }
    g_used += size;
    *h = (CUmemGenericAllocationHandle)(uintptr_t) new vmm_handle{fd, size};
    return CUDA_SUCCESS;
}

static CUresult cu_release(CUmemGenericAllocationHandle h)
{
    LOCK;
    vmm_handle *v = (vmm_handle *)(uintptr_t)h;
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    close(v->fd); /* pages still mapped stay until unmapped, as the driver's */
    g_used -= v->size;
    delete v;
    return CUDA_SUCCESS;
}

static vmm_range *range_of(uintptr_t p, size_t size)
{
    auto it = g_vranges.upper_bound(p);
    if (it == g_vranges.begin()) return NULL;
    --it;
    if (p < it->first || p + size > it->first + it->second.size) return NULL;
    return &it->second;
}

static CUresult cu_map(CUdeviceptr p, size_t size, size_t off, CUmemGenericAllocationHandle h,
                       unsigned long long fl)
{
    LOCK;
    (void)fl;
    vmm_handle *v = (vmm_handle *)(uintptr_t)h;
    vmm_range *r = range_of(p, size);
    if (!v || !r || p % GRAN || !size || size % GRAN || off % GRAN || off + size > v->size)
        return CUDA_ERROR_INVALID_VALUE;
    for (auto &m : r->maps)
        if (m.first < p + size && p < m.first + m.second) return CUDA_ERROR_INVALID_VALUE; /* mapped already */
    if (mmap((void *)p, size, PROT_NONE, MAP_SHARED | MAP_FIXED, v->fd, (off_t)off) == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    r->maps[p] = size;
    return CUDA_SUCCESS;
}

static CUresult cu_unmap(CUdeviceptr p, size_t size)
{
    LOCK;
    vmm_range *r = range_of(p, size);
    if (!r) return CUDA_ERROR_INVALID_VALUE;
    auto it = r->maps.find(p);
    if (it == r->maps.end() || it->second != size) return CUDA_ERROR_INVALID_VALUE;
    drain_all(); /* the driver waits for work using the pages */
    mmap((void *)p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    r->maps.erase(it);
    return CUDA_SUCCESS;
}

static CUresult cu_access(CUdeviceptr p, size_t size, const CUmemAccessDesc *d, size_t count)
{
    LOCK;
    vmm_range *r = range_of(p, size);
    if (!r || count != 1 || !d || d->location.type != CU_MEM_LOCATION_TYPE_DEVICE || d->location.id != 0)
        return CUDA_ERROR_INVALID_VALUE;
    size_t covered = 0; /* every byte of the range must be mapped */
    for (auto &m : r->maps)
        if (m.first >= p && m.first + m.second <= p + size) covered += m.second;
    if (covered != size) return CUDA_ERROR_INVALID_VALUE;
    int prot = d->flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE
               : d->flags == CU_MEM_ACCESS_FLAGS_PROT_READ    ? PROT_READ
                                                              : PROT_NONE;
    return mprotect((void *)p, size, prot) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult cu_error_string(CUresult r, const char **s)
{
    *s = r == CUDA_SUCCESS ? "no error" : r == CUDA_ERROR_OUT_OF_MEMORY ? "out of memory"
         : r == CUDA_ERROR_INVALID_VALUE ? "invalid argument" : "unknown error";
    return CUDA_SUCCESS;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char *sym, void **fn, unsigned version,
                                             unsigned long long flags,
                                             cudaDriverEntryPointQueryResult *q)
{
    (void)flags;
    static const struct {
        const char *name;
        void *fn;
    } tab[] = {
        {"cuDeviceGet", (void *)cu_device_get},
        {"cuDeviceGetAttribute", (void *)cu_device_attr},
        {"cuMemGetAllocationGranularity", (void *)cu_gran},
        {"cuMemAddressReserve", (void *)cu_reserve},
        {"cuMemAddressFree", (void *)cu_addr_free},
        {"cuMemCreate", (void *)cu_create},
        {"cuMemRelease", (void *)cu_release},
        {"cuMemMap", (void *)cu_map},
        {"cuMemUnmap", (void *)cu_unmap},
        {"cuMemSetAccess", (void *)cu_access},
        {"cuGetErrorString", (void *)cu_error_string},
    };
    *fn = NULL;
    if (q) *q = cudaDriverEntryPointSymbolNotFound;
    if (version < 10020) {
        if (q) *q = cudaDriverEntryPointVersionNotSufficent;
        return cudaSuccess;
    }
    for (const auto &t : tab)
        if (!strcmp(t.name, sym)) {
            *fn = t.fn;
            if (q) *q = cudaDriverEntryPointSuccess;
        }
    return cudaSuccess;
}

/* ---- cuBLAS ------------------------------------------------------------- */

struct emu_blas {
    cudaStream_t st = NULL;
    void *ws = NULL;
    size_t ws_size = 0;
};

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new emu_blas();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->st = st;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
    LOCK;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && (!is_dev(ws, bytes) || (uintptr_t)ws % 256)) return CUBLAS_STATUS_INVALID_VALUE;
    h->ws = ws;
    h->ws_size = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}

static size_t dt_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

/* n elements of type t from p + off, as floats */
static void to_f32(float *out, const void *p, cudaDataType t, size_t off, size_t n, size_t stride)
{
    static float *lut; /* f16 -> f32, built once (under the lock) */
    if (t == CUDA_R_32F) {
        for (size_t i = 0; i < n; i++) out[i] = ((const float *)p)[off + i * stride];
        return;
    }
    const unsigned short *h = (const unsigned short *)p + off;
    if (t == CUDA_R_16BF) {
        for (size_t i = 0; i < n; i++) out[i] = bf16_to_f32(h[i * stride]);
        return;
    }
    if (!lut) {
        lut = (float *)malloc(65536 * sizeof(float));
        if (!lut) emu_fault("out of memory");
        for (unsigned v = 0; v < 65536; v++) lut[v] = f16_to_f32((uint16_t)v);
    }
    for (size_t i = 0; i < n; i++) out[i] = lut[h[i * stride]];
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo)
{
    LOCK;
    (void)algo;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) || lda < (ta == CUBLAS_OP_N ? m : k) || lda < 1 ||
        ldb < (tb == CUBLAS_OP_N ? k : n) || ldb < 1 || ldc < m || ldc < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (at != bt || ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    /* operands must be device memory */
    size_t a_el = (size_t)(ta == CUBLAS_OP_N ? k - 1 : m - 1) * lda + (ta == CUBLAS_OP_N ? m : k);
    size_t b_el = (size_t)(tb == CUBLAS_OP_N ? n - 1 : k - 1) * ldb + (tb == CUBLAS_OP_N ? k : n);
    size_t c_el = (size_t)(n - 1) * ldc + m;
    if ((k && (!is_dev(A, a_el * dt_size(at)) || !is_dev(B, b_el * dt_size(bt)))) ||
        !is_dev(C, c_el * sizeof(float))) {
        fprintf(stderr, "cuda-emu: cublasGemmEx operand outside device memory (m %d n %d k %d)\n", m, n, k);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    float al = *(const float *)alpha, be = *(const float *)beta; /* host pointer mode: read now */
    enqueue(S(h->st), [=]() {
        /* op(B) column j and op(A) row i as f32, a dot product in f32 (4 partial sums) */
        std::vector<float> bt_((size_t)n * k), arow((size_t)k);
        for (int j = 0; j < n; j++)
            if (tb == CUBLAS_OP_N) to_f32(&bt_[(size_t)j * k], B, bt, (size_t)j * ldb, (size_t)k, 1);
            else to_f32(&bt_[(size_t)j * k], B, bt, (size_t)j, (size_t)k, (size_t)ldb);
        float *c = (float *)C;
        for (int i = 0; i < m; i++) {
            if (ta == CUBLAS_OP_T) to_f32(arow.data(), A, at, (size_t)i * lda, (size_t)k, 1);
            else to_f32(arow.data(), A, at, (size_t)i, (size_t)k, (size_t)lda);
            for (int j = 0; j < n; j++) {
                const float *b = &bt_[(size_t)j * k];
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                int p = 0;
                for (; p + 4 <= k; p += 4) {
                    s0 += arow[p] * b[p];
                    s1 += arow[p + 1] * b[p + 1];
                    s2 += arow[p + 2] * b[p + 2];
                    s3 += arow[p + 3] * b[p + 3];
                }
                for (; p < k; p++) s0 += arow[p] * b[p];
                float s = (s0 + s1) + (s2 + s3);
                float *cc = c + (size_t)j * ldc + i;
                *cc = be == 0.0f ? al * s : al * s + be * *cc; /* beta 0: C is not read */
            }
        }
    });
    return CUBLAS_STATUS_SUCCESS;
}
