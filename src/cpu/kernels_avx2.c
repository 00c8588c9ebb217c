/* kernels_avx2.c — the AVX2 (+ FMA, F16C) kernel table. Each function carries its own target
 * attribute, so a portable (-march=x86-64) build still contains the table and picks it at run
 * time; on other architectures the file only defines the getter, returning NULL.
 *
 * What is computed is exactly the scalar contract of kernels_scalar.c: the integer part of every
 * block dot product is the same integer (only the order of the float combination differs; every
 * output's order is fixed whatever tile computes it, and for the K-quants it is the AVX-512
 * table's: one float per output and block, so the two tables agree bit for bit there). Q4_K and
 * Q6_K matrices of a private weight copy are interleaved by 16 rows (packed_type; ggml_types.h)
 * and run as groups (run_groups). Integer tricks used:
 *  - u8 x s8 products (maddubs / vpdpbusd) need an unsigned operand: weights are kept unsigned
 *    (Q4_0 nibble 0..15, Q5_0 0..31, Q8_0 w^0x80) and off * sum(act) is subtracted afterwards;
 *    for K-quants the offsets are the mins (Q4_K/Q5_K, via bsums) or 32 * sum(sc * bsum) (Q6_K).
 *  - per-sub-block scales are applied as int16 x int16 pair products (vpdpwssd / pmaddwd) on the
 *    int16 pair sums of maddubs, which cannot saturate: |u| <= 63 and |act| <= 128.
 *  - AVX2 has no vpdpbusd; Q8_0 there uses |w| x sign(act, w), exact because activations made
 *    by quantize_row_q8_0 lie in [-127, 127].
 * A matmul is cut into tiles of RB weight rows x CB activation columns (run_tiles, tiles.h): each
 * weight block is unpacked once per tile and used for CB columns, each activation block is loaded
 * once per tile row; columns are processed in chunks whose activations fit in L2. */
#include "cpu/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "cpu/kernels_iq.h"
#include "cpu/tiles.h"
#include "formats/ggml_types.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define T2 __attribute__((target("avx2,fma,f16c")))

#define ISA_T T2

AI T2 float hsum256_2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* sum of u8 x s8 products in 4-byte groups; no saturation while |u * s| pairs fit int16 */
AI T2 __m256i dot4_2(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
/* 32 bits -> 32 bytes of 0x10 where the bit is set */
AI T2 __m256i bits_to_16_2(uint32_t h) {
    const __m256i sel = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), sel);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(16));
}

AI T2 __m256i q32_unpack2(uint32_t type, const uint8_t *p, float *d, float *m) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    switch (type) {
    case GGML_Q4_0:
    case GGML_Q4_1: {
        const uint8_t *qs = type == GGML_Q4_0 ? p + 2 : p + 4;
        __m128i q = _mm_loadu_si128((const __m128i *)qs);
        *d = _cvtsh_ss(((const uint16_t *)p)[0]);
        *m = type == GGML_Q4_1 ? _cvtsh_ss(((const uint16_t *)p)[1]) : 0;
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
    }
    case GGML_Q5_0:
    case GGML_Q5_1: {
        int hoff = type == GGML_Q5_0 ? 2 : 4;
        uint32_t h;
        memcpy(&h, p + hoff, 4);
        __m128i q = _mm_loadu_si128((const __m128i *)(p + hoff + 4));
        *d = _cvtsh_ss(((const uint16_t *)p)[0]);
        *m = type == GGML_Q5_1 ? _cvtsh_ss(((const uint16_t *)p)[1]) : 0;
        __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
        return _mm256_or_si256(u, bits_to_16_2(h));
    }
    default: /* Q8_0: signed weights, handled by the caller */
        *d = _cvtsh_ss(((const uint16_t *)p)[0]);
        *m = 0;
        return _mm256_loadu_si256((const __m256i *)(p + 2));
    }
}

