/* server.c — `lfm2c serve`: the transport (http.c) with one route table, made of the lifecycle
 * routes here (/health, /ready, /metrics, the chat page at /), the OpenAI routes (openai.c) and
 * the other APIs' routes (server_responses.c, server_anthropic.c, server_ollama.c); and the
 * server's life: loading -> ready -> draining (what a load balancer's probes read), stop.
 * A new endpoint is one row in one of those tables and its handler. */
#include "serve/server.h"
#include "base/error.h"
#include "serve/http.h"
#include "serve/job.h"
#include "serve/embeddings.h"
#include "serve/openai.h"
#include "serve/server_dialect.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

_Static_assert((int)SERVER_LOADING == (int)HTTP_LOADING && (int)SERVER_READY == (int)HTTP_READY &&
                   (int)SERVER_DRAINING == (int)HTTP_DRAINING,
               "server.h and http.h name the same states");

struct server {
    http *h;
    serve_api api; /* what every handler reads (http_app) */
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
    serve_api *api = http_app(q);
    int state = http_state(http_of(q)), queued = -1;
    (void)body;
    if (state == SERVER_READY && api->p.ready_queue_max > 0) {
        sched_stats st;
        sched_get_stats(api->sched, &st);
        queued = st.queue_depth;
        if (queued >= api->p.ready_queue_max) state = -1;
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

/* The chat page (web/index.html, compiled in): public, so it can ask for the API key itself. */
extern const unsigned char lfm2c_web_index[];
extern const size_t lfm2c_web_index_len;
static int route_page(http_req *q, json_t *body) {
    static const char *const headers[] = {
        "Cache-Control", "no-cache", "Content-Security-Policy",
        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:", NULL};
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

static void metric_hist(FILE *f, const char *name, const char *help, const uint64_t *bucket, uint64_t count,
                        double sum) {
    static const double bounds[SCHED_N_LAT] = SCHED_LAT_BOUNDS;
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < SCHED_N_LAT; i++)
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)bucket[i]);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)count, name, sum,
            name, (unsigned long long)count);
}

/* What a load balancer or an inference gateway reads: the model-server-protocol gauges of the
 * Gateway API Inference Extension under vLLM's names (its endpoint picker works unchanged),
 * prefix-cache counters, latency histograms, readiness. */
static void metrics_gateway(FILE *f, const sched_stats *st, int state) {
    fprintf(f,
            "# HELP vllm:num_requests_waiting Requests waiting for a slot (TotalQueuedRequests).\n"
            "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting %d\n"
            "# HELP vllm:num_requests_running Requests being generated (TotalRunningRequests).\n"
            "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running %d\n"
            "# HELP vllm:kv_cache_usage_perc Context state held by running requests, 0..1 (KVCacheUtilization).\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc %.6f\n"
            "# HELP vllm:gpu_cache_usage_perc Same as vllm:kv_cache_usage_perc (older name).\n"
            "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc %.6f\n"
            "# HELP lfm2c_kv_cache_usage_ratio Context state held by running requests, 0..1.\n"
            "# TYPE lfm2c_kv_cache_usage_ratio gauge\nlfm2c_kv_cache_usage_ratio %.6f\n"
            "# HELP vllm:prefix_cache_queries_total Prompt tokens looked up in the slots' cached state.\n"
            "# TYPE vllm:prefix_cache_queries_total counter\nvllm:prefix_cache_queries_total %llu\n"
            "# HELP vllm:prefix_cache_hits_total Prompt tokens taken from a slot's cached state (not computed again).\n"
            "# TYPE vllm:prefix_cache_hits_total counter\nvllm:prefix_cache_hits_total %llu\n"
            "# HELP vllm:prompt_tokens_total Prompt tokens of admitted requests.\n"
            "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total %llu\n"
            "# HELP vllm:generation_tokens_total Generated tokens.\n"
            "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total %llu\n"
            "# HELP lfm2c_ready 1 when GET /ready would answer 200 (queue limit aside).\n"
            "# TYPE lfm2c_ready gauge\nlfm2c_ready %d\n",
            st->queue_depth, st->active_slots, st->kv_usage, st->kv_usage, st->kv_usage,
            (unsigned long long)st->prompt_tokens, (unsigned long long)st->cached_tokens,
            (unsigned long long)st->prompt_tokens, (unsigned long long)st->generated_tokens, state == HTTP_READY);
    static const struct {
        const char *a, *b, *help;
    } h[3] = {{"vllm:time_to_first_token_seconds", "lfm2c_time_to_first_token_seconds", "Time to first token."},
              {"vllm:time_per_output_token_seconds", "lfm2c_time_per_output_token_seconds",
               "Time per output token after the first."},
              {"vllm:e2e_request_latency_seconds", "lfm2c_request_latency_seconds", "Submission to the last token."}};
    const uint64_t *bk[3] = {st->ttft_bucket, st->tpot_bucket, st->e2e_bucket};
    uint64_t cnt[3] = {st->ttft_count, st->tpot_count, st->e2e_count};
    double sum[3] = {st->ttft_sum, st->tpot_sum, st->e2e_sum};
    for (int i = 0; i < 3; i++) {
        metric_hist(f, h[i].a, h[i].help, bk[i], cnt[i], sum[i]);
        metric_hist(f, h[i].b, h[i].help, bk[i], cnt[i], sum[i]);
    }
}

