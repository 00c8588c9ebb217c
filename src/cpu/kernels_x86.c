/* kernels_x86.c — AVX2 and AVX-512 (VNNI) kernel tables. Each function carries its own target
 * attribute, so a portable (-march=x86-64) build still contains both tables and picks one at run
 * time; on other architectures the file only defines the two getters, returning NULL.
 *
 * What is computed is exactly the scalar contract of quant.c: the integer part of every block
 * dot product is the same integer (only the order of the float combination differs; every
 * output's order is fixed whatever tile computes it, and for the K-quants it is the one the AMX
 * tiles use too: see kq_add5). Integer tricks used:
 *  - u8 x s8 products (maddubs / vpdpbusd) need an unsigned operand: weights are kept unsigned
 *    (Q4_0 nibble 0..15, Q5_0 0..31, Q8_0 w^0x80) and off * sum(act) is subtracted afterwards;
 *    for K-quants the offsets are the mins (Q4_K/Q5_K, via bsums) or 32 * sum(sc * bsum) (Q6_K).
 *  - per-sub-block scales are applied as int16 x int16 pair products (vpdpwssd / pmaddwd) on the
 *    int16 pair sums of maddubs, which cannot saturate: |u| <= 63 and |act| <= 128.
 *  - AVX2 has no vpdpbusd; Q8_0 there uses |w| x sign(act, w), exact because activations made
 *    by quantize_row_q8_0 lie in [-127, 127].
 * A matmul is cut into tiles of RB weight rows x CB activation columns: each weight block is
 * unpacked once per tile and used for CB columns, each activation block is loaded once per tile
 * row; columns are processed in chunks whose activations fit in L2. */
#include "cpu/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "formats/ggml_types.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define T2 __attribute__((target("avx2,fma,f16c")))
#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define AI static inline __attribute__((always_inline))

#define ACT_CHUNK_BYTES (1 << 20) /* activations per column chunk: half of a 2 MB L2 */
#define FKC 512                   /* float path: weights dequantized per chunk of a row */

/* ---- ISA-independent pieces ------------------------------------------------------------- */

/* The 8 six-bit scales and 8 mins of a Q4_K / Q5_K block, one per byte. */
static inline void kq_unpack_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint32_t sc_hi = (u2 & 0x0f0f0f0f) | ((u0 >> 2) & 0x30303030);
    uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 2) & 0x30303030);
    *sc = (u0 & 0x3f3f3f3f) | (uint64_t)sc_hi << 32;
    *mn = (u1 & 0x3f3f3f3f) | (uint64_t)mn_hi << 32;
}

/* Software prefetch of the weights PF_BLOCKS blocks ahead: decode is one pass over memory and
 * the hardware prefetcher alone leaves half of the bandwidth unused. */
#ifndef PF_BLOCKS
#define PF_BLOCKS 16
#endif
#ifndef PF_LOC
#define PF_LOC 2   /* prefetcht1: into L2 */
#endif
static inline void prefetch_block(const void *p, size_t size) {
    for (size_t o = 0; o < size; o += 64) __builtin_prefetch((const char *)p + o, 0, PF_LOC);
}

/* A tile function: R rows x C columns (fixed per function) over nb blocks. */
typedef void (*tile_fn)(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act,
                        size_t act_row, float *out, size_t os);
typedef struct {
    int rb, cb, rbd;
    tile_fn full[4];  /* rb x k columns, k = 1..cb (index k - 1) */
    tile_fn row1[4];  /* 1 x k, for the rows after the last full tile */
    tile_fn dec;      /* rbd x 1: decode, one activation column */
} tile_set;

static void run_tiles(const tile_set *t, int64_t nb, const uint8_t *w, size_t w_row, int nr,
                      const uint8_t *act, size_t act_row, int nc, float *out, size_t os) {
    if (nc <= t->cb) {
        /* Decode reads each weight once: the rows are cut into k equal segments and one tile
         * takes row r of every segment, so a core follows k independent streams and keeps
         * more cache misses in flight than with one (+15-20% tok/s on the 24B MoE model). */
        const int k = nc == 1 ? t->rbd : t->rb, seg = nr / k;
        const tile_fn f = nc == 1 ? t->dec : t->full[nc - 1];
        float o[8 * 4];
        for (int r = 0; r < seg; r++) {
            f(nb, w + r * w_row, (size_t)seg * w_row, act, act_row, o, (size_t)k);
            for (int c = 0; c < nc; c++)
                for (int i = 0; i < k; i++) out[c * os + r + i * seg] = o[c * k + i];
        }
        for (int r = seg * k; r < nr; r++) t->row1[nc - 1](nb, w + r * w_row, w_row, act, act_row, out + r, os);
        return;
    }
    /* rows outside, columns inside: a tile of weights is reused for a whole column chunk */
    int chunk = (int)(ACT_CHUNK_BYTES / (act_row ? act_row : 1));
    chunk = chunk < t->cb ? t->cb : chunk / t->cb * t->cb;
    for (int c0 = 0; c0 < nc; c0 += chunk) {
        int c1 = c0 + chunk < nc ? c0 + chunk : nc;
        for (int r = 0; r < nr;) {
            int rows = nr - r >= t->rb ? t->rb : 1;
            const tile_fn *f = rows == t->rb ? t->full : t->row1;
            for (int c = c0; c < c1;) {
                int k = c1 - c < t->cb ? c1 - c : t->cb;
                f[k - 1](nb, w + r * w_row, w_row, act + c * act_row, act_row, out + c * os + r, os);
                c += k;
            }
            r += rows;
        }
    }
}

#define TILE_FN(name, sfx, R, C, kern)                                                        \
    static ISA_T void name##sfx(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *a, \
                                size_t a_row, float *o, size_t os) {                          \
        kern(R, C, nb, w, w_row, a, a_row, o, os);                                            \
    }
/* tiles of RB x CB (CB <= 4) for prefill, and a decode tile of 4 x 1: TILE_SET makes it from
 * the same kernel, TILE_SET_DEC takes a hand-written one (dec) */
