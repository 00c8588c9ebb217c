/* scheduler.c — continuous batching: slots, a bounded queue, one batched forward per step (plan /
 * run / deliver), within a token budget where one is set (decode rows first, then prompt chunks);
 * where the backend samples on the device (BACKEND_CAP_SAMPLE: CUDA with LFM2C_CUDA_SAMPLE=1) the
 * rows of slots with nothing of their own to apply are drawn there (core/sample_batch.h); each
 * slot's thinking-and-constraint state machine is gen_state.c. */
#include "serve/scheduler.h"
#include "serve/gen_state.h"
#include "base/clock.h"
#include "base/buf.h"
#include "core/backend.h"
#include "core/sample_batch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    lfm2c_session *sess;
    sched_req *req;  /* NULL: free */
    int n_fed;       /* prompt tokens in the session */
    int32_t next;    /* sampled token to feed at the next step, -1: none */
    bool has_logits; /* the last decode of this slot produced a logits row */
    lfm2c_sampler *sampler;
    lfm2c_detok detok;
    gen_state gen; /* the thinking block, the constraints, forced tokens (gen_state.h) */
    int i_script;  /* script tokens used */
    uint64_t last_used;
    lfm2c_lora *lora; /* the adapter its session runs with (NULL: none) */
    float lora_scale;
    int cap_prompt_lp; /* capacity of req->prompt_lp */
    struct sched *owner;
    lfm2c_spec *spec;   /* speculative decoding, NULL: off */
    int32_t *spec_feed; /* next + the draft verified this step */
    int spec_k;         /* tokens drafted this step (0: a plain step) */
} slot;

struct sched {
    lfm2c_model *model;
    sched_params p;
    int n_vocab, n_embd;
    slot *slots;
    sched_req **queue;
    int n_queue;
    pthread_mutex_t mu;
    pthread_cond_t work;
    pthread_t thread;
    bool running, stopping;
    sched_stats st;
    gen_vocab *gv; /* the vocabulary's tags, markers and ends (gen_state.h) */
    bool *allowed; /* mask scratch (the scheduler thread only) */
    float *scratch_logits;
    sample_item *items; /* with dev_sample: a step's items (n_slots) */
    bool dev_sample;    /* the backend may sample rows on the device (BACKEND_CAP_SAMPLE) */
    int pf_start;       /* token_budget: the slot whose prompt the next step's chunks begin at */
    /* token_budget (the GPU's way, up to 1,024 streams): every waiter waits on `progress`, which a
     * step's delivery broadcasts once, after the lock is let go (in_deliver: the changes wait for
     * it, wake_pending), instead of a broadcast per request under the lock */
    pthread_cond_t progress;
    bool in_deliver, wake_pending;
};

enum { PROMPT_LOGPROBS_CHUNK = 64 }; /* prompt tokens per step of a request reading all logits */

/* ---- requests ------------------------------------------------------------------------------ */

sched_req *sched_req_new(void) {
    sched_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_cond_init(&r->cond, NULL);
    r->refs = 1;
    r->n_logprobs = -1;
    r->stop_hit = -1;
    r->max_tokens = 256;
    r->spec_n_max = r->spec_n_min = -1;
    r->spec_p_min = -1;
    r->think_budget = -1;
    r->sampling = lfm2c_sampler_default_params();
    return r;
}

static void req_unref(sched_req *r);

static void req_free(sched_req *r) {
    if (r->fork_of) req_unref(r->fork_of);
    free(r->prompt);
    free(r->rows);
    free(r->logit_bias);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->text);
    free(r->reasoning);
    free(r->script);
    free(r->logprobs);
    free(r->prompt_lp);
    free(r->embedding);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static void req_unref(sched_req *r) {
    if (--r->refs == 0) req_free(r);
}

/* r changed (lock held): its waiters wake (with a token budget: all waiters, once a step) */
static void req_signal(sched *s, sched_req *r) {
    if (s->p.token_budget > 0) {
        if (s->in_deliver) s->wake_pending = true;
        else pthread_cond_broadcast(&s->progress);
        return;
    }
    pthread_cond_broadcast(&r->cond);
    if (r->notify) pthread_cond_broadcast(r->notify);
}

void sched_release(sched *s, sched_req *r) {
    pthread_mutex_lock(&s->mu);
    r->cancelled = true;
    r->notify = NULL; /* the caller's condition may be gone once it released the request */
    req_unref(r);
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

int sched_submit_group(sched *s, sched_req **rs, int n) {
    pthread_mutex_lock(&s->mu);
    /* free slots take requests at the next step: they count as room too */
    if (s->stopping || n < 1 || s->n_queue + n > s->p.queue_max + (s->p.n_slots - s->st.active_slots)) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        sched_req *r = rs[i];
        r->refs++;
        if (r->fork_of) r->fork_of->refs++; /* the child reads its parent's progress */
        r->t_submit = lfm2c_now_s();
        s->queue[s->n_queue++] = r;
        s->st.requests++;
    }
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int sched_submit(sched *s, sched_req *r) { return sched_submit_group(s, &r, 1); }

void sched_lock(sched *s) { pthread_mutex_lock(&s->mu); }
void sched_unlock(sched *s) { pthread_mutex_unlock(&s->mu); }

void sched_wait(sched *s, sched_req *r, int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(s->p.token_budget > 0 ? &s->progress : r->notify ? r->notify : &r->cond, &s->mu, &ts);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queue_depth = s->n_queue;
    out->n_slots = s->p.n_slots;
    double held = 0;
    for (int i = 0; s->slots && i < s->p.n_slots; i++)
        if (s->slots[i].req) held += s->slots[i].n_fed + s->slots[i].req->n_generated;
    out->kv_usage = s->p.n_slots > 0 ? held / ((double)s->p.n_slots * s->p.n_ctx) : 0;
    pthread_mutex_unlock(&s->mu);
}

void sched_add_render_time(sched *s, double seconds) { s->st.t_render += seconds; }

/* ---- output of one token (lock held) ------------------------------------------------------- */

static bool buf_append(char **buf, size_t *len, size_t *cap, const char *b, size_t n) {
    char *t = lfm2c_grow(*buf, cap, *len, n + 1, 1, 256);
    if (!t) return false;
    *buf = t;
    memcpy(*buf + *len, b, n);
    *len += n;
    (*buf)[*len] = 0;
    return true;
}

static bool text_append(sched_req *r, const char *b, size_t n) {
    return buf_append(&r->text, &r->n_text, &r->cap_text, b, n);
}

/* New output text of a slot through its thinking splitter (flush: the end): the thinking to
 * r->reasoning and the answer to r->text, or all of it to r->text when the request does not split.
 * The answer's bytes of this piece also go to answer (room for n + LFM2C_THINK_HOLD). */
static void out_route(sched_req *r, slot *sl, const char *p, size_t n, bool flush, char *answer, size_t *n_answer) {
    char think[512 + LFM2C_THINK_HOLD];
    size_t nt = 0;
    gen_split(&sl->gen, p, n, flush, think, &nt, answer, n_answer);
    if (!r->think_split) {
        if (n) text_append(r, p, n);
        return;
    }
    if (nt) buf_append(&r->reasoning, &r->n_reasoning, &r->cap_reasoning, think, nt);
    if (*n_answer) text_append(r, answer, *n_answer);
}

/* The log-probability of `tok` under `logits` and the top-k alternatives; NULL logits: a forced
 * token (certain). */
static void logprob_fill(const sched *s, int k, sched_logprob *lp, const float *logits, int32_t tok) {
    memset(lp, 0, sizeof *lp);
    lp->token = tok;
    if (!logits) {
        lp->logprob = 0;
        return;
    }
    float mx = -INFINITY;
    for (int i = 0; i < s->n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < s->n_vocab; i++) sum += exp((double)(logits[i] - mx));
    float lse = mx + (float)log(sum);
    lp->logprob = logits[tok] - lse;
    if (k > SCHED_MAX_TOP_LOGPROBS) k = SCHED_MAX_TOP_LOGPROBS;
    for (int i = 0; i < s->n_vocab; i++) { /* insertion into a small sorted list */
        float v = logits[i];
        if (lp->n_top == k && (k == 0 || v <= logits[lp->top_token[k - 1]])) continue;
        int j = lp->n_top < k ? lp->n_top++ : k - 1;
        while (j > 0 && logits[lp->top_token[j - 1]] < v) {
            lp->top_token[j] = lp->top_token[j - 1];
            j--;
        }
        lp->top_token[j] = i;
    }
    for (int j = 0; j < lp->n_top; j++) lp->top_logprob[j] = logits[lp->top_token[j]] - lse;
}

/* A new entry at the end of an array of logprobs (NULL when out of memory). */
static sched_logprob *logprob_push(sched_logprob **a, int *n, int *cap) {
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 64;
        sched_logprob *p = realloc(*a, (size_t)c * sizeof *p);
        if (!p) return NULL;
        *a = p;
        *cap = c;
    }
    return &(*a)[(*n)++];
}

