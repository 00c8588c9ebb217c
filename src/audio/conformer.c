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
 * the pool; the convolutions and elementwise steps are split over it by rows. The first
 * convolution's plane is never held whole (each thread keeps the three rows its part of the
 * depthwise one reads); the convolutions take a tap of every channel at once (the kernels are
 * tap-major from load). A clip's buffers are one allocation (aud_encode_bytes counts it). */
#include "audio/audio.h"
#include "base/error.h"
#include "base/os.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
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
    const float *mel;                      /* n_mel rows of T0 frames */
    int T0, W0, H1, W1, H2, W2, H3, W3, T; /* mel frames, bins; the planes after each stride */
    float *sa, *sb;                        /* the subsampling's planes (rows of C): H2 x W2 pixels each, then H3 x W3 */
    float *x, *h, *q, *k, *v, *a, *g, *ff, *pe, *pp, *mid;
    float *zero;    /* max(C, E) zeros: the padding the convolutions read */
    float *scratch; /* per thread: attention's pieces, or three rows of the first convolution */
    size_t per_thread;
    uint8_t *act;
    int nth;
} aenc;

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

/* The planes' sizes for n_frames frames on nth threads. */
static void aenc_init(aenc *e, const aud_model *am, threadpool *pool, int n_frames, int nth) {
    *e = (aenc){.am = am, .pool = pool, .T0 = n_frames, .W0 = am->hp.n_mel, .T = aud_n_tokens(n_frames), .nth = nth};
    e->H1 = half_up(e->T0), e->W1 = half_up(e->W0), e->H2 = half_up(e->H1), e->W2 = half_up(e->W1);
    e->H3 = half_up(e->H2), e->W3 = half_up(e->W2);
    const size_t att = att_floats(e->T, am->hp.n_embd / am->hp.n_head), rows = (size_t)3 * e->W1 * am->hp.sub_ch;
    e->per_thread = att > rows ? att : rows;
}

/* Carves one clip's buffers out of base (NULL: counts only); the floats they take. Each starts
 * on 64 bytes. */
static size_t carve(aenc *e, float *base) {
    const aud_hparams *hp = &e->am->hp;
    const size_t T = (size_t)e->T, E = (size_t)hp->n_embd, C = (size_t)hp->sub_ch, P = 2 * T - 1;
    const size_t F = (size_t)(hp->n_ff > 2 * hp->n_embd ? hp->n_ff : 2 * hp->n_embd);
    const size_t wide = C * (size_t)e->W3 > E ? C * (size_t)e->W3 : E, plane = (size_t)e->H2 * e->W2 * C;
    const size_t M = (size_t)(hp->mm_hidden > hp->proj_dim ? hp->mm_hidden : hp->proj_dim);
    size_t at = 0;
#define TAKE(field, n) (e->field = base ? base + at : NULL, at += ((size_t)(n) + 15) / 16 * 16)
    TAKE(sa, plane), TAKE(sb, plane), TAKE(x, T * wide), TAKE(h, T * wide), TAKE(q, T * E), TAKE(k, T * E);
    TAKE(v, T * E), TAKE(a, T * E), TAKE(g, T * 2 * E), TAKE(ff, T * F), TAKE(pe, P * E), TAKE(pp, P * E);
    TAKE(mid, T * M), TAKE(zero, C > E ? C : E), TAKE(scratch, (size_t)e->nth * e->per_thread);
#undef TAKE
    const size_t act = (act_need(e) + sizeof(float) - 1) / sizeof(float) + 16;
    e->act = base ? (uint8_t *)(base + at) : NULL;
    return at + act;
}

size_t aud_encode_bytes(const aud_model *am, int n_frames, int n_threads) {
    const int most = 8 * am->hp.max_tokens; /* a longer clip is refused: counted at the bound */
    aenc e;
    aenc_init(&e, am, NULL, n_frames < most ? n_frames : most, n_threads > 0 ? n_threads : 1);
    return carve(&e, NULL) * sizeof(float) + 64;
}

