/* bench_sched.c — the serving scheduler's host time per step (src/serve/scheduler.c), without a
 * GPU: a model whose backend is a fake (tests/serve/fake_backend.h: its forward only fills each
 * output row, or draws it "on the device" as the CUDA backend does with LFM2C_CUDA_SAMPLE=1), and
 * one client thread per stream that submits a request, renders its new text as OpenAI stream
 * chunks under the scheduler's lock (dialect_openai's event renderer, as job.c's streams do) and
 * submits the next when it ends. After a warm-up, a window of steps is timed from the
 * scheduler's own accounts (sched_stats): admitting, planning, the forward call less the fake's
 * own time (session.c's batch bookkeeping), waiting for the lock, delivering (sampling on the host
 * where it does, detokenizing, stop strings, logprobs) and the streams' rendering.
 *
 * Usage: bench_sched [-m MODEL.gguf] [--streams 64,256,1024] [--steps N] [--prompt P] [--gen G]
 *                    [--host-sample] [--budget B] [--forward-ms MS] [--cpu]
 * Without -m it writes a model with LFM2's vocabulary of 65,536 tokens (and little else) to
 * /tmp. --host-sample: the fake samples nothing (every row to the host, the CUDA backend without
 * LFM2C_CUDA_SAMPLE=1); --cpu: the CPU path's configuration (the host fake, no token budget,
 * prompt chunks of 512) at --streams 8 by default; --forward-ms: what each forward takes (default
 * 30, about a 1,024-row decode step at the 30K tok/s: the streams render while it runs,
 * as they do while a GPU computes). Prints one markdown row per stream count. */
#include "serve/scheduler.h"
#include "serve/api_dialect.h"
#include "serve/job.h"
#include "base/clock.h"
#include "convert/synth.h"
#include "serve/fake_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench_cfg {
    const char *model;
    int streams[16], n_streams;
    int steps, prompt, gen, budget;
    int vocab;      /* the model's */
    int forward_ms; /* each forward's time (the device's step) */
    bool host_sample, cpu;
} bench_cfg;

typedef struct client {
    sched *s;
    const bench_cfg *c;
    int id;
    volatile int *stop;
    size_t bytes; /* rendered */
} client;

static void sink(void *ctx, const char *p, size_t n) {
    (void)p;
    *(size_t *)ctx += n;
}

/* One stream: its new text as OpenAI chat chunks (lock held), as job.c's stream_pump does. */
static void render(client *cl, job *j, sched_req *r, size_t *sent, bool *started) {
    if (!*started) {
        *started = true;
        dialect_openai.event(NULL, NULL, &(job_event){.kind = JOB_EV_START, .job = j}, sink, &cl->bytes);
    }
    if (r->n_released > *sent) {
        job_event ev = {.kind = JOB_EV_TEXT, .text = r->text + *sent, .n = r->n_released - *sent, .job = j};
        *sent = r->n_released;
        dialect_openai.event(NULL, NULL, &ev, sink, &cl->bytes);
    }
    if (r->finish != FINISH_NONE) {
        dialect_openai.event(NULL, NULL, &(job_event){.kind = JOB_EV_FINISH, .finish = JOB_LENGTH, .job = j}, sink,
                             &cl->bytes);
        dialect_openai.event(NULL, NULL, &(job_event){.kind = JOB_EV_END, .job = j}, sink, &cl->bytes);
    }
}

