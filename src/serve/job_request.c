/* job_request.c — the shared request of every API (job.h): an OpenAI-shaped chat or completion
 * body (the other APIs' requests are translated into one, api_dialect.h) -> a job's scheduler
 * requests. Here: the fields both bodies share (sampling, limits, stops, logit_bias, logprobs,
 * speculative settings, the model or LoRA adapter it names), the room the context leaves, n
 * choices per prompt, and the completion body (prompts as strings or token ids, echo,
 * fill-in-the-middle); the chat body is job_chat.c's. A bad field gets a 4xx (http_err) naming
 * it. Nothing here runs or answers. */
#include "serve/job.h"
#include "base/os.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void api_make_id(serve_api *api, const char *prefix, char *out, size_t cap) {
    dl_random_id(&api->sh->mu, &api->sh->id_counter, api->sh->started, prefix, out, cap);
}

/* The LoRA adapter of this model a model id names: NAME, or ANY:NAME where ANY named this model
 * (models_acquire resolved it); -1: none. */
int api_lora_index(const serve_api *api, const char *id) {
    const char *colon = strrchr(id, ':');
    for (int i = 0; i < api->p.n_lora; i++) {
        const char *n = api->p.lora_names[i];
        if (!strcmp(id, n) || (colon && colon > id && !strcmp(colon + 1, n))) return i;
    }
    return -1;
}

/* A sampler seed for a request that gives none: 64 bits from the kernel's CSPRNG, so that
 * identical requests (retries, "regenerate", self-consistency loops) draw different answers;
 * where the system generator fails (base/os.h os_random), a per-process counter mixed with the clock in nanoseconds. Never 0
 * (the sampler's "default seed"). */
static uint64_t fresh_seed(void) {
    uint64_t x = 0;
    if (!os_random(&x, sizeof x)) {
        static _Atomic uint64_t counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + ++counter * 0x9E3779B97F4A7C15ull;
        x ^= x >> 30, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 27, x *= 0x94D049BB133111EBull, x ^= x >> 31;
    }
    return x ? x : 1;
}

