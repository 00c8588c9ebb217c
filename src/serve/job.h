/* job.h — the job engine behind every API of `lfm2c serve`: the server's state the handlers read
 * (serve_api), a job (one or more scheduler requests: n choices, several prompts) built from the
 * shared request (job_request.c, job_chat.c: an OpenAI-shaped chat or completion body, which
 * every other API's request is translated into), run on the scheduler, answered whole or
 * streamed (job.c). What a job makes is told to its API as neutral events and a neutral final
 * answer (job_event.h); the API's `dialect` (api_dialect.h) renders them, OpenAI's (api_openai.c)
 * included. Internal to the server. */
#ifndef LFM2C_JOB_H
#define LFM2C_JOB_H
#include "serve/http.h"
#include "serve/job_event.h"
#include "serve/scheduler.h"
#include "serve/server.h"
#include "serve/api_dialect.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

typedef struct serve_models serve_models;
typedef struct serve_entry serve_entry;

/* What every request shares (http_app of every route): limits, ids, the Responses store, the
 * jobs in flight and the models (models.h). */
typedef struct serve_shared {
    server_params p;    /* limits, defaults applied */
    pthread_mutex_t mu; /* ids, tool ids, jobs */
    uint64_t id_counter;
    time_t started;
    int jobs;              /* generation requests in flight (shutdown waits for them) */
    http_gate aux;         /* tokenizer requests at once */
    resp_store *responses; /* Responses API conversations (previous_response_id) */
    serve_models *models;  /* the models served (NULL: none attached yet) */
    /* pulls in progress (POST /api/pull, api_models.c): each one's cancel flag, so that the
     * server's stop ends them; pull_cv is signalled as one ends */
    volatile sig_atomic_t *pulls[SERVER_MAX_PULLS];
    int n_pulls;
    bool stopping;
    pthread_cond_t pull_cv;
} serve_shared;

/* One loaded model as the handlers read it: a request holds it (models_acquire) from its start
 * to its job's end (job_free releases it). */
typedef struct serve_api {
    serve_shared *sh;
    serve_entry *entry; /* its registry entry (NULL: a model served alone, serve_api_init) */
    lfm2c_model *model;
    lfm2c_mmproj *mm;        /* its vision tower (images), or NULL */
    lfm2c_audio_mmproj *amm; /* its audio encoder (LFM2-Audio), or NULL; a model has one mmproj */
    sched *sched;
    server_params p; /* the shared limits, with this model's context and LoRA adapters */
    int n_ctx, n_vocab;
    char alias[SERVER_MAX_MODEL_NAME + 1]; /* its id */
    char model_file[256];                  /* also accepted as a model id */
} serve_api;

/* The shared part: p with its defaults applied; models attached later (serve_shared_attach). */
int serve_shared_init(serve_shared *sh, const server_params *p);
int serve_shared_jobs(serve_shared *sh);
/* Cancels the pulls in progress and waits for them to end (bounded). */
void serve_shared_stop_pulls(serve_shared *sh);
void serve_shared_free(serve_shared *sh);
/* A model's view over sh (the registry fills it as the model loads). */
void serve_api_set(serve_api *api, serve_shared *sh, lfm2c_model *model, sched *s, int n_ctx);
/* One model alone, with a shared part of its own (tests): p's alias, file name and adapters. */
int serve_api_init(serve_api *api, lfm2c_model *model, sched *s, const server_params *p);
void serve_api_free(serve_api *api);

typedef struct gen_opts {
    bool stream, include_usage, logprobs, echo;
    int top_logprobs;
    int n;                /* choices per prompt (1..SERVER_MAX_N) */
    long long max_tokens; /* -1: up to the context */
} gen_opts;

typedef struct job {
    serve_api *api; /* the model it runs on, held until job_free */
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
    const dialect *dl;       /* the API that renders the answer (OpenAI's included) */
    void *dls;               /* its state (owned) */
    const char *model_id;    /* the answers' "model": the alias, or the LoRA adapter's name */
    double t_load;           /* seconds its request waited for the model to load */
    http_req *q;             /* while the job is built (NULL after): a costly compile stops once its client is gone */
    struct job_audio *audio; /* while the job is built: clips its route encoded already (the
                                transcription routes), taken by input_audio parts without data */
} job;

/* A job on api, taking over the caller's hold of it (models_acquire): job_free releases it.
 * NULL (out of memory): the hold is still the caller's. */
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
 * on j's first request (the name already chose j's model, api_hold). */
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
/* The LoRA adapter of api's model a model id names (NAME or MODEL:NAME); -1: none. */
int api_lora_index(const serve_api *api, const char *id);
void api_make_id(serve_api *api, const char *prefix, char *out, size_t cap);
/* Optional boolean / integer (in [lo, hi]) field of a body; -1 with e set on a wrong type. */
int req_bool(json_t *body, const char *key, bool *out, http_err *e);
int req_int(json_t *body, const char *key, long long lo, long long hi, long long *out, http_err *e);
/* Appends s[0..n) to a NUL-terminated buffer; on failure frees it and sets *buf NULL. */
void req_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

