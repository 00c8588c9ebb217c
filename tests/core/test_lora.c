/* test_lora.c — LoRA adapters through the public API (lora.c): sessions with different adapters
 * (and none) batched in one lfm2c_decode_batch give each the logits it gets alone; scale 0 gives
 * the base's bits; attaching another adapter resets the session and the same one keeps it; a
 * copied session keeps its adapters; bad arguments are refused; lfm2c_lora_describe names what
 * an adapter changes. The adapters are written by lora_synth (convert/lora_file.c) for the
 * fixtures, dense and MoE; the kq ones are large enough that a decoded row's adapter work is
 * split over the pool, and a batch's rows too. */
#include "lfm2c.h"
#include "convert/lora_file.h"
#include "test.h"

#include <string.h>
#include <unistd.h>

enum { N = 10 };
static const int32_t ids[N] = {1, 32, 45, 67, 300, 301, 302, 7, 6, 100};

/* the last-position logits of ids in a fresh session with the given adapters */
static float *alone(lfm2c_model *m, lfm2c_lora *lo, float scale) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 64, &err);
    if (lo) CHECK(lfm2c_session_set_lora(s, &lo, &scale, 1, &err) == 0, "set_lora: %s", err.msg);
    CHECK(lfm2c_session_decode(s, ids, N, LFM2C_LOGITS_LAST, &err) == 0, "decode: %s", err.msg);
    int V = lfm2c_model_get_info(m)->n_vocab;
    float *out = malloc(sizeof(float) * V);
    memcpy(out, lfm2c_session_logits(s, 0), sizeof(float) * V);
    lfm2c_session_free(s);
    return out;
}

/* lfm2c_lora_describe: the modules adapter 2 has, snprintf's contract (a short buffer is cut
 * and terminated; the length is always the whole text's) */
static void check_describe(const lfm2c_lora *lo, const char *tag) {
    char full[2048], cut[12];
    const int n = lfm2c_lora_describe(lo, full, sizeof full), n0 = lfm2c_lora_describe(lo, NULL, 0);
    CHECK(n > 0 && n == n0 && (size_t)n == strlen(full), "%s: describe's length %d / %d", tag, n, n0);
    CHECK(strstr(full, "self_attn.q_proj layer") && strstr(full, "feed_forward.") && !strstr(full, "k_proj"),
          "%s: describe names the modules: %s", tag, full);
    memset(cut, 'x', sizeof cut);
    CHECK(lfm2c_lora_describe(lo, cut, sizeof cut) == n && cut[11] == 0 && !strncmp(cut, full, 11),
          "%s: describe into a short buffer", tag);
    CHECK(lfm2c_lora_describe(NULL, cut, sizeof cut) == 0 && !cut[0], "%s: describe NULL", tag);
}

