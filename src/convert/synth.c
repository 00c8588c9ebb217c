/* synth.c — write a random-weight LFM2 model (see synth.h).
 *
 * Weights: matrices ~N(0, 1/sqrt(fan_in)) (residual-writing projections further / sqrt(2L)),
 * norms U(0.9, 1.1), conv taps N(0, 1/sqrt(3)), router N(0, 1/sqrt(H)), expert bias N(0, 0.05):
 * the forward pass stays finite and well scaled. Quantized tensors are not quantized from floats
 * (far too slow for 24B parameters) but made directly as random blocks: random quant bits with
 * scales chosen so the dequantized weights have the intended spread (BLOCK_SCALE); a type without
 * such a rule is quantized from floats where quantize makes it. Data is generated in fixed
 * pieces, each with its own seed, so the output does not depend on the thread count. The tensors,
 * their shapes and the metadata keys are the architecture table's (core/lfm2_arch.h); each row's
 * `init` says which of the spreads above it gets. */
#include "base/error.h"
#include "core/lfm2_arch.h"
#include "convert/synth.h"
#include "convert/synth_impl.h"
#include "convert/synth_mix.h"
#include "formats/gguf_write.h"
#include "chat/lfm2_chat_template.h"
#include "formats/ggml_types.h"
#include "base/threadpool.h"
#include "base/clock.h"
#include "base/os.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PIECE_ELEMS (1 << 18) /* weights per independently seeded piece */
#define PIECES_PER_THREAD 8


/* ---- presets (spec 1.2 / 1.3) ------------------------------------------------------------ */

typedef struct preset {
    const char *name;
    synth_config c;
} preset;

#define DENSE(nm, h, l, nh, ff_, ...) \
    { \
        nm, { \
            .arch = "lfm2", .name = nm, .hidden = h, .n_layer = l, .n_head = nh, .n_head_kv = 8, .ff = ff_, \
            .vocab = 65536, .ctx = 128000, .n_attn = sizeof((int[]){__VA_ARGS__}) / sizeof(int), \
            .attn_layers = {__VA_ARGS__}, .rope_theta = 1e6f, .norm_eps = 1e-5f, .l_cache = 3 \
        } \
    }

static const preset PRESETS[] = {
    DENSE("lfm2-350m", 1024, 16, 16, 4608, 2, 5, 8, 10, 12, 14),
    DENSE("lfm2-700m", 1536, 16, 24, 6912, 2, 5, 8, 10, 12, 14),
    DENSE("lfm2-1.2b", 2048, 16, 32, 8192, 2, 5, 8, 10, 12, 14),
    DENSE("lfm2-2.6b", 2048, 30, 32, 10752, 2, 5, 9, 13, 17, 21, 24, 27),
    {"lfm2-8b-a1b",
     {.arch = "lfm2moe",
      .name = "lfm2-8b-a1b",
      .hidden = 2048,
      .n_layer = 24,
      .n_head = 32,
      .n_head_kv = 8,
      .ff = 7168,
      .vocab = 65536,
      .ctx = 128000,
      .n_attn = 6,
      .attn_layers = {2, 6, 10, 14, 18, 21},
      .n_expert = 32,
      .n_expert_used = 4,
      .expert_ff = 1792,
      .n_dense = 2,
      .rope_theta = 1e6f,
      .norm_eps = 1e-5f,
      .l_cache = 3}},
    /* 24B-A2B: dense FFN 11776 is the spec's inference, attention placement unknown: spread every
     * 4th layer from 2 like the 8B */
    {"lfm2-24b-a2b",
     {.arch = "lfm2moe",
      .name = "lfm2-24b-a2b",
      .hidden = 2048,
      .n_layer = 40,
      .n_head = 32,
      .n_head_kv = 8,
      .ff = 11776,
      .vocab = 65536,
      .ctx = 32768,
      .n_attn = 10,
      .attn_layers = {2, 6, 10, 14, 18, 22, 26, 30, 34, 38},
      .n_expert = 64,
      .n_expert_used = 4,
      .expert_ff = 1536,
      .n_dense = 2,
      .rope_theta = 1e6f,
      .norm_eps = 1e-5f,
      .l_cache = 3}},
};