AI T2 void q32_tile2(uint32_t type, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                     size_t act_row, float *out, size_t os) {
    const size_t bs = ggml_type_get(type)->type_size;
    const int off_shift = type == GGML_Q4_0 ? 3 : type == GGML_Q5_0 ? 4 : -1;
    const int has_m = type == GGML_Q4_1 || type == GGML_Q5_1, is_q8 = type == GGML_Q8_0;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i av[2], as[2];
        float da[2];
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) {
            const block_q8_0 *a = (const block_q8_0 *)(act + c * act_row) + b;
            av[c] = _mm256_loadu_si256((const __m256i *)a->qs);
            da[c] = _cvtsh_ss(a->d);
            as[c] = is_q8 ? _mm256_setzero_si256() : dot4_2(ones, av[c]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            float d, m;
            __m256i u = q32_unpack2(type, w + r * w_row + b * bs, &d, &m);
            __m256i uabs = is_q8 ? _mm256_abs_epi8(u) : u;
#pragma GCC unroll 2
            for (int c = 0; c < CB; c++) {
                __m256i dot = is_q8 ? dot4_2(uabs, _mm256_sign_epi8(av[c], u)) : dot4_2(u, av[c]);
                if (off_shift >= 0) dot = _mm256_sub_epi32(dot, _mm256_slli_epi32(as[c], off_shift));
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * da[c]), acc[r][c]);
                if (has_m) acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(as[c]), _mm256_set1_ps(m * da[c]), acc[r][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) out[c * os + r] = hsum256_2(acc[r][c]);
}

#define Q32_KERN2(T) \
    AI T2 void q32k2_##T(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, \
                         float *o, size_t os) { \
        q32_tile2(GGML_##T, RB, CB, nb, w, wr, a, ar, o, os); \
    }
Q32_KERN2(Q4_0)
Q32_KERN2(Q4_1)
Q32_KERN2(Q5_0)
Q32_KERN2(Q5_1)
Q32_KERN2(Q8_0)
TILE_SET(t2_q4_0, 4, 2, q32k2_Q4_0)
TILE_SET(t2_q4_1, 4, 2, q32k2_Q4_1)
TILE_SET(t2_q5_0, 4, 2, q32k2_Q5_0)
TILE_SET(t2_q5_1, 4, 2, q32k2_Q5_1)
TILE_SET(t2_q8_0, 4, 2, q32k2_Q8_0)

/* -- K-quants: the float order ----------------------------------------------------------------
 * Every K-quant output accumulates one float per block, as the AVX-512 and AMX tiles do
 * (kq_add5): S and M are the block's exact integers (the scalar contract's), then
 * acc = fma(S, d da, acc) and, for Q4_K / Q5_K, acc = fnma(M, dmin da, acc), d da and dmin da
 * rounded as float products. So the order does not depend on how a tile holds its integers,
 * and this table's K-quant outputs are the AVX-512 table's bit for bit (test_kernels). */

/* [total of a, of b, of c, of d] (each 8 int32 lanes; exact integers: any order) */
AI T2 __m128i hsum4x8_2(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i u = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}
/* the tiles below keep one float per output: acc[r] holds row r, a lane per column */
AI T2 void kq_store2(int RB, int CB, const __m128 *acc, float *out, size_t os) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        float o[4];
        _mm_storeu_ps(o, acc[r]);
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) out[c * os + r] = o[c];
    }
}

/* -- Q4_K / Q5_K x Q8_K, 256-bit: a vector holds one 32-weight sub-block ------------------ */

AI T2 void q45K_tile2(int is_q5, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                      size_t act_row, float *out, size_t os) {
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F), z = _mm256_setzero_si256();
    __m128 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[2];
        __m128i bs8[2];
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) {
            a[c] = (const block_q8_K *)(act + c * act_row) + b;
            bs8[c] = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a[c]->bsums),
                                    _mm_loadu_si128((const __m128i *)(a[c]->bsums + 8)));
        }
        const __m128 da = _mm_setr_ps(a[0]->d, CB > 1 ? a[1]->d : 0.0f, 0.0f, 0.0f);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            const uint16_t *dh = (const uint16_t *)p;
            const uint8_t *scales = p + 4, *qh = p + 16, *qs = is_q5 ? p + 48 : p + 16;
            uint64_t sc, mn;
            kq_unpack_scales(scales, &sc, &mn);
            const __m128i mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn));
            const __m256i hv = is_q5 ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
            __m256i isum[2] = {z, z};
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
                __m256i q0 = _mm256_and_si256(q, m4), q1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (is_q5) {
                    q0 = _mm256_or_si256(
                        q0, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * k), 4), _mm256_set1_epi8(16)));
                    q1 = _mm256_or_si256(q1, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * k + 1), 4),
                                                              _mm256_set1_epi8(16)));
                }
                const __m256i s0 = _mm256_set1_epi16((short)((sc >> (16 * k)) & 0xFF));
                const __m256i s1 = _mm256_set1_epi16((short)((sc >> (16 * k + 8)) & 0xFF));
