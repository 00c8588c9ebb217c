/* synth_mix.h — random valid blocks of Q2_K, Q3_K, IQ4_NL, IQ4_XS and the importance-matrix
 * types for synth (synth_mix.c): speed measurements on files both engines read, without
 * quantizing billions of floats to them. */
#ifndef LFM2C_SYNTH_MIX_H
#define LFM2C_SYNTH_MIX_H

#include <stdbool.h>
#include <stdint.h>

/* Whether synth_random_block makes blocks of type. */
bool synth_random_type(uint32_t type);
/* Measures each type's spread at d = 1 (once, before the threads: synth_write calls it). */
void synth_random_init(void);
/* One random valid block of type at blk, its d set so the weights' RMS is about sigma; s the
 * random state (advanced). */
void synth_random_block(uint32_t type, uint8_t *blk, float sigma, uint64_t *s);

#endif
