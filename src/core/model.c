/* model.c — opens an LFM2 / LFM2-MoE GGUF: reads the hyper-parameters, decides each layer's kind
 * from the file (head_count_kv[l] == 0 → conv, l >= leading_dense_block_count → MoE), binds every
 * weight to the mapped file after checking its shape and type. Key names, which keys are required,
 * tensor names and shapes come from the architecture tables (core/lfm2_arch.h); this file holds
 * what the loader does with them: validation, defaults, and where each tensor is bound. */
#include "base/error.h"
#include "core/model.h"
#include "core/lfm2_arch.h"
#include "core/backend.h"
#include "core/lora.h"
#include "formats/ggml_types.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


lfm2c_model_params lfm2c_model_default_params(void) {
    lfm2c_model_params p = {0};
    p.device = LFM2C_DEVICE_CPU;
    return p;
}

/* ---- hyper-parameters ------------------------------------------------------------------------ */

static int read_arch(lfm2c_model *m, lfm2c_error *err) {
    lfm2c_model_info *in = &m->info;
    char *arch = gguf_get_string(m->gguf, "general.architecture");
    if (!arch) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "missing general.architecture");
        return -1;
    }
    if (strcmp(arch, "lfm2") && strcmp(arch, "lfm2moe")) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "unknown architecture '%.64s' (supported: lfm2, lfm2moe)", arch);
        free(arch);
        return -1;
    }
    snprintf(in->arch, sizeof in->arch, "%s", arch);
    free(arch);
    char *name = gguf_get_string(m->gguf, "general.name");
    if (name) {
        snprintf(in->name, sizeof in->name, "%s", name);
        free(name);
    }
    char key[128];
    int missing = lfm2_meta_first_missing(m->gguf, in->arch);
    if (missing >= 0) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "missing metadata %s",
                        lfm2_meta_key((lfm2_meta_id)missing, in->arch, key, sizeof key));
        return -1;
    }
    return 0;
}

/* An integer key within [lo, hi]. */
static int meta_int_in(const lfm2c_model *m, lfm2_meta_id id, int64_t lo, int64_t hi, int *dst, lfm2c_error *err) {
    char key[128];
    int64_t v;
    lfm2_meta_key(id, m->info.arch, key, sizeof key);
    if (!lfm2_meta_int(m->gguf, m->info.arch, id, &v)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "missing metadata %s", key);
        return -1;
    }
    if (v < lo || v > hi) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "metadata %s = %lld out of range", key, (long long)v);
        return -1;
    }
    *dst = (int)v;
    return 0;
}

static double meta_def(lfm2_meta_id id) { return LFM2_META[id].def; }

/* head_count_kv: per-layer array (0 on conv layers), or a scalar for all layers */
static int read_head_count_kv(lfm2c_model *m, lfm2c_error *err) {
    lfm2c_model_info *in = &m->info;
    char key[128];
    int64_t v;
    const gguf_kv *kv = gguf_find(m->gguf, lfm2_meta_key(LFM2_KEY_HEAD_COUNT_KV, in->arch, key, sizeof key));
    if (!kv) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "missing metadata %s", key);
        return -1;
    }
    if (kv->type == GGUF_ARR && kv->n != (uint64_t)in->n_layer) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s has %llu entries for %d layers", key, (unsigned long long)kv->n,
                        in->n_layer);
        return -1;
    }
    for (int l = 0; l < in->n_layer; l++) {
        if (!gguf_arr_int(kv, kv->type == GGUF_ARR ? (uint64_t)l : 0, &v) || v < 0 || v > in->n_head ||
            (v && in->n_head % v)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "%s[%d] is invalid", key, l);
            return -1;
        }
        in->n_head_kv[l] = (int)v;
        in->is_attention[l] = v != 0;
        if (v > in->n_head_kv_max) in->n_head_kv_max = (int)v;
    }
    return 0;
}

