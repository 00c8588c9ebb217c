/* test_embed.c — embeddings (src/core/embed.c, session.c's embedding mode, cpu/forward.c's rows):
 * on the F32 fixtures an embedding row is exactly what the output head reads (the file's tied
 * head times it gives the logits of a generating session); in one batch beside a generating
 * session both get what they get alone, bit for bit; lfm2c_embed's mean is the mean of every
 * row across its chunks, its last the last row, its normalization unit length; the mode keeps
 * the cache and comes back; bad arguments fail cleanly. */
#include "lfm2c.h"
#include "formats/gguf.h"
#include "formats/ggml_types.h"
#include "test.h"

#include <string.h>

static lfm2c_model *model;
static int V, H;

static void make_tokens(int32_t *t, int n, uint32_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = 1 + (int32_t)((seed >> 8) % (uint32_t)(V - 1));
    }
}

static lfm2c_session *new_session(int n_ctx, bool embeddings) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(model, n_ctx, &err);
    if (s && lfm2c_session_set_embeddings(s, embeddings, &err)) {
        lfm2c_session_free(s);
        s = NULL;
    }
    CHECK(s != NULL, "session: %s", err.msg);
    return s;
}

/* The file's tied output head (token_embd, F32 here) times the embedding row gives the logits. */
static void check_head(const char *path) {
    enum { N = 20 };
    int32_t t[N];
    make_tokens(t, N, 7);
    lfm2c_error err = {0};
    lfm2c_session *e = new_session(64, true), *g = new_session(64, false);
    gguf_file *f = gguf_open(path, &err);
    const gguf_tensor *w = f ? gguf_find_tensor(f, "token_embd.weight") : NULL;
    if (!e || !g || !w) {
        CHECK(0, "%s: setup: %s", path, err.msg);
        goto done;
    }
    CHECK(lfm2c_session_decode(e, t, N, LFM2C_LOGITS_ALL, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_decode(g, t, N, LFM2C_LOGITS_ALL, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_logits(e, 0) == NULL && lfm2c_session_embedding(g, 0) == NULL, "rows of the other kind");
    float *row = malloc(sizeof(float) * (size_t)H);
    double worst = 0, scale = 1;
    for (int r = 0; r < N; r++) {
        const float *emb = lfm2c_session_embedding(e, r), *lg = lfm2c_session_logits(g, r);
        for (int v = 0; v < V; v++) {
            dequantize_row(w->type, w->data + (size_t)v * (w->nbytes / (size_t)V), row, H);
            double dot = 0;
            for (int i = 0; i < H; i++) dot += (double)row[i] * emb[i];
            if (fabs(dot - lg[v]) > worst) worst = fabs(dot - lg[v]);
            if (fabs(dot) > scale) scale = fabs(dot);
        }
    }
    CHECK(worst <= 1e-4 * scale, "%s: head x embedding differs from the logits by %g (scale %g)", path, worst, scale);
    free(row);
done:
    gguf_close(f);
    lfm2c_session_free(e);
    lfm2c_session_free(g);
}

/* An embedding session and a generating one in one batch get what each gets alone. */
static void check_batch(void) {
    enum { N = 33 };
    int32_t a[N], b[N];
    make_tokens(a, N, 11);
    make_tokens(b, N, 12);
    lfm2c_error err = {0};
    lfm2c_session *e1 = new_session(64, true), *g1 = new_session(64, false);
    lfm2c_session *e2 = new_session(64, true), *g2 = new_session(64, false);
    if (!e1 || !g1 || !e2 || !g2) goto done;
    lfm2c_session *ss[2] = {e1, g1};
    const int32_t *ts[2] = {a, b};
    int ns[2] = {N, N}, modes[2] = {LFM2C_LOGITS_ALL, LFM2C_LOGITS_LAST};
    CHECK(lfm2c_decode_batch(ss, ts, ns, modes, 2, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_decode(e2, a, N, LFM2C_LOGITS_ALL, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_decode(g2, b, N, LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
    bool same = true;
    for (int r = 0; r < N; r++)
        same &= !memcmp(lfm2c_session_embedding(e1, r), lfm2c_session_embedding(e2, r), sizeof(float) * (size_t)H);
    CHECK(same, "embedding rows in a batch differ from alone");
    CHECK(!memcmp(lfm2c_session_logits(g1, 0), lfm2c_session_logits(g2, 0), sizeof(float) * (size_t)V),
          "logits beside an embedding session differ from alone");
done:
    lfm2c_session_free(e1);
    lfm2c_session_free(g1);
    lfm2c_session_free(e2);
    lfm2c_session_free(g2);
}

/* lfm2c_embed against the rows of one decode: the mean over 700 tokens (two chunks), the last. */
static void check_pooling(void) {
    enum { N = 700 };
    int32_t *t = malloc(sizeof *t * N);
    float *mean = malloc(sizeof(float) * (size_t)H), *last = malloc(sizeof(float) * (size_t)H),
          *want = calloc((size_t)H, sizeof(float));
    make_tokens(t, N, 99);
    lfm2c_error err = {0};
    lfm2c_session *ref = new_session(N, true), *s = new_session(N, false);
    if (!ref || !s) goto done;
    CHECK(lfm2c_session_decode(ref, t, N, LFM2C_LOGITS_ALL, &err) == 0, "%s", err.msg);
    double *sum = calloc((size_t)H, sizeof *sum);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < H; i++) sum[i] += lfm2c_session_embedding(ref, r)[i];
    for (int i = 0; i < H; i++) want[i] = (float)(sum[i] / N);
    free(sum);
    CHECK(lfm2c_embed(s, t, N, LFM2C_POOL_MEAN, false, mean, &err) == 0, "mean: %s", err.msg);
    CHECK(test_maxabs(mean, want, (size_t)H) < 1e-5, "mean pooling differs by %g", test_maxabs(mean, want, (size_t)H));
    CHECK(lfm2c_embed(s, t, N, LFM2C_POOL_LAST, false, last, &err) == 0, "last: %s", err.msg);
    CHECK(!memcmp(last, lfm2c_session_embedding(ref, N - 1), sizeof(float) * (size_t)H), "last pooling != last row");
    CHECK(lfm2c_session_n_past(s) == N && lfm2c_session_logits(s, 0) == NULL, "the session keeps the tokens");
    /* normalized: unit length, the same direction */
    CHECK(lfm2c_embed(s, t, N, LFM2C_POOL_LAST, true, mean, &err) == 0, "%s", err.msg);
    double n2 = 0, dot = 0, l2 = 0;
    for (int i = 0; i < H; i++)
        n2 += (double)mean[i] * mean[i], dot += (double)mean[i] * last[i], l2 += (double)last[i] * last[i];
    CHECK(fabs(n2 - 1) < 1e-5 && fabs(dot - sqrt(l2)) < 1e-4 * sqrt(l2), "normalized: |v|^2 %g, cos %g", n2,
          dot / sqrt(l2));
done:
    lfm2c_session_free(ref);
    lfm2c_session_free(s);
    free(t);
    free(mean);
    free(last);
    free(want);
}

/* Switching the mode keeps the cache: embed a prompt, then generate from it. */
static void check_switch(void) {
    enum { N = 24 };
    int32_t t[N + 1];
    make_tokens(t, N + 1, 5);
    lfm2c_error err = {0};
    lfm2c_session *s = new_session(64, true), *g = new_session(64, false);
    if (!s || !g) goto done;
    CHECK(lfm2c_session_decode(s, t, N, LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_set_embeddings(s, false, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_decode(s, t + N, 1, LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_decode(g, t, N + 1, LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_logits(s, 0) &&
              !memcmp(lfm2c_session_logits(s, 0), lfm2c_session_logits(g, 0), sizeof(float) * (size_t)V),
          "logits after a switch differ from a plain read");
done:
    lfm2c_session_free(s);
    lfm2c_session_free(g);
}

static void check_errors(void) {
    int32_t t[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float *out = malloc(sizeof(float) * (size_t)H);
    lfm2c_error err = {0};
    lfm2c_session *s = new_session(4, false);
    if (s) {
        CHECK(lfm2c_embed(s, t, 0, LFM2C_POOL_LAST, true, out, &err) == -1 && err.code == LFM2C_EINVAL, "n = 0");
        CHECK(lfm2c_embed(s, t, 8, LFM2C_POOL_LAST, true, out, &err) == -1 && err.code == LFM2C_EINVAL, "n > context");
        CHECK(lfm2c_embed(s, t, 2, 7, true, out, &err) == -1 && err.code == LFM2C_EINVAL, "unknown pooling");
        CHECK(lfm2c_embed(s, t, 2, LFM2C_POOL_MEAN, true, NULL, &err) == -1, "NULL out");
        CHECK(lfm2c_embed(s, t, 4, LFM2C_POOL_MEAN, true, out, &err) == 0, "the whole context: %s", err.msg);
    }
    float z[3] = {0, 0, 0};
    lfm2c_embedding_normalize(z, 3);
    CHECK(z[0] == 0 && z[1] == 0 && z[2] == 0, "a zero vector stays zero");
    lfm2c_session_free(s);
    free(out);
}

static bool open_model(const char *path) {
    lfm2c_error err = {0};
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    model = lfm2c_model_open(path, &p, &err);
    CHECK(model != NULL, "%s: %s", path, err.msg);
    if (!model) return false;
    V = lfm2c_model_get_info(model)->n_vocab;
    H = lfm2c_model_get_info(model)->n_embd;
    return true;
}

int main(void) {
    const char *f32[] = {DATA("lfm2-tiny-dense-f32.gguf"), DATA("lfm2-tiny-moe-f32.gguf")};
    for (int i = 0; i < 2; i++) {
        if (!open_model(f32[i])) continue;
        check_head(f32[i]);
        check_batch();
        check_pooling();
        check_switch();
        check_errors();
        lfm2c_model_free(model);
    }
    if (open_model(DATA("lfm2-kq-moe-q4_k_m.gguf"))) { /* the quantized products' paths */
        check_batch();
        check_pooling();
        check_switch();
        lfm2c_model_free(model);
    }
    TEST_MAIN_END();
}