/* ---- elementwise steps, split over the pool by rows -------------------------------------------- */

typedef struct rows_job rows_job;
struct rows_job {
    void (*fn)(const rows_job *j, int64_t r0, int64_t r1); /* rows r0 .. r1 - 1 */
    int64_t rows;
    int n;          /* values per row of x */
    float *x;       /* what the step writes */
    const float *y; /* what it reads beside x */
    const float *w, *b;
    float s;
    const aenc *e;
};

static void rows_work(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    const int64_t r0 = j->rows * ith / nth, r1 = j->rows * (ith + 1) / nth;
    if (r1 > r0) j->fn(j, r0, r1);
}

static void each_rows(const aenc *e, rows_job j) {
    j.e = e;
    enc_run(e->pool, rows_work, &j);
}

static void relu_rows(const rows_job *j, int64_t r0, int64_t r1) {
    for (size_t i = (size_t)r0 * j->n; i < (size_t)r1 * j->n; i++) j->x[i] = j->x[i] > 0 ? j->x[i] : 0;
}

static void silu_rows(const rows_job *j, int64_t r0, int64_t r1) {
    j->e->am->enc->silu(j->x + (size_t)r0 * j->n, (r1 - r0) * j->n);
}

static void gelu_rows(const rows_job *j, int64_t r0, int64_t r1) {
    enc_gelu_erf(j->x + (size_t)r0 * j->n, (r1 - r0) * j->n);
}

/* x += s * y */
static void add_rows(const rows_job *j, int64_t r0, int64_t r1) {
    const size_t n1 = (size_t)r1 * j->n;
    if (j->s == 1.0f)
        for (size_t i = (size_t)r0 * j->n; i < n1; i++) j->x[i] += j->y[i];
    else
        for (size_t i = (size_t)r0 * j->n; i < n1; i++) j->x[i] += j->y[i] * j->s;
}

/* x = layer_norm(y) (y NULL: x in place) with the weight w and bias b */
static void norm_rows(const rows_job *j, int64_t r0, int64_t r1) {
    float *x = j->x + (size_t)r0 * j->n;
    if (j->y) memcpy(x, j->y + (size_t)r0 * j->n, (size_t)(r1 - r0) * j->n * sizeof(float));
    enc_layer_norm(x, r1 - r0, j->n, j->w, j->b, 1e-5f);
}

/* the GLU: x (rows of n) = the first half of y (rows of 2n) times the sigmoid of the second */
static void glu_rows(const rows_job *j, int64_t r0, int64_t r1) {
    for (int64_t t = r0; t < r1; t++) {
        const float *g = j->y + (size_t)t * 2 * j->n;
        float *a = j->x + (size_t)t * j->n;
        for (int c = 0; c < j->n; c++) a[c] = g[c] * (1.0f / (1.0f + expf(-g[c + j->n])));
    }
}

/* h = ln(x) with the block's norm */
static void norm_into(const aenc *e, float *h, const float *x, const float *w, const float *b) {
    each_rows(e, (rows_job){.fn = norm_rows, .rows = e->T, .n = e->am->hp.n_embd, .x = h, .y = x, .w = w, .b = b});
}

/* ---- the subsampling ------------------------------------------------------------------------- */

/* One output pixel of the first convolution (1 -> C): v its 9 taps of the mel plane (zeros
 * outside), w tap-major; the bias, then ReLU. */
static void conv0_pixel(const float v[9], const float *w, const float *b, int C, float *out) {
    for (int c = 0; c < C; c++) {
        float s = 0;
        for (int t = 0; t < 9; t++) s += w[(size_t)t * C + c] * v[t];
        s += b[c];
        out[c] = s > 0 ? s : 0;
    }
}

/* Row y of the first convolution (3x3, stride 2, padding 1) over the mel plane, read mel-major
 * (bin x of frame t at mel[x * T0 + t]): W1 pixels of C. */
