/* gguf_write.c — streaming GGUF v3 writer (see gguf_write.h). Each metadata value is kept
 * already encoded (the bytes that follow its type field in the file), so writing the header is a
 * plain copy and copying a key from a reader is a re-encode of what gguf.h parsed. */
#include "base/error.h"
#include "formats/gguf_write.h"
#include "formats/ggml_types.h"
#include "base/os.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC 0x46554747u
#define GGUF_VERSION 3u
#define GGUF_DEFAULT_ALIGN 32u
#define GGUF_MAX_NAME 64

typedef struct wkv {
    char *key;
    uint32_t type; /* enum gguf_vtype */
    uint8_t *val;  /* encoded value */
    size_t len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    uint64_t alignment;
    /* output state */
    FILE *f;
    char *path, *tmp_path;
    uint64_t cur;      /* tensor being written */
    uint64_t cur_done; /* bytes of it written so far */
    bool failed;
};


gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGN;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        os_remove(w->tmp_path);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

/* ---- metadata ---------------------------------------------------------------------------- */

static long find_key(const gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return (long)i;
    return -1;
}

/* Takes ownership of val (freed on failure). */
static bool put(gguf_writer *w, const char *key, uint32_t type, uint8_t *val, size_t len) {
    if (!val && len) return false;
    long i = find_key(w, key);
    if (i >= 0) {
        free(w->kv[i].val);
        w->kv[i].type = type;
        w->kv[i].val = val;
        w->kv[i].len = len;
        return true;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            free(val);
            return false;
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val);
        return false;
    }
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return true;
}

static bool put_scalar(gguf_writer *w, const char *key, uint32_t type, const void *v) {
    size_t sz = gguf_vtype_size(type);
    uint8_t *val = malloc(sz);
    if (!val) return false;
    memcpy(val, v, sz);
    return put(w, key, type, val, sz);
}

bool gguf_set_u8(gguf_writer *w, const char *k, uint8_t v) { return put_scalar(w, k, GGUF_U8, &v); }
bool gguf_set_i8(gguf_writer *w, const char *k, int8_t v) { return put_scalar(w, k, GGUF_I8, &v); }
bool gguf_set_u16(gguf_writer *w, const char *k, uint16_t v) { return put_scalar(w, k, GGUF_U16, &v); }
bool gguf_set_i16(gguf_writer *w, const char *k, int16_t v) { return put_scalar(w, k, GGUF_I16, &v); }
bool gguf_set_u32(gguf_writer *w, const char *k, uint32_t v) { return put_scalar(w, k, GGUF_U32, &v); }
bool gguf_set_i32(gguf_writer *w, const char *k, int32_t v) { return put_scalar(w, k, GGUF_I32, &v); }
bool gguf_set_f32(gguf_writer *w, const char *k, float v) { return put_scalar(w, k, GGUF_F32, &v); }
bool gguf_set_u64(gguf_writer *w, const char *k, uint64_t v) { return put_scalar(w, k, GGUF_U64, &v); }
bool gguf_set_i64(gguf_writer *w, const char *k, int64_t v) { return put_scalar(w, k, GGUF_I64, &v); }
bool gguf_set_f64(gguf_writer *w, const char *k, double v) { return put_scalar(w, k, GGUF_F64, &v); }
bool gguf_set_bool(gguf_writer *w, const char *k, bool v) {
    uint8_t b = v ? 1 : 0;
    return put_scalar(w, k, GGUF_BOOL, &b);
}

bool gguf_set_strn(gguf_writer *w, const char *key, const char *s, uint64_t n) {
    uint8_t *val = malloc(8 + n);
    if (!val) return false;
    memcpy(val, &n, 8);
    if (n) memcpy(val + 8, s, n);
    return put(w, key, GGUF_STR, val, 8 + n);
}

bool gguf_set_str(gguf_writer *w, const char *key, const char *s) { return gguf_set_strn(w, key, s, strlen(s)); }

bool gguf_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, uint64_t n) {
    size_t es = gguf_vtype_size(elem_type);
    if (es == 0 || n > (SIZE_MAX - 12) / es) return false;
    size_t len = 12 + n * es;
    uint8_t *val = malloc(len);
    if (!val) return false;
    memcpy(val, &elem_type, 4);
    memcpy(val + 4, &n, 8);
    if (n) memcpy(val + 12, elems, n * es);
    return put(w, key, GGUF_ARR, val, len);
}

bool gguf_set_arr_gstr(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n) {
    size_t len = 12;
    for (uint64_t i = 0; i < n; i++) len += 8 + strs[i].n;
    uint8_t *val = malloc(len), *p = val;
    if (!val) return false;
    uint32_t et = GGUF_STR;
    memcpy(p, &et, 4);
    memcpy(p + 4, &n, 8);
    p += 12;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(p, &strs[i].n, 8);
        if (strs[i].n) memcpy(p + 8, strs[i].p, strs[i].n);
        p += 8 + strs[i].n;
    }
    return put(w, key, GGUF_ARR, val, len);
}

