/* safetensors.c — safetensors reader: 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {...}}, then the data
 * section the offsets point into. Everything is checked before a pointer is handed out. */
#include "base/error.h"
#include "formats/safetensors.h"
#include "formats/ggml_types.h"
#include "base/os.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20) /* the format's own limit on the JSON header */

static const struct {
    const char *name;
    size_t size;
} DTYPES[ST_NDTYPES] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},           [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},       [ST_I32] = {"I32", 4},
    [ST_U32] = {"U32", 4},   [ST_F32] = {"F32", 4},         [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(int dtype) { return dtype >= 0 && dtype < ST_NDTYPES ? DTYPES[dtype].name : "?"; }
size_t st_dtype_size(int dtype) { return dtype >= 0 && dtype < ST_NDTYPES ? DTYPES[dtype].size : 0; }
int st_dtype_is_float(int dtype) { return dtype == ST_F32 || dtype == ST_F16 || dtype == ST_BF16; }

/* set the error and return NULL, so callers can `return fail(...)` */
#define fail(err, ...) \
    ({ \
        lfm2c_set_error(err, __VA_ARGS__); \
        (void *)NULL; \
    })

void st_close(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
    free(m->tensors);
    name_index_free(&m->index);
    for (int i = 0; i < m->n_files; i++) {
        if (m->files[i].map) os_unmap(m->files[i].map, m->files[i].size);
        free(m->files[i].path);
    }
    free(m->files);
    free(m);
}

static const char *tensor_name_at(const void *owner, uint32_t i) { return ((const st_model *)owner)->tensors[i].name; }

const st_tensor *st_find(const st_model *m, const char *name) {
    long i = name_index_find(&m->index, name, tensor_name_at, m);
    return i >= 0 ? &m->tensors[i] : NULL;
}

static int cmp_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* add_file's first phase: maps `path` and appends it to m->files; returns its index, or -1. */
static int map_file(st_model *m, const char *path, lfm2c_error *err) {
    os_fd fd = os_open_read(path);
    if (fd == OS_FD_NONE) return fail(err, LFM2C_EIO, "cannot open '%s': %s", path, strerror(errno)), -1;
    const int64_t fsize = os_fd_size(fd);
    if (fsize < 0) {
        os_fd_close(fd);
        return fail(err, LFM2C_EIO, "'%s' is not a regular file", path), -1;
    }
    size_t size = (size_t)fsize;
    if (size < 8) {
        os_fd_close(fd);
        return fail(err, LFM2C_EFORMAT, "'%s' is truncated (%zu bytes, no safetensors header)", path, size), -1;
    }
    uint8_t *map = os_map_read(fd, size);
    os_fd_close(fd);
    if (!map) return fail(err, LFM2C_EIO, "cannot map '%s': %s", path, strerror(errno)), -1;

    st_file *nf = realloc(m->files, (size_t)(m->n_files + 1) * sizeof *nf);
    if (!nf) {
        os_unmap(map, size);
        return fail(err, LFM2C_ENOMEM, "out of memory"), -1;
    }
    m->files = nf;
    int fi = m->n_files++;
    m->files[fi] = (st_file){.path = strdup(path), .map = map, .size = size};
    if (!m->files[fi].path) return fail(err, LFM2C_ENOMEM, "out of memory"), -1;
    return fi;
}

/* The header of mapped file `f`: its length checked against the file, then its JSON, which must be an
 * object. Sets *hlen; NULL with err set on failure. */
static json_t *read_header(const st_file *f, uint64_t *hlen_out, lfm2c_error *err) {
    const uint8_t *map = f->map;
    size_t size = f->size;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | map[i];
    if (hlen > size - 8 || hlen > ST_MAX_HEADER)
        return fail(err, LFM2C_EFORMAT,
                    "'%s': header length %llu does not fit the file (%zu bytes): truncated or not safetensors", f->path,
                    (unsigned long long)hlen, size);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return fail(err, LFM2C_EFORMAT, "'%s': bad header JSON: %s", f->path, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, LFM2C_EFORMAT, "'%s': header is not a JSON object", f->path);
    }
    *hlen_out = hlen;
    return root;
}

/* The shape of entry `js` into t (n_dims, shape, numel); NULL or why it is refused. */
static const char *entry_shape(st_tensor *t, json_t *js) {
    if (json_array_size(js) > ST_MAX_DIMS) return "too many dimensions";
    t->n_dims = (int)json_array_size(js);
    t->numel = 1;
    for (int d = 0; d < t->n_dims; d++) {
        json_t *e = json_array_get(js, (size_t)d);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > ((int64_t)1 << 40))
            return "bad shape";
        t->shape[d] = json_integer_value(e);
        if (t->shape[d] && t->numel > ((int64_t)1 << 50) / t->shape[d]) return "shape too large";
        t->numel *= t->shape[d];
    }
    return NULL;
}

