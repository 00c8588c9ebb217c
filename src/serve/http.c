/* http.c — the HTTP transport of `lfm2c serve` (http.h): connections, limits, bodies, the API
 * key, CORS, the route table, senders and streams. No API lives here: handlers come from the
 * route table the server hands in (server.c, api_openai.c and the dialects).
 *
 * Threading: libmicrohttpd runs one thread per connection (poll(), not select(), so descriptors
 * above 1024 work), so a handler may block: a plain request waits for its completion, a stream's
 * content reader waits for the next tokens. We keep that model rather than an event loop with
 * suspended connections because the blocking waits (scheduler, template render, tokenizer) stay
 * simple and cancellable; its cost, a thread per open socket, is bounded by strict limits:
 *  - every request is judged from its headers alone (OPTIONS preflight, public routes, without an
 *    API key the Host and the Origin (web pages: DNS rebinding, cross-site posts), the API key,
 *    route, method, a body's Content-Type (JSON only), Content-Length against --max-body) before
 *    any body byte is stored; a refused request is answered at once and its connection closed, so
 *    an unauthenticated upload never buffers;
 *  - a connection that is not being answered (waiting for headers, a body, or idle between
 *    keep-alive requests) is "pending"; pending connections have a short idle timeout
 *    (--idle-timeout), at most --max-pending-per-ip of them per client address, and when a new
 *    connection would pass a limit (per address, or --max-connections in all) the OLDEST pending
 *    connection is closed to make room (slowloris: stalled sockets cannot starve real clients);
 *  - a connection being answered gets the long --timeout (a stream waiting for tokens is never cut
 *    by the idle timeout); --max-connections-per-ip optionally caps all connections of an address;
 *  - bodies over 1 MiB are parsed a few at a time (handlers gate their own costly work the same
 *    way, http_gate);
 *  - memory: every request is charged what it holds against one budget (--max-request-memory):
 *    its body as it arrives, then the parse tree (estimated from the body before parsing: a
 *    jansson tree costs up to ~75x its text), its images as they are decoded and encoded (each
 *    stage charged before it allocates, given back as it frees: http_charge / http_release),
 *    then what its job keeps while it waits (the handler frees the tree, http_hold), then its
 *    answer until the answer is written. A request that
 *    would pass the budget is refused 503 + Retry-After (413 when it could never fit), and to
 *    make room the answers nobody reads are cut first, oldest first; a written answer the client
 *    does not read for --idle-timeout is cut too.
 * Handlers poll the socket while they wait (http_client_gone, http_fd_gone), so a client whose
 * connection breaks cancels its request (and frees its slot and queue place); a half-closed
 * socket (the client shut down its sending side after the request) still gets its answer. A
 * closed socket looks like a half-closed one until we write to it, so when the client's side
 * ends we write once at once: a plain request an interim "102 Processing" (HTTP/1.1 clients skip
 * 1xx answers), a stream a line its format ignores (api_openai.c). A client that closed both
 * directions answers that write with a reset, seen at the next poll (~100 ms). */
#include "serve/http.h"
#include "serve/multipart.h"
#include "base/sha256.h"
#include "chat/grammar.h"
#include "base/clock.h"
#include "base/os.h"
#include "base/os_net.h"

#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BIG_BODY (1u << 20)   /* bodies above this parse a few at a time */
#define GATE_WAIT_MS 10000    /* longest wait for a place before 503 */
#define TRIM_BYTES (4u << 20) /* a freed parse tree this big is trimmed from the heap at once */

struct http {
    http_params p;
    struct MHD_Daemon *mhd;
    MHD_socket lfd;       /* the listening socket once quiesced */
    pthread_mutex_t mu;   /* HTTP counters */
    uint64_t by_class[6]; /* 1xx..5xx */
    /* open sockets (see the scope comment), guarded by net_mu */
    pthread_mutex_t net_mu;
    struct sock *socks;
    int n_open, n_pending, n_evicting;
    uint64_t n_evicted, n_refused;
    bool stopping;
    http_gate big;
    size_t mem_used;   /* bytes charged by requests (guarded by mu) */
    _Atomic int state; /* HTTP_LOADING / _READY / _DRAINING */
};

/* One open TCP connection (the socket context): found by the accept policy to make room. */
typedef struct sock {
    struct sock *prev, *next;
    int fd;
    uint32_t ip;         /* IPv4 address (network order), 0 for others */
    double since;        /* when it last became pending */
    bool pending;        /* nobody is being answered on it */
    bool evicted;        /* shut down by us, not closed yet */
    size_t answer;       /* bytes of a queued answer not yet written, 0: none */
    double answer_since; /* when it was queued */
    http *h;
} sock;

/* Per request: the body being uploaded, the route, and what the log line reports. */
struct http_req {
    http *h;
    struct MHD_Connection *c;
    const http_route *route; /* decided from the headers */
    const char *rest;        /* while a GET route runs: what its '*' matched */
    http_err_shape shape;    /* the API whose error shape this path gets (NULL: default) */
    char *body;
    size_t n_body, cap_body;
    bool too_big;
    bool big;         /* holds a place of h->big */
    bool http11;      /* HTTP/1.1 (may get an interim 1xx answer) */
    bool probed;      /* the client's side ended and the interim answer was written */
    bool over_memory; /* the body passed the memory budget while arriving */
    bool body_held;   /* the body's buffer is part of mem (until http_hold sets mem anew) */
    json_t *json;     /* the parsed body while the handler runs (until http_hold) */
    size_t mem;       /* bytes charged to the budget */
    size_t answer;    /* bytes of the answer queued by the handler */
    http_log log;
};

/* ---- errors ------------------------------------------------------------------------------------ */

