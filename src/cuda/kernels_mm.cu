/* kernels_mm.cu — the CUDA kernels of the weight products and cu_matmul, which picks one per
 * product (docs/CUDA.md's table): the decode GEMVs (a row a warp, the K-quants' lane loads, gate +
 * up + SwiGLU in one launch, the fused tails of gemv_finish), the GEMMs in float, on wmma, over the
 * K-quants on mma.sync and Q4_K's straight into registers (with LFM2C_CUDA_MOE=grouped's GLU and
 * router-weight epilogues). The per-element math is cuda_math.cuh's (tested on the host); what the
 * kernels' files share is kernels_common.cuh; the launchers are declared in cuda_kernels.h. */
#include "kernels_common.cuh"

/* ---- matrix products ---------------------------------------------------------------------- */

/* The column tile of blockIdx.y: expert e, first column c0, nc columns. False: no such tile. */
__device__ __forceinline__ bool mm_tile(const mm_args &a, int y, int width, int *e, int *c0, int *nc) {
    if (a.tile_e) {
        if (y >= *a.n_tiles) return false;
        *e = a.tile_e[y];
        *c0 = a.tile_c0[y];
        *nc = a.tile_n[y];
        return true;
    }
    *e = 0;
    *c0 = y * width;
    *nc = a.ncols - *c0 < width ? a.ncols - *c0 : width;
    return *nc > 0;
}

__device__ __forceinline__ const float *mm_xrow(const mm_args &a, int col) {
    return a.x + (size_t)(a.col_src ? a.col_src[col] : col) * a.ldx;
}

/* A GEMM's output of column col: the product, times the column's weight where a.y_scale is set
 * (the experts' down products, each pair by its router weight: mm_args.y_scale) */
__device__ __forceinline__ float mm_out(const mm_args &a, int col, float v) { return a.y_scale ? v * a.y_scale[col] : v; }

/* w[0..7] . x[0..7], in the order the scalar truth adds them */
__device__ __forceinline__ float gemv_dot8(const float *w, const float *x) {
    float4 x0 = *(const float4 *)x, x1 = *(const float4 *)(x + 4);
    return w[0] * x0.x + w[1] * x0.y + w[2] * x0.z + w[3] * x0.w + w[4] * x1.x + w[5] * x1.y + w[6] * x1.z +
           w[7] * x1.w;
}

enum { GEMV_WARPS = NORM_THREADS / 32, GEMV_UNROLL = 4 };

__device__ __forceinline__ void prefetch_l2(const void *p) {
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.L2 [%0];" ::"l"(p)); /* generic address */
#else
    (void)p;
#endif
}

/* A dense GEMV's weights do not depend on the kernels before it: before pdl_ready, each warp of
 * the first column tile asks for its row (and the up matrix's) to be brought into L2, so that
 * the fetch overlaps the end of the kernel before. Grouped products learn their expert only from
 * the routing, after pdl_ready. */
__device__ __forceinline__ void gemv_prefetch(const mm_args &a) {
    const int r0 = blockIdx.x * GEMV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (a.tile_e || blockIdx.y || r0 >= a.rows) return;
    const uint8_t *rows[2] = {a.w + (size_t)r0 * a.row_bytes, a.w_up ? a.w_up + (size_t)r0 * a.row_bytes : nullptr};
    for (const uint8_t *row : rows) {
        if (!row) continue;
        const uintptr_t end = (uintptr_t)row + a.row_bytes;
        for (uintptr_t p = ((uintptr_t)row & ~(uintptr_t)127) + 128 * lane; p < end; p += 128 * 32)
            prefetch_l2((const void *)p);
    }
}

/* Decode: one warp per weight row; each lane dequantizes chunks of 8 weights once and uses
 * them for every column of the tile (up to NC tokens / pairs of one expert). GEMV_UNROLL chunks
 * are dequantized before any is used, so each lane keeps that many loads in flight: a row is
 * only a few blocks long, and one chunk at a time leaves the memory system waiting. */
template <uint32_t T, int NC, bool GLU>
__device__ __forceinline__ void gemv_rows(const mm_args &a) {
    int e, c0, nc;
    if (!mm_tile(a, blockIdx.y, NC, &e, &c0, &nc)) return;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int r = blockIdx.x * GEMV_WARPS + warp;
    if (r >= a.rows) return;
    constexpr int R = GLU ? 2 : 1; /* GLU: the gate row, then the up row */
    const size_t at = (size_t)e * a.expert_stride + (size_t)r * a.row_bytes;
    const uint8_t *rows[R];
    rows[0] = a.w + at;
    if (GLU) rows[R - 1] = a.w_up + at;
    const float *xs[NC];
#pragma unroll
    for (int c = 0; c < NC; c++) xs[c] = c < nc ? mm_xrow(a, c0 + c) : a.x;
    float acc[R][NC];
#pragma unroll
    for (int h = 0; h < R; h++)
#pragma unroll
        for (int c = 0; c < NC; c++) acc[h][c] = 0;
    int k0 = 8 * lane;
    for (; k0 + 8 * 32 * (GEMV_UNROLL - 1) < a.n; k0 += 8 * 32 * GEMV_UNROLL) {
        float w[R][GEMV_UNROLL][8];
#pragma unroll
        for (int h = 0; h < R; h++)
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) cm_dequant8(T, rows[h], k0 + 8 * 32 * u, w[h][u]);
#pragma unroll
        for (int h = 0; h < R; h++)
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++)
#pragma unroll
                for (int c = 0; c < NC; c++)
                    if (c < nc) acc[h][c] += gemv_dot8(w[h][u], xs[c] + k0 + 8 * 32 * u);
    }
    for (; k0 < a.n; k0 += 8 * 32) {
#pragma unroll
        for (int h = 0; h < R; h++) {
            float w[8];
            cm_dequant8(T, rows[h], k0, w);
#pragma unroll
            for (int c = 0; c < NC; c++)
                if (c < nc) acc[h][c] += gemv_dot8(w, xs[c] + k0);
        }
    }
#pragma unroll
    for (int c = 0; c < NC; c++) {
        if (c < nc) {
            float s = warp_sum(acc[0][c]), u = GLU ? warp_sum(acc[R - 1][c]) : 0.0f;
            if (lane == 0) a.y[(size_t)(c0 + c) * a.ldy + r] = GLU ? cm_silu(s) * u : s;
        }
    }
}

/* Byte j (0..11) of the packed Q4_K scales held as three words: cm_kq_scale_min's bytes, read
 * from registers (a byte pointer into them would put the words in local memory) */
__device__ __forceinline__ int q4k_byte(uint32_t w0, uint32_t w1, uint32_t w2, int j) {
    const uint32_t w = j < 4 ? w0 : j < 8 ? w1 : w2;
    return (int)(w >> 8 * (j & 3)) & 0xFF;
}

/* cm_kq_scale_min of sub-block j from a K-quant block's first 16 bytes held as words w (d | dmin,
 * then the 12 bytes of scales) */
__device__ __forceinline__ void q4k_scale_min(const uint32_t w[4], int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q4k_byte(w[1], w[2], w[3], j) & 63;
        *mn = q4k_byte(w[1], w[2], w[3], j + 4) & 63;
    } else {
        const int bj4 = q4k_byte(w[1], w[2], w[3], j + 4);
        *sc = (bj4 & 0xF) | (q4k_byte(w[1], w[2], w[3], j - 4) >> 6) << 4;
        *mn = (bj4 >> 4) | (q4k_byte(w[1], w[2], w[3], j) >> 6) << 4;
    }
}

/* Byte k of w less `less` (0 to 255), as a float made from bits: 2^23 + the byte, less 2^23 +
 * `less` (exact). An integer-to-float conversion issues at a fraction of the rate of a byte permute
 * and an add, and a decode GEMV converts every weight. */
__device__ __forceinline__ float byte_float(uint32_t w, int k, int less = 0) {
    const uint32_t u = __byte_perm(w, 0x4B000000u, 0x7650u + (uint32_t)k);
    float f;
    memcpy(&f, &u, sizeof f);
    return f - (8388608.0f + (float)less);
}

/* A Q4_K lane's raw bytes for one superblock, loaded before any is used. Lane s of a superblock's
 * 8 takes the words at byte 4s of the quants' four 32-byte groups k (q: weights 64k + 4s.. in
 * their low nibbles, 64k + 32 + 4s.. in their high), and the block's first 16 bytes (w: d | dmin,
 * then the 12 bytes of scales). The 8 lanes of a superblock thus read x as 128 contiguous bytes
 * a load (one L1 wavefront, where a lane's 16 contiguous quants made them read 4 lines). */
