/* cmd_template.c — `lfm2c template`: render a conversation with a chat template (the model's,
 * or one from a file) and print the prompt exactly as the model would see it, nothing added. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: lfm2c template -m MODEL.gguf --messages CONV.json [--tools TOOLS.json]\n"
           "                      [--add-generation-prompt] [--chat-template-file FILE.jinja]\n"
           "CONV.json: an OpenAI-style messages array. Prints the rendered prompt, nothing added.\n"
           "Without -m, --chat-template-file is required (bos/eos are LFM2's).\n");
}

int cmd_template(int argc, char **argv) {
    const char *model_path = NULL, *messages_path = NULL, *tools_path = NULL, *template_path = NULL;
    bool add_gen = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--messages")) messages_path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--tools")) tools_path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--chat-template-file")) template_path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--add-generation-prompt")) add_gen = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else
            return cli_unknown_option("template", argv[i],
                                      "-m --model --messages --tools --chat-template-file --add-generation-prompt");
    }
    if (!messages_path) return cli_fail("template: --messages CONV.json is required");
    if (!model_path && !template_path) return cli_fail("template: give -m MODEL.gguf or --chat-template-file FILE");

    int rc = 1;
    char *messages = NULL, *tools = NULL, *tmpl = NULL, *out = NULL;
    lfm2c_model *m = NULL;
    size_t out_len = 0;
    if (!(messages = cli_read_file(messages_path, NULL))) goto done;
    if (tools_path && !(tools = cli_read_file(tools_path, NULL))) goto done;
    if (template_path) {
        size_t n;
        if (!(tmpl = cli_read_file(template_path, &n))) goto done;
        if (strlen(tmpl) != n) {
            cli_fail("template: '%s' contains a NUL byte", template_path);
            goto done;
        }
    }
    if (model_path && !(m = cli_open_model(model_path, 1, false, NULL))) goto done;
    lfm2c_error err = {0};
    out = lfm2c_chat_render(m, tmpl, messages, tools, add_gen, &err);
    if (!out) {
        cli_fail("%s", err.msg);
        goto done;
    }
    out_len = strlen(out);
    if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout)) {
        cli_fail("template: cannot write the output");
        goto done;
    }
    rc = 0;
done:
    free(out);
    free(messages);
    free(tools);
    free(tmpl);
    lfm2c_model_free(m);
    return rc;
}
