/* kernels_amx.c — the AMX table: prefill of K-quants on CPUs with AMX-INT8, 16 weight rows x 16
 * activation columns per tile. The table packs Q4_K / Q6_K into the AVX-512 table's X16 layouts
 * (avx512_packed_type), so decode and few-column products run the X16 tiles and their prefetch
 * plans, and the AMX tiles take the X16 groups as they are (amx_matmul_x16: an X16 vector is a
 * row of the B operand, the activations the A operand straight from their Q8_K rows).
 * Plain rows (Q5_K, matrices whose rows are not whole groups, a mapped file) take the older
 * path: weights unpacked once per 16-row tile to unsigned bytes in row-major order (the A
 * operand), activations once per column chunk to the VNNI layout the B operand wants (4 bytes
 * of one column per int32, 16 columns per 64-byte row); there one tile product per sub-block
 * (K = 32 for Q4_K/Q5_K, 16 for Q6_K) gives the exact int32 sub-block sums, scaled by the integer
 * sub-block scales (vpmulld) less the offsets (mins / 32 x scale via bsums). The X16 groups put the
 * scales into the weight operand instead (Q4_K: their high and low parts; Q6_K: balanced base-7
 * digits with the quants centred), so a block is a few K = 64 chains. Either way the integers are
 * exact and are combined in float per block by the formula of the AVX-512 K-quant tiles
 * (kq_add5), so every output is bitwise what the AVX-512 table gives: prefill on AMX and decode
 * on AVX-512 agree.
 * Rows or columns that do not fill a tile are zero-padded. Everything else (decode, the other
 * types, activations) is the AVX-512 table's (kernels_avx512.c); off x86-64 the file only
 * defines the getter, returning NULL. Not on Windows yet: GCC 12's _tile_loadd takes its stride as
 * a long, 32 bits there, which the assembler refuses, and the tile state is not requested
 * (base/os.h's os_amx_permit). */
#include "cpu/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32)
#include "cpu/kernels_avx512.h"
#include "cpu/tiles.h"
#include "formats/ggml_types.h"
#include "base/os.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

#define TA __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,amx-tile,amx-int8,avx2,fma,f16c")))

#ifndef AMX_PF_BLOCKS
#define AMX_PF_BLOCKS 16 /* weight unpacking streams rows from memory: prefetch ahead like decode */
#endif
#ifndef AMX_MIN_COLS
#define AMX_MIN_COLS 8 /* plain rows: below it the AVX-512 tiles */
#endif
#ifndef AMX_MIN_COLS_X16
#define AMX_MIN_COLS_X16 32 /* X16 groups: the AVX-512 X16 tiles are faster below (docs/HARDWARE.md) */
#endif

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tilecfg;

/* Linux hands out the AMX register state only on request (once per process): base/os.h. */
static int amx_request(void) { return os_amx_permit(); }

/* Per 16-row tile and block: unpacked weights, integer scales (int32 for broadcast), int16
 * pairs of the offset multipliers, and the float scales. */
typedef struct {
    uint8_t q[16][256];
    int32_t sc[16][16]; /* per row, per sub-block */
    int32_t op[16][8];  /* per row, int16 pairs: Q4/5_K mins, Q6_K scales */
    float d[16], dmin[16];
} amx_wblock;

/* Per 16-column tile and block: the B operand, activation scales and int16 bsum pairs. */
typedef struct {
    int32_t b[64][16]; /* [4-byte group][column] */
    float da[16];
    int32_t bs[8][16]; /* [pair][column]: Q4/5_K pairs of 32-sums, Q6_K pairs of 16-sums */
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
                _mm256_storeu_si256((__m256i *)qq, _mm256_or_si256(_mm256_and_si256(l0, m4),
                                                                   _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30)));
                _mm256_storeu_si256(
                    (__m256i *)(qq + 32),
                    _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30)));
                _mm256_storeu_si256(
                    (__m256i *)(qq + 64),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m30)));
                _mm256_storeu_si256((__m256i *)(qq + 96),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                    _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30)));
            }
            for (int j = 0; j < 16; j++) o->sc[r][j] = x->scales[j];
            for (int p = 0; p < 8; p++)
                o->op[r][p] = (int32_t)((uint32_t)(uint16_t)(32 * x->scales[2 * p]) |
                                        (uint32_t)(uint16_t)(32 * x->scales[2 * p + 1]) << 16);
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
                    o->bs[p][c] = (int32_t)((uint32_t)(uint16_t)a[b].bsums[2 * p] |
                                            (uint32_t)(uint16_t)a[b].bsums[2 * p + 1] << 16);
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
#define AMX_STEP(t, ra, rb, j) \
    do { \
        _tile_loadd(ra, wb->q[0] + S * (j), 256); \
        _tile_loadd(rb, &ab->b[(j)*S / 4][0], 64); \
        _tile_zero(t); \
        _tile_dpbusd(t, ra, rb); \
    } while (0)

