/* kernels_k23_x86.c — Q2_K, Q3_K and IQ4_XS x Q8_K tiles of the AVX-512 table (k23_tiles_avx512, which
 * kernels_avx512.c's matmul and through it the AMX table take), on plain rows and (Q2_K, Q3_K) on
 * their X16 layouts (groups of 16 interleaved rows, ggml_types.h; below). What is computed is the scalar
 * truth of kernels_scalar.c (dot_q2_K, dot_q3_K): a block's exact int32 totals
 *   Q2_K: S = sum_k sc_k (q_k . a_k), M = sum_k mn_k bsum_k  (q 0..3)
 *   Q3_K: S = sum_k sc_k (q_k . a_k)                       (q -4..3, sc signed)
 * then acc = fma((float)S, d da, acc) (and acc = fnma((float)M, dmin da, acc) for Q2_K), block
 * after block, for every output whatever tile computes it (the K-quants' formula, kernels_avx512.c).
 * A 512-bit vector holds 64 weights, 4 sub-blocks of 16: the block's 32 bytes of 2-bit fields
 * broadcast to both halves, each half shifted to its own field. Q3_K's weights are kept unsigned
 * (q + 4, 0..7: maddubs' pair sums cannot saturate) and 4 sum_k sc_k bsum_k comes back out. */
#include "cpu/kernels_iq.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "cpu/tiles.h"
#include "cpu/x16_stream5.h"
#include "formats/ggml_types.h"

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

AI T5 __m256i fold512(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}
/* [total v0, total v1, total v2, total v3] of 8-lane int32 vectors (exact) */
AI T5 __m128i hsum4x8(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Q3_K's 16 signed scales (int16) from its 12 bytes */
AI T5 __m256i q3K_sc16(const uint8_t *s) {
    uint32_t a0, a1, a2;
    memcpy(&a0, s, 4), memcpy(&a1, s + 4, 4), memcpy(&a2, s + 8, 4);
    const uint32_t m1 = 0x03030303, m2 = 0x0f0f0f0f;
    const __m128i v =
        _mm_setr_epi32((int)((a0 & m2) | (a2 & m1) << 4), (int)((a1 & m2) | (a2 >> 2 & m1) << 4),
                       (int)((a0 >> 4 & m2) | (a2 >> 4 & m1) << 4), (int)((a1 >> 4 & m2) | (a2 >> 6 & m1) << 4));
    return _mm256_cvtepi8_epi16(_mm_sub_epi8(v, _mm_set1_epi8(32)));
}

/* One block of one row: the 8 lanes of S (and of M for Q2_K) for each of CB columns. */
AI T5 void k23_block(int is_q3, int CB, const uint8_t *p, const block_q8_K *const *a, const __m256i *bsum,
                     const __m512i *sidx, const __m512i *hb, __m256i *s8, __m256i *m8, float *d, float *dmin) {
    const uint8_t *qs = is_q3 ? p + offsetof(block_q3_K, qs) : p + offsetof(block_q2_K, qs);
    __m256i sc;
    if (is_q3) {
        sc = q3K_sc16(p + offsetof(block_q3_K, scales));
        *d = _cvtsh_ss(*(const uint16_t *)(p + offsetof(block_q3_K, d)));
    } else {
        const __m128i b = _mm_loadu_si128((const __m128i *)p), m4 = _mm_set1_epi8(15);
        sc = _mm256_cvtepu8_epi16(_mm_and_si128(b, m4));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(b, 4), m4));
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) m8[c] = _mm256_madd_epi16(mn, bsum[c]);
        *d = _cvtsh_ss(*(const uint16_t *)(p + offsetof(block_q2_K, d)));
        *dmin = _cvtsh_ss(*(const uint16_t *)(p + offsetof(block_q2_K, dmin)));
    }
    const __m512i sc512 = _mm512_castsi256_si512(sc), three = _mm512_set1_epi8(3);
    const __m512i hm = is_q3 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p)) : _mm512_setzero_si512();
    __m512i isum[4];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) isum[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        /* weights 64 k ..: bytes 32 (k / 2) .., fields 2 (k % 2) (low half) and 2 (k % 2) + 1 */
        __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * (k / 2))));
        q = _mm512_srli_epi16(q, 4 * (k % 2));
        q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 2), three);
        if (is_q3) q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hm, hb[k]), q, _mm512_set1_epi8(4));
        const __m512i s = _mm512_permutexvar_epi16(sidx[k], sc512);
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++)
            isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(q, _mm512_loadu_si512(a[c]->qs + 64 * k)), s);
    }
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) {
        s8[c] = fold512(isum[c]);
        if (is_q3) /* the weights were q + 4 */
            s8[c] = _mm256_sub_epi32(s8[c], _mm256_slli_epi32(_mm256_madd_epi16(sc, bsum[c]), 2));
    }
}

