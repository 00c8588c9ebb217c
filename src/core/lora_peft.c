/* lora_peft.c — LoRA adapters as PEFT saves them (lora.h): a folder holding adapter_config.json
 * and adapter_model.safetensors, read by PEFT's own rules (its source, huggingface/peft:
 * tuners_utils.check_target_module_exists and other.get_pattern_key):
 *  - a module, by its name in the base model ("model.layers.3.self_attn.q_proj"), carries LoRA
 *    when the config targets it: exclude_modules does not name it (a regular expression matched
 *    whole, or a list of names: equal, or the module's name ends in "." + one), no entry of
 *    modules_to_save matches a run of its segments, and target_modules names it (an expression
 *    matched whole; "all-linear"; or a list: equal, or a "."-suffix, then with
 *    layers_to_transform only the layers listed, a module's layer being the number after the
 *    first "<segment>." of its name, or after layers_pattern's);
 *  - a targeted module's tensors are its A and B: without tensors, or with lora_A alone, it is
 *    unchanged (PEFT starts B at zero); lora_B alone is refused (PEFT would start A at random);
 *    tensors of modules the config does not target are ignored (PEFT ignores them too);
 *  - its rank and alpha are those of the first key of rank_pattern / alpha_pattern whose
 *    expression KEY matches the name as "(.*\.)?(KEY)$" from its start, else r and lora_alpha;
 *    the scale is alpha / r, or alpha / sqrt(r) with use_rslora.
 * The config's expressions are Python's; the project's budgeted engine (text/regex.h:
 * an ECMA subset, the syntax the two share) compiles each once per load under one work budget
 * that matching draws from too, and the count and length of entries are capped: an adapter from
 * the Hub is as untrusted as a model file. An entry of plain characters and '.' (a fixed-length
 * expression) is matched directly. An expression the engine refuses fails the load when it sets
 * a rank or an alpha; when it only selects modules it selects every one (PEFT saves the tensors
 * of targeted modules only, so the file then decides). */
#include "core/lora.h"
#include "base/error.h"
#include "text/regex.h"
#include "formats/safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    PEFT_MAX_KEYS = 4096,   /* entries of one pattern object or module list */
    PEFT_MAX_KEY_LEN = 512, /* bytes of one entry */
};

/* How PEFT meets a module name with an expression: get_pattern_key's "(.*\.)?(KEY)$" from the
 * start, re.fullmatch, modules_to_save's "(^|.*\.)KEY($|\..*)" from the start. */
typedef enum { RX_SUFFIX, RX_WHOLE, RX_SEGMENT, RX_PLAIN } rx_kind; /* PLAIN: a name, not an expression */

static const char *const WRAP[3][2] = {
    [RX_SUFFIX] = {"^(?:(.*\\.)?(", ")$)"},
    [RX_WHOLE] = {"^(?:", ")$"},
    [RX_SEGMENT] = {"^(?:(^|.*\\.)", "($|\\..*))"},
};

typedef struct peft_rx {
    const char *text; /* the config's (borrowed from its JSON) */
    size_t len;
    double value;   /* rank_pattern / alpha_pattern: the key's value */
    bool literal;   /* plain characters and '.' only: matched directly */
    regex_dfa *dfa; /* otherwise compiled; NULL: the engine refused it */
} peft_rx;

typedef struct peft_list {
    peft_rx *x;
    int n;
} peft_list;

typedef struct peft_config {
    char path[4200]; /* adapter_config.json's, for messages */
    int r;
    double alpha;
    bool rslora;
    peft_list rank, alpha_k; /* rank_pattern, alpha_pattern */
    bool target_all;         /* target_modules absent, null, "all-linear", or refused by the engine */
    peft_rx target_rx;       /* target_modules as an expression (text NULL: a list) */
    peft_list targets;       /* ... as a list of names */
    peft_rx exclude_rx;      /* exclude_modules as an expression (text NULL: none or a list) */
    peft_list exclude;       /* ... as a list of names */
    peft_list save;          /* modules_to_save */
    peft_list layer_pats;    /* layers_pattern */
    json_t *layers;          /* layers_to_transform (an integer or a non-empty list), else NULL */
    regex_budget budget;     /* for compiling and matching every expression of the load */
} peft_config;

