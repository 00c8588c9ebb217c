/* quant_recipe.c — the file types `lfm2c quantize` offers and the per-tensor type recipe of each,
 * as llama-quantize chooses them (llama.cpp's llama_tensor_get_type): the tensors it never
 * quantizes, the output / token-embedding rules, the attn_v / ffn_down / attn_output bumps by file
 * type, layer, expert count, grouped-query ratio and whether an importance matrix is given, the
 * --tensor-type / --output-tensor-type / --token-embedding-type overrides, and the fallback of a
 * type whose blocks do not fit a row. A --tensor-type pattern is searched for in the tensor's name
 * (std::regex_search, as llama-quantize) by the engine's own regex engine (text/regex.h, ECMAScript
 * syntax as llama.cpp's std::regex): the same on every platform. */
#include "base/error.h"
#include "convert/quantize.h"
#include "formats/ggml_types.h"

#include "base/os.h"
#include "text/regex.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- file types -------------------------------------------------------------------------- */

static const quant_ftype FTYPES[] = {
    {"Q4_0", FTYPE_Q4_0, GGML_Q4_0},
    {"Q4_1", FTYPE_Q4_1, GGML_Q4_1},
    {"Q5_0", FTYPE_Q5_0, GGML_Q5_0},
    {"Q5_1", FTYPE_Q5_1, GGML_Q5_1},
    {"Q8_0", FTYPE_Q8_0, GGML_Q8_0},
    {"Q2_K", FTYPE_Q2_K, GGML_Q2_K},
    {"Q2_K_S", FTYPE_Q2_K_S, GGML_Q2_K},
    {"Q3_K_S", FTYPE_Q3_K_S, GGML_Q3_K},
    {"Q3_K_M", FTYPE_Q3_K_M, GGML_Q3_K},
    {"Q3_K_L", FTYPE_Q3_K_L, GGML_Q3_K},
    {"Q4_K_S", FTYPE_Q4_K_S, GGML_Q4_K},
    {"Q4_K_M", FTYPE_Q4_K_M, GGML_Q4_K},
    {"Q5_K_S", FTYPE_Q5_K_S, GGML_Q5_K},
    {"Q5_K_M", FTYPE_Q5_K_M, GGML_Q5_K},
    {"Q6_K", FTYPE_Q6_K, GGML_Q6_K},
    {"IQ4_NL", FTYPE_IQ4_NL, GGML_IQ4_NL},
    {"IQ4_XS", FTYPE_IQ4_XS, GGML_IQ4_XS},
    {"IQ3_XXS", FTYPE_IQ3_XXS, GGML_IQ3_XXS},
    {"IQ3_XS", FTYPE_IQ3_XS, GGML_IQ3_S},
    {"IQ3_S", FTYPE_IQ3_S, GGML_IQ3_S},
    {"IQ3_M", FTYPE_IQ3_M, GGML_IQ3_S},
    {"IQ2_XXS", FTYPE_IQ2_XXS, GGML_IQ2_XXS},
    {"IQ2_XS", FTYPE_IQ2_XS, GGML_IQ2_XS},
    {"IQ2_S", FTYPE_IQ2_S, GGML_IQ2_XS},
    {"IQ2_M", FTYPE_IQ2_M, GGML_IQ2_S},
    {"IQ1_S", FTYPE_IQ1_S, GGML_IQ1_S},
    {"IQ1_M", FTYPE_IQ1_M, GGML_IQ1_M},
    {"F16", FTYPE_F16, GGML_F16},
    {"BF16", FTYPE_BF16, GGML_BF16},
    {"F32", FTYPE_ALL_F32, GGML_F32},
    /* llama-quantize's aliases */
    {"Q3_K", FTYPE_Q3_K_M, GGML_Q3_K},
    {"Q4_K", FTYPE_Q4_K_M, GGML_Q4_K},
    {"Q5_K", FTYPE_Q5_K_M, GGML_Q5_K},
};

const quant_ftype *quant_ftype_find(const char *name) {
    for (size_t i = 0; i < sizeof FTYPES / sizeof FTYPES[0]; i++)
        if (!strcasecmp(name, FTYPES[i].name)) return &FTYPES[i];
    return NULL;
}

const char *quant_ftype_list(void) {
    return "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M (Q3_K), Q3_K_L, Q4_K_S, Q4_K_M (Q4_K), "
           "Q5_K_S, Q5_K_M (Q5_K), Q6_K, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_XS, IQ3_S, IQ3_M, IQ2_XXS, IQ2_XS, IQ2_S, "
           "IQ2_M, IQ1_S, IQ1_M, F16, BF16, F32";
}

