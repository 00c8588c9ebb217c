/* gpu_shapes.h — what the GPU backends (src/cuda, src/vulkan) ask of a model, written once: the
 * checks before a model goes on a device (the KV cache's types, the head dimension, each weight
 * matrix by the backend's own rule, the small vectors F32) and the widths of the forward's scratch
 * rows, which the memory planner (mem_plan.c) estimates with too. Core code: it includes no
 * backend header; a backend passes its own rule for a matrix in (gpu_rules). */
#ifndef LFM2C_GPU_SHAPES_H
#define LFM2C_GPU_SHAPES_H
#include "core/model.h"

#include <stdbool.h>
#include <stdint.h>

/* The widths, in floats per token, of the GPU forwards' scratch rows. */
typedef struct gpu_widths {
    int kv_dim; /* a position's K (or V) row: the most KV heads of a layer x head_dim */
    int big;    /* q, the conv's in-projection (3 H), a dense FFN's gate and up rows: the widest */
    int hid;    /* attention's output, its K and V rows side by side, the conv's output */
    int ff_exp; /* the widest expert hidden row (0: no experts) */
} gpu_widths;

/* big from the hidden size H, the query width nq (heads x head_dim) and the widest dense FFN row;
 * hid from H, nq and kv_dim. The planner calls these with a model's published shapes. */
int64_t gpu_big_width(int64_t H, int64_t nq, int64_t ff_max);
int64_t gpu_hid_width(int64_t H, int64_t nq, int64_t kv_dim);
/* The widths of an opened model, the FFN rows from its tensors themselves. */
gpu_widths gpu_widths_of(const lfm2c_model *m);

/* A layer's weight matrices (13) and small vectors (6), absent ones included (data NULL). */
enum { GPU_LAYER_MATS = 13, GPU_LAYER_VECS = 6 };
void gpu_layer_matrices(const layer *L, const tensor *out[GPU_LAYER_MATS]);
void gpu_layer_vectors(const layer *L, const tensor *out[GPU_LAYER_VECS]);

/* A backend's rules: its name starts every message ("NAME backend: ..."); run is its bit in the
 * type table (its backend table's `types`, core/backend.h): a matrix whose type's row lacks it is
 * refused, naming the backends that run it; matrix (optional) checks more of a present matrix
 * (sizes), setting err and returning -1 to refuse, with ctx passed back. */
typedef struct gpu_rules {
    const char *name;
    unsigned run;
    int (*matrix)(const void *ctx, const tensor *t, lfm2c_error *err);
    const void *ctx;
} gpu_rules;

/* 0 when the backend of rules r can run m: the KV cache F16 or F32 on both sides, an even head
 * dimension of at most 256, every present matrix by r (the embedding, the head, each layer's),
 * the output norm and every layer's vectors F32; a matrix by r's bit in its type's row and rows of
 * whole blocks of a multiple of 8 weights. Else -1 and err says what (LFM2C_EUNSUPPORTED). */
int gpu_check_model(const lfm2c_model *m, const gpu_rules *r, lfm2c_error *err);
#endif