static void conv0_row(const aenc *e, int y, float *out) {
    const aud_model *am = e->am;
    for (int x = 0; x < e->W1; x++) {
        float v[9];
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const int sy = 2 * y + ky - 1, sx = 2 * x + kx - 1;
                v[ky * 3 + kx] =
                    sy >= 0 && sy < e->T0 && sx >= 0 && sx < e->W0 ? e->mel[(size_t)sx * e->T0 + sy] : 0.0f;
            }
        conv0_pixel(v, am->c0_w, am->c0_b, am->hp.sub_ch, out + (size_t)x * am->hp.sub_ch);
    }
}

/* One output row of a depthwise 3x3 stride-2 convolution over pixels of C: in[ky] input row
 * 2y + ky - 1 (wi pixels; NULL above or below the plane), w tap-major; wo pixels and the bias. */
static void dw3_row(const aenc *e, const float *const in[3], int wi, int wo, const float *w, const float *b,
                    float *out) {
    const int C = e->am->hp.sub_ch;
    for (int x = 0; x < wo; x++) {
        const float *p[9];
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const int sx = 2 * x + kx - 1;
                p[ky * 3 + kx] = in[ky] && sx >= 0 && sx < wi ? in[ky] + (size_t)sx * C : e->zero;
            }
        float *o = out + (size_t)x * C;
        for (int c = 0; c < C; c++) {
            float s = 0;
            for (int t = 0; t < 9; t++) s += w[(size_t)t * C + c] * p[t][c];
            o[c] = s + b[c];
        }
    }
}

/* The first convolution and ReLU, then the first depthwise one, into sa (H2 x W2 pixels): a
 * thread's output rows y0 .. y1 need rows 2 y0 - 1 .. 2 y1 - 1 of the first convolution, kept
 * three at a time in its scratch (the whole first plane is never held). */
static void sub_first(void *arg, int ith, int nth) {
    const aenc *e = arg;
    const int C = e->am->hp.sub_ch, y0 = e->H2 * ith / nth, y1 = e->H2 * (ith + 1) / nth;
    const size_t rowf = (size_t)e->W1 * C;
    float *ring = e->scratch + (size_t)ith * e->per_thread;
    int done = 2 * y0 - 2; /* the last row computed */
    for (int y = y0; y < y1; y++) {
        const float *in[3];
        for (int ky = 0; ky < 3; ky++) {
            const int r = 2 * y + ky - 1;
            in[ky] = NULL;
            if (r < 0 || r >= e->H1) continue;
            float *slot = ring + (size_t)(r % 3) * rowf;
            if (r > done) conv0_row(e, r, slot), done = r;
            in[ky] = slot;
        }
        dw3_row(e, in, e->W1, e->W2, e->am->c2_w, e->am->c2_b, e->sa + (size_t)y * e->W2 * C);
    }
}

/* The second depthwise convolution: sb (H2 x W2 pixels) -> sa (H3 x W3). */
static void sub_second(void *arg, int ith, int nth) {
    const aenc *e = arg;
    const int C = e->am->hp.sub_ch;
    const size_t row = (size_t)e->W2 * C;
    for (int y = e->H3 * ith / nth; y < e->H3 * (ith + 1) / nth; y++) {
        const float *in[3];
        for (int ky = 0; ky < 3; ky++) {
            const int r = 2 * y + ky - 1;
            in[ky] = r >= 0 && r < e->H2 ? e->sb + (size_t)r * row : NULL;
        }
        dw3_row(e, in, e->W2, e->W3, e->am->c5_w, e->am->c5_b, e->sa + (size_t)y * e->W3 * C);
    }
}

/* ReLU of sb's H3 x W3 pixels of C, flattened channel by channel (index c * W3 + x) into x. */
static void flat_rows(const rows_job *j, int64_t r0, int64_t r1) {
    const aenc *e = j->e;
    const int C = e->am->hp.sub_ch, W3 = e->W3;
    for (int64_t t = r0; t < r1; t++)
        for (int c = 0; c < C; c++)
            for (int x = 0; x < W3; x++) {
                const float v = j->y[((size_t)t * W3 + x) * C + c];
                j->x[(size_t)t * C * W3 + (size_t)c * W3 + x] = v > 0 ? v : 0;
            }
}

