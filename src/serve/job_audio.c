/* job_audio.c — audio in a chat request (job.h, "audio"): an OpenAI `input_audio` content part
 * (base64 data, or a data URL; the Responses API's input_file with an audio data URL is
 * translated into one, api_responses.c) or a file the transcription routes took from a form
 * (api_audio.c), encoded with the model's audio mmproj (LFM2-Audio's Conformer, lfm2c_audio_*)
 * on the request's thread, one encode at a time per mmproj (the library's lock). Every clip is
 * charged to the request's memory budget (--max-request-memory, http.c) BEFORE a sample is
 * decoded, from its header (lfm2c_audio_probe: the decoded samples, the 16 kHz copy, the
 * features, the encoder's activations and the rows): past the whole budget a 413, while other
 * requests hold it a 503; then the clip's rows while the request holds them. A clip whose tokens
 * cannot fit in the context left is refused from its header too. The rendered prompt is split at
 * each marker (LFM2C_AUDIO_MARKER, which request text cannot place: lfm2c_guard_text) and the
 * clips' rows stand there (lfm2c_prompt_audio), in the scheduler's request as images' rows are.
 * A model without an audio mmproj answers audio with a 400 naming what is missing. */
#include "serve/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/os.h"

int job_audio_refused(const serve_api *api, const char *param, http_err *e) {
    if (api->mm)
        return http_set_err(e, 400, "invalid_value", param,
                            "model '%s' cannot hear: its mmproj is a vision tower (images); audio needs an LFM2-Audio "
                            "model served with its audio mmproj (serve -m MODEL -mm AUDIO_MMPROJ.gguf)",
                            api->alias);
    return http_set_err(e, 400, "invalid_value", param,
                        "model '%s' cannot hear: it was loaded without an audio mmproj (serve -m MODEL -mm "
                        "AUDIO_MMPROJ.gguf, the audio encoder of an LFM2-Audio model)",
                        api->alias);
}

static bool ja_charge(job_audio *ja, size_t bytes, http_err *e) {
    if (!ja->q) return true;
    if (!http_charge(ja->q, bytes, e)) return false;
    ja->charged += bytes;
    return true;
}

static void ja_release(job_audio *ja, size_t bytes) {
    if (!ja->q) return;
    if (bytes > ja->charged) bytes = ja->charged;
    ja->charged -= bytes;
    http_release(ja->q, bytes);
}

static size_t row_bytes(const serve_api *api) {
    return sizeof(float) * (size_t)lfm2c_model_get_info(api->model)->n_embd;
}

/* The probe's refusal as the request's error (k: the clip's number). */
static int probe_refused(const lfm2c_error *err, size_t n, int k, const char *param, http_err *e) {
    const lfm2c_audio_limits lim = lfm2c_audio_default_limits();
    const int status = err->code == LFM2C_ETOOLARGE && n > lim.max_bytes ? 413 : 400;
    return http_set_err(e, status, status == 413 ? "request_too_large" : "invalid_value", param, "audio %d: %s", k,
                        err->msg);
}

/* Charges the decode and encode of a clip (facts: its probe) before it starts: false with e set. */
static bool charge_encode(job_audio *ja, const lfm2c_audio_facts *f, int k, const char *param, http_err *e) {
    if (ja_charge(ja, f->bytes, e)) return true;
    if (e->status == 413) {
        const size_t max = http_memory_budget(ja->q) >> 20;
        http_set_err(e, 413, "request_too_large", param,
                     "audio %d (%.1f s, %d Hz, %d channels) would take about %zu MiB of memory to decode and encode, "
                     "beside the request's %zu MiB (the server's request memory is %zu MiB, --max-request-memory)",
                     k, f->seconds, f->rate, f->channels, (f->bytes + (1u << 20) - 1) >> 20,
                     (http_charged(ja->q) >> 20), max);
    }
    return false;
}

int job_audio_bytes(serve_api *api, const uint8_t *d, size_t n, bool charge_bytes, job_audio *ja, const char *param,
                    http_err *e) {
    const int k = ja->n + 1;
    if (!api->amm) return job_audio_refused(api, param, e);
    if (ja->n == SERVER_MAX_AUDIO)
        return http_set_err(e, 400, "invalid_value", param, "at most %d audio clips per request", SERVER_MAX_AUDIO);
    const lfm2c_audio_limits lim = lfm2c_audio_default_limits();
    lfm2c_audio_facts f;
    lfm2c_error err = {0};
    if (lfm2c_audio_probe(api->amm, d, n, &lim, &f, &err)) return probe_refused(&err, n, k, param, e);
    const int left = api->n_ctx - ja->rows - 1; /* one position at least for the text */
    if (f.n_tokens > left)
        return http_set_err(e, 400, "context_length_exceeded", param,
                            "audio %d (%.1f s) takes %d positions, more than the %d left in this model's context of %d "
                            "tokens",
                            k, f.seconds, f.n_tokens, left < 0 ? 0 : left, api->n_ctx);
    if (charge_bytes && !ja_charge(ja, n, e)) return -1; /* the file, while it is decoded */
    if (!charge_encode(ja, &f, k, param, e)) {
        if (charge_bytes) ja_release(ja, n);
        return -1;
    }
    lfm2c_audio *a = lfm2c_audio_encode(api->amm, d, n, &lim, NULL, NULL, &err);
    ja_release(ja, f.bytes + (charge_bytes ? n : 0));
    if (!a)
        return http_set_err(e, err.code == LFM2C_ENOMEM ? 500 : 400, "invalid_value", param, "audio %d: %s", k,
                            err.msg);
    int rows = 0, toks = 0;
    lfm2c_audio_rows(a, &rows);
    lfm2c_audio_tokens(a, &toks);
    if (!ja_charge(ja, (size_t)rows * row_bytes(api) + (size_t)toks * sizeof(int32_t) + 256, e)) {
        lfm2c_audio_free(a);
        return -1;
    }
    ja->clip[ja->n++] = a;
    ja->rows += rows;
    ja->seconds += lfm2c_audio_seconds(a);
    return 0;
}

