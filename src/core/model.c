/* model.c — opens an LFM2 / LFM2-MoE GGUF: reads the hyper-parameters, decides each layer's kind
 * from the file (head_count_kv[l] == 0 → conv, l >= leading_dense_block_count → MoE), binds every
 * weight to the mapped file after checking its shape and type. */
#include "core/error.h"
#include "core/model.h"
#include "core/backend.h"
#include "formats/ggml_types.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


lfm2c_model_params lfm2c_model_default_params(void) {
    lfm2c_model_params p = {0};
    p.device = LFM2C_DEVICE_CPU;
    return p;
}

/* ---- hyper-parameters ------------------------------------------------------------------------ */

static bool arch_int(const gguf_file *g, const char *arch, const char *key, int64_t *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_int(g, full, out);
}

static bool arch_float(const gguf_file *g, const char *arch, const char *key, double *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_float(g, full, out);
}

static int read_hparams(lfm2c_model *m, lfm2c_error *err) {
    const gguf_file *g = m->gguf;
    lfm2c_model_info *in = &m->info;
    char *arch = gguf_get_string(g, "general.architecture");
    if (!arch) { lfm2c_set_error(err, LFM2C_EFORMAT, "missing general.architecture"); return -1; }
    if (strcmp(arch, "lfm2") && strcmp(arch, "lfm2moe")) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "unknown architecture '%.64s' (supported: lfm2, lfm2moe)", arch);
        free(arch);
        return -1;
    }
    snprintf(in->arch, sizeof in->arch, "%s", arch);
    free(arch);
    char *name = gguf_get_string(g, "general.name");
    if (name) { snprintf(in->name, sizeof in->name, "%s", name); free(name); }

    int64_t v;
    double f;
#define REQ_INT(key, dst, lo, hi)                                                              \
    do {                                                                                       \
        if (!arch_int(g, in->arch, key, &v)) {                                                 \
            lfm2c_set_error(err, LFM2C_EFORMAT, "missing metadata %s.%s", in->arch, key);              \
            return -1;                                                                         \
        }                                                                                      \
        if (v < (lo) || v > (hi)) {                                                            \
            lfm2c_set_error(err, LFM2C_EFORMAT, "metadata %s.%s = %lld out of range", in->arch, key,   \
                   (long long)v);                                                              \
            return -1;                                                                         \
        }                                                                                      \
        dst = (int)v;                                                                          \
    } while (0)
    REQ_INT("embedding_length", in->n_embd, 1, 1 << 16);
    REQ_INT("block_count", in->n_layer, 1, LFM2C_MAX_LAYERS);
    REQ_INT("attention.head_count", in->n_head, 1, 1024);
    in->n_ctx_train = arch_int(g, in->arch, "context_length", &v) && v > 0 && v < (1 << 24) ? (int)v : 32768;
    in->conv_l_cache = arch_int(g, in->arch, "shortconv.l_cache", &v) ? (int)v : 3;
    if (in->conv_l_cache != 3) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "shortconv.l_cache = %d (only 3 is supported)", in->conv_l_cache);
        return -1;
    }
    in->norm_eps = arch_float(g, in->arch, "attention.layer_norm_rms_epsilon", &f) ? (float)f : 1e-5f;
    in->rope_theta = arch_float(g, in->arch, "rope.freq_base", &f) ? (float)f : 1e6f;
    in->head_dim = arch_int(g, in->arch, "attention.key_length", &v) && v > 0 && v <= 1024
                       ? (int)v : in->n_embd / in->n_head;
    if (in->head_dim <= 0 || in->head_dim % 2) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "bad head dimension %d", in->head_dim);
        return -1;
    }

    /* head_count_kv: per-layer array (0 on conv layers), or a scalar for all layers */
    char key[128];
    snprintf(key, sizeof key, "%s.attention.head_count_kv", in->arch);
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) { lfm2c_set_error(err, LFM2C_EFORMAT, "missing metadata %s", key); return -1; }
    if (kv->type == GGUF_ARR && kv->n != (uint64_t)in->n_layer) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s has %llu entries for %d layers", key, (unsigned long long)kv->n, in->n_layer);
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

    bool moe = !strcmp(in->arch, "lfm2moe");
    if (moe) {
        REQ_INT("expert_count", in->n_expert, 1, 4096);
        REQ_INT("expert_used_count", in->n_expert_used, 1, in->n_expert);
        in->n_dense_lead = arch_int(g, in->arch, "leading_dense_block_count", &v) ? (int)v : 0;
        if (in->n_dense_lead < 0 || in->n_dense_lead > in->n_layer) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "bad leading_dense_block_count %d", in->n_dense_lead);
            return -1;
        }
        if (arch_int(g, in->arch, "expert_gating_func", &v) && v != 2) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "expert_gating_func %lld (only sigmoid = 2 is used by LFM2)", (long long)v);
            return -1;
        }
    } else {
        in->n_dense_lead = in->n_layer;
    }
    for (int l = 0; l < in->n_layer; l++) in->is_moe[l] = moe && l >= in->n_dense_lead;

    /* sampling defaults written by newer converters */
    in->def_temp = gguf_get_float(g, "general.sampling.temp", &f) ? (float)f : NAN;
    in->def_top_p = gguf_get_float(g, "general.sampling.top_p", &f) ? (float)f : NAN;
    in->def_min_p = gguf_get_float(g, "general.sampling.min_p", &f) ? (float)f : NAN;
    in->def_repeat_penalty = gguf_get_float(g, "general.sampling.penalty_repeat", &f) ? (float)f : NAN;
    in->def_top_k = gguf_get_int(g, "general.sampling.top_k", &v) ? (int)v : -1;
    in->file_type = gguf_get_int(g, "general.file_type", &v) ? (int)v : -1;
    return 0;
