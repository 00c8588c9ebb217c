/* lora.c — LoRA adapters (lora.h): loading PEFT folders and GGUF adapters into one form (float
 * A and B per adapted matrix, every shape checked against the model), the public functions of
 * lfm2c.h (load, free, attach to a session), and the run-time hook of the CPU forward.
 *
 * PEFT facts used: tensors "base_model.model.<module>.lora_A.weight" [r, in] and ".lora_B.weight"
 * [out, r] in adapter_model.safetensors; adapter_config.json's r, lora_alpha, use_rslora,
 * rank_pattern / alpha_pattern (keys matched as PEFT does: the module name ends with the key at
 * a dot), target_modules. GGUF facts (llama.cpp's adapters): general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha (absent or 0: scale 1), "<base tensor>.lora_a"
 * ne [in, r(, experts)] and ".lora_b" ne [r, out(, experts)], scale alpha / r. */
#include "core/lora.h"
#include "cpu/matmul.h"
#include "core/backend.h"
#include "base/error.h"
#include "core/session.h"
#include "formats/ggml_types.h"
#include "formats/safetensors.h"
#include "cpu/backend_cpu.h"

#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool lora_target_ok(int id) {
    switch (id) {
    case LFM2_T_CONV_IN:
    case LFM2_T_CONV_OUT:
    case LFM2_T_Q:
    case LFM2_T_K:
    case LFM2_T_V:
    case LFM2_T_O:
    case LFM2_T_GATE:
    case LFM2_T_UP:
    case LFM2_T_DOWN:
    case LFM2_T_GATE_EXPS:
    case LFM2_T_UP_EXPS:
    case LFM2_T_DOWN_EXPS: return true;
    default: return false;
    }
}

const lora_mat *lora_get(const struct lfm2c_lora *lo, int l, int id) {
    if (!lo || l < 0 || l >= lo->n_layer || id < 0 || id >= LFM2_T_COUNT) return NULL;
    const lora_mat *mt = &lo->mats[(size_t)l * LFM2_T_COUNT + id];
    return mt->r ? mt : NULL;
}

void lfm2c_lora_free(lfm2c_lora *lo) {
    if (!lo) return;
    for (int i = 0; lo->mats && i < lo->n_layer * LFM2_T_COUNT; i++) {
        free(lo->mats[i].a);
        free(lo->mats[i].bt);
    }
    free(lo->mats);
    free(lo);
}

int lfm2c_lora_n_matrices(const lfm2c_lora *lo) { return lo ? lo->n_mats : 0; }

/* ---- building an adapter: one (layer, tensor) matrix at a time ------------------------------ */

/* The model's tensor of row id in layer l, or NULL when the layer has none. */
const tensor *lora_base_tensor(const lfm2c_model *m, int l, int id) {
    if (l < 0 || l >= m->info.n_layer) return NULL;
    const layer *L = &m->layers[l];
    const tensor *t = NULL;
    switch (id) {
    case LFM2_T_CONV_IN: t = &L->conv_in; break;
    case LFM2_T_CONV_OUT: t = &L->conv_out; break;
    case LFM2_T_Q: t = &L->wq; break;
    case LFM2_T_K: t = &L->wk; break;
    case LFM2_T_V: t = &L->wv; break;
    case LFM2_T_O: t = &L->wo; break;
    case LFM2_T_GATE: t = &L->ffn_gate; break;
    case LFM2_T_UP: t = &L->ffn_up; break;
    case LFM2_T_DOWN: t = &L->ffn_down; break;
    case LFM2_T_GATE_EXPS: t = &L->gate_exps; break;
    case LFM2_T_UP_EXPS: t = &L->up_exps; break;
    case LFM2_T_DOWN_EXPS: t = &L->down_exps; break;
    default: return NULL;
    }
    return t->data ? t : NULL;
}

