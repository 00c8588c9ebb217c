/* ppl.c — perplexity, KL divergence and the logits file of llama-perplexity (ppl.h). The
 * arithmetic follows the reference's precision step by step (which sums are double, which values
 * float), so that the same logits give the same figures to the last printed digit or two. */
#include "convert/ppl.h"

#include "base/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
enum { MAX_CTX = 1 << 22, MAX_VOCAB = 1 << 24 };

const double KLD_PCT[KLD_NPCT] = {1, .999, .99, .95, .90, .5, .10, .05, .01, .001, 0};
const double DP_PCT[DP_NPCT] = {1, .999, .99, .95, .90, .75, .5, .25, .10, .05, .01, .001, 0};

static float max_of(const float *x, int n, int *imax) {
    float m = x[0];
    int im = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i], im = i;
    if (imax) *imax = im;
    return m;
}

static double sum_exp(const float *x, int n, float max) {
    double s = 0;
    for (int i = 0; i < n; i++) s += expf(x[i] - max);
    return s;
}

double ppl_nll(const float *logits, int n_vocab, int tok) {
    const float max = max_of(logits, n_vocab, NULL);
    return -(logits[tok] - max - log(sum_exp(logits, n_vocab, max)));
}

size_t kld_row_words(int n_vocab) { return 2 * (((size_t)n_vocab + 1) / 2) + 4; }

/* round to nearest, ties as the float trick the reference uses (adding 1.5 * 2^23) rounds them */
static int nearest_int(float v) {
    float x = v + 12582912.f;
    int32_t i;
    memcpy(&i, &x, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

double kld_pack_row(const float *logits, int n_vocab, int tok, uint16_t *row) {
    float max = logits[0], min = logits[0];
    for (int i = 1; i < n_vocab; i++) {
        if (logits[i] > max) max = logits[i];
        if (logits[i] < min) min = logits[i];
    }
    if (min < max - 16) min = max - 16;
    const float lse = (float)log(sum_exp(logits, n_vocab, max));
    const float min_log_prob = min - max - lse, scale = (max - min) / 65535.f;
    memset(row, 0, kld_row_words(n_vocab) * sizeof *row);
    memcpy(row, &scale, sizeof scale);
    memcpy(row + 2, &min_log_prob, sizeof min_log_prob);
    uint16_t *q = row + 4;
    if (scale != 0) {
        const float inv = 1 / scale;
        for (int i = 0; i < n_vocab; i++) q[i] = logits[i] > min ? (uint16_t)nearest_int(inv * (logits[i] - min)) : 0;
    }
    return max + lse - logits[tok];
}

void kld_add_row(const float *logits, int n_vocab, const uint16_t *base, int tok, kld_sums *s, float *kld_out,
                 float *p_diff_out) {
    int imax = 0;
    float max = max_of(logits, n_vocab, &imax);
    const float lse = (float)log(sum_exp(logits, n_vocab, max));
    float scale, min_log_prob;
    memcpy(&scale, base, sizeof scale);
    memcpy(&min_log_prob, base + 2, sizeof min_log_prob);
    base += 4;
    const float nll = max + lse - logits[tok];
    const float nll_base = -(scale * base[tok] + min_log_prob);
    s->nll += nll, s->nll2 += nll * nll;
    s->nll_base += nll_base, s->nll_base2 += nll_base * nll_base;
    s->nll_nll_base += nll * nll_base;
    max += lse;
    double sum = 0;
    int imax_base = -1;
    float best = 0;
    for (int i = 0; i < n_vocab; i++) {
        const float lp = scale * base[i] + min_log_prob;
        if (i == 0 || lp > best) best = lp, imax_base = i;
        if (lp > -16.f) sum += expf(lp) * (lp - logits[i] + max);
    }
    s->kld += sum, s->kld2 += sum * sum;
    s->count++;
    s->same_top += imax == imax_base;
    const float p_diff = expf(-nll) - expf(-nll_base);
    const double p_diff2 = p_diff * p_diff;
    s->p_diff += p_diff, s->p_diff2 += p_diff2, s->p_diff4 += p_diff2 * p_diff2;
    if (fabsf(p_diff) > s->max_p_diff) s->max_p_diff = fabsf(p_diff);
    *kld_out = (float)sum;
    *p_diff_out = p_diff;
}

int kld_rows_per_chunk(int n_ctx) { return n_ctx - 1 - n_ctx / 2; }

void kld_header_free(kld_header *h) {
    free(h->tokens);
    memset(h, 0, sizeof *h);
}

int kld_read_header(FILE *f, uint64_t file_size, kld_header *h, lfm2c_error *err) {
    memset(h, 0, sizeof *h);
    char magic[8];
    int32_t v[3];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8) || fread(v, 4, 3, f) != 3)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "not a logits file (no \"_logits_\" header)"), -1;
    if (v[0] < 2 || v[0] > MAX_CTX || v[1] < 1 || v[1] > MAX_VOCAB || v[2] < 1)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "logits file: context %d, vocabulary %d, %d chunks out of range",
                               v[0], v[1], v[2]),
               -1;
    const uint64_t toks = (uint64_t)v[0] * (uint64_t)v[2], rows = (uint64_t)kld_rows_per_chunk(v[0]) * (uint64_t)v[2];
    const uint64_t row_bytes = kld_row_words(v[1]) * 2; /* every product below fits: toks, rows < 2^53 */
    const bool fits = toks <= file_size / 4 && rows <= file_size / row_bytes;
    const uint64_t need = fits ? 20 + toks * 4 + rows * row_bytes : 0;
    if (!fits || need != file_size)
        return lfm2c_set_error(err, LFM2C_EFORMAT,
                               "logits file: %llu bytes do not hold what its header says (%d chunks of %d positions "
                               "over a vocabulary of %d: %s); truncated, or not written whole",
                               (unsigned long long)file_size, v[2], v[0], v[1], fits ? "other sizes" : "more"),
               -1;
    h->tokens = malloc(toks * sizeof *h->tokens);
    if (!h->tokens) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the logits file's tokens"), -1;
    if (fread(h->tokens, 4, toks, f) != toks) {
        kld_header_free(h);
        return lfm2c_set_error(err, LFM2C_EIO, "logits file: read error"), -1;
    }
    for (uint64_t i = 0; i < toks; i++)
        if (h->tokens[i] < 0 || h->tokens[i] >= v[1]) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "logits file: token %d at %llu outside the vocabulary of %d",
                            h->tokens[i], (unsigned long long)i, v[1]);
            kld_header_free(h);
            return -1;
        }
    h->n_ctx = v[0], h->n_vocab = v[1], h->n_chunk = v[2];
    return 0;
}