bool synth_preset(const char *name, synth_config *c) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (!strcasecmp(name, PRESETS[i].name)) {
            *c = PRESETS[i].c;
            return true;
        }
    return false;
}

const char *synth_preset_list(void) { return "lfm2-350m, lfm2-700m, lfm2-1.2b, lfm2-2.6b, lfm2-8b-a1b, lfm2-24b-a2b"; }

/* ---- tokenizer --------------------------------------------------------------------------- */

static const char *SPECIALS[14] = {"<|pad|>",
                                   "<|startoftext|>",
                                   "<|endoftext|>",
                                   "<|fim_pre|>",
                                   "<|fim_mid|>",
                                   "<|fim_suf|>",
                                   "<|im_start|>",
                                   "<|im_end|>",
                                   "<|tool_list_start|>",
                                   "<|tool_list_end|>",
                                   "<|tool_call_start|>",
                                   "<|tool_call_end|>",
                                   "<|tool_response_start|>",
                                   "<|tool_response_end|>"};

/* An LFM2-VL model's image tokens, in place of the first reserved ones (ids 14..): the
 * placeholder, the image's start and end, the thumbnail and the first tiles' markers. */
static const char *VL_SPECIALS[] = {"<image>",
                                    "<|image_start|>",
                                    "<|image_end|>",
                                    "<|img_thumbnail|>",
                                    "<|img_row_1_col_1|>",
                                    "<|img_row_1_col_2|>",
                                    "<|img_row_1_col_3|>",
                                    "<|img_row_2_col_1|>",
                                    "<|img_row_2_col_2|>",
                                    "<|img_row_2_col_3|>",
                                    "<|img_row_3_col_1|>",
                                    "<|img_row_3_col_2|>",
                                    "<|img_row_3_col_3|>"};

#define G "\xc4\xa0" /* "Ġ": the byte-level form of a space */
static const char *MERGES[] = {G " t", "h e",  G " a",   "i n",   "e r",   "o n",   G "t he", G " o",  G " s",   "r e",
                               G " w", "a t",  "e n",    G " c",  "i s",   "o r",   G " b",   G " f",  "i t",    G " p",
                               "a n",  "e s",  G " m",   "o u",   G " d",  G " h",  G " l",   G " in", "n g",    "i ng",
                               "e d",  "n d",  G "a nd", G "o f", G "t o", G " is", "l l",    G " y",  G "y ou", "a r",
                               G " e", G " n", "o w",    G " g",  "l e",   G " re"};
#undef G
#define N_MERGES ((int)(sizeof MERGES / sizeof MERGES[0]))
#define FIRST_BYTE_TOKEN 32
#define MIN_VOCAB (FIRST_BYTE_TOKEN + 256 + N_MERGES)