/* tok's entry from its logits, or from the record of a draw on the device (dev: the logprobs it
 * computed under the same raw logits, the same order of ties) */
static void logprob_record(sched *s, sched_req *r, const float *logits, int32_t tok, const smp_out *dev) {
    if (r->n_logprobs < 0) return;
    sched_logprob *lp = logprob_push(&r->logprobs, &r->n_logprobs_out, &r->cap_logprobs);
    if (!lp) return;
    if (!dev) {
        logprob_fill(s, r->n_logprobs, lp, logits, tok);
        return;
    }
    memset(lp, 0, sizeof *lp);
    lp->token = tok;
    lp->logprob = dev->logprob;
    lp->n_top = dev->n_top < r->n_logprobs ? dev->n_top : r->n_logprobs;
    if (lp->n_top > SCHED_MAX_TOP_LOGPROBS) lp->n_top = SCHED_MAX_TOP_LOGPROBS;
    for (int j = 0; j < lp->n_top; j++) lp->top_token[j] = dev->top_token[j], lp->top_logprob[j] = dev->top_logprob[j];
}

/* Prompt tokens [from+1, from+n] are predicted by logits rows 0..n-1 of the chunk just read from
 * position `from` (lock held). */
static void prompt_logprobs_record(sched *s, slot *sl, int from, int n) {
    sched_req *r = sl->req;
    int cap = sl->cap_prompt_lp;
    if (from == 0) {
        sched_logprob *lp = logprob_push(&r->prompt_lp, &r->n_prompt_lp, &cap);
        if (lp) {
            memset(lp, 0, sizeof *lp);
            lp->token = r->prompt[0];
            lp->logprob = NAN;
        }
    }
    for (int j = 0; j < n && from + j + 1 < r->n_prompt; j++) {
        sched_logprob *lp = logprob_push(&r->prompt_lp, &r->n_prompt_lp, &cap);
        if (lp)
            logprob_fill(s, r->n_logprobs < 0 ? 0 : r->n_logprobs, lp, lfm2c_session_logits(sl->sess, j),
                         r->prompt[from + j + 1]);
    }
    sl->cap_prompt_lp = cap;
}

/* An embedding request's rows of the chunk just read (n tokens; lock held) into its embedding
 * (zeroed n_embd floats, the caller's): a mean adds them all, the last token's row is the
 * embedding; at the prompt's end the mean is divided. False when the finished vector is not
 * finite (the model's weights, or the adapter's, overflow). */
static bool embed_record(sched *s, slot *sl, int n, bool at_end) {
    sched_req *r = sl->req;
    const int H = s->n_embd;
    if (r->pooling == LFM2C_POOL_LAST) {
        if (at_end) memcpy(r->embedding, lfm2c_session_embedding(sl->sess, 0), sizeof(float) * (size_t)H);
    } else {
        for (int j = 0; j < n; j++) {
            const float *row = lfm2c_session_embedding(sl->sess, j);
            for (int i = 0; i < H; i++) r->embedding[i] += row[i];
        }
        if (at_end)
            for (int i = 0; i < H; i++) r->embedding[i] /= (float)r->n_prompt;
    }
    bool finite = true;
    for (int i = 0; at_end && i < H; i++) finite &= isfinite(r->embedding[i]) != 0;
    return finite;
}

/* ---- slots -------------------------------------------------------------------------------- */

static void lat_observe(uint64_t *bucket, uint64_t *count, double *sum, double v) {
    static const double bounds[SCHED_N_LAT] = SCHED_LAT_BOUNDS;
    for (int i = 0; i < SCHED_N_LAT; i++)
        if (v <= bounds[i]) bucket[i]++;
    (*count)++;
    *sum += v;
}

/* Latency of a request that produced tokens: time to first token, time per later token, whole. */
static void stats_finished(sched_stats *st, const sched_req *r) {
    if (r->n_generated < 1 || r->t_first <= 0) return;
    double now = lfm2c_now_s();
    lat_observe(st->ttft_bucket, &st->ttft_count, &st->ttft_sum, r->t_first - r->t_submit);
    if (r->n_generated > 1)
        lat_observe(st->tpot_bucket, &st->tpot_count, &st->tpot_sum, (now - r->t_first) / (r->n_generated - 1));
    lat_observe(st->e2e_bucket, &st->e2e_count, &st->e2e_sum, now - r->t_submit);
}

