/* job_chat.c — the chat body of the shared request (job.h): messages (every string the client
 * sent guarded against special-token text; past tool calls written back in LFM2's syntax by
 * chat/toolcall.c, beside its parser), tools and tool_choice (a grammar for the calls),
 * response_format (JSON or a compiled JSON Schema, the compile stopped if the client leaves),
 * the thinking switches (reasoning_effort, chat_template_kwargs, thinking_token_budget), the
 * chat template rendered and tokenized, Ollama's 'context' ids before the prompt. The fields it
 * shares with completions are job_request.c's. */
#include "serve/job.h"
#include "chat/toolcall.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- chat messages --------------------------------------------------------------------------- */

static void buf_add_guarded(serve_api *api, char **buf, size_t *len, size_t *cap, const char *s, size_t n);

/* What a request's parts put beside its text: images and audio clips. */
typedef struct job_media {
    job_images *ji;
    job_audio *ja;
} job_media;

/* Text of a message content, guarded (the client's special-token texts stay plain): a string,
 * or the parts of an array: text, images (job_image.c), each an "<image>" placeholder (not
 * guarded: the template and the tokenizer make it the placeholder token), and audio clips
 * (job_audio.c), each an LFM2C_AUDIO_MARKER (not guarded: the prompt is split there); NULL
 * content is "". */
static int content_text(serve_api *api, json_t *c, job_media *md, char **buf, size_t *len, size_t *cap, http_err *e) {
    if (!c || json_is_null(c)) return 0;
    if (json_is_string(c)) {
        buf_add_guarded(api, buf, len, cap, json_string_value(c), json_string_length(c));
        return 0;
    }
    if (!json_is_array(c))
        return http_set_err(e, 400, "invalid_type", "messages", "message 'content' must be a string or an array");
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *t = json_object_get(part, "text");
        const char *type = json_string_value(json_object_get(part, "type"));
        if (json_is_object(part) && type && !strcmp(type, "image_url")) {
            if (job_image_part(api, part, md->ji, e)) return -1;
            req_buf_add(buf, len, cap, "<image>", 7);
            continue;
        }
        if (json_is_object(part) && type && !strcmp(type, "input_audio")) {
            if (job_audio_part(api, part, md->ja, e)) return -1;
            req_buf_add(buf, len, cap, LFM2C_AUDIO_MARKER, sizeof LFM2C_AUDIO_MARKER - 1);
            continue;
        }
        if (!json_is_object(part) || !json_is_string(t))
            return http_set_err(e, 400, "invalid_value", "messages",
                                "only text, image_url and input_audio content parts are supported");
        buf_add_guarded(api, buf, len, cap, json_string_value(t), json_string_length(t));
    }
    return 0;
}

/* OpenAI messages -> the array the chat template renders: content as text, assistant
 * tool_calls written the way LFM2 emits them. */
static void guard_json(serve_api *api, json_t *v);

/* Appends s[0..n) guarded (lfm2c_guard_text: its special-token texts stay plain) to the buffer. */
static void buf_add_guarded(serve_api *api, char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    size_t gn = 0;
    char *g = lfm2c_guard_text(api->model, s, n, &gn);
    if (g) req_buf_add(buf, len, cap, g, gn);
    else {
        free(*buf);
        *buf = NULL;
    }
    free(g);
}

/* The request's messages as {role, content} for the template. Every string the client sent is
 * guarded here (its special-token texts stay plain); past tool calls are written back the way
 * LFM2 emits them, between the real call markers, which stay special tokens. */
