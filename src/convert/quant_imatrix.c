/* quant_imatrix.c — an importance matrix as llama-quantize uses it (quant_imatrix.h): each entry's
 * sums divided by its counts (per expert; a GGUF count of 0 gives weights of 1, a legacy file's
 * values divided by their ncall), non-finite values refused, and what the output's
 * quantize.imatrix.* keys say: the file, its first dataset, the entry and chunk counts. */
#include "convert/quant_imatrix.h"
#include "base/error.h"
#include "base/os.h"
#include "formats/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The legacy file's chunk count (its optional trailer), 0 when it has none. */
static int legacy_chunks(const char *path) {
    FILE *f = os_fopen(path, "rb");
    if (!f) return 0;
    int32_t n = 0, v = 0, chunks = 0;
    bool ok = fread(&n, 4, 1, f) == 1 && n > 0;
    for (int32_t i = 0; ok && i < n; i++) {
        int32_t len, ncall, nv;
        ok = fread(&len, 4, 1, f) == 1 && len > 0 && fseek(f, len, SEEK_CUR) == 0 && fread(&ncall, 4, 1, f) == 1 &&
             fread(&nv, 4, 1, f) == 1 && nv > 0 && fseek(f, 4 * (long)nv, SEEK_CUR) == 0;
    }
    if (ok && fread(&v, 4, 1, f) == 1) chunks = v;
    fclose(f);
    return chunks;
}

/* GGUF: the keys llama-quantize requires (datasets, chunk count, chunk size) and the chunk count */
static bool gguf_meta(qimatrix *q, const char *path, lfm2c_error *err) {
    gguf_file *g = gguf_open(path, err);
    if (!g) return false;
    int64_t cc = 0, cs = 0;
    const bool has = gguf_find(g, "imatrix.datasets") && gguf_get_int(g, "imatrix.chunk_count", &cc) &&
                     gguf_get_int(g, "imatrix.chunk_size", &cs);
    gguf_close(g);
    if (!has) return lfm2c_set_error(err, LFM2C_EFORMAT, "%s: missing imatrix metadata", path), false;
    q->chunks = (int)cc;
    return true;
}

/* the normalized weights of entry e (legacy: sums / ncall; GGUF: sums / count per matrix) */
static float *normalize(const imatrix_entry *e, bool legacy) {
    float *w = malloc((size_t)e->n_vals * sizeof *w);
    if (!w) return NULL;
    const uint32_t ne0 = e->n_vals / e->n_counts;
    for (uint32_t j = 0; j < e->n_counts; j++) {
        const float c = (float)e->counts[j];
        for (uint32_t i = 0; i < ne0; i++) {
            const float s = e->sums[j * ne0 + i];
            w[j * ne0 + i] = legacy ? (c > 0 ? s / c : s) : (c > 0 ? s / c : 1);
        }
    }
    return w;
}

bool qimatrix_load(qimatrix *q, const char *path, lfm2c_error *err) {
    memset(q, 0, sizeof *q);
    imatrix_init(&q->im);
    q->path = path;
    uint8_t magic[4] = {0};
    FILE *f = os_fopen(path, "rb");
    if (!f) return lfm2c_set_error(err, LFM2C_EIO, "cannot open imatrix '%s'", path), false;
    const bool legacy = fread(magic, 1, 4, f) != 4 || memcmp(magic, "GGUF", 4) != 0;
    fclose(f);
    /* chunk size 1: a legacy file's values are kept as they are, its ncall as the count */
    if (imatrix_load(&q->im, path, 1, err)) return false;
    if (legacy) q->chunks = legacy_chunks(path);
    else if (!gguf_meta(q, path, err)) return false;
    q->w = calloc(q->im.n ? q->im.n : 1, sizeof *q->w);
    if (!q->w) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), false;
    for (uint32_t i = 0; i < q->im.n; i++) {
        q->w[i] = normalize(&q->im.e[i], legacy);
        if (!q->w[i]) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), false;
        for (uint32_t j = 0; j < q->im.e[i].n_vals; j++)
            if (!isfinite(q->w[i][j]))
                return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix '%s': entry %s holds a non-finite value", path,
                                       q->im.e[i].name),
                       false;
    }
    return true;
}

const float *qimatrix_weights(const qimatrix *q, const char *name, uint32_t *n) {
    for (uint32_t i = 0; q->w && i < q->im.n; i++)
        if (!strcmp(q->im.e[i].name, name)) {
            *n = q->im.e[i].n_vals;
            return q->w[i];
        }
    return NULL;
}

void qimatrix_free(qimatrix *q) {
    for (uint32_t i = 0; q->w && i < q->im.n; i++) free(q->w[i]);
    free(q->w);
    imatrix_free(&q->im);
    memset(q, 0, sizeof *q);
}
