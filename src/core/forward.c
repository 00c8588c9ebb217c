/* forward.c — the LFM2 forward pass on the CPU (spec section 2).
 *
 * One function per block: conv_block, attention_block, dense_ffn, moe_ffn; forward() strings
 * them together. A batch holds tokens of one or more sequences (prefill == decode with more
 * tokens); all matrix work goes through matmul_run(), which splits rows over the thread pool
 * and calls the kernel table (kernels.h), or in reference mode a plain float dot. */
#include "core/forward.h"
#include "core/error.h"
#include "cpu/kernels.h"
#include "core/model.h"
#include "formats/ggml_types.h"
#include "core/session.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- scratch buffers, reused across calls (grow-only) ---------------------------------------- */

enum { S_X, S_A, S_OUT, S_BIG, S_BIG2, S_HID, S_ROUTER, S_MOE_G, S_MOE_U, S_MOE_D, S_ATT,
       S_ROPE, S_LOGITS, S_ACT0, S_ACT1, S_ACT2, S_TASKS, S_NSLOTS };

struct forward_scratch {
    void *buf[S_NSLOTS];
    size_t cap[S_NSLOTS];
    int *ints;
    size_t ints_cap;
};

forward_scratch *forward_scratch_new(void) { return calloc(1, sizeof(forward_scratch)); }

void forward_scratch_free(forward_scratch *s) {
    if (!s) return;
    for (int i = 0; i < S_NSLOTS; i++) free(s->buf[i]);
    free(s->ints);
    free(s);
}

static void *scratch(forward_scratch *s, int slot, size_t bytes) {
    if (bytes > s->cap[slot]) {
        free(s->buf[slot]);
        size_t cap = (bytes + 63) / 64 * 64;
        s->buf[slot] = aligned_alloc(64, cap);
        s->cap[slot] = s->buf[slot] ? cap : 0;
    }
    return s->buf[slot];
}

/* ---- matrix products ---------------------------------------------------------------------- */

/* y[c * ldy + r] = W_e[r] · x[c] for rows r < W.ne[1] and tokens c < n_cols. The activations
 * are given already in the format the weight type multiplies with (act_format()). */
typedef struct mm_task {
    const tensor *w;
    int expert;
    const uint8_t *act;
    size_t act_row;
    int n_cols;
    float *y;
    size_t ldy;
} mm_task;

typedef struct mm_job {
    const lfm2c_model *m;
    const mm_task *tasks;
    int n_tasks;
    double n_bytes;   /* weight bytes of all tasks, counted in whole row blocks */
    int n_parts;      /* mm_worker: the bytes are cut into n_parts, claimed one at a time */
    atomic_int next;
} mm_job;

/* Work is split over threads in blocks of ROW_BLOCK rows; each thread then makes ONE kernel
 * call per task over all its rows and all columns, so kernels that repack activations (AMX)
 * do it once per call, and each tile of weights is loaded once for the whole batch. */
enum { ROW_BLOCK = 16 };

static uint32_t act_format(const lfm2c_model *m, uint32_t wtype) {
    return m->reference ? GGML_F32 : vec_dot_type(wtype);
}

static void mm_rows(const lfm2c_model *m, const mm_task *t, int64_t r0, int64_t nr) {
    const tensor *w = t->w;
    const uint8_t *wd = w->data + ((size_t)t->expert * w->ne[1] + r0) * w->row_bytes;
    if (m->reference) {
        for (int c = 0; c < t->n_cols; c++)
            for (int64_t r = 0; r < nr; r++)
                t->y[c * t->ldy + r0 + r] = vec_dot_float(w->type, w->ne[0], wd + r * w->row_bytes,
                                                          (const float *)(t->act + c * t->act_row));
        return;
    }
    m->kern->matmul(w->type, w->ne[0], wd, w->row_bytes, (int)nr, t->act, t->act_row, t->n_cols,
                    t->y + r0, t->ldy);
}

/* Threads split the row blocks of all tasks by bytes of weights, not by rows: a job may mix
 * Q4_K and Q6_K matrices, and decode time is the bytes read. mm_part runs part ip of np. */
