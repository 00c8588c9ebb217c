/* server.c — `lfm2c serve`: the transport (http.c) with one route table, made of the lifecycle
 * routes here (/health, /ready, /metrics, the chat page at /), the OpenAI routes (api_openai.c) and
 * the other APIs' routes (api_responses.c, api_anthropic.c, api_ollama.c); and the
 * server's life: loading -> ready -> draining (what a load balancer's probes read), stop.
 * A new endpoint is one row in one of those tables and its handler. */
#include "serve/server.h"
#include "base/error.h"
#include "serve/http.h"
#include "serve/job.h"
#include "serve/models.h"
#include "serve/api_audio.h"
#include "serve/api_embeddings.h"
#include "serve/api_openai.h"
#include "serve/api_dialect.h"
#include "base/os.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert((int)SERVER_LOADING == (int)HTTP_LOADING && (int)SERVER_READY == (int)HTTP_READY &&
                   (int)SERVER_DRAINING == (int)HTTP_DRAINING,
               "server.h and http.h name the same states");

struct server {
    http *h;
    serve_shared sh; /* what every handler reads (http_app) */
};

/* ---- lifecycle: loading -> ready -> draining (what a load balancer's probes read) ---------- */

static const char *state_name(int state) {
    return state == SERVER_LOADING ? "loading" : state == SERVER_DRAINING ? "draining" : "ok";
}

/* GET /health: liveness, the process answers HTTP. */
static int route_health(http_req *q, json_t *body) {
    (void)body;
    return http_send_json(q, 200, json_pack("{s:s}", "status", state_name(http_state(http_of(q)))));
}

/* GET /ready: 200 when this replica should get traffic; 503 while the model loads, while draining
 * and, with ready_queue_max, while that many requests already wait for a slot. */
static int route_ready(http_req *q, json_t *body) {
    serve_shared *sh = http_app(q);
    int state = http_state(http_of(q)), queued = -1;
    (void)body;
    if (state == SERVER_READY && sh->p.ready_queue_max > 0 && sh->models) {
        sched_stats st;
        models_stats(sh->models, &st); /* every model's queue */
        queued = st.queue_depth;
        if (queued >= sh->p.ready_queue_max) state = -1;
    }
    bool ok = state == SERVER_READY;
    const char *why = state == -1 ? "queue_full" : state_name(state);
    json_t *j = queued >= 0 ? json_pack("{s:s,s:i}", "status", ok ? "ready" : why, "queued", queued)
                            : json_pack("{s:s}", "status", ok ? "ready" : why);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return -1;
    return http_send_text(q, ok ? 200 : 503, "application/json", s, strlen(s), ok ? NULL : "1");
}

/* ---- the chat page, and what Ollama clients probe ------------------------------------------------ */

/* The chat page (web/index.html, compiled in): public, so it can ask for the API key itself. Its
 * policy: nothing from elsewhere; its own inline script and the microphone's capture worklet it
 * makes as a blob: URL; images and audio clips it holds as data: URLs. */
extern const unsigned char lfm2c_web_index[];
extern const size_t lfm2c_web_index_len;
static int route_page(http_req *q, json_t *body) {
    static const char *const headers[] = {
        "Cache-Control", "no-cache", "Content-Security-Policy",
        "default-src 'self'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; img-src 'self' data:; "
        "media-src 'self' data:",
        NULL};
    (void)body;
    return http_send_static(q, "text/html; charset=utf-8", lfm2c_web_index, lfm2c_web_index_len, headers);
}

/* HEAD / always, GET / from an Ollama client (its User-Agent): "Ollama is running". */
static int route_ollama_root(http_req *q, json_t *body) {
    (void)body;
    char *s = strdup("Ollama is running");
    return s ? http_send_text(q, 200, "text/plain; charset=utf-8", s, strlen(s), NULL) : -1;
}

/* GET /: the page for a browser, Ollama's answer for an Ollama client. */
static int route_root(http_req *q, json_t *body) {
    const char *ua = http_header(q, "User-Agent");
    return ua && strcasestr(ua, "ollama") ? route_ollama_root(q, body) : route_page(q, body);
}

/* ---- /metrics ---------------------------------------------------------------------------------- */