static void list_free(peft_list *l) {
    for (int i = 0; l->x && i < l->n; i++) regex_dfa_free(l->x[i].dfa);
    free(l->x);
    l->x = NULL;
    l->n = 0;
}

static void config_free(peft_config *c) {
    list_free(&c->rank);
    list_free(&c->alpha_k);
    list_free(&c->targets);
    list_free(&c->exclude);
    list_free(&c->save);
    list_free(&c->layer_pats);
    regex_dfa_free(c->target_rx.dfa);
    regex_dfa_free(c->exclude_rx.dfa);
}

static int too_costly(const peft_config *c, lfm2c_error *err) {
    lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                    "%s: its patterns are too costly to compile and match (over the work budget)", c->path);
    return -1;
}

/* Prepares x for text: a literal, or compiled in the shape of kind (RX_PLAIN: kept as a name).
 * An expression the engine refuses fails only when `must` (a rank or an alpha hangs on it);
 * else x->dfa stays NULL. */
static int rx_prepare(peft_config *c, peft_rx *x, const char *text, rx_kind kind, const char *what, bool must,
                      lfm2c_error *err) {
    x->text = text;
    x->len = strlen(text);
    if (x->len > PEFT_MAX_KEY_LEN) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: %s '%.40s...' is longer than %d bytes", c->path, what, text,
                        PEFT_MAX_KEY_LEN);
        return -1;
    }
    x->literal = strcspn(text, "^$*+?{}[]\\|()") == x->len;
    if (x->literal || kind == RX_PLAIN) return 0;
    const size_t n = strlen(WRAP[kind][0]) + x->len + strlen(WRAP[kind][1]);
    char *pat = malloc(n + 1);
    if (!pat) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    snprintf(pat, n + 1, "%s%s%s", WRAP[kind][0], text, WRAP[kind][1]);
    lfm2c_error e = {0};
    x->dfa = regex_compile(pat, n, &e, &c->budget);
    free(pat);
    if (x->dfa) return 0;
    if (c->budget.left < 0) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: %s '%.80s': too costly to compile (over the work budget)",
                        c->path, what, text);
        return -1;
    }
    if (e.code == LFM2C_ENOMEM) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    if (must) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: %s '%.80s': %s", c->path, what, text, e.msg);
        return -1;
    }
    return 0;
}

/* s[0..len) against a literal (its '.' any character but a newline) */
static bool lit_eq(const char *s, const char *lit, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (lit[i] == '.' ? s[i] == '\n' : s[i] != lit[i]) return false;
    return true;
}

static bool lit_match(const peft_rx *x, rx_kind kind, const char *name, size_t n) {
    const size_t L = x->len;
    if (L > n) return false;
    if (kind == RX_WHOLE) return L == n && lit_eq(name, x->text, L);
    if (kind == RX_SUFFIX) return (L == n || name[n - L - 1] == '.') && lit_eq(name + n - L, x->text, L);
    for (size_t p = 0; p + L <= n; p++) /* RX_SEGMENT: a run of whole segments */
        if ((p == 0 || name[p - 1] == '.') && (p + L == n || name[p + L] == '.') && lit_eq(name + p, x->text, L))
            return true;
    return false;
}

/* Does x (prepared for kind) match the module name? Matching draws from the budget (the caller
 * checks it). An expression the engine refused matches when `refused` says so. */
static bool rx_match(peft_config *c, const peft_rx *x, rx_kind kind, const char *name, bool refused) {
    const size_t n = strlen(name);
    c->budget.left -= 1 + (long)(x->literal ? 0 : n);
    if (c->budget.left < 0) return false;
    if (x->literal) return lit_match(x, kind, name, n);
    if (!x->dfa) return refused;
    int s = 0;
    for (size_t i = 0; i < n && s >= 0; i++) s = regex_dfa_next(x->dfa, s, (unsigned char)name[i]);
    return s >= 0 && x->dfa->accept[s];
}

/* ---- the config ----------------------------------------------------------------------------- */

