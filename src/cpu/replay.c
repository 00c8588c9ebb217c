/* replay.c — replay.h: a decode pass's weight ranges recorded by matmul_run, then read again as
 * plain streams over the model's thread pool: 64-byte lines, a non-temporal prefetch some
 * distance ahead and one line per page further ahead (as decode's tiles do for the address
 * translation), the loads folded into a checksum so none is dropped. Each thread reads the
 * same share of every job as decode's static split by bytes gives it (decode then steals
 * chunks; the replay needs not). Timing and choice of the fastest distance are here too. */
#include "cpu/replay.h"
#include "base/clock.h"
#include "cpu/backend_cpu.h"
#include "core/backend.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct replay_range {
    const uint8_t *p;
    size_t n;
    int job;
} replay_range;

enum { R_IDLE, R_ARMED, R_RECORDING, R_DONE, R_FAILED }; /* R_FAILED: out of memory while recording */
struct replay_trace {
    int state, n, cap, jobs;
    int passes, want; /* passes recorded (or being recorded), and to record */
    replay_range *r;
};

/* backend_state is a cpu_model only on the CPU backend: bench's entries check the backend;
 * forward_cpu, matmul_run and cpu_model_free are the CPU backend, and its decode path pays no
 * name comparison per product */
static bool on_cpu(const lfm2c_model *m) { return m->backend && !strcmp(m->backend->name, "cpu") && m->backend_state; }
static struct replay_trace *trace_of(const lfm2c_model *m) { return on_cpu(m) ? cpu_model_of(m)->replay : NULL; }
static struct replay_trace *cpu_trace(const lfm2c_model *m) {
    return m->backend_state ? cpu_model_of(m)->replay : NULL;
}

int replay_arm(lfm2c_model *m, int n_passes) {
    if (!on_cpu(m) || n_passes < 1) return -1;
    cpu_model *cm = cpu_model_of(m);
    if (!cm->replay && !(cm->replay = calloc(1, sizeof *cm->replay))) return -1;
    cm->replay->state = R_ARMED;
    cm->replay->n = cm->replay->jobs = cm->replay->passes = 0;
    cm->replay->want = n_passes;
    return 0;
}

void replay_pass_begin(lfm2c_model *m, bool one_token) {
    struct replay_trace *t = cpu_trace(m);
    if (!t || (t->state != R_ARMED && t->state != R_RECORDING)) return;
    if (t->passes == t->want || (t->state == R_RECORDING && !one_token)) t->state = R_DONE;
    else if (one_token) t->state = R_RECORDING, t->passes++;
}

void replay_record(lfm2c_model *m, const mm_task *tasks, int n) {
    struct replay_trace *t = cpu_trace(m);
    if (!t || t->state != R_RECORDING) return;
    for (int i = 0; i < n; i++) {
        if (t->n == t->cap) {
            const int cap = t->cap ? 2 * t->cap : 1024;
            replay_range *r = cap < (1 << 24) ? realloc(t->r, sizeof *r * (size_t)cap) : NULL;
            if (!r) {
                t->state = R_FAILED;
                return;
            }
            t->r = r, t->cap = cap;
        }
        const tensor *w = tasks[i].w;
        const size_t bytes = (size_t)w->ne[1] * w->row_bytes;
        t->r[t->n++] = (replay_range){w->data + (size_t)tasks[i].expert * bytes, bytes, t->jobs};
    }
    t->jobs++;
}

void replay_free(lfm2c_model *m) {
    struct replay_trace *t = cpu_trace(m);
    if (!t) return;
    free(t->r);
    free(t);
    cpu_model_of(m)->replay = NULL;
}

/* ---- the reading ---------------------------------------------------------------------------- */

typedef uint64_t v2u __attribute__((vector_size(16)));
static volatile uint64_t replay_sink;

/* One line per page this far ahead, into L2 (tiles.h prefetch_page; decode's distance is 16
 * blocks of 2.3-3.4 KB) */
enum { PAGE_AHEAD = 48 << 10 };

static void read_lines(const uint8_t *p, const uint8_t *e, size_t pf) {
    p = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)63);
    v2u a = {0, 0}, b = a, c = a, d = a, x0, x1, x2, x3;
    for (; p < e; p += 64) {
        if (pf) __builtin_prefetch(p + pf, 0, 0);
        if (((uintptr_t)p & 4095) == 0) __builtin_prefetch(p + PAGE_AHEAD, 0, 1);
        memcpy(&x0, p, 16), memcpy(&x1, p + 16, 16), memcpy(&x2, p + 32, 16), memcpy(&x3, p + 48, 16);
        a ^= x0, b ^= x1, c ^= x2, d ^= x3;
    }
    a ^= b ^ c ^ d;
    replay_sink += a[0] ^ a[1];
}

/* bytes [lo, hi) of ranges [r0, r1) laid end to end */
static void read_span(const replay_range *r, int r0, int r1, size_t lo, size_t hi, size_t pf) {
    size_t base = 0;
    for (int i = r0; i < r1 && base < hi; base += r[i].n, i++) {
        const size_t s = lo > base ? lo - base : 0, e = hi - base < r[i].n ? hi - base : r[i].n;
        if (s < e) read_lines(r[i].p + s, r[i].p + e, pf);
    }
}

typedef struct replay_job {
    const struct replay_trace *t;
    const int *first; /* first range of each job; first[jobs] = n */
    const size_t *bytes;
    int job; /* -1: every job (flat) */
    size_t pf;
} replay_job;