static void check_model(const char *path, const char *tag) {
    char a1[256], a2[256];
    snprintf(a1, sizeof a1, "/tmp/test_lora_%d_%s_1.gguf", (int)getpid(), tag);
    snprintf(a2, sizeof a2, "/tmp/test_lora_%d_%s_2.gguf", (int)getpid(), tag);
    lfm2c_error err = {0};
    lora_synth_params p1 = {4, 8, 11, NULL}, p2 = {2, 4, 12, "attn_q,attn_v,shortconv.out_proj,ffn_down,ffn_down_exps"};
    CHECK(lora_synth(path, &p1, a1, &err), "%s: synth: %s", tag, err.msg);
    CHECK(lora_synth(path, &p2, a2, &err), "%s: synth 2: %s", tag, err.msg);
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    mp.type_k = mp.type_v = LFM2C_KV_F32;
    lfm2c_model *m = lfm2c_model_open(path, &mp, &err);
    CHECK(m != NULL, "%s: %s", path, err.msg);
    if (!m) return;
    lfm2c_lora *l1 = lfm2c_lora_load(m, a1, &err), *l2 = lfm2c_lora_load(m, a2, &err);
    CHECK(l1 && l2, "%s: load: %s", tag, err.msg);
    if (!l1 || !l2) return;
    CHECK(lfm2c_lora_n_matrices(l1) > lfm2c_lora_n_matrices(l2), "%s: all targets vs a few", tag);
    check_describe(l2, tag);
    const int V = lfm2c_model_get_info(m)->n_vocab;
    float *base = alone(m, NULL, 0), *r1 = alone(m, l1, 1), *r2 = alone(m, l2, 0.7f), *z = alone(m, l1, 0);
    CHECK(!memcmp(base, z, sizeof(float) * V), "%s: scale 0 == base bit for bit", tag);
    CHECK(test_maxabs(base, r1, V) > 0.1 && test_maxabs(base, r2, V) > 0.01, "%s: the adapters change the logits", tag);

    /* token by token (decode: a row's work split over the pool on the larger fixtures) == one batch */
    lfm2c_session *tb = lfm2c_session_new(m, 64, &err);
    float one_s = 1;
    CHECK(lfm2c_session_set_lora(tb, &l1, &one_s, 1, &err) == 0, "set: %s", err.msg);
    for (int i = 0; i < N; i++) lfm2c_session_decode(tb, ids + i, 1, LFM2C_LOGITS_LAST, &err);
    CHECK(test_maxabs(lfm2c_session_logits(tb, 0), r1, V) <= 1e-4, "%s: token by token == batch (%g)", tag,
          test_maxabs(lfm2c_session_logits(tb, 0), r1, V));
    lfm2c_session_free(tb);

    /* one batch: adapter 1, none, adapter 2, both */
    lfm2c_session *ss[4];
    for (int i = 0; i < 4; i++) ss[i] = lfm2c_session_new(m, 64, &err);
    float one = 1, s7 = 0.7f, sc[2] = {1, 0.7f};
    lfm2c_lora *both[2] = {l1, l2};
    CHECK(lfm2c_session_set_lora(ss[0], &l1, &one, 1, &err) == 0, "set: %s", err.msg);
    CHECK(lfm2c_session_set_lora(ss[2], &l2, &s7, 1, &err) == 0, "set: %s", err.msg);
    CHECK(lfm2c_session_set_lora(ss[3], both, sc, 2, &err) == 0, "set: %s", err.msg);
    const int32_t *toks[4] = {ids, ids, ids, ids};
    int n[4] = {N, N, N, N}, mode[4] = {LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST};
    CHECK(lfm2c_decode_batch(ss, toks, n, mode, 4, &err) == 0, "batch: %s", err.msg);
    CHECK(test_maxabs(lfm2c_session_logits(ss[0], 0), r1, V) <= 1e-4, "%s: batched adapter 1 == alone", tag);
    CHECK(test_maxabs(lfm2c_session_logits(ss[1], 0), base, V) <= 1e-4, "%s: batched no adapter == base", tag);
    CHECK(test_maxabs(lfm2c_session_logits(ss[2], 0), r2, V) <= 1e-4, "%s: batched adapter 2 == alone", tag);
    double d31 = test_maxabs(lfm2c_session_logits(ss[3], 0), r1, V),
           d32 = test_maxabs(lfm2c_session_logits(ss[3], 0), r2, V);
    CHECK(d31 > 1e-3 && d32 > 1e-3, "%s: two adapters differ from each alone (%g, %g)", tag, d31, d32);

    /* a decode step of all four together, then the same step alone */
    int32_t next = 33;
    const int32_t *nt[4] = {&next, &next, &next, &next};
    int one_n[4] = {1, 1, 1, 1};
    CHECK(lfm2c_decode_batch(ss, nt, one_n, mode, 4, &err) == 0, "step: %s", err.msg);
    lfm2c_session *c = lfm2c_session_new(m, 64, &err);
    CHECK(lfm2c_session_copy(c, ss[0], &err) == 0, "copy: %s", err.msg);
    int32_t next2 = 34;
    CHECK(lfm2c_session_decode(c, &next2, 1, LFM2C_LOGITS_LAST, &err) == 0, "copy decode: %s", err.msg);
    CHECK(lfm2c_session_decode(ss[0], &next2, 1, LFM2C_LOGITS_LAST, &err) == 0, "decode: %s", err.msg);
    CHECK(test_maxabs(lfm2c_session_logits(c, 0), lfm2c_session_logits(ss[0], 0), V) == 0,
          "%s: a copy keeps the adapters", tag);

    /* the same adapters keep the session; others reset it */
    int past = lfm2c_session_n_past(ss[0]);
    CHECK(lfm2c_session_set_lora(ss[0], &l1, &one, 1, &err) == 0 && lfm2c_session_n_past(ss[0]) == past,
          "%s: same list keeps", tag);
    CHECK(lfm2c_session_set_lora(ss[0], &l2, &one, 1, &err) == 0 && lfm2c_session_n_past(ss[0]) == 0,
          "%s: another resets", tag);
    CHECK(lfm2c_session_set_lora(ss[0], NULL, NULL, 0, &err) == 0, "%s: removing", tag);

    /* bad arguments */
    float inf = 1.0f / 0.0f;
    CHECK(lfm2c_session_set_lora(ss[1], &l1, &inf, 1, &err) == -1 && err.code == LFM2C_EINVAL, "%s: infinite scale",
          tag);
    CHECK(lfm2c_session_set_lora(ss[1], both, sc, LFM2C_MAX_LORA + 1, &err) == -1, "%s: too many", tag);
    CHECK(lfm2c_lora_load(m, NULL, &err) == NULL && err.code == LFM2C_EINVAL, "%s: NULL path", tag);

    for (int i = 0; i < 4; i++) lfm2c_session_free(ss[i]);
    lfm2c_session_free(c);
    free(base), free(r1), free(r2), free(z);
    lfm2c_lora_free(l1);
    lfm2c_lora_free(l2);
    lfm2c_model_free(m);
    unlink(a1);
    unlink(a2);
}

int main(void) {
    check_model(DATA("lfm2-tiny-dense-f32.gguf"), "dense");
    check_model(DATA("lfm2-tiny-moe-f32.gguf"), "moe");
    check_model(DATA("lfm2-tiny-moe-q4_0.gguf"), "moe-q4_0");
    check_model(DATA("lfm2-kq-dense-q4_k_m.gguf"), "kq-dense"); /* large enough for the pool paths */
    check_model(DATA("lfm2-kq-moe-q4_k_m.gguf"), "kq-moe");
    TEST_MAIN_END();
}
