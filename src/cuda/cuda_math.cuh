/* cuda_math.cuh — the per-element math of the CUDA kernels, as __host__ __device__ inline
 * functions: dequantization of 8 consecutive weights of every block type, RMSNorm scale,
 * NEOX rotation, SiLU, the sigmoid top-k router, the 3-tap conv step, the online-softmax
 * update and the expert tile plan. The kernels call these on the GPU; tests/cuda/
 * test_cuda_math.cu calls the very same functions on the host and compares them with the CPU
 * reference (formats/ggml_types.c, forward.c semantics), so the math is tested where no GPU is
 * present. Type ids, block layouts and block sizes are those of formats/ggml_types.h (plain C,
 * shared with the CPU): sizes are sizeof the block structs, field positions their offsetof. */
#ifndef LFM2C_CUDA_MATH_CUH
#define LFM2C_CUDA_MATH_CUH

#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include "formats/ggml_types.h"
#ifdef __CUDACC__
#include <cuda_fp16.h>
#define HD __host__ __device__ __forceinline__
#else
#define HD static inline
#endif

/* byte offset of field f in block struct B (ggml_types.h) */
#define CM_AT(B, f) ((int)offsetof(B, f))

/* ---- scalars ------------------------------------------------------------------------------ */

HD uint32_t cm_u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
HD uint32_t cm_u32(const uint8_t *p) { return cm_u16(p) | cm_u16(p + 2) << 16; }

HD float cm_bits_f32(uint32_t b) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(b);
#else
    union { uint32_t u; float f; } v;
    v.u = b;
    return v.f;
#endif
}

/* IEEE half → float, exact (subnormals included). */
HD float cm_half(uint32_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half((unsigned short)h));
#else
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    return cm_bits_f32(bits);
#endif
}

HD float cm_half_at(const uint8_t *p) { return cm_half(cm_u16(p)); }

HD uint32_t cm_f32_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    union { float f; uint32_t u; } v;
    v.f = f;
    return v.u;
#endif
}

/* float → IEEE half bits, rounded to nearest even: the CPU's f32_to_fp16 bit for bit (the KV
 * cache in F16 holds what the CPU's holds). */
