/* model.h — the loaded model: hyper-parameters, weights bound to the mapped GGUF, and the
 * per-session state. Internal to the library. */
#ifndef LFM2C_MODEL_H
#define LFM2C_MODEL_H
#include "lfm2c.h"
#include "formats/gguf.h"
#include "text/tokenizer.h"
#include "base/threadpool.h"

/* A weight matrix as stored: rows of ne[0] inputs; ne[1] rows (outputs); ne[2] experts. */
typedef struct tensor {
    const char *name;
    const uint8_t *data;
    uint32_t type;
    int64_t ne[3];
    size_t row_bytes;
    int lora_key; /* layer * LFM2_T_COUNT + table row + 1 of a matrix LoRA may adapt, else 0 */
} tensor;

typedef struct layer {
    bool is_attn, is_moe;
    int n_head_kv;
    tensor attn_norm, ffn_norm;
    tensor conv_in, conv_w, conv_out;                          /* gated short conv */
    tensor wq, wk, wv, wo, q_norm, k_norm;                     /* attention */
    tensor ffn_gate, ffn_up, ffn_down;                         /* dense SwiGLU */
    tensor router, expert_bias, gate_exps, up_exps, down_exps; /* MoE */
    int attn_index, conv_index;                                /* ordinal among attention / conv layers */
} layer;

struct lfm2c_model {
    gguf_file *gguf;
    lfm2c_model_info info;
    tensor tok_embd, out_norm, output;
    layer *layers;
    int n_attn, n_conv;
    lfm2c_tokenizer *tok;
    threadpool *pool;
    bool pool_shared;                    /* the process's shared pool (shared_threads): a forward pass is a turn */
    int pool_key;                        /* added to threadpool_step's keys: another model's passes cost otherwise */
    const struct lfm2c_backend *backend; /* what runs it (backend.h); set once attached */
    void *backend_state;                 /* the backend's own (CPU: cpu_model, backend_cpu.h; a GPU's:
                                          the device copy), or NULL */
    int type_k, type_v;                  /* KV cache types of new sessions (LFM2C_KV_*) */
    lfm2c_decode_profile prof;           /* matmul_run's products in one-token passes (lfm2c.h) */
    lfm2c_matmul_hook mm_hook;           /* each product's input, where the backend hands it over */
    void *mm_hook_user;                  /* (lfm2c_model_set_matmul_hook; BACKEND_CAP_MATMUL_HOOK) */
};

/* Validates m->type_k / type_v against the model (session.c). */
int kv_types_check(const lfm2c_model *m, lfm2c_error *err);

const lfm2c_tokenizer *model_tokenizer(const lfm2c_model *m);
#endif
