/* cli.c — what the CLI's commands share (cli.h): messages and the nearest option to a mistyped
 * one, the argument parsers (numbers, threads, devices, token ids, files), the KV cache and
 * huge-page flags, opening a model and reporting its device, the sampling flags, and the
 * build's version and commit. The commands (cmd_*.c, cli_gen.c, cli_lora.c) and the dispatcher
 * (lfm2c.c) call it; it calls none of them. */
#include "cli.h"
#include "base/clock.h"
#include "base/threadpool.h"
#include "base/os.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lfm2c: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* Edit distance (insertions, deletions, substitutions, adjacent swaps), for "did you mean". */
static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

const char *cli_closest(const char *word, const char *candidates, bool dashes, char *out, size_t cap) {
    int best = 99;
    size_t wl = strlen(word);
    int limit = wl <= 4 ? 1 : wl <= 8 ? 2 : 3;
    for (const char *p = candidates; *p;) {
        while (*p && !(dashes ? *p == '-' && (p == candidates || strchr(" \t\n[(,/|", p[-1])) : !strchr(" \t\n", *p)))
            p++;
        if (!*p) break;
        size_t k = 0;
        char w[64];
        while (p[k] &&
               (dashes ? (p[k] == '-' || p[k] == '_' || (p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z') ||
                          (p[k] >= '0' && p[k] <= '9'))
                       : !strchr(" \t\n", p[k])) &&
               k < sizeof w - 1) {
            w[k] = p[k];
            k++;
        }
        w[k] = 0;
        p += k ? k : 1;
        if (k < 2 || (dashes && !strcmp(w, "--"))) continue;
        int dist = edit_distance(word, w);
        if (dist < best && dist <= limit) {
            best = dist;
            snprintf(out, cap, "%s", w);
        }
    }
    return best <= limit ? out : NULL;
}

int cli_unknown_option(const char *cmd, const char *arg, const char *usage_text) {
    char near[64];
    if (cli_closest(arg, usage_text, true, near, sizeof near))
        cli_fail("%s: unknown option '%s' (did you mean '%s'?); 'lfm2c %s --help' lists the options", cmd, arg, near,
                 cmd);
    else cli_fail("%s: unknown option '%s'; 'lfm2c %s --help' lists the options", cmd, arg, cmd);
    return 2;
}

int cli_int(const char *flag, const char *value) {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < -2147483647L || v > 2147483647L) {
        cli_fail("%s expects an integer, got '%s'", flag, value);
        exit(2);
    }
    return (int)v;
}

int cli_threads(const char *flag, const char *value) {
    int t = cli_int(flag, value);
    if (t < 1 || t > THREADPOOL_MAX_THREADS) {
        cli_fail("%s must be 1 to %d (leave it out for one thread per physical core), got %d", flag,
                 THREADPOOL_MAX_THREADS, t);
        exit(2);
    }
    return t;
}

/* "cpu, cuda or vulkan": the device names of lfm2c.h, for messages */
static const char *device_list(void) {
    static char list[64];
    const char *last = NULL;
    size_t n = 0;
    list[0] = 0;
    for (int d = 0; lfm2c_device_name(d); d++) {
        if (last) n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", last);
        last = lfm2c_device_name(d);
    }
    snprintf(list + n, sizeof list - n, "%s%s", n ? " or " : "", last ? last : "");
    return list;
}

const char *cli_device(const char *flag, const char *value) {
    if (lfm2c_device_from_name(value) < 0) {
        cli_fail("%s: unknown device '%s' (%s)", flag, value, device_list());
        exit(2);
    }
    return value;
}

int cli_positive(const char *flag, const char *value) {
    int v = cli_int(flag, value);
    if (v < 1) {
        cli_fail("%s must be at least 1, got %d", flag, v);
        exit(2);
    }
    return v;
}

int cli_n_predict(const char *flag, const char *value) {
    int v = cli_int(flag, value);
    if (v < -1) {
        cli_fail("%s must be -1 (no limit) or more, got %d", flag, v);
        exit(2);
    }
    return v;
}

static double sampling_value(const char *flag, const char *value, double lo, double hi, bool lo_open,
                             const char *range) {
    double v = cli_float(flag, value);
    if (isnan(v) || v < lo || v > hi || (lo_open && v == lo)) {
        cli_fail("%s must be in %s, got '%s'", flag, range, value);
        exit(2);
    }
    return v;
}

