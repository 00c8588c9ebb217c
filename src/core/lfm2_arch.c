/* lfm2_arch.c — the LFM2 architecture tables (see lfm2_arch.h) and the few functions that read
 * them: key and tensor names, shapes from the hyper-parameters, layer kinds, and writing the
 * metadata rows. The facts are those of docs/LFM2-SPEC.md sections 3 and 4; where this code
 * departs from the spec (keys the loader defaults although the spec marks them present, the
 * aliases it accepts), the doc's notes say so. */
#include "core/lfm2_arch.h"

#include <stdio.h>
#include <string.h>

const char *lfm2_arch_name(bool moe) { return moe ? "lfm2moe" : "lfm2"; }

unsigned lfm2_layer_kind(const lfm2_hparams *hp, int l) {
    return (hp->is_attn[l] ? LFM2_ATTN : LFM2_CONV) | (hp->moe && l >= hp->n_dense ? LFM2_MOE : LFM2_DENSE);
}

/* ---- metadata -------------------------------------------------------------------------------- */

#define BOTH LFM2_META_BOTH
#define MOE LFM2_META_LFM2MOE
/* In the order the reference converter writes them (general.file_type falls between). */
const lfm2_meta LFM2_META[LFM2_KEY_COUNT] = {
    {LFM2_KEY_BLOCK_COUNT, "block_count", GGUF_U32, BOTH, LFM2_REQUIRED, 0},
    {LFM2_KEY_CONTEXT_LENGTH, "context_length", GGUF_U32, BOTH, LFM2_DEFAULT, 32768},
    {LFM2_KEY_EMBEDDING_LENGTH, "embedding_length", GGUF_U32, BOTH, LFM2_REQUIRED, 0},
    {LFM2_KEY_FF_LENGTH, "feed_forward_length", GGUF_U32, BOTH, LFM2_DERIVED, 0}, /* tensor shapes win */
    {LFM2_KEY_HEAD_COUNT, "attention.head_count", GGUF_U32, BOTH, LFM2_REQUIRED, 0},
    {LFM2_KEY_HEAD_COUNT_KV, "attention.head_count_kv", GGUF_ARR, BOTH, LFM2_REQUIRED, 0}, /* or a scalar */
    {LFM2_KEY_ROPE_FREQ_BASE, "rope.freq_base", GGUF_F32, BOTH, LFM2_DEFAULT, 1e6},
    {LFM2_KEY_RMS_EPS, "attention.layer_norm_rms_epsilon", GGUF_F32, BOTH, LFM2_DEFAULT, 1e-5},
    {LFM2_KEY_EXPERT_COUNT, "expert_count", GGUF_U32, MOE, LFM2_REQUIRED, 0},
    {LFM2_KEY_EXPERT_USED_COUNT, "expert_used_count", GGUF_U32, MOE, LFM2_REQUIRED, 0},
    {LFM2_KEY_KEY_LENGTH, "attention.key_length", GGUF_U32, BOTH | LFM2_META_IF_HEAD_DIM, LFM2_DERIVED, 0},
    {LFM2_KEY_VALUE_LENGTH, "attention.value_length", GGUF_U32, BOTH | LFM2_META_IF_HEAD_DIM, LFM2_DERIVED, 0},
    {LFM2_KEY_FILE_TYPE, "general.file_type", GGUF_U32, BOTH | LFM2_META_GENERAL, LFM2_DEFAULT, -1},
    {LFM2_KEY_EXPERT_FF_LENGTH, "expert_feed_forward_length", GGUF_U32, MOE, LFM2_DERIVED, 0},
    {LFM2_KEY_LEADING_DENSE, "leading_dense_block_count", GGUF_U32, MOE, LFM2_DEFAULT, 0},
    {LFM2_KEY_GATING_FUNC, "expert_gating_func", GGUF_U32, MOE, LFM2_FIXED, 2}, /* sigmoid */
    {LFM2_KEY_VOCAB_SIZE, "vocab_size", GGUF_U32, BOTH, LFM2_DERIVED, 0},       /* token_embd rows */
    {LFM2_KEY_L_CACHE, "shortconv.l_cache", GGUF_U32, BOTH, LFM2_DEFAULT, 3},
};
#undef BOTH
#undef MOE

