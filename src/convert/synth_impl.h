/* synth_impl.h — what the synth files share (convert/synth.c: the language models; synth_mix.c:
 * random valid low-bit blocks; synth_vl.c and synth_audio.c: the vision and audio mmproj files,
 * written by synth_mm.c): the random numbers (splitmix64, a name's FNV-1a hash, a near-normal
 * value from four 16-bit uniforms), and the mmproj writers' tensor list and write. Internal to
 * convert/; the files are the same bytes from every build (they build with -ffp-contract=off). */
#ifndef LFM2C_SYNTH_IMPL_H
#define LFM2C_SYNTH_IMPL_H

#include "lfm2c.h"
#include "convert/synth.h"
#include "formats/gguf_write.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- random numbers ---------------------------------------------------------------------- */

static inline uint64_t synth_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* FNV-1a's steps over the bytes of s from h */
static inline uint64_t synth_hash_str(const char *s, uint64_t h) {
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* approximately N(0,1): sum of four 16-bit uniforms, centred and scaled to unit variance */
static inline float synth_gauss(uint64_t *s) {
    uint64_t r = synth_splitmix64(s);
    float u = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff) + (float)((r >> 32) & 0xffff) + (float)(r >> 48);
    return (u / 65536.0f - 2.0f) * 1.7320508f;
}

/* ---- the mmproj writers (synth_mm.c) ------------------------------------------------------- */

/* What a tensor's values are: a matrix (its type by the writer's rule), a matrix kept F32, a
 * norm's scale U(0.9, 1.1), a bias, a position table; all but norms N(0, sigma). */
enum { SYNTH_MM_MAT, SYNTH_MM_F32MAT, SYNTH_MM_NORM, SYNTH_MM_BIAS, SYNTH_MM_POS };

typedef struct synth_mm_tensor {
    char name[64];
    int64_t ne[4];
    uint32_t n_dims, type;
    int kind;
    float sigma;
} synth_mm_tensor;

typedef struct synth_mm_list {
    synth_mm_tensor *t;
    int n, cap;
} synth_mm_list;

/* Appends a tensor of nd dimensions a, b, c, d (beyond nd: 1); past cap (never: writers size
 * cap for their largest configuration) nothing. */
void synth_mm_put(synth_mm_list *l, const char *name, int kind, float sigma, uint32_t nd, int64_t a, int64_t b,
                  int64_t c, int64_t d);

/* A writer: room for cap tensors, build() lists them from cfg, type_of() gives each its type
 * from the asked wtype, meta() sets the keys after the general.* ones (general.name `name`). */
typedef struct synth_mm_spec {
    const char *name;
    int cap;
    void (*build)(synth_mm_list *l, const void *cfg);
    uint32_t (*type_of)(const synth_mm_tensor *t, uint32_t wtype);
    bool (*meta)(gguf_writer *w, const void *cfg);
} synth_mm_spec;

/* False with a message unless wtype is one an mmproj's matrices take (F32, F16, Q8_0). */
bool synth_mm_type_ok(uint32_t wtype, lfm2c_error *err);
/* The mmproj at path: architecture clip, type mmproj, general.* (the seed in the description),
 * then s's keys and tensors, each tensor's data synth_fill'ed and synth_encode'd. */
bool synth_mm_write(const synth_mm_spec *s, const void *cfg, uint32_t wtype, uint64_t seed, const char *path,
                    lfm2c_error *err);
/* The language model a multimodal preset `name` pairs with: the preset lm_preset, or (NULL) the
 * tiny test model; named `name`. False if lm_preset is unknown. */
bool synth_mm_lm(const char *lm_preset, const char *name, synth_config *lm);

#endif
