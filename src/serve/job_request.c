/* job_request.c — the shared request of every API (job.h): an OpenAI-shaped chat or completion
 * body (the other APIs' requests are translated into one, server_dialect.h) -> a job's scheduler
 * requests. Sampling, limits, stops, logit_bias, the model or LoRA adapter it names, messages
 * (every client string guarded against special-token text; past tool calls written back in LFM2's
 * syntax by chat/toolcall.c), tools and tool_choice, response_format (compiled grammars), the
 * thinking switches, completion prompts (strings or token ids, echo, fill-in-the-middle), n
 * choices; a bad field gets a 4xx (http_err) naming it. Nothing here runs or answers. */
#include "serve/job.h"
#include "chat/toolcall.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

void api_make_id(serve_api *api, const char *prefix, char *out, size_t cap) {
    dl_random_id(&api->mu, &api->id_counter, api->started, prefix, out, cap);
}

/* A model id names this server's model: its alias, or its file name with or without .gguf. */
bool api_model_matches(const serve_api *api, const char *id) {
    if (!strcmp(id, api->alias)) return true;
    size_t n = strlen(api->model_file), k = strlen(id);
    if (!n) return false;
    if (!strcmp(id, api->model_file)) return true;
    return n > 5 && !strcasecmp(api->model_file + n - 5, ".gguf") && k == n - 5 && !strncmp(id, api->model_file, k);
}

/* The LoRA adapter a model id names: NAME or ALIAS:NAME of a served adapter; -1: none. */
int api_lora_index(const serve_api *api, const char *id) {
    size_t na = strlen(api->alias);
    for (int i = 0; i < api->p.n_lora; i++) {
        const char *n = api->p.lora_names[i];
        if (!strcmp(id, n) || (!strncmp(id, api->alias, na) && id[na] == ':' && !strcmp(id + na + 1, n))) return i;
    }
    return -1;
}

/* A sampler seed for a request that gives none: 64 bits from the kernel's CSPRNG, so that
 * identical requests (retries, "regenerate", self-consistency loops) draw different answers;
 * where getrandom fails, a per-process counter mixed with the clock in nanoseconds. Never 0
 * (the sampler's "default seed"). */
static uint64_t fresh_seed(void) {
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        static _Atomic uint64_t counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + ++counter * 0x9E3779B97F4A7C15ull;
        x ^= x >> 30, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 27, x *= 0x94D049BB133111EBull, x ^= x >> 31;
    }
    return x ? x : 1;
}

/* ---- request fields ---------------------------------------------------------------------------- */

