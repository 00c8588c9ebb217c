/* http.h — the HTTP transport of `lfm2c serve`, apart from any API: libmicrohttpd with one thread
 * per connection, the connection limits and slowloris protection, body reading, the API key,
 * CORS, the request log, the readiness state (loading / ready / draining) and a route table.
 *
 * A route is {methods, path, handler, flags, arg}; the server hands the transport one table
 * (its lifecycle routes, the OpenAI routes of api_openai.c and the dialects' routes) and a request
 * is dispatched by method and path. A GET/HEAD/DELETE route is answered from the headers; a POST
 * route's body (and a DELETE's, with HTTP_BODY) is read (bounded by max_body) and parsed as a
 * JSON object first: it must come as 'Content-Type: application/json' (else 415); an
 * HTTP_MULTIPART route's comes as multipart/form-data and is handed over unparsed. Without an
 * API key every route but the HTTP_PUBLIC ones answers only a Host naming this server (403
 * otherwise: DNS rebinding) and, for methods other than GET and HEAD, an Origin of its own or
 * one --cors-origin allows (403: a cross-site post). Handlers answer
 * with http_send_*; the status they send is what the log line reports. */
#ifndef LFM2C_HTTP_H
#define LFM2C_HTTP_H
#include "lfm2c.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct http http;
typedef struct http_req http_req;

/* An error answer: status, OpenAI-style type ("invalid_request_error" below 500, else
 * "server_error"), code and param (empty: null), message. */
typedef struct http_err {
    int status;
    char type[40], code[40], param[64], msg[400];
} http_err;
int http_set_err(http_err *e, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6))); /* returns -1 */
/* The default error body: {"error":{"message","type","param","code"}} (OpenAI's shape). */
json_t *http_err_json(const http_err *e);
/* Another API's error body (api_dialect.h), new reference. */
typedef json_t *(*http_err_shape)(int status, const char *code, const char *param, const char *msg);

enum { HTTP_GET = 1, HTTP_HEAD = 2, HTTP_POST = 4, HTTP_DELETE = 8 };
enum {
    HTTP_PUBLIC = 1,   /* route flag: no API key, answered while loading or draining too */
    HTTP_BODY = 2,     /* route flag: a DELETE whose JSON body is read, as a POST's */
    HTTP_MULTIPART = 4 /* route flag: the body is multipart/form-data (a valid boundary, else 415 /
                          400), read whole within max_body and left unparsed: the handler gets
                          body NULL and reads http_body (multipart.h cuts it) */
};
enum { HTTP_LOADING, HTTP_READY, HTTP_DRAINING };

/* Answers the request (http_send_*, or http_send_stream). body: the JSON object of a POST
 * route, NULL for GET/HEAD. Returns what the http_send_* call returned (0, or -1: the
 * connection is closed without an answer). */
typedef int (*http_handler)(http_req *q, json_t *body);
/* The raw body of an HTTP_MULTIPART route's request while its handler runs (charged to the
 * request's memory until http_body_free or the handler's return): NULL when there is none. */
const uint8_t *http_body(const http_req *q, size_t *n);
/* Frees that body now and gives its charge back (what was cut from it must not be used after). */
void http_body_free(http_req *q);

typedef struct http_route {
    unsigned methods; /* HTTP_GET | HTTP_HEAD | HTTP_POST | HTTP_DELETE */
    const char *path; /* exact; a trailing '*' stands for one or more further bytes */
    http_handler fn;
    unsigned flags;  /* HTTP_PUBLIC, HTTP_BODY */
    const void *arg; /* the handler's own (a dialect, a hook) */
} http_route;

typedef struct http_params {
    const char *host;          /* IPv4 address or "localhost"; default 127.0.0.1 */
    int port;                  /* 0: any free port */
    const char *api_key;       /* NULL: no authentication */
    const char *cors_origin;   /* NULL: no CORS headers; "*" or a comma-separated list */
    const char *allowed_hosts; /* without api_key: Host names answered besides localhost, 127.0.0.1,
                                  [::1] and host (comma-separated; ".example.com": its names; "*": any) */
    size_t max_body;           /* bytes */
    int idle_timeout, timeout; /* s: pending connections / a request being answered */
    int max_connections, max_connections_per_ip, max_pending_per_ip; /* see server.h */
    int big_parallel;                                                /* bodies over 1 MiB parsed at once */
    size_t max_memory; /* bytes all requests in progress may hold (bodies, parse trees,
                                   waiting jobs, unwritten answers); 0: 512 MiB */
    void (*log)(void *user, const char *line);
    void *log_user;
    http_err_shape (*error_for_path)(const char *path); /* error body shape by path (NULL: default) */
    const http_route *routes;                           /* borrowed for the server's life */
    int n_routes;
    void *app; /* what handlers get from http_app */
} http_params;

/* Listens at once in `state` (HTTP_*). */
http *http_start(const http_params *p, int state, lfm2c_error *err);
void http_set_state(http *h, int state);
int http_state(http *h);
int http_port(const http *h);
/* Refuses new connections (requests being answered go on). */
void http_quiesce(http *h);
/* Cuts every connection still open, joins the connection threads, frees h. */
void http_stop(http *h);

