/* tiles.h — the ISA-independent half of the SIMD matmul kernels: how a matmul of nr weight rows
 * x nc activation columns is cut into tiles (run_tiles), the float path that dequantizes a chunk
 * of weights and runs float dot tiles (run_float), and small format helpers the tile kernels of
 * every ISA share (kq_unpack_scales, prefetch_block). No SIMD intrinsics here: each ISA file
 * (kernels_avx2.c, kernels_avx512.c, kernels_amx.c, kernels_neon.c) writes its tile functions
 * and hands them over in a tile_set / an fdot_fn array. */
#ifndef LFM2C_TILES_H
#define LFM2C_TILES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ACT_CHUNK_BYTES (1 << 20) /* activations per column chunk: half of a 2 MB L2 */
#define FKC 512                   /* float path: weights dequantized per chunk of a row */
#define DEC_PROLOGUE_BYTES 8192   /* run_groups: prefetched at the start of a decode call */

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
#define PF_LOC 2 /* into L2: prefetcht1 on x86, PLDL2KEEP on ARM */
#endif
static inline void prefetch_block(const void *p, size_t size) {
    for (size_t o = 0; o < size; o += 64) __builtin_prefetch((const char *)p + o, 0, PF_LOC);
}
/* The decode tiles' prefetch (one column: each weight is read once per token) is non-temporal,
 * into L1 only (prefetchnta on x86): the weights then do not push the activations and the KV
 * cache out of L2 / L3, and a core streams faster; closer (8, 4 blocks) measured slower
 * (docs/HARDWARE.md "What the code's choices measured"). The X16 layouts follow the decode prefetch plan below. */
#ifndef DEC_PF_BLOCKS
#define DEC_PF_BLOCKS 16
#endif
#ifndef DEC_PF_LOC
#define DEC_PF_LOC 0
#endif
static inline void prefetch_dec(const void *p, size_t size) {
    for (size_t o = 0; o < size; o += 64) __builtin_prefetch((const char *)p + o, 0, DEC_PF_LOC);
}
/* Decode also touches one line DEC_TLB_BLOCKS blocks ahead of its stream (prefetcht2 on x86),
 * so that each 4 KB page's address translation is under way long before the stream's own
 * prefetch (2 blocks ahead) needs it. On this project's VMs even weights in the guest's 2 MB
 * pages gain (the host likely maps guest memory in 4 KB pages, so the TLB holds 4 KB entries).
 * A block is 2.3-3.4 KB, so every page is touched. The gains, and the distances and levels
 * that gained less: docs/HARDWARE.md "What the code's choices measured". */
#ifndef DEC_TLB_BLOCKS
#define DEC_TLB_BLOCKS 16
#endif
static inline void prefetch_page(const void *p) { __builtin_prefetch(p, 0, 1); }

/* The X16 decode stream's prefetch plan: how far ahead (blocks of a group, 2.3-3.4 KB) and into
 * which level the interleaved layouts' decode and few-column tiles prefetch their weights.
 * Which plan streams fastest differs between cores (where a prefetch lands, how many lines a
 * core keeps in flight), so kernels_choose.c times the plans from memory once per CPU and sets
 * dec_pf_plan; LFM2C_DEC_PF forces one. A plan changes speed only, never a result. The table is
 * in tiles.c; plan 0 is the default. */
enum { PF_NTA, PF_T0, PF_T1, PF_NONE, PF_NLOC }; /* prefetchnta, prefetcht0, prefetcht1, none */
typedef struct dec_pf {
    const char *name;
    int blocks, loc; /* loc: PF_* */
    int far;         /* > 0: also prefetcht1 (into L2) this many blocks ahead, a second level */
} dec_pf;
extern const dec_pf DEC_PF_PLANS[];
extern const int DEC_PF_NPLANS;
extern int dec_pf_plan; /* index into DEC_PF_PLANS, set once before the first product */
static inline int dec_pf_blocks(void) { return DEC_PF_PLANS[dec_pf_plan].blocks; }
static inline int dec_pf_far(void) { return DEC_PF_PLANS[dec_pf_plan].far; }
/* The lines of [p, p + size) into the level loc says (a constant where the tile is built). */
static inline __attribute__((always_inline)) void prefetch_loc(const void *p, size_t size, int loc) {
    for (size_t o = 0; loc != PF_NONE && o < size; o += 64) {
        const char *q = (const char *)p + o;
        if (loc == PF_NTA) __builtin_prefetch(q, 0, 0);
        else if (loc == PF_T0) __builtin_prefetch(q, 0, 3);
        else __builtin_prefetch(q, 0, 2);
    }
}