/* IQ4_XS: one block of one row, S's 8 lanes for each of CB columns. A vector holds sub-blocks
 * 2k, 2k + 1 (64 weights): their 32 bytes' low and high nibbles in weight order, looked up in the
 * table (vpshufb), made unsigned (v + 128) for vpdpbusd (4 products a lane, exact), each lane
 * times its sub-block's scale; 128 sum_ib ls_ib (its 32 activations' sum) comes back out. */
AI T5 void iq4xs_block(int CB, const uint8_t *p, const block_q8_K *const *a, const __m256i *bsum, __m256i *s8,
                       float *d) {
    const block_iq4_xs *x = (const block_iq4_xs *)p;
    const __m512i table =
        _mm512_broadcast_i32x4(_mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
    const __m512i lanes = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), m4 = _mm512_set1_epi8(15);
    *d = _cvtsh_ss(x->d);
    /* the 8 scales ls - 32 as int32 (ls32) and each twice as int16 (against the 16 bsums) */
    uint32_t sl;
    memcpy(&sl, x->scales_l, 4);
    const __m256i lo =
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sl), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                         _mm256_set1_epi32(15));
    const __m256i hi = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(x->scales_h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
        _mm256_set1_epi32(3));
    const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
    const __m128i l16 = _mm256_cvtepi32_epi16(ls);
    const __m256i ls16 = _mm256_set_m128i(_mm_unpackhi_epi16(l16, l16), _mm_unpacklo_epi16(l16, l16));
    __m512i isum[4];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) isum[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512i q = _mm512_permutexvar_epi64(
            lanes, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x->qs + 32 * k))));
        q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFF00FF00u, q, 4), m4);
        const __m512i u = _mm512_xor_si512(_mm512_shuffle_epi8(table, q), _mm512_set1_epi8((char)0x80));
        /* int32 lanes 0-7: sub-block 2k's scale, 8-15: 2k + 1's */
        const __m512i s2 = _mm512_permutexvar_epi32(_mm512_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k,
                                                                      2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                                      2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1),
                                                    _mm512_castsi256_si512(ls));
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++)
            isum[c] =
                _mm512_add_epi32(isum[c], _mm512_mullo_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u,
                                                                                 _mm512_loadu_si512(a[c]->qs + 64 * k)),
                                                             s2));
    }
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++)
        s8[c] = _mm256_sub_epi32(fold512(isum[c]), _mm256_slli_epi32(_mm256_madd_epi16(ls16, bsum[c]), 7));
}

/* Adds one block to acc for cnt (1..4) outputs: the lanes of s[k] (and m[k]) summed per output,
 * dd / dm lanes d da and dmin da. Lanes >= cnt are garbage, never stored. */
