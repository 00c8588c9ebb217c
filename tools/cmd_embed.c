/* cmd_embed.c — `lfm2c embed`: one vector per text (lfm2c_embed: the last token's hidden state or
 * the mean of all, scaled to unit length unless --no-normalize), printed as JSON Lines, one array
 * per text in order; or, with --similarity, the texts' cosine similarities as a matrix. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr,
            "usage: lfm2c embed -m MODEL.gguf [options] (TEXT... | -f FILE)\n"
            "  --pooling last|mean  one vector from the last token's hidden state (default) or the mean of all\n"
            "  --no-normalize       keep the vectors' length (default: unit length)\n"
            "  --similarity         print the texts' cosine similarities (one row a text) instead\n"
            "  -f FILE              one text per line ('-' = stdin; empty lines skipped)\n"
            "  -c N                 context: the longest text it takes (default: the longest given)\n"
            "  -t N                 threads;  --device cpu|vulkan\n"
            "  -ctk / -ctv T        KV cache types f16 (default), q8_0, f32\n" CLI_LORA_HELP);
    return 2;
}

/* The texts of -f FILE: its non-empty lines, pointing into buf (which is changed). */
static int split_lines(char *buf, size_t len, const char ***out) {
    int n = 0, cap = 16;
    const char **t = malloc(sizeof *t * (size_t)cap);
    for (size_t i = 0; t && i < len;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        buf[e] = 0;
        if (e > i && buf[e - 1] == '\r') buf[e - 1] = 0;
        if (buf[i] && n == cap) {
            const char **nt = realloc(t, sizeof *t * (size_t)(cap *= 2));
            if (!nt) free(t);
            t = nt;
        }
        if (t && buf[i]) t[n++] = buf + i;
        i = e + 1;
    }
    *out = t;
    return t ? n : -1;
}

static void print_vector(const float *v, int n) {
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ",%.9g" : "%.9g", v[i]);
    puts("]");
}

static void print_similarity(const float *v, int n_text, int H) {
    for (int a = 0; a < n_text; a++) {
        for (int b = 0; b < n_text; b++) {
            double dot = 0, na = 0, nb = 0;
            for (int i = 0; i < H; i++) {
                dot += (double)v[(size_t)a * H + i] * v[(size_t)b * H + i];
                na += (double)v[(size_t)a * H + i] * v[(size_t)a * H + i];
                nb += (double)v[(size_t)b * H + i] * v[(size_t)b * H + i];
            }
            printf(b ? " %8.5f" : "%8.5f", na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0.0);
        }
        putchar('\n');
    }
}

/* Tokenizes every text as run and the server do (BOS where the model adds one, control tokens
 * written as text become their ids); the longest in *longest. */
static int32_t **tokenize_all(lfm2c_model *m, const char **texts, int n_text, int *ns, int *longest) {
    int32_t **ids = calloc((size_t)n_text, sizeof *ids);
    *longest = 0;
    for (int i = 0; ids && i < n_text; i++) {
        lfm2c_error err = {0};
        ids[i] = lfm2c_tokenize(m, texts[i], strlen(texts[i]), lfm2c_model_get_info(m)->add_bos, true, &ns[i], &err);
        if (!ids[i] || ns[i] == 0) {
            cli_fail("text %d: %s", i + 1, ids[i] ? "no tokens" : err.msg);
            for (int k = 0; k <= i; k++) free(ids[k]);
            free(ids);
            return NULL;
        }
        if (ns[i] > *longest) *longest = ns[i];
    }
    return ids;
}

/* Embeds the texts into vecs[n_text][n_embd]. Returns 0 or 1 (after cli_fail). */
static int embed_all(lfm2c_model *m, const char **texts, int n_text, int n_ctx, int pooling, bool normalize,
                     float *vecs) {
    int *ns = calloc((size_t)n_text, sizeof *ns), longest = 0, rc = 1;
    int32_t **ids = ns ? tokenize_all(m, texts, n_text, ns, &longest) : NULL;
    if (!ids) return free(ns), 1;
    lfm2c_error err = {0};
    lfm2c_session *s = NULL;
    if (n_ctx && longest > n_ctx) cli_fail("a text has %d tokens, more than the context (-c %d)", longest, n_ctx);
    else if (!(s = lfm2c_session_new(m, n_ctx ? n_ctx : longest, &err))) cli_fail("%s", err.msg);
    else if (!cli_lora_attach(m, s)) {
        rc = 0;
        const int H = lfm2c_model_get_info(m)->n_embd;
        for (int i = 0; i < n_text && !rc; i++)
            if (lfm2c_embed(s, ids[i], ns[i], pooling, normalize, vecs + (size_t)i * H, &err))
                rc = cli_fail("text %d: %s", i + 1, err.msg);
    }
    lfm2c_session_free(s);
    for (int i = 0; i < n_text; i++) free(ids[i]);
    free(ids);
    free(ns);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    const char *model_path = NULL, *file = NULL, *device = NULL;
    const char **texts = calloc((size_t)argc, sizeof *texts);
    int n_text = 0, threads = 0, n_ctx = 0, pooling = LFM2C_POOL_LAST;
    bool normalize = true, similarity = false;
    if (!texts) return cli_fail("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) device = cli_device(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--pooling")) {
            const char *p = cli_value(argc, argv, &i);
            if (!strcmp(p, "last")) pooling = LFM2C_POOL_LAST;
            else if (!strcmp(p, "mean")) pooling = LFM2C_POOL_MEAN;
            else return free(texts), cli_fail("--pooling: '%s' is not last or mean", p), 2;
        } else if (!strcmp(a, "--no-normalize")) normalize = false;
        else if (!strcmp(a, "--similarity")) similarity = true;
        else if (cli_kv_flag(argc, argv, &i) || cli_lora_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return free(texts), usage(), 0;
        else if (!strcmp(a, "--") && i + 1 < argc) texts[n_text++] = argv[++i];
        else if (a[0] == '-' && a[1])
            return free(texts), cli_unknown_option("embed", a,
                                                   "-m --model -f --file -t --threads -c --ctx-size --device --pooling "
                                                   "--no-normalize --similarity -ctk -ctv --lora --lora-scaled");
        else texts[n_text++] = a;
    }
    if (!model_path || (!n_text == !file)) return free(texts), usage();
    char *buf = NULL;
    if (file) {
        size_t len;
        free(texts);
        if (!(buf = cli_read_file(file, &len))) return 1;
        if ((n_text = split_lines(buf, len, &texts)) <= 0) {
            free(buf);
            free(texts);
            return cli_fail(n_text ? "out of memory" : "%s: no text", file);
        }
    }
    int rc = 1;
    lfm2c_model *m = cli_open_model(model_path, threads, false, device);
    const int H = m ? lfm2c_model_get_info(m)->n_embd : 0;
    float *vecs = m ? malloc(sizeof(float) * (size_t)n_text * (size_t)H) : NULL;
    if (m && !vecs) cli_fail("out of memory");
    else if (vecs && !(rc = embed_all(m, texts, n_text, n_ctx, pooling, normalize, vecs))) {
        if (similarity) print_similarity(vecs, n_text, H);
        else
            for (int i = 0; i < n_text; i++) print_vector(vecs + (size_t)i * H, H);
    }
    free(vecs);
    cli_lora_forget();
    lfm2c_model_free(m);
    free(texts);
    free(buf);
    return rc;
}