static int read_moe(lfm2c_model *m, lfm2c_error *err) {
    lfm2c_model_info *in = &m->info;
    const char *a = in->arch;
    int64_t v;
    bool moe = !strcmp(a, "lfm2moe");
    if (moe) {
        if (meta_int_in(m, LFM2_KEY_EXPERT_COUNT, 1, 4096, &in->n_expert, err) ||
            meta_int_in(m, LFM2_KEY_EXPERT_USED_COUNT, 1, in->n_expert, &in->n_expert_used, err))
            return -1;
        in->n_dense_lead =
            lfm2_meta_int(m->gguf, a, LFM2_KEY_LEADING_DENSE, &v) ? (int)v : (int)meta_def(LFM2_KEY_LEADING_DENSE);
        if (in->n_dense_lead < 0 || in->n_dense_lead > in->n_layer) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "bad leading_dense_block_count %d", in->n_dense_lead);
            return -1;
        }
        if (lfm2_meta_int(m->gguf, a, LFM2_KEY_GATING_FUNC, &v) && v != (int64_t)meta_def(LFM2_KEY_GATING_FUNC)) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "expert_gating_func %lld (only sigmoid = 2 is used by LFM2)",
                            (long long)v);
            return -1;
        }
    } else {
        in->n_dense_lead = in->n_layer;
    }
    for (int l = 0; l < in->n_layer; l++) in->is_moe[l] = moe && l >= in->n_dense_lead;
    return 0;
}

/* sampling defaults written by newer converters */
static void read_sampling(lfm2c_model *m) {
    const gguf_file *g = m->gguf;
    lfm2c_model_info *in = &m->info;
    int64_t v;
    double f;
    in->def_temp = gguf_get_float(g, "general.sampling.temp", &f) ? (float)f : NAN;
    in->def_top_p = gguf_get_float(g, "general.sampling.top_p", &f) ? (float)f : NAN;
    in->def_min_p = gguf_get_float(g, "general.sampling.min_p", &f) ? (float)f : NAN;
    in->def_repeat_penalty = gguf_get_float(g, "general.sampling.penalty_repeat", &f) ? (float)f : NAN;
    in->def_top_k = gguf_get_int(g, "general.sampling.top_k", &v) ? (int)v : -1;
    in->file_type = lfm2_meta_int(g, in->arch, LFM2_KEY_FILE_TYPE, &v) ? (int)v : (int)meta_def(LFM2_KEY_FILE_TYPE);
}

static int read_hparams(lfm2c_model *m, lfm2c_error *err) {
    const gguf_file *g = m->gguf;
    lfm2c_model_info *in = &m->info;
    if (read_arch(m, err)) return -1;
    const char *a = in->arch;
    int64_t v;
    double f;
    if (meta_int_in(m, LFM2_KEY_EMBEDDING_LENGTH, 1, 1 << 16, &in->n_embd, err) ||
        meta_int_in(m, LFM2_KEY_BLOCK_COUNT, 1, LFM2C_MAX_LAYERS, &in->n_layer, err) ||
        meta_int_in(m, LFM2_KEY_HEAD_COUNT, 1, 1024, &in->n_head, err))
        return -1;
    in->n_ctx_train = lfm2_meta_int(g, a, LFM2_KEY_CONTEXT_LENGTH, &v) && v > 0 && v < (1 << 24)
                          ? (int)v
                          : (int)meta_def(LFM2_KEY_CONTEXT_LENGTH);
    in->conv_l_cache = lfm2_meta_int(g, a, LFM2_KEY_L_CACHE, &v) ? (int)v : (int)meta_def(LFM2_KEY_L_CACHE);
    if (in->conv_l_cache != 3) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "shortconv.l_cache = %d (only 3 is supported)", in->conv_l_cache);
        return -1;
    }
    in->norm_eps = lfm2_meta_float(g, a, LFM2_KEY_RMS_EPS, &f) ? (float)f : (float)meta_def(LFM2_KEY_RMS_EPS);
    in->rope_theta =
        lfm2_meta_float(g, a, LFM2_KEY_ROPE_FREQ_BASE, &f) ? (float)f : (float)meta_def(LFM2_KEY_ROPE_FREQ_BASE);
    in->head_dim =
        lfm2_meta_int(g, a, LFM2_KEY_KEY_LENGTH, &v) && v > 0 && v <= 1024 ? (int)v : in->n_embd / in->n_head;
    if (in->head_dim <= 0 || in->head_dim % 2) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "bad head dimension %d", in->head_dim);
        return -1;
    }
    if (read_head_count_kv(m, err) || read_moe(m, err)) return -1;
    read_sampling(m);
    return 0;
}

