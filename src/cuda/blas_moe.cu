/* blas_moe.cu — a batch's experts through cublasGemmGroupedBatchedEx (LFM2C_CUDA_MOE=cublas, off by
 * default until gpu_check.sh's throughput stage has timed it beside the kernels: docs/CUDA.md),
 * over BF16 copies of every MoE layer's gate, up and down experts made at load on the device
 * (kernels_moe.cu's cu_dequant_bf16 from the uploaded weights), when the memory plan (core/mem_plan.h)
 * leaves room for them beside the weights as stored and the KV cache of the slots asked for
 * (LFM2C_CUDA_SLOTS, LFM2C_CUDA_CTX: lfm2c serve sets them from -np and -c; $LFM2C_GPU_MEM_CAP
 * caps the card). In a forward of a batch past the GEMVs, after the routing: x's rows gathered
 * in expert order as BF16, the experts' token counts read back (one wait a layer: the grouped
 * call takes its sizes on the host), one grouped call for every expert's gate and up (a group an
 * expert and kind), SwiGLU, one for the downs, the rows back to float for the combine. A call
 * the library refuses leaves that layer to the kernels and is remembered (cu_moe_blas_status). */
#include "blas_moe.h"
#include "cuda_math.cuh"
#include "cuda_model.h"
extern "C" {
#include "base/error.h"
#include "core/mem_plan.h"
}

#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cu_moe_blas {
    cublasHandle_t h;
    int n_layer, E, H, Fe;
    uint16_t **w;             /* [n_layer * 3]: the layer's gate, up, down experts (NULL: not an MoE layer) */
    uint16_t *xs, *g, *u, *d; /* BF16 rows of the sorted pairs: x [H], gate and up [Fe], down [H] */
    size_t cap;               /* pairs */
    const void **hp;          /* pinned: A | B | C pointers of the two calls (two regions of 3 x 2E) */
    void **dp;                /* their device copy */
    int *cnt;                 /* pinned: the experts' pair counts */
    int *gi;                  /* host: the groups' m | n | k | lda | ldb | ldc | size, 2E each */
    cublasOperation_t *ta, *tb;
    float *al, *be;
    long calls;
    int status; /* the first refused call's cublasStatus_t (0: none) */
};

bool cu_plan_bf16(const lfm2c_model *m, bool experts, char *why, size_t cap) {
    const char *what = experts ? "LFM2C_CUDA_MOE=cublas: the experts'" : "LFM2C_CUDA_BLAS=1: the non-expert linears'";
    const char *then = experts ? "the experts run on the kernels" : "their products run on the kernels";
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
        cudaGetLastError();
        snprintf(why, cap, "%s BF16 copies not made: the device's free memory is unknown; %s", what, then);
        return false;
    }
    const char *sl = getenv("LFM2C_CUDA_SLOTS"), *cx = getenv("LFM2C_CUDA_CTX");
    mem_shapes sh;
    mem_shapes_of(m, &sh);
    const mem_request rq = {(uint64_t)f,
                            lfm2c_parse_size(getenv("LFM2C_GPU_MEM_CAP")),
                            sl && atoi(sl) > 0 ? atoi(sl) : 1,
                            cx && atoi(cx) > 0 ? atoi(cx) : 4096,
                            m->type_k == LFM2C_KV_F32 && m->type_v == LFM2C_KV_F32 ? LFM2C_KV_F32 : LFM2C_KV_F16,
                            2048};
    mem_plan p;
    mem_plan_make(&sh, &rq, &p);
    if (experts ? p.bf16_experts : p.bf16_dense) return true;
    snprintf(why, cap, "%s BF16 copies (%.0f MiB) left out by the memory plan (%d slots of %d positions, %.0f MiB to "
             "plan with): %s",
             what, (double)(experts ? p.experts_bf16 : p.dense_bf16) / (1u << 20), rq.slots, rq.ctx,
             (double)p.budget / (1u << 20), then);
    return false;
}

void cu_moe_blas_free(cu_moe_blas *b) {
    if (!b) return;
    for (int i = 0; b->w && i < 3 * b->n_layer; i++) cudaFree(b->w[i]);
    free(b->w), free(b->gi), free(b->ta), free(b->tb), free(b->al), free(b->be);
    cudaFreeHost(b->hp), cudaFreeHost(b->cnt), cudaFree(b->dp);
    cudaFree(b->xs), cudaFree(b->g), cudaFree(b->u), cudaFree(b->d);
    if (b->h) cublasDestroy(b->h);
    free(b);
}