/* One 16 x 16 tile over all blocks; acc rows are written to out (row r, column c). */
static TA void amx_tile(uint32_t type, int64_t nb, const amx_wblock *wbs, const amx_ablock *abs, size_t ab_stride,
                        float *out, size_t os, int nrows, int ncols) {
    const int S = type == GGML_Q6_K ? 16 : 32, NS = 256 / S;
    __m512 acc[16];
    for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
    int32_t cbuf[16][16][16] __attribute__((aligned(64))); /* [sub-block][row][column] */
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
                isum = _mm512_add_epi32(
                    isum, _mm512_mullo_epi32(_mm512_load_si512(cbuf[j][r]), _mm512_set1_epi32(wb->sc[r][j])));
            __m512i off = _mm512_setzero_si512();
            for (int p = 0; p < NS / 2; p++) off = _mm512_dpwssd_epi32(off, _mm512_set1_epi32(wb->op[r][p]), bs[p]);
            if (type == GGML_Q6_K) {
                isum = _mm512_sub_epi32(isum, off);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(da, _mm512_set1_ps(wb->d[r])), acc[r]);
            } else {
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(da, _mm512_set1_ps(wb->d[r])), acc[r]);
                acc[r] =
                    _mm512_fnmadd_ps(_mm512_cvtepi32_ps(off), _mm512_mul_ps(da, _mm512_set1_ps(wb->dmin[r])), acc[r]);
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
static TA void amx_unpack_hl(uint32_t type, const uint8_t *w, size_t w_row, int nrows, int64_t nb, amx_wblock_hl *out) {
    const int is_q5 = type == GGML_Q5_K;
    const size_t bs = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16), seven = _mm512_set1_epi16(7);
    __m512i sidx[4], hbit[4]; /* int16 lane -> sub-block: lanes 0..15 2c, 16..31 2c+1 */
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
            __m512i hz =
                is_q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 16))) : _mm512_setzero_si512();
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
            __m512i isum =
                _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(cbuf[0][r]), 3), _mm512_load_si512(cbuf[1][r]));
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
static TA int amx_matmul(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                         size_t act_row, int nc, float *out, size_t os) {
    const int64_t nb = n / QK_K;
    const int ntc = (nc + 15) / 16; /* column tiles, the last one maybe partial */
    /* column tiles per chunk: B operands of about 1 MB */
    int ctiles = (int)((1 << 20) / (nb * (int64_t)sizeof(amx_ablock)));
    if (ctiles < 1) ctiles = 1;
    if (ctiles > ntc) ctiles = ntc;
    const int hl = type != GGML_Q6_K;
    amx_wblock *wbs = hl ? NULL : os_aligned_alloc(64, (size_t)nb * sizeof(amx_wblock));
    amx_wblock_hl *whl = hl ? os_aligned_alloc(64, (size_t)nb * sizeof(amx_wblock_hl)) : NULL;
    amx_ablock *abs = os_aligned_alloc(64, (size_t)nb * (size_t)ctiles * sizeof(amx_ablock));
    if (!abs || (hl ? !whl : !wbs)) {
        os_aligned_free(wbs);
        os_aligned_free(whl);
        os_aligned_free(abs);
        return 0;
    }
    const int S = type == GGML_Q6_K ? 16 : 32;
    amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    if (hl) { /* C: 0, 1; B: 2, 5; A: 3, 4, 6, 7 -- all 16 rows x 64 bytes */
        for (int t = 0; t < 8; t++) {
            cfg.rows[t] = 16;
            cfg.colsb[t] = 64;
        }
    } else {
        for (int t = 0; t < 4; t++) {
            cfg.rows[t] = 16;
            cfg.colsb[t] = 64;
        } /* C */
        for (int t = 4; t < 8; t += 2) {
            cfg.rows[t] = 16;
            cfg.colsb[t] = (uint16_t)S;
        } /* A */
        for (int t = 5; t < 8; t += 2) {
            cfg.rows[t] = (uint8_t)(S / 4);
            cfg.colsb[t] = 64;
        } /* B */
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
    os_aligned_free(wbs);
    os_aligned_free(whl);
    os_aligned_free(abs);
    return 1;
}

/* ---- the X16 layouts: the weights as the B operand ------------------------------------------
 * An X16 vector (16 rows x 4 bytes, ggml_types.h) is one row of an AMX B operand whose 16 "columns"
 * are the group's weight rows, so the groups unpack without a transpose and the activations are
 * the A operand straight from their Q8_K rows (tdpbsud: signed activations, unsigned weights).
 * C is then [column][row]: the per-block float formula runs with one lane per row, the same
 * operations on the same integers as the plain path's, so the results stay bitwise the same. */

/* One block of a Q4_K_X16 group: K chunk jj (64 weights) as B operands scaled by the high and
 * low parts of the sub-block scales (amx_unpack_hl), offsets as int16 pairs, lanes = rows. */
typedef struct {
    uint8_t hi[4][16][64], lo[4][16][64];
    int32_t op[4][16];
    float d[16], dmin[16];
} amx_xq4;

/* One block of a Q6_K_X16 group. The sub-block scales (int8) go into the B operand as balanced
 * base-7 digits, s = e0 + 7 e1 + 49 e2 with every e in -3..3, so a centred quant q - 32 (-32..31)
 * times a digit still fits a signed byte: q[k] holds (q - 32) e_k, quad u (weights 4u..4u+3) of
 * the 16 rows as B row u. A block is then three chains of four K = 64 tdpbssd (one a digit), and
 * sum_j s_j ((q_j - 32) . a_j) = C0 + 7 (C1 + 7 C2): the same integer as sixteen K = 16 sub-block
 * products scaled by vpmulld less the offsets by the bsums, with neither. Lanes = rows. */
enum { XQ6_DIGITS = 3 };
typedef struct {
    int8_t q[XQ6_DIGITS][64][64];
    float d[16];
} amx_xq6;

/* a byte per row (16 bytes) widened to the int32 lanes of one vector */
AI TA __m512i lanes_u8(__m128i v) { return _mm512_cvtepu8_epi32(v); }

static TA void amx_unpack_xq4(const uint8_t *g, int64_t nb, amx_xq4 *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m128i l4 = _mm_set1_epi8(0x0F), m3 = _mm_set1_epi8(3), seven = _mm_set1_epi8(7);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *G = g + b * 16 * sizeof(block_q4_K);
        amx_xq4 *o = out + b;
        prefetch_block(G + AMX_PF_BLOCKS * 16 * sizeof(block_q4_K), 16 * sizeof(block_q4_K));
        _mm512_storeu_ps(o->d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)G)));
        _mm512_storeu_ps(o->dmin, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(G + 32))));
        __m512i mh[8], ml[8], mn[8];
        for (int j = 0; j < 8; j++) {
            const __m128i L = _mm_loadu_si128((const __m128i *)(G + 64 + 16 * j));
            const __m128i H = _mm_loadu_si128((const __m128i *)(G + 192 + 16 * (j / 2)));
            const int s = 2 * (j & 1);
            const __m128i sc =
                _mm_or_si128(_mm_and_si128(L, l4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(H, s), m3), 4));
            const __m128i mi = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(L, 4), l4),
                                            _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(H, s + 4), m3), 4));
            const __m512i h = lanes_u8(_mm_and_si128(_mm_srli_epi16(sc, 3), seven)),
                          l = lanes_u8(_mm_and_si128(sc, seven));
            mh[j] = _mm512_or_si512(h, _mm512_slli_epi32(h, 16)); /* the multiplier in both int16 halves */
            ml[j] = _mm512_or_si512(l, _mm512_slli_epi32(l, 16));
            mn[j] = lanes_u8(mi);
        }
        for (int p = 0; p < 4; p++)
            _mm512_storeu_si512(o->op[p], _mm512_or_si512(mn[2 * p], _mm512_slli_epi32(mn[2 * p + 1], 16)));
        for (int jj = 0; jj < 4; jj++)
            for (int k = 0; k < 8; k++) {
                const __m512i v = _mm512_loadu_si512(G + 256 + 64 * (8 * jj + k));
                const __m512i ln = _mm512_and_si512(v, m4), hn = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                _mm512_store_si512(o->hi[jj][k], _mm512_mullo_epi16(ln, mh[2 * jj]));
                _mm512_store_si512(o->hi[jj][k + 8], _mm512_mullo_epi16(hn, mh[2 * jj + 1]));
                _mm512_store_si512(o->lo[jj][k], _mm512_mullo_epi16(ln, ml[2 * jj]));
                _mm512_store_si512(o->lo[jj][k + 8], _mm512_mullo_epi16(hn, ml[2 * jj + 1]));
            }
    }
}

