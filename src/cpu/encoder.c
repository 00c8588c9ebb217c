/* encoder.c — the CPU backend's encoder table (core/encoder.h): the products of the image tower
 * and the audio Conformer on the kernel table this process runs (kernels.h): a weight matrix
 * times rows of activations, its rows claimed in pieces of 16 by the pool's threads (the
 * activations first quantized to the matrix's product type, split by rows), and the single
 * float product attention's pieces take. The types: those whose prefill tiles read the file's
 * layout as it is (the table does not pack these matrices). SiLU is the table's SwiGLU times
 * ones. */
#include "core/encoder.h"
#include "cpu/backend_cpu.h"
#include "cpu/kernels.h"
#include "formats/ggml_types.h"

#include <stdatomic.h>

enum { ROWS = 16 }; /* rows per claimed piece of a product */

/* A matrix type the CPU's products take as the file has it: its row in the type table runs on the
 * CPU, and the kernel table does not want it in an interleaved layout (the encoders' weights are
 * the mapped file's, never repacked). */
static bool cpu_mat_ok(uint32_t type, int64_t n_in, int64_t n_out) {
    const kernel_ops *k = kernels_get();
    const ggml_type_info *t = ggml_type_get(type);
    return t && n_in % t->block_size == 0 && (t->runs & GGML_RUN_CPU) && !t->base &&
           (!k->packed_type || k->packed_type(type, n_out) == type);
}

static size_t cpu_act_bytes(const enc_mat *w, int nc) {
    const uint32_t at = vec_dot_type(w->type);
    return at == GGML_F32 ? 0 : ggml_row_size(at, w->n_in) * (size_t)nc;
}

typedef struct lin_job {
    const kernel_ops *k;
    const enc_mat *w;
    const float *b, *x;
    int nc;
    float *y;
    uint8_t *act;
    size_t act_row;
    atomic_int next;
} lin_job;

static void lin_quant(void *arg, int ith, int nth) {
    lin_job *j = arg;
    const uint32_t at = vec_dot_type(j->w->type);
    for (int c = ith; c < j->nc; c += nth)
        j->k->quantize_act(at, j->x + (size_t)c * j->w->n_in, j->act + (size_t)c * j->act_row, j->w->n_in);
}

static void lin_rows(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    lin_job *j = arg;
    const enc_mat *w = j->w;
    const int64_t pieces = (w->n_out + ROWS - 1) / ROWS;
    for (int64_t p; (p = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < pieces;) {
        const int64_t r0 = p * ROWS, nr = w->n_out - r0 < ROWS ? w->n_out - r0 : ROWS;
        j->k->matmul(w->type, w->n_in, w->data + (size_t)r0 * w->row_bytes, w->row_bytes, (int)nr, j->act, j->act_row,
                     j->nc, j->y + r0, (size_t)w->n_out);
        if (j->b)
            for (int c = 0; c < j->nc; c++)
                for (int64_t r = r0; r < r0 + nr; r++) j->y[(size_t)c * w->n_out + r] += j->b[r];
    }
}

static void run(threadpool *pool, threadpool_fn fn, void *arg) {
    if (pool) threadpool_run(pool, fn, arg);
    else fn(arg, 0, 1);
}

static void cpu_linear(threadpool *pool, const enc_mat *w, const float *b, const float *x, int nc, float *y,
                       uint8_t *act) {
    lin_job j = {.k = kernels_get(), .w = w, .b = b, .x = x, .nc = nc, .y = y};
    atomic_init(&j.next, 0);
    if (vec_dot_type(w->type) == GGML_F32) {
        j.act = (uint8_t *)x;
        j.act_row = (size_t)w->n_in * sizeof(float);
    } else {
        j.act = act;
        j.act_row = ggml_row_size(vec_dot_type(w->type), w->n_in);
        run(pool, lin_quant, &j);
    }
    run(pool, lin_rows, &j);
}

static void cpu_matmul_f32(int64_t k, const float *a, size_t a_row, int nr, const float *x, size_t x_row, int nc,
                           float *y, size_t y_stride) {
    kernels_get()->matmul(GGML_F32, k, (const uint8_t *)a, a_row, nr, (const uint8_t *)x, x_row, nc, y, y_stride);
}

/* The kernel table's SwiGLU (kernels.h: its contract, the same bits on every table) times ones. */
static void cpu_silu(float *x, int64_t n) {
    enum { PIECE = 256 };
    float one[PIECE];
    for (int i = 0; i < PIECE; i++) one[i] = 1.0f;
    const kernel_ops *k = kernels_get();
    for (int64_t i = 0; i < n; i += PIECE) k->swiglu(x + i, one, n - i < PIECE ? n - i : PIECE);
}

const encoder_ops cpu_encoder_ops = {
    .mat_ok = cpu_mat_ok,
    .act_bytes = cpu_act_bytes,
    .linear = cpu_linear,
    .matmul_f32 = cpu_matmul_f32,
    .silu = cpu_silu,
};
