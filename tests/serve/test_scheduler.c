/* test_scheduler.c — the continuous-batching scheduler (src/serve/scheduler.c) driven directly,
 * without HTTP, on the tiny dense fixture at temperature 0: requests admitted together give the
 * same tokens as each alone (and share forward passes); a request sharing a prompt prefix with a
 * slot's history reuses it (n_cached, and still the same tokens), what it reports is what it saved
 * (a prompt read before feeds nothing; one parting late re-feeds less than a checkpoint spacing), a
 * running slot's prefix is copied into a free one; a running and a queued request
 * are cancelled; the queue limit refuses what does not fit (a group all or none); a shut-down
 * scheduler refuses new work; a request cancelled during its forward takes no token (and the
 * scheduler no longer reads the grammar its caller freed). */
#include "serve/scheduler.h"
#include "test.h"
#include "base/clock.h"

#include <string.h>
#include <unistd.h>

enum { PROMPT = 24, GEN = 12, N_REQ = 3 };

static lfm2c_model *model;
static int n_vocab;

static void make_tokens(int32_t *t, int n, uint32_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = 1 + (int32_t)((seed >> 8) % (uint32_t)(n_vocab - 1));
    }
}

/* A greedy request for prompt[0..n) that records its tokens (logprobs entries). */
static sched_req *greedy(const int32_t *prompt, int n, int max_tokens) {
    sched_req *r = sched_req_new();
    r->prompt = malloc(sizeof(int32_t) * (size_t)n);
    memcpy(r->prompt, prompt, sizeof(int32_t) * (size_t)n);
    r->n_prompt = n;
    r->sampling.temperature = 0;
    r->max_tokens = max_tokens;
    r->n_logprobs = 0;
    return r;
}

/* A request that cannot end by itself before max_tokens: every end-of-generation token banned. */
static sched_req *endless(const int32_t *prompt, int n, int max_tokens) {
    sched_req *r = greedy(prompt, n, max_tokens);
    r->logit_bias = calloc((size_t)n_vocab, sizeof(float));
    for (int i = 0; i < n_vocab; i++)
        if (lfm2c_token_is_eog(model, i)) r->logit_bias[i] = -INFINITY;
    return r;
}

/* Waits (up to 60 s) until r finishes, or until it generated at least `tokens` (0: finish only). */
static void wait_for(sched *s, sched_req *r, int tokens) {
    double t0 = lfm2c_now_s();
    sched_lock(s);
    while (r->finish == FINISH_NONE && !(tokens > 0 && r->n_generated >= tokens) && lfm2c_now_s() - t0 < 60)
        sched_wait(s, r, 100);
    sched_unlock(s);
}

static bool same_tokens(const sched_req *a, const sched_req *b) {
    if (a->n_logprobs_out != b->n_logprobs_out || a->finish != b->finish) return false;
    for (int i = 0; i < a->n_logprobs_out; i++)
        if (a->logprobs[i].token != b->logprobs[i].token) return false;
    return true;
}

static sched *new_sched(int n_slots, int queue_max, int n_ctx, bool no_reuse) {
    lfm2c_error err = {0};
    sched_params p = {
        .n_slots = n_slots, .n_ctx = n_ctx, .queue_max = queue_max, .prefill_chunk = 512, .no_prefix_reuse = no_reuse};
    sched *s = sched_new(model, &p, &err);
    CHECK(s != NULL, "sched_new: %s", err.msg);
    return s;
}

/* Runs r alone on s (one slot, no reuse): the reference answer. */
static sched_req *alone(sched *s, const int32_t *prompt, int n) {
    sched_req *r = greedy(prompt, n, GEN);
    CHECK(sched_submit(s, r) == 0, "submit alone");
    wait_for(s, r, 0);
    CHECK(r->finish == FINISH_STOP || r->finish == FINISH_LENGTH, "alone: finish %d", r->finish);
    return r;
}

