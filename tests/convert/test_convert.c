/* test_convert.c — HF checkpoint -> GGUF conversion (src/convert/convert.c, src/formats/safetensors.c).
 * The test writes its own tiny Hugging Face checkpoints (safetensors, config.json,
 * tokenizer.json, ...) for lfm2 and lfm2_moe in several layouts, converts them, and checks the
 * GGUF metadata and every tensor (name, shape, type, bytes) field by field. It also rebuilds HF
 * checkpoints from the F32 fixtures and checks that converting them back reproduces the fixture
 * tensors and metadata exactly. Bad inputs must fail cleanly and leave no output file. */
#include "convert/convert.h"
#include "formats/gguf.h"
#include "lfm2c.h"
#include "formats/ggml_types.h"
#include "formats/safetensors.h"
#include "test.h"
#include "base/os.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a tiny HF checkpoint in memory ---------------------------------------------------- */

typedef struct src {
    char name[160];
    int dtype; /* ST_F32 / ST_F16 / ST_BF16 */
    int nd;
    int64_t shape[4];
    float *v; /* values, exactly representable in dtype */
    int64_t n;
    int shard;
} src;

typedef struct ckpt {
    src t[600];
    int n;
    uint32_t seed;
    int round_to; /* >0: values rounded to this dtype whatever the storage dtype */
} ckpt;

static float rnd(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / 16777216.0f - 0.5f) * 2.0f;
}

static float representable(int dtype, float x) {
    if (dtype == ST_BF16) return bf16_to_f32(f32_to_bf16(x));
    if (dtype == ST_F16) return fp16_to_f32(f32_to_fp16(x));
    return x;
}

static src *add_n(ckpt *c, const char *name, int dtype, int nd, int64_t a, int64_t b, int64_t d, bool draw) {
    src *t = &c->t[c->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->nd = nd;
    int64_t sh[3] = {a, b, d};
    t->n = 1;
    for (int i = 0; i < nd; i++) t->shape[i] = sh[i], t->n *= sh[i];
    t->v = malloc((size_t)t->n * sizeof(float));
    int rd = c->round_to > 0 ? c->round_to : dtype;
    for (int64_t i = 0; i < t->n; i++) t->v[i] = draw ? representable(rd, rnd(&c->seed) * 0.7f) : 0.0f;
    return t;
}

static src *add(ckpt *c, const char *name, int dtype, int nd, int64_t a, int64_t b, int64_t d) {
    return add_n(c, name, dtype, nd, a, b, d, true);
}

static src *find_src(ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name)) return &c->t[i];
    return NULL;
}

static void ckpt_free(ckpt *c) {
    for (int i = 0; i < c->n; i++) free(c->t[i].v);
    c->n = 0;
}

static const char *dtype_str(int d) { return d == ST_BF16 ? "BF16" : d == ST_F16 ? "F16" : "F32"; }

