/* blas.cu — the batched products through cuBLASLt (cuda_blas.h; issue 71 item 1): at load, BF16
 * copies of the non-expert linears, dequantized on the host from the file's rows
 * (formats/ggml_types.c's dequantize_row, then rounded to nearest even) a bounded stage at a time
 * and uploaded; in a forward, a product of CU_BLAS_MIN_COLS columns or more over such a weight
 * converts x to BF16 (kernels_ops.cu's cu_to_bf16) and runs one cublasLtMatmul. The GGUF's W is
 * rows x n row-major, that is column-major n x rows: Y (rows x cols) = op(W) X with TRANSA = T,
 * X column-major n x cols (a token's inputs contiguous), Y column-major at leading dimension
 * rows, F32 compute and scale. A plan (descriptor, layouts, the heuristic's algorithm) is kept
 * per shape and alignment, a few dozen at most; a shape the heuristic has no algorithm for is
 * left to the kernels (remembered too). */
#include "blas_moe.h"
#include "cuda_blas.h"
#include "cuda_math.cuh"
extern "C" {
#include "base/error.h"
#include "formats/ggml_types.h"
}

#include <cublasLt.h>
#include <stdlib.h>
#include <string.h>

enum { BLAS_PLANS = 48, STAGE_VALUES = 1 << 20 };
static const size_t WS_BYTES = 32u << 20; /* cuBLASLt's workspace */

struct blas_weight {
    const uint8_t *host; /* the tensor's data in the file's mapping: the key */
    uint16_t *dev;       /* its BF16 copy, rows x n */
};

struct blas_plan {
    int rows, n, cols;
    uint32_t align[4]; /* A B C D: what the heuristic was told */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    bool ok; /* the heuristic gave an algorithm (else the kernels run this shape) */
};

struct cu_blas {
    cublasLtHandle_t lt;
    void *ws;
    blas_weight *w; /* sorted by host */
    int n_w;
    uint16_t *xb; /* x in BF16 */
    size_t xb_cap;
    blas_plan plan[BLAS_PLANS];
    int n_plan, next;
    int status; /* the first refused call's cublasStatus_t since cu_blas_status (0: none) */
    long calls;
    int min_cols; /* cu_bf16_cols() */
};

static void plan_drop(blas_plan *p) {
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->c);
    cublasLtMatmulDescDestroy(p->op);
}

void cu_blas_free(cu_blas *b) {
    if (!b) return;
    for (int i = 0; i < b->n_plan; i++) plan_drop(&b->plan[i]);
    for (int i = 0; i < b->n_w; i++) cudaFree(b->w[i].dev);
    free(b->w);
    cudaFree(b->xb);
    cudaFree(b->ws);
    if (b->lt) cublasLtDestroy(b->lt);
    free(b);
}

static int cmp_weight(const void *x, const void *y) {
    const uint8_t *a = ((const blas_weight *)x)->host, *c = ((const blas_weight *)y)->host;
    return a < c ? -1 : a > c;
}

static const uint16_t *weight_of(const cu_blas *b, const tensor *t) {
    int lo = 0, hi = b->n_w - 1;
    while (t->data && lo <= hi) {
        const int mid = (lo + hi) / 2;
        if (b->w[mid].host == t->data) return b->w[mid].dev;
        if (b->w[mid].host < t->data) lo = mid + 1;
        else hi = mid - 1;
    }
    return nullptr;
}

