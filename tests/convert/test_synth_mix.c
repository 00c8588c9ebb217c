/* test_synth_mix.c — synth's low-bit file types (random blocks: convert/synth_mix.c): for each
 * (Q2_K, Q3_K_S/M/L, IQ4_NL, IQ4_XS, IQ3_XXS/S/M, IQ2_XXS/XS/S/M, IQ1_S/M) a tiny dense and a
 * tiny MoE model
 * (a) take the per-tensor types llama-quantize's rules give an LFM2 model made with an
 *     importance matrix (the rows of RULES, stated here from llama.cpp's llama-quant.cpp),
 * (b) hold weights that dequantize finite and spread like the fan-in (the random blocks' d),
 * (c) open and decode to finite logits on the CPU (the kernels of every type they hold);
 * and the bytes do not depend on the thread count. llama.cpp reading the same files is
 * bench/quants.sh --check (outside CI: it needs the peer build). */
#include "convert/synth.h"
#include "convert/synth_mix.h"
#include "formats/gguf.h"
#include "formats/ggml_types.h"
#include "lfm2c.h"
#include "test.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static char tmp_out[128];

/* An expected type: tensor name -> type, in the dense (moe = 0) or MoE (1) model; -1: both. */
typedef struct rule {
    const char *ftype;
    int moe;
    const char *tensor;
    uint32_t type;
} rule;

/* 8 layers (attention at 2 and 5), so n / 8 = 1 and n / 16 = 0; the MoE has 4 experts. */
static const rule RULES[] = {
    {"Q2_K", -1, "token_embd.weight", GGML_Q6_K},
    {"Q2_K", -1, "blk.0.shortconv.in_proj.weight", GGML_Q2_K},
    {"Q2_K", -1, "blk.2.attn_q.weight", GGML_Q2_K},
    {"Q2_K", -1, "blk.2.attn_v.weight", GGML_Q3_K},
    {"Q2_K", -1, "blk.2.attn_output.weight", GGML_Q3_K},
    {"Q2_K", 0, "blk.4.ffn_down.weight", GGML_Q3_K},
    {"Q2_K", 1, "blk.4.ffn_down_exps.weight", GGML_Q3_K},
    {"Q2_K", 1, "blk.4.ffn_up_exps.weight", GGML_Q2_K},
    {"Q3_K_S", -1, "blk.2.attn_v.weight", GGML_Q3_K},
    {"Q3_K_M", -1, "blk.2.attn_v.weight", GGML_Q5_K},
    {"Q3_K_M", -1, "blk.2.attn_output.weight", GGML_Q4_K},
    {"Q3_K_M", 0, "blk.0.ffn_down.weight", GGML_Q4_K},
    {"Q3_K_M", -1, "blk.3.shortconv.out_proj.weight", GGML_Q3_K},
    {"Q3_K_L", -1, "blk.5.attn_v.weight", GGML_Q5_K},
    {"Q3_K_L", 0, "blk.7.ffn_down.weight", GGML_Q5_K},
    {"IQ4_NL", -1, "blk.2.attn_v.weight", GGML_IQ4_NL},
    {"IQ4_NL", -1, "token_embd.weight", GGML_Q6_K},
    {"IQ4_XS", 0, "blk.0.ffn_down.weight", GGML_IQ4_XS},
    {"IQ4_XS", 1, "blk.7.ffn_gate_exps.weight", GGML_IQ4_XS},
    {"IQ3_XXS", -1, "token_embd.weight", GGML_Q5_K},
    {"IQ3_XXS", -1, "blk.2.attn_q.weight", GGML_IQ2_S},
    {"IQ3_XXS", -1, "blk.2.attn_k.weight", GGML_IQ2_S},
    {"IQ3_XXS", -1, "blk.2.attn_v.weight", GGML_IQ3_XXS},
    {"IQ3_XXS", -1, "blk.2.attn_output.weight", GGML_IQ3_S},
    {"IQ3_S", -1, "blk.2.attn_output.weight", GGML_IQ3_S},
    {"IQ3_M", -1, "blk.2.attn_v.weight", GGML_Q4_K},
    {"IQ3_M", 0, "blk.0.ffn_down.weight", GGML_Q4_K},
    {"IQ3_M", 0, "blk.1.ffn_down.weight", GGML_IQ3_S},
    {"IQ2_XXS", -1, "token_embd.weight", GGML_Q5_K},
    {"IQ2_XXS", 0, "blk.2.attn_v.weight", GGML_Q2_K},
    {"IQ2_XXS", 1, "blk.2.attn_v.weight", GGML_Q4_K},
    {"IQ2_XXS", 0, "blk.0.ffn_down.weight", GGML_Q2_K},
    {"IQ2_XXS", 0, "blk.1.ffn_down.weight", GGML_IQ2_XXS},
    {"IQ2_XXS", 1, "blk.1.ffn_down.weight", GGML_IQ2_XXS},
    {"IQ2_XXS", 1, "blk.4.ffn_down_exps.weight", GGML_IQ2_XXS},
    {"IQ2_XXS", -1, "blk.2.attn_output.weight", GGML_IQ2_XXS},
    {"IQ2_XS", -1, "blk.3.shortconv.in_proj.weight", GGML_IQ2_XS},
    {"IQ2_S", -1, "blk.3.shortconv.in_proj.weight", GGML_IQ2_XS},
    {"IQ2_S", 0, "blk.2.attn_v.weight", GGML_IQ3_S},
    {"IQ2_S", 0, "blk.0.ffn_down.weight", GGML_IQ3_S},
    {"IQ2_M", -1, "blk.3.shortconv.in_proj.weight", GGML_IQ2_S},
    {"IQ2_M", -1, "blk.2.attn_output.weight", GGML_IQ3_S},
    {"IQ1_S", -1, "blk.2.attn_output.weight", GGML_IQ2_XXS},
    {"IQ1_S", -1, "blk.3.ffn_norm.weight", GGML_F32},
    {"IQ1_S", -1, "blk.3.shortconv.in_proj.weight", GGML_IQ1_S},
    {"IQ1_M", -1, "blk.3.shortconv.in_proj.weight", GGML_IQ1_M},
};

