/* openai.c — the OpenAI API over the scheduler (openai.h): request parsing (sampling, limits,
 * stops, logit_bias, messages, tools and tool_choice, response_format), jobs of one or more
 * scheduler requests (n choices, several prompts), the final answers and the SSE stream events,
 * /v1/models, /tokenize and /detokenize; and the handlers of the other APIs' routes, whose
 * requests are translated into chat bodies run here (server_dialect.h). The transport is
 * http.c: handlers get the parsed JSON body and answer with http_send_*. JSON in and out goes
 * through jansson; every field is type-checked and a bad request gets a 4xx in OpenAI's error
 * shape (or the dialect's). Assistant tool calls in a request are written back in LFM2's syntax
 * by chat/toolcall.c (toolcall_format), beside its parser. */
#include "serve/openai.h"
#include "serve/server_dialect.h"
#include "chat/toolcall.h"
#include "text/unicode.h"
#include "base/clock.h"
#include "base/buf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

/* The error body in the shape of the request's API dialect (OpenAI's by default). */
static json_t *dl_err_json(const dialect *dl, const http_err *e) {
    return dl && dl->error ? dl->error(e->status, e->code, e->param, e->msg) : http_err_json(e);
}

static void make_id(openai *api, const char *prefix, char *out, size_t cap) {
    dl_random_id(&api->mu, &api->id_counter, api->started, prefix, out, cap);
}

/* A model id names this server's model: its alias, or its file name with or without .gguf. */
static bool server_model_matches(const openai *api, const char *id) {
    if (!strcmp(id, api->alias)) return true;
    size_t n = strlen(api->model_file), k = strlen(id);
    if (!n) return false;
    if (!strcmp(id, api->model_file)) return true;
    return n > 5 && !strcasecmp(api->model_file + n - 5, ".gguf") && k == n - 5 && !strncmp(id, api->model_file, k);
}

