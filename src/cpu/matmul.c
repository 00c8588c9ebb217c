/* matmul.c — the threaded matmul (matmul.h): byte-balanced split of the row blocks of all tasks
 * across the pool (mm_part / mm_worker, for prefill), and for decode a static split by bytes with
 * work stealing (mm_worker_dyn), timed into the model's decode profile (lfm2c.h); plus the
 * activation quantization that feeds it (prepare_act). */
#include "cpu/matmul.h"
#include "cpu/scratch.h"
#include "formats/ggml_types.h"
#include "base/clock.h"
#include "cpu/backend_cpu.h"
#include "cpu/replay.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef struct mm_job {
    const lfm2c_model *m;
    const mm_task *tasks;
    int n_tasks;
    double n_bytes; /* weight bytes of all tasks, counted in whole row blocks */
    int n_parts;    /* mm_worker: the bytes are cut into n_parts, claimed one at a time */
    atomic_int next;
} mm_job;

/* Work is split over threads in blocks of ROW_BLOCK rows; each thread then makes ONE kernel
 * call per task over all its rows and all columns, so kernels that repack activations (AMX)
 * do it once per call, and each tile of weights is loaded once for the whole batch. */
enum { ROW_BLOCK = 16 };

uint32_t act_format(const lfm2c_model *m, uint32_t wtype) {
    return cpu_model_of(m)->reference ? GGML_F32 : vec_dot_type(wtype);
}

