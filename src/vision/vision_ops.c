/* vision_ops.c — the pieces the LFM2-VL vision tower (tower.c) is made of, each computed as the
 * reference (llama.cpp's clip graph over ggml's CPU operators) computes it: layer norm with
 * the mean and variance summed in double, GELU, the antialiased bilinear resize of the learned
 * position grid to the image's patch grid, pixel unshuffle, and unmasked multi-head attention
 * whose two products (scores, then weights times values) go through the backend's encoder
 * table (core/encoder.h), as the tower's other products do. */
#include "vision/vision.h"
#include "formats/ggml_types.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

void vis_run(threadpool *pool, threadpool_fn fn, void *arg) { enc_run(pool, fn, arg); }

static int pool_n(const threadpool *pool) { return pool ? threadpool_size(pool) : 1; }

void vis_layer_norm(float *x, int64_t rows, int n, const float *w, const float *b, float eps) {
    enc_layer_norm(x, rows, n, w, b, eps);
}

static float gelu_tanh1(float v) {
    const float c = 0.79788456080286535587989211986876f; /* sqrt(2 / pi) */
    return 0.5f * v * (1.0f + tanhf(c * v * (1.0f + 0.044715f * v * v)));
}

void vis_gelu_tanh(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = gelu_tanh1(x[i]);
}

/* ggml's CPU GELU: the tanh form looked up in F16 (the input rounded to F16, the result too)
 * inside (-10, 10), x above, 0 below. */
void vis_gelu_ggml(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (v <= -10.0f) x[i] = 0;
        else if (v < 10.0f) x[i] = fp16_to_f32(f32_to_fp16(gelu_tanh1(fp16_to_f32(f32_to_fp16(v)))));
    }
}

void vis_gelu_erf(float *x, int64_t n) { enc_gelu_erf(x, n); }

static float tri(float x) {
    x = 1.0f - fabsf(x);
    return x > 0 ? x : 0;
}

/* The source range and weights of output cell i along one axis: src (n_src cells) to n_dst. */
typedef struct axis_w {
    int64_t lo, hi;
    float centre, inv, off;
} axis_w;

static axis_w axis_for(int i, int n_src, int n_dst) {
    const float sf = (float)n_dst / (float)n_src, support = fmaxf(1.0f, 1.0f / sf), off = 0.5f;
    axis_w a = {.centre = ((float)i + off) / sf, .inv = 1.0f / support, .off = off};
    a.lo = (int64_t)(a.centre - support + off);
    a.hi = (int64_t)(a.centre + support + off);
    if (a.lo < 0) a.lo = 0;
    if (a.hi > n_src) a.hi = n_src;
    return a;
}

void vis_pos_resize(const float *pos, int side, int n, int w, int h, float *out) {
    if (w == side && h == side) {
        memcpy(out, pos, (size_t)side * side * n * sizeof *out);
        return;
    }
    for (int y = 0; y < h; y++) {
        const axis_w ay = axis_for(y, side, h);
        for (int x = 0; x < w; x++) {
            const axis_w ax = axis_for(x, side, w);
            float *o = out + ((size_t)y * w + x) * n;
            for (int c = 0; c < n; c++) {
                float val = 0, total = 0;
                for (int64_t sy = ay.lo; sy < ay.hi; sy++) {
                    const float wy = tri(((float)sy - ay.centre + ay.off) * ay.inv);
                    for (int64_t sx = ax.lo; sx < ax.hi; sx++) {
                        const float wgt = tri(((float)sx - ax.centre + ax.off) * ax.inv) * wy;
                        if (wgt <= 0) continue;
                        val += pos[((size_t)sy * side + (size_t)sx) * n + c] * wgt;
                        total += wgt;
                    }
                }
                o[c] = total > 0 ? val / total : val;
            }
        }
    }
}