struct q4k_lane {
    static constexpr size_t bytes = sizeof(block_q4_K);
    uint32_t q[4], w[4];
};

__device__ __forceinline__ void kq_lane_load(const uint8_t *b, int s, q4k_lane *r) {
    const uint32_t *qs = (const uint32_t *)(const void *)(b + CM_AT(block_q4_K, qs)) + s;
    const uint4 hd = *(const uint4 *)(const void *)b;
#pragma unroll
    for (int k = 0; k < 4; k++) r->q[k] = qs[8 * k];
    r->w[0] = hd.x, r->w[1] = hd.y, r->w[2] = hd.z, r->w[3] = hd.w;
}

/* The lane's 32 weights dotted with x from the superblock's start, each sub-block's dot scaled
 * once: d sc (q . x) - dmin m sum(x) */
__device__ __forceinline__ float kq_lane_dot(const q4k_lane &r, const float *x, int s) {
    const float d = cm_half(r.w[0] & 0xFFFF), dmin = cm_half(r.w[0] >> 16);
    float acc = 0;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float4 xl = *(const float4 *)(x + 64 * k + 4 * s), xh = *(const float4 *)(x + 64 * k + 32 + 4 * s);
        const uint32_t lo = r.q[k] & 0x0F0F0F0Fu, hi = r.q[k] >> 4 & 0x0F0F0F0Fu;
        const float dl = byte_float(lo, 0) * xl.x + byte_float(lo, 1) * xl.y + byte_float(lo, 2) * xl.z +
                         byte_float(lo, 3) * xl.w;
        const float dh = byte_float(hi, 0) * xh.x + byte_float(hi, 1) * xh.y + byte_float(hi, 2) * xh.z +
                         byte_float(hi, 3) * xh.w;
        const float sl = xl.x + xl.y + xl.z + xl.w, sh = xh.x + xh.y + xh.z + xh.w;
        int sc[2], mn[2];
#pragma unroll
        for (int h = 0; h < 2; h++) q4k_scale_min(r.w, 2 * k + h, &sc[h], &mn[h]);
        acc += d * ((float)sc[0] * dl + (float)sc[1] * dh) - dmin * ((float)mn[0] * sl + (float)mn[1] * sh);
    }
    return acc;
}

/* A Q6_K lane's raw bytes for one superblock (only 2-byte aligned: 210-byte blocks), loaded before
 * any is used. Lane s of a superblock's 8 takes positions l = 4s .. 4s + 3 of both halves n and all
 * four quarters q (weight 128 n + 32 q + l: 32 weights), so the 8 lanes read x as 128 contiguous
 * bytes a load. Per half: the ql word of quarters 0 and 2 (lo), of quarters 1 and 3 (hi), the qh
 * word, and the 8 scale bytes of the half (the lane's are bytes s / 4 + 2q). */
struct q6k_lane {
    static constexpr size_t bytes = sizeof(block_q6_K);
    uint32_t lo[2], hi[2], qh[2], sc[2][2];
    uint16_t d;
};

__device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t *p) {
    const uint16_t *h = (const uint16_t *)(const void *)p;
    return h[0] | (uint32_t)h[1] << 16;
}

__device__ __forceinline__ void kq_lane_load(const uint8_t *b, int s, q6k_lane *r) {
#pragma unroll
    for (int n = 0; n < 2; n++) {
        r->lo[n] = ld_u32_a2(b + CM_AT(block_q6_K, ql) + 64 * n + 4 * s);
        r->hi[n] = ld_u32_a2(b + CM_AT(block_q6_K, ql) + 64 * n + 32 + 4 * s);
        r->qh[n] = ld_u32_a2(b + CM_AT(block_q6_K, qh) + 32 * n + 4 * s);
        r->sc[n][0] = ld_u32_a2(b + CM_AT(block_q6_K, scales) + 8 * n);
        r->sc[n][1] = ld_u32_a2(b + CM_AT(block_q6_K, scales) + 8 * n + 4);
    }
    r->d = *(const uint16_t *)(const void *)(b + CM_AT(block_q6_K, d));
}

/* The lane's 32 weights dotted with x from the superblock's start: per half and quarter,
 * d sc (q . x) with q = the 6-bit quant less 32 (four to a word, made from bits as byte_float does) */
__device__ __forceinline__ float kq_lane_dot(const q6k_lane &r, const float *x, int s) {
    const float d = cm_half(r.d);
    float acc = 0;
#pragma unroll
    for (int n = 0; n < 2; n++)
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const uint32_t src = (q & 1) ? r.hi[n] : r.lo[n];
            const uint32_t v = ((q < 2 ? src : src >> 4) & 0x0F0F0F0Fu) | (r.qh[n] >> 2 * q & 0x03030303u) << 4;
            const float4 xv = *(const float4 *)(x + 128 * n + 32 * q + 4 * s);
            const float dot = byte_float(v, 0, 32) * xv.x + byte_float(v, 1, 32) * xv.y +
                              byte_float(v, 2, 32) * xv.z + byte_float(v, 3, 32) * xv.w;
            const int sc = (int8_t)(r.sc[n][q / 2] >> 8 * (s / 4 + 2 * (q % 2)) & 0xFF);
            acc += d * (float)sc * dot;
        }
    return acc;
}

/* The decode GEMV of K-quant rows for one column (Q4_K: the bulk of a Q4_K_M model's bytes;
 * Q6_K: its output and some down matrices). A superblock is 8 lanes' work, each lane 32 weights
 * (L: q4k_lane or q6k_lane, their kq_lane_load and kq_lane_dot); the warp covers 4 superblocks a
 * step, and a chunk of two steps' loads is issued before either is used. GLU: the warp also takes
 * the same row of the up matrix (a.w_up), its loads beside the gate row's, and writes
 * silu(gate) * up. One row a warp: a chunk's loads, then its sums (two or four rows a warp, the
 * next chunk's loads in flight, measured slower: bench/GPU.md). */
template <class L, bool GLU>
__device__ __forceinline__ void gemv_kq_row1(const mm_args &a) {
    int e, c0, nc;
    if (!mm_tile(a, blockIdx.y, 1, &e, &c0, &nc)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = blockIdx.x * GEMV_WARPS + warp;
    if (r >= a.rows) return;
    constexpr int R = GLU ? 2 : 1; /* GLU: the gate row, then the up row */
    const size_t at = (size_t)e * a.expert_stride + (size_t)r * a.row_bytes;
    const uint8_t *rows[R];
    rows[0] = a.w + at;
    if (GLU) rows[R - 1] = a.w_up + at;
    const float *x = mm_xrow(a, c0);
    const int nb = a.n / QK_K, s = lane % 8;
    float acc[R] = {};
    for (int sb0 = 0; sb0 < nb; sb0 += 8) {
        L raw[R][2];
#pragma unroll
        for (int h = 0; h < R; h++)
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int sb = sb0 + 4 * u + lane / 8;
                if (sb < nb) kq_lane_load(rows[h] + (size_t)sb * L::bytes, s, &raw[h][u]);
            }
#pragma unroll
        for (int h = 0; h < R; h++)
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int sb = sb0 + 4 * u + lane / 8;
                if (sb < nb) acc[h] += kq_lane_dot(raw[h][u], x + (size_t)sb * QK_K, s);
            }
    }
    const float g = warp_sum(acc[0]), up = GLU ? warp_sum(acc[R - 1]) : 0.0f;
    if (lane == 0) a.y[(size_t)c0 * a.ldy + r] = GLU ? cm_silu(g) * up : g;
}

/* The gated short conv of a batch of one token, every channel by the calling block: conv_kernel's
 * output and state update with the token's previous u's both from the state. z is read past L1
 * (other blocks of the kernel wrote it); the same products as cm_conv_elem and cm_conv_state_elem.
 * A thread takes FIN_CONV_STAGE channels at a time, every load of the group issued before any store. */
__device__ void conv1_block(const float *z, const float *w, float *state, float *o, int H) {
    const int step = blockDim.x;
    for (int c0 = threadIdx.x; c0 < H; c0 += FIN_CONV_STAGE * step) { /* a group's loads before its stores */
        float b[FIN_CONV_STAGE], g[FIN_CONV_STAGE], x[FIN_CONV_STAGE], u1[FIN_CONV_STAGE], u2[FIN_CONV_STAGE];
        stage_load<FIN_CONV_STAGE, true>(z, c0, step, H, b);
        stage_load<FIN_CONV_STAGE, true>(z + H, c0, step, H, g);
        stage_load<FIN_CONV_STAGE, true>(z + 2 * H, c0, step, H, x);
        stage_load<FIN_CONV_STAGE>(state + H, c0, step, H, u1);
        stage_load<FIN_CONV_STAGE>(state, c0, step, H, u2);
#pragma unroll
        for (int j = 0; j < FIN_CONV_STAGE; j++) {
            const int c = c0 + j * step;
            if (c >= H) continue;
            const float u0 = b[j] * x[j];
            o[c] = cm_conv_out(w + 3 * c, u2[j], u1[j], u0, g[j]);
            state[c] = u1[j];
            state[H + c] = u0;
        }
    }
}

