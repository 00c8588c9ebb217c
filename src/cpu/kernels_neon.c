/* kernels_neon.c — the ARM64 kernel tables: plain NEON (ASIMD, every ARMv8-A CPU), NEON with the
 * dot-product instructions (SDOT, FEAT_DotProd: Cortex-A55/A76 and later, Neoverse, Apple) and
 * NEON with the int8 matrix multiply (SMMLA, FEAT_I8MM: Neoverse V1/N2, Cortex-A710 and later).
 * Each function carries its own target attribute, so a generic armv8-a build with GCC contains
 * all three tables and the one to use is chosen at run time from the kernel's HWCAPs (clang 14
 * declares the SDOT / SMMLA intrinsics only for a file built for them: there the tables are those
 * of -march); on other architectures the file only defines the getters, returning NULL.
 *
 * What is computed is the scalar contract of kernels_scalar.c. NEON multiplies signed by signed
 * bytes, so weights are unpacked to their signed values (Q4_0 nibble - 8, Q5_0 - 16, Q6_K - 32;
 * Q4_1 / Q5_1 / Q4_K / Q5_K stay unsigned and their mins go through sum(act) or bsums): no
 * offsets to subtract. Each block is reduced to exact int32 totals per output (S, and M for the
 * mins), then added in float by one formula per output, block after block from 0:
 *   32-blocks: acc = fma((float)S, d * da, acc), then (Q4_1 / Q5_1) acc = fma((float)sum(a), m * da, acc)
 *   K-quants:  acc = fma((float)S, d * da, acc), then (Q4_K / Q5_K) acc = fms((float)M, dmin * da, acc)
 * (the K-quant formula is the AVX-512 / AMX one). Whichever table or tile computes an output, it
 * is the same float operations on the same integers: the three tables agree bitwise and are tile
 * invariant. The integer tiles are written once (kernels_neon_body.inc) and compiled for plain
 * NEON (16-bit products widened pairwise) and for SDOT; the i8mm table takes 2 x 2 tiles of
 * prefill through SMMLA and the rest through the SDOT tiles; the importance-matrix types' tiles are
 * kernels_iq_neon.inc's (included by the body). The float path (F32, F16, BF16 and
 * the types without integer tiles: Q2_K, Q3_K, IQ4_NL, IQ4_XS, MXFP4) dequantizes a chunk and runs
 * float32x4 dot tiles through run_float (tiles.h; Q2_K, Q3_K and IQ4_XS come with Q8_K activations,
 * their exact values taken as floats there); the activation quantizers give the scalar
 * quantizers' bytes. Attention is kernels_attn_neon.c's (the contract of kernels.h, bitwise). */
#include "cpu/kernels.h"

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include "cpu/kernels_iq.h"
#include "cpu/tiles.h"
#include "formats/ggml_types.h"
#include "base/os.h"
#include "formats/iq_grids.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>
#if defined(__linux__)
#endif

#define AI static inline __attribute__((always_inline))
#if !defined(__clang__)
#define NEON_DP 1 /* GCC declares the SDOT / SMMLA intrinsics for functions with these targets */
#define NEON_MM 1
#define TDP __attribute__((target("arch=armv8.2-a+dotprod")))
#define TMM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#else /* clang (14) declares them only when the whole file targets them: -march=...+dotprod+i8mm */
#if defined(__ARM_FEATURE_DOTPROD)
#define NEON_DP 1
#endif
#if defined(__ARM_FEATURE_DOTPROD) && defined(__ARM_FEATURE_MATMUL_INT8)
#define NEON_MM 1
#endif
#define TDP
#define TMM
#endif
/* TILE_SET pastes suffixes onto the name: expand FN(...) first */
#define TSET(name, RB, CB, kern) TILE_SET(name, RB, CB, kern)

/* ---- shared by the three tables (plain ASIMD) ---------------------------------------------- */

AI float h2f(const void *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h; /* exact, as fp16_to_f32 */
}

