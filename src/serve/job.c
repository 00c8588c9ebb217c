/* job.c — the job engine of every API (job.h): a job's life (made, submitted as a group,
 * cancelled when its client leaves, freed), the memory it may hold (charged to the request's
 * budget before it runs, its answer's logprobs before they are built), a whole answer or a
 * stream, and the handlers of the routes whose requests are translated (api_dialect.h).
 * What the scheduler makes is turned into neutral events (job_event.h) as it comes: a choice
 * starts, its answer and thinking text (tool calls held back by chat/toolcall.c's stream until
 * they are whole), its calls, its finish reason, the usage, an error, the end; a finished job
 * into a neutral final answer. The API's dialect renders both (api_openai.c for OpenAI's routes);
 * nothing here writes an API's JSON, except the error body of a route's refusal. */
#include "serve/job.h"
#include "serve/models.h"
#include "chat/toolcall.h"
#include "base/buf.h"
#include "base/clock.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The error body in the shape of the request's API (OpenAI's when it has none of its own). */
static json_t *dl_err_json(const dialect *dl, const http_err *e) {
    return dl && dl->error ? dl->error(e->status, e->code, e->param, e->msg) : http_err_json(e);
}

/* ---- a job ------------------------------------------------------------------------------------- */

job *job_new(serve_api *api) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->rs = calloc(1, sizeof *j->rs);
    if (!j->rs || !(j->rs[0] = sched_req_new())) {
        free(j->rs);
        free(j);
        return NULL;
    }
    j->n_rs = 1;
    j->api = api;
    j->model_id = api->alias;
    pthread_cond_init(&j->cond, NULL);
    pthread_mutex_lock(&api->sh->mu);
    api->sh->jobs++;
    pthread_mutex_unlock(&api->sh->mu);
    return j;
}

void job_free(job *j) {
    if (!j) return;
    serve_shared *sh = j->api->sh;
    for (int i = 0; i < j->n_rs; i++)
        if (j->rs[i]) sched_release(j->api->sched, j->rs[i]);
    for (int i = 0; j->echo && i < j->n_rs; i++) free(j->echo[i]);
    free(j->echo);
    free(j->n_echo);
    free(j->echo_bos);
    free(j->rs);
    grammar_free(j->g_json);
    grammar_free(j->g_tool);
    pthread_cond_destroy(&j->cond);
    if (j->dl && j->dl->free_state) j->dl->free_state(j->dls);
    models_release(j->api); /* last: a keep-alive of 0 unloads the model here */
    free(j);
    pthread_mutex_lock(&sh->mu);
    sh->jobs--;
    pthread_mutex_unlock(&sh->mu);
}

/* The first failed choice, if any (lock held). */
static const sched_req *job_failed(const job *j) {
    for (int i = 0; i < j->n_rs; i++)
        if (j->rs[i]->finish == FINISH_ERROR) return j->rs[i];
    return NULL;
}

static void job_error(const sched_req *r, http_err *e) {
    if (r->error_status == 400)
        http_set_err(e, 400, r->error_code ? r->error_code : "unsatisfiable_request", NULL, "%s", r->error);
    else http_set_err(e, 500, "generation_failed", NULL, "%s", r->error);
}

static bool job_done(const job *j) {
    if (job_failed(j)) return true;
    for (int i = 0; i < j->n_rs; i++)
        if (j->rs[i]->finish == FINISH_NONE) return false;
    return true;
}

/* ---- figures ------------------------------------------------------------------------------------ */

/* Usage of all choices: each prompt counted once (its choices share it), completions summed. */
static job_usage usage_of(const job *j) {
    int n = j->o.n < 1 ? 1 : j->o.n;
    job_usage u = {0};
    for (int i = 0; i < j->n_rs; i++) {
        const sched_req *r = j->rs[i];
        if (i % n == 0) {
            u.prompt += r->n_prompt;
            u.cached += r->n_cached;
        }
        u.completion += r->n_generated;
        u.reasoning += r->n_think_tokens;
    }
    return u;
}

