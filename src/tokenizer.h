/* tokenizer.h — byte-level BPE of LFM2 (GGUF tokenizer.ggml.model = gpt2, pre = lfm2). */
#ifndef LFM2C_TOKENIZER_H
#define LFM2C_TOKENIZER_H
#include "gguf.h"
#include "lfm2c.h"

typedef struct lfm2c_tokenizer lfm2c_tokenizer;

/* Builds the tokenizer from the GGUF's tokenizer.ggml.* keys. */
lfm2c_tokenizer *tokenizer_new(const gguf_file *g, lfm2c_error *err);
void tokenizer_free(lfm2c_tokenizer *t);
int32_t *tokenizer_encode(const lfm2c_tokenizer *t, const char *text, size_t len, bool add_bos,
                          bool parse_special, int *n_out, lfm2c_error *err);
int tokenizer_token_to_bytes(const lfm2c_tokenizer *t, int32_t id, bool special, char *buf, int cap);
int tokenizer_n_vocab(const lfm2c_tokenizer *t);
bool tokenizer_is_eog(const lfm2c_tokenizer *t, int32_t id);
int tokenizer_bos(const lfm2c_tokenizer *t);   /* -1 if none */
int tokenizer_eos(const lfm2c_tokenizer *t);
bool tokenizer_add_bos(const lfm2c_tokenizer *t);
#endif
