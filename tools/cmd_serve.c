/* cmd_serve.c — `lfm2c serve`: the HTTP server of every model the user has: the files given
 * (-m, repeatable) and, with --models or no -m at all, every GGUF of the Hugging Face cache
 * (serve/models.h: loaded on demand, unloaded when idle). It listens before the first model is
 * loaded (GET /health answers, GET /ready is 503 until the first -m model is in). SIGINT/SIGTERM
 * stop it within a bounded time: with --drain-timeout it first drains (no new requests, running
 * ones finish, bounded); then requests are cancelled, open connections cut, and a watchdog ends
 * the process if that still takes more than SHUTDOWN_LIMIT_S seconds (or on a second signal). */
#include "cli.h"
#include "serve/models.h"
#include "serve/scheduler.h"
#include "serve/server.h"
#include "hub/hub.h"
#include "base/clock.h"
#include "base/os.h"
#include "base/os_net.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: lfm2c serve [-m MODEL.gguf ...] [--models] [options]\n"
    "  -m, --model FILE      a model to serve; repeatable (the first is the default of requests naming\n"
    "                        none, and is loaded at start)\n"
    "  --models              also every GGUF of the Hugging Face cache ('lfm2c list'), named ORG/NAME:QUANT\n"
    "                        (the default without -m); models pulled meanwhile are seen too\n"
    "  --keep-alive D        how long an idle model stays loaded: 5m, 1h30m, 300 (seconds), 0 (unload\n"
    "                        after each answer), -1 (never); default 5m, never with a single -m model.\n"
    "                        Ollama requests' keep_alive overrides it\n"
    "  --memory-budget B     memory the loaded models may hold (files + KV caches): bytes, 8G, 512M or\n"
    "                        50% of RAM (default 80%); past it the least recently used idle model is\n"
    "                        unloaded before another loads\n"
    "  --max-loaded N        models loaded at once (default: as many as the budget holds)\n"
    "  --load-timeout S      longest wait of a request for its model (another request's load or\n"
    "                        unload of it, room among busy models); then 503 (default 300)\n"
    "  --no-pull             refuse POST /api/pull (also --offline: the Hub is never asked)\n"
    "  --pull-max-bytes B    the most one POST /api/pull may download (8G, 512M; default: no bound)\n"
    "  --pull-min-free B     the free space a pull must leave on the cache's disk (default 1G)\n"
    "  --host ADDR           IPv4 address to bind (default 127.0.0.1: loopback only)\n"
    "  --port N              TCP port (default 8080; 0 = any free port, printed at start)\n"
    "  --ollama              default port 11434, where Ollama clients look (the OpenAI, Responses,\n"
    "                        Anthropic and Ollama APIs are served on every port)\n"
    "  -np, --parallel N     slots decoded together, per loaded model (default 4)\n"
    "  -c, --ctx-size N      context per slot (default 4096, at most the model's)\n"
    "  -t, --threads N       worker threads (default: one per physical core)\n"
    "  --queue N             requests that may wait for a slot before 503 (default 256)\n"
    "  --prefill-chunk N     prompt tokens prefilled per step, all slots together, beside the\n"
    "                        decoding slots' tokens (default 512; 2048 with --device cuda)\n"
    "  --step-tokens N       tokens a step's forward takes at most: the decoding slots' first,\n"
    "                        prompt chunks in the rest (default 0, none: the CPU's way; 2048 with\n"
    "                        --device cuda)\n"
    "  --api-key KEY         require 'Authorization: Bearer KEY'\n"
    "  --api-key-file F      the same, key read from the first line of F\n"
    "  --alias NAME          the first model's id in /v1/models and answers (at most 256 bytes; the\n"
    "                        file name also works); a request naming no model served gets a 404\n"
    "                        worded as its API words it\n"
    "  --accept-any-model    a request naming a model not served runs on the first (clients with a fixed name)\n"
    "  --lora [MODEL:]NAME=PATH[:S]  a LoRA adapter (PEFT folder or GGUF; scale S, default 1) of the\n"
    "                        first model, or of MODEL: requests naming NAME or MODEL:NAME run with it;\n"
    "                        listed by /v1/models and /api/tags; repeatable (up to 64)\n"
    "  --metrics             serve Prometheus metrics at GET /metrics\n"
    "  --chat-template-file F  Jinja chat template instead of the model's\n"
    "  --reasoning-format F  split (default): a thinking model's <think> block goes to each API's\n"
    "                        reasoning field (reasoning_content, reasoning items, thinking\n"
    "                        blocks, Ollama's thinking); none: the raw text is the answer\n"
    "  --pooling last|mean   how /v1/embeddings and /api/embed make one vector of a text: the last\n"
    "                        token's hidden state (default) or the mean of all\n"
    "  --reasoning-budget N  tokens of thinking before </think> is forced (default -1: no limit;\n"
    "                        0: close the block at once); requests may ask for less\n"
    "  --test-script         for tests only: a request's 'test_script' text is its output\n"
    "  --max-body BYTES      largest request body, and /detokenize's text (default 8 MiB)\n"
    "  --max-request-memory BYTES  memory all requests in progress may hold: bodies, their\n"
    "                        parse, waiting jobs, unwritten answers (default 512 MiB); more: 503\n"
    "  --cors-origin O       allow browser calls from origin O ('*' or a comma-separated list;\n"
    "                        default: no CORS headers). OPTIONS preflights never need the key;\n"
    "                        without a key, POSTs and DELETEs from other pages' origins are 403\n"
    "  --allowed-hosts LIST  without a key, Host names answered besides localhost, 127.0.0.1, [::1]\n"
    "                        and --host's address (comma-separated; .example.com: its names; '*':\n"
    "                        any); others are 403 (DNS rebinding)\n"
    "  --timeout S           longest silence while a request is answered (default 600)\n"
    "  --idle-timeout S      a connection waiting for its headers or body, or idle between\n"
    "                        requests, is closed after S seconds (default 15)\n"
    "  --max-connections N   open connections in all (default 1024); at the limit the oldest\n"
    "                        connection not being answered is closed to make room\n"
    "  --max-connections-per-ip N  open connections of one address (default 0: no limit)\n"
    "  --max-pending-per-ip N  connections of one address not being answered (headers, body\n"
    "                        or keep-alive idle); more close the oldest (default 64, 0: none)\n"
    "  --max-tokenize-bytes N  largest /tokenize content (default 1 MiB)\n"
    "  --max-detokenize-tokens N  most ids in one /detokenize (default 262144)\n"
    "  --max-messages N      chat messages per request (default 4096)\n"
    "  --max-stop-bytes N    bytes of one stop string (default 1024; at most 4 strings)\n"
    "  --drain-timeout S     on SIGTERM, first drain: /ready and new requests get 503, running\n"
    "                        requests finish for up to S seconds (default 0: cancel at once)\n"
    "  --ready-queue-max N   GET /ready is 503 while N requests wait for a slot (default 0: never)\n"
    "  --allow-no-key        listen on a non-loopback address without an API key (refused otherwise)\n"
    "  --no-prefix-reuse     re-read every prompt from the start (to measure the reuse)\n"
    "  --ckpt-every N  --ckpt-max N  prefix reuse: a conv checkpoint every N positions, at most N per\n"
    "                        slot (32, 32; memory in /metrics lfm2c_checkpoint_bytes)\n"
    "  -mm, --mmproj FILE    the first model's vision tower (an LFM2-VL mmproj): images in chat\n"
    "                        requests (data URLs; --max-body bounds them). A model of the Hugging\n"
    "                        Face cache (-hf, --models, pulled) takes the mmproj*.gguf beside it\n"
    "  --no-mmproj           no mmproj but -mm's (none fetched or paired from the cache)\n"
    "  --allow-image-urls    fetch http(s) image URLs (else 400): at most 32 MiB, 3 redirects, http(s)\n"
    "                        only, public addresses only; the server fetches what clients name\n"
    "  --allow-private-image-urls NETS  image URLs may also reach these networks (10.0.5.0/24,fd00::/8,\n"
    "                        127.0.0.1: comma-separated) or 'all' (loopback, private, link-local with\n"
    "                        the cloud metadata address, ...: refused otherwise, on every redirect)\n"
    "  --image-url-timeout S one image URL's whole fetch (default 20)\n"
    "  -md FILE / -hfd REPO  speculative decoding of the first model with a draft model (same\n"
    "                        vocabulary), per slot\n"
    "  --spec-lookup [N | A..B]  speculative decoding by prompt lookup (n-gram sizes, default 3..1)\n"
    "  --draft-max N  --draft-min N  --draft-p-min P  (16, 0, 0.75; per request: speculative.n_max,\n"
    "                        speculative.n_min, speculative.p_min, n_max at most --draft-max)\n"
    "  --reference           scalar reference kernels\n"
    "  -ctk / -ctv TYPE      KV cache types f16 (default), q8_0, f32 (--cache-type-k / -v)\n"
    "  --hugepages        always copy the weights into anonymous transparent huge pages\n"
    "  --no-hugepages     always map the file (default: copy when THP is on and RAM allows)\n"
    "  --device " LFM2C_DEVICE_NAMES "  backend (cuda: a build with -DLFM2C_CUDA=ON; vulkan: where built)\n";

