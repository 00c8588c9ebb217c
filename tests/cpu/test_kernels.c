/* test_kernels.c — every kernel table this CPU can run against the scalar table (src/cpu/kernels_scalar.c):
 * random valid blocks of every weight type, many tile shapes and strides, and byte equality of
 * the activation quantizers. Two kinds of matmul checks:
 *  - random scales: results agree within 1e-5 of the sum of |w_i * a_i| (float order differs;
 *    the importance-matrix types' float order is the truth's on every table: bitwise, and the
 *    truth within 1e-5 of the dot of the dequantized weights, whose dequantization has goldens);
 *  - unit scales (every fp16 scale 1.0, integer activations with d = 1): every product and sum is
 *    an exact small integer, so results must be bitwise equal — this catches any integer slip. */
#include "cpu/kernels.h"
#include "cpu/kernels_iq.h"
#include "cpu/tiles.h"
#include "formats/ggml_types.h"
#include "test.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float frand(void) { return (float)(rnd() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }

/* every weight type the CPU runs: the rows of the type table (formats/ggml_types.h) with the CPU
 * bit, filled by main */
static uint32_t TYPES[GGML_NTYPES];
static size_t N_TYPES;

static void set_half(uint8_t *p, float v) {
    ggml_half h = f32_to_fp16(v);
    memcpy(p, &h, 2);
}

/* Byte offsets of the fp16 fields (d, then m/dmin) in one block; count returned. */
static int half_fields(uint32_t t, size_t off[2]) {
    switch (t) {
    case GGML_Q4_0: off[0] = offsetof(block_q4_0, d); return 1;
    case GGML_Q4_1:
        off[0] = offsetof(block_q4_1, d);
        off[1] = offsetof(block_q4_1, m);
        return 2;
    case GGML_Q5_0: off[0] = offsetof(block_q5_0, d); return 1;
    case GGML_Q5_1:
        off[0] = offsetof(block_q5_1, d);
        off[1] = offsetof(block_q5_1, m);
        return 2;
    case GGML_Q8_0: off[0] = offsetof(block_q8_0, d); return 1;
    case GGML_Q2_K:
        off[0] = offsetof(block_q2_K, d);
        off[1] = offsetof(block_q2_K, dmin);
        return 2;
    case GGML_Q3_K: off[0] = offsetof(block_q3_K, d); return 1;
    case GGML_Q4_K:
        off[0] = offsetof(block_q4_K, d);
        off[1] = offsetof(block_q4_K, dmin);
        return 2;
    case GGML_Q5_K:
        off[0] = offsetof(block_q5_K, d);
        off[1] = offsetof(block_q5_K, dmin);
        return 2;
    case GGML_Q6_K: off[0] = offsetof(block_q6_K, d); return 1;
    case GGML_IQ4_NL: off[0] = offsetof(block_iq4_nl, d); return 1;
    case GGML_IQ4_XS: off[0] = offsetof(block_iq4_xs, d); return 1;
    case GGML_IQ2_XXS: off[0] = offsetof(block_iq2_xxs, d); return 1;
    case GGML_IQ2_XS: off[0] = offsetof(block_iq2_xs, d); return 1;
    case GGML_IQ2_S: off[0] = offsetof(block_iq2_s, d); return 1;
    case GGML_IQ3_XXS: off[0] = offsetof(block_iq3_xxs, d); return 1;
    case GGML_IQ3_S: off[0] = offsetof(block_iq3_s, d); return 1;
    case GGML_IQ1_S: off[0] = offsetof(block_iq1_s, d); return 1;
    default: return 0; /* IQ1_M keeps its d in the scales' top nibbles: random_row */
    }
}

