/* test_public_api.c — a program that links liblfm2c.a (the public library) and nothing of the
 * internals: it uses include/lfm2c.h only, and clash.c defines functions named like lfm2c's
 * internals (and ggml's). It must link without duplicate symbols, its calls must reach its own
 * functions, and the library must still work: open a fixture model, tokenize, decode, render a
 * chat, name its device. Run from tests/. */
#include "lfm2c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t ggml_row_size(int type, long long ne);
int grammar_free(void *g);
int sched_new(void);
int server_start(void);

static int failures;
#define EXPECT(c, ...) \
    do { \
        if (!(c)) { \
            failures++; \
            fprintf(stderr, "FAIL " __VA_ARGS__); \
            fputc('\n', stderr); \
        } \
    } while (0)

int main(void) {
    EXPECT(ggml_row_size(2, 5) == 2005 && grammar_free(NULL) == 7 && sched_new() == 11 && server_start() == 13,
           "the program's own functions named like lfm2c internals are called");
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    lfm2c_model *m = lfm2c_model_open("data/lfm2-tiny-moe-q4_0.gguf", &mp, &err);
    EXPECT(m != NULL, "open the fixture: %s", err.msg);
    if (!m) return 1;
    int n = 0;
    int32_t *ids = lfm2c_tokenize(m, "Hello world", 11, true, false, &n, &err);
    EXPECT(ids && n >= 2, "tokenize: %s", err.msg);
    lfm2c_session *s = lfm2c_session_new(m, 64, &err);
    EXPECT(s && lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_LAST, &err) == 0, "decode: %s", err.msg);
    const float *logits = s ? lfm2c_session_logits(s, 0) : NULL;
    EXPECT(logits && isfinite(logits[0]), "logits");
    char *p = lfm2c_chat_render(m, NULL, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL, true, &err);
    EXPECT(p && strstr(p, "hi"), "chat render: %s", err.msg);
    free(p);
    lfm2c_device_info dev = lfm2c_model_device(m);
    EXPECT(dev.device == LFM2C_DEVICE_CPU && dev.is_cpu && !strcmp(dev.name, "CPU"), "the device: %d '%s' %d",
           dev.device, dev.name, dev.is_cpu);
    free(ids);
    lfm2c_session_free(s);
    lfm2c_model_free(m);
    printf("%s\n", failures ? "FAILED" : "ok: the public library links beside clashing names and works");
    return failures != 0;
}