bool kld_write_header(FILE *f, int n_ctx, int n_vocab, int n_chunk, const int32_t *tokens) {
    const int32_t v[3] = {n_ctx, n_vocab, n_chunk};
    const size_t n = (size_t)n_ctx * (size_t)n_chunk;
    return fwrite(MAGIC, 1, 8, f) == 8 && fwrite(v, 4, 3, f) == 3 && fwrite(tokens, 4, n, f) == n;
}

void ppl_mean_err(double sum, double sum2, uint64_t n, double *mean, double *err) {
    *mean = *err = 0;
    if (n < 1) return;
    const double f = sum / (double)n, d = sum2 / (double)n - f * f;
    *mean = f;
    *err = d > 0 && n > 10 ? sqrt(d / (double)(n - 1)) : 0;
}

static double covariance(const kld_sums *s) {
    if (s->count < 10) return 0;
    const double n = (double)s->count;
    return (s->nll_nll_base / n - (s->nll / n) * (s->nll_base / n)) / (n - 1);
}

void kld_line_of(const kld_sums *s, kld_line *l) {
    double lp, lpe, lb, lbe, mse, msee;
    ppl_mean_err(s->nll, s->nll2, s->count, &lp, &lpe);
    ppl_mean_err(s->nll_base, s->nll_base2, s->count, &lb, &lbe);
    l->ppl = exp(lp), l->ppl_err = l->ppl * lpe;
    l->ln_ratio = lp - lb, l->ln_ratio_err = sqrt(lpe * lpe + lbe * lbe - 2.0 * covariance(s));
    ppl_mean_err(s->kld, s->kld2, s->count, &l->kld, &l->kld_err);
    ppl_mean_err(s->p_diff2, s->p_diff4, s->count, &mse, &msee);
    l->rms_dp = sqrt(mse), l->rms_dp_err = 0.5 / l->rms_dp * msee;
    l->same_top = s->count ? (double)s->same_top / (double)s->count : 0;
    l->same_top_err = s->count > 1 ? sqrt(l->same_top * (1 - l->same_top) / (double)(s->count - 1)) : 0;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* the reference's interpolation: fraction f of the way through the sorted values, in float */
static float percentile(const float *v, size_t n, double fraction) {
    const float fr = (float)fraction;
    if (fr <= 0) return v[0];
    if (fr >= 1) return v[n - 1];
    float p = fr * (float)(n - 1);
    const size_t ip = (size_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

void kld_stats_of(const kld_sums *s, float *kv, float *dv, size_t n, kld_stats *st) {
    memset(st, 0, sizeof *st);
    st->count = s->count;
    kld_line_of(s, &st->run);
    double lp, lpe, lb, lbe;
    ppl_mean_err(s->nll, s->nll2, s->count, &lp, &lpe);
    ppl_mean_err(s->nll_base, s->nll_base2, s->count, &lb, &lbe);
    const double cov = covariance(s);
    st->ppl_base = exp(lb), st->ppl_base_err = st->ppl_base * lbe;
    st->cor = cov / (lpe * lbe);
    st->ratio = exp(st->run.ln_ratio), st->ratio_err = st->ratio * st->run.ln_ratio_err;
    st->diff = st->run.ppl - st->ppl_base;
    st->diff_err = sqrt(st->run.ppl_err * st->run.ppl_err + st->ppl_base_err * st->ppl_base_err -
                        2.0 * st->run.ppl * st->ppl_base * cov);
    ppl_mean_err(s->p_diff, s->p_diff2, s->count, &st->dp_mean, &st->dp_err);
    if (!n) return;
    qsort(kv, n, sizeof *kv, cmp_float);
    qsort(dv, n, sizeof *dv, cmp_float);
    for (int i = 0; i < KLD_NPCT; i++) st->kld_pct[i] = percentile(kv, n, KLD_PCT[i]);
    for (int i = 0; i < DP_NPCT; i++) st->dp_pct[i] = percentile(dv, n, DP_PCT[i]);
}
