/* kernels_attn_neon.c — the attention contract (kernels.h, truth in kernels_attn.c) with ARM64
 * NEON: a 16-lane vector is four float32x4 (the K cache is transposed in blocks of 16 positions),
 * the head dimension walked in order, fp16 (FCVTL) and int8 widened exactly. The body is
 * kernels_attn_body.inc, as for x86 (the SwiGLU contract too); -ffp-contract=off as the truth,
 * every fma named. Plain ASIMD, so all three NEON tables use it. */
#include "cpu/kernels.h"

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include "formats/ggml_types.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#define ATTR
#define AN static inline __attribute__((always_inline))
typedef struct {
    float32x4_t a, b, c, d;
} v16x4;
#define FN(x) x##_neon
#define NCH 4 /* 4 chains x 4 registers of accumulators, of 32 */
#define OB 1
typedef v16x4 V4;
#define V V4
AN V4 v4_set1(float x) {
    float32x4_t v = vdupq_n_f32(x);
    return (V4){v, v, v, v};
}
AN V4 v4_loadf(const void *p) {
    const float *f = p;
    return (V4){vld1q_f32(f), vld1q_f32(f + 4), vld1q_f32(f + 8), vld1q_f32(f + 12)};
}
AN float32x4_t h4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
AN V4 v4_loadh(const void *p) {
    const uint16_t *h = p;
    return (V4){h4(h), h4(h + 4), h4(h + 8), h4(h + 12)};
}
AN V4 v4_loadb(const void *p) {
    const int8x16_t x = vld1q_s8(p);
    const int16x8_t lo = vmovl_s8(vget_low_s8(x)), hi = vmovl_high_s8(x);
    return (V4){vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vcvtq_f32_s32(vmovl_high_s16(lo)),
                vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vcvtq_f32_s32(vmovl_high_s16(hi))};
}
AN void v4_store(float *p, V4 v) {
    vst1q_f32(p, v.a);
    vst1q_f32(p + 4, v.b);
    vst1q_f32(p + 8, v.c);
    vst1q_f32(p + 12, v.d);
}
AN V4 v4_fma(V4 a, V4 b, V4 c) { /* a * b + c, one rounding */
    return (V4){vfmaq_f32(c.a, a.a, b.a), vfmaq_f32(c.b, a.b, b.b), vfmaq_f32(c.c, a.c, b.c), vfmaq_f32(c.d, a.d, b.d)};
}
AN V4 v4_mul(V4 a, V4 b) {
    return (V4){vmulq_f32(a.a, b.a), vmulq_f32(a.b, b.b), vmulq_f32(a.c, b.c), vmulq_f32(a.d, b.d)};
}
AN V4 v4_add(V4 a, V4 b) {
    return (V4){vaddq_f32(a.a, b.a), vaddq_f32(a.b, b.b), vaddq_f32(a.c, b.c), vaddq_f32(a.d, b.d)};
}
AN V4 v4_sub(V4 a, V4 b) {
    return (V4){vsubq_f32(a.a, b.a), vsubq_f32(a.b, b.b), vsubq_f32(a.c, b.c), vsubq_f32(a.d, b.d)};
}
AN float v4_hmax(V4 v) { return vmaxvq_f32(vmaxq_f32(vmaxq_f32(v.a, v.b), vmaxq_f32(v.c, v.d))); }
AN float32x4_t pow2q(float32x4_t fn) { /* 2^fn for integral fn: ((int)fn + 127) << 23 */
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(fn), vdupq_n_s32(127)), 23));
}
AN V4 v4_pow2(V4 fn) { return (V4){pow2q(fn.a), pow2q(fn.b), pow2q(fn.c), pow2q(fn.d)}; }
AN float32x4_t keep_gt(float32x4_t v, float32x4_t x, float32x4_t l) { /* 0 where !(x > l), NaN too */
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), vcgtq_f32(x, l)));
}
AN V4 v4_keep_gt(V4 v, V4 x, float lim) {
    const float32x4_t l = vdupq_n_f32(lim);
    return (V4){keep_gt(v.a, x.a, l), keep_gt(v.b, x.b, l), keep_gt(v.c, x.c, l), keep_gt(v.d, x.d, l)};
}
AN V4 v4_div(V4 a, V4 b) {
    return (V4){vdivq_f32(a.a, b.a), vdivq_f32(a.b, b.b), vdivq_f32(a.c, b.c), vdivq_f32(a.d, b.d)};
}
AN V4 v4_negabs(V4 x) {
    return (V4){vnegq_f32(vabsq_f32(x.a)), vnegq_f32(vabsq_f32(x.b)), vnegq_f32(vabsq_f32(x.c)),
                vnegq_f32(vabsq_f32(x.d))};
}
AN float32x4_t sel_ge0(float32x4_t x, float32x4_t a, float32x4_t b) {
    return vbslq_f32(vcgeq_f32(x, vdupq_n_f32(0.0f)), a, b);
}
AN V4 v4_sel_ge0(V4 x, V4 a, V4 b) { /* x >= 0 ? a : b */
    return (V4){sel_ge0(x.a, a.a, b.a), sel_ge0(x.b, a.b, b.b), sel_ge0(x.c, a.c, b.c), sel_ge0(x.d, a.d, b.d)};
}
AN V4 v4_tail(V4 v, int nb) {
    float t[16];
    v4_store(t, v);
    for (int j = nb; j < 16; j++) t[j] = -INFINITY;
    return v4_loadf(t);
}
#define VZERO v4_set1(0.0f)
#define VSET1(x) v4_set1(x)
#define VLOADF(p) v4_loadf(p)
#define VLOADH(p) v4_loadh(p)
#define VLOADB(p) v4_loadb(p)
#define VSTORE(p, v) v4_store((p), (v))
#define VFMA(a, b, c) v4_fma((a), (b), (c))
#define VMUL(a, b) v4_mul((a), (b))
#define VADD(a, b) v4_add((a), (b))
#define VSUB(a, b) v4_sub((a), (b))
#define VHMAX(v) v4_hmax(v)
#define VPOW2(fn) v4_pow2(fn)
#define VKEEP_GT(v, x, lim) v4_keep_gt((v), (x), (lim))
#define VTAIL_NEGINF(v, nb) v4_tail((v), (nb))
#define VDIV(a, b) v4_div((a), (b))
#define VNEGABS(x) v4_negabs(x)
#define VSEL_GE0(x, a, b) v4_sel_ge0((x), (a), (b))
#include "cpu/kernels_attn_body.inc"

void attention_arm_neon(const attn_call *c) { attention_neon(c); }
void swiglu_arm_neon(float *g, const float *u, int64_t n) { swiglu_neon(g, u, n); }

/* F32 to F16 by FCVTN (round to nearest even in the default FPCR, subnormals kept); a NaN comes
 * out quieted with its payload's top bits, so NaN lanes are set to the truth's sign | 0x7e00. */
void f16_row_arm_neon(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        const uint16x4_t h = vreinterpret_u16_f16(vcvt_f16_f32(v));
        const uint16x4_t q = vorr_u16(vand_u16(h, vdup_n_u16(0x8000)), vdup_n_u16(0x7e00));
        const uint16x4_t nan = vmovn_u32(vmvnq_u32(vceqq_f32(v, v)));
        vst1_u16(y + i, vbsl_u16(nan, q, h));
    }
    for (; i < n; i++) y[i] = f32_to_fp16(x[i]);
}
#endif
