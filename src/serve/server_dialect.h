/* server_dialect.h — the seam between openai.c (the OpenAI API) and the other APIs the server
 * speaks on the same port: the OpenAI Responses API (server_responses.c), Anthropic Messages
 * (server_anthropic.c) and Ollama (server_ollama.c). A dialect is a thin translation: its request
 * becomes an OpenAI chat (or completion) body that openai.c validates and runs as usual (tools,
 * constrained decoding, stops, sampling, limits and the special-token guard are shared), and the
 * OpenAI results (the final object, each stream chunk, each error) are rewritten in its own shape.
 * Each dialect file registers its routes (a table of http_route, http.h) in the server's one
 * route table, with openai.h's handlers. Internal to the server; shared helpers are in
 * server_dialect.c. */
#ifndef LFM2C_SERVER_DIALECT_H
#define LFM2C_SERVER_DIALECT_H
#include "lfm2c.h"
#include "serve/http.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct resp_store resp_store;

/* What a dialect may read of the server. */
typedef struct dl_server {
    lfm2c_model *model;
    const char *alias, *model_file;
    int n_lora;                /* LoRA adapters served besides the base, by name */
    const char *const *lora_names;
    int n_ctx;
    time_t started;
    resp_store *responses;     /* recent Responses conversations (previous_response_id) */
    pthread_mutex_t *id_mu;    /* guards *id_counter */
    uint64_t *id_counter;
    const char *owner;         /* who asks: a digest of the API key the request sent ("" none) */
} dl_server;

#define DL_OWNER_LEN 33        /* an owner digest: 32 hex digits + NUL */

/* The generation's figures when a hook runs. */
typedef struct dl_run {
    const int32_t *prompt;     /* the prompt's token ids (n_prompt) */
    int n_prompt, n_generated, n_cached;
    int n_reasoning;           /* generated tokens inside a thinking block */
    int stop_hit;              /* index of the request's stop string that ended it, -1: none */
    const char *stop_text;     /* that string, NULL: none */
    double t_submit, t_first, t_now; /* seconds (monotonic) */
} dl_run;

/* A dialect's error before anything runs (status and message; the shape is the dialect's). */
/* status 200 with answer: the dialect answers at once (nothing to generate; answer is new). */
typedef struct dl_err { int status; char param[64], msg[400]; json_t *answer; } dl_err;
int dl_fail(dl_err *e, int status, const char *param, const char *fmt, ...);

typedef void (*dl_write)(void *ctx, const char *s, size_t n);

typedef struct dialect {
    const char *name;
    const char *stream_type;   /* Content-Type of a stream */
    /* The request -> a new OpenAI chat body (*legacy: a /v1/completions body) and the dialect's
     * per-request state (freed with free_state). NULL with e set on bad input. */
    json_t *(*request)(const dl_server *s, json_t *body, void **state, bool *legacy, dl_err *e);
    /* The OpenAI final object (borrowed) -> the dialect's answer (new). */
    json_t *(*final)(const dl_server *s, void *state, json_t *openai, const dl_run *run);
    /* One OpenAI stream chunk, or {"error":{...}} (borrowed) -> the dialect's events. */
    void (*event)(const dl_server *s, void *state, json_t *chunk, const dl_run *run, dl_write w, void *wctx);
    /* Where OpenAI writes "data: [DONE]". */
    void (*end)(const dl_server *s, void *state, const dl_run *run, dl_write w, void *wctx);
    /* An error body in the dialect's shape (code/type: OpenAI's, may be ignored). */
    json_t *(*error)(int status, const char *code, const char *param, const char *msg);
    void (*free_state)(void *state);
} dialect;

extern const dialect dialect_responses, dialect_anthropic, dialect_ollama, dialect_ollama_generate;

/* The dialect whose error shape a URL gets (NULL: OpenAI's). */
const dialect *dialect_for_url(const char *url);

/* ---- shared helpers (server_dialect.c) ---- */
/* One parsed OpenAI chat stream chunk. */
typedef struct dl_chunk {
    bool role;                 /* the first chunk (delta.role) */
    const char *text;          /* delta.content, NULL: none */
    size_t n_text;
    const char *reasoning;     /* delta.reasoning_content (a thinking model's block), NULL: none */
    size_t n_reasoning;
    json_t *call;              /* a whole tool call {id,type,function:{name,arguments}} (borrowed) */
    const char *finish;        /* finish_reason, NULL: none */
    json_t *error;             /* {"message",...} of an error event (borrowed) */
} dl_chunk;
void dl_chunk_parse(json_t *chunk, dl_chunk *c);
void dl_sse(dl_write w, void *wctx, const char *event, json_t *data); /* steals data */
void dl_ndjson(dl_write w, void *wctx, json_t *data);                /* steals data */
void dl_make_id(const dl_server *s, const char *prefix, char *out, size_t cap);
void dl_iso_time(time_t t, char *out, size_t cap);
/* A growable text buffer. */
typedef struct dl_buf { char *p; size_t n, cap; } dl_buf;
void dl_buf_add(dl_buf *b, const char *s, size_t n);
/* Text of a string or of an array of {type,text} parts whose type is in types (comma list; NULL:
 * any with a text). -1 when the value is none of those. */
int dl_text_of(json_t *v, const char *types, dl_buf *out);

/* Responses store (previous_response_id): bounded by count and bytes, oldest out first. */
resp_store *resp_store_new(int max_entries, size_t max_bytes);
void resp_store_free(resp_store *st);
/* A conversation is found only by the owner (API key digest) that stored it. */
void resp_store_put(resp_store *st, const char *owner, const char *id, json_t *messages); /* borrows messages */
json_t *resp_store_get(resp_store *st, const char *owner, const char *id);              /* new reference or NULL */
/* prefix + 32 hex digits from the system's CSPRNG (ids that cannot be guessed from others). */
void dl_random_id(pthread_mutex_t *mu, uint64_t *counter, time_t started, const char *prefix, char *out, size_t cap);

/* A route's hook (the arg of openai_route_count and openai_route_answer, openai.h): the body
 * (NULL for a GET) -> a new JSON value, or NULL with e set. */
typedef struct dl_hook { json_t *(*fn)(const dl_server *s, json_t *body, dl_err *e); } dl_hook;

/* Each API's routes, put in the server's route table (server.c). */
extern const http_route responses_routes[], anthropic_routes[], ollama_routes[];
extern const int responses_n_routes, anthropic_n_routes, ollama_n_routes;
#endif
