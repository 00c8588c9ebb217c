/* test_quantize.c — the quantizer reproduces the reference quantizer byte for byte:
 * (a) tiny F32 masters -> Q8_0 / Q4_0 equal the shipped quantized fixtures tensor for tensor;
 * (b) the F16 kq masters -> every type of lfm2-kq-masters.quant-ref.json: per-tensor types,
 *     shapes and sha256 as recorded (on a mismatch both RMS errors are printed);
 * (c) requantizing a quantized input, and bad inputs leave no output;
 * (d) synth of a tiny preset opens and has the expected tensors, types and metadata;
 * (e) quantize makes exactly the types the type table says it does;
 * (f) the block quantizers of the K, legacy, IQ4 and grid types, with and without importance
 *     weights, on two synthetic inputs, equal ggml's quantize_* (data/quant/blocks.sha256). */
#include "formats/gguf.h"
#include "formats/ggml_types.h"
#include "convert/quantize.h"
#include "convert/quantize_file.h"
#include "base/sha256.h"
#include "convert/synth.h"
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------------------------- */

static char tmp_out[128];

static bool exists(const char *p) { return access(p, F_OK) == 0; }

/* Same tensor names, types, shapes and data bytes. Returns the number of differing tensors. */
static int compare_tensors(const char *a_path, const char *b_path) {
    lfm2c_error err = {0};
    gguf_file *a = gguf_open(a_path, &err), *b = a ? gguf_open(b_path, &err) : NULL;
    CHECK(a && b, "open %s / %s: %s", a_path, b_path, err.msg);
    if (!a || !b) {
        gguf_close(a);
        return -1;
    }
    int bad = 0;
    CHECK(a->n_tensors == b->n_tensors, "%s: %llu tensors vs %llu", a_path, (unsigned long long)a->n_tensors,
          (unsigned long long)b->n_tensors);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const gguf_tensor *x = &a->tensors[i], *y = gguf_find_tensor(b, x->name);
        bool same = y && x->type == y->type && x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, sizeof x->ne) &&
                    x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
        if (!same) {
            bad++;
            fprintf(stderr, "  differs: %s\n", x->name);
        }
    }
    gguf_close(a);
    gguf_close(b);
    return bad;
}

static void tiny_masters(void) {
    const char *models[2] = {"tiny-dense", "tiny-moe"}, *types[2] = {"Q8_0", "Q4_0"};
    for (int m = 0; m < 2; m++)
        for (int t = 0; t < 2; t++) {
            char in[128], ref[128], lower[8];
            snprintf(in, sizeof in, DATA("lfm2-%s-f32.gguf"), models[m]);
            for (int i = 0; i < 5; i++) lower[i] = (char)(types[t][i] == 'Q' ? 'q' : types[t][i]);
            snprintf(ref, sizeof ref, DATA("lfm2-%s-%s.gguf"), models[m], lower);
            lfm2c_error err = {0};
            quantize_file_params p = {.n_threads = 2};
            bool ok = quantize_file(in, tmp_out, quant_ftype_find(types[t]), &p, NULL, &err);
            CHECK(ok, "quantize %s %s: %s", in, types[t], err.msg);
            if (!ok) continue;
            int bad = compare_tensors(tmp_out, ref);
            CHECK(bad == 0, "%s %s: %d tensors differ from the shipped file", models[m], types[t], bad);
            /* the whole file, metadata included, is the reference's */
            size_t na = 0, nb = 1;
            char *a = test_read_file(tmp_out, &na), *b = test_read_file(ref, &nb);
            CHECK(a && b && na == nb && !memcmp(a, b, na), "%s %s: file bytes differ from the reference", models[m],
                  types[t]);
            free(a);
            free(b);
        }
}

