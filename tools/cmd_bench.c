/* cmd_bench.c — `lfm2c bench`: prefill (ppN) and decode (tgN) speed, in llama-bench's table and
 * JSON shapes so the numbers compare directly (the table, then a build line, as llama-bench
 * prints them); plus achieved GB/s of weights per decoded token, peak RSS, and a batched mode
 * (-b B: B sequences decoded together, total tokens/s). Under -v, where the time went (weight
 * products, replays, device time) and the machine's state (pages, kernels, memory) on stderr. */
#include "cli.h"
#include "base/threadpool.h"
#include "cpu/kernels.h"
#include "cpu/replay.h"
#ifdef LFM2C_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif
#include "base/clock.h"
#include "base/os.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Decode time and what the weight products took of it (lfm2c_model_decode_profile): summed
 * over a result's repetitions, and per repetition (the first is often slow: weights just
 * copied, caches cold). */
typedef struct tg_prof {
    double seconds, mm_seconds, mm_bytes;
    long tokens;
} tg_prof;

typedef struct result {
    const char *test; /* "pp" / "tg" / "batch" */
    int n_prompt, n_gen, batch, depth;
    double samples[64]; /* tokens/s per repetition */
    int n;
    tg_prof prof[64];                 /* tg: where each repetition's time went (zero when not profiled: CUDA) */
    long steps, solo_steps;           /* the pool's passes over the repetitions, and those run solo */
    double dev_seconds, wall_seconds; /* Vulkan: the repetitions' passes timed on the device, and by the clock */
    long dev_passes;
    bool replayed; /* tg on the CPU: tokens' weight reads replayed as plain streams (cpu/replay.h) */
    replay_result rp;
    double paired;       /* the products' rate over the replay's, token by token (0: not measured) */
    double paired_whole; /* the whole decode step's rate over the one-pass replay's, token by token */
    double warm_gbps;    /* --warm-read: the rate every weight byte was read at before the rows (0: not read) */
} result;

/* A result's time on the device (lfm2c_decode_profile's device_seconds, Vulkan's timestamps)
 * since `before`, beside its wall time (from the samples). */
static void count_device(const lfm2c_model *m, const lfm2c_decode_profile *before, result *r) {
    const lfm2c_decode_profile now = lfm2c_model_decode_profile(m);
    r->dev_seconds = now.device_seconds - before->device_seconds;
    r->dev_passes = now.device_passes - before->device_passes;
    r->wall_seconds = 0;
    for (int k = 0; k < r->n; k++)
        if (r->samples[k] > 0) r->wall_seconds += (r->n_prompt + r->n_gen) / r->samples[k];
}

/* tokens per second of device time, and for tg the GB/s of weights read in it (0: not timed) */
static double dev_ts(const result *r) {
    return r->dev_seconds > 0 ? r->n * (double)(r->n_prompt + r->n_gen) / r->dev_seconds : 0;
}
static double dev_gbps(const result *r, const lfm2c_model_info *in) {
    return strcmp(r->test, "tg") ? 0 : dev_ts(r) * in->weight_bytes_active / 1e9;
}

static void print_device_time(const result *r, const lfm2c_model_info *in) {
    if (r->dev_seconds <= 0 || r->wall_seconds <= 0) return;
    char gb[64] = "";
    if (dev_gbps(r, in) > 0) snprintf(gb, sizeof gb, ", %.1f GB/s of weights", dev_gbps(r, in));
    fprintf(stderr, "%s%d: device time %.2f ms of %.2f ms wall (%.0f%%) over %ld passes: %.2f tok/s%s\n", r->test,
            r->n_prompt + r->n_gen, 1e3 * r->dev_seconds, 1e3 * r->wall_seconds, 100 * r->dev_seconds / r->wall_seconds,
            r->dev_passes, dev_ts(r), gb);
}

/* The repetitions' passes the pool ran solo (a busy machine: lfm2c_decode_profile), from a
 * profile taken before them. */
static void count_solo(const lfm2c_model *m, const lfm2c_decode_profile *before, result *r) {
    const lfm2c_decode_profile now = lfm2c_model_decode_profile(m);
    r->steps = now.steps - before->steps;
    r->solo_steps = now.solo_steps - before->solo_steps;
}

/* Did the pool go solo for more than a lost probe costs a model of real size (threadpool.c: 5
 * passes, and at least 10 ms)? Then the result is no quiet-machine figure. */
static bool ran_solo(const result *r) { return 20 * r->solo_steps > r->steps; }

/* The CPU kernel table the benchmark runs (--reference: the scalar truth) and how it was chosen
 * (kernels_choose.c), for the table's notes and the JSON. */
static const char *kernels_in_use = "", *kernels_how = "", *kernels_pf = "";

static void stats(const result *r, double *avg, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < r->n; i++) s += r->samples[i];
    *avg = r->n ? s / r->n : 0;
    for (int i = 0; i < r->n; i++) ss += (r->samples[i] - *avg) * (r->samples[i] - *avg);
    *sd = r->n > 1 ? sqrt(ss / (r->n - 1)) : 0;
}

static int32_t random_token(uint64_t *state, int n_vocab) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (int32_t)((*state >> 33) % (uint64_t)(n_vocab > 300 ? n_vocab - 300 : n_vocab)) + (n_vocab > 300 ? 300 : 0);
}

/* A session holding `depth` tokens of random context (prefilled once, not timed; llama-bench's
 * -d), with room for `extra` more; back_to_depth() cuts it back before each repetition (the
 * conv state comes from the checkpoint taken at the depth, the KV entries stay). */
static lfm2c_session *depth_session(lfm2c_model *m, int depth, int extra, uint64_t *rng, lfm2c_error *err) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session *s = lfm2c_session_new(m, depth + extra + 1, err);
    if (s && cli_lora_attach(m, s)) { /* --lora: the adapters' cost is measured too */
        lfm2c_session_free(s);
        snprintf(err->msg, sizeof err->msg, "cannot attach the LoRA adapters");
        return NULL;
    }
    if (!s || depth == 0) return s;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)depth);
    if (!ids) {
        lfm2c_session_free(s);
        return NULL;
    }
    for (int i = 0; i < depth; i++) ids[i] = random_token(rng, V);
    int rc = lfm2c_session_decode(s, ids, depth, LFM2C_LOGITS_NONE, err);
    free(ids);
    if (rc) {
        lfm2c_session_free(s);
        return NULL;
    }
    lfm2c_session_checkpoint(s);
    return s;
}