static void usage(FILE *out) { fputs(USAGE, out); }

/* --host: an IPv4 address (or localhost). Loopback (127.x) stays on this machine; any other
 * address exposes the server to the network: refused without an API key (unless
 * --allow-no-key), and said in a warning in every case. IPv6 and names are clear errors. */
static int check_host(const char *host, bool key, bool allow_no_key) {
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcmp(host, "localhost")) return 0;
    if (inet_pton(AF_INET, host, &a4) != 1) {
        if (inet_pton(AF_INET6, host, &a6) == 1)
            return cli_fail("--host %s: IPv6 addresses are not supported; use 127.0.0.1 (this machine only) or 0.0.0.0 "
                            "(every IPv4 interface, with --api-key)",
                            host);
        return cli_fail("--host '%s' is not an IPv4 address (127.0.0.1: this machine only; 0.0.0.0: every interface)",
                        host);
    }
    if ((ntohl(a4.s_addr) >> 24) == 127) return 0;
    if (!key && !allow_no_key)
        return cli_fail("--host %s exposes the server beyond this machine: give --api-key / --api-key-file "
                        "(or --allow-no-key if that is really meant)",
                        host);
    fprintf(stderr, "lfm2c: warning: --host %s exposes the server to other machines%s\n", host,
            key ? " (API key required)" : ", without an API key (--allow-no-key)");
    return 0;
}