#undef REQ_INT
}

/* ---- tensors --------------------------------------------------------------------------------- */

/* Binds tensor `name` and checks it has exactly the dims given (0-terminated list). Missing and
 * optional → returns 0 with t->data == NULL. */
static int bind(lfm2c_model *m, tensor *t, const char *name, bool optional, lfm2c_error *err,
                int64_t d0, int64_t d1, int64_t d2) {
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
               name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2],
               (long long)d0, (long long)(d1 ? d1 : 1), (long long)(d2 ? d2 : 1));
        return -1;
    }
    const ggml_type_info *ti = ggml_type_get(gt->type);
    if (!ti || !ti->supported) {
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

/* Small vectors (norms, conv taps, router, bias) must be float so the forward can read them
 * directly; the reference converter always writes them F32. */
static int require_f32(const tensor *t, lfm2c_error *err) {
    if (t->data && t->type != GGML_F32) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s' must be F32, found %s", t->name, ggml_type_get(t->type)->name);
        return -1;
    }
    return 0;
}

static int bind_layer(lfm2c_model *m, int l, lfm2c_error *err) {
    const lfm2c_model_info *in = &m->info;
    layer *L = &m->layers[l];
    const int64_t H = in->n_embd, hd = in->head_dim;
    char n[128];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%d.%s", l, suffix), n)
    L->is_attn = in->is_attention[l];
    L->is_moe = in->is_moe[l];
    L->n_head_kv = in->n_head_kv[l];
    if (bind(m, &L->attn_norm, NAME("attn_norm.weight"), false, err, H, 0, 0) ||
        bind(m, &L->ffn_norm, NAME("ffn_norm.weight"), false, err, H, 0, 0))
        return -1;
    if (L->is_attn) {
        L->attn_index = m->n_attn++;
        int64_t nq = in->n_head * hd, nkv = L->n_head_kv * hd;
        if (bind(m, &L->wq, NAME("attn_q.weight"), false, err, H, nq, 0) ||
            bind(m, &L->wk, NAME("attn_k.weight"), false, err, H, nkv, 0) ||
            bind(m, &L->wv, NAME("attn_v.weight"), false, err, H, nkv, 0) ||
            bind(m, &L->wo, NAME("attn_output.weight"), false, err, nq, H, 0) ||
            bind(m, &L->q_norm, NAME("attn_q_norm.weight"), false, err, hd, 0, 0) ||
            bind(m, &L->k_norm, NAME("attn_k_norm.weight"), false, err, hd, 0, 0))
            return -1;
    } else {
        L->conv_index = m->n_conv++;
        if (bind(m, &L->conv_in, NAME("shortconv.in_proj.weight"), false, err, H, 3 * H, 0) ||
            bind(m, &L->conv_w, NAME("shortconv.conv.weight"), false, err, in->conv_l_cache, H, 0) ||
            bind(m, &L->conv_out, NAME("shortconv.out_proj.weight"), false, err, H, H, 0))
            return -1;
    }
    if (L->is_moe) {
        const int64_t E = in->n_expert, Fe = in->n_ff_exp;
        if (bind(m, &L->router, NAME("ffn_gate_inp.weight"), false, err, H, E, 0) ||
            bind(m, &L->gate_exps, NAME("ffn_gate_exps.weight"), false, err, H, Fe, E) ||
            bind(m, &L->up_exps, NAME("ffn_up_exps.weight"), false, err, H, Fe, E) ||
            bind(m, &L->down_exps, NAME("ffn_down_exps.weight"), false, err, Fe, H, E))
            return -1;
        if (bind(m, &L->expert_bias, NAME("exp_probs_b.bias"), true, err, E, 0, 0)) return -1;
        if (!L->expert_bias.data && bind(m, &L->expert_bias, NAME("exp_probs_b.weight"), true, err, E, 0, 0))
            return -1;
    } else {
        const int64_t F = in->n_ff;
        if (bind(m, &L->ffn_gate, NAME("ffn_gate.weight"), false, err, H, F, 0) ||
            bind(m, &L->ffn_up, NAME("ffn_up.weight"), false, err, H, F, 0) ||
            bind(m, &L->ffn_down, NAME("ffn_down.weight"), false, err, F, H, 0))
            return -1;
    }
#undef NAME
    const tensor *small[] = {&L->attn_norm, &L->ffn_norm, &L->q_norm, &L->k_norm, &L->conv_w,
                             &L->router, &L->expert_bias};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++)
        if (require_f32(small[i], err)) return -1;
    return 0;
}