/* t's rows dequantized and rounded to BF16 a stage at a time, uploaded to dev */
static cudaError_t upload_bf16(const tensor *t, uint16_t *dev, float *f, uint16_t *h) {
    const int64_t n = t->ne[0], rows = t->ne[1];
    const int64_t per = STAGE_VALUES / n > 0 ? STAGE_VALUES / n : 1;
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        const int64_t nr = rows - r0 < per ? rows - r0 : per;
        for (int64_t r = 0; r < nr; r++) dequantize_row(t->type, t->data + (size_t)(r0 + r) * t->row_bytes, f + r * n, n);
        for (int64_t i = 0; i < nr * n; i++) h[i] = (uint16_t)cm_f32_bf16(f[i]);
        const cudaError_t e = cudaMemcpy(dev + (size_t)r0 * n, h, sizeof(uint16_t) * (size_t)(nr * n),
                                         cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* a copy of t (when present, a plain matrix, not copied yet) */
static cudaError_t copy_weight(cu_blas *b, const tensor *t, float *f, uint16_t *h) {
    if (!t->data || t->ne[2] > 1 || weight_of(b, t)) return cudaSuccess;
    blas_weight *w = &b->w[b->n_w];
    w->host = t->data;
    cudaError_t e = cudaMalloc((void **)&w->dev, sizeof(uint16_t) * (size_t)t->ne[0] * (size_t)t->ne[1]);
    if (e != cudaSuccess) return e;
    b->n_w++;
    e = upload_bf16(t, w->dev, f, h);
    qsort(b->w, (size_t)b->n_w, sizeof *b->w, cmp_weight);
    return e;
}

/* layer l's non-expert linears: conv in / out, q k v o, dense gate / up / down (absent ones too) */
enum { LINEARS = 9 };
static void linears(const layer *L, const tensor *t[LINEARS]) {
    const tensor *all[LINEARS] = {&L->conv_in, &L->conv_out, &L->wq,     &L->wk,      &L->wv,
                                  &L->wo,      &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    memcpy(t, all, sizeof all);
}

/* every layer's linears and the output head; the stage holds STAGE_VALUES and one widest row */
static cudaError_t copy_weights(cu_blas *b, const lfm2c_model *m) {
    size_t stage = STAGE_VALUES + (size_t)m->output.ne[0];
    for (int l = 0; l < m->info.n_layer; l++) {
        const tensor *t[LINEARS];
        linears(&m->layers[l], t);
        for (int i = 0; i < LINEARS; i++)
            if ((size_t)t[i]->ne[0] > stage - STAGE_VALUES) stage = STAGE_VALUES + (size_t)t[i]->ne[0];
    }
    float *f = (float *)malloc(sizeof(float) * stage);
    uint16_t *h = (uint16_t *)malloc(sizeof(uint16_t) * stage);
    b->w = (blas_weight *)calloc((size_t)m->info.n_layer * LINEARS + 1, sizeof *b->w);
    cudaError_t e = f && h && b->w ? cudaSuccess : cudaErrorMemoryAllocation;
    for (int l = 0; l < m->info.n_layer && e == cudaSuccess; l++) {
        const tensor *t[LINEARS];
        linears(&m->layers[l], t);
        for (int i = 0; i < LINEARS && e == cudaSuccess; i++) e = copy_weight(b, t[i], f, h);
    }
    if (e == cudaSuccess) e = copy_weight(b, &m->output, f, h);
    free(f);
    free(h);
    return e;
}

int cu_bf16_cols(void) {
    const char *e = getenv("LFM2C_CUDA_BF16_COLS");
    return e && atoi(e) > 0 ? atoi(e) : CU_BLAS_MIN_COLS;
}

int cu_blas_open(const lfm2c_model *m, bool want, cu_blas **out, char *note, size_t note_cap, lfm2c_error *err) {
    *out = nullptr;
    if (!want || !cu_plan_bf16(m, false, note, note_cap)) return 0;
    cu_blas *b = (cu_blas *)calloc(1, sizeof *b);
    if (!b) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    const cublasStatus_t st = cublasLtCreate(&b->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        b->lt = nullptr;
        cu_blas_free(b);
        return lfm2c_set_error(err, LFM2C_EIO, "CUDA: cuBLASLt: cublasLtCreate failed (status %d)", (int)st), -1;
    }
    b->min_cols = cu_bf16_cols();
    cudaError_t e = cudaMalloc(&b->ws, WS_BYTES);
    if (e == cudaSuccess) e = copy_weights(b, m);
    if (e != cudaSuccess) {
        cu_blas_free(b);
        return lfm2c_set_error(err, e == cudaErrorMemoryAllocation ? LFM2C_ENOMEM : LFM2C_EIO,
                               "CUDA: the BF16 copies for cuBLASLt (LFM2C_CUDA_BLAS): %s", cudaGetErrorString(e)),
               -1;
    }
    *out = b;
    return 0;
}

cudaError_t cu_blas_reserve(cu_blas *b, size_t values) {
    if (!b || values <= b->xb_cap) return cudaSuccess;
    cudaFree(b->xb);
    b->xb = nullptr;
    b->xb_cap = 0;
    const cudaError_t e = cudaMalloc((void **)&b->xb, sizeof(uint16_t) * values);
    if (e == cudaSuccess) b->xb_cap = values;
    return e;
}

/* the alignment a pointer has, as cuBLASLt's preferences count it: a power of two up to 256 */
static uint32_t align_of(const void *p) {
    const uintptr_t a = (uintptr_t)p;
    uint32_t k = 256;
    while (k > 1 && a % k) k /= 2;
    return k;
}

static cublasStatus_t plan_make(cu_blas *b, blas_plan *p) {
    const int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const uint64_t ws = WS_BYTES;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (!st) st = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (!st) st = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (!st) st = cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, p->n, p->rows, p->n);
    if (!st) st = cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, p->n, p->cols, p->n);
    if (!st) st = cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, p->rows, p->cols, p->rows);
    if (!st) st = cublasLtMatmulPreferenceCreate(&pref);
    if (!st) st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    const cublasLtMatmulPreferenceAttributes_t al[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4 && !st; i++) st = cublasLtMatmulPreferenceSetAttribute(pref, al[i], &p->align[i], 4);
    if (!st) st = cublasLtMatmulAlgoGetHeuristic(b->lt, p->op, p->a, p->b, p->c, p->c, pref, 1, &res, &found);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (!st && !found) st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (!st) p->algo = res.algo;
    return st;
}

