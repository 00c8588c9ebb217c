/* job_image.c — images in a chat request (job.h, "images"): an OpenAI `image_url` content part
 * (every other API's image is translated into one: Responses' input_image, Anthropic's base64
 * image block, Ollama's images) decoded from its data URL, limited (the bytes: 413; the
 * pixels, read from the header: 400), encoded with the model's mmproj (lfm2c_image_encode) and
 * kept in the request's order; the rendered prompt's placeholders then become the images'
 * tokens and rows (lfm2c_prompt_images) in the scheduler's request. A model without an mmproj
 * answers an image with a 400 naming it; http(s) URLs are refused unless --allow-image-urls,
 * then fetched on the request's thread, bounded (hub/fetch_url.c: public addresses only, unless
 * --allow-private-image-urls), before the scheduler sees it; a fetch that fails is one generic
 * 400, its cause in the server's log. Every image is charged to the request's memory budget
 * (--max-request-memory, http.c): its bytes, then each stage of its decode and encode before the
 * stage allocates (the decode's share from the header, before a pixel is decoded:
 * lfm2c_image_encode_budget), then its rows while the request holds them: past the whole budget
 * a 413, while other requests hold it a 503. */
#include "serve/job.h"
#include "hub/hub.h"
#include "base/os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

uint8_t *job_b64_decode(const char *s, size_t n, size_t *out_n) {
    uint8_t *out = malloc(n / 4 * 3 + 3);
    if (!out) return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '=' || c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        const int v = b64_val(c);
        if (v < 0) return free(out), NULL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_n = o;
    return out;
}

/* An http(s) image URL's bytes, fetched on the request's thread within the data URLs' byte limit
 * (--allow-image-urls; the addresses --allow-private-image-urls allows): NULL after http_set_err.
 * Every failed fetch answers the same 400 (500: out of memory): what the server reached, what
 * answered and with what, and which ports are open stay in the server's log. */
static uint8_t *fetch_bytes(const serve_api *api, const char *url, size_t max_bytes, size_t *n, http_err *e) {
    const int t = api->p.image_url_timeout > 0 ? api->p.image_url_timeout : 20;
    const lfm2c_url_bounds bd = {.max_bytes = max_bytes,
                                 .connect_s = t < 5 ? t : 5,
                                 .timeout_s = t,
                                 .max_redirects = 3,
                                 .allow_private = api->p.allow_private_image_urls};
    lfm2c_error err = {0};
    uint8_t *d = lfm2c_hub_fetch_url(url, &bd, n, &err);
    if (d) return d;
    if (api->p.log) {
        char line[sizeof err.msg + 40];
        snprintf(line, sizeof line, "image URL not fetched: %s", err.msg);
        api->p.log(api->p.log_user, line);
    }
    if (err.code == LFM2C_ENOMEM) http_set_err(e, 500, NULL, "messages", "out of memory");
    else http_set_err(e, 400, "invalid_value", "messages", "the image URL could not be fetched");
    return NULL;
}

/* The bytes of an image URL (a data URL with base64; http(s) with --allow-image-urls); NULL
 * after http_set_err. */
static uint8_t *url_bytes(const serve_api *api, const char *url, size_t len, size_t max_bytes, size_t *n, http_err *e) {
    if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8)) {
        if (api->p.allow_image_urls) return fetch_bytes(api, url, max_bytes, n, e);
        return http_set_err(e, 400, "invalid_value", "messages",
                            "image URLs are not fetched (serve --allow-image-urls): send the image inline as a "
                            "data URL (data:image/png;base64,...)"),
               NULL;
    }
    const char *comma = memchr(url, ',', len);
    if (strncmp(url, "data:", 5) || !comma || comma - url < 12 || memcmp(comma - 7, ";base64", 7))
        return http_set_err(e, 400, "invalid_value", "messages",
                            "an image must be a base64 data URL (data:...;base64,...)"),
               NULL;
    const size_t b64 = len - (size_t)(comma + 1 - url);
    if (b64 / 4 * 3 > max_bytes + 3)
        return http_set_err(e, 413, "invalid_value", "messages", "an image of about %zu bytes is over the limit (%zu)",
                            b64 / 4 * 3, max_bytes),
               NULL;
    uint8_t *d = job_b64_decode(comma + 1, b64, n);
    if (!d) http_set_err(e, 400, "invalid_value", "messages", "the image's base64 data is not valid");
    return d;
}

