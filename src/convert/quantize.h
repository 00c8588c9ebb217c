/* quantize.h — weight quantization as the reference quantizer (llama-quantize, with or without
 * an importance matrix) does it, byte for byte: the per-block algorithms (quantize.c,
 * quantize_w.c, quantize_iq.c) and the per-tensor type recipe of each file type (quant_recipe.c,
 * spec 7.4). */
#ifndef LFM2C_QUANTIZE_H
#define LFM2C_QUANTIZE_H

#include "lfm2c.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- blocks ---------------------------------------------------------------------------- */

/* Types quantize_rows can produce without importance weights: those whose row in the type table
 * (formats/ggml_types.h) has GGML_TF_QUANTIZE but not GGML_TF_NEEDS_W (F32, F16, BF16, Q4_0..Q8_0,
 * the K-quants, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_S, IQ1_M). */
bool quantize_supported(uint32_t type);
/* Types quantize_rows_w can produce with importance weights: every GGML_TF_QUANTIZE row (those
 * above and IQ2_XXS, IQ2_XS, IQ1_S). */
bool quantize_supported_w(uint32_t type);
/* Quantizes nrows rows of n_per_row floats (n_per_row a multiple of the block size) into dst in
 * `type`'s row layout. Returns the bytes written, 0 when the type or row length is unsupported.
 * Rows are independent: quantizing a tensor in row chunks gives the same bytes. */
size_t quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row);
/* The same with importance weights qw (n_per_row values, one per column, the same for every row:
 * an importance matrix's mean squared activations), as the reference's quantize_* with
 * quant_weights; qw NULL is quantize_rows. Types without a weighted quantizer (F16, Q8_0, ...)
 * ignore qw. */
size_t quantize_rows_w(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *qw);

/* ---- file types and the per-tensor recipe ---------------------------------------------- */

/* llama_ftype ids (general.file_type) */
enum llama_ftype_id {
    FTYPE_ALL_F32 = 0,
    FTYPE_F16 = 1,
    FTYPE_Q4_0 = 2,
    FTYPE_Q4_1 = 3,
    FTYPE_Q8_0 = 7,
    FTYPE_Q5_0 = 8,
    FTYPE_Q5_1 = 9,
    FTYPE_Q2_K = 10,
    FTYPE_Q3_K_S = 11,
    FTYPE_Q3_K_M = 12,
    FTYPE_Q3_K_L = 13,
    FTYPE_Q4_K_S = 14,
    FTYPE_Q4_K_M = 15,
    FTYPE_Q5_K_S = 16,
    FTYPE_Q5_K_M = 17,
    FTYPE_Q6_K = 18,
    FTYPE_IQ2_XXS = 19,
    FTYPE_IQ2_XS = 20,
    FTYPE_Q2_K_S = 21,
    FTYPE_IQ3_XS = 22,
    FTYPE_IQ3_XXS = 23,
    FTYPE_IQ1_S = 24,
    FTYPE_IQ4_NL = 25,
    FTYPE_IQ3_S = 26,
    FTYPE_IQ3_M = 27,
    FTYPE_IQ2_S = 28,
    FTYPE_IQ2_M = 29,
    FTYPE_IQ4_XS = 30,
    FTYPE_IQ1_M = 31,
    FTYPE_BF16 = 32,
};

typedef struct quant_ftype {
    const char *name;      /* "Q4_K_M" */
    int id;                /* enum llama_ftype_id */
    uint32_t default_type; /* ggml type of most matrices */
} quant_ftype;

/* Case-insensitive lookup among the file types `lfm2c quantize` offers; NULL if unknown. */
const quant_ftype *quant_ftype_find(const char *name);
/* The offered names, comma-separated, for messages. */
const char *quant_ftype_list(void);

typedef struct quant_tensor_desc {
    const char *name;
    uint32_t n_dims;
    int64_t ne[4];
    uint32_t type; /* current type */
} quant_tensor_desc;

/* A --tensor-type rule: tensors whose name the pattern (a POSIX extended regular expression,
 * searched anywhere in the name, as llama-quantize's std::regex_search) matches take the type;
 * the first matching rule wins. */
typedef struct quant_override {
    const char *pattern;
    uint32_t type;
} quant_override;

/* What the recipe knows of the model and the user's choices (zero: the defaults). */
typedef struct quant_recipe_opts {
    int n_layer, n_expert; /* block count; expert count (0 for dense) */
    int n_gqa;             /* heads / kv heads of block 0 (0 when block 0 has no attention) */
    bool has_imatrix;      /* an importance matrix is given (changes some types) */
    bool leave_output;     /* --leave-output-tensor: output.weight keeps its type */
    int output_type;       /* --output-tensor-type: a ggml type, or -1 */
    int token_embd_type;   /* --token-embedding-type: a ggml type, or -1 */
    const quant_override *overrides;
    int n_overrides;
} quant_recipe_opts;

/* Chooses every tensor's target type the way the reference (llama_tensor_get_type) does for file
 * type `ft`, given the tensors in output order (see quant_tensor_order_cmp). Tensors the reference
 * never quantizes (norms, 1-D, conv taps, router, names not ending in "weight") keep their current
 * type. needs_imatrix (may be NULL) gets, per tensor, whether its type needs an importance matrix
 * there (llama-quantize's rule). False (err set) when a tensor's layer cannot be determined, a row
 * length fits no type or a pattern does not compile. */
bool quant_recipe_ex(const quant_ftype *ft, const quant_recipe_opts *o, const quant_tensor_desc *t, int n,
                     uint32_t *out_types, bool *needs_imatrix, lfm2c_error *err);
/* The same with the defaults: no importance matrix, no options, n_gqa 0. */
bool quant_recipe(const quant_ftype *ft, int n_layer, int n_expert, const quant_tensor_desc *t, int n,
                  uint32_t *out_types, lfm2c_error *err);

/* Output order of the reference: tensors sorted by layer number ("blk.N."; others first), then by
 * name. strcmp-like. */
int quant_tensor_order_cmp(const char *a, const char *b);

#endif
