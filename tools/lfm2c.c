/* lfm2c.c — the command-line program: `lfm2c --version`, the usage, the model given as a
 * positional argument, and the dispatch of `lfm2c <command> ...` to tools/cmd_*.c (what the
 * commands share is tools/cli.c's). */
#include "cli.h"
#include "cpu/kernels.h"
#include "base/threadpool.h"
#include "base/os.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int print_version(void) {
    printf("lfm2c %s (commit %s)\n", cli_build_version(), cli_build_commit());
    const kernel_ops *ks[8];
    int nk = kernels_available(ks, 8);
    printf("kernels (compiled in and usable on this CPU):");
    for (int i = 0; i < nk; i++) printf(" %s", ks[i]->isa);
    const kernel_choice *kc = kernels_choice();
    printf("; selected: %s\n", kc->ops->isa);
    printf("kernel choice: %s: %s; CPU: %s (%s family %d model %d)\n", kc->how, kc->why, kc->cpu.name, kc->cpu.vendor,
           kc->cpu.family, kc->cpu.model);
    printf("decode prefetch: %s (%s: %s)\n", kc->pf_name, kc->pf_how, kc->pf_why);
    printf("attention prefetch: %s (%s: %s)\n", kc->apf_name, kc->apf_how, kc->apf_why);
#ifdef LFM2C_HAVE_CUDA
    printf("cuda: yes\n");
#else
    printf("cuda: no\n");
#endif
#ifdef LFM2C_HAVE_VULKAN
    printf("vulkan: yes\n");
#else
    printf("vulkan: no\n");
#endif
#ifdef LFM2C_HAVE_SERVER
    printf("server: yes\n");
#else
    printf("server: no\n");
#endif
#ifdef LFM2C_HAVE_HUB
    printf("hub (pull, -hf): yes\n");
#else
    printf("hub (pull, -hf): no (built without libcurl)\n");
#endif
    return 0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: lfm2c <command> [options]   (lfm2c <command> --help for its options)\n\ncommands:\n");
#define CLI_HELP(name, help) fprintf(out, "  %-11s %s\n", #name, help);
    CLI_COMMANDS(CLI_HELP)
#undef CLI_HELP
    fprintf(out, "  %-11s %s\n", "help", "this list; help COMMAND: its options");
    fprintf(out, "\nrun, chat, serve and bench take the model as -m FILE.gguf, -hf ORG/NAME[:QUANT], or first:\n"
                 "    lfm2c run MODEL [PROMPT]   (no prompt: an interactive chat, as ollama run)\n");
}

static bool opens_model(const char *cmd) {
    return !strcmp(cmd, "run") || !strcmp(cmd, "chat") || !strcmp(cmd, "serve") || !strcmp(cmd, "bench") ||
           !strcmp(cmd, "embed") || !strcmp(cmd, "perplexity") || !strcmp(cmd, "imatrix");
}

static bool is_file(const char *path) {
    os_stat_t st;
    return os_stat(path, &st) == 0 && st.is_file;
}

/* ORG/NAME or ORG/NAME:QUANT (a Hub repository), with no spaces and no path look. */
static bool looks_like_repo(const char *s) {
    const char *slash = strchr(s, '/');
    return slash && slash > s && slash[1] && !strchr(slash + 1, '/') && !strpbrk(s, " \t") && s[0] != '.' &&
           strlen(s) < 200;
}

/* `lfm2c run MODEL [PROMPT] [options]` (ollama's habit): MODEL first, a file (-m) or a Hub
 * repository ORG/NAME[:QUANT] (-hf); for run, a second word is the prompt (-p), and without a
 * prompt run is the interactive chat. Returns argv rewritten (or as is), NULL after an error
 * (printed; *rc set). */
