/* kernels_scalar.c — the scalar kernel table and the scalar truth every SIMD table is tested
 * against (tests/cpu/test_kernels.c): vec_dot_ref, one weight row x quantized activations, with
 * the exact integer sum of each block combined in float block after block; vec_dot_float, one
 * weight row x float activations in double precision. Plain C, no ISA-specific code. */
#include "cpu/kernels.h"
#include "cpu/kernels_iq.h"
#include "formats/ggml_types.h"
#include "formats/iq_grids.h"

#include <math.h>
#include <string.h>

/* Unpacks a 32-weight block of the Q4/Q5 families to integers q[32] (before d/m). */
static void unpack_q32(uint32_t t, const uint8_t *p, int *q, float *d, float *m) {
    *m = 0;
    switch (t) {
    case GGML_Q4_0: {
        const block_q4_0 *b = (const void *)p;
        *d = fp16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            q[j] = (b->qs[j] & 0xF) - 8;
            q[j + 16] = (b->qs[j] >> 4) - 8;
        }
        break;
    }
    case GGML_Q4_1: {
        const block_q4_1 *b = (const void *)p;
        *d = fp16_to_f32(b->d);
        *m = fp16_to_f32(b->m);
        for (int j = 0; j < 16; j++) {
            q[j] = b->qs[j] & 0xF;
            q[j + 16] = b->qs[j] >> 4;
        }
        break;
    }
    case GGML_Q5_0: {
        const block_q5_0 *b = (const void *)p;
        uint32_t h;
        memcpy(&h, b->qh, 4);
        *d = fp16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            q[j] = ((b->qs[j] & 0xF) | (((h >> j) & 1) << 4)) - 16;
            q[j + 16] = ((b->qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) - 16;
        }
        break;
    }
    case GGML_Q5_1: {
        const block_q5_1 *b = (const void *)p;
        uint32_t h;
        memcpy(&h, b->qh, 4);
        *d = fp16_to_f32(b->d);
        *m = fp16_to_f32(b->m);
        for (int j = 0; j < 16; j++) {
            q[j] = (b->qs[j] & 0xF) | (((h >> j) & 1) << 4);
            q[j + 16] = (b->qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4);
        }
        break;
    }
    default: {
        const block_q8_0 *b = (const void *)p;
        *d = fp16_to_f32(b->d);
        for (int j = 0; j < 32; j++) q[j] = b->qs[j];
        break;
    }
    }
}

static float dot_q32_q8_0(uint32_t t, int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv;
    const block_q8_0 *a = av;
    size_t bs = ggml_type_get(t)->type_size;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, w += bs) {
        int q[32];
        float d, m;
        unpack_q32(t, w, q, &d, &m);
        int isum = 0, asum = 0;
        for (int j = 0; j < 32; j++) {
            isum += q[j] * a[i].qs[j];
            asum += a[i].qs[j];
        }
        float da = fp16_to_f32(a[i].d);
        sum += d * da * (float)isum + m * da * (float)asum;
    }
    return sum;
}

static float dot_q4_K(uint32_t t, int64_t n, const void *wv, const void *av) {
    const block_q4_K *w = wv;
    const block_q8_K *a = av;
    (void)t;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, mn;
            kq_scale_min(j, w[i].scales, &sc, &mn);
            const uint8_t *q = w[i].qs + 32 * (j / 2);
            int s = 0;
            for (int l = 0; l < 32; l++) s += ((j & 1) ? q[l] >> 4 : q[l] & 0xF) * a[i].qs[32 * j + l];
            sumi += sc * s;
            summ += mn * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        sum += a[i].d * (fp16_to_f32(w[i].d) * sumi - fp16_to_f32(w[i].dmin) * summ);
    }
    return sum;
}

