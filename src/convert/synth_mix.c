/* synth_mix.c — what synth writes beyond quantize's file types (see synth_mix.h): the file types
 * of the low-bit quants that `lfm2c quantize` does not make yet (Q2_K, Q3_K_S/M/L, IQ4_NL,
 * IQ4_XS, IQ3_XXS/S/M, IQ2_XXS/XS/S/M, IQ1_S/M) with their per-tensor mixes, and random but
 * valid blocks of every low-bit type (Q2_K, Q3_K, IQ4_NL, IQ4_XS and the importance-matrix types:
 * random grid indices, signs and sub-block scales, the block's d set so the weights spread like
 * N(0, sigma)). A speed benchmark needs nothing more, and both engines read the same file.
 *
 * The mixes follow llama-quantize's per-tensor rules (llama.cpp's llama-quant.cpp,
 * llama_tensor_get_type_impl) for an LFM2 / LFM2-MoE model quantized WITH an importance matrix,
 * as the published community files are: LFM2's first layer is a short convolution, so the
 * rules' n_gqa() (taken at layer 0) is 0 and no "n_gqa >= 4" bump applies; the tied token
 * embedding takes the output rule. Where `lfm2c quantize` knows a file type, synth takes
 * quantize's recipe instead (synth_ftype_find looks there first). */
#include "convert/synth_mix.h"
#include "formats/ggml_types.h"
#include "base/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* llama_ftype ids (llama.h) of the file types below */
enum {
    FT_Q2_K = 10,
    FT_Q3_K_S = 11,
    FT_Q3_K_M = 12,
    FT_Q3_K_L = 13,
    FT_IQ2_XXS = 19,
    FT_IQ2_XS = 20,
    FT_IQ3_XXS = 23,
    FT_IQ1_S = 24,
    FT_IQ4_NL = 25,
    FT_IQ3_S = 26,
    FT_IQ3_M = 27,
    FT_IQ2_S = 28,
    FT_IQ2_M = 29,
    FT_IQ4_XS = 30,
    FT_IQ1_M = 31
};

static const quant_ftype SYNTH_FTYPES[] = {
    {"Q2_K", FT_Q2_K, GGML_Q2_K},          {"Q3_K_S", FT_Q3_K_S, GGML_Q3_K},   {"Q3_K_M", FT_Q3_K_M, GGML_Q3_K},
    {"Q3_K_L", FT_Q3_K_L, GGML_Q3_K},      {"IQ4_NL", FT_IQ4_NL, GGML_IQ4_NL}, {"IQ4_XS", FT_IQ4_XS, GGML_IQ4_XS},
    {"IQ3_XXS", FT_IQ3_XXS, GGML_IQ3_XXS}, {"IQ3_S", FT_IQ3_S, GGML_IQ3_S},    {"IQ3_M", FT_IQ3_M, GGML_IQ3_S},
    {"IQ2_XXS", FT_IQ2_XXS, GGML_IQ2_XXS}, {"IQ2_XS", FT_IQ2_XS, GGML_IQ2_XS}, {"IQ2_S", FT_IQ2_S, GGML_IQ2_XS},
    {"IQ2_M", FT_IQ2_M, GGML_IQ2_S},       {"IQ1_S", FT_IQ1_S, GGML_IQ1_S},    {"IQ1_M", FT_IQ1_M, GGML_IQ1_M},
};
#define N_SYNTH_FTYPES ((int)(sizeof SYNTH_FTYPES / sizeof SYNTH_FTYPES[0]))

const quant_ftype *synth_ftype_find(const char *name) {
    const quant_ftype *ft = quant_ftype_find(name);
    if (ft) return ft;
    for (int i = 0; i < N_SYNTH_FTYPES; i++)
        if (!strcasecmp(name, SYNTH_FTYPES[i].name)) return &SYNTH_FTYPES[i];
    return NULL;
}

bool synth_own_ftype(const quant_ftype *ft) { return ft >= SYNTH_FTYPES && ft < SYNTH_FTYPES + N_SYNTH_FTYPES; }

const char *synth_ftype_list(void) {
    static char buf[512];
    if (!buf[0]) {
        size_t k = (size_t)snprintf(buf, sizeof buf, "%s", quant_ftype_list());
        for (int i = 0; i < N_SYNTH_FTYPES && k < sizeof buf; i++)
            if (!quant_ftype_find(SYNTH_FTYPES[i].name))
                k += (size_t)snprintf(buf + k, sizeof buf - k, ", %s", SYNTH_FTYPES[i].name);
    }
    return buf;
}

/* ---- the mixes ----------------------------------------------------------------------------- */

enum cat { C_EMBD, C_Q, C_K, C_V, C_O, C_GATE, C_UP, C_DOWN, C_OTHER };