static int back_to_depth(lfm2c_session *s, int depth, lfm2c_error *err) {
    return lfm2c_session_truncate(s, depth, err);
}

/* prefill of n tokens as one batch on top of the session's context */
static double run_pp(lfm2c_model *m, lfm2c_session *s, int depth, int n, uint64_t *rng, lfm2c_error *err) {
    if (back_to_depth(s, depth, err)) return -1;
    int V = lfm2c_model_get_info(m)->n_vocab;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    if (!ids) return -1;
    for (int i = 0; i < n; i++) ids[i] = random_token(rng, V);
    double t0 = lfm2c_now_s();
    int rc = lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_LAST, err);
    double t = lfm2c_now_s() - t0;
    free(ids);
    return rc ? -1 : n / t;
}

/* decode of n tokens one at a time on top of the session's context (llama-bench's tgN) */
static double run_tg(lfm2c_model *m, lfm2c_session *s, int depth, int n, uint64_t *rng, tg_prof *p, lfm2c_error *err) {
    if (back_to_depth(s, depth, err)) return -1;
    int V = lfm2c_model_get_info(m)->n_vocab;
    int32_t tok = random_token(rng, V);
    const lfm2c_decode_profile p0 = lfm2c_model_decode_profile(m);
    double t0 = lfm2c_now_s();
    for (int i = 0; i < n; i++) {
        if (lfm2c_session_decode(s, &tok, 1, LFM2C_LOGITS_LAST, err)) return -1;
        tok = random_token(rng, V);
    }
    const double dt = lfm2c_now_s() - t0;
    if (p) {
        const lfm2c_decode_profile p1 = lfm2c_model_decode_profile(m);
        p->seconds += dt;
        p->mm_seconds += p1.matmul_seconds - p0.matmul_seconds;
        p->mm_bytes += p1.matmul_bytes - p0.matmul_bytes;
        p->tokens += n;
    }
    return n / dt;
}

static bool profiled(const tg_prof *p) { return p->mm_seconds > 0 && p->seconds > 0; } /* not on CUDA */
static double prof_share(const tg_prof *p) { return profiled(p) ? p->mm_seconds / p->seconds : 0; }
static double prof_gbps(const tg_prof *p) { return profiled(p) ? p->mm_bytes / p->mm_seconds / 1e9 : 0; }

/* decode steps whose weight reads `bench` replays after a tg result (cpu/replay.h): a MoE
 * model picks other experts each token, and the replay should meet as many as decode does */
enum { REPLAY_PASSES = 16, REPLAY_PAIRS = 16 };

/* REPLAY_PAIRS tokens, each decoded and then its reads read again at once (job by job at the
 * replay's best distance for jobs, then in one pass at the best for one pass): on a machine whose
 * bandwidth drifts by the second each pair meets the same drift. Sets the products' rate over
 * the job-by-job replay's, and the whole step's (products and the steps between) over the
 * one-pass replay's; false when they cannot be measured. */
static bool replay_paired(lfm2c_model *m, lfm2c_session *s, int depth, const replay_result *rp, uint64_t *rng,
                          double *products, double *whole) {
    double prod = 0, rep = 0, step = 0, flat = 0;
    lfm2c_error err = {0};
    for (int i = 0; i < REPLAY_PAIRS; i++) {
        tg_prof p = {0};
        if (replay_arm(m, 1) || run_tg(m, s, depth, 1, rng, &p, &err) < 0) return false;
        const double g = replay_gbps(m, rp->pf_bytes_jobs, false), f = replay_gbps(m, rp->pf_bytes_flat, true);
        if (g <= 0 || f <= 0 || !profiled(&p)) return false;
        prod += p.mm_seconds, rep += p.mm_bytes / (g * 1e9);
        step += p.seconds, flat += p.mm_bytes / (f * 1e9);
    }
    *products = rep / prod, *whole = flat / step;
    return true;
}

/* a result's repetitions together */
static tg_prof prof_sum(const result *r) {
    tg_prof s = {0, 0, 0, 0};
    for (int k = 0; k < r->n; k++) {
        s.seconds += r->prof[k].seconds, s.mm_seconds += r->prof[k].mm_seconds;
        s.mm_bytes += r->prof[k].mm_bytes, s.tokens += r->prof[k].tokens;
    }
    return s;
}

/* Where a tg result's time went: in the weight products (and the rate they read the weights
 * at, to compare with build/membw) and between them. */
static void print_tg_prof(const result *r) {
    const tg_prof p = prof_sum(r);
    if (!profiled(&p)) return;
    fprintf(stderr,
            "tg%d: weight products %.1f%% of the decode time, reading %.1f GB/s; "
            "%.0f us per token between them\n",
            r->n_gen, 100 * prof_share(&p), prof_gbps(&p), 1e6 * (p.seconds - p.mm_seconds) / p.tokens);
    if (r->replayed) /* the ceiling of those same reads on these pages (cpu/replay.h) */
        fprintf(stderr,
                "tg%d: %d tokens' %.2f GB of weights (%d ranges, %d jobs) read again as plain streams: %.1f GB/s "
                "job by job, %.1f GB/s in one pass (prefetch %d / %d bytes ahead); in that repetition the products "
                "read %.1f GB/s, %.0f%% of the first\n",
                r->n_gen, r->rp.passes, r->rp.bytes / 1e9, r->rp.ranges, r->rp.jobs, r->rp.gbps_jobs, r->rp.gbps_flat,
                r->rp.pf_bytes_jobs, r->rp.pf_bytes_flat, prof_gbps(&r->prof[r->n - 1]),
                100 * prof_gbps(&r->prof[r->n - 1]) / r->rp.gbps_jobs);
    if (r->paired > 0)
        fprintf(stderr,
                "tg%d: paired, %d tokens each decoded and its reads read again at once: the products read at %.0f%% "
                "of the job-by-job replay's rate, the whole step (products and the steps between) at %.0f%% of the "
                "one-pass replay's\n",
                r->n_gen, REPLAY_PAIRS, 100 * r->paired, 100 * r->paired_whole);
}

