/* quant_impl.h — what the quantizer files share (convert/quantize.c: the plain quantizers and the
 * dispatch; quantize_w.c: the importance-weighted K / legacy / IQ4 quantizers; quantize_iq.c: the
 * IQ1 / IQ2 / IQ3 grid quantizers): the rounding helper, the scale searches, the K-quants' last
 * steps the plain and the weighted quantizer share (requantization from the stored scales, the
 * packing), and each type's weighted row quantizer. Internal to convert/; byte parity with the reference depends on the
 * same float operations in the same order (these files build with -ffp-contract=off). */
#ifndef LFM2C_QUANT_IMPL_H
#define LFM2C_QUANT_IMPL_H
#include "formats/ggml_types.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define QI_GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, for |f| < 2^22 (adding 1.5*2^23 puts the integer part in the
 * low mantissa bits), as the reference rounds. */
static inline int qi_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}
static inline int qi_min(int a, int b) { return a < b ? a : b; }
static inline int qi_max(int a, int b) { return a > b ? a : b; }

/* Q4_K / Q5_K's final quants of a block (8 sub-blocks of 32) in [0, nmax] from its packed scales
 * and mins sc12 and super-block scales d, dmin (as stored: F16), as the reference requantizes. */
void qi_k45_requant(const float *x, const uint8_t *sc12, uint16_t d, uint16_t dmin, int nmax, uint8_t *L);
/* The rest of a Q2_K / Q3_K block once its scales and d (and Q2_K's dmin) are stored, the plain
 * and the weighted quantizer alike: the final quants (in L) from the stored scales, packed. */
void qi_q2_K_finish(const float *x, block_q2_K *y, uint8_t *L);
void qi_q3_K_finish(const float *x, block_q3_K *y, int8_t *L);
/* Q3_K's 16 6-bit scales Ls (biased by 32) into its 12 bytes s */
void qi_q3_pack_scales(const int8_t *Ls, uint8_t *s);

/* Q4_K's quants L (in [0, 15]) into its nibbles qs */
static inline void qi_q4_K_pack(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 64, qs += 32)
        for (int l = 0; l < 32; l++) qs[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}
/* Q5_K's quants L (in [0, 31]) into its low nibbles ql and fifth bits qh */
static inline void qi_q5_K_pack(const uint8_t *L, uint8_t *qh, uint8_t *ql) {
    uint8_t m1 = 1, m2 = 2;
    memset(qh, 0, 32);
    for (int n = 0; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2)
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) l1 -= 16, qh[j] |= m1;
            if (l2 > 15) l2 -= 16, qh[j] |= m2;
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
}

/* Symmetric quants in [0, 2 nmax) for n values, the scale searched over 19 candidates by weighted
 * least squares (qw, or x^2 with rmse_type 1); returns the scale. */
float qi_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw);
/* Asymmetric quants in [0, nmax] with scale and min (returned in *the_min, negated), nstep + 1
 * candidate scales refit by weighted least squares (weights NULL: x^2), the one of least weighted
 * squared error kept (use_mad: absolute error; the reference's make_qkx2_quants and, without,
 * make_qkx3_quants); nstep < 1: the min / max fit alone. */
float qi_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux,
                    float rmin, float rdelta, int nstep, bool use_mad);
/* Non-negative quants in [0, nmax] of non-negative x (sub-block scales), weighted. */
float qi_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* Weighted row quantizers: nrows rows of npr floats (a multiple of the block size) with the
 * importance weights qw (npr values, the same for every row; NULL where the type allows none:
 * then the reference's unweighted path of that function; Q6_K's is then its plain quantizer). */
typedef void (*qi_rows_fn)(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q2_K_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q3_K_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q4_K_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q5_K_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q6_K_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q4_0_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q4_1_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q5_0_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_q5_1_w(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
/* IQ4_NL and IQ4_XS: qw may be NULL (weights x^2) */
void qi_iq4_nl(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_iq4_xs(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
/* quantize_iq.c: the grid types. IQ2_XXS, IQ2_XS and IQ1_S need qw; the others take NULL. */
void qi_iq2_xxs(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_iq2_xs(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_iq2_s(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_iq3_xxs(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_iq3_s(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_iq1_s(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
void qi_iq1_m(const float *x, void *y, int64_t nrows, int64_t npr, const float *qw);
/* Builds the index map and neighbour lists of the grid `type` quantizes to (once; thread-safe):
 * 0 when out of memory, 1 when ready or when the type needs none. */
int qi_iq_prepare(uint32_t type);
#endif