AI size_t q32_bytes(uint32_t type) {
    return type == GGML_Q4_0   ? sizeof(block_q4_0)
           : type == GGML_Q4_1 ? sizeof(block_q4_1)
           : type == GGML_Q5_0 ? sizeof(block_q5_0)
           : type == GGML_Q5_1 ? sizeof(block_q5_1)
                               : sizeof(block_q8_0);
}

/* 32 bits -> 32 bytes (two vectors) of 16 where the bit is set */
AI void bits_to_16(const uint8_t *qh, uint8x16_t *b0, uint8x16_t *b1) {
    static const uint8_t IDX[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t BIT[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t h;
    memcpy(&h, qh, 4);
    const uint8x16_t hv = vreinterpretq_u8_u32(vdupq_n_u32(h)), bit = vld1q_u8(BIT), sixteen = vdupq_n_u8(16);
    *b0 = vandq_u8(vtstq_u8(vqtbl1q_u8(hv, vld1q_u8(IDX)), bit), sixteen);
    *b1 = vandq_u8(vtstq_u8(vqtbl1q_u8(hv, vld1q_u8(IDX + 16)), bit), sixteen);
}

/* The 32 weights of a Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 block as int8 (weights 0..15, 16..31),
 * signed for the types without a min, and the block's d and m. */
AI void q32_unpack(uint32_t type, const uint8_t *p, int8x16_t *w0, int8x16_t *w1, float *d, float *m) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    *d = h2f(p);
    *m = type == GGML_Q4_1 || type == GGML_Q5_1 ? h2f(p + 2) : 0.0f;
    switch (type) {
    case GGML_Q4_0:
    case GGML_Q4_1: {
        const uint8x16_t q = vld1q_u8(type == GGML_Q4_0 ? p + 2 : p + 4);
        const int8x16_t off = vdupq_n_s8(type == GGML_Q4_0 ? 8 : 0);
        *w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), off);
        *w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), off);
        return;
    }
    case GGML_Q5_0:
    case GGML_Q5_1: {
        const uint8_t *qh = type == GGML_Q5_0 ? p + 2 : p + 4;
        const uint8x16_t q = vld1q_u8(qh + 4);
        const int8x16_t off = vdupq_n_s8(type == GGML_Q5_0 ? 16 : 0);
        uint8x16_t b0, b1;
        bits_to_16(qh, &b0, &b1);
        *w0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), b0)), off);
        *w1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), b1)), off);
        return;
    }
    default: /* Q8_0 */
        *w0 = vld1q_s8((const int8_t *)p + 2);
        *w1 = vld1q_s8((const int8_t *)p + 18);
        return;
    }
}

/* [total p0, total p1, total p2, total p3] (exact: integers wrap alike) */
AI int32x4_t total4(int32x4_t p0, int32x4_t p1, int32x4_t p2, int32x4_t p3) {
    return vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));
}

/* One 32-block added to 4 outputs (lanes) of a column: the formula of the file comment. */
AI float32x4_t q32_add(float32x4_t acc, int32x4_t S, float32x4_t d, float32x4_t m, float da, float asum, int has_m) {
    acc = vfmaq_f32(acc, vcvtq_f32_s32(S), vmulq_n_f32(d, da));
    if (has_m) acc = vfmaq_f32(acc, vdupq_n_f32(asum), vmulq_n_f32(m, da));
    return acc;
}

/* One K-quant block added to 4 outputs (lanes) of a column: the formula of the file comment. */
AI float32x4_t kq_add(float32x4_t acc, int32x4_t S, int32x4_t M, float32x4_t d, float32x4_t dmin, float da, int has_m) {
    acc = vfmaq_f32(acc, vcvtq_f32_s32(S), vmulq_n_f32(d, da));
    if (has_m) acc = vfmsq_f32(acc, vcvtq_f32_s32(M), vmulq_n_f32(dmin, da));
    return acc;
}

/* out[c][r] = lane r of acc[c] */
AI void store_tile(int RB, int CB, const float32x4_t *acc, float *out, size_t os) {
    float t[4];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) {
        vst1q_f32(t, acc[c]);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) out[c * os + r] = t[r];
    }
}

/* -- float path: dot tiles (float32x4 lanes, one fma chain per output) and chunk dequantizers -- */

