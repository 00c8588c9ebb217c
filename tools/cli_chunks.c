/* cli_chunks.c — the chunk loop `perplexity` and `imatrix` share (llama.cpp's perplexity and
 * imatrix tools run the same one): a text's tokens cut into chunks of n_ctx, each chunk decoded
 * from an empty cache with its first token replaced by BOS where the model adds one, in passes of
 * at most n_batch tokens; the logits of the positions asked for handed to the caller in order. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_chunk_eval(const lfm2c_model *m, lfm2c_session *s, const int32_t *chunk, int n_ctx, int n_batch, int first_out,
                   cli_chunk_row fn, void *ud, lfm2c_error *err) {
    const lfm2c_model_info *in = lfm2c_model_get_info(m);
    int32_t *t = malloc((size_t)n_ctx * sizeof *t);
    if (!t) {
        err->code = LFM2C_ENOMEM;
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    memcpy(t, chunk, (size_t)n_ctx * sizeof *t);
    if (in->add_bos && in->bos_id >= 0) t[0] = in->bos_id;
    lfm2c_session_reset(s);
    int rc = 0;
    for (int p = 0; p < n_ctx && rc == 0;) {
        int len = n_ctx - p < n_batch ? n_ctx - p : n_batch;
        if (p < first_out && p + len > first_out) len = first_out - p; /* a pass wants all its rows or none */
        const bool rows = p >= first_out;
        rc = lfm2c_session_decode(s, t + p, len, rows ? LFM2C_LOGITS_ALL : LFM2C_LOGITS_NONE, err);
        for (int j = 0; rc == 0 && rows && j < len; j++) fn(ud, p + j, lfm2c_session_logits(s, j));
        p += len;
    }
    free(t);
    return rc;
}
