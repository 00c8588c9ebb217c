/* quantize_iq.c — the grid quantizers (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M), byte
 * for byte as the reference's quantize_iq* make them, with the importance weights of a row.
 *
 * A grid type stores each group of 8 (IQ1, IQ2) or 4 (IQ3) weights as the index of a point of its
 * grid (formats/iq_grids.c). The quantizer rounds a group to levels l (a point 2l+1 of the odd
 * integer lattice), looks the levels up in the grid's index map and, for a point off the grid,
 * picks among that point's nearest grid points (its neighbour list) the one of least weighted
 * error. The maps and neighbour lists are built here once from the grids themselves, as the
 * reference builds them at init: the levels of a grid byte are its rank among the grid's distinct
 * byte values; a point's neighbours are the grid points at its nwant smallest squared distances,
 * by distance then index. Float operations keep the reference's order (-ffp-contract=off). */
#include "convert/quant_impl.h"
#include "formats/ggml_types.h"
#include "formats/iq_grids.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- grids, index maps, neighbour lists ---------------------------------------------------- */

typedef struct iq_grid {
    int n, dims, bits, nwant, map_size;
    const void *src; /* the format's grid (iq_grids.c) */
    bool is_signed;  /* IQ1: bytes are -1, 0, +1 */
    int8_t *pos;     /* n * dims: 2 * level + 1 */
    int *map;        /* map_size: grid index, or -(offset + 1) into nb for a point off the grid */
    uint16_t *nb;    /* per off-grid point: count, then the grid indices */
    bool ready, failed;
} iq_grid;

enum { G_IQ2XXS, G_IQ2XS, G_IQ2S, G_IQ1S, G_IQ3XXS, G_IQ3S, G_COUNT };
static iq_grid GRIDS[G_COUNT] = {
    [G_IQ2XXS] = {256, 8, 2, 2, 43692, iq2xxs_grid, false, NULL, NULL, NULL, false, false},
    [G_IQ2XS] = {512, 8, 2, 2, 43692, iq2xs_grid, false, NULL, NULL, NULL, false, false},
    [G_IQ2S] = {1024, 8, 2, 1, 43692, iq2s_grid, false, NULL, NULL, NULL, false, false},
    [G_IQ1S] = {2048, 8, 2, 3, 43692, iq1s_grid, true, NULL, NULL, NULL, false, false},
    [G_IQ3XXS] = {256, 4, 3, 2, 4096, iq3xxs_grid, false, NULL, NULL, NULL, false, false},
    [G_IQ3S] = {512, 4, 3, 3, 4096, iq3s_grid, false, NULL, NULL, NULL, false, false},
};
static pthread_mutex_t grid_lock = PTHREAD_MUTEX_INITIALIZER;

static int byte_key(const iq_grid *g, uint8_t b) { return g->is_signed ? (int8_t)b : b; }

/* pos from the format's grid: each byte's rank among the distinct values */
static bool grid_levels(iq_grid *g) {
    const uint8_t *bytes = g->src;
    int vals[16], nv = 0;
    for (int i = 0; i < g->n * g->dims; i++) {
        int v = byte_key(g, bytes[i]), k = 0;
        while (k < nv && vals[k] != v) k++;
        if (k == nv) {
            if (nv == 16) return false;
            vals[nv++] = v;
        }
    }
    if (nv != (g->bits == 2 ? 3 : 8)) return false;
    for (int i = 0; i < g->n * g->dims; i++) {
        int v = byte_key(g, bytes[i]), rank = 0;
        for (int k = 0; k < nv; k++) rank += vals[k] < v;
        g->pos[i] = (int8_t)(2 * rank + 1);
    }
    return true;
}

/* the grid indices nearest point i (levels in its bits) into out; returns their count */
static int neighbours_of(const iq_grid *g, int i, int *d2, uint16_t *out) {
    int8_t p[8];
    const int mask = (1 << g->bits) - 1;
    for (int k = 0; k < g->dims; k++) p[k] = (int8_t)(2 * ((i >> g->bits * k) & mask) + 1);
    int lo = INT32_MAX;
    for (int j = 0; j < g->n; j++) {
        int s = 0;
        for (int k = 0; k < g->dims; k++) s += (g->pos[j * g->dims + k] - p[k]) * (g->pos[j * g->dims + k] - p[k]);
        d2[j] = s;
        if (s < lo) lo = s;
    }
    int cnt = 0;
    for (int have = 0, cur = lo; have < g->nwant && cur != INT32_MAX; have++) {
        for (int j = 0; j < g->n; j++)
            if (d2[j] == cur) out[cnt++] = (uint16_t)j;
        int next = INT32_MAX;
        for (int j = 0; j < g->n; j++)
            if (d2[j] > cur && d2[j] < next) next = d2[j];
        cur = next;
    }
    return cnt;
}

