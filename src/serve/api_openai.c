/* api_openai.c — the OpenAI API's wire format (api_openai.h): its routes (/v1/chat/completions,
 * /v1/completions, /v1/models[/{id}], /tokenize, /detokenize) and its dialect (api_dialect.h),
 * which renders the job engine's neutral events (job_event.h) as SSE chunks ("data: {...}",
 * chat.completion.chunk or text_completion, "data: [DONE]") and its neutral final answer as the
 * chat.completion / text_completion object: messages with reasoning_content and tool_calls,
 * finish reasons, logprobs (chat's entries; the completions' parallel arrays with text offsets
 * and the echoed prompt's), usage. The bodies of chat and completions are the shared request
 * (job_request.c, job_chat.c); errors keep OpenAI's shape (http_err_json). */
#include "serve/api_openai.h"
#include "serve/job.h"
#include "serve/models.h"
#include "base/os.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *finish_name(job_finish f) {
    switch (f) {
    case JOB_LENGTH: return "length";
    case JOB_TOOL_CALLS: return "tool_calls";
    default: return "stop";
    }
}

/* ---- logprobs ----------------------------------------------------------------------------------- */


/* Appends entries [from, to) of `a` to the legacy parallel arrays; entry 0 of `a` starts at text
 * offset `base`. A NAN logprob (the first prompt token) is null; `zero_first`: entry 0 is not in
 * the text (the BOS the server added before a string prompt) and takes no room. */
