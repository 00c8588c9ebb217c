/* ggml_types.c — GGML block formats: type table, half/bfloat conversion, bit-exact
 * dequantization (spec section 7; the importance-matrix types as llama.cpp's, over the grids of
 * iq_grids.c) and activation quantization (the Q8_0 / Q8_K activation
 * formats). The scalar reference dot products built on them are the CPU kernels' truth and live
 * with the kernel tables (cpu/kernels_scalar.c). */
#include "formats/ggml_types.h"
#include "base/os.h" /* strcasecmp */
#include "formats/iq_grids.h"

#include <math.h>
#include <string.h>

/* each row's dequantizer, to_float_NAME (below); the activation formats have none */
#define DQ_ROW_DECL(N) static void to_float_##N(const void *src, float *dst, int64_t n);
DQ_ROW_DECL(F32)
DQ_ROW_DECL(F16)
DQ_ROW_DECL(BF16)
DQ_ROW_DECL(Q4_0)
DQ_ROW_DECL(Q4_1)
DQ_ROW_DECL(Q5_0)
DQ_ROW_DECL(Q5_1)
DQ_ROW_DECL(Q8_0)
DQ_ROW_DECL(Q2_K)
DQ_ROW_DECL(Q3_K)
DQ_ROW_DECL(Q4_K)
DQ_ROW_DECL(Q5_K)
DQ_ROW_DECL(Q6_K)
DQ_ROW_DECL(IQ4_NL)
DQ_ROW_DECL(IQ4_XS)
DQ_ROW_DECL(MXFP4)
DQ_ROW_DECL(IQ2_XXS)
DQ_ROW_DECL(IQ2_XS)
DQ_ROW_DECL(IQ2_S)
DQ_ROW_DECL(IQ3_XXS)
DQ_ROW_DECL(IQ3_S)
DQ_ROW_DECL(IQ1_S)
DQ_ROW_DECL(IQ1_M)
#undef DQ_ROW_DECL
#define to_float_Q8_1 NULL
#define to_float_Q8_K NULL

/* the block structs are the format's bytes (ggml's ggml-common.h) */
_Static_assert(sizeof(block_iq2_xxs) == 66 && sizeof(block_iq2_xs) == 74 && sizeof(block_iq2_s) == 82 &&
                   sizeof(block_iq3_xxs) == 98 && sizeof(block_iq3_s) == 110 && sizeof(block_iq1_s) == 50 &&
                   sizeof(block_iq1_m) == 56,
               "IQ block sizes");

/* the interleaved layout of a row's type (ggml_types.h: X16), 0: none */
#define X16_OF(id) \
    ((id) == GGML_Q4_K   ? GGML_Q4_K_X16 \
     : (id) == GGML_Q6_K ? GGML_Q6_K_X16 \
     : (id) == GGML_Q2_K ? GGML_Q2_K_X16 \
     : (id) == GGML_Q3_K ? GGML_Q3_K_X16 \
                         : 0)

