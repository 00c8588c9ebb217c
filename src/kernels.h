/* kernels.h — the dispatch table between the model code and the per-ISA matrix kernels.
 * The forward pass never calls SIMD code directly: it asks kernels_get() for the best table
 * this CPU supports (LFM2C_ISA=scalar|avx2|avx512|amx forces one) and calls through it.
 * Every table computes what the scalar one computes (kernels.c); tests/test_kernels.c checks. */
#ifndef LFM2C_KERNELS_H
#define LFM2C_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct kernel_ops {
    const char *isa;      /* "scalar", "avx2", "avx512vnni", "amx", "neon" */
    /* out[r, c] is bitwise the same whatever nr / nc tile it is computed in */
    bool tile_invariant;
    /* Quantize n activations (a multiple of the act type's block; F32 = copy) into dst. */
    void (*quantize_act)(uint32_t act_type, const float *x, void *dst, int64_t n);
    /* out[c * out_stride + r] = dot(weight row r, activation row c) for r < nr, c < nc.
     * w: nr rows of n weights of type wtype, w_row bytes apart; act: nc rows already in
     * vec_dot_type(wtype) format, act_row bytes apart. */
    void (*matmul)(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr,
                   const uint8_t *act, size_t act_row, int nc, float *out, size_t out_stride);
} kernel_ops;

const kernel_ops *kernels_get(void);
const kernel_ops *kernels_scalar(void);
/* Tables compiled in and usable on this CPU (for tests): fills up to max, returns count. */
int kernels_available(const kernel_ops **out, int max);

/* Per-ISA tables; NULL when not compiled in or not supported by this CPU. */
const kernel_ops *kernels_x86_avx2(void);
const kernel_ops *kernels_x86_avx512(void);
const kernel_ops *kernels_x86_amx(void);   /* AVX-512 + AMX-INT8 tiles for K-quant prefill */
#endif