/* A random row of n valid weights: random bytes, sane finite scales (exactly 1.0 if unit). */
static void random_row(uint32_t t, int64_t n, uint8_t *dst, int unit) {
    size_t size = ggml_row_size(t, n);
    for (size_t i = 0; i < size; i++) dst[i] = (uint8_t)rnd();
    if (t == GGML_F32) {
        for (int64_t i = 0; i < n; i++) {
            float v = unit ? (float)(int)(rnd() % 7) - 3 : frand();
            memcpy(dst + 4 * i, &v, 4);
        }
        return;
    }
    if (t == GGML_F16 || t == GGML_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = unit ? (float)(int)(rnd() % 7) - 3 : frand();
            uint16_t h = t == GGML_F16 ? f32_to_fp16(v) : f32_to_bf16(v);
            memcpy(dst + 2 * i, &h, 2);
        }
        return;
    }
    const ggml_type_info *ti = ggml_type_get(t);
    for (int64_t b = 0; b < n / ti->block_size; b++) {
        uint8_t *blk = dst + b * ti->type_size;
        size_t off[2];
        int k = half_fields(t, off);
        for (int j = 0; j < k; j++) set_half(blk + off[j], unit ? 1.0f : frand() * 0.05f + (j ? 0.0f : 0.001f));
        if (t == GGML_MXFP4) blk[0] = (uint8_t)(unit ? 128 : 120 + rnd() % 16);
        if (t == GGML_IQ1_M) { /* d's 16 bits, 4 in the top of each scale word */
            const ggml_half h = f32_to_fp16(unit ? 1.0f : frand() * 0.05f + 0.001f);
            for (int i = 0; i < 4; i++) blk[49 + 2 * i] = (uint8_t)((blk[49 + 2 * i] & 0x0f) | (h >> 4 * i & 15) << 4);
        }
    }
}

/* Activations: random floats, or (unit) small integers with one -127 per 256 so the
 * quantizers pick d = 1 exactly and keep every value. */
static void random_act(int64_t n, float *x, int unit) {
    for (int64_t i = 0; i < n; i++) x[i] = unit ? (float)((int)(rnd() % 17) - 8) : frand() * 3.0f;
    if (unit)
        for (int64_t i = 0; i < n; i += 32) x[i + rnd() % 32] = -127.0f;
}

static uint8_t wbuf[48 * 9300], abuf[32 * 9300];
static float xbuf[32 * 2400], ref[64 * 64], got[64 * 64], wf[2400], af[2400];

static int check_matmul(const kernel_ops *k, uint32_t t, int64_t n, int nr, int nc, int unit) {
    const kernel_ops *s = kernels_scalar();
    uint32_t at = vec_dot_type(t);
    size_t w_row = ggml_row_size(t, n) + 16 * (rnd() % 3);
    size_t a_row = (at == GGML_F32 ? (size_t)n * 4 : ggml_row_size(at, n)) + 16 * (rnd() % 3);
    size_t os = (size_t)nr + rnd() % 4;
    for (int r = 0; r < nr; r++) random_row(t, n, wbuf + r * w_row, unit);
    for (int c = 0; c < nc; c++) {
        random_act(n, xbuf + c * n, unit);
        s->quantize_act(at, xbuf + c * n, abuf + c * a_row, n);
    }
    for (size_t i = 0; i < sizeof ref / sizeof *ref; i++) ref[i] = got[i] = -12345.0f;
    s->matmul(t, n, wbuf, w_row, nr, abuf, a_row, nc, ref, os);
    k->matmul(t, n, wbuf, w_row, nr, abuf, a_row, nc, got, os);
    int bad = 0;
    for (int c = 0; c < nc && !bad; c++) {
        if (at == GGML_Q8_K) { /* dequantize_row does not know the activation-only type */
            const block_q8_K *qa = (const block_q8_K *)(abuf + c * a_row);
            for (int64_t i = 0; i < n; i++) af[i] = qa[i / QK_K].d * qa[i / QK_K].qs[i % QK_K];
        } else {
            dequantize_row(at, abuf + c * a_row, af, n);
        }
        for (int r = 0; r < nr && !bad; r++) {
            float e = ref[c * os + r], g = got[c * os + r];
            int ok;
            if (unit || iq_type(t)) { /* exact, or (the IQ types) the truth's float order on every table */
                ok = e == g;
            } else {
                dequantize_row(t, wbuf + r * w_row, wf, n);
                double mag = 0;
                for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * af[i]);
                ok = fabs((double)e - g) <= 1e-5 * mag + 1e-30;
            }
            if (ok && iq_type(t) && !unit) { /* the IQ truth: the dequantized weights' dot */
                dequantize_row(t, wbuf + r * w_row, wf, n);
                double dot = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) dot += (double)wf[i] * af[i], mag += fabs((double)wf[i] * af[i]);
                ok = fabs(dot - e) <= 1e-5 * mag + 1e-30;
            }
            if (!ok) {
                fprintf(stderr, "  %s %s n=%lld nr=%d nc=%d unit=%d: [c=%d r=%d] scalar %.9g, got %.9g\n", k->isa,
                        ggml_type_get(t)->name, (long long)n, nr, nc, unit, c, r, e, g);
                bad = 1;
            }
        }
    }
    /* cells outside the tile are left alone */
    for (int c = 0; c < nc && !bad; c++)
        for (size_t r = (size_t)nr; r < os && !bad; r++)
            if (got[c * os + r] != -12345.0f) bad = 1;
    for (size_t i = (size_t)nc * os; i < sizeof got / sizeof *got && !bad; i++)
        if (got[i] != -12345.0f) bad = 1;
    return !bad;
}

