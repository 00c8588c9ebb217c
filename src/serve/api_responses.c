/* api_responses.c — the OpenAI Responses API (POST /v1/responses) as a dialect of the chat
 * API: 'input' (a string or items: messages, function_call, function_call_output, reasoning),
 * 'instructions', function tools + tool_choice, text.format (json_schema / json_object),
 * max_output_tokens, temperature/top_p, reasoning.effort and previous_response_id become a chat
 * request; 'item_reference' input items resolve stored output items (or responses) by id, each
 * charged to the request's memory budget and counted against --max-messages as it is added; the
 * job's answer (job_final) becomes a response object (reasoning, message and function_call output
 * items, usage), and its stream events (job_event) the documented event sequence
 * (response.created ... response.reasoning_text.delta ... response.completed). Recent conversations are kept in a
 * bounded store (api_dialect.c) unless 'store' is false, with the response object and the
 * input as items: GET /v1/responses/{id}, GET /v1/responses/{id}/input_items and DELETE
 * /v1/responses/{id} answer from it, for the API key that stored them. */
#include "serve/api_dialect.h"

#include <stdlib.h>
#include <string.h>
#include "base/os.h"

typedef struct rs_state {
    char id[48], msg_id[48], rs_id[48];
    time_t created;
    json_t *echo;     /* request fields the response object repeats */
    json_t *messages; /* the conversation in chat form, without instructions */
    bool store;
    /* streaming */
    int seq, n_out;
    bool started, msg_open, think_open, completed;
    dl_buf text, thinking;
    json_t *output;          /* finished output items */
    json_t *input;           /* the request's input as listed items (input_items; NULL: not stored) */
    json_t *calls;           /* chat tool_calls of the answer (for the store) */
    json_t *lp, *lp_pending; /* logprobs asked for: every token's entry; those not yet sent */
} rs_state;

static void rs_free(void *p) {
    rs_state *st = p;
    if (!st) return;
    json_decref(st->echo);
    json_decref(st->messages);
    json_decref(st->output);
    json_decref(st->input);
    json_decref(st->calls);
    json_decref(st->lp);
    json_decref(st->lp_pending);
    free(st->text.p);
    free(st->thinking.p);
    free(st);
}

static json_t *opt(json_t *v) { return v && !json_is_null(v) ? json_incref(v) : json_null(); }

/* The text of a reasoning item (its reasoning_text content, else its summary) -> *th. */
static int reasoning_text(json_t *it, size_t i, dl_buf *th, dl_err *e) {
    json_t *parts = json_object_get(it, "content");
    if (!json_array_size(parts)) parts = json_object_get(it, "summary");
    if (parts && !json_is_null(parts) && !json_is_array(parts))
        return dl_fail(e, 400, "input", "input[%zu]: a reasoning item's content / summary must be an array", i);
    size_t k;
    json_t *p;
    json_array_foreach(parts, k, p) {
        json_t *t = json_object_get(p, "text");
        if (!json_is_string(t)) return dl_fail(e, 400, "input", "input[%zu]: reasoning parts need a string 'text'", i);
        dl_buf_add(th, json_string_value(t), json_string_length(t));
    }
    return 0;
}

static int add_item(const dl_server *s, json_t *msgs, json_t *it, size_t i, bool ref, dl_buf *th, dl_err *e);

/* An item_reference ({"type":"item_reference","id":...}, or an item with only an 'id'): an
 * output item of a stored response (message, function_call) by its id, or a stored response
 * by its id (its answer), resolved from the store and added as that item would be. Every item
 * resolved is charged to the request's memory budget: one request may name an item many times. */
static int add_reference(const dl_server *s, json_t *msgs, json_t *it, size_t i, dl_buf *th, dl_err *e) {
    const char *id = json_string_value(json_object_get(it, "id"));
    if (!id) return dl_fail(e, 400, "input", "input[%zu]: an item_reference needs a string 'id'", i);
    bool answer = false;
    json_t *got = resp_store_ref(s->responses, s->owner, id, &answer);
    if (!got)
        return dl_fail(e, 400, "input",
                       "input[%zu]: item '%.100s' not found (only recent responses stored with 'store' are kept)", i,
                       id);
    int rc = dl_charge(s, dl_json_bytes(got), e);
    if (!rc && answer) return json_array_append_new(msgs, got), 0; /* a response: its answer, in chat form */
    if (!rc) rc = add_item(s, msgs, got, i, true, th, e);
    json_decref(got);
    return rc;
}

/* An input_file part as an OpenAI input_audio part: its file_data an audio data URL
 * (data:audio/...;base64,...); NULL (with *why) for any other file. */
static json_t *file_part(json_t *p, const char **why) {
    const char *fd = json_string_value(json_object_get(p, "file_data"));
    if (!fd || strncasecmp(fd, "data:audio/", 11)) {
        *why = "an input_file is read only when it is audio given inline: file_data a data URL "
               "(data:audio/wav;base64,...); file_id, file_url and other files are not";
        return NULL;
    }
    return json_pack("{s:s,s:{s:O}}", "type", "input_audio", "input_audio", "data", json_object_get(p, "file_data"));
}

/* A message's content with input_image or input_file parts as OpenAI content parts (text,
 * image_url, input_audio); NULL when it has none (plain text: dl_text_of) or a part is none of
 * text, an image given by URL or an audio file (*why then says which). */
