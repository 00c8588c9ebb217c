/* imatrix.c — importance matrices (imatrix.h): collection from the forward's matmul hook, merging
 * as llama-imatrix's --in-file does, and its two file formats. Every size read from a file is
 * checked against the bytes there before anything is allocated for it. */
#include "convert/imatrix.h"

#include "base/buf.h"
#include "base/error.h"
#include "base/os.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/gguf_write.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SUMS[] = ".in_sum2", COUNTS[] = ".counts";
enum { MIN_ROWS = 16, MAX_NAME = 4096 };

void imatrix_init(imatrix *im) { memset(im, 0, sizeof *im); }

void imatrix_free(imatrix *im) {
    for (uint32_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].sums);
        free(im->e[i].counts);
    }
    for (uint32_t i = 0; i < im->n_datasets; i++) free(im->datasets[i]);
    free(im->e);
    free(im->datasets);
    name_index_free(&im->index);
    memset(im, 0, sizeof *im);
}

static const char *entry_name(const void *owner, uint32_t i) { return ((const imatrix *)owner)->e[i].name; }

const imatrix_entry *imatrix_find(const imatrix *im, const char *name) {
    long i = name_index_find(&im->index, name, entry_name, im);
    return i < 0 ? NULL : &im->e[i];
}

/* The entry called name (n bytes), added empty when there is none; NULL when out of memory. */
static imatrix_entry *entry_get(imatrix *im, const char *name, size_t n) {
    char *key = malloc(n + 1);
    if (!key) return NULL;
    memcpy(key, name, n);
    key[n] = 0;
    long i = name_index_find(&im->index, key, entry_name, im);
    if (i >= 0) {
        free(key);
        return &im->e[i];
    }
    size_t cap = im->cap;
    imatrix_entry *e = im->n < UINT32_MAX ? lfm2c_grow(im->e, &cap, im->n, 1, sizeof *e, 64) : NULL;
    if (!e) return free(key), NULL;
    im->e = e, im->cap = (uint32_t)cap;
    im->e[im->n] = (imatrix_entry){.name = key};
    if (name_index_add(&im->index, im->n, entry_name, im, NULL) < 0) return free(key), NULL;
    return &im->e[im->n++];
}

/* Gives e n_vals zero sums and n_counts zero counts; false when out of memory. */
static bool entry_alloc(imatrix_entry *e, uint32_t n_vals, uint32_t n_counts) {
    float *s = calloc(n_vals, sizeof *s);
    int64_t *c = calloc(n_counts, sizeof *c);
    if (!s || !c) return free(s), free(c), false;
    free(e->sums), free(e->counts);
    e->sums = s, e->counts = c, e->n_vals = n_vals, e->n_counts = n_counts;
    return true;
}

/* One count for all matrices (n > 1 counts made one count repeated); false when out of memory. */
static bool counts_broadcast(imatrix_entry *e, uint32_t n) {
    int64_t *c = malloc(n * sizeof *c);
    if (!c) return false;
    for (uint32_t i = 0; i < n; i++) c[i] = e->counts[0];
    free(e->counts);
    e->counts = c, e->n_counts = n;
    return true;
}

bool imatrix_add_dataset(imatrix *im, const char *name) {
    size_t cap = im->n_datasets;
    char *copy = strdup(name);
    char **d = copy ? lfm2c_grow(im->datasets, &cap, im->n_datasets, 1, sizeof *d, 1) : NULL;
    if (!d) return free(copy), false;
    im->datasets = d;
    im->datasets[im->n_datasets++] = copy;
    return true;
}

/* ---- collection ------------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static void hook_error(imatrix *im, int code, const char *fmt, ...) {
    if (im->error) return;
    im->error = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(im->error_msg, sizeof im->error_msg, fmt, ap);
    va_end(ap);
}

/* rows' squares into sums[0 .. n_cols); false on a value that is not finite */
static bool add_squares(float *sums, const float *x, size_t ld, const int *rows, int n_rows, int n_cols) {
    for (int i = 0; i < n_rows; i++) {
        const float *r = x + (size_t)(rows ? rows[i] : i) * ld;
        for (int j = 0; j < n_cols; j++) sums[j] += r[j] * r[j];
    }
    for (int j = 0; j < n_cols; j++)
        if (!isfinite(sums[j])) return false;
    return true;
}

