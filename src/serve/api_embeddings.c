/* api_embeddings.c — the embedding routes of `lfm2c serve`: OpenAI's POST /v1/embeddings (input: a
 * string, an array of strings, of token ids or of such arrays; encoding_format float or base64;
 * dimensions; usage) and Ollama's POST /api/embed (input: a string or strings; truncate) and the
 * older /api/embeddings (prompt; the vector as it is, not normalized). Each input is a scheduler
 * request that reads its prompt in an embedding session (scheduler.h `embed`), batched with
 * whatever else runs (CPU and Vulkan backends); the vector is pooled as `serve --pooling` says (lfm2c.h LFM2C_POOL_*) and
 * scaled to unit length. A large request runs a window of inputs at a time. Errors keep each
 * API's shape (the path's, http.c). */
#include "serve/api_embeddings.h"
#include "serve/job.h"
#include "serve/models.h"
#include "base/clock.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    EMBED_MAX_INPUTS = 2048, /* inputs of one request (OpenAI's limit) */
    EMBED_WINDOW = 8,        /* of them in the scheduler at once */
};

typedef enum { EMB_OPENAI, EMB_OLLAMA, EMB_OLLAMA_LEGACY } emb_api;

typedef struct emb_opts {
    emb_api api;
    bool base64;                           /* OpenAI encoding_format "base64": little-endian float32 bytes */
    bool normalize;                        /* unit length (all but /api/embeddings) */
    bool truncate;                         /* Ollama: an input longer than the context is cut to it (else 400) */
    int dims;                              /* the leading dimensions kept (then normalized again); 0: all */
    char model[SERVER_MAX_MODEL_NAME + 1]; /* Ollama: the name the request gave, echoed (the body is freed first) */
} emb_opts;

/* ---- the request ------------------------------------------------------------------------------ */

/* The model the body names ("model"; absent: the default), held: NULL with e set (404 in the
 * request's API's words; Ollama's keep_alive read). */
static serve_api *hold_model(serve_shared *sh, json_t *body, const emb_opts *o, http_err *e) {
    json_t *m = json_object_get(body, "model");
    if (req_model_name(body, e)) return NULL;
    if (m && !json_is_null(m) && !json_is_string(m) && (o->api != EMB_OPENAI || !sh->p.any_model)) {
        http_set_err(e, 400, "invalid_type", "model", "'model' must be a string");
        return NULL;
    }
    double keep_alive = NAN;
    dl_err de = {0};
    if (o->api != EMB_OPENAI && dialect_ollama.keep_alive(body, &keep_alive, &de)) {
        http_set_err(e, de.status, "invalid_value", "keep_alive", "%s", de.msg);
        return NULL;
    }
    return api_hold(sh, json_string_value(m), keep_alive, o->api == EMB_OPENAI ? &dialect_openai : &dialect_ollama, e);
}

/* The adapter the body's model names, and the name the answer echoes (Ollama: as given). */
static int check_model(serve_api *api, json_t *body, job *j, emb_opts *o, http_err *e) {
    if (o->api == EMB_OPENAI) return job_check_model(api, body, j, e);
    const char *id = json_string_value(json_object_get(body, "model"));
    int li = id ? api_lora_index(api, id) : -1;
    if (li >= 0) {
        j->rs[0]->lora = api->p.loras[li];
        j->rs[0]->lora_scale = api->p.lora_scales ? api->p.lora_scales[li] : 1.0f;
    }
    dl_copy_text(o->model, sizeof o->model, id && *id ? id : api->alias);
    j->model_id = o->model;
    return 0;
}

