/* resample.c — the processor's pixels (vision.h, vis_prepare): a decoded RGB image resized and
 * cut as vis_plan says, into the images the tower encodes (the tiles row by row, then the
 * thumbnail; or the one image). The resize is Pillow's Image.resize with BILINEAR, which
 * Lfm2VlImageProcessor calls: a separable triangle filter whose support widens with the
 * reduction (antialiased), half-pixel centres, weights normalised per output pixel then rounded
 * to 22-bit fixed point, the horizontal pass first into 8-bit pixels, then the vertical; a pass
 * whose size does not change is skipped (docs/VISION.md "Preprocessing" has the rule). */
#include "vision/vision.h"
#include "base/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PREC = 22 }; /* Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2 */

/* One pass's coefficients: for each output index, the first source index, the count, and ksize
 * fixed-point weights. NULL on no memory. */
typedef struct coeffs {
    int ksize;
    int *first, *count;
    int32_t *k;
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->first);
    free(c->count);
    free(c->k);
}

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static int coeffs_make(int in, int out, coeffs *c) {
    const double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale, support = fscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->first = malloc(sizeof(int) * (size_t)out);
    c->count = malloc(sizeof(int) * (size_t)out);
    c->k = calloc((size_t)out * c->ksize, sizeof(int32_t));
    double *w = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->first || !c->count || !c->k || !w) return free(w), coeffs_free(c), -1;
    for (int o = 0; o < out; o++) {
        const double centre = (o + 0.5) * scale;
        int lo = (int)(centre - support + 0.5), hi = (int)(centre + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        double sum = 0;
        for (int i = lo; i < hi; i++) sum += w[i - lo] = triangle((i - centre + 0.5) / fscale);
        for (int i = lo; i < hi; i++) {
            const double v = sum != 0.0 ? w[i - lo] / sum : w[i - lo];
            c->k[(size_t)o * c->ksize + (i - lo)] = (int32_t)(v < 0 ? -0.5 + v * (1 << PREC) : 0.5 + v * (1 << PREC));
        }
        c->first[o] = lo;
        c->count[o] = hi - lo;
    }
    free(w);
    return 0;
}

static uint8_t clip8(int64_t v) {
    v >>= PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Resamples n lines of len pixels: src pixel i of line l at src[l * lstride + i * pstride] (3
 * channels), dst alike; the output has out pixels per line. */
static void pass(const coeffs *c, const uint8_t *src, size_t s_line, size_t s_px, uint8_t *dst, size_t d_line,
                 size_t d_px, int n, int out) {
    for (int l = 0; l < n; l++)
        for (int o = 0; o < out; o++) {
            const int32_t *k = c->k + (size_t)o * c->ksize;
            int64_t acc[3] = {1 << (PREC - 1), 1 << (PREC - 1), 1 << (PREC - 1)};
            for (int i = 0; i < c->count[o]; i++) {
                const uint8_t *p = src + l * s_line + (size_t)(c->first[o] + i) * s_px;
                acc[0] += (int64_t)p[0] * k[i], acc[1] += (int64_t)p[1] * k[i], acc[2] += (int64_t)p[2] * k[i];
            }
            uint8_t *q = dst + l * d_line + (size_t)o * d_px;
            q[0] = clip8(acc[0]), q[1] = clip8(acc[1]), q[2] = clip8(acc[2]);
        }
}

int vis_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    if (sw == dw && sh == dh) return memcpy(dst, src, (size_t)sw * sh * 3), 0;
    uint8_t *tmp = NULL;
    const uint8_t *mid = src;
    if (sw != dw) { /* horizontal: sh lines of sw -> dw */
        coeffs c;
        if (coeffs_make(sw, dw, &c)) return -1;
        tmp = sh != dh ? malloc((size_t)dw * sh * 3) : NULL;
        if (sh != dh && !tmp) return coeffs_free(&c), -1;
        uint8_t *o = tmp ? tmp : dst;
        pass(&c, src, (size_t)sw * 3, 3, o, (size_t)dw * 3, 3, sh, dw);
        coeffs_free(&c);
        mid = o;
    }
    if (sh != dh) { /* vertical: dw columns of sh -> dh */
        coeffs c;
        if (coeffs_make(sh, dh, &c)) return free(tmp), -1;
        pass(&c, mid, 3, (size_t)dw * 3, dst, 3, (size_t)dw * 3, dw, dh);
        coeffs_free(&c);
    }
    free(tmp);
    return 0;
}