/* GPT-2's byte -> code point map, UTF-8 encoded into out (NUL-terminated). */
static void byte_token(int b, char out[4]) {
    int cp;
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) {
        cp = b;
    } else {
        int n = 0; /* rank among the unprintable bytes */
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static bool set_tokenizer(gguf_writer *w, int vocab, bool vl, lfm2c_error *err) {
    bool ok = false;
    char **tok = calloc((size_t)vocab, sizeof *tok);
    int32_t *type = malloc((size_t)vocab * sizeof *type);
    if (!tok || !type) goto oom;
    char buf[64];
    int n = 0;
    for (; n < 14; n++) tok[n] = strdup(SPECIALS[n]);
    for (; n < FIRST_BYTE_TOKEN; n++) {
        const int v = n - 14;
        snprintf(buf, sizeof buf, "<|reserved_%d|>", n - 10);
        tok[n] = strdup(vl && v < (int)(sizeof VL_SPECIALS / sizeof *VL_SPECIALS) ? VL_SPECIALS[v] : buf);
    }
    for (int b = 0; b < 256; b++, n++) {
        byte_token(b, buf);
        tok[n] = strdup(buf);
    }
    for (int m = 0; m < N_MERGES; m++, n++) {
        const char *sp = strchr(MERGES[m], ' ');
        size_t la = (size_t)(sp - MERGES[m]);
        /* both halves must already be tokens */
        bool fa = false, fb = false;
        for (int i = FIRST_BYTE_TOKEN; i < n; i++) {
            fa |= strlen(tok[i]) == la && !memcmp(tok[i], MERGES[m], la);
            fb |= !strcmp(tok[i], sp + 1);
        }
        if (!fa || !fb) {
            lfm2c_set_error(err, LFM2C_EINVAL, "internal: merge '%s' joins unknown tokens", MERGES[m]);
            goto done;
        }
        snprintf(buf, sizeof buf, "%.*s%s", (int)la, MERGES[m], sp + 1);
        tok[n] = strdup(buf);
    }
    for (; n < vocab; n++) {
        snprintf(buf, sizeof buf, "\xc4\xa0synth%d", n);
        tok[n] = strdup(buf);
    }
    for (int i = 0; i < vocab; i++) {
        if (!tok[i]) goto oom;
        type[i] = i < FIRST_BYTE_TOKEN ? 3 : 1; /* control / normal */
    }
    if (!gguf_set_str(w, "tokenizer.ggml.model", "gpt2") || !gguf_set_str(w, "tokenizer.ggml.pre", "lfm2") ||
        !gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)vocab) ||
        !gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, type, (uint64_t)vocab) ||
        !gguf_set_arr_str(w, "tokenizer.ggml.merges", MERGES, N_MERGES) ||
        !gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1) || !gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 7) ||
        !gguf_set_u32(w, "tokenizer.ggml.padding_token_id", 0) ||
        !gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true) ||
        !gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false) ||
        !gguf_set_str(w, "tokenizer.chat_template", LFM2_CHAT_TEMPLATE))
        goto oom;
    ok = true;
    goto done;
oom:
    lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
done:
    if (tok)
        for (int i = 0; i < vocab; i++) free(tok[i]);
    free(tok);
    free(type);
    return ok;
}

/* ---- configuration ----------------------------------------------------------------------- */

static bool is_moe(const synth_config *c) { return !strcmp(c->arch, "lfm2moe"); }

bool synth_validate(const synth_config *c, lfm2c_error *err) {
    if (strcmp(c->arch, "lfm2") && strcmp(c->arch, "lfm2moe")) {
        lfm2c_set_error(err, LFM2C_EINVAL, "architecture must be lfm2 or lfm2moe");
        return false;
    }
    if (c->hidden <= 0 || c->hidden % 32 || c->hidden > 65536) {
        lfm2c_set_error(err, LFM2C_EINVAL, "hidden size %d must be a positive multiple of 32", c->hidden);
        return false;
    }
    if (c->n_layer <= 0 || c->n_layer > SYNTH_MAX_LAYERS) {
        lfm2c_set_error(err, LFM2C_EINVAL, "layers must be in 1..%d", SYNTH_MAX_LAYERS);
        return false;
    }
    if (c->n_head <= 0 || c->hidden % c->n_head || c->n_head_kv <= 0 || c->n_head % c->n_head_kv ||
        (c->hidden / c->n_head) % 2) {
        lfm2c_set_error(err, LFM2C_EINVAL,
                        "heads (%d) must divide hidden (%d) into an even head size, kv heads (%d) must divide heads",
                        c->n_head, c->hidden, c->n_head_kv);
        return false;
    }
    if ((c->hidden / c->n_head) * c->n_head_kv % 32) {
        lfm2c_set_error(err, LFM2C_EINVAL, "kv width (head size x kv heads) must be a multiple of 32");
        return false;
    }
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_layers[i] < 0 || c->attn_layers[i] >= c->n_layer ||
            (i && c->attn_layers[i] <= c->attn_layers[i - 1])) {
            lfm2c_set_error(err, LFM2C_EINVAL, "attention layers must be increasing indices below %d", c->n_layer);
            return false;
        }
    if (c->ff <= 0 || c->ff % 32) {
        lfm2c_set_error(err, LFM2C_EINVAL, "FFN width %d must be a positive multiple of 32", c->ff);
        return false;
    }
    if (c->vocab < MIN_VOCAB || c->vocab > (1 << 24)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "vocab must be in %d..%d", MIN_VOCAB, 1 << 24);
        return false;
    }
    if (c->ctx <= 0) {
        lfm2c_set_error(err, LFM2C_EINVAL, "context length must be positive");
        return false;
    }
    if (is_moe(c)) {
        if (c->n_expert <= 0 || c->n_expert_used <= 0 || c->n_expert_used > c->n_expert || c->expert_ff <= 0 ||
            c->expert_ff % 32 || c->n_dense < 0 || c->n_dense > c->n_layer) {
            lfm2c_set_error(err, LFM2C_EINVAL,
                            "MoE settings: need experts >= experts-used >= 1, expert FFN a multiple of 32, "
                            "0 <= dense layers <= layers");
            return false;
        }
    }
    return true;
}

