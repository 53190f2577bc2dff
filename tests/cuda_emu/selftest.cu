/*
 * selftest.cu - the CUDA emulator catches what it claims to (emu.h): each
 * case is a small, deliberately wrong program (a missing barrier, a lane
 * outside a shuffle's mask, a diverged warp, a deadlock, too much shared
 * memory, an unordered copy, an illegal call during capture, a misaligned
 * WMMA pointer, a write past an allocation or into unmapped virtual memory)
 * next to its correct twin where that makes sense.  Every case runs in a
 * child process; a fault must end the child with the emulator's message (or
 * SIGSEGV for memory), a wrong result must be observed as wrong.
 *
 * Built by the Makefile through translate.py like cuda.cu (make
 * $(BUILD)/cuda-emu/selftest); tests/cuda_emu.test.sh runs it before
 * test_cuda.  Prints one line per case and "N of N cases as expected".
 */
#include <cuda_runtime.h>
#include <cuda.h>
#include <mma.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x)) {                                                                               \
            fprintf(stderr, "selftest: %s:%d: %s\n", __FILE__, __LINE__, #x);                     \
            exit(3);                                                                              \
        }                                                                                         \
    } while (0)

/* ---- kernels ------------------------------------------------------------ */

/* thread i reads what thread i + 1 wrote: right only with the barrier */
__global__ void k_neighbour(int *out, int barrier)
{
    __shared__ int sh[64];
    int i = threadIdx.x;
    sh[i] = i + 100;
    if (barrier) __syncthreads();
    out[i] = sh[(i + 1) % blockDim.x];
}

__global__ void k_shfl_mask(float *out)
{
    float v = (float)threadIdx.x;
    if (threadIdx.x >= 20) v = __shfl_xor_sync(0x0000ffffu, v, 1); /* lane 20 is not in the mask */
    out[threadIdx.x] = v;
}

__global__ void k_deadlock(float *out)
{
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1); /* lanes 16..31 never come */
    out[threadIdx.x] = v;
}

__global__ void k_diverged(float *out)
{
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) __syncwarp();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

__global__ void k_smem(float *out)
{
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = dyn[(threadIdx.x + 1) % blockDim.x];
}

__global__ void k_read(float *out, const float *in, int n)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = in[i];
}

__global__ void k_write_at(float *p, size_t i) { if (threadIdx.x == 0) p[i] = 1.0f; }

__global__ void k_wmma(float *out, const __half *a)
{
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a + 4, 16); /* 8 bytes past 32-byte alignment */
    (void)out;
}

/* ---- cases -------------------------------------------------------------- */

static int case_barrier(void)
{
    int *d = NULL, h[64];
    CHECK(cudaMalloc((void **)&d, sizeof h) == cudaSuccess);
    k_neighbour<<<1, 64>>>(d, 1);
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int i = 0; i < 64; i++) CHECK(h[i] == (i + 1) % 64 + 100);
    k_neighbour<<<1, 64>>>(d, 0);
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    int stale = 0;
    for (int i = 0; i < 64; i++) stale += h[i] != (i + 1) % 64 + 100;
    printf("  without the barrier %d of 64 threads read a value not yet written\n", stale);
    CHECK(stale > 0);
    return 0;
}

static int launch_one(void (*k)(float *))
{
    float *d = NULL;
    CHECK(cudaMalloc((void **)&d, 32 * sizeof(float)) == cudaSuccess);
    k<<<1, 32>>>(d);
    float h[32];
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost); /* runs the kernel: faults here */
    return 0;
}
static int case_shfl_mask(void) { return launch_one(k_shfl_mask); }
static int case_deadlock(void) { return launch_one(k_deadlock); }
static int case_diverged(void) { return launch_one(k_diverged); }

static int case_smem(void)
{
    float *d = NULL;
    CHECK(cudaMalloc((void **)&d, 256 * sizeof(float)) == cudaSuccess);
    k_smem<<<1, 256, 64 << 10>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue); /* 64 KiB without the opt-in */
    CHECK(cudaFuncSetAttribute(k_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10) == cudaSuccess);
    k_smem<<<1, 256, 64 << 10>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(cudaFuncSetAttribute(k_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 << 10) ==
          cudaErrorInvalidValue); /* past the device's limit */
    cudaGetLastError();
    k_read<<<1, 2048>>>(d, d, 1); /* more than 1024 threads */
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    return 0;
}

/* a copy from pageable memory on the legacy stream is not ordered before a
 * non-blocking stream's kernel; the same copy on that stream is */
