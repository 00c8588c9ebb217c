/* gguf.c — GGUF reader over mmap. Parsing walks the header with a bounds-checked cursor; any
 * count, length or offset that points past the end of the file is an error, never a read. */
#include "base/error.h"
#include "base/hugemem.h"
#include "formats/gguf.h"
#include "formats/ggml_types.h"
#include "base/os.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */


size_t gguf_vtype_size(uint32_t t) {
    static const size_t sz[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_NTYPES ? sz[t] : 0;
}

const char *gguf_vtype_name(uint32_t t) {
    static const char *names[GGUF_NTYPES] = {"u8",   "i8",  "u16", "i16", "u32", "i32", "f32",
                                             "bool", "str", "arr", "u64", "i64", "f64"};
    return t < GGUF_NTYPES ? names[t] : "?";
}

typedef struct cursor {
    const uint8_t *base;
    size_t size, pos;
    bool bad;
} cursor;

static bool need(cursor *c, uint64_t n) {
    if (c->bad || n > c->size - c->pos) {
        c->bad = true;
        return false;
    }
    return true;
}
static uint32_t rd_u32(cursor *c) {
    uint32_t v = 0;
    if (need(c, 4)) {
        memcpy(&v, c->base + c->pos, 4);
        c->pos += 4;
    }
    return v;
}
static uint64_t rd_u64(cursor *c) {
    uint64_t v = 0;
    if (need(c, 8)) {
        memcpy(&v, c->base + c->pos, 8);
        c->pos += 8;
    }
    return v;
}
static gguf_str rd_str(cursor *c) {
    gguf_str s = {0, 0};
    uint64_t n = rd_u64(c);
    if (need(c, n)) {
        s.p = (const char *)c->base + c->pos;
        s.n = n;
        c->pos += n;
    }
    return s;
}
static char *dup_str(gguf_str s) {
    char *p = malloc(s.n + 1);
    if (p) {
        memcpy(p, s.p, s.n);
        p[s.n] = 0;
    }
    return p;
}

/* Reads one KV value at the cursor into kv (without the key). On failure either the cursor is
 * bad (the data is truncated or corrupt: the caller says so) or err says why. */
static bool read_value(cursor *c, gguf_kv *kv, lfm2c_error *err) {
    kv->data = c->base + c->pos;
    kv->n = 1;
    if (kv->type == GGUF_STR) {
        kv->strs = malloc(sizeof(gguf_str));
        if (!kv->strs) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            return false;
        }
        kv->strs[0] = rd_str(c);
        if (c->bad) return false;
        kv->cstr = dup_str(kv->strs[0]); /* made now so readers never write to the table */
        if (!kv->cstr) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            return false;
        }
        return true;
    }
    if (kv->type == GGUF_ARR) {
        kv->arr_type = rd_u32(c);
        kv->n = rd_u64(c);
        if (c->bad) return false;
        kv->data = c->base + c->pos;
        if (kv->arr_type == GGUF_STR) {
            /* each string is at least 8 bytes: reject impossible counts before allocating */
            if (kv->n > (c->size - c->pos) / 8) {
                c->bad = true;
                return false;
            }
            kv->strs = malloc((kv->n ? kv->n : 1) * sizeof(gguf_str));
            if (!kv->strs) {
                lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
                return false;
            }
            for (uint64_t i = 0; i < kv->n && !c->bad; i++) kv->strs[i] = rd_str(c);
            return !c->bad;
        }
        size_t es = gguf_vtype_size(kv->arr_type);
        if (es == 0) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "key '%s': unsupported array element type %u", kv->key, kv->arr_type);
            return false;
        }
        if (kv->n > (c->size - c->pos) / es) {
            c->bad = true;
            return false;
        }
        c->pos += kv->n * es;
        return true;
    }
    size_t sz = gguf_vtype_size(kv->type);
    if (sz == 0) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "key '%s': unknown value type %u", kv->key, kv->type);
        return false;
    }
    need(c, sz);
    c->pos += c->bad ? 0 : sz;
    return !c->bad;
}

static const char *tensor_name_at(const void *owner, uint32_t i) { return ((const gguf_file *)owner)->tensors[i].name; }

/* parse's first phase: the magic, the version and the two counts, bounded by the file; the tables
 * allocated. */
