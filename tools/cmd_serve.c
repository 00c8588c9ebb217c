/* cmd_serve.c — `lfm2c serve`: the OpenAI-compatible HTTP server. It listens before the model is
 * loaded (GET /health answers, GET /ready is 503 until the model is in). SIGINT/SIGTERM stop it
 * within a bounded time: with --drain-timeout it first drains (no new requests, running ones
 * finish, bounded); then requests are cancelled, open connections cut, and a watchdog ends the
 * process if that still takes more than SHUTDOWN_LIMIT_S seconds (or on a second signal). */
#include "cli.h"
#include "serve/scheduler.h"
#include "serve/server.h"
#include "base/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: lfm2c serve -m MODEL.gguf [options]\n"
    "  --host ADDR           IPv4 address to bind (default 127.0.0.1: loopback only)\n"
    "  --port N              TCP port (default 8080; 0 = any free port, printed at start)\n"
    "  --ollama              default port 11434, where Ollama clients look (the OpenAI, Responses,\n"
    "                        Anthropic and Ollama APIs are served on every port)\n"
    "  -np, --parallel N     slots decoded together (default 4)\n"
    "  -c, --ctx-size N      context per slot (default 4096, at most the model's)\n"
    "  -t, --threads N       worker threads (default: one per physical core)\n"
    "  --queue N             requests that may wait for a slot before 503 (default 256)\n"
    "  --api-key KEY         require 'Authorization: Bearer KEY'\n"
    "  --api-key-file F      the same, key read from the first line of F\n"
    "  --alias NAME          model id shown by /v1/models and in responses; requests naming\n"
    "                        another model get 404 model_not_found (the file name also works)\n"
    "  --accept-any-model    answer requests whatever 'model' they name (clients with a fixed name)\n"
    "  --lora NAME=PATH[:S]  serve a LoRA adapter (PEFT folder or GGUF; scale S, default 1) besides\n"
    "                        the base: requests naming model NAME or ALIAS:NAME run with it;\n"
    "                        listed by /v1/models and /api/tags; repeatable (up to 64)\n"
    "  --metrics             serve Prometheus metrics at GET /metrics\n"
    "  --chat-template-file F  Jinja chat template instead of the model's\n"
    "  --reasoning-format F  split (default): a thinking model's <think> block goes to each API's\n"
    "                        reasoning field (reasoning_content, reasoning items, thinking\n"
    "                        blocks, Ollama's thinking); none: the raw text is the answer\n"
    "  --reasoning-budget N  tokens of thinking before </think> is forced (default -1: no limit;\n"
    "                        0: close the block at once); requests may ask for less\n"
    "  --test-script         for tests only: a request's 'test_script' text is its output\n"
    "  --max-body BYTES      largest request body, and /detokenize's text (default 8 MiB)\n"
    "  --max-request-memory BYTES  memory all requests in progress may hold: bodies, their\n"
    "                        parse, waiting jobs, unwritten answers (default 512 MiB); more: 503\n"
    "  --cors-origin O       allow browser calls from origin O ('*' or a comma-separated list;\n"
    "                        default: no CORS headers). OPTIONS preflights never need the key\n"
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
    "  -md FILE / -hfd REPO  speculative decoding with a draft model (same vocabulary), per slot\n"
    "  --spec-lookup [N | A..B]  speculative decoding by prompt lookup (n-gram sizes, default 3..1)\n"
    "  --draft-max N  --draft-min N  --draft-p-min P  (16, 0, 0.75; per request: speculative.n_max,\n"
    "                        speculative.n_min, speculative.p_min, n_max at most --draft-max)\n"
    "  --reference           scalar reference kernels\n"
    "  -ctk / -ctv TYPE      KV cache types f16 (default), q8_0, f32 (--cache-type-k / -v)\n"
    "  --hugepages        always copy the weights into anonymous transparent huge pages\n"
    "  --no-hugepages     always map the file (default: copy when THP is on and RAM allows)\n"
    "  --device cpu|cuda|vulkan  backend (cuda: a build with -DLFM2C_CUDA=ON; vulkan: where built)\n";

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
    sigset_t *set = arg;
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += SHUTDOWN_LIMIT_S;
    int sig = -1;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long left = (end.tv_sec - now.tv_sec) * 1000000000LL + (end.tv_nsec - now.tv_nsec);
        if (left <= 0) break;
        struct timespec ts = {(time_t)(left / 1000000000LL), (long)(left % 1000000000LL)};
        sig = sigtimedwait(set, NULL, &ts);
        if (sig > 0 || errno == EAGAIN) break; /* a signal, or the time is up; EINTR: wait on */
    }
    fprintf(stderr, "lfm2c: %s, exiting now\n", sig > 0 ? "second stop signal" : "shutdown took too long");
    _exit(1);
    return NULL;
}

