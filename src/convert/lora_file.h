/* lora_file.h — LoRA adapters as files: writing the GGUF adapter form (llama.cpp's layout) of a
 * loaded adapter, merging adapters into a base GGUF (a plain model file), and synthesizing a
 * random adapter for a base (tests, and measuring the run-time cost without a fine-tune). */
#ifndef LFM2C_LORA_FILE_H
#define LFM2C_LORA_FILE_H

#include "lfm2c.h"
#include <stdbool.h>
#include <stdint.h>

/* Writes lo (loaded for a model of architecture arch) as a GGUF adapter: general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha, F32 tensors "<base>.lora_a" ne [in, r(, E)] and
 * ".lora_b" ne [r, out(, E)]. One alpha serves the file; a matrix whose scale differs from
 * alpha / r (PEFT's patterns, rsLoRA) has the difference folded into its B. */
bool lora_write_gguf(const lfm2c_lora *lo, const char *path, lfm2c_error *err);

typedef struct lora_merge_params {
    int n_threads; /* <= 0: threadpool_default_threads() */
    /* called as the output is written (may be NULL): bytes of the base done / total, the tensor */
    void (*progress)(void *ud, uint64_t done, uint64_t total, const char *tensor);
    void *progress_ud;
} lora_merge_params;

/* Writes base_path with the adapters merged in: W' = W + Σ scale_i s_i B_i A_i for each adapted
 * matrix, dequantized, added in float and requantized to the tensor's own type (every other
 * tensor and all metadata copied as they are), the rows of an adapted tensor spread over
 * p->n_threads threads (the file is the same whatever their number). The adapters were loaded
 * for the model opened from base_path. p may be NULL (defaults). */
bool lora_merge(const char *base_path, lfm2c_lora *const *loras, const float *scales, int n, const char *out_path,
                const lora_merge_params *p, lfm2c_error *err);

typedef struct lora_synth_params {
    int rank;    /* default 8 */
    float alpha; /* default 2 * rank */
    uint64_t seed;
    const char *targets; /* comma-separated GGUF module names ("attn_q,ffn_gate_exps"), NULL: all */
} lora_synth_params;

/* A random adapter for the model at base_path: A ~ N(0, 1/sqrt(in)), B ~ N(0, 0.05/sqrt(r)), so
 * that s B A changes the logits visibly; written as a GGUF adapter. */
bool lora_synth(const char *base_path, const lora_synth_params *p, const char *out_path, lfm2c_error *err);

#endif
