/* server.c — OpenAI-compatible HTTP API over the scheduler.
 *
 * Threading: libmicrohttpd runs one thread per connection (poll(), not select(), so descriptors
 * above 1024 work), so a handler may block: a plain request waits for its completion, a stream's
 * content reader waits for the next tokens. We keep that model rather than an event loop with
 * suspended connections because the blocking waits (scheduler, template render, tokenizer) stay
 * simple and cancellable; its cost, a thread per open socket, is bounded by strict limits:
 *  - every request is judged from its headers alone (OPTIONS preflight, /health, API key, route,
 *    method, Content-Length against --max-body) before any body byte is stored; a refused request
 *    is answered at once and its connection closed, so an unauthenticated upload never buffers;
 *  - a connection that is not being answered (waiting for headers, a body, or idle between
 *    keep-alive requests) is "pending"; pending connections have a short idle timeout
 *    (--idle-timeout), at most --max-pending-per-ip of them per client address, and when a new
 *    connection would pass a limit (per address, or --max-connections in all) the OLDEST pending
 *    connection is closed to make room (slowloris: stalled sockets cannot starve real clients);
 *  - a connection being answered gets the long --timeout (a stream waiting for tokens is never cut
 *    by the idle timeout); --max-connections-per-ip optionally caps all connections of an address;
 *  - /tokenize, /detokenize and bodies over 1 MiB run a few at a time, with caps on their input
 *    and output sizes.
 * Handlers poll the socket while they wait, so a client whose connection breaks cancels its
 * request (and frees its slot); a half-closed socket (the client shut down its sending side after
 * the request) still gets its answer. A closed socket looks like a half-closed one until we write
 * to it: a stream notices at its next token, a plain request when its answer is written. JSON in and out goes through jansson; every field
 * is type-checked and a bad request gets a 4xx in OpenAI's error shape. */
#include "serve/server.h"
#include "serve/server_dialect.h"
#include "chat/toolcall.h"
#include "text/unicode.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct server {
    lfm2c_model *model;
    sched *sched;
    server_params p;
    struct MHD_Daemon *mhd;
    int n_ctx, n_vocab;
    char alias[256];
    pthread_mutex_t mu;        /* ids and HTTP counters */
    uint64_t id_counter, tool_ids;
    uint64_t http_by_class[6]; /* 1xx..5xx */
    time_t started;
    int jobs;                  /* generation requests in flight (shutdown waits for them) */
    char model_file[256];      /* also accepted as a model id */
    /* transport: open sockets (see the scope comment), guarded by net_mu */
    pthread_mutex_t net_mu;
    struct sock *socks;
    int n_open, n_pending, n_evicting;
    uint64_t n_evicted, n_refused;
    bool stopping;
    struct gate { pthread_mutex_t mu; pthread_cond_t cv; int busy, max; } aux, big;
    _Atomic int state;         /* SERVER_LOADING / _READY / _DRAINING (server.h) */
    resp_store *responses;     /* Responses API conversations (previous_response_id) */
};

/* One open TCP connection (the socket context): found by the accept policy to make room. */
typedef struct sock {
    struct sock *prev, *next;
    int fd;
    uint32_t ip;               /* IPv4 address (network order), 0 for others */
    double since;              /* when it last became pending */
    bool pending;              /* nobody is being answered on it */
    bool evicted;              /* shut down by us, not closed yet */
    const dialect *dl;         /* the API dialect of the request being answered (error shape) */
    server *srv;
} sock;

/* Per request: the body being uploaded, and what the log line reports. */
typedef struct conn {
    char *body;
    size_t n_body, cap_body;
    bool too_big;
    double t0;
    int status;
    bool streaming;
    int prompt_tokens, completion_tokens, cached_tokens;
    char method[12], url[80], addr[48];
    int route;                 /* ROUTE_* decided from the headers */
    bool big;                  /* holds a place of srv->big */
    const dialect *dl;         /* another API spoken on this route (server_dialect.h), NULL: OpenAI */
    void *dls;                 /* its per-request state, until a job takes it */
} conn;

/* ---- small helpers --------------------------------------------------------------------------- */

typedef struct http_err { int status; char type[40], code[40], param[64], msg[400]; } http_err;

static int set_err(http_err *e, int status, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", status >= 500 ? "server_error" : "invalid_request_error");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static json_t *err_json(const http_err *e) {
    return json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", e->msg, "type", e->type, "param",
                     e->param[0] ? json_string(e->param) : json_null(), "code",
                     e->code[0] ? json_string(e->code) : json_null());
}

static void make_id(server *srv, const char *prefix, char *out, size_t cap) {
    pthread_mutex_lock(&srv->mu);
    uint64_t x = ++srv->id_counter * 0x9E3779B97F4A7C15ull ^ (uint64_t)srv->started * 0xBF58476D1CE4E5B9ull;
    pthread_mutex_unlock(&srv->mu);
    x ^= x >> 31;
    snprintf(out, cap, "%s%016llx", prefix, (unsigned long long)x);
}

/* A model id names this server's model: its alias, or its file name with or without .gguf. */
static bool server_model_matches(const server *srv, const char *id) {
    if (!strcmp(id, srv->alias)) return true;
    size_t n = strlen(srv->model_file), k = strlen(id);
    if (!n) return false;
    if (!strcmp(id, srv->model_file)) return true;
    return n > 5 && !strcasecmp(srv->model_file + n - 5, ".gguf") && k == n - 5 && !strncmp(id, srv->model_file, k);
}

static sock *conn_sock(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The origin to allow for this request under --cors-origin ("*" or a comma-separated list). */
static const char *cors_allow(const server *srv, struct MHD_Connection *c) {
    const char *allowed = srv->p.cors_origin;
    if (!allowed || !*allowed) return NULL;
    if (!strcmp(allowed, "*")) return "*";
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin || !*origin) return NULL;
    size_t n = strlen(origin);
    for (const char *p = allowed; *p;) {
        size_t m = strcspn(p, ",");
        const char *q = p;
        size_t len = m;
        while (len && *q == ' ') { q++; len--; }
        while (len && q[len - 1] == ' ') len--;
        if (len == n && !strncmp(q, origin, n)) return origin;
        p += m + (p[m] == ',');
    }
    return NULL;
}

/* Headers every response carries: CORS when --cors-origin is set. */
static void add_common_headers(struct MHD_Connection *c, struct MHD_Response *r) {
    sock *sk = conn_sock(c);
    const server *srv = sk ? sk->srv : NULL;
    const char *origin = srv ? cors_allow(srv, c) : NULL;
    if (!origin) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    if (strcmp(origin, "*")) MHD_add_response_header(r, "Vary", "Origin");
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const char *want = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    MHD_add_response_header(r, "Access-Control-Allow-Headers",
                            want && strlen(want) < 2048 ? want : "Authorization, Content-Type, X-Api-Key");
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "Retry-After");
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *ctype, char *body,
                                 size_t len, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return MHD_NO; }
    add_common_headers(c, r);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return MHD_NO;
    return send_text(c, status, "application/json", s, strlen(s), NULL);
}

/* The error body in the shape of the request's API dialect (OpenAI's by default). */
static json_t *dl_err_json(const dialect *dl, const http_err *e) {
    return dl && dl->error ? dl->error(e->status, e->code, e->param, e->msg) : err_json(e);
}

static enum MHD_Result send_err(struct MHD_Connection *c, const http_err *e) {
    sock *sk = conn_sock(c);
    json_t *j = dl_err_json(sk ? sk->dl : NULL, e);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return MHD_NO;
    return send_text(c, e->status, "application/json", s, strlen(s), e->status == 503 ? "1" : NULL);
}

/* True when the connection is broken: reset by the peer, or our own writes failed. An orderly
 * end of the client's sending side (a 0-byte read, POLLRDHUP) is NOT a disconnect: a client may
 * half-close after its request and still read the answer. A client that closed both directions
 * is seen at the next write (its stack answers with a reset). */
static bool peer_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd pf = {fd, 0, 0};
    if (poll(&pf, 1, 0) <= 0) return false;
    return (pf.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---- request fields ---------------------------------------------------------------------------- */

/* Optional number field in [lo, hi]; returns -1 with the error set on a wrong type/range. */
static int get_num(json_t *body, const char *key, double lo, double hi, double *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return set_err(e, 400, "invalid_type", key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return set_err(e, 400, "invalid_value", key, "'%s' must be between %g and %g", key, lo, hi);
    *out = x;
    return 0;
}

static int get_int(json_t *body, const char *key, long long lo, long long hi, long long *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return set_err(e, 400, "invalid_type", key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return set_err(e, 400, "invalid_value", key, "'%s' must be between %lld and %lld", key, lo, hi);
    *out = x;
    return 0;
}

static int get_bool(json_t *body, const char *key, bool *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return set_err(e, 400, "invalid_type", key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

typedef struct gen_opts {
    bool stream, include_usage, logprobs, echo;
    int top_logprobs;
    int n;                     /* choices per prompt (1..SERVER_MAX_N) */
    long long max_tokens;      /* -1: up to the context */
} gen_opts;

/* Sampling, limits and stop strings common to both completion endpoints. */
static int parse_common(server *srv, json_t *body, sched_req *r, gen_opts *o, bool chat, http_err *e) {
    lfm2c_sampler_params sp = lfm2c_sampler_params_for_model(srv->model);
    double temp = sp.temperature, top_p = sp.top_p, min_p = sp.min_p, pres = 0, freq = 0, rep = sp.repeat_penalty;
    long long top_k = sp.top_k, seed = -1, n = 1, mt = -1, mct = -1, tl = -1;
    if (get_num(body, "temperature", 0, 2, &temp, e) || get_num(body, "top_p", 0, 1, &top_p, e) ||
        get_num(body, "min_p", 0, 1, &min_p, e) || get_num(body, "presence_penalty", -2, 2, &pres, e) ||
        get_num(body, "frequency_penalty", -2, 2, &freq, e) ||
        get_num(body, "repetition_penalty", 0.01, 10, &rep, e) ||
        get_num(body, "repeat_penalty", 0.01, 10, &rep, e) || get_int(body, "top_k", -1, 1 << 30, &top_k, e) ||
        get_int(body, "seed", -(1LL << 62), 1LL << 62, &seed, e) || get_int(body, "n", 1, SERVER_MAX_N, &n, e) ||
        get_int(body, "max_tokens", chat ? 1 : 0, 1 << 30, &mt, e) ||
        get_int(body, "max_completion_tokens", 1, 1 << 30, &mct, e) || get_bool(body, "stream", &o->stream, e))
        return -1;
    if (sp.temperature != temp) sp.temperature = (float)temp;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.top_k = (int)top_k;
    sp.presence_penalty = (float)pres;
    sp.frequency_penalty = (float)freq;
    sp.repeat_penalty = (float)rep;
    if (seed >= 0) sp.seed = (uint64_t)seed;
    else sp.seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)r;
    r->sampling = sp;
    o->max_tokens = mct > 0 ? mct : mt;
    o->n = (int)n;

    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return set_err(e, 400, "invalid_type", "stream_options", "'stream_options' must be an object");
        if (get_bool(so, "include_usage", &o->include_usage, e)) return -1;
    }

    json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) {
            if (json_string_length(stop) > (size_t)srv->p.max_stop_bytes)
                return set_err(e, 400, "invalid_value", "stop", "a stop string may have at most %d bytes", srv->p.max_stop_bytes);
            r->stop = calloc(1, sizeof *r->stop);
            if (!r->stop || !(r->stop[0] = strdup(json_string_value(stop)))) return set_err(e, 500, NULL, NULL, "out of memory");
            r->n_stop = 1;
        } else if (json_is_array(stop) && json_array_size(stop) <= 4) {
            r->stop = calloc(json_array_size(stop) + 1, sizeof *r->stop);
            if (!r->stop) return set_err(e, 500, NULL, NULL, "out of memory");
            size_t i;
            json_t *s;
            json_array_foreach(stop, i, s) {
                if (!json_is_string(s)) return set_err(e, 400, "invalid_type", "stop", "'stop' must hold strings");
                if (json_string_length(s) > (size_t)srv->p.max_stop_bytes)
                    return set_err(e, 400, "invalid_value", "stop", "a stop string may have at most %d bytes", srv->p.max_stop_bytes);
                if (!(r->stop[r->n_stop] = strdup(json_string_value(s)))) return set_err(e, 500, NULL, NULL, "out of memory");
                r->n_stop++;
            }
        } else {
            return set_err(e, 400, "invalid_type", "stop", "'stop' must be a string or an array of up to 4 strings");
        }
    }

    json_t *lb = json_object_get(body, "logit_bias");
    if (lb && !json_is_null(lb)) {
        if (!json_is_object(lb)) return set_err(e, 400, "invalid_type", "logit_bias", "'logit_bias' must be an object");
        if (json_object_size(lb)) {
            if (!(r->logit_bias = calloc((size_t)srv->n_vocab, sizeof(float)))) return set_err(e, 500, NULL, NULL, "out of memory");
            const char *k;
            json_t *v;
            json_object_foreach(lb, k, v) {
                char *end;
                long id = strtol(k, &end, 10);
                if (!*k || *end || id < 0 || id >= srv->n_vocab)
                    return set_err(e, 400, "invalid_value", "logit_bias", "logit_bias key '%s' is not a token id", k);
                if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100)
                    return set_err(e, 400, "invalid_value", "logit_bias", "logit_bias values must be numbers in [-100, 100]");
                double b = json_number_value(v);
                r->logit_bias[id] = b <= -100 ? -INFINITY : (float)b;
            }
        }
    }

    if (chat) {
        if (get_bool(body, "logprobs", &o->logprobs, e) || get_int(body, "top_logprobs", 0, 20, &tl, e)) return -1;
        if (tl >= 0 && !o->logprobs)
            return set_err(e, 400, "invalid_value", "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else {
        long long lp = -1;
        if (get_int(body, "logprobs", 0, 20, &lp, e)) return -1;
        if (lp >= 0) { o->logprobs = true; tl = lp; }
    }
    o->top_logprobs = tl < 0 ? 0 : (int)tl;
    r->n_logprobs = o->logprobs ? o->top_logprobs : -1;
    return 0;
}

/* Limits the generation to the context, refuses prompts that do not fit. */
static int fit_context(server *srv, sched_req *r, gen_opts *o, const char *param, http_err *e) {
    if (r->n_prompt <= 0) return set_err(e, 400, "invalid_value", param, "the prompt is empty");
    if (r->n_prompt >= srv->n_ctx)
        return set_err(e, 400, "context_length_exceeded", param,
                       "this model's context is %d tokens; the prompt has %d tokens", srv->n_ctx, r->n_prompt);
    long long room = srv->n_ctx - r->n_prompt;
    r->max_tokens = o->max_tokens == 0 ? 0 : (int)(o->max_tokens > 0 && o->max_tokens < room ? o->max_tokens : room);
    return 0;
}

/* ---- chat messages --------------------------------------------------------------------------- */

static void buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (!*buf) return;
    if (*len + n + 1 > *cap) {
        size_t nc = *cap * 2 + n + 1;
        char *nb = realloc(*buf, nc);
        if (!nb) { free(*buf); *buf = NULL; return; }
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

/* Text of a message content: a string, or the text parts of an array; NULL content is "". */
static int content_text(json_t *c, char **buf, size_t *len, size_t *cap, http_err *e) {
    if (!c || json_is_null(c)) return 0;
    if (json_is_string(c)) { buf_add(buf, len, cap, json_string_value(c), json_string_length(c)); return 0; }
    if (!json_is_array(c)) return set_err(e, 400, "invalid_type", "messages", "message 'content' must be a string or an array");
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(t))
            return set_err(e, 400, "invalid_value", "messages", "only text content parts are supported");
        buf_add(buf, len, cap, json_string_value(t), json_string_length(t));
    }
    return 0;
}