/* A list of strings (entries prepared as kind), or one string: an expression matched whole into
 * one, or a list of one when one is NULL. */
static int read_list(peft_config *c, json_t *v, const char *field, rx_kind kind, peft_list *out, peft_rx *one,
                     lfm2c_error *err) {
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v) && one) return rx_prepare(c, one, json_string_value(v), RX_WHOLE, field, false, err);
    json_t *arr = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
    int rc = 0;
    if (!json_is_array(arr) || json_array_size(arr) > PEFT_MAX_KEYS) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: %s must be a string or a list of at most %d strings", c->path, field,
                        PEFT_MAX_KEYS);
        rc = -1;
    } else if (json_array_size(arr) && !(out->x = calloc(json_array_size(arr), sizeof *out->x))) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        rc = -1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        if (rc) break;
        if (!json_is_string(e)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "%s: %s must hold strings", c->path, field);
            rc = -1;
        } else {
            rc = rx_prepare(c, &out->x[out->n++], json_string_value(e), kind, field, false, err);
        }
    }
    json_decref(arr);
    return rc;
}

/* rank_pattern / alpha_pattern: an object of expressions and numbers (ranks: integers in
 * 1..LORA_MAX_RANK), kept in the file's order (the first match wins). */
static int read_patterns(peft_config *c, json_t *obj, const char *field, bool ranks, peft_list *out, lfm2c_error *err) {
    if (!obj || json_is_null(obj)) return 0;
    if (!json_is_object(obj) || json_object_size(obj) > PEFT_MAX_KEYS) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: %s must be an object of at most %d keys", c->path, field,
                        PEFT_MAX_KEYS);
        return -1;
    }
    if (json_object_size(obj) && !(out->x = calloc(json_object_size(obj), sizeof *out->x)))
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        const double v = json_number_value(val);
        if (!json_is_number(val) || !isfinite(v) || (ranks && (v != floor(v) || v < 1 || v > LORA_MAX_RANK))) {
            if (ranks)
                lfm2c_set_error(err, LFM2C_EFORMAT, "%s: rank_pattern['%.80s'] must be an integer from 1 to %d",
                                c->path, key, LORA_MAX_RANK);
            else lfm2c_set_error(err, LFM2C_EFORMAT, "%s: alpha_pattern['%.80s'] must be a number", c->path, key);
            return -1;
        }
        peft_rx *x = &out->x[out->n++];
        x->value = v;
        if (rx_prepare(c, x, key, RX_SUFFIX, ranks ? "rank_pattern key" : "alpha_pattern key", true, err)) return -1;
    }
    return 0;
}

/* layers_to_transform: an integer, or a list of integers (an empty one: every layer). */
static int read_layers(peft_config *c, json_t *v, lfm2c_error *err) {
    if (!v || json_is_null(v) || json_is_integer(v)) {
        c->layers = json_is_integer(v) ? v : NULL;
        return 0;
    }
    bool ok = json_is_array(v) && json_array_size(v) <= PEFT_MAX_KEYS;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) ok = ok && json_is_integer(e);
    if (!ok) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: layers_to_transform must be an integer or a list of at most %d",
                        c->path, PEFT_MAX_KEYS);
        return -1;
    }
    c->layers = json_array_size(v) ? v : NULL;
    return 0;
}

/* Which modules the config targets (fields of PEFT's LoraConfig). */
static int read_targets(peft_config *c, json_t *j, lfm2c_error *err) {
    json_t *t = json_object_get(j, "target_modules");
    c->target_all = !t || json_is_null(t) || (json_is_string(t) && !strcmp(json_string_value(t), "all-linear"));
    if (!c->target_all && read_list(c, t, "target_modules", RX_PLAIN, &c->targets, &c->target_rx, err)) return -1;
    if (c->target_rx.text && !c->target_rx.literal && !c->target_rx.dfa) c->target_all = true;
    json_t *pats = json_object_get(j, "layers_pattern");
    if (json_is_string(pats) && !json_string_length(pats)) pats = NULL; /* "" as None (PEFT) */
    return read_list(c, json_object_get(j, "exclude_modules"), "exclude_modules", RX_PLAIN, &c->exclude, &c->exclude_rx,
                     err) ||
                   read_list(c, json_object_get(j, "modules_to_save"), "modules_to_save", RX_SEGMENT, &c->save, NULL,
                             err) ||
                   read_list(c, pats, "layers_pattern", RX_PLAIN, &c->layer_pats, NULL, err) ||
                   read_layers(c, json_object_get(j, "layers_to_transform"), err)
               ? -1
               : 0;
}