/* The balanced base-7 digits e_k of the int32 lanes s (-128..127; three digits reach +-171):
 * e0 = s - 7 round(s / 7), and so on (s / 7 is never within 0.07 of a half, so the float
 * rounding is exact). Per digit: |e| in both int16 halves of each lane (a 16-bit multiplier), the
 * sign as a lane of all ones (neg), and in every byte what the unpack subtracts after flipping
 * the bits where e < 0: neg + 32 e (a byte's negation is its flip less -1, then less 32 e). */
typedef struct {
    __m512i mag[XQ6_DIGITS], neg[XQ6_DIGITS], sub[XQ6_DIGITS];
} xq6_digit;
AI TA void xq6_digits(__m512i s, xq6_digit *o) {
    for (int k = 0; k < XQ6_DIGITS; k++) {
        const __m512i t = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(1.0f / 7)));
        const __m512i e = _mm512_sub_epi32(s, _mm512_sub_epi32(_mm512_slli_epi32(t, 3), t));
        const __m512i a = _mm512_abs_epi32(e), e32 = _mm512_and_si512(_mm512_slli_epi32(e, 5), _mm512_set1_epi32(0xFF));
        o->mag[k] = _mm512_or_si512(a, _mm512_slli_epi32(a, 16));
        o->neg[k] = _mm512_movm_epi32(_mm512_cmplt_epi32_mask(e, _mm512_setzero_si512()));
        o->sub[k] = _mm512_add_epi8(o->neg[k], _mm512_mullo_epi32(e32, _mm512_set1_epi32(0x01010101)));
        s = t;
    }
}