/* the plan of this shape and these alignments: kept, or made (the oldest replaced when full) */
static const blas_plan *plan_for(cu_blas *b, int rows, int n, int cols, const uint32_t align[4]) {
    for (int i = 0; i < b->n_plan; i++) {
        const blas_plan *p = &b->plan[i];
        if (p->rows == rows && p->n == n && p->cols == cols && !memcmp(p->align, align, sizeof p->align)) return p;
    }
    int i = b->n_plan;
    if (b->n_plan < BLAS_PLANS) b->n_plan++;
    else { /* full: the oldest made goes */
        i = b->next;
        b->next = (b->next + 1) % BLAS_PLANS;
        plan_drop(&b->plan[i]);
    }
    blas_plan *p = &b->plan[i];
    memset(p, 0, sizeof *p);
    p->rows = rows, p->n = n, p->cols = cols;
    memcpy(p->align, align, sizeof p->align);
    p->ok = plan_make(b, p) == CUBLAS_STATUS_SUCCESS;
    return p;
}

bool cu_blas_matmul(cu_blas *b, cu_q *cq, const tensor *w, const float *x, int cols, float *y) {
    const uint16_t *wb = b && cols >= b->min_cols ? weight_of(b, w) : nullptr;
    const int n = (int)w->ne[0], rows = (int)w->ne[1];
    if (!wb || (size_t)cols * (size_t)n > b->xb_cap) return false;
    const uint32_t align[4] = {align_of(wb), align_of(b->xb), align_of(y), align_of(y)};
    const blas_plan *p = plan_for(b, rows, n, cols, align);
    if (!p->ok) return false;
    cu_to_bf16(cq, x, (size_t)cols * n, b->xb);
    const float one = 1.0f, zero = 0.0f;
    const cublasStatus_t st = cublasLtMatmul(b->lt, p->op, &one, wb, p->a, b->xb, p->b, &zero, y, p->c, y, p->c,
                                             &p->algo, b->ws, WS_BYTES, cq ? cq->st : nullptr);
    cu_q_other(cq);
    if (st != CUBLAS_STATUS_SUCCESS && !b->status) b->status = (int)st;
    b->calls++;
    return true;
}

int cu_blas_status(cu_blas *b, lfm2c_error *err) {
    if (!b || !b->status) return 0;
    const int st = b->status;
    b->status = 0;
    return lfm2c_set_error(err, LFM2C_EIO, "CUDA: cuBLASLt refused a product (status %d)", st), -1;
}

long cu_blas_calls(const cu_blas *b) { return b ? b->calls : 0; }
