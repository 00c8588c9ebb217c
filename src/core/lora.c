/* lora.c — LoRA adapters (lora.h): the one form of a loaded adapter (float A and B per adapted
 * matrix, every shape checked against the model, every value and scale finite), GGUF adapters
 * read into it (PEFT folders: lora_peft.c), and the public functions of lfm2c.h (load, describe,
 * free, attach to a session). Applying them is the backend's (BACKEND_CAP_LORA; the CPU's:
 * cpu/lora_apply.c).
 *
 * GGUF facts (llama.cpp's adapters): general.type "adapter", adapter.type "lora",
 * adapter.lora.alpha (absent or 0: scale 1), "<base tensor>.lora_a" ne [in, r(, experts)] and
 * ".lora_b" ne [r, out(, experts)], scale alpha / r. */
#include "core/lora.h"
#include "core/backend.h"
#include "base/error.h"
#include "core/session.h"
#include "formats/ggml_types.h"
#include "base/os.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- what an adapter changes, in words ------------------------------------------------------ */

typedef struct text_out {
    char *buf;
    size_t cap, len; /* len: what the whole text needs, written or not */
} text_out;

static void put(text_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const size_t room = o->len < o->cap ? o->cap - o->len : 0;
    const int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

/* The layers of module id adapted with rank r and scale sc, as ranges ("0-2,5"); marks them done. */
static void put_layers(text_out *o, const lfm2c_lora *lo, int id, int r, float sc, unsigned char *done) {
    int from = -1;
    bool first = true;
    for (int l = 0; l <= lo->n_layer; l++) {
        const lora_mat *mt = l < lo->n_layer ? lora_get(lo, l, id) : NULL;
        const bool in = mt && mt->r == r && mt->scale == sc;
        if (in) done[l] = 1;
        if (in && from < 0) from = l;
        if (in || from < 0) continue;
        put(o, "%s%d", first ? "" : ",", from);
        if (l - 1 > from) put(o, "-%d", l - 1);
        first = false;
        from = -1;
    }
}

int lfm2c_lora_describe(const lfm2c_lora *lo, char *buf, size_t cap) {
    text_out o = {buf, buf ? cap : 0, 0};
    if (o.cap) buf[0] = 0;
    if (!lo || lo->n_layer < 1) return 0;
    const size_t n_layer = (size_t)lo->n_layer;
    unsigned char *done = calloc(n_layer, 1);
    if (!done) return -1;
    put(&o, "%d matrices", lo->n_mats);
    for (int id = 0; id < LFM2_T_COUNT; id++) {
        memset(done, 0, n_layer);
        for (int l = 0; l < lo->n_layer; l++) {
            const lora_mat *mt = lora_get(lo, l, id);
            if (!mt || done[l]) continue;
            const char *hf = LFM2_TENSORS[id].hf, *dot = strstr(hf, ".weight");
            int n = 0;
            for (int k = l; k < lo->n_layer; k++) {
                const lora_mat *mk = lora_get(lo, k, id);
                n += mk && mk->r == mt->r && mk->scale == mt->scale;
            }
            put(&o, "; %.*s layer%s ", (int)(dot ? (size_t)(dot - hf) : strlen(hf)), hf, n > 1 ? "s" : "");
            put_layers(&o, lo, id, mt->r, mt->scale, done);
            put(&o, " (rank %d, scale %g)", mt->r, (double)mt->scale);
        }
    }
    free(done);
    if (lo->n_ignored)
        put(&o, "; %d tensors ignored (their modules are not among the config's targets)", lo->n_ignored);
    if (lo->n_unpaired) put(&o, "; %d modules with lora_A alone left unchanged", lo->n_unpaired);
    return o.len > INT32_MAX ? -1 : (int)o.len;
}

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
    if (!(fabsf(scale) <= LORA_MAX_SCALE)) { /* NaN too */
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                        "adapter tensor '%s': scale %g (alpha / rank) is not finite or over %g", what, (double)scale,
                        (double)LORA_MAX_SCALE);
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

int lora_want_dims(const char *what, const int64_t *ne, int n_dims, int64_t d0, int64_t d1, int64_t d2,
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

bool lora_finite(const float *v, size_t n) {
    float acc = 0; /* x * 0 is NaN for x infinite or NaN */
    for (size_t i = 0; i < n; i++) acc += v[i] * 0.0f;
    return acc == 0;
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

/* The values of GGUF adapter tensor t into matrix mt: A as it is, B row o of expert e (r values)
 * into column o of bt[e]. -1 when a value is not finite. */
static int gguf_read_side(lora_mat *mt, const gguf_tensor *t, bool is_a, const char *path, lfm2c_error *err) {
    const size_t rb = ggml_row_size(t->type, t->ne[0]);
    const int64_t rows = t->ne[1] * t->ne[2];
    float *tmp = malloc(sizeof(float) * (size_t)t->ne[0]);
    if (!tmp) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    bool ok = true;
    for (int64_t rr = 0; rr < rows && ok; rr++) {
        dequantize_row(t->type, t->data + rr * rb, tmp, t->ne[0]);
        ok = lora_finite(tmp, (size_t)t->ne[0]);
        if (is_a) {
            memcpy(mt->a + rr * mt->n_in, tmp, sizeof(float) * (size_t)mt->n_in);
            continue;
        }
        const int64_t e = rr / mt->n_out, o = rr % mt->n_out;
        for (int j = 0; j < mt->r; j++) mt->bt[((size_t)e * mt->r + j) * mt->n_out + o] = tmp[j];
    }
    free(tmp);
    if (!ok)
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: adapter tensor '%s' holds a value that is not finite", path, t->name);
    return ok ? 0 : -1;
}

/* The matrix GGUF adapter tensor t (a lora_b in pass 0, a lora_a in pass 1) belongs to, checked
 * (claimed by its B), or NULL with err set. */
static lora_mat *gguf_mat(lfm2c_lora *lo, const lfm2c_model *m, const gguf_tensor *t, bool is_a, double alpha,
                          const char *path, int *l, int *id, lfm2c_error *err) {
    const size_t len = strlen(t->name);
    char base[128];
    snprintf(base, sizeof base, "%.*s", (int)(len - 7), t->name);
    const lfm2_tensor *row = lfm2_tensor_by_gguf(base, l);
    if (!row || *l < 0 || *l >= lo->n_layer) {
        lfm2c_set_error(err, row ? LFM2C_EFORMAT : LFM2C_EUNSUPPORTED, "%s: adapter tensor '%s' names %s", path,
                        t->name, row ? "a layer the model does not have" : "no module LoRA can adapt here");
        return NULL;
    }
    const ggml_type_info *ti = ggml_type_get(t->type);
    if (!ti || !ggml_type_readable(t->type) || t->ne[3] != 1) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: adapter tensor '%s' has an unsupported type or shape", path,
                        t->name);
        return NULL;
    }
    *id = (int)row->id;
    lora_mat *mt;
    if (!is_a) {
        const double r = (double)t->ne[0];
        mt = lora_claim(lo, m, *l, *id, (int)t->ne[0], alpha ? (float)(alpha / r) : 1.0f, t->name, err);
        return !mt || lora_want_dims(t->name, t->ne, (int)t->n_dims, mt->r, mt->n_out, mt->n_exp, err) ? NULL : mt;
    }
    if (!(mt = (lora_mat *)lora_get(lo, *l, *id))) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: adapter is missing %s.lora_b", path, base);
        return NULL;
    }
    if (t->ne[1] != mt->r && t->ne[0] == mt->n_in) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: %s has rank %lld but %s.lora_b rank %d", path, t->name,
                        (long long)t->ne[1], base, mt->r);
        return NULL;
    }
    return lora_want_dims(t->name, t->ne, (int)t->n_dims, mt->n_in, mt->r, mt->n_exp, err) ? NULL : mt;
}