/* Room for the connection limit: raises the soft descriptor limit, lowers the connection limit
 * when the hard limit is too small. */
static int fit_fd_limit(int max_conn) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return max_conn;
    rlim_t want = (rlim_t)max_conn + 64 + 128; /* MHD's slack + model files, pipes, ... */
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
        int fit = (int)rl.rlim_cur - 64 - 128;
        fprintf(stderr, "lfm2c: the descriptor limit (%llu) allows %d connections, not %d\n",
                (unsigned long long)rl.rlim_cur, fit < 16 ? 16 : fit, max_conn);
        return fit < 16 ? 16 : fit;
    }
    return max_conn;
}

static void log_line(void *user, const char *line) {
    (void)user;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
    fprintf(stderr, "%s %s\n", ts, line);
}

/* Drain: /ready and new requests answer 503 so balancers go elsewhere; admitted requests run
 * on until none is left or timeout_s passes. False when cut short (time or a second signal). */
static bool drain(server *srv, sched *s, int timeout_s, const sigset_t *stop_set) {
    server_drain(srv);
    fprintf(stderr, "lfm2c: draining (up to %d s; a second signal stops at once)\n", timeout_s);
    double end = lfm2c_now_s() + timeout_s;
    while (lfm2c_now_s() < end) {
        sched_stats st;
        sched_get_stats(s, &st);
        if (st.active_slots == 0 && st.queue_depth == 0) return true;
        struct timespec ts = {0, 50 * 1000 * 1000};
        if (sigtimedwait(stop_set, NULL, &ts) > 0) return false;
    }
    return false;
}

enum { SERVE_MAX_LORA = 64 };

/* --lora NAME=PATH[:SCALE] (PATH alone: NAME is its file name without .gguf) */
static int parse_lora(const char *v, char **name, char **path, float *scale) {
    const char *eq = strchr(v, '=');
    char *p = strdup(eq ? eq + 1 : v), *colon = strrchr(p, ':');
    *scale = 1;
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
    *name = eq ? strndup(v, (size_t)(eq - v))
               : strndup(base, strlen(base) > 5 && !strcmp(base + strlen(base) - 5, ".gguf") ? strlen(base) - 5
                                                                                             : strlen(base));
    *path = p;
    if (!**name || !*p || strchr(*name, ':') || strchr(*name, '/'))
        return cli_fail("--lora expects NAME=PATH[:SCALE] (a NAME without ':' or '/'), got '%s'", v);
    return 0;
}

