/* test_vulkan_hostile.c — GGUF files whose tensors disagree with their metadata or with what the
 * Vulkan backend runs, opened with --device vulkan (lavapipe in CI): each is refused with a clear
 * one-line error naming the cause (the tensor, its shape or type) and the code a caller can act
 * on, never a crash, a hang or a model that computes out of bounds on the device. The files are
 * the fixtures with one field changed in place: a tensor's dimension or type in the tensor table,
 * or a key of the metadata (the embedding width, the expert count), so every other byte is real.
 * A type the CPU runs and Vulkan does not (MXFP4) opens on the CPU and is refused on Vulkan, by
 * the backend's own check, as the importance-matrix types of the IQ fixture are, naming the
 * backends that run them. Without a Vulkan device it checks that opening on Vulkan fails
 * cleanly, prints "SKIP: no Vulkan device" and exits 0. */
#include "lfm2c.h"
#include "vulkan/backend_vulkan.h"
#include "test.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

enum { DIM, TYPE, KEY_U32 }; /* what a case changes */

typedef struct hostile {
    const char *what, *fixture;
    int kind;
    const char *name; /* the tensor, or the metadata key */
    int dim;          /* DIM: which dimension */
    int64_t delta;    /* DIM: added to it */
    uint32_t value;   /* TYPE: the new type id; KEY_U32: the new value */
    int code;         /* the error code wanted */
    const char *text; /* what the message must say */
    bool cpu_opens;   /* the CPU runs it: only the Vulkan backend refuses */
} hostile;

/* The offset of the string `s` in a GGUF: its bytes preceded by their u64 length (a metadata key
 * or a tensor name); 0 when absent. */
static size_t find_gguf_string(const uint8_t *b, size_t n, const char *s) {
    size_t len = strlen(s);
    for (const uint8_t *p = b + 8; (p = memmem(p, n - (size_t)(p - b), s, len)); p++) {
        uint64_t have;
        memcpy(&have, p - 8, 8);
        if (have == len) return (size_t)(p - b);
    }
    return 0;
}

/* Applies the case to a copy of its fixture (written to path); false when the field is not there. */
static bool make_file(const hostile *h, const char *path) {
    char src[256];
    snprintf(src, sizeof src, "data/%s.gguf", h->fixture);
    size_t n = 0;
    uint8_t *b = test_read_file(src, &n);
    size_t at = b ? find_gguf_string(b, n, h->name) : 0;
    bool ok = at != 0;
    if (ok) {
        uint8_t *p = b + at + strlen(h->name);
        uint32_t n_dims;
        memcpy(&n_dims, p, 4);
        if (h->kind == KEY_U32) { /* type (4 = u32), then the value */
            ok = n_dims == 4;
            memcpy(p + 4, &h->value, 4);
        } else if (h->kind == DIM) {
            int64_t ne;
            memcpy(&ne, p + 4 + 8 * h->dim, 8);
            ne += h->delta;
            memcpy(p + 4 + 8 * h->dim, &ne, 8);
        } else {
            memcpy(p + 4 + 8 * n_dims, &h->value, 4);
        }
    }
    FILE *f = ok ? fopen(path, "wb") : NULL;
    ok = f && fwrite(b, 1, n, f) == n;
    if (f) fclose(f);
    free(b);
    return ok;
}

static lfm2c_model *open_on(const char *path, int device, lfm2c_error *err) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    p.device = device;
    return lfm2c_model_open(path, &p, err);
}

static void check_case(const hostile *h, const char *path) {
    if (!make_file(h, path)) {
        CHECK(false, "%s: '%s' not found in %s", h->what, h->name, h->fixture);
        return;
    }
    lfm2c_error err = {0};
    lfm2c_model *m = open_on(path, LFM2C_DEVICE_VULKAN, &err);
    CHECK(m == NULL, "%s: opened on Vulkan", h->what);
    CHECK(err.code == h->code && strstr(err.msg, h->text) && !strchr(err.msg, '\n'),
          "%s: code %d (want %d), message '%s' (want '%s')", h->what, err.code, h->code, err.msg, h->text);
    printf("%-44s -> %s\n", h->what, err.msg);
    lfm2c_model_free(m);
    if (!h->cpu_opens) return;
    lfm2c_error cerr = {0};
    m = open_on(path, LFM2C_DEVICE_CPU, &cerr);
    CHECK(m != NULL, "%s: the CPU runs it, yet refused it: %s", h->what, cerr.msg);
    lfm2c_session *s = m ? lfm2c_session_new(m, 16, &cerr) : NULL;
    const int32_t ids[] = {1, 42, 7};
    CHECK(!m || (s && lfm2c_session_decode(s, ids, 3, LFM2C_LOGITS_LAST, &cerr) == 0), "%s: CPU decode: %s", h->what,
          cerr.msg);
    lfm2c_session_free(s);
    lfm2c_model_free(m);
}

