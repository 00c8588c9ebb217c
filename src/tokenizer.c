/* placeholder tokenizer (byte tokens only); replaced by the real BPE */
#include "tokenizer.h"
#include "model.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
struct lfm2c_tokenizer { int n_vocab; };
lfm2c_tokenizer *tokenizer_new(const gguf_file *g, lfm2c_error *err) {
    lfm2c_tokenizer *t = calloc(1, sizeof *t);
    const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.tokens");
    t->n_vocab = kv ? (int)kv->n : 0;
    return t;
}
void tokenizer_free(lfm2c_tokenizer *t) { free(t); }
int32_t *tokenizer_encode(const lfm2c_tokenizer *t, const char *text, size_t len, bool add_bos,
                          bool parse_special, int *n_out, lfm2c_error *err) {
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    int n = 0;
    if (add_bos) ids[n++] = 1;
    for (size_t i = 0; i < len; i++) ids[n++] = 32 + (unsigned char)text[i];
    *n_out = n;
    return ids;
}
int tokenizer_token_to_bytes(const lfm2c_tokenizer *t, int32_t id, bool special, char *buf, int cap) {
    return snprintf(buf, cap, "<%d>", id);
}
int tokenizer_n_vocab(const lfm2c_tokenizer *t) { return t->n_vocab; }
bool tokenizer_is_eog(const lfm2c_tokenizer *t, int32_t id) { return id == 2 || id == 7; }
int tokenizer_bos(const lfm2c_tokenizer *t) { return 1; }
int tokenizer_eos(const lfm2c_tokenizer *t) { return 7; }
bool tokenizer_add_bos(const lfm2c_tokenizer *t) { return true; }
int32_t *lfm2c_tokenize(const lfm2c_model *m, const char *text, size_t len, bool add_bos,
                        bool parse_special, int *n_out, lfm2c_error *err) {
    return tokenizer_encode(model_tokenizer(m), text, len, add_bos, parse_special, n_out, err);
}
int lfm2c_token_to_bytes(const lfm2c_model *m, int32_t token, bool special, char *buf, int cap) {
    return tokenizer_token_to_bytes(model_tokenizer(m), token, special, buf, cap);
}
void lfm2c_detok_init(lfm2c_detok *d, bool special) { memset(d, 0, sizeof *d); d->special = special; }
int lfm2c_detok_push(lfm2c_detok *d, const lfm2c_model *m, int32_t token, char *out, int cap) {
    return lfm2c_token_to_bytes(m, token, d->special, out, cap);
}
int lfm2c_detok_flush(lfm2c_detok *d, char *out, int cap) { return 0; }
int lfm2c_vocab_size(const lfm2c_model *m) { return tokenizer_n_vocab(model_tokenizer(m)); }