/* Widths come from tensor shapes, never from metadata alone: some third-party files store the
 * unadjusted feed_forward_length (spec 3; spec 8, pitfall 3). */
static int read_widths(lfm2c_model *m, lfm2c_error *err) {
    lfm2c_model_info *in = &m->info;
    char n[128];
    in->n_ff = 0;
    in->n_ff_exp = 0;
    for (int l = 0; l < in->n_layer; l++) {
        const gguf_tensor *t;
        if (!in->is_moe[l] && !in->n_ff) {
            lfm2_tensor_name(&LFM2_TENSORS[LFM2_T_GATE], l, false, n, sizeof n);
            if ((t = gguf_find_tensor(m->gguf, n))) in->n_ff = (int)t->ne[1];
        }
        if (in->is_moe[l] && !in->n_ff_exp) {
            lfm2_tensor_name(&LFM2_TENSORS[LFM2_T_GATE_EXPS], l, false, n, sizeof n);
            if ((t = gguf_find_tensor(m->gguf, n))) in->n_ff_exp = (int)t->ne[1];
        }
    }
    int64_t v;
    if (!in->n_ff && lfm2_meta_int(m->gguf, in->arch, LFM2_KEY_FF_LENGTH, &v)) in->n_ff = (int)v;
    if (!in->n_ff_exp && lfm2_meta_int(m->gguf, in->arch, LFM2_KEY_EXPERT_FF_LENGTH, &v)) in->n_ff_exp = (int)v;
    return 0;
    (void)err;
}

/* The architecture's hyper-parameters as the tables want them. */
static void arch_hparams(const lfm2c_model_info *in, lfm2_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->moe = !strcmp(in->arch, "lfm2moe");
    hp->n_layer = in->n_layer;
    hp->n_embd = in->n_embd;
    hp->n_head = in->n_head;
    hp->head_dim = in->head_dim;
    hp->n_ctx = in->n_ctx_train;
    hp->n_vocab = in->n_vocab;
    hp->l_cache = in->conv_l_cache;
    hp->n_ff = in->n_ff;
    hp->n_expert = in->n_expert;
    hp->n_expert_used = in->n_expert_used;
    hp->n_ff_exp = in->n_ff_exp;
    hp->n_dense = in->n_dense_lead;
    hp->rope_theta = in->rope_theta;
    hp->norm_eps = in->norm_eps;
    for (int l = 0; l < in->n_layer; l++) {
        hp->is_attn[l] = in->is_attention[l];
        hp->n_head_kv[l] = in->n_head_kv[l];
    }
}

/* ---- tensors --------------------------------------------------------------------------------- */

/* Binds tensor `name` and checks it has exactly the dims given (0-terminated list). Missing and
 * optional → returns 0 with t->data == NULL. */
