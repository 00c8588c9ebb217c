/* convert.c — HF checkpoint directory -> GGUF (see convert.h). Four steps:
 *   1. hyper-parameters from config.json (with the transformers defaults the reference gets
 *      through AutoConfig), the dense FFN width rule, the layer plan;
 *   2. a tensor plan: every safetensors tensor mapped to its GGUF name, conv taps squeezed,
 *      per-expert or fused expert matrices stacked / split, each shape checked against 1;
 *      names, shapes and layer kinds are the architecture table's (core/lfm2_arch.h);
 *   3. metadata: general.*, {arch}.*, tokenizer.* from tokenizer.json / tokenizer_config.json /
 *      config.json, chat template, general.sampling.* from generation_config.json;
 *   4. tensor data streamed in row chunks, converted on a thread pool. */
#include "base/error.h"
#include "core/lfm2_arch.h"
#include "convert/convert.h"
#include "formats/gguf_write.h"
#include "formats/ggml_types.h"
#include "convert/quantize.h"
#include "formats/safetensors.h"
#include "base/threadpool.h"
#include "base/clock.h"
#include "base/os.h"

#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* set the error and return false, so callers can `return fail(...)` */
#define fail(err, ...) \
    ({ \
        lfm2c_set_error(err, __VA_ARGS__); \
        false; \
    })

int convert_parse_type(const char *s) {
    if (!strcasecmp(s, "f32")) return GGML_F32;
    if (!strcasecmp(s, "f16")) return GGML_F16;
    if (!strcasecmp(s, "bf16")) return GGML_BF16;
    if (!strcasecmp(s, "q8_0")) return GGML_Q8_0;
    return -1;
}

uint32_t convert_file_type(uint32_t t) {
    switch (t) {
    case GGML_F16: return 1;   /* LLAMA_FTYPE_MOSTLY_F16 */
    case GGML_BF16: return 32; /* LLAMA_FTYPE_MOSTLY_BF16 */
    case GGML_Q8_0: return 7;  /* LLAMA_FTYPE_MOSTLY_Q8_0 */
    default: return 0;         /* LLAMA_FTYPE_ALL_F32 */
    }
}

/* ---- 1. hyper-parameters -------------------------------------------------------------- */

/* Multimodal configs nest the language model under text_config; its keys win. */
static json_t *cfg_get(json_t *cfg, const char *key) {
    json_t *tc = json_object_get(cfg, "text_config");
    json_t *v = json_is_object(tc) ? json_object_get(tc, key) : NULL;
    v = v ? v : json_object_get(cfg, key);
    return json_is_null(v) ? NULL : v;
}

/* Integer key; `def` < INT_MIN+1 marks it required. */
#define REQUIRED INT_MIN
static bool cfg_int(json_t *cfg, const char *key, int def, int *out, lfm2c_error *err) {
    json_t *v = cfg_get(cfg, key);
    if (!v) {
        if (def == REQUIRED) return fail(err, LFM2C_EFORMAT, "config.json: '%s' is missing", key);
        *out = def;
        return true;
    }
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
    if (!(d == floor(d)) || d < 0 || d > 1e9)
        return fail(err, LFM2C_EFORMAT, "config.json: '%s' is not a valid count", key);
    *out = (int)d;
    return true;
}

