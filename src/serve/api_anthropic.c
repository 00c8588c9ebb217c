/* api_anthropic.c — Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens)
 * as a dialect of the chat API: 'system' (string or text blocks), messages with text / tool_use /
 * tool_result / thinking blocks, tools with input_schema, tool_choice auto/any/tool/none,
 * max_tokens (required), stop_sequences, temperature/top_p/top_k, structured output
 * (output_config.format or output_format: json_schema), thinking (enabled with budget_tokens, or
 * disabled) become a chat request; the answer becomes a message (thinking, text and tool_use
 * blocks, stop_reason end_turn / max_tokens / tool_use / stop_sequence, usage), the stream becomes
 * message_start, content_block_start/delta/stop (thinking_delta for a thinking model's block),
 * message_delta and message_stop, and errors take Anthropic's shape
 * {"type":"error","error":{"type":...,"message":...}}. */
#include "serve/api_dialect.h"

#include <stdlib.h>
#include <string.h>
#include "base/os.h"

typedef struct an_state {
    char id[48];
    json_t *stops; /* stop_sequences (for stop_reason stop_sequence) */
    int block;     /* index of the next content block */
    int open;      /* the block open now: OPEN_* */
    bool started, stopped;
} an_state;

enum { OPEN_NONE, OPEN_TEXT, OPEN_THINKING };

static void an_free(void *p) {
    an_state *st = p;
    if (!st) return;
    json_decref(st->stops);
    free(st);
}

static const char *err_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static json_t *an_error(int status, const char *code, const char *param, const char *msg) {
    (void)code, (void)param;
    return json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", err_type(status), "message", msg);
}

/* An image block's source as an OpenAI image_url part (base64: a data URL; url: as given, which
 * the chat request refuses unless it is one); NULL if it is neither. */
static json_t *image_part(json_t *b) {
    json_t *src = json_object_get(b, "source");
    const char *type = json_string_value(json_object_get(src, "type"));
    const char *mt = json_string_value(json_object_get(src, "media_type"));
    json_t *data = json_object_get(src, "data"), *url = json_object_get(src, "url");
    if (type && !strcmp(type, "url") && json_is_string(url))
        return json_pack("{s:s,s:{s:O}}", "type", "image_url", "image_url", "url", url);
    if (!type || strcmp(type, "base64") || !mt || !json_is_string(data)) return NULL;
    dl_buf u = {0};
    dl_buf_add(&u, "data:", 5);
    dl_buf_add(&u, mt, strlen(mt));
    dl_buf_add(&u, ";base64,", 8);
    dl_buf_add(&u, json_string_value(data), json_string_length(data));
    json_t *p = u.p ? json_pack("{s:s,s:{s:s%}}", "type", "image_url", "image_url", "url", u.p, u.n) : NULL;
    free(u.p);
    return p;
}

/* The text so far as a text part of parts (then empty). */
static void flush_text(json_t *parts, dl_buf *text) {
    if (text->n) json_array_append_new(parts, json_pack("{s:s,s:s%}", "type", "text", "text", text->p, text->n));
    text->n = 0;
}

/* One message's blocks as they are read: its text (parts once there is an image), thinking and tool
 * calls; tool results go straight to out (they answer the previous turn, so they come first). */
typedef struct {
    json_t *out, *calls, *parts;
    const char *role;
    dl_buf text, thinking;
    size_t i, k; /* the message's and the block's index, for the errors */
} msg_blocks;

static int block_fail(const msg_blocks *mb, dl_err *e, const char *what) {
    return dl_fail(e, 400, "messages", "messages.%zu.content.%zu%s", mb->i, mb->k, what);
}

static int block_text(msg_blocks *mb, json_t *b, dl_err *e) {
    json_t *t = json_object_get(b, "text");
    if (!json_is_string(t)) return block_fail(mb, e, ".text must be a string");
    dl_buf_add(&mb->text, json_string_value(t), json_string_length(t));
    return 0;
}

static int block_tool_use(msg_blocks *mb, json_t *b, dl_err *e) {
    json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name"), *input = json_object_get(b, "input");
    if (strcmp(mb->role, "assistant") || !json_is_string(id) || !json_is_string(name) || !json_is_object(input))
        return block_fail(mb, e, ": a tool_use block (assistant) needs 'id', 'name' and an object 'input'");
    char *args = json_dumps(input, JSON_COMPACT);
    json_array_append_new(mb->calls, json_pack("{s:O,s:s,s:{s:O,s:s}}", "id", id, "type", "function", "function",
                                               "name", name, "arguments", args ? args : "{}"));
    free(args);
    return 0;
}

