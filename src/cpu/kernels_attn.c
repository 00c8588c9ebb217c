/* kernels_attn.c — the scalar truth of the attention
 * contract: one query against keys 0..n-1, blocked over 16 keys with an online softmax; and of
 * the SwiGLU contract, which shares its exp. The SIMD versions (kernels_attn_x86.c,
 * kernels_attn_neon.c) compute the same operations in the same order, so
 * they are tested bitwise against this file. Built with -ffp-contract=off: every fused
 * multiply-add here is an explicit fmaf, and no other product may be fused. */
#include "cpu/kernels.h"
#include "formats/ggml_types.h"

#include <math.h>
#include <string.h>

int attn_pf_loc = ATTN_PF_NTA;
const char *const ATTN_PF_NAMES[ATTN_PF_NLOC] = {"nta", "t1"};

void f16_row_scalar(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = f32_to_fp16(x[i]);
}

void kv_store_k(int type, int hd, int n_head_kv, int n_write, uint8_t *k, int pos, const float *x, f16_row_fn to_f16) {
    const size_t hb = kv_k_head_block_bytes(type, hd);
    uint8_t *blk = k + (size_t)(pos / KV_KB) * n_head_kv * hb;
    const int j = pos % KV_KB;
    for (int h = 0; h < n_write; h++) {
        uint8_t *b = blk + h * hb;
        const float *xh = x + (size_t)h * hd;
        if (type == KV_F32) {
            for (int i = 0; i < hd; i++) memcpy(b + ((size_t)i * KV_KB + j) * 4, &xh[i], 4);
        } else if (type == KV_F16) {
            uint16_t v[256]; /* a head at a time: the cache's position j of each of its hd rows */
            for (int i0 = 0; i0 < hd; i0 += 256) {
                const int m = hd - i0 < 256 ? hd - i0 : 256;
                to_f16(xh + i0, v, m);
                for (int i = 0; i < m; i++) memcpy(b + ((size_t)(i0 + i) * KV_KB + j) * 2, &v[i], 2);
            }
        } else {
            uint8_t *sc = b + (size_t)hd * KV_KB;
            for (int g = 0; g < hd / 32; g++) {
                block_q8_0 q;
                quantize_row_q8_0(xh + g * 32, &q, 32);
                for (int i = 0; i < 32; i++) b[(size_t)(g * 32 + i) * KV_KB + j] = (uint8_t)q.qs[i];
                memcpy(sc + ((size_t)g * KV_KB + j) * 2, &q.d, 2);
            }
        }
    }
}

void kv_store_v(int type, int kv_dim, uint8_t *v, size_t v_row, int pos, const float *x, f16_row_fn to_f16) {
    uint8_t *row = v + (size_t)pos * v_row;
    if (type == KV_F32) {
        memcpy(row, x, sizeof(float) * (size_t)kv_dim);
    } else if (type == KV_F16) {
        to_f16(x, (uint16_t *)(void *)row, kv_dim); /* rows are 2-byte aligned */
    } else {
        quantize_row_q8_0(x, (block_q8_0 *)row, kv_dim);
    }
}

/* exp(x) for x <= 0: x = n ln2 + r (n rounded to nearest by the 1.5 * 2^23 trick, ln2 in two
 * parts), exp(r) by a degree-6 Taylor polynomial in Horner form, times 2^n built in the
 * exponent bits. About 2 ulp; its value is part of the contract, not libm's. */
float kv_exp(float x) {
    if (!(x > -87.3f)) return 0.0f; /* also -inf and NaN */
    float t = x * 1.44269504f;
    float fn = (t + 12582912.0f) - 12582912.0f;
    float r = fmaf(fn, -0.693145751953125f, x);
    r = fmaf(fn, -1.428606765330187e-06f, r);
    float p = 1.3888889e-3f;
    p = fmaf(p, r, 8.3333333e-3f);
    p = fmaf(p, r, 4.1666667e-2f);
    p = fmaf(p, r, 1.6666667e-1f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t e = ((int32_t)fn + 127) << 23;
    float s;
    memcpy(&s, &e, 4);
    return p * s;
}

void swiglu_scalar(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i], e = kv_exp(-fabsf(x));
        g[i] = (x >= 0.0f ? x / (1.0f + e) : (x * e) / (1.0f + e)) * u[i];
    }
}

