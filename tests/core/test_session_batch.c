/* test_session_batch.c — the session API of src/core/session.c seen from outside (include/lfm2c.h
 * only), on the fixture models of tests/data (dense and MoE, F32 and quantized; F16, F32 and Q8_0
 * KV caches): several sessions decoded in one lfm2c_decode_batch call give bitwise the logits
 * each gives alone (sessions at different positions, batches that span several forward calls,
 * items with no tokens); truncating to k tokens (with, without and with stale checkpoints) and
 * re-feeding gives bitwise the logits of a fresh prefill; lfm2c_session_copy gives an independent
 * session; bad arguments are refused with an error code and leave every session as it was.
 * (Prefix reuse lives in test_session.c.) */
#include "lfm2c.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

/* every dense F32 and MoE fixture, with the default F16 KV cache and the other cache types */
static const struct {
    const char *name;
    int kv;
} MODELS[] = {
    {"lfm2-tiny-dense-f32", LFM2C_KV_F16}, {"lfm2-tiny-dense-f32", LFM2C_KV_F32}, {"lfm2-tiny-moe-f32", LFM2C_KV_F16},
    {"lfm2-tiny-moe-q8_0", LFM2C_KV_F16},  {"lfm2-tiny-moe-q4_0", LFM2C_KV_F16},  {"lfm2-kq-moe-q4_k_m", LFM2C_KV_F16},
    {"lfm2-kq-moe-q4_k_m", LFM2C_KV_Q8_0}, {"lfm2-kq-moe-q5_k_m", LFM2C_KV_F16},  {"lfm2-kq-moe-q6_k", LFM2C_KV_F32},
};

static int V; /* vocabulary of the model under test */

/* Deterministic pseudo-random token ids in [1, V) (seeded per call site). */
static void make_ids(int32_t *ids, int n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 12345u;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = 1 + (int32_t)((x >> 8) % (uint32_t)(V - 1));
    }
}

static lfm2c_session *new_session(lfm2c_model *m, int n_ctx) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, n_ctx, &err);
    CHECK(s != NULL, "session_new(%d): %s", n_ctx, err.msg);
    return s;
}

/* Logits rows (copied, caller frees) of a fresh session fed ids[0..n) in one decode. */
static float *fresh_logits(lfm2c_model *m, const int32_t *ids, int n, int mode) {
    lfm2c_error err = {0};
    lfm2c_session *s = new_session(m, n + 8);
    if (!s) return NULL;
    int rc = lfm2c_session_decode(s, ids, n, mode, &err);
    CHECK(rc == 0, "fresh decode of %d: %s", n, err.msg);
    int rows = lfm2c_session_n_logits_rows(s);
    float *out = malloc(sizeof(float) * (size_t)V * (size_t)(rows ? rows : 1));
    for (int r = 0; r < rows; r++) memcpy(out + (size_t)r * V, lfm2c_session_logits(s, r), sizeof(float) * V);
    lfm2c_session_free(s);
    return out;
}

/* Does row `row` of s hold bitwise the logits `want`? */
static bool same_row(const lfm2c_session *s, int row, const float *want) {
    const float *l = lfm2c_session_logits(s, row);
    return l && want && !memcmp(l, want, sizeof(float) * V);
}

/* ---- batching ---- */

enum { NB = 5 };

/* Five sessions with different histories and prompt lengths (one with no new tokens) decoded
 * in one call, then one step each in one call: every row equals the session decoded alone. */
