/* kernels_iq_x86.c — the importance-matrix types' tiles of the x86 tables (IQ1_S, IQ1_M,
 * IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S x Q8_K): iq_tiles_avx512 (AVX-512 VNNI, which the AMX
 * table reuses) and iq_tiles_avx2 hand kernels_avx512.c / kernels_avx2.c the tile_set of a type.
 * What is computed is the scalar truth of kernels_scalar.c: a block's exact integer total
 * S = sum_k ls[k] (q_k . a_k) (q the signed grid values, ls the 16-weight scales), then
 * acc = fma((float)S, f * da, acc), block after block, for every output whatever tile computes it.
 * Each block is decoded once per tile row into its weights (q + 64: unsigned bytes of at most 127,
 * so maddubs' pair sums cannot saturate) and its 16 scales; each column then takes maddubs and a
 * multiply-add with the scales (vpdpwssd on AVX-512), and the offset comes back out exactly as
 * 64 sum_k ls[k] bsum[k] (Q8_K's sums of 16). The grids are looked up with gathers (AVX-512) or
 * 64-bit loads (AVX2), the signs as bit masks (ksigns: 7 stored bits and their parity).
 * IQ2_XXS on AVX-512 VBMI takes another road (iqm5): magnitudes, with the sign put on the
 * activation, and no offset to take out. */
#include "cpu/kernels_iq.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "cpu/tiles.h"
#include "formats/ggml_types.h"
#include "formats/iq_grids.h"

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,bmi,bmi2")))
#define T2 __attribute__((target("avx2,fma,f16c")))

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
/* bytes i of v (7 bits each: ksigns' index) with their parity as bit 7: ksigns_iq2xs[b] for each byte */
static inline uint64_t ksigns8(uint64_t v) {
    uint64_t p = v ^ v >> 4;
    p ^= p >> 2;
    p ^= p >> 1;
    return v | (p & 0x0101010101010101ull) << 7;
}
/* the 7-bit sign fields 0, 7, 14, 21 of two IQ2_XXS / IQ3_XXS sign words, one per byte */
static inline uint64_t signs7x8(uint32_t s0, uint32_t s1) {
    uint64_t v = 0;
    for (int l = 0; l < 4; l++)
        v |= (uint64_t)(s0 >> 7 * l & 127) << 8 * l | (uint64_t)(s1 >> 7 * l & 127) << (8 * l + 32);
    return v;
}
/* signs7x8 with BMI2's pdep (fast on the cores that have AVX-512; slow on Zen 1 / 2, which do not) */
static inline __attribute__((target("bmi2"))) uint64_t signs7x8_pdep(uint32_t s0, uint32_t s1) {
    return _pdep_u64(s0, 0x7f7f7f7full) | _pdep_u64(s1, 0x7f7f7f7f00000000ull);
}
/* the block's factor f (kernels_iq.h) */
AI T2 float iq_f(uint32_t t, const uint8_t *p) { return iq_f_of(t, _cvtsh_ss(iq_d_bits(t, p))); }

/* ---- AVX-512 ------------------------------------------------------------------------------- */

/* A decoded block: w[j] weights 64 j .. 64 j + 63 as q + 64, ls the 16 scales (int16) */
typedef struct {
    __m512i w[4];
    __m256i ls;
} iqb5;
/* A block decoded as magnitudes and signs (types with 8 scales of 32 weights): m[j] |q| of
 * weights 64 j .. 64 j + 63, sg[4 + j] their sign mask (bit i: weight 64 j + i negative; sg[0..3]
 * scratch), sc[m] the scale of weights 32 m .. 32 m + 31 as two int16 (its low 32 bits) */
typedef struct {
    __m512i m[4];
    uint64_t sg[8];
    uint64_t sc[8];
} iqm5;

/* q + 64 from magnitudes g and a sign mask k (bit i: weight i negative) */
AI T5 __m512i signed64_5(__m512i g, __mmask64 k) {
    const __m512i c64 = _mm512_set1_epi8(64);
    return _mm512_mask_sub_epi8(_mm512_add_epi8(g, c64), k, c64, g);
}
/* 8 grid entries of 8 bytes by the indices i[0..7]: plain loads put together (on Zen 4 a gather
 * of 8 costs about as much as decoding the rest of the block) */
AI T5 __m512i grid8x8_5(const uint64_t *g, const unsigned *i) {
    const __m256i lo =
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set_epi64x((long long)g[i[1]], (long long)g[i[0]])),
                                _mm_set_epi64x((long long)g[i[3]], (long long)g[i[2]]), 1);
    const __m256i hi =
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set_epi64x((long long)g[i[5]], (long long)g[i[4]])),
                                _mm_set_epi64x((long long)g[i[7]], (long long)g[i[6]]), 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