static void legacy_add(const serve_api *api, const sched_logprob *a, int n, int from, int to, size_t base,
                       bool zero_first, json_t *tokens, json_t *lps, json_t *tops, json_t *offs) {
    size_t off = base;
    for (int i = 0; i < to && i < n; i++) {
        const sched_logprob *lp = &a[i];
        char b[512], text[4 * 512 + 8];
        int len = dl_token_text(api->model, lp->token, b, (int)sizeof b, text, sizeof text);
        if (i == 0 && zero_first) len = 0;
        if (i >= from) {
            json_array_append_new(tokens, json_string(text));
            bool none = isnan(lp->logprob);
            json_array_append_new(lps, none ? json_null() : json_real(lp->logprob));
            json_t *top = none ? json_null() : json_object();
            for (int k = 0; !none && k < lp->n_top; k++) {
                char tb[512], tt[4 * 512 + 8];
                dl_token_text(api->model, lp->top_token[k], tb, (int)sizeof tb, tt, sizeof tt);
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
static json_t *legacy_logprobs_json(const serve_api *api, const job *j, int i, bool with_prompt, int from, int to) {
    const sched_req *r = j->rs[i];
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    if (with_prompt && r->prompt_logprobs)
        legacy_add(api, r->prompt_lp, r->n_prompt_lp, 0, r->n_prompt_lp, 0, j->echo_bos && j->echo_bos[i], tokens, lps,
                   tops, offs);
    size_t base = j->echo ? j->n_echo[i] : 0;
    if (from < to) legacy_add(api, r->logprobs, r->n_logprobs_out, from, to, base, false, tokens, lps, tops, offs);
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset",
                     offs);
}


/* The chat shape of logprob entries: {"content": [...], "refusal": null} (the spec requires both;
 * this server never refuses). */
static json_t *chat_logprobs_json(const serve_api *api, const sched_logprob *lp, int n) {
    return json_pack("{s:o,s:n}", "content", dl_logprobs_json(api->model, lp, n), "refusal");
}

static json_t *usage_json(const job_usage *u) {
    return json_pack("{s:i,s:i,s:i,s:{s:i},s:{s:i}}", "prompt_tokens", u->prompt, "completion_tokens", u->completion,
                     "total_tokens", u->prompt + u->completion, "prompt_tokens_details", "cached_tokens", u->cached,
                     "completion_tokens_details", "reasoning_tokens", u->reasoning);
}

static json_t *call_json(const char *id, const char *name, const char *args) {
    return json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name", name, "arguments",
                     args);
}

/* ---- the stream: one event -> one SSE chunk ------------------------------------------------------- */

static void sse_data(dl_write w, void *wctx, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    w(wctx, "data: ", 6);
    w(wctx, s, strlen(s));
    w(wctx, "\n\n", 2);
    free(s);
}

static json_t *chunk(const job *j, int i, json_t *delta_or_text, json_t *logprobs, const char *finish) {
    json_t *choice = j->chat ? json_pack("{s:i,s:o}", "index", i, "delta", delta_or_text)
                             : json_pack("{s:i,s:o}", "index", i, "text", delta_or_text);
    json_object_set_new(choice, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", j->id, "object",
                     j->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created, "model",
                     j->model_id, "choices", choice);
}

/* The logprobs of a delta: the echoed prompt's, or the entries made with it (NULL: none). */
static json_t *delta_logprobs(const job *j, const job_event *ev) {
    const serve_api *api = j->api;
    int i = ev->choice;
    if (ev->echo) return j->rs[i]->prompt_logprobs ? legacy_logprobs_json(api, j, i, true, 0, 0) : NULL;
    if (!ev->lp) return NULL;
    if (j->chat) return chat_logprobs_json(api, ev->lp, ev->n_lp);
    return legacy_logprobs_json(api, j, i, false, ev->lp_from, ev->lp_from + ev->n_lp);
}

/* A text delta's chunk: content (chat) or text (completions), reasoning_content for thinking. */
static json_t *text_chunk(const job *j, const job_event *ev) {
    json_t *piece = json_stringn(ev->text, ev->n);
    if (!piece) piece = json_string("");
    json_t *delta = ev->kind == JOB_EV_REASONING ? json_pack("{s:o}", "reasoning_content", piece)
                    : j->chat                    ? json_pack("{s:o}", "content", piece)
                                                 : piece;
    return chunk(j, ev->choice, delta, delta_logprobs(j, ev), NULL);
}

static json_t *call_chunk(const job *j, const job_event *ev) {
    json_t *call = call_json(ev->call_id, ev->call_name, ev->call_args);
    json_object_set_new(call, "index", json_integer(ev->call_index));
    return chunk(j, ev->choice, json_pack("{s:[o]}", "tool_calls", call), NULL, NULL);
}

static json_t *usage_chunk(const job *j, const job_usage *u) {
    return json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", j->id, "object",
                     j->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created, "model",
                     j->model_id, "choices", "usage", usage_json(u));
}

static void oa_event(const dl_server *s, void *state, const job_event *ev, dl_write w, void *wctx) {
    const job *j = ev->job;
    (void)s, (void)state;
    switch (ev->kind) {
    case JOB_EV_START:
        if (j->chat)
            sse_data(w, wctx,
                     chunk(j, ev->choice, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, NULL));
        break;
    case JOB_EV_TEXT:
    case JOB_EV_REASONING: sse_data(w, wctx, text_chunk(j, ev)); break;
    case JOB_EV_TOOL_CALL: sse_data(w, wctx, call_chunk(j, ev)); break;
    case JOB_EV_FINISH:
        sse_data(w, wctx,
                 chunk(j, ev->choice, j->chat ? json_object() : json_string(""), NULL, finish_name(ev->finish)));
        break;
    case JOB_EV_USAGE: sse_data(w, wctx, usage_chunk(j, ev->usage)); break;
    case JOB_EV_ERROR: sse_data(w, wctx, http_err_json(ev->err)); break;
    case JOB_EV_END: w(wctx, "data: [DONE]\n\n", 14); break;
    }
}

/* ---- the whole answer ------------------------------------------------------------------------------ */

/* A completion choice: its text (after the echoed prompt) and the legacy logprobs. */
static json_t *completion_choice(const job *j, const job_choice *c, int i) {
    const sched_req *r = j->rs[i];
    json_t *text = json_stringn(c->text, c->n);
    if (j->echo && text) { /* the prompt, then the completion */
        char *both = malloc(j->n_echo[i] + c->n + 1);
        if (both) {
            memcpy(both, j->echo[i], j->n_echo[i]);
            if (c->n) memcpy(both + j->n_echo[i], c->text, c->n);
            json_t *t2 = json_stringn(both, j->n_echo[i] + c->n);
            if (t2) {
                json_decref(text);
                text = t2;
            }
            free(both);
        }
    }
    return json_pack("{s:i,s:o,s:o,s:s}", "index", i, "text", text ? text : json_string(""), "logprobs",
                     j->o.logprobs ? legacy_logprobs_json(j->api, j, i, true, 0, r->n_logprobs_out) : json_null(),
                     "finish_reason", finish_name(c->finish));
}

/* A chat choice: the message (reasoning_content, content, tool_calls, refusal: null, which the
 * spec requires) and the logprobs. */
static json_t *chat_choice(const job *j, const job_choice *c, int i) {
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    if (c->reasoning) json_object_set_new(msg, "reasoning_content", json_stringn(c->reasoning, c->n_reasoning));
    if (c->n_calls) {
        json_object_set_new(msg, "content", c->text ? json_stringn(c->text, c->n) : json_null());
        json_t *calls = json_array();
        for (int k = 0; k < c->n_calls; k++)
            json_array_append_new(calls, call_json(c->calls[k].id, c->calls[k].name, c->calls[k].args));
        json_object_set_new(msg, "tool_calls", calls);
    } else {
        json_object_set_new(msg, "content", json_stringn(c->text, c->n));
    }
    json_object_set_new(msg, "refusal", json_null());
    return json_pack("{s:i,s:o,s:o,s:s}", "index", i, "message", msg, "logprobs",
                     c->logprobs ? chat_logprobs_json(j->api, c->lp, c->n_lp) : json_null(), "finish_reason",
                     finish_name(c->finish));
}

static json_t *oa_final(const dl_server *s, void *state, const job_final *f, const job_run *run) {
    const job *j = f->job;
    (void)s, (void)state, (void)run;
    json_t *choices = json_array();
    for (int i = 0; i < f->n; i++)
        json_array_append_new(choices, (j->chat ? chat_choice : completion_choice)(j, &f->ch[i], i));
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", j->id, "object",
                     j->chat ? "chat.completion" : "text_completion", "created", (json_int_t)j->created, "model",
                     j->model_id, "choices", choices, "usage", usage_json(&f->usage));
}

