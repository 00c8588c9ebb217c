/* cublasLt.h (test shim) — a host stand-in for the cuBLASLt calls the CUDA backend makes
 * (src/cuda/blas.cu), for tests/cuda/test_cuda_emu.cpp: the same names, signatures and
 * column-major semantics, run on the CPU in stream order (emu_rt::enqueue, so a capture records
 * it). cublasLtMatmul computes D = alpha op(A) op(B) + beta C, op(X) = X or its transpose as the
 * descriptor's TRANSA / TRANSB say, each matrix column-major at its layout's leading dimension;
 * BF16 or F32 operands, F32 compute (every product and sum in float, k in order) and F32 C / D.
 * What a real call refuses is refused here, with the documented status: a layout whose leading
 * dimension is below its rows, shapes that do not chain (op(A) m x k, op(B) k x n, C and D
 * m x n), C and D of different layouts (in place needs the same), a compute or scale type other
 * than 32F, a type pair cuBLASLt has no kernel for (INVALID_VALUE / NOT_SUPPORTED); a pointer
 * not in device memory (emu_rt::is_device over its whole extent) or less aligned than the
 * heuristic was told (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, 256 when unset) or than its
 * element, a workspace smaller than the algorithm's (INVALID_VALUE). */
#ifndef LFM2C_EMU_CUBLASLT_H
#define LFM2C_EMU_CUBLASLT_H
#include "cuda_runtime.h"

#include <stdint.h>
#include <string.h>

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef enum {
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77
} cublasComputeType_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
} cublasLtMatmulDescAttributes_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

struct emu_lt_handle {
    int live;
};
struct emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta, tb;
};
struct emu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct emu_lt_pref {
    uint64_t ws, align[4];
};
typedef emu_lt_handle *cublasLtHandle_t;
typedef emu_lt_desc *cublasLtMatmulDesc_t;
typedef emu_lt_layout *cublasLtMatrixLayout_t;
typedef emu_lt_pref *cublasLtMatmulPreference_t;
/* data[0..3]: the alignments A B C D it assumes; data[4]: its workspace */
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

static inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new emu_lt_handle{1};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
static inline size_t cublasLtGetVersion(void) { return 130000; }

static inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c,
                                                      cudaDataType_t s) {
    *d = new emu_lt_desc{c, s, CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                            const void *buf, size_t n) {
    if (!d || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    int32_t v;
    if (n != sizeof v) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&v, buf, n);
    const bool is_op = v == CUBLAS_OP_N || v == CUBLAS_OP_T;
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
        if (!is_op) return CUBLAS_STATUS_INVALID_VALUE;
        d->ta = (cublasOperation_t)v;
        break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (!is_op) return CUBLAS_STATUS_INVALID_VALUE;
        d->tb = (cublasOperation_t)v;
        break;
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: d->compute = (cublasComputeType_t)v; break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: d->scale = (cudaDataType_t)v; break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows,
                                                        uint64_t cols, int64_t ld) {
    *l = new emu_lt_layout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new emu_lt_pref{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                                  cublasLtMatmulPreferenceAttributes_t a,
                                                                  const void *buf, size_t n) {
    if (!p || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && n == sizeof(uint64_t)) memcpy(&p->ws, buf, n);
    else if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES &&
             n == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, buf, n);
        p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
    } else return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

namespace emu_lt {
static inline size_t elem(cudaDataType_t t) {
    return t == CUDA_R_32F ? 4 : t == CUDA_R_16BF || t == CUDA_R_16F ? 2 : 0;
}
/* the stored matrix's rows and columns after op */
static inline void op_dims(const emu_lt_layout *l, cublasOperation_t op, uint64_t *r, uint64_t *c) {
    *r = op == CUBLAS_OP_N ? l->rows : l->cols;
    *c = op == CUBLAS_OP_N ? l->cols : l->rows;
}
static inline bool layout_ok(const emu_lt_layout *l) {
    return l && elem(l->type) && l->rows && l->cols && l->ld >= (int64_t)l->rows;
}
/* the shapes chain and the types have a kernel: BF16 x BF16 (or F32 x F32) into F32, F32 compute */
static inline cublasStatus_t check(const emu_lt_desc *op, const emu_lt_layout *a, const emu_lt_layout *b,
                                   const emu_lt_layout *c, const emu_lt_layout *d) {
    if (!op || !layout_ok(a) || !layout_ok(b) || !layout_ok(c) || !layout_ok(d)) return CUBLAS_STATUS_INVALID_VALUE;
    if (op->compute != CUBLAS_COMPUTE_32F || op->scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->type != b->type || c->type != CUDA_R_32F || d->type != CUDA_R_32F || a->type == CUDA_R_16F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    uint64_t m, k, k2, n;
    op_dims(a, op->ta, &m, &k);
    op_dims(b, op->tb, &k2, &n);
    if (k != k2 || c->rows != m || c->cols != n || d->rows != m || d->cols != n || c->ld != d->ld)
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
static inline float get(const void *p, cudaDataType_t t, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    uint32_t b = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}
/* bytes a layout's pointer must cover: its last column's rows */
static inline size_t extent(const emu_lt_layout *l) {
    return ((size_t)(l->cols - 1) * (size_t)l->ld + (size_t)l->rows) * elem(l->type);
}
static inline bool aligned(const void *p, uint64_t a, const emu_lt_layout *l) {
    return (uintptr_t)p % (a ? a : 1) == 0 && (uintptr_t)p % elem(l->type) == 0;
}
} // namespace emu_lt

/* One algorithm when the problem is valid, whatever the shapes: it assumes the preference's
 * alignments and needs no workspace. */
static inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op,
                                                            cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                                            cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                                            cublasLtMatmulPreference_t pref, int requested,
                                                            cublasLtMatmulHeuristicResult_t *res, int *found) {
    if (!h || !pref || !res || !found || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    *found = 0;
    const cublasStatus_t st = emu_lt::check(op, a, b, c, d);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    memset(res, 0, sizeof *res);
    for (int i = 0; i < 4; i++) res->algo.data[i] = pref->align[i];
    res->algo.data[4] = 0;
    res->workspaceSize = 0;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha,
                                            const void *A, cublasLtMatrixLayout_t a, const void *B,
                                            cublasLtMatrixLayout_t b, const void *beta, const void *C,
                                            cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                                            const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes, cudaStream_t) {
    if (!h || !alpha || !beta || !algo) return CUBLAS_STATUS_INVALID_VALUE;
    const cublasStatus_t st = emu_lt::check(op, a, b, c, d);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    const float al = *(const float *)alpha, be = *(const float *)beta; /* host pointer mode */
    const void *ptr[4] = {A, B, C, D};
    const emu_lt_layout *lay[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (!emu_rt::is_device(ptr[i], emu_lt::extent(lay[i])) || !emu_lt::aligned(ptr[i], algo->data[i], lay[i]))
            return CUBLAS_STATUS_INVALID_VALUE;
    if (ws_bytes < algo->data[4] || (ws_bytes && !emu_rt::is_device(ws, ws_bytes))) return CUBLAS_STATUS_INVALID_VALUE;
    const emu_lt_layout la = *a, lb = *b, lc = *c;
    const cublasOperation_t ta = op->ta, tb = op->tb;
    emu_rt::enqueue([=] {
        uint64_t m, k, k2, n;
        emu_lt::op_dims(&la, ta, &m, &k);
        emu_lt::op_dims(&lb, tb, &k2, &n);
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) {
                float s = 0;
                for (uint64_t p = 0; p < k; p++) {
                    const size_t ia = ta == CUBLAS_OP_N ? i + p * la.ld : p + i * la.ld;
                    const size_t ib = tb == CUBLAS_OP_N ? p + j * lb.ld : j + p * lb.ld;
                    s += emu_lt::get(A, la.type, ia) * emu_lt::get(B, lb.type, ib);
                }
                const size_t ic = i + j * (size_t)lc.ld;
                float *out = (float *)D + ic;
                *out = al * s + (be != 0 ? be * ((const float *)C)[ic] : 0.0f);
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}
#endif
