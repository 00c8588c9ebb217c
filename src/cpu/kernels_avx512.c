/* kernels_avx512.c — the AVX-512 (VNNI) kernel table. Each function carries its own target
 * attribute, so a portable (-march=x86-64) build still contains the table and picks it at run
 * time; on other architectures the file only defines the getter, returning NULL. The AMX table
 * (kernels_amx.c) uses this table's activation quantizer and its tiles for what AMX does not take.
 *
 * What is computed is exactly the scalar contract of kernels_scalar.c: the integer part of every
 * block dot product is the same integer (only the order of the float combination differs; every
 * output's order is fixed whatever tile computes it, and for the K-quants it is the one the AMX
 * tiles use too: see kq_add5). Integer tricks used:
 *  - u8 x s8 products (maddubs / vpdpbusd) need an unsigned operand: weights are kept unsigned
 *    (Q4_0 nibble 0..15, Q5_0 0..31, Q8_0 w^0x80) and off * sum(act) is subtracted afterwards;
 *    for K-quants the offsets are the mins (Q4_K/Q5_K, via bsums) or 32 * sum(sc * bsum) (Q6_K).
 *  - per-sub-block scales are applied as int16 x int16 pair products (vpdpwssd / pmaddwd) on the
 *    int16 pair sums of maddubs, which cannot saturate: |u| <= 63 and |act| <= 128.
 * A matmul is cut into tiles of RB weight rows x CB activation columns (run_tiles, tiles.h): each
 * weight block is unpacked once per tile and used for CB columns, each activation block is loaded
 * once per tile row; columns are processed in chunks whose activations fit in L2. */
#include "cpu/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "cpu/kernels_avx512.h"
#include "cpu/kernels_iq.h"
#include "cpu/tiles.h"
#include "cpu/x16_stream5.h"
#include "formats/ggml_types.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

#define ISA_T T5

AI T5 float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }
AI T5 float hsum256_5(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* -- Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 x Q8_0, 256-bit vectors with VNNI ------------------- */

/* Unsigned weights of one 32-block (in weight order), its scale d, min m and offset. */
AI T5 __m256i q32_unpack5(uint32_t type, const uint8_t *p, float *d, float *m) {
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
        return _mm256_mask_add_epi8(u, (__mmask32)h, u, _mm256_set1_epi8(16));
    }
    default: /* Q8_0 */
        *d = _cvtsh_ss(((const uint16_t *)p)[0]);
        *m = 0;
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_epi8((char)0x80));
    }
}

AI T5 void q32_tile5(uint32_t type, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                     size_t act_row, float *out, size_t os) {
    const size_t bs = ggml_type_get(type)->type_size;
    const int off_shift = type == GGML_Q4_0 ? 3 : type == GGML_Q5_0 ? 4 : type == GGML_Q8_0 ? 7 : -1;
    const int has_m = type == GGML_Q4_1 || type == GGML_Q5_1;
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i av[4], as[4];
        float da[4];
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            const block_q8_0 *a = (const block_q8_0 *)(act + c * act_row) + b;
            av[c] = _mm256_loadu_si256((const __m256i *)a->qs);
            da[c] = _cvtsh_ss(a->d);
            as[c] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, av[c]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            float d, m;
            prefetch_block(w + r * w_row + (b + 4 * PF_BLOCKS) * bs, bs);
            __m256i u = q32_unpack5(type, w + r * w_row + b * bs, &d, &m);
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) {
                __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, av[c]);
                if (off_shift >= 0) dot = _mm256_sub_epi32(dot, _mm256_slli_epi32(as[c], off_shift));
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * da[c]), acc[r][c]);
                if (has_m) acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(as[c]), _mm256_set1_ps(m * da[c]), acc[r][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) out[c * os + r] = hsum256_5(acc[r][c]);
}

/* Decode tile of the 32-blocks: 4 rows x one column, q32_tile5's operations per row and block
 * (so bitwise its outputs) with the block size a constant and the activation work shared by
 * the rows. It stays on 256-bit vectors: pairing two rows in a 512-bit one halves the
 * instructions but leaves two vector ports instead of three, and measured slower. */
AI T5 void q32_dec5(uint32_t type, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, float *out) {
    const size_t bs = type == GGML_Q4_0   ? sizeof(block_q4_0)
                      : type == GGML_Q4_1 ? sizeof(block_q4_1)
                      : type == GGML_Q5_0 ? sizeof(block_q5_0)
                      : type == GGML_Q5_1 ? sizeof(block_q5_1)
                                          : sizeof(block_q8_0); /* a constant: prefetch_block unrolls */
    const int off_shift = type == GGML_Q4_0 ? 3 : type == GGML_Q5_0 ? 4 : type == GGML_Q8_0 ? 7 : -1;
    const int has_m = type == GGML_Q4_1 || type == GGML_Q5_1;
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_0 *a = (const block_q8_0 *)act + b;
        const __m256i av = _mm256_loadu_si256((const __m256i *)a->qs);
        const float da = _cvtsh_ss(a->d);
        const __m256i as = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, av);
        const __m256i off = off_shift >= 0 ? _mm256_slli_epi32(as, off_shift) : as;
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            prefetch_dec(p + 4 * DEC_PF_BLOCKS * bs, bs);
            float d, m;
            __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q32_unpack5(type, p, &d, &m), av);
            if (off_shift >= 0) dot = _mm256_sub_epi32(dot, off);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * da), acc[r]);
            if (has_m) acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(as), _mm256_set1_ps(m * da), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) out[r] = hsum256_5(acc[r]);
}

