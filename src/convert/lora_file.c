/* lora_file.c — LoRA adapters as files (lora_file.h): the GGUF adapter writer, the merge of
 * adapters into a base GGUF (dequantize, add, requantize to the same type; the rows of a tensor
 * spread over a thread pool, chunk by chunk, with progress), and random adapters
 * for synthetic and fixture models. The adapters themselves are core/lora.h's. */
#include "convert/lora_file.h"
#include "convert/quantize.h"
#include "base/error.h"
#include "base/threadpool.h"
#include "core/lora.h"
#include "formats/ggml_types.h"
#include "formats/gguf_write.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing the GGUF adapter form -------------------------------------------------------- */

/* The one alpha of the file: the first matrix's scale * rank (its exact alpha when all agree). */
static double file_alpha(const lfm2c_lora *lo) {
    for (int i = 0; i < lo->n_layer * LFM2_T_COUNT; i++)
        if (lo->mats[i].r) return (double)lo->mats[i].scale * lo->mats[i].r;
    return 1;
}

/* B of matrix mt times fold, in GGUF order: expert e, row o (of n_out), r values. */
static bool write_b(gguf_writer *w, const lora_mat *mt, float fold, lfm2c_error *err) {
    float *row = malloc(sizeof(float) * (size_t)mt->r);
    if (!row) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    bool ok = true;
    for (int e = 0; e < mt->n_exp && ok; e++)
        for (int64_t o = 0; o < mt->n_out && ok; o++) {
            for (int q = 0; q < mt->r; q++) row[q] = fold * mt->bt[((size_t)e * mt->r + q) * mt->n_out + o];
            ok = gguf_write_data(w, row, sizeof(float) * (size_t)mt->r, err);
        }
    free(row);
    return ok;
}

bool lora_write_gguf(const lfm2c_lora *lo, const char *path, lfm2c_error *err) {
    gguf_writer *w = gguf_writer_new();
    if (!w) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    const double alpha = file_alpha(lo);
    bool ok = gguf_set_str(w, "general.architecture", lo->arch) && gguf_set_str(w, "general.type", "adapter") &&
              gguf_set_str(w, "adapter.type", "lora") && gguf_set_f32(w, "adapter.lora.alpha", (float)alpha);
    if (!ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    for (int i = 0; ok && i < lo->n_layer * LFM2_T_COUNT; i++) {
        const lora_mat *mt = &lo->mats[i];
        if (!mt->r) continue;
        char base[96], name[128];
        lfm2_tensor_name(&LFM2_TENSORS[i % LFM2_T_COUNT], i / LFM2_T_COUNT, false, base, sizeof base);
        const int64_t na[3] = {mt->n_in, mt->r, mt->n_exp}, nb[3] = {mt->r, mt->n_out, mt->n_exp};
        const uint32_t nd = mt->n_exp > 1 ? 3 : 2;
        snprintf(name, sizeof name, "%s.lora_a", base);
        ok = gguf_add_tensor(w, name, GGML_F32, nd, na, err);
        snprintf(name, sizeof name, "%s.lora_b", base);
        ok = ok && gguf_add_tensor(w, name, GGML_F32, nd, nb, err);
    }
    ok = ok && gguf_writer_open(w, path, err);
    for (int i = 0; ok && i < lo->n_layer * LFM2_T_COUNT; i++) {
        const lora_mat *mt = &lo->mats[i];
        if (!mt->r) continue;
        /* a scale other than alpha / r goes into B */
        const double fold = (double)mt->scale * mt->r / alpha;
        ok = gguf_write_data(w, mt->a, sizeof(float) * (size_t)mt->n_exp * mt->r * mt->n_in, err) &&
             write_b(w, mt, fabs(fold - 1) < 1e-6 ? 1.0f : (float)fold, err);
    }
    ok = ok && gguf_writer_finish(w, err);
    gguf_writer_free(w);
    return ok;
}

/* ---- merging into a base -------------------------------------------------------------------- */

/* The base model for adapters' bookkeeping: mapped, nothing rearranged or populated. */
static lfm2c_model *open_base(const char *path, lfm2c_error *err) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 1;
    p.no_populate = true;
    p.hugepages = LFM2C_HUGEPAGES_OFF;
    return lfm2c_model_open(path, &p, err);
}