/* An expert product's rows: expert `expert` of n_mat, one count per expert. */
static void collect_expert(imatrix *im, imatrix_entry *e, int expert, int n_mat, const float *x, size_t ld,
                           const int *rows, int n_rows, int n_cols) {
    const uint64_t n_vals = (uint64_t)n_cols * (uint64_t)n_mat;
    if (e->n_counts == 1 && n_mat > 1 && !counts_broadcast(e, (uint32_t)n_mat))
        return hook_error(im, LFM2C_ENOMEM, "%s: out of memory", e->name);
    if (!e->sums && (n_vals > UINT32_MAX || !entry_alloc(e, (uint32_t)n_vals, (uint32_t)n_mat)))
        return hook_error(im, LFM2C_ENOMEM, "%s: out of memory", e->name);
    if (e->n_vals != n_vals || e->n_counts != (uint32_t)n_mat)
        return hook_error(im, LFM2C_EINVAL, "inconsistent sizes for %s: %u values where %llu are collected", e->name,
                          e->n_vals, (unsigned long long)n_vals);
    e->counts[expert] += n_rows;
    if (!add_squares(e->sums + (size_t)expert * (size_t)n_cols, x, ld, rows, n_rows, n_cols))
        hook_error(im, LFM2C_EINVAL, "a value that is not finite in %s", e->name);
}

/* A plain product's rows: one count. */
static void collect_dense(imatrix *im, imatrix_entry *e, const float *x, size_t ld, const int *rows, int n_rows,
                          int n_cols) {
    if (e->n_counts > 1) { /* merged from a file with one count per matrix: one count when they agree */
        uint32_t i = 1;
        while (i < e->n_counts && e->counts[i] == e->counts[0]) i++;
        if (i == e->n_counts) e->n_counts = 1;
    }
    if (!e->sums && !entry_alloc(e, (uint32_t)n_cols, 1))
        return hook_error(im, LFM2C_ENOMEM, "%s: out of memory", e->name);
    if (e->n_vals != (uint32_t)n_cols)
        return hook_error(im, LFM2C_EINVAL, "inconsistent sizes for %s: %u values where %d are collected", e->name,
                          e->n_vals, n_cols);
    if (!add_squares(e->sums, x, ld, rows, n_rows, n_cols))
        hook_error(im, LFM2C_EINVAL, "a value that is not finite in %s", e->name);
    for (uint32_t i = 0; i < e->n_counts; i++) e->counts[i] += n_rows;
}

void imatrix_hook(void *user, const char *weight, int expert, int n_mat, const float *x, size_t ld, const int *rows,
                  int n_rows, int n_cols) {
    imatrix *im = user;
    if (im->error || n_rows <= 0 || n_cols <= 0) return;
    if (expert < 0) { /* the reference's filter of plain products */
        const bool wanted = !strncmp(weight, "blk.", 4) || (im->process_output && !strcmp(weight, "output.weight"));
        if (n_rows < MIN_ROWS || !wanted) return;
    } else if (expert >= n_mat) {
        return hook_error(im, LFM2C_EINVAL, "%s: expert %d of %d", weight, expert, n_mat);
    }
    imatrix_entry *e = entry_get(im, weight, strlen(weight));
    if (!e) return hook_error(im, LFM2C_ENOMEM, "%s: out of memory", weight);
    if (expert >= 0) collect_expert(im, e, expert, n_mat, x, ld, rows, n_rows, n_cols);
    else collect_dense(im, e, x, ld, rows, n_rows, n_cols);
}

int64_t imatrix_chunk_count(const imatrix *im, int chunk_size) {
    int64_t max = 0;
    for (uint32_t i = 0; i < im->n; i++)
        for (uint32_t j = 0; j < im->e[i].n_counts; j++)
            if (im->e[i].counts[j] > max) max = im->e[i].counts[j];
    return chunk_size > 0 ? max / chunk_size : 0;
}

/* ---- reading ---------------------------------------------------------------------------------- */