#define TILE_FNS(name, RB, CB, kern)                                                          \
    TILE_FN(name, _f1, RB, 1, kern)                                                           \
    TILE_FN(name, _f2, RB, (2 < CB ? 2 : CB), kern)                                           \
    TILE_FN(name, _f3, RB, (3 < CB ? 3 : CB), kern)                                           \
    TILE_FN(name, _f4, RB, CB, kern)                                                          \
    TILE_FN(name, _o1, 1, 1, kern)                                                            \
    TILE_FN(name, _o2, 1, (2 < CB ? 2 : CB), kern)                                            \
    TILE_FN(name, _o3, 1, (3 < CB ? 3 : CB), kern)                                            \
    TILE_FN(name, _o4, 1, CB, kern)
#define TILE_SET_DEC(name, RB, CB, kern, dec)                                                 \
    TILE_FNS(name, RB, CB, kern)                                                              \
    static const tile_set name = {RB, CB, 4, {name##_f1, name##_f2, name##_f3, name##_f4},    \
                                  {name##_o1, name##_o2, name##_o3, name##_o4}, dec};
#define TILE_SET(name, RB, CB, kern)                                                          \
    TILE_FN(name, _d, 4, 1, kern)                                                             \
    TILE_SET_DEC(name, RB, CB, kern, name##_d)

/* ===================================== AVX-512 ========================================== */
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
    case GGML_Q4_0: case GGML_Q4_1: {
        const uint8_t *qs = type == GGML_Q4_0 ? p + 2 : p + 4;
        __m128i q = _mm_loadu_si128((const __m128i *)qs);
        *d = _cvtsh_ss(((const uint16_t *)p)[0]);
        *m = type == GGML_Q4_1 ? _cvtsh_ss(((const uint16_t *)p)[1]) : 0;
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
    }
    case GGML_Q5_0: case GGML_Q5_1: {
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

AI T5 void q32_tile5(uint32_t type, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                     const uint8_t *act, size_t act_row, float *out, size_t os) {
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
                if (has_m)
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(as[c]), _mm256_set1_ps(m * da[c]), acc[r][c]);
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
    const size_t bs = type == GGML_Q4_0 ? sizeof(block_q4_0) : type == GGML_Q4_1 ? sizeof(block_q4_1)
                    : type == GGML_Q5_0 ? sizeof(block_q5_0) : type == GGML_Q5_1 ? sizeof(block_q5_1)
                    : sizeof(block_q8_0);   /* a constant: prefetch_block unrolls */
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
            prefetch_block(p + 4 * PF_BLOCKS * bs, bs);
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
    AI T5 void q32k5_##T(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, \
                         size_t ar, float *o, size_t os) { q32_tile5(GGML_##T, RB, CB, nb, w, wr, a, ar, o, os); } \
    static T5 void q32d5_##T(int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o, \
                             size_t os) { (void)ar, (void)os; q32_dec5(GGML_##T, nb, w, wr, a, o); }
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
    if (cnt <= 2 && has_m) {   /* [S0, S1, M0, M1] in one pass */
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

AI T5 void q45K_tile5(int is_q5, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                      const uint8_t *act, size_t act_row, float *out, size_t os) {
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
        __m256i ps[4], pm[4];   /* one column: the pending rows of a group of 4 */
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
            __m512i hz = is_q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh)) : _mm512_setzero_si512();
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
                acc[r] = kq_add5(acc[r], CB, 1, s8, m8, _mm_mul_ps(_mm_set1_ps(d), da4), _mm_mul_ps(_mm_set1_ps(dmin), da4));
            } else {
                ps[r % 4] = fold512_5(isum[0]);
                pm[r % 4] = _mm256_madd_epi16(mn16, bsum[0]);
                pd[r % 4] = d;
                pdm[r % 4] = dmin;
                if (r % 4 == 3 || r == RB - 1)
                    acc[r / 4] = kq_add5(acc[r / 4], r % 4 + 1, 1, ps, pm, _mm_mul_ps(_mm_loadu_ps(pd), _mm_set1_ps(da[0])),
                                         _mm_mul_ps(_mm_loadu_ps(pdm), _mm_set1_ps(da[0])));
            }
        }
    }
    kq_store5(RB, CB, acc, out, os);
}

AI T5 void q4Kk5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar,
                 float *o, size_t os) { q45K_tile5(0, RB, CB, nb, w, wr, a, ar, o, os); }
AI T5 void q5Kk5(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar,
                 float *o, size_t os) { q45K_tile5(1, RB, CB, nb, w, wr, a, ar, o, os); }

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
        sidx[k] = _mm512_inserti64x4(_mm512_set1_epi16((short)(0x8000 | lo)), _mm256_set1_epi16((short)(0x8000 | hi)), 1);
    }
    {
        short m[32];
        for (int i = 0; i < 32; i++) m[i] = (short)(0x8000 | (i % 8 < 4 ? 4 + i % 8 : 8 + i % 8));
        midx = _mm512_loadu_si512(m);
    }
    const __m512i hb[4] = {
        _mm512_inserti64x4(_mm512_set1_epi8(1), _mm256_set1_epi8(2), 1),
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
            prefetch_block(p[r] + PF_BLOCKS * bs, bs);
        }
        __m512i h = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p[0]));
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)p[1]), 1);
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)p[2]), 2);
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)p[3]), 3);
        const __m512i x = _mm512_shuffle_epi32(h, (_MM_PERM_ENUM)0xF9);   /* [u0, u1, u2, u2] */
        const __m512i y = _mm512_shuffle_epi32(h, (_MM_PERM_ENUM)0x9F);   /* [u2, u2, u0, u1] */
        const __m512i sm = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srlv_epi32(x, shift4), lo_mask),
                                                     _mm512_srli_epi32(y, 2), hi_mask, 0xF8); /* A | (B & C) */
        __m512i isum[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *qs = is_q5 ? p[r] + 48 : p[r] + 16;
            const __m512i hz = is_q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p[r] + 16))) : _mm512_setzero_si512();
            const __m512i smr = _mm512_permutexvar_epi32(lane_r[r], sm);   /* row r's header in every lane */
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
        const __m128i bsp = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a->bsums), _mm_loadu_si128((const __m128i *)(a->bsums + 8)));
        __m512i mm = _mm512_madd_epi16(_mm512_shuffle_epi8(sm, midx), _mm512_broadcast_i32x4(bsp));
        mm = _mm512_add_epi32(mm, _mm512_shuffle_epi32(mm, (_MM_PERM_ENUM)0x4E));
        mm = _mm512_add_epi32(mm, _mm512_shuffle_epi32(mm, (_MM_PERM_ENUM)0xB1));
        const __m128i M = _mm512_castsi512_si128(_mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), mm));
        const __m128i S = hsum4x8_5(fold512_5(isum[0]), fold512_5(isum[1]), fold512_5(isum[2]), fold512_5(isum[3]));
        /* d and dmin of the 4 rows (fp16 words 0 and 1 of each header lane) */
        const __m512i dw = _mm512_permutexvar_epi16(_mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                                     0, 0, 0, 0, 0, 0, 0, 0, 25, 17, 9, 1, 24, 16, 8, 0), h);
        const __m256 dd = _mm256_cvtph_ps(_mm512_castsi512_si128(dw));   /* [d0..d3, dmin0..dmin3] */
        const __m128 da = _mm_set1_ps(a->d);
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(S), _mm_mul_ps(_mm256_castps256_ps128(dd), da), acc);
        acc = _mm_fnmadd_ps(_mm_cvtepi32_ps(M), _mm_mul_ps(_mm256_extractf128_ps(dd, 1), da), acc);
    }
    _mm_storeu_ps(out, acc);
}
static T5 void q4K_dec5(int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o, size_t os) {
    (void)ar, (void)os;
    q45K_dec5(0, nb, w, wr, a, o);
}
static T5 void q5K_dec5(int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar, float *o, size_t os) {
    (void)ar, (void)os;
    q45K_dec5(1, nb, w, wr, a, o);
}
TILE_SET_DEC(t5_q4_K, 4, 4, q4Kk5, q4K_dec5)
TILE_SET_DEC(t5_q5_K, 4, 4, q5Kk5, q5K_dec5)

