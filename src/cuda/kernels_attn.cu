/* kernels_attn.cu — the CUDA kernels of attention: the q / k norms, RoPE and the KV cache's store
 * (qk_kernel), the online-softmax attention a block per (token, head), and LFM2C_CUDA_ATTN=gqa's a
 * block per (token, KV head, split) with the splits' merge. The per-element math is
 * cuda_math.cuh's; what the kernels' files share is kernels_common.cuh; the launchers are declared
 * in cuda_kernels.h. */
#include "kernels_common.cuh"

/* ---- attention ------------------------------------------------------------------------------ */

/* The KV cache's elements: float, or half bits (uint16_t) rounded as the CPU rounds its F16 cache. */
template <int F16> struct kv_elem { typedef float T; };
template <> struct kv_elem<1> { typedef uint16_t T; };
__device__ __forceinline__ void kv_put(float *p, float x) { *p = x; }
__device__ __forceinline__ void kv_put(uint16_t *p, float x) { *p = (uint16_t)cm_f2h(x); }
__device__ __forceinline__ float kv_get(const float *p) { return *p; }
__device__ __forceinline__ float kv_get(const uint16_t *p) { return cm_half(*p); }

/* One warp per (token, head): q heads are normed + rotated in place, k heads normed + rotated
 * into the cache, v heads copied into the cache. KV: CU_KV_* (the cache's element types). */
template <int KV>
__global__ void qk_kernel(float *q, const float *k, const float *v, const float *qn, const float *kn,
                          const float *cs, const cu_tok *toks, int nh, int nkv, int hd,
                          int attn_index, int kv_dim_max, float eps) {
    pdl_ready();
    typedef typename kv_elem<(KV & CU_KV_K16) != 0>::T TK;
    typedef typename kv_elem<(KV & CU_KV_V16) != 0>::T TV;
    int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    const cu_tok tk = toks[t];
    const int kvd = nkv * hd;
    size_t cache = (size_t)attn_index * tk.kv_cap * kv_dim_max + (size_t)tk.pos * kvd;
    if (h >= nh + nkv) {   /* v head: copy */
        int hv = h - nh - nkv;
        for (int i = lane; i < hd; i += 32)
            kv_put((TV *)tk.v + cache + hv * hd + i, v[(size_t)t * kvd + hv * hd + i]);
        return;
    }
    const float *src, *nw;
    float *qdst = nullptr;
    TK *kdst = nullptr;
    if (h < nh) {
        src = qdst = q + (size_t)t * nh * hd + h * hd;
        nw = qn;
    } else {
        src = k + (size_t)t * kvd + (h - nh) * hd;
        kdst = (TK *)tk.k + cache + (h - nh) * hd;
        nw = kn;
    }
    float ss = 0;
    for (int i = lane; i < hd; i += 32) ss += src[i] * src[i];
    float scale = cm_rms_scale(warp_sum(ss), hd, eps);
    const float *c = cs + (size_t)t * hd;
    const int half = hd / 2;
    for (int i = lane; i < half; i += 32) {   /* each lane owns the pair (i, i + half) */
        float a = src[i] * scale * nw[i], b = src[i + half] * scale * nw[i + half], ya, yb;
        cm_rope_pair(a, b, c[2 * i], c[2 * i + 1], &ya, &yb);
        if (qdst) {
            qdst[i] = ya;
            qdst[i + half] = yb;
        } else {
            kv_put(kdst + i, ya);
            kv_put(kdst + i + half, yb);
        }
    }
}

void cu_qk_norm_rope_store(cu_q *cq, float *q, const float *k, const float *v,
                           const float *qn, const float *kn, const float *cs, const cu_tok *toks,
                           int T, int nh, int nkv, int hd, int attn_index, int kv_dim_max, float eps, int kv) {
    dim3 grid(T, nh + 2 * nkv);
    switch (kv) {
    case 0: cu_launch(cq, qk_kernel<0>, grid, 32, q, k, v, qn, kn, cs, toks, nh, nkv, hd, attn_index, kv_dim_max, eps); break;
    case 1: cu_launch(cq, qk_kernel<1>, grid, 32, q, k, v, qn, kn, cs, toks, nh, nkv, hd, attn_index, kv_dim_max, eps); break;
    case 2: cu_launch(cq, qk_kernel<2>, grid, 32, q, k, v, qn, kn, cs, toks, nh, nkv, hd, attn_index, kv_dim_max, eps); break;
    default: cu_launch(cq, qk_kernel<3>, grid, 32, q, k, v, qn, kn, cs, toks, nh, nkv, hd, attn_index, kv_dim_max, eps); break;
    }
}

