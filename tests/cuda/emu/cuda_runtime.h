/* cuda_runtime.h (test shim) — just enough of the CUDA runtime, and of the device side, to compile
 * the CUDA backend's own sources (src/cuda/kernels_*.cu, backend_cuda.cu, forward.cu) with the host
 * C++ compiler and run them on the CPU, for tests/cuda/test_cuda_emu.cpp: no GPU and no CUDA
 * toolkit needed.
 *
 * Device memory is host memory (cudaMalloc fills it with 0xFF bytes: an unwritten float reads
 * as NaN), its blocks registered as the device's (emu_rt::is_device; cudaMallocHost's are not),
 * which the cuBLASLt stand-in (cublasLt.h) checks its pointers against. A kernel launch runs every block in turn; a block's threads are fibers (ucontext)
 * switched only at __syncthreads() and the shuffles (__shfl_xor_sync, __shfl_up_sync), so a
 * thread runs alone between two barriers, in alternating order from one barrier to the next: a missing barrier shows as a
 * wrong result. Shuffles check that the whole warp takes part; a launch whose configuration a GPU
 * refuses (no blocks, more than 1024 threads, grid.y or grid.z over 65535) records
 * cudaErrorInvalidConfiguration like CUDA does. Stream capture records the launches, copies and
 * sets as closures with their arguments frozen, and a graph launch replays them, as CUDA graphs
 * do; a synchronous call while capturing invalidates the capture. Everything runs on the calling
 * thread, in order: one stream. A launch allowed to overlap the kernel before it (cudaLaunchKernelEx
 * with programmatic stream serialization) runs in order all the same, but each of its threads
 * must call emu_pdl_ready() (kernels_common.cuh's pdl_ready, griddepcontrol.wait on a GPU) before it
 * ends: one that does not is a device-side error. */
#ifndef LFM2C_EMU_CUDA_RUNTIME_H
#define LFM2C_EMU_CUDA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <functional>
#include <tuple>
#include <vector>

/* ---- types ------------------------------------------------------------------------------------ */

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
struct float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct uint4 {
    unsigned x, y, z, w;
};
struct uint2 {
    unsigned x, y;
};

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureUnsupported = 900,
};
typedef enum cudaError cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal,
    cudaStreamCaptureModeThreadLocal,
    cudaStreamCaptureModeRelaxed
};
struct emu_stream_s {
    int dummy;
};
typedef emu_stream_s *cudaStream_t;
struct emu_graph_s {
    std::vector<std::function<void()>> ops;
};
typedef emu_graph_s *cudaGraph_t;
typedef emu_graph_s *cudaGraphExec_t;

/* ---- the emulator's state ------------------------------------------------------------------------ */

/* The fibers' context switch: x86-64 saves the callee-saved registers on the fiber's own stack
 * and swaps stack pointers (no system call); elsewhere ucontext. */
#if defined(__x86_64__) && !defined(EMU_NO_FAST_SWITCH)
#define EMU_FAST_SWITCH 1
extern "C" void emu_ctx_switch(void **save_sp, void *to_sp);
__asm__(".text\n"
        ".globl emu_ctx_switch\n"
        ".type emu_ctx_switch,@function\n"
        "emu_ctx_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_ctx_switch,.-emu_ctx_switch\n");
#else
#define EMU_FAST_SWITCH 0
#endif