#define TYPE_ROW(N, id, bs, sz, vd, runs, fl, fb) \
    [id] = {#N, bs, (int)(sz), vd, runs, fl, fb, X16_OF(id), 0, to_float_##N},
static const ggml_type_info TYPES[GGML_NTYPES_ALL] = {
    GGML_TYPE_TABLE(TYPE_ROW)
        /* the internal layouts: same blocks, read by the CPU's tiles only (x16_unpack gives rows back) */
        [GGML_Q4_K_X16] = {"Q4_K_X16", 256, sizeof(block_q4_K), GGML_Q8_K, GGML_RUN_CPU, 0, GGML_F32, 0, GGML_Q4_K,
                           NULL},
    [GGML_Q6_K_X16] = {"Q6_K_X16", 256, sizeof(block_q6_K), GGML_Q8_K, GGML_RUN_CPU, 0, GGML_F32, 0, GGML_Q6_K, NULL},
    [GGML_Q2_K_X16] = {"Q2_K_X16", 256, sizeof(block_q2_K), GGML_Q8_K, GGML_RUN_CPU, 0, GGML_F32, 0, GGML_Q2_K, NULL},
    [GGML_Q3_K_X16] = {"Q3_K_X16", 256, sizeof(block_q3_K), GGML_Q8_K, GGML_RUN_CPU, 0, GGML_F32, 0, GGML_Q3_K, NULL},
};
_Static_assert(sizeof(block_q2_K) == 84 && sizeof(block_q3_K) == 110, "the X16 byte maps' block sizes");
#undef TYPE_ROW

const ggml_type_info *ggml_type_get(uint32_t type) {
    if (type >= GGML_NTYPES_ALL || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

int ggml_type_by_name(const char *name) {
    for (uint32_t t = 0; name && t < GGML_NTYPES; t++)
        if (TYPES[t].name && !strcasecmp(name, TYPES[t].name)) return (int)t;
    return -1;
}

bool ggml_type_readable(uint32_t type) { return type < GGML_NTYPES && TYPES[type].to_float; }

size_t ggml_row_size(uint32_t type, int64_t n) {
    const ggml_type_info *t = ggml_type_get(type);
    if (!t || n % t->block_size) return 0;
    return (size_t)(n / t->block_size) * t->type_size;
}

/* ---- scalar conversions ------------------------------------------------------------------ */

float fp16_to_f32(ggml_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000 | (man << 13); /* inf / nan */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

ggml_half f32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffff;
    if (absx > 0x7f800000) return (ggml_half)(sign | 0x7e00);  /* nan */
    if (absx >= 0x477ff000) return (ggml_half)(sign | 0x7c00); /* overflow -> inf */
    if (absx < 0x38800000) {                                   /* subnormal or zero */
        if (absx < 0x33000000) return (ggml_half)sign;         /* < half the smallest */
        uint32_t e = absx >> 23, man = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)e; /* 14 + (113 - e) - 1 */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (ggml_half)(sign | q);
    }
    uint32_t q = (absx >> 13) - (112u << 10), rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (ggml_half)(sign | q);
}

float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 64); /* quiet nan */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

/* ---- dequantization (spec 7) ------------------------------------------------------------- */

static const int8_t IQ4NL_TABLE[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const int8_t MXFP4_TABLE[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static void dq_q4_0(const block_q4_0 *b, float *y) {
    float d = fp16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * ((b->qs[j] & 0xF) - 8);
        y[j + 16] = d * ((b->qs[j] >> 4) - 8);
    }
}
static void dq_q4_1(const block_q4_1 *b, float *y) {
    float d = fp16_to_f32(b->d), m = fp16_to_f32(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (b->qs[j] & 0xF) + m;
        y[j + 16] = d * (b->qs[j] >> 4) + m;
    }
}
static void dq_q5_0(const block_q5_0 *b, float *y) {
    float d = fp16_to_f32(b->d);
    uint32_t h;
    memcpy(&h, b->qh, 4);
    for (int j = 0; j < 16; j++) {
        /* int: the 5-bit value minus 16 is negative (h is unsigned) */
        y[j] = d * ((int)((b->qs[j] & 0xF) | (((h >> j) & 1) << 4)) - 16);
        y[j + 16] = d * ((int)((b->qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) - 16);
    }
}
static void dq_q5_1(const block_q5_1 *b, float *y) {
    float d = fp16_to_f32(b->d), m = fp16_to_f32(b->m);
    uint32_t h;
    memcpy(&h, b->qh, 4);
    for (int j = 0; j < 16; j++) {
        y[j] = d * ((b->qs[j] & 0xF) | (((h >> j) & 1) << 4)) + m;
        y[j + 16] = d * ((b->qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) + m;
    }
}
static void dq_q8_0(const block_q8_0 *b, float *y) {
    float d = fp16_to_f32(b->d);
    for (int j = 0; j < 32; j++) y[j] = d * b->qs[j];
}
static void dq_q2_K(const block_q2_K *b, float *y) {
    float d = fp16_to_f32(b->d), dmin = fp16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    int is = 0;
    for (int n = 0; n < 2; n++, q += 32)
        for (int s = 0; s < 8; s += 2) {
            for (int half = 0; half < 2; half++) {
                uint8_t sc = b->scales[is++];
                float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16 * half] >> s) & 3) - ml;
            }
        }
}
static void dq_q3_K(const block_q3_K *b, float *y) {
    float d = fp16_to_f32(b->d);
    uint32_t a[3], A[4];
    memcpy(a, b->scales, 12);
    const uint32_t m1 = 0x03030303, m2 = 0x0f0f0f0f, t = a[2];
    A[2] = ((a[0] >> 4) & m2) | (((t >> 4) & m1) << 4);
    A[3] = ((a[1] >> 4) & m2) | (((t >> 6) & m1) << 4);
    A[0] = (a[0] & m2) | (((t >> 0) & m1) << 4);
    A[1] = (a[1] & m2) | (((t >> 2) & m1) << 4);
    int8_t sc[16];
    memcpy(sc, A, 16);
    const uint8_t *q = b->qs;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < 2; n++, q += 32)
        for (int s = 0; s < 8; s += 2, m <<= 1)
            for (int half = 0; half < 2; half++) {
                float dl = d * (sc[is++] - 32);
                for (int l = 0; l < 16; l++) {
                    int k = l + 16 * half;
                    *y++ = dl * (((q[k] >> s) & 3) - ((b->hmask[k] & m) ? 0 : 4));
                }
            }
}
static void dq_q4_K(const block_q4_K *b, float *y) {
    float d = fp16_to_f32(b->d), dmin = fp16_to_f32(b->dmin);
    for (int c = 0; c < 4; c++) {
        uint8_t sc0, m0, sc1, m1;
        kq_scale_min(2 * c, b->scales, &sc0, &m0);
        kq_scale_min(2 * c + 1, b->scales, &sc1, &m1);
        float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
        const uint8_t *q = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) y[64 * c + l] = d0 * (q[l] & 0xF) - mm0;
        for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d1 * (q[l] >> 4) - mm1;
    }
}
static void dq_q5_K(const block_q5_K *b, float *y) {
    float d = fp16_to_f32(b->d), dmin = fp16_to_f32(b->dmin);
    for (int c = 0; c < 4; c++) {
        uint8_t sc0, m0, sc1, m1;
        kq_scale_min(2 * c, b->scales, &sc0, &m0);
        kq_scale_min(2 * c + 1, b->scales, &sc1, &m1);
        float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
        const uint8_t *q = b->qs + 32 * c;
        uint8_t u0 = 1 << (2 * c), u1 = 2 << (2 * c);
        for (int l = 0; l < 32; l++) y[64 * c + l] = d0 * ((q[l] & 0xF) + (b->qh[l] & u0 ? 16 : 0)) - mm0;
        for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d1 * ((q[l] >> 4) + (b->qh[l] & u1 ? 16 : 0)) - mm1;
    }
}
static void dq_q6_K(const block_q6_K *b, float *y) {
    float d = fp16_to_f32(b->d);
    for (int n = 0; n < 2; n++) {
        const uint8_t *ql = b->ql + 64 * n, *qh = b->qh + 32 * n;
        const int8_t *sc = b->scales + 8 * n;
        float *yy = y + 128 * n;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yy[l] = d * sc[is + 0] * q1;
            yy[l + 32] = d * sc[is + 2] * q2;
            yy[l + 64] = d * sc[is + 4] * q3;
            yy[l + 96] = d * sc[is + 6] * q4;
        }
    }
}
static void dq_iq4_nl(const block_iq4_nl *b, float *y) {
    float d = fp16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * IQ4NL_TABLE[b->qs[j] & 0xF];
        y[j + 16] = d * IQ4NL_TABLE[b->qs[j] >> 4];
    }
}
static void dq_iq4_xs(const block_iq4_xs *b, float *y) {
    float d = fp16_to_f32(b->d);
    for (int ib = 0; ib < 8; ib++) {
        int ls = ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((b->scales_h >> 2 * ib) & 3) << 4);
        float dl = d * (ls - 32);
        for (int j = 0; j < 16; j++) {
            y[32 * ib + j] = dl * IQ4NL_TABLE[b->qs[16 * ib + j] & 0xF];
            y[32 * ib + j + 16] = dl * IQ4NL_TABLE[b->qs[16 * ib + j] >> 4];
        }
    }
}
static void dq_mxfp4(const block_mxfp4 *b, float *y) {
    float d = ldexpf(1.0f, (int)b->e - 128);
    for (int j = 0; j < 16; j++) {
        y[j] = d * MXFP4_TABLE[b->qs[j] & 0xF];
        y[j + 16] = d * MXFP4_TABLE[b->qs[j] >> 4];
    }
}

