/* fuzz_safetensors.c — the safetensors reader: the input as one .safetensors file, and (split at
 * the first NUL byte) as a Hugging Face directory: model.safetensors.index.json + one shard. */
#include "fuzz_common.h"
#include "formats/safetensors.h"

#include <string.h>
#include <sys/stat.h>

static void read_some(const st_model *m) {
    static const char *names[] = {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.conv.conv.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const st_tensor *t = st_find(m, names[i]);
        (void)t;
    }
}

static void write_file(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lfm2c_error err = {0};
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    st_model *m = st_open_file(path, &err);
    if (m) {
        read_some(m);
        st_close(m);
    }
    close(fd);
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/lfm2c-fuzz-st-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_index = nul ? (size_t)(nul - data) : size;
    char p[128];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_file(p, data, n_index);
    snprintf(p, sizeof p, "%s/model-00001-of-00001.safetensors", dir);
    write_file(p, nul ? nul + 1 : data, nul ? size - n_index - 1 : 0);
    m = st_open_dir(dir, &err);
    if (m) {
        read_some(m);
        st_close(m);
    }
    return 0;
}
