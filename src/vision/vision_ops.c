/* vision_ops.c — the pieces the LFM2-VL vision tower (tower.c) is made of, each computed as the
 * reference (llama.cpp's clip graph over ggml's CPU operators) computes it: layer norm with
 * the mean and variance summed in double, GELU, the antialiased bilinear resize of the learned
 * position grid to the image's patch grid, pixel unshuffle, the threaded products through the
 * CPU kernel table (its prefill tiles), and unmasked multi-head attention whose two products
 * (scores, then weights times values) go through the same table. */
#include "vision/vision.h"
#include "formats/ggml_types.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

void vis_run(threadpool *pool, threadpool_fn fn, void *arg) {
    if (pool) threadpool_run(pool, fn, arg);
    else fn(arg, 0, 1);
}

static int pool_n(const threadpool *pool) { return pool ? threadpool_size(pool) : 1; }

void vis_layer_norm(float *x, int64_t rows, int n, const float *w, const float *b, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * n;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += v[i];
        const float mean = (float)(sum / n);
        double sq = 0;
        for (int i = 0; i < n; i++) {
            v[i] -= mean;
            sq += (double)v[i] * v[i];
        }
        const float scale = 1.0f / sqrtf((float)(sq / n) + eps);
        for (int i = 0; i < n; i++) {
            float y = v[i] * scale;
            if (w) y *= w[i];
            if (b) y += b[i];
            v[i] = y;
        }
    }
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

void vis_gelu_erf(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752440f));
}

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

/* ---- products ------------------------------------------------------------------------------ */

enum { ROWS = 16 }; /* rows per claimed piece of a product */

size_t vis_act_bytes(const vis_mat *w, int nc) {
    const uint32_t at = vec_dot_type(w->type);
    return at == GGML_F32 ? 0 : ggml_row_size(at, w->n_in) * (size_t)nc;
}

typedef struct lin_job {
    const kernel_ops *k;
    const vis_mat *w;
    const float *b, *x;
    int nc;
    float *y;
    uint8_t *act;
    size_t act_row;
    atomic_int next;
} lin_job;

static void lin_quant(void *arg, int ith, int nth) {
    lin_job *j = arg;
    const uint32_t at = vec_dot_type(j->w->type);
    for (int c = ith; c < j->nc; c += nth)
        j->k->quantize_act(at, j->x + (size_t)c * j->w->n_in, j->act + (size_t)c * j->act_row, j->w->n_in);
}

static void lin_rows(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    lin_job *j = arg;
    const vis_mat *w = j->w;
    const int64_t pieces = (w->n_out + ROWS - 1) / ROWS;
    for (int64_t p; (p = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < pieces;) {
        const int64_t r0 = p * ROWS, nr = w->n_out - r0 < ROWS ? w->n_out - r0 : ROWS;
        j->k->matmul(w->type, w->n_in, w->data + (size_t)r0 * w->row_bytes, w->row_bytes, (int)nr, j->act, j->act_row,
                     j->nc, j->y + r0, (size_t)w->n_out);
        if (j->b)
            for (int c = 0; c < j->nc; c++)
                for (int64_t r = r0; r < r0 + nr; r++) j->y[(size_t)c * w->n_out + r] += j->b[r];
    }
}

void vis_linear(const kernel_ops *k, threadpool *pool, const vis_mat *w, const float *b, const float *x, int nc,
                float *y, uint8_t *act) {
    lin_job j = {.k = k, .w = w, .b = b, .x = x, .nc = nc, .y = y};
    atomic_init(&j.next, 0);
    if (vec_dot_type(w->type) == GGML_F32) {
        j.act = (uint8_t *)x;
        j.act_row = (size_t)w->n_in * sizeof(float);
    } else {
        j.act = act;
        j.act_row = ggml_row_size(vec_dot_type(w->type), w->n_in);
        vis_run(pool, lin_quant, &j);
    }
    vis_run(pool, lin_rows, &j);
}

/* ---- attention ----------------------------------------------------------------------------- */

enum { QB = 32 }; /* queries per piece */

size_t vis_attn_bytes(int n, int E, const threadpool *pool) {
    return (size_t)n * E * sizeof(float) + (size_t)pool_n(pool) * QB * n * sizeof(float);
}

typedef struct attn_job {
    const kernel_ops *k;
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
    j->k->matmul(GGML_F32, j->d, (const uint8_t *)(j->kk + h * j->d), row, j->n,
                 (const uint8_t *)(j->q + (size_t)c0 * j->E + h * j->d), row, nc, s, (size_t)j->n);
    for (int c = 0; c < nc; c++) softmax_row(s + (size_t)c * j->n, j->n, scale);
    j->k->matmul(GGML_F32, j->n, (const uint8_t *)(j->vt + (size_t)h * j->d * j->n), srow, j->d, (const uint8_t *)s,
                 srow, nc, j->out + (size_t)c0 * j->E + h * j->d, (size_t)j->E);
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

void vis_attention(const kernel_ops *k, threadpool *pool, const float *q, const float *kk, const float *v, int n, int E,
                   int n_head, float *out, uint8_t *scratch) {
    attn_job j = {.k = k, .q = q, .kk = kk, .v = v, .n = n, .E = E, .n_head = n_head, .d = E / n_head, .out = out};
    j.vt = (float *)scratch;
    j.scores = j.vt + (size_t)n * E;
    atomic_init(&j.next, 0);
    vis_run(pool, attn_transpose, &j);
    vis_run(pool, attn_work, &j);
}
