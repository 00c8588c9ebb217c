/* bench_kernels.c — matmul kernel throughput per weight type and kernel table:
 *  decode: one activation column (nc = 1) against a ~128 MB matrix, rows split across 1..N
 *          threads; prints GB/s of weights streamed (compare with build/membw);
 *  prefill: 512 columns (PP_COLS) against a 2048 x n matrix; prints GOP/s (2 ops per weight x column)
 * Each figure is the best of several runs by wall time, and in parentheses by the slowest
 * thread's CPU time (what the kernel costs when other processes share the cores).
 * A table's interleaved layouts (kernel_ops.packed_type) get a row of their own after the type's.
 * Usage: bench_kernels [decode_MB] [threads] [isa] [type] [reps]; LFM2C_DEC_PF=PLAN sets the decode
 * prefetch plan (tiles.h; otherwise the one the engine chooses on this CPU), PP_COLS=N the
 * prefill columns (512 otherwise: a prompt; 8-64 are what a MoE expert or a batch of sessions
 * multiplies at once). */
#include "cpu/kernels.h"
#include "cpu/tiles.h"
#include "formats/ggml_types.h"
#include "base/hugemem.h"
#include "base/threadpool.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float frand(void) { return (float)(rnd() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* random bytes with sane fp16 scales at the d / dmin positions of each block */
static void fill_weights(uint32_t t, uint8_t *w, size_t rows, int64_t n) {
    size_t size = ggml_row_size(t, n) * rows;
    uint32_t *w32 = (uint32_t *)w;
    for (size_t i = 0; i < size / 4; i++) w32[i] = rnd();
    if (t == GGML_F32) {
        float *f = (float *)w;
        for (size_t i = 0; i < size / 4; i++) f[i] = frand();
        return;
    }
    if (t == GGML_F16 || t == GGML_BF16) {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < size / 2; i++) h[i] = t == GGML_F16 ? f32_to_fp16(frand()) : f32_to_bf16(frand());
        return;
    }
    const ggml_type_info *ti = ggml_type_get(t);
    size_t off[2] = {0, 2};
    int k = 1;
    switch (t) {
    case GGML_Q4_1:
    case GGML_Q5_1:
    case GGML_Q4_K:
    case GGML_Q5_K: k = 2; break;
    case GGML_Q2_K:
        off[0] = offsetof(block_q2_K, d);
        off[1] = offsetof(block_q2_K, dmin);
        k = 2;
        break;
    case GGML_Q3_K: off[0] = offsetof(block_q3_K, d); break;
    case GGML_Q6_K: off[0] = offsetof(block_q6_K, d); break;
    case GGML_MXFP4: k = 0; break;
    default: break;
    }
    for (size_t b = 0; b < size / ti->type_size; b++)
        for (int j = 0; j < k; j++) {
            ggml_half h = f32_to_fp16(0.01f + 0.01f * frand());
            memcpy(w + b * ti->type_size + off[j], &h, 2);
        }
    if (t == GGML_MXFP4)
        for (size_t b = 0; b < size / ti->type_size; b++) w[b * ti->type_size] = 120;
}

typedef struct {
    const kernel_ops *k;
    uint32_t t;
    int64_t n;
    const uint8_t *w;
    size_t w_row;
    int nr;
    const uint8_t *act;
    size_t act_row;
    int nc;
    float *out;
    double cpu[16]; /* thread CPU seconds of the last run */
} mm_job;

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void mm_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    /* split rows in multiples of 16 so tiles stay whole */
    int per = (j->nr / nth + 15) / 16 * 16;
    int r0 = per * ith, r1 = r0 + per < j->nr ? r0 + per : j->nr;
    double t0 = thread_cpu();
    /* CALL_ROWS=N: one matmul call per N rows (the size of an expert's matrix), as MoE decode calls */
    const char *cr = getenv("CALL_ROWS");
    const int step = cr && atoi(cr) > 0 ? atoi(cr) : r1 - r0;
    for (int r = r0; r < r1; r += step)
        j->k->matmul(j->t, j->n, j->w + (size_t)r * j->w_row, j->w_row, r + step < r1 ? step : r1 - r, j->act,
                     j->act_row, j->nc, j->out + r, (size_t)j->nr);
    j->cpu[ith] = thread_cpu() - t0;
}

/* Best wall time of reps runs; *cpu_best: best over runs of the slowest thread's CPU time,
 * which is what the kernels cost when other processes compete for the cores. */
