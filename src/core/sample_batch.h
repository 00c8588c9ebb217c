/* sample_batch.h — a batch decoded and sampled in one step (sample_batch.c): each item's last
 * token's logits drawn from by the item's sampler, on the device where the backend samples there,
 * else on the host; the same tokens either way for the same seeds (core/sample_math.h). */
#ifndef LFM2C_SAMPLE_BATCH_H
#define LFM2C_SAMPLE_BATCH_H
#include "lfm2c.h"

#include "core/sample_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One item's sampling. A backend that samples on the device finds the item through its session
 * (lfm2c_session.dev_sample) while the forward runs, fills `out` for the rows it sampled and
 * leaves SMP_PENDING (or sets SMP_HOST) where the host must; it never changes the sampler (the
 * host moves its counter on when out.drew). A device-sampled item's logits row is not copied to
 * the session: the session then has no logits rows (lfm2c_session_logits NULL, no checkpoint
 * keeps them). */
enum { SMP_PENDING = -4 };
typedef struct sample_item {
    lfm2c_sampler *smp;
    const uint32_t *mask; /* allowed tokens, bit i & 31 of word i >> 5; NULL: every token */
    int n_logprobs;       /* -1: none; else the chosen token's and the best n (<= SMP_MAX_TOP) */
    smp_out out;
} sample_item;

/* lfm2c_decode_batch of n_items items (n[i] >= 1 tokens each, logits of the last only), then
 * items[i].out: the token (out.token, or -1 with out.status SMP_NONE / SMP_NOT_FINITE as
 * lfm2c_sampler_sample returns -1 / LFM2C_SAMPLE_NOT_FINITE), drawn with the penalties over the
 * session's tokens, and the logprobs asked for (the raw logits' log-softmax). */
int decode_batch_sample(lfm2c_session **ss, const int32_t *const *tokens, const int *n, sample_item *items, int n_items,
                        lfm2c_error *err);
/* decode_batch_sample for a batch of any items (lfm2c_decode_batch_embd's arguments: each item's
 * tokens, its embedding rows (rows NULL: none) and its logits mode), of which those with a
 * sampler (items[i].smp; NULL: not sampled) are offered to the backend's sampler: such an item
 * asks for its last row (LFM2C_LOGITS_LAST). Nothing is sampled on the host here: an item the
 * backend left (out.status SMP_PENDING, or SMP_HOST) has its logits row in its session for the
 * caller's own sampling (the scheduler's, with its filters); a device-sampled one has out filled
 * and its sampler's counter moved on, and no logits row. Returns lfm2c_decode_batch's result. */
int decode_batch_sample_items(lfm2c_session **ss, const int32_t *const *tokens, const float *const *rows, const int *n,
                              const int *modes, sample_item *items, int n_items, lfm2c_error *err);
/* The chosen token's (o->token) logprob and the best k under the raw logits of n_vocab (ties: the
 * lower id), as a device sampler computes them. */
void sample_logprobs(const float *logits, int n_vocab, int k, smp_out *o);

#ifdef __cplusplus
}
#endif
#endif
