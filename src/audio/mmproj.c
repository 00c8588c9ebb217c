/* mmproj.c — an LFM2-Audio mmproj GGUF opened and checked (audio.h), as llama.cpp's converter
 * writes it (Lfm2AudioForConditionalGeneration --mmproj): general.architecture "clip",
 * clip.projector_type "lfm2a", clip.has_audio_encoder, the clip.audio.* sizes (width, heads,
 * blocks, mel bins, projection width, layer-norm epsilon; feed_forward_length is written as the
 * width, the feed-forward's own width is its tensors'), and every tensor the encoder uses:
 * a.conv1d.{0,2,3,5,6} (the subsampling: 3x3 stride-2 convolution, then twice a depthwise 3x3
 * stride-2 and a pointwise 1x1; biases {1, 1, C}), a.pre_encode.out, per block
 * a.blk.N.{ffn_norm, ffn_up, ffn_down, ln1, attn_q, attn_k, attn_v, attn_out, linear_pos,
 * pos_bias_u, pos_bias_v, norm_conv, conv_pw1, conv_dw, conv_norm, conv_pw2, ffn_norm_1,
 * ffn_up_1, ffn_down_1, ln2}, the adapter mm.a.mlp.{0, 1, 3}, and a.position_embd (the audio
 * output's code embeddings, which llama.cpp reads for the projection width and as its bound on
 * a clip's tokens). Shapes against the header and each other, matrices of a type the backend's
 * encoder table multiplies (core/encoder.h), vectors copied to F32 (the convolutions' kernels
 * transposed tap-major), the matrices' pages mapped at open (not by the first clip). A file that
 * fails any check is refused with a message naming the key or tensor. */
#include "audio/audio.h"
#include "base/error.h"
#include "base/os.h"
#include "formats/ggml_types.h"
#include "formats/mmproj_read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { AUD_MAX_EMBD = 8192, AUD_MAX_LAYERS = 256, AUD_MAX_MEL = 256, AUD_MAX_KERNEL = 63 };

#define FAIL(...) (lfm2c_set_error(err, LFM2C_EFORMAT, "mmproj: " __VA_ARGS__), -1)

static int read_hparams(const gguf_file *g, aud_hparams *hp, lfm2c_error *err) {
    memset(hp, 0, sizeof *hp);
    bool audio = false;
    int ff_key = 0;
    gguf_get_bool(g, "clip.has_audio_encoder", &audio);
    if (mmr_type(g, "clip.audio.projector_type", "lfm2a", "LFM2-Audio", err)) return -1;
    if (!audio) return FAIL("the file has no audio encoder (clip.has_audio_encoder)");
    if (mmr_int(g, "clip.audio.embedding_length", 1, AUD_MAX_EMBD, -1, &hp->n_embd, err) ||
        mmr_int(g, "clip.audio.feed_forward_length", 1, 8 * AUD_MAX_EMBD, -1, &ff_key, err) ||
        mmr_int(g, "clip.audio.attention.head_count", 1, 1024, -1, &hp->n_head, err) ||
        mmr_int(g, "clip.audio.block_count", 1, AUD_MAX_LAYERS, -1, &hp->n_layer, err) ||
        mmr_int(g, "clip.audio.num_mel_bins", 1, AUD_MAX_MEL, -1, &hp->n_mel, err) ||
        mmr_int(g, "clip.audio.projection_dim", 1, 8 * AUD_MAX_EMBD, -1, &hp->proj_dim, err) ||
        mmr_float(g, "clip.audio.attention.layer_norm_epsilon", 0, 1, 0.0 / 0.0, &hp->eps, err))
        return -1;
    if (hp->n_embd % hp->n_head) return FAIL("head count %d does not divide the width %d", hp->n_head, hp->n_embd);
    /* llama.cpp's preprocessor for lfm2a (clip.cpp): not in the file */
    hp->sample_rate = 16000, hp->n_fft = 512, hp->win = 400, hp->hop = 160;
    return 0;
}