AI void fdot_tile(int RB, int CB, int m, const float *const *wr, const float *const *xc, float *out, size_t os,
                  int add) {
    float32x4_t acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) acc[r][c] = vdupq_n_f32(0);
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        float32x4_t wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) wv[r] = vld1q_f32(wr[r] + i);
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            const float32x4_t x = vld1q_f32(xc[c] + i);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) acc[r][c] = vfmaq_f32(acc[r][c], wv[r], x);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            float s = vaddvq_f32(acc[r][c]);
            for (int j = i; j < m; j++) s = fmaf(wr[r][j], xc[c][j], s);
            out[c * os + r] = add ? out[c * os + r] + s : s;
        }
}
static void fdot_4x4_n(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile(4, 4, m, w, x, o, os, add);
}
static void fdot_4x1_n(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile(4, 1, m, w, x, o, os, add);
}
static void fdot_1x4_n(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile(1, 4, m, w, x, o, os, add);
}
static void fdot_1x1_n(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile(1, 1, m, w, x, o, os, add);
}
static const fdot_fn FDOT_N[4] = {fdot_4x4_n, fdot_4x1_n, fdot_1x4_n, fdot_1x1_n};

/* 16 int8 -> 16 floats times d (as the scalar d * (float)q) */
AI void i8_times_d(int8x16_t q, float d, float *dst) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    vst1q_f32(dst, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
    vst1q_f32(dst + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
    vst1q_f32(dst + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
    vst1q_f32(dst + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
}
/* 32 weights: 16 bytes of nibbles (low nibbles first) looked up in a 16-entry int8 table, times d */
AI void lut32(const uint8_t *qs, int8x16_t table, float d, float *dst) {
    const uint8x16_t q = vld1q_u8(qs);
    i8_times_d(vqtbl1q_s8(table, vandq_u8(q, vdupq_n_u8(0x0F))), d, dst);
    i8_times_d(vqtbl1q_s8(table, vshrq_n_u8(q, 4)), d, dst + 16);
}

static void dequant_chunk_n(uint32_t type, const uint8_t *row, int64_t k0, int m, float *dst) {
    static const int8_t iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    static const int8_t mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    if (type == GGML_F16) {
        const uint16_t *src = (const uint16_t *)row + k0;
        int i = 0;
        for (; i + 4 <= m; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
        for (; i < m; i++) dst[i] = fp16_to_f32(src[i]);
    } else if (type == GGML_BF16) {
        const uint16_t *src = (const uint16_t *)row + k0;
        int i = 0;
        for (; i + 4 <= m; i += 4) vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src + i), 16)));
        for (; i < m; i++) dst[i] = bf16_to_f32(src[i]);
    } else if (type == GGML_IQ4_NL) {
        const block_iq4_nl *b = (const block_iq4_nl *)row + k0 / 32;
        const int8x16_t t = vld1q_s8(iq4nl);
        for (int i = 0; i < m / 32; i++) lut32(b[i].qs, t, h2f(&b[i].d), dst + 32 * i);
    } else if (type == GGML_MXFP4) {
        const block_mxfp4 *b = (const block_mxfp4 *)row + k0 / 32;
        const int8x16_t t = vld1q_s8(mxfp4);
        for (int i = 0; i < m / 32; i++) lut32(b[i].qs, t, ldexpf(1.0f, (int)b[i].e - 128), dst + 32 * i);
    } else if (type == GGML_IQ4_XS) {
        const block_iq4_xs *b = (const block_iq4_xs *)row + k0 / QK_K;
        const int8x16_t t = vld1q_s8(iq4nl);
        for (int i = 0; i < m / QK_K; i++) {
            const float d = h2f(&b[i].d);
            for (int ib = 0; ib < 8; ib++) {
                int ls = ((b[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((b[i].scales_h >> 2 * ib) & 3) << 4);
                lut32(b[i].qs + 16 * ib, t, d * (float)(ls - 32), dst + QK_K * i + 32 * ib);
            }
        }
    } else {
        const ggml_type_info *ti = ggml_type_get(type);
        dequantize_row(type, row + (size_t)(k0 / ti->block_size) * ti->type_size, dst, m);
    }
}

/* -- activation quantization: the scalar quantizers' bytes ------------------------------------ */

/* max |x| over n (a multiple of 4) values, NaN ignored as fmaxf does; 0 if none is larger */
AI float amax_n(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0);
    for (int j = 0; j < n; j += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + j)));
    return vmaxnmvq_f32(m);
}

