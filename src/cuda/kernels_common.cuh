/* kernels_common.cuh — what the CUDA kernels' files share (kernels_mm.cu, kernels_attn.cu,
 * kernels_moe.cu, kernels_ops.cu): the warp and block reductions, the launch with programmatic
 * dependent launch (cu_launch, pdl_ready), the rows of the residual add and RMSNorm (the norm
 * kernels' and the decode GEMVs' last block's), and one token's routing by one warp (the router's
 * kernels' and the fused decode GEMV's). Device code in a header: each file gets its own copy. */
#ifndef LFM2C_CUDA_KERNELS_COMMON_CUH
#define LFM2C_CUDA_KERNELS_COMMON_CUH
#include "cuda_kernels.h"
#include "cuda_math.cuh"

#include <cuda_fp16.h>
#include <mma.h>
#include <string.h>
#include <type_traits>

/* ---- reductions ----------------------------------------------------------------------------- */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* block-wide sum (blockDim.x a multiple of 32, at most 1024); every thread gets the result */
__device__ inline float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    v = warp_sum(v);
    int w = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        float s = lane < nw ? part[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    float r = total;
    __syncthreads();   /* part / total may be reused by the next call */
    return r;
}

/* ---- launches ----------------------------------------------------------------------------- */

/* Every kernel starts with pdl_ready(): where it was launched to overlap the kernel before it
 * (cu_q.pdl), it waits there until that kernel has finished and its writes are visible, then lets
 * the next kernel's blocks be scheduled. Nothing an earlier kernel writes may be read, and nothing
 * written, before it; the weights may be (gemv_prefetch). Every thread calls it, even one that
 * has nothing to do: a kernel that ends without waiting would let the next one run ahead of the
 * kernel before it. Elsewhere it does nothing. */
__device__ __forceinline__ void pdl_ready() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#elif defined(LFM2C_EMU_CUDA_RUNTIME_H)
    emu_pdl_ready();
#endif
}

/* kernel<<<grid, block, 0, stream>>>(args), on cq's stream (the default one for NULL), allowed to
 * overlap the kernel queued just before it where cq says so */
template <class... P, class... A>
static void cu_launch(cu_q *cq, void (*kernel)(P...), dim3 grid, dim3 block, A... args) {
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    /* grid, block, shared memory bytes, stream, attributes (CUDA's member order) */
    const cudaLaunchConfig_t cfg = {grid, block, 0, cq ? cq->st : nullptr, at, cq && cq->pdl && cq->chained ? 1u : 0u};
    cudaLaunchKernelEx(&cfg, kernel, (P)args...);
    if (cq) cq->chained = true;
}

/* ---- the residual add and RMSNorm of one row, by one block ----------------------------------- */

/* The add + norm kernels' block size: that of the decode GEMVs (GEMV_WARPS), whose last block does
 * the same sums in the same order (gemv_finish) */
enum { NORM_THREADS = 128 };

/* Each thread's elements of a row are i = threadIdx.x + j * blockDim.x. A thread takes S of them
 * at a time (the template argument), issuing every load of the group before any arithmetic: one
 * memory latency a group instead of one an element (stores to the row would otherwise keep the
 * next element's loads from starting). The sums run over each thread's elements in order, for
 * any S: the same bits. The add + norm kernels take NORM_STAGE (a 2048-wide row in one group at
 * 128 threads: two memory latencies a row); the last block of a decode GEMV (gemv_finish) takes
 * FIN_STAGE, as many as fit the GEMV's own registers (more would cost it occupancy). */
enum { NORM_STAGE = 16, FIN_STAGE = 8, FIN_CONV_STAGE = 4 };

/* v[j] = p[i0 + j step] for j < S, 0 past H or where p is NULL; CG: read past L1 (__ldcg) */
template <int S, bool CG = false>
__device__ __forceinline__ void stage_load(const float *p, int i0, int step, int H, float *v) {
#pragma unroll
    for (int j = 0; j < S; j++) {
        const int i = i0 + j * step;
        v[j] = p && i < H ? (CG ? __ldcg(p + i) : p[i]) : 0.0f;
    }
}

/* The block's row: y = x * rms scale (from the threads' partial sums of squares ss) * w */
template <int S>
__device__ __forceinline__ void rmsnorm_store(const float *xr, float ss, const float *w, float *yr, int H, float eps) {
    const float scale = cm_rms_scale(block_sum(ss), H, eps);
    const int step = blockDim.x;
    for (int i0 = threadIdx.x; i0 < H; i0 += S * step) {
        float xv[S], wv[S];
        stage_load<S>(xr, i0, step, H, xv);
        stage_load<S>(w, i0, step, H, wv);
#pragma unroll
        for (int j = 0; j < S; j++)
            if (i0 + j * step < H) yr[i0 + j * step] = xv[j] * scale * wv[j];
    }
}

/* xr += dr (NULL: nothing), then yr = rmsnorm(xr) * w. dr is read past L1 (__ldcg): in
 * gemv_finish other blocks of the same kernel wrote it. */
template <int S>
__device__ void add_rmsnorm_row(float *xr, const float *dr, const float *w, float *yr, int H, float eps) {
    float ss = 0;
    const int step = blockDim.x;
    for (int i0 = threadIdx.x; i0 < H; i0 += S * step) {
        float v[S], d[S];
        stage_load<S>(xr, i0, step, H, v);
        stage_load<S, true>(dr, i0, step, H, d);
#pragma unroll
        for (int j = 0; j < S; j++) {
            const int i = i0 + j * step;
            if (i >= H) continue;
            if (dr) {
                v[j] += d[j];
                xr[i] = v[j];
            }
            ss += v[j] * v[j];
        }
    }
    rmsnorm_store<S>(xr, ss, w, yr, H, eps);
}

