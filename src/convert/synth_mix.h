/* synth_mix.h — the file types and random blocks synth writes beyond what quantize makes
 * (synth_mix.c): the low-bit file types' per-tensor mixes (llama-quantize's rules for an LFM2
 * model with an importance matrix) and random valid blocks of Q2_K, Q3_K, IQ4_NL, IQ4_XS and
 * the importance-matrix types, for speed measurements on files both engines read. */
#ifndef LFM2C_SYNTH_MIX_H
#define LFM2C_SYNTH_MIX_H

#include "lfm2c.h"
#include "convert/quantize.h"

#include <stdbool.h>
#include <stdint.h>

/* A file type by name (case-insensitive): quantize's (quant_ftype_find) first, then synth's own
 * (Q2_K, Q3_K_S/M/L, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ3_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M,
 * IQ1_S, IQ1_M); NULL if neither knows it. */
const quant_ftype *synth_ftype_find(const char *name);
/* All the names synth_ftype_find takes, comma-separated, for messages. */
const char *synth_ftype_list(void);
/* Whether ft is one of synth's own file types (synth_mix_recipe picks its tensors' types). */
bool synth_own_ftype(const quant_ftype *ft);
/* Each tensor's type for synth's own file type ft, as quant_recipe does for quantize's. */
bool synth_mix_recipe(const quant_ftype *ft, int n_layer, int n_expert, const quant_tensor_desc *t, int n,
                      uint32_t *out, lfm2c_error *err);

/* Whether synth_random_block makes blocks of type. */
bool synth_random_type(uint32_t type);
/* Measures each type's spread at d = 1 (once, before the threads: synth_write calls it). */
void synth_random_init(void);
/* One random valid block of type at blk, its d set so the weights' RMS is about sigma; s the
 * random state (advanced). */
void synth_random_block(uint32_t type, uint8_t *blk, float sigma, uint64_t *s);

#endif