enum { ATT_WARPS = 16, ATT_MAXD = 8, ATT_UNROLL = 4 };   /* head_dim <= 32 * ATT_MAXD */

/* One block per (token, head): each warp runs an online softmax over every ATT_WARPS-th cached
 * position (lanes split the head dims), then the warps' partial states are merged. Many warps: a
 * decode step has only n_head blocks, each walking every cached position. Two blocks an SM at
 * most 64 registers a thread (ptxas spills a word), for batches of many tokens. */
template <int KV>
__global__ void __launch_bounds__(ATT_WARPS * 32, 2)
attention_kernel(const float *q, const cu_tok *toks, int nh, int nkv, int hd, int attn_index,
                 int kv_dim_max, float *o) {
    pdl_ready();
    typedef typename kv_elem<(KV & CU_KV_K16) != 0>::T TK;
    typedef typename kv_elem<(KV & CU_KV_V16) != 0>::T TV;
    __shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
    __shared__ float sm_acc[ATT_WARPS][32 * ATT_MAXD];
    int t = blockIdx.x, h = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const cu_tok tk = toks[t];
    const int kvd = nkv * hd, g = h / (nh / nkv);
    const float scale = 1.0f / sqrtf((float)hd);
    const float *qh = q + (size_t)t * nh * hd + h * hd;
    const TK *K = (const TK *)tk.k + (size_t)attn_index * tk.kv_cap * kv_dim_max + g * hd;
    const TV *V = (const TV *)tk.v + (size_t)attn_index * tk.kv_cap * kv_dim_max + g * hd;
    float qr[ATT_MAXD], acc[ATT_MAXD], m = -INFINITY, l = 0;
#pragma unroll
    for (int j = 0; j < ATT_MAXD; j++) {
        int i = lane + 32 * j;
        qr[j] = i < hd ? qh[i] : 0.0f;
        acc[j] = 0;
    }
    /* ATT_UNROLL of the warp's positions a pass: their loads all issued before any is summed, so a
     * long cache costs a memory latency every ATT_UNROLL positions, not every one; the softmax
     * still takes them in order */
    for (int p0 = warp; p0 <= tk.pos; p0 += ATT_WARPS * ATT_UNROLL) {
        float d[ATT_UNROLL], vr[ATT_UNROLL][ATT_MAXD];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int p = p0 + ATT_WARPS * u;   /* the same for the whole warp */
            const TK *kp = K + (size_t)p * kvd;
            const TV *vp = V + (size_t)p * kvd;
            d[u] = 0;
#pragma unroll
            for (int j = 0; j < ATT_MAXD; j++) {
                int i = lane + 32 * j;
                if (p <= tk.pos && i < hd) d[u] += qr[j] * kv_get(kp + i);
                vr[u][j] = p <= tk.pos && i < hd ? kv_get(vp + i) : 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            float s = warp_sum(d[u]) * scale;
            if (p0 + ATT_WARPS * u <= tk.pos) cm_softmax_step(s, vr[u], ATT_MAXD, &m, &l, acc);
        }
    }
    if (lane == 0) { sm_m[warp] = m; sm_l[warp] = l; }
#pragma unroll
    for (int j = 0; j < ATT_MAXD; j++) sm_acc[warp][lane + 32 * j] = acc[j];
    __syncthreads();
    if (warp) return;
    float f[ATT_WARPS], L = cm_softmax_merge(sm_m, sm_l, ATT_WARPS, f);
    float *oh = o + (size_t)t * nh * hd + h * hd;
    for (int j = 0; j < ATT_MAXD; j++) {
        int i = lane + 32 * j;
        if (i >= hd) break;
        float s = 0;
        for (int w = 0; w < ATT_WARPS; w++) s += sm_acc[w][i] * f[w];
        oh[i] = s / L;
    }
}

void cu_attention(cu_q *cq, const float *q, const cu_tok *toks, int T, int nh, int nkv,
                  int hd, int attn_index, int kv_dim_max, float *o, int kv) {
    dim3 grid(T, nh);
    switch (kv) {
    case 0: cu_launch(cq, attention_kernel<0>, grid, ATT_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o); break;
    case 1: cu_launch(cq, attention_kernel<1>, grid, ATT_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o); break;
    case 2: cu_launch(cq, attention_kernel<2>, grid, ATT_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o); break;
    default: cu_launch(cq, attention_kernel<3>, grid, ATT_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o); break;
    }
}

