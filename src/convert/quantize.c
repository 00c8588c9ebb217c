/* quantize.c — weight quantizers that reproduce the reference quantizer's bytes, and its
 * per-tensor type recipe.
 *
 * Byte parity depends on doing every float operation in the same order and precision as the
 * reference's scalar code: sums accumulate left to right in float, no fused multiply-adds (the
 * build compiles this file with -ffp-contract=off), rounding to the nearest integer is
 * round-half-to-even on |x| < 2^22 (the "add 1.5*2^23" trick) except where the reference uses
 * roundf or truncation, and fp16 scales are rounded to nearest even. */
#include "base/error.h"
#include "convert/quantize.h"
#include "formats/ggml_types.h"
#include "convert/quant_impl.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- 32-weight blocks -------------------------------------------------------------------- */

/* value of largest magnitude (the first one on ties) */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void q4_0_rows(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -8, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            int a = qi_min(15, (int)(int8_t)(x[j] * id + 8.5f));
            int b = qi_min(15, (int)(int8_t)(x[j + 16] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static void q4_1_rows(const float *x, block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float lo, hi;
        minmax(x, 32, &lo, &hi);
        const float d = (hi - lo) / 15, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(lo);
        for (int j = 0; j < 16; j++) {
            int a = qi_min(15, (int)(int8_t)((x[j] - lo) * id + 0.5f));
            int b = qi_min(15, (int)(int8_t)((x[j + 16] - lo) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void q5_0_rows(const float *x, block_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int a = qi_min(31, (int)(int8_t)(x[j] * id + 16.5f));
            int b = qi_min(31, (int)(int8_t)(x[j + 16] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((a & 15) | ((b & 15) << 4));
            qh |= (uint32_t)((a >> 4) & 1) << j;
            qh |= (uint32_t)((b >> 4) & 1) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void q5_1_rows(const float *x, block_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float lo, hi;
        minmax(x, 32, &lo, &hi);
        const float d = (hi - lo) / 31, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(lo);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int a = (uint8_t)((x[j] - lo) * id + 0.5f);
            int b = (uint8_t)((x[j + 16] - lo) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((a & 15) | ((b & 15) << 4));
            qh |= (uint32_t)((a >> 4) & 1) << j;
            qh |= (uint32_t)((b >> 4) & 1) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void q8_0_rows(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* ---- scale searches of the K-quants ------------------------------------------------------ */

/* Symmetric 3-bit-style quants with iterative per-weight refinement (Q3_K). */
static float sym_quants_refine(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QI_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = qi_max(-nmax, qi_min(nmax - 1, qi_nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = qi_max(-nmax, qi_min(nmax - 1, qi_nearest_int(x[i] * sl2 / slx)));
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---- 256-weight super-blocks ------------------------------------------------------------- */

static void q2_K_rows(const float *x, block_q2_K *y, int64_t nb) {
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = qi_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)qi_nearest_int(iscale * scales[j]);
            y[i].d = f32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, 16);
            y[i].d = f32_to_fp16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < 16; j++) y[i].scales[j] |= (uint8_t)(qi_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = f32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = f32_to_fp16(0.f);
        }
        qi_q2_K_finish(x, &y[i], L);
    }
}

static void q3_K_rows(const float *x, block_q3_K *y, int64_t nb) {
    int8_t L[QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = sym_quants_refine(16, 4, x + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        if (max_scale) {
            float iscale = -32.f / max_scale;
            int8_t Ls[16];
            for (int j = 0; j < 16; j++)
                Ls[j] = (int8_t)(qi_max(-32, qi_min(31, (int8_t)qi_nearest_int(iscale * scales[j]))) + 32);
            qi_q3_pack_scales(Ls, y[i].scales);
            y[i].d = f32_to_fp16(1 / iscale);
        } else {
            memset(y[i].scales, 0, 12);
            y[i].d = f32_to_fp16(0.f);
        }
        qi_q3_K_finish(x, &y[i], L);
    }
}

void qi_k45_requant(const float *x, const uint8_t *sc12, uint16_t d16, uint16_t dmin16, int nmax, uint8_t *L) {
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kq_scale_min(j, sc12, &sc, &m);
        const float d = fp16_to_f32(d16) * sc;
        if (!d) continue;
        const float dm = fp16_to_f32(dmin16) * m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)qi_max(0, qi_min(nmax, qi_nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): eight sub-blocks of 32, each with a 6-bit scale
 * and min; returns the final quants in L. */
static void k45_block(const float *x, int nmax, float rmin, float rdelta, int nstep, ggml_half *pd, ggml_half *pdmin,
                      uint8_t *sc12, uint8_t *L) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] =
            qi_qkx_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)qi_nearest_int(inv_scale * scales[j]);
        lm[j] = (uint8_t)qi_nearest_int(inv_min * mins[j]);
        ls[j] = ls[j] < 63 ? ls[j] : 63;
        lm[j] = lm[j] < 63 ? lm[j] : 63;
    }
    kq_pack_scale_min(sc12, ls, lm);
    *pd = f32_to_fp16(max_scale / 63.f);
    *pdmin = f32_to_fp16(max_min / 63.f);
    qi_k45_requant(x, sc12, *pd, *pdmin, nmax, L);
}

static void q4_K_rows(const float *x, block_q4_K *y, int64_t nb) {
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        k45_block(x, 15, -1.f, 0.1f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        qi_q4_K_pack(L, y[i].qs);
    }
}

static void q5_K_rows(const float *x, block_q5_K *y, int64_t nb) {
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        k45_block(x, 31, -0.5f, 0.1f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        qi_q5_K_pack(L, y[i].qh, y[i].qs);
    }
}

/* ---- dispatch ---------------------------------------------------------------------------- */

/* The quantizers of each type the type table says quantize makes (GGML_TF_QUANTIZE): plain (n
 * values of x, a multiple of the block size, into y; the reference without importance weights;
 * NULL where the weighted one given no weights is that) and weighted (quant_impl.h: rows with the
 * importance weights of a row, or NULL where the type's weighted quantizer is also its plain one). */
typedef void (*quant_maker)(const float *x, void *y, int64_t n);
static void f32_make(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }
static void f16_make(const float *x, void *y, int64_t n) {
    ggml_half *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_fp16(x[i]);
}
static void bf16_make(const float *x, void *y, int64_t n) {
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(x[i]);
}
#define BLOCK_MAKER(lower, QK) \
    static void lower##_make(const float *x, void *y, int64_t n) { lower##_rows(x, y, n / (QK)); }
BLOCK_MAKER(q4_0, 32)
BLOCK_MAKER(q4_1, 32)
BLOCK_MAKER(q5_0, 32)
BLOCK_MAKER(q5_1, 32)
BLOCK_MAKER(q8_0, 32)
BLOCK_MAKER(q2_K, QK_K)
BLOCK_MAKER(q3_K, QK_K)
BLOCK_MAKER(q4_K, QK_K)
BLOCK_MAKER(q5_K, QK_K)
#undef BLOCK_MAKER
static const struct {
    quant_maker plain;
    qi_rows_fn weighted;
} MAKERS[GGML_NTYPES] = {
    [GGML_F32] = {f32_make, NULL},        [GGML_F16] = {f16_make, NULL},        [GGML_BF16] = {bf16_make, NULL},
    [GGML_Q4_0] = {q4_0_make, qi_q4_0_w}, [GGML_Q4_1] = {q4_1_make, qi_q4_1_w}, [GGML_Q5_0] = {q5_0_make, qi_q5_0_w},
    [GGML_Q5_1] = {q5_1_make, qi_q5_1_w}, [GGML_Q8_0] = {q8_0_make, NULL},      [GGML_Q2_K] = {q2_K_make, qi_q2_K_w},
    [GGML_Q3_K] = {q3_K_make, qi_q3_K_w}, [GGML_Q4_K] = {q4_K_make, qi_q4_K_w}, [GGML_Q5_K] = {q5_K_make, qi_q5_K_w},
    [GGML_Q6_K] = {NULL, qi_q6_K_w},      [GGML_IQ4_NL] = {NULL, qi_iq4_nl},    [GGML_IQ4_XS] = {NULL, qi_iq4_xs},
    [GGML_IQ3_XXS] = {NULL, qi_iq3_xxs},  [GGML_IQ3_S] = {NULL, qi_iq3_s},      [GGML_IQ2_XXS] = {NULL, qi_iq2_xxs},
    [GGML_IQ2_XS] = {NULL, qi_iq2_xs},    [GGML_IQ2_S] = {NULL, qi_iq2_s},      [GGML_IQ1_S] = {NULL, qi_iq1_s},
    [GGML_IQ1_M] = {NULL, qi_iq1_m},
};

static bool made_here(uint32_t type) {
    const ggml_type_info *t = ggml_type_get(type);
    return t && type < GGML_NTYPES && (t->flags & GGML_TF_QUANTIZE) && (MAKERS[type].plain || MAKERS[type].weighted);
}

bool quantize_supported(uint32_t type) { return made_here(type) && !(ggml_type_get(type)->flags & GGML_TF_NEEDS_W); }

bool quantize_supported_w(uint32_t type) { return made_here(type); }

size_t quantize_rows_w(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *qw) {
    size_t row = ggml_row_size(type, n_per_row);
    if (!(qw ? quantize_supported_w(type) : quantize_supported(type)) || row == 0 || nrows < 0) return 0;
    if (!qi_iq_prepare(type)) return 0; /* a grid type's maps: out of memory */
    if (qw && MAKERS[type].weighted) MAKERS[type].weighted(src, dst, nrows, n_per_row, qw);
    else if (MAKERS[type].plain) MAKERS[type].plain(src, dst, nrows * n_per_row);
    else MAKERS[type].weighted(src, dst, nrows, n_per_row, NULL);
    return row * (size_t)nrows;
}

size_t quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row) {
    return quantize_rows_w(type, src, dst, nrows, n_per_row, NULL);
}
