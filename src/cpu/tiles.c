/* tiles.c — the tile drivers of tiles.h: run_tiles (integer tile kernels of any ISA) and
 * run_float (dequantize a chunk, then float dot tiles of any ISA). They only cut the work and
 * call through the function pointers they are given; all arithmetic is in the ISA files, so
 * every output is computed by the same operations whatever tile or table shape reaches it. */
#include "cpu/tiles.h"
#include "formats/ggml_types.h"

#include <stdlib.h>

/* The decode stream's prefetch plans (tiles.h); the first is the default, and the one the VMs
 * this project measured on stream fastest with (docs/HARDWARE.md "Kernels"). */
const dec_pf DEC_PF_PLANS[] = {
    {"nta2", 2, PF_NTA, 0},
    {"nta4", 4, PF_NTA, 0},
    {"t0x2", 2, PF_T0, 0},
    {"t0x4", 4, PF_T0, 0},
    {"t1x8", 8, PF_T1, 0},
    {"hw", 0, PF_NONE, 0}, /* the hardware prefetcher alone */
    /* two levels: L2 far ahead (more lines in flight than a core's L1 misses allow), L1 near */
    {"nta2+t1x8", 2, PF_NTA, 8},
    {"nta2+t1x16", 2, PF_NTA, 16},
};
const int DEC_PF_NPLANS = sizeof DEC_PF_PLANS / sizeof *DEC_PF_PLANS;
int dec_pf_plan;

void run_tiles(const tile_set *t, int64_t nb, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
               size_t act_row, int nc, float *out, size_t os) {
    if (nc <= t->cb) {
        /* Decode reads each weight once: the rows are cut into k equal segments and one tile
         * takes row r of every segment, so a core follows k independent streams and keeps
         * more cache misses in flight than with one (docs/HARDWARE.md "What the code's choices measured"). */
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

void run_groups(const tile_set *t, int64_t nb, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                size_t act_row, int nc, float *out, size_t os) {
    const size_t gb = (size_t)t->rb * w_row;
    const int ng = nr / t->rb;
    if (nc == 1 || (nc <= FEW_MAX_COLS && t->few_at[0])) { /* decode, few columns: one stream */
        const int loc = DEC_PF_PLANS[dec_pf_plan].loc;
        /* the tile prefetches a few blocks ahead of itself: start the first ones too (a call
         * may be short: an expert's rows, a thread's share of them) */
        prefetch_block(w, gb < DEC_PROLOGUE_BYTES ? gb : DEC_PROLOGUE_BYTES);
        /* and the pages the tile's page prefetch (DEC_TLB_BLOCKS ahead) skips at its start */
        const size_t reach = nb > 0 ? DEC_TLB_BLOCKS * (gb / (size_t)nb) : 0;
        for (size_t o = 4096; o < reach && o < (size_t)ng * gb; o += 4096) prefetch_page(w + o);
        for (int g = 0; g < ng; g++) {
            if (nc == 1) t->dec_at[loc](nb, w + (size_t)g * gb, w_row, act, act_row, out + g * t->rb, os);
            else t->few_at[loc](nc, nb, w + (size_t)g * gb, act, act_row, out + g * t->rb, os);
        }
        return;
    }
    int chunk = (int)(ACT_CHUNK_BYTES / (act_row ? act_row : 1));
    chunk = chunk < t->cb ? t->cb : chunk / t->cb * t->cb;
    for (int c0 = 0; c0 < nc; c0 += chunk) {
        int c1 = c0 + chunk < nc ? c0 + chunk : nc;
        for (int g = 0; g < ng; g++)
            for (int c = c0; c < c1;) {
                int k = c1 - c < t->cb ? c1 - c : t->cb;
                t->full[k - 1](nb, w + (size_t)g * gb, w_row, act + c * act_row, act_row, out + c * os + g * t->rb, os);
                c += k;
            }
    }
}

static void run_float_f32(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                          size_t act_row, int nc, float *out, size_t os, const fdot_fn f[4], dequant_fn dq);

/* run_float over activations that come as Q8_K (a type whose integer tiles this table lacks):
 * each column's values d q as floats (exact), a few columns at a time, then the float path. */
static void run_float_q8K(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                          size_t act_row, int nc, float *out, size_t os, const fdot_fn f[4], dequant_fn dq) {
    enum { COLS = 4 };
    float *x = malloc(sizeof(float) * (size_t)n * COLS);
    if (!x) return; /* nothing to compute with: the outputs stay as they were */
    for (int c0 = 0; c0 < nc; c0 += COLS) {
        const int cn = nc - c0 < COLS ? nc - c0 : COLS;
        for (int c = 0; c < cn; c++) {
            const block_q8_K *a = (const block_q8_K *)(act + (size_t)(c0 + c) * act_row);
            for (int64_t i = 0; i < n; i++) x[c * n + i] = a[i / QK_K].d * (float)a[i / QK_K].qs[i % QK_K];
        }
        run_float_f32(type, n, w, w_row, nr, (const uint8_t *)x, (size_t)n * sizeof(float), cn, out + (size_t)c0 * os,
                      os, f, dq);
    }
    free(x);
}

static void run_float_f32(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
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
                    else {
                        dq(type, row, k0, m, buf[r]);
                        wr[r] = buf[r];
                    }
                }
                for (int r = rn; r < RB; r++) wr[r] = wr[0];
                for (int c = c0; c < c1;) {
                    const float *xc[CB];
                    int cn = c1 - c < CB ? c1 - c : CB;
                    for (int j = 0; j < CB; j++) xc[j] = (const float *)(act + (c + (j < cn ? j : 0)) * act_row) + k0;
                    float *o = out + c * os + r0;
                    if (rn == RB) {
                        if (cn == CB) f[0](m, wr, xc, o, os, k0 > 0);
                        else
                            for (int j = 0; j < cn; j++) f[1](m, wr, xc + j, o + j * os, os, k0 > 0);
                    } else {
                        for (int r = 0; r < rn; r++) {
                            if (cn == CB) f[2](m, wr + r, xc, o + r, os, k0 > 0);
                            else
                                for (int j = 0; j < cn; j++) f[3](m, wr + r, xc + j, o + j * os + r, os, k0 > 0);
                        }
                    }
                    c += cn;
                }
            }
        }
    }
}

void run_float(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act, size_t act_row,
               int nc, float *out, size_t os, const fdot_fn f[4], dequant_fn dq) {
    if (vec_dot_type(type) == GGML_Q8_K) run_float_q8K(type, n, w, w_row, nr, act, act_row, nc, out, os, f, dq);
    else run_float_f32(type, n, w, w_row, nr, act, act_row, nc, out, os, f, dq);
}