/* OpenAI messages -> the array the chat template renders: content as text, assistant
 * tool_calls written the way LFM2 emits them. */
static json_t *normalize_messages(json_t *msgs, http_err *e) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        set_err(e, 400, json_is_array(msgs) ? "invalid_value" : "invalid_type", "messages",
                "'messages' must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            set_err(e, 400, "invalid_type", "messages", "messages[%zu] must be an object with a string 'role'", i);
            goto bad;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool") &&
            strcmp(role, "developer")) {
            set_err(e, 400, "invalid_value", "messages", "messages[%zu].role '%s' is not one of system, user, assistant, tool", i, role);
            goto bad;
        }
        size_t cap = 256, len = 0;
        char *text = malloc(cap);
        if (text) text[0] = 0;
        json_t *calls = json_object_get(m, "tool_calls");
        if (calls && !json_is_null(calls)) { /* written back the way LFM2 emits them (toolcall.c) */
            if (!json_is_array(calls)) { free(text); set_err(e, 400, "invalid_type", "messages", "'tool_calls' must be an array"); goto bad; }
            json_t *plain = json_array();
            size_t k;
            json_t *tc;
            json_array_foreach(calls, k, tc) {
                json_t *fn = json_object_get(tc, "function");
                const char *name = json_string_value(json_object_get(fn, "name"));
                const char *args = json_string_value(json_object_get(fn, "arguments"));
                json_t *a = args ? json_loads(args, 0, NULL) : json_object();
                if (!name || !json_is_object(a)) {
                    json_decref(a);
                    json_decref(plain);
                    free(text);
                    set_err(e, 400, "invalid_value", "messages", "messages[%zu].tool_calls[%zu] needs a function name and JSON object arguments", i, k);
                    goto bad;
                }
                json_array_append_new(plain, json_pack("{s:s,s:o}", "name", name, "arguments", a));
            }
            size_t n_calls = 0;
            char *ct = toolcall_format(plain, &n_calls);
            json_decref(plain);
            if (!ct) { free(text); set_err(e, 400, "invalid_value", "messages", "messages[%zu].tool_calls cannot be written", i); goto bad; }
            buf_add(&text, &len, &cap, ct, n_calls);
            free(ct);
        }
        if (content_text(json_object_get(m, "content"), &text, &len, &cap, e)) { free(text); goto bad; }
        if (!text) { set_err(e, 500, NULL, NULL, "out of memory"); goto bad; }
        json_array_append_new(out, json_pack("{s:s,s:s%}", "role", strcmp(role, "developer") ? role : "system",
                                             "content", text, len));
        free(text);
    }
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* The function objects of an OpenAI tools array (what the LFM2 template lists). */
static json_t *tool_functions(json_t *tools, http_err *e) {
    if (!json_is_array(tools)) { set_err(e, 400, "invalid_type", "tools", "'tools' must be an array"); return NULL; }
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!json_is_object(t) || (type && strcmp(type, "function")) || !json_is_object(fn) ||
            !json_is_string(json_object_get(fn, "name"))) {
            json_decref(out);
            set_err(e, 400, "invalid_value", "tools", "tools[%zu] must be {\"type\":\"function\",\"function\":{\"name\":...}}", i);
            return NULL;
        }
        json_array_append(out, fn);
    }
    return out;
}

/* ---- building requests --------------------------------------------------------------------------- */

typedef struct job {
    server *srv;
    sched_req **rs;            /* the choices; with several prompts, prompt p's k-th is p*n + k */
    int n_rs;
    gen_opts o;
    bool chat, tools;          /* tools: parse tool calls out of the output */
    grammar *g_json, *g_tool;  /* owned, outlive the requests (freed with the job) */
    char **echo;               /* completions with echo: each choice's prompt text */
    size_t *n_echo;
    bool *echo_bos;            /* the choice's prompt token 0 is a BOS not in its echo text */
    pthread_cond_t cond;       /* the scheduler signals it when any choice changes */
    char id[48];
    time_t created;
    const dialect *dl;         /* the API the answer is translated to (NULL: OpenAI) */
    void *dls;                 /* its state (owned) */
} job;

static job *job_new(server *srv) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->rs = calloc(1, sizeof *j->rs);
    if (!j->rs || !(j->rs[0] = sched_req_new())) { free(j->rs); free(j); return NULL; }
    j->n_rs = 1;
    j->srv = srv;
    pthread_cond_init(&j->cond, NULL);
    pthread_mutex_lock(&srv->mu);
    srv->jobs++;
    pthread_mutex_unlock(&srv->mu);
    return j;
}

static void job_free(job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->srv->mu);
    j->srv->jobs--;
    pthread_mutex_unlock(&j->srv->mu);
    for (int i = 0; i < j->n_rs; i++) if (j->rs[i]) sched_release(j->srv->sched, j->rs[i]);
    for (int i = 0; j->echo && i < j->n_rs; i++) free(j->echo[i]);
    free(j->echo);
    free(j->n_echo);
    free(j->echo_bos);
    free(j->rs);
    grammar_free(j->g_json);
    grammar_free(j->g_tool);
    pthread_cond_destroy(&j->cond);
    if (j->dl && j->dl->free_state) j->dl->free_state(j->dls);
    free(j);
}

/* A request with b's settings and its own copy of `prompt` (not submitted yet). */
static sched_req *req_clone(server *srv, const sched_req *b, const int32_t *prompt, int n_prompt) {
    sched_req *r = sched_req_new();
    if (!r) return NULL;
    r->sampling = b->sampling;
    r->max_tokens = b->max_tokens;
    r->n_logprobs = b->n_logprobs;
    r->json_grammar = b->json_grammar;
    r->tool_grammar = b->tool_grammar;
    r->force_tool_call = b->force_tool_call;
    r->tools_auto = b->tools_auto;
    bool ok = (r->prompt = malloc(sizeof *r->prompt * (size_t)(n_prompt + 1))) != NULL;
    if (ok) { memcpy(r->prompt, prompt, sizeof *r->prompt * (size_t)n_prompt); r->n_prompt = n_prompt; }
    if (ok && b->logit_bias && (ok = (r->logit_bias = malloc(sizeof(float) * (size_t)srv->n_vocab)) != NULL))
        memcpy(r->logit_bias, b->logit_bias, sizeof(float) * (size_t)srv->n_vocab);
    if (ok && b->n_stop && (ok = (r->stop = calloc((size_t)b->n_stop + 1, sizeof *r->stop)) != NULL))
        for (int i = 0; ok && i < b->n_stop; i++) ok = (r->stop[r->n_stop++] = strdup(b->stop[i])) != NULL;
    if (!ok) { sched_release(srv->sched, r); return NULL; }
    return r;
}

/* The job holds one request per prompt: makes o.n choices of each, choice k of a prompt with
 * seed + k, waiting for the prompt's first choice and starting from a copy of its state. */
static int job_expand(server *srv, job *j, http_err *e) {
    int n = j->o.n < 1 ? 1 : j->o.n, np = j->n_rs;
    if (np * n > SERVER_MAX_CHOICES)
        return set_err(e, 400, "invalid_value", "n", "at most %d choices per request (prompts x n)", SERVER_MAX_CHOICES);
    for (int i = 0; i < np; i++) j->rs[i]->notify = &j->cond;
    if (n == 1) return 0;
    sched_req **rs = calloc((size_t)(np * n), sizeof *rs);
    char **echo = j->echo ? calloc((size_t)(np * n), sizeof *echo) : NULL;
    size_t *n_echo = j->echo ? calloc((size_t)(np * n), sizeof *n_echo) : NULL;
    bool *echo_bos = j->echo ? calloc((size_t)(np * n), sizeof *echo_bos) : NULL;
    if (!rs || (j->echo && (!echo || !n_echo || !echo_bos))) {
        free(rs); free(echo); free(n_echo); free(echo_bos);
        return set_err(e, 500, NULL, NULL, "out of memory");
    }
    for (int p = 0; p < np; p++) {
        sched_req *b = j->rs[p];
        rs[p * n] = b;
        j->rs[p] = NULL;
        if (echo) { echo[p * n] = j->echo[p]; n_echo[p * n] = j->n_echo[p]; echo_bos[p * n] = j->echo_bos[p]; j->echo[p] = NULL; }
    }
    free(j->rs);
    for (int i = 0; j->echo && i < np; i++) free(j->echo[i]);
    free(j->echo);
    free(j->n_echo);
    free(j->echo_bos);
    j->rs = rs;
    j->echo = echo;
    j->n_echo = n_echo;
    j->echo_bos = echo_bos;
    j->n_rs = np * n;
    for (int p = 0; p < np; p++) {
        sched_req *b = rs[p * n];
        for (int k = 1; k < n; k++) {
            sched_req *r = req_clone(srv, b, b->prompt, b->n_prompt);
            if (!r || (echo && !(echo[p * n + k] = strndup(echo[p * n], n_echo[p * n])))) {
                if (r) sched_release(srv->sched, r);
                return set_err(e, 500, NULL, NULL, "out of memory");
            }
            if (echo) { n_echo[p * n + k] = n_echo[p * n]; echo_bos[p * n + k] = echo_bos[p * n]; }
            r->sampling.seed = b->sampling.seed + (uint64_t)k;
            r->prompt_logprobs = b->prompt_logprobs;
            if (!b->prompt_logprobs) r->fork_of = b; /* prompt logprobs need every position's logits: no copy */
            r->notify = &j->cond;
            rs[p * n + k] = r;
        }
    }
    return 0;
}