static json_t *media_content(json_t *c, const char **why) {
    *why = NULL;
    bool any = false;
    size_t k;
    json_t *p;
    json_array_foreach(c, k, p) {
        const char *t = json_string_value(json_object_get(p, "type"));
        any |= t && (!strcmp(t, "input_image") || !strcmp(t, "input_file") || !strcmp(t, "input_audio"));
    }
    if (!json_is_array(c) || !any) return NULL;
    json_t *parts = json_array();
    json_array_foreach(c, k, p) {
        const char *t = json_string_value(json_object_get(p, "type"));
        json_t *txt = json_object_get(p, "text"), *url = json_object_get(p, "image_url"), *part = NULL;
        if (t && !strcmp(t, "input_image") && json_is_string(url))
            part = json_pack("{s:s,s:{s:O}}", "type", "image_url", "image_url", "url", url);
        else if (t && !strcmp(t, "input_file")) part = file_part(p, why);
        else if (t && !strcmp(t, "input_audio"))
            *why = "the Responses API has no input_audio part (its spec: input_text, input_image, input_file): send "
                   "audio as an input_file whose file_data is a data URL (data:audio/wav;base64,...), or to "
                   "/v1/chat/completions as an input_audio part";
        else if (t && strcmp(t, "input_image") && json_is_string(txt))
            part = json_pack("{s:s,s:O}", "type", "text", "text", txt);
        if (!part) {
            if (!*why) *why = "parts must be input_text, output_text, input_image with an image_url, or input_file";
            return json_decref(parts), NULL;
        }
        json_array_append_new(parts, part);
    }
    return parts;
}

/* One input item -> appended to the chat messages (ref: it came from the store). A reasoning
 * item's text waits in *th for the assistant turn that follows it. */
static int add_item(const dl_server *s, json_t *msgs, json_t *it, size_t i, bool ref, dl_buf *th, dl_err *e) {
    if (json_is_string(it))
        return json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "user", "content", it)), 0;
    if (!json_is_object(it)) return dl_fail(e, 400, "input", "input[%zu] must be an object", i);
    const char *type = json_string_value(json_object_get(it, "type"));
    const char *role = json_string_value(json_object_get(it, "role"));
    if (!ref &&
        ((type && !strcmp(type, "item_reference")) || (!type && !role && json_is_string(json_object_get(it, "id")))))
        return add_reference(s, msgs, it, i, th, e);
    if (!type || !strcmp(type, "message")) {
        if (!role ||
            (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") && strcmp(role, "developer")))
            return dl_fail(e, 400, "input", "input[%zu].role must be user, assistant, system or developer", i);
        dl_buf b = {0};
        const char *why = NULL;
        json_t *parts = strcmp(role, "assistant") ? media_content(json_object_get(it, "content"), &why) : NULL;
        if (why || (!parts && dl_text_of(json_object_get(it, "content"), "input_text,output_text,text", &b))) {
            free(b.p);
            if (why) return dl_fail(e, 400, "input", "input[%zu].content: %s", i, why);
            return dl_fail(e, 400, "input",
                           "input[%zu].content must be a string or parts (input_text, output_text, input_image with "
                           "an image_url, input_file with audio)",
                           i);
        }
        json_t *m = json_pack("{s:s,s:s%}", "role", role, "content", b.p ? b.p : "", b.n);
        if (parts) json_object_set_new(m, "content", parts);
        if (!strcmp(role, "assistant") && th->n) {
            json_object_set_new(m, "reasoning_content", json_stringn(th->p, th->n));
            th->n = 0;
        }
        json_array_append_new(msgs, m);
        free(b.p);
        return 0;
    }
    if (!strcmp(type, "function_call")) {
        json_t *name = json_object_get(it, "name"), *args = json_object_get(it, "arguments"),
               *cid = json_object_get(it, "call_id");
        if (!json_is_string(name) || !json_is_string(args) || !json_is_string(cid))
            return dl_fail(e, 400, "input",
                           "input[%zu]: a function_call needs string 'call_id', 'name' and 'arguments'", i);
        json_t *call = json_pack("{s:O,s:s,s:{s:O,s:O}}", "id", cid, "type", "function", "function", "name", name,
                                 "arguments", args);
        json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
        json_t *calls = json_object_get(last, "tool_calls");
        if (json_is_array(calls)) json_array_append_new(calls, call);
        else {
            json_t *m = json_pack("{s:s,s:n,s:[o]}", "role", "assistant", "content", "tool_calls", call);
            if (th->n) {
                json_object_set_new(m, "reasoning_content", json_stringn(th->p, th->n));
                th->n = 0;
            }
            json_array_append_new(msgs, m);
        }
        return 0;
    }
    if (!strcmp(type, "function_call_output")) {
        json_t *cid = json_object_get(it, "call_id"), *out = json_object_get(it, "output");
        if (!json_is_string(cid) || !out)
            return dl_fail(e, 400, "input",
                           "input[%zu]: a function_call_output needs a string 'call_id' and an 'output'", i);
        dl_buf b = {0};
        if (json_is_object(out) && json_is_string(json_object_get(out, "text"))) out = json_object_get(out, "text");
        if (dl_text_of(out, "input_text,output_text,text", &b)) {
            free(b.p);
            return dl_fail(e, 400, "input", "input[%zu].output must be a string or text parts", i);
        }
        json_array_append_new(
            msgs, json_pack("{s:s,s:O,s:s%}", "role", "tool", "tool_call_id", cid, "content", b.p ? b.p : "", b.n));
        free(b.p);
        return 0;
    }
    if (!strcmp(type, "reasoning")) return reasoning_text(it, i, th, e);
    return dl_fail(
        e, 400, "input",
        "input[%zu].type '%.60s' is not supported (message, function_call, function_call_output, item_reference)", i,
        type);
}

/* Logprobs: include ["message.output_text.logprobs"] and/or top_logprobs (0..20) -> the chat's
 * logprobs + top_logprobs; the other include values name content this server never makes
 * (hosted tools, images, encrypted reasoning): accepted, there is nothing to add. */
static int want_logprobs(json_t *body, json_t *chat, bool *want, dl_err *e) {
    json_t *inc = json_object_get(body, "include"), *tl = json_object_get(body, "top_logprobs");
    if (inc && !json_is_null(inc)) {
        if (!json_is_array(inc)) return dl_fail(e, 400, "include", "'include' must be an array of strings");
        size_t i;
        json_t *v;
        json_array_foreach(inc, i, v) {
            if (!json_is_string(v)) return dl_fail(e, 400, "include", "include[%zu] must be a string", i);
            if (!strcmp(json_string_value(v), "message.output_text.logprobs")) *want = true;
        }
    }
    if (tl && !json_is_null(tl)) {
        if (!json_is_integer(tl) || json_integer_value(tl) < 0 || json_integer_value(tl) > 20)
            return dl_fail(e, 400, "top_logprobs", "'top_logprobs' must be an integer between 0 and 20");
        *want = true;
        json_object_set(chat, "top_logprobs", tl);
    }
    if (*want) json_object_set_new(chat, "logprobs", json_true());
    return 0;
}

/* The items of input (an array) appended to msgs, counted against --max-messages as they are
 * added (a reference adds a stored message). 0, or -1 after dl_fail. */
static int add_items(const dl_server *s, json_t *msgs, json_t *input, dl_err *e) {
    size_t i, max = s->max_messages > 0 ? (size_t)s->max_messages : (size_t)-1;
    json_t *it;
    dl_buf th = {0};
    int rc = 0;
    json_array_foreach(input, i, it) {
        if ((rc = add_item(s, msgs, it, i, false, &th, e))) break;
        if (json_array_size(msgs) > max) {
            rc = dl_fail(e, 400, "input", "input[%zu]: at most %d messages per request (--max-messages)", i,
                         s->max_messages);
            break;
        }
    }
    free(th.p);
    return rc;
}

/* The conversation: the stored one of previous_response_id (else none), then input (a string: a
 * user message; an array of items). A new array, or NULL after dl_fail. What the store gives is
 * charged to the request's memory budget. */
static json_t *rs_history(const dl_server *s, json_t *body, dl_err *e) {
    json_t *input = json_object_get(body, "input"), *prev = json_object_get(body, "previous_response_id");
    json_t *msgs;
    int rc = 0;
    if (prev && !json_is_null(prev)) {
        if (!json_is_string(prev))
            return dl_fail(e, 400, "previous_response_id", "'previous_response_id' must be a string"), NULL;
        if (!(msgs = resp_store_get(s->responses, s->owner, json_string_value(prev))))
            return dl_fail(e, 404, "previous_response_id", "Previous response with id '%.100s' not found.",
                           json_string_value(prev)),
                   NULL;
        rc = dl_charge(s, dl_json_bytes(msgs), e);
    } else {
        msgs = json_array();
    }
    if (!rc && json_is_string(input))
        json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "user", "content", input));
    else if (!rc && json_is_array(input)) rc = add_items(s, msgs, input, e);
    else if (!rc && input && !json_is_null(input))
        rc = dl_fail(e, 400, "input", "'input' must be a string or an array of items");
    if (!rc && !json_array_size(msgs)) rc = dl_fail(e, 400, "input", "'input' is missing or empty");
    if (rc) json_decref(msgs);
    return rc ? NULL : msgs;
}