/* 16 grid entries of 4 bytes by the indices i[0..15] */
AI T5 __m512i grid16x4_5(const uint32_t *g, const unsigned *i) {
    __m128i q[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        q[k] = _mm_set_epi32((int)g[i[4 * k + 3]], (int)g[i[4 * k + 2]], (int)g[i[4 * k + 1]], (int)g[i[4 * k]]);
    const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[1], 1);
    const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(q[2]), q[3], 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
/* the same two by gathers (idx: the indices' int32 lanes): faster where the indices are made in
 * vectors (IQ3_S, IQ1_S) */
AI T5 __m512i grid8x8g_5(const uint64_t *grid, __m256i idx) {
    return _mm512_i32gather_epi64(idx, (const void *)grid, 8);
}
AI T5 __m512i grid16x4g_5(const uint32_t *grid, __m512i idx) {
    return _mm512_i32gather_epi32(idx, (const void *)grid, 4);
}
/* 16 scales, each of 32 weights twice: from 8 values (int32 lanes) v, as 2 v + 1 */
AI T5 __m256i ls_pairs5(__m256i v) {
    const __m128i w = _mm256_cvtepi32_epi16(v);
    const __m256i d = _mm256_set_m128i(_mm_unpackhi_epi16(w, w), _mm_unpacklo_epi16(w, w));
    return _mm256_add_epi16(_mm256_add_epi16(d, d), _mm256_set1_epi16(1));
}
/* 16 scales of 16 weights from 8 bytes of two 4-bit scales each (low nibble first), 2 s + 1 */
AI T5 __m256i ls_nibbles5(uint64_t b) {
    const __m128i x = _mm_cvtsi64_si128((long long)b), m = _mm_set1_epi8(15);
    const __m128i n = _mm_unpacklo_epi8(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m));
    const __m256i w = _mm256_cvtepu8_epi16(n);
    return _mm256_add_epi16(_mm256_add_epi16(w, w), _mm256_set1_epi16(1));
}

AI T5 void iq2xxs_dec5(const uint8_t *p, iqb5 *b) {
    /* the scale: the top 4 bits of each 64-bit group (4 indices, then the sign word) */
    b->ls = ls_pairs5(_mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(p + 2), 60)));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const uint8_t *q = p + 2 + 16 * j;
        const unsigned i[8] = {q[0], q[1], q[2], q[3], q[8], q[9], q[10], q[11]};
        b->w[j] = signed64_5(grid8x8_5(iq2xxs_grid, i), ksigns8(signs7x8_pdep(rd32(q + 4), rd32(q + 12))));
    }
}
AI T5 void iq2xs_dec5(const uint8_t *p, iqb5 *b) {
    b->ls = ls_nibbles5(rd64(p + 66));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(p + 2 + 16 * j)); /* 8 x (index | signs << 9) */
        unsigned i[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) i[k] = rd16(p + 2 + 16 * j + 2 * k) & 511;
        const __m128i s7 = _mm_srli_epi16(v, 9);
        const uint64_t s = (uint64_t)_mm_cvtsi128_si64(_mm_packus_epi16(s7, s7));
        b->w[j] = signed64_5(grid8x8_5(iq2xs_grid, i), ksigns8(s));
    }
}
AI T5 void iq2s_dec5(const uint8_t *p, iqb5 *b) {
    b->ls = ls_nibbles5(rd64(p + 74));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        /* the indices' high 2 bits: qh[2j] for the first 4 entries, qh[2j + 1] for the next */
        const unsigned qh = rd16(p + 66 + 2 * j);
        unsigned i[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) i[k] = p[2 + 8 * j + k] | (qh >> 2 * k & 3) << 8;
        b->w[j] = signed64_5(grid8x8_5(iq2s_grid, i), rd64(p + 34 + 8 * j));
    }
}
AI T5 void iq3xxs_dec5(const uint8_t *p, iqb5 *b) {
    b->ls = ls_pairs5(_mm256_srli_epi32(_mm256_loadu_si256((const __m256i *)(p + 66)), 28));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        unsigned i[16];
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) i[k] = p[2 + 16 * j + k];
        b->w[j] =
            signed64_5(grid16x4_5(iq3xxs_grid, i), ksigns8(signs7x8_pdep(rd32(p + 66 + 8 * j), rd32(p + 70 + 8 * j))));
    }
}
AI T5 void iq3s_dec5(const uint8_t *p, iqb5 *b) {
    /* 8 scales of 32 weights, a nibble each */
    const uint32_t sc = rd32(p + 106);
    b->ls = ls_pairs5(
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sc), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                         _mm256_set1_epi32(15)));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 2 + 16 * j)));
        idx = _mm512_mask_or_epi32(idx, (__mmask16)rd16(p + 66 + 2 * j), idx, _mm512_set1_epi32(256));
        b->w[j] = signed64_5(grid16x4g_5(iq3s_grid, idx), rd64(p + 74 + 8 * j));
    }
}
/* IQ1: q = 8 g + delta (g: the grid's -1 / 0 / 1) as q + 64; neg: the weights whose delta is -1 */
AI T5 __m512i iq1_w5(__m512i g, __mmask64 neg) {
    const __m512i g8 = _mm512_and_si512(_mm512_slli_epi16(g, 3), _mm512_set1_epi8((char)0xf8)),
                  c65 = _mm512_set1_epi8(65);
    const __m512i w = _mm512_add_epi8(g8, c65);
    return _mm512_mask_sub_epi8(w, neg, w, _mm512_set1_epi8(2));
}
AI T5 void iq1s_dec5(const uint8_t *p, iqb5 *b) {
    const __m128i qh = _mm_loadu_si128((const __m128i *)(p + 34)); /* 8 x 16 bits: 4 x 3 index bits, scale, sign */
    b->ls = ls_pairs5(_mm256_cvtepu16_epi32(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7))));
    const __m256i sh = _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25);
    const uint32_t neg = (uint32_t)_mm_movemask_epi8(qh); /* bit 2 ib + 1: ib's delta is -1 */
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m256i hi =
            _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)rd32(p + 34 + 4 * j)), sh), _mm256_set1_epi32(7));
        const __m256i idx = _mm256_or_si256(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)rd64(p + 2 + 8 * j))),
                                            _mm256_slli_epi32(hi, 8));
        const __mmask64 k =
            (neg >> (4 * j + 1) & 1 ? 0xffffffffull : 0) | (neg >> (4 * j + 3) & 1 ? 0xffffffff00000000ull : 0);
        b->w[j] = iq1_w5(grid8x8g_5(iq1s_grid, idx), k);
    }
}
AI T5 void iq1m_dec5(const uint8_t *p, iqb5 *b) {
    /* 16 scales of 16 weights: 3 bits each, 4 to a 16-bit word of p + 48 */
    const __m256i words = _mm256_permutexvar_epi16(_mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                                   _mm256_castsi128_si256(_mm_cvtsi64_si128((long long)rd64(p + 48))));
    const __m256i s =
        _mm256_and_si256(_mm256_srlv_epi16(words, _mm256_setr_epi16(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9)),
                         _mm256_set1_epi16(7));
    b->ls = _mm256_add_epi16(_mm256_add_epi16(s, s), _mm256_set1_epi16(1));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        /* a nibble per grid entry: 3 index bits, the delta's sign */
        const uint64_t nib = _pdep_u64(rd32(p + 32 + 4 * j), 0x0f0f0f0f0f0f0f0full);
        unsigned i[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) i[k] = p[8 * j + k] | (unsigned)(nib >> 8 * k & 7) << 8;
        b->w[j] = iq1_w5(grid8x8_5(iq1s_grid, i), (nib >> 3 & 0x0101010101010101ull) * 0xff);
    }
}
AI T5 void iq_dec5(uint32_t t, const uint8_t *p, iqb5 *b) {
    switch (t) {
    case GGML_IQ2_XXS: iq2xxs_dec5(p, b); break;
    case GGML_IQ2_XS: iq2xs_dec5(p, b); break;
    case GGML_IQ2_S: iq2s_dec5(p, b); break;
    case GGML_IQ3_XXS: iq3xxs_dec5(p, b); break;
    case GGML_IQ3_S: iq3s_dec5(p, b); break;
    case GGML_IQ1_S: iq1s_dec5(p, b); break;
    default: iq1m_dec5(p, b); break;
    }
}