static bool cfg_num(json_t *cfg, const char *key, double def, double *out, lfm2c_error *err) {
    json_t *v = cfg_get(cfg, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (!json_is_number(v)) return fail(err, LFM2C_EFORMAT, "config.json: '%s' is not a number", key);
    *out = json_number_value(v);
    return true;
}

static bool cfg_bool(json_t *cfg, const char *key, bool def) {
    json_t *v = cfg_get(cfg, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* Sizes, norms, RoPE, tied head. Defaults: those of transformers' Lfm2Config / Lfm2MoeConfig,
 * which the reference converter sees through AutoConfig. */
static bool parse_dims(json_t *cfg, lfm2_hparams *hp, int *n_head_kv, lfm2c_error *err) {
    json_t *mt = cfg_get(cfg, "model_type");
    const char *type = json_string_value(mt);
    if (!type) return fail(err, LFM2C_EFORMAT, "config.json has no model_type");
    if (!strcmp(type, "lfm2")) hp->moe = false;
    else if (!strcmp(type, "lfm2_moe")) hp->moe = true;
    else return fail(err, LFM2C_EUNSUPPORTED, "unsupported model_type '%s' (expected lfm2 or lfm2_moe)", type);

    if (!cfg_int(cfg, "num_hidden_layers", REQUIRED, &hp->n_layer, err) ||
        !cfg_int(cfg, "hidden_size", REQUIRED, &hp->n_embd, err) ||
        !cfg_int(cfg, "num_attention_heads", REQUIRED, &hp->n_head, err) ||
        !cfg_int(cfg, "num_key_value_heads", 8, n_head_kv, err) ||
        !cfg_int(cfg, "max_position_embeddings", 128000, &hp->n_ctx, err) ||
        !cfg_int(cfg, "vocab_size", 65536, &hp->n_vocab, err) || !cfg_int(cfg, "conv_L_cache", 3, &hp->l_cache, err))
        return false;
    if (hp->n_layer < 1 || hp->n_layer > LFM2C_MAX_LAYERS)
        return fail(err, LFM2C_EUNSUPPORTED, "config.json: num_hidden_layers %d is out of range (1..%d)", hp->n_layer,
                    LFM2C_MAX_LAYERS);
    if (hp->n_embd < 1 || hp->n_head < 1 || hp->n_vocab < 1 || hp->l_cache < 1)
        return fail(err, LFM2C_EFORMAT,
                    "config.json: hidden_size, num_attention_heads, vocab_size and conv_L_cache must be positive");
    hp->has_head_dim = cfg_get(cfg, "head_dim") != NULL;
    if (hp->has_head_dim) {
        if (!cfg_int(cfg, "head_dim", 0, &hp->head_dim, err)) return false;
    } else {
        if (hp->n_embd % hp->n_head)
            return fail(err, LFM2C_EFORMAT, "config.json: hidden_size %d is not a multiple of num_attention_heads %d",
                        hp->n_embd, hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->head_dim < 1) return fail(err, LFM2C_EFORMAT, "config.json: head_dim must be positive");

    /* rope theta: top level, or inside rope_parameters (newer transformers) */
    json_t *rp = cfg_get(cfg, "rope_parameters");
    json_t *th = cfg_get(cfg, "rope_theta");
    if (!th && json_is_object(rp)) th = json_object_get(rp, "rope_theta");
    hp->rope_theta = (float)(json_is_number(th) ? json_number_value(th) : 1000000.0);
    /* the reference asks rms_norm_eps first, then the LFM2 classes write norm_eps over it */
    double eps_a, eps_b;
    if (!cfg_num(cfg, "rms_norm_eps", 1e-5, &eps_a, err) || !cfg_num(cfg, "norm_eps", eps_a, &eps_b, err)) return false;
    hp->norm_eps = (float)(hp->moe ? (cfg_get(cfg, "rms_norm_eps") ? eps_a : eps_b) : eps_b);
    hp->tied = cfg_bool(cfg, "tie_word_embeddings", cfg_bool(cfg, "tie_embedding", true));
    return true;
}

/* layer plan: layer_types, else full_attn_idxs, else every layer attention */
static bool parse_layer_plan(json_t *cfg, lfm2_hparams *hp, lfm2c_error *err) {
    json_t *lt = cfg_get(cfg, "layer_types"), *fi = cfg_get(cfg, "full_attn_idxs");
    if (lt) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)hp->n_layer)
            return fail(err, LFM2C_EFORMAT, "config.json: layer_types must list %d layers", hp->n_layer);
        for (int l = 0; l < hp->n_layer; l++) {
            const char *s = json_string_value(json_array_get(lt, (size_t)l));
            if (!s) return fail(err, LFM2C_EFORMAT, "config.json: layer_types[%d] is not a string", l);
            /* dense: anything but "conv" has attention; MoE: only "full_attention" */
            hp->is_attn[l] = hp->moe ? !strcmp(s, "full_attention") : strcmp(s, "conv") != 0;
        }
    } else if (fi) {
        if (!json_is_array(fi)) return fail(err, LFM2C_EFORMAT, "config.json: full_attn_idxs is not an array");
        for (size_t i = 0; i < json_array_size(fi); i++) {
            json_t *e = json_array_get(fi, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= hp->n_layer)
                return fail(err, LFM2C_EFORMAT, "config.json: full_attn_idxs[%zu] is not a layer index", i);
            hp->is_attn[json_integer_value(e)] = true;
        }
    } else {
        for (int l = 0; l < hp->n_layer; l++) hp->is_attn[l] = true;
    }
    return true;
}

/* spec 1.2: block_ff_dim wins over intermediate_size, then the auto-adjust rule */
static bool parse_dense_ffn(json_t *cfg, lfm2_hparams *hp, lfm2c_error *err) {
    int ff;
    double mult;
    int multiple_of;
    if (!cfg_int(cfg, "intermediate_size", 12288, &ff, err) || !cfg_int(cfg, "block_ff_dim", ff, &ff, err) ||
        !cfg_num(cfg, "block_ffn_dim_multiplier", 1.0, &mult, err) ||
        !cfg_int(cfg, "block_multiple_of", 256, &multiple_of, err))
        return false;
    /* an explicit null multiplier skips that step (the reference tests for None) */
    json_t *tc = json_object_get(cfg, "text_config");
    json_t *raw = json_is_object(tc) && json_object_get(tc, "block_ffn_dim_multiplier")
                      ? json_object_get(tc, "block_ffn_dim_multiplier")
                      : json_object_get(cfg, "block_ffn_dim_multiplier");
    bool has_mult = !json_is_null(raw);
    if (cfg_bool(cfg, "block_auto_adjust_ff_dim", true)) {
        if (multiple_of < 1) return fail(err, LFM2C_EFORMAT, "config.json: block_multiple_of must be positive");
        double f = floor(2.0 * ff / 3.0);
        if (has_mult) f = floor(mult * f);
        ff = (int)(multiple_of * ceil(f / multiple_of));
    }
    hp->n_ff = ff;
    hp->n_dense = hp->n_layer;
    return true;
}

/* spec 1.3: the dense layers' intermediate_size verbatim, experts, router bias */
static bool parse_moe(json_t *cfg, lfm2_hparams *hp, lfm2c_error *err) {
    if (!cfg_int(cfg, "intermediate_size", 7168, &hp->n_ff, err) ||
        !cfg_int(cfg, "num_experts", REQUIRED, &hp->n_expert, err) ||
        !cfg_int(cfg, "num_experts_per_tok", REQUIRED, &hp->n_expert_used, err) ||
        !cfg_int(cfg, "moe_intermediate_size", REQUIRED, &hp->n_ff_exp, err) ||
        !cfg_int(cfg, "num_dense_layers", 2, &hp->n_dense, err))
        return false;
    if (hp->n_expert < 1 || hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert || hp->n_ff_exp < 1)
        return fail(err, LFM2C_EFORMAT,
                    "config.json: num_experts %d / num_experts_per_tok %d / moe_intermediate_size %d are inconsistent",
                    hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    if (hp->n_dense > hp->n_layer) hp->n_dense = hp->n_layer;
    hp->expert_bias = cfg_bool(cfg, "use_expert_bias", true);
    return true;
}

static bool parse_config(json_t *cfg, lfm2_hparams *hp, lfm2c_error *err) {
    memset(hp, 0, sizeof *hp);
    int n_head_kv;
    if (!parse_dims(cfg, hp, &n_head_kv, err) || !parse_layer_plan(cfg, hp, err)) return false;
    for (int l = 0; l < hp->n_layer; l++) hp->n_head_kv[l] = hp->is_attn[l] ? n_head_kv : 0;
    return hp->moe ? parse_moe(cfg, hp, err) : parse_dense_ffn(cfg, hp, err);
}

/* ---- 2. tensor plan ------------------------------------------------------------------- */

/* A run of whole rows of one source tensor. */
typedef struct seg {
    const st_tensor *t;
    int64_t first, n;
} seg;

typedef struct out_tensor {
    char name[64];
    char src[160];          /* the HF name it came from, for messages */
    const lfm2_tensor *row; /* its row of the architecture table */
    int n_dims;
    int64_t shape[4]; /* torch order */
    uint32_t type;
    int n_seg;
    seg *segs;
} out_tensor;

/* transformers >= 5 keeps the experts fused: gate_up_proj [E, 2Fe, H] = concat(w1, w3) (spec 3) */
#define HF_FUSED_GATE_UP "feed_forward.experts.gate_up_proj"
#define N_EXPERT_ROWS 3 /* table rows with LFM2_TF_EXPERTS */

typedef struct plan {
    out_tensor *t;
    int n, cap;
    /* table rows seen: per layer, and of the global tensors */
    uint32_t seen[LFM2C_MAX_LAYERS], seen_global;
    /* the expert rows in the order of their HF names (w1, w2, w3: the reference's stacking order),
     * and per-expert pieces waiting to be stacked [layer][row][e] */
    const lfm2_tensor *exp_rows[N_EXPERT_ROWS];
    const st_tensor **pieces;
    int *n_pieces;
} plan;

static void plan_free(plan *p) {
    for (int i = 0; i < p->n; i++) free(p->t[i].segs);
    free(p->t);
    free(p->pieces);
    free(p->n_pieces);
}

static out_tensor *plan_add(plan *p, const char *name, const char *src, lfm2c_error *err) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        out_tensor *nt = realloc(p->t, (size_t)cap * sizeof *nt);
        if (!nt) return fail(err, LFM2C_ENOMEM, "out of memory"), NULL;
        p->t = nt;
        p->cap = cap;
    }
    out_tensor *o = &p->t[p->n++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    snprintf(o->src, sizeof o->src, "%s", src);
    return o;
}

static bool add_seg(out_tensor *o, const st_tensor *t, int64_t first, int64_t n, lfm2c_error *err) {
    seg *ns = realloc(o->segs, (size_t)(o->n_seg + 1) * sizeof *ns);
    if (!ns) return fail(err, LFM2C_ENOMEM, "out of memory");
    o->segs = ns;
    o->segs[o->n_seg++] = (seg){t, first, n};
    return true;
}

static void shape_str(char *buf, size_t n, int nd, const int64_t *s) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Torch shape a GGUF tensor must have: the table's, reversed. */
static int expected_shape(const lfm2_hparams *hp, const lfm2_tensor *row, int l, int64_t *s) {
    int64_t ne[3];
    int nd = lfm2_tensor_shape(row, hp, l, ne);
    for (int i = 0; i < nd; i++) s[i] = ne[nd - 1 - i];
    return nd;
}

/* Reference type rule: 1-D tensors, norms, the router, conv taps and non-".weight" tensors are
 * F32 (the table's LFM2_TF_F32 rows are the matrices among them); other matrices take the
 * requested type (Q8_0 falls back to F16 on rows that are not a multiple of its block). */
static uint32_t tensor_type(const out_tensor *o, uint32_t want) {
    size_t n = strlen(o->name);
    if (o->n_dims <= 1 || (o->row->flags & LFM2_TF_F32) || n < 7 || strcmp(o->name + n - 7, ".weight")) return GGML_F32;
    if (want == GGML_Q8_0 && o->shape[o->n_dims - 1] % QK8_0) return GGML_F16;
    return want;
}

/* Output tensor for table row `row` of layer l (-1: global), from HF tensor `src`. */
static out_tensor *plan_row(plan *p, const lfm2_tensor *row, int l, const char *src, lfm2c_error *err) {
    char name[64];
    out_tensor *o = plan_add(p, lfm2_tensor_name(row, l, false, name, sizeof name), src, err);
    if (o) o->row = row;
    return o;
}

/* Finishes a planned tensor: shape from its sources (stacking adds a leading dim), checked. */
static bool plan_check(const lfm2_hparams *hp, out_tensor *o, int l, lfm2c_error *err) {
    int64_t want[4];
    int nd = expected_shape(hp, o->row, l, want);
    bool ok = nd == o->n_dims;
    for (int i = 0; ok && i < nd; i++) ok = want[i] == o->shape[i];
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, o->n_dims, o->shape);
        shape_str(b, sizeof b, nd, want);
        return fail(err, LFM2C_EFORMAT, "shape mismatch: '%s' is %s, config.json implies %s for %s", o->src, a, b,
                    o->name);
    }
    return true;
}