/* Prefix reuse's own state: the slots' conv checkpoints (count, memory, bound) and copies of
 * another slot's prefix. */
static void metrics_prefix(FILE *f, const sched_stats *st) {
    fprintf(f,
            "# HELP lfm2c_checkpoints Conv checkpoints held by the slots (prefix reuse).\n"
            "# TYPE lfm2c_checkpoints gauge\nlfm2c_checkpoints %d\n"
            "# HELP lfm2c_checkpoint_bytes Memory of the slots' conv checkpoints and kept logits rows.\n"
            "# TYPE lfm2c_checkpoint_bytes gauge\nlfm2c_checkpoint_bytes %zu\n"
            "# HELP lfm2c_checkpoints_per_slot_max The bound on each slot's checkpoints (--ckpt-max).\n"
            "# TYPE lfm2c_checkpoints_per_slot_max gauge\nlfm2c_checkpoints_per_slot_max %d\n"
            "# HELP lfm2c_prefix_copies_total Requests that copied a longer prefix from another slot.\n"
            "# TYPE lfm2c_prefix_copies_total counter\nlfm2c_prefix_copies_total %llu\n",
            st->ckpt_count, st->ckpt_bytes, st->ckpt_max, (unsigned long long)st->prefix_copies);
    static const char *const phase[7] = {"admit", "plan", "forward", "lock", "sample", "idle", "render"};
    const double t[7] = {st->t_admit, st->t_plan, st->t_forward, st->t_lock, st->t_sample, st->t_idle, st->t_render};
    fprintf(f, "# HELP lfm2c_scheduler_seconds_total The scheduler thread's time by phase (admit: prefix sync "
               "and copies; lock: waiting for the streams' renderers after a forward; sample: sampling and taking "
               "the tokens; render: the streams' threads making events under the lock).\n# TYPE "
               "lfm2c_scheduler_seconds_total counter\n");
    for (int i = 0; i < 7; i++) fprintf(f, "lfm2c_scheduler_seconds_total{phase=\"%s\"} %.6f\n", phase[i], t[i]);
}