const dialect dialect_openai = {
    .name = "openai",
    .stream_type = "text/event-stream",
    .request = NULL, /* the body is the shared request */
    .final = oa_final,
    .event = oa_event,
    .error = NULL, /* http_err_json */
    .free_state = NULL,
};

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

static int handle_tokenize(serve_api *api, http_req *q, json_t *body) {
    http_err e;
    json_t *content = json_object_get(body, "content");
    bool add_special = false, parse_special = true;
    if (!json_is_string(content)) {
        http_set_err(&e, 400, "invalid_type", "content", "'content' must be a string");
        goto bad;
    }
    if (req_bool(body, "add_special", &add_special, &e) || req_bool(body, "parse_special", &parse_special, &e))
        goto bad;
    if (json_string_length(content) > api->p.max_tokenize_bytes) {
        http_set_err(&e, 413, "request_too_large", "content",
                     "'content' has %zu bytes; /tokenize takes at most %zu (--max-tokenize-bytes)",
                     json_string_length(content), api->p.max_tokenize_bytes);
        goto bad;
    }
    if (!http_gate_enter(&api->sh->aux)) return http_send_busy(q, "tokenizer requests");
    lfm2c_error err = {0};
    int n = 0;
    int32_t *t = lfm2c_tokenize(api->model, json_string_value(content), json_string_length(content), add_special,
                                parse_special, &n, &err);
    size_t len = 0;
    char *out = t ? tokens_text(t, n, &len) : NULL;
    http_gate_leave(&api->sh->aux);
    free(t);
    if (!t) {
        http_set_err(&e, 400, "invalid_value", "content", "%s", err.msg);
        goto bad;
    }
    if (!out) {
        http_set_err(&e, 500, NULL, NULL, "out of memory");
        goto bad;
    }
    return http_send_text(q, 200, "application/json", out, len, NULL);
bad:
    return http_send_err(q, &e);
}

