/* api_ollama.c — the Ollama API as a dialect of the chat API: /api/chat and /api/generate
 * (NDJSON streaming by default, stream:false, think (a thinking model's block in message.thinking
 * / thinking; false turns it off), format "json" or a JSON schema, options
 * {temperature, top_k, top_p, min_p, num_predict, stop, seed, num_ctx, repeat_penalty, ...},
 * tools and message.tool_calls with arguments as objects, keep_alive accepted; /api/generate's
 * 'context' token ids, in answers and requests) become chat (or, with raw, completion) requests and their answers Ollama's objects with done_reason and the
 * durations in nanoseconds; /api/tags, /api/ps, /api/show (from the GGUF: family, parameter size,
 * quantization, context length, template) and /api/version answer from the model. Errors are
 * {"error":"..."}. */
#include "serve/api_dialect.h"
#include "serve/server.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ol_state {
    char model[SERVER_MAX_MODEL_NAME + 1]; /* the name the request gave (api_route_dialect checked its length) */
    bool generate;                         /* /api/generate: "response" instead of "message" */
    double t_load;                         /* seconds the request waited for the model to load */
    bool ended;
    dl_buf text; /* /api/generate streamed: the reply so far (for 'context') */
} ol_state;

static void ol_free(void *p) {
    ol_state *st = p;
    if (st) free(st->text.p);
    free(st);
}

static json_t *ol_error(int status, const char *code, const char *param, const char *msg) {
    (void)status, (void)code, (void)param;
    return json_pack("{s:s}", "error", msg);
}

/* Ollama's options -> chat fields (types and ranges are checked by the chat request). */
static int map_options(json_t *opts, json_t *chat, dl_err *e) {
    if (!opts || json_is_null(opts)) return 0;
    if (!json_is_object(opts)) return dl_fail(e, 400, "options", "'options' must be an object");
    static const char *same[] = {
        "temperature",       "top_k", "top_p", "min_p", "seed", "repeat_penalty", "presence_penalty",
        "frequency_penalty", "stop"};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
        json_t *v = json_object_get(opts, same[k]);
        if (v && !json_is_null(v)) json_object_set(chat, same[k], v);
    }
    json_t *np = json_object_get(opts, "num_predict");
    if (np && !json_is_null(np)) {
        if (!json_is_integer(np)) return dl_fail(e, 400, "options", "option num_predict must be an integer");
        if (json_integer_value(np) > 0) json_object_set(chat, "max_tokens", np);
        else if (json_integer_value(np) == 0) return dl_fail(e, 400, "options", "option num_predict must not be 0");
    }
    json_t *nc = json_object_get(opts, "num_ctx");
    if (nc && !json_is_null(nc) && !json_is_integer(nc))
        return dl_fail(e, 400, "options", "option num_ctx must be an integer");
    return 0;
}

static int map_format(json_t *fmt, json_t *chat, dl_err *e) {
    if (!fmt || json_is_null(fmt) || (json_is_string(fmt) && !json_string_length(fmt))) return 0;
    if (json_is_string(fmt) && !strcmp(json_string_value(fmt), "json"))
        json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
    else if (json_is_object(fmt))
        json_object_set_new(
            chat, "response_format",
            json_pack("{s:s,s:{s:s,s:O}}", "type", "json_schema", "json_schema", "name", "format", "schema", fmt));
    else return dl_fail(e, 400, "format", "'format' must be \"json\" or a JSON schema object");
    return 0;
}

/* Ollama's images (base64 strings) then the text, as OpenAI content parts (data URLs); NULL if
 * an image is not a string. */
static json_t *image_parts(json_t *images, json_t *text) {
    json_t *parts = json_array();
    size_t k;
    json_t *im;
    json_array_foreach(images, k, im) {
        if (!json_is_string(im)) return json_decref(parts), NULL;
        dl_buf u = {0};
        dl_buf_add(&u, "data:image;base64,", 18);
        dl_buf_add(&u, json_string_value(im), json_string_length(im));
        if (u.p)
            json_array_append_new(parts,
                                  json_pack("{s:s,s:{s:s%}}", "type", "image_url", "image_url", "url", u.p, u.n));
        free(u.p);
    }
    if (json_string_length(text)) json_array_append_new(parts, json_pack("{s:s,s:O}", "type", "text", "text", text));
    return parts;
}