/* instructions, store and max_output_tokens: their types; 0, or -1 after dl_fail */
static int rs_check_scalars(json_t *body, dl_err *e) {
    json_t *instr = json_object_get(body, "instructions"), *store = json_object_get(body, "store");
    json_t *mot = json_object_get(body, "max_output_tokens");
    if (instr && !json_is_null(instr) && !json_is_string(instr))
        return dl_fail(e, 400, "instructions", "'instructions' must be a string");
    if (store && !json_is_null(store) && !json_is_boolean(store))
        return dl_fail(e, 400, "store", "'store' must be a boolean");
    if (mot && !json_is_null(mot) && (!json_is_integer(mot) || json_integer_value(mot) < 1))
        return dl_fail(e, 400, "max_output_tokens", "'max_output_tokens' must be a positive integer");
    return 0;
}

/* reasoning.effort -> reasoning_effort: none / minimal turn a thinking model's block off, the
 * others leave it on (the model has no levels); the value is checked by the chat request */
static int rs_reasoning(json_t *body, json_t *chat, dl_err *e) {
    json_t *rsn = json_object_get(body, "reasoning");
    if (!rsn || json_is_null(rsn)) return 0;
    if (!json_is_object(rsn)) return dl_fail(e, 400, "reasoning", "'reasoning' must be an object");
    json_t *eff = json_object_get(rsn, "effort");
    if (eff && !json_is_null(eff)) json_object_set(chat, "reasoning_effort", eff);
    return 0;
}

/* tools (flat {"type":"function","name",...}) -> the chat's nested ones, and tool_choice */
static int rs_tools(json_t *body, json_t *chat, dl_err *e) {
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return dl_fail(e, 400, "tools", "'tools' must be an array");
        json_t *ct = json_array();
        json_object_set_new(chat, "tools", ct);
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t) {
            const char *type = json_string_value(json_object_get(t, "type"));
            json_t *name = json_object_get(t, "name");
            if (!type || strcmp(type, "function") || !json_is_string(name))
                return dl_fail(e, 400, "tools",
                               "tools[%zu]: only {\"type\":\"function\",\"name\":...} tools are supported", i);
            json_t *fn = json_pack("{s:O}", "name", name);
            json_t *d = json_object_get(t, "description"), *p = json_object_get(t, "parameters");
            if (json_is_string(d)) json_object_set(fn, "description", d);
            if (p && !json_is_null(p)) json_object_set(fn, "parameters", p);
            json_array_append_new(ct, json_pack("{s:s,s:o}", "type", "function", "function", fn));
        }
    }
    json_t *tc = json_object_get(body, "tool_choice");
    if (!tc || json_is_null(tc)) return 0;
    if (json_is_string(tc)) json_object_set(chat, "tool_choice", tc);
    else if (json_is_object(tc) && json_is_string(json_object_get(tc, "name")))
        json_object_set_new(
            chat, "tool_choice",
            json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", json_object_get(tc, "name")));
    else
        return dl_fail(e, 400, "tool_choice",
                       "'tool_choice' must be none, auto, required or {\"type\":\"function\",\"name\":...}");
    return 0;
}