/* ---- the importance-matrix types (IQ1_S .. IQ3_S): llama.cpp's dequantization, operation for
 * operation (the same float products in the same order, so the same bits); the grids and sign
 * table are iq_grids.h's, a grid entry's weights its bytes from the lowest ---------------------- */

static uint8_t grid_byte(uint64_t g, int j) { return (uint8_t)(g >> 8 * j); }
static float sign_of(uint8_t signs, int j) { return signs >> j & 1 ? -1.0f : 1.0f; }

static void dq_iq2_xxs(const block_iq2_xxs *b, float *y) {
    const float d = fp16_to_f32(b->d);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        uint32_t idx, sg;
        memcpy(&idx, b->qs + 4 * ib, 4);
        memcpy(&sg, b->qs + 4 * ib + 2, 4);
        const float db = d * (0.5f + (float)(sg >> 28)) * 0.25f;
        for (int l = 0; l < 4; l++) {
            const uint64_t g = iq2xxs_grid[idx >> 8 * l & 255];
            const uint8_t s = ksigns_iq2xs[sg >> 7 * l & 127];
            for (int j = 0; j < 8; j++) y[8 * l + j] = db * grid_byte(g, j) * sign_of(s, j);
        }
    }
}
static void dq_iq2_xs(const block_iq2_xs *b, float *y) {
    const float d = fp16_to_f32(b->d);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const float db[2] = {d * (0.5f + (float)(b->scales[ib] & 15)) * 0.25f,
                             d * (0.5f + (float)(b->scales[ib] >> 4)) * 0.25f};
        for (int l = 0; l < 4; l++) {
            const uint16_t q = b->qs[4 * ib + l];
            const uint64_t g = iq2xs_grid[q & 511];
            const uint8_t s = ksigns_iq2xs[q >> 9];
            for (int j = 0; j < 8; j++) y[8 * l + j] = db[l / 2] * grid_byte(g, j) * sign_of(s, j);
        }
    }
}
static void dq_iq2_s(const block_iq2_s *b, float *y) {
    const float d = fp16_to_f32(b->d);
    const uint8_t *qs = b->qs, *signs = b->qs + 32;
    for (int ib = 0; ib < 8; ib++, y += 32, qs += 4, signs += 4) {
        const float db[2] = {d * (0.5f + (float)(b->scales[ib] & 15)) * 0.25f,
                             d * (0.5f + (float)(b->scales[ib] >> 4)) * 0.25f};
        for (int l = 0; l < 4; l++) {
            const uint64_t g = iq2s_grid[qs[l] | (b->qh[ib] << (8 - 2 * l) & 0x300)];
            for (int j = 0; j < 8; j++) y[8 * l + j] = db[l / 2] * grid_byte(g, j) * sign_of(signs[l], j);
        }
    }
}
static void dq_iq3_xxs(const block_iq3_xxs *b, float *y) {
    const float d = fp16_to_f32(b->d);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const uint8_t *qs = b->qs + 8 * ib;
        uint32_t sg;
        memcpy(&sg, b->qs + 64 + 4 * ib, 4);
        const float db = d * (0.5f + (float)(sg >> 28)) * 0.5f;
        for (int l = 0; l < 4; l++) {
            const uint8_t s = ksigns_iq2xs[sg >> 7 * l & 127];
            const uint32_t g1 = iq3xxs_grid[qs[2 * l]], g2 = iq3xxs_grid[qs[2 * l + 1]];
            for (int j = 0; j < 4; j++) {
                y[8 * l + j] = db * grid_byte(g1, j) * sign_of(s, j);
                y[8 * l + j + 4] = db * grid_byte(g2, j) * sign_of(s, j + 4);
            }
        }
    }
}
static void dq_iq3_s(const block_iq3_s *b, float *y) {
    const float d = fp16_to_f32(b->d);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const uint8_t *qs = b->qs + 8 * ib, *signs = b->signs + 4 * ib, qh = b->qh[ib];
        const float db = d * (float)(1 + 2 * (b->scales[ib / 2] >> 4 * (ib % 2) & 15));
        for (int l = 0; l < 4; l++) {
            const uint32_t g1 = iq3s_grid[qs[2 * l] | (qh << (8 - 2 * l) & 256)];
            const uint32_t g2 = iq3s_grid[qs[2 * l + 1] | (qh << (7 - 2 * l) & 256)];
            for (int j = 0; j < 4; j++) {
                y[8 * l + j] = db * grid_byte(g1, j) * sign_of(signs[l], j);
                y[8 * l + j + 4] = db * grid_byte(g2, j) * sign_of(signs[l], j + 4);
            }
        }
    }
}
static void dq_iq1_s(const block_iq1_s *b, float *y) {
    const float d = fp16_to_f32(b->d);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const uint16_t qh = b->qh[ib];
        const float dl = d * (float)(2 * (qh >> 12 & 7) + 1), delta = qh & 0x8000 ? -0.125f : 0.125f;
        for (int l = 0; l < 4; l++) {
            const uint64_t g = iq1s_grid[b->qs[4 * ib + l] | (qh >> 3 * l & 7) << 8];
            for (int j = 0; j < 8; j++) y[8 * l + j] = dl * ((float)(int8_t)grid_byte(g, j) + delta);
        }
    }
}
static void dq_iq1_m(const block_iq1_m *b, float *y) {
    const float d = fp16_to_f32(iq1m_d(b->scales));
    uint16_t sc[4];
    memcpy(sc, b->scales, 8);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const float dl[2] = {d * (float)(2 * (sc[ib / 2] >> (6 * (ib % 2)) & 7) + 1),
                             d * (float)(2 * (sc[ib / 2] >> (6 * (ib % 2) + 3) & 7) + 1)};
        for (int l = 0; l < 4; l++) {
            const uint8_t h = b->qh[2 * ib + l / 2] >> 4 * (l % 2);
            const uint64_t g = iq1s_grid[b->qs[4 * ib + l] | (h & 7) << 8];
            const float delta = h & 8 ? -0.125f : 0.125f;
            for (int j = 0; j < 8; j++) y[8 * l + j] = dl[l / 2] * ((float)(int8_t)grid_byte(g, j) + delta);
        }
    }
}