static void test_matmul(const kernel_ops *k) {
    static const int shapes[][2] = {{1, 1},   {1, 2},   {2, 1},   {3, 5},  {4, 1},   {4, 4}, {5, 3},
                                    {8, 8},   {7, 17},  {17, 1},  {17, 7}, {16, 16}, {9, 4}, {4, 9},
                                    {33, 17}, {16, 32}, {48, 20}, {20, 9}, {31, 8}};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = TYPES[ti];
        int bsz = ggml_type_get(t)->block_size;
        int64_t ns[] = {256, 512, 2304, bsz == 1 ? 37 : 256, bsz == 1 ? 1000 : 512};
        int fails = 0, runs = 0;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
                for (int unit = 0; unit < 2; unit++) {
                    if (unit && ns[ni] > 1024) continue; /* keep exact sums below 2^24 */
                    runs++;
                    fails += !check_matmul(k, t, ns[ni], shapes[si][0], shapes[si][1], unit);
                }
        CHECK(fails == 0, "%s matmul %s: %d of %d shapes differ from scalar", k->isa, ggml_type_get(t)->name, fails,
              runs);
    }
}

static void test_quantize(const kernel_ops *k) {
    const kernel_ops *s = kernels_scalar();
    enum { N = 2048 };
    static float x[N];
    static uint8_t a[N * 2], b[N * 2];
    for (int trial = 0; trial < 40; trial++) {
        float scale = trial % 4 == 0 ? 1e-3f : trial % 4 == 1 ? 1.0f : trial % 4 == 2 ? 50.0f : 1e4f;
        for (int i = 0; i < N; i++) x[i] = frand() * scale;
        if (trial % 5 == 1) { /* ties: amax 127 gives d = 1 and exact .5 products */
            for (int i = 0; i < N; i++) x[i] = (float)((int)(rnd() % 200) - 100) + 0.5f;
            for (int i = 0; i < N; i += 32) x[i + rnd() % 32] = trial % 2 ? 127.0f : -127.0f;
        }
        if (trial % 5 == 2) { /* opposite values of equal magnitude: the first decides the sign */
            for (int i = 0; i < N; i += 256) {
                x[i + 3] = 40.0f;
                x[i + 200] = -40.0f;
            }
            for (int i = 256; i < 512; i++) x[i] = 0.0f; /* an all-zero block */
            for (int i = 512; i < 544; i++) x[i] = -0.0f;
        }
        for (int ai = 0; ai < 2; ai++) {
            uint32_t at = ai ? GGML_Q8_K : GGML_Q8_0;
            size_t size = ggml_row_size(at, N);
            memset(a, 0xAA, sizeof a);
            memset(b, 0xAA, sizeof b);
            s->quantize_act(at, x, a, N);
            k->quantize_act(at, x, b, N);
            size_t diff = 0;
            while (diff < size && a[diff] == b[diff]) diff++;
            CHECK(diff == size && !memcmp(a, b, sizeof a),
                  "%s quantize %s trial %d: first byte differing at %zu of %zu", k->isa,
                  at == GGML_Q8_0 ? "Q8_0" : "Q8_K", trial, diff, size);
            /* Q8_K's values lie in -127..127: the IQ2_XXS tiles put the weight's sign on the
             * activation (kernels_iq_x86.c), and -(-128) would not fit */
            for (int blk = 0; at == GGML_Q8_K && blk < N / 256; blk++)
                for (int i = 0; i < 256; i++)
                    CHECK(((const block_q8_K *)b)[blk].qs[i] >= -127, "%s Q8_K trial %d: a value of -128", k->isa,
                          trial);
        }
        /* float activations are copied */
        k->quantize_act(GGML_F32, x, b, 256);
        CHECK(!memcmp(x, b, 256 * sizeof(float)), "%s quantize F32 is a copy", k->isa);
    }
}