/* (b) one master against every type recorded for it */
static void kq_master(json_t *root, const char *key, const char *path) {
    json_t *q = json_object_get(json_object_get(json_object_get(root, "masters"), key), "quantized");
    CHECK(json_is_object(q), "%s in quant-ref.json", key);
    const char *tname;
    json_t *tv;
    json_object_foreach(q, tname, tv) {
        const quant_ftype *ft = quant_ftype_find(tname);
        CHECK(ft != NULL, "type %s known", tname);
        if (!ft) continue;
        lfm2c_error err = {0};
        quantize_file_params p = {.n_threads = 2, .stats = true};
        quantize_report rep;
        bool ok = quantize_file(path, tmp_out, ft, &p, &rep, &err);
        CHECK(ok, "%s -> %s: %s", key, tname, err.msg);
        if (!ok) continue;
        gguf_file *g = gguf_open(tmp_out, &err);
        CHECK(g != NULL, "open output: %s", err.msg);
        json_t *tensors = json_object_get(tv, "tensors");
        size_t idx, match = 0, n = json_array_size(tensors);
        json_t *t;
        json_array_foreach(tensors, idx, t) {
            const char *name = json_string_value(json_object_get(t, "name"));
            const char *type = json_string_value(json_object_get(t, "type"));
            const char *sha = json_string_value(json_object_get(t, "sha256"));
            json_t *ne = json_object_get(t, "ne");
            const gguf_tensor *x = g && name ? gguf_find_tensor(g, name) : NULL;
            if (!x || !type || !sha) {
                CHECK(false, "%s %s: tensor %s missing", key, tname, name ? name : "?");
                continue;
            }
            bool shape = json_array_size(ne) == x->n_dims;
            for (size_t d = 0; shape && d < x->n_dims; d++)
                shape = json_integer_value(json_array_get(ne, d)) == x->ne[d];
            char hex[65];
            sha256_hex(x->data, x->nbytes, hex);
            bool same = !strcmp(ggml_type_get(x->type)->name, type) && shape && !strcmp(hex, sha);
            if (same) {
                match++;
                continue;
            }
            double ours = -1;
            for (int k = 0; k < rep.n_tensors; k++)
                if (!strcmp(rep.tensors[k].name, name)) ours = rep.tensors[k].rms_err;
            fprintf(stderr, "  %s %s %s: type %s (ref %s), rms err %.6g (ref %.6g)\n", key, tname, name,
                    ggml_type_get(x->type)->name, type, ours, json_real_value(json_object_get(t, "rms_err_vs_master")));
        }
        printf("%s %-6s: %zu/%zu tensors identical to the reference\n", key, tname, match, n);
        CHECK(match == n && n == g->n_tensors, "%s %s: %zu/%zu tensors match", key, tname, match, n);
        /* RMS errors agree with the reference's for matched tensors */
        json_array_foreach(tensors, idx, t) {
            json_t *r = json_object_get(t, "rms_err_vs_master");
            if (!json_is_number(r)) continue;
            const char *name = json_string_value(json_object_get(t, "name"));
            for (int k = 0; k < rep.n_tensors; k++)
                if (!strcmp(rep.tensors[k].name, name))
                    CHECK(fabs(rep.tensors[k].rms_err - json_number_value(r)) <= 1e-6 * json_number_value(r) + 1e-12,
                          "%s %s %s: rms %.9g vs ref %.9g", key, tname, name, rep.tensors[k].rms_err,
                          json_number_value(r));
        }
        quantize_report_free(&rep);
        gguf_close(g);
    }
}

static void kq_masters(void) {
    json_error_t je;
    json_t *root = json_load_file(DATA("lfm2-kq-masters.quant-ref.json"), 0, &je);
    CHECK(root != NULL, "quant-ref.json: %s", je.text);
    if (!root) return;
    kq_master(root, "lfm2-kq-dense-f16.gguf", DATA("lfm2-kq-dense-f16.gguf"));
    char moe[128], cmd[300];
    snprintf(moe, sizeof moe, "/tmp/lfm2c_test_q_%d_moe.gguf", (int)getpid());
    snprintf(cmd, sizeof cmd, "gzip -dc %s > %s", DATA("lfm2-kq-moe-f16.gguf.gz"), moe);
    CHECK(system(cmd) == 0, "gunzip the MoE master");
    kq_master(root, "lfm2-kq-moe-f16.gguf", moe);
    unlink(moe);
    json_decref(root);
}