/* One merge in progress: the adapters, the pool, each thread's float row, the output chunk. */
typedef struct merge_run {
    lfm2c_lora *const *los;
    const float *scales;
    int n, nth;
    threadpool *pool;
    float **rows;     /* nth rows of max_in floats */
    uint8_t *obuf;    /* one chunk of requantized rows */
    size_t obuf_size; /* bytes */
    const lora_merge_params *p;
    uint64_t done, total; /* bytes of the base's tensors written / to write */
} merge_run;

/* The rows [r0, r0 + nrows) of one tensor (layer l, row id) that the pool's threads share. */
typedef struct merge_chunk {
    merge_run *mr;
    const gguf_tensor *t;
    int l, id;
    int64_t r0, nrows;
    atomic_int failed; /* a row could not be requantized */
} merge_chunk;

/* Row o of expert e: dequantized, the adapters added, requantized to dst. */
static bool merge_row(const merge_run *mr, const gguf_tensor *t, int l, int id, int64_t e, int64_t o, float *row,
                      uint8_t *dst) {
    const int64_t n_in = t->ne[0], n_out = t->ne[1];
    const size_t rb = ggml_row_size(t->type, n_in);
    dequantize_row(t->type, t->data + ((size_t)e * n_out + o) * rb, row, n_in);
    for (int k = 0; k < mr->n; k++) {
        const lora_mat *mt = lora_get(mr->los[k], l, id);
        if (!mt || mr->scales[k] == 0) continue;
        const float *a = mt->a + (size_t)e * mt->r * n_in, *bt = mt->bt + (size_t)e * mt->r * n_out;
        for (int j = 0; j < mt->r; j++) {
            const float c = mr->scales[k] * mt->scale * bt[(size_t)j * n_out + o];
            for (int64_t i = 0; i < n_in; i++) row[i] += c * a[(size_t)j * n_in + i];
        }
    }
    return quantize_rows(t->type, row, dst, 1, n_in) == rb;
}

/* Thread ith's share of the chunk's rows. */
static void merge_work(void *arg, int ith, int nth) {
    merge_chunk *c = arg;
    const int64_t n_out = c->t->ne[1], per = (c->nrows + nth - 1) / nth;
    const size_t rb = ggml_row_size(c->t->type, c->t->ne[0]);
    for (int64_t k = (int64_t)ith * per; k < c->nrows && k < (int64_t)(ith + 1) * per; k++) {
        const int64_t r = c->r0 + k;
        if (!merge_row(c->mr, c->t, c->l, c->id, r / n_out, r % n_out, c->mr->rows[ith], c->mr->obuf + (size_t)k * rb))
            atomic_store_explicit(&c->failed, 1, memory_order_relaxed);
    }
}

static void merge_progress(merge_run *mr, const char *tensor) {
    if (mr->p && mr->p->progress) mr->p->progress(mr->p->progress_ud, mr->done, mr->total, tensor);
}

/* Tensor t (layer l, row id) with the adapters added, requantized, into the writer, a chunk of
 * rows at a time. */
static bool merge_tensor(merge_run *mr, gguf_writer *w, const gguf_tensor *t, int l, int id, lfm2c_error *err) {
    const int64_t n_in = t->ne[0], n_out = t->ne[1], n_exp = t->ne[2];
    const size_t rb = ggml_row_size(t->type, n_in);
    for (int k = 0; k < mr->n; k++) {
        const lora_mat *mt = lora_get(mr->los[k], l, id);
        if (mt && (mt->n_in != n_in || mt->n_out != n_out || mt->n_exp != n_exp)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': adapter %d was made for other shapes (another base?)",
                            t->name, k);
            return false;
        }
    }
    const int64_t nrows = n_exp * n_out, chunk = (int64_t)(mr->obuf_size / rb);
    merge_chunk c = {.mr = mr, .t = t, .l = l, .id = id};
    for (c.r0 = 0; c.r0 < nrows; c.r0 += c.nrows) {
        c.nrows = nrows - c.r0 < chunk ? nrows - c.r0 : chunk;
        threadpool_run(mr->pool, merge_work, &c);
        if (atomic_load(&c.failed)) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': cannot requantize type %s", t->name,
                            ggml_type_get(t->type)->name);
            return false;
        }
        if (!gguf_write_data(w, mr->obuf, (size_t)c.nrows * rb, err)) return false;
        mr->done += (uint64_t)c.nrows * rb;
        merge_progress(mr, t->name);
    }
    return true;
}