/* [total of a, b, c, d] (8 int32 lanes each; exact) */
AI T5 __m128i hsum4x8_5(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* RB rows x CB columns (<= 4 each) of type t: per block, each row decoded once; per output the
 * 8 lanes of S (the offset's 64 sum ls bsum taken out), then a lane per column:
 * acc[r] = fma(S, f da, acc[r]) */
typedef void (*iq_dec_fn)(uint32_t t, const uint8_t *p, iqb5 *b);
AI T5 void iq_tile5(uint32_t t, iq_dec_fn dec, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                    const uint8_t *act, size_t act_row, float *out, size_t os) {
    const size_t bs = iq_bytes(t);
    __m512i sidx[4]; /* int16 lane -> its scale: pairs 0-7 scale 4j, 8-15 4j + 1, ... */
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        sidx[j] = _mm512_inserti64x4(
            _mm512_castsi256_si512(
                _mm256_inserti128_si256(_mm256_set1_epi16((short)(4 * j)), _mm_set1_epi16((short)(4 * j + 1)), 1)),
            _mm256_inserti128_si256(_mm256_set1_epi16((short)(4 * j + 2)), _mm_set1_epi16((short)(4 * j + 3)), 1), 1);
    __m128 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[4];
        __m256i bsum[4];
        float da[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            a[c] = (const block_q8_K *)(act + c * act_row) + b;
            bsum[c] = _mm256_loadu_si256((const __m256i *)a[c]->bsums);
            da[c] = a[c]->d;
        }
        const __m128 da4 = _mm_loadu_ps(da);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            if (CB > 1) prefetch_block(p + PF_BLOCKS * bs, bs);
            else prefetch_dec(p + DEC_PF_BLOCKS * bs, bs);
            iqb5 q;
            dec(t, p, &q);
            __m512i sc[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) sc[j] = _mm512_permutexvar_epi16(sidx[j], _mm512_castsi256_si512(q.ls));
            __m256i s8[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) s8[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) {
                __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    isum = _mm512_dpwssd_epi32(
                        isum, _mm512_maddubs_epi16(q.w[j], _mm512_loadu_si512(a[c]->qs + 64 * j)), sc[j]);
                const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(q.ls, bsum[c]), 6);
                s8[c] = _mm256_sub_epi32(
                    _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1)), off);
            }
            const __m128 S = _mm_cvtepi32_ps(hsum4x8_5(s8[0], s8[1], s8[2], s8[3]));
            acc[r] = _mm_fmadd_ps(S, _mm_mul_ps(_mm_set1_ps(iq_f(t, p)), da4), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        float o[4];
        _mm_storeu_ps(o, acc[r]);
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) out[c * os + r] = o[c];
    }
}

/* The decode tile: 4 rows x 1 column. The same sums and the same float operations per output
 * as iq_tile5's (acc = fma(S, f da, acc) block after block), but the 4 rows' lane sums reduce
 * together, one horizontal sum per block for the 4 rows instead of one per row. */