/* (c) quantized input, bad inputs */
static void requantize_and_errors(void) {
    lfm2c_error err = {0};
    quantize_report rep;
    quantize_file_params p = {.n_threads = 1, .stats = true};
    bool ok = quantize_file(DATA("lfm2-tiny-moe-q8_0.gguf"), tmp_out, quant_ftype_find("q4_k_m"), &p, &rep, &err);
    CHECK(ok, "requantize Q8_0 -> Q4_K_M: %s", err.msg);
    if (ok) {
        int converted = 0;
        for (int i = 0; i < rep.n_tensors; i++) {
            const quantize_tensor_report *t = &rep.tensors[i];
            converted += t->converted;
            /* rows of 64: K-quants fall back to Q5_0 (Q4_K) / Q8_0 (Q6_K) */
            CHECK(t->type_out != GGML_Q4_K && t->type_out != GGML_Q6_K, "%s: fallback expected", t->name);
            if (t->converted) CHECK(t->rms_err > 0 && t->rms_err < 0.05, "%s rms %g", t->name, t->rms_err);
        }
        CHECK(converted > 0, "some tensors converted");
        quantize_report_free(&rep);
    }
    /* truncated input */
    size_t n;
    char *buf = test_read_file(DATA("lfm2-tiny-dense-f32.gguf"), &n);
    char trunc[128];
    snprintf(trunc, sizeof trunc, "/tmp/lfm2c_test_q_%d_trunc.gguf", (int)getpid());
    FILE *f = fopen(trunc, "wb");
    if (f && buf) {
        fwrite(buf, 1, n / 2, f);
        fclose(f);
    }
    free(buf);
    unlink(tmp_out);
    ok = quantize_file(trunc, tmp_out, quant_ftype_find("q8_0"), &p, NULL, &err);
    CHECK(!ok && err.msg[0], "truncated input rejected");
    CHECK(!exists(tmp_out), "no output after a failure");
    unlink(trunc);
    ok = quantize_file("/nonexistent.gguf", tmp_out, quant_ftype_find("q8_0"), &p, NULL, &err);
    CHECK(!ok && err.code == LFM2C_EIO, "missing input: %s", err.msg);
    CHECK(quant_ftype_find("q4_k_m") && quant_ftype_find("Q5_K_S") && quant_ftype_find("bf16"),
          "names case-insensitive");
    CHECK(!quant_ftype_find("q3_x"), "unknown type");
    /* the recipe's rules */
    CHECK(quant_tensor_order_cmp("token_embd.weight", "blk.0.attn_norm.weight") < 0, "non-layer tensors first");
    CHECK(quant_tensor_order_cmp("blk.2.x", "blk.10.a") < 0, "layers numerically");
}

