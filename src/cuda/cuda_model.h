/* cuda_model.h — the CUDA backend's own state and what its two files share: the model's device
 * copy, stream, scratch and switches (cu_model), the int scratch's layout, a weight's device
 * address, the profile's stage marks. The device, buffers, upload, sessions and graph capture are
 * backend_cuda.cu's; the model pass that queues the kernels is forward.cu's (the same blocks in
 * the same order as the CPU's cpu/forward.c). */
#ifndef LFM2C_CUDA_MODEL_H
#define LFM2C_CUDA_MODEL_H
extern "C" {
#include "core/gpu_shapes.h"
#include "core/model.h"
}
#include "cuda_kernels.h"

#include <cuda_runtime.h>

struct cu_sampler;
struct cu_prof;
struct cu_blas;
struct cu_moe_blas;

struct cu_scratch {
    int cap; /* tokens */
    float *x, *a, *out, *big, *big2, *hid, *rope, *logits;
    float *router, *wsel, *G, *U, *D;
    float *wpos;           /* LFM2C_CUDA_MOE=grouped: each sorted pair's router weight (scatter's) */
    float *attn_part;      /* LFM2C_CUDA_ATTN=gqa: the splits' states (cu_attention_gqa_part) */
    uint32_t *xh, *xl;     /* x as halves for the K-quant GEMMs (mm_args.xh): xq_cap / 2 words each */
    float *xs;             /* and its sums of 32: xq_cap / 32 */
    size_t xq_cap;         /* values */
    int *ints;             /* sel | col_src | inv | count | start | fill | tiles (3x) | n_tiles | done */
    void *table;           /* device copy of the batch table */
    void *host_table;      /* pinned */
    float *host_logits;    /* pinned */
    const void **host_seq; /* [cap] batch structure, host side */
    int *host_pos, *host_prev;
    size_t table_bytes;
    int logits_rows; /* rows of logits / host_logits (logits_reserve): the tokens with logits */
};

/* The data section of one GGUF file (a split model has one per part) and its device copy. */
struct cu_region {
    const uint8_t *host; /* the section in the file's mapping */
    size_t bytes;
    uint8_t *dev;
};

/* LFM2C_CUDA_MOE: how a batch's experts run (cu_model.moe). KERNELS: the products over the plan's
 * tiles, gate and up apart, SwiGLU, down, the weights applied in the combine (the default);
 * GROUPED: the same tiles with gate + up + SwiGLU in one GEMM where the type has it
 * (cu_mm_glu_gemm) and the router weights in the down GEMM's epilogue (mm_args.y_scale), the
 * combine a plain sum; CUBLAS: cublasGemmGroupedBatchedEx over BF16 copies of the experts
 * (blas.cu), where they were made. Decode steps (a few tokens) keep the GEMVs whatever it says. */
enum { CU_MOE_KERNELS = 0, CU_MOE_GROUPED = 1, CU_MOE_CUBLAS = 2 };

/* LFM2C_CUDA_FUSE's fusions (cu_model.use_fin): which of a decode step's kernels run in the last
 * block of the product before */
enum { FIN_NORM = 1, FIN_ROUTE = 2, FIN_CONV = 4 };