/* The data offsets `jo` of t against the data section (data, data_size); NULL or why refused. */
static const char *entry_offsets(st_tensor *t, json_t *jo, const uint8_t *data, uint64_t data_size) {
    json_t *b = json_array_get(jo, 0), *e = json_array_get(jo, 1);
    if (!json_is_integer(b) || !json_is_integer(e)) return "bad data_offsets";
    int64_t begin = json_integer_value(b), end = json_integer_value(e);
    if (begin < 0 || end < begin || (uint64_t)end > data_size) return "data_offsets outside the file (truncated?)";
    if ((uint64_t)(end - begin) != (uint64_t)t->numel * DTYPES[t->dtype].size)
        return "data_offsets do not match dtype and shape";
    t->data = data + begin;
    t->nbytes = (uint64_t)(end - begin);
    return NULL;
}

/* One header entry `key`: `val` read into t (name, dtype, shape, offsets) and checked against the tensors
 * m already holds; NULL or why it is refused. */
static const char *read_entry(const st_model *m, st_tensor *t, const char *key, json_t *val, const uint8_t *data,
                              uint64_t data_size) {
    json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
           *jo = json_object_get(val, "data_offsets");
    if (!*key || strlen(key) > 4096) return "bad tensor name";
    if (!json_is_object(val) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2)
        return "entry needs dtype, shape and data_offsets";
    t->dtype = -1;
    for (int d = 0; d < ST_NDTYPES; d++)
        if (!strcmp(json_string_value(jd), DTYPES[d].name)) t->dtype = d;
    if (t->dtype < 0) return "unknown dtype";
    const char *why = entry_shape(t, js);
    if (!why) why = entry_offsets(t, jo, data, data_size);
    if (!why && st_find(m, key)) why = "tensor appears twice";
    return why;
}

/* Appends t, named `key`, to m and its name index (m->tensors has room). */
static bool add_tensor(st_model *m, st_tensor t, const char *key, lfm2c_error *err) {
    t.name = strdup(key);
    if (!t.name) return fail(err, LFM2C_ENOMEM, "out of memory"), false;
    m->tensors[m->n_tensors] = t;
    if (name_index_add(&m->index, (uint32_t)m->n_tensors, tensor_name_at, m, NULL) < 0) {
        free(t.name);
        return fail(err, LFM2C_ENOMEM, "out of memory"), false;
    }
    m->n_tensors++;
    return true;
}

/* Every entry of header `root` of file fi appended to m, in the header's order. */
static bool add_entries(st_model *m, int fi, json_t *root, uint64_t hlen, lfm2c_error *err) {
    const char *path = m->files[fi].path;
    const uint8_t *data = m->files[fi].map + 8 + hlen;
    uint64_t data_size = m->files[fi].size - 8 - hlen;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        st_tensor t = {.file = fi};
        const char *why = read_entry(m, &t, key, val, data, data_size);
        if (why) return fail(err, LFM2C_EFORMAT, "'%s': tensor '%s': %s", path, key, why), false;
        if (!add_tensor(m, t, key, err)) return false;
    }
    return true;
}

/* Tensors first.. of one file must not share bytes. */
static bool check_overlap(const st_model *m, int first, const char *path, lfm2c_error *err) {
    int n = m->n_tensors - first;
    const st_tensor **byoff = malloc((size_t)(n + 1) * sizeof *byoff);
    if (!byoff) return fail(err, LFM2C_ENOMEM, "out of memory"), false;
    for (int i = 0; i < n; i++) byoff[i] = &m->tensors[first + i];
    qsort(byoff, (size_t)n, sizeof *byoff, cmp_begin);
    bool ok = true;
    for (int i = 1; i < n; i++)
        if (byoff[i]->data < byoff[i - 1]->data + byoff[i - 1]->nbytes) {
            fail(err, LFM2C_EFORMAT, "'%s': tensors '%s' and '%s' overlap", path, byoff[i - 1]->name, byoff[i]->name);
            ok = false;
            break;
        }
    free(byoff);
    return ok;
}

/* Maps file `path` and appends its tensors to m: map_file, read_header, add_entries, check_overlap. */
static bool add_file(st_model *m, const char *path, lfm2c_error *err) {
    int fi = map_file(m, path, err);
    if (fi < 0) return false;
    uint64_t hlen = 0;
    json_t *root = read_header(&m->files[fi], &hlen, err);
    if (!root) return false;
    size_t n_new = json_object_size(root);
    st_tensor *nt = realloc(m->tensors, (size_t)(m->n_tensors + n_new + 1) * sizeof *nt);
    if (!nt) {
        json_decref(root);
        return fail(err, LFM2C_ENOMEM, "out of memory"), false;
    }
    m->tensors = nt;
    int first = m->n_tensors;
    bool ok = add_entries(m, fi, root, hlen, err);
    json_decref(root);
    if (!ok) return false;
    return check_overlap(m, first, path, err);
}

