/* cmd_quantize.c — `lfm2c quantize [OPTIONS] IN.gguf OUT.gguf TYPE`: requantize a GGUF the way the
 * reference quantizer (llama-quantize) does: same per-tensor types, same bytes, its --imatrix,
 * --tensor-type, --output-tensor-type, --token-embedding-type and --leave-output-tensor. */
#include "cli.h"
#include "formats/ggml_types.h"
#include "convert/quantize_file.h"
#include "base/os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_quantize(const char **pos, int npos, int threads, bool stats, quantize_file_params *pp);

static void usage(FILE *f) {
    fprintf(f,
            "usage: lfm2c quantize [OPTIONS] IN.gguf OUT.gguf TYPE\n"
            "  TYPE                        %s (case-insensitive)\n"
            "  --imatrix FILE              importance matrix (GGUF as lfm2c imatrix writes, or legacy .dat);\n"
            "                              required for IQ1_*, IQ2_*, IQ3_XXS tensors and Q2_K_S\n"
            "  --tensor-type PATTERN=T     tensors whose name matches PATTERN (a regular expression) get\n"
            "                              ggml type T (q4_k, iq3_s, ...); repeatable, the first match wins\n"
            "  --output-tensor-type T      ggml type of output.weight\n"
            "  --token-embedding-type T    ggml type of token_embd.weight\n"
            "  --leave-output-tensor       keep output.weight as it is\n"
            "  --stats                     print each tensor's RMS error against the input\n"
            "  -t N                        threads (default: all cores)\n",
            quant_ftype_list());
}

typedef struct bar {
    int last;
} bar;

static void progress(void *ud, uint64_t done, uint64_t total, const char *tensor) {
    bar *b = ud;
    int pct = total ? (int)(100 * done / total) : 100;
    if (pct == b->last) return;
    b->last = pct;
    char fill[41];
    int k = pct * 40 / 100;
    for (int i = 0; i < 40; i++) fill[i] = i < k ? '#' : '.';
    fill[40] = 0;
    fprintf(stderr, "\r[%s] %3d%%  %-40.40s", fill, pct, tensor);
    fflush(stderr);
}

static void fmt_shape(const quantize_tensor_report *t, char *buf, size_t n) {
    int o = snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && o < (int)n; d++)
        o += snprintf(buf + o, n - (size_t)o, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (o < (int)n) snprintf(buf + o, n - (size_t)o, "]");
}

/* a ggml type name quantize can make (T of --output-tensor-type and the like); -1 after cli_fail */
static int quant_type_arg(const char *opt, const char *v) {
    const int t = ggml_type_by_name(v);
    if (t < 0 || !quantize_supported_w((uint32_t)t))
        return cli_fail("quantize: %s: '%s' is not a type quantize makes (q4_0, q8_0, q2_k..q6_k, iq1_s..iq4_xs, "
                        "f16, bf16, f32)",
                        opt, v),
               -1;
    return t;
}

/* --tensor-type PATTERN=TYPE into o (grown); false after cli_fail */
static bool tensor_type_arg(const char *v, quant_override **o, int *n) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1]) return cli_fail("quantize: --tensor-type wants PATTERN=TYPE, not '%s'", v), false;
    const int t = quant_type_arg("--tensor-type", eq + 1);
    if (t < 0) return false;
    quant_override *grown = realloc(*o, (size_t)(*n + 1) * sizeof **o);
    char *pat = strndup(v, (size_t)(eq - v));
    if (!grown || !pat) {
        free(pat);
        if (grown) *o = grown;
        return cli_fail("quantize: out of memory"), false;
    }
    *o = grown;
    (*o)[(*n)++] = (quant_override){pat, (uint32_t)t};
    return true;
}