AI T5 void iq_dec4x1_5(uint32_t t, iq_dec_fn dec, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                       float *out) {
    const size_t bs = iq_bytes(t);
    __m512i sidx[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        sidx[j] = _mm512_inserti64x4(
            _mm512_castsi256_si512(
                _mm256_inserti128_si256(_mm256_set1_epi16((short)(4 * j)), _mm_set1_epi16((short)(4 * j + 1)), 1)),
            _mm256_inserti128_si256(_mm256_set1_epi16((short)(4 * j + 2)), _mm_set1_epi16((short)(4 * j + 3)), 1), 1);
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a = (const block_q8_K *)act + b;
        const __m256i bsum = _mm256_loadu_si256((const __m256i *)a->bsums);
        __m512i av[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) av[j] = _mm512_loadu_si512(a->qs + 64 * j);
        __m256i s8[4];
        float f[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            prefetch_dec(p + DEC_PF_BLOCKS * bs, bs);
            iqb5 q;
            dec(t, p, &q);
            f[r] = iq_f(t, p);
            __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q.w[j], av[j]),
                                           _mm512_permutexvar_epi16(sidx[j], _mm512_castsi256_si512(q.ls)));
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(q.ls, bsum), 6);
            s8[r] = _mm256_sub_epi32(_mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1)),
                                     off);
        }
        const __m128 S = _mm_cvtepi32_ps(hsum4x8_5(s8[0], s8[1], s8[2], s8[3]));
        acc = _mm_fmadd_ps(S, _mm_mul_ps(_mm_loadu_ps(f), _mm_set1_ps(a->d)), acc);
    }
    _mm_storeu_ps(out, acc);
}

/* The tile set name##_t5 of type T: the tiles iq_tile5 and iq_dec4x1_5 over the decoder dec,
 * compiled for ISA (which ISA_T must name too). */
#define IQ_SET5(T, name, dec, ISA) \
    AI ISA void name##_k5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, \
                          float *o, size_t os) { \
        iq_tile5(GGML_##T, dec, RB, CB, nb, w, wr, a, ar, o, os); \
    } \
    AI ISA void name##_dk5(uint32_t t, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, float *o) { \
        iq_dec4x1_5(t, dec, nb, w, wr, a, o); \
    } \
    DEC_FN(name##_d5, name##_dk5, GGML_##T) \
    TILE_SET_DEC(name##_t5, 4, 4, name##_k5, name##_d5)
#define ISA_T T5
IQ_SET5(IQ2_XXS, iq2xxs, iq_dec5, T5)
IQ_SET5(IQ2_XS, iq2xs, iq_dec5, T5)
IQ_SET5(IQ2_S, iq2s, iq_dec5, T5)
IQ_SET5(IQ3_XXS, iq3xxs, iq_dec5, T5)
IQ_SET5(IQ3_S, iq3s, iq_dec5, T5)
IQ_SET5(IQ1_S, iq1s, iq_dec5, T5)
IQ_SET5(IQ1_M, iq1m, iq_dec5, T5)
#undef ISA_T

/* IQ3_XXS with AVX-512 VBMI: the grid looked up in registers instead of memory. Each grid entry's
 * 4 bytes take one of 8 values (4, 12, .., 52, 62), so an entry is a 12-bit code, 3 bits a byte
 * (IQ3XXS_CODE, made from iq3xxs_grid, formats/iq_grids.c): 32 indices look their codes up at
 * once (vpermi2w over the 8 registers of the 256 codes), vpmultishiftqb spreads each code's four
 * 3-bit fields to bytes and vpshufb maps them to the values. Bit for bit the grid's bytes. */
#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c,bmi,bmi2")))
/* The 256 codes of a 256-entry grid (8 registers) by 32 int16 indices: 4 vpermi2w, then picked
 * by the indices' bits 6 and 7 */
AI TV __m512i codes256v(const uint16_t *codes, __m512i idx) {
    const __m512i *tab = (const __m512i *)codes;
    const __m512i c01 = _mm512_permutex2var_epi16(_mm512_loadu_si512(tab), idx, _mm512_loadu_si512(tab + 1));
    const __m512i c23 = _mm512_permutex2var_epi16(_mm512_loadu_si512(tab + 2), idx, _mm512_loadu_si512(tab + 3));
    const __m512i c45 = _mm512_permutex2var_epi16(_mm512_loadu_si512(tab + 4), idx, _mm512_loadu_si512(tab + 5));
    const __m512i c67 = _mm512_permutex2var_epi16(_mm512_loadu_si512(tab + 6), idx, _mm512_loadu_si512(tab + 7));
    const __mmask32 b6 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(64)),
                    b7 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(128));
    return _mm512_mask_blend_epi16(b7, _mm512_mask_blend_epi16(b6, c01, c23), _mm512_mask_blend_epi16(b6, c45, c67));
}