/* The text of token ids, at most cap bytes; 0, or an error. */
static int detok_text(serve_api *api, json_t *tokens, size_t cap_out, char **text, size_t *len, http_err *e) {
    size_t cap = 256, i;
    *len = 0;
    *text = malloc(cap);
    if (!*text) return http_set_err(e, 500, NULL, NULL, "out of memory");
    (*text)[0] = 0;
    lfm2c_detok d;
    lfm2c_detok_init(&d, true);
    json_t *t;
    json_array_foreach(tokens, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= api->n_vocab)
            return http_set_err(e, 400, "invalid_value", "tokens", "tokens[%zu] is not a token id of this model", i);
        char piece[600];
        int n = lfm2c_detok_push(&d, api->model, (int32_t)json_integer_value(t), piece, sizeof piece);
        if (n > 0) req_buf_add(text, len, &cap, piece, (size_t)(n < (int)sizeof piece ? n : (int)sizeof piece));
        if (!*text) return http_set_err(e, 500, NULL, NULL, "out of memory");
        if (*len > cap_out)
            return http_set_err(e, 413, "response_too_large", "tokens", "the text of these tokens is over %zu bytes",
                                cap_out);
    }
    char tail[64];
    int n = lfm2c_detok_flush(&d, tail, sizeof tail);
    if (n > 0) req_buf_add(text, len, &cap, tail, (size_t)n);
    if (!*text) return http_set_err(e, 500, NULL, NULL, "out of memory");
    return 0;
}

static int handle_detokenize(serve_api *api, http_req *q, json_t *body) {
    http_err e;
    json_t *tokens = json_object_get(body, "tokens");
    if (!json_is_array(tokens)) {
        http_set_err(&e, 400, "invalid_type", "tokens", "'tokens' must be an array of token ids");
        return http_send_err(q, &e);
    }
    if (json_array_size(tokens) > (size_t)api->p.max_detokenize_tokens) {
        http_set_err(&e, 413, "request_too_large", "tokens",
                     "'tokens' has %zu ids; /detokenize takes at most %d (--max-detokenize-tokens)",
                     json_array_size(tokens), api->p.max_detokenize_tokens);
        return http_send_err(q, &e);
    }
    if (!http_gate_enter(&api->sh->aux)) return http_send_busy(q, "tokenizer requests");
    char *text = NULL;
    size_t len = 0;
    int rc = detok_text(api, tokens, api->p.max_body, &text, &len, &e);
    http_gate_leave(&api->sh->aux);
    json_t *out = rc ? NULL : json_pack("{s:s%}", "content", text, len);
    free(text);
    if (rc || !out) {
        if (!rc) http_set_err(&e, 500, NULL, NULL, "out of memory");
        return http_send_err(q, &e);
    }
    return http_send_json(q, 200, out);
}

/* What a model takes and gives, as OpenRouter's listing says it (and llama.cpp's): "architecture":
 * {"input_modalities": ["text", "image" with a vision mmproj, "audio" with an audio one],
 * "output_modalities": ["text"]}; the chat page offers audio by it. */
static json_t *modalities(const model_facts *f) {
    json_t *in = json_pack("[s]", "text");
    if (f->mmproj == LFM2C_MMPROJ_IMAGE) json_array_append_new(in, json_string("image"));
    if (f->mmproj == LFM2C_MMPROJ_AUDIO) json_array_append_new(in, json_string("audio"));
    return json_pack("{s:o,s:[s]}", "input_modalities", in, "output_modalities", "text");
}

/* A model (lora -1) or one of its adapters, in OpenAI's shape and Anthropic's (type,
 * display_name, created_at), which share GET /v1/models; "meta" and "architecture" where its
 * file could be read. */
static json_t *model_json(const model_row *m, int lora) {
    char id[SERVER_MAX_MODEL_NAME + 80], t[40];
    if (lora < 0) snprintf(id, sizeof id, "%s", m->id);
    else snprintf(id, sizeof id, "%s", m->lora_names[lora]);
    dl_iso_time(m->mtime, t, sizeof t);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "id", id, "object", "model", "created", (json_int_t)m->mtime,
                          "owned_by", "lfm2c", "type", "model", "display_name", id, "created_at", t);
    if (o && m->facts.ok)
        json_object_set_new(o, "meta",
                            json_pack("{s:s,s:i,s:i,s:I,s:b}", "arch", m->facts.info.arch, "n_ctx", m->facts.n_ctx,
                                      "n_vocab", m->facts.info.n_vocab, "n_params", (json_int_t)m->facts.info.n_params,
                                      "loaded", m->state == MODEL_LOADED));
    if (o && m->facts.ok) json_object_set_new(o, "architecture", modalities(&m->facts));
    if (o && lora >= 0) { /* vLLM's way of listing an adapter */
        json_object_set_new(o, "parent", json_string(m->id));
        json_object_set_new(o, "root", json_string(m->id));
    }
    return o;
}