static void mm_rows(const lfm2c_model *m, const mm_task *t, int64_t r0, int64_t nr) {
    const tensor *w = t->w;
    const uint8_t *wd = w->data + ((size_t)t->expert * w->ne[1] + r0) * w->row_bytes;
    if (cpu_model_of(m)->reference) {
        for (int c = 0; c < t->n_cols; c++)
            for (int64_t r = 0; r < nr; r++)
                t->y[c * t->ldy + r0 + r] =
                    vec_dot_float(w->type, w->ne[0], wd + r * w->row_bytes, (const float *)(t->act + c * t->act_row));
        return;
    }
    cpu_model_of(m)->kern->matmul(w->type, w->ne[0], wd, w->row_bytes, (int)nr, t->act, t->act_row, t->n_cols,
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

/* Decode (a few columns): the same bytes do not take the same time on every thread (memory
 * and cores are shared, Q6_K costs more per byte than Q4_K, a worker starts late), so a plain
 * static split leaves one thread waiting. The rows are cut into chunks of about DYN_CHUNK_BYTES;
 * each thread owns a contiguous range of them (the static split) and takes from its front, a
 * few at a time, so it still reads one long stream; a thread that runs out takes single chunks
 * from the back of another's range. Each output row is computed alone, so which thread computes
 * it does not change a bit of it. Prefill keeps mm_worker: AMX repacks activations per call. */
enum {
    DYN_MAX_COLS = 4 /* unless the kernels say more (kernel_ops.stream_cols) */,
    DYN_CHUNK_BYTES = 32 << 10,
    DYN_MAX_THREADS = 64,
    DYN_MAX_TASKS = 256
};

typedef struct dyn_job {
    const lfm2c_model *m;
    const mm_task *tasks;
    int n_tasks;
    int n_ranges;                     /* one per running thread */
    int64_t first[DYN_MAX_TASKS + 1]; /* first chunk of each task; first[n_tasks] = all */
    int64_t chunk_rows[DYN_MAX_TASKS];
    struct {
        _Alignas(64) _Atomic uint64_t fb;
    } range[DYN_MAX_THREADS]; /* front << 32 | back */
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
            int i = 0; /* stay inside f's task */
            while ((int64_t)f >= j->first[i + 1]) i++;
            if ((int64_t)(f + k) > j->first[i + 1]) k = (uint32_t)(j->first[i + 1] - f);
            nf = f + k;
        } else {
            nb = b - 1;
        }
        if (atomic_compare_exchange_weak_explicit(&j->range[v].fb, &fb, (uint64_t)nf << 32 | nb, memory_order_relaxed,
                                                  memory_order_relaxed)) {
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

/* Splits the job over the pool (or runs it here when small). */
static void matmul_split(lfm2c_model *m, const mm_task *tasks, int n, mm_job *job, int max_cols) {
    const int nth = threadpool_active(m->pool); /* threads taking part, not indices */
    if (nth < 2 || job->n_bytes * max_cols < INLINE_WORK) {
        mm_part(job, 0, 1);
        return;
    }
    job->n_parts = nth * MM_PARTS_PER_THREAD;
    const int dyn_cols = cpu_model_of(m)->kern->stream_cols > 0 ? cpu_model_of(m)->kern->stream_cols : DYN_MAX_COLS;
    if (max_cols > dyn_cols || nth > DYN_MAX_THREADS || n > DYN_MAX_TASKS) {
        threadpool_run(m->pool, mm_worker, job);
        return;
    }
    dyn_job djob, *dj = &djob; /* about 8 KB of stack */
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
        threadpool_run(m->pool, mm_worker, job);
        return;
    }
    /* the static split by bytes, in whole chunks */
    int64_t start = 0;
    for (int t = 0, i = 0; t < nth; t++) {
        double goal = job->n_bytes * (t + 1) / nth;
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

/* Runs several independent products in one parallel job (e.g. q, k and v; or all experts);
 * during a one-token pass (cpu_model_of(m)->prof_pass) they are timed into m->prof. */
void matmul_run(lfm2c_model *m, const mm_task *tasks, int n) {
    mm_job job = {m, tasks, n, 0, 0, 0};
    int max_cols = 0;
    double bytes = 0;
    for (int i = 0; i < n; i++) {
        job.n_bytes += (double)((tasks[i].w->ne[1] + ROW_BLOCK - 1) / ROW_BLOCK) * ROW_BLOCK * tasks[i].w->row_bytes;
        bytes += (double)tasks[i].w->ne[1] * tasks[i].w->row_bytes;
        if (tasks[i].n_cols > max_cols) max_cols = tasks[i].n_cols;
    }
    if (job.n_bytes <= 0) return;
    const double t0 = cpu_model_of(m)->prof_pass ? lfm2c_now_s() : 0;
    matmul_split(m, tasks, n, &job, max_cols);
    if (cpu_model_of(m)->prof_pass) {
        m->prof.matmul_seconds += lfm2c_now_s() - t0;
        m->prof.matmul_bytes += bytes;
        m->prof.matmul_calls++;
        replay_record(m, tasks, n);
    }
}

typedef struct quant_job {
    const lfm2c_model *m;
    uint32_t fmt;
    const float *x;
    int64_t n;
    uint8_t *dst;
    size_t row;
    int T;
} quant_job;

static void quant_worker(void *arg, int ith, int nth) {
    const quant_job *q = arg;
    for (int t = q->T * ith / nth; t < q->T * (ith + 1) / nth; t++)
        cpu_model_of(q->m)->kern->quantize_act(q->fmt, q->x + (size_t)t * q->n, q->dst + (size_t)t * q->row, q->n);
}

/* A few tokens' activation rows are quantized here by the caller alone, into lines every thread
 * of the pool read in an earlier product and may still hold. A store to a line another core
 * holds waits until that core gives it up, and the quantizer's many small stores would ask for
 * a few lines at a time; one store per line first asks for all of them at once (bench/CPU.md,
 * "2026-11-27 (sixth)": most felt where the two cores are on different core complexes). */
static void claim_lines(uint8_t *p, size_t n) {
    volatile uint8_t *v = p;
    for (size_t o = 0; o < n; o += 64) v[o] = 0;
    if (n) v[n - 1] = 0;
}

act_buf prepare_act(lfm2c_model *m, int slot, const float *x, int T, int64_t n, uint32_t wtype) {
    uint32_t fmt = act_format(m, wtype);
    act_buf a;
    if (fmt == GGML_F32) {
        a.data = (const uint8_t *)x;
        a.row = (size_t)n * sizeof(float);
        return a;
    }
    a.row = ggml_row_size(fmt, n);
    uint8_t *dst = scratch_get(cpu_model_of(m)->scratch, slot, a.row * (size_t)T);
    quant_job q = {m, fmt, x, n, dst, a.row, T};
    if (T >= 8) threadpool_run(m->pool, quant_worker, &q);
    else {
        if (threadpool_active(m->pool) > 1) claim_lines(dst, a.row * (size_t)T);
        quant_worker(&q, 0, 1);
    }
    a.data = dst;
    return a;
}
