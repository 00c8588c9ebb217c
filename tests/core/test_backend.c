/* test_backend.c — the backend table's capabilities (src/core/backend.c, backend.h): what a
 * backend can do is its table's `caps` and nothing else. The tiny dense model is opened on the
 * CPU backend, then run under a copy of the CPU's table with no capabilities (same operations,
 * another name): LoRA adapters, embeddings, session copies and matmul hooks are refused with a message written
 * from the table (the backend's name, the backends of this build that can), as is the encoders'
 * table (encoder_for: the image tower's and the audio Conformer's products), mark keeps no conv
 * trail, and no checkpoint is taken inside a forward; under the CPU's own table all of them
 * work. The device names (lfm2c_device_from_name / lfm2c_device_name): each of
 * LFM2C_DEVICE_NAMES and back, another name refused. And the layering rule: no file of src/core/ but the registry (backend.c) includes a
 * backend's header (src/cpu, src/cuda, src/vulkan). */
#include "lfm2c.h"
#include "convert/lora_file.h"
#include "core/backend.h"
#include "core/encoder.h"
#include "core/session.h"
#include "test.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

static const int32_t toks[8] = {1, 5, 9, 13, 17, 21, 25, 29};

/* The refusal of `what` under table b: EUNSUPPORTED, naming b and the CPU backend. */
static void check_refusal(int rc, const lfm2c_error *err, const char *what) {
    CHECK(rc == -1 && err->code == LFM2C_EUNSUPPORTED, "%s refused: rc %d code %d", what, rc, err->code);
    CHECK(strstr(err->msg, what) && strstr(err->msg, "the fake backend") && strstr(err->msg, "supported on: cpu"),
          "%s: the message from the table: %s", what, err->msg);
}

static void no_hook(void *u, const char *w, int e, int n_mat, const float *x, size_t ld, const int *r, int n, int c) {}

/* Every capability the session API asks, under the table m runs with (`all`: expect each). */
static void check_caps(lfm2c_model *m, lfm2c_lora *lo, bool all) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 64, &err), *c = lfm2c_session_new(m, 64, &err);
    CHECK(s && c, "session: %s", err.msg);
    if (!s || !c) return;
    float one = 1;
    int rc = lfm2c_session_set_lora(s, &lo, &one, 1, &err);
    if (all) CHECK(rc == 0, "LoRA: %s", err.msg);
    else check_refusal(rc, &err, "LoRA adapters");
    lfm2c_session_set_lora(s, NULL, NULL, 0, &err);
    rc = lfm2c_session_set_embeddings(s, true, &err);
    if (all) CHECK(rc == 0, "embeddings: %s", err.msg);
    else check_refusal(rc, &err, "embeddings");
    lfm2c_session_set_embeddings(s, false, &err);
    CHECK(lfm2c_session_decode(s, toks, 4, LFM2C_LOGITS_LAST, &err) == 0, "decode: %s", err.msg);
    rc = lfm2c_session_copy(c, s, &err);
    if (all) CHECK(rc == 0, "copy: %s", err.msg);
    else check_refusal(rc, &err, "copying a session");
    rc = lfm2c_model_set_matmul_hook(m, no_hook, NULL, &err);
    if (all) CHECK(rc == 0, "matmul hook: %s", err.msg);
    else check_refusal(rc, &err, "matmul hooks");
    CHECK(lfm2c_model_set_matmul_hook(m, NULL, NULL, &err) == 0, "removing a hook is always allowed");
    CHECK(lfm2c_session_mark(s, 4, &err) == 0, "mark: %s", err.msg);
    CHECK((s->trail_cap > 0) == all, "conv trail columns: %d", s->trail_cap);
    CHECK(lfm2c_session_set_checkpoints(c, 2, 8, 0, &err) == 0, "checkpoints: %s", err.msg);
    lfm2c_session_reset(c);
    CHECK(lfm2c_session_decode(c, toks, 8, LFM2C_LOGITS_LAST, &err) == 0, "decode: %s", err.msg);
    CHECK((c->n_ckpt > 0) == all, "checkpoints inside a forward: %d", c->n_ckpt);
    lfm2c_session_free(s);
    lfm2c_session_free(c);
    const encoder_ops *e = encoder_for(m, "the audio encoder", &err);
    if (all) CHECK(e && e == encoder_for(NULL, NULL, NULL) && e->linear, "the CPU's encoder table: %s", err.msg);
    else check_refusal(e ? 0 : -1, &err, "the audio encoder");
}