namespace emu_rt {

enum { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
enum { STACK = 256 * 1024, MAX_THREADS = 1024 };

struct fiber {
    ucontext_t ctx; /* without EMU_FAST_SWITCH */
    void *sp;       /* with it: the saved stack pointer */
    int state, shfl_gen;
    bool pdl_ready; /* called emu_pdl_ready() */
};

struct state {
    cudaError_t last = cudaSuccess; /* cudaGetLastError */
    bool capturing = false, capture_bad = false;
    std::vector<std::function<void()>> captured;
    /* the block being run */
    dim3 grid, block, bid;
    int nthreads = 0, cur = -1;
    bool pdl = false; /* the kernel being run may overlap the one before it */
    fiber f[MAX_THREADS];
    char *stacks = nullptr;
    int n_stacks = 0;
    ucontext_t sched;
    void *sched_sp;
    const std::function<void()> *body = nullptr;
    float shfl[2][MAX_THREADS];
    int shfl_i[2][MAX_THREADS];                /* the int shuffles' values */
    float mma_vals[2][MAX_THREADS][8 + 4 * 8]; /* each lane's A and B halves of an mma (mma.h) */
    long launches = 0, pdl_launches = 0, errors = 0;
    char first_error[256] = "";
    std::vector<std::pair<uintptr_t, size_t>> allocs;                 /* cudaMalloc's blocks: device memory */
    size_t mem_free = (size_t)64 << 30, mem_total = (size_t)80 << 30; /* what cudaMemGetInfo says */
};
static inline state &S() {
    static state s;
    return s;
}

/* a device-side error (a shuffle with part of the warp gone, a deadlock): counted, the first kept */
static inline void device_error(const char *what) {
    state &s = S();
    if (!s.errors++)
        snprintf(s.first_error, sizeof s.first_error, "%s (block %u,%u, thread %d of %d)", what, s.bid.x, s.bid.y,
                 s.cur, s.nthreads);
}

static inline void trampoline() {
    state &s = S();
    (*s.body)();
    if (s.pdl && !s.f[s.cur].pdl_ready)
        device_error("a thread of a kernel launched to overlap the one before it ended without pdl_ready()");
    s.f[s.cur].state = DONE;
#if EMU_FAST_SWITCH
    emu_ctx_switch(&s.f[s.cur].sp, s.sched_sp);
    abort(); /* a finished fiber is never resumed */
#endif
} /* (ucontext: returns to s.sched, its uc_link) */

static inline void yield(int st) {
    state &s = S();
    s.f[s.cur].state = st;
#if EMU_FAST_SWITCH
    emu_ctx_switch(&s.f[s.cur].sp, s.sched_sp);
#else
    swapcontext(&s.f[s.cur].ctx, &s.sched);
#endif
}

/* a fiber about to run trampoline() on stack [lo, lo + STACK) */
static inline void fiber_init(fiber &f, char *lo) {
#if EMU_FAST_SWITCH
    uintptr_t top = ((uintptr_t)lo + STACK) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;                             /* trampoline's return address: it never returns */
    *--sp = (void *)&trampoline;                 /* where emu_ctx_switch's ret goes */
    for (int i = 0; i < 6; i++) *--sp = nullptr; /* rbp rbx r12 r13 r14 r15 */
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = lo;
    f.ctx.uc_stack.ss_size = STACK;
    f.ctx.uc_link = &S().sched;
    makecontext(&f.ctx, trampoline, 0);
#endif
}

static inline void resume(fiber &f) {
#if EMU_FAST_SWITCH
    emu_ctx_switch(&S().sched_sp, f.sp);
#else
    swapcontext(&S().sched, &f.ctx);
#endif
}

/* Runs one block: passes over the threads (alternating direction), each thread running up to
 * its next barrier; then the barriers every waiting thread of are complete are released. */
static inline void run_block(const std::function<void()> &body) {
    state &s = S();
    const int n = s.nthreads;
    if (s.n_stacks < n) {
        free(s.stacks);
        s.stacks = (char *)malloc((size_t)STACK * n);
        if (!s.stacks) abort();
        s.n_stacks = n;
    }
    s.body = &body;
    for (int i = 0; i < n; i++) {
        fiber &f = s.f[i];
        fiber_init(f, s.stacks + (size_t)STACK * i);
        f.state = RUN;
        f.shfl_gen = 0;
        f.pdl_ready = false;
    }
    for (int pass = 0;; pass++) {
        for (int k = 0; k < n; k++) {
            int i = pass % 2 ? n - 1 - k : k;
            if (s.f[i].state != RUN) continue;
            s.cur = i;
            resume(s.f[i]);
        }
        /* every thread now waits at a barrier or is done */
        int done = 0, at_block = 0;
        for (int i = 0; i < n; i++) done += s.f[i].state == DONE, at_block += s.f[i].state == WAIT_BLOCK;
        if (done == n) break;
        bool released = false;
        for (int w = 0; w * 32 < n; w++) { /* warps whose every lane waits at a shuffle */
            int lanes = n - 32 * w < 32 ? n - 32 * w : 32, waiting = 0, gone = 0;
            for (int l = 0; l < lanes; l++) {
                waiting += s.f[32 * w + l].state == WAIT_WARP;
                gone += s.f[32 * w + l].state == DONE;
            }
            if (!waiting) continue;
            if (waiting + gone == lanes) {
                if (gone || lanes < 32) {
                    s.cur = 32 * w;
                    device_error("__shfl_xor_sync with lanes of the warp gone or missing");
                }
                for (int l = 0; l < lanes; l++)
                    if (s.f[32 * w + l].state == WAIT_WARP) s.f[32 * w + l].state = RUN;
                released = true;
            }
        }
        if (!released && at_block && at_block + done == n) { /* __syncthreads: the block (exited threads aside) */
            for (int i = 0; i < n; i++)
                if (s.f[i].state == WAIT_BLOCK) s.f[i].state = RUN;
            released = true;
        }
        if (!released) {
            s.cur = -1;
            device_error("deadlock: threads wait at different barriers");
            break; /* the fibers are abandoned (their stacks are reused) */
        }
    }
    s.cur = -1;
}

static inline void run_kernel(dim3 grid, dim3 block, const std::function<void()> &body, bool pdl = false) {
    state &s = S();
    s.launches++;
    s.pdl_launches += pdl;
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !threads || threads > MAX_THREADS || grid.y > 65535 || grid.z > 65535 ||
        block.y != 1 || block.z != 1) {
        if (block.y != 1 || block.z != 1) fprintf(stderr, "emu: only 1-D blocks are emulated\n");
        s.last = cudaErrorInvalidConfiguration;
        return;
    }
    s.grid = grid;
    s.block = block;
    s.pdl = pdl;
    s.nthreads = (int)threads;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                s.bid = dim3(x, y, z);
                run_block(body);
            }
}