/* Optional number field in [lo, hi]; returns -1 with the error set on a wrong type/range. */
static int get_num(json_t *body, const char *key, double lo, double hi, double *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return http_set_err(e, 400, "invalid_type", key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return http_set_err(e, 400, "invalid_value", key, "'%s' must be between %g and %g", key, lo, hi);
    *out = x;
    return 0;
}

static int get_int(json_t *body, const char *key, long long lo, long long hi, long long *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return http_set_err(e, 400, "invalid_type", key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return http_set_err(e, 400, "invalid_value", key, "'%s' must be between %lld and %lld", key, lo, hi);
    *out = x;
    return 0;
}

int req_bool(json_t *body, const char *key, bool *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return http_set_err(e, 400, "invalid_type", key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

/* Sampling, limits and stop strings common to both completion endpoints. */
static int parse_common(serve_api *api, json_t *body, sched_req *r, gen_opts *o, bool chat, http_err *e) {
    lfm2c_sampler_params sp = lfm2c_sampler_params_for_model(api->model);
    double temp = sp.temperature, top_p = sp.top_p, min_p = sp.min_p, pres = 0, freq = 0, rep = sp.repeat_penalty;
    long long top_k = sp.top_k, seed = -1, n = 1, mt = -1, mct = -1, tl = -1;
    if (get_num(body, "temperature", 0, 2, &temp, e) || get_num(body, "top_p", 0, 1, &top_p, e) ||
        get_num(body, "min_p", 0, 1, &min_p, e) || get_num(body, "presence_penalty", -2, 2, &pres, e) ||
        get_num(body, "frequency_penalty", -2, 2, &freq, e) ||
        get_num(body, "repetition_penalty", 0.01, 10, &rep, e) ||
        get_num(body, "repeat_penalty", 0.01, 10, &rep, e) || get_int(body, "top_k", -1, 1 << 30, &top_k, e) ||
        get_int(body, "seed", -(1LL << 62), 1LL << 62, &seed, e) || get_int(body, "n", 1, SERVER_MAX_N, &n, e) ||
        get_int(body, "max_tokens", chat ? 1 : 0, 1 << 30, &mt, e) ||
        get_int(body, "max_completion_tokens", 1, 1 << 30, &mct, e) || req_bool(body, "stream", &o->stream, e))
        return -1;
    if (sp.temperature != temp) sp.temperature = (float)temp;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.top_k = (int)top_k;
    sp.presence_penalty = (float)pres;
    sp.frequency_penalty = (float)freq;
    sp.repeat_penalty = (float)rep;
    if (seed >= 0) sp.seed = (uint64_t)seed;
    else sp.seed = fresh_seed();
    r->sampling = sp;
    o->max_tokens = mct > 0 ? mct : mt;
    o->n = (int)n;

    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return http_set_err(e, 400, "invalid_type", "stream_options", "'stream_options' must be an object");
        if (req_bool(so, "include_usage", &o->include_usage, e)) return -1;
    }

    json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) {
            if (json_string_length(stop) > (size_t)api->p.max_stop_bytes)
                return http_set_err(e, 400, "invalid_value", "stop", "a stop string may have at most %d bytes", api->p.max_stop_bytes);
            r->stop = calloc(1, sizeof *r->stop);
            if (!r->stop || !(r->stop[0] = strdup(json_string_value(stop)))) return http_set_err(e, 500, NULL, NULL, "out of memory");
            r->n_stop = 1;
        } else if (json_is_array(stop) && json_array_size(stop) <= 4) {
            r->stop = calloc(json_array_size(stop) + 1, sizeof *r->stop);
            if (!r->stop) return http_set_err(e, 500, NULL, NULL, "out of memory");
            size_t i;
            json_t *s;
            json_array_foreach(stop, i, s) {
                if (!json_is_string(s)) return http_set_err(e, 400, "invalid_type", "stop", "'stop' must hold strings");
                if (json_string_length(s) > (size_t)api->p.max_stop_bytes)
                    return http_set_err(e, 400, "invalid_value", "stop", "a stop string may have at most %d bytes", api->p.max_stop_bytes);
                if (!(r->stop[r->n_stop] = strdup(json_string_value(s)))) return http_set_err(e, 500, NULL, NULL, "out of memory");
                r->n_stop++;
            }
        } else {
            return http_set_err(e, 400, "invalid_type", "stop", "'stop' must be a string or an array of up to 4 strings");
        }
    }

    json_t *lb = json_object_get(body, "logit_bias");
    if (lb && !json_is_null(lb)) {
        if (!json_is_object(lb)) return http_set_err(e, 400, "invalid_type", "logit_bias", "'logit_bias' must be an object");
        if (json_object_size(lb)) {
            if (!(r->logit_bias = calloc((size_t)api->n_vocab, sizeof(float)))) return http_set_err(e, 500, NULL, NULL, "out of memory");
            const char *k;
            json_t *v;
            json_object_foreach(lb, k, v) {
                char *end;
                long id = strtol(k, &end, 10);
                if (!*k || *end || id < 0 || id >= api->n_vocab)
                    return http_set_err(e, 400, "invalid_value", "logit_bias", "logit_bias key '%s' is not a token id", k);
                if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100)
                    return http_set_err(e, 400, "invalid_value", "logit_bias", "logit_bias values must be numbers in [-100, 100]");
                double b = json_number_value(v);
                r->logit_bias[id] = b <= -100 ? -INFINITY : (float)b;
            }
        }
    }

    if (chat) {
        if (req_bool(body, "logprobs", &o->logprobs, e) || get_int(body, "top_logprobs", 0, 20, &tl, e)) return -1;
        if (tl >= 0 && !o->logprobs)
            return http_set_err(e, 400, "invalid_value", "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else {
        long long lp = -1;
        if (get_int(body, "logprobs", 0, 20, &lp, e)) return -1;
        if (lp >= 0) { o->logprobs = true; tl = lp; }
    }
    o->top_logprobs = tl < 0 ? 0 : (int)tl;
    r->n_logprobs = o->logprobs ? o->top_logprobs : -1;
    /* llama-server's per-request speculative settings (the server's when absent; n_max is
     * capped by the server's --draft-max) */
    long long sn_max = -1, sn_min = -1;
    double sp_min = -1;
    if (get_int(body, "speculative.n_max", 0, 256, &sn_max, e) || get_int(body, "speculative.n_min", 0, 256, &sn_min, e) ||
        get_num(body, "speculative.p_min", 0, 1, &sp_min, e))
        return -1;
    r->spec_n_max = (int)sn_max;
    r->spec_n_min = (int)sn_min;
    r->spec_p_min = (float)sp_min;
    return 0;
}

/* Limits the generation to the context, refuses prompts that do not fit. */
static int fit_context(serve_api *api, sched_req *r, gen_opts *o, const char *param, http_err *e) {
    if (r->n_prompt <= 0) return http_set_err(e, 400, "invalid_value", param, "the prompt is empty");
    if (r->n_prompt >= api->n_ctx)
        return http_set_err(e, 400, "context_length_exceeded", param,
                            "this model's context is %d tokens; the prompt has %d tokens", api->n_ctx, r->n_prompt);
    long long room = api->n_ctx - r->n_prompt;
    r->max_tokens = o->max_tokens == 0 ? 0 : (int)(o->max_tokens > 0 && o->max_tokens < room ? o->max_tokens : room);
    r->ctx_bound = o->max_tokens != 0 && !(o->max_tokens > 0 && o->max_tokens < room);
    int need = o->max_tokens == 0 ? -1 : sched_min_answer_tokens(api->sched, r, (int)room);
    if (need > room) /* a forced answer that cannot fit: refused now, not cut by the context later */
        return http_set_err(e, 400, "context_length_exceeded", param,
                            "the prompt has %d tokens and the %s needs at least %d more: together they exceed this model's context of %d tokens",
                            r->n_prompt, r->force_tool_call ? "forced tool call" : "structured output", need, api->n_ctx);
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
    if (!json_is_array(c)) return http_set_err(e, 400, "invalid_type", "messages", "message 'content' must be a string or an array");
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(t))
            return http_set_err(e, 400, "invalid_value", "messages", "only text content parts are supported");
        buf_add(buf, len, cap, json_string_value(t), json_string_length(t));
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
    if (g) buf_add(buf, len, cap, g, gn);
    else { free(*buf); *buf = NULL; }
    free(g);
}