#define SHUTDOWN_LIMIT_S 5

/* After the first stop signal: a second one, or SHUTDOWN_LIMIT_S seconds, end the process. */
static void *shutdown_watchdog(void *arg) {
    (void)arg;
    int sig = os_stop_wait(SHUTDOWN_LIMIT_S);
    fprintf(stderr, "lfm2c: %s, exiting now\n", sig ? "second stop signal" : "shutdown took too long");
    os_exit_now(1);
    return NULL;
}

/* Room for the connection limit: raises the soft descriptor limit, lowers the connection limit
 * when the hard limit is too small. */
static int fit_fd_limit(int max_conn) {
    const int slack = 64 + 128; /* MHD's slack + model files, pipes, ... */
    int have = os_fd_limit(max_conn + slack);
    if (have < max_conn + slack) {
        int fit = have - slack;
        fprintf(stderr, "lfm2c: the descriptor limit (%d) allows %d connections, not %d\n", have, fit < 16 ? 16 : fit,
                max_conn);
        return fit < 16 ? 16 : fit;
    }
    return max_conn;
}

static void log_line(void *user, const char *line) {
    (void)user;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", os_localtime(now, &tm));
    fprintf(stderr, "%s %s\n", ts, line);
}

/* Drain: /ready and new requests answer 503 so balancers go elsewhere; admitted requests run
 * on until none is left or timeout_s passes. False when cut short (time or a second signal). */
static bool drain(server *srv, serve_models *models, int timeout_s) {
    server_drain(srv);
    fprintf(stderr, "lfm2c: draining (up to %d s; a second signal stops at once)\n", timeout_s);
    double end = lfm2c_now_s() + timeout_s;
    while (lfm2c_now_s() < end) {
        sched_stats st;
        models_stats(models, &st); /* every loaded model's slots and queue */
        if (st.active_slots == 0 && st.queue_depth == 0) return true;
        if (os_stop_wait(0.05)) return false;
    }
    return false;
}

enum { SERVE_MAX_LORA = 64, SERVE_MAX_MODELS = 64 };

/* --lora [MODEL:]NAME=PATH[:SCALE] (PATH alone: NAME is its file name without .gguf; MODEL: the
 * model it adapts, NULL for the first) */
static int parse_lora(const char *v, char **model, char **name, char **path, float *scale) {
    const char *eq = strchr(v, '=');
    char *p = strdup(eq ? eq + 1 : v), *colon = strrchr(p, ':');
    *scale = 1;
    *model = NULL;
    if (colon && colon[1]) {
        char *end;
        double s = strtod(colon + 1, &end);
        if (!*end) {
            *scale = (float)s;
            *colon = 0;
        }
    }
    const char *base = strrchr(p, '/');
    base = base && base[1] ? base + 1 : p;
    const char *left = NULL; /* MODEL:NAME: the last ':' before the '=' */
    for (const char *c = v; eq && c < eq; c++)
        if (*c == ':') left = c;
    if (left) *model = strndup(v, (size_t)(left - v));
    const char *nm = left ? left + 1 : v;
    *name = eq ? strndup(nm, (size_t)(eq - nm))
               : strndup(base, strlen(base) > 5 && !strcmp(base + strlen(base) - 5, ".gguf") ? strlen(base) - 5
                                                                                             : strlen(base));
    *path = p;
    if (!**name || !*p || strchr(*name, ':') || strchr(*name, '/') || (*model && !**model))
        return cli_fail("--lora expects [MODEL:]NAME=PATH[:SCALE] (a NAME without ':' or '/'), got '%s'", v);
    return 0;
}

/* What serve's options set; serve_opts_init gives the defaults. */
typedef struct serve_opts {
    const char *host, *api_key, *key_file, *alias, *tmpl_file, *cors, *keep_alive_s, *budget_s, *mmproj;
    const char *allowed_hosts, *allow_private_urls, *pull_max_s, *pull_min_free_s;
    size_t pull_max, pull_min_free;
    const char *model_paths[SERVE_MAX_MODELS];
    int n_models;
    int port, n_slots, n_ctx, n_threads, queue, timeout, idle_timeout, max_conn, max_per_ip, max_pending_ip;
    int max_detok, max_messages, max_stop, drain_timeout, ready_queue_max, reasoning_format, reasoning_budget;
    int device, n_lora, prefill_chunk, step_tokens, pooling, ckpt_every, ckpt_max, max_loaded, load_timeout;
    long max_req_mem, max_body, max_tok_bytes;
    bool ollama, port_set, metrics, reference, no_reuse, allow_no_key, any_model, test_script, cache_models;
    bool no_pull, offline, no_mmproj, allow_image_urls;
    int image_url_timeout;
    double keep_alive; /* seconds; < 0 forever */
    size_t budget;
    char *lora_models[SERVE_MAX_LORA], *lora_names[SERVE_MAX_LORA], *lora_paths[SERVE_MAX_LORA];
    float lora_scales[SERVE_MAX_LORA];
    cli_spec spec;
} serve_opts;

