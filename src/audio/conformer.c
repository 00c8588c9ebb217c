/* conformer.c — one clip's mel features through the LFM2-Audio encoder (audio.h), in the order
 * of llama.cpp's clip graph for lfm2a (conformer.cpp), which is NeMo's FastConformer:
 * 1. subsampling on the (time, mel) plane: a 3x3 stride-2 convolution from one channel to C,
 *    ReLU, then twice a depthwise 3x3 stride-2 and a pointwise 1x1 convolution (each padded by
 *    1, biased), ReLU after each pair; each time step's C x mel/8 values flattened channel by
 *    channel (index c * W + x) and projected to the width E;
 * 2. per block (macaron): x += 0.5 ffn(ln(x)) (SiLU); x += attention(ln(x)); x += conv(ln(x));
 *    x += 0.5 ffn2(ln(x)); x = ln(x). The attention is Transformer-XL's relative one: scores
 *    ((q + u) . k + (q + v) . p(i - j)) / sqrt(d), p the sinusoidal table of the relative
 *    positions T-1 .. -(T-1) (sin on even, cos on odd channels, 10000^(-2i/E), the angle rounded
 *    to float as llama.cpp sets it) through linear_pos, softmax over keys, times the values,
 *    then the output projection. The convolution module: pointwise E -> 2E, GLU (the first half
 *    times the sigmoid of the second), a depthwise convolution over time with K taps (zeros
 *    (K-1)/2 on each side), the folded batch norm (scale, shift), SiLU, pointwise E -> E;
 * 3. the adapter: layer norm, linear, erf GELU, linear, into the language model's width.
 * Layer norms use eps 1e-5 as the graph does. Products run on the backend's encoder table over
 * the pool; the convolutions and elementwise steps are split over it by rows. */
#include "audio/audio.h"
#include "base/error.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int aud_n_tokens(int n_frames) { return (((n_frames + 1) / 2 + 1) / 2 + 1) / 2; }

static int half_up(int x) { return (x + 1) / 2; }

/* ---- buffers --------------------------------------------------------------------------------- */

enum { QB = 32 }; /* queries per attention piece */

/* A thread's attention scratch: QB x T scores, QB x (T + QB) relative-position scores, QB x 2d
 * biased queries, d x T values (one head's, transposed). */
static size_t att_floats(int T, int d) {
    return (size_t)QB * T + (size_t)QB * (T + QB) + (size_t)QB * 2 * d + (size_t)d * T;
}

typedef struct aenc {
    const aud_model *am;
    threadpool *pool;
    int T0, W0, H1, W1, H2, W2, H3, W3, T; /* mel frames, bins; the planes after each stride */
    float *plane, *p1, *p2;                /* the mel plane by time; the subsampling's: rows of C */
    float *x, *h, *q, *k, *v, *a, *g, *ff, *pe, *pp, *mid;
    float *scores; /* per thread: QB x (T + QB) scores, QB x E of biased queries, d x T values */
    uint8_t *act;
    int nth;
} aenc;

static void aenc_free(aenc *e) {
    float *f[] = {e->plane, e->p1, e->p2, e->x,  e->h,  e->q,   e->k,     e->v,
                  e->a,     e->g,  e->ff, e->pe, e->pp, e->mid, e->scores};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
    free(e->act);
}

static size_t act_max(const aenc *e, size_t need, const enc_mat *w, int nc) {
    const size_t b = e->am->enc->act_bytes(w, nc);
    return b > need ? b : need;
}

static size_t act_need(const aenc *e) {
    const aud_model *am = e->am;
    size_t need = act_max(e, act_max(e, 0, &am->c3, e->H2 * e->W2), &am->c6, e->H3 * e->W3);
    need = act_max(e, act_max(e, act_max(e, need, &am->pre_out, e->T), &am->mm1, e->T), &am->mm3, e->T);
    for (int l = 0; l < am->hp.n_layer; l++) {
        const aud_layer *L = &am->layers[l];
        const enc_mat *m[] = {&L->ff1_up, &L->ff1_down, &L->q,   &L->k,      &L->v,       &L->o,
                              &L->pos,    &L->pw1,      &L->pw2, &L->ff2_up, &L->ff2_down};
        for (size_t i = 0; i < sizeof m / sizeof *m; i++)
            need = act_max(e, need, m[i], m[i] == &L->pos ? 2 * e->T : e->T);
    }
    return need;
}

