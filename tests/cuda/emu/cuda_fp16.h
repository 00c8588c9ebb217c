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

/* two halves (x the low 16 bits of the GPU's register), and the fused a * b + c of each lane:
 * exact in double for the values the kernels give it, then rounded to half once, as the GPU's
 * fused half operation rounds */
struct __half2 {
    __half x, y;
};
static inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
static inline __half __low2half(__half2 h) { return h.x; }
static inline __half __high2half(__half2 h) { return h.y; }
static inline __half2 __half2half2(__half a) { return __half2{a, a}; }
static inline __half emu_hfma(__half a, __half b, __half c) {
    return __half{(float)(_Float16)((double)a.v * b.v + c.v)};
}
static inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
    return __half2{emu_hfma(a.x, b.x, c.x), emu_hfma(a.y, b.y, c.y)};
}

#endif