/* text.format (text, json_object, json_schema) -> the chat's response_format */
static int rs_text_format(json_t *body, json_t *chat, dl_err *e) {
    json_t *text = json_object_get(body, "text"), *fmt = json_object_get(text, "format");
    if (text && !json_is_null(text) && !json_is_object(text))
        return dl_fail(e, 400, "text", "'text' must be an object");
    if (!fmt || json_is_null(fmt)) return 0;
    const char *ft = json_string_value(json_object_get(fmt, "type"));
    if (!ft) return dl_fail(e, 400, "text.format", "'text.format' must be an object with a 'type'");
    if (!strcmp(ft, "json_schema")) {
        json_t *schema = json_object_get(fmt, "schema");
        if (!json_is_object(schema))
            return dl_fail(e, 400, "text.format.schema", "'text.format.schema' must be an object");
        json_t *nm = json_object_get(fmt, "name");
        json_object_set_new(chat, "response_format",
                            json_pack("{s:s,s:{s:s,s:O}}", "type", "json_schema", "json_schema", "name",
                                      json_is_string(nm) ? json_string_value(nm) : "schema", "schema", schema));
    } else if (!strcmp(ft, "json_object")) {
        json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
    } else if (strcmp(ft, "text")) {
        return dl_fail(e, 400, "text.format", "'text.format.type' must be text, json_object or json_schema");
    }
    return 0;
}

/* The chat request of a checked body: [instructions as system] + msgs, and the settings that
 * map one to one; NULL after dl_fail. */
static json_t *rs_chat(json_t *body, json_t *msgs, bool *want_lp, dl_err *e) {
    json_t *chat = json_object(), *cm = json_array(), *instr = json_object_get(body, "instructions");
    json_t *mot = json_object_get(body, "max_output_tokens");
    if (json_is_string(instr)) json_array_append_new(cm, json_pack("{s:s,s:O}", "role", "system", "content", instr));
    json_array_extend(cm, msgs);
    json_object_set_new(chat, "messages", cm);
    static const char *same[] = {"temperature", "top_p", "stream", "parallel_tool_calls", "seed"};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
        json_t *v = json_object_get(body, same[k]);
        if (v) json_object_set(chat, same[k], v);
    }
    if (mot && !json_is_null(mot)) json_object_set(chat, "max_tokens", mot);
    if (want_logprobs(body, chat, want_lp, e) || rs_reasoning(body, chat, e) || rs_tools(body, chat, e) ||
        rs_text_format(body, chat, e)) {
        json_decref(chat);
        return NULL;
    }
    return chat;
}

/* What the answer echoes of the request (the Response object's settings). */
static json_t *rs_echo(json_t *body, bool store) {
    json_t *tools = json_object_get(body, "tools"), *tc = json_object_get(body, "tool_choice");
    json_t *text = json_object_get(body, "text"), *rsn = json_object_get(body, "reasoning");
    json_t *meta = json_object_get(body, "metadata");
    json_t *echo = json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:o}", "instructions", opt(json_object_get(body, "instructions")),
        "tools", tools && !json_is_null(tools) ? json_incref(tools) : json_array(), "tool_choice",
        tc && !json_is_null(tc) ? json_incref(tc) : json_string("auto"), "temperature",
        opt(json_object_get(body, "temperature")), "top_p", opt(json_object_get(body, "top_p")), "max_output_tokens",
        opt(json_object_get(body, "max_output_tokens")), "previous_response_id",
        opt(json_object_get(body, "previous_response_id")), "text",
        json_is_object(text) ? json_incref(text) : json_pack("{s:{s:s}}", "format", "type", "text"), "store", store,
        "metadata", json_is_object(meta) ? json_incref(meta) : json_object());
    json_object_set_new(echo, "parallel_tool_calls",
                        json_boolean(!json_is_false(json_object_get(body, "parallel_tool_calls"))));
    json_object_set_new(echo, "reasoning",
                        json_is_object(rsn) ? json_incref(rsn) : json_pack("{s:n,s:n}", "effort", "summary"));
    return echo;
}

static json_t *input_list(const dl_server *s, json_t *body);

static json_t *rs_request(const dl_server *s, json_t *body, void **state, bool *legacy, dl_err *e) {
    *legacy = false;
    json_t *msgs = rs_history(s, body, e), *chat = NULL;
    bool want_lp = false;
    if (!msgs || rs_check_scalars(body, e) || !(chat = rs_chat(body, msgs, &want_lp, e))) goto bad;
    rs_state *st = calloc(1, sizeof *st);
    if (!st) {
        dl_fail(e, 500, NULL, "out of memory");
        goto bad;
    }
    dl_make_id(s, "resp_", st->id, sizeof st->id);
    dl_make_id(s, "msg_", st->msg_id, sizeof st->msg_id);
    dl_make_id(s, "rs_", st->rs_id, sizeof st->rs_id);
    st->created = time(NULL);
    st->store = !json_is_false(json_object_get(body, "store"));
    st->messages = msgs;
    st->output = json_array();
    if (want_lp) {
        st->lp = json_array();
        st->lp_pending = json_array();
    }
    st->echo = rs_echo(body, st->store);
    if (st->store) st->input = input_list(s, body);
    *state = st;
    return chat;
bad:
    json_decref(msgs);
    json_decref(chat);
    return NULL;
}

