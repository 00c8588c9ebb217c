/* test_spec.c — speculative decoding (src/core/spec.c) and exact rollback (lfm2c_session_mark /
 * lfm2c_session_rollback in src/core/session.c) on the tiny fixtures, which share one 8192-token
 * vocabulary:
 *   - rollback: after a verification forward over k+1 tokens, rolling back to any point and
 *     feeding on gives bitwise the logits of a fresh prefill (dense and MoE; inside the trail,
 *     and before it, where it falls back to truncate);
 *   - temperature 0: the output is token for token the plain greedy loop's with a fixture as its
 *     own draft (every drafted token accepted), with a different fixture as the draft (part
 *     accepted), and with prompt lookup on a repetitive prompt (some accepted); draft-min and
 *     draft-max are obeyed; several sequences drafting in one lfm2c_spec_draft_batch draft
 *     what each drafts alone;
 *   - temperature > 0: the joint histogram of the first two tokens out of the speculative loop
 *     over 6000 seeds against the exact distribution of the target's sampler (computed from its
 *     logits), with a chi-square bound (also with draft-p-min cutting drafts short); the same
 *     bound passes for the plain sampler and fails for
 *     a loop that accepts every drafted token (the draft's distribution), so it can fail;
 *   - a draft model whose vocabulary differs is refused with a clear error. */
#include "lfm2c.h"
#include "test.h"
#include "convert/synth.h"
#include "core/spec.h"

#include <string.h>
#include <unistd.h>

static lfm2c_model *open_model(const char *path) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    lfm2c_model *m = lfm2c_model_open(path, &mp, &err);
    if (!m) fprintf(stderr, "%s: %s\n", path, err.msg);
    return m;
}

static void make_ids(int32_t *t, int n, uint32_t seed, int V) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = 1 + (int32_t)((seed >> 8) % (uint32_t)(V - 1));
    }
}

/* ---- rollback ------------------------------------------------------------------------------ */

static bool fresh_equal(lfm2c_model *m, const int32_t *ids, int n, const float *got) {
    lfm2c_error err = {0};
    int V = lfm2c_vocab_size(m);
    lfm2c_session *f = lfm2c_session_new(m, 256, &err);
    bool ok = f && !lfm2c_session_decode(f, ids, n, LFM2C_LOGITS_LAST, &err) &&
              !memcmp(lfm2c_session_logits(f, 0), got, sizeof(float) * (size_t)V);
    lfm2c_session_free(f);
    return ok;
}

static void test_rollback(const char *path) {
    lfm2c_model *m = open_model(path);
    CHECK(m != NULL, "open %s", path);
    if (!m) return;
    int V = lfm2c_vocab_size(m);
    enum { P = 21, K = 8 };
    int32_t ids[P + K + 1], next[1];
    make_ids(ids, P + K + 1, 7, V);
    make_ids(next, 1, 99, V);
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 256, &err);
    for (int keep = P - 3; keep <= P + K + 1; keep++) { /* P - 3 .. P - 1: before the mark */
        lfm2c_session_reset(s);
        int rc = lfm2c_session_decode(s, ids, P, LFM2C_LOGITS_LAST, &err);
        rc |= lfm2c_session_mark(s, K + 1, &err);
        rc |= lfm2c_session_decode(s, ids + P, K + 1, LFM2C_LOGITS_ALL, &err);
        rc |= lfm2c_session_rollback(s, keep, &err);
        CHECK(rc == 0 && lfm2c_session_n_past(s) == keep, "%s keep %d: %s", path, keep, err.msg);
        int32_t seq[P + K + 2];
        memcpy(seq, ids, sizeof(int32_t) * (size_t)keep);
        seq[keep] = next[0];
        rc = lfm2c_session_decode(s, next, 1, LFM2C_LOGITS_LAST, &err);
        CHECK(rc == 0 && fresh_equal(m, seq, keep + 1, lfm2c_session_logits(s, 0)),
              "%s: rollback to %d then one token differs from a fresh prefill", path, keep);
    }
    /* past the trail's columns: the state at the mark and a re-feed (what a device backend does) */
    lfm2c_session_reset(s);
    int rt = lfm2c_session_decode(s, ids, P, LFM2C_LOGITS_LAST, &err) | lfm2c_session_mark(s, 2, &err);
    rt |= lfm2c_session_decode(s, ids + P, K, LFM2C_LOGITS_ALL, &err) | lfm2c_session_rollback(s, P + 5, &err);
    rt |= lfm2c_session_decode(s, ids + P + 5, 1, LFM2C_LOGITS_LAST, &err);
    CHECK(rt == 0 && fresh_equal(m, ids, P + 6, lfm2c_session_logits(s, 0)), "%s: rollback past the trail's columns",
          path);
    /* a mark reaching past the context is cut to what can still be fed */
    lfm2c_session *small = lfm2c_session_new(m, P + 2, &err);
    int rs = lfm2c_session_decode(small, ids, P, LFM2C_LOGITS_LAST, &err) | lfm2c_session_mark(small, 40, &err);
    rs |= lfm2c_session_decode(small, ids + P, 2, LFM2C_LOGITS_ALL, &err) | lfm2c_session_rollback(small, P + 1, &err);
    CHECK(rs == 0 && lfm2c_session_n_past(small) == P + 1, "mark past the context: %s", err.msg);
    lfm2c_session_free(small);
    /* a second verify after a rollback, then a rollback into it */
    lfm2c_session_reset(s);
    int rc = lfm2c_session_decode(s, ids, P, LFM2C_LOGITS_LAST, &err);
    rc |= lfm2c_session_mark(s, 4, &err) | lfm2c_session_decode(s, ids + P, 4, LFM2C_LOGITS_ALL, &err);
    rc |= lfm2c_session_rollback(s, P + 2, &err);
    rc |= lfm2c_session_mark(s, 4, &err) | lfm2c_session_decode(s, ids + P + 2, 4, LFM2C_LOGITS_ALL, &err);
    rc |= lfm2c_session_rollback(s, P + 3, &err);
    rc |= lfm2c_session_decode(s, ids + P + 3, 1, LFM2C_LOGITS_LAST, &err);
    CHECK(rc == 0 && fresh_equal(m, ids, P + 4, lfm2c_session_logits(s, 0)), "%s: two verifies and rollbacks", path);
    CHECK(lfm2c_session_rollback(s, lfm2c_session_n_past(s) + 1, &err) == -1 && err.code == LFM2C_EINVAL,
          "rollback past the end refused");
    lfm2c_session_free(s);
    lfm2c_model_free(m);
}

