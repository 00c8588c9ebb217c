/* test_scheduler_budget.c — the scheduler's GPU-side planning (src/serve/scheduler.c), on the
 * fake backends of tests/serve/fake_backend.h (the tiny dense fixture's vocabulary, no model
 * arithmetic): with a token budget (sched_params.token_budget) prompts read together are packed
 * into forwards of at most the budget, as few as the tokens need; under a decode load every
 * decoding slot keeps its row in every forward and the prompts take the room left; and on a
 * backend that samples on the device (BACKEND_CAP_SAMPLE, as CUDA with LFM2C_CUDA_SAMPLE=1) the
 * scheduler hands it the rows of slots with nothing of their own to apply: the same tokens and
 * logprobs as sampling on the host, for greedy, seeded, handed-back (SMP_HOST) and constrained
 * (host-sampled) requests, with rows actually drawn by the backend. */
#include "serve/scheduler.h"
#include "test.h"
#include "base/clock.h"
#include "chat/grammar.h"
#include "serve/fake_backend.h"

#include <string.h>

static int n_vocab;

static lfm2c_model *open_fake(const lfm2c_backend *b) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    mp.hugepages = LFM2C_HUGEPAGES_OFF;
    lfm2c_model *m = lfm2c_model_open(DATA("lfm2-tiny-dense-f32.gguf"), &mp, &err);
    CHECK(m != NULL, "open: %s", err.msg);
    if (m) fake_attach(m, b);
    return m;
}

static sched *new_sched(lfm2c_model *m, int n_slots, int budget) {
    lfm2c_error err = {0};
    sched_params p = {.n_slots = n_slots, .n_ctx = 512, .queue_max = 64, .prefill_chunk = 512, .token_budget = budget};
    sched *s = sched_new(m, &p, &err);
    CHECK(s != NULL, "sched_new: %s", err.msg);
    return s;
}

static sched_req *request(int n_prompt, uint32_t seed, int max_tokens) {
    sched_req *r = sched_req_new();
    r->prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    for (int i = 0; i < n_prompt; i++) {
        seed = seed * 1664525u + 1013904223u;
        r->prompt[i] = 1 + (int32_t)((seed >> 8) % (uint32_t)(n_vocab - 1));
    }
    r->n_prompt = n_prompt;
    r->sampling.temperature = 0;
    r->max_tokens = max_tokens;
    r->n_logprobs = 0;
    return r;
}

static void wait_all(sched *s, sched_req **rs, int n) {
    const double t0 = lfm2c_now_s();
    sched_lock(s);
    for (int i = 0; i < n; i++)
        while (rs[i]->finish == FINISH_NONE && lfm2c_now_s() - t0 < 60) sched_wait(s, rs[i], 100);
    sched_unlock(s);
}

/* 8 prompts of 50 tokens read together under a budget of 64: 7 forwards (400 / 64), none past 64
 * (without the budget: one forward of 400). */
static void test_packing(lfm2c_model *m) {
    enum { N = 8, LEN = 50, BUDGET = 64 };
    sched *s = new_sched(m, N, BUDGET);
    if (!s) return;
    sched_req *rs[N];
    for (int i = 0; i < N; i++) rs[i] = request(LEN, 100u + (uint32_t)i, 1);
    memset(&fake_n, 0, sizeof fake_n);
    CHECK(sched_submit_group(s, rs, N) == 0, "submit");
    wait_all(s, rs, N);
    CHECK(fake_n.max_tokens <= BUDGET, "a forward of %d tokens past the budget of %d", fake_n.max_tokens, BUDGET);
    CHECK(fake_n.forwards == (N * LEN + BUDGET - 1) / BUDGET, "%ld forwards for %d prompt tokens at %d a forward",
          fake_n.forwards, N * LEN, BUDGET);
    for (int i = 0; i < N; i++) {
        CHECK(rs[i]->finish == FINISH_LENGTH && rs[i]->n_generated == 1, "request %d: finish %d, %d tokens", i,
              rs[i]->finish, rs[i]->n_generated);
        sched_release(s, rs[i]);
    }
    sched_free(s);
}

/* 4 streams decoding, then 3 prompts of 150 tokens: every forward that reads a prompt carries the
 * 4 streams' rows (until they end) and at most budget - 4 prompt tokens. */