/* B sequences: prefill each prompt (in batches), then decode all B together; total tok/s */
static double run_batched(lfm2c_model *m, int B, int np, int ng, uint64_t *rng, lfm2c_error *err) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session **ss = calloc((size_t)B, sizeof *ss);
    int32_t **toks = calloc((size_t)B, sizeof *toks);
    int *n = calloc((size_t)B, sizeof(int)), *mode = calloc((size_t)B, sizeof(int));
    double rate = -1;
    for (int b = 0; b < B; b++) {
        if (!(ss[b] = lfm2c_session_new(m, np + ng + 1, err))) goto done;
        if (cli_lora_attach(m, ss[b])) {
            snprintf(err->msg, sizeof err->msg, "cannot attach the LoRA adapters");
            goto done;
        }
        toks[b] = malloc(sizeof(int32_t) * (size_t)(np > 1 ? np : 1));
        for (int i = 0; i < np; i++) toks[b][i] = random_token(rng, V);
        mode[b] = LFM2C_LOGITS_LAST;
    }
    double t0 = lfm2c_now_s();
    /* prefill in groups of about 2048 tokens a call: the library cuts each call into forwards of
     * its backend's size (lfm2c_backend.ubatch) */
    int group = np >= 2048 ? 1 : 2048 / (np ? np : 1);
    for (int b = 0; b < B; b += group) {
        int g = B - b < group ? B - b : group;
        for (int i = 0; i < g; i++) n[b + i] = np;
        if (lfm2c_decode_batch(ss + b, (const int32_t *const *)toks + b, n + b, mode + b, g, err)) goto done;
    }
    for (int step = 0; step < ng; step++) {
        for (int b = 0; b < B; b++) {
            toks[b][0] = random_token(rng, V);
            n[b] = 1;
        }
        if (lfm2c_decode_batch(ss, (const int32_t *const *)toks, n, mode, B, err)) goto done;
    }
    rate = (double)B * (np + ng) / (lfm2c_now_s() - t0);
done:
    for (int b = 0; b < B; b++) {
        lfm2c_session_free(ss[b]);
        free(toks[b]);
    }
    free(ss);
    free(toks);
    free(n);
    free(mode);
    return rate;
}

/* ---- --spec: speculative decoding ---------------------------------------------------------- */

/* Seconds of one forward over n tokens of one sequence at depth (mark, feed, roll back exactly),
 * the mean of reps. n = 1: a decode step; n = k + 1: the verification of k drafted tokens, of
 * random tokens or (same) of one random token repeated: on an MoE model with random weights the
 * first routes the n tokens to unrelated experts and the second to nearly the same ones, the two
 * ends of what a real router's correlated picks read. */
static double verify_seconds(lfm2c_model *m, lfm2c_session *s, int n, bool same, int reps, uint64_t *rng,
                             lfm2c_error *err) {
    int V = lfm2c_model_get_info(m)->n_vocab, past = lfm2c_session_n_past(s);
    int32_t ids[16];
    double total = 0;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < n; i++) ids[i] = same && i ? ids[0] : random_token(rng, V);
        if (lfm2c_session_mark(s, n, err)) return -1;
        double t0 = lfm2c_now_s();
        if (lfm2c_session_decode(s, ids, n, n > 1 ? LFM2C_LOGITS_ALL : LFM2C_LOGITS_LAST, err)) return -1;
        total += lfm2c_now_s() - t0;
        if (lfm2c_session_rollback(s, past, err)) return -1;
    }
    return total / reps;
}

/* Tokens/s generating n tokens at temperature 0 after a random prompt of np tokens: plainly
 * (spec NULL) or with the speculator; the prompt is not timed. */
static double spec_rate(lfm2c_model *m, lfm2c_spec *spec, int np, int n, uint64_t *rng, lfm2c_error *err) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session *s = lfm2c_session_new(m, np + n + 2, err);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(np > n + 1 ? np : n + 1));
    lfm2c_sampler_params sp = lfm2c_sampler_default_params();
    sp.temperature = 0;
    sp.repeat_penalty = 1;
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, V);
    double rate = -1;
    if (!s || !ids || !smp) goto done;
    for (int i = 0; i < np; i++) ids[i] = random_token(rng, V);
    if (lfm2c_session_decode(s, ids, np, LFM2C_LOGITS_LAST, err)) goto done;
    double t0 = lfm2c_now_s();
    int32_t last = lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s), np);
    int got = 1;
    while (got < n) {
        int k = 1;
        if (spec) {
            if ((k = lfm2c_spec_step(spec, s, smp, last, ids, n - got, err)) < 0) goto done;
            last = ids[k - 1];
        } else {
            if (lfm2c_session_decode(s, &last, 1, LFM2C_LOGITS_LAST, err)) goto done;
            last =
                lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s), lfm2c_session_n_past(s));
        }
        got += k;
    }
    rate = got / (lfm2c_now_s() - t0);
done:
    lfm2c_sampler_free(smp);
    free(ids);
    lfm2c_session_free(s);
    return rate;
}

typedef struct spec_bench {
    const char *draft_path;
    int draft_max, depth, np, n, reps;
    double accept[16];
    int n_accept;
} spec_bench;

static void spec_row(bool json, int *first, const char *test, int k, double accept, double value, const char *unit,
                     double rel, long drafted, long accepted) {
    if (json) {
        printf("%s  {\"test\": \"%s\", \"k\": %d, \"accept\": %.3f, \"value\": %.6f, \"unit\": \"%s\", \"relative\": "
               "%.4f, "
               "\"drafted\": %ld, \"accepted\": %ld}",
               *first ? "" : ",\n", test, k, accept, value, unit, rel, drafted, accepted);
        *first = 0;
    } else {
        char acc[16] = "-";
        if (accept >= 0) snprintf(acc, sizeof acc, "%.2f", accept);
        char ad[48] = "-";
        if (drafted) snprintf(ad, sizeof ad, "%ld / %ld", accepted, drafted);
        printf("| %s | %d | %s | %.3f %s | %.2fx | %s |\n", test, k, acc, value, unit, rel, ad);
    }
    fflush(stdout);
}

/* Tokens/s of speculative decoding with drafter `draft` (NULL: prompt lookup) and parameters p,
 * averaged over b->reps runs; its counts in *st. -1 on failure (err set). */
static double spec_rate_avg(lfm2c_model *m, lfm2c_model *draft, const lfm2c_spec_params *p, const spec_bench *b,
                            uint64_t *rng, lfm2c_spec_stats *st, lfm2c_error *err) {
    lfm2c_spec *spec = lfm2c_spec_new(m, draft, b->np + b->n + 2, p, err);
    if (!spec) return -1;
    double v = 0;
    for (int r = 0; r < b->reps && v >= 0; r++) {
        double x = spec_rate(m, spec, b->np, b->n, rng, err);
        v = x < 0 ? -1 : v + x / b->reps;
    }
    *st = lfm2c_spec_get_stats(spec);
    lfm2c_spec_free(spec);
    return v;
}