/* ---- temperature 0 ------------------------------------------------------------------------- */

/* n tokens of the plain loop (sample, feed) after the prompt */
static void plain_greedy(lfm2c_model *m, const int32_t *prompt, int np, int n, int32_t *out) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 512, &err);
    lfm2c_sampler_params sp = lfm2c_sampler_default_params();
    sp.temperature = 0;
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, lfm2c_vocab_size(m));
    lfm2c_session_decode(s, prompt, np, LFM2C_LOGITS_LAST, &err);
    for (int i = 0; i < n; i++) {
        out[i] =
            lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s), lfm2c_session_n_past(s));
        lfm2c_session_decode(s, &out[i], 1, LFM2C_LOGITS_LAST, &err);
    }
    lfm2c_sampler_free(smp);
    lfm2c_session_free(s);
}

/* n tokens of the speculative loop; the speculator's counts in *st */
static bool spec_greedy(lfm2c_model *m, lfm2c_model *draft, const lfm2c_spec_params *p, const int32_t *prompt, int np,
                        int n, int32_t *out, lfm2c_spec_stats *st) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 512, &err);
    lfm2c_spec *spec = lfm2c_spec_new(m, draft, 512, p, &err);
    lfm2c_sampler_params sp = lfm2c_sampler_default_params();
    sp.temperature = 0;
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, lfm2c_vocab_size(m));
    bool ok = s && spec && smp && !lfm2c_session_decode(s, prompt, np, LFM2C_LOGITS_LAST, &err);
    int got = 0;
    if (ok)
        out[got++] =
            lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s), lfm2c_session_n_past(s));
    while (ok && got < n) {
        int32_t buf[64];
        int k = lfm2c_spec_step(spec, s, smp, out[got - 1], buf, n - got < 64 ? n - got : 64, &err);
        if (k < 1) {
            ok = false;
            break;
        }
        memcpy(out + got, buf, sizeof(int32_t) * (size_t)k);
        got += k;
        /* the session holds the prompt and every token out but the last */
        ok = lfm2c_session_n_past(s) == np + got - 1 &&
             !memcmp(lfm2c_session_tokens(s) + np, out, sizeof(int32_t) * (size_t)(got - 1));
    }
    if (!ok) fprintf(stderr, "spec loop: %s\n", err.msg);
    *st = lfm2c_spec_get_stats(spec);
    lfm2c_sampler_free(smp);
    lfm2c_spec_free(spec);
    lfm2c_session_free(s);
    return ok && got == n;
}