static void mm_part(const mm_job *job, int ip, int np) {
    const double lo_b = (double)job->n_bytes * ip / np, hi_b = (double)job->n_bytes * (ip + 1) / np;
    double base = 0;
    for (int i = 0; i < job->n_tasks; i++) {
        const mm_task *t = &job->tasks[i];
        const int64_t rows = t->w->ne[1], nb = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
        const double block_bytes = (double)ROW_BLOCK * t->w->row_bytes;
        /* blocks whose start lies in [lo_b, hi_b) are ours */
        int64_t b0 = lo_b > base ? (int64_t)ceil((lo_b - base) / block_bytes) : 0;
        int64_t b1 = hi_b > base ? (int64_t)ceil((hi_b - base) / block_bytes) : 0;
        if (b0 > nb) b0 = nb;
        if (b1 > nb) b1 = nb;
        if (b0 < b1) {
            int64_t r0 = b0 * ROW_BLOCK, r1 = b1 * ROW_BLOCK < rows ? b1 * ROW_BLOCK : rows;
            mm_rows(job->m, t, r0, r1 - r0);
        }
        base += nb * block_bytes;
    }
}

/* The parts are claimed dynamically (MM_PARTS_PER_THREAD per thread): a descheduled thread
 * delays the job by at most the part it is in; the rest of its share is taken by the others. */
enum { MM_PARTS_PER_THREAD = 4 };

static void mm_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    mm_job *job = arg;
    for (int ip; (ip = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed)) < job->n_parts;)
        mm_part(job, ip, job->n_parts);
}

/* Jobs smaller than this (weight bytes x columns) run on the calling thread alone: waking
 * and joining the others would cost more than the work (and, on a busy machine, much more). */
enum { INLINE_WORK = 64 << 10 };

/* Decode (a few columns): the same bytes do not take the same time on every thread (memory
 * and cores are shared, Q6_K costs more per byte than Q4_K, a worker starts late), so a plain
 * static split leaves one thread waiting. The rows are cut into chunks of about DYN_CHUNK_BYTES;
 * each thread owns a contiguous range of them (the static split) and takes from its front, a
 * few at a time, so it still reads one long stream; a thread that runs out takes single chunks
 * from the back of another's range. Each output row is computed alone, so which thread computes
 * it does not change a bit of it. Prefill keeps mm_worker: AMX repacks activations per call. */
enum { DYN_MAX_COLS = 4, DYN_CHUNK_BYTES = 32 << 10, DYN_MAX_THREADS = 64, DYN_MAX_TASKS = 256 };

typedef struct dyn_job {
    const lfm2c_model *m;
    const mm_task *tasks;
    int n_tasks;
    int n_ranges;                        /* one per running thread */
    int64_t first[DYN_MAX_TASKS + 1];   /* first chunk of each task; first[n_tasks] = all */
    int64_t chunk_rows[DYN_MAX_TASKS];
    struct { _Alignas(64) _Atomic uint64_t fb; } range[DYN_MAX_THREADS];   /* front << 32 | back */
} dyn_job;

/* rows of chunks [u0, u1) of one task (a chunk range never crosses a task: see dyn_take) */
static void dyn_rows(const dyn_job *j, int64_t u0, int64_t u1) {
    int i = 0;
    while (u0 >= j->first[i + 1]) i++;
    const mm_task *t = &j->tasks[i];
    int64_t r0 = (u0 - j->first[i]) * j->chunk_rows[i], r1 = (u1 - j->first[i]) * j->chunk_rows[i];
    if (r1 > t->w->ne[1]) r1 = t->w->ne[1];
    mm_rows(j->m, t, r0, r1 - r0);
}

