/* quantize_file.c — stream a GGUF through the quantization recipe (see quantize_file.h).
 * Each tensor is processed in row chunks: the threads of the pool dequantize their rows of the
 * input to f32, quantize them to the target type and (with stats) measure the error; the chunk
 * is appended to the output and the input pages it came from are released. */
#include "base/error.h"
#include "convert/quantize_file.h"
#include "convert/quant_imatrix.h"
#include "formats/gguf.h"
#include "formats/gguf_write.h"
#include "base/threadpool.h"
#include "base/clock.h"
#include "base/os.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_ELEMS (4 << 20) /* f32 values per chunk, over all threads */
#define COPY_CHUNK (16 << 20)


/* Drops the mapped input pages of [p, p+n) from our address space (they stay in the page cache);
 * keeps RSS near the working set when the input is much larger than memory. */
static void release_pages(const uint8_t *map, const uint8_t *p, size_t n) {
    static long page;
    if (!page) page = (long)os_page_size();
    uintptr_t a = (uintptr_t)p, b = a + n;
    uintptr_t lo = (a + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), hi = b & ~((uintptr_t)page - 1);
    if (hi > lo && lo >= (uintptr_t)map) os_advise((void *)lo, hi - lo, OS_ADV_DONTNEED);
}

typedef struct chunk_job {
    const uint8_t *src;
    uint8_t *dst;
    uint32_t type_in, type_out;
    int64_t n_per_row, nrows, rows_per_thread;
    size_t row_in, row_out;
    float **f32, **deq; /* per-thread scratch */
    double *sqerr;      /* per-thread sum of squared errors */
    bool stats;
    const float *qw;   /* importance weights: n_per_row per matrix, or NULL */
    int64_t row0, ne1; /* the chunk's first row in the tensor; rows per matrix (expert) */
} chunk_job;

static void chunk_work(void *arg, int ith, int nth) {
    (void)nth;
    chunk_job *j = arg;
    int64_t r0 = (int64_t)ith * j->rows_per_thread, r1 = r0 + j->rows_per_thread;
    if (r1 > j->nrows) r1 = j->nrows;
    if (r0 >= r1) return;
    const int64_t n = j->n_per_row;
    float *f = j->f32[ith];
    for (int64_t r = r0; r < r1; r++) dequantize_row(j->type_in, j->src + (size_t)r * j->row_in, f + (r - r0) * n, n);
    for (int64_t a = r0; a < r1;) { /* rows of one matrix at a time: each expert has its weights */
        const int64_t mat = (j->row0 + a) / j->ne1, end = (mat + 1) * j->ne1 - j->row0;
        const int64_t b = end < r1 ? end : r1;
        quantize_rows_w(j->type_out, f + (a - r0) * n, j->dst + (size_t)a * j->row_out, b - a, n,
                        j->qw ? j->qw + mat * n : NULL);
        a = b;
    }
    if (j->stats) {
        double s = 0;
        float *d = j->deq[ith];
        for (int64_t r = r0; r < r1; r++) {
            dequantize_row(j->type_out, j->dst + (size_t)r * j->row_out, d, n);
            const float *x = f + (r - r0) * n;
            for (int64_t i = 0; i < n; i++) {
                double e = (double)d[i] - (double)x[i];
                s += e * e;
            }
        }
        j->sqerr[ith] += s;
    }
}

static int order_cmp(const void *a, const void *b, void *ctx) {
    const gguf_file *g = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    int c = quant_tensor_order_cmp(g->tensors[ia].name, g->tensors[ib].name);
    return c ? c : (ia > ib) - (ia < ib);
}

/* keys the output sets anew (at its end, as llama-quantize's gguf_set_val does) or drops */
static bool skip_key(const char *k, const qimatrix *im) {
    if (im && (!strcmp(k, "quantize.imatrix.file") || !strcmp(k, "quantize.imatrix.entries_count") ||
               (!strcmp(k, "quantize.imatrix.dataset") && im->im.n_datasets) ||
               (!strcmp(k, "quantize.imatrix.chunks_count") && im->chunks > 0)))
        return true;
    return !strcmp(k, "general.quantization_version") || !strcmp(k, "general.file_type") || !strcmp(k, "split.no") ||
           !strcmp(k, "split.count") || !strcmp(k, "split.tensors.count");
}