static int case_legacy_race(void)
{
    enum { N = 64 };
    cudaStream_t st;
    CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess);
    float *in = NULL, *out = NULL, h[N], r[N];
    CHECK(cudaMalloc((void **)&in, sizeof h) == cudaSuccess && cudaMalloc((void **)&out, sizeof h) == cudaSuccess);
    for (int i = 0; i < N; i++) h[i] = (float)i;
    CHECK(cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice) == cudaSuccess);
    k_read<<<1, 32, 0, st>>>(out, in, N);
    CHECK(cudaMemcpyAsync(r, out, sizeof r, cudaMemcpyDeviceToHost, st) == cudaSuccess);
    CHECK(cudaStreamSynchronize(st) == cudaSuccess);
    int stale = 0;
    for (int i = 0; i < N; i++) stale += r[i] != (float)i;
    printf("  legacy-stream copy: %d of %d values not there yet for the other stream\n", stale, N);
    CHECK(stale == N);
    CHECK(cudaMemcpyAsync(in, h, sizeof h, cudaMemcpyHostToDevice, st) == cudaSuccess);
    k_read<<<1, 32, 0, st>>>(out, in, N);
    CHECK(cudaMemcpyAsync(r, out, sizeof r, cudaMemcpyDeviceToHost, st) == cudaSuccess);
    for (int i = 0; i < N; i++) CHECK(r[i] == (float)i);
    return 0;
}

/* an event waits for the work before it, not after; a pinned buffer is
 * written only when its copy runs */
static int case_event(void)
{
    cudaStream_t st;
    cudaEvent_t ev;
    CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess);
    CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess);
    float *d = NULL, *pin = NULL;
    CHECK(cudaMalloc((void **)&d, 64) == cudaSuccess && cudaMallocHost((void **)&pin, 64) == cudaSuccess);
    memset(pin, 0, 64);
    CHECK(cudaMemsetAsync(d, 0x3f, 64, st) == cudaSuccess);
    CHECK(cudaEventRecord(ev, st) == cudaSuccess);
    CHECK(cudaMemcpyAsync(pin, d, 64, cudaMemcpyDeviceToHost, st) == cudaSuccess);
    CHECK(cudaEventSynchronize(ev) == cudaSuccess);
    CHECK(((unsigned char *)pin)[0] == 0); /* the copy is after the event */
    CHECK(cudaStreamSynchronize(st) == cudaSuccess);
    CHECK(((unsigned char *)pin)[0] == 0x3f);
    return 0;
}

static cudaStream_t g_st;
static void *g_victim;
static cudaError_t g_free_rc;
static void *free_from_other_thread(void *unused)
{
    (void)unused;
    g_free_rc = cudaFree(g_victim);
    return NULL;
}

/* illegal calls during a capture fail it: the capturing thread's cudaMalloc,
 * and another thread's cudaFree (it waits for the whole device) */