/* (d) synth: tiny MoE and dense models */
static void synth_tiny(void) {
    synth_config c;
    CHECK(synth_preset("LFM2-24B-A2B", &c), "24B preset");
    CHECK(c.hidden == 2048 && c.n_layer == 40 && c.n_attn == 10 && c.attn_layers[9] == 38 && c.n_expert == 64 &&
              c.n_expert_used == 4 && c.expert_ff == 1536 && c.n_dense == 2 && c.ff == 11776 && c.vocab == 65536,
          "24B preset values");
    CHECK(!synth_preset("lfm2-99b", &c), "unknown preset");
    /* 8B architecture scaled down */
    synth_preset("lfm2-8b-a1b", &c);
    c.hidden = 256;
    c.n_layer = 6;
    c.n_attn = 2;
    c.attn_layers[0] = 2;
    c.attn_layers[1] = 5;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.ff = 512;
    c.n_expert = 8;
    c.n_expert_used = 2;
    c.expert_ff = 256;
    c.vocab = 8192;
    lfm2c_error err = {0};
    synth_params p = {.seed = 7, .n_threads = 2};
    synth_report rep;
    bool ok = synth_write(&c, quant_ftype_find("q4_k_m"), &p, tmp_out, &rep, &err);
    CHECK(ok, "synth: %s", err.msg);
    gguf_file *g = ok ? gguf_open(tmp_out, &err) : NULL;
    CHECK(g != NULL, "synth output opens: %s", err.msg);
    if (g) {
        /* the layout of the reference's Q4_K_M of the same architecture (the kq-moe fixture) */
        gguf_file *ref = gguf_open(DATA("lfm2-kq-moe-q4_k_m.gguf"), &err);
        CHECK(ref && ref->n_tensors == g->n_tensors, "tensor count");
        for (uint64_t i = 0; ref && i < ref->n_tensors; i++) {
            const gguf_tensor *x = &ref->tensors[i], *y = gguf_find_tensor(g, x->name);
            CHECK(y && y->type == x->type && !memcmp(y->ne, x->ne, sizeof x->ne), "synth tensor %s like the reference",
                  x->name);
            CHECK(y && !strcmp(y->name, g->tensors[i].name), "same order at %llu", (unsigned long long)i);
        }
        static const char *keys[] = {"general.architecture",
                                     "general.file_type",
                                     "lfm2moe.context_length",
                                     "lfm2moe.embedding_length",
                                     "lfm2moe.block_count",
                                     "lfm2moe.feed_forward_length",
                                     "lfm2moe.attention.head_count",
                                     "lfm2moe.attention.head_count_kv",
                                     "lfm2moe.attention.layer_norm_rms_epsilon",
                                     "lfm2moe.rope.freq_base",
                                     "lfm2moe.shortconv.l_cache",
                                     "lfm2moe.vocab_size",
                                     "lfm2moe.expert_count",
                                     "lfm2moe.expert_used_count",
                                     "lfm2moe.expert_feed_forward_length",
                                     "lfm2moe.leading_dense_block_count",
                                     "lfm2moe.expert_gating_func",
                                     "tokenizer.ggml.model",
                                     "tokenizer.ggml.pre",
                                     "tokenizer.ggml.tokens",
                                     "tokenizer.ggml.token_type",
                                     "tokenizer.ggml.merges",
                                     "tokenizer.ggml.bos_token_id",
                                     "tokenizer.ggml.eos_token_id",
                                     "tokenizer.ggml.padding_token_id",
                                     "tokenizer.ggml.add_bos_token",
                                     "tokenizer.chat_template"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            CHECK(gguf_find(g, keys[k]) != NULL, "key %s", keys[k]);
        int64_t v;
        CHECK(gguf_get_int(g, "general.file_type", &v) && v == FTYPE_Q4_K_M, "file type");
        const gguf_kv *kv = gguf_find(g, "lfm2moe.attention.head_count_kv");
        CHECK(kv && kv->n == 6 && gguf_arr_int(kv, 2, &v) && v == 2 && gguf_arr_int(kv, 3, &v) && v == 0,
              "head_count_kv");
        kv = gguf_find(g, "tokenizer.ggml.tokens");
        CHECK(kv && kv->n == 8192, "vocab size");
        if (kv && kv->n == 8192) {
            CHECK(kv->strs[7].n == 10 && !memcmp(kv->strs[7].p, "<|im_end|>", 10), "eos token text");
            CHECK(kv->strs[32 + 'a'].n == 1 && kv->strs[32 + 'a'].p[0] == 'a', "byte token");
            CHECK(kv->strs[32 + ' '].n == 2 && !memcmp(kv->strs[32 + ' '].p, "\xc4\xa0", 2), "space byte token");
        }
        char *tpl = gguf_get_string(g, "tokenizer.chat_template");
        char *want = test_read_file(DATA("lfm2/LFM2-1.2B.chat_template.jinja"), NULL);
        CHECK(tpl && want && !strcmp(tpl, want), "embedded chat template");
        free(tpl);
        free(want);
        /* dequantized weights are finite and spread like 1/sqrt(fan_in) */
        const gguf_tensor *t = gguf_find_tensor(g, "blk.0.ffn_gate.weight");
        if (t) {
            float *row = malloc(sizeof(float) * (size_t)t->ne[0] * (size_t)t->ne[1]);
            dequantize_row(t->type, t->data, row, t->ne[0] * t->ne[1]);
            double s = 0;
            bool finite = true;
            for (int64_t i = 0; i < t->ne[0] * t->ne[1]; i++) {
                s += (double)row[i] * row[i];
                finite &= isfinite(row[i]);
            }
            double rms = sqrt(s / (double)(t->ne[0] * t->ne[1]));
            CHECK(finite && rms > 0.5 / 16 && rms < 2.0 / 16, "ffn_gate rms %g (want ~1/16)", rms);
            free(row);
        }
        gguf_close(ref);
        gguf_close(g);
    }
    /* same seed, same bytes whatever the thread count */
    char other[140];
    snprintf(other, sizeof other, "%s.b", tmp_out);
    p.n_threads = 1;
    CHECK(synth_write(&c, quant_ftype_find("q4_k_m"), &p, other, NULL, &err), "synth 1 thread: %s", err.msg);
    size_t na = 0, nb = 1;
    char *a = test_read_file(tmp_out, &na), *b = test_read_file(other, &nb);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "deterministic across thread counts");
    free(a);
    free(b);
    unlink(other);
    /* dense F16 and bad configurations */
    synth_preset("lfm2-350m", &c);
    c.hidden = 128;
    c.n_layer = 4;
    c.n_attn = 1;
    c.attn_layers[0] = 2;
    c.n_head = 2;
    c.n_head_kv = 1;
    c.ff = 256;
    c.vocab = 400;
    CHECK(synth_write(&c, quant_ftype_find("f16"), &p, tmp_out, &rep, &err), "dense f16: %s", err.msg);
    CHECK(rep.type_count[GGML_F16] == 1 + 4 * 3 + 1 * 4 + 3 * 2 && rep.type_count[GGML_F32] > 0, "f16 layout");
    c.n_head = 3;
    unlink(tmp_out);
    CHECK(!synth_write(&c, quant_ftype_find("q8_0"), &p, tmp_out, NULL, &err) && !exists(tmp_out),
          "bad heads rejected");
    unlink(tmp_out);
}