lfm2c_lora *lora_new(const lfm2c_model *m) {
    lfm2c_lora *lo = calloc(1, sizeof *lo);
    if (!lo) return NULL;
    lo->n_layer = m->info.n_layer;
    snprintf(lo->arch, sizeof lo->arch, "%s", m->info.arch);
    lo->mats = calloc((size_t)lo->n_layer * LFM2_T_COUNT, sizeof(lora_mat));
    if (!lo->mats) {
        free(lo);
        return NULL;
    }
    return lo;
}

/* Claims the matrix of (l, id) with rank r (every expert of it), checking that the model has such
 * a tensor; `what` names it in messages. A second call for the same matrix (another expert of a
 * PEFT expert list) must agree on the rank. */
lora_mat *lora_claim(lfm2c_lora *lo, const lfm2c_model *m, int l, int id, int r, float scale, const char *what,
                     lfm2c_error *err) {
    if (!lora_target_ok(id)) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                        "adapter tensor '%s': %s is not a module LoRA can adapt here "
                        "(conv in/out, attention q/k/v/out, FFN w1/w2/w3, expert w1/w2/w3)",
                        what, LFM2_TENSORS[id].gguf);
        return NULL;
    }
    const tensor *w = lora_base_tensor(m, l, id);
    if (!w) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "adapter tensor '%s': the model has no %s in layer %d (adapter made for another base?)", what,
                        LFM2_TENSORS[id].gguf, l);
        return NULL;
    }
    if (r < 1 || r > LORA_MAX_RANK) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "adapter tensor '%s': rank %d (supported 1..%d)", what, r,
                        LORA_MAX_RANK);
        return NULL;
    }
    lora_mat *mt = &lo->mats[(size_t)l * LFM2_T_COUNT + id];
    if (mt->r) {
        if (mt->r != r) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "adapter tensor '%s': rank %d, but other experts of it have rank %d",
                            what, r, mt->r);
            return NULL;
        }
        return mt;
    }
    mt->r = r;
    mt->n_exp = (int)w->ne[2];
    mt->n_in = w->ne[0];
    mt->n_out = w->ne[1];
    mt->scale = scale;
    size_t na = (size_t)mt->n_exp * r * mt->n_in, nb = (size_t)mt->n_exp * r * mt->n_out;
    mt->a = calloc(na, sizeof(float));
    mt->bt = calloc(nb, sizeof(float));
    if (!mt->a || !mt->bt) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for adapter tensor '%s'", what);
        return NULL;
    }
    lo->bytes += (na + nb) * sizeof(float);
    lo->n_mats++;
    return mt;
}

/* Checks one side's dims (in GGUF order: ne[0] fastest) against what the base wants. */
static int want_dims(const char *what, const int64_t *ne, int n_dims, int64_t d0, int64_t d1, int64_t d2,
                     lfm2c_error *err) {
    int64_t want[3] = {d0, d1, d2};
    bool ok = n_dims <= 3;
    for (int i = 0; i < 3 && ok; i++) ok = (i < n_dims ? ne[i] : 1) == want[i];
    if (!ok) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "adapter tensor '%s' has shape [%lld, %lld, %lld], the base wants [%lld, %lld, %lld]"
                        " (adapter made for another base?)",
                        what, (long long)ne[0], (long long)(n_dims > 1 ? ne[1] : 1),
                        (long long)(n_dims > 2 ? ne[2] : 1), (long long)d0, (long long)d1, (long long)d2);
        return -1;
    }
    return 0;
}

/* Every matrix that has A has B and the other way round (all experts of it). seen[slot * ne + e]:
 * bit 0 A read, bit 1 B read. */
static int seen_stride(const lfm2c_model *m) { return m->info.n_expert > 0 ? m->info.n_expert : 1; }

