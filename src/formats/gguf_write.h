/* gguf_write.h — streaming GGUF v3 writer. Metadata and tensor declarations are collected in
 * memory (small); tensor data is then streamed to disk in declaration order, so a model never
 * has to be held in RAM. Output goes to PATH.tmp and is renamed to PATH only by
 * gguf_writer_finish: a failed or abandoned write leaves no partial file behind.
 *
 *   gguf_writer *w = gguf_writer_new();
 *   gguf_set_str(w, "general.architecture", "lfm2");  ...
 *   gguf_add_tensor(w, "token_embd.weight", GGML_Q8_0, 2, ne, &err);  ...
 *   gguf_writer_open(w, path, &err);
 *   gguf_write_data(w, bytes, n, &err);  ... (any chunking; tensors back to back)
 *   gguf_writer_finish(w, &err);
 *   gguf_writer_free(w);
 */
#ifndef LFM2C_GGUF_WRITE_H
#define LFM2C_GGUF_WRITE_H

#include "formats/gguf.h"
#include "lfm2c.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
/* Frees everything; if the file was opened but not finished, the temporary file is removed. */
void gguf_writer_free(gguf_writer *w);

/* ---- metadata: a key set twice keeps its first position and takes the new value. All return
 * false only when out of memory (or, for gguf_set_kv, on a kv the reader could not describe). */
bool gguf_set_u8(gguf_writer *w, const char *key, uint8_t v);
bool gguf_set_i8(gguf_writer *w, const char *key, int8_t v);
bool gguf_set_u16(gguf_writer *w, const char *key, uint16_t v);
bool gguf_set_i16(gguf_writer *w, const char *key, int16_t v);
bool gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
bool gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
bool gguf_set_f32(gguf_writer *w, const char *key, float v);
bool gguf_set_bool(gguf_writer *w, const char *key, bool v);
bool gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
bool gguf_set_i64(gguf_writer *w, const char *key, int64_t v);
bool gguf_set_f64(gguf_writer *w, const char *key, double v);
bool gguf_set_str(gguf_writer *w, const char *key, const char *s);
bool gguf_set_strn(gguf_writer *w, const char *key, const char *s, uint64_t n);
/* Array of a fixed-size element type (not STR / ARR): n elements, little-endian in memory. */
bool gguf_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, uint64_t n);
/* Array of strings: NUL-terminated C strings, or (pointer, length) pairs. */
bool gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
bool gguf_set_arr_gstr(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n);
/* Copies a key/value as read by gguf.h (any type, arrays included). */
bool gguf_set_kv(gguf_writer *w, const gguf_kv *kv);
/* Removes a key; false if it was not set. */
bool gguf_remove_key(gguf_writer *w, const char *key);
bool gguf_writer_has_key(const gguf_writer *w, const char *key);
uint64_t gguf_writer_n_kv(const gguf_writer *w);

/* ---- tensors: declared before gguf_writer_open; ne[0] must be a multiple of the type's block
 * size, names unique and shorter than 64 bytes (the reference loader's limit). */
bool gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                     lfm2c_error *err);
uint64_t gguf_writer_n_tensors(const gguf_writer *w);
/* Bytes of tensor i's data as declared. */
uint64_t gguf_writer_tensor_nbytes(const gguf_writer *w, uint64_t i);
/* Bytes the whole file will have. */
uint64_t gguf_writer_file_size(const gguf_writer *w);

/* ---- output */
/* Creates PATH.tmp and writes header, metadata and tensor infos. The alignment is
 * general.alignment if set (a power of two), else 32. */
bool gguf_writer_open(gguf_writer *w, const char *path, lfm2c_error *err);
/* Appends tensor data: the tensors' bytes back to back in declaration order, split across calls
 * in any way; the padding between tensors is inserted here. */
bool gguf_write_data(gguf_writer *w, const void *data, size_t n, lfm2c_error *err);
/* Index of the tensor the next data byte belongs to (== n_tensors when all are written). */
uint64_t gguf_writer_cur_tensor(const gguf_writer *w);
/* Checks that every tensor was written, flushes, closes and renames PATH.tmp to PATH. */
bool gguf_writer_finish(gguf_writer *w, lfm2c_error *err);

#endif