static bool parse_header(gguf_file *g, cursor *c, lfm2c_error *err) {
    if (g->size < 24 || rd_u32(c) != GGUF_MAGIC) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "not a GGUF file (bad magic)");
        return false;
    }
    g->version = rd_u32(c);
    if (g->version != 2 && g->version != 3) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "unsupported GGUF version %u (expected 3)", g->version);
        return false;
    }
    g->n_tensors = rd_u64(c);
    g->n_kv = rd_u64(c);
    /* every KV needs >= 12 bytes and every tensor info >= 24: bound the counts by the file */
    if (g->n_kv > g->size / 12 || g->n_tensors > g->size / 24) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "truncated or corrupt GGUF header (n_kv=%llu, n_tensors=%llu do not fit in the file)",
                        (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
        return false;
    }
    g->kv = calloc(g->n_kv + 1, sizeof(gguf_kv));
    g->tensors = calloc(g->n_tensors + 1, sizeof(gguf_tensor));
    if (!g->kv || !g->tensors) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    return true;
}

/* The metadata: every key and value, general.alignment checked and kept. */
static bool parse_kvs(gguf_file *g, cursor *c, lfm2c_error *err) {
    g->alignment = 32;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        gguf_str key = rd_str(c);
        if (c->bad) break;
        kv->key = dup_str(key);
        kv->type = rd_u32(c);
        if (c->bad || !kv->key) break;
        if (!read_value(c, kv, err)) {
            if (!c->bad) return false; /* read_value said why; a bad cursor is reported below */
            break;
        }
        if (!strcmp(kv->key, "general.alignment")) {
            int64_t a;
            if (!gguf_arr_int(kv, 0, &a) || a <= 0 || (a & (a - 1)) || a > 65536) {
                lfm2c_set_error(err, LFM2C_EFORMAT, "invalid general.alignment");
                return false;
            }
            g->alignment = (uint64_t)a;
        }
    }
    if (c->bad) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "truncated or corrupt GGUF metadata");
        return false;
    }
    return true;
}

/* Tensor t's type, its row against the type's block, its byte count (with overflow checks) and the
 * alignment of its offset. */
static bool tensor_size(const gguf_file *g, gguf_tensor *t, lfm2c_error *err) {
    const ggml_type_info *ti = t->type < GGML_NTYPES ? ggml_type_get(t->type) : NULL; /* not an internal layout */
    if (!ti) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tensor '%s': unknown tensor type %u", t->name, t->type);
        return false;
    }
    if (t->ne[0] % ti->block_size) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': row of %lld not a multiple of the %s block (%d)", t->name,
                        (long long)t->ne[0], ti->name, ti->block_size);
        return false;
    }
    /* nbytes = rows * row size, with overflow checks */
    uint64_t rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2];
    if (rows > ((uint64_t)1 << 40) || (uint64_t)t->ne[3] > ((uint64_t)1 << 20)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': too large", t->name);
        return false;
    }
    rows *= (uint64_t)t->ne[3];
    uint64_t row = (uint64_t)t->ne[0] / ti->block_size * ti->type_size;
    if (row && rows > UINT64_MAX / row) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': too large", t->name);
        return false;
    }
    t->nbytes = rows * row;
    if (t->offset % g->alignment) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': misaligned data offset", t->name);
        return false;
    }
    return true;
}

/* One tensor info at the cursor into t: 0 when read, 1 when the cursor went bad (the caller says so),
 * -1 with err set. */
static int parse_tensor_info(const gguf_file *g, cursor *c, gguf_tensor *t, lfm2c_error *err) {
    gguf_str name = rd_str(c);
    t->n_dims = rd_u32(c);
    if (c->bad) return 1;
    t->name = dup_str(name);
    if (!t->name) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return -1;
    }
    if (t->n_dims == 0 || t->n_dims > 4) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': bad dimension count %u", t->name, t->n_dims);
        return -1;
    }
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne = rd_u64(c);
        if (ne == 0 || ne > ((uint64_t)1 << 40)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s': bad dimension %llu", t->name, (unsigned long long)ne);
            return -1;
        }
        t->ne[d] = (int64_t)ne;
    }
    t->type = rd_u32(c);
    t->offset = rd_u64(c);
    if (c->bad) return 1;
    return tensor_size(g, t, err) ? 0 : -1;
}