/* -- Q6_K x Q8_K, 512-bit: a vector holds 64 weights = four 16-weight sub-blocks ---------- */

AI T5 void q6K_tile5(int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                     const uint8_t *act, size_t act_row, float *out, size_t os) {
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
            prefetch_block(q6 + PF_BLOCKS, sizeof *q6);
            __m256i sc16y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q6->scales));
            __m512i sc16 = _mm512_castsi256_si512(sc16y);
            __m256i sc32 = _mm256_slli_epi16(sc16y, 5);
            const float d = _cvtsh_ss(q6->d);
            __m512i isum[4];
#pragma GCC unroll 4
            for (int c = 0; c < CB; c++)
                isum[c] = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(),
                              _mm256_madd_epi16(sc32, _mm256_loadu_si256((const __m256i *)a[c]->bsums))));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512i ql = _mm512_loadu_si512(q6->ql + 64 * h);
                __m512i hz = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q6->qh + 32 * h)));
                __m512i hA = _mm512_and_si512(_mm512_sllv_epi16(hz, shA), m30);
                __m512i hB = _mm512_and_si512(_mm512_srlv_epi16(hz, shB), m30);
                __m512i qA = _mm512_ternarylogic_epi32(ql, m4, hA, 0xEA);  /* (a & b) | c */
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
                    acc[r / 4] = kq_add5(acc[r / 4], r % 4 + 1, 0, ps, ps, _mm_mul_ps(_mm_loadu_ps(pd), _mm_set1_ps(da[0])), da4);
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
AI T5 void fdot_tile5(int RB, int CB, int m, const float *const *wr, const float *const *xc, float *out, size_t os, int add) {
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
static T5 void fdot_4x4_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) { fdot_tile5(4, 4, m, w, x, o, os, add); }
static T5 void fdot_4x1_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) { fdot_tile5(4, 1, m, w, x, o, os, add); }
static T5 void fdot_1x4_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) { fdot_tile5(1, 4, m, w, x, o, os, add); }
static T5 void fdot_1x1_5(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) { fdot_tile5(1, 1, m, w, x, o, os, add); }

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

typedef void (*fdot_fn)(int m, const float *const *w, const float *const *x, float *o, size_t os, int add);
typedef void (*dequant_fn)(uint32_t type, const uint8_t *row, int64_t k0, int m, float *dst);