AI T5 __m128 k23_add(__m128 acc, int cnt, int has_m, const __m256i *s, const __m256i *m, __m128 dd, __m128 dm) {
    const __m256i z = _mm256_setzero_si256();
    acc = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4x8(s[0], cnt > 1 ? s[1] : z, cnt > 2 ? s[2] : z, cnt > 3 ? s[3] : z)), dd,
                       acc);
    if (has_m)
        acc = _mm_fnmadd_ps(_mm_cvtepi32_ps(hsum4x8(m[0], cnt > 1 ? m[1] : z, cnt > 2 ? m[2] : z, cnt > 3 ? m[3] : z)),
                            dm, acc);
    return acc;
}

/* RB rows (<= 8) x CB columns (<= 4); one column: the rows' totals go 4 at a time into one sum. */
AI T5 void k23_tile5(int kind, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                     size_t act_row, float *out, size_t os) {
    const int is_q3 = kind == 1;
    const size_t bs = kind == 2 ? sizeof(block_iq4_xs) : is_q3 ? sizeof(block_q3_K) : sizeof(block_q2_K);
    __m512i sidx[4], hb[4]; /* int16 lane i of vector k -> sub-block 4 k + i / 8; Q3_K's hmask bits */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        sidx[k] = _mm512_inserti64x4(
            _mm512_castsi256_si512(
                _mm256_inserti128_si256(_mm256_set1_epi16((short)(4 * k)), _mm_set1_epi16((short)(4 * k + 1)), 1)),
            _mm256_inserti128_si256(_mm256_set1_epi16((short)(4 * k + 2)), _mm_set1_epi16((short)(4 * k + 3)), 1), 1);
        const int bit = 4 * (k / 2) + 2 * (k % 2);
        hb[k] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << bit)), _mm256_set1_epi8((char)(1 << (bit + 1))), 1);
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
            if (CB > 1) prefetch_block(p + PF_BLOCKS * bs, bs);
            else prefetch_dec(p + DEC_PF_BLOCKS * bs, bs);
            __m256i s8[4], m8[4];
            float d, dmin = 0;
            if (kind == 2) iq4xs_block(CB, p, a, bsum, CB > 1 ? s8 : &ps[r % 4], &d);
            else
                k23_block(is_q3, CB, p, a, bsum, sidx, hb, CB > 1 ? s8 : &ps[r % 4], CB > 1 ? m8 : &pm[r % 4], &d,
                          &dmin);
            if (CB > 1) {
                acc[r] = k23_add(acc[r], CB, kind == 0, s8, m8, _mm_mul_ps(_mm_set1_ps(d), da4),
                                 _mm_mul_ps(_mm_set1_ps(dmin), da4));
            } else {
                pd[r % 4] = d, pdm[r % 4] = dmin;
                if (r % 4 == 3 || r == RB - 1)
                    acc[r / 4] = k23_add(acc[r / 4], r % 4 + 1, kind == 0, ps, pm,
                                         _mm_mul_ps(_mm_loadu_ps(pd), _mm_set1_ps(da[0])),
                                         _mm_mul_ps(_mm_loadu_ps(pdm), _mm_set1_ps(da[0])));
            }
        }
    }
    float t[8][4];
    for (int i = 0; i < (CB > 1 ? RB : (RB + 3) / 4); i++) _mm_storeu_ps(t[i], acc[i]);
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) out[c * os + r] = CB > 1 ? t[r][c] : t[r / 4][r % 4];
}

#define ISA_T T5
AI T5 void q2Kk5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o,
                 size_t os) {
    k23_tile5(0, RB, CB, nb, w, wr, a, ar, o, os);
}
AI T5 void q3Kk5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o,
                 size_t os) {
    k23_tile5(1, RB, CB, nb, w, wr, a, ar, o, os);
}
AI T5 void iq4xsk5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o,
                   size_t os) {
    k23_tile5(2, RB, CB, nb, w, wr, a, ar, o, os);
}
TILE_SET(t5_q2_K, 4, 4, q2Kk5)
TILE_SET(t5_q3_K, 4, 4, q3Kk5)
TILE_SET(t5_iq4_xs, 4, 4, iq4xsk5)
#undef ISA_T

