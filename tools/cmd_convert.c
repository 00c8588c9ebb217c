/* cmd_convert.c — `lfm2c convert HF_DIR -o OUT.gguf [--type f16|bf16|f32|q8_0] [-t N]`:
 * Hugging Face LFM2 / LFM2-MoE checkpoint -> GGUF, with a progress bar on a terminal and a
 * summary (tensors per type, sizes, speed) at the end. */
#include "cli.h"
#include "base/clock.h"
#include "base/threadpool.h"
#include "convert/convert.h"
#include "convert/lora_file.h"
#include "formats/ggml_types.h"
#include "base/os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lfm2c convert HF_DIR -o OUT.gguf [--type f16|bf16|f32|q8_0] [-t THREADS]\n"
               "  HF_DIR   config.json, model.safetensors (or shards + model.safetensors.index.json),\n"
               "           tokenizer.json, tokenizer_config.json, chat_template.jinja, generation_config.json\n"
               "  --type   type of the weight matrices (default f16); norms, conv taps, router stay f32\n"
               "  -t       threads (default: all cores)\n"
               "LoRA adapters:\n"
               "  lfm2c convert PEFT_DIR --base BASE.gguf -o ADAPTER.gguf\n"
               "           a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) -> a GGUF\n"
               "           adapter (llama.cpp's layout), checked against the base it adapts\n"
               "  lfm2c convert BASE.gguf --lora PATH[:S]... [--lora-scaled PATH S] -o MERGED.gguf\n"
               "           the adapters merged into the base: a plain model file; quantized matrices are\n"
               "           dequantized, added to and requantized to their own type (-t threads; a progress\n"
               "           bar on a terminal)\n");
}

/* The merge's progress on a terminal: a bar, the tensor being written. */
static void merge_progress(void *ud, uint64_t done, uint64_t total, const char *tensor) {
    int *last = ud, pct = total ? (int)(100 * done / total) : 100;
    if (pct == *last) return;
    *last = pct;
    int bar = pct * 40 / 100;
    fprintf(stderr, "\r[%.*s%*s] %3d%%  %-40.40s", bar, "########################################", 40 - bar, "", pct,
            tensor);
    if (done == total) fprintf(stderr, "\r%-90s\r", "");
    fflush(stderr);
}

/* BASE + the --lora adapters -> merged GGUF on `threads` threads: 0, or 1 with the message said. */
static int merge_lora(lfm2c_model *m, const char *in, const char *out, int threads) {
    lfm2c_lora *los[LFM2C_MAX_LORA];
    float sc[LFM2C_MAX_LORA];
    int n = cli_lora_list(los, sc), last = -1;
    lfm2c_error err = {0};
    lora_merge_params p = {.n_threads = threads > 0 ? threads : threadpool_default_threads(),
                           .progress = os_isatty(stderr) ? merge_progress : NULL,
                           .progress_ud = &last};
    double t0 = lfm2c_now_s();
    if (!lora_merge(in, los, sc, n, out, &p, &err)) return cli_fail("convert: %s", err.msg);
    printf("merged %d adapter(s) into %s -> %s (%d thread%s, %.2f s)\n", n, in, out, p.n_threads,
           p.n_threads == 1 ? "" : "s", lfm2c_now_s() - t0);
    return 0;
}

/* PEFT_DIR -> GGUF adapter, or BASE + adapters -> merged GGUF */
static int convert_lora(const char *in, const char *base, const char *out, int threads) {
    os_stat_t sb;
    bool peft = !os_stat(in, &sb) && sb.is_dir;
    if (peft && !base) return cli_fail("convert: a PEFT adapter needs --base BASE.gguf (the model it adapts)");
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    mp.no_populate = true;
    mp.hugepages = LFM2C_HUGEPAGES_OFF;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(peft ? base : in, &mp, &err);
    if (!m) return cli_fail("convert: %s", err.msg);
    int rc = 1;
    if (peft) {
        lfm2c_lora *lo = lfm2c_lora_load(m, in, &err);
        if (!lo) cli_fail("convert: %s", err.msg);
        else if (!lora_write_gguf(lo, out, &err)) cli_fail("convert: %s", err.msg);
        else rc = 0, printf("converted %s -> %s (%d adapted matrices)\n", in, out, lfm2c_lora_n_matrices(lo));
        lfm2c_lora_free(lo);
    } else if (cli_lora_load(m) == 0) rc = merge_lora(m, in, out, threads);
    cli_lora_forget();
    lfm2c_model_free(m);
    return rc;
}

static void progress(void *ud, uint64_t done, uint64_t total) {
    int *last = ud;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    if (pct == *last) return;
    *last = pct;
    int bar = pct * 40 / 100;
    fprintf(stderr, "\r[%.*s%*s] %3d%%", bar, "########################################", 40 - bar, "", pct);
    if (done == total) fputc('\n', stderr);
}

int cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *type = "f16", *base = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) out = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--type") || !strcmp(argv[i], "--outtype")) type = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads"))
            threads = cli_threads(argv[i], cli_value(argc, argv, &i));
        else if (!strcmp(argv[i], "--base")) base = cli_value(argc, argv, &i);
        else if (cli_lora_flag(argc, argv, &i)) continue;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_unknown_option("convert", argv[i],
                                      "-o --output --type --outtype -t --threads --base --lora --lora-scaled");
        else if (!dir) dir = argv[i];
        else {
            usage(stderr);
            return cli_fail("convert: unexpected argument '%s'", argv[i]), 2;
        }
    }
    if (!dir || !out) {
        usage(stderr);
        return cli_fail("convert: needs HF_DIR and -o OUT.gguf");
    }
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    if (base || cli_lora_count() || os_exists(cfg)) return convert_lora(dir, base, out, threads);
    int t = convert_parse_type(type);
    if (t < 0) return cli_fail("convert: unknown --type '%s' (f16, bf16, f32, q8_0)", type);

    int last = -1;
    convert_params params = {.out_type = (uint32_t)t,
                             .n_threads = threads,
                             .progress = os_isatty(stderr) ? progress : NULL,
                             .progress_ud = &last};
    convert_stats st;
    lfm2c_error err = {0};
    if (!convert_hf_to_gguf(dir, out, &params, &st, &err)) return cli_fail("convert: %s", err.msg);

    printf("converted %s (%s) -> %s\n", dir, st.arch, out);
    printf("  tensors: %d (", st.n_tensors);
    for (int k = 0, first = 1; k < GGML_NTYPES; k++)
        if (st.n_by_type[k]) {
            const ggml_type_info *ti = ggml_type_get((uint32_t)k);
            printf("%s%s: %d", first ? "" : ", ", ti ? ti->name : "?", st.n_by_type[k]);
            first = 0;
        }
    printf("), %.3f B parameters\n", (double)st.n_params / 1e9);
    printf("  vocab: %d tokens, %d merges\n", st.n_vocab, st.n_merges);
    printf("  size: %.2f MB safetensors -> %.2f MB GGUF (%s)\n", (double)st.bytes_in / 1e6, (double)st.bytes_out / 1e6,
           type);
    printf("  time: %.2f s, %.1f MB/s read\n", st.seconds,
           st.seconds > 0 ? (double)st.bytes_in / 1e6 / st.seconds : 0.0);
    return 0;
}
