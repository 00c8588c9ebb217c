/* test_session.c — prompt-prefix reuse (lfm2c_session_reusable / lfm2c_session_sync in
 * src/core/session.c, checkpoints in src/core/checkpoint.c) on the tiny dense fixture: after a
 * sync the session resumes at the newest checkpoint within the common prefix (every kept token is
 * one not computed again), and feeding the rest gives the same logits, bit for bit, as a fresh
 * session that read the whole prompt; with conv checkpoints before, at and after the prefix, none,
 * nothing in common; checkpoints taken inside one forward (every N positions, after an end of
 * turn, in a batch of two sessions), a whole prompt answered from its kept logits with no token
 * fed, the count and bytes bounded under thinning, copies keeping them. */
#include "lfm2c.h"
#include "test.h"

#include <string.h>

enum { N = 48 };

static lfm2c_model *model;
static int n_vocab;

/* A prompt of n token ids from seed (ids 1..n_vocab-1, deterministic). */
static void make_tokens(int32_t *t, int n, uint32_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = 1 + (int32_t)((seed >> 8) % (uint32_t)(n_vocab - 1));
    }
}

/* The logits of the last token of tokens[0..n) read by a fresh session, in one decode. */
static float *fresh_logits(const int32_t *tokens, int n) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(model, 256, &err);
    float *out = malloc(sizeof(float) * (size_t)n_vocab);
    if (!s || !out || lfm2c_session_decode(s, tokens, n, LFM2C_LOGITS_LAST, &err)) {
        fprintf(stderr, "fresh decode: %s\n", err.msg);
        free(out);
        lfm2c_session_free(s);
        return NULL;
    }
    memcpy(out, lfm2c_session_logits(s, 0), sizeof(float) * (size_t)n_vocab);
    lfm2c_session_free(s);
    return out;
}

/* A session that read `a` (checkpoints after each of ckpt[0..n_ckpt)) and then `extra` more
 * tokens of its own, as a conversation that went on past the shared part. */
static lfm2c_session *session_after(const int32_t *a, int n, const int *ckpt, int n_ckpt, const int32_t *extra,
                                    int n_extra) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(model, 256, &err);
    int at = 0;
    for (int i = 0; s && i <= n_ckpt; i++) {
        int to = i < n_ckpt ? ckpt[i] : n;
        if (to > at && lfm2c_session_decode(s, a + at, to - at, LFM2C_LOGITS_LAST, &err)) break;
        if (i < n_ckpt) lfm2c_session_checkpoint(s);
        at = to;
    }
    if (s && n_extra) lfm2c_session_decode(s, extra, n_extra, LFM2C_LOGITS_LAST, &err);
    return s;
}

/* Syncs s to b[0..n), expects `want` kept, feeds the rest and compares with a fresh read. */
static void sync_and_compare(const char *what, lfm2c_session *s, const int32_t *b, int n, int want) {
    lfm2c_error err = {0};
    int probe = lfm2c_session_reusable(s, b, n), past = lfm2c_session_n_past(s), kept = -1;
    CHECK(probe == want, "%s: reusable %d, want %d", what, probe, want);
    CHECK(lfm2c_session_n_past(s) == past, "%s: reusable changed the session", what);
    int rc = lfm2c_session_sync(s, b, n, &kept, &err);
    CHECK(rc == 0, "%s: sync: %s", what, err.msg);
    CHECK(kept == want && lfm2c_session_n_past(s) == want, "%s: kept %d (n_past %d), want %d", what, kept,
          lfm2c_session_n_past(s), want);
    if (rc || kept < 0) return;
    CHECK(!memcmp(lfm2c_session_tokens(s), b, sizeof(int32_t) * (size_t)kept), "%s: history is not the prefix", what);
    rc = lfm2c_session_decode(s, b + kept, n - kept, LFM2C_LOGITS_LAST, &err);
    CHECK(rc == 0, "%s: decode the rest: %s", what, err.msg);
    float *ref = fresh_logits(b, n);
    const float *got = lfm2c_session_logits(s, 0);
    CHECK(ref && got && !memcmp(ref, got, sizeof(float) * (size_t)n_vocab),
          "%s: logits differ from a fresh prefill (max |d| %g)", what,
          ref && got ? test_maxabs(ref, got, (size_t)n_vocab) : -1.0);
    free(ref);
}


/* A session with the policy (every, max, logits) that read tokens[0..n) in ONE decode. */
static lfm2c_session *session_policy(const int32_t *t, int n, int every, int max, int logits) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(model, 512, &err);
    CHECK(s && lfm2c_session_set_checkpoints(s, every, max, logits, &err) == 0, "policy: %s", err.msg);
    CHECK(s && lfm2c_session_decode(s, t, n, LFM2C_LOGITS_LAST, &err) == 0, "decode: %s", err.msg);
    return s;
}