HD uint32_t cm_f2h(float f) {
    uint32_t x = cm_f32_bits(f), sign = (x >> 16) & 0x8000u, absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return sign | 0x7e00u;   /* NaN */
    if (absx >= 0x477ff000u) return sign | 0x7c00u;  /* overflow → inf */
    if (absx < 0x38800000u) {                        /* subnormal or zero */
        if (absx < 0x33000000u) return sign;         /* under half the smallest */
        uint32_t e = absx >> 23, man = (absx & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)e;
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | q;
    }
    uint32_t q = (absx >> 13) - (112u << 10), rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1))) q++;
    return sign | q;
}
HD float cm_bf16(uint32_t b) { return cm_bits_f32(b << 16); }
/* float to BF16 bits, rounded to nearest even; a NaN stays a quiet NaN (formats' f32_to_bf16) */
HD uint32_t cm_f32_bf16(float f) {
    const uint32_t x = cm_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (x >> 16) | 64u;
    return (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
}

/* 16-entry int8 tables packed in two 64-bit words (no memory table: works in registers) */
HD int cm_iq4nl(int i) {
    uint64_t w = i < 8 ? 0xf6eaddcfbfad9881ull : 0x7159453526190d01ull;
    return (int8_t)(uint8_t)(w >> (8 * (i & 7)));
}
HD int cm_mxfp4(int i) {
    uint64_t w = i < 8 ? 0x0c08060403020100ull : 0xf4f8fafcfdfeff00ull;
    return (int8_t)(uint8_t)(w >> (8 * (i & 7)));
}

/* 6-bit scale / min of sub-block j of the 12 packed bytes of Q4_K / Q5_K */
HD void cm_kq_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* 6-bit scale i (0..15, before the -32) of the 12 packed bytes of Q3_K */
HD int cm_q3k_scale(int i, const uint8_t *s) {
    int lo = i < 8 ? s[i] & 0xF : s[i - 8] >> 4;
    int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    return lo | hi << 4;
}

/* Bytes per block and weights per block (0 bytes: a type the CUDA kernels do not take), from the
 * rows of the type table (formats/ggml_types.h's GGML_TYPE_TABLE) that have the CUDA bit: the
 * device cannot read ggml_type_get()'s table (host memory), so the rows are expanded here. */
HD int cm_block_bytes(uint32_t t) {
    switch (t) {
#define CM_ROW(N, id, bs, sz, vd, runs, fl, fb) case id: return ((runs) & GGML_RUN_CUDA) ? (int)(sz) : 0;
    GGML_TYPE_TABLE(CM_ROW)
#undef CM_ROW
    default: return 0;
    }
}
HD int cm_block_len(uint32_t t) {
    switch (t) {
#define CM_ROW(N, id, bs, sz, vd, runs, fl, fb) case id: return (bs);
    GGML_TYPE_TABLE(CM_ROW)
#undef CM_ROW
    default: return 1;
    }
}

/* ---- dequantization: weights k0..k0+7 of a row (k0 a multiple of 8) ------------------------ */

HD void cm_dequant8(uint32_t t, const uint8_t *row, int k0, float *y) {
    switch (t) {
    case GGML_F32: {
        const float *p = (const float *)(const void *)row + k0;
        for (int i = 0; i < 8; i++) y[i] = p[i];
        return;
    }
    case GGML_F16: {
        const uint8_t *p = row + sizeof(ggml_half) * k0;
        for (int i = 0; i < 8; i++) y[i] = cm_half_at(p + sizeof(ggml_half) * i);
        return;
    }
    case GGML_BF16: {
        const uint8_t *p = row + 2 * k0;
        for (int i = 0; i < 8; i++) y[i] = cm_bf16(cm_u16(p + 2 * i));
        return;
    }
    case GGML_Q4_0: case GGML_IQ4_NL: {
        const uint8_t *b = row + (k0 / QK4_0) * sizeof(block_q4_0);   /* block_iq4_nl: the same layout */
        int j = k0 % QK4_0;
        float d = cm_half_at(b + CM_AT(block_q4_0, d));
        const uint8_t *q = b + CM_AT(block_q4_0, qs) + (j & 15);
        for (int i = 0; i < 8; i++) {
            int v = j < 16 ? q[i] & 0xF : q[i] >> 4;
            y[i] = t == GGML_Q4_0 ? d * (float)(v - 8) : d * (float)cm_iq4nl(v);
        }
        return;
    }
    case GGML_Q4_1: {
        const uint8_t *b = row + (k0 / QK4_0) * sizeof(block_q4_1);
        int j = k0 % QK4_0;
        float d = cm_half_at(b + CM_AT(block_q4_1, d)), m = cm_half_at(b + CM_AT(block_q4_1, m));
        const uint8_t *q = b + CM_AT(block_q4_1, qs) + (j & 15);
        for (int i = 0; i < 8; i++) y[i] = d * (float)(j < 16 ? q[i] & 0xF : q[i] >> 4) + m;
        return;
    }
    case GGML_Q5_0: case GGML_Q5_1: {
        const bool q50 = t == GGML_Q5_0;
        const uint8_t *b = row + (k0 / QK4_0) * (q50 ? sizeof(block_q5_0) : sizeof(block_q5_1));
        int j = k0 % QK4_0;
        float d = cm_half_at(b), m = q50 ? 0.0f : cm_half_at(b + CM_AT(block_q5_1, m));   /* d first in both */
        uint32_t h = cm_u32(b + (q50 ? CM_AT(block_q5_0, qh) : CM_AT(block_q5_1, qh)));
        const uint8_t *q = b + (q50 ? CM_AT(block_q5_0, qs) : CM_AT(block_q5_1, qs)) + (j & 15);
        for (int i = 0; i < 8; i++) {
            int v = (j < 16 ? q[i] & 0xF : q[i] >> 4) | (int)((h >> (j + i)) & 1) << 4;
            y[i] = t == GGML_Q5_0 ? d * (float)(v - 16) : d * (float)v + m;
        }
        return;
    }
    case GGML_Q8_0: {
        const uint8_t *b = row + (k0 / QK8_0) * sizeof(block_q8_0);
        float d = cm_half_at(b + CM_AT(block_q8_0, d));
        const int8_t *q = (const int8_t *)(b + CM_AT(block_q8_0, qs)) + k0 % QK8_0;
        for (int i = 0; i < 8; i++) y[i] = d * (float)q[i];
        return;
    }
    case GGML_MXFP4: {
        const uint8_t *b = row + (k0 / QK4_0) * sizeof(block_mxfp4);
        int j = k0 % QK4_0;
        float d = ldexpf(1.0f, (int)b[CM_AT(block_mxfp4, e)] - 128);
        const uint8_t *q = b + CM_AT(block_mxfp4, qs) + (j & 15);
        for (int i = 0; i < 8; i++) y[i] = d * (float)cm_mxfp4(j < 16 ? q[i] & 0xF : q[i] >> 4);
        return;
    }
    case GGML_Q2_K: {
        const uint8_t *b = row + (k0 / QK_K) * sizeof(block_q2_K);
        int j = k0 % QK_K, n = j / 128, r = j % 128, sh = (r / 32) * 2, half = (r % 32) / 16, l = r % 16;
        int sc = b[CM_AT(block_q2_K, scales) + n * 8 + (r / 32) * 2 + half];
        float d = cm_half_at(b + CM_AT(block_q2_K, d)), dmin = cm_half_at(b + CM_AT(block_q2_K, dmin));
        float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
        const uint8_t *q = b + CM_AT(block_q2_K, qs) + 32 * n + 16 * half + l;
        for (int i = 0; i < 8; i++) y[i] = dl * (float)((q[i] >> sh) & 3) - ml;
        return;
    }
    case GGML_Q3_K: {
        const uint8_t *b = row + (k0 / QK_K) * sizeof(block_q3_K);
        int j = k0 % QK_K, n = j / 128, r = j % 128, sh = (r / 32) * 2, half = (r % 32) / 16, l = r % 16;
        int kk = l + 16 * half, m = 1 << (n * 4 + r / 32);
        int sc = cm_q3k_scale(n * 8 + (r / 32) * 2 + half, b + CM_AT(block_q3_K, scales));
        float dl = cm_half_at(b + CM_AT(block_q3_K, d)) * (float)(sc - 32);
        const uint8_t *q = b + CM_AT(block_q3_K, qs) + 32 * n + kk, *hm = b + CM_AT(block_q3_K, hmask) + kk;
        for (int i = 0; i < 8; i++) y[i] = dl * (float)(((q[i] >> sh) & 3) - ((hm[i] & m) ? 0 : 4));
        return;
    }
    case GGML_Q4_K: case GGML_Q5_K: {
        /* d, dmin and scales open both blocks alike; Q5_K has qh before qs */
        const bool q4k = t == GGML_Q4_K;
        const uint8_t *b = row + (k0 / QK_K) * (q4k ? sizeof(block_q4_K) : sizeof(block_q5_K));
        int j = k0 % QK_K, c = j / 64, hi = (j % 64) / 32, l = j % 32, sub = 2 * c + hi, sc, mn;
        cm_kq_scale_min(sub, b + CM_AT(block_q4_K, scales), &sc, &mn);
        float d = cm_half_at(b + CM_AT(block_q4_K, d)) * (float)sc, m = cm_half_at(b + CM_AT(block_q4_K, dmin)) * (float)mn;
        const uint8_t *q = b + (q4k ? CM_AT(block_q4_K, qs) : CM_AT(block_q5_K, qs)) + 32 * c + l;
        const uint8_t *qh = b + CM_AT(block_q5_K, qh) + l;   /* Q5_K only */
        for (int i = 0; i < 8; i++) {
            int v = hi ? q[i] >> 4 : q[i] & 0xF;
            if (t == GGML_Q5_K) v += ((qh[i] >> sub) & 1) << 4;
            y[i] = d * (float)v - m;
        }
        return;
    }
    case GGML_Q6_K: {
        const uint8_t *b = row + (k0 / QK_K) * sizeof(block_q6_K);
        int j = k0 % QK_K, n = j / 128, r = j % 128, quarter = r / 32, l = r % 32;
        int sc = (int8_t)b[CM_AT(block_q6_K, scales) + 8 * n + l / 16 + 2 * quarter];
        float d = cm_half_at(b + CM_AT(block_q6_K, d)) * (float)sc;
        const uint8_t *ql = b + CM_AT(block_q6_K, ql) + 64 * n + l + (quarter & 1) * 32;
        const uint8_t *qh = b + CM_AT(block_q6_K, qh) + 32 * n + l;
        for (int i = 0; i < 8; i++) {
            int v = ((quarter < 2 ? ql[i] & 0xF : ql[i] >> 4) | ((qh[i] >> (2 * quarter)) & 3) << 4) - 32;
            y[i] = d * (float)v;
        }
        return;
    }
    case GGML_IQ4_XS: {
        const uint8_t *b = row + (k0 / QK_K) * sizeof(block_iq4_xs);
        int j = k0 % QK_K, ib = j / 32, jj = j % 32;
        int ls = ((b[CM_AT(block_iq4_xs, scales_l) + ib / 2] >> 4 * (ib % 2)) & 0xF) |
                 (int)((cm_u16(b + CM_AT(block_iq4_xs, scales_h)) >> 2 * ib) & 3) << 4;
        float dl = cm_half_at(b + CM_AT(block_iq4_xs, d)) * (float)(ls - 32);
        const uint8_t *q = b + CM_AT(block_iq4_xs, qs) + 16 * ib + (jj & 15);
        for (int i = 0; i < 8; i++) y[i] = dl * (float)cm_iq4nl(jj < 16 ? q[i] & 0xF : q[i] >> 4);
        return;
    }
    default:
        for (int i = 0; i < 8; i++) y[i] = 0;
        return;
    }
}

/* True when the CUDA kernels handle weight type t (its row's CUDA bit) for rows of n weights
 * (whole blocks, 8 weights at a time: core/gpu_shapes.c checks the same at load). */
HD bool cm_type_ok(uint32_t t, int64_t n) {
    return cm_block_bytes(t) > 0 && n % 8 == 0 && n % cm_block_len(t) == 0;
}

/* The lane partition of the decode GEMV: lane `lane` of `nlanes` takes chunks of 8 weights
 * k0 = 8 * (lane + nlanes * it); its partial sums are then added across lanes. */
HD float cm_dot_lane(uint32_t t, const uint8_t *row, const float *x, int n, int lane, int nlanes) {
    float acc = 0, w[8];
    for (int k0 = 8 * lane; k0 < n; k0 += 8 * nlanes) {
        cm_dequant8(t, row, k0, w);
        for (int i = 0; i < 8; i++) acc += w[i] * x[k0 + i];
    }
    return acc;
}

/* ---- small pieces of the forward ---------------------------------------------------------- */

HD float cm_rms_scale(float sumsq, int n, float eps) { return 1.0f / sqrtf(sumsq / (float)n + eps); }
HD float cm_silu(float x) { return x / (1.0f + expf(-x)); }
HD float cm_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* NEOX rotation of the pair (a, b) = (x[i], x[i + d/2]) by cos c, sin s */
HD void cm_rope_pair(float a, float b, float c, float s, float *ya, float *yb) {
    *ya = a * c - b * s;
    *yb = b * c + a * s;
}

/* cos / sin of position pos for pair i of a head of d dims (computed in double, like the CPU) */
HD void cm_rope_cs(int pos, int i, int d, float theta, float *c, float *s) {
    double angle = (double)pos * pow((double)theta, -2.0 * i / d);
    *c = (float)cos(angle);
    *s = (float)sin(angle);
}

/* One channel of the gated short conv: u_t = B * X; out = C * (w0 u_{t-2} + w1 u_{t-1} + w2 u_t) */
HD float cm_conv_out(const float *w3, float u2, float u1, float u0, float C) {
    return C * (w3[0] * u2 + w3[1] * u1 + w3[2] * u0);
}

/* u = B * X of batch token t, channel c (z rows: B | C | X) */
HD float cm_conv_u(const float *z, int t, int c, int H) {
    const float *r = z + (size_t)t * 3 * H;
    return r[c] * r[2 * H + c];
}

/* Conv output of batch token t, channel c. p1, p2: batch indices of the sequence's previous
 * two tokens (-1: before this batch, so the u comes from the saved state [u_{-2} | u_{-1}]). */
HD float cm_conv_elem(const float *z, const float *w, const float *state, int t, int p1, int p2, int c,
                      int H) {
    float u0 = cm_conv_u(z, t, c, H);
    float u1 = p1 >= 0 ? cm_conv_u(z, p1, c, H) : state[H + c];
    float u2 = p2 >= 0 ? cm_conv_u(z, p2, c, H) : p1 >= 0 ? state[H + c] : state[c];
    return cm_conv_out(w + 3 * c, u2, u1, u0, z[(size_t)t * 3 * H + H + c]);
}

/* New saved state, channel c, of a sequence whose last batch token is t (previous one p1). */
HD void cm_conv_state_elem(const float *z, float *state, int t, int p1, int c, int H) {
    float older = p1 >= 0 ? cm_conv_u(z, p1, c, H) : state[H + c];
    state[c] = older;
    state[H + c] = cm_conv_u(z, t, c, H);
}

/* The sequence structure of a batch: prev1[t] = index of the same sequence's token at
 * pos[t] - 1 (or -1), seq_last = the last token of each sequence. Returns the sequence count. */
HD int cm_batch_links(const void *const *seq, const int *pos, int T, int *prev1, int *seq_last) {
    int n_seq = 0;
    for (int t = 0; t < T; t++) {
        prev1[t] = -1;
        for (int j = t - 1; j >= 0; j--)
            if (seq[j] == seq[t]) { prev1[t] = pos[j] == pos[t] - 1 ? j : -1; break; }
        bool last = true;
        for (int j = t + 1; j < T && last; j++) last = seq[j] != seq[t];
        if (last) seq_last[n_seq++] = t;
    }
    return n_seq;
}

/* The CUDA graph a forward of T tokens (n_seq sequences, n_out rows of logits) replays with
 * LFM2C_CUDA_GRAPH_BUCKETS=1: a decode-only step (every token its sequence's only one, each with
 * logits) of at most CM_GRAPH_MAX tokens takes the graph of the smallest power of two of at
 * least T tokens, the rest padded (backend_cuda.cu); 0: plain launches. */
enum { CM_GRAPH_MAX = 64, CM_GRAPH_BUCKETS = 7 };
HD int cm_graph_bucket(int T, int n_seq, int n_out) {
    if (T < 1 || T > CM_GRAPH_MAX || n_seq != T || n_out != T) return 0;
    int b = 1;
    while (b < T) b *= 2;
    return b;
}
/* a bucket's slot among the CM_GRAPH_BUCKETS graphs (log2 of its size) */
HD int cm_graph_slot(int bucket) {
    int i = 0;
    while ((1 << i) < bucket) i++;
    return i;
}

/* Router of one token: sigmoid scores, the bias only ranks, the k chosen scores are
 * renormalised. Ties go to the lower expert id (as the CPU path). */
HD void cm_route(const float *logits, const float *bias, int E, int k, int *sel, float *w) {
    float sum = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        float bv = 0;
        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken = taken || sel[i] == e;
            if (taken) continue;
            float v = cm_sigmoid(logits[e]) + (bias ? bias[e] : 0.0f);
            if (best < 0 || v > bv) { best = e; bv = v; }
        }
        sel[j] = best;
        w[j] = cm_sigmoid(logits[best]);
        sum += w[j];
    }
    if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
    for (int j = 0; j < k; j++) w[j] /= sum;
}