/* The LoRA adapter a model id names: NAME or ALIAS:NAME of a served adapter; -1: none. */
static int lora_index(const openai *api, const char *id) {
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

static int get_bool(json_t *body, const char *key, bool *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return http_set_err(e, 400, "invalid_type", key, "'%s' must be a boolean", key);
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
static int parse_common(openai *api, json_t *body, sched_req *r, gen_opts *o, bool chat, http_err *e) {
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
    else sp.seed = fresh_seed();
    r->sampling = sp;
    o->max_tokens = mct > 0 ? mct : mt;
    o->n = (int)n;

    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return http_set_err(e, 400, "invalid_type", "stream_options", "'stream_options' must be an object");
        if (get_bool(so, "include_usage", &o->include_usage, e)) return -1;
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
        if (get_bool(body, "logprobs", &o->logprobs, e) || get_int(body, "top_logprobs", 0, 20, &tl, e)) return -1;
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
static int fit_context(openai *api, sched_req *r, gen_opts *o, const char *param, http_err *e) {
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
static void guard_json(openai *api, json_t *v);

/* Appends s[0..n) guarded (lfm2c_guard_text: its special-token texts stay plain) to the buffer. */
static void buf_add_guarded(openai *api, char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    size_t gn = 0;
    char *g = lfm2c_guard_text(api->model, s, n, &gn);
    if (g) buf_add(buf, len, cap, g, gn);
    else { free(*buf); *buf = NULL; }
    free(g);
}

/* The request's messages as {role, content} for the template. Every string the client sent is
 * guarded here (its special-token texts stay plain); past tool calls are written back the way
 * LFM2 emits them, between the real call markers, which stay special tokens. */
static json_t *normalize_messages(openai *api, json_t *msgs, http_err *e) {
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

/* ---- building requests --------------------------------------------------------------------------- */

typedef struct job {
    openai *api;
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
    char owner[DL_OWNER_LEN];  /* digest of the request's API key (the Responses store's owner) */
    time_t created;
    const dialect *dl;         /* the API the answer is translated to (NULL: OpenAI) */
    void *dls;                 /* its state (owned) */
    const char *model_id;      /* the answers' "model": the alias, or the LoRA adapter's name */
    http_req *q;               /* while the job is built (NULL after): a costly compile stops once its client is gone */
} job;

static job *job_new(openai *api) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->rs = calloc(1, sizeof *j->rs);
    if (!j->rs || !(j->rs[0] = sched_req_new())) { free(j->rs); free(j); return NULL; }
    j->n_rs = 1;
    j->api = api;
    j->model_id = api->alias;
    pthread_cond_init(&j->cond, NULL);
    pthread_mutex_lock(&api->mu);
    api->jobs++;
    pthread_mutex_unlock(&api->mu);
    return j;
}

static void job_free(job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->api->mu);
    j->api->jobs--;
    pthread_mutex_unlock(&j->api->mu);
    for (int i = 0; i < j->n_rs; i++) if (j->rs[i]) sched_release(j->api->sched, j->rs[i]);
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
static sched_req *req_clone(openai *api, const sched_req *b, const int32_t *prompt, int n_prompt) {
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
static int job_expand(openai *api, job *j, http_err *e) {
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
static void guard_json(openai *api, json_t *v) {
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
static int prepend_context(openai *api, json_t *ctx, sched_req *r, http_err *e) {
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
static const char *chat_template_src(openai *api) {
    return api->p.chat_template ? api->p.chat_template : lfm2c_model_meta_str(api->model, "tokenizer.chat_template");
}

/* A thinking model: its template writes <think> blocks, or its vocabulary has "<think>" as one
 * token. Only then may constrained output wait for a block (another model's first "<" stays the
 * grammar's to allow or not). */
static bool model_thinks(openai *api) {
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
static int parse_thinking(openai *api, json_t *body, sched_req *r, json_t *tvars, http_err *e) {
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

static int build_chat(openai *api, json_t *body, job *j, http_err *e) {
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
    if (get_bool(body, "parallel_tool_calls", &parallel, e)) goto bad;
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
static char *prompt_text(openai *api, const int32_t *t, int n, size_t *len) {
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
static int completion_prompt(openai *api, json_t *p, size_t which, int32_t **out, int *n_out, http_err *e) {
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
static int32_t special_id(openai *api, const char *text) {
    int n = 0;
    int32_t *t = lfm2c_tokenize(api->model, text, strlen(text), false, true, &n, NULL);
    int32_t id = t && n == 1 ? t[0] : -1;
    free(t);
    return id;
}

/* Fill-in-the-middle ('suffix'): the prompt becomes [BOS] <|fim_pre|> prompt <|fim_suf|> suffix
 * <|fim_mid|> and the answer is the middle; a model without these tokens gets a 400 naming
 * 'suffix' (never a plain completion that ignores it). */
static int apply_suffix(openai *api, json_t *suffix, sched_req *r, http_err *e) {
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

static int build_completion(openai *api, json_t *body, job *j, http_err *e) {
    sched_req *b = j->rs[0];
    if (parse_common(api, body, b, &j->o, false, e) || get_bool(body, "echo", &j->o.echo, e)) return -1;
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

static int token_text(openai *api, int32_t tok, char *b, int cap, char *text, size_t text_cap) {
    int n = lfm2c_token_to_bytes(api->model, tok, true, b, cap);
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

static json_t *token_json(openai *api, int32_t tok, float lp) {
    char b[512], text[4 * 512 + 8];
    int n = token_text(api, tok, b, (int)sizeof b, text, sizeof text);
    json_t *bytes = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)b[i]));
    json_t *o = json_object();
    json_object_set_new(o, "token", json_string(text));
    json_object_set_new(o, "logprob", json_real(lp));
    json_object_set_new(o, "bytes", bytes);
    return o;
}

/* logprobs.content entries for tokens [from, to) (lock held). */
static json_t *logprobs_json(openai *api, const sched_req *r, int from, int to) {
    json_t *arr = json_array();
    for (int i = from; i < to && i < r->n_logprobs_out; i++) {
        const sched_logprob *lp = &r->logprobs[i];
        json_t *o = token_json(api, lp->token, lp->logprob);
        json_t *top = json_array();
        for (int k = 0; k < lp->n_top; k++) json_array_append_new(top, token_json(api, lp->top_token[k], lp->top_logprob[k]));
        json_object_set_new(o, "top_logprobs", top);
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "content", arr);
}

/* Appends entries [from, to) of `a` to the legacy parallel arrays; entry 0 of `a` starts at text
 * offset `base`. A NAN logprob (the first prompt token) is null; `zero_first`: entry 0 is not in
 * the text (the BOS the server added before a string prompt) and takes no room. */
static void legacy_add(openai *api, const sched_logprob *a, int n, int from, int to, size_t base, bool zero_first,
                       json_t *tokens, json_t *lps, json_t *tops, json_t *offs) {
    size_t off = base;
    for (int i = 0; i < to && i < n; i++) {
        const sched_logprob *lp = &a[i];
        char b[512], text[4 * 512 + 8];
        int len = token_text(api, lp->token, b, (int)sizeof b, text, sizeof text);
        if (i == 0 && zero_first) len = 0;
        if (i >= from) {
            json_array_append_new(tokens, json_string(text));
            bool none = isnan(lp->logprob);
            json_array_append_new(lps, none ? json_null() : json_real(lp->logprob));
            json_t *top = none ? json_null() : json_object();
            for (int k = 0; !none && k < lp->n_top; k++) {
                char tb[512], tt[4 * 512 + 8];
                token_text(api, lp->top_token[k], tb, (int)sizeof tb, tt, sizeof tt);
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
static json_t *legacy_logprobs_json(openai *api, const job *j, int i, bool with_prompt, int from, int to) {
    const sched_req *r = j->rs[i];
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    if (with_prompt && r->prompt_logprobs)
        legacy_add(api, r->prompt_lp, r->n_prompt_lp, 0, r->n_prompt_lp, 0, j->echo_bos && j->echo_bos[i], tokens, lps, tops, offs);
    size_t base = j->echo ? j->n_echo[i] : 0;
    if (from < to) legacy_add(api, r->logprobs, r->n_logprobs_out, from, to, base, false, tokens, lps, tops, offs);
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

/* Usage of all choices: each prompt counted once (its choices share it), completions summed. */
static json_t *usage_json(const job *j) {
    int n = j->o.n < 1 ? 1 : j->o.n, prompt = 0, cached = 0, completion = 0, thinking = 0;
    for (int i = 0; i < j->n_rs; i++) {
        const sched_req *r = j->rs[i];
        if (i % n == 0) { prompt += r->n_prompt; cached += r->n_cached; }
        completion += r->n_generated;
        thinking += r->n_think_tokens;
    }
    return json_pack("{s:i,s:i,s:i,s:{s:i},s:{s:i}}", "prompt_tokens", prompt, "completion_tokens", completion,
                     "total_tokens", prompt + completion, "prompt_tokens_details", "cached_tokens", cached,
                     "completion_tokens_details", "reasoning_tokens", thinking);
}

/* Tool-call ids are random like every other id the server hands out (never a guessable sequence). */
static void tool_call_id(void *ctx, char *out, size_t cap) { make_id(ctx, "call_", out, cap); }

static json_t *tool_calls_json(openai *api, const toolcall_result *tr) {
    return toolcall_openai_json(tr, tool_call_id, api);
}

/* One choice of the answer (lock held). */
static json_t *final_choice(openai *api, job *j, int i) {
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
                         j->o.logprobs ? legacy_logprobs_json(api, j, i, true, 0, r->n_logprobs_out) : json_null(), "finish_reason", finish);
    }
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    if (r->n_reasoning) json_object_set_new(msg, "reasoning_content", json_stringn(r->reasoning, r->n_reasoning));
    toolcall_result tr = {0};
    size_t n_text = r->n_text;
    if (j->tools && r->finish == FINISH_LENGTH) n_text = toolcall_before_cut(r->text, n_text);
    if (j->tools && r->finish != FINISH_LENGTH && toolcall_parse(r->text ? r->text : "", n_text, &tr) && tr.parsed &&
        tr.n_calls > 0) {
        json_object_set_new(msg, "content", tr.content_len ? json_stringn(tr.content, tr.content_len) : json_null());
        json_object_set_new(msg, "tool_calls", tool_calls_json(api, &tr));
        finish = "tool_calls";
    } else {
        json_object_set_new(msg, "content", json_stringn(r->text ? r->text : "", n_text));
        if (r->finish == FINISH_TOOL_CALLS) finish = "stop";
    }
    toolcall_result_free(&tr);
    return json_pack("{s:i,s:o,s:o,s:s}", "index", i, "message", msg, "logprobs",
                     j->o.logprobs ? logprobs_json(api, r, 0, r->n_logprobs_out) : json_null(), "finish_reason", finish);
}

/* The whole answer of a finished job (lock held). */
static json_t *final_json(openai *api, job *j) {
    json_t *choices = json_array();
    for (int i = 0; i < j->n_rs; i++) json_array_append_new(choices, final_choice(api, j, i));
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", j->id, "object", j->chat ? "chat.completion" : "text_completion",
                     "created", (json_int_t)j->created, "model", j->model_id, "choices", choices, "usage", usage_json(j));
}

/* ---- streaming ------------------------------------------------------------------------------------- */

/* What a stream has sent of one choice. */
typedef struct stream_choice {
    size_t sent_text;          /* bytes of r->text already turned into events */
    size_t sent_reasoning;     /* bytes of r->reasoning already sent */
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
    bool probed;               /* the client's side ended: one ignorable line was written */
    char *out;                 /* pending SSE bytes */
    size_t n_out, off_out, cap_out;
} stream;

static void out_add(stream *st, const char *s, size_t n) {
    char *o = lfm2c_grow(st->out, &st->cap_out, st->n_out, n, 1, 4096);
    if (!o) return;
    st->out = o;
    memcpy(st->out + st->n_out, s, n);
    st->n_out += n;
}

static void dl_out(void *ctx, const char *s, size_t n) { out_add(ctx, s, n); }

static dl_server dl_view_of(openai *api, const char *owner) {
    return (dl_server){.model = api->model, .alias = api->alias, .model_file = api->model_file[0] ? api->model_file : NULL,
                       .n_lora = api->p.n_lora, .lora_names = api->p.lora_names, .n_ctx = api->n_ctx, .started = api->started, .responses = api->responses, .id_mu = &api->mu,
                       .id_counter = &api->id_counter, .owner = owner};
}


static dl_run dl_run_of(const job *j) {
    const sched_req *r = j->rs[0]; /* the dialects ask for one choice */
    return (dl_run){.prompt = r->prompt, .n_prompt = r->n_prompt, .n_generated = r->n_generated, .n_cached = r->n_cached,
                    .n_reasoning = r->n_think_tokens, .stop_hit = r->stop_hit,
                    .stop_text = r->stop_hit >= 0 && r->stop_hit < r->n_stop ? r->stop[r->stop_hit] : NULL,
                    .t_submit = r->t_submit, .t_first = r->t_first, .t_now = lfm2c_now_s()};
}

static void out_event(stream *st, json_t *j) {
    if (st->j->dl) { /* another API: the chunk is translated into its events */
        dl_server v = dl_view_of(st->j->api, st->j->owner);
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
    json_t *choice = j->chat ? json_pack("{s:i,s:o}", "index", i, "delta", delta_or_text)
                             : json_pack("{s:i,s:o}", "index", i, "text", delta_or_text);
    json_object_set_new(choice, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", j->id, "object", j->chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)j->created, "model", j->model_id, "choices", choice);
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
    openai *api = j->api;
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
                json_t *calls = tool_calls_json(api, &tr);
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
    openai *api = j->api;
    stream_choice *c = &st->ch[i];
    if (c->finished) return;
    if (!c->started) {
        c->started = true;
        if (j->chat) out_event(st, chunk(st, i, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, NULL));
    }
    if (j->echo && !c->echoed) { /* the prompt first (with its logprobs once it is read) */
        if (r->prompt_logprobs && r->n_prompt_lp < r->n_prompt && r->finish == FINISH_NONE) return;
        c->echoed = true;
        json_t *plp = r->prompt_logprobs ? legacy_logprobs_json(api, j, i, true, 0, 0) : NULL;
        if (j->n_echo[i] || plp) emit_content(st, i, j->echo[i], j->n_echo[i], plp);
    }
    json_t *lp = NULL;
    if (j->o.logprobs && r->n_logprobs_out > c->sent_lp) {
        lp = j->chat ? logprobs_json(api, r, c->sent_lp, r->n_logprobs_out)
                     : legacy_logprobs_json(api, j, i, false, c->sent_lp, r->n_logprobs_out);
        c->sent_lp = r->n_logprobs_out;
    }
    if (j->chat && r->n_reasoning > c->sent_reasoning) { /* the thinking, as its own deltas */
        json_t *piece = json_stringn(r->reasoning + c->sent_reasoning, r->n_reasoning - c->sent_reasoning);
        c->sent_reasoning = r->n_reasoning;
        out_event(st, chunk(st, i, json_pack("{s:o}", "reasoning_content", piece ? piece : json_string("")), lp, NULL));
        lp = NULL;
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
    if (r->error_status == 400) http_set_err(e, 400, r->error_code ? r->error_code : "unsatisfiable_request", NULL, "%s", r->error);
    else http_set_err(e, 500, "generation_failed", NULL, "%s", r->error);
}

/* Turns new output of the job into SSE events (lock held). */
static void stream_pump(stream *st) {
    job *j = st->j;
    if (st->finished) return;
    const sched_req *bad = job_failed(j);
    if (bad) { /* one failed choice fails the request */
        http_err e;
        job_error(bad, &e);
        out_event(st, http_err_json(&e));
    } else {
        for (int i = 0; i < j->n_rs; i++) stream_pump_choice(st, i);
        if (st->n_finished < j->n_rs) return;
        if (j->o.include_usage) {
            json_t *u = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", j->id, "object",
                                  j->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created,
                                  "model", j->model_id, "choices", "usage", usage_json(j));
            out_event(st, u);
        }
    }
    st->finished = true;
    if (j->dl) {
        dl_server v = dl_view_of(j->api, j->owner);
        dl_run run = dl_run_of(j);
        j->dl->end(&v, j->dls, &run, dl_out, st);
    } else {
        out_add(st, "data: [DONE]\n\n", 14);
    }
}

/* ---- running a job: a plain answer, or a stream ---------------------------------------------- */

/* Token counts of the job for the log line (lock held). */
static void job_tokens(const job *j, http_log *k) {
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

static ssize_t stream_read(void *cls, char *buf, size_t max, http_log *log) {
    stream *st = cls;
    openai *api = st->j->api;
    while (st->off_out == st->n_out) {
        if (st->done_sent) return HTTP_STREAM_END;
        st->n_out = st->off_out = 0;
        sched_lock(api->sched);
        for (;;) {
            stream_pump(st);
            if (st->n_out > 0) break;
            if (http_fd_gone(st->fd)) {
                sched_unlock(api->sched);
                return HTTP_STREAM_ERROR;
            }
            if (!st->probed && http_fd_eof(st->fd)) { /* closed or half-closed: a write tells */
                st->probed = true;
                bool sse = !st->j->dl || strstr(st->j->dl->stream_type, "event-stream");
                out_add(st, sse ? ": ping\n\n" : "\n", sse ? 8 : 1);
                break;
            }
            sched_wait(api->sched, st->j->rs[0], 100);
        }
        job_tokens(st->j, log);
        if (st->finished) st->done_sent = true;
        sched_unlock(api->sched);
    }
    size_t n = st->n_out - st->off_out;
    if (n > max) n = max;
    memcpy(buf, st->out + st->off_out, n);
    st->off_out += n;
    return (ssize_t)n;
}

static void stream_free(void *cls, http_log *log) {
    stream *st = cls;
    if (!st->done_sent) log->status = 499; /* the client left before the end */
    for (int i = 0; st->ch && i < st->j->n_rs; i++) toolcall_stream_free(st->ch[i].tcs);
    free(st->ch);
    job_free(st->j); /* cancels the requests still running */
    free(st->out);
    free(st);
}

/* A logprobs entry of a whole (not streamed) answer, as a jansson tree and then as text: an
 * upper estimate ({"token","logprob","bytes":[...]} ~0.8 KiB as a tree, ~100 B as text). */
enum { ANSWER_LOGPROB_BYTES = 1024 };

/* The logprobs JSON of a whole answer (charged while it is built): of max_tokens tokens when
 * done is false, of the tokens generated when true (lock held). 0 for a stream (sent piecewise). */
static size_t answer_logprob_bytes(const job *j, bool done) {
    size_t n = 0;
    for (int i = 0; !j->o.stream && i < j->n_rs; i++) {
        const sched_req *r = j->rs[i];
        if (r->n_logprobs < 0) continue;
        size_t toks = done ? (size_t)r->n_logprobs_out : (size_t)(r->max_tokens > 0 ? r->max_tokens : 0);
        n += toks * (size_t)(1 + r->n_logprobs) * ANSWER_LOGPROB_BYTES;
    }
    return n;
}

/* Runs a generation job: answers 503 when the queue is full, else waits or streams. */
static int run_job(openai *api, http_req *q, job *j) {
    http_err e;
    http_req_log(q)->prompt_tokens = j->rs[0]->n_prompt;
    if (sched_submit_group(api->sched, j->rs, j->n_rs) != 0) {
        job_free(j);
        http_set_err(&e, 503, "server_overloaded", NULL, "all slots are busy and the queue is full; retry later");
        return http_send_err(q, &e);
    }
    int fd = http_req_fd(q);
    if (j->o.stream) {
        stream *st = calloc(1, sizeof *st);
        stream_choice *ch = st ? calloc((size_t)j->n_rs, sizeof *ch) : NULL;
        if (!ch) { free(st); job_free(j); http_set_err(&e, 500, NULL, NULL, "out of memory"); return http_send_err(q, &e); }
        st->j = j;
        st->ch = ch;
        st->fd = fd;
        for (int i = 0; j->tools && i < j->n_rs; i++) st->ch[i].tcs = toolcall_stream_new();
        return http_send_stream(q, j->dl ? j->dl->stream_type : "text/event-stream", stream_read, stream_free, st);
    }
    sched_lock(api->sched);
    while (!job_done(j)) {
        if (http_client_gone(q)) break;
        sched_wait(api->sched, j->rs[0], 100);
    }
    if (!job_done(j)) { /* client left: cancel, answer nobody */
        sched_unlock(api->sched);
        job_free(j);
        return http_drop(q);
    }
    job_tokens(j, http_req_log(q));
    size_t tree = job_failed(j) ? 0 : answer_logprob_bytes(j, true);
    if (tree) { /* the answer's logprobs JSON is charged while it is built (may wait: unlocked) */
        sched_unlock(api->sched);
        bool ok = http_charge(q, tree, &e);
        if (!ok) {
            job_free(j);
            return http_send_err(q, &e);
        }
        sched_lock(api->sched);
    }
    json_t *out;
    int status = 200;
    const sched_req *bad = job_failed(j);
    if (bad) {
        job_error(bad, &e);
        out = dl_err_json(j->dl, &e);
        status = e.status;
    } else {
        out = final_json(api, j);
        if (j->dl) {
            dl_server v = dl_view_of(api, j->owner);
            dl_run run = dl_run_of(j);
            json_t *o = j->dl->final(&v, j->dls, out, &run);
            json_decref(out);
            out = o;
        }
    }
    sched_unlock(api->sched);
    job_free(j);
    return http_send_json(q, status, out);
}

/* The request's "model" must name the served model (its alias or file name, with or without
 * .gguf) or one of its LoRA adapters (NAME or ALIAS:NAME: the request runs with it), unless the
 * server accepts any name (--any-model). An absent model is accepted. */
static int check_model(openai *api, json_t *body, job *j, http_err *e) {
    sched_req *r = j->rs[0];
    json_t *m = json_object_get(body, "model");
    j->model_id = api->alias;
    if (!m || json_is_null(m)) return 0;
    if (!json_is_string(m)) return api->p.any_model ? 0 : http_set_err(e, 400, "invalid_type", "model", "'model' must be a string");
    const char *id = json_string_value(m);
    int li = lora_index(api, id);
    if (li >= 0) {
        r->lora = api->p.loras[li];
        r->lora_scale = api->p.lora_scales ? api->p.lora_scales[li] : 1.0f;
        j->model_id = api->p.lora_names[li];
        return 0;
    }
    if (api->p.any_model || server_model_matches(api, id)) return 0;
    return http_set_err(e, 404, "model_not_found", "model",
                        "The model '%.200s' does not exist or you do not have access to it (this server has '%.200s')", id, api->alias);
}

/* What the job will hold while it runs: prompts, biases, stop strings, echoes, and its output
 * at most (text and logprobs of max_tokens tokens). */
static size_t job_bytes(const openai *api, const job *j) {
    size_t n = sizeof *j;
    for (int i = 0; i < j->n_rs; i++) {
        const sched_req *r = j->rs[i];
        size_t out = (size_t)(r->max_tokens > 0 ? r->max_tokens : 0);
        n += sizeof *r + (size_t)r->n_prompt * sizeof(int32_t) + out * 16;
        if (r->logit_bias) n += (size_t)api->n_vocab * sizeof(float);
        if (r->n_logprobs >= 0) n += out * sizeof(sched_logprob);
        if (r->prompt_logprobs) n += (size_t)r->n_prompt * sizeof(sched_logprob);
        for (int k = 0; k < r->n_stop; k++) n += strlen(r->stop[k]) + 1;
        if (j->n_echo) n += j->n_echo[i];
    }
    return n;
}

/* Frees a job whose requests were never submitted: their fork_of holds no reference yet (the
 * scheduler takes it at submit), so it must not be released with them. */
static void job_unsubmitted_free(job *j) {
    for (int i = 0; i < j->n_rs; i++) if (j->rs[i]) j->rs[i]->fork_of = NULL;
    job_free(j);
}

/* Runs a chat or completion body; dl, dls: the API it came in (NULL: OpenAI) and its state,
 * which the job owns from here (*dls is cleared once taken); own: a tree of the caller's to free
 * once the job is built (NULL: none). */
static int handle_generate(openai *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls, json_t **own) {
    http_err e;
    job *j = job_new(api);
    if (!j) {
        http_set_err(&e, 500, NULL, NULL, "out of memory");
        return http_send_err(q, &e);
    }
    j->chat = chat;
    j->created = time(NULL);
    j->dl = dl;
    j->dls = dls ? *dls : NULL;
    if (dls) *dls = NULL;
    make_id(api, chat ? "chatcmpl-" : "cmpl-", j->id, sizeof j->id);
    http_key_digest(q, j->owner, sizeof j->owner);
    j->q = q;
    int built = check_model(api, body, j, &e) || (chat ? build_chat : build_completion)(api, body, j, &e);
    j->q = NULL; /* the job may outlive the request */
    if (built) {
        job_free(j);
        return http_send_err(q, &e);
    }
    /* the job holds what generation needs: the parse trees go before the wait (a dialect's state
     * may keep parts of its request, echoed in the answer: its charge stays too) */
    if (own) { json_decref(*own); *own = NULL; }
    size_t hold = job_bytes(api, j) + (dl ? http_charged(q) : 0), peak = answer_logprob_bytes(j, false);
    if (hold + peak > http_memory_budget(q)) { /* its answer could never be built within the budget */
        http_set_err(&e, 413, "request_too_large", NULL,
                     "the answer would take about %zu MiB to build (limit %zu MiB, --max-request-memory): ask for fewer "
                     "choices, tokens or top_logprobs, or stream it", (hold + peak) >> 20, http_memory_budget(q) >> 20);
        job_unsubmitted_free(j);
        return http_send_err(q, &e);
    }
    if (!http_hold(q, hold, &e)) {
        job_unsubmitted_free(j);
        return http_send_err(q, &e);
    }
    return run_job(api, q, j);
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

static int handle_tokenize(openai *api, http_req *q, json_t *body) {
    http_err e;
    json_t *content = json_object_get(body, "content");
    bool add_special = false, parse_special = true;
    if (!json_is_string(content)) { http_set_err(&e, 400, "invalid_type", "content", "'content' must be a string"); goto bad; }
    if (get_bool(body, "add_special", &add_special, &e) || get_bool(body, "parse_special", &parse_special, &e)) goto bad;
    if (json_string_length(content) > api->p.max_tokenize_bytes) {
        http_set_err(&e, 413, "request_too_large", "content", "'content' has %zu bytes; /tokenize takes at most %zu (--max-tokenize-bytes)",
                     json_string_length(content), api->p.max_tokenize_bytes);
        goto bad;
    }
    if (!http_gate_enter(&api->aux)) return http_send_busy(q, "tokenizer requests");
    lfm2c_error err = {0};
    int n = 0;
    int32_t *t = lfm2c_tokenize(api->model, json_string_value(content), json_string_length(content), add_special,
                                parse_special, &n, &err);
    size_t len = 0;
    char *out = t ? tokens_text(t, n, &len) : NULL;
    http_gate_leave(&api->aux);
    free(t);
    if (!t) { http_set_err(&e, 400, "invalid_value", "content", "%s", err.msg); goto bad; }
    if (!out) { http_set_err(&e, 500, NULL, NULL, "out of memory"); goto bad; }
    return http_send_text(q, 200, "application/json", out, len, NULL);
bad:
    return http_send_err(q, &e);
}

/* The text of token ids, at most cap bytes; 0, or an error. */
static int detok_text(openai *api, json_t *tokens, size_t cap_out, char **text, size_t *len, http_err *e) {
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
        if (n > 0) buf_add(text, len, &cap, piece, (size_t)(n < (int)sizeof piece ? n : (int)sizeof piece));
        if (!*text) return http_set_err(e, 500, NULL, NULL, "out of memory");
        if (*len > cap_out)
            return http_set_err(e, 413, "response_too_large", "tokens", "the text of these tokens is over %zu bytes", cap_out);
    }
    char tail[64];
    int n = lfm2c_detok_flush(&d, tail, sizeof tail);
    if (n > 0) buf_add(text, len, &cap, tail, (size_t)n);
    if (!*text) return http_set_err(e, 500, NULL, NULL, "out of memory");
    return 0;
}

static int handle_detokenize(openai *api, http_req *q, json_t *body) {
    http_err e;
    json_t *tokens = json_object_get(body, "tokens");
    if (!json_is_array(tokens)) {
        http_set_err(&e, 400, "invalid_type", "tokens", "'tokens' must be an array of token ids");
        return http_send_err(q, &e);
    }
    if (json_array_size(tokens) > (size_t)api->p.max_detokenize_tokens) {
        http_set_err(&e, 413, "request_too_large", "tokens", "'tokens' has %zu ids; /detokenize takes at most %d (--max-detokenize-tokens)",
                     json_array_size(tokens), api->p.max_detokenize_tokens);
        return http_send_err(q, &e);
    }
    if (!http_gate_enter(&api->aux)) return http_send_busy(q, "tokenizer requests");
    char *text = NULL;
    size_t len = 0;
    int rc = detok_text(api, tokens, api->p.max_body, &text, &len, &e);
    http_gate_leave(&api->aux);
    json_t *out = rc ? NULL : json_pack("{s:s%}", "content", text, len);
    free(text);
    if (rc || !out) {
        if (!rc) http_set_err(&e, 500, NULL, NULL, "out of memory");
        return http_send_err(q, &e);
    }
    return http_send_json(q, 200, out);
}

/* ---- other APIs (server_dialect.h): translated into chat requests ------------------------------ */

/* POST /v1/messages/count_tokens: the prompt the chat request would render, counted. */
static int count_tokens(openai *api, http_req *q, json_t *chat) {
    http_err e;
    job *j = job_new(api);
    if (!j) {
        http_set_err(&e, 500, NULL, NULL, "out of memory");
        return http_send_err(q, &e);
    }
    j->chat = true;
    j->q = q;
    int rc = build_chat(api, chat, j, &e), n = j->rs[0]->n_prompt;
    job_free(j);
    if (rc) return http_send_err(q, &e);
    http_req_log(q)->prompt_tokens = n;
    return http_send_json(q, 200, json_pack("{s:i}", "input_tokens", n));
}

/* A dialect's refusal (dl_err) in the request's error shape. */
static int send_dl_err(http_req *q, dl_err *de) {
    json_decref(de->answer);
    int status = de->status >= 400 ? de->status : 400;
    http_err e;
    http_set_err(&e, status, status == 404 ? "not_found" : status >= 500 ? NULL : "invalid_value",
                 de->param[0] ? de->param : NULL, "%s", de->msg);
    return http_send_err(q, &e);
}

int openai_route_dialect(http_req *q, json_t *body) {
    openai *api = http_app(q);
    const dialect *dl = http_arg(q);
    char owner[DL_OWNER_LEN];
    http_key_digest(q, owner, sizeof owner);
    dl_server v = dl_view_of(api, owner);
    dl_err de = {0};
    bool legacy = false;
    void *dls = NULL;
    json_t *chat = dl->request(&v, body, &dls, &legacy, &de);
    const char *id = json_string_value(json_object_get(body, "model"));
    if (chat && id && lora_index(api, id) >= 0) json_object_set_new(chat, "model", json_string(id));   /* the adapter it names */
    json_t *ts = json_object_get(body, "test_script");
    if (chat && ts && api->p.test_script) json_object_set(chat, "test_script", ts); /* tests: the output, in every API */
    if (chat) {
        int r = handle_generate(api, q, chat, !legacy, dl, &dls, &chat);
        json_decref(chat);
        if (dls) dl->free_state(dls); /* no job took it */
        return r;
    }
    if (dls) dl->free_state(dls);
    if (de.status == 200 && de.answer) return http_send_json(q, 200, de.answer);
    return send_dl_err(q, &de);
}

int openai_route_count(http_req *q, json_t *body) {
    openai *api = http_app(q);
    const dl_hook *h = http_arg(q);
    char owner[DL_OWNER_LEN];
    http_key_digest(q, owner, sizeof owner);
    dl_server v = dl_view_of(api, owner);
    dl_err de = {0};
    json_t *chat = h->fn(&v, body, &de);
    if (!chat) return send_dl_err(q, &de);
    int r = count_tokens(api, q, chat);
    json_decref(chat);
    return r;
}

int openai_route_answer(http_req *q, json_t *body) {
    openai *api = http_app(q);
    const dl_hook *h = http_arg(q);
    char owner[DL_OWNER_LEN];
    http_key_digest(q, owner, sizeof owner);
    dl_server v = dl_view_of(api, owner);
    dl_err de = {0};
    json_t *o = h->fn(&v, body, &de);
    if (o) return http_send_json(q, 200, o);
    if (!de.status) return -1; /* out of memory: no answer */
    return send_dl_err(q, &de);
}


/* The model (lora -1) or one of its adapters, in OpenAI's shape and Anthropic's (type,
 * display_name, created_at), which share GET /v1/models. */
static json_t *model_json(openai *api, int lora) {
    const lfm2c_model_info *mi = lfm2c_model_get_info(api->model);
    const char *id = lora < 0 ? api->alias : api->p.lora_names[lora];
    char t[40];
    dl_iso_time(api->started, t, sizeof t);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:{s:s,s:i,s:i,s:I}}", "id", id, "object", "model", "created",
                          (json_int_t)api->started, "owned_by", "lfm2c", "type", "model", "display_name", id, "created_at", t,
                          "meta", "arch", mi->arch, "n_ctx", api->n_ctx, "n_vocab", api->n_vocab, "n_params", (json_int_t)mi->n_params);
    if (o && lora >= 0) {   /* vLLM's way of listing an adapter */
        json_object_set_new(o, "parent", json_string(api->alias));
        json_object_set_new(o, "root", json_string(api->alias));
    }
    return o;
}

/* ---- the OpenAI routes ------------------------------------------------------------------------ */

static int route_chat(http_req *q, json_t *body) { return handle_generate(http_app(q), q, body, true, NULL, NULL, NULL); }
static int route_completions(http_req *q, json_t *body) { return handle_generate(http_app(q), q, body, false, NULL, NULL, NULL); }
static int route_tokenize(http_req *q, json_t *body) { return handle_tokenize(http_app(q), q, body); }
static int route_detokenize(http_req *q, json_t *body) { return handle_detokenize(http_app(q), q, body); }

static int route_models(http_req *q, json_t *body) {
    openai *api = http_app(q);
    (void)body;
    json_t *data = json_array();
    for (int i = -1; i < api->p.n_lora; i++) json_array_append_new(data, model_json(api, i));
    const char *last = api->p.n_lora ? api->p.lora_names[api->p.n_lora - 1] : api->alias;
    return http_send_json(q, 200, json_pack("{s:s,s:o,s:b,s:s,s:s}", "object", "list", "data", data, "has_more", 0,
                                            "first_id", api->alias, "last_id", last));
}

/* GET /v1/models/{id} */
static int route_model(http_req *q, json_t *body) {
    openai *api = http_app(q);
    const char *id = http_rest(q);
    (void)body;
    if (server_model_matches(api, id)) return http_send_json(q, 200, model_json(api, -1));
    if (lora_index(api, id) >= 0) return http_send_json(q, 200, model_json(api, lora_index(api, id)));
    http_err e;
    http_set_err(&e, 404, "model_not_found", "model", "The model '%.200s' does not exist (this server has '%.200s')", id, api->alias);
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

/* ---- life cycle --------------------------------------------------------------------------------- */

int openai_init(openai *api, lfm2c_model *model, sched *s, const server_params *p) {
    memset(api, 0, sizeof *api);
    api->model = model;
    api->sched = s;
    api->p = *p;
    api->n_ctx = p->n_ctx;
    api->n_vocab = model ? lfm2c_vocab_size(model) : 0;
    api->started = time(NULL);
    pthread_mutex_init(&api->mu, NULL);
    http_gate_init(&api->aux, SERVER_AUX_PARALLEL);
    snprintf(api->alias, sizeof api->alias, "%s", p->alias && *p->alias ? p->alias : "lfm2c");
    snprintf(api->model_file, sizeof api->model_file, "%s", p->model_file ? p->model_file : "");
    api->responses = resp_store_new(SERVER_RESPONSES_KEPT, SERVER_RESPONSES_BYTES);
    return 0;
}

void openai_attach(openai *api, lfm2c_model *model, sched *s, int n_ctx) {
    api->model = model;
    api->sched = s;
    api->n_ctx = n_ctx;
    api->n_vocab = lfm2c_vocab_size(model);
}

int openai_jobs(openai *api) {
    pthread_mutex_lock(&api->mu);
    int n = api->jobs;
    pthread_mutex_unlock(&api->mu);
    return n;
}

void openai_free(openai *api) {
    resp_store_free(api->responses);
    http_gate_destroy(&api->aux);
    pthread_mutex_destroy(&api->mu);
}