/* -- Q2_K_X16 / Q3_K_X16 x Q8_K: 16 interleaved rows (the layouts: ggml_types.h) -----------
 * One 512-bit vector holds 4 consecutive weights (a quad) of each of 16 rows, so vpdpbusd against
 * the quad's 4 activations (a broadcast operand) sums 4 products per row lane, and a sub-block's
 * scale is applied once per 16 weights (an int32 multiply) instead of once per pair. A crumb
 * vector u holds quads u, u + 16, u + 32, u + 48 (fields f = 0..3), which are sub-blocks
 * u / 4 + 4 f: quarter j (u = 4j .. 4j + 3) completes sub-blocks j, j + 4, j + 8, j + 12, one
 * chain A_f each per column. A field is taken in place: Q2_K's f by one AND (q 4^f, 0..192);
 * Q3_K's q + 4 (0..7) as its low bits in place and the h bit beside them (4^f (q + 4), f < 3;
 * f = 3 shifted down: q + 4), each chain starting at -4 bsum times that power, so it ends at
 * 2^s_f (q . a) exactly. The scales come pre-multiplied by 2^(6 - s_f), so that
 *   S' = sum_k (sc_k 2^(6 - s_k)) A_k = 64 S,   S = S' >> 6   (exact: |S'| < 2^31)
 * is the plain tiles' S = sum_k sc_k (q_k . a_k); Q2_K's M = sum_k mn_k bsum_k takes int16 pairs
 * (vpdpwssd). The float step is k23_add's (acc = fma(S, d da, acc); acc = fnma(M, dmin da, acc)),
 * so every output equals the plain tiles' bit for bit. */
enum { X16Q2_BYTES = 16 * sizeof(block_q2_K), X16Q3_BYTES = 16 * sizeof(block_q3_K), X16K_MAX_CB = 4 };

/* acc + the dot of w's unsigned bytes with the 4 signed bytes at x, broadcast: vpdpbusd with an
 * embedded broadcast operand (the compiler emits a separate vpbroadcastd) */
AI T5 __m512i dpbusd_bk(__m512i acc, __m512i w, const int8_t *x) {
#if defined(__GNUC__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)x));
    return acc;
#else
    int32_t v;
    memcpy(&v, x, 4);
    return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(v));
#endif
}
/* the same for vpdpwssd (int16 pairs) */
AI T5 __m512i dpwssd_bk(__m512i acc, __m512i w, const int32_t *x) {
#if defined(__GNUC__)
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*x));
    return acc;
#else
    return _mm512_dpwssd_epi32(acc, w, _mm512_set1_epi32(*x));
#endif
}
AI T5 __m512i bcastk(const int32_t *p) { /* a load-broadcast the compiler keeps as one instruction */
#if defined(__GNUC__)
    __m512i v;
    __asm__("vpbroadcastd %1, %0" : "=v"(v) : "m"(*p));
    return v;
#else
    return _mm512_set1_epi32(*p);
#endif
}

/* The block's scales (int32 per row lane), sub-block k's times 2^(6 - s_k) (s_k: the power its
 * chain carries), and (Q2_K) its mins as int16 pairs mp[j + 4p] = (mn_{j+8p}, mn_{j+8p+4}). */
