/* cmd_perplexity.c — `lfm2c perplexity`: the perplexity of a model over a text, and the KL
 * divergence of a model against another's logits, by llama.cpp's llama-perplexity rules and with
 * its options, printouts and logits file (convert/ppl.h says how), so that scripts and files carry
 * over: `-m Q.gguf -f TEXT` gives the PPL, `--kl-divergence-base FILE` also saves the model's
 * log-probabilities, `--kl-divergence-base FILE --kl-divergence` compares this model with them.
 * A progress bar on a terminal; --json prints one JSON object instead of the text. */
#include "cli.h"
#include "base/clock.h"
#include "base/os.h"
#include "convert/ppl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ppl_opts {
    const char *model, *text, *base, *device;
    int n_ctx, n_batch, threads, chunks;
    bool kld, json;
} ppl_opts;

static int usage(void) {
    fprintf(stderr, "usage: lfm2c perplexity -m MODEL.gguf -f TEXT [-c 512] [-b 2048] [--chunks N] [--json]\n"
                    "       lfm2c perplexity -m BASE.gguf -f TEXT --kl-divergence-base LOGITS.kld   (also saves them)\n"
                    "       lfm2c perplexity -m Q.gguf --kl-divergence-base LOGITS.kld --kl-divergence\n"
                    "  The text is cut into chunks of -c tokens, each read from an empty context; the second half of\n"
                    "  each chunk is scored (llama-perplexity's rules: the same file and text give the same PPL).\n"
                    "  -f FILE              the text (UTF-8; '-' = stdin)\n"
                    "  -c, --ctx-size N     tokens per chunk (default 512)\n"
                    "  -b, --batch-size N   tokens per decode call (default 2048; changes no result)\n"
                    "  --chunks N           at most N chunks (default: all the text holds)\n"
                    "  --kl-divergence-base FILE  without --kl-divergence: write this model's log-probabilities\n"
                    "                       there (llama-perplexity's format; --save-all-logits is the same)\n"
                    "  --kl-divergence      compare with FILE's log-probabilities (its tokens and context; no -f):\n"
                    "                       KL divergence, its percentiles, same top token, Δp, PPL ratio\n"
                    "  --json               one JSON object on stdout instead of llama-perplexity's printout\n"
                    "  -t N                 threads;  --device " LFM2C_DEVICE_NAMES ";  -ctk / -ctv f16|q8_0|f32\n");
    return 2;
}

/* 0: parsed; -1: --help printed; else the exit status of a bad option (said). */
static int ppl_parse(int argc, char **argv, ppl_opts *o) {
    *o = (ppl_opts){.n_ctx = 512, .n_batch = 2048, .chunks = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->text = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) o->n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size"))
            o->n_batch = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--chunks")) o->chunks = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--kl-divergence-base") || !strcmp(a, "--save-all-logits"))
            o->base = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--kl-divergence")) o->kld = true;
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) o->device = cli_device(a, cli_value(argc, argv, &i));
        else if (cli_kv_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), -1;
        else
            return cli_unknown_option(
                "perplexity", a,
                "-m --model -f --file -c --ctx-size -b --batch-size --chunks --kl-divergence-base "
                "--save-all-logits --kl-divergence --json -t --threads --device -ctk -ctv "
                "--cache-type-k --cache-type-v --hugepages --no-hugepages");
    }
    if (o->kld && !o->base) return cli_fail("--kl-divergence needs --kl-divergence-base FILE (the base's logits)"), 2;
    if (!o->kld && !o->text) return cli_fail("no text given (-f FILE)"), 2;
    if (o->n_ctx < 3) return cli_fail("-c %d: a chunk must hold at least 3 tokens", o->n_ctx), 2;
    return 0;
}

/* One run's state, shared by the row callbacks. */
typedef struct ppl_run {
    const ppl_opts *o;
    const lfm2c_model *m;
    const int32_t *chunk; /* the chunk's tokens (before the BOS) */
    int V, n_ctx, first;
    double nll, nll2;
    uint64_t count;
    FILE *base; /* the logits file written or read, or NULL */
    uint16_t *row;
    bool io_error;
    kld_sums ks; /* --kl-divergence */
    float *kv, *dv;
    size_t nk;
    double *chunk_ppl;
    FILE *out; /* the text printout: stdout, or a buffer shown at the end when a bar is drawn */
} ppl_run;