/* The cost of verifying k = 1..8 drafted tokens against one decode step, then tokens/s plain,
 * with the target as its own draft (everything accepted), and with the draft model at each
 * forced acceptance rate (--spec-accept), then prompt lookup at those rates. Random weights
 * cannot show real acceptance rates: the forced rates show what each would buy. */
static int run_spec_bench(lfm2c_model *m, const char *model_path, const spec_bench *b, bool json, int threads,
                          const char *device) {
    lfm2c_error err = {0};
    uint64_t rng = 42;
    int first = 1;
    lfm2c_model *draft = NULL;
    if (b->draft_path && strcmp(b->draft_path, model_path) &&
        !(draft = cli_open_model(b->draft_path, threads, false, device)))
        return 1;
    if (json) printf("[\n");
    else
        printf("| test | k | acceptance | time or speed | vs decode step / plain | accepted / drafted "
               "|\n|---|---:|---:|---:|---:|---:|\n");
    int rc = 1;
    lfm2c_session *s = depth_session(m, b->depth, 16, &rng, &err);
    if (!s) goto fail;
    double t1 = verify_seconds(m, s, 1, false, b->reps, &rng, &err); /* warm-up, then the step */
    if (t1 < 0 || (t1 = verify_seconds(m, s, 1, false, b->reps, &rng, &err)) < 0) goto fail;
    spec_row(json, &first, "decode step", 0, -1, t1 * 1e3, "ms", 1, 0, 0);
    const bool moe = lfm2c_model_get_info(m)->n_expert > 0;
    for (int same = 0; same <= moe; same++) /* MoE: also one token repeated (verify_seconds) */
        for (int k = 1; k <= 8; k++) {
            double tk = verify_seconds(m, s, k + 1, same, b->reps, &rng, &err);
            if (tk < 0) goto fail;
            spec_row(json, &first, same ? "verify k+1 tokens, one token repeated" : "verify k+1 tokens", k, -1,
                     tk * 1e3, "ms", tk / t1, 0, 0);
        }
    lfm2c_session_free(s);
    s = NULL;
    double plain = 0;
    for (int r = 0; r < b->reps; r++) {
        double v = spec_rate(m, NULL, b->np, b->n, &rng, &err);
        if (v < 0) goto fail;
        plain += v / b->reps;
    }
    spec_row(json, &first, "plain decode", 0, -1, plain, "tok/s", 1, 0, 0);
    /* the target as its own draft (acceptance 1), the draft at the forced rates, then prompt
     * lookup at those rates (a drafter that costs nothing but its search); then both again with
     * the draft length chosen per step (draft_auto, at most --draft-max) */
    for (int a = -1; a < 4 * b->n_accept; a++) {
        const bool lookup = a >= 0 && (a / b->n_accept) % 2 == 1, autok = a >= 2 * b->n_accept;
        double rate = a < 0 ? -1 : b->accept[a % b->n_accept];
        lfm2c_spec_params p = lfm2c_spec_default_params();
        p.draft_max = b->draft_max;
        p.draft_p_min = 0;
        p.force_accept = (float)rate;
        p.draft_auto = autok;
        if (lookup) p.lookup_min = 1, p.lookup_max = 3;
        lfm2c_spec_stats st;
        double v = spec_rate_avg(m, lookup ? NULL : a < 0 || !draft ? m : draft, &p, b, &rng, &st, &err);
        if (v < 0) goto fail;
        const char *test =
            lookup  ? (autok ? "prompt lookup, forced acceptance, auto length" : "prompt lookup, forced acceptance")
            : a < 0 ? "target as own draft"
            : draft ? (autok ? "draft, forced acceptance, auto length" : "draft, forced acceptance")
                    : (autok ? "own draft, forced acceptance, auto length" : "own draft, forced acceptance");
        spec_row(json, &first, test, b->draft_max, a < 0 ? (st.drafted ? (double)st.accepted / st.drafted : 0) : rate,
                 v, "tok/s", plain > 0 ? v / plain : 0, st.drafted, st.accepted);
    }
    rc = 0;
fail:
    if (rc) cli_fail("%s", err.msg);
    if (json) printf("\n]\n");
    lfm2c_session_free(s);
    lfm2c_model_free(draft);
    return rc;
}

static const char USAGE[] =
    "usage: lfm2c bench -m MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS] [-o md|json|csv]\n"
    "                   [-b BATCH]  (B sequences of -p prompt / -n generated tokens, total tok/s)\n"
    "                   [-d DEPTH]  (pp / tg on top of DEPTH tokens of context, prefilled untimed)\n"
    "                   [-ctk f16|q8_0|f32] [-ctv f16|q8_0|f32]  (KV cache types; default f16)\n"
    "                   [--hugepages | --no-hugepages]  (weights always copied into anonymous transparent\n"
    "                   huge pages | always mapped; default: copied when THP is on and RAM allows)\n"
    "                   [--device " LFM2C_DEVICE_NAMES "] [--reference] [--lora PATH[:S]]... [--lora-scaled PATH S]\n"
    "                   (every session runs with the adapters: their cost is in the numbers)\n"
    "                   [--warm-read]  (CPU: every weight byte read once before the rows, and the rate\n"
    "                   said: the first read of what a load wrote can be far slower than decode's)\n"
    "                   [-v]  (after each row, on stderr: where the time went (the weight products'\n"
    "                   share and GB/s, replays of their reads, device time), pages, kernels, memory)\n"
    "  -p / -n / -t / -b / -d / -ctk / -ctv accept comma lists (e.g. -d 0,4096,16384); 0 skips\n"
    "  a -p / -n test.\n"
    "  --spec  speculative decoding instead: one forward over k+1 tokens against one decode step\n"
    "          (k = 1..8, at -d DEPTH), then tokens/s (-n tokens after a -p prompt, temperature 0)\n"
    "          plain, with the target as its own draft (acceptance 1), and with the draft model at\n"
    "          forced acceptance rates (each drafted token accepted with probability a), and with\n"
    "          prompt lookup at those rates (a full draft every step: a drafter that costs nothing),\n"
    "          then both with the draft length chosen per step (--draft-auto, at most --draft-max):\n"
    "    -md FILE             the draft model (default: the target itself)\n"
    "    --draft-max K        tokens drafted per step (default 4)\n"
    "    --spec-accept LIST   forced acceptance rates (default 0.5,0.7,0.9,1)\n"
    "lfm2c bench --mmproj MMPROJ.gguf [--image-size WxH,... (512x512,1920x1080)] [-t N] [-r 3]\n"
    "  the LFM2-VL image encoder: each size cut as the processor cuts it (tiles + thumbnail)\n"
    "lfm2c bench --mmproj AUDIO_MMPROJ.gguf --audio-seconds S,... (10,60) [-t N] [-r 3]\n"
    "  the LFM2-Audio encoder: the log-mel features and the Conformer for clips of S seconds\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2; /* a usage error (--help returns 0 itself) */
}