#define Q32_KERN5(T) \
    AI T5 void q32k5_##T(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, \
                         float *o, size_t os) { \
        q32_tile5(GGML_##T, RB, CB, nb, w, wr, a, ar, o, os); \
    } \
    static T5 void q32d5_##T(int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o, \
                             size_t os) { \
        (void)ar, (void)os; \
        q32_dec5(GGML_##T, nb, w, wr, a, o); \
    }
Q32_KERN5(Q4_0)
Q32_KERN5(Q4_1)
Q32_KERN5(Q5_0)
Q32_KERN5(Q5_1)
Q32_KERN5(Q8_0)
TILE_SET_DEC(t5_q4_0, 4, 4, q32k5_Q4_0, q32d5_Q4_0)
TILE_SET_DEC(t5_q4_1, 4, 4, q32k5_Q4_1, q32d5_Q4_1)
TILE_SET_DEC(t5_q5_0, 4, 4, q32k5_Q5_0, q32d5_Q5_0)
TILE_SET_DEC(t5_q5_1, 4, 4, q32k5_Q5_1, q32d5_Q5_1)
TILE_SET_DEC(t5_q8_0, 4, 4, q32k5_Q8_0, q32d5_Q8_0)

/* -- K-quants: the float combination (shared with the AMX tiles) ---------------------------
 * The integer part of a 256-weight block is reduced to exact int32 totals per output:
 *   S = sum_j sc_j (q_j . a_j)  (Q6_K: minus 32 sum_j sc_j bsum_j),   M = sum_j mn_j bsum_j,
 * and the block is then added in float by one fixed formula, block after block from 0:
 *   acc = fma((float)S, d * da, acc);   acc = fnma((float)M, dmin * da, acc)   (no M for Q6_K).
 * The AMX tiles (one lane per column) do exactly this, so every output is bitwise the same
 * whatever table or tile computes it. Here the lanes of a __m128 are up to 4 outputs of a tile:
 * the 4 columns of a row, or (one column) 4 rows. */
AI T5 __m256i fold512_5(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}
/* [total v0, total v1, total v2, total v3] of 8-lane int32 vectors (exact: integers wrap alike) */
AI T5 __m128i hsum4x8_5(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
/* Adds one block to acc for cnt (1..4) outputs: s[k], m[k] the int32 partial sums of output k,
 * dd / dm lanes d * da and dmin * da. Lanes >= cnt of the result are garbage, never stored. */
AI T5 __m128 kq_add5(__m128 acc, int cnt, int has_m, const __m256i *s, const __m256i *m, __m128 dd, __m128 dm) {
    const __m256i z = _mm256_setzero_si256();
    if (cnt == 1 && !has_m) {
        __m256i h = _mm256_hadd_epi32(s[0], s[0]);
        __m128i x = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        return _mm_fmadd_ss(_mm_cvtepi32_ps(_mm_hadd_epi32(x, x)), dd, acc);
    }
    if (cnt <= 2 && has_m) { /* [S0, S1, M0, M1] in one pass */
        __m128 f = _mm_cvtepi32_ps(hsum4x8_5(s[0], cnt > 1 ? s[1] : z, m[0], cnt > 1 ? m[1] : z));
        acc = _mm_fmadd_ps(f, dd, acc);
        return _mm_fnmadd_ps(_mm_movehl_ps(f, f), dm, acc);
    }
    __m128 fs = _mm_cvtepi32_ps(hsum4x8_5(s[0], cnt > 1 ? s[1] : z, cnt > 2 ? s[2] : z, cnt > 3 ? s[3] : z));
    acc = _mm_fmadd_ps(fs, dd, acc);
    if (has_m) {
        __m128 fm = _mm_cvtepi32_ps(hsum4x8_5(m[0], m[1], cnt > 2 ? m[2] : z, cnt > 3 ? m[3] : z));
        acc = _mm_fnmadd_ps(fm, dm, acc);
    }
    return acc;
}
/* out from the accumulators: CB > 1: acc[r] lane c; CB == 1: acc[r / 4] lane r % 4 */
AI T5 void kq_store5(int RB, int CB, const __m128 *acc, float *out, size_t os) {
    float t[8][4];
    for (int i = 0; i < (CB > 1 ? RB : (RB + 3) / 4); i++) _mm_storeu_ps(t[i], acc[i]);
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) out[c * os + r] = CB > 1 ? t[r][c] : t[r / 4][r % 4];
}

/* -- Q4_K / Q5_K x Q8_K, 512-bit: a vector holds two 32-weight sub-blocks (2c, 2c+1) ------ */

AI T5 void q45K_tile5(int is_q5, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                      size_t act_row, float *out, size_t os) {
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    /* int16 lane -> scale index: lanes 0..15 sub-block 2c, 16..31 sub-block 2c+1 */
    __m512i sidx[4], hbit[4];
    for (int c = 0; c < 4; c++) {
        sidx[c] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
        hbit[c] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))), _mm256_set1_epi8((char)(2 << (2 * c))), 1);
    }
    __m128 acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) acc[i] = _mm_setzero_ps();
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
        __m256i ps[4], pm[4]; /* one column: the pending rows of a group of 4 */
        float pd[4] = {0, 0, 0, 0}, pdm[4] = {0, 0, 0, 0};
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            prefetch_block(p + PF_BLOCKS * bs, bs);
            const uint16_t *dh = (const uint16_t *)p;
            const uint8_t *scales = p + 4, *qh = p + 16, *qs = is_q5 ? p + 48 : p + 16;
            uint64_t sc, mn;
            kq_unpack_scales(scales, &sc, &mn);
            __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
            /* each min twice, against the two 16-sums of its 32 weights */
            __m128i mnb = _mm_cvtsi64_si128((long long)mn);
            __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mnb, mnb));
            const float d = _cvtsh_ss(dh[0]), dmin = _cvtsh_ss(dh[1]);
            __m512i hz =
                is_q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh)) : _mm512_setzero_si512();
            __m512i isum[4];
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) isum[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * k)));
                q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4), m4);
                if (is_q5) q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hz, hbit[k]), q, sixteen);
                __m512i s = _mm512_permutexvar_epi16(sidx[k], sc16);
#pragma GCC unroll 4
                for (int c = 0; c < CB; c++) {
                    __m512i p16 = _mm512_maddubs_epi16(q, _mm512_loadu_si512(a[c]->qs + 64 * k));
                    isum[c] = _mm512_dpwssd_epi32(isum[c], p16, s);
                }
            }
            if (CB > 1) {
                __m256i s8[4], m8[4];
#pragma GCC unroll 4
                for (int c = 0; c < CB; c++) {
                    s8[c] = fold512_5(isum[c]);
                    m8[c] = _mm256_madd_epi16(mn16, bsum[c]);
                }
                acc[r] =
                    kq_add5(acc[r], CB, 1, s8, m8, _mm_mul_ps(_mm_set1_ps(d), da4), _mm_mul_ps(_mm_set1_ps(dmin), da4));
            } else {
                ps[r % 4] = fold512_5(isum[0]);
                pm[r % 4] = _mm256_madd_epi16(mn16, bsum[0]);
                pd[r % 4] = d;
                pdm[r % 4] = dmin;
                if (r % 4 == 3 || r == RB - 1)
                    acc[r / 4] =
                        kq_add5(acc[r / 4], r % 4 + 1, 1, ps, pm, _mm_mul_ps(_mm_loadu_ps(pd), _mm_set1_ps(da[0])),
                                _mm_mul_ps(_mm_loadu_ps(pdm), _mm_set1_ps(da[0])));
            }
        }
    }
    kq_store5(RB, CB, acc, out, os);
}

AI T5 void q4Kk5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o,
                 size_t os) {
    q45K_tile5(0, RB, CB, nb, w, wr, a, ar, o, os);
}
AI T5 void q5Kk5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o,
                 size_t os) {
    q45K_tile5(1, RB, CB, nb, w, wr, a, ar, o, os);
}

/* Decode tile of Q4_K / Q5_K: 4 rows x one column, the same exact integer totals S and M and
 * the same float formula as q45K_tile5 (so bitwise its outputs), with the per-block work that
 * does not touch the weights done for the 4 rows together in vector registers: the 16 header
 * bytes of each row (d, dmin, 12 scale bytes) are unpacked side by side in one 512-bit vector,
 * and the min term of the 4 rows is one multiply-add. */