/* After a one-column product whose a.fin.done is set (a decode step's layer output): the block
 * that finishes last does the residual add and the next norm, or the routing (cu_fin). Every block counts itself
 * once its outputs are written and made visible (__threadfence); the count goes back to 0 for the
 * next launch. Every thread of the block calls it. */
__device__ void gemv_finish(const mm_args &a) {
    const cu_fin &f = a.fin;
    if (!f.done) return;
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(f.done, 1) == (int)(gridDim.x * gridDim.y) - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (f.route.sel) {
        if (threadIdx.x < 32) route1_warp(a.y, f.route);
    } else if (f.conv_o) {
        conv1_block(a.y, f.conv_w, f.toks[0].conv + (size_t)f.conv_index * 2 * f.H, f.conv_o, f.H);
    } else if (f.inv) combine_add_rmsnorm_row<FIN_STAGE>(f.x, a.y, f.wsel, f.inv, f.k, f.w, f.out, f.H, f.eps);
    else add_rmsnorm_row<FIN_STAGE>(f.x, a.y, f.w, f.out, f.H, f.eps);
    if (threadIdx.x == 0) *f.done = 0;
}

/* The decode GEMVs: the rows (a warp each), then the add and norm where a.fin asks for them. */
template <uint32_t T, int NC, bool GLU = false>
__global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kernel(mm_args a) {
    gemv_prefetch(a);
    pdl_ready();
    gemv_rows<T, NC, GLU>(a);
    gemv_finish(a);
}

template <class L, bool GLU>
__global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kq_kernel(mm_args a) {
    gemv_prefetch(a);
    pdl_ready();
    gemv_kq_row1<L, GLU>(a);
    gemv_finish(a);
}

enum { GM_BM = 64, GM_BK = 32, GM_THREADS = 256 };

/* Prefill / big batches: a 64-row x 32-column output tile per block. Each step dequantizes a
 * 64 x 32 weight tile (one chunk of 8 per thread) and a 32 x 32 activation tile into shared
 * memory; each thread then accumulates 4 rows x 2 columns. */
template <uint32_t T>
__global__ void __launch_bounds__(GM_THREADS) gemm_kernel(mm_args a) {
    pdl_ready();
    __shared__ float Ws[GM_BK][GM_BM + 4];
    __shared__ float Xs[GM_BK][CU_GEMM_COLS + 4];
    int e, c0, nc;
    if (!mm_tile(a, blockIdx.y, CU_GEMM_COLS, &e, &c0, &nc)) return;
    const int tid = threadIdx.x, r0 = blockIdx.x * GM_BM;
    const int lr = tid / 4, kc = (tid % 4) * 8;        /* weight chunk this thread loads */
    const int xc = tid / 8, kx = (tid % 8) * 4;        /* activation quad this thread loads */
    const uint8_t *wrow = r0 + lr < a.rows
                              ? a.w + (size_t)e * a.expert_stride + (size_t)(r0 + lr) * a.row_bytes
                              : nullptr;
    const float *xrow = xc < nc ? mm_xrow(a, c0 + xc) : nullptr;
    const int tr = tid % 16, tc = tid / 16;
    float acc[4][2] = {{0}};
    for (int kb = 0; kb < a.n; kb += GM_BK) {
        float w[8];
        if (wrow && kb + kc < a.n) cm_dequant8(T, wrow, kb + kc, w);
        else for (int i = 0; i < 8; i++) w[i] = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) Ws[kc + i][lr] = w[i];
        float4 xv = make_float4(0, 0, 0, 0);
        if (xrow && kb + kx < a.n) xv = *(const float4 *)(xrow + kb + kx);
        Xs[kx + 0][xc] = xv.x;
        Xs[kx + 1][xc] = xv.y;
        Xs[kx + 2][xc] = xv.z;
        Xs[kx + 3][xc] = xv.w;
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < GM_BK; k++) {
            float wr[4], xr[2];
#pragma unroll
            for (int i = 0; i < 4; i++) wr[i] = Ws[k][tr + 16 * i];
#pragma unroll
            for (int j = 0; j < 2; j++) xr[j] = Xs[k][tc + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) acc[i][j] += wr[i] * xr[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        int c = tc + 16 * j;
        if (c >= nc) continue;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = r0 + tr + 16 * i;
            if (r < a.rows) a.y[(size_t)(c0 + c) * a.ldy + r] = mm_out(a, c0 + c, acc[i][j]);
        }
    }
}

enum { TC_BM = 64, TC_BK = 32, TC_LD = TC_BK + 8, TC_THREADS = 128 };

/* x as hi + lo, two halves: hi * w_hi + lo * w_hi + hi * w_lo keeps about float's precision */
__device__ __forceinline__ void tc_split(float x, __half *hi, __half *lo) {
    __half h = __float2half_rn(x);
    *hi = h;
    *lo = __float2half_rn(x - __half2float(h));
}

/* Prefill / big batches on the tensor cores: the same 64-row x 32-column output tile per block
 * as gemm_kernel. Each step dequantizes a 64 x 32 weight tile and loads a 32 x 32 activation
 * tile, both split into high and low halves in shared memory; each of the 4 warps multiplies its
 * 16 rows by the 32 columns with three half products per pair of tiles (the low x low term is
 * below float's rounding), accumulating in float. Values beyond the half range (65504) are not
 * handled: LFM2C_CUDA_TC=0 takes gemm_kernel instead. */
template <uint32_t T>
__global__ void __launch_bounds__(TC_THREADS) gemm_tc_kernel(mm_args a) {
    pdl_ready();
    using namespace nvcuda;
    __shared__ __align__(32) __half Wh[TC_BM][TC_LD], Wl[TC_BM][TC_LD];
    __shared__ __align__(32) __half Xh[CU_GEMM_COLS][TC_LD], Xl[CU_GEMM_COLS][TC_LD];
    __shared__ __align__(32) float Cs[TC_THREADS / 32][16][CU_GEMM_COLS + 4];
    int e, c0, nc;
    if (!mm_tile(a, blockIdx.y, CU_GEMM_COLS, &e, &c0, &nc)) return;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, r0 = blockIdx.x * TC_BM;
    const uint8_t *wbase = a.w + (size_t)e * a.expert_stride;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
    wmma::fill_fragment(acc[0], 0.0f);
    wmma::fill_fragment(acc[1], 0.0f);
    for (int kb = 0; kb < a.n; kb += TC_BK) {
#pragma unroll
        for (int i = 0; i < 2; i++) {   /* 256 chunks of 8 weights: row ch / 4, k (ch % 4) * 8 */
            const int ch = tid + TC_THREADS * i, lr = ch / 4, kc = (ch % 4) * 8;
            float w[8];
            if (r0 + lr < a.rows && kb + kc < a.n) cm_dequant8(T, wbase + (size_t)(r0 + lr) * a.row_bytes, kb + kc, w);
            else for (int j = 0; j < 8; j++) w[j] = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) tc_split(w[j], &Wh[lr][kc + j], &Wl[lr][kc + j]);
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {   /* 256 quads of activations: column ch / 8, k (ch % 8) * 4 */
            const int ch = tid + TC_THREADS * i, col = ch / 8, kq = (ch % 8) * 4;
            float4 xv = make_float4(0, 0, 0, 0);
            if (col < nc && kb + kq < a.n) xv = *(const float4 *)(mm_xrow(a, c0 + col) + kb + kq);
            tc_split(xv.x, &Xh[col][kq + 0], &Xl[col][kq + 0]);
            tc_split(xv.y, &Xh[col][kq + 1], &Xl[col][kq + 1]);
            tc_split(xv.z, &Xh[col][kq + 2], &Xl[col][kq + 2]);
            tc_split(xv.w, &Xh[col][kq + 3], &Xl[col][kq + 3]);
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < TC_BK; ks += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> ah, al;
            wmma::load_matrix_sync(ah, &Wh[16 * warp][ks], TC_LD);
            wmma::load_matrix_sync(al, &Wl[16 * warp][ks], TC_LD);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> bh, bl;
                wmma::load_matrix_sync(bh, &Xh[16 * j][ks], TC_LD);
                wmma::load_matrix_sync(bl, &Xl[16 * j][ks], TC_LD);
                wmma::mma_sync(acc[j], al, bh, acc[j]);
                wmma::mma_sync(acc[j], ah, bl, acc[j]);
                wmma::mma_sync(acc[j], ah, bh, acc[j]);
            }
        }
        __syncthreads();
    }
    wmma::store_matrix_sync(&Cs[warp][0][0], acc[0], CU_GEMM_COLS + 4, wmma::mem_row_major);
    wmma::store_matrix_sync(&Cs[warp][0][16], acc[1], CU_GEMM_COLS + 4, wmma::mem_row_major);
    __syncthreads();
    for (int i = lane; i < 16 * CU_GEMM_COLS; i += 32) {   /* consecutive lanes: consecutive rows */
        const int r = i % 16, c = i / 16, row = r0 + 16 * warp + r;
        if (row < a.rows && c < nc) a.y[(size_t)(c0 + c) * a.ldy + row] = mm_out(a, c0 + c, Cs[warp][r][c]);
    }
}

