/* cuda_kernels.h — launchers of the CUDA kernels (kernels_{mm,attn,moe,ops}.cu), called by backend_cuda.cu.
 * Every launcher queues work on the given queue's stream and returns at once; pointers are device
 * pointers unless named host_*. */
#ifndef LFM2C_CUDA_KERNELS_H
#define LFM2C_CUDA_KERNELS_H
#include <cuda_runtime.h>
#include <stdint.h>
#include <stddef.h>

/* Where launches go: a stream, and whether a kernel may start while the kernel before it on the
 * stream is still running (programmatic dependent launch, compute capability 9.0 and up: each
 * kernel waits for its predecessor with griddepcontrol.wait before it touches what that one
 * writes, and may read weights before). chained: the last work queued was one of these launches
 * (the next one may overlap it); whoever queues anything else (a copy, a memset) clears it. A
 * NULL queue: the default stream, no overlap. */
struct cu_q {
    cudaStream_t st;
    bool pdl, chained;
};
static inline void cu_q_other(cu_q *cq) {
    if (cq) cq->chained = false;
}

/* One token of a batch as the kernels see it (uploaded once per forward). */
struct cu_tok {
    void *k, *v; /* the session's KV cache: [n_attn][kv_cap][kv_dim_max] of float or half bits (kv) */
    float *conv; /* the session's conv state: [n_conv][2][n_embd] */
    int token, pos;
    int prev1; /* index in the batch of the same sequence's previous token, or -1 */
    int kv_cap;
};

/* A single token's routing: its k of E experts from the router's logits (bias added for the
 * choice only), their weights, and the one-column tiles and scatter of the experts' products. */
struct cu_route1 {
    const float *bias;
    int E, k;
    int *sel;
    float *wsel;
    int *tile_e, *tile_c0, *tile_n, *n_tiles, *col_src, *inv;
};

/* The residual add and the next RMSNorm of a decode step, done by the last block of the one-column
 * GEMV that makes the layer's output instead of by a kernel of its own: x += y (inv: x += the sum
 * over the k pairs j of wsel[j] * y row inv[j], the experts combined), then out = rmsnorm(x) * w.
 * done counts the GEMV's finished blocks (0 before and after each launch). */
struct cu_fin {
    int *done;
    float *x;
    const float *w;
    float *out;
    int H;
    float eps;
    const float *wsel;
    const int *inv;
    int k;
    cu_route1 route; /* route.sel: instead of the add and norm, the routing of the logits made (y) */
    /* conv_o: instead, the gated short conv of the conv layer conv_index's in-projection made (y,
     * one token: rows B | C | X of H each), into conv_o, and the token's conv state updated */
    float *conv_o;
    const float *conv_w;
    const cu_tok *toks;
    int conv_index;
};

/* A matrix product y[col * ldy + r] = W_e[r] · x[src(col)] for rows r < rows; with w_up (an up
 * matrix of W's type and shape), y = silu(W_e[r] · x) * (U_e[r] · x): the gate, the up and the
 * SwiGLU in one launch, for gemv tiles of one column only (cu_mm_one_column); likewise fin.
 * Dense: e = 0, columns 0..ncols. Grouped (MoE): column tiles (expert, first column, count)
 * come from the device plan, *n_tiles of them (at most max_tiles). */
struct mm_args {
    const uint8_t *w, *w_up;
    uint32_t type;
    int n, rows;
    size_t row_bytes, expert_stride;
    const float *x;
    int ldx;
    const int *col_src; /* x row of each column, NULL: the column itself */
    float *y;
    int ldy;
    int ncols;
    const int *tile_e, *tile_c0, *tile_n, *n_tiles; /* NULL for dense */
    int max_tiles;
    int tile_width; /* grouped: the plan's most columns per tile */
    bool tc;        /* GEMM on the tensor cores (gemm_tc_kernel), else in float (gemm_kernel) */
    bool kq_mma;    /* with tc: Q4_K / Q5_K / Q6_K weights multiplied as quants (gemm_kq_mma_kernel) */
    bool x_lo;      /* kq_mma: x as a high and a low half (about float's precision), else one half */
    bool kq_reg;    /* with tc: Q4_K weights from memory into mma.sync's registers (gemm_q4k_reg_kernel) */
    /* kq_mma: room for x's rows as halves, split once for all row tiles (NULL: each tile splits
     * its own): xh, xl xq_cap / 2 words each, xs xq_cap / 32 sums; x_rows, the rows of x that
     * col_src points into (grouped products; dense ones read ncols) */
    uint32_t *xh, *xl;
    float *xs;
    size_t xq_cap;
    int x_rows;
    cu_fin fin; /* fin.done: the add and norm after the product (one-column gemv tiles only) */
    /* GEMM tiles: each output column times y_scale[column] (NULL: as it is): the experts' down
     * products over the sorted pairs, each by its router weight (scatter's wpos) */
    const float *y_scale;
};

enum { CU_GEMV_COLS = 8, CU_GEMM_COLS = 32, CU_GEMV_MAX_ROWS = 64 };

/* gemv: warp per row, up to 8 columns per tile (decode); else the tiled GEMM. */
void cu_matmul(cu_q *cq, const mm_args *a, bool gemv);
/* Whether the GEMM (gemv false) of a takes w_up too (gate + up + SwiGLU in one launch): Q4_K's
 * register GEMM; other types run the two products and cu_swiglu. */