static int bind(lfm2c_model *m, tensor *t, const char *name, bool optional, lfm2c_error *err, int64_t d0, int64_t d1,
                int64_t d2) {
    const gguf_tensor *gt = gguf_find_tensor(m->gguf, name);
    memset(t, 0, sizeof *t);
    if (!gt) {
        if (optional) return 0;
        lfm2c_set_error(err, LFM2C_EFORMAT, "missing tensor '%s'", name);
        return -1;
    }
    int64_t want[3] = {d0, d1, d2};
    bool ok = true;
    for (int i = 0; i < 3 && ok; i++) ok = gt->ne[i] == (want[i] ? want[i] : 1);
    ok = ok && gt->ne[3] == 1;
    if (!ok) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                        name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2], (long long)d0,
                        (long long)(d1 ? d1 : 1), (long long)(d2 ? d2 : 1));
        return -1;
    }
    const ggml_type_info *ti = ggml_type_get(gt->type);
    if (!ti || !ggml_type_readable(gt->type)) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s' has unsupported type %s", name, ti ? ti->name : "?");
        return -1;
    }
    t->name = gt->name;
    t->data = gt->data;
    t->type = gt->type;
    for (int i = 0; i < 3; i++) t->ne[i] = gt->ne[i];
    t->row_bytes = ggml_row_size(gt->type, gt->ne[0]);
    return 0;
}

/* Binds one row of the tensor table (its alias when only that is in the file); a row with a
 * condition (expert bias, untied head) may be absent. */
static int bind_row(lfm2c_model *m, tensor *t, const lfm2_tensor *row, const lfm2_hparams *hp, int l,
                    lfm2c_error *err) {
    char name[128], alias[128];
    int64_t ne[3];
    lfm2_tensor_shape(row, hp, l, ne);
    const char *n = lfm2_tensor_name(row, l, false, name, sizeof name);
    const char *a = lfm2_tensor_name(row, l, true, alias, sizeof alias);
    const bool optional = row->cond != LFM2_ALWAYS;
    if (a && !gguf_find_tensor(m->gguf, n)) {
        if (!gguf_find_tensor(m->gguf, a)) {
            memset(t, 0, sizeof *t);
            if (optional) return 0;
            lfm2c_set_error(err, LFM2C_EFORMAT, "missing tensor '%s' (or '%s')", n, a);
            return -1;
        }
        n = a;
    }
    return bind(m, t, n, optional, err, ne[0], ne[1], ne[2]);
}

/* Small vectors (norms, conv taps, router, bias) must be float so the forward can read them
 * directly; the reference converter always writes them F32. */
static int require_f32(const tensor *t, lfm2c_error *err) {
    if (t->data && t->type != GGML_F32) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s' must be F32, found %s", t->name,
                        ggml_type_get(t->type)->name);
        return -1;
    }
    return 0;
}

/* Where each table row is bound: a field of the layer (or of the model, for global tensors). */
static const size_t SLOT[LFM2_T_COUNT] = {
    [LFM2_T_TOKEN_EMBD] = offsetof(lfm2c_model, tok_embd),
    [LFM2_T_OUTPUT_NORM] = offsetof(lfm2c_model, out_norm),
    [LFM2_T_OUTPUT] = offsetof(lfm2c_model, output),
    [LFM2_T_ATTN_NORM] = offsetof(layer, attn_norm),
    [LFM2_T_FFN_NORM] = offsetof(layer, ffn_norm),
    [LFM2_T_CONV_IN] = offsetof(layer, conv_in),
    [LFM2_T_CONV] = offsetof(layer, conv_w),
    [LFM2_T_CONV_OUT] = offsetof(layer, conv_out),
    [LFM2_T_Q] = offsetof(layer, wq),
    [LFM2_T_K] = offsetof(layer, wk),
    [LFM2_T_V] = offsetof(layer, wv),
    [LFM2_T_O] = offsetof(layer, wo),
    [LFM2_T_Q_NORM] = offsetof(layer, q_norm),
    [LFM2_T_K_NORM] = offsetof(layer, k_norm),
    [LFM2_T_GATE] = offsetof(layer, ffn_gate),
    [LFM2_T_UP] = offsetof(layer, ffn_up),
    [LFM2_T_DOWN] = offsetof(layer, ffn_down),
    [LFM2_T_ROUTER] = offsetof(layer, router),
    [LFM2_T_GATE_EXPS] = offsetof(layer, gate_exps),
    [LFM2_T_UP_EXPS] = offsetof(layer, up_exps),
    [LFM2_T_DOWN_EXPS] = offsetof(layer, down_exps),
    [LFM2_T_EXP_BIAS] = offsetof(layer, expert_bias),
};