static void test_batching_and_prefix(void) {
    int32_t prompts[N_REQ + 1][PROMPT + 8];
    int lens[N_REQ + 1] = {PROMPT, PROMPT - 5, PROMPT + 3, PROMPT + 8};
    for (int i = 0; i < N_REQ; i++) make_tokens(prompts[i], lens[i], 11u + 17u * (unsigned)i);
    sched *one = new_sched(1, 4, 256, true), *s = new_sched(4, 8, 256, false);
    if (!one || !s) {
        sched_free(one);
        sched_free(s);
        return;
    }
    sched_req *ref[N_REQ + 1];
    for (int i = 0; i < N_REQ; i++) ref[i] = alone(one, prompts[i], lens[i]);

    /* admitted together: one forward per step over all of them, the same tokens */
    sched_req *rs[N_REQ];
    for (int i = 0; i < N_REQ; i++) rs[i] = greedy(prompts[i], lens[i], GEN);
    CHECK(sched_submit_group(s, rs, N_REQ) == 0, "submit the group");
    for (int i = 0; i < N_REQ; i++) wait_for(s, rs[i], 0);
    int total = 0;
    for (int i = 0; i < N_REQ; i++) {
        CHECK(same_tokens(rs[i], ref[i]), "request %d batched differs from alone (%d vs %d tokens)", i,
              rs[i]->n_logprobs_out, ref[i]->n_logprobs_out);
        CHECK(rs[i]->n_cached == 0, "request %d: nothing to reuse in fresh slots, got %d", i, rs[i]->n_cached);
        total += rs[i]->n_generated;
    }
    sched_stats st;
    sched_get_stats(s, &st);
    /* alone, every generated token costs a step; together they share steps */
    CHECK(total > GEN && st.steps < (uint64_t)total, "%llu steps for %d tokens: not batched",
          (unsigned long long)st.steps, total);
    CHECK(st.requests == N_REQ && st.prompt_tokens == (uint64_t)(lens[0] + lens[1] + lens[2]),
          "stats: %llu requests, %llu prompt tokens", (unsigned long long)st.requests,
          (unsigned long long)st.prompt_tokens);

    /* a follow-up: prompt 0, then tokens of its own (not what request 0 generated next), goes to
     * request 0's slot and reads only its new tokens */
    memcpy(prompts[N_REQ], prompts[0], sizeof(int32_t) * PROMPT);
    make_tokens(prompts[N_REQ] + PROMPT, 8, 4242);
    if (rs[0]->n_logprobs_out && prompts[N_REQ][PROMPT] == rs[0]->logprobs[0].token)
        prompts[N_REQ][PROMPT] = prompts[N_REQ][PROMPT] % (n_vocab - 1) + 1;
    ref[N_REQ] = alone(one, prompts[N_REQ], lens[N_REQ]);
    sched_req *f = greedy(prompts[N_REQ], lens[N_REQ], GEN);
    CHECK(sched_submit(s, f) == 0, "submit the follow-up");
    wait_for(s, f, 0);
    CHECK(f->n_cached == PROMPT, "prefix-cache hit: %d tokens reused, want %d", f->n_cached, PROMPT);
    CHECK(same_tokens(f, ref[N_REQ]), "the follow-up with reuse differs from alone");
    sched_get_stats(s, &st);
    CHECK(st.cached_tokens == PROMPT, "stats: %llu cached tokens, want %d", (unsigned long long)st.cached_tokens,
          PROMPT);
    CHECK(ref[N_REQ]->n_cached == 0, "no reuse when asked for none, got %d", ref[N_REQ]->n_cached);
    sched_release(s, f);
    for (int i = 0; i < N_REQ; i++) sched_release(s, rs[i]);
    for (int i = 0; i <= N_REQ; i++) sched_release(one, ref[i]);
    sched_free(s);
    sched_free(one);
}

/* The prompt tokens a scheduler has fed so far (stats.prefill_tokens). */
static uint64_t fed(sched *s) {
    sched_stats st;
    sched_get_stats(s, &st);
    return st.prefill_tokens;
}

/* Submits a greedy request, waits for it; returns it (the caller releases it). */
static sched_req *run_one(sched *s, const int32_t *prompt, int n, int gen) {
    sched_req *r = greedy(prompt, n, gen);
    CHECK(sched_submit(s, r) == 0, "submit");
    wait_for(s, r, 0);
    return r;
}

/* What reuse saves is what it reports: a prompt read before is answered with no token fed (its
 * logits kept), one sharing all but its last 20 tokens re-feeds fewer than SCHED_CKPT_EVERY of
 * the shared ones (in another slot, so the conversation it parts from stays whole), and n_cached
 * + the tokens fed is always the prompt; each answer as alone. */
