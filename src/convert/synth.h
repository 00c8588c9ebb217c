/* synth.h — random-weight LFM2 / LFM2-MoE models with the real architectures, the reference
 * quantizer's per-tensor type layout, the full metadata and a synthetic byte-level tokenizer, so
 * speed can be measured without downloading a model. Written as a stream: memory stays a few MB
 * whatever the model size. */
#ifndef LFM2C_SYNTH_H
#define LFM2C_SYNTH_H

#include "lfm2c.h"
#include "formats/ggml_types.h"
#include "convert/quantize.h"
#include <stdbool.h>
#include <stdint.h>

#define SYNTH_MAX_LAYERS 256

typedef struct synth_config {
    char arch[16]; /* "lfm2" or "lfm2moe" */
    char name[64];
    int hidden, n_layer, n_head, n_head_kv;
    int ff; /* dense FFN width */
    int vocab, ctx;
    int n_attn, attn_layers[SYNTH_MAX_LAYERS];
    int n_expert, n_expert_used, expert_ff, n_dense; /* lfm2moe only */
    float rope_theta, norm_eps;
    int l_cache;
    bool vl; /* an LFM2-VL language model: the tokenizer gets the image tokens */
} synth_config;

/* The vision tower and projector of an LFM2-VL preset (synth_vl.c). */
typedef struct synth_vl_config {
    int n_embd, n_ff, n_head, n_layer;
    int patch, pos_side, n_merge; /* pixels per patch side, the position grid's side, unshuffle */
    int mm_hidden, proj_dim;      /* the projector's width; its output (the language model's) */
} synth_vl_config;

/* Fills lm and v with an LFM2-VL preset (lfm2-vl-450m, lfm2-vl-1.6b, lfm2-vl-tiny); false if
 * unknown. */
bool synth_vl_preset(const char *name, synth_config *lm, synth_vl_config *v);
const char *synth_vl_preset_list(void);
/* Writes a random mmproj (as llama.cpp writes LFM2-VL's) of v's shapes: matrices of wtype
 * (GGML_F32, GGML_F16 or GGML_Q8_0). */
bool synth_mmproj_write(const synth_vl_config *v, uint32_t wtype, uint64_t seed, const char *path, lfm2c_error *err);

/* The tensor data of the mmproj writers (synth_mm.c): n values of the tensor `name`, seeded
 * from the name and the seed (a file does not depend on the order it is written in): U(0.9,
 * 1.1) for a norm, else N(0, sigma); and n floats in type (F32, F16 or Q8_0) into out. */
void synth_fill(const char *name, bool norm, float sigma, uint64_t seed, float *x, int64_t n);
void synth_encode(uint32_t type, const float *x, int64_t n, uint8_t *out);

/* The audio encoder and adapter of an LFM2-Audio preset (synth_audio.c). */
typedef struct synth_audio_config {
    int n_embd, n_ff, n_head, n_layer; /* the Conformer: width, feed-forward, heads, blocks */
    int n_mel, sub_ch, kernel;         /* mel bins, the subsampling's channels, depthwise taps */
    int mm_hidden, proj_dim;           /* the adapter's width; its output (the language model's) */
    int code_rows;                     /* rows of a.position_embd (the audio output's codes) */
} synth_audio_config;
/* Fills lm and a with an LFM2-Audio preset (lfm2-audio-1.5b, lfm2-audio-tiny); false if unknown. */
bool synth_audio_preset(const char *name, synth_config *lm, synth_audio_config *a);
const char *synth_audio_preset_list(void);
/* Writes a random audio mmproj as llama.cpp's converter writes LFM2-Audio's (projector type
 * lfm2a) of a's shapes: the linear layers of wtype (GGML_F32, GGML_F16 or GGML_Q8_0), the
 * convolutions, the attention's position biases, a.position_embd and every vector F32. */
bool synth_audio_mmproj_write(const synth_audio_config *a, uint32_t wtype, uint64_t seed, const char *path,
                              lfm2c_error *err);

/* Fills c with a named preset (lfm2-350m, lfm2-700m, lfm2-1.2b, lfm2-2.6b, lfm2-8b-a1b,
 * lfm2-24b-a2b; case-insensitive); false if unknown. */
bool synth_preset(const char *name, synth_config *c);
const char *synth_preset_list(void);
/* Checks a (possibly overridden) configuration; false with a message if inconsistent. */
bool synth_validate(const synth_config *c, lfm2c_error *err);

typedef struct synth_params {
    uint64_t seed;
    int n_threads; /* <= 0: all cores */
    void (*progress)(void *ud, uint64_t done, uint64_t total, const char *tensor);
    void *progress_ud;
} synth_params;

typedef struct synth_report {
    int n_tensors;
    int type_count[GGML_NTYPES]; /* tensors per ggml type */
    uint64_t n_params, file_bytes;
    double seconds;
} synth_report;

/* Writes the model to path (via path.tmp + rename). */
bool synth_write(const synth_config *c, const quant_ftype *ft, const synth_params *p, const char *path,
                 synth_report *rep, lfm2c_error *err);

#endif