/* The bytes of an input_audio part's data: plain base64, or a data URL (data:audio/...;base64,). */
static uint8_t *part_bytes(const char *data, size_t len, size_t *n, http_err *e) {
    if (!strncmp(data, "data:", 5)) {
        const char *comma = memchr(data, ',', len);
        if (!comma || comma - data < 12 || memcmp(comma - 7, ";base64", 7))
            return http_set_err(e, 400, "invalid_value", "messages",
                                "input_audio.data must be base64, or a base64 data URL (data:audio/wav;base64,...)"),
                   NULL;
        len -= (size_t)(comma + 1 - data);
        data = comma + 1;
    }
    const size_t max = lfm2c_audio_default_limits().max_bytes;
    if (len / 4 * 3 > max + 3)
        return http_set_err(e, 413, "request_too_large", "messages",
                            "an audio clip of about %zu bytes is over the limit (%zu)", len / 4 * 3, max),
               NULL;
    uint8_t *d = job_b64_decode(data, len, n);
    if (!d) http_set_err(e, 400, "invalid_value", "messages", "input_audio.data is not valid base64");
    return d;
}

int job_audio_part(serve_api *api, json_t *part, job_audio *ja, http_err *e) {
    json_t *ia = json_object_get(part, "input_audio");
    if (!json_is_object(ia))
        return http_set_err(e, 400, "invalid_value", "messages",
                            "an input_audio part needs input_audio: {\"data\": BASE64, \"format\": \"wav\"}");
    json_t *data = json_object_get(ia, "data"), *fmt = json_object_get(ia, "format");
    if (!data && ja->pre) { /* the route's own part: the next clip it encoded */
        if (ja->taken == ja->n) return http_set_err(e, 400, "invalid_value", "messages", "no audio clip is left");
        ja->taken++;
        return 0;
    }
    if (!api->amm) return job_audio_refused(api, "messages", e);
    static const char *const formats[] = {"wav", "mp3", "flac", "ogg", "opus", "oga", "mpeg", "mpga", NULL};
    bool known = !fmt || json_is_null(fmt);
    for (int i = 0; !known && json_is_string(fmt) && formats[i]; i++)
        known = !strcasecmp(json_string_value(fmt), formats[i]);
    if (!json_is_string(data) || !known)
        return http_set_err(e, 400, "invalid_value", "messages",
                            "input_audio needs 'data' (base64) and a 'format' of wav, mp3, flac, ogg or opus (the "
                            "format is told from the bytes)");
    size_t n = 0;
    uint8_t *d = part_bytes(json_string_value(data), json_string_length(data), &n, e);
    if (!d) return -1;
    const int rc = job_audio_bytes(api, d, n, true, ja, "messages", e);
    free(d);
    return rc;
}

int job_audio_tokenize(serve_api *api, job_audio *ja, sched_req *r, const char *prompt, http_err *e) {
    if (ja->pre && ja->taken != ja->n)
        return http_set_err(e, 500, NULL, NULL, "%d of the request's %d audio clips were not placed", ja->n - ja->taken,
                            ja->n);
    if (!ja_charge(ja, (size_t)ja->rows * row_bytes(api), e)) return -1; /* the copy */
    lfm2c_error err = {0};
    int32_t *out = NULL;
    int n_out = 0;
    float *rows = NULL;
    if (lfm2c_prompt_audio(api->model, prompt, strlen(prompt), false, ja->clip, ja->n, &out, &n_out, &rows, &err))
        return http_set_err(e, err.code == LFM2C_ENOMEM ? 500 : 400, "invalid_value", "messages",
                            "%s (the chat template placed them)", err.msg);
    free(r->prompt);
    r->prompt = out;
    r->n_prompt = n_out;
    free(r->rows);
    r->rows = rows;
    return 0;
}

void job_audio_free(job_audio *ja) {
    for (int k = 0; k < ja->n; k++) lfm2c_audio_free(ja->clip[k]);
    ja->n = ja->rows = ja->taken = 0;
    ja_release(ja, ja->charged);
}