static int add_message(json_t *out, json_t *m, size_t i, dl_err *e) {
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role)
        return dl_fail(e, 400, "messages", "messages[%zu] must be an object with a string 'role'", i);
    json_t *content = json_object_get(m, "content"), *images = json_object_get(m, "images");
    if (content && !json_is_null(content) && !json_is_string(content))
        return dl_fail(e, 400, "messages", "messages[%zu].content must be a string", i);
    if (images && !json_is_null(images) && !json_is_array(images))
        return dl_fail(e, 400, "messages", "messages[%zu].images must be an array of base64 strings", i);
    json_t *msg =
        json_pack("{s:s,s:s}", "role", role, "content", json_is_string(content) ? json_string_value(content) : "");
    if (json_array_size(images)) {
        json_t *parts = image_parts(images, content);
        if (!parts) {
            json_decref(msg);
            return dl_fail(e, 400, "messages", "messages[%zu].images must be an array of base64 strings", i);
        }
        json_object_set_new(msg, "content", parts);
    }
    json_t *thinking = json_object_get(m, "thinking");
    if (thinking && !json_is_null(thinking) && !json_is_string(thinking)) {
        json_decref(msg);
        return dl_fail(e, 400, "messages", "messages[%zu].thinking must be a string", i);
    }
    if (json_is_string(thinking)) json_object_set(msg, "thinking", thinking);
    json_t *calls = json_object_get(m, "tool_calls");
    if (calls && !json_is_null(calls)) {
        if (!json_is_array(calls)) {
            json_decref(msg);
            return dl_fail(e, 400, "messages", "messages[%zu].tool_calls must be an array", i);
        }
        json_t *tc = json_array();
        json_object_set_new(msg, "tool_calls", tc);
        size_t k;
        json_t *c;
        json_array_foreach(calls, k, c) {
            json_t *fn = json_object_get(c, "function"), *name = json_object_get(fn, "name"),
                   *args = json_object_get(fn, "arguments");
            if (!json_is_string(name) || !(json_is_object(args) || json_is_string(args) || !args)) {
                json_decref(msg);
                return dl_fail(e, 400, "messages",
                               "messages[%zu].tool_calls[%zu] needs function.name and object arguments", i, k);
            }
            char *a =
                json_is_object(args) ? json_dumps(args, JSON_COMPACT) : strdup(args ? json_string_value(args) : "{}");
            char id[48];
            snprintf(id, sizeof id, "call_%zu_%zu", i, k);
            json_array_append_new(tc, json_pack("{s:s,s:s,s:{s:O,s:s}}", "id", id, "type", "function", "function",
                                                "name", name, "arguments", a ? a : "{}"));
            free(a);
        }
    }
    json_array_append_new(out, msg);
    return 0;
}

static void set_model(ol_state *st, const dl_server *s, json_t *body) {
    const char *m = json_string_value(json_object_get(body, "model"));
    dl_copy_text(st->model, sizeof st->model, m && *m ? m : s->alias);
}

/* Nothing to generate: Ollama loads the model and answers done ("done_reason": "load"), as a
 * chat message or a generate response; -1 with the answer in e (status 200). */
static int ol_loaded(const ol_state *st, bool generate, dl_err *e) {
    char t[40];
    dl_iso_time(time(NULL), t, sizeof t);
    e->status = 200;
    e->answer = generate ? json_pack("{s:s,s:s,s:s,s:s,s:b}", "model", st->model, "created_at", t, "response", "",
                                     "done_reason", "load", "done", 1)
                         : json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:b}", "model", st->model, "created_at", t, "message",
                                     "role", "assistant", "content", "", "done_reason", "load", "done", 1);
    if (e->answer) json_object_set_new(e->answer, "load_duration", json_integer((json_int_t)(st->t_load * 1e9)));
    return -1;
}

