/* spec.c — speculative decoding: two drafters (a draft model; prompt lookup) behind one
 * verify-and-accept loop. The target verifies a draft in one forward over last + k drafted
 * tokens of its session (lfm2c_decode_batch: the prefill path), reads the k+1 logits rows,
 * keeps the longest accepted run and rolls the session back exactly to it (the conv trail of
 * session.c: no recomputation). The accept rule keeps the target sampler's distribution:
 * accept d with min(1, p(d)/q(d)), else draw from max(0, p - q) (see include/lfm2c.h). */
#include "lfm2c.h"
#include "base/clock.h"
#include "base/error.h"
#include "core/sampler.h"
#include "core/session.h"
#include "core/spec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lfm2c_spec {
    lfm2c_spec_params p;
    lfm2c_model *target, *draft_model;
    lfm2c_session *draft; /* the draft model's session (NULL: prompt lookup) */
    lfm2c_sampler *dsmp;  /* the draft model's sampler: the target's settings */
    lfm2c_sampler_params dsmp_params;
    int V;
    float *q;       /* [draft_max][V]: the draft model's distribution per drafted token */
    float *pv, *rv; /* [V]: the target's distribution, the residual */
    int32_t *feed;  /* [draft_max + 1]: last + the draft */
    int32_t *dfeed; /* [draft_max + 2]: what the draft session lacks + last */
    int n_drafted;  /* k of the last lfm2c_spec_draft */
    bool q_valid;   /* q holds the drafted tokens' distributions (draft model) */
    int cap;        /* draft_max the buffers were made for */
    uint64_t rng;   /* force_accept */
    lfm2c_spec_stats stats;
    /* draft_auto (lfm2c_spec_step): the costs and the acceptance it chooses k from */
    double *t_fwd;       /* [cap + 2]: EWMA seconds of the target's forward over n tokens; 0 unmeasured */
    double t_draft;      /* EWMA seconds per drafted token; 0 unmeasured */
    double acc_n, rej_n; /* decayed counts: drafted tokens accepted, drafts that met a rejection */
    long auto_steps;
    int last_k;                           /* the previous step's draft: > 0 when the draft session is in step */
    double (*cost_fwd)(void *arg, int n); /* spec_set_costs: fixed costs instead of measured ones */
    void *cost_arg;
    double cost_draft;
};

/* draft_auto: how fast the acceptance counts forget (a weight per step), and how often a
 * neighbour of the chosen draft length is tried (spec.h) */
#define AUTO_DECAY 0.95
#define AUTO_EXPLORE SPEC_AUTO_EXPLORE

lfm2c_spec_params lfm2c_spec_default_params(void) {
    return (lfm2c_spec_params){.draft_max = 16,
                               .draft_min = 0,
                               .draft_p_min = 0.75f,
                               .lookup_min = 0,
                               .lookup_max = 0,
                               .force_accept = -1.0f,
                               .seed = 0x5eed,
                               .draft_auto = false};
}

/* The draft model's tokens must mean what the target's mean: same count, same bytes. */
static int vocab_check(const lfm2c_model *t, const lfm2c_model *d, lfm2c_error *err) {
    int nt = lfm2c_vocab_size(t), nd = lfm2c_vocab_size(d);
    if (nt != nd) {
        lfm2c_set_error(err, LFM2C_EINVAL, "the draft model's vocabulary (%d tokens) is not the target's (%d tokens)",
                        nd, nt);
        return -1;
    }
    char a[512], b[512];
    for (int i = 0; i < nt; i++) {
        int la = lfm2c_token_to_bytes(t, i, true, a, sizeof a), lb = lfm2c_token_to_bytes(d, i, true, b, sizeof b);
        if (la != lb || memcmp(a, b, (size_t)(la < (int)sizeof a ? la : (int)sizeof a))) {
            lfm2c_set_error(err, LFM2C_EINVAL, "the draft model's vocabulary differs from the target's (token %d)", i);
            return -1;
        }
    }
    return 0;
}