static bool grid_build(iq_grid *g) {
    g->pos = malloc((size_t)g->n * (size_t)g->dims);
    g->map = malloc((size_t)g->map_size * sizeof *g->map);
    int *d2 = malloc((size_t)g->n * sizeof *d2);
    uint16_t *tmp = malloc((size_t)g->n * sizeof *tmp);
    bool ok = g->pos && g->map && d2 && tmp && grid_levels(g);
    size_t used = 0, cap = 0;
    for (int i = 0; ok && i < g->map_size; i++) g->map[i] = -1;
    for (int j = 0; ok && j < g->n; j++) {
        int u = 0;
        for (int k = 0; k < g->dims; k++) u |= ((g->pos[j * g->dims + k] - 1) / 2) << g->bits * k;
        if (u < g->map_size) g->map[u] = j;
    }
    for (int i = 0; ok && i < g->map_size; i++) {
        if (g->map[i] >= 0) continue;
        int c = neighbours_of(g, i, d2, tmp);
        if (used + (size_t)c + 1 > cap) {
            cap = (used + (size_t)c + 1) * 2;
            uint16_t *nb = realloc(g->nb, cap * sizeof *nb);
            if (!nb) {
                ok = false;
                break;
            }
            g->nb = nb;
        }
        g->map[i] = -(int)used - 1;
        g->nb[used] = (uint16_t)c;
        memcpy(g->nb + used + 1, tmp, (size_t)c * sizeof *tmp);
        used += (size_t)c + 1;
    }
    free(d2);
    free(tmp);
    return ok;
}

static int grid_of(uint32_t type) {
    switch (type) {
    case GGML_IQ2_XXS: return G_IQ2XXS;
    case GGML_IQ2_XS: return G_IQ2XS;
    case GGML_IQ2_S: return G_IQ2S;
    case GGML_IQ1_S:
    case GGML_IQ1_M: return G_IQ1S;
    case GGML_IQ3_XXS: return G_IQ3XXS;
    case GGML_IQ3_S: return G_IQ3S;
    default: return -1;
    }
}

int qi_iq_prepare(uint32_t type) {
    const int gi = grid_of(type);
    if (gi < 0) return 1;
    iq_grid *g = &GRIDS[gi];
    pthread_mutex_lock(&grid_lock);
    if (!g->ready && !g->failed) {
        if (grid_build(g)) g->ready = true;
        else g->failed = true;
    }
    const int ok = g->ready;
    pthread_mutex_unlock(&grid_lock);
    return ok;
}

/* The neighbour of an off-grid point u of least weighted distance to xval at scale; its levels
 * into L. */
static int best_neighbour(const iq_grid *g, int u, const float *xval, const float *w, float scale, int8_t *L) {
    const uint16_t *nb = g->nb + (-g->map[u] - 1);
    float best_d2 = FLT_MAX;
    int gi = nb[1];
    for (int j = 1; j <= nb[0]; j++) {
        const int8_t *pg = g->pos + nb[j] * g->dims;
        float d2 = 0;
        for (int i = 0; i < g->dims; i++) {
            float q = pg[i];
            float diff = scale * q - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best_d2) {
            best_d2 = d2;
            gi = nb[j];
        }
    }
    for (int i = 0; i < g->dims; i++) L[i] = (int8_t)((g->pos[gi * g->dims + i] - 1) / 2);
    return gi;
}

/* the grid point's index of levels L (a group), which must be on the grid */
static int index_of(const iq_grid *g, const int8_t *L) {
    int u = 0;
    for (int i = 0; i < g->dims; i++) u |= L[i] << g->bits * i;
    return g->map[u];
}

/* ---- the shared scale search of IQ2 / IQ3 ------------------------------------------------------ */

typedef struct gsearch {
    const iq_grid *g;
    int n, kmax; /* weights in the sub-block, levels 0..kmax-1 */
    const float *xval, *weight, *waux;
    int8_t *L;       /* n levels (out) */
    bool on_grid[8]; /* per group, of the best candidate */
} gsearch;

/* Rounds xval at inverse scale id into levels; an off-grid group takes its best neighbour at
 * scale 1/id (is_on: per group whether it was on the grid). */
static void round_groups(gsearch *s, float id, int8_t *L, bool *is_on) {
    const int gd = s->g->dims;
    for (int k = 0; k < s->n / gd; k++) {
        int u = 0;
        for (int i = 0; i < gd; i++) {
            int l = qi_nearest_int(0.5f * (id * s->xval[gd * k + i] - 1));
            L[gd * k + i] = (int8_t)qi_max(0, qi_min(s->kmax - 1, l));
            u |= L[gd * k + i] << s->g->bits * i;
        }
        is_on[k] = s->g->map[u] >= 0;
        if (!is_on[k]) best_neighbour(s->g, u, s->xval + gd * k, s->waux + gd * k, 1 / id, L + gd * k);
    }
}

static void qsums(const gsearch *s, const int8_t *L, float *sqx, float *sq2) {
    float sumqx = 0, sumq2 = 0;
    for (int i = 0; i < s->n; i++) {
        float w = s->weight[i], q = 2 * L[i] + 1;
        sumqx += w * s->xval[i] * q;
        sumq2 += w * q * q;
    }
    *sqx = sumqx;
    *sq2 = sumq2;
}