static const uint16_t IQ3XXS_CODE[256] = {
    0x000, 0x002, 0x004, 0x009, 0x00b, 0x00f, 0x010, 0x012, 0x019, 0x022, 0x03b, 0x03d, 0x041, 0x043, 0x048, 0x04a,
    0x051, 0x055, 0x058, 0x05a, 0x061, 0x06c, 0x078, 0x080, 0x082, 0x084, 0x089, 0x090, 0x092, 0x099, 0x09b, 0x09f,
    0x0a9, 0x0af, 0x0bd, 0x0c1, 0x0c7, 0x0c8, 0x0ca, 0x0d5, 0x0f8, 0x10b, 0x11f, 0x124, 0x12f, 0x13b, 0x13d, 0x141,
    0x147, 0x15a, 0x16a, 0x19d, 0x1b4, 0x1c8, 0x1cc, 0x1ce, 0x1e3, 0x1f1, 0x201, 0x203, 0x208, 0x20a, 0x211, 0x213,
    0x218, 0x21a, 0x21c, 0x227, 0x228, 0x240, 0x242, 0x249, 0x250, 0x252, 0x281, 0x283, 0x288, 0x28a, 0x291, 0x298,
    0x2ba, 0x2c0, 0x2c2, 0x2d0, 0x2d9, 0x2e6, 0x2f6, 0x301, 0x305, 0x328, 0x350, 0x354, 0x366, 0x379, 0x385, 0x3d2,
    0x3e0, 0x400, 0x402, 0x409, 0x40b, 0x410, 0x412, 0x416, 0x419, 0x422, 0x441, 0x443, 0x445, 0x448, 0x44a, 0x451,
    0x458, 0x473, 0x477, 0x478, 0x480, 0x482, 0x489, 0x48f, 0x490, 0x492, 0x49f, 0x4a0, 0x4ad, 0x4c1, 0x4c8, 0x4cc,
    0x4f8, 0x4fc, 0x51d, 0x52b, 0x543, 0x557, 0x561, 0x57c, 0x5c1, 0x5c3, 0x5ce, 0x5e5, 0x601, 0x608, 0x60a, 0x611,
    0x613, 0x628, 0x635, 0x63a, 0x640, 0x642, 0x650, 0x659, 0x664, 0x666, 0x681, 0x683, 0x688, 0x695, 0x6aa, 0x6ba,
    0x6c9, 0x6db, 0x718, 0x727, 0x73a, 0x740, 0x746, 0x752, 0x76d, 0x78c, 0x79e, 0x7b3, 0x7db, 0x7f0, 0x804, 0x80f,
    0x81d, 0x81f, 0x82b, 0x82f, 0x87c, 0x890, 0x89f, 0x8a0, 0x8b0, 0x8b6, 0x8c7, 0x8e5, 0x904, 0x929, 0x934, 0x955,
    0x963, 0x978, 0x9c5, 0x9c8, 0x9ca, 0x9d8, 0xa0a, 0xa21, 0xa38, 0xa40, 0xa46, 0xa56, 0xa6d, 0xa8c, 0xa9a, 0xaba,
    0xac2, 0xaeb, 0xb08, 0xb13, 0xb17, 0xb3a, 0xb42, 0xb59, 0xba8, 0xbd4, 0xbe2, 0xc14, 0xc24, 0xc26, 0xc34, 0xc51,
    0xc71, 0xc8f, 0xcb4, 0xcd8, 0xcde, 0xd24, 0xd45, 0xd6a, 0xd9b, 0xdc3, 0xdd1, 0xe03, 0xe05, 0xe07, 0xe08, 0xe1a,
    0xe2a, 0xe56, 0xe60, 0xe8a, 0xea5, 0xeaa, 0xec0, 0xecd, 0xedb, 0xef0, 0xf11, 0xf21, 0xf40, 0xf42, 0xf54, 0xf98,
};
AI TV void iq3xxs_dec5v(uint32_t t, const uint8_t *p, iqb5 *b) {
    (void)t;
    const __m512i vals = _mm512_broadcast_i32x4(_mm_setr_epi8(4, 12, 20, 28, 36, 44, 52, 62, 0, 0, 0, 0, 0, 0, 0, 0));
    /* result byte 4 i + k (i < 2 in a qword) <- bits 32 i + 3 k of the qword */
    const __m512i ctrl = _mm512_set1_epi64((long long)0x2926232009060300ull);
    b->ls = ls_pairs5(_mm256_srli_epi32(_mm256_loadu_si256((const __m256i *)(p + 66)), 28));
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i idx = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p + 2 + 32 * h)));
        const __m512i code = codes256v(IQ3XXS_CODE, idx);
#pragma GCC unroll 2
        for (int q = 0; q < 2; q++) {
            const int j = 2 * h + q;
            const __m512i c32 =
                _mm512_cvtepu16_epi32(q ? _mm512_extracti64x4_epi64(code, 1) : _mm512_castsi512_si256(code));
            const __m512i f = _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, c32), _mm512_set1_epi8(7));
            b->w[j] = signed64_5(_mm512_shuffle_epi8(vals, f),
                                 ksigns8(signs7x8_pdep(rd32(p + 66 + 8 * j), rd32(p + 70 + 8 * j))));
        }
    }
}
/* IQ2_XXS decoded as magnitudes and signs (iqm5, for the tiles below). The grid's entries are
 * loaded as they are (8 bytes, |q|: no decoding is cheaper, and loads and inserts leave the
 * shuffle unit, which the rest needs, half free); the 32 sign fields are picked out of each 8-byte
 * group by one vpmultishiftqb and one vpermb and turned into sign bytes by ksigns (vpermi2b over
 * its 128 bytes); the 8 scales go to memory as int16 pairs, for iqm_sc's broadcasts. */