/* A tile function: R rows x C columns (fixed per function) over nb blocks. */
typedef void (*tile_fn)(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *act, size_t act_row, float *out,
                        size_t os);
/* A few-column tile of an interleaved layout: one group x nc columns (2 <= nc <= FEW_MAX_COLS),
 * each block of weights streamed from memory once for all nc columns (speculative decoding's
 * verification, small batches of sessions). */
#define FEW_MAX_COLS 16
typedef void (*few_fn)(int nc, int64_t nb, const uint8_t *w, const uint8_t *act, size_t act_row, float *out, size_t os);
typedef struct {
    int rb, cb, rbd;
    tile_fn full[4]; /* rb x k columns, k = 1..cb (index k - 1) */
    tile_fn row1[4]; /* 1 x k, for the rows after the last full tile */
    tile_fn dec;     /* rbd x 1: decode, one activation column (run_tiles) */
    /* run_groups only, one per prefetch level (PF_*): decode, a group x 1 column, and a group
     * x 2..FEW_MAX_COLS columns, one stream each */
    tile_fn dec_at[PF_NLOC];
    few_fn few_at[PF_NLOC];
} tile_set;

/* The same for an interleaved layout of groups of t->rb rows (ggml_types.h: GGML_Q4_K_X16):
 * nr is a multiple of t->rb, group g starts at w + g * t->rb * w_row, and a tile computes one
 * group for k <= t->cb columns (t->full[k - 1]), t->dec_at one group for one column (decode) and
 * t->few_at one group for 2..FEW_MAX_COLS columns, both prefetching as dec_pf_plan says;
 * t->rbd, t->dec and t->row1 are unused. */
void run_groups(const tile_set *t, int64_t nb, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                size_t act_row, int nc, float *out, size_t os);

/* Runs the matmul through the tiles of t: decode (nc <= cb) as segment-interleaved row tiles,
 * prefill as rb x cb tiles over column chunks of ACT_CHUNK_BYTES (tiles.c). */
void run_tiles(const tile_set *t, int64_t nb, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
               size_t act_row, int nc, float *out, size_t os);

#define TILE_FN(name, sfx, R, C, kern) \
    static ISA_T void name##sfx(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *a, size_t a_row, float *o, \
                                size_t os) { \
        kern(R, C, nb, w, w_row, a, a_row, o, os); \
    }
/* tiles of RB x CB (CB <= 4) for prefill, and a decode tile of 4 x 1: TILE_SET makes it from
 * the same kernel, TILE_SET_DEC takes a hand-written one (dec) */
#define TILE_FNS(name, RB, CB, kern) \
    TILE_FN(name, _f1, RB, 1, kern) \
    TILE_FN(name, _f2, RB, (2 < CB ? 2 : CB), kern) \
    TILE_FN(name, _f3, RB, (3 < CB ? 3 : CB), kern) \
    TILE_FN(name, _f4, RB, CB, kern) \
    TILE_FN(name, _o1, 1, 1, kern) \
    TILE_FN(name, _o2, 1, (2 < CB ? 2 : CB), kern) \
    TILE_FN(name, _o3, 1, (3 < CB ? 3 : CB), kern) \
    TILE_FN(name, _o4, 1, CB, kern)
/* a decode tile from a hand-written dec(arg, nb, w, w_row, act, out) of 4 rows x 1 column */
#define DEC_FN(name, dec, arg) \
    static ISA_T void name(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *a, size_t a_row, float *o, \
                           size_t os) { \
        (void)a_row, (void)os; \
        dec(arg, nb, w, w_row, a, o); \
    }