/* Makes s valid UTF-8 in place: a byte that does not start or continue a well-formed sequence
 * (a cut one at the end too: printf's precision cuts bytes) becomes '?'. */
static void utf8_clean(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n = c < 0x80                          ? 0
                : (c & 0xE0) == 0xC0 && c >= 0xC2 ? 1
                : (c & 0xF0) == 0xE0              ? 2
                : (c & 0xF8) == 0xF0 && c <= 0xF4 ? 3
                                                  : -1;
        bool ok = n >= 0;
        for (int k = 1; ok && k <= n; k++) ok = (p[k] & 0xC0) == 0x80;
        if (ok && n == 2) { /* no overlong forms, no surrogates */
            unsigned v = ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
            ok = v >= 0x800 && (v < 0xD800 || v > 0xDFFF);
        }
        if (ok && n == 3) {
            unsigned v = ((c & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12);
            ok = v >= 0x10000 && v <= 0x10FFFF;
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n + 1;
    }
}

/* The answer when an answer cannot be encoded. */
#define ENCODE_FAILED \
    "{\"error\":{\"message\":\"the answer could not be " \
    "encoded\",\"type\":\"server_error\",\"param\":null,\"code\":null}}"

int http_set_err(http_err *e, int status, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", status >= 500 ? "server_error" : "invalid_request_error");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    utf8_clean(e->code); /* what the client sent may be quoted, cut or not valid UTF-8 */
    utf8_clean(e->param);
    utf8_clean(e->msg);
    return -1;
}

json_t *http_err_json(const http_err *e) {
    return json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", e->msg, "type", e->type, "param",
                     e->param[0] ? json_string(e->param) : json_null(), "code",
                     e->code[0] ? json_string(e->code) : json_null());
}

/* ---- request accessors ------------------------------------------------------------------------- */

void *http_app(const http_req *q) { return q->h->p.app; }
http *http_of(const http_req *q) { return q->h; }
const void *http_arg(const http_req *q) { return q->route ? q->route->arg : NULL; }
const char *http_rest(const http_req *q) { return q->rest ? q->rest : ""; }
const char *http_method(const http_req *q) { return q->log.method; }
const char *http_query(http_req *q, const char *name) {
    return MHD_lookup_connection_value(q->c, MHD_GET_ARGUMENT_KIND, name);
}
http_log *http_req_log(http_req *q) { return &q->log; }
http_err_shape http_shape(const http_req *q) { return q->shape; }

const char *http_header(http_req *q, const char *name) {
    return MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, name);
}

int http_req_fd(http_req *q) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(q->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

/* True when the connection is broken: reset by the peer, or our own writes failed. An orderly
 * end of the client's sending side (a 0-byte read, POLLRDHUP) is NOT a disconnect: a client may
 * half-close after its request and still read the answer. A client that closed both directions
 * is seen at the next write (its stack answers with a reset). */
bool http_fd_gone(int fd) { return os_sock_broken(fd); }

/* True when the peer shut down its sending side (a half-close, or a close seen as one). */
bool http_fd_eof(int fd) { return os_sock_peer_closed(fd); }

bool http_client_gone(http_req *q) {
    int fd = http_req_fd(q);
    if (http_fd_gone(fd)) return true;
    if (q->probed || !http_fd_eof(fd)) return false;
    q->probed = true;
    if (!q->http11) return false; /* no interim answers in HTTP/1.0: wait for the write */
    static const char interim[] = "HTTP/1.1 102 Processing\r\n\r\n";
    ssize_t n = os_sock_send_nowait(fd, interim, sizeof interim - 1);
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* The watcher of a handler busy without polling: checks the client every 20 ms until stopped. */
struct http_watch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    http_req *q;
    volatile bool *gone;
};

static void *watch_main(void *arg) {
    http_watch *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop && !*w->gone) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 20 * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &t);
        if (!w->stop && http_client_gone(w->q)) *w->gone = true;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

http_watch *http_watch_start(http_req *q, volatile bool *gone) {
    http_watch *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->q = q;
    w->gone = gone;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, watch_main, w)) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void http_watch_stop(http_watch *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static sock *conn_sock(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* ---- the memory budget --------------------------------------------------------------------------- */

/* Sets the request's charge to n bytes, whatever the budget says (memory already held). */
static void mem_set(http_req *q, size_t n) {
    http *h = q->h;
    pthread_mutex_lock(&h->mu);
    h->mem_used = h->mem_used - q->mem + n;
    q->mem = n;
    pthread_mutex_unlock(&h->mu);
}

static bool mem_try(http_req *q, size_t n) {
    http *h = q->h;
    pthread_mutex_lock(&h->mu);
    bool ok = h->mem_used + n <= h->p.max_memory;
    if (ok) {
        h->mem_used += n;
        q->mem += n;
    }
    pthread_mutex_unlock(&h->mu);
    return ok;
}

/* Cuts the connection whose answer has waited longest for its reader (queued over 100 ms ago);
 * false when there is none. */
static bool evict_unread(http *h) {
    double now = lfm2c_now_s();
    sock *best = NULL;
    pthread_mutex_lock(&h->net_mu);
    for (sock *x = h->socks; x; x = x->next)
        if (x->answer && !x->evicted && now - x->answer_since > 0.1 && (!best || x->answer_since < best->answer_since))
            best = x;
    if (best) {
        best->evicted = true;
        h->n_evicting++;
        h->n_evicted++;
        os_sock_shutdown(best->fd); /* its write fails: the answer is freed */
    }
    pthread_mutex_unlock(&h->net_mu);
    return best != NULL;
}

/* Charges n more bytes to the request; when the budget is spent, cuts unread answers and waits
 * up to a second for room. False: no room (nothing charged). */
static bool mem_charge(http_req *q, size_t n) {
    for (int i = 0; i < 100; i++) {
        if (mem_try(q, n)) return true;
        if (i == 0 || i % 10 == 0) evict_unread(q->h);
        os_sleep_s(0.010);
    }
    return false;
}

/* An upper estimate of the bytes jansson takes to hold the parsed text (measured: an object
 * ~224 B, an array ~142 B, a value or member ~50-130 B, a string its bytes + ~90 B). */
static size_t json_cost(const char *b, size_t n) {
    size_t cost = n + 256;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '{' || c == '[') cost += 256;
        else if (c == ',' || c == ':') cost += 112;
    }
    return cost;
}