void quantize_report_free(quantize_report *rep) {
    if (!rep) return;
    free(rep->tensors);
    rep->tensors = NULL;
}

/* Everything one quantize_file call holds; qf_free releases it whatever was reached. */
typedef struct qf_run {
    const quantize_file_params *p;
    gguf_file *g;
    int n;                   /* tensors */
    int *order;              /* output position -> input tensor index */
    quant_tensor_desc *desc; /* in output order */
    uint32_t *types;         /* output type of each output position */
    quantize_tensor_report *tr;
    int64_t max_row; /* longest row of a converted tensor (1 if none) */
    gguf_writer *w;
    threadpool *pool;
    int nth;
    float **f32, **deq; /* per-thread scratch (chunk_job) */
    double *sqerr;
    uint8_t *obuf; /* one output chunk */
    uint64_t total_in, done_in, total_out;
    qimatrix im; /* with --imatrix */
    bool has_im;
    bool *needs_im;   /* per output position: its type needs an importance matrix there */
    const float **qw; /* per output position: its importance weights, or NULL */
} qf_run;

static void qf_free(qf_run *q) {
    gguf_writer_free(q->w); /* removes out.tmp unless finished */
    threadpool_free(q->pool);
    for (int i = 0; i < q->nth; i++) {
        if (q->f32) free(q->f32[i]);
        if (q->deq) free(q->deq[i]);
    }
    free(q->f32);
    free(q->deq);
    free(q->sqerr);
    free(q->obuf);
    free(q->tr);
    free(q->types);
    free(q->desc);
    free(q->order);
    free(q->needs_im);
    free(q->qw);
    if (q->has_im) qimatrix_free(&q->im);
    gguf_close(q->g);
}

/* The architecture's block and expert counts, which the recipe needs. */
/* a key's value, or its first element when it is an array (per-layer head counts) */
static bool first_int(const gguf_file *g, const char *key, int64_t *v) {
    const gguf_kv *kv = gguf_find(g, key);
    if (kv && kv->type == GGUF_ARR) return kv->n > 0 && gguf_arr_int(kv, 0, v);
    return gguf_get_int(g, key, v);
}

/* heads / kv heads of block 0, as llama's n_gqa(): 0 when block 0 has no kv heads */
static int read_gqa(const gguf_file *g, const char *arch) {
    char k1[160], k2[160];
    int64_t h = 0, kv = 0;
    snprintf(k1, sizeof k1, "%s.attention.head_count", arch);
    snprintf(k2, sizeof k2, "%s.attention.head_count_kv", arch);
    if (!first_int(g, k1, &h) || !first_int(g, k2, &kv) || kv <= 0 || h < 0) return 0;
    return (int)(h / kv);
}

static bool read_layer_counts(const gguf_file *g, const char *in, int64_t *n_layer, int64_t *n_expert, int *n_gqa,
                              lfm2c_error *err) {
    char *arch = gguf_get_string(g, "general.architecture");
    if (!arch) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: no general.architecture key", in);
        return false;
    }
    char key[160];
    bool ok = true;
    *n_layer = *n_expert = 0;
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (!gguf_get_int(g, key, n_layer) || *n_layer <= 0 || *n_layer > 100000) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: missing or bad %s", in, key);
        ok = false;
    } else {
        snprintf(key, sizeof key, "%s.expert_count", arch);
        if (!gguf_get_int(g, key, n_expert) || *n_expert < 0) *n_expert = 0;
        *n_gqa = read_gqa(g, arch);
    }
    free(arch);
    return ok;
}