static void check_batch_equals_alone(lfm2c_model *m, const char *name) {
    const int hist[NB] = {0, 3, 0, 17, 9}, feed[NB] = {11, 1, 0, 6, 25};
    const int modes[NB] = {LFM2C_LOGITS_ALL, LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST, LFM2C_LOGITS_NONE, LFM2C_LOGITS_ALL};
    int32_t ids[NB][64];
    lfm2c_session *ss[NB];
    lfm2c_error err = {0};
    for (int i = 0; i < NB; i++) {
        make_ids(ids[i], 64, 100 + (uint32_t)i);
        ss[i] = new_session(m, 64);
        if (!ss[i]) return;
        if (hist[i]) CHECK(lfm2c_session_decode(ss[i], ids[i], hist[i], LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
    }
    const int32_t *tk[NB];
    for (int i = 0; i < NB; i++) tk[i] = ids[i] + hist[i];
    CHECK(lfm2c_decode_batch(ss, tk, feed, modes, NB, &err) == 0, "%s: batch of %d: %s", name, NB, err.msg);
    for (int i = 0; i < NB; i++) {
        CHECK(lfm2c_session_n_past(ss[i]) == hist[i] + feed[i], "%s: item %d n_past %d", name, i,
              lfm2c_session_n_past(ss[i]));
        CHECK(!memcmp(lfm2c_session_tokens(ss[i]), ids[i], sizeof(int32_t) * (size_t)(hist[i] + feed[i])),
              "%s: item %d history", name, i);
        int want_rows = modes[i] == LFM2C_LOGITS_ALL ? feed[i] : modes[i] == LFM2C_LOGITS_LAST && feed[i] > 0;
        CHECK(lfm2c_session_n_logits_rows(ss[i]) == want_rows, "%s: item %d has %d rows, want %d", name, i,
              lfm2c_session_n_logits_rows(ss[i]), want_rows);
        /* the same positions of one session fed alone, every row */
        float *alone = fresh_logits(m, ids[i], hist[i] + feed[i], LFM2C_LOGITS_ALL);
        int bad = 0;
        for (int r = 0; r < want_rows; r++) {
            int pos = modes[i] == LFM2C_LOGITS_ALL ? hist[i] + r : hist[i] + feed[i] - 1;
            bad += !same_row(ss[i], r, alone + (size_t)pos * V);
        }
        CHECK(bad == 0, "%s: item %d: %d of %d rows differ from the session alone", name, i, bad, want_rows);
        free(alone);
    }
    /* one decode step for all of them at once (the shape of continuous batching) */
    const int one[NB] = {1, 1, 1, 1, 1}, last[NB] = {1, 1, 1, 1, 1};
    for (int i = 0; i < NB; i++) tk[i] = ids[i] + hist[i] + feed[i];
    CHECK(lfm2c_decode_batch(ss, tk, one, last, NB, &err) == 0, "%s: step batch: %s", name, err.msg);
    for (int i = 0; i < NB; i++) {
        float *alone = fresh_logits(m, ids[i], hist[i] + feed[i] + 1, LFM2C_LOGITS_LAST);
        CHECK(same_row(ss[i], 0, alone), "%s: step of item %d differs from the session alone", name, i);
        free(alone);
        lfm2c_session_free(ss[i]);
    }
}

/* 3 x 230 tokens: more than one forward's worth (the batch is cut into several forwards, one
 * cut inside an item), still bitwise what each session computes alone. */
static void check_long_batch(lfm2c_model *m, const char *name) {
    enum { N = 230 };
    static int32_t ids[3][N];
    lfm2c_session *ss[3];
    const int32_t *tk[3];
    const int nn[3] = {N, N, N}, modes[3] = {LFM2C_LOGITS_LAST, LFM2C_LOGITS_ALL, LFM2C_LOGITS_LAST};
    for (int i = 0; i < 3; i++) {
        make_ids(ids[i], N, 7 + (uint32_t)i);
        tk[i] = ids[i];
        ss[i] = new_session(m, N + 8);
        if (!ss[i]) return;
    }
    lfm2c_error err = {0};
    CHECK(lfm2c_decode_batch(ss, tk, nn, modes, 3, &err) == 0, "%s: long batch: %s", name, err.msg);
    float *all = fresh_logits(m, ids[1], N, LFM2C_LOGITS_ALL);
    int bad = 0;
    for (int r = 0; r < N; r++) bad += !same_row(ss[1], r, all + (size_t)r * V);
    CHECK(bad == 0, "%s: long batch: %d of %d rows of the middle item differ", name, bad, N);
    free(all);
    for (int i = 0; i < 3; i += 2) {
        float *alone = fresh_logits(m, ids[i], N, LFM2C_LOGITS_LAST);
        CHECK(same_row(ss[i], 0, alone), "%s: long batch: item %d differs", name, i);
        free(alone);
    }
    for (int i = 0; i < 3; i++) lfm2c_session_free(ss[i]);
}

/* ---- truncation and checkpoints ---- */

/* s (holding ids[0..n_past) after a truncate) continues with ids[n_past..n): same last logits
 * as a fresh prefill of ids[0..n)? */
static bool continues_like_fresh(lfm2c_model *m, lfm2c_session *s, const int32_t *ids, int n) {
    lfm2c_error err = {0};
    int k = lfm2c_session_n_past(s);
    if (memcmp(lfm2c_session_tokens(s), ids, sizeof(int32_t) * (size_t)k)) return false;
    if (lfm2c_session_decode(s, ids + k, n - k, LFM2C_LOGITS_LAST, &err)) return false;
    float *want = fresh_logits(m, ids, n, LFM2C_LOGITS_LAST);
    bool ok = same_row(s, 0, want);
    free(want);
    return ok;
}

static void check_truncate(lfm2c_model *m, const char *name) {
    enum { N = 40 };
    int32_t ids[N], alt[N];
    make_ids(ids, N, 1);
    lfm2c_error err = {0};
    lfm2c_session *s = new_session(m, N + 8);
    if (!s) return;
    /* checkpoints at 8 and 20; truncate onto one, between them, before the first, to 0 */
    const int keep[] = {20, 14, 8, 5, 0, 33, 1};
    for (size_t t = 0; t < sizeof keep / sizeof keep[0]; t++) {
        lfm2c_session_reset(s);
        CHECK(lfm2c_session_decode(s, ids, 8, LFM2C_LOGITS_NONE, &err) == 0, "%s", err.msg);
        lfm2c_session_checkpoint(s);
        CHECK(lfm2c_session_decode(s, ids + 8, 12, LFM2C_LOGITS_NONE, &err) == 0, "%s", err.msg);
        lfm2c_session_checkpoint(s);
        CHECK(lfm2c_session_decode(s, ids + 20, N - 20, LFM2C_LOGITS_ALL, &err) == 0, "%s", err.msg);
        CHECK(lfm2c_session_truncate(s, keep[t], &err) == 0, "%s: truncate to %d: %s", name, keep[t], err.msg);
        CHECK(lfm2c_session_n_past(s) == keep[t], "%s: n_past %d after truncate to %d", name, lfm2c_session_n_past(s),
              keep[t]);
        CHECK(continues_like_fresh(m, s, ids, N), "%s: truncate to %d and re-feed differs from a fresh prefill", name,
              keep[t]);
    }
    /* truncating to the current length changes nothing */
    int rows = lfm2c_session_n_logits_rows(s);
    CHECK(lfm2c_session_truncate(s, N, &err) == 0 && lfm2c_session_n_past(s) == N &&
              lfm2c_session_n_logits_rows(s) == rows,
          "%s: truncate to n_past", name);

    /* a checkpoint of tokens that were truncated away must not be used later: checkpoint at
     * 20, cut back to 10, take another path to 30, then cut to 25 */
    memcpy(alt, ids, sizeof alt);
    make_ids(alt + 10, N - 10, 2);
    lfm2c_session_reset(s);
    CHECK(lfm2c_session_decode(s, ids, 20, LFM2C_LOGITS_NONE, &err) == 0, "%s", err.msg);
    lfm2c_session_checkpoint(s);
    CHECK(lfm2c_session_truncate(s, 10, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_decode(s, alt + 10, 20, LFM2C_LOGITS_NONE, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_truncate(s, 25, &err) == 0, "%s", err.msg);
    CHECK(continues_like_fresh(m, s, alt, N), "%s: a dropped checkpoint was reused", name);

    /* a checkpoint at every position (more than the session keeps): still exact */
    lfm2c_session_reset(s);
    for (int i = 0; i < N; i++) {
        CHECK(lfm2c_session_decode(s, ids + i, 1, LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
        lfm2c_session_checkpoint(s);
    }
    lfm2c_session_checkpoint(s); /* twice at one position */
    const int keep2[] = {39, 30, 12, 2};
    for (int t = 0; t < 4; t++) {
        CHECK(lfm2c_session_truncate(s, keep2[t], &err) == 0, "%s: %s", name, err.msg);
        CHECK(continues_like_fresh(m, s, ids, N), "%s: many checkpoints, truncate to %d differs", name, keep2[t]);
    }
    /* reset: the session starts over like a new one */
    lfm2c_session_reset(s);
    CHECK(lfm2c_session_n_past(s) == 0 && lfm2c_session_n_logits_rows(s) == 0, "%s: reset", name);
    CHECK(continues_like_fresh(m, s, alt, N), "%s: after reset", name);
    lfm2c_session_free(s);
}

/* ---- copy ---- */

static void check_copy(lfm2c_model *m, const char *name) {
    enum { N = 30 };
    int32_t ids[N], a2[N], b2[N];
    make_ids(ids, N, 3);
    memcpy(a2, ids, sizeof a2);
    memcpy(b2, ids, sizeof b2);
    make_ids(a2 + 12, N - 12, 4);
    make_ids(b2 + 12, N - 12, 5);
    lfm2c_error err = {0};
    lfm2c_session *src = new_session(m, N + 8), *dst = new_session(m, N + 8);
    if (!src || !dst) return;
    /* dst first holds a longer, different history with its own checkpoints: all replaced */
    CHECK(lfm2c_session_decode(dst, b2 + 1, 8, LFM2C_LOGITS_NONE, &err) == 0, "%s", err.msg);
    lfm2c_session_checkpoint(dst);
    CHECK(lfm2c_session_decode(dst, b2 + 9, N - 9, LFM2C_LOGITS_ALL, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_decode(src, ids, 6, LFM2C_LOGITS_NONE, &err) == 0, "%s", err.msg);
    lfm2c_session_checkpoint(src);
    CHECK(lfm2c_session_decode(src, ids + 6, 6, LFM2C_LOGITS_ALL, &err) == 0, "%s", err.msg);
    CHECK(lfm2c_session_copy(dst, src, &err) == 0, "%s: copy: %s", name, err.msg);
    CHECK(lfm2c_session_n_past(dst) == 12 && lfm2c_session_n_logits_rows(dst) == 6, "%s: copy n_past %d rows %d", name,
          lfm2c_session_n_past(dst), lfm2c_session_n_logits_rows(dst));
    int bad = 0;
    for (int r = 0; r < 6; r++) bad += !same_row(dst, r, lfm2c_session_logits(src, r));
    CHECK(bad == 0, "%s: %d copied logits rows differ", name, bad);
    CHECK(lfm2c_session_copy(dst, dst, &err) == 0 && lfm2c_session_n_past(dst) == 12, "%s: copy onto itself", name);
    /* the two go separate ways; the source is freed before the copy goes on */
    CHECK(continues_like_fresh(m, src, a2, N), "%s: the source after the copy", name);
    lfm2c_session_free(src);
    CHECK(continues_like_fresh(m, dst, b2, N), "%s: the copy", name);
    /* the copy has src's checkpoint at 6, not its own old one at 8 */
    CHECK(lfm2c_session_truncate(dst, 9, &err) == 0, "%s: %s", name, err.msg);
    CHECK(continues_like_fresh(m, dst, b2, N), "%s: the copy's checkpoints", name);
    /* copying an empty session empties the destination */
    lfm2c_session *empty = new_session(m, 4);
    CHECK(empty && lfm2c_session_copy(dst, empty, &err) == 0, "%s: copy of an empty session: %s", name, err.msg);
    CHECK(lfm2c_session_n_past(dst) == 0 && lfm2c_session_n_logits_rows(dst) == 0, "%s: the emptied copy", name);
    CHECK(continues_like_fresh(m, dst, a2, N), "%s: after copying an empty session", name);
    lfm2c_session_free(empty);
    lfm2c_session_free(dst);
}

/* ---- bad arguments ---- */

/* a session's observable state, to see that a refused call left it alone */
typedef struct {
    int n_past, rows;
    float first;
} snap;
static snap take(const lfm2c_session *s) {
    const float *l = lfm2c_session_logits(s, 0);
    return (snap){lfm2c_session_n_past(s), lfm2c_session_n_logits_rows(s), l ? l[0] : 0};
}
static bool same(snap a, snap b) {
    return a.n_past == b.n_past && a.rows == b.rows && !memcmp(&a.first, &b.first, sizeof a.first);
}

static void check_bad_arguments(lfm2c_model *m, lfm2c_model *other, const char *name) {
    int32_t ids[16];
    make_ids(ids, 16, 9);
    lfm2c_error err = {0};
    lfm2c_session *a = new_session(m, 12), *b = new_session(m, 12), *o = new_session(other, 12);
    if (!a || !b || !o) return;
    CHECK(lfm2c_session_decode(a, ids, 4, LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
    const snap sa = take(a), sb = take(b);
    const int32_t bad_tok[2] = {-1, 0};
    int32_t big_tok[1] = {(int32_t)V};

#define REFUSED(call, want, what) \
    do { \
        err = (lfm2c_error){0}; \
        int rc_ = (call); \
        CHECK(rc_ != 0 && err.code == (want) && err.msg[0], "%s: %s: rc %d code %d '%s'", name, what, rc_, err.code, \
              err.msg); \
        CHECK(same(take(a), sa) && same(take(b), sb), "%s: %s changed a session", name, what); \
    } while (0)

    REFUSED(lfm2c_session_decode(a, ids, -1, LFM2C_LOGITS_LAST, &err), LFM2C_EINVAL, "negative count");
    REFUSED(lfm2c_session_decode(a, bad_tok, 1, LFM2C_LOGITS_LAST, &err), LFM2C_EINVAL, "token -1");
    REFUSED(lfm2c_session_decode(a, big_tok, 1, LFM2C_LOGITS_LAST, &err), LFM2C_EINVAL, "token n_vocab");
    REFUSED(lfm2c_session_decode(a, ids, 9, LFM2C_LOGITS_LAST, &err), LFM2C_ECONTEXT, "past the context");
    REFUSED(lfm2c_session_decode(a, NULL, 2, LFM2C_LOGITS_LAST, &err), LFM2C_EINVAL, "NULL tokens");
    REFUSED(lfm2c_session_decode(NULL, ids, 2, LFM2C_LOGITS_LAST, &err), LFM2C_EINVAL, "NULL session");
    {
        lfm2c_session *ss[2] = {a, a};
        const int32_t *tk[2] = {ids, ids + 1};
        const int nn[2] = {1, 1}, modes[2] = {LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST};
        REFUSED(lfm2c_decode_batch(ss, tk, nn, modes, 2, &err), LFM2C_EINVAL, "a session twice in a batch");
        ss[1] = o;
        REFUSED(lfm2c_decode_batch(ss, tk, nn, modes, 2, &err), LFM2C_EINVAL, "sessions of two models");
        ss[1] = NULL;
        REFUSED(lfm2c_decode_batch(ss, tk, nn, modes, 2, &err), LFM2C_EINVAL, "a NULL session in a batch");
        /* a good item before a bad one: neither is touched (a wants every row of 6 tokens) */
        ss[0] = b;
        ss[1] = a;
        const int nn2[2] = {6, 1}, modes2[2] = {LFM2C_LOGITS_ALL, LFM2C_LOGITS_LAST};
        tk[1] = bad_tok;
        REFUSED(lfm2c_decode_batch(ss, tk, nn2, modes2, 2, &err), LFM2C_EINVAL, "a bad item after a good one");
        const int nn3[2] = {6, 9};
        tk[1] = ids;
        REFUSED(lfm2c_decode_batch(ss, tk, nn3, modes2, 2, &err), LFM2C_ECONTEXT,
                "an item past its context after a good one");
        REFUSED(lfm2c_decode_batch(NULL, tk, nn, modes, 2, &err), LFM2C_EINVAL, "NULL session array");
        REFUSED(lfm2c_decode_batch(ss, tk, NULL, modes, 2, &err), LFM2C_EINVAL, "NULL counts");
        REFUSED(lfm2c_decode_batch(ss, tk, nn, NULL, 2, &err), LFM2C_EINVAL, "NULL modes");
        REFUSED(lfm2c_decode_batch(ss, NULL, nn, modes, 2, &err), LFM2C_EINVAL, "NULL token array");
        err = (lfm2c_error){0};
        CHECK(lfm2c_decode_batch(ss, tk, nn, modes, 0, &err) == 0 && err.code == 0, "%s: an empty batch", name);
        CHECK(lfm2c_decode_batch(NULL, NULL, NULL, NULL, 0, &err) == 0, "%s: an empty batch of NULLs", name);
        /* refused without an error struct: no crash */
        CHECK(lfm2c_decode_batch(ss, tk, nn3, modes2, 2, NULL) != 0, "%s: refused with err NULL", name);
        CHECK(same(take(a), sa) && same(take(b), sb), "%s: a refusal with err NULL changed a session", name);
    }
    REFUSED(lfm2c_session_truncate(a, 5, &err), LFM2C_EINVAL, "truncate past n_past");
    REFUSED(lfm2c_session_truncate(a, -1, &err), LFM2C_EINVAL, "truncate to -1");
    REFUSED(lfm2c_session_truncate(NULL, 0, &err), LFM2C_EINVAL, "truncate NULL");
    REFUSED(lfm2c_session_copy(o, a, &err), LFM2C_EINVAL, "copy across models");
    REFUSED(lfm2c_session_copy(NULL, a, &err), LFM2C_EINVAL, "copy into NULL");
    REFUSED(lfm2c_session_copy(b, NULL, &err), LFM2C_EINVAL, "copy from NULL");
    {
        lfm2c_session *tiny = new_session(m, 2);
        err = (lfm2c_error){0};
        CHECK(tiny && lfm2c_session_copy(tiny, a, &err) != 0 && err.code == LFM2C_EINVAL,
              "%s: copy into a too small context: code %d", name, err.code);
        CHECK(tiny && lfm2c_session_n_past(tiny) == 0, "%s: the refused copy changed the destination", name);
        lfm2c_session_free(tiny);
    }
    CHECK(lfm2c_session_logits(a, -1) == NULL && lfm2c_session_logits(a, 1) == NULL, "%s: rows out of range", name);
    err = (lfm2c_error){0};
    CHECK(lfm2c_session_new(m, (1 << 22) + 1, &err) == NULL && err.code == LFM2C_EINVAL, "%s: a huge context", name);
    lfm2c_session *d = lfm2c_session_new(m, 0, &err);
    CHECK(d && lfm2c_session_n_ctx(d) > 0, "%s: n_ctx 0 takes the default", name);
    lfm2c_session_free(d);
    lfm2c_session_free(NULL);
    /* the refusals left a and b usable */
    CHECK(lfm2c_session_decode(a, ids + 4, 2, LFM2C_LOGITS_LAST, &err) == 0, "%s: a after refusals: %s", name, err.msg);
    float *want = fresh_logits(m, ids, 6, LFM2C_LOGITS_LAST);
    CHECK(same_row(a, 0, want), "%s: a after refusals computes differently", name);
    free(want);
    lfm2c_session_free(a);
    lfm2c_session_free(b);
    lfm2c_session_free(o);
#undef REFUSED
}

int main(void) {
    const int n_models = (int)(sizeof MODELS / sizeof MODELS[0]);
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    lfm2c_error err = {0};
    /* the second model of check_bad_arguments: any other fixture */
    lfm2c_model *other = lfm2c_model_open(DATA("lfm2-tiny-dense-q8_0.gguf"), &p, &err);
    CHECK(other != NULL, "open: %s", err.msg);
    for (int i = 0; i < n_models && other; i++) {
        char path[256], name[128];
        snprintf(path, sizeof path, DATA("%s.gguf"), MODELS[i].name);
        snprintf(name, sizeof name, "%s kv %s", MODELS[i].name, lfm2c_kv_type_name(MODELS[i].kv));
        p.type_k = p.type_v = MODELS[i].kv;
        lfm2c_model *m = lfm2c_model_open(path, &p, &err);
        CHECK(m != NULL, "%s: %s", name, err.msg);
        if (!m) continue;
        V = lfm2c_model_get_info(m)->n_vocab;
        check_batch_equals_alone(m, name);
        check_long_batch(m, name);
        check_truncate(m, name);
        check_copy(m, name);
        check_bad_arguments(m, other, name);
        lfm2c_model_free(m);
    }
    lfm2c_model_free(other);
    TEST_MAIN_END();
}