static float k_value(int type, const uint8_t *b, int i, int j) {
    if (type == KV_F32) {
        float f;
        memcpy(&f, b + ((size_t)i * KV_KB + j) * 4, 4);
        return f;
    }
    ggml_half h;
    memcpy(&h, b + ((size_t)i * KV_KB + j) * 2, 2);
    return fp16_to_f32(h);
}

/* score of key j of block b (this head's part) against q */
static float score(const attn_call *c, const uint8_t *b, const float *q, int j) {
    float acc = 0;
    if (c->type_k != KV_Q8_0) {
        for (int i = 0; i < c->hd; i++) acc = fmaf(q[i], k_value(c->type_k, b, i, j), acc);
        return acc;
    }
    const uint8_t *sc = b + (size_t)c->hd * KV_KB;
    for (int g = 0; g < c->hd / 32; g++) {
        float part = 0;
        for (int i = g * 32; i < g * 32 + 32; i++) part = fmaf(q[i], (float)(int8_t)b[(size_t)i * KV_KB + j], part);
        ggml_half d;
        memcpy(&d, sc + ((size_t)g * KV_KB + j) * 2, 2);
        acc = fmaf(fp16_to_f32(d), part, acc);
    }
    return acc;
}

/* O += w * v(pos) for this head */
static void add_v(const attn_call *c, int pos, float w, float *O) {
    const uint8_t *row = c->v + (size_t)pos * c->v_row;
    const int hd = c->hd, off = c->kv_head * hd;
    if (c->type_v == KV_F32) {
        for (int i = 0; i < hd; i++) {
            float f;
            memcpy(&f, row + 4 * (size_t)(off + i), 4);
            O[i] = fmaf(w, f, O[i]);
        }
    } else if (c->type_v == KV_F16) {
        for (int i = 0; i < hd; i++) {
            ggml_half h;
            memcpy(&h, row + 2 * (size_t)(off + i), 2);
            O[i] = fmaf(w, fp16_to_f32(h), O[i]);
        }
    } else {
        const block_q8_0 *blk = (const block_q8_0 *)row + off / 32;
        for (int g = 0; g < hd / 32; g++) {
            float wd = w * fp16_to_f32(blk[g].d);
            for (int i = 0; i < 32; i++) O[g * 32 + i] = fmaf(wd, (float)blk[g].qs[i], O[g * 32 + i]);
        }
    }
}

static void attention_one(const attn_call *c, const float *q, int n, float *out) {
    const int hd = c->hd;
    const size_t hb = kv_k_head_block_bytes(c->type_k, hd);
    float O[1024], L[KV_KB] = {0}, M = -INFINITY;
    for (int i = 0; i < hd; i++) O[i] = 0;
    for (int b0 = 0; b0 < n; b0 += KV_KB) {
        const uint8_t *b = c->k + ((size_t)(b0 / KV_KB) * c->n_head_kv + c->kv_head) * hb;
        const int nb = n - b0 < KV_KB ? n - b0 : KV_KB;
        float s[KV_KB], w[KV_KB], bm = -INFINITY;
        for (int j = 0; j < KV_KB; j++) {
            s[j] = j < nb ? score(c, b, q, j) : -INFINITY;
            bm = s[j] > bm ? s[j] : bm;
        }
        const float Mn = bm > M ? bm : M;
        const float alpha = kv_exp(M - Mn);
        for (int j = 0; j < KV_KB; j++) {
            w[j] = kv_exp(s[j] - Mn);
            L[j] = fmaf(L[j], alpha, w[j]);
        }
        if (alpha != 1.0f)
            for (int i = 0; i < hd; i++) O[i] = O[i] * alpha;
        for (int j = 0; j < nb; j++) add_v(c, b0 + j, w[j], O);
        M = Mn;
    }
    float r[8];
    for (int j = 0; j < 8; j++) r[j] = L[j] + L[j + 8];
    for (int j = 0; j < 4; j++) r[j] = r[j] + r[j + 4];
    for (int j = 0; j < 2; j++) r[j] = r[j] + r[j + 2];
    const float l = r[0] + r[1];
    for (int i = 0; i < hd; i++) out[i] = O[i] / l;
}

void attention_scalar(const attn_call *c) {
    for (int qi = 0; qi < c->nq; qi++) attention_one(c, c->q[qi], c->n[qi], c->out[qi]);
}