static enum cat category(const char *n) {
    if (!strcmp(n, "token_embd.weight") || !strcmp(n, "output.weight")) return C_EMBD;
    if (strstr(n, "attn_v.weight")) return C_V;
    if (strstr(n, "attn_k.weight")) return C_K;
    if (strstr(n, "attn_q.weight")) return C_Q;
    if (strstr(n, "attn_output.weight")) return C_O;
    if (strstr(n, "ffn_up")) return C_UP;
    if (strstr(n, "ffn_gate")) return C_GATE;
    if (strstr(n, "ffn_down")) return C_DOWN;
    return C_OTHER;
}

/* the tensors llama-quantize leaves as they are: 1-D, norms, the router, the conv taps */
static bool quantizable(const quant_tensor_desc *t) {
    const size_t len = strlen(t->name);
    if (t->n_dims < 2 || (t->ne[1] <= 1 && t->ne[2] <= 1) || len < 6 || strcmp(t->name + len - 6, "weight"))
        return false;
    return !strstr(t->name, "_norm.weight") && !strstr(t->name, "ffn_gate_inp.weight") &&
           !strstr(t->name, "shortconv.conv.weight");
}

static bool low_iq(int ft) {
    return ft == FT_IQ2_XXS || ft == FT_IQ2_XS || ft == FT_IQ1_S || ft == FT_IQ2_S || ft == FT_IQ2_M || ft == FT_IQ1_M;
}
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The low-bit IQ file types' rule for one tensor (layer il of n, i_v attn_v's seen before). */
static uint32_t mix_low_iq(int ft, enum cat c, int il, int n, int n_expert, uint32_t t) {
    const bool s_m = ft == FT_IQ2_S || ft == FT_IQ2_M;
    if (c == C_V) return n_expert >= 4 ? GGML_Q4_K : s_m ? GGML_IQ3_S : GGML_Q2_K;
    if (c == C_K && n_expert == 8) return GGML_Q4_K;
    if (c == C_DOWN && il < n / 8) return s_m ? GGML_IQ3_S : GGML_Q2_K;
    if (c == C_O) {
        if (n_expert == 8) return GGML_Q5_K;
        if (ft == FT_IQ1_S || ft == FT_IQ1_M) return GGML_IQ2_XXS;
        if (s_m) return GGML_IQ3_S;
    }
    return t;
}

/* The other file types' rule for one tensor. */
static uint32_t mix_other(int ft, enum cat c, int il, int n, int n_expert, int i_v, uint32_t t) {
    switch (c) {
    case C_V:
        if (n_expert == 8) return GGML_Q8_0;
        if (ft == FT_Q2_K) return GGML_Q3_K;
        if (ft == FT_IQ3_M) return GGML_Q4_K;
        if (ft == FT_Q3_K_M) return i_v < 2 ? GGML_Q5_K : GGML_Q4_K;
        if (ft == FT_Q3_K_L) return GGML_Q5_K;
        return t;
    case C_K:
        if (n_expert == 8) return GGML_Q8_0;
        return ft == FT_IQ3_XXS ? GGML_IQ2_S : t;
    case C_Q: return ft == FT_IQ3_XXS ? GGML_IQ2_S : t;
    case C_DOWN:
        if (ft == FT_Q2_K) return GGML_Q3_K;
        if (ft == FT_Q3_K_M) return il < n / 16 ? GGML_Q5_K : GGML_Q4_K;
        if (ft == FT_IQ3_M && (il < n / 8 || (n_expert == 8 && more_bits(il, n)))) return GGML_Q4_K;
        if (ft == FT_Q3_K_L) return GGML_Q5_K;
        return t;
    case C_O:
        if (n_expert == 8)
            return ft == FT_Q2_K || ft == FT_IQ3_XXS || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_IQ4_NL ||
                           ft == FT_IQ3_S || ft == FT_IQ3_M || ft == FT_IQ4_XS
                       ? GGML_Q5_K
                       : t;
        return ft == FT_Q2_K      ? GGML_Q3_K
               : ft == FT_IQ3_XXS ? GGML_IQ3_S
               : ft == FT_Q3_K_M  ? GGML_Q4_K
               : ft == FT_Q3_K_L  ? GGML_Q5_K
               : ft == FT_IQ3_M   ? GGML_Q4_K
                                  : t;
    default: return t;
    }
}

/* The tied token embedding (the output rule): Q5_K for the low IQ file types, Q6_K else. */
static uint32_t mix_embd(int ft, int64_t ne0, uint32_t t) {
    if (ne0 % ggml_type_get(t)->block_size) return GGML_Q8_0;
    return low_iq(ft) || ft == FT_IQ3_XXS ? GGML_Q5_K : GGML_Q6_K;
}