const char *lfm2_meta_key(lfm2_meta_id id, const char *arch, char *buf, size_t n) {
    const lfm2_meta *m = &LFM2_META[id];
    if (m->flags & LFM2_META_GENERAL) snprintf(buf, n, "%s", m->key);
    else snprintf(buf, n, "%s.%s", arch, m->key);
    return buf;
}

bool lfm2_meta_int(const gguf_file *g, const char *arch, lfm2_meta_id id, int64_t *out) {
    char k[128];
    return gguf_get_int(g, lfm2_meta_key(id, arch, k, sizeof k), out);
}

bool lfm2_meta_float(const gguf_file *g, const char *arch, lfm2_meta_id id, double *out) {
    char k[128];
    return gguf_get_float(g, lfm2_meta_key(id, arch, k, sizeof k), out);
}

static unsigned arch_bit(const char *arch) { return strcmp(arch, "lfm2moe") ? LFM2_META_LFM2 : LFM2_META_LFM2MOE; }

int lfm2_meta_first_missing(const gguf_file *g, const char *arch) {
    char k[128];
    for (int i = 0; i < LFM2_KEY_COUNT; i++) {
        const lfm2_meta *m = &LFM2_META[i];
        if (m->need == LFM2_REQUIRED && (m->flags & arch_bit(arch)) &&
            !gguf_find(g, lfm2_meta_key(m->id, arch, k, sizeof k)))
            return (int)m->id;
    }
    return -1;
}

/* The value of a scalar row, from the hyper-parameters (exact in a double: counts and floats). */
static double meta_value(const lfm2_meta *m, const lfm2_hparams *hp) {
    if (m->need == LFM2_FIXED) return m->def;
    switch (m->id) {
    case LFM2_KEY_BLOCK_COUNT: return hp->n_layer;
    case LFM2_KEY_CONTEXT_LENGTH: return hp->n_ctx;
    case LFM2_KEY_EMBEDDING_LENGTH: return hp->n_embd;
    case LFM2_KEY_FF_LENGTH: return hp->n_ff;
    case LFM2_KEY_HEAD_COUNT: return hp->n_head;
    case LFM2_KEY_ROPE_FREQ_BASE: return hp->rope_theta;
    case LFM2_KEY_RMS_EPS: return hp->norm_eps;
    case LFM2_KEY_EXPERT_COUNT: return hp->n_expert;
    case LFM2_KEY_EXPERT_USED_COUNT: return hp->n_expert_used;
    case LFM2_KEY_KEY_LENGTH:
    case LFM2_KEY_VALUE_LENGTH: return hp->head_dim;
    case LFM2_KEY_FILE_TYPE: return hp->file_type;
    case LFM2_KEY_EXPERT_FF_LENGTH: return hp->n_ff_exp;
    case LFM2_KEY_LEADING_DENSE: return hp->n_dense;
    case LFM2_KEY_VOCAB_SIZE: return hp->n_vocab;
    case LFM2_KEY_L_CACHE: return hp->l_cache;
    default: return 0;
    }
}

_Static_assert(sizeof(int) == 4, "lfm2_hparams.n_head_kv is written as an I32 array");

static bool meta_write_row(gguf_writer *w, const lfm2_meta *m, const lfm2_hparams *hp) {
    char k[128];
    lfm2_meta_key(m->id, lfm2_arch_name(hp->moe), k, sizeof k);
    switch (m->type) {
    case GGUF_F32: return gguf_set_f32(w, k, (float)meta_value(m, hp));
    case GGUF_ARR: /* head_count_kv: the ints of hp->n_head_kv as I32 */
        return gguf_set_arr(w, k, GGUF_I32, hp->n_head_kv, (uint64_t)hp->n_layer);
    default: return gguf_set_u32(w, k, (uint32_t)(int64_t)meta_value(m, hp));
    }
}