/* The request's messages as {role, content} for the template. Every string the client sent is
 * guarded here (its special-token texts stay plain); past tool calls are written back the way
 * LFM2 emits them, between the real call markers, which stay special tokens. */
static json_t *normalize_messages(serve_api *api, json_t *msgs, http_err *e) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        http_set_err(e, 400, json_is_array(msgs) ? "invalid_value" : "invalid_type", "messages",
                     "'messages' must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            http_set_err(e, 400, "invalid_type", "messages", "messages[%zu] must be an object with a string 'role'", i);
            goto bad;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool") &&
            strcmp(role, "developer")) {
            http_set_err(e, 400, "invalid_value", "messages", "messages[%zu].role '%s' is not one of system, user, assistant, tool", i, role);
            goto bad;
        }
        size_t cap = 256, len = 0;
        char *text = malloc(cap);
        if (text) text[0] = 0;
        json_t *calls = json_object_get(m, "tool_calls");
        if (calls && !json_is_null(calls)) { /* written back the way LFM2 emits them (toolcall.c) */
            if (!json_is_array(calls)) { free(text); http_set_err(e, 400, "invalid_type", "messages", "'tool_calls' must be an array"); goto bad; }
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
                    http_set_err(e, 400, "invalid_value", "messages", "messages[%zu].tool_calls[%zu] needs a function name and JSON object arguments", i, k);
                    goto bad;
                }
                json_t *call = json_pack("{s:s,s:o}", "name", name, "arguments", a);
                guard_json(api, call); /* the name and the arguments are the client's text */
                json_array_append_new(plain, call);
            }
            size_t n_calls = 0;
            char *ct = toolcall_format(plain, &n_calls);
            json_decref(plain);
            if (!ct) { free(text); http_set_err(e, 400, "invalid_value", "messages", "messages[%zu].tool_calls cannot be written", i); goto bad; }
            buf_add(&text, &len, &cap, ct, n_calls);
            free(ct);
        }
        size_t from = len;
        if (content_text(json_object_get(m, "content"), &text, &len, &cap, e)) { free(text); goto bad; }
        if (text && len > from) { /* the content is the client's text: guarded (the markers before it are ours) */
            char *mine = malloc(len - from);
            if (mine) memcpy(mine, text + from, len - from);
            size_t n_mine = len - from;
            len = from;
            if (mine) buf_add_guarded(api, &text, &len, &cap, mine, n_mine);
            else { free(text); text = NULL; }
            free(mine);
        }
        if (!text) { http_set_err(e, 500, NULL, NULL, "out of memory"); goto bad; }
        json_t *nm = json_pack("{s:s,s:s%}", "role", strcmp(role, "developer") ? role : "system", "content", text, len);
        free(text);
        /* an assistant turn's thinking (reasoning_content, as answered; 'thinking' as Ollama
         * names it): the template decides whether it is rendered (LFM2.5 keeps it only for the
         * turns after the last user message) */
        json_t *th = json_object_get(m, "reasoning_content");
        if (!json_is_string(th)) th = json_object_get(m, "thinking");
        if (!strcmp(role, "assistant") && json_is_string(th) && json_string_length(th)) {
            json_t *g = json_copy(th);
            guard_json(api, g); /* the client's text, like the content */
            json_object_set_new(nm, "thinking", g);
        }
        json_array_append_new(out, nm);
    }
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* The function objects of an OpenAI tools array (what the LFM2 template lists). */
static json_t *tool_functions(json_t *tools, http_err *e) {
    if (!json_is_array(tools)) { http_set_err(e, 400, "invalid_type", "tools", "'tools' must be an array"); return NULL; }
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!json_is_object(t) || (type && strcmp(type, "function")) || !json_is_object(fn) ||
            !json_is_string(json_object_get(fn, "name"))) {
            json_decref(out);
            http_set_err(e, 400, "invalid_value", "tools", "tools[%zu] must be {\"type\":\"function\",\"function\":{\"name\":...}}", i);
            return NULL;
        }
        json_array_append(out, fn);
    }
    return out;
}