static int block_tool_result(msg_blocks *mb, json_t *b, dl_err *e) {
    json_t *id = json_object_get(b, "tool_use_id"), *c = json_object_get(b, "content");
    dl_buf r = {0};
    if (strcmp(mb->role, "user") || !json_is_string(id) || (c && dl_text_of(c, "text", &r))) {
        free(r.p);
        return block_fail(mb, e, ": a tool_result block (user) needs 'tool_use_id' and text content");
    }
    if (json_is_true(json_object_get(b, "is_error"))) {
        dl_buf x = {0};
        dl_buf_add(&x, "Error: ", 7);
        dl_buf_add(&x, r.p ? r.p : "", r.n);
        free(r.p);
        r = x;
    }
    json_array_append_new(
        mb->out, json_pack("{s:s,s:O,s:s%}", "role", "tool", "tool_call_id", id, "content", r.p ? r.p : "", r.n));
    free(r.p);
    return 0;
}

static int block_thinking(msg_blocks *mb, json_t *b, dl_err *e) { /* the template decides whether it is rendered */
    json_t *t = json_object_get(b, "thinking");
    if (!json_is_string(t)) return block_fail(mb, e, ".thinking must be a string");
    dl_buf_add(&mb->thinking, json_string_value(t), json_string_length(t));
    return 0;
}

static int block_image(msg_blocks *mb, json_t *b, dl_err *e) {
    const char *mt = json_string_value(json_object_get(json_object_get(b, "source"), "media_type"));
    if (mt && !strncasecmp(mt, "audio/", 6))
        return block_fail(mb, e,
                          ": an image block of media_type audio: the Anthropic Messages API has no audio input (send "
                          "audio to /v1/chat/completions as an input_audio part, or to /v1/audio/transcriptions)");
    json_t *ip = image_part(b);
    if (!ip || strcmp(mb->role, "user")) {
        json_decref(ip);
        return block_fail(mb, e, ": an image block (user) needs a source of type base64 with media_type and data");
    }
    if (!mb->parts) mb->parts = json_array();
    flush_text(mb->parts, &mb->text);
    json_array_append_new(mb->parts, ip);
    return 0;
}

static int add_block(msg_blocks *mb, json_t *b, dl_err *e) {
    const char *type = json_string_value(json_object_get(b, "type"));
    if (!json_is_object(b) || !type) return block_fail(mb, e, ": a block needs a 'type'");
    if (!strcmp(type, "text")) return block_text(mb, b, e);
    if (!strcmp(type, "tool_use")) return block_tool_use(mb, b, e);
    if (!strcmp(type, "tool_result")) return block_tool_result(mb, b, e);
    if (!strcmp(type, "thinking")) return block_thinking(mb, b, e);
    if (!strcmp(type, "redacted_thinking")) return 0; /* nothing readable to render */
    if (!strcmp(type, "image")) return block_image(mb, b, e);
    if (strstr(type, "audio"))
        return dl_fail(e, 400, "messages",
                       "messages.%zu.content.%zu: the Anthropic Messages API has no audio blocks (its spec: text, "
                       "image, document, tool_use, tool_result): send audio to /v1/chat/completions as an "
                       "input_audio part, or to /v1/audio/transcriptions",
                       mb->i, mb->k);
    return dl_fail(e, 400, "messages",
                   "messages.%zu.content.%zu: block type '%.40s' is not supported (text, image, tool_use, "
                   "tool_result)",
                   mb->i, mb->k, type);
}

/* The message the blocks make, when they make one (tool results alone make none). */
static void emit_message(msg_blocks *mb, size_t n_blocks) {
    if (mb->parts) flush_text(mb->parts, &mb->text);
    if (!mb->text.n && !mb->parts && !json_array_size(mb->calls) && n_blocks) return;
    json_t *msg = json_pack("{s:s,s:s%}", "role", mb->role, "content", mb->text.p ? mb->text.p : "", mb->text.n);
    if (mb->parts) json_object_set(msg, "content", mb->parts);
    if (json_array_size(mb->calls)) json_object_set(msg, "tool_calls", mb->calls);
    if (mb->thinking.n && !strcmp(mb->role, "assistant"))
        json_object_set_new(msg, "reasoning_content", json_stringn(mb->thinking.p, mb->thinking.n));
    json_array_append_new(mb->out, msg);
}