static void slot_finish(sched *s, slot *sl, int reason) {
    sched_req *r = sl->req;
    stats_finished(&s->st, r);
    char buf[64], answer[64 + LFM2C_THINK_HOLD];
    size_t na = 0;
    int n = lfm2c_detok_flush(&sl->detok, buf, sizeof buf);
    if (reason != FINISH_CANCELLED) {
        if (n > 0) out_route(r, sl, buf, (size_t)n, false, answer, &na);
        out_route(r, sl, NULL, 0, true, answer, &na);
    }
    r->n_released = r->n_text;
    r->finish = reason;
    req_signal(s, r);
    req_unref(r);
    sl->req = NULL;
    lfm2c_sampler_free(sl->sampler);
    sl->sampler = NULL;
    gen_clear(&sl->gen);
    sl->next = -1;
    sl->has_logits = false;
    lfm2c_session_checkpoint(sl->sess);
    s->st.active_slots--;
}

static void slot_fail(sched *s, slot *sl, const char *msg) {
    snprintf(sl->req->error, sizeof sl->req->error, "%s", msg);
    slot_finish(s, sl, FINISH_ERROR);
}

int sched_min_answer_tokens(const sched *s, const sched_req *r, int limit) {
    enum { BUDGET = 1 << 21 }; /* bytes fed by the search: tens of milliseconds at most */
    int call = -1, json = -1;
    bool calls =
        r->tool_grammar && s->gv->tool_start >= 0 && (r->force_tool_call || (r->tools_auto && r->json_grammar));
    if (calls) { /* the marker, then the list */
        call = grammar_min_tokens(r->tool_grammar, s->gv->gvocab, false, limit - 1, BUDGET);
        if (call >= 0) call += 1;
    }
    if (r->json_grammar && !r->force_tool_call)
        json = grammar_min_tokens(r->json_grammar, s->gv->gvocab, s->gv->n_eog > 0, limit, BUDGET);
    if (calls && r->json_grammar && !r->force_tool_call) /* either answer: too long only when both are */
        return call > limit && json > limit ? (call < json ? call : json) : -1;
    return calls ? call : json;
}

/* The sampler's filter hook: only tokens that keep the grammar alive (and, where the output may
 * open a thinking block first, the open tag); inside a block whose answer is constrained, no end
 * of generation; under a test script, only the script's next token. */
static void mask_filter(void *user, float *logits, int n_vocab) {
    slot *sl = user;
    sched *s = sl->owner;
    const sched_req *r = sl->req;
    if (!gen_filter(&sl->gen, s->allowed, logits)) return; /* nothing allowed: the sample fails */
    if (r && r->script) { /* tests: the script's token if the mask left it, then an end */
        int32_t want = sl->i_script < r->n_script ? r->script[sl->i_script] : -1;
        for (int i = 0; i < n_vocab; i++)
            if (i != want && (want >= 0 || !lfm2c_token_is_eog(s->model, i))) logits[i] = -INFINITY;
    }
}

/* A constrained answer cut by max_tokens or the context: "length", or a 400 when the context,
 * not the client, cut it (lock held). */
static void slot_cut(sched *s, slot *sl, bool ctx_full) {
    sched_req *r = sl->req;
    if (!((ctx_full || r->ctx_bound) && gen_constrained(&sl->gen))) {
        slot_finish(s, sl, FINISH_LENGTH);
        return;
    }
    char msg[200];
    snprintf(msg, sizeof msg,
             "the context of %d tokens ran out before the %s was complete (prompt %d tokens, "
             "%d generated): shorten the prompt or use a larger context",
             lfm2c_session_n_ctx(sl->sess), sl->gen.g_tool || r->force_tool_call ? "tool call" : "structured output",
             r->n_prompt, r->n_generated);
    r->error_status = 400;
    r->error_code = "context_length_exceeded";
    slot_fail(s, sl, msg);
}

/* What gen_take_end said, for the slot: true when it goes on. */
static bool slot_verdict(sched *s, slot *sl, int v) {
    switch (v) {
    case GEN_GO: return true;
    case GEN_STOP: slot_finish(s, sl, FINISH_STOP); break;
    case GEN_CALLS: slot_finish(s, sl, FINISH_TOOL_CALLS); break;
    case GEN_FAIL_ANSWER:
        slot_fail(s, sl, "the text after the thinking block does not fit the output constraints");
        break;
    default: slot_fail(s, sl, "internal error: constrained decoding left its grammar"); break;
    }
    return false;
}

/* Handles the token chosen for a slot (lock held): drawn from logits, or on the device (dev: its
 * record), or forced (neither). Returns true when the slot goes on. */
static bool slot_take(sched *s, slot *sl, int32_t t, const float *logits, const smp_out *dev) {
    sched_req *r = sl->req;
    if (gen_take_begin(&sl->gen, t, logits == NULL && dev == NULL) == GEN_STOP) {
        slot_finish(s, sl, FINISH_STOP);
        return false;
    }
    if (r->n_generated == 0) r->t_first = lfm2c_now_s();
    r->n_generated++;
    r->n_think_tokens = sl->gen.n_think;
    s->st.generated_tokens++;
    logprob_record(s, r, logits, t, dev);
    char piece[512], answer[512 + LFM2C_THINK_HOLD];
    size_t n_answer = 0;
    int n = lfm2c_detok_push(&sl->detok, s->model, t, piece, sizeof piece);
    size_t old = r->n_text;
    out_route(r, sl, piece,
              (size_t)(n <= 0                  ? 0
                       : n < (int)sizeof piece ? n
                                               : (int)sizeof piece),
              false, answer, &n_answer);
    if (!slot_verdict(s, sl, gen_take_end(&sl->gen, t, answer, n_answer))) return false;
    int hit = !sl->gen.g && r->n_stop ? gen_stops(r->text, &r->n_text, old, r->stop, r->n_stop, &r->n_released) : -1;
    if (hit >= 0) {
        r->stop_hit = hit;
        slot_finish(s, sl, FINISH_STOP);
        return false;
    }
    if (!r->n_stop || sl->gen.g) r->n_released = r->n_text;
    /* max_tokens is a hard bound in every mode, forced tokens included: a constrained answer cut
     * here ends with finish "length" and exactly what was generated (nothing is invented) */
    bool ctx_full = lfm2c_session_n_past(sl->sess) >= lfm2c_session_n_ctx(sl->sess);
    if (r->n_generated >= r->max_tokens || ctx_full) {
        slot_cut(s, sl, ctx_full);
        return false;
    }
    sl->next = t;
    req_signal(s, r);
    return true;
}

/* What a draw gave (lfm2c_sampler_sample's result): false, the slot failed saying why, when it is
 * no token to take (lock held). */