static double run_best(threadpool *pool, mm_job *j, int reps, double *cpu_best) {
    double best = 1e30;
    *cpu_best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        threadpool_run(pool, mm_worker, j);
        double dt = now() - t0, c = 0;
        for (int t = 0; t < threadpool_size(pool); t++) c = j->cpu[t] > c ? j->cpu[t] : c;
        if (dt < best) best = dt;
        if (c < *cpu_best) *cpu_best = c;
    }
    return best;
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 128;
    int maxt = argc > 2 ? atoi(argv[2]) : 2;
    const char *isa = argc > 3 && strcmp(argv[3], "all") ? argv[3] : NULL;
    const char *only = argc > 4 && strcmp(argv[4], "all") ? argv[4] : NULL;
    int reps = argc > 5 ? atoi(argv[5]) : 5;
    const kernel_ops *tables[8];
    int nt = kernels_available(tables, 8);
    /* the decode prefetch plan the engine runs here (LFM2C_DEC_PF, else the cached or timed
     * choice for the chosen table: kernels_choose.c); the other tables decode under it too */
    const kernel_choice *ch = kernels_choice();
    printf("decode prefetch plan: %s (%s)\n", DEC_PF_PLANS[dec_pf_plan].name, ch->pf_how);
    static const uint32_t types[] = {GGML_Q4_K, GGML_Q5_K,   GGML_Q6_K,   GGML_Q4_0, GGML_Q8_0, GGML_Q4_1,
                                     GGML_Q5_0, GGML_Q5_1,   GGML_F16,    GGML_BF16, GGML_F32,  GGML_Q2_K,
                                     GGML_Q3_K, GGML_IQ4_NL, GGML_IQ4_XS, GGML_MXFP4};
    const int64_t n = 2048;
    const char *pcs = getenv("PP_COLS"); /* prefill columns (1..512), else 512 */
    const int pc = pcs && atoi(pcs) >= 1 && atoi(pcs) <= 512 ? atoi(pcs) : 512;
    float *x = malloc(sizeof(float) * n * 512);
    for (int64_t i = 0; i < n * 512; i++) x[i] = frand();
    uint8_t *act = malloc((size_t)n * 4 * 512);
    float *out = malloc(sizeof(float) * 512 * 65536 * 2);
    threadpool *pools[16] = {0};
    for (int t = 1; t <= maxt && t < 16; t++) pools[t] = threadpool_new(t);
    printf("%-10s %-7s %12s", "table", "type", "MB");
    for (int t = 1; t <= maxt; t++) printf("  dec GB/s t=%d (cpu)", t);
    for (int t = 1; t <= maxt; t++) printf("  pp GOP/s t=%d (cpu)", t);
    printf("\n");
    for (int ti = 0; ti < nt; ti++) {
        const kernel_ops *k = tables[ti];
        if (isa ? strcmp(k->isa, isa) != 0 : !strcmp(k->isa, "scalar")) continue;
        for (size_t yi = 0; yi < sizeof types / sizeof *types; yi++) {
            uint32_t t = types[yi], at = vec_dot_type(t);
            if (only && strcmp(only, ggml_type_get(t)->name)) continue;
            size_t w_row = ggml_row_size(t, n);
            int nr = (int)((mb << 20) / w_row) / 64 * 64;
            /* in 2 MB pages, as the engine's copy of a model is (on 4 KB pages decode streams
             * slower, and the prefetch plans rank differently) */
            size_t w_len;
            uint8_t *w = huge_alloc(w_row * (size_t)nr, &w_len);
            if (!w) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            fill_weights(t, w, (size_t)nr, n);
            for (int packed = 0; packed < 2; packed++) {
                const uint32_t pt = k->packed_type ? k->packed_type(t, nr) : t;
                if (packed && pt == t) break;
                if (packed) { /* the same matrix in the table's interleaved layout, in place */
                    uint8_t *tmp = malloc(w_row * (size_t)nr);
                    if (!tmp) {
                        fprintf(stderr, "out of memory\n");
                        return 1;
                    }
                    memcpy(tmp, w, w_row * (size_t)nr);
                    x16_pack(t, tmp, w_row, nr, w);
                    free(tmp);
                    t = pt;
                }
                size_t act_row = at == GGML_F32 ? (size_t)n * 4 : ggml_row_size(at, n);
                for (int c = 0; c < 512; c++) k->quantize_act(at, x + c * n, act + c * act_row, n);
                printf("%-10s %-7s %12.1f", k->isa, ggml_type_get(t)->name, w_row * (double)nr / 1e6);
                for (int th = 1; th <= maxt; th++) {
                    mm_job j = {k, t, n, w, w_row, nr, act, act_row, 1, out, {0}};
                    double ct, dt = run_best(pools[th], &j, reps, &ct);
                    printf("  %7.1f (%6.1f)", w_row * (double)nr / dt / 1e9, w_row * (double)nr / ct / 1e9);
                }
                for (int th = 1; th <= maxt; th++) {
                    int pr = 2048 < nr ? 2048 : nr; /* an FFN-sized matrix: 2048 x 2048 */
                    mm_job j = {k, t, n, w, w_row, pr, act, act_row, pc, out, {0}};
                    double ct, dt = run_best(pools[th], &j, reps > 2 ? reps / 2 : 1, &ct);
                    printf("  %7.1f (%6.1f)", 2.0 * n * pr * pc / dt / 1e9, 2.0 * n * pr * pc / ct / 1e9);
                }
                printf("\n");
                fflush(stdout);
            }
            huge_free(w, w_len);
        }
    }
    for (int t = 1; t <= maxt && t < 16; t++) threadpool_free(pools[t]);
    free(x);
    free(act);
    free(out);
    return 0;
}