/* The adapted (layer, row) of tensor t, when some adapter touches it. */
static bool adapted(const gguf_tensor *t, lfm2c_lora *const *los, int n, int *l, int *id) {
    const lfm2_tensor *row = lfm2_tensor_by_gguf(t->name, l);
    if (!row || *l < 0) return false;
    *id = (int)row->id;
    for (int k = 0; k < n; k++)
        if (lora_get(los[k], *l, *id)) return true;
    return false;
}

/* Every adapted tensor's type can be requantized: true, else false with the error set. */
static bool merge_check(const gguf_file *g, lfm2c_lora *const *los, int n, int64_t *max_in, size_t *max_row,
                        lfm2c_error *err) {
    *max_in = 1, *max_row = 1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        int l, id;
        if (!adapted(t, los, n, &l, &id)) continue;
        if (!quantize_supported(t->type)) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': cannot requantize type %s after the merge", t->name,
                            ggml_type_get(t->type)->name);
            return false;
        }
        if (t->ne[0] > *max_in) *max_in = t->ne[0];
        if (ggml_row_size(t->type, t->ne[0]) > *max_row) *max_row = ggml_row_size(t->type, t->ne[0]);
    }
    return true;
}

/* The pool, a float row per thread and an output chunk of at least a few rows per thread. */
static bool merge_start(merge_run *mr, int64_t max_in, size_t max_row, lfm2c_error *err) {
    if (!(mr->pool = threadpool_new(mr->p ? mr->p->n_threads : 0))) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "cannot start threads");
        return false;
    }
    mr->nth = threadpool_size(mr->pool);
    mr->obuf_size = (size_t)16 << 20;
    if (mr->obuf_size < max_row * 4 * (size_t)mr->nth) mr->obuf_size = max_row * 4 * (size_t)mr->nth;
    mr->obuf = malloc(mr->obuf_size);
    mr->rows = calloc((size_t)mr->nth, sizeof *mr->rows);
    bool ok = mr->obuf && mr->rows;
    for (int i = 0; ok && i < mr->nth; i++) ok = (mr->rows[i] = malloc(sizeof(float) * (size_t)max_in)) != NULL;
    if (!ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    return ok;
}

static void merge_end(merge_run *mr) {
    for (int i = 0; mr->rows && i < mr->nth; i++) free(mr->rows[i]);
    free(mr->rows);
    free(mr->obuf);
    threadpool_free(mr->pool);
}

/* The output file: the base's metadata and tensor table, then each tensor's data, merged where
 * adapted, copied otherwise. */
static bool merge_write(merge_run *mr, const gguf_file *g, const char *out_path, lfm2c_error *err) {
    gguf_writer *w = gguf_writer_new();
    bool ok = w != NULL;
    if (!ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    for (uint64_t i = 0; ok && i < g->n_kv; i++)
        if (!gguf_set_kv(w, &g->kv[i])) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "cannot copy key '%s'", g->kv[i].key);
            ok = false;
        }
    for (uint64_t i = 0; ok && i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        ok = gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err);
        mr->total += t->nbytes;
    }
    ok = ok && gguf_writer_open(w, out_path, err);
    for (uint64_t i = 0; ok && i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        int l, id;
        if (adapted(t, mr->los, mr->n, &l, &id)) ok = merge_tensor(mr, w, t, l, id, err);
        else if ((ok = gguf_write_data(w, t->data, t->nbytes, err))) {
            mr->done += t->nbytes;
            merge_progress(mr, t->name);
        }
    }
    ok = ok && gguf_writer_finish(w, err);
    gguf_writer_free(w);
    return ok;
}