static TA void amx_unpack_xq6(const uint8_t *g, int64_t nb, amx_xq6 *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    xq6_digit dg[16];
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *G = g + b * 16 * sizeof(block_q6_K);
        amx_xq6 *o = out + b;
        prefetch_block(G + AMX_PF_BLOCKS * 16 * sizeof(block_q6_K), 16 * sizeof(block_q6_K));
        _mm512_storeu_ps(o->d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)G)));
        for (int j = 0; j < 16; j++)
            xq6_digits(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(G + x16q6_sc(j)))), &dg[j]);
        for (int u = 0; u < 16; u++) {
            const __m512i h = _mm512_loadu_si512(G + x16q6_hi(u)), n0 = _mm512_loadu_si512(G + x16q6_nib(u)),
                          n1 = _mm512_loadu_si512(G + x16q6_nib(u + 16));
            const __m512i h0 = _mm512_slli_epi16(_mm512_and_si512(h, m3), 4),
                          h1 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2), m3), 4),
                          h2 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 4), m3), 4),
                          h3 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 6), m3), 4);
            const __m512i q[4] = {_mm512_or_si512(_mm512_and_si512(n0, m4), h0),
                                  _mm512_or_si512(_mm512_and_si512(n1, m4), h1),
                                  _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(n0, 4), m4), h2),
                                  _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(n1, 4), m4), h3)};
            for (int i = 0; i < 4; i++) { /* quad u + 16 i, of sub-block (u + 16 i) / 4 */
                const int quad = u + 16 * i;
                const xq6_digit *e = &dg[quad / 4];
                /* q |e|: the 16-bit product of two packed bytes by |e| <= 3 is the byte-wise one
                 * (q |e| <= 189); negated byte by byte where e < 0, less 32 e: (q - 32) e, within
                 * -96..96, so the bytes' wrap-around on the way does not matter */
                for (int k = 0; k < XQ6_DIGITS; k++) {
                    const __m512i m = _mm512_mullo_epi16(q[i], e->mag[k]);
                    _mm512_store_si512(o->q[k][quad], _mm512_sub_epi8(_mm512_xor_si512(m, e->neg[k]), e->sub[k]));
                }
            }
        }
    }
}

