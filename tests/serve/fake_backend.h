/* fake_backend.h — rows of the backend table whose forward does no model arithmetic, for the
 * scheduler's planning tests (tests/serve/test_scheduler_budget.c) and its host-time benchmark
 * (bench/bench_sched.c): each output row's logits are a cheap function of the row's token and
 * position with one clear maximum (never an end-of-generation token), so a scheduler's host work
 * per step is what is left to time, at any number of streams, and its plans can be checked
 * (each forward's tokens are counted). fake_backend_host samples nothing (the CPU's way: every
 * row goes to the session for the host); fake_backend_dev has BACKEND_CAP_SAMPLE and, as the
 * CUDA backend does with LFM2C_CUDA_SAMPLE=1, draws the rows of samplers without a filter hook
 * itself (the host sampler run on its own copy of the row, so the tokens are the host's), with
 * the logprobs asked for, and leaves no logits row; a row whose sampler's temperature is above 1
 * it hands back (SMP_HOST, its logits copied to the session) as the device does past SMP_KMAX
 * candidates. fake_attach puts one on a model opened on the CPU; fake_cleanup frees the fake's
 * buffer at the end. Header-only. */
#ifndef LFM2C_FAKE_BACKEND_H
#define LFM2C_FAKE_BACKEND_H
#include "core/backend.h"
#include "core/forward.h"
#include "core/model.h"
#include "core/sample_batch.h"
#include "core/sampler.h"
#include "core/session.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What the fake backends did (all models together; one scheduler thread calls them). */
typedef struct fake_counts {
    long forwards, tokens, rows; /* forwards, their tokens, their output rows */
    int max_tokens;              /* the most tokens one forward took */
    long sampled, handed_back;   /* rows drawn here, rows handed back to the host */
    double seconds;              /* spent inside the fake's forwards */
    /* each forward (the first FAKE_LOG): its items of one token with a row (decode rows, or a
     * prompt's last single token), and the tokens of its longer items (prompt chunks) */
    int log_one[4096], log_chunk[4096];
} fake_counts;
enum { FAKE_LOG = 4096 };
static fake_counts fake_n;
static float *fake_row_buf; /* fake_backend_dev's own copy of a row */

static int fake_model_init(lfm2c_model *m, const lfm2c_model_params *p, lfm2c_error *err) {
    (void)m, (void)p, (void)err;
    return 0;
}
static void fake_model_free(lfm2c_model *m) { (void)m; }
/* The fake's own buffer, once no model uses it. */
static void fake_cleanup(void) {
    free(fake_row_buf);
    fake_row_buf = NULL;
}
static int fake_session_init(struct lfm2c_session *s, lfm2c_error *err) {
    (void)err;
    s->backend_state = NULL;
    return 0;
}
static void fake_session_free(struct lfm2c_session *s) { (void)s; }
static int fake_kv_reserve(struct lfm2c_session *s, int cap, lfm2c_error *err) {
    (void)s, (void)cap, (void)err;
    return 0;
}
static void fake_kv_copy(struct lfm2c_session *dst, const struct lfm2c_session *src, int n) {
    (void)dst, (void)src, (void)n;
}

/* The logits of a row after `token` at `pos`: low values with a pattern, one peak of 8 at a token
 * the pair chooses (moved past end-of-generation tokens, so a generation runs to its bound). */
static int fake_peak(const lfm2c_model *m, int V, uint32_t h) {
    int peak = 1 + (int)(h % (uint32_t)(V - 1));
    while (lfm2c_token_is_eog(m, peak)) peak = peak % (V - 1) + 1;
    return peak;
}
static void fake_row(const lfm2c_model *m, float *row, int V, int32_t token, int pos) {
    const uint32_t h = (uint32_t)token * 2654435761u ^ (uint32_t)pos * 40503u;
    for (int i = 0; i < V; i++) row[i] = (float)(int)(((uint32_t)i * 40503u + h) >> 22 & 255) / 64.0f - 2.0f;
    row[fake_peak(m, V, h)] = 8.0f;
}

/* fake_fast (the benchmark's): a row drawn "on the device" is its peak, without making the row or
 * running a sampler (the time of a real device's sampling is not the host's) */
static bool fake_fast;
static long fake_sleep_us; /* and each forward takes this long (a device's step: the streams render meanwhile) */
static bool fake_draw_fast(const lfm2c_model *m, const fwd_token *t, sample_item *it, int V) {
    smp_job j;
    int from;
    const float *bias;
    if (!fake_fast || sampler_job(it->smp, t->seq->n_past, &j, &from, &bias)) return false;
    memset(&it->out, 0, sizeof it->out);
    it->out.token = fake_peak(m, V, (uint32_t)t->token * 2654435761u ^ (uint32_t)t->pos * 40503u);
    it->out.drew = j.temperature > 0;
    it->out.n_top = it->n_logprobs > 0 ? it->n_logprobs : 0;
    for (int k = 0; k < it->out.n_top; k++) it->out.top_token[k] = it->out.token + k, it->out.top_logprob[k] = -k;
    fake_n.sampled++;
    return true;
}