/* The mel plane -> T rows of E in x. */
static void subsample(aenc *e) {
    const aud_model *am = e->am;
    const int C = am->hp.sub_ch;
    enc_run(e->pool, sub_first, e);
    am->enc->linear(e->pool, &am->c3, am->c3_b, e->sa, e->H2 * e->W2, e->sb, e->act);
    each_rows(e, (rows_job){.fn = relu_rows, .rows = e->H2, .n = e->W2 * C, .x = e->sb});
    enc_run(e->pool, sub_second, e);
    am->enc->linear(e->pool, &am->c6, am->c6_b, e->sa, e->H3 * e->W3, e->sb, e->act);
    each_rows(e, (rows_job){.fn = flat_rows, .rows = e->T, .x = e->h, .y = e->sb});
    am->enc->linear(e->pool, &am->pre_out, am->pre_out_b, e->h, e->T, e->x, e->act);
}

/* ---- the feed-forward halves ------------------------------------------------------------------ */

/* x += s * down(silu(up(ln(x)))) */
static void ffn(aenc *e, const float *nw, const float *nb, const enc_mat *up, const float *ub, const enc_mat *down,
                const float *db, float s) {
    const encoder_ops *k = e->am->enc;
    const int E = e->am->hp.n_embd;
    norm_into(e, e->h, e->x, nw, nb);
    k->linear(e->pool, up, ub, e->h, e->T, e->ff, e->act);
    each_rows(e, (rows_job){.fn = silu_rows, .rows = e->T, .n = (int)up->n_out, .x = e->ff});
    k->linear(e->pool, down, db, e->ff, e->T, e->h, e->act);
    each_rows(e, (rows_job){.fn = add_rows, .rows = e->T, .n = E, .x = e->x, .y = e->h, .s = s});
}

/* ---- relative-position attention ------------------------------------------------------------- */

