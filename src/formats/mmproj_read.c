/* mmproj_read.c — the checked key and tensor reads of mmproj_read.h, shared by the image and
 * audio mmproj readers. */
#include "formats/mmproj_read.h"
#include "base/error.h"
#include "formats/ggml_types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) (lfm2c_set_error(err, LFM2C_EFORMAT, "mmproj: " __VA_ARGS__), -1)
#define FAILP(...) (lfm2c_set_error(err, LFM2C_EFORMAT, "mmproj: " __VA_ARGS__), NULL)

int mmr_int(const gguf_file *g, const char *key, long long lo, long long hi, long long def, int *out,
            lfm2c_error *err) {
    int64_t v;
    if (!gguf_get_int(g, key, &v)) {
        if (def < 0) return FAIL("key %s missing", key);
        v = def;
    }
    if (v < lo || v > hi) return FAIL("key %s out of range (%lld)", key, (long long)v);
    *out = (int)v;
    return 0;
}

int mmr_float(const gguf_file *g, const char *key, double lo, double hi, double def, float *out, lfm2c_error *err) {
    double v = def;
    if (!gguf_get_float(g, key, &v) && isnan(def)) return FAIL("key %s missing", key);
    if (!(v > lo && v < hi)) return FAIL("key %s out of range", key);
    *out = (float)v;
    return 0;
}

int mmr_type(const gguf_file *g, const char *alt, const char *want, const char *what, lfm2c_error *err) {
    char *pt = gguf_get_string(g, "clip.projector_type");
    if (!pt && alt) pt = gguf_get_string(g, alt);
    const int rc =
        pt && !strcmp(pt, want) ? 0 : FAIL("projector type '%s' is not %s's '%s'", pt ? pt : "(none)", what, want);
    free(pt);
    return rc;
}

static int64_t n_elems(const gguf_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

float *mmr_vec(const gguf_file *g, const char *name, int64_t n, bool required, lfm2c_error *err, int *bad) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) {
        if (required) (void)FAIL("tensor %s missing", name);
        *bad |= required;
        return NULL;
    }
    if (n_elems(t) != n) {
        *bad = 1;
        return FAILP("tensor %s has %lld values, not %lld", name, (long long)n_elems(t), (long long)n);
    }
    if (t->type != GGML_F32 && t->type != GGML_F16 && t->type != GGML_BF16) {
        *bad = 1;
        return FAILP("vector %s must be F32, F16 or BF16", name);
    }
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        *bad = 1;
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), NULL;
    }
    dequantize_row(t->type, t->data, v, n);
    return v;
}

const gguf_tensor *mmr_shape(const gguf_file *g, const char *name, const int64_t ne[4], lfm2c_error *err) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) return FAILP("tensor %s missing", name);
    if (t->ne[0] != ne[0] || t->ne[1] != ne[1] || t->ne[2] != ne[2] || t->ne[3] != ne[3])
        return FAILP("tensor %s has the wrong shape (%lld x %lld x %lld x %lld, expected %lld x %lld x %lld x %lld)",
                     name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                     (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3]);
    return t;
}