/* Widths come from tensor shapes, never from metadata alone: some third-party files store the
 * unadjusted feed_forward_length (spec 3, pitfall 3). */
static int read_widths(lfm2c_model *m, lfm2c_error *err) {
    lfm2c_model_info *in = &m->info;
    char n[128];
    in->n_ff = 0;
    in->n_ff_exp = 0;
    for (int l = 0; l < in->n_layer; l++) {
        const gguf_tensor *t;
        if (!in->is_moe[l] && !in->n_ff) {
            snprintf(n, sizeof n, "blk.%d.ffn_gate.weight", l);
            if ((t = gguf_find_tensor(m->gguf, n))) in->n_ff = (int)t->ne[1];
        }
        if (in->is_moe[l] && !in->n_ff_exp) {
            snprintf(n, sizeof n, "blk.%d.ffn_gate_exps.weight", l);
            if ((t = gguf_find_tensor(m->gguf, n))) in->n_ff_exp = (int)t->ne[1];
        }
    }
    int64_t v;
    if (!in->n_ff && arch_int(m->gguf, in->arch, "feed_forward_length", &v)) in->n_ff = (int)v;
    if (!in->n_ff_exp && arch_int(m->gguf, in->arch, "expert_feed_forward_length", &v)) in->n_ff_exp = (int)v;
    return 0;
    (void)err;
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

lfm2c_model *lfm2c_model_open(const char *path, const lfm2c_model_params *params, lfm2c_error *err) {
    lfm2c_model_params p = params ? *params : lfm2c_model_default_params();
    if (err) { err->code = 0; err->msg[0] = 0; }
    const lfm2c_backend *backend = backend_for_device(p.device, err);
    if (!backend) return NULL;
    lfm2c_model *m = calloc(1, sizeof *m);
    if (!m) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); return NULL; }
    unsigned flags = p.hugepages == LFM2C_HUGEPAGES_ON ? GGUF_OPEN_HUGE_COPY
                     : p.hugepages == LFM2C_HUGEPAGES_AUTO && p.device == LFM2C_DEVICE_CPU && !p.no_populate
                         ? GGUF_OPEN_HUGE_AUTO : 0;
    m->gguf = gguf_open_ex(path, flags, err);
    if (!m->gguf) { free(m); return NULL; }
    lfm2c_model_info *in = &m->info;
    in->weights_copied = m->gguf->copied;
    if (read_hparams(m, err) || read_widths(m, err)) goto fail;
    m->type_k = p.type_k;
    m->type_v = p.type_v;
    if (kv_types_check(m, err)) goto fail;

    /* token embedding [H, V]; the vocabulary size is its row count */
    const gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) { lfm2c_set_error(err, LFM2C_EFORMAT, "missing tensor 'token_embd.weight'"); goto fail; }
    in->n_vocab = (int)te->ne[1];
    if (bind(m, &m->tok_embd, "token_embd.weight", false, err, in->n_embd, in->n_vocab, 0)) goto fail;
    /* final norm: llama.cpp's name, or the Ollama-style alias */
    if (bind(m, &m->out_norm, "token_embd_norm.weight", true, err, in->n_embd, 0, 0)) goto fail;
    if (!m->out_norm.data && bind(m, &m->out_norm, "output_norm.weight", false, err, in->n_embd, 0, 0)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "missing final norm tensor 'token_embd_norm.weight' (or 'output_norm.weight')");
        goto fail;
    }
    if (require_f32(&m->out_norm, err)) goto fail;
    if (bind(m, &m->output, "output.weight", true, err, in->n_embd, in->n_vocab, 0)) goto fail;
    if (!m->output.data) m->output = m->tok_embd; /* tied head */

    m->layers = calloc((size_t)in->n_layer, sizeof(layer));
    if (!m->layers) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); goto fail; }
    for (int l = 0; l < in->n_layer; l++)
        if (bind_layer(m, l, err)) goto fail;
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
    m->reference = p.reference;
    m->kern = p.reference ? kernels_scalar() : kernels_get();
    if (p.n_threads > THREADPOOL_MAX_THREADS) {
        lfm2c_set_error(err, LFM2C_EINVAL, "n_threads %d is more than %d", p.n_threads, THREADPOOL_MAX_THREADS);
        goto fail;
    }
    m->pool = threadpool_new(p.n_threads);
    if (!m->pool) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); goto fail; }
    if (backend->model_init(m, err)) goto fail;   /* the backend attaches: buffers, device upload */
    m->backend = backend;
    return m;
