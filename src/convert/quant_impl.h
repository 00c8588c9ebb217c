/* quant_impl.h — what the quantizer files share (convert/quantize.c: the plain quantizers and the
 * dispatch; quantize_w.c: the importance-weighted K / legacy / IQ4 quantizers; quantize_iq.c: the
 * IQ1 / IQ2 / IQ3 grid quantizers): the rounding helper, the scale searches, and each type's
 * weighted row quantizer. Internal to convert/; byte parity with the reference depends on the
 * same float operations in the same order (these files build with -ffp-contract=off). */
#ifndef LFM2C_QUANT_IMPL_H
#define LFM2C_QUANT_IMPL_H
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

/* Symmetric quants in [0, 2 nmax) for n values, the scale searched over 19 candidates by weighted
 * least squares (qw, or x^2 with rmse_type 1); returns the scale. */
float qi_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw);
/* Asymmetric quants in [0, nmax] with scale and min (returned in *the_min, negated), nstep + 1
 * candidate scales refit by weighted least squares (weights NULL: x^2). */
float qi_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux,
                     float rmin, float rdelta, int nstep);
/* Non-negative quants in [0, nmax] of non-negative x (sub-block scales), weighted. */
float qi_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* Weighted row quantizers: nrows rows of npr floats (a multiple of the block size) with the
 * importance weights qw (npr values, the same for every row; NULL where the type allows none:
 * then the reference's unweighted path of that function). */
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
