/* api_audio.c — OpenAI's speech-to-text routes (api_audio.h): POST /v1/audio/transcriptions and
 * /v1/audio/translations (and without /v1). The body is a multipart/form-data form (the transport
 * read it within --max-body and charged it, http.c's HTTP_MULTIPART; multipart.c cuts it in place):
 * `file` (the audio), `model`, `prompt`, `response_format` (json, text, srt, vtt, verbose_json),
 * `temperature` (default 0: greedy), `language`, `include[]` (logprobs), `timestamp_granularities[]`
 * (segment), `stream` (transcriptions). The file is probed, charged and encoded on the request's
 * thread (job_audio.c) and becomes a chat request as LFM2-Audio's model card runs ASR, and as
 * llama.cpp's server builds it for LFM2: the system prompt "Perform ASR.", the user's turn the
 * request's prompt (if any) then the clip. LFM2-Audio hears English only (its model card), so a
 * translation is that same transcript, and `language` is reported, not put in the prompt. The
 * answer is rendered by this file's dialect: {"text", "usage"} (json); the text alone (text); one
 * cue spanning the clip (srt, vtt) or one segment spanning it (verbose_json), since the model gives
 * text without timings: the segment's start is 0, its end the clip's length, its avg_logprob the
 * mean of the sampled tokens' log-probabilities, its compression_ratio (1) and no_speech_prob (0)
 * placeholders the schema requires (the model has neither measure). A stream is OpenAI's SSE
 * events, data lines only: transcript.text.delta per piece of text, then transcript.text.done with
 * the whole text and the usage. */
#include "serve/api_audio.h"
#include "serve/job.h"
#include "serve/models.h"
#include "serve/multipart.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FMT_JSON, FMT_TEXT, FMT_SRT, FMT_VTT, FMT_VERBOSE };
enum { FIELD_MAX = 65536 }; /* bytes of a text field (the prompt) */

/* What one request asked for, and what its answer reports. */
typedef struct tr_state {
    int format;
    bool translate, logprobs;
    char language[40];
    double seconds, temperature;
    dl_buf text; /* a stream's text so far (transcript.text.done repeats it) */
    bool failed;
} tr_state;

static const char *format_name(int f) {
    static const char *names[] = {"json", "text", "srt", "vtt", "verbose_json"};
    return names[f];
}

/* ---- the answer ----------------------------------------------------------------------------------- */

/* Seconds as a cue time: hh:mm:ss,mmm (srt) or hh:mm:ss.mmm (vtt). */
static void cue_time(double s, char sep, char *out, size_t cap) {
    long long ms = (long long)llround(s * 1000);
    snprintf(out, cap, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, sep, ms % 1000);
}

/* The usage of a transcript: the prompt's text and audio tokens, the output's. */
static json_t *usage_tokens(const job_run *run) {
    int audio = 0;
    for (int i = 0; i < run->n_prompt; i++) audio += run->prompt[i] < 0;
    return json_pack("{s:s,s:i,s:{s:i,s:i},s:i,s:i}", "type", "tokens", "input_tokens", run->n_prompt,
                     "input_token_details", "text_tokens", run->n_prompt - audio, "audio_tokens", audio,
                     "output_tokens", run->n_generated, "total_tokens", run->n_prompt + run->n_generated);
}

/* The one segment of a verbose answer: the clip's span, the tokens, their mean log-probability. */
static json_t *segment_json(const tr_state *st, const job_choice *c, const char *text, size_t n) {
    json_t *toks = json_array();
    double sum = 0;
    for (int i = 0; i < c->n_lp; i++) {
        json_array_append_new(toks, json_integer(c->lp[i].token));
        sum += c->lp[i].logprob;
    }
    return json_pack("{s:i,s:i,s:f,s:f,s:s%,s:o,s:f,s:f,s:f,s:f}", "id", 0, "seek", 0, "start", 0.0, "end", st->seconds,
                     "text", text, n, "tokens", toks, "temperature", st->temperature, "avg_logprob",
                     c->n_lp ? sum / c->n_lp : 0.0, "compression_ratio", 1.0, "no_speech_prob", 0.0);
}

