/* sampler.h — what the library sees of a sampler beyond the public API: the distribution it
 * draws from, and draws with its own RNG. Speculative decoding (spec.c) needs both to accept a
 * drafted token with min(1, p/q) and to resample a rejected one from max(0, p - q). */
#ifndef LFM2C_SAMPLER_H
#define LFM2C_SAMPLER_H
#include "lfm2c.h"

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
#endif