/* One message's blocks -> chat messages (tool results first: they answer the previous turn). */
static int add_message(json_t *out, json_t *m, size_t i, dl_err *e) {
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role || (strcmp(role, "user") && strcmp(role, "assistant")))
        return dl_fail(e, 400, "messages", "messages.%zu: 'role' must be user or assistant", i);
    json_t *content = json_object_get(m, "content");
    if (json_is_string(content)) {
        json_array_append_new(out, json_pack("{s:s,s:O}", "role", role, "content", content));
        return 0;
    }
    if (!json_is_array(content))
        return dl_fail(e, 400, "messages", "messages.%zu.content must be a string or an array of blocks", i);
    msg_blocks mb = {.out = out, .calls = json_array(), .role = role, .i = i};
    dl_buf_add(&mb.text, "", 0);
    int rc = 0;
    json_t *b;
    json_array_foreach(content, mb.k, b) {
        if ((rc = add_block(&mb, b, e))) break;
    }
    if (!rc) emit_message(&mb, json_array_size(content));
    free(mb.text.p);
    free(mb.thinking.p);
    json_decref(mb.calls);
    json_decref(mb.parts);
    return rc ? -1 : 0;
}

/* The parts shared by messages and count_tokens: system, messages, tools, tool_choice. */
static json_t *translate(json_t *body, dl_err *e) {
    json_t *chat = json_object(), *msgs = json_array();
    json_object_set_new(chat, "messages", msgs);
    json_t *sys = json_object_get(body, "system");
    if (sys && !json_is_null(sys)) {
        dl_buf b = {0};
        if (dl_text_of(sys, "text", &b)) {
            free(b.p);
            dl_fail(e, 400, "system", "'system' must be a string or an array of text blocks");
            goto bad;
        }
        json_array_append_new(msgs, json_pack("{s:s,s:s%}", "role", "system", "content", b.p ? b.p : "", b.n));
        free(b.p);
    }
    json_t *given = json_object_get(body, "messages");
    if (!json_is_array(given) || !json_array_size(given)) {
        dl_fail(e, 400, "messages", "messages: Field required (a non-empty array)");
        goto bad;
    }
    size_t i;
    json_t *m;
    json_array_foreach(given, i, m) if (add_message(msgs, m, i, e)) goto bad;

    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            dl_fail(e, 400, "tools", "'tools' must be an array");
            goto bad;
        }
        json_t *ct = json_array();
        json_object_set_new(chat, "tools", ct);
        json_t *t;
        json_array_foreach(tools, i, t) {
            json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!json_is_string(name) || !json_is_object(schema) || (type && strcmp(type, "custom"))) {
                dl_fail(e, 400, "tools", "tools.%zu: only client tools {\"name\",\"input_schema\"} are supported", i);
                goto bad;
            }
            json_t *fn = json_pack("{s:O,s:O}", "name", name, "parameters", schema);
            json_t *d = json_object_get(t, "description");
            if (json_is_string(d)) json_object_set(fn, "description", d);
            json_array_append_new(ct, json_pack("{s:s,s:o}", "type", "function", "function", fn));
        }
    }
    json_t *tc = json_object_get(body, "tool_choice");
    if (tc && !json_is_null(tc)) {
        const char *type = json_string_value(json_object_get(tc, "type"));
        if (!json_is_object(tc) || !type) {
            dl_fail(e, 400, "tool_choice", "'tool_choice' must be an object with a 'type'");
            goto bad;
        }
        if (!strcmp(type, "auto")) json_object_set_new(chat, "tool_choice", json_string("auto"));
        else if (!strcmp(type, "any")) json_object_set_new(chat, "tool_choice", json_string("required"));
        else if (!strcmp(type, "none")) json_object_set_new(chat, "tool_choice", json_string("none"));
        else if (!strcmp(type, "tool") && json_is_string(json_object_get(tc, "name")))
            json_object_set_new(
                chat, "tool_choice",
                json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", json_object_get(tc, "name")));
        else {
            dl_fail(e, 400, "tool_choice", "'tool_choice.type' must be auto, any, tool (with 'name') or none");
            goto bad;
        }
        json_t *dp = json_object_get(tc, "disable_parallel_tool_use");
        if (json_is_boolean(dp)) json_object_set_new(chat, "parallel_tool_calls", json_boolean(!json_is_true(dp)));
    }
    return chat;
bad:
    json_decref(chat);
    return NULL;
}

