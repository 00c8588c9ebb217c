/* test_model.c — the forward pass against the reference goldens (tests/data, *.golden.*), the
 * cache paths (one-by-one == batch, greedy continuations, batched sessions, truncation), and
 * the load-time errors of bad files. */
#include "lfm2c.h"
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static float *read_f32(const char *path, size_t *n) {
    size_t bytes;
    float *p = test_read_file(path, &bytes);
    *n = p ? bytes / 4 : 0;
    return p;
}

/* logits at every position, batch or one token at a time */
static float *all_logits(lfm2c_model *m, const int32_t *ids, int n, bool one_by_one) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, n + 32, &err);
    float *out = malloc(sizeof(float) * (size_t)n * V);
    if (one_by_one) {
        for (int i = 0; i < n; i++) {
            lfm2c_session_decode(s, ids + i, 1, LFM2C_LOGITS_LAST, &err);
            memcpy(out + (size_t)i * V, lfm2c_session_logits(s, 0), sizeof(float) * V);
        }
    } else {
        lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_ALL, &err);
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * V, lfm2c_session_logits(s, i), sizeof(float) * V);
    }
    CHECK(err.code == 0, "decode failed: %s", err.msg);
    lfm2c_session_free(s);
    return out;
}

static void check_fixture(const char *name) {
    char path[256], gpath[256];
    snprintf(path, sizeof path, "data/%s.golden.json", name);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    CHECK(g != NULL, "%s: %s", path, je.text);
    if (!g) return;
    json_t *jids = json_object_get(g, "token_ids"), *jgreedy = json_object_get(g, "greedy_ids");
    int n = (int)json_array_size(jids);
    int32_t *ids = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));

    snprintf(path, sizeof path, "data/%s.gguf", name);
    bool is_f32 = strstr(name, "f32") != NULL;
    lfm2c_error err = {0};
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    lfm2c_model *fast = lfm2c_model_open(path, &p, &err);
    CHECK(fast != NULL, "%s: %s", path, err.msg);
    p.reference = true;
    lfm2c_model *ref = lfm2c_model_open(path, &p, &err);
    CHECK(ref != NULL, "%s: %s", path, err.msg);
    if (!fast || !ref) return;
    int V = lfm2c_model_get_info(fast)->n_vocab;
    size_t ng, nd;
    snprintf(gpath, sizeof gpath, "data/%s.golden.logits.f32.bin", name);
    float *golden = read_f32(gpath, &ng);
    CHECK(ng == (size_t)n * V, "%s: golden size", name);

    float *batch = all_logits(fast, ids, n, false), *one = all_logits(fast, ids, n, true);
    double d_one = test_maxabs(batch, one, (size_t)n * V);
    CHECK(d_one <= 1e-4, "%s: one-by-one vs batch %g", name, d_one);
    float *rb = all_logits(ref, ids, n, false), *ro = all_logits(ref, ids, n, true);
    double d_ref_one = test_maxabs(rb, ro, (size_t)n * V);
    CHECK(d_ref_one <= 1e-4, "%s: reference one-by-one vs batch %g", name, d_ref_one);
    if (is_f32) {
        double d = test_maxabs(batch, golden, (size_t)n * V), dr = test_maxabs(rb, golden, (size_t)n * V);
        CHECK(d <= 1e-3, "%s: vs golden %g", name, d);
        CHECK(dr <= 1e-3, "%s: reference vs golden %g", name, dr);
        printf("%-24s fast vs golden %.2e, reference vs golden %.2e, one-by-one %.2e\n", name, d, dr, d_one);
    } else {
        snprintf(gpath, sizeof gpath, "data/%s.dequant-ref.logits.f32.bin", name);
        float *dq = read_f32(gpath, &nd);
        double dr = test_maxabs(rb, dq, (size_t)n * V), df = test_maxabs(batch, dq, (size_t)n * V);
        double dg = test_maxabs(golden, dq, (size_t)n * V);
        CHECK(dr <= 1e-3, "%s: --reference vs dequant-ref %g", name, dr);
        CHECK(df <= 1.5 * dg + 0.5, "%s: fast vs dequant-ref %g (golden's %g)", name, df, dg);
        printf("%-24s reference vs dequant-ref %.2e; fast %.3f (limit %.3f, golden %.3f)\n", name, dr, df, 1.5 * dg + 0.5, dg);
        free(dq);
    }

    /* greedy continuation, one token at a time with the caches (F32: must equal the golden) */
    if (is_f32) {
        lfm2c_session *s = lfm2c_session_new(fast, n + 32, &err);
        lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_LAST, &err);
        int ok = 1;
        for (size_t i = 0; i < json_array_size(jgreedy); i++) {
            int32_t t = test_argmax(lfm2c_session_logits(s, 0), V);
            ok &= t == (int32_t)json_integer_value(json_array_get(jgreedy, i));
            lfm2c_session_decode(s, &t, 1, LFM2C_LOGITS_LAST, &err);
        }
        CHECK(ok, "%s: greedy continuation differs from the golden", name);
        lfm2c_session_free(s);
    }

    /* two sessions in one batch give what each gives alone; truncation restores checkpoints */
    {
        lfm2c_session *a = lfm2c_session_new(fast, 64, &err), *b = lfm2c_session_new(fast, 64, &err);
        int na = n / 2;
        lfm2c_session_decode(a, ids, na, LFM2C_LOGITS_NONE, &err);
        lfm2c_session_checkpoint(a);
        lfm2c_session *ss[2] = {a, b};
        const int32_t *tk[2] = {ids + na, ids};
        int nn[2] = {n - na, n}, modes[2] = {LFM2C_LOGITS_ALL, LFM2C_LOGITS_ALL};
        CHECK(lfm2c_decode_batch(ss, tk, nn, modes, 2, &err) == 0, "%s: batch: %s", name, err.msg);
        double da = test_maxabs(lfm2c_session_logits(a, n - na - 1), batch + (size_t)(n - 1) * V, V);
        double db = test_maxabs(lfm2c_session_logits(b, n - 1), batch + (size_t)(n - 1) * V, V);
        CHECK(da <= 1e-4 && db <= 1e-4, "%s: batched sessions differ (%g, %g)", name, da, db);
        /* back to the checkpoint and beyond it: re-feeding gives the same logits */
        CHECK(lfm2c_session_truncate(a, na + 2, &err) == 0, "%s: truncate: %s", name, err.msg);
        CHECK(lfm2c_session_n_past(a) == na + 2, "%s: n_past after truncate", name);
        lfm2c_session_decode(a, ids + na + 2, n - na - 2, LFM2C_LOGITS_LAST, &err);
        double dt = test_maxabs(lfm2c_session_logits(a, 0), batch + (size_t)(n - 1) * V, V);
        CHECK(dt <= 1e-4, "%s: after truncate %g", name, dt);
        CHECK(lfm2c_session_truncate(a, 3, &err) == 0, "%s: truncate without checkpoint", name);
        lfm2c_session_decode(a, ids + 3, n - 3, LFM2C_LOGITS_LAST, &err);
        dt = test_maxabs(lfm2c_session_logits(a, 0), batch + (size_t)(n - 1) * V, V);
        CHECK(dt <= 1e-4, "%s: after truncate to 3: %g", name, dt);
        lfm2c_session_free(a);
        lfm2c_session_free(b);
    }

    /* a copied session continues exactly like its source (n choices share a prefill) */
    {
        lfm2c_session *a = lfm2c_session_new(fast, 64, &err), *c = lfm2c_session_new(fast, 8, &err);
        lfm2c_session *b = lfm2c_session_new(fast, 64, &err);
        int na = n / 2;
        lfm2c_session_decode(b, ids, 2, LFM2C_LOGITS_LAST, &err); /* b has a history to replace */
        lfm2c_session_decode(a, ids, na, LFM2C_LOGITS_LAST, &err);
        lfm2c_session_checkpoint(a);
        CHECK(lfm2c_session_copy(b, a, &err) == 0, "%s: copy: %s", name, err.msg);
        CHECK(lfm2c_session_n_past(b) == na && !memcmp(lfm2c_session_tokens(b), ids, sizeof(int32_t) * (size_t)na),
              "%s: the copy's history", name);
        CHECK(!memcmp(lfm2c_session_logits(b, 0), lfm2c_session_logits(a, 0), sizeof(float) * V), "%s: the copy's logits", name);
        lfm2c_session_decode(a, ids + na, n - na, LFM2C_LOGITS_LAST, &err);
        lfm2c_session_decode(b, ids + na, n - na, LFM2C_LOGITS_LAST, &err);
        CHECK(!memcmp(lfm2c_session_logits(b, 0), lfm2c_session_logits(a, 0), sizeof(float) * V),
              "%s: the copy continues bitwise like its source", name);
        CHECK(lfm2c_session_truncate(b, na + 1, &err) == 0 && lfm2c_session_n_past(b) == na + 1,
              "%s: the copy's checkpoints work: %s", name, err.msg);
        CHECK(n <= 8 || lfm2c_session_copy(c, a, &err) != 0, "%s: a copy into a too-small context fails", name);
        lfm2c_session_free(a);
        lfm2c_session_free(b);
        lfm2c_session_free(c);
    }
    free(batch); free(one); free(rb); free(ro); free(golden); free(ids);
    lfm2c_model_free(fast);
    lfm2c_model_free(ref);
    json_decref(g);
}

