/* audio.h — LFM2-Audio's ears on the CPU: an audio mmproj GGUF as llama.cpp writes it
 * (clip.projector_type "lfm2a": a FastConformer encoder, its subsampling convolutions, and the
 * adapter into the language model's width), loaded and checked by mmproj.c, run by conformer.c
 * with the products on the backend table's encoder entry (core/encoder.h); the audio it hears:
 * a file's bytes decoded (decode.c: WAV, FLAC, MP3, Ogg Vorbis / Opus through libsndfile, the
 * limits checked from the header first), down-mixed and resampled to 16 kHz as llama.cpp's
 * miniaudio does (resample.c), and turned into log-mel features as libmtmd's preprocessor
 * computes them (mel.c). Internal to the library; nothing here prints. */
#ifndef LFM2C_AUDIO_H
#define LFM2C_AUDIO_H
#include "lfm2c.h"
#include "base/threadpool.h"
#include "core/encoder.h"
#include "formats/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One Conformer block (macaron: half feed-forward, relative-position self-attention, the
 * convolution module, half feed-forward, a closing norm); vectors are F32 copies. */
typedef struct aud_layer {
    float *ff1_norm_w, *ff1_norm_b, *ff1_up_b, *ff1_down_b;
    enc_mat ff1_up, ff1_down;
    float *att_norm_w, *att_norm_b, *q_b, *k_b, *v_b, *o_b;
    float *pos_u, *pos_v; /* the attention's two learned biases, n_head x d_head */
    enc_mat q, k, v, o, pos;
    float *conv_norm_w, *conv_norm_b, *pw1_b, *pw2_b;
    enc_mat pw1, pw2;   /* pointwise convolutions: E -> 2E (GLU), E -> E */
    float *dw_w, *dw_b; /* depthwise: `kernel` rows of E (tap-major: the file's E rows of taps
                           transposed at load) */
    float *bn_w, *bn_b; /* the batch norm, folded into a scale and a shift */
    float *ff2_norm_w, *ff2_norm_b, *ff2_up_b, *ff2_down_b;
    enc_mat ff2_up, ff2_down;
    float *out_norm_w, *out_norm_b;
} aud_layer;

typedef struct aud_hparams {
    int n_embd, n_head, n_layer, n_ff; /* n_ff: the feed-forward width the tensors have */
    int n_mel, sub_ch;                 /* mel bins in; the subsampling's channels */
    int kernel;                        /* the depthwise convolution's taps */
    int proj_dim, mm_hidden;           /* the adapter: n_embd -> mm_hidden -> proj_dim */
    int max_tokens;                    /* rows of a.position_embd: llama.cpp's bound on one clip */
    float eps;
    int sample_rate, n_fft, win, hop; /* the preprocessor, fixed for lfm2a as llama.cpp has them */
} aud_hparams;

typedef struct aud_model {
    gguf_file *gguf;
    aud_hparams hp;
    float *c0_w, *c0_b, *c2_w, *c2_b, *c3_b, *c5_w, *c5_b, *c6_b; /* 3x3 kernels (tap-major: 9 rows
                                                                     of C, transposed at load), biases */
    enc_mat c3, c6, pre_out;                                      /* 1x1 convolutions, the flatten's linear */
    float *pre_out_b;
    aud_layer *layers;
    float *mm0_w, *mm0_b, *mm1_b, *mm3_b;
    enc_mat mm1, mm3;
    const encoder_ops *enc;
    /* called after each block with the fraction done (0.1 .. 1), when set (audio_api.c sets it
       for one encode and clears it after, holding its lock throughout) */
    void (*progress)(void *ud, double done);
    void *progress_ud;
} aud_model;

/* Opens and checks an lfm2a mmproj (every key and tensor against the header and each other). */
aud_model *aud_open(const char *path, const encoder_ops *enc, lfm2c_error *err);
aud_model *aud_open_gguf(gguf_file *g, const encoder_ops *enc, lfm2c_error *err); /* takes g */
void aud_close(aud_model *am);

/* Encoder tokens for n_frames mel frames (three stride-2 convolutions: ceil thrice). */
int aud_n_tokens(int n_frames);
/* Encodes n_frames frames of mel features (n_mel rows of n_frames, mel-major as libmtmd lays
 * them out) into aud_n_tokens(n_frames) rows of proj_dim floats. pool may be NULL. 0, or -1
 * with err set (sizes: more tokens than max_tokens; memory). */
