/* matmul.h — the threaded matrix products of the CPU forward pass. A job is a list of independent
 * products (q, k and v; or every expert's); matmul_run splits the rows of all of them over the
 * model's thread pool by bytes of weights (byte-balanced split), with work stealing for decode,
 * and calls the kernel table (kernels.h) once per thread and task, or in reference mode a plain
 * float dot per row. Every output row is computed exactly once and alone, so how the rows are
 * split changes no bit of the result (tests/cpu/test_matmul.c). */
#ifndef LFM2C_MATMUL_H
#define LFM2C_MATMUL_H
#include "core/model.h"

/* y[c * ldy + r] = W_e[r] · x[c] for rows r < W.ne[1] and tokens c < n_cols. The activations
 * are given already in the format the weight type multiplies with (act_format()). */
typedef struct mm_task {
    const tensor *w;
    int expert;
    const uint8_t *act;
    size_t act_row;
    int n_cols;
    float *y;
    size_t ldy;
} mm_task;

/* Runs several independent products in one parallel job. */
void matmul_run(lfm2c_model *m, const mm_task *tasks, int n);

/* Activations x[T][n] in the format weights of type wtype multiply with, in scratch slot. */
typedef struct act_buf {
    const uint8_t *data;
    size_t row;
} act_buf;

/* The activation format weights of type wtype multiply with (GGML_F32 in reference mode). */
uint32_t act_format(const lfm2c_model *m, uint32_t wtype);
/* x[T][n] in that format: x itself for F32, else quantized into scratch slot `slot`. */
act_buf prepare_act(lfm2c_model *m, int slot, const float *x, int T, int64_t n, uint32_t wtype);

/* Jobs smaller than this (weight bytes x columns) run on the calling thread alone: waking
 * and joining the others would cost more than the work (and, on a busy machine, much more). */
enum { INLINE_WORK = 64 << 10 };
#endif