/* The features PEFT has that are not LoRA as applied here. */
static int check_kind(const peft_config *c, json_t *j, lfm2c_error *err) {
    const char *pt = json_string_value(json_object_get(j, "peft_type"));
    if (pt && strcmp(pt, "LORA"))
        return lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: peft_type '%s' (only LORA adapters are supported)",
                               c->path, pt),
               -1;
    if (json_is_true(json_object_get(j, "use_dora")))
        return lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: DoRA adapters (use_dora) are not supported", c->path), -1;
    if (json_is_true(json_object_get(j, "fan_in_fan_out")))
        return lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                               "%s: fan_in_fan_out adapters are not supported (LFM2's projections are Linear)",
                               c->path),
               -1;
    return 0;
}

static int read_config(const char *dir, peft_config *c, json_t **root, lfm2c_error *err) {
    snprintf(c->path, sizeof c->path, "%s/adapter_config.json", dir);
    c->budget.left = REGEX_BUDGET;
    json_error_t je;
    json_t *j = json_load_file(c->path, 0, &je);
    if (!j || !json_is_object(j)) {
        lfm2c_set_error(err, j ? LFM2C_EFORMAT : LFM2C_EIO, "%s: %s", c->path, j ? "not a JSON object" : je.text);
        json_decref(j);
        return -1;
    }
    *root = j;
    if (check_kind(c, j, err)) return -1;
    json_t *r = json_object_get(j, "r"), *a = json_object_get(j, "lora_alpha");
    if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > LORA_MAX_RANK ||
        !json_is_number(a) || !isfinite(json_number_value(a))) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: needs an integer r (1..%d) and a number lora_alpha", c->path,
                        LORA_MAX_RANK);
        return -1;
    }
    c->r = (int)json_integer_value(r);
    c->alpha = json_number_value(a);
    c->rslora = json_is_true(json_object_get(j, "use_rslora"));
    if (read_patterns(c, json_object_get(j, "rank_pattern"), "rank_pattern", true, &c->rank, err) ||
        read_patterns(c, json_object_get(j, "alpha_pattern"), "alpha_pattern", false, &c->alpha_k, err) ||
        read_targets(c, j, err))
        return -1;
    return 0;
}

/* ---- which modules, with which rank and scale ------------------------------------------------ */

/* A digit run at s ending in '.': its value (capped), or -1. */
static long digits_dot(const char *s) {
    long v = 0;
    int n = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) v = v < 100000000 ? v * 10 + (s[n] - '0') : v;
    return n && s[n] == '.' ? v : -1;
}

/* PEFT's layer index of a module name: the number after the first ".<segment>." (no
 * layers_pattern) or after the first ".<pattern>." of the patterns in order. 1: found, 0: none,
 * -1: a pattern the engine cannot place (not a literal). */
static int layer_index(const peft_config *c, const char *key, long *li) {
    const size_t n = strlen(key);
    for (int k = 0; k < (c->layer_pats.n ? c->layer_pats.n : 1); k++) {
        const peft_rx *p = c->layer_pats.n ? &c->layer_pats.x[k] : NULL;
        if (p && !p->literal) return -1;
        for (size_t i = 0; i < n; i++) {
            if (key[i] != '.') continue;
            size_t seg = p ? p->len : strcspn(key + i + 1, ".");
            if (i + 1 + seg >= n || (p && !lit_eq(key + i + 1, p->text, seg)) || key[i + 1 + seg] != '.') continue;
            if ((*li = digits_dot(key + i + 2 + seg)) >= 0) return 1;
        }
    }
    return 0;
}

