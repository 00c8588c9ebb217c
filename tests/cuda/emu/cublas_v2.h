/* cublas_v2.h (test shim) — a host stand-in for the cuBLAS calls the CUDA backend makes beside
 * cuBLASLt's (src/cuda/blas.cu: the experts' products of LFM2C_CUDA_MOE=cublas), for
 * tests/cuda/test_cuda_emu.cpp: the same names, signatures and column-major semantics, run on the
 * CPU in stream order (emu_rt::enqueue, so a capture records it). Its types are cublasLt.h's.
 *
 * cublasGemmGroupedBatchedEx: group g (group_count of them) is group_size[g] problems of the same
 * transa / transb / m / n / k / lda / ldb / ldc / alpha / beta (host arrays of group_count), each
 * C = alpha op(A) op(B) + beta C, the problems' A, B and C pointers in device arrays of
 * problem_count (Aarray, Barray, Carray: read when the call runs, in stream order, as the device
 * reads them), every product and sum in float, k in order, C rounded to its type. Refused as the
 * library refuses: a negative size or group size, a leading dimension under its matrix's rows,
 * an operation other than N / T (INVALID_VALUE); a type combination other than A = B = C in BF16,
 * F16 or F32 with F32 compute (NOT_SUPPORTED: BF16 in, F32 out is not offered for groups); the
 * pointer arrays not in device memory, alpha or beta in device memory under the host pointer mode
 * (INVALID_VALUE); a matrix pointer outside device memory or less aligned than its element, read
 * only when the call runs, is a device-side error (emu_rt::device_error), as an illegal address is
 * on a GPU. */
#ifndef LFM2C_EMU_CUBLAS_V2_H
#define LFM2C_EMU_CUBLAS_V2_H
#include "cublasLt.h"
#include "cuda_fp16.h"

#include <stdint.h>
#include <string.h>

struct emu_blas_handle {
    int live;
    long grouped_calls, grouped_problems; /* the tests' count of what ran */
};
typedef emu_blas_handle *cublasHandle_t;
typedef enum { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 } cublasPointerMode_t;

static inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new emu_blas_handle{1, 0, 0};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t) {
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

namespace emu_blas {
/* x rounded to BF16 (to nearest, ties to even) */
static inline uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)(u >> 16 | 0x40); /* a quiet NaN */
    u += 0x7FFFu + (u >> 16 & 1);
    return (uint16_t)(u >> 16);
}
static inline uint16_t to_f16(float x) { return __half_as_ushort(__float2half_rn(x)); }
static inline float get(const void *p, cudaDataType_t t, size_t i) {
    if (t == CUDA_R_16F) return __half2float(__ushort_as_half(((const uint16_t *)p)[i]));
    return emu_lt::get(p, t, i);
}
static inline void put(void *p, cudaDataType_t t, size_t i, float v) {
    if (t == CUDA_R_32F) ((float *)p)[i] = v;
    else ((uint16_t *)p)[i] = t == CUDA_R_16BF ? to_bf16(v) : to_f16(v);
}
/* a problem's matrix: op-free rows x cols at leading dimension ld, in device memory and aligned */
static inline bool mat_ok(const void *p, cudaDataType_t t, int rows, int cols, int ld) {
    const size_t e = emu_lt::elem(t);
    if (!rows || !cols) return true;
    return (uintptr_t)p % e == 0 && emu_rt::is_device(p, ((size_t)(cols - 1) * ld + rows) * e);
}
struct group {
    cublasOperation_t ta, tb;
    int m, n, k, lda, ldb, ldc, size;
    float alpha, beta;
};
} // namespace emu_blas