/* Tries the inverse scales (2 kmax - 1 + is * step) / max for is in [lo, hi]; keeps the best
 * levels in s->L (and which groups were on the grid); returns the scale (scale0 if none won). */
static float scale_search(gsearch *s, float max, float scale0, int lo, int hi, float step) {
    int8_t Laux[32];
    bool on_aux[8];
    float best = 0, scale = scale0;
    for (int is = lo; is <= hi; is++) {
        float id = (2 * s->kmax - 1 + is * step) / max;
        round_groups(s, id, Laux, on_aux);
        float sumqx, sumq2;
        qsums(s, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(s->L, Laux, (size_t)s->n);
            memcpy(s->on_grid, on_aux, sizeof on_aux);
        }
    }
    return scale;
}

/* Requantizes the groups at the found scale (all of them, or those off the grid) and refits the
 * scale. */
static float requantize(gsearch *s, float scale, bool all) {
    const int gd = s->g->dims;
    float id = 1 / scale;
    for (int k = 0; k < s->n / gd; k++) {
        if (!all && s->on_grid[k]) continue;
        int u = 0;
        int8_t l8[8];
        for (int i = 0; i < gd; i++) {
            l8[i] = (int8_t)qi_max(0, qi_min(s->kmax - 1, qi_nearest_int(0.5f * (id * s->xval[gd * k + i] - 1))));
            u |= l8[i] << s->g->bits * i;
        }
        memcpy(s->L + gd * k, l8, (size_t)gd);
        if (s->g->map[u] < 0) best_neighbour(s->g, u, s->xval + gd * k, s->waux + gd * k, scale, s->L + gd * k);
    }
    float sumqx, sumq2;
    qsums(s, s->L, &sumqx, &sumq2);
    return sumq2 > 0 ? sumqx / sumq2 : scale;
}

static int n_off_grid(const gsearch *s) {
    int c = 0;
    for (int k = 0; k < s->n / s->g->dims; k++) c += !s->on_grid[k];
    return c;
}

/* xval = |x| over groups of 8, signs in s[k] (bit i: negative); with even, a group of an odd
 * count of negatives flips the sign of its least important weight (7 sign bits stored). */
static void take_signs(const float *xb, const float *weight, int n, bool even, float *xval, uint8_t *signs) {
    for (int k = 0; k < n / 8; k++) {
        int nflip = 0;
        uint8_t s = 0;
        for (int i = 0; i < 8; i++) {
            if (xb[8 * k + i] >= 0) xval[8 * k + i] = xb[8 * k + i];
            else xval[8 * k + i] = -xb[8 * k + i], nflip++, s |= (uint8_t)(1 << i);
        }
        if (even && nflip % 2) {
            int imin = 0;
            float min = weight[8 * k] * xb[8 * k] * xb[8 * k];
            for (int i = 1; i < 8; i++) {
                float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                if (ax < min) min = ax, imin = i;
            }
            xval[8 * k + imin] = -xval[8 * k + imin];
            s ^= (uint8_t)(1 << imin);
        }
        signs[k] = even ? (uint8_t)(s & 127) : s;
    }
}

/* importance of n weights: qw * sqrt(sigma2 + x^2), or without qw the type's default */
static void weights_of(const float *xb, const float *qw, float sigma2, int n, float nq_a, float nq_b, float *w) {
    if (qw)
        for (int i = 0; i < n; i++) w[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
    else
        for (int i = 0; i < n; i++) w[i] = nq_a * sigma2 + nq_b * xb[i] * xb[i];
}

static float sumsq(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

static float fmaxf_ref(float a, float b) { return a > b ? a : b; }

static float max_of(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = fmaxf_ref(m, x[i]);
    return m;
}

/* the 4-bit sub-block scale of the reference: nearest_int(0.5 (id * scale - 1)) in [0, 15] */
static int scale4(float id, float s) { return qi_max(0, qi_min(15, qi_nearest_int(0.5f * (id * s - 1)))); }

/* ---- IQ2_XXS ------------------------------------------------------------------------------- */

/* One sub-block of 32: the scale (>= 0, 0 for zeros) and its 4 grid indices and 4 x 7 sign bits
 * into q2[0], q2[1]. */
static float iq2xxs_sub(const float *xb, const float *weight, uint32_t *q2) {
    float xval[32], waux[32];
    uint8_t signs[4];
    int8_t L[32];
    const iq_grid *g = &GRIDS[G_IQ2XXS];
    for (int i = 0; i < 32; i++) waux[i] = sqrtf(weight[i]);
    take_signs(xb, weight, 32, true, xval, signs);
    float max = max_of(xval, 32);
    if (max < QI_GROUP_MAX_EPS) return 0;
    gsearch s = {.g = g, .n = 32, .kmax = 3, .xval = xval, .weight = weight, .waux = waux, .L = L};
    float scale = qi_qp_quants(32, 4, xval, (uint8_t *)L, weight);
    float eff_max = scale * 3;
    if (eff_max <= 0) return 0;
    scale = scale_search(&s, eff_max, scale, -6, 6, 0.1f);
    if (scale > 0) scale = requantize(&s, scale, true);
    if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 4; k++) signs[k] = (uint8_t)(~signs[k] & 127);
    }
    for (int k = 0; k < 4; k++) {
        q2[0] |= (uint32_t)index_of(g, L + 8 * k) << 8 * k;
        q2[1] |= (uint32_t)signs[k] << 7 * k;
    }
    return scale;
}