/* Writes the tensors of one shard (-1: all) as a safetensors file. */
static void write_safetensors(const char *path, ckpt *c, int shard) {
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (int i = 0; i < c->n; i++) {
        src *t = &c->t[i];
        if (shard >= 0 && t->shard != shard) continue;
        json_t *sh = json_array();
        for (int d = 0; d < t->nd; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        uint64_t nb = (uint64_t)t->n * st_dtype_size(t->dtype);
        json_object_set_new(h, t->name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", dtype_str(t->dtype), "shape", sh, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + nb)));
        off += nb;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
    FILE *f = fopen(path, "wb");
    uint64_t hlen = hl + pad;
    fwrite(&hlen, 8, 1, f);
    fwrite(js, 1, hl, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    for (int i = 0; i < c->n; i++) {
        src *t = &c->t[i];
        if (shard >= 0 && t->shard != shard) continue;
        for (int64_t k = 0; k < t->n; k++) {
            if (t->dtype == ST_F32) fwrite(&t->v[k], 4, 1, f);
            else {
                uint16_t x = t->dtype == ST_BF16 ? f32_to_bf16(t->v[k]) : f32_to_fp16(t->v[k]);
                fwrite(&x, 2, 1, f);
            }
        }
    }
    fclose(f);
    free(js);
    json_decref(h);
}

static void write_json(const char *dir, const char *file, json_t *j) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    json_dump_file(j, p, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
}

static void write_text(const char *dir, const char *file, const char *s) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "wb");
    fputs(s, f);
    fclose(f);
}

/* ---- expected GGUF tensors ------------------------------------------------------------- */

typedef struct expect {
    char name[64];
    int nd;
    int64_t ne[4];
    uint32_t type;
    float *v; /* owned */
    int64_t n;
} expect;

typedef struct expects {
    expect e[400];
    int n;
} expects;

static expect *exp_add(expects *E, const char *name, uint32_t type, int nd, int64_t ne0, int64_t ne1, int64_t ne2) {
    expect *e = &E->e[E->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->type = type;
    e->nd = nd;
    int64_t ne[3] = {ne0, ne1, ne2};
    e->n = 1;
    for (int i = 0; i < nd; i++) e->ne[i] = ne[i], e->n *= ne[i];
    e->v = calloc((size_t)e->n, sizeof(float));
    return e;
}

static void exps_free(expects *E) {
    for (int i = 0; i < E->n; i++) free(E->e[i].v);
    E->n = 0;
}

/* GGUF bytes the expected values must have. */
static uint8_t *encode(const expect *e, size_t *nbytes) {
    size_t rb = ggml_row_size(e->type, e->ne[0]);
    int64_t rows = e->n / e->ne[0];
    uint8_t *b = calloc((size_t)rows, rb);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = e->v + r * e->ne[0];
        uint8_t *o = b + (size_t)r * rb;
        for (int64_t i = 0; i < e->ne[0]; i++) {
            if (e->type == GGML_F32) memcpy(o + 4 * i, &x[i], 4);
            if (e->type == GGML_F16) {
                uint16_t h = f32_to_fp16(x[i]);
                memcpy(o + 2 * i, &h, 2);
            }
            if (e->type == GGML_BF16) {
                uint16_t h = f32_to_bf16(x[i]);
                memcpy(o + 2 * i, &h, 2);
            }
        }
        if (e->type == GGML_Q8_0) quantize_row_q8_0(x, (block_q8_0 *)(void *)o, e->ne[0]);
    }
    *nbytes = (size_t)rows * rb;
    return b;
}

static void check_tensors(const char *path, expects *E, const char *what) {
    lfm2c_error err = {0};
    gguf_file *g = gguf_open(path, &err);
    CHECK(g != NULL, "%s: open %s: %s", what, path, err.msg);
    if (!g) return;
    CHECK(g->n_tensors == (uint64_t)E->n, "%s: %llu tensors, want %d", what, (unsigned long long)g->n_tensors, E->n);
    for (int i = 0; i < E->n; i++) {
        const expect *e = &E->e[i];
        const gguf_tensor *t = gguf_find_tensor(g, e->name);
        CHECK(t != NULL, "%s: tensor %s missing", what, e->name);
        if (!t) continue;
        bool shape_ok = t->n_dims == (uint32_t)e->nd;
        for (int d = 0; d < e->nd && shape_ok; d++) shape_ok = t->ne[d] == e->ne[d];
        CHECK(shape_ok, "%s: %s has %u dims [%lld %lld %lld], want [%lld %lld %lld]", what, e->name, t->n_dims,
              (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)e->ne[0], (long long)e->ne[1],
              (long long)e->ne[2]);
        CHECK(t->type == e->type, "%s: %s type %u, want %u", what, e->name, t->type, e->type);
        if (!shape_ok || t->type != e->type) continue;
        size_t nb;
        uint8_t *want = encode(e, &nb);
        CHECK(t->nbytes == nb && !memcmp(t->data, want, nb), "%s: %s data differs", what, e->name);
        free(want);
    }
    gguf_close(g);
}

static int64_t kv_int(gguf_file *g, const char *k) {
    int64_t v = -12345;
    if (!gguf_get_int(g, k, &v)) return -12345;
    return v;
}

static double kv_f(gguf_file *g, const char *k) {
    double v = NAN;
    gguf_get_float(g, k, &v);
    return v;
}

static bool kv_str_is(gguf_file *g, const char *k, const char *want) {
    char *s = gguf_get_string(g, k);
    bool ok = s && !strcmp(s, want);
    if (!ok) fprintf(stderr, "  %s = '%s', want '%s'\n", k, s ? s : "(absent)", want);
    free(s);
    return ok;
}

static bool kv_arr_str_is(gguf_file *g, const char *k, uint64_t i, const char *want) {
    const gguf_kv *kv = gguf_find(g, k);
    if (!kv || kv->type != GGUF_ARR || kv->arr_type != GGUF_STR || i >= kv->n) return false;
    return kv->strs[i].n == strlen(want) && !memcmp(kv->strs[i].p, want, kv->strs[i].n);
}

static int64_t kv_arr_int(gguf_file *g, const char *k, uint64_t i) {
    const gguf_kv *kv = gguf_find(g, k);
    int64_t v = -12345;
    if (!kv || kv->type != GGUF_ARR || !gguf_arr_int(kv, i, &v)) return -12345;
    return v;
}

/* ---- model A: dense lfm2, BF16, single file, auto-adjusted FFN -------------------------- */

#define H 64
#define NL 4
#define NV 300

static const char *CHAT_JINJA =
    "{{- bos_token -}}{%- for m in messages -%}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endfor -%}";

static void tokenizer_files(const char *dir, bool pair_merges, bool config_template) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        /* GPT-2 byte-to-unicode form of byte b, id 16 + b */
        int cp = b;
        if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)) {
            int k = 0;
            for (int x = 0; x < b; x++)
                if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || x >= 0xae)) k++;
            cp = 256 + k;
        }
        char u[8];
        if (cp < 0x80) u[0] = (char)cp, u[1] = 0;
        else u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), u[2] = 0;
        json_object_set_new(vocab, u, json_integer(16 + b));
    }
    const char *merged[] = {"\xc4\xa0t", "he",
                            "a\xc4\xa0"
                            "bc"};
    for (int i = 0; i < 3; i++) json_object_set_new(vocab, merged[i], json_integer(272 + i));
    for (int i = 275; i < NV; i++) {
        if (i == 298) continue; /* a hole: becomes [PAD298] */
        char s[32];
        snprintf(s, sizeof s, "tok%d", i);
        json_object_set_new(vocab, s, json_integer(i));
    }
    json_t *merges = json_array();
    if (pair_merges) {
        json_array_append_new(merges, json_pack("[s,s]", "\xc4\xa0", "t"));
        json_array_append_new(merges, json_pack("[s,s]", "h", "e"));
        json_array_append_new(merges, json_pack("[s,s]", "a b", "c")); /* space inside a part */
    } else {
        json_array_append_new(merges, json_string("\xc4\xa0 t"));
        json_array_append_new(merges, json_string("h e"));
        json_array_append_new(merges, json_string("a\xc4\xa0"
                                                  "b c"));
    }
    static const char *specials[14] = {"<|pad|>",
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
    json_t *added = json_array();
    for (int i = 0; i < 14; i++)
        json_array_append_new(added,
                              json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", i, "content", specials[i], "single_word",
                                        0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    json_array_append_new(
        added, json_pack("{s:i,s:s,s:b,s:b}", "id", 14, "content", "<think>", "normalized", 0, "special", 0));
    json_array_append_new(
        added, json_pack("{s:i,s:s,s:b,s:b}", "id", 15, "content", "\xe2\x96\x81hi", "normalized", 0, "special", 0));
    json_t *post =
        json_pack("{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:[]}", "type", "TemplateProcessing", "single", "SpecialToken",
                  "id", "<|startoftext|>", "type_id", 0, "Sequence", "id", "A", "type_id", 0, "pair");
    write_json(dir, "tokenizer.json",
               json_pack("{s:s,s:o,s:o,s:{s:s,s:o,s:o,s:b,s:b}}", "version", "1.0", "added_tokens", added,
                         "post_processor", post, "model", "type", "BPE", "vocab", vocab, "merges", merges,
                         "ignore_merges", 1, "byte_fallback", 0));
    json_t *tc = json_pack("{s:b,s:b,s:s,s:s,s:{s:s}}", "add_bos_token", 1, "add_eos_token", 0, "bos_token",
                           "<|startoftext|>", "eos_token", "<|im_end|>", "pad_token", "content", "<|pad|>");
    if (config_template) json_object_set_new(tc, "chat_template", json_string("CONFIG TEMPLATE {{ messages }}"));
    write_json(dir, "tokenizer_config.json", tc);
    write_text(dir, "chat_template.jinja", CHAT_JINJA);
}

static void ckpt_free(ckpt *c);

static void build_dense(ckpt *c, int dtype) {
    ckpt_free(c);
    c->seed = 7;
    char n[160];
    add(c, "model.embed_tokens.weight", dtype, 2, NV, H, 0);
    for (int l = 0; l < NL; l++) {
        bool attn = l == 1 || l == 3;
        snprintf(n, sizeof n, "model.layers.%d.operator_norm.weight", l), add(c, n, dtype, 1, H, 0, 0);
        if (attn) {
            snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", l), add(c, n, dtype, 2, 64, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.k_proj.weight", l), add(c, n, dtype, 2, 32, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.v_proj.weight", l), add(c, n, dtype, 2, 32, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.out_proj.weight", l), add(c, n, dtype, 2, H, 64, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.q_layernorm.weight", l), add(c, n, dtype, 1, 16, 0, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.k_layernorm.weight", l), add(c, n, dtype, 1, 16, 0, 0);
        } else {
            snprintf(n, sizeof n, "model.layers.%d.conv.conv.weight", l), add(c, n, dtype, 3, H, 1, 3);
            snprintf(n, sizeof n, "model.layers.%d.conv.in_proj.weight", l), add(c, n, dtype, 2, 3 * H, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.conv.out_proj.weight", l), add(c, n, dtype, 2, H, H, 0);
        }
        snprintf(n, sizeof n, "model.layers.%d.ffn_norm.weight", l), add(c, n, dtype, 1, H, 0, 0);
        snprintf(n, sizeof n, "model.layers.%d.feed_forward.w1.weight", l), add(c, n, dtype, 2, 192, H, 0);
        snprintf(n, sizeof n, "model.layers.%d.feed_forward.w3.weight", l), add(c, n, dtype, 2, 192, H, 0);
        snprintf(n, sizeof n, "model.layers.%d.feed_forward.w2.weight", l), add(c, n, dtype, 2, H, 192, 0);
    }
    add(c, "model.embedding_norm.weight", dtype, 1, H, 0, 0);
}

/* Copies the values of HF tensor `hf` into expected tensor `g`. */
static void expect_copy(expects *E, ckpt *c, const char *hf, const char *g, uint32_t type) {
    src *s = find_src(c, hf);
    if (!s) {
        CHECK(0, "test bug: no %s", hf);
        return;
    }
    int64_t ne[3] = {1, 1, 1};
    int nd = 0;
    for (int i = s->nd - 1; i >= 0; i--)
        if (!(strstr(hf, "conv.conv") && i == 1)) ne[nd++] = s->shape[i];
    expect *e = exp_add(E, g, type, nd, ne[0], ne[1], ne[2]);
    memcpy(e->v, s->v, (size_t)s->n * sizeof(float));
}

static uint32_t mat_type(uint32_t want, int64_t ne0) { return want == GGML_Q8_0 && ne0 % 32 ? GGML_F16 : want; }

static void expect_dense(expects *E, ckpt *c, uint32_t want) {
    char a[160], b[64];
    expect_copy(E, c, "model.embed_tokens.weight", "token_embd.weight", want);
    expect_copy(E, c, "model.embedding_norm.weight", "token_embd_norm.weight", GGML_F32);
    for (int l = 0; l < NL; l++) {
        bool attn = l == 1 || l == 3;
#define M(hf, g, t) \
    (snprintf(a, sizeof a, "model.layers.%d." hf, l), snprintf(b, sizeof b, "blk.%d." g, l), expect_copy(E, c, a, b, t))
        M("operator_norm.weight", "attn_norm.weight", GGML_F32);
        M("ffn_norm.weight", "ffn_norm.weight", GGML_F32);
        if (attn) {
            M("self_attn.q_proj.weight", "attn_q.weight", want);
            M("self_attn.k_proj.weight", "attn_k.weight", want);
            M("self_attn.v_proj.weight", "attn_v.weight", want);
            M("self_attn.out_proj.weight", "attn_output.weight", want);
            M("self_attn.q_layernorm.weight", "attn_q_norm.weight", GGML_F32);
            M("self_attn.k_layernorm.weight", "attn_k_norm.weight", GGML_F32);
        } else {
            M("conv.conv.weight", "shortconv.conv.weight", GGML_F32);
            M("conv.in_proj.weight", "shortconv.in_proj.weight", want);
            M("conv.out_proj.weight", "shortconv.out_proj.weight", want);
        }
        M("feed_forward.w1.weight", "ffn_gate.weight", want);
        M("feed_forward.w3.weight", "ffn_up.weight", want);
        M("feed_forward.w2.weight", "ffn_down.weight", mat_type(want, 192));
#undef M
    }
}

static json_t *dense_config(void) {
    return json_pack("{s:[s],s:s,s:s,s:b,s:i,s:i,s:f,s:i,s:i,s:i,s:i,s:f,s:[i,i],s:i,s:i,s:i,s:i,s:f,s:b,s:i,s:i}",
                     "architectures", "Lfm2ForCausalLM", "_name_or_path", "LiquidAI/lfm2-tiny-test", "model_type",
                     "lfm2", "block_auto_adjust_ff_dim", 1, "block_dim", H, "block_ff_dim", 200,
                     "block_ffn_dim_multiplier", 1.0, "block_multiple_of", 64, "bos_token_id", 1, "conv_L_cache", 3,
                     "eos_token_id", 7, "norm_eps", 1e-5, "full_attn_idxs", 1, 3, "hidden_size", H,
                     "max_position_embeddings", 4096, "num_attention_heads", 4, "num_hidden_layers", NL, "rope_theta",
                     1000000.0, "tie_embedding", 1, "vocab_size", NV, "num_key_value_heads", 2);
}

static void make_dense_dir(const char *dir, ckpt *c) {
    os_mkdir(dir);
    build_dense(c, ST_BF16);
    char p[2048];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_safetensors(p, c, -1);
    write_json(dir, "config.json", dense_config());
    write_json(dir, "generation_config.json",
               json_pack("{s:i,s:i,s:i,s:f,s:i,s:f,s:f,s:f}", "bos_token_id", 1, "eos_token_id", 7, "pad_token_id", 0,
                         "temperature", 0.3, "top_k", 50, "top_p", 0.9, "min_p", 0.15, "repetition_penalty", 1.05));
    tokenizer_files(dir, true, false);
}

static bool convert(const char *dir, const char *out, uint32_t type, lfm2c_error *err) {
    convert_params p = {.out_type = type, .n_threads = 2};
    convert_stats st;
    memset(err, 0, sizeof *err);
    return convert_hf_to_gguf(dir, out, &p, &st, err);
}

/* Logits of the engine at every position of ids (NULL on failure). */
static float *logits_of(const char *path, const int32_t *ids, int n, bool reference, int *n_vocab) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    mp.reference = reference;
    mp.type_k = mp.type_v = LFM2C_KV_F32; /* compared with the goldens: the F32 cache (F16 is the default) */
    lfm2c_model *m = lfm2c_model_open(path, &mp, &err);
    CHECK(m != NULL, "open %s: %s", path, err.msg);
    if (!m) return NULL;
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session *s = lfm2c_session_new(m, n + 8, &err);
    float *out = s ? malloc(sizeof(float) * (size_t)n * (size_t)V) : NULL;
    if (out && lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_ALL, &err) == 0)
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * V, lfm2c_session_logits(s, i), sizeof(float) * (size_t)V);
    else {
        CHECK(0, "decode %s: %s", path, err.msg);
        free(out);
        out = NULL;
    }
    lfm2c_session_free(s);
    lfm2c_model_free(m);
    *n_vocab = V;
    return out;
}

