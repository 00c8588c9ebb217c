/* test_matmul.c — the threaded matmul driver (src/cpu/matmul.c): jobs of several tasks of mixed
 * weight types (one of them an expert of a 3-d tensor), odd row counts and rows that do not fill
 * a row block or a work-stealing chunk, 1 to 13 columns (the decode path with work stealing up
 * to 4, the prefill split above), run on pools of 1 to 6 and 16 threads. Every result must be
 * bitwise the one of the same kernel table called directly on all the rows at once (and so the
 * same for every pool size), the padding of the output untouched, and every row of every task
 * handed to the kernel exactly once (a counting wrapper around the table). The reference mode
 * must equal vec_dot_float row by row, and prepare_act the per-row activation quantizer. */
#include "cpu/backend_cpu.h"
#include "cpu/matmul.h"
#include "cpu/scratch.h"
#include "cpu/kernels.h"
#include "convert/quantize.h"
#include "formats/ggml_types.h"
#include "test.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

enum { N_IN = 512, MAX_TASKS = 3, PAD = 5 };

static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* ---- the counting kernel table: which weight rows the driver hands to the kernel ---------- */

static struct {
    const kernel_ops *real;
    int n; /* registered weight ranges */
    const uint8_t *lo[MAX_TASKS];
    size_t row_bytes[MAX_TASKS];
    int rows[MAX_TASKS], cols[MAX_TASKS];
    atomic_int *hits[MAX_TASKS]; /* [rows] */
    atomic_int stray;            /* calls outside every range, or with the wrong columns */
} cnt;

static void counting_matmul(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                            size_t act_row, int nc, float *out, size_t out_stride) {
    int found = 0;
    for (int i = 0; i < cnt.n && !found; i++) {
        if (w < cnt.lo[i] || w >= cnt.lo[i] + (size_t)cnt.rows[i] * cnt.row_bytes[i]) continue;
        found = 1;
        size_t r0 = (size_t)(w - cnt.lo[i]) / cnt.row_bytes[i];
        if ((size_t)(w - cnt.lo[i]) % cnt.row_bytes[i] || w_row != cnt.row_bytes[i] || nc != cnt.cols[i] ||
            r0 + (size_t)nr > (size_t)cnt.rows[i]) {
            atomic_fetch_add(&cnt.stray, 1);
            break;
        }
        for (int r = 0; r < nr; r++) atomic_fetch_add(&cnt.hits[i][r0 + r], 1);
    }
    if (!found) atomic_fetch_add(&cnt.stray, 1);
    cnt.real->matmul(wtype, n, w, w_row, nr, act, act_row, nc, out, out_stride);
}

/* ---- a job --------------------------------------------------------------------------------- */

typedef struct job_def {
    int n_tasks;
    uint32_t type[MAX_TASKS];
    int rows[MAX_TASKS], experts[MAX_TASKS], expert[MAX_TASKS];
} job_def;

typedef struct job {
    tensor w[MAX_TASKS];
    uint8_t *wdata[MAX_TASKS];
    float *x;                /* [max cols][N_IN] */
    uint8_t *act[MAX_TASKS]; /* x in each task's activation format */
    size_t act_row[MAX_TASKS];
    int cols[MAX_TASKS];
    float *want[MAX_TASKS], *got[MAX_TASKS]; /* [cols][rows + PAD] */
} job;

static void make_weights(job *j, const job_def *d) {
    for (int i = 0; i < d->n_tasks; i++) {
        const int64_t rows_all = (int64_t)d->rows[i] * d->experts[i];
        float *f = malloc(sizeof(float) * (size_t)rows_all * N_IN);
        for (int64_t k = 0; k < rows_all * N_IN; k++) f[k] = frand();
        tensor *t = &j->w[i];
        memset(t, 0, sizeof *t);
        t->name = "w";
        t->type = d->type[i];
        t->ne[0] = N_IN;
        t->ne[1] = d->rows[i];
        t->ne[2] = d->experts[i];
        t->row_bytes = ggml_row_size(t->type, N_IN);
        j->wdata[i] = malloc(t->row_bytes * (size_t)rows_all);
        CHECK(quantize_rows(t->type, f, j->wdata[i], rows_all, N_IN) == t->row_bytes * (size_t)rows_all,
              "quantizing type %u", t->type);
        t->data = j->wdata[i];
        free(f);
    }
}

static const uint8_t *expert_rows(const job *j, const job_def *d, int i) {
    return j->w[i].data + (size_t)d->expert[i] * j->w[i].ne[1] * j->w[i].row_bytes;
}

/* x for cols columns, each task's activations in its format, and the expected outputs: the
 * kernel (or the float dot) over all rows of the task at once. */
