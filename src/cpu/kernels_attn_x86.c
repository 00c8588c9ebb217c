/* kernels_attn_x86.c — the attention contract (kernels.h, truth in kernels_attn.c) with
 * AVX-512 and with AVX2 + FMA + F16C: 16 keys per vector (the K cache is transposed in blocks
 * of 16 positions), the head dimension walked in order, fp16 and int8 widened exactly. The
 * body is kernels_attn_body.inc, included once per ISA; -ffp-contract=off as the truth. */
#include "cpu/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "formats/ggml_types.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- AVX-512: one __m512 per 16 lanes -------------------------------------------------------- */
#define ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define FN(x) x##_avx512
#define NCH 8 /* independent score chains (zmm accumulators) */
#define OB 4  /* queries whose outputs (4 zmm each) stay in registers over a V block */
typedef __m512 V;
#define VZERO _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOADF(p) _mm512_loadu_ps((const float *)(const void *)(p))
#define VLOADH(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define VLOADB(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))))
#define VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VSUB(a, b) _mm512_sub_ps((a), (b))
#define VHMAX(v) _mm512_reduce_max_ps(v)
#define VPOW2(fn) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fn), _mm512_set1_epi32(127)), 23))
#define VKEEP_GT(v, x, lim) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((x), _mm512_set1_ps(lim), _CMP_GT_OQ), (v))
#define VTAIL_NEGINF(v, nb) _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << (nb)) - 1), (v))
#define VDIV(a, b) _mm512_div_ps((a), (b))
#define VNEGABS(x) _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)))
#define VSEL_GE0(x, a, b) _mm512_mask_mov_ps((b), _mm512_cmp_ps_mask((x), _mm512_setzero_ps(), _CMP_GE_OQ), (a))
#include "cpu/kernels_attn_body.inc"
#undef ATTR
#undef FN
#undef NCH
#undef OB
#undef VZERO
#undef VSET1
#undef VLOADF
#undef VLOADH
#undef VLOADB
#undef VSTORE
#undef VFMA
#undef VMUL
#undef VADD
#undef VSUB
#undef VHMAX
#undef VPOW2
#undef VKEEP_GT
#undef VTAIL_NEGINF
#undef VDIV
#undef VNEGABS
#undef VSEL_GE0