/* Replaces every string in v (values and object keys' values, recursively) by its guarded form. */
static void guard_json(server *srv, json_t *v) {
    if (json_is_string(v)) {
        size_t n = 0;
        char *g = lfm2c_guard_text(srv->model, json_string_value(v), json_string_length(v), &n);
        if (g && (n != json_string_length(v) || memcmp(g, json_string_value(v), n))) json_string_setn(v, g, n);
        free(g);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) guard_json(srv, x);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) guard_json(srv, x);
        /* keys reach the prompt too (tool schemas, call arguments through tojson): a key holding
         * special-token text is replaced by its guarded form, the order of the others kept */
        bool any = false;
        json_object_foreach(v, k, x) {
            size_t n = 0, kl = strlen(k);
            char *g = lfm2c_guard_text(srv->model, k, kl, &n);
            if (g && (n != kl || memcmp(g, k, n))) any = true;
            free(g);
        }
        if (!any) return;
        json_t *copy = json_object();
        json_object_foreach(v, k, x) {
            char *g = lfm2c_guard_text(srv->model, k, strlen(k), NULL);
            json_object_set(copy, g ? g : k, x);
            free(g);
        }
        json_object_clear(v);
        json_object_update(v, copy);
        json_decref(copy);
    }
}

static int build_chat(server *srv, json_t *body, job *j, http_err *e) {
    sched_req *r = j->rs[0];
    if (parse_common(srv, body, r, &j->o, true, e)) return -1;
    json_t *given = json_object_get(body, "messages");
    if (json_is_array(given) && json_array_size(given) > (size_t)srv->p.max_messages)
        return set_err(e, 400, "invalid_value", "messages", "at most %d messages per request (--max-messages)", srv->p.max_messages);
    json_t *msgs = normalize_messages(given, e);
    if (!msgs) return -1;
    json_t *tools = json_object_get(body, "tools"), *fns = NULL;
    json_t *choice = json_object_get(body, "tool_choice");
    const char *mode = "auto", *named = NULL;
    bool parallel = true;
    if (get_bool(body, "parallel_tool_calls", &parallel, e)) goto bad;
    if (choice && !json_is_null(choice)) {
        if (json_is_string(choice)) {
            mode = json_string_value(choice);
            if (strcmp(mode, "none") && strcmp(mode, "auto") && strcmp(mode, "required")) {
                set_err(e, 400, "invalid_value", "tool_choice", "'tool_choice' must be none, auto, required or a function");
                goto bad;
            }
        } else if (json_is_object(choice) && json_is_string(json_object_get(json_object_get(choice, "function"), "name"))) {
            mode = "named";
            named = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
        } else {
            set_err(e, 400, "invalid_type", "tool_choice", "'tool_choice' must be a string or {\"type\":\"function\",\"function\":{\"name\":...}}");
            goto bad;
        }
    }
    if (tools && !json_is_null(tools)) {
        if (!(fns = tool_functions(tools, e))) goto bad;
        if (json_array_size(fns) == 0) { json_decref(fns); fns = NULL; }
    }
    if (!fns && (!strcmp(mode, "required") || named)) {
        set_err(e, 400, "invalid_value", "tool_choice", "'tool_choice' %s needs 'tools'", mode);
        goto bad;
    }
    bool use_tools = fns && strcmp(mode, "none");
    json_t *rf = json_object_get(body, "response_format");
    if (rf && !json_is_null(rf)) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        char gerr[300] = "";
        if (!json_is_object(rf) || !type) {
            set_err(e, 400, "invalid_type", "response_format", "'response_format' must be an object with a 'type'");
            goto bad;
        }
        if (!strcmp(type, "json_object")) {
            j->g_json = grammar_any_object();
        } else if (!strcmp(type, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema");
            json_t *schema = json_object_get(js, "schema");
            if (!json_is_object(js) || !schema) {
                set_err(e, 400, "invalid_value", "response_format", "'response_format.json_schema.schema' is missing");
                goto bad;
            }
            char *st = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
            j->g_json = st ? grammar_from_schema(st, gerr, sizeof gerr) : NULL;
            free(st);
            if (!j->g_json) { set_err(e, 400, "invalid_value", "response_format", "unsupported JSON schema: %s", gerr); goto bad; }
        } else if (strcmp(type, "text")) {
            set_err(e, 400, "invalid_value", "response_format", "'response_format.type' must be text, json_object or json_schema");
            goto bad;
        }
    }
    if (use_tools) { /* with a response format too: the answer is a call or the JSON, as tool_choice allows */
        char *tt = json_dumps(tools, JSON_COMPACT);
        char gerr[300] = "";
        bool forced = !strcmp(mode, "required") || named;
        j->g_tool = tt ? grammar_tool_calls(tt, named, parallel && !named, gerr, sizeof gerr) : NULL;
        free(tt);
        if (!j->g_tool) { /* in every mode alike: a call is never silently unconstrained */
            set_err(e, 400, "invalid_value", "tools", "cannot constrain tool calls: %s", gerr);
            goto bad;
        }
        r->tool_grammar = j->g_tool;
        r->force_tool_call = forced;
        r->tools_auto = !forced;
        j->tools = true;
    }
    r->json_grammar = r->force_tool_call ? NULL : j->g_json; /* a forced call is the whole answer */

    /* request strings are text: their special-token texts stay plain (lfm2c_guard_text) */
    guard_json(srv, msgs);
    if (use_tools) guard_json(srv, fns);
    char *mt = json_dumps(msgs, JSON_COMPACT), *ft = use_tools ? json_dumps(fns, JSON_COMPACT) : NULL;
    lfm2c_error err = {0};
    char *prompt = mt ? lfm2c_chat_render(srv->model, srv->p.chat_template, mt, ft, true, &err) : NULL;
    free(mt);
    free(ft);
    json_decref(msgs);
    json_decref(fns);
    if (!prompt) return set_err(e, 400, "invalid_value", "messages", "cannot render the chat template: %s", err.msg);
    lfm2c_error terr = {0};
    if (strlen(prompt) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)srv->n_ctx) { /* cannot fit: no need to tokenize */
        free(prompt);
        return set_err(e, 400, "context_length_exceeded", "messages",
                       "the conversation is far longer than the context of %d tokens", srv->n_ctx);
    }
    r->prompt = lfm2c_tokenize_prompt(srv->model, prompt, strlen(prompt), false, &r->n_prompt, &terr);
    int rc = r->prompt ? 0 : set_err(e, 400, "invalid_value", "messages", "cannot tokenize the prompt: %s", terr.msg);
    free(prompt);
    if (rc || fit_context(srv, r, &j->o, "messages", e)) return -1;
    return job_expand(srv, j, e);
bad:
    json_decref(msgs);
    json_decref(fns);
    return -1;
}

/* The text of token ids (echo of a prompt given as ids). */
static char *prompt_text(server *srv, const int32_t *t, int n, size_t *len) {
    size_t cap = 256;
    char *text = malloc(cap);
    if (text) text[0] = 0;
    *len = 0;
    lfm2c_detok d;
    lfm2c_detok_init(&d, true);
    for (int i = 0; text && i < n; i++) {
        char piece[600];
        int k = lfm2c_detok_push(&d, srv->model, t[i], piece, sizeof piece);
        if (k > 0) buf_add(&text, len, &cap, piece, (size_t)(k < (int)sizeof piece ? k : (int)sizeof piece));
    }
    char tail[64];
    int k = text ? lfm2c_detok_flush(&d, tail, sizeof tail) : 0;
    if (k > 0) buf_add(&text, len, &cap, tail, (size_t)k);
    return text;
}

/* One prompt of /v1/completions (a string or an array of token ids) as token ids. */
static int completion_prompt(server *srv, json_t *p, size_t which, int32_t **out, int *n_out, http_err *e) {
    lfm2c_error err = {0};
    if (json_is_string(p)) {
        const lfm2c_model_info *mi = lfm2c_model_get_info(srv->model);
        if (json_string_length(p) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)srv->n_ctx)
            return set_err(e, 400, "context_length_exceeded", "prompt", "the prompt is far longer than the context of %d tokens", srv->n_ctx);
        *out = lfm2c_tokenize(srv->model, json_string_value(p), json_string_length(p), mi->add_bos, true, n_out, &err);
        if (!*out) return set_err(e, 400, "invalid_value", "prompt", "cannot tokenize prompt %zu: %s", which, err.msg);
        return 0;
    }
    size_t n = json_array_size(p), i;
    json_t *t;
    if (!json_is_array(p) || n == 0)
        return set_err(e, 400, "invalid_type", "prompt", "'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays");
    if (n > (size_t)srv->n_ctx)
        return set_err(e, 400, "context_length_exceeded", "prompt", "this model's context is %d tokens; prompt %zu has %zu tokens", srv->n_ctx, which, n);
    if (!(*out = malloc(n * sizeof **out))) return set_err(e, 500, NULL, NULL, "out of memory");
    json_array_foreach(p, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= srv->n_vocab) {
            free(*out);
            *out = NULL;
            return set_err(e, 400, "invalid_value", "prompt", "prompt[%zu] is not a token id of this model", i);
        }
        (*out)[i] = (int32_t)json_integer_value(t);
    }
    *n_out = (int)n;
    return 0;
}

/* The prompts of a /v1/completions body: one string or token array, or an array of them. */
static json_t *completion_prompts(json_t *p, http_err *e) {
    if (json_is_string(p)) return json_pack("[O]", p);
    if (!json_is_array(p) || json_array_size(p) == 0) {
        set_err(e, 400, p ? "invalid_type" : "missing_required_parameter", "prompt",
                "'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays");
        return NULL;
    }
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) return json_pack("[O]", p); /* one prompt of token ids */
    size_t i;
    json_t *x;
    json_array_foreach(p, i, x) {
        if (!json_is_string(x) && !json_is_array(x)) {
            set_err(e, 400, "invalid_type", "prompt", "prompt[%zu] must be a string or an array of token ids", i);
            return NULL;
        }
    }
    return json_incref(p);
}

static int build_completion(server *srv, json_t *body, job *j, http_err *e) {
    sched_req *b = j->rs[0];
    if (parse_common(srv, body, b, &j->o, false, e) || get_bool(body, "echo", &j->o.echo, e)) return -1;
    if (!json_object_get(body, "max_tokens") && j->o.max_tokens < 0) j->o.max_tokens = 16; /* OpenAI's default */
    if (j->o.max_tokens == 0 && !j->o.echo)
        return set_err(e, 400, "invalid_value", "max_tokens", "'max_tokens' must be at least 1 (0 only with 'echo': the prompt's logprobs)");
    b->prompt_logprobs = j->o.echo && j->o.logprobs; /* echo + logprobs: the prompt's too */
    json_t *prompts = completion_prompts(json_object_get(body, "prompt"), e);
    if (!prompts) return -1;
    size_t np = json_array_size(prompts);
    int rc = 0;
    if (np * (size_t)(j->o.n < 1 ? 1 : j->o.n) > SERVER_MAX_CHOICES) {
        rc = set_err(e, 400, "invalid_value", "prompt", "at most %d choices per request (prompts x n)", SERVER_MAX_CHOICES);
        goto out;
    }
    sched_req **rs = realloc(j->rs, np * sizeof *rs);
    if (rs) j->rs = rs;
    if (j->o.echo) {
        j->echo = calloc(np, sizeof *j->echo);
        j->n_echo = calloc(np, sizeof *j->n_echo);
        j->echo_bos = calloc(np, sizeof *j->echo_bos);
    }
    if (!rs || (j->o.echo && (!j->echo || !j->n_echo || !j->echo_bos))) { rc = set_err(e, 500, NULL, NULL, "out of memory"); goto out; }
    for (size_t i = 0; i < np && !rc; i++) {
        json_t *p = json_array_get(prompts, i);
        int32_t *toks = NULL;
        int nt = 0;
        if ((rc = completion_prompt(srv, p, i, &toks, &nt, e))) break;
        sched_req *r = i == 0 ? b : req_clone(srv, b, toks, nt);
        if (!r) { free(toks); rc = set_err(e, 500, NULL, NULL, "out of memory"); break; }
        if (i == 0) { free(b->prompt); b->prompt = toks; b->n_prompt = nt; } else { free(toks); j->rs[j->n_rs++] = r; }
        if ((rc = fit_context(srv, r, &j->o, "prompt", e))) break;
        if (j->o.echo) {
            if (json_is_string(p)) {
                j->echo[i] = strndup(json_string_value(p), json_string_length(p));
                j->n_echo[i] = json_string_length(p);
                j->echo_bos[i] = lfm2c_model_get_info(srv->model)->add_bos;
            } else {
                j->echo[i] = prompt_text(srv, r->prompt, r->n_prompt, &j->n_echo[i]);
            }
            if (!j->echo[i]) rc = set_err(e, 500, NULL, NULL, "out of memory");
        }
    }
    if (!rc) rc = job_expand(srv, j, e);
out:
    json_decref(prompts);
    return rc;
}

