/* encoder.c — the pieces the encoders in front of a model share beside the backend's products
 * (encoder.h): layer norm as ggml's CPU computes it (the mean and the variance summed in double,
 * then the weight and bias), the erf GELU, and running a job over a thread pool or on the
 * caller's thread. */
#include "core/encoder.h"

#include <math.h>

void enc_run(threadpool *pool, threadpool_fn fn, void *arg) {
    if (pool) threadpool_run(pool, fn, arg);
    else fn(arg, 0, 1);
}

void enc_layer_norm(float *x, int64_t rows, int n, const float *w, const float *b, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * n;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += v[i];
        const float mean = (float)(sum / n);
        double sq = 0;
        for (int i = 0; i < n; i++) {
            v[i] -= mean;
            sq += (double)v[i] * v[i];
        }
        const float scale = 1.0f / sqrtf((float)(sq / n) + eps);
        for (int i = 0; i < n; i++) {
            float y = v[i] * scale;
            if (w) y *= w[i];
            if (b) y += b[i];
            v[i] = y;
        }
    }
}

void enc_gelu_erf(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752440f));
}