/* d[j / PER_D] += A B[j] for j < NB, in order, on the tensor cores, for one warp: A 16 x 16 halves
 * (row-major), each B 16 x 8 (column-major), each d 16 x 8 floats, in the registers PTX's
 * mma.sync.m16n8k16 names (lane = 4 g + t): a[0] (row g, k 2t..2t+1), a[1] (row g + 8, same k),
 * a[2] / a[3] (the same rows, k 8 + 2t..); b[0] (k 2t..2t+1, column g), b[1] (k 8 + 2t..); d[0..1]
 * (row g, columns 2t..2t+1), d[2..3] (row g + 8). Two halves a register, the lower index in the
 * low bits. The CPU emulation computes the same sums (tests/cuda/emu/mma.h). */
template <int NB, int PER_D>
__device__ __forceinline__ void mma16816(float (*d)[4], const uint32_t a[4], const uint32_t (*b)[2]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
    for (int j = 0; j < NB; j++)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(d[j / PER_D][0]), "+f"(d[j / PER_D][1]), "+f"(d[j / PER_D][2]), "+f"(d[j / PER_D][3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[j][0]), "r"(b[j][1]));
#elif defined(LFM2C_EMU_MMA_H)
    emu_mma_16816_n(d, a, b, NB, PER_D);
#endif
}

/* two halves as the bits of one register (a in the low half), and two values rounded to them */
__device__ __forceinline__ uint32_t hpack(__half a, __half b) {
    return (uint32_t)__half_as_ushort(a) | (uint32_t)__half_as_ushort(b) << 16;
}
__device__ __forceinline__ uint32_t h2bits(float x0, float x1) {
    return hpack(__float2half_rn(x0), __float2half_rn(x1));
}

/* KQ_LD: a row of words in shared memory, 8 more than a step's 64 so that the 8-byte loads of
 * kq_mma's lanes fall on different banks */
enum { KQ_BM = 64, KQ_BK = 128, KQ_LD = KQ_BK / 2 + 8, KQ_THREADS = 128 };

/* Shared memory keeps each group of 8 words of a row (16 halves along k) as words 0 4 1 5 2 6 3 7,
 * so the two words a lane of mma.sync takes from a row (k 2t.. and 8 + 2t..) lie side by side:
 * one 8-byte load. Where word i goes: */
__device__ __forceinline__ constexpr int kq_slot(int i) { return (i & ~7) | (i & 3) << 1 | (i >> 2 & 1); }

/* the 32 words v (already in kq_slot order) into dst, 16 bytes at a time */
__device__ __forceinline__ void kq_put32(uint32_t *dst, const uint32_t *v) {
#pragma unroll
    for (int i = 0; i < 8; i++) ((uint4 *)dst)[i] = uint4{v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]};
}

/* The shared memory of the GEMMs over the quants: a step's 64 x 128 weights as integer halves (two
 * a word), its 32 x 128 activations as high and low halves, per-row scales, per-column sums. */
struct kq_smem {
    uint32_t w[KQ_BM][KQ_LD], xh[CU_GEMM_COLS][KQ_LD], xl[CU_GEMM_COLS][KQ_LD];
    float wd[KQ_BM], wsc[KQ_BM][8], xs[CU_GEMM_COLS][4];
};

/* 32 values of x (src, NULL: zeros) as the K-quant GEMMs take them: high and low halves, two a
 * word (h[0..15], l[0..15], in kq_slot order), and their sum in the order the sum is kept (*sum) */
__device__ __forceinline__ void kq_split32(const float *src, uint32_t *h, uint32_t *l, float *sum) {
    float s = 0;
#pragma unroll
    for (int i = 0; i < 32; i += 4) {
        const float4 v = src ? *(const float4 *)(src + i) : make_float4(0, 0, 0, 0);
        __half hi[4], lo[4];
        tc_split(v.x, &hi[0], &lo[0]);
        tc_split(v.y, &hi[1], &lo[1]);
        tc_split(v.z, &hi[2], &lo[2]);
        tc_split(v.w, &hi[3], &lo[3]);
        h[kq_slot(i / 2)] = hpack(hi[0], hi[1]);
        h[kq_slot(i / 2 + 1)] = hpack(hi[2], hi[3]);
        l[kq_slot(i / 2)] = hpack(lo[0], lo[1]);
        l[kq_slot(i / 2 + 1)] = hpack(lo[2], lo[3]);
        s += v.x + v.y + v.z + v.w;
    }
    *sum = s;
}

/* x's rows 0..rows-1 (ldx apart) once for every row tile of a K-quant GEMM (mm_args.xh): row r's
 * halves at xh / xl + r n / 2, its sums of 32 at xs + r n / 32. One thread per 32 values. */
__global__ void kq_prep_x_kernel(const float *x, int ldx, int n, int rows, uint32_t *xh, uint32_t *xl, float *xs) {
    pdl_ready();
    const int per = n / 32;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * per) return;
    const size_t r = i / per, s = i % per;
    kq_split32(x + r * ldx + 32 * s, xh + r * (n / 2) + 16 * s, xl + r * (n / 2) + 16 * s, xs + r * per + s);
}

/* Thread tid's share of a step's activations: sub-block tid % 4 (32 values from kb) of column
 * tid / 4 of the tile (src: its x row, -1 past the tile's columns) as high and low halves, and its
 * sum; from kq_prep_x_kernel's rows where a.xh, else split here. */
template <bool LO>
__device__ __forceinline__ void kq_load_x(kq_smem &sm, const mm_args &a, int src, int kb, int tid) {
    const int xc = tid / 4, xq = tid % 4;
    if (!a.xh) {
        kq_split32(src >= 0 ? a.x + (size_t)src * a.ldx + kb + 32 * xq : nullptr, &sm.xh[xc][16 * xq],
                   &sm.xl[xc][16 * xq], &sm.xs[xc][xq]);
        return;
    }
    const size_t at = (size_t)src * (a.n / 2) + kb / 2 + 16 * xq;
    const uint4 *h = (const uint4 *)(a.xh + at), *l = (const uint4 *)(a.xl + at);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint4 z = {0, 0, 0, 0};
        ((uint4 *)&sm.xh[xc][16 * xq])[i] = src >= 0 ? h[i] : z;
        if (LO) ((uint4 *)&sm.xl[xc][16 * xq])[i] = src >= 0 ? l[i] : z;
    }
    sm.xs[xc][xq] = src >= 0 ? a.xs[(size_t)src * (a.n / 32) + kb / 32 + xq] : 0.0f;
}

/* One warp's products of a 16-weight slice (words ks..ks + 7 of the step): its 16 rows (from ra)
 * by the tile's 32 columns into p[4][4] (four 16 x 8 tiles): x's low halves then its high (LO),
 * or its high halves alone (x rounded to half). */
template <bool LO>
__device__ __forceinline__ void kq_mma(const kq_smem &sm, int ra, int ks, int g, int t, float (*p)[4]) {
    const uint2 a0 = *(const uint2 *)&sm.w[ra][ks + 2 * t], a1 = *(const uint2 *)&sm.w[ra + 8][ks + 2 * t];
    const uint32_t A[4] = {a0.x, a1.x, a0.y, a1.y};
    constexpr int PER = LO ? 2 : 1;
    uint32_t B[4 * PER][2]; /* per 8 columns: the low halves (LO), then the high */
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        const int cb = 8 * nt + g;
        if (LO) {
            const uint2 b = *(const uint2 *)&sm.xl[cb][ks + 2 * t];
            B[PER * nt][0] = b.x, B[PER * nt][1] = b.y;
        }
        const uint2 b = *(const uint2 *)&sm.xh[cb][ks + 2 * t];
        B[PER * nt + PER - 1][0] = b.x, B[PER * nt + PER - 1][1] = b.y;
    }
    mma16816<4 * PER, PER>(p, A, B);
}

