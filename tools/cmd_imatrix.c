/* cmd_imatrix.c — `lfm2c imatrix`: the importance matrix of a model over a text, as llama.cpp's
 * llama-imatrix computes it (the squares of every block matrix's input columns summed over the
 * text's tokens, per expert for the experts; convert/imatrix.h), with its options, its chunks
 * (those of `perplexity`, whose PPL it prints on the way) and its files: the GGUF imatrix by
 * default, the legacy .dat with --output-format dat, and --in-file to merge earlier ones (either
 * format), with or without a text. The collection runs on the CPU backend's matmul hook
 * (lfm2c_model_set_matmul_hook). A progress bar on a terminal. */
#include "cli.h"
#include "base/clock.h"
#include "base/os.h"
#include "convert/imatrix.h"
#include "convert/ppl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_IN = 64 };

typedef struct imx_opts {
    const char *model, *text, *out, *device, *in[MAX_IN];
    int n_in, n_ctx, n_batch, threads, chunks, skip, out_freq, save_freq, format; /* format: -1 gguf 0 default 1 dat */
    bool process_output, no_ppl, parse_special, stats;
} imx_opts;

static int usage(void) {
    fprintf(stderr,
            "usage: lfm2c imatrix -m MODEL.gguf -f TEXT [-o imatrix.gguf] [-c 512] [--chunks N] [--in-file F ...]\n"
            "       lfm2c imatrix --in-file A.gguf --in-file B.dat [...] -o SUM.gguf   (merge files, no model)\n"
            "  The squared activations of every block matrix's input, per input column (per expert for the\n"
            "  experts), summed over the text in chunks of -c tokens, as llama-imatrix does; its files.\n"
            "  -f FILE              the text ('-' = stdin)\n"
            "  -o FILE              output (default imatrix.gguf)\n"
            "  --output-format F    gguf (default) or dat (llama-imatrix's legacy format)\n"
            "  --in-file FILE       merge this imatrix (GGUF or .dat) first; repeatable\n"
            "  -c, --ctx-size N     tokens per chunk (default 512); -b, --batch-size N (default 2048)\n"
            "  --chunks N           at most N chunks;  --chunk N  skip the text's first N chunks\n"
            "  -ofreq, --output-frequency N  save to -o every N chunks (default 10)\n"
            "  --save-frequency N   also save OUT.at_N every N chunks (default 0: never)\n"
            "  --process-output     also the output head (output.weight; a tied head is not collected)\n"
            "  --no-ppl             do not compute the perplexity on the way\n"
            "  --parse-special      the text's special-token strings become their tokens\n"
            "  --show-statistics    with one --in-file and no text: llama-imatrix's table of each tensor's\n"
            "                       squared activations (sum, min, max, mean, spread, entropy, ...)\n"
            "  -t N                 threads;  -ctk / -ctv f16|q8_0|f32  (CPU backend only)\n");
    return 2;
}

/* 0: parsed; -1: --help printed; else the exit status of a bad option (said). */
static int imx_parse(int argc, char **argv, imx_opts *o) {
    *o = (imx_opts){.out = "imatrix.gguf", .n_ctx = 512, .n_batch = 2048, .chunks = -1, .out_freq = 10};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->text = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--output-file"))
            o->out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--in-file")) {
            if (o->n_in == MAX_IN) return cli_fail("at most %d --in-file", MAX_IN), 2;
            o->in[o->n_in++] = cli_value(argc, argv, &i);
        } else if (!strcmp(a, "--output-format")) {
            const char *f = cli_value(argc, argv, &i);
            if (strcmp(f, "gguf") && strcmp(f, "dat")) return cli_fail("--output-format %s: gguf or dat", f), 2;
            o->format = strcmp(f, "dat") ? -1 : 1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) o->n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size"))
            o->n_batch = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--chunks")) o->chunks = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--chunk") || !strcmp(a, "--from-chunk")) o->skip = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-ofreq") || !strcmp(a, "--output-frequency"))
            o->out_freq = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--save-frequency")) o->save_freq = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--process-output")) o->process_output = true;
        else if (!strcmp(a, "--no-ppl")) o->no_ppl = true;
        else if (!strcmp(a, "--parse-special")) o->parse_special = true;
        else if (!strcmp(a, "--show-statistics")) o->stats = true;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) o->device = cli_device(a, cli_value(argc, argv, &i));
        else if (cli_kv_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), -1;
        else
            return cli_unknown_option(
                "imatrix", a,
                "-m --model -f --file -o --output --output-file --output-format --in-file -c "
                "--ctx-size -b --batch-size --chunks --chunk --from-chunk -ofreq "
                "--output-frequency --save-frequency --process-output --no-ppl --parse-special --show-statistics "
                "-t --threads --device -ctk -ctv --hugepages --no-hugepages");
    }
    if (o->stats && (o->n_in != 1 || o->text)) return cli_fail("--show-statistics reads one --in-file (no text)"), 2;
    if (!o->text && !o->n_in) return cli_fail("no text (-f FILE) and no --in-file to merge"), 2;
    if (o->text && !o->model) return cli_fail("no model given (-m MODEL.gguf)"), 2;
    if (o->n_ctx < 3 || o->skip < 0 || o->save_freq < 0)
        return cli_fail("-c needs at least 3 tokens; --chunk and --save-frequency at least 0"), 2;
    return 0;
}