/* Structured output: output_config.format (or the older top-level output_format), {"type":
 * "json_schema","schema":{...}}, becomes the chat's response_format (the same constrained
 * decoding as OpenAI's); any other format is refused naming the field, never dropped. */
static int map_output_format(json_t *body, json_t *chat, dl_err *e) {
    json_t *oc = json_object_get(body, "output_config"), *f = NULL;
    const char *where = "output_config.format";
    if (oc && !json_is_null(oc)) {
        if (!json_is_object(oc)) return dl_fail(e, 400, "output_config", "output_config: must be an object");
        f = json_object_get(oc, "format");
    }
    if (!f || json_is_null(f)) {
        f = json_object_get(body, "output_format");
        where = "output_format";
    }
    if (!f || json_is_null(f)) return 0;
    const char *type = json_string_value(json_object_get(f, "type"));
    if (!json_is_object(f) || !type || strcmp(type, "json_schema"))
        return dl_fail(e, 400, where, "%s: only {\"type\": \"json_schema\", \"schema\": {...}} is supported", where);
    json_t *schema = json_object_get(f, "schema");
    if (!json_is_object(schema)) return dl_fail(e, 400, where, "%s.schema: must be an object (a JSON Schema)", where);
    json_object_set_new(
        chat, "response_format",
        json_pack("{s:s,s:{s:s,s:O}}", "type", "json_schema", "json_schema", "name", "output", "schema", schema));
    return 0;
}

static json_t *anthropic_count_request(const dl_server *s, json_t *body, dl_err *e) {
    (void)s;
    return translate(body, e);
}

static json_t *an_request(const dl_server *s, json_t *body, void **state, bool *legacy, dl_err *e) {
    *legacy = false;
    json_t *mt = json_object_get(body, "max_tokens");
    if (!json_is_integer(mt) || json_integer_value(mt) < 1) {
        dl_fail(e, 400, "max_tokens", mt ? "max_tokens: must be an integer >= 1" : "max_tokens: Field required");
        return NULL;
    }
    json_t *temp = json_object_get(body, "temperature");
    if (temp && !json_is_null(temp) &&
        (!json_is_number(temp) || json_number_value(temp) < 0 || json_number_value(temp) > 1)) {
        dl_fail(e, 400, "temperature", "temperature: must be a number in [0, 1]");
        return NULL;
    }
    json_t *stops = json_object_get(body, "stop_sequences");
    if (stops && !json_is_null(stops) && !json_is_array(stops)) {
        dl_fail(e, 400, "stop_sequences", "stop_sequences: must be an array of strings");
        return NULL;
    }
    /* thinking: {"type":"enabled","budget_tokens":N} caps a thinking model's block (below
     * max_tokens, as Anthropic asks; its minimum of 1024 is not imposed), "disabled" turns it off
     * (reasoning_effort none); "adaptive" or absent: the model thinks as it does by default */
    json_t *th = json_object_get(body, "thinking"), *budget = NULL;
    bool think_off = false;
    if (th && !json_is_null(th)) {
        const char *tt = json_string_value(json_object_get(th, "type"));
        if (!json_is_object(th) || !tt || (strcmp(tt, "enabled") && strcmp(tt, "disabled") && strcmp(tt, "adaptive"))) {
            dl_fail(e, 400, "thinking",
                    "thinking: must be {\"type\":\"enabled\",\"budget_tokens\":N}, {\"type\":\"disabled\"} or "
                    "{\"type\":\"adaptive\"}");
            return NULL;
        }
        budget = json_object_get(th, "budget_tokens");
        if (!strcmp(tt, "enabled") && (!json_is_integer(budget) || json_integer_value(budget) < 1 ||
                                       json_integer_value(budget) >= json_integer_value(mt))) {
            dl_fail(e, 400, "thinking", "thinking.budget_tokens: must be an integer >= 1 and less than max_tokens");
            return NULL;
        }
        if (strcmp(tt, "enabled")) budget = NULL;
        think_off = !strcmp(tt, "disabled");
    }
    json_t *chat = translate(body, e);
    if (!chat) return NULL;
    if (map_output_format(body, chat, e)) {
        json_decref(chat);
        return NULL;
    }
    json_object_set(chat, "max_tokens", mt);
    if (budget) json_object_set(chat, "thinking_token_budget", budget);
    if (think_off) json_object_set_new(chat, "reasoning_effort", json_string("none"));
    static const char *same[] = {"temperature", "top_p", "top_k", "stream"};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
        json_t *v = json_object_get(body, same[k]);
        if (v) json_object_set(chat, same[k], v);
    }
    if (json_array_size(stops)) json_object_set(chat, "stop", stops);
    an_state *st = calloc(1, sizeof *st);
    if (!st) {
        json_decref(chat);
        dl_fail(e, 500, NULL, "out of memory");
        return NULL;
    }
    dl_make_id(s, "msg_", st->id, sizeof st->id);
    st->stops = json_is_array(stops) ? json_incref(stops) : NULL;
    *state = st;
    return chat;
}

