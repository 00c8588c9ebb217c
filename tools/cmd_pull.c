/* cmd_pull.c — `lfm2c pull` / `list` / `rm`: models from the Hugging Face Hub in its cache layout,
 * and `-hf REPO[:QUANT]` / `-hff FILE` on run, chat, serve and bench (turned into -m PATH before
 * the command sees its arguments). Progress goes to stderr: a bar on a terminal, plain lines
 * otherwise. */
#include "cli.h"
#include "hub/hub.h"
#include "base/clock.h"
#include "base/os.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t g_cancel;
static void on_sigint(void) { g_cancel = 1; }

typedef struct {
    bool tty;
    int last_decile;
    double t0;
    uint64_t start_bytes;
    char file[256];
} progress_state;

static void human(uint64_t b, char *out, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void on_progress(void *user, const char *file, uint64_t done, uint64_t total, uint64_t resumed, bool finished) {
    progress_state *ps = user;
    if (strcmp(ps->file, file)) { /* a new file */
        snprintf(ps->file, sizeof ps->file, "%s", file);
        ps->t0 = lfm2c_now_s();
        ps->start_bytes = resumed;
        ps->last_decile = -1;
        if (resumed && resumed < total) {
            char r[32];
            human(resumed, r, sizeof r);
            fprintf(stderr, "%s: resuming a partial download at %s (%llu bytes)\n", file, r,
                    (unsigned long long)resumed);
        }
        if (finished && resumed == total) {
            fprintf(stderr, "%s: already in the cache\n", file);
            return;
        }
    }
    double dt = lfm2c_now_s() - ps->t0;
    double rate = dt >= 0.25 ? (double)(done - ps->start_bytes) / dt : 0; /* too early to tell: 0 */
    char d[32], t[32], r[40];
    human(done, d, sizeof d);
    human(total, t, sizeof t);
    if (rate > 0) {
        human((uint64_t)rate, r, sizeof r);
        strcat(r, "/s");
    } else snprintf(r, sizeof r, "-");
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 0;
    double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
    if (ps->tty) {
        char bar[31];
        int fill = pct * 30 / 100;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s  ETA %.0fs\033[K%s", file, bar, pct, d, t, r, eta,
                finished ? "\n" : "");
    } else if (finished || pct / 10 > ps->last_decile) {
        ps->last_decile = pct / 10;
        fprintf(stderr, "%s: %3d%% %s / %s  %s  ETA %.0fs%s\n", file, pct, d, t, r, eta,
                finished ? "  done, sha256 verified" : "");
    }
    fflush(stderr);
}

static void on_notice(void *user, const char *msg) {
    progress_state *ps = user;
    fprintf(stderr, "%s%s\n", ps->tty ? "\n" : "", msg);
    ps->file[0] = 0; /* the next progress call starts a new line (and reports the resume) */
}

/* Options shared by pull and -hf: parsed out of argv by the caller. */
typedef struct {
    const char *repo, *file, *token, *revision;
    bool offline, quiet, no_mmproj;
} hub_opts;

/* The model's path, or NULL with the error printed; *rc: the exit status then (2 for a bad
 * repository name or file: a usage error, else 1). mmproj (optional): the repository's mmproj,
 * fetched beside the model (NULL there when it has none). */
static char *hub_fetch(const hub_opts *o, int *rc, char **mmproj) {
    *rc = 1;
    if (mmproj) *mmproj = NULL;
#ifdef LFM2C_HAVE_HUB
    progress_state ps = {.tty = os_isatty(stderr) != 0};
    lfm2c_hub_params p = {.token = o->token,
                          .revision = o->revision,
                          .offline = o->offline,
                          .progress = o->quiet ? NULL : on_progress,
                          .progress_user = &ps,
                          .cancel = &g_cancel,
                          .notice = o->quiet ? NULL : on_notice,
                          .mmproj = mmproj};
    const char *r = getenv("LFM2C_HUB_RETRIES"), *b = getenv("LFM2C_HUB_BACKOFF_MS"); /* for tests */
    if (r) p.max_retries = atoi(r);
    if (b) p.backoff_ms = atoi(b);
    os_on_interrupt(on_sigint);
    os_ignore_broken_pipe(); /* a file-size limit makes write() fail with EFBIG instead of killing us */
    lfm2c_error err = {0};
    char *path = lfm2c_hub_pull(o->repo, o->file, &p, &err);
    os_on_interrupt(NULL);
    if (!path) cli_fail("%s", err.msg);
    if (!path && err.code == LFM2C_HUB_E_ARG) *rc = 2;
    return path;
#else
    (void)o;
    (void)mmproj;
    cli_fail("this lfm2c was built without libcurl: -hf / pull are not available (install libcurl4-openssl-dev and "
             "rebuild)");
    return NULL;
#endif
}

int cli_hub_flag(const char *a) {
    return !strcmp(a, "-hf") || !strcmp(a, "--hf-repo") || !strcmp(a, "-hff") || !strcmp(a, "--hf-file") ||
           !strcmp(a, "--hf-token") || !strcmp(a, "--offline") || !strcmp(a, "--revision") || !strcmp(a, "-hfd") ||
           !strcmp(a, "--hf-repo-draft") || !strcmp(a, "--no-mmproj");
}

/* Does the command line give its own mmproj (-mm / --mmproj FILE)? */
static bool gives_mmproj(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-mm") || !strcmp(argv[i], "--mmproj")) return true;
    return false;
}

char **cli_hub_rewrite(int *argc, char **argv, char **model_path, char **draft_path, char **mmproj_path) {
    hub_opts o = {0};
    const char *draft_repo = NULL;
    int n = *argc;
    const bool serve = n > 1 && !strcmp(argv[1], "serve");
    /* the repository's mmproj becomes -mm where the command takes one and the user gave none */
    bool want_mmproj =
        n > 1 && (serve || !strcmp(argv[1], "run") || !strcmp(argv[1], "chat") || !strcmp(argv[1], "transcribe")) &&
        !gives_mmproj(n, argv);
    char **out = calloc((size_t)n + 7, sizeof *out);
    if (!out) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *a = argv[i];
        if (i > 0 && cli_hub_flag(a)) {
            if (!strcmp(a, "--offline") || !strcmp(a, "--no-mmproj")) {
                if (a[2] == 'o') o.offline = true;
                else want_mmproj = false, o.no_mmproj = true;
                if (serve) out[k++] = argv[i]; /* serve's own too: its pulls are refused, its cache unpaired */
                continue;
            }
            if (i + 1 >= n) {
                cli_fail("%s needs a value", a);
                free(out);
                exit(2);
            }
            const char *v = argv[++i];
            if (!strcmp(a, "-hf") || !strcmp(a, "--hf-repo")) o.repo = v;
            else if (!strcmp(a, "-hff") || !strcmp(a, "--hf-file")) o.file = v;
            else if (!strcmp(a, "--hf-token")) o.token = v;
            else if (!strcmp(a, "-hfd") || !strcmp(a, "--hf-repo-draft")) draft_repo = v;
            else o.revision = v;
            continue;
        }
        out[k++] = argv[i];
    }
    if (!o.repo && !draft_repo) {
        if (o.file || o.token || ((o.offline || o.no_mmproj) && !serve) || o.revision) {
            cli_fail("-hff, --hf-token, --offline, --no-mmproj and --revision need -hf REPO");
            free(out);
            exit(2);
        }
        free(out);
        return argv;
    }
    int rc;
    if (o.repo) {
        char *path = hub_fetch(&o, &rc, want_mmproj ? mmproj_path : NULL);
        if (!path) {
            free(out);
            exit(rc);
        }
        out[k++] = "-m";
        out[k++] = path;
        *model_path = path;
        if (want_mmproj && *mmproj_path) {
            out[k++] = "-mm";
            out[k++] = *mmproj_path;
        }
    }
    if (draft_repo) { /* the draft: same token / revision / offline settings, its repo's default quant */
        hub_opts d = o;
        d.repo = draft_repo;
        d.file = NULL;
        char *path = hub_fetch(&d, &rc, NULL);
        if (!path) {
            free(out);
            free(*model_path);
            free(*mmproj_path);
            *model_path = *mmproj_path = NULL;
            exit(rc);
        }
        out[k++] = "-md";
        out[k++] = path;
        *draft_path = path;
    }
    out[k] = NULL;
    *argc = k;
    return out;
}