static bool draw_ok(sched *s, slot *sl, int32_t t) {
    sched_req *r = sl->req;
    if (t == LFM2C_SAMPLE_NOT_FINITE) { /* no token drawn from these means anything: a 500 */
        slot_fail(s, sl,
                  "the model's logits are not finite (NaN or infinity): its weights, or the adapter's, overflow");
        return false;
    }
    if (sl->gen.g_stuck || t < 0) { /* the request's own limits leave no token */
        r->error_status = 400;
        slot_fail(s, sl,
                  r->script ? "the test script's next token is not allowed here"
                  : sl->gen.g || sl->gen.th == GEN_TH_MAY_OPEN
                      ? "no token satisfies the output constraints together with logit_bias"
                      : "logit_bias excludes every token");
        return false;
    }
    if (t >= s->n_vocab) {
        slot_fail(s, sl, "sampler returned no token");
        return false;
    }
    return true;
}

/* Picks the next token of a slot whose last decode produced logits (lock held). */
static void slot_sample(sched *s, slot *sl, const float *logits) {
    sched_req *r = sl->req;
    sl->has_logits = false;
    int32_t f;
    if (gen_forced(&sl->gen, &f)) {
        if (r->script && sl->i_script < r->n_script && r->script[sl->i_script] == f)
            sl->i_script++; /* the script says it too */
        slot_take(s, sl, f, NULL, NULL);
        return;
    }
    int hist_n = lfm2c_session_n_past(sl->sess);
    const int32_t *hist = lfm2c_session_tokens(sl->sess);
    int32_t t = lfm2c_sampler_sample(sl->sampler, logits, hist, hist_n);
    if (!draw_ok(s, sl, t)) return;
    if (r->script) sl->i_script++;
    slot_take(s, sl, t, logits, NULL);
}

/* Whether a decoding slot's next token may be drawn by the backend (decode_batch_sample_items):
 * nothing of the slot's own machine applies to the draw this step (no grammar or mask, no forced
 * token, no test script, no draft to verify), so its sampler runs without the filter hook. */
static bool slot_plain(const slot *sl) {
    return !sl->req->script && !sl->gen.g && sl->gen.th == GEN_TH_FREE && sl->gen.i_forced >= sl->gen.n_forced &&
           !sl->spec_k;
}

/* A slot's token as the backend's sampler left it (lock held): drawn there (o filled), or left to
 * the host (SMP_PENDING, SMP_HOST: its logits row is in the session), sampled as any other. */
static void slot_sample_dev(sched *s, slot *sl, const smp_out *o) {
    if (o->status == SMP_PENDING || o->status == SMP_HOST) {
        slot_sample(s, sl, lfm2c_session_logits(sl->sess, 0));
        return;
    }
    sl->has_logits = false;
    const int32_t t = o->status == SMP_OK ? o->token : o->status == SMP_NOT_FINITE ? LFM2C_SAMPLE_NOT_FINITE : -1;
    if (draw_ok(s, sl, t)) slot_take(s, sl, t, NULL, o);
}

/* Sets a slot up for a request whose first `keep` prompt tokens are in its session (lock held). */
static void slot_setup(sched *s, slot *sl, sched_req *r, int keep) {
    sl->n_fed = keep;
    sl->next = -1;
    sl->spec_k = 0;
    sl->has_logits = false;
    sl->cap_prompt_lp = 0;
    sl->i_script = 0;
    lfm2c_detok_init(&sl->detok, true);
    sl->sampler = lfm2c_sampler_new(&r->sampling, s->n_vocab);
    if (sl->sampler) {
        if (r->logit_bias) lfm2c_sampler_set_logit_bias(sl->sampler, r->logit_bias);
        lfm2c_sampler_set_filter(sl->sampler, mask_filter, sl);
    }
    sl->req = r;
    gen_rules rules = {.json_grammar = r->json_grammar,
                       .tool_grammar = r->tool_grammar,
                       .force_tool_call = r->force_tool_call,
                       .tools_auto = r->tools_auto,
                       .think_opened = r->think_opened,
                       .think_allowed = r->think_allowed,
                       .think_budget = r->think_budget};
    gen_start(&sl->gen, s->gv, &rules);
    r->n_cached = keep;
    s->st.prompt_tokens += (uint64_t)r->n_prompt;
    s->st.cached_tokens += (uint64_t)keep;
    if (!sl->sampler) slot_fail(s, sl, "out of memory");
}

static void fork_children(sched *s, slot *parent);

/* A slot's prompt is read, its logits in row `row` of its session: the first token (lock held). */
static void prompt_done(sched *s, slot *sl, int row) {
    if (sl->req->max_tokens <= 0) { /* the prompt only */
        slot_finish(s, sl, FINISH_LENGTH);
        return;
    }
    fork_children(s, sl);
    sl->next = -1;
    sl->last_used = s->st.steps;
    slot_sample(s, sl, lfm2c_session_logits(sl->sess, row));
}

/* The slots' checkpoints, for /metrics (scheduler thread, lock held: the sessions are still). */
static void ckpt_stats(sched *s) {
    int count = 0;
    size_t bytes = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        int c = 0;
        size_t b = 0;
        lfm2c_session_checkpoint_usage(s->slots[i].sess, &c, &b);
        count += c;
        bytes += b;
    }
    s->st.ckpt_count = count;
    s->st.ckpt_bytes = bytes;
}

/* Prompt tokens of r a slot's session can keep (lfm2c_session_reusable), 0 when the request
 * must read its whole prompt (lock held; the session of a free slot is not being fed). */
static int slot_reusable(const sched *s, const slot *sl, const sched_req *r) {
    if (s->p.no_prefix_reuse || r->prompt_logprobs) return 0; /* every position's logits are needed */
    if (r->embed && r->pooling == LFM2C_POOL_MEAN) return 0;  /* every position's row */
    if (sl->lora != r->lora || (r->lora && sl->lora_scale != r->lora_scale)) return 0; /* other weights */
    return lfm2c_session_reusable(sl->sess, r->prompt, r->n_prompt);
}

/* A request taken from the queue whose caller cancelled it while its slot was being prepared
 * (lock held): it ends without touching what it borrows from its caller (its grammars, freed
 * once the caller released it). */
static bool start_cancelled(sched *s, sched_req *r) {
    if (!r->cancelled) return false;
    r->finish = FINISH_CANCELLED;
    req_signal(s, r);
    req_unref(r);
    s->st.active_slots--;
    return true;
}

/* A request its slot's session cannot run (its adapter, or embeddings, on this backend): it
 * fails with msg (status: 400 when the request asked for what this server lacks, else 0). */
