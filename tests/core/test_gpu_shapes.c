/* test_gpu_shapes.c — what both GPU backends ask of a model (core/gpu_shapes.c), on the tiny
 * dense and MoE fixtures opened on the CPU and a synthetic model whose FFN is wider than 3 H and
 * whose K and V rows together are wider than q (every term of a width the widest once): the
 * scratch widths hold every row the forwards write
 * there (q, the conv's 3 H, a dense FFN's hidden row; attention's output, K and V side by side)
 * and are the widest of them, the planner's widths agree for the same model, and the checks:
 * a model every rule takes passes and a backend's matrix rule sees each present matrix with its
 * context; then each refusal with its message (a matrix type whose row in the type table lacks
 * the backend's bit, naming the backends that run it; rows not a multiple of 8 weights; the
 * backend's own matrix rule, a q8_0 KV cache on either side, the head dimension, a vector that is
 * not F32). */
#include "core/gpu_shapes.h"

#include "base/error.h"
#include "core/backend.h"
#include "convert/quantize.h"
#include "convert/synth.h"
#include "core/mem_plan.h"
#include "core/model.h"
#include "formats/ggml_types.h"
#include "lfm2c.h"
#include "test.h"

#include <string.h>
#include <unistd.h>

static lfm2c_model *open_cpu(const char *path) {
    lfm2c_model_params p = lfm2c_model_default_params();
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(path, &p, &err);
    CHECK(m != NULL, "%s: %s", path, err.msg);
    return m;
}

/* every row the forwards put in big and hid fits, and each width is one of them (the widest) */
static void check_widths(const lfm2c_model *m, const char *what) {
    const lfm2c_model_info *in = &m->info;
    const gpu_widths w = gpu_widths_of(m);
    const int64_t H = in->n_embd, nq = (int64_t)in->n_head * in->head_dim;
    bool big_met = w.big == 3 * H || w.big == nq, hid_met = w.hid == H || w.hid == nq;
    int64_t fe = 0;
    CHECK(w.kv_dim == in->n_head_kv_max * in->head_dim, "%s: kv_dim %d", what, w.kv_dim);
    CHECK(w.big >= 3 * H && w.big >= nq && w.hid >= H && w.hid >= nq, "%s: big %d hid %d", what, w.big, w.hid);
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        if (L->ffn_gate.data) {
            CHECK(w.big >= L->ffn_gate.ne[1] && w.big >= L->ffn_up.ne[1], "%s: layer %d's FFN row", what, l);
            big_met |= w.big == L->ffn_gate.ne[1];
        }
        if (L->is_attn) {
            CHECK(w.hid >= 2 * (int64_t)L->n_head_kv * in->head_dim, "%s: layer %d's K and V rows", what, l);
            hid_met |= w.hid == 2 * (int64_t)L->n_head_kv * in->head_dim;
        }
        if (L->gate_exps.data && L->gate_exps.ne[1] > fe) fe = L->gate_exps.ne[1];
    }
    CHECK(big_met && hid_met, "%s: big %d, hid %d: wider than every row", what, w.big, w.hid);
    CHECK(w.ff_exp == fe, "%s: ff_exp %d, the experts' rows %lld", what, w.ff_exp, (long long)fe);
    mem_shapes sh;
    mem_shapes_of(m, &sh);
    CHECK(gpu_big_width(sh.n_embd, (int64_t)sh.n_head * sh.head_dim, sh.ff_max) == w.big &&
              gpu_hid_width(sh.n_embd, (int64_t)sh.n_head * sh.head_dim, (int64_t)sh.n_head_kv * sh.head_dim) == w.hid,
          "%s: the planner's widths", what);
}

typedef struct counter {
    int seen, refuse_at;
} counter;

static int count_matrix(const void *ctx, const tensor *t, lfm2c_error *err) {
    counter *c = (counter *)ctx;
    CHECK(t->data != NULL, "only present matrices: %s", t->name);
    if (++c->seen == c->refuse_at) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "TEST backend: tensor '%s' is too large", t->name);
        return -1;
    }
    return 0;
}

static void expect_refusal(const lfm2c_model *m, const gpu_rules *r, const char *msg) {
    lfm2c_error err = {0};
    CHECK(gpu_check_model(m, r, &err) == -1 && err.code == LFM2C_EUNSUPPORTED && strstr(err.msg, msg),
          "expected '%s', got '%s'", msg, err.msg);
}