static void test_decode_first(lfm2c_model *m) {
    enum { D = 4, P = 3, BUDGET = 64, GEN = 40 };
    sched *s = new_sched(m, D + P, BUDGET);
    if (!s) return;
    sched_req *ds[D], *ps[P];
    for (int i = 0; i < D; i++) ds[i] = request(8, 200u + (uint32_t)i, GEN);
    for (int i = 0; i < P; i++) ps[i] = request(150, 300u + (uint32_t)i, 1);
    memset(&fake_n, 0, sizeof fake_n);
    CHECK(sched_submit_group(s, ds, D) == 0, "submit the streams");
    const double t0 = lfm2c_now_s();
    sched_lock(s);
    while (ds[0]->n_generated < 2 && ds[0]->finish == FINISH_NONE && lfm2c_now_s() - t0 < 60) sched_wait(s, ds[0], 100);
    sched_unlock(s);
    CHECK(sched_submit_group(s, ps, P) == 0, "submit the prompts");
    wait_all(s, ps, P);
    wait_all(s, ds, D);
    int with_prompt = 0, bad = 0;
    for (long f = 0; f < fake_n.forwards && f < FAKE_LOG; f++) {
        if (!fake_n.log_chunk[f]) continue;
        with_prompt++;
        const bool streams_on = fake_n.log_one[f] > 0;
        bad += streams_on && (fake_n.log_one[f] != D || fake_n.log_chunk[f] > BUDGET - D);
    }
    CHECK(with_prompt >= P * 150 / BUDGET && bad == 0,
          "%d forwards read the prompts, %d of them without every stream's row or past the room left", with_prompt,
          bad);
    CHECK(fake_n.max_tokens <= BUDGET, "a forward of %d tokens", fake_n.max_tokens);
    for (int i = 0; i < D; i++) {
        CHECK(ds[i]->n_generated == GEN, "stream %d: %d tokens", i, ds[i]->n_generated);
        sched_release(s, ds[i]);
    }
    for (int i = 0; i < P; i++) sched_release(s, ps[i]);
    sched_free(s);
}

enum { KINDS = 5 };
/* request i of a mix: greedy with top logprobs, seeded draws (top-k, top-p), a draw the backend
 * hands back (temperature above the fake's 1), a JSON-constrained one (sampled on the host) */
static sched_req *mixed(int i, const grammar *g) {
    sched_req *r = request(12 + i, 400u + (uint32_t)i, 24);
    switch (i % KINDS) {
    case 0: r->n_logprobs = 5; break;
    case 1:
        r->sampling.temperature = 0.8f, r->sampling.top_k = 40, r->sampling.seed = 7u + (uint32_t)i;
        r->n_logprobs = 2;
        break;
    case 2: r->sampling.temperature = 0.9f, r->sampling.top_p = 0.9f, r->sampling.seed = 99u + (uint32_t)i; break;
    case 3: r->sampling.temperature = 1.5f, r->sampling.seed = 5u + (uint32_t)i; break;
    default: r->json_grammar = g; break;
    }
    return r;
}

static bool same(const sched_req *a, const sched_req *b) {
    if (a->n_logprobs_out != b->n_logprobs_out || a->finish != b->finish || a->n_text != b->n_text ||
        memcmp(a->text, b->text, a->n_text))
        return false;
    for (int i = 0; i < a->n_logprobs_out; i++) {
        const sched_logprob *x = &a->logprobs[i], *y = &b->logprobs[i];
        if (x->token != y->token || x->logprob != y->logprob || x->n_top != y->n_top) return false;
        for (int j = 0; j < x->n_top; j++)
            if (x->top_token[j] != y->top_token[j] || x->top_logprob[j] != y->top_logprob[j]) return false;
    }
    return true;
}

/* The same requests on a backend that samples on the device and on one that does not. */
static void test_device_sampling(lfm2c_model *host, lfm2c_model *dev) {
    enum { N = 10 };
    grammar *g = grammar_any_object();
    sched *sh = new_sched(host, N, 0), *sd = new_sched(dev, N, 256);
    if (!sh || !sd || !g) goto out;
    sched_req *a[N], *b[N];
    for (int i = 0; i < N; i++) a[i] = mixed(i, g), b[i] = mixed(i, g);
    memset(&fake_n, 0, sizeof fake_n);
    CHECK(sched_submit_group(sh, a, N) == 0, "submit (host)");
    wait_all(sh, a, N);
    CHECK(fake_n.sampled == 0, "the host backend drew %ld rows", fake_n.sampled);
    CHECK(sched_submit_group(sd, b, N) == 0, "submit (device)");
    wait_all(sd, b, N);
    CHECK(fake_n.sampled >= 3 * 20 && fake_n.handed_back >= 20,
          "the device drew %ld rows and handed back %ld: the scheduler did not offer them", fake_n.sampled,
          fake_n.handed_back);
    for (int i = 0; i < N; i++) {
        CHECK(a[i]->n_generated > 0 && same(a[i], b[i]),
              "request %d (kind %d): sampled on the device, %d tokens, differs from the host's %d", i, i % KINDS,
              b[i]->n_generated, a[i]->n_generated);
        sched_release(sh, a[i]);
        sched_release(sd, b[i]);
    }
out:
    sched_free(sh);
    sched_free(sd);
    grammar_free(g);
}

int main(void) {
    lfm2c_model *host = open_fake(&fake_backend_host), *dev = open_fake(&fake_backend_dev);
    if (host && dev) {
        n_vocab = lfm2c_vocab_size(dev);
        test_packing(dev);
        test_decode_first(host);
        test_device_sampling(host, dev);
    }
    lfm2c_model_free(host);
    lfm2c_model_free(dev);
    fake_cleanup();
    TEST_MAIN_END();
}