/* ---- responses ------------------------------------------------------------------------------------ */

static const char *finish_name(int f) {
    switch (f) {
    case FINISH_LENGTH: return "length";
    case FINISH_TOOL_CALLS: return "tool_calls";
    default: return "stop";
    }
}

/* A token's text for logprobs, always valid UTF-8: the text itself when its bytes are valid
 * UTF-8 on their own, else (a piece of a multi-byte character) "bytes:" and each byte as \xNN,
 * the form OpenAI uses; the exact bytes are always in the entry's "bytes" array. */
static bool utf8_whole(const char *b, int n) {
    for (int i = 0; i < n;) {
        int k = utf8_valid_prefix((const uint8_t *)b + i, (size_t)(n - i));
        if (k <= 0 || (k == 1 && b[i] == 0)) return false;
        int len;
        uint32_t cp = utf8_decode_lenient((const uint8_t *)b + i, (size_t)k, &len);
        if (cp >= 0xD800 && cp <= 0xDFFF) return false; /* JSON text cannot carry a lone surrogate */
        i += k;
    }
    return true;
}

static int token_text(server *srv, int32_t tok, char *b, int cap, char *text, size_t text_cap) {
    int n = lfm2c_token_to_bytes(srv->model, tok, true, b, cap);
    n = n < 0 ? 0 : n > cap ? cap : n;
    if (utf8_whole(b, n)) {
        size_t k = (size_t)n < text_cap - 1 ? (size_t)n : text_cap - 1;
        memcpy(text, b, k);
        text[k] = 0;
    } else {
        size_t o = (size_t)snprintf(text, text_cap, "bytes:");
        for (int i = 0; i < n && o + 5 <= text_cap; i++) o += (size_t)snprintf(text + o, text_cap - o, "\\x%02x", (unsigned char)b[i]);
    }
    return n;
}

static json_t *token_json(server *srv, int32_t tok, float lp) {
    char b[512], text[4 * 512 + 8];
    int n = token_text(srv, tok, b, (int)sizeof b, text, sizeof text);
    json_t *bytes = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)b[i]));
    json_t *o = json_object();
    json_object_set_new(o, "token", json_string(text));
    json_object_set_new(o, "logprob", json_real(lp));
    json_object_set_new(o, "bytes", bytes);
    return o;
}

/* logprobs.content entries for tokens [from, to) (lock held). */
static json_t *logprobs_json(server *srv, const sched_req *r, int from, int to) {
    json_t *arr = json_array();
    for (int i = from; i < to && i < r->n_logprobs_out; i++) {
        const sched_logprob *lp = &r->logprobs[i];
        json_t *o = token_json(srv, lp->token, lp->logprob);
        json_t *top = json_array();
        for (int k = 0; k < lp->n_top; k++) json_array_append_new(top, token_json(srv, lp->top_token[k], lp->top_logprob[k]));
        json_object_set_new(o, "top_logprobs", top);
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "content", arr);
}

/* Appends entries [from, to) of `a` to the legacy parallel arrays; entry 0 of `a` starts at text
 * offset `base`. A NAN logprob (the first prompt token) is null; `zero_first`: entry 0 is not in
 * the text (the BOS the server added before a string prompt) and takes no room. */
static void legacy_add(server *srv, const sched_logprob *a, int n, int from, int to, size_t base, bool zero_first,
                       json_t *tokens, json_t *lps, json_t *tops, json_t *offs) {
    size_t off = base;
    for (int i = 0; i < to && i < n; i++) {
        const sched_logprob *lp = &a[i];
        char b[512], text[4 * 512 + 8];
        int len = token_text(srv, lp->token, b, (int)sizeof b, text, sizeof text);
        if (i == 0 && zero_first) len = 0;
        if (i >= from) {
            json_array_append_new(tokens, json_string(text));
            bool none = isnan(lp->logprob);
            json_array_append_new(lps, none ? json_null() : json_real(lp->logprob));
            json_t *top = none ? json_null() : json_object();
            for (int k = 0; !none && k < lp->n_top; k++) {
                char tb[512], tt[4 * 512 + 8];
                token_text(srv, lp->top_token[k], tb, (int)sizeof tb, tt, sizeof tt);
                json_object_set_new(top, tt, json_real(lp->top_logprob[k]));
            }
            json_array_append_new(tops, top);
            json_array_append_new(offs, json_integer((json_int_t)off));
        }
        off += (size_t)len;
    }
}

/* The legacy /v1/completions logprobs shape of choice i: parallel arrays over the generated
 * entries [from, to), preceded by the prompt's entries when `with_prompt` (echo; lock held). */
static json_t *legacy_logprobs_json(server *srv, const job *j, int i, bool with_prompt, int from, int to) {
    const sched_req *r = j->rs[i];
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    if (with_prompt && r->prompt_logprobs)
        legacy_add(srv, r->prompt_lp, r->n_prompt_lp, 0, r->n_prompt_lp, 0, j->echo_bos && j->echo_bos[i], tokens, lps, tops, offs);
    size_t base = j->echo ? j->n_echo[i] : 0;
    if (from < to) legacy_add(srv, r->logprobs, r->n_logprobs_out, from, to, base, false, tokens, lps, tops, offs);
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

/* Usage of all choices: each prompt counted once (its choices share it), completions summed. */
static json_t *usage_json(const job *j) {
    int n = j->o.n < 1 ? 1 : j->o.n, prompt = 0, cached = 0, completion = 0;
    for (int i = 0; i < j->n_rs; i++) {
        const sched_req *r = j->rs[i];
        if (i % n == 0) { prompt += r->n_prompt; cached += r->n_cached; }
        completion += r->n_generated;
    }
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", prompt, "completion_tokens", completion,
                     "total_tokens", prompt + completion, "prompt_tokens_details", "cached_tokens", cached);
}

static json_t *tool_calls_json(server *srv, const toolcall_result *tr) {
    pthread_mutex_lock(&srv->mu);
    json_t *calls = toolcall_openai_json(tr, &srv->tool_ids);
    pthread_mutex_unlock(&srv->mu);
    return calls;
}

/* One choice of the answer (lock held). */
static json_t *final_choice(server *srv, job *j, int i) {
    sched_req *r = j->rs[i];
    const char *finish = finish_name(r->finish);
    if (!j->chat) {
        json_t *text = json_stringn(r->text ? r->text : "", r->n_text);
        if (j->echo && text) { /* the prompt, then the completion */
            char *both = malloc(j->n_echo[i] + r->n_text + 1);
            if (both) {
                memcpy(both, j->echo[i], j->n_echo[i]);
                if (r->n_text) memcpy(both + j->n_echo[i], r->text, r->n_text);
                json_t *t2 = json_stringn(both, j->n_echo[i] + r->n_text);
                if (t2) { json_decref(text); text = t2; }
                free(both);
            }
        }
        return json_pack("{s:i,s:o,s:o,s:s}", "index", i, "text", text ? text : json_string(""), "logprobs",
                         j->o.logprobs ? legacy_logprobs_json(srv, j, i, true, 0, r->n_logprobs_out) : json_null(), "finish_reason", finish);
    }
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    toolcall_result tr = {0};
    size_t n_text = r->n_text;
    if (j->tools && r->finish == FINISH_LENGTH) n_text = toolcall_before_cut(r->text, n_text);
    if (j->tools && r->finish != FINISH_LENGTH && toolcall_parse(r->text ? r->text : "", n_text, &tr) && tr.parsed &&
        tr.n_calls > 0) {
        json_object_set_new(msg, "content", tr.content_len ? json_stringn(tr.content, tr.content_len) : json_null());
        json_object_set_new(msg, "tool_calls", tool_calls_json(srv, &tr));
        finish = "tool_calls";
    } else {
        json_object_set_new(msg, "content", json_stringn(r->text ? r->text : "", n_text));
        if (r->finish == FINISH_TOOL_CALLS) finish = "stop";
    }
    toolcall_result_free(&tr);
    return json_pack("{s:i,s:o,s:o,s:s}", "index", i, "message", msg, "logprobs",
                     j->o.logprobs ? logprobs_json(srv, r, 0, r->n_logprobs_out) : json_null(), "finish_reason", finish);
}

/* The whole answer of a finished job (lock held). */
static json_t *final_json(server *srv, job *j) {
    json_t *choices = json_array();
    for (int i = 0; i < j->n_rs; i++) json_array_append_new(choices, final_choice(srv, j, i));
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", j->id, "object", j->chat ? "chat.completion" : "text_completion",
                     "created", (json_int_t)j->created, "model", srv->alias, "choices", choices, "usage", usage_json(j));
}

/* ---- streaming ------------------------------------------------------------------------------------- */

/* What a stream has sent of one choice. */
typedef struct stream_choice {
    size_t sent_text;          /* bytes of r->text already turned into events */
    int sent_lp;               /* logprob entries already sent */
    bool started, finished, echoed;
    toolcall_stream *tcs;
} stream_choice;

typedef struct stream {
    job *j;
    int fd;
    stream_choice *ch;         /* [j->n_rs] */
    int n_finished;
    bool finished, done_sent;
    char *out;                 /* pending SSE bytes */
    size_t n_out, off_out, cap_out;
    conn info;                 /* log line data (the connection may be gone first) */
} stream;

static void out_add(stream *st, const char *s, size_t n) {
    if (st->n_out + n > st->cap_out) {
        size_t cap = st->cap_out ? st->cap_out * 2 : 4096;
        while (cap < st->n_out + n) cap *= 2;
        char *o = realloc(st->out, cap);
        if (!o) return;
        st->out = o;
        st->cap_out = cap;
    }
    memcpy(st->out + st->n_out, s, n);
    st->n_out += n;
}

static void dl_out(void *ctx, const char *s, size_t n) { out_add(ctx, s, n); }

static dl_server dl_view(server *srv) {
    return (dl_server){.model = srv->model, .alias = srv->alias, .model_file = srv->model_file[0] ? srv->model_file : NULL,
                       .n_ctx = srv->n_ctx, .started = srv->started, .responses = srv->responses, .id_mu = &srv->mu,
                       .id_counter = &srv->id_counter};
}

static dl_run dl_run_of(const job *j) {
    const sched_req *r = j->rs[0]; /* the dialects ask for one choice */
    return (dl_run){.n_prompt = r->n_prompt, .n_generated = r->n_generated, .n_cached = r->n_cached, .stop_hit = r->stop_hit,
                    .stop_text = r->stop_hit >= 0 && r->stop_hit < r->n_stop ? r->stop[r->stop_hit] : NULL,
                    .t_submit = r->t_submit, .t_first = r->t_first, .t_now = sched_now()};
}

static void out_event(stream *st, json_t *j) {
    if (st->j->dl) { /* another API: the chunk is translated into its events */
        dl_server v = dl_view(st->j->srv);
        dl_run run = dl_run_of(st->j);
        st->j->dl->event(&v, st->j->dls, j, &run, dl_out, st);
        json_decref(j);
        return;
    }
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return;
    out_add(st, "data: ", 6);
    out_add(st, s, strlen(s));
    out_add(st, "\n\n", 2);
    free(s);
}

