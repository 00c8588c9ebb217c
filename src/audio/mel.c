/* mel.c — log-mel features of a clip as libmtmd's preprocessor computes them for lfm2a
 * (mtmd-audio.cpp, "conformer"), step by step in the same float and double arithmetic so the
 * features agree to the bit: 256 zeros on each side of the samples; pre-emphasis x[i] - 0.97
 * x[i-1] over the samples but the first; frames every 160 samples, each 400 samples times a
 * periodic Hann window (0.5 (1 - cosf(2 pi i / 400)), centred in 512 by 56 zeros each side);
 * the real FFT of 512 by the radix-2 recursion libmtmd uses (even and odd halves, twiddles
 * from a table of sinf / cosf of 2 pi i / 512); the power re^2 + im^2 of the 257 bins; a
 * Slaney mel filterbank (librosa's default: linear below 1 kHz, log above, area-normalised,
 * 0 .. 8 kHz) summed four bins at a time in float into a double; max with 2^-24, the natural
 * log; then per mel bin the mean and the unbiased deviation over the first n / 160 frames
 * (sqrt(var + 1e-5)) normalise those frames and the last frame is 0. The frame count is
 * n / 160 + 1. Frames are computed over the pool, each as libmtmd computes it. Compiled without
 * fused multiply-adds (CMakeLists.txt), as libmtmd's baseline build computes. */
#include "audio/audio.h"
#include "base/error.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

aud_mel_params aud_mel_for(const aud_model *am) {
    const aud_hparams *h = &am->hp;
    return (aud_mel_params){h->sample_rate, h->n_fft, h->win, h->hop, h->n_mel};
}

int64_t aud_mel_frames(const aud_mel_params *p, int64_t n) { return n / p->hop + 1; }

typedef struct mel_cache {
    int N, bins;
    float *sinv, *cosv, *hann, *filt;     /* N entries each; hann padded to N; n_mel x bins */
    int lo[AUD_MEL_MAX], hi[AUD_MEL_MAX]; /* a filter's weights: none below lo (a multiple of 4) or from hi */
} mel_cache;

static double hz_to_mel(double f) { /* Slaney */
    const double min_log_hz = 1000.0, lin_slope = 3 / 200., min_log_mel = min_log_hz * lin_slope,
                 log_step = log(6.4) / 27.0;
    return f < min_log_hz ? f * lin_slope : min_log_mel + log(f / min_log_hz) / log_step;
}

static double mel_to_hz(double m) {
    const double min_log_hz = 1000.0, lin_slope = 3 / 200., min_log_mel = min_log_hz * lin_slope,
                 log_step = log(6.4) / 27.0;
    return m < min_log_mel ? m / lin_slope : min_log_hz * exp((m - min_log_mel) * log_step);
}

static void filterbank(const aud_mel_params *p, float *out, int bins) {
    const float f_max = 0.5f * (float)p->sample_rate;
    const double m_lo = hz_to_mel(0.0f), m_hi = hz_to_mel(f_max), step = (double)p->sample_rate / (double)p->n_fft;
    double hz[AUD_MEL_MAX + 2];
    for (int i = 0; i < p->n_mel + 2; i++) hz[i] = mel_to_hz(m_lo + (m_hi - m_lo) * ((double)i / (p->n_mel + 1)));
    for (int m = 0; m < p->n_mel; m++) {
        const double fl = hz[m], fc = hz[m + 1], fr = hz[m + 2];
        const double dl = fmax(1e-30, fc - fl), dr = fmax(1e-30, fr - fc), enorm = 2.0 / fmax(1e-30, fr - fl);
        for (int k = 0; k < bins; k++) {
            const double f = k * step;
            double w = 0.0;
            if (f >= fl && f <= fc) w = (f - fl) / dl;
            else if (f > fc && f <= fr) w = (fr - f) / dr;
            out[(size_t)m * bins + k] = (float)(w * enorm * 1.0f);
        }
    }
}