/* cache_write_tokens: none are billed for writing the prefix cache here (as the Anthropic
 * dialect's cache_creation_input_tokens) */
static json_t *usage(int in, int cached, int out, int reasoning) {
    return json_pack("{s:i,s:{s:i,s:i},s:i,s:{s:i},s:i}", "input_tokens", in, "input_tokens_details", "cached_tokens",
                     cached, "cache_write_tokens", 0, "output_tokens", out, "output_tokens_details", "reasoning_tokens",
                     reasoning, "total_tokens", in + out);
}

/* The response object (steals output and usage; no usage yet: none, the spec allows no null). */
static json_t *rs_object(const dl_server *s, rs_state *st, const char *status, json_t *output, json_t *use) {
    json_t *o =
        json_pack("{s:s,s:s,s:I,s:s,s:n,s:o,s:s,s:o}", "id", st->id, "object", "response", "created_at",
                  (json_int_t)st->created, "status", status, "error", "incomplete_details",
                  strcmp(status, "incomplete") ? json_null() : json_pack("{s:s}", "reason", "max_output_tokens"),
                  "model", s->alias, "output", output);
    if (use) json_object_set_new(o, "usage", use);
    json_object_update(o, st->echo);
    return o;
}

/* The logprobs of output text: a copy of the chat's entries ({token, logprob, bytes,
 * top_logprobs}, the same shape), [] when none were asked for. */
static json_t *lp_copy(json_t *lp) { return json_is_array(lp) ? json_deep_copy(lp) : json_array(); }

static json_t *message_item(rs_state *st, const char *status, const char *text, size_t n) {
    return json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:s%,s:[],s:o}]}", "id", st->msg_id, "type", "message", "status", status,
                     "role", "assistant", "content", "type", "output_text", "text", text, n, "annotations", "logprobs",
                     lp_copy(st->lp));
}

/* A thinking model's block as a reasoning item (its text as reasoning_text content). */
static json_t *reasoning_item(rs_state *st, const char *status, const char *text, size_t n) {
    return json_pack("{s:s,s:s,s:s,s:[],s:[{s:s,s:s%}]}", "id", st->rs_id, "type", "reasoning", "status", status,
                     "summary", "content", "type", "reasoning_text", "text", text, n);
}

static json_t *call_item(const dl_server *s, const char *call_id, const char *name, const char *status,
                         const char *args) {
    char id[48];
    dl_make_id(s, "fc_", id, sizeof id);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", id, "type", "function_call", "status", status, "call_id",
                     call_id, "name", name, "arguments", args);
}

/* A call in the chat form the store keeps ({id, type, function: {name, arguments}}). */
static json_t *chat_call(const char *id, const char *name, const char *args) {
    return json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name", name, "arguments",
                     args);
}

/* Keeps the conversation under the response's id, with the response object o and its input items
 * (GET /v1/responses/{id}, input_items), and each output item under its own id (for
 * previous_response_id and item_reference). */
static void remember(rs_state *st, const dl_server *s, const char *text, size_t n, json_t *output, json_t *o) {
    if (!st->store) return;
    size_t i;
    json_t *item;
    json_array_foreach(output, i, item) {
        const char *iid = json_string_value(json_object_get(item, "id"));
        if (iid) resp_store_put(s->responses, s->owner, iid, item);
    }
    json_t *m = json_pack("{s:s}", "role", "assistant");
    json_object_set_new(m, "content", n || !json_array_size(st->calls) ? json_stringn(text, n) : json_null());
    if (json_array_size(st->calls)) json_object_set(m, "tool_calls", st->calls);
    if (st->thinking.n) json_object_set_new(m, "reasoning_content", json_stringn(st->thinking.p, st->thinking.n));
    json_array_append_new(st->messages, m);
    json_t *extra = json_pack("{s:O,s:o}", "response", o, "input", st->input ? json_incref(st->input) : json_array());
    resp_store_put_response(s->responses, s->owner, st->id, st->messages, extra);
    json_decref(extra);
}

static json_t *rs_final(const dl_server *s, void *state, const job_final *f, const job_run *run) {
    rs_state *st = state;
    (void)run;
    const job_choice *c = &f->ch[0];
    json_t *out = json_array();
    if (c->reasoning) {
        dl_buf_add(&st->thinking, c->reasoning, c->n_reasoning);
        json_array_append_new(out, reasoning_item(st, "completed", c->reasoning, c->n_reasoning));
    }
    const char *text = c->text ? c->text : "";
    size_t n = c->text ? c->n : 0;
    if (st->lp && c->logprobs) {
        json_t *lp = dl_logprobs_json(s->model, c->lp, c->n_lp);
        json_array_extend(st->lp, lp);
        json_decref(lp);
    }
    if (n || !c->n_calls) json_array_append_new(out, message_item(st, "completed", text, n));
    st->calls = json_array();
    for (int i = 0; i < c->n_calls; i++) {
        json_array_append_new(st->calls, chat_call(c->calls[i].id, c->calls[i].name, c->calls[i].args));
        json_array_append_new(out, call_item(s, c->calls[i].id, c->calls[i].name, "completed", c->calls[i].args));
    }
    const job_usage *u = &f->usage;
    json_t *o = rs_object(s, st, c->finish == JOB_LENGTH ? "incomplete" : "completed", out,
                          usage(u->prompt, u->cached, u->completion, u->reasoning));
    remember(st, s, text, n, out, o);
    return o;
}

/* ---- streaming ---- */

static void ev(rs_state *st, dl_write w, void *wctx, const char *type, json_t *data) {
    json_object_set_new(data, "type", json_string(type));
    json_object_set_new(data, "sequence_number", json_integer(st->seq++));
    dl_sse(w, wctx, type, data);
}