static json_t *chunk(stream *st, int i, json_t *delta_or_text, json_t *logprobs, const char *finish) {
    job *j = st->j;
    server *srv = j->srv;
    json_t *choice = j->chat ? json_pack("{s:i,s:o}", "index", i, "delta", delta_or_text)
                             : json_pack("{s:i,s:o}", "index", i, "text", delta_or_text);
    json_object_set_new(choice, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", j->id, "object", j->chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)j->created, "model", srv->alias, "choices", choice);
}

static void emit_content(stream *st, int i, const char *s, size_t n, json_t *logprobs) {
    if (!n && !logprobs) return;
    json_t *piece = json_stringn(s, n);
    if (!piece) piece = json_string("");
    out_event(st, chunk(st, i, st->j->chat ? json_pack("{s:o}", "content", piece) : piece, logprobs, NULL));
}

/* The end of one choice: a cut call dropped, parsed calls sent, the finish reason. */
static void stream_finish_choice(stream *st, int i) {
    job *j = st->j;
    sched_req *r = j->rs[i];
    server *srv = j->srv;
    stream_choice *c = &st->ch[i];
    const char *finish = finish_name(r->finish);
    if (c->tcs) {
        toolcall_result tr = {0};
        const char *tail = NULL;
        size_t tail_len = 0;
        if (toolcall_stream_finish(c->tcs, &tr, &tail, &tail_len)) {
            bool cut = r->finish == FINISH_LENGTH; /* a call cut by max_tokens is not a call */
            if (cut) tail_len = toolcall_before_cut(tail, tail_len);
            if (tail_len) emit_content(st, i, tail, tail_len, NULL);
            if (!cut && tr.parsed && tr.n_calls > 0) {
                json_t *calls = tool_calls_json(srv, &tr);
                size_t k;
                json_t *call;
                json_array_foreach(calls, k, call) {
                    json_object_set_new(call, "index", json_integer((json_int_t)k));
                    out_event(st, chunk(st, i, json_pack("{s:[O]}", "tool_calls", call), NULL, NULL));
                }
                json_decref(calls);
                finish = "tool_calls";
            } else if (r->finish == FINISH_TOOL_CALLS) {
                finish = "stop";
            }
        }
        toolcall_result_free(&tr);
    }
    out_event(st, chunk(st, i, j->chat ? json_object() : json_string(""), NULL, finish));
}

/* Turns new output of one choice into SSE events (lock held). */
static void stream_pump_choice(stream *st, int i) {
    job *j = st->j;
    sched_req *r = j->rs[i];
    server *srv = j->srv;
    stream_choice *c = &st->ch[i];
    if (c->finished) return;
    if (!c->started) {
        c->started = true;
        if (j->chat) out_event(st, chunk(st, i, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, NULL));
    }
    if (j->echo && !c->echoed) { /* the prompt first (with its logprobs once it is read) */
        if (r->prompt_logprobs && r->n_prompt_lp < r->n_prompt && r->finish == FINISH_NONE) return;
        c->echoed = true;
        json_t *plp = r->prompt_logprobs ? legacy_logprobs_json(srv, j, i, true, 0, 0) : NULL;
        if (j->n_echo[i] || plp) emit_content(st, i, j->echo[i], j->n_echo[i], plp);
    }
    json_t *lp = NULL;
    if (j->o.logprobs && r->n_logprobs_out > c->sent_lp) {
        lp = j->chat ? logprobs_json(srv, r, c->sent_lp, r->n_logprobs_out)
                     : legacy_logprobs_json(srv, j, i, false, c->sent_lp, r->n_logprobs_out);
        c->sent_lp = r->n_logprobs_out;
    }
    if (r->n_released > c->sent_text) {
        const char *p = r->text + c->sent_text;
        size_t n = r->n_released - c->sent_text;
        c->sent_text = r->n_released;
        if (c->tcs) {
            size_t safe = 0;
            const char *s = toolcall_stream_feed(c->tcs, p, n, &safe);
            emit_content(st, i, s ? s : "", safe, lp);
        } else {
            emit_content(st, i, p, n, lp);
        }
        lp = NULL;
    }
    if (lp) emit_content(st, i, "", 0, lp);
    if (r->finish == FINISH_NONE || r->finish == FINISH_ERROR) return;
    c->finished = true;
    st->n_finished++;
    stream_finish_choice(st, i);
}

/* The first failed choice, if any (lock held). */
static const sched_req *job_failed(const job *j) {
    for (int i = 0; i < j->n_rs; i++)
        if (j->rs[i]->finish == FINISH_ERROR) return j->rs[i];
    return NULL;
}

static void job_error(const sched_req *r, http_err *e) {
    if (r->error_status == 400) set_err(e, 400, "unsatisfiable_request", NULL, "%s", r->error);
    else set_err(e, 500, "generation_failed", NULL, "%s", r->error);
}

/* Turns new output of the job into SSE events (lock held). */
static void stream_pump(stream *st) {
    job *j = st->j;
    if (st->finished) return;
    const sched_req *bad = job_failed(j);
    if (bad) { /* one failed choice fails the request */
        http_err e;
        job_error(bad, &e);
        out_event(st, err_json(&e));
    } else {
        for (int i = 0; i < j->n_rs; i++) stream_pump_choice(st, i);
        if (st->n_finished < j->n_rs) return;
        if (j->o.include_usage) {
            json_t *u = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", j->id, "object",
                                  j->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created,
                                  "model", j->srv->alias, "choices", "usage", usage_json(j));
            out_event(st, u);
        }
    }
    st->finished = true;
    if (j->dl) {
        dl_server v = dl_view(j->srv);
        dl_run run = dl_run_of(j);
        j->dl->end(&v, j->dls, &run, dl_out, st);
    } else {
        out_add(st, "data: [DONE]\n\n", 14);
    }
}

/* ---- connections ------------------------------------------------------------------------------------ */


static void log_request(server *srv, const conn *k) {
    pthread_mutex_lock(&srv->mu);
    int cls = k->status / 100;
    if (cls >= 1 && cls <= 5) srv->http_by_class[cls]++;
    pthread_mutex_unlock(&srv->mu);
    if (!srv->p.log) return;
    char line[400];
    snprintf(line, sizeof line, "%s %s %s %d %.3fs prompt=%d cached=%d completion=%d%s", k->addr, k->method, k->url,
             k->status, sched_now() - k->t0, k->prompt_tokens, k->cached_tokens, k->completion_tokens,
             k->streaming ? " stream" : "");
    srv->p.log(srv->p.log_user, line);
}

/* Token counts of the job for the log line (lock held). */
static void job_tokens(const job *j, conn *k) {
    json_t *u = usage_json(j);
    k->prompt_tokens = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
    k->completion_tokens = (int)json_integer_value(json_object_get(u, "completion_tokens"));
    k->cached_tokens = (int)json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens"));
    json_decref(u);
}

static bool job_done(const job *j) {
    if (job_failed(j)) return true;
    for (int i = 0; i < j->n_rs; i++)
        if (j->rs[i]->finish == FINISH_NONE) return false;
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    server *srv = st->j->srv;
    (void)pos;
    while (st->off_out == st->n_out) {
        if (st->done_sent) return MHD_CONTENT_READER_END_OF_STREAM;
        st->n_out = st->off_out = 0;
        sched_lock(srv->sched);
        for (;;) {
            stream_pump(st);
            if (st->n_out > 0) break;
            if (peer_gone(st->fd)) {
                sched_unlock(srv->sched);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            sched_wait(srv->sched, st->j->rs[0], 100);
        }
        job_tokens(st->j, &st->info);
        if (st->finished) st->done_sent = true;
        sched_unlock(srv->sched);
    }
    size_t n = st->n_out - st->off_out;
    if (n > max) n = max;
    memcpy(buf, st->out + st->off_out, n);
    st->off_out += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    if (!st->done_sent) st->info.status = 499; /* the client left before the end */
    log_request(st->j->srv, &st->info);
    for (int i = 0; st->ch && i < st->j->n_rs; i++) toolcall_stream_free(st->ch[i].tcs);
    free(st->ch);
    job_free(st->j); /* cancels the requests still running */
    free(st->out);
    free(st);
}

/* Runs a generation job: answers 503 when the queue is full, else waits or streams. */
static enum MHD_Result run_job(server *srv, struct MHD_Connection *c, conn *k, job *j) {
    http_err e;
    k->prompt_tokens = j->rs[0]->n_prompt;
    if (sched_submit_group(srv->sched, j->rs, j->n_rs) != 0) {
        job_free(j);
        set_err(&e, 503, "server_overloaded", NULL, "all slots are busy and the queue is full; retry later");
        k->status = 503;
        return send_err(c, &e);
    }
    int fd = conn_fd(c);
    if (j->o.stream) {
        stream *st = calloc(1, sizeof *st);
        stream_choice *ch = st ? calloc((size_t)j->n_rs, sizeof *ch) : NULL;
        if (!ch) { free(st); job_free(j); set_err(&e, 500, NULL, NULL, "out of memory"); k->status = 500; return send_err(c, &e); }
        st->j = j;
        st->ch = ch;
        st->fd = fd;
        k->status = 200;
        k->streaming = true;
        st->info = *k;
        st->info.body = NULL;
        for (int i = 0; j->tools && i < j->n_rs; i++) st->ch[i].tcs = toolcall_stream_new();
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!resp) { stream_free(st); return MHD_NO; }
        add_common_headers(c, resp);
        MHD_add_response_header(resp, "Content-Type", j->dl ? j->dl->stream_type : "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    sched_lock(srv->sched);
    while (!job_done(j)) {
        if (peer_gone(fd)) break;
        sched_wait(srv->sched, j->rs[0], 100);
    }
    if (!job_done(j)) { /* client left: cancel, answer nobody */
        sched_unlock(srv->sched);
        job_free(j);
        k->status = 499;
        return MHD_NO;
    }
    job_tokens(j, k);
    json_t *out;
    int status = 200;
    const sched_req *bad = job_failed(j);
    if (bad) {
        job_error(bad, &e);
        out = dl_err_json(j->dl, &e);
        status = e.status;
    } else {
        out = final_json(srv, j);
        if (j->dl) {
            dl_server v = dl_view(srv);
            dl_run run = dl_run_of(j);
            json_t *o = j->dl->final(&v, j->dls, out, &run);
            json_decref(out);
            out = o;
        }
    }
    sched_unlock(srv->sched);
    job_free(j);
    k->status = status;
    return send_json(c, status, out);
}

/* The request's "model" must name the served model (its alias or file name, with or without
 * .gguf), unless the server accepts any name (--any-model). An absent model is accepted. */
static int check_model(server *srv, json_t *body, http_err *e) {
    json_t *m = json_object_get(body, "model");
    if (!m || json_is_null(m) || srv->p.any_model) return 0;
    if (!json_is_string(m)) return set_err(e, 400, "invalid_type", "model", "'model' must be a string");
    const char *id = json_string_value(m);
    if (server_model_matches(srv, id)) return 0;
    return set_err(e, 404, "model_not_found", "model",
                   "The model '%.200s' does not exist or you do not have access to it (this server has '%.200s')", id, srv->alias);
}

static enum MHD_Result handle_generate(server *srv, struct MHD_Connection *c, conn *k, json_t *body, bool chat) {
    http_err e;
    job *j = job_new(srv);
    if (!j) {
        set_err(&e, 500, NULL, NULL, "out of memory");
        k->status = 500;
        return send_err(c, &e);
    }
    j->chat = chat;
    j->created = time(NULL);
    j->dl = k->dl; /* the job owns the dialect's state from here */
    j->dls = k->dls;
    k->dls = NULL;
    make_id(srv, chat ? "chatcmpl-" : "cmpl-", j->id, sizeof j->id);
    if (check_model(srv, body, &e) || (chat ? build_chat : build_completion)(srv, body, j, &e)) {
        job_free(j);
        k->status = e.status;
        return send_err(c, &e);
    }
    return run_job(srv, c, k, j);
}

/* ---- bounded concurrent work ------------------------------------------------------------------- */

#define BIG_BODY (1u << 20)     /* bodies above this parse a few at a time */
#define GATE_WAIT_MS 10000      /* longest wait for a place before 503 */

static void gate_init(struct gate *g, int max) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->busy = 0;
    g->max = max > 0 ? max : 1;
}

/* Takes a place (waits up to GATE_WAIT_MS); false when none came free. */
static bool gate_enter(struct gate *g) {
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

static void gate_leave(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    g->busy--;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static enum MHD_Result send_busy(struct MHD_Connection *c, conn *k, const char *what) {
    http_err e;
    set_err(&e, 503, "server_overloaded", NULL, "too many %s in progress; retry later", what);
    k->status = 503;
    return send_err(c, &e);
}

/* ---- /tokenize, /detokenize --------------------------------------------------------------------- */

/* {"tokens":[...]} written straight into text: a token costs its digits, not a JSON object. */
static char *tokens_text(const int32_t *t, int n, size_t *len) {
    size_t cap = 16 + (size_t)n * 12;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = (size_t)snprintf(out, cap, "{\"tokens\":[");
    for (int i = 0; i < n; i++) o += (size_t)snprintf(out + o, cap - o, i ? ",%d" : "%d", (int)t[i]);
    o += (size_t)snprintf(out + o, cap - o, "]}");
    *len = o;
    return out;
}

static enum MHD_Result handle_tokenize(server *srv, struct MHD_Connection *c, conn *k, json_t *body) {
    http_err e;
    json_t *content = json_object_get(body, "content");
    bool add_special = false, parse_special = true;
    if (!json_is_string(content)) { set_err(&e, 400, "invalid_type", "content", "'content' must be a string"); goto bad; }
    if (get_bool(body, "add_special", &add_special, &e) || get_bool(body, "parse_special", &parse_special, &e)) goto bad;
    if (json_string_length(content) > srv->p.max_tokenize_bytes) {
        set_err(&e, 413, "request_too_large", "content", "'content' has %zu bytes; /tokenize takes at most %zu (--max-tokenize-bytes)",
                json_string_length(content), srv->p.max_tokenize_bytes);
        goto bad;
    }
    if (!gate_enter(&srv->aux)) return send_busy(c, k, "tokenizer requests");
    lfm2c_error err = {0};
    int n = 0;
    int32_t *t = lfm2c_tokenize(srv->model, json_string_value(content), json_string_length(content), add_special,
                                parse_special, &n, &err);
    size_t len = 0;
    char *out = t ? tokens_text(t, n, &len) : NULL;
    gate_leave(&srv->aux);
    free(t);
    if (!t) { set_err(&e, 400, "invalid_value", "content", "%s", err.msg); goto bad; }
    if (!out) { set_err(&e, 500, NULL, NULL, "out of memory"); goto bad; }
    k->status = 200;
    return send_text(c, 200, "application/json", out, len, NULL);
bad:
    k->status = e.status;
    return send_err(c, &e);
}

/* The text of token ids, at most cap bytes; 0, or an error. */
static int detok_text(server *srv, json_t *tokens, size_t cap_out, char **text, size_t *len, http_err *e) {
    size_t cap = 256, i;
    *len = 0;
    *text = malloc(cap);
    if (!*text) return set_err(e, 500, NULL, NULL, "out of memory");
    (*text)[0] = 0;
    lfm2c_detok d;
    lfm2c_detok_init(&d, true);
    json_t *t;
    json_array_foreach(tokens, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= srv->n_vocab)
            return set_err(e, 400, "invalid_value", "tokens", "tokens[%zu] is not a token id of this model", i);
        char piece[600];
        int n = lfm2c_detok_push(&d, srv->model, (int32_t)json_integer_value(t), piece, sizeof piece);
        if (n > 0) buf_add(text, len, &cap, piece, (size_t)(n < (int)sizeof piece ? n : (int)sizeof piece));
        if (!*text) return set_err(e, 500, NULL, NULL, "out of memory");
        if (*len > cap_out)
            return set_err(e, 413, "response_too_large", "tokens", "the text of these tokens is over %zu bytes", cap_out);
    }
    char tail[64];
    int n = lfm2c_detok_flush(&d, tail, sizeof tail);
    if (n > 0) buf_add(text, len, &cap, tail, (size_t)n);
    if (!*text) return set_err(e, 500, NULL, NULL, "out of memory");
    return 0;
}

static enum MHD_Result handle_detokenize(server *srv, struct MHD_Connection *c, conn *k, json_t *body) {
    http_err e;
    json_t *tokens = json_object_get(body, "tokens");
    if (!json_is_array(tokens)) {
        set_err(&e, 400, "invalid_type", "tokens", "'tokens' must be an array of token ids");
        k->status = 400;
        return send_err(c, &e);
    }
    if (json_array_size(tokens) > (size_t)srv->p.max_detokenize_tokens) {
        set_err(&e, 413, "request_too_large", "tokens", "'tokens' has %zu ids; /detokenize takes at most %d (--max-detokenize-tokens)",
                json_array_size(tokens), srv->p.max_detokenize_tokens);
        k->status = 413;
        return send_err(c, &e);
    }
    if (!gate_enter(&srv->aux)) return send_busy(c, k, "tokenizer requests");
    char *text = NULL;
    size_t len = 0;
    int rc = detok_text(srv, tokens, srv->p.max_body, &text, &len, &e);
    gate_leave(&srv->aux);
    json_t *out = rc ? NULL : json_pack("{s:s%}", "content", text, len);
    free(text);
    if (rc || !out) {
        if (!rc) set_err(&e, 500, NULL, NULL, "out of memory");
        k->status = e.status;
        return send_err(c, &e);
    }
    k->status = 200;
    return send_json(c, 200, out);
}

static void metric_hist(FILE *f, const char *name, const char *help, const uint64_t *bucket, uint64_t count,
                        double sum) {
    static const double bounds[SCHED_N_LAT] = SCHED_LAT_BOUNDS;
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < SCHED_N_LAT; i++)
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)bucket[i]);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)count, name,
            sum, name, (unsigned long long)count);
}

