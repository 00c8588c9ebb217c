/* sampler.c — turns logits into the next token. Order of operations (llama.cpp's default chain,
 * so users get what they are used to): logit bias, penalties, filter hook (constrained
 * decoding), then greedy or top-k → top-p → min-p → temperature → draw with a seeded RNG. */
#include "core/sampler.h"

#include "core/sample_math.h"
#include "base/os.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lfm2c_sampler {
    lfm2c_sampler_params p;
    int n_vocab;
    uint64_t seed, draws; /* the generator (sample_math.h): draw n is smp_uniform(seed, n) */
    float *bias;          /* NULL = none */
    float *work;          /* logits copy */
    int *idx;             /* candidate ids */
    float *prob;          /* candidate weights */
    int *counts;          /* penalty counts per token */
    lfm2c_logits_filter filter;
    void *filter_user;
    const uint32_t *mask; /* sampler_set_mask: allowed tokens as bits, after the filter; NULL: all */
};

lfm2c_sampler_params lfm2c_sampler_default_params(void) {
    lfm2c_sampler_params p = {0};
    p.temperature = 0.1f; /* Liquid's recommendation for the instruct models (spec 6.4) */
    p.top_k = 50;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.05f;
    p.repeat_last_n = 64;
    p.seed = 0x5eed;
    return p;
}

lfm2c_sampler_params lfm2c_sampler_params_for_model(const lfm2c_model *model) {
    lfm2c_sampler_params p = lfm2c_sampler_default_params();
    const lfm2c_model_info *in = lfm2c_model_get_info(model);
    if (!in) return p;
    if (!isnan(in->def_temp)) p.temperature = in->def_temp;
    if (in->def_top_k >= 0) p.top_k = in->def_top_k;
    if (!isnan(in->def_top_p)) p.top_p = in->def_top_p;
    if (!isnan(in->def_min_p)) p.min_p = in->def_min_p;
    if (!isnan(in->def_repeat_penalty)) p.repeat_penalty = in->def_repeat_penalty;
    return p;
}

lfm2c_sampler *lfm2c_sampler_new(const lfm2c_sampler_params *p, int n_vocab) {
    if (!p || n_vocab < 1) return NULL;
    lfm2c_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->seed = smp_seed(p->seed);
    s->work = malloc(sizeof(float) * (size_t)n_vocab);
    s->idx = malloc(sizeof(int) * (size_t)n_vocab);
    s->prob = malloc(sizeof(float) * (size_t)n_vocab);
    s->counts = calloc((size_t)n_vocab, sizeof(int));
    if (!s->work || !s->idx || !s->prob || !s->counts) {
        lfm2c_sampler_free(s);
        return NULL;
    }
    return s;
}

void lfm2c_sampler_free(lfm2c_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->work);
    free(s->idx);
    free(s->prob);
    free(s->counts);
    free(s);
}

void lfm2c_sampler_set_logit_bias(lfm2c_sampler *s, const float *bias) {
    if (!s) return;
    free(s->bias);
    s->bias = NULL;
    if (bias && (s->bias = malloc(sizeof(float) * (size_t)s->n_vocab)))
        memcpy(s->bias, bias, sizeof(float) * (size_t)s->n_vocab);
}

void lfm2c_sampler_set_filter(lfm2c_sampler *s, lfm2c_logits_filter f, void *user) {
    if (!s) return;
    s->filter = f;
    s->filter_user = user;
}

/* splitmix64 on a counter (sample_math.h): small, seedable, the same on a device */
static double next_uniform(lfm2c_sampler *s) { return smp_uniform(s->seed, s->draws++); }

/* The first position of the penalty window of a history of n_hist tokens. */
static int window_from(const lfm2c_sampler_params *p, int n_hist) {
    return p->repeat_last_n >= 0 && n_hist > p->repeat_last_n ? n_hist - p->repeat_last_n : 0;
}