/* the BF16 copy of expert tensor t (E matrices of rows x n), dequantized on the device */
static cudaError_t copy_experts(cu_model *cm, const tensor *t, uint16_t **out) {
    const size_t rows = (size_t)t->ne[1] * (size_t)t->ne[2];
    cudaError_t e = cudaMalloc((void **)out, sizeof(uint16_t) * rows * (size_t)t->ne[0]);
    if (e == cudaSuccess) cu_dequant_bf16(&cm->q, dev_ptr(cm, t), t->type, t->row_bytes, (int)t->ne[0], rows, *out);
    cu_q_other(&cm->q);
    return e == cudaSuccess ? cudaGetLastError() : e;
}

/* the host arrays of 2E groups and the pinned / device pointer arrays */
static cudaError_t alloc_groups(cu_moe_blas *b) {
    const size_t G = 2 * (size_t)b->E;
    b->gi = (int *)malloc(sizeof(int) * 7 * G); /* m | n | k | lda | ldb | ldc | size */
    b->ta = (cublasOperation_t *)malloc(sizeof(cublasOperation_t) * G);
    b->tb = (cublasOperation_t *)malloc(sizeof(cublasOperation_t) * G);
    b->al = (float *)malloc(sizeof(float) * G);
    b->be = (float *)malloc(sizeof(float) * G);
    if (!b->gi || !b->ta || !b->tb || !b->al || !b->be) return cudaErrorMemoryAllocation;
    cudaError_t e = cudaMallocHost((void **)&b->hp, sizeof(void *) * 6 * G);
    if (e == cudaSuccess) e = cudaMalloc((void **)&b->dp, sizeof(void *) * 6 * G);
    if (e == cudaSuccess) e = cudaMallocHost((void **)&b->cnt, sizeof(int) * (size_t)b->E);
    return e;
}

int cu_moe_blas_open(lfm2c_model *m, cu_model *cm, cu_moe_blas **out, char *note, size_t note_cap,
                     lfm2c_error *err) {
    *out = nullptr;
    const lfm2c_model_info *in = &m->info;
    if (!in->n_expert || !cu_plan_bf16(m, true, note, note_cap)) return 0;
    cu_moe_blas *b = (cu_moe_blas *)calloc(1, sizeof *b);
    if (!b) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    b->n_layer = in->n_layer, b->E = in->n_expert, b->H = in->n_embd, b->Fe = cm->wd.ff_exp;
    cudaError_t e = cublasCreate(&b->h) == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorInitializationError;
    if (e != cudaSuccess) b->h = nullptr;
    if (e == cudaSuccess && cublasSetStream(b->h, cm->q.st) != CUBLAS_STATUS_SUCCESS) e = cudaErrorInvalidValue;
    b->w = (uint16_t **)calloc(3 * (size_t)in->n_layer, sizeof *b->w);
    if (e == cudaSuccess && !b->w) e = cudaErrorMemoryAllocation;
    for (int l = 0; l < in->n_layer && e == cudaSuccess; l++) {
        const layer *L = &m->layers[l];
        if (!L->is_moe) continue;
        const tensor *t[3] = {&L->gate_exps, &L->up_exps, &L->down_exps};
        for (int i = 0; i < 3 && e == cudaSuccess; i++)
            e = t[i]->ne[0] % 8 ? cudaErrorNotSupported : copy_experts(cm, t[i], &b->w[3 * l + i]);
    }
    if (e == cudaSuccess) e = alloc_groups(b);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cm->q.st);
    if (e != cudaSuccess) {
        cu_moe_blas_free(b);
        return lfm2c_set_error(err, e == cudaErrorMemoryAllocation ? LFM2C_ENOMEM : LFM2C_EIO,
                               "CUDA: the experts' BF16 copies for cuBLAS (LFM2C_CUDA_MOE=cublas): %s",
                               cudaGetErrorString(e)),
               -1;
    }
    *out = b;
    return 0;
}

/* BF16 rows for n pairs */
static bool reserve(cu_moe_blas *b, size_t n) {
    if (n <= b->cap) return true;
    cudaFree(b->xs), cudaFree(b->g), cudaFree(b->u), cudaFree(b->d);
    b->xs = b->g = b->u = b->d = nullptr;
    b->cap = 0;
    size_t c = 64;
    while (c < n) c *= 2;
    const size_t H = (size_t)b->H, F = (size_t)b->Fe;
    cudaError_t e = cudaMalloc((void **)&b->xs, 2 * c * H);
    if (e == cudaSuccess) e = cudaMalloc((void **)&b->g, 2 * c * F);
    if (e == cudaSuccess) e = cudaMalloc((void **)&b->u, 2 * c * F);
    if (e == cudaSuccess) e = cudaMalloc((void **)&b->d, 2 * c * H);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    b->cap = c;
    return true;
}

