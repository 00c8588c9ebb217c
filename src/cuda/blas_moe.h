/* blas_moe.h — a batch's experts through cublasGemmGroupedBatchedEx over BF16 copies of the
 * experts (blas_moe.cu; LFM2C_CUDA_MOE=cublas, off by default until timed on a GPU: docs/CUDA.md).
 * The CUDA emulation has a host stand-in for the call (tests/cuda/emu/cublas_v2.h). */
#ifndef LFM2C_CUDA_BLAS_MOE_H
#define LFM2C_CUDA_BLAS_MOE_H
#include "cuda_kernels.h"
extern "C" {
#include "core/model.h"
}

struct cu_model;
struct cu_moe_blas;

/* Whether the memory plan (core/mem_plan.h) keeps BF16 copies of m's experts (experts) or of its
 * non-expert linears beside the weights as stored and the KV cache of LFM2C_CUDA_SLOTS sequences
 * of LFM2C_CUDA_CTX positions (1 and 4096 where unset) on the card's free memory, at most
 * $LFM2C_GPU_MEM_CAP; false with why (a line) where it leaves them out. */
bool cu_plan_bf16(const lfm2c_model *m, bool experts, char *why, size_t cap);

/* The experts' BF16 copies of every MoE layer, made on the device, into *out; *out NULL (and why
 * in note) where the model has no experts or the memory plan leaves the copies out. 0, or -1
 * with err set (nothing left allocated). */
int cu_moe_blas_open(lfm2c_model *m, cu_model *cm, cu_moe_blas **out, char *note, size_t note_cap, lfm2c_error *err);
void cu_moe_blas_free(cu_moe_blas *b);
/* MoE layer l's experts for a batch of T tokens routed k ways (count: the experts' pairs, col_src:
 * each sorted pair's token, on the device) from x [T][H] into D [T k][H] (float, the sorted
 * pairs' rows, for cu_moe_combine_add_rmsnorm with the router weights). Waits for the stream once
 * (the counts). false: not run (no copies, a refused call: cu_moe_blas_status), the caller's
 * kernels run the layer. */
bool cu_moe_blas_ffn(cu_moe_blas *b, cu_q *cq, int l, const float *x, int T, int k, const int *count,
                     const int *col_src, float *D);
/* the first refused call's cublasStatus_t (0: none): after one, the kernels run every layer */
int cu_moe_blas_status(const cu_moe_blas *b);
/* the grouped calls made (the tests' proof that the path was taken) */
long cu_moe_blas_calls(const cu_moe_blas *b);
#endif
