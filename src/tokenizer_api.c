/* tokenizer_api.c — the public tokenizer functions of lfm2c.h, on the model's tokenizer. Kept
 * apart from tokenizer.c so that the tokenizer links (tests, tools) without the model. */
#include "model.h"
#include "tokenizer.h"

#include <stdio.h>
#include <string.h>

int32_t *lfm2c_tokenize(const lfm2c_model *m, const char *text, size_t len, bool add_bos,
                        bool parse_special, int *n_out, lfm2c_error *err) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    if (!t) {
        *n_out = 0;
        if (err) {
            err->code = LFM2C_EINVAL;
            snprintf(err->msg, sizeof err->msg, "tokenize: the model has no tokenizer");
        }
        return NULL;
    }
    return tokenizer_encode(t, text, len, add_bos, parse_special, n_out, err);
}

int lfm2c_token_to_bytes(const lfm2c_model *m, int32_t token, bool special, char *buf, int cap) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    return t ? tokenizer_token_to_bytes(t, token, special, buf, cap) : 0;
}

void lfm2c_detok_init(lfm2c_detok *d, bool special) {
    memset(d, 0, sizeof *d);
    d->special = special;
}

int lfm2c_detok_push(lfm2c_detok *d, const lfm2c_model *m, int32_t token, char *out, int cap) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    return t ? tokenizer_detok_push(d, t, token, out, cap) : 0;
}

int lfm2c_detok_flush(lfm2c_detok *d, char *out, int cap) { return tokenizer_detok_flush(d, out, cap); }

int lfm2c_vocab_size(const lfm2c_model *m) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    return t ? tokenizer_n_vocab(t) : 0;
}
