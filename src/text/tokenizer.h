/* tokenizer.h — byte-level BPE of LFM2 (GGUF tokenizer.ggml.model = gpt2, pre = lfm2).
 *
 * Encoding follows the reference (llama.cpp) exactly: special-token partition, lenient UTF-8
 * decoding, the LFM2 / Llama-3 pre-token split, the whole-piece rule (ignore_merges), then BPE by
 * merge rank (ties: leftmost). A tokenizer is immutable after tokenizer_new: many threads may
 * encode / decode with one concurrently. */
#ifndef LFM2C_TOKENIZER_H
#define LFM2C_TOKENIZER_H
#include "formats/gguf.h"
#include "lfm2c.h"

typedef struct lfm2c_tokenizer lfm2c_tokenizer;

/* GGUF token types (tokenizer.ggml.token_type). */
enum {
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
};

/* Builds the tokenizer from the GGUF's tokenizer.ggml.* keys (copies what it needs: the GGUF
 * may be closed afterwards). */
lfm2c_tokenizer *tokenizer_new(const gguf_file *g, lfm2c_error *err);
void tokenizer_free(lfm2c_tokenizer *t);

/* add_bos means llama.cpp's add_special: BOS first if the file says add_bos_token (default true),
 * EOS last if it says add_eos_token (default false). parse_special: text of CONTROL tokens
 * becomes their id (USER_DEFINED tokens always do, as in the reference). Returns a malloc'd
 * array (never NULL on success, even for 0 tokens) or NULL with err set. */
/* As tokenizer_encode, but no special token starts where no_special[i] != 0 (len bytes). */
int32_t *tokenizer_encode_masked(const lfm2c_tokenizer *t, const char *text, size_t len, bool add_bos,
                                 bool parse_special, const uint8_t *no_special, int *n_out, lfm2c_error *err);
/* Length of the longest special-token text starting at text[i] (0: none). */
size_t tokenizer_special_at(const lfm2c_tokenizer *t, const char *text, size_t len, size_t i);
int32_t *tokenizer_encode(const lfm2c_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                          int *n_out, lfm2c_error *err);
/* Bytes of a token: normal tokens through the inverse byte map, USER_DEFINED as their text,
 * CONTROL / UNKNOWN as their text only when `special`. Returns the byte count (may exceed cap;
 * nothing beyond cap is written); 0 for ids out of range. */
int tokenizer_token_to_bytes(const lfm2c_tokenizer *t, int32_t id, bool special, char *buf, int cap);
int tokenizer_n_vocab(const lfm2c_tokenizer *t);
bool tokenizer_is_eog(const lfm2c_tokenizer *t, int32_t id);
int tokenizer_bos(const lfm2c_tokenizer *t); /* -1 if none */
int tokenizer_eos(const lfm2c_tokenizer *t);
bool tokenizer_add_bos(const lfm2c_tokenizer *t);
/* TOKEN_TYPE_* of a token, 0 for ids out of range. */
int tokenizer_token_type(const lfm2c_tokenizer *t, int32_t id);
/* The token's string as stored in the GGUF (byte-mapped form, e.g. "Ġthe"); NULL if out of range. */
const char *tokenizer_token_text(const lfm2c_tokenizer *t, int32_t id, int *len);
/* Id of the token whose stored string is exactly text[0..len), -1 if none. */
int32_t tokenizer_find_token(const lfm2c_tokenizer *t, const char *text, size_t len);

/* The pre-token split alone (for tests): decodes text leniently, re-encodes it into *norm
 * (malloc'd) and returns the number of pieces; piece i is norm[(*offs)[i] .. (*offs)[i+1])
 * (*offs malloc'd, n+1 entries). -1 on allocation failure. */
int tokenizer_pretokenize(const char *text, size_t len, char **norm, size_t **offs);

/* Streaming decode on a tokenizer (lfm2c_detok_* are these on the model's tokenizer): writes only
 * complete, well-formed UTF-8; ill-formed bytes become U+FFFD (one per maximal ill-formed
 * subpart, as Python's errors="replace"); an incomplete character waits in d->pending. Output
 * that would pass cap is dropped (cap >= 64 + the longest token is always enough for tokens
 * cut from UTF-8 text). Returns the bytes written. */
int tokenizer_detok_push(lfm2c_detok *d, const lfm2c_tokenizer *t, int32_t id, char *out, int cap);
int tokenizer_detok_flush(lfm2c_detok *d, char *out, int cap);
#endif