bool cu_mm_glu_gemm(const mm_args *a);
/* Whether cu_matmul(a, gemv) runs tiles of one column (a single token, or the pairs of a single
 * token, each its own expert): the gemvs without the other columns' registers, and the only ones
 * that take w_up. */
static inline bool cu_mm_one_column(const mm_args *a, bool gemv) {
    return gemv && (a->tile_e ? a->tile_width == 1 : a->ncols == 1);
}
void cu_embed(cu_q *cq, const uint8_t *w, uint32_t type, size_t row_bytes, int H, const cu_tok *toks, int T, float *x);
void cu_rope_table(cu_q *cq, const cu_tok *toks, int T, int hd, float theta, float *cs);
/* y[i] = rmsnorm(x[src] += delta[src]) * w for i < rows; src = map ? map[i] : i */
void cu_add_rmsnorm(cu_q *cq, float *x, const float *delta, const float *w, float *y, int rows, int H, float eps,
                    const int *map);
/* The KV cache's element types: CU_KV_K16 set, K holds half bits (else float); CU_KV_V16, V. */
enum { CU_KV_K16 = 1, CU_KV_V16 = 2 };
void cu_qk_norm_rope_store(cu_q *cq, float *q, const float *k, const float *v, const float *qn, const float *kn,
                           const float *cs, const cu_tok *toks, int T, int nh, int nkv, int hd, int attn_index,
                           int kv_dim_max, float eps, int kv);
void cu_attention(cu_q *cq, const float *q, const cu_tok *toks, int T, int nh, int nkv, int hd, int attn_index,
                  int kv_dim_max, float *o, int kv);
/* The same attention with a block per (token, KV head, split) that reads each K and V row once
 * for the KV head's query heads (LFM2C_CUDA_ATTN=gqa): where cu_attention_gqa_ok (at most 4 query
 * heads a KV head, head_dim <= 256). part: room for the splits' states (cu_attention_gqa_part
 * floats), NULL: one split. */
bool cu_attention_gqa_ok(int nh, int nkv, int hd);
/* the splits a batch of T tokens takes (so that T x nkv x splits fills about 128 blocks, at most 16) */
int cu_attention_gqa_splits(int T, int nkv);
static inline size_t cu_attention_gqa_part(int nh, int hd) { return (size_t)128 * (size_t)nh * (size_t)(hd + 2); }
void cu_attention_gqa(cu_q *cq, const float *q, const cu_tok *toks, int T, int nh, int nkv, int hd, int attn_index,
                      int kv_dim_max, float *o, int kv, float *part);
/* with_state: every token is its sequence's only one in the batch, and its thread also writes the
 * sequence's new state (cu_conv_state is then not needed) */
void cu_conv(cu_q *cq, const float *z, const float *w, const cu_tok *toks, int T, int H, int conv_index, float *o,
             bool with_state);
void cu_conv_state(cu_q *cq, const float *z, const cu_tok *toks, const int *seq_last, int n_seq, int H, int conv_index);
void cu_swiglu(cu_q *cq, float *g, const float *u, size_t n);
/* y[i] = x[i] as BF16 bits (round to nearest even), n values: cuBLASLt's input (blas.cu) */
void cu_to_bf16(cu_q *cq, const float *x, size_t n, uint16_t *y);
/* BF16 rows for cuBLAS (blas_moe.cu): rows x n weights dequantized (n a multiple of 8); x's rows
 * src[i] gathered; silu(g) * u in place; back to float */
void cu_dequant_bf16(cu_q *cq, const uint8_t *w, uint32_t type, size_t row_bytes, int n, size_t rows, uint16_t *out);
void cu_gather_bf16(cu_q *cq, const float *x, int ldx, const int *src, int rows, int n, uint16_t *out);
void cu_swiglu_bf16(cu_q *cq, uint16_t *g, const uint16_t *u, size_t n);
void cu_bf16_to_f32(cu_q *cq, const uint16_t *x, size_t n, float *y);
/* routing + plan + scatter: fills sel/wsel [T*k], tiles, col_src (sorted pair → token), inv
 * (pair → sorted position). count, fill: [E] scratch. */
/* Whether a batch of T tokens and tiles of width columns is routed by one warp (cu_route1) */
bool cu_moe_route1_ok(int T, int width, int E, int k);
void cu_moe_route(cu_q *cq, const float *logits, const float *bias, int T, int E, int k, int width, int *sel,
                  float *wsel, int *count, int *start, int *fill, int *tile_e, int *tile_c0, int *tile_n, int *n_tiles,
                  int *col_src, int *inv, float *wpos);
/* y[i] = rmsnorm(x[src] += sum_j wsel[src][j] * D[inv[src][j]]) * w: the experts' outputs combined
 * into the residual, then the next norm (cu_add_rmsnorm's rows and map); wsel NULL: D's rows are
 * weighted already (mm_args.y_scale), summed as they are */
void cu_moe_combine_add_rmsnorm(cu_q *cq, float *x, const float *D, const float *wsel, const int *inv, int k,
                                const float *w, float *y, int rows, int H, float eps, const int *map);
#endif