/* ---- the OpenAI routes ------------------------------------------------------------------------ */

/* The model a body names ("model": absent or null is the default one), held: NULL after the
 * error is answered. */
static serve_api *hold_for(http_req *q, json_t *body) {
    http_err e;
    json_t *m = json_object_get(body, "model");
    serve_shared *sh = http_app(q);
    serve_api *api = NULL;
    if (req_model_name(body, &e)) return http_send_err(q, &e), NULL;
    if (m && !json_is_null(m) && !json_is_string(m) && !sh->p.any_model)
        http_set_err(&e, 400, "invalid_type", "model", "'model' must be a string");
    else api = api_hold(sh, json_string_value(m), NAN, &dialect_openai, &e);
    if (!api) http_send_err(q, &e);
    return api;
}

static int route_chat(http_req *q, json_t *body) {
    serve_api *api = hold_for(q, body);
    return api ? job_handle(api, q, body, true, &dialect_openai, NULL, NULL) : 0;
}
static int route_completions(http_req *q, json_t *body) {
    serve_api *api = hold_for(q, body);
    return api ? job_handle(api, q, body, false, &dialect_openai, NULL, NULL) : 0;
}
static int route_tokenize(http_req *q, json_t *body) {
    serve_api *api = hold_for(q, body);
    if (!api) return 0;
    int rc = handle_tokenize(api, q, body);
    models_release(api);
    return rc;
}
static int route_detokenize(http_req *q, json_t *body) {
    serve_api *api = hold_for(q, body);
    if (!api) return 0;
    int rc = handle_detokenize(api, q, body);
    models_release(api);
    return rc;
}

static int route_models(http_req *q, json_t *body) {
    serve_shared *sh = http_app(q);
    (void)body;
    model_row *rows = NULL;
    int n = sh->models ? models_list(sh->models, false, &rows) : 0;
    json_t *data = json_array();
    for (int i = 0; i < n; i++)
        for (int k = -1; k < rows[i].n_lora; k++) json_array_append_new(data, model_json(&rows[i], k));
    const char *first = n ? rows[0].id : "";
    const char *last = n ? (rows[n - 1].n_lora ? rows[n - 1].lora_names[rows[n - 1].n_lora - 1] : rows[n - 1].id) : "";
    json_t *out = json_pack("{s:s,s:o,s:b,s:s,s:s}", "object", "list", "data", data, "has_more", 0, "first_id", first,
                            "last_id", last);
    free(rows);
    return http_send_json(q, 200, out);
}

/* GET /v1/models/{id} */
static int route_model(http_req *q, json_t *body) {
    serve_shared *sh = http_app(q);
    const char *id = http_rest(q);
    (void)body;
    model_row row;
    if (sh->models && models_row(sh->models, id, &row)) {
        int lora = -1; /* an adapter's name, or MODEL:NAME */
        const char *colon = strrchr(id, ':');
        for (int k = 0; k < row.n_lora && strcasecmp(id, row.id); k++)
            if (!strcmp(id, row.lora_names[k]) || (colon && !strcmp(colon + 1, row.lora_names[k]))) lora = k;
        return http_send_json(q, 200, model_json(&row, lora));
    }
    http_err e;
    api_model_404(sh, NULL, id, &e);
    return http_send_err(q, &e);
}

const http_route openai_routes[] = {
    {HTTP_POST, "/v1/chat/completions", route_chat, 0, NULL},
    {HTTP_POST, "/chat/completions", route_chat, 0, NULL},
    {HTTP_POST, "/v1/completions", route_completions, 0, NULL},
    {HTTP_POST, "/completions", route_completions, 0, NULL},
    {HTTP_POST, "/tokenize", route_tokenize, 0, NULL},
    {HTTP_POST, "/detokenize", route_detokenize, 0, NULL},
    {HTTP_GET | HTTP_HEAD, "/v1/models", route_models, 0, NULL},
    {HTTP_GET | HTTP_HEAD, "/models", route_models, 0, NULL},
    {HTTP_GET | HTTP_HEAD, "/v1/models/*", route_model, 0, NULL},
    {HTTP_GET | HTTP_HEAD, "/models/*", route_model, 0, NULL},
};
const int openai_n_routes = sizeof openai_routes / sizeof *openai_routes;
