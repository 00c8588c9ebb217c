/* resample.c — a clip to the encoder's rate as llama.cpp's audio helper gets it (mtmd-helper.cpp:
 * miniaudio's decoder asked for mono float at 16 kHz; miniaudio 0.11.25's data converter), step
 * by step in the same float and double arithmetic: the channels summed in order in float and
 * divided by their count; then, when the rates differ, its linear resampler over the rates
 * divided by their greatest common divisor: an output frame every in/out input frames,
 * interpolated x0 + (x1 - x0) a between the last two loaded inputs with a = frac / out in float,
 * starting one input early (the first output is the silence before the first sample), and a
 * 4th-order Butterworth low-pass (two biquads, q = 1 / (2 cos((1 + 2i) pi / 8)), cutoff half
 * the lower rate, coefficients in double as its lpf2 computes them, cos as sin(pi/2 - x), run in
 * float in transposed direct form II) over each input frame as it is loaded when down-sampling,
 * over each output frame when up-sampling. The frame count is the one miniaudio's decoder
 * reports (ma_calculate_frame_count_after_resampling); frames the resampler does not reach
 * stay 0, as libmtmd leaves them. */
#include "audio/audio.h"

#include <math.h>
#include <stdlib.h>

int64_t aud_out_frames(int rate_in, int rate_out, int64_t frames) {
    if (rate_in <= 0 || rate_out <= 0 || frames <= 0) return 0;
    if (rate_in == rate_out) return frames;
    const uint64_t in = (uint32_t)rate_in, out = (uint32_t)rate_out, n = (uint64_t)frames;
    uint64_t o = n * out / in;
    const uint64_t from_frac = o * (in / out) / out, need = o * (in % out) + from_frac;
    if (need <= n) o += 1;
    return (int64_t)o;
}

typedef struct biquad {
    float b0, b1, b2, a1, a2, r1, r2;
} biquad;

static double cos_ma(double x) { return sin(3.14159265358979323846264 * 0.5 - x); }

static biquad lpf2(double rate, double cutoff, double q) {
    const double w = 2 * 3.14159265358979323846264 * cutoff / rate, s = sin(w), c = cos_ma(w), a = s / (2 * q);
    const double b0 = (1 - c) / 2, b1 = 1 - c, b2 = (1 - c) / 2, a0 = 1 + a, a1 = -2 * c, a2 = 1 - a;
    return (biquad){(float)(b0 / a0), (float)(b1 / a0), (float)(b2 / a0), (float)(a1 / a0), (float)(a2 / a0), 0, 0};
}

static float bq_run(biquad *f, float x) {
    const float y = f->b0 * x + f->r1;
    f->r1 = f->b1 * x - f->a1 * y + f->r2;
    f->r2 = f->b2 * x - f->a2 * y;
    return y;
}

static unsigned gcd(unsigned a, unsigned b) {
    while (b) {
        const unsigned t = a % b;
        a = b, b = t;
    }
    return a;
}

/* The resampler over mono x (n frames) into out (cap frames); returns the frames it made. */
static int64_t resample(const float *x, int64_t n, int rate_in, int rate_out, float *out, int64_t cap) {
    const unsigned g = gcd((unsigned)rate_in, (unsigned)rate_out), in = (unsigned)rate_in / g,
                   ro = (unsigned)rate_out / g;
    const bool down = in > ro;
    const double lpf_rate = in > ro ? in : ro, cutoff = (in < ro ? in : ro) * 0.5 * 1;
    biquad f[2];
    for (int i = 0; i < 2; i++)
        f[i] = lpf2(lpf_rate, cutoff, 1 / (2 * cos_ma((1 + i * 2) * (3.14159265358979323846264 / (4 * 2)))));
    const unsigned adv_int = in / ro, adv_frac = in % ro;
    uint64_t t_int = 1, t_frac = 0;
    float x0 = 0, x1 = 0;
    int64_t next = 0, made = 0;
    while (made < cap) {
        for (; t_int > 0 && next < n; t_int--) {
            x0 = x1, x1 = x[next++];
            if (down) x1 = bq_run(&f[1], bq_run(&f[0], x1));
        }
        if (t_int > 0) break; /* out of input */
        const float a = (float)t_frac / (float)ro;
        float y = x0 + (x1 - x0) * a;
        if (!down) y = bq_run(&f[1], bq_run(&f[0], y));
        out[made++] = y;
        t_int += adv_int, t_frac += adv_frac;
        if (t_frac >= ro) t_frac -= ro, t_int += 1;
    }
    return made;
}

float *aud_to_mono(const aud_pcm *pcm, int rate_out, int64_t *n_out) {
    const int64_t n = pcm->frames, m = aud_out_frames(pcm->rate, rate_out, n);
    const int C = pcm->channels;
    float *mono = C == 1 ? pcm->x : malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    float *out = calloc((size_t)(m > 0 ? m : 1), sizeof(float));
    if (!mono || !out) {
        if (mono != pcm->x) free(mono);
        free(out);
        return NULL;
    }
    for (int64_t i = 0; C > 1 && i < n; i++) {
        float t = 0;
        for (int c = 0; c < C; c++) t += pcm->x[i * C + c];
        mono[i] = t / (float)(unsigned)C;
    }
    if (pcm->rate == rate_out)
        for (int64_t i = 0; i < m; i++) out[i] = mono[i];
    else resample(mono, n, pcm->rate, rate_out, out, m);
    if (mono != pcm->x) free(mono);
    *n_out = m;
    return out;
}