static void test_dense(const char *root) {
    char dir[1024], out[1024];
    snprintf(dir, sizeof dir, "%s/dense", root);
    static ckpt c;
    make_dense_dir(dir, &c);
    static const uint32_t types[] = {GGML_F16, GGML_Q8_0, GGML_BF16, GGML_F32};
    for (int ti = 0; ti < 4; ti++) {
        snprintf(out, sizeof out, "%s/dense-%d.gguf", root, ti);
        lfm2c_error err;
        bool ok = convert(dir, out, types[ti], &err);
        CHECK(ok, "dense convert type %u: %s", types[ti], err.msg);
        if (!ok) continue;
        static expects E;
        expect_dense(&E, &c, types[ti]);
        check_tensors(out, &E, "dense");
        exps_free(&E);
        if (ti) continue;

        gguf_file *g = gguf_open(out, &err);
        CHECK(g != NULL, "open: %s", err.msg);
        if (!g) continue;
        CHECK(kv_str_is(g, "general.architecture", "lfm2"), "architecture");
        CHECK(kv_str_is(g, "general.type", "model"), "general.type");
        CHECK(kv_str_is(g, "general.name", "Lfm2 Tiny Test"), "general.name");
        CHECK(kv_int(g, "general.file_type") == 1, "file_type %lld", (long long)kv_int(g, "general.file_type"));
        CHECK(kv_int(g, "general.quantization_version") == 2, "quantization_version");
        CHECK(kv_int(g, "lfm2.block_count") == NL, "block_count");
        CHECK(kv_int(g, "lfm2.context_length") == 4096, "context_length");
        CHECK(kv_int(g, "lfm2.embedding_length") == H, "embedding_length");
        /* block_ff_dim 200: floor(400/3) = 133, rounded up to a multiple of 64 = 192 */
        CHECK(kv_int(g, "lfm2.feed_forward_length") == 192, "feed_forward_length %lld",
              (long long)kv_int(g, "lfm2.feed_forward_length"));
        CHECK(kv_int(g, "lfm2.attention.head_count") == 4, "head_count");
        const gguf_kv *hkv = gguf_find(g, "lfm2.attention.head_count_kv");
        CHECK(hkv && hkv->type == GGUF_ARR && hkv->arr_type == GGUF_I32 && hkv->n == NL,
              "head_count_kv is an i32 array");
        for (int l = 0; l < NL; l++)
            CHECK(kv_arr_int(g, "lfm2.attention.head_count_kv", (uint64_t)l) == ((l == 1 || l == 3) ? 2 : 0),
                  "head_count_kv[%d]", l);
        CHECK(kv_f(g, "lfm2.rope.freq_base") == 1000000.0, "rope");
        CHECK(fabs(kv_f(g, "lfm2.attention.layer_norm_rms_epsilon") - 1e-5) < 1e-10, "eps");
        CHECK(kv_int(g, "lfm2.vocab_size") == NV, "vocab_size");
        CHECK(kv_int(g, "lfm2.shortconv.l_cache") == 3, "l_cache");
        CHECK(!gguf_find(g, "lfm2.attention.key_length"), "no key_length without head_dim");
        CHECK(!gguf_find(g, "lfm2.expert_count"), "dense has no expert_count");
        CHECK(!gguf_find_tensor(g, "output.weight"), "tied: no output.weight");
        CHECK(kv_str_is(g, "tokenizer.ggml.model", "gpt2"), "tokenizer model");
        CHECK(kv_str_is(g, "tokenizer.ggml.pre", "lfm2"), "tokenizer pre");
        const gguf_kv *tk = gguf_find(g, "tokenizer.ggml.tokens");
        CHECK(tk && tk->n == NV, "tokens: %llu", tk ? (unsigned long long)tk->n : 0ULL);
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 1, "<|startoftext|>"), "token 1");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 14, "<think>"), "token 14");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 15, " hi"), "token 15: U+2581 -> space");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 16 + 0x20, "\xc4\xa0"), "byte token for space");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 16 + 'A', "A"), "byte token A");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 274,
                            "a\xc4\xa0"
                            "bc"),
              "merged token");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 298, "[PAD298]"), "hole padded");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.tokens", 299, "tok299"), "last token");
        CHECK(kv_arr_int(g, "tokenizer.ggml.token_type", 0) == 3, "pad control");
        CHECK(kv_arr_int(g, "tokenizer.ggml.token_type", 13) == 3, "specials control");
        CHECK(kv_arr_int(g, "tokenizer.ggml.token_type", 14) == 4, "non-special added: user-defined");
        CHECK(kv_arr_int(g, "tokenizer.ggml.token_type", 15) == 4, "non-special added: user-defined");
        CHECK(kv_arr_int(g, "tokenizer.ggml.token_type", 100) == 1, "byte token: normal");
        CHECK(kv_arr_int(g, "tokenizer.ggml.token_type", 298) == 5, "hole: unused");
        CHECK(kv_arr_int(g, "tokenizer.ggml.token_type", 299) == 1, "normal");
        const gguf_kv *mk = gguf_find(g, "tokenizer.ggml.merges");
        CHECK(mk && mk->n == 3, "merges");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.merges", 0, "\xc4\xa0 t"), "merge 0");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.merges", 2,
                            "a\xc4\xa0"
                            "b c"),
              "merge with a space inside a part");
        CHECK(kv_int(g, "tokenizer.ggml.bos_token_id") == 1, "bos");
        CHECK(kv_int(g, "tokenizer.ggml.eos_token_id") == 7, "eos");
        CHECK(kv_int(g, "tokenizer.ggml.padding_token_id") == 0, "pad");
        bool b = false;
        CHECK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) && b, "add_bos");
        CHECK(gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) && !b, "add_eos");
        CHECK(kv_str_is(g, "tokenizer.chat_template", CHAT_JINJA), "chat template from chat_template.jinja");
        CHECK(fabs(kv_f(g, "general.sampling.temp") - 0.3) < 1e-6, "sampling.temp");
        CHECK(kv_int(g, "general.sampling.top_k") == 50, "sampling.top_k");
        CHECK(fabs(kv_f(g, "general.sampling.top_p") - 0.9) < 1e-6, "sampling.top_p");
        CHECK(fabs(kv_f(g, "general.sampling.min_p") - 0.15) < 1e-6, "sampling.min_p");
        CHECK(!gguf_find(g, "general.sampling.penalty_repeat"), "repetition_penalty is not a key the reference reads");
        gguf_close(g);
    }
    /* BF16 weights are exact in a BF16 and an F32 GGUF: the engine must give the same logits */
    static const int32_t ids[] = {1, 20, 50, 100, 272, 14, 299, 7, 33, 200};
    int n = (int)(sizeof ids / sizeof ids[0]), V = 0;
    snprintf(out, sizeof out, "%s/dense-2.gguf", root);
    float *lb = logits_of(out, ids, n, true, &V);
    snprintf(out, sizeof out, "%s/dense-3.gguf", root);
    float *lf = logits_of(out, ids, n, true, &V);
    if (lb && lf) {
        double d = test_maxabs(lb, lf, (size_t)n * (size_t)V);
        CHECK(d <= 1e-4, "dense bf16 vs f32 logits differ by %g", d);
        printf("dense BF16 checkpoint: logits of --type bf16 vs --type f32: max abs %.2e\n", d);
    }
    free(lb);
    free(lf);
    ckpt_free(&c);
}