static json_t *tr_final(const dl_server *s, void *state, const job_final *f, const job_run *run) {
    (void)s;
    tr_state *st = state;
    const job_choice *c = &f->ch[0];
    const char *text = c->text ? c->text : "";
    const size_t n = c->text ? c->n : 0;
    char a[32], b[32], *cue = NULL;
    switch (st->format) {
    case FMT_TEXT: return json_stringn(text, n);
    case FMT_SRT:
    case FMT_VTT:
        cue_time(0, st->format == FMT_SRT ? ',' : '.', a, sizeof a);
        cue_time(st->seconds, st->format == FMT_SRT ? ',' : '.', b, sizeof b);
        if (asprintf(&cue, "%s%s --> %s\n%.*s\n\n", st->format == FMT_SRT ? "1\n" : "WEBVTT\n\n", a, b, (int)n, text) <
            0)
            return NULL;
        json_t *o = json_string(cue);
        free(cue);
        return o;
    case FMT_VERBOSE: {
        json_t *o =
            json_pack("{s:s,s:s,s:f,s:s%,s:[o],s:{s:s,s:f}}", "task", st->translate ? "translate" : "transcribe",
                      "language", st->language, "duration", st->seconds, "text", text, n, "segments",
                      segment_json(st, c, text, n), "usage", "type", "duration", "seconds", st->seconds);
        if (o && st->translate) json_object_del(o, "usage");
        return o;
    }
    default: break;
    }
    json_t *o = json_pack("{s:s%}", "text", text, n);
    if (o && st->logprobs) json_object_set_new(o, "logprobs", dl_logprobs_json(s->model, c->lp, c->n_lp));
    if (o && !st->translate) json_object_set_new(o, "usage", usage_tokens(run));
    return o;
}

static void tr_event(const dl_server *s, void *state, const job_event *ev, dl_write w, void *wctx) {
    tr_state *st = state;
    if (ev->kind == JOB_EV_TEXT && (ev->n || ev->lp)) {
        json_t *o = json_pack("{s:s,s:s%}", "type", "transcript.text.delta", "delta", ev->text, ev->n);
        if (o && ev->lp && st->logprobs)
            json_object_set_new(o, "logprobs", dl_logprobs_json(s->model, ev->lp, ev->n_lp));
        dl_buf_add(&st->text, ev->text, ev->n);
        dl_sse(w, wctx, NULL, o);
    } else if (ev->kind == JOB_EV_ERROR) {
        st->failed = true;
        dl_sse(w, wctx, NULL, http_err_json(ev->err));
    } else if (ev->kind == JOB_EV_END && !st->failed) {
        dl_sse(w, wctx, NULL,
               json_pack("{s:s,s:s%,s:o}", "type", "transcript.text.done", "text", st->text.p ? st->text.p : "",
                         st->text.n, "usage", usage_tokens(ev->run)));
    }
}

static void tr_free(void *state) {
    tr_state *st = state;
    if (st) free(st->text.p);
    free(st);
}

static const dialect dialect_transcription = {
    .name = "audio", .stream_type = "text/event-stream", .final = tr_final, .event = tr_event, .free_state = tr_free};

/* ---- the form ----------------------------------------------------------------------------------- */

/* A text field of the form (the last of that name), NUL-terminated into a new string: NULL when
 * absent; *bad (with e) when it is not valid UTF-8 or longer than max. */
static char *field(const mp_form *f, const char *name, size_t max, bool *bad, http_err *e) {
    const mp_part *p = NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->part[i].name, name)) p = &f->part[i];
    if (!p || *bad) return NULL;
    if (p->n > max || (p->n && !dl_text_ok((const char *)p->data, p->n))) {
        *bad = true;
        http_set_err(e, 400, "invalid_value", name, "'%s' must be text (UTF-8) of at most %zu bytes", name, max);
        return NULL;
    }
    char *s = strndup((const char *)p->data, p->n);
    if (!s) *bad = true, http_set_err(e, 500, NULL, NULL, "out of memory");
    return s;
}

/* Does any field of the array `name` (name, name[], name[N]) hold `value`? *any: one is there. */
static bool array_has(const mp_form *f, const char *name, const char *value, bool *any) {
    const size_t k = strlen(name);
    bool has = false;
    for (int i = 0; i < f->n; i++) {
        const char *pn = f->part[i].name;
        if (strncmp(pn, name, k) || (pn[k] && pn[k] != '[')) continue;
        *any = true;
        has |= f->part[i].n == strlen(value) && !memcmp(f->part[i].data, value, f->part[i].n);
    }
    return has;
}

