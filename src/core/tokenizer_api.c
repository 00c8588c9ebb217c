/* tokenizer_api.c — the public tokenizer functions of lfm2c.h, on the model's tokenizer. Kept
 * apart from tokenizer.c so that the tokenizer links (tests, tools) without the model. */
#include "base/error.h"
#include "core/model.h"
#include "text/tokenizer.h"
#include "base/os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int32_t *lfm2c_tokenize(const lfm2c_model *m, const char *text, size_t len, bool add_bos, bool parse_special,
                        int *n_out, lfm2c_error *err) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tokenize: %s", !t ? "the model has no tokenizer" : "NULL argument");
        return NULL;
    }
    return tokenizer_encode(t, text, len, add_bos, parse_special, n_out, err);
}

#define MARK_LEN 4
#define AUDIO_LEN (sizeof LFM2C_AUDIO_MARKER - 1) /* the audio marker is guarded as a special text is */

char *lfm2c_guard_text(const lfm2c_model *m, const char *s, size_t len, size_t *out_len) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    if (out_len) *out_len = 0;
    if (!m || (!s && len)) return NULL; /* without the model's specials nothing could be guarded */
    /* worst case: a mark before every byte, or every mark replaced (3 bytes for 4) */
    char *o = malloc(len * (MARK_LEN + 1) + 1);
    if (!o) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (len - i >= MARK_LEN && !memcmp(s + i, LFM2C_GUARD_MARK, MARK_LEN)) {
            memcpy(o + n, "\xef\xbf\xbd", 3); /* a mark in the request itself: U+FFFD */
            n += 3;
            i += MARK_LEN;
            continue;
        }
        size_t l = t ? tokenizer_special_at(t, s, len, i) : 0;
        if (!l && len - i >= AUDIO_LEN && !memcmp(s + i, LFM2C_AUDIO_MARKER, AUDIO_LEN)) l = AUDIO_LEN;
        if (l) {
            memcpy(o + n, LFM2C_GUARD_MARK, MARK_LEN);
            n += MARK_LEN;
        } else {
            l = 1;
        }
        memcpy(o + n, s + i, l);
        n += l;
        i += l;
    }
    o[n] = 0;
    if (out_len) *out_len = n;
    return o;
}

int32_t *lfm2c_tokenize_prompt(const lfm2c_model *m, const char *text, size_t len, bool add_bos, int *n_out,
                               lfm2c_error *err) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    if (!t || !n_out || (!text && len)) return lfm2c_tokenize(m, text, len, add_bos, true, n_out, err);
    if (!memmem(text, len, LFM2C_GUARD_MARK, MARK_LEN))
        return tokenizer_encode(t, text, len, add_bos, true, n_out, err);
    char *plain = malloc(len + 1);
    uint8_t *no_special = calloc(len + 1, 1);
    int32_t *ids = NULL;
    if (plain && no_special) {
        size_t n = 0;
        for (size_t i = 0; i < len;) {
            if (len - i >= MARK_LEN && !memcmp(text + i, LFM2C_GUARD_MARK, MARK_LEN)) {
                no_special[n] = 1;
                i += MARK_LEN;
                continue;
            }
            plain[n++] = text[i++];
        }
        ids = tokenizer_encode_masked(t, plain, n, add_bos, true, no_special, n_out, err);
    } else {
        *n_out = 0;
        lfm2c_set_error(err, LFM2C_ENOMEM, "tokenize: out of memory");
    }
    free(plain);
    free(no_special);
    return ids;
}

int lfm2c_token_to_bytes(const lfm2c_model *m, int32_t token, bool special, char *buf, int cap) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    return t ? tokenizer_token_to_bytes(t, token, special, buf, cap) : 0;
}

void lfm2c_detok_init(lfm2c_detok *d, bool special) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->special = special;
}

int lfm2c_detok_push(lfm2c_detok *d, const lfm2c_model *m, int32_t token, char *out, int cap) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    return t && d ? tokenizer_detok_push(d, t, token, out, cap) : 0;
}

int lfm2c_detok_flush(lfm2c_detok *d, char *out, int cap) { return d ? tokenizer_detok_flush(d, out, cap) : 0; }

int lfm2c_vocab_size(const lfm2c_model *m) {
    const lfm2c_tokenizer *t = m ? model_tokenizer(m) : NULL;
    return t ? tokenizer_n_vocab(t) : 0;
}