/* Puts the tensors in the output order and picks each one's type with the recipe of ft. */
static bool plan_types(qf_run *q, const quant_ftype *ft, int64_t n_layer, int64_t n_expert, int n_gqa,
                       lfm2c_error *err) {
    const int n = q->n;
    q->order = malloc((size_t)(n ? n : 1) * sizeof *q->order);
    q->desc = malloc((size_t)(n ? n : 1) * sizeof *q->desc);
    q->types = malloc((size_t)(n ? n : 1) * sizeof *q->types);
    q->tr = calloc((size_t)(n ? n : 1), sizeof *q->tr);
    q->needs_im = calloc((size_t)(n ? n : 1), sizeof *q->needs_im);
    q->qw = calloc((size_t)(n ? n : 1), sizeof *q->qw);
    if (!q->order || !q->desc || !q->types || !q->tr || !q->needs_im || !q->qw) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    for (int i = 0; i < n; i++) q->order[i] = i;
    qsort_r(q->order, (size_t)n, sizeof *q->order, order_cmp, q->g);
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = &q->g->tensors[q->order[i]];
        q->desc[i] = (quant_tensor_desc){t->name, t->n_dims, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, t->type};
    }
    const quantize_file_params *p = q->p;
    quant_recipe_opts o = {.n_layer = (int)n_layer,
                           .n_expert = (int)n_expert,
                           .n_gqa = n_gqa,
                           .has_imatrix = q->has_im,
                           .leave_output = p->leave_output,
                           .output_type = p->has_output_type ? (int)p->output_type : -1,
                           .token_embd_type = p->has_token_embd_type ? (int)p->token_embd_type : -1,
                           .overrides = p->overrides,
                           .n_overrides = p->n_overrides};
    return quant_recipe_ex(ft, &o, q->desc, n, q->types, q->needs_im, err);
}

/* Each converted tensor's importance weights, and the refusals of llama-quantize: a type that
 * needs an importance matrix without one, an entry of the wrong size. */
static bool plan_weights(qf_run *q, lfm2c_error *err) {
    for (int i = 0; i < q->n; i++) {
        const gguf_tensor *t = &q->g->tensors[q->order[i]];
        const char *tn = ggml_type_get(q->types[i])->name;
        if (!q->has_im) {
            if (q->needs_im[i])
                return lfm2c_set_error(err, LFM2C_EINVAL,
                                       "tensor '%s': type %s needs an importance matrix (give one with --imatrix)",
                                       t->name, tn),
                       false;
            continue;
        }
        if (q->types[i] == t->type) continue;
        uint32_t nv = 0;
        const float *w = qimatrix_weights(&q->im, t->name, &nv);
        const int64_t want = t->ne[0] * (t->n_dims > 2 ? t->ne[2] : 1);
        if (w && (int64_t)nv != want) {
            if (strcmp(t->name, "token_embd.weight") && strcmp(t->name, "per_layer_token_embd.weight"))
                return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix size %u is different from tensor size %lld for %s",
                                       nv, (long long)want, t->name),
                       false;
            w = NULL;
        }
        if (!w && q->needs_im[i])
            return lfm2c_set_error(err, LFM2C_EINVAL,
                                   "tensor '%s': the importance matrix has no entry for it (type %s needs one)",
                                   t->name, tn),
                   false;
        q->qw[i] = w;
    }
    return true;
}

/* Every conversion must be possible before anything is written; also finds max_row. */
static bool check_conversions(qf_run *q, lfm2c_error *err) {
    q->max_row = 1;
    for (int i = 0; i < q->n; i++) {
        const gguf_tensor *t = &q->g->tensors[q->order[i]];
        if (q->types[i] == t->type) continue;
        const ggml_type_info *ti = ggml_type_get(t->type);
        if (!ti || !ggml_type_readable(t->type)) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': cannot convert from type %s", t->name,
                            ti ? ti->name : "?");
            return false;
        }
        if (!(q->qw[i] ? quantize_supported_w(q->types[i]) : quantize_supported(q->types[i]))) {
            if (quantize_supported_w(q->types[i]))
                return lfm2c_set_error(err, LFM2C_EINVAL,
                                       "tensor '%s': type %s cannot be made without importance weights", t->name,
                                       ggml_type_get(q->types[i])->name),
                       false;
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': cannot produce type %s", t->name,
                            ggml_type_get(q->types[i])->name);
            return false;
        }
        if (t->ne[0] > q->max_row) q->max_row = t->ne[0];
    }
    return true;
}

/* llama-quantize's record of the importance matrix (its kv overrides: strings cut to 127 bytes,
 * counts as u32), when one was used and had entries */
static bool imatrix_keys(qf_run *q) {
    if (!q->has_im || !q->im.im.n) return true;
    const qimatrix *im = &q->im;
    bool ok = gguf_set_strn(q->w, "quantize.imatrix.file", im->path, strnlen(im->path, 127));
    if (ok && im->im.n_datasets)
        ok = gguf_set_strn(q->w, "quantize.imatrix.dataset", im->im.datasets[0], strnlen(im->im.datasets[0], 127));
    ok = ok && gguf_set_u32(q->w, "quantize.imatrix.entries_count", im->im.n);
    if (ok && im->chunks > 0) ok = gguf_set_u32(q->w, "quantize.imatrix.chunks_count", (uint32_t)im->chunks);
    return ok;
}