static int check_pairs(const lfm2c_lora *lo, const unsigned char *seen, int ne, lfm2c_error *err) {
    for (int i = 0; i < lo->n_layer * LFM2_T_COUNT; i++) {
        const lora_mat *mt = &lo->mats[i];
        if (!mt->r) continue;
        for (int e = 0; e < mt->n_exp; e++) {
            unsigned char s = seen[(size_t)i * ne + (size_t)e];
            if (s == 3) continue;
            char name[96];
            lfm2_tensor_name(&LFM2_TENSORS[i % LFM2_T_COUNT], i / LFM2_T_COUNT, false, name, sizeof name);
            if (mt->n_exp > 1)
                lfm2c_set_error(err, LFM2C_EFORMAT, "adapter is missing %s of %s, expert %d",
                                s & 1 ? "lora_b" : "lora_a", name, e);
            else lfm2c_set_error(err, LFM2C_EFORMAT, "adapter is missing %s of %s", s & 1 ? "lora_b" : "lora_a", name);
            return -1;
        }
    }
    return 0;
}

/* ---- GGUF adapters ------------------------------------------------------------------------- */

static char *gguf_str_or(const gguf_file *g, const char *key) { return gguf_get_string(g, key); }

static int load_gguf(lfm2c_lora *lo, const lfm2c_model *m, const char *path, lfm2c_error *err) {
    gguf_file *g = gguf_open(path, err);
    if (!g) return -1;
    int rc = -1;
    unsigned char *seen = NULL;
    char *type = gguf_str_or(g, "general.type"), *atype = gguf_str_or(g, "adapter.type");
    char *arch = gguf_str_or(g, "general.architecture");
    if (!type || strcmp(type, "adapter") || !atype || strcmp(atype, "lora")) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "%s is not a LoRA adapter (general.type '%s', adapter.type '%s'; want 'adapter', 'lora')", path,
                        type ? type : "", atype ? atype : "");
        goto done;
    }
    if (!arch || strcmp(arch, m->info.arch)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s adapts architecture '%s', the model is '%s'", path, arch ? arch : "",
                        m->info.arch);
        goto done;
    }
    double alpha = 0;
    gguf_get_float(g, "adapter.lora.alpha", &alpha);
    seen = calloc((size_t)lo->n_layer * LFM2_T_COUNT * seen_stride(m), 1);
    if (!seen) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    for (int pass = 0; pass < 2; pass++) /* B first (it gives the rank and the scale), then A */
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            size_t len = strlen(t->name);
            bool is_a = len > 7 && !strcmp(t->name + len - 7, ".lora_a"),
                 is_b = len > 7 && !strcmp(t->name + len - 7, ".lora_b");
            if (!is_a && !is_b) {
                lfm2c_set_error(err, LFM2C_EFORMAT, "%s: tensor '%s' is not a LoRA tensor (.lora_a / .lora_b)", path,
                                t->name);
                goto done;
            }
            if (is_a != (pass == 1)) continue;
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(len - 7), t->name);
            int l;
            const lfm2_tensor *row = lfm2_tensor_by_gguf(base, &l);
            if (!row || l < 0 || l >= lo->n_layer) {
                lfm2c_set_error(err, row ? LFM2C_EFORMAT : LFM2C_EUNSUPPORTED, "%s: adapter tensor '%s' names %s", path,
                                t->name, row ? "a layer the model does not have" : "no module LoRA can adapt here");
                goto done;
            }
            const ggml_type_info *ti = ggml_type_get(t->type);
            if (!ti || !ti->supported || t->ne[3] != 1) {
                lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: adapter tensor '%s' has an unsupported type or shape",
                                path, t->name);
                goto done;
            }
            const int id = (int)row->id;
            lora_mat *mt;
            if (is_b) {
                const float r = (float)t->ne[0];
                mt = lora_claim(lo, m, l, id, (int)t->ne[0], alpha ? (float)(alpha / r) : 1.0f, t->name, err);
                if (!mt || want_dims(t->name, t->ne, (int)t->n_dims, mt->r, mt->n_out, mt->n_exp, err)) goto done;
            } else {
                mt = (lora_mat *)lora_get(lo, l, id);
                if (!mt) {
                    lfm2c_set_error(err, LFM2C_EFORMAT, "%s: adapter is missing %s.lora_b", path, base);
                    goto done;
                }
                if (t->ne[1] != mt->r && t->ne[0] == mt->n_in) {
                    lfm2c_set_error(err, LFM2C_EFORMAT, "%s: %s has rank %lld but %s.lora_b rank %d", path, t->name,
                                    (long long)t->ne[1], base, mt->r);
                    goto done;
                }
                if (want_dims(t->name, t->ne, (int)t->n_dims, mt->n_in, mt->r, mt->n_exp, err)) goto done;
            }
            const size_t rb = ggml_row_size(t->type, t->ne[0]);
            const int64_t rows = t->ne[1] * t->ne[2];
            float *tmp = is_b ? malloc(sizeof(float) * (size_t)t->ne[0]) : NULL;
            if (is_b && !tmp) {
                lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
                goto done;
            }
            for (int64_t rr = 0; rr < rows; rr++) {
                if (is_a) {
                    dequantize_row(t->type, t->data + rr * rb, mt->a + rr * mt->n_in, mt->n_in);
                    continue;
                }
                /* B row o of expert e (r values) -> column o of bt[e] */
                const int64_t e = rr / mt->n_out, o = rr % mt->n_out;
                dequantize_row(t->type, t->data + rr * rb, tmp, mt->r);
                for (int j = 0; j < mt->r; j++) mt->bt[((size_t)e * mt->r + j) * mt->n_out + o] = tmp[j];
            }
            free(tmp);
            for (int e = 0; e < mt->n_exp; e++)
                seen[((size_t)l * LFM2_T_COUNT + id) * seen_stride(m) + e] |= is_a ? 1 : 2;
        }
    if (!lo->n_mats) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: the adapter has no tensors", path);
        goto done;
    }
    rc = check_pairs(lo, seen, seen_stride(m), err);