static int params_check(const lfm2c_spec_params *p, bool lookup, lfm2c_error *err) {
    if (p->draft_max < 0 || p->draft_max > 256) {
        lfm2c_set_error(err, LFM2C_EINVAL, "draft-max must be in 0..256 (got %d)", p->draft_max);
        return -1;
    }
    if (p->draft_min < 0 || p->draft_min > p->draft_max) {
        lfm2c_set_error(err, LFM2C_EINVAL, "draft-min must be in 0..draft-max (got %d)", p->draft_min);
        return -1;
    }
    if (!(p->draft_p_min >= 0 && p->draft_p_min <= 1)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "draft-p-min must be in [0, 1]");
        return -1;
    }
    if (!(p->force_accept <= 1)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "force_accept must be at most 1 (negative: off)");
        return -1;
    }
    if (lookup && (p->lookup_min < 1 || p->lookup_max < p->lookup_min || p->lookup_max > 64)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "prompt lookup needs n-gram sizes 1 <= min <= max <= 64 (got %d..%d)",
                        p->lookup_min, p->lookup_max);
        return -1;
    }
    return 0;
}

lfm2c_spec *lfm2c_spec_new(lfm2c_model *target, lfm2c_model *draft, int n_ctx, const lfm2c_spec_params *p,
                           lfm2c_error *err) {
    if (!target || !p) {
        lfm2c_set_error(err, LFM2C_EINVAL, "NULL model or parameters");
        return NULL;
    }
    if (params_check(p, !draft, err)) return NULL;
    if (draft && vocab_check(target, draft, err)) return NULL;
    lfm2c_spec *sp = calloc(1, sizeof *sp);
    if (!sp) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    sp->p = *p;
    sp->cap = p->draft_max;
    sp->target = target;
    sp->draft_model = draft;
    sp->V = lfm2c_vocab_size(target);
    sp->rng = p->seed ? p->seed : 1;
    size_t V = (size_t)sp->V;
    sp->pv = malloc(sizeof(float) * V);
    sp->rv = malloc(sizeof(float) * V);
    sp->feed = malloc(sizeof(int32_t) * ((size_t)p->draft_max + 1));
    sp->dfeed = malloc(sizeof(int32_t) * ((size_t)p->draft_max + 2));
    sp->t_fwd = calloc((size_t)p->draft_max + 2, sizeof(double));
    if (draft) sp->q = malloc(sizeof(float) * V * ((size_t)p->draft_max + 1));
    if (!sp->pv || !sp->rv || !sp->feed || !sp->dfeed || !sp->t_fwd || (draft && !sp->q)) {
        lfm2c_spec_free(sp);
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    if (draft && !(sp->draft = lfm2c_session_new(draft, n_ctx, err))) {
        lfm2c_spec_free(sp);
        return NULL;
    }
    return sp;
}

void lfm2c_spec_free(lfm2c_spec *sp) {
    if (!sp) return;
    lfm2c_session_free(sp->draft);
    lfm2c_sampler_free(sp->dsmp);
    free(sp->q);
    free(sp->pv);
    free(sp->rv);
    free(sp->feed);
    free(sp->dfeed);
    free(sp->t_fwd);
    free(sp);
}

int lfm2c_spec_set_params(lfm2c_spec *sp, const lfm2c_spec_params *p, lfm2c_error *err) {
    if (!sp || !p) {
        lfm2c_set_error(err, LFM2C_EINVAL, "NULL argument");
        return -1;
    }
    if (params_check(p, !sp->draft, err)) return -1;
    if (p->draft_max > sp->cap) {
        lfm2c_set_error(err, LFM2C_EINVAL, "draft-max %d is above the speculator's %d", p->draft_max, sp->cap);
        return -1;
    }
    sp->p = *p;
    return 0;
}

const lfm2c_spec_params *lfm2c_spec_get_params(const lfm2c_spec *sp) { return sp ? &sp->p : NULL; }

lfm2c_spec_stats lfm2c_spec_get_stats(const lfm2c_spec *sp) { return sp ? sp->stats : (lfm2c_spec_stats){0}; }

/* splitmix64 for force_accept */
static double uniform(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* ---- prompt lookup ------------------------------------------------------------------------ */

/* token i of the context: the session's history, then last */
static inline int32_t ctx_at(const lfm2c_session *s, int32_t last, int i) {
    return i < s->n_past ? s->tokens[i] : last;
}

/* The continuation of the most recent earlier occurrence of the context's last g tokens, for
 * g from lookup_max down to lookup_min; at most max tokens. */
static int draft_lookup(const lfm2c_spec *sp, const lfm2c_session *s, int32_t last, int32_t *d, int max) {
    const int n = s->n_past + 1;
    for (int g = sp->p.lookup_max; g >= sp->p.lookup_min; g--) {
        if (g >= n) continue;
        for (int j = n - g - 1; j >= 0; j--) {
            int i = 0;
            while (i < g && ctx_at(s, last, j + i) == ctx_at(s, last, n - g + i)) i++;
            if (i < g) continue;
            int k = 0;
            while (k < max && j + g + k < n && ctx_at(s, last, j + g + k) >= 0) { /* never an image's row */
                d[k] = ctx_at(s, last, j + g + k);
                k++;
            }
            return k;
        }
    }
    return 0;
}

/* Prompt lookup; under force_accept (benchmarks) the draft is topped up to max with the last
 * token, so every step carries a full draft at the lookup's cost: what a document being quoted
 * gives, which random weights cannot make. */
static int draft_lookup_forced(const lfm2c_spec *sp, const lfm2c_session *s, int32_t last, int32_t *d, int max) {
    int k = draft_lookup(sp, s, last, d, max);
    while (sp->p.force_accept >= 0 && k < max) d[k++] = last;
    return k;
}

/* ---- draft model -------------------------------------------------------------------------- */

/* The draft sampler: the target sampler's settings (no bias, no filter), its own RNG. */
static int draft_sampler(lfm2c_spec *sp, const lfm2c_sampler *smp, lfm2c_error *err) {
    lfm2c_sampler_params want = *sampler_params(smp);
    want.seed ^= 0xd7af7ull;
    if (sp->dsmp && !memcmp(&want, &sp->dsmp_params, sizeof want)) return 0;
    lfm2c_sampler_free(sp->dsmp);
    if (!(sp->dsmp = lfm2c_sampler_new(&want, sp->V))) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the draft sampler");
        return -1;
    }
    sp->dsmp_params = want;
    return 0;
}

/* The draft model's probability of its most likely next token at temperature 1 (what
 * draft_p_min is against). It must not depend on the token drawn: deciding whether to propose
 * a token by its own value would make the proposal differ from q and break the accept rule. */
static float top_prob(const float *logits, int V) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += expf(logits[i] - mx);
    return (float)(1.0 / sum);
}