/* A message's tool_calls, written into *text the way LFM2 emits them (toolcall.c). */
static int add_tool_calls(serve_api *api, json_t *calls, size_t i, char **text, size_t *len, size_t *cap, http_err *e) {
    if (!json_is_array(calls)) return http_set_err(e, 400, "invalid_type", "messages", "'tool_calls' must be an array");
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
            return http_set_err(e, 400, "invalid_value", "messages",
                                "messages[%zu].tool_calls[%zu] needs a function name and JSON object arguments", i, k);
        }
        json_t *call = json_pack("{s:s,s:o}", "name", name, "arguments", a);
        guard_json(api, call); /* the name and the arguments are the client's text */
        json_array_append_new(plain, call);
    }
    size_t n_calls = 0;
    char *ct = toolcall_format(plain, &n_calls);
    json_decref(plain);
    if (!ct) return http_set_err(e, 400, "invalid_value", "messages", "messages[%zu].tool_calls cannot be written", i);
    req_buf_add(text, len, cap, ct, n_calls);
    free(ct);
    return 0;
}

/* One message of the request as the template takes it: role (developer as system), content as
 * text after its tool calls, and an assistant turn's thinking (reasoning_content as answered,
 * 'thinking' as Ollama names it: the template decides whether it is rendered; LFM2.5 keeps it
 * only for the turns after the last user message). NULL after http_set_err. */
static json_t *normalize_message(serve_api *api, json_t *m, size_t i, job_media *md, http_err *e) {
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role)
        return http_set_err(e, 400, "invalid_type", "messages", "messages[%zu] must be an object with a string 'role'",
                            i),
               NULL;
    if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool") &&
        strcmp(role, "developer"))
        return http_set_err(e, 400, "invalid_value", "messages",
                            "messages[%zu].role '%s' is not one of system, user, assistant, tool", i, role),
               NULL;
    size_t cap = 256, len = 0;
    char *text = malloc(cap);
    if (text) text[0] = 0;
    json_t *calls = json_object_get(m, "tool_calls");
    if (calls && !json_is_null(calls) && add_tool_calls(api, calls, i, &text, &len, &cap, e)) {
        free(text);
        return NULL;
    }
    if (content_text(api, json_object_get(m, "content"), md, &text, &len, &cap, e)) {
        free(text);
        return NULL;
    }
    if (!text) return http_set_err(e, 500, NULL, NULL, "out of memory"), NULL;
    json_t *nm = json_pack("{s:s,s:s%}", "role", strcmp(role, "developer") ? role : "system", "content", text, len);
    free(text);
    json_t *th = json_object_get(m, "reasoning_content");
    if (!json_is_string(th)) th = json_object_get(m, "thinking");
    if (!strcmp(role, "assistant") && json_is_string(th) && json_string_length(th)) {
        json_t *g = json_copy(th);
        guard_json(api, g); /* the client's text, like the content */
        json_object_set_new(nm, "thinking", g);
    }
    return nm;
}

static json_t *normalize_messages(serve_api *api, json_t *msgs, job_media *md, http_err *e) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        http_set_err(e, 400, json_is_array(msgs) ? "invalid_value" : "invalid_type", "messages",
                     "'messages' must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *nm = normalize_message(api, m, i, md, e);
        if (!nm) {
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, nm);
    }
    return out;
}

/* The function objects of an OpenAI tools array (what the LFM2 template lists). */
static json_t *tool_functions(json_t *tools, http_err *e) {
    if (!json_is_array(tools)) {
        http_set_err(e, 400, "invalid_type", "tools", "'tools' must be an array");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!json_is_object(t) || (type && strcmp(type, "function")) || !json_is_object(fn) ||
            !json_is_string(json_object_get(fn, "name"))) {
            json_decref(out);
            http_set_err(e, 400, "invalid_value", "tools",
                         "tools[%zu] must be {\"type\":\"function\",\"function\":{\"name\":...}}", i);
            return NULL;
        }
        json_array_append(out, fn);
    }
    return out;
}


/* A request with b's settings and its own copy of `prompt` (not submitted yet). */