static char **positional_model(int *argc, char **argv, int *rc) {
    if (*argc < 3 || !opens_model(argv[1]) || argv[2][0] == '-') return argv;
    const char *model = argv[2];
    size_t n = strlen(model);
    bool gguf = n > 5 && !strcmp(model + n - 5, ".gguf");
    const char *flag = is_file(model) ? "-m" : !gguf && looks_like_repo(model) ? "-hf" : NULL;
    if (!flag) {
        if (gguf) cli_fail("%s: no such model file '%s'", argv[1], model);
        else cli_fail("%s: '%s' is neither a model file nor a Hub repository ORG/NAME[:QUANT]", argv[1], model);
        *rc = 2;
        return NULL;
    }
    char **out = calloc((size_t)*argc + 4, sizeof *out);
    if (!out) {
        cli_fail("out of memory");
        *rc = 1;
        return NULL;
    }
    bool run = !strcmp(argv[1], "run"), prompt = run && *argc >= 4 && argv[3][0] != '-';
    int k = 0;
    out[k++] = argv[0];
    out[k++] = argv[1];
    out[k++] = (char *)flag;
    out[k++] = argv[2];
    if (prompt) {
        out[k++] = "-p";
        out[k++] = argv[3];
    }
    bool has_prompt = prompt;
    for (int i = prompt ? 4 : 3; i < *argc; i++) {
        if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt") || !strcmp(argv[i], "-f") ||
            !strcmp(argv[i], "--file"))
            has_prompt = true;
        out[k++] = argv[i];
    }
    if (run && !has_prompt) out[1] = "chat";
    *argc = k;
    return out;
}

static char *command_names(void) {
    static char names[512];
    size_t n = 0;
#define CLI_NAME(name, help) n += (size_t)snprintf(names + n, sizeof names - n, "%s ", #name);
    CLI_COMMANDS(CLI_NAME)
#undef CLI_NAME
    snprintf(names + n, sizeof names - n, "help version");
    return names;
}

/* Runs argv[1] (after the positional model is rewritten): -hf first, then the command. */
static int dispatch(int argc, char **argv) {
    /* -hf on the commands that open a model: pull it, then hand the command "-m PATH" (transcribe
       too, whose first word is the audio file, not a model) */
    if (opens_model(argv[1]) || !strcmp(argv[1], "transcribe")) {
        char *model_path = NULL, *draft_path = NULL, *mmproj_path = NULL;
        int n = argc;
        char **av = cli_hub_rewrite(&n, argv, &model_path, &draft_path, &mmproj_path);
        if (!av) {
            cli_fail("out of memory");
            return 1;
        }
        if (model_path || draft_path) {
            int rc = 1;
#define CLI_DISPATCH_HF(name, help) \
    if (!strcmp(av[1], #name)) rc = cmd_##name(n - 1, av + 1);
            CLI_COMMANDS(CLI_DISPATCH_HF)
#undef CLI_DISPATCH_HF
            free(av);
            free(model_path);
            free(draft_path);
            free(mmproj_path);
            return rc;
        }
    }
#define CLI_DISPATCH(name, help) \
    if (!strcmp(argv[1], #name)) return cmd_##name(argc - 1, argv + 1);
    CLI_COMMANDS(CLI_DISPATCH)
#undef CLI_DISPATCH
    char near[64];
    if (cli_closest(argv[1], command_names(), false, near, sizeof near))
        cli_fail("unknown command '%s' (did you mean '%s'?); 'lfm2c help' lists the commands", argv[1], near);
    else cli_fail("unknown command '%s'; 'lfm2c help' lists the commands", argv[1]);
    return 2;
}

int main(int argc, char **argv) {
    os_console_utf8(&argc, &argv); /* Windows: UTF-8 console and arguments, byte files (base/os.h) */
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || (!strcmp(argv[1], "help") && argc == 2)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    char *help_argv[3];
    if (!strcmp(argv[1], "help") && argv[2][0] == '-') {
        if (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help")) {
            usage(stdout);
            return 0;
        }
        return cli_unknown_option("help", argv[2], "--help");
    }
    if (!strcmp(argv[1], "help")) { /* lfm2c help CMD = lfm2c CMD --help */
        help_argv[0] = argv[0], help_argv[1] = argv[2], help_argv[2] = "--help";
        argv = help_argv;
        argc = 3;
    }
    /* `lfm2c CMD --help`: the usage is the output asked for, so it goes to stdout whatever stream
     * the command writes it to (commands print usage to stderr on argument errors) */
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fflush(stderr);
            os_stderr_to_stdout();
            break;
        }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") || !strcmp(argv[1], "version")) return print_version();
    int prc = 0;
    char **pv = positional_model(&argc, argv, &prc);
    if (!pv) return prc;
    int rc = dispatch(argc, pv);
    if (pv != argv) free(pv);
    return rc;
}