/* A request with b's settings and its own copy of `prompt` (not submitted yet). */
static sched_req *req_clone(serve_api *api, const sched_req *b, const int32_t *prompt, int n_prompt) {
    sched_req *r = sched_req_new();
    if (!r) return NULL;
    r->sampling = b->sampling;
    r->max_tokens = b->max_tokens;
    r->n_logprobs = b->n_logprobs;
    r->json_grammar = b->json_grammar;
    r->tool_grammar = b->tool_grammar;
    r->force_tool_call = b->force_tool_call;
    r->tools_auto = b->tools_auto;
    r->lora = b->lora;
    r->lora_scale = b->lora_scale;
    r->spec_n_max = b->spec_n_max;
    r->spec_n_min = b->spec_n_min;
    r->spec_p_min = b->spec_p_min;
    r->think_split = b->think_split;
    r->think_opened = b->think_opened;
    r->think_allowed = b->think_allowed;
    r->think_budget = b->think_budget;
    bool ok = (r->prompt = malloc(sizeof *r->prompt * (size_t)(n_prompt + 1))) != NULL;
    if (ok) { memcpy(r->prompt, prompt, sizeof *r->prompt * (size_t)n_prompt); r->n_prompt = n_prompt; }
    if (ok && b->logit_bias && (ok = (r->logit_bias = malloc(sizeof(float) * (size_t)api->n_vocab)) != NULL))
        memcpy(r->logit_bias, b->logit_bias, sizeof(float) * (size_t)api->n_vocab);
    if (ok && b->script && (ok = (r->script = malloc(sizeof *r->script * (size_t)b->n_script + 1)) != NULL)) {
        memcpy(r->script, b->script, sizeof *r->script * (size_t)b->n_script);
        r->n_script = b->n_script;
    }
    if (ok && b->n_stop && (ok = (r->stop = calloc((size_t)b->n_stop + 1, sizeof *r->stop)) != NULL))
        for (int i = 0; ok && i < b->n_stop; i++) ok = (r->stop[r->n_stop++] = strdup(b->stop[i])) != NULL;
    if (!ok) { sched_release(api->sched, r); return NULL; }
    return r;
}

/* The job holds one request per prompt: makes o.n choices of each, choice k of a prompt with
 * seed + k, waiting for the prompt's first choice and starting from a copy of its state. */