int cmd_serve(int argc, char **argv) {
    static char *lora_names[SERVE_MAX_LORA], *lora_paths[SERVE_MAX_LORA];
    static lfm2c_lora *loras[SERVE_MAX_LORA];
    static float lora_scales[SERVE_MAX_LORA];
    int n_lora = 0;
    const char *model_path = NULL, *host = "127.0.0.1", *api_key = NULL, *key_file = NULL, *alias = NULL,
               *tmpl_file = NULL, *cors = NULL;
    int port = 8080, n_slots = 4, n_ctx = 4096, n_threads = 0, queue = 256;
    int timeout = SERVER_DEFAULT_TIMEOUT, idle_timeout = SERVER_DEFAULT_IDLE_TIMEOUT,
        max_conn = SERVER_DEFAULT_MAX_CONNECTIONS, max_per_ip = 0, max_pending_ip = SERVER_DEFAULT_MAX_PENDING_PER_IP,
        max_detok = SERVER_DEFAULT_MAX_DETOKENIZE_TOKENS;
    long max_req_mem = 0;
    long max_body = 8L << 20, max_tok_bytes = SERVER_DEFAULT_MAX_TOKENIZE_BYTES;
    bool ollama = false, port_set = false, metrics = false, reference = false, no_reuse = false, allow_no_key = false;
    int max_messages = SERVER_DEFAULT_MAX_MESSAGES, max_stop = SERVER_DEFAULT_MAX_STOP_BYTES;
    int drain_timeout = 0, ready_queue_max = 0;
    bool any_model = false, test_script = false;
    int reasoning_format = SERVER_REASONING_SPLIT, reasoning_budget = -1;
    int device = LFM2C_DEVICE_CPU;
    cli_spec spec_opts = cli_spec_init();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_spec_flag(&spec_opts, argc, argv, &i)) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--host")) host = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--port")) {
            port = cli_int(a, cli_value(argc, argv, &i));
            port_set = true;
        } else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) n_slots = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) n_threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--queue")) queue = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--api-key")) api_key = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--api-key-file")) key_file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--alias")) alias = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--metrics")) metrics = true;
        else if (!strcmp(a, "--lora")) {
            if (n_lora == SERVE_MAX_LORA) return cli_fail("--lora: at most %d adapters", SERVE_MAX_LORA), 2;
            if (parse_lora(cli_value(argc, argv, &i), &lora_names[n_lora], &lora_paths[n_lora], &lora_scales[n_lora]))
                return 2;
            for (int k = 0; k < n_lora; k++)
                if (!strcmp(lora_names[k], lora_names[n_lora]))
                    return cli_fail("--lora: the name '%s' is given twice", lora_names[k]), 2;
            n_lora++;
        } else if (!strcmp(a, "--ollama")) ollama = true;
        else if (!strcmp(a, "--accept-any-model")) any_model = true;
        else if (!strcmp(a, "--reference")) reference = true;
        else if (cli_kv_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "--device")) {
            const char *d = cli_value(argc, argv, &i);
            if ((device = cli_device_id(d)) < 0) return 2;
        } else if (!strcmp(a, "--no-prefix-reuse")) no_reuse = true;
        else if (!strcmp(a, "--drain-timeout")) drain_timeout = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--ready-queue-max")) ready_queue_max = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--allow-no-key")) allow_no_key = true;
        else if (!strcmp(a, "--chat-template-file")) tmpl_file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--reasoning-format")) {
            const char *v = cli_value(argc, argv, &i);
            if (!strcmp(v, "split") || !strcmp(v, "auto") || !strcmp(v, "deepseek"))
                reasoning_format = SERVER_REASONING_SPLIT;
            else if (!strcmp(v, "none")) reasoning_format = SERVER_REASONING_NONE;
            else return cli_fail("--reasoning-format must be split or none, not '%s'", v), 2;
        } else if (!strcmp(a, "--reasoning-budget")) reasoning_budget = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--test-script")) test_script = true;
        else if (!strcmp(a, "--max-body")) max_body = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-request-memory")) max_req_mem = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--cors-origin")) cors = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--timeout")) timeout = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--idle-timeout")) idle_timeout = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-connections")) max_conn = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-connections-per-ip")) max_per_ip = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-pending-per-ip")) max_pending_ip = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-tokenize-bytes")) max_tok_bytes = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-detokenize-tokens")) max_detok = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-messages")) max_messages = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--max-stop-bytes")) max_stop = cli_int(a, cli_value(argc, argv, &i));
        else return cli_unknown_option("serve", a, USAGE);
    }
    if (!model_path)
        return cli_fail("serve: no model given: lfm2c serve MODEL, -m MODEL.gguf or -hf ORG/NAME[:QUANT] ('lfm2c serve "
                        "--help')"),
               2;
    if (ollama && !port_set) port = 11434; /* --port wins over --ollama */
    if (port < 0 || port > 65535) return cli_fail("--port must be 0..65535"), 2;
    if (n_slots < 1 || n_slots > 1024) return cli_fail("-np must be 1..1024"), 2;
    if (n_ctx < 16) return cli_fail("-c must be at least 16"), 2;
    if (queue < 1) return cli_fail("--queue must be at least 1"), 2;
    if (max_body < 1024) return cli_fail("--max-body must be at least 1024"), 2;
    if (max_req_mem && max_req_mem < (1L << 20)) return cli_fail("--max-request-memory must be at least 1 MiB"), 2;
    if (api_key && key_file) return cli_fail("give --api-key or --api-key-file, not both"), 2;
    if (max_messages < 1 || max_stop < 1) return cli_fail("--max-messages and --max-stop-bytes must be >= 1"), 2;
    if (drain_timeout < 0 || drain_timeout > 3600) return cli_fail("--drain-timeout must be 0..3600 seconds"), 2;
    if (ready_queue_max < 0) return cli_fail("--ready-queue-max must be >= 0"), 2;
    if (reasoning_budget < -1) return cli_fail("--reasoning-budget must be -1 (no limit) or >= 0"), 2;
    if (check_host(host, api_key || key_file, allow_no_key)) return 2;
    if (timeout < 1 || idle_timeout < 1) return cli_fail("--timeout and --idle-timeout must be at least 1 second"), 2;
    if (max_conn < 16) return cli_fail("--max-connections must be at least 16"), 2;
    if (max_per_ip < 0 || max_pending_ip < 0)
        return cli_fail("--max-connections-per-ip and --max-pending-per-ip must be >= 0"), 2;
    if (max_tok_bytes < 1 || max_detok < 1)
        return cli_fail("--max-tokenize-bytes and --max-detokenize-tokens must be >= 1"), 2;
    if (cors && !*cors) return cli_fail("--cors-origin must not be empty"), 2;
    if (spec_opts.draft_path && spec_opts.lookup_max > 0)
        return cli_fail("-md and --spec-lookup are two drafters: give one"), 2;
    if (spec_opts.draft_min > spec_opts.draft_max)
        return cli_fail("--draft-min %d is above --draft-max %d", spec_opts.draft_min, spec_opts.draft_max), 2;
    max_conn = fit_fd_limit(max_conn);

    char *key_buf = NULL, *tmpl = NULL;
    if (key_file) {
        if (!(key_buf = cli_read_file(key_file, NULL))) return 1;
        key_buf[strcspn(key_buf, "\r\n")] = 0;
        if (!*key_buf) {
            free(key_buf);
            return cli_fail("--api-key-file '%s' is empty", key_file);
        }
        api_key = key_buf;
    }
    if (api_key && !*api_key) return cli_fail("--api-key must not be empty");
    if (tmpl_file && !(tmpl = cli_read_file(tmpl_file, NULL))) {
        free(key_buf);
        return 1;
    }

    /* block the stop signals in every thread; this one waits for them */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *base = strrchr(model_path, '/');
    server_params p = {.host = host,
                       .port = port,
                       .api_key = api_key,
                       .alias = alias ? alias : (base ? base + 1 : model_path),
                       .chat_template = tmpl,
                       .reasoning_format = reasoning_format,
                       .limit_reasoning = reasoning_budget >= 0,
                       .reasoning_budget = reasoning_budget,
                       .test_script = test_script,
                       .metrics = metrics,
                       .max_body = (size_t)max_body,
                       .max_request_memory = (size_t)max_req_mem,
                       .n_ctx = n_ctx,
                       .model_file = base ? base + 1 : model_path,
                       .cors_origin = cors,
                       .idle_timeout = idle_timeout,
                       .timeout = timeout,
                       .max_connections = max_conn,
                       .max_connections_per_ip = max_per_ip,
                       .max_pending_per_ip = max_pending_ip ? max_pending_ip : -1,
                       .ready_queue_max = ready_queue_max,
                       .max_tokenize_bytes = (size_t)max_tok_bytes,
                       .max_detokenize_tokens = max_detok,
                       .max_messages = max_messages,
                       .max_stop_bytes = max_stop,
                       .any_model = any_model,
                       .n_lora = n_lora,
                       .lora_names = (const char *const *)lora_names,
                       .loras = loras,
                       .lora_scales = lora_scales,
                       .log = log_line};
    lfm2c_error err = {0};
    server *srv = server_start(NULL, NULL, &p, &err); /* listens now: /health answers while loading */
    if (!srv) {
        free(key_buf);
        free(tmpl);
        return cli_fail("%s", err.msg);
    }

    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = n_threads;
    mp.reference = reference;
    mp.device = device;
    cli_kv_apply(&mp);
    lfm2c_model *model = lfm2c_model_open(model_path, &mp, &err);
    if (!model) {
        server_stop(srv);
        free(key_buf);
        free(tmpl);
        return cli_fail("%s", err.msg);
    }
    const lfm2c_model_info *mi = lfm2c_model_get_info(model);
    if (mi->n_ctx_train > 0 && n_ctx > mi->n_ctx_train) n_ctx = mi->n_ctx_train;
    for (int k = 0; k < n_lora; k++)
        if (!(loras[k] = lfm2c_lora_load(model, lora_paths[k], &err))) {
            server_stop(srv);
            for (int j = 0; j < k; j++) lfm2c_lora_free(loras[j]);
            lfm2c_model_free(model);
            free(key_buf);
            free(tmpl);
            return cli_fail("--lora %s: %s", lora_names[k], err.msg);
        }

    sched_params sp = {.n_slots = n_slots,
                       .n_ctx = n_ctx,
                       .queue_max = queue,
                       .prefill_chunk = 512,
                       .no_prefix_reuse = no_reuse,
                       .spec_on = cli_spec_on(&spec_opts),
                       .spec = lfm2c_spec_default_params()};
    lfm2c_model *draft = NULL;
    if (spec_opts.draft_path && !(draft = lfm2c_model_open(spec_opts.draft_path, &mp, &err))) {
        server_stop(srv);
        lfm2c_model_free(model);
        free(key_buf);
        free(tmpl);
        return cli_fail("draft model: %s", err.msg);
    }
    sp.draft = draft;
    sp.spec.draft_max = spec_opts.draft_max;
    sp.spec.draft_min = spec_opts.draft_min;
    sp.spec.draft_p_min = (float)spec_opts.p_min;
    sp.spec.lookup_min = spec_opts.lookup_min;
    sp.spec.lookup_max = spec_opts.lookup_max;
    sched *s = sched_new(model, &sp, &err);
    if (!s) {
        server_stop(srv);
        lfm2c_model_free(model);
        lfm2c_model_free(draft);
        free(key_buf);
        free(tmpl);
        return cli_fail("%s%s", draft ? "draft model: " : "", err.msg);
    }
    server_attach(srv, model, s, n_ctx);
    fprintf(stderr, "lfm2c: serving %s (%s, %d slots x %d ctx) on http://%s:%d%s\n", p.alias, mi->arch, n_slots, n_ctx,
            host, server_port(srv), api_key ? " (API key required)" : "");
    for (int k = 0; k < n_lora; k++)
        fprintf(stderr, "lfm2c: LoRA adapter '%s' (%s, scale %g, %d matrices)\n", lora_names[k], lora_paths[k],
                lora_scales[k], lfm2c_lora_n_matrices(loras[k]));
    if (sp.spec_on)
        fprintf(stderr, "lfm2c: speculative decoding: %s, draft-max %d\n",
                draft ? spec_opts.draft_path : "prompt lookup", spec_opts.draft_max);
    printf("listening on %s:%d\n", host, server_port(srv)); /* tests and scripts wait for this line */
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_set, &sig);
    if (drain_timeout > 0 && !drain(srv, s, drain_timeout, &stop_set)) fprintf(stderr, "lfm2c: drain cut short\n");
    fprintf(stderr, "lfm2c: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    pthread_t dog;
    pthread_create(&dog, NULL, shutdown_watchdog, &stop_set);
    sched_shutdown(s); /* ends running requests: open streams finish, handlers return */
    server_stop(srv);
    sched_free(s);
    for (int k = 0; k < n_lora; k++) lfm2c_lora_free(loras[k]);
    lfm2c_model_free(model);
    lfm2c_model_free(draft);
    free(key_buf);
    free(tmpl);
    return 0;
}