fail:
    lfm2c_model_free(m);
    return NULL;
}

void lfm2c_model_free(lfm2c_model *m) {
    if (!m) return;
    if (m->backend) m->backend->model_free(m);
    threadpool_free(m->pool);
    if (m->tok) tokenizer_free(m->tok);
    free(m->layers);
    gguf_close(m->gguf);
    free(m);
}

const lfm2c_model_info *lfm2c_model_get_info(const lfm2c_model *m) { return &m->info; }
const lfm2c_tokenizer *model_tokenizer(const lfm2c_model *m) { return m->tok; }

int lfm2c_model_n_tensors(const lfm2c_model *m) { return (int)m->gguf->n_tensors; }

void lfm2c_model_tensor_desc(const lfm2c_model *m, int i, const char **name, const char **type_name,
                             int64_t ne[4], int *n_dims, uint64_t *nbytes) {
    const gguf_tensor *t = &m->gguf->tensors[i];
    *name = t->name;
    *type_name = ggml_type_get(t->type)->name;
    memcpy(ne, t->ne, 4 * sizeof(int64_t));
    *n_dims = (int)t->n_dims;
    *nbytes = t->nbytes;
}

const char *lfm2c_model_meta_str(const lfm2c_model *m, const char *key) {
    const gguf_kv *kv = gguf_find(m->gguf, key);
    return kv && kv->type == GGUF_STR ? kv->cstr : NULL;
}

bool lfm2c_token_is_eog(const lfm2c_model *m, int32_t token) { return tokenizer_is_eog(m->tok, token); }