static int aenc_alloc(aenc *e, lfm2c_error *err) {
    const aud_hparams *hp = &e->am->hp;
    const size_t T = (size_t)e->T, E = (size_t)hp->n_embd, C = (size_t)hp->sub_ch, d = E / (size_t)hp->n_head;
    const size_t F = (size_t)(hp->n_ff > 2 * hp->n_embd ? hp->n_ff : 2 * hp->n_embd), P = 2 * T - 1;
    const size_t wide = (size_t)(C * e->W3 > E ? C * e->W3 : E);
    e->plane = malloc((size_t)e->T0 * e->W0 * sizeof(float));
    e->p1 = malloc((size_t)e->H1 * e->W1 * C * sizeof(float));
    e->p2 = malloc((size_t)e->H2 * e->W2 * C * sizeof(float));
    e->x = malloc(T * wide * sizeof(float));
    e->h = malloc(T * wide * sizeof(float));
    e->q = malloc(T * E * sizeof(float)), e->k = malloc(T * E * sizeof(float));
    e->v = malloc(T * E * sizeof(float)), e->a = malloc(T * E * sizeof(float));
    e->g = malloc(T * 2 * E * sizeof(float));
    e->ff = malloc(T * F * sizeof(float));
    e->pe = malloc(P * E * sizeof(float)), e->pp = malloc(P * E * sizeof(float));
    e->mid = malloc(T * (size_t)(hp->mm_hidden > hp->proj_dim ? hp->mm_hidden : hp->proj_dim) * sizeof(float));
    e->scores = malloc((size_t)e->nth * att_floats(e->T, (int)d) * sizeof(float));
    e->act = malloc(act_need(e) + 64);
    if (!e->plane || !e->p1 || !e->p2 || !e->x || !e->h || !e->q || !e->k || !e->v || !e->a || !e->g || !e->ff ||
        !e->pe || !e->pp || !e->mid || !e->scores || !e->act) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory encoding %d mel frames", e->T0);
        return -1;
    }
    return 0;
}

size_t aud_encode_bytes(const aud_model *am, int n_frames, int n_threads) {
    const aud_hparams *hp = &am->hp;
    const size_t T = (size_t)aud_n_tokens(n_frames), E = (size_t)hp->n_embd, C = (size_t)hp->sub_ch,
                 d = E / (size_t)hp->n_head, F = (size_t)(hp->n_ff > 2 * hp->n_embd ? hp->n_ff : 2 * hp->n_embd);
    const size_t H1 = (size_t)half_up(n_frames), W1 = (size_t)half_up(hp->n_mel), H2 = (H1 + 1) / 2, W2 = (W1 + 1) / 2;
    const size_t W3 = (W2 + 1) / 2, wide = C * W3 > E ? C * W3 : E,
                 M = (size_t)(hp->mm_hidden > hp->proj_dim ? hp->mm_hidden : hp->proj_dim);
    const size_t floats = (size_t)n_frames * hp->n_mel + H1 * W1 * C + H2 * W2 * C + 2 * T * wide + 4 * T * E +
                          2 * T * E + T * F + 2 * (2 * T) * E + T * M +
                          (size_t)(n_threads > 0 ? n_threads : 1) * att_floats((int)T, (int)d);
    return floats * sizeof(float) + (2 * T + H2 * W2) * (wide > F ? wide : F) * 2; /* + the quantized activations */
}

/* ---- the subsampling ------------------------------------------------------------------------- */

typedef struct conv_job {
    const aenc *e;
    const float *in, *w, *b; /* in: rows of cin channels on an hi x wi plane */
    float *out;              /* ho x wo rows of C */
    int hi, wi, ho, wo;
    bool first; /* the one-channel input (the mel plane itself, in[y * wi + x]) */
} conv_job;

/* 3x3, stride 2, padding 1: the first convolution (1 -> C) or a depthwise one (C -> C), then
 * the bias; output rows split by time over the pool. */
static void conv3_rows(void *arg, int ith, int nth) {
    const conv_job *j = arg;
    const int C = j->e->am->hp.sub_ch;
    for (int y = j->ho * ith / nth; y < j->ho * (ith + 1) / nth; y++)
        for (int x = 0; x < j->wo; x++)
            for (int c = 0; c < C; c++) {
                float sum = 0;
                for (int ky = 0; ky < 3; ky++) {
                    const int sy = 2 * y + ky - 1;
                    if (sy < 0 || sy >= j->hi) continue;
                    for (int kx = 0; kx < 3; kx++) {
                        const int sx = 2 * x + kx - 1;
                        if (sx < 0 || sx >= j->wi) continue;
                        const float v =
                            j->first ? j->in[(size_t)sy * j->wi + sx] : j->in[((size_t)sy * j->wi + sx) * C + c];
                        sum += j->w[c * 9 + ky * 3 + kx] * v;
                    }
                }
                j->out[((size_t)y * j->wo + x) * C + c] = sum + j->b[c];
            }
}