static bool layer_listed(const peft_config *c, long li) {
    if (json_is_integer(c->layers)) return json_integer_value(c->layers) == li;
    size_t i;
    json_t *e;
    json_array_foreach(c->layers, i, e) if (json_integer_value(e) == li) return true;
    return false;
}

/* key equals a name of the list or ends in "." + one (drawing from the budget) */
static bool named(peft_config *c, const peft_list *l, const char *key) {
    const size_t n = strlen(key);
    c->budget.left -= l->n;
    for (int i = 0; i < l->n; i++) {
        const size_t L = l->x[i].len;
        if (L <= n && !memcmp(key + n - L, l->x[i].text, L) && (L == n || key[n - L - 1] == '.')) return true;
    }
    return false;
}

/* Does the config put LoRA on the module `key` (PEFT's check_target_module_exists)? */
static bool targeted(peft_config *c, const char *key) {
    if (c->exclude_rx.text ? rx_match(c, &c->exclude_rx, RX_WHOLE, key, false) : named(c, &c->exclude, key))
        return false;
    for (int i = 0; i < c->save.n; i++)
        if (rx_match(c, &c->save.x[i], RX_SEGMENT, key, false)) return false;
    if (c->target_all) return true;
    if (c->target_rx.text) return rx_match(c, &c->target_rx, RX_WHOLE, key, true);
    for (int i = 0; i < c->targets.n; i++)
        if (!strcmp(c->targets.x[i].text, key)) return true; /* named whole: every layer */
    if (!named(c, &c->targets, key)) return false;
    if (!c->layers) return true;
    long li;
    const int found = layer_index(c, key, &li);
    return found < 0 || (found && layer_listed(c, li));
}

/* The first key of a pattern object matching the module, or NULL. */
static const peft_rx *pattern_of(peft_config *c, const peft_list *l, const char *module) {
    for (int i = 0; i < l->n; i++)
        if (rx_match(c, &l->x[i], RX_SUFFIX, module, false)) return &l->x[i];
    return NULL;
}

/* The module's rank and scale; -1 when the scale is not one to run with. */
static int peft_scale(peft_config *c, const char *module, int *rank, float *scale, lfm2c_error *err) {
    const peft_rx *pr = pattern_of(c, &c->rank, module), *pa = pattern_of(c, &c->alpha_k, module);
    if (c->budget.left < 0) return too_costly(c, err);
    const double r = pr ? pr->value : c->r, alpha = pa ? pa->value : c->alpha;
    const double s = c->rslora ? alpha / sqrt(r) : alpha / r;
    *rank = (int)r; /* an integer in 1..LORA_MAX_RANK (read_patterns, read_config) */
    if (!(fabs(s) <= LORA_MAX_SCALE)) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: %s: scale %g (alpha %g / %s%g) is over %g", c->path, module, s,
                        alpha, c->rslora ? "sqrt " : "", r, (double)LORA_MAX_SCALE);
        return -1;
    }
    *scale = (float)s;
    return 0;
}

/* ---- the tensors ------------------------------------------------------------------------------ */

/* "base_model.model.model.layers.N.<module>.lora_A.weight" -> layer, row, expert, side, and the
 * module's name in the base model ("model.layers.N.<module>") */
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

/* What one load keeps per (layer, row, expert) slot: bit 0 A read, bit 1 B read; the expert's
 * scale; per matrix, whether its experts' scales differ (then each is folded into its B). */
typedef struct peft_load {
    peft_config c;
    const char *st_path;
    unsigned char *seen;
    float *scale;
    unsigned char *mixed;
    int ne; /* slots per matrix: the model's experts, or 1 */
} peft_load;

/* One tensor read, checked against the model; its module name into module. NULL (err set)
 * when the tensor cannot be applied. */
