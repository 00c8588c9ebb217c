/* api_dialect.h — the seam between the job engine (job.h) and the APIs the server speaks on
 * one port: OpenAI's own (api_openai.c), the OpenAI Responses API (api_responses.c), Anthropic
 * Messages (api_anthropic.c) and Ollama (api_ollama.c). On the way in a dialect is a thin
 * translation: its request becomes an OpenAI-shaped chat (or completion) body that the engine
 * validates and runs as usual (tools, constrained decoding, stops, sampling, limits and the
 * special-token guard are shared). On the way out every dialect, OpenAI's included, renders the
 * engine's neutral stream events and neutral final answer (job_event.h) in its own shape, and
 * its errors. Each dialect file registers its routes (a table of http_route, http.h) in the
 * server's one route table, with the handlers declared here. Internal to the server; shared
 * helpers are in api_dialect.c. */
#ifndef LFM2C_API_DIALECT_H
#define LFM2C_API_DIALECT_H
#include "lfm2c.h"
#include "serve/http.h"
#include "serve/job_event.h"

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
    int n_lora; /* LoRA adapters served besides the base, by name */
    const char *const *lora_names;
    int n_ctx;
    time_t started;
    resp_store *responses;  /* recent Responses conversations (previous_response_id) */
    pthread_mutex_t *id_mu; /* guards *id_counter */
    uint64_t *id_counter;
    const char *owner; /* who asks: a digest of the API key the request sent ("" none) */
    int max_messages;  /* --max-messages: what a request's input may expand to (0: unbounded) */
    http_req *q;       /* the request being read (NULL outside one): what it expands to is charged */
    double t_load;     /* seconds the request waited for its model to load */
} dl_server;

#define DL_OWNER_LEN 33 /* an owner digest: 32 hex digits + NUL */

/* A dialect's error before anything runs (status and message; the shape is the dialect's). */
/* status 413 / 503: past the request's memory budget (dl_charge).
 * status 200 with answer: the dialect answers at once (nothing to generate; answer is new). */
typedef struct dl_err {
    int status;
    char param[64], msg[400];
    json_t *answer;
} dl_err;
int dl_fail(dl_err *e, int status, const char *param, const char *fmt, ...);
/* Charges `bytes` more to the request's memory budget (s->q; none: nothing to charge): 0, or -1
 * after dl_fail (413: past the whole budget; 503: others hold it). */
int dl_charge(const dl_server *s, size_t bytes, dl_err *e);
/* An upper estimate of the bytes jansson holds for v (what dl_charge is told for a copy). */
size_t dl_json_bytes(json_t *v);

typedef void (*dl_write)(void *ctx, const char *s, size_t n);

typedef struct dialect {
    const char *name;
    const char *stream_type; /* Content-Type of a stream */
    /* The request -> a new OpenAI chat body (*legacy: a /v1/completions body) and the dialect's
     * per-request state (freed with free_state). NULL with e set on bad input. NULL hook: the
     * body is the shared request already (OpenAI's own routes). */
    json_t *(*request)(const dl_server *s, json_t *body, void **state, bool *legacy, dl_err *e);
    /* A finished job's answer -> the dialect's answer (new). */
    json_t *(*final)(const dl_server *s, void *state, const job_final *f, const job_run *run);
    /* One stream event -> the dialect's bytes (an END event ends the stream). */
    void (*event)(const dl_server *s, void *state, const job_event *ev, dl_write w, void *wctx);
    /* An error body in the dialect's shape (code/type: OpenAI's, may be ignored); NULL: OpenAI's. */
    json_t *(*error)(int status, const char *code, const char *param, const char *msg);
    void (*free_state)(void *state);
    /* The API's own words for a model name no model has, with one %s for the name (NULL:
     * OpenAI's); the 404 adds, in every API, the server's models and how to answer to such a
     * name (--alias, --accept-any-model: clients with a fixed name, coding agents). */
    const char *model_404;
    const char *model_list; /* the route that lists the models, named in that 404 (NULL: /v1/models) */
    /* How long the request asks its model to stay loaded once idle (Ollama's keep_alive): 0 with
     * *seconds set (NAN: not said; < 0: forever), or -1 with e set. NULL: never said. */
    int (*keep_alive)(json_t *body, double *seconds, dl_err *e);
    /* The answer to a request that asks for no output (an unload, with a keep-alive of 0),
     * new; NULL when the request asks for output. NULL hook: no such requests. */
    json_t *(*unload_answer)(json_t *body);
} dialect;

extern const dialect dialect_openai, dialect_responses, dialect_anthropic, dialect_ollama, dialect_ollama_generate;

/* The dialect whose error shape a URL gets (NULL: OpenAI's). */
const dialect *dialect_for_url(const char *url);