static int job_expand(serve_api *api, job *j, http_err *e) {
    int n = j->o.n < 1 ? 1 : j->o.n, np = j->n_rs;
    if (np * n > SERVER_MAX_CHOICES)
        return http_set_err(e, 400, "invalid_value", "n", "at most %d choices per request (prompts x n)", SERVER_MAX_CHOICES);
    for (int i = 0; i < np; i++) j->rs[i]->notify = &j->cond;
    if (n == 1) return 0;
    sched_req **rs = calloc((size_t)(np * n), sizeof *rs);
    char **echo = j->echo ? calloc((size_t)(np * n), sizeof *echo) : NULL;
    size_t *n_echo = j->echo ? calloc((size_t)(np * n), sizeof *n_echo) : NULL;
    bool *echo_bos = j->echo ? calloc((size_t)(np * n), sizeof *echo_bos) : NULL;
    if (!rs || (j->echo && (!echo || !n_echo || !echo_bos))) {
        free(rs); free(echo); free(n_echo); free(echo_bos);
        return http_set_err(e, 500, NULL, NULL, "out of memory");
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
            sched_req *r = req_clone(api, b, b->prompt, b->n_prompt);
            if (!r || (echo && !(echo[p * n + k] = strndup(echo[p * n], n_echo[p * n])))) {
                if (r) sched_release(api->sched, r);
                return http_set_err(e, 500, NULL, NULL, "out of memory");
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
    if (!json_is_array(ctx)) return http_set_err(e, 400, "invalid_type", "context", "'context' must be an array of token ids");
    if (n >= (size_t)api->n_ctx)
        return http_set_err(e, 400, "context_length_exceeded", "context", "'context' has %zu tokens; the context holds %d", n, api->n_ctx);
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
        if (!v || (strcmp(v, "none") && strcmp(v, "minimal") && strcmp(v, "low") && strcmp(v, "medium") && strcmp(v, "high")))
            return http_set_err(e, 400, "invalid_value", "reasoning_effort", "'reasoning_effort' must be none, minimal, low, medium or high");
        off = !strcmp(v, "none") || !strcmp(v, "minimal");
    }
    json_t *kw = json_object_get(body, "chat_template_kwargs");
    if (kw && !json_is_null(kw)) {
        if (!json_is_object(kw)) return http_set_err(e, 400, "invalid_type", "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        json_t *et = json_object_get(kw, "enable_thinking");
        if (et && !json_is_boolean(et))
            return http_set_err(e, 400, "invalid_type", "chat_template_kwargs", "'chat_template_kwargs.enable_thinking' must be a boolean");
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
    if (get_int(body, "thinking_token_budget", 0, 1 << 30, &budget, e)) return -1;
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
        if (!json_is_string(ts)) return http_set_err(e, 400, "invalid_type", "test_script", "'test_script' must be a string");
        lfm2c_error terr = {0};
        r->script = lfm2c_tokenize(api->model, json_string_value(ts), json_string_length(ts), false, true, &r->n_script, &terr);
        if (!r->script) return http_set_err(e, 400, "invalid_value", "test_script", "cannot tokenize 'test_script': %s", terr.msg);
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

int job_build_chat(serve_api *api, json_t *body, job *j, http_err *e) {
    sched_req *r = j->rs[0];
    if (parse_common(api, body, r, &j->o, true, e)) return -1;
    json_t *given = json_object_get(body, "messages");
    if (json_is_array(given) && json_array_size(given) > (size_t)api->p.max_messages)
        return http_set_err(e, 400, "invalid_value", "messages", "at most %d messages per request (--max-messages)", api->p.max_messages);
    json_t *msgs = normalize_messages(api, given, e);
    if (!msgs) return -1;
    json_t *tools = json_object_get(body, "tools"), *fns = NULL;
    json_t *choice = json_object_get(body, "tool_choice");
    const char *mode = "auto", *named = NULL;
    bool parallel = true;
    if (req_bool(body, "parallel_tool_calls", &parallel, e)) goto bad;
    if (choice && !json_is_null(choice)) {
        if (json_is_string(choice)) {
            mode = json_string_value(choice);
            if (strcmp(mode, "none") && strcmp(mode, "auto") && strcmp(mode, "required")) {
                http_set_err(e, 400, "invalid_value", "tool_choice", "'tool_choice' must be none, auto, required or a function");
                goto bad;
            }
        } else if (json_is_object(choice) && json_is_string(json_object_get(json_object_get(choice, "function"), "name"))) {
            mode = "named";
            named = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
        } else {
            http_set_err(e, 400, "invalid_type", "tool_choice", "'tool_choice' must be a string or {\"type\":\"function\",\"function\":{\"name\":...}}");
            goto bad;
        }
    }
    if (tools && !json_is_null(tools)) {
        if (!(fns = tool_functions(tools, e))) goto bad;
        if (json_array_size(fns) == 0) { json_decref(fns); fns = NULL; }
    }
    if (!fns && (!strcmp(mode, "required") || named)) {
        http_set_err(e, 400, "invalid_value", "tool_choice", "'tool_choice' %s needs 'tools'", mode);
        goto bad;
    }
    bool use_tools = fns && strcmp(mode, "none");
    json_t *rf = json_object_get(body, "response_format");
    if (rf && !json_is_null(rf)) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        char gerr[300] = "";
        if (!json_is_object(rf) || !type) {
            http_set_err(e, 400, "invalid_type", "response_format", "'response_format' must be an object with a 'type'");
            goto bad;
        }
        if (!strcmp(type, "json_object")) {
            j->g_json = grammar_any_object();
        } else if (!strcmp(type, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema");
            json_t *schema = json_object_get(js, "schema");
            if (!json_is_object(js) || !schema) {
                http_set_err(e, 400, "invalid_value", "response_format", "'response_format.json_schema.schema' is missing");
                goto bad;
            }
            char *st = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
            j->g_json = st ? schema_grammar_watched(j->q, st, gerr, sizeof gerr) : NULL;
            free(st);
            if (!j->g_json) { http_set_err(e, 400, "invalid_value", "response_format", "unsupported JSON schema: %s", gerr); goto bad; }
        } else if (strcmp(type, "text")) {
            http_set_err(e, 400, "invalid_value", "response_format", "'response_format.type' must be text, json_object or json_schema");
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
            http_set_err(e, 400, "invalid_value", "tools", "cannot constrain tool calls: %s", gerr);
            goto bad;
        }
        r->tool_grammar = j->g_tool;
        r->force_tool_call = forced;
        r->tools_auto = !forced;
        j->tools = true;
    }
    r->json_grammar = r->force_tool_call ? NULL : j->g_json; /* a forced call is the whole answer */
    json_t *doc = json_object(); /* the template's input: messages and its other variables */
    if (parse_thinking(api, body, r, doc, e)) { json_decref(doc); goto bad; }

    /* request strings are text: their special-token texts stay plain (lfm2c_guard_text); the
     * messages were guarded as they were normalized (all but our own tool-call markers), the
     * template's other variables are guarded here */
    guard_json(api, doc);
    if (use_tools) guard_json(api, fns);
    json_object_set(doc, "messages", msgs);
    char *mt = json_dumps(doc, JSON_COMPACT), *ft = use_tools ? json_dumps(fns, JSON_COMPACT) : NULL;
    json_decref(doc);
    lfm2c_error err = {0};
    char *prompt = mt ? lfm2c_chat_render(api->model, api->p.chat_template, mt, ft, true, &err) : NULL;
    free(mt);
    free(ft);
    json_decref(msgs);
    json_decref(fns);
    if (!prompt) return http_set_err(e, 400, "invalid_value", "messages", "cannot render the chat template: %s", err.msg);
    r->think_opened = prompt_opens_block(prompt);
    lfm2c_error terr = {0};
    if (strlen(prompt) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)api->n_ctx) { /* cannot fit: no need to tokenize */
        free(prompt);
        return http_set_err(e, 400, "context_length_exceeded", "messages",
                            "the conversation is far longer than the context of %d tokens", api->n_ctx);
    }
    r->prompt = lfm2c_tokenize_prompt(api->model, prompt, strlen(prompt), false, &r->n_prompt, &terr);
    int rc = r->prompt ? 0 : http_set_err(e, 400, "invalid_value", "messages", "cannot tokenize the prompt: %s", terr.msg);
    free(prompt);
    if (!rc && j->dl == &dialect_ollama_generate) rc = prepend_context(api, json_object_get(body, "context"), r, e);
    if (rc || fit_context(api, r, &j->o, "messages", e)) return -1;
    return job_expand(api, j, e);
bad:
    json_decref(msgs);
    json_decref(fns);
    return -1;
}

/* The text of token ids (echo of a prompt given as ids). */
static char *prompt_text(serve_api *api, const int32_t *t, int n, size_t *len) {
    size_t cap = 256;
    char *text = malloc(cap);
    if (text) text[0] = 0;
    *len = 0;
    lfm2c_detok d;
    lfm2c_detok_init(&d, true);
    for (int i = 0; text && i < n; i++) {
        char piece[600];
        int k = lfm2c_detok_push(&d, api->model, t[i], piece, sizeof piece);
        if (k > 0) buf_add(&text, len, &cap, piece, (size_t)(k < (int)sizeof piece ? k : (int)sizeof piece));
    }
    char tail[64];
    int k = text ? lfm2c_detok_flush(&d, tail, sizeof tail) : 0;
    if (k > 0) buf_add(&text, len, &cap, tail, (size_t)k);
    return text;
}

/* One prompt of /v1/completions (a string or an array of token ids) as token ids. */
static int completion_prompt(serve_api *api, json_t *p, size_t which, int32_t **out, int *n_out, http_err *e) {
    lfm2c_error err = {0};
    if (json_is_string(p)) {
        const lfm2c_model_info *mi = lfm2c_model_get_info(api->model);
        if (json_string_length(p) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)api->n_ctx)
            return http_set_err(e, 400, "context_length_exceeded", "prompt", "the prompt is far longer than the context of %d tokens", api->n_ctx);
        *out = lfm2c_tokenize(api->model, json_string_value(p), json_string_length(p), mi->add_bos, true, n_out, &err);
        if (!*out) return http_set_err(e, 400, "invalid_value", "prompt", "cannot tokenize prompt %zu: %s", which, err.msg);
        return 0;
    }
    size_t n = json_array_size(p), i;
    json_t *t;
    if (!json_is_array(p) || n == 0)
        return http_set_err(e, 400, "invalid_type", "prompt", "'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays");
    if (n > (size_t)api->n_ctx)
        return http_set_err(e, 400, "context_length_exceeded", "prompt", "this model's context is %d tokens; prompt %zu has %zu tokens", api->n_ctx, which, n);
    if (!(*out = malloc(n * sizeof **out))) return http_set_err(e, 500, NULL, NULL, "out of memory");
    json_array_foreach(p, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= api->n_vocab) {
            free(*out);
            *out = NULL;
            return http_set_err(e, 400, "invalid_value", "prompt", "prompt[%zu] is not a token id of this model", i);
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
        http_set_err(e, 400, p ? "invalid_type" : "missing_required_parameter", "prompt",
                     "'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays");
        return NULL;
    }
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) return json_pack("[O]", p); /* one prompt of token ids */
    size_t i;
    json_t *x;
    json_array_foreach(p, i, x) {
        if (!json_is_string(x) && !json_is_array(x)) {
            http_set_err(e, 400, "invalid_type", "prompt", "prompt[%zu] must be a string or an array of token ids", i);
            return NULL;
        }
    }
    return json_incref(p);
}

/* The id of a special token written as text, -1 when the model has no such token. */
static int32_t special_id(serve_api *api, const char *text) {
    int n = 0;
    int32_t *t = lfm2c_tokenize(api->model, text, strlen(text), false, true, &n, NULL);
    int32_t id = t && n == 1 ? t[0] : -1;
    free(t);
    return id;
}

/* Fill-in-the-middle ('suffix'): the prompt becomes [BOS] <|fim_pre|> prompt <|fim_suf|> suffix
 * <|fim_mid|> and the answer is the middle; a model without these tokens gets a 400 naming
 * 'suffix' (never a plain completion that ignores it). */
static int apply_suffix(serve_api *api, json_t *suffix, sched_req *r, http_err *e) {
    int32_t pre = special_id(api, "<|fim_pre|>"), suf = special_id(api, "<|fim_suf|>"), mid = special_id(api, "<|fim_mid|>");
    if (pre < 0 || suf < 0 || mid < 0)
        return http_set_err(e, 400, "invalid_value", "suffix", "this model has no fill-in-the-middle tokens: 'suffix' is not supported");
    const lfm2c_model_info *mi = lfm2c_model_get_info(api->model);
    int ns = 0;
    lfm2c_error err = {0};
    int32_t *st = lfm2c_tokenize(api->model, json_string_value(suffix), json_string_length(suffix), false, true, &ns, &err);
    if (!st) return http_set_err(e, 400, "invalid_value", "suffix", "cannot tokenize 'suffix': %s", err.msg);
    int skip = r->n_prompt > 0 && r->prompt[0] == mi->bos_id, bos = mi->add_bos && mi->bos_id >= 0;
    int32_t *t = malloc(((size_t)r->n_prompt + (size_t)ns + 4) * sizeof *t);
    if (!t) { free(st); return http_set_err(e, 500, NULL, NULL, "out of memory"); }
    int k = 0;
    if (bos) t[k++] = mi->bos_id;
    t[k++] = pre;
    for (int i = skip; i < r->n_prompt; i++) t[k++] = r->prompt[i];
    t[k++] = suf;
    for (int i = 0; i < ns; i++) t[k++] = st[i];
    t[k++] = mid;
    free(st);
    free(r->prompt);
    r->prompt = t;
    r->n_prompt = k;
    return 0;
}

static int build_completion(serve_api *api, json_t *body, job *j, http_err *e) {
    sched_req *b = j->rs[0];
    if (parse_common(api, body, b, &j->o, false, e) || req_bool(body, "echo", &j->o.echo, e)) return -1;
    if (!json_object_get(body, "max_tokens") && j->o.max_tokens < 0) j->o.max_tokens = 16; /* OpenAI's default */
    if (j->o.max_tokens == 0 && !j->o.echo)
        return http_set_err(e, 400, "invalid_value", "max_tokens", "'max_tokens' must be at least 1 (0 only with 'echo': the prompt's logprobs)");
    b->prompt_logprobs = j->o.echo && j->o.logprobs; /* echo + logprobs: the prompt's too */
    json_t *suffix = json_object_get(body, "suffix");
    if (suffix && !json_is_null(suffix) && !json_is_string(suffix))
        return http_set_err(e, 400, "invalid_type", "suffix", "'suffix' must be a string");
    if (!json_string_length(suffix)) suffix = NULL;
    if (suffix && j->o.echo) return http_set_err(e, 400, "invalid_value", "suffix", "'suffix' cannot be used with 'echo'");
    if (suffix && json_string_length(suffix) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)api->n_ctx) /* before tokenizing */
        return http_set_err(e, 400, "context_length_exceeded", "suffix", "'suffix' is far longer than the context of %d tokens", api->n_ctx);
    json_t *prompts = completion_prompts(json_object_get(body, "prompt"), e);
    if (!prompts) return -1;
    size_t np = json_array_size(prompts);
    int rc = 0;
    if (np * (size_t)(j->o.n < 1 ? 1 : j->o.n) > SERVER_MAX_CHOICES) {
        rc = http_set_err(e, 400, "invalid_value", "prompt", "at most %d choices per request (prompts x n)", SERVER_MAX_CHOICES);
        goto out;
    }
    sched_req **rs = realloc(j->rs, np * sizeof *rs);
    if (rs) j->rs = rs;
    if (j->o.echo) {
        j->echo = calloc(np, sizeof *j->echo);
        j->n_echo = calloc(np, sizeof *j->n_echo);
        j->echo_bos = calloc(np, sizeof *j->echo_bos);
    }
    if (!rs || (j->o.echo && (!j->echo || !j->n_echo || !j->echo_bos))) { rc = http_set_err(e, 500, NULL, NULL, "out of memory"); goto out; }
    for (size_t i = 0; i < np && !rc; i++) {
        json_t *p = json_array_get(prompts, i);
        int32_t *toks = NULL;
        int nt = 0;
        if ((rc = completion_prompt(api, p, i, &toks, &nt, e))) break;
        sched_req *r = i == 0 ? b : req_clone(api, b, toks, nt);
        if (!r) { free(toks); rc = http_set_err(e, 500, NULL, NULL, "out of memory"); break; }
        if (i == 0) { free(b->prompt); b->prompt = toks; b->n_prompt = nt; } else { free(toks); j->rs[j->n_rs++] = r; }
        if (suffix && (rc = apply_suffix(api, suffix, r, e))) break;
        if ((rc = fit_context(api, r, &j->o, "prompt", e))) break;
        if (j->o.echo) {
            if (json_is_string(p)) {
                j->echo[i] = strndup(json_string_value(p), json_string_length(p));
                j->n_echo[i] = json_string_length(p);
                j->echo_bos[i] = lfm2c_model_get_info(api->model)->add_bos;
            } else {
                j->echo[i] = prompt_text(api, r->prompt, r->n_prompt, &j->n_echo[i]);
            }
            if (!j->echo[i]) rc = http_set_err(e, 500, NULL, NULL, "out of memory");
        }
    }
    if (!rc) rc = job_expand(api, j, e);
out:
    json_decref(prompts);
    return rc;
}

