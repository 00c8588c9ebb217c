/* kernels_moe.cu — the CUDA kernels of the MoE layers besides the products: the routing (the
 * serial router and plan, the warp ones, a single token's in one warp), the scatter of the pairs
 * in expert order, the experts' combine with the residual add and norm, and the BF16 rows of
 * LFM2C_CUDA_MOE=cublas (blas_moe.cu). The per-element math is cuda_math.cuh's; what the kernels'
 * files share is kernels_common.cuh; the launchers are declared in cuda_kernels.h. */
#include "kernels_common.cuh"

/* ---- BF16 rows for cuBLAS (blas_moe.cu: LFM2C_CUDA_MOE=cublas) ---------------------------- */

/* rows x n weights of type `type` (row_bytes a row) as BF16, rounded to nearest even; a thread
 * per 8 values (n a multiple of 8) */
__global__ void dequant_bf16_kernel(const uint8_t *w, uint32_t type, size_t row_bytes, int n, size_t rows,
                                    uint16_t *out) {
    pdl_ready();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, per = (size_t)n / 8;
    if (i >= rows * per) return;
    const size_t r = i / per;
    const int k0 = (int)(i % per) * 8;
    float v[8];
    cm_dequant8(type, w + r * row_bytes, k0, v);
    for (int j = 0; j < 8; j++) out[r * n + k0 + j] = (uint16_t)cm_f32_bf16(v[j]);
}

void cu_dequant_bf16(cu_q *cq, const uint8_t *w, uint32_t type, size_t row_bytes, int n, size_t rows, uint16_t *out) {
    const size_t threads = rows * (size_t)(n / 8);
    if (threads) cu_launch(cq, dequant_bf16_kernel, (unsigned)((threads + 255) / 256), 256, w, type, row_bytes, n, rows, out);
}

/* out row i (n values) = x row src[i] (ldx apart) as BF16 */
__global__ void gather_bf16_kernel(const float *x, int ldx, const int *src, int rows, int n, uint16_t *out) {
    pdl_ready();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * n) return;
    const size_t r = i / n, c = i % n;
    out[i] = (uint16_t)cm_f32_bf16(x[(size_t)src[r] * ldx + c]);
}

void cu_gather_bf16(cu_q *cq, const float *x, int ldx, const int *src, int rows, int n, uint16_t *out) {
    const size_t m = (size_t)rows * n;
    if (m) cu_launch(cq, gather_bf16_kernel, (unsigned)((m + 255) / 256), 256, x, ldx, src, rows, n, out);
}

/* g = silu(g) * u over BF16 values, the result rounded to BF16 */
__global__ void swiglu_bf16_kernel(uint16_t *g, const uint16_t *u, size_t n) {
    pdl_ready();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] = (uint16_t)cm_f32_bf16(cm_silu(cm_bf16(g[i])) * cm_bf16(u[i]));
}

void cu_swiglu_bf16(cu_q *cq, uint16_t *g, const uint16_t *u, size_t n) {
    if (n) cu_launch(cq, swiglu_bf16_kernel, (unsigned)((n + 255) / 256), 256, g, u, n);
}

__global__ void bf16_to_f32_kernel(const uint16_t *x, size_t n, float *y) {
    pdl_ready();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = cm_bf16(x[i]);
}

void cu_bf16_to_f32(cu_q *cq, const uint16_t *x, size_t n, float *y) {
    if (n) cu_launch(cq, bf16_to_f32_kernel, (unsigned)((n + 255) / 256), 256, x, n, y);
}

/* The serial router and plan: one thread (a token; the whole plan), for shapes the warp
 * versions below do not hold. */
__global__ void route_kernel(const float *logits, const float *bias, int T, int E, int k, int *sel,
                             float *wsel, int *count) {
    pdl_ready();
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    cm_route(logits + (size_t)t * E, bias, E, k, sel + (size_t)t * k, wsel + (size_t)t * k);
    for (int j = 0; j < k; j++) atomicAdd(&count[sel[(size_t)t * k + j]], 1);
}

__global__ void plan_kernel(const int *count, int E, int width, int *start, int *fill, int *tile_e,
                            int *tile_c0, int *tile_n, int *n_tiles) {
    pdl_ready();
    *n_tiles = cm_plan_tiles(count, E, width, start, tile_e, tile_c0, tile_n);
    for (int e = 0; e < E; e++) fill[e] = start[e];
}

/* One warp per token (route_select): its experts, weights and counts. */
__global__ void route_warp_kernel(const float *logits, const float *bias, int T, int E, int k, int *sel,
                                  float *wsel, int *count) {
    pdl_ready();
    int t = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (t >= T) return;   /* the whole warp */
    const float *lg = logits + (size_t)t * E;
    float w[ROUTE_MAX_K];
    int chosen[ROUTE_MAX_K];
    const float sum = route_select(lg, bias, E, k, lane, chosen, w);
    if (lane) return;
    for (int j = 0; j < k; j++) {
        sel[(size_t)t * k + j] = chosen[j];
        wsel[(size_t)t * k + j] = w[j] / sum;
        atomicAdd(&count[chosen[j]], 1);
    }
}