AI TV void iq2xxs_decm(const uint8_t *p, iqm5 *b) {
    /* in each 8-byte group: bytes 4-7 the 4 sign fields (7 bits from bits 32, 39, 46, 53) */
    const __m512i fields = _mm512_set1_epi64((long long)0x352e272018100800ull);
    static const uint8_t pick[64] = {0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
                                     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
                                     4,  5,  6,  7,  12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31,
                                     36, 37, 38, 39, 44, 45, 46, 47, 52, 53, 54, 55, 60, 61, 62, 63};
    const __m512i raw = _mm512_loadu_si512(p + 2);
    /* group m's scale 2 s + 1 (s: its bits 60-63) twice, as two int16, in b->sc[m] */
    const __m512i s = _mm512_or_si512(_mm512_slli_epi64(_mm512_srli_epi64(raw, 60), 1), _mm512_set1_epi64(1));
    _mm512_storeu_si512(b->sc, _mm512_or_si512(s, _mm512_slli_epi64(s, 16)));
    /* bytes 32-63: the 32 sign fields in order, then their sign bytes (sg[4 + j]: 8 of them) */
    const __m512i sf = _mm512_permutexvar_epi8(_mm512_loadu_si512(pick), _mm512_multishift_epi64_epi8(fields, raw));
    _mm512_storeu_si512(
        b->sg, _mm512_permutex2var_epi8(_mm512_loadu_si512(ksigns_iq2xs), sf, _mm512_loadu_si512(ksigns_iq2xs + 64)));
    /* read back from memory, not taken apart in registers (the compiler would: extracts and
     * broadcasts are shuffles; a load is not) */
    __asm__ volatile("" ::: "memory");
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const uint8_t *q = p + 2 + 16 * j;
        const unsigned i[8] = {q[0], q[1], q[2], q[3], q[8], q[9], q[10], q[11]};
        b->m[j] = grid8x8_5(iq2xxs_grid, i);
    }
}

/* The tiles of a type decoded as magnitudes and signs (iqm5; IQ2_XXS with VBMI). The sign goes to
 * the activation instead of the weight: q a = |q| (+-a), exact since Q8_K's values lie in
 * -127..127 (quantize_row_q8_K maps the largest magnitude to 127; test_kernels checks every
 * table's), so no negation overflows (only a NaN activation quantizes to -128, and then no
 * output means anything); maddubs takes |q| (unsigned) by +-a, and vpdpwssd the pair sums by
 * the group's scale, which a masked broadcast from memory lays over the vector's two halves (no
 * shuffle). Per block the same exact S and acc = fma(S, f da, acc) as iq_tile5. */
AI TV __m512i iqm_sc(const iqm5 *b, int j) {
    return _mm512_mask_set1_epi32(_mm512_set1_epi32((int)(uint32_t)b->sc[2 * j]), 0xff00,
                                  (int)(uint32_t)b->sc[2 * j + 1]);
}
/* the lane sums (8 int32) of row b by column a (4 x 64 values) */
AI TV __m256i iqm_dot(const iqm5 *b, const __m512i *sc, const __m512i *a) {
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512i sa = _mm512_mask_sub_epi8(a[j], _cvtu64_mask64(b->sg[4 + j]), _mm512_setzero_si512(), a[j]);
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(b->m[j], sa), sc[j]);
    }
    return _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1));
}
typedef void (*iqm_dec_fn)(const uint8_t *p, iqm5 *b);
AI TV void iqm_tile(uint32_t t, iqm_dec_fn dec, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                    const uint8_t *act, size_t act_row, float *out, size_t os) {
    const size_t bs = iq_bytes(t);
    __m128 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[4];
        float da[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            a[c] = (const block_q8_K *)(act + c * act_row) + b;
            da[c] = a[c]->d;
        }
        const __m128 da4 = _mm_loadu_ps(da);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            if (CB > 1) prefetch_block(p + PF_BLOCKS * bs, bs);
            else prefetch_dec(p + DEC_PF_BLOCKS * bs, bs);
            iqm5 q;
            dec(p, &q);
            __m512i sc[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) sc[j] = iqm_sc(&q, j);
            __m256i s8[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) s8[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) {
                __m512i av[4];
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) av[j] = _mm512_loadu_si512(a[c]->qs + 64 * j);
                s8[c] = iqm_dot(&q, sc, av);
            }
            const __m128 S = _mm_cvtepi32_ps(hsum4x8_5(s8[0], s8[1], s8[2], s8[3]));
            acc[r] = _mm_fmadd_ps(S, _mm_mul_ps(_mm_set1_ps(iq_f(t, p)), da4), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        float o[4];
        _mm_storeu_ps(o, acc[r]);
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) out[c * os + r] = o[c];
    }
}
/* the decode tile, 4 rows x 1 column: the rows' lane sums reduced together (as iq_dec4x1_5) */
AI TV void iqm_dec4x1(uint32_t t, iqm_dec_fn dec, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                      float *out) {
    const size_t bs = iq_bytes(t);
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a = (const block_q8_K *)act + b;
        __m512i av[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) av[j] = _mm512_loadu_si512(a->qs + 64 * j);
        __m256i s8[4];
        float f[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            prefetch_dec(p + DEC_PF_BLOCKS * bs, bs);
            iqm5 q;
            dec(p, &q);
            f[r] = iq_f(t, p);
            __m512i sc[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) sc[j] = iqm_sc(&q, j);
            s8[r] = iqm_dot(&q, sc, av);
        }
        const __m128 S = _mm_cvtepi32_ps(hsum4x8_5(s8[0], s8[1], s8[2], s8[3]));
        acc = _mm_fmadd_ps(S, _mm_mul_ps(_mm_loadu_ps(f), _mm_set1_ps(a->d)), acc);
    }
    _mm_storeu_ps(out, acc);
}
#define IQM_SET(T, name, dec) \
    AI TV void name##_k5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, \
                         float *o, size_t os) { \
        iqm_tile(GGML_##T, dec, RB, CB, nb, w, wr, a, ar, o, os); \
    } \
    AI TV void name##_dk5(uint32_t t, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, float *o) { \
        iqm_dec4x1(t, dec, nb, w, wr, a, o); \
    } \
    DEC_FN(name##_d5, name##_dk5, GGML_##T) \
    TILE_SET_DEC(name##_t5, 4, 4, name##_k5, name##_d5)
#define ISA_T TV
IQM_SET(IQ2_XXS, iq2xxsv, iq2xxs_decm)
IQ_SET5(IQ3_XXS, iq3xxsv, iq3xxs_dec5v, TV)
#undef ISA_T
#undef IQM_SET
#undef IQ_SET5

int iq_vbmi = -1;

const tile_set *iq_tiles_avx512(uint32_t t) {
    const bool vbmi = iq_vbmi < 0 ? __builtin_cpu_supports("avx512vbmi") : iq_vbmi > 0;
    switch (t) {
    case GGML_IQ2_XXS: return vbmi ? &iq2xxsv_t5 : &iq2xxs_t5;
    case GGML_IQ2_XS: return &iq2xs_t5;
    case GGML_IQ2_S: return &iq2s_t5;
    case GGML_IQ3_XXS: return vbmi ? &iq3xxsv_t5 : &iq3xxs_t5;
    case GGML_IQ3_S: return &iq3s_t5;
    case GGML_IQ1_S: return &iq1s_t5;
    case GGML_IQ1_M: return &iq1m_t5;
    default: return NULL;
    }
}

/* ---- AVX2 ---------------------------------------------------------------------------------- */

/* 32 bytes of 0xff / 0 from the 32 bits of m (byte i: bit i) */
AI T2 __m256i bytemask2(uint32_t m) {
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                         3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)m), sel), bit);
    return _mm256_cmpeq_epi8(v, bit);
}
/* q + 64 from 32 magnitudes g and the sign bits m */
AI T2 __m256i signed32_2(__m256i g, uint32_t m) {
    const __m256i c64 = _mm256_set1_epi8(64);
    return _mm256_blendv_epi8(_mm256_add_epi8(c64, g), _mm256_sub_epi8(c64, g), bytemask2(m));
}
AI T2 __m256i grid4x8_2(const uint64_t *grid, uint32_t i0, uint32_t i1, uint32_t i2, uint32_t i3) {
    return _mm256_setr_epi64x((long long)grid[i0], (long long)grid[i1], (long long)grid[i2], (long long)grid[i3]);
}
AI T2 __m256i grid8x4_2(const uint32_t *grid, const uint32_t *i) {
    return _mm256_setr_epi32((int)grid[i[0]], (int)grid[i[1]], (int)grid[i[2]], (int)grid[i[3]], (int)grid[i[4]],
                             (int)grid[i[5]], (int)grid[i[6]], (int)grid[i[7]]);
}
/* IQ1: 64 + 8 g + delta, delta -1 on the bytes of neg */
AI T2 __m256i iq1_w2(__m256i g, __m256i neg) {
    const __m256i g8 = _mm256_and_si256(_mm256_slli_epi16(g, 3), _mm256_set1_epi8((char)0xf8));
    return _mm256_sub_epi8(_mm256_add_epi8(g8, _mm256_set1_epi8(65)), _mm256_and_si256(neg, _mm256_set1_epi8(2)));
}

