/* fuzz_http.c — the HTTP request → JSON → scheduler-input path of `lfm2c serve`: one real server
 * (the fixture model, 2 slots, a 128-token context so any generation is short, an API key, CORS
 * for one origin, /metrics) on 127.0.0.1, and each input sent as the body of a POST to a route
 * chosen by its first byte (OpenAI's chat, completions, tokenizer and embeddings routes, the
 * Responses, Anthropic and Ollama routes, Ollama's embeddings, /api/pull (refused: --no-pull));
 * the model served through the registry (serve/models.h), as `lfm2c serve -m`; the answer is read whole. The
 * server must answer every input (4xx for bad ones) and never crash. A second server serves the
 * vision fixture (the tiny LFM2-VL model and its mmproj, -mm) with a request memory budget of
 * 128 MiB: the last routes post to its chat routes of each API, whose seeds carry images (data URLs
 * of small JPEG / PNG / WebP / GIF files, an EXIF-turned one, a header that claims 60000 x 60000,
 * a cut one, bad base64) in each API's image shape: decoded, charged, cut and encoded, or refused. A third
 * serves the tiny LFM2-Audio model and its audio mmproj (written by synth at start, into a temporary
 * folder) with the same budget: the routes after the vision ones post forms (multipart/form-data,
 * boundary XYZ) to its transcription and translation routes, and JSON with input_audio parts (and
 * the Responses API's input_file) to its chat routes: clips probed, charged, decoded and encoded,
 * or refused (seeds aud-*). An input whose first byte
 * is 0xFF is instead sent raw, as the whole request stream (request line, headers, a chunked or
 * sized body), and the connection half-closed after it: the transport's own paths (methods, GET
 * routes, the key, preflight, framing checks, chunked uploads, a body's Content-Type), to that
 * server and then to a second one without a key (--allowed-hosts my.box,.lan): its Host and
 * Origin checks read the client's headers. Such a stream may be cut short, so the server may
 * close without an answer, but it must close within the wait and never answer 5xx (but 503, and
 * 505 for an HTTP version the server does not speak). */
#include "fuzz_common.h"
#include "serve/models.h"
#include "serve/scheduler.h"
#include "serve/server.h"
#include "convert/quantize.h"
#include "convert/synth.h"
#include "formats/ggml_types.h"

#include <math.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>

static int port;

#define ANSWER_WAIT_S 25.0 /* below libFuzzer's -timeout=30 */
#define RAW 0xFF           /* first byte of an input sent as the whole request stream */
#define API_KEY "fuzz-key"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int send_all(int fd, const uint8_t *p, size_t n) {
    for (size_t off = 0; off < n;) {
        ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    return 0;
}
static serve_models *models;
static int port_open; /* a second server, without a key: the Host and Origin checks (raw streams) */
static int vl_port;   /* the vision fixture's server: images */
static int au_port;   /* the audio model's server: clips, forms */

static char audio_lm[300], audio_mm[300];

/* The audio model's files and folder, removed at exit. */
static void remove_audio(void) {
    unlink(audio_lm);
    unlink(audio_mm);
    char *slash = strrchr(audio_mm, '/');
    if (slash) *slash = 0, rmdir(audio_mm);
}

/* The tiny LFM2-Audio model and its audio mmproj (Q8_0), written into a new temporary folder. */
static void synth_audio(char *lm, char *mm, size_t cap) {
    char dir[] = "/tmp/fuzz_http_audio.XXXXXX";
    if (!mkdtemp(dir)) abort();
    snprintf(lm, cap, "%s/lm.gguf", dir);
    snprintf(mm, cap, "%s/mm.gguf", dir);
    synth_config c;
    synth_audio_config ac;
    lfm2c_error err = {0};
    synth_params sp = {.seed = 1, .n_threads = 1};
    synth_report rep;
    if (!synth_audio_preset("lfm2-audio-tiny", &c, &ac) || !synth_audio_mmproj_write(&ac, GGML_Q8_0, 1, mm, &err) ||
        !synth_write(&c, quant_ftype_find("f32"), &sp, lm, &rep, &err)) {
        fprintf(stderr, "fuzz_http: synth of the audio model: %s\n", err.msg);
        abort();
    }
}