AI T5 void q45K_dec5(int is_q5, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, float *out) {
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    /* header lane [h, u0, u1, u2] -> [sc0-3, mn0-3, sc4-7, mn4-7] (kq_unpack_scales, by dwords) */
    const __m512i lo_mask = _mm512_set4_epi32(0x0F0F0F0F, 0x0F0F0F0F, 0x3F3F3F3F, 0x3F3F3F3F);
    const __m512i hi_mask = _mm512_set4_epi32(0x30303030, 0x30303030, 0, 0);
    const __m512i shift4 = _mm512_set4_epi32(4, 0, 0, 0);
    /* in-lane byte shuffles (vpshufb; index bit 7 = zero byte) of the unpacked headers to int16
     * lanes: the scale of sub-block 2k in lanes 0..15 and of 2k+1 in lanes 16..31 (from the
     * header broadcast to all 4 lanes), and the 8 mins of each row in its own 128-bit lane */
    __m512i sidx[4], midx, lane_r[4];
    for (int r = 0; r < 4; r++) lane_r[r] = _mm512_add_epi32(_mm512_set1_epi32(4 * r), _mm512_set4_epi32(3, 2, 1, 0));
    for (int k = 0; k < 4; k++) {
        const int lo = 2 * k < 4 ? 2 * k : 2 * k + 4, hi = 2 * k + 1 < 4 ? 2 * k + 1 : 2 * k + 5;
        sidx[k] =
            _mm512_inserti64x4(_mm512_set1_epi16((short)(0x8000 | lo)), _mm256_set1_epi16((short)(0x8000 | hi)), 1);
    }
    {
        short m[32];
        for (int i = 0; i < 32; i++) m[i] = (short)(0x8000 | (i % 8 < 4 ? 4 + i % 8 : 8 + i % 8));
        midx = _mm512_loadu_si512(m);
    }
    const __m512i hb[4] = {_mm512_inserti64x4(_mm512_set1_epi8(1), _mm256_set1_epi8(2), 1),
                           _mm512_inserti64x4(_mm512_set1_epi8(4), _mm256_set1_epi8(8), 1),
                           _mm512_inserti64x4(_mm512_set1_epi8(16), _mm256_set1_epi8(32), 1),
                           _mm512_inserti64x4(_mm512_set1_epi8(64), _mm256_set1_epi8((char)128), 1)};
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a = (const block_q8_K *)act + b;
        const __m512i a0 = _mm512_loadu_si512(a->qs), a1 = _mm512_loadu_si512(a->qs + 64);
        const __m512i a2 = _mm512_loadu_si512(a->qs + 128), a3 = _mm512_loadu_si512(a->qs + 192);
        const uint8_t *p[4];
        for (int r = 0; r < 4; r++) {
            p[r] = w + r * w_row + b * bs;
            prefetch_dec(p[r] + DEC_PF_BLOCKS * bs, bs);
        }
        __m512i h = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p[0]));
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)p[1]), 1);
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)p[2]), 2);
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)p[3]), 3);
        const __m512i x = _mm512_shuffle_epi32(h, (_MM_PERM_ENUM)0xF9); /* [u0, u1, u2, u2] */
        const __m512i y = _mm512_shuffle_epi32(h, (_MM_PERM_ENUM)0x9F); /* [u2, u2, u0, u1] */
        const __m512i sm = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srlv_epi32(x, shift4), lo_mask),
                                                     _mm512_srli_epi32(y, 2), hi_mask, 0xF8); /* A | (B & C) */
        __m512i isum[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *qs = is_q5 ? p[r] + 48 : p[r] + 16;
            const __m512i hz = is_q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p[r] + 16)))
                                     : _mm512_setzero_si512();
            const __m512i smr = _mm512_permutexvar_epi32(lane_r[r], sm); /* row r's header in every lane */
            __m512i acc_i = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * k)));
                q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4), m4);
                if (is_q5) q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hz, hb[k]), q, sixteen);
                const __m512i sc = _mm512_shuffle_epi8(smr, sidx[k]);
                const __m512i av = k == 0 ? a0 : k == 1 ? a1 : k == 2 ? a2 : a3;
                acc_i = _mm512_dpwssd_epi32(acc_i, _mm512_maddubs_epi16(q, av), sc);
            }
            isum[r] = acc_i;
        }
        /* M of the 4 rows: mins (int16, 8 per row lane) . pair sums of bsums, then per lane */
        const __m128i bsp = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a->bsums),
                                           _mm_loadu_si128((const __m128i *)(a->bsums + 8)));
        __m512i mm = _mm512_madd_epi16(_mm512_shuffle_epi8(sm, midx), _mm512_broadcast_i32x4(bsp));
        mm = _mm512_add_epi32(mm, _mm512_shuffle_epi32(mm, (_MM_PERM_ENUM)0x4E));
        mm = _mm512_add_epi32(mm, _mm512_shuffle_epi32(mm, (_MM_PERM_ENUM)0xB1));
        const __m128i M = _mm512_castsi512_si128(
            _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), mm));
        const __m128i S = hsum4x8_5(fold512_5(isum[0]), fold512_5(isum[1]), fold512_5(isum[2]), fold512_5(isum[3]));
        /* d and dmin of the 4 rows (fp16 words 0 and 1 of each header lane) */
        const __m512i dw = _mm512_permutexvar_epi16(_mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                                     0, 0, 0, 0, 0, 0, 0, 25, 17, 9, 1, 24, 16, 8, 0),
                                                    h);
        const __m256 dd = _mm256_cvtph_ps(_mm512_castsi512_si128(dw)); /* [d0..d3, dmin0..dmin3] */
        const __m128 da = _mm_set1_ps(a->d);
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(S), _mm_mul_ps(_mm256_castps256_ps128(dd), da), acc);
        acc = _mm_fnmadd_ps(_mm_cvtepi32_ps(M), _mm_mul_ps(_mm256_extractf128_ps(dd, 1), da), acc);
    }
    _mm_storeu_ps(out, acc);
}
DEC_FN(q4K_dec5, q45K_dec5, 0)
DEC_FN(q5K_dec5, q45K_dec5, 1)
TILE_SET_DEC(t5_q4_K, 4, 4, q4Kk5, q4K_dec5)
TILE_SET_DEC(t5_q5_K, 4, 4, q5Kk5, q5K_dec5)