/* keep_alive: seconds (a number), a duration ("5m", "1h30m", "-1"), or null; negative: forever. */
static int ol_keep_alive(json_t *body, double *seconds, dl_err *e) {
    json_t *k = json_object_get(body, "keep_alive");
    *seconds = NAN;
    if (!k || json_is_null(k)) return 0;
    if (json_is_number(k)) {
        double v = json_number_value(k);
        *seconds = v < 0 ? -1 : v;
        return 0;
    }
    if (json_is_string(k) && dl_parse_duration(json_string_value(k), seconds)) return 0;
    return dl_fail(e, 400, "keep_alive",
                   "'keep_alive' must be a number of seconds or a duration such as \"5m\", \"1h30m\" or \"-1\"");
}

/* A request with nothing to generate: /api/chat without messages, /api/generate without a
 * prompt (or suffix). */
static bool ol_empty(json_t *body, bool generate) {
    if (!generate) return json_array_size(json_object_get(body, "messages")) == 0;
    return !json_string_length(json_object_get(body, "prompt")) && !json_string_length(json_object_get(body, "suffix"));
}

/* Ollama's answer to an empty request with keep_alive 0: the model unloaded ("done_reason":
 * "unload"); NULL for a request that asks for output. */
static json_t *ol_unloaded(json_t *body, bool generate) {
    if (!ol_empty(body, generate)) return NULL;
    char t[40];
    dl_iso_time(time(NULL), t, sizeof t);
    const char *m = json_string_value(json_object_get(body, "model"));
    char model[SERVER_MAX_MODEL_NAME + 1];
    dl_copy_text(model, sizeof model, m ? m : "");
    return generate ? json_pack("{s:s,s:s,s:s,s:s,s:b}", "model", model, "created_at", t, "response", "", "done_reason",
                                "unload", "done", 1)
                    : json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:b}", "model", model, "created_at", t, "message", "role",
                                "assistant", "content", "", "done_reason", "unload", "done", 1);
}
static json_t *ol_chat_unloaded(json_t *body) { return ol_unloaded(body, false); }
static json_t *ol_generate_unloaded(json_t *body) { return ol_unloaded(body, true); }

/* /api/chat: messages, tools and tool_choice into the chat request (msgs is its messages) */
static int ol_chat_body(json_t *body, json_t *chat, json_t *msgs, const ol_state *st, dl_err *e) {
    json_t *given = json_object_get(body, "messages");
    if (!json_is_array(given)) return dl_fail(e, 400, "messages", "'messages' must be an array");
    size_t i;
    json_t *m;
    json_array_foreach(given, i, m) if (add_message(msgs, m, i, e)) return -1;
    if (!json_array_size(msgs)) return ol_loaded(st, false, e);
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) json_object_set(chat, "tools", tools);
    /* tool_choice: Ollama has none and ignores it; here it is honoured when there are tools, in
     * OpenAI's form, a string, or the flat {"type":"function","name":...} clients also send */
    json_t *tc = json_object_get(body, "tool_choice");
    if (tc && !json_is_null(tc) && json_array_size(tools)) {
        json_t *fn = json_object_get(tc, "function"), *name = json_object_get(tc, "name");
        if (json_is_object(tc) && !fn && json_is_string(name))
            json_object_set_new(chat, "tool_choice",
                                json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", name));
        else json_object_set(chat, "tool_choice", tc);
    }
    return 0;
}