/* Takes up to want chunks of range v, from the front or (one) from the back; 0 when empty. */
static int dyn_take(dyn_job *j, int v, int from_front, int64_t *u0, int64_t *u1) {
    uint64_t fb = atomic_load_explicit(&j->range[v].fb, memory_order_relaxed);
    for (;;) {
        uint32_t f = (uint32_t)(fb >> 32), b = (uint32_t)fb;
        if (f >= b) return 0;
        uint32_t nf = f, nb = b;
        if (from_front) {
            uint32_t k = (b - f) / 4 ? (b - f) / 4 : 1;
            int i = 0;   /* stay inside f's task */
            while ((int64_t)f >= j->first[i + 1]) i++;
            if ((int64_t)(f + k) > j->first[i + 1]) k = (uint32_t)(j->first[i + 1] - f);
            nf = f + k;
        } else {
            nb = b - 1;
        }
        if (atomic_compare_exchange_weak_explicit(&j->range[v].fb, &fb, (uint64_t)nf << 32 | nb,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            *u0 = from_front ? f : nb;
            *u1 = from_front ? nf : b;
            return 1;
        }
    }
}

/* Index ith owns range ith when there is one (a pool of more indices than running threads has
 * one range per thread; the other indices only help) and then helps the others. */
static void mm_worker_dyn(void *arg, int ith, int nth) {
    (void)nth;
    dyn_job *j = arg;
    const int nr = j->n_ranges;
    int64_t u0, u1;
    if (ith < nr)
        while (dyn_take(j, ith, 1, &u0, &u1)) dyn_rows(j, u0, u1);
    for (int d = 0; d < nr; d++) {
        int v = (ith + d) % nr;
        if (v != ith)
            while (dyn_take(j, v, 0, &u0, &u1)) dyn_rows(j, u0, u1);
    }
}

/* Runs several independent products in one parallel job (e.g. q, k and v; or all experts). */
static void matmul_run(lfm2c_model *m, const mm_task *tasks, int n) {
    mm_job job = {m, tasks, n, 0, 0, 0};
    int max_cols = 0;
    for (int i = 0; i < n; i++) {
        job.n_bytes += (double)((tasks[i].w->ne[1] + ROW_BLOCK - 1) / ROW_BLOCK) * ROW_BLOCK * tasks[i].w->row_bytes;
        if (tasks[i].n_cols > max_cols) max_cols = tasks[i].n_cols;
    }
    if (job.n_bytes <= 0) return;
    const int nth = threadpool_active(m->pool);   /* threads taking part, not indices */
    if (nth < 2 || job.n_bytes * max_cols < INLINE_WORK) {
        mm_part(&job, 0, 1);
        return;
    }
    job.n_parts = nth * MM_PARTS_PER_THREAD;
    if (max_cols > DYN_MAX_COLS || nth > DYN_MAX_THREADS || n > DYN_MAX_TASKS) {
        threadpool_run(m->pool, mm_worker, &job);
        return;
    }
    dyn_job djob, *dj = &djob;   /* about 8 KB of stack */
    dj->m = m;
    dj->tasks = tasks;
    dj->n_tasks = n;
    dj->n_ranges = nth;
    dj->first[0] = 0;
    double bytes = 0;
    for (int i = 0; i < n; i++) {
        const tensor *w = tasks[i].w;
        int64_t k = DYN_CHUNK_BYTES / ((int64_t)ROW_BLOCK * (int64_t)w->row_bytes);
        dj->chunk_rows[i] = (k < 1 ? 1 : k) * ROW_BLOCK;
        dj->first[i + 1] = dj->first[i] + (w->ne[1] + dj->chunk_rows[i] - 1) / dj->chunk_rows[i];
    }
    const int64_t N = dj->first[n];
    if (N >= (int64_t)UINT32_MAX) {
        threadpool_run(m->pool, mm_worker, &job);
        return;
    }
    /* the static split by bytes, in whole chunks */
    int64_t start = 0;
    for (int t = 0, i = 0; t < nth; t++) {
        double goal = job.n_bytes * (t + 1) / nth;
        int64_t end = start;
        while (end < N && (t == nth - 1 || bytes < goal)) {
            while (end >= dj->first[i + 1]) i++;
            bytes += (double)dj->chunk_rows[i] * tasks[i].w->row_bytes;
            end++;
        }
        atomic_store_explicit(&dj->range[t].fb, (uint64_t)start << 32 | (uint64_t)end, memory_order_relaxed);
        start = end;
    }
    threadpool_run(m->pool, mm_worker_dyn, dj);
}

/* Activations x[T][n] in the format weights of type wtype multiply with, in scratch slot. */
typedef struct act_buf { const uint8_t *data; size_t row; } act_buf;

typedef struct quant_job { const lfm2c_model *m; uint32_t fmt; const float *x; int64_t n; uint8_t *dst; size_t row; int T; } quant_job;

static void quant_worker(void *arg, int ith, int nth) {
    const quant_job *q = arg;
    for (int t = q->T * ith / nth; t < q->T * (ith + 1) / nth; t++)
        q->m->kern->quantize_act(q->fmt, q->x + (size_t)t * q->n, q->dst + (size_t)t * q->row, q->n);
}

static act_buf prepare_act(lfm2c_model *m, int slot, const float *x, int T, int64_t n, uint32_t wtype) {
    uint32_t fmt = act_format(m, wtype);
    act_buf a;
    if (fmt == GGML_F32) {
        a.data = (const uint8_t *)x;
        a.row = (size_t)n * sizeof(float);
        return a;
    }
    a.row = ggml_row_size(fmt, n);
    uint8_t *dst = scratch(m->scratch, slot, a.row * (size_t)T);
    quant_job q = {m, fmt, x, n, dst, a.row, T};
    if (T >= 8) threadpool_run(m->pool, quant_worker, &q);
    else quant_worker(&q, 0, 1);
    a.data = dst;
    return a;
}

/* y[T][rows] = W · x for one weight (convenience for a single product). */
static void matmul(lfm2c_model *m, const tensor *w, const float *x, int T, float *y) {
    act_buf a = prepare_act(m, S_ACT0, x, T, w->ne[0], w->type);
    mm_task t = {w, 0, a.data, a.row, T, y, (size_t)w->ne[1]};
    matmul_run(m, &t, 1);
}

/* ---- small pieces --------------------------------------------------------------------------- */

static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

/* NEOX rotation of one head: pairs (i, i + d/2) by angle pos * theta^(-2i/d). */
static void rope_neox(float *x, const float *cs, int d) {
    for (int i = 0; i < d / 2; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1], a = x[i], b = x[i + d / 2];
        x[i] = a * c - b * s;
        x[i + d / 2] = b * c + a * s;
    }
}