#pragma GCC unroll 2
                for (int c = 0; c < CB; c++) {
                    const __m256i p0 =
                        _mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)(a[c]->qs + 64 * k)));
                    const __m256i p1 =
                        _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(a[c]->qs + 64 * k + 32)));
                    isum[c] = _mm256_add_epi32(isum[c],
                                               _mm256_add_epi32(_mm256_madd_epi16(p0, s0), _mm256_madd_epi16(p1, s1)));
                }
            }
            /* [S0, S1, M0, M1], then acc = fma(S, d da, acc), acc = fnma(M, dmin da, acc) */
            const __m256i m0 = _mm256_zextsi128_si256(_mm_madd_epi16(mn16, bs8[0]));
            const __m256i m1 = CB > 1 ? _mm256_zextsi128_si256(_mm_madd_epi16(mn16, bs8[1])) : z;
            const __m128 f = _mm_cvtepi32_ps(hsum4x8_2(isum[0], isum[1], m0, m1));
            acc[r] = _mm_fmadd_ps(f, _mm_mul_ps(_mm_set1_ps(_cvtsh_ss(dh[0])), da), acc[r]);
            acc[r] = _mm_fnmadd_ps(_mm_movehl_ps(f, f), _mm_mul_ps(_mm_set1_ps(_cvtsh_ss(dh[1])), da), acc[r]);
        }
    }
    kq_store2(RB, CB, acc, out, os);
}
AI T2 void q4Kk2(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o,
                 size_t os) {
    q45K_tile2(0, RB, CB, nb, w, wr, a, ar, o, os);
}
AI T2 void q5Kk2(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o,
                 size_t os) {
    q45K_tile2(1, RB, CB, nb, w, wr, a, ar, o, os);
}
/* Decode: 4 rows x one column, the same S, M and float step per output as q45K_tile2, with
 * the 4 rows' totals reduced together (a lane per row). */
AI T2 void q45K_dec2(int is_q5, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, float *out) {
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a = (const block_q8_K *)act + b;
        const __m128i bs8 = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a->bsums),
                                           _mm_loadu_si128((const __m128i *)(a->bsums + 8)));
        __m256i isum[4], mins[4];
        float d[4], dmin[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            prefetch_dec(p + DEC_PF_BLOCKS * bs, bs);
            const uint16_t *dh = (const uint16_t *)p;
            const uint8_t *qh = p + 16, *qs = is_q5 ? p + 48 : p + 16;
            d[r] = _cvtsh_ss(dh[0]);
            dmin[r] = _cvtsh_ss(dh[1]);
            uint64_t sc, mn;
            kq_unpack_scales(p + 4, &sc, &mn);
            mins[r] = _mm256_zextsi128_si256(_mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn)), bs8));
            const __m256i hv = is_q5 ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
            __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
                __m256i q0 = _mm256_and_si256(q, m4), q1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (is_q5) {
                    q0 = _mm256_or_si256(
                        q0, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * k), 4), _mm256_set1_epi8(16)));
                    q1 = _mm256_or_si256(q1, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * k + 1), 4),
                                                              _mm256_set1_epi8(16)));
                }
                const __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * k)));
                const __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * k + 32)));
                s = _mm256_add_epi32(
                    s,
                    _mm256_add_epi32(_mm256_madd_epi16(p0, _mm256_set1_epi16((short)((sc >> (16 * k)) & 0xFF))),
                                     _mm256_madd_epi16(p1, _mm256_set1_epi16((short)((sc >> (16 * k + 8)) & 0xFF)))));
            }
            isum[r] = s;
        }
        const __m128 da = _mm_set1_ps(a->d);
        const __m128 S = _mm_cvtepi32_ps(hsum4x8_2(isum[0], isum[1], isum[2], isum[3]));
        const __m128 M = _mm_cvtepi32_ps(hsum4x8_2(mins[0], mins[1], mins[2], mins[3]));
        acc = _mm_fmadd_ps(S, _mm_mul_ps(_mm_setr_ps(d[0], d[1], d[2], d[3]), da), acc);
        acc = _mm_fnmadd_ps(M, _mm_mul_ps(_mm_setr_ps(dmin[0], dmin[1], dmin[2], dmin[3]), da), acc);
    }
    _mm_storeu_ps(out, acc);
}
DEC_FN(q4K_dec2, q45K_dec2, 0)
DEC_FN(q5K_dec2, q45K_dec2, 1)
TILE_SET_DEC(t2_q4_K, 4, 2, q4Kk2, q4K_dec2)
TILE_SET_DEC(t2_q5_K, 4, 2, q5Kk2, q5K_dec2)

/* -- Q6_K x Q8_K, 256-bit: a vector holds 32 weights = two 16-weight sub-blocks ----------- */