/* The reasoning item of the stream: opened with the first thinking text, closed before the
 * answer's first item. */
static void open_think(rs_state *st, dl_write w, void *wctx) {
    if (st->think_open) return;
    st->think_open = true;
    json_t *item = json_pack("{s:s,s:s,s:s,s:[],s:[]}", "id", st->rs_id, "type", "reasoning", "status", "in_progress",
                             "summary", "content");
    ev(st, w, wctx, "response.output_item.added", json_pack("{s:i,s:o}", "output_index", st->n_out, "item", item));
    ev(st, w, wctx, "response.content_part.added",
       json_pack("{s:s,s:i,s:i,s:{s:s,s:s}}", "item_id", st->rs_id, "output_index", st->n_out, "content_index", 0,
                 "part", "type", "reasoning_text", "text", ""));
}

static void close_think(rs_state *st, dl_write w, void *wctx) {
    if (!st->think_open) return;
    st->think_open = false;
    const char *t = st->thinking.p ? st->thinking.p : "";
    ev(st, w, wctx, "response.reasoning_text.done",
       json_pack("{s:s,s:i,s:i,s:s%}", "item_id", st->rs_id, "output_index", st->n_out, "content_index", 0, "text", t,
                 st->thinking.n));
    ev(st, w, wctx, "response.content_part.done",
       json_pack("{s:s,s:i,s:i,s:{s:s,s:s%}}", "item_id", st->rs_id, "output_index", st->n_out, "content_index", 0,
                 "part", "type", "reasoning_text", "text", t, st->thinking.n));
    json_t *item = reasoning_item(st, "completed", t, st->thinking.n);
    json_array_append(st->output, item);
    ev(st, w, wctx, "response.output_item.done", json_pack("{s:i,s:o}", "output_index", st->n_out++, "item", item));
}

static void open_msg(rs_state *st, dl_write w, void *wctx) {
    if (st->msg_open) return;
    close_think(st, w, wctx);
    st->msg_open = true;
    json_t *item = json_pack("{s:s,s:s,s:s,s:s,s:[]}", "id", st->msg_id, "type", "message", "status", "in_progress",
                             "role", "assistant", "content");
    ev(st, w, wctx, "response.output_item.added", json_pack("{s:i,s:o}", "output_index", st->n_out, "item", item));
    ev(st, w, wctx, "response.content_part.added",
       json_pack("{s:s,s:i,s:i,s:{s:s,s:s,s:[],s:[]}}", "item_id", st->msg_id, "output_index", st->n_out,
                 "content_index", 0, "part", "type", "output_text", "text", "", "annotations", "logprobs"));
}

static void close_msg(rs_state *st, dl_write w, void *wctx) {
    if (!st->msg_open) return;
    st->msg_open = false;
    const char *t = st->text.p ? st->text.p : "";
    ev(st, w, wctx, "response.output_text.done",
       json_pack("{s:s,s:i,s:i,s:s%,s:o}", "item_id", st->msg_id, "output_index", st->n_out, "content_index", 0, "text",
                 t, st->text.n, "logprobs", lp_copy(st->lp)));
    ev(st, w, wctx, "response.content_part.done",
       json_pack("{s:s,s:i,s:i,s:{s:s,s:s%,s:[],s:o}}", "item_id", st->msg_id, "output_index", st->n_out,
                 "content_index", 0, "part", "type", "output_text", "text", t, st->text.n, "annotations", "logprobs",
                 lp_copy(st->lp)));
    json_t *item = message_item(st, "completed", t, st->text.n);
    json_array_append(st->output, item);
    ev(st, w, wctx, "response.output_item.done", json_pack("{s:i,s:o}", "output_index", st->n_out++, "item", item));
}

/* The logprob entries of a delta, kept for the message and sent with its next text delta (a
 * token's entry may come before its text: a partial UTF-8 character). */
static void keep_logprobs(const dl_server *s, rs_state *st, const job_event *je) {
    if (!st->lp || !je->lp) return;
    json_t *lp = dl_logprobs_json(s->model, je->lp, je->n_lp);
    json_array_extend(st->lp, lp);
    json_array_extend(st->lp_pending, lp);
    json_decref(lp);
}

static void reasoning_delta(rs_state *st, const job_event *je, dl_write w, void *wctx) {
    open_think(st, w, wctx);
    dl_buf_add(&st->thinking, je->text, je->n);
    ev(st, w, wctx, "response.reasoning_text.delta",
       json_pack("{s:s,s:i,s:i,s:s%}", "item_id", st->rs_id, "output_index", st->n_out, "content_index", 0, "delta",
                 je->text, je->n));
}

static void text_delta(rs_state *st, const job_event *je, dl_write w, void *wctx) {
    open_msg(st, w, wctx);
    dl_buf_add(&st->text, je->text, je->n);
    json_t *sent = st->lp_pending ? st->lp_pending : json_array();
    if (st->lp_pending) st->lp_pending = json_array();
    ev(st, w, wctx, "response.output_text.delta",
       json_pack("{s:s,s:i,s:i,s:s%,s:o}", "item_id", st->msg_id, "output_index", st->n_out, "content_index", 0,
                 "delta", je->text, je->n, "logprobs", sent));
}