/* ---- gated short-conv block (spec 2.3) ------------------------------------------------------ */

typedef struct conv_job {
    const fwd_token *toks; int T, H, layer_index;
    const float *z;      /* [T][3H]: B | C | X */
    const float *w;      /* [H][3] taps: oldest, previous, current */
    float *o;            /* [T][H] */
} conv_job;

static void conv_worker(void *arg, int ith, int nth) {
    const conv_job *j = arg;
    int c0 = j->H * ith / nth, c1 = j->H * (ith + 1) / nth;
    for (int t = 0; t < j->T; t++) {   /* in order: each token updates its sequence's state */
        float *state = j->toks[t].seq->conv + (size_t)j->layer_index * 2 * j->H;
        const float *B = j->z + (size_t)t * 3 * j->H, *C = B + j->H, *X = C + j->H;
        for (int c = c0; c < c1; c++) {
            float u = B[c] * X[c];
            const float *w = j->w + 3 * c;
            float v = w[0] * state[c] + w[1] * state[j->H + c] + w[2] * u;
            state[c] = state[j->H + c];
            state[j->H + c] = u;
            j->o[(size_t)t * j->H + c] = C[c] * v;
        }
    }
}

static void conv_block(lfm2c_model *m, const layer *L, const fwd_token *toks, int T, const float *a, float *out) {
    const int H = m->info.n_embd;
    float *z = scratch(m->scratch, S_BIG, sizeof(float) * (size_t)T * 3 * H);
    float *o = scratch(m->scratch, S_HID, sizeof(float) * (size_t)T * H);
    matmul(m, &L->conv_in, a, T, z);
    conv_job j = {toks, T, H, L->conv_index, z, (const float *)L->conv_w.data, o};
    if ((int64_t)T * H < INLINE_WORK / 2) conv_worker(&j, 0, 1);   /* decode: a few µs at most */
    else threadpool_run(m->pool, conv_worker, &j);
    matmul(m, &L->conv_out, o, T, out);
}

/* ---- attention block (spec 2.4) ------------------------------------------------------------- */

/* Attention work items: a run of consecutive tokens of one sequence (at most qt) x one KV
 * head x one chunk of the query heads sharing it, so that one kernel call holds at most
 * ATTN_MAX_Q queries that read the same K / V blocks. The kernel contract makes each query's
 * result independent of the others in its call: how tokens are grouped changes no bit. */