/* A matrix of n_out rows of n_in (GGUF {n_in, n_out}, or the 1x1 kernel {1, 1, n_in, n_out}). */
static int mat(const aud_model *am, const char *name, int64_t n_in, int64_t n_out, bool kernel, enc_mat *m,
               lfm2c_error *err) {
    const int64_t flat[4] = {n_in, n_out, 1, 1}, k11[4] = {1, 1, n_in, n_out};
    const gguf_tensor *t = mmr_shape(am->gguf, name, kernel ? k11 : flat, err);
    if (!t) return -1;
    const ggml_type_info *ti = ggml_type_get(t->type);
    if (!ti || !am->enc->mat_ok(t->type, n_in, n_out))
        return FAIL("matrix %s has a type the encoder's products cannot take (%s)", name, ti ? ti->name : "unknown");
    *m = (enc_mat){t->data, t->type, n_in, n_out, ggml_row_size(t->type, n_in)};
    return 0;
}

/* A tensor of shape ne copied to F32 (vectors and small kernels). */
static float *vec4(const aud_model *am, const char *name, int64_t a, int64_t b, int64_t c, int64_t d, lfm2c_error *err,
                   int *bad) {
    const int64_t ne[4] = {a, b, c, d};
    if (*bad) return NULL;
    if (!mmr_shape(am->gguf, name, ne, err)) return *bad = 1, NULL;
    return mmr_vec(am->gguf, name, a * b * c * d, true, err, bad);
}

/* rows x taps -> taps x rows, in place (the convolutions read one tap of every channel at once) */
static int taps_major(float *w, int64_t rows, int64_t taps, lfm2c_error *err) {
    if (!w) return 0;
    float *t = malloc(sizeof(float) * (size_t)(rows * taps));
    if (!t) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < taps; k++) t[k * rows + r] = w[r * taps + k];
    memcpy(w, t, sizeof(float) * (size_t)(rows * taps));
    free(t);
    return 0;
}

static int load_layer(aud_model *am, int il, lfm2c_error *err) {
    const int E = am->hp.n_embd, F = am->hp.n_ff, H = am->hp.n_head, K = am->hp.kernel;
    aud_layer *L = &am->layers[il];
    char nm[96];
    int bad = 0;
#define V(field, what, a, b) \
    (snprintf(nm, sizeof nm, "a.blk.%d.%s", il, what), L->field = vec4(am, nm, a, b, 1, 1, err, &bad))
#define M(field, what, ni, no) \
    (void)(bad || (snprintf(nm, sizeof nm, "a.blk.%d.%s.weight", il, what), \
                   bad = mat(am, nm, ni, no, false, &L->field, err) != 0))
    V(ff1_norm_w, "ffn_norm.weight", E, 1), V(ff1_norm_b, "ffn_norm.bias", E, 1);
    V(ff1_up_b, "ffn_up.bias", F, 1), V(ff1_down_b, "ffn_down.bias", E, 1);
    M(ff1_up, "ffn_up", E, F), M(ff1_down, "ffn_down", F, E);
    V(att_norm_w, "ln1.weight", E, 1), V(att_norm_b, "ln1.bias", E, 1);
    V(q_b, "attn_q.bias", E, 1), V(k_b, "attn_k.bias", E, 1), V(v_b, "attn_v.bias", E, 1),
        V(o_b, "attn_out.bias", E, 1);
    V(pos_u, "pos_bias_u", E / H, H), V(pos_v, "pos_bias_v", E / H, H);
    M(q, "attn_q", E, E), M(k, "attn_k", E, E), M(v, "attn_v", E, E), M(o, "attn_out", E, E);
    M(pos, "linear_pos", E, E);
    V(conv_norm_w, "norm_conv.weight", E, 1), V(conv_norm_b, "norm_conv.bias", E, 1);
    V(pw1_b, "conv_pw1.bias", 2 * E, 1), V(pw2_b, "conv_pw2.bias", E, 1);
    M(pw1, "conv_pw1", E, 2 * E), M(pw2, "conv_pw2", E, E);
    V(dw_w, "conv_dw.weight", K, E), V(dw_b, "conv_dw.bias", E, 1);
    V(bn_w, "conv_norm.weight", E, 1), V(bn_b, "conv_norm.bias", E, 1);
    V(ff2_norm_w, "ffn_norm_1.weight", E, 1), V(ff2_norm_b, "ffn_norm_1.bias", E, 1);
    V(ff2_up_b, "ffn_up_1.bias", F, 1), V(ff2_down_b, "ffn_down_1.bias", E, 1);
    M(ff2_up, "ffn_up_1", E, F), M(ff2_down, "ffn_down_1", F, E);
    V(out_norm_w, "ln2.weight", E, 1), V(out_norm_b, "ln2.bias", E, 1);
#undef V
#undef M
    return bad || taps_major(L->dw_w, E, K, err) ? -1 : 0;
}