static void to_float_F32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void to_float_F16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        ggml_half h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = fp16_to_f32(h);
    }
}
static void to_float_BF16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
    }
}
/* to_float_N: a row of blocks through the block's dequantizer dq_lower (QK weights a block) */
#define DQ_ROW(N, lower, QK) \
    static void to_float_##N(const void *src, float *dst, int64_t n) { \
        const block_##lower *b = src; \
        for (int64_t i = 0; i < n / (QK); i++) dq_##lower(b + i, dst + i * (QK)); \
    }
DQ_ROW(Q4_0, q4_0, 32)
DQ_ROW(Q4_1, q4_1, 32)
DQ_ROW(Q5_0, q5_0, 32)
DQ_ROW(Q5_1, q5_1, 32)
DQ_ROW(Q8_0, q8_0, 32)
DQ_ROW(Q2_K, q2_K, QK_K)
DQ_ROW(Q3_K, q3_K, QK_K)
DQ_ROW(Q4_K, q4_K, QK_K)
DQ_ROW(Q5_K, q5_K, QK_K)
DQ_ROW(Q6_K, q6_K, QK_K)
DQ_ROW(IQ4_NL, iq4_nl, 32)
DQ_ROW(IQ4_XS, iq4_xs, QK_K)
DQ_ROW(MXFP4, mxfp4, 32)
DQ_ROW(IQ2_XXS, iq2_xxs, QK_K)
DQ_ROW(IQ2_XS, iq2_xs, QK_K)
DQ_ROW(IQ2_S, iq2_s, QK_K)
DQ_ROW(IQ3_XXS, iq3_xxs, QK_K)
DQ_ROW(IQ3_S, iq3_s, QK_K)
DQ_ROW(IQ1_S, iq1_s, QK_K)
DQ_ROW(IQ1_M, iq1_m, QK_K)
#undef DQ_ROW