static void iq2xxs_block(const float *xbl, block_iq2_xxs *y, const float *qwb) {
    uint32_t q2[16];
    float scales[8], weight[32], max_scale = 0;
    memset(q2, 0, sizeof q2);
    y->d = f32_to_fp16(0.f);
    float sigma2 = sumsq(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < 8; ib++) {
        weights_of(xbl + 32 * ib, qwb + 32 * ib, sigma2, 32, 0, 1, weight);
        scales[ib] = iq2xxs_sub(xbl + 32 * ib, weight, q2 + 2 * ib);
        max_scale = fmaxf_ref(max_scale, scales[ib]);
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    float d = max_scale / 31;
    y->d = f32_to_fp16(d);
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib++) q2[2 * ib + 1] |= (uint32_t)scale4(id, scales[ib]) << 28;
    memcpy(y->qs, q2, sizeof y->qs);
}

void qi_iq2_xxs(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq2_xxs *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq2xxs_block(x, y++, qw + QK_K * i);
}

/* ---- IQ2_XS, IQ2_S ------------------------------------------------------------------------- */

/* One sub-block of 16 of IQ2_XS (is_s false: 7 sign bits with even parity) or IQ2_S (all 8):
 * levels into L, signs into signs[2]; returns the scale, -1 for a sub-block of zeros. */
static float iq2_16_sub(const iq_grid *g, bool is_s, const float *xb, const float *weight, int8_t *L, uint8_t *signs) {
    float xval[16], waux[16];
    for (int i = 0; i < 16; i++) waux[i] = sqrtf(weight[i]);
    take_signs(xb, weight, 16, !is_s, xval, signs);
    float max = max_of(xval, 16);
    memset(L, 0, 16);
    if (max < (is_s ? 1e-8f : QI_GROUP_MAX_EPS)) return -1; /* zeros: nothing stored */
    gsearch s = {.g = g, .n = 16, .kmax = 3, .xval = xval, .weight = weight, .waux = waux, .L = L};
    s.on_grid[0] = s.on_grid[1] = true;
    float scale = scale_search(&s, max, max / 5, -9, 9, 0.1f);
    if (n_off_grid(&s) > 0 && scale > 0) scale = requantize(&s, scale, false);
    if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 2; k++) signs[k] = is_s ? (uint8_t)~signs[k] : (uint8_t)(~signs[k] & 127);
    }
    return scale;
}