bool lfm2_meta_write(gguf_writer *w, const lfm2_hparams *hp, unsigned select) {
    const unsigned arch = hp->moe ? LFM2_META_LFM2MOE : LFM2_META_LFM2;
    bool ok = true;
    for (int i = 0; i < LFM2_KEY_COUNT; i++) {
        const lfm2_meta *m = &LFM2_META[i];
        unsigned group = m->flags & LFM2_META_GENERAL                    ? LFM2_WRITE_GENERAL
                         : (m->flags & LFM2_META_BOTH) == LFM2_META_BOTH ? LFM2_WRITE_COMMON
                                                                         : LFM2_WRITE_MOE;
        if (!(select & group) || !(m->flags & arch)) continue;
        if ((m->flags & LFM2_META_IF_HEAD_DIM) && !hp->has_head_dim) continue;
        ok &= meta_write_row(w, m, hp);
    }
    return ok;
}

/* ---- tensors --------------------------------------------------------------------------------- */

#define ALL LFM2_ANY
#define D(...) \
    { __VA_ARGS__ }
/* Global tensors, then one layer's, in the order the loader binds them. Shapes in GGUF order
 * (the reverse of the torch shape). */
const lfm2_tensor LFM2_TENSORS[LFM2_T_COUNT] = {
    {LFM2_T_TOKEN_EMBD, "token_embd.weight", NULL, "model.embed_tokens.weight", NULL, ALL, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_V), LFM2_INIT_FANIN},
    /* the FINAL norm despite its llama.cpp name; Ollama's files call it output_norm (spec 8, pitfall 2) */
    {LFM2_T_OUTPUT_NORM, "token_embd_norm.weight", "output_norm.weight", "model.embedding_norm.weight", NULL, ALL,
     LFM2_ALWAYS, LFM2_TF_F32, 1, D(LFM2_D_H), LFM2_INIT_NORM},
    {LFM2_T_OUTPUT, "output.weight", NULL, "lm_head.weight", NULL, ALL, LFM2_IF_UNTIED, 0, 2, D(LFM2_D_H, LFM2_D_V),
     LFM2_INIT_FANIN},

    {LFM2_T_ATTN_NORM, "attn_norm.weight", NULL, "operator_norm.weight", NULL, ALL, LFM2_ALWAYS, LFM2_TF_F32, 1,
     D(LFM2_D_H), LFM2_INIT_NORM},
    {LFM2_T_FFN_NORM, "ffn_norm.weight", NULL, "ffn_norm.weight", NULL, ALL, LFM2_ALWAYS, LFM2_TF_F32, 1, D(LFM2_D_H),
     LFM2_INIT_NORM},

    /* gated short conv (spec 2.3) */
    {LFM2_T_CONV_IN, "shortconv.in_proj.weight", NULL, "conv.in_proj.weight", NULL, LFM2_CONV, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_3H), LFM2_INIT_FANIN},
    {LFM2_T_CONV, "shortconv.conv.weight", NULL, "conv.conv.weight", NULL, LFM2_CONV, LFM2_ALWAYS,
     LFM2_TF_F32 | LFM2_TF_SQUEEZE, 2, D(LFM2_D_CONV, LFM2_D_H), LFM2_INIT_FANIN},
    {LFM2_T_CONV_OUT, "shortconv.out_proj.weight", NULL, "conv.out_proj.weight", NULL, LFM2_CONV, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_H), LFM2_INIT_FANIN_RESID},

    /* attention (spec 2.4) */
    {LFM2_T_Q, "attn_q.weight", NULL, "self_attn.q_proj.weight", NULL, LFM2_ATTN, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_Q), LFM2_INIT_FANIN},
    {LFM2_T_K, "attn_k.weight", NULL, "self_attn.k_proj.weight", NULL, LFM2_ATTN, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_KV), LFM2_INIT_FANIN},
    {LFM2_T_V, "attn_v.weight", NULL, "self_attn.v_proj.weight", NULL, LFM2_ATTN, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_KV), LFM2_INIT_FANIN},
    {LFM2_T_O, "attn_output.weight", NULL, "self_attn.out_proj.weight", NULL, LFM2_ATTN, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_Q, LFM2_D_H), LFM2_INIT_RESID},
    {LFM2_T_Q_NORM, "attn_q_norm.weight", NULL, "self_attn.q_layernorm.weight", NULL, LFM2_ATTN, LFM2_ALWAYS,
     LFM2_TF_F32, 1, D(LFM2_D_HD), LFM2_INIT_NORM},
    {LFM2_T_K_NORM, "attn_k_norm.weight", NULL, "self_attn.k_layernorm.weight", NULL, LFM2_ATTN, LFM2_ALWAYS,
     LFM2_TF_F32, 1, D(LFM2_D_HD), LFM2_INIT_NORM},

    /* dense SwiGLU (spec 2.5): w1 = gate, w3 = up, w2 = down */
    {LFM2_T_GATE, "ffn_gate.weight", NULL, "feed_forward.w1.weight", NULL, LFM2_DENSE, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_F), LFM2_INIT_FANIN},
    {LFM2_T_UP, "ffn_up.weight", NULL, "feed_forward.w3.weight", NULL, LFM2_DENSE, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_H, LFM2_D_F), LFM2_INIT_FANIN},
    {LFM2_T_DOWN, "ffn_down.weight", NULL, "feed_forward.w2.weight", NULL, LFM2_DENSE, LFM2_ALWAYS, 0, 2,
     D(LFM2_D_F, LFM2_D_H), LFM2_INIT_RESID},

    /* MoE (spec 2.6); transformers >= 5 also stores the experts fused (convert.c: gate_up_proj) */
    {LFM2_T_ROUTER, "ffn_gate_inp.weight", NULL, "feed_forward.gate.weight", NULL, LFM2_MOE, LFM2_ALWAYS, LFM2_TF_F32,
     2, D(LFM2_D_H, LFM2_D_E), LFM2_INIT_FANIN},
    {LFM2_T_GATE_EXPS, "ffn_gate_exps.weight", NULL, "feed_forward.experts.*.w1.weight", NULL, LFM2_MOE, LFM2_ALWAYS,
     LFM2_TF_EXPERTS, 3, D(LFM2_D_H, LFM2_D_FE, LFM2_D_E), LFM2_INIT_FANIN},
    {LFM2_T_UP_EXPS, "ffn_up_exps.weight", NULL, "feed_forward.experts.*.w3.weight", NULL, LFM2_MOE, LFM2_ALWAYS,
     LFM2_TF_EXPERTS, 3, D(LFM2_D_H, LFM2_D_FE, LFM2_D_E), LFM2_INIT_FANIN},
    {LFM2_T_DOWN_EXPS, "ffn_down_exps.weight", NULL, "feed_forward.experts.*.w2.weight",
     "feed_forward.experts.down_proj", LFM2_MOE, LFM2_ALWAYS, LFM2_TF_EXPERTS, 3, D(LFM2_D_FE, LFM2_D_H, LFM2_D_E),
     LFM2_INIT_RESID},
    /* GGUF suffix .bias (spec 3); LFM2.5 checkpoints spell the HF name with .weight (spec 8, pitfall 16) */
    {LFM2_T_EXP_BIAS, "exp_probs_b.bias", "exp_probs_b.weight", "feed_forward.expert_bias",
     "feed_forward.expert_bias.weight", LFM2_MOE, LFM2_IF_EXPERT_BIAS, LFM2_TF_F32, 1, D(LFM2_D_E), LFM2_INIT_SMALL},
};
#undef ALL
#undef D