/* ---- tensor categories ------------------------------------------------------------------- */

enum tcat {
    CAT_TOKEN_EMBD,
    CAT_ATTN_Q,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_QKV,
    CAT_ATTN_KV_B,
    CAT_ATTN_OUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN,
    CAT_OUTPUT,
    CAT_OTHER
};

static enum tcat category(const char *name) {
    if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight")) return CAT_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight")) return CAT_ATTN_QKV;
    if (strstr(name, "attn_kv_b.weight")) return CAT_ATTN_KV_B;
    if (strstr(name, "attn_v.weight")) return CAT_ATTN_V;
    if (strstr(name, "attn_k.weight")) return CAT_ATTN_K;
    if (strstr(name, "attn_q.weight")) return CAT_ATTN_Q;
    if (strstr(name, "attn_output.weight")) return CAT_ATTN_OUT;
    if (strstr(name, "ffn_up")) return CAT_FFN_UP;
    if (strstr(name, "ffn_gate")) return CAT_FFN_GATE;
    if (strstr(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

static bool is_attn_v_like(enum tcat c) { return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B; }

/* dims counted like the reference: trailing size-1 dims do not count */
static int n_dims_of(const quant_tensor_desc *t) {
    for (int i = 3; i >= 1; i--)
        if (t->ne[i] > 1) return i + 1;
    return 1;
}

static bool allows_quantization(const quant_tensor_desc *t, bool leave_output) {
    if (n_dims_of(t) < 2) return false;
    const char *n = t->name;
    size_t len = strlen(n);
    if (len < 6 || strcmp(n + len - 6, "weight")) return false;
    if (leave_output && !strcmp(n, "output.weight")) return false;
    static const char *never[] = {"_norm.weight",
                                  "ffn_gate_inp.weight",
                                  "shortconv.conv.weight",
                                  "ssm_conv1d",
                                  "attn_rel_b.weight",
                                  "position_embd",
                                  "token_types",
                                  "altup",
                                  "laurel",
                                  "per_layer_model_proj",
                                  "ffn_gate_tid2eid.weight"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(n, never[i])) return false;
    return true;
}

static bool is_quantized_type(uint32_t t) { return t != GGML_F32 && t != GGML_F16 && t != GGML_BF16; }

static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* ---- the recipe -------------------------------------------------------------------------- */

typedef struct recipe_state {
    int ft;
    const quant_recipe_opts *o;
    int n_attn_v, i_attn_v, i_ffn_down, i_ffn_gate, i_ffn_up;
    bool tied;
} recipe_state;

/* Layer of an FFN tensor: the counter for dense models, the name's block number with experts
 * (expert tensors need not come in layer order). */
static bool layer_of(const recipe_state *s, int counter, const char *name, int *layer, lfm2c_error *err) {
    if (s->o->n_expert <= 1) {
        *layer = counter;
        return true;
    }
    int l;
    if (sscanf(name, "blk.%d.", &l) != 1) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "cannot determine the layer of tensor '%s'", name);
        return false;
    }
    if (l < 0 || l >= s->o->n_layer) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': layer %d out of range [0, %d)", name, l, s->o->n_layer);
        return false;
    }
    *layer = l;
    return true;
}

static bool ft_in(int ft, const int *list, int n) {
    for (int i = 0; i < n; i++)
        if (list[i] == ft) return true;
    return false;
}
#define FT_IN(ft, ...) ft_in(ft, (const int[]){__VA_ARGS__}, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))

/* output.weight, and token_embd.weight when tied to it */
static uint32_t output_type(const recipe_state *s, const quant_tensor_desc *t, uint32_t nt) {
    if (s->o->output_type >= 0) return (uint32_t)s->o->output_type;
    if (t->ne[0] % ggml_type_get(nt)->block_size != 0) return GGML_Q8_0;
    if (FT_IN(s->ft, FTYPE_IQ2_XXS, FTYPE_IQ2_XS, FTYPE_IQ3_XXS, FTYPE_IQ1_S, FTYPE_IQ2_S, FTYPE_IQ2_M, FTYPE_IQ1_M))
        return GGML_Q5_K;
    return nt != GGML_Q8_0 ? GGML_Q6_K : nt;
}

static uint32_t token_embd_type(const recipe_state *s, uint32_t nt) {
    if (s->o->token_embd_type >= 0) return (uint32_t)s->o->token_embd_type;
    if (FT_IN(s->ft, FTYPE_IQ2_XXS, FTYPE_IQ2_XS, FTYPE_IQ1_S, FTYPE_IQ1_M)) return GGML_Q2_K;
    if (FT_IN(s->ft, FTYPE_IQ2_S, FTYPE_IQ2_M, FTYPE_IQ3_XXS)) return GGML_IQ3_S;
    return nt;
}

