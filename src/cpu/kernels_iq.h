/* kernels_iq.h — the importance-matrix types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S) x Q8_K in the kernel tables: the tile sets of the x86 tables (kernels_iq_x86.c; the
 * NEON tables' are kernels_iq_neon.inc, inside kernels_neon.c), and the integer view of a block
 * they and the scalar truth (kernels_scalar.c) share: weight i = f * ls[i / 16] * q[i], ls the
 * 16 scales of 16 weights (iq_ls), f the block's d times 1/8 (IQ1, IQ2), 1/4 (IQ3_XXS) or 1
 * (IQ3_S), q the signed grid value (IQ1: 8 g + delta). Block layouts: formats/ggml_types.h. */
#ifndef LFM2C_KERNELS_IQ_H
#define LFM2C_KERNELS_IQ_H

#include "cpu/tiles.h"
#include "formats/ggml_types.h"

#include <string.h>

/* The tiles of IQ type t; NULL for another type (or where the ISA is not compiled). */
const tile_set *iq_tiles_avx512(uint32_t t);
const tile_set *iq_tiles_avx2(uint32_t t);
/* Whether iq_tiles_avx512 gives IQ2_XXS and IQ3_XXS the tiles that look their grids up with
 * AVX-512 VBMI (same results): -1 (the default) where the CPU has VBMI, 0 never (for tests). */
extern int iq_vbmi;
/* The tiles of Q2_K / Q3_K / IQ4_XS x Q8_K on AVX-512 (kernels_k23_x86.c, beside these), and the
 * group tiles of Q2_K_X16 / Q3_K_X16 (run_groups); NULL for another type. */
const tile_set *k23_tiles_avx512(uint32_t t);

static inline bool iq_type(uint32_t t) {
    return t == GGML_IQ2_XXS || t == GGML_IQ2_XS || t == GGML_IQ2_S || t == GGML_IQ3_XXS || t == GGML_IQ3_S ||
           t == GGML_IQ1_S || t == GGML_IQ1_M;
}
static inline size_t iq_bytes(uint32_t t) {
    return t == GGML_IQ2_XXS   ? sizeof(block_iq2_xxs)
           : t == GGML_IQ2_XS  ? sizeof(block_iq2_xs)
           : t == GGML_IQ2_S   ? sizeof(block_iq2_s)
           : t == GGML_IQ3_XXS ? sizeof(block_iq3_xxs)
           : t == GGML_IQ3_S   ? sizeof(block_iq3_s)
           : t == GGML_IQ1_S   ? sizeof(block_iq1_s)
                               : sizeof(block_iq1_m);
}
/* the fp16 bits of the block's d */
static inline uint16_t iq_d_bits(uint32_t t, const uint8_t *p) {
    uint16_t h;
    if (t == GGML_IQ1_M) return iq1m_d(p + 48);
    memcpy(&h, p, 2);
    return h;
}
/* f from the block's d */
static inline float iq_f_of(uint32_t t, float d) {
    return t == GGML_IQ3_S ? d : t == GGML_IQ3_XXS ? d * 0.25f : d * 0.125f;
}
/* the 16 scales of 16 weights of the block at p */
static inline void iq_ls(uint32_t t, const uint8_t *p, int16_t *ls) {
    for (int ib = 0; ib < 8; ib++) {
        uint16_t h;
        uint32_t s32;
        int s0, s1;
        switch (t) {
        case GGML_IQ2_XXS: memcpy(&s32, p + 6 + 8 * ib, 4), s0 = s1 = (int)(s32 >> 28); break;
        case GGML_IQ2_XS: s0 = p[66 + ib] & 15, s1 = p[66 + ib] >> 4; break;
        case GGML_IQ2_S: s0 = p[74 + ib] & 15, s1 = p[74 + ib] >> 4; break;
        case GGML_IQ3_XXS: memcpy(&s32, p + 66 + 4 * ib, 4), s0 = s1 = (int)(s32 >> 28); break;
        case GGML_IQ3_S: s0 = s1 = p[106 + ib / 2] >> 4 * (ib % 2) & 15; break;
        case GGML_IQ1_S: memcpy(&h, p + 34 + 2 * ib, 2), s0 = s1 = h >> 12 & 7; break;
        default: /* IQ1_M: 3 bits each, 4 to a 16-bit word */
            memcpy(&h, p + 48 + 2 * (ib / 2), 2);
            s0 = h >> 6 * (ib % 2) & 7, s1 = h >> (6 * (ib % 2) + 3) & 7;
            break;
        }
        ls[2 * ib] = (int16_t)(2 * s0 + 1), ls[2 * ib + 1] = (int16_t)(2 * s1 + 1);
    }
}
#endif