/* ---- bad files ------------------------------------------------------------------------------ */

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

/* Replaces the first occurrence of `from` by `to` (same length) in a copy of the fixture. */
static void expect_open_error_n(const char *what, const char *from, const char *to, size_t len,
                                size_t truncate_at, int want_code, const char *want_text) {
    size_t n = 0;
    char *buf = test_read_file("data/lfm2-tiny-dense-f32.gguf", &n);
    if (from) {
        char *p = memmem(buf, n, from, len);
        CHECK(p != NULL, "%s: pattern not found", what);
        if (p) memcpy(p, to, len);
    }
    if (truncate_at) n = truncate_at;
    write_file("/tmp/lfm2c_bad.gguf", buf, n);
    free(buf);
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open("/tmp/lfm2c_bad.gguf", NULL, &err);
    CHECK(m == NULL, "%s: opened a bad file", what);
    CHECK(err.code == want_code, "%s: code %d, want %d (%s)", what, err.code, want_code, err.msg);
    CHECK(strstr(err.msg, want_text) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, want_text);
    lfm2c_model_free(m);
}

/* patterns are literals that may hold NUL bytes: their length comes from sizeof */
#define expect_open_error(what, from, to, trunc, code, text) \
    expect_open_error_n(what, from, to, sizeof(from) - 1, trunc, code, text)

