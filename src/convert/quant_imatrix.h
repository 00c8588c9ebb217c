/* quant_imatrix.h — an importance matrix file read for quantization as llama-quantize reads it
 * (quant_imatrix.c): per entry the weights quantize_rows_w takes, and the numbers the output's
 * quantize.imatrix.* keys record. */
#ifndef LFM2C_QUANT_IMATRIX_H
#define LFM2C_QUANT_IMATRIX_H
#include "convert/imatrix.h"
#include "lfm2c.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct qimatrix {
    imatrix im;       /* the file's entries (sums, counts), datasets */
    float **w;        /* per entry: sums / counts, n_vals values (per expert: n_per_row each) */
    int chunks;       /* the file's chunk count (0: none recorded) */
    const char *path; /* as given */
} qimatrix;

/* Reads path (GGUF, or the legacy format); false with err set (a file llama-quantize refuses:
 * unreadable, no entries, a GGUF without imatrix.datasets / chunk_count / chunk_size, a
 * non-finite value). qimatrix_free in every case. */
bool qimatrix_load(qimatrix *q, const char *path, lfm2c_error *err);
/* The weights of tensor `name` (*n values), NULL when the file has no entry for it. */
const float *qimatrix_weights(const qimatrix *q, const char *name, uint32_t *n);
void qimatrix_free(qimatrix *q);
#endif