/* The options of the form into st and body (the chat request's sampling fields): -1 with e set. */
static int read_options(const mp_form *f, tr_state *st, json_t *body, http_err *e) {
    bool bad = false, any = false;
    char *fmt = field(f, "response_format", 32, &bad, e), *temp = field(f, "temperature", 32, &bad, e);
    char *stream = field(f, "stream", 8, &bad, e), *lang = field(f, "language", 32, &bad, e);
    char *maxt = field(f, "max_tokens", 16, &bad, e);
    int rc = bad ? -1 : 0;
    static const char *fmts[] = {"json", "text", "srt", "vtt", "verbose_json"};
    st->format = fmt ? -1 : FMT_JSON;
    for (int i = 0; fmt && i < 5; i++)
        if (!strcmp(fmt, fmts[i])) st->format = i;
    char *end = NULL;
    st->temperature = temp ? strtod(temp, &end) : 0;
    const bool streamed = stream && !strcmp(stream, "true");
    long long mt = maxt ? strtoll(maxt, &end, 10) : 0;
    if (!rc && st->format < 0)
        rc = http_set_err(e, 400, "invalid_value", "response_format",
                          "'response_format' must be json, text, srt, vtt or verbose_json%s",
                          fmt && !strcmp(fmt, "diarized_json") ? " (LFM2-Audio tells no speakers apart)" : "");
    else if (!rc && temp && (*end || !(st->temperature >= 0 && st->temperature <= 2)))
        rc = http_set_err(e, 400, "invalid_value", "temperature", "'temperature' must be a number from 0 to 2");
    else if (!rc && stream && strcmp(stream, "true") && strcmp(stream, "false"))
        rc = http_set_err(e, 400, "invalid_value", "stream", "'stream' must be true or false");
    else if (!rc && streamed && st->translate)
        rc = http_set_err(e, 400, "invalid_value", "stream",
                          "translations are not streamed (OpenAI's API has no stream "
                          "for them)");
    else if (!rc && streamed && st->format != FMT_JSON && st->format != FMT_TEXT)
        rc = http_set_err(e, 400, "invalid_value", "stream",
                          "a stream is transcript.text.delta events: response_format json or text, not %s",
                          format_name(st->format));
    else if (!rc && maxt && (!end || *end || mt < 1 || mt > 1 << 30))
        rc = http_set_err(e, 400, "invalid_value", "max_tokens", "'max_tokens' must be a positive integer");
    else if (!rc && array_has(f, "timestamp_granularities", "word", &any))
        rc = http_set_err(e, 400, "invalid_value", "timestamp_granularities",
                          "word timestamps are not available: LFM2-Audio gives text without timings (segment: one "
                          "segment spanning the clip)");
    st->logprobs = array_has(f, "include", "logprobs", &any);
    if (!rc && (mp_find(f, "known_speaker_names[]") || mp_find(f, "known_speaker_references[]")))
        rc = http_set_err(e, 400, "invalid_value", "known_speaker_names",
                          "LFM2-Audio tells no speakers apart (known_speaker_names / references)");
    snprintf(st->language, sizeof st->language, "%s", st->translate || !lang || !*lang ? "english" : lang);
    if (!rc) {
        json_object_set_new(body, "temperature", json_real(st->temperature));
        json_object_set_new(body, "stream", json_boolean(streamed));
        if (maxt) json_object_set_new(body, "max_tokens", json_integer(mt));
        if (st->logprobs || st->format == FMT_VERBOSE) json_object_set_new(body, "logprobs", json_true());
    }
    free(fmt), free(temp), free(stream), free(lang), free(maxt);
    return rc;
}

/* The chat request of a transcription: the model card's ASR prompt, the request's prompt text
 * before the clip, the clip (an input_audio part without data: the clip the route encoded). */
static int add_messages(const mp_form *f, json_t *body, http_err *e) {
    bool bad = false;
    char *prompt = field(f, "prompt", FIELD_MAX, &bad, e);
    if (bad) return -1;
    json_t *user = json_array();
    if (prompt && *prompt) json_array_append_new(user, json_pack("{s:s,s:s}", "type", "text", "text", prompt));
    json_array_append_new(user, json_pack("{s:s,s:{}}", "type", "input_audio", "input_audio"));
    json_object_set_new(body, "messages",
                        json_pack("[{s:s,s:s},{s:s,s:o}]", "role", "system", "content", "Perform ASR.", "role", "user",
                                  "content", user));
    free(prompt);
    return 0;
}