/* What the draft model reads for a target token: an image's row (an id below 0, which a text
 * draft model cannot take) becomes token 0; its drafts there are guesses verified as any. */
#define DRAFT_TOK(t) ((t) < 0 ? 0 : (t))

/* Makes the draft session ready to read the target's history + last: keeps the common prefix,
 * feeds a long catch-up (a prompt, a chat turn) on its own, and leaves in sp->dfeed[0..*n_feed)
 * the rest, ending with last, for the batch (after a step that accepted everything: the tokens
 * the draft did not read, then last). Marks the draft session for the rollback after the step. */
static int draft_prepare(lfm2c_spec *sp, const lfm2c_session *s, int32_t last, int *n_feed, lfm2c_error *err) {
    lfm2c_session *ds = sp->draft;
    const int n = s->n_past;
    int keep = 0, lim = ds->n_past < n ? ds->n_past : n;
    while (keep < lim && ds->tokens[keep] == DRAFT_TOK(s->tokens[keep])) keep++;
    if (keep < ds->n_past && lfm2c_session_rollback(ds, keep, err)) return -1;
    if (n - keep > sp->p.draft_max + 1) { /* a checkpoint after it keeps the next sync cheap */
        int32_t *t = malloc(sizeof(int32_t) * (size_t)(n - keep));
        if (!t) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
        for (int i = keep; i < n; i++) t[i - keep] = DRAFT_TOK(s->tokens[i]);
        const int rc = lfm2c_session_decode(ds, t, n - keep, LFM2C_LOGITS_NONE, err);
        free(t);
        if (rc) return -1;
        lfm2c_session_checkpoint(ds);
        keep = n;
    }
    for (int i = keep; i < n; i++) sp->dfeed[i - keep] = DRAFT_TOK(s->tokens[i]);
    sp->dfeed[n - keep] = last;
    *n_feed = n - keep + 1;
    return lfm2c_session_mark(ds, n - keep + 1 + sp->p.draft_max, err);
}

