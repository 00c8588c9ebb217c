/* backend_cpu.h — the CPU backend's own state, kept behind m->backend_state and
 * s->backend_state like every backend's (backend.h), and read by the code that runs the CPU
 * forward pass: forward.c, matmul.c, lora_apply.c; its pass (forward.c) and LoRA hook
 * (lora_apply.c).
 * Nothing outside the CPU backend reads the state; a model or session of another backend holds
 * that backend's state there instead. */
#ifndef LFM2C_BACKEND_CPU_H
#define LFM2C_BACKEND_CPU_H
#include "core/forward.h"
#include "core/session.h"
#include "cpu/kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct encoder_ops;
extern const struct encoder_ops cpu_encoder_ops; /* encoder.c: the encoders' products (core/encoder.h) */

/* Per model. */
typedef struct cpu_model {
    const kernel_ops *kern;      /* the kernel table its products run on (kernels.h) */
    bool reference;              /* lfm2c_model_params.reference: the plain scalar float path */
    struct scratch *scratch;     /* reused buffers of the forward pass (scratch.h) */
    bool prof_pass;              /* forward_cpu: the pass is one token (decode): matmul_run times
                                    its products into m->prof */
    bool lora_pass;              /* forward_cpu: some token of the pass has adapters (lora.h) */
    struct replay_trace *replay; /* `bench`'s record of decode passes' weight reads (replay.h) */
} cpu_model;

/* Per session: the KV cache in host memory, one pair of arrays per attention layer, in the
 * layouts of formats/kv_layout.h. */
typedef struct cpu_session {
    uint8_t **k, **v;
    size_t *cap;    /* bytes of each array: k then v, per attention layer */
    size_t k_block; /* bytes of one K block (KV_KB positions, n_head_kv_max heads) */
    size_t v_row;   /* bytes of one V row (n_head_kv_max * head_dim values) */
} cpu_session;

static inline cpu_model *cpu_model_of(const lfm2c_model *m) { return (cpu_model *)m->backend_state; }
static inline cpu_session *cpu_session_of(const lfm2c_session *s) { return (cpu_session *)s->backend_state; }

/* The CPU pass's scratch slots (scratch.h; free with scratch_free). */
struct scratch *forward_scratch_new(void);
/* The CPU backend's forward (forward.c): runs the model over toks[0..n). KV caches and conv
 * states of the sessions are updated. */
int forward_cpu(lfm2c_model *m, const fwd_token *toks, int n, lfm2c_error *err);
/* Bytes of the scratch slots forward_cpu grows for a pass of n tokens, n_out of them with logits
 * (the backend table's scratch_bytes). */
size_t forward_scratch_bytes(const lfm2c_model *m, int n, int n_out);
/* LoRA at run time (lora_apply.c): y[i * ldy + o] += Σ over the adapters of row i's sequence
 * s' s B_e (A_e x_i) for the rows i < n of one product with w (expert e of a stacked expert
 * tensor). Row i's input is x + (xrow ? xrow[i] : i) * ldx, its token toks[tok ? tok[i] : i].
 * Does nothing when the pass has no adapters (cpu_model.lora_pass) or none adapts w. */
void lora_apply(lfm2c_model *m, const fwd_token *toks, const tensor *w, int expert, const float *x, size_t ldx,
                const int *xrow, const int *tok, int n, float *y, size_t ldy);
/* Tests: the size from which the CPU backend maps a KV array in 2 MB pages (default
 * KV_MAP_MIN_DEFAULT); to be changed only while no CPU session exists (an array is freed by the
 * rule it was made by). */
#define KV_MAP_MIN_DEFAULT ((size_t)2 << 20)
void backend_cpu_kv_map_min(size_t bytes);
#endif