static serve_opts serve_opts_init(void) {
    return (serve_opts){.host = "127.0.0.1",
                        .port = 8080,
                        .n_slots = 4,
                        .n_ctx = 4096,
                        .queue = 256,
                        .prefill_chunk = -1, /* by the device (serve_load) */
                        .step_tokens = -1,   /* likewise */
                        .timeout = SERVER_DEFAULT_TIMEOUT,
                        .idle_timeout = SERVER_DEFAULT_IDLE_TIMEOUT,
                        .load_timeout = 300,
                        .max_conn = SERVER_DEFAULT_MAX_CONNECTIONS,
                        .max_pending_ip = SERVER_DEFAULT_MAX_PENDING_PER_IP,
                        .max_detok = SERVER_DEFAULT_MAX_DETOKENIZE_TOKENS,
                        .max_messages = SERVER_DEFAULT_MAX_MESSAGES,
                        .max_stop = SERVER_DEFAULT_MAX_STOP_BYTES,
                        .reasoning_format = SERVER_REASONING_SPLIT,
                        .reasoning_budget = -1,
                        .device = LFM2C_DEVICE_CPU,
                        .max_body = 8L << 20,
                        .max_tok_bytes = SERVER_DEFAULT_MAX_TOKENIZE_BYTES,
                        .spec = cli_spec_init()};
}

/* The options that only store their value: one row each (the others are in serve_flag). */
enum { SO_STR, SO_INT, SO_LONG, SO_TRUE };
typedef struct serve_option {
    const char *name, *alias;
    int kind; /* SO_*: a string, an int (cli_int), a long from an int, a flag set to true */
    size_t at;
} serve_option;
#define SO(name, alias, kind, field) \
    { name, alias, kind, offsetof(serve_opts, field) }
static const serve_option SERVE_OPTIONS[] = {
    SO("--host", NULL, SO_STR, host),
    SO("-np", "--parallel", SO_INT, n_slots),
    SO("--queue", NULL, SO_INT, queue),
    SO("--prefill-chunk", NULL, SO_INT, prefill_chunk),
    SO("--step-tokens", NULL, SO_INT, step_tokens),
    SO("--api-key", NULL, SO_STR, api_key),
    SO("--api-key-file", NULL, SO_STR, key_file),
    SO("--alias", NULL, SO_STR, alias),
    SO("-mm", "--mmproj", SO_STR, mmproj),
    SO("--metrics", NULL, SO_TRUE, metrics),
    SO("--ollama", NULL, SO_TRUE, ollama),
    SO("--accept-any-model", NULL, SO_TRUE, any_model),
    SO("--models", NULL, SO_TRUE, cache_models),
    SO("--no-pull", NULL, SO_TRUE, no_pull),
    SO("--offline", NULL, SO_TRUE, offline),
    SO("--no-mmproj", NULL, SO_TRUE, no_mmproj),
    SO("--allow-image-urls", NULL, SO_TRUE, allow_image_urls),
    SO("--image-url-timeout", NULL, SO_INT, image_url_timeout),
    SO("--allow-private-image-urls", NULL, SO_STR, allow_private_urls),
    SO("--allowed-hosts", NULL, SO_STR, allowed_hosts),
    SO("--pull-max-bytes", NULL, SO_STR, pull_max_s),
    SO("--pull-min-free", NULL, SO_STR, pull_min_free_s),
    SO("--keep-alive", NULL, SO_STR, keep_alive_s),
    SO("--memory-budget", NULL, SO_STR, budget_s),
    SO("--max-loaded", NULL, SO_INT, max_loaded),
    SO("--load-timeout", NULL, SO_INT, load_timeout),
    SO("--reference", NULL, SO_TRUE, reference),
    SO("--no-prefix-reuse", NULL, SO_TRUE, no_reuse),
    SO("--ckpt-every", NULL, SO_INT, ckpt_every),
    SO("--ckpt-max", NULL, SO_INT, ckpt_max),
    SO("--drain-timeout", NULL, SO_INT, drain_timeout),
    SO("--ready-queue-max", NULL, SO_INT, ready_queue_max),
    SO("--allow-no-key", NULL, SO_TRUE, allow_no_key),
    SO("--chat-template-file", NULL, SO_STR, tmpl_file),
    SO("--reasoning-budget", NULL, SO_INT, reasoning_budget),
    SO("--test-script", NULL, SO_TRUE, test_script),
    SO("--max-body", NULL, SO_LONG, max_body),
    SO("--max-request-memory", NULL, SO_LONG, max_req_mem),
    SO("--cors-origin", NULL, SO_STR, cors),
    SO("--timeout", NULL, SO_INT, timeout),
    SO("--idle-timeout", NULL, SO_INT, idle_timeout),
    SO("--max-connections", NULL, SO_INT, max_conn),
    SO("--max-connections-per-ip", NULL, SO_INT, max_per_ip),
    SO("--max-pending-per-ip", NULL, SO_INT, max_pending_ip),
    SO("--max-tokenize-bytes", NULL, SO_LONG, max_tok_bytes),
    SO("--max-detokenize-tokens", NULL, SO_INT, max_detok),
    SO("--max-messages", NULL, SO_INT, max_messages),
    SO("--max-stop-bytes", NULL, SO_INT, max_stop),
};
#undef SO