void vis_unshuffle(const float *x, int gw, int gh, int n, int f, float *out) {
    const int ow = (gw + f - 1) / f, oh = (gh + f - 1) / f;
    for (int Y = 0; Y < oh; Y++)
        for (int X = 0; X < ow; X++) {
            float *o = out + ((size_t)Y * ow + X) * f * f * n;
            for (int dy = 0; dy < f; dy++)
                for (int dx = 0; dx < f; dx++, o += n) {
                    const int sy = Y * f + dy, sx = X * f + dx;
                    if (sy < gh && sx < gw) memcpy(o, x + ((size_t)sy * gw + sx) * n, (size_t)n * sizeof *o);
                    else memset(o, 0, (size_t)n * sizeof *o);
                }
        }
}

/* ---- attention ----------------------------------------------------------------------------- */

enum { QB = 32 }; /* queries per piece */

size_t vis_attn_bytes(int n, int E, const threadpool *pool) {
    return (size_t)n * E * sizeof(float) + (size_t)pool_n(pool) * QB * n * sizeof(float);
}

typedef struct attn_job {
    const encoder_ops *e;
    const float *q, *kk, *v;
    int n, E, n_head, d;
    float *out, *vt, *scores; /* vt: per head d rows of n values; scores: QB x n per index */
    atomic_int next;
} attn_job;

static void attn_transpose(void *arg, int ith, int nth) {
    attn_job *j = arg;
    for (int h = ith; h < j->n_head; h += nth)
        for (int i = 0; i < j->d; i++) {
            float *row = j->vt + ((size_t)h * j->d + i) * j->n;
            for (int r = 0; r < j->n; r++) row[r] = j->v[(size_t)r * j->E + h * j->d + i];
        }
}

/* softmax(s * scale) of one row of n scores, in place (the sum in double) */
static void softmax_row(float *s, int n, float scale) {
    float mx = -INFINITY;
    for (int r = 0; r < n; r++) mx = fmaxf(mx, s[r] * scale);
    double sum = 0;
    for (int r = 0; r < n; r++) {
        s[r] = expf(s[r] * scale - mx);
        sum += s[r];
    }
    const float inv = (float)(1.0 / sum);
    for (int r = 0; r < n; r++) s[r] *= inv;
}

static void attn_piece(attn_job *j, int h, int c0, int nc, float *s) {
    const size_t row = (size_t)j->E * sizeof(float), srow = (size_t)j->n * sizeof(float);
    const float scale = 1.0f / sqrtf((float)j->d);
    j->e->matmul_f32(j->d, j->kk + h * j->d, row, j->n, j->q + (size_t)c0 * j->E + h * j->d, row, nc, s, (size_t)j->n);
    for (int c = 0; c < nc; c++) softmax_row(s + (size_t)c * j->n, j->n, scale);
    j->e->matmul_f32(j->n, j->vt + (size_t)h * j->d * j->n, srow, j->d, s, srow, nc,
                     j->out + (size_t)c0 * j->E + h * j->d, (size_t)j->E);
}

static void attn_work(void *arg, int ith, int nth) {
    (void)nth;
    attn_job *j = arg;
    float *s = j->scores + (size_t)ith * QB * j->n;
    const int per_head = (j->n + QB - 1) / QB, pieces = per_head * j->n_head;
    for (int p; (p = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < pieces;) {
        const int h = p / per_head, c0 = p % per_head * QB;
        attn_piece(j, h, c0, j->n - c0 < QB ? j->n - c0 : QB, s);
    }
}

void vis_attention(const encoder_ops *enc, threadpool *pool, const float *q, const float *kk, const float *v, int n,
                   int E, int n_head, float *out, uint8_t *scratch) {
    attn_job j = {.e = enc, .q = q, .kk = kk, .v = v, .n = n, .E = E, .n_head = n_head, .d = E / n_head, .out = out};
    j.vt = (float *)scratch;
    j.scores = j.vt + (size_t)n * E;
    atomic_init(&j.next, 0);
    vis_run(pool, attn_transpose, &j);
    vis_run(pool, attn_work, &j);
}