/* acc (the warp's 16 rows from r0 + 16 warp, the tile's columns) into y */
__device__ __forceinline__ void kq_store(const mm_args &a, float (*acc)[4], int r0, int warp, int g, int t, int c0,
                                         int nc) {
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = r0 + 16 * warp + g + 8 * (i / 2), c = 8 * nt + 2 * t + (i & 1);
            if (r < a.rows && c < nc) a.y[(size_t)(c0 + c) * a.ldy + r] = mm_out(a, c0 + c, acc[nt][i]);
        }
}

/* What a thread reads of a Q4_K / Q5_K step from memory (kq_fetch45), kept in registers until
 * kq_store45 turns it into halves: the quants of its pair of sub-blocks, Q5_K's high bits, and the
 * block's first 16 bytes (d | dmin, the 12 bytes of scales) as words. */
template <uint32_t T> struct kq_raw {
    uint4 q[2], qh[2];
    uint32_t head[4];
};

/* What a thread reads of a Q6_K step (kq_fetch6): the 4-byte words that hold the step's 64 bytes
 * of low bits, 32 of high bits and (thread part 0) 8 scales, from the word below each (a 210-byte
 * block is only 2-byte aligned); shift, how far into its first word each starts (the same for
 * all three); d's bits. */
template <> struct kq_raw<GGML_Q6_K> {
    uint32_t ql[17], qh[9], sc[3];
    uint32_t shift, d;
};

/* Thread part's (0, 1) share of row wrow's Q4_K / Q5_K step from kb: the pair of sub-blocks
 * j = 2 (step half) + part (wrow NULL: none). 16-byte loads: blocks of 144 / 176 bytes keep their
 * quants 16-byte aligned. */
template <uint32_t T>
__device__ __forceinline__ void kq_fetch45(kq_raw<T> &r, const uint8_t *wrow, int kb, int part) {
    if (!wrow) return;
    const int j = 2 * ((kb / KQ_BK) % 2) + part;
    const size_t bsz = T == GGML_Q4_K ? sizeof(block_q4_K) : sizeof(block_q5_K);
    const int qs_at = T == GGML_Q4_K ? CM_AT(block_q4_K, qs) : CM_AT(block_q5_K, qs);
    const uint8_t *b = wrow + (size_t)(kb / QK_K) * bsz;
    r.q[0] = *(const uint4 *)(b + qs_at + 32 * j);
    r.q[1] = *(const uint4 *)(b + qs_at + 32 * j + 16);
    if (T == GGML_Q5_K) {
        r.qh[0] = *(const uint4 *)(b + CM_AT(block_q5_K, qh));
        r.qh[1] = *(const uint4 *)(b + CM_AT(block_q5_K, qh) + 16);
    }
#pragma unroll
    for (int i = 0; i < 4; i++) r.head[i] = *(const uint32_t *)(b + 4 * i);
}

/* the register of two halves, and back */
__device__ __forceinline__ __half2 kq_h2(uint32_t v) {
    return __halves2half2(__ushort_as_half((unsigned short)(v & 0xFFFF)), __ushort_as_half((unsigned short)(v >> 16)));
}
/* sc q0 and sc q1, exact halves, from integers q0 (bits 0..4 of q2) and q1 (bits 16..20) below
 * 32 in one fused operation: 0x6400 | q is the half 1024 + q, and (1024 + q) sc + off with off =
 * -1024 sc is rounded once, to sc q itself (an integer below 2048) */
__device__ __forceinline__ uint32_t kq_scale2(uint32_t q2, __half2 sc, __half2 off) {
    const __half2 r = __hfma2(kq_h2(q2 | 0x64006400u), sc, off);
    return hpack(__low2half(r), __high2half(r));
}

/* Row lr's 64 weights of the step fetched into r by thread part: low nibbles then high, as sc q
 * (with Q5_K's fifth bit); d, and dmin m of the two sub-blocks (present false: zeros). Each word
 * of quants holds weights l..l + 3 of sub-block 2j (low nibbles) and 2j + 1 (high); a byte
 * permute puts two of its bytes in the low bytes of two halves. */
template <uint32_t T>
__device__ __forceinline__ void kq_store45(kq_smem &sm, const kq_raw<T> &r, bool present, int kb, int lr, int part) {
    if (!present) {
        const uint32_t zero[32] = {};
        kq_put32(&sm.w[lr][32 * part], zero);
        if (part == 0) sm.wd[lr] = 0;
        sm.wsc[lr][2 * part] = sm.wsc[lr][2 * part + 1] = 0;
        return;
    }
    const int j = 2 * ((kb / KQ_BK) % 2) + part;
    int sc0, mn0, sc1, mn1;
    q4k_scale_min(r.head, 2 * j, &sc0, &mn0);
    q4k_scale_min(r.head, 2 * j + 1, &sc1, &mn1);
    const __half2 s0 = __half2half2(__float2half_rn((float)sc0)), s1 = __half2half2(__float2half_rn((float)sc1));
    const __half2 o0 = __half2half2(__float2half_rn(-1024.0f * sc0)), o1 = __half2half2(__float2half_rn(-1024.0f * sc1));
    const uint32_t qw[8] = {r.q[0].x, r.q[0].y, r.q[0].z, r.q[0].w, r.q[1].x, r.q[1].y, r.q[1].z, r.q[1].w};
    const uint32_t hw[8] = {r.qh[0].x, r.qh[0].y, r.qh[0].z, r.qh[0].w, r.qh[1].x, r.qh[1].y, r.qh[1].z, r.qh[1].w};
    uint32_t v[32]; /* the part's words: sub-block 2j's 16, then 2j + 1's, in kq_slot order */
#pragma unroll
    for (int m = 0; m < 8; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) { /* weights l = 4m + 2h and l + 1 */
            const unsigned sel = h ? 0x4342u : 0x4140u;
            const uint32_t p = __byte_perm(qw[m], 0, sel);
            uint32_t lo = p & 0x000F000Fu, hi = p >> 4 & 0x000F000Fu;
            if (T == GGML_Q5_K) {
                const uint32_t b = __byte_perm(hw[m], 0, sel);
                lo |= (b >> (2 * j) & 0x00010001u) << 4;
                hi |= (b >> (2 * j + 1) & 0x00010001u) << 4;
            }
            v[kq_slot(2 * m + h)] = kq_scale2(lo, s0, o0);
            v[16 + kq_slot(2 * m + h)] = kq_scale2(hi, s1, o1);
        }
    kq_put32(&sm.w[lr][32 * part], v);
    const float dm = cm_half(r.head[0] >> 16);
    if (part == 0) sm.wd[lr] = cm_half(r.head[0] & 0xFFFF);
    sm.wsc[lr][2 * part] = dm * (float)mn0;
    sm.wsc[lr][2 * part + 1] = dm * (float)mn1;
}

/* Thread part's (0, 1) share of row wrow's Q6_K step from kb (wrow NULL: none): the words over
 * the step's half superblock of low and high bits; part 0 also its eight scales and d. No word
 * reaches past the block's 210 bytes. */
__device__ __forceinline__ void kq_fetch6(kq_raw<GGML_Q6_K> &r, const uint8_t *wrow, int kb, int part) {
    if (!wrow) return;
    const int n = (kb / KQ_BK) % 2;
    const uint8_t *b = wrow + (size_t)(kb / QK_K) * sizeof(block_q6_K);
    const uint8_t *ql = b + CM_AT(block_q6_K, ql) + 64 * n, *qh = b + CM_AT(block_q6_K, qh) + 32 * n;
    r.shift = (uint32_t)((uintptr_t)ql & 3);
    const uint32_t *wl = (const uint32_t *)(ql - r.shift), *wh = (const uint32_t *)(qh - r.shift);
#pragma unroll
    for (int i = 0; i < 17; i++) r.ql[i] = wl[i];
#pragma unroll
    for (int i = 0; i < 9; i++) r.qh[i] = wh[i];
    if (part == 0) {
        const uint32_t *ws = (const uint32_t *)(b + CM_AT(block_q6_K, scales) + 8 * n - r.shift);
        r.sc[0] = ws[0], r.sc[1] = ws[1], r.sc[2] = r.shift ? ws[2] : 0;
        r.d = *(const uint16_t *)(b + CM_AT(block_q6_K, d));
    }
}

/* Row lr's 64 weights of a Q6_K step fetched by thread part (0, 1): quarters 2 part and 2 part + 1
 * of the step's half superblock as q - 32 (6 bits: exact halves), low bits ql[l + 32 quarter % 2]
 * (the low nibble for part 0, the high for part 1), high bits qh[l] >> 2 quarter; and d sc of the
 * step's eight sub-blocks of 16 (thread part 0). present false: zeros. */
