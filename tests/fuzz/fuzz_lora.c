/* fuzz_lora.c — the LoRA adapter loader (core/lora.c, core/lora_peft.c) against the fixture
 * model: the input as a GGUF adapter file, and (split at the first NUL byte) as a PEFT folder:
 * adapter_config.json + adapter_model.safetensors. A loaded adapter is described, attached to a
 * session and one token decoded. tests/fuzz/lora.dict gives the config's keys and the pattern
 * keys' costly shapes (the load must stay within its work budget). */
#include "fuzz_common.h"
#include "lfm2c.h"

#include <string.h>
#include <sys/stat.h>

static lfm2c_model *model;
static lfm2c_session *sess;

static void write_file(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

static void use(lfm2c_lora *lo) {
    if (!lo) return;
    char text[256];
    (void)lfm2c_lora_describe(lo, text, sizeof text); /* a long text is cut, never overrun */
    lfm2c_error err = {0};
    float scale = 1;
    int32_t tok = 1;
    if (lfm2c_session_set_lora(sess, &lo, &scale, 1, &err) == 0)
        lfm2c_session_decode(sess, &tok, 1, LFM2C_LOGITS_LAST, &err);
    lfm2c_session_set_lora(sess, NULL, NULL, 0, &err);
    lfm2c_lora_free(lo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lfm2c_error err = {0};
    if (!model) {
        lfm2c_model_params p = lfm2c_model_default_params();
        p.n_threads = 1;
        p.hugepages = LFM2C_HUGEPAGES_OFF;
        if (!(model = lfm2c_model_open(fuzz_fixture(), &p, &err)) || !(sess = lfm2c_session_new(model, 8, &err)))
            abort();
    }
    lfm2c_session_reset(sess);
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    use(lfm2c_lora_load(model, path, &err));
    close(fd);
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/lfm2c-fuzz-lora-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_cfg = nul ? (size_t)(nul - data) : size;
    char p[128];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    write_file(p, data, n_cfg);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    write_file(p, nul ? nul + 1 : data + size, nul ? size - n_cfg - 1 : 0);
    use(lfm2c_lora_load(model, dir, &err));
    return 0;
}