/* A whole call: a function_call item added, its arguments in one delta, done. */
static void call_events(const dl_server *s, rs_state *st, const job_event *je, dl_write w, void *wctx) {
    close_think(st, w, wctx);
    close_msg(st, w, wctx);
    if (!st->calls) st->calls = json_array();
    const char *args = je->call_args ? je->call_args : "{}";
    json_array_append_new(st->calls, chat_call(je->call_id, je->call_name, args));
    json_t *item = call_item(s, je->call_id, je->call_name, "in_progress", "");
    const char *iid = json_string_value(json_object_get(item, "id"));
    ev(st, w, wctx, "response.output_item.added", json_pack("{s:i,s:O}", "output_index", st->n_out, "item", item));
    ev(st, w, wctx, "response.function_call_arguments.delta",
       json_pack("{s:s,s:i,s:s}", "item_id", iid, "output_index", st->n_out, "delta", args));
    ev(st, w, wctx, "response.function_call_arguments.done",
       json_pack("{s:s,s:i,s:s,s:s}", "item_id", iid, "output_index", st->n_out, "name", je->call_name, "arguments",
                 args));
    json_object_set_new(item, "status", json_string("completed"));
    json_object_set_new(item, "arguments", json_string(args));
    json_array_append(st->output, item);
    ev(st, w, wctx, "response.output_item.done", json_pack("{s:i,s:o}", "output_index", st->n_out++, "item", item));
}

static void complete(const dl_server *s, rs_state *st, const job_event *je, dl_write w, void *wctx) {
    if (st->completed) return;
    st->completed = true;
    close_think(st, w, wctx);
    if (!st->msg_open && !st->calls) open_msg(st, w, wctx); /* the answer is at least an empty message */
    close_msg(st, w, wctx);
    bool cut = je->finish == JOB_LENGTH;
    const job_run *run = je->run;
    json_t *o = rs_object(s, st, cut ? "incomplete" : "completed", json_incref(st->output),
                          usage(run->n_prompt, run->n_cached, run->n_generated, run->n_reasoning));
    remember(st, s, st->text.p ? st->text.p : "", st->text.n, st->output, o);
    ev(st, w, wctx, cut ? "response.incomplete" : "response.completed", json_pack("{s:o}", "response", o));
}

static void rs_event(const dl_server *s, void *state, const job_event *e, dl_write w, void *wctx) {
    rs_state *st = state;
    if (e->kind == JOB_EV_END) return; /* the stream ends after response.completed */
    if (e->kind == JOB_EV_ERROR) {
        ev(st, w, wctx, "error",
           json_pack("{s:o,s:s,s:n}", "code", e->err->code[0] ? json_string(e->err->code) : json_null(), "message",
                     e->err->msg, "param"));
        return;
    }
    if (!st->started) {
        st->started = true;
        ev(st, w, wctx, "response.created",
           json_pack("{s:o}", "response", rs_object(s, st, "in_progress", json_array(), NULL)));
        ev(st, w, wctx, "response.in_progress",
           json_pack("{s:o}", "response", rs_object(s, st, "in_progress", json_array(), NULL)));
    }
    if (e->kind == JOB_EV_TEXT || e->kind == JOB_EV_REASONING) keep_logprobs(s, st, e);
    bool text = dl_text_ok(e->text, e->n);
    if (e->kind == JOB_EV_REASONING && text) reasoning_delta(st, e, w, wctx);
    if (e->kind == JOB_EV_TEXT && text) text_delta(st, e, w, wctx);
    if (e->kind == JOB_EV_TOOL_CALL) call_events(s, st, e, w, wctx);
    if (e->kind == JOB_EV_FINISH) complete(s, st, e, w, wctx);
}

/* ---- the stored responses: GET /v1/responses/{id}, its input_items, DELETE ---- */

/* A text as a content part: input_text, or output_text (with annotations and logprobs). */
static json_t *text_part(bool output, json_t *text) {
    if (output) return json_pack("{s:s,s:O,s:[],s:[]}", "type", "output_text", "text", text, "annotations", "logprobs");
    return json_pack("{s:s,s:O}", "type", "input_text", "text", text);
}

/* A message input item (or a bare string: the user's) as the spec's item resource: its id (the
 * client's, else a new msg_ one), a status, its content as text parts. */
static json_t *listed_message(const dl_server *s, json_t *it, const char *role) {
    bool output = !strcmp(role, "assistant");
    json_t *content = json_is_object(it) ? json_object_get(it, "content") : it, *parts = json_array();
    if (json_is_string(content)) json_array_append_new(parts, text_part(output, content));
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p) {
        json_t *t = json_object_get(p, "text");
        if (json_is_string(t)) json_array_append_new(parts, text_part(output, t));
    }
    char id[48];
    const char *given = json_string_value(json_object_get(it, "id"));
    if (!given) dl_make_id(s, "msg_", id, sizeof id);
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", given ? given : id, "type", "message", "role", role, "status",
                     "completed", "content", parts);
}

/* Another input item (function_call, function_call_output, reasoning) as given, with an id (the
 * client's, else a new one) and a status; a call's output as the text the model read. */
static json_t *listed_other(const dl_server *s, json_t *it, const char *type) {
    json_t *c = json_deep_copy(it);
    const char *prefix = !strcmp(type, "function_call") ? "fc_" : !strcmp(type, "reasoning") ? "rs_" : "fco_";
    if (!json_is_string(json_object_get(c, "id"))) {
        char id[48];
        dl_make_id(s, prefix, id, sizeof id);
        json_object_set_new(c, "id", json_string(id));
    }
    if (!json_is_string(json_object_get(c, "status"))) json_object_set_new(c, "status", json_string("completed"));
    if (!strcmp(type, "reasoning") && !json_is_array(json_object_get(c, "summary")))
        json_object_set_new(c, "summary", json_array());
    json_t *out = json_object_get(c, "output");
    if (!strcmp(type, "function_call_output") && !json_is_string(out)) {
        dl_buf b = {0};
        if (json_is_object(out)) out = json_object_get(out, "text");
        if (!dl_text_of(out, "input_text,output_text,text", &b))
            json_object_set_new(c, "output", json_stringn(b.p ? b.p : "", b.n));
        free(b.p);
    }
    return c;
}