/* Merges one GGUF entry's sums and counts (as floats from the file) into im. */
static int merge_gguf_entry(imatrix *im, const char *name, size_t len, const gguf_tensor *ts, const gguf_tensor *tc,
                            lfm2c_error *err) {
    const uint64_t nv = ts->nbytes / 4, nc = tc->nbytes / 4;
    if (ts->type != GGML_F32 || tc->type != GGML_F32 || !nv || !nc || nv > UINT32_MAX || nv % nc)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix %.*s: sums and counts not F32 of matching sizes", (int)len,
                               name),
               -1;
    int64_t *cnt = malloc(nc * sizeof *cnt);
    if (!cnt) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    for (uint64_t j = 0; j < nc; j++) {
        float c;
        memcpy(&c, tc->data + 4 * j, 4);
        if (!(c >= 0 && c < 9.0e15f)) {
            free(cnt);
            return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix %.*s: count %g", (int)len, name, c), -1;
        }
        cnt[j] = (int64_t)lroundf(c);
    }
    imatrix_entry *e = entry_get(im, name, len);
    int rc = -1;
    if (!e) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    else if (!e->sums && !entry_alloc(e, (uint32_t)nv, (uint32_t)nc))
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    else if (e->n_vals != nv)
        lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix %s: %llu sums where %u were", e->name, (unsigned long long)nv,
                        e->n_vals);
    else if (e->n_counts == 1 && nc > 1 && !counts_broadcast(e, (uint32_t)nc))
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    else if (e->n_counts != nc)
        lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix %s: %llu counts where %u were", e->name, (unsigned long long)nc,
                        e->n_counts);
    else rc = 0;
    for (uint64_t j = 0; rc == 0 && j < nv; j++) {
        float v;
        memcpy(&v, ts->data + 4 * j, 4);
        e->sums[j] += v;
    }
    for (uint64_t j = 0; rc == 0 && j < nc; j++) e->counts[j] += cnt[j];
    free(cnt);
    return rc;
}

static bool ends_with(const char *s, size_t n, const char *suffix, size_t k) {
    return n > k && !memcmp(s + n - k, suffix, k);
}

static int load_gguf(imatrix *im, const uint8_t *buf, size_t n, lfm2c_error *err) {
    gguf_file *g = gguf_open_memory(buf, n, err);
    if (!g) return -1;
    int rc = 0, pairs = 0;
    for (uint64_t i = 0; rc == 0 && i < g->n_tensors; i++) { /* every NAME.in_sum2 with its NAME.counts */
        const gguf_tensor *t = &g->tensors[i];
        const size_t len = strlen(t->name), ks = sizeof SUMS - 1, kc = sizeof COUNTS - 1;
        if (ends_with(t->name, len, COUNTS, kc)) {
            char other[80];
            snprintf(other, sizeof other, "%.*s%s", (int)(len - kc), t->name, SUMS);
            if (!gguf_find_tensor(g, other))
                rc = -1, lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix: %s without its sums", t->name);
            continue;
        }
        if (!ends_with(t->name, len, SUMS, ks)) continue;
        char other[80];
        snprintf(other, sizeof other, "%.*s%s", (int)(len - ks), t->name, COUNTS);
        const gguf_tensor *c = gguf_find_tensor(g, other);
        if (!c) rc = -1, lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix: %s without its counts", t->name);
        else rc = merge_gguf_entry(im, t->name, len - ks, t, c, err), pairs++;
    }
    if (rc == 0 && !pairs) rc = -1, lfm2c_set_error(err, LFM2C_EFORMAT, "not an imatrix (no NAME.in_sum2 tensors)");
    const gguf_kv *kv = gguf_find(g, "imatrix.datasets");
    for (uint64_t i = 0; rc == 0 && kv && kv->type == GGUF_ARR && kv->arr_type == GGUF_STR && i < kv->n; i++) {
        char *d = strndup(kv->strs[i].p, kv->strs[i].n);
        if (!d || !imatrix_add_dataset(im, d)) rc = -1, lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        free(d);
    }
    gguf_close(g);
    return rc;
}

/* little-endian reader over the legacy file's bytes */
typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd;

static bool rd_i32(rd *r, int32_t *v) {
    if (r->left < 4) return false;
    memcpy(v, r->p, 4);
    r->p += 4, r->left -= 4;
    return true;
}

/* One legacy entry at r: merged as sums * chunk_size over ncall * chunk_size rows. */
static int load_legacy_entry(imatrix *im, rd *r, int chunk_size, lfm2c_error *err) {
    int32_t len, ncall, nv;
    if (!rd_i32(r, &len) || len < 1 || len > MAX_NAME || (size_t)len > r->left)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix (legacy): an entry's name is cut or out of range"), -1;
    const char *name = (const char *)r->p;
    r->p += len, r->left -= (size_t)len;
    if (memchr(name, 0, (size_t)len))
        return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix (legacy): a name holds a NUL byte"), -1;
    if (!rd_i32(r, &ncall) || !rd_i32(r, &nv) || nv < 1 || (size_t)nv > r->left / 4 || ncall < 0)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix (legacy): entry %.*s is cut or its sizes out of range",
                               len > 64 ? 64 : len, name),
               -1;
    imatrix_entry *e = entry_get(im, name, (size_t)len);
    if (!e || (!e->sums && !entry_alloc(e, (uint32_t)nv, 1)))
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    if (e->n_vals != (uint32_t)nv)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix %s: %d sums where %u were", e->name, nv, e->n_vals), -1;
    for (int32_t j = 0; j < nv; j++) {
        float v;
        memcpy(&v, r->p + 4 * (size_t)j, 4);
        e->sums[j] += v * (float)chunk_size;
    }
    r->p += 4 * (size_t)nv, r->left -= 4 * (size_t)nv;
    for (uint32_t j = 0; j < e->n_counts; j++) e->counts[j] += (int64_t)ncall * chunk_size;
    return 0;
}