static const char *stop_reason(job_finish finish, const job_run *run) {
    if (finish == JOB_LENGTH) return "max_tokens";
    if (finish == JOB_TOOL_CALLS) return "tool_use";
    return run->stop_text ? "stop_sequence" : "end_turn";
}

/* A tool_use block of a call (its id call_X becomes toolu_X); empty_input: {} (the stream sends
 * the arguments as a delta). */
static json_t *tool_use_block(const char *id, const char *name, const char *args, bool empty_input) {
    json_t *input = empty_input ? NULL : json_loads(args ? args : "{}", 0, NULL);
    if (!json_is_object(input)) {
        json_decref(input);
        input = json_object();
    }
    char tid[80];
    snprintf(tid, sizeof tid, "toolu_%s", id && !strncmp(id, "call_", 5) ? id + 5 : id ? id : "0");
    return json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", tid, "name", name, "input", input);
}

static json_t *an_final(const dl_server *s, void *state, const job_final *f, const job_run *run) {
    an_state *st = state;
    const job_choice *c = &f->ch[0];
    json_t *content = json_array();
    if (c->reasoning)
        json_array_append_new(content, json_pack("{s:s,s:s%,s:s}", "type", "thinking", "thinking", c->reasoning,
                                                 c->n_reasoning, "signature", ""));
    if (c->text && (c->n || !c->n_calls))
        json_array_append_new(content, json_pack("{s:s,s:s%}", "type", "text", "text", c->text, c->n));
    for (int i = 0; i < c->n_calls; i++)
        json_array_append_new(content, tool_use_block(c->calls[i].id, c->calls[i].name, c->calls[i].args, false));
    const char *reason = stop_reason(c->finish, run);
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:{s:i,s:i,s:i,s:i}}", "id", st->id, "type", "message", "role",
                     "assistant", "model", s->alias, "content", content, "stop_reason", reason, "stop_sequence",
                     strcmp(reason, "stop_sequence") ? json_null() : json_string(run->stop_text), "usage",
                     "input_tokens", run->n_prompt - run->n_cached, "output_tokens", run->n_generated,
                     "cache_read_input_tokens", run->n_cached, "cache_creation_input_tokens", 0);
}

static void close_block(an_state *st, dl_write w, void *wctx) {
    if (st->open == OPEN_NONE) return;
    st->open = OPEN_NONE;
    dl_sse(w, wctx, "content_block_stop", json_pack("{s:s,s:i}", "type", "content_block_stop", "index", st->block++));
}

/* Opens a text or thinking block (closing another kind first). */
static void open_block(an_state *st, int kind, dl_write w, void *wctx) {
    if (st->open == kind) return;
    close_block(st, w, wctx);
    st->open = kind;
    json_t *b = kind == OPEN_TEXT ? json_pack("{s:s,s:s}", "type", "text", "text", "")
                                  : json_pack("{s:s,s:s,s:s}", "type", "thinking", "thinking", "", "signature", "");
    dl_sse(w, wctx, "content_block_start",
           json_pack("{s:s,s:i,s:o}", "type", "content_block_start", "index", st->block, "content_block", b));
}

/* The first event: message_start (the prompt's figures) and a ping. */
static void start_message(const dl_server *s, an_state *st, const job_run *run, dl_write w, void *wctx) {
    st->started = true;
    dl_sse(w, wctx, "message_start",
           json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:[],s:n,s:n,s:{s:i,s:i,s:i,s:i}}}", "type", "message_start", "message",
                     "id", st->id, "type", "message", "role", "assistant", "model", s->alias, "content", "stop_reason",
                     "stop_sequence", "usage", "input_tokens", run->n_prompt - run->n_cached, "output_tokens", 0,
                     "cache_read_input_tokens", run->n_cached, "cache_creation_input_tokens", 0));
    dl_sse(w, wctx, "ping", json_pack("{s:s}", "type", "ping"));
}

