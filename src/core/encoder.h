/* encoder.h — what the encoders in front of a language model (the LFM2-VL image tower,
 * src/vision/; the LFM2-Audio Conformer, src/audio/) ask of a backend: the one way they reach
 * one. A backend that can run them sets BACKEND_CAP_ENCODER and points its table's `encoder` at
 * an encoder_ops (backend.h); the CPU's is cpu/encoder.c over its kernel table. The encoders
 * hold their weights as the file has them (enc_mat), ask the table which types it multiplies,
 * and run every product through it; the elementwise steps (norms, activations, convolutions,
 * softmax) are their own. encoder_for picks the table for a model, or refuses by name. */
#ifndef LFM2C_ENCODER_H
#define LFM2C_ENCODER_H
#include "lfm2c.h"
#include "base/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A weight matrix in the file's bytes: n_out rows of n_in values (GGUF ne = {n_in, n_out}). */
typedef struct enc_mat {
    const uint8_t *data;
    uint32_t type;
    int64_t n_in, n_out;
    size_t row_bytes;
} enc_mat;

typedef struct encoder_ops {
    /* Whether a matrix of this type and shape, in the file's layout, can be multiplied. */
    bool (*mat_ok)(uint32_t type, int64_t n_in, int64_t n_out);
    /* Scratch bytes linear needs for nc input rows of w (the activations in w's product type). */
    size_t (*act_bytes)(const enc_mat *w, int nc);
    /* y[c][r] = W[r] . x[c] + b[r] for c < nc (x: nc rows of n_in floats; y: nc rows of n_out;
     * b may be NULL), split over pool (NULL: the caller's thread); act: act_bytes(w, nc). */
    void (*linear)(threadpool *pool, const enc_mat *w, const float *b, const float *x, int nc, float *y, uint8_t *act);
    /* One float product on the caller's thread: y[c * y_stride + r] = a_r . x_c over k values,
     * for r < nr, c < nc; a and x rows a_row and x_row bytes apart (attention's pieces). */
    void (*matmul_f32)(int64_t k, const float *a, size_t a_row, int nr, const float *x, size_t x_row, int nc, float *y,
                       size_t y_stride);
    /* x = silu(x) = x / (1 + exp(-x)) over n values on the caller's thread, the same bits
     * whatever the length and start of the call (the Conformer's feed-forward and convolution
     * module). */
    void (*silu)(float *x, int64_t n);
} encoder_ops;

/* ---- encoder.c: what the encoders share beside the products ---------------------------------- */
/* fn(arg, i, n) for every index of pool (i = 0, n = 1 without one) */
void enc_run(threadpool *pool, threadpool_fn fn, void *arg);
/* y = layer_norm(x) * w + b over rows of n (mean and variance in double; w, b may be NULL). */
void enc_layer_norm(float *x, int64_t rows, int n, const float *w, const float *b, float eps);
void enc_gelu_erf(float *x, int64_t n); /* 0.5 x (1 + erf(x / sqrt(2))) */

/* The encoder table of m's backend, or the CPU's when m is NULL (an encoder opened alone: tests,
 * `info`, `bench`); NULL with err set (LFM2C_EUNSUPPORTED, naming the backends that can) when
 * m's backend has none. `what` names the encoder in the message. */
const encoder_ops *encoder_for(const lfm2c_model *m, const char *what, lfm2c_error *err);
#endif
