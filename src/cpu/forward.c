/* forward.c — the LFM2 forward pass on the CPU (spec section 2).
 *
 * One function per block: conv_block, attention_block, dense_ffn, moe_ffn; forward_cpu() strings
 * them together. A batch holds tokens of one or more sequences (prefill == decode with more
 * tokens); all matrix work goes through matmul_run() (matmul.c), which splits rows over the
 * thread pool and calls the kernel table (kernels.h), or in reference mode a plain float dot.
 * Buffers come from the model's scratch slots (scratch.c), named below. */
#include "core/forward.h"
#include "base/error.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/replay.h"
#include "core/model.h"
#include "cpu/scratch.h"
#include "formats/ggml_types.h"
#include "core/session.h"
#include "cpu/backend_cpu.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- scratch slots ------------------------------------------------------------------------------
 * The blocks run one after the other, so blocks that need a buffer at different times share a
 * slot; each use has its own name, defined above the block that makes it. Sizes per token of the
 * batch (reserve_scratch() grows every slot to them before a pass starts):
 *
 *   slot      size                forward_cpu  conv_block  attention_block  dense_ffn     moe_ffn
 *   S_X       H                   FWD_X
 *   S_A       H                   FWD_A
 *   S_OUT     H                   FWD_OUT
 *   S_ROPE    hd                  FWD_ROPE
 *   S_LOGITS  max(V if out, k)    FWD_LOGITS                                              MOE_WSEL
 *   S_BIG     max(3H, nq, F)                   CONV_Z      ATTN_Q           FFN_GATE
 *   S_BIG2    max(2 kv, F)                                 ATTN_KV          FFN_UP
 *   S_HID     max(H, nq, F, Fe)                CONV_O      ATTN_O
 *   S_ATT     1 int (+1)                                   ATTN_RUNS
 *   S_ACT0    k act rows          ACT_IN       ACT_IN      ATTN_ACT_Q       FFN_ACT_GATE  MOE_ACT_IN
 *   S_ACT1    k act rows                                   ATTN_ACT_K       FFN_ACT_UP    MOE_ACT_PAIRS
 *   S_ACT2    k act rows                                   ATTN_ACT_V                     MOE_ACT_HID
 *   S_ROUTER  E + k                                                                       MOE_ROUTER
 *   S_MOE_G   k Fe                                                                        MOE_G
 *   S_MOE_U   k Fe                                                                        MOE_U
 *   S_MOE_D   k H                                                                         MOE_D
 *   S_TASKS   2 E tasks (in all)                                                          MOE_TASKS
 *   S_INTS    3 k ints (+E+1)                                                             MOE_INTS
 *
 * ACT_IN is the input of matmul(), the one-product helper, in its weight's activation format:
 * every block uses it (conv in/out, wo, ffn_down, the router, the output head), never while the
 * block still reads what it put in S_ACT0 itself. An "act row" is one row of the widest input in
 * the widest 8-bit activation format. */
enum {
    S_X,
    S_A,
    S_OUT,
    S_BIG,
    S_BIG2,
    S_HID,
    S_ROUTER,
    S_MOE_G,
    S_MOE_U,
    S_MOE_D,
    S_ATT,
    S_ROPE,
    S_LOGITS,
    S_ACT0,
    S_ACT1,
    S_ACT2,
    S_TASKS,
    S_INTS,
    S_NSLOTS
};

scratch *forward_scratch_new(void) { return scratch_new(S_NSLOTS); }

static void *slot(lfm2c_model *m, int i, size_t bytes) { return scratch_get(cpu_model_of(m)->scratch, i, bytes); }

/* ---- matrix products ---------------------------------------------------------------------- */

enum { ACT_IN = S_ACT0 }; /* matmul(): its input in the weight's activation format */

/* The model's matmul hook, when one is set (lfm2c_model_set_matmul_hook): the float input of a
 * product with w (matrix `expert` of an expert tensor, else -1), n rows at x + (rows ? rows[i] :
 * i) * ld. */
static inline void hook_input(const lfm2c_model *m, const tensor *w, int expert, const float *x, size_t ld,
                              const int *rows, int n) {
    if (m->mm_hook && n > 0)
        m->mm_hook(m->mm_hook_user, w->name, expert, w->ne[2] > 1 ? (int)w->ne[2] : 1, x, ld, rows, n, (int)w->ne[0]);
}

/* y[T][rows] = W · x for one weight (convenience for a single product), plus the LoRA updates of
 * the tokens' sequences (toks: row t is token t; NULL for products no adapter touches). */