/* Tile invariance: out[r, c] must not depend on the tile (nr x nc call) it is computed in, bit
 * for bit, or a prompt fed as one batch would not give the logits of feeding it token by token.
 * A 37 x 29 output in one call, element by element, and in tiles of several shapes. Returns the
 * one-call output (malloc'd) for the cross-table comparison, NULL on failure to allocate. */
enum { TI_R = 37, TI_C = 29 };
static const int TI_SHAPES[][2] = {{1, 1},  {3, 17}, {17, 3}, {8, 8},  {16, 16}, {17, 16}, {16, 1},
                                   {1, 17}, {37, 1}, {37, 2}, {37, 4}, {5, 1},   {9, 3}}; /* nc <= 4: decode segments */

static float *tile_invariance(const kernel_ops *k, uint32_t t, int64_t n, const uint8_t *w, size_t w_row,
                              const uint8_t *act, size_t a_row, int *fails) {
    const size_t os = TI_R + 3;
    float *full = malloc(sizeof(float) * os * TI_C), *part = malloc(sizeof(float) * os * TI_C);
    if (!full || !part) {
        free(full);
        free(part);
        return NULL;
    }
    k->matmul(t, n, w, w_row, TI_R, act, a_row, TI_C, full, os);
    for (size_t si = 0; si < sizeof TI_SHAPES / sizeof *TI_SHAPES; si++) {
        int tr = TI_SHAPES[si][0], tc = TI_SHAPES[si][1];
        memset(part, 0xFF, sizeof(float) * os * TI_C);
        for (int r0 = 0; r0 < TI_R; r0 += tr)
            for (int c0 = 0; c0 < TI_C; c0 += tc) {
                int nr = TI_R - r0 < tr ? TI_R - r0 : tr, nc = TI_C - c0 < tc ? TI_C - c0 : tc;
                k->matmul(t, n, w + r0 * w_row, w_row, nr, act + c0 * a_row, a_row, nc, part + c0 * os + r0, os);
            }
        int diff = 0;
        for (int c = 0; c < TI_C; c++)
            for (int r = 0; r < TI_R; r++) diff += memcmp(&full[c * os + r], &part[c * os + r], sizeof(float)) != 0;
        if (diff)
            fprintf(stderr, "  %s %s n=%lld: %d of %d outputs in %dx%d tiles differ from one %dx%d call\n", k->isa,
                    ggml_type_get(t)->name, (long long)n, diff, TI_R * TI_C, tr, tc, TI_R, TI_C);
        *fails += diff != 0;
    }
    free(part);
    return full;
}

/* Every tile-invariant table, the AMX table equal to the AVX-512 one bitwise (the engine may
 * run prefill on AMX tiles and decode on AVX-512 rows), and the NEON tables equal to each other. */
static void test_tile_invariance(const kernel_ops *const *tables, int nt) {
    const int64_t ns[] = {256, 2048, 4096};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = TYPES[ti], at = vec_dot_type(t);
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            int64_t n = ns[ni];
            size_t w_row = ggml_row_size(t, n) + 16,
                   a_row = (at == GGML_F32 ? (size_t)n * 4 : ggml_row_size(at, n)) + 48;
            uint8_t *w = malloc(w_row * TI_R), *act = malloc(a_row * TI_C);
            float *x = malloc(sizeof(float) * (size_t)n);
            CHECK(w && act && x, "allocation");
            if (!w || !act || !x) {
                free(w);
                free(act);
                free(x);
                return;
            }
            for (int r = 0; r < TI_R; r++) random_row(t, n, w + r * w_row, 0);
            for (int c = 0; c < TI_C; c++) {
                random_act(n, x, 0);
                kernels_scalar()->quantize_act(at, x, act + c * a_row, n);
            }
            float *avx512 = NULL, *amx = NULL, *neon = NULL;
            for (int i = 0; i < nt; i++) {
                int is512 = !strcmp(tables[i]->isa, "avx512vnni"), isamx = !strcmp(tables[i]->isa, "amx");
                int isneon = !strncmp(tables[i]->isa, "neon", 4);
                if (!tables[i]->tile_invariant && !is512 && !isamx && !isneon) continue;
                int fails = 0;
                float *full = tile_invariance(tables[i], t, n, w, w_row, act, a_row, &fails);
                if (tables[i]->tile_invariant)
                    CHECK(full && fails == 0, "%s %s n=%lld: tile invariant (%d tile shapes differ)", tables[i]->isa,
                          ggml_type_get(t)->name, (long long)n, fails);
                if (is512) avx512 = full;
                else if (isamx) amx = full;
                else if (isneon && !neon) neon = full;
                else if (isneon && full) { /* the NEON tables agree bitwise (prefill on i8mm, decode on dotprod) */
                    int diff = 0;
                    for (int c = 0; c < TI_C; c++)
                        for (int r = 0; r < TI_R; r++)
                            diff += memcmp(&neon[c * (TI_R + 3) + r], &full[c * (TI_R + 3) + r], sizeof(float)) != 0;
                    CHECK(diff == 0, "%s %s n=%lld: %d of %d outputs differ from neon bitwise", tables[i]->isa,
                          ggml_type_get(t)->name, (long long)n, diff, TI_R * TI_C);
                    free(full);
                } else free(full);
            }
            free(neon);
            if (avx512 && amx) {
                int diff = 0;
                for (int c = 0; c < TI_C; c++)
                    for (int r = 0; r < TI_R; r++)
                        diff += memcmp(&avx512[c * (TI_R + 3) + r], &amx[c * (TI_R + 3) + r], sizeof(float)) != 0;
                CHECK(diff == 0, "amx %s n=%lld: %d of %d outputs differ from avx512vnni bitwise",
                      ggml_type_get(t)->name, (long long)n, diff, TI_R * TI_C);
            }
            free(avx512);
            free(amx);
            free(w);
            free(act);
            free(x);
        }
    }
}

