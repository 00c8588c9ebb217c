/* sampler.h — what the library sees of a sampler beyond the public API: the distribution it
 * draws from, and draws with its own RNG. Speculative decoding (spec.c) needs both to accept a
 * drafted token with min(1, p/q) and to resample a rejected one from max(0, p - q). */
#ifndef LFM2C_SAMPLER_H
#define LFM2C_SAMPLER_H
#include "lfm2c.h"

#include "core/sample_math.h"

/* probs[0..n_vocab) = the probabilities lfm2c_sampler_sample would draw with from these logits
 * and history (greedy: 1 at its pick). Does not advance the RNG. -1 when no token is left,
 * LFM2C_SAMPLE_NOT_FINITE when the logits are not all finite. */
int sampler_probs(lfm2c_sampler *s, const float *logits, const int32_t *hist, int n_hist, float *probs);
/* A uniform number in [0, 1) from the sampler's RNG. */
double sampler_uniform(lfm2c_sampler *s);
/* A token drawn in proportion to weights[0..n_vocab) (non-negative, need not sum to 1) with the
 * sampler's RNG; -1 when every weight is 0. */
int32_t sampler_draw(lfm2c_sampler *s, const float *weights);
const lfm2c_sampler_params *sampler_params(const lfm2c_sampler *s);
/* A device sampler's job for the sampler's next draw (sample_math.h: its parameters, seed and
 * counter; no arrays): the penalty window is history[*hist_from, n_hist), *bias the sampler's
 * logit bias (n_vocab floats) or NULL. -1 when the sampler has a filter hook (host only). */
int sampler_job(const lfm2c_sampler *s, int n_hist, smp_job *j, int *hist_from, const float **bias);
/* After a device sampler drew for this sampler (smp_out.drew): its counter moves on. */
void sampler_drew(lfm2c_sampler *s);
/* Tokens whose bit is clear in mask ((n_vocab + 31) / 32 words, not copied) are excluded after
 * the filter hook, until the mask is set again; NULL: none. A device sampler takes the same mask
 * (smp_job.mask_off). */
void sampler_set_mask(lfm2c_sampler *s, const uint32_t *mask);
#endif