static void prepare(job *j, const job_def *d, const lfm2c_model *m, int cols) {
    j->x = malloc(sizeof(float) * (size_t)cols * N_IN);
    for (int k = 0; k < cols * N_IN; k++) j->x[k] = frand();
    for (int i = 0; i < d->n_tasks; i++) {
        const tensor *t = &j->w[i];
        uint32_t fmt = act_format(m, t->type);
        j->cols[i] = i == 0 || cols == 1 ? cols : cols - 1; /* tasks of a job differ in columns */
        j->act_row[i] = fmt == GGML_F32 ? sizeof(float) * N_IN : ggml_row_size(fmt, N_IN);
        j->act[i] = malloc(j->act_row[i] * (size_t)cols);
        for (int c = 0; c < cols; c++)
            cpu_model_of(m)->kern->quantize_act(fmt, j->x + (size_t)c * N_IN, j->act[i] + (size_t)c * j->act_row[i],
                                                N_IN);
        const size_t ldy = (size_t)d->rows[i] + PAD, n_out = ldy * (size_t)j->cols[i];
        j->want[i] = malloc(sizeof(float) * n_out);
        j->got[i] = malloc(sizeof(float) * n_out);
        for (size_t k = 0; k < n_out; k++) j->want[i][k] = -7.25f; /* the padding's sentinel */
        const uint8_t *w = expert_rows(j, d, i);
        if (cpu_model_of(m)->reference) {
            for (int c = 0; c < j->cols[i]; c++)
                for (int r = 0; r < d->rows[i]; r++)
                    j->want[i][c * ldy + r] = vec_dot_float(t->type, N_IN, w + (size_t)r * t->row_bytes,
                                                            (const float *)(j->act[i] + (size_t)c * j->act_row[i]));
        } else {
            cpu_model_of(m)->kern->matmul(t->type, N_IN, w, t->row_bytes, d->rows[i], j->act[i], j->act_row[i],
                                          j->cols[i], j->want[i], ldy);
        }
    }
}

static void job_free(job *j, const job_def *d) {
    for (int i = 0; i < d->n_tasks; i++) {
        free(j->act[i]);
        free(j->want[i]);
        free(j->got[i]);
    }
    free(j->x);
}

/* Runs the job through matmul_run on model m (its pool and table) and checks it. */
static void run_and_check(job *j, const job_def *d, lfm2c_model *m, int counting, const char *what) {
    mm_task tasks[MAX_TASKS];
    cnt.n = 0;
    atomic_store(&cnt.stray, 0);
    for (int i = 0; i < d->n_tasks; i++) {
        const size_t ldy = (size_t)d->rows[i] + PAD, n_out = ldy * (size_t)j->cols[i];
        for (size_t k = 0; k < n_out; k++) j->got[i][k] = -7.25f;
        tasks[i] = (mm_task){&j->w[i], d->expert[i], j->act[i], j->act_row[i], j->cols[i], j->got[i], ldy};
        cnt.lo[i] = expert_rows(j, d, i);
        cnt.row_bytes[i] = j->w[i].row_bytes;
        cnt.rows[i] = d->rows[i];
        cnt.cols[i] = j->cols[i];
        cnt.hits[i] = calloc((size_t)d->rows[i], sizeof(atomic_int));
        cnt.n++;
    }
    matmul_run(m, tasks, d->n_tasks);
    for (int i = 0; i < d->n_tasks; i++) {
        const size_t n_out = ((size_t)d->rows[i] + PAD) * (size_t)j->cols[i];
        CHECK(!memcmp(j->got[i], j->want[i], sizeof(float) * n_out), "%s: task %d (type %s, %d rows, %d cols) differs",
              what, i, ggml_type_get(d->type[i])->name, d->rows[i], j->cols[i]);
        if (counting) {
            int bad = 0;
            for (int r = 0; r < d->rows[i]; r++) bad += atomic_load(&cnt.hits[i][r]) != 1;
            CHECK(bad == 0, "%s: task %d: %d of %d rows not computed exactly once", what, i, bad, d->rows[i]);
        }
        free(cnt.hits[i]);
    }
    if (counting)
        CHECK(atomic_load(&cnt.stray) == 0, "%s: %d kernel calls outside the tasks' rows", what,
              atomic_load(&cnt.stray));
}

/* ---- the cases ----------------------------------------------------------------------------- */

static const job_def jobs[] = {
    {1, {GGML_Q8_0}, {1}, {1}, {0}},                                              /* one row */
    {1, {GGML_Q4_K}, {7}, {1}, {0}},                                              /* under one row block */
    {2, {GGML_Q4_K, GGML_Q6_K}, {17, 33}, {1, 1}, {0, 0}},                        /* blocks that do not divide */
    {3, {GGML_Q4_K, GGML_Q8_0, GGML_F32}, {1001, 257, 99}, {1, 3, 1}, {0, 2, 0}}, /* mixed, an expert */
    {2, {GGML_Q6_K, GGML_Q4_K}, {2049, 4099}, {2, 1}, {1, 0}},                    /* many work-stealing chunks */
};
static const int col_counts[] = {1, 2, 3, 4, 5, 8, 13};
static const int pool_sizes[] = {1, 2, 3, 4, 5, 6, 16};

static lfm2c_model model_on(threadpool *pool, const kernel_ops *kern, bool reference) {
    lfm2c_model m;
    memset(&m, 0, sizeof m);
    m.pool = pool;
    cpu_model *cm = calloc(1, sizeof *cm); /* the CPU backend's state: its kernels, matmul_run's scratch */
    if (cm) cm->kern = kern, cm->reference = reference, cm->scratch = scratch_new(1);
    m.backend_state = cm;
    return m;
}

