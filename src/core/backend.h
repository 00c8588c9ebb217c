/* backend.h — what runs a model: one table of operations per backend (CPU, CUDA), and the one
 * list of the backends this build has (backend.c). model.c, session.c and the decode path call
 * a backend only through m->backend; none of them knows which backends exist. A backend keeps
 * its own state in m->backend_state and s->backend_state; the host-side parts of a session
 * (token history, conv state s->conv, checkpoints, logits) are session.c's on every backend.
 *
 * Adding a backend: a `const lfm2c_backend` in its own file(s), one line in backends[] in
 * backend.c (under the build flag that compiles it), its LFM2C_DEVICE_* id in include/lfm2c.h,
 * and the CMake option that builds it. */
#ifndef LFM2C_BACKEND_H
#define LFM2C_BACKEND_H
#include "lfm2c.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lfm2c_session;
struct fwd_token;

typedef struct lfm2c_backend {
    const char *name; /* "cpu", "cuda": for messages */
    int device;       /* the LFM2C_DEVICE_* of lfm2c_model_params that selects it */
    /* Attaches to a model whose weights are bound (m->backend_state, buffers, device upload).
     * On failure it leaves nothing to free. model_free undoes a successful model_init. */
    int (*model_init)(lfm2c_model *m, lfm2c_error *err);
    void (*model_free)(lfm2c_model *m);
    /* A new session's backend state (its KV cache, empty). session_free must accept a session
     * whose session_init failed part-way. */
    int (*session_init)(struct lfm2c_session *s, lfm2c_error *err);
    void (*session_free)(struct lfm2c_session *s);
    /* Grows the KV cache to cap positions, keeping its contents (session.c sets s->kv_cap). */
    int (*kv_reserve)(struct lfm2c_session *s, int cap, lfm2c_error *err);
    /* Copies the KV entries of positions [0, n) from src to dst (reserved for n positions).
     * NULL: sessions of this backend cannot be copied. */
    void (*kv_copy)(struct lfm2c_session *dst, const struct lfm2c_session *src, int n);
    /* Where the backend keeps the conv state elsewhere, the host copy s->conv is current only
     * after conv_pull, and changes made to it reach the backend with conv_push (checkpoints,
     * truncate, reset). NULL: s->conv is the state itself. */
    void (*conv_pull)(struct lfm2c_session *s);
    void (*conv_push)(struct lfm2c_session *s);
    /* Runs the model over toks[0..n) (forward.h): KV caches and conv states updated, logits
     * written to the sessions' host buffers. */
    int (*forward)(lfm2c_model *m, const struct fwd_token *toks, int n, lfm2c_error *err);
    /* The most tokens one forward call takes (0: session.c's default): bounds the scratch memory
     * of a long prompt or a large batch; larger on a GPU, whose products fill it with columns. */
    int ubatch;
    /* Its forward writes an embedding session's rows (session.h `embeddings`: the final norm's
     * output, n_embd floats, where the logits would go; no head for them). false: such sessions
     * are refused (lfm2c_session_set_embeddings). */
    bool embeddings;
    /* Its forward copies a sequence's conv state after a token into fwd_token.snap when that is
     * set (checkpoints inside a prefill, checkpoint.c). false: session.c never sets it, and
     * checkpoints are taken between forwards only. */
    bool conv_snap;
} lfm2c_backend;

/* The backend serving `device` in this build; NULL (err set, saying how to get one) if none. */
const lfm2c_backend *backend_for_device(int device, lfm2c_error *err);
/* The device model m's backend runs on, named (lfm2c_model_device). */
lfm2c_device_info backend_device_info(const lfm2c_model *m);

extern const lfm2c_backend backend_cpu; /* backend_cpu.c */
/* Tests: the size from which the CPU backend maps a KV array in 2 MB pages (default
 * KV_MAP_MIN_DEFAULT); to be changed only while no CPU session exists (an array is freed by the
 * rule it was made by). */
#define KV_MAP_MIN_DEFAULT ((size_t)2 << 20)
void backend_cpu_kv_map_min(size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