struct cu_model {
    int dev;
    cu_q q;         /* the stream, and whether its kernels may overlap (LFM2C_CUDA_PDL=0: never) */
    cu_region *reg; /* the weights on the device: one region per file of the model */
    int n_reg;
    gpu_widths wd; /* the scratch rows' widths, the KV row (core/gpu_shapes.h) */
    int kv;        /* CU_KV_*: the KV cache's element types (-ctk / -ctv: f16 or f32) */
    cu_scratch s;
    int generation; /* bumped when scratch moves: graphs hold its pointers */
    /* the decode graphs: slot 0 a single token with logits; with LFM2C_CUDA_GRAPH_BUCKETS=1 slot i
     * a decode-only step padded to 2^i tokens (cuda_math.cuh's cm_graph_bucket) */
    cudaGraphExec_t graph[8];
    int graph_generation[8];
    bool use_graph, use_buckets;
    void *pad_k, *pad_v; /* the pad tokens' KV (CM_GRAPH_MAX of them, a position each) and conv state */
    float *pad_conv;
    bool use_tc;     /* GEMMs on the tensor cores (LFM2C_CUDA_TC=0: in float) */
    bool use_kq_mma; /* K-quant GEMMs over the quants (LFM2C_CUDA_TC=wmma: dequantized) */
    bool use_x_lo;   /* their x as high + low halves (LFM2C_CUDA_TC=half: one half) */
    /* Q4_K's GEMM with the weights straight into registers (LFM2C_CUDA_TC=mma: through shared memory) */
    bool use_kq_reg;
    bool use_glu; /* a token's gate, up and SwiGLU in one launch (LFM2C_CUDA_GLU=0: three) */
    /* LFM2C_CUDA_FUSE: which of a decode step's add + norm, routing, conv run in the GEMV before (FIN_*) */
    int use_fin;
    int moe;               /* CU_MOE_*: LFM2C_CUDA_MOE (LFM2C_CUDA_BF16=1 where unset: cublas) */
    int bf16_cols;         /* a forward of this many tokens or more takes the BF16 paths (cu_bf16_cols) */
    bool use_gqa;          /* attention a block per KV head and split (LFM2C_CUDA_ATTN=gqa), where the shapes allow */
    cudaEvent_t pass[2];   /* each forward's start and end: the device time (lfm2c.h's profile) */
    cu_prof *prof;         /* LFM2C_CUDA_PROFILE=1: each stage's time */
    cu_sampler *smp;       /* LFM2C_CUDA_SAMPLE=1: decode_batch_sample's rows sampled here (sample_step.cu) */
    cu_blas *blas;         /* LFM2C_CUDA_BLAS=1: batches' products over BF16 copies in cuBLASLt (blas.cu) */
    cu_moe_blas *moe_blas; /* LFM2C_CUDA_MOE=cublas: the experts' BF16 copies in cuBLAS (blas_moe.cu) */
    char note[320];        /* what the open decided against what was asked (cuda_backend_note) */
};

/* The device address of a weight: its offset in the data section of the file (part) it lies in. */
static inline const uint8_t *dev_ptr(const cu_model *cm, const tensor *t) {
    if (!t->data) return nullptr;
    for (int i = 0; i < cm->n_reg; i++) {
        const cu_region *r = &cm->reg[i];
        if (t->data >= r->host && t->data < r->host + r->bytes) return r->dev + (t->data - r->host);
    }
    return nullptr;
}

/* the int scratch's layout for cap tokens: offsets in ints */
struct int_layout {
    size_t sel, col_src, inv, count, start, fill, te, tc, tn, nt, done, total;
};

static inline int_layout ints_for(const lfm2c_model_info *in, int cap) {
    int_layout L;
    size_t pairs = (size_t)cap * (in->n_expert_used ? in->n_expert_used : 1);
    size_t E = in->n_expert ? in->n_expert : 1, tiles = pairs + E;
    L.sel = 0;
    L.col_src = L.sel + pairs;
    L.inv = L.col_src + pairs;
    L.count = L.inv + pairs;
    L.start = L.count + E;
    L.fill = L.start + E + 1;
    L.te = L.fill + E;
    L.tc = L.te + tiles;
    L.tn = L.tc + tiles;
    L.nt = L.tn + tiles;
    L.done = L.nt + 1;
    L.total = L.done + 1;
    return L;
}

/* With LFM2C_CUDA_PROFILE=1: an event on the stream that ends the stage named tag
 * (backend_cuda.cu); nothing otherwise. */
void cu_prof_mark(cu_model *cm, const char *tag);
static inline void prof_mark(cu_model *cm, const char *tag) {
    if (cm->prof) cu_prof_mark(cm, tag);
}

/* Queues every kernel of one forward of T tokens (n_seq sequences, n_out rows of logits) over a
 * batch whose table is in cm->s.host_table, ending with the logits' copy to the host (or the
 * device sampler's rows). forward.cu. */
void cu_enqueue(lfm2c_model *m, cu_model *cm, int T, int n_seq, int n_out);
#endif
