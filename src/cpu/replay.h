/* replay.h — the ceiling a decode step's weight products are held to: the weights some traced
 * decode passes read, read again as plain streams (no arithmetic), from the same pages, split
 * over the same pool the same way. Where decode's products read at most of the replay's rate,
 * the kernels are bandwidth-bound and what remains below `membw` (a 1 GB buffer somewhere else)
 * is the memory that holds the weights, not the code (bench/README.md says how to read it; the
 * figures: bench/CPU.md "Zen 5 on the Oxide host: decode against a replay of its own reads").
 * The CPU backend only; for `lfm2c bench`. */
#ifndef LFM2C_REPLAY_H
#define LFM2C_REPLAY_H
#include "core/model.h"
#include "cpu/matmul.h"

/* The next n_passes one-token passes record the weight ranges their products read (matmul_run):
 * more than one, so that a MoE model's replay meets as many different experts as its decode
 * does. 0, or -1 when the model does not run on the CPU backend or memory is short. */
int replay_arm(lfm2c_model *m, int n_passes);
/* forward_cpu, at the start of every pass (one_token: T == 1): records it while passes remain */
void replay_pass_begin(lfm2c_model *m, bool one_token);
/* matmul_run: one job's products, recorded while a pass is being recorded */
void replay_record(lfm2c_model *m, const mm_task *tasks, int n);

typedef struct replay_result {
    double bytes;                     /* weight bytes the traced passes' products read */
    int passes, jobs, ranges;         /* the passes, their matmul jobs, and the contiguous ranges in them */
    double gbps_jobs;                 /* read as decode's jobs: one pool run (a barrier) per job */
    double gbps_flat;                 /* each thread reads its share of every job in one pool run */
    int pf_bytes_jobs, pf_bytes_flat; /* the prefetch distance that read fastest in each */
} replay_result;
/* Replays the recorded passes (the best of a few prefetch distances). 0, or -1 when nothing was
 * recorded. */
int replay_run(lfm2c_model *m, replay_result *r);
/* One reading of the recorded passes at one prefetch distance (replay_result's pf_bytes_*), job
 * by job or in one pass: GB/s, or -1 when nothing was recorded. For pairs with decode: a pass
 * recorded, then read again at once, so that a drift of the machine meets both alike. */
double replay_gbps(lfm2c_model *m, int pf_bytes, bool flat);
/* Every tensor's bytes read once, as the replay reads (prefetch 4 KB ahead), split over the pool:
 * GB/s, the bytes in *bytes; -1 when the model does not run on the CPU backend or memory is
 * short. For `bench
 * --warm-read`: the first read of memory a load has just written can be far slower than later
 * ones (bench/CPU.md "the first read after a load"), and a tg row then times that, not decode. */
double replay_read_weights(lfm2c_model *m, double *bytes);
/* backend_cpu.c: frees the trace */
void replay_free(lfm2c_model *m);
#endif