static void guard_json(serve_api *api, json_t *v) {
    if (json_is_string(v)) {
        size_t n = 0;
        char *g = lfm2c_guard_text(api->model, json_string_value(v), json_string_length(v), &n);
        if (g && (n != json_string_length(v) || memcmp(g, json_string_value(v), n))) json_string_setn(v, g, n);
        free(g);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) guard_json(api, x);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) guard_json(api, x);
        /* keys reach the prompt too (tool schemas, call arguments through tojson): a key holding
         * special-token text is replaced by its guarded form, the order of the others kept */
        bool any = false;
        json_object_foreach(v, k, x) {
            size_t n = 0, kl = strlen(k);
            char *g = lfm2c_guard_text(api->model, k, kl, &n);
            if (g && (n != kl || memcmp(g, k, n))) any = true;
            free(g);
        }
        if (!any) return;
        json_t *copy = json_object();
        json_object_foreach(v, k, x) {
            char *g = lfm2c_guard_text(api->model, k, strlen(k), NULL);
            json_object_set(copy, g ? g : k, x);
            free(g);
        }
        json_object_clear(v);
        json_object_update(v, copy);
        json_decref(copy);
    }
}

/* Ollama's /api/generate 'context': the token ids an earlier answer returned (its prompt and
 * reply) come before this turn's prompt, whose own BOS is then dropped. */
static int prepend_context(serve_api *api, json_t *ctx, sched_req *r, http_err *e) {
    if (!ctx || json_is_null(ctx) || (json_is_array(ctx) && !json_array_size(ctx))) return 0;
    size_t n = json_array_size(ctx), i;
    if (!json_is_array(ctx))
        return http_set_err(e, 400, "invalid_type", "context", "'context' must be an array of token ids");
    if (n >= (size_t)api->n_ctx)
        return http_set_err(e, 400, "context_length_exceeded", "context",
                            "'context' has %zu tokens; the context holds %d", n, api->n_ctx);
    int skip = r->n_prompt > 0 && r->prompt[0] == lfm2c_model_get_info(api->model)->bos_id;
    int32_t *t = malloc((n + (size_t)r->n_prompt) * sizeof *t);
    if (!t) return http_set_err(e, 500, NULL, NULL, "out of memory");
    json_t *x;
    json_array_foreach(ctx, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= api->n_vocab) {
            free(t);
            return http_set_err(e, 400, "invalid_value", "context", "context[%zu] is not a token id of this model", i);
        }
        t[i] = (int32_t)json_integer_value(x);
    }
    memcpy(t + n, r->prompt + skip, (size_t)(r->n_prompt - skip) * sizeof *t);
    free(r->prompt);
    r->prompt = t;
    r->n_prompt = (int)n + r->n_prompt - skip;
    return 0;
}

/* The chat template the server renders with (its own or the model's; NULL: the built-in one). */
static const char *chat_template_src(serve_api *api) {
    return api->p.chat_template ? api->p.chat_template : lfm2c_model_meta_str(api->model, "tokenizer.chat_template");
}

/* A thinking model: its template writes <think> blocks, or its vocabulary has "<think>" as one
 * token. Only then may constrained output wait for a block (another model's first "<" stays the
 * grammar's to allow or not). */
static bool model_thinks(serve_api *api) {
    const char *src = chat_template_src(api);
    if (src && strstr(src, LFM2C_THINK_OPEN)) return true;
    lfm2c_error err = {0};
    int n = 0;
    int32_t *t = lfm2c_tokenize(api->model, LFM2C_THINK_OPEN, strlen(LFM2C_THINK_OPEN), false, true, &n, &err);
    free(t);
    return n == 1;
}

/* A thinking model's block (lfm2c_think): the request's switches -> the scheduler request and the
 * template's variables (tvars). Thinking is off with reasoning_effort none / minimal or
 * chat_template_kwargs.enable_thinking false: a template that knows enable_thinking gets it
 * false, and a block the model opens anyway is closed at once (a budget of 0); the other
 * efforts leave it on (the model has no levels). thinking_token_budget (vLLM's name) caps the
 * block, within the server's --reasoning-budget. */