bool gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    gguf_str *g = malloc((n ? n : 1) * sizeof *g);
    if (!g) return false;
    for (uint64_t i = 0; i < n; i++) g[i] = (gguf_str){strs[i], strlen(strs[i])};
    bool ok = gguf_set_arr_gstr(w, key, g, n);
    free(g);
    return ok;
}

bool gguf_set_kv(gguf_writer *w, const gguf_kv *kv) {
    if (kv->type == GGUF_STR) return kv->strs && gguf_set_strn(w, kv->key, kv->strs[0].p, kv->strs[0].n);
    if (kv->type == GGUF_ARR) {
        if (kv->arr_type == GGUF_STR) return kv->strs && gguf_set_arr_gstr(w, kv->key, kv->strs, kv->n);
        return gguf_set_arr(w, kv->key, kv->arr_type, kv->data, kv->n);
    }
    if (gguf_vtype_size(kv->type) == 0) return false;
    return put_scalar(w, kv->key, kv->type, kv->data);
}

bool gguf_remove_key(gguf_writer *w, const char *key) {
    long i = find_key(w, key);
    if (i < 0) return false;
    free(w->kv[i].key);
    free(w->kv[i].val);
    memmove(w->kv + i, w->kv + i + 1, (w->n_kv - (size_t)i - 1) * sizeof *w->kv);
    w->n_kv--;
    return true;
}

bool gguf_writer_has_key(const gguf_writer *w, const char *key) { return find_key(w, key) >= 0; }
uint64_t gguf_writer_n_kv(const gguf_writer *w) { return w->n_kv; }

/* ---- tensors ----------------------------------------------------------------------------- */

bool gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                     lfm2c_error *err) {
    if (w->f) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tensor '%s' declared after the file was opened", name);
        return false;
    }
    size_t nl = strlen(name);
    if (nl == 0 || nl >= GGUF_MAX_NAME) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tensor name '%s' must have 1..%d bytes", name, GGUF_MAX_NAME - 1);
        return false;
    }
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': unknown type %u", name, type);
        return false;
    }
    if (n_dims < 1 || n_dims > 4) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tensor '%s': %u dims", name, n_dims);
        return false;
    }
    wtensor t = {0};
    t.type = type;
    t.n_dims = n_dims;
    uint64_t nelem = 1;
    for (int d = 0; d < 4; d++) {
        t.ne[d] = d < (int)n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0 || (uint64_t)t.ne[d] > (UINT64_MAX >> 8) / nelem) {
            lfm2c_set_error(err, LFM2C_EINVAL, "tensor '%s': bad dimension %lld", name, (long long)t.ne[d]);
            return false;
        }
        nelem *= (uint64_t)t.ne[d];
    }
    size_t row = ggml_row_size(type, t.ne[0]);
    if (row == 0) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tensor '%s': ne0 = %lld is not a multiple of %s's block of %d", name,
                        (long long)t.ne[0], ti->name, ti->block_size);
        return false;
    }
    t.nbytes = (uint64_t)row * (nelem / (uint64_t)t.ne[0]);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) {
            lfm2c_set_error(err, LFM2C_EINVAL, "duplicate tensor '%s'", name);
            return false;
        }
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            return false;
        }
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    w->t[w->n_t++] = t;
    return true;
}

uint64_t gguf_writer_n_tensors(const gguf_writer *w) { return w->n_t; }
uint64_t gguf_writer_tensor_nbytes(const gguf_writer *w, uint64_t i) { return i < w->n_t ? w->t[i].nbytes : 0; }
uint64_t gguf_writer_cur_tensor(const gguf_writer *w) { return w->cur; }

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Alignment from general.alignment when it is a u32 power of two. */
static uint64_t alignment_of(const gguf_writer *w) {
    long i = find_key(w, "general.alignment");
    if (i >= 0 && w->kv[i].type == GGUF_U32) {
        uint32_t a;
        memcpy(&a, w->kv[i].val, 4);
        if (a && !(a & (a - 1))) return a;
    }
    return GGUF_DEFAULT_ALIGN;
}

static uint64_t header_size(const gguf_writer *w) {
    uint64_t n = 24;
    for (size_t i = 0; i < w->n_kv; i++) n += 8 + strlen(w->kv[i].key) + 4 + w->kv[i].len;
    for (size_t i = 0; i < w->n_t; i++) n += 8 + strlen(w->t[i].name) + 4 + 8 * w->t[i].n_dims + 4 + 8;
    return n;
}

/* Assigns offsets; returns the data section's size. */
static uint64_t layout(gguf_writer *w) {
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off = pad_to(off + w->t[i].nbytes, w->alignment);
    }
    return off;
}

uint64_t gguf_writer_file_size(const gguf_writer *w) {
    gguf_writer *mw = (gguf_writer *)w; /* layout only fills offsets: idempotent */
    mw->alignment = alignment_of(w);
    return pad_to(header_size(w), mw->alignment) + layout(mw);
}

/* ---- output ------------------------------------------------------------------------------ */