/* encoding_format, dimensions (OpenAI); truncate, dimensions (Ollama). */
static int read_opts(serve_api *api, json_t *body, emb_opts *o, http_err *e) {
    const int H = lfm2c_model_get_info(api->model)->n_embd;
    long long dims = 0;
    json_t *f = json_object_get(body, "encoding_format");
    if (o->api == EMB_OPENAI && f && !json_is_null(f)) {
        const char *v = json_string_value(f);
        if (!v || (strcmp(v, "float") && strcmp(v, "base64")))
            return http_set_err(e, 400, "invalid_value", "encoding_format",
                                "'encoding_format' must be float or base64");
        o->base64 = !strcmp(v, "base64");
    }
    if (o->api == EMB_OLLAMA && req_bool(body, "truncate", &o->truncate, e)) return -1;
    if (o->api != EMB_OLLAMA_LEGACY && req_int(body, "dimensions", 0, 1 << 30, &dims, e)) return -1;
    if (dims < 0 || dims > H || (dims == 0 && json_is_integer(json_object_get(body, "dimensions"))))
        return http_set_err(e, 400, "invalid_value", "dimensions",
                            "'dimensions' must be from 1 to this model's %d (it keeps the leading ones)", H);
    o->dims = (int)dims;
    return 0;
}

/* The inputs of the body: OpenAI's and /api/embed's "input", /api/embeddings' "prompt". An
 * empty input of Ollama's (no text at all) asks for nothing: 0 inputs. */