/* "1,2,4" -> out[], each entry read by one of the cli_* readers (which exit 2 on a bad one) */
static int parse_list(const char *flag, const char *s, int *out, int max, int (*read)(const char *, const char *)) {
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = read(flag, tok);
    return n;
}

/* How much of this process sits in 2 MB pages (/proc/self/smaps_rollup): AnonHugePages for the
 * huge-page copy, FilePmdMapped for the file mapping; and the system's THP settings. */
static void print_huge_pages(bool copied) {
    FILE *f = os_fopen("/proc/self/smaps_rollup", "r");
    char line[256], en[128] = "?";
    long anon = -1, file = -1;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "AnonHugePages: %ld", &anon);
        sscanf(line, "FilePmdMapped: %ld", &file);
    }
    if (f) fclose(f);
    if ((f = os_fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r"))) {
        if (fgets(en, sizeof en, f)) en[strcspn(en, "\n")] = 0;
        fclose(f);
    }
    fprintf(stderr, "weights %s; huge pages: AnonHugePages %ld MB, FilePmdMapped %ld MB (THP enabled: %s)\n",
            copied ? "copied" : "mapped", anon / 1024, file / 1024, en);
}

static void print_row(const char *fmt, const char *model_path, const lfm2c_model_info *in, const char *device, int nth,
                      int tk, int tv, const result *r, double rss_mb, int *first_row) {
    double avg, sd;
    stats(r, &avg, &sd);
    double gbps = !strcmp(r->test, "tg") ? avg * in->weight_bytes_active / 1e9 : 0;
    char test[64], at[32] = "";
    if (r->depth > 0) snprintf(at, sizeof at, " @ d%d", r->depth);
    if (!strcmp(r->test, "batch")) snprintf(test, sizeof test, "b%d pp%d+tg%d%s", r->batch, r->n_prompt, r->n_gen, at);
    else snprintf(test, sizeof test, "%s%d%s", r->test, r->n_prompt + r->n_gen, at);
    const char *ktn = lfm2c_kv_type_name(tk), *vtn = lfm2c_kv_type_name(tv);
    const char *ftn = lfm2c_file_type_name(in->file_type); /* the quantization, as llama-bench shows it */
    if (!ftn) ftn = "?";
    if (!strcmp(fmt, "json")) {
        printf(
            "%s  {\"model_filename\": \"%s\", \"model_type\": \"%s\", \"model_size\": %llu, "
            "\"model_n_params\": %llu, \"file_type\": \"%s\", \"backend\": \"%s\", \"n_threads\": %d, \"n_batch\": %d, "
            "\"type_k\": \"%s\", \"type_v\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, "
            "\"test\": \"%s\", \"build_commit\": \"%s\", \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ts\": [",
            *first_row ? "" : ",\n", model_path, in->arch, (unsigned long long)in->weight_bytes,
            (unsigned long long)in->n_params, ftn, device ? device : "CPU", nth, r->batch, ktn, vtn, r->n_prompt,
            r->n_gen, r->depth, test, cli_build_commit(), avg, sd);
        for (int k = 0; k < r->n; k++) printf("%s%.6f", k ? ", " : "", r->samples[k]);
        printf("], \"gbps\": %.3f, \"peak_rss_mb\": %.1f, \"pool_steps\": %ld, \"pool_solo_steps\": %ld, "
               "\"pool_went_solo\": %s",
               gbps, rss_mb, r->steps, r->solo_steps, ran_solo(r) ? "true" : "false");
        if (!device || !strcmp(device, "cpu")) /* the CPU kernel table that ran, and how it was chosen */
            printf(", \"kernels\": \"%s\", \"kernels_choice\": \"%s\", \"decode_prefetch\": \"%s\", "
                   "\"attention_prefetch\": \"%s\"",
                   kernels_in_use, kernels_how, kernels_pf, kernels_choice()->apf_name);
        const tg_prof p = prof_sum(r);
        if (profiled(&p)) { /* the share of decode time in the weight products, their GB/s */
            printf(", \"matmul_share\": %.4f, \"matmul_gbps\": %.3f, \"samples_matmul_share\": [", prof_share(&p),
                   prof_gbps(&p));
            for (int k = 0; k < r->n; k++) printf("%s%.4f", k ? ", " : "", prof_share(&r->prof[k]));
            printf("], \"samples_matmul_gbps\": [");
            for (int k = 0; k < r->n; k++) printf("%s%.3f", k ? ", " : "", prof_gbps(&r->prof[k]));
            printf("]");
        }
        if (r->replayed)
            printf(", \"replay_gbps_jobs\": %.3f, \"replay_gbps_flat\": %.3f, \"replay_bytes\": %.0f, "
                   "\"replay_passes\": %d",
                   r->rp.gbps_jobs, r->rp.gbps_flat, r->rp.bytes, r->rp.passes);
        if (r->paired > 0)
            printf(", \"replay_paired_share\": %.4f, \"replay_paired_whole_share\": %.4f", r->paired, r->paired_whole);
        if (r->warm_gbps > 0) printf(", \"warm_read_gbps\": %.3f", r->warm_gbps);
        if (r->dev_seconds > 0) /* Vulkan: the device's own clock (timestamp queries) */
            printf(", \"device_seconds\": %.6f, \"wall_seconds\": %.6f, \"device_passes\": %ld, \"device_ts\": %.6f, "
                   "\"device_gbps\": %.3f",
                   r->dev_seconds, r->wall_seconds, r->dev_passes, dev_ts(r), dev_gbps(r, in));
        printf("}");
        *first_row = 0;
    } else if (!strcmp(fmt, "csv")) {
        printf("%s,%d,%d,%d,%d,%.3f,%.3f,%.3f,%.1f,%d,%s,%s\n", model_path, nth, r->batch, r->n_prompt, r->n_gen, avg,
               sd, gbps, rss_mb, r->depth, ktn, vtn);
    } else {
        char gb[32] = "";
        if (gbps > 0) snprintf(gb, sizeof gb, "%.1f", gbps);
        printf("| %s %s%s%s | %.2f GiB | %.2f B | %s | %d | %s | %s | %s | %.2f ± %.2f | %s |\n", in->arch,
               in->name[0] ? in->name : "", in->name[0] ? " " : "", ftn, in->weight_bytes / 1073741824.0,
               in->n_params / 1e9, device ? device : "CPU", nth, ktn, vtn, test, avg, sd, gb);
    }
    fflush(stdout);
    if (ran_solo(r)) /* in every format: a figure not to compare with a quiet machine's */
        fprintf(stderr,
                "%s: the thread pool ran %ld of %ld passes on one thread (it measured other processes "
                "holding the cores: not a quiet-machine figure)\n",
                test, r->solo_steps, r->steps);
}