/* the file types with an interleaved layout (ggml_types.h: X16), filled by main */
static uint32_t X16_TYPES[GGML_NTYPES];
static size_t N_X16;

/* A table's packed layouts (kernel_ops.packed_type): the pack / unpack round trip gives the rows
 * back byte for byte, and the matmul on the packed groups equals the same table's matmul on the
 * plain rows bit for bit, for every column count (decode and prefill tiles, column chunks) and
 * for sub-ranges of whole groups (as the threads split the rows); with unit scales (exact
 * integers) it equals the scalar truth bit for bit too. */
static void test_packed(const kernel_ops *k) {
    if (!k->packed_type) return;
    const int64_t ns[] = {256, 1024, 2304};
    const int nrs[] = {16, 48, 64}, ncs[] = {1, 2, 3, 4, 5, 7, 9, 16, 17, 33, 40, 56};
    enum { MAXC = 56 };
    for (size_t ti = 0; ti < N_X16; ti++)
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (size_t ri = 0; ri < sizeof nrs / sizeof *nrs; ri++) {
                const int64_t n = ns[ni];
                const int nr = nrs[ri];
                const uint32_t t = X16_TYPES[ti], pt = k->packed_type(t, nr);
                CHECK(k->packed_type(t, nr + 8) == t, "%s: no packing for rows not in whole groups", k->isa);
                if (pt == t) continue;
                const size_t w_row = ggml_row_size(t, n), a_row = ggml_row_size(GGML_Q8_K, n);
                uint8_t *w = malloc(w_row * nr), *pw = malloc(w_row * nr), *back = malloc(w_row * nr),
                        *act = malloc(a_row * MAXC);
                float *x = malloc(sizeof(float) * n), *o1 = malloc(sizeof(float) * nr * MAXC),
                      *o2 = malloc(sizeof(float) * nr * MAXC);
                CHECK(w && pw && back && act && x && o1 && o2, "allocation");
                if (w && pw && back && act && x && o1 && o2) {
                    for (int r = 0; r < nr; r++) random_row(t, n, w + r * w_row, 0);
                    x16_pack(t, w, w_row, nr, pw);
                    x16_unpack(t, pw, w_row, nr, back);
                    CHECK(!memcmp(w, back, w_row * nr), "%s n=%lld nr=%d: pack / unpack round trip",
                          ggml_type_get(pt)->name, (long long)n, nr);
                    for (int c = 0; c < MAXC; c++) {
                        random_act(n, x, 0);
                        k->quantize_act(GGML_Q8_K, x, act + c * a_row, n);
                    }
                    for (size_t ci = 0; ci < sizeof ncs / sizeof *ncs; ci++) {
                        const int nc = ncs[ci];
                        k->matmul(t, n, w, w_row, nr, act, a_row, nc, o1, nr);
                        k->matmul(pt, n, pw, w_row, nr, act, a_row, nc, o2, nr);
                        CHECK(!memcmp(o1, o2, sizeof(float) * nr * nc),
                              "%s %s n=%lld nr=%d nc=%d: packed = plain bitwise", k->isa, ggml_type_get(pt)->name,
                              (long long)n, nr, nc);
                        for (int pl = 1; nc <= FEW_MAX_COLS && pl < DEC_PF_NPLANS; pl++) { /* every prefetch plan */
                            dec_pf_plan = pl;
                            k->matmul(pt, n, pw, w_row, nr, act, a_row, nc, o2, nr);
                            dec_pf_plan = 0;
                            CHECK(!memcmp(o1, o2, sizeof(float) * nr * nc), "%s %s n=%lld nr=%d nc=%d plan %s: = plain",
                                  k->isa, ggml_type_get(pt)->name, (long long)n, nr, nc, DEC_PF_PLANS[pl].name);
                        }
                        if (nr > 16) { /* the second group alone */
                            k->matmul(pt, n, pw + 16 * w_row, w_row, 16, act, a_row, nc, o2, nr);
                            int diff = 0;
                            for (int c = 0; c < nc; c++)
                                diff += memcmp(o1 + c * nr + 16, o2 + c * nr, 16 * sizeof(float)) != 0;
                            CHECK(diff == 0, "%s n=%lld nc=%d: a group range alone", k->isa, (long long)n, nc);
                        }
                    }
                    if (n <= 1024) { /* unit scales: every sum exact, the packed products are the truth's */
                        for (int r = 0; r < nr; r++) random_row(t, n, w + r * w_row, 1);
                        x16_pack(t, w, w_row, nr, pw);
                        for (int c = 0; c < 9; c++) {
                            random_act(n, x, 1);
                            k->quantize_act(GGML_Q8_K, x, act + c * a_row, n);
                        }
                        for (int nc = 1; nc <= 9; nc += 4) {
                            kernels_scalar()->matmul(t, n, w, w_row, nr, act, a_row, nc, o1, nr);
                            k->matmul(pt, n, pw, w_row, nr, act, a_row, nc, o2, nr);
                            CHECK(!memcmp(o1, o2, sizeof(float) * nr * nc), "%s %s n=%lld nr=%d nc=%d: unit = scalar",
                                  k->isa, ggml_type_get(pt)->name, (long long)n, nr, nc);
                        }
                    }
                }
                free(w);
                free(pw);
                free(back);
                free(act);
                free(x);
                free(o1);
                free(o2);
            }
}