static void check_rules(lfm2c_model *m, const char *what) {
    counter c = {0, 0};
    gpu_rules r = {"TEST", GGML_RUN_CPU, count_matrix, &c}; /* the CPU's bit: every type a file has */
    lfm2c_error err = {0};
    CHECK(gpu_check_model(m, &r, &err) == 0, "%s: %s", what, err.msg);
    int mats = 1 + (m->output.data != NULL);
    for (int l = 0; l < m->info.n_layer; l++) {
        const tensor *t[GPU_LAYER_MATS];
        gpu_layer_matrices(&m->layers[l], t);
        for (int i = 0; i < GPU_LAYER_MATS; i++) mats += t[i]->data != NULL;
    }
    CHECK(c.seen == mats && mats > 2 * m->info.n_layer, "%s: %d matrices seen of %d", what, c.seen, mats);
    c = (counter){0, 3};
    expect_refusal(m, &r, "TEST backend: tensor '");
    CHECK(c.seen == 3, "%s: stops at the refusal", what);
    r.matrix = NULL;
    /* a bit no row has: the first matrix checked is refused, naming the backends that run its
     * type (the CPU runs every type: first in the list) */
    r.run = 1u << 30;
    char msg[200], who[96];
    const char *tn = ggml_type_get(m->tok_embd.type)->name;
    backend_type_runners(m->tok_embd.type, who, sizeof who);
    CHECK(!strncmp(who, "cpu", 3), "%s: %s runs on %s", what, tn, who);
    snprintf(msg, sizeof msg,
             "TEST backend: tensor 'token_embd.weight' (%s, %lld wide) is not supported (%s runs on: %s)", tn,
             (long long)m->tok_embd.ne[0], tn, who);
    expect_refusal(m, &r, msg);
    r.run = GGML_RUN_CPU;
    /* rows the GPUs cannot take: not a multiple of 8 weights */
    const int64_t w0 = m->tok_embd.ne[0];
    m->tok_embd.ne[0] = 60;
    snprintf(msg, sizeof msg, "TEST backend: tensor 'token_embd.weight' (%s, 60 wide) is not supported (rows of whole",
             tn);
    expect_refusal(m, &r, msg);
    m->tok_embd.ne[0] = w0;
    for (int side = 0; side < 2; side++) {
        int *kv = side ? &m->type_v : &m->type_k, was = *kv;
        *kv = LFM2C_KV_Q8_0;
        expect_refusal(m, &r, "TEST backend: the KV cache is f16 or f32 (-ctk / -ctv), not q8_0");
        *kv = was;
    }
    const int hd = m->info.head_dim;
    for (int bad = 0; bad < 2; bad++) {
        m->info.head_dim = bad ? 512 : hd + 1;
        expect_refusal(m, &r, "TEST backend: head dimension");
    }
    m->info.head_dim = hd;
    tensor *norm = &m->layers[1].ffn_norm;
    const uint32_t t = norm->type;
    norm->type = GGML_F16;
    snprintf(msg, sizeof msg, "TEST backend: '%s' is not F32", norm->name);
    expect_refusal(m, &r, msg);
    norm->type = t;
    CHECK(gpu_check_model(m, &r, &err) == 0, "%s: restored: %s", what, err.msg);
}

/* a dense model of hidden 64 with an FFN of 320 rows (> 3 H) and as many KV heads as query
 * heads (K and V side by side: 2 H > q), written to path */
static bool synth_wide(const char *path) {
    synth_config c;
    lfm2c_error err = {0};
    synth_params sp = {0};
    CHECK(synth_preset("lfm2-350m", &c), "the preset");
    c.hidden = 64, c.n_layer = 2, c.n_attn = 1, c.attn_layers[0] = 1, c.n_head = 4, c.n_head_kv = 4;
    c.ff = 320, c.vocab = 400;
    sp.seed = 7, sp.n_threads = 1;
    const bool ok = synth_write(&c, quant_ftype_find("f32"), &sp, path, NULL, &err);
    CHECK(ok, "synth: %s", err.msg);
    return ok;
}

int main(void) {
    char wide[64];
    snprintf(wide, sizeof wide, "/tmp/lfm2c-gpu-shapes-%d.gguf", (int)getpid());
    const char *paths[] = {DATA("lfm2-tiny-dense-f32.gguf"), DATA("lfm2-tiny-moe-q8_0.gguf"),
                           DATA("lfm2-kq-moe-q4_k_m.gguf"), synth_wide(wide) ? wide : NULL};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        lfm2c_model *m = paths[i] ? open_cpu(paths[i]) : NULL;
        if (!m) continue;
        check_widths(m, paths[i]);
        check_rules(m, paths[i]);
        lfm2c_model_free(m);
    }
    unlink(wide);
    TEST_MAIN_END();
}