/* GET /metrics (Prometheus text), with --metrics. */
static int route_metrics(http_req *q, json_t *body) {
    serve_api *api = http_app(q);
    (void)body;
    if (!api->p.metrics) {
        http_err e;
        http_set_err(&e, 404, "not_found", NULL, "metrics are off (start the server with --metrics)");
        return http_send_err(q, &e);
    }
    sched_stats st;
    sched_get_stats(api->sched, &st);
    http_stats hs;
    http_get_stats(http_of(q), &hs);
    const uint64_t *h = hs.by_class;
    int n_open = hs.n_open, n_pending = hs.n_pending;
    uint64_t evicted = hs.evicted, refused = hs.refused;
    enum { CAP = 6144 };
    char *buf = malloc(CAP);
    if (!buf) return -1;
    double hit = st.prompt_tokens ? (double)st.cached_tokens / (double)st.prompt_tokens : 0;
    int n = snprintf(
        buf, CAP,
        "# HELP lfm2c_requests_total Generation requests accepted.\n# TYPE lfm2c_requests_total "
        "counter\nlfm2c_requests_total %llu\n"
        "# HELP lfm2c_http_responses_total HTTP responses by status class.\n# TYPE lfm2c_http_responses_total counter\n"
        "lfm2c_http_responses_total{class=\"2xx\"} %llu\nlfm2c_http_responses_total{class=\"4xx\"} %llu\n"
        "lfm2c_http_responses_total{class=\"5xx\"} %llu\n"
        "# HELP lfm2c_prompt_tokens_total Prompt tokens of admitted requests.\n# TYPE lfm2c_prompt_tokens_total "
        "counter\nlfm2c_prompt_tokens_total %llu\n"
        "# HELP lfm2c_prompt_tokens_cached_total Prompt tokens reused from a slot's cached state.\n# TYPE "
        "lfm2c_prompt_tokens_cached_total counter\nlfm2c_prompt_tokens_cached_total %llu\n"
        "# HELP lfm2c_prefix_cache_hit_ratio Cached / all prompt tokens.\n# TYPE lfm2c_prefix_cache_hit_ratio "
        "gauge\nlfm2c_prefix_cache_hit_ratio %.6f\n"
        "# HELP lfm2c_prefill_tokens_total Prompt tokens run through the model.\n# TYPE lfm2c_prefill_tokens_total "
        "counter\nlfm2c_prefill_tokens_total %llu\n"
        "# HELP lfm2c_generated_tokens_total Completion tokens.\n# TYPE lfm2c_generated_tokens_total "
        "counter\nlfm2c_generated_tokens_total %llu\n"
        "# HELP lfm2c_prefill_tokens_per_second Prompt throughput over the server's life.\n# TYPE "
        "lfm2c_prefill_tokens_per_second gauge\nlfm2c_prefill_tokens_per_second %.3f\n"
        "# HELP lfm2c_decode_tokens_per_second Generation throughput over the server's life.\n# TYPE "
        "lfm2c_decode_tokens_per_second gauge\nlfm2c_decode_tokens_per_second %.3f\n"
        "# HELP lfm2c_queue_depth Requests waiting for a slot.\n# TYPE lfm2c_queue_depth gauge\nlfm2c_queue_depth %d\n"
        "# HELP lfm2c_slots_active Slots generating.\n# TYPE lfm2c_slots_active gauge\nlfm2c_slots_active %d\n"
        "# HELP lfm2c_slots_total Slots.\n# TYPE lfm2c_slots_total gauge\nlfm2c_slots_total %d\n"
        "# HELP lfm2c_batch_steps_total Batched forward passes.\n# TYPE lfm2c_batch_steps_total "
        "counter\nlfm2c_batch_steps_total %llu\n"
        "# HELP lfm2c_http_connections_open Open client connections.\n# TYPE lfm2c_http_connections_open "
        "gauge\nlfm2c_http_connections_open %d\n"
        "# HELP lfm2c_http_connections_pending Connections not being answered (headers, body or keep-alive idle).\n# "
        "TYPE lfm2c_http_connections_pending gauge\nlfm2c_http_connections_pending %d\n"
        "# HELP lfm2c_http_connections_evicted_total Pending connections closed to make room.\n# TYPE "
        "lfm2c_http_connections_evicted_total counter\nlfm2c_http_connections_evicted_total %llu\n"
        "# HELP lfm2c_http_connections_refused_total Connections refused at a limit.\n# TYPE "
        "lfm2c_http_connections_refused_total counter\nlfm2c_http_connections_refused_total %llu\n"
        "# HELP lfm2c_http_request_memory_bytes Memory charged by the requests in progress (--max-request-memory).\n# "
        "TYPE lfm2c_http_request_memory_bytes gauge\nlfm2c_http_request_memory_bytes %zu\n",
        (unsigned long long)st.requests, (unsigned long long)h[2], (unsigned long long)h[4], (unsigned long long)h[5],
        (unsigned long long)st.prompt_tokens, (unsigned long long)st.cached_tokens, hit,
        (unsigned long long)st.prefill_tokens, (unsigned long long)st.generated_tokens,
        st.prefill_seconds > 0 ? (double)st.prefill_tokens / st.prefill_seconds : 0,
        st.decode_seconds > 0 ? (double)st.generated_tokens / st.decode_seconds : 0, st.queue_depth, st.active_slots,
        st.n_slots, (unsigned long long)st.steps, n_open, n_pending, (unsigned long long)evicted,
        (unsigned long long)refused, hs.memory);
    size_t len = (size_t)(n < CAP ? n : CAP - 1);
    char *more = NULL;
    size_t n_more = 0;
    FILE *f = open_memstream(&more, &n_more);
    if (f) {
        metrics_gateway(f, &st, http_state(http_of(q)));
        fprintf(f,
                "# HELP lfm2c_spec_drafted_tokens_total Tokens drafted for speculative decoding.\n"
                "# TYPE lfm2c_spec_drafted_tokens_total counter\nlfm2c_spec_drafted_tokens_total %llu\n"
                "# HELP lfm2c_spec_accepted_tokens_total Drafted tokens the model accepted.\n"
                "# TYPE lfm2c_spec_accepted_tokens_total counter\nlfm2c_spec_accepted_tokens_total %llu\n"
                "# HELP lfm2c_spec_steps_total Verification forwards that carried a draft.\n"
                "# TYPE lfm2c_spec_steps_total counter\nlfm2c_spec_steps_total %llu\n",
                (unsigned long long)st.spec_drafted, (unsigned long long)st.spec_accepted,
                (unsigned long long)st.spec_steps);
        metrics_prefix(f, &st);
        fclose(f);
    }
    char *all = more ? realloc(buf, len + n_more + 1) : NULL;
    if (all) {
        memcpy(all + len, more, n_more + 1);
        buf = all;
        len += n_more;
    }
    free(more);
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
    add_routes(embedding_routes, embedding_n_routes);
}