/* Simple 1:1 tensor (with the conv squeeze). */
static bool plan_simple(plan *p, const lfm2_hparams *hp, const st_tensor *t, const lfm2_tensor *row, int l,
                        lfm2c_error *err) {
    out_tensor *o = plan_row(p, row, l, t->name, err);
    if (!o) return false;
    o->n_dims = 0;
    for (int i = 0; i < t->n_dims; i++) {
        if ((row->flags & LFM2_TF_SQUEEZE) && i == 1 && t->n_dims == 3 && t->shape[1] == 1) continue; /* squeeze(1) */
        if (o->n_dims == 4) return fail(err, LFM2C_EFORMAT, "'%s' has too many dimensions", t->name);
        o->shape[o->n_dims++] = t->shape[i];
    }
    if (!plan_check(hp, o, l, err)) return false;
    return add_seg(o, t, 0, t->numel, err);
}

/* Stacks the E pieces of expert row w (index into p->exp_rows) of layer l. */
static bool plan_stack(plan *p, const lfm2_hparams *hp, int l, int w, lfm2c_error *err) {
    const lfm2_tensor *row = p->exp_rows[w];
    const st_tensor **pc = p->pieces + ((size_t)l * N_EXPERT_ROWS + (size_t)w) * (size_t)hp->n_expert;
    char src[160];
    snprintf(src, sizeof src, "model.layers.%d.%s", l, row->hf);
    out_tensor *o = plan_row(p, row, l, src, err);
    if (!o) return false;
    const st_tensor *t0 = pc[0];
    if (t0->n_dims != 2) return fail(err, LFM2C_EFORMAT, "'%s' is not a matrix", t0->name);
    for (int e = 1; e < hp->n_expert; e++)
        if (pc[e]->n_dims != 2 || pc[e]->shape[0] != t0->shape[0] || pc[e]->shape[1] != t0->shape[1])
            return fail(err, LFM2C_EFORMAT, "'%s' and '%s' differ in shape", t0->name, pc[e]->name);
    o->n_dims = 3;
    o->shape[0] = hp->n_expert;
    o->shape[1] = t0->shape[0];
    o->shape[2] = t0->shape[1];
    if (!plan_check(hp, o, l, err)) return false;
    for (int e = 0; e < hp->n_expert; e++)
        if (!add_seg(o, pc[e], 0, pc[e]->numel, err)) return false;
    p->seen[l] |= 1u << row->id;
    return true;
}

/* Fused gate_up_proj [E, 2Fe, H]: the first Fe rows of each expert are w1 (gate), the rest w3. */
static bool plan_gate_up(plan *p, const lfm2_hparams *hp, int l, const st_tensor *t, lfm2c_error *err) {
    if (t->n_dims != 3 || t->shape[1] % 2)
        return fail(err, LFM2C_EFORMAT, "'%s' must be [experts, 2*expert_ffn, hidden]", t->name);
    int64_t E = t->shape[0], F2 = t->shape[1], H = t->shape[2];
    for (int half = 0; half < 2; half++) {
        const lfm2_tensor *row = &LFM2_TENSORS[half ? LFM2_T_UP_EXPS : LFM2_T_GATE_EXPS];
        out_tensor *o = plan_row(p, row, l, t->name, err);
        if (!o) return false;
        o->n_dims = 3;
        o->shape[0] = E;
        o->shape[1] = F2 / 2;
        o->shape[2] = H;
        if (!plan_check(hp, o, l, err)) return false;
        for (int64_t e = 0; e < E; e++)
            if (!add_seg(o, t, (e * F2 + half * (F2 / 2)) * H, F2 / 2 * H, err)) return false;
        if (p->seen[l] & 1u << row->id) return fail(err, LFM2C_EFORMAT, "layer %d has two %s", l, row->gguf);
        p->seen[l] |= 1u << row->id;
    }
    return true;
}

/* The expert rows sorted by HF name; false if the table does not have N_EXPERT_ROWS of them. */
static bool find_expert_rows(plan *p) {
    int n = 0;
    for (int i = 0; i < LFM2_T_COUNT; i++) {
        const lfm2_tensor *r = &LFM2_TENSORS[i];
        if (!(r->flags & LFM2_TF_EXPERTS)) continue;
        if (n == N_EXPERT_ROWS) return false;
        int k = n++;
        for (; k > 0 && strcmp(p->exp_rows[k - 1]->hf, r->hf) > 0; k--) p->exp_rows[k] = p->exp_rows[k - 1];
        p->exp_rows[k] = r;
    }
    return n == N_EXPERT_ROWS;
}

/* Index into p->exp_rows of the per-expert HF name `rest` ("...experts.E.w1.weight" against the
 * row's "...experts.*.w1.weight"), with the expert in *e; -1 if it is not one. */
static int match_expert(const plan *p, const char *rest, int *e) {
    for (int w = 0; w < N_EXPERT_ROWS; w++) {
        const char *pat = p->exp_rows[w]->hf, *star = strchr(pat, '*');
        size_t pre = (size_t)(star - pat);
        if (strncmp(rest, pat, pre) || !isdigit((unsigned char)rest[pre])) continue;
        char *end;
        long v = strtol(rest + pre, &end, 10);
        if (strcmp(end, star + 1)) continue;
        *e = v > INT_MAX ? INT_MAX : (int)v;
        return w;
    }
    return -1;
}