/* One drafting job: a target session, its sampler, what it drafts into. */
typedef struct draft_job {
    lfm2c_spec *sp;
    const lfm2c_session *s;
    lfm2c_sampler *smp;
    int32_t last, *d, feed;
    int max, k;
    bool active;
} draft_job;

/* The next drafted token of job j from its draft session's last logits: 1 when it drafted one
 * and goes on (j->feed to be read next), 0 when it stopped. */
static int draft_next(draft_job *j) {
    lfm2c_spec *sp = j->sp;
    lfm2c_session *ds = sp->draft;
    const float *logits = lfm2c_session_logits(ds, 0);
    if (!logits || (sp->p.draft_p_min > 0 && top_prob(logits, sp->V) < sp->p.draft_p_min)) return 0;
    float *q = sp->q + (size_t)j->k * sp->V;
    if (sampler_probs(sp->dsmp, logits, ds->tokens, ds->n_past, q)) return 0;
    int32_t t = -1;
    if (sampler_params(j->smp)->temperature <= 0) {
        for (int i = 0; i < sp->V && t < 0; i++)
            if (q[i] > 0) t = i;
    } else {
        t = sampler_draw(sp->dsmp, q);
    }
    if (t < 0) return 0;
    j->d[j->k++] = t;
    if (lfm2c_token_is_eog(sp->target, t) || j->k == j->max || ds->n_past >= ds->n_ctx) return 0;
    j->feed = t;
    return 1;
}

/* Drafts for n jobs whose speculators share one draft model: the draft sessions read in one
 * forward per drafted position (lfm2c_decode_batch on the draft model). */
static int draft_models(draft_job *jobs, int n, lfm2c_error *err) {
    lfm2c_session **ss = calloc((size_t)n, sizeof *ss);
    const int32_t **toks = calloc((size_t)n, sizeof *toks);
    int *ns = calloc((size_t)n, sizeof *ns), *modes = calloc((size_t)n, sizeof *modes);
    int rc = -1;
    if (!ss || !toks || !ns || !modes) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        draft_job *j = &jobs[i];
        if (draft_sampler(j->sp, j->smp, err) || draft_prepare(j->sp, j->s, j->last, &ns[i], err)) goto done;
        ss[i] = j->sp->draft;
        toks[i] = j->sp->dfeed;
        modes[i] = LFM2C_LOGITS_LAST;
        j->active = true;
    }
    if (lfm2c_decode_batch(ss, toks, ns, modes, n, err)) goto done;
    for (;;) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            draft_job *j = &jobs[i];
            if (!j->active || !(j->active = draft_next(j) == 1)) continue;
            ss[m] = j->sp->draft;
            toks[m] = &j->feed;
            ns[m] = 1;
            modes[m++] = LFM2C_LOGITS_LAST;
        }
        if (!m) break;
        if (lfm2c_decode_batch(ss, toks, ns, modes, m, err)) goto done;
    }
    rc = 0;
done:
    free(ss);
    free(toks);
    free(ns);
    free(modes);
    return rc;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static int draft_check(lfm2c_spec *sp, lfm2c_session *s, lfm2c_sampler *smp, int32_t last, const int32_t *draft,
                       int max, lfm2c_error *err) {
    if (!sp || !s || !smp || (!draft && max > 0)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "NULL argument");
        return -1;
    }
    if (s->model != sp->target) {
        lfm2c_set_error(err, LFM2C_EINVAL, "the session is not of the speculator's target model");
        return -1;
    }
    if (last < 0 || last >= sp->V) {
        lfm2c_set_error(err, LFM2C_EINVAL, "token id %d out of range", last);
        return -1;
    }
    return 0;
}

/* After drafting: draft-min, and the target session marked for the rollback. */
static int draft_done(lfm2c_spec *sp, lfm2c_session *s, int k, lfm2c_error *err) {
    if (k < sp->p.draft_min) k = 0;
    sp->n_drafted = k;
    if (lfm2c_session_mark(s, k + 1, err)) return -1;
    return k;
}