/* ---- model B/C: lfm2_moe, per-expert (sharded, F16) and fused (F32) layouts -------------- */

#define NE 4
#define FE 48

static void build_moe(ckpt *c, int dtype, bool fused) {
    ckpt_free(c);
    c->seed = 11;
    char n[160];
    add(c, "model.embed_tokens.weight", dtype, 2, NV, H, 0);
    for (int l = 0; l < NL; l++) {
        bool attn = l == 1;
        int shard = l >= 2;
        int first = c->n;
        snprintf(n, sizeof n, "model.layers.%d.operator_norm.weight", l), add(c, n, ST_F32, 1, H, 0, 0);
        if (attn) {
            snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", l), add(c, n, dtype, 2, 64, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.k_proj.weight", l), add(c, n, dtype, 2, 32, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.v_proj.weight", l), add(c, n, dtype, 2, 32, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.out_proj.weight", l), add(c, n, dtype, 2, H, 64, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.q_layernorm.weight", l), add(c, n, ST_F32, 1, 16, 0, 0);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.k_layernorm.weight", l), add(c, n, ST_F32, 1, 16, 0, 0);
        } else {
            snprintf(n, sizeof n, "model.layers.%d.conv.conv.weight", l), add(c, n, dtype, 3, H, 1, 3);
            snprintf(n, sizeof n, "model.layers.%d.conv.in_proj.weight", l), add(c, n, dtype, 2, 3 * H, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.conv.out_proj.weight", l), add(c, n, dtype, 2, H, H, 0);
        }
        snprintf(n, sizeof n, "model.layers.%d.ffn_norm.weight", l), add(c, n, ST_F32, 1, H, 0, 0);
        if (l < 1) {
            snprintf(n, sizeof n, "model.layers.%d.feed_forward.w1.weight", l), add(c, n, dtype, 2, 128, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.feed_forward.w3.weight", l), add(c, n, dtype, 2, 128, H, 0);
            snprintf(n, sizeof n, "model.layers.%d.feed_forward.w2.weight", l), add(c, n, dtype, 2, H, 128, 0);
        } else {
            snprintf(n, sizeof n, "model.layers.%d.feed_forward.gate.weight", l), add(c, n, dtype, 2, NE, H, 0);
            snprintf(n, sizeof n,
                     fused ? "model.layers.%d.feed_forward.expert_bias.weight"
                           : "model.layers.%d.feed_forward.expert_bias",
                     l);
            add(c, n, ST_F32, 1, NE, 0, 0);
            /* per-expert pieces are always generated (same seed sequence for both layouts) */
            for (int e = 0; e < NE; e++)
                for (int w = 1; w <= 3; w++) {
                    snprintf(n, sizeof n, "model.layers.%d.feed_forward.experts.%d.w%d.weight", l, e, w);
                    add(c, n, dtype, 2, w == 2 ? H : FE, w == 2 ? FE : H, 0);
                }
            if (fused) { /* replace the pieces by gate_up_proj [E, 2Fe, H] and down_proj [E, H, Fe] */
                snprintf(n, sizeof n, "model.layers.%d.feed_forward.experts.gate_up_proj", l);
                src *gu = add_n(c, n, dtype, 3, NE, 2 * FE, H, false);
                snprintf(n, sizeof n, "model.layers.%d.feed_forward.experts.down_proj", l);
                src *dn = add_n(c, n, dtype, 3, NE, H, FE, false);
                for (int e = 0; e < NE; e++) {
                    char pn[160];
                    for (int w = 1; w <= 3; w++) {
                        snprintf(pn, sizeof pn, "model.layers.%d.feed_forward.experts.%d.w%d.weight", l, e, w);
                        src *p = find_src(c, pn);
                        float *dst =
                            w == 2 ? dn->v + (size_t)e * H * FE : gu->v + ((size_t)e * 2 * FE + (w == 3 ? FE : 0)) * H;
                        memcpy(dst, p->v, (size_t)p->n * sizeof(float));
                    }
                }
                /* drop the pieces: keep gu, dn at the end of this layer */
                src keep_gu = *gu, keep_dn = *dn;
                int w_ = first;
                for (int i = first; i < c->n - 2; i++) {
                    if (strstr(c->t[i].name, ".experts.") && !strstr(c->t[i].name, "_proj")) {
                        free(c->t[i].v);
                        continue;
                    }
                    c->t[w_++] = c->t[i];
                }
                c->t[w_++] = keep_gu;
                c->t[w_++] = keep_dn;
                c->n = w_;
            }
        }
        for (int i = first; i < c->n; i++) c->t[i].shard = shard;
    }
    src *fn = add(c, "model.embedding_norm.weight", ST_F32, 1, H, 0, 0);
    fn->shard = 1;
}

static void expect_moe(expects *E, ckpt *c, uint32_t want) {
    char a[160], b[64];
    expect_copy(E, c, "model.embed_tokens.weight", "token_embd.weight", want);
    expect_copy(E, c, "model.embedding_norm.weight", "token_embd_norm.weight", GGML_F32);
    for (int l = 0; l < NL; l++) {
#define M(hf, g, t) \
    (snprintf(a, sizeof a, "model.layers.%d." hf, l), snprintf(b, sizeof b, "blk.%d." g, l), expect_copy(E, c, a, b, t))
        M("operator_norm.weight", "attn_norm.weight", GGML_F32);
        M("ffn_norm.weight", "ffn_norm.weight", GGML_F32);
        if (l == 1) {
            M("self_attn.q_proj.weight", "attn_q.weight", want);
            M("self_attn.k_proj.weight", "attn_k.weight", want);
            M("self_attn.v_proj.weight", "attn_v.weight", want);
            M("self_attn.out_proj.weight", "attn_output.weight", want);
            M("self_attn.q_layernorm.weight", "attn_q_norm.weight", GGML_F32);
            M("self_attn.k_layernorm.weight", "attn_k_norm.weight", GGML_F32);
        } else {
            M("conv.conv.weight", "shortconv.conv.weight", GGML_F32);
            M("conv.in_proj.weight", "shortconv.in_proj.weight", want);
            M("conv.out_proj.weight", "shortconv.out_proj.weight", want);
        }
        if (l < 1) {
            M("feed_forward.w1.weight", "ffn_gate.weight", want);
            M("feed_forward.w3.weight", "ffn_up.weight", want);
            M("feed_forward.w2.weight", "ffn_down.weight", want);
            continue;
        }
        M("feed_forward.gate.weight", "ffn_gate_inp.weight", GGML_F32);
        M("feed_forward.expert_bias", "exp_probs_b.bias", GGML_F32);
#undef M
        static const char *gn[3] = {"ffn_gate_exps.weight", "ffn_down_exps.weight", "ffn_up_exps.weight"};
        for (int w = 1; w <= 3; w++) {
            snprintf(b, sizeof b, "blk.%d.%s", l, gn[w - 1]);
            int64_t ne0 = w == 2 ? FE : H, ne1 = w == 2 ? H : FE;
            expect *e = exp_add(E, b, mat_type(want, ne0), 3, ne0, ne1, NE);
            for (int x = 0; x < NE; x++) {
                snprintf(a, sizeof a, "model.layers.%d.feed_forward.experts.%d.w%d.weight", l, x, w);
                src *s = find_src(c, a);
                memcpy(e->v + (size_t)x * ne0 * ne1, s->v, (size_t)s->n * sizeof(float));
            }
        }
    }
}

static json_t *moe_config(void) {
    return json_pack(
        "{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:b,s:b,s:f,s:f,s:f,s:[s,s,s,s],s:i,s:i,s:i}",
        "architectures", "Lfm2MoeForCausalLM", "model_type", "lfm2_moe", "hidden_size", H, "intermediate_size", 128,
        "moe_intermediate_size", FE, "num_hidden_layers", NL, "num_attention_heads", 4, "num_key_value_heads", 2,
        "head_dim", 16, "num_experts", NE, "num_experts_per_tok", 2, "num_dense_layers", 1, "vocab_size", NV,
        "max_position_embeddings", 128000, "conv_L_cache", 3, "norm_topk_prob", 1, "use_expert_bias", 1,
        "routed_scaling_factor", 1.0, "norm_eps", 1e-5, "rope_theta", 1000000.0, "layer_types", "conv",
        "full_attention", "conv", "conv", "bos_token_id", 1, "eos_token_id", 7, "pad_token_id", 0);
}

static void make_moe_dir(const char *dir, ckpt *c, bool fused) {
    os_mkdir(dir);
    char p[1024];
    if (!fused) {
        c->round_to = ST_F16; /* every value F16-representable, also the F32 norms */
        build_moe(c, ST_F16, false);
        c->round_to = 0;
        snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
        write_safetensors(p, c, 0);
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        write_safetensors(p, c, 1);
        json_t *wm = json_object();
        for (int i = 0; i < c->n; i++)
            json_object_set_new(
                wm, c->t[i].name,
                json_string(c->t[i].shard ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors"));
        write_json(dir, "model.safetensors.index.json",
                   json_pack("{s:{s:i},s:o}", "metadata", "total_size", 0, "weight_map", wm));
    } else {
        c->round_to = ST_F16; /* the same values as the sharded checkpoint, stored as F32 */
        build_moe(c, ST_F32, true);
        c->round_to = 0;
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        write_safetensors(p, c, -1);
    }
    write_json(dir, "config.json", moe_config());
    tokenizer_files(dir, false, true);
}

static void test_moe(const char *root) {
    char dir[1024], dirf[1024], out[1024], outf[1024];
    snprintf(dir, sizeof dir, "%s/moe", root);
    snprintf(dirf, sizeof dirf, "%s/moe-fused", root);
    static ckpt c, cf;
    make_moe_dir(dir, &c, false);
    make_moe_dir(dirf, &cf, true);
    static const uint32_t types[] = {GGML_F32, GGML_Q8_0, GGML_F16};
    for (int ti = 0; ti < 3; ti++) {
        lfm2c_error err;
        snprintf(out, sizeof out, "%s/moe-%d.gguf", root, ti);
        bool ok = convert(dir, out, types[ti], &err);
        CHECK(ok, "moe convert: %s", err.msg);
        static expects E;
        if (ok) {
            expect_moe(&E, &c, types[ti]);
            check_tensors(out, &E, "moe sharded per-expert F16");
            exps_free(&E);
        }
        /* the fused F32 checkpoint holds the same values: same tensors expected */
        snprintf(outf, sizeof outf, "%s/moe-fused-%d.gguf", root, ti);
        ok = convert(dirf, outf, types[ti], &err);
        CHECK(ok, "fused moe convert: %s", err.msg);
        if (ok) {
            expect_moe(&E, &c, types[ti]);
            check_tensors(outf, &E, "moe fused F32");
            exps_free(&E);
        }
    }
    lfm2c_error err;
    snprintf(out, sizeof out, "%s/moe-0.gguf", root);
    gguf_file *g = gguf_open(out, &err);
    CHECK(g != NULL, "open: %s", err.msg);
    if (g) {
        CHECK(kv_str_is(g, "general.architecture", "lfm2moe"), "arch");
        CHECK(kv_str_is(g, "general.name", "Moe"), "name from the directory");
        CHECK(kv_int(g, "general.file_type") == 0, "file_type f32");
        CHECK(kv_int(g, "lfm2moe.feed_forward_length") == 128, "moe dense ffn verbatim");
        CHECK(kv_int(g, "lfm2moe.expert_count") == NE, "expert_count");
        CHECK(kv_int(g, "lfm2moe.expert_used_count") == 2, "expert_used_count");
        CHECK(kv_int(g, "lfm2moe.expert_feed_forward_length") == FE, "expert ffn");
        CHECK(kv_int(g, "lfm2moe.leading_dense_block_count") == 1, "leading dense");
        CHECK(kv_int(g, "lfm2moe.expert_gating_func") == 2, "sigmoid gating");
        CHECK(kv_int(g, "lfm2moe.attention.key_length") == 16, "key_length from head_dim");
        CHECK(kv_int(g, "lfm2moe.attention.value_length") == 16, "value_length from head_dim");
        CHECK(kv_int(g, "lfm2moe.context_length") == 128000, "ctx");
        for (int l = 0; l < NL; l++)
            CHECK(kv_arr_int(g, "lfm2moe.attention.head_count_kv", (uint64_t)l) == (l == 1 ? 2 : 0),
                  "head_count_kv[%d]", l);
        CHECK(kv_str_is(g, "tokenizer.chat_template", "CONFIG TEMPLATE {{ messages }}"),
              "tokenizer_config template wins");
        CHECK(kv_arr_str_is(g, "tokenizer.ggml.merges", 2,
                            "a\xc4\xa0"
                            "b c"),
              "string merges kept");
        CHECK(!gguf_find(g, "general.sampling.temp"), "no generation_config: no sampling keys");
        gguf_close(g);
    }
    /* Q8_0: expert down rows (48) are not a multiple of 32 -> F16, as the reference falls back */
    snprintf(out, sizeof out, "%s/moe-1.gguf", root);
    g = gguf_open(out, &err);
    if (g) {
        const gguf_tensor *t = gguf_find_tensor(g, "blk.2.ffn_down_exps.weight");
        CHECK(t && t->type == GGML_F16, "q8_0 fallback to f16");
        t = gguf_find_tensor(g, "blk.2.ffn_up_exps.weight");
        CHECK(t && t->type == GGML_Q8_0, "q8_0 up exps");
        CHECK(kv_int(g, "general.file_type") == 7, "file_type q8_0");
        gguf_close(g);
    }
    ckpt_free(&c);
    ckpt_free(&cf);
}

/* ---- bad inputs ------------------------------------------------------------------------ */

static void expect_fail(const char *dir, const char *root, const char *needle, const char *what) {
    char out[1024], tmp[1100];
    snprintf(out, sizeof out, "%s/bad.gguf", root);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    lfm2c_error err;
    bool ok = convert(dir, out, GGML_F16, &err);
    CHECK(!ok, "%s: conversion should fail", what);
    CHECK(!ok && strstr(err.msg, needle), "%s: message '%s' lacks '%s'", what, err.msg, needle);
    CHECK(access(out, F_OK) != 0 && access(tmp, F_OK) != 0, "%s: output left behind", what);
}

static void test_bad(const char *root) {
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/bad", root);
    static ckpt c;
#define RESET() (os_remove_tree(dir), make_dense_dir(dir, &c))
    RESET();
    snprintf(p, sizeof p, "%s/config.json", dir), unlink(p);
    expect_fail(dir, root, "config.json", "missing config.json");
    RESET();
    snprintf(p, sizeof p, "%s/tokenizer.json", dir), unlink(p);
    expect_fail(dir, root, "tokenizer.json", "missing tokenizer.json");
    RESET();
    snprintf(p, sizeof p, "%s/model.safetensors", dir), unlink(p);
    expect_fail(dir, root, "no model.safetensors", "missing weights");
    expect_fail("/nonexistent/dir", root, "config.json", "missing directory");

    RESET();
    json_t *cfg = dense_config();
    json_object_set_new(cfg, "model_type", json_string("llama"));
    write_json(dir, "config.json", cfg);
    expect_fail(dir, root, "unsupported model_type 'llama'", "unsupported model_type");

    RESET();
    cfg = dense_config();
    json_object_set_new(cfg, "block_ff_dim", json_integer(300)); /* -> 256, tensors are 192 */
    write_json(dir, "config.json", cfg);
    expect_fail(dir, root, "shape mismatch", "ffn width vs tensors");

    RESET();
    cfg = dense_config();
    json_object_set_new(cfg, "full_attn_idxs", json_pack("[i]", 1)); /* layer 3 has attention tensors */
    write_json(dir, "config.json", cfg);
    expect_fail(dir, root, "does not belong in layer 3", "layer plan vs tensors");

    RESET();
    cfg = dense_config();
    json_object_set_new(cfg, "vocab_size", json_integer(512));
    write_json(dir, "config.json", cfg);
    expect_fail(dir, root, "shape mismatch", "vocab vs embedding");

    RESET();
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat sb;
    stat(p, &sb);
    truncate(p, sb.st_size - 100);
    expect_fail(dir, root, "outside the file", "truncated safetensors");
    truncate(p, 20);
    expect_fail(dir, root, "truncated", "truncated header");

    RESET();
    for (int i = 0; i < c.n; i++)
        if (!strcmp(c.t[i].name, "model.layers.2.conv.out_proj.weight")) free(c.t[i].v), c.t[i] = c.t[--c.n];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_safetensors(p, &c, -1);
    expect_fail(dir, root, "missing tensor 'model.layers.2.conv.out_proj.weight'", "missing tensor");

    RESET();
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "r+b");
    fseek(f, 8, SEEK_SET);
    fputs("{\"x\": 5", f); /* corrupt JSON */
    fclose(f);
    expect_fail(dir, root, "bad header JSON", "corrupt header");

    /* sharded: a shard missing */
    os_remove_tree(dir);
    make_moe_dir(dir, &c, false);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir), unlink(p);
    expect_fail(dir, root, "shard 'model-00002-of-00002.safetensors'", "missing shard");
    /* index naming a tensor the shard lacks */
    os_remove_tree(dir);
    make_moe_dir(dir, &c, false);
    json_error_t je;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_t *ix = json_load_file(p, 0, &je);
    json_object_set_new(json_object_get(ix, "weight_map"), "model.layers.9.extra",
                        json_string("model-00001-of-00002.safetensors"));
    write_json(dir, "model.safetensors.index.json", ix);
    expect_fail(dir, root, "model.layers.9.extra", "index lists a tensor the shard lacks");
    /* MoE with an expert missing */
    os_remove_tree(dir);
    os_mkdir(dir);
    build_moe(&c, ST_F32, false);
    for (int i = 0; i < c.n; i++)
        if (!strcmp(c.t[i].name, "model.layers.3.feed_forward.experts.2.w3.weight"))
            free(c.t[i].v), c.t[i] = c.t[--c.n];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_safetensors(p, &c, -1);
    write_json(dir, "config.json", moe_config());
    tokenizer_files(dir, false, false);
    expect_fail(dir, root, "layer 3 has 11 of the 12 per-expert matrices", "missing expert");

    CHECK(convert_parse_type("q4_0") < 0 && convert_parse_type("F16") == GGML_F16 &&
              convert_parse_type("q8_0") == GGML_Q8_0,
          "type names");
    ckpt_free(&c);
#undef RESET
}

/* ---- round trip from the F32 fixtures --------------------------------------------------- */

/* Writes the HF checkpoint a fixture GGUF came from (names / layouts of spec section 3). */
static bool fixture_to_hf(const char *gguf_path, const char *dir) {
    lfm2c_error err;
    gguf_file *g = gguf_open(gguf_path, &err);
    if (!g) return false;
    os_mkdir(dir);
    char *arch = gguf_get_string(g, "general.architecture");
    bool moe = !strcmp(arch, "lfm2moe");
    char k[128];
#define AK(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    int64_t nl = kv_int(g, AK("block_count")), n_dense = moe ? kv_int(g, AK("leading_dense_block_count")) : nl;
    int64_t n_exp = moe ? kv_int(g, AK("expert_count")) : 0;
    static ckpt c;
    c.n = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        char hf[160] = "";
        int l = -1, nc = 0;
        const char *rest = "";
        if (sscanf(t->name, "blk.%d.%n", &l, &nc) == 1) rest = t->name + nc;
        static const char *map[][2] = {
            {"attn_norm.weight", "operator_norm.weight"},
            {"ffn_norm.weight", "ffn_norm.weight"},
            {"shortconv.in_proj.weight", "conv.in_proj.weight"},
            {"shortconv.conv.weight", "conv.conv.weight"},
            {"shortconv.out_proj.weight", "conv.out_proj.weight"},
            {"attn_q.weight", "self_attn.q_proj.weight"},
            {"attn_k.weight", "self_attn.k_proj.weight"},
            {"attn_v.weight", "self_attn.v_proj.weight"},
            {"attn_output.weight", "self_attn.out_proj.weight"},
            {"attn_q_norm.weight", "self_attn.q_layernorm.weight"},
            {"attn_k_norm.weight", "self_attn.k_layernorm.weight"},
            {"ffn_gate.weight", "feed_forward.w1.weight"},
            {"ffn_up.weight", "feed_forward.w3.weight"},
            {"ffn_down.weight", "feed_forward.w2.weight"},
            {"ffn_gate_inp.weight", "feed_forward.gate.weight"},
            {"exp_probs_b.bias", "feed_forward.expert_bias"},
        };
        int64_t shape[4], nd = t->n_dims;
        for (int d = 0; d < (int)nd; d++) shape[d] = t->ne[nd - 1 - d];
        if (!strcmp(t->name, "token_embd.weight")) snprintf(hf, sizeof hf, "model.embed_tokens.weight");
        else if (!strcmp(t->name, "token_embd_norm.weight")) snprintf(hf, sizeof hf, "model.embedding_norm.weight");
        else if (strstr(rest, "_exps.weight")) {
            int w = strstr(rest, "gate") ? 1 : strstr(rest, "down") ? 2 : 3;
            int64_t per = t->ne[0] * t->ne[1];
            for (int64_t e = 0; e < n_exp; e++) {
                char pn[160];
                snprintf(pn, sizeof pn, "model.layers.%d.feed_forward.experts.%lld.w%d.weight", l, (long long)e, w);
                src *s = add(&c, pn, ST_F32, 2, t->ne[1], t->ne[0], 0);
                memcpy(s->v, (const float *)(const void *)t->data + e * per, (size_t)per * 4);
            }
            continue;
        } else
            for (size_t m = 0; m < sizeof map / sizeof map[0]; m++)
                if (!strcmp(rest, map[m][0])) snprintf(hf, sizeof hf, "model.layers.%d.%s", l, map[m][1]);
        if (!hf[0]) {
            gguf_close(g);
            free(arch);
            return false;
        }
        bool conv = strstr(hf, "conv.conv") != NULL;
        src *s = add(&c, hf, ST_F32, conv ? 3 : (int)nd, shape[0], conv ? 1 : shape[1], conv ? shape[1] : shape[2]);
        memcpy(s->v, t->data, (size_t)t->nbytes);
    }
    char p[2048];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_safetensors(p, &c, -1);
    ckpt_free(&c);

    json_t *lt = json_array();
    for (int64_t l = 0; l < nl; l++)
        json_array_append_new(
            lt, json_string(kv_arr_int(g, AK("attention.head_count_kv"), (uint64_t)l) ? "full_attention" : "conv"));
    int64_t nkv = 0;
    for (int64_t l = 0; l < nl; l++)
        if (kv_arr_int(g, AK("attention.head_count_kv"), (uint64_t)l) > nkv)
            nkv = kv_arr_int(g, AK("attention.head_count_kv"), (uint64_t)l);
    json_t *cfg = json_pack(
        "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:I,s:o,s:b}", "model_type", moe ? "lfm2_moe" : "lfm2", "hidden_size",
        (json_int_t)kv_int(g, AK("embedding_length")), "num_hidden_layers", (json_int_t)nl, "num_attention_heads",
        (json_int_t)kv_int(g, AK("attention.head_count")), "num_key_value_heads", (json_int_t)nkv,
        "max_position_embeddings", (json_int_t)kv_int(g, AK("context_length")), "vocab_size",
        (json_int_t)kv_int(g, AK("vocab_size")), "conv_L_cache", (json_int_t)kv_int(g, AK("shortconv.l_cache")),
        "norm_eps", 1e-5, "rope_theta", kv_f(g, AK("rope.freq_base")), moe ? "intermediate_size" : "block_ff_dim",
        (json_int_t)kv_int(g, AK("feed_forward_length")), "layer_types", lt, "tie_word_embeddings", 1);
    if (moe) {
        json_object_set_new(cfg, "num_experts", json_integer(n_exp));
        json_object_set_new(cfg, "num_experts_per_tok", json_integer(kv_int(g, AK("expert_used_count"))));
        json_object_set_new(cfg, "moe_intermediate_size", json_integer(kv_int(g, AK("expert_feed_forward_length"))));
        json_object_set_new(cfg, "num_dense_layers", json_integer(n_dense));
    } else json_object_set_new(cfg, "block_auto_adjust_ff_dim", json_false());
    write_json(dir, "config.json", cfg);

    const gguf_kv *tk = gguf_find(g, "tokenizer.ggml.tokens"), *mk = gguf_find(g, "tokenizer.ggml.merges");
    json_t *vocab = json_object(), *added = json_array(), *merges = json_array();
    for (uint64_t i = 0; i < tk->n; i++) {
        char *s = strndup(tk->strs[i].p, tk->strs[i].n);
        if (kv_arr_int(g, "tokenizer.ggml.token_type", i) == 3)
            json_array_append_new(added, json_pack("{s:I,s:s,s:b,s:b}", "id", (json_int_t)i, "content", s, "normalized",
                                                   0, "special", 1));
        json_object_set_new(vocab, s, json_integer((json_int_t)i));
        free(s);
    }
    for (uint64_t i = 0; i < mk->n; i++) json_array_append_new(merges, json_stringn(mk->strs[i].p, mk->strs[i].n));
    write_json(dir, "tokenizer.json",
               json_pack("{s:o,s:{s:s,s:o,s:o}}", "added_tokens", added, "model", "type", "BPE", "vocab", vocab,
                         "merges", merges));
    const char *bos = NULL, *eos = NULL, *pad = NULL;
    int64_t ib = kv_int(g, "tokenizer.ggml.bos_token_id"), ie = kv_int(g, "tokenizer.ggml.eos_token_id"),
            ip = kv_int(g, "tokenizer.ggml.padding_token_id");
    char *sb = strndup(tk->strs[ib].p, tk->strs[ib].n), *se = strndup(tk->strs[ie].p, tk->strs[ie].n),
         *sp = strndup(tk->strs[ip].p, tk->strs[ip].n);
    bos = sb, eos = se, pad = sp;
    bool add_bos = false, add_eos = false;
    gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos);
    write_json(dir, "tokenizer_config.json",
               json_pack("{s:b,s:b,s:s,s:s,s:s}", "add_bos_token", add_bos, "add_eos_token", add_eos, "bos_token", bos,
                         "eos_token", eos, "pad_token", pad));
    free(sb), free(se), free(sp);
    char *tmpl = gguf_get_string(g, "tokenizer.chat_template");
    write_text(dir, "chat_template.jinja", tmpl);
    free(tmpl);