/* Wide rows put fewer column tiles in a chunk of activations (ACT_CHUNK_BYTES): the packed
 * products still equal the plain ones bit for bit when the columns span several chunks. */
static void test_packed_chunks(const kernel_ops *k) {
    if (!k->packed_type) return;
    enum { N = 16384, NR = 32, NC = 70 };
    for (size_t ti = 0; ti < N_X16; ti++) {
        const uint32_t t = X16_TYPES[ti], pt = k->packed_type(t, NR);
        const size_t w_row = ggml_row_size(t, N), a_row = ggml_row_size(GGML_Q8_K, N);
        uint8_t *w = malloc(w_row * NR), *pw = malloc(w_row * NR), *act = malloc(a_row * NC);
        float *x = malloc(sizeof(float) * N), *o1 = malloc(sizeof(float) * NR * NC);
        float *o2 = malloc(sizeof(float) * NR * NC);
        CHECK(w && pw && act && x && o1 && o2, "allocation");
        if (w && pw && act && x && o1 && o2 && pt != t) {
            for (int r = 0; r < NR; r++) random_row(t, N, w + r * w_row, 0);
            x16_pack(t, w, w_row, NR, pw);
            for (int c = 0; c < NC; c++) {
                random_act(N, x, 0);
                k->quantize_act(GGML_Q8_K, x, act + c * a_row, N);
            }
            k->matmul(t, N, w, w_row, NR, act, a_row, NC, o1, NR);
            k->matmul(pt, N, pw, w_row, NR, act, a_row, NC, o2, NR);
            CHECK(!memcmp(o1, o2, sizeof(float) * NR * NC), "%s %s n=%d nc=%d: packed = plain over chunks", k->isa,
                  ggml_type_get(pt)->name, N, NC);
        }
        free(w), free(pw), free(act), free(x), free(o1), free(o2);
    }
}

/* The x86 tables share one float order for the K-quants (kernels_avx2.c: acc = fma(S, d da,
 * acc), acc = fnma(M, dmin da, acc) per block): the AVX2 and the AVX-512 tables give the same
 * bits for Q4_K, Q5_K and Q6_K, in every tile shape. */