int lfm2c_spec_draft_batch(lfm2c_spec *const *sps, lfm2c_session *const *ss, lfm2c_sampler *const *smps,
                           const int32_t *last, int32_t *const *drafts, const int *max, int *k, int n,
                           lfm2c_error *err) {
    if (n <= 0) return 0;
    if (!sps || !ss || !smps || !last || !drafts || !max || !k) {
        lfm2c_set_error(err, LFM2C_EINVAL, "NULL array");
        return -1;
    }
    draft_job *jobs = calloc((size_t)n, sizeof *jobs);
    if (!jobs) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return -1;
    }
    int nj = 0, rc = 0;
    lfm2c_model *dm = NULL;
    for (int i = 0; i < n && !rc; i++) {
        lfm2c_spec *sp = sps[i];
        k[i] = 0;
        if (draft_check(sp, ss[i], smps[i], last[i], drafts[i], max[i], err)) {
            rc = -1;
            break;
        }
        for (int j = 0; j < i && !rc; j++)
            if (sps[j] == sp || ss[j] == ss[i]) {
                lfm2c_set_error(err, LFM2C_EINVAL, "a speculator or session twice in one batch");
                rc = -1;
            }
        if (rc) break;
        int m = max[i] < sp->p.draft_max ? max[i] : sp->p.draft_max;
        if (m > ss[i]->n_ctx - ss[i]->n_past - 1) m = ss[i]->n_ctx - ss[i]->n_past - 1; /* last + the draft must fit */
        sp->q_valid = sp->draft != NULL;
        if (m <= 0) continue;
        if (!sp->draft) k[i] = draft_lookup_forced(sp, ss[i], last[i], drafts[i], m);
        else if (!dm || sp->draft_model == dm) { /* one draft model per batch; others alone */ dm = sp->draft_model;
            jobs[nj++] = (draft_job){.sp = sp, .s = ss[i], .smp = smps[i], .last = last[i], .d = drafts[i], .max = m};
        } else {
            draft_job one = {.sp = sp, .s = ss[i], .smp = smps[i], .last = last[i], .d = drafts[i], .max = m};
            if (draft_models(&one, 1, err)) rc = -1;
            k[i] = one.k;
        }
    }
    if (!rc && nj && draft_models(jobs, nj, err)) rc = -1;
    for (int i = 0, q = 0; !rc && i < n; i++) {
        if (q < nj && jobs[q].sp == sps[i]) k[i] = jobs[q++].k;
        if ((k[i] = draft_done(sps[i], ss[i], k[i], err)) < 0) rc = -1;
    }
    free(jobs);
    if (rc)
        for (int i = 0; i < n; i++) k[i] = 0;
    return rc;
}

int lfm2c_spec_draft(lfm2c_spec *sp, lfm2c_session *s, lfm2c_sampler *smp, int32_t last, int32_t *draft, int max,
                     lfm2c_error *err) {
    int k = 0;
    if (lfm2c_spec_draft_batch(&sp, &s, &smp, &last, &draft, &max, &k, 1, err)) return -1;
    return k;
}

/* Verifies drafted token d against the target's row (history hist[0..n_hist)): accepted (1), or
 * rejected with the replacement written to *repl (0), or -1 when no token can be sampled
 * (LFM2C_SAMPLE_NOT_FINITE: the row is not finite). */
static int verify_one(lfm2c_spec *sp, lfm2c_sampler *smp, const float *row, const int32_t *hist, int n_hist, int32_t d,
                      const float *q, int32_t *repl) {
    if (sp->p.force_accept >= 0) { /* benchmarks: a chosen acceptance rate */
        if (uniform(&sp->rng) < sp->p.force_accept) return 1;
        *repl = lfm2c_sampler_sample(smp, row, hist, n_hist);
        return *repl < 0 ? *repl : 0;
    }
    float *p = sp->pv;
    const int rc = sampler_probs(smp, row, hist, n_hist, p);
    if (rc) return rc;
    if (sampler_params(smp)->temperature <= 0) { /* p is 1 at the greedy pick */
        if (p[d] > 0) return 1;
        for (int i = 0; i < sp->V; i++)
            if (p[i] > 0) {
                *repl = i;
                break;
            }
        return 0;
    }
    float qd = q ? q[d] : 1.0f;
    if (qd > 0 && sampler_uniform(smp) * qd < p[d]) return 1; /* u < p/q: accepted */
    float *r = sp->rv;
    for (int i = 0; i < sp->V; i++) {
        float x = p[i] - (q ? q[i] : (i == d));
        r[i] = x > 0 ? x : 0;
    }
    *repl = sampler_draw(smp, r);
    if (*repl < 0) *repl = sampler_draw(smp, p); /* p == q up to rounding: any draw from p */
    return *repl < 0 ? -1 : 0;
}