static int cache_init(mel_cache *c, const aud_mel_params *p) {
    c->N = p->n_fft, c->bins = p->n_fft / 2 + 1;
    c->sinv = malloc(sizeof(float) * (size_t)c->N), c->cosv = malloc(sizeof(float) * (size_t)c->N);
    c->hann = calloc((size_t)c->N, sizeof(float));
    c->filt = malloc(sizeof(float) * (size_t)p->n_mel * c->bins);
    if (!c->sinv || !c->cosv || !c->hann || !c->filt) return -1;
    for (int i = 0; i < c->N; i++) {
        const double theta = (2 * M_PI * i) / c->N;
        c->sinv[i] = sinf((float)theta), c->cosv[i] = cosf((float)theta);
    }
    const int off = (c->N - p->win) / 2; /* the periodic window of win, centred in N */
    for (int i = 0; i < p->win; i++) c->hann[off + i] = (float)(0.5 * (1.0 - cosf((float)((2.0 * M_PI * i) / p->win))));
    filterbank(p, c->filt, c->bins);
    for (int m = 0; m < p->n_mel; m++) {
        const float *f = c->filt + (size_t)m * c->bins;
        int lo = 0, hi = c->bins;
        while (lo < c->bins && f[lo] == 0) lo++;
        while (hi > lo && f[hi - 1] == 0) hi--;
        c->lo[m] = lo / 4 * 4, c->hi[m] = hi;
    }
    return 0;
}

static void cache_free(mel_cache *c) { free(c->sinv), free(c->cosv), free(c->hann), free(c->filt); }

/* libmtmd's recursive radix-2 FFT of N real values (N a power of two): in has room for 2N
 * (the halves are copied behind the data), out for 8N (the halves' transforms behind it). */
static void fft(const mel_cache *c, float *in, int N, float *out) {
    if (N == 1) {
        out[0] = in[0], out[1] = 0.0f;
        return;
    }
    const int half = N / 2;
    float *even = in + N, *even_fft = out + 2 * N, *odd_fft = even_fft + N;
    for (int i = 0; i < half; i++) even[i] = in[2 * i];
    fft(c, even, half, even_fft);
    for (int i = 0; i < half; i++) even[i] = in[2 * i + 1];
    fft(c, even, half, odd_fft);
    const int step = c->N / N;
    for (int k = 0; k < half; k++) {
        const float re = c->cosv[k * step], im = -c->sinv[k * step];
        const float ro = odd_fft[2 * k], io = odd_fft[2 * k + 1], er = even_fft[2 * k], ei = even_fft[2 * k + 1];
        out[2 * k] = er + re * ro - im * io;
        out[2 * k + 1] = ei + re * io + im * ro;
        out[2 * (k + half)] = er - re * ro + im * io;
        out[2 * (k + half) + 1] = ei - re * io - im * ro;
    }
}

/* One frame at sample offset `at` of the padded signal (np samples) into column i of out. The
 * filters' sums in groups of four bins as libmtmd's, less the groups where a filter has no
 * weight (each adds 0 to the sum), unless a power is not finite (then inf times 0 is NaN there:
 * every group is summed). */
static void frame(const mel_cache *c, const aud_mel_params *p, const float *x, int64_t np, int64_t at, float *in,
                  float *spec, float *out, int64_t n_len, int64_t i) {
    const int N = c->N;
    const int64_t valid = np - at < N ? (np - at > 0 ? np - at : 0) : N;
    for (int j = 0; j < valid; j++) in[j] = c->hann[j] * x[at + j];
    for (int j = (int)valid; j < 2 * N; j++) in[j] = 0.0f;
    fft(c, in, N, spec);
    bool finite = true;
    for (int j = 0; j < c->bins; j++) {
        spec[j] = spec[2 * j] * spec[2 * j] + spec[2 * j + 1] * spec[2 * j + 1];
        finite &= isfinite(spec[j]) != 0;
    }
    for (int m = 0; m < p->n_mel; m++) {
        const float *f = c->filt + (size_t)m * c->bins;
        double sum = 0.0;
        int k = finite ? c->lo[m] : 0;
        const int end = finite ? c->hi[m] : c->bins;
        for (; k < c->bins - 3 && k < end; k += 4)
            sum += spec[k] * f[k] + spec[k + 1] * f[k + 1] + spec[k + 2] * f[k + 2] + spec[k + 3] * f[k + 3];
        for (; k < c->bins && k < end; k++) sum += spec[k] * f[k];
        sum = fmax(sum, (double)5.960464477539063e-08f);
        out[(size_t)m * n_len + i] = (float)log(sum);
    }
}