static void quantize_q8_0_n(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        const float am = amax_n(x, 32);
        const float d = am / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < 32; j += 8) {
            /* roundf: to nearest, ties away from zero (FCVTAS) */
            const int32x4_t q0 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + j), id));
            const int32x4_t q1 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 4), id));
            vst1_s8(y[i].qs + j, vmovn_s16(vcombine_s16(vmovn_s32(q0), vmovn_s32(q1))));
        }
    }
}

static void quantize_q8_K_n(const float *x, block_q8_K *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float am = amax_n(x, QK_K);
        if (am == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0; /* the first value of largest magnitude, sign kept */
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) == am) {
                max = x[j];
                break;
            }
        const float iscale = -127.0f / max;
        const int32x4_t lo = vdupq_n_s32(-128), hi = vdupq_n_s32(127);
        for (int j = 0; j < QK_K; j += 16) {
            int32x4_t q[4];
            for (int k = 0; k < 4; k++) /* nearbyintf: to nearest, ties to even (FCVTNS) */
                q[k] = vminq_s32(vmaxq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 4 * k), iscale)), lo), hi);
            const int16x8_t q01 = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            const int16x8_t q23 = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            vst1q_s8(y[i].qs + j, vcombine_s8(vmovn_s16(q01), vmovn_s16(q23)));
            y[i].bsums[j / 16] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
        }
        y[i].d = 1.0f / iscale;
    }
}

static void quantize_act_n(uint32_t act_type, const float *x, void *dst, int64_t n) {
    if (act_type == GGML_Q8_0) quantize_q8_0_n(x, dst, n);
    else if (act_type == GGML_Q8_K) quantize_q8_K_n(x, dst, n);
    else memcpy(dst, x, (size_t)n * sizeof(float));
}

/* ---- the integer tiles, once per instruction set ---------------------------------------------- */

/* plain ASIMD: 8 x 8 -> 16-bit products (|w a| <= 128 * 128 fits), widened pairwise into int32 */
#define ATTR
#define ISA_T
#define FN(x) x##_nn
#define DOT16(acc, w, a) \
    vpadalq_s16(vpadalq_s16((acc), vmull_s8(vget_low_s8(w), vget_low_s8(a))), vmull_high_s8((w), (a)))
#include "cpu/kernels_neon_body.inc"
#undef ATTR
#undef ISA_T
#undef FN
#undef DOT16

#if NEON_DP
/* SDOT: 4 products of 4 bytes summed into each int32 lane */
#define ATTR TDP
#define ISA_T TDP
#define FN(x) x##_dp
#define DOT16(acc, w, a) vdotq_s32((acc), (w), (a))
#include "cpu/kernels_neon_body.inc"
#undef ATTR
#undef ISA_T
#undef FN
#undef DOT16
#endif

#if NEON_MM
/* ---- i8mm: SMMLA tiles of 2 rows x 2 columns for prefill -------------------------------------
 * vmmlaq_s32(acc, A, B) adds the 2 x 2 products of A's two 8-byte rows with B's: A holds 8 weights
 * of rows r and r + 1, B 8 activations of columns c and c + 1 (zip of the 64-bit halves), and
 * the lanes are outputs [(r, c), (r, c+1), (r+1, c), (r+1, c+1)]. Per block, each lane gets the
 * exact S (and M) of its output, and the float formula of the other tables, lane by lane. Every
 * other tile shape (decode, odd rows or columns) is the SDOT table's, bitwise the same. */

