/* test_sample_batch.c — decode_batch_sample (core/sample_batch.c) on the CPU backend, where every
 * item is sampled on the host: over several steps of three sessions in one batch, its tokens
 * equal lfm2c_decode_batch followed by lfm2c_sampler_sample with the mask as a filter hook, the
 * penalties seeing the session's tokens; the logprobs are the raw logits' log-softmax and the best
 * k; an item without tokens or a sampler is refused. (On the emulated CUDA device the same calls
 * are checked against the host: tests/cuda/test_cuda_emu.cpp.) */
#include "core/sample_batch.h"

#include "lfm2c.h"
#include "test.h"

#include <math.h>
#include <string.h>

enum { S = 3, STEPS = 4 };

static void odd_out(void *u, float *l, int V) {
    (void)u;
    for (int i = 1; i < V; i += 2) l[i] = -INFINITY;
}

static void check_steps(lfm2c_model *m) {
    const int V = lfm2c_vocab_size(m);
    lfm2c_error err = {0};
    lfm2c_session *a[S], *b[S];
    lfm2c_sampler *sa[S], *sb[S];
    sample_item it[S];
    uint32_t mask[(65536 + 31) / 32];
    memset(mask, 0, sizeof mask);
    for (int i = 0; i < V; i += 2) mask[i >> 5] |= 1u << (i & 31);
    for (int i = 0; i < S; i++) {
        lfm2c_sampler_params p = lfm2c_sampler_default_params();
        p.temperature = 0.5f * i, p.seed = 9 + i, p.presence_penalty = 0.4f;
        a[i] = lfm2c_session_new(m, 64, &err), b[i] = lfm2c_session_new(m, 64, &err);
        sa[i] = lfm2c_sampler_new(&p, V), sb[i] = lfm2c_sampler_new(&p, V);
        if (i == 1) lfm2c_sampler_set_filter(sb[i], odd_out, NULL);
        it[i] = (sample_item){sa[i], i == 1 ? mask : NULL, i == 2 ? 4 : -1, {0}};
    }
    int32_t prompt[6] = {1, 5, 9, 13, 17, 21}, next_a[S], next_b[S];
    const int32_t *ta[S], *tb[S];
    int n[S], modes[S];
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < S; i++) {
            ta[i] = step ? &next_a[i] : prompt + i, tb[i] = step ? &next_b[i] : prompt + i;
            n[i] = step ? 1 : 6 - i, modes[i] = LFM2C_LOGITS_LAST;
        }
        int rc = decode_batch_sample(a, ta, n, it, S, &err);
        CHECK(rc == 0, "decode_batch_sample: %s", err.msg);
        rc |= lfm2c_decode_batch(b, tb, n, modes, S, &err);
        if (rc) return;
        for (int i = 0; i < S; i++) {
            const float *l = lfm2c_session_logits(b[i], 0);
            int32_t want = lfm2c_sampler_sample(sb[i], l, lfm2c_session_tokens(b[i]), lfm2c_session_n_past(b[i]));
            CHECK(it[i].out.token == want && it[i].out.status == SMP_OK, "step %d item %d: %d, want %d", step, i,
                  it[i].out.token, want);
            if (i == 2) { /* logprobs: log-softmax of the raw row, the best 4 */
                double mx = -INFINITY, sum = 0;
                for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
                for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
                CHECK(fabs(it[i].out.logprob - (l[want] - mx - log(sum))) < 1e-4, "logprob %g", it[i].out.logprob);
                CHECK(it[i].out.n_top == 4, "n_top %d", it[i].out.n_top);
                for (int j = 1; j < it[i].out.n_top; j++)
                    CHECK(it[i].out.top_logprob[j] <= it[i].out.top_logprob[j - 1], "top order");
                for (int v = 0; v < V; v++)
                    CHECK(l[v] <= l[it[i].out.top_token[3]] || v == it[i].out.top_token[0] ||
                              v == it[i].out.top_token[1] || v == it[i].out.top_token[2] || v == it[i].out.top_token[3],
                          "token %d beats the top 4", v);
            }
            next_a[i] = it[i].out.token, next_b[i] = want;
        }
    }
    for (int i = 0; i < S; i++) {
        lfm2c_session_free(a[i]), lfm2c_session_free(b[i]);
        lfm2c_sampler_free(sa[i]), lfm2c_sampler_free(sb[i]);
    }
}

static void check_refused(lfm2c_model *m) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 16, &err);
    lfm2c_sampler_params p = lfm2c_sampler_default_params();
    lfm2c_sampler *smp = lfm2c_sampler_new(&p, lfm2c_vocab_size(m));
    sample_item it = {smp, NULL, -1, {0}}, none = {NULL, NULL, -1, {0}};
    int32_t t = 1;
    const int32_t *tp = &t;
    int zero = 0, one = 1;
    CHECK(decode_batch_sample(&s, &tp, &zero, &it, 1, &err) == -1 && err.code == LFM2C_EINVAL, "no tokens");
    CHECK(decode_batch_sample(&s, &tp, &one, &none, 1, &err) == -1 && err.code == LFM2C_EINVAL, "no sampler");
    CHECK(lfm2c_session_n_past(s) == 0, "a refused batch changed the session");
    lfm2c_sampler_free(smp);
    lfm2c_session_free(s);
}

int main(void) {
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(DATA("lfm2-kq-dense-q4_k_m.gguf"), &mp, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) {
        check_steps(m);
        check_refused(m);
        lfm2c_model_free(m);
    }
    TEST_MAIN_END();
}