/* The float path, shared by both ISAs through its two function pointer arguments. */
static void run_float(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                      size_t act_row, int nc, float *out, size_t os, const fdot_fn f[4], dequant_fn dq) {
    enum { RB = 4, CB = 4 };
    float buf[RB][FKC];
    int chunk = (int)(ACT_CHUNK_BYTES / (act_row ? act_row : 1));
    chunk = chunk < CB ? CB : chunk;
    for (int c0 = 0; c0 < nc; c0 += chunk) {
        int c1 = c0 + chunk < nc ? c0 + chunk : nc;
        for (int r0 = 0; r0 < nr; r0 += RB) {
            int rn = nr - r0 < RB ? nr - r0 : RB;
            for (int64_t k0 = 0; k0 < n; k0 += FKC) {
                int m = (int)(n - k0 < FKC ? n - k0 : FKC);
                const float *wr[RB];
                for (int r = 0; r < rn; r++) {
                    const uint8_t *row = w + (r0 + r) * w_row;
                    if (type == GGML_F32) wr[r] = (const float *)row + k0;
                    else { dq(type, row, k0, m, buf[r]); wr[r] = buf[r]; }
                }
                for (int r = rn; r < RB; r++) wr[r] = wr[0];
                for (int c = c0; c < c1;) {
                    const float *xc[CB];
                    int cn = c1 - c < CB ? c1 - c : CB;
                    for (int j = 0; j < CB; j++) xc[j] = (const float *)(act + (c + (j < cn ? j : 0)) * act_row) + k0;
                    float *o = out + c * os + r0;
                    if (rn == RB) {
                        if (cn == CB) f[0](m, wr, xc, o, os, k0 > 0);
                        else for (int j = 0; j < cn; j++) f[1](m, wr, xc + j, o + j * os, os, k0 > 0);
                    } else {
                        for (int r = 0; r < rn; r++) {
                            if (cn == CB) f[2](m, wr + r, xc, o + r, os, k0 > 0);
                            else for (int j = 0; j < cn; j++) f[3](m, wr + r, xc + j, o + j * os + r, os, k0 > 0);
                        }
                    }
                    c += cn;
                }
            }
        }
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
        float max = 0;   /* the first value of largest magnitude, sign kept */
        __m512 vam = _mm512_set1_ps(am);
        for (int j = 0; j < QK_K; j += 16) {
            __mmask16 k = _mm512_cmp_ps_mask(_mm512_andnot_ps(signbit, _mm512_loadu_ps(x + j)), vam, _CMP_EQ_OQ);
            if (k) { max = x[j + __builtin_ctz(k)]; break; }
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

static T5 void quantize_act5(uint32_t act_type, const float *x, void *dst, int64_t n) {
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
                __builtin_prefetch(row + (i + 16 * PF_BLOCKS) * esz, 0, PF_LOC);
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
static T5 void fdec_f16_5(int64_t n, const uint8_t *w, size_t seg, const float *x, float *o) { fdec_tile5(GGML_F16, n, w, seg, x, o); }
static T5 void fdec_bf16_5(int64_t n, const uint8_t *w, size_t seg, const float *x, float *o) { fdec_tile5(GGML_BF16, n, w, seg, x, o); }
static T5 void fdec_f32_5(int64_t n, const uint8_t *w, size_t seg, const float *x, float *o) { fdec_tile5(GGML_F32, n, w, seg, x, o); }

static void run_fdec5(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const float *x, float *out) {
    void (*f)(int64_t, const uint8_t *, size_t, const float *, float *) =
        type == GGML_F16 ? fdec_f16_5 : type == GGML_BF16 ? fdec_bf16_5 : fdec_f32_5;
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

static void matmul5(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr,
                    const uint8_t *act, size_t act_row, int nc, float *out, size_t os) {
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
    case GGML_F16: case GGML_BF16: case GGML_F32:
        if (nc == 1) { run_fdec5(wtype, n, w, w_row, nr, (const float *)act, out); return; }
        /* fall through */
    default: run_float(wtype, n, w, w_row, nr, act, act_row, nc, out, os, FDOT5, dequant_chunk5); return;
    }
    int64_t nb = n / ggml_type_get(wtype)->block_size;
    run_tiles(t, nb, w, w_row, nr, act, act_row, nc, out, os);
}

#undef ISA_T

/* ======================================= AVX2 =========================================== */
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
    case GGML_Q4_0: case GGML_Q4_1: {
        const uint8_t *qs = type == GGML_Q4_0 ? p + 2 : p + 4;
        __m128i q = _mm_loadu_si128((const __m128i *)qs);
        *d = _cvtsh_ss(((const uint16_t *)p)[0]);
        *m = type == GGML_Q4_1 ? _cvtsh_ss(((const uint16_t *)p)[1]) : 0;
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
    }
    case GGML_Q5_0: case GGML_Q5_1: {
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

AI T2 void q32_tile2(uint32_t type, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                     const uint8_t *act, size_t act_row, float *out, size_t os) {
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
                if (has_m)
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(as[c]), _mm256_set1_ps(m * da[c]), acc[r][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) out[c * os + r] = hsum256_2(acc[r][c]);
}

#define Q32_KERN2(T) \
    AI T2 void q32k2_##T(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, \
                         size_t ar, float *o, size_t os) { q32_tile2(GGML_##T, RB, CB, nb, w, wr, a, ar, o, os); }
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

/* -- Q4_K / Q5_K x Q8_K, 256-bit: a vector holds one 32-weight sub-block ------------------ */

AI T2 void q45K_tile2(int is_q5, int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                      const uint8_t *act, size_t act_row, float *out, size_t os) {
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[2];
        __m128i bs8[2];
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) {
            a[c] = (const block_q8_K *)(act + c * act_row) + b;
            bs8[c] = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a[c]->bsums),
                                    _mm_loadu_si128((const __m128i *)(a[c]->bsums + 8)));
        }
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            const uint8_t *p = w + r * w_row + b * bs;
            const uint16_t *dh = (const uint16_t *)p;
            const uint8_t *scales = p + 4, *qh = p + 16, *qs = is_q5 ? p + 48 : p + 16;
            uint64_t sc, mn;
            kq_unpack_scales(scales, &sc, &mn);
            __m128i mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn));
            float d = _cvtsh_ss(dh[0]), dmin = _cvtsh_ss(dh[1]);
            __m256i hv = is_q5 ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
            __m256i isum[2];
#pragma GCC unroll 2
            for (int c = 0; c < CB; c++) isum[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
                __m256i q0 = _mm256_and_si256(q, m4), q1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (is_q5) {
                    q0 = _mm256_or_si256(q0, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * k), 4), _mm256_set1_epi8(16)));
                    q1 = _mm256_or_si256(q1, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * k + 1), 4), _mm256_set1_epi8(16)));
                }
                __m256i s0 = _mm256_set1_epi16((short)((sc >> (16 * k)) & 0xFF));
                __m256i s1 = _mm256_set1_epi16((short)((sc >> (16 * k + 8)) & 0xFF));
#pragma GCC unroll 2
                for (int c = 0; c < CB; c++) {
                    __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)(a[c]->qs + 64 * k)));
                    __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(a[c]->qs + 64 * k + 32)));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(p0, s0));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(p1, s1));
                }
            }