/* ---- attention reading each KV head once for its query heads (LFM2C_CUDA_ATTN=gqa) ---------- */

/* A block per (token, KV head, split): the KV head's G query heads (nh / nkv, at most GQA_MAXG)
 * share every K and V row the block loads. Split s of Z takes, through its warps, the positions
 * p = (s W + w) + j Z W (warp w of W): a partition that holds for any position, so a graph
 * captured for one step serves the next (Z is the launcher's, from the batch's size alone). With
 * Z = 1 the block writes the heads' outputs; else each split's state (m, l, acc) goes to part and
 * attention_gqa_combine_kernel merges them (the split-K of a decode step, whose few tokens would
 * leave most SMs idle). */
enum { GQA_WARPS = 8, GQA_MAXG = 4, GQA_MAXZ = 16, GQA_BLOCKS = 128 };

template <int KV>
__device__ __forceinline__ void gqa_walk(const float (*qr)[ATT_MAXD], int G, const cu_tok &tk, int kvd, const void *Kp,
                                         const void *Vp, int hd, float scale, int first, int stride, float *m,
                                         float *l, float (*acc)[ATT_MAXD]) {
    typedef typename kv_elem<(KV & CU_KV_K16) != 0>::T TK;
    typedef typename kv_elem<(KV & CU_KV_V16) != 0>::T TV;
    const TK *K = (const TK *)Kp;
    const TV *V = (const TV *)Vp;
    const int lane = threadIdx.x % 32;
    for (int p0 = first; p0 <= tk.pos; p0 += stride * ATT_UNROLL) {
        float d[ATT_UNROLL][GQA_MAXG], vr[ATT_UNROLL][ATT_MAXD];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const int p = p0 + stride * u; /* the same for the whole warp */
            const TK *kp = K + (size_t)p * kvd;
            const TV *vp = V + (size_t)p * kvd;
#pragma unroll
            for (int h = 0; h < GQA_MAXG; h++) d[u][h] = 0;
#pragma unroll
            for (int j = 0; j < ATT_MAXD; j++) {
                const int i = lane + 32 * j;
                const float kv = p <= tk.pos && i < hd ? kv_get(kp + i) : 0.0f;
#pragma unroll
                for (int h = 0; h < GQA_MAXG; h++) d[u][h] += qr[h][j] * kv;
                vr[u][j] = p <= tk.pos && i < hd ? kv_get(vp + i) : 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++)
#pragma unroll
            for (int h = 0; h < GQA_MAXG; h++) {
                if (h >= G) break;
                const float sc = warp_sum(d[u][h]) * scale;
                if (p0 + stride * u <= tk.pos) cm_softmax_step(sc, vr[u], ATT_MAXD, &m[h], &l[h], acc[h]);
            }
    }
}

