/* openai.h — the OpenAI API layer of `lfm2c serve` (openai.c): its routes (/v1/chat/completions,
 * /v1/completions, /v1/models[/{id}], /tokenize, /detokenize) and the route handlers the other
 * APIs' tables use (server_dialect.h): their requests become OpenAI chat bodies run here. The
 * transport (http.h) dispatches; this layer parses requests, runs them on the scheduler and
 * builds the answers and stream events. Internal to the server. */
#ifndef LFM2C_OPENAI_H
#define LFM2C_OPENAI_H
#include "serve/http.h"
#include "serve/scheduler.h"
#include "serve/server.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef struct resp_store resp_store;

/* What the handlers read of the server (http_app of every route). */
typedef struct openai {
    lfm2c_model *model;
    sched *sched;
    server_params p;           /* limits, defaults applied */
    int n_ctx, n_vocab;
    char alias[256];
    char model_file[256];      /* also accepted as a model id */
    pthread_mutex_t mu;        /* ids, tool ids, jobs */
    uint64_t id_counter;
    time_t started;
    int jobs;                  /* generation requests in flight (shutdown waits for them) */
    http_gate aux;             /* tokenizer requests at once */
    resp_store *responses;     /* Responses API conversations (previous_response_id) */
} openai;

/* p: limits with their defaults applied. model and s may be NULL until openai_attach. */
int openai_init(openai *api, lfm2c_model *model, sched *s, const server_params *p);
void openai_attach(openai *api, lfm2c_model *model, sched *s, int n_ctx);
int openai_jobs(openai *api);
void openai_free(openai *api);

extern const http_route openai_routes[];
extern const int openai_n_routes;

/* Handlers for the dialects' routes (server_dialect.h):
 * - openai_route_dialect: arg is the dialect; its request becomes a chat (or completion) run here;
 * - openai_route_count: arg is a dl_hook turning the body into a chat body; answers
 *   {"input_tokens": N}, the tokens of the prompt it renders;
 * - openai_route_answer: arg is a dl_hook answering from the server's state (nothing runs). */
int openai_route_dialect(http_req *q, json_t *body);
int openai_route_count(http_req *q, json_t *body);
int openai_route_answer(http_req *q, json_t *body);
#endif