/* argv[*i] if it is a row of SERVE_OPTIONS: its value stored; false if it is none. */
static bool serve_option_take(serve_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof SERVE_OPTIONS / sizeof *SERVE_OPTIONS; k++) {
        const serve_option *r = &SERVE_OPTIONS[k];
        if (strcmp(a, r->name) && (!r->alias || strcmp(a, r->alias))) continue;
        void *f = (char *)o + r->at;
        if (r->kind == SO_TRUE) *(bool *)f = true;
        else if (r->kind == SO_STR) *(const char **)f = cli_value(argc, argv, i);
        else if (r->kind == SO_INT) *(int *)f = cli_int(a, cli_value(argc, argv, i));
        else *(long *)f = cli_int(a, cli_value(argc, argv, i));
        return true;
    }
    return false;
}

/* --lora [MODEL:]NAME=PATH[:SCALE], once more: 0, or 2 with the message said */
static int serve_add_lora(serve_opts *o, const char *v) {
    const int n = o->n_lora;
    if (n == SERVE_MAX_LORA) return cli_fail("--lora: at most %d adapters", SERVE_MAX_LORA), 2;
    if (parse_lora(v, &o->lora_models[n], &o->lora_names[n], &o->lora_paths[n], &o->lora_scales[n])) return 2;
    for (int k = 0; k < n; k++)
        if (!strcmp(o->lora_names[k], o->lora_names[n]))
            return cli_fail("--lora: the name '%s' is given twice", o->lora_names[k]), 2;
    o->n_lora++;
    return 0;
}

/* The command line into o: -1 to go on, else the exit code (0 after --help, 2 on an error). */
static int serve_parse(int argc, char **argv, serve_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_spec_flag(&o->spec, argc, argv, &i) || serve_option_take(o, argc, argv, &i)) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (o->n_models == SERVE_MAX_MODELS) return cli_fail("-m: at most %d models", SERVE_MAX_MODELS), 2;
            o->model_paths[o->n_models++] = cli_value(argc, argv, &i);
        } else if (!strcmp(a, "--port")) {
            o->port = cli_int(a, cli_value(argc, argv, &i));
            o->port_set = true;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) o->n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->n_threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--lora")) {
            if (serve_add_lora(o, cli_value(argc, argv, &i))) return 2;
        } else if (cli_kv_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "--device")) {
            if ((o->device = cli_device_id(cli_value(argc, argv, &i))) < 0) return 2;
        } else if (!strcmp(a, "--reasoning-format")) {
            const char *v = cli_value(argc, argv, &i);
            if (!strcmp(v, "split") || !strcmp(v, "auto") || !strcmp(v, "deepseek"))
                o->reasoning_format = SERVER_REASONING_SPLIT;
            else if (!strcmp(v, "none")) o->reasoning_format = SERVER_REASONING_NONE;
            else return cli_fail("--reasoning-format must be split or none, not '%s'", v), 2;
        } else if (!strcmp(a, "--pooling")) {
            const char *v = cli_value(argc, argv, &i);
            if (!strcmp(v, "last")) o->pooling = LFM2C_POOL_LAST;
            else if (!strcmp(v, "mean")) o->pooling = LFM2C_POOL_MEAN;
            else return cli_fail("--pooling must be last or mean, not '%s'", v), 2;
        } else return cli_unknown_option("serve", a, USAGE);
    }
    return -1;
}

/* The models' options: which models, how long they stay, how many fit: 0, or 2 said. */
static int serve_check_models(serve_opts *o) {
    if (!o->n_models) o->cache_models = true;                        /* no file: the cache's models */
    o->keep_alive = o->n_models == 1 && !o->cache_models ? -1 : 300; /* one model: kept */
    if (o->keep_alive_s && !dl_parse_duration(o->keep_alive_s, &o->keep_alive))
        return cli_fail("--keep-alive takes a duration (5m, 1h30m, 300 seconds, 0, -1), not '%s'", o->keep_alive_s), 2;
    o->budget = models_default_budget();
    if (o->budget_s && (!models_parse_bytes(o->budget_s, &o->budget) || o->budget < (1u << 20)))
        return cli_fail("--memory-budget takes bytes (at least 1M), 8G, 512M or 50%%, not '%s'", o->budget_s), 2;
    if (o->max_loaded < 0) return cli_fail("--max-loaded must be >= 0 (0: no bound)"), 2;
    if (o->alias && !o->n_models) return cli_fail("--alias names the first -m model: give one"), 2;
    return 0;
}