template <int KV>
__global__ void __launch_bounds__(GQA_WARPS * 32)
attention_gqa_kernel(const float *q, const cu_tok *toks, int nh, int nkv, int hd, int attn_index, int kv_dim_max,
                     float *o, float *part) {
    pdl_ready();
    __shared__ float sm_m[GQA_WARPS][GQA_MAXG], sm_l[GQA_WARPS][GQA_MAXG];
    __shared__ float sm_acc[GQA_WARPS][GQA_MAXG][32 * ATT_MAXD];
    const int t = blockIdx.x, g = blockIdx.y, s = blockIdx.z, Z = gridDim.z, warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32, G = nh / nkv, kvd = nkv * hd;
    const cu_tok tk = toks[t];
    const size_t base = (size_t)attn_index * tk.kv_cap * kv_dim_max + (size_t)g * hd;
    const int es = (KV & CU_KV_K16) ? 2 : 4, vs = (KV & CU_KV_V16) ? 2 : 4;
    float qr[GQA_MAXG][ATT_MAXD], acc[GQA_MAXG][ATT_MAXD], m[GQA_MAXG], l[GQA_MAXG];
#pragma unroll
    for (int h = 0; h < GQA_MAXG; h++) {
        m[h] = -INFINITY, l[h] = 0;
#pragma unroll
        for (int j = 0; j < ATT_MAXD; j++) {
            const int i = lane + 32 * j;
            qr[h][j] = h < G && i < hd ? q[(size_t)t * nh * hd + (size_t)(g * G + h) * hd + i] : 0.0f;
            acc[h][j] = 0;
        }
    }
    gqa_walk<KV>(qr, G, tk, kvd, (const char *)tk.k + base * es, (const char *)tk.v + base * vs, hd,
                 1.0f / sqrtf((float)hd), s * GQA_WARPS + warp, Z * GQA_WARPS, m, l, acc);
#pragma unroll
    for (int h = 0; h < GQA_MAXG; h++) {
        if (lane == 0) sm_m[warp][h] = m[h], sm_l[warp][h] = l[h];
#pragma unroll
        for (int j = 0; j < ATT_MAXD; j++) sm_acc[warp][h][lane + 32 * j] = acc[h][j];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * hd; idx += blockDim.x) { /* each (head, element): the warps merged */
        const int h = idx / hd, i = idx % hd;
        float mw[GQA_WARPS], lw[GQA_WARPS], f[GQA_WARPS];
        for (int w = 0; w < GQA_WARPS; w++) mw[w] = sm_m[w][h], lw[w] = sm_l[w][h];
        const float L = cm_softmax_merge(mw, lw, GQA_WARPS, f);
        float sum = 0, M = -INFINITY;
        for (int w = 0; w < GQA_WARPS; w++) sum += sm_acc[w][h][i] * f[w], M = mw[w] > M ? mw[w] : M;
        const int head = g * G + h;
        if (Z == 1) {
            o[(size_t)t * nh * hd + (size_t)head * hd + i] = sum / L;
            continue;
        }
        float *pp = part + (((size_t)t * nh + head) * Z + s) * (size_t)(hd + 2);
        if (i == 0) pp[0] = M, pp[1] = L;
        pp[2 + i] = sum;
    }
}

/* A (token, head)'s Z split states merged into its output. */
__global__ void attention_gqa_combine_kernel(const float *part, int nh, int hd, int Z, float *o) {
    pdl_ready();
    const int t = blockIdx.x, h = blockIdx.y;
    const float *pp = part + ((size_t)t * nh + h) * Z * (size_t)(hd + 2);
    float m[GQA_MAXZ], l[GQA_MAXZ], f[GQA_MAXZ];
    for (int s = 0; s < Z; s++) m[s] = pp[(size_t)s * (hd + 2)], l[s] = pp[(size_t)s * (hd + 2) + 1];
    const float L = cm_softmax_merge(m, l, Z, f);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float sum = 0;
        for (int s = 0; s < Z; s++) sum += pp[(size_t)s * (hd + 2) + 2 + i] * f[s];
        o[(size_t)t * nh * hd + (size_t)h * hd + i] = sum / L;
    }
}

bool cu_attention_gqa_ok(int nh, int nkv, int hd) {
    return nkv > 0 && nh % nkv == 0 && nh / nkv <= GQA_MAXG && hd <= 32 * ATT_MAXD;
}

int cu_attention_gqa_splits(int T, int nkv) {
    int z = GQA_BLOCKS / (T * nkv > 0 ? T * nkv : 1);
    return z < 1 ? 1 : z > GQA_MAXZ ? GQA_MAXZ : z;
}

void cu_attention_gqa(cu_q *cq, const float *q, const cu_tok *toks, int T, int nh, int nkv, int hd, int attn_index,
                      int kv_dim_max, float *o, int kv, float *part) {
    const int Z = part ? cu_attention_gqa_splits(T, nkv) : 1;
    const dim3 grid(T, nkv, Z);
    switch (kv) {
    case 0: cu_launch(cq, attention_gqa_kernel<0>, grid, GQA_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o, part); break;
    case 1: cu_launch(cq, attention_gqa_kernel<1>, grid, GQA_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o, part); break;
    case 2: cu_launch(cq, attention_gqa_kernel<2>, grid, GQA_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o, part); break;
    default: cu_launch(cq, attention_gqa_kernel<3>, grid, GQA_WARPS * 32, q, toks, nh, nkv, hd, attn_index, kv_dim_max, o, part); break;
    }
    if (Z > 1) cu_launch(cq, attention_gqa_combine_kernel, dim3(T, nh), 64, (const float *)part, nh, hd, Z, o);
}