/* A label value as the text format writes it (\\, \", \n escaped). */
static void label_value(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') fputc('\\', f);
        if (*s == '\n') fputs("\\n", f);
        else fputc(*s, f);
    }
}

/* The scheduler's series: one line each for the server (no label: every model summed, what a
 * balancer reads) and one per model that ran ({model="ID"}). */
enum {
    M_REQUESTS,
    M_PROMPT,
    M_CACHED,
    M_HIT,
    M_PREFILL,
    M_GENERATED,
    M_PREFILL_RATE,
    M_DECODE_RATE,
    M_QUEUE,
    M_ACTIVE,
    M_SLOTS,
    M_STEPS,
    V_WAITING,
    V_RUNNING,
    V_KV,
    V_GPU_KV,
    L_KV,
    V_PC_QUERIES,
    V_PC_HITS,
    V_PROMPT,
    V_GENERATION,
    S_DRAFTED,
    S_ACCEPTED,
    S_STEPS,
    P_CKPT,
    P_CKPT_BYTES,
    P_CKPT_MAX,
    P_COPIES,
    N_SERIES
};
static const struct {
    const char *name, *type, *help;
} SERIES[N_SERIES] = {
    {"lfm2c_requests_total", "counter", "Generation requests accepted."},
    {"lfm2c_prompt_tokens_total", "counter", "Prompt tokens of admitted requests."},
    {"lfm2c_prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's cached state."},
    {"lfm2c_prefix_cache_hit_ratio", "gauge", "Cached / all prompt tokens."},
    {"lfm2c_prefill_tokens_total", "counter", "Prompt tokens run through the model."},
    {"lfm2c_generated_tokens_total", "counter", "Completion tokens."},
    {"lfm2c_prefill_tokens_per_second", "gauge", "Prompt throughput over the server's life."},
    {"lfm2c_decode_tokens_per_second", "gauge", "Generation throughput over the server's life."},
    {"lfm2c_queue_depth", "gauge", "Requests waiting for a slot."},
    {"lfm2c_slots_active", "gauge", "Slots generating."},
    {"lfm2c_slots_total", "gauge", "Slots."},
    {"lfm2c_batch_steps_total", "counter", "Batched forward passes."},
    {"vllm:num_requests_waiting", "gauge", "Requests waiting for a slot (TotalQueuedRequests)."},
    {"vllm:num_requests_running", "gauge", "Requests being generated (TotalRunningRequests)."},
    {"vllm:kv_cache_usage_perc", "gauge", "Context state held by running requests, 0..1 (KVCacheUtilization)."},
    {"vllm:gpu_cache_usage_perc", "gauge", "Same as vllm:kv_cache_usage_perc (older name)."},
    {"lfm2c_kv_cache_usage_ratio", "gauge", "Context state held by running requests, 0..1."},
    {"vllm:prefix_cache_queries_total", "counter", "Prompt tokens looked up in the slots' cached state."},
    {"vllm:prefix_cache_hits_total", "counter", "Prompt tokens taken from a slot's cached state (not computed again)."},
    {"vllm:prompt_tokens_total", "counter", "Prompt tokens of admitted requests."},
    {"vllm:generation_tokens_total", "counter", "Generated tokens."},
    {"lfm2c_spec_drafted_tokens_total", "counter", "Tokens drafted for speculative decoding."},
    {"lfm2c_spec_accepted_tokens_total", "counter", "Drafted tokens the model accepted."},
    {"lfm2c_spec_steps_total", "counter", "Verification forwards that carried a draft."},
    {"lfm2c_checkpoints", "gauge", "Conv checkpoints held by the slots (prefix reuse)."},
    {"lfm2c_checkpoint_bytes", "gauge", "Memory of the slots' conv checkpoints and kept logits rows."},
    {"lfm2c_checkpoints_per_slot_max", "gauge", "The bound on each slot's checkpoints (--ckpt-max)."},
    {"lfm2c_prefix_copies_total", "counter", "Requests that copied a longer prefix from another slot."},
};