/* weights 32 ib .. 32 ib + 31 of a block as q + 64 */
AI T2 __m256i iq_w2(uint32_t t, const uint8_t *p, int ib) {
    switch (t) {
    case GGML_IQ2_XXS: {
        const uint32_t idx = rd32(p + 2 + 8 * ib), sg = rd32(p + 6 + 8 * ib);
        const __m256i g = grid4x8_2(iq2xxs_grid, idx & 255, idx >> 8 & 255, idx >> 16 & 255, idx >> 24);
        return signed32_2(g, (uint32_t)ksigns8(signs7x8(sg, 0)));
    }
    case GGML_IQ2_XS: {
        const uint8_t *q = p + 2 + 8 * ib;
        const uint16_t v0 = rd16(q), v1 = rd16(q + 2), v2 = rd16(q + 4), v3 = rd16(q + 6);
        const __m256i g = grid4x8_2(iq2xs_grid, v0 & 511, v1 & 511, v2 & 511, v3 & 511);
        const uint64_t s7 =
            (uint64_t)(v0 >> 9) | (uint64_t)(v1 >> 9) << 8 | (uint64_t)(v2 >> 9) << 16 | (uint64_t)(v3 >> 9) << 24;
        return signed32_2(g, (uint32_t)ksigns8(s7));
    }
    case GGML_IQ2_S: {
        const uint8_t *q = p + 2 + 4 * ib, h = p[66 + ib];
        const __m256i g = grid4x8_2(iq2s_grid, q[0] | (h & 3) << 8, q[1] | (h >> 2 & 3) << 8, q[2] | (h >> 4 & 3) << 8,
                                    q[3] | (uint32_t)(h >> 6) << 8);
        return signed32_2(g, rd32(p + 34 + 4 * ib));
    }
    case GGML_IQ3_XXS: {
        uint32_t i[8];
        for (int l = 0; l < 8; l++) i[l] = p[2 + 8 * ib + l];
        return signed32_2(grid8x4_2(iq3xxs_grid, i), (uint32_t)ksigns8(signs7x8(rd32(p + 66 + 4 * ib), 0)));
    }
    case GGML_IQ3_S: {
        uint32_t i[8];
        const uint8_t h = p[66 + ib];
        for (int l = 0; l < 8; l++) i[l] = p[2 + 8 * ib + l] | (uint32_t)(h >> l & 1) << 8;
        return signed32_2(grid8x4_2(iq3s_grid, i), rd32(p + 74 + 4 * ib));
    }
    case GGML_IQ1_S: {
        const uint8_t *q = p + 2 + 4 * ib;
        const uint16_t h = rd16(p + 34 + 2 * ib);
        const __m256i g = grid4x8_2(iq1s_grid, q[0] | (h & 7) << 8, q[1] | (h >> 3 & 7) << 8, q[2] | (h >> 6 & 7) << 8,
                                    q[3] | (h >> 9 & 7) << 8);
        return iq1_w2(g, _mm256_set1_epi8(h & 0x8000 ? -1 : 0));
    }
    default: { /* IQ1_M */
        const uint8_t *q = p + 4 * ib, h0 = p[32 + 2 * ib], h1 = p[33 + 2 * ib];
        const __m256i g = grid4x8_2(iq1s_grid, q[0] | (h0 & 7) << 8, q[1] | (h0 >> 4 & 7) << 8, q[2] | (h1 & 7) << 8,
                                    q[3] | (h1 >> 4 & 7) << 8);
        const uint32_t neg = (h0 >> 3 & 1) * 0xffu | (h0 >> 7 & 1) * 0xff00u | (h1 >> 3 & 1) * 0xff0000u |
                             (uint32_t)(h1 >> 7 & 1) * 0xff000000u;
        return iq1_w2(g, bytemask2(neg));
    }
    }
}