#pragma GCC unroll 2
            for (int c = 0; c < CB; c++) {
                __m128i mins = _mm_madd_epi16(mn16, bs8[c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_set1_ps(d * a[c]->d), acc[r][c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_zextsi128_si256(mins)),
                                            _mm256_set1_ps(-dmin * a[c]->d), acc[r][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) out[c * os + r] = hsum256_2(acc[r][c]);
}
AI T2 void q4Kk2(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar,
                 float *o, size_t os) { q45K_tile2(0, RB, CB, nb, w, wr, a, ar, o, os); }
AI T2 void q5Kk2(int RB, int CB, int64_t nb, const uint8_t *w, size_t wr, const uint8_t *a, size_t ar,
                 float *o, size_t os) { q45K_tile2(1, RB, CB, nb, w, wr, a, ar, o, os); }
TILE_SET(t2_q4_K, 4, 2, q4Kk2)
TILE_SET(t2_q5_K, 4, 2, q5Kk2)

/* -- Q6_K x Q8_K, 256-bit: a vector holds 32 weights = two 16-weight sub-blocks ----------- */

AI T2 void q6K_tile2(int RB, int CB, int64_t nb, const uint8_t *w, size_t w_row,
                     const uint8_t *act, size_t act_row, float *out, size_t os) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[2];
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) a[c] = (const block_q8_K *)(act + c * act_row) + b;
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const block_q6_K *q6 = (const block_q6_K *)(w + r * w_row) + b;
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q6->scales));
            __m256i sc32 = _mm256_slli_epi16(sc16, 5);
            float d = _cvtsh_ss(q6->d);
            __m256i isum[2];
#pragma GCC unroll 2
            for (int c = 0; c < CB; c++)
                isum[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                              _mm256_madd_epi16(sc32, _mm256_loadu_si256((const __m256i *)a[c]->bsums)));
            /* weights 32 j .. 32 j + 31 are sub-blocks 2j, 2j+1 */
            int16_t scv[16];
            _mm256_storeu_si256((__m256i *)scv, sc16);
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i hv = _mm256_loadu_si256((const __m256i *)(q6->qh + 32 * h));
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(q6->ql + 64 * h));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(q6->ql + 64 * h + 32));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m30));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30));
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    int sb = 8 * h + 2 * j;
                    __m256i s = _mm256_set_m128i(_mm_set1_epi16(scv[sb + 1]), _mm_set1_epi16(scv[sb]));
#pragma GCC unroll 2
                    for (int c = 0; c < CB; c++) {
                        __m256i p = _mm256_maddubs_epi16(q[j], _mm256_loadu_si256((const __m256i *)(a[c]->qs + 128 * h + 32 * j)));
                        isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(p, s));
                    }
                }
            }
#pragma GCC unroll 2
            for (int c = 0; c < CB; c++)
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_set1_ps(d * a[c]->d), acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CB; c++) out[c * os + r] = hsum256_2(acc[r][c]);
}
TILE_SET(t2_q6_K, 4, 2, q6K_tile2)

/* -- float path ---------------------------------------------------------------------------- */

AI T2 void fdot_tile2(int RB, int CB, int m, const float *const *wr, const float *const *xc, float *out, size_t os, int add) {
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
static T2 void fdot_4x1_2(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) { fdot_tile2(4, 1, m, w, x, o, os, add); }
static T2 void fdot_1x4_2(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) {
    fdot_tile2(1, 2, m, w, x, o, os, add);
    fdot_tile2(1, 2, m, w, x + 2, o + 2 * os, os, add);
}
static T2 void fdot_1x1_2(int m, const float *const *w, const float *const *x, float *o, size_t os, int add) { fdot_tile2(1, 1, m, w, x, o, os, add); }

static T2 void dequant_chunk2(uint32_t type, const uint8_t *row, int64_t k0, int m, float *dst) {
    if (type == GGML_F16) {
        const uint16_t *src = (const uint16_t *)row + k0;
        int i = 0;
        for (; i + 8 <= m; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
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
        for (int j = 0; j < QK_K; j += 8)
            amax = _mm256_max_ps(_mm256_andnot_ps(signbit, _mm256_loadu_ps(x + j)), amax);
        float am = hmax256_2(amax);
        if (am == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0;
        __m256 vam = _mm256_set1_ps(am);
        for (int j = 0; j < QK_K; j += 8) {
            int k = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(signbit, _mm256_loadu_ps(x + j)), vam, _CMP_EQ_OQ));
            if (k) { max = x[j + __builtin_ctz((unsigned)k)]; break; }
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

static void matmul2(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr,
                    const uint8_t *act, size_t act_row, int nc, float *out, size_t os) {
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
    default: run_float(wtype, n, w, w_row, nr, act, act_row, nc, out, os, FDOT2, dequant_chunk2); return;
    }
    int64_t nb = n / ggml_type_get(wtype)->block_size;
    run_tiles(t, nb, w, w_row, nr, act, act_row, nc, out, os);
}
#undef ISA_T

/* ================================ AMX (int8 tiles) ======================================= */
/* Prefill of K-quants on CPUs with AMX-INT8: 16 weight rows x 16 activation columns per tile.
 * Weights are unpacked once per 16-row tile to unsigned bytes in row-major order (the A
 * operand), activations once per column chunk to the VNNI layout the B operand wants (4 bytes
 * of one column per int32, 16 columns per 64-byte row). One tdpbusd per sub-block (K = 32 for
 * Q4_K/Q5_K, 16 for Q6_K) gives the exact int32 sub-block sums; they are scaled by the integer
 * sub-block scales (vpmulld) and the offsets (mins / 32 x scale via bsums) in integers, then
 * combined in float per block by the formula of the AVX-512 K-quant tiles (kq_add5, one lane
 * per column), so every output is bitwise what the AVX-512 table gives: prefill on AMX and
 * decode on AVX-512 agree. Rows or columns that do not fill a tile are zero-padded. */
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TA __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,amx-tile,amx-int8,avx2,fma,f16c")))

#ifndef AMX_PF_BLOCKS
#define AMX_PF_BLOCKS 16   /* weight unpacking streams rows from memory: prefetch ahead like decode */
#endif
#ifndef AMX_MIN_COLS
#define AMX_MIN_COLS 8
#endif

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tilecfg;

/* Linux hands out the AMX register state only on request (once per process). */
static int amx_request(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    return 0;
#endif
}

/* Per 16-row tile and block: unpacked weights, integer scales (int32 for broadcast), int16
 * pairs of the offset multipliers, and the float scales. */
typedef struct {
    uint8_t q[16][256];
    int32_t sc[16][16];   /* per row, per sub-block */
    int32_t op[16][8];    /* per row, int16 pairs: Q4/5_K mins, Q6_K scales */
    float d[16], dmin[16];
} amx_wblock;

/* Per 16-column tile and block: the B operand, activation scales and int16 bsum pairs. */
typedef struct {
    int32_t b[64][16];    /* [4-byte group][column] */
    float da[16];
    int32_t bs[8][16];    /* [pair][column]: Q4/5_K pairs of 32-sums, Q6_K pairs of 16-sums */
} amx_ablock;

/* Q6_K (Q4_K / Q5_K go through amx_unpack_hl); rows >= nrows are zero (a partial tile) */
static TA void amx_unpack_w(const uint8_t *w, size_t w_row, int nrows, int64_t nb, amx_wblock *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (int r = nrows; r < 16; r++)
        for (int64_t b = 0; b < nb; b++) {
            memset(out[b].q[r], 0, sizeof out[b].q[r]);
            memset(out[b].sc[r], 0, sizeof out[b].sc[r]);
            memset(out[b].op[r], 0, sizeof out[b].op[r]);
            out[b].d[r] = out[b].dmin[r] = 0;
        }
    for (int r = 0; r < nrows; r++) {
        const uint8_t *row = w + r * w_row;
        for (int64_t b = 0; b < nb; b++) {
            amx_wblock *o = out + b;
            uint8_t *q = o->q[r];
            const block_q6_K *x = (const block_q6_K *)row + b;
            prefetch_block(x + AMX_PF_BLOCKS, sizeof *x);
            for (int h = 0; h < 2; h++) {
                __m256i hv = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
                uint8_t *qq = q + 128 * h;
                _mm256_storeu_si256((__m256i *)qq, _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30)));
                _mm256_storeu_si256((__m256i *)(qq + 32), _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30)));
                _mm256_storeu_si256((__m256i *)(qq + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m30)));
                _mm256_storeu_si256((__m256i *)(qq + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30)));
            }
            for (int j = 0; j < 16; j++) o->sc[r][j] = x->scales[j];
            for (int p = 0; p < 8; p++)
                o->op[r][p] = (int32_t)((uint32_t)(uint16_t)(32 * x->scales[2 * p]) | (uint32_t)(uint16_t)(32 * x->scales[2 * p + 1]) << 16);
            o->d[r] = _cvtsh_ss(x->d);
            o->dmin[r] = 0;
        }
    }
}