/* ---- tensors ----------------------------------------------------------------------------- */

enum init_kind { INIT_GAUSS, INIT_NORM };

typedef struct stensor {
    char name[64];
    uint32_t n_dims;
    int64_t ne[4];
    enum init_kind init;
    float sigma;
    uint32_t type;
    uint64_t seed;
} stensor;

typedef struct tlist {
    stensor *t;
    int n, cap;
} tlist;

static bool add(tlist *l, const char *name, enum init_kind init, float sigma, uint32_t n_dims, int64_t ne0, int64_t ne1,
                int64_t ne2) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        stensor *nt = realloc(l->t, (size_t)cap * sizeof *nt);
        if (!nt) return false;
        l->t = nt;
        l->cap = cap;
    }
    stensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
    t->init = init;
    t->sigma = sigma;
    return true;
}

/* The configuration as the architecture tables want it. */
static void synth_hparams(const synth_config *c, uint32_t file_type, lfm2_hparams *hp) {
    _Static_assert(SYNTH_MAX_LAYERS <= LFM2C_MAX_LAYERS, "synth layers must fit the architecture's");
    memset(hp, 0, sizeof *hp);
    hp->moe = is_moe(c);
    hp->n_layer = c->n_layer;
    hp->n_embd = c->hidden;
    hp->n_head = c->n_head;
    hp->head_dim = c->hidden / c->n_head;
    hp->n_ctx = c->ctx;
    hp->n_vocab = c->vocab;
    hp->l_cache = c->l_cache;
    hp->n_ff = c->ff;
    hp->n_expert = c->n_expert;
    hp->n_expert_used = c->n_expert_used;
    hp->n_ff_exp = c->expert_ff;
    hp->n_dense = c->n_dense;
    hp->rope_theta = c->rope_theta;
    hp->norm_eps = c->norm_eps;
    hp->tied = true;
    hp->expert_bias = true;
    hp->file_type = file_type;
    for (int i = 0; i < c->n_attn; i++) {
        hp->is_attn[c->attn_layers[i]] = true;
        hp->n_head_kv[c->attn_layers[i]] = c->n_head_kv;
    }
}

/* Spread of a row's random weights (see the top of the file); ne0 is the fan-in. */
static float init_sigma(lfm2_init init, int64_t ne0, float resid) {
    switch (init) {
    case LFM2_INIT_FANIN: return 1.0f / sqrtf((float)ne0);
    case LFM2_INIT_RESID: return resid / sqrtf((float)ne0);
    case LFM2_INIT_FANIN_RESID: return 1.0f / sqrtf((float)ne0) * resid;
    case LFM2_INIT_SMALL: return 0.05f;
    default: return 0;
    }
}