typedef struct attn_job {
    const lfm2c_model *m; const layer *L; const fwd_token *toks;
    const float *q;    /* [T][nh*hd], normed, rotated and scaled by 1/sqrt(hd) */
    float *o;          /* [T][nh*hd] */
    const int *runs;   /* run r = tokens runs[r] .. runs[r+1]-1 */
    int n_runs, n_chunks, per_chunk;
    atomic_int next;   /* next item to claim */
} attn_job;

static void attn_item(const attn_job *j, int it) {
    const int nh = j->m->info.n_head, hd = j->m->info.head_dim, nkv = j->L->n_head_kv;
    const int group = nh / nkv, items_per_run = nkv * j->n_chunks;
    const int r = it / items_per_run, g = it % items_per_run / j->n_chunks, ch = it % j->n_chunks;
    const int h0 = g * group + ch * j->per_chunk;
    const int h1 = h0 + j->per_chunk < (g + 1) * group ? h0 + j->per_chunk : (g + 1) * group;
    const struct lfm2c_session *s = j->toks[j->runs[r]].seq;
    attn_call c = {s->type_k, s->type_v, hd, j->m->info.n_head_kv_max, g, s->k[j->L->attn_index],
                   s->v[j->L->attn_index], s->v_row, 0, {0}, {0}, {0}};
    for (int t = j->runs[r]; t < j->runs[r + 1]; t++)
        for (int h = h0; h < h1; h++) {
            c.q[c.nq] = j->q + (size_t)t * nh * hd + (size_t)h * hd;
            c.out[c.nq] = j->o + (size_t)t * nh * hd + (size_t)h * hd;
            c.n[c.nq++] = j->toks[t].pos + 1;   /* causal: positions 0..pos */
        }
    j->m->kern->attention(&c);
}

static void attn_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    attn_job *j = arg;
    /* items claimed one at a time: later tokens cost more under the causal mask, and a
     * descheduled thread holds up only the item it is in */
    const int n_items = j->n_runs * j->L->n_head_kv * j->n_chunks;
    for (int it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < n_items;) attn_item(j, it);
}

