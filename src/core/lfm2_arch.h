/* lfm2_arch.h — the LFM2 / LFM2-MoE architecture stated once (docs/LFM2-SPEC.md 3 and 4): the
 * GGUF metadata keys, the tensors of every layer kind and the global tensors, with their GGUF and
 * Hugging Face names and their shapes as functions of the hyper-parameters. The loader
 * (core/model.c), the HF → GGUF converter (convert/convert.c) and the synthetic-model writer
 * (convert/synth.c) all read these tables, so a new tensor or metadata key is one row here (plus
 * the code that computes with it). Internal to the library. */
#ifndef LFM2C_LFM2_ARCH_H
#define LFM2C_LFM2_ARCH_H

#include "lfm2c.h"
#include "formats/gguf.h"
#include "formats/gguf_write.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- hyper-parameters ------------------------------------------------------------------------ */

/* The numbers the tables are functions of. The converter fills them from config.json, synth from
 * its configuration, the loader from the GGUF metadata and the tensor shapes. */
typedef struct lfm2_hparams {
    bool moe; /* GGUF arch lfm2moe (HF lfm2_moe), else lfm2 */
    int n_layer, n_embd, n_head, head_dim;
    int n_ctx, n_vocab, l_cache;
    int n_ff;                              /* dense FFN width as GGUF stores it */
    int n_expert, n_expert_used, n_ff_exp; /* MoE only */
    int n_dense;                           /* leading dense layers (lfm2: n_layer) */
    float rope_theta, norm_eps;
    bool has_head_dim;               /* write attention.key_length / value_length */
    bool tied;                       /* no output.weight: the head reuses token_embd */
    bool expert_bias;                /* MoE layers carry exp_probs_b */
    uint32_t file_type;              /* general.file_type (llama_ftype) */
    bool is_attn[LFM2C_MAX_LAYERS];  /* attention layer, else gated short conv */
    int n_head_kv[LFM2C_MAX_LAYERS]; /* as GGUF stores it: 0 on conv layers */
} lfm2_hparams;

const char *lfm2_arch_name(bool moe); /* "lfm2moe" / "lfm2" */

/* Layer kinds (bit set): every layer is one of CONV / ATTN and one of DENSE / MOE. */
enum {
    LFM2_CONV = 1u << 0,  /* gated short conv (spec 2.3) */
    LFM2_ATTN = 1u << 1,  /* GQA attention (spec 2.4) */
    LFM2_DENSE = 1u << 2, /* SwiGLU FFN (spec 2.5) */
    LFM2_MOE = 1u << 3,   /* routed experts (spec 2.6) */
    LFM2_ANY = LFM2_CONV | LFM2_ATTN | LFM2_DENSE | LFM2_MOE,
};
unsigned lfm2_layer_kind(const lfm2_hparams *hp, int l);

/* ---- metadata (spec 4) ----------------------------------------------------------------------- */

typedef enum lfm2_meta_id {
    LFM2_KEY_BLOCK_COUNT,
    LFM2_KEY_CONTEXT_LENGTH,
    LFM2_KEY_EMBEDDING_LENGTH,
    LFM2_KEY_FF_LENGTH,
    LFM2_KEY_HEAD_COUNT,
    LFM2_KEY_HEAD_COUNT_KV,
    LFM2_KEY_ROPE_FREQ_BASE,
    LFM2_KEY_RMS_EPS,
    LFM2_KEY_EXPERT_COUNT,
    LFM2_KEY_EXPERT_USED_COUNT,
    LFM2_KEY_KEY_LENGTH,
    LFM2_KEY_VALUE_LENGTH,
    LFM2_KEY_FILE_TYPE,
    LFM2_KEY_EXPERT_FF_LENGTH,
    LFM2_KEY_LEADING_DENSE,
    LFM2_KEY_GATING_FUNC,
    LFM2_KEY_VOCAB_SIZE,
    LFM2_KEY_L_CACHE,
    LFM2_KEY_COUNT
} lfm2_meta_id;