static void model_off(lfm2c_model *m) {
    cpu_model *cm = cpu_model_of(m);
    if (cm) scratch_free(cm->scratch);
    free(cm);
    m->backend_state = NULL;
}

static void test_table(const kernel_ops *real, threadpool **pools, int n_pools) {
    kernel_ops counting = *real;
    counting.matmul = counting_matmul;
    cnt.real = real;
    for (size_t jd = 0; jd < sizeof jobs / sizeof *jobs; jd++) {
        job j;
        memset(&j, 0, sizeof j);
        make_weights(&j, &jobs[jd]);
        for (size_t ci = 0; ci < sizeof col_counts / sizeof *col_counts; ci++) {
            lfm2c_model m0 = model_on(pools[0], real, false);
            prepare(&j, &jobs[jd], &m0, col_counts[ci]);
            model_off(&m0);
            for (int p = 0; p < n_pools; p++) {
                char what[96];
                snprintf(what, sizeof what, "%s, job %zu, %d cols, pool of %d", real->isa, jd, col_counts[ci],
                         threadpool_size(pools[p]));
                lfm2c_model m = model_on(pools[p], &counting, false);
                run_and_check(&j, &jobs[jd], &m, 1, what);
                model_off(&m);
            }
            job_free(&j, &jobs[jd]);
        }
        for (int i = 0; i < jobs[jd].n_tasks; i++) free(j.wdata[i]);
    }
}

/* Reference mode: float activations, vec_dot_float per row, whatever the split. */
static void test_reference(threadpool **pools, int n_pools) {
    const job_def *d = &jobs[3];
    job j;
    memset(&j, 0, sizeof j);
    make_weights(&j, d);
    for (int cols = 1; cols <= 6; cols += 5) {
        lfm2c_model m0 = model_on(pools[0], kernels_scalar(), true);
        prepare(&j, d, &m0, cols);
        for (int p = 0; p < n_pools; p++) {
            char what[64];
            snprintf(what, sizeof what, "reference, %d cols, pool of %d", cols, threadpool_size(pools[p]));
            lfm2c_model m = model_on(pools[p], kernels_scalar(), true);
            run_and_check(&j, d, &m, 0, what);
            model_off(&m);
        }
        model_off(&m0);
        job_free(&j, d);
    }
    for (int i = 0; i < d->n_tasks; i++) free(j.wdata[i]);
}

/* prepare_act: the activation quantizer row by row, threaded from 8 rows on. */
static void test_prepare_act(threadpool *pool) {
    const int T = 11;
    float *x = malloc(sizeof(float) * T * N_IN);
    for (int k = 0; k < T * N_IN; k++) x[k] = frand();
    const uint32_t wtypes[] = {GGML_Q4_K, GGML_Q8_0, GGML_F32};
    for (size_t i = 0; i < sizeof wtypes / sizeof *wtypes; i++) {
        for (int rows = 1; rows <= T; rows += T - 1) {
            lfm2c_model m = model_on(pool, kernels_get(), false);
            uint32_t fmt = act_format(&m, wtypes[i]);
            act_buf a = prepare_act(&m, 0, x, rows, N_IN, wtypes[i]);
            size_t row = fmt == GGML_F32 ? sizeof(float) * N_IN : ggml_row_size(fmt, N_IN);
            CHECK(a.row == row, "prepare_act row bytes for %s", ggml_type_get(wtypes[i])->name);
            uint8_t *want = malloc(row * (size_t)rows);
            for (int t = 0; t < rows; t++)
                cpu_model_of(&m)->kern->quantize_act(fmt, x + (size_t)t * N_IN, want + (size_t)t * row, N_IN);
            CHECK(!memcmp(a.data, want, row * (size_t)rows), "prepare_act of %d rows for %s", rows,
                  ggml_type_get(wtypes[i])->name);
            free(want);
            model_off(&m);
        }
    }
    free(x);
}

int main(void) {
    enum { NP = sizeof pool_sizes / sizeof *pool_sizes };
    threadpool *pools[NP];
    for (int p = 0; p < NP; p++) {
        pools[p] = threadpool_new(pool_sizes[p]);
        CHECK(pools[p] != NULL, "pool of %d", pool_sizes[p]);
        if (!pools[p]) TEST_MAIN_END();
    }
    printf("pools of 1..6 and 16 indices run on up to %d threads here\n", threadpool_threads(pools[NP - 1]));
    const kernel_ops *tables[8];
    int n = kernels_available(tables, 8);
    for (int i = 0; i < n; i++) {
        if (!tables[i]->tile_invariant) { /* its results may depend on the split: nothing to hold it to */
            printf("skipping the %s table: not tile-invariant\n", tables[i]->isa);
            continue;
        }
        test_table(tables[i], pools, NP);
    }
    test_reference(pools, NP);
    test_prepare_act(pools[NP - 1]);
    for (int p = 0; p < NP; p++) threadpool_free(pools[p]);
    TEST_MAIN_END();
}
