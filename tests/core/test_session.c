/* test_session.c — prompt-prefix reuse (lfm2c_session_reusable / lfm2c_session_sync in
 * src/core/session.c) on the tiny dense fixture: after a sync the session holds the longest
 * usable prefix, and feeding the rest gives the same logits, bit for bit, as a fresh session
 * that read the whole prompt; with conv checkpoints before, at and after the kept prefix, with
 * nothing in common, and with the whole prompt already held (its last token is fed again). */
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

    /* checkpoints before the shared prefix: restore at 20, re-feed 20..30 */
    const int before[2] = {10, 20};
    lfm2c_session *s = session_after(a, N, before, 2, extra, 8);
    sync_and_compare("checkpoint before the prefix", s, b, N, 30);
    lfm2c_session_free(s);

    /* a checkpoint exactly at the prefix's end, and later ones that must be dropped */
    const int at[3] = {30, 36, 42};
    s = session_after(a, N, at, 3, extra, 8);
    sync_and_compare("checkpoint at the prefix", s, b, N, 30);
    lfm2c_session_free(s);

    /* no checkpoint at all: the conv state is rebuilt from position 0 */
    s = session_after(a, N, NULL, 0, extra, 8);
    sync_and_compare("no checkpoint", s, b, N, 30);
    lfm2c_session_free(s);

    /* the session holds exactly the prompt: all but its last token are kept */
    s = session_after(a, N, at, 1, NULL, 0);
    sync_and_compare("whole prompt held", s, a, N, N - 1);
    lfm2c_session_free(s);

    /* the prompt extends what the session holds (a follow-up turn): nothing to re-feed */
    s = session_after(a, 30, before, 2, NULL, 0);
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

    lfm2c_model_free(model);
    TEST_MAIN_END();
}