bool lora_merge(const char *base_path, lfm2c_lora *const *los, const float *scales, int n, const char *out_path,
                const lora_merge_params *p, lfm2c_error *err) {
    gguf_file *g = gguf_open(base_path, err);
    if (!g) return false;
    if (g->n_parts) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: merging into a split model is not supported", base_path);
        gguf_close(g);
        return false;
    }
    merge_run mr = {.los = los, .scales = scales, .n = n, .p = p};
    int64_t max_in;
    size_t max_row;
    bool ok = merge_check(g, los, n, &max_in, &max_row, err) && merge_start(&mr, max_in, max_row, err) &&
              merge_write(&mr, g, out_path, err);
    merge_end(&mr);
    gguf_close(g);
    return ok;
}

/* ---- random adapters ------------------------------------------------------------------------ */

static uint64_t next_u64(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float gauss(uint64_t *s) { /* Box-Muller, one value per call */
    double u1 = ((next_u64(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (next_u64(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static bool target_wanted(const char *targets, const char *module) {
    if (!targets || !*targets) return true;
    size_t n = strlen(module);
    for (const char *p = targets; *p;) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        if (k == n && !strncmp(p, module, n)) return true;
        p += k + (c != NULL);
    }
    return false;
}

/* The GGUF module name of a row without ".weight" ("attn_q", "shortconv.in_proj"). */
static void module_name(int id, char *out, size_t cap) {
    const char *g = LFM2_TENSORS[id].gguf, *dot = strstr(g, ".weight");
    snprintf(out, cap, "%.*s", (int)(dot ? (size_t)(dot - g) : strlen(g)), g);
}

bool lora_synth(const char *base_path, const lora_synth_params *p, const char *out_path, lfm2c_error *err) {
    const int r = p->rank > 0 ? p->rank : 8;
    const float alpha = p->alpha > 0 ? p->alpha : 2.0f * r;
    if (r > LORA_MAX_RANK) {
        lfm2c_set_error(err, LFM2C_EINVAL, "rank %d (at most %d)", r, LORA_MAX_RANK);
        return false;
    }
    for (const char *s = p->targets; s && *s;) { /* every named module must be one LoRA adapts */
        const char *c = strchr(s, ',');
        size_t k = c ? (size_t)(c - s) : strlen(s);
        bool known = false;
        for (int id = 0; id < LFM2_T_COUNT && !known; id++) {
            char mn[64];
            module_name(id, mn, sizeof mn);
            known = lora_target_ok(id) && strlen(mn) == k && !strncmp(mn, s, k);
        }
        if (!known) {
            lfm2c_set_error(
                err, LFM2C_EINVAL,
                "unknown LoRA target '%.*s' (shortconv.in_proj, shortconv.out_proj, attn_q, attn_k, "
                "attn_v, attn_output, ffn_gate, ffn_up, ffn_down, ffn_gate_exps, ffn_up_exps, ffn_down_exps)",
                (int)k, s);
            return false;
        }
        s += k + (c != NULL);
    }
    lfm2c_model *m = open_base(base_path, err);
    if (!m) return false;
    lfm2c_lora *lo = lora_new(m);
    bool ok = lo != NULL;
    if (!ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    uint64_t seed = p->seed ? p->seed : 1;
    for (int l = 0; ok && l < m->info.n_layer; l++)
        for (int id = 0; ok && id < LFM2_T_COUNT; id++) {
            char mn[64];
            module_name(id, mn, sizeof mn);
            if (!lora_target_ok(id) || !lora_base_tensor(m, l, id) || !target_wanted(p->targets, mn)) continue;
            lora_mat *mt = lora_claim(lo, m, l, id, r, alpha / r, mn, err);
            if (!mt) {
                ok = false;
                break;
            }
            const size_t na = (size_t)mt->n_exp * r * mt->n_in, nb = (size_t)mt->n_exp * r * mt->n_out;
            const float sa = 1.0f / sqrtf((float)mt->n_in), sb = 0.05f / sqrtf((float)r);
            for (size_t i = 0; i < na; i++) mt->a[i] = sa * gauss(&seed);
            for (size_t i = 0; i < nb; i++) mt->bt[i] = sb * gauss(&seed);
        }
    if (ok && !lo->n_mats) {
        lfm2c_set_error(err, LFM2C_EINVAL, "the model has none of the target modules");
        ok = false;
    }
    ok = ok && lora_write_gguf(lo, out_path, err);
    lfm2c_lora_free(lo);
    lfm2c_model_free(m);
    return ok;
}
