/* cmd_bench.c — `lfm2c bench`: prefill (ppN) and decode (tgN) speed, in llama-bench's table and
 * JSON shapes so the numbers compare directly; plus achieved GB/s of weights per decoded token,
 * peak RSS, and a batched mode (-b B: B sequences decoded together, total tokens/s). */
#include "cli.h"
#include "threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct result {
    const char *test;   /* "pp" / "tg" / "batch" */
    int n_prompt, n_gen, batch;
    double samples[64]; /* tokens/s per repetition */
    int n;
} result;

static void stats(const result *r, double *avg, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < r->n; i++) s += r->samples[i];
    *avg = r->n ? s / r->n : 0;
    for (int i = 0; i < r->n; i++) ss += (r->samples[i] - *avg) * (r->samples[i] - *avg);
    *sd = r->n > 1 ? sqrt(ss / (r->n - 1)) : 0;
}

static int32_t random_token(uint64_t *state, int n_vocab) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (int32_t)((*state >> 33) % (uint64_t)(n_vocab > 300 ? n_vocab - 300 : n_vocab)) + (n_vocab > 300 ? 300 : 0);
}

/* prefill of n tokens as one batch into a fresh session */
static double run_pp(lfm2c_model *m, int n, uint64_t *rng, lfm2c_error *err) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session *s = lfm2c_session_new(m, n + 1, err);
    if (!s) return -1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = random_token(rng, V);
    double t0 = now_s();
    int rc = lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_LAST, err);
    double t = now_s() - t0;
    free(ids);
    lfm2c_session_free(s);
    return rc ? -1 : n / t;
}

/* decode of n tokens one at a time from an empty context (llama-bench's tgN) */
static double run_tg(lfm2c_model *m, int n, uint64_t *rng, lfm2c_error *err) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session *s = lfm2c_session_new(m, n + 1, err);
    if (!s) return -1;
    int32_t tok = random_token(rng, V);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        if (lfm2c_session_decode(s, &tok, 1, LFM2C_LOGITS_LAST, err)) { lfm2c_session_free(s); return -1; }
        tok = random_token(rng, V);
    }
    double t = now_s() - t0;
    lfm2c_session_free(s);
    return n / t;
}

/* B sequences: prefill each prompt (in batches), then decode all B together; total tok/s */
static double run_batched(lfm2c_model *m, int B, int np, int ng, uint64_t *rng, lfm2c_error *err) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session **ss = calloc((size_t)B, sizeof *ss);
    int32_t **toks = calloc((size_t)B, sizeof *toks);
    int *n = calloc((size_t)B, sizeof(int)), *mode = calloc((size_t)B, sizeof(int));
    double rate = -1;
    for (int b = 0; b < B; b++) {
        if (!(ss[b] = lfm2c_session_new(m, np + ng + 1, err))) goto done;
        toks[b] = malloc(sizeof(int32_t) * (size_t)(np > 1 ? np : 1));
        for (int i = 0; i < np; i++) toks[b][i] = random_token(rng, V);
        mode[b] = LFM2C_LOGITS_LAST;
    }
    double t0 = now_s();
    /* prefill in groups so one forward holds about 512 tokens */
    int group = np >= 512 ? 1 : 512 / (np ? np : 1);
    for (int b = 0; b < B; b += group) {
        int g = B - b < group ? B - b : group;
        for (int i = 0; i < g; i++) n[b + i] = np;
        if (lfm2c_decode_batch(ss + b, (const int32_t *const *)toks + b, n + b, mode + b, g, err)) goto done;
    }
    for (int step = 0; step < ng; step++) {
        for (int b = 0; b < B; b++) { toks[b][0] = random_token(rng, V); n[b] = 1; }
        if (lfm2c_decode_batch(ss, (const int32_t *const *)toks, n, mode, B, err)) goto done;
    }
    rate = (double)B * (np + ng) / (now_s() - t0);
done:
    for (int b = 0; b < B; b++) { lfm2c_session_free(ss[b]); free(toks[b]); }
    free(ss); free(toks); free(n); free(mode);
    return rate;
}

static int usage(void) {
    fprintf(stderr,
            "usage: lfm2c bench -m MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS] [-o md|json|csv]\n"
            "                   [-b BATCH]  (B sequences of -p prompt / -n generated tokens, total tok/s)\n"
            "                   [--device cpu|cuda] [--reference]\n"
            "  -p / -n / -t accept comma lists (e.g. -t 1,2); 0 skips a test.\n");
    return 2;   /* a usage error (--help returns 0 itself) */
}