static void *client_main(void *arg) {
    client *cl = arg;
    const int V = cl->c->vocab;
    uint32_t seed = 1000u + (uint32_t)cl->id * 7919u;
    for (int k = 0; !*cl->stop; k++) {
        sched_req *r = sched_req_new();
        r->prompt = malloc(sizeof(int32_t) * (size_t)cl->c->prompt);
        for (int i = 0; i < cl->c->prompt; i++) {
            seed = seed * 1664525u + 1013904223u;
            r->prompt[i] = V / 16 + (int32_t)((seed >> 8) % (uint32_t)(V / 2)); /* past the specials */
        }
        r->n_prompt = cl->c->prompt;
        r->max_tokens = cl->c->gen;
        r->sampling.seed = seed;
        job j = {.rs = &r, .n_rs = 1, .chat = true, .model_id = "bench", .created = 0};
        snprintf(j.id, sizeof j.id, "chatcmpl-%d-%d", cl->id, k);
        if (sched_submit(cl->s, r) != 0) {
            sched_release(cl->s, r);
            usleep(1000);
            continue;
        }
        size_t sent = 0;
        bool started = false;
        sched_lock(cl->s);
        for (;;) {
            const double t0 = lfm2c_now_s();
            render(cl, &j, r, &sent, &started);
            sched_add_render_time(cl->s, lfm2c_now_s() - t0);
            if (r->finish != FINISH_NONE || *cl->stop) break;
            sched_wait(cl->s, r, 100);
        }
        sched_unlock(cl->s);
        sched_release(cl->s, r);
    }
    return NULL;
}

/* A model with LFM2's vocabulary and little else (the fake backend never reads its weights). */
static const char *make_model(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/lfm2c-bench-sched-%d.gguf", (int)getpid());
    synth_config c;
    synth_preset("lfm2-350m", &c);
    c.hidden = 64, c.n_layer = 2, c.n_attn = 1, c.attn_layers[0] = 1, c.n_head = 2, c.n_head_kv = 1, c.ff = 128;
    synth_params sp = {.seed = 1, .n_threads = 1};
    lfm2c_error err = {0};
    if (!synth_write(&c, quant_ftype_find("q8_0"), &sp, path, NULL, &err)) {
        fprintf(stderr, "bench_sched: synth: %s\n", err.msg);
        return NULL;
    }
    return path;
}

typedef struct window {
    sched_stats st;
    fake_counts fk;
    double wall;
} window;

static window snap(sched *s) {
    window w;
    sched_get_stats(s, &w.st);
    w.fk = fake_n;
    w.wall = lfm2c_now_s();
    return w;
}

/* Waits until the scheduler has run `steps` more steps (or 600 s). */
static void wait_steps(sched *s, uint64_t steps) {
    sched_stats st;
    sched_get_stats(s, &st);
    const uint64_t want = st.steps + steps;
    const double t0 = lfm2c_now_s();
    while (st.steps < want && lfm2c_now_s() - t0 < 600) {
        usleep(2000);
        sched_get_stats(s, &st);
    }
}

static void print_row(const bench_cfg *c, int n, const window *a, const window *b) {
    const double steps = (double)(b->st.steps - a->st.steps);
    if (steps <= 0) return;
    const double fake_s = b->fk.seconds - a->fk.seconds;
    const double admit = b->st.t_admit - a->st.t_admit, plan = b->st.t_plan - a->st.t_plan;
    const double fwd = b->st.t_forward - a->st.t_forward - fake_s, lock = b->st.t_lock - a->st.t_lock;
    const double deliver = b->st.t_sample - a->st.t_sample, rend = b->st.t_render - a->st.t_render;
    const double host = admit + plan + fwd + lock + deliver;
    const double other = (b->wall - a->wall) - host - fake_s; /* outside the accounts: waits for the CPU, the lock */
    const double rows = (double)(b->fk.rows - a->fk.rows), toks = (double)(b->st.batch_tokens - a->st.batch_tokens);
    printf("| %d | %s | %.0f | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | **%.3f** | %.3f | %.3f | %.2f |\n", n,
           c->cpu           ? "cpu path"
           : c->host_sample ? "host sampling"
                            : "device sampling",
           toks / steps, rows / steps, 1e3 * admit / steps, 1e3 * plan / steps, 1e3 * fwd / steps, 1e3 * lock / steps,
           1e3 * deliver / steps, 1e3 * rend / steps, 1e3 * host / steps, 1e3 * fake_s / steps, 1e3 * other / steps,
           (b->wall - a->wall) / steps * 1e3);
    fflush(stdout);
}

