/* synth_mm.c — what the random mmproj writers share (synth_vl.c: LFM2-VL's vision tower,
 * synth_audio.c: LFM2-Audio's encoder; synth_impl.h): the tensor list they build, the tensor data
 * (synth_fill: each tensor seeded from its name and the seed, so a file does not depend on the
 * order it is written in; synth_encode: F32, F16 or Q8_0), the general.* keys and the write
 * itself (header, then every tensor's data), and the tiny language model the tiny presets pair
 * with. */
#include "base/error.h"
#include "convert/synth_impl.h"
#include "formats/ggml_types.h"
#include "formats/gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the tiny language model of lfm2-vl-tiny and lfm2-audio-tiny: test fixtures, not a real shape */
static const synth_config TINY_LM = {.arch = "lfm2",
                                     .hidden = 64,
                                     .n_layer = 3,
                                     .n_head = 4,
                                     .n_head_kv = 2,
                                     .ff = 128,
                                     .vocab = 512,
                                     .ctx = 4096,
                                     .n_attn = 1,
                                     .attn_layers = {1},
                                     .rope_theta = 1e6f,
                                     .norm_eps = 1e-5f,
                                     .l_cache = 3};

bool synth_mm_lm(const char *lm_preset, const char *name, synth_config *lm) {
    if (!lm_preset) *lm = TINY_LM;
    else if (!synth_preset(lm_preset, lm)) return false;
    snprintf(lm->name, sizeof lm->name, "%s", name);
    return true;
}

void synth_mm_put(synth_mm_list *l, const char *name, int kind, float sigma, uint32_t nd, int64_t a, int64_t b,
                  int64_t c, int64_t d) {
    if (l->n == l->cap) return;
    synth_mm_tensor *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne[0] = a, t->ne[1] = b, t->ne[2] = c, t->ne[3] = d;
    t->n_dims = nd, t->kind = kind, t->sigma = sigma;
}

/* ---- data ---------------------------------------------------------------------------------- */

void synth_fill(const char *name, bool norm, float sigma, uint64_t seed, float *x, int64_t n) {
    uint64_t s = synth_hash_str(name, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = norm ? 0.9f + 0.2f * (float)(synth_splitmix64(&s) >> 40) / 16777216.0f : sigma * synth_gauss(&s);
}

void synth_encode(uint32_t type, const float *x, int64_t n, uint8_t *out) {
    if (type == GGML_F32) memcpy(out, x, (size_t)n * sizeof *x);
    else if (type == GGML_F16)
        for (int64_t i = 0; i < n; i++) ((ggml_half *)out)[i] = f32_to_fp16(x[i]);
    else quantize_row_q8_0(x, (block_q8_0 *)out, n);
}

/* ---- the file ------------------------------------------------------------------------------ */

bool synth_mm_type_ok(uint32_t wtype, lfm2c_error *err) {
    if (wtype == GGML_F32 || wtype == GGML_F16 || wtype == GGML_Q8_0) return true;
    lfm2c_set_error(err, LFM2C_EINVAL, "the mmproj's type must be f32, f16 or q8_0");
    return false;
}

static bool write_general(gguf_writer *w, const char *name, uint32_t wtype, uint64_t seed) {
    char desc[128];
    snprintf(desc, sizeof desc, "random weights, seed %llu, written by lfm2c synth", (unsigned long long)seed);
    const uint32_t ftype = wtype == GGML_F32 ? 0 : wtype == GGML_F16 ? 1 : 7;
    return gguf_set_str(w, "general.architecture", "clip") && gguf_set_str(w, "general.type", "mmproj") &&
           gguf_set_str(w, "general.name", name) && gguf_set_str(w, "general.description", desc) &&
           gguf_set_u32(w, "general.file_type", ftype);
}

static bool write_tensors(gguf_writer *w, const synth_mm_list *l, uint64_t seed, lfm2c_error *err) {
    bool ok = true;
    for (int i = 0; ok && i < l->n; i++) {
        const synth_mm_tensor *t = &l->t[i];
        const int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        float *x = malloc((size_t)n * sizeof *x);
        uint8_t *b = malloc(ggml_row_size(t->type, n));
        if (!x || !b) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            ok = false;
        } else {
            synth_fill(t->name, t->kind == SYNTH_MM_NORM, t->sigma, seed, x, n);
            synth_encode(t->type, x, n, b);
            ok = gguf_write_data(w, b, ggml_row_size(t->type, n), err);
        }
        free(x);
        free(b);
    }
    return ok;
}

bool synth_mm_write(const synth_mm_spec *s, const void *cfg, uint32_t wtype, uint64_t seed, const char *path,
                    lfm2c_error *err) {
    synth_mm_list l = {.cap = s->cap};
    l.t = calloc((size_t)l.cap, sizeof *l.t);
    gguf_writer *w = gguf_writer_new();
    bool ok = l.t && w && write_general(w, s->name, wtype, seed) && s->meta(w, cfg);
    if (!ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    if (ok) s->build(&l, cfg);
    for (int i = 0; ok && i < l.n; i++) {
        l.t[i].type = s->type_of(&l.t[i], wtype);
        ok = gguf_add_tensor(w, l.t[i].name, l.t[i].type, l.t[i].n_dims, l.t[i].ne, err);
    }
    ok = ok && gguf_writer_open(w, path, err) && write_tensors(w, &l, seed, err) && gguf_writer_finish(w, err);
    gguf_writer_free(w);
    free(l.t);
    return ok;
}