/* The tensor table, one info after another. */
static bool parse_tensors(gguf_file *g, cursor *c, lfm2c_error *err) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int r = parse_tensor_info(g, c, &g->tensors[i], err);
        if (r < 0) return false;
        if (r > 0) break;
    }
    if (c->bad) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "truncated or corrupt GGUF tensor table");
        return false;
    }
    return true;
}

/* The data section after the table: each tensor's bytes inside the file, its name indexed once. */
static bool place_tensors(gguf_file *g, const cursor *c, lfm2c_error *err) {
    g->data_offset = (c->pos + g->alignment - 1) / g->alignment * g->alignment;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (g->data_offset > g->size || t->offset > g->size - g->data_offset ||
            t->nbytes > g->size - g->data_offset - t->offset) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "tensor '%s' extends past the end of the file (truncated file?)",
                            t->name);
            return false;
        }
        t->data = g->map + g->data_offset + t->offset;
        int r = i < UINT32_MAX ? name_index_add(&g->tindex, (uint32_t)i, tensor_name_at, g, NULL) : -1;
        if (r) {
            lfm2c_set_error(err, r > 0 ? LFM2C_EFORMAT : LFM2C_ENOMEM,
                            r > 0 ? "duplicate tensor name '%s'" : "out of memory (%s)", t->name);
            return false;
        }
    }
    return true;
}

/* The whole header: parse_header, parse_kvs, parse_tensors, place_tensors. */
static gguf_file *parse(gguf_file *g, lfm2c_error *err) {
    cursor c = {g->map, g->size, 0, false};
    if (!parse_header(g, &c, err) || !parse_kvs(g, &c, err) || !parse_tensors(g, &c, err) || !place_tensors(g, &c, err))
        return NULL;
    return g;
}

static void free_tables(gguf_file *g) {
    name_index_free(&g->tindex);
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free(g->kv[i].strs);
            free(g->kv[i].cstr);
        }
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
}

/* The copy is read in chunks claimed one at a time by n_readers threads: the kernel zeroes each
 * fresh 2 MB page and copies the page cache into it in the reading thread (on a virtual machine
 * that is also where the host backs the page), so two readers copy a cached file nearly twice
 * as fast as one (docs/HARDWARE.md "What the code's choices measured"). A chunk is a quarter of a reader's share,
 * 1 to 64 MB (whole MB). */
typedef struct copy_job {
    os_fd fd;
    uint8_t *dst; /* the file's first byte in the copy */
    size_t size, chunk;
    atomic_size_t next; /* next chunk to claim */
    atomic_int err;     /* first errno (or -1: short read); 0 while all went well */
} copy_job;

static size_t copy_chunk(size_t size, int n_readers) {
    const size_t mb = (size_t)1 << 20, c = size / (4 * (size_t)n_readers) / mb * mb;
    return c < mb ? mb : c > 64 * mb ? 64 * mb : c;
}

static void *copy_reader(void *arg) {
    copy_job *j = arg;
    for (size_t c; !atomic_load(&j->err) && (c = atomic_fetch_add(&j->next, 1)) * j->chunk < j->size;) {
        const size_t off = c * j->chunk, end = j->size - off > j->chunk ? off + j->chunk : j->size;
        for (size_t o = off; o < end;) {
            int64_t n = os_pread(j->fd, j->dst + o, end - o, o);
            if (n <= 0) {
                int none = 0;
                atomic_compare_exchange_strong(&j->err, &none, n < 0 ? (errno ? errno : EIO) : -1);
                return NULL;
            }
            o += (size_t)n;
        }
    }
    return NULL;
}

/* A private anonymous copy of the file, asked for in transparent huge pages before the first
 * touch (MADV_HUGEPAGE), filled with pread by n_readers threads (the caller among them; fewer
 * when threads cannot be started): the weights then sit in 2 MB pages where the kernel gives
 * them, whatever happened to the page cache. The mapping is 2 MB aligned and the file starts
 * `shift` bytes into it (copy_shift), so that the weights start on cache lines. *len: the
 * mapping's length. NULL (err set) on failure. */