/* ---- the route ----------------------------------------------------------------------------------- */

/* The form of the request (into *f, malloc'd) and its file part: -1 with e set. */
static int read_form(http_req *q, mp_form **f, const mp_part **file, http_err *e) {
    char b[MP_MAX_BOUNDARY + 1], msg[200] = "";
    size_t n = 0;
    const uint8_t *body = http_body(q, &n);
    if (!(*f = malloc(sizeof **f))) return http_set_err(e, 500, NULL, NULL, "out of memory");
    if (mp_boundary(http_header(q, "Content-Type"), b, sizeof b, msg, sizeof msg) ||
        mp_parse(body, n, b, *f, msg, sizeof msg))
        return http_set_err(e, 400, "invalid_multipart", NULL, "the form is malformed: %s", msg[0] ? msg : "no body");
    *file = mp_find(*f, "file");
    if (!*file)
        return http_set_err(e, 400, "invalid_value", "file",
                            "the form has no 'file' part: the audio (WAV, FLAC, MP3, Ogg Vorbis / Opus)");
    if (!(*file)->n) return http_set_err(e, 400, "invalid_value", "file", "the 'file' part is empty");
    return 0;
}

/* The model the form names (absent: the default), held; NULL with e set. */
static serve_api *hold_model(http_req *q, const mp_form *f, json_t *body, double *t_load, http_err *e) {
    bool bad = false;
    char *model = field(f, "model", SERVER_MAX_MODEL_NAME + 1, &bad, e);
    if (bad) return NULL;
    if (model) json_object_set_new(body, "model", json_string(model));
    serve_api *api = req_model_name(body, e) ? NULL : api_hold_timed(http_app(q), model, NAN, NULL, t_load, e);
    if (api && model && api_lora_index(api, model) < 0) json_object_del(body, "model"); /* not an adapter's name */
    free(model);
    return api;
}

/* The request read and its clip encoded (api held, ja holding the clip): -1 with e set. */
static int prepare(http_req *q, tr_state *st, json_t *body, serve_api **api, job_audio *ja, double *t_load,
                   http_err *e) {
    mp_form *f = NULL;
    const mp_part *file = NULL;
    int rc = read_form(q, &f, &file, e) || read_options(f, st, body, e) || add_messages(f, body, e) ? -1 : 0;
    if (!rc && !(*api = hold_model(q, f, body, t_load, e))) rc = -1;
    if (!rc) rc = job_audio_bytes(*api, file->data, file->n, false, ja, "file", e);
    free(f);
    return rc;
}

static int route_audio(http_req *q, json_t *unused) {
    (void)unused;
    http_err e;
    tr_state *st = calloc(1, sizeof *st);
    json_t *body = json_object();
    double t_load = 0;
    serve_api *api = NULL;
    job_audio ja = {.q = q, .pre = true};
    if (!st || !body) http_set_err(&e, 500, NULL, NULL, "out of memory");
    else if (st->translate = http_arg(q) != NULL, !prepare(q, st, body, &api, &ja, &t_load, &e)) {
        st->seconds = ja.seconds;
        http_body_free(q); /* the form is read: nothing cut from the body is used past here */
        void *dls = st;
        const int rc = job_handle_audio(api, q, body, &dialect_transcription, &dls, &body, t_load, &ja);
        json_decref(body);
        tr_free(dls); /* no job took it */
        return rc;
    }
    job_audio_free(&ja);
    if (api) models_release(api);
    tr_free(st);
    json_decref(body);
    return http_send_err(q, &e);
}

static const char TRANSLATE[] = "translate";

const http_route audio_routes[] = {
    {HTTP_POST, "/v1/audio/transcriptions", route_audio, HTTP_MULTIPART, NULL},
    {HTTP_POST, "/audio/transcriptions", route_audio, HTTP_MULTIPART, NULL},
    {HTTP_POST, "/v1/audio/translations", route_audio, HTTP_MULTIPART, TRANSLATE},
    {HTTP_POST, "/audio/translations", route_audio, HTTP_MULTIPART, TRANSLATE},
};
const int audio_n_routes = sizeof audio_routes / sizeof *audio_routes;