static void start_failed(sched *s, slot *sl, sched_req *r, const char *msg, int status) {
    pthread_mutex_lock(&s->mu);
    if (!start_cancelled(s, r)) {
        slot_setup(s, sl, r, 0);
        if (sl->req) {
            r->error_status = status;
            slot_fail(s, sl, msg);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* Gives a queued request the free slot sharing the longest prefix with its prompt. Runs on the
 * scheduler thread without the lock (it may re-feed tokens after restoring a checkpoint). */
static void slot_start(sched *s, slot *sl, sched_req *r, int keep) {
    lfm2c_error err = {0};
    if (sl->lora != r->lora || (r->lora && sl->lora_scale != r->lora_scale)) { /* resets the session */
        float scale = r->lora_scale;
        int rc = lfm2c_session_set_lora(sl->sess, r->lora ? &r->lora : NULL, &scale, r->lora ? 1 : 0, &err);
        sl->lora = rc ? NULL : r->lora;
        sl->lora_scale = scale;
        if (rc) {
            lfm2c_session_set_lora(sl->sess, NULL, NULL, 0, NULL);
            start_failed(s, sl, r, err.msg, 0);
            return;
        }
        keep = 0;
    }
    if (lfm2c_session_set_embeddings(sl->sess, r->embed, &err)) { /* the mode keeps the cache */
        start_failed(s, sl, r, err.msg, 400);
        return;
    }
    if (keep == 0) lfm2c_session_reset(sl->sess);
    else if (lfm2c_session_sync(sl->sess, r->prompt, r->n_prompt, &keep, &err) != 0) keep = 0; /* reset: read it all */
    pthread_mutex_lock(&s->mu);
    if (!start_cancelled(s, r)) {
        slot_setup(s, sl, r, keep);
        if (sl->req && keep == r->n_prompt) prompt_done(s, sl, 0); /* its logits were kept */
    }
    pthread_mutex_unlock(&s->mu);
}

/* A request copying its parent's state waits while the parent's prompt is still being read. */
static bool waits_for_parent(sched *s, const sched_req *r) {
    const sched_req *p = r->fork_of;
    if (!p || p->finish != FINISH_NONE || p->cancelled) return false;
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].req == p) return s->slots[i].n_fed < p->n_prompt;
    return true; /* still queued */
}

/* The parent's prompt is read: each waiting child that finds a free slot starts from a copy of
 * the parent's state and samples from the same logits (lock held). Children that find no slot
 * are admitted later like any request. */
static void fork_children(sched *s, slot *parent) {
    if (parent->req->prompt_logprobs) return; /* its logits are rows of the whole chunk */
    for (int q = 0; q < s->n_queue; q++) {
        sched_req *r = s->queue[q];
        if (r->fork_of != parent->req || r->cancelled) continue;
        slot *sl = NULL;
        for (int i = 0; i < s->p.n_slots && !sl; i++)
            if (!s->slots[i].req) sl = &s->slots[i];
        if (!sl) return;
        lfm2c_error err = {0};
        if (lfm2c_session_copy(sl->sess, parent->sess, &err) != 0) return;
        sl->lora = parent->lora; /* the copy runs with the parent's adapter */
        sl->lora_scale = parent->lora_scale;
        memmove(&s->queue[q], &s->queue[q + 1], (size_t)(s->n_queue - q - 1) * sizeof *s->queue);
        s->n_queue--;
        q--;
        s->st.active_slots++;
        slot_setup(s, sl, r, r->n_prompt);
        if (sl->req) slot_sample(s, sl, lfm2c_session_logits(sl->sess, 0));
    }
}

/* The free slot for r: the one holding the longest reusable prefix of its prompt, the least
 * recently used among equals; -1 when none is free (lock held). */
static int slot_choose(sched *s, const sched_req *r, int *keep) {
    int best = -1, best_keep = -1;
    for (int i = 0; i < s->p.n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->req) continue;
        int k = slot_reusable(s, sl, r);
        if (k > best_keep || (k == best_keep && sl->last_used < s->slots[best].last_used)) best = i, best_keep = k;
    }
    *keep = best_keep;
    return best;
}

enum { COPY_MIN_GAIN = 16 }; /* prompt tokens a copy must save over the chosen slot's own prefix */

/* Another slot (running or free) whose session holds a longer prefix of r's prompt than the
 * chosen slot's by COPY_MIN_GAIN tokens or more: copying its state (KV entries and conv
 * checkpoints, a memcpy) beats reading those tokens again. -1: none. Scheduler thread, between
 * steps: no session is being fed. */
static int prefix_donor(sched *s, const sched_req *r, int chosen, int keep) {
    if (s->p.no_prefix_reuse || r->prompt_logprobs || (r->embed && r->pooling == LFM2C_POOL_MEAN)) return -1;
    int donor = -1, most = keep + COPY_MIN_GAIN - 1;
    for (int i = 0; i < s->p.n_slots; i++) {
        slot *sl = &s->slots[i];
        if (i == chosen || sl->lora != r->lora || (r->lora && sl->lora_scale != r->lora_scale)) continue;
        int k = lfm2c_session_reusable(sl->sess, r->prompt, r->n_prompt);
        if (k > most) donor = i, most = k;
    }
    return donor;
}

/* When the chosen slot would drop COPY_MIN_GAIN or more tokens of its own past r's prefix (a
 * conversation r branches from, which a regenerate or another branch would want), an empty free
 * slot takes a copy of the prefix instead. Only an empty one: a free slot holding state holds
 * another conversation, whose next turn would then read its whole prompt again (measured: 8
 * four-turn chats on 8 slots fell from cached turns to full re-reads when the least recently used
 * slot was taken). -1: none (or nothing to keep). Scheduler thread, between steps (only it gives
 * slots out). */
static int spare_slot(sched *s, int chosen, int keep) {
    const slot *c = &s->slots[chosen];
    if (keep <= 0 || lfm2c_session_n_past(c->sess) - keep < COPY_MIN_GAIN) return -1;
    for (int i = 0; i < s->p.n_slots; i++)
        if (i != chosen && !s->slots[i].req && lfm2c_session_n_past(s->slots[i].sess) == 0) return i;
    return -1;
}

/* The chosen slot takes the donor's state (what the slot held is worth less: the donor's prefix
 * is longer); returns the prompt tokens it can now keep (0 when the copy failed: reset). */
static int slot_copy_from(sched *s, slot *sl, slot *donor, const sched_req *r, int keep) {
    lfm2c_error err = {0};
    if (lfm2c_session_copy(sl->sess, donor->sess, &err) != 0) {
        lfm2c_session_reset(sl->sess); /* half copied: nothing of it can be trusted */
        return 0;
    }
    sl->lora = donor->lora; /* the copy runs with the donor's adapter, which is r's */
    sl->lora_scale = donor->lora_scale;
    pthread_mutex_lock(&s->mu);
    s->st.prefix_copies++;
    pthread_mutex_unlock(&s->mu);
    int k = lfm2c_session_reusable(sl->sess, r->prompt, r->n_prompt);
    return k > keep ? k : keep;
}

