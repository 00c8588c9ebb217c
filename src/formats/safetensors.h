/* safetensors.h — read-only view of a Hugging Face checkpoint's safetensors files over mmap.
 * One file (model.safetensors) or shards listed by model.safetensors.index.json. The header of
 * every file is validated when it is opened (JSON shape, dtypes, shapes, offsets inside the
 * data section, no overlaps), so tensor pointers handed out here can be trusted. */
#ifndef LFM2C_SAFETENSORS_H
#define LFM2C_SAFETENSORS_H
#include "formats/name_index.h"

#include "lfm2c.h"
#include <stdint.h>
#include <stddef.h>

enum st_dtype {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_NDTYPES
};

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    int dtype; /* enum st_dtype */
    int n_dims;
    int64_t shape[ST_MAX_DIMS]; /* PyTorch order: shape[n_dims-1] is contiguous */
    int64_t numel;
    const uint8_t *data; /* inside the file mapping */
    uint64_t nbytes;
    int file; /* index into st_model.files */
} st_tensor;

typedef struct st_file {
    char *path;
    uint8_t *map;
    size_t size;
} st_file;

typedef struct st_model {
    int n_files;
    st_file *files;
    int n_tensors;
    st_tensor *tensors; /* in file order (shards in name order, then header order) */
    name_index index;   /* tensor names -> positions */
} st_model;

/* Opens the weights of a checkpoint directory: model.safetensors.index.json if present (every
 * shard it names must exist and hold exactly the tensors it maps to it), else every
 * model*.safetensors file in name order. */
st_model *st_open_dir(const char *dir, lfm2c_error *err);
/* Opens a single safetensors file. */
st_model *st_open_file(const char *path, lfm2c_error *err);
void st_close(st_model *m);

const st_tensor *st_find(const st_model *m, const char *name);
const char *st_dtype_name(int dtype);
size_t st_dtype_size(int dtype);
/* True for the float dtypes st_read_f32 converts (F32, F16, BF16). */
int st_dtype_is_float(int dtype);
/* Converts elements [first, first+n) of a float tensor to f32. */
void st_read_f32(const st_tensor *t, int64_t first, int64_t n, float *out);

#endif