/* Every tensor the table wants for layer l (-1: the global ones). */
static bool add_rows(tlist *tl, const lfm2_hparams *hp, int l, float resid) {
    char nm[64];
    int64_t ne[3];
    for (int i = l < 0 ? 0 : LFM2_T_FIRST_LAYER; i < (l < 0 ? LFM2_T_FIRST_LAYER : LFM2_T_COUNT); i++) {
        const lfm2_tensor *row = &LFM2_TENSORS[i];
        if (!lfm2_tensor_wanted(row, hp, l)) continue;
        int nd = lfm2_tensor_shape(row, hp, l, ne);
        enum init_kind kind = row->init == LFM2_INIT_NORM ? INIT_NORM : INIT_GAUSS;
        if (!add(tl, lfm2_tensor_name(row, l, false, nm, sizeof nm), kind, init_sigma(row->init, ne[0], resid),
                 (uint32_t)nd, ne[0], ne[1], ne[2]))
            return false;
    }
    return true;
}

static bool build_tensors(const lfm2_hparams *hp, tlist *l) {
    const float resid = 1.0f / sqrtf(2.0f * (float)hp->n_layer);
    bool ok = add_rows(l, hp, -1, resid);
    for (int i = 0; ok && i < hp->n_layer; i++) ok = add_rows(l, hp, i, resid);
    return ok;
}

static int stensor_cmp(const void *a, const void *b) {
    return quant_tensor_order_cmp(((const stensor *)a)->name, ((const stensor *)b)->name);
}

/* ---- random data ------------------------------------------------------------------------- */

static inline float uniform(uint64_t *s) { return (float)(synth_splitmix64(s) >> 40) * (1.0f / 16777216.0f); }

static void random_bytes(uint8_t *p, size_t n, uint64_t *s) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = synth_splitmix64(s);
        memcpy(p + i, &r, 8);
    }
    if (i < n) {
        uint64_t r = synth_splitmix64(s);
        memcpy(p + i, &r, n - i);
    }
}


/* The random blocks of the types synth makes directly: random quant bits (written before), the
 * block's scales set here so the weights spread like N(0, sigma). Std of a uniform integer over k
 * levels is ~k/sqrt(12): 4.61 (16 levels), 9.23 (32), 18.5 (64), 73.6 (255). */
typedef void (*block_scale_fn)(uint8_t *blk, float sg, uint64_t *s);
static void scale_q4_0(uint8_t *blk, float sg, uint64_t *s) { ((block_q4_0 *)blk)->d = f32_to_fp16(sg / 4.61f); }
static void scale_q5_0(uint8_t *blk, float sg, uint64_t *s) { ((block_q5_0 *)blk)->d = f32_to_fp16(sg / 9.23f); }
static void scale_q8_0(uint8_t *blk, float sg, uint64_t *s) { ((block_q8_0 *)blk)->d = f32_to_fp16(sg / 73.6f); }
static void scale_q4_1(uint8_t *blk, float sg, uint64_t *s) {
    block_q4_1 *q = (block_q4_1 *)blk;
    q->d = f32_to_fp16(sg / 4.61f);
    q->m = f32_to_fp16(-7.5f * sg / 4.61f);
}
static void scale_q5_1(uint8_t *blk, float sg, uint64_t *s) {
    block_q5_1 *q = (block_q5_1 *)blk;
    q->d = f32_to_fp16(sg / 9.23f);
    q->m = f32_to_fp16(-15.5f * sg / 9.23f);
}
/* sub-block scale = min = 32..63: weight = d*s*(q - mid), mid = 7.5 (Q4_K) or 15.5 (Q5_K) */
static void scale_q45_K(uint8_t *blk, float sg, uint64_t *s, bool q5) {
    const float d = sg / ((q5 ? 9.23f : 4.61f) * 47.5f);
    uint8_t ls[8];
    uint64_t r = synth_splitmix64(s);
    for (int j = 0; j < 8; j++) ls[j] = (uint8_t)(32 + ((r >> (8 * j)) & 31));
    ggml_half *hd = (ggml_half *)blk;
    hd[0] = f32_to_fp16(d);
    hd[1] = f32_to_fp16(d * (q5 ? 15.5f : 7.5f));
    kq_pack_scale_min(blk + 4, ls, ls);
}
static void scale_q4_K(uint8_t *blk, float sg, uint64_t *s) { scale_q45_K(blk, sg, s, false); }
static void scale_q5_K(uint8_t *blk, float sg, uint64_t *s) { scale_q45_K(blk, sg, s, true); }
static void scale_q6_K(uint8_t *blk, float sg, uint64_t *s) {
    block_q6_K *q = (block_q6_K *)blk;
    uint64_t r0 = synth_splitmix64(s), r1 = synth_splitmix64(s);
    for (int j = 0; j < 16; j++) q->scales[j] = (int8_t)(64 + (((j < 8 ? r0 : r1) >> (8 * (j & 7))) & 63));
    q->d = f32_to_fp16(sg / (18.5f * 95.5f));
}
static const block_scale_fn BLOCK_SCALE[GGML_NTYPES] = {
    [GGML_Q4_0] = scale_q4_0, [GGML_Q4_1] = scale_q4_1, [GGML_Q5_0] = scale_q5_0, [GGML_Q5_1] = scale_q5_1,
    [GGML_Q8_0] = scale_q8_0, [GGML_Q4_K] = scale_q4_K, [GGML_Q5_K] = scale_q5_K, [GGML_Q6_K] = scale_q6_K,
};