/* ---- shared helpers (api_dialect.c) ---- */
/* s[0..n) is text a JSON string can hold (non-empty, valid UTF-8): what an API sends as a delta. */
bool dl_text_ok(const char *s, size_t n);
/* A token's text for logprobs (always valid UTF-8: else "bytes:" and \xNN per byte) in text, its
 * bytes in b; returns the number of bytes. */
int dl_token_text(lfm2c_model *m, int32_t tok, char *b, int cap, char *text, size_t text_cap);
/* Logprob entries as OpenAI's chat shape, [{token, logprob, bytes, top_logprobs}] (new). */
json_t *dl_logprobs_json(lfm2c_model *m, const sched_logprob *lp, int n);
void dl_sse(dl_write w, void *wctx, const char *event, json_t *data); /* steals data; event NULL: data alone */
void dl_ndjson(dl_write w, void *wctx, json_t *data);                 /* steals data */
void dl_make_id(const dl_server *s, const char *prefix, char *out, size_t cap);
/* s (valid UTF-8) into out, cut to cap - 1 bytes at most, never inside a character. */
void dl_copy_text(char *out, size_t cap, const char *s);
void dl_iso_time(time_t t, char *out, size_t cap);
/* A duration as Ollama's keep_alive and Go write them ("5m", "1h30m", "300ms", "-1m") or a bare
 * number of seconds ("120", "-1"): false when s is none of those; a negative one is -1 (forever). */
bool dl_parse_duration(const char *s, double *seconds);
/* A growable text buffer. */
typedef struct dl_buf {
    char *p;
    size_t n, cap;
} dl_buf;
void dl_buf_add(dl_buf *b, const char *s, size_t n);
/* Text of a string or of an array of {type,text} parts whose type is in types (comma list; NULL:
 * any with a text). -1 when the value is none of those. */
int dl_text_of(json_t *v, const char *types, dl_buf *out);

/* Responses store (previous_response_id, item_reference, GET / DELETE /v1/responses/{id}):
 * bounded by count and bytes, oldest out first. */
resp_store *resp_store_new(int max_entries, size_t max_bytes);
void resp_store_free(resp_store *st);
/* An entry is found only by the owner (API key digest) that stored it. */
void resp_store_put(resp_store *st, const char *owner, const char *id, json_t *messages); /* borrows messages */
/* A response: its conversation in chat form (messages, what resp_store_get gives) and extra
 * (what GET /v1/responses/{id} and its input_items answer from); both borrowed. */
void resp_store_put_response(resp_store *st, const char *owner, const char *id, json_t *messages, json_t *extra);
json_t *resp_store_get(resp_store *st, const char *owner, const char *id);       /* new reference or NULL */
json_t *resp_store_get_extra(resp_store *st, const char *owner, const char *id); /* new reference or NULL */
bool resp_store_del(resp_store *st, const char *owner, const char *id);          /* false: none of owner's */
/* What an item_reference resolves to: a copy of a stored output item, or, for a stored response
 * (*answer set), a copy of its answer alone (the last message of its conversation); NULL: none. */
json_t *resp_store_ref(resp_store *st, const char *owner, const char *id, bool *answer);
/* prefix + 32 hex digits from the system's CSPRNG (ids that cannot be guessed from others). */
void dl_random_id(pthread_mutex_t *mu, uint64_t *counter, time_t started, const char *prefix, char *out, size_t cap);

/* A route's hook (the arg of api_route_count and api_route_answer): the body (NULL for a GET)
 * -> a new JSON value, or NULL with e set (api_route_count: s has the model the body names;
 * api_route_answer: none). A hook with 'route' instead reads the request itself
 * (http_rest, http_method, http_query): api_route_answer calls that one. */
typedef struct dl_hook {
    json_t *(*fn)(const dl_server *s, json_t *body, dl_err *e);
    json_t *(*route)(const dl_server *s, http_req *q, dl_err *e);
    const struct dialect *dl; /* api_route_count: whose wording an unknown model's 404 takes */
} dl_hook;

/* Handlers of the translated APIs' routes (job.c):
 * - api_route_dialect: arg is the dialect; its request becomes a chat (or completion) job;
 * - api_route_count: arg is a dl_hook turning the body into a chat body; answers
 *   {"input_tokens": N}, the tokens of the prompt it renders;
 * - api_route_answer: arg is a dl_hook answering from the server's state (nothing runs). */
int api_route_dialect(http_req *q, json_t *body);
int api_route_count(http_req *q, json_t *body);
int api_route_answer(http_req *q, json_t *body);

/* Each API's routes, put in the server's route table (server.c). */
extern const http_route responses_routes[], anthropic_routes[], ollama_routes[];
extern const int responses_n_routes, anthropic_n_routes, ollama_n_routes;
#endif