static int pull_usage(FILE *f, int rc) {
    fprintf(f, "usage: lfm2c pull ORG/NAME[:QUANT] [options]\n"
               "  Downloads a GGUF model from the Hugging Face Hub into the Hugging Face cache\n"
               "  ($HF_HOME/hub, default ~/.cache/huggingface/hub) and prints its path.\n"
               "  QUANT defaults to Q4_K_M when the repo has it, else the nearest it has.\n"
               "  -hff, --hf-file FILE  this file of the repo instead of a quant\n"
               "  --hf-token TOKEN      token for gated / private repos (default $HF_TOKEN)\n"
               "  --revision REV        branch, tag or commit (default main)\n"
               "  --offline             only look in the cache (also HF_HUB_OFFLINE=1)\n"
               "  --no-mmproj           not the repository's projector (mmproj*.gguf: a vision\n"
               "                        tower or an audio encoder, the F16 one if several), else\n"
               "                        fetched beside the model\n"
               "  -q, --quiet           no progress\n"
               "  HF_ENDPOINT sets the Hub's address (mirrors). Interrupted downloads resume.\n"
               "  The same options work on run, chat, serve and bench: -hf ORG/NAME[:QUANT]\n"
               "  (and -hfd ORG/NAME[:QUANT] for a draft model: speculative decoding); run, chat,\n"
               "  transcribe and serve use the repository's mmproj as --mmproj unless given one or\n"
               "  --no-mmproj. An audio repository's vocoder-, tokenizer- and audiodecoder-*.gguf\n"
               "  (speech output) are not models: never picked.\n");
    return rc;
}

