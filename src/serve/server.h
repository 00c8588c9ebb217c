/* server.h — the HTTP server (libmicrohttpd, one thread per connection) of the OpenAI, Responses,
 * Anthropic and Ollama APIs over the models it serves (models.h: each loaded model has its own
 * scheduler): /v1/chat/completions, /v1/completions, /v1/models[/{id}], /health, /metrics,
 * /tokenize, /detokenize, the other APIs' routes, Ollama's model management. The library never
 * prints: request log lines go to a callback. Zero in a limit field means its default
 * (SERVER_DEFAULT_*). */
#ifndef LFM2C_SERVER_H
#define LFM2C_SERVER_H
#include "lfm2c.h"
#include "serve/scheduler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*server_log_fn)(void *user, const char *line);

typedef struct server_params {
    const char *host;           /* IPv4 address or "localhost"; default 127.0.0.1 */
    int port;                   /* 0: any free port (see server_port) */
    const char *api_key;        /* NULL: no authentication */
    const char *alias;          /* model id shown to clients */
    const char *chat_template;  /* template source, NULL: the model's */
    int reasoning_format;       /* SERVER_REASONING_*: a thinking block apart from the answer, or not */
    int pooling;                /* LFM2C_POOL_*: one vector of a text for the embedding routes */
    bool limit_reasoning;       /* reasoning_budget applies (else no limit) */
    int reasoning_budget;       /* tokens of thinking before </think> is forced (0: closed at once);
                                   a request may ask for less, never more */
    bool test_script;           /* tests: a request's 'test_script' text is the output (the scheduler's
                                   script, through the constraints' mask) */
    bool metrics;               /* serve GET /metrics */
    size_t max_body;            /* bytes; larger bodies get 413 (also the cap on /detokenize's text) */
    int n_ctx;                  /* context of a slot (the scheduler's n_ctx) */
    const char *model_file;     /* the model's file name: accepted as a model id besides alias */
    const char *cors_origin;    /* NULL: no CORS headers; "*" or a comma-separated list of origins */
    const char *allowed_hosts;  /* without api_key: Host names answered besides localhost, 127.0.0.1,
                                   [::1] and host (--allowed-hosts; http.h) */
    int idle_timeout;           /* s: a connection waiting for headers/body or idle between requests */
    int timeout;                /* s: longest silence while a request is being answered */
    int max_connections;        /* open connections in all */
    int max_connections_per_ip; /* open connections of one client address; 0: no limit */
    int max_pending_per_ip;     /* pending connections (not being answered) of one address; <0: no limit */
    int ready_queue_max;        /* GET /ready is 503 while this many requests wait; 0: never */
    size_t max_tokenize_bytes;  /* /tokenize 'content' */
    int max_detokenize_tokens;  /* /detokenize 'tokens' */
    int max_messages;           /* chat 'messages' per request */
    int max_stop_bytes;         /* bytes of one stop string (at most 4 strings, as OpenAI) */
    bool any_model;             /* a 'model' no model has runs on the default one (else 404 model_not_found) */
    const char *cache_dir;      /* the Hugging Face cache POST /api/pull fills (NULL: the default) */
    bool no_pull;               /* POST /api/pull is refused (--no-pull) */
    bool offline;               /* POST /api/pull looks only in the cache (--offline) */
    uint64_t pull_max_bytes;    /* bytes one POST /api/pull may download (0: no bound; --pull-max-bytes) */
    uint64_t pull_min_free;     /* bytes a pull leaves free on the cache's disk (0: no bound; --pull-min-free) */
    bool allow_image_urls;      /* http(s) image URLs are fetched (--allow-image-urls; else 400) */
    int image_url_timeout;      /* s: one image URL's whole fetch (0: 20) */
    const char *allow_private_image_urls; /* the non-public addresses image URLs may reach: NULL
                                             none, "all", or networks (--allow-private-image-urls) */
    /* A model's LoRA adapters (a request picks one by 'model': NAME or MODEL:NAME): the
     * registry sets them in each loaded model's copy of the parameters (none here). */
    int n_lora;
    const char *const *lora_names;
    lfm2c_lora *const *loras;
    const float *lora_scales;
    size_t max_request_memory; /* bytes all requests in progress may hold (bodies, parse trees,
                                   waiting jobs, unwritten answers); more get 503 */
    server_log_fn log;
    void *log_user;
} server_params;

#define SERVER_DEFAULT_MAX_BODY (8u << 20)
#define SERVER_DEFAULT_REQUEST_MEMORY ((size_t)512 << 20)
#define SERVER_DEFAULT_IDLE_TIMEOUT 15
#define SERVER_DEFAULT_TIMEOUT 600
#define SERVER_DEFAULT_MAX_CONNECTIONS 1024
#define SERVER_DEFAULT_MAX_PENDING_PER_IP 64
#define SERVER_DEFAULT_MAX_TOKENIZE_BYTES (1u << 20)
#define SERVER_DEFAULT_MAX_DETOKENIZE_TOKENS (1 << 18)
#define SERVER_DEFAULT_MAX_MESSAGES 4096
#define SERVER_DEFAULT_MAX_STOP_BYTES 1024
#define SERVER_MAX_MODEL_NAME 256         /* bytes of the 'model' a request names (longer: 400), of --alias */
#define SERVER_MAX_N 16                   /* 'n': choices per prompt */
#define SERVER_MAX_IMAGES 16              /* images per chat request */
#define SERVER_MAX_AUDIO 16               /* audio clips per chat request */
#define SERVER_MAX_CHOICES 64             /* choices per request (prompts x n) */
#define SERVER_PROMPT_BYTES_PER_TOKEN 128 /* a rendered prompt longer than n_ctx x this cannot fit */
#define SERVER_RESPONSES_KEPT \
    1024 /* Responses API conversations and output items kept (previous_response_id, item_reference) */
#define SERVER_RESPONSES_BYTES (64u << 20) /* ... and their bytes in all (oldest dropped first) */
#define SERVER_AUX_PARALLEL 2              /* tokenizer requests, and bodies over 1 MiB, handled at once */
#define SERVER_MAX_PULLS 4                 /* POST /api/pull in progress at once (one downloads at a time) */

enum { SERVER_REASONING_SPLIT, SERVER_REASONING_NONE };

typedef struct server server;

enum { SERVER_LOADING, SERVER_READY, SERVER_DRAINING };

typedef struct serve_shared serve_shared;
typedef struct serve_models serve_models;

/* Listens at once, LOADING (GET /health answers, GET /ready and every other route are 503)
 * until server_ready. */
server *server_start(const server_params *p, lfm2c_error *err);
/* What the handlers share (the models registry is made over it, models_new). */
serve_shared *server_shared(server *srv);
/* The models it serves (before server_ready; the caller frees them after server_stop). */
void server_set_models(server *srv, serve_models *models);
/* READY: every route answers. */
void server_ready(server *srv);
/* DRAINING: GET /ready and new generation requests get 503 (a balancer sends them elsewhere);
 * requests already admitted run on. */
void server_drain(server *srv);
int server_port(const server *srv);
/* Stops accepting, gives answers of requests the scheduler has ended ~1.5 s to reach their clients,
 * then cuts every connection still open and joins the connection threads. */
void server_stop(server *srv);
#endif