done:
    free(seen);
    free(type);
    free(atype);
    free(arch);
    gguf_close(g);
    return rc;
}

/* ---- PEFT folders --------------------------------------------------------------------------- */

typedef struct peft_config {
    int r;
    double alpha;
    bool rslora;
    json_t *rank_pattern, *alpha_pattern, *targets, *layers;
} peft_config;

/* PEFT's pattern rule: key matches module name when the name is key or ends with "." + key
 * (key is a regular expression). */
static bool pattern_match(const char *key, const char *module) {
    char *re = malloc(strlen(key) + 16);
    if (!re) return false;
    sprintf(re, "^(.*\\.)?(%s)$", key);
    regex_t rx;
    bool hit = false;
    if (!regcomp(&rx, re, REG_EXTENDED | REG_NOSUB)) {
        hit = !regexec(&rx, module, 0, NULL, 0);
        regfree(&rx);
    }
    free(re);
    return hit;
}

static bool pattern_value(json_t *patterns, const char *module, double *v) {
    const char *key;
    json_t *val;
    if (!json_is_object(patterns)) return false;
    json_object_foreach(patterns, key, val) if (json_is_number(val) && pattern_match(key, module)) {
        *v = json_number_value(val);
        return true;
    }
    return false;
}

static int read_config(const char *dir, peft_config *c, json_t **root, lfm2c_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j || !json_is_object(j)) {
        lfm2c_set_error(err, j ? LFM2C_EFORMAT : LFM2C_EIO, "%s: %s", path, j ? "not a JSON object" : je.text);
        json_decref(j);
        return -1;
    }
    *root = j;
    const char *pt = json_string_value(json_object_get(j, "peft_type"));
    if (pt && strcmp(pt, "LORA")) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: peft_type '%s' (only LORA adapters are supported)", path, pt);
        return -1;
    }
    if (json_is_true(json_object_get(j, "use_dora"))) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: DoRA adapters (use_dora) are not supported", path);
        return -1;
    }
    if (json_is_true(json_object_get(j, "fan_in_fan_out"))) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                        "%s: fan_in_fan_out adapters are not supported (LFM2's projections are Linear)", path);
        return -1;
    }
    json_t *r = json_object_get(j, "r"), *a = json_object_get(j, "lora_alpha");
    if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > LORA_MAX_RANK ||
        !json_is_number(a)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: needs an integer r (1..%d) and a number lora_alpha", path,
                        LORA_MAX_RANK);
        return -1;
    }
    c->r = (int)json_integer_value(r);
    c->alpha = json_number_value(a);
    c->rslora = json_is_true(json_object_get(j, "use_rslora"));
    c->rank_pattern = json_object_get(j, "rank_pattern");
    c->alpha_pattern = json_object_get(j, "alpha_pattern");
    c->targets = json_object_get(j, "target_modules");
    c->layers = json_object_get(j, "layers_to_transform");
    return 0;
}