static int run(const bench_cfg *c, lfm2c_model *m, int n) {
    lfm2c_error err = {0};
    sched_params p = {.n_slots = n,
                      .n_ctx = c->prompt + c->gen + 8,
                      .queue_max = n,
                      .prefill_chunk = c->cpu ? 512 : 2048,
                      .token_budget = c->cpu ? 0 : c->budget};
    sched *s = sched_new(m, &p, &err);
    if (!s) return fprintf(stderr, "bench_sched: %s\n", err.msg), 1;
    volatile int stop = 0;
    client *cl = calloc((size_t)n, sizeof *cl);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 << 10);
    for (int i = 0; i < n; i++) {
        cl[i] = (client){.s = s, .c = c, .id = i, .stop = &stop};
        pthread_create(&th[i], &at, client_main, &cl[i]);
    }
    /* warm-up: every stream admitted and its prompt read once (prompt / room steps and then some) */
    wait_steps(s, (uint64_t)(c->gen / 2 + 2));
    const window a = snap(s);
    wait_steps(s, (uint64_t)c->steps);
    const window b = snap(s);
    print_row(c, n, &a, &b);
    stop = 1;
    sched_shutdown(s);
    sched_stats st;
    sched_get_stats(s, &st);
    fprintf(stderr, "bench_sched: %d streams: %llu steps in all\n", n, (unsigned long long)st.steps);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    sched_free(s);
    free(cl);
    free(th);
    pthread_attr_destroy(&at);
    return 0;
}

static int parse(int argc, char **argv, bench_cfg *c) {
    *c = (bench_cfg){.steps = 40, .prompt = 64, .gen = 256, .budget = 2048, .forward_ms = 30};
    const char *streams = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--host-sample")) c->host_sample = true;
        else if (!strcmp(a, "--cpu")) c->cpu = c->host_sample = true;
        else if (v && !strcmp(a, "-m")) c->model = v, i++;
        else if (v && !strcmp(a, "--streams")) streams = v, i++;
        else if (v && !strcmp(a, "--steps")) c->steps = atoi(v), i++;
        else if (v && !strcmp(a, "--prompt")) c->prompt = atoi(v), i++;
        else if (v && !strcmp(a, "--gen")) c->gen = atoi(v), i++;
        else if (v && !strcmp(a, "--budget")) c->budget = atoi(v), i++;
        else if (v && !strcmp(a, "--forward-ms")) c->forward_ms = atoi(v), i++;
        else return fprintf(stderr, "usage: see bench/bench_sched.c's header (%s)\n", a), 2;
    }
    if (!streams) streams = c->cpu ? "8" : "64,256,1024";
    for (const char *p = streams; *p && c->n_streams < 16; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        const int n = atoi(p);
        if (n < 1 || n > 1024) return fprintf(stderr, "bench_sched: streams are 1..1024\n"), 2;
        c->streams[c->n_streams++] = n;
    }
    if (c->steps < 1 || c->prompt < 1 || c->gen < 2 || c->budget < 0 || c->forward_ms < 0)
        return fprintf(stderr, "bench_sched: bad sizes\n"), 2;
    return 0;
}

int main(int argc, char **argv) {
    bench_cfg c;
    int rc = parse(argc, argv, &c);
    if (rc) return rc;
    char path[128];
    const char *mp = c.model ? c.model : make_model(path, sizeof path);
    if (!mp) return 1;
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 1;
    p.hugepages = LFM2C_HUGEPAGES_OFF;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(mp, &p, &err);
    if (!c.model) unlink(mp);
    if (!m) return fprintf(stderr, "bench_sched: %s\n", err.msg), 1;
    fake_attach(m, c.host_sample ? &fake_backend_host : &fake_backend_dev);
    fake_fast = true; /* a device's draws take no host time */
    fake_sleep_us = 1000L * c.forward_ms;
    c.vocab = lfm2c_vocab_size(m);
    printf("vocabulary %d, prompts of %d tokens, %d generated each, token budget %d, a forward %d ms, %d steps timed "
           "(ms a step)\n\n",
           lfm2c_vocab_size(m), c.prompt, c.gen, c.cpu ? 0 : c.budget, c.forward_ms, c.steps);
    printf("| streams | sampling | tokens | rows | admit | plan | batch call | lock wait | deliver | render | "
           "**host** | fake forward | other | step "
           "|\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < c.n_streams && !rc; i++) rc = run(&c, m, c.streams[i]);
    lfm2c_model_free(m);
    fake_cleanup();
    return rc;
}
