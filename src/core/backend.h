/* backend.h — what runs a model: one table of operations per backend (CPU, CUDA, Vulkan), and
 * the one list of the backends this build has (backend.c). The core (model.c, session.c,
 * checkpoint.c, lora.c, the decode path) calls a backend only through m->backend and includes
 * no backend's header; none of it knows which backends exist. What a backend can do beyond the
 * operations every backend has is one field of its table, `caps` (BACKEND_CAP_* bits), asked
 * with backend_has and refused with backend_require, whose message is written from the table.
 * A backend keeps its own state in m->backend_state and s->backend_state; the host-side parts
 * of a session (token history, conv state s->conv, checkpoints, logits) are session.c's on
 * every backend.
 *
 * Adding a backend: a `const lfm2c_backend` in its own file(s), one line in backends[] in
 * backend.c (under the build flag that compiles it), its LFM2C_DEVICE_* id in include/lfm2c.h,
 * and the CMake option that builds it. Adding a capability: a bit below with its name in
 * backend.c's cap_names[], and the bit in the tables of the backends that have it. Which weight
 * types a backend multiplies is the type table's (formats/ggml_types.h, a GGML_RUN_* bit per
 * backend: `types` below), not a list of the backend's. */
#ifndef LFM2C_BACKEND_H
#define LFM2C_BACKEND_H
#include "lfm2c.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lfm2c_session;
struct fwd_token;
struct encoder_ops;

/* What a backend can do beyond the operations every backend has (lfm2c_backend.caps). */
enum {
    /* Its forward applies a session's LoRA adapters (lora.h); without it lfm2c_session_set_lora
     * refuses adapters. */
    BACKEND_CAP_LORA = 1u << 0,
    /* Its forward writes an embedding session's rows (session.h `embeddings`: the final norm's
     * output, n_embd floats, where the logits would go; no head for them); without it
     * lfm2c_session_set_embeddings refuses. */
    BACKEND_CAP_EMBEDDINGS = 1u << 1,
    /* kv_copy is set: a session can be copied (lfm2c_session_copy). */
    BACKEND_CAP_KV_COPY = 1u << 2,
    /* Its forward records the conv trail (session.h: the conv input u of each marked position,
     * for an exact rollback); without it lfm2c_session_mark keeps only the state at the mark. */
    BACKEND_CAP_CONV_TRAIL = 1u << 3,
    /* Its forward copies a sequence's conv state after a token into fwd_token.snap when that is
     * set (checkpoints inside a prefill, checkpoint.c); without it session.c never sets it, and
     * checkpoints are taken between forwards only. */
    BACKEND_CAP_CONV_SNAP = 1u << 4,
    /* Its forward reads the weights where the file is mapped in host memory: hugepages AUTO
     * copies them into 2 MB pages for it (lfm2c_model_params.hugepages). */
    BACKEND_CAP_HOST_WEIGHTS = 1u << 5,
    /* Its forward may sample the rows of decode_batch_sample's items itself (session.h
     * dev_sample, core/sample_batch.h: out filled, the logits row left on the device); without
     * it the host samples every row from the logits. */
    BACKEND_CAP_SAMPLE = 1u << 6,
    /* Its forward takes a position's input as an embedding row (fwd_token.embd: an image's);
     * without it session.c refuses such positions. */
    BACKEND_CAP_EMBD_INPUT = 1u << 7,
    /* `encoder` is set: it runs the encoders in front of the model (the image tower, the audio
     * Conformer: core/encoder.h); without it lfm2c_mmproj_open / lfm2c_audio_open refuse. */
    BACKEND_CAP_ENCODER = 1u << 8,
    /* Its forward hands each weight product's float input to the model's matmul hook when one is
     * set (m->mm_hook, lfm2c_model_set_matmul_hook: importance matrices); without it setting a
     * hook is refused. */
    BACKEND_CAP_MATMUL_HOOK = 1u << 9,
};

typedef struct lfm2c_backend {
    const char *name; /* "cpu", "cuda", "vulkan": for messages */
    int device;       /* the LFM2C_DEVICE_* of lfm2c_model_params that selects it */
    /* Attaches to a model whose weights are bound (m->backend_state, buffers, device upload).
     * On failure it leaves nothing to free. model_free undoes a successful model_init. */
    int (*model_init)(lfm2c_model *m, const lfm2c_model_params *p, lfm2c_error *err);
    void (*model_free)(lfm2c_model *m);
    /* A new session's backend state (its KV cache, empty). session_free must accept a session
     * whose session_init failed part-way. */
    int (*session_init)(struct lfm2c_session *s, lfm2c_error *err);
    void (*session_free)(struct lfm2c_session *s);
    /* Grows the KV cache to cap positions, keeping its contents (session.c sets s->kv_cap). */
    int (*kv_reserve)(struct lfm2c_session *s, int cap, lfm2c_error *err);
    /* Copies the KV entries of positions [0, n) from src to dst (reserved for n positions).
     * Set where caps has BACKEND_CAP_KV_COPY. */
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
    unsigned caps; /* what it can do beyond the operations above: BACKEND_CAP_* bits */
    /* Its bit among the type table's GGML_RUN_* (formats/ggml_types.h): the weight types whose
     * row has it are the ones its products take (backend_runs_type). */
    unsigned types;
    /* The encoders' products (core/encoder.h); set where caps has BACKEND_CAP_ENCODER. */
    const struct encoder_ops *encoder;
    /* Bytes of host memory its forward's own buffers take for a pass of n_tokens tokens, n_out of
     * them wanting logits (lfm2c_memory_estimate); NULL: none counted. */
    size_t (*scratch_bytes)(const lfm2c_model *m, int n_tokens, int n_out);
} lfm2c_backend;

/* The backend serving `device` in this build; NULL (err set, saying how to get one) if none. */
const lfm2c_backend *backend_for_device(int device, lfm2c_error *err);
/* The device model m's backend runs on, named (lfm2c_model_device). */
lfm2c_device_info backend_device_info(const lfm2c_model *m);

/* Whether m's backend can do cap (one BACKEND_CAP_* bit). */
bool backend_has(const lfm2c_model *m, unsigned cap);
/* 0 when m's backend can do cap; else -1 with err set (LFM2C_EUNSUPPORTED) saying which
 * backends of this build can ("WHAT: on the cpu and vulkan backends; this model runs on
 * cuda"), the names taken from backends[]. */
int backend_require(const lfm2c_model *m, unsigned cap, const char *what, lfm2c_error *err);

/* Whether backend b's products take weight type `type` (its bit in the type's row). */
bool backend_runs_type(const lfm2c_backend *b, uint32_t type);
/* The backends of this build that run weight type `type`, by name, into buf ("cpu, cuda"; "none
 * in this build"): for the message that refuses a tensor on another. */
void backend_type_runners(uint32_t type, char *buf, size_t cap);

extern const lfm2c_backend backend_cpu; /* backend_cpu.c */

#ifdef __cplusplus
}
#endif
#endif