/* work on the stream: now, or recorded while capturing */
static inline void enqueue(std::function<void()> op) {
    state &s = S();
    if (s.capturing) s.captured.push_back(std::move(op));
    else op();
}

/* whether [p, p + n) lies inside one block cudaMalloc gave (pinned host memory does not) */
static inline bool is_device(const void *p, size_t n) {
    const uintptr_t a = (uintptr_t)p;
    for (const auto &b : S().allocs)
        if (a >= b.first && a - b.first <= b.second && n <= b.second - (a - b.first)) return true;
    return false;
}

/* a call that would synchronize: invalid while capturing (the capture is then invalidated) */
static inline cudaError_t sync_call() {
    state &s = S();
    if (s.capturing) {
        s.capture_bad = true;
        return cudaErrorStreamCaptureUnsupported;
    }
    return cudaSuccess;
}

template <class... P> struct launcher {
    void (*f)(P...);
    dim3 grid, block;
    template <class... A> void operator()(A &&...a) const {
        /* the arguments as the kernel's parameters, copied now (as a launch or a capture does) */
        std::tuple<typename std::decay<P>::type...> args(static_cast<P>(a)...);
        auto fn = f;
        dim3 g = grid, b = block;
        enqueue([fn, args, g, b] { run_kernel(g, b, [&] { std::apply(fn, args); }); });
    }
};

} // namespace emu_rt

/* cudaLaunchKernelEx with its configuration: the one attribute emulated is programmatic stream
 * serialization (the kernel may overlap the one before it) */