static int parse_thinking(serve_api *api, json_t *body, sched_req *r, json_t *tvars, http_err *e) {
    bool off = false;
    json_t *eff = json_object_get(body, "reasoning_effort");
    if (eff && !json_is_null(eff)) {
        const char *v = json_string_value(eff);
        if (!v ||
            (strcmp(v, "none") && strcmp(v, "minimal") && strcmp(v, "low") && strcmp(v, "medium") && strcmp(v, "high")))
            return http_set_err(e, 400, "invalid_value", "reasoning_effort",
                                "'reasoning_effort' must be none, minimal, low, medium or high");
        off = !strcmp(v, "none") || !strcmp(v, "minimal");
    }
    json_t *kw = json_object_get(body, "chat_template_kwargs");
    if (kw && !json_is_null(kw)) {
        if (!json_is_object(kw))
            return http_set_err(e, 400, "invalid_type", "chat_template_kwargs",
                                "'chat_template_kwargs' must be an object");
        json_t *et = json_object_get(kw, "enable_thinking");
        if (et && !json_is_boolean(et))
            return http_set_err(e, 400, "invalid_type", "chat_template_kwargs",
                                "'chat_template_kwargs.enable_thinking' must be a boolean");
        if (json_is_false(et)) off = true;
        static const char *fixed[] = {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"};
        const char *k;
        json_t *v;
        json_object_foreach(kw, k, v) {
            bool keep = true;
            for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) keep = keep && strcmp(k, fixed[i]);
            if (keep) json_object_set(tvars, k, v);
        }
    }
    long long budget = -1;
    if (req_int(body, "thinking_token_budget", 0, 1 << 30, &budget, e)) return -1;
    if (off) {
        budget = 0;
        const char *src = chat_template_src(api);
        if (src && strstr(src, "enable_thinking") && !json_object_get(tvars, "enable_thinking"))
            json_object_set_new(tvars, "enable_thinking", json_false());
    }
    if (api->p.limit_reasoning && (budget < 0 || budget > api->p.reasoning_budget)) budget = api->p.reasoning_budget;
    r->think_budget = (int)budget;
    r->think_allowed = !off && model_thinks(api);
    r->think_split = api->p.reasoning_format == SERVER_REASONING_SPLIT;
    json_t *ts = json_object_get(body, "test_script");
    if (api->p.test_script && ts && !json_is_null(ts)) { /* tests: the output to produce */
        if (!json_is_string(ts))
            return http_set_err(e, 400, "invalid_type", "test_script", "'test_script' must be a string");
        lfm2c_error terr = {0};
        r->script =
            lfm2c_tokenize(api->model, json_string_value(ts), json_string_length(ts), false, true, &r->n_script, &terr);
        if (!r->script)
            return http_set_err(e, 400, "invalid_value", "test_script", "cannot tokenize 'test_script': %s", terr.msg);
    }
    return 0;
}

/* The rendered prompt ends inside an opened thinking block (the template opened it). */
static bool prompt_opens_block(const char *prompt) {
    size_t n = strlen(prompt), k = strlen(LFM2C_THINK_OPEN);
    while (n && strchr(" \t\r\n", prompt[n - 1])) n--;
    return n >= k && !memcmp(prompt + n - k, LFM2C_THINK_OPEN, k);
}

/* A JSON schema compiled while a watcher checks the client: one that leaves stops the compile
 * (its patterns may take seconds within their work budget). q NULL: compiled unwatched. */
static grammar *schema_grammar_watched(http_req *q, const char *schema, char *err, size_t cap) {
    volatile bool gone = false;
    http_watch *w = q ? http_watch_start(q, &gone) : NULL;
    grammar *g = grammar_from_schema_cancel(schema, &gone, err, cap);
    http_watch_stop(w);
    return g;
}