/* the 1.5-2.7 bit file types' rules for everything but output and embeddings */
static uint32_t low_bit_type(recipe_state *s, enum tcat cat, uint32_t nt) {
    const int ft = s->ft, n_expert = s->o->n_expert;
    const bool s_or_m = ft == FTYPE_IQ2_S || ft == FTYPE_IQ2_M;
    if (is_attn_v_like(cat)) {
        if (s->o->n_gqa >= 4 || n_expert >= 4) nt = GGML_Q4_K;
        else nt = s_or_m ? GGML_IQ3_S : GGML_Q2_K;
        s->i_attn_v++;
    } else if (n_expert == 8 && cat == CAT_ATTN_K) {
        nt = GGML_Q4_K;
    } else if (cat == CAT_FFN_DOWN) {
        if (s->i_ffn_down < s->o->n_layer / 8) nt = s_or_m ? GGML_IQ3_S : GGML_Q2_K;
        s->i_ffn_down++;
    } else if (cat == CAT_ATTN_OUT) {
        if (n_expert == 8) nt = GGML_Q5_K;
        else if (ft == FTYPE_IQ1_S || ft == FTYPE_IQ1_M) nt = GGML_IQ2_XXS;
        else if (s_or_m) nt = GGML_IQ3_S;
    }
    return nt;
}

static uint32_t attn_v_type(recipe_state *s, uint32_t nt) {
    const int ft = s->ft, gqa = s->o->n_gqa;
    if (ft == FTYPE_Q2_K) nt = gqa >= 4 ? GGML_Q4_K : GGML_Q3_K;
    else if (ft == FTYPE_Q2_K_S && gqa >= 4) nt = GGML_Q4_K;
    else if (ft == FTYPE_IQ3_XXS) nt = gqa >= 4 ? GGML_Q4_K : !s->o->has_imatrix ? GGML_IQ3_S : GGML_IQ3_XXS;
    else if ((ft == FTYPE_IQ3_XS || ft == FTYPE_IQ3_S) && gqa >= 4) nt = GGML_Q4_K;
    else if (ft == FTYPE_IQ3_M) nt = GGML_Q4_K;
    else if (ft == FTYPE_Q3_K_M) nt = s->i_attn_v < 2 ? GGML_Q5_K : GGML_Q4_K;
    else if (ft == FTYPE_Q3_K_L) nt = GGML_Q5_K;
    else if ((ft == FTYPE_IQ4_NL || ft == FTYPE_IQ4_XS) && gqa >= 4) nt = GGML_Q5_K;
    else if ((ft == FTYPE_Q4_K_M || ft == FTYPE_Q5_K_M) && more_bits(s->i_attn_v, s->n_attn_v)) nt = GGML_Q6_K;
    else if (ft == FTYPE_Q4_K_S && s->i_attn_v < 4) nt = GGML_Q5_K;
    if (s->o->n_expert == 8) nt = GGML_Q8_0;
    s->i_attn_v++;
    return nt;
}

static uint32_t ffn_down_type(recipe_state *s, int il, uint32_t nt) {
    const int ft = s->ft, n = s->o->n_layer;
    const bool imat = s->o->has_imatrix;
    if (ft == FTYPE_Q2_K) nt = GGML_Q3_K;
    else if (ft == FTYPE_Q2_K_S) {
        if (il < n / 8) nt = GGML_Q4_K;
    } else if (ft == FTYPE_IQ3_XXS && !imat) nt = il < n / 8 ? GGML_Q4_K : GGML_Q3_K;
    else if (ft == FTYPE_Q3_K_M) nt = il < n / 16 ? GGML_Q5_K : GGML_Q4_K; /* not Falcon: always Q4_K after */
    else if (ft == FTYPE_IQ3_M && (il < n / 8 || (s->o->n_expert == 8 && more_bits(il, n)))) nt = GGML_Q4_K;
    else if (ft == FTYPE_Q3_K_L) nt = GGML_Q5_K;
    else if (ft == FTYPE_Q4_K_M) {
        if (more_bits(il, n)) nt = GGML_Q6_K;
    } else if (il < n / 8 && (ft == FTYPE_IQ4_NL || ft == FTYPE_IQ4_XS) && !imat) nt = GGML_Q5_K;
    else if (ft == FTYPE_Q5_K_M && more_bits(il, n)) nt = GGML_Q6_K;
    else if (ft == FTYPE_Q4_K_S && il < n / 8) nt = GGML_Q5_K;
    else if ((ft == FTYPE_Q4_0 || ft == FTYPE_Q5_0) && imat && il < n / 8)
        nt = ft == FTYPE_Q4_0 ? GGML_Q4_1 : GGML_Q5_1;
    return nt;
}