AI T5 void x16k_scales(int q3, const uint8_t *p, __m512i *sc, __m512i *mp) {
    if (!q3) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) { /* sub-blocks j + 8h (f = 2h), j + 8h + 4 (f = 2h + 1) */
                const __m512i x = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p + x16q2_sc(j, h))));
                mp[j + 4 * h] = _mm512_srli_epi16(x, 4);
                sc[j + 8 * h] = _mm512_and_si512(_mm512_slli_epi32(x, 6 - 4 * h), _mm512_set1_epi32(15 << (6 - 4 * h)));
                sc[j + 8 * h + 4] =
                    _mm512_and_si512(_mm512_srli_epi32(x, 12 + 4 * h), _mm512_set1_epi32(15 << (4 - 4 * h)));
            }
        return;
    }
    const __m512i m15 = _mm512_set1_epi32(15), m48 = _mm512_set1_epi32(48), k32 = _mm512_set1_epi32(32);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const uint8_t *s = p + x16q3_sc(j);
        const __m512i z0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)s));
        const __m512i z1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(s + 16)));
        const __m512i zh = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(s + 32)));
        const __m512i s0 = _mm512_or_si512(_mm512_and_si512(z0, m15), _mm512_and_si512(_mm512_slli_epi32(zh, 4), m48));
        const __m512i s1 = _mm512_or_si512(_mm512_srli_epi32(z0, 4), _mm512_and_si512(_mm512_slli_epi32(zh, 2), m48));
        const __m512i s2 = _mm512_or_si512(_mm512_and_si512(z1, m15), _mm512_and_si512(zh, m48));
        const __m512i s3 = _mm512_or_si512(_mm512_srli_epi32(z1, 4), _mm512_and_si512(_mm512_srli_epi32(zh, 2), m48));
        sc[j] = _mm512_slli_epi32(_mm512_sub_epi32(s0, k32), 6);
        sc[j + 4] = _mm512_slli_epi32(_mm512_sub_epi32(s1, k32), 4);
        sc[j + 8] = _mm512_slli_epi32(_mm512_sub_epi32(s2, k32), 2);
        sc[j + 12] = _mm512_slli_epi32(_mm512_sub_epi32(s3, k32), 6);
    }
}

/* Field f of crumb vector u = 4j + t as in-place weights (above). */
AI T5 __m512i x16k_weights(int q3, const uint8_t *p, int j, int t, int f) {
    const int u = 4 * j + t;
    const __m512i l = _mm512_loadu_si512(p + (q3 ? x16q3_lo(u) : x16q2_vec(u)));
    if (!q3) return _mm512_and_si512(l, _mm512_set1_epi8((char)(3 << 2 * f)));
    __m512i h = _mm512_loadu_si512(p + x16q3_hi(j, t / 2));
    if (t & 1) h = _mm512_srli_epi16(h, 1); /* u1's bits to u0's places */
    if (f < 3)                              /* (l & 3 << 2f) | (h & 4 << 2f) */
        return _mm512_ternarylogic_epi32(_mm512_and_si512(l, _mm512_set1_epi8((char)(3 << 2 * f))), h,
                                         _mm512_set1_epi8((char)(4 << 2 * f)), 0xF8);
    return _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 6), _mm512_set1_epi8(3)),
                                     _mm512_slli_epi16(h, 2), _mm512_set1_epi8(4), 0xF8);
}

