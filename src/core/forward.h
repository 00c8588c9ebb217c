/* forward.h — a forward pass over a batch of tokens from one or more sessions: the batch every
 * backend takes (fwd_token, backend.h's forward), and the MoE routing rule every backend follows
 * (defined with the CPU backend's pass, cpu/forward.c; the CUDA tests take it as the truth). The
 * CPU backend's own pass is declared in cpu/backend_cpu.h. */
#ifndef LFM2C_FORWARD_H
#define LFM2C_FORWARD_H
#include "lfm2c.h"

struct lfm2c_session;

/* One token of a batch. Tokens of a session appear in increasing position order. */
typedef struct fwd_token {
    struct lfm2c_session *seq;
    int32_t token;
    int pos;           /* absolute position in its sequence */
    int out_row;       /* row of seq->logits to fill, or -1 for no logits */
    float *snap;       /* where the backend can (BACKEND_CAP_CONV_SNAP): the sequence's conv state after
                    this token goes here (a checkpoint, session.h), or NULL */
    const float *embd; /* an input row (n_embd floats, an image's projected embedding) taken
                          instead of token's embedding; token is then the position's id in the
                          history (< 0, from the image's pixels: lfm2c_image_tokens). NULL: a
                          token. Only for a backend with BACKEND_CAP_EMBD_INPUT. */
} fwd_token;

#ifdef __cplusplus
extern "C" {
#endif
/* MoE routing of one token (spec 2.6): the k experts with the largest sigmoid(logit) + bias,
 * weighted by their sigmoid scores renormalised to sum 1 (E <= 4096). */
void moe_route(const float *logits, const float *bias, int E, int k, int *sel, float *w);

#ifdef __cplusplus
}
#endif
#endif