AI TMM int8x16_t zlo(int8x16_t x, int8x16_t y) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y)));
}
AI TMM int8x16_t zhi(int8x16_t x, int8x16_t y) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y)));
}
/* sum over 16 bytes of (row x, row y) . (col u, col v) into the 2 x 2 lanes of acc */
AI TMM int32x4_t mm16(int32x4_t acc, int8x16_t x, int8x16_t y, int8x16_t u, int8x16_t v) {
    return vmmlaq_s32(vmmlaq_s32(acc, zlo(x, y), zlo(u, v)), zhi(x, y), zhi(u, v));
}
/* [a, a, b, b] and [c, d, c, d] */
AI TMM float32x4_t pair_rows(float a, float b) { return vcombine_f32(vdup_n_f32(a), vdup_n_f32(b)); }
AI TMM float32x4_t pair_cols(float c, float d) {
    float t[4] = {c, d, c, d};
    return vld1q_f32(t);
}
AI TMM int32x4_t pair_rows_i(int32_t a, int32_t b) { return vcombine_s32(vdup_n_s32(a), vdup_n_s32(b)); }
AI TMM void store_2x2(float32x4_t acc, float *out, size_t os) {
    out[0] = vgetq_lane_f32(acc, 0);
    out[os] = vgetq_lane_f32(acc, 1);
    out[1] = vgetq_lane_f32(acc, 2);
    out[os + 1] = vgetq_lane_f32(acc, 3);
}

AI TMM void q32_mm(uint32_t type, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, size_t act_row,
                   float *out, size_t os) {
    const size_t bs = q32_bytes(type);
    const int has_m = type == GGML_Q4_1 || type == GGML_Q5_1;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_0 *a = (const block_q8_0 *)act + b, *e = (const block_q8_0 *)(act + act_row) + b;
        const int8x16_t a0 = vld1q_s8(a->qs), a1 = vld1q_s8(a->qs + 16), e0 = vld1q_s8(e->qs),
                        e1 = vld1q_s8(e->qs + 16);
        const float da = h2f(&a->d), de = h2f(&e->d);
        const uint8_t *p = w + b * bs, *q = w + w_row + b * bs;
        prefetch_block(p + 4 * PF_BLOCKS * bs, bs);
        prefetch_block(q + 4 * PF_BLOCKS * bs, bs);
        int8x16_t p0, p1, q0, q1;
        float dp, mp, dq, mq;
        q32_unpack(type, p, &p0, &p1, &dp, &mp);
        q32_unpack(type, q, &q0, &q1, &dq, &mq);
        const int32x4_t S = mm16(mm16(vdupq_n_s32(0), p0, q0, a0, e0), p1, q1, a1, e1);
        const float32x4_t dac = pair_cols(da, de);
        acc = vfmaq_f32(acc, vcvtq_f32_s32(S), vmulq_f32(pair_rows(dp, dq), dac));
        if (has_m) {
            const float sa = (float)(vaddlvq_s8(a0) + vaddlvq_s8(a1)), se = (float)(vaddlvq_s8(e0) + vaddlvq_s8(e1));
            acc = vfmaq_f32(acc, pair_cols(sa, se), vmulq_f32(pair_rows(mp, mq), dac));
        }
    }
    store_2x2(acc, out, os);
}

