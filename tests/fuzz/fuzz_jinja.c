/* fuzz_jinja.c — the Jinja interpreter: parse the input up to its first NUL byte as a template and
 * render it with the JSON after the NUL (or a chat-like default) as variables, under a small budget. */
#include "fuzz_common.h"
#include "chat/jinja.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_src = nul ? (size_t)(nul - data) : size;
    lfm2c_error err = {0};
    jinja_template *t = jinja_parse((const char *)data, n_src, &err);
    if (!t) return 0;
    json_t *vars = NULL;
    if (nul) vars = json_loadb((const char *)nul + 1, size - n_src - 1, 0, NULL);
    if (!vars)
        vars = json_pack("{s:[{s:s,s:s},{s:s,s:s}],s:b,s:s}", "messages", "role", "user", "content", "hi", "role",
                         "assistant", "content", "hello", "add_generation_prompt", 1, "bos_token", "<|startoftext|>");
    jinja_options o = {.max_steps = 200000, .max_seconds = 1.0, .memory_limit = 64u << 20, .max_output = 1u << 20};
    size_t n = 0;
    char *out = jinja_render(t, vars, &o, &n, &err);
    if (out && strlen(out) > n) abort(); /* the length must cover the text */
    free(out);
    json_decref(vars);
    jinja_free(t);
    return 0;
}