static void test_greedy(void) {
    lfm2c_model *t = open_model(DATA("lfm2-tiny-dense-f32.gguf"));
    lfm2c_model *q4 = open_model(DATA("lfm2-tiny-dense-q4_0.gguf"));
    lfm2c_model *moe = open_model(DATA("lfm2-tiny-moe-f32.gguf"));
    CHECK(t && q4 && moe, "open fixtures");
    if (!t || !q4 || !moe) return;
    enum { NP = 24, N = 96 };
    int32_t prompt[NP], want[N], got[N];
    make_ids(prompt, NP, 3, lfm2c_vocab_size(t));
    plain_greedy(t, prompt, NP, N, want);
    lfm2c_spec_params p = lfm2c_spec_default_params();
    p.draft_max = 5;
    p.draft_p_min = 0;
    lfm2c_spec_stats st;

    bool ok = spec_greedy(t, t, &p, prompt, NP, N, got, &st);
    CHECK(ok && !memcmp(got, want, sizeof want), "own draft: output differs from plain greedy");
    CHECK(st.drafted > 0 && st.accepted == st.drafted, "own draft: %ld of %ld accepted", st.accepted, st.drafted);
    CHECK(st.steps >= (N - 1) / (p.draft_max + 1), "own draft: %ld steps for %d tokens", st.steps, N);

    struct {
        lfm2c_model *d;
        const char *name;
    } drafts[] = {{q4, "q4_0 draft"}, {moe, "MoE draft"}};
    for (int i = 0; i < 2; i++) {
        ok = spec_greedy(t, drafts[i].d, &p, prompt, NP, N, got, &st);
        CHECK(ok && !memcmp(got, want, sizeof want), "%s: output differs from plain greedy", drafts[i].name);
        CHECK(st.accepted < st.drafted, "%s: %ld of %ld accepted (expected part)", drafts[i].name, st.accepted,
              st.drafted);
        fprintf(stderr, "%s: %ld of %ld drafted tokens accepted in %ld steps\n", drafts[i].name, st.accepted,
                st.drafted, st.steps);
    }
    /* q4_0 of the same weights agrees often: part, not none */
    ok = spec_greedy(t, q4, &p, prompt, NP, N, got, &st);
    CHECK(st.accepted > 0, "q4_0 draft accepted nothing");

    /* the draft length chosen per step from measured costs (draft_auto): the same output for
     * every drafter (test_auto checks the choice itself) */
    lfm2c_model *auto_drafts[] = {t, q4, moe, NULL};
    for (int i = 0; i < 4; i++) {
        lfm2c_spec_params q = p;
        q.draft_auto = true;
        if (!auto_drafts[i]) q.lookup_min = 1, q.lookup_max = 3;
        ok = spec_greedy(t, auto_drafts[i], &q, prompt, NP, N, got, &st);
        CHECK(ok && !memcmp(got, want, sizeof want), "auto, drafter %d: output differs from plain greedy", i);
    }

    /* draft-p-min 1: no draft model token is that sure, so nothing is drafted, same output */
    lfm2c_spec_params p1 = p;
    p1.draft_p_min = 1.0f;
    ok = spec_greedy(t, t, &p1, prompt, NP, N, got, &st);
    CHECK(ok && !memcmp(got, want, sizeof want) && st.drafted == 0, "draft-p-min 1: %ld drafted", st.drafted);

    /* prompt lookup on a repetitive prompt: the greedy continuation repeats what it has seen */
    enum { NL = 300 };
    int32_t rep[60], want2[NL], got2[NL];
    for (int i = 0; i < 60; i++) rep[i] = prompt[i % 6];
    plain_greedy(t, rep, 60, NL, want2);
    lfm2c_spec_params pl = lfm2c_spec_default_params();
    pl.lookup_min = 1;
    pl.lookup_max = 3;
    pl.draft_max = 8;
    ok = spec_greedy(t, NULL, &pl, rep, 60, NL, got2, &st);
    CHECK(ok && !memcmp(got2, want2, sizeof want2), "lookup: output differs from plain greedy");
    CHECK(st.accepted > 0 && st.drafted > 0, "lookup: %ld of %ld accepted", st.accepted, st.drafted);
    fprintf(stderr, "lookup: %ld of %ld drafted tokens accepted in %ld steps\n", st.accepted, st.drafted, st.steps);
    /* draft-min above every draft: nothing verified beyond plain steps */
    pl.draft_min = pl.draft_max = 8;
    ok = spec_greedy(t, NULL, &pl, prompt, NP, 20, got, &st);
    CHECK(ok && !memcmp(got, want, sizeof(int32_t) * 20), "lookup with draft-min: output differs");
    CHECK(st.drafted == 0 || st.drafted % 8 == 0, "draft-min 8: drafted %ld", st.drafted);

    /* the two-halves API with a draft of 0 tokens is a plain step */
    lfm2c_error err = {0};
    CHECK(lfm2c_spec_new(t, NULL, 64, &(lfm2c_spec_params){.draft_max = 4, .lookup_min = 3, .lookup_max = 2}, &err) ==
                  NULL &&
              err.code == LFM2C_EINVAL,
          "bad lookup sizes refused");
    lfm2c_model_free(t);
    lfm2c_model_free(q4);
    lfm2c_model_free(moe);
}