/* -- Q4_K_X16 x Q8_K: 16 interleaved rows per tile (the layout: ggml_types.h) --------------
 * One 512-bit vector holds 4 consecutive weights of each of 16 rows, so vpdpbusd against the
 * 4 matching activations (broadcast) sums 4 products per row lane, and a sub-block's scale is
 * applied once per 32 weights (an int32 multiply) instead of once per pair as in q45K_tile5.
 * The integers are the same exact S = sum_j sc_j (q_j . a_j) and M = sum_j mn_j bsum_j per
 * output, and the float step is kq_add5's (acc = fma(S, d da, acc); acc = fnma(M, dmin da, acc)),
 * so every output equals the Q4_K tiles' bit for bit. A tile is 16 rows x CB columns; CB == 1
 * (decode) uses two accumulators per sub-block to keep four vpdpbusd chains in flight. The high
 * nibbles stay in place (16 x their value, still a byte) and the sub-block's sum is shifted back
 * once, exactly; the activations come as vpdpbusd's broadcast operand (dpbusd_b5). */
/* block bytes (decode's prefetch distance and level are the plan's: tiles.h dec_pf_plan) */
enum { X16_BYTES = 16 * sizeof(block_q4_K), X16_BYTES6 = 16 * sizeof(block_q6_K) };

/* Scales (int32 per row lane) of sub-blocks 4h..4h+3 as bytes [j][r], and the mins likewise. */
AI T5 void x16_scales5(const uint8_t *p, int h, __m512i *sc, __m512i *mn) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* 128-bit lane j % 4 holds sub-block j; its high bits sit at 2e (scale) and 4 + 2e (min),
     * e = j & 1: shift them to bits 4-5 */
    const __m512i shl = _mm512_mask_blend_epi64(0xCC, _mm512_set1_epi16(4), _mm512_set1_epi16(2));
    const __m512i shr = _mm512_mask_blend_epi64(0xCC, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    const __m512i lo = _mm512_loadu_si512(p + 64 + 64 * h), hi4 = _mm512_loadu_si512(p + 192);
    const __m512i hi = h ? _mm512_shuffle_i64x2(hi4, hi4, 0xFA) : _mm512_shuffle_i64x2(hi4, hi4, 0x50);
    const __m512i sch = _mm512_and_si512(_mm512_sllv_epi16(hi, shl), m30);
    const __m512i mnh = _mm512_and_si512(_mm512_srlv_epi16(hi, shr), m30);
    *sc = _mm512_ternarylogic_epi32(m4, lo, sch, 0xCA); /* m4 ? lo : sch, bit by bit */
    *mn = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(lo, 4), mnh, 0xCA);
}
AI T5 __m512i x16_lane5(__m512i v, int i) { /* bytes of 128-bit lane i, zero-extended to int32 */
    switch (i) {                            /* the lane is an immediate: one constant per case (also at -O0) */
    case 0: return _mm512_cvtepu8_epi32(_mm512_castsi512_si128(v));
    case 1: return _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(v, 1));
    case 2: return _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(v, 2));
    default: return _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(v, 3));
    }
}
/* (mn_2i, mn_2i+1) as an int16 pair in each row lane, from the min bytes of lanes 2i % 4, +1 */
AI T5 __m512i x16_minpair5(__m512i mn, int i) {
    const __m128i a = (i & 1) ? _mm512_extracti32x4_epi32(mn, 2) : _mm512_castsi512_si128(mn);
    const __m128i b = (i & 1) ? _mm512_extracti32x4_epi32(mn, 3) : _mm512_extracti32x4_epi32(mn, 1);
    return _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(a, b), _mm_unpacklo_epi8(a, b)));
}

/* acc + the dot of w's unsigned bytes with the 4 signed bytes at x, broadcast: vpdpbusd with an
 * embedded broadcast operand (one instruction; the compiler emits a separate vpbroadcastd) */
AI T5 __m512i dpbusd_b5(__m512i acc, __m512i w, const int8_t *x) {
#if defined(__GNUC__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)x));
    return acc;
#else
    int32_t v;
    memcpy(&v, x, 4);
    return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(v));
#endif
}

/* A 512-bit load the compiler cannot fold into its uses: folded, one vector feeding two
 * instructions is loaded twice, and in these tiles the load ports, not the ALUs, set the pace
 * (docs/HARDWARE.md "What the code's choices measured"). */
AI T5 __m512i ld5(const uint8_t *p) {
#if defined(__GNUC__)
    __m512i v;
    __asm__("vmovdqu64 %1, %0" : "=v"(v) : "m"(*(const uint8_t(*)[64])p));
    return v;
#else
    return _mm512_loadu_si512(p);
#endif
}

/* The most columns one pass over a block takes (the few-column tile; prefill's tiles take 4):
 * 3 vectors per column (S, A0, A1) + about 10 shared ones fit the 32 registers. */
#define X16_MAX_CB 6

/* One block (256 weights) of one group for CB columns (a[c] their Q8_K blocks), added to acc[c]. */
AI T5 void x16_block5(int CB, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i S[X16_MAX_CB];
#pragma GCC unroll 8
    for (int c = 0; c < CB; c++) S[c] = _mm512_setzero_si512();
    __m512i sc8[2], mn8[2];
    x16_scales5(p, 0, &sc8[0], &mn8[0]);
    x16_scales5(p, 1, &sc8[1], &mn8[1]);
#pragma GCC unroll 8
    for (int jj = 0; jj < 4; jj++) {
        __m512i A0[X16_MAX_CB], A1[X16_MAX_CB], B0 = _mm512_setzero_si512(), B1 = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++) A0[c] = A1[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i v = ld5(p + 256 + 64 * (8 * jj + g));
            const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_andnot_si512(m4, v); /* 16 x nibble */
#pragma GCC unroll 8
            for (int c = 0; c < CB; c++) {
                const int8_t *x0 = a[c]->qs + 64 * jj + 4 * g, *x1 = a[c]->qs + 64 * jj + 32 + 4 * g;
                if (CB == 1 && (g & 1)) {
                    B0 = dpbusd_b5(B0, lo, x0);
                    B1 = dpbusd_b5(B1, hi, x1);
                } else {
                    A0[c] = dpbusd_b5(A0[c], lo, x0);
                    A1[c] = dpbusd_b5(A1[c], hi, x1);
                }
            }
        }
        if (CB == 1) {
            A0[0] = _mm512_add_epi32(A0[0], B0);
            A1[0] = _mm512_add_epi32(A1[0], B1);
        }
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++) A1[c] = _mm512_srai_epi32(A1[c], 4); /* exact: a multiple of 16 */
        const __m512i s0 = x16_lane5(sc8[jj / 2], 2 * (jj % 2)), s1 = x16_lane5(sc8[jj / 2], 2 * (jj % 2) + 1);
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++)
            S[c] =
                _mm512_add_epi32(S[c], _mm512_add_epi32(_mm512_mullo_epi32(A0[c], s0), _mm512_mullo_epi32(A1[c], s1)));
    }
    __m512i mp[4];
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) mp[i] = x16_minpair5(mn8[i / 2], i);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
#pragma GCC unroll 8
    for (int c = 0; c < CB; c++) {
        /* pair sums of the 16-sums: dword i = (bsum of sub-block 2i, of 2i + 1) as int16 */
        const __m256i s32 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a[c]->bsums), _mm256_set1_epi16(1));
        const __m512i bp =
            _mm512_castsi128_si512(_mm_packs_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1)));
        __m512i M = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int i = 0; i < 4; i++)
            M = _mm512_dpwssd_epi32(M, mp[i], _mm512_permutexvar_epi32(_mm512_set1_epi32(i), bp));
        const __m512 da = _mm512_set1_ps(a[c]->d);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[c]), _mm512_mul_ps(d, da), acc[c]);
        acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(M), _mm512_mul_ps(dmin, da), acc[c]);
    }
}