/* raw: the prompt as it is, after the token ids of context (an earlier answer's) */
static int ol_raw_prompt(const dl_server *s, json_t *prompt, json_t *ctx, json_t *chat, dl_err *e) {
    if (!json_array_size(ctx)) return json_object_set(chat, "prompt", prompt), 0;
    if (json_string_length(prompt) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)s->n_ctx)
        return dl_fail(e, 400, "prompt", "the prompt is far longer than the context of %d tokens", s->n_ctx);
    int n = 0;
    lfm2c_error err = {0};
    int32_t *t = lfm2c_tokenize(s->model, json_string_value(prompt), json_string_length(prompt), false, true, &n, &err);
    if (!t) return dl_fail(e, 400, "prompt", "cannot tokenize the prompt: %s", err.msg);
    json_t *ids = json_deep_copy(ctx);
    for (int i = 0; i < n; i++) json_array_append_new(ids, json_integer(t[i]));
    free(t);
    json_object_set_new(chat, "prompt", ids);
    return 0;
}

/* Does a 'context' hold an image's positions (the ids below 0 an answer to images returns)? */
static bool ol_context_has_image(json_t *ctx) {
    size_t i;
    json_t *x;
    json_array_foreach(ctx, i, x) if (json_is_integer(x) && json_integer_value(x) < 0) return true;
    return false;
}

/* /api/generate: prompt, system, suffix (fill-in-the-middle), raw and context into the request;
 * *legacy where it is a plain completion (suffix, raw) rather than a chat */
static int ol_generate_body(const dl_server *s, json_t *body, json_t *chat, json_t *msgs, const ol_state *st,
                            bool *legacy, dl_err *e) {
    json_t *prompt = json_object_get(body, "prompt"), *sys = json_object_get(body, "system");
    json_t *suffix = json_object_get(body, "suffix"), *raw = json_object_get(body, "raw");
    json_t *ctx = json_object_get(body, "context");
    if (prompt && !json_is_null(prompt) && !json_is_string(prompt))
        return dl_fail(e, 400, "prompt", "'prompt' must be a string");
    if (sys && !json_is_null(sys) && !json_is_string(sys))
        return dl_fail(e, 400, "system", "'system' must be a string");
    if (suffix && !json_is_null(suffix) && !json_is_string(suffix))
        return dl_fail(e, 400, "suffix", "'suffix' must be a string");
    const bool fim = json_string_length(suffix) > 0;
    json_t *images = json_object_get(body, "images");
    if (images && !json_is_null(images) && !json_is_array(images))
        return dl_fail(e, 400, "images", "'images' must be an array of base64 strings");
    if (json_array_size(images) && (fim || json_is_true(raw)))
        return dl_fail(e, 400, "images", "'images' cannot be used with 'suffix' or 'raw'");
    if (raw && !json_is_null(raw) && !json_is_boolean(raw)) return dl_fail(e, 400, "raw", "'raw' must be a boolean");
    if (!fim && (!json_is_string(prompt) || !json_string_length(prompt))) return ol_loaded(st, true, e);
    if (ctx && !json_is_null(ctx) && !json_is_array(ctx))
        return dl_fail(e, 400, "context", "'context' must be an array of token ids");
    if (ol_context_has_image(ctx)) /* Ollama's own context is text only: its images are not carried back either */
        return dl_fail(e, 400, "context",
                       "'context' holds an image's positions (its ids below 0), which cannot be sent back: send "
                       "the conversation to /api/chat with each image in its message's 'images', or send the "
                       "image again in 'images' without 'context'");
    if (fim) { /* insert: a completion with a suffix (fill-in-the-middle), as /v1/completions */
        if (json_array_size(ctx)) return dl_fail(e, 400, "context", "'context' cannot be used with 'suffix'");
        *legacy = true;
        json_object_del(chat, "messages");
        json_object_set_new(chat, "prompt", json_is_string(prompt) ? json_incref(prompt) : json_string(""));
        json_object_set(chat, "suffix", suffix);
        return 0;
    }
    if (json_is_true(raw)) {
        *legacy = true;
        json_object_del(chat, "messages");
        return ol_raw_prompt(s, prompt, ctx, chat, e);
    }
    if (json_array_size(ctx)) json_object_set(chat, "context", ctx); /* job_chat.c puts it before the prompt */
    if (json_is_string(sys) && json_string_length(sys))
        json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "system", "content", sys));
    json_t *parts = json_array_size(images) ? image_parts(images, prompt) : NULL;
    if (json_array_size(images) && !parts)
        return dl_fail(e, 400, "images", "'images' must be an array of base64 strings");
    json_array_append_new(msgs, parts ? json_pack("{s:s,s:o}", "role", "user", "content", parts)
                                      : json_pack("{s:s,s:O}", "role", "user", "content", prompt));
    return 0;
}