/* Frees the parse tree; a big one's pages go back to the system at once (freed in a connection
 * thread's own malloc arena they would stay in the RSS, one tree's worth per arena). */
static void tree_free(http_req *q) {
    if (!q->json) return;
    json_decref(q->json);
    q->json = NULL;
#ifdef __GLIBC__
    if (q->mem >= TRIM_BYTES) malloc_trim(0);
#endif
}

/* Charges `bytes` more, within the budget: false with e set (413 / 503) when they do not fit. */
static bool mem_more(http_req *q, size_t bytes, http_err *e) {
    size_t max = q->h->p.max_memory;
    if (bytes > max || q->mem > max - bytes) {
        http_set_err(e, 413, "request_too_large", NULL,
                     "the request would hold about %zu MiB (its answer included; limit %zu MiB, --max-request-memory)",
                     (q->mem + bytes) >> 20, max >> 20);
        return false;
    }
    if (mem_charge(q, bytes)) return true;
    http_set_err(e, 503, "server_overloaded", NULL,
                 "the requests in progress hold the server's request memory (--max-request-memory); retry later");
    return false;
}

bool http_hold(http_req *q, size_t bytes, http_err *e) {
    tree_free(q);
    mem_set(q, 0);
    q->body_held = false;
    return mem_more(q, bytes, e);
}

bool http_charge(http_req *q, size_t bytes, http_err *e) { return mem_more(q, bytes, e); }

void http_release(http_req *q, size_t bytes) { mem_set(q, q->mem - (bytes < q->mem ? bytes : q->mem)); }

size_t http_memory_budget(const http_req *q) { return q->h->p.max_memory; }

size_t http_charged(const http_req *q) { return q->mem; }


/* ---- senders ----------------------------------------------------------------------------------- */

/* The origin to allow for this request under --cors-origin ("*" or a comma-separated list). */
static const char *cors_allow(const http *h, struct MHD_Connection *c) {
    const char *allowed = h->p.cors_origin;
    if (!allowed || !*allowed) return NULL;
    if (!strcmp(allowed, "*")) return "*";
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin || !*origin) return NULL;
    size_t n = strlen(origin);
    for (const char *p = allowed; *p;) {
        size_t m = strcspn(p, ",");
        const char *q = p;
        size_t len = m;
        while (len && *q == ' ') {
            q++;
            len--;
        }
        while (len && q[len - 1] == ' ') len--;
        if (len == n && !strncmp(q, origin, n)) return origin;
        p += m + (p[m] == ',');
    }
    return NULL;
}

/* Headers every response carries: CORS when --cors-origin is set. */
static void add_common_headers(const http *h, struct MHD_Connection *c, struct MHD_Response *r) {
    const char *origin = cors_allow(h, c);
    if (!origin) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    if (strcmp(origin, "*")) MHD_add_response_header(r, "Vary", "Origin");
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    const char *want = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    MHD_add_response_header(r, "Access-Control-Allow-Headers",
                            want && strlen(want) < 2048 ? want : "Authorization, Content-Type, X-Api-Key");
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "Retry-After");
}

static int queue(struct MHD_Connection *c, int status, struct MHD_Response *r) {
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret == MHD_YES ? 0 : -1;
}

int http_send_text(http_req *q, int status, const char *ctype, char *body, size_t len, const char *retry_after) {
    q->log.status = status;
    q->answer += len;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return -1;
    }
    add_common_headers(q->h, q->c, r);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    return queue(q->c, status, r);
}

int http_send_json(http_req *q, int status, json_t *j) {
    q->log.status = status;
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) { /* an answer that could not be built (bad UTF-8 in it, no memory): still an answer */
        if (!(s = strdup(ENCODE_FAILED))) return -1;
        q->log.status = status = 500;
    }
    return http_send_text(q, status, "application/json", s, strlen(s), NULL);
}

int http_send_err(http_req *q, const http_err *e) {
    q->log.status = e->status;
    json_t *j = q->shape ? q->shape(e->status, e->code, e->param, e->msg) : http_err_json(e);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s && !(s = strdup(ENCODE_FAILED))) return -1;
    return http_send_text(q, e->status, "application/json", s, strlen(s), e->status == 503 ? "1" : NULL);
}

int http_send_busy(http_req *q, const char *what) {
    http_err e;
    http_set_err(&e, 503, "server_overloaded", NULL, "too many %s in progress; retry later", what);
    return http_send_err(q, &e);
}

int http_send_static(http_req *q, const char *ctype, const void *body, size_t len, const char *const *headers) {
    q->log.status = 200;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r) return -1;
    MHD_add_response_header(r, "Content-Type", ctype);
    for (int i = 0; headers && headers[i]; i += 2) MHD_add_response_header(r, headers[i], headers[i + 1]);
    return queue(q->c, 200, r);
}

int http_drop(http_req *q) {
    q->log.status = 499;
    return -1;
}

static int send_preflight(http_req *q) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return -1;
    add_common_headers(q->h, q->c, r);
    MHD_add_response_header(r, "Allow", "GET, POST, DELETE, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    q->log.status = 204;
    return queue(q->c, 204, r);
}