void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const ggml_type_info *t = ggml_type_get(type);
    if (t && t->to_float) t->to_float(src, dst, n);
    else memset(dst, 0, (size_t)n * sizeof *dst);
}

/* ---- activation quantization -------------------------------------------------------------- */

void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Scale chosen so the largest-magnitude value maps to -127 exactly (sign kept), rounding
 * half to even: the integer grid then covers [-127, 127] with the extreme value exact. */
void quantize_row_q8_K(const float *x, block_q8_K *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        if (amax == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = (int)nearbyintf(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int s = 0;
            for (int k = 0; k < 16; k++) s += y[i].qs[16 * j + k];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1.0f / iscale;
    }
}

uint32_t vec_dot_type(uint32_t t) {
    const ggml_type_info *ti = ggml_type_get(t);
    return ti ? ti->vec_dot_type : GGML_F32;
}

/* ---- the X16 layouts (ggml_types.h): one block of 16 rows at a time ------------------------ */

static void x16_pack_q4_K(const block_q4_K *const *b, uint8_t *o) {
    for (int r = 0; r < X16_ROWS; r++) {
        memcpy(o + 2 * r, &b[r]->d, 2);
        memcpy(o + 32 + 2 * r, &b[r]->dmin, 2);
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) kq_scale_min(j, b[r]->scales, &sc[j], &mn[j]);
        for (int j = 0; j < 8; j++) o[64 + 16 * j + r] = (uint8_t)((sc[j] & 15) | (mn[j] & 15) << 4);
        for (int jj = 0; jj < 4; jj++)
            o[192 + 16 * jj + r] = (uint8_t)(sc[2 * jj] >> 4 | (sc[2 * jj + 1] >> 4) << 2 | (mn[2 * jj] >> 4) << 4 |
                                             (mn[2 * jj + 1] >> 4) << 6);
        for (int jj = 0; jj < 4; jj++)
            for (int g = 0; g < 8; g++) memcpy(o + 256 + 64 * (8 * jj + g) + 4 * r, b[r]->qs + 32 * jj + 4 * g, 4);
    }
}

/* The 12 packed scale bytes of Q4_K from 8 six-bit scales and mins (kq_scale_min's inverse). */
static void kq_pack_scales(const uint8_t *sc, const uint8_t *mn, uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)((mn[j] & 63) | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

/* row r's block out of a group's block o */
static void x16_unpack_q4_K(const uint8_t *o, int r, block_q4_K *b) {
    memcpy(&b->d, o + 2 * r, 2);
    memcpy(&b->dmin, o + 32 + 2 * r, 2);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        const uint8_t lo = o[64 + 16 * j + r], hi = o[192 + 16 * (j / 2) + r];
        sc[j] = (uint8_t)((lo & 15) | ((hi >> (2 * (j & 1))) & 3) << 4);
        mn[j] = (uint8_t)((lo >> 4) | ((hi >> (4 + 2 * (j & 1))) & 3) << 4);
    }
    kq_pack_scales(sc, mn, b->scales);
    for (int jj = 0; jj < 4; jj++)
        for (int g = 0; g < 8; g++) memcpy(b->qs + 32 * jj + 4 * g, o + 256 + 64 * (8 * jj + g) + 4 * r, 4);
}