__device__ __forceinline__ void kq_store6(kq_smem &sm, const kq_raw<GGML_Q6_K> &r, bool present, int lr, int part) {
    if (!present) {
        const uint32_t zero[32] = {};
        kq_put32(&sm.w[lr][32 * part], zero);
        if (part == 0)
            for (int s = 0; s < 8; s++) sm.wsc[lr][s] = 0;
        return;
    }
    uint32_t v[32]; /* the part's words: quarter 2 part's 16, then 2 part + 1's, in kq_slot order */
    const uint32_t sel = 0x3210u + 0x1111u * r.shift; /* the 4 bytes from shift on of two words */
    const __half2 one = __half2half2(__float2half_rn(1.0f)), off = __half2half2(__float2half_rn(-1056.0f));
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int quarter = 2 * part + h;
#pragma unroll
        for (int m = 0; m < 8; m++) { /* weights l = 4m..4m + 3 */
            const uint32_t lw = __byte_perm(r.ql[8 * h + m], r.ql[8 * h + m + 1], sel);
            const uint32_t hw = __byte_perm(r.qh[m], r.qh[m + 1], sel);
#pragma unroll
            for (int e = 0; e < 2; e++) { /* the pair l = 4m + 2e, l + 1 in the low bytes of two halves */
                const uint32_t ps = e ? 0x4342u : 0x4140u;
                const uint32_t pl = __byte_perm(lw, 0, ps), ph = __byte_perm(hw, 0, ps);
                const uint32_t q = ((part ? pl >> 4 : pl) & 0x000F000Fu) | (ph >> (2 * quarter) & 0x00030003u) << 4;
                v[16 * h + kq_slot(2 * m + e)] = kq_scale2(q, one, off); /* 1024 + q - 1056 */
            }
        }
    }
    kq_put32(&sm.w[lr][32 * part], v);
    if (part == 0) {
        const float d = cm_half(r.d);
        const uint32_t s[2] = {__byte_perm(r.sc[0], r.sc[1], sel), __byte_perm(r.sc[1], r.sc[2], sel)};
#pragma unroll
        for (int i = 0; i < 8; i++) sm.wsc[lr][i] = d * (float)(int8_t)(s[i / 4] >> 8 * (i % 4));
    }
}

/* the next step's weights into registers, and this step's from them into shared memory */
template <uint32_t T>
__device__ __forceinline__ void kq_fetch(kq_raw<T> &r, const uint8_t *wrow, int kb, int part) {
    if constexpr (T == GGML_Q6_K) kq_fetch6(r, wrow, kb, part);
    else kq_fetch45<T>(r, wrow, kb, part);
}
template <uint32_t T>
__device__ __forceinline__ void kq_store(kq_smem &sm, const kq_raw<T> &r, bool present, int kb, int lr, int part) {
    if constexpr (T == GGML_Q6_K) kq_store6(sm, r, present, lr, part);
    else kq_store45<T>(sm, r, present, kb, lr, part);
}

/* Prefill / big batches of K-quant weights on mma.sync, over the quants instead of dequantized
 * weights. Q4_K / Q5_K: a sub-block's weights are d sc q - dmin m, so a row's product with x is
 * d (sum of sc q x) - dmin (sum over sub-blocks of m times the sub-block's sum of x); sc q is an
 * integer below 2048 (6-bit scales, 4- or 5-bit quants), exact in a half, and d, dmin m and the
 * sums of x are applied in float once a step. Q6_K: weights are d sc (q - 32) with an 8-bit scale
 * per 16, so q - 32 (exact) goes in and d sc is applied to each slice of 16's sums. x goes in as
 * a high and a low half (two products, as gemm_tc_kernel's), so the sums keep about float's
 * precision. The same 64-row x 32-column output tile per block as the other GEMMs (the plan's
 * tiles); a step is half a superblock (128 weights): each of the 128 threads turns 64 quants of
 * one row into halves and one sub-block of one column into high and low halves and its sum; each
 * warp then multiplies its 16 rows by the 32 columns (four 16 x 8 tiles, 16 products a slice of
 * 16). The weights of the next step are fetched into registers (kq_raw) before this
 * step's products, so their memory latency overlaps the products. Values of x beyond the half
 * range (65504) are not handled: LFM2C_CUDA_TC=0 takes gemm_kernel instead. */
template <uint32_t T, bool LO>
__global__ void __launch_bounds__(KQ_THREADS) gemm_kq_mma_kernel(mm_args a) {
    pdl_ready();
    __shared__ __align__(16) kq_smem sm;
    int e, c0, nc;
    if (!mm_tile(a, blockIdx.y, CU_GEMM_COLS, &e, &c0, &nc)) return;
    const int tid = threadIdx.x, warp = tid / 32, g = tid % 32 / 4, t = tid % 4, r0 = blockIdx.x * KQ_BM;
    const int lr = tid / 2, ra = 16 * warp + g;
    const uint8_t *wrow =
        r0 + lr < a.rows ? a.w + (size_t)e * a.expert_stride + (size_t)(r0 + lr) * a.row_bytes : nullptr;
    const int xsrc = tid / 4 < nc ? (a.col_src ? a.col_src[c0 + tid / 4] : c0 + tid / 4) : -1;
    float acc[4][4] = {};
    kq_raw<T> raw = {};
    kq_fetch<T>(raw, wrow, 0, tid % 2);
    for (int kb = 0; kb < a.n; kb += KQ_BK) {
        kq_store<T>(sm, raw, wrow != nullptr, kb, lr, tid % 2);
        kq_load_x<LO>(sm, a, xsrc, kb, tid);
        __syncthreads();
        /* the next step's weights are on their way while this step's products run */
        if (kb + KQ_BK < a.n) kq_fetch<T>(raw, wrow, kb + KQ_BK, tid % 2);
        if constexpr (T == GGML_Q6_K) {
#pragma unroll
            for (int ks = 0; ks < KQ_BK / 2; ks += 8) {
                float p[4][4] = {};
                kq_mma<LO>(sm, ra, ks, g, t, p);
                const float s0 = sm.wsc[ra][ks / 8], s1 = sm.wsc[ra + 8][ks / 8];
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) acc[nt][i] += (i < 2 ? s0 : s1) * p[nt][i];
            }
        } else {
            float p[4][4] = {};
#pragma unroll
            for (int ks = 0; ks < KQ_BK / 2; ks += 8) kq_mma<LO>(sm, ra, ks, g, t, p);
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int r = ra + 8 * (i / 2), c = 8 * nt + 2 * t + (i & 1);
                    const float *m = sm.wsc[r], *xs = sm.xs[c];
                    acc[nt][i] += sm.wd[r] * p[nt][i] - (m[0] * xs[0] + m[1] * xs[1] + m[2] * xs[2] + m[3] * xs[3]);
                }
        }
        __syncthreads();
    }
    kq_store(a, acc, r0, warp, g, t, c0, nc);
}

/* ---- a Q4_K GEMM with the weights straight from memory into mma.sync's registers ------------ */

/* Q4_K's GEMM by default (LFM2C_CUDA_TC=mma runs gemm_kq_mma_kernel instead). That kernel writes
 * every weight into shared memory as halves and every warp of its 64 x 32 tile reads all 32
 * columns' x fragments for its own 16 rows, so shared memory bounds it (bench/GPU.md). Here a
 * block takes 128 rows by the column tile, a superblock of k a step, and warp w rows 32w..32w + 31
 * as two 16-row tiles that share each x fragment. A lane (g = lane / 4, t = lane % 4) loads rows g
 * and g + 8 of each tile, bytes 8t..8t + 7 of each 32-byte group of quants, and makes them sc q
 * halves in its A registers (the k order inside a sub-block permuted: lane t's words are k 2t..
 * and 8 + 2t.. of two products); x's halves sit in shared memory in the natural order, which that
 * permutation reads with one 16-byte load for two products. The mins are one more product a
 * superblock: the 8 sub-blocks' m (A, exact halves) by x's sub-block sums (B, high and low
 * halves). d and dmin are applied once a superblock in float. No weight passes through shared
 * memory. */
enum { KG_WROWS = 32, KG_ROWS = 4 * KG_WROWS, KG_LD = QK_K / 2 + 16, KG_THREADS = 128 };

struct kg_smem {
    uint32_t xh[CU_GEMM_COLS][KG_LD], xl[CU_GEMM_COLS][KG_LD]; /* a superblock of each column's x as halves */
    uint32_t sh[CU_GEMM_COLS][4], sl[CU_GEMM_COLS][4];          /* its 8 sub-block sums, two halves a word */
};