static float dot_q5_K(uint32_t t, int64_t n, const void *wv, const void *av) {
    const block_q5_K *w = wv;
    const block_q8_K *a = av;
    (void)t;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, mn;
            kq_scale_min(j, w[i].scales, &sc, &mn);
            const uint8_t *q = w[i].qs + 32 * (j / 2);
            int s = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((j & 1) ? q[l] >> 4 : q[l] & 0xF) + ((w[i].qh[l] >> j) & 1) * 16;
                s += v * a[i].qs[32 * j + l];
            }
            sumi += sc * s;
            summ += mn * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        sum += a[i].d * (fp16_to_f32(w[i].d) * sumi - fp16_to_f32(w[i].dmin) * summ);
    }
    return sum;
}

static float dot_q6_K(uint32_t t, int64_t n, const void *wv, const void *av) {
    const block_q6_K *w = wv;
    const block_q8_K *a = av;
    (void)t;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[256];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            int8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                qq[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                qq[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                qq[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                qq[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * j + l] * a[i].qs[16 * j + l];
            sumi += w[i].scales[j] * s;
        }
        sum += a[i].d * fp16_to_f32(w[i].d) * sumi;
    }
    return sum;
}

/* ---- the importance-matrix types x Q8_K ----------------------------------------------------
 * A block as integers (kernels_iq.h): weight i is f * ls[i / 16] * q[i], its value exactly before
 * the float rounding of its dequantization; q the grid value with its sign (IQ1: 8 g + delta,
 * the delta of 1/8 made whole). The block's integer total S = sum_k ls[k] (q_k . a_k) is exact,
 * and it adds acc = fma((float)S, f * da, acc), block after block: every SIMD table computes these
 * operations on these integers (kernels_iq_x86.c, kernels_iq_neon.inc), bit for bit. */
static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
/* the n grid bytes of g at q, negated where sign bit j is set */
static void iq_signed(int8_t *q, uint64_t g, int n, unsigned signs) {
    for (int j = 0; j < n; j++) {
        const int v = (int)(g >> 8 * j & 255);
        q[j] = (int8_t)(signs >> j & 1 ? -v : v);
    }
}
/* IQ1's 8 weights: 8 g + delta, g the grid's -1 / 0 / 1 */
static void iq_one(int8_t *q, uint64_t g, int delta) {
    for (int j = 0; j < 8; j++) q[j] = (int8_t)(8 * (int8_t)(g >> 8 * j & 255) + delta);
}
/* the 256 signed weights q of the block at p, 8 at a time (group g of 32) */
static void iq_weights(uint32_t t, const uint8_t *p, int8_t *q) {
    for (int g = 0; g < 32; g++, q += 8) {
        const int ib = g / 4, l = g % 4;
        switch (t) {
        case GGML_IQ2_XXS:
            iq_signed(q, iq2xxs_grid[p[2 + 8 * ib + l]], 8, ksigns_iq2xs[rd32(p + 6 + 8 * ib) >> 7 * l & 127]);
            break;
        case GGML_IQ2_XS: {
            const unsigned v = p[2 + 2 * g] | (unsigned)p[3 + 2 * g] << 8;
            iq_signed(q, iq2xs_grid[v & 511], 8, ksigns_iq2xs[v >> 9]);
            break;
        }
        case GGML_IQ2_S: iq_signed(q, iq2s_grid[p[2 + g] | (p[66 + ib] >> 2 * l & 3) << 8], 8, p[34 + g]); break;
        case GGML_IQ3_XXS: {
            const uint8_t s = ksigns_iq2xs[rd32(p + 66 + 4 * ib) >> 7 * l & 127];
            iq_signed(q, iq3xxs_grid[p[2 + 2 * g]], 4, s);
            iq_signed(q + 4, iq3xxs_grid[p[3 + 2 * g]], 4, s >> 4);
            break;
        }
        case GGML_IQ3_S: {
            const unsigned qh = p[66 + ib] >> 2 * l;
            iq_signed(q, iq3s_grid[p[2 + 2 * g] | (qh & 1) << 8], 4, p[74 + g]);
            iq_signed(q + 4, iq3s_grid[p[3 + 2 * g] | (qh >> 1 & 1) << 8], 4, p[74 + g] >> 4);
            break;
        }
        case GGML_IQ1_S: {
            const unsigned qh = p[34 + 2 * ib] | (unsigned)p[35 + 2 * ib] << 8;
            iq_one(q, iq1s_grid[p[2 + g] | (qh >> 3 * l & 7) << 8], qh & 0x8000 ? -1 : 1);
            break;
        }
        default: { /* IQ1_M */
            const unsigned h = p[32 + g / 2] >> 4 * (g % 2);
            iq_one(q, iq1s_grid[p[g] | (h & 7) << 8], h & 8 ? -1 : 1);
            break;
        }
        }
    }
}
static float dot_iq(uint32_t t, int64_t n, const void *wv, const void *av) {
    const size_t bs = iq_bytes(t);
    const uint8_t *w = wv;
    const block_q8_K *a = av;
    float acc = 0;
    for (int64_t i = 0; i < n / QK_K; i++, w += bs) {
        int8_t q[QK_K];
        int16_t ls[16];
        iq_weights(t, w, q);
        iq_ls(t, w, ls);
        int32_t S = 0;
        for (int k = 0; k < 16; k++) {
            int32_t s = 0;
            for (int j = 0; j < 16; j++) s += q[16 * k + j] * a[i].qs[16 * k + j];
            S += ls[k] * s;
        }
        acc = fmaf((float)S, iq_f_of(t, fp16_to_f32(iq_d_bits(t, w))) * a[i].d, acc);
    }
    return acc;
}

/* Q2_K x Q8_K: weight = d sc q - dmin m (q 0..3; sc, m the 4-bit scale and min of 16 weights);
 * the block adds da (d S - dmin M), S = sum sc (q . a), M = sum m bsum (the K-quants' formula). */
static float dot_q2_K(uint32_t t, int64_t n, const void *wv, const void *av) {
    const block_q2_K *w = wv;
    const block_q8_K *a = av;
    (void)t;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int S = 0, M = 0;
        for (int k = 0; k < 16; k++) {
            /* sub-block k: 16 weights of bytes qs[32 (k / 8) + 16 (k % 2) ..], bits 2 ((k / 2) % 4) */
            const uint8_t *q = w[i].qs + 32 * (k / 8) + 16 * (k % 2);
            const int sh = 2 * ((k / 2) % 4);
            int s = 0;
            for (int l = 0; l < 16; l++) s += (q[l] >> sh & 3) * a[i].qs[16 * k + l];
            S += (w[i].scales[k] & 15) * s;
            M += (w[i].scales[k] >> 4) * a[i].bsums[k];
        }
        sum += a[i].d * (fp16_to_f32(w[i].d) * S - fp16_to_f32(w[i].dmin) * M);
    }
    return sum;
}
/* Q3_K's 16 signed 6-bit scales from its 12 bytes */
static void q3K_scales(const uint8_t *b, int8_t *sc) {
    for (int k = 0; k < 16; k++) {
        const int lo = k < 8 ? b[k] & 15 : b[k - 8] >> 4, hi = b[8 + k % 4] >> 2 * (k / 4) & 3;
        sc[k] = (int8_t)((lo | hi << 4) - 32);
    }
}
/* Q3_K x Q8_K: weight = d sc q, q = low 2 bits - 4 where the hmask bit is clear (-4..3); the
 * block adds da d S, S = sum sc (q . a) (as Q6_K). */