/* ---- several sequences drafting together --------------------------------------------------- */

/* lfm2c_spec_draft_batch drafts what lfm2c_spec_draft drafts for each sequence alone (greedy);
 * a draft model, prompt lookup and a second draft model mixed in one call; errors. */
static void test_draft_batch(void) {
    lfm2c_model *t = open_model(DATA("lfm2-tiny-dense-f32.gguf"));
    lfm2c_model *q4 = open_model(DATA("lfm2-tiny-dense-q4_0.gguf"));
    lfm2c_model *moe = open_model(DATA("lfm2-tiny-moe-f32.gguf"));
    if (!t || !q4 || !moe) {
        CHECK(0, "open fixtures");
        return;
    }
    enum { N = 4, NP = 30 };
    lfm2c_model *drafts[N] = {q4, q4, NULL, moe};
    lfm2c_error err = {0};
    lfm2c_sampler_params sp = lfm2c_sampler_default_params();
    sp.temperature = 0;
    int32_t want[N][8], got[N][8], last[N];
    int kw[N], kg[N], max[N];
    for (int pass = 0; pass < 2; pass++) {
        lfm2c_spec *sps[N];
        lfm2c_session *ss[N];
        lfm2c_sampler *smps[N];
        int32_t *outs[N];
        for (int i = 0; i < N; i++) {
            lfm2c_spec_params p = lfm2c_spec_default_params();
            p.draft_max = 6;
            p.draft_p_min = 0;
            p.lookup_min = 1, p.lookup_max = 2;
            int32_t prompt[NP];
            make_ids(prompt, NP, 100 + (uint32_t)i, lfm2c_vocab_size(t));
            if (i == 2)
                for (int j = 10; j < NP; j++) prompt[j] = prompt[j % 10]; /* something to look up */
            sps[i] = lfm2c_spec_new(t, drafts[i], 128, &p, &err);
            ss[i] = lfm2c_session_new(t, 128, &err);
            smps[i] = lfm2c_sampler_new(&sp, lfm2c_vocab_size(t));
            lfm2c_session_decode(ss[i], prompt, NP - 1, LFM2C_LOGITS_LAST, &err);
            last[i] = prompt[NP - 1];
            max[i] = i == 1 ? 3 : 8;
            outs[i] = pass ? got[i] : want[i];
        }
        if (pass == 0) {
            for (int i = 0; i < N; i++)
                kw[i] = lfm2c_spec_draft(sps[i], ss[i], smps[i], last[i], want[i], max[i], &err);
        } else {
            int rc = lfm2c_spec_draft_batch(sps, ss, smps, last, outs, max, kg, N, &err);
            CHECK(rc == 0, "draft batch: %s", err.msg);
            for (int i = 0; i < N; i++)
                CHECK(kg[i] == kw[i] && !memcmp(got[i], want[i], sizeof(int32_t) * (size_t)(kw[i] > 0 ? kw[i] : 0)),
                      "item %d: batch drafted %d, alone %d", i, kg[i], kw[i]);
            CHECK(kg[0] == 6 && kg[1] == 3 && kg[2] > 0, "drafted %d %d %d", kg[0], kg[1], kg[2]);
            lfm2c_spec *twice[2] = {sps[0], sps[0]};
            lfm2c_session *s2[2] = {ss[0], ss[1]};
            CHECK(lfm2c_spec_draft_batch(twice, s2, smps, last, outs, max, kg, 2, &err) == -1 &&
                      err.code == LFM2C_EINVAL,
                  "a speculator twice accepted");
        }
        for (int i = 0; i < N; i++) {
            lfm2c_spec_free(sps[i]);
            lfm2c_session_free(ss[i]);
            lfm2c_sampler_free(smps[i]);
        }
    }
    lfm2c_model_free(t);
    lfm2c_model_free(q4);
    lfm2c_model_free(moe);
}

/* ---- temperature > 0 ----------------------------------------------------------------------- */

enum { TOPK = 6, NS = 6000 };