/* What the server may fetch and write for clients: image URLs' networks, pulls' bytes: 0, or 2 said. */
static int serve_check_fetches(serve_opts *o) {
    lfm2c_error err = {0};
    if (o->allow_private_urls && !lfm2c_hub_nets_check(o->allow_private_urls, &err))
        return cli_fail("--allow-private-image-urls: %s", err.msg), 2;
    if (o->allow_private_urls && !o->allow_image_urls)
        return cli_fail("--allow-private-image-urls widens --allow-image-urls: give that too"), 2;
    o->pull_min_free = (size_t)1 << 30;
    const char *s[2] = {o->pull_max_s, o->pull_min_free_s}, *name[2] = {"--pull-max-bytes", "--pull-min-free"};
    size_t *v[2] = {&o->pull_max, &o->pull_min_free};
    for (int i = 0; i < 2; i++)
        if (s[i] && (strchr(s[i], '%') || !models_parse_bytes(s[i], v[i])))
            return cli_fail("%s takes bytes: 8G, 512M, 1000000 (0: no bound), not '%s'", name[i], s[i]), 2;
    return 0;
}

/* The options' ranges and combinations: 0, or 2 with the message said. */
static int serve_check(serve_opts *o) {
    if (serve_check_models(o)) return 2;
    if (o->ollama && !o->port_set) o->port = 11434; /* --port wins over --ollama */
    if (o->port < 0 || o->port > 65535) return cli_fail("--port must be 0..65535"), 2;
    if (o->n_slots < 1 || o->n_slots > 1024) return cli_fail("-np must be 1..1024"), 2;
    if (o->n_ctx < 16) return cli_fail("-c must be at least 16"), 2;
    if (o->queue < 1) return cli_fail("--queue must be at least 1"), 2;
    if (o->ckpt_every < 0 || o->ckpt_every > 65536 || o->ckpt_max < 0 || o->ckpt_max > 4096)
        return cli_fail("--ckpt-every takes 1..65536 and --ckpt-max 1..4096"), 2;
    if (o->prefill_chunk != -1 && (o->prefill_chunk < 1 || o->prefill_chunk > 65536))
        return cli_fail("--prefill-chunk must be 1..65536"), 2;
    if (o->step_tokens != -1 && (o->step_tokens < 0 || o->step_tokens > 65536))
        return cli_fail("--step-tokens must be 0..65536"), 2;
    if (o->max_body < 1024) return cli_fail("--max-body must be at least 1024"), 2;
    if (o->max_req_mem && o->max_req_mem < (1L << 20))
        return cli_fail("--max-request-memory must be at least 1 MiB"), 2;
    if (o->api_key && o->key_file) return cli_fail("give --api-key or --api-key-file, not both"), 2;
    if (o->alias && strlen(o->alias) > SERVER_MAX_MODEL_NAME)
        return cli_fail("--alias must be at most %d bytes", SERVER_MAX_MODEL_NAME), 2;
    if (o->max_messages < 1 || o->max_stop < 1) return cli_fail("--max-messages and --max-stop-bytes must be >= 1"), 2;
    if (o->drain_timeout < 0 || o->drain_timeout > 3600) return cli_fail("--drain-timeout must be 0..3600 seconds"), 2;
    if (o->ready_queue_max < 0) return cli_fail("--ready-queue-max must be >= 0"), 2;
    if (o->reasoning_budget < -1) return cli_fail("--reasoning-budget must be -1 (no limit) or >= 0"), 2;
    if (check_host(o->host, o->api_key || o->key_file, o->allow_no_key)) return 2;
    if (o->timeout < 1 || o->idle_timeout < 1 || o->load_timeout < 1)
        return cli_fail("--timeout, --idle-timeout and --load-timeout must be at least 1 second"), 2;
    if (o->max_conn < 16) return cli_fail("--max-connections must be at least 16"), 2;
    if (o->max_per_ip < 0 || o->max_pending_ip < 0)
        return cli_fail("--max-connections-per-ip and --max-pending-per-ip must be >= 0"), 2;
    if (o->max_tok_bytes < 1 || o->max_detok < 1)
        return cli_fail("--max-tokenize-bytes and --max-detokenize-tokens must be >= 1"), 2;
    if (o->cors && !*o->cors) return cli_fail("--cors-origin must not be empty"), 2;
    if (o->allowed_hosts && !*o->allowed_hosts) return cli_fail("--allowed-hosts must not be empty"), 2;
    if (serve_check_fetches(o)) return 2;
    if (o->spec.draft_path && o->spec.lookup_max > 0)
        return cli_fail("-md and --spec-lookup are two drafters: give one"), 2;
    if (o->spec.draft_min > o->spec.draft_max)
        return cli_fail("--draft-min %d is above --draft-max %d", o->spec.draft_min, o->spec.draft_max), 2;
    o->max_conn = fit_fd_limit(o->max_conn);
    return 0;
}

/* What a running server holds; serve_close frees whatever is set, in the shutdown's order. */
typedef struct serve_run {
    char *key_buf, *tmpl, *cache;
    server *srv;
    serve_models *models;
} serve_run;

static void serve_close(serve_run *r) {
    models_shutdown(r->models); /* ends running requests: open streams finish, handlers return */
    if (r->srv) server_stop(r->srv);
    models_free(r->models);
    free(r->key_buf);
    free(r->tmpl);
    free(r->cache);
}

