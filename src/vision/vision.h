/* vision.h — the LFM2-VL image encoder on the CPU: an mmproj GGUF as llama.cpp writes it for
 * LFM2-VL (clip.projector_type "lfm2": a SigLIP2 NaFlex vision tower, pixel unshuffle, a layer
 * norm and a two-layer GELU MLP into the language model's width), loaded and checked by
 * mmproj.c, run by tower.c (the tower's blocks) over vision_ops.c (layer norm, GELU, the
 * position-embedding resize, pixel unshuffle, attention), the matrix products through the
 * backend table's encoder entry (core/encoder.h: the CPU's runs them on its kernel table).
 * Internal to the library; nothing here prints. */
#ifndef LFM2C_VISION_H
#define LFM2C_VISION_H
#include "lfm2c.h"
#include "base/threadpool.h"
#include "core/encoder.h"
#include "formats/gguf.h"

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

/* A weight matrix in the file's bytes: n_out rows of n_in values (GGUF ne = {n_in, n_out}). */
typedef enc_mat vis_mat;

/* One pre-norm ViT block; the vectors are F32 copies (the file may hold F16). */
typedef struct vis_layer {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    vis_mat q, k, v, o, up, down;
    float *q_b, *k_b, *v_b, *o_b, *up_b, *down_b;
} vis_layer;

typedef struct vis_hparams {
    int n_embd, n_ff, n_head, n_layer;
    int patch;    /* pixels per patch side */
    int pos_side; /* the learned position grid is pos_side x pos_side */
    int n_merge;  /* pixel unshuffle factor per side (downsample_factor) */
    int proj_dim; /* output width: the language model's hidden size */
    int mm_hidden;
    float eps;                  /* the tower's layer norms */
    float mean[3], stdev[3];    /* normalisation of 0..1 RGB */
    int min_tokens, max_tokens; /* image tokens after unshuffle, as llama.cpp bounds them */
} vis_hparams;

typedef struct vis_model {
    gguf_file *gguf;
    vis_hparams hp;
    vis_mat patch_w;      /* n_in = 3 * patch * patch in (channel, y, x) order */
    float *patch_b, *pos; /* pos: pos_side^2 rows of n_embd */
    vis_layer *layers;
    float *post_w, *post_b;
    float *mm_norm_w, *mm_norm_b; /* NULL when the projector has no layer norm */
    vis_mat mm1, mm2;
    float *mm1_b, *mm2_b;
    const encoder_ops *enc; /* the backend's products (core/encoder.h) */
} vis_model;

/* Opens and checks an mmproj GGUF (every tensor's shape and type against the header's sizes),
 * its products on enc (vis_open: the CPU's, encoder_for(NULL)). */
vis_model *vis_open(const char *path, lfm2c_error *err);
vis_model *vis_open_with(const char *path, const encoder_ops *enc, lfm2c_error *err);
/* takes g (closed on failure too) */
vis_model *vis_open_gguf(gguf_file *g, const encoder_ops *enc, lfm2c_error *err);
void vis_close(vis_model *vm);

/* Image tokens an image of w x h pixels (multiples of the patch size) becomes. */
int vis_n_tokens(const vis_model *vm, int w, int h);
/* 0..255 RGB (interleaved, w x h) -> the tower's input: 3 planes of w x h floats,
 * (v / 255 - mean[c]) / std[c]. */
void vis_normalize(const vis_model *vm, const uint8_t *rgb, int w, int h, float *planes);
/* Encodes one image given as 3 normalised planes of w x h (both multiples of the patch size):
 * out gets vis_n_tokens rows of proj_dim floats. pool may be NULL (the caller's thread alone).
 * 0, or -1 with err set (sizes, memory). */
int vis_encode(const vis_model *vm, threadpool *pool, const float *planes, int w, int h, float *out, lfm2c_error *err);
/* The bytes vis_encode allocates for an image of w x h (its activations, scratch and attention's
 * buffers), and the 3 planes of floats its caller normalises the image into. */
size_t vis_encode_bytes(const vis_model *vm, const threadpool *pool, int w, int h);

/* ---- preprocess.c: the processor's sizes and tiles ------------------------------------------ */
typedef struct vis_prep_params {
    int patch, n_merge;         /* encoder patch size, downsample factor */
    int min_tokens, max_tokens; /* image tokens of one resized image (after the unshuffle) */
    int tile, min_tiles, max_tiles;
    bool thumbnail, split; /* a thumbnail beside the tiles; tiling at all */
    double tolerance;      /* tiles when the image rounded is over max_tokens' pixels times this */
} vis_prep_params;
vis_prep_params vis_prep_default(void); /* Lfm2VlImageProcessor's defaults */
typedef struct vis_prep_plan {
    int w, h;       /* the image resized as one (the thumbnail when tiled) */
    int cols, rows; /* tiles (0 x 0: not tiled); the image is then resized to cols*tile x rows*tile */
    bool thumbnail; /* tiled: the w x h image follows the tiles */
    int tokens;     /* image tokens in all */
} vis_prep_plan;
/* What the processor does with a w x h image: 0, or -1 for a side <= 0. */
int vis_plan(const vis_prep_params *p, int w, int h, vis_prep_plan *out);