static const lfm2_tensor *tensor_row(peft_load *pl, const lfm2c_model *m, const st_tensor *t, int *l, int *e,
                                     bool *is_a, char *module, size_t cap, lfm2c_error *err) {
    const lfm2_tensor *row = peft_name(t->name, l, e, is_a, module, cap);
    if (!row) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                        "%s: tensor '%s' is not a LoRA A/B matrix of a module LoRA can adapt in LFM2"
                        " (DoRA, embeddings, lm_head and biases are not supported)",
                        pl->st_path, t->name);
        return NULL;
    }
    const bool stacked = (row->flags & LFM2_TF_EXPERTS) != 0;
    if (stacked != (*e >= 0) || *l < 0 || *l >= m->info.n_layer || !st_dtype_is_float(t->dtype) || t->n_dims != 2) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: tensor '%s' (%s, %d dims) does not fit the model", pl->st_path,
                        t->name, st_dtype_name(t->dtype), t->n_dims);
        return NULL;
    }
    const tensor *w = lora_base_tensor(m, *l, (int)row->id);
    if (!lora_target_ok((int)row->id) || !w) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: tensor '%s': the model has no %s in layer %d (made for another base?)",
                        pl->st_path, t->name, row->gguf, *l);
        return NULL;
    }
    if (*e >= w->ne[2]) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' names expert %d of %lld", pl->st_path, t->name, *e,
                        (long long)w->ne[2]);
        return NULL;
    }
    return row;
}

/* lora_A of expert ee (0 for a dense module): claims the matrix, reads A. */
static int read_a(peft_load *pl, lfm2c_lora *lo, const lfm2c_model *m, const st_tensor *t, int l, int id, int ee,
                  const char *module, lfm2c_error *err) {
    int want_r;
    float scale;
    if (peft_scale(&pl->c, module, &want_r, &scale, err)) return -1;
    if (t->shape[0] != want_r) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' has rank %lld, the config says %d", pl->st_path, t->name,
                        (long long)t->shape[0], want_r);
        return -1;
    }
    lora_mat *mt = lora_claim(lo, m, l, id, want_r, scale, t->name, err);
    const int64_t ne[2] = {t->shape[1], t->shape[0]}; /* GGUF order */
    if (!mt || lora_want_dims(t->name, ne, 2, mt->n_in, mt->r, 1, err)) return -1;
    float *a = mt->a + (size_t)ee * mt->r * mt->n_in;
    st_read_f32(t, 0, t->numel, a);
    if (!lora_finite(a, (size_t)t->numel)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' holds a value that is not finite", pl->st_path, t->name);
        return -1;
    }
    const size_t slot = ((size_t)l * LFM2_T_COUNT + id) * pl->ne + ee;
    pl->scale[slot] = scale;
    if (scale != mt->scale) pl->mixed[(size_t)l * LFM2_T_COUNT + id] = 1;
    return 0;
}

/* lora_B of expert ee: B times the expert's scale when its experts' scales differ (the matrix's
 * own scale is then 1), transposed into bt. */
static int read_b(peft_load *pl, lfm2c_lora *lo, const st_tensor *t, int l, int id, int ee, lfm2c_error *err) {
    const size_t slot = ((size_t)l * LFM2_T_COUNT + id) * pl->ne + ee;
    lora_mat *mt = (lora_mat *)lora_get(lo, l, id);
    if (!mt || !(pl->seen[slot] & 1)) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "%s: '%s' has no lora_A (PEFT would start A at random: the adapter cannot be applied)",
                        pl->st_path, t->name);
        return -1;
    }
    const int64_t ne[2] = {t->shape[1], t->shape[0]};
    if (lora_want_dims(t->name, ne, 2, mt->r, mt->n_out, 1, err)) return -1;
    const float fold = pl->mixed[(size_t)l * LFM2_T_COUNT + id] ? pl->scale[slot] : 1.0f;
    float row_b[LORA_MAX_RANK];
    float *bt = mt->bt + (size_t)ee * mt->r * mt->n_out;
    for (int64_t o = 0; o < mt->n_out; o++) {
        st_read_f32(t, o * mt->r, mt->r, row_b);
        if (!lora_finite(row_b, (size_t)mt->r)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' holds a value that is not finite", pl->st_path, t->name);
            return -1;
        }
        for (int j = 0; j < mt->r; j++) bt[(size_t)j * mt->n_out + o] = fold * row_b[j];
    }
    return 0;
}