typedef struct http_stats {
    uint64_t by_class[6]; /* responses by status class 1xx..5xx */
    int n_open, n_pending;
    uint64_t evicted, refused;
    size_t memory; /* bytes charged by the requests in progress (of max_memory) */
} http_stats;
void http_get_stats(http *h, http_stats *out);

/* ---- one request ---- */

/* What the request's log line reports. */
typedef struct http_log {
    double t0;
    int status;
    bool streaming;
    int prompt_tokens, completion_tokens, cached_tokens;
    char method[12], url[80], addr[48];
} http_log;

void *http_app(const http_req *q);
http *http_of(const http_req *q);
const void *http_arg(const http_req *q);  /* the route's arg */
const char *http_rest(const http_req *q); /* what a trailing '*' of the route matched ("" if none) */
const char *http_method(const http_req *q);
const char *http_query(http_req *q, const char *name);  /* a query-string argument (NULL if absent) */
const char *http_header(http_req *q, const char *name); /* NULL if absent */
http_log *http_req_log(http_req *q);
http_err_shape http_shape(const http_req *q); /* the error shape of this request (NULL: default) */
int http_req_fd(http_req *q);
/* The first cap-1 hex digits of the SHA-256 of the API key the request sent ("" when none): who
 * owns what the request stores. */
void http_key_digest(http_req *q, char *out, size_t cap);
/* True when the connection is broken (reset, or our writes failed); a half-closed one is not. */
bool http_fd_gone(int fd);
/* True when the peer shut down its sending side: half-closed, or closed (not known until we write). */
bool http_fd_eof(int fd);
/* For a handler waiting before its answer: true when the client is gone. The first time the
 * client's side is seen ended, writes an interim "102 Processing" (HTTP/1.1) so that a closed
 * client answers with a reset and is seen gone at a later call; a half-closed one is not gone. */
bool http_client_gone(http_req *q);
/* For a handler busy without polling (compiling a grammar): a thread that sets *gone once
 * http_client_gone(q) says so, checking every 20 ms, until http_watch_stop (which joins it; the
 * handler must not use q meanwhile). NULL when no thread could start (then nothing is watched). */
typedef struct http_watch http_watch;
http_watch *http_watch_start(http_req *q, volatile bool *gone);
void http_watch_stop(http_watch *w); /* NULL: nothing */

/* Senders: set the log status, return 0 or -1. send_text takes body (malloc'd). */
int http_send_text(http_req *q, int status, const char *ctype, char *body, size_t len, const char *retry_after);
int http_send_json(http_req *q, int status, json_t *j); /* steals j */
int http_send_err(http_req *q, const http_err *e);      /* in the request's error shape */
int http_send_busy(http_req *q, const char *what);      /* 503: too many `what` in progress */
/* 200 with a static body and extra headers (name, value pairs, NULL-terminated); no CORS. */
int http_send_static(http_req *q, const char *ctype, const void *body, size_t len, const char *const *headers);
/* For a handler about to wait (a job): frees the parsed body (the `body` it was given is gone
 * after this) and charges the request `bytes` (what it keeps while it waits, its answer
 * included) instead. False with e set (413: more than the whole budget; 503: the budget is held
 * by others, after a short wait) when the charge does not fit: answer e, holding nothing. */
bool http_hold(http_req *q, size_t bytes, http_err *e);
/* Charges `bytes` more (an answer being built), the same way; the charge is reset to the
 * answer's size once it is sent. */
bool http_charge(http_req *q, size_t bytes, http_err *e);
/* Gives back `bytes` of the request's charge (memory it charged and has freed). */
void http_release(http_req *q, size_t bytes);
/* The whole budget (--max-request-memory). */
size_t http_memory_budget(const http_req *q);
/* Bytes charged to this request now. */
size_t http_charged(const http_req *q);
/* Closes the connection without an answer (the client left: 499 in the log). */
int http_drop(http_req *q);

/* A stream: read fills buf with up to max bytes and returns their count (it may block), or
 * HTTP_STREAM_END / HTTP_STREAM_ERROR; log is the stream's log line (token counts may be set).
 * done runs once when the response ends or the client leaves; it frees ctx and may set
 * log->status (the line is written after it). */
enum { HTTP_STREAM_END = -1, HTTP_STREAM_ERROR = -2 };
typedef ssize_t (*http_stream_read)(void *ctx, char *buf, size_t max, http_log *log);
typedef void (*http_stream_done)(void *ctx, http_log *log);
int http_send_stream(http_req *q, const char *ctype, http_stream_read read, http_stream_done done, void *ctx);

/* A bounded number of places for some kind of work; entering waits up to 10 s. */
typedef struct http_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy, max;
} http_gate;
void http_gate_init(http_gate *g, int max);
void http_gate_destroy(http_gate *g);
bool http_gate_enter(http_gate *g); /* false when no place came free */
void http_gate_leave(http_gate *g);
#endif