static void series_value(FILE *f, int k, const sched_stats *st) {
    switch (k) {
    case M_REQUESTS: fprintf(f, "%llu", (unsigned long long)st->requests); break;
    case M_PROMPT:
    case V_PC_QUERIES:
    case V_PROMPT: fprintf(f, "%llu", (unsigned long long)st->prompt_tokens); break;
    case M_CACHED:
    case V_PC_HITS: fprintf(f, "%llu", (unsigned long long)st->cached_tokens); break;
    case M_HIT:
        fprintf(f, "%.6f", st->prompt_tokens ? (double)st->cached_tokens / (double)st->prompt_tokens : 0);
        break;
    case M_PREFILL: fprintf(f, "%llu", (unsigned long long)st->prefill_tokens); break;
    case M_GENERATED:
    case V_GENERATION: fprintf(f, "%llu", (unsigned long long)st->generated_tokens); break;
    case M_PREFILL_RATE:
        fprintf(f, "%.3f", st->prefill_seconds > 0 ? (double)st->prefill_tokens / st->prefill_seconds : 0);
        break;
    case M_DECODE_RATE:
        fprintf(f, "%.3f", st->decode_seconds > 0 ? (double)st->generated_tokens / st->decode_seconds : 0);
        break;
    case M_QUEUE:
    case V_WAITING: fprintf(f, "%d", st->queue_depth); break;
    case M_ACTIVE:
    case V_RUNNING: fprintf(f, "%d", st->active_slots); break;
    case M_SLOTS: fprintf(f, "%d", st->n_slots); break;
    case M_STEPS: fprintf(f, "%llu", (unsigned long long)st->steps); break;
    case V_KV:
    case V_GPU_KV:
    case L_KV: fprintf(f, "%.6f", st->kv_usage); break;
    case S_DRAFTED: fprintf(f, "%llu", (unsigned long long)st->spec_drafted); break;
    case S_ACCEPTED: fprintf(f, "%llu", (unsigned long long)st->spec_accepted); break;
    case S_STEPS: fprintf(f, "%llu", (unsigned long long)st->spec_steps); break;
    case P_CKPT: fprintf(f, "%d", st->ckpt_count); break;
    case P_CKPT_BYTES: fprintf(f, "%zu", st->ckpt_bytes); break;
    case P_CKPT_MAX: fprintf(f, "%d", st->ckpt_max); break;
    case P_COPIES: fprintf(f, "%llu", (unsigned long long)st->prefix_copies); break;
    default: fputc('0', f);
    }
}

/* The models that ran (have counters), for the per-model lines. */
typedef struct metric_models {
    model_row *rows;
    int n;
} metric_models;

static void series(FILE *f, int k, const sched_stats *all, const metric_models *mm) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s ", SERIES[k].name, SERIES[k].help, SERIES[k].name, SERIES[k].type,
            SERIES[k].name);
    series_value(f, k, all);
    fputc('\n', f);
    for (int i = 0; i < mm->n; i++) {
        if (!mm->rows[i].have_stats) continue;
        fprintf(f, "%s{model=\"", SERIES[k].name);
        label_value(f, mm->rows[i].id);
        fputs("\"} ", f);
        series_value(f, k, &mm->rows[i].stats);
        fputc('\n', f);
    }
}

/* A latency histogram's buckets with extra labels (`labels`: "" or `model="ID",`). */
static void hist_lines(FILE *f, const char *name, const char *labels, const uint64_t *bucket, uint64_t count,
                       double sum) {
    static const double bounds[SCHED_N_LAT] = SCHED_LAT_BOUNDS;
    const char *sep = *labels ? "," : "";
    for (int i = 0; i < SCHED_N_LAT; i++)
        fprintf(f, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[i], (unsigned long long)bucket[i]);
    fprintf(f, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)count);
    size_t n = strlen(labels);
    fprintf(f, "%s_sum%s%.*s%s %.6f\n%s_count%s%.*s%s %llu\n", name, n ? "{" : "", (int)(n ? n - 1 : 0), labels,
            n ? "}" : "", sum, name, n ? "{" : "", (int)(n ? n - 1 : 0), labels, n ? "}" : "",
            (unsigned long long)count);
    (void)sep;
}