static bool is_float_type(uint32_t t) { return t == GGML_F32 || t == GGML_F16 || t == GGML_BF16; }

/* The types synth can generate: the float types, the random blocks above, and every type quantize
 * makes (its row in the type table, formats/ggml_types.h), from N(0, sigma) floats. */
static bool can_generate(uint32_t type) {
    return is_float_type(type) || (type < GGML_NTYPES && BLOCK_SCALE[type]) || synth_random_type(type) ||
           quantize_supported(type);
}
/* made by synth_random_block (the low-bit types, synth_mix.c) */
static bool random_typed(uint32_t type) {
    return !(type < GGML_NTYPES && BLOCK_SCALE[type]) && synth_random_type(type);
}

/* n weights of tensor t into dst (n a multiple of the block size), seeded by s: floats, random
 * blocks (BLOCK_SCALE), or floats quantized (scratch: n floats). */
static void gen_piece(const stensor *t, uint8_t *dst, int64_t n, uint64_t s, float *scratch) {
    const float sg = t->sigma;
    if (is_float_type(t->type)) {
        for (int64_t i = 0; i < n; i++) {
            float v = t->init == INIT_NORM ? 0.9f + 0.2f * uniform(&s) : sg * synth_gauss(&s);
            if (t->type == GGML_F32) memcpy(dst + 4 * i, &v, 4);
            else {
                uint16_t h = t->type == GGML_F16 ? f32_to_fp16(v) : f32_to_bf16(v);
                memcpy(dst + 2 * i, &h, 2);
            }
        }
        return;
    }
    const ggml_type_info *ti = ggml_type_get(t->type);
    const block_scale_fn scale = BLOCK_SCALE[t->type];
    if (random_typed(t->type)) {
        for (int64_t b = 0; b < n / ti->block_size; b++) synth_random_block(t->type, dst + b * ti->type_size, sg, &s);
        return;
    }
    if (!scale) { /* a type quantize makes (can_generate) */
        for (int64_t i = 0; i < n; i++) scratch[i] = sg * synth_gauss(&s);
        quantize_rows(t->type, scratch, dst, 1, n);
        return;
    }
    const int64_t nb = n / ti->block_size;
    random_bytes(dst, (size_t)(nb * ti->type_size), &s);
    for (int64_t b = 0; b < nb; b++) scale(dst + b * ti->type_size, sg, &s);
}

typedef struct gen_job {
    const stensor *t;
    uint8_t *buf;
    int64_t first_piece, n_pieces, n_elems; /* pieces of this chunk; elements of the tensor */
    int64_t piece_elems;
    size_t piece_bytes;
    float *scratch; /* piece_elems floats per thread: the types made through quantize_rows */
} gen_job;

static void gen_work(void *arg, int ith, int nth) {
    gen_job *j = arg;
    for (int64_t k = ith; k < j->n_pieces; k += nth) {
        int64_t piece = j->first_piece + k, e0 = piece * j->piece_elems;
        int64_t n = j->n_elems - e0 < j->piece_elems ? j->n_elems - e0 : j->piece_elems;
        uint64_t s = j->t->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(piece + 1));
        synth_splitmix64(&s);
        float *scratch = j->scratch ? j->scratch + (size_t)ith * (size_t)j->piece_elems : NULL; /* NULL: none needed */
        gen_piece(j->t, j->buf + (size_t)k * j->piece_bytes, n, s, scratch);
    }
}