/* "base_model.model.model.layers.N.<module>.lora_A.weight" -> layer, row, expert, side */
static const lfm2_tensor *peft_name(const char *name, int *l, int *expert, bool *is_a, char *module, size_t mcap) {
    const char *pre = "base_model.model.model.layers.";
    size_t pl = strlen(pre), len = strlen(name);
    const char *sa = ".lora_A.weight", *sb = ".lora_B.weight";
    size_t sl = strlen(sa);
    if (strncmp(name, pre, pl) || len <= pl + sl) return NULL;
    if (!strcmp(name + len - sl, sa)) *is_a = true;
    else if (!strcmp(name + len - sl, sb)) *is_a = false;
    else return NULL;
    int nc = 0;
    if (sscanf(name + pl, "%d.%n", l, &nc) != 1 || nc <= 0) return NULL;
    const char *mod = name + pl + nc;
    size_t ml = len - sl - (size_t)(mod - name);
    snprintf(module, mcap, "model.layers.%d.%.*s", *l, (int)ml, mod);
    /* experts: "feed_forward.experts.E.w1" -> "feed_forward.experts.*.w1" */
    char hf[160];
    *expert = -1;
    const char *ex = "feed_forward.experts.";
    size_t el = strlen(ex);
    if (ml > el && !strncmp(mod, ex, el)) {
        int e, n2 = 0;
        if (sscanf(mod + el, "%d.%n", &e, &n2) != 1 || n2 <= 0 || e < 0 || e >= 4096) return NULL;
        *expert = e;
        snprintf(hf, sizeof hf, "%s*.%.*s.weight", ex, (int)(ml - el - (size_t)n2), mod + el + n2);
    } else {
        snprintf(hf, sizeof hf, "%.*s.weight", (int)ml, mod);
    }
    return lfm2_tensor_by_hf(hf, true);
}

/* The module's effective scale from the config and its patterns. */
static float peft_scale(const peft_config *c, const char *module, int *rank) {
    double r = c->r, alpha = c->alpha;
    pattern_value(c->rank_pattern, module, &r);
    pattern_value(c->alpha_pattern, module, &alpha);
    *rank = (int)r;
    return (float)(c->rslora ? alpha / sqrt(r) : alpha / r);
}

/* Leaf name of a row's HF module ("self_attn.q_proj.weight" -> "q_proj"). */
static void hf_leaf(const lfm2_tensor *row, char *out, size_t cap) {
    const char *s = row->hf;
    const char *end = strstr(s, ".weight");
    size_t n = end ? (size_t)(end - s) : strlen(s);
    const char *dot = s;
    for (const char *p = s; p < s + n; p++)
        if (*p == '.') dot = p + 1;
    snprintf(out, cap, "%.*s", (int)(s + n - dot), dot);
}

/* With target_modules a list (and every layer transformed), each dense module it names must be
 * in the file for every layer that has it. */