/* The latency histograms (vLLM's names and ours), for the server and per model. */
static void metrics_hist(FILE *f, const sched_stats *all, const metric_models *mm) {
    static const struct {
        const char *a, *b, *help;
    } h[3] = {{"vllm:time_to_first_token_seconds", "lfm2c_time_to_first_token_seconds", "Time to first token."},
              {"vllm:time_per_output_token_seconds", "lfm2c_time_per_output_token_seconds",
               "Time per output token after the first."},
              {"vllm:e2e_request_latency_seconds", "lfm2c_request_latency_seconds", "Submission to the last token."}};
    for (int i = 0; i < 6; i++) {
        const char *name = i % 2 ? h[i / 2].b : h[i / 2].a;
        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, h[i / 2].help, name);
        for (int m = -1; m < mm->n; m++) {
            const sched_stats *st = m < 0 ? all : &mm->rows[m].stats;
            if (m >= 0 && !mm->rows[m].have_stats) continue;
            const uint64_t *bk[3] = {st->ttft_bucket, st->tpot_bucket, st->e2e_bucket};
            const uint64_t cnt[3] = {st->ttft_count, st->tpot_count, st->e2e_count};
            const double sum[3] = {st->ttft_sum, st->tpot_sum, st->e2e_sum};
            os_memstream lm;
            FILE *lf = os_memstream_open(&lm);
            if (!lf) continue;
            if (m >= 0) {
                fputs("model=\"", lf);
                label_value(lf, mm->rows[m].id);
                fputs("\",", lf);
            }
            char *labels = os_memstream_close(&lm, NULL);
            hist_lines(f, name, labels ? labels : "", bk[i / 2], cnt[i / 2], sum[i / 2]);
            free(labels);
        }
    }
}

/* The scheduler thread's time by phase, for the server and per model. */
static void metrics_phases(FILE *f, const sched_stats *all, const metric_models *mm) {
    static const char *const phase[7] = {"admit", "plan", "forward", "lock", "sample", "idle", "render"};
    fprintf(f, "# HELP lfm2c_scheduler_seconds_total The scheduler thread's time by phase (admit: prefix sync "
               "and copies; lock: waiting for the streams' renderers after a forward; sample: sampling and taking "
               "the tokens; render: the streams' threads making events under the lock).\n# TYPE "
               "lfm2c_scheduler_seconds_total counter\n");
    for (int m = -1; m < mm->n; m++) {
        const sched_stats *st = m < 0 ? all : &mm->rows[m].stats;
        if (m >= 0 && !mm->rows[m].have_stats) continue;
        const double t[7] = {st->t_admit,  st->t_plan, st->t_forward, st->t_lock,
                             st->t_sample, st->t_idle, st->t_render};
        for (int i = 0; i < 7; i++) {
            fputs("lfm2c_scheduler_seconds_total{", f);
            if (m >= 0) {
                fputs("model=\"", f);
                label_value(f, mm->rows[m].id);
                fputs("\",", f);
            }
            fprintf(f, "phase=\"%s\"} %.6f\n", phase[i], t[i]);
        }
    }
}

/* The models themselves: loaded or not, their memory, their loads. */
static void metrics_models(FILE *f, const metric_models *mm) {
    static const char *const head[3][2] = {
        {"lfm2c_model_loaded", "1 while the model is loaded."},
        {"lfm2c_model_bytes", "What the model holds loaded: its file and its slots' KV caches (estimated before)."},
        {"lfm2c_model_loads_total", "Times the model was loaded."}};
    for (int k = 0; k < 3; k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", head[k][0], head[k][1], head[k][0], k == 2 ? "counter" : "gauge");
        for (int i = 0; i < mm->n; i++) {
            const model_row *r = &mm->rows[i];
            fprintf(f, "%s{model=\"", head[k][0]);
            label_value(f, r->id);
            fprintf(f, "\"} %llu\n",
                    k == 0   ? (unsigned long long)(r->state == MODEL_LOADED)
                    : k == 1 ? (unsigned long long)r->bytes
                             : (unsigned long long)r->loads);
        }
    }
}

/* What a load balancer or an inference gateway reads (the model-server-protocol gauges of the
 * Gateway API Inference Extension under vLLM's names: its endpoint picker works unchanged), the
 * HTTP layer's counters, every scheduler series, the models. */