/* A lane's raw bytes of one row's superblock: the first 16 bytes (d | dmin, the scales) and bytes
 * 8t..8t + 7 of each 32-byte group of quants (zeros past the last row) */
struct kg_raw {
    uint4 hd;
    uint2 q[4];
};

__device__ __forceinline__ void kg_load(const uint8_t *blk, bool ok, int t, kg_raw *r) {
    if (!ok) {
        *r = kg_raw{};
        return;
    }
    r->hd = *(const uint4 *)(const void *)blk;
#pragma unroll
    for (int k = 0; k < 4; k++) r->q[k] = *(const uint2 *)(const void *)(blk + CM_AT(block_q4_K, qs) + 32 * k + 8 * t);
}

/* the halves (v0, v1) of two integers below 1024, exact: 1024 + v, less 1024 */
__device__ __forceinline__ __half2 kg_int2(uint32_t v0, uint32_t v1) {
    return __hfma2(kq_h2(0x64006400u | v0 | v1 << 16), kq_h2(0x3C003C00u), kq_h2(0xE400E400u));
}

/* Column tid / 4's quarter tid % 4 of the step's x (k from kb: 64 values, sub-blocks 2q and 2q + 1)
 * into sm: from the halves split once per product (a.xh, kq_slot order within 8 words), else from
 * x itself; src < 0: zeros */
__device__ __forceinline__ void kg_stage_x(kg_smem &sm, const mm_args &a, int src, int kb, int tid) {
    const int c = tid / 4, q = tid % 4;
    uint32_t *dh = &sm.xh[c][32 * q], *dl = &sm.xl[c][32 * q];
    float s[2] = {0, 0};
    if (src < 0) {
#pragma unroll
        for (int i = 0; i < 32; i += 4) *(uint4 *)(dh + i) = *(uint4 *)(dl + i) = uint4{0, 0, 0, 0};
    } else if (a.xh) {
        const size_t at = (size_t)src * (a.n / 2) + kb / 2 + 32 * q;
        const uint4 *h = (const uint4 *)(a.xh + at), *l = (const uint4 *)(a.xl + at);
#pragma unroll
        for (int i = 0; i < 8; i += 2) { /* stored words 0 4 1 5 | 2 6 3 7 back to 0 1 2 3 | 4 5 6 7 */
            const uint4 h0 = h[i], h1 = h[i + 1], l0 = l[i], l1 = l[i + 1];
            *(uint4 *)(dh + 4 * i) = uint4{h0.x, h0.z, h1.x, h1.z};
            *(uint4 *)(dh + 4 * i + 4) = uint4{h0.y, h0.w, h1.y, h1.w};
            *(uint4 *)(dl + 4 * i) = uint4{l0.x, l0.z, l1.x, l1.z};
            *(uint4 *)(dl + 4 * i + 4) = uint4{l0.y, l0.w, l1.y, l1.w};
        }
        s[0] = a.xs[(size_t)src * (a.n / 32) + kb / 32 + 2 * q];
        s[1] = a.xs[(size_t)src * (a.n / 32) + kb / 32 + 2 * q + 1];
    } else {
        const float *x = a.x + (size_t)src * a.ldx + kb + 64 * q;
#pragma unroll
        for (int i = 0; i < 64; i += 4) {
            const float4 v = *(const float4 *)(x + i);
            __half hi[4], lo[4];
            tc_split(v.x, &hi[0], &lo[0]);
            tc_split(v.y, &hi[1], &lo[1]);
            tc_split(v.z, &hi[2], &lo[2]);
            tc_split(v.w, &hi[3], &lo[3]);
            dh[i / 2] = hpack(hi[0], hi[1]), dh[i / 2 + 1] = hpack(hi[2], hi[3]);
            dl[i / 2] = hpack(lo[0], lo[1]), dl[i / 2 + 1] = hpack(lo[2], lo[3]);
            s[i / 32] += v.x + v.y + v.z + v.w;
        }
    }
    __half h0, l0, h1, l1;
    tc_split(s[0], &h0, &l0);
    tc_split(s[1], &h1, &l1);
    sm.sh[c][q] = hpack(h0, h1);
    sm.sl[c][q] = hpack(l0, l1);
}

/* acc -= dmin (m . sums of x) for one 16-row tile (rows g: ra, g + 8: rb), on the tensor cores:
 * lane t's k are sub-blocks 2t and 2t + 1 (k 8..15 zeros) */
__device__ __forceinline__ void kg_mins(const kg_smem &sm, const kg_raw &ra, const kg_raw &rb, int g, int t,
                                        float (*acc)[4]) {
    const uint32_t wa[4] = {ra.hd.x, ra.hd.y, ra.hd.z, ra.hd.w}, wb[4] = {rb.hd.x, rb.hd.y, rb.hd.z, rb.hd.w};
    int sc, ma0, ma1, mb0, mb1;
    q4k_scale_min(wa, 2 * t, &sc, &ma0);
    q4k_scale_min(wa, 2 * t + 1, &sc, &ma1);
    q4k_scale_min(wb, 2 * t, &sc, &mb0);
    q4k_scale_min(wb, 2 * t + 1, &sc, &mb1);
    const __half2 ha = kg_int2((uint32_t)ma0, (uint32_t)ma1), hb = kg_int2((uint32_t)mb0, (uint32_t)mb1);
    const uint32_t A[4] = {hpack(__low2half(ha), __high2half(ha)), hpack(__low2half(hb), __high2half(hb)), 0, 0};
    uint32_t B[8][2];
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        B[2 * nt][0] = sm.sh[8 * nt + g][t], B[2 * nt][1] = 0;
        B[2 * nt + 1][0] = sm.sl[8 * nt + g][t], B[2 * nt + 1][1] = 0;
    }
    float pm[4][4] = {};
    mma16816<8, 2>(pm, A, B);
    const float da = cm_half(ra.hd.x >> 16), db = cm_half(rb.hd.x >> 16);
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[nt][i] -= (i < 2 ? da : db) * pm[nt][i];
}

/* The GLU register GEMM's epilogue: the up warps (2, 3) leave their sums in shared memory (the x
 * staging, done with) and each gate warp turns its own into silu(gate) * up of the same element. */
__device__ __forceinline__ void kg_glu_exchange(kg_smem &sm, float (*acc)[4][4], bool up, int warp, int g, int t) {
    float *ex = (float *)(void *)&sm; /* [64 rows][CU_GEMM_COLS]: 8 KB of the staging's 37 */
    __syncthreads();                  /* every warp has read the last step's x */
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int r = KG_WROWS * (warp & 1) + 16 * i + g + 8 * (q / 2), c = 8 * nt + 2 * t + (q & 1);
                if (up) ex[r * CU_GEMM_COLS + c] = acc[i][nt][q];
            }
    __syncthreads();
    if (up) return;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int r = KG_WROWS * warp + 16 * i + g + 8 * (q / 2), c = 8 * nt + 2 * t + (q & 1);
                acc[i][nt][q] = cm_silu(acc[i][nt][q]) * ex[r * CU_GEMM_COLS + c];
            }
}

/* GLU (a.w_up, mm_args): a block takes 64 rows of the gate (warps 0, 1) and the same 64 of the up
 * matrix (warps 2, 3), each warp's sums those of the plain kernel's, and the gate warps write
 * silu(gate) * up: the bits of the two products and swiglu_kernel after them. */
template <bool GLU>
__global__ void __launch_bounds__(KG_THREADS) gemm_q4k_reg_kernel(mm_args a) {
    pdl_ready();
    __shared__ __align__(16) kg_smem sm;
    int e, c0, nc;
    if (!mm_tile(a, blockIdx.y, CU_GEMM_COLS, &e, &c0, &nc)) return;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const bool up = GLU && warp >= 2;
    const int rw = GLU ? blockIdx.x * (KG_ROWS / 2) + KG_WROWS * (warp & 1)
                       : blockIdx.x * KG_ROWS + KG_WROWS * warp; /* the warp's first row */
    const int xsrc = tid / 4 < nc ? (a.col_src ? a.col_src[c0 + tid / 4] : c0 + tid / 4) : -1;
    const uint8_t *base = (up ? a.w_up : a.w) + (size_t)e * a.expert_stride;
    float acc[2][4][4] = {};
    const int nb = a.n / QK_K;
    for (int sb = 0; sb < nb; sb++) {
        kg_raw raw[2][2]; /* tile i, rows g (0) and g + 8 (1) */
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = rw + 16 * i + 8 * h + g;
                kg_load(base + (size_t)r * a.row_bytes + (size_t)sb * sizeof(block_q4_K), r < a.rows, t, &raw[i][h]);
            }
        if (sb + 1 < nb && rw + lane < a.rows) { /* the next superblock of the warp's rows into L2 */
            const uint8_t *nx = base + (size_t)(rw + lane) * a.row_bytes + (size_t)(sb + 1) * sizeof(block_q4_K);
            prefetch_l2(nx);
            prefetch_l2(nx + sizeof(block_q4_K) - 1);
        }
        __syncthreads(); /* the step before has read sm */
        kg_stage_x(sm, a, xsrc, sb * QK_K, tid);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 2; i++) kg_mins(sm, raw[i][0], raw[i][1], g, t, acc[i]);
        float p[2][4][4] = {};