AI T2 void q6K_tile2(int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, size_t act_row,
                     float *out, size_t os) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), z = _mm256_setzero_si256();
    __m128 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[2];
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) a[c] = (const block_q8_K *)(act + c * act_row) + b;
        const __m128 da = _mm_setr_ps(a[0]->d, CB > 1 ? a[1]->d : 0.0f, 0.0f, 0.0f);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const block_q6_K *q6 = (const block_q6_K *)(w + r * w_row) + b;
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q6->scales));
            const __m256i sc32 = _mm256_slli_epi16(sc16, 5);
            __m256i isum[2] = {z, z};
#pragma GCC unroll 2
            for (int c = 0; c < CB; c++)
                isum[c] =
                    _mm256_sub_epi32(z, _mm256_madd_epi16(sc32, _mm256_loadu_si256((const __m256i *)a[c]->bsums)));
            /* weights 32 j .. 32 j + 31 are sub-blocks 2j, 2j+1 */
            int16_t scv[16];
            _mm256_storeu_si256((__m256i *)scv, sc16);
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i hv = _mm256_loadu_si256((const __m256i *)(q6->qh + 32 * h));
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(q6->ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(q6->ql + 64 * h + 32));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m30));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30));
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const int sb = 8 * h + 2 * j;
                    const __m256i s = _mm256_set_m128i(_mm_set1_epi16(scv[sb + 1]), _mm_set1_epi16(scv[sb]));
#pragma GCC unroll 2
                    for (int c = 0; c < CB; c++) {
                        const __m256i pr = _mm256_maddubs_epi16(
                            q[j], _mm256_loadu_si256((const __m256i *)(a[c]->qs + 128 * h + 32 * j)));
                        isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(pr, s));
                    }
                }
            }
            const __m128 f = _mm_cvtepi32_ps(hsum4x8_2(isum[0], isum[1], z, z));
            acc[r] = _mm_fmadd_ps(f, _mm_mul_ps(_mm_set1_ps(_cvtsh_ss(q6->d)), da), acc[r]);
        }
    }
    kq_store2(RB, CB, acc, out, os);
}
TILE_SET(t2_q6_K, 4, 2, q6K_tile2)

/* -- Q4_K_X16 / Q6_K_X16 x Q8_K: 16 interleaved rows (the layout: ggml_types.h) ------------
 * A 256-bit half of a 64-byte X16 vector holds 4 consecutive weights (a quad) of each of 8
 * rows, so maddubs against the quad's 4 activations (broadcast) gives each row lane two int16
 * pair sums. The quads of one sub-block are summed in int16 (Q4_K: 8 quads, |sum| <= 8 * 2 *
 * 15 * 128 = 30720; Q6_K: 2 quads, <= 2 * 2 * 63 * 128 = 32256), then one madd with the
 * sub-block's scale (in both int16 halves of the lane) gives int32. A tile is 8 rows (a half of
 * the group) x CB columns, one float vector per column, so S, M and the float step are the
 * plain tiles' (see above), lane by lane. */
/* block bytes (decode prefetches as the plan says: tiles.h dec_pf_plan) */
enum { X16_BYTES2 = 16 * sizeof(block_q4_K), X16_BYTES62 = 16 * sizeof(block_q6_K) };

/* 8 int16 scales (one per row lane) -> the same scale in both int16 halves of each lane */
AI T2 __m256i x16_scdup2(__m128i s16) {
    const __m256i t = _mm256_cvtepu16_epi32(s16);
    return _mm256_or_si256(t, _mm256_slli_epi32(t, 16));
}
/* the 4 activations of quad k of a Q8_K block, broadcast to every row lane */
AI T2 __m256i x16_act2(const block_q8_K *a, int k) {
    int32_t x;
    memcpy(&x, a->qs + 4 * k, 4);
    return _mm256_set1_epi32(x);
}
/* (x, y) as the two int16 halves of one int32, broadcast */
AI T2 __m256i x16_pair2(int16_t x, int16_t y) {
    return _mm256_set1_epi32((int)((uint32_t)(uint16_t)x | (uint32_t)(uint16_t)y << 16));
}
/* 8 fp16 values of rows 8h..8h+7 at p + off, times da */
AI T2 __m256 x16_f2(const uint8_t *p, int off, int h, float da) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + off + 16 * h))), _mm256_set1_ps(da));
}

/* Q4_K_X16 scales of sub-block j (a byte per row) and its mins: the low 4 bits at [64, 192),
 * the high 2 at [192, 256) (bits 2e, 4 + 2e of byte (j / 2) * 16 + r, e = j & 1) */