/* Token counts of the job for the log line (lock held). */
static void job_tokens(const job *j, http_log *k) {
    job_usage u = usage_of(j);
    k->prompt_tokens = u.prompt;
    k->completion_tokens = u.completion;
    k->cached_tokens = u.cached;
}

static job_run run_of(const job *j) {
    const sched_req *r = j->rs[0]; /* the APIs but OpenAI ask for one choice */
    return (job_run){.prompt = r->prompt,
                     .n_prompt = r->n_prompt,
                     .n_generated = r->n_generated,
                     .n_cached = r->n_cached,
                     .n_reasoning = r->n_think_tokens,
                     .stop_hit = r->stop_hit,
                     .stop_text = r->stop_hit >= 0 && r->stop_hit < r->n_stop ? r->stop[r->stop_hit] : NULL,
                     .t_submit = r->t_submit,
                     .t_first = r->t_first,
                     .t_now = lfm2c_now_s(),
                     .t_load = j->t_load};
}

dl_server shared_view(serve_shared *sh, const char *owner) {
    return (dl_server){.alias = "",
                       .started = sh->started,
                       .responses = sh->responses,
                       .id_mu = &sh->mu,
                       .id_counter = &sh->id_counter,
                       .owner = owner,
                       .max_messages = sh->p.max_messages};
}

dl_server api_view(serve_api *api, const char *owner) {
    dl_server v = shared_view(api->sh, owner);
    v.model = api->model;
    v.alias = api->alias;
    v.model_file = api->model_file[0] ? api->model_file : NULL;
    v.n_lora = api->p.n_lora;
    v.lora_names = api->p.lora_names;
    v.n_ctx = api->n_ctx;
    return v;
}

/* The scheduler's finish as the client sees it, before tool calls are looked at. */
static job_finish finish_of(int f) {
    return f == FINISH_LENGTH ? JOB_LENGTH : f == FINISH_TOOL_CALLS ? JOB_TOOL_CALLS : JOB_STOP;
}

/* ---- streaming: new output -> events ------------------------------------------------------------ */

/* What a stream has sent of one choice. */
typedef struct stream_choice {
    size_t sent_text;      /* bytes of r->text already turned into events */
    size_t sent_reasoning; /* bytes of r->reasoning already sent */
    int sent_lp;           /* logprob entries already sent */
    bool started, finished, echoed;
    toolcall_stream *tcs;
} stream_choice;

