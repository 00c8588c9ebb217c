/* tower.c — one image through the LFM2-VL encoder (vision.h), in the reference's order: the
 * patch embedding (a p x p stride-p convolution: each patch's 3 p^2 pixels times the kernel,
 * plus its bias), the learned position grid resized to the image's patch grid and added, the
 * pre-norm ViT blocks (layer norm, q / k / v, full attention, output, residual; layer norm,
 * up, tanh GELU, down, residual), the post layer norm, pixel unshuffle by the scale factor, and
 * the projector (layer norm with eps 1e-5 when the file has one, linear, erf GELU as the
 * model's projector_hidden_act "gelu", linear). The products run on the backend's encoder
 * table (core/encoder.h) over the pool; the elementwise steps are split over it by rows. */
#include "vision/vision.h"
#include "base/error.h"
#include "formats/ggml_types.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int vis_n_tokens(const vis_model *vm, int w, int h) {
    const int f = vm->hp.n_merge, gw = w / vm->hp.patch, gh = h / vm->hp.patch;
    return ((gw + f - 1) / f) * ((gh + f - 1) / f);
}

void vis_normalize(const vis_model *vm, const uint8_t *rgb, int w, int h, float *planes) {
    const size_t n = (size_t)w * h;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < n; i++)
            planes[c * n + i] = ((float)rgb[3 * i + c] / 255.0f - vm->hp.mean[c]) / vm->hp.stdev[c];
}

/* ---- the elementwise steps, split by rows ---------------------------------------------------- */

enum { OP_NORM, OP_GELU, OP_ADD };

typedef struct rows_job {
    int op;
    float *x;
    const float *y, *w, *b; /* OP_ADD: x += y; OP_NORM: weight and bias */
    int64_t rows;
    int n;
    float eps;
} rows_job;

static void rows_work(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    const int64_t r0 = j->rows * ith / nth, r1 = j->rows * (ith + 1) / nth;
    float *x = j->x + r0 * j->n;
    const int64_t cnt = (r1 - r0) * j->n;
    switch (j->op) {
    case OP_NORM: vis_layer_norm(x, r1 - r0, j->n, j->w, j->b, j->eps); break;
    case OP_GELU: vis_gelu_ggml(x, cnt); break;
    default:
        for (int64_t i = 0; i < cnt; i++) x[i] += j->y[r0 * j->n + i];
    }
}

static void rows_op(threadpool *pool, int op, float *x, const float *y, int64_t rows, int n) {
    rows_job j = {.op = op, .x = x, .y = y, .rows = rows, .n = n};
    vis_run(pool, rows_work, &j);
}

static void norm_rows(threadpool *pool, float *x, int64_t rows, int n, const float *w, const float *b, float eps) {
    rows_job j = {.op = OP_NORM, .x = x, .w = w, .b = b, .rows = rows, .n = n, .eps = eps};
    vis_run(pool, rows_work, &j);
}

/* ---- the encoder's buffers ------------------------------------------------------------------- */

typedef struct enc {
    const vis_model *vm;
    threadpool *pool;
    int n, gw, gh, nt; /* patches, the patch grid, tokens after the unshuffle */
    float *x, *h, *q, *k, *v, *a, *ff, *merged, *mid;
    uint8_t *act, *attn;
} enc;

static size_t max_act(const vis_model *vm, size_t need, const vis_mat *w, int nc) {
    const size_t b = vm->enc->act_bytes(w, nc);
    return b > need ? b : need;
}

/* The activation scratch the largest quantized input of any product needs. */
static size_t act_need(const vis_model *vm, int n, int nt) {
    size_t need = max_act(vm, max_act(vm, max_act(vm, 0, &vm->patch_w, n), &vm->mm1, nt), &vm->mm2, nt);
    for (int l = 0; l < vm->hp.n_layer; l++) {
        const vis_layer *L = &vm->layers[l];
        const vis_mat *m[] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->down};
        for (size_t i = 0; i < sizeof m / sizeof *m; i++) need = max_act(vm, need, m[i], n);
    }
    return need;
}

static void enc_free(enc *e) {
    float *f[] = {e->x, e->h, e->q, e->k, e->v, e->a, e->ff, e->merged, e->mid};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
    free(e->act);
    free(e->attn);
}

/* The bytes of each of the encoder's buffers, in enc's order (x h q k v a ff merged mid act attn). */
enum { ENC_BUFS = 11 };
static void enc_sizes(const vis_model *vm, const threadpool *pool, int n_, int nt_, size_t sz[ENC_BUFS]) {
    const vis_hparams *hp = &vm->hp;
    const size_t n = (size_t)n_, E = (size_t)hp->n_embd, P3 = 3 * (size_t)hp->patch * hp->patch;
    const size_t f2 = (size_t)hp->n_merge * hp->n_merge, nt = (size_t)nt_, F = sizeof(float);
    sz[0] = sz[2] = sz[3] = sz[4] = sz[5] = n * E * F;
    sz[1] = n * (E > P3 ? E : P3) * F;
    sz[6] = n * (size_t)hp->n_ff * F;
    sz[7] = nt * f2 * E * F;
    sz[8] = nt * (size_t)hp->mm_hidden * F;
    sz[9] = act_need(vm, n_, nt_) + 64;
    sz[10] = vis_attn_bytes(n_, (int)E, pool);
}

size_t vis_encode_bytes(const vis_model *vm, const threadpool *pool, int w, int h) {
    const int P = vm->hp.patch;
    size_t sz[ENC_BUFS], n = (size_t)w * h * 3 * sizeof(float); /* the planes */
    enc_sizes(vm, pool, (w / P) * (h / P), vis_n_tokens(vm, w, h), sz);
    for (int i = 0; i < ENC_BUFS; i++) n += sz[i];
    return n;
}

