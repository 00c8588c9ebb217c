/* quantize_w.c — the importance-weighted quantizers of the K-quants (Q2_K..Q6_K) and the 32-weight
 * types (Q4_0, Q4_1, Q5_0, Q5_1), and IQ4_NL / IQ4_XS with or without weights, byte for byte as
 * the reference quantizer (ggml's quantize_* with quant_weights) makes them: per-weight importance
 * qw[i] * sqrt(sigma2 + x[i]^2), the weighted scale searches of quant_impl.h, fp16 scales rounded
 * to nearest even. Float operations keep the reference's order (built with -ffp-contract=off). */
#include "convert/quant_impl.h"
#include "formats/ggml_types.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---- scale searches ------------------------------------------------------------------------ */

static float qx_weight(const float *x, const float *qw, int i, int rmse_type) {
    if (qw) return qw[i];
    return rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i]));
}

/* the weighted sums of a candidate inverse scale */
static void qx_sums(int n, int nmax, const float *x, const float *qw, int rmse_type, float iscale, float *slx,
                    float *sl2) {
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = qi_max(-nmax, qi_min(nmax - 1, qi_nearest_int(iscale * x[i])));
        float w = qx_weight(x, qw, i, rmse_type);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    *slx = sumlx;
    *sl2 = suml2;
}