static inline cublasStatus_t cublasGemmGroupedBatchedEx(
    cublasHandle_t handle, const cublasOperation_t transa_array[], const cublasOperation_t transb_array[],
    const int m_array[], const int n_array[], const int k_array[], const void *alpha_array, const void *const Aarray[],
    cudaDataType_t Atype, const int lda_array[], const void *const Barray[], cudaDataType_t Btype,
    const int ldb_array[], const void *beta_array, void *const Carray[], cudaDataType_t Ctype, const int ldc_array[],
    int group_count, const int group_size[], cublasComputeType_t computeType) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (group_count < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (Atype != Btype || Atype != Ctype || !emu_lt::elem(Atype) ||
        !(computeType == CUBLAS_COMPUTE_32F || (computeType == CUBLAS_COMPUTE_32F_FAST_TF32 && Atype == CUDA_R_32F)))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!group_count) return CUBLAS_STATUS_SUCCESS;
    if (emu_rt::is_device(alpha_array, 4) || emu_rt::is_device(beta_array, 4)) return CUBLAS_STATUS_INVALID_VALUE;
    std::vector<emu_blas::group> gs((size_t)group_count);
    size_t problems = 0;
    for (int g = 0; g < group_count; g++) {
        emu_blas::group &q = gs[(size_t)g];
        q = {transa_array[g],
             transb_array[g],
             m_array[g],
             n_array[g],
             k_array[g],
             lda_array[g],
             ldb_array[g],
             ldc_array[g],
             group_size[g],
             ((const float *)alpha_array)[g],
             ((const float *)beta_array)[g]};
        const bool ops = (q.ta == CUBLAS_OP_N || q.ta == CUBLAS_OP_T) && (q.tb == CUBLAS_OP_N || q.tb == CUBLAS_OP_T);
        const int ar = q.ta == CUBLAS_OP_N ? q.m : q.k, br = q.tb == CUBLAS_OP_N ? q.k : q.n;
        if (!ops || q.m < 0 || q.n < 0 || q.k < 0 || q.size < 0 || q.lda < (ar > 1 ? ar : 1) ||
            q.ldb < (br > 1 ? br : 1) || q.ldc < (q.m > 1 ? q.m : 1))
            return CUBLAS_STATUS_INVALID_VALUE;
        problems += (size_t)q.size;
    }
    const size_t pb = problems * sizeof(void *);
    if (problems && (!emu_rt::is_device(Aarray, pb) || !emu_rt::is_device(Barray, pb) ||
                     !emu_rt::is_device((const void *)Carray, pb)))
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->grouped_calls++;
    handle->grouped_problems += (long)problems;
    const cudaDataType_t t = Atype;
    emu_rt::enqueue([=] {
        size_t i = 0;
        for (const emu_blas::group &q : gs)
            for (int j = 0; j < q.size; j++, i++) {
                const void *A = Aarray[i], *B = Barray[i];
                void *C = Carray[i];
                const int ar = q.ta == CUBLAS_OP_N ? q.m : q.k, br = q.tb == CUBLAS_OP_N ? q.k : q.n;
                if (!emu_blas::mat_ok(A, t, ar, q.ta == CUBLAS_OP_N ? q.k : q.m, q.lda) ||
                    !emu_blas::mat_ok(B, t, br, q.tb == CUBLAS_OP_N ? q.n : q.k, q.ldb) ||
                    !emu_blas::mat_ok(C, t, q.m, q.n, q.ldc)) {
                    emu_rt::device_error("cublasGemmGroupedBatchedEx: a matrix outside device memory or misaligned");
                    return;
                }
                for (int c = 0; c < q.n; c++)
                    for (int r = 0; r < q.m; r++) {
                        float s = 0;
                        for (int p = 0; p < q.k; p++) {
                            const size_t ia = q.ta == CUBLAS_OP_N ? r + (size_t)p * q.lda : p + (size_t)r * q.lda;
                            const size_t ib = q.tb == CUBLAS_OP_N ? p + (size_t)c * q.ldb : c + (size_t)p * q.ldb;
                            s += emu_blas::get(A, t, ia) * emu_blas::get(B, t, ib);
                        }
                        const size_t ic = r + (size_t)c * q.ldc;
                        const float prev = q.beta != 0 ? emu_blas::get(C, t, ic) : 0.0f;
                        emu_blas::put(C, t, ic, q.alpha * s + q.beta * prev);
                    }
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}
#endif