/* What both endpoints share: options, format, max_tokens, think and stream */
static int ol_common(json_t *body, json_t *chat, bool legacy, dl_err *e) {
    if (map_options(json_object_get(body, "options"), chat, e) || map_format(json_object_get(body, "format"), chat, e))
        return -1;
    json_t *tmt = json_object_get(body, "max_tokens"); /* not Ollama's, but clients send it: honoured, not dropped */
    if (tmt && !json_is_null(tmt) && !json_object_get(chat, "max_tokens")) {
        if (!json_is_integer(tmt) || json_integer_value(tmt) < 1)
            return dl_fail(e, 400, "max_tokens", "'max_tokens' must be a positive integer");
        json_object_set(chat, "max_tokens", tmt);
    }
    /* think: false turns a thinking model's block off; true and the levels ("high", "medium",
     * "low") leave it on (the model has no levels); absent: the model's default */
    json_t *think = json_object_get(body, "think");
    const char *level = json_string_value(think);
    if (think && !json_is_null(think) && !json_is_boolean(think) &&
        !(level && (!strcmp(level, "high") || !strcmp(level, "medium") || !strcmp(level, "low"))))
        return dl_fail(e, 400, "think", "'think' must be a boolean or high, medium, low");
    if (json_is_false(think)) json_object_set_new(chat, "reasoning_effort", json_string("none"));
    json_t *stream = json_object_get(body, "stream");
    if (stream && !json_is_null(stream) && !json_is_boolean(stream))
        return dl_fail(e, 400, "stream", "'stream' must be a boolean");
    json_object_set_new(chat, "stream", json_boolean(!json_is_false(stream)));
    if (legacy && !json_object_get(chat, "max_tokens")) json_object_set_new(chat, "max_tokens", json_integer(1 << 30));
    return 0;
}

static json_t *ol_request(const dl_server *s, json_t *body, void **state, bool *legacy, dl_err *e, bool generate) {
    *legacy = false;
    json_t *chat = json_object(), *msgs = json_array();
    json_object_set_new(chat, "messages", msgs);
    ol_state *st = calloc(1, sizeof *st);
    json_t *model = json_object_get(body, "model");
    if (!st) dl_fail(e, 500, NULL, "out of memory");
    else if (model && !json_is_string(model)) dl_fail(e, 400, "model", "'model' must be a string");
    if (!st || (model && !json_is_string(model))) goto bad;
    set_model(st, s, body);
    st->generate = generate;
    st->t_load = s->t_load;
    if ((generate ? ol_generate_body(s, body, chat, msgs, st, legacy, e) : ol_chat_body(body, chat, msgs, st, e)) ||
        ol_common(body, chat, *legacy, e))
        goto bad;
    *state = st;
    return chat;
bad:
    free(st);
    json_decref(chat);
    return NULL;
}

static json_t *ol_chat(const dl_server *s, json_t *body, void **state, bool *legacy, dl_err *e) {
    return ol_request(s, body, state, legacy, e, false);
}

static json_t *ol_generate(const dl_server *s, json_t *body, void **state, bool *legacy, dl_err *e) {
    return ol_request(s, body, state, legacy, e, true);
}

/* One call as Ollama writes it: {"function":{"name","arguments":{...}}} (arguments an object). */
static json_t *ol_call(const char *name, const char *args) {
    json_t *a = args ? json_loads(args, 0, NULL) : NULL;
    if (!json_is_object(a)) {
        json_decref(a);
        a = json_object();
    }
    return json_pack("{s:{s:s,s:o}}", "function", "name", name, "arguments", a);
}