static uint8_t *huge_copy(os_fd fd, size_t size, size_t shift, int n_readers, const char *path, size_t *len,
                          lfm2c_error *err) {
    uint8_t *p = huge_alloc(size + shift, len);
    if (!p) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "cannot allocate %zu bytes for the weights' copy", size + shift);
        return NULL;
    }
    if (n_readers < 1) n_readers = 1;
    copy_job j = {.fd = fd, .dst = p + shift, .size = size, .chunk = copy_chunk(size, n_readers)};
    pthread_t th[GGUF_MAX_READERS];
    int started = 0;
    const size_t chunks = (size + j.chunk - 1) / j.chunk;
    while (started + 1 < n_readers && (size_t)started + 1 < chunks &&
           pthread_create(&th[started], NULL, copy_reader, &j) == 0)
        started++;
    copy_reader(&j);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    const int e = atomic_load(&j.err);
    if (e) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot read '%s': %s", path, e > 0 ? strerror(e) : "short read");
        huge_free(p, *len);
        return NULL;
    }
    os_protect(p, *len, false);
    return p;
}

/* Where the copy should put the file (0..COPY_ALIGN-1 bytes in) so that the most tensor bytes
 * start on a cache line: GGUF aligns tensors to 32 bytes by default, and a 64-byte vector load
 * that straddles two lines slows the decode kernels (docs/HARDWARE.md "What the code's choices measured"). */
enum { COPY_ALIGN = 64 };
size_t gguf_copy_shift(const gguf_file *g) {
    double bytes[COPY_ALIGN] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++)
        bytes[(g->data_offset + g->tensors[i].offset) % COPY_ALIGN] += (double)g->tensors[i].nbytes;
    int best = 0;
    for (int m = 1; m < COPY_ALIGN; m++)
        if (bytes[m] > bytes[best]) best = m;
    return (size_t)(COPY_ALIGN - best) % COPY_ALIGN;
}

int gguf_set_writable(gguf_file *g, bool writable) {
    for (uint32_t i = 0; i < g->n_parts; i++)
        if (!g->parts[i]->copied) return -1;
    if (!g->copied) return -1;
    if (os_protect(g->copy_base, g->copy_len, writable)) return -1;
    for (uint32_t i = 0; i < g->n_parts; i++)
        if (gguf_set_writable(g->parts[i], writable)) return -1;
    return 0;
}

bool gguf_huge_copy_wanted(uint64_t size, int64_t mem_available, const char *thp_enabled) {
    if (!thp_enabled || !strchr(thp_enabled, '[') || strstr(thp_enabled, "[never]")) return false;
    return mem_available >= 0 && (uint64_t)mem_available >= size + (1ull << 30);
}

/* this system's answer for a file of `size` bytes */
static bool huge_copy_here(uint64_t size) {
    char thp[128];
    os_huge_pages_mode(thp, sizeof thp);
    return gguf_huge_copy_wanted(size, os_mem_available(), thp);
}

static gguf_file *open_one(const char *path, unsigned flags, lfm2c_error *err) {
    os_fd fd = os_open_read(path);
    if (fd == OS_FD_NONE) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    const int64_t fsize = os_fd_size(fd);
    if (fsize < 0) {
        lfm2c_set_error(err, LFM2C_EIO, "'%s' is not a regular file", path);
        os_fd_close(fd);
        return NULL;
    }
    if (fsize < 24) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "'%s' is not a GGUF file (only %lld bytes)", path, (long long)fsize);
        os_fd_close(fd);
        return NULL;
    }
    const bool copy =
        (flags & GGUF_OPEN_HUGE_COPY) || ((flags & GGUF_OPEN_HUGE_AUTO) && huge_copy_here((uint64_t)fsize));
    uint8_t *map = os_map_read(fd, (size_t)fsize);
    if (!map) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot map '%s': %s", path, strerror(errno));
        os_fd_close(fd);
        return NULL;
    }
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) {
        os_unmap(map, (size_t)fsize);
        os_fd_close(fd);
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    g->map = map;
    g->size = (size_t)fsize;
    g->owns_map = true;
    bool ok = parse(g, err);
    /* a copy is placed by what the table says (gguf_copy_shift), then parsed again: the
     * metadata values and tensor pointers point into the bytes (one header, milliseconds) */
    if (ok && copy) {
        const size_t shift = gguf_copy_shift(g);
        free_tables(g);
        memset(g, 0, sizeof *g);
        os_unmap(map, (size_t)fsize);
        size_t len;
        uint8_t *base = huge_copy(fd, (size_t)fsize, shift, GGUF_READERS_OF(flags), path, &len, err);
        if (!base) {
            free(g);
            os_fd_close(fd);
            return NULL;
        }
        g->copy_base = base;
        g->copy_len = len;
        g->copied = true;
        g->map = base + shift;
        g->size = (size_t)fsize;
        g->owns_map = true;
        ok = parse(g, err);
    }
    os_fd_close(fd);
    if (!ok) {
        if (err) {
            char msg[sizeof err->msg];
            memcpy(msg, err->msg, sizeof msg);
            snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", path, msg);
        }
        gguf_close(g);
        return NULL;
    }
    return g;
}