static void admit(sched *s) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        /* drop cancelled requests still waiting */
        for (int i = 0; i < s->n_queue; i++)
            if (s->queue[i]->cancelled) {
                sched_req *r = s->queue[i];
                memmove(&s->queue[i], &s->queue[i + 1], (size_t)(s->n_queue - i - 1) * sizeof *s->queue);
                s->n_queue--;
                i--;
                r->finish = FINISH_CANCELLED;
                req_unref(r);
            }
        int qi = 0;
        while (qi < s->n_queue && waits_for_parent(s, s->queue[qi])) qi++;
        sched_req *r = qi < s->n_queue ? s->queue[qi] : NULL;
        int keep = -1, best = r ? slot_choose(s, r, &keep) : -1;
        if (best < 0) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        memmove(&s->queue[qi], &s->queue[qi + 1], (size_t)(s->n_queue - qi - 1) * sizeof *s->queue);
        s->n_queue--;
        s->st.active_slots++;
        pthread_mutex_unlock(&s->mu);
        int donor = prefix_donor(s, r, best, keep), spare = donor < 0 ? spare_slot(s, best, keep) : -1;
        if (donor >= 0) keep = slot_copy_from(s, &s->slots[best], &s->slots[donor], r, keep);
        else if (spare >= 0) keep = slot_copy_from(s, &s->slots[spare], &s->slots[best], r, keep), best = spare;
        slot_start(s, &s->slots[best], r, keep);
    }
}

/* ---- speculative decoding (one slot's draft rides in the step's batch) ----------------------- */

/* Whether a slot drafts this step, with the request's settings put on its speculator; *room:
 * tokens it may draft. Not for requests whose tokens must each see their own logits (a grammar,
 * tool calls, forced tokens, logprobs, a test script), nor before the answer of a request with a
 * thinking budget (the budget closes the block at an exact token). */
static bool slot_speculates(sched *s, slot *sl, int *room) {
    sched_req *r = sl->req;
    if (!sl->spec || !r || sl->next < 0 || sl->n_fed < r->n_prompt || sl->gen.g || r->json_grammar || r->tool_grammar ||
        r->n_logprobs >= 0 || sl->gen.i_forced < sl->gen.n_forced || r->script ||
        (r->think_budget >= 0 && sl->gen.think.phase != LFM2C_THINK_ANSWER))
        return false;
    lfm2c_spec_params p = s->p.spec;
    if (r->spec_n_max >= 0 && r->spec_n_max < p.draft_max) p.draft_max = r->spec_n_max;
    if (r->spec_n_min >= 0) p.draft_min = r->spec_n_min;
    if (p.draft_min > p.draft_max) p.draft_min = p.draft_max;
    if (r->spec_p_min >= 0) p.draft_p_min = r->spec_p_min;
    *room = r->max_tokens - r->n_generated - 1; /* next and the draft's tokens all count */
    return p.draft_max > 0 && *room > 0 && lfm2c_spec_set_params(sl->spec, &p, NULL) == 0;
}

/* Drafts for every speculating slot at once (lfm2c_spec_draft_batch: one forward of the draft
 * model per drafted position for all of them); sl->spec_k is each slot's draft for the step's
 * verification forward. A failed draft is just no draft: the next one re-syncs. Scheduler
 * thread, lock not held. */
static void slots_draft(sched *s) {
    const int n_slots = s->p.n_slots;
    lfm2c_spec *sps[n_slots];
    lfm2c_session *ss[n_slots];
    lfm2c_sampler *smps[n_slots];
    int32_t last[n_slots], *drafts[n_slots];
    int max[n_slots], k[n_slots], which[n_slots], n = 0;
    for (int i = 0; i < n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->spec_k = 0;
        int room = 0;
        if (!slot_speculates(s, sl, &room)) continue;
        sps[n] = sl->spec, ss[n] = sl->sess, smps[n] = sl->sampler, last[n] = sl->next;
        drafts[n] = sl->spec_feed + 1, max[n] = room, k[n] = 0, which[n++] = i;
    }
    if (!n || lfm2c_spec_draft_batch(sps, ss, smps, last, drafts, max, k, n, NULL)) return;
    for (int i = 0; i < n; i++) {
        slot *sl = &s->slots[which[i]];
        sl->spec_feed[0] = sl->next;
        sl->spec_k = k[i];
    }
}

/* After the verification forward: the accepted tokens and the target's next one, each taken
 * as if sampled alone (stop strings, max_tokens, end of generation). Lock held. */
static void slot_accept(sched *s, slot *sl) {
    int k = sl->spec_k, V = s->n_vocab;
    int32_t out[k + 1];
    const float *rows = lfm2c_session_logits(sl->sess, 0); /* row i: what out[i] was drawn from */
    lfm2c_error err = {0};
    sl->spec_k = 0;
    sl->has_logits = false;
    int n = lfm2c_spec_accept(sl->spec, sl->sess, sl->sampler, sl->spec_feed + 1, k, out, &err);
    if (n < 1) {
        slot_fail(s, sl, err.msg);
        return;
    }
    s->st.spec_steps++;
    s->st.spec_drafted += (uint64_t)k;
    s->st.spec_accepted += (uint64_t)(n - 1);
    for (int i = 0; i < n; i++)
        if (!slot_take(s, sl, out[i], rows + (size_t)i * V, NULL)) break;
}

/* The first image row r's prompt from position `from` on takes (the rows of the ids below 0
 * before it are in the session already); NULL without images. */
static const float *prompt_rows(const sched *s, const sched_req *r, int from) {
    if (!r->rows) return NULL;
    size_t k = 0;
    for (int i = 0; i < from; i++) k += r->prompt[i] < 0;
    return r->rows + k * (size_t)lfm2c_model_get_info(s->model)->n_embd;
}

/* A step's batch: an item per slot that reads a chunk of its prompt or decodes its next token
 * (and a draft), the arrays sized by the slots; what the forward said. */
typedef struct step_batch {
    lfm2c_session **sess;
    const int32_t **toks;
    const float **rows;
    int *ns, *modes, *which; /* tokens, logits mode, slot of each item */
    sample_item *items;      /* where the backend samples (sched.dev_sample): each item's, smp NULL
                                when its row is sampled here; else NULL */
    int n, n_prefill, n_decode, n_sampled;
    int rc;
    lfm2c_error err;
    double t_start, t_forward, dt; /* when the step and its forward began, the forward's seconds */
} step_batch;