/* The same for one block of a Q6_K_X16 group: quads v (sub-block v / 4) and v + 32 (sub-block
 * 8 + v / 4) share a nibble vector; S = sum_j sc_j (q_j . a_j) - 32 sum_j sc_j bsum_j exactly, and
 * acc = fma(S, d da, acc) as q6K_tile5 does. */
AI T5 void x16q6_block5(int CB, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512i S[X16_MAX_CB];
#pragma GCC unroll 8
    for (int c = 0; c < CB; c++) S[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        __m512i A0[X16_MAX_CB], A1[X16_MAX_CB], B0 = _mm512_setzero_si512(), B1 = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++) A0[c] = A1[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++) {
            const int v = 4 * j + t;
            const __m512i n = ld5(p + x16q6_nib(v)), h = ld5(p + x16q6_hi(v % 16));
            /* high bits of quad v at 2 (v / 16), of quad v + 32 at 4 + 2 (v / 16): to bits 4-5 */
            const __m512i hl = j < 4 ? _mm512_slli_epi16(h, 4) : _mm512_slli_epi16(h, 2);
            const __m512i hh = j < 4 ? h : _mm512_srli_epi16(h, 2);
            const __m512i wl = _mm512_ternarylogic_epi32(n, m4, _mm512_and_si512(hl, m30), 0xEA); /* (a & b) | c */
            const __m512i wh = _mm512_ternarylogic_epi32(_mm512_srli_epi16(n, 4), m4, _mm512_and_si512(hh, m30), 0xEA);
#pragma GCC unroll 8
            for (int c = 0; c < CB; c++) {
                const int8_t *x0 = a[c]->qs + 4 * v, *x1 = a[c]->qs + 4 * (v + 32);
                if (CB == 1 && (t & 1)) {
                    B0 = dpbusd_b5(B0, wl, x0);
                    B1 = dpbusd_b5(B1, wh, x1);
                } else {
                    A0[c] = dpbusd_b5(A0[c], wl, x0);
                    A1[c] = dpbusd_b5(A1[c], wh, x1);
                }
            }
        }
        if (CB == 1) {
            A0[0] = _mm512_add_epi32(A0[0], B0);
            A1[0] = _mm512_add_epi32(A1[0], B1);
        }
        const __m512i s0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + x16q6_sc(j))));
        const __m512i s1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + x16q6_sc(j + 8))));
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++)
            S[c] =
                _mm512_add_epi32(S[c], _mm512_add_epi32(_mm512_mullo_epi32(A0[c], s0), _mm512_mullo_epi32(A1[c], s1)));
    }
    /* 32 sum_j sc_j bsum_j: (sc_2i, sc_2i+1) int16 pairs per row lane against bsums dword i */
    __m512i sp[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(p + x16q6_sc(2 * i))),
                      y = _mm_loadu_si128((const __m128i *)(p + x16q6_sc(2 * i + 1)));
        sp[i] = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(x, y), _mm_unpacklo_epi8(x, y)));
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#pragma GCC unroll 8
    for (int c = 0; c < CB; c++) {
        __m512i O = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            int32_t bp;
            memcpy(&bp, a[c]->bsums + 2 * i, 4);
            O = _mm512_dpwssd_epi32(O, sp[i], _mm512_set1_epi32(bp));
        }
        S[c] = _mm512_sub_epi32(S[c], _mm512_slli_epi32(O, 5));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[c]), _mm512_mul_ps(d, _mm512_set1_ps(a[c]->d)), acc[c]);
    }
}

/* Decode's Q6_K_X16 block (one column, or up to X16Q6_DEC_MAX_CB for the few-column passes): one
 * forward walk over the block's bytes (ggml_types.h). It follows the 16 high-bit vectors u, each
 * completing the weights of quads u, u + 16 (low nibbles of nibble vectors u, u + 16), u + 32,
 * u + 48 (their high nibbles), so every vector is loaded once (x16q6_block5 loads a high-bit
 * vector twice); quads 4j..4j+3 are sub-block j, so a run of 4 vectors u ends sub-blocks j,
 * j + 4, j + 8, j + 12. Each sub-block's one chain starts at its -32 bsum offset (a broadcast
 * from the block's table) and takes its scale once: S = sum_j sc_j (q_j . a_j - 32 bsum_j), the
 * same integer as x16q6_block5's, with fewer instructions a block than the offset subtracted and
 * two chains summed per sub-block. From memory what counts is the order of the reads (bench/CPU.md
 * "2026-11-27 (fifth)"): with 4 or more columns x16q6_block5 computes faster and reads at its pace. */
/* columns a Q6_K_X16 pass takes: up to X16Q6_DEC_MAX_CB on this walk (4 chains a column), and
 * X16Q6_MAX_CB in all (x16_few5: with 4, x16q6_block5; 5 or 6 read slower from memory) */
enum { X16Q6_DEC_MAX_CB = 3, X16Q6_MAX_CB = 4 };
AI T5 __m512i bcast5(const int32_t *p) { /* a load-broadcast the compiler keeps as one instruction */
#if defined(__GNUC__)
    __m512i v;
    __asm__("vpbroadcastd %1, %0" : "=v"(v) : "m"(*p));
    return v;
#else
    return _mm512_set1_epi32(*p);
#endif
}
AI T5 void x16q6_dec_block5(int CB, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    int32_t off[X16Q6_DEC_MAX_CB][16]; /* -32 bsum_j of each column */
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++)
        _mm512_storeu_si512(
            off[c], _mm512_sub_epi32(
                        _mm512_setzero_si512(),
                        _mm512_slli_epi32(_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)a[c]->bsums)), 5)));
    __m512i S[X16Q6_DEC_MAX_CB];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) S[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512i A[X16Q6_DEC_MAX_CB][4]; /* quarter s: quads 16 s + 4 j .., sub-block j + 4 s */
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++)
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++) A[c][s] = bcast5(off[c] + j + 4 * s);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const int u = 4 * j + t;
            const __m512i h = ld5(p + x16q6_hi(u)), n0 = ld5(p + x16q6_nib(u)), n1 = ld5(p + x16q6_nib(u + 16));
            const __m512i w0 = _mm512_ternarylogic_epi32(n0, m4, _mm512_and_si512(_mm512_slli_epi16(h, 4), m30), 0xEA);
            const __m512i w1 = _mm512_ternarylogic_epi32(n1, m4, _mm512_and_si512(_mm512_slli_epi16(h, 2), m30), 0xEA);
            const __m512i w2 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(n0, 4), m4, _mm512_and_si512(h, m30), 0xEA);
            const __m512i w3 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(n1, 4), m4,
                                                         _mm512_and_si512(_mm512_srli_epi16(h, 2), m30), 0xEA);
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) {
                A[c][0] = dpbusd_b5(A[c][0], w0, a[c]->qs + 4 * u);
                A[c][1] = dpbusd_b5(A[c][1], w1, a[c]->qs + 4 * (u + 16));
                A[c][2] = dpbusd_b5(A[c][2], w2, a[c]->qs + 4 * (u + 32));
                A[c][3] = dpbusd_b5(A[c][3], w3, a[c]->qs + 4 * (u + 48));
            }
        }
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + x16q6_sc(j + 4 * s))));
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) S[c] = _mm512_add_epi32(S[c], _mm512_mullo_epi32(A[c][s], sc));
        }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++)
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[c]), _mm512_mul_ps(d, _mm512_set1_ps(a[c]->d)), acc[c]);
}