static void test_x86_kquants_agree(const kernel_ops *const *tables, int nt) {
    const kernel_ops *a2 = NULL, *a5 = NULL;
    for (int i = 0; i < nt; i++) {
        if (!strcmp(tables[i]->isa, "avx2")) a2 = tables[i];
        if (!strcmp(tables[i]->isa, "avx512vnni")) a5 = tables[i];
    }
    if (!a2 || !a5) return;
    const uint32_t types[] = {GGML_Q4_K, GGML_Q5_K, GGML_Q6_K};
    const int64_t n = 1024;
    const int nrs[] = {1, 5, 16, 19}, ncs[] = {1, 2, 3, 6, 9};
    const size_t a_row = ggml_row_size(GGML_Q8_K, n);
    uint8_t *act = malloc(a_row * 9);
    float *x = malloc(sizeof(float) * n), *o2 = malloc(sizeof(float) * 19 * 9), *o5 = malloc(sizeof(float) * 19 * 9);
    for (size_t ti = 0; ti < 3; ti++) {
        const uint32_t t = types[ti];
        const size_t w_row = ggml_row_size(t, n);
        uint8_t *w = malloc(w_row * 19);
        CHECK(w && act && x && o2 && o5, "allocation");
        if (!w || !act || !x || !o2 || !o5) {
            free(w);
            break;
        }
        for (int r = 0; r < 19; r++) random_row(t, n, w + r * w_row, 0);
        for (int c = 0; c < 9; c++) {
            random_act(n, x, 0);
            a5->quantize_act(GGML_Q8_K, x, act + c * a_row, n);
        }
        for (size_t ri = 0; ri < sizeof nrs / sizeof *nrs; ri++)
            for (size_t ci = 0; ci < sizeof ncs / sizeof *ncs; ci++) {
                const int nr = nrs[ri], nc = ncs[ci];
                a2->matmul(t, n, w, w_row, nr, act, a_row, nc, o2, nr);
                a5->matmul(t, n, w, w_row, nr, act, a_row, nc, o5, nr);
                CHECK(!memcmp(o2, o5, sizeof(float) * nr * nc), "%s nr=%d nc=%d: avx2 = avx512vnni bitwise",
                      ggml_type_get(t)->name, nr, nc);
            }
        free(w);
    }
    free(act), free(x), free(o2), free(o5);
}

/* SwiGLU (kernels.h): every table gives the truth's bits for any length and start (the forward
 * pass cuts the vector among threads anywhere), and the truth is silu(x) * u to a few ulp (and
 * about 1e-36 absolute, where the contract's exp is 0), specials included (signed zeros,
 * overflowing exp arguments, infinities, NaN). */
static void test_swiglu(const kernel_ops *k) {
    enum { N = 203 };
    float g[N], u[N], want[N], got[N];
    for (int i = 0; i < N; i++) {
        g[i] = (float)((int)(rnd() % 4001) - 2000) * (i % 3 ? 0.01f : 0.1f);
        u[i] = (float)((int)(rnd() % 2001) - 1000) * 0.003f;
    }
    const float specials[] = {0.0f,    -0.0f,  87.0f,   -87.0f,   88.5f,     -88.5f, 200.0f,
                              -200.0f, 1e-30f, -1e-30f, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) g[3 + 7 * i] = specials[i];
    memcpy(want, g, sizeof g);
    swiglu_scalar(want, u, N);
    int far = 0;
    for (int i = 0; i < N; i++) {
        const double x = g[i], ref = x / (1.0 + exp(-x)) * u[i];
        if (isnan(x)) {
            far += !isnan(want[i]);
            continue;
        }
        if (isinf(x) && x < 0) {
            far += !isnan(want[i]);
            continue;
        } /* -inf * 0, as x / (1 + exp(-x)) */
        if (isinf(x)) {
            far += !(want[i] == (float)(x * u[i]) || (u[i] == 0 && isnan(want[i])));
            continue;
        }
        far += fabs(want[i] - ref) > 4e-7 * fabs(ref) + 1e-35; /* exp below -87.3 is 0 */
    }
    CHECK(far == 0, "swiglu truth: %d of %d values off silu(x) * u", far, N);
    for (int start = 0; start < 20; start += 3)
        for (int len = 0; start + len <= N; len += len < 40 ? 1 : 37) {
            memcpy(got, g, sizeof g);
            k->swiglu(got + start, u + start, len);
            int diff = memcmp(got, g, sizeof(float) * start) ||
                       memcmp(got + start + len, g + start + len, sizeof(float) * (N - start - len));
            for (int i = start; i < start + len; i++) diff += memcmp(&got[i], &want[i], 4) != 0;
            CHECK(diff == 0, "%s swiglu start %d length %d: %d values differ from the truth", k->isa, start, len, diff);
        }
}