/* The output's header: the input's keys (but the quantization ones), the new file type, the
 * tensors with their new types. */
static bool describe_output(qf_run *q, const quant_ftype *ft, lfm2c_error *err) {
    const gguf_file *g = q->g;
    q->w = gguf_writer_new();
    if (!q->w) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!skip_key(g->kv[i].key, q->has_im ? &q->im : NULL) && !gguf_set_kv(q->w, &g->kv[i])) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "cannot copy key '%s'", g->kv[i].key);
            return false;
        }
    if (!gguf_set_u32(q->w, "general.quantization_version", 2) ||
        !gguf_set_u32(q->w, "general.file_type", (uint32_t)ft->id) || !imatrix_keys(q)) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    for (int i = 0; i < q->n; i++) {
        const gguf_tensor *t = &g->tensors[q->order[i]];
        if (!gguf_add_tensor(q->w, t->name, q->types[i], t->n_dims, t->ne, err)) return false;
    }
    return true;
}

/* The thread pool, its per-thread scratch (rows of max_row floats) and the output chunk. */
static bool start_workers(qf_run *q, lfm2c_error *err) {
    q->pool = threadpool_new(q->p->n_threads);
    if (!q->pool) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "cannot start threads");
        return false;
    }
    const int nth = threadpool_size(q->pool);
    int64_t rows_per_thread = CHUNK_ELEMS / nth / q->max_row;
    if (rows_per_thread < 1) rows_per_thread = 1;
    size_t scratch = (size_t)rows_per_thread * (size_t)q->max_row;
    q->f32 = calloc((size_t)nth, sizeof *q->f32);
    q->deq = calloc((size_t)nth, sizeof *q->deq);
    q->sqerr = calloc((size_t)nth, sizeof *q->sqerr);
    if (!q->f32 || !q->deq || !q->sqerr) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    q->nth = nth;
    for (int i = 0; i < nth; i++) {
        q->f32[i] = malloc(scratch * sizeof(float));
        q->deq[i] = q->p->stats ? malloc((size_t)q->max_row * sizeof(float)) : NULL;
        if (!q->f32[i] || (q->p->stats && !q->deq[i])) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            return false;
        }
    }
    /* output chunk: at most 4 bytes per weight (F32) */
    size_t obuf_size = (size_t)nth * scratch * 4;
    if (obuf_size < COPY_CHUNK) obuf_size = COPY_CHUNK;
    q->obuf = malloc(obuf_size);
    if (!q->obuf) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    return true;
}

static void report_progress(qf_run *q, const char *tensor) {
    if (q->p->progress) q->p->progress(q->p->progress_ud, q->done_in, q->total_in, tensor);
}

/* A tensor that keeps its type: its bytes pass through in COPY_CHUNK pieces. */
static bool copy_tensor(qf_run *q, const gguf_tensor *t, lfm2c_error *err) {
    for (uint64_t off = 0; off < t->nbytes; off += COPY_CHUNK) {
        size_t k = t->nbytes - off < COPY_CHUNK ? (size_t)(t->nbytes - off) : COPY_CHUNK;
        if (!gguf_write_data(q->w, t->data + off, k, err)) return false;
        release_pages(q->g->map, t->data + off, k);
        q->done_in += k;
        report_progress(q, t->name);
    }
    return true;
}

/* A tensor converted to type_out in chunks of rows spread over the pool; with stats, its RMS
 * error goes to r. */