/* What a load balancer or an inference gateway reads: the model-server-protocol gauges of the
 * Gateway API Inference Extension under vLLM's names (its endpoint picker works unchanged),
 * prefix-cache counters, latency histograms, readiness. */
static void metrics_gateway(FILE *f, const sched_stats *st, int state) {
    fprintf(f,
            "# HELP vllm:num_requests_waiting Requests waiting for a slot (TotalQueuedRequests).\n"
            "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting %d\n"
            "# HELP vllm:num_requests_running Requests being generated (TotalRunningRequests).\n"
            "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running %d\n"
            "# HELP vllm:kv_cache_usage_perc Context state held by running requests, 0..1 (KVCacheUtilization).\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc %.6f\n"
            "# HELP vllm:gpu_cache_usage_perc Same as vllm:kv_cache_usage_perc (older name).\n"
            "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc %.6f\n"
            "# HELP lfm2c_kv_cache_usage_ratio Context state held by running requests, 0..1.\n"
            "# TYPE lfm2c_kv_cache_usage_ratio gauge\nlfm2c_kv_cache_usage_ratio %.6f\n"
            "# HELP vllm:prefix_cache_queries_total Prompt tokens looked up in the slots' cached state.\n"
            "# TYPE vllm:prefix_cache_queries_total counter\nvllm:prefix_cache_queries_total %llu\n"
            "# HELP vllm:prefix_cache_hits_total Prompt tokens found in a slot's cached state.\n"
            "# TYPE vllm:prefix_cache_hits_total counter\nvllm:prefix_cache_hits_total %llu\n"
            "# HELP vllm:prompt_tokens_total Prompt tokens of admitted requests.\n"
            "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total %llu\n"
            "# HELP vllm:generation_tokens_total Generated tokens.\n"
            "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total %llu\n"
            "# HELP lfm2c_ready 1 when GET /ready would answer 200 (queue limit aside).\n"
            "# TYPE lfm2c_ready gauge\nlfm2c_ready %d\n",
            st->queue_depth, st->active_slots, st->kv_usage, st->kv_usage, st->kv_usage,
            (unsigned long long)st->prompt_tokens, (unsigned long long)st->cached_tokens,
            (unsigned long long)st->prompt_tokens, (unsigned long long)st->generated_tokens, state == SERVER_READY);
    static const struct { const char *a, *b, *help; } h[3] = {
        {"vllm:time_to_first_token_seconds", "lfm2c_time_to_first_token_seconds", "Time to first token."},
        {"vllm:time_per_output_token_seconds", "lfm2c_time_per_output_token_seconds", "Time per output token after the first."},
        {"vllm:e2e_request_latency_seconds", "lfm2c_request_latency_seconds", "Submission to the last token."}};
    const uint64_t *bk[3] = {st->ttft_bucket, st->tpot_bucket, st->e2e_bucket};
    uint64_t cnt[3] = {st->ttft_count, st->tpot_count, st->e2e_count};
    double sum[3] = {st->ttft_sum, st->tpot_sum, st->e2e_sum};
    for (int i = 0; i < 3; i++) {
        metric_hist(f, h[i].a, h[i].help, bk[i], cnt[i], sum[i]);
        metric_hist(f, h[i].b, h[i].help, bk[i], cnt[i], sum[i]);
    }
}

static enum MHD_Result handle_metrics(server *srv, struct MHD_Connection *c, conn *k) {
    sched_stats st;
    sched_get_stats(srv->sched, &st);
    uint64_t h[6];
    pthread_mutex_lock(&srv->mu);
    memcpy(h, srv->http_by_class, sizeof h);
    pthread_mutex_unlock(&srv->mu);
    pthread_mutex_lock(&srv->net_mu);
    int n_open = srv->n_open, n_pending = srv->n_pending;
    uint64_t evicted = srv->n_evicted, refused = srv->n_refused;
    pthread_mutex_unlock(&srv->net_mu);
    enum { CAP = 6144 };
    char *buf = malloc(CAP);
    if (!buf) return MHD_NO;
    double hit = st.prompt_tokens ? (double)st.cached_tokens / (double)st.prompt_tokens : 0;
    int n = snprintf(buf, CAP,
        "# HELP lfm2c_requests_total Generation requests accepted.\n# TYPE lfm2c_requests_total counter\nlfm2c_requests_total %llu\n"
        "# HELP lfm2c_http_responses_total HTTP responses by status class.\n# TYPE lfm2c_http_responses_total counter\n"
        "lfm2c_http_responses_total{class=\"2xx\"} %llu\nlfm2c_http_responses_total{class=\"4xx\"} %llu\n"
        "lfm2c_http_responses_total{class=\"5xx\"} %llu\n"
        "# HELP lfm2c_prompt_tokens_total Prompt tokens of admitted requests.\n# TYPE lfm2c_prompt_tokens_total counter\nlfm2c_prompt_tokens_total %llu\n"
        "# HELP lfm2c_prompt_tokens_cached_total Prompt tokens reused from a slot's cached state.\n# TYPE lfm2c_prompt_tokens_cached_total counter\nlfm2c_prompt_tokens_cached_total %llu\n"
        "# HELP lfm2c_prefix_cache_hit_ratio Cached / all prompt tokens.\n# TYPE lfm2c_prefix_cache_hit_ratio gauge\nlfm2c_prefix_cache_hit_ratio %.6f\n"
        "# HELP lfm2c_prefill_tokens_total Prompt tokens run through the model.\n# TYPE lfm2c_prefill_tokens_total counter\nlfm2c_prefill_tokens_total %llu\n"
        "# HELP lfm2c_generated_tokens_total Completion tokens.\n# TYPE lfm2c_generated_tokens_total counter\nlfm2c_generated_tokens_total %llu\n"
        "# HELP lfm2c_prefill_tokens_per_second Prompt throughput over the server's life.\n# TYPE lfm2c_prefill_tokens_per_second gauge\nlfm2c_prefill_tokens_per_second %.3f\n"
        "# HELP lfm2c_decode_tokens_per_second Generation throughput over the server's life.\n# TYPE lfm2c_decode_tokens_per_second gauge\nlfm2c_decode_tokens_per_second %.3f\n"
        "# HELP lfm2c_queue_depth Requests waiting for a slot.\n# TYPE lfm2c_queue_depth gauge\nlfm2c_queue_depth %d\n"
        "# HELP lfm2c_slots_active Slots generating.\n# TYPE lfm2c_slots_active gauge\nlfm2c_slots_active %d\n"
        "# HELP lfm2c_slots_total Slots.\n# TYPE lfm2c_slots_total gauge\nlfm2c_slots_total %d\n"
        "# HELP lfm2c_batch_steps_total Batched forward passes.\n# TYPE lfm2c_batch_steps_total counter\nlfm2c_batch_steps_total %llu\n"
        "# HELP lfm2c_http_connections_open Open client connections.\n# TYPE lfm2c_http_connections_open gauge\nlfm2c_http_connections_open %d\n"
        "# HELP lfm2c_http_connections_pending Connections not being answered (headers, body or keep-alive idle).\n# TYPE lfm2c_http_connections_pending gauge\nlfm2c_http_connections_pending %d\n"
        "# HELP lfm2c_http_connections_evicted_total Pending connections closed to make room.\n# TYPE lfm2c_http_connections_evicted_total counter\nlfm2c_http_connections_evicted_total %llu\n"
        "# HELP lfm2c_http_connections_refused_total Connections refused at a limit.\n# TYPE lfm2c_http_connections_refused_total counter\nlfm2c_http_connections_refused_total %llu\n",
        (unsigned long long)st.requests, (unsigned long long)h[2], (unsigned long long)h[4], (unsigned long long)h[5],
        (unsigned long long)st.prompt_tokens, (unsigned long long)st.cached_tokens, hit,
        (unsigned long long)st.prefill_tokens, (unsigned long long)st.generated_tokens,
        st.prefill_seconds > 0 ? (double)st.prefill_tokens / st.prefill_seconds : 0,
        st.decode_seconds > 0 ? (double)st.generated_tokens / st.decode_seconds : 0, st.queue_depth, st.active_slots,
        st.n_slots, (unsigned long long)st.steps, n_open, n_pending, (unsigned long long)evicted,
        (unsigned long long)refused);
    k->status = 200;
    size_t len = (size_t)(n < CAP ? n : CAP - 1);
    char *more = NULL;
    size_t n_more = 0;
    FILE *f = open_memstream(&more, &n_more);
    if (f) {
        metrics_gateway(f, &st, atomic_load(&srv->state));
        fclose(f);
    }
    char *all = more ? realloc(buf, len + n_more + 1) : NULL;
    if (all) {
        memcpy(all + len, more, n_more + 1);
        buf = all;
        len += n_more;
    }
    free(more);
    return send_text(c, 200, "text/plain; version=0.0.4", buf, len, NULL);
}