/* A server on 127.0.0.1 of one model (path, its mmproj or NULL) through the registry, with a
 * request memory budget (0: the default) and a key (NULL: none): its port; aborts on failure. */
static int start_one(const char *path, const char *alias, const char *mmproj, int n_ctx, size_t budget,
                     const char *api_key, serve_models **out) {
    lfm2c_error err = {0};
    server_params p = {.host = "127.0.0.1",
                       .port = 0,
                       .alias = alias,
                       .n_ctx = n_ctx,
                       .max_body = 1 << 20,
                       .max_request_memory = budget,
                       .api_key = api_key,
                       .cors_origin = "http://a.example",
                       .allowed_hosts = "my.box,.lan",
                       .no_pull = true,
                       .metrics = true};
    server *srv = server_start(&p, &err);
    /* a short context keeps every generation short (a request without max_tokens runs to the end
     * of the context): a slow unit on a loaded machine must not pass for a server that hangs */
    models_params mp = {.mp = lfm2c_model_default_params(),
                        .sp = {.n_slots = 2, .n_ctx = n_ctx, .queue_max = 16, .prefill_chunk = 128},
                        .mmproj_path = mmproj,
                        .keep_alive = -1,
                        .wait_s = 5};
    mp.mp.n_threads = 1;
    serve_models *m = srv ? models_new(&mp, server_shared(srv)) : NULL;
    int lora, status;
    char msg[400] = "";
    serve_api *api = m && !models_add_file(m, path, alias, &err)
                         ? models_acquire(m, NULL, NAN, &lora, &status, msg, sizeof msg)
                         : NULL;
    if (!api) {
        fprintf(stderr, "fuzz_http: %s: %s%s\n", alias, err.msg, msg);
        abort();
    }
    models_release(api);
    server_set_models(srv, m);
    server_ready(srv);
    *out = m;
    return server_port(srv);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    serve_models *open_models, *vl_models;
    port = start_one(fuzz_fixture(), "fuzz", NULL, 128, 0, API_KEY, &models);
    port_open = start_one(fuzz_fixture(), "fuzz", NULL, 128, 0, NULL, &open_models);
    vl_port = start_one(fuzz_data("vision/lfm2-vl-tiny-f32.gguf"), "vl", fuzz_data("vision/mmproj-tiny-f32.gguf"), 512,
                        (size_t)128 << 20, API_KEY, &vl_models);
    synth_audio(audio_lm, audio_mm, sizeof audio_lm);
    atexit(remove_audio);
    serve_models *au_models;
    au_port = start_one(audio_lm, "au", audio_mm, 512, (size_t)128 << 20, API_KEY, &au_models);
    return 0; /* the servers live as long as the process */
}

/* One exchange with the server at port p: the input sent (raw: as the whole stream), the answer
 * read and judged; aborts on a hang or a server error. */