static int check_targets(const lfm2c_lora *lo, const lfm2c_model *m, const peft_config *c, const char *dir,
                         lfm2c_error *err) {
    if (!json_is_array(c->targets) || (c->layers && !json_is_null(c->layers))) return 0;
    size_t i;
    json_t *v;
    json_array_foreach(c->targets, i, v) {
        const char *want = json_string_value(v);
        bool known = false;
        for (int id = 0; want && id < LFM2_T_COUNT; id++) {
            if (!lora_target_ok(id)) continue;
            char leaf[64];
            hf_leaf(&LFM2_TENSORS[id], leaf, sizeof leaf);
            if (strcmp(leaf, want)) continue;
            known = true;
            if (LFM2_TENSORS[id].flags & LFM2_TF_EXPERTS) continue; /* experts: may be fused (not Linear) */
            for (int l = 0; l < lo->n_layer; l++)
                if (lora_base_tensor(m, l, id) && !lora_get(lo, l, id)) {
                    lfm2c_set_error(err, LFM2C_EFORMAT,
                                    "%s: target module '%s' has no tensors for layer %d (model.layers.%d.%.*s)", dir,
                                    want, l, l, (int)(strlen(LFM2_TENSORS[id].hf) - 7), LFM2_TENSORS[id].hf);
                    return -1;
                }
        }
        if (want && !known) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                            "%s: target module '%s' is not one LoRA can adapt in LFM2 "
                            "(in_proj, out_proj, q_proj, k_proj, v_proj, w1, w2, w3)",
                            dir, want);
            return -1;
        }
    }
    return 0;
}

static int load_peft(lfm2c_lora *lo, const lfm2c_model *m, const char *dir, lfm2c_error *err) {
    peft_config c = {0};
    json_t *root = NULL;
    st_model *st = NULL;
    unsigned char *seen = NULL;
    int rc = -1;
    if (read_config(dir, &c, &root, err)) goto done;
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!(st = st_open_file(path, err))) goto done;
    seen = calloc((size_t)lo->n_layer * LFM2_T_COUNT * seen_stride(m), 1);
    if (!seen) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    for (int pass = 0; pass < 2; pass++) /* A first (rank), then B */
        for (int i = 0; i < st->n_tensors; i++) {
            const st_tensor *t = &st->tensors[i];
            int l, e;
            bool is_a;
            char module[256];
            const lfm2_tensor *row = peft_name(t->name, &l, &e, &is_a, module, sizeof module);
            if (!row) {
                lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                                "%s: tensor '%s' is not a LoRA A/B matrix of a module LoRA can adapt in LFM2"
                                " (DoRA, embeddings, lm_head and biases are not supported)",
                                path, t->name);
                goto done;
            }
            if (is_a != (pass == 0)) continue;
            const bool stacked = (row->flags & LFM2_TF_EXPERTS) != 0;
            if (stacked != (e >= 0) || l < 0 || l >= lo->n_layer || !st_dtype_is_float(t->dtype) || t->n_dims != 2) {
                lfm2c_set_error(err, LFM2C_EFORMAT, "%s: tensor '%s' (%s, %d dims) does not fit the model", path,
                                t->name, st_dtype_name(t->dtype), t->n_dims);
                goto done;
            }
            int want_r;
            float scale = peft_scale(&c, module, &want_r);
            lora_mat *mt;
            if (is_a) {
                if (t->shape[0] != want_r) {
                    lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' has rank %lld, the config says %d", path, t->name,
                                    (long long)t->shape[0], want_r);
                    goto done;
                }
                if (!(mt = lora_claim(lo, m, l, (int)row->id, want_r, scale, t->name, err))) goto done;
            } else if (!(mt = (lora_mat *)lora_get(lo, l, (int)row->id))) {
                lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' has no lora_A", path, t->name);
                goto done;
            }
            if (e >= mt->n_exp) {
                lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' names expert %d of %d", path, t->name, e, mt->n_exp);
                goto done;
            }
            const int ee = e < 0 ? 0 : e;
            int64_t ne[2] = {t->shape[1], t->shape[0]}; /* GGUF order */
            if (is_a ? want_dims(t->name, ne, 2, mt->n_in, mt->r, 1, err)
                     : want_dims(t->name, ne, 2, mt->r, mt->n_out, 1, err))
                goto done;
            if (is_a) {
                st_read_f32(t, 0, t->numel, mt->a + (size_t)ee * mt->r * mt->n_in);
            } else {
                float row_b[LORA_MAX_RANK];
                float *bt = mt->bt + (size_t)ee * mt->r * mt->n_out;
                for (int64_t o = 0; o < mt->n_out; o++) {
                    st_read_f32(t, o * mt->r, mt->r, row_b);
                    for (int j = 0; j < mt->r; j++) bt[(size_t)j * mt->n_out + o] = row_b[j];
                }
            }
            seen[((size_t)l * LFM2_T_COUNT + row->id) * seen_stride(m) + ee] |= is_a ? 1 : 2;
        }
    if (!lo->n_mats) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: the adapter has no tensors", path);
        goto done;
    }
    if (check_pairs(lo, seen, seen_stride(m), err) || check_targets(lo, m, &c, dir, err)) goto done;
    rc = 0;