static void test_caps(void) {
    char adapter[128];
    snprintf(adapter, sizeof adapter, "/tmp/test_backend_%d.gguf", (int)getpid());
    lfm2c_error err = {0};
    lora_synth_params lp = {4, 8, 11, NULL};
    CHECK(lora_synth(DATA("lfm2-tiny-dense-f32.gguf"), &lp, adapter, &err), "synth: %s", err.msg);
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    lfm2c_model *m = lfm2c_model_open(DATA("lfm2-tiny-dense-f32.gguf"), &mp, &err);
    CHECK(m != NULL, "open: %s", err.msg);
    lfm2c_lora *lo = m ? lfm2c_lora_load(m, adapter, &err) : NULL;
    CHECK(lo != NULL, "adapter: %s", err.msg);
    unlink(adapter);
    if (!m || !lo) return;
    const unsigned every = BACKEND_CAP_LORA | BACKEND_CAP_EMBEDDINGS | BACKEND_CAP_KV_COPY | BACKEND_CAP_CONV_TRAIL |
                           BACKEND_CAP_CONV_SNAP | BACKEND_CAP_HOST_WEIGHTS | BACKEND_CAP_ENCODER |
                           BACKEND_CAP_MATMUL_HOOK;
    CHECK(backend_has(m, every) && backend_require(m, every, "all", &err) == 0, "the CPU backend can do all");
    check_caps(m, lo, true);
    lfm2c_backend fake = *m->backend; /* the CPU's operations, no capabilities */
    const lfm2c_backend *cpu = m->backend;
    fake.name = "fake";
    fake.caps = 0;
    m->backend = &fake;
    CHECK(!backend_has(m, BACKEND_CAP_LORA), "no capabilities");
    check_caps(m, lo, false);
    m->backend = cpu;
    lfm2c_lora_free(lo);
    lfm2c_model_free(m);
}

static void test_device_names(void) {
    char names[] = LFM2C_DEVICE_NAMES;
    int n = 0;
    for (char *save = NULL, *t = strtok_r(names, "|", &save); t; t = strtok_r(NULL, "|", &save), n++) {
        const int d = lfm2c_device_from_name(t);
        CHECK(d >= 0 && lfm2c_device_name(d) && !strcmp(lfm2c_device_name(d), t), "device '%s': %d", t, d);
    }
    CHECK(n == 3 && !lfm2c_device_name(n), "every device named: %d", n);
    CHECK(lfm2c_device_from_name("cpu") == LFM2C_DEVICE_CPU && lfm2c_device_from_name("vulkan") == LFM2C_DEVICE_VULKAN,
          "the ids");
    CHECK(lfm2c_device_from_name("metal") == -1 && lfm2c_device_from_name("CPU") == -1 &&
              lfm2c_device_from_name("") == -1 && lfm2c_device_from_name(NULL) == -1,
          "another name refused");
    CHECK(!lfm2c_device_name(-1), "no name for -1");
}

/* Whether the source file at path includes a header of src/cpu, src/cuda or src/vulkan. */
static bool includes_backend(const char *path) {
    size_t n = 0;
    char *text = test_read_file(path, &n);
    if (!text) return false;
    bool found =
        strstr(text, "#include \"cpu/") || strstr(text, "#include \"cuda/") || strstr(text, "#include \"vulkan/");
    free(text);
    return found;
}

static void test_layering(void) {
    DIR *d = opendir("../src/core");
    CHECK(d != NULL, "../src/core");
    if (!d) return;
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 3 || (strcmp(e->d_name + n - 2, ".c") && strcmp(e->d_name + n - 2, ".h"))) continue;
        char path[512];
        snprintf(path, sizeof path, "../src/core/%s", e->d_name);
        files++;
        if (!strcmp(e->d_name, "backend.c")) continue; /* the registry */
        CHECK(!includes_backend(path), "%s includes a backend's header", path);
    }
    closedir(d);
    CHECK(files > 10, "src/core's files read: %d", files);
}

int main(void) {
    test_caps();
    test_device_names();
    test_layering();
    TEST_MAIN_END();
}