enum cudaLaunchAttributeID { cudaLaunchAttributeProgrammaticStreamSerialization = 6 };
struct cudaLaunchAttribute {
    cudaLaunchAttributeID id;
    struct {
        int programmaticStreamSerializationAllowed;
    } val;
};
struct cudaLaunchConfig_t { /* CUDA's members in CUDA's order (gridDim and blockDim renamed: macros here) */
    dim3 grid_dim, block_dim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    cudaLaunchAttribute *attrs;
    unsigned numAttrs;
};
template <class... P, class... A>
static inline cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *cfg, void (*f)(P...), A &&...a) {
    bool pdl = false;
    for (unsigned i = 0; i < cfg->numAttrs; i++)
        pdl |= cfg->attrs[i].id == cudaLaunchAttributeProgrammaticStreamSerialization &&
               cfg->attrs[i].val.programmaticStreamSerializationAllowed;
    std::tuple<typename std::decay<P>::type...> args(static_cast<P>(a)...);
    dim3 g = cfg->grid_dim, b = cfg->block_dim;
    emu_rt::enqueue([f, args, g, b, pdl] {
        emu_rt::run_kernel(
            g, b, [&] { std::apply(f, args); }, pdl);
    });
    return cudaSuccess; /* a configuration the GPU refuses: cudaGetLastError, after the run */
}

/* kernel<<<grid, block, smem, stream>>>(args) as emu_launch(&kernel, grid, block, smem, stream)(args),
 * for the tests' own launches (the kernels' files launch with cudaLaunchKernelEx) */
template <class... P>
static inline emu_rt::launcher<P...> emu_launch(void (*f)(P...), dim3 grid, dim3 block, size_t smem = 0,
                                                cudaStream_t st = nullptr) {
    (void)smem, (void)st;
    return emu_rt::launcher<P...>{f, grid, block};
}

/* ---- the device side -------------------------------------------------------------------------- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define threadIdx (uint3{(unsigned)emu_rt::S().cur, 0u, 0u})
#define blockIdx (emu_rt::S().bid)
#define blockDim (emu_rt::S().block)
#define gridDim (emu_rt::S().grid)

static inline void __syncthreads() { emu_rt::yield(emu_rt::WAIT_BLOCK); }
static inline void emu_pdl_ready() { emu_rt::S().f[emu_rt::S().cur].pdl_ready = true; }

static inline float __shfl_xor_sync(unsigned mask, float v, int o) {
    emu_rt::state &s = emu_rt::S();
    if (mask != 0xffffffffu) emu_rt::device_error("__shfl_xor_sync with a partial mask");
    const int t = s.cur, g = s.f[t].shfl_gen++ & 1, partner = (t & ~31) | ((t & 31) ^ (o & 31));
    s.shfl[g][t] = v;
    emu_rt::yield(emu_rt::WAIT_WARP);
    return partner < s.nthreads ? s.shfl[g][partner] : v;
}

/* lane `src` of the same warp, or the caller's own value where src is off the warp */
static inline int emu_shfl_int(unsigned mask, int v, int lane_src, const char *what) {
    emu_rt::state &s = emu_rt::S();
    if (mask != 0xffffffffu) emu_rt::device_error(what);
    const int t = s.cur, g = s.f[t].shfl_gen++ & 1, partner = (t & ~31) | (lane_src & 31);
    s.shfl_i[g][t] = v;
    emu_rt::yield(emu_rt::WAIT_WARP);
    return lane_src >= 0 && lane_src < 32 && partner < s.nthreads ? s.shfl_i[g][partner] : v;
}
static inline int __shfl_xor_sync(unsigned mask, int v, int o) {
    return emu_shfl_int(mask, v, (emu_rt::S().cur & 31) ^ (o & 31), "__shfl_xor_sync with a partial mask");
}
static inline int __shfl_up_sync(unsigned mask, int v, unsigned d) {
    return emu_shfl_int(mask, v, (emu_rt::S().cur & 31) - (int)d, "__shfl_up_sync with a partial mask");
}

/* one thread runs at a time, in order: memory is always coherent */
static inline void __threadfence() {}
template <class T> static inline T __ldcg(const T *p) { return *p; }
/* byte i of the result: byte (s >> 4 i) & 7 of y:x (x bytes 0..3, y bytes 4..7) */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = (uint64_t)y << 32 | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)(v >> 8 * ((s >> 4 * i) & 7) & 0xFF) << 8 * i;
    return r;
}