/* The Q6_K_X16 byte map keeps every byte of a block in the order decode reads it (ggml_types.h):
 * d, then for each quarter j the vectors of u = 4j .. 4j + 3 (nibble vectors u and u + 16, then
 * high-bit vector u), then the scales of sub-blocks j, j + 4, j + 8, j + 12, one after the other
 * to the block's end; three regions read side by side, or scales read back at the block's head,
 * lost Zen 4's prefetchers (bench/CPU.md). The products are checked against plain rows elsewhere. */
static void test_x16q6_order(void) {
    const size_t end = 16 * sizeof(block_q6_K);
    size_t next = 32;
    int ok = 1;
    for (int j = 0; j < 4; j++) {
        for (int t = 0; t < 4; t++) {
            const int u = 4 * j + t;
            const size_t at[3] = {x16q6_nib(u), x16q6_nib(u + 16), x16q6_hi(u)};
            for (int i = 0; i < 3; i++, next += 64) ok &= at[i] == next;
        }
        for (int s = 0; s < 4; s++, next += 16) ok &= x16q6_sc(j + 4 * s) == next;
    }
    CHECK(ok && next == end, "Q6_K_X16: decode's reads follow one another from 32 to %zu (got to %zu)", end, next);
}

int main(void) {
    for (uint32_t t = 0; t < GGML_NTYPES; t++) {
        const ggml_type_info *ti = ggml_type_get(t);
        if (ti && (ti->runs & GGML_RUN_CPU)) TYPES[N_TYPES++] = t;
        if (ti && ti->x16) X16_TYPES[N_X16++] = t;
    }
    CHECK(N_X16 == 4, "%zu types with an interleaved layout (Q2_K, Q3_K, Q4_K, Q6_K)", N_X16);
    CHECK(N_TYPES >= 16, "%zu weight types run on the CPU", N_TYPES);
    const kernel_ops *tables[8];
    int n = kernels_available(tables, 8);
    CHECK(n >= 1 && !strcmp(tables[0]->isa, "scalar"), "the scalar table comes first");
    CHECK(kernels_get() != NULL, "kernels_get returns a table");
    const char *force = getenv("LFM2C_ISA");
    if (!force || !*force)
        CHECK(kernels_get()->tile_invariant, "the default table (%s) is tile invariant", kernels_get()->isa);
    else /* a forced table this CPU cannot run is a failed run, not a silent fallback */
        CHECK(!strncmp(kernels_get()->isa, force, strlen(force)), "LFM2C_ISA=%s is available (got %s)", force,
              kernels_get()->isa);
    printf("default table: %s\n", kernels_get()->isa);
    for (int i = 0; i < n; i++) printf("table: %s\n", tables[i]->isa);
#if defined(__aarch64__) && defined(__linux__)
    CHECK(kernels_neon() != NULL, "the NEON table on an ARM64 CPU");
    if (getauxval(AT_HWCAP) & (1 << 20))
        CHECK(kernels_neon_dotprod() != NULL, "the dotprod table on a CPU with ASIMDDP");
    if (getauxval(AT_HWCAP2) & (1 << 13)) CHECK(kernels_neon_i8mm() != NULL, "the i8mm table on a CPU with I8MM");
#endif
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) CHECK(kernels_x86_avx2() != NULL, "AVX2 table on an AVX2 CPU");
    if (__builtin_cpu_supports("avx512vnni")) CHECK(kernels_x86_avx512() != NULL, "AVX-512 table on a VNNI CPU");
#endif
    for (int i = 0; i < n; i++) {
        test_quantize(tables[i]);
        test_matmul(tables[i]);
        test_packed(tables[i]);
        test_packed_chunks(tables[i]);
        test_swiglu(tables[i]);
    }
    test_tile_invariance(tables, n);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512vbmi") && kernels_x86_avx512()) { /* the IQ tiles without VBMI too */
        iq_vbmi = 0;
        test_matmul(kernels_x86_avx512());
        test_tile_invariance(tables, n);
        iq_vbmi = -1;
    }
#endif
    test_x86_kquants_agree(tables, n);
    test_x16q6_order();
    TEST_MAIN_END();
}