/* What bench's options set; bench_opts_init gives the defaults. */
typedef struct bench_opts {
    const char *model_path, *fmt, *device;
    int pps[8], n_pp, tgs[8], n_tg, threads[8], n_th, reps, batches[8], n_b, depths[16], n_d;
    int tks[3], n_tk, tvs[3], n_tv, hugepages;
    bool reference, spec, json, csv, warm_read, verbose;
    spec_bench sb;
} bench_opts;

static bench_opts bench_opts_init(void) {
    return (bench_opts){.fmt = "md",
                        .pps = {512},
                        .n_pp = 1,
                        .tgs = {128},
                        .n_tg = 1,
                        .n_th = 1,
                        .reps = 5,
                        .n_d = 1,
                        .tks = {LFM2C_KV_F16},
                        .n_tk = 1,
                        .tvs = {LFM2C_KV_F16},
                        .n_tv = 1,
                        .hugepages = LFM2C_HUGEPAGES_AUTO,
                        .sb = {.draft_max = 4, .accept = {0.5, 0.7, 0.9, 1}, .n_accept = 4}};
}

/* --spec-accept R,R,...: 0, or 2 with the message said */
static int parse_accept(const char *flag, const char *v, spec_bench *sb) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    sb->n_accept = 0;
    for (char *t = strtok(buf, ","); t && sb->n_accept < 16; t = strtok(NULL, ",")) {
        double x = cli_float(flag, t);
        if (!(x >= 0 && x <= 1)) return cli_fail("--spec-accept rates must be in [0, 1]"), 2;
        sb->accept[sb->n_accept++] = x;
    }
    return 0;
}

/* The command line into o: -1 to go on, else the exit code (0 after --help, 2 on an error). */
static int bench_parse(int argc, char **argv, bench_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt"))
            o->n_pp = parse_list(a, cli_value(argc, argv, &i), o->pps, 8, cli_int);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen"))
            o->n_tg = parse_list(a, cli_value(argc, argv, &i), o->tgs, 8, cli_int);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            o->n_th = parse_list(a, cli_value(argc, argv, &i), o->threads, 8, cli_threads);
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) o->reps = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->fmt = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch"))
            o->n_b = parse_list(a, cli_value(argc, argv, &i), o->batches, 8, cli_positive);
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth"))
            o->n_d = parse_list(a, cli_value(argc, argv, &i), o->depths, 16, cli_int);
        else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k"))
            o->n_tk = parse_list(a, cli_value(argc, argv, &i), o->tks, 3, cli_kv_type);
        else if (!strcmp(a, "-ctv") || !strcmp(a, "--cache-type-v"))
            o->n_tv = parse_list(a, cli_value(argc, argv, &i), o->tvs, 3, cli_kv_type);
        else if (!strcmp(a, "-fa") || !strcmp(a, "--flash-attn")) cli_value(argc, argv, &i); /* always blocked */
        else if (!strcmp(a, "--device")) o->device = cli_device(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--reference")) o->reference = true;
        else if (!strcmp(a, "--hugepages")) o->hugepages = LFM2C_HUGEPAGES_ON;
        else if (!strcmp(a, "--no-hugepages")) o->hugepages = LFM2C_HUGEPAGES_OFF;
        else if (cli_lora_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "--spec")) o->spec = true;
        else if (!strcmp(a, "--warm-read")) o->warm_read = true;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = true;
        else if (!strcmp(a, "-md") || !strcmp(a, "--model-draft")) o->sb.draft_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--draft-max")) {
            o->sb.draft_max = cli_int(a, cli_value(argc, argv, &i));
            if (o->sb.draft_max < 1 || o->sb.draft_max > 64) return cli_fail("--draft-max must be 1 to 64"), 2;
        } else if (!strcmp(a, "--spec-accept")) {
            if (parse_accept(a, cli_value(argc, argv, &i), &o->sb)) return 2;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        else
            return cli_unknown_option(
                "bench", a,
                "-m --model -p --n-prompt -n --n-gen -t --threads -r --repetitions -o --output -b "
                "--batch -d --n-depth -ctk --cache-type-k -ctv --cache-type-v -fa --flash-attn "
                "--device --reference --hugepages --no-hugepages --lora --lora-scaled --spec -md --model-draft "
                "--draft-max --spec-accept --warm-read -v --verbose");
    }
    return -1;
}

/* The options' ranges and combinations: 0, or 2 with the message said. */
static int bench_check(bench_opts *o) {
    if (o->reps < 1 || o->reps > 64) return cli_fail("-r must be 1..64"), 2;
    if (o->warm_read && o->device && strcmp(o->device, "cpu"))
        return cli_fail("--warm-read reads the weights on the CPU backend only (not --device %s)", o->device), 2;
    if (!o->model_path)
        return cli_fail("bench: no model given: lfm2c bench MODEL, -m MODEL.gguf or -hf ORG/NAME[:QUANT]"), 2;
    for (int k = 0; k < o->n_d; k++)
        if (o->depths[k] < 0 || o->depths[k] > (1 << 21))
            return cli_fail("-d must be 0 to %d, got %d", 1 << 21, o->depths[k]), 2;
    for (int k = 0; k < o->n_b; k++)
        if (o->batches[k] < 1 || o->batches[k] > 1024)
            return cli_fail("-b must be 1 to 1024, got %d", o->batches[k]), 2;
    for (int k = 0; k < o->n_pp; k++)
        if (o->pps[k] < 0 || o->pps[k] > (1 << 20))
            return cli_fail("-p must be 0 to %d, got %d", 1 << 20, o->pps[k]), 2;
    for (int k = 0; k < o->n_tg; k++)
        if (o->tgs[k] < 0 || o->tgs[k] > (1 << 20))
            return cli_fail("-n must be 0 to %d, got %d", 1 << 20, o->tgs[k]), 2;
    if (strcmp(o->fmt, "md") && strcmp(o->fmt, "json") && strcmp(o->fmt, "csv"))
        return cli_fail("-o must be md, json or csv"), 2;
    o->json = !strcmp(o->fmt, "json"), o->csv = !strcmp(o->fmt, "csv");
    if ((o->sb.draft_path || o->sb.n_accept != 4 || o->sb.draft_max != 4) && !o->spec)
        return cli_fail("-md, --draft-max and --spec-accept go with --spec"), 2;
    if (o->spec && o->csv) return cli_fail("--spec writes md or json"), 2;
    return 0;
}