int aud_encode(const aud_model *am, threadpool *pool, const float *mel, int n_frames, float *out, lfm2c_error *err);

/* Bytes aud_encode allocates for n_frames frames (its peak beside the weights). */
size_t aud_encode_bytes(const aud_model *am, int n_frames, int n_threads);

/* digest.c: SHA-256 (64 hex digits) of n samples at rate (the rate's 4 bytes, then the floats' bytes). */
void aud_digest(const float *x, int64_t n, int rate, char out[65]);

/* ---- mel.c: libmtmd's log-mel preprocessor for lfm2a ------------------------------------- */
enum { AUD_MEL_MAX = 256 }; /* mel bins, at most (llama.cpp's bound) */
typedef struct aud_mel_params {
    int sample_rate, n_fft, win, hop, n_mel;
} aud_mel_params;
aud_mel_params aud_mel_for(const aud_model *am); /* 16 kHz, FFT 512, window 400, hop 160, the file's bins */
/* Frames of n samples: n / hop + 1. */
int64_t aud_mel_frames(const aud_mel_params *p, int64_t n);
/* The features of n samples (mono, at p->sample_rate) into out (n_mel x aud_mel_frames floats,
 * mel-major), its frames split over pool (NULL: the caller's thread). n must be at least 2 hops
 * (libmtmd asserts more than one frame to normalise). 0, or -1 with err set. */
int aud_mel(const aud_mel_params *p, threadpool *pool, const float *pcm, int64_t n, float *out, lfm2c_error *err);

/* ---- decode.c: an audio file's bytes to samples ------------------------------------------ */
enum { AUD_FMT_WAV, AUD_FMT_FLAC, AUD_FMT_MP3, AUD_FMT_OGG };
typedef struct aud_limits {
    size_t max_bytes;       /* of the file */
    double max_seconds;     /* declared duration, from the header, before decoding */
    int max_channels;       /* declared channels */
    int min_rate, max_rate; /* declared sample rate, Hz */
    int64_t max_samples;    /* frames x channels decoded (the float samples' memory / 4) */
} aud_limits;
/* 64 MiB, 300 s, 8 channels, 1 kHz .. 384 kHz, 300 s of 48 kHz stereo */
aud_limits aud_default_limits(void);
typedef struct aud_info {
    int format; /* AUD_FMT_* */
    int channels, rate;
    int64_t frames; /* declared */
} aud_info;
typedef struct aud_pcm {
    int channels, rate;
    int64_t frames;
    float *x; /* frames x channels, interleaved, integer PCM divided by 2^(bits-1) */
} aud_pcm;
bool aud_have_decoder(void);               /* this build has libsndfile */
int aud_sniff(const uint8_t *d, size_t n); /* AUD_FMT_* by the magic bytes, or -1 */
/* The header's facts, checked against lim (NULL: the defaults) before any sample is decoded:
 * 0, or -1 with err set (LFM2C_ETOOLARGE over a limit, LFM2C_EFORMAT not audio or corrupt,
 * LFM2C_EUNSUPPORTED no decoder in this build). */
int aud_probe(const uint8_t *data, size_t n, const aud_limits *lim, aud_info *info, lfm2c_error *err);
/* Decodes the whole file (probed first); frames past the declared length are not read. */
int aud_decode(const uint8_t *data, size_t n, const aud_limits *lim, aud_pcm *out, lfm2c_error *err);
void aud_pcm_free(aud_pcm *p);

/* ---- resample.c: to the encoder's rate, as llama.cpp's miniaudio decoder does ------------ */
/* The samples frames counts miniaudio's decoder reports for `frames` at rate_in read at
 * rate_out (ma_calculate_frame_count_after_resampling). */
int64_t aud_out_frames(int rate_in, int rate_out, int64_t frames);
/* Mono at rate_out from interleaved pcm: the channels averaged, then miniaudio's linear
 * resampler (its 4th-order low-pass, its one-sample delay); out has aud_out_frames() floats,
 * the frames past what the resampler produced left 0 as libmtmd leaves them. malloc'd; NULL
 * out of memory. */
float *aud_to_mono(const aud_pcm *pcm, int rate_out, int64_t *n_out);
#endif