/* Sorted candidate ids of the sampler's distribution for the logits after tokens[0..n). */
static int dist_after(lfm2c_model *m, const int32_t *tokens, int n, const lfm2c_sampler_params *sp, int32_t *ids,
                      double *pr) {
    lfm2c_error err = {0};
    int V = lfm2c_vocab_size(m);
    lfm2c_session *s = lfm2c_session_new(m, 256, &err);
    lfm2c_session_decode(s, tokens, n, LFM2C_LOGITS_LAST, &err);
    const float *l = lfm2c_session_logits(s, 0);
    /* top-k by logit, then softmax at the temperature (what the sampler draws from) */
    for (int j = 0; j < TOPK; j++) {
        int best = -1;
        for (int v = 0; v < V; v++) {
            bool taken = false;
            for (int q = 0; q < j; q++) taken |= ids[q] == v;
            if (!taken && (best < 0 || l[v] > l[best])) best = v;
        }
        ids[j] = best;
    }
    double sum = 0;
    for (int j = 0; j < TOPK; j++) sum += pr[j] = exp((l[ids[j]] - l[ids[0]]) / sp->temperature);
    for (int j = 0; j < TOPK; j++) pr[j] /= sum;
    lfm2c_session_free(s);
    return TOPK;
}

/* chi-square of counts against the expected probabilities (bins under 5 expected pooled) */
static double chi_square(const long *count, const double *expect, int n, long total, int *dof) {
    double chi = 0, pool_e = 0, pool_o = 0;
    int bins = 0;
    for (int i = 0; i < n; i++) {
        double e = expect[i] * total;
        if (e < 5) {
            pool_e += e;
            pool_o += count[i];
            continue;
        }
        chi += (count[i] - e) * (count[i] - e) / e;
        bins++;
    }
    long other = total;
    for (int i = 0; i < n; i++) other -= count[i]; /* outside the support: impossible */
    pool_o += other;
    if (pool_e > 0 || pool_o > 0) {
        double e = pool_e > 1e-9 ? pool_e : 1e-9;
        chi += (pool_o - e) * (pool_o - e) / e;
        bins++;
    }
    *dof = bins - 1;
    return chi;
}

/* mode 0: plain sampling; 1: speculative with the draft; 2: speculative, every draft accepted;
 * 3: speculative with draft-p-min 0.25 (about half the draft model's positions stop the draft) */
static double run_histogram(lfm2c_model *t, lfm2c_model *d, int mode, const int32_t *prompt, int np,
                            const int32_t *ids1, const int32_t ids2[TOPK][TOPK], const double *expect, int *dof,
                            double *acc_rate) {
    lfm2c_error err = {0};
    lfm2c_sampler_params sp = lfm2c_sampler_default_params();
    sp.temperature = 1.5f;
    sp.top_k = TOPK;
    sp.repeat_penalty = 1.0f;
    lfm2c_spec_params p = lfm2c_spec_default_params();
    p.draft_max = 3;
    p.draft_p_min = 0;
    if (mode == 2) p.force_accept = 1.0f;
    if (mode == 3) p.draft_p_min = 0.25f;
    lfm2c_session *base = lfm2c_session_new(t, 256, &err), *s = lfm2c_session_new(t, 256, &err);
    lfm2c_spec *spec = lfm2c_spec_new(t, d, 256, &p, &err);
    lfm2c_session_decode(base, prompt, np - 1, LFM2C_LOGITS_LAST, &err);
    long count[TOPK * TOPK] = {0};
    int32_t last = prompt[np - 1];
    for (int seed = 1; seed <= NS; seed++) {
        sp.seed = (uint64_t)seed * 0x9e3779b97f4a7c15ull;
        lfm2c_sampler *smp = lfm2c_sampler_new(&sp, lfm2c_vocab_size(t));
        lfm2c_session_copy(s, base, &err);
        int32_t out[2], buf[8];
        int got = 0;
        if (mode == 0) {
            int32_t x = last;
            for (; got < 2; got++) {
                lfm2c_session_decode(s, &x, 1, LFM2C_LOGITS_LAST, &err);
                x = out[got] = lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s),
                                                    lfm2c_session_n_past(s));
            }
        } else {
            int32_t x = last;
            while (got < 2) {
                int k = lfm2c_spec_step(spec, s, smp, x, buf, 8, &err);
                if (k < 1) break;
                for (int i = 0; i < k && got < 2; i++) out[got++] = buf[i];
                x = buf[k - 1];
            }
        }
        lfm2c_sampler_free(smp);
        if (got < 2) continue; /* counted as impossible below */
        int a = -1, b = -1;
        for (int i = 0; i < TOPK; i++)
            if (ids1[i] == out[0]) a = i;
        for (int i = 0; a >= 0 && i < TOPK; i++)
            if (ids2[a][i] == out[1]) b = i;
        if (a >= 0 && b >= 0) count[a * TOPK + b]++;
    }
    lfm2c_spec_stats st = lfm2c_spec_get_stats(spec);
    *acc_rate = st.drafted ? (double)st.accepted / st.drafted : 0;
    lfm2c_spec_free(spec);
    lfm2c_session_free(s);
    lfm2c_session_free(base);
    return chi_square(count, expect, TOPK * TOPK, NS, dof);
}

