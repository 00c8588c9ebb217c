/* lfm2c.c — the command-line program: dispatches `lfm2c <command> ...` to tools/cmd_*.c. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lfm2c: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_int(const char *flag, const char *value) {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < -2147483647L || v > 2147483647L) {
        cli_fail("%s expects an integer, got '%s'", flag, value);
        exit(1);
    }
    return (int)v;
}

double cli_float(const char *flag, const char *value) {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end) {
        cli_fail("%s expects a number, got '%s'", flag, value);
        exit(1);
    }
    return v;
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_fail("%s needs a value", argv[*i]);
        exit(1);
    }
    return argv[++*i];
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
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
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    if (f != stdin) fclose(f);
    if (!buf) { cli_fail("out of memory reading '%s'", path); return NULL; }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static void usage(FILE *out) {
    fprintf(out, "usage: lfm2c <command> [options]   (lfm2c <command> --help for its options)\n\ncommands:\n");
#define CLI_HELP(name, help) fprintf(out, "  %-11s %s\n", #name, help);
    CLI_COMMANDS(CLI_HELP)
#undef CLI_HELP
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
#define CLI_DISPATCH(name, help) \
    if (!strcmp(argv[1], #name)) return cmd_##name(argc - 1, argv + 1);
    CLI_COMMANDS(CLI_DISPATCH)
#undef CLI_DISPATCH
    cli_fail("unknown command '%s'", argv[1]);
    usage(stderr);
    return 1;
}