/* columns >= ncols are zero (a partial tile) */
static void amx_pack_act(uint32_t type, const uint8_t *act, size_t act_row, int ncols, int64_t nb, amx_ablock *out) {
    for (int c = ncols; c < 16; c++)
        for (int64_t b = 0; b < nb; b++) {
            for (int g = 0; g < 64; g++) out[b].b[g][c] = 0;
            out[b].da[c] = 0;
            for (int p = 0; p < 8; p++) out[b].bs[p][c] = 0;
        }
    for (int c = 0; c < ncols; c++) {
        const block_q8_K *a = (const block_q8_K *)(act + c * act_row);
        for (int64_t b = 0; b < nb; b++) {
            amx_ablock *o = out + b;
            for (int g = 0; g < 64; g++) memcpy(&o->b[g][c], a[b].qs + 4 * g, 4);
            o->da[c] = a[b].d;
            if (type == GGML_Q6_K) {
                for (int p = 0; p < 8; p++)
                    o->bs[p][c] = (int32_t)((uint32_t)(uint16_t)a[b].bsums[2 * p] | (uint32_t)(uint16_t)a[b].bsums[2 * p + 1] << 16);
            } else {
                for (int p = 0; p < 4; p++) {
                    int16_t s0 = (int16_t)(a[b].bsums[4 * p] + a[b].bsums[4 * p + 1]);
                    int16_t s1 = (int16_t)(a[b].bsums[4 * p + 2] + a[b].bsums[4 * p + 3]);
                    o->bs[p][c] = (int32_t)((uint32_t)(uint16_t)s0 | (uint32_t)(uint16_t)s1 << 16);
                }
            }
        }
    }
}

/* One sub-block step: C[t] = A(j) x B(j) with the A/B pair (ra, rb). */
#define AMX_STEP(t, ra, rb, j)                                                   \
    do {                                                                         \
        _tile_loadd(ra, wb->q[0] + S * (j), 256);                                \
        _tile_loadd(rb, &ab->b[(j) * S / 4][0], 64);                             \
        _tile_zero(t);                                                           \
        _tile_dpbusd(t, ra, rb);                                                 \
    } while (0)

/* One 16 x 16 tile over all blocks; acc rows are written to out (row r, column c). */
static TA void amx_tile(uint32_t type, int64_t nb, const amx_wblock *wbs, const amx_ablock *abs,
                        size_t ab_stride, float *out, size_t os, int nrows, int ncols) {
    const int S = type == GGML_Q6_K ? 16 : 32, NS = 256 / S;
    __m512 acc[16];
    for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
    int32_t cbuf[16][16][16] __attribute__((aligned(64)));   /* [sub-block][row][column] */
    for (int64_t b = 0; b < nb; b++) {
        const amx_wblock *wb = wbs + b;
        const amx_ablock *ab = (const amx_ablock *)((const uint8_t *)abs + b * ab_stride);
        for (int j = 0; j < NS; j += 4) {
            AMX_STEP(0, 4, 5, j);
            AMX_STEP(1, 6, 7, j + 1);
            _tile_stored(0, cbuf[j], 64);
            AMX_STEP(2, 4, 5, j + 2);
            _tile_stored(1, cbuf[j + 1], 64);
            AMX_STEP(3, 6, 7, j + 3);
            _tile_stored(2, cbuf[j + 2], 64);
            _tile_stored(3, cbuf[j + 3], 64);
        }
        __m512 da = _mm512_loadu_ps(ab->da);
        __m512i bs[8];
        for (int p = 0; p < NS / 2; p++) bs[p] = _mm512_loadu_si512(ab->bs[p]);
        for (int r = 0; r < 16; r++) {
            __m512i isum = _mm512_mullo_epi32(_mm512_load_si512(cbuf[0][r]), _mm512_set1_epi32(wb->sc[r][0]));
            for (int j = 1; j < NS; j++)
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_load_si512(cbuf[j][r]), _mm512_set1_epi32(wb->sc[r][j])));
            __m512i off = _mm512_setzero_si512();
            for (int p = 0; p < NS / 2; p++) off = _mm512_dpwssd_epi32(off, _mm512_set1_epi32(wb->op[r][p]), bs[p]);
            if (type == GGML_Q6_K) {
                isum = _mm512_sub_epi32(isum, off);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(da, _mm512_set1_ps(wb->d[r])), acc[r]);
            } else {
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(da, _mm512_set1_ps(wb->d[r])), acc[r]);
                acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(off), _mm512_mul_ps(da, _mm512_set1_ps(wb->dmin[r])), acc[r]);
            }
        }
    }
    float t[16][16];
    for (int r = 0; r < 16; r++) _mm512_storeu_ps(t[r], acc[r]);
    for (int c = 0; c < ncols; c++)
        for (int r = 0; r < nrows; r++) out[c * os + r] = t[r][c];
}