static void iq2xs_block(const float *xbl, block_iq2_xs *y, const float *qwb) {
    const iq_grid *g = &GRIDS[G_IQ2XS];
    uint16_t q2[32];
    float scales[16], weight[16], max_scale = 0;
    memset(q2, 0, sizeof q2);
    memset(y->scales, 0, sizeof y->scales);
    y->d = f32_to_fp16(0.f);
    float sigma2 = sumsq(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < 16; ib++) {
        int8_t L[16];
        uint8_t signs[2];
        weights_of(xbl + 16 * ib, qwb + 16 * ib, sigma2, 16, 0, 1, weight);
        scales[ib] = iq2_16_sub(g, false, xbl + 16 * ib, weight, L, signs);
        if (scales[ib] < 0) {
            scales[ib] = 0;
            continue;
        }
        for (int k = 0; k < 2; k++) q2[2 * ib + k] = (uint16_t)(index_of(g, L + 8 * k) | (signs[k] << 9));
        max_scale = fmaxf_ref(max_scale, scales[ib]);
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    float d = max_scale / 31;
    y->d = f32_to_fp16(d);
    float id = 1 / d;
    for (int ib = 0; ib < 16; ib++) {
        int l = scale4(id, scales[ib]);
        if (ib % 2 == 0) y->scales[ib / 2] = (uint8_t)l;
        else y->scales[ib / 2] |= (uint8_t)(l << 4);
    }
    memcpy(y->qs, q2, sizeof y->qs);
}

void qi_iq2_xs(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq2_xs *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq2xs_block(x, y++, qw + QK_K * i);
}

static void iq2s_block(const float *xbl, block_iq2_s *y, const float *qwb) {
    const iq_grid *g = &GRIDS[G_IQ2S];
    float scales[16], weight[16], max_scale = 0;
    memset(y, 0, sizeof *y);
    y->d = f32_to_fp16(0.f);
    float sigma2 = 2 * sumsq(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < 16; ib++) {
        int8_t L[16];
        uint8_t signs[2];
        weights_of(xbl + 16 * ib, qwb ? qwb + 16 * ib : NULL, sigma2, 16, 0.25f, 1, weight);
        scales[ib] = iq2_16_sub(g, true, xbl + 16 * ib, weight, L, signs);
        if (scales[ib] < 0) {
            scales[ib] = 0;
            continue;
        }
        for (int k = 0; k < 2; k++) {
            const int i8 = 2 * ib + k, gi = index_of(g, L + 8 * k);
            y->qs[i8] = (uint8_t)(gi & 255);
            y->qh[i8 / 4] |= (uint8_t)((gi >> 8) << 2 * (i8 % 4));
            y->qs[QK_K / 8 + i8] = signs[k];
        }
        max_scale = fmaxf_ref(max_scale, scales[ib]);
    }
    if (!max_scale) return;
    float d = max_scale / 31;
    y->d = f32_to_fp16(d * 0.9875f);
    float id = 1 / d;
    for (int ib = 0; ib < 16; ib++) {
        int l = scale4(id, scales[ib]);
        if (ib % 2 == 0) y->scales[ib / 2] = (uint8_t)l;
        else y->scales[ib / 2] |= (uint8_t)(l << 4);
    }
}

void qi_iq2_s(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq2_s *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq2s_block(x, y++, qw ? qw + QK_K * i : NULL);
}

/* ---- IQ3_XXS, IQ3_S ------------------------------------------------------------------------ */

/* One sub-block of 32 of IQ3_XXS (even: 7 sign bits a group of 8) or IQ3_S: levels into L, signs
 * into signs[4]; returns the scale, -1 for a sub-block of zeros. */
static float iq3_sub(const iq_grid *g, bool is_s, const float *xb, const float *weight, int8_t *L, uint8_t *signs) {
    float xval[32], waux[32];
    for (int i = 0; i < 32; i++) waux[i] = sqrtf(weight[i]);
    take_signs(xb, weight, 32, !is_s, xval, signs);
    float max = max_of(xval, 32);
    memset(L, 0, 32);
    if (is_s ? !max : max < 1e-8f) return -1;
    gsearch s = {.g = g, .n = 32, .kmax = 8, .xval = xval, .weight = weight, .waux = waux, .L = L};
    for (int k = 0; k < 8; k++) s.on_grid[k] = !is_s;
    float scale = scale_search(&s, max, max / 15, is_s ? -9 : -15, is_s ? 9 : 15, 0.2f);
    if (n_off_grid(&s) > 0 && scale > 0) scale = requantize(&s, scale, is_s);
    if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 4; k++) signs[k] = is_s ? (uint8_t)~signs[k] : (uint8_t)(~signs[k] & 127);
    }
    return scale;
}

static void iq3xxs_block(const float *xbl, block_iq3_xxs *y, const float *qwb) {
    const iq_grid *g = &GRIDS[G_IQ3XXS];
    uint8_t q3[96];
    uint32_t sas[8];
    float scales[8], weight[32], max_scale = 0;
    memset(q3, 0, sizeof q3);
    memset(sas, 0, sizeof sas);
    y->d = f32_to_fp16(0.f);
    float sigma2 = 2 * sumsq(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < 8; ib++) {
        int8_t L[32];
        uint8_t signs[4];
        weights_of(xbl + 32 * ib, qwb ? qwb + 32 * ib : NULL, sigma2, 32, 0, 1, weight);
        scales[ib] = iq3_sub(g, false, xbl + 32 * ib, weight, L, signs);
        if (scales[ib] < 0) {
            scales[ib] = 0;
            continue;
        }
        for (int k = 0; k < 8; k++) q3[8 * ib + k] = (uint8_t)index_of(g, L + 4 * k);
        sas[ib] = signs[0] | (uint32_t)signs[1] << 7 | (uint32_t)signs[2] << 14 | (uint32_t)signs[3] << 21;
        max_scale = fmaxf_ref(max_scale, scales[ib]);
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    float d = max_scale / 31;
    y->d = f32_to_fp16(d * 1.0125f);
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib++) sas[ib] |= (uint32_t)scale4(id, scales[ib]) << 28;
    memcpy(q3 + 64, sas, sizeof sas);
    memcpy(y->qs, q3, sizeof y->qs);
}

void qi_iq3_xxs(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq3_xxs *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq3xxs_block(x, y++, qw ? qw + QK_K * i : NULL);
}

static void iq3s_block(const float *xbl, block_iq3_s *y, const float *qwb) {
    const iq_grid *g = &GRIDS[G_IQ3S];
    float scales[8], weight[32], max_scale = 0;
    memset(y, 0, sizeof *y);
    y->d = f32_to_fp16(0.f);
    uint8_t *qs = y->qs, *signs_out = y->signs;
    float sigma2 = 2 * sumsq(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < 8; ib++) {
        int8_t L[32];
        uint8_t signs[4];
        weights_of(xbl + 32 * ib, qwb ? qwb + 32 * ib : NULL, sigma2, 32, 0, 1, weight);
        scales[ib] = iq3_sub(g, true, xbl + 32 * ib, weight, L, signs);
        if (scales[ib] < 0) { /* the reference leaves its qs / signs cursors where they are here */
            scales[ib] = 0;
            continue;
        }
        for (int k = 0; k < 8; k++) {
            const int gi = index_of(g, L + 4 * k);
            qs[k] = (uint8_t)(gi & 255);
            y->qh[(ib * 8 + k) / 8] |= (uint8_t)((gi >> 8) << ((ib * 8 + k) % 8));
        }
        qs += 8;
        memcpy(signs_out, signs, 4);
        signs_out += 4;
        max_scale = fmaxf_ref(max_scale, scales[ib]);
    }
    if (!max_scale) return;
    float d = max_scale / 31;
    y->d = f32_to_fp16(d * 1.033f);
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib += 2)
        y->scales[ib / 2] = (uint8_t)(scale4(id, scales[ib]) | (scale4(id, scales[ib + 1]) << 4));
}