/* The group's block for the streams of x16_stream5.h: prefill's, decode's (Q6_K_X16's dec_block
 * there) and the few-column passes' (k columns, a constant in each case) */
AI T5 void x16_blk5(int q6, int CB, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    if (q6) x16q6_block5(CB, p, a, acc);
    else x16_block5(CB, p, a, acc);
}
AI T5 void x16_dblk5(int q6, int CB, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    if (q6) x16q6_dec_block5(CB, p, a, acc);
    else x16_block5(CB, p, a, acc);
}
AI T5 void x16_cols5(int q6, int k, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    switch (k) {
    case 1: q6 ? x16q6_dec_block5(1, p, a, acc) : x16_block5(1, p, a, acc); break;
    case 2: q6 ? x16q6_dec_block5(2, p, a, acc) : x16_block5(2, p, a, acc); break;
    case 3: q6 ? x16q6_dec_block5(3, p, a, acc) : x16_block5(3, p, a, acc); break;
    case 4: q6 ? x16q6_block5(4, p, a, acc) : x16_block5(4, p, a, acc); break;
    case 5: q6 ? x16q6_block5(5, p, a, acc) : x16_block5(5, p, a, acc); break;
    default: q6 ? x16q6_block5(6, p, a, acc) : x16_block5(6, p, a, acc); break;
    }
}
AI T5 void x16_tile5(int q6, int CB, int64_t nb, const uint8_t *w, const uint8_t *act, size_t act_row, float *out,
                     size_t os) {
    x16s_tile5(x16_blk5, q6, q6 ? X16_BYTES6 : X16_BYTES, CB, nb, w, act, act_row, out, os);
}
AI T5 void x16_dec5(int q6, int loc, int64_t nb, const uint8_t *w, const uint8_t *act, float *o) {
    x16s_dec5(x16_dblk5, q6, q6 ? X16_BYTES6 : X16_BYTES, loc, nb, w, act, o);
}
/* passes of at most X16_MAX_CB columns (Q6_K_X16: X16Q6_MAX_CB) */
AI T5 void x16_few5(int q6, int loc, int nc, int64_t nb, const uint8_t *w, const uint8_t *act, size_t act_row,
                    float *out, size_t os) {
    x16s_few5(x16_cols5, q6, q6 ? X16_BYTES6 : X16_BYTES, q6 ? X16Q6_MAX_CB : X16_MAX_CB, loc, nc, nb, w, act, act_row,
              out, os);
}
GROUP_SET(t5_q4_K_x16, 4, x16_tile5, x16_dec5, x16_few5, 0)
GROUP_SET(t5_q6_K_x16, 4, x16_tile5, x16_dec5, x16_few5, 1)

/* -- Q6_K x Q8_K, 512-bit: a vector holds 64 weights = four 16-weight sub-blocks ---------- */

AI T5 void q6K_tile5(int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, size_t act_row,
                     float *out, size_t os) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* high-bit shifts: chunk A lanes 0..15 (weights l) bits 0-1 -> <<4, lanes 16..31 bits 2-3 -> <<2;
     * chunk B bits 4-5 -> as is, bits 6-7 -> >>2 */
    const __m512i shA = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shB = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    __m512i sidx[4];
    for (int k = 0; k < 4; k++) {
        short ix[32];
        for (int l = 0; l < 32; l++) ix[l] = (short)(4 * k + l / 8);
        sidx[k] = _mm512_loadu_si512(ix);
    }
    __m128 acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) acc[i] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[4];
        float da[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            a[c] = (const block_q8_K *)(act + c * act_row) + b;
            da[c] = a[c]->d;
        }
        const __m128 da4 = _mm_loadu_ps(da);
        __m256i ps[4];
        float pd[4] = {0, 0, 0, 0};
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            const block_q6_K *q6 = (const block_q6_K *)(w + r * w_row) + b;
            if (CB == 1) prefetch_dec(q6 + DEC_PF_BLOCKS, sizeof *q6);
            else prefetch_block(q6 + PF_BLOCKS, sizeof *q6);
            __m256i sc16y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q6->scales));
            __m512i sc16 = _mm512_castsi256_si512(sc16y);
            __m256i sc32 = _mm256_slli_epi16(sc16y, 5);
            const float d = _cvtsh_ss(q6->d);
            __m512i isum[4];
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++)
                isum[c] = _mm512_zextsi256_si512(_mm256_sub_epi32(
                    _mm256_setzero_si256(), _mm256_madd_epi16(sc32, _mm256_loadu_si256((const __m256i *)a[c]->bsums))));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512i ql = _mm512_loadu_si512(q6->ql + 64 * h);
                __m512i hz = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q6->qh + 32 * h)));
                __m512i hA = _mm512_and_si512(_mm512_sllv_epi16(hz, shA), m30);
                __m512i hB = _mm512_and_si512(_mm512_srlv_epi16(hz, shB), m30);
                __m512i qA = _mm512_ternarylogic_epi32(ql, m4, hA, 0xEA); /* (a & b) | c */
                __m512i qB = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), m4, hB, 0xEA);
                __m512i sA = _mm512_permutexvar_epi16(sidx[2 * h], sc16);
                __m512i sB = _mm512_permutexvar_epi16(sidx[2 * h + 1], sc16);
