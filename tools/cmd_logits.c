/* cmd_logits.c — `lfm2c logits`: the logits at every position of a token sequence, float32 LE
 * row-major [n_tokens][n_vocab] (the goldens' layout), for checking against other engines. */
#include "cli.h"
#include "base/os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr,
            "usage: lfm2c logits -m MODEL.gguf (--tokens 1,498,582 | -p TEXT) -o OUT.f32\n"
            "  --one-by-one   feed one token at a time (tests the caches) instead of one batch\n"
            "  --reference    plain scalar path: dequantized weights, float activations\n"
            "  -t N           threads;  --device " LFM2C_DEVICE_NAMES "\n"
            "  -ctk / -ctv T  KV cache types f32 (default here: the goldens' precision), f16, q8_0\n" CLI_LORA_HELP);
    return 2; /* a usage error (--help returns 0 itself) */
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *tokens_arg = NULL, *prompt = NULL, *out_path = NULL, *device = NULL;
    bool one_by_one = false, reference = false;
    int threads = 0;
    cli_kv_set_default(LFM2C_KV_F32, LFM2C_KV_F32); /* logits are compared with references */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--tokens")) tokens_arg = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) device = cli_device(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--one-by-one")) one_by_one = true;
        else if (!strcmp(a, "--reference")) reference = true;
        else if (cli_kv_flag(argc, argv, &i) || cli_lora_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        else
            return cli_unknown_option("logits", a,
                                      "-m --model --tokens -p --prompt -o --output -t --threads --device --one-by-one "
                                      "--reference -ctk -ctv --hugepages --no-hugepages --lora --lora-scaled");
    }
    if (!out_path || (!tokens_arg == !prompt)) return usage();
    lfm2c_model *m = cli_open_model(model_path, threads, reference, device);
    if (!m) return 1;
    lfm2c_error err = {0};
    int n = 0, rc = 1;
    int32_t *ids = tokens_arg
                       ? cli_parse_ids(tokens_arg, &n)
                       : lfm2c_tokenize(m, prompt, strlen(prompt), lfm2c_model_get_info(m)->add_bos, true, &n, &err);
    lfm2c_session *s = NULL;
    FILE *f = NULL;
    if (!ids) {
        if (err.code) cli_fail("%s", err.msg);
        goto done;
    }
    if (n == 0) {
        cli_fail("no tokens");
        goto done;
    }
    if (!(s = lfm2c_session_new(m, n, &err))) {
        cli_fail("%s", err.msg);
        goto done;
    }
    if (cli_lora_attach(m, s)) goto done;
    if (!(f = os_fopen(out_path, "wb"))) {
        cli_fail("cannot write '%s'", out_path);
        goto done;
    }
    const int V = lfm2c_model_get_info(m)->n_vocab;
    if (one_by_one) {
        for (int i = 0; i < n; i++) {
            if (lfm2c_session_decode(s, ids + i, 1, LFM2C_LOGITS_LAST, &err)) {
                cli_fail("%s", err.msg);
                goto done;
            }
            if (fwrite(lfm2c_session_logits(s, 0), sizeof(float), (size_t)V, f) != (size_t)V) {
                cli_fail("write failed");
                goto done;
            }
        }
    } else {
        if (lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_ALL, &err)) {
            cli_fail("%s", err.msg);
            goto done;
        }
        for (int i = 0; i < n; i++)
            if (fwrite(lfm2c_session_logits(s, i), sizeof(float), (size_t)V, f) != (size_t)V) {
                cli_fail("write failed");
                goto done;
            }
    }
    if (fclose(f) != 0) {
        f = NULL;
        cli_fail("write failed");
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f) fclose(f);
    lfm2c_session_free(s);
    free(ids);
    cli_lora_forget();
    lfm2c_model_free(m);
    return rc;
}