/* The unsigned 6-bit values of a Q6_K block in weight order, and back (spec: Q6_K layout). */
static void q6_values(const block_q6_K *b, uint8_t *q) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *ql = b->ql + 64 * h, hb = b->qh[32 * h + l];
            q[128 * h + l] = (uint8_t)((ql[l] & 15) | (hb & 3) << 4);
            q[128 * h + l + 32] = (uint8_t)((ql[l + 32] & 15) | ((hb >> 2) & 3) << 4);
            q[128 * h + l + 64] = (uint8_t)((ql[l] >> 4) | ((hb >> 4) & 3) << 4);
            q[128 * h + l + 96] = (uint8_t)((ql[l + 32] >> 4) | ((hb >> 6) & 3) << 4);
        }
}
static void q6_store(const uint8_t *q, block_q6_K *b) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *qq = q + 128 * h;
            b->ql[64 * h + l] = (uint8_t)((qq[l] & 15) | (qq[l + 64] & 15) << 4);
            b->ql[64 * h + l + 32] = (uint8_t)((qq[l + 32] & 15) | (qq[l + 96] & 15) << 4);
            b->qh[32 * h + l] =
                (uint8_t)(qq[l] >> 4 | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 | (qq[l + 96] >> 4) << 6);
        }
}

static void x16_pack_q6_K(const block_q6_K *const *b, uint8_t *o) {
    for (int r = 0; r < X16_ROWS; r++) {
        uint8_t q[QK_K];
        q6_values(b[r], q);
        memcpy(o + 2 * r, &b[r]->d, 2);
        for (int j = 0; j < 16; j++) o[x16q6_sc(j) + r] = (uint8_t)b[r]->scales[j];
        for (int v = 0; v < 32; v++)
            for (int i = 0; i < 4; i++)
                o[x16q6_nib(v) + 4 * r + i] = (uint8_t)((q[4 * v + i] & 15) | (q[4 * (v + 32) + i] & 15) << 4);
        for (int u = 0; u < 16; u++)
            for (int i = 0; i < 4; i++)
                o[x16q6_hi(u) + 4 * r + i] =
                    (uint8_t)(q[4 * u + i] >> 4 | (q[4 * (u + 16) + i] >> 4) << 2 | (q[4 * (u + 32) + i] >> 4) << 4 |
                              (q[4 * (u + 48) + i] >> 4) << 6);
    }
}

/* row r's block out of a group's block o */
static void x16_unpack_q6_K(const uint8_t *o, int r, block_q6_K *b) {
    uint8_t q[QK_K];
    for (int k = 0; k < 64; k++)
        for (int i = 0; i < 4; i++) {
            const uint8_t lo = o[x16q6_nib(k % 32) + 4 * r + i], hi = o[x16q6_hi(k % 16) + 4 * r + i];
            q[4 * k + i] = (uint8_t)((k < 32 ? lo & 15 : lo >> 4) | ((hi >> (2 * (k / 16))) & 3) << 4);
        }
    q6_store(q, b);
    memcpy(&b->d, o + 2 * r, 2);
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)o[x16q6_sc(j) + r];
}

/* Byte i of crumb vector u (ggml_types.h) from a Q2_K / Q3_K block's qs, and back. Quad u + 16 f
 * is sub-block k = u / 4 + 4 f: its weight 4 u + 64 f + i lies in qs[32 (k / 8) + 16 (k % 2) + l],
 * l = 4 (u % 4) + i, at bits 2 ((k / 2) % 4) = 2 (u / 8) (f even) or 4 + 2 (u / 8) (f odd), and
 * Q3_K's h bit in hmask[16 (k % 2) + l] at bit 2 f + u / 8 (spec: K-quant layouts). */
static int crumb_at(int u, int i) { return 16 * ((u / 4) % 2) + 4 * (u % 4) + i; }
static void crumb_unbyte(uint8_t v, int u, int i, uint8_t *qs) { /* qs zeroed first */
    const int at = crumb_at(u, i), sh = 2 * (u / 8);
    qs[at] |= (uint8_t)((v & 3) << sh | (v >> 2 & 3) << (sh + 4));
    qs[32 + at] |= (uint8_t)((v >> 4 & 3) << sh | (v >> 6 & 3) << (sh + 4));
}
/* Row r's h vectors (t of quarter j) from a Q3_K block's hmask, and back: quads u0 + 16 f and
 * u1 + 16 f (u0 = 4 j + 2 t, u1 = u0 + 1) have their h bits in hmask bytes at0 and at0 + 4
 * (at0 = crumb_at(u0, i)), at bit 2 f + j / 2. */