/* The request's "model" must name the served model (its alias or file name, with or without
 * .gguf) or one of its LoRA adapters (NAME or ALIAS:NAME: the request runs with it), unless the
 * server accepts any name (--any-model). An absent model is accepted. */
static int check_model(serve_api *api, json_t *body, job *j, http_err *e) {
    sched_req *r = j->rs[0];
    json_t *m = json_object_get(body, "model");
    j->model_id = api->alias;
    if (!m || json_is_null(m)) return 0;
    if (!json_is_string(m)) return api->p.any_model ? 0 : http_set_err(e, 400, "invalid_type", "model", "'model' must be a string");
    const char *id = json_string_value(m);
    int li = api_lora_index(api, id);
    if (li >= 0) {
        r->lora = api->p.loras[li];
        r->lora_scale = api->p.lora_scales ? api->p.lora_scales[li] : 1.0f;
        j->model_id = api->p.lora_names[li];
        return 0;
    }
    if (api->p.any_model || api_model_matches(api, id)) return 0;
    return http_set_err(e, 404, "model_not_found", "model",
                        "The model '%.200s' does not exist or you do not have access to it (this server has '%.200s')", id, api->alias);
}

int job_build(serve_api *api, json_t *body, job *j, bool chat, http_err *e) {
    if (check_model(api, body, j, e)) return -1;
    return chat ? job_build_chat(api, body, j, e) : build_completion(api, body, j, e);
}