/* "base" or "base.weight" */
static bool is_name(const char *rest, const char *base) {
    size_t n = strlen(base);
    return !strncmp(rest, base, n) && (!rest[n] || !strcmp(rest + n, ".weight"));
}

/* Global tensors: embedding, final norm, lm_head (dropped when tied: the engine reuses token_embd). */
static bool plan_global(plan *p, const lfm2_hparams *hp, const st_tensor *t, const lfm2_tensor *row, lfm2c_error *err) {
    if (row->cond == LFM2_IF_UNTIED && hp->tied) return true;
    if (p->seen_global & 1u << row->id) return fail(err, LFM2C_EFORMAT, "tensor '%s' given twice", t->name);
    p->seen_global |= 1u << row->id;
    return plan_simple(p, hp, t, row, -1, err);
}

/* One per-expert matrix; all of a layer's stacks are written when its last piece arrives, like
 * the reference. */
static bool plan_piece(plan *p, const lfm2_hparams *hp, const st_tensor *t, int l, int w, int e, lfm2c_error *err) {
    if (!hp->moe || l < hp->n_dense)
        return fail(err, LFM2C_EFORMAT, "tensor '%s': layer %d has no experts", t->name, l);
    if (e < 0 || e >= hp->n_expert)
        return fail(err, LFM2C_EFORMAT, "tensor '%s': expert %d out of range (num_experts %d)", t->name, e,
                    hp->n_expert);
    const st_tensor **slot = &p->pieces[((size_t)l * N_EXPERT_ROWS + (size_t)w) * (size_t)hp->n_expert + (size_t)e];
    if (*slot) return fail(err, LFM2C_EFORMAT, "tensor '%s' given twice", t->name);
    *slot = t;
    if (++p->n_pieces[l] == N_EXPERT_ROWS * hp->n_expert)
        for (int ww = 0; ww < N_EXPERT_ROWS; ww++)
            if (!plan_stack(p, hp, l, ww, err)) return false;
    return true;
}

/* Fused expert matrices (transformers >= 5): gate_up_proj split in two, down_proj as it is. */
static bool plan_fused(plan *p, const lfm2_hparams *hp, const st_tensor *t, int l, const char *rest, lfm2c_error *err) {
    if (!hp->moe || l < hp->n_dense)
        return fail(err, LFM2C_EFORMAT, "tensor '%s': layer %d has no experts", t->name, l);
    if (is_name(rest, HF_FUSED_GATE_UP)) return plan_gate_up(p, hp, l, t, err);
    const lfm2_tensor *row = &LFM2_TENSORS[LFM2_T_DOWN_EXPS];
    if (p->seen[l] & 1u << row->id) return fail(err, LFM2C_EFORMAT, "layer %d has two expert down matrices", l);
    if (!plan_simple(p, hp, t, row, l, err)) return false;
    p->seen[l] |= 1u << row->id;
    return true;
}

/* A 1:1 layer tensor: it must belong to the layer's kinds (an expert bias is accepted even when
 * use_expert_bias is false). */
static bool plan_layer_row(plan *p, const lfm2_hparams *hp, const st_tensor *t, int l, const char *rest,
                           lfm2c_error *err) {
    const lfm2_tensor *row = lfm2_tensor_by_hf(rest, true);
    if (!row) return fail(err, LFM2C_EFORMAT, "unexpected tensor '%s' in an LFM2 checkpoint", t->name);
    if (!lfm2_tensor_in_layer(row, hp, l))
        return fail(err, LFM2C_EFORMAT, "tensor '%s' does not belong in layer %d (a %s %s layer per config.json)",
                    t->name, l, hp->is_attn[l] ? "attention" : "conv", l < hp->n_dense ? "dense" : "MoE");
    if (p->seen[l] & 1u << row->id) return fail(err, LFM2C_EFORMAT, "tensor '%s' given twice", t->name);
    p->seen[l] |= 1u << row->id;
    return plan_simple(p, hp, t, row, l, err);
}

/* Plans one safetensors tensor (HF name `name`, the language_model. prefix removed). */
static bool plan_tensor(plan *p, const lfm2_hparams *hp, const st_tensor *t, const char *name, lfm2c_error *err) {
    const lfm2_tensor *row = lfm2_tensor_by_hf(name, false);
    if (row) return plan_global(p, hp, t, row, err);
    int l, nc = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &nc) != 1 || nc == 0)
        return fail(err, LFM2C_EFORMAT, "unexpected tensor '%s' in an LFM2 checkpoint", t->name);
    if (l < 0 || l >= hp->n_layer)
        return fail(err, LFM2C_EFORMAT, "tensor '%s': layer %d is beyond num_hidden_layers %d", t->name, l,
                    hp->n_layer);
    const char *rest = name + nc;
    int e, w = match_expert(p, rest, &e);
    if (w >= 0) return plan_piece(p, hp, t, l, w, e, err);
    if (is_name(rest, HF_FUSED_GATE_UP) || is_name(rest, LFM2_TENSORS[LFM2_T_DOWN_EXPS].hf_alias))
        return plan_fused(p, hp, t, l, rest, err);
    return plan_layer_row(p, hp, t, l, rest, err);
}

/* Every tensor a complete model has, after all were planned. */
static bool plan_complete(const plan *p, const lfm2_hparams *hp, lfm2c_error *err) {
    for (int i = 0; i < LFM2_T_FIRST_LAYER; i++) {
        const lfm2_tensor *row = &LFM2_TENSORS[i];
        if (lfm2_tensor_wanted(row, hp, -1) && !(p->seen_global & 1u << row->id))
            return fail(err, LFM2C_EFORMAT, "missing tensor '%s'%s", row->hf,
                        row->cond == LFM2_IF_UNTIED ? " (tie_word_embeddings is false)" : "");
    }
    for (int l = 0; l < hp->n_layer; l++)
        for (int i = LFM2_T_FIRST_LAYER; i < LFM2_T_COUNT; i++) {
            const lfm2_tensor *row = &LFM2_TENSORS[i];
            if (!lfm2_tensor_wanted(row, hp, l) || (p->seen[l] & 1u << row->id)) continue;
            if ((row->flags & LFM2_TF_EXPERTS) && p->n_pieces && p->n_pieces[l])
                return fail(err, LFM2C_EFORMAT, "layer %d has %d of the %d per-expert matrices", l, p->n_pieces[l],
                            N_EXPERT_ROWS * hp->n_expert);
            return fail(err, LFM2C_EFORMAT, "missing tensor 'model.layers.%d.%s' (%s layer)", l, row->hf,
                        hp->is_attn[l] ? "attention" : "conv");
        }
    return true;
}

