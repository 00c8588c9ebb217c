/* server.h — the OpenAI-compatible HTTP API (libmicrohttpd, one thread per connection) on top
 * of the scheduler: /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics,
 * /tokenize, /detokenize. The library never prints: request log lines go to a callback. */
#ifndef LFM2C_SERVER_H
#define LFM2C_SERVER_H
#include "lfm2c.h"
#include "scheduler.h"

#include <stdbool.h>
#include <stddef.h>

typedef void (*server_log_fn)(void *user, const char *line);

typedef struct server_params {
    const char *host;           /* IPv4 address or "localhost"; default 127.0.0.1 */
    int port;                   /* 0: any free port (see server_port) */
    const char *api_key;        /* NULL: no authentication */
    const char *alias;          /* model id shown to clients */
    const char *chat_template;  /* template source, NULL: the model's */
    bool metrics;               /* serve GET /metrics */
    size_t max_body;            /* bytes; larger bodies get 413 */
    int n_ctx;                  /* context of a slot (the scheduler's n_ctx) */
    server_log_fn log;
    void *log_user;
} server_params;

typedef struct server server;

server *server_start(lfm2c_model *model, sched *s, const server_params *p, lfm2c_error *err);
int server_port(const server *srv);
void server_stop(server *srv); /* closes the listener, ends open streams */
#endif
