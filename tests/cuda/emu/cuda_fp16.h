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
/* the IEEE binary16 bits of a half, and back */
static inline unsigned short __half_as_ushort(__half h) {
    _Float16 f = (_Float16)h.v;
    unsigned short b;
    __builtin_memcpy(&b, &f, 2);
    return b;
}
static inline __half __ushort_as_half(unsigned short b) {
    _Float16 f;
    __builtin_memcpy(&f, &b, 2);
    return __half{(float)f};
}

#endif
