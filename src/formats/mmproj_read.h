/* mmproj_read.h — the checked reads an mmproj GGUF's readers share (the LFM2-VL image one,
 * vision/mmproj.c, and the LFM2-Audio one, audio/mmproj.c): an integer key within a range, the
 * projector type, a vector copied to F32 whatever float type the file stores it in, a tensor of
 * an exact shape. Each failure sets err (LFM2C_EFORMAT, "mmproj: " and the key or tensor) and
 * returns -1 / NULL; nothing of the file is trusted before its check. */
#ifndef LFM2C_MMPROJ_READ_H
#define LFM2C_MMPROJ_READ_H
#include "lfm2c.h"
#include "formats/gguf.h"

#include <stdbool.h>
#include <stdint.h>

/* An integer key in [lo, hi] into *out; def (>= 0) when absent, else it is required. */
int mmr_int(const gguf_file *g, const char *key, long long lo, long long hi, long long def, int *out, lfm2c_error *err);
/* A float key in (lo, hi) into *out; def when absent (required when def is NaN). */
int mmr_float(const gguf_file *g, const char *key, double lo, double hi, double def, float *out, lfm2c_error *err);
/* The projector type (clip.projector_type, else `alt`, a modality's own key): 0 when it is
 * `want`, else -1 naming what it is and `what` it should be. */
int mmr_type(const gguf_file *g, const char *alt, const char *want, const char *what, lfm2c_error *err);
/* A vector of n values (F32 / F16 / BF16) copied to F32 (malloc'd); NULL with err set and *bad
 * set, or NULL with *bad untouched when it is absent and not required. */
float *mmr_vec(const gguf_file *g, const char *name, int64_t n, bool required, lfm2c_error *err, int *bad);
/* The tensor `name` of exactly the shape ne[0..3] (unused dims 1); NULL with err set. */
const gguf_tensor *mmr_shape(const gguf_file *g, const char *name, const int64_t ne[4], lfm2c_error *err);
#endif