AI T2 void x16_scmn2(const uint8_t *p, int j, __m128i *sc, __m128i *mn) {
    const __m128i m4 = _mm_set1_epi8(0x0F), m30 = _mm_set1_epi8(0x30);
    const __m128i lo = _mm_loadu_si128((const __m128i *)(p + 64 + 16 * j));
    const __m128i hi = _mm_loadu_si128((const __m128i *)(p + 192 + 16 * (j / 2)));
    const __m128i sh = (j & 1) ? _mm_slli_epi16(hi, 2) : _mm_slli_epi16(hi, 4);
    const __m128i mh = (j & 1) ? _mm_srli_epi16(hi, 2) : hi;
    *sc = _mm_or_si128(_mm_and_si128(lo, m4), _mm_and_si128(sh, m30));
    *mn = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(lo, 4), m4), _mm_and_si128(mh, m30));
}

/* One block of a Q4_K_X16 group, rows 8h..8h+7, CB columns, into acc[c] (a lane per row). */
AI T2 void x16_half2(int CB, int h, const uint8_t *p, const block_q8_K *const *a, __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i S[4], M[4];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) S[c] = M[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int jj = 0; jj < 4; jj++) { /* sub-blocks 2 jj (low nibbles) and 2 jj + 1 (high) */
        __m128i sc8[2], mn8[2];
        x16_scmn2(p, 2 * jj, &sc8[0], &mn8[0]);
        x16_scmn2(p, 2 * jj + 1, &sc8[1], &mn8[1]);
        /* M += (mn_2jj, mn_2jj+1) . (B_2jj, B_2jj+1) per row lane, B_j the 32-sums */
        const __m256i mp =
            _mm256_cvtepu8_epi16(h ? _mm_unpackhi_epi8(mn8[0], mn8[1]) : _mm_unpacklo_epi8(mn8[0], mn8[1]));
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            const int16_t *bs = a[c]->bsums + 4 * jj;
            M[c] = _mm256_add_epi32(
                M[c], _mm256_madd_epi16(mp, x16_pair2((int16_t)(bs[0] + bs[1]), (int16_t)(bs[2] + bs[3]))));
        }
#pragma GCC unroll 2
        for (int e = 0; e < 2; e++) {
            const __m256i sc = x16_scdup2(_mm_cvtepu8_epi16(h ? _mm_srli_si128(sc8[e], 8) : sc8[e]));
            __m256i P[4];
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) P[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) { /* quad 8 j + g, j = 2 jj + e: nibbles e of vector 8 jj + g */
                const __m256i v = _mm256_loadu_si256((const __m256i *)(p + 256 + 64 * (8 * jj + g) + 32 * h));
                const __m256i x = e ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4);
#pragma GCC unroll 4
                for (int c = 0; c < CB; c++)
                    P[c] = _mm256_add_epi16(P[c], _mm256_maddubs_epi16(x, x16_act2(a[c], 8 * (2 * jj + e) + g)));
            }
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) S[c] = _mm256_add_epi32(S[c], _mm256_madd_epi16(P[c], sc));
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) {
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[c]), x16_f2(p, 0, h, a[c]->d), acc[c]);
        acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M[c]), x16_f2(p, 32, h, a[c]->d), acc[c]);
    }
}

/* One block of a Q6_K_X16 group, rows 8h..8h+7: quads v (sub-block v / 4) and v + 32
 * (sub-block 8 + v / 4) share nibble vector v (at x16q6_nib(v)); their high bits sit in vector
 * v % 16 (at x16q6_hi), bits 2 (v / 16) and 4 + 2 (v / 16); scales (int8) of sub-block j at
 * x16q6_sc(j). S = sum_j sc_j (q_j . a_j) - 32 sum_j sc_j bsum_j. */