static void relu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
}

static void conv3(aenc *e, const float *in, int hi, int wi, const float *w, const float *b, float *out, bool first) {
    conv_job j = {e, in, w, b, out, hi, wi, half_up(hi), half_up(wi), first};
    enc_run(e->pool, conv3_rows, &j);
}

/* The mel plane (n_mel rows of T0 frames) -> T rows of E. */
static void subsample(aenc *e, const float *mel) {
    const aud_model *am = e->am;
    const int C = am->hp.sub_ch;
    float *plane = e->plane; /* transposed: time rows of mel bins */
    for (int t = 0; t < e->T0; t++)
        for (int m = 0; m < e->W0; m++) plane[(size_t)t * e->W0 + m] = mel[(size_t)m * e->T0 + t];
    conv3(e, plane, e->T0, e->W0, am->c0_w, am->c0_b, e->p1, true);
    relu(e->p1, (size_t)e->H1 * e->W1 * C);
    conv3(e, e->p1, e->H1, e->W1, am->c2_w, am->c2_b, e->p2, false);
    am->enc->linear(e->pool, &am->c3, am->c3_b, e->p2, e->H2 * e->W2, e->p1, e->act);
    relu(e->p1, (size_t)e->H2 * e->W2 * C);
    conv3(e, e->p1, e->H2, e->W2, am->c5_w, am->c5_b, e->p2, false);
    am->enc->linear(e->pool, &am->c6, am->c6_b, e->p2, e->H3 * e->W3, e->p1, e->act);
    relu(e->p1, (size_t)e->H3 * e->W3 * C);
    for (int t = 0; t < e->T; t++) /* channel by channel: index c * W3 + x */
        for (int c = 0; c < C; c++)
            for (int x = 0; x < e->W3; x++)
                e->h[(size_t)t * C * e->W3 + (size_t)c * e->W3 + x] = e->p1[((size_t)t * e->W3 + x) * C + c];
    am->enc->linear(e->pool, &am->pre_out, am->pre_out_b, e->h, e->T, e->x, e->act);
}

/* ---- elementwise ------------------------------------------------------------------------------ */

static float silu1(float v) { return v / (1.0f + expf(-v)); }

/* x += s * y over n values */
static void add_scaled(float *x, const float *y, size_t n, float s) {
    if (s == 1.0f)
        for (size_t i = 0; i < n; i++) x[i] += y[i];
    else
        for (size_t i = 0; i < n; i++) x[i] += y[i] * s;
}

/* h = ln(x) with the block's norm */
static void norm_into(const aenc *e, float *h, const float *x, const float *w, const float *b) {
    const int E = e->am->hp.n_embd;
    memcpy(h, x, (size_t)e->T * E * sizeof(float));
    enc_layer_norm(h, e->T, E, w, b, 1e-5f);
}

/* x += s * down(silu(up(ln(x)))) */
static void ffn(aenc *e, const float *nw, const float *nb, const enc_mat *up, const float *ub, const enc_mat *down,
                const float *db, float s) {
    const encoder_ops *k = e->am->enc;
    const int E = e->am->hp.n_embd;
    norm_into(e, e->h, e->x, nw, nb);
    k->linear(e->pool, up, ub, e->h, e->T, e->ff, e->act);
    for (size_t i = 0, n = (size_t)e->T * up->n_out; i < n; i++) e->ff[i] = silu1(e->ff[i]);
    k->linear(e->pool, down, db, e->ff, e->T, e->h, e->act);
    add_scaled(e->x, e->h, (size_t)e->T * E, s);
}

/* ---- relative-position attention ------------------------------------------------------------- */

/* The sinusoidal table of relative positions T-1 .. -(T-1): row p is position T-1-p. */
static void pos_table(float *pe, int T, int E) {
    for (int i = 0; i < E / 2; i++) {
        const double inv = exp(-(log(10000.0) / (float)E) * (2.0f * (float)i));
        for (int p = 0; p < 2 * T - 1; p++) {
            const float ang = (float)((T - p - 1) * inv);
            pe[(size_t)p * E + 2 * i] = sinf(ang);
            pe[(size_t)p * E + 2 * i + 1] = cosf(ang);
        }
    }
}

typedef struct att_job {
    const aenc *e;
    const aud_layer *L;
    int H, d;
    atomic_int next;
} att_job;