/* Position j of the chunk: score the token after it (positions first .. n_ctx - 2). */
static void row_score(void *ud, int j, const float *logits) {
    ppl_run *r = ud;
    if (j < r->first || j >= r->n_ctx - 1 || r->io_error) return;
    const int tok = r->chunk[j + 1];
    double v;
    if (r->o->kld) {
        if (fread(r->row, 2, kld_row_words(r->V), r->base) != kld_row_words(r->V)) {
            r->io_error = true;
            return;
        }
        kld_add_row(logits, r->V, r->row, tok, &r->ks, &r->kv[r->nk], &r->dv[r->nk]);
        r->nk++;
        return;
    }
    if (r->base) {
        v = kld_pack_row(logits, r->V, tok, r->row);
        if (fwrite(r->row, 2, kld_row_words(r->V), r->base) != kld_row_words(r->V)) r->io_error = true;
    } else {
        v = ppl_nll(logits, r->V, tok);
    }
    r->nll += v, r->nll2 += v * v;
    r->count++;
}

/* PPL and its ± from the sums (false when there is no spread to give an error). */
static bool ppl_final(const ppl_run *r, double *ppl, double *err) {
    const double mean = r->nll / (double)r->count;
    double var = r->nll2 / (double)r->count - mean * mean;
    *ppl = exp(mean);
    *err = var > 0 ? sqrt(var / (double)(r->count - 1)) * *ppl : 0;
    return var > 0;
}

static void print_kld_line(FILE *out, int chunk, const kld_sums *s) {
    kld_line l;
    kld_line_of(s, &l);
    fprintf(out,
            "%4d    %9.4lf ± %9.4lf    %10.5lf ± %10.5lf    %10.5lf ± %10.5lf    %6.3lf ± %6.3lf %%    %6.3lf ± "
            "%6.3lf %%\n",
            chunk, l.ppl, l.ppl_err, l.ln_ratio, l.ln_ratio_err, l.kld, l.kld_err, 100 * l.rms_dp, 100 * l.rms_dp_err,
            100 * l.same_top, 100 * l.same_top_err);
}

static void print_kld_stats(FILE *out, const kld_stats *st) {
    const kld_line *l = &st->run;
    fprintf(out, "====== Perplexity statistics ======\n");
    fprintf(out, "Mean PPL(Q)                   : %10.6lf ± %10.6lf\n", l->ppl, l->ppl_err);
    fprintf(out, "Mean PPL(base)                : %10.6lf ± %10.6lf\n", st->ppl_base, st->ppl_base_err);
    fprintf(out, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100 * st->cor);
    fprintf(out, "Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf\n", l->ln_ratio, l->ln_ratio_err);
    fprintf(out, "Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf\n", st->ratio, st->ratio_err);
    fprintf(out, "Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf\n\n", st->diff, st->diff_err);
    static const char *const kn[KLD_NPCT] = {"Maximum", "99.9%  ", "99.0%  ", "95.0%  ", "90.0%  ", "Median ",
                                             "10.0%  ", " 5.0%  ", " 1.0%  ", " 0.1%  ", "Minimum"};
    fprintf(out, "====== KL divergence statistics ======\n");
    fprintf(out, "Mean    KLD: %10.6lf ± %10.6lf\n", l->kld, l->kld_err);
    for (int i = 0; i < KLD_NPCT; i++) fprintf(out, "%s KLD: %10.6f\n", kn[i], st->kld_pct[i]);
    static const char *const dn[DP_NPCT] = {"Maximum", "99.9%  ", "99.0%  ", "95.0%  ", "90.0%  ", "75.0%  ", "Median ",
                                            "25.0%  ", "10.0%  ", " 5.0%  ", " 1.0%  ", " 0.1%  ", "Minimum"};
    fprintf(out, "\n====== Token probability statistics ======\n");
    fprintf(out, "Mean    Δp: %6.3lf ± %5.3lf %%\n", 100 * st->dp_mean, 100 * st->dp_err);
    for (int i = 0; i < DP_NPCT; i++) fprintf(out, "%s Δp: %6.3lf%%\n", dn[i], 100 * st->dp_pct[i]);
    fprintf(out, "RMS Δp    : %6.3lf ± %5.3lf %%\n", 100 * l->rms_dp, 100 * l->rms_dp_err);
    fprintf(out, "Same top p: %6.3lf ± %5.3lf %%\n", 100 * l->same_top, 100 * l->same_top_err);
}