/* What the loader does when a key is absent. */
typedef enum lfm2_need {
    LFM2_REQUIRED, /* the file is rejected */
    LFM2_DEFAULT,  /* `def` is used */
    LFM2_DERIVED,  /* computed from other keys or from tensor shapes */
    LFM2_FIXED,    /* `def` is the only value LFM2 uses: writers write it, the loader
                               rejects any other */
} lfm2_need;

enum {
    LFM2_META_LFM2 = 1u << 0,    /* written for / read from arch lfm2 */
    LFM2_META_LFM2MOE = 1u << 1, /* ... lfm2moe */
    LFM2_META_BOTH = LFM2_META_LFM2 | LFM2_META_LFM2MOE,
    LFM2_META_GENERAL = 1u << 2,     /* a general.* key (no arch prefix) */
    LFM2_META_IF_HEAD_DIM = 1u << 3, /* written only when lfm2_hparams.has_head_dim */
};

typedef struct lfm2_meta {
    lfm2_meta_id id;
    const char *key; /* after "{arch}." (or the full general.* key) */
    uint32_t type;   /* GGUF_U32, GGUF_F32, or GGUF_ARR (of I32, one per layer) */
    unsigned flags;  /* LFM2_META_* */
    lfm2_need need;
    double def; /* LFM2_DEFAULT / LFM2_FIXED value */
} lfm2_meta;

/* The table, in the order writers write it (the reference converter's order). */
extern const lfm2_meta LFM2_META[LFM2_KEY_COUNT];

/* Full key for `id` in arch `arch` into buf. */
const char *lfm2_meta_key(lfm2_meta_id id, const char *arch, char *buf, size_t n);
/* Integer / float value of `id` (any GGUF integer / float type); false when absent. */
bool lfm2_meta_int(const gguf_file *g, const char *arch, lfm2_meta_id id, int64_t *out);
bool lfm2_meta_float(const gguf_file *g, const char *arch, lfm2_meta_id id, double *out);
/* The first key that `arch` requires (LFM2_REQUIRED) and g lacks; -1 if none. */
int lfm2_meta_first_missing(const gguf_file *g, const char *arch);

/* Which rows lfm2_meta_write writes (besides the arch and head-dim conditions). */
enum {
    LFM2_WRITE_GENERAL = 1u << 0, /* general.* rows */
    LFM2_WRITE_COMMON = 1u << 1,  /* {arch}.* rows of both archs */
    LFM2_WRITE_MOE = 1u << 2,     /* {arch}.* rows of lfm2moe only */
    LFM2_WRITE_ALL = 7u,
};
/* Writes the selected rows that apply to hp's arch, in table order, values from hp. */
bool lfm2_meta_write(gguf_writer *w, const lfm2_hparams *hp, unsigned select);

/* ---- tensors (spec 3) ------------------------------------------------------------------------ */

typedef enum lfm2_tensor_id {
    /* global */
    LFM2_T_TOKEN_EMBD,
    LFM2_T_OUTPUT_NORM,
    LFM2_T_OUTPUT,
    /* per layer "blk.L." */
    LFM2_T_ATTN_NORM,
    LFM2_T_FFN_NORM,
    LFM2_T_CONV_IN,
    LFM2_T_CONV,
    LFM2_T_CONV_OUT,
    LFM2_T_Q,
    LFM2_T_K,
    LFM2_T_V,
    LFM2_T_O,
    LFM2_T_Q_NORM,
    LFM2_T_K_NORM,
    LFM2_T_GATE,
    LFM2_T_UP,
    LFM2_T_DOWN,
    LFM2_T_ROUTER,
    LFM2_T_GATE_EXPS,
    LFM2_T_UP_EXPS,
    LFM2_T_DOWN_EXPS,
    LFM2_T_EXP_BIAS,
    LFM2_T_COUNT
} lfm2_tensor_id;
#define LFM2_T_FIRST_LAYER LFM2_T_ATTN_NORM