void req_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (!*buf) return;
    if (*len + n + 1 > *cap) {
        size_t nc = *cap * 2 + n + 1;
        char *nb = realloc(*buf, nc);
        if (!nb) {
            free(*buf);
            *buf = NULL;
            return;
        }
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

/* ---- request fields ---------------------------------------------------------------------------- */

/* Optional number field in [lo, hi]; returns -1 with the error set on a wrong type/range. */
static int get_num(json_t *body, const char *key, double lo, double hi, double *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return http_set_err(e, 400, "invalid_type", key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return http_set_err(e, 400, "invalid_value", key, "'%s' must be between %g and %g", key, lo, hi);
    *out = x;
    return 0;
}

int req_int(json_t *body, const char *key, long long lo, long long hi, long long *out, http_err *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return http_set_err(e, 400, "invalid_type", key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return http_set_err(e, 400, "invalid_value", key, "'%s' must be between %lld and %lld", key, lo, hi);
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

/* The sampler's settings over the model's defaults, the token limits, n and stream. */
static int req_sampling(serve_api *api, json_t *body, sched_req *r, gen_opts *o, bool chat, http_err *e) {
    lfm2c_sampler_params sp = lfm2c_sampler_params_for_model(api->model);
    double temp = sp.temperature, top_p = sp.top_p, min_p = sp.min_p, pres = 0, freq = 0, rep = sp.repeat_penalty;
    long long top_k = sp.top_k, seed = -1, n = 1, mt = -1, mct = -1;
    if (get_num(body, "temperature", 0, 2, &temp, e) || get_num(body, "top_p", 0, 1, &top_p, e) ||
        get_num(body, "min_p", 0, 1, &min_p, e) || get_num(body, "presence_penalty", -2, 2, &pres, e) ||
        get_num(body, "frequency_penalty", -2, 2, &freq, e) || get_num(body, "repetition_penalty", 0.01, 10, &rep, e) ||
        get_num(body, "repeat_penalty", 0.01, 10, &rep, e) || req_int(body, "top_k", -1, 1 << 30, &top_k, e) ||
        req_int(body, "seed", -(1LL << 62), 1LL << 62, &seed, e) || req_int(body, "n", 1, SERVER_MAX_N, &n, e) ||
        req_int(body, "max_tokens", chat ? 1 : 0, 1 << 30, &mt, e) ||
        req_int(body, "max_completion_tokens", 1, 1 << 30, &mct, e) || req_bool(body, "stream", &o->stream, e))
        return -1;
    if (sp.temperature != temp) sp.temperature = (float)temp;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.top_k = (int)top_k;
    sp.presence_penalty = (float)pres;
    sp.frequency_penalty = (float)freq;
    sp.repeat_penalty = (float)rep;
    sp.seed = seed >= 0 ? (uint64_t)seed : fresh_seed();
    r->sampling = sp;
    o->max_tokens = mct > 0 ? mct : mt;
    o->n = (int)n;
    json_t *so = json_object_get(body, "stream_options");
    if (!so || json_is_null(so)) return 0;
    if (!json_is_object(so))
        return http_set_err(e, 400, "invalid_type", "stream_options", "'stream_options' must be an object");
    return req_bool(so, "include_usage", &o->include_usage, e);
}

/* One stop string appended to r->stop (room made by the caller). */
static int add_stop(serve_api *api, sched_req *r, json_t *s, http_err *e) {
    if (!json_is_string(s)) return http_set_err(e, 400, "invalid_type", "stop", "'stop' must hold strings");
    if (json_string_length(s) > (size_t)api->p.max_stop_bytes)
        return http_set_err(e, 400, "invalid_value", "stop", "a stop string may have at most %d bytes",
                            api->p.max_stop_bytes);
    if (!(r->stop[r->n_stop] = strdup(json_string_value(s)))) return http_set_err(e, 500, NULL, NULL, "out of memory");
    r->n_stop++;
    return 0;
}

/* stop: a string or up to 4 */
static int req_stop(serve_api *api, json_t *body, sched_req *r, http_err *e) {
    json_t *stop = json_object_get(body, "stop");
    if (!stop || json_is_null(stop)) return 0;
    if (!json_is_string(stop) && !(json_is_array(stop) && json_array_size(stop) <= 4))
        return http_set_err(e, 400, "invalid_type", "stop", "'stop' must be a string or an array of up to 4 strings");
    const size_t n = json_is_string(stop) ? 1 : json_array_size(stop);
    if (!(r->stop = calloc(n + 1, sizeof *r->stop))) return http_set_err(e, 500, NULL, NULL, "out of memory");
    if (json_is_string(stop)) return add_stop(api, r, stop, e);
    size_t i;
    json_t *s;
    json_array_foreach(stop, i, s) if (add_stop(api, r, s, e)) return -1;
    return 0;
}

/* logit_bias: token id (a decimal string) -> a bias in [-100, 100]; -100 bans the token */
static int req_logit_bias(serve_api *api, json_t *body, sched_req *r, http_err *e) {
    json_t *lb = json_object_get(body, "logit_bias");
    if (!lb || json_is_null(lb)) return 0;
    if (!json_is_object(lb))
        return http_set_err(e, 400, "invalid_type", "logit_bias", "'logit_bias' must be an object");
    if (!json_object_size(lb)) return 0;
    if (!(r->logit_bias = calloc((size_t)api->n_vocab, sizeof(float))))
        return http_set_err(e, 500, NULL, NULL, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(lb, k, v) {
        char *end;
        long id = strtol(k, &end, 10);
        if (!*k || *end || id < 0 || id >= api->n_vocab)
            return http_set_err(e, 400, "invalid_value", "logit_bias", "logit_bias key '%s' is not a token id", k);
        if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100)
            return http_set_err(e, 400, "invalid_value", "logit_bias",
                                "logit_bias values must be numbers in [-100, 100]");
        double b = json_number_value(v);
        r->logit_bias[id] = b <= -100 ? -INFINITY : (float)b;
    }
    return 0;
}

/* logprobs: chat's (a boolean + top_logprobs) or the legacy completions' (a count) */
static int req_logprobs(json_t *body, sched_req *r, gen_opts *o, bool chat, http_err *e) {
    long long tl = -1;
    if (chat) {
        if (req_bool(body, "logprobs", &o->logprobs, e) || req_int(body, "top_logprobs", 0, 20, &tl, e)) return -1;
        if (tl >= 0 && !o->logprobs)
            return http_set_err(e, 400, "invalid_value", "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else {
        long long lp = -1;
        if (req_int(body, "logprobs", 0, 20, &lp, e)) return -1;
        if (lp >= 0) {
            o->logprobs = true;
            tl = lp;
        }
    }
    o->top_logprobs = tl < 0 ? 0 : (int)tl;
    r->n_logprobs = o->logprobs ? o->top_logprobs : -1;
    return 0;
}

/* llama-server's per-request speculative settings (the server's when absent; n_max is capped by
 * the server's --draft-max) */
static int req_speculative(json_t *body, sched_req *r, http_err *e) {
    long long sn_max = -1, sn_min = -1;
    double sp_min = -1;
    if (req_int(body, "speculative.n_max", 0, 256, &sn_max, e) ||
        req_int(body, "speculative.n_min", 0, 256, &sn_min, e) || get_num(body, "speculative.p_min", 0, 1, &sp_min, e))
        return -1;
    r->spec_n_max = (int)sn_max;
    r->spec_n_min = (int)sn_min;
    r->spec_p_min = (float)sp_min;
    return 0;
}

/* Sampling, limits and stop strings common to both completion endpoints. */
int req_common(serve_api *api, json_t *body, sched_req *r, gen_opts *o, bool chat, http_err *e) {
    return req_sampling(api, body, r, o, chat, e) || req_stop(api, body, r, e) || req_logit_bias(api, body, r, e) ||
                   req_logprobs(body, r, o, chat, e) || req_speculative(body, r, e)
               ? -1
               : 0;
}

/* Limits the generation to the context, refuses prompts that do not fit. */
int req_fit_context(serve_api *api, sched_req *r, gen_opts *o, const char *param, http_err *e) {
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
                            "the prompt has %d tokens and the %s needs at least %d more: together they exceed this "
                            "model's context of %d tokens",
                            r->n_prompt, r->force_tool_call ? "forced tool call" : "structured output", need,
                            api->n_ctx);
    return 0;
}

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
    if (ok) {
        memcpy(r->prompt, prompt, sizeof *r->prompt * (size_t)n_prompt);
        r->n_prompt = n_prompt;
    }
    size_t n_rows = 0; /* the images' rows: one per id below 0 */
    for (int i = 0; ok && b->rows && i < n_prompt; i++) n_rows += prompt[i] < 0;
    const size_t rb = n_rows * sizeof(float) * (size_t)lfm2c_model_get_info(api->model)->n_embd;
    if (ok && n_rows && (ok = (r->rows = malloc(rb)) != NULL)) memcpy(r->rows, b->rows, rb);
    if (ok && b->logit_bias && (ok = (r->logit_bias = malloc(sizeof(float) * (size_t)api->n_vocab)) != NULL))
        memcpy(r->logit_bias, b->logit_bias, sizeof(float) * (size_t)api->n_vocab);
    if (ok && b->script && (ok = (r->script = malloc(sizeof *r->script * (size_t)b->n_script + 1)) != NULL)) {
        memcpy(r->script, b->script, sizeof *r->script * (size_t)b->n_script);
        r->n_script = b->n_script;
    }
    if (ok && b->n_stop && (ok = (r->stop = calloc((size_t)b->n_stop + 1, sizeof *r->stop)) != NULL))
        for (int i = 0; ok && i < b->n_stop; i++) ok = (r->stop[r->n_stop++] = strdup(b->stop[i])) != NULL;
    if (!ok) {
        sched_release(api->sched, r);
        return NULL;
    }
    return r;
}

/* The job holds one request per prompt: makes o.n choices of each, choice k of a prompt with
 * seed + k, waiting for the prompt's first choice and starting from a copy of its state. */
int job_expand(serve_api *api, job *j, http_err *e) {
    int n = j->o.n < 1 ? 1 : j->o.n, np = j->n_rs;
    if (np * n > SERVER_MAX_CHOICES)
        return http_set_err(e, 400, "invalid_value", "n", "at most %d choices per request (prompts x n)",
                            SERVER_MAX_CHOICES);
    for (int i = 0; i < np; i++) j->rs[i]->notify = &j->cond;
    if (n == 1) return 0;
    sched_req **rs = calloc((size_t)(np * n), sizeof *rs);
    char **echo = j->echo ? calloc((size_t)(np * n), sizeof *echo) : NULL;
    size_t *n_echo = j->echo ? calloc((size_t)(np * n), sizeof *n_echo) : NULL;
    bool *echo_bos = j->echo ? calloc((size_t)(np * n), sizeof *echo_bos) : NULL;
    if (!rs || (j->echo && (!echo || !n_echo || !echo_bos))) {
        free(rs);
        free(echo);
        free(n_echo);
        free(echo_bos);
        return http_set_err(e, 500, NULL, NULL, "out of memory");
    }
    for (int p = 0; p < np; p++) {
        sched_req *b = j->rs[p];
        rs[p * n] = b;
        j->rs[p] = NULL;
        if (echo) {
            echo[p * n] = j->echo[p];
            n_echo[p * n] = j->n_echo[p];
            echo_bos[p * n] = j->echo_bos[p];
            j->echo[p] = NULL;
        }
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
            if (echo) {
                n_echo[p * n + k] = n_echo[p * n];
                echo_bos[p * n + k] = echo_bos[p * n];
            }
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
        if (k > 0) req_buf_add(&text, len, &cap, piece, (size_t)(k < (int)sizeof piece ? k : (int)sizeof piece));
    }
    char tail[64];
    int k = text ? lfm2c_detok_flush(&d, tail, sizeof tail) : 0;
    if (k > 0) req_buf_add(&text, len, &cap, tail, (size_t)k);
    return text;
}

int req_prompt_tokens(serve_api *api, json_t *p, const char *param, size_t which, int32_t **out, int *n_out,
                      http_err *e) {
    lfm2c_error err = {0};
    if (json_is_string(p)) {
        const lfm2c_model_info *mi = lfm2c_model_get_info(api->model);
        if (json_string_length(p) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)api->n_ctx)
            return http_set_err(e, 400, "context_length_exceeded", param,
                                "'%s' %zu is far longer than the context of %d tokens", param, which, api->n_ctx);
        *out = lfm2c_tokenize(api->model, json_string_value(p), json_string_length(p), mi->add_bos, true, n_out, &err);
        if (!*out)
            return http_set_err(e, 400, "invalid_value", param, "cannot tokenize '%s' %zu: %s", param, which, err.msg);
        return 0;
    }
    size_t n = json_array_size(p), i;
    json_t *t;
    if (!json_is_array(p) || n == 0)
        return http_set_err(
            e, 400, "invalid_type", param,
            "'%s' must be a string, an array of strings, an array of token ids or an array of such arrays", param);
    if (n > (size_t)api->n_ctx)
        return http_set_err(e, 400, "context_length_exceeded", param,
                            "this model's context is %d tokens; '%s' %zu has %zu tokens", api->n_ctx, param, which, n);
    if (!(*out = malloc(n * sizeof **out))) return http_set_err(e, 500, NULL, NULL, "out of memory");
    json_array_foreach(p, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= api->n_vocab) {
            free(*out);
            *out = NULL;
            return http_set_err(e, 400, "invalid_value", param, "%s[%zu] is not a token id of this model", param, i);
        }
        (*out)[i] = (int32_t)json_integer_value(t);
    }
    *n_out = (int)n;
    return 0;
}

json_t *req_prompt_list(json_t *p, const char *param, http_err *e) {
    if (json_is_string(p)) return json_pack("[O]", p);
    if (!json_is_array(p) || json_array_size(p) == 0) {
        http_set_err(e, 400, p ? "invalid_type" : "missing_required_parameter", param,
                     "'%s' must be a string, an array of strings, an array of token ids or an array of such arrays",
                     param);
        return NULL;
    }
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) return json_pack("[O]", p); /* one prompt of token ids */
    size_t i;
    json_t *x;
    json_array_foreach(p, i, x) {
        if (!json_is_string(x) && !json_is_array(x)) {
            http_set_err(e, 400, "invalid_type", param, "%s[%zu] must be a string or an array of token ids", param, i);
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
    int32_t pre = special_id(api, "<|fim_pre|>"), suf = special_id(api, "<|fim_suf|>"),
            mid = special_id(api, "<|fim_mid|>");
    if (pre < 0 || suf < 0 || mid < 0)
        return http_set_err(e, 400, "invalid_value", "suffix",
                            "this model has no fill-in-the-middle tokens: 'suffix' is not supported");
    const lfm2c_model_info *mi = lfm2c_model_get_info(api->model);
    int ns = 0;
    lfm2c_error err = {0};
    int32_t *st =
        lfm2c_tokenize(api->model, json_string_value(suffix), json_string_length(suffix), false, true, &ns, &err);
    if (!st) return http_set_err(e, 400, "invalid_value", "suffix", "cannot tokenize 'suffix': %s", err.msg);
    int skip = r->n_prompt > 0 && r->prompt[0] == mi->bos_id, bos = mi->add_bos && mi->bos_id >= 0;
    int32_t *t = malloc(((size_t)r->n_prompt + (size_t)ns + 4) * sizeof *t);
    if (!t) {
        free(st);
        return http_set_err(e, 500, NULL, NULL, "out of memory");
    }
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
    if (req_common(api, body, b, &j->o, false, e) || req_bool(body, "echo", &j->o.echo, e)) return -1;
    if (!json_object_get(body, "max_tokens") && j->o.max_tokens < 0) j->o.max_tokens = 16; /* OpenAI's default */
    if (j->o.max_tokens == 0 && !j->o.echo)
        return http_set_err(e, 400, "invalid_value", "max_tokens",
                            "'max_tokens' must be at least 1 (0 only with 'echo': the prompt's logprobs)");
    b->prompt_logprobs = j->o.echo && j->o.logprobs; /* echo + logprobs: the prompt's too */
    if (req_structured(j, body, e)) return -1;
    b->json_grammar = j->g_json; /* every prompt's choices (req_clone copies it) */
    json_t *suffix = json_object_get(body, "suffix");
    if (suffix && !json_is_null(suffix) && !json_is_string(suffix))
        return http_set_err(e, 400, "invalid_type", "suffix", "'suffix' must be a string");
    if (!json_string_length(suffix)) suffix = NULL;
    if (suffix && j->o.echo)
        return http_set_err(e, 400, "invalid_value", "suffix", "'suffix' cannot be used with 'echo'");
    if (suffix &&
        json_string_length(suffix) / SERVER_PROMPT_BYTES_PER_TOKEN > (size_t)api->n_ctx) /* before tokenizing */
        return http_set_err(e, 400, "context_length_exceeded", "suffix",
                            "'suffix' is far longer than the context of %d tokens", api->n_ctx);
    json_t *prompts = req_prompt_list(json_object_get(body, "prompt"), "prompt", e);
    if (!prompts) return -1;
    size_t np = json_array_size(prompts);
    int rc = 0;
    if (np * (size_t)(j->o.n < 1 ? 1 : j->o.n) > SERVER_MAX_CHOICES) {
        rc = http_set_err(e, 400, "invalid_value", "prompt", "at most %d choices per request (prompts x n)",
                          SERVER_MAX_CHOICES);
        goto out;
    }
    sched_req **rs = realloc(j->rs, np * sizeof *rs);
    if (rs) j->rs = rs;
    if (j->o.echo) {
        j->echo = calloc(np, sizeof *j->echo);
        j->n_echo = calloc(np, sizeof *j->n_echo);
        j->echo_bos = calloc(np, sizeof *j->echo_bos);
    }
    if (!rs || (j->o.echo && (!j->echo || !j->n_echo || !j->echo_bos))) {
        rc = http_set_err(e, 500, NULL, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < np && !rc; i++) {
        json_t *p = json_array_get(prompts, i);
        int32_t *toks = NULL;
        int nt = 0;
        if ((rc = req_prompt_tokens(api, p, "prompt", i, &toks, &nt, e))) break;
        sched_req *r = i == 0 ? b : req_clone(api, b, toks, nt);
        if (!r) {
            free(toks);
            rc = http_set_err(e, 500, NULL, NULL, "out of memory");
            break;
        }
        if (i == 0) {
            free(b->prompt);
            b->prompt = toks;
            b->n_prompt = nt;
        } else {
            free(toks);
            j->rs[j->n_rs++] = r;
        }
        if (suffix && (rc = apply_suffix(api, suffix, r, e))) break;
        if ((rc = req_fit_context(api, r, &j->o, "prompt", e))) break;
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

/* The request's "model" named the model it runs on (api_hold) or one of its LoRA adapters
 * (NAME or MODEL:NAME: the request runs with it). A name over SERVER_MAX_MODEL_NAME bytes or with
 * control characters is refused before anything reads it. */
int req_model_name(json_t *body, http_err *e) {
    json_t *m = json_object_get(body, "model");
    if (!json_is_string(m)) return 0; /* a wrong type is each route's own error */
    const char *s = json_string_value(m);
    size_t n = json_string_length(m);
    if (n > SERVER_MAX_MODEL_NAME)
        return http_set_err(e, 400, "invalid_value", "model", "'model' is %zu bytes long (at most %d)", n,
                            SERVER_MAX_MODEL_NAME);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return http_set_err(e, 400, "invalid_value", "model", "'model' must not hold control characters");
    return 0;
}

int job_check_model(serve_api *api, json_t *body, job *j, http_err *e) {
    sched_req *r = j->rs[0];
    json_t *m = json_object_get(body, "model");
    j->model_id = api->alias;
    if (req_model_name(body, e)) return -1;
    if (!m || json_is_null(m)) return 0;
    if (!json_is_string(m))
        return api->p.any_model ? 0 : http_set_err(e, 400, "invalid_type", "model", "'model' must be a string");
    int li = api_lora_index(api, json_string_value(m));
    if (li >= 0) {
        r->lora = api->p.loras[li];
        r->lora_scale = api->p.lora_scales ? api->p.lora_scales[li] : 1.0f;
        j->model_id = api->p.lora_names[li];
    }
    return 0;
}

int job_build(serve_api *api, json_t *body, job *j, bool chat, http_err *e) {
    if (job_check_model(api, body, j, e)) return -1;
    return chat ? job_build_chat(api, body, j, e) : build_completion(api, body, j, e);
}