AI TMM void q45K_mm(int is_q5, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, size_t act_row,
                    float *out, size_t os) {
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), sixteen = vdupq_n_u8(16);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[2] = {(const block_q8_K *)act + b, (const block_q8_K *)(act + act_row) + b};
        const int16x8_t bp0 = vpaddq_s16(vld1q_s16(a[0]->bsums), vld1q_s16(a[0]->bsums + 8));
        const int16x8_t bp1 = vpaddq_s16(vld1q_s16(a[1]->bsums), vld1q_s16(a[1]->bsums + 8));
        const uint8_t *p[2] = {w + b * bs, w + w_row + b * bs};
        uint64_t sc[2], mn[2];
        int16x8_t mn16[2];
        uint8x16_t h0[2], h1[2];
        for (int i = 0; i < 2; i++) {
            prefetch_block(p[i] + PF_BLOCKS * bs, bs);
            kq_unpack_scales(p[i] + 4, &sc[i], &mn[i]);
            mn16[i] = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(mn[i])));
            h0[i] = is_q5 ? vld1q_u8(p[i] + 16) : vdupq_n_u8(0);
            h1[i] = is_q5 ? vld1q_u8(p[i] + 32) : vdupq_n_u8(0);
        }
        int32x4_t S = vdupq_n_s32(0);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            int8x16_t l0[2], l1[2], u0[2], u1[2];
            for (int i = 0; i < 2; i++) {
                const uint8_t *qs = (is_q5 ? p[i] + 48 : p[i] + 16) + 32 * k;
                const uint8x16_t q0 = vld1q_u8(qs), q1 = vld1q_u8(qs + 16);
                uint8x16_t x0 = vandq_u8(q0, m4), x1 = vandq_u8(q1, m4), y0 = vshrq_n_u8(q0, 4), y1 = vshrq_n_u8(q1, 4);
                if (is_q5) {
                    const uint8x16_t bl = vdupq_n_u8((uint8_t)(1 << (2 * k))), bu = vdupq_n_u8((uint8_t)(2 << (2 * k)));
                    x0 = vorrq_u8(x0, vandq_u8(vtstq_u8(h0[i], bl), sixteen));
                    x1 = vorrq_u8(x1, vandq_u8(vtstq_u8(h1[i], bl), sixteen));
                    y0 = vorrq_u8(y0, vandq_u8(vtstq_u8(h0[i], bu), sixteen));
                    y1 = vorrq_u8(y1, vandq_u8(vtstq_u8(h1[i], bu), sixteen));
                }
                l0[i] = vreinterpretq_s8_u8(x0), l1[i] = vreinterpretq_s8_u8(x1);
                u0[i] = vreinterpretq_s8_u8(y0), u1[i] = vreinterpretq_s8_u8(y1);
            }
            const int8_t *x = a[0]->qs + 64 * k, *y = a[1]->qs + 64 * k;
            int32x4_t lo = mm16(vdupq_n_s32(0), l0[0], l0[1], vld1q_s8(x), vld1q_s8(y));
            lo = mm16(lo, l1[0], l1[1], vld1q_s8(x + 16), vld1q_s8(y + 16));
            int32x4_t hi = mm16(vdupq_n_s32(0), u0[0], u0[1], vld1q_s8(x + 32), vld1q_s8(y + 32));
            hi = mm16(hi, u1[0], u1[1], vld1q_s8(x + 48), vld1q_s8(y + 48));
            S = vmlaq_s32(S, lo,
                          pair_rows_i((int32_t)((sc[0] >> (16 * k)) & 0xFF), (int32_t)((sc[1] >> (16 * k)) & 0xFF)));
            S = vmlaq_s32(
                S, hi,
                pair_rows_i((int32_t)((sc[0] >> (16 * k + 8)) & 0xFF), (int32_t)((sc[1] >> (16 * k + 8)) & 0xFF)));
        }
#define MINS(i, bp) vmlal_high_s16(vmull_s16(vget_low_s16(mn16[i]), vget_low_s16(bp)), mn16[i], bp)
        const int32x4_t M = total4(MINS(0, bp0), MINS(0, bp1), MINS(1, bp0), MINS(1, bp1));
#undef MINS
        const float32x4_t dac = pair_cols(a[0]->d, a[1]->d);
        acc = vfmaq_f32(acc, vcvtq_f32_s32(S), vmulq_f32(pair_rows(h2f(p[0]), h2f(p[1])), dac));
        acc = vfmsq_f32(acc, vcvtq_f32_s32(M), vmulq_f32(pair_rows(h2f(p[0] + 2), h2f(p[1] + 2)), dac));
    }
    store_2x2(acc, out, os);
}