static void hbits_pack(const uint8_t *hm, int r, uint8_t *o) { /* 4 bytes at a time, as crumbs_pack */
    const uint32_t m = 0x01010101u;
    for (int j = 0; j < 4; j++)
        for (int t = 0; t < 2; t++) {
            uint32_t h0, h1;
            memcpy(&h0, hm + crumb_at(4 * j + 2 * t, 0), 4);
            memcpy(&h1, hm + crumb_at(4 * j + 2 * t, 0) + 4, 4);
            h0 >>= j / 2, h1 >>= j / 2; /* the bits of f at 2 f of each byte */
            uint32_t v = (h0 >> 6 & m) | (h1 >> 6 & m) << 1;
            for (int f = 0; f < 3; f++) v |= (h0 >> 2 * f & m) << (2 + 2 * f) | (h1 >> 2 * f & m) << (3 + 2 * f);
            memcpy(o + x16q3_hi(j, t) + 4 * r, &v, 4);
        }
}
static void hbits_unbyte(uint8_t v, int j, int t, int i, uint8_t *hm) { /* hm zeroed first */
    const int at0 = crumb_at(4 * j + 2 * t, i), sh = j / 2;
    unsigned h0 = (v & 1u) << 6, h1 = (v >> 1 & 1u) << 6;
    for (int f = 0; f < 3; f++) h0 |= (v >> (2 + 2 * f) & 1u) << 2 * f, h1 |= (v >> (3 + 2 * f) & 1u) << 2 * f;
    hm[at0] |= (uint8_t)(h0 << sh);
    hm[at0 + 4] |= (uint8_t)(h1 << sh);
}

/* Row r's crumb vectors of a group block o (at vec(u) + 4 r, vec: x16q2_vec or x16q3_lo) from
 * its qs, 8 bytes at a time: byte i of vector u = the 2-bit fields at 2 (u / 8) and 4 + 2 (u / 8) of
 * qs[at] and of qs[32 + at], at = crumb_at(u, i) (above); a word of qs holds the bytes of quads
 * 4g + 2h, 4g + 2h + 1 (l = 8h .. 8h + 7). Little-endian, as GGUF. */
static void crumbs_pack(const uint8_t *qs, int q3, int r, uint8_t *o) {
    const uint64_t m = 0x0303030303030303ull;
    for (int g = 0; g < 4; g++)
        for (int h = 0; h < 2; h++) {
            uint64_t b0, b1;
            memcpy(&b0, qs + 16 * (g % 2) + 8 * h, 8);
            memcpy(&b1, qs + 32 + 16 * (g % 2) + 8 * h, 8);
            const int sh = 2 * (g / 2);
            const uint64_t v =
                (b0 >> sh & m) | (b0 >> (sh + 4) & m) << 2 | (b1 >> sh & m) << 4 | (b1 >> (sh + 4) & m) << 6;
            for (int k = 0; k < 2; k++) {
                const int u = 4 * g + 2 * h + k;
                const uint32_t w = (uint32_t)(v >> 32 * k);
                memcpy(o + (q3 ? x16q3_lo(u) : x16q2_vec(u)) + 4 * r, &w, 4);
            }
        }
}

static void x16_pack_q2_K(const block_q2_K *const *b, uint8_t *o) {
    for (int r = 0; r < X16_ROWS; r++) {
        for (int j = 0; j < 4; j++)
            for (int p = 0; p < 2; p++)
                for (int e = 0; e < 2; e++) o[x16q2_sc(j, p) + 2 * r + e] = b[r]->scales[j + 8 * p + 4 * e];
        crumbs_pack(b[r]->qs, 0, r, o);
        memcpy(o + X16Q2_D + 2 * r, &b[r]->d, 2);
        memcpy(o + X16Q2_DMIN + 2 * r, &b[r]->dmin, 2);
    }
}
static void x16_unpack_q2_K(const uint8_t *o, int r, block_q2_K *b) {
    for (int j = 0; j < 4; j++)
        for (int p = 0; p < 2; p++)
            for (int e = 0; e < 2; e++) b->scales[j + 8 * p + 4 * e] = o[x16q2_sc(j, p) + 2 * r + e];
    memset(b->qs, 0, sizeof b->qs);
    for (int u = 0; u < 16; u++)
        for (int i = 0; i < 4; i++) crumb_unbyte(o[x16q2_vec(u) + 4 * r + i], u, i, b->qs);
    memcpy(&b->d, o + X16Q2_D + 2 * r, 2);
    memcpy(&b->dmin, o + X16Q2_DMIN + 2 * r, 2);
}