static void softmax_row(float *s, int n) { /* ggml's soft_max: exp(x - max), the sum in double */
    float mx = -INFINITY;
    for (int r = 0; r < n; r++) mx = fmaxf(mx, s[r]);
    double sum = 0;
    for (int r = 0; r < n; r++) sum += (s[r] = expf(s[r] - mx));
    const float inv = (float)(1.0 / sum);
    for (int r = 0; r < n; r++) s[r] *= inv;
}

/* Queries q0 .. q0+nq of head h: the scores, their softmax, times the values (vt: d rows of T). */
static void att_piece(const att_job *j, int h, int q0, int nq, float *sc, float *bd, float *qb, const float *vt) {
    const aenc *e = j->e;
    const int T = e->T, E = e->am->hp.n_embd, d = j->d, nb = T + nq - 1, p0 = T - q0 - nq;
    const encoder_ops *k = e->am->enc;
    const size_t row = (size_t)E * sizeof(float), drow = (size_t)d * sizeof(float);
    float *qu = qb, *qv = qb + (size_t)QB * d;
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < d; c++) {
            const float q = e->q[(size_t)(q0 + i) * E + h * d + c];
            qu[(size_t)i * d + c] = q + j->L->pos_u[h * d + c];
            qv[(size_t)i * d + c] = q + j->L->pos_v[h * d + c];
        }
    k->matmul_f32(d, e->k + h * d, row, T, qu, drow, nq, sc, (size_t)T);
    k->matmul_f32(d, e->pp + (size_t)p0 * E + h * d, row, nb, qv, drow, nq, bd, (size_t)nb);
    const float scale = (float)(1.0 / sqrt((double)d)); /* llama.cpp: 1.0f / std::sqrt(int) */
    for (int i = 0; i < nq; i++) {
        float *s = sc + (size_t)i * T;
        const float *b = bd + (size_t)i * nb + (nq - 1 - i); /* relative position q - key */
        for (int key = 0; key < T; key++) s[key] = (s[key] + b[key]) * scale;
        softmax_row(s, T);
    }
    k->matmul_f32(T, vt, (size_t)T * sizeof(float), d, sc, (size_t)T * sizeof(float), nq, e->a + (size_t)q0 * E + h * d,
                  (size_t)E);
}