static bool convert_tensor(qf_run *q, const gguf_tensor *t, uint32_t type_out, const float *qw,
                           quantize_tensor_report *r, lfm2c_error *err) {
    const int nth = q->nth;
    const int64_t npr = t->ne[0], nrows = (int64_t)(t->nbytes / ggml_row_size(t->type, npr));
    chunk_job j = {.type_in = t->type,
                   .type_out = type_out,
                   .n_per_row = npr,
                   .rows_per_thread = CHUNK_ELEMS / nth / npr,
                   .row_in = ggml_row_size(t->type, npr),
                   .row_out = ggml_row_size(type_out, npr),
                   .f32 = q->f32,
                   .deq = q->deq,
                   .sqerr = q->sqerr,
                   .stats = q->p->stats,
                   .dst = q->obuf,
                   .qw = qw,
                   .ne1 = t->ne[1]};
    if (j.rows_per_thread < 1) j.rows_per_thread = 1;
    for (int k = 0; k < nth; k++) q->sqerr[k] = 0;
    for (int64_t r0 = 0; r0 < nrows; r0 += j.rows_per_thread * nth) {
        j.nrows = nrows - r0 < j.rows_per_thread * nth ? nrows - r0 : j.rows_per_thread * nth;
        j.src = t->data + (size_t)r0 * j.row_in;
        j.row0 = r0;
        threadpool_run(q->pool, chunk_work, &j);
        if (!gguf_write_data(q->w, q->obuf, (size_t)j.nrows * j.row_out, err)) return false;
        release_pages(q->g->map, j.src, (size_t)j.nrows * j.row_in);
        q->done_in += (uint64_t)j.nrows * j.row_in;
        report_progress(q, t->name);
    }
    if (q->p->stats) {
        double s = 0;
        for (int k = 0; k < nth; k++) s += q->sqerr[k];
        r->rms_err = sqrt(s / (double)(nrows * npr));
    }
    return true;
}

/* Every tensor's data in output order, each noted in its report row. */
static bool write_tensors(qf_run *q, lfm2c_error *err) {
    q->total_in = q->done_in = q->total_out = 0;
    for (int i = 0; i < q->n; i++) q->total_in += q->g->tensors[q->order[i]].nbytes;
    for (int i = 0; i < q->n; i++) {
        const gguf_tensor *t = &q->g->tensors[q->order[i]];
        quantize_tensor_report *r = &q->tr[i];
        snprintf(r->name, sizeof r->name, "%s", t->name);
        r->type_in = t->type;
        r->type_out = q->types[i];
        r->n_dims = t->n_dims;
        memcpy(r->ne, t->ne, sizeof r->ne);
        r->bytes_in = t->nbytes;
        r->bytes_out = gguf_writer_tensor_nbytes(q->w, (uint64_t)i);
        r->converted = q->types[i] != t->type;
        q->total_out += r->bytes_out;
        if (!(r->converted ? convert_tensor(q, t, q->types[i], q->qw[i], r, err) : copy_tensor(q, t, err)))
            return false;
    }
    return true;
}

/* Hands the per-tensor rows (tr) and the totals to rep. */
static void fill_report(qf_run *q, quantize_report *rep, uint64_t out_size, double t0) {
    rep->n_tensors = q->n;
    rep->tensors = q->tr;
    q->tr = NULL;
    rep->bytes_in = q->total_in;
    rep->bytes_out = q->total_out;
    rep->file_bytes_in = q->g->size;
    rep->file_bytes_out = out_size;
    rep->seconds = lfm2c_now_s() - t0;
}

bool quantize_file(const char *in, const char *out, const quant_ftype *ft, const quantize_file_params *p,
                   quantize_report *rep, lfm2c_error *err) {
    const double t0 = lfm2c_now_s();
    quantize_file_params defaults = {0};
    if (rep) memset(rep, 0, sizeof *rep);
    qf_run q = {.p = p ? p : &defaults};
    q.g = gguf_open(in, err);
    if (!q.g) return false;
    q.n = (int)q.g->n_tensors;
    int64_t n_layer, n_expert;
    int n_gqa = 0;
    if (q.p->imatrix) {
        q.has_im = true;
        if (!qimatrix_load(&q.im, q.p->imatrix, err)) {
            qf_free(&q);
            return false;
        }
    }
    bool ok = read_layer_counts(q.g, in, &n_layer, &n_expert, &n_gqa, err) &&
              plan_types(&q, ft, n_layer, n_expert, n_gqa, err) && plan_weights(&q, err) &&
              check_conversions(&q, err) && describe_output(&q, ft, err) && start_workers(&q, err) &&
              gguf_writer_open(q.w, out, err) && write_tensors(&q, err);
    if (ok) {
        uint64_t out_size = gguf_writer_file_size(q.w);
        ok = gguf_writer_finish(q.w, err);
        if (ok && rep) fill_report(&q, rep, out_size, t0);
    }
    qf_free(&q);
    return ok;
}