/* quantize makes exactly the types whose row in the type table says so (GGML_TF_QUANTIZE), whole
 * blocks only: what it makes dequantizes near the input (within the type's own error), and a
 * row of another width or type is refused (0 bytes). */
static void made_by_the_table(void) {
    enum { N = 512 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (int i = 0; i < N; i++) x[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 7));
    int made = 0;
    for (uint32_t t = 0; t < GGML_NTYPES_ALL; t++) {
        const ggml_type_info *ti = ggml_type_get(t);
        const bool want_w = ti && (ti->flags & GGML_TF_QUANTIZE), want = want_w && !(ti->flags & GGML_TF_NEEDS_W);
        CHECK(quantize_supported(t) == want, "type %u (%s): quantize_supported", t, ti ? ti->name : "?");
        CHECK(quantize_supported_w(t) == want_w, "type %u (%s): quantize_supported_w", t, ti ? ti->name : "?");
        if (want_w && !want) { /* made only with importance weights */
            static float qw[N / 2];
            for (int i = 0; i < N / 2; i++) qw[i] = 1.0f + (float)(i % 5);
            CHECK(quantize_rows(t, x, q, 2, N / 2) == 0, "%s: refused without weights", ti->name);
            CHECK(quantize_rows_w(t, x, q, 2, N / 2, qw) == 2 * ggml_row_size(t, N / 2), "%s: made with weights",
                  ti->name);
            made++;
            continue;
        }
        const size_t bytes = quantize_rows(t, x, q, 2, N / 2);
        CHECK(want ? bytes == 2 * ggml_row_size(t, N / 2) : bytes == 0, "%s: %zu bytes", ti ? ti->name : "?", bytes);
        if (!want || !bytes) continue;
        made++;
        dequantize_row(t, q, y, N);
        double e = 0, m = 0, se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            e = fmax(e, fabs((double)y[i] - x[i])), m = fmax(m, fabs((double)x[i]));
            se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]), sx += (double)x[i] * x[i];
        }
        if (ti->flags & GGML_TF_IMATRIX) /* 1.5-3 bits: near on the whole (RMS) */
            CHECK(se <= 0.5 * sx, "%s: made blocks dequantize near the input (squared error %g of %g)", ti->name, se,
                  sx);
        else CHECK(e <= 0.5 * m, "%s: made blocks dequantize near the input (max error %g of %g)", ti->name, e, m);
        if (ti->block_size > 1)
            CHECK(quantize_rows(t, x, q, 1, ti->block_size + 8) == 0, "%s: partial blocks", ti->name);
    }
    CHECK(made >= 22, "%d types made", made);
}