static tensor *slot(void *owner, lfm2_tensor_id id) { return (tensor *)(void *)((char *)owner + SLOT[id]); }

static int bind_layer(lfm2c_model *m, const lfm2_hparams *hp, int l, lfm2c_error *err) {
    const lfm2c_model_info *in = &m->info;
    layer *L = &m->layers[l];
    L->is_attn = in->is_attention[l];
    L->is_moe = in->is_moe[l];
    L->n_head_kv = in->n_head_kv[l];
    if (L->is_attn) L->attn_index = m->n_attn++;
    else L->conv_index = m->n_conv++;
    for (int i = LFM2_T_FIRST_LAYER; i < LFM2_T_COUNT; i++)
        if (lfm2_tensor_in_layer(&LFM2_TENSORS[i], hp, l) &&
            bind_row(m, slot(L, (lfm2_tensor_id)i), &LFM2_TENSORS[i], hp, l, err))
            return -1;
    for (int i = LFM2_T_FIRST_LAYER; i < LFM2_T_COUNT; i++)
        if ((LFM2_TENSORS[i].flags & LFM2_TF_F32) && require_f32(slot(L, (lfm2_tensor_id)i), err)) return -1;
    for (int i = LFM2_T_FIRST_LAYER; i < LFM2_T_COUNT; i++) /* where run-time adapters find it (lora.h) */
        if (lora_target_ok(i) && slot(L, (lfm2_tensor_id)i)->data)
            slot(L, (lfm2_tensor_id)i)->lora_key = l * LFM2_T_COUNT + i + 1;
    return 0;
}

/* token embedding [H, V] (the vocabulary size is its row count), final norm, output head (absent:
 * tied to the embedding) */
static int bind_globals(lfm2c_model *m, lfm2_hparams *hp, lfm2c_error *err) {
    lfm2c_model_info *in = &m->info;
    const char *embd = LFM2_TENSORS[LFM2_T_TOKEN_EMBD].gguf;
    const gguf_tensor *te = gguf_find_tensor(m->gguf, embd);
    if (!te) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "missing tensor '%s'", embd);
        return -1;
    }
    hp->n_vocab = in->n_vocab = (int)te->ne[1];
    for (int i = 0; i < LFM2_T_FIRST_LAYER; i++) {
        tensor *t = slot(m, (lfm2_tensor_id)i);
        if (bind_row(m, t, &LFM2_TENSORS[i], hp, -1, err)) return -1;
        if ((LFM2_TENSORS[i].flags & LFM2_TF_F32) && require_f32(t, err)) return -1;
    }
    if (!m->output.data) m->output = m->tok_embd; /* tied head */
    return 0;
}

static void count_params(lfm2c_model *m) {
    lfm2c_model_info *in = &m->info;
    in->n_params = in->weight_bytes = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const gguf_tensor *t = &m->gguf->tensors[i];
        in->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        in->weight_bytes += t->nbytes;
    }
    /* per decoded token: everything except the embedding table (one row is read) and the
     * experts that are not selected; the tied output head reads the whole table once */
    uint64_t active = in->weight_bytes, active_p = in->n_params;
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        if (!L->is_moe) continue;
        const tensor *ex[] = {&L->gate_exps, &L->up_exps, &L->down_exps};
        for (int i = 0; i < 3; i++) {
            uint64_t per_expert = ex[i]->row_bytes * (uint64_t)ex[i]->ne[1];
            uint64_t per_expert_p = (uint64_t)(ex[i]->ne[0] * ex[i]->ne[1]);
            active -= per_expert * (uint64_t)(in->n_expert - in->n_expert_used);
            active_p -= per_expert_p * (uint64_t)(in->n_expert - in->n_expert_used);
        }
    }
    if (m->output.data && m->output.data != m->tok_embd.data) {
        active -= m->tok_embd.row_bytes * (uint64_t)m->tok_embd.ne[1];
        active_p -= (uint64_t)(m->tok_embd.ne[0] * m->tok_embd.ne[1]);
    }
    in->weight_bytes_active = active;
    in->n_params_active = active_p;
}