static float dot_q3_K(uint32_t t, int64_t n, const void *wv, const void *av) {
    const block_q3_K *w = wv;
    const block_q8_K *a = av;
    (void)t;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        q3K_scales(w[i].scales, sc);
        int S = 0;
        for (int k = 0; k < 16; k++) {
            const int half = k / 8, j = (k / 2) % 4, off = 16 * (k % 2);
            const uint8_t *q = w[i].qs + 32 * half + off, *hm = w[i].hmask + off;
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += ((q[l] >> 2 * j & 3) - (hm[l] >> (4 * half + j) & 1 ? 0 : 4)) * a[i].qs[16 * k + l];
            S += sc[k] * s;
        }
        sum += a[i].d * fp16_to_f32(w[i].d) * S;
    }
    return sum;
}

/* IQ4_XS x Q8_K: weight = d (ls - 32) v, v the non-linear table's value of the nibble, ls the
 * 6-bit scale of 32 weights; the block adds da d S, S = sum (ls - 32) (v . a). */
static float dot_iq4_xs(uint32_t t, int64_t n, const void *wv, const void *av) {
    static const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    const block_iq4_xs *w = wv;
    const block_q8_K *a = av;
    (void)t;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int S = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int ls = (w[i].scales_l[ib / 2] >> 4 * (ib % 2) & 15) | (w[i].scales_h >> 2 * ib & 3) << 4;
            const uint8_t *q = w[i].qs + 16 * ib;
            const int8_t *x = a[i].qs + 32 * ib;
            int s = 0;
            for (int l = 0; l < 16; l++) s += kv[q[l] & 15] * x[l] + kv[q[l] >> 4] * x[l + 16];
            S += (ls - 32) * s;
        }
        sum += a[i].d * fp16_to_f32(w[i].d) * S;
    }
    return sum;
}