/* Each bin's first `eff` frames to zero mean and unit (unbiased) deviation; the rest 0. */
static void normalise(float *out, int n_mel, int64_t n_len, int64_t eff) {
    for (int m = 0; m < n_mel; m++) {
        float *r = out + (size_t)m * n_len;
        double mean = 0;
        for (int64_t j = 0; j < eff; j++) mean += r[j];
        mean /= eff;
        double var = 0.0;
        for (int64_t j = 0; j < eff; j++) {
            const double v = r[j] - mean;
            var += v * v;
        }
        var /= eff - 1;
        const double sd = sqrt(var + 1e-5);
        for (int64_t j = 0; j < eff; j++) r[j] = (float)((r[j] - mean) / sd);
        for (int64_t j = eff; j < n_len; j++) r[j] = 0.0f;
    }
}

typedef struct frames_job {
    const mel_cache *c;
    const aud_mel_params *p;
    const float *x; /* the padded, pre-emphasised signal */
    int64_t np, n_len;
    float *scratch; /* per index: 2N input, 8N transform */
    float *out;
} frames_job;

static void frames_work(void *arg, int ith, int nth) {
    const frames_job *j = arg;
    float *in = j->scratch + (size_t)ith * 10 * j->c->N, *spec = in + 2 * (size_t)j->c->N;
    for (int64_t i = j->n_len * ith / nth; i < j->n_len * (ith + 1) / nth; i++)
        frame(j->c, j->p, j->x, j->np, i * j->p->hop, in, spec, j->out, j->n_len, i);
}

int aud_mel(const aud_mel_params *p, threadpool *pool, const float *pcm, int64_t n, float *out, lfm2c_error *err) {
    if (n / p->hop < 2 || p->n_mel < 1 || p->n_mel > AUD_MEL_MAX || p->n_fft < 2 || (p->n_fft & (p->n_fft - 1)) ||
        p->win > p->n_fft) {
        lfm2c_set_error(err, LFM2C_EINVAL, "audio of %lld samples: at least %d are needed (%.3f s)", (long long)n,
                        2 * p->hop, 2.0 * p->hop / p->sample_rate);
        return -1;
    }
    const int N = p->n_fft, pad = N / 2;
    const int64_t np = n + 2 * pad, n_len = aud_mel_frames(p, n);
    const int nth = pool ? threadpool_size(pool) : 1;
    mel_cache c = {0};
    float *x = calloc((size_t)np, sizeof *x), *scratch = malloc(sizeof(float) * 10 * (size_t)N * (size_t)nth);
    int rc = -1;
    if (x && scratch && !cache_init(&c, p)) {
        memcpy(x + pad, pcm, (size_t)n * sizeof *x);
        float prev = x[pad]; /* pre-emphasis, as libmtmd runs it over the padded buffer */
        for (int64_t i = pad + 1; i + pad < np; i++) {
            const float cur = x[i];
            x[i] = cur - 0.97f * prev;
            prev = cur;
        }
        frames_job j = {&c, p, x, np, n_len, scratch, out};
        if (pool) threadpool_run(pool, frames_work, &j);
        else frames_work(&j, 0, 1);
        normalise(out, p->n_mel, n_len, n / p->hop);
        rc = 0;
    } else {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the mel features of %lld samples", (long long)n);
    }
    cache_free(&c);
    free(x), free(scratch);
    return rc;
}