static void metrics_text(FILE *f, http_req *q, const sched_stats *st, const metric_models *mm) {
    http_stats hs;
    http_get_stats(http_of(q), &hs);
    for (int k = 0; k < N_SERIES; k++) series(f, k, st, mm);
    fprintf(f,
            "# HELP lfm2c_http_responses_total HTTP responses by status class.\n# TYPE lfm2c_http_responses_total "
            "counter\nlfm2c_http_responses_total{class=\"2xx\"} %llu\nlfm2c_http_responses_total{class=\"4xx\"} "
            "%llu\nlfm2c_http_responses_total{class=\"5xx\"} %llu\n"
            "# HELP lfm2c_http_connections_open Open client connections.\n# TYPE lfm2c_http_connections_open "
            "gauge\nlfm2c_http_connections_open %d\n"
            "# HELP lfm2c_http_connections_pending Connections not being answered (headers, body or keep-alive "
            "idle).\n# TYPE lfm2c_http_connections_pending gauge\nlfm2c_http_connections_pending %d\n"
            "# HELP lfm2c_http_connections_evicted_total Pending connections closed to make room.\n# TYPE "
            "lfm2c_http_connections_evicted_total counter\nlfm2c_http_connections_evicted_total %llu\n"
            "# HELP lfm2c_http_connections_refused_total Connections refused at a limit.\n# TYPE "
            "lfm2c_http_connections_refused_total counter\nlfm2c_http_connections_refused_total %llu\n"
            "# HELP lfm2c_http_request_memory_bytes Memory charged by the requests in progress "
            "(--max-request-memory).\n# TYPE lfm2c_http_request_memory_bytes gauge\n"
            "lfm2c_http_request_memory_bytes %zu\n"
            "# HELP lfm2c_ready 1 when GET /ready would answer 200 (queue limit aside).\n"
            "# TYPE lfm2c_ready gauge\nlfm2c_ready %d\n",
            (unsigned long long)hs.by_class[2], (unsigned long long)hs.by_class[4], (unsigned long long)hs.by_class[5],
            hs.n_open, hs.n_pending, (unsigned long long)hs.evicted, (unsigned long long)hs.refused, hs.memory,
            http_state(http_of(q)) == HTTP_READY);
    metrics_hist(f, st, mm);
    metrics_phases(f, st, mm);
    metrics_models(f, mm);
}

/* GET /metrics (Prometheus text), with --metrics. */
static int route_metrics(http_req *q, json_t *body) {
    serve_shared *sh = http_app(q);
    (void)body;
    if (!sh->p.metrics) {
        http_err e;
        http_set_err(&e, 404, "not_found", NULL, "metrics are off (start the server with --metrics)");
        return http_send_err(q, &e);
    }
    sched_stats st = {0};
    metric_models mm = {0};
    if (sh->models) {
        models_stats(sh->models, &st);
        mm.n = models_list(sh->models, false, &mm.rows);
    }
    char *buf = NULL;
    size_t len = 0;
    os_memstream ms;
    FILE *f = os_memstream_open(&ms);
    if (f) {
        metrics_text(f, q, &st, &mm);
        buf = os_memstream_close(&ms, &len);
    }
    free(mm.rows);
    if (!f || !buf) return free(buf), -1;
    return http_send_text(q, 200, "text/plain; version=0.0.4", buf, len, NULL);
}
static const http_route lifecycle_routes[] = {
    {HTTP_GET | HTTP_HEAD, "/health", route_health, HTTP_PUBLIC, NULL},
    {HTTP_GET | HTTP_HEAD, "/ready", route_ready, HTTP_PUBLIC, NULL},
    {HTTP_HEAD, "/", route_ollama_root, HTTP_PUBLIC, NULL},
    {HTTP_GET, "/", route_root, HTTP_PUBLIC, NULL},
    {HTTP_GET, "/index.html", route_page, HTTP_PUBLIC, NULL},
    {HTTP_GET | HTTP_HEAD, "/metrics", route_metrics, 0, NULL},
};

/* The one route table: every API's rows, in one array (built once, read-only after). */
static http_route routes[64];
static int n_routes;
static bool routes_overflow; /* a row did not fit: the server refuses to start */
static pthread_once_t routes_once = PTHREAD_ONCE_INIT;

static void add_routes(const http_route *r, int n) {
    for (int i = 0; i < n; i++) {
        if (n_routes == (int)(sizeof routes / sizeof *routes)) {
            routes_overflow = true;
            return;
        }
        routes[n_routes++] = r[i];
    }
}

