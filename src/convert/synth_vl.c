/* synth_vl.c — random-weight LFM2-VL vision parts (synth.h): an mmproj GGUF laid out as
 * llama.cpp's converter writes one for LFM2-VL (architecture "clip", projector type "lfm2", the
 * clip.vision.* keys, v.* tower tensors and the mm.* projector), of a preset's shapes, and the
 * language model preset each VL preset pairs it with. Matrices are N(0, 1/sqrt(fan_in)) (the
 * blocks' output projections further / sqrt(2L)), norms U(0.9, 1.1), biases N(0, 0.02), the
 * position grid N(0, 0.5), each tensor seeded from its name and the seed, so a file does not
 * depend on the order it is written in. The matrices take the type asked (F32, F16 or Q8_0,
 * quantized from the floats); a matrix whose width is not a whole number of Q8_0 blocks stays
 * F16, the patch kernel (4-D) is F16 unless F32 is asked and the position grid F32, as the
 * reference writes them. */
#include "base/error.h"
#include "convert/synth.h"
#include "convert/synth_impl.h"
#include "formats/ggml_types.h"
#include "formats/gguf_write.h"
#include "base/os.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vl_preset {
    const char *name, *lm; /* the language model preset it pairs with (NULL: synth_mm.c's tiny one) */
    synth_vl_config v;
} vl_preset;

/* SigLIP2 NaFlex towers: the base one (768 wide, 12 blocks) for 450M, the shape-optimised
 * so400m one (1152 wide, 26 blocks) for 1.6B; patch 16, a 16 x 16 position grid, unshuffle 2,
 * the projector 2560 wide into the language model's width. These shapes are read from the
 * published configs and mmproj files (docs/VISION.md); shared/data holds no VL config. */
static const vl_preset VL_PRESETS[] = {
    {"lfm2-vl-450m", "lfm2-350m", {768, 3072, 12, 12, 16, 16, 2, 2560, 1024}},
    {"lfm2-vl-1.6b", "lfm2-1.2b", {1152, 4304, 16, 26, 16, 16, 2, 2560, 2048}},
    {"lfm2-vl-tiny", NULL, {64, 128, 4, 2, 4, 8, 2, 96, 64}},
};

bool synth_vl_preset(const char *name, synth_config *lm, synth_vl_config *v) {
    for (size_t i = 0; i < sizeof VL_PRESETS / sizeof *VL_PRESETS; i++)
        if (!strcasecmp(name, VL_PRESETS[i].name)) {
            *v = VL_PRESETS[i].v;
            if (!synth_mm_lm(VL_PRESETS[i].lm, VL_PRESETS[i].name, lm)) return false;
            lm->vl = true;
            return true;
        }
    return false;
}

const char *synth_vl_preset_list(void) { return "lfm2-vl-450m, lfm2-vl-1.6b, lfm2-vl-tiny"; }

/* ---- tensors ----------------------------------------------------------------------------------- */

enum { K_MAT = SYNTH_MM_MAT, K_NORM = SYNTH_MM_NORM, K_BIAS = SYNTH_MM_BIAS, K_POS = SYNTH_MM_POS };

static void put_block(synth_mm_list *l, const synth_vl_config *c, int il) {
    const int64_t E = c->n_embd, F = c->n_ff;
    const float s = 1.0f / sqrtf((float)E), r = s / sqrtf(2.0f * (float)c->n_layer);
    char nm[64];
#define P(what, kind, sg, nd, a, b) \
    (snprintf(nm, sizeof nm, "v.blk.%d.%s", il, what), synth_mm_put(l, nm, kind, sg, nd, a, b, 1, 1))
    P("ln1.weight", K_NORM, 0, 1, E, 1), P("ln1.bias", K_BIAS, 0.02f, 1, E, 1);
    P("attn_q.weight", K_MAT, s, 2, E, E), P("attn_q.bias", K_BIAS, 0.02f, 1, E, 1);
    P("attn_k.weight", K_MAT, s, 2, E, E), P("attn_k.bias", K_BIAS, 0.02f, 1, E, 1);
    P("attn_v.weight", K_MAT, s, 2, E, E), P("attn_v.bias", K_BIAS, 0.02f, 1, E, 1);
    P("attn_out.weight", K_MAT, r, 2, E, E), P("attn_out.bias", K_BIAS, 0.02f, 1, E, 1);
    P("ln2.weight", K_NORM, 0, 1, E, 1), P("ln2.bias", K_BIAS, 0.02f, 1, E, 1);
    P("ffn_up.weight", K_MAT, s, 2, E, F), P("ffn_up.bias", K_BIAS, 0.02f, 1, F, 1);
    P("ffn_down.weight", K_MAT, 1.0f / sqrtf((float)F) / sqrtf(2.0f * (float)c->n_layer), 2, F, E);
    P("ffn_down.bias", K_BIAS, 0.02f, 1, E, 1);
#undef P
}