/* The request's budget as an encode's (lfm2c_image_budget): a refusal keeps http_charge's 413 /
 * 503 in e, worded for the image. */
typedef struct img_budget {
    job_images *ji;
    http_err *e;
    int index;
    bool refused;
} img_budget;

static int img_charge(void *user, size_t bytes) {
    img_budget *b = user;
    if (http_charge(b->ji->q, bytes, b->e)) {
        b->ji->charged += bytes;
        return 0;
    }
    b->refused = true;
    const size_t max = http_memory_budget(b->ji->q) >> 20;
    if (b->e->status == 413)
        http_set_err(b->e, 413, "request_too_large", "messages",
                     "image %d would take about %zu MiB of memory to decode and encode, beside the request's %zu MiB "
                     "(the server's request memory is %zu MiB, --max-request-memory)",
                     b->index, (bytes + (1u << 20) - 1) >> 20, http_charged(b->ji->q) >> 20, max);
    return -1;
}

static void img_release(void *user, size_t bytes) {
    img_budget *b = user;
    if (bytes > b->ji->charged) bytes = b->ji->charged;
    b->ji->charged -= bytes;
    http_release(b->ji->q, bytes);
}

/* Charges `bytes` the images will hold to the request (none without one): false with e set. */
static bool ji_charge(job_images *ji, size_t bytes, http_err *e) {
    if (!ji->q) return true;
    if (!http_charge(ji->q, bytes, e)) return false;
    ji->charged += bytes;
    return true;
}

static void ji_release(job_images *ji, size_t bytes) {
    if (!ji->q) return;
    if (bytes > ji->charged) bytes = ji->charged;
    ji->charged -= bytes;
    http_release(ji->q, bytes);
}

static size_t row_bytes(const serve_api *api) {
    return sizeof(float) * (size_t)lfm2c_model_get_info(api->model)->n_embd;
}

/* What an encoded image holds: its rows and tokens. */
static size_t image_bytes(const serve_api *api, const lfm2c_image *img) {
    int rows = 0, toks = 0;
    lfm2c_image_rows(img, &rows);
    lfm2c_image_tokens(img, &toks);
    return (size_t)rows * row_bytes(api) + (size_t)toks * sizeof(int32_t) + 256;
}

/* The image's bytes d[0..n) encoded within the request's budget: NULL with e set. */
static lfm2c_image *encode(serve_api *api, job_images *ji, const uint8_t *d, size_t n, http_err *e) {
    const lfm2c_image_limits lim = lfm2c_image_default_limits();
    img_budget b = {ji, e, ji->n + 1, false};
    /* the positions left (one at least for the text): an image that cannot fit is refused from its
     * header, before it is decoded */
    const int left = api->n_ctx - ji->rows - 1;
    if (left < 1)
        return http_set_err(e, 400, "context_length_exceeded", "messages",
                            "image %d: no positions are left for it (this model's context is %d tokens)", ji->n + 1,
                            api->n_ctx),
               NULL;
    const lfm2c_image_budget bud = {ji->q ? img_charge : NULL, ji->q ? img_release : NULL, &b, left};
    lfm2c_error err = {0};
    lfm2c_image *img = lfm2c_image_encode_budget(api->mm, d, n, &lim, &bud, &err);
    if (!img && err.code == LFM2C_ECONTEXT)
        http_set_err(e, 400, "context_length_exceeded", "messages", "image %d: %s (this model's context is %d tokens)",
                     ji->n + 1, err.msg, api->n_ctx);
    else if (!img && !b.refused)
        http_set_err(e,
                     err.code == LFM2C_ENOMEM                           ? 500
                     : err.code == LFM2C_ETOOLARGE && n > lim.max_bytes ? 413
                                                                        : 400,
                     "invalid_value", "messages", "image %d: %s", ji->n + 1, err.msg);
    if (img && !ji_charge(ji, image_bytes(api, img), e)) lfm2c_image_free(img), img = NULL;
    return img;
}