void qi_iq3_s(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq3_s *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq3s_block(x, y++, qw ? qw + QK_K * i : NULL);
}

/* ---- IQ1_S, IQ1_M -------------------------------------------------------------------------- */

#define IQ1_DELTA 0.125f /* ggml-common.h's IQ1S_DELTA and IQ1M_DELTA */
static const float X_P[3] = {-1 + IQ1_DELTA, IQ1_DELTA, 1 + IQ1_DELTA};
static const float X_M[3] = {-1 - IQ1_DELTA, -IQ1_DELTA, 1 - IQ1_DELTA};

typedef struct iq1_pair {
    float v;
    int i;
} iq1_pair;

static int iq1_pair_cmp(const void *a, const void *b) {
    const float l = ((const iq1_pair *)a)->v, r = ((const iq1_pair *)b)->v;
    return l < r ? -1 : l > r ? 1 : 0;
}

/* The grid point of 8 weights nearest xb at scale with the levels' values xg; levels into L. */
static int iq1_neighbour(const iq_grid *g, int u, const float *xb, const float *w, float scale, const float *xg,
                         int8_t *L) {
    const uint16_t *nb = g->nb + (-g->map[u] - 1);
    float best = FLT_MAX;
    int gi = nb[1];
    for (int j = 1; j <= nb[0]; j++) {
        const int8_t *pg = g->pos + 8 * nb[j];
        float d2 = 0;
        for (int i = 0; i < 8; i++) {
            float q = xg[(pg[i] - 1) / 2], diff = scale * q - xb[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) best = d2, gi = nb[j];
    }
    for (int i = 0; i < 8; i++) L[i] = (int8_t)((g->pos[8 * gi + i] - 1) / 2);
    return gi;
}

/* xb's n weights sorted ascending (the reference's qsort over (value, index) pairs) */
static void iq1_sort(const float *xb, int n, iq1_pair *p) {
    for (int j = 0; j < n; j++) p[j].v = xb[j], p[j].i = j;
    qsort(p, (size_t)n, sizeof *p, iq1_pair_cmp);
}

/* the grid index of each group of 8 of L (n weights), off-grid groups moved to their nearest
 * point at scale with the level values of xx(k); false when some group was off the grid */
static bool iq1_index(const iq_grid *g, int n, const float *xb, const float *weight, float scale, int best_k, bool m,
                      int8_t *L, uint16_t *index) {
    bool all_on = true;
    for (int k = 0; k < n / 8; k++) {
        const float *xx = !m ? (best_k == 1 ? X_P : X_M) : (k == 0 ? best_k < 2 : best_k % 2 == 0) ? X_P : X_M;
        int u = 0;
        for (int j = 0; j < 8; j++) u |= L[8 * k + j] << 2 * j;
        int gi = g->map[u];
        if (gi < 0) {
            all_on = false;
            gi = iq1_neighbour(g, u, xb + 8 * k, weight + 8 * k, scale, xx, L + 8 * k);
        }
        index[k] = (uint16_t)gi;
    }
    return all_on;
}

/* the scale refit over the grid points chosen */
static float iq1_refit(const iq_grid *g, int n, const float *xb, const float *weight, int best_k, bool m,
                       const uint16_t *index, float scale) {
    float sumqx = 0, sumq2 = 0;
    for (int k = 0; k < n / 8; k++) {
        const float *xx = !m ? (best_k == 1 ? X_P : X_M) : (k == 0 ? best_k < 2 : best_k % 2 == 0) ? X_P : X_M;
        const int8_t *pg = g->pos + 8 * index[k];
        for (int j = 0; j < 8; j++) {
            float w = weight[8 * k + j], q = xx[(pg[j] - 1) / 2];
            sumqx += w * q * xb[8 * k + j];
            sumq2 += w * q * q;
        }
    }
    return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

static void iq1_levels(const iq1_pair *p, int n, int i1, int i2, int8_t *L) {
    for (int j = 0; j < i1; j++) L[p[j].i] = 0;
    for (int j = i1; j < i2; j++) L[p[j].i] = 1;
    for (int j = i2; j < n; j++) L[p[j].i] = 2;
}

/* IQ1_S sub-block of 32: the best split of the sorted weights into -1, 0, +1 with the shift
 * (+1: X_P, -1: X_M); returns the scale, -1 when nothing is stored (zeros; *shift 1). */
static float iq1s_sub(const float *xb, const float *weight, uint16_t *index, int *shift) {
    const iq_grid *g = &GRIDS[G_IQ1S];
    float sumx[33], sumw[33], max = fabsf(xb[0]);
    iq1_pair p[32];
    int8_t L[32];
    *shift = 1;
    for (int i = 1; i < 32; i++) max = fmaxf_ref(max, fabsf(xb[i]));
    if (max < 1e-12f) return -1;
    iq1_sort(xb, 32, p);
    sumx[0] = sumw[0] = 0;
    for (int j = 0; j < 32; j++)
        sumx[j + 1] = sumx[j] + weight[p[j].i] * xb[p[j].i], sumw[j + 1] = sumw[j] + weight[p[j].i];
    float best = -FLT_MAX, scale = max;
    int b1 = -1, b2 = -1, bs = 0;
    for (int i1 = 0; i1 <= 32; i1++)
        for (int i2 = i1; i2 <= 32; i2++)
            for (int t = 0; t < 2; t++) {
                const float *xs = t ? X_M : X_P;
                float sqx =
                    (sumx[i1] - sumx[0]) * xs[0] + (sumx[i2] - sumx[i1]) * xs[1] + (sumx[32] - sumx[i2]) * xs[2];
                float sq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0] + (sumw[i2] - sumw[i1]) * xs[1] * xs[1] +
                            (sumw[32] - sumw[i2]) * xs[2] * xs[2];
                if (sq2 > 0 && sqx * sqx > best * sq2)
                    scale = sqx / sq2, best = scale * sqx, b1 = i1, b2 = i2, bs = t ? -1 : 1;
            }
    if (b1 < 0 || b2 < 0 || bs == 0) return -1;
    iq1_levels(p, 32, b1, b2, L);
    if (scale < 0) {
        for (int j = 0; j < 32; j++) L[j] = (int8_t)(2 - L[j]);
        scale = -scale, bs = -bs;
    }
    if (!iq1_index(g, 32, xb, weight, scale, bs, false, L, index))
        scale = iq1_refit(g, 32, xb, weight, bs, false, index, scale);
    *shift = bs;
    return scale;
}

static void iq1s_block(const float *xbl, block_iq1_s *y, const float *qwb) {
    float scales[8], weight[32], max_scale = 0;
    int shifts[8];
    y->d = f32_to_fp16(0.f);
    memset(y->qs, 0, sizeof y->qs);
    memset(y->qh, 0, sizeof y->qh);
    float sigma2 = 2 * sumsq(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < 8; ib++) {
        uint16_t index[4];
        weights_of(xbl + 32 * ib, qwb + 32 * ib, sigma2, 32, 0, 1, weight);
        scales[ib] = iq1s_sub(xbl + 32 * ib, weight, index, &shifts[ib]);
        if (scales[ib] < 0) {
            scales[ib] = 0;
            continue;
        }
        uint16_t h = 0;
        for (int k = 0; k < 4; k++)
            y->qs[4 * ib + k] = (uint8_t)(index[k] & 255), h |= (uint16_t)((index[k] >> 8) << 3 * k);
        y->qh[ib] = h;
        max_scale = fmaxf_ref(max_scale, scales[ib]);
    }
    if (!max_scale) return;
    float d = max_scale / 15;
    y->d = f32_to_fp16(d * 1.125f);
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib++) {
        int l = qi_max(0, qi_min(7, qi_nearest_int(0.5f * (id * scales[ib] - 1))));
        if (shifts[ib] == -1) l |= 8;
        y->qh[ib] |= (uint16_t)(l << 12);
    }
}