/* A referenced item as stored: an output item, or a whole response's output items. */
static void listed_reference(const dl_server *s, json_t *list, const char *id) {
    json_t *got = resp_store_get(s->responses, s->owner, id);
    if (json_is_object(got)) {
        json_array_append_new(list, got);
        return;
    }
    json_decref(got);
    json_t *extra = resp_store_get_extra(s->responses, s->owner, id);
    json_array_extend(list, json_object_get(json_object_get(extra, "response"), "output"));
    json_decref(extra);
}

/* The request's input (already checked by rs_history) as the items input_items lists. */
static json_t *input_list(const dl_server *s, json_t *body) {
    json_t *input = json_object_get(body, "input"), *list = json_array();
    if (json_is_string(input)) json_array_append_new(list, listed_message(s, input, "user"));
    size_t i;
    json_t *it;
    json_array_foreach(input, i, it) {
        const char *type = json_string_value(json_object_get(it, "type"));
        const char *role = json_string_value(json_object_get(it, "role"));
        if (json_is_string(it)) json_array_append_new(list, listed_message(s, it, "user"));
        else if ((type && !strcmp(type, "item_reference")) ||
                 (!type && !role && json_is_string(json_object_get(it, "id"))))
            listed_reference(s, list, json_string_value(json_object_get(it, "id")));
        else if (!type || !strcmp(type, "message"))
            json_array_append_new(list, listed_message(s, it, role ? role : "user"));
        else json_array_append_new(list, listed_other(s, it, type));
    }
    return list;
}

/* The page of items an input_items query asks for (order: desc by default, after, limit 1..100,
 * 20 by default) as a list object; NULL after dl_fail. */
static json_t *item_page(http_req *q, json_t *items, dl_err *e) {
    const char *order = http_query(q, "order"), *after = http_query(q, "after"), *lim = http_query(q, "limit");
    long limit = 20;
    if (lim) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (end == lim || *end || limit < 1 || limit > 100)
            return dl_fail(e, 400, "limit", "'limit' must be an integer between 1 and 100"), NULL;
    }
    if (order && strcmp(order, "asc") && strcmp(order, "desc"))
        return dl_fail(e, 400, "order", "'order' must be asc or desc"), NULL;
    bool asc = order && !strcmp(order, "asc");
    size_t n = json_array_size(items), start = 0;
#define AT(k) json_array_get(items, asc ? (k) : n - 1 - (k))
    if (after) {
        const char *iid;
        while (start < n && (!(iid = json_string_value(json_object_get(AT(start), "id"))) || strcmp(after, iid)))
            start++;
        if (start == n)
            return dl_fail(e, 400, "after", "'after': no input item '%.100s' in this response", after), NULL;
        start++; /* the page begins after it */
    }
    json_t *data = json_array();
    for (size_t k = start; k < n && json_array_size(data) < (size_t)limit; k++) json_array_append(data, AT(k));
#undef AT
    size_t got = json_array_size(data);
    const char *first = json_string_value(json_object_get(json_array_get(data, 0), "id"));
    const char *last = json_string_value(json_object_get(json_array_get(data, got - 1), "id"));
    return json_pack("{s:s,s:o,s:b,s:s,s:s}", "object", "list", "data", data, "has_more", start + got < n, "first_id",
                     first ? first : "", "last_id", got && last ? last : "");
}

/* DELETE: the response and its output items leave the store. */
static json_t *forget(const dl_server *s, const char *id, json_t *extra) {
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(json_object_get(extra, "response"), "output"), i, item) {
        const char *iid = json_string_value(json_object_get(item, "id"));
        if (iid) resp_store_del(s->responses, s->owner, iid);
    }
    resp_store_del(s->responses, s->owner, id);
    return json_pack("{s:s,s:s,s:b}", "id", id, "object", "response", "deleted", 1);
}

/* GET /v1/responses/{id} (the response object), GET .../{id}/input_items (a page of its input),
 * DELETE /v1/responses/{id}: a response stored with the key this request sends. */
static json_t *rs_stored(const dl_server *s, http_req *q, dl_err *e) {
    const char *rest = http_rest(q);
    size_t n = strcspn(rest, "/");
    bool items = !strcmp(rest + n, "/input_items"), del = !strcmp(http_method(q), "DELETE");
    char id[64];
    if (n >= sizeof id || (rest[n] && !items) || (items && del))
        return dl_fail(e, 404, NULL, "no route %.11s /v1/responses/%.200s", http_method(q), rest), NULL;
    memcpy(id, rest, n);
    id[n] = 0;
    json_t *extra = resp_store_get_extra(s->responses, s->owner, id), *out = NULL;
    if (!extra)
        return dl_fail(e, 404, NULL,
                       "Response with id '%.100s' not found (only recent responses stored with 'store' are kept, "
                       "for the API key that made them).",
                       id),
               NULL;
    if (del) out = forget(s, id, extra);
    else if (items) out = item_page(q, json_object_get(extra, "input"), e);
    else out = json_incref(json_object_get(extra, "response"));
    json_decref(extra);
    return out;
}

const dialect dialect_responses = {
    .name = "responses",
    .stream_type = "text/event-stream",
    .request = rs_request,
    .final = rs_final,
    .event = rs_event,
    .error = NULL, /* OpenAI's shape */
    .free_state = rs_free,
};

static const dl_hook stored = {.route = rs_stored};

const http_route responses_routes[] = {
    {HTTP_POST, "/v1/responses", api_route_dialect, 0, &dialect_responses},
    {HTTP_POST, "/responses", api_route_dialect, 0, &dialect_responses},
    {HTTP_GET | HTTP_HEAD | HTTP_DELETE, "/v1/responses/*", api_route_answer, 0, &stored},
    {HTTP_GET | HTTP_HEAD | HTTP_DELETE, "/responses/*", api_route_answer, 0, &stored},
};
const int responses_n_routes = sizeof responses_routes / sizeof *responses_routes;