/* The tensors of an opened GGUF adapter: B first (it gives the rank and the scale), then A. */
static int gguf_tensors(lfm2c_lora *lo, const lfm2c_model *m, gguf_file *g, double alpha, const char *path,
                        unsigned char *seen, lfm2c_error *err) {
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            size_t len = strlen(t->name);
            bool is_a = len > 7 && !strcmp(t->name + len - 7, ".lora_a"),
                 is_b = len > 7 && !strcmp(t->name + len - 7, ".lora_b");
            if (!is_a && !is_b) {
                lfm2c_set_error(err, LFM2C_EFORMAT, "%s: tensor '%s' is not a LoRA tensor (.lora_a / .lora_b)", path,
                                t->name);
                return -1;
            }
            if (is_a != (pass == 1)) continue;
            int l, id;
            lora_mat *mt = gguf_mat(lo, m, t, is_a, alpha, path, &l, &id, err);
            if (!mt || gguf_read_side(mt, t, is_a, path, err)) return -1;
            for (int e = 0; e < mt->n_exp; e++)
                seen[((size_t)l * LFM2_T_COUNT + id) * seen_stride(m) + e] |= is_a ? 1 : 2;
        }
    return 0;
}

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
    if (gguf_tensors(lo, m, g, alpha, path, seen, err)) goto done;
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

lfm2c_lora *lfm2c_lora_load(const lfm2c_model *m, const char *path, lfm2c_error *err) {
    if (!m || !path) {
        lfm2c_set_error(err, LFM2C_EINVAL, "lfm2c_lora_load: NULL argument");
        return NULL;
    }
    os_stat_t sb;
    if (os_stat(path, &sb)) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot open adapter '%s'", path);
        return NULL;
    }
    lfm2c_lora *lo = lora_new(m);
    if (!lo) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    if (sb.is_dir ? lora_load_peft(lo, m, path, err) : load_gguf(lo, m, path, err)) {
        lfm2c_lora_free(lo);
        return NULL;
    }
    return lo;
}

/* ---- sessions ------------------------------------------------------------------------------- */

int lfm2c_session_set_lora(lfm2c_session *s, lfm2c_lora *const *loras, const float *scales, int n, lfm2c_error *err) {
    if (!s) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL session"), -1;
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
    if (n && backend_require(s->model, BACKEND_CAP_LORA, "LoRA adapters", err)) return -1;
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