static void test_distribution(void) {
    lfm2c_model *t = open_model(DATA("lfm2-tiny-dense-f32.gguf"));
    lfm2c_model *d = open_model(DATA("lfm2-tiny-dense-q4_0.gguf"));
    CHECK(t && d, "open fixtures");
    if (!t || !d) return;
    enum { NP = 12 };
    int32_t prompt[NP + 2];
    make_ids(prompt, NP, 11, lfm2c_vocab_size(t));
    lfm2c_sampler_params sp = {.temperature = 1.5f, .top_k = TOPK};
    /* the exact joint distribution of the two tokens after the prompt */
    int32_t ids1[TOPK], ids2[TOPK][TOPK];
    double p1[TOPK], p2[TOPK], expect[TOPK * TOPK];
    dist_after(t, prompt, NP, &sp, ids1, p1);
    for (int a = 0; a < TOPK; a++) {
        prompt[NP] = ids1[a];
        dist_after(t, prompt, NP + 1, &sp, ids2[a], p2);
        for (int b = 0; b < TOPK; b++) expect[a * TOPK + b] = p1[a] * p2[b];
    }
    /* The bound: chi-square over at most 36 bins (35 degrees of freedom) below 80. Under the
     * right distribution that is exceeded with probability ~2e-5; the seeds are fixed, so the
     * test gives the same answer on every run. */
    const double BOUND = 80;
    int dof = 0;
    double acc = 0;
    double chi0 = run_histogram(t, d, 0, prompt, NP, ids1, (const int32_t(*)[TOPK])ids2, expect, &dof, &acc);
    CHECK(chi0 < BOUND, "plain sampler: chi-square %.1f (%d dof) over the bound %.0f", chi0, dof, BOUND);
    double chi1 = run_histogram(t, d, 1, prompt, NP, ids1, (const int32_t(*)[TOPK])ids2, expect, &dof, &acc);
    CHECK(chi1 < BOUND, "speculative: chi-square %.1f (%d dof) over the bound %.0f", chi1, dof, BOUND);
    CHECK(acc > 0.05 && acc < 0.95, "speculative: acceptance %.2f: both paths of the rule should run", acc);
    fprintf(stderr, "temperature 1.5, top-k %d, %d seeds: chi-square plain %.1f, speculative %.1f (acceptance %.2f), ",
            TOPK, NS, chi0, chi1, acc);
    double chi3 = run_histogram(t, d, 3, prompt, NP, ids1, (const int32_t(*)[TOPK])ids2, expect, &dof, &acc);
    CHECK(chi3 < BOUND, "speculative, draft-p-min 0.25: chi-square %.1f (%d dof) over the bound %.0f", chi3, dof,
          BOUND);
    fprintf(stderr, "with draft-p-min %.1f, ", chi3);
    double chi2 = run_histogram(t, d, 2, prompt, NP, ids1, (const int32_t(*)[TOPK])ids2, expect, &dof, &acc);
    CHECK(chi2 > BOUND, "accept-all: chi-square %.1f should exceed the bound (the test must be able to fail)", chi2);
    fprintf(stderr, "accept-all %.1f; %d dof\n", chi2, dof);
    lfm2c_model_free(t);
    lfm2c_model_free(d);
}

/* ---- vocabulary ---------------------------------------------------------------------------- */