#undef AK
    free(arch);
    gguf_close(g);
    return true;
}

/* Every key of the fixture but general.name / description must come back byte for byte. */
static void compare_to_fixture(const char *fixture, const char *out) {
    lfm2c_error err;
    gguf_file *a = gguf_open(fixture, &err), *b = gguf_open(out, &err);
    CHECK(a && b, "open %s / %s: %s", fixture, out, err.msg);
    if (!a || !b) {
        gguf_close(a);
        gguf_close(b);
        return;
    }
    for (uint64_t i = 0; i < a->n_kv; i++) {
        const gguf_kv *ka = &a->kv[i];
        if (!strcmp(ka->key, "general.name") || !strcmp(ka->key, "general.description")) continue;
        const gguf_kv *kb = gguf_find(b, ka->key);
        CHECK(kb != NULL, "%s: key %s missing", out, ka->key);
        if (!kb) continue;
        bool same = ka->type == kb->type && ka->arr_type == kb->arr_type && ka->n == kb->n;
        if (same && (ka->type == GGUF_STR || (ka->type == GGUF_ARR && ka->arr_type == GGUF_STR))) {
            for (uint64_t j = 0; j < ka->n && same; j++)
                same = ka->strs[j].n == kb->strs[j].n && !memcmp(ka->strs[j].p, kb->strs[j].p, ka->strs[j].n);
        } else if (same) {
            size_t es = gguf_vtype_size(ka->type == GGUF_ARR ? ka->arr_type : ka->type);
            size_t off = ka->type == GGUF_ARR ? 0 : 0;
            same = !memcmp(ka->data + off, kb->data + off, es * ka->n);
        }
        CHECK(same, "%s: key %s differs from the fixture", out, ka->key);
    }
    CHECK(a->n_tensors == b->n_tensors, "%s: tensor count", out);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const gguf_tensor *ta = &a->tensors[i], *tb = gguf_find_tensor(b, ta->name);
        CHECK(tb != NULL, "%s: tensor %s missing", out, ta->name);
        if (!tb) continue;
        bool same = ta->n_dims == tb->n_dims && ta->type == tb->type && ta->nbytes == tb->nbytes;
        for (uint32_t d = 0; d < ta->n_dims && same; d++) same = ta->ne[d] == tb->ne[d];
        CHECK(same && !memcmp(ta->data, tb->data, ta->nbytes), "%s: tensor %s differs from the fixture", out, ta->name);
    }
    gguf_close(a);
    gguf_close(b);
}