static json_t *input_list(json_t *body, const emb_opts *o, http_err *e) {
    const char *field = o->api == EMB_OLLAMA_LEGACY ? "prompt" : "input";
    json_t *in = json_object_get(body, field);
    if (o->api != EMB_OPENAI &&
        (!in || (json_is_string(in) && !json_string_length(in)) || (json_is_array(in) && !json_array_size(in))))
        return json_array();
    if (o->api != EMB_OPENAI && !json_is_string(in)) {
        size_t i;
        json_t *x;
        bool strings = json_is_array(in) && o->api == EMB_OLLAMA;
        json_array_foreach(in, i, x) strings &= json_is_string(x);
        if (!strings) {
            http_set_err(e, 400, "invalid_type", field, "'%s' must be a string%s", field,
                         o->api == EMB_OLLAMA ? " or an array of strings" : "");
            return NULL;
        }
    }
    json_t *list = req_prompt_list(in, field, e);
    if (list && json_array_size(list) > EMBED_MAX_INPUTS) {
        http_set_err(e, 400, "invalid_value", field, "at most %d inputs per request", EMBED_MAX_INPUTS);
        json_decref(list);
        return NULL;
    }
    for (size_t i = 0; list && o->api == EMB_OPENAI && i < json_array_size(list); i++) {
        json_t *x = json_array_get(list, i);
        if ((json_is_string(x) && !json_string_length(x)) || (json_is_array(x) && !json_array_size(x))) {
            http_set_err(e, 400, "invalid_value", field, "input %zu is empty", i);
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/* One scheduler request per input: its tokens (cut to the context when truncating). */
static int build_requests(serve_api *api, job *j, json_t *list, const emb_opts *o, http_err *e) {
    const size_t n = json_array_size(list);
    sched_req *base = j->rs[0];
    sched_req **rs = calloc(n ? n : 1, sizeof *rs);
    if (!rs) return http_set_err(e, 500, NULL, NULL, "out of memory");
    free(j->rs);
    j->rs = rs;
    j->n_rs = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        sched_req *r = i == 0 ? base : sched_req_new();
        if (!r) {
            rc = http_set_err(e, 500, NULL, NULL, "out of memory");
            break;
        }
        j->rs[j->n_rs++] = r;
        free(r->prompt);
        r->prompt = NULL;
        if ((rc = req_prompt_tokens(api, json_array_get(list, i), o->api == EMB_OLLAMA_LEGACY ? "prompt" : "input", i,
                                    &r->prompt, &r->n_prompt, e)))
            break;
        if (r->n_prompt > api->n_ctx && o->truncate) r->n_prompt = api->n_ctx;
        if (r->n_prompt > api->n_ctx)
            rc = http_set_err(e, 400, "context_length_exceeded", "input",
                              "this model's context is %d tokens; input %zu has %d tokens", api->n_ctx, i, r->n_prompt);
        if (!rc && !(r->embedding = calloc((size_t)lfm2c_model_get_info(api->model)->n_embd, sizeof(float))))
            rc = http_set_err(e, 500, NULL, NULL, "out of memory");
        r->embed = true;
        r->pooling = api->p.pooling;
        r->max_tokens = 0;
        r->lora = base->lora;
        r->lora_scale = base->lora_scale;
        r->notify = &j->cond;
    }
    if (n == 0) sched_release(api->sched, base); /* nothing to run */
    return rc;
}

/* ---- running ---------------------------------------------------------------------------------- */

/* Runs the job's requests, EMBED_WINDOW at a time: 0 when all ended, 1 when the client left, -1
 * with e set (the queue is full with nothing of ours in it, or a request failed). */
static int run_requests(serve_api *api, http_req *q, job *j, http_err *e) {
    int next = 0, ended = 0;
    while (ended < j->n_rs) {
        while (next < j->n_rs && next - ended < EMBED_WINDOW && sched_submit(api->sched, j->rs[next]) == 0) next++;
        if (next == ended)
            return http_set_err(e, 503, "server_overloaded", NULL,
                                "all slots are busy and the queue is full; retry later");
        sched_lock(api->sched);
        if (j->rs[ended]->finish == FINISH_NONE) sched_wait(api->sched, j->rs[ended], 100);
        for (; ended < next && j->rs[ended]->finish != FINISH_NONE; ended++) {
            const sched_req *r = j->rs[ended];
            if (r->finish == FINISH_ERROR || r->finish == FINISH_CANCELLED) {
                int status = r->finish == FINISH_CANCELLED ? 503 : r->error_status == 400 ? 400 : 500;
                http_set_err(e, status, status == 400 ? "invalid_value" : "embedding_failed", NULL, "%s",
                             status == 503 ? "the server is shutting down" : r->error);
                sched_unlock(api->sched);
                return -1;
            }
        }
        sched_unlock(api->sched);
        if (ended < j->n_rs && http_client_gone(q)) return 1;
    }
    return 0;
}

/* ---- the answer ------------------------------------------------------------------------------- */

static char *base64_of(const unsigned char *b, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    for (size_t i = 0; out && i < n; i += 3) {
        unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        *p++ = A[v >> 18 & 63];
        *p++ = A[v >> 12 & 63];
        *p++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? A[v & 63] : '=';
    }
    if (p) *p = 0;
    return out;
}

/* The vector (its leading dims, normalized or not: the caller's) as the answer gives it: a JSON
 * array of exactly n numbers, or base64 of its float32 bytes (little-endian, as x86 and ARM64
 * store them). NULL when out of memory. */
static json_t *vector_json(const float *v, int n, const emb_opts *o) {
    if (o->base64) {
        char *s = base64_of((const unsigned char *)v, sizeof(float) * (size_t)n);
        json_t *j = s ? json_string(s) : NULL;
        free(s);
        return j;
    }
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(v[i]))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

/* Every value finite: an answer never carries a shorter vector or one of NaN (the scheduler
 * fails such a request already; the answer checks again, before and after normalizing). */
static bool vector_ok(const float *v, int n) {
    bool ok = true;
    for (int i = 0; i < n; i++) ok &= isfinite(v[i]) != 0;
    return ok;
}

static json_t *answer(serve_api *api, job *j, const emb_opts *o, double seconds, http_err *e) {
    const int H = lfm2c_model_get_info(api->model)->n_embd, n = o->dims ? o->dims : H;
    long long tokens = 0;
    json_t *vecs = json_array();
    for (int i = 0; vecs && i < j->n_rs; i++) {
        sched_req *r = j->rs[i];
        tokens += r->n_prompt;
        bool ok = vector_ok(r->embedding, H);
        if (ok && o->normalize) lfm2c_embedding_normalize(r->embedding, n);
        if (!ok || !vector_ok(r->embedding, n)) {
            http_set_err(e, 500, "embedding_failed", NULL,
                         "input %d: the embedding is not finite (NaN or infinity): the model's weights, or the "
                         "adapter's, overflow",
                         i);
            json_decref(vecs);
            return NULL;
        }
        json_t *v = vector_json(r->embedding, n, o);
        if (o->api == EMB_OPENAI)
            v = v ? json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding", v) : NULL;
        if (!v || json_array_append_new(vecs, v)) {
            json_decref(vecs);
            return NULL;
        }
    }
    if (!vecs) return NULL;
    if (o->api == EMB_OLLAMA_LEGACY) {
        json_t *one = j->n_rs ? json_incref(json_array_get(vecs, 0)) : json_array();
        json_decref(vecs);
        return json_pack("{s:o}", "embedding", one);
    }
    if (o->api == EMB_OLLAMA)
        return json_pack("{s:s,s:o,s:I,s:i,s:I}", "model", j->model_id, "embeddings", vecs, "total_duration",
                         (json_int_t)(seconds * 1e9), "load_duration", 0, "prompt_eval_count", (json_int_t)tokens);
    return json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", vecs, "model", j->model_id, "usage",
                     "prompt_tokens", (json_int_t)tokens, "total_tokens", (json_int_t)tokens);
}

/* What the request holds while it runs: its tokens, and its vectors as JSON text at most. */
static size_t request_bytes(const serve_api *api, const job *j) {
    size_t n = (size_t)lfm2c_model_get_info(api->model)->n_embd * (size_t)j->n_rs * (sizeof(float) + 32);
    for (int i = 0; i < j->n_rs; i++) n += sizeof(sched_req) + sizeof(int32_t) * (size_t)j->rs[i]->n_prompt;
    return n;
}

static int embed_route(http_req *q, json_t *body, emb_opts o) {
    http_err e;
    serve_api *api = hold_model(http_app(q), body, &o, &e);
    if (!api) return http_send_err(q, &e);
    job *j = job_new(api);
    if (!j) {
        models_release(api);
        return http_set_err(&e, 500, NULL, NULL, "out of memory"), http_send_err(q, &e);
    }
    double t0 = lfm2c_now_s();
    json_t *list = NULL;
    bool bad = check_model(api, body, j, &o, &e) || read_opts(api, body, &o, &e) ||
               !(list = input_list(body, &o, &e)) || build_requests(api, j, list, &o, &e) ||
               !http_hold(q, request_bytes(api, j), &e);
    json_decref(list);
    int rc = bad ? -1 : j->n_rs ? run_requests(api, q, j, &e) : 0;
    if (rc == 1) {
        job_free(j);
        return http_drop(q);
    }
    json_t *out = NULL;
    if (!rc) {
        e.status = 0;
        if (!(out = answer(api, j, &o, lfm2c_now_s() - t0, &e)) && !e.status)
            http_set_err(&e, 500, NULL, NULL, "out of memory");
    }
    for (int i = 0; i < j->n_rs; i++) http_req_log(q)->prompt_tokens += j->rs[i]->n_prompt;
    job_free(j);
    return out ? http_send_json(q, 200, out) : http_send_err(q, &e);
}

static int route_openai(http_req *q, json_t *body) {
    return embed_route(q, body, (emb_opts){.api = EMB_OPENAI, .normalize = true});
}

static int route_ollama(http_req *q, json_t *body) {
    return embed_route(q, body, (emb_opts){.api = EMB_OLLAMA, .normalize = true, .truncate = true});
}

static int route_ollama_legacy(http_req *q, json_t *body) {
    return embed_route(q, body, (emb_opts){.api = EMB_OLLAMA_LEGACY, .truncate = true});
}

const http_route embedding_routes[] = {
    {HTTP_POST, "/v1/embeddings", route_openai, 0, NULL},
    {HTTP_POST, "/embeddings", route_openai, 0, NULL},
    {HTTP_POST, "/api/embed", route_ollama, 0, NULL},
    {HTTP_POST, "/api/embeddings", route_ollama_legacy, 0, NULL},
};
const int embedding_n_routes = sizeof embedding_routes / sizeof *embedding_routes;