/* The sizes the header does not state, read from the tensors that carry them. */
static int infer_sizes(aud_model *am, lfm2c_error *err) {
    aud_hparams *hp = &am->hp;
    const gguf_file *g = am->gguf;
    const gguf_tensor *c0 = gguf_find_tensor(g, "a.conv1d.0.weight"),
                      *up = gguf_find_tensor(g, "a.blk.0.ffn_up.weight"),
                      *dw = gguf_find_tensor(g, "a.blk.0.conv_dw.weight"),
                      *m1 = gguf_find_tensor(g, "mm.a.mlp.1.weight"),
                      *pe = gguf_find_tensor(g, "a.position_embd.weight");
    if (!c0 || c0->ne[3] < 1 || c0->ne[3] > 4096) return FAIL("tensor a.conv1d.0.weight missing or too wide");
    if (!up || up->ne[1] < 1 || up->ne[1] > 8 * AUD_MAX_EMBD)
        return FAIL("tensor a.blk.0.ffn_up.weight missing or too wide");
    if (!dw || dw->ne[0] < 1 || dw->ne[0] > AUD_MAX_KERNEL || !(dw->ne[0] & 1))
        return FAIL("tensor a.blk.0.conv_dw.weight missing or not an odd kernel of at most %d taps", AUD_MAX_KERNEL);
    if (!m1 || m1->ne[1] < 1 || m1->ne[1] > 8 * AUD_MAX_EMBD)
        return FAIL("tensor mm.a.mlp.1.weight missing or too wide");
    if (!pe || pe->ne[0] != hp->proj_dim || pe->ne[1] < 1 || pe->ne[2] != 1 || pe->ne[3] != 1)
        return FAIL("tensor a.position_embd.weight missing or not %d wide (clip.audio.projection_dim)", hp->proj_dim);
    hp->sub_ch = (int)c0->ne[3], hp->n_ff = (int)up->ne[1], hp->kernel = (int)dw->ne[0], hp->mm_hidden = (int)m1->ne[1];
    hp->max_tokens = pe->ne[1] > 1 << 24 ? 1 << 24 : (int)pe->ne[1];
    return 0;
}

static int64_t half_up(int64_t x) { return (x + 1) / 2; } /* a 3-tap stride-2 convolution padded by 1 */

static int load_globals(aud_model *am, lfm2c_error *err) {
    const aud_hparams *hp = &am->hp;
    const int64_t C = hp->sub_ch, E = hp->n_embd, f8 = half_up(half_up(half_up(hp->n_mel)));
    int bad = 0;
    am->c0_w = vec4(am, "a.conv1d.0.weight", 3, 3, 1, C, err, &bad);
    am->c0_b = vec4(am, "a.conv1d.0.bias", 1, 1, C, 1, err, &bad);
    am->c2_w = vec4(am, "a.conv1d.2.weight", 3, 3, 1, C, err, &bad);
    am->c2_b = vec4(am, "a.conv1d.2.bias", 1, 1, C, 1, err, &bad);
    am->c3_b = vec4(am, "a.conv1d.3.bias", 1, 1, C, 1, err, &bad);
    am->c5_w = vec4(am, "a.conv1d.5.weight", 3, 3, 1, C, err, &bad);
    am->c5_b = vec4(am, "a.conv1d.5.bias", 1, 1, C, 1, err, &bad);
    am->c6_b = vec4(am, "a.conv1d.6.bias", 1, 1, C, 1, err, &bad);
    am->pre_out_b = vec4(am, "a.pre_encode.out.bias", E, 1, 1, 1, err, &bad);
    am->mm0_w = vec4(am, "mm.a.mlp.0.weight", E, 1, 1, 1, err, &bad);
    am->mm0_b = vec4(am, "mm.a.mlp.0.bias", E, 1, 1, 1, err, &bad);
    am->mm1_b = vec4(am, "mm.a.mlp.1.bias", hp->mm_hidden, 1, 1, 1, err, &bad);
    am->mm3_b = vec4(am, "mm.a.mlp.3.bias", hp->proj_dim, 1, 1, 1, err, &bad);
    if (bad || taps_major(am->c0_w, C, 9, err) || taps_major(am->c2_w, C, 9, err) || taps_major(am->c5_w, C, 9, err) ||
        mat(am, "a.conv1d.3.weight", C, C, true, &am->c3, err) ||
        mat(am, "a.conv1d.6.weight", C, C, true, &am->c6, err) ||
        mat(am, "a.pre_encode.out.weight", C * f8, E, false, &am->pre_out, err) ||
        mat(am, "mm.a.mlp.1.weight", E, hp->mm_hidden, false, &am->mm1, err) ||
        mat(am, "mm.a.mlp.3.weight", hp->mm_hidden, hp->proj_dim, false, &am->mm3, err))
        return -1;
    return 0;
}

