/* mma.h (test shim) — the part of nvcuda::wmma the CUDA kernels use (16x16x16 tiles of half
 * with float accumulators), for the CPU emulation (tests/cuda/emu/cuda_runtime.h). On a GPU a
 * fragment is spread over the warp's lanes in a layout the API does not name; here lane 0 of
 * the warp holds the whole tile and does the warp's loads, products and stores, which are no-ops
 * on the other lanes (the API's calls are made by the whole warp). Products of halves are exact
 * in float; the sums run over k in order, in float. */
#ifndef LFM2C_EMU_MMA_H
#define LFM2C_EMU_MMA_H

#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

static inline bool emu_lane0() { return (emu_rt::S().cur & 31) == 0; }

/* v[i][j]: matrix_a [m][k], matrix_b [k][n], accumulator [m][n] */
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment { float v[16][16]; };

template <class T, class L> static inline void fill_fragment(fragment<accumulator, 16, 16, 16, T, L> &f, float x) {
    if (!emu_lane0()) return;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) f.v[i][j] = x;
}
static inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, __half, row_major> &f, const __half *p,
                                    unsigned ldm) {
    if (!emu_lane0()) return;
    for (int m = 0; m < 16; m++)
        for (int k = 0; k < 16; k++) f.v[m][k] = __half2float(p[(size_t)m * ldm + k]);
}
static inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, __half, col_major> &f, const __half *p,
                                    unsigned ldm) {
    if (!emu_lane0()) return;
    for (int n = 0; n < 16; n++)
        for (int k = 0; k < 16; k++) f.v[k][n] = __half2float(p[(size_t)n * ldm + k]);
}
template <class L>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float, L> &d,
                            const fragment<matrix_a, 16, 16, 16, __half, row_major> &a,
                            const fragment<matrix_b, 16, 16, 16, __half, col_major> &b,
                            const fragment<accumulator, 16, 16, 16, float, L> &c) {
    if (!emu_lane0()) return;
    float r[16][16];
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float s = c.v[m][n];
            for (int k = 0; k < 16; k++) s += a.v[m][k] * b.v[k][n];
            r[m][n] = s;
        }
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) d.v[m][n] = r[m][n];
}
template <class L>
static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float, L> &f, unsigned ldm,
                                     layout_t layout) {
    if (!emu_lane0()) return;
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) p[layout == mem_row_major ? (size_t)m * ldm + n : (size_t)n * ldm + m] = f.v[m][n];
}

} // namespace wmma
} // namespace nvcuda

#endif