/* add_rmsnorm_row with the layer's output made here: the sum over the token's k slots (in slot
 * order) of ws[j] * D row iv[j] (ws NULL: D's rows carry their weights already, mm_args.y_scale:
 * the same products, made by the down GEMM). Up to COMBINE_MAX_K slots, their weights and rows are
 * read once, into shared memory; more, one element at a time (the same sums). */
enum { COMBINE_MAX_K = 8 };
template <int S>
__device__ void combine_add_rmsnorm_row(float *xr, const float *D, const float *ws, const int *iv, int k,
                                        const float *w, float *yr, int H, float eps) {
    if (k > COMBINE_MAX_K) {
        float ss = 0;
        for (int i = threadIdx.x; i < H; i += blockDim.x) {
            float s = 0;
            for (int j = 0; j < k; j++) s += ws ? ws[j] * __ldcg(D + (size_t)iv[j] * H + i) : __ldcg(D + (size_t)iv[j] * H + i);
            float v = xr[i] + s;
            xr[i] = v;
            ss += v * v;
        }
        rmsnorm_store<S>(xr, ss, w, yr, H, eps);
        return;
    }
    __shared__ float wk[COMBINE_MAX_K];
    __shared__ int rk[COMBINE_MAX_K];
    if (threadIdx.x < k) {
        wk[threadIdx.x] = ws ? ws[threadIdx.x] : 1.0f;
        rk[threadIdx.x] = iv[threadIdx.x];
    }
    __syncthreads();
    float ss = 0;
    const int step = blockDim.x;
    for (int i0 = threadIdx.x; i0 < H; i0 += S * step) {
        float v[S], s[S] = {};
        stage_load<S>(xr, i0, step, H, v);
#pragma unroll
        for (int j = 0; j < COMBINE_MAX_K; j++) {
            if (j >= k) break;
            float dv[S];
            stage_load<S, true>(D + (size_t)rk[j] * H, i0, step, H, dv);
#pragma unroll
            for (int c = 0; c < S; c++) s[c] += ws ? wk[j] * dv[c] : dv[c];
        }
#pragma unroll
        for (int c = 0; c < S; c++) {
            const int i = i0 + c * step;
            if (i >= H) continue;
            v[c] = v[c] + s[c];
            xr[i] = v[c];
            ss += v[c] * v[c];
        }
    }
    rmsnorm_store<S>(xr, ss, w, yr, H, eps);
}

/* ---- one token's routing by one warp ------------------------------------------------------- */

enum { ROUTE_LANE_E = 8, ROUTE_MAX_K = 16 };   /* the warp versions: E <= 32 * 8, k <= 16 */

/* One token's choice by one warp, lane l holding experts l, l + 32, ...: k rounds of a warp-wide
 * argmax. The same choice as cm_route: the highest score, ties to the lower expert id; the same
 * sums. Every lane gets chosen[] and w[]; the return value is the clamped sum of the weights. The
 * logits are read past L1 (in gemv_finish, other blocks of the kernel wrote them). */
__device__ __forceinline__ float route_select(const float *lg, const float *bias, int E, int k, int lane, int *chosen,
                                              float *w) {
    float v[ROUTE_LANE_E], sg[ROUTE_LANE_E], sum = 0;
    unsigned taken = 0;
#pragma unroll
    for (int i = 0; i < ROUTE_LANE_E; i++) {
        int e = lane + 32 * i;
        sg[i] = e < E ? cm_sigmoid(__ldcg(lg + e)) : 0.0f;
        v[i] = e < E ? sg[i] + (bias ? bias[e] : 0.0f) : 0.0f;
    }
    /* each pick's sigmoid travels with it through the reduction (no load after the choice) */
    for (int j = 0; j < k; j++) {
        float bv = 0, bs = 0;
        int be = -1;
#pragma unroll
        for (int i = 0; i < ROUTE_LANE_E; i++) {
            int e = lane + 32 * i;
            if (e < E && !(taken >> i & 1) && (be < 0 || v[i] > bv)) { bv = v[i]; bs = sg[i]; be = e; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o), os = __shfl_xor_sync(0xffffffffu, bs, o);
            int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (oe >= 0 && (be < 0 || ov > bv || (ov == bv && oe < be))) { bv = ov; bs = os; be = oe; }
        }
        if (be % 32 == lane) taken |= 1u << (be / 32);
        chosen[j] = be;
        w[j] = bs;
        sum += w[j];
    }
    return sum < 6.103515625e-5f ? 6.103515625e-5f : sum;
}

/* A single token's whole routing in one warp (the decode step): route_warp_kernel's choice, then
 * the plan of one-column tiles and the scatter directly (pair j's tile is the rank of its expert
 * among the k chosen), as plan_warp_kernel and scatter_kernel make them for one token. */
__device__ inline void route1_warp(const float *lg, const cu_route1 &r) {
    const int lane = threadIdx.x % 32, k = r.k;
    float w[ROUTE_MAX_K];
    int chosen[ROUTE_MAX_K];
    const float sum = route_select(lg, r.bias, r.E, k, lane, chosen, w);
    if (lane) return;
    for (int j = 0; j < k; j++) {
        int rank = 0;
        for (int i = 0; i < k; i++) rank += chosen[i] < chosen[j];
        r.sel[j] = chosen[j];
        r.wsel[j] = w[j] / sum;
        r.tile_e[rank] = chosen[j];
        r.tile_c0[rank] = rank;
        r.tile_n[rank] = 1;
        r.col_src[rank] = 0;
        r.inv[j] = rank;
    }
    *r.n_tiles = k;
}
#endif