typedef struct stream {
    job *j;
    int fd;
    stream_choice *ch; /* [j->n_rs] */
    int n_finished;
    bool finished, done_sent;
    bool probed; /* the client's side ended: one ignorable line was written */
    char *out;   /* pending bytes of the API's stream */
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

/* Hands one event to the job's API, with the figures now. */
static void emit(stream *st, job_event ev) {
    job *j = st->j;
    dl_server v = api_view(j->api, j->owner);
    job_run run = run_of(j);
    ev.run = &run;
    ev.job = j;
    j->dl->event(&v, j->dls, &ev, dl_out, st);
}

/* Logprob entries [from, to) of choice i not yet sent (to == from: none). */
typedef struct lp_span {
    int from, to;
} lp_span;

/* Text (kind TEXT or REASONING) of choice i with the entries of span; nothing when both are empty. */
static void emit_text(stream *st, job_ev_kind kind, int i, const char *s, size_t n, lp_span lp) {
    if (!n && lp.to <= lp.from) return;
    const sched_req *r = st->j->rs[i];
    job_event ev = {.kind = kind, .choice = i, .text = s ? s : "", .n = n};
    if (lp.to > lp.from) {
        ev.lp = r->logprobs + lp.from;
        ev.n_lp = lp.to - lp.from;
        ev.lp_from = lp.from;
    }
    emit(st, ev);
}

/* The end of one choice: a cut call dropped, the held text and the parsed calls sent, the finish. */
static void stream_finish_choice(stream *st, int i) {
    job *j = st->j;
    sched_req *r = j->rs[i];
    stream_choice *c = &st->ch[i];
    job_finish finish = finish_of(r->finish);
    if (c->tcs) {
        toolcall_result tr = {0};
        const char *tail = NULL;
        size_t tail_len = 0;
        if (toolcall_stream_finish(c->tcs, &tr, &tail, &tail_len)) {
            bool cut = r->finish == FINISH_LENGTH; /* a call cut by max_tokens is not a call */
            if (cut) tail_len = toolcall_before_cut(tail, tail_len);
            emit_text(st, JOB_EV_TEXT, i, tail, tail_len, (lp_span){0, 0});
            if (!cut && tr.parsed && tr.n_calls > 0) {
                for (int k = 0; k < tr.n_calls; k++) {
                    char id[64];
                    api_make_id(j->api, "call_", id, sizeof id);
                    emit(st, (job_event){.kind = JOB_EV_TOOL_CALL,
                                         .choice = i,
                                         .call_id = id,
                                         .call_name = tr.calls[k].name,
                                         .call_args = tr.calls[k].arguments,
                                         .call_index = k});
                }
                finish = JOB_TOOL_CALLS;
            } else if (r->finish == FINISH_TOOL_CALLS) {
                finish = JOB_STOP;
            }
        }
        toolcall_result_free(&tr);
    }
    emit(st, (job_event){.kind = JOB_EV_FINISH, .choice = i, .finish = finish});
}

/* The prompt first (completions with echo), with its logprobs once it is read; false: not yet. */
static bool stream_echo(stream *st, int i) {
    job *j = st->j;
    sched_req *r = j->rs[i];
    stream_choice *c = &st->ch[i];
    if (!j->echo || c->echoed) return true;
    if (r->prompt_logprobs && r->n_prompt_lp < r->n_prompt && r->finish == FINISH_NONE) return false;
    c->echoed = true;
    if (j->n_echo[i] || r->prompt_logprobs)
        emit(st, (job_event){.kind = JOB_EV_TEXT, .choice = i, .text = j->echo[i], .n = j->n_echo[i], .echo = true});
    return true;
}

/* Turns new output of one choice into events (lock held). */
static void stream_pump_choice(stream *st, int i) {
    job *j = st->j;
    sched_req *r = j->rs[i];
    stream_choice *c = &st->ch[i];
    if (c->finished) return;
    if (!c->started) {
        c->started = true;
        emit(st, (job_event){.kind = JOB_EV_START, .choice = i});
    }
    if (!stream_echo(st, i)) return;
    lp_span lp = {c->sent_lp, c->sent_lp};
    if (j->o.logprobs && r->n_logprobs_out > c->sent_lp) lp.to = c->sent_lp = r->n_logprobs_out;
    if (j->chat && r->n_reasoning > c->sent_reasoning) { /* the thinking, as its own deltas */
        size_t from = c->sent_reasoning;
        c->sent_reasoning = r->n_reasoning;
        emit_text(st, JOB_EV_REASONING, i, r->reasoning + from, r->n_reasoning - from, lp);
        lp.to = lp.from;
    }
    if (r->n_released > c->sent_text) {
        const char *p = r->text + c->sent_text;
        size_t n = r->n_released - c->sent_text;
        c->sent_text = r->n_released;
        if (c->tcs) {
            size_t safe = 0;
            const char *s = toolcall_stream_feed(c->tcs, p, n, &safe);
            emit_text(st, JOB_EV_TEXT, i, s ? s : "", safe, lp);
        } else {
            emit_text(st, JOB_EV_TEXT, i, p, n, lp);
        }
        lp.to = lp.from;
    }
    emit_text(st, JOB_EV_TEXT, i, "", 0, lp);
    if (r->finish == FINISH_NONE || r->finish == FINISH_ERROR) return;
    c->finished = true;
    st->n_finished++;
    stream_finish_choice(st, i);
}

/* Turns new output of the job into events (lock held). */
static void stream_pump(stream *st) {
    job *j = st->j;
    if (st->finished) return;
    const sched_req *bad = job_failed(j);
    if (bad) { /* one failed choice fails the request */
        http_err e;
        job_error(bad, &e);
        emit(st, (job_event){.kind = JOB_EV_ERROR, .err = &e});
    } else {
        for (int i = 0; i < j->n_rs; i++) stream_pump_choice(st, i);
        if (st->n_finished < j->n_rs) return;
        job_usage u = usage_of(j);
        if (j->o.include_usage) emit(st, (job_event){.kind = JOB_EV_USAGE, .usage = &u});
    }
    st->finished = true;
    emit(st, (job_event){.kind = JOB_EV_END});
}

/* ---- running a job: a plain answer, or a stream ---------------------------------------------- */

static ssize_t stream_read(void *cls, char *buf, size_t max, http_log *log) {
    stream *st = cls;
    serve_api *api = st->j->api;
    while (st->off_out == st->n_out) {
        if (st->done_sent) return HTTP_STREAM_END;
        st->n_out = st->off_out = 0;
        sched_lock(api->sched);
        for (;;) {
            double t0 = lfm2c_now_s();
            stream_pump(st);
            sched_add_render_time(api->sched, lfm2c_now_s() - t0);
            if (st->n_out > 0) break;
            if (http_fd_gone(st->fd)) {
                sched_unlock(api->sched);
                return HTTP_STREAM_ERROR;
            }
            if (!st->probed && http_fd_eof(st->fd)) { /* closed or half-closed: a write tells */
                st->probed = true;
                bool sse = strstr(st->j->dl->stream_type, "event-stream");
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

/* ---- a whole answer ------------------------------------------------------------------------------ */

/* A finished job's answer and what it points into (the parsed tool calls). */
typedef struct final_answer {
    job_final f;
    toolcall_result *tr; /* [n] */
} final_answer;

/* The tool calls of a parsed answer, each with a fresh id. */
static int final_calls(serve_api *api, const toolcall_result *tr, job_choice *c) {
    if (!(c->calls = calloc((size_t)tr->n_calls, sizeof *c->calls))) return -1;
    for (int k = 0; k < tr->n_calls; k++) {
        api_make_id(api, "call_", c->calls[k].id, sizeof c->calls[k].id);
        c->calls[k].name = tr->calls[k].name;
        c->calls[k].args = tr->calls[k].arguments;
    }
    c->n_calls = tr->n_calls;
    return 0;
}

/* Choice i of a finished job: a chat answer's calls parsed out of its text (lock held). */
static int final_choice(job *j, int i, job_choice *c, toolcall_result *tr) {
    sched_req *r = j->rs[i];
    c->finish = finish_of(r->finish);
    if ((c->logprobs = j->o.logprobs)) {
        c->lp = r->logprobs;
        c->n_lp = r->n_logprobs_out;
    }
    c->text = r->text ? r->text : "";
    c->n = r->n_text;
    if (!j->chat) return 0;
    if (r->n_reasoning) {
        c->reasoning = r->reasoning;
        c->n_reasoning = r->n_reasoning;
    }
    if (j->tools && r->finish == FINISH_LENGTH) c->n = toolcall_before_cut(r->text, c->n);
    if (j->tools && r->finish != FINISH_LENGTH && toolcall_parse(c->text, c->n, tr) && tr->parsed && tr->n_calls > 0) {
        c->text = tr->content_len ? tr->content : NULL;
        c->n = tr->content_len;
        c->finish = JOB_TOOL_CALLS;
        return final_calls(j->api, tr, c);
    }
    if (r->finish == FINISH_TOOL_CALLS) c->finish = JOB_STOP;
    return 0;
}

static void final_free(final_answer *a) {
    for (int i = 0; a->f.ch && i < a->f.n; i++) free(a->f.ch[i].calls);
    for (int i = 0; a->tr && i < a->f.n; i++) toolcall_result_free(&a->tr[i]);
    free(a->f.ch);
    free(a->tr);
}

/* The answer of a finished job (lock held); -1: out of memory. */
static int final_of(job *j, final_answer *a) {
    memset(a, 0, sizeof *a);
    a->f.job = j;
    a->f.usage = usage_of(j);
    a->f.ch = calloc((size_t)j->n_rs, sizeof *a->f.ch);
    a->tr = calloc((size_t)j->n_rs, sizeof *a->tr);
    if (!a->f.ch || !a->tr) {
        final_free(a);
        return -1;
    }
    a->f.n = j->n_rs;
    for (int i = 0; i < j->n_rs; i++)
        if (final_choice(j, i, &a->f.ch[i], &a->tr[i])) {
            final_free(a);
            return -1;
        }
    return 0;
}

/* The job's answer in its API's shape, or its failure in the API's error shape (lock held). */
static json_t *final_json(job *j, int *status) {
    http_err e;
    const sched_req *bad = job_failed(j);
    if (bad) {
        job_error(bad, &e);
        *status = e.status;
        return dl_err_json(j->dl, &e);
    }
    *status = 200;
    final_answer a;
    if (final_of(j, &a)) return NULL;
    dl_server v = api_view(j->api, j->owner);
    job_run run = run_of(j);
    json_t *out = j->dl->final(&v, j->dls, &a.f, &run);
    final_free(&a);
    return out;
}


/* Runs a generation job: answers 503 when the queue is full, else waits or streams. */
static int run_job(serve_api *api, http_req *q, job *j) {
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
        if (!ch) {
            free(st);
            job_free(j);
            http_set_err(&e, 500, NULL, NULL, "out of memory");
            return http_send_err(q, &e);
        }
        st->j = j;
        st->ch = ch;
        st->fd = fd;
        for (int i = 0; j->tools && i < j->n_rs; i++) st->ch[i].tcs = toolcall_stream_new();
        return http_send_stream(q, j->dl->stream_type, stream_read, stream_free, st);
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
    int status;
    json_t *out = final_json(j, &status);
    sched_unlock(api->sched);
    job_free(j);
    if (status == 200 && json_is_string(out)) { /* a text answer (a transcript as text, srt, vtt) */
        char *t = strndup(json_string_value(out), json_string_length(out));
        const size_t n = json_string_length(out);
        json_decref(out);
        if (!t) return -1;
        return http_send_text(q, 200, "text/plain; charset=utf-8", t, n, NULL);
    }
    return http_send_json(q, status, out);
}

/* What the job will hold while it runs: prompts and their images' rows, biases, stop strings,
 * echoes, and its output at most (text and logprobs of max_tokens tokens). */
static size_t job_bytes(const serve_api *api, const job *j) {
    size_t n = sizeof *j;
    const size_t row = sizeof(float) * (size_t)lfm2c_model_get_info(api->model)->n_embd;
    for (int i = 0; i < j->n_rs; i++) {
        const sched_req *r = j->rs[i];
        size_t out = (size_t)(r->max_tokens > 0 ? r->max_tokens : 0);
        n += sizeof *r + (size_t)r->n_prompt * sizeof(int32_t) + out * 16;
        for (int k = 0; r->rows && k < r->n_prompt; k++) n += r->prompt[k] < 0 ? row : 0;
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
    for (int i = 0; i < j->n_rs; i++)
        if (j->rs[i]) j->rs[i]->fork_of = NULL;
    job_free(j);
}

static int job_handle_audio_ex(serve_api *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls,
                               json_t **own, double t_load, job_audio *pre);

int job_handle(serve_api *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls, json_t **own) {
    return job_handle_timed(api, q, body, chat, dl, dls, own, 0);
}

int job_handle_timed(serve_api *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls, json_t **own,
                     double t_load) {
    return job_handle_audio_ex(api, q, body, chat, dl, dls, own, t_load, NULL);
}

int job_handle_audio(serve_api *api, http_req *q, json_t *body, const dialect *dl, void **dls, json_t **own,
                     double t_load, job_audio *pre) {
    return job_handle_audio_ex(api, q, body, true, dl, dls, own, t_load, pre);
}

static int job_handle_audio_ex(serve_api *api, http_req *q, json_t *body, bool chat, const dialect *dl, void **dls,
                               json_t **own, double t_load, job_audio *pre) {
    http_err e;
    job *j = job_new(api);
    if (!j) {
        if (pre) job_audio_free(pre);
        models_release(api);
        http_set_err(&e, 500, NULL, NULL, "out of memory");
        return http_send_err(q, &e);
    }
    j->audio = pre;
    j->chat = chat;
    j->created = time(NULL);
    j->t_load = t_load;
    j->dl = dl;
    j->dls = dls ? *dls : NULL;
    if (dls) *dls = NULL;
    api_make_id(api, chat ? "chatcmpl-" : "cmpl-", j->id, sizeof j->id);
    http_key_digest(q, j->owner, sizeof j->owner);
    j->q = q;
    int built = job_build(api, body, j, chat, &e);
    if (pre) job_audio_free(pre); /* their rows are the request's now (or it failed) */
    j->q = NULL, j->audio = NULL; /* the job may outlive the request */
    if (built) {
        job_free(j);
        return http_send_err(q, &e);
    }
    /* the job holds what generation needs: the parse trees go before the wait (a dialect's state
     * may keep parts of its request, echoed in the answer: its charge stays too) */
    if (own) {
        json_decref(*own);
        *own = NULL;
    }
    size_t hold = job_bytes(api, j) + (dl->request ? http_charged(q) : 0), peak = answer_logprob_bytes(j, false);
    if (hold + peak > http_memory_budget(q)) { /* its answer could never be built within the budget */
        http_set_err(
            &e, 413, "request_too_large", NULL,
            "the answer would take about %zu MiB to build (limit %zu MiB, --max-request-memory): ask for fewer "
            "choices, tokens or top_logprobs, or stream it",
            (hold + peak) >> 20, http_memory_budget(q) >> 20);
        job_unsubmitted_free(j);
        return http_send_err(q, &e);
    }
    if (!http_hold(q, hold, &e)) {
        job_unsubmitted_free(j);
        return http_send_err(q, &e);
    }
    return run_job(api, q, j);
}

/* ---- other APIs (api_dialect.h): translated into chat requests ------------------------------ */

/* POST /v1/messages/count_tokens: the prompt the chat request would render, counted. */
static int count_tokens(serve_api *api, http_req *q, json_t *chat) {
    http_err e;
    job *j = job_new(api);
    if (!j) {
        models_release(api);
        http_set_err(&e, 500, NULL, NULL, "out of memory");
        return http_send_err(q, &e);
    }
    j->chat = true;
    j->q = q;
    int rc = job_build_chat(api, chat, j, &e), n = j->rs[0]->n_prompt;
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
    http_set_err(&e, status,
                 status == 404   ? "not_found"
                 : status == 413 ? "request_too_large"
                 : status == 503 ? "server_overloaded"
                 : status >= 500 ? NULL
                                 : "invalid_value",
                 de->param[0] ? de->param : NULL, "%s", de->msg);
    return http_send_err(q, &e);
}

/* What a dialect's route may read of the server, for the API key request q sent (its digest is
 * written to owner), with the model it holds (NULL: none). */
static dl_server route_view(http_req *q, serve_api *api, char owner[DL_OWNER_LEN]) {
    http_key_digest(q, owner, DL_OWNER_LEN);
    dl_server v = api ? api_view(api, owner) : shared_view(http_app(q), owner);
    v.q = q; /* what the request expands to is charged to it */
    return v;
}

/* The "model" a body names (NULL: none, or not a string: the route's own error). */
static const char *body_model(json_t *body) { return json_string_value(json_object_get(body, "model")); }

/* An empty request of an API that unloads with it (Ollama's, keep_alive 0): the model unloaded
 * (not loaded for it) and the request answered (*rc); false when the request is not one. */
static bool dialect_unload(http_req *q, const dialect *dl, json_t *body, double keep_alive, int *rc) {
    serve_shared *sh = http_app(q);
    json_t *answer = keep_alive == 0 && dl->unload_answer ? dl->unload_answer(body) : NULL;
    if (!answer) return false;
    if (sh->models && models_unload(sh->models, body_model(body)) == 0) {
        *rc = http_send_json(q, 200, answer);
        return true;
    }
    json_decref(answer);
    http_err e;
    api_model_404(sh, dl, body_model(body), &e);
    *rc = http_send_err(q, &e);
    return true;
}

int api_route_dialect(http_req *q, json_t *body) {
    http_err me;
    if (req_model_name(body, &me)) return http_send_err(q, &me); /* before any API reads or echoes it */
    const dialect *dl = http_arg(q);
    dl_err de = {0};
    double keep_alive = NAN;
    if (dl->keep_alive && dl->keep_alive(body, &keep_alive, &de)) return send_dl_err(q, &de);
    int rc;
    if (dialect_unload(q, dl, body, keep_alive, &rc)) return rc;
    double t_load = 0;
    serve_api *api = api_hold_timed(http_app(q), body_model(body), keep_alive, dl, &t_load, &me);
    if (!api) return http_send_err(q, &me);
    char owner[DL_OWNER_LEN];
    dl_server v = route_view(q, api, owner);
    v.t_load = t_load;
    bool legacy = false;
    void *dls = NULL;
    json_t *chat = dl->request(&v, body, &dls, &legacy, &de);
    const char *id = body_model(body);
    if (chat && id && api_lora_index(api, id) >= 0)
        json_object_set_new(chat, "model", json_string(id)); /* the adapter it names */
    json_t *ts = json_object_get(body, "test_script");
    if (chat && ts && api->p.test_script)
        json_object_set(chat, "test_script", ts); /* tests: the output, in every API */
    if (chat) {
        int r = job_handle_timed(api, q, chat, !legacy, dl, &dls, &chat, t_load);
        json_decref(chat);
        if (dls) dl->free_state(dls); /* no job took it */
        return r;
    }
    models_release(api); /* nothing to run (a load asked for: its keep-alive starts now) */
    if (dls) dl->free_state(dls);
    if (de.status == 200 && de.answer) return http_send_json(q, 200, de.answer);
    return send_dl_err(q, &de);
}

int api_route_count(http_req *q, json_t *body) {
    http_err me;
    if (req_model_name(body, &me)) return http_send_err(q, &me); /* before any API reads or echoes it */
    const dl_hook *h = http_arg(q);
    serve_api *api = api_hold(http_app(q), body_model(body), NAN, h->dl, &me);
    if (!api) return http_send_err(q, &me);
    char owner[DL_OWNER_LEN];
    dl_server v = route_view(q, api, owner);
    dl_err de = {0};
    json_t *chat = h->fn(&v, body, &de);
    if (!chat) {
        models_release(api);
        return send_dl_err(q, &de);
    }
    int r = count_tokens(api, q, chat);
    json_decref(chat);
    return r;
}

int api_route_answer(http_req *q, json_t *body) {
    http_err me;
    if (req_model_name(body, &me)) return http_send_err(q, &me); /* before any API reads or echoes it */
    const dl_hook *h = http_arg(q);
    char owner[DL_OWNER_LEN];
    dl_server v = route_view(q, NULL, owner);
    dl_err de = {0};
    json_t *o = h->route ? h->route(&v, q, &de) : h->fn(&v, body, &de);
    if (o) return http_send_json(q, 200, o);
    if (!de.status) return -1; /* out of memory: no answer */
    return send_dl_err(q, &de);
}

/* ---- models ------------------------------------------------------------------------------------ */

void api_model_404(serve_shared *sh, const dialect *dl, const char *name, http_err *e) {
    char ids[200] = "";
    model_row *rows = NULL;
    int n = sh->models ? models_list(sh->models, false, &rows) : 0;
    size_t o = 0;
    for (int i = 0; i < n && i < 3 && o < sizeof ids - 1; i++)
        o += (size_t)snprintf(ids + o, sizeof ids - o, "%s'%.50s'", i ? ", " : "", rows[i].id);
    if (n > 3 && o < sizeof ids - 1) snprintf(ids + o, sizeof ids - o, " and %d more", n - 3);
    free(rows);
    char what[SERVER_MAX_MODEL_NAME + 1], own[300];
    dl_copy_text(what, sizeof what, name ? name : "");
    if (dl && dl->model_404) /* the API's own words first (clients may match them), then the help */
        snprintf(own, sizeof own, dl->model_404, what);
    else snprintf(own, sizeof own, "The model '%.120s' does not exist or you do not have access to it", what);
    const char *list = dl && dl->model_list ? dl->model_list : "/v1/models";
    http_set_err(e, 404, "model_not_found", "model",
                 "%s (this server has %s%s%s; start it with --alias NAME to answer to another name, or "
                 "--accept-any-model to answer any)",
                 own, n ? ids : "no model", n ? ": GET " : "", n ? list : "");
}

serve_api *api_hold(serve_shared *sh, const char *name, double keep_alive, const dialect *dl, http_err *e) {
    double t_load;
    return api_hold_timed(sh, name, keep_alive, dl, &t_load, e);
}

serve_api *api_hold_timed(serve_shared *sh, const char *name, double keep_alive, const dialect *dl, double *t_load,
                          http_err *e) {
    const double t0 = lfm2c_now_s();
    *t_load = 0;
    if (!sh->models) {
        http_set_err(e, 503, "server_overloaded", NULL, "no model is served yet");
        return NULL;
    }
    int lora, status = 0;
    char msg[400];
    serve_api *api = models_acquire(sh->models, name, keep_alive, &lora, &status, msg, sizeof msg);
    if (!api && status == 404 && sh->p.any_model && name && *name) /* a fixed name the server does not have */
        api = models_acquire(sh->models, NULL, keep_alive, &lora, &status, msg, sizeof msg);
    *t_load = lfm2c_now_s() - t0 > 0.001 ? lfm2c_now_s() - t0 : 0; /* loaded already: a lock's time */
    if (api) return api;
    if (status == 404) api_model_404(sh, dl, name, e);
    else if (status == 500) http_set_err(e, 500, "model_load_failed", "model", "%s", msg);
    else http_set_err(e, status ? status : 500, "server_overloaded", NULL, "%s", msg[0] ? msg : "no model");
    return NULL;
}

/* ---- life cycle --------------------------------------------------------------------------------- */

int serve_shared_init(serve_shared *sh, const server_params *p) {
    memset(sh, 0, sizeof *sh);
    sh->p = *p;
    sh->started = time(NULL);
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->pull_cv, NULL);
    http_gate_init(&sh->aux, SERVER_AUX_PARALLEL);
    sh->responses = resp_store_new(SERVER_RESPONSES_KEPT, SERVER_RESPONSES_BYTES);
    return 0;
}

int serve_shared_jobs(serve_shared *sh) {
    pthread_mutex_lock(&sh->mu);
    int n = sh->jobs;
    pthread_mutex_unlock(&sh->mu);
    return n;
}

void serve_shared_stop_pulls(serve_shared *sh) {
    pthread_mutex_lock(&sh->mu);
    sh->stopping = true;
    for (int i = 0; i < sh->n_pulls; i++) *sh->pulls[i] = 1;
    for (int i = 0; i < 50 && sh->n_pulls; i++) { /* a cancelled transfer ends within its progress tick */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&sh->pull_cv, &sh->mu, &ts);
    }
    pthread_mutex_unlock(&sh->mu);
}

void serve_shared_free(serve_shared *sh) {
    pthread_cond_destroy(&sh->pull_cv);
    resp_store_free(sh->responses);
    http_gate_destroy(&sh->aux);
    pthread_mutex_destroy(&sh->mu);
}

void serve_api_set(serve_api *api, serve_shared *sh, lfm2c_model *model, sched *s, int n_ctx) {
    api->sh = sh;
    api->model = model;
    api->sched = s;
    api->p = sh->p;
    api->p.n_ctx = n_ctx;
    api->n_ctx = n_ctx;
    api->n_vocab = model ? lfm2c_vocab_size(model) : 0;
}

int serve_api_init(serve_api *api, lfm2c_model *model, sched *s, const server_params *p) {
    memset(api, 0, sizeof *api);
    serve_shared *sh = malloc(sizeof *sh);
    if (!sh) return -1;
    serve_shared_init(sh, p);
    serve_api_set(api, sh, model, s, p->n_ctx);
    dl_copy_text(api->alias, sizeof api->alias, p->alias && *p->alias ? p->alias : "lfm2c");
    snprintf(api->model_file, sizeof api->model_file, "%s", p->model_file ? p->model_file : "");
    return 0;
}

void serve_api_free(serve_api *api) {
    if (!api->sh) return;
    serve_shared_free(api->sh);
    free(api->sh);
    api->sh = NULL;
}