static bool build_plan(const st_model *m, const lfm2_hparams *hp, plan *p, lfm2c_error *err) {
    memset(p, 0, sizeof *p);
    if (!find_expert_rows(p))
        return fail(err, LFM2C_EINVAL, "internal: the architecture table does not have %d expert rows", N_EXPERT_ROWS);
    if (hp->moe) {
        size_t n = (size_t)hp->n_layer * N_EXPERT_ROWS * (size_t)hp->n_expert;
        p->pieces = calloc(n ? n : 1, sizeof *p->pieces);
        p->n_pieces = calloc((size_t)hp->n_layer, sizeof *p->n_pieces);
        if (!p->pieces || !p->n_pieces) return fail(err, LFM2C_ENOMEM, "out of memory");
    }
    char name[512];
    for (int i = 0; i < m->n_tensors; i++) {
        const st_tensor *t = &m->tensors[i];
        /* multimodal checkpoints: language model under language_model., towers skipped */
        if (strstr(t->name, "vision_tower") || strstr(t->name, "multi_modal_projector") ||
            strstr(t->name, "rotary_emb.inv_freq"))
            continue;
        size_t k = 0;
        for (const char *s = t->name; *s && k + 1 < sizeof name;) {
            if (!strncmp(s, "language_model.", 15)) {
                s += 15;
                continue;
            }
            name[k++] = *s++;
        }
        name[k] = 0;
        if (!st_dtype_is_float(t->dtype))
            return fail(err, LFM2C_EUNSUPPORTED, "tensor '%s' has dtype %s (only F32, F16, BF16 are supported)",
                        t->name, st_dtype_name(t->dtype));
        if (!plan_tensor(p, hp, t, name, err)) return false;
    }
    return plan_complete(p, hp, err);
}

/* ---- 3. metadata ---------------------------------------------------------------------- */

static bool load_json(const char *dir, const char *file, bool required, json_t **out, lfm2c_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    *out = NULL;
    if (!os_exists(path)) {
        if (required) return fail(err, LFM2C_EIO, "'%s' is missing from '%s'", file, dir);
        return true;
    }
    json_error_t jerr;
    *out = json_load_file(path, 0, &jerr);
    if (!*out) return fail(err, LFM2C_EFORMAT, "'%s': line %d: %s", path, jerr.line, jerr.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return fail(err, LFM2C_EFORMAT, "'%s' is not a JSON object", path);
    }
    return true;
}