/* 503 + Retry-After while loading or draining: a balancer retries it on another replica. */
static int send_not_ready(http_req *q, int state) {
    http_err e;
    http_set_err(&e, 503, state == HTTP_LOADING ? "model_loading" : "server_draining", NULL,
                 state == HTTP_LOADING ? "the model is loading; retry shortly"
                                       : "the server is shutting down; send the request to another replica");
    return http_send_err(q, &e);
}

/* ---- the request log ---------------------------------------------------------------------------- */

static void log_request(http *h, const http_log *k) {
    pthread_mutex_lock(&h->mu);
    int cls = k->status / 100;
    if (cls >= 1 && cls <= 5) h->by_class[cls]++;
    pthread_mutex_unlock(&h->mu);
    if (!h->p.log) return;
    char line[400];
    snprintf(line, sizeof line, "%s %s %s %d %.3fs prompt=%d cached=%d completion=%d%s", k->addr, k->method, k->url,
             k->status, lfm2c_now_s() - k->t0, k->prompt_tokens, k->cached_tokens, k->completion_tokens,
             k->streaming ? " stream" : "");
    h->p.log(h->p.log_user, line);
}

/* ---- streams ------------------------------------------------------------------------------------ */

typedef struct stream {
    http *h;
    http_stream_read read;
    http_stream_done done;
    void *ctx;
    http_log log; /* the request's log line (the connection may be gone first) */
} stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    ssize_t n = st->read(st->ctx, buf, max, &st->log);
    if (n == HTTP_STREAM_END) return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    st->done(st->ctx, &st->log);
    log_request(st->h, &st->log);
    free(st);
}

int http_send_stream(http_req *q, const char *ctype, http_stream_read read, http_stream_done done, void *ctx) {
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        done(ctx, &q->log);
        return -1;
    }
    q->log.status = 200;
    q->log.streaming = true;
    *st = (stream){.h = q->h, .read = read, .done = done, .ctx = ctx, .log = q->log};
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return -1;
    }
    add_common_headers(q->h, q->c, resp);
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return queue(q->c, 200, resp);
}

/* ---- bounded concurrent work ------------------------------------------------------------------- */

void http_gate_init(http_gate *g, int max) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->busy = 0;
    g->max = max > 0 ? max : 1;
}

void http_gate_destroy(http_gate *g) {
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

/* Takes a place (waits up to GATE_WAIT_MS); false when none came free. */
bool http_gate_enter(http_gate *g) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += GATE_WAIT_MS / 1000;
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (g->busy >= g->max && rc == 0) rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
    bool ok = g->busy < g->max;
    if (ok) g->busy++;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

void http_gate_leave(http_gate *g) {
    pthread_mutex_lock(&g->mu);
    g->busy--;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---- connections: accounting, eviction, timeouts ------------------------------------------------ */

/* Closes the oldest pending connection (of ip when by_ip); false when there is none (net_mu held). */
static bool evict_oldest(http *h, uint32_t ip, bool by_ip) {
    sock *best = NULL;
    for (sock *x = h->socks; x; x = x->next)
        if (x->pending && !x->evicted && (!by_ip || x->ip == ip) && (!best || x->since < best->since)) best = x;
    if (!best) return false;
    best->evicted = true;
    h->n_evicting++;
    h->n_evicted++;
    os_sock_shutdown(best->fd); /* its thread sees the end and closes it */
    return true;
}

static uint32_t addr_ip(const struct sockaddr *a, socklen_t len) {
    if (a && a->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr;
    return 0;
}

/* Called before a new connection is accepted: makes room or refuses it. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len) {
    http *h = cls;
    uint32_t ip = addr_ip(addr, len);
    bool ok = true;
    pthread_mutex_lock(&h->net_mu);
    if (h->stopping) {
        ok = false;
    } else {
        int ip_pending = 0, ip_all = 0;
        for (sock *x = h->socks; x; x = x->next)
            if (!x->evicted && x->ip == ip) {
                ip_all++;
                ip_pending += x->pending;
            }
        if (h->p.max_pending_per_ip > 0 && ip_pending >= h->p.max_pending_per_ip && evict_oldest(h, ip, true)) ip_all--;
        if (h->n_open - h->n_evicting >= h->p.max_connections && !evict_oldest(h, 0, false)) ok = false;
        if (ok && h->p.max_connections_per_ip > 0 && ip_all >= h->p.max_connections_per_ip &&
            !evict_oldest(h, ip, true))
            ok = false;
    }
    if (!ok) h->n_refused++;
    pthread_mutex_unlock(&h->net_mu);
    return ok ? MHD_YES : MHD_NO;
}

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe) {
    http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        sock *x = calloc(1, sizeof *x);
        if (!x) return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        x->fd = ci ? (int)ci->connect_fd : -1;
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        x->ip = ci ? addr_ip(ci->client_addr, sizeof(struct sockaddr_in)) : 0;
        x->since = lfm2c_now_s();
        x->pending = true;
        x->h = h;
        pthread_mutex_lock(&h->net_mu);
        x->next = h->socks;
        if (h->socks) h->socks->prev = x;
        h->socks = x;
        h->n_open++;
        h->n_pending++;
        pthread_mutex_unlock(&h->net_mu);
        *socket_context = x;
        return;
    }
    sock *x = *socket_context;
    if (!x) return;
    pthread_mutex_lock(&h->net_mu);
    if (x->prev) x->prev->next = x->next;
    else h->socks = x->next;
    if (x->next) x->next->prev = x->prev;
    h->n_open--;
    h->n_pending -= x->pending;
    h->n_evicting -= x->evicted;
    pthread_mutex_unlock(&h->net_mu);
    *socket_context = NULL;
    free(x);
}

/* Marks the connection pending (nobody answered: short idle timeout, may be evicted) or busy. */
static void conn_pending(http *h, struct MHD_Connection *c, bool pending) {
    sock *x = conn_sock(c);
    if (x) {
        pthread_mutex_lock(&h->net_mu);
        h->n_pending += (int)pending - (int)x->pending;
        x->pending = pending;
        x->since = lfm2c_now_s();
        pthread_mutex_unlock(&h->net_mu);
    }
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)(pending ? h->p.idle_timeout : h->p.timeout));
}

/* 503 + Retry-After: the requests in progress hold the memory budget. */
static int send_no_memory(http_req *q) {
    http_err e;
    http_set_err(&e, 503, "server_overloaded", NULL,
                 "the requests in progress hold the server's request memory (--max-request-memory); retry later");
    return http_send_err(q, &e);
}

/* A plain answer of n bytes is queued: its connection may be cut for memory from now on, and
 * a client that reads none of it for the idle timeout is cut. */
static void answer_queued(http *h, struct MHD_Connection *c, size_t n) {
    sock *x = conn_sock(c);
    if (x) {
        pthread_mutex_lock(&h->net_mu);
        x->answer = n;
        x->answer_since = lfm2c_now_s();
        pthread_mutex_unlock(&h->net_mu);
    }
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)h->p.idle_timeout);
}