/* The JSON object of a run (--json). */
static void print_json(const ppl_run *r, int n_chunk, const kld_stats *st) {
    json_t *o = json_object(), *chunks = json_array();
    json_object_set_new(o, "model", json_string(r->o->model));
    json_object_set_new(o, "text", r->o->text && !r->o->kld ? json_string(r->o->text) : json_null());
    json_object_set_new(o, "n_ctx", json_integer(r->n_ctx));
    json_object_set_new(o, "n_batch", json_integer(r->o->n_batch));
    json_object_set_new(o, "chunks", json_integer(n_chunk));
    for (int i = 0; i < n_chunk; i++) json_array_append_new(chunks, json_real(r->chunk_ppl[i]));
    json_object_set_new(o, "chunk_ppl", chunks);
    if (st) {
        const kld_line *l = &st->run;
        json_t *k = json_object(), *kp = json_object(), *dp = json_object();
        json_object_set_new(o, "tokens_scored", json_integer((json_int_t)st->count));
        json_object_set_new(o, "ppl", json_real(l->ppl));
        json_object_set_new(o, "ppl_err", json_real(l->ppl_err));
        json_object_set_new(k, "ppl_base", json_real(st->ppl_base));
        json_object_set_new(k, "ppl_base_err", json_real(st->ppl_base_err));
        json_object_set_new(k, "cor_ln_ppl", json_real(st->cor));
        json_object_set_new(k, "ln_ppl_ratio", json_real(l->ln_ratio));
        json_object_set_new(k, "ln_ppl_ratio_err", json_real(l->ln_ratio_err));
        json_object_set_new(k, "ppl_ratio", json_real(st->ratio));
        json_object_set_new(k, "ppl_ratio_err", json_real(st->ratio_err));
        json_object_set_new(k, "ppl_diff", json_real(st->diff));
        json_object_set_new(k, "ppl_diff_err", json_real(st->diff_err));
        json_object_set_new(k, "kld_mean", json_real(l->kld));
        json_object_set_new(k, "kld_mean_err", json_real(l->kld_err));
        for (int i = 0; i < KLD_NPCT; i++) {
            char key[16];
            snprintf(key, sizeof key, "%g", 100 * KLD_PCT[i]);
            json_object_set_new(kp, key, json_real(st->kld_pct[i]));
        }
        json_object_set_new(k, "kld_percentiles", kp);
        json_object_set_new(k, "dp_mean", json_real(st->dp_mean));
        json_object_set_new(k, "dp_mean_err", json_real(st->dp_err));
        for (int i = 0; i < DP_NPCT; i++) {
            char key[16];
            snprintf(key, sizeof key, "%g", 100 * DP_PCT[i]);
            json_object_set_new(dp, key, json_real(st->dp_pct[i]));
        }
        json_object_set_new(k, "dp_percentiles", dp);
        json_object_set_new(k, "rms_dp", json_real(l->rms_dp));
        json_object_set_new(k, "rms_dp_err", json_real(l->rms_dp_err));
        json_object_set_new(k, "same_top", json_real(l->same_top));
        json_object_set_new(k, "same_top_err", json_real(l->same_top_err));
        json_object_set_new(o, "kl_divergence", k);
    } else {
        double ppl, err;
        ppl_final(r, &ppl, &err);
        json_object_set_new(o, "tokens_scored", json_integer((json_int_t)r->count));
        json_object_set_new(o, "ppl", json_real(ppl));
        json_object_set_new(o, "ppl_err", json_real(err));
        json_object_set_new(o, "kl_divergence_base", r->o->base ? json_string(r->o->base) : json_null());
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (s) puts(s);
    free(s);
    json_decref(o);
}

/* The chunks: each decoded and scored, its line printed; 0, or 1 with the message said. */
static int run_chunks(ppl_run *r, lfm2c_session *s, const int32_t *tokens, int n_chunk) {
    lfm2c_error err = {0};
    const double t0 = lfm2c_now_s();
    for (int i = 0; i < n_chunk; i++) {
        r->chunk = tokens + (size_t)i * (size_t)r->n_ctx;
        if (cli_chunk_eval(r->m, s, r->chunk, r->n_ctx, r->o->n_batch, r->first, row_score, r, &err))
            return cli_fail("%s", err.msg);
        if (r->io_error) return cli_fail("%s: %s error", r->o->base, r->o->kld ? "read" : "write");
        if (r->o->kld) {
            if (i == 0 && !r->o->json)
                fprintf(r->out, "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence    "
                                "          Δp RMS            Same top p\n");
            kld_line l;
            kld_line_of(&r->ks, &l);
            r->chunk_ppl[i] = l.ppl;
            if (!r->o->json) print_kld_line(r->out, i + 1, &r->ks);
        } else {
            r->chunk_ppl[i] = exp(r->nll / (double)r->count);
            if (!r->o->json) fprintf(r->out, "[%d]%.4lf,", i + 1, r->chunk_ppl[i]);
        }
        fflush(r->out);
        cli_progress(r->o->kld ? "kl-divergence" : "perplexity", i + 1, n_chunk, t0);
    }
    cli_progress_end();
    return 0;
}

/* The text's tokens (BOS first where the model adds one), at least two chunks of them. */
static int32_t *text_tokens(const ppl_run *r, int *n) {
    size_t len = 0;
    char *text = cli_read_file(r->o->text, &len);
    if (!text) return NULL;
    lfm2c_error err = {0};
    int32_t *ids = lfm2c_tokenize(r->m, text, len, lfm2c_model_get_info(r->m)->add_bos, false, n, &err);
    free(text);
    if (!ids) cli_fail("%s", err.msg);
    else if (*n < 2 * r->n_ctx) {
        cli_fail("%s holds %d tokens: a context of %d needs at least %d", r->o->text, *n, r->n_ctx, 2 * r->n_ctx);
        free(ids);
        return NULL;
    }
    return ids;
}

/* The plain run, writing the logits file with --kl-divergence-base. */
static int run_ppl(ppl_run *r, lfm2c_session *s) {
    int n = 0;
    int32_t *ids = text_tokens(r, &n);
    if (!ids) return 1;
    int n_chunk = n / r->n_ctx, rc = 1;
    if (r->o->chunks > 0 && r->o->chunks < n_chunk) n_chunk = r->o->chunks;
    if (r->o->base &&
        (!(r->base = os_fopen(r->o->base, "wb")) || !kld_write_header(r->base, r->n_ctx, r->V, n_chunk, ids))) {
        cli_fail("cannot write '%s'", r->o->base);
        goto done;
    }
    if (!r->o->json)
        fprintf(stderr, "perplexity: %d tokens, %d chunks of %d, %d scored in each\n", n, n_chunk, r->n_ctx,
                kld_rows_per_chunk(r->n_ctx));
    if (!(r->chunk_ppl = calloc((size_t)n_chunk, sizeof *r->chunk_ppl))) {
        cli_fail("out of memory");
        goto done;
    }
    if (run_chunks(r, s, ids, n_chunk)) goto done;
    if (r->base && fclose(r->base)) {
        r->base = NULL;
        cli_fail("%s: write error", r->o->base);
        goto done;
    }
    r->base = NULL;
    double ppl, err;
    if (r->o->json) print_json(r, n_chunk, NULL);
    else if (ppl_final(r, &ppl, &err)) fprintf(r->out, "\nFinal estimate: PPL = %.4lf +/- %.5lf\n", ppl, err);
    else fprintf(r->out, "\nFinal estimate: PPL = %.4lf (no spread to estimate an error from)\n", ppl);
    rc = 0;
done:
    if (r->base) fclose(r->base), os_remove(r->o->base);
    free(ids);
    return rc;
}

/* --kl-divergence: the base's tokens and rows against this model's logits. */
static int run_kld(ppl_run *r, lfm2c_session **s) {
    lfm2c_error err = {0};
    kld_header h = {0};
    os_stat_t fs;
    FILE *f = os_stat(r->o->base, &fs) == 0 && fs.is_file ? os_fopen(r->o->base, "rb") : NULL;
    if (!f) return cli_fail("cannot open '%s'", r->o->base);
    int rc = 1;
    if (kld_read_header(f, fs.size, &h, &err)) {
        cli_fail("%s: %s", r->o->base, err.msg);
        goto done;
    }
    if (h.n_vocab != r->V) {
        cli_fail("%s: a vocabulary of %d, this model's is %d", r->o->base, h.n_vocab, r->V);
        goto done;
    }
    r->base = f;
    r->n_ctx = h.n_ctx, r->first = h.n_ctx / 2;
    int n_chunk = r->o->chunks > 0 && r->o->chunks < h.n_chunk ? r->o->chunks : h.n_chunk;
    const size_t n_vals = (size_t)n_chunk * (size_t)kld_rows_per_chunk(h.n_ctx);
    r->kv = malloc(n_vals * sizeof *r->kv + 1), r->dv = malloc(n_vals * sizeof *r->dv + 1);
    r->chunk_ppl = calloc((size_t)n_chunk, sizeof *r->chunk_ppl);
    lfm2c_session_free(*s);
    if (!(*s = lfm2c_session_new((lfm2c_model *)r->m, h.n_ctx, &err))) {
        cli_fail("%s", err.msg);
        goto done;
    }
    if (!r->kv || !r->dv || !r->chunk_ppl) {
        cli_fail("out of memory");
        goto done;
    }
    if (!r->o->json)
        fprintf(stderr, "kl-divergence: %s: %d chunks of %d, %d scored in each\n", r->o->base, n_chunk, h.n_ctx,
                kld_rows_per_chunk(h.n_ctx));
    if (run_chunks(r, *s, h.tokens, n_chunk)) goto done;
    kld_stats st;
    kld_stats_of(&r->ks, r->kv, r->dv, r->nk, &st);
    if (r->o->json) print_json(r, n_chunk, &st);
    else if (r->ks.count < 100)
        fprintf(r->out, "\n(%llu positions: too few for statistics)\n", (unsigned long long)r->ks.count);
    else fputc('\n', r->out), print_kld_stats(r->out, &st);
    rc = 0;
done:
    r->base = NULL;
    fclose(f);
    kld_header_free(&h);
    return rc;
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o;
    int prc = ppl_parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    lfm2c_model *m = cli_open_model(o.model, o.threads, false, o.device);
    if (!m) return 1;
    ppl_run r = {.o = &o, .m = m, .V = lfm2c_vocab_size(m), .n_ctx = o.n_ctx, .first = o.n_ctx / 2, .out = stdout};
    /* the bar and the lines would share the terminal: the lines wait for the end */
    if (!o.json && os_isatty(stdout) && os_isatty(stderr)) r.out = tmpfile();
    if (!r.out) r.out = stdout;
    lfm2c_error err = {0};
    const int train = lfm2c_model_get_info(m)->n_ctx_train;
    if (!o.kld && train > 0 && o.n_ctx > train)
        fprintf(stderr, "lfm2c: warning: the model was trained on %d positions (-c %d)\n", train, o.n_ctx);
    lfm2c_session *s = lfm2c_session_new(m, o.kld ? 1 : o.n_ctx, &err);
    r.row = malloc(kld_row_words(r.V) * sizeof *r.row);
    int rc = !s       ? cli_fail("%s", err.msg)
             : !r.row ? cli_fail("out of memory")
             : o.kld  ? run_kld(&r, &s)
                      : run_ppl(&r, s);
    if (r.out != stdout) {
        rewind(r.out);
        char buf[4096];
        for (size_t n; (n = fread(buf, 1, sizeof buf, r.out)) > 0;) fwrite(buf, 1, n, stdout);
        fclose(r.out);
    }
    free(r.row), free(r.kv), free(r.dv), free(r.chunk_ppl);
    lfm2c_session_free(s);
    lfm2c_model_free(m);
    return rc;
}