/* ---- AVX2: two __m256 per 16 lanes ---------------------------------------------------------- */
#define ATTR __attribute__((target("avx2,fma,f16c")))
#define A2 static inline __attribute__((always_inline, target("avx2,fma,f16c")))
typedef struct {
    __m256 a, b;
} v16x2;
#define FN(x) x##_avx2
#define NCH 4
#define OB 1
typedef v16x2 V2;
#define V V2
A2 V2 v2_set1(float x) { return (V2){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
A2 V2 v2_loadf(const void *p) { return (V2){_mm256_loadu_ps(p), _mm256_loadu_ps((const float *)p + 8)}; }
A2 V2 v2_loadh(const void *p) {
    return (V2){_mm256_cvtph_ps(_mm_loadu_si128(p)), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p + 1))};
}
A2 V2 v2_loadb(const void *p) {
    __m128i x = _mm_loadu_si128(p);
    return (V2){_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(x, 8)))};
}
A2 void v2_store(float *p, V2 v) {
    _mm256_storeu_ps(p, v.a);
    _mm256_storeu_ps(p + 8, v.b);
}
A2 V2 v2_fma(V2 a, V2 b, V2 c) { return (V2){_mm256_fmadd_ps(a.a, b.a, c.a), _mm256_fmadd_ps(a.b, b.b, c.b)}; }
A2 V2 v2_mul(V2 a, V2 b) { return (V2){_mm256_mul_ps(a.a, b.a), _mm256_mul_ps(a.b, b.b)}; }
A2 V2 v2_add(V2 a, V2 b) { return (V2){_mm256_add_ps(a.a, b.a), _mm256_add_ps(a.b, b.b)}; }
A2 V2 v2_sub(V2 a, V2 b) { return (V2){_mm256_sub_ps(a.a, b.a), _mm256_sub_ps(a.b, b.b)}; }
A2 float v2_hmax(V2 v) {
    __m256 m = _mm256_max_ps(v.a, v.b);
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}
A2 __m256 v2_pow2h(__m256 fn) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fn), _mm256_set1_epi32(127)), 23));
}
A2 V2 v2_pow2(V2 fn) { return (V2){v2_pow2h(fn.a), v2_pow2h(fn.b)}; }
A2 V2 v2_keep_gt(V2 v, V2 x, float lim) {
    __m256 l = _mm256_set1_ps(lim);
    return (V2){_mm256_and_ps(v.a, _mm256_cmp_ps(x.a, l, _CMP_GT_OQ)),
                _mm256_and_ps(v.b, _mm256_cmp_ps(x.b, l, _CMP_GT_OQ))};
}
A2 V2 v2_div(V2 a, V2 b) { return (V2){_mm256_div_ps(a.a, b.a), _mm256_div_ps(a.b, b.b)}; }
A2 V2 v2_negabs(V2 x) {
    const __m256 s = _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN));
    return (V2){_mm256_or_ps(x.a, s), _mm256_or_ps(x.b, s)};
}
A2 V2 v2_sel_ge0(V2 x, V2 a, V2 b) { /* x >= 0 ? a : b */
    const __m256 z = _mm256_setzero_ps();
    return (V2){_mm256_blendv_ps(b.a, a.a, _mm256_cmp_ps(x.a, z, _CMP_GE_OQ)),
                _mm256_blendv_ps(b.b, a.b, _mm256_cmp_ps(x.b, z, _CMP_GE_OQ))};
}
A2 V2 v2_tail(V2 v, int nb) {
    float t[16];
    v2_store(t, v);
    for (int j = nb; j < 16; j++) t[j] = -INFINITY;
    return v2_loadf(t);
}
#define VZERO v2_set1(0.0f)
#define VSET1(x) v2_set1(x)
#define VLOADF(p) v2_loadf(p)
#define VLOADH(p) v2_loadh(p)
#define VLOADB(p) v2_loadb(p)
#define VSTORE(p, v) v2_store((p), (v))
#define VFMA(a, b, c) v2_fma((a), (b), (c))
#define VMUL(a, b) v2_mul((a), (b))
#define VADD(a, b) v2_add((a), (b))
#define VSUB(a, b) v2_sub((a), (b))
#define VHMAX(v) v2_hmax(v)
#define VPOW2(fn) v2_pow2(fn)
#define VKEEP_GT(v, x, lim) v2_keep_gt((v), (x), (lim))
#define VTAIL_NEGINF(v, nb) v2_tail((v), (nb))
#define VDIV(a, b) v2_div((a), (b))
#define VNEGABS(x) v2_negabs(x)
#define VSEL_GE0(x, a, b) v2_sel_ge0((x), (a), (b))
#include "cpu/kernels_attn_body.inc"

void attention_x86_avx512(const attn_call *c) { attention_avx512(c); }
void attention_x86_avx2(const attn_call *c) { attention_avx2(c); }
void swiglu_x86_avx512(float *g, const float *u, int64_t n) { swiglu_avx512(g, u, n); }
void swiglu_x86_avx2(float *g, const float *u, int64_t n) { swiglu_avx2(g, u, n); }

/* F32 to F16 by VCVTPS2PH, rounding to nearest even as the truth does; a NaN comes out quieted
 * with its payload's top bits, so NaN lanes are set to the truth's sign | 0x7e00. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void f16_row_x86_avx512(const float *x, uint16_t *y,
                                                                                  int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256i q =
            _mm256_or_si256(_mm256_and_si256(h, _mm256_set1_epi16((short)0x8000)), _mm256_set1_epi16(0x7e00));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_mask_mov_epi16(h, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), q));
    }
    for (; i < n; i++) y[i] = f32_to_fp16(x[i]);
}

__attribute__((target("avx2,f16c"))) void f16_row_x86_avx2(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256i nan32 = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        const __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan32), _mm256_extracti128_si256(nan32, 1));
        const __m128i q = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16((short)0x8000)), _mm_set1_epi16(0x7e00));
        _mm_storeu_si128((__m128i *)(y + i), _mm_blendv_epi8(h, q, nan16));
    }
    for (; i < n; i++) y[i] = f32_to_fp16(x[i]);
}
#endif