static json_int_t ns(double s) { return s > 0 ? (json_int_t)(s * 1e9) : 0; }

/* /api/generate's 'context', as Ollama builds it: the prompt's token ids, then the reply's text
 * tokenized (a later request may send it back to continue from there). */
static json_t *context_of(const dl_server *s, const job_run *run, const char *text, size_t n) {
    json_t *ids = json_array();
    for (int i = 0; run->prompt && i < run->n_prompt; i++) json_array_append_new(ids, json_integer(run->prompt[i]));
    int nt = 0;
    int32_t *t = n ? lfm2c_tokenize(s->model, text, n, false, false, &nt, NULL) : NULL;
    for (int i = 0; t && i < nt; i++) json_array_append_new(ids, json_integer(t[i]));
    free(t);
    return ids;
}

/* The done object (steals msg_or_text). */
static json_t *done_obj(const dl_server *s, ol_state *st, json_t *msg_or_text, job_finish finish, const job_run *run) {
    char t[40];
    dl_iso_time(time(NULL), t, sizeof t);
    double first = run->t_first > 0 ? run->t_first : run->t_now;
    json_t *o = json_pack("{s:s,s:s,s:o,s:b,s:s,s:I,s:I,s:i,s:I,s:i,s:I}", "model", st->model, "created_at", t,
                          st->generate ? "response" : "message", msg_or_text, "done", 1, "done_reason",
                          finish == JOB_LENGTH ? "length" : "stop", "total_duration",
                          ns(run->t_now - run->t_submit + run->t_load), "load_duration", ns(run->t_load),
                          "prompt_eval_count", run->n_prompt, "prompt_eval_duration", ns(first - run->t_submit),
                          "eval_count", run->n_generated, "eval_duration", ns(run->t_now - first));
    if (o && st->generate) {
        const char *text = st->text.n ? st->text.p : json_string_value(msg_or_text); /* streamed: the text kept */
        size_t n = st->text.n ? st->text.n : json_string_length(msg_or_text);
        json_object_set_new(o, "context", context_of(s, run, text, n));
    }
    return o;
}

/* The answer's text ("" when there is none: only calls). */
static json_t *text_of(const job_choice *c) {
    json_t *t = c->text ? json_stringn(c->text, c->n) : NULL;
    return t ? t : json_string("");
}

static json_t *ol_final(const dl_server *s, void *state, const job_final *f, const job_run *run) {
    ol_state *st = state;
    const job_choice *c = &f->ch[0];
    json_t *thinking = c->reasoning ? json_stringn(c->reasoning, c->n_reasoning) : NULL;
    if (st->generate) {
        json_t *o = done_obj(s, st, text_of(c), c->finish, run);
        if (thinking) json_object_set_new(o, "thinking", thinking);
        return o;
    }
    json_t *m = json_pack("{s:s,s:o}", "role", "assistant", "content", text_of(c));
    if (thinking) json_object_set_new(m, "thinking", thinking);
    if (c->n_calls) {
        json_t *calls = json_array();
        for (int i = 0; i < c->n_calls; i++) json_array_append_new(calls, ol_call(c->calls[i].name, c->calls[i].args));
        json_object_set_new(m, "tool_calls", calls);
    }
    return done_obj(s, st, m, c->finish, run);
}

/* A thinking model's block: message.thinking (chat), thinking (generate). */
static void ol_thinking(ol_state *st, const job_event *ev, const char *t, dl_write w, void *wctx) {
    json_t *piece = json_stringn(ev->text, ev->n);
    json_t *o = json_pack("{s:s,s:s,s:b}", "model", st->model, "created_at", t, "done", 0);
    if (st->generate) {
        json_object_set_new(o, "response", json_string(""));
        json_object_set_new(o, "thinking", piece);
    } else {
        json_object_set_new(o, "message",
                            json_pack("{s:s,s:s,s:o}", "role", "assistant", "content", "", "thinking", piece));
    }
    dl_ndjson(w, wctx, o);
}