static void matmul(lfm2c_model *m, const fwd_token *toks, const tensor *w, const float *x, int T, float *y) {
    hook_input(m, w, -1, x, (size_t)w->ne[0], NULL, T);
    act_buf a = prepare_act(m, ACT_IN, x, T, w->ne[0], w->type);
    mm_task t = {w, 0, a.data, a.row, T, y, (size_t)w->ne[1]};
    matmul_run(m, &t, 1);
    lora_apply(m, toks, w, 0, x, (size_t)w->ne[0], NULL, NULL, T, y, (size_t)w->ne[1]);
}

/* ---- small pieces --------------------------------------------------------------------------- */

static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    /* the sum of squares in double, in 8 interleaved partial sums added as a fixed tree: the
     * compiler can vectorize it (one serial chain costs ~4 cycles a value) and every token gets
     * the same order */
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) p[k] += (double)x[i + k] * x[i + k];
    for (; i < n; i++) p[0] += (double)x[i] * x[i];
    const double ss = ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

/* NEOX rotation of one head: pairs (i, i + d/2) by angle pos * theta^(-2i/d). */
static void rope_neox(float *x, const float *cs, int d) {
    for (int i = 0; i < d / 2; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1], a = x[i], b = x[i + d / 2];
        x[i] = a * c - b * s;
        x[i + d / 2] = b * c + a * s;
    }
}

/* Runs fn(arg, i0, i1) over [0, n), one range per pool index when the job is big enough (n
 * elements of about `cost` operations each); small jobs (decode) run inline. Every element is
 * computed by the same code whichever thread takes it, so no bit depends on the split. */
typedef void (*range_fn)(void *arg, size_t i0, size_t i1);
typedef struct range_job {
    range_fn fn;
    void *arg;
    size_t n;
} range_job;

static void range_worker(void *p, int ith, int nth) {
    const range_job *j = p;
    const size_t i0 = j->n * (size_t)ith / (size_t)nth, i1 = j->n * (size_t)(ith + 1) / (size_t)nth;
    if (i0 < i1) j->fn(j->arg, i0, i1);
}

static void par_range(lfm2c_model *m, size_t n, size_t cost, range_fn fn, void *arg) {
    if (n * cost < (size_t)INLINE_WORK) {
        if (n) fn(arg, 0, n);
        return;
    }
    range_job j = {fn, arg, n};
    threadpool_run(m->pool, range_worker, &j);
}

/* ---- gated short-conv block (spec 2.3) ------------------------------------------------------ */

typedef struct conv_job {
    const fwd_token *toks;
    int T, H, layer_index, n_conv;
    const float *z; /* [T][3H]: B | C | X */
    const float *w; /* [H][3] taps: oldest, previous, current */
    float *o;       /* [T][H] */
} conv_job;

static void conv_worker(void *arg, int ith, int nth) {
    const conv_job *j = arg;
    int c0 = j->H * ith / nth, c1 = j->H * (ith + 1) / nth;
    for (int t = 0; t < j->T; t++) { /* in order: each token updates its sequence's state */
        float *state = j->toks[t].seq->conv + (size_t)j->layer_index * 2 * j->H;
        const float *B = j->z + (size_t)t * 3 * j->H, *C = B + j->H, *X = C + j->H;
        /* a session keeping a conv trail (session.h) records u for rollback */
        const struct lfm2c_session *sq = j->toks[t].seq;
        int d = j->toks[t].pos - sq->trail_pos;
        float *rec = d >= 0 && d < sq->trail_cap ? sq->trail + ((size_t)d * j->n_conv + j->layer_index) * j->H : NULL;
        for (int c = c0; c < c1; c++) {
            float u = B[c] * X[c];
            if (rec) rec[c] = u;
            const float *w = j->w + 3 * c;
            float v = w[0] * state[c] + w[1] * state[j->H + c] + w[2] * u;
            state[c] = state[j->H + c];
            state[j->H + c] = u;
            j->o[(size_t)t * j->H + c] = C[c] * v;
        }
        float *snap = j->toks[t].snap; /* a checkpoint after this token (checkpoint.c) */
        if (snap) {
            snap += (size_t)j->layer_index * 2 * j->H;
            memcpy(snap + c0, state + c0, sizeof(float) * (size_t)(c1 - c0));
            memcpy(snap + j->H + c0, state + j->H + c0, sizeof(float) * (size_t)(c1 - c0));
        }
    }
}

enum { CONV_Z = S_BIG, CONV_O = S_HID }; /* in_proj output B | C | X; the gated conv output */

static void conv_block(lfm2c_model *m, const layer *L, const fwd_token *toks, int T, const float *a, float *out) {
    const int H = m->info.n_embd;
    float *z = slot(m, CONV_Z, sizeof(float) * (size_t)T * 3 * H);
    float *o = slot(m, CONV_O, sizeof(float) * (size_t)T * H);
    matmul(m, toks, &L->conv_in, a, T, z);
    conv_job j = {toks, T, H, L->conv_index, m->n_conv, z, (const float *)L->conv_w.data, o};
    if ((int64_t)T * H < INLINE_WORK / 2) conv_worker(&j, 0, 1); /* decode: a few µs at most */
    else threadpool_run(m->pool, conv_worker, &j);
    matmul(m, toks, &L->conv_out, o, T, out);
}

