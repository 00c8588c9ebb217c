/* preprocess.c — what LFM2-VL's image processor makes of an image of W x H pixels (vision.h,
 * vis_plan): the sizes and the tile grid, by the rule of Hugging Face's Lfm2VlImageProcessor
 * (docs/VISION.md "Preprocessing" writes it down). The resampling itself is not here yet. */
#include "vision/vision.h"

#include <math.h>

vis_prep_params vis_prep_default(void) {
    return (vis_prep_params){.patch = 16,
                             .n_merge = 2,
                             .min_tokens = 64,
                             .max_tokens = 256,
                             .tile = 512,
                             .min_tiles = 2,
                             .max_tiles = 10,
                             .thumbnail = true,
                             .split = true,
                             .tolerance = 2.0};
}

/* Python's round(x / f) * f: halves to even */
static int64_t round_by(double x, int f) { return (int64_t)nearbyint(x / f) * f; }

/* The one-image size: both sides multiples of patch * n_merge, the pixels within the tokens'
 * bounds, the aspect kept as near as that allows ("smart resize"). */
static void smart_resize(const vis_prep_params *p, int64_t w, int64_t h, int *ow, int *oh) {
    const int f = p->patch * p->n_merge;
    const double min_px = (double)p->min_tokens * f * f, max_px = (double)p->max_tokens * f * f;
    int64_t hb = round_by((double)h, f), wb = round_by((double)w, f);
    hb = hb > f ? hb : f;
    wb = wb > f ? wb : f;
    if ((double)hb * wb > max_px) {
        const double beta = sqrt((double)h * w / max_px);
        hb = (int64_t)floor((double)h / beta / f) * f;
        wb = (int64_t)floor((double)w / beta / f) * f;
        hb = hb > f ? hb : f;
        wb = wb > f ? wb : f;
    } else if ((double)hb * wb < min_px) {
        const double beta = sqrt(min_px / ((double)h * w));
        hb = (int64_t)ceil((double)h * beta / f) * f;
        wb = (int64_t)ceil((double)w * beta / f) * f;
    }
    *ow = (int)wb;
    *oh = (int)hb;
}

static bool too_large(const vis_prep_params *p, int64_t w, int64_t h) {
    const int f = p->patch * p->n_merge;
    int64_t hb = round_by((double)h, f), wb = round_by((double)w, f);
    hb = hb > p->patch ? hb : p->patch;
    wb = wb > p->patch ? wb : p->patch;
    return (double)hb * wb > (double)p->max_tokens * f * f * p->tolerance;
}

/* The grid (cols x rows, min_tiles <= cols * rows <= max_tiles) nearest the image's aspect;
 * candidates by area, first found wins a tie unless a larger one's area is under twice the
 * image's. */
static void grid_for(const vis_prep_params *p, int64_t w, int64_t h, int *cols, int *rows) {
    const double aspect = (double)w / (double)h, area = (double)w * h;
    double best = INFINITY;
    *cols = *rows = 1;
    for (int a = p->min_tiles; a <= p->max_tiles; a++) /* by area; within one, by width */
        for (int c = 1; c <= a; c++) {
            if (a % c) continue;
            const int r = a / c;
            const double diff = fabs(aspect - (double)c / r);
            if (diff < best) {
                best = diff;
                *cols = c, *rows = r;
            } else if (diff == best && area > 0.5 * (double)p->tile * p->tile * c * r) {
                *cols = c, *rows = r;
            }
        }
}

int vis_plan(const vis_prep_params *p, int w, int h, vis_prep_plan *out) {
    if (w <= 0 || h <= 0) return -1;
    *out = (vis_prep_plan){0};
    smart_resize(p, w, h, &out->w, &out->h);
    const int f = p->patch * p->n_merge;
    out->tokens = (out->w / f) * (out->h / f);
    if (p->split && !(p->min_tiles == 1 && p->max_tiles == 1) && too_large(p, w, h)) {
        grid_for(p, w, h, &out->cols, &out->rows);
        out->thumbnail = p->thumbnail && out->cols * out->rows != 1;
        const int per_tile = (p->tile / f) * (p->tile / f);
        out->tokens = out->cols * out->rows * per_tile + (out->thumbnail ? out->tokens : 0);
    }
    return 0;
}