double cli_float(const char *flag, const char *value) {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end) {
        cli_fail("%s expects a number, got '%s'", flag, value);
        exit(2);
    }
    return v;
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_fail("%s needs a value", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? os_fopen(path, "rb") : stdin;
    if (!f) {
        cli_fail("cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (f != stdin) fclose(f);
    if (!buf) {
        cli_fail("out of memory reading '%s'", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* KV cache types given on the command line (-1: not given) and the command's default */
static int kv_given[2] = {-1, -1}, kv_default[2] = {LFM2C_KV_F16, LFM2C_KV_F16};
static int hugepages = LFM2C_HUGEPAGES_AUTO; /* --hugepages / --no-hugepages */

int cli_kv_type(const char *flag, const char *value) {
    int t = lfm2c_kv_type_from_name(value);
    if (t < 0) {
        cli_fail("%s: unknown KV cache type '%s' (supported: f16, q8_0 or f32)", flag, value);
        exit(2);
    }
    return t;
}

bool cli_kv_flag(int argc, char **argv, int *i) {
    const char *a = argv[*i];
    int which = !strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k")   ? 0
                : !strcmp(a, "-ctv") || !strcmp(a, "--cache-type-v") ? 1
                                                                     : -1;
    if (!strcmp(a, "--hugepages")) return hugepages = LFM2C_HUGEPAGES_ON, true;
    if (!strcmp(a, "--no-hugepages")) return hugepages = LFM2C_HUGEPAGES_OFF, true;
    if (which < 0) return false;
    kv_given[which] = cli_kv_type(a, cli_value(argc, argv, i));
    return true;
}

void cli_kv_set_default(int type_k, int type_v) { kv_default[0] = type_k, kv_default[1] = type_v; }

void cli_kv_current(int *type_k, int *type_v) {
    *type_k = kv_given[0] >= 0 ? kv_given[0] : kv_default[0];
    *type_v = kv_given[1] >= 0 ? kv_given[1] : kv_default[1];
}

void cli_kv_apply(lfm2c_model_params *p) {
    p->type_k = kv_given[0] >= 0 ? kv_given[0] : kv_default[0];
    p->type_v = kv_given[1] >= 0 ? kv_given[1] : kv_default[1];
    p->hugepages = hugepages;
}

int cli_device_id(const char *name) {
    const int d = lfm2c_device_from_name(name);
    if (d < 0) cli_fail("unknown device '%s' (%s)", name, device_list());
    return d;
}

lfm2c_model *cli_open_model(const char *path, int n_threads, bool reference, const char *device) {
    if (!path) {
        cli_fail("no model given (-m MODEL.gguf)");
        return NULL;
    }
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = n_threads;
    p.reference = reference;
    cli_kv_apply(&p);
    if (device && (p.device = cli_device_id(device)) < 0) return NULL;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(path, &p, &err);
    if (!m) cli_fail("%s", err.msg);
    else cli_report_device(m);
    return m;
}

void cli_report_device(const lfm2c_model *m) {
    static bool said;
    lfm2c_device_info d = lfm2c_model_device(m);
    if (said || d.device == LFM2C_DEVICE_CPU) return;
    said = true;
    const char *api = d.device == LFM2C_DEVICE_VULKAN ? "Vulkan" : "CUDA";
    if (strcmp(d.name, api)) fprintf(stderr, "lfm2c: device: %s (%s)\n", d.name, api);
    else fprintf(stderr, "lfm2c: device: %s\n", api); /* CUDA: the backend names no GPU yet */
    if (d.is_cpu)
        fprintf(stderr,
                "lfm2c: warning: %s is a %s driver that runs on the CPU, not a GPU: the CPU backend (--device "
                "cpu) runs this model much faster here\n",
                d.name, api);
}

int32_t *cli_parse_ids(const char *s, int *n_out) {
    size_t cap = 16;
    int n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return NULL;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\n' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 2147483647L) {
            cli_fail("bad token id list near '%.20s'", p);
            free(ids);
            return NULL;
        }
        if ((size_t)n == cap) {
            int32_t *nb = realloc(ids, 2 * cap * sizeof *ids);
            if (!nb) {
                free(ids);
                return NULL;
            }
            ids = nb;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    *n_out = n;
    return ids;
}

cli_sampling cli_sampling_init(void) { return (cli_sampling){NAN, NAN, NAN, NAN, -1, -2, -1}; /* seed -1: random */ }

bool cli_sampling_flag(cli_sampling *s, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--temp") || !strcmp(a, "--temperature"))
        s->temp = sampling_value(a, cli_value(argc, argv, i), 0, 1e6, false, "[0, ...)");
    else if (!strcmp(a, "--top-k")) {
        s->top_k = cli_int(a, cli_value(argc, argv, i));
        if (s->top_k < 0) {
            cli_fail("%s must be 0 (off) or more, got %d", a, s->top_k);
            exit(2);
        }
    } else if (!strcmp(a, "--top-p")) s->top_p = sampling_value(a, cli_value(argc, argv, i), 0, 1, true, "(0, 1]");
    else if (!strcmp(a, "--min-p")) s->min_p = sampling_value(a, cli_value(argc, argv, i), 0, 1, false, "[0, 1]");
    else if (!strcmp(a, "--repeat-penalty"))
        s->rep = sampling_value(a, cli_value(argc, argv, i), 0, 1e6, true, "(0, ...)");
    else if (!strcmp(a, "--repeat-last-n")) {
        s->rep_n = cli_int(a, cli_value(argc, argv, i));
        if (s->rep_n < -1) {
            cli_fail("%s must be -1 (the whole context) or more, got %d", a, s->rep_n);
            exit(2);
        }
    } else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
        s->seed = cli_int(a, cli_value(argc, argv, i));
        if (s->seed < -1) {
            cli_fail("%s must be -1 (random) or more, got %lld", a, s->seed);
            exit(2);
        }
    } else return false;
    return true;
}

lfm2c_sampler_params cli_sampling_params(const cli_sampling *s, const lfm2c_model *m) {
    lfm2c_sampler_params p = lfm2c_sampler_params_for_model(m);
    if (!isnan(s->temp)) p.temperature = (float)s->temp;
    if (s->top_k >= 0) p.top_k = s->top_k;
    if (!isnan(s->top_p)) p.top_p = (float)s->top_p;
    if (!isnan(s->min_p)) p.min_p = (float)s->min_p;
    if (!isnan(s->rep)) p.repeat_penalty = (float)s->rep;
    if (s->rep_n >= -1) p.repeat_last_n = s->rep_n;
    if (s->seed >= 0) p.seed = (uint64_t)s->seed;
    else { /* no --seed, or --seed -1: a different seed each run, as llama.cpp and ollama do */ struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p.seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)os_pid() << 32);
        p.seed = (p.seed ^ (p.seed >> 31)) & 0x7fffffff; /* one that --seed takes back */
    }
    return p;
}

void cli_sampling_report(const lfm2c_sampler_params *p) {
    fprintf(stderr, "sampling: seed %llu (--seed repeats it), temperature %g, top-k %d, top-p %g, min-p %g\n",
            (unsigned long long)p->seed, p->temperature, p->top_k, p->top_p, p->min_p);
}

#ifndef LFM2C_VERSION
#define LFM2C_VERSION "0.0.0"
#endif
#ifdef LFM2C_HAVE_GIT_COMMIT_H
#include "git_commit.h" /* written at build time: cmake/git_commit.cmake */
#endif
#ifndef LFM2C_GIT_COMMIT
#define LFM2C_GIT_COMMIT "unknown"
#endif

const char *cli_build_version(void) { return LFM2C_VERSION; }
const char *cli_build_commit(void) { return LFM2C_GIT_COMMIT; }
const char *cli_build_string(void) { return LFM2C_GIT_COMMIT " (lfm2c " LFM2C_VERSION ")"; }

static bool progress_shown;

void cli_progress(const char *what, long done, long total, double t_start) {
    if (!os_isatty(stderr) || total <= 0) return;
    const int width = 30, bar = (int)(width * done / total);
    const double spent = lfm2c_now_s() - t_start, left = done > 0 ? spent * (double)(total - done) / (double)done : 0;
    fprintf(stderr, "\r%s [%.*s%*s] %ld/%ld", what, bar, "##############################", width - bar, "", done,
            total);
    if (done > 0 && done < total) fprintf(stderr, ", %.0f s left ", left);
    else fprintf(stderr, ", %.1f s        ", spent);
    fflush(stderr);
    progress_shown = true;
}

void cli_progress_end(void) {
    if (!progress_shown) return;
    fputc('\n', stderr);
    progress_shown = false;
}