static void test_vocab(void) {
    lfm2c_model *t = open_model(DATA("lfm2-tiny-dense-f32.gguf"));
    if (!t) return;
    char path[64];
    snprintf(path, sizeof path, "/tmp/lfm2c-spec-vocab-%d.gguf", (int)getpid());
    const int vocabs[] = {8192, 4096};
    for (int i = 0; i < 2; i++) {
        synth_config c;
        synth_preset("lfm2-350m", &c);
        c.hidden = 64;
        c.n_layer = 2;
        c.n_attn = 1;
        c.attn_layers[0] = 1;
        c.n_head = 4;
        c.n_head_kv = 2;
        c.ff = 128;
        c.vocab = vocabs[i];
        c.ctx = 512;
        lfm2c_error err = {0};
        synth_params sp = {.seed = 1, .n_threads = 1};
        synth_report rep;
        bool ok = synth_write(&c, quant_ftype_find("f32"), &sp, path, &rep, &err);
        CHECK(ok, "synth: %s", err.msg);
        lfm2c_model *d = ok ? open_model(path) : NULL;
        lfm2c_spec_params p = lfm2c_spec_default_params();
        lfm2c_spec *spec = d ? lfm2c_spec_new(t, d, 256, &p, &err) : NULL;
        CHECK(d && !spec && err.code == LFM2C_EINVAL && strstr(err.msg, "vocabulary"), "vocab %d: %s", vocabs[i],
              err.msg);
        lfm2c_spec_free(spec);
        lfm2c_model_free(d);
        unlink(path);
    }
    lfm2c_model_free(t);
}

/* Benchmarks' forced acceptance with prompt lookup: every step drafts draft_max tokens even
 * where the history has no match (random ids); without forcing the same loop runs as before. */
static void test_lookup_forced(void) {
    lfm2c_model *t = open_model(DATA("lfm2-tiny-dense-f32.gguf"));
    if (!t) return;
    enum { NP = 24, N = 40, K = 4 };
    int32_t prompt[NP], out[K + 1];
    make_ids(prompt, NP, 5, lfm2c_vocab_size(t));
    for (int forced = 0; forced < 2; forced++) {
        lfm2c_error err = {0};
        lfm2c_spec_params p = lfm2c_spec_default_params();
        p.draft_max = K;
        p.lookup_min = 2, p.lookup_max = 3;
        p.force_accept = forced ? 0.5f : -1.0f;
        lfm2c_spec *spec = lfm2c_spec_new(t, NULL, 256, &p, &err);
        lfm2c_session *s = lfm2c_session_new(t, 256, &err);
        lfm2c_sampler_params sp = lfm2c_sampler_default_params();
        sp.temperature = 0;
        lfm2c_sampler *smp = lfm2c_sampler_new(&sp, lfm2c_vocab_size(t));
        CHECK(spec && s && smp, "lookup speculator: %s", err.msg);
        if (!spec || !s || !smp) return;
        lfm2c_session_decode(s, prompt, NP - 1, LFM2C_LOGITS_LAST, &err);
        int32_t last = prompt[NP - 1];
        int got = 0, steps = 0;
        while (got < N) {
            int k = lfm2c_spec_step(spec, s, smp, last, out, K + 1, &err);
            CHECK(k >= 1, "step: %s", err.msg);
            if (k < 1) break;
            got += k, steps++;
            last = out[k - 1];
        }
        lfm2c_spec_stats st = lfm2c_spec_get_stats(spec);
        if (!forced) CHECK(st.drafted < (long)steps * K, "unforced: %ld drafted in %d steps", st.drafted, steps);
        if (forced) {
            CHECK(st.drafted == (long)steps * K, "forced: %ld drafted in %d steps, want %d each", st.drafted, steps, K);
            CHECK(st.accepted > 0 && st.accepted < st.drafted, "forced 0.5: %ld of %ld accepted", st.accepted,
                  st.drafted);
        }
        lfm2c_sampler_free(smp);
        lfm2c_session_free(s);
        lfm2c_spec_free(spec);
    }
    lfm2c_model_free(t);
}

/* ---- the draft length chosen per step (draft_auto) ------------------------------------------ */

/* Fixed costs for the choice (spec_set_costs): a forward over n tokens takes 1 + slope (n - 1). */
static double cost_line(void *arg, int n) { return 1.0 + *(const double *)arg * (n - 1); }

/* n tokens of forced prompt lookup (every drafted token accepted with probability a) with the
 * length chosen per step from fixed costs (slope: cost_line's); each step's output count into
 * counts[0..K+1]; the speculator's stats. */
