/* cmd_toolcalls.c — `lfm2c toolcalls [-f FILE]`: parse the tool calls out of model output text
 * (stdin by default) and print {"content", "tool_calls": [{"name", "arguments"}], "parsed"}.
 * parsed=false is a result (exit 0); only I/O problems are errors. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: lfm2c toolcalls [-f FILE]\n"
            "  reads model output (special tokens as text) from FILE or stdin and prints\n"
            "  {\"content\": ..., \"tool_calls\": [{\"name\": ..., \"arguments\": {...}}], \"parsed\": true|false}\n");
}

int cmd_toolcalls(int argc, char **argv) {
    const char *path = "-";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_option("toolcalls", argv[i], "-f --file");
        else
            return cli_fail("toolcalls: unexpected argument '%s' (the text comes on stdin or with -f FILE)", argv[i]),
                   2;
    }
    size_t len;
    char *text = cli_read_file(path, &len);
    if (!text) return 1;
    char *json = lfm2c_parse_tool_calls(text, len);
    free(text);
    if (!json) return cli_fail("toolcalls: out of memory");
    int bad = puts(json) == EOF || fflush(stdout) == EOF;
    free(json);
    return bad ? cli_fail("toolcalls: cannot write the result") : 0;
}