/* A tensor that names kinds on an axis (mixer: conv / attention; FFN: dense / MoE) belongs to the
 * layers of those kinds; on an axis it names nothing of, it belongs to every layer. */
bool lfm2_tensor_in_layer(const lfm2_tensor *t, const lfm2_hparams *hp, int l) {
    if (!lfm2_tensor_is_layer(t)) return true;
    const unsigned k = lfm2_layer_kind(hp, l), mix = LFM2_CONV | LFM2_ATTN, ffn = LFM2_DENSE | LFM2_MOE;
    return (!(t->kinds & mix) || (t->kinds & k & mix)) && (!(t->kinds & ffn) || (t->kinds & k & ffn));
}

bool lfm2_tensor_wanted(const lfm2_tensor *t, const lfm2_hparams *hp, int l) {
    if (!lfm2_tensor_in_layer(t, hp, l)) return false;
    switch (t->cond) {
    case LFM2_IF_EXPERT_BIAS: return hp->expert_bias;
    case LFM2_IF_UNTIED: return !hp->tied;
    default: return true;
    }
}

const char *lfm2_tensor_name(const lfm2_tensor *t, int l, bool alias, char *buf, size_t n) {
    const char *s = alias ? t->gguf_alias : t->gguf;
    if (!s) return NULL;
    if (lfm2_tensor_is_layer(t)) snprintf(buf, n, "blk.%d.%s", l, s);
    else snprintf(buf, n, "%s", s);
    return buf;
}

