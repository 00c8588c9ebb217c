/* synth_mix.c — random but valid blocks of the low-bit types for synth (see synth_mix.h): Q2_K,
 * Q3_K, IQ4_NL, IQ4_XS and the importance-matrix types, random grid indices, signs and sub-block
 * scales with the block's d set so the weights spread like N(0, sigma). Quantizing 24B floats to
 * these types (a grid search per 8 weights) would take hours; a speed benchmark needs nothing
 * more than valid blocks, and both engines read the same file. Which tensor gets which type is
 * quantize's recipe (convert/quant_recipe.c) of the file type. */
#include "convert/synth_mix.h"
#include "convert/synth_impl.h"
#include "formats/ggml_types.h"
#include "base/error.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---- random blocks ------------------------------------------------------------------------- */

/* Where each type keeps its block's scale: d (fp16) at byte d_at; Q2_K's dmin follows. IQ1_M
 * spreads d over its scales' top nibbles. */
static int d_at(uint32_t type) {
    switch (type) {
    case GGML_Q2_K: return offsetof(block_q2_K, d);
    case GGML_Q3_K: return offsetof(block_q3_K, d);
    case GGML_IQ4_NL:
    case GGML_IQ4_XS:
    case GGML_IQ2_XXS:
    case GGML_IQ2_XS:
    case GGML_IQ2_S:
    case GGML_IQ3_XXS:
    case GGML_IQ3_S:
    case GGML_IQ1_S: return 0;
    case GGML_IQ1_M: return -2; /* in the scales */
    default: return -1;
    }
}

bool synth_random_type(uint32_t type) { return d_at(type) != -1; }

static void set_d(uint32_t type, uint8_t *blk, uint16_t h) {
    if (type == GGML_IQ1_M) {
        uint8_t *sc = blk + offsetof(block_iq1_m, scales);
        for (int k = 0; k < 4; k++) sc[2 * k + 1] = (uint8_t)((sc[2 * k + 1] & 0x0f) | ((h >> 4 * k) & 15) << 4);
        return;
    }
    const int at = d_at(type);
    if (at < 0) return;
    memcpy(blk + at, &h, 2);
    if (type == GGML_Q2_K) memcpy(blk + offsetof(block_q2_K, dmin), &h, 2);
}

/* Random bits, then the type's own fix-ups: Q2_K's mins centre its 2-bit values (min = 1.5 x
 * scale, so the mean is near 0). */
static void random_block(uint32_t type, uint8_t *blk, uint64_t *s) {
    const int size = ggml_type_get(type)->type_size;
    for (int i = 0; i < size; i += 8) {
        uint64_t r = synth_splitmix64(s);
        memcpy(blk + i, &r, size - i < 8 ? (size_t)(size - i) : 8);
    }
    if (type == GGML_Q2_K) {
        block_q2_K *q = (block_q2_K *)blk;
        for (int j = 0; j < 16; j++) {
            const int sc = 1 + (q->scales[j] & 7);
            q->scales[j] = (uint8_t)(sc | ((3 * sc + 1) / 2) << 4);
        }
    }
}

/* The RMS of a type's weights at d = 1, measured on 64 random blocks. */
static float unit_rms(uint32_t type) {
    const ggml_type_info *ti = ggml_type_get(type);
    uint8_t blk[512];
    float w[256];
    double ss = 0;
    uint64_t s = 0x5eed0000u + type;
    for (int b = 0; b < 64; b++) {
        random_block(type, blk, &s);
        set_d(type, blk, f32_to_fp16(1.0f));
        dequantize_row(type, blk, w, ti->block_size);
        for (int i = 0; i < ti->block_size; i++) ss += (double)w[i] * w[i];
    }
    float r = (float)sqrt(ss / (64.0 * ti->block_size));
    return r > 0 ? r : 1.0f;
}

static float RMS[GGML_NTYPES];

void synth_random_init(void) {
    for (uint32_t t = 0; t < GGML_NTYPES; t++)
        if (synth_random_type(t) && !RMS[t]) RMS[t] = unit_rms(t);
}

void synth_random_block(uint32_t type, uint8_t *blk, float sigma, uint64_t *s) {
    const float k = RMS[type] > 0 ? RMS[type] : 1.0f;
    random_block(type, blk, s);
    set_d(type, blk, f32_to_fp16(sigma / k));
}