AI TMM void q6K_mm(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, size_t act_row, float *out,
                   size_t os) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3), m30 = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[2] = {(const block_q8_K *)act + b, (const block_q8_K *)(act + act_row) + b};
        const block_q6_K *q6[2] = {(const block_q6_K *)w + b, (const block_q6_K *)(w + w_row) + b};
        prefetch_block(q6[0] + PF_BLOCKS, sizeof(block_q6_K));
        prefetch_block(q6[1] + PF_BLOCKS, sizeof(block_q6_K));
        int32x4_t S = vdupq_n_s32(0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            int8x16_t q[2][8];
            for (int i = 0; i < 2; i++) {
                const uint8_t *ql = q6[i]->ql + 64 * h, *qh = q6[i]->qh + 32 * h;
                const uint8x16_t L0 = vld1q_u8(ql), L1 = vld1q_u8(ql + 16), L2 = vld1q_u8(ql + 32),
                                 L3 = vld1q_u8(ql + 48);
                const uint8x16_t H0 = vld1q_u8(qh), H1 = vld1q_u8(qh + 16);
                uint8x16_t u[8]; /* as q6K_tile */
                u[0] = vorrq_u8(vandq_u8(L0, m4), vshlq_n_u8(vandq_u8(H0, m3), 4));
                u[1] = vorrq_u8(vandq_u8(L1, m4), vshlq_n_u8(vandq_u8(H1, m3), 4));
                u[2] = vorrq_u8(vandq_u8(L2, m4), vandq_u8(vshlq_n_u8(H0, 2), m30));
                u[3] = vorrq_u8(vandq_u8(L3, m4), vandq_u8(vshlq_n_u8(H1, 2), m30));
                u[4] = vorrq_u8(vshrq_n_u8(L0, 4), vandq_u8(H0, m30));
                u[5] = vorrq_u8(vshrq_n_u8(L1, 4), vandq_u8(H1, m30));
                u[6] = vorrq_u8(vshrq_n_u8(L2, 4), vandq_u8(vshrq_n_u8(H0, 2), m30));
                u[7] = vorrq_u8(vshrq_n_u8(L3, 4), vandq_u8(vshrq_n_u8(H1, 2), m30));
                for (int j = 0; j < 8; j++) q[i][j] = vsubq_s8(vreinterpretq_s8_u8(u[j]), k32);
            }
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const int32x4_t t = mm16(vdupq_n_s32(0), q[0][j], q[1][j], vld1q_s8(a[0]->qs + 128 * h + 16 * j),
                                         vld1q_s8(a[1]->qs + 128 * h + 16 * j));
                S = vmlaq_s32(S, t, pair_rows_i(q6[0]->scales[8 * h + j], q6[1]->scales[8 * h + j]));
            }
        }
        acc = vfmaq_f32(acc, vcvtq_f32_s32(S),
                        vmulq_f32(pair_rows(h2f(&q6[0]->d), h2f(&q6[1]->d)), pair_cols(a[0]->d, a[1]->d)));
    }
    store_2x2(acc, out, os);
}

/* tile kernels for TILE_SET: 2 x 2 through SMMLA, every other shape through the SDOT tiles */
#define MM_KERN(T, mm_call, dp_kern) \
    AI TMM void mmk_##T(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, \
                        float *o, size_t os) { \
        if (RB == 2 && CB == 2) mm_call; \
        else dp_kern(RB, CB, nb, w, wr, a, ar, o, os); \
    }
MM_KERN(Q4_0, q32_mm(GGML_Q4_0, nb, w, wr, a, ar, o, os), q32k_Q4_0_dp)
MM_KERN(Q4_1, q32_mm(GGML_Q4_1, nb, w, wr, a, ar, o, os), q32k_Q4_1_dp)
MM_KERN(Q5_0, q32_mm(GGML_Q5_0, nb, w, wr, a, ar, o, os), q32k_Q5_0_dp)
MM_KERN(Q5_1, q32_mm(GGML_Q5_1, nb, w, wr, a, ar, o, os), q32k_Q5_1_dp)
MM_KERN(Q8_0, q32_mm(GGML_Q8_0, nb, w, wr, a, ar, o, os), q32k_Q8_0_dp)
MM_KERN(Q4_K, q45K_mm(0, nb, w, wr, a, ar, o, os), q4Kk_dp)
MM_KERN(Q5_K, q45K_mm(1, nb, w, wr, a, ar, o, os), q5Kk_dp)
MM_KERN(Q6_K, q6K_mm(nb, w, wr, a, ar, o, os), q6K_tile_dp)
#undef MM_KERN
#define ISA_T TMM
TILE_SET(t_q4_0_mm, 2, 2, mmk_Q4_0)
TILE_SET(t_q4_1_mm, 2, 2, mmk_Q4_1)
TILE_SET(t_q5_0_mm, 2, 2, mmk_Q5_0)
TILE_SET(t_q5_1_mm, 2, 2, mmk_Q5_1)
TILE_SET(t_q8_0_mm, 2, 2, mmk_Q8_0)
TILE_SET(t_q4_K_mm, 2, 2, mmk_Q4_K)
TILE_SET(t_q5_K_mm, 2, 2, mmk_Q5_K)
TILE_SET(t_q6_K_mm, 2, 2, mmk_Q6_K)
#undef ISA_T