/* the path of part k of a split whose first part is `first` (…-00001-of-0000N.gguf) */
static char *part_path(const char *first, int k, int count) {
    size_t n = strlen(first);
    const char *tail = n >= 20 ? first + n - 20 : NULL; /* "-00001-of-00003.gguf" */
    int a, b, used = 0;
    if (!tail || sscanf(tail, "-%5d-of-%5d.gguf%n", &a, &b, &used) != 2 || used != 20 || a != 1 || b != count)
        return NULL;
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, first, n - 20);
    snprintf(p + n - 20, 21, "-%05d-of-%05d.gguf", k, count);
    return p;
}

/* joins the tensors of parts 2..count into g (part 1) */
static bool join_split(gguf_file *g, const char *path, int64_t count, unsigned flags, lfm2c_error *err) {
    if (count < 2 || count > 9999) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%.300s: split.count %lld is out of range", path, (long long)count);
        return false;
    }
    g->parts = calloc((size_t)count - 1, sizeof *g->parts);
    if (!g->parts) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    uint64_t total = g->n_tensors;
    for (int k = 2; k <= count; k++) {
        char *pp = part_path(path, k, (int)count);
        if (!pp) {
            lfm2c_set_error(err, LFM2C_EFORMAT,
                            "%.300s: split.count is %lld but the name does not end in -00001-of-%05lld.gguf", path,
                            (long long)count, (long long)count);
            return false;
        }
        gguf_file *p = open_one(pp, flags, err);
        int64_t no = -1;
        if (p && (!gguf_get_int(p, "split.no", &no) || no != k - 1)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "%.300s: split.no is %lld, expected %d", pp, (long long)no, k - 1);
            gguf_close(p);
            p = NULL;
        }
        free(pp);
        if (!p) return false;
        g->parts[g->n_parts++] = p;
        total += p->n_tensors;
    }
    int64_t declared;
    if (gguf_get_int(g, "split.tensors.count", &declared) && (uint64_t)declared != total) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%.300s: split.tensors.count is %lld but the parts hold %llu tensors", path,
                        (long long)declared, (unsigned long long)total);
        return false;
    }
    gguf_tensor *all = realloc(g->tensors, (size_t)(total ? total : 1) * sizeof *all);
    if (!all) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    g->tensors = all;
    for (uint32_t k = 0; k < g->n_parts; k++) { /* move the tensors (and their names) over */
        gguf_file *p = g->parts[k];
        for (uint64_t i = 0; i < p->n_tensors; i++) {
            all[g->n_tensors] = p->tensors[i];
            p->tensors[i].name = NULL;
            uint32_t dup = 0;
            int r = g->n_tensors < UINT32_MAX
                        ? name_index_add(&g->tindex, (uint32_t)g->n_tensors, tensor_name_at, g, &dup)
                        : -1;
            g->n_tensors++;
            if (r) {
                lfm2c_set_error(err, r < 0 ? LFM2C_ENOMEM : LFM2C_EFORMAT,
                                "%.300s: tensor '%.100s' appears in two parts", path, all[g->n_tensors - 1].name);
                return false;
            }
        }
        name_index_free(&p->tindex);
        p->n_tensors = 0;
    }
    return true;
}

gguf_file *gguf_open(const char *path, lfm2c_error *err) { return gguf_open_ex(path, 0, err); }

