/* session.h — per-sequence state: attention KV cache, conv state, token history, checkpoints. */
#ifndef LFM2C_SESSION_H
#define LFM2C_SESSION_H
#include "core/model.h"

/* The conv state after positions [0, pos) (checkpoint.c): restoring it and the KV entries before
 * pos resumes the sequence there without reading its tokens again. */
typedef struct conv_checkpoint {
    int pos;
    bool pinned;   /* taken by lfm2c_session_checkpoint or after an end-of-turn token: thinned last */
    bool pending;  /* its buffer is being written by the forward under way */
    float *conv;   /* the layout of s->conv */
    float *logits; /* the logits row of position pos - 1 (n_vocab floats), or NULL */
} conv_checkpoint;

/* The checkpoint policy of a new session (lfm2c_session_set_checkpoints changes it). */
enum { CKPT_EVERY_DEFAULT = 0, CKPT_MAX_DEFAULT = 16, CKPT_LOGITS_DEFAULT = 0 };
/* Tokens per forward call where the backend does not say (lfm2c_backend.ubatch). */
enum { SESSION_UBATCH = 512 };

struct lfm2c_session {
    lfm2c_model *model;
    int n_ctx, n_past;
    int32_t *tokens;    /* [n_ctx] history */
    int kv_cap;         /* positions usable in each k / v array (the backend may round it up) */
    int kv_dim;         /* n_head_kv * head_dim of the widest attention layer */
    int type_k, type_v; /* LFM2C_KV_* (formats/kv_layout.h KV_*) */
    float *conv;        /* per conv layer: [2][n_embd] = the last two u columns, oldest first */
    float *logits;      /* [rows_cap][n_vocab]; an embedding session's rows use the first n_embd */
    bool embeddings;    /* rows are the final norm's output, not logits (lfm2c_session_set_embeddings) */
    int n_rows, rows_cap;
    int rows_end; /* the last logits row (n_rows - 1) is of position rows_end - 1 */
    /* Checkpoints (checkpoint.c), sorted by pos: at most ckpt_max, one every ckpt_every positions
     * taken inside the forward where the backend can (BACKEND_CAP_CONV_SNAP), ckpt_logits of them keeping a
     * logits row. */
    conv_checkpoint *ckpt;
    int n_ckpt, ckpt_max, ckpt_every, ckpt_logits;
    void *backend_state;                     /* the backend's own (CPU: cpu_session, backend_cpu.h: the KV arrays;
                               CUDA: device KV cache + conv state), or NULL */
    struct lfm2c_lora *lora[LFM2C_MAX_LORA]; /* adapters applied to this sequence (lora.h) */
    float lora_scale[LFM2C_MAX_LORA];
    int n_lora;
    /* The conv trail (lfm2c_session_mark): positions [trail_pos, trail_pos + trail_cap) have
     * their conv input u recorded by the forward (BACKEND_CAP_CONV_TRAIL), trail[(pos - trail_pos)][conv layer][n_embd],
     * and trail_conv is the conv state at trail_pos (a checkpoint of the same layout as ckpt[]):
     * together they give the conv state after any of those positions exactly (rollback). */
    float *trail, *trail_conv;
    int trail_pos, trail_cap; /* trail_cap 0: no columns recorded */
    bool trail_ok;            /* trail_conv holds the state at trail_pos (a device backend keeps
                                   only this: rollback restores it and re-feeds the kept tokens) */
    int trail_alloc;          /* positions trail has room for */
    /* the item decode_batch_sample samples this session's row into, during its forward (sample_batch.h) */
    struct sample_item *dev_sample;
};

/* checkpoint.c: the session's checkpoints (session.c and the backends' forwards use them) */
int ckpt_init(struct lfm2c_session *s);
void ckpt_free_all(struct lfm2c_session *s);
/* The buffer the forward fills with the conv state after the token at pos - 1 (fwd_token.snap),
 * when the policy wants one there; NULL otherwise. */
float *ckpt_snap(struct lfm2c_session *s, int pos, bool end_of_turn);
void ckpt_forward_done(struct lfm2c_session *s, bool ok); /* the forward that wrote the snaps ended */
void ckpt_drop_after(struct lfm2c_session *s, int pos);   /* they describe dropped tokens */
/* The newest checkpoint at or before pos (NULL: none). */
const conv_checkpoint *ckpt_at_or_before(const struct lfm2c_session *s, int pos);
int ckpt_copy(struct lfm2c_session *dst, const struct lfm2c_session *src);
size_t ckpt_conv_bytes(const struct lfm2c_session *s);

/* Makes room for positions [0, n) in the KV cache. */
int session_reserve(struct lfm2c_session *s, int n, lfm2c_error *err);
int session_reserve_rows(struct lfm2c_session *s, int rows, lfm2c_error *err);
#endif