/* One grouped call over the experts with pairs (region r of the pointer arrays): kind 0 the gate
 * and up products (a group an expert and matrix), 1 the down products. W (rows x n row-major) is
 * column-major n x rows: op(A) = W^T; a pair's rows of x / g are its columns of B; C's columns
 * are the pairs' output rows. */
static cublasStatus_t grouped(cu_moe_blas *b, cu_q *cq, int l, int kind, int r) {
    const int E = b->E, H = b->H, F = b->Fe, G2 = 2 * E;
    const void **A = b->hp + (size_t)r * 3 * G2, **B = A + G2, **C = B + G2;
    int *gm = b->gi, *gn = gm + G2, *gk = gn + G2, *lda = gk + G2, *ldb = lda + G2, *ldc = ldb + G2, *gs = ldc + G2;
    int g = 0, start = 0;
    for (int e = 0; e < E; start += b->cnt[e], e++) {
        if (!b->cnt[e]) continue;
        for (int h = 0; h < (kind ? 1 : 2); h++, g++) {
            const uint16_t *W = b->w[3 * l + (kind ? 2 : h)];
            gm[g] = kind ? H : F, gn[g] = b->cnt[e], gk[g] = kind ? F : H;
            lda[g] = ldb[g] = gk[g], ldc[g] = gm[g], gs[g] = 1;
            b->ta[g] = CUBLAS_OP_T, b->tb[g] = CUBLAS_OP_N, b->al[g] = 1.0f, b->be[g] = 0.0f;
            A[g] = W + (size_t)e * gm[g] * gk[g];
            B[g] = kind ? b->g + (size_t)start * F : b->xs + (size_t)start * H;
            C[g] = kind ? b->d + (size_t)start * H : (h ? b->u : b->g) + (size_t)start * F;
        }
    }
    void **dA = b->dp + (size_t)r * 3 * G2;
    cudaMemcpyAsync(dA, A, sizeof(void *) * 3 * G2, cudaMemcpyHostToDevice, cq->st);
    cu_q_other(cq);
    const cublasStatus_t st = cublasGemmGroupedBatchedEx(b->h, b->ta, b->tb, gm, gn, gk, b->al, (const void *const *)dA,
                                                         CUDA_R_16BF, lda, (const void *const *)(dA + G2), CUDA_R_16BF,
                                                         ldb, b->be, dA + 2 * G2, CUDA_R_16BF, ldc, g, gs,
                                                         CUBLAS_COMPUTE_32F);
    b->calls++;
    return st;
}

bool cu_moe_blas_ffn(cu_moe_blas *b, cu_q *cq, int l, const float *x, int T, int k, const int *count,
                     const int *col_src, float *D) {
    if (!b || !b->w[3 * l] || b->status) return false;
    const size_t n = (size_t)T * k, H = (size_t)b->H, F = (size_t)b->Fe;
    if (!reserve(b, n)) return false;
    /* the counts on the host: the grouped call's sizes (the stream's work so far waited for) */
    cudaMemcpyAsync(b->cnt, count, sizeof(int) * (size_t)b->E, cudaMemcpyDeviceToHost, cq->st);
    cu_q_other(cq);
    if (cudaStreamSynchronize(cq->st) != cudaSuccess) return false;
    cu_gather_bf16(cq, x, b->H, col_src, (int)n, b->H, b->xs);
    cublasStatus_t st = grouped(b, cq, l, 0, 0);
    if (st == CUBLAS_STATUS_SUCCESS) {
        cu_q_other(cq);
        cu_swiglu_bf16(cq, b->g, b->u, n * F);
        st = grouped(b, cq, l, 1, 1);
    }
    cu_q_other(cq);
    if (st != CUBLAS_STATUS_SUCCESS) { /* nothing of the layer's output made: the kernels take it */
        b->status = (int)st;
        return false;
    }
    cu_bf16_to_f32(cq, b->d, n * H, D);
    return true;
}

int cu_moe_blas_status(const cu_moe_blas *b) { return b ? b->status : 0; }
long cu_moe_blas_calls(const cu_moe_blas *b) { return b ? b->calls : 0; }
