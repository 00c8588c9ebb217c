/* fuzz_common.h — helpers shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c): put fuzz input
 * in an anonymous in-memory file so path-based readers see it, and find the fixture models. */
#ifndef LFM2C_FUZZ_COMMON_H
#define LFM2C_FUZZ_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes data to a fresh memfd; path gets "/proc/self/fd/N". Returns the fd (close it after). */
__attribute__((unused)) static int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) abort();
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* The fixture model the harnesses load once (tokenizer, template, scheduler): LFM2C_FUZZ_MODEL,
 * else tests/data/ relative to the working directory or to the build directory. */
__attribute__((unused)) static const char *fuzz_fixture(void) {
    const char *env = getenv("LFM2C_FUZZ_MODEL");
    if (env) return env;
    static const char *cands[] = {"tests/data/lfm2-tiny-moe-q4_0.gguf", "../tests/data/lfm2-tiny-moe-q4_0.gguf",
                                  "data/lfm2-tiny-moe-q4_0.gguf", "../../tests/data/lfm2-tiny-moe-q4_0.gguf"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++)
        if (access(cands[i], R_OK) == 0) return cands[i];
    fprintf(stderr, "fuzz: fixture model not found (set LFM2C_FUZZ_MODEL)\n");
    abort();
}

/* Another fixture, `rel` under tests/data/ (beside the fixture model's folder). */
__attribute__((unused)) static const char *fuzz_data(const char *rel) {
    static char path[4][512];
    static int k;
    const char *model = fuzz_fixture(), *slash = strrchr(model, '/');
    char *out = path[k++ % 4];
    snprintf(out, sizeof path[0], "%.*s%s", slash ? (int)(slash - model + 1) : 0, model, rel);
    if (access(out, R_OK) != 0) {
        fprintf(stderr, "fuzz: fixture %s not found\n", out);
        abort();
    }
    return out;
}
#endif