/* Checkpoints taken inside one forward: every 8 positions, and after an end-of-turn token. */
static void snaps_in_forward(const int32_t *a, const int32_t *b, const int32_t *extra) {
    int32_t x[N + 8];
    memcpy(x, a, sizeof(int32_t) * N);
    memcpy(x + N, extra, sizeof(int32_t) * 8);
    lfm2c_session *s = session_policy(x, N + 8, 8, 64, 0);
    int count = 0;
    size_t bytes = 0;
    lfm2c_session_checkpoint_usage(s, &count, &bytes);
    CHECK(count == (N + 8) / 8, "%d checkpoints in one forward, want %d", count, (N + 8) / 8);
    CHECK(count > 0 && bytes % (size_t)count == 0 && bytes > 0, "%zu bytes for %d checkpoints", bytes, count);
    sync_and_compare("every 8, parting at 30", s, b, N, 24);
    lfm2c_session_free(s);

    /* an end-of-turn token at 12: a checkpoint right after it, whatever the spacing */
    int32_t t[N];
    memcpy(t, a, sizeof t);
    int32_t eot = -1;
    for (int32_t i = 0; i < n_vocab && eot < 0; i++)
        if (lfm2c_token_is_eog(model, i)) eot = i;
    CHECK(eot >= 0, "the fixture has no end-of-generation token");
    if (eot < 0) return;
    t[12] = eot;
    int32_t u[N];
    memcpy(u, t, sizeof u);
    u[20] = u[20] % (n_vocab - 1) + 1;
    s = session_policy(t, N, 64, 64, 0);
    sync_and_compare("after an end of turn", s, u, N, 13);
    lfm2c_session_free(s);
}

/* Two sessions in one batch each get their own checkpoints (their positions differ). */
static void snaps_batched(const int32_t *a, const int32_t *b) {
    lfm2c_error err = {0};
    lfm2c_session *s[2];
    for (int i = 0; i < 2; i++) {
        s[i] = lfm2c_session_new(model, 256, &err);
        lfm2c_session_set_checkpoints(s[i], 5, 64, 0, &err);
    }
    CHECK(lfm2c_session_decode(s[1], a, 3, LFM2C_LOGITS_NONE, &err) == 0, "%s", err.msg); /* offset by 3 */
    const int32_t *toks[2] = {a, a + 3};
    int ns[2] = {N, N - 3}, modes[2] = {LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST};
    CHECK(lfm2c_decode_batch(s, toks, ns, modes, 2, &err) == 0, "batch: %s", err.msg);
    sync_and_compare("batched, first", s[0], b, N, 30);
    sync_and_compare("batched, second", s[1], b, N, 30);
    for (int i = 0; i < 2; i++) lfm2c_session_free(s[i]);
}

/* The whole prompt held with its logits: nothing fed, and the sequence goes on exactly. */
static void logits_kept(const int32_t *a, const int32_t *extra) {
    lfm2c_error err = {0};
    lfm2c_session *s = session_policy(a, N, 16, 64, 2);
    lfm2c_session_checkpoint(s); /* the prompt's end, with its logits */
    CHECK(lfm2c_session_decode(s, extra, 8, LFM2C_LOGITS_LAST, &err) == 0, "answer: %s", err.msg);
    lfm2c_session_checkpoint(s);
    for (int round = 0; round < 2; round++) { /* twice: restoring keeps the checkpoint */
        CHECK(lfm2c_session_reusable(s, a, N) == N, "reusable %d, want the whole %d", lfm2c_session_reusable(s, a, N),
              N);
        int kept = -1;
        CHECK(lfm2c_session_sync(s, a, N, &kept, &err) == 0 && kept == N, "sync kept %d: %s", kept, err.msg);
        float *ref = fresh_logits(a, N);
        const float *got = lfm2c_session_logits(s, 0);
        CHECK(lfm2c_session_n_logits_rows(s) == 1 && ref && got && !memcmp(ref, got, sizeof(float) * (size_t)n_vocab),
              "kept logits differ from a fresh read");
        free(ref);
        CHECK(lfm2c_session_decode(s, extra, 8, LFM2C_LOGITS_LAST, &err) == 0, "go on: %s", err.msg);
        int32_t all[N + 8];
        memcpy(all, a, sizeof(int32_t) * N);
        memcpy(all + N, extra, sizeof(int32_t) * 8);
        ref = fresh_logits(all, N + 8);
        got = lfm2c_session_logits(s, 0);
        CHECK(ref && got && !memcmp(ref, got, sizeof(float) * (size_t)n_vocab), "the restored state differs");
        free(ref);
    }
    /* a copy keeps them */
    lfm2c_session *d = lfm2c_session_new(model, 256, &err);
    lfm2c_session_set_checkpoints(d, 16, 64, 2, &err);
    CHECK(lfm2c_session_copy(d, s, &err) == 0, "copy: %s", err.msg);
    CHECK(lfm2c_session_reusable(d, a, N) == N, "the copy lost the kept logits");
    /* a session that keeps no logits does not answer from them */
    lfm2c_session_set_checkpoints(d, 16, 64, 0, &err);
    CHECK(lfm2c_session_reusable(d, a, N) == 32, "without logits: %d, want 32", lfm2c_session_reusable(d, a, N));
    lfm2c_session_free(d);
    lfm2c_session_free(s);
}

