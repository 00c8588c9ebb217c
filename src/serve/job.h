/* job.h — the job engine behind every API of `lfm2c serve`: the server's state the handlers read
 * (serve_api), a job (one or more scheduler requests: n choices, several prompts) built from the
 * shared request (job_request.c, job_chat.c: an OpenAI-shaped chat or completion body, which
 * every other API's request is translated into), run on the scheduler, answered whole or
 * streamed (job.c). What a job makes is told to its API as neutral events and a neutral final
 * answer (job_event.h); the API's `dialect` (server_dialect.h) renders them, OpenAI's (openai.c)
 * included. Internal to the server. */
#ifndef LFM2C_JOB_H
#define LFM2C_JOB_H
#include "serve/http.h"
#include "serve/job_event.h"
#include "serve/scheduler.h"
#include "serve/server.h"
#include "serve/server_dialect.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* What the handlers read of the server (http_app of every route). */
typedef struct serve_api {
    lfm2c_model *model;
    sched *sched;
    server_params p; /* limits, defaults applied */
    int n_ctx, n_vocab;
    char alias[SERVER_MAX_MODEL_NAME + 1];
    char model_file[256]; /* also accepted as a model id */
    pthread_mutex_t mu;   /* ids, tool ids, jobs */
    uint64_t id_counter;
    time_t started;
    int jobs;              /* generation requests in flight (shutdown waits for them) */
    http_gate aux;         /* tokenizer requests at once */
    resp_store *responses; /* Responses API conversations (previous_response_id) */
} serve_api;

/* p: limits with their defaults applied. model and s may be NULL until serve_api_attach. */
int serve_api_init(serve_api *api, lfm2c_model *model, sched *s, const server_params *p);
void serve_api_attach(serve_api *api, lfm2c_model *model, sched *s, int n_ctx);
int serve_api_jobs(serve_api *api);
void serve_api_free(serve_api *api);

typedef struct gen_opts {
    bool stream, include_usage, logprobs, echo;
    int top_logprobs;
    int n;                /* choices per prompt (1..SERVER_MAX_N) */
    long long max_tokens; /* -1: up to the context */
} gen_opts;

typedef struct job {
    serve_api *api;
    sched_req **rs; /* the choices; with several prompts, prompt p's k-th is p*n + k */
    int n_rs;
    gen_opts o;
    bool chat, tools;         /* tools: parse tool calls out of the output */
    grammar *g_json, *g_tool; /* owned, outlive the requests (freed with the job) */
    char **echo;              /* completions with echo: each choice's prompt text */
    size_t *n_echo;
    bool *echo_bos;      /* the choice's prompt token 0 is a BOS not in its echo text */
    pthread_cond_t cond; /* the scheduler signals it when any choice changes */
    char id[48];
    char owner[DL_OWNER_LEN]; /* digest of the request's API key (the Responses store's owner) */
    time_t created;
    const dialect *dl;    /* the API that renders the answer (OpenAI's included) */
    void *dls;            /* its state (owned) */
    const char *model_id; /* the answers' "model": the alias, or the LoRA adapter's name */
    http_req *q;          /* while the job is built (NULL after): a costly compile stops once its client is gone */
} job;

job *job_new(serve_api *api);
void job_free(job *j);

/* ---- the shared request (job_request.c, job_chat.c) ---- */
/* body (a chat body when chat, else a completion body) -> j's requests; -1 with e set. */
int job_build(serve_api *api, json_t *body, job *j, bool chat, http_err *e);
/* The chat body alone, without the "model" check (job_chat.c; count_tokens). */
int job_build_chat(serve_api *api, json_t *body, job *j, http_err *e);
/* vLLM's structured outputs (structured_outputs, guided_json / _regex / _choice) -> j->g_json
 * (job_structured.c); 0 when the body has none; -1 with e set. */
int req_structured(job *j, json_t *body, http_err *e);
/* The fields chat and completion bodies share -> r and o (chat: logprobs as chat has them). */
int req_common(serve_api *api, json_t *body, sched_req *r, gen_opts *o, bool chat, http_err *e);
/* Limits r's generation to the context; refuses a prompt that does not fit (param: its field). */
int req_fit_context(serve_api *api, sched_req *r, gen_opts *o, const char *param, http_err *e);
/* The job's one request per prompt -> o.n choices of each (choice k with seed + k). */
int job_expand(serve_api *api, job *j, http_err *e);
/* The "model" of a body (absent: the served one) -> j->model_id, and the LoRA adapter it names
 * on j's first request; 404 model_not_found for another model unless --any-model. */
int job_check_model(serve_api *api, json_t *body, job *j, http_err *e);
/* The prompts of a body's field `param` (a string, an array of token ids, or an array of
 * either) as a JSON array of them; NULL with e set. */
json_t *req_prompt_list(json_t *p, const char *param, http_err *e);
/* One of those prompts (the which-th) as token ids (a string with BOS where the model adds
 * one); a token array longer than the context is refused. */
int req_prompt_tokens(serve_api *api, json_t *p, const char *param, size_t which, int32_t **out, int *n_out,
                      http_err *e);
/* The "model" a body names, if a string: at most SERVER_MAX_MODEL_NAME bytes, no control
 * characters (every route checks it before the name is used or echoed); -1 with e set (400). */
int req_model_name(json_t *body, http_err *e);
/* A model id names this server's model (alias, file name with or without .gguf). */
bool api_model_matches(const serve_api *api, const char *id);
/* The LoRA adapter a model id names (NAME or ALIAS:NAME); -1: none. */
int api_lora_index(const serve_api *api, const char *id);
void api_make_id(serve_api *api, const char *prefix, char *out, size_t cap);
/* Optional boolean / integer (in [lo, hi]) field of a body; -1 with e set on a wrong type. */
int req_bool(json_t *body, const char *key, bool *out, http_err *e);
int req_int(json_t *body, const char *key, long long lo, long long hi, long long *out, http_err *e);
/* Appends s[0..n) to a NUL-terminated buffer; on failure frees it and sets *buf NULL. */
void req_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

/* ---- running (job.c) ---- */
/* Runs a chat or completion body for the API dl: dls is its state, which the job owns from
 * here (*dls is cleared once taken); own: a tree of the caller's to free once the job is built. */
int job_handle(serve_api *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls, json_t **own);
/* The server as a dialect sees it. */
dl_server api_view(serve_api *api, const char *owner);

#endif
