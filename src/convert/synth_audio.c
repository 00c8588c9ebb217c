/* synth_audio.c — random-weight LFM2-Audio parts (synth.h): an audio mmproj GGUF laid out as
 * llama.cpp's converter writes one for Lfm2AudioForConditionalGeneration (architecture "clip",
 * projector type "lfm2a", the clip.audio.* keys, the a.* Conformer tensors, the mm.a.mlp
 * adapter and a.position_embd), of a preset's shapes, and the language model preset each pairs
 * with. The types follow the converter: a linear layer's weight takes the type asked (F32, F16
 * or Q8_0; F16 where its width is not whole Q8_0 blocks); every convolution weight stays F32
 * (its tensor_force_quant), as do the attention's position biases (no ".weight" suffix),
 * a.position_embd and every vector. Matrices are N(0, 1/sqrt(fan_in)) (the blocks' output
 * projections further / sqrt(2L)), norms and the folded batch norm's scale U(0.9, 1.1), biases
 * N(0, 0.02), each tensor seeded from its name and the seed (synth_fill); the file is written by synth_mm.c. */
#include "base/error.h"
#include "convert/synth.h"
#include "convert/synth_impl.h"
#include "formats/ggml_types.h"
#include "formats/gguf_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/os.h" /* strcasecmp */

typedef struct audio_preset {
    const char *name, *lm; /* the language model preset it pairs with (NULL: synth_mm.c's tiny one) */
    synth_audio_config a;
} audio_preset;

/* LFM2-Audio-1.5B: LFM2-1.2B behind a FastConformer of 17 blocks of 512 (8 heads, feed-forward
 * 2048, 128 mel bins, subsampling channels 256, depthwise kernel 9; canary-180m-flash's encoder),
 * the adapter 512 -> 2048 -> 2048, and 8 codebooks x 2049 audio codes (the model card, the
 * converter's config facts). The tiny one keeps the width 512 (llama.cpp's graph fixes the
 * relative position table at 512) and shrinks the rest. */
static const audio_preset AUDIO_PRESETS[] = {
    {"lfm2-audio-1.5b", "lfm2-1.2b", {512, 2048, 8, 17, 128, 256, 9, 2048, 2048, 8 * 2049}},
    {"lfm2-audio-tiny", NULL, {512, 64, 8, 2, 128, 32, 9, 64, 64, 4096}},
};

bool synth_audio_preset(const char *name, synth_config *lm, synth_audio_config *a) {
    for (size_t i = 0; i < sizeof AUDIO_PRESETS / sizeof *AUDIO_PRESETS; i++)
        if (!strcasecmp(name, AUDIO_PRESETS[i].name)) {
            *a = AUDIO_PRESETS[i].a;
            return synth_mm_lm(AUDIO_PRESETS[i].lm, AUDIO_PRESETS[i].name, lm);
        }
    return false;
}

const char *synth_audio_preset_list(void) { return "lfm2-audio-1.5b, lfm2-audio-tiny"; }

/* ---- tensors ----------------------------------------------------------------------------------- */

enum { K_MAT = SYNTH_MM_MAT, K_F32MAT = SYNTH_MM_F32MAT, K_NORM = SYNTH_MM_NORM, K_BIAS = SYNTH_MM_BIAS };

static float inv_sqrt(int64_t n) { return 1.0f / sqrtf((float)n); }

/* A linear layer (weight of n_in -> n_out and its bias) of the block il (il < 0: global name). */
static void linear(synth_mm_list *l, const char *base, int kind, float sigma, int64_t n_in, int64_t n_out, bool bias) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.weight", base);
    synth_mm_put(l, nm, kind, sigma, 2, n_in, n_out, 1, 1);
    if (!bias) return;
    snprintf(nm, sizeof nm, "%s.bias", base);
    synth_mm_put(l, nm, K_BIAS, 0.02f, 1, n_out, 1, 1, 1);
}

static void norm(synth_mm_list *l, const char *base, int64_t n) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.weight", base);
    synth_mm_put(l, nm, K_NORM, 0, 1, n, 1, 1, 1);
    snprintf(nm, sizeof nm, "%s.bias", base);
    synth_mm_put(l, nm, K_BIAS, 0.02f, 1, n, 1, 1, 1);
}

static void put_block(synth_mm_list *l, const synth_audio_config *c, int il) {
    const int64_t E = c->n_embd, F = c->n_ff, H = c->n_head;
    const float s = inv_sqrt(E), r = s / sqrtf(2.0f * (float)c->n_layer), rf = inv_sqrt(F) / sqrtf(2.0f * c->n_layer);
    char b[40], nm[64];
#define B(what) (snprintf(b, sizeof b, "a.blk.%d.%s", il, what), b)
    norm(l, B("ffn_norm"), E);
    linear(l, B("ffn_up"), K_MAT, s, E, F, true), linear(l, B("ffn_down"), K_MAT, rf, F, E, true);
    norm(l, B("ln1"), E);
    linear(l, B("attn_q"), K_MAT, s, E, E, true), linear(l, B("attn_k"), K_MAT, s, E, E, true);
    linear(l, B("attn_v"), K_MAT, s, E, E, true), linear(l, B("attn_out"), K_MAT, r, E, E, true);
    linear(l, B("linear_pos"), K_MAT, s, E, E, false);
    snprintf(nm, sizeof nm, "a.blk.%d.pos_bias_u", il), synth_mm_put(l, nm, K_BIAS, 0.1f, 2, E / H, H, 1, 1);
    snprintf(nm, sizeof nm, "a.blk.%d.pos_bias_v", il), synth_mm_put(l, nm, K_BIAS, 0.1f, 2, E / H, H, 1, 1);
    norm(l, B("norm_conv"), E);
    linear(l, B("conv_pw1"), K_F32MAT, s, E, 2 * E, true);
    snprintf(nm, sizeof nm, "a.blk.%d.conv_dw.weight", il),
        synth_mm_put(l, nm, K_F32MAT, inv_sqrt(c->kernel), 2, c->kernel, E, 1, 1);
    snprintf(nm, sizeof nm, "a.blk.%d.conv_dw.bias", il), synth_mm_put(l, nm, K_BIAS, 0.02f, 1, E, 1, 1, 1);
    norm(l, B("conv_norm"), E);
    linear(l, B("conv_pw2"), K_F32MAT, r, E, E, true);
    norm(l, B("ffn_norm_1"), E);
    linear(l, B("ffn_up_1"), K_MAT, s, E, F, true), linear(l, B("ffn_down_1"), K_MAT, rf, F, E, true);
    norm(l, B("ln2"), E);
#undef B
}

