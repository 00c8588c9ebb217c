/* session.h — per-sequence state: attention KV cache, conv state, token history, checkpoints. */
#ifndef LFM2C_SESSION_H
#define LFM2C_SESSION_H
#include "model.h"

typedef struct conv_checkpoint { int pos; float *conv; } conv_checkpoint;

#define SESSION_MAX_CHECKPOINTS 16

struct lfm2c_session {
    lfm2c_model *model;
    int n_ctx, n_past;
    int32_t *tokens;        /* [n_ctx] history */
    int kv_cap;             /* positions allocated in each k / v array */
    int kv_dim;             /* n_head_kv * head_dim of the widest attention layer */
    float **k, **v;         /* per attention layer: [kv_cap][kv_dim] */
    float *conv;            /* per conv layer: [2][n_embd] = the last two u columns, oldest first */
    float *logits;          /* [rows_cap][n_vocab] */
    int n_rows, rows_cap;
    conv_checkpoint ckpt[SESSION_MAX_CHECKPOINTS];
    int n_ckpt;
};

/* Makes room for positions [0, n) in the KV cache. */
int session_reserve(struct lfm2c_session *s, int n, lfm2c_error *err);
int session_reserve_rows(struct lfm2c_session *s, int rows, lfm2c_error *err);
#endif