/* ---- attention block (spec 2.4) ------------------------------------------------------------- */

/* Attention work items: a run of consecutive tokens of one sequence (at most qt) x one KV
 * head x one chunk of the query heads sharing it, so that one kernel call holds at most
 * ATTN_MAX_Q queries that read the same K / V blocks. The kernel contract makes each query's
 * result independent of the others in its call: how tokens are grouped changes no bit. */
typedef struct attn_job {
    const lfm2c_model *m;
    const layer *L;
    const fwd_token *toks;
    const float *q;  /* [T][nh*hd], normed, rotated and scaled by 1/sqrt(hd) */
    float *o;        /* [T][nh*hd] */
    const int *runs; /* run r = tokens runs[r] .. runs[r+1]-1 */
    int n_runs, n_chunks, per_chunk;
    atomic_int next; /* next item to claim */
} attn_job;

static void attn_item(const attn_job *j, int it) {
    const int nh = j->m->info.n_head, hd = j->m->info.head_dim, nkv = j->L->n_head_kv;
    const int group = nh / nkv, items_per_run = nkv * j->n_chunks;
    const int r = it / items_per_run, g = it % items_per_run / j->n_chunks, ch = it % j->n_chunks;
    const int h0 = g * group + ch * j->per_chunk;
    const int h1 = h0 + j->per_chunk < (g + 1) * group ? h0 + j->per_chunk : (g + 1) * group;
    const struct lfm2c_session *s = j->toks[j->runs[r]].seq;
    attn_call c = {s->type_k,
                   s->type_v,
                   hd,
                   j->m->info.n_head_kv_max,
                   g,
                   cpu_session_of(s)->k[j->L->attn_index],
                   cpu_session_of(s)->v[j->L->attn_index],
                   cpu_session_of(s)->v_row,
                   0,
                   {0},
                   {0},
                   {0}};
    for (int t = j->runs[r]; t < j->runs[r + 1]; t++)
        for (int h = h0; h < h1; h++) {
            c.q[c.nq] = j->q + (size_t)t * nh * hd + (size_t)h * hd;
            c.out[c.nq] = j->o + (size_t)t * nh * hd + (size_t)h * hd;
            c.n[c.nq++] = j->toks[t].pos + 1; /* causal: positions 0..pos */
        }
    cpu_model_of(j->m)->kern->attention(&c);
}

static void attn_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    attn_job *j = arg;
    /* items claimed one at a time: later tokens cost more under the causal mask, and a
     * descheduled thread holds up only the item it is in */
    const int n_items = j->n_runs * j->L->n_head_kv * j->n_chunks;
    for (int it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < n_items;) attn_item(j, it);
}

/* Tokens [t0, t1) of q, k, v: per-head RMSNorm, RoPE (q also scaled by 1/sqrt(hd)), and k / v
 * stored at the token's position in its sequence's cache (each token its own cache cells). */
typedef struct qk_job {
    const lfm2c_model *m;
    const layer *L;
    const fwd_token *toks;
    float *q, *k;
    const float *v;
    const float *rope;
} qk_job;

static void qk_tokens(void *arg, size_t t0, size_t t1) {
    const qk_job *j = arg;
    const lfm2c_model_info *in = &j->m->info;
    const int nh = in->n_head, hd = in->head_dim, nkv = j->L->n_head_kv, nq = nh * hd, kv_dim = nkv * hd;
    const float eps = in->norm_eps, scale = 1.0f / sqrtf((float)hd);
    const float *qn = (const float *)j->L->q_norm.data, *kn = (const float *)j->L->k_norm.data;
    for (size_t t = t0; t < t1; t++) {
        const float *cs = j->rope + t * hd;
        for (int h = 0; h < nh; h++) {
            float *x = j->q + t * nq + h * hd;
            rmsnorm(x, x, qn, hd, eps);
            rope_neox(x, cs, hd);
            for (int i = 0; i < hd; i++) x[i] *= scale;
        }
        struct lfm2c_session *s = j->toks[t].seq;
        for (int h = 0; h < nkv; h++) {
            float *x = j->k + t * kv_dim + h * hd;
            rmsnorm(x, x, kn, hd, eps);
            rope_neox(x, cs, hd);
        }
        kv_store_k(s->type_k, hd, in->n_head_kv_max, nkv, cpu_session_of(s)->k[j->L->attn_index], j->toks[t].pos,
                   j->k + t * kv_dim, cpu_model_of(j->m)->kern->f16_row);
        kv_store_v(s->type_v, kv_dim, cpu_session_of(s)->v[j->L->attn_index], cpu_session_of(s)->v_row, j->toks[t].pos,
                   j->v + t * kv_dim, cpu_model_of(j->m)->kern->f16_row);
    }
}

