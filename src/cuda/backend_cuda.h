/* backend_cuda.h — the CUDA backend (built with -DLFM2C_CUDA=ON): its entry in the backend table
 * (backend.h), listed in backend.c. The model's weights are uploaded once, as quantized in the
 * file; each session keeps its KV cache and conv state on the GPU (conv_pull / conv_push keep
 * the host copy s->conv in step); logits land in the sessions' host buffers as on the CPU. */
#ifndef LFM2C_BACKEND_CUDA_H
#define LFM2C_BACKEND_CUDA_H
#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const lfm2c_backend backend_cuda;

/* Number of usable CUDA devices (0 when there is no driver or no device). */
int cuda_device_count(void);
/* The name of the GPU model m (opened on CUDA) runs on, cap bytes; "" when unknown. */
void cuda_device_name(const lfm2c_model *m, char *name, size_t cap);

/* What opening m on CUDA decided against what its variables asked (a path left out by the memory
 * plan: LFM2C_CUDA_MOE=cublas), one line; NULL: nothing. */
const char *cuda_backend_note(const lfm2c_model *m);

/* With LFM2C_CUDA_PROFILE=1 in the environment when the model was opened on CUDA: each stage's
 * device time over the forwards so far, as a table of text into buf. -1: no such profile. */
int cuda_profile_text(const lfm2c_model *m, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