/* The model as the combination (threads ti, K type ki, V type vi) opens it; NULL with the message said. */
static lfm2c_model *bench_open(const bench_opts *o, int ti, int ki, int vi, lfm2c_model_params *mp) {
    *mp = lfm2c_model_default_params();
    mp->n_threads = o->threads[ti];
    mp->reference = o->reference;
    mp->type_k = o->tks[ki];
    mp->type_v = o->tvs[vi];
    mp->hugepages = o->hugepages;
    if (o->device && (mp->device = cli_device_id(o->device)) < 0) return NULL;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(o->model_path, mp, &err);
    if (!m) cli_fail("%s", err.msg);
    else cli_report_device(m);
    return m;
}

/* bench --spec: the speculative rows on the first threads / KV types given. */
static int bench_spec(bench_opts *o) {
    spec_bench *sb = &o->sb;
    sb->depth = o->depths[0], sb->np = o->pps[0] > 0 ? o->pps[0] : 16, sb->n = o->tgs[0] > 1 ? o->tgs[0] : 2;
    sb->reps = o->reps;
    lfm2c_model_params mp;
    lfm2c_model *m = bench_open(o, 0, 0, 0, &mp);
    if (!m) return o->device && mp.device < 0 ? 2 : 1;
    int rc = run_spec_bench(m, o->model_path, sb, o->json, o->threads[0], o->device);
    lfm2c_model_free(m);
    return rc;
}

/* What one table row needs besides its result. */
typedef struct bench_row {
    const bench_opts *o;
    lfm2c_model *m;
    const lfm2c_model_info *in;
    int nth, ki, vi, *first_row;
    double warm_gbps; /* --warm-read's rate (0: not read) */
} bench_row;

static void bench_print(const bench_row *b, const result *r) {
    print_row(b->o->fmt, b->o->model_path, b->in, b->o->device, b->nth, b->o->tks[b->ki], b->o->tvs[b->vi], r,
              (double)os_rss_peak_kb() / 1024.0, b->first_row);
}

/* -b: B sequences at once, for each B given: 0, or 1 with the message said. */
static int bench_batched(const bench_row *b, uint64_t *rng) {
    const bench_opts *o = b->o;
    for (int bi = 0; bi < o->n_b; bi++) {
        result r = {.test = "batch",
                    .n_prompt = o->pps[0],
                    .n_gen = o->tgs[0],
                    .batch = o->batches[bi],
                    .warm_gbps = b->warm_gbps};
        const lfm2c_decode_profile p0 = lfm2c_model_decode_profile(b->m);
        lfm2c_error err = {0};
        for (int k = 0; k < o->reps; k++) {
            double v = run_batched(b->m, o->batches[bi], o->pps[0], o->tgs[0], rng, &err);
            if (v < 0) return cli_fail("%s", err.msg);
            r.samples[r.n++] = v;
        }
        count_solo(b->m, &p0, &r);
        bench_print(b, &r);
    }
    return 0;
}

/* One pp or tg row (pass 0 / 1) of n tokens on session s at depth: 0, or 1 with the message said. */
static int bench_test(const bench_row *b, lfm2c_session *s, int depth, int pass, int n, uint64_t *rng) {
    const bench_opts *o = b->o;
    result r = {.test = pass ? "tg" : "pp",
                .n_prompt = pass ? 0 : n,
                .n_gen = pass ? n : 0,
                .batch = 1,
                .depth = depth,
                .warm_gbps = b->warm_gbps};
    const lfm2c_decode_profile p0 = lfm2c_model_decode_profile(b->m);
    lfm2c_error err = {0};
    for (int k = 0; k < o->reps; k++) {
        /* the last repetition's first tokens record their weight reads for the replay below */
        const bool arm = pass && k == o->reps - 1 && replay_arm(b->m, n < REPLAY_PASSES ? n : REPLAY_PASSES) == 0;
        double v = pass ? run_tg(b->m, s, depth, n, rng, &r.prof[r.n], &err) : run_pp(b->m, s, depth, n, rng, &err);
        if (v < 0) return cli_fail("%s", err.msg);
        r.samples[r.n++] = v;
        r.replayed = arm && replay_run(b->m, &r.rp) == 0 && r.rp.gbps_jobs > 0;
    }
    count_solo(b->m, &p0, &r);
    count_device(b->m, &p0, &r);
    if (r.replayed && !replay_paired(b->m, s, depth, &r.rp, rng, &r.paired, &r.paired_whole))
        r.paired = r.paired_whole = 0;
    bench_print(b, &r);
    if (pass && o->verbose && !o->json && !o->csv) print_tg_prof(&r);
    if (o->verbose && !o->json && !o->csv) print_device_time(&r, b->in);
    return 0;
}

/* Every pp and tg test at every depth, after a warm-up: 0, or 1 with the message said. */
static int bench_depths(const bench_row *b, uint64_t *rng) {
    const bench_opts *o = b->o;
    lfm2c_error err = {0};
    /* warm-up, as llama-bench's: a prompt of the largest pp size (it reads every weight a
     * prompt reads, all of a MoE's experts among them, so the first pp repetition does not pay
     * the first read of the weights), then a few tokens one at a time (settles the pool) */
    int max_pp = 0, extra = 0;
    for (int i = 0; i < o->n_pp; i++) max_pp = o->pps[i] > max_pp ? o->pps[i] : max_pp;
    lfm2c_session *w = depth_session(b->m, 0, max_pp + 4, rng, &err);
    if (!w || (max_pp > 0 && run_pp(b->m, w, 0, max_pp, rng, &err) < 0) || run_tg(b->m, w, 0, 4, rng, NULL, &err) < 0) {
        lfm2c_session_free(w);
        return cli_fail("%s", err.msg);
    }
    lfm2c_session_free(w);
    extra = max_pp;
    for (int i = 0; i < o->n_tg; i++) extra = o->tgs[i] > extra ? o->tgs[i] : extra;
    for (int di = 0; di < o->n_d; di++) {
        lfm2c_session *s = depth_session(b->m, o->depths[di], extra, rng, &err);
        if (!s) return cli_fail("%s", err.msg);
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < (pass ? o->n_tg : o->n_pp); i++) {
                const int n = pass ? o->tgs[i] : o->pps[i];
                if (n > 0 && bench_test(b, s, o->depths[di], pass, n, rng)) return 1;
            }
        lfm2c_session_free(s);
    }
    return 0;
}