/* Do the bytes start as an audio file does (WAV, FLAC, Ogg, MP3 with an ID3 tag or a frame)? */
static bool is_audio(const uint8_t *d, size_t n) {
    return (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WAVE", 4)) || (n >= 4 && !memcmp(d, "fLaC", 4)) ||
           (n >= 4 && !memcmp(d, "OggS", 4)) || (n >= 3 && !memcmp(d, "ID3", 3)) ||
           (n >= 2 && d[0] == 0xFF && (d[1] & 0xE0) == 0xE0);
}

/* Audio where an image goes (an Ollama client's images, an Anthropic image block): a 400 saying
 * where audio goes. */
static int audio_refused(int k, http_err *e) {
    return http_set_err(e, 400, "invalid_value", "messages",
                        "image %d is an audio file: images take no audio (send it as an input_audio part to "
                        "/v1/chat/completions, or to /v1/audio/transcriptions; Anthropic's and Ollama's APIs have no "
                        "audio input)",
                        k);
}

/* Is url a base64 data URL whose first bytes are an audio file's? */
static bool data_url_audio(const char *url) {
    const char *comma = strncmp(url, "data:", 5) ? NULL : strchr(url, ',');
    if (!comma) return false;
    size_t n = strnlen(comma + 1, 32) / 4 * 4, got = 0;
    char head[33];
    memcpy(head, comma + 1, n);
    uint8_t *d = job_b64_decode(head, n, &got);
    const bool audio = d && is_audio(d, got);
    free(d);
    return audio;
}

int job_image_part(serve_api *api, json_t *part, job_images *ji, http_err *e) {
    json_t *iu = json_object_get(part, "image_url");
    const char *url = json_string_value(json_is_object(iu) ? json_object_get(iu, "url") : iu);
    if (!url) return http_set_err(e, 400, "invalid_value", "messages", "an image_url part needs image_url.url");
    if (!api->mm && data_url_audio(url)) return audio_refused(ji->n + 1, e);
    if (!api->mm && api->amm)
        return http_set_err(e, 400, "invalid_value", "messages",
                            "model '%s' takes no images: its mmproj is an audio encoder (LFM2-Audio); send audio as "
                            "input_audio parts",
                            api->alias);
    if (!api->mm)
        return http_set_err(e, 400, "invalid_value", "messages",
                            "model '%s' takes no images: it was loaded without an mmproj (serve --mmproj FILE, "
                            "the vision tower of an LFM2-VL model)",
                            api->alias);
    if (ji->n == SERVER_MAX_IMAGES)
        return http_set_err(e, 400, "invalid_value", "messages", "at most %d images per request", SERVER_MAX_IMAGES);
    size_t n = 0;
    uint8_t *d = url_bytes(api, url, strlen(url), lfm2c_image_default_limits().max_bytes, &n, e);
    if (!d) return -1;
    if (is_audio(d, n)) return free(d), audio_refused(ji->n + 1, e);
    if (!ji_charge(ji, n, e)) return free(d), -1; /* the file's bytes, while it is decoded */
    ji->img[ji->n] = encode(api, ji, d, n, e);
    free(d);
    ji_release(ji, n);
    if (!ji->img[ji->n]) return -1;
    int rows = 0;
    lfm2c_image_rows(ji->img[ji->n++], &rows);
    ji->rows += rows; /* the rows held are bounded by the context they must fit in */
    if (ji->rows >= api->n_ctx)
        return http_set_err(e, 400, "context_length_exceeded", "messages",
                            "the images take %d positions; this model's context is %d tokens", ji->rows, api->n_ctx);
    return 0;
}

int job_images_apply(serve_api *api, job_images *ji, sched_req *r, http_err *e) {
    if (!ji->n) return 0;
    int32_t *out = NULL;
    int n_out = 0;
    float *rows = NULL;
    lfm2c_error err = {0};
    if (!ji_charge(ji, (size_t)ji->rows * row_bytes(api), e)) return -1; /* the copy */
    if (lfm2c_prompt_images(api->model, r->prompt, r->n_prompt, ji->img, ji->n, &out, &n_out, &rows, &err))
        return http_set_err(e, 400, "invalid_value", "messages", "%s (the chat template placed them)", err.msg);
    free(r->prompt);
    r->prompt = out;
    r->n_prompt = n_out;
    r->rows = rows;
    return 0;
}

void job_images_free(job_images *ji) {
    for (int k = 0; k < ji->n; k++) lfm2c_image_free(ji->img[k]);
    ji->n = 0;
    ji_release(ji, ji->charged);
}