static void att_work(void *arg, int ith, int nth) {
    (void)nth;
    att_job *j = arg;
    const aenc *e = j->e;
    const int T = e->T, E = e->am->hp.n_embd, d = j->d;
    float *sc = e->scores + (size_t)ith * att_floats(T, d);
    float *bd = sc + (size_t)QB * T, *qb = bd + (size_t)QB * (T + QB), *vt = qb + (size_t)QB * 2 * d;
    const int per_head = (T + QB - 1) / QB, pieces = per_head * j->H;
    int vt_head = -1;
    for (int p; (p = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < pieces;) {
        const int h = p / per_head, q0 = p % per_head * QB;
        if (h != vt_head) { /* this head's values, transposed */
            for (int c = 0; c < d; c++)
                for (int r = 0; r < T; r++) vt[(size_t)c * T + r] = e->v[(size_t)r * E + h * d + c];
            vt_head = h;
        }
        att_piece(j, h, q0, T - q0 < QB ? T - q0 : QB, sc, bd, qb, vt);
    }
}

/* x += out(attention(ln(x))) */
static void attention(aenc *e, const aud_layer *L) {
    const aud_model *am = e->am;
    const encoder_ops *k = am->enc;
    const int E = am->hp.n_embd;
    norm_into(e, e->h, e->x, L->att_norm_w, L->att_norm_b);
    k->linear(e->pool, &L->q, L->q_b, e->h, e->T, e->q, e->act);
    k->linear(e->pool, &L->k, L->k_b, e->h, e->T, e->k, e->act);
    k->linear(e->pool, &L->v, L->v_b, e->h, e->T, e->v, e->act);
    k->linear(e->pool, &L->pos, NULL, e->pe, 2 * e->T - 1, e->pp, e->act);
    att_job j = {.e = e, .L = L, .H = am->hp.n_head, .d = E / am->hp.n_head};
    atomic_init(&j.next, 0);
    enc_run(e->pool, att_work, &j);
    k->linear(e->pool, &L->o, L->o_b, e->a, e->T, e->h, e->act);
    add_scaled(e->x, e->h, (size_t)e->T * E, 1.0f);
}

/* ---- the convolution module ------------------------------------------------------------------- */

typedef struct dw_job {
    const aenc *e;
    const aud_layer *L;
} dw_job;

/* e->a (T rows of E, the GLU's output) -> e->h: the depthwise convolution over time, its bias,
 * the folded batch norm and SiLU; rows split by time. */
static void dw_rows(void *arg, int ith, int nth) {
    const dw_job *j = arg;
    const aenc *e = j->e;
    const aud_layer *L = j->L;
    const int T = e->T, E = e->am->hp.n_embd, K = e->am->hp.kernel, pad = (K - 1) / 2;
    for (int t = T * ith / nth; t < T * (ith + 1) / nth; t++)
        for (int c = 0; c < E; c++) {
            float sum = 0;
            for (int k = 0; k < K; k++) {
                const int s = t + k - pad;
                sum += (s >= 0 && s < T ? e->a[(size_t)s * E + c] : 0.0f) * L->dw_w[(size_t)c * K + k];
            }
            const float y = (sum + L->dw_b[c]) * L->bn_w[c] + L->bn_b[c];
            e->h[(size_t)t * E + c] = silu1(y);
        }
}

/* x += pw2(silu(bn(dw(glu(pw1(ln(x))))))) */
static void conv_module(aenc *e, const aud_layer *L) {
    const encoder_ops *k = e->am->enc;
    const int E = e->am->hp.n_embd;
    norm_into(e, e->h, e->x, L->conv_norm_w, L->conv_norm_b);
    k->linear(e->pool, &L->pw1, L->pw1_b, e->h, e->T, e->g, e->act);
    for (int t = 0; t < e->T; t++) {
        const float *g = e->g + (size_t)t * 2 * E;
        for (int c = 0; c < E; c++) e->a[(size_t)t * E + c] = g[c] * (1.0f / (1.0f + expf(-g[E + c])));
    }
    dw_job j = {e, L};
    enc_run(e->pool, dw_rows, &j);
    k->linear(e->pool, &L->pw2, L->pw2_b, e->h, e->T, e->a, e->act);
    add_scaled(e->x, e->a, (size_t)e->T * E, 1.0f);
}

static void block(aenc *e, const aud_layer *L) {
    ffn(e, L->ff1_norm_w, L->ff1_norm_b, &L->ff1_up, L->ff1_up_b, &L->ff1_down, L->ff1_down_b, 0.5f);
    attention(e, L);
    conv_module(e, L);
    ffn(e, L->ff2_norm_w, L->ff2_norm_b, &L->ff2_up, L->ff2_up_b, &L->ff2_down, L->ff2_down_b, 0.5f);
    enc_layer_norm(e->x, e->T, e->am->hp.n_embd, L->out_norm_w, L->out_norm_b, 1e-5f);
}

/* ---- the adapter and the whole -------------------------------------------------------------- */

static void adapter(aenc *e, float *out) {
    const aud_model *am = e->am;
    enc_layer_norm(e->x, e->T, am->hp.n_embd, am->mm0_w, am->mm0_b, 1e-5f);
    am->enc->linear(e->pool, &am->mm1, am->mm1_b, e->x, e->T, e->mid, e->act);
    enc_gelu_erf(e->mid, (int64_t)e->T * am->hp.mm_hidden);
    am->enc->linear(e->pool, &am->mm3, am->mm3_b, e->mid, e->T, out, e->act);
}

int aud_encode(const aud_model *am, threadpool *pool, const float *mel, int n_frames, float *out, lfm2c_error *err) {
    const int T = aud_n_tokens(n_frames);
    if (n_frames < 1) {
        lfm2c_set_error(err, LFM2C_EINVAL, "no mel frames to encode");
        return -1;
    }
    if (T > am->hp.max_tokens) {
        lfm2c_set_error(err, LFM2C_ETOOLARGE,
                        "%d mel frames make %d audio tokens, more than the %d this mmproj allows in one clip "
                        "(its a.position_embd rows)",
                        n_frames, T, am->hp.max_tokens);
        return -1;
    }
    aenc e = {.am = am, .pool = pool, .T0 = n_frames, .W0 = am->hp.n_mel, .T = T};
    e.nth = pool ? threadpool_size(pool) : 1;
    e.H1 = half_up(e.T0), e.W1 = half_up(e.W0), e.H2 = half_up(e.H1), e.W2 = half_up(e.W1);
    e.H3 = half_up(e.H2), e.W3 = half_up(e.W2);
    int rc = aenc_alloc(&e, err);
    if (!rc) {
        subsample(&e, mel);
        pos_table(e.pe, T, am->hp.n_embd);
        for (int l = 0; l < am->hp.n_layer; l++) {
            block(&e, &am->layers[l]);
            if (am->progress) am->progress(am->progress_ud, 0.1 + 0.9 * (l + 1) / am->hp.n_layer);
        }
        adapter(&e, out);
    }
    aenc_free(&e);
    return rc;
}
