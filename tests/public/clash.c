/* clash.c — functions named like internals of lfm2c (and, for the first three, like ggml's), as
 * another library linked into the same program would define them. With only the public API
 * global in liblfm2c.a, the program links and each name resolves here. */
#include <stddef.h>

size_t ggml_row_size(int type, long long ne) { return (size_t)type * 1000u + (size_t)ne; }
void *gguf_find_tensor(void *ctx, const char *name) {
    (void)name;
    return ctx;
}
void quantize_row_q8_0(const float *x, void *y, long long k) {
    (void)x;
    (void)y;
    (void)k;
}
int grammar_free(void *g) {
    (void)g;
    return 7;
}
int sched_new(void) { return 11; }
int server_start(void) { return 13; }