/* The key a request sent: 'Authorization: Bearer KEY' or 'x-api-key: KEY' (NULL: none). */
static const char *sent_key(struct MHD_Connection *c) {
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (v && !strncasecmp(v, "Bearer ", 7)) return v + 7;
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
}

void http_key_digest(http_req *q, char *out, size_t cap) {
    const char *k = sent_key(q->c);
    char hex[65] = "";
    if (k) sha256_hex(k, strlen(k), hex);
    snprintf(out, cap, "%.32s", hex);
}

/* The API key from 'Authorization: Bearer KEY' or 'x-api-key: KEY', compared in constant time. */
static bool key_ok(http *h, struct MHD_Connection *c) {
    if (!h->p.api_key) return true;
    const char *v = sent_key(c);
    if (!v) return false;
    size_t a = strlen(v), b = strlen(h->p.api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)v[i] ^ (unsigned char)h->p.api_key[i % (b ? b : 1)];
    return diff == 0;
}

/* ---- who may send what: Host, Origin, the body's type ------------------------------------------- */

/* The name a Host header value gives (lower case, without its port, an IPv6 literal without
 * its brackets, one trailing dot dropped) into out: false when the value is malformed. */
static bool host_name(const char *v, char *out, size_t cap) {
    const char *name = v, *end;
    if (*v == '[') {
        name = v + 1;
        if (!(end = strchr(name, ']'))) return false;
    } else end = v + strcspn(v, ":");
    size_t n = (size_t)(end - name);
    const char *port = end + (*v == '[');
    if (*port == ':') {
        size_t d = strspn(port + 1, "0123456789");
        if (d < 1 || d > 5 || port[1 + d]) return false;
    } else if (*port) return false;
    if (n && name[n - 1] == '.' && *v != '[') n--;
    if (!n || n >= cap) return false;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)name[i]);
    out[n] = 0;
    return true;
}

/* Is name one of this machine's IPv4 addresses (a server bound to 0.0.0.0 answers on each)? */
static bool own_address(const char *name) {
    struct in_addr a;
    return inet_pton(AF_INET, name, &a) == 1 && os_own_ipv4(a.s_addr);
}

/* Does the comma-separated list (--allowed-hosts) hold name: "*" any, ".example.com" that
 * domain's names, else the name itself ([::1] and ::1 alike)? */
static bool list_holds(const char *list, const char *name) {
    const size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t m = strcspn(p, ","), k = m;
        const char *e = p;
        while (k && isspace((unsigned char)*e)) e++, k--;
        while (k && isspace((unsigned char)e[k - 1])) k--;
        if (k > 1 && *e == '[' && e[k - 1] == ']') e++, k -= 2;
        if ((k == 1 && *e == '*') || (k == n && !strncasecmp(e, name, n)) ||
            (k > 1 && *e == '.' && n > k && !strncasecmp(name + n - k, e, k)) ||
            (k > 1 && *e == '.' && n == k - 1 && !strncasecmp(name, e + 1, n)))
            return true;
        p += m + (p[m] == ',');
    }
    return false;
}

/* Without an API key, a request must name this server in its Host header: localhost, 127.0.0.1,
 * [::1], the --host address (one of the machine's own where it is 0.0.0.0) or a name of
 * --allowed-hosts. A web page that rebinds its own name to 127.0.0.1 (DNS rebinding) sends its
 * name here. No Host at all (an HTTP/1.0 client; browsers always send one) passes. */
static bool host_ok(const http *h, struct MHD_Connection *c) {
    if (h->p.api_key) return true;
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    char name[256];
    if (!v) return true;
    if (!host_name(v, name, sizeof name)) return false;
    const char *bound = h->p.host && *h->p.host ? h->p.host : "127.0.0.1";
    if (!strcmp(name, "localhost") || !strcmp(name, "127.0.0.1") || !strcmp(name, "::1") || !strcasecmp(name, bound))
        return true;
    if (list_holds(h->p.allowed_hosts, name)) return true;
    return !strcmp(bound, "0.0.0.0") && own_address(name);
}

/* Without an API key, a request that may change something (any method but GET and HEAD) that a
 * web page sent (it carries Origin) comes from the server's own page (the origin is the Host
 * it names) or from an origin --cors-origin allows; a cross-site form post (text/plain, no
 * preflight) is refused here. */
static bool origin_ok(const http *h, struct MHD_Connection *c, unsigned m) {
    if (h->p.api_key || m == HTTP_GET || m == HTTP_HEAD) return true;
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!o || cors_allow(h, c)) return true;
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    const char *rest = !strncasecmp(o, "http://", 7) ? o + 7 : !strncasecmp(o, "https://", 8) ? o + 8 : NULL;
    return host && rest && !strcasecmp(rest, host);
}