int cmd_pull(int argc, char **argv) {
    hub_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return pull_usage(stdout, 0);
        else if (!strcmp(a, "-hff") || !strcmp(a, "--hf-file")) o.file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--hf-token")) o.token = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--revision")) o.revision = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--offline")) o.offline = true;
        else if (!strcmp(a, "--no-mmproj")) o.no_mmproj = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o.quiet = true;
        else if (!strcmp(a, "-hf") || !strcmp(a, "--hf-repo")) o.repo = cli_value(argc, argv, &i);
        else if (a[0] == '-')
            return cli_unknown_option(
                "pull", a, "-hff --hf-file --hf-token --revision --offline --no-mmproj -q --quiet -hf --hf-repo");
        else if (o.repo) {
            cli_fail("pull: one repository at a time ('%s' and '%s')", o.repo, a);
            return 2;
        } else o.repo = a;
    }
    if (!o.repo) return pull_usage(stderr, 2);
    int rc;
    char *mmproj = NULL;
    char *path = hub_fetch(&o, &rc, o.no_mmproj ? NULL : &mmproj);
    if (!path) return rc;
    printf("%s\n", path);
    if (mmproj && !o.quiet) fprintf(stderr, "projector, vision or audio (-hf uses it as --mmproj): %s\n", mmproj);
    free(mmproj);
    free(path);
    return 0;
}

/* ---------- list / rm ---------- */

static void list_one(void *u, const lfm2c_hub_file *f) {
    int *count = u;
    char sz[32];
    human(f->bytes, sz, sizeof sz);
    if (!*count) printf("%-40s %-10s %10s  %s\n", "REPO", "QUANT", "SIZE", "FILE");
    printf("%-40s %-10s %10s  %s\n", f->repo, *f->quant ? f->quant : "-", sz, f->file);
    ++*count;
}

int cmd_list(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lfm2c list\n  GGUF models in the Hugging Face cache ($HF_HOME/hub, default "
                   "~/.cache/huggingface/hub)\n");
            return 0;
        }
        cli_fail("list: unknown argument '%s'", argv[i]);
        return 2;
    }
    char *cache = lfm2c_hub_cache_dir(NULL);
    int count = 0;
    lfm2c_hub_list(cache, NULL, list_one, &count);
    if (!count) fprintf(stderr, "no GGUF models in %s (lfm2c pull ORG/NAME[:QUANT] fetches one)\n", cache);
    free(cache);
    return 0;
}

static void rm_said(void *u, const lfm2c_hub_file *f) {
    (void)u;
    fprintf(stderr, "removed %s %s\n", f->repo, f->file);
}

int cmd_rm(int argc, char **argv) {
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lfm2c rm ORG/NAME[:QUANT]\n  removes the model's GGUF files (only that quant if given) from "
                   "the Hugging Face cache\n");
            return 0;
        }
        if (argv[i][0] == '-' || spec) {
            cli_fail("rm: unexpected argument '%s' (see lfm2c rm --help)", argv[i]);
            return 2;
        }
        spec = argv[i];
    }
    if (!spec) {
        fprintf(stderr, "usage: lfm2c rm ORG/NAME[:QUANT]\n");
        return 2;
    }
    char repo[512];
    snprintf(repo, sizeof repo, "%s", spec);
    char *colon = strchr(repo, ':');
    if (colon) *colon = 0;
    char *cache = lfm2c_hub_cache_dir(NULL);
    lfm2c_error err = {0};
    int removed = lfm2c_hub_remove(cache, repo, colon ? colon + 1 : NULL, rm_said, NULL, &err);
    free(cache);
    if (removed < 0) return cli_fail("%s", err.msg);
    if (!removed) return cli_fail("%s is not in the cache (see lfm2c list)", spec);
    return 0;
}