#pragma unroll
        for (int j = 0; j < 8; j++) {
            uint4 bh[4], bl[4];
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                bh[nt] = *(const uint4 *)&sm.xh[8 * nt + g][16 * j + 4 * t];
                bl[nt] = *(const uint4 *)&sm.xl[8 * nt + g][16 * j + 4 * t];
            }
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const uint32_t wa[4] = {raw[i][0].hd.x, raw[i][0].hd.y, raw[i][0].hd.z, raw[i][0].hd.w};
                const uint32_t wb[4] = {raw[i][1].hd.x, raw[i][1].hd.y, raw[i][1].hd.z, raw[i][1].hd.w};
                int sca, mn, scb;
                q4k_scale_min(wa, j, &sca, &mn);
                q4k_scale_min(wb, j, &scb, &mn);
                const __half2 sa = kg_int2((uint32_t)sca, (uint32_t)sca), sb2 = kg_int2((uint32_t)scb, (uint32_t)scb);
                const __half2 m1024 = kq_h2(0xE400E400u), zero = kq_h2(0);
                const __half2 oa = __hfma2(sa, m1024, zero), ob = __hfma2(sb2, m1024, zero);
                const uint2 qa = raw[i][0].q[j / 2], qb = raw[i][1].q[j / 2];
                const int sh = 4 * (j & 1);
#pragma unroll
                for (int m = 0; m < 2; m++) {
                    const uint32_t va = ((m ? qa.y : qa.x) >> sh) & 0x0F0F0F0Fu;
                    const uint32_t vb = ((m ? qb.y : qb.x) >> sh) & 0x0F0F0F0Fu;
                    /* bytes 0, 1 and 2, 3 of each word as the two quants of a register */
                    const uint32_t A[4] = {kq_scale2(__byte_perm(va, 0, 0x4140u), sa, oa),
                                           kq_scale2(__byte_perm(vb, 0, 0x4140u), sb2, ob),
                                           kq_scale2(__byte_perm(va, 0, 0x4342u), sa, oa),
                                           kq_scale2(__byte_perm(vb, 0, 0x4342u), sb2, ob)};
                    uint32_t B[8][2];
#pragma unroll
                    for (int nt = 0; nt < 4; nt++) {
                        B[2 * nt][0] = m ? bh[nt].z : bh[nt].x, B[2 * nt][1] = m ? bh[nt].w : bh[nt].y;
                        B[2 * nt + 1][0] = m ? bl[nt].z : bl[nt].x, B[2 * nt + 1][1] = m ? bl[nt].w : bl[nt].y;
                    }
                    mma16816<8, 2>(p[i], A, B);
                }
            }
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const float da = cm_half(raw[i][0].hd.x & 0xFFFF), db = cm_half(raw[i][1].hd.x & 0xFFFF);
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int q = 0; q < 4; q++) acc[i][nt][q] += (q < 2 ? da : db) * p[i][nt][q];
        }
    }
    if (GLU) kg_glu_exchange(sm, acc, up, warp, g, t);
    if (up) return;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int r = rw + 16 * i + g + 8 * (q / 2), c = 8 * nt + 2 * t + (q & 1);
                if (r < a.rows && c < nc) a.y[(size_t)(c0 + c) * a.ldy + r] = mm_out(a, c0 + c, acc[i][nt][q]);
            }
}

/* a's x split into halves once for every row tile of a K-quant GEMM (kq_prep_x_kernel), where
 * there is room; else the copy's xh is NULL and each tile splits its own */
static mm_args kq_prep_x(cu_q *cq, const mm_args *a) {
    mm_args b = *a;
    const int xr = a->col_src ? a->x_rows : a->ncols;
    if (b.xh && xr > 0 && (size_t)xr * a->n <= a->xq_cap) {
        const int nthr = xr * (a->n / 32);
        cu_launch(cq, kq_prep_x_kernel, dim3((nthr + 127) / 128), dim3(128), a->x, a->ldx, a->n, xr, b.xh, b.xl, b.xs);
    } else {
        b.xh = nullptr;
    }
    return b;
}

/* the one-column K-quant GEMV (T: Q4_K or Q6_K) */
template <uint32_t T>
static void launch_gemv_kq(cu_q *cq, const mm_args *a, int ny) {
    typedef typename std::conditional<T == GGML_Q6_K, q6k_lane, q4k_lane>::type L;
    const dim3 grid((a->rows + GEMV_WARPS - 1) / GEMV_WARPS, ny), block(GEMV_WARPS * 32);
    if (a->w_up) cu_launch(cq, gemv_kq_kernel<L, true>, grid, block, *a);
    else cu_launch(cq, gemv_kq_kernel<L, false>, grid, block, *a);
}

template <uint32_t T>
static void launch_mm(cu_q *cq, const mm_args *a, bool gemv) {
    /* one column per tile (a single token; the pairs of a single token, each its own expert):
     * the gemv without the other columns' registers */
    const bool one = cu_mm_one_column(a, gemv);
    int width = gemv ? (one ? 1 : CU_GEMV_COLS) : CU_GEMM_COLS;
    int ny = a->tile_e ? a->max_tiles : (a->ncols + width - 1) / width;
    if (ny <= 0) return;
    if (gemv) {
        dim3 grid((a->rows + GEMV_WARPS - 1) / GEMV_WARPS, ny);
        if (one && (T == GGML_Q4_K || T == GGML_Q6_K)) launch_gemv_kq<T>(cq, a, ny);
        else if (one && a->w_up) cu_launch(cq, gemv_kernel<T, 1, true>, grid, GEMV_WARPS * 32, *a);
        else if (one) cu_launch(cq, gemv_kernel<T, 1>, grid, GEMV_WARPS * 32, *a);
        else cu_launch(cq, gemv_kernel<T, CU_GEMV_COLS>, grid, GEMV_WARPS * 32, *a);
    } else {
        dim3 grid((a->rows + GM_BM - 1) / GM_BM, ny);
        constexpr bool kq = T == GGML_Q4_K || T == GGML_Q5_K || T == GGML_Q6_K;
        constexpr uint32_t KQ = kq ? T : (uint32_t)GGML_Q4_K; /* the kq kernel's instance */
        if (a->tc && a->kq_reg && T == GGML_Q4_K && a->x_lo) {
            const mm_args b = kq_prep_x(cq, a);
            if (a->w_up) /* gate + up + SwiGLU (cu_mm_glu_gemm) */
                cu_launch(cq, gemm_q4k_reg_kernel<true>, dim3((a->rows + KG_ROWS / 2 - 1) / (KG_ROWS / 2), ny),
                          KG_THREADS, b);
            else cu_launch(cq, gemm_q4k_reg_kernel<false>, dim3((a->rows + KG_ROWS - 1) / KG_ROWS, ny), KG_THREADS, b);
        }
        else if (a->tc && a->kq_mma && kq) {
            const mm_args b = kq_prep_x(cq, a);
            if (a->x_lo) cu_launch(cq, gemm_kq_mma_kernel<KQ, true>, grid, KQ_THREADS, b);
            else cu_launch(cq, gemm_kq_mma_kernel<KQ, false>, grid, KQ_THREADS, b);
        }
        else if (a->tc) cu_launch(cq, gemm_tc_kernel<T>, grid, TC_THREADS, *a);
        else cu_launch(cq, gemm_kernel<T>, grid, GM_THREADS, *a);
    }
}

bool cu_mm_glu_gemm(const mm_args *a) { return a->type == GGML_Q4_K && a->tc && a->kq_reg && a->x_lo; }

void cu_matmul(cu_q *cq, const mm_args *a, bool gemv) {
    switch (a->type) {
    /* every row of the type table (formats/ggml_types.h) with the CUDA bit */
#define CASE(N, id, bs, sz, vd, runs, fl, fb) \
    case id: if constexpr (((runs) & GGML_RUN_CUDA) != 0) launch_mm<id>(cq, a, gemv); break;
    GGML_TYPE_TABLE(CASE)
#undef CASE
    default: break;   /* rejected when the model was uploaded */
    }
}