/* Symbolic dimensions: a shape is a function of the hyper-parameters (and of the layer). */
typedef enum lfm2_dim {
    LFM2_D_H,    /* n_embd */
    LFM2_D_3H,   /* 3 * n_embd: the conv's B, C, x */
    LFM2_D_Q,    /* n_head * head_dim */
    LFM2_D_KV,   /* n_head_kv[l] * head_dim */
    LFM2_D_HD,   /* head_dim */
    LFM2_D_F,    /* n_ff */
    LFM2_D_FE,   /* n_ff_exp */
    LFM2_D_E,    /* n_expert */
    LFM2_D_V,    /* n_vocab */
    LFM2_D_CONV, /* l_cache: the conv taps */
} lfm2_dim;

/* When a tensor of a matching layer is there. */
typedef enum lfm2_cond {
    LFM2_ALWAYS,
    LFM2_IF_EXPERT_BIAS, /* hparams.expert_bias; the loader accepts files without it */
    LFM2_IF_UNTIED,      /* !hparams.tied; without it the head reuses token_embd */
} lfm2_cond;

enum {
    LFM2_TF_F32 = 1u << 0,     /* kept F32 in every file: the forward reads it as floats */
    LFM2_TF_EXPERTS = 1u << 1, /* one matrix per expert on disk (HF), stacked as ne[2] in GGUF */
    LFM2_TF_SQUEEZE = 1u << 2, /* HF stores a unit dim 1 that the GGUF drops (conv [H, 1, K]) */
};

/* How synthetic weights of the tensor are drawn (synth.c): the role it plays. The two residual
 * forms differ only in float rounding; each keeps the expression synth always used. */
typedef enum lfm2_init {
    LFM2_INIT_NORM,        /* U(0.9, 1.1) */
    LFM2_INIT_FANIN,       /* N(0, 1/sqrt(ne0)) */
    LFM2_INIT_RESID,       /* N(0, resid / sqrt(ne0)): writes the residual stream */
    LFM2_INIT_FANIN_RESID, /* N(0, (1/sqrt(ne0)) * resid) */
    LFM2_INIT_SMALL,       /* N(0, 0.05): the expert bias */
} lfm2_init;

typedef struct lfm2_tensor {
    lfm2_tensor_id id;
    const char *gguf;       /* after "blk.L." for layer tensors */
    const char *gguf_alias; /* also accepted by the loader, or NULL */
    const char *hf;         /* after "model.layers.L." for layer tensors; "*" = expert index */
    const char *hf_alias;   /* also accepted by the converter, or NULL */
    unsigned kinds;         /* layer kinds that have it (LFM2_ANY for the global ones) */
    lfm2_cond cond;
    unsigned flags; /* LFM2_TF_* */
    int n_dims;
    lfm2_dim ne[3]; /* GGUF order: ne[0] is the row length */
    lfm2_init init;
} lfm2_tensor;

extern const lfm2_tensor LFM2_TENSORS[LFM2_T_COUNT];

static inline bool lfm2_tensor_is_layer(const lfm2_tensor *t) { return t->id >= LFM2_T_FIRST_LAYER; }
/* Layer l has the tensor by its kind (the condition aside). l is ignored for global tensors. */
bool lfm2_tensor_in_layer(const lfm2_tensor *t, const lfm2_hparams *hp, int l);
/* ... and its condition holds: a complete model has it. */
bool lfm2_tensor_wanted(const lfm2_tensor *t, const lfm2_hparams *hp, int l);
/* GGUF name ("blk.L." + row name for layer tensors; alias: the alias name) into buf. */
const char *lfm2_tensor_name(const lfm2_tensor *t, int l, bool alias, char *buf, size_t n);
/* GGUF shape (ne order, unused dims 1); returns n_dims. */
int lfm2_tensor_shape(const lfm2_tensor *t, const lfm2_hparams *hp, int l, int64_t ne[3]);
/* The row whose HF name (or HF alias) is `hf` (a layer tensor's part after "model.layers.L.",
 * a global tensor's full name); NULL if none. */
const lfm2_tensor *lfm2_tensor_by_hf(const char *hf, bool layer);
/* The row whose GGUF name is `name` (with "blk.L." for layer tensors; aliases too); NULL if none.
 * *layer receives L (-1 for a global tensor). */
const lfm2_tensor *lfm2_tensor_by_gguf(const char *name, int *layer);

#endif
