/* x16_stream5.h — the AVX-512 streams every 16-row interleaved (X16) layout's tiles run, written
 * once for kernels_avx512.c (Q4_K_X16, Q6_K_X16) and kernels_k23_x86.c (Q2_K_X16, Q3_K_X16): the
 * prefill tile (one group, CB columns), the decode tile (one group, one column, one prefetched
 * stream) and the few-column tile (2..FEW_MAX_COLS columns over the decode tile's stream). Each
 * takes the layout's block function blk(sel, CB, p, a, acc) (one 256-weight block of the group
 * for CB columns, added to acc[c]; sel: which of the file's two layouts) and the block's bytes;
 * everything is always inlined, so blk, sel and CB are constants in each tile (GROUP_SET,
 * tiles.h, makes the instances). Include after tiles.h, on x86-64 only. */
#ifndef LFM2C_X16_STREAM5_H
#define LFM2C_X16_STREAM5_H

#include "cpu/tiles.h"
#include "formats/ggml_types.h"

#include <immintrin.h>

#define X16S_AI static inline __attribute__((always_inline))
#define X16S_T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

typedef void (*x16_blk5_fn)(int sel, int CB, const uint8_t *p, const block_q8_K *const *a, __m512 *acc);

/* Prefill: one group, CB (<= 4) columns. */
X16S_AI X16S_T5 void x16s_tile5(x16_blk5_fn blk, int sel, size_t bb, int CB, int64_t nb, const uint8_t *w,
                                const uint8_t *act, size_t act_row, float *out, size_t os) {
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[4];
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) a[c] = (const block_q8_K *)(act + c * act_row) + b;
        blk(sel, CB, w + b * bb, a, acc);
    }
#pragma GCC unroll 4
    for (int c = 0; c < CB; c++) _mm512_storeu_ps(out + c * os, acc[c]);
}

/* Decode: one group, one column, one stream: each block's lines are prefetched as the plan says
 * (tiles.h dec_pf_plan; loc is a constant in each instance), and one line DEC_TLB_BLOCKS ahead
 * for its page's translation (tiles.h). The default plan, prefetchnta 2 blocks ahead (into L1
 * only: the weights are read once per token, so they do not push the activations and the KV
 * cache out of L2 / L3), measured fastest on the Zen 5 VMs; the figures and the other plans
 * are in docs/HARDWARE.md. Following 2 or 4 groups at once (one per segment of the rows, as
 * the plain decode tiles do) measured slower. */
X16S_AI X16S_T5 void x16s_dec5(x16_blk5_fn blk, int sel, size_t bb, int loc, int64_t nb, const uint8_t *w,
                               const uint8_t *act, float *o) {
    const size_t ahead = (size_t)dec_pf_blocks() * bb, far = (size_t)dec_pf_far() * bb;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_K *a[1] = {(const block_q8_K *)act + b};
        const uint8_t *p = w + b * bb;
        prefetch_loc(p + ahead, bb, loc);
        if (far) prefetch_loc(p + far, bb, PF_T1);
        if (DEC_TLB_BLOCKS) prefetch_page(p + DEC_TLB_BLOCKS * bb);
        blk(sel, 1, p, a, &acc);
    }
    _mm512_storeu_ps(o, acc);
}

/* Few columns (2..FEW_MAX_COLS: a verification of drafted tokens, a few sessions' decode): the
 * decode tile's one prefetched stream, each block computed for up to cb columns a pass while it
 * is in L1 (cols(sel, k, ...) for k = 1..cb), so the weights are read from memory once for all
 * columns and unpacked once per pass; the passes as even as they go: 7 = 4 + 3, not 6 + 1. */
X16S_AI X16S_T5 void x16s_few5(x16_blk5_fn cols, int sel, size_t bb, int cb, int loc, int nc, int64_t nb,
                               const uint8_t *w, const uint8_t *act, size_t act_row, float *out, size_t os) {
    const size_t ahead = (size_t)dec_pf_blocks() * bb, far = (size_t)dec_pf_far() * bb;
    __m512 acc[FEW_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    const int np = (nc + cb - 1) / cb;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = w + b * bb;
        prefetch_loc(p + ahead, bb, loc);
        if (far) prefetch_loc(p + far, bb, PF_T1);
        if (DEC_TLB_BLOCKS) prefetch_page(p + DEC_TLB_BLOCKS * bb);
        const block_q8_K *a[FEW_MAX_COLS];
        for (int c = 0; c < nc; c++) a[c] = (const block_q8_K *)(act + c * act_row) + b;
        for (int i = 0, c0 = 0; i < np; i++) {
            const int k = (nc - c0) / (np - i);
            cols(sel, k, p, a + c0, acc + c0);
            c0 += k;
        }
    }
    for (int c = 0; c < nc; c++) _mm512_storeu_ps(out + c * os, acc[c]);
}

#endif