/* Rows of the sinusoidal table of relative positions T-1 .. -(T-1): row p is position T-1-p. */
static void pos_rows(const rows_job *j, int64_t r0, int64_t r1) {
    const int T = j->e->T, E = j->n;
    for (int i = 0; i < E / 2; i++) {
        const double inv = exp(-(log(10000.0) / (float)E) * (2.0f * (float)i));
        for (int64_t p = r0; p < r1; p++) {
            const float ang = (float)((T - p - 1) * inv);
            j->x[(size_t)p * E + 2 * i] = sinf(ang);
            j->x[(size_t)p * E + 2 * i + 1] = cosf(ang);
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
    float *sc = e->scratch + (size_t)ith * e->per_thread;
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
    each_rows(e, (rows_job){.fn = add_rows, .rows = e->T, .n = E, .x = e->x, .y = e->h, .s = 1.0f});
}

/* ---- the convolution module ------------------------------------------------------------------- */

typedef struct dw_job {
    const aenc *e;
    const aud_layer *L;
} dw_job;

/* e->a (T rows of E, the GLU's output) -> e->h: the depthwise convolution over time (the taps
 * summed in order into the output row, a tap of every channel at once; the padding's zeros add
 * nothing), its bias, the folded batch norm and SiLU; rows split by time. */
static void dw_rows(void *arg, int ith, int nth) {
    const dw_job *j = arg;
    const aenc *e = j->e;
    const aud_layer *L = j->L;
    const int T = e->T, E = e->am->hp.n_embd, K = e->am->hp.kernel, pad = (K - 1) / 2;
    for (int t = T * ith / nth; t < T * (ith + 1) / nth; t++) {
        float *o = e->h + (size_t)t * E;
        for (int c = 0; c < E; c++) o[c] = 0;
        for (int k = 0; k < K; k++) {
            const int s = t + k - pad;
            if (s < 0 || s >= T) continue;
            const float *a = e->a + (size_t)s * E, *w = L->dw_w + (size_t)k * E;
            for (int c = 0; c < E; c++) o[c] += a[c] * w[c];
        }
        for (int c = 0; c < E; c++) o[c] = (o[c] + L->dw_b[c]) * L->bn_w[c] + L->bn_b[c];
        e->am->enc->silu(o, E);
    }
}

/* x += pw2(silu(bn(dw(glu(pw1(ln(x))))))) */
static void conv_module(aenc *e, const aud_layer *L) {
    const encoder_ops *k = e->am->enc;
    const int E = e->am->hp.n_embd;
    norm_into(e, e->h, e->x, L->conv_norm_w, L->conv_norm_b);
    k->linear(e->pool, &L->pw1, L->pw1_b, e->h, e->T, e->g, e->act);
    each_rows(e, (rows_job){.fn = glu_rows, .rows = e->T, .n = E, .x = e->a, .y = e->g});
    dw_job j = {e, L};
    enc_run(e->pool, dw_rows, &j);
    k->linear(e->pool, &L->pw2, L->pw2_b, e->h, e->T, e->a, e->act);
    each_rows(e, (rows_job){.fn = add_rows, .rows = e->T, .n = E, .x = e->x, .y = e->a, .s = 1.0f});
}

static void block(aenc *e, const aud_layer *L) {
    ffn(e, L->ff1_norm_w, L->ff1_norm_b, &L->ff1_up, L->ff1_up_b, &L->ff1_down, L->ff1_down_b, 0.5f);
    attention(e, L);
    conv_module(e, L);
    ffn(e, L->ff2_norm_w, L->ff2_norm_b, &L->ff2_up, L->ff2_up_b, &L->ff2_down, L->ff2_down_b, 0.5f);
    each_rows(
        e,
        (rows_job){
            .fn = norm_rows, .rows = e->T, .n = e->am->hp.n_embd, .x = e->x, .w = L->out_norm_w, .b = L->out_norm_b});
}

/* ---- the adapter and the whole -------------------------------------------------------------- */

static void adapter(aenc *e, float *out) {
    const aud_model *am = e->am;
    each_rows(e,
              (rows_job){.fn = norm_rows, .rows = e->T, .n = am->hp.n_embd, .x = e->x, .w = am->mm0_w, .b = am->mm0_b});
    am->enc->linear(e->pool, &am->mm1, am->mm1_b, e->x, e->T, e->mid, e->act);
    each_rows(e, (rows_job){.fn = gelu_rows, .rows = e->T, .n = am->hp.mm_hidden, .x = e->mid});
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
    aenc e;
    aenc_init(&e, am, pool, n_frames, pool ? threadpool_size(pool) : 1);
    e.mel = mel;
    /* Page faults: malloc (aligned here) serves a second clip of a size from the pages the first
       freed, where glibc's aligned_alloc maps fresh pages each time; above BIG glibc maps afresh
       anyway, and huge pages fault 512 times less. */
    enum { BIG = 32 << 20 };
    const size_t bytes = carve(&e, NULL) * sizeof(float) + 64;
    void *raw = bytes >= BIG ? os_pages_alloc(bytes, 2 << 20) : malloc(bytes);
    float *base = raw ? (float *)(((uintptr_t)raw + 63) & ~(uintptr_t)63) : NULL;
    if (!base) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory encoding %d mel frames", n_frames);
        return -1;
    }
    carve(&e, base);
    memset(e.zero, 0, sizeof(float) * (size_t)(am->hp.sub_ch > am->hp.n_embd ? am->hp.sub_ch : am->hp.n_embd));
    subsample(&e);
    each_rows(&e, (rows_job){.fn = pos_rows, .rows = 2 * (int64_t)T - 1, .n = am->hp.n_embd, .x = e.pe});
    for (int l = 0; l < am->hp.n_layer; l++) {
        block(&e, &am->layers[l]);
        if (am->progress) am->progress(am->progress_ud, 0.1 + 0.9 * (l + 1) / am->hp.n_layer);
    }
    adapter(&e, out);
    if (bytes >= BIG) os_pages_free(raw, bytes);
    else free(raw);
    return 0;
}