/* The process's shared pool instead of the model's own, once the model is attached (its own did
 * the work of opening it: packing a big model would hold the other models' passes for seconds). */
static int share_pool(lfm2c_model *m, int n_threads, lfm2c_error *err) {
    static _Atomic int keys;
    threadpool *s = threadpool_shared_get(n_threads);
    if (!s) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return -1;
    }
    threadpool_free(m->pool);
    m->pool = s;
    m->pool_shared = true;
    m->pool_key = (++keys & 0x3ff) << 20; /* a pass has fewer than 2^20 tokens */
    return 0;
}

lfm2c_model *lfm2c_model_open(const char *path, const lfm2c_model_params *params, lfm2c_error *err) {
    lfm2c_model_params p = params ? *params : lfm2c_model_default_params();
    if (err) {
        err->code = 0;
        err->msg[0] = 0;
    }
    const lfm2c_backend *backend = backend_for_device(p.device, err);
    if (!backend) return NULL;
    lfm2c_model *m = calloc(1, sizeof *m);
    if (!m) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    unsigned flags =
        p.hugepages == LFM2C_HUGEPAGES_ON ? GGUF_OPEN_HUGE_COPY
        : p.hugepages == LFM2C_HUGEPAGES_AUTO && (backend->caps & BACKEND_CAP_HOST_WEIGHTS) && !p.no_populate
            ? GGUF_OPEN_HUGE_AUTO
            : 0;
    const int n_threads =
        p.n_threads > 0 ? p.n_threads : threadpool_default_threads(); /* the pool's; the copy's readers */
    if (flags) flags |= GGUF_OPEN_READERS(n_threads);
    m->gguf = gguf_open_ex(path, flags, err);
    if (!m->gguf) {
        free(m);
        return NULL;
    }
    lfm2c_model_info *in = &m->info;
    in->weights_copied = m->gguf->copied;
    if (read_hparams(m, err) || read_widths(m, err)) goto fail;
    m->type_k = p.type_k;
    m->type_v = p.type_v;
    if (kv_types_check(m, err)) goto fail;

    lfm2_hparams hp;
    arch_hparams(in, &hp);
    if (bind_globals(m, &hp, err)) goto fail;
    m->layers = calloc((size_t)in->n_layer, sizeof(layer));
    if (!m->layers) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < in->n_layer; l++)
        if (bind_layer(m, &hp, l, err)) goto fail;
    count_params(m);

    m->tok = tokenizer_new(m->gguf, err);
    if (!m->tok) goto fail;
    in->bos_id = tokenizer_bos(m->tok);
    in->eos_id = tokenizer_eos(m->tok);
    int64_t v;
    in->pad_id = gguf_get_int(m->gguf, "tokenizer.ggml.padding_token_id", &v) ? (int)v : -1;
    in->add_bos = tokenizer_add_bos(m->tok);
    if (tokenizer_n_vocab(m->tok) > in->n_vocab) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tokenizer has %d tokens but the embedding only %d rows",
                        tokenizer_n_vocab(m->tok), in->n_vocab);
        goto fail;
    }

    if (!p.no_populate) gguf_populate(m->gguf);
    if (p.n_threads > THREADPOOL_MAX_THREADS) {
        lfm2c_set_error(err, LFM2C_EINVAL, "n_threads %d is more than %d", p.n_threads, THREADPOOL_MAX_THREADS);
        goto fail;
    }
    m->pool = threadpool_new(n_threads);
    if (!m->pool) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto fail;
    }
    if (backend->model_init(m, &p, err)) goto fail; /* the backend attaches: buffers, device upload */
    m->backend = backend;
    if (p.shared_threads && share_pool(m, n_threads, err)) goto fail;
    return m;
fail:
    lfm2c_model_free(m);
    return NULL;
}