static void bad_files(void) {
    lfm2c_error err = {0};
    CHECK(lfm2c_model_open("data/no-such-file.gguf", NULL, &err) == NULL && err.code == LFM2C_EIO,
          "missing file: %s", err.msg);
    write_file("/tmp/lfm2c_bad.gguf", "this is not a gguf file at all, just text", 41);
    CHECK(lfm2c_model_open("/tmp/lfm2c_bad.gguf", NULL, &err) == NULL && strstr(err.msg, "not a GGUF"),
          "not a GGUF: %s", err.msg);
    expect_open_error_n("truncated data", NULL, NULL, 0, 3000000, LFM2C_EFORMAT, "past the end");
    expect_open_error_n("truncated header", NULL, NULL, 0, 5000, LFM2C_EFORMAT, "truncated");
    expect_open_error("unknown arch", "\x04\x00\x00\x00\x00\x00\x00\x00lfm2", "\x04\x00\x00\x00\x00\x00\x00\x00xfm9",
                      0, LFM2C_EUNSUPPORTED, "unknown architecture");
    expect_open_error("missing tensor", "blk.3.ffn_up.weight", "blk.3.ffn_uq.weight", 0, LFM2C_EFORMAT,
                      "missing tensor 'blk.3.ffn_up.weight'");
    /* tensor info: name, n_dims=2, ne0=64 -> 65 (shape), then type F32 (0) -> 77 (unknown) */
    expect_open_error("mis-shaped tensor", "blk.0.ffn_norm.weight\x01\x00\x00\x00\x40",
                      "blk.0.ffn_norm.weight\x01\x00\x00\x00\x20", 0, LFM2C_EFORMAT, "has shape");
    expect_open_error("unknown tensor type",
                      "blk.0.ffn_norm.weight\x01\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x00",
                      "blk.0.ffn_norm.weight\x01\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x4d",
                      0, LFM2C_EUNSUPPORTED, "unknown tensor type");

    /* context overflow and bad token ids are refused before anything changes */
    lfm2c_model *m = lfm2c_model_open("data/lfm2-tiny-dense-f32.gguf", NULL, &err);
    lfm2c_session *s = lfm2c_session_new(m, 8, &err);
    int32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(lfm2c_session_decode(s, ids, 10, LFM2C_LOGITS_LAST, &err) != 0 && err.code == LFM2C_ECONTEXT,
          "context overflow: %s", err.msg);
    CHECK(lfm2c_session_n_past(s) == 0, "state changed by a refused decode");
    int32_t bad = 1 << 20;
    CHECK(lfm2c_session_decode(s, &bad, 1, LFM2C_LOGITS_LAST, &err) != 0 && err.code == LFM2C_EINVAL,
          "bad token: %s", err.msg);
    lfm2c_session_free(s);
    lfm2c_model_free(m);
}

int main(void) {
    const char *fixtures[] = {"lfm2-tiny-dense-f32", "lfm2-tiny-moe-f32", "lfm2-tiny-dense-q8_0",
                              "lfm2-tiny-dense-q4_0", "lfm2-tiny-moe-q8_0", "lfm2-tiny-moe-q4_0",
                              "lfm2-kq-dense-q4_k_m", "lfm2-kq-moe-q4_k_m", "lfm2-kq-moe-q5_k_m",
                              "lfm2-kq-moe-q6_k"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) check_fixture(fixtures[i]);
    bad_files();
    TEST_MAIN_END();
}
