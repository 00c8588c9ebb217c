/* kernels_ops.cu — the CUDA kernels between the products: the embedding, the rotation table, the
 * residual add and RMSNorm, the gated short conv and its state, SwiGLU, x rounded to BF16 for
 * cuBLASLt. The per-element math is cuda_math.cuh's; what the kernels' files share is
 * kernels_common.cuh; the launchers are declared in cuda_kernels.h. */
#include "kernels_common.cuh"

/* ---- embedding, rope, norms ------------------------------------------------------------------ */

__global__ void embed_kernel(const uint8_t *w, uint32_t type, size_t row_bytes, int H,
                             const cu_tok *toks, float *x) {
    pdl_ready();
    int t = blockIdx.x;
    const uint8_t *row = w + (size_t)toks[t].token * row_bytes;
    for (int k0 = 8 * threadIdx.x; k0 < H; k0 += 8 * blockDim.x) {
        float v[8];
        cm_dequant8(type, row, k0, v);
        for (int i = 0; i < 8; i++) x[(size_t)t * H + k0 + i] = v[i];
    }
}

void cu_embed(cu_q *cq, const uint8_t *w, uint32_t type, size_t row_bytes, int H,
              const cu_tok *toks, int T, float *x) {
    cu_launch(cq, embed_kernel, T, 128, w, type, row_bytes, H, toks, x);
}

/* cs[t][2i], cs[t][2i+1] = cos, sin of token t's position for pair i */
__global__ void rope_kernel(const cu_tok *toks, int T, int hd, float theta, float *cs) {
    pdl_ready();
    int idx = blockIdx.x * blockDim.x + threadIdx.x, half = hd / 2;
    if (idx >= T * half) return;
    int t = idx / half, i = idx % half;
    cm_rope_cs(toks[t].pos, i, hd, theta, &cs[(size_t)t * hd + 2 * i], &cs[(size_t)t * hd + 2 * i + 1]);
}

void cu_rope_table(cu_q *cq, const cu_tok *toks, int T, int hd, float theta, float *cs) {
    int n = T * (hd / 2);
    cu_launch(cq, rope_kernel, (n + 255) / 256, 256, toks, T, hd, theta, cs);
}

__global__ void add_rmsnorm_kernel(float *x, const float *delta, const float *w, float *y, int H,
                                   float eps, const int *map) {
    pdl_ready();
    const int src = map ? map[blockIdx.x] : blockIdx.x;
    add_rmsnorm_row<NORM_STAGE>(x + (size_t)src * H, delta ? delta + (size_t)src * H : nullptr, w, y + (size_t)blockIdx.x * H, H,
                    eps);
}

void cu_add_rmsnorm(cu_q *cq, float *x, const float *delta, const float *w, float *y,
                    int rows, int H, float eps, const int *map) {
    if (rows > 0) cu_launch(cq, add_rmsnorm_kernel, rows, NORM_THREADS, x, delta, w, y, H, eps, map);
}

/* ---- gated short conv ------------------------------------------------------------------------ */

/* Every (token, channel) at once: the two previous u's come from earlier tokens of the batch
 * (prev1 links) or from the sequence's saved state; the state itself is updated afterwards. */
__global__ void conv_kernel(const float *z, const float *w, const cu_tok *toks, int T, int H,
                            int conv_index, float *o, bool with_state) {
    pdl_ready();
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * H) return;
    int t = idx / H, c = idx % H;
    float *state = toks[t].conv + (size_t)conv_index * 2 * H;
    int p1 = toks[t].prev1, p2 = p1 >= 0 ? toks[p1].prev1 : -1;
    o[(size_t)t * H + c] = cm_conv_elem(z, w, state, t, p1, p2, c, H);
    if (with_state) cm_conv_state_elem(z, state, t, p1, c, H);   /* this thread alone reads that channel */
}

void cu_conv(cu_q *cq, const float *z, const float *w, const cu_tok *toks, int T, int H,
             int conv_index, float *o, bool with_state) {
    int n = T * H;
    cu_launch(cq, conv_kernel, (n + 255) / 256, 256, z, w, toks, T, H, conv_index, o, with_state);
}

/* The new state of each sequence: its last two u's (the older one may still be in the state). */
__global__ void conv_state_kernel(const float *z, const cu_tok *toks, const int *seq_last, int n_seq,
                                  int H, int conv_index) {
    pdl_ready();
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_seq * H) return;
    int t = seq_last[idx / H];
    cm_conv_state_elem(z, toks[t].conv + (size_t)conv_index * 2 * H, t, toks[t].prev1, idx % H, H);
}

void cu_conv_state(cu_q *cq, const float *z, const cu_tok *toks, const int *seq_last,
                   int n_seq, int H, int conv_index) {
    int n = n_seq * H;
    if (n > 0) cu_launch(cq, conv_state_kernel, (n + 255) / 256, 256, z, toks, seq_last, n_seq, H, conv_index);
}

/* ---- feed-forward -------------------------------------------------------------------------- */

__global__ void swiglu_kernel(float *g, const float *u, size_t n) {
    pdl_ready();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] = cm_silu(g[i]) * u[i];
}

void cu_swiglu(cu_q *cq, float *g, const float *u, size_t n) {
    if (n) cu_launch(cq, swiglu_kernel, (unsigned)((n + 255) / 256), 256, g, u, n);
}

/* x to BF16 bits, rounded to nearest even (cm_f32_bf16): cuBLASLt's B operand (blas.cu) */
__global__ void to_bf16_kernel(const float *x, size_t n, uint16_t *y) {
    pdl_ready();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = (uint16_t)cm_f32_bf16(x[i]);
}

void cu_to_bf16(cu_q *cq, const float *x, size_t n, uint16_t *y) {
    if (n) cu_launch(cq, to_bf16_kernel, (unsigned)((n + 255) / 256), 256, x, n, y);
}