st_model *st_open_file(const char *path, lfm2c_error *err) {
    st_model *m = calloc(1, sizeof *m);
    if (!m) return fail(err, LFM2C_ENOMEM, "out of memory");
    if (!add_file(m, path, err)) {
        st_close(m);
        return NULL;
    }
    return m;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sharded checkpoint: open every shard the index names, then check both directions. */
static st_model *open_index(const char *dir, const char *index_path, lfm2c_error *err) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, 0, &jerr);
    if (!root) return fail(err, LFM2C_EFORMAT, "'%s': %s", index_path, jerr.text);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(root);
        return fail(err, LFM2C_EFORMAT, "'%s' has no weight_map", index_path);
    }
    size_t n = json_object_size(wm), n_shards = 0;
    char **shards = calloc(n, sizeof *shards);
    st_model *m = calloc(1, sizeof *m);
    const char *key;
    json_t *val;
    if (!shards || !m) {
        fail(err, LFM2C_ENOMEM, "out of memory");
        goto bad;
    }
    json_object_foreach(wm, key, val) {
        const char *f = json_string_value(val);
        if (!f || !*f || strchr(f, '/') || !strcmp(f, "..")) {
            fail(err, LFM2C_EFORMAT, "'%s': bad shard name for tensor '%s'", index_path, key);
            goto bad;
        }
        shards[n_shards++] = (char *)f;
    }
    /* distinct shard names: sort, then drop adjacent repeats (n log n for 100k-entry indexes) */
    qsort(shards, n_shards, sizeof *shards, cmp_str);
    size_t n_distinct = 0;
    for (size_t i = 0; i < n_shards; i++)
        if (!n_distinct || strcmp(shards[n_distinct - 1], shards[i])) shards[n_distinct++] = shards[i];
    n_shards = n_distinct;
    for (size_t i = 0; i < n_shards; i++) {
        char *p = join(dir, shards[i]);
        if (!p) {
            fail(err, LFM2C_ENOMEM, "out of memory");
            goto bad;
        }
        if (!os_exists(p)) {
            fail(err, LFM2C_EIO, "shard '%s' listed in model.safetensors.index.json is missing from '%s'", shards[i],
                 dir);
            free(p);
            goto bad;
        }
        bool ok = add_file(m, p, err);
        free(p);
        if (!ok) goto bad;
    }
    json_object_foreach(wm, key, val) {
        const st_tensor *t = st_find(m, key);
        const char *f = json_string_value(val);
        if (!t) {
            fail(err, LFM2C_EFORMAT, "tensor '%s' is missing from shard '%s'", key, f);
            goto bad;
        }
        const char *base = strrchr(m->files[t->file].path, '/');
        if (strcmp(base ? base + 1 : m->files[t->file].path, f)) {
            fail(err, LFM2C_EFORMAT, "tensor '%s' is in '%s', the index says '%s'", key, m->files[t->file].path, f);
            goto bad;
        }
    }
    for (int i = 0; i < m->n_tensors; i++)
        if (!json_object_get(wm, m->tensors[i].name)) {
            fail(err, LFM2C_EFORMAT, "tensor '%s' of '%s' is not in model.safetensors.index.json", m->tensors[i].name,
                 m->files[m->tensors[i].file].path);
            goto bad;
        }
    free(shards);
    json_decref(root);
    return m;
bad:
    free(shards);
    json_decref(root);
    st_close(m);
    return NULL;
}

st_model *st_open_dir(const char *dir, lfm2c_error *err) {
    char *index = join(dir, "model.safetensors.index.json");
    if (!index) return fail(err, LFM2C_ENOMEM, "out of memory");
    if (os_exists(index)) {
        st_model *m = open_index(dir, index, err);
        free(index);
        return m;
    }
    free(index);
    os_dir *d = os_opendir(dir);
    if (!d) return fail(err, LFM2C_EIO, "cannot open directory '%s': %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    const char *e;
    bool oom = false;
    while ((e = os_readdir(d))) {
        size_t len = strlen(e);
        if (len < 17 || strncmp(e, "model", 5) || strcmp(e + len - 12, ".safetensors")) continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = strdup(e))) {
            oom = true;
            if (nn) names = nn;
            break;
        }
        names = nn;
        n++;
    }
    os_closedir(d);
    st_model *m = NULL;
    if (oom) fail(err, LFM2C_ENOMEM, "out of memory");
    else if (n == 0) fail(err, LFM2C_EIO, "no model.safetensors or model.safetensors.index.json in '%s'", dir);
    else if ((m = calloc(1, sizeof *m))) {
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n && m; i++) {
            char *p = join(dir, names[i]);
            if (!p || !add_file(m, p, err)) {
                if (!p) fail(err, LFM2C_ENOMEM, "out of memory");
                st_close(m);
                m = NULL;
            }
            free(p);
        }
    } else fail(err, LFM2C_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return m;
}

void st_read_f32(const st_tensor *t, int64_t first, int64_t n, float *out) {
    size_t es = DTYPES[t->dtype].size;
    const uint8_t *p = t->data + (size_t)first * es;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, (size_t)n * 4); break;
    case ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = fp16_to_f32(h);
        }
        break;
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = bf16_to_f32(h);
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++) out[i] = 0; /* callers check st_dtype_is_float first */
    }
}