/* Q3_K's 16 six-bit scales (before the -32) from its 12 bytes, and back */
static void q3_scales(const uint8_t *b, uint8_t *s) {
    for (int k = 0; k < 16; k++)
        s[k] = (uint8_t)((k < 8 ? b[k] & 15 : b[k - 8] >> 4) | (b[8 + k % 4] >> 2 * (k / 4) & 3) << 4);
}
static void q3_scales_store(const uint8_t *s, uint8_t *b) {
    memset(b, 0, 12);
    for (int k = 0; k < 16; k++) {
        b[k % 8] |= (uint8_t)((s[k] & 15) << 4 * (k / 8));
        b[8 + k % 4] |= (uint8_t)((s[k] >> 4) << 2 * (k / 4));
    }
}
static void x16_pack_q3_K(const block_q3_K *const *b, uint8_t *o) {
    for (int r = 0; r < X16_ROWS; r++) {
        uint8_t s[16];
        q3_scales(b[r]->scales, s);
        for (int j = 0; j < 4; j++) {
            uint8_t *sc = o + x16q3_sc(j);
            sc[r] = (uint8_t)((s[j] & 15) | (s[j + 4] & 15) << 4);
            sc[16 + r] = (uint8_t)((s[j + 8] & 15) | (s[j + 12] & 15) << 4);
            sc[32 + r] = (uint8_t)(s[j] >> 4 | (s[j + 4] >> 4) << 2 | (s[j + 8] >> 4) << 4 | (s[j + 12] >> 4) << 6);
        }
        crumbs_pack(b[r]->qs, 1, r, o);
        hbits_pack(b[r]->hmask, r, o);
        memcpy(o + X16Q3_D + 2 * r, &b[r]->d, 2);
    }
}
static void x16_unpack_q3_K(const uint8_t *o, int r, block_q3_K *b) {
    uint8_t s[16];
    for (int j = 0; j < 4; j++) {
        const uint8_t *sc = o + x16q3_sc(j);
        s[j] = (uint8_t)((sc[r] & 15) | (sc[32 + r] & 3) << 4);
        s[j + 4] = (uint8_t)((sc[r] >> 4) | (sc[32 + r] >> 2 & 3) << 4);
        s[j + 8] = (uint8_t)((sc[16 + r] & 15) | (sc[32 + r] >> 4 & 3) << 4);
        s[j + 12] = (uint8_t)((sc[16 + r] >> 4) | (sc[32 + r] >> 6) << 4);
    }
    q3_scales_store(s, b->scales);
    memset(b->qs, 0, sizeof b->qs);
    memset(b->hmask, 0, sizeof b->hmask);
    for (int u = 0; u < 16; u++)
        for (int i = 0; i < 4; i++) crumb_unbyte(o[x16q3_lo(u) + 4 * r + i], u, i, b->qs);
    for (int j = 0; j < 4; j++)
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < 4; i++) hbits_unbyte(o[x16q3_hi(j, t) + 4 * r + i], j, t, i, b->hmask);
    memcpy(&b->d, o + X16Q3_D + 2 * r, 2);
}

uint32_t x16_type(uint32_t type) {
    const ggml_type_info *t = ggml_type_get(type);
    return t ? t->x16 : 0;
}

uint32_t x16_base(uint32_t type) {
    const ggml_type_info *t = ggml_type_get(type);
    return t ? t->base : 0;
}

/* the blocks i of rows g0 .. g0 + 15, and the group's block i */
static void x16_blocks(const uint8_t *rows, size_t row_bytes, size_t bs, int64_t g0, int64_t i, const uint8_t **b) {
    for (int r = 0; r < X16_ROWS; r++) b[r] = rows + (size_t)(g0 + r) * row_bytes + (size_t)i * bs;
}

void x16_pack(uint32_t type, const uint8_t *rows, size_t row_bytes, int64_t n_rows, uint8_t *dst) {
    const size_t bs = ggml_type_get(type)->type_size;
    const int64_t nb = (int64_t)(row_bytes / bs);
    for (int64_t g0 = 0; g0 + X16_ROWS <= n_rows; g0 += X16_ROWS)
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *b[X16_ROWS];
            x16_blocks(rows, row_bytes, bs, g0, i, b);
            uint8_t *o = dst + (size_t)g0 * row_bytes + (size_t)i * X16_ROWS * bs;
            switch (type) {
            case GGML_Q4_K: x16_pack_q4_K((const block_q4_K *const *)b, o); break;
            case GGML_Q2_K: x16_pack_q2_K((const block_q2_K *const *)b, o); break;
            case GGML_Q3_K: x16_pack_q3_K((const block_q3_K *const *)b, o); break;
            default: x16_pack_q6_K((const block_q6_K *const *)b, o); break;
            }
        }
}

void x16_unpack_row(uint32_t type, const uint8_t *group, size_t row_bytes, int r, uint8_t *row) {
    const size_t bs = ggml_type_get(type)->type_size;
    for (size_t i = 0; i < row_bytes / bs; i++) {
        const uint8_t *o = group + i * X16_ROWS * bs;
        void *blk = row + i * bs;
        switch (type) {
        case GGML_Q4_K: x16_unpack_q4_K(o, r, blk); break;
        case GGML_Q2_K: x16_unpack_q2_K(o, r, blk); break;
        case GGML_Q3_K: x16_unpack_q3_K(o, r, blk); break;
        default: x16_unpack_q6_K(o, r, blk); break;
        }
    }
}

void x16_unpack(uint32_t type, const uint8_t *src, size_t row_bytes, int64_t n_rows, uint8_t *rows) {
    for (int64_t g0 = 0; g0 + X16_ROWS <= n_rows; g0 += X16_ROWS)
        for (int r = 0; r < X16_ROWS; r++)
            x16_unpack_row(type, src + (size_t)g0 * row_bytes, row_bytes, r, rows + (size_t)(g0 + r) * row_bytes);
}