/* A body the routes parse as JSON comes as JSON: 'Content-Type: application/json' (parameters
 * such as charset allowed). The types a page may post without a preflight (text/plain, forms)
 * are refused. */
static bool json_content_type(const char *ct) {
    static const char J[] = "application/json";
    if (!ct) return false;
    while (*ct == ' ' || *ct == '\t') ct++;
    if (strncasecmp(ct, J, sizeof J - 1)) return false;
    ct += sizeof J - 1;
    while (*ct == ' ' || *ct == '\t') ct++;
    return !*ct || *ct == ';';
}

/* The refusal of a multipart route's body type (multipart/form-data with a boundary): false, or
 * true with e set (415 another type, 400 a malformed boundary). */
static bool refused_multipart(struct MHD_Connection *c, http_err *e) {
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    char b[MP_MAX_BOUNDARY + 1], msg[200];
    const int rc = mp_boundary(ct, b, sizeof b, msg, sizeof msg);
    if (!rc) return false;
    if (rc < 0) return http_set_err(e, 400, "invalid_multipart", NULL, "%s", msg), true;
    return http_set_err(e, 415, "unsupported_media_type", NULL,
                        "the body must be a form sent as 'Content-Type: multipart/form-data; boundary=...' (this "
                        "request has %s%.60s%s; curl: -F file=@clip.wav -F model=NAME)",
                        ct ? "'" : "no Content-Type", ct ? ct : "", ct ? "'" : ""),
           true;
}

/* The refusal of a request's sender from the headers (Host, then Origin): false, or true with e
 * set (403). */
static bool refused_sender(const http *h, struct MHD_Connection *c, unsigned m, http_err *e) {
    if (!host_ok(h, c))
        return http_set_err(e, 403, "host_not_allowed", NULL,
                            "the Host '%.100s' is not a name of this server: without an API key it answers only "
                            "localhost, 127.0.0.1, [::1] and its --host address (serve --allowed-hosts NAME,... "
                            "adds names)",
                            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host")),
               true;
    if (!origin_ok(h, c, m))
        return http_set_err(e, 403, "origin_not_allowed", NULL,
                            "a request from the web page of '%.100s' is refused: without an API key this server "
                            "takes requests that change something only from its own page and the origins "
                            "--cors-origin lists",
                            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin")),
               true;
    return false;
}

/* The refusal of a body that is not said to be JSON: false, or true with e set (415). */
static bool refused_type(struct MHD_Connection *c, http_err *e) {
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (json_content_type(ct)) return false;
    return http_set_err(e, 415, "unsupported_media_type", NULL,
                        "the body must be JSON sent with 'Content-Type: application/json' (this request has "
                        "%s%.60s%s; curl: -H 'Content-Type: application/json')",
                        ct ? "'" : "no Content-Type", ct ? ct : "", ct ? "'" : ""),
           true;
}

/* ---- the route table ------------------------------------------------------------------------------ */

static unsigned method_bit(const char *method) {
    return !strcmp(method, "GET")      ? HTTP_GET
           : !strcmp(method, "HEAD")   ? HTTP_HEAD
           : !strcmp(method, "POST")   ? HTTP_POST
           : !strcmp(method, "DELETE") ? HTTP_DELETE
                                       : 0;
}

/* Does path match the route's? *rest: what a trailing '*' matched. */
static bool path_match(const char *pattern, const char *path, const char **rest) {
    size_t n = strlen(pattern);
    *rest = NULL;
    if (n && pattern[n - 1] == '*') {
        if (strncmp(pattern, path, n - 1) || !path[n - 1]) return false;
        *rest = path + n - 1;
        return true;
    }
    return !strcmp(pattern, path);
}

/* The route for (method, path): methods 0 matches any method. */
static const http_route *route_find(const http *h, unsigned methods, const char *path, const char **rest) {
    for (int i = 0; i < h->p.n_routes; i++) {
        const http_route *r = &h->p.routes[i];
        if ((!methods || (r->methods & methods)) && path_match(r->path, path, rest)) return r;
    }
    return NULL;
}

/* Runs a GET/HEAD route from the headers. */
static enum MHD_Result run_now(http_req *q, const http_route *r, const char *rest) {
    q->route = r;
    q->rest = rest;
    int rc = r->fn(q, NULL);
    q->rest = NULL;
    return rc == 0 ? MHD_YES : MHD_NO;
}

/* The first call, with the headers only: answers whatever needs no body (and refuses what must
 * not upload one), else records the route and lets the body come. */
static enum MHD_Result on_headers(http *h, struct MHD_Connection *c, http_req *q, const char *url, const char *method) {
    http_err e;
    unsigned m = method_bit(method);
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding") &&
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length")) {
        /* two framings: a proxy in front may read the other one (request smuggling) */
        conn_pending(h, c, false);
        http_set_err(&e, 400, "invalid_request", NULL,
                     "a request may not have both Content-Length and Transfer-Encoding");
        return http_send_err(q, &e) == 0 ? MHD_YES : MHD_NO;
    }
    if (!strcmp(method, "OPTIONS")) {
        conn_pending(h, c, false);
        return send_preflight(q) == 0 ? MHD_YES : MHD_NO;
    }
    conn_pending(h, c, false);                                        /* answered now, or the body is on its way */
    q->shape = h->p.error_for_path ? h->p.error_for_path(url) : NULL; /* errors from here take that API's shape */
    int state = atomic_load(&h->state);
    const char *rest = NULL;
    const http_route *r = m ? route_find(h, m, url, &rest) : NULL;
    if (r && (r->flags & HTTP_PUBLIC)) return run_now(q, r, rest);
    if (refused_sender(h, c, m, &e)) return http_send_err(q, &e) == 0 ? MHD_YES : MHD_NO;
    /* not ready: GETs are answered 503 here; a POST's body is read first (on_request answers),
     * since closing on an unread body resets the connection before a proxy reads the 503 */
    if (state == HTTP_LOADING && m != HTTP_POST && !(r && (r->flags & HTTP_BODY)))
        return send_not_ready(q, state) == 0 ? MHD_YES : MHD_NO;
    if (!key_ok(h, c)) {
        http_set_err(&e, 401, "invalid_api_key", NULL,
                     "Incorrect or missing API key (send 'Authorization: Bearer KEY' or 'x-api-key: KEY')");
        return http_send_err(q, &e) == 0 ? MHD_YES : MHD_NO;
    }
    if (r && !(r->methods & HTTP_POST) && !(r->flags & HTTP_BODY)) return run_now(q, r, rest);
    if (!r) {
        const http_route *other = route_find(h, 0, url, &rest);
        if (other)
            http_set_err(&e, 405, "method_not_allowed", NULL, "%.300s %s", url,
                         other->methods & HTTP_POST     ? "needs POST"
                         : other->methods & HTTP_DELETE ? "takes GET or DELETE"
                                                        : "takes GET");
        else http_set_err(&e, 404, "not_found", NULL, "no route %.11s %.300s", method, url);
        return http_send_err(q, &e) == 0 ? MHD_YES : MHD_NO;
    }
    if ((r->flags & HTTP_MULTIPART) ? refused_multipart(c, &e) : refused_type(c, &e))
        return http_send_err(q, &e) == 0 ? MHD_YES : MHD_NO;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || n > h->p.max_body) {
            http_set_err(&e, 413, "request_too_large", NULL, "the request body is larger than %zu bytes (--max-body)",
                         h->p.max_body);
            return http_send_err(q, &e) == 0 ? MHD_YES : MHD_NO;
        }
    }
    q->route = r;
    conn_pending(h, c, true); /* until the body is complete */
    return MHD_YES;
}

