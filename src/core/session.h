/* session.h — per-sequence state: attention KV cache, conv state, token history, checkpoints. */
#ifndef LFM2C_SESSION_H
#define LFM2C_SESSION_H
#include "core/model.h"

typedef struct conv_checkpoint {
    int pos;
    float *conv;
} conv_checkpoint;

#define SESSION_MAX_CHECKPOINTS 16

struct lfm2c_session {
    lfm2c_model *model;
    int n_ctx, n_past;
    int32_t *tokens;    /* [n_ctx] history */
    int kv_cap;         /* positions usable in each k / v array (allocated: rounded up to KV_KB) */
    int kv_dim;         /* n_head_kv * head_dim of the widest attention layer */
    int type_k, type_v; /* LFM2C_KV_* (kernels.h KV_*) */
    size_t k_block;     /* bytes of one K block (KV_KB positions, n_head_kv_max heads) */
    size_t v_row;       /* bytes of one V row (kv_dim values) */
    float *conv;        /* per conv layer: [2][n_embd] = the last two u columns, oldest first */
    float *logits;      /* [rows_cap][n_vocab]; an embedding session's rows use the first n_embd */
    bool embeddings;    /* rows are the final norm's output, not logits (lfm2c_session_set_embeddings) */
    int n_rows, rows_cap;
    conv_checkpoint ckpt[SESSION_MAX_CHECKPOINTS];
    int n_ckpt;
    void *backend_state;                     /* the backend's own (CPU: cpu_session, backend_cpu.h: the KV arrays;
                               CUDA: device KV cache + conv state), or NULL */
    struct lfm2c_lora *lora[LFM2C_MAX_LORA]; /* adapters applied to this sequence (lora.h) */
    float lora_scale[LFM2C_MAX_LORA];
    int n_lora;
    /* The conv trail (lfm2c_session_mark): positions [trail_pos, trail_pos + trail_cap) have
     * their conv input u recorded by the CPU forward, trail[(pos - trail_pos)][conv layer][n_embd],
     * and trail_conv is the conv state at trail_pos (a checkpoint of the same layout as ckpt[]):
     * together they give the conv state after any of those positions exactly (rollback). */
    float *trail, *trail_conv;
    int trail_pos, trail_cap; /* trail_cap 0: no columns recorded */
    bool trail_ok;            /* trail_conv holds the state at trail_pos (a device backend keeps
                                   only this: rollback restores it and re-feeds the kept tokens) */
    int trail_alloc;          /* positions trail has room for */
};

/* Makes room for positions [0, n) in the KV cache. */
int session_reserve(struct lfm2c_session *s, int n, lfm2c_error *err);
int session_reserve_rows(struct lfm2c_session *s, int rows, lfm2c_error *err);
#endif