/* The API key (from its file) and the chat template file: 0, or the exit code with the message said. */
static int serve_read_files(serve_opts *o, serve_run *r) {
    if (o->key_file) {
        if (!(r->key_buf = cli_read_file(o->key_file, NULL))) return 1;
        r->key_buf[strcspn(r->key_buf, "\r\n")] = 0;
        if (!*r->key_buf) return cli_fail("--api-key-file '%s' is empty", o->key_file);
        o->api_key = r->key_buf;
    }
    if (o->api_key && !*o->api_key) return cli_fail("--api-key must not be empty");
    if (o->tmpl_file && !(r->tmpl = cli_read_file(o->tmpl_file, NULL))) return 1;
    return 0;
}

/* Starts listening (/health answers while the model loads): 0, or the exit code. */
static int serve_listen(const serve_opts *o, serve_run *r, server_params *p) {
    const char *first = o->n_models ? o->model_paths[0] : NULL, *base = first ? strrchr(first, '/') : NULL;
    r->cache = lfm2c_hub_cache_dir(NULL);
    *p = (server_params){.host = o->host,
                         .port = o->port,
                         .api_key = o->api_key,
                         .alias = o->alias ? o->alias
                                  : first  ? (base ? base + 1 : first)
                                           : "lfm2c",
                         .chat_template = r->tmpl,
                         .reasoning_format = o->reasoning_format,
                         .pooling = o->pooling,
                         .limit_reasoning = o->reasoning_budget >= 0,
                         .reasoning_budget = o->reasoning_budget,
                         .test_script = o->test_script,
                         .metrics = o->metrics,
                         .max_body = (size_t)o->max_body,
                         .max_request_memory = (size_t)o->max_req_mem,
                         .n_ctx = o->n_ctx,
                         .cors_origin = o->cors,
                         .allowed_hosts = o->allowed_hosts,
                         .idle_timeout = o->idle_timeout,
                         .timeout = o->timeout,
                         .max_connections = o->max_conn,
                         .max_connections_per_ip = o->max_per_ip,
                         .max_pending_per_ip = o->max_pending_ip ? o->max_pending_ip : -1,
                         .ready_queue_max = o->ready_queue_max,
                         .max_tokenize_bytes = (size_t)o->max_tok_bytes,
                         .max_detokenize_tokens = o->max_detok,
                         .max_messages = o->max_messages,
                         .max_stop_bytes = o->max_stop,
                         .any_model = o->any_model,
                         .cache_dir = r->cache,
                         .no_pull = o->no_pull,
                         .offline = o->offline,
                         .allow_image_urls = o->allow_image_urls,
                         .image_url_timeout = o->image_url_timeout,
                         .allow_private_image_urls = o->allow_private_urls,
                         .pull_max_bytes = o->pull_max,
                         .pull_min_free = o->pull_min_free,
                         .log = log_line};
    lfm2c_error err = {0};
    if (!(r->srv = server_start(p, &err))) return cli_fail("%s", err.msg);
    return 0;
}

/* How every model opens and runs: the registry's parameters. */
static models_params serve_models_params(const serve_opts *o) {
    models_params mp = {.mp = lfm2c_model_default_params(),
                        .sp = {.n_slots = o->n_slots,
                               .n_ctx = o->n_ctx,
                               .queue_max = o->queue,
                               .prefill_chunk = o->prefill_chunk > 0             ? o->prefill_chunk
                                                : o->device == LFM2C_DEVICE_CUDA ? 2048
                                                                                 : 512,
                               .token_budget = o->step_tokens >= 0              ? o->step_tokens
                                               : o->device == LFM2C_DEVICE_CUDA ? 2048
                                                                                : 0,
                               .no_prefix_reuse = o->no_reuse,
                               .ckpt_every = o->ckpt_every,
                               .ckpt_max = o->ckpt_max,
                               .spec_on = cli_spec_on(&o->spec),
                               .spec = lfm2c_spec_default_params()},
                        .draft_path = o->spec.draft_path,
                        .mmproj_path = o->mmproj,
                        .no_mmproj = o->no_mmproj,
                        .memory_budget = o->budget,
                        .max_loaded = o->max_loaded,
                        .keep_alive = o->keep_alive,
                        .wait_s = o->load_timeout,
                        .log = log_line};
    mp.mp.n_threads = o->n_threads;
    mp.mp.shared_threads = true; /* one pool: the loaded models' steps take turns */
    mp.mp.reference = o->reference;
    mp.mp.device = o->device;
    cli_kv_apply(&mp.mp);
    mp.sp.spec.draft_max = o->spec.draft_max;
    mp.sp.spec.draft_min = o->spec.draft_min;
    mp.sp.spec.draft_p_min = (float)o->spec.p_min;
    mp.sp.spec.lookup_min = o->spec.lookup_min;
    mp.sp.spec.lookup_max = o->spec.lookup_max;
    return mp;
}