/* ---- images in a chat request (job_image.c) ---- */
typedef struct job_images {
    lfm2c_image *img[SERVER_MAX_IMAGES]; /* in the order of the messages' placeholders */
    int n, rows;                         /* rows: theirs in all (at most the context) */
    http_req *q;                         /* the request whose memory budget they are charged to (NULL: none) */
    size_t charged;                      /* what they hold of it (given back by job_images_free) */
} job_images;
/* An OpenAI image_url part (a base64 data URL) encoded with api's mmproj into ji, its bytes and
 * each stage of its decode and encode charged to ji->q's memory budget before they are taken
 * (lfm2c_image_encode_budget), the encoded image's rows while ji holds them: 0, or -1 with e set
 * (400: no mmproj, not an image, over the pixels; 413: over the bytes, or more memory than the
 * whole budget; 503: the budget held by other requests). */
int job_image_part(serve_api *api, json_t *part, job_images *ji, http_err *e);
/* r's tokenized prompt with its placeholders replaced by the images' tokens, r->rows theirs (a
 * copy, charged to ji->q while ji lasts; the job's hold counts it after, job_bytes). */
int job_images_apply(serve_api *api, job_images *ji, sched_req *r, http_err *e);
void job_images_free(job_images *ji);

/* Standard or URL-safe base64 (padding optional, white space skipped) -> malloc'd bytes; NULL on a
 * bad character or no memory. */
uint8_t *job_b64_decode(const char *s, size_t n, size_t *out_n);

/* ---- audio in a chat request (job_audio.c) ---- */
typedef struct job_audio {
    lfm2c_audio *clip[SERVER_MAX_AUDIO]; /* in the order of the messages' markers */
    int n, rows;                         /* rows: theirs in all (at most the context) */
    int taken;                           /* pre: clips input_audio parts without data took */
    bool pre;                            /* the clips came encoded with the request (its route's) */
    double seconds;                      /* their length in all */
    http_req *q;                         /* whose memory budget they are charged to (NULL: none) */
    size_t charged;                      /* what they hold of it (given back by job_audio_free) */
} job_audio;
/* An audio file's bytes d[0..n) (the file charged already, or charge_bytes: charged here while it
 * is decoded) encoded with api's audio mmproj into ja: the header probed first (lfm2c_audio_probe:
 * a file that is not audio, over the limits or past the context left is refused before a sample
 * is decoded), the decode's and encoder's memory charged to ja->q from the probe's figure, then
 * the clip's rows while ja holds them. 0, or -1 with e set (400 not audio / no audio mmproj /
 * context; 413 over the bytes or the whole budget; 503 the budget held by others). param: the
 * request's field named in errors. */
int job_audio_bytes(serve_api *api, const uint8_t *d, size_t n, bool charge_bytes, job_audio *ja, const char *param,
                    http_err *e);
/* An OpenAI input_audio part ({"input_audio": {"data": BASE64 or a data URL, "format": "wav" |
 * "mp3" | ...}}) into ja; with ja->pre, a part without data takes the next clip given. */
int job_audio_part(serve_api *api, json_t *part, job_audio *ja, http_err *e);
/* The rendered prompt (its markers the clips') into r's tokens and rows (lfm2c_prompt_audio; the
 * rows' copy charged while ja lasts). */
int job_audio_tokenize(serve_api *api, job_audio *ja, sched_req *r, const char *prompt, http_err *e);
void job_audio_free(job_audio *ja);
/* The 400 of audio sent to a model without an audio mmproj (its vision tower named if it has one). */
int job_audio_refused(const serve_api *api, const char *param, http_err *e);

/* ---- models (job.c) ---- */
/* The model a request names (NULL: the default; a name no model has: the default with
 * --accept-any-model), loaded and held for the request: NULL with e set (404 in dl's wording,
 * "model_not_found"; 500 its load failed; 503). keep_alive: NAN for the server's default. */
serve_api *api_hold(serve_shared *sh, const char *name, double keep_alive, const dialect *dl, http_err *e);
/* The same, with the seconds the request waited for the model to load in *t_load. */
serve_api *api_hold_timed(serve_shared *sh, const char *name, double keep_alive, const dialect *dl, double *t_load,
                          http_err *e);
/* The 404 of a model name no model has, worded as dl's API words it (NULL: OpenAI's). */
void api_model_404(serve_shared *sh, const dialect *dl, const char *name, http_err *e);

/* ---- running (job.c) ---- */
/* Runs a chat or completion body for the API dl on api (held: the job takes the hold): dls is
 * its state, which the job owns from here (*dls is cleared once taken); own: a tree of the
 * caller's to free once the job is built. */
int job_handle(serve_api *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls, json_t **own);
/* The same, t_load: the seconds the request waited for its model to load (Ollama's load_duration). */
int job_handle_timed(serve_api *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls, json_t **own,
                     double t_load);
/* The same with clips the route encoded (pre: taken by the body's input_audio parts without data;
 * freed here). A final answer that is a JSON string is sent as text/plain (a transcript's text,
 * srt, vtt). */
int job_handle_audio(serve_api *api, http_req *q, json_t *body, const dialect *dl, void **dls, json_t **own,
                     double t_load, job_audio *pre);
/* The server as a dialect sees it, with api's model (NULL: none). */
dl_server api_view(serve_api *api, const char *owner);
dl_server shared_view(serve_shared *sh, const char *owner);

#endif