done:
    free(seen);
    st_close(st);
    json_decref(root);
    return rc;
}

lfm2c_lora *lfm2c_lora_load(const lfm2c_model *m, const char *path, lfm2c_error *err) {
    if (!m || !path) {
        lfm2c_set_error(err, LFM2C_EINVAL, "lfm2c_lora_load: NULL argument");
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb)) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot open adapter '%s'", path);
        return NULL;
    }
    lfm2c_lora *lo = lora_new(m);
    if (!lo) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    if (S_ISDIR(sb.st_mode) ? load_peft(lo, m, path, err) : load_gguf(lo, m, path, err)) {
        lfm2c_lora_free(lo);
        return NULL;
    }
    return lo;
}

/* ---- sessions ------------------------------------------------------------------------------- */

int lfm2c_session_set_lora(lfm2c_session *s, lfm2c_lora *const *loras, const float *scales, int n, lfm2c_error *err) {
    if (n < 0 || n > LFM2C_MAX_LORA || (n && (!loras || !scales))) {
        lfm2c_set_error(err, LFM2C_EINVAL, "a session takes 0..%d adapters", LFM2C_MAX_LORA);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!loras[i] || strcmp(loras[i]->arch, s->model->info.arch) || loras[i]->n_layer != s->model->info.n_layer) {
            lfm2c_set_error(err, LFM2C_EINVAL, "adapter %d was not loaded for this model", i);
            return -1;
        }
        if (!isfinite(scales[i])) {
            lfm2c_set_error(err, LFM2C_EINVAL, "adapter %d: scale is not finite", i);
            return -1;
        }
    }
    if (n && s->model->backend->device != LFM2C_DEVICE_CPU) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "LoRA adapters run on the CPU backend only");
        return -1;
    }
    bool same = n == s->n_lora;
    for (int i = 0; same && i < n; i++) same = s->lora[i] == loras[i] && s->lora_scale[i] == scales[i];
    if (same) return 0;
    for (int i = 0; i < n; i++) {
        s->lora[i] = loras[i];
        s->lora_scale[i] = scales[i];
    }
    s->n_lora = n;
    lfm2c_session_reset(s); /* what it holds was computed with other weights */
    return 0;
}

/* ---- run time ------------------------------------------------------------------------------- */

/* 8 partial sums: the compiler vectorizes it (one chain would cost a few cycles a value) */
static float dot(const float *a, const float *b, int64_t n) {
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) p[k] += a[i + k] * b[i + k];
    for (; i < n; i++) p[0] += a[i] * b[i];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

typedef struct lora_job {
    const fwd_token *toks;
    int id, l, expert;
    const float *x;
    size_t ldx;
    const int *xrow, *tok;
    int n;
    float *y;
    size_t ldy;
} lora_job;

static void lora_rows(const lora_job *j, int i0, int i1) {
    float ax[LORA_MAX_RANK];
    for (int i = i0; i < i1; i++) {
        const struct lfm2c_session *s = j->toks[j->tok ? j->tok[i] : i].seq;
        const float *x = j->x + (size_t)(j->xrow ? j->xrow[i] : i) * j->ldx;
        float *y = j->y + (size_t)i * j->ldy;
        for (int k = 0; k < s->n_lora; k++) {
            const lora_mat *mt = lora_get(s->lora[k], j->l, j->id);
            const float sc = s->lora_scale[k] * (mt ? mt->scale : 0);
            if (!mt || sc == 0) continue;
            const float *a = mt->a + (size_t)j->expert * mt->r * mt->n_in;
            const float *bt = mt->bt + (size_t)j->expert * mt->r * mt->n_out;
            for (int q = 0; q < mt->r; q++) ax[q] = sc * dot(a + (size_t)q * mt->n_in, x, mt->n_in);
            for (int q = 0; q < mt->r; q++) {
                const float c = ax[q], *b = bt + (size_t)q * mt->n_out;
                for (int64_t o = 0; o < mt->n_out; o++) y[o] += c * b[o];
            }
        }
    }
}