static int load_legacy(imatrix *im, const uint8_t *buf, size_t n, int chunk_size, lfm2c_error *err) {
    rd r = {buf, n};
    int32_t n_entries;
    if (!rd_i32(&r, &n_entries) || n_entries < 1)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "imatrix: neither GGUF nor the legacy format (no entries)"), -1;
    for (int32_t i = 0; i < n_entries; i++)
        if (load_legacy_entry(im, &r, chunk_size, err)) return -1;
    int32_t chunks, len; /* the trailer (chunk count, dataset) is optional */
    if (rd_i32(&r, &chunks) && rd_i32(&r, &len) && len > 0 && (size_t)len <= r.left) {
        char *d = strndup((const char *)r.p, (size_t)len);
        bool ok = d && imatrix_add_dataset(im, d);
        free(d);
        if (!ok) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    }
    return 0;
}

int imatrix_load_bytes(imatrix *im, const uint8_t *buf, size_t n, int chunk_size, lfm2c_error *err) {
    if (chunk_size < 1) return lfm2c_set_error(err, LFM2C_EINVAL, "imatrix: chunk size %d", chunk_size), -1;
    if (n >= 4 && !memcmp(buf, "GGUF", 4)) return load_gguf(im, buf, n, err);
    return load_legacy(im, buf, n, chunk_size, err);
}

int imatrix_load(imatrix *im, const char *path, int chunk_size, lfm2c_error *err) {
    FILE *f = os_fopen(path, "rb");
    if (!f) return lfm2c_set_error(err, LFM2C_EIO, "cannot open '%s'", path), -1;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        uint8_t *b = lfm2c_grow(buf, &cap, n, 1 << 16, 1, 1 << 16);
        if (!b) {
            rc = -1, lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory reading '%s'", path);
            break;
        }
        buf = b;
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (!rc && ferror(f)) rc = -1, lfm2c_set_error(err, LFM2C_EIO, "read error on '%s'", path);
    fclose(f);
    if (!rc) rc = imatrix_load_bytes(im, buf, n, chunk_size, err);
    free(buf);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b) {
    return strcmp((*(const imatrix_entry *const *)a)->name, (*(const imatrix_entry *const *)b)->name);
}

/* The entries with data sorted by name (malloc'd, *n of them; an entry a failed merge or hook
 * left empty is not among them), or NULL when out of memory. */
static const imatrix_entry **sorted(const imatrix *im, uint32_t *n) {
    const imatrix_entry **v = malloc((im->n ? im->n : 1) * sizeof *v);
    if (!v) return NULL;
    *n = 0;
    for (uint32_t i = 0; i < im->n; i++)
        if (im->e[i].sums && im->e[i].n_counts) v[(*n)++] = &im->e[i];
    qsort(v, *n, sizeof *v, cmp_entry);
    return v;
}