/* HF dir -> convert -> engine: --type f32 reproduces the reference goldens; f16 / q8_0 are
 * measured against the f32 conversion. */
static void check_fixture_logits(const char *name, const char *root) {
    char path[1100], gj[256], gl[256];
    snprintf(gj, sizeof gj, DATA("%s.golden.json"), name);
    snprintf(gl, sizeof gl, DATA("%s.golden.logits.f32.bin"), name);
    json_error_t je;
    json_t *g = json_load_file(gj, 0, &je);
    CHECK(g != NULL, "%s: %s", gj, je.text);
    if (!g) return;
    json_t *jids = json_object_get(g, "token_ids");
    int n = (int)json_array_size(jids), V = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
    json_decref(g);
    size_t ng = 0;
    float *golden = test_read_file(gl, &ng);
    snprintf(path, sizeof path, "%s/%s.gguf", root, name);
    float *l32 = logits_of(path, ids, n, false, &V);
    if (golden && l32 && ng == sizeof(float) * (size_t)n * (size_t)V) {
        double d = test_maxabs(l32, golden, (size_t)n * (size_t)V);
        CHECK(d <= 1e-3, "%s: converted --type f32 logits vs golden: %g", name, d);
        printf("%-20s converted f32 vs llama.cpp golden: max abs %.2e\n", name, d);
    } else CHECK(0, "%s: golden logits unreadable or wrong size", name);
    static const struct {
        uint32_t type;
        const char *label;
        double limit;
    } T[] = {/* random-weight fixtures amplify weight rounding (tests/data/README.md): loose bounds
         * that a wrong layout (errors ~ the logits themselves, 10-20) still fails */
             {GGML_F16, "f16", 0.25},
             {GGML_BF16, "bf16", 1.0},
             {GGML_Q8_0, "q8_0", 10.0}};
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    for (size_t k = 0; k < sizeof T / sizeof T[0] && l32; k++) {
        snprintf(path, sizeof path, "%s/%s-%s.gguf", root, name, T[k].label);
        lfm2c_error err;
        if (!convert(dir, path, T[k].type, &err)) {
            CHECK(0, "convert %s: %s", path, err.msg);
            continue;
        }
        float *lq = logits_of(path, ids, n, true, &V); /* float activations: the weights' own error */
        if (!lq) continue;
        double d = test_maxabs(lq, l32, (size_t)n * (size_t)V);
        int agree = 0;
        for (int i = 0; i < n; i++) {
            const float *a = lq + (size_t)i * V, *b = l32 + (size_t)i * V;
            int ia = 0, ib = 0;
            for (int v = 1; v < V; v++) ia = a[v] > a[ia] ? v : ia, ib = b[v] > b[ib] ? v : ib;
            agree += ia == ib;
        }
        CHECK(d <= T[k].limit, "%s: %s logits vs f32: %g", name, T[k].label, d);
        CHECK(T[k].type == GGML_Q8_0 || agree == n, "%s: %s top-1 agrees at %d/%d", name, T[k].label, agree, n);
        printf("%-20s converted %-4s vs f32: max abs %.3e, top-1 agrees at %d/%d positions\n", name, T[k].label, d,
               agree, n);
        free(lq);
    }
    free(l32);
    free(golden);
    free(ids);
}