AI T2 void x16q6_half2(int CB, int h, const uint8_t *p, const block_q8_K *const *a, __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256i S[4];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) S[c] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) {
        __m256i P[2][4];
#pragma GCC unroll 2
        for (int u = 0; u < 2; u++)
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) P[u][c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const int v = 4 * (j & 7) + t;
            const __m256i n = _mm256_loadu_si256((const __m256i *)(p + x16q6_nib(v) + 32 * h));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(p + x16q6_hi(v % 16) + 32 * h));
            __m256i x;
            if (j < 8)
                x = _mm256_or_si256(
                    _mm256_and_si256(n, m4),
                    _mm256_and_si256(v < 16 ? _mm256_slli_epi16(hb, 4) : _mm256_slli_epi16(hb, 2), m30));
            else
                x = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(n, 4), m4),
                                    _mm256_and_si256(v < 16 ? hb : _mm256_srli_epi16(hb, 2), m30));
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++)
                P[t / 2][c] =
                    _mm256_add_epi16(P[t / 2][c], _mm256_maddubs_epi16(x, x16_act2(a[c], j < 8 ? v : v + 32)));
        }
        const __m256i sc = x16_scdup2(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(p + x16q6_sc(j) + 8 * h))));
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++)
            S[c] = _mm256_add_epi32(S[c],
                                    _mm256_add_epi32(_mm256_madd_epi16(P[0][c], sc), _mm256_madd_epi16(P[1][c], sc)));
    }
    /* the offset (sc_2i, sc_2i+1) . (bsum_2i, bsum_2i+1), times 32, after the quants: read
     * before them, the scales' lines spread over the block (ggml_types.h) are read ahead of the
     * stream, and decode from memory waits for them */
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(p + x16q6_sc(2 * i))),
                      y = _mm_loadu_si128((const __m128i *)(p + x16q6_sc(2 * i + 1)));
        const __m256i sp = _mm256_cvtepi8_epi16(h ? _mm_unpackhi_epi8(x, y) : _mm_unpacklo_epi8(x, y));
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++)
            S[c] = _mm256_sub_epi32(
                S[c],
                _mm256_slli_epi32(_mm256_madd_epi16(sp, x16_pair2(a[c]->bsums[2 * i], a[c]->bsums[2 * i + 1])), 5));
    }
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[c]), x16_f2(p, 0, h, a[c]->d), acc[c]);
}

/* One group of 16 rows x CB columns: a half at a time (the group's blocks stay in L1 / L2). */
AI T2 void x16_tile2(int q6, int CB, int64_t nb, const uint8_t *w, const uint8_t *act, size_t act_row, float *out,
                     size_t os) {
    const size_t bb = q6 ? X16_BYTES62 : X16_BYTES2;
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256 acc[4];
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const block_q8_K *a[4];
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) a[c] = (const block_q8_K *)(act + c * act_row) + b;
            if (q6) x16q6_half2(CB, h, w + b * bb, a, acc);
            else x16_half2(CB, h, w + b * bb, a, acc);
        }
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) _mm256_storeu_ps(out + c * os + 8 * h, acc[c]);
    }
}
/* Decode: one group, one column, both halves per block, prefetching as the plan says (tiles.h
 * dec_pf_plan) and one line DEC_TLB_BLOCKS ahead for its page's translation. */
AI T2 void x16_dec2(int q6, int loc, int64_t nb, const uint8_t *w, const uint8_t *act, float *out) {
    const size_t bb = q6 ? X16_BYTES62 : X16_BYTES2, ahead = (size_t)dec_pf_blocks() * bb,
                 far = (size_t)dec_pf_far() * bb;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[1] = {(const block_q8_K *)act + b};
        const uint8_t *p = w + b * bb;
        prefetch_loc(p + ahead, bb, loc);
        if (far) prefetch_loc(p + far, bb, PF_T1);
        if (DEC_TLB_BLOCKS) prefetch_page(p + DEC_TLB_BLOCKS * bb);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            if (q6) x16q6_half2(1, h, p, a, &acc[h]);
            else x16_half2(1, h, p, a, &acc[h]);
        }
    }
    _mm256_storeu_ps(out, acc[0]);
    _mm256_storeu_ps(out + 8, acc[1]);
}
/* 3 columns a tile: with 4, the int16 and int32 sums of 4 columns, the float accumulators and
 * the weights outgrow the 16 vector registers (docs/HARDWARE.md "What the code's choices measured") */
/* Few columns (2..FEW_MAX_COLS): the decode tile's one prefetched stream, each block's halves
 * computed for 3 columns at a time while the block is in L1 (x16_few5 in kernels_avx512.c). */