static void put_conv(synth_mm_list *l, int i, int64_t C, bool pointwise) {
    char nm[64];
    snprintf(nm, sizeof nm, "a.conv1d.%d.weight", i);
    if (pointwise) synth_mm_put(l, nm, K_F32MAT, inv_sqrt(C), 4, 1, 1, C, C);
    else synth_mm_put(l, nm, K_F32MAT, 1.0f / 3.0f, 4, 3, 3, 1, C);
    snprintf(nm, sizeof nm, "a.conv1d.%d.bias", i);
    synth_mm_put(l, nm, K_BIAS, 0.02f, 3, 1, 1, C, 1);
}

static void build(synth_mm_list *l, const void *cfg) {
    const synth_audio_config *c = cfg;
    const int64_t C = c->sub_ch, f8 = (((c->n_mel + 1) / 2 + 1) / 2 + 1) / 2, E = c->n_embd; /* the mel axis / 8 */
    put_conv(l, 0, C, false), put_conv(l, 2, C, false), put_conv(l, 3, C, true);
    put_conv(l, 5, C, false), put_conv(l, 6, C, true);
    linear(l, "a.pre_encode.out", K_MAT, inv_sqrt(C * f8), C * f8, E, true);
    for (int il = 0; il < c->n_layer; il++) put_block(l, c, il);
    norm(l, "mm.a.mlp.0", E);
    linear(l, "mm.a.mlp.1", K_MAT, inv_sqrt(E), E, c->mm_hidden, true);
    linear(l, "mm.a.mlp.3", K_MAT, inv_sqrt(c->mm_hidden), c->mm_hidden, c->proj_dim, true);
    synth_mm_put(l, "a.position_embd.weight", K_F32MAT, 0.5f, 2, c->proj_dim, c->code_rows, 1, 1);
}

static uint32_t type_of(const synth_mm_tensor *t, uint32_t wtype) {
    if (t->kind != K_MAT || wtype == GGML_F32) return GGML_F32;
    if (wtype == GGML_F16 || t->ne[0] % 32) return GGML_F16;
    return wtype;
}

/* ---- the file ------------------------------------------------------------------------------------ */

static bool write_meta(gguf_writer *w, const void *cfg) {
    const synth_audio_config *c = cfg;
    return gguf_set_bool(w, "clip.has_audio_encoder", true) &&
           gguf_set_u32(w, "clip.audio.projection_dim", (uint32_t)c->proj_dim) &&
           gguf_set_u32(w, "clip.audio.embedding_length", (uint32_t)c->n_embd) &&
           gguf_set_u32(w, "clip.audio.feed_forward_length", (uint32_t)c->n_embd) && /* as the converter: d_model */
           gguf_set_u32(w, "clip.audio.block_count", (uint32_t)c->n_layer) &&
           gguf_set_u32(w, "clip.audio.attention.head_count", (uint32_t)c->n_head) &&
           gguf_set_str(w, "clip.projector_type", "lfm2a") &&
           gguf_set_u32(w, "clip.audio.num_mel_bins", (uint32_t)c->n_mel) &&
           gguf_set_f32(w, "clip.audio.attention.layer_norm_epsilon", 1e-5f);
}

static bool audio_check(const synth_audio_config *c, uint32_t wtype, lfm2c_error *err) {
    if (!synth_mm_type_ok(wtype, err)) return false;
    if (c->n_embd <= 0 || c->n_head <= 0 || c->n_embd % c->n_head || c->n_layer <= 0 || c->n_layer > 256 ||
        c->n_ff <= 0 || c->n_mel <= 0 || c->sub_ch <= 0 || c->kernel <= 0 || !(c->kernel & 1) || c->mm_hidden <= 0 ||
        c->proj_dim <= 0 || c->code_rows <= 0) {
        lfm2c_set_error(err, LFM2C_EINVAL, "inconsistent audio encoder configuration");
        return false;
    }
    return true;
}

bool synth_audio_mmproj_write(const synth_audio_config *c, uint32_t wtype, uint64_t seed, const char *path,
                              lfm2c_error *err) {
    if (!audio_check(c, wtype, err)) return false;
    const synth_mm_spec spec = {"synthetic LFM2-Audio mmproj", 32 + 48 * c->n_layer, build, type_of, write_meta};
    return synth_mm_write(&spec, c, wtype, seed, path, err);
}