/* ---- connections: accounting, eviction, timeouts ------------------------------------------------ */

/* Closes the oldest pending connection (of ip when by_ip); false when there is none (net_mu held). */
static bool evict_oldest(server *srv, uint32_t ip, bool by_ip) {
    sock *best = NULL;
    for (sock *x = srv->socks; x; x = x->next)
        if (x->pending && !x->evicted && (!by_ip || x->ip == ip) && (!best || x->since < best->since)) best = x;
    if (!best) return false;
    best->evicted = true;
    srv->n_evicting++;
    srv->n_evicted++;
    shutdown(best->fd, SHUT_RDWR); /* its thread sees the end and closes it */
    return true;
}

static uint32_t addr_ip(const struct sockaddr *a, socklen_t len) {
    if (a && a->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr;
    return 0;
}

/* Called before a new connection is accepted: makes room or refuses it. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len) {
    server *srv = cls;
    uint32_t ip = addr_ip(addr, len);
    bool ok = true;
    pthread_mutex_lock(&srv->net_mu);
    if (srv->stopping) {
        ok = false;
    } else {
        int ip_pending = 0, ip_all = 0;
        for (sock *x = srv->socks; x; x = x->next)
            if (!x->evicted && x->ip == ip) { ip_all++; ip_pending += x->pending; }
        if (srv->p.max_pending_per_ip > 0 && ip_pending >= srv->p.max_pending_per_ip && evict_oldest(srv, ip, true)) ip_all--;
        if (srv->n_open - srv->n_evicting >= srv->p.max_connections && !evict_oldest(srv, 0, false)) ok = false;
        if (ok && srv->p.max_connections_per_ip > 0 && ip_all >= srv->p.max_connections_per_ip && !evict_oldest(srv, ip, true))
            ok = false;
    }
    if (!ok) srv->n_refused++;
    pthread_mutex_unlock(&srv->net_mu);
    return ok ? MHD_YES : MHD_NO;
}

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe) {
    server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        sock *x = calloc(1, sizeof *x);
        if (!x) return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        x->fd = ci ? ci->connect_fd : -1;
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        x->ip = ci ? addr_ip(ci->client_addr, sizeof(struct sockaddr_in)) : 0;
        x->since = sched_now();
        x->pending = true;
        x->srv = srv;
        pthread_mutex_lock(&srv->net_mu);
        x->next = srv->socks;
        if (srv->socks) srv->socks->prev = x;
        srv->socks = x;
        srv->n_open++;
        srv->n_pending++;
        pthread_mutex_unlock(&srv->net_mu);
        *socket_context = x;
        return;
    }
    sock *x = *socket_context;
    if (!x) return;
    pthread_mutex_lock(&srv->net_mu);
    if (x->prev) x->prev->next = x->next;
    else srv->socks = x->next;
    if (x->next) x->next->prev = x->prev;
    srv->n_open--;
    srv->n_pending -= x->pending;
    srv->n_evicting -= x->evicted;
    pthread_mutex_unlock(&srv->net_mu);
    *socket_context = NULL;
    free(x);
}

/* Marks the connection pending (nobody answered: short idle timeout, may be evicted) or busy. */
static void conn_pending(server *srv, struct MHD_Connection *c, bool pending) {
    sock *x = conn_sock(c);
    if (x) {
        pthread_mutex_lock(&srv->net_mu);
        srv->n_pending += (int)pending - (int)x->pending;
        x->pending = pending;
        x->since = sched_now();
        pthread_mutex_unlock(&srv->net_mu);
    }
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)(pending ? srv->p.idle_timeout : srv->p.timeout));
}

/* The API key from 'Authorization: Bearer KEY' or 'x-api-key: KEY', compared in constant time. */
static bool key_ok(server *srv, struct MHD_Connection *c) {
    if (!srv->p.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h && !strncasecmp(h, "Bearer ", 7)) h += 7;
    else h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    if (!h) return false;
    size_t a = strlen(h), b = strlen(srv->p.api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)srv->p.api_key[i % (b ? b : 1)];
    return diff == 0;
}

enum { ROUTE_NONE, ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_TOKENIZE, ROUTE_DETOKENIZE, ROUTE_DIALECT, ROUTE_COUNT_TOKENS, ROUTE_OLLAMA_SHOW };

static int post_route(const char *url) {
    static const struct { const char *url; int route; } posts[] = {
        {"/v1/chat/completions", ROUTE_CHAT}, {"/chat/completions", ROUTE_CHAT}, {"/v1/completions", ROUTE_COMPLETIONS},
        {"/completions", ROUTE_COMPLETIONS}, {"/tokenize", ROUTE_TOKENIZE}, {"/detokenize", ROUTE_DETOKENIZE},
        /* other APIs (server_dialect.h) */
        {"/v1/responses", ROUTE_DIALECT}, {"/responses", ROUTE_DIALECT}, {"/v1/messages", ROUTE_DIALECT},
        {"/v1/messages/count_tokens", ROUTE_COUNT_TOKENS}, {"/api/chat", ROUTE_DIALECT}, {"/api/generate", ROUTE_DIALECT},
        {"/api/show", ROUTE_OLLAMA_SHOW}};
    for (size_t i = 0; i < sizeof posts / sizeof *posts; i++)
        if (!strcmp(url, posts[i].url)) return posts[i].route;
    return ROUTE_NONE;
}

/* ---- other APIs (server_dialect.h): translated into chat requests ------------------------------ */

/* POST /v1/messages/count_tokens: the prompt the chat request would render, counted. */
static enum MHD_Result count_tokens(server *srv, struct MHD_Connection *c, conn *k, json_t *chat) {
    http_err e;
    job *j = job_new(srv);
    if (!j) {
        set_err(&e, 500, NULL, NULL, "out of memory");
        k->status = 500;
        return send_err(c, &e);
    }
    j->chat = true;
    int rc = build_chat(srv, chat, j, &e), n = j->rs[0]->n_prompt;
    job_free(j);
    if (rc) { k->status = e.status; return send_err(c, &e); }
    k->status = 200;
    k->prompt_tokens = n;
    return send_json(c, 200, json_pack("{s:i}", "input_tokens", n));
}

static enum MHD_Result handle_dialect(server *srv, struct MHD_Connection *c, conn *k, json_t *body) {
    dl_server v = dl_view(srv);
    dl_err de = {0};
    http_err e;
    if (k->route == ROUTE_OLLAMA_SHOW) {
        json_t *o = ollama_show(&v, body, &de);
        if (o) { k->status = 200; return send_json(c, 200, o); }
    } else if (k->route == ROUTE_COUNT_TOKENS) {
        json_t *chat = anthropic_count_request(&v, body, &de);
        if (chat) {
            enum MHD_Result r = count_tokens(srv, c, k, chat);
            json_decref(chat);
            return r;
        }
    } else {
        bool legacy = false;
        json_t *chat = k->dl->request(&v, body, &k->dls, &legacy, &de);
        if (chat) {
            enum MHD_Result r = handle_generate(srv, c, k, chat, !legacy);
            json_decref(chat);
            if (k->dls) { k->dl->free_state(k->dls); k->dls = NULL; } /* no job took it */
            return r;
        }
        if (de.status == 200 && de.answer) { k->status = 200; return send_json(c, 200, de.answer); }
    }
    json_decref(de.answer);
    int status = de.status >= 400 ? de.status : 400;
    set_err(&e, status, status == 404 ? "not_found" : status >= 500 ? NULL : "invalid_value", de.param[0] ? de.param : NULL,
            "%s", de.msg);
    k->status = status;
    return send_err(c, &e);
}

/* HEAD / always, GET / from an Ollama client (its User-Agent): "Ollama is running". A browser's
 * GET / is left to the other routes. */
static bool ollama_root(struct MHD_Connection *c, const char *method) {
    if (!strcmp(method, "HEAD")) return true;
    if (strcmp(method, "GET")) return false;
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    return ua && strcasestr(ua, "ollama");
}

static json_t *model_json(server *srv) {
    const lfm2c_model_info *mi = lfm2c_model_get_info(srv->model);
    return json_pack("{s:s,s:s,s:I,s:s,s:{s:s,s:i,s:i,s:I}}", "id", srv->alias, "object", "model", "created",
                     (json_int_t)srv->started, "owned_by", "lfm2c", "meta", "arch", mi->arch, "n_ctx", srv->n_ctx,
                     "n_vocab", srv->n_vocab, "n_params", (json_int_t)mi->n_params);
}