/* Q4_K / Q5_K: the sub-block scales go into the A operand. A scale s (6 bits) is split as
 * s = 8 hi + lo with hi, lo <= 7, so hi * q and lo * q (q <= 31) still fit in a byte; then
 * sum_j s_j (q_j . a_j) = 8 (Hi . a) + (Lo . a) with Hi, Lo the scaled weight rows, and a whole
 * block is two chains of four K = 64 tdpbusd instead of eight sub-block tiles to rescale. */
typedef struct {
    uint8_t hi[16][256], lo[16][256];
    int32_t op[16][4];
    float d[16], dmin[16];
} amx_wblock_hl;

/* Unpacks Q4_K / Q5_K rows straight into the scaled Hi / Lo operands (one pass, no unscaled
 * copy). A 16-bit multiply of two packed bytes q0 + 256 q1 by m <= 7 gives q0 m + 256 q1 m with
 * q m <= 217 < 256, so it is the byte-wise product: no widening needed. Rows >= nrows are zero. */
static TA void amx_unpack_hl(uint32_t type, const uint8_t *w, size_t w_row, int nrows, int64_t nb,
                             amx_wblock_hl *out) {
    const int is_q5 = type == GGML_Q5_K;
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16), seven = _mm512_set1_epi16(7);
    __m512i sidx[4], hbit[4];   /* int16 lane -> sub-block: lanes 0..15 2c, 16..31 2c+1 */
    for (int c = 0; c < 4; c++) {
        sidx[c] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
        hbit[c] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))), _mm256_set1_epi8((char)(2 << (2 * c))), 1);
    }
    for (int64_t b = 0; b < nb; b++)
        for (int r = nrows; r < 16; r++) {
            memset(out[b].hi[r], 0, sizeof out[b].hi[r]);
            memset(out[b].lo[r], 0, sizeof out[b].lo[r]);
            memset(out[b].op[r], 0, sizeof out[b].op[r]);
            out[b].d[r] = out[b].dmin[r] = 0;
        }
    for (int r = 0; r < nrows; r++) {
        const uint8_t *row = w + r * w_row;
        for (int64_t b = 0; b < nb; b++) {
            amx_wblock_hl *o = out + b;
            const uint8_t *p = row + b * bs;
            prefetch_block(p + AMX_PF_BLOCKS * bs, bs);
            const uint8_t *qs = is_q5 ? p + 48 : p + 16;
            uint64_t sc, mn;
            kq_unpack_scales(p + 4, &sc, &mn);
            __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
            __m512i sh = _mm512_srli_epi16(sc16, 3), sl = _mm512_and_si512(sc16, seven);
            __m512i hz = is_q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 16))) : _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
                q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4), m4);
                if (is_q5) q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hz, hbit[c]), q, sixteen);
                _mm512_store_si512(o->hi[r] + 64 * c, _mm512_mullo_epi16(q, _mm512_permutexvar_epi16(sidx[c], sh)));
                _mm512_store_si512(o->lo[r] + 64 * c, _mm512_mullo_epi16(q, _mm512_permutexvar_epi16(sidx[c], sl)));
            }
            for (int pp = 0; pp < 4; pp++)
                o->op[r][pp] = (int32_t)(((mn >> (16 * pp)) & 0xFF) | ((mn >> (16 * pp + 8)) & 0xFF) << 16);
            const uint16_t *dh = (const uint16_t *)p;
            o->d[r] = _cvtsh_ss(dh[0]);
            o->dmin[r] = _cvtsh_ss(dh[1]);
        }
    }
}

static TA void amx_tile_hl(int64_t nb, const amx_wblock_hl *wbs, const amx_ablock *abs, float *out, size_t os,
                           int nrows, int ncols) {
    __m512 acc[16];
    for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
    int32_t cbuf[2][16][16] __attribute__((aligned(64)));
    for (int64_t b = 0; b < nb; b++) {
        const amx_wblock_hl *wb = wbs + b;
        const amx_ablock *ab = abs + b;
        _tile_zero(0);
        _tile_zero(1);
        for (int t = 0; t < 4; t += 2) {
            _tile_loadd(2, &ab->b[16 * t][0], 64);
            _tile_loadd(3, wb->hi[0] + 64 * t, 256);
            _tile_loadd(4, wb->lo[0] + 64 * t, 256);
            _tile_dpbusd(0, 3, 2);
            _tile_dpbusd(1, 4, 2);
            _tile_loadd(5, &ab->b[16 * t + 16][0], 64);
            _tile_loadd(6, wb->hi[0] + 64 * t + 64, 256);
            _tile_loadd(7, wb->lo[0] + 64 * t + 64, 256);
            _tile_dpbusd(0, 6, 5);
            _tile_dpbusd(1, 7, 5);
        }
        _tile_stored(0, cbuf[0], 64);
        _tile_stored(1, cbuf[1], 64);
        __m512 da = _mm512_loadu_ps(ab->da);
        __m512i bs[4];
        for (int p = 0; p < 4; p++) bs[p] = _mm512_loadu_si512(ab->bs[p]);
        for (int r = 0; r < 16; r++) {
            __m512i isum = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(cbuf[0][r]), 3),
                                            _mm512_load_si512(cbuf[1][r]));
            __m512i off = _mm512_setzero_si512();
            for (int p = 0; p < 4; p++) off = _mm512_dpwssd_epi32(off, _mm512_set1_epi32(wb->op[r][p]), bs[p]);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(da, _mm512_set1_ps(wb->d[r])), acc[r]);
            acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(off), _mm512_mul_ps(da, _mm512_set1_ps(wb->dmin[r])), acc[r]);
        }
    }
    float t[16][16];
    for (int r = 0; r < 16; r++) _mm512_storeu_ps(t[r], acc[r]);
    for (int c = 0; c < ncols; c++)
        for (int r = 0; r < nrows; r++) out[c * os + r] = t[r][c];
}