/* The truth of each type multiplied with integer activations (its row's vec_dot_type); the
 * types of float activations take vec_dot_float. */
typedef float (*dot_ref_fn)(uint32_t t, int64_t n, const void *w, const void *act);
static const dot_ref_fn DOT_REF[GGML_NTYPES] = {
    [GGML_Q4_0] = dot_q32_q8_0, [GGML_Q4_1] = dot_q32_q8_0, [GGML_Q5_0] = dot_q32_q8_0, [GGML_Q5_1] = dot_q32_q8_0,
    [GGML_Q8_0] = dot_q32_q8_0, [GGML_Q4_K] = dot_q4_K,     [GGML_Q5_K] = dot_q5_K,     [GGML_Q6_K] = dot_q6_K,
    [GGML_IQ2_XXS] = dot_iq,    [GGML_IQ2_XS] = dot_iq,     [GGML_IQ2_S] = dot_iq,      [GGML_IQ3_XXS] = dot_iq,
    [GGML_IQ3_S] = dot_iq,      [GGML_IQ1_S] = dot_iq,      [GGML_IQ1_M] = dot_iq,      [GGML_Q2_K] = dot_q2_K,
    [GGML_Q3_K] = dot_q3_K,     [GGML_IQ4_XS] = dot_iq4_xs,
};

float vec_dot_ref(uint32_t t, int64_t n, const void *w, const void *act) {
    const dot_ref_fn f = t < GGML_NTYPES ? DOT_REF[t] : NULL;
    return f ? f(t, n, w, act) : vec_dot_float(t, n, w, act);
}

float vec_dot_float(uint32_t t, int64_t n, const void *w, const float *x) {
    const ggml_type_info *ti = ggml_type_get(t);
    int bs = ti->block_size;
    int chunk = bs >= 256 ? bs : 256 / bs * bs;
    float buf[256];
    double sum = 0;
    const uint8_t *p = w;
    for (int64_t i = 0; i < n; i += chunk) {
        int m = (int)(n - i < chunk ? n - i : chunk);
        dequantize_row(t, p + (size_t)(i / bs) * ti->type_size, buf, m);
        for (int j = 0; j < m; j++) sum += (double)buf[j] * x[i + j];
    }
    return (float)sum;
}

/* ---- the scalar table -------------------------------------------------------------------- */

static void scalar_quantize_act(uint32_t act_type, const float *x, void *dst, int64_t n) {
    if (act_type == GGML_Q8_0) quantize_row_q8_0(x, dst, n);
    else if (act_type == GGML_Q8_K) quantize_row_q8_K(x, dst, n);
    else memcpy(dst, x, (size_t)n * sizeof(float));
}

static void scalar_matmul(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                          size_t act_row, int nc, float *out, size_t out_stride) {
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) out[c * out_stride + r] = vec_dot_ref(wtype, n, w + r * w_row, act + c * act_row);
}

static const kernel_ops SCALAR = {
    "scalar", true, scalar_quantize_act, scalar_matmul, attention_scalar, NULL, swiglu_scalar, f16_row_scalar, 0};

const kernel_ops *kernels_scalar(void) { return &SCALAR; }