static const char *const FTYPES[] = {"Q2_K",  "Q3_K_S",  "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS", "IQ3_XXS", "IQ3_S",
                                     "IQ3_M", "IQ2_XXS", "IQ2_XS", "IQ2_S",  "IQ2_M",  "IQ1_S",  "IQ1_M"};

static void tiny(synth_config *c, bool moe) {
    synth_preset(moe ? "lfm2-8b-a1b" : "lfm2-350m", c);
    c->hidden = 256;
    c->n_layer = 8;
    c->n_attn = 2;
    c->attn_layers[0] = 2;
    c->attn_layers[1] = 5;
    c->n_head = 4;
    c->n_head_kv = 2;
    c->ff = 512;
    c->vocab = 1024;
    if (moe) {
        c->n_expert = 4;
        c->n_expert_used = 2;
        c->expert_ff = 256;
        c->n_dense = 2;
    }
}

/* (b): every quantized matrix dequantizes finite, RMS within a factor 2 of its fan-in's spread
 * (1 / sqrt(ne0), residual-writing ones smaller: 1 / sqrt(2 L) more, so the floor is wide). */
static void check_spread(const gguf_file *g, const char *ft) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (t->type == GGML_F32 || t->type == GGML_F16 || t->ne[1] <= 1) continue;
        const int64_t n = t->ne[0] * t->ne[1] * t->ne[2];
        float *w = malloc(sizeof(float) * (size_t)n);
        dequantize_row(t->type, t->data, w, n);
        double s = 0;
        bool finite = true;
        for (int64_t k = 0; k < n; k++) {
            s += (double)w[k] * w[k];
            finite &= isfinite(w[k]);
        }
        const double rms = sqrt(s / (double)n), want = 1.0 / sqrt((double)t->ne[0]);
        CHECK(finite && rms < 2 * want && rms > want / 8, "%s %s (%s): rms %g, fan-in spread %g", ft, t->name,
              ggml_type_get(t->type)->name, rms, want);
        free(w);
    }
}