static void exchange(int p, bool raw, const char *route, const uint8_t *body, size_t n, const char *ctype) {
    /* libFuzzer's -timeout is a periodic SIGALRM: every call below retries on EINTR (a recv cut
     * by the alarm once passed for "no answer"), and the wait has its own deadline */
    double deadline = now_s() + ANSWER_WAIT_S;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int rc;
    while ((rc = connect(fd, (struct sockaddr *)&a, sizeof a)) != 0 && errno == EINTR) {}
    if (rc != 0 && errno != EISCONN) abort();
    if (raw) {
        send_all(fd, body, n); /* the server may answer (400) and close before reading it all */
        shutdown(fd, SHUT_WR); /* the stream ends here */
    } else {
        char head[256];
        int h = snprintf(head, sizeof head,
                         "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " API_KEY
                         "\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                         route, ctype, n);
        if (send_all(fd, (const uint8_t *)head, (size_t)h) != 0) abort();
        send_all(fd, body, n); /* the server may answer (413, 4xx) before reading it all */
    }
    char buf[8192], head_buf[1024] = {0}, status[4] = {0};
    size_t got = 0;
    int why = 0;
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) {
            why = ETIMEDOUT;
            break;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) {
            why = pr ? errno : ETIMEDOUT;
            if (pr) continue;
            break;
        }
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            why = r ? errno : 0;
            break;
        }
        if (got < sizeof head_buf - 1)
            memcpy(head_buf + got, buf, (size_t)r < sizeof head_buf - 1 - got ? (size_t)r : sizeof head_buf - 1 - got);
        got += (size_t)r;
    }
    close(fd);
    if (got >= 12) memcpy(status, head_buf + 9, 3);
    if (raw ? why == ETIMEDOUT : !got) { /* every request gets an answer; a raw stream is closed in time */
        sched_stats st;
        models_stats(models, &st);
        fprintf(stderr,
                "fuzz_http: %s from %s (%s after %.1f s; scheduler: %d of %d slots active, %d queued, "
                "%llu steps, %llu tokens generated)\n",
                got ? "connection left open" : "no answer", route, why ? strerror(why) : "closed",
                ANSWER_WAIT_S - (deadline - now_s()), st.active_slots, st.n_slots, st.queue_depth,
                (unsigned long long)st.steps, (unsigned long long)st.generated_tokens);
        if (getenv("LFM2C_FUZZ_HANG_WAIT")) { /* keep the process for a debugger */
            fprintf(stderr, "fuzz_http: pid %d waits %s s\n", (int)getpid(), getenv("LFM2C_FUZZ_HANG_WAIT"));
            sleep((unsigned)atoi(getenv("LFM2C_FUZZ_HANG_WAIT")));
        }
        abort();
    }
    if (status[0] == '5' && strcmp(status, "503") && !(raw && !strcmp(status, "505"))) { /* never a server error */
        fprintf(stderr, "fuzz_http: %s answered:\n%s\n", route, head_buf);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *routes[] = {
        "/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize",
        /* the other APIs (api_dialect.h) */
        "/v1/responses", "/v1/messages", "/v1/messages/count_tokens", "/api/chat", "/api/generate", "/api/show",
        /* embeddings (api_embeddings.c); new routes go last: a seed's first byte keeps its route */
        "/v1/embeddings", "/embeddings", "/api/embed", "/api/embeddings",
        /* the models' management (api_models.c): a pull is refused before anything is fetched */
        "/api/pull",
        /* from here on: the vision server (images), each API's chat route */
        "/v1/chat/completions", "/v1/responses", "/v1/messages", "/api/chat", "/api/generate",
        /* the audio server: forms to the speech routes, then input_audio / input_file to chat */
        "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/chat/completions", "/v1/responses"};
    enum { FIRST_VL = 15, FIRST_AU = 20, FIRST_AU_JSON = 22 };
    bool raw = size && data[0] == RAW;
    const int which = size ? data[0] % (int)(sizeof routes / sizeof *routes) : 0;
    const char *route = raw ? "(raw)" : routes[which];
    const uint8_t *body = size ? data + 1 : data;
    size_t n = size ? size - 1 : 0;
    const int to = raw ? port : which >= FIRST_AU ? au_port : which >= FIRST_VL ? vl_port : port;
    const bool form = !raw && which >= FIRST_AU && which < FIRST_AU_JSON;
    exchange(to, raw, route, body, n, form ? "multipart/form-data; boundary=XYZ" : "application/json");
    if (raw) exchange(port_open, raw, route, body, n, NULL); /* the same stream to the server without a key */
    return 0;
}