/* ---- image.c: an image file's bytes to RGB ------------------------------------------------ */
enum { VIS_IMG_JPEG, VIS_IMG_PNG, VIS_IMG_WEBP, VIS_IMG_GIF };
typedef struct vis_image {
    int w, h;
    uint8_t *rgb; /* w * h * 3 bytes, row by row */
} vis_image;
typedef struct vis_image_limits {
    size_t max_bytes;   /* of the file */
    int64_t max_pixels; /* width x height, read from the header before decoding */
    int max_side;
} vis_image_limits;
vis_image_limits vis_image_default_limits(void); /* 32 MiB, 40 Mi pixels, 16384 a side */
unsigned vis_image_formats(void);                /* bit VIS_IMG_*: this build decodes it */
int vis_image_sniff(const uint8_t *d, size_t n); /* VIS_IMG_* by the magic bytes, or -1 */
/* Decodes a JPEG, PNG, WebP or GIF (first frame; an animated WebP's too) into out
 * (vis_image_free) as Hugging Face's load_image gives it: a JPEG's EXIF orientation applied, CMYK
 * converted. 0, or -1 with err set (LFM2C_ETOOLARGE over a limit, LFM2C_EFORMAT corrupt or not an
 * image, LFM2C_EUNSUPPORTED a format this build lacks). lim NULL: the defaults. */
int vis_image_decode(const uint8_t *data, size_t n, const vis_image_limits *lim, vis_image *out, lfm2c_error *err);
/* What a decode of the file will take, from its header alone (no pixel decoded): the checks of
 * vis_image_decode up to the limits (the same errors), then the format, the size as stored, the
 * EXIF orientation the decode will apply (for a PNG, that of the file's first eXIf chunk: the
 * decode turns it so or not at all) and the decoder's own memory at most beside the pixels. */
typedef struct vis_image_head {
    int fmt;
    int64_t w, h;
    int orient;  /* 1: as stored */
    size_t work; /* bytes the decoder holds at most while it decodes */
} vis_image_head;
int vis_image_probe(const uint8_t *data, size_t n, const vis_image_limits *lim, vis_image_head *out, lfm2c_error *err);
/* The bytes a decode holds at its peak: the pixels, and the decoder's memory or (an EXIF turn,
 * after the decoder is gone) a second copy of the pixels. */
size_t vis_image_decode_bytes(const vis_image_head *hd);
void vis_image_free(vis_image *im);
/* Turns im as the EXIF orientation o (1..8) says, as Pillow's exif_transpose: 2 mirrored, 3
 * turned 180 degrees, 4 flipped, 5 transposed, 6 turned 90 clockwise, 7 transversed, 8 turned 90
 * counter-clockwise (5..8 swap w and h); other values leave it. 0, or -1 out of memory (im kept). */
int vis_image_orient(vis_image *im, int o);

/* ---- resample.c: the processor's pixels --------------------------------------------------- */
/* Pillow's BILINEAR resize of 8-bit RGB (sw x sh -> dw x dh): 0, or -1 out of memory. */
int vis_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
vis_prep_params vis_prep_for(const vis_model *vm); /* the defaults with the mmproj's patch and merge */
typedef struct vis_prepared {
    vis_prep_plan plan;
    int n, cap; /* images to encode: the tiles row by row then the thumbnail, or the one image */
    vis_image *img;
} vis_prepared;
int vis_prepare(const vis_prep_params *p, const vis_image *im, vis_prepared *out, lfm2c_error *err);
/* The bytes vis_prepare allocates for a w x h image at most (the source's not counted): the
 * grid's resized image, the resize's lines and coefficients, the tiles and the thumbnail; and
 * what the prepared images of plan pl (tiles of tile pixels a side) hold once it returns. */
size_t vis_prepare_bytes(const vis_prep_params *p, int w, int h);
size_t vis_prepared_bytes(const vis_prep_plan *pl, int tile);
void vis_prepared_free(vis_prepared *pp);

/* ---- vision_ops.c: the tower's pieces, each as the reference computes it ------------------ */
/* y = layer_norm(x) * w + b over rows of n (mean and variance in double; w, b may be NULL). */
void vis_layer_norm(float *x, int64_t rows, int n, const float *w, const float *b, float eps);
void vis_gelu_tanh(float *x, int64_t n); /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
void vis_gelu_erf(float *x, int64_t n);  /* 0.5 x (1 + erf(x / sqrt(2))) */
/* the tanh form as ggml's CPU computes it: through F16 (x and the result rounded to F16) for
 * -10 < x < 10; 0 at or below -10, x at or above 10 */
void vis_gelu_ggml(float *x, int64_t n);
/* The side x side learned grid resized to w x h (antialiased bilinear, half-pixel centres, as
 * ggml's interpolate does it): out has w * h rows of n values, row = y * w + x. */
void vis_pos_resize(const float *pos, int side, int n, int w, int h, float *out);
/* Rows of n values on a gw x gh grid (row = y * gw + x), zero-padded to multiples of f, into
 * (gw/f) x (gh/f) rows of f*f*n values: out row (Y, X) = [dy][dx][channel] of the f x f block. */
void vis_unshuffle(const float *x, int gw, int gh, int n, int f, float *out);
/* Full (unmasked) multi-head attention over n tokens, softmax(q k^T / sqrt(d)) v per head: q, k,
 * v and out n rows of E (heads side by side); the products on enc. scratch: vis_attn_bytes(n,
 * E, pool) bytes. */
size_t vis_attn_bytes(int n, int E, const threadpool *pool);
void vis_attention(const encoder_ops *enc, threadpool *pool, const float *q, const float *kk, const float *v, int n,
                   int E, int n_head, float *out, uint8_t *scratch);
/* fn(arg, i, n) for every index of pool (i = 0, n = 1 without one) */
void vis_run(threadpool *pool, threadpool_fn fn, void *arg);
#endif
