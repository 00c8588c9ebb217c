/* backend_cpu.h — the CPU backend's own state, kept behind m->backend_state and
 * s->backend_state like every backend's (backend.h), and read by the code that runs the CPU
 * forward pass: forward.c, matmul.c, core/lora.c's run-time hook; and its pass (forward.c).
 * Nothing outside the CPU backend reads the state; a model or session of another backend holds
 * that backend's state there instead. */
#ifndef LFM2C_BACKEND_CPU_H
#define LFM2C_BACKEND_CPU_H
#include "core/forward.h"
#include "core/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Per model. */
typedef struct cpu_model {
    struct scratch *scratch;     /* reused buffers of the forward pass (scratch.h) */
    bool prof_pass;              /* forward_cpu: the pass is one token (decode): matmul_run times
                                    its products into m->prof */
    bool lora_pass;              /* forward_cpu: some token of the pass has adapters (lora.h) */
    struct replay_trace *replay; /* `bench`'s record of decode passes' weight reads (replay.h) */
} cpu_model;

/* Per session: the KV cache in host memory, one pair of arrays per attention layer, in the
 * layouts of kernels.h (s->k_block, s->v_row). */
typedef struct cpu_session {
    uint8_t **k, **v;
    size_t *cap; /* bytes of each array: k then v, per attention layer */
} cpu_session;

static inline cpu_model *cpu_model_of(const lfm2c_model *m) { return (cpu_model *)m->backend_state; }
static inline cpu_session *cpu_session_of(const lfm2c_session *s) { return (cpu_session *)s->backend_state; }

/* The CPU pass's scratch slots (scratch.h; free with scratch_free). */
struct scratch *forward_scratch_new(void);
/* The CPU backend's forward (forward.c): runs the model over toks[0..n). KV caches and conv
 * states of the sessions are updated. */
int forward_cpu(lfm2c_model *m, const fwd_token *toks, int n, lfm2c_error *err);
#endif
