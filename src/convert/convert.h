/* convert.h — Hugging Face LFM2 / LFM2-MoE checkpoint directory -> GGUF, laid out as the
 * reference converter (llama.cpp convert_hf_to_gguf.py) writes it: architecture and metadata
 * keys, tensor names / shapes / types, tokenizer and chat template (spec sections 3-5).
 * Tensors are streamed from the mmapped safetensors to the output in chunks, so memory stays
 * small whatever the model size; the output appears under its name only when complete. */
#ifndef LFM2C_CONVERT_H
#define LFM2C_CONVERT_H

#include "lfm2c.h"
#include "formats/ggml_types.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct convert_params {
    uint32_t out_type; /* GGML_F32, GGML_F16, GGML_BF16 or GGML_Q8_0 for the big matrices */
    int n_threads;     /* 0 = all online cores */
    /* called after every chunk with bytes of tensor data written so far and in all */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
} convert_params;

typedef struct convert_stats {
    char arch[16];              /* "lfm2" / "lfm2moe" */
    int n_tensors;              /* tensors written */
    int n_by_type[GGML_NTYPES]; /* per ggml type */
    uint64_t bytes_in;          /* safetensors tensor bytes read */
    uint64_t bytes_out;         /* size of the GGUF file */
    uint64_t n_params;
    int n_vocab, n_merges;
    double seconds; /* wall time of the whole conversion */
} convert_stats;

/* "f32" / "f16" / "bf16" / "q8_0" (any case) -> ggml type, or -1. */
int convert_parse_type(const char *name);
/* llama_ftype recorded as general.file_type for an output type. */
uint32_t convert_file_type(uint32_t out_type);

bool convert_hf_to_gguf(const char *hf_dir, const char *out_path, const convert_params *params, convert_stats *stats,
                        lfm2c_error *err);

#endif