/* A long sequence under a small bound: the count and bytes stay bounded, the newest checkpoints
 * stay dense and the spacing grows with the distance; a prompt parting late re-feeds little. */
static void thinning(const int32_t *a) {
    enum { L = 240 };
    int32_t t[L], u[L];
    for (int i = 0; i < L; i++) t[i] = a[i % N] ^ (i / N);
    for (int i = 0; i < L; i++) t[i] = 1 + t[i] % (n_vocab - 1);
    memcpy(u, t, sizeof u);
    u[L - 10] = u[L - 10] % (n_vocab - 1) + 1; /* parts 10 before the end */
    lfm2c_session *s = session_policy(t, L, 4, 8, 0);
    int count = 0;
    size_t bytes = 0, one = 0;
    lfm2c_session_checkpoint_usage(s, &count, &bytes);
    CHECK(count == 8, "%d checkpoints, want the bound 8", count);
    lfm2c_session *e = session_policy(t, 4, 4, 8, 0);
    int c1 = 0;
    lfm2c_session_checkpoint_usage(e, &c1, &one);
    CHECK(c1 == 1 && bytes == 8 * one, "%zu bytes for 8 checkpoints of %zu", bytes, one);
    lfm2c_session_free(e);
    int kept = lfm2c_session_reusable(s, u, L);
    CHECK(kept >= L - 10 - 8, "parting 10 before the end of %d resumes at %d", L, kept);
    sync_and_compare("thinned", s, u, L, kept);
    lfm2c_session_free(s);
}

int main(void) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    model = lfm2c_model_open(DATA("lfm2-tiny-dense-f32.gguf"), &mp, &err);
    CHECK(model != NULL, "open: %s", err.msg);
    if (!model) TEST_MAIN_END();
    n_vocab = lfm2c_vocab_size(model);

    int32_t a[N], b[N], extra[8];
    make_tokens(a, N, 7);
    make_tokens(extra, 8, 99);
    memcpy(b, a, sizeof b);
    make_tokens(b + 30, N - 30, 1234); /* b shares a's first 30 tokens */
    CHECK(b[30] != a[30], "the prompts should part at 30");

    /* checkpoints before the shared prefix: resume at 20, feed 20..48 */
    const int before[2] = {10, 20};
    lfm2c_session *s = session_after(a, N, before, 2, extra, 8);
    sync_and_compare("checkpoint before the prefix", s, b, N, 20);
    lfm2c_session_free(s);

    /* a checkpoint exactly at the prefix's end, and later ones that must be dropped */
    const int at[3] = {30, 36, 42};
    s = session_after(a, N, at, 3, extra, 8);
    sync_and_compare("checkpoint at the prefix", s, b, N, 30);
    lfm2c_session_free(s);

    /* no checkpoint at all: nothing can be kept (the conv state needs position 0) */
    s = session_after(a, N, NULL, 0, extra, 8);
    sync_and_compare("no checkpoint", s, b, N, 0);
    lfm2c_session_free(s);

    /* the session holds exactly the prompt, no logits kept: the newest checkpoint short of the end */
    s = session_after(a, N, at, 1, NULL, 0);
    sync_and_compare("whole prompt held", s, a, N, 30);
    lfm2c_session_free(s);

    /* the prompt extends what the session holds (a follow-up turn) */
    const int upto[3] = {10, 20, 30};
    s = session_after(a, 30, upto, 3, NULL, 0);
    sync_and_compare("follow-up", s, b, N, 30);
    lfm2c_session_free(s);

    /* nothing in common: the session is reset */
    int32_t c[N];
    make_tokens(c, N, 555);
    if (c[0] == a[0]) c[0] = a[0] % (n_vocab - 1) + 1;
    s = session_after(a, N, before, 2, extra, 8);
    sync_and_compare("nothing in common", s, c, N, 0);
    lfm2c_session_free(s);

    /* an empty session and a one-token prompt: nothing can be kept */
    s = lfm2c_session_new(model, 256, &err);
    sync_and_compare("empty session", s, a, 1, 0);
    lfm2c_session_free(s);

    snaps_in_forward(a, b, extra);
    snaps_batched(a, b);
    logits_kept(a, extra);
    thinning(a);

    lfm2c_model_free(model);
    TEST_MAIN_END();
}