static uint32_t attn_out_type(const recipe_state *s, uint32_t nt) {
    const int ft = s->ft;
    if (s->o->n_expert == 8) {
        if (FT_IN(ft, FTYPE_Q2_K, FTYPE_IQ3_XS, FTYPE_IQ3_XXS, FTYPE_Q3_K_S, FTYPE_Q3_K_M, FTYPE_IQ4_NL, FTYPE_Q4_K_S,
                  FTYPE_Q4_K_M, FTYPE_IQ3_S, FTYPE_IQ3_M, FTYPE_IQ4_XS))
            nt = GGML_Q5_K;
    } else if (ft == FTYPE_Q2_K) nt = GGML_Q3_K;
    else if (ft == FTYPE_IQ3_XXS) nt = GGML_IQ3_S;
    else if (ft == FTYPE_Q3_K_M || ft == FTYPE_IQ3_M) nt = GGML_Q4_K;
    else if (ft == FTYPE_Q3_K_L) nt = GGML_Q5_K;
    return nt;
}

/* llama_tensor_get_type_impl: the type of a quantizable tensor of category cat */
static bool mix_type(recipe_state *s, const quant_tensor_desc *t, enum tcat cat, uint32_t *type, lfm2c_error *err) {
    const int ft = s->ft;
    uint32_t nt = *type;
    int il;
    if (cat == CAT_OUTPUT || (s->tied && cat == CAT_TOKEN_EMBD)) nt = output_type(s, t, nt);
    else if (cat == CAT_TOKEN_EMBD) nt = token_embd_type(s, nt);
    else if (FT_IN(ft, FTYPE_IQ2_XXS, FTYPE_IQ2_XS, FTYPE_IQ1_S, FTYPE_IQ2_S, FTYPE_IQ2_M, FTYPE_IQ1_M))
        nt = low_bit_type(s, cat, nt);
    else if (is_attn_v_like(cat)) nt = attn_v_type(s, nt);
    else if (cat == CAT_ATTN_K) {
        if (s->o->n_expert == 8) nt = GGML_Q8_0;
        else if (ft == FTYPE_IQ3_XS) nt = GGML_IQ3_XXS;
        else if (ft == FTYPE_IQ3_XXS) nt = GGML_IQ2_S;
    } else if (cat == CAT_ATTN_Q) {
        if (ft == FTYPE_IQ3_XS) nt = GGML_IQ3_XXS;
        else if (ft == FTYPE_IQ3_XXS) nt = GGML_IQ2_S;
    } else if (cat == CAT_FFN_DOWN) {
        if (!layer_of(s, s->i_ffn_down, t->name, &il, err)) return false;
        nt = ffn_down_type(s, il, nt);
        s->i_ffn_down++;
    } else if (cat == CAT_ATTN_OUT) nt = attn_out_type(s, nt);
    else if (cat == CAT_ATTN_QKV) {
        if (ft == FTYPE_Q3_K_M || ft == FTYPE_Q3_K_L || ft == FTYPE_IQ3_M) nt = GGML_Q4_K;
        else if (ft == FTYPE_Q4_K_M) nt = GGML_Q5_K;
        else if (ft == FTYPE_Q5_K_M) nt = GGML_Q6_K;
    } else if (cat == CAT_FFN_GATE || cat == CAT_FFN_UP) {
        int *counter = cat == CAT_FFN_GATE ? &s->i_ffn_gate : &s->i_ffn_up;
        if (!layer_of(s, *counter, t->name, &il, err)) return false;
        const int n = s->o->n_layer;
        if (ft == FTYPE_IQ3_XS && il >= n / 8 && il < 7 * n / 8) nt = GGML_IQ3_XXS;
        (*counter)++;
    }
    *type = nt;
    return true;
}

/* A type whose rows are not whole blocks of it falls back to its row's fallback type (the type
 * table's, llama-quantize's), and to F16 when those do not fit either. */
static bool fallback(const quant_tensor_desc *t, uint32_t *type, lfm2c_error *err) {
    const ggml_type_info *ti = ggml_type_get(*type);
    if (t->ne[0] % ti->block_size == 0) return true;
    uint32_t nt = ti->fallback;
    if (nt == GGML_F32) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': rows of %lld weights do not fit %s blocks", t->name,
                        (long long)t->ne[0], ti->name);
        return false;
    }
    if (t->ne[0] % ggml_type_get(nt)->block_size) nt = GGML_F16;
    *type = nt;
    return true;
}