/* scratch: q; k then v; the input for wq / wk / wv when their formats differ; the runs; the
 * attention output (input of wo) */
enum {
    ATTN_Q = S_BIG,
    ATTN_KV = S_BIG2,
    ATTN_ACT_Q = S_ACT0,
    ATTN_ACT_K = S_ACT1,
    ATTN_ACT_V = S_ACT2,
    ATTN_RUNS = S_ATT,
    ATTN_O = S_HID
};

static void attention_block(lfm2c_model *m, const layer *L, const fwd_token *toks, int T, const float *a,
                            const float *rope, float *out) {
    const int nh = m->info.n_head, hd = m->info.head_dim, nkv = L->n_head_kv;
    const int nq = nh * hd, kv_dim = nkv * hd;
    float *q = slot(m, ATTN_Q, sizeof(float) * (size_t)T * nq);
    float *kv = slot(m, ATTN_KV, sizeof(float) * (size_t)T * 2 * kv_dim);
    float *k = kv, *v = kv + (size_t)T * kv_dim;

    /* q, k, v in one parallel job; they share the input (but maybe not its format) */
    act_buf aq = prepare_act(m, ATTN_ACT_Q, a, T, L->wq.ne[0], L->wq.type);
    act_buf ak = act_format(m, L->wk.type) == act_format(m, L->wq.type)
                     ? aq
                     : prepare_act(m, ATTN_ACT_K, a, T, L->wk.ne[0], L->wk.type);
    act_buf av = act_format(m, L->wv.type) == act_format(m, L->wq.type) ? aq
                 : act_format(m, L->wv.type) == act_format(m, L->wk.type)
                     ? ak
                     : prepare_act(m, ATTN_ACT_V, a, T, L->wv.ne[0], L->wv.type);
    for (int i = 0; m->mm_hook && i < 3; i++)
        hook_input(m, (const tensor *[]){&L->wq, &L->wk, &L->wv}[i], -1, a, (size_t)L->wq.ne[0], NULL, T);
    mm_task tasks[3] = {{&L->wq, 0, aq.data, aq.row, T, q, (size_t)nq},
                        {&L->wk, 0, ak.data, ak.row, T, k, (size_t)kv_dim},
                        {&L->wv, 0, av.data, av.row, T, v, (size_t)kv_dim}};
    matmul_run(m, tasks, 3);
    for (int i = 0; i < 3; i++)
        lora_apply(m, toks, tasks[i].w, 0, a, (size_t)L->wq.ne[0], NULL, NULL, T, tasks[i].y, tasks[i].ldy);

    /* per-head RMSNorm, then RoPE (q also scaled), then store k / v in the sequence's cache */
    qk_job qj = {m, L, toks, q, k, v, rope};
    par_range(m, (size_t)T, (size_t)(nh + 2 * nkv) * hd * 4, qk_tokens, &qj);
    double work = 0;
    for (int t = 0; t < T; t++) work += (double)(toks[t].pos + 1) * nh * hd;

    /* runs of consecutive tokens of one sequence, at most qt long */
    const int group = nh / nkv, n_chunks = (group + ATTN_MAX_Q - 1) / ATTN_MAX_Q;
    const int per_chunk = (group + n_chunks - 1) / n_chunks, qt = ATTN_MAX_Q / per_chunk;
    int *runs = slot(m, ATTN_RUNS, sizeof(int) * ((size_t)T + 1));
    int n_runs = 0;
    for (int t = 0; t < T; t++)
        if (t == 0 || toks[t].seq != toks[t - 1].seq || t - runs[n_runs - 1] == qt) runs[n_runs++] = t;
    runs[n_runs] = T;

    float *o = slot(m, ATTN_O, sizeof(float) * (size_t)T * nq);
    attn_job j = {m, L, toks, q, o, runs, n_runs, n_chunks, per_chunk, 0};
    if (work < INLINE_WORK / 2) attn_worker(&j, 0, 1);
    else threadpool_run(m->pool, attn_worker, &j);
    matmul(m, toks, &L->wo, o, T, out);
}

/* ---- feed-forward: dense SwiGLU (spec 2.5) and MoE (spec 2.6) -------------------------------- */

typedef struct swiglu_job {
    float *g;
    const float *u;
    const kernel_ops *k;
} swiglu_job;

static void swiglu_range(void *arg, size_t i0, size_t i1) {
    const swiglu_job *j = arg;
    j->k->swiglu(j->g + i0, j->u + i0, (int64_t)(i1 - i0));
}