/* The next chunk of a slot's prompt within the step's prefill budget (0: none this step). */
static int prompt_chunk(const sched *s, const slot *sl, int budget, bool all_rows) {
    const sched_req *r = sl->req;
    if (budget <= 0) return 0;
    int n = r->n_prompt - sl->n_fed;
    if (n > budget) n = budget;
    /* end a chunk at a turn boundary so a checkpoint lands there */
    for (int j = 0; j < n - 1; j++)
        if (r->prompt[sl->n_fed + j] >= 0 && lfm2c_token_is_eog(s->model, r->prompt[sl->n_fed + j]) &&
            sl->n_fed + j + 1 < r->n_prompt) {
            n = j + 1;
            break;
        }
    if (all_rows && n > PROMPT_LOGPROBS_CHUNK) n = PROMPT_LOGPROBS_CHUNK; /* bounds the rows */
    return n;
}

/* Adds slot i's item to the batch (its prompt's next chunk, or its next token and draft) and
 * returns the prompt tokens it takes of the budget; the batch is unchanged when it has none. */
static int plan_slot(sched *s, int i, step_batch *b, int budget) {
    slot *sl = &s->slots[i];
    sched_req *r = sl->req;
    int k = b->n, n = 0;
    if (b->items) b->items[k].smp = NULL; /* (a row sampled here unless set below) */
    if (sl->n_fed < r->n_prompt) {
        const bool all_rows = r->prompt_logprobs || (r->embed && r->pooling == LFM2C_POOL_MEAN);
        if (!(n = prompt_chunk(s, sl, budget, all_rows))) return 0;
        b->n_prefill += n;
        b->toks[k] = r->prompt + sl->n_fed;
        b->rows[k] = prompt_rows(s, r, sl->n_fed);
        b->ns[k] = n;
        b->modes[k] = all_rows                       ? LFM2C_LOGITS_ALL
                      : sl->n_fed + n == r->n_prompt ? LFM2C_LOGITS_LAST
                                                     : LFM2C_LOGITS_NONE;
    } else if (sl->next >= 0) {
        int d = sl->spec_k;
        b->n_decode += 1 + d;
        b->toks[k] = d ? sl->spec_feed : &sl->next;
        b->rows[k] = NULL;
        b->ns[k] = 1 + d;
        b->modes[k] = d ? LFM2C_LOGITS_ALL : LFM2C_LOGITS_LAST;
        if (b->items && slot_plain(sl)) { /* its draw on the device: the filter hook (a no-op now) off */
            b->items[k] = (sample_item){.smp = sl->sampler, .n_logprobs = r->n_logprobs};
            lfm2c_sampler_set_filter(sl->sampler, NULL, NULL);
            b->n_sampled++;
        }
    } else {
        return 0;
    }
    b->sess[k] = sl->sess;
    b->which[b->n++] = i;
    return n;
}

/* A step within sched_params.token_budget: every decoding slot's item first, then prompt chunks
 * in the room left (at least an eighth of the budget, so prompts advance under any decode load;
 * at most prefill_chunk), round the slots from the one whose prompt was cut last step, so a
 * prompt begun is read to its end before the next one starts. */
static void plan_budget(sched *s, step_batch *b) {
    const int n = s->p.n_slots, budget = s->p.token_budget;
    for (int i = 0; i < n; i++) {
        const slot *sl = &s->slots[i];
        if (sl->req && sl->n_fed >= sl->req->n_prompt) plan_slot(s, i, b, 0);
    }
    int room = budget - b->n_decode, cut = -1, last = -1;
    if (room < budget / 8) room = budget / 8;
    if (room > s->p.prefill_chunk) room = s->p.prefill_chunk;
    for (int j = 0; j < n && room > 0; j++) {
        const int i = (s->pf_start + j) % n;
        const slot *sl = &s->slots[i];
        if (!sl->req || sl->n_fed >= sl->req->n_prompt) continue;
        const int took = plan_slot(s, i, b, room);
        room -= took;
        if (took) last = i;
        if (took && cut < 0 && sl->n_fed + took < sl->req->n_prompt) cut = i;
    }
    if (cut >= 0) s->pf_start = cut;
    else if (last >= 0) s->pf_start = (last + 1) % n;
}

/* Plan: cancelled slots end, the speculating ones draft, and every active slot gets its item.
 * False when there is nothing to run. */
static bool step_plan(sched *s, step_batch *b) {
    int budget = s->p.prefill_chunk;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->p.n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->req && sl->req->cancelled) slot_finish(s, sl, FINISH_CANCELLED);
    }
    pthread_mutex_unlock(&s->mu);
    slots_draft(s);
    if (s->p.token_budget > 0) {
        plan_budget(s, b);
        return b->n > 0;
    }
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].req) budget -= plan_slot(s, i, b, budget);
    return b->n > 0;
}

/* Run: the one forward of the step (lock not held); with rows to sample on the device, through
 * decode_batch_sample_items. */
static void step_run(step_batch *b) {
    b->t_forward = lfm2c_now_s();
    if (b->n_sampled)
        b->rc = decode_batch_sample_items(b->sess, b->toks, b->rows, b->ns, b->modes, b->items, b->n, &b->err);
    else b->rc = lfm2c_decode_batch_embd(b->sess, b->toks, b->rows, b->ns, b->modes, b->n, &b->err);
    b->dt = lfm2c_now_s() - b->t_forward;
}

/* Item k of the forward to its slot: a chunk of its prompt recorded (the first token once it
 * is read), or its next token sampled, or its draft accepted (lock held). */
static void deliver_item(sched *s, const step_batch *b, int k) {
    slot *sl = &s->slots[b->which[k]];
    sched_req *r = sl->req;
    const sample_item *it = b->n_sampled && b->items[k].smp ? &b->items[k] : NULL;
    if (it) lfm2c_sampler_set_filter(it->smp, mask_filter, sl); /* the slot's own filter back */
    if (!r) return;
    /* cancelled during the forward (which runs unlocked, and may be slow on a device): its
     * caller may already have freed what the request borrows (its grammars), so it ends here
     * without sampling */
    if (r->cancelled || b->rc != 0) {
        sl->spec_k = 0;
        if (r->cancelled) slot_finish(s, sl, FINISH_CANCELLED);
        else slot_fail(s, sl, b->err.msg);
        return;
    }
    if (sl->n_fed < r->n_prompt) {
        int n = b->ns[k];
        if (r->prompt_logprobs) prompt_logprobs_record(s, sl, sl->n_fed, n);
        if (r->embed && !embed_record(s, sl, n, sl->n_fed + n == r->n_prompt)) {
            slot_fail(s, sl,
                      "the embedding is not finite (NaN or infinity): the model's weights, or the "
                      "adapter's, overflow");
            return;
        }
        sl->n_fed += n;
        lfm2c_session_checkpoint(sl->sess); /* a chunk's end; the prompt's end keeps its logits */
        if (sl->n_fed == r->n_prompt) prompt_done(s, sl, b->modes[k] == LFM2C_LOGITS_ALL ? n - 1 : 0);
        return;
    }
    sl->next = -1;
    sl->last_used = s->st.steps;
    if (sl->spec_k) slot_accept(s, sl);
    else if (it) slot_sample_dev(s, sl, &it->out);
    else slot_sample(s, sl, lfm2c_session_logits(sl->sess, 0));
}