#pragma GCC unroll 4
                for (int c = 0; c < CB; c++) {
                    __m512i pA = _mm512_maddubs_epi16(qA, _mm512_loadu_si512(a[c]->qs + 128 * h));
                    __m512i pB = _mm512_maddubs_epi16(qB, _mm512_loadu_si512(a[c]->qs + 128 * h + 64));
                    isum[c] = _mm512_dpwssd_epi32(isum[c], pA, sA);
                    isum[c] = _mm512_dpwssd_epi32(isum[c], pB, sB);
                }
            }
            if (CB > 1) {
                __m256i s8[4];
#pragma GCC unroll 4
                for (int c = 0; c < CB; c++) s8[c] = fold512_5(isum[c]);
                acc[r] = kq_add5(acc[r], CB, 0, s8, s8, _mm_mul_ps(_mm_set1_ps(d), da4), da4);
            } else {
                ps[r % 4] = fold512_5(isum[0]);
                pd[r % 4] = d;
                if (r % 4 == 3 || r == RB - 1)
                    acc[r / 4] = kq_add5(acc[r / 4], r % 4 + 1, 0, ps, ps,
                                         _mm_mul_ps(_mm_loadu_ps(pd), _mm_set1_ps(da[0])), da4);
            }
        }
    }
    kq_store5(RB, CB, acc, out, os);
}
TILE_SET(t5_q6_K, 4, 4, q6K_tile5)

/* -- float activations: weights dequantized chunk by chunk, then RB x CB float dots -------- */

AI T5 void f16_to_f32_5(const uint16_t *src, float *dst, int m) {
    int i = 0;
    for (; i + 16 <= m; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < m; i++) dst[i] = _cvtsh_ss(src[i]);
}
AI T5 void bf16_to_f32_5(const uint16_t *src, float *dst, int m) {
    int i = 0;
    for (; i + 16 <= m; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
    for (; i < m; i++) dst[i] = bf16_to_f32(src[i]);
}

/* sums[r][c] += dot(wr[r][0..m), xc[c][0..m)) */
AI T5 void fdot_tile5(int RB, int CB, int m, const float *const *wr, const float *const *xc, float *out, size_t os,
                      int add) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) acc[r][c] = _mm512_setzero_ps();
    for (int i = 0; i < m; i += 16) {
        __mmask16 k = m - i >= 16 ? 0xFFFF : (__mmask16)((1u << (m - i)) - 1);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) wv[r] = _mm512_maskz_loadu_ps(k, wr[r] + i);
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            __m512 x = _mm512_maskz_loadu_ps(k, xc[c] + i);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], x, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            float s = hsum512(acc[r][c]);
            out[c * os + r] = add ? out[c * os + r] + s : s;
        }
}
static T5 void fdot_4x4_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile5(4, 4, m, w, x, o, os, add);
}
static T5 void fdot_4x1_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile5(4, 1, m, w, x, o, os, add);
}
static T5 void fdot_1x4_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile5(1, 4, m, w, x, o, os, add);
}
static T5 void fdot_1x1_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile5(1, 1, m, w, x, o, os, add);
}

/* 32 weights: 16 bytes of nibbles (low nibbles first) looked up in a 16-entry int8 table, times d */
AI T5 void lut32_5(const uint8_t *qs, __m128i table, float d, float *dst) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(q, _mm_set1_epi8(0x0F)));
    __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)));
    __m512 vd = _mm512_set1_ps(d);
    _mm512_storeu_ps(dst, _mm512_mul_ps(vd, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo))));
    _mm512_storeu_ps(dst + 16, _mm512_mul_ps(vd, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi))));
}

static T5 void dequant_chunk5(uint32_t type, const uint8_t *row, int64_t k0, int m, float *dst) {
    static const int8_t iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    static const int8_t mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    if (type == GGML_F16) f16_to_f32_5((const uint16_t *)row + k0, dst, m);
    else if (type == GGML_BF16) bf16_to_f32_5((const uint16_t *)row + k0, dst, m);
    else if (type == GGML_IQ4_NL) {
        const block_iq4_nl *b = (const block_iq4_nl *)row + k0 / 32;
        __m128i t = _mm_loadu_si128((const __m128i *)iq4nl);
        for (int i = 0; i < m / 32; i++) lut32_5(b[i].qs, t, _cvtsh_ss(b[i].d), dst + 32 * i);
    } else if (type == GGML_MXFP4) {
        const block_mxfp4 *b = (const block_mxfp4 *)row + k0 / 32;
        __m128i t = _mm_loadu_si128((const __m128i *)mxfp4);
        for (int i = 0; i < m / 32; i++) lut32_5(b[i].qs, t, ldexpf(1.0f, (int)b[i].e - 128), dst + 32 * i);
    } else if (type == GGML_IQ4_XS) {
        const block_iq4_xs *b = (const block_iq4_xs *)row + k0 / QK_K;
        __m128i t = _mm_loadu_si128((const __m128i *)iq4nl);
        for (int i = 0; i < m / QK_K; i++) {
            float d = _cvtsh_ss(b[i].d);
            for (int ib = 0; ib < 8; ib++) {
                int ls = ((b[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((b[i].scales_h >> 2 * ib) & 3) << 4);
                lut32_5(b[i].qs + 16 * ib, t, d * (float)(ls - 32), dst + QK_K * i + 32 * ib);
            }
        }
    } else {
        const ggml_type_info *ti = ggml_type_get(type);
        dequantize_row(type, row + (size_t)(k0 / ti->block_size) * ti->type_size, dst, m);
    }
}


/* -- activation quantization ------------------------------------------------------------- */

static T5 void quantize_q8_0_5(const float *x, block_q8_0 *y, int64_t n) {
    const __m512 signbit = _mm512_set1_ps(-0.0f), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        __m512 amax = _mm512_max_ps(_mm512_andnot_ps(signbit, v0), _mm512_setzero_ps());
        amax = _mm512_max_ps(_mm512_andnot_ps(signbit, v1), amax);
        float am = _mm512_reduce_max_ps(amax);
        float d = am / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        __m512 vid = _mm512_set1_ps(id);
        __m512 s[2] = {_mm512_mul_ps(v0, vid), _mm512_mul_ps(v1, vid)};
        for (int h = 0; h < 2; h++) {
            /* roundf: truncate, then step away from zero when the dropped part is >= 0.5 */
            __m512 t = _mm512_roundscale_ps(s[h], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m512 frac = _mm512_andnot_ps(signbit, _mm512_sub_ps(s[h], t));
            __mmask16 up = _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ);
            __m512 step = _mm512_or_ps(one, _mm512_and_ps(s[h], signbit));
            t = _mm512_mask_add_ps(t, up, t, step);
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * h), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(t)));
        }
    }
}

static T5 void quantize_q8_K_5(const float *x, block_q8_K *y, int64_t n) {
    const __m512 signbit = _mm512_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m512 amax = _mm512_setzero_ps();
        for (int j = 0; j < QK_K; j += 16)
            amax = _mm512_max_ps(_mm512_andnot_ps(signbit, _mm512_loadu_ps(x + j)), amax);
        float am = _mm512_reduce_max_ps(amax);
        if (am == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0; /* the first value of largest magnitude, sign kept */
        __m512 vam = _mm512_set1_ps(am);
        for (int j = 0; j < QK_K; j += 16) {
            __mmask16 k = _mm512_cmp_ps_mask(_mm512_andnot_ps(signbit, _mm512_loadu_ps(x + j)), vam, _CMP_EQ_OQ);
            if (k) {
                max = x[j + __builtin_ctz(k)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m512 vis = _mm512_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 16) {
            __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(vis, _mm512_loadu_ps(x + j)),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m512i q = _mm512_cvtps_epi32(v);
            __m128i q8 = _mm512_cvtsepi32_epi8(q);
            _mm_storeu_si128((__m128i *)(y[i].qs + j), q8);
            y[i].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q8));
        }
        y[i].d = 1.0f / iscale;
    }
}