static inline int atomicAdd(int *p, int v) {
    int old = *p;
    *p = old + v;
    return old;
}

/* ---- the runtime API ---------------------------------------------------------------------------- */

static inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    default: return "invalid argument";
    }
}
static inline cudaError_t cudaGetLastError() {
    cudaError_t e = emu_rt::S().last;
    emu_rt::S().last = cudaSuccess;
    return e;
}
static inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
/* the device: compute capability 9.0 (the kernels' Hopper paths) */
struct cudaDeviceProp {
    char name[256];
};
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return cudaErrorInvalidValue;
    snprintf(p->name, sizeof p->name, "%s", "emulated CUDA device");
    return cudaSuccess;
}
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76 };
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    if (d != 0) return cudaErrorInvalidValue;
    *v = a == cudaDevAttrComputeCapabilityMajor ? 9 : 0;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamCreate(cudaStream_t *st) {
    *st = new emu_stream_s();
    return cudaSuccess;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t st) {
    delete st;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu_rt::sync_call(); }
static inline cudaError_t emu_malloc(void **p, size_t n) {
    if (emu_rt::sync_call()) return cudaErrorStreamCaptureUnsupported;
    *p = malloc(n ? n : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xFF, n); /* unwritten floats read as NaN */
    return cudaSuccess;
}
/* device memory is registered (emu_rt::is_device: cuBLASLt's stand-in refuses other pointers) */
static inline cudaError_t cudaMalloc(void **p, size_t n) {
    const cudaError_t e = emu_malloc(p, n);
    if (e == cudaSuccess) emu_rt::S().allocs.push_back({(uintptr_t)*p, n});
    return e;
}
static inline cudaError_t cudaMallocHost(void **p, size_t n) { return emu_malloc(p, n); }
static inline cudaError_t cudaFree(void *p) {
    auto &v = emu_rt::S().allocs;
    for (size_t i = 0; i < v.size(); i++)
        if (v[i].first == (uintptr_t)p) {
            v[i] = v.back();
            v.pop_back();
            break;
        }
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}
/* the card's memory as the tests set it (emu_rt::state's mem_free, mem_total) */
static inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
    *f = emu_rt::S().mem_free;
    *t = emu_rt::S().mem_total;
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    if (emu_rt::sync_call()) return cudaErrorStreamCaptureUnsupported;
    memcpy(d, s, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemset(void *d, int v, size_t n) {
    if (emu_rt::sync_call()) return cudaErrorStreamCaptureUnsupported;
    memset(d, v, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
    emu_rt::enqueue([d, s, n] { memcpy(d, s, n); });
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t = nullptr) {
    emu_rt::enqueue([d, v, n] { memset(d, v, n); });
    return cudaSuccess;
}
static inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    emu_rt::state &s = emu_rt::S();
    if (s.capturing) return cudaErrorInvalidValue;
    s.capturing = true;
    s.capture_bad = false;
    s.captured.clear();
    return cudaSuccess;
}
static inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    emu_rt::state &s = emu_rt::S();
    if (!s.capturing) return cudaErrorInvalidValue;
    s.capturing = false;
    if (s.capture_bad || s.last != cudaSuccess) {
        s.captured.clear();
        return cudaErrorStreamCaptureInvalidated;
    }
    *g = new emu_graph_s{std::move(s.captured)};
    s.captured.clear();
    return cudaSuccess;
}
static inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long = 0) {
    *e = new emu_graph_s{g->ops};
    return cudaSuccess;
}
static inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
static inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}
static inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    if (emu_rt::S().capturing) return cudaErrorStreamCaptureUnsupported;
    for (auto &op : e->ops) op();
    return cudaSuccess;
}

/* events: the host clock when the work before them has run (everything runs in order, at once) */
struct emu_event_s {
    double ms;
};
typedef emu_event_s *cudaEvent_t;
static inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new emu_event_s{0};
    return cudaSuccess;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
    emu_rt::enqueue([e] {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        e->ms = 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
    });
    return cudaSuccess;
}
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(b->ms - a->ms);
    return cudaSuccess;
}

#endif