static bool auto_run(lfm2c_model *t, float a, double slope, int K, int kmin, int n, int *counts, lfm2c_spec_stats *st,
                     int *steps) {
    enum { NP = 24 };
    int32_t prompt[NP], out[64];
    make_ids(prompt, NP, 9, lfm2c_vocab_size(t));
    lfm2c_error err = {0};
    lfm2c_spec_params p = lfm2c_spec_default_params();
    p.draft_max = K, p.draft_min = kmin;
    p.lookup_min = 1, p.lookup_max = 3;
    p.force_accept = a;
    p.draft_auto = true;
    lfm2c_spec *spec = lfm2c_spec_new(t, NULL, 1024, &p, &err);
    lfm2c_session *s = lfm2c_session_new(t, 1024, &err);
    lfm2c_sampler_params sp = lfm2c_sampler_default_params();
    sp.temperature = 0;
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, lfm2c_vocab_size(t));
    bool ok = spec && s && smp && !lfm2c_session_decode(s, prompt, NP - 1, LFM2C_LOGITS_LAST, &err);
    if (spec) spec_set_costs(spec, cost_line, &slope, 0);
    int32_t last = prompt[NP - 1];
    *steps = 0;
    for (int got = 0; ok && got < n;) {
        int k = lfm2c_spec_step(spec, s, smp, last, out, K + 1, &err);
        if (k < 1) ok = false;
        else got += k, (*steps)++, counts[k]++, last = out[k - 1];
    }
    if (!ok) fprintf(stderr, "auto: %s\n", err.msg);
    *st = lfm2c_spec_get_stats(spec);
    lfm2c_sampler_free(smp);
    lfm2c_session_free(s);
    lfm2c_spec_free(spec);
    return ok;
}

/* The draft length chosen per step from fixed costs: where a forward over more tokens costs
 * little more (a dense model) drafts that are all accepted run at the longest length and drafts
 * that are all rejected at none; where every token costs a whole step (the slope of an MoE
 * model's forward in the worst case) even acceptance 0.7 does not pay and the steps are plain; a
 * length under draft-min is never drafted; and every SPEC_AUTO_EXPLORE-th step tries a neighbour
 * of the choice. (Its greedy output with measured costs: test_greedy.) */
static void test_auto(void) {
    lfm2c_model *t = open_model(DATA("lfm2-tiny-dense-f32.gguf"));
    CHECK(t != NULL, "open fixture");
    if (!t) return;
    lfm2c_spec_stats st;
    enum { K = 4, NT = 320 };
    struct {
        float a;
        double slope;
        int kmin, k_lo, k_hi; /* the length most steps must draft, within [k_lo, k_hi] */
        const char *what;
    } cases[] = {
        {1.0f, 0.1, 0, K, K, "dense, acceptance 1"},
        {0.0f, 0.1, 0, 0, 0, "dense, acceptance 0"},
        {0.7f, 1.0, 0, 0, 0, "every token a step, acceptance 0.7"},
        {1.0f, 0.1, 3, K, K, "dense, acceptance 1, draft-min 3"},
        {0.05f, 0.1, 3, 0, 0, "dense, acceptance 0.05, draft-min 3"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int counts[K + 2] = {0}, steps = 0;
        bool ok = auto_run(t, cases[c].a, cases[c].slope, K, cases[c].kmin, NT, counts, &st, &steps);
        CHECK(ok, "%s: the run", cases[c].what);
        /* a step's output is k + 1 tokens when all k drafted ones are accepted (a = 1) and 1 when
         * none is (a = 0): the length shows there; otherwise the drafted counts show it */
        const long mean_x100 = steps ? 100 * st.drafted / steps : 0;
        int in_range = 0;
        for (int k = cases[c].k_lo; k <= cases[c].k_hi; k++) in_range += counts[k + 1];
        if (cases[c].a == 1.0f || cases[c].a == 0.0f)
            CHECK(in_range * 10 >= steps * 8, "%s: %d of %d steps drafted %d..%d", cases[c].what, in_range, steps,
                  cases[c].k_lo, cases[c].k_hi);
        if (cases[c].k_hi == 0) /* the first longest draft, then only the tries of a neighbour */
            CHECK(st.drafted <= (long)(steps / SPEC_AUTO_EXPLORE + 2) * K, "%s: %ld drafted in %d steps", cases[c].what,
                  st.drafted, steps);
        if (cases[c].kmin == 3 && cases[c].a == 1.0f)
            CHECK(counts[2] == 0 && counts[3] == 0, "%s: drafts of 1 or 2", cases[c].what);
        if (cases[c].k_hi == 0) CHECK(st.drafted > 0, "%s: no neighbour ever tried", cases[c].what);
        fprintf(stderr, "auto, %s: %ld drafted in %d steps (mean x100 %ld)\n", cases[c].what, st.drafted, steps,
                mean_x100);
    }
    lfm2c_model_free(t);
}

int main(void) {
    test_rollback(DATA("lfm2-tiny-dense-f32.gguf"));
    test_rollback(DATA("lfm2-tiny-moe-q8_0.gguf"));
    test_rollback(DATA("lfm2-kq-moe-q4_k_m.gguf"));
    test_greedy();
    test_draft_batch();
    test_distribution();
    test_vocab();
    test_lookup_forced();
    test_auto();
    TEST_MAIN_END();
}