static void attention_block(lfm2c_model *m, const layer *L, const fwd_token *toks, int T,
                            const float *a, const float *rope, float *out) {
    const int nh = m->info.n_head, hd = m->info.head_dim, nkv = L->n_head_kv;
    const int nq = nh * hd, kv_dim = nkv * hd;
    const float eps = m->info.norm_eps, scale = 1.0f / sqrtf((float)hd);
    float *q = scratch(m->scratch, S_BIG, sizeof(float) * (size_t)T * nq);
    float *kv = scratch(m->scratch, S_BIG2, sizeof(float) * (size_t)T * 2 * kv_dim);
    float *k = kv, *v = kv + (size_t)T * kv_dim;

    /* q, k, v in one parallel job; they share the input (but maybe not its format) */
    act_buf aq = prepare_act(m, S_ACT0, a, T, L->wq.ne[0], L->wq.type);
    act_buf ak = act_format(m, L->wk.type) == act_format(m, L->wq.type) ? aq
                 : prepare_act(m, S_ACT1, a, T, L->wk.ne[0], L->wk.type);
    act_buf av = act_format(m, L->wv.type) == act_format(m, L->wq.type) ? aq
                 : act_format(m, L->wv.type) == act_format(m, L->wk.type) ? ak
                 : prepare_act(m, S_ACT2, a, T, L->wv.ne[0], L->wv.type);
    mm_task tasks[3] = {{&L->wq, 0, aq.data, aq.row, T, q, (size_t)nq},
                        {&L->wk, 0, ak.data, ak.row, T, k, (size_t)kv_dim},
                        {&L->wv, 0, av.data, av.row, T, v, (size_t)kv_dim}};
    matmul_run(m, tasks, 3);

    /* per-head RMSNorm, then RoPE (q also scaled), then store k / v in the sequence's cache */
    const float *qn = (const float *)L->q_norm.data, *kn = (const float *)L->k_norm.data;
    double work = 0;
    for (int t = 0; t < T; t++) {
        const float *cs = rope + (size_t)t * hd;
        for (int h = 0; h < nh; h++) {
            float *x = q + (size_t)t * nq + h * hd;
            rmsnorm(x, x, qn, hd, eps);
            rope_neox(x, cs, hd);
            for (int i = 0; i < hd; i++) x[i] *= scale;
        }
        struct lfm2c_session *s = toks[t].seq;
        for (int h = 0; h < nkv; h++) {
            float *x = k + (size_t)t * kv_dim + h * hd;
            rmsnorm(x, x, kn, hd, eps);
            rope_neox(x, cs, hd);
        }
        kv_store_k(s->type_k, hd, m->info.n_head_kv_max, nkv, s->k[L->attn_index], toks[t].pos, k + (size_t)t * kv_dim);
        kv_store_v(s->type_v, kv_dim, s->v[L->attn_index], s->v_row, toks[t].pos, v + (size_t)t * kv_dim);
        work += (double)(toks[t].pos + 1) * nh * hd;
    }

    /* runs of consecutive tokens of one sequence, at most qt long */
    const int group = nh / nkv, n_chunks = (group + ATTN_MAX_Q - 1) / ATTN_MAX_Q;
    const int per_chunk = (group + n_chunks - 1) / n_chunks, qt = ATTN_MAX_Q / per_chunk;
    int *runs = scratch(m->scratch, S_ATT, sizeof(int) * ((size_t)T + 1));
    int n_runs = 0;
    for (int t = 0; t < T; t++)
        if (t == 0 || toks[t].seq != toks[t - 1].seq || t - runs[n_runs - 1] == qt) runs[n_runs++] = t;
    runs[n_runs] = T;

    float *o = scratch(m->scratch, S_HID, sizeof(float) * (size_t)T * nq);
    attn_job j = {m, L, toks, q, o, runs, n_runs, n_chunks, per_chunk, 0};
    if (work < INLINE_WORK / 2) attn_worker(&j, 0, 1);
    else threadpool_run(m->pool, attn_worker, &j);
    matmul(m, &L->wo, o, T, out);
}

/* ---- feed-forward: dense SwiGLU (spec 2.5) and MoE (spec 2.6) -------------------------------- */

static void swiglu(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = silu(g[i]) * u[i];
}

static void dense_ffn(lfm2c_model *m, const layer *L, int T, const float *f, float *out) {
    const int64_t F = L->ffn_gate.ne[1];
    float *g = scratch(m->scratch, S_BIG, sizeof(float) * (size_t)T * F);
    float *u = scratch(m->scratch, S_BIG2, sizeof(float) * (size_t)T * F);
    act_buf a = prepare_act(m, S_ACT0, f, T, L->ffn_gate.ne[0], L->ffn_gate.type);
    act_buf b = act_format(m, L->ffn_up.type) == act_format(m, L->ffn_gate.type) ? a
                : prepare_act(m, S_ACT1, f, T, L->ffn_up.ne[0], L->ffn_up.type);
    mm_task tasks[2] = {{&L->ffn_gate, 0, a.data, a.row, T, g, (size_t)F},
                        {&L->ffn_up, 0, b.data, b.row, T, u, (size_t)F}};
    matmul_run(m, tasks, 2);
    swiglu(g, u, (size_t)T * F);
    matmul(m, &L->ffn_down, g, T, out);
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
            if (!taken[e] && (best < 0 || v > bv)) { best = e; bv = v; }
        }
        taken[best] = true;
        sel[j] = best;
        w[j] = s[best];
        sum += s[best];
    }
    if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
    for (int j = 0; j < k; j++) w[j] /= sum;
}