/* The error shape of a path (any path, routed or not): that of the API it belongs to. */
static http_err_shape error_for_path(const char *path) {
    const dialect *dl = dialect_for_url(path);
    return dl ? dl->error : NULL;
}

/* ---- life cycle --------------------------------------------------------------------------------- */

void server_attach(server *srv, lfm2c_model *model, sched *s, int n_ctx) {
    serve_api_attach(&srv->api, model, s, n_ctx);
    http_set_state(srv->h, SERVER_READY);
}

void server_drain(server *srv) { http_set_state(srv->h, SERVER_DRAINING); }

server *server_start(lfm2c_model *model, sched *s, const server_params *p, lfm2c_error *err) {
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
    serve_api_init(&srv->api, model, s, &q);
    http_params hp = {.host = q.host,
                      .port = q.port,
                      .api_key = q.api_key,
                      .cors_origin = q.cors_origin,
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
                      .app = &srv->api};
    srv->h = http_start(&hp, model && s ? SERVER_READY : SERVER_LOADING, err);
    if (!srv->h) {
        serve_api_free(&srv->api);
        free(srv);
        return NULL;
    }
    return srv;
}

int server_port(const server *srv) { return http_port(srv->h); }

void server_stop(server *srv) {
    if (!srv) return;
    http_quiesce(srv->h); /* refuse new connections */
    /* let answers of requests the scheduler just ended reach their clients (bounded wait) */
    for (int i = 0; i < 150 && serve_api_jobs(&srv->api); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    http_stop(srv->h); /* whatever is still open is cut */
    serve_api_free(&srv->api);
    free(srv);
}