/* The int16 pairs of each column's Q8_K bsums the Q4_K offsets take, per block (4 pairs of sums
 * of 32, as amx_pack_act): made once a call, every group uses them. */
static void bsum_pairs(const uint8_t *act, size_t act_row, int nc, int64_t nb, int32_t *out) {
    for (int c = 0; c < nc; c++)
        for (int64_t b = 0; b < nb; b++) {
            const block_q8_K *a = (const block_q8_K *)(act + c * act_row) + b;
            int32_t *o = out + ((size_t)c * nb + b) * 4;
            for (int p = 0; p < 4; p++) {
                const int16_t s0 = (int16_t)(a->bsums[4 * p] + a->bsums[4 * p + 1]);
                const int16_t s1 = (int16_t)(a->bsums[4 * p + 2] + a->bsums[4 * p + 3]);
                o[p] = (int32_t)((uint32_t)(uint16_t)s0 | (uint32_t)(uint16_t)s1 << 16);
            }
        }
}

/* One group (16 rows) x one or two column tiles (16 activation rows each from a[t], act_row
 * apart; cols[t] of them real, cols[1] = 0: one tile) over all blocks; out[t][c * os + r]. Two
 * tiles share each weight operand's load: C 0, 1 and 2, 3 the two tiles' high / low sums. */
static TA void amx_tile_xq4(int64_t nb, const amx_xq4 *wbs, const uint8_t *const a[2], size_t act_row,
                            const int32_t *const bsp[2], float *const out[2], size_t os, const int cols[2]) {
    const int nt = cols[1] ? 2 : 1;
    __m512 acc[2][16];
    for (int c = 0; c < 16; c++) acc[0][c] = acc[1][c] = _mm512_setzero_ps();
    int32_t cbuf[4][16][16] __attribute__((aligned(64)));
    for (int64_t b = 0; b < nb; b++) {
        const amx_xq4 *wb = wbs + b;
        const size_t at = b * sizeof(block_q8_K) + offsetof(block_q8_K, qs);
        _tile_zero(0);
        _tile_zero(1);
        if (nt == 2) {
            _tile_zero(2);
            _tile_zero(3);
        }
        for (int jj = 0; jj < 4; jj++) {
            _tile_loadd(6, wb->hi[jj], 64);
            _tile_loadd(7, wb->lo[jj], 64);
            _tile_loadd(4, a[0] + at + 64 * jj, act_row);
            _tile_dpbsud(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
            if (nt == 2) {
                _tile_loadd(5, a[1] + at + 64 * jj, act_row);
                _tile_dpbsud(2, 5, 6);
                _tile_dpbsud(3, 5, 7);
            }
        }
        _tile_stored(0, cbuf[0], 64);
        _tile_stored(1, cbuf[1], 64);
        if (nt == 2) {
            _tile_stored(2, cbuf[2], 64);
            _tile_stored(3, cbuf[3], 64);
        }
        const __m512 d = _mm512_loadu_ps(wb->d), dmin = _mm512_loadu_ps(wb->dmin);
        __m512i op[4];
        for (int p = 0; p < 4; p++) op[p] = _mm512_loadu_si512(wb->op[p]);
        for (int t = 0; t < nt; t++)
            for (int c = 0; c < cols[t]; c++) {
                const block_q8_K *ab = (const block_q8_K *)(a[t] + c * act_row) + b;
                const __m512i isum = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(cbuf[2 * t][c]), 3),
                                                      _mm512_load_si512(cbuf[2 * t + 1][c]));
                __m512i off = _mm512_setzero_si512();
                for (int p = 0; p < 4; p++)
                    off = _mm512_dpwssd_epi32(off, op[p], _mm512_set1_epi32(bsp[t][(c * nb + b) * 4 + p]));
                const __m512 da = _mm512_set1_ps(ab->d);
                acc[t][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(da, d), acc[t][c]);
                acc[t][c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(off), _mm512_mul_ps(da, dmin), acc[t][c]);
            }
    }
    for (int t = 0; t < nt; t++)
        for (int c = 0; c < cols[t]; c++) _mm512_storeu_ps(out[t] + c * os, acc[t][c]);
}