void lfm2c_model_free(lfm2c_model *m) {
    if (!m) return;
    if (m->backend) m->backend->model_free(m);
    if (m->pool_shared) threadpool_shared_put(m->pool);
    else threadpool_free(m->pool);
    if (m->tok) tokenizer_free(m->tok);
    free(m->layers);
    gguf_close(m->gguf);
    free(m);
}

const lfm2c_model_info *lfm2c_model_get_info(const lfm2c_model *m) { return m ? &m->info : NULL; }

lfm2c_device_info lfm2c_model_device(const lfm2c_model *m) {
    return m ? backend_device_info(m) : (lfm2c_device_info){0};
}

/* general.file_type ids are llama.cpp's llama_ftype values. */
const char *lfm2c_file_type_name(int file_type) {
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",     [2] = "Q4_0",     [3] = "Q4_1",    [7] = "Q8_0",     [8] = "Q5_0",
        [9] = "Q5_1",    [10] = "Q2_K",   [11] = "Q3_K_S",  [12] = "Q3_K_M", [13] = "Q3_K_L",  [14] = "Q4_K_S",
        [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",  [18] = "Q6_K",   [19] = "IQ2_XXS", [20] = "IQ2_XS",
        [21] = "Q2_K_S", [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S",  [25] = "IQ4_NL",  [26] = "IQ3_S",
        [27] = "IQ3_M",  [28] = "IQ2_S",  [29] = "IQ2_M",   [30] = "IQ4_XS", [31] = "IQ1_M",   [32] = "BF16",
    };
    return file_type >= 0 && file_type < (int)(sizeof names / sizeof *names) ? names[file_type] : NULL;
}
lfm2c_decode_profile lfm2c_model_decode_profile(const lfm2c_model *m) {
    if (!m) return (lfm2c_decode_profile){0};
    lfm2c_decode_profile p = m->prof;
    const threadpool_stats s = threadpool_get_stats(m->pool);
    p.steps = s.steps, p.solo_steps = s.solo_steps;
    return p;
}
const lfm2c_tokenizer *model_tokenizer(const lfm2c_model *m) { return m->tok; }

int lfm2c_model_n_tensors(const lfm2c_model *m) { return m ? (int)m->gguf->n_tensors : 0; }

void lfm2c_model_tensor_desc(const lfm2c_model *m, int i, const char **name, const char **type_name, int64_t ne[4],
                             int *n_dims, uint64_t *nbytes) {
    const gguf_tensor *t = m && i >= 0 && (uint64_t)i < m->gguf->n_tensors ? &m->gguf->tensors[i] : NULL;
    const ggml_type_info *ti = t ? ggml_type_get(t->type) : NULL;
    if (name) *name = t ? t->name : NULL;
    if (type_name) *type_name = ti ? ti->name : NULL;
    if (ne) t ? memcpy(ne, t->ne, 4 * sizeof(int64_t)) : memset(ne, 0, 4 * sizeof(int64_t));
    if (n_dims) *n_dims = t ? (int)t->n_dims : 0;
    if (nbytes) *nbytes = t ? t->nbytes : 0;
}

const char *lfm2c_model_meta_str(const lfm2c_model *m, const char *key) {
    if (!m || !key) return NULL;
    const gguf_kv *kv = gguf_find(m->gguf, key);
    return kv && kv->type == GGUF_STR ? kv->cstr : NULL;
}

bool lfm2c_token_is_eog(const lfm2c_model *m, int32_t token) { return m && tokenizer_is_eog(m->tok, token); }

int lfm2c_model_set_matmul_hook(lfm2c_model *m, lfm2c_matmul_hook hook, void *user, lfm2c_error *err) {
    if (!m) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL model"), -1;
    if (hook && backend_require(m, BACKEND_CAP_MATMUL_HOOK, "matmul hooks", err)) return -1;
    m->mm_hook = hook;
    m->mm_hook_user = hook ? user : NULL;
    return 0;
}