static enum MHD_Result on_body(http *h, http_req *q, const char *upload, size_t n) {
    if (q->too_big || q->over_memory) return MHD_YES; /* past a limit: read and dropped */
    if (q->n_body + n > h->p.max_body) {
        q->too_big = true;
        free(q->body);
        q->body = NULL;
        q->n_body = q->cap_body = 0;
        return MHD_YES;
    }
    if (q->n_body + n + 1 > q->cap_body) {
        size_t cap = q->cap_body ? q->cap_body : 4096;
        while (cap < q->n_body + n + 1) cap *= 2;
        if (!mem_try(q, cap - q->cap_body)) { /* no waiting here: the upload goes on */
            q->over_memory = true;
            free(q->body);
            q->body = NULL;
            q->n_body = q->cap_body = 0;
            mem_set(q, 0);
            return MHD_YES;
        }
        char *nb = realloc(q->body, cap);
        if (!nb) return MHD_NO;
        q->body = nb;
        q->cap_body = cap;
        q->body_held = true;
    }
    memcpy(q->body + q->n_body, upload, n);
    q->n_body += n;
    return MHD_YES;
}

/* What is held once a handler returned: its answer, until it is written. */
static void handler_done(http *h, struct MHD_Connection *c, http_req *q) {
    mem_set(q, q->answer);
    if (q->answer) answer_queued(h, c, q->answer);
    if (q->big) {
        http_gate_leave(&h->big);
        q->big = false;
    }
}

const uint8_t *http_body(const http_req *q, size_t *n) {
    *n = q->body ? q->n_body : 0;
    return q->body ? (const uint8_t *)q->body : NULL;
}

void http_body_free(http_req *q) {
    if (!q->body) return;
    free(q->body);
    if (q->body_held) http_release(q, q->cap_body);
    q->body_held = false;
    q->body = NULL;
    q->n_body = q->cap_body = 0;
}

/* A multipart route's complete body: its handler reads it as it is (charged as it arrived). */
static int run_multipart(http *h, struct MHD_Connection *c, http_req *q) {
    const int ret = q->route->fn(q, NULL);
    http_body_free(q);
    handler_done(h, c, q);
    return ret;
}