/* tool_choice: none, auto, required, or a named function (*named); -1 after http_set_err */
static int parse_tool_choice(json_t *body, const char **mode, const char **named, http_err *e) {
    json_t *choice = json_object_get(body, "tool_choice");
    *mode = "auto", *named = NULL;
    if (!choice || json_is_null(choice)) return 0;
    if (json_is_string(choice)) {
        *mode = json_string_value(choice);
        if (strcmp(*mode, "none") && strcmp(*mode, "auto") && strcmp(*mode, "required"))
            return http_set_err(e, 400, "invalid_value", "tool_choice",
                                "'tool_choice' must be none, auto, required or a function");
        return 0;
    }
    const char *name = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    if (!json_is_object(choice) || !name)
        return http_set_err(e, 400, "invalid_type", "tool_choice",
                            "'tool_choice' must be a string or {\"type\":\"function\",\"function\":{\"name\":...}}");
    *mode = "named", *named = name;
    return 0;
}

/* response_format: text, json_object or json_schema (compiled into j->g_json) */
static int chat_response_format(job *j, json_t *rf, http_err *e) {
    if (!rf || json_is_null(rf)) return 0;
    const char *type = json_string_value(json_object_get(rf, "type"));
    char gerr[300] = "";
    if (!json_is_object(rf) || !type)
        return http_set_err(e, 400, "invalid_type", "response_format",
                            "'response_format' must be an object with a 'type'");
    if (!strcmp(type, "json_object")) {
        j->g_json = grammar_any_object();
    } else if (!strcmp(type, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        json_t *schema = json_object_get(js, "schema");
        if (!json_is_object(js) || !schema)
            return http_set_err(e, 400, "invalid_value", "response_format",
                                "'response_format.json_schema.schema' is missing");
        char *st = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
        j->g_json = st ? schema_grammar_watched(j->q, st, gerr, sizeof gerr) : NULL;
        free(st);
        if (!j->g_json)
            return http_set_err(e, 400, "invalid_value", "response_format", "unsupported JSON schema: %s", gerr);
    } else if (strcmp(type, "text")) {
        return http_set_err(e, 400, "invalid_value", "response_format",
                            "'response_format.type' must be text, json_object or json_schema");
    }
    return 0;
}

/* The tool-call grammar for tools, as tool_choice allows (named: that function; required or
 * named: forced); with a response format too, the answer is a call or the JSON */
static int chat_tool_grammar(job *j, json_t *tools, const char *mode, const char *named, bool parallel, http_err *e) {
    sched_req *r = j->rs[0];
    char *tt = json_dumps(tools, JSON_COMPACT);
    char gerr[300] = "";
    const bool forced = !strcmp(mode, "required") || named;
    j->g_tool = tt ? grammar_tool_calls(tt, named, parallel && !named, gerr, sizeof gerr) : NULL;
    free(tt);
    if (!j->g_tool) /* in every mode alike: a call is never silently unconstrained */
        return http_set_err(e, 400, "invalid_value", "tools", "cannot constrain tool calls: %s", gerr);
    r->tool_grammar = j->g_tool;
    r->force_tool_call = forced;
    r->tools_auto = !forced;
    j->tools = true;
    return 0;
}

/* The prompt: msgs (and fns, where tools are in use) through the chat template with the
 * request's other template variables (thinking). Takes msgs and fns; NULL after http_set_err. */
static char *chat_render(serve_api *api, json_t *body, sched_req *r, json_t *msgs, json_t *fns, http_err *e) {
    json_t *doc = json_object(); /* the template's input: messages and its other variables */
    if (parse_thinking(api, body, r, doc, e)) {
        json_decref(doc);
        json_decref(msgs);
        json_decref(fns);
        return NULL;
    }
    /* request strings are text: their special-token texts stay plain (lfm2c_guard_text); the
     * messages were guarded as they were normalized (all but our own tool-call markers), the
     * template's other variables are guarded here */
    guard_json(api, doc);
    if (fns) guard_json(api, fns);
    json_object_set(doc, "messages", msgs);
    char *mt = json_dumps(doc, JSON_COMPACT), *ft = fns ? json_dumps(fns, JSON_COMPACT) : NULL;
    json_decref(doc);
    json_decref(msgs);
    json_decref(fns);
    lfm2c_error err = {0};
    char *prompt = mt ? lfm2c_chat_render(api->model, api->p.chat_template, mt, ft, true, &err) : NULL;
    free(mt);
    free(ft);
    if (!prompt) http_set_err(e, 400, "invalid_value", "messages", "cannot render the chat template: %s", err.msg);
    return prompt;
}

/* The rendered prompt into r's tokens (ollama's generate: after its context ids; with audio
 * clips, split at their markers); takes prompt */
static int chat_tokenize(serve_api *api, json_t *body, job *j, sched_req *r, char *prompt, job_audio *ja, http_err *e) {
    r->think_opened = prompt_opens_block(prompt);
    if (strlen(prompt) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)api->n_ctx) { /* cannot fit: no need to tokenize */
        free(prompt);
        return http_set_err(e, 400, "context_length_exceeded", "messages",
                            "the conversation is far longer than the context of %d tokens", api->n_ctx);
    }
    lfm2c_error terr = {0};
    int rc = 0;
    if (ja->n) rc = job_audio_tokenize(api, ja, r, prompt, e);
    else if (!(r->prompt = lfm2c_tokenize_prompt(api->model, prompt, strlen(prompt), false, &r->n_prompt, &terr)))
        rc = http_set_err(e, 400, "invalid_value", "messages", "cannot tokenize the prompt: %s", terr.msg);
    free(prompt);
    if (!rc && j->dl == &dialect_ollama_generate) rc = prepend_context(api, json_object_get(body, "context"), r, e);
    return rc;
}