static enum MHD_Result send_preflight(struct MHD_Connection *c, conn *k) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    add_common_headers(c, r);
    MHD_add_response_header(r, "Allow", "GET, POST, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    k->status = 204;
    enum MHD_Result ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

/* The first call, with the headers only: answers whatever needs no body (and refuses what must
 * not upload one), else records the route and lets the body come. */
/* ---- lifecycle: loading -> ready -> draining (what a load balancer's probes read) ---------- */

static const char *state_name(int state) {
    return state == SERVER_LOADING ? "loading" : state == SERVER_DRAINING ? "draining" : "ok";
}

/* GET /ready: 200 when this replica should get traffic; 503 while the model loads, while draining
 * and, with ready_queue_max, while that many requests already wait for a slot. */
static enum MHD_Result send_ready(server *srv, struct MHD_Connection *c, conn *k, int state) {
    int queued = -1;
    if (state == SERVER_READY && srv->p.ready_queue_max > 0) {
        sched_stats st;
        sched_get_stats(srv->sched, &st);
        queued = st.queue_depth;
        if (queued >= srv->p.ready_queue_max) state = -1;
    }
    bool ok = state == SERVER_READY;
    k->status = ok ? 200 : 503;
    const char *why = state == -1 ? "queue_full" : state_name(state);
    json_t *j = queued >= 0 ? json_pack("{s:s,s:i}", "status", ok ? "ready" : why, "queued", queued)
                            : json_pack("{s:s}", "status", ok ? "ready" : why);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return MHD_NO;
    return send_text(c, k->status, "application/json", s, strlen(s), ok ? NULL : "1");
}

/* 503 + Retry-After while loading or draining: a balancer retries it on another replica. */
static enum MHD_Result send_not_ready(struct MHD_Connection *c, conn *k, int state) {
    http_err e;
    set_err(&e, 503, state == SERVER_LOADING ? "model_loading" : "server_draining", NULL,
            state == SERVER_LOADING ? "the model is loading; retry shortly"
                                    : "the server is shutting down; send the request to another replica");
    k->status = 503;
    return send_err(c, &e);
}

void server_attach(server *srv, lfm2c_model *model, sched *s, int n_ctx) {
    srv->model = model;
    srv->sched = s;
    srv->n_ctx = n_ctx;
    srv->n_vocab = lfm2c_vocab_size(model);
    atomic_store(&srv->state, SERVER_READY);
}

void server_drain(server *srv) { atomic_store(&srv->state, SERVER_DRAINING); }

/* The chat page (web/index.html, compiled in): public, so it can ask for the API key itself. */
extern const unsigned char lfm2c_web_index[];
extern const size_t lfm2c_web_index_len;
static enum MHD_Result send_page(struct MHD_Connection *c, conn *k) {
    struct MHD_Response *r = MHD_create_response_from_buffer(lfm2c_web_index_len, (void *)lfm2c_web_index, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:");
    k->status = 200;
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_headers(server *srv, struct MHD_Connection *c, conn *k, const char *url, const char *method) {
    http_err e;
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) { conn_pending(srv, c, false); return send_preflight(c, k); }
    conn_pending(srv, c, false); /* answered now, or the body is on its way */
    sock *sk = conn_sock(c);
    if (sk) sk->dl = dialect_for_url(url); /* errors from here take that API's shape */
    int state = atomic_load(&srv->state);
    if (!strcmp(url, "/health") && get) { /* liveness: the process answers HTTP */
        k->status = 200;
        return send_json(c, 200, json_pack("{s:s}", "status", state_name(state)));
    }
    if (!strcmp(url, "/ready") && get) return send_ready(srv, c, k, state);
    if (!strcmp(url, "/") && ollama_root(c, method)) { /* Ollama clients probe this */
        k->status = 200;
        char *s = strdup("Ollama is running");
        return s ? send_text(c, 200, "text/plain; charset=utf-8", s, strlen(s), NULL) : MHD_NO;
    }
    if (!strcmp(method, "GET") && (!strcmp(url, "/") || !strcmp(url, "/index.html"))) return send_page(c, k);
    /* not ready: GETs are answered 503 here; a POST's body is read first (on_request answers),
     * since closing on an unread body resets the connection before a proxy reads the 503 */
    if (state == SERVER_LOADING && !post) return send_not_ready(c, k, state);
    if (!key_ok(srv, c)) {
        set_err(&e, 401, "invalid_api_key", NULL,
                "Incorrect or missing API key (send 'Authorization: Bearer KEY' or 'x-api-key: KEY')");
        k->status = 401;
        return send_err(c, &e);
    }
    const char *models = !strncmp(url, "/v1/models", 10) ? url + 10 : !strncmp(url, "/models", 7) ? url + 7 : NULL;
    if (models && get && !*models) {
        k->status = 200;
        return send_json(c, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", model_json(srv)));
    }
    if (models && get && models[0] == '/' && models[1]) {
        const char *id = models + 1;
        if (server_model_matches(srv, id)) {
            k->status = 200;
            return send_json(c, 200, model_json(srv));
        }
        set_err(&e, 404, "model_not_found", "model", "The model '%.200s' does not exist (this server has '%.200s')", id, srv->alias);
        k->status = 404;
        return send_err(c, &e);
    }
    if (get && (!strcmp(url, "/api/tags") || !strcmp(url, "/api/ps") || !strcmp(url, "/api/version"))) {
        dl_server v = dl_view(srv);
        k->status = 200;
        return send_json(c, 200, url[5] == 'v' ? ollama_version() : ollama_tags(&v, url[5] == 'p'));
    }
    if (!strcmp(url, "/metrics") && get) {
        if (!srv->p.metrics) {
            set_err(&e, 404, "not_found", NULL, "metrics are off (start the server with --metrics)");
            k->status = 404;
            return send_err(c, &e);
        }
        return handle_metrics(srv, c, k);
    }
    k->route = post_route(url);
    if (k->route == ROUTE_DIALECT) k->dl = dialect_for_url(url);
    if (k->route == ROUTE_NONE) {
        set_err(&e, 404, "not_found", NULL, "no route %.11s %.300s", method, url);
        k->status = 404;
        return send_err(c, &e);
    }
    if (!post) {
        set_err(&e, 405, "method_not_allowed", NULL, "%.300s needs POST", url);
        k->status = 405;
        return send_err(c, &e);
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || n > srv->p.max_body) {
            set_err(&e, 413, "request_too_large", NULL, "the request body is larger than %zu bytes (--max-body)", srv->p.max_body);
            k->status = 413;
            return send_err(c, &e);
        }
    }
    conn_pending(srv, c, true); /* until the body is complete */
    return MHD_YES;
}

static enum MHD_Result on_body(server *srv, conn *k, const char *upload, size_t n) {
    if (k->too_big) return MHD_YES; /* chunked upload past the limit: read and dropped */
    if (k->n_body + n > srv->p.max_body) {
        k->too_big = true;
        free(k->body);
        k->body = NULL;
        k->n_body = k->cap_body = 0;
        return MHD_YES;
    }
    if (k->n_body + n + 1 > k->cap_body) {
        size_t cap = k->cap_body ? k->cap_body : 4096;
        while (cap < k->n_body + n + 1) cap *= 2;
        char *nb = realloc(k->body, cap);
        if (!nb) return MHD_NO;
        k->body = nb;
        k->cap_body = cap;
    }
    memcpy(k->body + k->n_body, upload, n);
    k->n_body += n;
    return MHD_YES;
}

/* The body is complete: parse it and run the route. */
static enum MHD_Result on_request(server *srv, struct MHD_Connection *c, conn *k) {
    http_err e;
    conn_pending(srv, c, false);
    if (k->too_big) {
        set_err(&e, 413, "request_too_large", NULL, "the request body is larger than %zu bytes (--max-body)", srv->p.max_body);
        k->status = 413;
        return send_err(c, &e);
    }
    int state = atomic_load(&srv->state);
    if (state != SERVER_READY) return send_not_ready(c, k, state);
    if (k->n_body > BIG_BODY) {
        if (!gate_enter(&srv->big)) return send_busy(c, k, "large requests");
        k->big = true;
    }
    json_error_t je;
    json_t *body = k->body ? json_loadb(k->body, k->n_body, 0, &je) : NULL;
    bool had_body = k->body != NULL;
    free(k->body); /* not needed past here */
    k->body = NULL;
    k->n_body = k->cap_body = 0;
    enum MHD_Result ret;
    if (!body) {
        set_err(&e, 400, "invalid_json", NULL, "the body is not valid JSON%s%s", had_body ? ": " : "", had_body ? je.text : "");
        k->status = 400;
        ret = send_err(c, &e);
    } else if (!json_is_object(body)) {
        set_err(&e, 400, "invalid_type", NULL, "the body must be a JSON object");
        k->status = 400;
        ret = send_err(c, &e);
    } else if (k->route == ROUTE_CHAT || k->route == ROUTE_COMPLETIONS) {
        ret = handle_generate(srv, c, k, body, k->route == ROUTE_CHAT);
    } else if (k->route >= ROUTE_DIALECT) {
        ret = handle_dialect(srv, c, k, body);
    } else if (k->route == ROUTE_TOKENIZE) {
        ret = handle_tokenize(srv, c, k, body);
    } else {
        ret = handle_detokenize(srv, c, k, body);
    }
    json_decref(body);
    if (k->big) { gate_leave(&srv->big); k->big = false; }
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *srv = cls;
    conn *k = *con_cls;
    (void)version;
    if (!k) {
        if (!(k = calloc(1, sizeof *k))) return MHD_NO;
        k->t0 = sched_now();
        snprintf(k->method, sizeof k->method, "%s", method);
        snprintf(k->url, sizeof k->url, "%s", url);
        snprintf(k->addr, sizeof k->addr, "-");
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, k->addr, sizeof k->addr);
        *con_cls = k;
        return on_headers(srv, c, k, url, method);
    }
    if (k->status) { *upload_size = 0; return MHD_YES; } /* answered from the headers */
    if (*upload_size) {
        enum MHD_Result r = on_body(srv, k, upload, *upload_size);
        *upload_size = 0;
        return r;
    }
    return on_request(srv, c, k);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    server *srv = cls;
    conn *k = *con_cls;
    conn_pending(srv, c, true); /* idle until the next request (keep-alive) */
    if (!k) return;
    if (!k->streaming) { /* streams log when their response ends */
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && k->status == 200) k->status = 499;
        if (!k->status) k->status = 499;
        log_request(srv, k);
    }
    if (k->big) gate_leave(&srv->big);
    *con_cls = NULL;
    free(k->body);
    free(k);
}

static void server_free(server *srv) {
    pthread_mutex_destroy(&srv->mu);
    pthread_mutex_destroy(&srv->net_mu);
    resp_store_free(srv->responses);
    pthread_mutex_destroy(&srv->aux.mu);
    pthread_cond_destroy(&srv->aux.cv);
    pthread_mutex_destroy(&srv->big.mu);
    pthread_cond_destroy(&srv->big.cv);
    free(srv);
}

server *server_start(lfm2c_model *model, sched *s, const server_params *p, lfm2c_error *err) {
    server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->model = model;
    srv->sched = s;
    srv->p = *p;
    server_params *q = &srv->p;
    if (!q->max_body) q->max_body = SERVER_DEFAULT_MAX_BODY;
    if (q->idle_timeout <= 0) q->idle_timeout = SERVER_DEFAULT_IDLE_TIMEOUT;
    if (q->timeout <= 0) q->timeout = SERVER_DEFAULT_TIMEOUT;
    if (q->max_connections <= 0) q->max_connections = SERVER_DEFAULT_MAX_CONNECTIONS;
    if (q->max_pending_per_ip == 0) q->max_pending_per_ip = SERVER_DEFAULT_MAX_PENDING_PER_IP;
    if (!q->max_tokenize_bytes) q->max_tokenize_bytes = SERVER_DEFAULT_MAX_TOKENIZE_BYTES;
    if (q->max_detokenize_tokens <= 0) q->max_detokenize_tokens = SERVER_DEFAULT_MAX_DETOKENIZE_TOKENS;
    if (q->max_messages <= 0) q->max_messages = SERVER_DEFAULT_MAX_MESSAGES;
    if (q->max_stop_bytes <= 0) q->max_stop_bytes = SERVER_DEFAULT_MAX_STOP_BYTES;
    srv->n_vocab = model ? lfm2c_vocab_size(model) : 0;
    atomic_init(&srv->state, model && s ? SERVER_READY : SERVER_LOADING);
    srv->started = time(NULL);
    srv->tool_ids = (uint64_t)srv->started * 2654435761u;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_mutex_init(&srv->net_mu, NULL);
    srv->responses = resp_store_new(SERVER_RESPONSES_KEPT, SERVER_RESPONSES_BYTES);
    gate_init(&srv->aux, SERVER_AUX_PARALLEL);
    gate_init(&srv->big, SERVER_AUX_PARALLEL);
    snprintf(srv->alias, sizeof srv->alias, "%s", p->alias && *p->alias ? p->alias : "lfm2c");
    snprintf(srv->model_file, sizeof srv->model_file, "%s", p->model_file ? p->model_file : "");
    srv->n_ctx = p->n_ctx;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)p->port);
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        if (err) { err->code = LFM2C_EINVAL; snprintf(err->msg, sizeof err->msg, "--host '%s' is not an IPv4 address", host); }
        server_free(srv);
        return NULL;
    }
    /* MHD's own limit leaves room for connections we are closing (see accept_policy) */
    unsigned mhd_limit = (unsigned)q->max_connections + 64;
    srv->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC,
                                (uint16_t)p->port, accept_policy, srv, handler, srv, MHD_OPTION_SOCK_ADDR,
                                (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
                                MHD_OPTION_NOTIFY_CONNECTION, notify_connection, srv, MHD_OPTION_CONNECTION_TIMEOUT,
                                (unsigned)q->idle_timeout, MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
                                MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)512, MHD_OPTION_END);
    if (!srv->mhd) {
        if (err) { err->code = LFM2C_EIO; snprintf(err->msg, sizeof err->msg, "cannot listen on %s:%d (in use?)", host, p->port); }
        server_free(srv);
        return NULL;
    }
    return srv;
}

int server_port(const server *srv) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : 0;
}

void server_stop(server *srv) {
    if (!srv) return;
    pthread_mutex_lock(&srv->net_mu);
    srv->stopping = true; /* refuse new connections */
    pthread_mutex_unlock(&srv->net_mu);
    MHD_socket lfd = MHD_quiesce_daemon(srv->mhd);
    /* let answers of requests the scheduler just ended reach their clients (bounded wait) */
    for (int i = 0; i < 150; i++) {
        pthread_mutex_lock(&srv->mu);
        int n = srv->jobs;
        pthread_mutex_unlock(&srv->mu);
        if (!n) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* whatever is still open is cut: blocked reads and writes of its thread end at once */
    pthread_mutex_lock(&srv->net_mu);
    for (sock *x = srv->socks; x; x = x->next)
        if (x->fd >= 0) shutdown(x->fd, SHUT_RDWR);
    pthread_mutex_unlock(&srv->net_mu);
    MHD_stop_daemon(srv->mhd);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    server_free(srv);
}