T5 void avx512_quantize_act(uint32_t act_type, const float *x, void *dst, int64_t n) {
    if (act_type == GGML_Q8_0) quantize_q8_0_5(x, dst, n);
    else if (act_type == GGML_Q8_K) quantize_q8_K_5(x, dst, n);
    else memcpy(dst, x, (size_t)n * sizeof(float));
}

static const fdot_fn FDOT5[4] = {fdot_4x4_5, fdot_4x1_5, fdot_1x4_5, fdot_1x1_5};

/* Decode of F16 / BF16 / F32 weights: 4 rows (one of each of 4 row segments, as in run_tiles)
 * x one column, converting 16 weights at a time in registers instead of through run_float's
 * buffer. The float operations and their order are run_float's (16-lane fma per FKC chunk,
 * hsum512, added to the previous chunks), so the outputs are bitwise the same. */
AI T5 __m512 fweights5(uint32_t type, const uint8_t *row, int64_t i, __mmask16 k) {
    if (type == GGML_F32) return _mm512_maskz_loadu_ps(k, (const float *)row + i);
    __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)row + i);
    if (type == GGML_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
AI T5 void fdec_tile5(uint32_t type, int64_t n, const uint8_t *w, size_t seg, const float *x, float *o) {
    const size_t esz = type == GGML_F32 ? 4 : 2;
    for (int64_t k0 = 0; k0 < n; k0 += FKC) {
        const int64_t end = n - k0 < FKC ? n : k0 + FKC;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t i = k0; i < end; i += 16) {
            __mmask16 k = end - i >= 16 ? 0xFFFF : (__mmask16)((1u << (end - i)) - 1);
            __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const uint8_t *row = w + r * seg;
                __builtin_prefetch(row + (i + 16 * DEC_PF_BLOCKS) * esz, 0, DEC_PF_LOC);
                acc[r] = _mm512_fmadd_ps(fweights5(type, row, i, k), xv, acc[r]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            float sum = hsum512(acc[r]);
            o[r] = k0 > 0 ? o[r] + sum : sum;
        }
    }
}
static T5 void fdec_f16_5(int64_t n, const uint8_t *w, size_t seg, const float *x, float *o) {
    fdec_tile5(GGML_F16, n, w, seg, x, o);
}
static T5 void fdec_bf16_5(int64_t n, const uint8_t *w, size_t seg, const float *x, float *o) {
    fdec_tile5(GGML_BF16, n, w, seg, x, o);
}
static T5 void fdec_f32_5(int64_t n, const uint8_t *w, size_t seg, const float *x, float *o) {
    fdec_tile5(GGML_F32, n, w, seg, x, o);
}

static void run_fdec5(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const float *x, float *out) {
    void (*f)(int64_t, const uint8_t *, size_t, const float *, float *) = type == GGML_F16    ? fdec_f16_5
                                                                          : type == GGML_BF16 ? fdec_bf16_5
                                                                                              : fdec_f32_5;
    const int seg = nr / 4;
    float o[4];
    for (int r = 0; r < seg; r++) {
        f(n, w + r * w_row, (size_t)seg * w_row, x, o);
        for (int i = 0; i < 4; i++) out[r + i * seg] = o[i];
    }
    /* the last nr % 4 rows: run_float's one-row tiles, whose order is the same */
    if (nr > seg * 4)
        run_float(type, n, w + (size_t)seg * 4 * w_row, w_row, nr - seg * 4, (const uint8_t *)x, 0, 1, out + seg * 4, 1,
                  FDOT5, dequant_chunk5);
}

void avx512_matmul(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                   size_t act_row, int nc, float *out, size_t os) {
    const tile_set *t = NULL;
    switch (wtype) {
    case GGML_Q4_0: t = &t5_q4_0; break;
    case GGML_Q4_1: t = &t5_q4_1; break;
    case GGML_Q5_0: t = &t5_q5_0; break;
    case GGML_Q5_1: t = &t5_q5_1; break;
    case GGML_Q8_0: t = &t5_q8_0; break;
    case GGML_Q4_K: t = &t5_q4_K; break;
    case GGML_Q5_K: t = &t5_q5_K; break;
    case GGML_Q6_K: t = &t5_q6_K; break;
    case GGML_Q4_K_X16:
    case GGML_Q6_K_X16:
        run_groups(wtype == GGML_Q4_K_X16 ? &t5_q4_K_x16 : &t5_q6_K_x16, n / QK_K, w, w_row, nr, act, act_row, nc, out,
                   os);
        return;
    case GGML_Q2_K_X16:
    case GGML_Q3_K_X16: /* kernels_k23_x86.c */
        run_groups(k23_tiles_avx512(wtype), n / QK_K, w, w_row, nr, act, act_row, nc, out, os);
        return;
    case GGML_Q2_K:
    case GGML_Q3_K:
    case GGML_IQ4_XS: t = k23_tiles_avx512(wtype); break; /* kernels_k23_x86.c */
    case GGML_F16:
    case GGML_BF16:
    case GGML_F32:
        if (nc == 1) {
            run_fdec5(wtype, n, w, w_row, nr, (const float *)act, out);
            return;
        }
        /* fall through */
    default:
        if ((t = iq_tiles_avx512(wtype)) != NULL) break; /* kernels_iq_x86.c */
        run_float(wtype, n, w, w_row, nr, act, act_row, nc, out, os, FDOT5, dequant_chunk5);
        return;
    }
    int64_t nb = n / ggml_type_get(wtype)->block_size;
    run_tiles(t, nb, w, w_row, nr, act, act_row, nc, out, os);
}

#undef ISA_T

/* Weights this table multiplies faster in an interleaved layout (ggml_types.h): Q4_K, Q6_K, Q2_K
 * and Q3_K whose row count is a multiple of 16 (every type with an X16 layout). */
uint32_t avx512_packed_type(uint32_t wtype, int64_t n_rows) {
    return x16_type(wtype) && n_rows % X16_ROWS == 0 ? x16_type(wtype) : wtype;
}

static const kernel_ops AVX512_OPS = {"avx512vnni",         true,
                                      avx512_quantize_act,  avx512_matmul,
                                      attention_x86_avx512, avx512_packed_type,
                                      swiglu_x86_avx512,    f16_row_x86_avx512,
                                      FEW_MAX_COLS};

const kernel_ops *kernels_x86_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma")
               ? &AVX512_OPS
               : NULL;
}

#else /* not x86-64: no table */
const kernel_ops *kernels_x86_avx512(void) { return 0; }
#endif