/* The plan by one warp: lane l takes experts [l * per, (l + 1) * per); its pairs' and tiles'
 * first offsets come from prefix sums over the lanes. The same plan as cm_plan_tiles. */
__global__ void plan_warp_kernel(const int *count, int E, int width, int *start, int *fill, int *tile_e,
                                 int *tile_c0, int *tile_n, int *n_tiles) {
    pdl_ready();
    const int lane = threadIdx.x, per = (E + 31) / 32, e0 = lane * per;
    int cnt[ROUTE_LANE_E], pairs = 0, tiles = 0;
#pragma unroll
    for (int i = 0; i < ROUTE_LANE_E; i++) {
        int e = e0 + i;
        cnt[i] = i < per && e < E ? count[e] : 0;
        pairs += cnt[i];
        tiles += (cnt[i] + width - 1) / width;
    }
    int ps = pairs, ts = tiles;   /* inclusive prefix sums over the lanes */
    for (int o = 1; o < 32; o <<= 1) {
        int a = __shfl_up_sync(0xffffffffu, ps, o), b = __shfl_up_sync(0xffffffffu, ts, o);
        if (lane >= o) { ps += a; ts += b; }
    }
    if (lane == 31) { start[E] = ps; *n_tiles = ts; }
    ps -= pairs;
    ts -= tiles;
    for (int i = 0; i < per && e0 + i < E; i++) {
        int e = e0 + i;
        start[e] = fill[e] = ps;
        for (int c = 0; c < cnt[i]; c += width, ts++) {
            tile_e[ts] = e;
            tile_c0[ts] = ps + c;
            tile_n[ts] = cnt[i] - c < width ? cnt[i] - c : width;
        }
        ps += cnt[i];
    }
}

__global__ void route1_kernel(const float *lg, cu_route1 r) {
    pdl_ready();
    route1_warp(lg, r);
}

bool cu_moe_route1_ok(int T, int width, int E, int k) {
    return T == 1 && width == 1 && E <= 32 * ROUTE_LANE_E && k <= ROUTE_MAX_K;
}

/* Pairs in expert order; the order inside an expert does not change any result. wpos (NULL:
 * none): each position's router weight, for a down product that applies it (mm_args.y_scale). */
__global__ void scatter_kernel(const int *sel, int n_pairs, int k, int *fill, int *col_src, int *inv,
                               const float *wsel, float *wpos) {
    pdl_ready();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_pairs) return;
    int pos = atomicAdd(&fill[sel[i]], 1);
    col_src[pos] = i / k;
    inv[i] = pos;
    if (wpos) wpos[pos] = wsel[i];
}

void cu_moe_route(cu_q *cq, const float *logits, const float *bias, int T, int E, int k,
                  int width, int *sel, float *wsel, int *count, int *start, int *fill,
                  int *tile_e, int *tile_c0, int *tile_n, int *n_tiles, int *col_src, int *inv, float *wpos) {
    if (cu_moe_route1_ok(T, width, E, k)) {
        const cu_route1 r = {bias, E, k, sel, wsel, tile_e, tile_c0, tile_n, n_tiles, col_src, inv};
        cu_launch(cq, route1_kernel, 1, 32, logits, r);
        return;
    }
    cudaMemsetAsync(count, 0, sizeof(int) * (size_t)E, cq ? cq->st : nullptr);
    cu_q_other(cq);
    if (E <= 32 * ROUTE_LANE_E && k <= ROUTE_MAX_K) {
        cu_launch(cq, route_warp_kernel, (T + 3) / 4, 128, logits, bias, T, E, k, sel, wsel, count);
        cu_launch(cq, plan_warp_kernel, 1, 32, count, E, width, start, fill, tile_e, tile_c0, tile_n, n_tiles);
    } else {
        cu_launch(cq, route_kernel, (T + 63) / 64, 64, logits, bias, T, E, k, sel, wsel, count);
        cu_launch(cq, plan_kernel, 1, 1, count, E, width, start, fill, tile_e, tile_c0, tile_n, n_tiles);
    }
    int n = T * k;
    cu_launch(cq, scatter_kernel, (n + 255) / 256, 256, sel, n, k, fill, col_src, inv, (const float *)wsel, wpos);
}

/* add_rmsnorm_kernel with the layer's output made here: the sum over the token's k slots (in slot
 * order) of weight * expert output */
__global__ void combine_add_rmsnorm_kernel(float *x, const float *D, const float *wsel, const int *inv, int k,
                                           const float *w, float *y, int H, float eps, const int *map) {
    pdl_ready();
    const int src = map ? map[blockIdx.x] : blockIdx.x;
    combine_add_rmsnorm_row<NORM_STAGE>(x + (size_t)src * H, D, wsel ? wsel + (size_t)src * k : nullptr,
                                        inv + (size_t)src * k, k, w, y + (size_t)blockIdx.x * H, H, eps);
}

void cu_moe_combine_add_rmsnorm(cu_q *cq, float *x, const float *D, const float *wsel, const int *inv, int k,
                                const float *w, float *y, int rows, int H, float eps, const int *map) {
    if (rows > 0) cu_launch(cq, combine_add_rmsnorm_kernel, rows, NORM_THREADS, x, D, wsel, inv, k, w, y, H, eps, map);
}