/* thread ith's share of job j: the bytes [B*ith/nth, B*(ith+1)/nth), in whole lines */
static void read_share(const replay_job *rj, int j, int ith, int nth) {
    const size_t B = rj->bytes[j];
    const size_t lo = (size_t)((double)B * ith / nth) & ~(size_t)63;
    const size_t hi = ith + 1 == nth ? B : (size_t)((double)B * (ith + 1) / nth) & ~(size_t)63;
    read_span(rj->t->r, rj->first[j], rj->first[j + 1], lo, hi, rj->pf);
}

static void replay_worker(void *arg, int ith, int nth) {
    const replay_job *rj = arg;
    if (rj->job >= 0) read_share(rj, rj->job, ith, nth);
    else
        for (int j = 0; j < rj->t->jobs; j++) read_share(rj, j, ith, nth);
}

/* seconds to read the whole trace once, per job (flat false) or in one run (flat true) */
static double replay_once(lfm2c_model *m, replay_job *rj, bool flat) {
    const double t0 = lfm2c_now_s();
    const int nth = threadpool_active(m->pool);
    if (flat) {
        rj->job = -1;
        threadpool_run(m->pool, replay_worker, rj);
    } else
        for (int j = 0; j < rj->t->jobs; j++) {
            rj->job = j;
            if (nth < 2 || rj->bytes[j] < INLINE_WORK) read_share(rj, j, 0, 1); /* as matmul_split does */
            else threadpool_run(m->pool, replay_worker, rj);
        }
    return lfm2c_now_s() - t0;
}

static const size_t PF_DIST[] = {1024, 4096, 8192};

/* The recorded passes' jobs (first range, bytes of each) in rj, their bytes in *all: 0, or -1
 * when nothing was recorded or memory is short (free rj's arrays after). */
static int replay_jobs(lfm2c_model *m, replay_job *rj, double *all) {
    struct replay_trace *t = trace_of(m);
    *rj = (replay_job){0};
    if (!t || (t->state != R_DONE && t->state != R_RECORDING) || t->n == 0) return -1;
    t->state = R_DONE;
    int *first = calloc((size_t)t->jobs + 1, sizeof *first);
    size_t *bytes = calloc((size_t)t->jobs, sizeof *bytes);
    *rj = (replay_job){.t = t, .first = first, .bytes = bytes};
    if (!first || !bytes) return -1;
    *all = 0;
    for (int i = 0, j = -1; i < t->n; i++) {
        while (j < t->r[i].job) first[++j] = i;
        bytes[j] += t->r[i].n;
        *all += (double)t->r[i].n;
    }
    for (int j = t->r[t->n - 1].job; j < t->jobs;) first[++j] = t->n;
    return 0;
}

int replay_run(lfm2c_model *m, replay_result *res) {
    replay_job rj;
    memset(res, 0, sizeof *res);
    int rc = replay_jobs(m, &rj, &res->bytes);
    if (rc == 0) {
        res->passes = rj.t->passes, res->jobs = rj.t->jobs, res->ranges = rj.t->n;
        for (int flat = 0; flat < 2; flat++)
            for (size_t d = 0; d < sizeof PF_DIST / sizeof *PF_DIST; d++) {
                rj.pf = PF_DIST[d];
                const double g = res->bytes / replay_once(m, &rj, flat) / 1e9;
                double *best = flat ? &res->gbps_flat : &res->gbps_jobs;
                if (g > *best) *best = g, *(flat ? &res->pf_bytes_flat : &res->pf_bytes_jobs) = (int)PF_DIST[d];
            }
    }
    free((void *)rj.first), free((void *)rj.bytes);
    return rc;
}

double replay_gbps(lfm2c_model *m, int pf_bytes, bool flat) {
    replay_job rj;
    double all = 0, g = -1;
    if (replay_jobs(m, &rj, &all) == 0) {
        rj.pf = pf_bytes > 0 ? (size_t)pf_bytes : 0;
        g = all / replay_once(m, &rj, flat) / 1e9;
    }
    free((void *)rj.first), free((void *)rj.bytes);
    return g;
}

/* ---- every weight once (bench --warm-read) ---------------------------------------------- */

typedef struct weights_read {
    const replay_range *r; /* every tensor, in the table's order */
    int n;
    size_t total, pf;
} weights_read;

/* thread ith's share [total*ith/nth, total*(ith+1)/nth) of the tensors laid end to end */
static void weights_worker(void *arg, int ith, int nth) {
    const weights_read *w = arg;
    const size_t lo = (size_t)((double)w->total * ith / nth), hi = (size_t)((double)w->total * (ith + 1) / nth);
    read_span(w->r, 0, w->n, lo, hi, w->pf);
}

double replay_read_weights(lfm2c_model *m, double *bytes) {
    *bytes = 0;
    const gguf_file *g = m->gguf;
    if (!on_cpu(m) || g->n_tensors > INT_MAX) return -1;
    replay_range *r = malloc(sizeof *r * (g->n_tensors ? g->n_tensors : 1));
    if (!r) return -1;
    weights_read w = {.r = r, .n = (int)g->n_tensors, .pf = 4096};
    for (int i = 0; i < w.n; i++) {
        r[i] = (replay_range){g->tensors[i].data, g->tensors[i].nbytes, 0};
        w.total += g->tensors[i].nbytes;
    }
    const double t0 = lfm2c_now_s();
    threadpool_run(m->pool, weights_worker, &w);
    const double seconds = lfm2c_now_s() - t0;
    free(r);
    *bytes = (double)w.total;
    return (double)w.total / seconds / 1e9;
}
