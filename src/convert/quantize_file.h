/* quantize_file.h — requantize a whole GGUF file: metadata copied, every tensor converted to the
 * type the recipe of a file type gives it, streamed chunk by chunk (input over mmap, pages
 * released as they are consumed) so memory stays small whatever the model size. */
#ifndef LFM2C_QUANTIZE_FILE_H
#define LFM2C_QUANTIZE_FILE_H

#include "lfm2c.h"
#include "formats/ggml_types.h"
#include "convert/quantize.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct quantize_file_params {
    int n_threads; /* <= 0: all online cores */
    bool stats;    /* measure each tensor's RMS error against the input */
    /* called after every chunk (may be NULL): bytes of input done / total, current tensor */
    void (*progress)(void *ud, uint64_t done, uint64_t total, const char *tensor);
    void *progress_ud;
    /* llama-quantize's options (zero: none) */
    const char *imatrix;             /* --imatrix: GGUF or legacy importance matrix file */
    const quant_override *overrides; /* --tensor-type rules, in order */
    int n_overrides;
    bool leave_output; /* --leave-output-tensor */
    bool has_output_type, has_token_embd_type;
    uint32_t output_type, token_embd_type; /* --output-tensor-type, --token-embedding-type */
} quantize_file_params;

typedef struct quantize_tensor_report {
    char name[64];
    uint32_t type_in, type_out;
    int64_t ne[4];
    uint32_t n_dims;
    uint64_t bytes_in, bytes_out;
    bool converted; /* false: bytes copied unchanged */
    double rms_err; /* with stats: sqrt(mean((dequant(out) - dequant(in))^2)) */
} quantize_tensor_report;

typedef struct quantize_report {
    int n_tensors;
    quantize_tensor_report *tensors; /* output order; free with quantize_report_free */
    uint64_t bytes_in, bytes_out;    /* tensor data */
    uint64_t file_bytes_in, file_bytes_out;
    double seconds;
} quantize_report;

/* Writes `out` (via out.tmp + rename; nothing is left behind on failure). rep may be NULL. With
 * an importance matrix each weight matrix is quantized with its entry's mean squared activations
 * (per expert for expert tensors), and the output gets llama-quantize's quantize.imatrix.* keys;
 * without one, a file type whose tensors need one is refused, naming the first such tensor. */
bool quantize_file(const char *in, const char *out, const quant_ftype *ft, const quantize_file_params *p,
                   quantize_report *rep, lfm2c_error *err);
void quantize_report_free(quantize_report *rep);

#endif