bool synth_mix_recipe(const quant_ftype *ft, int n_layer, int n_expert, const quant_tensor_desc *t, int n,
                      uint32_t *out, lfm2c_error *err) {
    int i_v = 0;
    for (int i = 0; i < n; i++) {
        out[i] = t[i].type;
        if (!quantizable(&t[i])) continue;
        const enum cat c = category(t[i].name);
        int il = 0;
        if (sscanf(t[i].name, "blk.%d.", &il) != 1) il = 0;
        uint32_t ty = ft->default_type;
        if (c == C_EMBD) ty = mix_embd(ft->id, t[i].ne[0], ty);
        else if (low_iq(ft->id)) ty = mix_low_iq(ft->id, c, il, n_layer, n_expert, ty);
        else ty = mix_other(ft->id, c, il, n_layer, n_expert, i_v, ty);
        if (c == C_V) i_v++;
        const ggml_type_info *ti = ggml_type_get(ty);
        if (t[i].ne[0] % ti->block_size) { /* the type table's fallback, then F16 */
            ty = ti->fallback == GGML_F32 || t[i].ne[0] % ggml_type_get(ti->fallback)->block_size ? GGML_F16
                                                                                                  : ti->fallback;
        }
        out[i] = ty;
    }
    (void)err;
    return true;
}

/* ---- random blocks ------------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Where each type keeps its block's scale: d (fp16) at byte d_at; Q2_K's dmin follows. IQ1_M
 * spreads d over its scales' top nibbles. */
static int d_at(uint32_t type) {
    switch (type) {
    case GGML_Q2_K: return offsetof(block_q2_K, d);
    case GGML_Q3_K: return offsetof(block_q3_K, d);
    case GGML_IQ4_NL:
    case GGML_IQ4_XS:
    case GGML_IQ2_XXS:
    case GGML_IQ2_XS:
    case GGML_IQ2_S:
    case GGML_IQ3_XXS:
    case GGML_IQ3_S:
    case GGML_IQ1_S: return 0;
    case GGML_IQ1_M: return -2; /* in the scales */
    default: return -1;
    }
}

bool synth_random_type(uint32_t type) { return d_at(type) != -1; }

static void set_d(uint32_t type, uint8_t *blk, uint16_t h) {
    if (type == GGML_IQ1_M) {
        uint8_t *sc = blk + offsetof(block_iq1_m, scales);
        for (int k = 0; k < 4; k++) sc[2 * k + 1] = (uint8_t)((sc[2 * k + 1] & 0x0f) | ((h >> 4 * k) & 15) << 4);
        return;
    }
    const int at = d_at(type);
    if (at < 0) return;
    memcpy(blk + at, &h, 2);
    if (type == GGML_Q2_K) memcpy(blk + offsetof(block_q2_K, dmin), &h, 2);
}

/* Random bits, then the type's own fix-ups: Q2_K's mins centre its 2-bit values (min = 1.5 x
 * scale, so the mean is near 0). */
static void random_block(uint32_t type, uint8_t *blk, uint64_t *s) {
    const int size = ggml_type_get(type)->type_size;
    for (int i = 0; i < size; i += 8) {
        uint64_t r = mix64(s);
        memcpy(blk + i, &r, size - i < 8 ? (size_t)(size - i) : 8);
    }
    if (type == GGML_Q2_K) {
        block_q2_K *q = (block_q2_K *)blk;
        for (int j = 0; j < 16; j++) {
            const int sc = 1 + (q->scales[j] & 7);
            q->scales[j] = (uint8_t)(sc | ((3 * sc + 1) / 2) << 4);
        }
    }
}

/* The RMS of a type's weights at d = 1, measured on 64 random blocks. */
static float unit_rms(uint32_t type) {
    const ggml_type_info *ti = ggml_type_get(type);
    uint8_t blk[512];
    float w[256];
    double ss = 0;
    uint64_t s = 0x5eed0000u + type;
    for (int b = 0; b < 64; b++) {
        random_block(type, blk, &s);
        set_d(type, blk, f32_to_fp16(1.0f));
        dequantize_row(type, blk, w, ti->block_size);
        for (int i = 0; i < ti->block_size; i++) ss += (double)w[i] * w[i];
    }
    float r = (float)sqrt(ss / (64.0 * ti->block_size));
    return r > 0 ? r : 1.0f;
}

static float RMS[GGML_NTYPES];

void synth_random_init(void) {
    for (uint32_t t = 0; t < GGML_NTYPES; t++)
        if (synth_random_type(t) && !RMS[t]) RMS[t] = unit_rms(t);
}

void synth_random_block(uint32_t type, uint8_t *blk, float sigma, uint64_t *s) {
    const float k = RMS[type] > 0 ? RMS[type] : 1.0f;
    random_block(type, blk, s);
    set_d(type, blk, f32_to_fp16(sigma / k));
}
