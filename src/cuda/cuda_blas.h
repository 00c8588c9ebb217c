/* cuda_blas.h — the batched products through cuBLASLt (blas.cu; issue 71 item 1), on with
 * LFM2C_CUDA_BLAS=1 and off by default until timed on a GPU (docs/CUDA.md): BF16 copies of the
 * non-expert linears made at load, and a product of CU_BLAS_MIN_COLS columns or more over one of
 * them run as one cublasLtMatmul (BF16 in, F32 accumulation and out). The CUDA emulation has a
 * host stand-in for every cuBLASLt call used (tests/cuda/emu/cublasLt.h). */
#ifndef LFM2C_CUDA_BLAS_H
#define LFM2C_CUDA_BLAS_H
#include "cuda_kernels.h"
extern "C" {
#include "core/model.h"
}

enum { CU_BLAS_MIN_COLS = 64 }; /* fewer columns (decode, small batches): kernels_mm.cu's products */

/* The columns from which a forward's products take the BF16 paths (the non-expert linears here,
 * the experts in blas_moe.cu): $LFM2C_CUDA_BF16_COLS, CU_BLAS_MIN_COLS where unset. */
int cu_bf16_cols(void);

struct cu_blas;

/* With want (LFM2C_CUDA_BLAS=1, or LFM2C_CUDA_BF16=1): a cuBLASLt handle, its workspace and the BF16 copies of
 * m's non-expert linears (every layer's conv in / out, q k v o, dense gate / up / down, and the
 * output head), dequantized on the host from the file's rows and rounded to nearest even, into
 * *out, where the memory plan keeps them (blas_moe.h's cu_plan_bf16; else why in note); else
 * *out = NULL. 0, or -1 with err set (nothing left allocated). */
int cu_blas_open(const lfm2c_model *m, bool want, cu_blas **out, char *note, size_t note_cap, lfm2c_error *err);
void cu_blas_free(cu_blas *b);
/* room for x in BF16: values (cols x inputs of the widest product); 0 or a CUDA error */
cudaError_t cu_blas_reserve(cu_blas *b, size_t values);
/* y [cols][rows] = W x for x [cols][n] floats, when b holds W's copy and cols >= cu_bf16_cols():
 * x to BF16 (cu_to_bf16), then cublasLtMatmul on cq's stream; true when queued here (a refused
 * call is recorded for cu_blas_status). false: the caller runs its own product. */
bool cu_blas_matmul(cu_blas *b, cu_q *cq, const tensor *w, const float *x, int cols, float *y);
/* -1 with err set when a call failed since the last look (the forward's outputs are then wrong),
 * else 0 */
int cu_blas_status(cu_blas *b, lfm2c_error *err);
/* the products run so far (the tests' proof that the path was taken) */
long cu_blas_calls(const cu_blas *b);
#endif