/* Deliver: the step's statistics, then each item to its slot (under the lock). */
static void step_deliver(sched *s, const step_batch *b) {
    pthread_mutex_lock(&s->mu);
    const double t_locked = lfm2c_now_s();
    s->st.t_plan += b->t_forward - b->t_start;
    s->st.t_forward += b->dt;
    s->st.t_lock += t_locked - b->t_forward - b->dt;
    s->st.steps++;
    s->st.batch_tokens += (uint64_t)(b->n_prefill + b->n_decode);
    s->st.prefill_tokens += (uint64_t)b->n_prefill;
    double share = (double)b->n_prefill / (double)(b->n_prefill + b->n_decode);
    s->st.prefill_seconds += b->dt * share;
    s->st.decode_seconds += b->dt * (1 - share);
    s->in_deliver = true;
    for (int k = 0; k < b->n; k++) deliver_item(s, b, k);
    s->in_deliver = false;
    ckpt_stats(s);
    const bool wake = s->wake_pending;
    s->wake_pending = false;
    s->st.t_sample += lfm2c_now_s() - t_locked;
    pthread_mutex_unlock(&s->mu);
    if (wake) pthread_cond_broadcast(&s->progress); /* (a waiter checked before the lock, or sees it after) */
}

/* One step: one forward over every active slot. Returns false when there was nothing to do. */
static bool step(sched *s) {
    const int n = s->p.n_slots;
    lfm2c_session *sess[n];
    const int32_t *toks[n];
    const float *rows[n];
    int ns[n], modes[n], which[n];
    step_batch b = {
        .sess = sess, .toks = toks, .rows = rows, .ns = ns, .modes = modes, .which = which, .items = s->items};
    b.t_start = lfm2c_now_s();
    if (!step_plan(s, &b)) return false;
    step_run(&b);
    step_deliver(s, &b);
    return true;
}

static void *sched_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        double t0 = lfm2c_now_s();
        admit(s);
        double t1 = lfm2c_now_s();
        pthread_mutex_lock(&s->mu);
        s->st.t_admit += t1 - t0;
        pthread_mutex_unlock(&s->mu);
        if (step(s)) continue;
        pthread_mutex_lock(&s->mu);
        bool idle = !s->stopping && s->n_queue == 0;
        for (int i = 0; idle && i < s->p.n_slots; i++)
            if (s->slots[i].req) idle = false;
        if (idle) {
            double w = lfm2c_now_s();
            pthread_cond_wait(&s->work, &s->mu);
            s->st.t_idle += lfm2c_now_s() - w;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

sched *sched_new(lfm2c_model *model, const sched_params *p, lfm2c_error *err) {
    sched *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->model = model;
    s->p = *p;
    if (s->p.n_slots < 1) s->p.n_slots = 1;
    if (s->p.queue_max < 1) s->p.queue_max = 1;
    if (s->p.prefill_chunk < 1) s->p.prefill_chunk = 512;
    if (s->p.ckpt_every < 1) s->p.ckpt_every = SCHED_CKPT_EVERY;
    if (s->p.ckpt_max < 1) s->p.ckpt_max = SCHED_CKPT_MAX;
    s->st.ckpt_max = s->p.ckpt_max;
    if (s->p.spec_on && s->p.spec.draft_max < 1) s->p.spec_on = false;
    s->n_vocab = lfm2c_vocab_size(model);
    s->n_embd = lfm2c_model_get_info(model)->n_embd;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->progress, NULL);
    s->slots = calloc((size_t)s->p.n_slots, sizeof *s->slots);
    s->queue = calloc((size_t)(s->p.queue_max + s->p.n_slots), sizeof *s->queue);
    s->allowed = calloc((size_t)s->n_vocab, sizeof *s->allowed);
    s->gv = gen_vocab_of_model(model); /* the thinking tags, markers, ends, the grammar's vocabulary */
    s->dev_sample = backend_has(model, BACKEND_CAP_SAMPLE);
    if (s->dev_sample) s->items = calloc((size_t)s->p.n_slots, sizeof *s->items);
    if (!s->slots || !s->queue || !s->allowed || !s->gv || (s->dev_sample && !s->items)) goto oom;
    for (int i = 0; i < s->p.n_slots; i++) {
        s->slots[i].owner = s;
        s->slots[i].next = -1;
        if (!(s->slots[i].sess = lfm2c_session_new(model, s->p.n_ctx, err)) ||
            lfm2c_session_set_checkpoints(s->slots[i].sess, s->p.ckpt_every, s->p.ckpt_max, SCHED_CKPT_LOGITS, err)) {
            sched_free(s);
            return NULL;
        }
        if (s->p.spec_on) {
            if (!(s->slots[i].spec = lfm2c_spec_new(model, s->p.draft, s->p.n_ctx, &s->p.spec, err))) {
                sched_free(s);
                return NULL;
            }
            if (!(s->slots[i].spec_feed = malloc(sizeof(int32_t) * ((size_t)s->p.spec.draft_max + 1)))) goto oom;
        }
    }
    s->running = true;
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        s->running = false;
        sched_free(s);
        if (err) {
            err->code = LFM2C_ENOMEM;
            snprintf(err->msg, sizeof err->msg, "cannot start the scheduler thread");
        }
        return NULL;
    }
    return s;
oom:
    sched_free(s);
    if (err) {
        err->code = LFM2C_ENOMEM;
        snprintf(err->msg, sizeof err->msg, "out of memory starting the scheduler");
    }
    return NULL;
}

void sched_shutdown(sched *s) {
    if (!s) return;
    if (s->running) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        s->running = false;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (int i = 0; s->slots && i < s->p.n_slots; i++)
        if (s->slots[i].req) slot_finish(s, &s->slots[i], FINISH_CANCELLED);
    for (int i = 0; i < s->n_queue; i++) {
        s->queue[i]->finish = FINISH_CANCELLED;
        req_signal(s, s->queue[i]);
        req_unref(s->queue[i]);
    }
    s->n_queue = 0;
    pthread_mutex_unlock(&s->mu);
}

void sched_free(sched *s) {
    if (!s) return;
    sched_shutdown(s);
    for (int i = 0; s->slots && i < s->p.n_slots; i++) {
        lfm2c_session_free(s->slots[i].sess);
        lfm2c_spec_free(s->slots[i].spec);
        free(s->slots[i].spec_feed);
        gen_free(&s->slots[i].gen);
    }
    gen_vocab_free(s->gv);
    free(s->slots);
    free(s->queue);
    free(s->allowed);
    free(s->items);
    free(s->scratch_logits);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->progress);
    free(s);
}
