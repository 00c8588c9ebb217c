/* imatrix.h — importance matrices as llama.cpp's llama-imatrix collects, writes and reads them:
 * for every weight matrix of the blocks (blk.*), the sum over the tokens of each input column's
 * square (in_sum2) and how many token rows were summed (counts), one sum and one count per expert
 * for an expert tensor; quantizers weigh each column's error by in_sum2 / counts.
 *
 * Collection (imatrix_hook, an lfm2c_matmul_hook): a product's float input rows, by weight name.
 * As the reference does: a dense weight is taken only when its pass has 16 rows or more and its
 * name starts with "blk." (or is "output.weight" with process_output); every expert product is
 * taken; sums are float, added in row order.
 *
 * Files: the GGUF imatrix llama-imatrix writes today (general.type "imatrix", imatrix.datasets,
 * imatrix.chunk_count, imatrix.chunk_size; per entry, sorted by name, F32 tensors NAME.in_sum2
 * [n_cols, n_mat] and NAME.counts [1, n_mat]) and its legacy format (.dat: int32 entry count;
 * per entry int32 name length, the name, int32 ncall, int32 value count and the values, each sum /
 * count * ncall; then int32 chunk count, int32 length and the dataset's name), read and written.
 * Loading merges into what is there, as --in-file does: a legacy file's values become sums over
 * ncall * chunk_size rows. */
#ifndef LFM2C_IMATRIX_H
#define LFM2C_IMATRIX_H
#include "formats/name_index.h"
#include "lfm2c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct imatrix_entry {
    char *name;
    float *sums;     /* n_vals: n_mat rows of n_vals / n_mat columns */
    int64_t *counts; /* n_counts: 1 (a dense weight, or a legacy file's) or one per matrix */
    uint32_t n_vals, n_counts;
} imatrix_entry;

typedef struct imatrix {
    imatrix_entry *e;
    uint32_t n, cap;
    name_index index;
    char **datasets; /* the texts it was computed from (loaded files' and this run's) */
    uint32_t n_datasets;
    bool process_output; /* also collect "output.weight" */
    int error;           /* the first error the hook met (LFM2C_E*, 0: none), ... */
    char error_msg[256]; /* ... and its message */
} imatrix;

void imatrix_init(imatrix *im);
void imatrix_free(imatrix *im);
/* The lfm2c_matmul_hook that collects into user (an imatrix); a size that disagrees with what the
 * entry holds, a value that is not finite or no memory sets im->error, and the entry is left. */
void imatrix_hook(void *user, const char *weight, int expert, int n_mat, const float *x, size_t ld, const int *rows,
                  int n_rows, int n_cols);
const imatrix_entry *imatrix_find(const imatrix *im, const char *name);
/* Adds a dataset name (copied); false when out of memory. */
bool imatrix_add_dataset(imatrix *im, const char *name);

/* Merges the file at path (GGUF or legacy, told apart by the GGUF magic) into im; chunk_size
 * scales a legacy file's values back into sums. 0, or -1 with err set (im unchanged but for
 * entries a failing merge had already added to). */
int imatrix_load(imatrix *im, const char *path, int chunk_size, lfm2c_error *err);
/* The same from bytes in memory (the fuzzer's entry). */
int imatrix_load_bytes(imatrix *im, const uint8_t *buf, size_t n, int chunk_size, lfm2c_error *err);
/* The number of chunks the sums cover: the largest count / chunk_size. */
int64_t imatrix_chunk_count(const imatrix *im, int chunk_size);
/* Writes im to path (by way of PATH.tmp): GGUF, or the legacy format (entries with no count left
 * out, the last of im's datasets at the end). The chunk count is imatrix_chunk_count's; false with
 * err set. */
bool imatrix_save(const imatrix *im, const char *path, bool legacy, int chunk_size, lfm2c_error *err);

/* llama-imatrix --show-statistics: per entry with data, over the mean squared activation of each
 * column (sum / count, for the matrices with a count): their sum (total), mean, max, min, standard
 * deviation, the share above 1e-5 (active), the entropy of their distribution (bits), the share
 * more than one deviation above the mean (zd), and the cosine similarity of the sums with those
 * of the same tensor one block earlier (0 where there is none), as float sums in the reference's
 * order; sorted by tensor name, then by total, largest first. */
typedef struct imatrix_stat {
    const imatrix_entry *e;
    char layer[16], tensor[64]; /* "3", "attn_k" (a name outside the blocks: "-" and the name) */
    int blk;                    /* the layer's number, -1 outside the blocks */
    float total, mean, max, min, stddev, active, entropy, zd, cossim;
    int elements;
} imatrix_stat;
/* The statistics (malloc'd, *n of them), or NULL when out of memory. */
imatrix_stat *imatrix_stats(const imatrix *im, int *n);
#endif