AI T2 void x16_cols2(int q6, int k, int h, const uint8_t *p, const block_q8_K *const *a, __m256 *acc) {
    switch (k) {
    case 1: q6 ? x16q6_half2(1, h, p, a, acc) : x16_half2(1, h, p, a, acc); break;
    case 2: q6 ? x16q6_half2(2, h, p, a, acc) : x16_half2(2, h, p, a, acc); break;
    default: q6 ? x16q6_half2(3, h, p, a, acc) : x16_half2(3, h, p, a, acc); break;
    }
}
AI T2 void x16_few2(int q6, int loc, int nc, int64_t nb, const uint8_t *w, const uint8_t *act, size_t act_row,
                    float *out, size_t os) {
    const size_t bb = q6 ? X16_BYTES62 : X16_BYTES2, ahead = (size_t)dec_pf_blocks() * bb,
                 far = (size_t)dec_pf_far() * bb;
    __m256 acc[2][FEW_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[0][c] = acc[1][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = w + b * bb;
        prefetch_loc(p + ahead, bb, loc);
        if (far) prefetch_loc(p + far, bb, PF_T1);
        if (DEC_TLB_BLOCKS) prefetch_page(p + DEC_TLB_BLOCKS * bb);
        const block_q8_K *a[FEW_MAX_COLS];
        for (int c = 0; c < nc; c++) a[c] = (const block_q8_K *)(act + c * act_row) + b;
        for (int h = 0; h < 2; h++)
            for (int c0 = 0; c0 < nc; c0 += 3) x16_cols2(q6, nc - c0, h, p, a + c0, acc[h] + c0);
    }
    for (int c = 0; c < nc; c++) {
        _mm256_storeu_ps(out + c * os, acc[0][c]);
        _mm256_storeu_ps(out + c * os + 8, acc[1][c]);
    }
}
GROUP_SET(t2_q4_K_x16, 3, x16_tile2, x16_dec2, x16_few2, 0)
GROUP_SET(t2_q6_K_x16, 3, x16_tile2, x16_dec2, x16_few2, 1)

/* -- float path ---------------------------------------------------------------------------- */

AI T2 void fdot_tile2(int RB, int CB, int m, const float *const *wr, const float *const *xc, float *out, size_t os,
                      int add) {
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= m; i += 8) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) wv[r] = _mm256_loadu_ps(wr[r] + i);
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) {
            __m256 x = _mm256_loadu_ps(xc[c] + i);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], x, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) {
            float s = hsum256_2(acc[r][c]);
            for (int j = i; j < m; j++) s += wr[r][j] * xc[c][j];
            out[c * os + r] = add ? out[c * os + r] + s : s;
        }
}
/* the float driver walks 4 x 4 tiles; with 16 ymm registers a 4 x 4 tile is two 4 x 2 */
static T2 void fdot_4x4_2(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile2(4, 2, m, w, x, o, os, add);
    fdot_tile2(4, 2, m, w, x + 2, o + 2 * os, os, add);
}
static T2 void fdot_4x1_2(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile2(4, 1, m, w, x, o, os, add);
}
static T2 void fdot_1x4_2(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile2(1, 2, m, w, x, o, os, add);
    fdot_tile2(1, 2, m, w, x + 2, o + 2 * os, os, add);
}
static T2 void fdot_1x1_2(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile2(1, 1, m, w, x, o, os, add);
}

static T2 void dequant_chunk2(uint32_t type, const uint8_t *row, int64_t k0, int m, float *dst) {
    if (type == GGML_F16) {
        const uint16_t *src = (const uint16_t *)row + k0;
        int i = 0;
        for (; i + 8 <= m; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
        for (; i < m; i++) dst[i] = _cvtsh_ss(src[i]);
    } else if (type == GGML_BF16) {
        const uint16_t *src = (const uint16_t *)row + k0;
        int i = 0;
        for (; i + 8 <= m; i += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        for (; i < m; i++) dst[i] = bf16_to_f32(src[i]);
    } else {
        const ggml_type_info *ti = ggml_type_get(type);
        dequantize_row(type, row + (size_t)(k0 / ti->block_size) * ti->type_size, dst, m);
    }
}

/* -- activation quantization ------------------------------------------------------------- */

AI T2 float hmax256_2(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* 8 int32 in [-128, 127] -> 8 bytes */
AI T2 void store8_i8_2(int8_t *dst, __m256i q) {
    __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    p = _mm_packs_epi16(p, p);
    _mm_storel_epi64((__m128i *)dst, p);
}

static T2 void quantize_q8_0_2(const float *x, block_q8_0 *y, int64_t n) {
    const __m256 signbit = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 32; j += 8) amax = _mm256_max_ps(_mm256_andnot_ps(signbit, _mm256_loadu_ps(x + j)), amax);
        float am = hmax256_2(amax);
        float d = am / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        __m256 vid = _mm256_set1_ps(id);
        for (int j = 0; j < 32; j += 8) {
            __m256 s = _mm256_mul_ps(_mm256_loadu_ps(x + j), vid);
            __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 frac = _mm256_andnot_ps(signbit, _mm256_sub_ps(s, t));
            __m256 up = _mm256_cmp_ps(frac, half, _CMP_GE_OQ);
            __m256 step = _mm256_and_ps(up, _mm256_or_ps(one, _mm256_and_ps(s, signbit)));
            store8_i8_2(y[i].qs + j, _mm256_cvtps_epi32(_mm256_add_ps(t, step)));
        }
    }
}

static T2 void quantize_q8_K_2(const float *x, block_q8_K *y, int64_t n) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) amax = _mm256_max_ps(_mm256_andnot_ps(signbit, _mm256_loadu_ps(x + j)), amax);
        float am = hmax256_2(amax);
        if (am == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0;
        __m256 vam = _mm256_set1_ps(am);
        for (int j = 0; j < QK_K; j += 8) {
            int k =
                _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(signbit, _mm256_loadu_ps(x + j)), vam, _CMP_EQ_OQ));
            if (k) {
                max = x[j + __builtin_ctz((unsigned)k)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 vis = _mm256_set1_ps(iscale);
        const __m256i lo = _mm256_set1_epi32(-128), hi = _mm256_set1_epi32(127);
        for (int j = 0; j < QK_K; j += 16) {
            __m256i q0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j)),
                                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i q1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j + 8)),
                                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            q0 = _mm256_min_epi32(_mm256_max_epi32(q0, lo), hi);
            q1 = _mm256_min_epi32(_mm256_max_epi32(q1, lo), hi);
            store8_i8_2(y[i].qs + j, q0);
            store8_i8_2(y[i].qs + j + 8, q1);
            __m256i s = _mm256_add_epi32(q0, q1);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_hadd_epi32(s4, s4);
            s4 = _mm_hadd_epi32(s4, s4);
            y[i].bsums[j / 16] = (int16_t)_mm_cvtsi128_si32(s4);
        }
        y[i].d = 1.0f / iscale;
    }
}