/* A matrix's pages mapped now rather than by the first clip's products (a hint: where the system
 * cannot, they are read ahead or left). */
static void populate(const enc_mat *m) {
    const uintptr_t ps = (uintptr_t)os_page_size(), lo = (uintptr_t)m->data / ps * ps,
                    hi = (uintptr_t)m->data + m->row_bytes * (size_t)m->n_out;
    if (os_advise((void *)lo, hi - lo, OS_ADV_POPULATE)) os_advise((void *)lo, hi - lo, OS_ADV_WILLNEED);
}

/* Every matrix the encoder multiplies, as the language model's weights are at load (the file's
 * other tensors, a.position_embd's codes, stay where they are). */
static void populate_all(const aud_model *am) {
    const enc_mat *g[] = {&am->c3, &am->c6, &am->pre_out, &am->mm1, &am->mm3};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) populate(g[i]);
    for (int il = 0; il < am->hp.n_layer; il++) {
        const aud_layer *L = &am->layers[il];
        const enc_mat *m[] = {&L->ff1_up, &L->ff1_down, &L->q,   &L->k,      &L->v,       &L->o,
                              &L->pos,    &L->pw1,      &L->pw2, &L->ff2_up, &L->ff2_down};
        for (size_t i = 0; i < sizeof m / sizeof *m; i++) populate(m[i]);
    }
}

aud_model *aud_open_gguf(gguf_file *g, const encoder_ops *enc, lfm2c_error *err) {
    aud_model *am = calloc(1, sizeof *am);
    if (!am) {
        gguf_close(g);
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    am->gguf = g;
    am->enc = enc;
    if (read_hparams(g, &am->hp, err) || infer_sizes(am, err) || load_globals(am, err)) goto fail;
    if (!(am->layers = calloc((size_t)am->hp.n_layer, sizeof *am->layers))) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto fail;
    }
    for (int il = 0; il < am->hp.n_layer; il++)
        if (load_layer(am, il, err)) goto fail;
    populate_all(am);
    return am;
fail:
    aud_close(am);
    return NULL;
}

aud_model *aud_open(const char *path, const encoder_ops *enc, lfm2c_error *err) {
    gguf_file *g = gguf_open(path, err);
    return g ? aud_open_gguf(g, enc, err) : NULL;
}

void aud_close(aud_model *am) {
    if (!am) return;
    for (int il = 0; am->layers && il < am->hp.n_layer; il++) {
        aud_layer *L = &am->layers[il];
        float *v[] = {L->ff1_norm_w,  L->ff1_norm_b,  L->ff1_up_b,   L->ff1_down_b, L->att_norm_w, L->att_norm_b,
                      L->q_b,         L->k_b,         L->v_b,        L->o_b,        L->pos_u,      L->pos_v,
                      L->conv_norm_w, L->conv_norm_b, L->pw1_b,      L->pw2_b,      L->dw_w,       L->dw_b,
                      L->bn_w,        L->bn_b,        L->ff2_norm_w, L->ff2_norm_b, L->ff2_up_b,   L->ff2_down_b,
                      L->out_norm_w,  L->out_norm_b};
        for (size_t i = 0; i < sizeof v / sizeof *v; i++) free(v[i]);
    }
    free(am->layers);
    float *g[] = {am->c0_w, am->c0_b,      am->c2_w,  am->c2_b,  am->c3_b,  am->c5_w, am->c5_b,
                  am->c6_b, am->pre_out_b, am->mm0_w, am->mm0_b, am->mm1_b, am->mm3_b};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) free(g[i]);
    gguf_close(am->gguf);
    free(am);
}
