/* cuda_fp16.h (test shim) — the half type of the CUDA kernels for the CPU emulation
 * (tests/cuda/emu/cuda_runtime.h): a value of IEEE binary16, rounded to nearest-even through
 * the compiler's _Float16 as __float2half_rn does, and kept as the float it equals (exact), so
 * reading it back costs nothing. */
#ifndef LFM2C_EMU_CUDA_FP16_H
#define LFM2C_EMU_CUDA_FP16_H

struct __half {
    float v;
};
static inline __half __float2half_rn(float f) { return __half{(float)(_Float16)f}; }
static inline float __half2float(__half h) { return h.v; }

#endif