static T2 void quantize_act2(uint32_t act_type, const float *x, void *dst, int64_t n) {
    if (act_type == GGML_Q8_0) quantize_q8_0_2(x, dst, n);
    else if (act_type == GGML_Q8_K) quantize_q8_K_2(x, dst, n);
    else memcpy(dst, x, (size_t)n * sizeof(float));
}

static const fdot_fn FDOT2[4] = {fdot_4x4_2, fdot_4x1_2, fdot_1x4_2, fdot_1x1_2};

static void matmul2(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                    size_t act_row, int nc, float *out, size_t os) {
    const tile_set *t = NULL;
    switch (wtype) {
    case GGML_Q4_0: t = &t2_q4_0; break;
    case GGML_Q4_1: t = &t2_q4_1; break;
    case GGML_Q5_0: t = &t2_q5_0; break;
    case GGML_Q5_1: t = &t2_q5_1; break;
    case GGML_Q8_0: t = &t2_q8_0; break;
    case GGML_Q4_K: t = &t2_q4_K; break;
    case GGML_Q5_K: t = &t2_q5_K; break;
    case GGML_Q6_K: t = &t2_q6_K; break;
    case GGML_Q4_K_X16:
    case GGML_Q6_K_X16:
        run_groups(wtype == GGML_Q4_K_X16 ? &t2_q4_K_x16 : &t2_q6_K_x16, n / QK_K, w, w_row, nr, act, act_row, nc, out,
                   os);
        return;
    default:
        if ((t = iq_tiles_avx2(wtype)) != NULL) break; /* kernels_iq_x86.c */
        run_float(wtype, n, w, w_row, nr, act, act_row, nc, out, os, FDOT2, dequant_chunk2);
        return;
    }
    int64_t nb = n / ggml_type_get(wtype)->block_size;
    run_tiles(t, nb, w, w_row, nr, act, act_row, nc, out, os);
}
#undef ISA_T

/* Weights this table multiplies faster interleaved (ggml_types.h): Q4_K and Q6_K whose row
 * count is a multiple of 16 (the other X16 layouts have AVX-512 tiles only: their rows stay). */
static uint32_t avx2_packed_type(uint32_t wtype, int64_t n_rows) {
    return (wtype == GGML_Q4_K || wtype == GGML_Q6_K) && n_rows % X16_ROWS == 0 ? x16_type(wtype) : wtype;
}

static const kernel_ops AVX2_OPS = {
    "avx2",           true,        quantize_act2, matmul2, attention_x86_avx2, avx2_packed_type, swiglu_x86_avx2,
    f16_row_x86_avx2, FEW_MAX_COLS};

const kernel_ops *kernels_x86_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &AVX2_OPS : NULL;
}

#else /* not x86-64: no table */
const kernel_ops *kernels_x86_avx2(void) { return 0; }
#endif