static void build_routes(void) {
    add_routes(lifecycle_routes, (int)(sizeof lifecycle_routes / sizeof *lifecycle_routes));
    add_routes(openai_routes, openai_n_routes);
    add_routes(responses_routes, responses_n_routes);
    add_routes(anthropic_routes, anthropic_n_routes);
    add_routes(ollama_routes, ollama_n_routes);
    add_routes(models_routes, models_n_routes);
    add_routes(embedding_routes, embedding_n_routes);
    add_routes(audio_routes, audio_n_routes);
}

/* The error shape of a path (any path, routed or not): that of the API it belongs to. */
static http_err_shape error_for_path(const char *path) {
    const dialect *dl = dialect_for_url(path);
    return dl ? dl->error : NULL;
}

/* ---- life cycle --------------------------------------------------------------------------------- */

serve_shared *server_shared(server *srv) { return &srv->sh; }

void server_set_models(server *srv, serve_models *models) { srv->sh.models = models; }

void server_ready(server *srv) { http_set_state(srv->h, SERVER_READY); }

void server_drain(server *srv) { http_set_state(srv->h, SERVER_DRAINING); }

server *server_start(const server_params *p, lfm2c_error *err) {
    server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    server_params q = *p;
    if (!q.max_body) q.max_body = SERVER_DEFAULT_MAX_BODY;
    if (!q.max_request_memory) q.max_request_memory = SERVER_DEFAULT_REQUEST_MEMORY;
    if (q.idle_timeout <= 0) q.idle_timeout = SERVER_DEFAULT_IDLE_TIMEOUT;
    if (q.timeout <= 0) q.timeout = SERVER_DEFAULT_TIMEOUT;
    if (q.max_connections <= 0) q.max_connections = SERVER_DEFAULT_MAX_CONNECTIONS;
    if (q.max_pending_per_ip == 0) q.max_pending_per_ip = SERVER_DEFAULT_MAX_PENDING_PER_IP;
    if (!q.max_tokenize_bytes) q.max_tokenize_bytes = SERVER_DEFAULT_MAX_TOKENIZE_BYTES;
    if (q.max_detokenize_tokens <= 0) q.max_detokenize_tokens = SERVER_DEFAULT_MAX_DETOKENIZE_TOKENS;
    if (q.max_messages <= 0) q.max_messages = SERVER_DEFAULT_MAX_MESSAGES;
    if (q.max_stop_bytes <= 0) q.max_stop_bytes = SERVER_DEFAULT_MAX_STOP_BYTES;
    pthread_once(&routes_once, build_routes);
    if (routes_overflow) {
        lfm2c_set_error(err, LFM2C_EINVAL, "the route table holds at most %d routes",
                        (int)(sizeof routes / sizeof *routes));
        free(srv);
        return NULL;
    }
    serve_shared_init(&srv->sh, &q);
    http_params hp = {.host = q.host,
                      .port = q.port,
                      .api_key = q.api_key,
                      .cors_origin = q.cors_origin,
                      .allowed_hosts = q.allowed_hosts,
                      .max_body = q.max_body,
                      .idle_timeout = q.idle_timeout,
                      .timeout = q.timeout,
                      .max_connections = q.max_connections,
                      .max_connections_per_ip = q.max_connections_per_ip,
                      .max_pending_per_ip = q.max_pending_per_ip,
                      .big_parallel = SERVER_AUX_PARALLEL,
                      .max_memory = q.max_request_memory,
                      .log = q.log,
                      .log_user = q.log_user,
                      .error_for_path = error_for_path,
                      .routes = routes,
                      .n_routes = n_routes,
                      .app = &srv->sh};
    srv->h = http_start(&hp, SERVER_LOADING, err);
    if (!srv->h) {
        serve_shared_free(&srv->sh);
        free(srv);
        return NULL;
    }
    return srv;
}

int server_port(const server *srv) { return http_port(srv->h); }

void server_stop(server *srv) {
    if (!srv) return;
    http_quiesce(srv->h);              /* refuse new connections */
    serve_shared_stop_pulls(&srv->sh); /* downloads stop (a later pull resumes them) */
    /* let answers of requests the scheduler just ended reach their clients (bounded wait) */
    for (int i = 0; i < 150 && serve_shared_jobs(&srv->sh); i++) { os_sleep_s(0.010); }
    http_stop(srv->h); /* whatever is still open is cut */
    serve_shared_free(&srv->sh);
    free(srv);
}