static TA void amx_tile_xq6(int64_t nb, const amx_xq6 *wbs, const uint8_t *a, size_t act_row, float *out, size_t os,
                            int cols) {
    __m512 acc[16];
    for (int c = 0; c < 16; c++) acc[c] = _mm512_setzero_ps();
    int32_t cbuf[XQ6_DIGITS][16][16] __attribute__((aligned(64))); /* [digit][column][row] */
    for (int64_t b = 0; b < nb; b++) {
        const amx_xq6 *wb = wbs + b;
        const uint8_t *qs = a + b * sizeof(block_q8_K) + offsetof(block_q8_K, qs);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        for (int kk = 0; kk < 4; kk++) { /* A: 16 columns x 64 bytes; B: quads 16 kk.. x 16 rows, one a digit */
            _tile_loadd(4, qs + 64 * kk, act_row);
            _tile_loadd(5, wb->q[0][16 * kk], 64);
            _tile_loadd(6, wb->q[1][16 * kk], 64);
            _tile_dpbssd(0, 4, 5);
            _tile_loadd(7, wb->q[2][16 * kk], 64);
            _tile_dpbssd(1, 4, 6);
            _tile_dpbssd(2, 4, 7);
        }
        _tile_stored(0, cbuf[0], 64);
        _tile_stored(1, cbuf[1], 64);
        _tile_stored(2, cbuf[2], 64);
        const __m512 d = _mm512_loadu_ps(wb->d);
        for (int c = 0; c < cols; c++) {
            const block_q8_K *ab = (const block_q8_K *)(a + c * act_row) + b;
            __m512i isum = _mm512_load_si512(cbuf[XQ6_DIGITS - 1][c]);
            for (int k = XQ6_DIGITS - 2; k >= 0; k--) /* isum = 7 isum + C_k */
                isum =
                    _mm512_add_epi32(_mm512_sub_epi32(_mm512_slli_epi32(isum, 3), isum), _mm512_load_si512(cbuf[k][c]));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_set1_ps(ab->d), d), acc[c]);
        }
    }
    for (int c = 0; c < cols; c++) _mm512_storeu_ps(out + c * os, acc[c]);
}

/* Q4_K_X16 / Q6_K_X16 x Q8_K on AMX; nr a multiple of 16. Columns go in chunks whose
 * activations fill about half of L2 (each group's unpacked blocks are used for all of a chunk);
 * a last tile of fewer than 16 columns reads a zero-padded copy. Returns 0 when it did nothing
 * (no memory). */