static void moe_ffn(lfm2c_model *m, const layer *L, int T, const float *f, float *out) {
    const int E = m->info.n_expert, k = m->info.n_expert_used;
    const int64_t H = m->info.n_embd, Fe = L->gate_exps.ne[1];
    float *r = scratch(m->scratch, S_ROUTER, sizeof(float) * (size_t)T * (E + k));
    matmul(m, &L->router, f, T, r);

    /* route every token, then group the (token, slot) pairs by expert so each expert's weights
     * are read once for the whole batch */
    int *sel = m->scratch->ints, *order = sel + (size_t)T * k, *start = order + (size_t)T * k;
    float *wsel = scratch(m->scratch, S_LOGITS, sizeof(float) * (size_t)T * k);
    const float *bias = L->expert_bias.data ? (const float *)L->expert_bias.data : NULL;
    for (int t = 0; t < T; t++) moe_route(r + (size_t)t * E, bias, E, k, sel + t * k, wsel + t * k);
    memset(start, 0, sizeof(int) * (E + 1));
    for (int i = 0; i < T * k; i++) start[sel[i] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    int fill[4096];
    memcpy(fill, start, sizeof(int) * E);
    for (int i = 0; i < T * k; i++) order[fill[sel[i]]++] = i;   /* pair i = t * k + j */

    /* gather each pair's activation row (already quantized once) into expert order */
    act_buf a = prepare_act(m, S_ACT0, f, T, H, L->gate_exps.type);
    const int n_pairs = T * k;
    uint8_t *ga = scratch(m->scratch, S_ACT1, a.row * (size_t)n_pairs);
    for (int i = 0; i < n_pairs; i++) memcpy(ga + i * a.row, a.data + (order[i] / k) * a.row, a.row);
    float *G = scratch(m->scratch, S_MOE_G, sizeof(float) * (size_t)n_pairs * Fe);
    float *U = scratch(m->scratch, S_MOE_U, sizeof(float) * (size_t)n_pairs * Fe);
    float *D = scratch(m->scratch, S_MOE_D, sizeof(float) * (size_t)n_pairs * H);
    mm_task *tasks = scratch(m->scratch, S_TASKS, sizeof(mm_task) * 2 * (size_t)E);   /* reserved */
    int nt = 0;
    for (int e = 0; e < E; e++) {
        int n = start[e + 1] - start[e];
        if (!n) continue;
        const uint8_t *ae = ga + (size_t)start[e] * a.row;
        tasks[nt++] = (mm_task){&L->gate_exps, e, ae, a.row, n, G + (size_t)start[e] * Fe, (size_t)Fe};
        tasks[nt++] = (mm_task){&L->up_exps, e, ae, a.row, n, U + (size_t)start[e] * Fe, (size_t)Fe};
    }
    matmul_run(m, tasks, nt);
    swiglu(G, U, (size_t)n_pairs * Fe);
    act_buf h = prepare_act(m, S_ACT2, G, n_pairs, Fe, L->down_exps.type);
    nt = 0;
    for (int e = 0; e < E; e++) {
        int n = start[e + 1] - start[e];
        if (!n) continue;
        tasks[nt++] = (mm_task){&L->down_exps, e, h.data + (size_t)start[e] * h.row, h.row, n,
                                D + (size_t)start[e] * H, (size_t)H};
    }
    matmul_run(m, tasks, nt);
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

/* Grows every scratch buffer to what a batch of T tokens (n_out of them wanting logits) needs,
 * before any work starts: an allocation failure is then an error, not a crash mid-layer. */
static bool reserve_scratch(lfm2c_model *m, const fwd_token *toks, int T, int n_out) {
    const lfm2c_model_info *in = &m->info;
    const size_t H = in->n_embd, hd = in->head_dim, nq = (size_t)in->n_head * hd;
    const size_t kv = (size_t)in->n_head_kv_max * hd, F = in->n_ff, Fe = in->n_ff_exp, E = in->n_expert;
    const size_t k = in->n_expert_used > 0 ? in->n_expert_used : 1, f = sizeof(float), t = (size_t)T;
    size_t big = 3 * H > nq ? 3 * H : nq, widest = H > nq ? H : nq;
    if (F > big) big = F;
    if (F > widest) widest = F;
    if (Fe > widest) widest = Fe;
    const size_t need[S_NSLOTS] = {
        [S_X] = t * H * f, [S_A] = t * H * f, [S_OUT] = t * H * f, [S_ROPE] = t * hd * f,
        [S_BIG] = t * big * f, [S_BIG2] = t * (2 * kv > F ? 2 * kv : F) * f, [S_HID] = t * widest * f,
        [S_ATT] = (t + 1) * sizeof(int),
        [S_ROUTER] = t * (E + k) * f, [S_MOE_G] = t * k * Fe * f, [S_MOE_U] = t * k * Fe * f,
        [S_MOE_D] = t * k * H * f, [S_LOGITS] = ((size_t)n_out * in->n_vocab > t * k ? (size_t)n_out * in->n_vocab : t * k) * f,
        [S_ACT0] = t * k * act_row_bytes((int64_t)widest), [S_ACT1] = t * k * act_row_bytes((int64_t)widest),
        [S_ACT2] = t * k * act_row_bytes((int64_t)widest), [S_TASKS] = 2 * E * sizeof(mm_task),
    };
    for (int i = 0; i < S_NSLOTS; i++)
        if (need[i] && !scratch(m->scratch, i, need[i])) return false;
    size_t n_ints = t * k * 2 + E + 1;
    if (m->scratch->ints_cap < n_ints) {
        free(m->scratch->ints);
        m->scratch->ints = malloc(n_ints * sizeof(int));
        m->scratch->ints_cap = m->scratch->ints ? n_ints : 0;
        if (!m->scratch->ints) return false;
    }
    return true;
}

int forward_cpu(lfm2c_model *m, const fwd_token *toks, int T, lfm2c_error *err) {
    const lfm2c_model_info *in = &m->info;
    const int H = in->n_embd, hd = in->head_dim;
    forward_scratch *s = m->scratch;
    int n_out = 0;
    for (int t = 0; t < T; t++) n_out += toks[t].out_row >= 0;
    if (!reserve_scratch(m, toks, T, n_out)) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for a batch of %d tokens", T);
        return -1;
    }
    threadpool_step(m->pool, T);   /* passes of T tokens cost alike: a busy machine may go solo */
    float *x = scratch(s, S_X, sizeof(float) * (size_t)T * H);
    float *a = scratch(s, S_A, sizeof(float) * (size_t)T * H);
    float *out = scratch(s, S_OUT, sizeof(float) * (size_t)T * H);
    float *rope = scratch(s, S_ROPE, sizeof(float) * (size_t)T * hd);
    for (int t = 0; t < T; t++) {
        dequantize_row(m->tok_embd.type, m->tok_embd.data + (size_t)toks[t].token * m->tok_embd.row_bytes,
                       x + (size_t)t * H, H);
        for (int i = 0; i < hd / 2; i++) {   /* cos / sin per token, shared by all layers */
            double angle = toks[t].pos * pow(in->rope_theta, -2.0 * i / hd);
            rope[(size_t)t * hd + 2 * i] = (float)cos(angle);
            rope[(size_t)t * hd + 2 * i + 1] = (float)sin(angle);
        }
    }
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        for (int t = 0; t < T; t++)
            rmsnorm(a + (size_t)t * H, x + (size_t)t * H, (const float *)L->attn_norm.data, H, in->norm_eps);
        if (L->is_attn) attention_block(m, L, toks, T, a, rope, out);
        else conv_block(m, L, toks, T, a, out);
        for (size_t i = 0; i < (size_t)T * H; i++) x[i] += out[i];

        for (int t = 0; t < T; t++)
            rmsnorm(a + (size_t)t * H, x + (size_t)t * H, (const float *)L->ffn_norm.data, H, in->norm_eps);
        if (L->is_moe) moe_ffn(m, L, T, a, out);
        else dense_ffn(m, L, T, a, out);
        for (size_t i = 0; i < (size_t)T * H; i++) x[i] += out[i];
    }

    /* final norm and the (tied) output head, only for the tokens whose logits are wanted */
    n_out = 0;
    for (int t = 0; t < T; t++)
        if (toks[t].out_row >= 0)
            rmsnorm(a + (size_t)n_out++ * H, x + (size_t)t * H, (const float *)m->out_norm.data, H, in->norm_eps);
    if (!n_out) return 0;
    const int V = in->n_vocab;
    float *logits = scratch(s, S_LOGITS, sizeof(float) * (size_t)n_out * V);
    matmul(m, &m->output, a, n_out, logits);
    for (int t = 0, i = 0; t < T; t++)
        if (toks[t].out_row >= 0)
            memcpy(toks[t].seq->logits + (size_t)toks[t].out_row * V, logits + (size_t)i++ * V, sizeof(float) * V);
    return 0;
}