void qi_iq1_s(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq1_s *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq1s_block(x, y++, qw + QK_K * i);
}

/* IQ1_M's sums of a split (i1, i2) of the sorted 16 weights for the 4 shift pairs (first half,
 * second half: 0 ++, 1 +-, 2 -+, 3 --), added in the reference's order */
static void iq1m_sums(const iq1_pair *p, const float *xb, const float *weight, int i1, int i2, float *sqx, float *sq2) {
    memset(sqx, 0, 4 * sizeof *sqx);
    memset(sq2, 0, 4 * sizeof *sq2);
    for (int j = 0; j < 16; j++) {
        const int i = p[j].i, lv = j < i1 ? 0 : j < i2 ? 1 : 2;
        const float a = X_P[lv], b = X_M[lv];
        /* first half: shifts 0, 1 take +, 2, 3 take -; second half: 0, 2 take +, 1, 3 take - */
        const float v1 = a, v2 = b;
        const int k1 = i < 8 ? 1 : 2, k2 = i < 8 ? 2 : 1;
        sqx[0] += weight[i] * v1 * xb[i];
        sqx[k1] += weight[i] * v1 * xb[i];
        sqx[k2] += weight[i] * v2 * xb[i];
        sqx[3] += weight[i] * v2 * xb[i];
        sq2[0] += weight[i] * v1 * v1;
        sq2[k1] += weight[i] * v1 * v1;
        sq2[k2] += weight[i] * v2 * v2;
        sq2[3] += weight[i] * v2 * v2;
    }
}