/* After a model's rows (md with -v, on stderr): pages, kernels, interleaving, memory. */
static void bench_footer(const bench_row *b, const lfm2c_model_params *mp) {
    const bench_opts *o = b->o;
    const lfm2c_model_info *in = b->in;
    if (o->json || o->csv || !o->verbose) return;
    print_huge_pages(in->weights_copied);
    if (!o->device || !strcmp(o->device, "cpu")) {
        const kernel_choice *kc = kernels_choice();
        fprintf(stderr, "kernels: %s (%s: %s); decode prefetch: %s (%s: %s)\n", kernels_in_use, kernels_how, kc->why,
                kc->pf_name, kc->pf_how, kc->pf_why);
        fprintf(stderr, "attention prefetch: %s (%s: %s)\n", kc->apf_name, kc->apf_how, kc->apf_why);
    }
    if (in->weights_packed) fprintf(stderr, "%d weight matrices interleaved for the kernels\n", in->weights_packed);
    fprintf(stderr,
            "peak RSS %.1f MB; weights read per decoded token %.3f GB; KV cache (k %s, v %s) "
            "%.1f MiB per 32768-token sequence\n",
            (double)os_rss_peak_kb() / 1024.0, in->weight_bytes_active / 1e9, lfm2c_kv_type_name(o->tks[b->ki]),
            lfm2c_kv_type_name(o->tvs[b->vi]), lfm2c_kv_cache_bytes(b->m, 32768) / 1048576.0);
}

/* --warm-read: every weight byte read once, over the pool, before the first row (the rate on
 * stderr in md, in every row's JSON): 0, or 1 with the message said. */
static int warm_read(bench_row *b) {
    double bytes = 0;
    const double gbps = replay_read_weights(b->m, &bytes);
    if (gbps < 0) return cli_fail("--warm-read: the weights were not read (CPU backend only; memory short?)"), 1;
    b->warm_gbps = gbps;
    if (!b->o->json && !b->o->csv)
        fprintf(stderr, "warm read: the weights' %.2f GB read once in %.2f s (%.1f GB/s) before the rows\n",
                bytes / 1e9, bytes / 1e9 / gbps, gbps);
    return 0;
}

/* The table's head, once, when the first model has opened (an error before it prints no table). */
static void bench_header(const bench_opts *o) {
    static bool done;
    if (done) return;
    done = true;
    if (o->json) printf("[\n");
    else if (o->csv)
        printf("model_filename,n_threads,n_batch,n_prompt,n_gen,avg_ts,stddev_ts,gbps,peak_rss_mb,n_depth,type_k,type_"
               "v\n");
    else
        printf("| model | size | params | backend | threads | type_k | type_v | test | t/s | GB/s |\n"
               "|---|---:|---:|---|---:|---|---|---:|---:|---:|\n");
}

/* One combination of threads, K and V type: the model opened, its rows, its footer: 0 or 1. */
static int bench_model(const bench_opts *o, int ti, int ki, int vi, int *first_row) {
    lfm2c_model_params mp;
    lfm2c_model *m = bench_open(o, ti, ki, vi, &mp);
    if (!m) return 1;
    bench_header(o);
    int rc = cli_lora_load(m) ? 1 : 0;
    if (!rc && cli_lora_count() && !o->json && !o->csv) fprintf(stderr, "with %d LoRA adapter(s)\n", cli_lora_count());
    bench_row b = {
        o, m, lfm2c_model_get_info(m), o->threads[ti] > 0 ? o->threads[ti] : os_cpus_online(), ki, vi, first_row, 0};
    if (!rc && o->warm_read) rc = warm_read(&b);
    uint64_t rng = 42;
    if (!rc) rc = o->n_b > 0 ? bench_batched(&b, &rng) : bench_depths(&b, &rng);
    if (!rc) bench_footer(&b, &mp);
#ifdef LFM2C_HAVE_CUDA
    char prof[4096]; /* LFM2C_CUDA_PROFILE=1: where the device time went, stage by stage */
    if (cuda_backend_note(m)) fprintf(stderr, "cuda: %s\n", cuda_backend_note(m));
    if (!rc && cuda_profile_text(m, prof, sizeof prof) == 0) fputs(prof, stderr);
#endif
    cli_lora_forget();
    lfm2c_model_free(m);
    return rc;
}

int cmd_bench_vision(int argc, char **argv); /* cmd_bench_vision.c */
int cmd_bench_audio(int argc, char **argv);  /* cmd_bench_audio.c */

int cmd_bench(int argc, char **argv) {
    for (int i = 1; i < argc; i++) /* an encoder instead: LFM2-Audio's with --audio-seconds, else LFM2-VL's */
        if (!strcmp(argv[i], "--audio-seconds")) return cmd_bench_audio(argc, argv);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--mmproj") || !strcmp(argv[i], "-mm")) return cmd_bench_vision(argc, argv);
    bench_opts o = bench_opts_init();
    int rc = bench_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    if ((rc = bench_check(&o))) return rc;
    kernels_in_use = o.reference ? "scalar" : kernels_choice()->ops->isa;
    kernels_how = o.reference ? "--reference" : kernels_choice()->how;
    kernels_pf = o.reference ? "none" : kernels_choice()->pf_name;
    if (o.spec) return bench_spec(&o);
    int first_row = 1;
    for (int ti = 0; ti < o.n_th; ti++)
        for (int ki = 0; ki < o.n_tk; ki++)
            for (int vi = 0; vi < o.n_tv; vi++)
                if ((rc = bench_model(&o, ti, ki, vi, &first_row))) return rc;
    if (o.json) printf("\n]\n");
    else if (!o.csv) printf("\nbuild: %s\n", cli_build_string()); /* as llama-bench ends its table */
    return 0;
}