static bool save_gguf(const imatrix *im, const imatrix_entry **v, uint32_t n, const char *path, int chunk_size,
                      lfm2c_error *err) {
    gguf_writer *w = gguf_writer_new();
    bool ok = w && gguf_set_str(w, "general.type", "imatrix") &&
              gguf_set_arr_str(w, "imatrix.datasets", (const char *const *)im->datasets, im->n_datasets) &&
              gguf_set_u32(w, "imatrix.chunk_count", (uint32_t)imatrix_chunk_count(im, chunk_size)) &&
              gguf_set_u32(w, "imatrix.chunk_size", (uint32_t)chunk_size);
    if (!ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    char name[128];
    for (uint32_t i = 0; ok && i < n; i++) {
        const int64_t ns[2] = {v[i]->n_vals / v[i]->n_counts, v[i]->n_counts}, nc[2] = {1, v[i]->n_counts};
        const uint32_t dims = v[i]->n_counts > 1 ? 2 : 1; /* ggml's: trailing sizes of 1 are not dimensions */
        snprintf(name, sizeof name, "%s%s", v[i]->name, SUMS);
        ok = gguf_add_tensor(w, name, GGML_F32, dims, ns, err);
        snprintf(name, sizeof name, "%s%s", v[i]->name, COUNTS);
        ok = ok && gguf_add_tensor(w, name, GGML_F32, dims, nc, err);
    }
    ok = ok && gguf_writer_open(w, path, err);
    for (uint32_t i = 0; ok && i < n; i++) {
        ok = gguf_write_data(w, v[i]->sums, (size_t)v[i]->n_vals * 4, err);
        for (uint32_t j = 0; ok && j < v[i]->n_counts; j++) {
            const float c = (float)v[i]->counts[j];
            ok = gguf_write_data(w, &c, 4, err);
        }
    }
    ok = ok && gguf_writer_finish(w, err);
    gguf_writer_free(w);
    return ok;
}

static bool put_i32(FILE *f, int64_t v) {
    const int32_t x = (int32_t)v;
    return fwrite(&x, 4, 1, f) == 1;
}

/* One legacy entry: each sum / its count * ncall, ncall the chunks its largest count covers. */
static bool save_legacy_entry(FILE *f, const imatrix_entry *e, int chunk_size) {
    int64_t max = 0;
    for (uint32_t j = 0; j < e->n_counts; j++)
        if (e->counts[j] > max) max = e->counts[j];
    const int32_t ncall = (int32_t)((max + chunk_size - 1) / chunk_size);
    const size_t len = strlen(e->name), per = e->n_vals / e->n_counts;
    bool ok =
        put_i32(f, (int64_t)len) && fwrite(e->name, 1, len, f) == len && put_i32(f, ncall) && put_i32(f, e->n_vals);
    for (uint32_t i = 0; ok && i < e->n_vals; i++) {
        float count = (float)e->counts[i / per], value = e->sums[i];
        if (count == 0.0f) value = 1.0f, count = 1.0f; /* an expert never chosen: all ones */
        const float out = (value / count) * (float)ncall;
        ok = fwrite(&out, 4, 1, f) == 1;
    }
    return ok;
}

static bool save_legacy(const imatrix *im, const imatrix_entry **v, uint32_t n, const char *path, int chunk_size,
                        lfm2c_error *err) {
    char *tmp = malloc(strlen(path) + 5);
    FILE *f = tmp ? (sprintf(tmp, "%s.tmp", path), os_fopen(tmp, "wb")) : NULL;
    if (!f) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot write '%s'", path);
        free(tmp);
        return false;
    }
    int64_t with = 0;
    for (uint32_t i = 0; i < n; i++) { /* entries without any count are left out */
        uint32_t j = 0;
        while (j < v[i]->n_counts && !v[i]->counts[j]) j++;
        with += j < v[i]->n_counts;
    }
    bool ok = put_i32(f, with);
    for (uint32_t i = 0; ok && i < n; i++) {
        uint32_t j = 0;
        while (j < v[i]->n_counts && !v[i]->counts[j]) j++;
        if (j < v[i]->n_counts) ok = save_legacy_entry(f, v[i], chunk_size);
    }
    const char *d = im->n_datasets ? im->datasets[im->n_datasets - 1] : "";
    ok = ok && put_i32(f, imatrix_chunk_count(im, chunk_size)) && put_i32(f, (int64_t)strlen(d)) &&
         fwrite(d, 1, strlen(d), f) == strlen(d);
    ok = fclose(f) == 0 && ok;
    if (ok && os_rename(tmp, path)) ok = false;
    if (!ok) lfm2c_set_error(err, LFM2C_EIO, "cannot write '%s'", path), os_remove(tmp);
    free(tmp);
    return ok;
}

bool imatrix_save(const imatrix *im, const char *path, bool legacy, int chunk_size, lfm2c_error *err) {
    if (chunk_size < 1) return lfm2c_set_error(err, LFM2C_EINVAL, "imatrix: chunk size %d", chunk_size), false;
    uint32_t n = 0;
    const imatrix_entry **v = sorted(im, &n);
    if (!v) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), false;
    bool ok = legacy ? save_legacy(im, v, n, path, chunk_size, err) : save_gguf(im, v, n, path, chunk_size, err);
    free(v);
    return ok;
}

/* ---- statistics ------------------------------------------------------------------------------- */

