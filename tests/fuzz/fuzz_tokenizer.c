/* fuzz_tokenizer.c — tokenizer encode (with and without special-token parsing) of arbitrary bytes,
 * then streaming decode of the ids, and streaming decode of arbitrary ids taken from the input. */
#include "fuzz_common.h"
#include "lfm2c.h"

#include <string.h>

static lfm2c_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    model = lfm2c_model_open(fuzz_fixture(), &mp, &err);
    if (!model) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    return 0;
}

static void decode(const int32_t *ids, int n, bool special) {
    lfm2c_detok d;
    lfm2c_detok_init(&d, special);
    char buf[1024];
    for (int i = 0; i < n; i++)
        if (lfm2c_detok_push(&d, model, ids[i], buf, sizeof buf) > (int)sizeof buf) abort();
    lfm2c_detok_flush(&d, buf, sizeof buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lfm2c_error err = {0};
    for (int special = 0; special < 2; special++) {
        int n = 0;
        int32_t *ids = lfm2c_tokenize(model, (const char *)data, size, special, special, &n, &err);
        if (ids) decode(ids, n, special);
        free(ids);
    }
    int n_vocab = lfm2c_vocab_size(model), n = (int)(size / 2);
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((data[2 * i] | data[2 * i + 1] << 8) % (n_vocab + 8)) - 4;
    decode(ids, n, size & 1); /* out-of-range ids included: they must be refused, not read */
    free(ids);
    return 0;
}