/* Returns 0 when it did nothing (no memory); the caller then uses the AVX-512 tiles. */
static TA int amx_matmul(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr,
                         const uint8_t *act, size_t act_row, int nc, float *out, size_t os) {
    const int64_t nb = n / QK_K;
    const int ntc = (nc + 15) / 16;   /* column tiles, the last one maybe partial */
    /* column tiles per chunk: B operands of about 1 MB */
    int ctiles = (int)((1 << 20) / (nb * (int64_t)sizeof(amx_ablock)));
    if (ctiles < 1) ctiles = 1;
    if (ctiles > ntc) ctiles = ntc;
    const int hl = type != GGML_Q6_K;
    amx_wblock *wbs = hl ? NULL : aligned_alloc(64, (size_t)nb * sizeof(amx_wblock));
    amx_wblock_hl *whl = hl ? aligned_alloc(64, (size_t)nb * sizeof(amx_wblock_hl)) : NULL;
    amx_ablock *abs = aligned_alloc(64, (size_t)nb * (size_t)ctiles * sizeof(amx_ablock));
    if (!abs || (hl ? !whl : !wbs)) { free(wbs); free(whl); free(abs); return 0; }
    const int S = type == GGML_Q6_K ? 16 : 32;
    amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    if (hl) {   /* C: 0, 1; B: 2, 5; A: 3, 4, 6, 7 -- all 16 rows x 64 bytes */
        for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    } else {
        for (int t = 0; t < 4; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }          /* C */
        for (int t = 4; t < 8; t += 2) { cfg.rows[t] = 16; cfg.colsb[t] = (uint16_t)S; } /* A */
        for (int t = 5; t < 8; t += 2) { cfg.rows[t] = (uint8_t)(S / 4); cfg.colsb[t] = 64; } /* B */
    }
    _tile_loadconfig(&cfg);
    for (int t0 = 0; t0 < ntc; t0 += ctiles) {
        int tn = ntc - t0 < ctiles ? ntc - t0 : ctiles;
        for (int ct = 0; ct < tn; ct++) {
            int c = 16 * (t0 + ct), cols = nc - c < 16 ? nc - c : 16;
            amx_pack_act(type, act + (size_t)c * act_row, act_row, cols, nb, abs + (size_t)ct * nb);
        }
        for (int r0 = 0; r0 < nr; r0 += 16) {
            int rows = nr - r0 < 16 ? nr - r0 : 16;
            if (hl) amx_unpack_hl(type, w + (size_t)r0 * w_row, w_row, rows, nb, whl);
            else amx_unpack_w(w + (size_t)r0 * w_row, w_row, rows, nb, wbs);
            for (int ct = 0; ct < tn; ct++) {
                int c = 16 * (t0 + ct), cols = nc - c < 16 ? nc - c : 16;
                float *o = out + (size_t)c * os + r0;
                if (hl) amx_tile_hl(nb, whl, abs + (size_t)ct * nb, o, os, rows, cols);
                else amx_tile(type, nb, wbs, abs + (size_t)ct * nb, sizeof(amx_ablock), o, os, rows, cols);
            }
        }
    }
    _tile_release();
    free(wbs);
    free(whl);
    free(abs);
    return 1;
}

static void matmul_amx(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr,
                       const uint8_t *act, size_t act_row, int nc, float *out, size_t os) {
    /* partial tiles are zero-padded: worth it from about 8 columns (MoE expert batches) */
    if ((wtype == GGML_Q4_K || wtype == GGML_Q5_K || wtype == GGML_Q6_K) && nr >= 16 && nc >= AMX_MIN_COLS &&
        amx_matmul(wtype, n, w, w_row, nr, act, act_row, nc, out, os))
        return;
    matmul5(wtype, n, w, w_row, nr, act, act_row, nc, out, os);
}

/* ==================================== the tables ======================================== */

static const kernel_ops AVX2_OPS = {"avx2", true, quantize_act2, matmul2, attention_x86_avx2};
static const kernel_ops AVX512_OPS = {"avx512vnni", true, quantize_act5, matmul5, attention_x86_avx512};
static const kernel_ops AMX_OPS = {"amx", true, quantize_act5, matmul_amx, attention_x86_avx512};

const kernel_ops *kernels_x86_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &AVX2_OPS : NULL;
}

const kernel_ops *kernels_x86_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma")
               ? &AVX512_OPS : NULL;
}

/* AMX-TILE and AMX-INT8 (CPUID leaf 7: EDX bits 24, 25), read directly: not every compiler's
 * __builtin_cpu_supports knows the AMX names (clang 14 does not). */
static bool cpu_has_amx_int8(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (d >> 24 & 1) && (d >> 25 & 1);
}

/* AMX-INT8 on top of the AVX-512 table, when the CPU has it and the kernel grants it. */
const kernel_ops *kernels_x86_amx(void) {
    static int granted = -1;   /* a cache of a per-process fact; racing writers store the same value */
    if (!kernels_x86_avx512() || !cpu_has_amx_int8()) return NULL;
    int g = __atomic_load_n(&granted, __ATOMIC_RELAXED);
    if (g < 0) {
        g = amx_request();
        __atomic_store_n(&granted, g, __ATOMIC_RELAXED);
    }
    return g ? &AMX_OPS : NULL;
}

#else /* not x86-64: no tables */
const kernel_ops *kernels_x86_avx2(void) { return 0; }
const kernel_ops *kernels_x86_avx512(void) { return 0; }
const kernel_ops *kernels_x86_amx(void) { return 0; }
#endif