int lfm2c_spec_accept(lfm2c_spec *sp, lfm2c_session *s, lfm2c_sampler *smp, const int32_t *draft, int k, int32_t *out,
                      lfm2c_error *err) {
    if (!sp || !s || !smp || !out || k < 0 || (k && !draft)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "bad argument");
        return -1;
    }
    if (s->n_rows != k + 1 || s->n_past < k + 1) {
        lfm2c_set_error(err, LFM2C_EINVAL, "the session's last decode did not verify a draft of %d tokens", k);
        return -1;
    }
    const int base = s->n_past - (k + 1); /* where last went */
    const bool use_q = sp->q_valid && sp->n_drafted == k;
    int n = 0, acc = 0, bad = 0;
    for (int i = 0; i <= k; i++) {
        const float *row = lfm2c_session_logits(s, i);
        int n_hist = base + 1 + i;
        if (i == k) { /* every drafted token accepted: one more from the target */
            int32_t t = lfm2c_sampler_sample(smp, row, s->tokens, n_hist);
            if ((bad = t) < 0) goto none;
            out[n++] = t;
            break;
        }
        int32_t repl = -1;
        int v = verify_one(sp, smp, row, s->tokens, n_hist, draft[i], use_q ? sp->q + (size_t)i * sp->V : NULL, &repl);
        if ((bad = v) < 0) goto none;
        if (v == 0) {
            out[n++] = repl;
            break;
        }
        out[n++] = draft[i];
        acc++;
    }
    if (k) {
        sp->stats.steps++;
        sp->stats.drafted += k;
        sp->stats.accepted += acc;
        sp->acc_n = AUTO_DECAY * sp->acc_n + acc;
        sp->rej_n = AUTO_DECAY * sp->rej_n + (acc < k);
    }
    if (lfm2c_session_rollback(s, base + 1 + acc, err)) return -1;
    if (sp->draft && sp->draft->n_past > base + 1 + acc && lfm2c_session_rollback(sp->draft, base + 1 + acc, err))
        return -1;
    return n;
none:
    if (bad == LFM2C_SAMPLE_NOT_FINITE)
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "the model's logits are not finite (NaN or infinity): its weights, or "
                        "an adapter's, overflow");
    else lfm2c_set_error(err, LFM2C_EINVAL, "no token can be sampled (every logit is -inf)");
    return -1;
}

/* ---- the draft length of each step (draft_auto) ------------------------------------------------
 * A draft of k tokens yields (1 - a^(k+1)) / (1 - a) tokens on average at acceptance a (each
 * drafted token accepted with probability a, the run ending at the first rejection) and costs
 * the target's forward over k + 1 tokens plus k drafted tokens. The speculator measures both
 * (EWMAs of the forward's seconds for each token count it ran and of a drafted token's seconds;
 * a from decayed counts of accepted tokens and of rejections) and drafts the k that yields the
 * most tokens per second, 0 being a plain decode step. It first runs a plain step and the longest
 * draft, interpolates the forward's cost linearly between the sizes it measured, and every
 * AUTO_EXPLORE steps tries a neighbour of its choice, so the estimates follow the context's
 * growth and a changing acceptance. On a dense model a forward over k + 1 tokens costs little
 * more than one (the weights are read once), so k stays high while drafts are accepted; on an MoE
 * model it reads the union of the tokens' experts, and k falls to what pays. The choice changes
 * no token at temperature 0, and keeps the target's distribution above it (each step's accept
 * rule does, whatever k is); only which random numbers a seed draws changes with it. */

/* EWMA weight of a new measurement */
#define AUTO_ALPHA 0.25
/* the estimated forward cost of n tokens: measured, else linear between the nearest measured
 * sizes (1 and kmax + 1 are measured before this is asked) */