/* A row drawn "on the device": the item's sampler over the fake's copy of the row. */
static void fake_draw(const lfm2c_model *m, struct lfm2c_session *s, sample_item *it, int out_row, int V) {
    smp_job j;
    int from;
    const float *bias;
    if (sampler_job(it->smp, s->n_past, &j, &from, &bias)) return; /* a filter hook: the host's */
    if (j.temperature > 1.0f) {                                    /* handed back, as past SMP_KMAX */
        memcpy(s->logits + (size_t)out_row * V, fake_row_buf, sizeof(float) * (size_t)V);
        it->out.status = SMP_HOST;
        fake_n.handed_back++;
        return;
    }
    (void)m;
    const int32_t t = lfm2c_sampler_sample(it->smp, fake_row_buf, s->tokens, s->n_past);
    memset(&it->out, 0, sizeof it->out);
    it->out.token = t >= 0 ? t : -1;
    it->out.status = t >= 0 ? SMP_OK : t == LFM2C_SAMPLE_NOT_FINITE ? SMP_NOT_FINITE : SMP_NONE;
    it->out.drew = 0; /* the host sampler moved its own counter on */
    if (t >= 0 && it->n_logprobs >= 0) sample_logprobs(fake_row_buf, V, it->n_logprobs, &it->out);
    fake_n.sampled++;
}

static int fake_forward_any(lfm2c_model *m, const fwd_token *toks, int n, bool dev, lfm2c_error *err) {
    const int V = m->info.n_vocab;
    if (dev && !fake_row_buf && !(fake_row_buf = (float *)malloc(sizeof(float) * (size_t)V))) {
        if (err) err->code = LFM2C_ENOMEM, snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    if (fake_n.forwards < FAKE_LOG) {
        int one = 0, chunk = 0;
        for (int t = 0, r = 1; t < n; t++, r++) /* r: the length of the item's run so far */
            if (t + 1 == n || toks[t + 1].seq != toks[t].seq) {
                if (r == 1 && toks[t].out_row >= 0) one++;
                else chunk += r;
                r = 0;
            }
        fake_n.log_one[fake_n.forwards] = one, fake_n.log_chunk[fake_n.forwards] = chunk;
    }
    fake_n.forwards++;
    fake_n.tokens += n;
    if (n > fake_n.max_tokens) fake_n.max_tokens = n;
    for (int t = 0; t < n; t++) {
        if (toks[t].out_row < 0) continue;
        fake_n.rows++;
        struct lfm2c_session *s = toks[t].seq;
        sample_item *it = dev ? s->dev_sample : NULL;
        if (it && fake_draw_fast(m, &toks[t], it, V)) continue;
        fake_row(m, it ? fake_row_buf : s->logits + (size_t)toks[t].out_row * V, V, toks[t].token, toks[t].pos);
        if (it) fake_draw(m, s, it, toks[t].out_row, V);
        if (it && it->out.status == SMP_PENDING) /* left to the host: the row in the session */
            memcpy(s->logits + (size_t)toks[t].out_row * V, fake_row_buf, sizeof(float) * (size_t)V);
    }
    return 0;
}
static int fake_forward_timed(lfm2c_model *m, const fwd_token *toks, int n, bool dev, lfm2c_error *err) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    const int rc = fake_forward_any(m, toks, n, dev, err);
    if (fake_sleep_us > 0) {
        const struct timespec d = {fake_sleep_us / 1000000, fake_sleep_us % 1000000 * 1000};
        nanosleep(&d, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    fake_n.seconds += (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    return rc;
}
static int fake_forward_host(lfm2c_model *m, const fwd_token *toks, int n, lfm2c_error *err) {
    return fake_forward_timed(m, toks, n, false, err);
}
static int fake_forward_dev(lfm2c_model *m, const fwd_token *toks, int n, lfm2c_error *err) {
    return fake_forward_timed(m, toks, n, true, err);
}

static const lfm2c_backend fake_backend_host = {
    "fake",
    LFM2C_DEVICE_CPU,
    fake_model_init,
    fake_model_free,
    fake_session_init,
    fake_session_free,
    fake_kv_reserve,
    fake_kv_copy,
    NULL,
    NULL,
    fake_forward_host,
    0,
    BACKEND_CAP_KV_COPY,
    0,    /* types: none (a model is opened on the CPU, then handed over: fake_attach) */
    NULL, /* encoder: none */
    NULL, /* scratch_bytes: none (the memory estimate is the CPU's) */
};
static const lfm2c_backend fake_backend_dev = {
    "fake-device",
    LFM2C_DEVICE_CPU,
    fake_model_init,
    fake_model_free,
    fake_session_init,
    fake_session_free,
    fake_kv_reserve,
    fake_kv_copy,
    NULL,
    NULL,
    fake_forward_dev,
    2048,
    BACKEND_CAP_KV_COPY | BACKEND_CAP_SAMPLE,
    0,
    NULL,
    NULL,
};

/* m (opened on the CPU, no session yet) handed to backend b. */
static void fake_attach(lfm2c_model *m, const lfm2c_backend *b) {
    m->backend->model_free(m);
    m->backend_state = NULL;
    m->backend = b;
    b->model_init(m, NULL, NULL);
}
#endif