/* A matrix whose experts' scales differ keeps scale 1 (each expert's is folded into its B). */
static void settle_scales(peft_load *pl, lfm2c_lora *lo) {
    for (int i = 0; i < lo->n_layer * LFM2_T_COUNT; i++)
        if (lo->mats[i].r && pl->mixed[i]) lo->mats[i].scale = 1.0f;
}

/* One pass over the file's tensors: lora_A (pass 0) or lora_B (pass 1) of targeted modules. */
static int read_pass(peft_load *pl, lfm2c_lora *lo, const lfm2c_model *m, const st_model *st, int pass,
                     lfm2c_error *err) {
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        int l, e;
        bool is_a;
        char module[256];
        const lfm2_tensor *row = tensor_row(pl, m, t, &l, &e, &is_a, module, sizeof module, err);
        if (!row) return -1;
        if (is_a != (pass == 0)) continue;
        const bool on = targeted(&pl->c, module);
        if (pl->c.budget.left < 0) return too_costly(&pl->c, err);
        if (!on) {
            lo->n_ignored++;
            continue;
        }
        const int id = (int)row->id, ee = e < 0 ? 0 : e;
        const size_t slot = ((size_t)l * LFM2_T_COUNT + id) * pl->ne + ee;
        if (pl->seen[slot] & (is_a ? 1 : 2)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "%s: '%s' appears twice", pl->st_path, t->name);
            return -1;
        }
        if (is_a ? read_a(pl, lo, m, t, l, id, ee, module, err) : read_b(pl, lo, t, l, id, ee, err)) return -1;
        pl->seen[slot] |= is_a ? 1 : 2;
    }
    return 0;
}

/* Matrices with lora_A and no lora_B anywhere are unchanged modules: dropped. Experts without
 * their B keep B = 0 (unchanged). */
static void drop_unpaired(peft_load *pl, lfm2c_lora *lo) {
    for (int i = 0; i < lo->n_layer * LFM2_T_COUNT; i++) {
        lora_mat *mt = &lo->mats[i];
        if (!mt->r) continue;
        int with_b = 0;
        for (int e = 0; e < mt->n_exp; e++) with_b += (pl->seen[(size_t)i * pl->ne + e] & 2) != 0;
        for (int e = 0; e < mt->n_exp; e++) lo->n_unpaired += (pl->seen[(size_t)i * pl->ne + e] & 3) == 1;
        if (with_b) continue;
        lo->bytes -= ((size_t)mt->n_exp * mt->r * (mt->n_in + mt->n_out)) * sizeof(float);
        free(mt->a);
        free(mt->bt);
        *mt = (lora_mat){0};
        lo->n_mats--;
    }
}

int lora_load_peft(lfm2c_lora *lo, const lfm2c_model *m, const char *dir, lfm2c_error *err) {
    peft_load pl = {.ne = m->info.n_expert > 0 ? m->info.n_expert : 1};
    json_t *root = NULL;
    st_model *st = NULL;
    int rc = -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    pl.st_path = path;
    if (read_config(dir, &pl.c, &root, err) || !(st = st_open_file(path, err))) goto done;
    const size_t n_slots = (size_t)lo->n_layer * LFM2_T_COUNT;
    pl.seen = calloc(n_slots * pl.ne, 1);
    pl.scale = calloc(n_slots * pl.ne, sizeof *pl.scale);
    pl.mixed = calloc(n_slots, 1);
    if (!pl.seen || !pl.scale || !pl.mixed) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    if (read_pass(&pl, lo, m, st, 0, err)) goto done;
    settle_scales(&pl, lo);
    if (read_pass(&pl, lo, m, st, 1, err)) goto done;
    drop_unpaired(&pl, lo);
    if (!lo->n_mats) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "%s: the adapter changes nothing (%d tensors ignored: their modules are "
                        "not among the config's targets; %d modules with lora_A alone)",
                        path, lo->n_ignored, lo->n_unpaired);
        goto done;
    }
    rc = 0;
done:
    free(pl.seen);
    free(pl.scale);
    free(pl.mixed);
    config_free(&pl.c);
    st_close(st);
    json_decref(root);
    return rc;
}