static void free_overrides(quant_override *o, int n) {
    for (int i = 0; i < n; i++) free((char *)o[i].pattern);
    free(o);
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0, threads = 0;
    bool stats = false;
    quantize_file_params p = {0};
    quant_override *ov = NULL;
    int n_ov = 0, rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            free_overrides(ov, n_ov);
            return 0;
        } else if (!strcmp(argv[i], "--stats")) stats = true;
        else if (!strcmp(argv[i], "--imatrix")) p.imatrix = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--leave-output-tensor")) p.leave_output = true;
        else if (!strcmp(argv[i], "--tensor-type")) rc = !tensor_type_arg(cli_value(argc, argv, &i), &ov, &n_ov);
        else if (!strcmp(argv[i], "--output-tensor-type") || !strcmp(argv[i], "--token-embedding-type")) {
            const bool out = argv[i][2] == 'o';
            const int t = quant_type_arg(argv[i], cli_value(argc, argv, &i));
            if (t < 0) rc = 1;
            else if (out) p.has_output_type = true, p.output_type = (uint32_t)t;
            else p.has_token_embd_type = true, p.token_embd_type = (uint32_t)t;
        } else if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads"))
            threads = cli_threads(argv[i], cli_value(argc, argv, &i));
        else if (argv[i][0] == '-' && argv[i][1])
            rc = cli_unknown_option("quantize", argv[i],
                                    "--imatrix --tensor-type --output-tensor-type --token-embedding-type "
                                    "--leave-output-tensor --stats -t --threads");
        else if (npos < 3) pos[npos++] = argv[i];
        else rc = cli_fail("quantize: too many arguments ('%s')", argv[i]);
    }
    p.overrides = ov;
    p.n_overrides = n_ov;
    if (!rc) rc = run_quantize(pos, npos, threads, stats, &p);
    free_overrides(ov, n_ov);
    return rc;
}

static int run_quantize(const char **pos, int npos, int threads, bool stats, quantize_file_params *pp) {
    if (npos != 3) return cli_fail("quantize: expected IN.gguf OUT.gguf TYPE (lfm2c quantize --help)");
    os_stat_t si, so;
    if (!strcmp(pos[0], pos[1]) ||
        (os_stat(pos[0], &si) == 0 && os_stat(pos[1], &so) == 0 && si.dev == so.dev && si.ino == so.ino))
        return cli_fail("quantize: OUT is the same file as IN ('%s'): refusing to overwrite the input", pos[1]), 2;
    const quant_ftype *ft = quant_ftype_find(pos[2]);
    if (!ft) return cli_fail("quantize: unknown type '%s' (expected one of %s)", pos[2], quant_ftype_list());
    if (threads < 0) return cli_fail("quantize: -t must be >= 0");

    bar b = {-1};
    quantize_file_params p = *pp;
    p.n_threads = threads;
    p.stats = stats;
    if (os_isatty(stderr)) {
        p.progress = progress;
        p.progress_ud = &b;
    }
    quantize_report rep;
    lfm2c_error err = {0};
    bool ok = quantize_file(pos[0], pos[1], ft, &p, &rep, &err);
    if (p.progress) fprintf(stderr, "\r%-90s\r", "");
    if (!ok) return cli_fail("quantize: %s", err.msg);

    int counts[GGML_NTYPES] = {0};
    for (int i = 0; i < rep.n_tensors; i++) counts[rep.tensors[i].type_out]++;
    if (stats) {
        printf("%-40s %-18s %-6s -> %-6s %12s\n", "tensor", "shape", "from", "to", "rms_err");
        for (int i = 0; i < rep.n_tensors; i++) {
            const quantize_tensor_report *t = &rep.tensors[i];
            char shape[64];
            fmt_shape(t, shape, sizeof shape);
            printf("%-40s %-18s %-6s -> %-6s %12.4e%s\n", t->name, shape, ggml_type_get(t->type_in)->name,
                   ggml_type_get(t->type_out)->name, t->rms_err, t->converted ? "" : "  (copied)");
        }
    }
    printf("quantized %s -> %s as %s: %d tensors (", pos[0], pos[1], ft->name, rep.n_tensors);
    for (int t = 0, first = 1; t < GGML_NTYPES; t++)
        if (counts[t]) {
            printf("%s%s: %d", first ? "" : ", ", ggml_type_get(t)->name, counts[t]);
            first = 0;
        }
    double mb_in = rep.bytes_in / 1e6, mb_out = rep.bytes_out / 1e6;
    printf(")\n  tensor data %.2f MB -> %.2f MB (%.1f%%), file %.2f MB -> %.2f MB, %.2f s, %.1f MB/s in\n", mb_in,
           mb_out, mb_in > 0 ? 100.0 * mb_out / mb_in : 0.0, rep.file_bytes_in / 1e6, rep.file_bytes_out / 1e6,
           rep.seconds, rep.seconds > 0 ? mb_in / rep.seconds : 0.0);
    quantize_report_free(&rep);
    return 0;
}