static int enc_alloc(enc *e, lfm2c_error *err) {
    size_t sz[ENC_BUFS];
    enc_sizes(e->vm, e->pool, e->n, e->nt, sz);
    float **f[] = {&e->x, &e->h, &e->q, &e->k, &e->v, &e->a, &e->ff, &e->merged, &e->mid};
    bool ok = true;
    for (int i = 0; i < 9; i++) ok &= (*f[i] = malloc(sz[i])) != NULL;
    ok &= (e->act = malloc(sz[9])) != NULL;
    ok &= (e->attn = malloc(sz[10])) != NULL;
    if (!ok) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory encoding a %d x %d patch image", e->gw, e->gh);
        return -1;
    }
    return 0;
}

/* ---- the steps ------------------------------------------------------------------------------- */

/* Each patch's pixels as one row of 3 p^2 values in the kernel's (channel, y, x) order. */
static void patch_rows(const enc *e, const float *planes, float *out) {
    const int P = e->vm->hp.patch, w = e->gw * P;
    const size_t plane = (size_t)w * e->gh * P, P3 = 3 * (size_t)P * P;
    for (int py = 0; py < e->gh; py++)
        for (int px = 0; px < e->gw; px++) {
            float *o = out + ((size_t)py * e->gw + px) * P3;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(o + ((size_t)c * P + ky) * P,
                           planes + c * plane + ((size_t)py * P + ky) * w + (size_t)px * P, (size_t)P * sizeof(float));
        }
}

static void embed(enc *e, const float *planes) {
    const vis_model *vm = e->vm;
    patch_rows(e, planes, e->h);
    vm->enc->linear(e->pool, &vm->patch_w, vm->patch_b, e->h, e->n, e->x, e->act);
    vis_pos_resize(vm->pos, vm->hp.pos_side, vm->hp.n_embd, e->gw, e->gh, e->a);
    rows_op(e->pool, OP_ADD, e->x, e->a, e->n, vm->hp.n_embd);
}

/* One pre-norm block: x += attn(ln1(x)); x += mlp(ln2(x)). */
static void block(enc *e, const vis_layer *L) {
    const vis_model *vm = e->vm;
    const int E = vm->hp.n_embd;
    const encoder_ops *k = vm->enc;
    memcpy(e->h, e->x, (size_t)e->n * E * sizeof(float));
    norm_rows(e->pool, e->h, e->n, E, L->ln1_w, L->ln1_b, vm->hp.eps);
    k->linear(e->pool, &L->q, L->q_b, e->h, e->n, e->q, e->act);
    k->linear(e->pool, &L->k, L->k_b, e->h, e->n, e->k, e->act);
    k->linear(e->pool, &L->v, L->v_b, e->h, e->n, e->v, e->act);
    vis_attention(k, e->pool, e->q, e->k, e->v, e->n, E, vm->hp.n_head, e->a, e->attn);
    k->linear(e->pool, &L->o, L->o_b, e->a, e->n, e->h, e->act);
    rows_op(e->pool, OP_ADD, e->x, e->h, e->n, E);
    memcpy(e->h, e->x, (size_t)e->n * E * sizeof(float));
    norm_rows(e->pool, e->h, e->n, E, L->ln2_w, L->ln2_b, vm->hp.eps);
    k->linear(e->pool, &L->up, L->up_b, e->h, e->n, e->ff, e->act);
    rows_op(e->pool, OP_GELU, e->ff, NULL, e->n, vm->hp.n_ff);
    k->linear(e->pool, &L->down, L->down_b, e->ff, e->n, e->h, e->act);
    rows_op(e->pool, OP_ADD, e->x, e->h, e->n, E);
}

static void project(enc *e, float *out) {
    const vis_model *vm = e->vm;
    const int f = vm->hp.n_merge, width = vm->hp.n_embd * f * f;
    vis_unshuffle(e->x, e->gw, e->gh, vm->hp.n_embd, f, e->merged);
    if (vm->mm_norm_w) norm_rows(e->pool, e->merged, e->nt, width, vm->mm_norm_w, vm->mm_norm_b, 1e-5f);
    vm->enc->linear(e->pool, &vm->mm1, vm->mm1_b, e->merged, e->nt, e->mid, e->act);
    rows_op(e->pool, OP_GELU, e->mid, NULL, e->nt, vm->hp.mm_hidden);
    vm->enc->linear(e->pool, &vm->mm2, vm->mm2_b, e->mid, e->nt, out, e->act);
}

int vis_encode(const vis_model *vm, threadpool *pool, const float *planes, int w, int h, float *out, lfm2c_error *err) {
    const int P = vm->hp.patch;
    if (w <= 0 || h <= 0 || w % P || h % P) {
        lfm2c_set_error(err, LFM2C_EINVAL, "image of %d x %d pixels: each side must be a positive multiple of %d", w, h,
                        P);
        return -1;
    }
    enc e = {.vm = vm, .pool = pool, .gw = w / P, .gh = h / P};
    e.n = e.gw * e.gh;
    e.nt = vis_n_tokens(vm, w, h);
    if (e.nt > vm->hp.max_tokens) {
        lfm2c_set_error(err, LFM2C_EINVAL, "image of %d x %d pixels makes %d image tokens, more than %d", w, h, e.nt,
                        vm->hp.max_tokens);
        return -1;
    }
    int rc = enc_alloc(&e, err);
    if (!rc) {
        embed(&e, planes);
        for (int l = 0; l < vm->hp.n_layer; l++) block(&e, &vm->layers[l]);
        norm_rows(pool, e.x, e.n, vm->hp.n_embd, vm->post_w, vm->post_b, vm->hp.eps);
        project(&e, out);
    }
    enc_free(&e);
    return rc;
}