/* IQ1_M sub-block of 16: the best split and shift pair (*best_k); returns the scale, -1 when
 * nothing is stored (zeros; *best_k 0). */
static float iq1m_sub(const float *xb, const float *weight, uint16_t *index, int *best_k) {
    const iq_grid *g = &GRIDS[G_IQ1S];
    float max = fabsf(xb[0]), sqx[4], sq2[4];
    iq1_pair p[16];
    int8_t L[16];
    *best_k = 0;
    for (int i = 1; i < 16; i++) max = fmaxf_ref(max, fabsf(xb[i]));
    if (max < 1e-7f) return -1;
    iq1_sort(xb, 16, p);
    float best = -FLT_MAX, scale = max;
    int b1 = -1, b2 = -1, bk = -1;
    for (int i1 = 0; i1 <= 16; i1++)
        for (int i2 = i1; i2 <= 16; i2++) {
            iq1m_sums(p, xb, weight, i1, i2, sqx, sq2);
            for (int k = 0; k < 4; k++)
                if (sq2[k] > 0 && sqx[k] * sqx[k] > best * sq2[k])
                    scale = sqx[k] / sq2[k], best = scale * sqx[k], b1 = i1, b2 = i2, bk = k;
        }
    if (b1 < 0 || b2 < 0 || bk < 0) return -1;
    iq1_levels(p, 16, b1, b2, L);
    if (scale < 0) {
        for (int j = 0; j < 16; j++) L[j] = (int8_t)(2 - L[j]);
        scale = -scale;
        bk = 3 - bk;
    }
    if (!iq1_index(g, 16, xb, weight, scale, bk, true, L, index))
        scale = iq1_refit(g, 16, xb, weight, bk, true, index, scale);
    *best_k = bk;
    return scale;
}

/* IQ1_M's block scale: the least-squares d over the stored points and 3-bit scales */
static float iq1m_fit_d(const iq_grid *g, const float *xbl, const float *qwb, float sigma2, const block_iq1_m *y,
                        const int *shifts, const int *ls, float d) {
    float sumqx = 0, sumq2 = 0, weight[16];
    for (int ib = 0; ib < 16; ib++) {
        const float *xb = xbl + 16 * ib;
        weights_of(xb, qwb ? qwb + 16 * ib : NULL, sigma2, 16, 0, 1, weight);
        for (int k = 0; k < 2; k++) {
            const float *xx = (k == 0 ? shifts[ib] < 2 : shifts[ib] % 2 == 0) ? X_P : X_M;
            const int8_t *pg = g->pos + 8 * (y->qs[2 * ib + k] + ((y->qh[ib] << (8 - 4 * k)) & 0x700));
            for (int j = 0; j < 8; j++) {
                float w = weight[8 * k + j], q = xx[(pg[j] - 1) / 2] * (2 * ls[ib] + 1);
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
    }
    return sumq2 > 0 ? sumqx / sumq2 : d;
}

static void iq1m_block(const float *xbl, block_iq1_m *y, const float *qwb) {
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    const iq_grid *g = &GRIDS[G_IQ1S];
    float scales[16], weight[16], max_scale = 0;
    int shifts[16], ls[16];
    memset(y, 0, sizeof *y);
    float sigma2 = 2 * sumsq(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < 16; ib++) {
        uint16_t index[2];
        weights_of(xbl + 16 * ib, qwb ? qwb + 16 * ib : NULL, sigma2, 16, 0, 1, weight);
        scales[ib] = iq1m_sub(xbl + 16 * ib, weight, index, &shifts[ib]);
        if (scales[ib] < 0) {
            scales[ib] = 0;
            continue;
        }
        y->qs[2 * ib] = (uint8_t)(index[0] & 255);
        y->qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
        y->qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
        max_scale = fmaxf_ref(max_scale, scales[ib]);
    }
    if (!max_scale) return;
    uint16_t sc[4] = {0, 0, 0, 0};
    float d = max_scale / 15, id = 1 / d;
    for (int ib = 0; ib < 16; ib++) {
        ls[ib] = qi_max(0, qi_min(7, qi_nearest_int(0.5f * (id * scales[ib] - 1))));
        sc[ib / 4] |= (uint16_t)(ls[ib] << 3 * (ib % 4));
        y->qh[ib] |= masks[shifts[ib]];
    }
    d = iq1m_fit_d(g, xbl, qwb, sigma2, y, shifts, ls, d);
    const uint16_t h = f32_to_fp16(d * 1.1125f);
    sc[0] |= (uint16_t)((h & 0x000f) << 12);
    sc[1] |= (uint16_t)((h & 0x00f0) << 8);
    sc[2] |= (uint16_t)((h & 0x0f00) << 4);
    sc[3] |= (uint16_t)(h & 0xf000);
    memcpy(y->scales, sc, sizeof sc);
}

void qi_iq1_m(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq1_m *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq1m_block(x, y++, qw ? qw + QK_K * i : NULL);
}