/* RB rows x CB columns (CB <= 2): iq_tile5's operations on 256-bit vectors, a vector per 32
 * weights; acc[r] holds row r, a lane per column */
AI T2 void iq_tile2(uint32_t t, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                    size_t act_row, float *out, size_t os) {
    const size_t bs = iq_bytes(t);
    const __m256i lohi = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                                          2, 3, 2, 3, 2, 3);
    __m128 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[2];
        __m256i bsum[2];
        float da[4] = {0, 0, 0, 0};
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) {
            a[c] = (const block_q8_K *)(act + c * act_row) + b;
            bsum[c] = _mm256_loadu_si256((const __m256i *)a[c]->bsums);
            da[c] = a[c]->d;
        }
        const __m128 da4 = _mm_loadu_ps(da);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            if (CB > 1) prefetch_block(p + PF_BLOCKS * bs, bs);
            else prefetch_dec(p + DEC_PF_BLOCKS * bs, bs);
            int16_t lsv[16];
            iq_ls(t, p, lsv);
            const __m256i ls = _mm256_loadu_si256((const __m256i *)lsv);
            __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 8
            for (int ib = 0; ib < 8; ib++) {
                const __m256i wv = iq_w2(t, p, ib);
                /* int16 lanes 0-7: the scale of the first 16 weights, 8-15: of the next */
                const __m256i sc = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(ls, _mm256_set1_epi32(ib)), lohi);
#pragma GCC unroll 2
                for (int c = 0; c < CB; c++)
                    isum[c] = _mm256_add_epi32(
                        isum[c],
                        _mm256_madd_epi16(
                            _mm256_maddubs_epi16(wv, _mm256_loadu_si256((const __m256i *)(a[c]->qs + 32 * ib))), sc));
            }
            __m256i s8[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 2
            for (int c = 0; c < CB; c++)
                s8[c] = _mm256_sub_epi32(isum[c], _mm256_slli_epi32(_mm256_madd_epi16(ls, bsum[c]), 6));
            const __m256i z = _mm256_setzero_si256();
            const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s8[0], s8[1]), _mm256_hadd_epi32(z, z));
            const __m128 S = _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
            acc[r] = _mm_fmadd_ps(S, _mm_mul_ps(_mm_set1_ps(iq_f(t, p)), da4), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        float o[4];
        _mm_storeu_ps(o, acc[r]);
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) out[c * os + r] = o[c];
    }
}

#define ISA_T T2
#define IQ_SET2(T, name) \
    AI T2 void name##_k2(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, \
                         float *o, size_t os) { \
        iq_tile2(GGML_##T, RB, CB, nb, w, wr, a, ar, o, os); \
    } \
    TILE_SET(name##_t2, 4, 2, name##_k2)
IQ_SET2(IQ2_XXS, iq2xxs)
IQ_SET2(IQ2_XS, iq2xs)
IQ_SET2(IQ2_S, iq2s)
IQ_SET2(IQ3_XXS, iq3xxs)
IQ_SET2(IQ3_S, iq3s)
IQ_SET2(IQ1_S, iq1s)
IQ_SET2(IQ1_M, iq1m)
#undef IQ_SET2
#undef ISA_T

const tile_set *iq_tiles_avx2(uint32_t t) {
    switch (t) {
    case GGML_IQ2_XXS: return &iq2xxs_t2;
    case GGML_IQ2_XS: return &iq2xs_t2;
    case GGML_IQ2_S: return &iq2s_t2;
    case GGML_IQ3_XXS: return &iq3xxs_t2;
    case GGML_IQ3_S: return &iq3s_t2;
    case GGML_IQ1_S: return &iq1s_t2;
    case GGML_IQ1_M: return &iq1m_t2;
    default: return NULL;
    }
}

#else /* not x86-64: no tiles */
int iq_vbmi = -1;

const tile_set *iq_tiles_avx512(uint32_t t) {
    (void)t;
    return NULL;
}
const tile_set *iq_tiles_avx2(uint32_t t) {
    (void)t;
    return NULL;
}
#endif