/* Each tensor's type by the file type's recipe (as quantize would choose it): false with the error set. */
static bool choose_types(const synth_config *c, const quant_ftype *ft, const tlist *l, uint32_t *types,
                         lfm2c_error *err) {
    quant_tensor_desc *desc = malloc((size_t)l->n * sizeof *desc);
    if (!desc) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    for (int i = 0; i < l->n; i++)
        desc[i] = (quant_tensor_desc){
            l->t[i].name, l->t[i].n_dims, {l->t[i].ne[0], l->t[i].ne[1], l->t[i].ne[2], 1}, GGML_F32};
    /* the low-bit file types as they are published: made with an importance matrix (which some
     * of their rules look at; llama-quantize refuses the IQ1 / IQ2 ones without) */
    const bool low_bit = synth_random_type(ft->default_type);
    bool attn0 = false;
    for (int i = 0; i < c->n_attn; i++) attn0 |= c->attn_layers[i] == 0;
    const quant_recipe_opts o = {.n_layer = c->n_layer,
                                 .n_expert = is_moe(c) ? c->n_expert : 0,
                                 .n_gqa = attn0 ? c->n_head / c->n_head_kv : 0, /* block 0's */
                                 .has_imatrix = low_bit,
                                 .output_type = -1,
                                 .token_embd_type = -1};
    const bool ok = quant_recipe_ex(ft, &o, desc, l->n, types, NULL, err);
    free(desc);
    return ok;
}

/* The header's key-values: general.*, then the keys of both archs, then the MoE ones, the tokenizer. */
static bool write_meta(gguf_writer *w, const synth_config *c, const quant_ftype *ft, const lfm2_hparams *hp,
                       uint64_t seed, lfm2c_error *err) {
    char desc_s[160];
    snprintf(desc_s, sizeof desc_s, "random weights, seed %llu, written by lfm2c synth; tokenizer synthetic",
             (unsigned long long)seed);
    const bool quantized =
        ft->default_type != GGML_F32 && ft->default_type != GGML_F16 && ft->default_type != GGML_BF16;
    bool mok = gguf_set_str(w, "general.architecture", lfm2_arch_name(hp->moe)) &&
               gguf_set_str(w, "general.type", "model") &&
               gguf_set_str(w, "general.name", c->name[0] ? c->name : "synthetic") &&
               gguf_set_str(w, "general.description", desc_s) && lfm2_meta_write(w, hp, LFM2_WRITE_GENERAL) &&
               lfm2_meta_write(w, hp, LFM2_WRITE_COMMON) && lfm2_meta_write(w, hp, LFM2_WRITE_MOE);
    if (!mok) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    if (!set_tokenizer(w, c->vocab, c->vl, err)) return false;
    if (quantized && !gguf_set_u32(w, "general.quantization_version", 2)) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return false;
    }
    return true;
}

/* Every tensor into the header with its type and seed; the data's bytes into *total, the
 * parameters into *n_params, the types counted in rep. */
static bool add_tensors(gguf_writer *w, tlist *l, const uint32_t *types, uint64_t seed, synth_report *rep,
                        uint64_t *total, uint64_t *n_params, lfm2c_error *err) {
    *total = *n_params = 0;
    for (int i = 0; i < l->n; i++) {
        stensor *t = &l->t[i];
        t->type = types[i];
        t->seed = synth_hash_str(t->name, 0xcbf29ce484222325ull ^ (seed * 0x9e3779b97f4a7c15ull));
        if (!can_generate(t->type)) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "synth cannot generate %s tensors", ggml_type_get(t->type)->name);
            return false;
        }
        if (!gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err)) return false;
        *total += gguf_writer_tensor_nbytes(w, (uint64_t)i);
        *n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2]);
        if (rep) rep->type_count[t->type]++;
    }
    return true;
}