static bool out(gguf_writer *w, const void *p, size_t n, lfm2c_error *err) {
    if (w->failed) {
        lfm2c_set_error(err, LFM2C_EIO, "write to '%s' failed earlier", w->tmp_path);
        return false;
    }
    if (n && fwrite(p, 1, n, w->f) != n) {
        w->failed = true;
        lfm2c_set_error(err, LFM2C_EIO, "write to '%s' failed: %s", w->tmp_path, strerror(errno));
        return false;
    }
    return true;
}

static bool out_str(gguf_writer *w, const char *s, lfm2c_error *err) {
    uint64_t n = strlen(s);
    return out(w, &n, 8, err) && out(w, s, n, err);
}

static bool out_zeros(gguf_writer *w, uint64_t n, lfm2c_error *err) {
    static const uint8_t zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (!out(w, zeros, k, err)) return false;
        n -= k;
    }
    return true;
}

bool gguf_writer_open(gguf_writer *w, const char *path, lfm2c_error *err) {
    if (w->f || w->path) {
        lfm2c_set_error(err, LFM2C_EINVAL, "writer already opened");
        return false;
    }
    os_stat_t st;
    if (os_stat(path, &st) == 0 && !st.is_file) { /* a device or a folder: never renamed over */
        lfm2c_set_error(err, LFM2C_EINVAL,
                        "'%s' is not a regular file: the output is written beside it, then renamed over it", path);
        return false;
    }
    w->alignment = alignment_of(w);
    layout(w);
    w->path = strdup(path);
    w->tmp_path = malloc(strlen(path) + 5);
    if (!w->path || !w->tmp_path) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    sprintf(w->tmp_path, "%s.tmp", path);
    w->f = os_fopen(w->tmp_path, "wb");
    if (!w->f) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot create '%s': %s", w->tmp_path, strerror(errno));
        return false;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    uint32_t magic = GGUF_MAGIC, version = GGUF_VERSION;
    uint64_t nt = w->n_t, nkv = w->n_kv;
    if (!out(w, &magic, 4, err) || !out(w, &version, 4, err) || !out(w, &nt, 8, err) || !out(w, &nkv, 8, err))
        return false;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!out_str(w, w->kv[i].key, err) || !out(w, &w->kv[i].type, 4, err) ||
            !out(w, w->kv[i].val, w->kv[i].len, err))
            return false;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t ne[4];
        for (int d = 0; d < 4; d++) ne[d] = (uint64_t)t->ne[d];
        if (!out_str(w, t->name, err) || !out(w, &t->n_dims, 4, err) || !out(w, ne, 8 * t->n_dims, err) ||
            !out(w, &t->type, 4, err) || !out(w, &t->offset, 8, err))
            return false;
    }
    uint64_t h = header_size(w);
    return out_zeros(w, pad_to(h, w->alignment) - h, err);
}

bool gguf_write_data(gguf_writer *w, const void *data, size_t n, lfm2c_error *err) {
    if (!w->f) {
        lfm2c_set_error(err, LFM2C_EINVAL, "writer not opened");
        return false;
    }
    const uint8_t *p = data;
    while (n) {
        if (w->cur >= w->n_t) {
            lfm2c_set_error(err, LFM2C_EINVAL, "more tensor data written than declared");
            return false;
        }
        const wtensor *t = &w->t[w->cur];
        uint64_t left = t->nbytes - w->cur_done;
        size_t k = n < left ? n : (size_t)left;
        if (!out(w, p, k, err)) return false;
        p += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == t->nbytes) {
            if (!out_zeros(w, pad_to(t->nbytes, w->alignment) - t->nbytes, err)) return false;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return true;
}

bool gguf_writer_finish(gguf_writer *w, lfm2c_error *err) {
    if (!w->f) {
        lfm2c_set_error(err, LFM2C_EINVAL, "writer not opened");
        return false;
    }
    if (w->cur < w->n_t) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tensor '%s' and %llu after it were not written", w->t[w->cur].name,
                        (unsigned long long)(w->n_t - w->cur - 1));
        return false;
    }
    if (w->failed) {
        lfm2c_set_error(err, LFM2C_EIO, "write to '%s' failed", w->tmp_path);
        return false;
    }
    FILE *f = w->f;
    w->f = NULL;
    if (fflush(f) != 0 || ferror(f)) {
        lfm2c_set_error(err, LFM2C_EIO, "write to '%s' failed: %s", w->tmp_path, strerror(errno));
        fclose(f);
        os_remove(w->tmp_path);
        return false;
    }
    if (fclose(f) != 0) {
        lfm2c_set_error(err, LFM2C_EIO, "closing '%s' failed: %s", w->tmp_path, strerror(errno));
        os_remove(w->tmp_path);
        return false;
    }
    if (os_rename(w->tmp_path, w->path) != 0) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot rename '%s' to '%s': %s", w->tmp_path, w->path, strerror(errno));
        os_remove(w->tmp_path);
        return false;
    }
    return true;
}
