/* cuda_backend.h — the CUDA backend as seen from the C library (built with -DLFM2C_CUDA=ON,
 * which defines LFM2C_HAVE_CUDA). The model's weights are uploaded once, as quantized in the
 * file; each session keeps its KV cache and conv state on the GPU. forward() hands batches to
 * cuda_forward() when m->cuda is set; logits land in the sessions' host buffers as on the CPU.
 * The host copy of the conv state (s->conv) is only current after cuda_session_pull_conv(),
 * and changes to it reach the GPU with cuda_session_push_conv() (checkpoints, truncate, reset). */
#ifndef LFM2C_CUDA_BACKEND_H
#define LFM2C_CUDA_BACKEND_H
#include "lfm2c.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lfm2c_session;
struct fwd_token;

/* Number of usable CUDA devices (0 when there is no driver or no device). */
int cuda_device_count(void);
/* Uploads the bound weights of m (m->cuda is set on success). */
int cuda_model_init(lfm2c_model *m, lfm2c_error *err);
void cuda_model_free(lfm2c_model *m);
/* Device state of a new session (s->cuda is set on success). */
int cuda_session_init(struct lfm2c_session *s, lfm2c_error *err);
void cuda_session_free(struct lfm2c_session *s);
/* Grows the device KV cache to cap positions, keeping its contents. */
int cuda_session_reserve(struct lfm2c_session *s, int cap, lfm2c_error *err);
void cuda_session_pull_conv(struct lfm2c_session *s);   /* device → s->conv */
void cuda_session_push_conv(struct lfm2c_session *s);   /* s->conv → device */
int cuda_forward(lfm2c_model *m, const struct fwd_token *toks, int n, lfm2c_error *err);

#ifdef __cplusplus
}
#endif
#endif