static int case_capture(void)
{
    CHECK(cudaStreamCreateWithFlags(&g_st, cudaStreamNonBlocking) == cudaSuccess);
    void *p = NULL;
    cudaGraph_t g = NULL;
    CHECK(cudaStreamBeginCapture(g_st, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    CHECK(cudaMalloc(&p, 256) == cudaErrorStreamCaptureUnsupported);
    CHECK(cudaStreamEndCapture(g_st, &g) == cudaErrorStreamCaptureInvalidated && !g);
    cudaGetLastError();
    void *q = NULL;
    CHECK(cudaMalloc(&q, 256) == cudaSuccess);
    CHECK(cudaStreamBeginCapture(g_st, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    g_victim = q;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_from_other_thread, NULL) == 0);
    pthread_join(t, NULL);
    CHECK(g_free_rc == cudaErrorStreamCaptureUnsupported);
    CHECK(cudaStreamEndCapture(g_st, &g) == cudaErrorStreamCaptureInvalidated);
    cudaGetLastError();
    /* a clean capture replays */
    float *d = NULL, h[32], r[32];
    CHECK(cudaMalloc((void **)&d, sizeof h) == cudaSuccess);
    for (int i = 0; i < 32; i++) h[i] = (float)i;
    CHECK(cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, g_st) == cudaSuccess);
    CHECK(cudaStreamBeginCapture(g_st, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    CHECK(cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, g_st) == cudaErrorStreamCaptureUnsupported);
    CHECK(cudaStreamEndCapture(g_st, &g) == cudaErrorStreamCaptureInvalidated);
    cudaGetLastError();
    CHECK(cudaStreamBeginCapture(g_st, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    k_read<<<1, 32, 0, g_st>>>(d, d, 32);
    CHECK(cudaStreamEndCapture(g_st, &g) == cudaSuccess && g);
    cudaGraphExec_t e = NULL;
    CHECK(cudaGraphInstantiate(&e, g, 0) == cudaSuccess);
    CHECK(cudaGraphLaunch(e, g_st) == cudaSuccess);
    CHECK(cudaMemcpyAsync(r, d, sizeof r, cudaMemcpyDeviceToHost, g_st) == cudaSuccess);
    for (int i = 0; i < 32; i++) CHECK(r[i] == (float)i);
    return 0;
}

static int case_wmma(void)
{
    float *d = NULL;
    __half *a = NULL;
    CHECK(cudaMalloc((void **)&d, 256 * sizeof(float)) == cudaSuccess);
    CHECK(cudaMalloc((void **)&a, 512 * sizeof(__half)) == cudaSuccess);
    k_wmma<<<1, 32>>>(d, a);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    return 0;
}

static int case_guard(void)
{
    float *d = NULL;
    CHECK(cudaMalloc((void **)&d, 256 * sizeof(float)) == cudaSuccess);
    k_write_at<<<1, 32>>>(d, 255); /* the last element: fine */
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    k_write_at<<<1, 32>>>(d, 256); /* one past the end */
    cudaDeviceSynchronize();
    return 0;
}

static int case_vmm(void)
{
    CUresult (*reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
    CUresult (*create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
    CUresult (*map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
    cudaDriverEntryPointQueryResult q;
    CHECK(cudaGetDriverEntryPointByVersion("cuMemAddressReserve", (void **)&reserve, 12000, 0, &q) == cudaSuccess);
    CHECK(cudaGetDriverEntryPointByVersion("cuMemCreate", (void **)&create, 12000, 0, &q) == cudaSuccess);
    CHECK(cudaGetDriverEntryPointByVersion("cuMemMap", (void **)&map, 12000, 0, &q) == cudaSuccess);
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    CUdeviceptr p = 0;
    CUmemGenericAllocationHandle h = 0;
    CHECK(reserve(&p, 4u << 20, 0, 0, 0) == CUDA_SUCCESS);
    CHECK(create(&h, 2u << 20, &prop, 0) == CUDA_SUCCESS);
    CHECK(map(p, 2u << 20, 0, h, 0) == CUDA_SUCCESS);
    k_write_at<<<1, 32>>>((float *)p, 0); /* mapped, but no cuMemSetAccess */
    cudaDeviceSynchronize();
    return 0;
}

/* ---- driver ------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(void);
    int want_sig;          /* the child must die of this signal (0: exit 0) */
    const char *want_text; /* ... and print this */
} cases[] = {
    {"missing __syncthreads reads stale shared memory", case_barrier, 0, NULL},
    {"shuffle from a lane outside its mask", case_shfl_mask, SIGABRT, "leaves out the calling lane"},
    {"half a warp at a shuffle: deadlock", case_deadlock, SIGABRT, "deadlock"},
    {"a warp's lanes at different collectives", case_diverged, SIGABRT, "diverged"},
    {"dynamic shared memory past 48 KiB needs the opt-in", case_smem, 0, NULL},
    {"legacy-stream copy unordered with a non-blocking stream", case_legacy_race, 0, NULL},
    {"an event waits for exactly the work before it", case_event, 0, NULL},
    {"illegal calls during capture invalidate it", case_capture, 0, NULL},
    {"misaligned WMMA load", case_wmma, SIGABRT, "not 256-bit aligned"},
    {"write one past a cudaMalloc block", case_guard, SIGSEGV, NULL},
    {"write to virtual memory mapped without access", case_vmm, SIGSEGV, NULL},
};

int main(int argc, char **argv)
{
    int n = (int)(sizeof cases / sizeof cases[0]), ok = 0;
    if (argc == 2) return cases[atoi(argv[1])].run(); /* a child */
    for (int i = 0; i < n; i++) {
        int fd[2];
        CHECK(pipe(fd) == 0);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(fd[1], 2);
            close(fd[0]);
            char arg[16];
            snprintf(arg, sizeof arg, "%d", i);
            execl("/proc/self/exe", argv[0], arg, (char *)NULL);
            _exit(127);
        }
        close(fd[1]);
        char err[4096];
        size_t got = 0;
        ssize_t r;
        while ((r = read(fd[0], err + got, sizeof err - 1 - got)) > 0) got += (size_t)r;
        err[got] = 0;
        close(fd[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        int good = cases[i].want_sig ? WIFSIGNALED(st) && WTERMSIG(st) == cases[i].want_sig &&
                                           (!cases[i].want_text || strstr(err, cases[i].want_text))
                                     : WIFEXITED(st) && WEXITSTATUS(st) == 0;
        ok += good;
        printf("%s %s\n", good ? "ok  " : "FAIL", cases[i].name);
        if (!good) printf("  exit status %d; stderr: %s\n", st, err);
        else if (cases[i].want_text) printf("  %s", strstr(err, "cuda-emu") ? strstr(err, "cuda-emu") : err);
    }
    printf("%d of %d cases as expected\n", ok, n);
    return ok == n ? 0 : 1;
}
