/* cmd_convert.c — `lfm2c convert HF_DIR -o OUT.gguf [--type f16|bf16|f32|q8_0] [-t N]`:
 * Hugging Face LFM2 / LFM2-MoE checkpoint -> GGUF, with a progress bar on a terminal and a
 * summary (tensors per type, sizes, speed) at the end. */
#include "cli.h"
#include "convert/convert.h"
#include "formats/ggml_types.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lfm2c convert HF_DIR -o OUT.gguf [--type f16|bf16|f32|q8_0] [-t THREADS]\n"
               "  HF_DIR   config.json, model.safetensors (or shards + model.safetensors.index.json),\n"
               "           tokenizer.json, tokenizer_config.json, chat_template.jinja, generation_config.json\n"
               "  --type   type of the weight matrices (default f16); norms, conv taps, router stay f32\n"
               "  -t       threads (default: all cores)\n");
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
    const char *dir = NULL, *out = NULL, *type = "f16";
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) out = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--type") || !strcmp(argv[i], "--outtype")) type = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) threads = cli_threads(argv[i], cli_value(argc, argv, &i));
        else if (argv[i][0] == '-' && argv[i][1]) { usage(stderr); return cli_fail("convert: unknown option '%s'", argv[i]), 2; }
        else if (!dir) dir = argv[i];
        else { usage(stderr); return cli_fail("convert: unexpected argument '%s'", argv[i]), 2; }
    }
    if (!dir || !out) { usage(stderr); return cli_fail("convert: needs HF_DIR and -o OUT.gguf"); }
    int t = convert_parse_type(type);
    if (t < 0) return cli_fail("convert: unknown --type '%s' (f16, bf16, f32, q8_0)", type);

    int last = -1;
    convert_params params = {.out_type = (uint32_t)t, .n_threads = threads,
                             .progress = isatty(STDERR_FILENO) ? progress : NULL, .progress_ud = &last};
    convert_stats st;
    lfm2c_error err = {0};
    if (!convert_hf_to_gguf(dir, out, &params, &st, &err)) return cli_fail("convert: %s", err.msg);

    printf("converted %s (%s) -> %s\n", dir, st.arch, out);
    printf("  tensors: %d (", st.n_tensors);
    for (int k = 0, first = 1; k < 40; k++)
        if (st.n_by_type[k]) {
            const ggml_type_info *ti = ggml_type_get((uint32_t)k);
            printf("%s%s: %d", first ? "" : ", ", ti ? ti->name : "?", st.n_by_type[k]);
            first = 0;
        }
    printf("), %.3f B parameters\n", (double)st.n_params / 1e9);
    printf("  vocab: %d tokens, %d merges\n", st.n_vocab, st.n_merges);
    printf("  size: %.2f MB safetensors -> %.2f MB GGUF (%s)\n", (double)st.bytes_in / 1e6, (double)st.bytes_out / 1e6, type);
    printf("  time: %.2f s, %.1f MB/s read\n", st.seconds, st.seconds > 0 ? (double)st.bytes_in / 1e6 / st.seconds : 0.0);
    return 0;
}