#define TILE_SET_DEC(name, RB, CB, kern, dec) \
    TILE_FNS(name, RB, CB, kern) \
    static const tile_set name = { \
        RB,  CB,  4,  {name##_f1, name##_f2, name##_f3, name##_f4}, {name##_o1, name##_o2, name##_o3, name##_o4}, \
        dec, {0}, {0}};
#define TILE_SET(name, RB, CB, kern) \
    TILE_FN(name, _d, 4, 1, kern) \
    TILE_SET_DEC(name, RB, CB, kern, name##_d)

/* The tile_set of an interleaved layout (run_groups; X16_ROWS rows per group, ggml_types.h):
 * tiles of a group x 1..CB columns (CB <= 4) from grp(q6, cols, nb, w, act, act_row, out, os),
 * the decode tiles from dec(q6, loc, nb, w, act, out) and the few-column tiles from
 * few(q6, loc, nc, nb, w, act, act_row, out, os), one per prefetch level loc (PF_*, a constant
 * in each); q6: Q6_K_X16 rather than Q4_K_X16. */
#define GROUP_FN(name, sfx, C, grp, q6) \
    static ISA_T void name##sfx(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *a, size_t a_row, float *o, \
                                size_t os) { \
        (void)w_row; \
        grp(q6, C, nb, w, a, a_row, o, os); \
    }
#define GROUP_DEC(name, sfx, dec, few, q6, loc) \
    static ISA_T void name##_d##sfx(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *a, size_t a_row, \
                                    float *o, size_t os) { \
        (void)w_row, (void)a_row, (void)os; \
        dec(q6, loc, nb, w, a, o); \
    } \
    static ISA_T void name##_w##sfx(int nc, int64_t nb, const uint8_t *w, const uint8_t *a, size_t a_row, float *o, \
                                    size_t os) { \
        few(q6, loc, nc, nb, w, a, a_row, o, os); \
    }
#define GROUP_SET(name, CB, grp, dec, few, q6) \
    GROUP_FN(name, _1, 1, grp, q6) \
    GROUP_FN(name, _2, (2 < CB ? 2 : CB), grp, q6) \
    GROUP_FN(name, _3, (3 < CB ? 3 : CB), grp, q6) \
    GROUP_FN(name, _4, CB, grp, q6) \
    GROUP_DEC(name, _nta, dec, few, q6, PF_NTA) \
    GROUP_DEC(name, _t0, dec, few, q6, PF_T0) \
    GROUP_DEC(name, _t1, dec, few, q6, PF_T1) \
    GROUP_DEC(name, _none, dec, few, q6, PF_NONE) \
    static const tile_set name = {X16_ROWS, \
                                  CB, \
                                  1, \
                                  {name##_1, name##_2, name##_3, name##_4}, \
                                  {0, 0, 0, 0}, \
                                  0, \
                                  {name##_d_nta, name##_d_t0, name##_d_t1, name##_d_none}, \
                                  {name##_w_nta, name##_w_t0, name##_w_t1, name##_w_none}};

/* -- the float path: weights dequantized chunk by chunk, then RB x CB float dots ----------- */

/* out[c][r] (+)= dot(w[r][0..m), x[c][0..m)); the tiles are 4x4, 4x1, 1x4, 1x1 (in this order
 * in an fdot_fn array); add: add to out instead of storing. */
typedef void (*fdot_fn)(int m, const float *const *w, const float *const *x, float *o, size_t os, int add);
typedef void (*dequant_fn)(uint32_t type, const uint8_t *row, int64_t k0, int m, float *dst);
/* The float path, shared by every ISA through its two function pointer arguments (tiles.c).
 * act: float rows, or Q8_K rows for a type multiplied with Q8_K (its row's vec_dot) that the
 * table has no integer tiles for (their values d q taken as floats, exactly). */
void run_float(uint32_t type, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act, size_t act_row,
               int nc, float *out, size_t os, const fdot_fn f[4], dequant_fn dq);

#endif