/* Text or thinking: a delta in the open block of its kind. */
static void delta(an_state *st, const job_event *ev, dl_write w, void *wctx) {
    if (!dl_text_ok(ev->text, ev->n)) return;
    bool think = ev->kind == JOB_EV_REASONING;
    open_block(st, think ? OPEN_THINKING : OPEN_TEXT, w, wctx);
    dl_sse(w, wctx, "content_block_delta",
           json_pack("{s:s,s:i,s:{s:s,s:s%}}", "type", "content_block_delta", "index", st->block, "delta", "type",
                     think ? "thinking_delta" : "text_delta", think ? "thinking" : "text", ev->text, ev->n));
}

/* A whole call: a tool_use block, its arguments as one input_json_delta. */
static void tool_use(an_state *st, const job_event *ev, dl_write w, void *wctx) {
    close_block(st, w, wctx);
    dl_sse(w, wctx, "content_block_start",
           json_pack("{s:s,s:i,s:o}", "type", "content_block_start", "index", st->block, "content_block",
                     tool_use_block(ev->call_id, ev->call_name, NULL, true)));
    dl_sse(w, wctx, "content_block_delta",
           json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index", st->block, "delta", "type",
                     "input_json_delta", "partial_json", ev->call_args ? ev->call_args : "{}"));
    dl_sse(w, wctx, "content_block_stop", json_pack("{s:s,s:i}", "type", "content_block_stop", "index", st->block++));
}

/* The end of the answer: the open block closed, message_delta (stop reason, output tokens), message_stop. */
static void stop_message(an_state *st, const job_event *ev, dl_write w, void *wctx) {
    if (st->stopped) return;
    st->stopped = true;
    if (st->block == 0 && st->open == OPEN_NONE)
        open_block(st, OPEN_TEXT, w, wctx); /* an empty answer: one empty text block */
    close_block(st, w, wctx);
    const char *reason = stop_reason(ev->finish, ev->run);
    dl_sse(w, wctx, "message_delta",
           json_pack("{s:s,s:{s:s,s:o},s:{s:i}}", "type", "message_delta", "delta", "stop_reason", reason,
                     "stop_sequence", strcmp(reason, "stop_sequence") ? json_null() : json_string(ev->run->stop_text),
                     "usage", "output_tokens", ev->run->n_generated));
    dl_sse(w, wctx, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

static void an_event(const dl_server *s, void *state, const job_event *ev, dl_write w, void *wctx) {
    an_state *st = state;
    if (ev->kind == JOB_EV_END) return; /* message_stop ended the stream */
    if (ev->kind == JOB_EV_ERROR) {     /* the request's fault, or ours */
        const http_err *e = ev->err;
        dl_sse(w, wctx, "error", an_error(!strcmp(e->type, "invalid_request_error") ? 400 : 500, NULL, NULL, e->msg));
        return;
    }
    if (!st->started) start_message(s, st, ev->run, w, wctx);
    switch (ev->kind) {
    case JOB_EV_TEXT:
    case JOB_EV_REASONING: delta(st, ev, w, wctx); break;
    case JOB_EV_TOOL_CALL: tool_use(st, ev, w, wctx); break;
    case JOB_EV_FINISH: stop_message(st, ev, w, wctx); break;
    default: break;
    }
}

const dialect dialect_anthropic = {
    .name = "anthropic",
    .stream_type = "text/event-stream",
    .request = an_request,
    .final = an_final,
    .event = an_event,
    .error = an_error,
    .free_state = an_free,
    .model_404 = "model: %s", /* Anthropic's not_found_error */
};

static const dl_hook count_hook = {.fn = anthropic_count_request, .dl = &dialect_anthropic};

const http_route anthropic_routes[] = {
    {HTTP_POST, "/v1/messages", api_route_dialect, 0, &dialect_anthropic},
    {HTTP_POST, "/v1/messages/count_tokens", api_route_count, 0, &count_hook},
};
const int anthropic_n_routes = sizeof anthropic_routes / sizeof *anthropic_routes;