static TA int amx_matmul_x16(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                             size_t act_row, int nc, float *out, size_t os) {
    const int64_t nb = n / QK_K;
    const int q6 = type == GGML_Q6_K_X16;
    const size_t wsz = q6 ? sizeof(amx_xq6) : sizeof(amx_xq4);
    const int part = nc % 16;
    void *wbs = os_aligned_alloc(64, (size_t)nb * wsz);
    uint8_t *pad = part ? calloc(16, act_row) : NULL;
    int32_t *bsp = q6 ? NULL : malloc(sizeof(int32_t) * (size_t)nc * (size_t)nb * 4); /* Q4_K's offsets */
    if (!wbs || (!q6 && !bsp) || (part && !pad)) {
        os_aligned_free(wbs);
        free(pad);
        free(bsp);
        return 0;
    }
    if (!q6) bsum_pairs(act, act_row, nc, nb, bsp);
    if (part) memcpy(pad, act + (size_t)(nc - part) * act_row, (size_t)part * act_row);
    amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
    const size_t gb = (size_t)16 * w_row;                /* one group's bytes */
    int chunk = (int)(ACT_CHUNK_BYTES / (16 * act_row)); /* column tiles a chunk */
    if (chunk < 1) chunk = 1;
    for (int c0 = 0; c0 < nc; c0 += 16 * chunk) {
        const int c1 = c0 + 16 * chunk < nc ? c0 + 16 * chunk : nc;
        for (int r0 = 0; r0 < nr; r0 += 16) {
            if (q6) amx_unpack_xq6(w + (size_t)(r0 / 16) * gb, nb, wbs);
            else amx_unpack_xq4(w + (size_t)(r0 / 16) * gb, nb, wbs);
            for (int c = c0; c < c1; c += q6 ? 16 : 32) {
                const uint8_t *a[2] = {NULL, NULL};
                const int32_t *bp[2] = {NULL, NULL};
                float *o[2] = {NULL, NULL};
                int cols[2] = {0, 0};
                for (int t = 0; t < (q6 ? 1 : 2) && c + 16 * t < c1; t++) {
                    const int ct = c + 16 * t;
                    cols[t] = c1 - ct < 16 ? c1 - ct : 16;
                    a[t] = cols[t] < 16 ? pad : act + (size_t)ct * act_row;
                    bp[t] = q6 ? NULL : bsp + (size_t)ct * nb * 4;
                    o[t] = out + (size_t)ct * os + r0;
                }
                if (q6) amx_tile_xq6(nb, wbs, a[0], act_row, o[0], os, cols[0]);
                else amx_tile_xq4(nb, wbs, a, act_row, bp, o, os, cols);
            }
        }
    }
    _tile_release();
    os_aligned_free(wbs);
    free(pad);
    free(bsp);
    return 1;
}

static void matmul_amx(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                       size_t act_row, int nc, float *out, size_t os) {
    /* partial tiles are zero-padded: worth it from AMX_MIN_COLS (X16: AMX_MIN_COLS_X16) columns */
    if ((wtype == GGML_Q4_K || wtype == GGML_Q5_K || wtype == GGML_Q6_K) && nr >= 16 && nc >= AMX_MIN_COLS &&
        amx_matmul(wtype, n, w, w_row, nr, act, act_row, nc, out, os))
        return;
    if ((wtype == GGML_Q4_K_X16 || wtype == GGML_Q6_K_X16) && nc >= AMX_MIN_COLS_X16 &&
        amx_matmul_x16(wtype, n, w, w_row, nr, act, act_row, nc, out, os))
        return;
    avx512_matmul(wtype, n, w, w_row, nr, act, act_row, nc, out, os);
}


static const kernel_ops AMX_OPS = {"amx",
                                   true,
                                   avx512_quantize_act,
                                   matmul_amx,
                                   attention_x86_avx512,
                                   avx512_packed_type,
                                   swiglu_x86_avx512,
                                   f16_row_x86_avx512,
                                   FEW_MAX_COLS};

/* AMX-TILE and AMX-INT8 (CPUID leaf 7: EDX bits 24, 25), read directly: not every compiler's
 * __builtin_cpu_supports knows the AMX names (clang 14 does not). */
static bool cpu_has_amx_int8(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (d >> 24 & 1) && (d >> 25 & 1);
}

/* AMX-INT8 on top of the AVX-512 table, when the CPU has it and the kernel grants it. */
const kernel_ops *kernels_x86_amx(void) {
    static int granted = -1; /* a cache of a per-process fact; racing writers store the same value */
    if (!kernels_x86_avx512() || !cpu_has_amx_int8()) return NULL;
    int g = __atomic_load_n(&granted, __ATOMIC_RELAXED);
    if (g < 0) {
        g = amx_request();
        __atomic_store_n(&granted, g, __ATOMIC_RELAXED);
    }
    return g ? &AMX_OPS : NULL;
}

#else /* not x86-64 (or Windows): no table */
const kernel_ops *kernels_x86_amx(void) { return 0; }
#endif