/* One block (256 weights) of one group for CB (<= X16K_MAX_CB) columns, added to acc[c]. */
AI T5 void x16k_block5(int q3, int CB, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    __m512i sc[16], mp[8];
    x16k_scales(q3, p, sc, mp);
    /* per column: Q3_K the chains' starts -4 bsum_k 2^s_k; Q2_K the bsum pairs of mp */
    int32_t tab[X16K_MAX_CB][16];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) {
        const __m256i bs = _mm256_loadu_si256((const __m256i *)a[c]->bsums);
        if (q3)
            _mm512_storeu_si512(tab[c], _mm512_sub_epi32(_mm512_setzero_si512(),
                                                         _mm512_sllv_epi32(_mm512_cvtepi16_epi32(bs),
                                                                           _mm512_setr_epi32(2, 2, 2, 2, 4, 4, 4, 4, 6,
                                                                                             6, 6, 6, 2, 2, 2, 2))));
        else
            _mm256_storeu_si256(
                (__m256i *)tab[c],
                _mm256_permutexvar_epi16(_mm256_setr_epi16(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15), bs));
    }
    __m512i S[X16K_MAX_CB];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) S[c] = _mm512_setzero_si512();
        /* sub-block k = j + 4f: one chain a column over the quarter's 4 crumb vectors (the vectors
     * are read again for each f, from L1; holding all four fields of a vector for all columns
     * spilled) */
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
        for (int f = 0; f < 4; f++) {
            __m512i A[X16K_MAX_CB];
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) A[c] = q3 ? bcastk(tab[c] + j + 4 * f) : _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                const __m512i w = x16k_weights(q3, p, j, t, f);
#pragma GCC unroll 4
                for (int c = 0; c < CB; c++) A[c] = dpbusd_bk(A[c], w, a[c]->qs + 4 * (4 * j + t + 16 * f));
            }
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++) {
                S[c] = _mm512_add_epi32(S[c], _mm512_mullo_epi32(A[c], sc[j + 4 * f]));
                /* here, not sunk to the block's end with every chain kept aside (GCC did) */
                __asm__("" : "+v"(S[c]));
            }
        }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + (q3 ? X16Q3_D : X16Q2_D))));
    const __m512 dmin = q3 ? d : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + X16Q2_DMIN)));
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) {
        const __m512 da = _mm512_set1_ps(a[c]->d);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srai_epi32(S[c], 6)), _mm512_mul_ps(d, da), acc[c]);
        if (!q3) {
            __m512i M = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) M = dpwssd_bk(M, mp[i], tab[c] + i);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(M), _mm512_mul_ps(dmin, da), acc[c]);
        }
    }
}

AI T5 void x16k_tile5(int q3, int CB, int64_t nb, const uint8_t *w, const uint8_t *act, size_t act_row, float *out,
                      size_t os) {
    x16s_tile5(x16k_block5, q3, q3 ? X16Q3_BYTES : X16Q2_BYTES, CB, nb, w, act, act_row, out, os);
}
AI T5 void x16k_dec5(int q3, int loc, int64_t nb, const uint8_t *w, const uint8_t *act, float *o) {
    x16s_dec5(x16k_block5, q3, q3 ? X16Q3_BYTES : X16Q2_BYTES, loc, nb, w, act, o);
}
/* the few-column passes: up to X16K_MAX_CB columns each */
AI T5 void x16k_cols5(int q3, int k, const uint8_t *p, const block_q8_K *const *a, __m512 *acc) {
    switch (k) {
    case 1: x16k_block5(q3, 1, p, a, acc); break;
    case 2: x16k_block5(q3, 2, p, a, acc); break;
    case 3: x16k_block5(q3, 3, p, a, acc); break;
    default: x16k_block5(q3, 4, p, a, acc); break;
    }
}
AI T5 void x16k_few5(int q3, int loc, int nc, int64_t nb, const uint8_t *w, const uint8_t *act, size_t act_row,
                     float *out, size_t os) {
    x16s_few5(x16k_cols5, q3, q3 ? X16Q3_BYTES : X16Q2_BYTES, X16K_MAX_CB, loc, nc, nb, w, act, act_row, out, os);
}
#define ISA_T T5
GROUP_SET(t5_q2_K_x16, 4, x16k_tile5, x16k_dec5, x16k_few5, 0)
GROUP_SET(t5_q3_K_x16, 4, x16k_tile5, x16k_dec5, x16k_few5, 1)
#undef ISA_T

const tile_set *k23_tiles_avx512(uint32_t t) {
    switch (t) {
    case GGML_Q2_K: return &t5_q2_K;
    case GGML_Q3_K: return &t5_q3_K;
    case GGML_IQ4_XS: return &t5_iq4_xs;
    case GGML_Q2_K_X16: return &t5_q2_K_x16;
    case GGML_Q3_K_X16: return &t5_q3_K_x16;
    default: return NULL;
    }
}
#endif