static void test_reuse_counts(void) {
    enum { LONG = 200, DIFF = 20 };
    int32_t p[LONG], q[LONG];
    make_tokens(p, LONG, 77);
    memcpy(q, p, sizeof q);
    make_tokens(q + LONG - DIFF, DIFF, 78);
    sched *one = new_sched(1, 4, 512, true), *s = new_sched(2, 4, 512, false);
    if (!one || !s) goto out;
    sched_req *ref_p = alone(one, p, LONG), *ref_q = alone(one, q, LONG);
    sched_req *a = run_one(s, p, LONG, GEN);
    CHECK(same_tokens(a, ref_p) && a->n_cached == 0, "first read: cached %d", a->n_cached);
    uint64_t f0 = fed(s);
    sched_req *b = run_one(s, p, LONG, GEN);
    CHECK(fed(s) == f0 && b->n_cached == LONG, "the same prompt again: %llu tokens fed, %d cached",
          (unsigned long long)(fed(s) - f0), b->n_cached);
    CHECK(same_tokens(b, ref_p), "the same prompt again answers differently");
    f0 = fed(s);
    sched_req *c = run_one(s, q, LONG, GEN);
    uint64_t n_fed = fed(s) - f0;
    CHECK(n_fed == (uint64_t)(LONG - c->n_cached), "fed %llu + cached %d is not the prompt's %d",
          (unsigned long long)n_fed, c->n_cached, LONG);
    CHECK(n_fed < DIFF + SCHED_CKPT_EVERY, "all but the last %d shared: %llu tokens fed", DIFF,
          (unsigned long long)n_fed);
    CHECK(same_tokens(c, ref_q), "the request parting late answers differently");
    /* c branched from p's conversation into the other slot (a copy): p's slot still holds it all */
    f0 = fed(s);
    sched_req *d = run_one(s, p, LONG, GEN);
    CHECK(fed(s) == f0 && d->n_cached == LONG, "p after a branch from it: %llu fed, %d cached",
          (unsigned long long)(fed(s) - f0), d->n_cached);
    sched_release(s, d);
    sched_release(s, a);
    sched_release(s, b);
    sched_release(s, c);
    sched_release(one, ref_p);
    sched_release(one, ref_q);
out:
    sched_free(one);
    sched_free(s);
}

/* A branch copies its prefix only into an empty slot: with both slots holding conversations, a
 * request parting late from one takes that one's slot, and the other conversation stays whole. */
static void test_branch_keeps_others(void) {
    enum { LONG = 160, DIFF = 20 };
    int32_t a[LONG], b[LONG], q[LONG];
    make_tokens(a, LONG, 81);
    make_tokens(b, LONG, 82);
    memcpy(q, a, sizeof q);
    make_tokens(q + LONG - DIFF, DIFF, 83);
    sched *s = new_sched(2, 4, 512, false);
    if (!s) return;
    sched_req *ra = run_one(s, a, LONG, GEN), *rb = run_one(s, b, LONG, GEN);
    sched_req *rq = run_one(s, q, LONG, GEN);
    CHECK(rq->n_cached >= LONG - DIFF - SCHED_CKPT_EVERY, "the branch reused %d of a's prompt", rq->n_cached);
    uint64_t f0 = fed(s);
    sched_req *rb2 = run_one(s, b, LONG, GEN);
    CHECK(fed(s) == f0 && rb2->n_cached == LONG, "b after a branch from a: %llu fed, %d cached",
          (unsigned long long)(fed(s) - f0), rb2->n_cached);
    sched_release(s, ra);
    sched_release(s, rb);
    sched_release(s, rq);
    sched_release(s, rb2);
    sched_free(s);
}

/* A prefix held by a running slot is copied into the free one instead of being read again. */
static void test_prefix_copy(void) {
    enum { LONG = 160 };
    int32_t p[LONG], q[LONG + 8];
    make_tokens(p, LONG, 91);
    memcpy(q, p, sizeof p);
    make_tokens(q + LONG, 8, 92);
    sched *one = new_sched(1, 4, 512, true), *s = new_sched(2, 4, 512, false);
    if (!one || !s) goto out;
    sched_req *ref = alone(one, q, LONG + 8);
    sched_req *busy = endless(p, LONG, 400); /* holds its slot while the next request comes */
    CHECK(sched_submit(s, busy) == 0, "submit the long one");
    wait_for(s, busy, 2);
    uint64_t f0 = fed(s);
    sched_req *r = run_one(s, q, LONG + 8, GEN);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.prefix_copies == 1, "%llu prefix copies, want 1", (unsigned long long)st.prefix_copies);
    CHECK(r->n_cached >= LONG - SCHED_CKPT_EVERY && fed(s) - f0 <= (uint64_t)(LONG + 8 - r->n_cached) + 64,
          "copied prefix: %d cached, %llu fed", r->n_cached, (unsigned long long)(fed(s) - f0));
    CHECK(same_tokens(r, ref), "the request on a copied prefix answers differently");
    CHECK(st.ckpt_count > 0 && st.ckpt_bytes > 0 && st.ckpt_max == SCHED_CKPT_MAX, "checkpoint stats: %d, %zu, %d",
          st.ckpt_count, st.ckpt_bytes, st.ckpt_max);
    sched_release(s, busy);
    sched_release(s, r);
    sched_release(one, ref);
out:
    sched_free(one);
    sched_free(s);
}

