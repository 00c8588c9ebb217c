/* quantize_file.c — stream a GGUF through the quantization recipe (see quantize_file.h).
 * Each tensor is processed in row chunks: the threads of the pool dequantize their rows of the
 * input to f32, quantize them to the target type and (with stats) measure the error; the chunk
 * is appended to the output and the input pages it came from are released. */
#include "core/error.h"
#include "convert/quantize_file.h"
#include "formats/gguf.h"
#include "formats/gguf_write.h"
#include "core/threadpool.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_ELEMS (4 << 20) /* f32 values per chunk, over all threads */
#define COPY_CHUNK (16 << 20)


static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Drops the mapped input pages of [p, p+n) from our address space (they stay in the page cache);
 * keeps RSS near the working set when the input is much larger than memory. */
static void release_pages(const uint8_t *map, const uint8_t *p, size_t n) {
    static long page;
    if (!page) page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + n;
    uintptr_t lo = (a + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), hi = b & ~((uintptr_t)page - 1);
    if (hi > lo && lo >= (uintptr_t)map) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

typedef struct chunk_job {
    const uint8_t *src;
    uint8_t *dst;
    uint32_t type_in, type_out;
    int64_t n_per_row, nrows, rows_per_thread;
    size_t row_in, row_out;
    float **f32, **deq;     /* per-thread scratch */
    double *sqerr;          /* per-thread sum of squared errors */
    bool stats;
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
    quantize_rows(j->type_out, f, j->dst + (size_t)r0 * j->row_out, r1 - r0, n);
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

static bool skip_key(const char *k) {
    return !strcmp(k, "general.quantization_version") || !strcmp(k, "general.file_type") ||
           !strcmp(k, "split.no") || !strcmp(k, "split.count") || !strcmp(k, "split.tensors.count");
}

void quantize_report_free(quantize_report *rep) {
    if (!rep) return;
    free(rep->tensors);
    rep->tensors = NULL;
}

bool quantize_file(const char *in, const char *out, const quant_ftype *ft, const quantize_file_params *p,
                   quantize_report *rep, lfm2c_error *err) {
    const double t0 = now_s();
    quantize_file_params defaults = {0};
    if (!p) p = &defaults;
    if (rep) memset(rep, 0, sizeof *rep);
    bool ok = false;
    gguf_writer *w = NULL;
    threadpool *pool = NULL;
    int *order = NULL;
    quant_tensor_desc *desc = NULL;
    uint32_t *types = NULL;
    quantize_tensor_report *tr = NULL;
    float **f32 = NULL, **deq = NULL;
    double *sqerr = NULL;
    uint8_t *obuf = NULL;
    int nth = 0;

    gguf_file *g = gguf_open(in, err);
    if (!g) return false;
    const int n = (int)g->n_tensors;

    char *arch = gguf_get_string(g, "general.architecture");
    if (!arch) { lfm2c_set_error(err, LFM2C_EFORMAT, "%s: no general.architecture key", in); goto done; }
    char key[160];
    int64_t n_layer = 0, n_expert = 0;
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (!gguf_get_int(g, key, &n_layer) || n_layer <= 0 || n_layer > 100000) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s: missing or bad %s", in, key);
        goto done;
    }
    snprintf(key, sizeof key, "%s.expert_count", arch);
    if (!gguf_get_int(g, key, &n_expert) || n_expert < 0) n_expert = 0;

    order = malloc((size_t)(n ? n : 1) * sizeof *order);
    desc = malloc((size_t)(n ? n : 1) * sizeof *desc);
    types = malloc((size_t)(n ? n : 1) * sizeof *types);
    tr = calloc((size_t)(n ? n : 1), sizeof *tr);
    if (!order || !desc || !types || !tr) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); goto done; }
    for (int i = 0; i < n; i++) order[i] = i;
    qsort_r(order, (size_t)n, sizeof *order, order_cmp, g);
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = &g->tensors[order[i]];
        desc[i] = (quant_tensor_desc){t->name, t->n_dims, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, t->type};
    }
    if (!quant_recipe(ft, (int)n_layer, (int)n_expert, desc, n, types, err)) goto done;

    /* every conversion must be possible before anything is written */
    int64_t max_row = 1;
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = &g->tensors[order[i]];
        if (types[i] == t->type) continue;
        const ggml_type_info *ti = ggml_type_get(t->type);
        if (!ti || !ti->supported) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': cannot convert from type %s", t->name, ti ? ti->name : "?");
            goto done;
        }
        if (!quantize_supported(types[i])) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': cannot produce type %s", t->name, ggml_type_get(types[i])->name);
            goto done;
        }
        if (t->ne[0] > max_row) max_row = t->ne[0];
    }

    w = gguf_writer_new();
    if (!w) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); goto done; }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!skip_key(g->kv[i].key) && !gguf_set_kv(w, &g->kv[i])) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "cannot copy key '%s'", g->kv[i].key);
            goto done;
        }
    if (!gguf_set_u32(w, "general.quantization_version", 2) || !gguf_set_u32(w, "general.file_type", (uint32_t)ft->id)) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = &g->tensors[order[i]];
        if (!gguf_add_tensor(w, t->name, types[i], t->n_dims, t->ne, err)) goto done;
    }

    pool = threadpool_new(p->n_threads);
    if (!pool) { lfm2c_set_error(err, LFM2C_ENOMEM, "cannot start threads"); goto done; }
    nth = threadpool_size(pool);
    int64_t rows_per_thread = CHUNK_ELEMS / nth / max_row;
    if (rows_per_thread < 1) rows_per_thread = 1;
    size_t scratch = (size_t)rows_per_thread * (size_t)max_row;
    f32 = calloc((size_t)nth, sizeof *f32);
    deq = calloc((size_t)nth, sizeof *deq);
    sqerr = calloc((size_t)nth, sizeof *sqerr);
    if (!f32 || !deq || !sqerr) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); goto done; }
    for (int i = 0; i < nth; i++) {
        f32[i] = malloc(scratch * sizeof(float));
        deq[i] = p->stats ? malloc((size_t)max_row * sizeof(float)) : NULL;
        if (!f32[i] || (p->stats && !deq[i])) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); goto done; }
    }
    /* output chunk: at most 4 bytes per weight (F32) */
    size_t obuf_size = (size_t)nth * scratch * 4;
    if (obuf_size < COPY_CHUNK) obuf_size = COPY_CHUNK;
    obuf = malloc(obuf_size);
    if (!obuf) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); goto done; }

    if (!gguf_writer_open(w, out, err)) goto done;

    uint64_t total_in = 0, done_in = 0, total_out = 0;
    for (int i = 0; i < n; i++) total_in += g->tensors[order[i]].nbytes;
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = &g->tensors[order[i]];
        quantize_tensor_report *r = &tr[i];
        snprintf(r->name, sizeof r->name, "%s", t->name);
        r->type_in = t->type;
        r->type_out = types[i];
        r->n_dims = t->n_dims;
        memcpy(r->ne, t->ne, sizeof r->ne);
        r->bytes_in = t->nbytes;
        r->bytes_out = gguf_writer_tensor_nbytes(w, (uint64_t)i);
        r->converted = types[i] != t->type;
        total_out += r->bytes_out;
        if (!r->converted) { /* same type: the bytes pass through */
            for (uint64_t off = 0; off < t->nbytes; off += COPY_CHUNK) {
                size_t k = t->nbytes - off < COPY_CHUNK ? (size_t)(t->nbytes - off) : COPY_CHUNK;
                if (!gguf_write_data(w, t->data + off, k, err)) goto done;
                release_pages(g->map, t->data + off, k);
                done_in += k;
                if (p->progress) p->progress(p->progress_ud, done_in, total_in, t->name);
            }
            continue;
        }
        const int64_t npr = t->ne[0], nrows = (int64_t)(t->nbytes / ggml_row_size(t->type, npr));
        chunk_job j = {.type_in = t->type, .type_out = types[i], .n_per_row = npr,
                       .rows_per_thread = CHUNK_ELEMS / nth / npr, .row_in = ggml_row_size(t->type, npr),
                       .row_out = ggml_row_size(types[i], npr), .f32 = f32, .deq = deq, .sqerr = sqerr,
                       .stats = p->stats, .dst = obuf};
        if (j.rows_per_thread < 1) j.rows_per_thread = 1;
        for (int k = 0; k < nth; k++) sqerr[k] = 0;
        for (int64_t r0 = 0; r0 < nrows; r0 += j.rows_per_thread * nth) {
            j.nrows = nrows - r0 < j.rows_per_thread * nth ? nrows - r0 : j.rows_per_thread * nth;
            j.src = t->data + (size_t)r0 * j.row_in;
            threadpool_run(pool, chunk_work, &j);
            if (!gguf_write_data(w, obuf, (size_t)j.nrows * j.row_out, err)) goto done;
            release_pages(g->map, j.src, (size_t)j.nrows * j.row_in);
            done_in += (uint64_t)j.nrows * j.row_in;
            if (p->progress) p->progress(p->progress_ud, done_in, total_in, t->name);
        }
        if (p->stats) {
            double s = 0;
            for (int k = 0; k < nth; k++) s += sqerr[k];
            r->rms_err = sqrt(s / (double)(nrows * npr));
        }
    }
    uint64_t out_size = gguf_writer_file_size(w);
    if (!gguf_writer_finish(w, err)) goto done;
    if (rep) {
        rep->n_tensors = n;
        rep->tensors = tr;
        tr = NULL;
        rep->bytes_in = total_in;
        rep->bytes_out = total_out;
        rep->file_bytes_in = g->size;
        rep->file_bytes_out = out_size;
        rep->seconds = now_s() - t0;
    }
    ok = true;

done:
    gguf_writer_free(w); /* removes out.tmp unless finished */
    threadpool_free(pool);
    for (int i = 0; i < nth; i++) {
        if (f32) free(f32[i]);
        if (deq) free(deq[i]);
    }
    free(f32);
    free(deq);
    free(sqerr);
    free(obuf);
    free(tr);
    free(types);
    free(desc);
    free(order);
    free(arch);
    gguf_close(g);
    return ok;
}