/* g = silu(g) * u, elementwise (the kernel table's, kernels.h: the same bits on every table) */
static void swiglu(lfm2c_model *m, float *g, const float *u, size_t n) {
    swiglu_job j = {g, u, cpu_model_of(m)->kern};
    par_range(m, n, 16, swiglu_range, &j);
}

/* scratch: gate (then silu(gate) * up, the input of ffn_down); up; the input for gate / up */
enum { FFN_GATE = S_BIG, FFN_UP = S_BIG2, FFN_ACT_GATE = S_ACT0, FFN_ACT_UP = S_ACT1 };

static void dense_ffn(lfm2c_model *m, const layer *L, const fwd_token *toks, int T, const float *f, float *out) {
    const int64_t F = L->ffn_gate.ne[1];
    float *g = slot(m, FFN_GATE, sizeof(float) * (size_t)T * F);
    float *u = slot(m, FFN_UP, sizeof(float) * (size_t)T * F);
    act_buf a = prepare_act(m, FFN_ACT_GATE, f, T, L->ffn_gate.ne[0], L->ffn_gate.type);
    act_buf b = act_format(m, L->ffn_up.type) == act_format(m, L->ffn_gate.type)
                    ? a
                    : prepare_act(m, FFN_ACT_UP, f, T, L->ffn_up.ne[0], L->ffn_up.type);
    hook_input(m, &L->ffn_gate, -1, f, (size_t)L->ffn_gate.ne[0], NULL, T);
    hook_input(m, &L->ffn_up, -1, f, (size_t)L->ffn_up.ne[0], NULL, T);
    mm_task tasks[2] = {{&L->ffn_gate, 0, a.data, a.row, T, g, (size_t)F},
                        {&L->ffn_up, 0, b.data, b.row, T, u, (size_t)F}};
    matmul_run(m, tasks, 2);
    for (int i = 0; i < 2; i++)
        lora_apply(m, toks, tasks[i].w, 0, f, (size_t)L->ffn_gate.ne[0], NULL, NULL, T, tasks[i].y, (size_t)F);
    swiglu(m, g, u, (size_t)T * F);
    matmul(m, toks, &L->ffn_down, g, T, out);
}

/* Router: sigmoid scores; the expert bias only ranks; the chosen scores are renormalised. */
void moe_route(const float *logits, const float *bias, int E, int k, int *sel, float *w) {
    float s[4096];
    for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-logits[e]));
    bool taken[4096] = {0};
    float sum = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        float bv = -INFINITY;
        for (int e = 0; e < E; e++) {
            float v = s[e] + (bias ? bias[e] : 0);
            if (!taken[e] && (best < 0 || v > bv)) {
                best = e;
                bv = v;
            }
        }
        taken[best] = true;
        sel[j] = best;
        w[j] = s[best];
        sum += s[best];
    }
    if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
    for (int j = 0; j < k; j++) w[j] /= sum;
}

/* scratch: router logits; the routing ints (sel | order | start | each pair's token); the pairs' weights; the input,
 * its rows gathered per pair in expert order, the hidden rows; gate, up, down of every pair; the
 * task list */
enum {
    MOE_ROUTER = S_ROUTER,
    MOE_INTS = S_INTS,
    MOE_WSEL = S_LOGITS,
    MOE_ACT_IN = S_ACT0,
    MOE_ACT_PAIRS = S_ACT1,
    MOE_ACT_HID = S_ACT2,
    MOE_G = S_MOE_G,
    MOE_U = S_MOE_U,
    MOE_D = S_MOE_D,
    MOE_TASKS = S_TASKS
};