static void build(synth_mm_list *l, const void *cfg) {
    const synth_vl_config *c = cfg;
    const int64_t E = c->n_embd, p = c->patch, m = E * c->n_merge * c->n_merge, H = c->mm_hidden;
    synth_mm_put(l, "v.patch_embd.weight", K_MAT, 1.0f / sqrtf(3.0f * (float)(p * p)), 4, p, p, 3, E);
    synth_mm_put(l, "v.patch_embd.bias", K_BIAS, 0.02f, 1, E, 1, 1, 1);
    synth_mm_put(l, "v.position_embd.weight", K_POS, 0.5f, 2, E, (int64_t)c->pos_side * c->pos_side, 1, 1);
    for (int il = 0; il < c->n_layer; il++) put_block(l, c, il);
    synth_mm_put(l, "v.post_ln.weight", K_NORM, 0, 1, E, 1, 1, 1);
    synth_mm_put(l, "v.post_ln.bias", K_BIAS, 0.02f, 1, E, 1, 1, 1);
    synth_mm_put(l, "mm.input_norm.weight", K_NORM, 0, 1, m, 1, 1, 1);
    synth_mm_put(l, "mm.input_norm.bias", K_BIAS, 0.02f, 1, m, 1, 1, 1);
    synth_mm_put(l, "mm.1.weight", K_MAT, 1.0f / sqrtf((float)m), 2, m, H, 1, 1);
    synth_mm_put(l, "mm.1.bias", K_BIAS, 0.02f, 1, H, 1, 1, 1);
    synth_mm_put(l, "mm.2.weight", K_MAT, 1.0f / sqrtf((float)H), 2, H, c->proj_dim, 1, 1);
    synth_mm_put(l, "mm.2.bias", K_BIAS, 0.02f, 1, c->proj_dim, 1, 1, 1);
}

static uint32_t type_of(const synth_mm_tensor *t, uint32_t wtype) {
    if (t->kind != K_MAT || wtype == GGML_F32) return GGML_F32; /* the position grid too: ggml resizes F32 only */
    if (t->n_dims == 4 || wtype == GGML_F16 || t->ne[0] % 32) return GGML_F16;
    return wtype;
}

/* ---- the file ---------------------------------------------------------------------------------- */

static bool write_meta(gguf_writer *w, const void *cfg) {
    const synth_vl_config *c = cfg;
    const float half[3] = {0.5f, 0.5f, 0.5f};
    return gguf_set_str(w, "clip.projector_type", "lfm2") && gguf_set_bool(w, "clip.has_vision_encoder", true) &&
           gguf_set_bool(w, "clip.use_gelu", true) &&
           gguf_set_u32(w, "clip.vision.projection_dim", (uint32_t)c->proj_dim) &&
           gguf_set_u32(w, "clip.vision.image_size", (uint32_t)(c->pos_side * c->patch)) &&
           gguf_set_u32(w, "clip.vision.patch_size", (uint32_t)c->patch) &&
           gguf_set_u32(w, "clip.vision.embedding_length", (uint32_t)c->n_embd) &&
           gguf_set_u32(w, "clip.vision.feed_forward_length", (uint32_t)c->n_ff) &&
           gguf_set_u32(w, "clip.vision.block_count", (uint32_t)c->n_layer) &&
           gguf_set_u32(w, "clip.vision.attention.head_count", (uint32_t)c->n_head) &&
           gguf_set_f32(w, "clip.vision.attention.layer_norm_epsilon", 1e-6f) &&
           gguf_set_arr(w, "clip.vision.image_mean", GGUF_F32, half, 3) &&
           gguf_set_arr(w, "clip.vision.image_std", GGUF_F32, half, 3) &&
           gguf_set_u32(w, "clip.vision.projector.scale_factor", (uint32_t)c->n_merge);
}

static bool vl_check(const synth_vl_config *c, uint32_t wtype, lfm2c_error *err) {
    if (!synth_mm_type_ok(wtype, err)) return false;
    if (c->n_embd <= 0 || c->n_head <= 0 || c->n_embd % c->n_head || c->n_layer <= 0 || c->n_layer > 256 ||
        c->n_ff <= 0 || c->patch <= 0 || c->pos_side <= 0 || c->n_merge <= 0 || c->mm_hidden <= 0 || c->proj_dim <= 0) {
        lfm2c_set_error(err, LFM2C_EINVAL, "inconsistent vision configuration");
        return false;
    }
    return true;
}

bool synth_mmproj_write(const synth_vl_config *c, uint32_t wtype, uint64_t seed, const char *path, lfm2c_error *err) {
    if (!vl_check(c, wtype, err)) return false;
    /* 11 tensors and 16 a block */
    const synth_mm_spec spec = {"synthetic LFM2-VL mmproj", 16 + 16 * c->n_layer, build, type_of, write_meta};
    return synth_mm_write(&spec, c, wtype, seed, path, err);
}
