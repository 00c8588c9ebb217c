/* cmd_serve.c — `lfm2c serve`: the OpenAI-compatible HTTP server. */
#include "cli.h"
#include "scheduler.h"
#include "server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: lfm2c serve -m MODEL.gguf [options]\n"
            "  --host ADDR           IPv4 address to bind (default 127.0.0.1: loopback only)\n"
            "  --port N              TCP port (default 8080; 0 = any free port, printed at start)\n"
            "  -np, --parallel N     slots decoded together (default 4)\n"
            "  -c, --ctx-size N      context per slot (default 4096, at most the model's)\n"
            "  -t, --threads N       worker threads (default: one per physical core)\n"
            "  --queue N             requests that may wait for a slot before 503 (default 256)\n"
            "  --api-key KEY         require 'Authorization: Bearer KEY'\n"
            "  --api-key-file F      the same, key read from the first line of F\n"
            "  --alias NAME          model id shown by /v1/models and in responses\n"
            "  --metrics             serve Prometheus metrics at GET /metrics\n"
            "  --chat-template-file F  Jinja chat template instead of the model's\n"
            "  --max-body BYTES      largest request body (default 8 MiB)\n"
            "  --no-prefix-reuse     re-read every prompt from the start (to measure the reuse)\n"
            "  --reference           scalar reference kernels\n"
            "  --device cpu|cuda     backend (cuda needs a build with -DLFM2C_CUDA=ON)\n");
}

static void log_line(void *user, const char *line) {
    (void)user;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
    fprintf(stderr, "%s %s\n", ts, line);
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *api_key = NULL, *key_file = NULL, *alias = NULL,
               *tmpl_file = NULL;
    int port = 8080, n_slots = 4, n_ctx = 4096, n_threads = 0, queue = 256;
    long max_body = 8L << 20;
    bool metrics = false, reference = false, no_reuse = false;
    int device = LFM2C_DEVICE_CPU;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--host")) host = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--port")) port = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) n_slots = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) n_ctx = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) n_threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--queue")) queue = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--api-key")) api_key = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--api-key-file")) key_file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--alias")) alias = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--metrics")) metrics = true;
        else if (!strcmp(a, "--reference")) reference = true;
        else if (!strcmp(a, "--device")) {
            const char *d = cli_value(argc, argv, &i);
            if (strcmp(d, "cpu") && strcmp(d, "cuda")) return cli_fail("unknown device '%s' (cpu or cuda)", d);
            device = !strcmp(d, "cuda") ? LFM2C_DEVICE_CUDA : LFM2C_DEVICE_CPU;
        }
        else if (!strcmp(a, "--no-prefix-reuse")) no_reuse = true;
        else if (!strcmp(a, "--chat-template-file")) tmpl_file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--max-body")) max_body = cli_int(a, cli_value(argc, argv, &i));
        else { usage(stderr); return cli_fail("serve: unknown option '%s'", a); }
    }
    if (!model_path) { usage(stderr); return cli_fail("serve: -m MODEL.gguf is required"); }
    if (port < 0 || port > 65535) return cli_fail("--port must be 0..65535");
    if (n_slots < 1 || n_slots > 1024) return cli_fail("-np must be 1..1024");
    if (n_ctx < 16) return cli_fail("-c must be at least 16");
    if (queue < 1) return cli_fail("--queue must be at least 1");
    if (max_body < 1024) return cli_fail("--max-body must be at least 1024");
    if (api_key && key_file) return cli_fail("give --api-key or --api-key-file, not both");

    char *key_buf = NULL, *tmpl = NULL;
    if (key_file) {
        if (!(key_buf = cli_read_file(key_file, NULL))) return 1;
        key_buf[strcspn(key_buf, "\r\n")] = 0;
        if (!*key_buf) { free(key_buf); return cli_fail("--api-key-file '%s' is empty", key_file); }
        api_key = key_buf;
    }
    if (api_key && !*api_key) return cli_fail("--api-key must not be empty");
    if (tmpl_file && !(tmpl = cli_read_file(tmpl_file, NULL))) { free(key_buf); return 1; }

    /* block the stop signals in every thread; this one waits for them */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = n_threads;
    mp.reference = reference;
    mp.device = device;
    lfm2c_model *model = lfm2c_model_open(model_path, &mp, &err);
    if (!model) { free(key_buf); free(tmpl); return cli_fail("%s", err.msg); }
    const lfm2c_model_info *mi = lfm2c_model_get_info(model);
    if (mi->n_ctx_train > 0 && n_ctx > mi->n_ctx_train) n_ctx = mi->n_ctx_train;

    sched_params sp = {.n_slots = n_slots, .n_ctx = n_ctx, .queue_max = queue, .prefill_chunk = 512,
                       .no_prefix_reuse = no_reuse};
    sched *s = sched_new(model, &sp, &err);
    if (!s) { lfm2c_model_free(model); free(key_buf); free(tmpl); return cli_fail("%s", err.msg); }

    const char *base = strrchr(model_path, '/');
    server_params p = {.host = host, .port = port, .api_key = api_key, .alias = alias ? alias : (base ? base + 1 : model_path),
                       .chat_template = tmpl, .metrics = metrics, .max_body = (size_t)max_body, .n_ctx = n_ctx,
                       .log = log_line};
    server *srv = server_start(model, s, &p, &err);
    if (!srv) { sched_free(s); lfm2c_model_free(model); free(key_buf); free(tmpl); return cli_fail("%s", err.msg); }
    fprintf(stderr, "lfm2c: serving %s (%s, %d slots x %d ctx) on http://%s:%d%s\n", p.alias, mi->arch, n_slots, n_ctx,
            host, server_port(srv), api_key ? " (API key required)" : "");
    printf("listening on %s:%d\n", host, server_port(srv));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_set, &sig);
    fprintf(stderr, "lfm2c: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sched_shutdown(s); /* ends running requests: open streams finish, handlers return */
    server_stop(srv);
    sched_free(s);
    lfm2c_model_free(model);
    free(key_buf);
    free(tmpl);
    return 0;
}