gguf_file *gguf_open_ex(const char *path, unsigned flags, lfm2c_error *err) {
    if (!path) return lfm2c_set_error(err, LFM2C_EINVAL, "no file name"), NULL;
    gguf_file *g = open_one(path, flags, err);
    int64_t count = 1, no = 0;
    if (!g || !gguf_get_int(g, "split.count", &count) || count == 1) return g;
    if (!gguf_get_int(g, "split.no", &no) || no != 0) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%.300s is part %lld of a split model: open the first part (-00001-of-...)",
                        path, (long long)no + 1);
        gguf_close(g);
        return NULL;
    }
    if (!join_split(g, path, count, flags, err)) {
        gguf_close(g);
        return NULL;
    }
    return g;
}

gguf_file *gguf_open_memory(const uint8_t *buf, size_t size, lfm2c_error *err) {
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    g->map = (uint8_t *)buf;
    g->size = size;
    if (!parse(g, err)) {
        free_tables(g);
        free(g);
        return NULL;
    }
    return g;
}

void gguf_populate(const gguf_file *g) {
    for (uint32_t k = 0; k < g->n_parts; k++) gguf_populate(g->parts[k]);
    os_advise(g->map, g->size, OS_ADV_HUGE); /* file pages in large folios where the kernel does that */
    if (os_advise(g->map, g->size, OS_ADV_POPULATE) == 0) return;
    os_advise(g->map, g->size, OS_ADV_WILLNEED);
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    free_tables(g);
    if (g->copied) huge_free(g->copy_base, g->copy_len);
    else if (g->map && g->owns_map) os_unmap(g->map, g->size);
    for (uint32_t k = 0; k < g->n_parts; k++) gguf_close(g->parts[k]);
    free(g->parts);
    free(g);
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

static bool scalar_int(uint32_t type, const uint8_t *p, int64_t *out) {
    switch (type) {
    case GGUF_U8: *out = *p; return true;
    case GGUF_I8: *out = (int8_t)*p; return true;
    case GGUF_BOOL: *out = *p != 0; return true;
    case GGUF_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return true;
    }
    case GGUF_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return true;
    }
    case GGUF_U32: {
        uint32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return true;
    }
    case GGUF_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return true;
    }
    case GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        *out = (int64_t)v;
        return true;
    }
    case GGUF_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        *out = v;
        return true;
    }
    default: return false;
    }
}

bool gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out) {
    if (kv->type != GGUF_ARR) return i == 0 && scalar_int(kv->type, kv->data, out);
    if (i >= kv->n) return false;
    return scalar_int(kv->arr_type, kv->data + i * gguf_vtype_size(kv->arr_type), out);
}

bool gguf_arr_float(const gguf_kv *kv, uint64_t i, double *out) {
    uint32_t t = kv->type == GGUF_ARR ? kv->arr_type : kv->type;
    if (kv->type == GGUF_ARR ? i >= kv->n : i != 0) return false;
    const uint8_t *p = kv->data + (kv->type == GGUF_ARR ? i * gguf_vtype_size(t) : 0);
    if (t == GGUF_F32) {
        float v;
        memcpy(&v, p, 4);
        *out = v;
        return true;
    }
    if (t == GGUF_F64) {
        double v;
        memcpy(&v, p, 8);
        *out = v;
        return true;
    }
    int64_t v;
    if (scalar_int(t, p, &v)) {
        *out = (double)v;
        return true;
    }
    return false;
}

bool gguf_get_int(const gguf_file *g, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && kv->type != GGUF_ARR && scalar_int(kv->type, kv->data, out);
}

bool gguf_get_float(const gguf_file *g, const char *key, double *out) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && kv->type != GGUF_ARR && gguf_arr_float(kv, 0, out);
}

bool gguf_get_bool(const gguf_file *g, const char *key, bool *out) {
    int64_t v;
    if (!gguf_get_int(g, key, &v)) return false;
    *out = v != 0;
    return true;
}

char *gguf_get_string(const gguf_file *g, const char *key) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_STR) return NULL;
    return dup_str(kv->strs[0]);
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    if (g->tindex.n == g->n_tensors && g->n_tensors) {
        long i = name_index_find(&g->tindex, name, tensor_name_at, g);
        return i >= 0 ? &g->tensors[i] : NULL;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}