/* The body is complete: parse it and run the route. */
static int on_request(http *h, struct MHD_Connection *c, http_req *q) {
    http_err e;
    conn_pending(h, c, false);
    if (q->too_big) {
        http_set_err(&e, 413, "request_too_large", NULL, "the request body is larger than %zu bytes (--max-body)",
                     h->p.max_body);
        return http_send_err(q, &e);
    }
    int state = atomic_load(&h->state);
    if (state != HTTP_READY) return send_not_ready(q, state);
    if (q->over_memory) return send_no_memory(q);
    if (q->n_body > BIG_BODY) {
        if (!http_gate_enter(&h->big)) return http_send_busy(q, "large requests");
        q->big = true;
    }
    if (q->route->flags & HTTP_MULTIPART) return run_multipart(h, c, q);
    size_t cost = q->body ? json_cost(q->body, q->n_body) : 0;
    if (cost > h->p.max_memory) {
        http_set_err(&e, 413, "request_too_large", NULL,
                     "the request's JSON would take about %zu MiB to hold (limit %zu MiB, --max-request-memory)",
                     cost >> 20, h->p.max_memory >> 20);
        return http_send_err(q, &e);
    }
    if (!mem_charge(q, cost)) return send_no_memory(q);
    json_error_t je;
    json_t *body = q->body ? json_loadb(q->body, q->n_body, 0, &je) : NULL;
    if (!body && q->body && strstr(je.text, "too big integer")) { /* a schema bound like 2^64: read as a real */
        char *w = grammar_json_widen_big_ints(q->body, q->n_body);
        if (w) body = json_loads(w, 0, &je);
        free(w);
    }
    bool had_body = q->body != NULL;
    free(q->body); /* not needed past here */
    q->body = NULL;
    q->n_body = q->cap_body = 0;
    mem_set(q, cost); /* the tree */
    q->json = body;
    int ret;
    if (!body) {
        http_set_err(&e, 400, "invalid_json", NULL, "the body is not valid JSON%s%s", had_body ? ": " : "",
                     had_body ? je.text : "");
        ret = http_send_err(q, &e);
    } else if (!json_is_object(body)) {
        http_set_err(&e, 400, "invalid_type", NULL, "the body must be a JSON object");
        ret = http_send_err(q, &e);
    } else {
        ret = q->route->fn(q, body);
    }
    tree_free(q); /* unless the handler let it go already (http_hold) */
    handler_done(h, c, q);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    http *h = cls;
    http_req *q = *con_cls;
    if (!q) {
        if (!(q = calloc(1, sizeof *q))) return MHD_NO;
        q->h = h;
        q->c = c;
        q->log.t0 = lfm2c_now_s();
        q->http11 = version && !strcmp(version, MHD_HTTP_VERSION_1_1);
        snprintf(q->log.method, sizeof q->log.method, "%s", method);
        snprintf(q->log.url, sizeof q->log.url, "%s", url);
        snprintf(q->log.addr, sizeof q->log.addr, "-");
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, q->log.addr,
                      sizeof q->log.addr);
        *con_cls = q;
        return on_headers(h, c, q, url, method);
    }
    if (q->log.status) {
        *upload_size = 0;
        return MHD_YES;
    } /* answered from the headers */
    if (*upload_size) {
        enum MHD_Result r = on_body(h, q, upload, *upload_size);
        *upload_size = 0;
        return r;
    }
    return on_request(h, c, q) == 0 ? MHD_YES : MHD_NO;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    http *h = cls;
    http_req *q = *con_cls;
    conn_pending(h, c, true); /* idle until the next request (keep-alive) */
    sock *x = conn_sock(c);
    if (x) {
        pthread_mutex_lock(&h->net_mu);
        x->answer = 0;
        pthread_mutex_unlock(&h->net_mu);
    }
    if (!q) return;
    tree_free(q);
    mem_set(q, 0);
    if (!q->log.streaming) { /* streams log when their response ends */
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && q->log.status == 200) q->log.status = 499;
        if (!q->log.status) q->log.status = 499;
        log_request(h, &q->log);
    }
    if (q->big) http_gate_leave(&h->big);
    *con_cls = NULL;
    free(q->body);
    free(q);
}

/* ---- life cycle ------------------------------------------------------------------------------------ */

static void http_free(http *h) {
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->net_mu);
    http_gate_destroy(&h->big);
    free(h);
}

http *http_start(const http_params *p, int state, lfm2c_error *err) {
    http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->p = *p;
    if (!h->p.max_memory) h->p.max_memory = (size_t)512 << 20;
#ifdef __GLIBC__
    /* a fixed mmap threshold: glibc's moving one (raised by every big block freed, e.g. a body)
     * put later bodies and trees in the connection threads' arenas, where freed pages stayed in
     * the RSS several trees deep (measured: +300 MB where the budget held 64 MiB) */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    h->lfd = MHD_INVALID_SOCKET;
    atomic_init(&h->state, state);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->net_mu, NULL);
    http_gate_init(&h->big, p->big_parallel);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)p->port);
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        if (err) {
            err->code = LFM2C_EINVAL;
            snprintf(err->msg, sizeof err->msg, "--host '%s' is not an IPv4 address", host);
        }
        http_free(h);
        return NULL;
    }
    /* MHD's own limit leaves room for connections we are closing (see accept_policy) */
    unsigned mhd_limit = (unsigned)p->max_connections + 64;
    h->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC, (uint16_t)p->port, accept_policy, h,
        handler, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->idle_timeout,
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)512, MHD_OPTION_END);
    if (!h->mhd) {
        if (err) {
            err->code = LFM2C_EIO;
            snprintf(err->msg, sizeof err->msg, "cannot listen on %s:%d (in use?)", host, p->port);
        }
        http_free(h);
        return NULL;
    }
    return h;
}

void http_set_state(http *h, int state) { atomic_store(&h->state, state); }
int http_state(http *h) { return atomic_load(&h->state); }

int http_port(const http *h) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : 0;
}

void http_get_stats(http *h, http_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&h->mu);
    memcpy(out->by_class, h->by_class, sizeof out->by_class);
    out->memory = h->mem_used;
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_lock(&h->net_mu);
    out->n_open = h->n_open;
    out->n_pending = h->n_pending;
    out->evicted = h->n_evicted;
    out->refused = h->n_refused;
    pthread_mutex_unlock(&h->net_mu);
}

void http_quiesce(http *h) {
    pthread_mutex_lock(&h->net_mu);
    h->stopping = true; /* refuse new connections */
    pthread_mutex_unlock(&h->net_mu);
    h->lfd = MHD_quiesce_daemon(h->mhd);
}

void http_stop(http *h) {
    if (!h) return;
    if (!h->stopping) http_quiesce(h);
    /* whatever is still open is cut: blocked reads and writes of its thread end at once */
    pthread_mutex_lock(&h->net_mu);
    for (sock *x = h->socks; x; x = x->next)
        if (x->fd >= 0) os_sock_shutdown(x->fd);
    pthread_mutex_unlock(&h->net_mu);
    MHD_stop_daemon(h->mhd);
    if (h->lfd != MHD_INVALID_SOCKET) os_sock_close((int)h->lfd);
    http_free(h);
}