/* layer and tensor as the reference names them: the dotted part after "blk" and the one before
 * "weight" ("blk.0.shortconv.in_proj.weight": 0, in_proj); "-" and the whole name without them */
static void stat_names(imatrix_stat *t) {
    const char *n = t->e->name, *w = strstr(n, ".weight");
    int len = 0;
    t->blk = -1;
    snprintf(t->layer, sizeof t->layer, "-");
    snprintf(t->tensor, sizeof t->tensor, "%s", n);
    if (!strncmp(n, "blk.", 4) && sscanf(n + 4, "%d%n", &t->blk, &len) == 1 && n[4 + len] == '.')
        snprintf(t->layer, sizeof t->layer, "%.*s", len, n + 4);
    else t->blk = -1;
    if (w && w > n && (w[7] == '.' || !w[7])) {
        const char *b = w;
        while (b > n && b[-1] != '.') b--;
        snprintf(t->tensor, sizeof t->tensor, "%.*s", (int)(w - b), b);
    }
}

/* One entry's figures; false when it has no data. */
static bool stat_of(imatrix_stat *t, float *act) {
    const imatrix_entry *e = t->e;
    const uint32_t per = e->n_vals / e->n_counts;
    int n = 0;
    for (uint32_t i = 0; i < e->n_counts; i++)
        for (uint32_t j = 0; e->counts[i] && j < per; j++) act[n++] = e->sums[i * per + j] / (float)e->counts[i];
    if (!n) return false;
    float total = 0, sq = 0, max = act[0], min = act[0], entropy = 0;
    int inactive = 0, above = 0;
    for (int i = 0; i < n; i++) {
        total += act[i], sq += act[i] * act[i];
        if (act[i] > max) max = act[i];
        if (act[i] < min) min = act[i];
        inactive += fabsf(act[i]) <= 1e-5f;
    }
    const float mean = total / (float)n, var = sq / (float)n - mean * mean, dev = sqrtf(var > 0 ? var : 0);
    for (int i = 0; total > 0 && i < n; i++) {
        const float p = act[i] / total;
        if (p > 0) entropy -= p * log2f(p);
    }
    for (int i = 0; dev > 0 && i < n; i++) above += (act[i] - mean) / dev > 1;
    *t = (imatrix_stat){.e = e,
                        .total = total,
                        .mean = mean,
                        .max = max,
                        .min = min,
                        .stddev = dev,
                        .active = 1 - (float)inactive / (float)n,
                        .entropy = entropy,
                        .zd = (float)above / (float)n,
                        .elements = n};
    stat_names(t);
    return true;
}

static float dot(const float *a, const float *b, uint32_t n) {
    float s = 0;
    for (uint32_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static int cmp_stat(const void *pa, const void *pb) {
    const imatrix_stat *a = pa, *b = pb;
    const int c = strcmp(a->tensor, b->tensor);
    return c ? c : (a->total < b->total) - (a->total > b->total);
}

imatrix_stat *imatrix_stats(const imatrix *im, int *n) {
    uint32_t widest = 1;
    for (uint32_t i = 0; i < im->n; i++)
        if (im->e[i].n_vals > widest) widest = im->e[i].n_vals;
    imatrix_stat *v = malloc((im->n ? im->n : 1) * sizeof *v);
    float *act = malloc(widest * sizeof *act);
    if (!v || !act) return free(v), free(act), NULL;
    *n = 0;
    for (uint32_t i = 0; i < im->n; i++) {
        v[*n].e = &im->e[i];
        if (im->e[i].n_counts && im->e[i].n_vals % im->e[i].n_counts == 0 && stat_of(&v[*n], act)) (*n)++;
    }
    free(act);
    for (int i = 0; i < *n; i++) { /* the same tensor one block earlier */
        if (v[i].blk < 1) continue;
        char prev[160];
        const char *rest = strchr(v[i].e->name + 4, '.');
        snprintf(prev, sizeof prev, "blk.%d%s", v[i].blk - 1, rest);
        const imatrix_entry *p = imatrix_find(im, prev);
        const imatrix_entry *c = v[i].e;
        if (!p || p->n_vals != c->n_vals) continue;
        const float d = dot(c->sums, p->sums, c->n_vals);
        v[i].cossim = d / (sqrtf(dot(c->sums, c->sums, c->n_vals)) * sqrtf(dot(p->sums, p->sums, p->n_vals)));
    }
    qsort(v, (size_t)*n, sizeof *v, cmp_stat);
    return v;
}
