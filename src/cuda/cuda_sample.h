/* cuda_sample.h — sampling on the device (sample.cu): a block per row of logits applies the
 * request's logit bias, penalties and token mask, then draws as the CPU sampler does (greedy, or
 * top-k -> top-p -> min-p -> temperature) with the same counter-based generator and arithmetic
 * (core/sample_math.h), and computes the logprobs asked for under the raw logits. Only the
 * smp_out records need to come back to the host. */
#ifndef LFM2C_CUDA_SAMPLE_H
#define LFM2C_CUDA_SAMPLE_H
#include "cuda_kernels.h"
extern "C" {
#include "lfm2c.h"
#include "core/forward.h"
#include "core/sample_math.h"
}

/* Samples n rows: job i reads logits row jobs[i].row (rows ldl floats apart, n_vocab used), its
 * arrays at byte offsets in arena, and writes out[i]; work holds n * n_vocab floats (the rows as
 * biased, penalized and masked). Every pointer is a device pointer. Queued on cq's stream. */
void cu_sample(cu_q *cq, const float *logits, size_t ldl, int n_vocab, const smp_job *jobs, int n, const uint8_t *arena,
               float *work, smp_out *out);

/* The backend's side of decode_batch_sample (sample_step.cu), one per model. */
struct cu_sampler;
cu_sampler *cu_sampler_new(void);
void cu_sampler_free(cu_sampler *cs);
/* Before a forward of toks[0..T): the output rows to sample on the device (their session has an
 * item whose sampler has no filter hook) made into jobs. Returns how many (0: none), -1 on error. */
int cu_sampler_plan(cu_sampler *cs, const fwd_token *toks, int T, int n_vocab, lfm2c_error *err);
/* The rows drawn on the device so far (not handed back): the tests' proof the path was taken. */
long cu_sampler_taken(const cu_sampler *cs);
/* Whether the planned forward samples any row on the device. */
bool cu_sampler_active(const cu_sampler *cs);
/* Whether output row `row` of the planned forward is sampled on the device (its logits stay there). */
bool cu_sampler_took(const cu_sampler *cs, int row);
/* Queued after the output head made logits[n_out][n_vocab]: the jobs up, the kernel, the records
 * down, and the rows not sampled on the device into host_logits (pinned) as before. */
void cu_sampler_enqueue(cu_sampler *cs, cu_q *cq, const float *logits, float *host_logits, int n_out, int n_vocab);
/* After the stream is done: the records into the items; a row handed back (SMP_HOST) copied from
 * logits to its session's row. */
int cu_sampler_finish(cu_sampler *cs, const float *logits, int n_vocab, lfm2c_error *err);
#endif