static int64_t dim_value(lfm2_dim d, const lfm2_hparams *hp, int l) {
    switch (d) {
    case LFM2_D_H: return hp->n_embd;
    case LFM2_D_3H: return 3 * (int64_t)hp->n_embd;
    case LFM2_D_Q: return (int64_t)hp->n_head * hp->head_dim;
    case LFM2_D_KV: return (int64_t)hp->n_head_kv[l] * hp->head_dim;
    case LFM2_D_HD: return hp->head_dim;
    case LFM2_D_F: return hp->n_ff;
    case LFM2_D_FE: return hp->n_ff_exp;
    case LFM2_D_E: return hp->n_expert;
    case LFM2_D_V: return hp->n_vocab;
    case LFM2_D_CONV: return hp->l_cache;
    }
    return 0;
}

int lfm2_tensor_shape(const lfm2_tensor *t, const lfm2_hparams *hp, int l, int64_t ne[3]) {
    for (int i = 0; i < 3; i++) ne[i] = i < t->n_dims ? dim_value(t->ne[i], hp, lfm2_tensor_is_layer(t) ? l : 0) : 1;
    return t->n_dims;
}

const lfm2_tensor *lfm2_tensor_by_hf(const char *hf, bool layer) {
    for (int i = 0; i < LFM2_T_COUNT; i++) {
        const lfm2_tensor *t = &LFM2_TENSORS[i];
        if (lfm2_tensor_is_layer(t) == layer && (!strcmp(hf, t->hf) || (t->hf_alias && !strcmp(hf, t->hf_alias))))
            return t;
    }
    return NULL;
}

const lfm2_tensor *lfm2_tensor_by_gguf(const char *name, int *layer) {
    int l = -1, nc = 0;
    const char *rest = name;
    if (sscanf(name, "blk.%d.%n", &l, &nc) == 1 && nc > 0) rest = name + nc;
    else l = -1;
    *layer = l;
    for (int i = 0; i < LFM2_T_COUNT; i++) {
        const lfm2_tensor *t = &LFM2_TENSORS[i];
        if (lfm2_tensor_is_layer(t) != (l >= 0)) continue;
        if (!strcmp(rest, t->gguf) || (t->gguf_alias && !strcmp(rest, t->gguf_alias))) return t;
    }
    return NULL;
}