/* (f): the inputs of data/quant/README.md's reference harness (the same generator) */
static uint64_t blk_state;
static float blk_rnd(void) {
    blk_state = blk_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((blk_state >> 40) & 0xffffff) / 16777216.0f;
}
enum { BLK_NPR = 512, BLK_ROWS = 16 };
static void blk_fill(float *x, float *qw, int mode) {
    blk_state = 0x1234567 + (uint64_t)mode;
    for (int i = 0; i < BLK_NPR * BLK_ROWS; i++) {
        float u = blk_rnd(), v = blk_rnd();
        x[i] = mode ? (float)(int)((u - 0.4f) * 20) / 16.0f + (i % 97 == 0 ? 3 * v : 0)
                    : sqrtf(-2 * logf(u + 1e-7f)) * cosf(6.2831853f * v) * 0.05f;
    }
    for (int i = 0; i < 256; i++) x[3 * BLK_NPR + i] = 0;                   /* a block of zeros */
    for (int i = 0; i < 32; i++) x[5 * BLK_NPR + 64 + i] = 0;               /* a sub-block of zeros */
    for (int i = 0; i < 64; i++) x[6 * BLK_NPR + i] = x[6 * BLK_NPR + 100]; /* ties */
    for (int i = 0; i < BLK_NPR; i++) qw[i] = 0.01f + blk_rnd() * blk_rnd() * 3.0f;
}

static void quant_blocks(void) {
    static float x[BLK_NPR * BLK_ROWS], qw[BLK_NPR];
    static uint8_t q[BLK_NPR * BLK_ROWS * 4];
    FILE *f = fopen(DATA("quant/blocks.sha256"), "r");
    CHECK(f != NULL, "data/quant/blocks.sha256");
    if (!f) return;
    char name[32], want[65], got[65];
    int w, mode, n = 0, filled = -1;
    while (fscanf(f, "%31s %d %d %64s", name, &w, &mode, want) == 4) {
        const int t = ggml_type_by_name(name);
        CHECK(t >= 0, "type %s", name);
        if (t < 0) continue;
        if (mode != filled) blk_fill(x, qw, filled = mode);
        const size_t bytes = quantize_rows_w((uint32_t)t, x, q, BLK_ROWS, BLK_NPR, w ? qw : NULL);
        CHECK(bytes == BLK_ROWS * ggml_row_size((uint32_t)t, BLK_NPR), "%s: made", name);
        sha256_hex(q, bytes, got);
        CHECK(!strcmp(got, want), "%s %s weights, input %d: bytes equal ggml's", name, w ? "with" : "without", mode);
        n++;
    }
    fclose(f);
    CHECK(n == 66, "%d block checks", n);
}

int main(void) {
    quant_blocks();
    snprintf(tmp_out, sizeof tmp_out, "/tmp/lfm2c_test_q_%d.gguf", (int)getpid());
    made_by_the_table();
    tiny_masters();
    requantize_and_errors();
    synth_tiny();
    kq_masters();
    unlink(tmp_out);
    TEST_MAIN_END();
}