static void apply_penalties(lfm2c_sampler *s, float *l, const int32_t *hist, int n_hist) {
    const lfm2c_sampler_params *p = &s->p;
    bool rep = p->repeat_penalty != 1.0f && p->repeat_penalty > 0;
    bool oai = p->presence_penalty != 0 || p->frequency_penalty != 0;
    if (!rep && !oai) return;
    int from = window_from(p, n_hist);
    for (int i = from; i < n_hist; i++)
        if (hist[i] >= 0 && hist[i] < s->n_vocab) s->counts[hist[i]]++;
    for (int i = from; i < n_hist; i++) {
        int t = hist[i];
        if (t < 0 || t >= s->n_vocab || s->counts[t] == 0) continue;
        l[t] = smp_penalize(l[t], s->counts[t], rep, p->repeat_penalty, p->frequency_penalty, p->presence_penalty);
        s->counts[t] = 0; /* each distinct token once */
    }
}

/* a ranks below b: smaller logit, or equal logit and larger id */
static inline bool worse(const float *l, int a, int b) { return l[a] < l[b] || (l[a] == l[b] && a > b); }

static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *l = ctx;
    float x = l[*(const int *)a], y = l[*(const int *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

/* NaN or +infinity among the logits (-infinity is an excluded token) */
static bool not_finite(const float *l, int V) {
    bool bad = false;
    for (int i = 0; i < V; i++) bad |= l[i] != l[i] || l[i] == INFINITY;
    return bad;
}

/* The distribution the sampler draws from: bias, penalties, filter, then greedy (n = 1: the
 * best token) or top-k -> top-p -> min-p -> temperature. Candidates in s->idx[0..n), weights
 * in s->prob[0..n) (unnormalised; *sum_out their sum). Returns n, 0 when every token is out,
 * LFM2C_SAMPLE_NOT_FINITE when the logits are not all finite. */
static int candidates(lfm2c_sampler *s, const float *logits, const int32_t *hist, int n_hist, double *sum_out) {
    const lfm2c_sampler_params *p = &s->p;
    const int V = s->n_vocab;
    float *l = s->work;
    if (not_finite(logits, V)) return LFM2C_SAMPLE_NOT_FINITE;
    memcpy(l, logits, sizeof(float) * (size_t)V);
    if (s->bias)
        for (int i = 0; i < V; i++) l[i] += s->bias[i];
    apply_penalties(s, l, hist, n_hist);
    if (s->filter) s->filter(s->filter_user, l, V);
    if (s->mask)
        for (int i = 0; i < V; i++)
            if (!(s->mask[i >> 5] >> (i & 31) & 1)) l[i] = -INFINITY;

    if (p->temperature <= 0) { /* greedy: ties go to the lower id */
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        if (!(l[best] > -INFINITY)) return 0; /* every token excluded (bias, filter): none */
        s->idx[0] = best;
        s->prob[0] = 1.0f;
        *sum_out = 1.0;
        return 1;
    }
    /* candidates: finite logits, sorted (top-k first narrows what must be sorted) */
    int n = 0;
    for (int i = 0; i < V; i++)
        if (l[i] > -INFINITY) s->idx[n++] = i;
    if (n == 0) return 0; /* every token excluded (bias, filter): none */
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    if (k < n) {
        /* keep the k best in a min-heap (worst on top): O(V log k) instead of sorting V */
        int *h = s->idx, hn = 0;
        for (int i = 0; i < V; i++) {
            if (!(l[i] > -INFINITY)) continue;
            if (hn == k && !worse(l, h[0], i)) continue;
            int pos;
            if (hn < k) {
                pos = hn++;
                while (pos > 0 && worse(l, i, h[(pos - 1) / 2])) {
                    h[pos] = h[(pos - 1) / 2];
                    pos = (pos - 1) / 2;
                }
                h[pos] = i;
            } else {
                pos = 0; /* replace the root and sift down */
                for (;;) {
                    int c = 2 * pos + 1;
                    if (c >= hn) break;
                    if (c + 1 < hn && worse(l, h[c + 1], h[c])) c++;
                    if (!worse(l, h[c], i)) break;
                    h[pos] = h[c];
                    pos = c;
                }
                h[pos] = i;
            }
        }
    }
    qsort_r(s->idx, (size_t)k, sizeof(int), cmp_desc, l);
    n = k;
    /* softmax at temperature 1 for top-p / min-p (as llama.cpp), then temperature */
    float mx = l[s->idx[0]];
    double sum = 0;
    float *prob = s->prob;
    for (int i = 0; i < n; i++) {
        prob[i] = expf(l[s->idx[i]] - mx);
        sum += prob[i];
    }
    if (p->top_p < 1.0f) {
        double c = 0;
        for (int i = 0; i < n; i++) {
            c += prob[i] / sum;
            if (c >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        int m = 1;
        while (m < n && prob[m] >= p->min_p * prob[0]) m++;
        n = m;
    }
    sum = 0;
    for (int i = 0; i < n; i++) {
        prob[i] = expf((l[s->idx[i]] - mx) / p->temperature);
        sum += prob[i];
    }
    *sum_out = sum;
    return n;
}

int32_t lfm2c_sampler_sample(lfm2c_sampler *s, const float *logits, const int32_t *hist, int n_hist) {
    if (!s || !logits) return -1;
    double sum = 0;
    int n = candidates(s, logits, hist, n_hist, &sum);
    if (n <= 0) return n == 0 ? -1 : n;
    if (s->p.temperature <= 0) return s->idx[0];
    double r = next_uniform(s) * sum, c = 0;
    int chosen = s->idx[n - 1];
    for (int i = 0; i < n; i++) {
        c += s->prob[i];
        if (r < c) {
            chosen = s->idx[i];
            break;
        }
    }
    return chosen;
}

int sampler_probs(lfm2c_sampler *s, const float *logits, const int32_t *hist, int n_hist, float *probs) {
    double sum = 0;
    int n = candidates(s, logits, hist, n_hist, &sum);
    memset(probs, 0, sizeof(float) * (size_t)s->n_vocab);
    for (int i = 0; i < n; i++) probs[s->idx[i]] = (float)(s->prob[i] / sum);
    return n > 0 ? 0 : n == 0 ? -1 : n;
}

double sampler_uniform(lfm2c_sampler *s) { return next_uniform(s); }

int32_t sampler_draw(lfm2c_sampler *s, const float *weights) {
    double sum = 0;
    int last = -1;
    for (int i = 0; i < s->n_vocab; i++)
        if (weights[i] > 0) {
            sum += weights[i];
            last = i;
        }
    if (last < 0) return -1;
    double r = next_uniform(s) * sum, c = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        if (!(weights[i] > 0)) continue;
        c += weights[i];
        if (r < c) return i;
    }
    return last;
}

const lfm2c_sampler_params *sampler_params(const lfm2c_sampler *s) { return &s->p; }

int sampler_job(const lfm2c_sampler *s, int n_hist, smp_job *j, int *hist_from, const float **bias) {
    if (s->filter) return -1; /* a hook runs on the host only */
    const lfm2c_sampler_params *p = &s->p;
    bool rep = p->repeat_penalty != 1.0f && p->repeat_penalty > 0;
    bool oai = p->presence_penalty != 0 || p->frequency_penalty != 0;
    *j = (smp_job){.temperature = p->temperature,
                   .top_p = p->top_p,
                   .min_p = p->min_p,
                   .top_k = p->top_k,
                   .rep = rep,
                   .repeat = p->repeat_penalty,
                   .presence = p->presence_penalty,
                   .frequency = p->frequency_penalty,
                   .seed = s->seed,
                   .counter = s->draws,
                   .hist_off = -1,
                   .bias_off = -1,
                   .mask_off = -1,
                   .n_logprobs = -1};
    *hist_from = rep || oai ? window_from(p, n_hist) : n_hist;
    *bias = s->bias;
    return 0;
}

void sampler_drew(lfm2c_sampler *s) { s->draws++; }

void sampler_set_mask(lfm2c_sampler *s, const uint32_t *mask) { s->mask = mask; }