int job_build_chat(serve_api *api, json_t *body, job *j, http_err *e) {
    sched_req *r = j->rs[0];
    if (req_common(api, body, r, &j->o, true, e)) return -1;
    json_t *given = json_object_get(body, "messages");
    if (json_is_array(given) && json_array_size(given) > (size_t)api->p.max_messages)
        return http_set_err(e, 400, "invalid_value", "messages", "at most %d messages per request (--max-messages)",
                            api->p.max_messages);
    job_images ji = {.q = j->q}; /* charged to the request while the job is built */
    job_audio own = {.q = j->q}, *ja = j->audio ? j->audio : &own;
    job_media md = {&ji, ja};
    json_t *msgs = normalize_messages(api, given, &md, e);
    if (!msgs) return job_images_free(&ji), job_audio_free(ja), -1;
    json_t *tools = json_object_get(body, "tools"), *fns = NULL;
    const char *mode, *named;
    bool parallel = true;
    if (req_bool(body, "parallel_tool_calls", &parallel, e) || parse_tool_choice(body, &mode, &named, e)) goto bad;
    if (tools && !json_is_null(tools)) {
        if (!(fns = tool_functions(tools, e))) goto bad;
        if (json_array_size(fns) == 0) {
            json_decref(fns);
            fns = NULL;
        }
    }
    if (!fns && (!strcmp(mode, "required") || named)) {
        http_set_err(e, 400, "invalid_value", "tool_choice", "'tool_choice' %s needs 'tools'", mode);
        goto bad;
    }
    const bool use_tools = fns && strcmp(mode, "none");
    if (chat_response_format(j, json_object_get(body, "response_format"), e) || req_structured(j, body, e) ||
        (use_tools && chat_tool_grammar(j, tools, mode, named, parallel, e)))
        goto bad;
    r->json_grammar = r->force_tool_call ? NULL : j->g_json; /* a forced call is the whole answer */
    if (!use_tools) json_decref(fns), fns = NULL;
    char *prompt = chat_render(api, body, r, msgs, fns, e);
    const int rc = !prompt || chat_tokenize(api, body, j, r, prompt, ja, e) || job_images_apply(api, &ji, r, e) ||
                   req_fit_context(api, r, &j->o, "messages", e);
    job_images_free(&ji);
    job_audio_free(ja);
    return rc ? -1 : job_expand(api, j, e);
bad:
    job_images_free(&ji);
    job_audio_free(ja);
    json_decref(msgs);
    json_decref(fns);
    return -1;
}

/* The text of token ids (echo of a prompt given as ids). */