static void test_fixtures(const char *root) {
    static const char *names[] = {"lfm2-tiny-dense-f32", "lfm2-tiny-moe-f32"};
    for (int i = 0; i < 2; i++) {
        char fx[256], dir[1024], out[1100];
        snprintf(fx, sizeof fx, DATA("%s.gguf"), names[i]);
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        CHECK(fixture_to_hf(fx, dir), "rebuild HF checkpoint from %s", fx);
        snprintf(out, sizeof out, "%s/%s.gguf", root, names[i]);
        lfm2c_error err;
        bool ok = convert(dir, out, GGML_F32, &err);
        CHECK(ok, "convert %s: %s", dir, err.msg);
        if (ok) compare_to_fixture(fx, out);
        check_fixture_logits(names[i], root);
        /* --type q8_0 gives what llama-quantize made of the same F32 master */
        char fq[256];
        snprintf(fq, sizeof fq, DATA("%.*s-q8_0.gguf"), (int)strlen(names[i]) - 4, names[i]);
        snprintf(out, sizeof out, "%s/%s-q8_0.gguf", root, names[i]);
        ok = convert(dir, out, GGML_Q8_0, &err);
        CHECK(ok, "convert %s: %s", dir, err.msg);
        if (ok) compare_to_fixture(fq, out);
    }
}

