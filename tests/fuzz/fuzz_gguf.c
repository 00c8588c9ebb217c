/* fuzz_gguf.c — the GGUF reader and model open on arbitrary bytes: parse from memory and read every
 * key, then open the same bytes as a model file (shape checks, tokenizer, template). */
#include "fuzz_common.h"
#include "formats/gguf.h"
#include "lfm2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lfm2c_error err = {0};
    gguf_file *g = gguf_open_memory(data, size, &err);
    if (g) {
        static const char *keys[] = {"general.architecture", "general.name",          "lfm2.block_count",
                                     "lfm2.context_length",  "tokenizer.ggml.tokens", "tokenizer.chat_template"};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            int64_t v;
            gguf_get_int(g, keys[i], &v);
            free(gguf_get_string(g, keys[i]));
            const gguf_kv *kv = gguf_find(g, keys[i]);
            if (kv) {
                int64_t x;
                double f;
                gguf_arr_int(kv, 0, &x);
                gguf_arr_float(kv, 1, &f);
            }
        }
        gguf_find_tensor(g, "token_embd.weight");
        gguf_close(g);
        char path[64];
        int fd = fuzz_memfile(data, size, path, sizeof path);
        lfm2c_model_params mp = lfm2c_model_default_params();
        mp.n_threads = 1;
        lfm2c_model *m = lfm2c_model_open(path, &mp, &err);
        lfm2c_model_free(m);
        close(fd);
    }
    return 0;
}
