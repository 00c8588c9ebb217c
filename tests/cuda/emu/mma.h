/* mma.h (test shim) — the part of nvcuda::wmma the CUDA kernels use (16x16x16 tiles of half
 * with float accumulators), and PTX's m16n8k16 mma.sync (emu_mma_16816_n, below), for the CPU
 * emulation (tests/cuda/emu/cuda_runtime.h). On a GPU a
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

/* PTX mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, the warp's registers as PTX lays them
 * out (lane = 4 group + t): A (16 x 16, row-major) a[0] = (group, 2t..2t+1), a[1] = (group + 8,
 * 2t..), a[2] = (group, 8 + 2t..), a[3] = (group + 8, 8 + 2t..); B (16 x 8, column-major) b[0] =
 * (k 2t..2t+1, column group), b[1] = (k 8 + 2t.., column group); C / D c[0..1] = (group,
 * 2t..2t+1), c[2..3] = (group + 8, 2t..2t+1); two halves per register, the lower index in the
 * low 16 bits. emu_mma_16816_n runs nb such products of one A, product j on b[j] into d[j / per_d],
 * in order: every lane hands its registers over at one warp barrier (as a shuffle does), then
 * computes its own sums over k in order, in float (products of halves are exact). */
enum { EMU_MMA_MAX_B = 8 };
static inline float emu_h16(uint32_t r, int hi) {
    return __half2float(__ushort_as_half((unsigned short)(r >> (16 * hi))));
}
static inline void emu_mma_16816_n(float (*d)[4], const uint32_t a[4], const uint32_t (*b)[2], int nb, int per_d) {
    emu_rt::state &s = emu_rt::S();
    if (s.nthreads % 32) emu_rt::device_error("mma with a partial warp");
    if (nb > EMU_MMA_MAX_B) emu_rt::device_error("mma: too many B fragments");
    const int t = s.cur, g = s.f[t].shfl_gen++ & 1, w = t & ~31, lane = t & 31, grp = lane / 4, tig = lane % 4;
    float *mine = s.mma_vals[g][t]; /* the registers' halves, as the floats they equal */
    for (int i = 0; i < 4; i++) mine[2 * i] = emu_h16(a[i], 0), mine[2 * i + 1] = emu_h16(a[i], 1);
    for (int j = 0; j < nb; j++)
        for (int r = 0; r < 2; r++)
            mine[8 + 4 * j + 2 * r] = emu_h16(b[j][r], 0), mine[9 + 4 * j + 2 * r] = emu_h16(b[j][r], 1);
    emu_rt::yield(emu_rt::WAIT_WARP);
    float A[2][16]; /* this lane's rows grp and grp + 8: register (k < 8 ? 0 : 2) + h of lane 4 grp + (k % 8) / 2 */
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 16; k++)
            A[h][k] = s.mma_vals[g][w + 4 * grp + (k % 8) / 2][2 * ((k < 8 ? 0 : 2) + h) + (k & 1)];
    for (int j = 0; j < nb; j++) {
        float B[2][16]; /* this lane's columns 2 tig + c: register (k >= 8) of lane 4 column + (k % 8) / 2 */
        for (int c = 0; c < 2; c++)
            for (int k = 0; k < 16; k++)
                B[c][k] = s.mma_vals[g][w + 4 * (2 * tig + c) + (k % 8) / 2][8 + 4 * j + 2 * (k >= 8) + (k & 1)];
        float *acc = d[j / per_d];
        for (int i = 0; i < 4; i++) {
            float sum = acc[i];
            for (int k = 0; k < 16; k++) sum += A[i / 2][k] * B[i & 1][k];
            acc[i] = sum;
        }
    }
}

#endif