static int parse_list(const char *flag, const char *s, int *out, int max) {
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = cli_int(flag, tok);
    return n;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *fmt = "md", *device = NULL;
    int pps[8] = {512}, n_pp = 1, tgs[8] = {128}, n_tg = 1, threads[8] = {0}, n_th = 1, reps = 5, batch = 0;
    bool reference = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) n_pp = parse_list(a, cli_value(argc, argv, &i), pps, 8);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) n_tg = parse_list(a, cli_value(argc, argv, &i), tgs, 8);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) n_th = parse_list(a, cli_value(argc, argv, &i), threads, 8);
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) reps = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) fmt = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) batch = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) device = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--reference")) reference = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        else return cli_fail("bench: unknown option '%s'", a), 2;
    }
    if (reps < 1 || reps > 64) return cli_fail("-r must be 1..64");
    for (int k = 0; k < n_th; k++)
        if (threads[k] < 0 || threads[k] > THREADPOOL_MAX_THREADS)
            return cli_fail("-t must be 0 (one per physical core) to %d, got %d", THREADPOOL_MAX_THREADS, threads[k]);
    if (strcmp(fmt, "md") && strcmp(fmt, "json") && strcmp(fmt, "csv")) return cli_fail("-o must be md, json or csv");
    bool json = !strcmp(fmt, "json"), csv = !strcmp(fmt, "csv");
    if (json) printf("[\n");
    else if (csv) printf("model_filename,n_threads,n_batch,n_prompt,n_gen,avg_ts,stddev_ts,gbps,peak_rss_mb\n");
    else printf("| model | size | params | backend | threads | test | t/s | GB/s |\n|---|---:|---:|---|---:|---:|---:|---:|\n");
    int first_row = 1;
    for (int ti = 0; ti < n_th; ti++) {
        lfm2c_model *m = cli_open_model(model_path, threads[ti], reference, device);
        if (!m) return 1;
        const lfm2c_model_info *in = lfm2c_model_get_info(m);
        int nth = threads[ti] > 0 ? threads[ti] : (int)sysconf(_SC_NPROCESSORS_ONLN);
        uint64_t rng = 42;
        lfm2c_error err = {0};
        result rs[20];
        int nr = 0;
        if (batch > 0) {
            rs[nr] = (result){"batch", pps[0], tgs[0], batch, {0}, 0};
            for (int r = 0; r < reps; r++) {
                double v = run_batched(m, batch, pps[0], tgs[0], &rng, &err);
                if (v < 0) return cli_fail("%s", err.msg);
                rs[nr].samples[rs[nr].n++] = v;
            }
            nr++;
        } else {
            /* warm-up: pages the weights in and settles the thread pool */
            if (run_tg(m, 4, &rng, &err) < 0) return cli_fail("%s", err.msg);
            for (int i = 0; i < n_pp; i++) {
                if (pps[i] <= 0) continue;
                rs[nr] = (result){"pp", pps[i], 0, 1, {0}, 0};
                for (int r = 0; r < reps; r++) {
                    double v = run_pp(m, pps[i], &rng, &err);
                    if (v < 0) return cli_fail("%s", err.msg);
                    rs[nr].samples[rs[nr].n++] = v;
                }
                nr++;
            }
            for (int i = 0; i < n_tg; i++) {
                if (tgs[i] <= 0) continue;
                rs[nr] = (result){"tg", 0, tgs[i], 1, {0}, 0};
                for (int r = 0; r < reps; r++) {
                    double v = run_tg(m, tgs[i], &rng, &err);
                    if (v < 0) return cli_fail("%s", err.msg);
                    rs[nr].samples[rs[nr].n++] = v;
                }
                nr++;
            }
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double rss_mb = ru.ru_maxrss / 1024.0;
        for (int i = 0; i < nr; i++) {
            double avg, sd;
            stats(&rs[i], &avg, &sd);
            double gbps = !strcmp(rs[i].test, "tg") ? avg * in->weight_bytes_active / 1e9 : 0;
            char test[64];
            if (!strcmp(rs[i].test, "batch"))
                snprintf(test, sizeof test, "b%d pp%d+tg%d", rs[i].batch, rs[i].n_prompt, rs[i].n_gen);
            else
                snprintf(test, sizeof test, "%s%d", rs[i].test, rs[i].n_prompt + rs[i].n_gen);
            if (json) {
                printf("%s  {\"model_filename\": \"%s\", \"model_type\": \"%s\", \"model_size\": %llu, "
                       "\"model_n_params\": %llu, \"backend\": \"%s\", \"n_threads\": %d, \"n_batch\": %d, "
                       "\"n_prompt\": %d, \"n_gen\": %d, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ts\": [",
                       first_row ? "" : ",\n", model_path, in->arch, (unsigned long long)in->weight_bytes,
                       (unsigned long long)in->n_params, device ? device : "CPU", nth, rs[i].batch,
                       rs[i].n_prompt, rs[i].n_gen, avg, sd);
                for (int k = 0; k < rs[i].n; k++) printf("%s%.6f", k ? ", " : "", rs[i].samples[k]);
                printf("], \"gbps\": %.3f, \"peak_rss_mb\": %.1f}", gbps, rss_mb);
                first_row = 0;
            } else if (csv) {
                printf("%s,%d,%d,%d,%d,%.3f,%.3f,%.3f,%.1f\n", model_path, nth, rs[i].batch, rs[i].n_prompt,
                       rs[i].n_gen, avg, sd, gbps, rss_mb);
            } else {
                char gb[32] = "";
                if (gbps > 0) snprintf(gb, sizeof gb, "%.1f", gbps);
                printf("| %s %s | %.2f GiB | %.2f B | %s | %d | %s | %.2f ± %.2f | %s |\n", in->arch,
                       in->name[0] ? in->name : "", in->weight_bytes / 1073741824.0, in->n_params / 1e9,
                       device ? device : "CPU", nth, test, avg, sd, gb);
            }
        }
        if (!json && !csv)
            fprintf(stderr, "peak RSS %.1f MB; weights read per decoded token %.3f GB\n", rss_mb,
                    in->weight_bytes_active / 1e9);
        lfm2c_model_free(m);
    }
    if (json) printf("\n]\n");
    return 0;
}