/* (c): the model opens on the CPU; a prompt (the batched prefill) then a token (decode) give
 * finite logits that are not all the same. */
static void check_runs(const char *path, const char *ft) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    lfm2c_model *m = lfm2c_model_open(path, &mp, &err);
    CHECK(m != NULL, "%s opens: %s", ft, err.msg);
    if (!m) return;
    lfm2c_session *s = lfm2c_session_new(m, 64, &err);
    const int32_t toks[6] = {1, 40, 41, 42, 300, 301};
    CHECK(s && lfm2c_session_decode(s, toks, 6, LFM2C_LOGITS_NONE, &err) == 0 &&
              lfm2c_session_decode(s, toks + 2, 1, LFM2C_LOGITS_LAST, &err) == 0,
          "%s decodes: %s", ft, err.msg);
    const float *lg = s ? lfm2c_session_logits(s, 0) : NULL;
    bool finite = lg != NULL, varied = false;
    for (int i = 0; lg && i < 1024; i++) finite &= isfinite(lg[i]), varied |= lg[i] != lg[0];
    CHECK(finite && varied, "%s: finite, varied logits", ft);
    lfm2c_session_free(s);
    lfm2c_model_free(m);
}

static void one(const char *ftname, bool moe) {
    const quant_ftype *ft = quant_ftype_find(ftname);
    CHECK(ft != NULL, "file type %s known", ftname);
    if (!ft) return;
    synth_config c;
    tiny(&c, moe);
    synth_params p = {.seed = 3, .n_threads = 2};
    lfm2c_error err = {0};
    CHECK(synth_write(&c, ft, &p, tmp_out, NULL, &err), "synth %s: %s", ftname, err.msg);
    gguf_file *g = gguf_open(tmp_out, &err);
    CHECK(g != NULL, "%s opens: %s", ftname, err.msg);
    if (!g) return;
    for (size_t r = 0; r < sizeof RULES / sizeof *RULES; r++) {
        if (strcmp(RULES[r].ftype, ft->name) || (RULES[r].moe >= 0 && RULES[r].moe != moe)) continue;
        const gguf_tensor *t = gguf_find_tensor(g, RULES[r].tensor);
        CHECK(t && t->type == RULES[r].type, "%s %s: %s is %s, want %s", moe ? "moe" : "dense", ftname, RULES[r].tensor,
              t ? ggml_type_get(t->type)->name : "missing", ggml_type_get(RULES[r].type)->name);
    }
    int64_t v = -1;
    CHECK(gguf_get_int(g, "general.file_type", &v) && v == ft->id, "%s: general.file_type %lld", ftname, (long long)v);
    check_spread(g, ftname);
    gguf_close(g);
    check_runs(tmp_out, ftname);
}

int main(void) {
    snprintf(tmp_out, sizeof tmp_out, "/tmp/lfm2c_synth_mix_%d.gguf", (int)getpid());
    for (size_t i = 0; i < sizeof FTYPES / sizeof *FTYPES; i++) {
        one(FTYPES[i], false);
        one(FTYPES[i], true);
    }
    /* the same bytes whatever the thread count */
    synth_config c;
    tiny(&c, true);
    char other[160];
    snprintf(other, sizeof other, "%s.b", tmp_out);
    synth_params p1 = {.seed = 9, .n_threads = 1}, p2 = {.seed = 9, .n_threads = 2};
    lfm2c_error err = {0};
    CHECK(synth_write(&c, quant_ftype_find("iq2_xxs"), &p1, tmp_out, NULL, &err) &&
              synth_write(&c, quant_ftype_find("iq2_xxs"), &p2, other, NULL, &err),
          "synth: %s", err.msg);
    size_t na = 0, nb = 1;
    char *a = test_read_file(tmp_out, &na), *b = test_read_file(other, &nb);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "deterministic across thread counts");
    free(a);
    free(b);
    unlink(other);
    unlink(tmp_out);
    TEST_MAIN_END();
}