/* The collection's state, shared with the row callback. */
typedef struct imx_run {
    const imx_opts *o;
    imatrix im;
    const int32_t *chunk;
    int V, first;
    double nll, nll2;
    uint64_t count;
} imx_run;

static void row_score(void *ud, int j, const float *logits) {
    imx_run *r = ud;
    if (r->o->no_ppl || j < r->first || j >= r->o->n_ctx - 1) return;
    const double v = ppl_nll(logits, r->V, r->chunk[j + 1]);
    r->nll += v, r->nll2 += v * v;
    r->count++;
}

/* Writes the matrix to path (the -o format); 0, or 1 with the message said. */
static int save(const imx_run *r, const char *path) {
    lfm2c_error err = {0};
    if (!imatrix_save(&r->im, path, r->o->format > 0, r->o->n_ctx, &err)) return cli_fail("%s", err.msg);
    return 0;
}

/* After each chunk, as llama-imatrix: -o every out_freq chunks, OUT.at_N every save_freq. */
static int save_on_the_way(const imx_run *r) {
    const int64_t c = imatrix_chunk_count(&r->im, r->o->n_ctx);
    if (c > 0 && c % r->o->out_freq == 0 && save(r, r->o->out)) return 1;
    if (r->o->save_freq > 0 && c > 0 && c % r->o->save_freq == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s.at_%lld", r->o->out, (long long)c);
        if (save(r, path)) return 1;
    }
    return 0;
}

/* The text's chunks through the model with the hook set; 0, or 1 with the message said. */
static int collect(imx_run *r, lfm2c_model *m) {
    const imx_opts *o = r->o;
    size_t len = 0;
    char *text = cli_read_file(o->text, &len);
    if (!text) return 1;
    lfm2c_error err = {0};
    int n = 0, rc = 1;
    int32_t *ids = lfm2c_tokenize(m, text, len, lfm2c_model_get_info(m)->add_bos, o->parse_special, &n, &err);
    free(text);
    lfm2c_session *s = NULL;
    if (!ids) return cli_fail("%s", err.msg);
    const int32_t *t = ids;
    if (o->skip > 0 && (int64_t)(o->skip + 2) * o->n_ctx >= n) {
        cli_fail("%s holds %d tokens: too few left after skipping %d chunks", o->text, n, o->skip);
        goto done;
    }
    t += (size_t)o->skip * (size_t)o->n_ctx, n -= o->skip * o->n_ctx;
    if (n < 2 * o->n_ctx) {
        cli_fail("%s holds %d tokens: a context of %d needs at least %d", o->text, n, o->n_ctx, 2 * o->n_ctx);
        goto done;
    }
    int n_chunk = n / o->n_ctx;
    if (o->chunks > 0 && o->chunks < n_chunk) n_chunk = o->chunks;
    fprintf(stderr, "imatrix: %d tokens, %d chunks of %d\n", n, n_chunk, o->n_ctx);
    if (!(s = lfm2c_session_new(m, o->n_ctx, &err)) || lfm2c_model_set_matmul_hook(m, imatrix_hook, &r->im, &err)) {
        cli_fail("%s", err.msg);
        goto done;
    }
    const int first_out = o->process_output ? 0 : o->no_ppl ? o->n_ctx : r->first;
    const double t0 = lfm2c_now_s();
    for (int i = 0; i < n_chunk; i++) {
        r->chunk = t + (size_t)i * (size_t)o->n_ctx;
        if (cli_chunk_eval(m, s, r->chunk, o->n_ctx, o->n_batch, first_out, row_score, r, &err)) {
            cli_fail("%s", err.msg);
            goto done;
        }
        if (r->im.error) {
            cli_fail("imatrix: %s", r->im.error_msg);
            goto done;
        }
        if (!o->no_ppl && !os_isatty(stderr))
            printf("[%d]%.4lf,", i + 1, exp(r->nll / (double)r->count)), fflush(stdout);
        cli_progress("imatrix", i + 1, n_chunk, t0);
        if (save_on_the_way(r)) goto done;
    }
    cli_progress_end();
    const double mean = r->count ? r->nll / (double)r->count : 0,
                 var = r->count ? r->nll2 / (double)r->count - mean * mean : 0;
    if (!o->no_ppl && var > 0)
        printf("%sFinal estimate: PPL = %.4lf +/- %.5lf\n", os_isatty(stderr) ? "" : "\n", exp(mean),
               sqrt(var / (double)(r->count - 1)) * exp(mean));
    rc = 0;
done:
    lfm2c_model_set_matmul_hook(m, NULL, NULL, NULL);
    lfm2c_session_free(s);
    free(ids);
    return rc;
}