/* A bound on what vis_resize allocates: the horizontal pass's lines when both passes run, each
 * pass's coefficients (first, count and ksize = 2 ceil(scale) + 1 weights an output index, and
 * its ksize doubles). */
static size_t resize_bytes(int sw, int sh, int dw, int dh) {
    const size_t lines = sw != dw && sh != dh ? (size_t)dw * sh * 3 : 0;
    return lines + 28 * ((size_t)sw + sh) + 40 * ((size_t)dw + dh) + 1024;
}

size_t vis_prepared_bytes(const vis_prep_plan *pl, int tile) {
    const size_t one = (size_t)pl->w * pl->h * 3;
    if (!pl->cols) return one;
    return (size_t)pl->cols * pl->rows * tile * tile * 3 + (pl->thumbnail ? one : 0);
}

size_t vis_prepare_bytes(const vis_prep_params *p, int w, int h) {
    vis_prep_plan pl;
    if (vis_plan(p, w, h, &pl)) return 0;
    const int gw = pl.cols * p->tile, gh = pl.rows * p->tile;
    size_t n = vis_prepared_bytes(&pl, p->tile) + sizeof(vis_image) * ((size_t)pl.cols * pl.rows + 1);
    if (pl.cols) n += (size_t)gw * gh * 3 + resize_bytes(w, h, gw, gh); /* the grid's image, then cut */
    if (!pl.cols || pl.thumbnail) n += resize_bytes(w, h, pl.w, pl.h);
    return n;
}

vis_prep_params vis_prep_for(const vis_model *vm) {
    vis_prep_params p = vis_prep_default();
    p.patch = vm->hp.patch;
    p.n_merge = vm->hp.n_merge;
    p.tile = 512 * vm->hp.patch / 16; /* 256 image tokens a tile, as with the processor's patch of 16 */
    return p;
}

static int add_image(vis_prepared *o, const uint8_t *src, int sw, int sh, int w, int h) {
    vis_image *im = &o->img[o->n];
    im->rgb = malloc((size_t)w * h * 3);
    if (!im->rgb || vis_resize(src, sw, sh, im->rgb, w, h)) return -1;
    im->w = w, im->h = h;
    o->n++;
    return 0;
}

/* The tiles: the image resized to the grid, cut row by row. */
static int add_tiles(const vis_prep_params *p, const vis_image *im, vis_prepared *o) {
    const int t = p->tile, gw = o->plan.cols * t, gh = o->plan.rows * t;
    uint8_t *big = malloc((size_t)gw * gh * 3);
    if (!big || vis_resize(im->rgb, im->w, im->h, big, gw, gh)) return free(big), -1;
    for (int r = 0; r < o->plan.rows; r++)
        for (int c = 0; c < o->plan.cols; c++) {
            vis_image *ti = &o->img[o->n];
            if (!(ti->rgb = malloc((size_t)t * t * 3))) return free(big), -1;
            for (int y = 0; y < t; y++)
                memcpy(ti->rgb + (size_t)y * t * 3, big + ((size_t)(r * t + y) * gw + (size_t)c * t) * 3,
                       (size_t)t * 3);
            ti->w = ti->h = t;
            o->n++;
        }
    free(big);
    return 0;
}

int vis_prepare(const vis_prep_params *p, const vis_image *im, vis_prepared *out, lfm2c_error *err) {
    memset(out, 0, sizeof *out);
    if (!im || !im->rgb || vis_plan(p, im->w, im->h, &out->plan))
        return lfm2c_set_error(err, LFM2C_EINVAL, "an empty image"), -1;
    const int n = out->plan.cols ? out->plan.cols * out->plan.rows + out->plan.thumbnail : 1;
    out->img = calloc((size_t)n, sizeof *out->img);
    out->cap = n;
    int rc = out->img ? 0 : -1;
    if (!rc && out->plan.cols) rc = add_tiles(p, im, out);
    if (!rc && (!out->plan.cols || out->plan.thumbnail))
        rc = add_image(out, im->rgb, im->w, im->h, out->plan.w, out->plan.h);
    if (rc) {
        vis_prepared_free(out);
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory resizing a %d x %d image", im->w, im->h), -1;
    }
    return 0;
}

void vis_prepared_free(vis_prepared *pp) {
    for (int i = 0; pp->img && i < pp->cap; i++) free(pp->img[i].rgb);
    free(pp->img);
    memset(pp, 0, sizeof *pp);
}