/* ---- safetensors reader on its own ------------------------------------------------------ */

static void test_reader(const char *root) {
    char p[1024];
    snprintf(p, sizeof p, "%s/one.safetensors", root);
    static ckpt c;
    c.n = 0;
    c.seed = 3;
    src *a = add(&c, "a", ST_BF16, 2, 3, 5, 0);
    src *b = add(&c, "b", ST_F16, 1, 7, 0, 0);
    src *d = add(&c, "d", ST_F32, 3, 2, 1, 4);
    write_safetensors(p, &c, -1);
    lfm2c_error err;
    st_model *m = st_open_file(p, &err);
    CHECK(m != NULL, "open: %s", err.msg);
    if (m) {
        CHECK(m->n_tensors == 3, "3 tensors");
        const st_tensor *ta = st_find(m, "a"), *tb = st_find(m, "b"), *td = st_find(m, "d");
        CHECK(ta && ta->dtype == ST_BF16 && ta->n_dims == 2 && ta->shape[0] == 3 && ta->shape[1] == 5, "a");
        CHECK(td && td->n_dims == 3 && td->numel == 8, "d");
        float buf[16];
        if (ta) {
            st_read_f32(ta, 0, 15, buf);
            CHECK(!memcmp(buf, a->v, 15 * 4), "bf16 values");
        }
        if (tb) {
            st_read_f32(tb, 2, 5, buf);
            CHECK(!memcmp(buf, b->v + 2, 5 * 4), "f16 values");
        }
        if (td) {
            st_read_f32(td, 0, 8, buf);
            CHECK(!memcmp(buf, d->v, 8 * 4), "f32 values");
        }
        st_close(m);
    }
    ckpt_free(&c);
    /* hand-made headers */
    static const char *bad[][2] = {
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "do not match"},
        {"{\"t\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}", "unknown dtype"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "bad shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "outside"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", "data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"u\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[2,6]}}",
         "overlap"},
        {"[1,2]", "not a JSON object"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"t\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[4,8]}}",
         "bad header JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(p, "wb");
        uint64_t n = strlen(bad[i][0]);
        fwrite(&n, 8, 1, f);
        fputs(bad[i][0], f);
        for (int k = 0; k < 8; k++) fputc(0, f);
        fclose(f);
        m = st_open_file(p, &err);
        CHECK(!m && strstr(err.msg, bad[i][1]), "header %zu: '%s' lacks '%s'", i, m ? "(opened)" : err.msg, bad[i][1]);
        st_close(m);
    }
    FILE *f = fopen(p, "wb");
    uint64_t huge = 1ull << 40;
    fwrite(&huge, 8, 1, f);
    fclose(f);
    m = st_open_file(p, &err);
    CHECK(!m && strstr(err.msg, "header length"), "huge header length: %s", err.msg);
    st_close(m);
}

int main(void) {
    char root[] = "/tmp/lfm2c-convert-XXXXXX";
    if (!os_mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_reader(root);
    test_dense(root);
    test_moe(root);
    test_bad(root);
    test_fixtures(root);
    if (getenv("LFM2C_KEEP_TMP")) fprintf(stderr, "kept %s\n", root);
    else if (os_remove_tree(root) != 0) fprintf(stderr, "could not remove %s\n", root);
    TEST_MAIN_END();
}
