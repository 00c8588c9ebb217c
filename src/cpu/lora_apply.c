/* lora_apply.c — LoRA at run time on the CPU backend (BACKEND_CAP_LORA): after each adapted
 * product of the forward (forward.c's matmul helper and its grouped expert products) it adds
 * y += s B (A x) for every adapter of the row's sequence, in float. Small work stays on the
 * calling thread; rows go to the pool when there are as many as threads, else (decode) each
 * row's work is split over the pool with the same sums in the same order, so the result is the
 * same bits either way. Loading and checking the adapters is core/lora.c's. */
#include "cpu/backend_cpu.h"
#include "cpu/matmul.h"
#include "core/lora.h"
#include "core/session.h"
#include "base/threadpool.h"

#include <stddef.h>
#include <stdint.h>


/* 8 partial sums: the compiler vectorizes it (one chain would cost a few cycles a value) */
static float dot(const float *a, const float *b, int64_t n) {
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) p[k] += a[i + k] * b[i + k];
    for (; i < n; i++) p[0] += a[i] * b[i];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

typedef struct lora_job {
    const fwd_token *toks;
    int id, l, expert;
    const float *x;
    size_t ldx;
    const int *xrow, *tok;
    int n;
    float *y;
    size_t ldy;
} lora_job;

static void lora_rows(const lora_job *j, int i0, int i1) {
    float ax[LORA_MAX_RANK];
    for (int i = i0; i < i1; i++) {
        const struct lfm2c_session *s = j->toks[j->tok ? j->tok[i] : i].seq;
        const float *x = j->x + (size_t)(j->xrow ? j->xrow[i] : i) * j->ldx;
        float *y = j->y + (size_t)i * j->ldy;
        for (int k = 0; k < s->n_lora; k++) {
            const lora_mat *mt = lora_get(s->lora[k], j->l, j->id);
            const float sc = s->lora_scale[k] * (mt ? mt->scale : 0);
            if (!mt || sc == 0) continue;
            const float *a = mt->a + (size_t)j->expert * mt->r * mt->n_in;
            const float *bt = mt->bt + (size_t)j->expert * mt->r * mt->n_out;
            for (int q = 0; q < mt->r; q++) ax[q] = sc * dot(a + (size_t)q * mt->n_in, x, mt->n_in);
            for (int q = 0; q < mt->r; q++) {
                const float c = ax[q], *b = bt + (size_t)q * mt->n_out;
                for (int64_t o = 0; o < mt->n_out; o++) y[o] += c * b[o];
            }
        }
    }
}

static void lora_worker(void *arg, int ith, int nth) {
    const lora_job *j = arg;
    lora_rows(j, j->n * ith / nth, j->n * (ith + 1) / nth);
}

/* One row, one adapter, over the pool (decode: a row or two, big matrices): A x split by rank
 * components, then y += B (A x) split by output blocks. Each output sums the components in the
 * same order as lora_rows does, so the result is the same bits. */
typedef struct lora_vec {
    const lora_mat *mt;
    int expert;
    float sc;
    const float *x;
    float *ax, *y;
} lora_vec;

static void vec_ax(void *arg, int ith, int nth) {
    const lora_vec *v = arg;
    const lora_mat *mt = v->mt;
    const float *a = mt->a + (size_t)v->expert * mt->r * mt->n_in;
    for (int q = mt->r * ith / nth; q < mt->r * (ith + 1) / nth; q++)
        v->ax[q] = v->sc * dot(a + (size_t)q * mt->n_in, v->x, mt->n_in);
}

static void vec_by(void *arg, int ith, int nth) {
    const lora_vec *v = arg;
    const lora_mat *mt = v->mt;
    const int64_t nb = (mt->n_out + 15) / 16, o0 = nb * ith / nth * 16, o1e = nb * (ith + 1) / nth * 16;
    const int64_t o1 = o1e < mt->n_out ? o1e : mt->n_out;
    const float *bt = mt->bt + (size_t)v->expert * mt->r * mt->n_out;
    for (int q = 0; q < mt->r; q++) {
        const float c = v->ax[q], *b = bt + (size_t)q * mt->n_out;
        for (int64_t o = o0; o < o1; o++) v->y[o] += c * b[o];
    }
}

static void lora_rows_pool(lfm2c_model *m, const lora_job *j) {
    float ax[LORA_MAX_RANK];
    for (int i = 0; i < j->n; i++) {
        const struct lfm2c_session *s = j->toks[j->tok ? j->tok[i] : i].seq;
        for (int k = 0; k < s->n_lora; k++) {
            const lora_mat *mt = lora_get(s->lora[k], j->l, j->id);
            const float sc = s->lora_scale[k] * (mt ? mt->scale : 0);
            if (!mt || sc == 0) continue;
            lora_vec v = {
                mt, j->expert, sc, j->x + (size_t)(j->xrow ? j->xrow[i] : i) * j->ldx, ax, j->y + (size_t)i * j->ldy};
            threadpool_run(m->pool, vec_ax, &v);
            threadpool_run(m->pool, vec_by, &v);
        }
    }
}

void lora_apply(lfm2c_model *m, const fwd_token *toks, const tensor *w, int expert, const float *x, size_t ldx,
                const int *xrow, const int *tok, int n, float *y, size_t ldy) {
    if (!cpu_model_of(m)->lora_pass || !toks || !w->lora_key || n <= 0) return;
    const int key = w->lora_key - 1;
    lora_job j = {toks, key % LFM2_T_COUNT, key / LFM2_T_COUNT, expert, x, ldx, xrow, tok, n, y, ldy};
    /* a row costs r (n_in + n_out) multiply-adds per adapter (about 16 for r = 16 and both
     * matrices of a few KB); small work stays on this thread, rows go to the pool when there are
     * as many as threads, else each row's work is split (decode) */
    const double row_work = (double)(w->ne[0] + w->ne[1]) * 16 * sizeof(float);
    const int nth = threadpool_active(m->pool);
    if (nth < 2 || (double)n * row_work < INLINE_WORK) lora_rows(&j, 0, n);
    else if (n >= nth) threadpool_run(m->pool, lora_worker, &j);
    else lora_rows_pool(m, &j);
}