/* Every tensor's data, generated piece by piece on the pool, a chunk at a time, written in order. */
static bool write_data(gguf_writer *w, const tlist *l, const synth_params *p, uint64_t total, lfm2c_error *err) {
    threadpool *pool = threadpool_new(p->n_threads);
    if (!pool) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "cannot start threads");
        return false;
    }
    const int64_t chunk_pieces = (int64_t)threadpool_size(pool) * PIECES_PER_THREAD;
    uint8_t *buf = malloc((size_t)chunk_pieces * PIECE_ELEMS * 4);
    bool need_scratch = false; /* a type made from floats by quantize_rows */
    for (int i = 0; i < l->n; i++)
        need_scratch |= !is_float_type(l->t[i].type) && !BLOCK_SCALE[l->t[i].type] && !random_typed(l->t[i].type);
    synth_random_init();
    float *scratch = need_scratch ? malloc((size_t)threadpool_size(pool) * PIECE_ELEMS * sizeof(float)) : NULL;
    bool ok = buf != NULL && (!need_scratch || scratch);
    if (!ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    uint64_t done_b = 0;
    for (int i = 0; ok && i < l->n; i++) {
        stensor *t = &l->t[i];
        gen_job j = {.t = t,
                     .buf = buf,
                     .n_elems = t->ne[0] * t->ne[1] * t->ne[2],
                     .piece_elems = PIECE_ELEMS,
                     .piece_bytes = ggml_row_size(t->type, PIECE_ELEMS),
                     .scratch = scratch};
        const int64_t pieces = (j.n_elems + PIECE_ELEMS - 1) / PIECE_ELEMS;
        for (j.first_piece = 0; ok && j.first_piece < pieces; j.first_piece += chunk_pieces) {
            j.n_pieces = pieces - j.first_piece < chunk_pieces ? pieces - j.first_piece : chunk_pieces;
            threadpool_run(pool, gen_work, &j);
            int64_t e0 = j.first_piece * PIECE_ELEMS, e1 = e0 + j.n_pieces * PIECE_ELEMS;
            if (e1 > j.n_elems) e1 = j.n_elems;
            size_t bytes = ggml_row_size(t->type, e1 - e0);
            ok = gguf_write_data(w, buf, bytes, err);
            done_b += bytes;
            if (ok && p->progress) p->progress(p->progress_ud, done_b, total, t->name);
        }
    }
    free(buf);
    free(scratch);
    threadpool_free(pool);
    return ok;
}

bool synth_write(const synth_config *c, const quant_ftype *ft, const synth_params *p, const char *path,
                 synth_report *rep, lfm2c_error *err) {
    const double t0 = lfm2c_now_s();
    synth_params defaults = {0};
    if (!p) p = &defaults;
    if (rep) memset(rep, 0, sizeof *rep);
    if (!synth_validate(c, err)) return false;
    bool ok = false;
    tlist l = {0};
    gguf_writer *w = NULL;
    uint32_t *types = NULL;
    uint64_t total = 0, n_params = 0;

    lfm2_hparams hp;
    synth_hparams(c, (uint32_t)ft->id, &hp);
    if (!build_tensors(&hp, &l) || !(types = malloc((size_t)l.n * sizeof *types)) || !(w = gguf_writer_new())) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    qsort(l.t, (size_t)l.n, sizeof *l.t, stensor_cmp);
    if (!choose_types(c, ft, &l, types, err) || !write_meta(w, c, ft, &hp, p->seed, err) ||
        !add_tensors(w, &l, types, p->seed, rep, &total, &n_params, err) || !gguf_writer_open(w, path, err) ||
        !write_data(w, &l, p, total, err))
        goto done;
    uint64_t fsize = gguf_writer_file_size(w);
    if (!gguf_writer_finish(w, err)) goto done;
    if (rep) {
        rep->n_tensors = l.n;
        rep->n_params = n_params;
        rep->file_bytes = fsize;
        rep->seconds = lfm2c_now_s() - t0;
    }
    ok = true;
done:
    gguf_writer_free(w);
    free(types);
    free(l.t);
    return ok;
}
