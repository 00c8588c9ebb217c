/* embed.c — one vector for a token sequence (lfm2c_embed): an embedding session fed the tokens
 * in chunks, its rows pooled (the last token's, or the mean of all), optionally scaled to unit
 * length; a vector that is not finite is an error. The rows themselves come from the forward of
 * each backend (session.c's embedding mode). */
#include "core/session.h"
#include "base/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { EMBED_CHUNK = 512 }; /* tokens per decode: bounds the rows a mean keeps at once */

void lfm2c_embedding_normalize(float *v, int n) {
    if (!v) return;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)v[i] * v[i];
    if (ss <= 0) return;
    const float inv = (float)(1.0 / sqrt(ss));
    for (int i = 0; i < n; i++) v[i] *= inv;
}

/* Feeds tokens[0..n) to the (reset, embedding) session s, adding each row into sum (mean) or
 * copying the last row to out (last). */
static int embed_feed(lfm2c_session *s, const int32_t *tokens, int n, int pooling, int H, double *sum, float *out,
                      lfm2c_error *err) {
    for (int off = 0; off < n; off += EMBED_CHUNK) {
        const int c = n - off < EMBED_CHUNK ? n - off : EMBED_CHUNK;
        const int mode = pooling == LFM2C_POOL_MEAN ? LFM2C_LOGITS_ALL
                         : off + c == n             ? LFM2C_LOGITS_LAST
                                                    : LFM2C_LOGITS_NONE;
        if (lfm2c_session_decode(s, tokens + off, c, mode, err)) return -1;
        for (int r = 0; pooling == LFM2C_POOL_MEAN && r < c; r++) {
            const float *row = lfm2c_session_embedding(s, r);
            for (int i = 0; i < H; i++) sum[i] += row[i];
        }
    }
    if (pooling == LFM2C_POOL_LAST) memcpy(out, lfm2c_session_embedding(s, 0), sizeof(float) * (size_t)H);
    return 0;
}

int lfm2c_embed(lfm2c_session *s, const int32_t *tokens, int n, int pooling, bool normalize, float *out,
                lfm2c_error *err) {
    if (!s || !tokens || !out) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL argument"), -1;
    if (pooling != LFM2C_POOL_LAST && pooling != LFM2C_POOL_MEAN)
        return lfm2c_set_error(err, LFM2C_EINVAL, "unknown pooling %d", pooling), -1;
    if (n < 1 || n > lfm2c_session_n_ctx(s))
        return lfm2c_set_error(err, LFM2C_EINVAL, "%d tokens to embed (1 to the context's %d)", n,
                               lfm2c_session_n_ctx(s)),
               -1;
    const int H = s->model->info.n_embd;
    const bool was = s->embeddings;
    if (lfm2c_session_set_embeddings(s, true, err)) return -1;
    double *sum = pooling == LFM2C_POOL_MEAN ? calloc((size_t)H, sizeof *sum) : NULL;
    int rc = -1;
    if (pooling == LFM2C_POOL_MEAN && !sum) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    else {
        lfm2c_session_reset(s);
        rc = embed_feed(s, tokens, n, pooling, H, sum, out, err);
    }
    for (int i = 0; rc == 0 && sum && i < H; i++) out[i] = (float)(sum[i] / n);
    bool finite = true;
    for (int i = 0; rc == 0 && i < H; i++) finite &= isfinite(out[i]) != 0;
    if (!finite) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "the embedding is not finite (NaN or infinity): the model's weights, or "
                        "an adapter's, overflow");
        rc = -1;
    }
    if (rc == 0 && normalize) lfm2c_embedding_normalize(out, H);
    free(sum);
    lfm2c_session_set_embeddings(s, was, NULL);
    return rc;
}