static void moe_ffn(lfm2c_model *m, const layer *L, const fwd_token *toks, int T, const float *f, float *out) {
    const int E = m->info.n_expert, k = m->info.n_expert_used;
    const int64_t H = m->info.n_embd, Fe = L->gate_exps.ne[1];
    float *r = slot(m, MOE_ROUTER, sizeof(float) * (size_t)T * (E + k));
    matmul(m, NULL, &L->router, f, T, r);

    /* route every token, then group the (token, slot) pairs by expert so each expert's weights
     * are read once for the whole batch */
    int *sel = slot(m, MOE_INTS, sizeof(int) * ((size_t)T * k * 3 + E + 1));
    int *order = sel + (size_t)T * k, *start = order + (size_t)T * k, *ptok = start + E + 1;
    float *wsel = slot(m, MOE_WSEL, sizeof(float) * (size_t)T * k);
    const float *bias = L->expert_bias.data ? (const float *)L->expert_bias.data : NULL;
    for (int t = 0; t < T; t++) moe_route(r + (size_t)t * E, bias, E, k, sel + t * k, wsel + t * k);
    memset(start, 0, sizeof(int) * (E + 1));
    for (int i = 0; i < T * k; i++) start[sel[i] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    int fill[4096];
    memcpy(fill, start, sizeof(int) * E);
    for (int i = 0; i < T * k; i++) order[fill[sel[i]]++] = i; /* pair i = t * k + j */
    for (int i = 0; i < T * k; i++) ptok[i] = order[i] / k;    /* the token of the i-th pair in expert order */

    /* gather each pair's activation row (already quantized once) into expert order */
    act_buf a = prepare_act(m, MOE_ACT_IN, f, T, H, L->gate_exps.type);
    const int n_pairs = T * k;
    uint8_t *ga = slot(m, MOE_ACT_PAIRS, a.row * (size_t)n_pairs);
    for (int i = 0; i < n_pairs; i++) memcpy(ga + i * a.row, a.data + (order[i] / k) * a.row, a.row);
    float *G = slot(m, MOE_G, sizeof(float) * (size_t)n_pairs * Fe);
    float *U = slot(m, MOE_U, sizeof(float) * (size_t)n_pairs * Fe);
    float *D = slot(m, MOE_D, sizeof(float) * (size_t)n_pairs * H);
    mm_task *tasks = slot(m, MOE_TASKS, sizeof(mm_task) * 2 * (size_t)E); /* reserved */
    for (int e = 0; m->mm_hook && e < E; e++) {                           /* each expert's rows: its pairs' tokens */
        hook_input(m, &L->gate_exps, e, f, (size_t)H, ptok + start[e], start[e + 1] - start[e]);
        hook_input(m, &L->up_exps, e, f, (size_t)H, ptok + start[e], start[e + 1] - start[e]);
    }
    int nt = 0;
    for (int e = 0; e < E; e++) {
        int n = start[e + 1] - start[e];
        if (!n) continue;
        const uint8_t *ae = ga + (size_t)start[e] * a.row;
        tasks[nt++] = (mm_task){&L->gate_exps, e, ae, a.row, n, G + (size_t)start[e] * Fe, (size_t)Fe};
        tasks[nt++] = (mm_task){&L->up_exps, e, ae, a.row, n, U + (size_t)start[e] * Fe, (size_t)Fe};
    }
    matmul_run(m, tasks, nt);
    for (int e = 0; cpu_model_of(m)->lora_pass && e < E; e++) { /* adapters: gate and up of each expert's pairs */
        const int s0 = start[e], n = start[e + 1] - s0;
        lora_apply(m, toks, &L->gate_exps, e, f, (size_t)H, ptok + s0, ptok + s0, n, G + (size_t)s0 * Fe, (size_t)Fe);
        lora_apply(m, toks, &L->up_exps, e, f, (size_t)H, ptok + s0, ptok + s0, n, U + (size_t)s0 * Fe, (size_t)Fe);
    }
    swiglu(m, G, U, (size_t)n_pairs * Fe);
    for (int e = 0; m->mm_hook && e < E; e++)
        hook_input(m, &L->down_exps, e, G + (size_t)start[e] * Fe, (size_t)Fe, NULL, start[e + 1] - start[e]);
    act_buf h = prepare_act(m, MOE_ACT_HID, G, n_pairs, Fe, L->down_exps.type);
    nt = 0;
    for (int e = 0; e < E; e++) {
        int n = start[e + 1] - start[e];
        if (!n) continue;
        tasks[nt++] = (mm_task){&L->down_exps, e, h.data + (size_t)start[e] * h.row, h.row, n, D + (size_t)start[e] * H,
                                (size_t)H};
    }
    matmul_run(m, tasks, nt);
    for (int e = 0; cpu_model_of(m)->lora_pass && e < E; e++) {
        const int s0 = start[e], n = start[e + 1] - s0;
        lora_apply(m, toks, &L->down_exps, e, G + (size_t)s0 * Fe, (size_t)Fe, NULL, ptok + s0, n, D + (size_t)s0 * H,
                   (size_t)H);
    }
    memset(out, 0, sizeof(float) * (size_t)T * H);
    for (int i = 0; i < n_pairs; i++) {
        int pair = order[i], t = pair / k;
        float w = wsel[pair];
        const float *d = D + (size_t)i * H;
        float *o = out + (size_t)t * H;
        for (int64_t c = 0; c < H; c++) o[c] += w * d[c];
    }
}

/* ---- the model ------------------------------------------------------------------------------- */

/* Bytes of one activation row of n values in the widest 8-bit format (Q8_0 or Q8_K). */
static size_t act_row_bytes(int64_t n) {
    size_t q80 = (size_t)((n + 31) / 32) * sizeof(block_q8_0), q8k = (size_t)((n + 255) / 256) * sizeof(block_q8_K);
    return q80 > q8k ? q80 : q8k;
}

/* What every scratch slot needs for a batch of T tokens, n_out of them wanting logits in scratch. */
static void scratch_need(const lfm2c_model *m, int T, int n_out, size_t need[S_NSLOTS]) {
    const lfm2c_model_info *in = &m->info;
    const size_t H = in->n_embd, hd = in->head_dim, nq = (size_t)in->n_head * hd;
    const size_t kv = (size_t)in->n_head_kv_max * hd, F = in->n_ff, Fe = in->n_ff_exp, E = in->n_expert;
    const size_t k = in->n_expert_used > 0 ? in->n_expert_used : 1, f = sizeof(float), t = (size_t)T;
    size_t big = 3 * H > nq ? 3 * H : nq, widest = H > nq ? H : nq;
    if (F > big) big = F;
    if (F > widest) widest = F;
    if (Fe > widest) widest = Fe;
    const size_t emb = x16_base(m->tok_embd.type) ? m->tok_embd.row_bytes : 0; /* FWD_EMB */
    need[S_X] = need[S_A] = need[S_OUT] = t * H * f;
    need[S_ROPE] = t * hd * f;
    need[S_BIG] = t * big * f > emb ? t * big * f : emb;
    need[S_BIG2] = t * (2 * kv > F ? 2 * kv : F) * f;
    need[S_HID] = t * widest * f;
    need[S_ATT] = (t + 1) * sizeof(int);
    need[S_ROUTER] = t * (E + k) * f;
    need[S_MOE_G] = need[S_MOE_U] = t * k * Fe * f;
    need[S_MOE_D] = t * k * H * f;
    need[S_LOGITS] = ((size_t)n_out * in->n_vocab > t * k ? (size_t)n_out * in->n_vocab : t * k) * f;
    need[S_ACT0] = need[S_ACT1] = need[S_ACT2] = t * k * act_row_bytes((int64_t)widest);
    need[S_TASKS] = 2 * E * sizeof(mm_task);
    need[S_INTS] = (t * k * 3 + E + 1) * sizeof(int);
}

size_t forward_scratch_bytes(const lfm2c_model *m, int T, int n_out) {
    size_t need[S_NSLOTS], sum = 0;
    scratch_need(m, T, n_out, need);
    for (int i = 0; i < S_NSLOTS; i++) sum += (need[i] + 63) / 64 * 64; /* scratch.c's rounding */
    return sum;
}

/* Grows every scratch buffer to what a batch of T tokens (n_out of them wanting logits in
 * scratch) needs, before any work starts: an allocation failure is then an error, not a crash
 * mid-layer. */
static bool reserve_scratch(lfm2c_model *m, int T, int n_out) {
    size_t need[S_NSLOTS];
    scratch_need(m, T, n_out, need);
    for (int i = 0; i < S_NSLOTS; i++)
        if (need[i] && !slot(m, i, need[i])) return false;
    return true;
}

/* Per token of [t0, t1): x += out (when out), then a = RMSNorm(x) * w (when a). */
typedef struct norm_job {
    const lfm2c_model *m;
    float *x;
    const float *out;
    float *a;
    const tensor *w;
} norm_job;

static void add_norm_tokens(void *arg, size_t t0, size_t t1) {
    const norm_job *j = arg;
    const size_t H = (size_t)j->m->info.n_embd;
    for (size_t t = t0; t < t1; t++) {
        float *x = j->x + t * H;
        if (j->out)
            for (size_t i = 0; i < H; i++) x[i] += j->out[t * H + i];
        if (j->a) rmsnorm(j->a + t * H, x, (const float *)j->w->data, (int)H, j->m->info.norm_eps);
    }
}

/* the residual stream x of T tokens gets a block's output, and the next block's normed input */
static void add_norm(lfm2c_model *m, int T, float *x, const float *out, float *a, const tensor *w) {
    norm_job j = {m, x, out, a, w};
    par_range(m, (size_t)T, (size_t)m->info.n_embd * 4, add_norm_tokens, &j);
}

/* scratch: the residual stream; a block's (normed) input, at the end the final-normed rows that
 * want logits; a block's output; cos / sin per token; the logits; a row of an interleaved
 * embedding */
enum { FWD_X = S_X, FWD_A = S_A, FWD_OUT = S_OUT, FWD_ROPE = S_ROPE, FWD_LOGITS = S_LOGITS, FWD_EMB = S_BIG };

/* Row `token` of the embedding as n floats. A tied embedding is also the output head, which the
 * CPU backend may have interleaved (X16, backend_cpu.c): its row comes out of its group of 16. */
static void embed_row(lfm2c_model *m, int token, float *dst, int64_t n) {
    const tensor *e = &m->tok_embd;
    const uint32_t base = x16_base(e->type);
    if (!base) {
        dequantize_row(e->type, e->data + (size_t)token * e->row_bytes, dst, n);
        return;
    }
    uint8_t *row = slot(m, FWD_EMB, e->row_bytes);
    x16_unpack_row(base, e->data + (size_t)(token / X16_ROWS) * X16_ROWS * e->row_bytes, e->row_bytes, token % X16_ROWS,
                   row);
    dequantize_row(base, row, dst, n);
}

/* A token whose logits the output head computes: it wants a row, and its sequence is not an
 * embedding one (whose rows are the final norm's output). */
static bool wants_head(const fwd_token *tk) { return tk->out_row >= 0 && !tk->seq->embeddings; }

/* Where the head can write the logits itself: when the tokens that want them are consecutive
 * rows of one sequence's logits (a decode step; a prompt with every position's logits), their
 * first row; else NULL (they are computed together and copied out). */
static float *head_rows(const fwd_token *toks, int T, int V) {
    struct lfm2c_session *seq = NULL;
    int first = -1, n = 0;
    for (int t = 0; t < T; t++) {
        if (!wants_head(&toks[t])) continue;
        if (!n) seq = toks[t].seq, first = toks[t].out_row;
        else if (toks[t].seq != seq || toks[t].out_row != first + n) return NULL;
        n++;
    }
    return n ? seq->logits + (size_t)first * V : NULL;
}

int forward_cpu(lfm2c_model *m, const fwd_token *toks, int T, lfm2c_error *err) {
    const lfm2c_model_info *in = &m->info;
    const int H = in->n_embd, hd = in->head_dim;
    int n_out = 0;
    for (int t = 0; t < T; t++) n_out += wants_head(&toks[t]);
    float *direct = head_rows(toks, T, in->n_vocab); /* such logits need no scratch */
    if (!reserve_scratch(m, T, direct ? 0 : n_out)) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for a batch of %d tokens", T);
        return -1;
    }
    threadpool_step(m->pool, m->pool_key + T); /* passes of T tokens cost alike: a busy machine may go solo */
    cpu_model_of(m)->prof_pass = T == 1;       /* decode of one sequence: its products are profiled */
    replay_pass_begin(m, T == 1);              /* and `bench` may record their weight reads (replay.h) */
    cpu_model_of(m)->lora_pass = false;        /* some token's sequence runs with adapters (lora.h) */
    for (int t = 0; t < T && !cpu_model_of(m)->lora_pass; t++) cpu_model_of(m)->lora_pass = toks[t].seq->n_lora > 0;
    float *x = slot(m, FWD_X, sizeof(float) * (size_t)T * H);
    float *a = slot(m, FWD_A, sizeof(float) * (size_t)T * H);
    float *out = slot(m, FWD_OUT, sizeof(float) * (size_t)T * H);
    float *rope = slot(m, FWD_ROPE, sizeof(float) * (size_t)T * hd);
    for (int t = 0; t < T; t++) {
        if (toks[t].embd) memcpy(x + (size_t)t * H, toks[t].embd, sizeof(float) * (size_t)H);
        else embed_row(m, toks[t].token, x + (size_t)t * H, H);
        for (int i = 0; i < hd / 2; i++) { /* cos / sin per token, shared by all layers */
            double angle = toks[t].pos * pow(in->rope_theta, -2.0 * i / hd);
            rope[(size_t)t * hd + 2 * i] = (float)cos(angle);
            rope[(size_t)t * hd + 2 * i + 1] = (float)sin(angle);
        }
    }
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        add_norm(m, T, x, NULL, a, &L->attn_norm);
        if (L->is_attn) attention_block(m, L, toks, T, a, rope, out);
        else conv_block(m, L, toks, T, a, out);
        add_norm(m, T, x, out, a, &L->ffn_norm);
        if (L->is_moe) moe_ffn(m, L, toks, T, a, out);
        else dense_ffn(m, L, toks, T, a, out);
        add_norm(m, T, x, out, NULL, NULL);
    }

    /* final norm, for the tokens that want a row: an embedding sequence's row is the norm's
     * output itself; the others' go through the (tied) output head */
    const int V = in->n_vocab;
    n_out = 0;
    for (int t = 0; t < T; t++) {
        if (toks[t].out_row < 0) continue;
        float *dst = wants_head(&toks[t]) ? a + (size_t)n_out++ * H : toks[t].seq->logits + (size_t)toks[t].out_row * V;
        rmsnorm(dst, x + (size_t)t * H, (const float *)m->out_norm.data, H, in->norm_eps);
    }
    if (!n_out) return 0;
    float *logits = direct ? direct : slot(m, FWD_LOGITS, sizeof(float) * (size_t)n_out * V);
    matmul(m, NULL, &m->output, a, n_out, logits);
    for (int t = 0, i = 0; !direct && t < T; t++)
        if (wants_head(&toks[t]))
            memcpy(toks[t].seq->logits + (size_t)toks[t].out_row * V, logits + (size_t)i++ * V, sizeof(float) * V);
    return 0;
}