/* The expert plan: from per-expert pair counts, start offsets (E + 1) and a list of column
 * tiles (expert, first sorted pair, pairs) of at most `width` pairs. Returns the tile count. */
HD int cm_plan_tiles(const int *count, int E, int width, int *start, int *tile_e, int *tile_c0,
                     int *tile_n) {
    int nt = 0;
    start[0] = 0;
    for (int e = 0; e < E; e++) {
        start[e + 1] = start[e] + count[e];
        for (int c = 0; c < count[e]; c += width) {
            tile_e[nt] = e;
            tile_c0[nt] = start[e] + c;
            tile_n[nt] = count[e] - c < width ? count[e] - c : width;
            nt++;
        }
    }
    return nt;
}

/* Online softmax: folds score s with value row v (n entries) into (max m, sum l, acc). */
HD void cm_softmax_step(float s, const float *v, int n, float *m, float *l, float *acc) {
    float mn = s > *m ? s : *m;
    float corr = expf(*m - mn), p = expf(s - mn);
    *l = *l * corr + p;
    for (int i = 0; i < n; i++) acc[i] = acc[i] * corr + p * v[i];
    *m = mn;
}


/* Merges nw partial online-softmax states (m, l): f[w] = the factor of part w's sums; returns
 * the total denominator. A part that saw no score has m = -inf and weighs nothing. */
HD float cm_softmax_merge(const float *m, const float *l, int nw, float *f) {
    float M = -INFINITY, L = 0;
    for (int w = 0; w < nw; w++) M = m[w] > M ? m[w] : M;
    for (int w = 0; w < nw; w++) {
        f[w] = m[w] == -INFINITY ? 0.0f : expf(m[w] - M);
        L += l[w] * f[w];
    }
    return L;
}

#endif