/* decode (one column) on the SDOT tiles, prefill on the SMMLA ones */
static void matmul_mm(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                      size_t act_row, int nc, float *out, size_t os) {
    const tile_set *t = NULL;
    switch (wtype) {
    case GGML_Q4_0: t = &t_q4_0_mm; break;
    case GGML_Q4_1: t = &t_q4_1_mm; break;
    case GGML_Q5_0: t = &t_q5_0_mm; break;
    case GGML_Q5_1: t = &t_q5_1_mm; break;
    case GGML_Q8_0: t = &t_q8_0_mm; break;
    case GGML_Q4_K: t = &t_q4_K_mm; break;
    case GGML_Q5_K: t = &t_q5_K_mm; break;
    case GGML_Q6_K: t = &t_q6_K_mm; break;
    default: break;
    }
    if (!t || nc == 1) {
        matmul_dp(wtype, n, w, w_row, nr, act, act_row, nc, out, os);
        return;
    }
    run_tiles(t, n / ggml_type_get(wtype)->block_size, w, w_row, nr, act, act_row, nc, out, os);
}
#endif

/* ---- the tables ------------------------------------------------------------------------------ */

static const kernel_ops NEON_OPS = {
    "neon", true, quantize_act_n, matmul_nn, attention_arm_neon, NULL, swiglu_arm_neon, f16_row_arm_neon, 0};
#if NEON_DP
static const kernel_ops DOTPROD_OPS = {
    "neon-dotprod", true, quantize_act_n, matmul_dp, attention_arm_neon, NULL, swiglu_arm_neon, f16_row_arm_neon, 0};
#endif
#if NEON_MM
static const kernel_ops I8MM_OPS = {
    "neon-i8mm", true, quantize_act_n, matmul_mm, attention_arm_neon, NULL, swiglu_arm_neon, f16_row_arm_neon, 0};
#endif

#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
__attribute__((unused)) static bool cpu_has_dotprod(void) { return (os_hwcap(1) & HWCAP_ASIMDDP) != 0; }
__attribute__((unused)) static bool cpu_has_i8mm(void) { return (os_hwcap(2) & HWCAP2_I8MM) != 0; }
#else /* no HWCAPs: what the compiler was told the CPU has */
__attribute__((unused)) static bool cpu_has_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return true;
#else
    return false;
#endif
}
__attribute__((unused)) static bool cpu_has_i8mm(void) {
#if defined(__ARM_FEATURE_MATMUL_INT8)
    return true;
#else
    return false;
#endif
}
#endif

const kernel_ops *kernels_neon(void) { return &NEON_OPS; } /* ASIMD is part of ARMv8-A */
#if NEON_DP
const kernel_ops *kernels_neon_dotprod(void) { return cpu_has_dotprod() ? &DOTPROD_OPS : NULL; }
#else
const kernel_ops *kernels_neon_dotprod(void) { return NULL; }
#endif
#if NEON_MM
const kernel_ops *kernels_neon_i8mm(void) { return cpu_has_dotprod() && cpu_has_i8mm() ? &I8MM_OPS : NULL; }
#else
const kernel_ops *kernels_neon_i8mm(void) { return NULL; }
#endif

#else /* not aarch64: no tables */
const kernel_ops *kernels_neon(void) { return 0; }
const kernel_ops *kernels_neon_dotprod(void) { return 0; }
const kernel_ops *kernels_neon_i8mm(void) { return 0; }
#endif