static const hostile CASES[] = {
    {"a weight one row too many", "lfm2-tiny-dense-f32", DIM, "blk.0.ffn_up.weight", 1, 1, 0, LFM2C_EFORMAT,
     "tensor 'blk.0.ffn_up.weight' has shape [64, 129, 1], expected [64, 128, 1]", false},
    {"a later layer wider than the first", "lfm2-tiny-dense-f32", DIM, "blk.1.ffn_gate.weight", 1, 32, 0, LFM2C_EFORMAT,
     "tensor 'blk.1.ffn_gate.weight' has shape [64, 160, 1]", false},
    {"an embedding short of the vocabulary", "lfm2-tiny-dense-f32", DIM, "token_embd.weight", 1, -1, 0, LFM2C_EFORMAT,
     "tokenizer has 8192 tokens but the embedding only 8191 rows", false},
    {"a norm wider than the model", "lfm2-tiny-dense-f32", DIM, "blk.2.ffn_norm.weight", 0, 8, 0, LFM2C_EFORMAT,
     "tensor 'blk.2.ffn_norm.weight' has shape [72, 1, 1], expected [64, 1, 1]", false},
    {"metadata: a narrower embedding", "lfm2-tiny-dense-f32", KEY_U32, "lfm2.embedding_length", 0, 0, 48, LFM2C_EFORMAT,
     "tensor 'token_embd.weight' has shape [64, 8192, 1], expected [48, 8192, 1]", false},
    {"metadata: fewer experts than the tensors", "lfm2-tiny-moe-f32", KEY_U32, "lfm2moe.expert_count", 0, 0, 4,
     LFM2C_EFORMAT, "tensor 'blk.2.ffn_gate_inp.weight' has shape [64, 8, 1], expected [64, 4, 1]", false},
    {"metadata: more experts than the tensors", "lfm2-tiny-moe-f32", KEY_U32, "lfm2moe.expert_count", 0, 0, 16,
     LFM2C_EFORMAT, "tensor 'blk.2.ffn_gate_inp.weight' has shape [64, 8, 1], expected [64, 16, 1]", false},
    {"a norm stored as F16", "lfm2-tiny-dense-f32", TYPE, "blk.0.ffn_norm.weight", 0, 0, 1, LFM2C_EUNSUPPORTED,
     "tensor 'blk.0.ffn_norm.weight' must be F32, found F16", false},
    {"an unknown tensor type", "lfm2-tiny-dense-f32", TYPE, "blk.0.ffn_up.weight", 0, 0, 77, LFM2C_EUNSUPPORTED,
     "tensor 'blk.0.ffn_up.weight': unknown tensor type 77", false},
    {"a type the Vulkan backend does not run", "lfm2-tiny-dense-f32", TYPE, "blk.0.ffn_up.weight", 0, 0, 39,
     LFM2C_EUNSUPPORTED, "Vulkan backend: tensor 'blk.0.ffn_up.weight' (MXFP4, 64 wide) is not supported", true},
    {"an expert tensor of a type Vulkan lacks", "lfm2-tiny-moe-f32", TYPE, "blk.3.ffn_down_exps.weight", 0, 0, 39,
     LFM2C_EUNSUPPORTED, "Vulkan backend: tensor 'blk.3.ffn_down_exps.weight' (MXFP4", true},
};

int main(void) {
    char dev[300], path[64];
    snprintf(path, sizeof path, "/tmp/lfm2c_vk_hostile_%d.gguf", (int)getpid());
    if (vulkan_device_count(dev, sizeof dev) == 0) {
        lfm2c_error err = {0};
        lfm2c_model *m = open_on("data/lfm2-tiny-dense-f32.gguf", LFM2C_DEVICE_VULKAN, &err);
        CHECK(m == NULL && err.code != 0 && err.msg[0], "opening on Vulkan without a device must fail cleanly");
        lfm2c_model_free(m);
        printf("SKIP: no Vulkan device (only checked that --device vulkan fails cleanly: %s)\n", err.msg);
        TEST_MAIN_END();
    }
    printf("Vulkan device: %s\n", dev);
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) check_case(&CASES[i], path);
    /* the importance-matrix types: a row of the type table without the Vulkan bit */
    lfm2c_error err = {0};
    lfm2c_model *m = open_on("data/iq/lfm2-iq-dense.gguf", LFM2C_DEVICE_VULKAN, &err);
    CHECK(m == NULL && err.code == LFM2C_EUNSUPPORTED &&
              strstr(err.msg, "Vulkan backend: tensor 'blk.0.shortconv.in_proj.weight' (IQ1_S, 256 wide) is not "
                              "supported (IQ1_S runs on: cpu"),
          "the IQ fixture on Vulkan: '%s'", err.msg);
    printf("refused: %s\n", err.msg);
    lfm2c_model_free(m);
    unlink(path);
    TEST_MAIN_END();
}