static void test_cancel_and_queue(void) {
    sched *s = new_sched(1, 2, 2048, false);
    if (!s) return;
    int32_t p[PROMPT];
    make_tokens(p, PROMPT, 99);
    /* a running request, cancelled by its caller */
    sched_req *a = endless(p, PROMPT, 2000);
    CHECK(sched_submit(s, a) == 0, "submit a");
    wait_for(s, a, 1);
    CHECK(a->finish == FINISH_NONE && a->n_generated >= 1, "a should be generating (finish %d)", a->finish);

    /* the queue: one slot busy, room for queue_max = 2 more; a group that does not fit is refused whole */
    sched_req *b = endless(p, PROMPT, 2000), *c = greedy(p, PROMPT, 4), *d = greedy(p, PROMPT, 4);
    sched_req *cd[2] = {c, d};
    CHECK(sched_submit(s, b) == 0, "submit b (queued)");
    CHECK(sched_submit_group(s, cd, 2) == -1, "a group of 2 with room for 1 must be refused");
    CHECK(sched_submit(s, c) == 0, "submit c (queued, the queue is now full)");
    CHECK(sched_submit(s, d) == -1, "d must be refused: the queue is full");
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.queue_depth == 2 && st.active_slots == 1, "queue %d, active %d", st.queue_depth, st.active_slots);

    /* cancel the queued b: dropped without running; then the running a: its slot frees */
    sched_lock(s);
    b->cancelled = true;
    a->cancelled = true;
    sched_unlock(s);
    wait_for(s, a, 0);
    wait_for(s, c, 0);
    CHECK(a->finish == FINISH_CANCELLED && a->n_generated < 2000, "a: finish %d after %d tokens", a->finish,
          a->n_generated);
    CHECK(b->finish == FINISH_CANCELLED && b->n_generated == 0, "b: finish %d, %d tokens", b->finish, b->n_generated);
    CHECK(c->finish == FINISH_STOP || c->finish == FINISH_LENGTH, "c runs once the slot is free (finish %d)",
          c->finish);
    CHECK(sched_submit(s, d) == 0, "d fits now");
    wait_for(s, d, 0);
    CHECK(same_tokens(c, d), "c and d, same prompt, greedy: same tokens");
    sched_release(s, a);
    sched_release(s, b);
    sched_release(s, c);
    sched_release(s, d);

    /* after shutdown nothing is accepted */
    sched_shutdown(s);
    sched_req *e = greedy(p, PROMPT, 4);
    CHECK(sched_submit(s, e) == -1, "a shut-down scheduler must refuse requests");
    sched_release(s, e);
    sched_free(s);
}

/* A request cancelled while its forward runs (unlocked; on a slow device most of a step): its
 * caller frees what the request borrows (its grammar) at once, as job.c's job_free does, and
 * the scheduler must end it without sampling (before, the step sampled it through the freed
 * grammar: a use-after-free, a crash on the Vulkan backend). The prompt is one prefill chunk, so
 * the cancel lands in the forward that would give the first token. */
static void test_cancel_during_forward(void) {
    enum { LONG = 512 };
    sched *s = new_sched(1, 2, 2048, true);
    if (!s) return;
    int32_t *p = malloc(sizeof(int32_t) * LONG);
    const int delay_us[] = {0, 200, 500, 1000, 2000, 3000, 6000, 10000, 20000};
    for (size_t i = 0; i < sizeof delay_us / sizeof *delay_us; i++) {
        make_tokens(p, LONG, 500u + (uint32_t)i);
        grammar *g = grammar_any_object();
        sched_req *r = endless(p, LONG, 50);
        r->json_grammar = g;
        CHECK(sched_submit(s, r) == 0, "submit %zu", i);
        usleep((useconds_t)delay_us[i]);
        sched_lock(s);
        r->cancelled = true; /* what sched_release does, keeping our reference to look */
        int n0 = r->n_generated;
        sched_unlock(s);
        grammar_free(g); /* the caller's job is gone */
        wait_for(s, r, 0);
        CHECK(r->finish == FINISH_CANCELLED || n0 > 0, "cancel %zu: finish %d", i, r->finish);
        CHECK(r->n_generated == n0, "cancel %zu after %d us: %d tokens taken after the cancel", i, delay_us[i],
              r->n_generated - n0);
        sched_release(s, r);
    }
    free(p);
    sched_free(s);
}

int main(void) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    model = lfm2c_model_open(DATA("lfm2-tiny-dense-f32.gguf"), &mp, &err);
    CHECK(model != NULL, "open: %s", err.msg);
    if (!model) TEST_MAIN_END();
    n_vocab = lfm2c_vocab_size(model);
    test_batching_and_prefix();
    test_reuse_counts();
    test_prefix_copy();
    test_branch_keeps_others();
    test_cancel_and_queue();
    test_cancel_during_forward();
    lfm2c_model_free(model);
    TEST_MAIN_END();
}