float qi_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QI_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx, suml2;
    for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + qi_max(-nmax, qi_min(nmax - 1, qi_nearest_int(iscale * x[i]))));
    qx_sums(n, nmax, x, qw, rmse_type, iscale, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        qx_sums(n, nmax, x, qw, rmse_type, iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + qi_max(-nmax, qi_min(nmax - 1, qi_nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static inline float wt(const float *w, const float *x, int i) { return w ? w[i] : x[i] * x[i]; }

/* a weighted error term: squared, or absolute with use_mad */
static inline float err_of(float diff, bool use_mad) { return use_mad ? fabsf(diff) : diff * diff; }

float qi_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux,
                    float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = wt(weights, x, 0), sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = wt(weights, x, i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_mad = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)qi_max(0, qi_min(nmax, qi_nearest_int(iscale * (x[i] - min))));
        best_mad += wt(weights, x, i) * err_of(scale * L[i] + min - x[i], use_mad);
    }
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = qi_max(0, qi_min(nmax, qi_nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            float w = wt(weights, x, i);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float mad = 0;
        for (int i = 0; i < n; i++) mad += wt(weights, x, i) * err_of(this_scale * Laux[i] + this_min - x[i], use_mad);
        if (mad < best_mad) {
            memcpy(L, Laux, (size_t)n);
            best_mad = mad;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* make_qp_quants' refinement: each quant moved to its least-squares value while that helps */
static float qp_refine(int n, int nmax, const float *x, uint8_t *L, const float *qw, float iscale) {
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = qi_min(nmax, qi_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        float w = qw[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (!(slx > 0 && sl2 > 0)) continue;
            int nl = qi_min(nmax, qi_nearest_int(x[i] * sl2 / slx));
            if (nl == L[i]) continue;
            slx += w * x[i] * nl;
            sl2 += w * nl * nl;
            if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (uint8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float qi_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < QI_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)qi_nearest_int(iscale * x[i]);
    float scale = 1 / iscale, best_mse = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is, mse = 0;
        for (int i = 0; i < n; i++) {
            int l = qi_min(nmax, qi_nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    return qp_refine(n, nmax, x, L, qw, iscale);
}

/* ---- K-quants ------------------------------------------------------------------------------ */

static float sum_sq(const float *x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
    return s;
}

/* the 2-bit groups of 4 x 32 quants, as Q2_K and Q3_K store them */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static void q2_K_block(const float *x, block_q2_K *y, const float *qwb) {
    uint8_t L[QK_K], Laux[16], Ls[16], Lm[16];
    float mins[16], scales[16], sw[16], weight[16];
    memset(sw, 0, sizeof sw);
    float sigma2 = sum_sq(x, QK_K) / QK_K;
    for (int j = 0; j < 16; j++) {
        const float *qw = qwb + 16 * j;
        for (int l = 0; l < 16; l++) weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < 16; l++) sw[j] += weight[l];
        scales[j] = qi_qkx_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    y->d = f32_to_fp16(qi_qp_quants(16, 15, scales, Ls, sw));
    y->dmin = f32_to_fp16(qi_qp_quants(16, 15, mins, Lm, sw));
    for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    qi_q2_K_finish(x, y, L);
}

void qi_q2_K_finish(const float *x, block_q2_K *y, uint8_t *L) {
    const float dm = fp16_to_f32(y->d), mm = fp16_to_f32(y->dmin);
    for (int j = 0; j < 16; j++) {
        const float d = dm * (y->scales[j] & 0xF);
        if (!d) continue;
        const float m = mm * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (uint8_t)qi_max(0, qi_min(3, qi_nearest_int((x[16 * j + ii] + m) / d)));
    }
    pack_2bit(L, y->qs);
}

void qi_q2_K_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q2_K *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) q2_K_block(x, y++, qw + QK_K * i);
}

void qi_q3_pack_scales(const int8_t *Ls, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        int l = Ls[j];
        if (j < 8) s[j] = (uint8_t)(l & 0xF);
        else s[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        s[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
}

static void q3_K_block(const float *x, block_q3_K *y, const float *qwb) {
    int8_t L[QK_K], Ls[16];
    float scales[16], weight[16], sw[16];
    float sigma2 = 2 * sum_sq(x, QK_K) / QK_K;
    for (int j = 0; j < 16; j++) {
        if (qwb)
            for (int l = 0; l < 16; l++) weight[l] = qwb[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        else
            for (int l = 0; l < 16; l++) weight[l] = x[16 * j + l] * x[16 * j + l];
        float sumw = 0;
        for (int l = 0; l < 16; l++) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = qi_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    float d_block = qi_qx_quants(16, 32, scales, Ls, 1, sw);
    qi_q3_pack_scales(Ls, y->scales);
    y->d = f32_to_fp16(d_block);
    qi_q3_K_finish(x, y, L);
}

void qi_q3_K_finish(const float *x, block_q3_K *y, int8_t *L) {
    for (int j = 0; j < 16; j++) {
        int sc = j < 8 ? y->scales[j] & 0xF : y->scales[j - 8] >> 4;
        sc = (int8_t)((sc | (((y->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
        float d = fp16_to_f32(y->d) * sc;
        if (!d) continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (int8_t)(qi_max(-4, qi_min(3, qi_nearest_int(x[16 * j + ii] / d))) + 4);
    }
    memset(y->hmask, 0, 32);
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < QK_K; j++) {
        if (L[j] > 3) {
            y->hmask[m] |= hm;
            L[j] -= 4;
        }
        if (++m == 32) {
            m = 0;
            hm <<= 1;
        }
    }
    pack_2bit((const uint8_t *)L, y->qs);
}

void qi_q3_K_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q3_K *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) q3_K_block(x, y++, qw ? qw + QK_K * i : NULL);
}

/* Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins (nmax 15 or 31); the final quants in L */
static void k45_block_w(const float *x, const float *qwb, int nmax, ggml_half *pd, ggml_half *pdmin, uint8_t *sc12,
                        uint8_t *L) {
    uint8_t Laux[32], Ls[8], Lm[8];
    float weights[32], sw[8], mins[8], scales[8];
    float sigma2 = 2 * sum_sq(x, QK_K) / QK_K;
    for (int j = 0; j < 8; j++) {
        const float *qw = qwb + 32 * j;
        for (int l = 0; l < 32; l++) weights[l] = qw[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; l++) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = qi_qkx_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    float d_block = qi_qp_quants(8, 63, scales, Ls, sw), m_block = qi_qp_quants(8, 63, mins, Lm, sw);
    for (int j = 0; j < 8; j++) {
        Ls[j] = Ls[j] < 63 ? Ls[j] : 63;
        Lm[j] = Lm[j] < 63 ? Lm[j] : 63;
    }
    kq_pack_scale_min(sc12, Ls, Lm);
    *pd = f32_to_fp16(d_block);
    *pdmin = f32_to_fp16(m_block);
    qi_k45_requant(x, sc12, *pd, *pdmin, nmax, L);
}

void qi_q4_K_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q4_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K, y++) {
            k45_block_w(x, qw + QK_K * i, 15, &y->d, &y->dmin, y->scales, L);
            qi_q4_K_pack(L, y->qs);
        }
}

void qi_q5_K_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q5_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K, y++) {
            k45_block_w(x, qw + QK_K * i, 31, &y->d, &y->dmin, y->scales, L);
            qi_q5_K_pack(L, y->qh, y->qs);
        }
}

static void q6_K_block_w(const float *x, block_q6_K *y, const float *qwb) {
    int8_t L[QK_K];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = qi_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qwb ? qwb + 16 * ib : NULL);
        if (fabsf(scales[ib]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < QI_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        y->d = f32_to_fp16(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = f32_to_fp16(1 / iscale);
    for (int ib = 0; ib < 16; ib++) y->scales[ib] = (int8_t)qi_min(127, qi_nearest_int(iscale * scales[ib]));
    for (int j = 0; j < 16; j++) {
        float d = fp16_to_f32(y->d) * y->scales[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (int8_t)(qi_max(-32, qi_min(31, qi_nearest_int(x[16 * j + ii] / d))) + 32);
    }
    uint8_t *ql = y->ql, *qh = y->qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
}

void qi_q6_K_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q6_K *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) q6_K_block_w(x, y++, qw ? qw + QK_K * i : NULL);
}

/* ---- 32-weight blocks ---------------------------------------------------------------------- */

/* the importance of the 32 weights of block ib of a row whose sum of squares / npr is sigma2 */
static void block_weights(const float *xb, const float *qw, float sigma2, float *weight) {
    for (int j = 0; j < 32; j++) weight[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

void qi_q4_0_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q4_0 *y = vy;
    float weight[32];
    int8_t L[32];
    for (int64_t r = 0; r < nrows; r++, x += npr) {
        float sigma2 = sum_sq(x, npr) / npr;
        for (int64_t ib = 0; ib < npr / 32; ib++, y++) {
            block_weights(x + 32 * ib, qw + 32 * ib, sigma2, weight);
            y->d = f32_to_fp16(qi_qx_quants(32, 8, x + 32 * ib, L, 1, weight));
            for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
    }
}

void qi_q4_1_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q4_1 *y = vy;
    float weight[32], min;
    uint8_t L[32], Laux[32];
    for (int64_t r = 0; r < nrows; r++, x += npr) {
        float sigma2 = sum_sq(x, npr) / npr;
        for (int64_t ib = 0; ib < npr / 32; ib++, y++) {
            block_weights(x + 32 * ib, qw + 32 * ib, sigma2, weight);
            float d = qi_qkx_quants(32, 15, x + 32 * ib, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
            y->d = f32_to_fp16(d);
            y->m = f32_to_fp16(-min);
            for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
    }
}

/* Q5_0 / Q5_1's low nibbles and fifth bits */
static void pack_q5(const uint8_t *L, uint8_t *qs, uint8_t *qh4) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        qh |= ((L[j] & 0x10u) >> 4) << j;
        qh |= ((L[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    memcpy(qh4, &qh, 4);
}

void qi_q5_0_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q5_0 *y = vy;
    float weight[32];
    int8_t L[32];
    for (int64_t r = 0; r < nrows; r++, x += npr) {
        float sigma2 = sum_sq(x, npr) / npr;
        for (int64_t ib = 0; ib < npr / 32; ib++, y++) {
            block_weights(x + 32 * ib, qw + 32 * ib, sigma2, weight);
            y->d = f32_to_fp16(qi_qx_quants(32, 16, x + 32 * ib, L, 1, weight));
            pack_q5((const uint8_t *)L, y->qs, y->qh);
        }
    }
}

void qi_q5_1_w(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_q5_1 *y = vy;
    float weight[32], min;
    uint8_t L[32], Laux[32];
    for (int64_t r = 0; r < nrows; r++, x += npr) {
        float sigma2 = sum_sq(x, npr) / npr;
        for (int64_t ib = 0; ib < npr / 32; ib++, y++) {
            block_weights(x + 32 * ib, qw + 32 * ib, sigma2, weight);
            float d = qi_qkx_quants(32, 31, x + 32 * ib, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
            y->d = f32_to_fp16(d);
            y->m = f32_to_fp16(-min);
            pack_q5(L, y->qs, y->qh);
        }
    }
}

/* ---- IQ4_NL / IQ4_XS ----------------------------------------------------------------------- */

/* the non-linear 4-bit levels (ggml-common.h's kvalues_iq4nl: a fact of the format) */
static const int8_t IQ4NL_VALUES[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* the level nearest x (the lower one on a tie), by bisection as the reference does */
static int best_index_iq4(float x) {
    const int8_t *val = IQ4NL_VALUES;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mav = (ml + mu) / 2;
        if (x < val[mav]) mu = mav;
        else ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* the weighted sums of the levels nearest id * xb */
static void iq4_sums(const float *xb, const float *weight, float id, float *sqx, float *sq2, uint8_t *Lb) {
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        int l = best_index_iq4(id * xb[j]);
        if (Lb) Lb[j] = (uint8_t)l;
        float q = IQ4NL_VALUES[l], w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    *sqx = sumqx;
    *sq2 = sumq2;
}

/* The scale of one block of 32 (ntry 7: 15 candidate scales); 0 for a block of zeros. */
static float iq4_block_scale(const float *xb, const float *qw, float sigma2, float *weight, uint8_t *Lb) {
    if (qw)
        for (int j = 0; j < 32; j++) weight[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
    else
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(xb[j]) > amax) {
            amax = fabsf(xb[j]);
            max = xb[j];
        }
    if (amax < QI_GROUP_MAX_EPS) return 0;
    float d = -max / IQ4NL_VALUES[0], sumqx, sumq2;
    iq4_sums(xb, weight, 1 / d, &sumqx, &sumq2, Lb);
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -7; itry <= 7; itry++) {
        iq4_sums(xb, weight, (itry + IQ4NL_VALUES[0]) / max, &sumqx, &sumq2, NULL);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

static void iq4_pack(const uint8_t *L, uint8_t *q4, int n) {
    for (int i = 0; i < n / 32; i++)
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void qi_iq4_nl(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq4_nl *y = vy;
    uint8_t L[32];
    float weight[32];
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t ib = 0; ib < npr / 32; ib++, x += 32, y++) {
            float sigma2 = sum_sq(x, 32) * (2.f / 32);
            float d = iq4_block_scale(x, qw ? qw + 32 * ib : NULL, sigma2, weight, L);
            y->d = f32_to_fp16(d);
            float id = d ? 1 / d : 0;
            for (int j = 0; j < 32; j++) L[j] = (uint8_t)best_index_iq4(id * x[j]);
            iq4_pack(L, y->qs, 32);
        }
}

static void iq4_xs_block(const float *x, block_iq4_xs *y, const float *qwb) {
    uint8_t L[QK_K];
    float weight[32], scales[8], max_scale = 0, amax_scale = 0;
    float sigma2 = sum_sq(x, QK_K) * (2.f / QK_K);
    for (int ib = 0; ib < 8; ib++) {
        scales[ib] = iq4_block_scale(x + 32 * ib, qwb ? qwb + 32 * ib : NULL, sigma2, weight, L + 32 * ib);
        if (fabsf(scales[ib]) > amax_scale) {
            amax_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    y->scales_h = 0;
    float d = -max_scale / 32;
    y->d = f32_to_fp16(d);
    float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < 8; ib++) {
        int l = qi_max(-32, qi_min(31, qi_nearest_int(id * scales[ib])));
        float dl = d * l, idl = dl ? 1 / dl : 0.f;
        for (int j = 0; j < 32; j++) L[32 * ib + j] = (uint8_t)best_index_iq4(idl * x[32 * ib + j]);
        l += 32;
        if (ib % 2 == 0) y->scales_l[ib / 2] = (uint8_t)(l & 0xf);
        else y->scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
        y->scales_h |= (uint16_t)((l >> 4) << 2 * (ib % 8));
    }
    iq4_pack(L, y->qs, QK_K);
}

void qi_iq4_xs(const float *x, void *vy, int64_t nrows, int64_t npr, const float *qw) {
    block_iq4_xs *y = vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < npr / QK_K; i++, x += QK_K) iq4_xs_block(x, y++, qw ? qw + QK_K * i : NULL);
}