static char *read_text(const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = os_fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

/* general.name as the reference derives it: the model part of config _name_or_path when it is a
 * hub id, else the directory name; words that are all lower case are title-cased. */
static void model_name(const char *dir, json_t *cfg, char *out, size_t n) {
    char buf[512] = "";
    const char *id = json_string_value(json_object_get(cfg, "_name_or_path"));
    int slashes = 0;
    for (const char *s = id; s && *s; s++) slashes += *s == '/';
    if (id && *id && slashes <= 1) {
        const char *s = strchr(id, '/');
        snprintf(buf, sizeof buf, "%s", s ? s + 1 : id);
    } else {
        char *rp = os_realpath(dir);
        const char *d = rp ? rp : dir;
        const char *s = strrchr(d, '/');
        snprintf(buf, sizeof buf, "%s", s && s[1] ? s + 1 : d);
        free(rp);
    }
    if (strchr(buf, ' ')) {
        snprintf(out, n, "%s", buf);
        return;
    }
    size_t k = 0;
    for (char *w = strtok(buf, "-"); w; w = strtok(NULL, "-")) {
        bool has_lower = false, has_upper = false;
        for (char *c = w; *c; c++)
            has_lower |= islower((unsigned char)*c) != 0, has_upper |= isupper((unsigned char)*c) != 0;
        bool version = (w[0] == 'v' && isdigit((unsigned char)w[1])) || isdigit((unsigned char)w[0]);
        if (has_lower && !has_upper && !version) /* str.title(): capitalize after non-letters */
            for (char *c = w, prev = 0; *c; prev = *c++)
                if (!isalpha((unsigned char)prev)) *c = (char)toupper((unsigned char)*c);
        if (k < n) k += (size_t)snprintf(out + k, n - k, "%s%s", k ? " " : "", w);
    }
    if (!k && n) snprintf(out, n, "%s", buf);
}

/* general.sampling.* from generation_config.json (key names as the reference reads them). */
static bool add_sampling(gguf_writer *w, json_t *gen) {
    static const struct {
        const char *json, *key;
        char kind;
    } MAP[] = {
        {"sequence", "general.sampling.sequence", 's'},
        {"top_k", "general.sampling.top_k", 'i'},
        {"top_p", "general.sampling.top_p", 'f'},
        {"min_p", "general.sampling.min_p", 'f'},
        {"xtc_probability", "general.sampling.xtc_probability", 'f'},
        {"xtc_threshold", "general.sampling.xtc_threshold", 'f'},
        {"temperature", "general.sampling.temp", 'f'},
        {"penalty_last_n", "general.sampling.penalty_last_n", 'i'},
        {"penalty_repeat", "general.sampling.penalty_repeat", 'f'},
        {"mirostat", "general.sampling.mirostat", 'i'},
        {"mirostat_tau", "general.sampling.mirostat_tau", 'f'},
        {"mirostat_eta", "general.sampling.mirostat_eta", 'f'},
    };
    bool ok = true;
    for (size_t i = 0; gen && i < sizeof MAP / sizeof MAP[0]; i++) {
        json_t *v = json_object_get(gen, MAP[i].json);
        if (MAP[i].kind == 's' && json_is_string(v)) ok &= gguf_set_str(w, MAP[i].key, json_string_value(v));
        if (MAP[i].kind == 'i' && json_is_integer(v)) ok &= gguf_set_i32(w, MAP[i].key, (int32_t)json_integer_value(v));
        if (MAP[i].kind == 'f' && json_is_number(v)) ok &= gguf_set_f32(w, MAP[i].key, (float)json_number_value(v));
    }
    return ok;
}

/* Names that the reference treats as control tokens even when not flagged special. */
static bool looks_special(const char *s) {
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") || !strcmp(s, "[@BOS@]")) return true;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return true;
    if (n >= 7 && !strncmp(s, "<\xef\xbd\x9c", 4) && !strcmp(s + n - 4, "\xef\xbd\x9c>")) return true; /* <｜ ｜> */
    if (n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>') return true;
    return false;
}

/* Content of a tokenizer_config "<typ>_token" entry: a string or {"content": ...}. */
static const char *special_content(json_t *tc, const char *typ) {
    char key[32];
    snprintf(key, sizeof key, "%s_token", typ);
    json_t *v = tc ? json_object_get(tc, key) : NULL;
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

typedef struct vocab {
    gguf_str *tok;
    int32_t *type;
    char **owned; /* strings allocated here (padding, rewritten user-defined tokens) */
    int n, n_owned;
} vocab;

static void vocab_free(vocab *v) {
    for (int i = 0; i < v->n_owned; i++) free(v->owned[i]);
    free(v->owned);
    free(v->tok);
    free(v->type);
}

static char *vocab_own(vocab *v, char *s) {
    if (!s) return NULL;
    v->owned[v->n_owned++] = s;
    return s;
}

/* U+2581 (sentencepiece space) -> ' ' in user-defined added tokens, as the reference does. */
static char *replace_spm_space(const char *s) {
    size_t n = strlen(s), k = 0;
    char *o = malloc(n + 1);
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        if (!strncmp(s + i, "\xe2\x96\x81", 3)) {
            o[k++] = ' ';
            i += 3;
        } else o[k++] = s[i++];
    }
    o[k] = 0;
    return o;
}

/* Tokens in id order: the BPE vocab, then added tokens over it; unused ids are padding. */
static bool vocab_read(vocab *v, json_t *jvocab, json_t *added, int n_vocab, lfm2c_error *err) {
    v->n = n_vocab;
    v->tok = calloc((size_t)v->n, sizeof *v->tok);
    v->type = calloc((size_t)v->n, sizeof *v->type);
    v->owned = calloc((size_t)v->n + (added ? json_array_size(added) : 0) + 1, sizeof *v->owned);
    if (!v->tok || !v->type || !v->owned) return fail(err, LFM2C_ENOMEM, "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(jvocab, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= v->n)
            return fail(err, LFM2C_EFORMAT, "tokenizer.json: token '%s' has id %lld, outside vocab_size %d", key,
                        (long long)id, v->n);
        v->tok[id] = (gguf_str){key, strlen(key)};
        v->type[id] = 1; /* normal */
    }
    for (size_t i = 0; added && i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_t *jid = json_object_get(a, "id");
        const char *content = json_string_value(json_object_get(a, "content"));
        json_int_t id = json_is_integer(jid) ? json_integer_value(jid) : -1;
        if (!content || id < 0 || id >= v->n)
            return fail(err, LFM2C_EFORMAT,
                        "tokenizer.json: added_tokens[%zu] has no content or an id outside vocab_size %d", i, v->n);
        if (json_is_true(json_object_get(a, "special")) || looks_special(content)) {
            v->tok[id] = (gguf_str){content, json_string_length(json_object_get(a, "content"))};
            v->type[id] = 3; /* control */
        } else {
            char *s = vocab_own(v, replace_spm_space(content));
            if (!s) return fail(err, LFM2C_ENOMEM, "out of memory");
            v->tok[id] = (gguf_str){s, strlen(s)};
            v->type[id] = 4; /* user-defined */
        }
    }
    for (int i = 0; i < v->n; i++)
        if (!v->type[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%d]", i);
            char *s = vocab_own(v, strdup(buf));
            if (!s) return fail(err, LFM2C_ENOMEM, "out of memory");
            v->tok[i] = (gguf_str){s, strlen(s)};
            v->type[i] = 5; /* unused */
        }
    return true;
}

typedef struct merge_list {
    gguf_str *m;
    char **owned; /* strings made here from [a, b] pairs */
    size_t n;
} merge_list;

static void merge_list_free(merge_list *ml) {
    for (size_t i = 0; ml->owned && i < ml->n; i++) free(ml->owned[i]);
    free(ml->owned);
    free(ml->m);
}

/* "a b" from the pair [a, b]; spaces inside a part become U+0120 */
static char *merge_join(const char *pa, const char *pb, size_t *len) {
    size_t la = strlen(pa), lb = strlen(pb), k = 0;
    char *s = malloc(2 * (la + lb) + 2);
    if (!s) return NULL;
    for (int part = 0; part < 2; part++) {
        for (const char *c = part ? pb : pa; *c; c++)
            if (*c == ' ') {
                s[k++] = (char)0xc4;
                s[k++] = (char)0xa0;
            } /* U+0120 */
            else
                s[k++] = *c;
        if (!part) s[k++] = ' ';
    }
    s[k] = 0;
    *len = k;
    return s;
}

/* merges: "a b" strings, or [a, b] pairs */
static bool merges_read(json_t *model, merge_list *ml, lfm2c_error *err) {
    json_t *jm = json_object_get(model, "merges");
    if (jm && !json_is_array(jm)) return fail(err, LFM2C_EFORMAT, "tokenizer.json: merges is not an array");
    ml->n = jm ? json_array_size(jm) : 0;
    ml->m = calloc(ml->n + 1, sizeof *ml->m);
    ml->owned = calloc(ml->n + 1, sizeof *ml->owned);
    if (!ml->m || !ml->owned) return fail(err, LFM2C_ENOMEM, "out of memory");
    for (size_t i = 0; i < ml->n; i++) {
        json_t *e = json_array_get(jm, i);
        if (json_is_string(e)) {
            ml->m[i] = (gguf_str){json_string_value(e), json_string_length(e)};
            continue;
        }
        const char *pa = json_string_value(json_array_get(e, 0)), *pb = json_string_value(json_array_get(e, 1));
        if (!json_is_array(e) || json_array_size(e) != 2 || !pa || !pb)
            return fail(err, LFM2C_EFORMAT, "tokenizer.json: merges[%zu] is neither \"a b\" nor [a, b]", i);
        size_t k;
        char *s = merge_join(pa, pb, &k);
        if (!s) return fail(err, LFM2C_ENOMEM, "out of memory");
        ml->owned[i] = s;
        ml->m[i] = (gguf_str){s, k};
    }
    return true;
}

/* special tokens: tokenizer_config's "<typ>_token" and the GGUF id key each becomes */
static const struct {
    const char *typ, *key;
} SPECIAL[] = {
    {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
    {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
    {"pad", "tokenizer.ggml.padding_token_id"}, {"cls", "tokenizer.ggml.cls_token_id"},
    {"mask", "tokenizer.ggml.mask_token_id"},
};
enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_N };

static void special_contents(json_t *tc, const char *content[SP_N]) {
    for (int s = 0; s < SP_N; s++) content[s] = special_content(tc, SPECIAL[s].typ);
    if (!content[SP_BOS] && content[SP_CLS]) content[SP_BOS] = content[SP_CLS]; /* bos <- cls */
    if (!content[SP_EOS] && content[SP_SEP]) content[SP_EOS] = content[SP_SEP]; /* eos <- sep */
}

/* Special ids: tokenizer_config contents looked up among added tokens, then config.json
 * <typ>_token_id, then (beyond the reference) generation_config.json. */
static bool write_special_ids(gguf_writer *w, const char *const content[SP_N], json_t *added, json_t *cfg, json_t *gen,
                              int n_vocab) {
    bool wok = true;
    for (int s = 0; s < SP_N; s++) {
        int64_t id = -1;
        for (size_t i = 0; content[s] && added && i < json_array_size(added) && id < 0; i++) {
            json_t *a = json_array_get(added, i);
            const char *c = json_string_value(json_object_get(a, "content"));
            if (c && !strcmp(c, content[s])) id = json_integer_value(json_object_get(a, "id"));
        }
        json_t *sources[2] = {cfg, gen};
        for (int src = 0; src < 2 && id < 0; src++) {
            char key2[32];
            snprintf(key2, sizeof key2, "%s_token_id", SPECIAL[s].typ);
            json_t *jv = sources[src] ? cfg_get(sources[src], key2) : NULL;
            if (json_is_integer(jv) && json_integer_value(jv) >= 0 && json_integer_value(jv) < n_vocab)
                id = json_integer_value(jv);
        }
        if (id >= 0) wok &= gguf_set_u32(w, SPECIAL[s].key, (uint32_t)id);
    }
    return wok;
}

/* add_bos / add_eos: TemplateProcessing of the post-processor, overridden by tokenizer_config's
 * add_<typ>_token */
static bool write_add_special(gguf_writer *w, json_t *tj, json_t *tc, const char *const content[SP_N]) {
    int add_bos = -1, add_eos = -1;
    json_t *pp = json_object_get(tj, "post_processor");
    json_t *procs = json_object_get(pp, "processors");
    for (size_t i = 0; pp && i < (json_is_array(procs) ? json_array_size(procs) : 1); i++) {
        json_t *proc = json_is_array(procs) ? json_array_get(procs, i) : pp;
        const char *pt = json_string_value(json_object_get(proc, "type"));
        if (pt && !strcmp(pt, "RobertaProcessing")) {
            add_bos = add_eos = 1;
            continue;
        }
        if (!pt || strcmp(pt, "TemplateProcessing")) continue;
        json_t *single = json_object_get(proc, "single");
        size_t ns = json_is_array(single) ? json_array_size(single) : 0;
        if (ns < 2) continue;
        const char *first =
            json_string_value(json_object_get(json_object_get(json_array_get(single, 0), "SpecialToken"), "id"));
        const char *last =
            json_string_value(json_object_get(json_object_get(json_array_get(single, ns - 1), "SpecialToken"), "id"));
        if (first)
            add_bos = (content[SP_BOS] && !strcmp(first, content[SP_BOS])) ||
                      (content[SP_CLS] && !strcmp(first, content[SP_CLS]));
        if (last) add_eos = content[SP_EOS] && !strcmp(last, content[SP_EOS]);
    }
    json_t *ab = tc ? json_object_get(tc, "add_bos_token") : NULL,
           *ae = tc ? json_object_get(tc, "add_eos_token") : NULL;
    if (json_is_boolean(ab)) add_bos = json_is_true(ab);
    if (json_is_boolean(ae)) add_eos = json_is_true(ae);
    bool wok = true;
    if (add_bos >= 0) wok &= gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (add_eos >= 0) wok &= gguf_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    return wok;
}

/* named templates: default + tokenizer.chat_template.<name>, names listed in tokenizer.chat_templates */
static bool write_named_templates(gguf_writer *w, json_t *ct) {
    const char *names[64];
    size_t nn = 0;
    bool wok = true;
    for (size_t i = 0; i < json_array_size(ct); i++) {
        const char *nm = json_string_value(json_object_get(json_array_get(ct, i), "name"));
        const char *tp = json_string_value(json_object_get(json_array_get(ct, i), "template"));
        if (!nm || !tp) continue;
        char k[256];
        if (!strcmp(nm, "default")) snprintf(k, sizeof k, "tokenizer.chat_template");
        else {
            snprintf(k, sizeof k, "tokenizer.chat_template.%s", nm);
            if (nn < 64) names[nn++] = nm;
        }
        wok &= gguf_set_str(w, k, tp);
    }
    if (nn) wok &= gguf_set_arr_str(w, "tokenizer.chat_templates", names, nn);
    return wok;
}

/* chat template: tokenizer_config's, else chat_template.jinja, else chat_template.json (an
 * unreadable chat_template.json is skipped, as by the reference) */
static bool write_chat_template(gguf_writer *w, const char *dir, json_t *tc, lfm2c_error *err) {
    json_t *ct = tc ? json_object_get(tc, "chat_template") : NULL;
    json_t *ctj = NULL;
    char *jinja = NULL;
    if (!ct) {
        jinja = read_text(dir, "chat_template.jinja");
        if (!jinja && load_json(dir, "chat_template.json", false, &ctj, err) && ctj)
            ct = json_object_get(ctj, "chat_template");
    }
    bool wok = true;
    if (jinja) wok = gguf_set_str(w, "tokenizer.chat_template", jinja);
    else if (json_is_string(ct)) wok = gguf_set_str(w, "tokenizer.chat_template", json_string_value(ct));
    else if (json_is_array(ct)) wok = write_named_templates(w, ct);
    free(jinja);
    json_decref(ctj);
    return wok;
}

static bool add_tokenizer(gguf_writer *w, const char *dir, const lfm2_hparams *hp, json_t *cfg, json_t *gen,
                          convert_stats *st, lfm2c_error *err) {
    json_t *tj = NULL, *tc = NULL;
    vocab v = {0};
    merge_list ml = {0};
    bool ok = false;
    if (!load_json(dir, "tokenizer.json", true, &tj, err) || !load_json(dir, "tokenizer_config.json", false, &tc, err))
        goto done;
    json_t *model = json_object_get(tj, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    json_t *jvocab = json_object_get(model, "vocab");
    if (!mtype || strcmp(mtype, "BPE") || !json_is_object(jvocab)) {
        fail(err, LFM2C_EUNSUPPORTED, "tokenizer.json: expected a BPE model with a vocab");
        goto done;
    }
    json_t *added = json_object_get(tj, "added_tokens");
    if (added && !json_is_array(added)) {
        fail(err, LFM2C_EFORMAT, "tokenizer.json: added_tokens is not an array");
        goto done;
    }
    if (!vocab_read(&v, jvocab, added, hp->n_vocab, err) || !merges_read(model, &ml, err)) goto done;

    bool wok = gguf_set_str(w, "tokenizer.ggml.model", "gpt2") && gguf_set_str(w, "tokenizer.ggml.pre", "lfm2") &&
               gguf_set_arr_gstr(w, "tokenizer.ggml.tokens", v.tok, (uint64_t)v.n) &&
               gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, v.type, (uint64_t)v.n) &&
               (ml.n == 0 || gguf_set_arr_gstr(w, "tokenizer.ggml.merges", ml.m, ml.n));
    const char *content[SP_N];
    special_contents(tc, content);
    wok &= write_special_ids(w, content, added, cfg, gen, v.n);
    wok &= write_add_special(w, tj, tc, content);
    wok &= write_chat_template(w, dir, tc, err);
    if (!wok) {
        fail(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    st->n_vocab = v.n;
    st->n_merges = (int)ml.n;
    ok = true;
done:
    merge_list_free(&ml);
    vocab_free(&v);
    json_decref(tj);
    json_decref(tc);
    return ok;
}

/* ---- 4. tensor data ------------------------------------------------------------------- */

typedef struct chunk_job {
    const seg *s;
    int64_t row0, n_rows, ne0;
    uint32_t type;
    size_t row_bytes;
    uint8_t *out;
    float **scratch; /* one row per thread */
} chunk_job;

static void convert_rows(void *arg, int ith, int nth) {
    chunk_job *j = arg;
    float *f = j->scratch[ith];
    int64_t per = (j->n_rows + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < j->n_rows ? r0 + per : j->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *o = j->out + (size_t)r * j->row_bytes;
        int64_t first = j->s->first + (j->row0 + r) * j->ne0;
        if (j->type == GGML_F32) {
            st_read_f32(j->s->t, first, j->ne0, (float *)(void *)o);
        } else {
            st_read_f32(j->s->t, first, j->ne0, f);
            quantize_rows(j->type, f, o, 1, j->ne0); /* F16 / BF16 / Q8_0 rows, reference rounding */
        }
    }
}

/* Drops the source pages of a finished tensor from our resident set (they stay cached). */
static void release_pages(const st_tensor *t) {
    long ps = (long)os_page_size();
    uintptr_t b = ((uintptr_t)t->data + (uintptr_t)ps - 1) & ~(uintptr_t)(ps - 1);
    uintptr_t e = ((uintptr_t)t->data + t->nbytes) & ~(uintptr_t)(ps - 1);
    if (e > b) os_advise((void *)b, e - b, OS_ADV_DONTNEED);
}

/* The header's key-values: architecture, name, sampling defaults, the hyperparameters and the tokenizer. */
static bool write_meta(gguf_writer *w, const char *dir, json_t *cfg, json_t *gen, lfm2_hparams *hp, convert_stats *st,
                       lfm2c_error *err) {
    char name[600];
    model_name(dir, cfg, name, sizeof name);
    bool wok = gguf_set_str(w, "general.architecture", st->arch) && gguf_set_str(w, "general.type", "model") &&
               add_sampling(w, gen) && gguf_set_str(w, "general.name", name) &&
               lfm2_meta_write(w, hp, LFM2_WRITE_ALL) && gguf_set_u32(w, "general.quantization_version", 2);
    if (!wok) return fail(err, LFM2C_ENOMEM, "out of memory");
    return add_tokenizer(w, dir, hp, cfg, gen, st, err);
}

/* Every output tensor of the plan into the header (its type for want), counted in st; the
 * longest row into *max_row. */
static bool add_tensors(gguf_writer *w, plan *p, uint32_t want, convert_stats *st, int64_t *max_row, lfm2c_error *err) {
    *max_row = 1;
    for (int i = 0; i < p->n; i++) {
        out_tensor *o = &p->t[i];
        o->type = tensor_type(o, want);
        int64_t ne[4];
        for (int d = 0; d < o->n_dims; d++) ne[d] = o->shape[o->n_dims - 1 - d];
        if (ne[0] > *max_row) *max_row = ne[0];
        if (!gguf_add_tensor(w, o->name, o->type, (uint32_t)o->n_dims, ne, err)) return false;
        st->n_tensors++;
        st->n_by_type[o->type]++;
        int64_t numel = 1;
        for (int d = 0; d < o->n_dims; d++) numel *= o->shape[d];
        st->n_params += (uint64_t)numel;
        for (int s = 0; s < o->n_seg; s++) st->bytes_in += (uint64_t)o->segs[s].n * st_dtype_size(o->segs[s].t->dtype);
    }
    return true;
}

/* The writing's workers and buffers: a pool, one float row of scratch per thread and a chunk
 * of output (8 MB plus a row). */
typedef struct conv_run {
    threadpool *pool;
    float **scratch;
    uint8_t *buf;
    int nth;
    size_t chunk_bytes;
    uint64_t total, done_bytes;
    const convert_params *params;
} conv_run;

static bool run_open(conv_run *c, const convert_params *params, int64_t max_row, lfm2c_error *err) {
    *c = (conv_run){.chunk_bytes = 8u << 20, .params = params};
    int nth = params->n_threads > 0 ? params->n_threads : os_cpus_online();
    nth = nth < 1 ? 1 : nth > 64 ? 64 : nth;
    c->pool = threadpool_new(nth);
    c->nth = c->pool ? threadpool_size(c->pool) : 0;
    c->scratch = calloc((size_t)(c->nth > 0 ? c->nth : 1), sizeof *c->scratch);
    c->buf = malloc(c->chunk_bytes + (size_t)max_row * 4);
    if (!c->pool || !c->scratch || !c->buf) return fail(err, LFM2C_ENOMEM, "out of memory");
    for (int i = 0; i < c->nth; i++)
        if (!(c->scratch[i] = malloc((size_t)max_row * sizeof(float)))) return fail(err, LFM2C_ENOMEM, "out of memory");
    return true;
}

static void run_close(conv_run *c) {
    for (int i = 0; c->scratch && i < c->nth; i++) free(c->scratch[i]);
    free(c->scratch);
    free(c->buf);
    if (c->pool) threadpool_free(c->pool);
}

/* One output tensor's data, converted chunk by chunk on the pool and written in order. */
static bool write_tensor(conv_run *c, gguf_writer *w, const out_tensor *o, lfm2c_error *err) {
    int64_t ne0 = o->shape[o->n_dims - 1];
    size_t row_bytes = ggml_row_size(o->type, ne0);
    int64_t rows_per_chunk = (int64_t)(c->chunk_bytes / (row_bytes > (size_t)ne0 * 4 ? row_bytes : (size_t)ne0 * 4));
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    for (int s = 0; s < o->n_seg; s++) {
        const seg *sg = &o->segs[s];
        int64_t n_rows = sg->n / ne0;
        for (int64_t r = 0; r < n_rows; r += rows_per_chunk) {
            chunk_job j = {.s = sg,
                           .row0 = r,
                           .n_rows = n_rows - r < rows_per_chunk ? n_rows - r : rows_per_chunk,
                           .ne0 = ne0,
                           .type = o->type,
                           .row_bytes = row_bytes,
                           .out = c->buf,
                           .scratch = c->scratch};
            threadpool_run(c->pool, convert_rows, &j);
            if (!gguf_write_data(w, c->buf, (size_t)j.n_rows * row_bytes, err)) return false;
            c->done_bytes += (uint64_t)j.n_rows * row_bytes;
            if (c->params->progress) c->params->progress(c->params->progress_ud, c->done_bytes, c->total);
        }
    }
    return true;
}

/* After output i: the source pages no later output reads (a source can feed two outputs: fused
 * gate_up) are dropped from the resident set. */
static void release_sources(const plan *p, int i) {
    const out_tensor *o = &p->t[i];
    for (int s = 0; s < o->n_seg; s++) {
        bool later = false;
        for (int k = i + 1; k < p->n && !later; k++)
            for (int q = 0; q < p->t[k].n_seg && !later; q++) later = p->t[k].segs[q].t == o->segs[s].t;
        if (!later && (s == o->n_seg - 1 || o->segs[s + 1].t != o->segs[s].t)) release_pages(o->segs[s].t);
    }
}

bool convert_hf_to_gguf(const char *dir, const char *out_path, const convert_params *params, convert_stats *stats,
                        lfm2c_error *err) {
    double t0 = lfm2c_now_s();
    convert_stats st_local;
    convert_stats *st = stats ? stats : &st_local;
    memset(st, 0, sizeof *st);
    uint32_t want = params->out_type;
    if (want != GGML_F32 && want != GGML_F16 && want != GGML_BF16 && want != GGML_Q8_0)
        return fail(err, LFM2C_EINVAL, "unsupported output type %u (f32, f16, bf16, q8_0)", want);

    json_t *cfg = NULL, *gen = NULL;
    st_model *m = NULL;
    gguf_writer *w = NULL;
    plan p = {0};
    conv_run c = {0};
    bool ok = false;
    lfm2_hparams hp;
    int64_t max_row = 1;

    if (!load_json(dir, "config.json", true, &cfg, err) || !parse_config(cfg, &hp, err)) goto done;
    if (!load_json(dir, "generation_config.json", false, &gen, err)) gen = NULL; /* the reference ignores it */
    if (!(m = st_open_dir(dir, err)) || !build_plan(m, &hp, &p, err)) goto done;
    hp.file_type = convert_file_type(want);
    snprintf(st->arch, sizeof st->arch, "%s", lfm2_arch_name(hp.moe));
    if (!(w = gguf_writer_new())) {
        fail(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    if (!write_meta(w, dir, cfg, gen, &hp, st, err) || !add_tensors(w, &p, want, st, &max_row, err) ||
        !run_open(&c, params, max_row, err) || !gguf_writer_open(w, out_path, err))
        goto done;
    for (uint64_t i = 0; i < gguf_writer_n_tensors(w); i++) c.total += gguf_writer_tensor_nbytes(w, i);
    for (int i = 0; i < p.n; i++) {
        if (!write_tensor(&c, w, &p.t[i], err)) goto done;
        release_sources(&p, i);
    }
    if (!gguf_writer_finish(w, err)) goto done;
    st->bytes_out = gguf_writer_file_size(w);
    ok = true;
done:
    run_close(&c);
    gguf_writer_free(w); /* removes OUT.tmp if not finished */
    plan_free(&p);
    st_close(m);
    json_decref(cfg);
    json_decref(gen);
    st->seconds = lfm2c_now_s() - t0;
    return ok;
}
