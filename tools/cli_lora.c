/* cli_lora.c — the LoRA flags of run, chat, bench and logits: `--lora PATH[:SCALE]` (repeatable;
 * a PEFT folder or a GGUF adapter; scale 1 when none is given) and `--lora-scaled PATH SCALE`,
 * parsed first and loaded once the model is open (cli.h); with -v each is described once loaded. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    const char *path;
    float scale;
} given[LFM2C_MAX_LORA];
static int n_given;
static lfm2c_lora *loaded[LFM2C_MAX_LORA];
static float scales[LFM2C_MAX_LORA];
static const lfm2c_model *loaded_for;
static bool verbose;

void cli_lora_verbose(bool on) { verbose = on; }

void cli_lora_describe(const char *name, const lfm2c_lora *lo) {
    int n = lfm2c_lora_describe(lo, NULL, 0);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text) lfm2c_lora_describe(lo, text, (size_t)n + 1);
    fprintf(stderr, "lfm2c: LoRA adapter %s: %s\n", name, text ? text : "(out of memory)");
    free(text);
}

static void add(const char *flag, char *path, double scale) {
    if (n_given == LFM2C_MAX_LORA) {
        cli_fail("%s: at most %d adapters", flag, LFM2C_MAX_LORA);
        exit(2);
    }
    given[n_given].path = path;
    given[n_given++].scale = (float)scale;
}

bool cli_lora_flag(int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--lora")) {
        char *v = strdup(cli_value(argc, argv, i)), *colon = strrchr(v, ':');
        double scale = 1;
        if (colon && colon[1]) { /* PATH:SCALE when what follows the last ':' is a number */
            char *end;
            double s = strtod(colon + 1, &end);
            if (!*end) {
                scale = s;
                *colon = 0;
            }
        }
        add(a, v, scale);
        return true;
    }
    if (!strcmp(a, "--lora-scaled")) {
        char *path = strdup(cli_value(argc, argv, i));
        add(a, path, cli_float(a, cli_value(argc, argv, i)));
        return true;
    }
    return false;
}

int cli_lora_count(void) { return n_given; }

int cli_lora_list(lfm2c_lora **los, float *sc) {
    for (int i = 0; i < n_given && loaded_for; i++) los[i] = loaded[i], sc[i] = scales[i];
    return loaded_for ? n_given : 0;
}

void cli_lora_forget(void) {
    for (int i = 0; i < LFM2C_MAX_LORA; i++) {
        lfm2c_lora_free(loaded[i]);
        loaded[i] = NULL;
    }
    loaded_for = NULL;
}

int cli_lora_load(lfm2c_model *m) {
    lfm2c_error err = {0};
    if (n_given && loaded_for != m) {
        cli_lora_forget();
        for (int i = 0; i < n_given; i++) {
            if (!(loaded[i] = lfm2c_lora_load(m, given[i].path, &err)))
                return cli_fail("--lora %s: %s", given[i].path, err.msg);
            scales[i] = given[i].scale;
            if (verbose) cli_lora_describe(given[i].path, loaded[i]);
        }
        loaded_for = m;
    }
    return 0;
}

int cli_lora_attach(lfm2c_model *m, lfm2c_session *s) {
    if (!n_given) return 0;
    lfm2c_error err = {0};
    if (cli_lora_load(m)) return 1;
    if (lfm2c_session_set_lora(s, loaded, scales, n_given, &err)) return cli_fail("--lora: %s", err.msg);
    return 0;
}