/* Entries some of whose experts no token chose (quantizers fall back for those). */
static void warn_partial(const imatrix *im) {
    int partial = 0;
    for (uint32_t i = 0; i < im->n; i++)
        for (uint32_t j = 0; j < im->e[i].n_counts; j++)
            if (!im->e[i].counts[j]) {
                partial++;
                break;
            }
    if (partial)
        fprintf(stderr, "lfm2c: warning: %d entries have matrices no token reached (partial data; more text helps)\n",
                partial);
}

/* --show-statistics: llama-imatrix's two tables. */
static int show_stats(const imatrix *im, const char *path) {
    int n = 0;
    imatrix_stat *v = imatrix_stats(im, &n);
    if (!v) return cli_fail("out of memory");
    printf("Computing statistics for %s (%d tensors)\n", path, n);
    printf("\n%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", " Layer", "       Tensor", "          Σ(Act²)",
           "  Min", "            Max", "           μ", "   σ", " % Active", "N", "   Entropy", "E (norm)", "ZD",
           "  CosSim");
    printf("%.*s\n", 169,
           "====================================================================================="
           "====================================================================================");
    enum { MAX_BLK = 4096 };
    static double bias[MAX_BLK], zd[MAX_BLK], cos[MAX_BLK];
    static long elems[MAX_BLK];
    int top = -1;
    for (int i = 0; i < n; i++) {
        const imatrix_stat *t = &v[i];
        const float enorm = t->elements > 0 ? 100.0f * (t->entropy / log2f((float)t->elements)) : 0.0f;
        printf("%5s\t%-20s\t%10.2f\t%8.4f\t%11.4f\t%6.2f\t%6.2f\t%8.2f%%\t%6d\t%10.4f\t%6.2f%%\t%10.2f%%\t%8.4f\n",
               t->layer, t->tensor, t->total, t->min, t->max, t->mean, t->stddev, t->active * 100.0f, t->elements,
               t->entropy, enorm, 100.0f * t->zd, t->cossim);
        if (t->blk < 0 || t->blk >= MAX_BLK) continue;
        bias[t->blk] += (float)t->elements * t->total, zd[t->blk] += (float)t->elements * t->zd;
        cos[t->blk] += (float)t->elements * t->cossim, elems[t->blk] += t->elements;
        if (t->blk > top) top = t->blk;
    }
    int layers = 0;
    for (int b = 0; b <= top; b++) layers += elems[b] > 0;
    printf("\nComputing weighted average statistics per layer (%d layers)\n", layers);
    printf("\n%s\t%s\t%s\t%s\n", "  Layer", "     μΣ(Act²)", "      μZD", "μCosSim");
    printf("================================================\n");
    for (int b = 0; b <= top; b++)
        if (elems[b])
            printf("%5d\t%14.2f\t%10.4f%%\t%6.4f\n", b, bias[b] / (double)elems[b], 100.0 * zd[b] / (double)elems[b],
                   cos[b] / (double)elems[b]);
    printf("\n");
    free(v);
    return 0;
}

int cmd_imatrix(int argc, char **argv) {
    imx_opts o;
    int prc = imx_parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    if (o.format == 0 && (strlen(o.out) < 5 || strcmp(o.out + strlen(o.out) - 5, ".gguf")))
        fprintf(stderr, "lfm2c: warning: writing a GGUF imatrix to '%s' (--output-format dat: the legacy format)\n",
                o.out);
    imx_run r = {.o = &o, .first = o.n_ctx / 2};
    imatrix_init(&r.im);
    r.im.process_output = o.process_output;
    lfm2c_error err = {0};
    int rc = 1;
    for (int i = 0; i < o.n_in; i++)
        if (imatrix_load(&r.im, o.in[i], o.n_ctx, &err)) {
            cli_fail("%s: %s", o.in[i], err.msg);
            goto done;
        }
    if (o.stats) {
        rc = show_stats(&r.im, o.in[0]);
        goto done;
    }
    lfm2c_model *m = NULL;
    if (o.text) {
        if (!imatrix_add_dataset(&r.im, o.text) || !(m = cli_open_model(o.model, o.threads, false, o.device)))
            goto done;
        r.V = lfm2c_vocab_size(m);
        rc = collect(&r, m);
        lfm2c_model_free(m);
        if (rc) goto done;
        rc = 1;
    }
    warn_partial(&r.im);
    if (save(&r, o.out)) goto done;
    fprintf(stderr, "imatrix: %u entries, %lld chunks of %d, %s%s -> %s\n", r.im.n,
            (long long)imatrix_chunk_count(&r.im, o.n_ctx), o.n_ctx, o.n_in ? "merged with the --in-file(s)" : "",
            o.text ? "" : " (no text)", o.out);
    rc = 0;
done:
    imatrix_free(&r.im);
    return rc;
}