/* The registry: the files given, the cache's models, the adapters: 0, or the exit code said. */
static int serve_add_models(const serve_opts *o, serve_run *r) {
    lfm2c_error err = {0};
    for (int i = 0; i < o->n_models; i++)
        if (models_add_file(r->models, o->model_paths[i], i == 0 ? o->alias : NULL, &err))
            return cli_fail("%s", err.msg);
    if (o->cache_models) models_add_cache(r->models, r->cache, true);
    for (int k = 0; k < o->n_lora; k++)
        if (models_add_lora(r->models, o->lora_models[k], o->lora_names[k], o->lora_paths[k], o->lora_scales[k], &err))
            return cli_fail("--lora %s: %s", o->lora_names[k], err.msg);
    if (models_count(r->models) || o->n_models) return 0;
    if (o->no_pull || o->offline)
        return cli_fail(
            "serve: no model: give -m MODEL.gguf, or pull one first: lfm2c pull LiquidAI/LFM2-1.2B-GGUF (the "
            "cache %s is empty)",
            r->cache);
    fprintf(stderr,
            "lfm2c: no models yet (%s is empty): pull one with 'lfm2c pull LiquidAI/LFM2-1.2B-GGUF' or POST /api/pull "
            "to this server ('ollama pull LiquidAI/LFM2-1.2B-GGUF' with OLLAMA_HOST set to it)\n",
            r->cache);
    return 0;
}

/* The registry filled and the first model given loaded (its errors are start-up errors), the
 * server ready: 0, or the exit code. */
static int serve_load(const serve_opts *o, serve_run *r) {
    models_params mp = serve_models_params(o);
    if (!(r->models = models_new(&mp, server_shared(r->srv)))) return cli_fail("out of memory");
    server_set_models(r->srv, r->models);
    int rc = serve_add_models(o, r);
    if (rc) return rc;
    if (o->n_models) { /* the first model is loaded now: a bad file or adapter stops the start */
        int lora, status;
        char msg[400];
        serve_api *api = models_acquire(r->models, NULL, NAN, &lora, &status, msg, sizeof msg);
        if (!api) return cli_fail("%s", msg[0] ? msg : "cannot load the model");
        cli_report_device(api->model);
        models_release(api);
    }
    server_ready(r->srv);
    return 0;
}

static void serve_announce(const serve_opts *o, const serve_run *r) {
    model_row *rows = NULL;
    int n = models_list(r->models, false, &rows);
    if (n == 1 && rows[0].facts.ok)
        fprintf(stderr, "lfm2c: serving %s (%s, %d slots x %d ctx) on http://%s:%d%s\n", rows[0].id,
                rows[0].facts.info.arch, o->n_slots, rows[0].facts.n_ctx, o->host, server_port(r->srv),
                o->api_key ? " (API key required)" : "");
    else
        fprintf(stderr,
                "lfm2c: serving %d models (%d slots each, loaded on demand; --memory-budget %.1f GiB) on "
                "http://%s:%d%s\n",
                n, o->n_slots, (double)o->budget / (1 << 30), o->host, server_port(r->srv),
                o->api_key ? " (API key required)" : "");
    for (int i = 0; n > 1 && i < n; i++)
        fprintf(stderr, "lfm2c:   %s%s\n", rows[i].id, rows[i].state == MODEL_LOADED ? " (loaded)" : "");
    free(rows);
    for (int k = 0; k < o->n_lora; k++)
        fprintf(stderr, "lfm2c: LoRA adapter '%s' of %s (%s, scale %g)\n", o->lora_names[k],
                o->lora_models[k] ? o->lora_models[k] : "the first model", o->lora_paths[k], o->lora_scales[k]);
    if (cli_spec_on(&o->spec))
        fprintf(stderr, "lfm2c: speculative decoding: %s, draft-max %d\n",
                o->spec.draft_path ? o->spec.draft_path : "prompt lookup", o->spec.draft_max);
    printf("listening on %s:%d\n", o->host, server_port(r->srv)); /* tests and scripts wait for this line */
    fflush(stdout);
}

int cmd_serve(int argc, char **argv) {
    static serve_opts o; /* static: the server keeps pointers into it until the process ends */
    o = serve_opts_init();
    int rc = serve_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    if ((rc = serve_check(&o))) return rc;
    if (o.device == LFM2C_DEVICE_CUDA) { /* the memory plan's slots and context (docs/CUDA.md), unless set */
        char v[32];
        snprintf(v, sizeof v, "%d", o.n_slots);
        if (!getenv("LFM2C_CUDA_SLOTS")) os_setenv("LFM2C_CUDA_SLOTS", v);
        snprintf(v, sizeof v, "%d", o.n_ctx);
        if (!getenv("LFM2C_CUDA_CTX")) os_setenv("LFM2C_CUDA_CTX", v);
    }

    /* block the stop signals in every thread; this one waits for them */
    os_stop_block();
    os_ignore_broken_pipe();

    serve_run r = {0};
    server_params p;
    if ((rc = serve_read_files(&o, &r)) || (rc = serve_listen(&o, &r, &p)) || (rc = serve_load(&o, &r))) {
        serve_close(&r);
        return rc;
    }
    serve_announce(&o, &r);

    int sig = os_stop_wait(-1);
    if (o.drain_timeout > 0 && !drain(r.srv, r.models, o.drain_timeout)) fprintf(stderr, "lfm2c: drain cut short\n");
    fprintf(stderr, "lfm2c: %s, shutting down\n", sig == OS_STOP_INT ? "SIGINT" : "SIGTERM");
    pthread_t dog;
    pthread_create(&dog, NULL, shutdown_watchdog, NULL);
    serve_close(&r);
    return 0;
}