/* llama-quantize's tensor_requires_imatrix */
static bool requires_imatrix(const char *name, uint32_t type, int ft) {
    if (category(name) == CAT_TOKEN_EMBD || category(name) == CAT_OUTPUT) return false;
    if (type == GGML_Q2_K) return ft == FTYPE_Q2_K_S;
    return (ggml_type_get(type)->flags & GGML_TF_IMATRIX) != 0;
}

/* The first --tensor-type rule matching the name, or -1. */
static int override_of(regex_dfa *const *re, const quant_recipe_opts *o, const char *name) {
    for (int i = 0; i < o->n_overrides; i++) {
        int st = 0;
        for (const char *c = name; *c && st >= 0; c++) st = regex_dfa_next(re[i], st, (unsigned char)*c);
        if (st >= 0 && re[i]->accept[st]) return i;
    }
    return -1;
}

/* llama_tensor_get_type for tensor t (quantizable) */
static bool tensor_type(recipe_state *s, regex_dfa *const *re, const quant_tensor_desc *t, uint32_t def, uint32_t *out,
                        lfm2c_error *err) {
    const enum tcat cat = category(t->name);
    if (s->o->token_embd_type >= 0 && cat == CAT_TOKEN_EMBD) return *out = (uint32_t)s->o->token_embd_type, true;
    if (s->o->output_type >= 0 && cat == CAT_OUTPUT) return *out = (uint32_t)s->o->output_type, true;
    uint32_t type = def;
    if (is_quantized_type(def)) {
        const int k = override_of(re, s->o, t->name);
        if (k >= 0) type = s->o->overrides[k].type;
        else if (!mix_type(s, t, cat, &type, err)) return false;
        if (!fallback(t, &type, err)) return false;
    }
    *out = type;
    return true;
}

static bool compile_overrides(const quant_recipe_opts *o, regex_dfa **re, lfm2c_error *err) {
    regex_budget budget = {REGEX_BUDGET, NULL};
    for (int i = 0; i < o->n_overrides; i++) {
        char lower[256];
        size_t n = strlen(o->overrides[i].pattern);
        if (n >= sizeof lower) n = sizeof lower - 1;
        for (size_t j = 0; j < n; j++) lower[j] = (char)tolower((unsigned char)o->overrides[i].pattern[j]);
        lower[n] = 0;
        lfm2c_error e = {0};
        if (!(re[i] = regex_compile(lower, n, &e, &budget)))
            return lfm2c_set_error(err, LFM2C_EINVAL, "--tensor-type: bad pattern '%s': %s", o->overrides[i].pattern,
                                   budget.left < 0 ? "too costly to compile" : e.msg),
                   false;
    }
    return true;
}

bool quant_recipe_ex(const quant_ftype *ft, const quant_recipe_opts *o, const quant_tensor_desc *t, int n,
                     uint32_t *out_types, bool *needs_imatrix, lfm2c_error *err) {
    recipe_state s = {.ft = ft->id, .o = o, .tied = true};
    for (int i = 0; i < n; i++) {
        enum tcat c = category(t[i].name);
        if (is_attn_v_like(c)) s.n_attn_v++;
        if (c == CAT_OUTPUT) s.tied = false;
    }
    regex_dfa **re = calloc((size_t)(o->n_overrides > 0 ? o->n_overrides : 1), sizeof *re);
    if (!re) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), false;
    bool ok = compile_overrides(o, re, err);
    for (int i = 0; ok && i < n; i++) {
        const bool q = allows_quantization(&t[i], o->leave_output);
        out_types[i] = t[i].type;
        if (q) ok = tensor_type(&s, re, &t[i], ft->default_type, &out_types[i], err);
        if (needs_imatrix) needs_imatrix[i] = q && requires_imatrix(t[i].name, out_types[i], ft->id);
    }
    for (int i = 0; i < o->n_overrides; i++) regex_dfa_free(re[i]);
    free(re);
    return ok;
}

bool quant_recipe(const quant_ftype *ft, int n_layer, int n_expert, const quant_tensor_desc *t, int n,
                  uint32_t *out_types, lfm2c_error *err) {
    quant_recipe_opts o = {.n_layer = n_layer, .n_expert = n_expert, .output_type = -1, .token_embd_type = -1};
    return quant_recipe_ex(ft, &o, t, n, out_types, NULL, err);
}

int quant_tensor_order_cmp(const char *a, const char *b) {
    int la = -1, lb = -1;
    sscanf(a, "blk.%d.", &la);
    sscanf(b, "blk.%d.", &lb);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}