static void lora_worker(void *arg, int ith, int nth) {
    const lora_job *j = arg;
    lora_rows(j, j->n * ith / nth, j->n * (ith + 1) / nth);
}

/* One row, one adapter, over the pool (decode: a row or two, big matrices): A x split by rank
 * components, then y += B (A x) split by output blocks. Each output sums the components in the
 * same order as lora_rows does, so the result is the same bits. */
typedef struct lora_vec {
    const lora_mat *mt;
    int expert;
    float sc;
    const float *x;
    float *ax, *y;
} lora_vec;

static void vec_ax(void *arg, int ith, int nth) {
    const lora_vec *v = arg;
    const lora_mat *mt = v->mt;
    const float *a = mt->a + (size_t)v->expert * mt->r * mt->n_in;
    for (int q = mt->r * ith / nth; q < mt->r * (ith + 1) / nth; q++)
        v->ax[q] = v->sc * dot(a + (size_t)q * mt->n_in, v->x, mt->n_in);
}

static void vec_by(void *arg, int ith, int nth) {
    const lora_vec *v = arg;
    const lora_mat *mt = v->mt;
    const int64_t nb = (mt->n_out + 15) / 16, o0 = nb * ith / nth * 16, o1e = nb * (ith + 1) / nth * 16;
    const int64_t o1 = o1e < mt->n_out ? o1e : mt->n_out;
    const float *bt = mt->bt + (size_t)v->expert * mt->r * mt->n_out;
    for (int q = 0; q < mt->r; q++) {
        const float c = v->ax[q], *b = bt + (size_t)q * mt->n_out;
        for (int64_t o = o0; o < o1; o++) v->y[o] += c * b[o];
    }
}

static void lora_rows_pool(lfm2c_model *m, const lora_job *j) {
    float ax[LORA_MAX_RANK];
    for (int i = 0; i < j->n; i++) {
        const struct lfm2c_session *s = j->toks[j->tok ? j->tok[i] : i].seq;
        for (int k = 0; k < s->n_lora; k++) {
            const lora_mat *mt = lora_get(s->lora[k], j->l, j->id);
            const float sc = s->lora_scale[k] * (mt ? mt->scale : 0);
            if (!mt || sc == 0) continue;
            lora_vec v = {
                mt, j->expert, sc, j->x + (size_t)(j->xrow ? j->xrow[i] : i) * j->ldx, ax, j->y + (size_t)i * j->ldy};
            threadpool_run(m->pool, vec_ax, &v);
            threadpool_run(m->pool, vec_by, &v);
        }
    }
}

void lora_apply(lfm2c_model *m, const fwd_token *toks, const tensor *w, int expert, const float *x, size_t ldx,
                const int *xrow, const int *tok, int n, float *y, size_t ldy) {
    if (!cpu_model_of(m)->lora_pass || !toks || !w->lora_key || n <= 0) return;
    const int key = w->lora_key - 1;
    lora_job j = {toks, key % LFM2_T_COUNT, key / LFM2_T_COUNT, expert, x, ldx, xrow, tok, n, y, ldy};
    /* a row costs r (n_in + n_out) multiply-adds per adapter (about 16 for r = 16 and both
     * matrices of a few KB); small work stays on this thread, rows go to the pool when there are
     * as many as threads, else each row's work is split (decode) */
    const double row_work = (double)(w->ne[0] + w->ne[1]) * 16 * sizeof(float);
    const int nth = threadpool_active(m->pool);
    if (nth < 2 || (double)n * row_work < INLINE_WORK) lora_rows(&j, 0, n);
    else if (n >= nth) threadpool_run(m->pool, lora_worker, &j);
    else lora_rows_pool(m, &j);
}