static void ol_text(ol_state *st, const job_event *ev, const char *t, dl_write w, void *wctx) {
    if (st->generate) dl_buf_add(&st->text, ev->text, ev->n);
    json_t *piece = json_stringn(ev->text, ev->n);
    json_t *o = st->generate ? piece : json_pack("{s:s,s:o}", "role", "assistant", "content", piece);
    json_t *line = json_pack("{s:s,s:s,s:o,s:b}", "model", st->model, "created_at", t,
                             st->generate ? "response" : "message", o, "done", 0);
    /* an empty 'context' on /api/generate's partial lines too (the done line has the ids): a
     * client that validates every line against one schema (ollama-ai-provider-v2) reads them */
    if (st->generate) json_object_set_new(line, "context", json_array());
    dl_ndjson(w, wctx, line);
}

static void ol_event(const dl_server *s, void *state, const job_event *ev, dl_write w, void *wctx) {
    ol_state *st = state;
    if (ev->kind == JOB_EV_ERROR) {
        dl_ndjson(w, wctx, json_pack("{s:s}", "error", ev->err->msg));
        return;
    }
    char t[40];
    dl_iso_time(time(NULL), t, sizeof t);
    if (ev->kind == JOB_EV_REASONING && dl_text_ok(ev->text, ev->n)) ol_thinking(st, ev, t, w, wctx);
    if (ev->kind == JOB_EV_TEXT && dl_text_ok(ev->text, ev->n)) ol_text(st, ev, t, w, wctx);
    if (ev->kind == JOB_EV_TOOL_CALL && !st->generate) {
        json_t *m = json_pack("{s:s,s:s,s:[o]}", "role", "assistant", "content", "", "tool_calls",
                              ol_call(ev->call_name, ev->call_args));
        dl_ndjson(w, wctx,
                  json_pack("{s:s,s:s,s:o,s:b}", "model", st->model, "created_at", t, "message", m, "done", 0));
    }
    if (ev->kind == JOB_EV_FINISH && !st->ended) { /* the done:true line ends the stream */
        st->ended = true;
        json_t *last = st->generate ? json_string("") : json_pack("{s:s,s:s}", "role", "assistant", "content", "");
        dl_ndjson(w, wctx, done_obj(s, st, last, ev->finish, ev->run));
    }
}

#define OL_404 "model \"%s\" not found, try pulling it first" /* Ollama's words */

const dialect dialect_ollama = {
    .name = "ollama",
    .stream_type = "application/x-ndjson",
    .request = ol_chat,
    .final = ol_final,
    .event = ol_event,
    .error = ol_error,
    .free_state = ol_free,
    .model_404 = OL_404,
    .model_list = "/api/tags",
    .keep_alive = ol_keep_alive,
    .unload_answer = ol_chat_unloaded,
};

const dialect dialect_ollama_generate = {
    .name = "ollama-generate",
    .stream_type = "application/x-ndjson",
    .request = ol_generate,
    .final = ol_final,
    .event = ol_event,
    .error = ol_error,
    .free_state = ol_free,
    .model_404 = OL_404,
    .model_list = "/api/tags",
    .keep_alive = ol_keep_alive,
    .unload_answer = ol_generate_unloaded,
};

static json_t *ollama_version(void) { return json_pack("{s:s}", "version", "0.12.0"); }

/* ---- routes ----------------------------------------------------------------------------------- */

static json_t *version_hook(const dl_server *s, json_t *body, dl_err *e) {
    (void)s;
    (void)body;
    (void)e;
    return ollama_version();
}
static const dl_hook version = {.fn = version_hook};

const http_route ollama_routes[] = {
    {HTTP_POST, "/api/chat", api_route_dialect, 0, &dialect_ollama},
    {HTTP_POST, "/api/generate", api_route_dialect, 0, &dialect_ollama_generate},
    {HTTP_GET | HTTP_HEAD, "/api/version", api_route_answer, 0, &version},
};
const int ollama_n_routes = sizeof ollama_routes / sizeof *ollama_routes;