static double auto_fwd(const lfm2c_spec *sp, int n, int top) {
    if (sp->t_fwd[n] > 0) return sp->t_fwd[n];
    int lo = n - 1, hi = n + 1;
    while (lo > 1 && !(sp->t_fwd[lo] > 0)) lo--;
    while (hi < top && !(sp->t_fwd[hi] > 0)) hi++;
    return sp->t_fwd[lo] + (sp->t_fwd[hi] - sp->t_fwd[lo]) * (n - lo) / (hi - lo);
}

static int auto_k(lfm2c_spec *sp, int kmax) {
    if (kmax <= 0 || kmax < sp->p.draft_min) return 0;                /* no draft that fits would be kept */
    if (!(sp->t_fwd[1] > 0)) return 0;                                /* measure a plain step ... */
    if (!(sp->t_fwd[kmax + 1] > 0)) return kmax;                      /* ... and the longest draft */
    const double a = (sp->acc_n + 0.5) / (sp->acc_n + sp->rej_n + 1); /* < 1: a prior of half each */
    const int kmin = sp->p.draft_min > 1 ? sp->p.draft_min : 1;
    int best = 0;
    double best_rate = 1 / sp->t_fwd[1], ak = a;
    for (int k = 1; k <= kmax; k++) {
        ak *= a; /* a^(k+1) */
        if (k < kmin) continue;
        const double rate = (1 - ak) / (1 - a) / (auto_fwd(sp, k + 1, kmax + 1) + k * sp->t_draft);
        if (rate > best_rate) best = k, best_rate = rate;
    }
    if (++sp->auto_steps % AUTO_EXPLORE == 0) { /* a neighbour, up and down in turn */
        const int up = (sp->auto_steps / AUTO_EXPLORE) & 1, n = best + (up ? 1 : -1);
        if (n >= 0 && n <= kmax) best = n < kmin && n > 0 ? (up ? kmin : 0) : n;
    }
    return best;
}

void spec_set_costs(lfm2c_spec *sp, double (*fwd)(void *arg, int n), void *arg, double draft_s) {
    sp->cost_fwd = fwd, sp->cost_arg = arg, sp->cost_draft = draft_s;
}

static void auto_note(double *ewma, double x) { *ewma = *ewma > 0 ? *ewma + AUTO_ALPHA * (x - *ewma) : x; }

int lfm2c_spec_step(lfm2c_spec *sp, lfm2c_session *s, lfm2c_sampler *smp, int32_t last, int32_t *out, int max_out,
                    lfm2c_error *err) {
    if (!sp || !s || !out || max_out < 1) {
        lfm2c_set_error(err, LFM2C_EINVAL, "bad argument");
        return -1;
    }
    if (s->n_past >= s->n_ctx) {
        lfm2c_set_error(err, LFM2C_ECONTEXT, "the context of %d tokens is full", s->n_ctx);
        return -1;
    }
    int max = max_out - 1;
    if (sp->p.draft_auto) {
        int kmax = sp->p.draft_max < max ? sp->p.draft_max : max;
        if (kmax > s->n_ctx - s->n_past - 1) kmax = s->n_ctx - s->n_past - 1;
        max = auto_k(sp, kmax);
    }
    const double t0 = lfm2c_now_s();
    int k = lfm2c_spec_draft(sp, s, smp, last, sp->feed + 1, max, err);
    if (k < 0) return -1;
    sp->feed[0] = last;
    const double t1 = lfm2c_now_s();
    if (lfm2c_session_decode(s, sp->feed, k + 1, LFM2C_LOGITS_ALL, err)) return -1;
    if (sp->p.draft_auto) {
        const double fwd = sp->cost_fwd ? sp->cost_fwd(sp->cost_arg, k + 1) : lfm2c_now_s() - t1;
        const double per_draft = sp->cost_fwd ? sp->cost_draft : (t1 - t0) / (k ? k : 1);
        auto_note(&sp->t_fwd[k + 1], fwd);
        /* a draft model's cost per drafted token, from steps that did not first catch its session
         * up after plain steps (a catch-up is paid once, not per drafted token); unmeasured, a
         * drafted token counts as free, so that the longer drafts get tried and measured */
        if (k && (sp->cost_fwd || (sp->draft && sp->last_k > 0))) auto_note(&sp->t_draft, per_draft);
    }
    sp->last_k = k;
    return lfm2c_spec_accept(sp, s, smp, sp->feed + 1, k, out, err);
}
