/* gguf.h — read-only view of a GGUF v2/v3 file over mmap. Every offset, count, length and
 * tensor extent is validated against the file size when the file is opened, so the rest of the
 * engine can trust the pointers it gets from here. */
#ifndef LFM2C_GGUF_H
#define LFM2C_GGUF_H
#include "formats/name_index.h"

#include "lfm2c.h"
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

enum gguf_vtype {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STR = 8,
    GGUF_ARR = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_NTYPES
};

typedef struct gguf_str {
    const char *p;
    uint64_t n;
} gguf_str; /* not NUL-terminated */

typedef struct gguf_kv {
    char *key;           /* NUL-terminated copy */
    uint32_t type;       /* enum gguf_vtype */
    uint32_t arr_type;   /* element type when type == GGUF_ARR */
    uint64_t n;          /* element count (1 for scalars) */
    const uint8_t *data; /* value bytes in the mapping (for strings: the u64 length first) */
    gguf_str *strs;      /* string values indexed (type STR: 1 entry; ARR of STR: n entries) */
    char *cstr;          /* NUL-terminated copy of a STR value */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[4];   /* ne[0] fastest; unused dims are 1 */
    uint32_t type;   /* enum ggml_type (quant.h) */
    uint64_t offset; /* relative to the data section */
    const uint8_t *data;
    uint64_t nbytes;
} gguf_tensor;

typedef struct gguf_file {
    uint8_t *map;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
    bool owns_map;     /* false for gguf_open_memory */
    name_index tindex; /* tensor names -> positions */
    /* a split model (NAME-00001-of-0000N.gguf, the first part opened): the other parts, whose
     * tensors are joined into this file's table (their data pointers point into their maps) */
    struct gguf_file **parts;
    uint32_t n_parts;
    bool copied;        /* map is a private huge-page copy (GGUF_OPEN_HUGE_*) ... */
    uint8_t *copy_base; /* ... at this offset (<= 63 bytes) into this 2 MB aligned mapping */
    size_t copy_len;
} gguf_file;

/* Opens a GGUF; the first part of a split model (split.count > 1) opens the other parts
 * (same name with -0000K-of-0000N) too and presents all tensors as one file. */
gguf_file *gguf_open(const char *path, lfm2c_error *err);
/* GGUF_OPEN_HUGE_COPY: read the file into private anonymous memory (2 MB aligned, MADV_HUGEPAGE)
 * instead of mapping it */
enum { GGUF_OPEN_HUGE_COPY = 1, GGUF_OPEN_HUGE_AUTO = 2 };
/* GGUF_OPEN_HUGE_AUTO: copy a file of `size` bytes when gguf_huge_copy_wanted says so for this
 * system (/sys/kernel/mm/transparent_hugepage/enabled and MemAvailable of /proc/meminfo).
 * The rule itself, testable: THP not "[never]" (and known), and mem_available >= size + 1 GiB. */
bool gguf_huge_copy_wanted(uint64_t size, int64_t mem_available, const char *thp_enabled);
/* flags | GGUF_OPEN_READERS(n): a copy is read by n threads at once (the caller and n - 1 more;
 * without it, the caller alone); n is clamped to 1 .. GGUF_MAX_READERS */
enum { GGUF_MAX_READERS = 64 };
#define GGUF_OPEN_READERS(n) ((unsigned)((n) < 1 ? 1 : (n) > GGUF_MAX_READERS ? GGUF_MAX_READERS : (n)) << 8)
#define GGUF_READERS_OF(flags) ((int)((flags) >> 8 & 0xff))
gguf_file *gguf_open_ex(const char *path, unsigned flags, lfm2c_error *err);
/* Parse a GGUF already in memory (not owned; must outlive the result). */
gguf_file *gguf_open_memory(const uint8_t *buf, size_t size, lfm2c_error *err);
void gguf_close(gguf_file *g);
/* A copied file (and every part of a split one) made writable (or read-only again), for the
 * CPU backend to rearrange weights in place; -1 when some part is a shared mapping of the file. */
int gguf_set_writable(gguf_file *g, bool writable);
/* Where a copy puts the file (0..63 bytes into its 2 MB aligned mapping) so that the largest
 * share of tensor bytes starts on a 64-byte cache line. */
size_t gguf_copy_shift(const gguf_file *g);
/* Maps every page of the file now (from the page cache when it is warm), so that no page
 * faults in mid-generation the first time a token routes to an expert. */
void gguf_populate(const gguf_file *g);

const gguf_kv *gguf_find(const gguf_file *g, const char *key);
/* Typed getters: false when absent or not convertible. Integers accept any integer type. */
bool gguf_get_int(const gguf_file *g, const char *key, int64_t *out);
bool gguf_get_float(const gguf_file *g, const char *key, double *out);
bool gguf_get_bool(const gguf_file *g, const char *key, bool *out);
/* String value: a NUL-terminated malloc'd copy (caller frees), NULL if absent. */
char *gguf_get_string(const gguf_file *g, const char *key);
/* Integer array element i (any integer element type). */
bool gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out);
bool gguf_arr_float(const gguf_kv *kv, uint64_t i, double *out);

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
size_t gguf_vtype_size(uint32_t t); /* 0 for STR / ARR */
const char *gguf_vtype_name(uint32_t t);

#endif
