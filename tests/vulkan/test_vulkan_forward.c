/* test_vulkan_forward.c — the Vulkan forward pass (src/vulkan) against the CPU on every fixture
 * in tests/data: logits of a prompt in one batch vs one token at a time, vs the CPU --reference
 * path (the same F16 KV cache) and vs the goldens (F32 fixtures: the golden's 1e-3 plus the F16
 * cache's 1e-2; quantized ones: the CPU fast path's bound against the dequantized reference),
 * greedy continuations of the F32 fixtures, several sessions in one batch == each alone,
 * checkpoints / truncation / reset (conv state host <-> device), session copies, embedding
 * sessions' rows against the CPU's and beside a generating one, and a model that does not fit
 * the device's memory (LFM2C_VULKAN_MEMORY_MB) failing with a clear message; and the paths the
 * default picks leave out on this device (check_paths): the tiled GEMM for every batch, the
 * shared-memory GEMV reduction, copied weights (on lavapipe they are imported), each against the
 * default's logits; that the weights were imported where the device offers VK_EXT_external_memory_host
 * and shares the host's memory, and that the device timed the passes.
 * Without a Vulkan device it checks that opening a model on Vulkan fails cleanly, prints
 * "SKIP: no Vulkan device" and exits 0. LFM2C_TEST_FIXTURES=name,name limits the fixtures. */
#include "lfm2c.h"
#include "vulkan/backend_vulkan.h"
#include "test.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *read_f32(const char *path, size_t *n) {
    size_t bytes = 0;
    float *p = test_read_file(path, &bytes);
    *n = p ? bytes / 4 : 0;
    return p;
}

static lfm2c_model *open_model(const char *path, int device, bool reference) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    p.device = device;
    p.reference = reference;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(path, &p, &err);
    CHECK(m != NULL, "%s: %s", path, err.msg);
    return m;
}

/* logits at every position: one batch, or one token at a time (caller frees) */
static float *all_logits(lfm2c_model *m, const int32_t *ids, int n, bool one_by_one) {
    int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, n + 32, &err);
    float *out = calloc((size_t)n * V, sizeof(float));
    int rc = s ? 0 : -1;
    if (one_by_one) {
        for (int i = 0; i < n && !rc; i++) {
            rc = lfm2c_session_decode(s, &ids[i], 1, LFM2C_LOGITS_LAST, &err);
            if (!rc) memcpy(out + (size_t)i * V, lfm2c_session_logits(s, 0), sizeof(float) * V);
        }
    } else if (!rc) {
        rc = lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_ALL, &err);
        for (int i = 0; i < n && !rc; i++) memcpy(out + (size_t)i * V, lfm2c_session_logits(s, i), sizeof(float) * V);
    }
    CHECK(rc == 0, "decode failed: %s", err.msg);
    lfm2c_session_free(s);
    return out;
}

/* NS sessions in one lfm2c_decode_batch (some already holding the first half): each one's last
 * logits == the single batch's; then truncate / reset of one of them and re-feed */
static void check_sessions(lfm2c_model *m, const char *nm, const int32_t *ids, int n, const float *last) {
    enum { NS = 5 };
    const int V = lfm2c_model_get_info(m)->n_vocab, na = n / 2;
    lfm2c_error err = {0};
    lfm2c_session *ss[NS];
    const int32_t *tk[NS];
    int nn[NS], modes[NS];
    for (int i = 0; i < NS; i++) {
        ss[i] = lfm2c_session_new(m, 64, &err);
        int pre = i % 2 == 0 ? na : 0;
        if (pre) lfm2c_session_decode(ss[i], ids, pre, LFM2C_LOGITS_NONE, &err);
        tk[i] = ids + pre;
        nn[i] = n - pre;
        modes[i] = LFM2C_LOGITS_ALL;
    }
    lfm2c_session_checkpoint(ss[0]);
    int rc = lfm2c_decode_batch(ss, tk, nn, modes, NS, &err);
    CHECK(rc == 0, "%s: batch: %s", nm, err.msg);
    double worst = 0;
    for (int i = 0; i < NS && rc == 0; i++)
        worst = fmax(worst, test_maxabs(lfm2c_session_logits(ss[i], nn[i] - 1), last, V));
    CHECK(worst <= 1e-3, "%s: batched sessions differ from one alone by %g", nm, worst);
    lfm2c_session *a = ss[0];
    CHECK(lfm2c_session_truncate(a, na + 2, &err) == 0, "%s: truncate: %s", nm, err.msg);
    lfm2c_session_decode(a, ids + na + 2, n - na - 2, LFM2C_LOGITS_LAST, &err);
    double dt = test_maxabs(lfm2c_session_logits(a, 0), last, V);
    CHECK(dt <= 1e-3, "%s: after truncate %g", nm, dt);
    CHECK(lfm2c_session_truncate(a, 3, &err) == 0, "%s: truncate to 3", nm);
    lfm2c_session_decode(a, ids + 3, n - 3, LFM2C_LOGITS_LAST, &err);
    dt = test_maxabs(lfm2c_session_logits(a, 0), last, V);
    CHECK(dt <= 1e-3, "%s: after truncate to 3: %g", nm, dt);
    lfm2c_session_reset(a);
    lfm2c_session_decode(a, ids, n, LFM2C_LOGITS_LAST, &err);
    dt = test_maxabs(lfm2c_session_logits(a, 0), last, V);
    CHECK(dt <= 1e-3, "%s: after reset: %g", nm, dt);
    /* a copy of a session half-way (KV entries and conv state on the device) continues alike */
    lfm2c_session *b = ss[1], *c = lfm2c_session_new(m, 64, &err);
    lfm2c_session_truncate(b, na, &err);
    CHECK(c && lfm2c_session_copy(c, b, &err) == 0, "%s: copy: %s", nm, err.msg);
    lfm2c_session_decode(b, ids + na, 1, LFM2C_LOGITS_NONE, &err); /* the source moves on: no effect on the copy */
    lfm2c_session_decode(c, ids + na, n - na, LFM2C_LOGITS_LAST, &err);
    dt = test_maxabs(lfm2c_session_logits(c, 0), last, V);
    CHECK(dt <= 1e-3, "%s: a copied session continues differently: %g", nm, dt);
    lfm2c_session_free(c);
    for (int i = 0; i < NS; i++) lfm2c_session_free(ss[i]);
}

/* Embedding sessions (the final norm's output as rows): Vulkan's against the CPU --reference
 * path's, and in one batch beside a generating session each row as alone. */
static void check_embeddings(lfm2c_model *gpu, lfm2c_model *ref, const char *nm, const int32_t *ids, int n) {
    const int H = lfm2c_model_get_info(gpu)->n_embd, V = lfm2c_model_get_info(gpu)->n_vocab;
    lfm2c_error err = {0};
    lfm2c_session *e = lfm2c_session_new(gpu, 64, &err), *r = lfm2c_session_new(ref, 64, &err);
    lfm2c_session *e2 = lfm2c_session_new(gpu, 64, &err), *g = lfm2c_session_new(gpu, 64, &err),
                  *g2 = lfm2c_session_new(gpu, 64, &err);
    bool ok = e && r && e2 && g && g2 && !lfm2c_session_set_embeddings(e, true, &err) &&
              !lfm2c_session_set_embeddings(r, true, &err) && !lfm2c_session_set_embeddings(e2, true, &err);
    CHECK(ok, "%s: embedding sessions: %s", nm, err.msg);
    if (ok) {
        lfm2c_session_decode(e, ids, n, LFM2C_LOGITS_ALL, &err);
        lfm2c_session_decode(r, ids, n, LFM2C_LOGITS_ALL, &err);
        double worst = 0;
        for (int i = 0; i < n; i++)
            worst = fmax(worst, test_maxabs(lfm2c_session_embedding(e, i), lfm2c_session_embedding(r, i), H));
        CHECK(worst <= 2e-3, "%s: Vulkan embedding rows differ from the CPU --reference by %g", nm, worst);
        lfm2c_session *ss[2] = {e2, g};
        const int32_t *tk[2] = {ids, ids};
        int nn[2] = {n, n}, modes[2] = {LFM2C_LOGITS_ALL, LFM2C_LOGITS_LAST};
        CHECK(lfm2c_decode_batch(ss, tk, nn, modes, 2, &err) == 0, "%s: batch: %s", nm, err.msg);
        lfm2c_session_decode(g2, ids, n, LFM2C_LOGITS_LAST, &err);
        double de = 0;
        for (int i = 0; i < n; i++)
            de = fmax(de, test_maxabs(lfm2c_session_embedding(e2, i), lfm2c_session_embedding(e, i), H));
        double dg = test_maxabs(lfm2c_session_logits(g, 0), lfm2c_session_logits(g2, 0), V);
        /* the batch's products may take another path than one session's (tiled GEMM / GEMV):
         * the same bounds as the logits' here and against the reference */
        CHECK(de <= 2e-3 && dg <= 1e-3, "%s: beside a generating session: embeddings %g, logits %g", nm, de, dg);
        printf("%-26s embeddings vs --reference %.2e, batched vs alone %.2e\n", nm, worst, de);
    }
    lfm2c_session_free(e);
    lfm2c_session_free(r);
    lfm2c_session_free(e2);
    lfm2c_session_free(g);
    lfm2c_session_free(g2);
}

static void check_fixture(const char *nm) {
    char path[512];
    snprintf(path, sizeof path, "data/%s.golden.json", nm);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    CHECK(g != NULL, "%s: %s", nm, je.text);
    if (!g) return;
    json_t *jids = json_object_get(g, "token_ids"), *jgreedy = json_object_get(g, "greedy_ids");
    const int n = (int)json_array_size(jids);
    int32_t *ids = malloc(sizeof(int32_t) * (n + 1));
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
    const bool is_f32 = strstr(nm, "f32") != NULL;
    snprintf(path, sizeof path, "data/%s.gguf", nm);
    lfm2c_model *gpu = open_model(path, LFM2C_DEVICE_VULKAN, false), *ref = open_model(path, LFM2C_DEVICE_CPU, true);
    if (!gpu || !ref) goto done;
    const int V = lfm2c_model_get_info(gpu)->n_vocab;
    const size_t NV = (size_t)n * V;
    float *batch = all_logits(gpu, ids, n, false), *one = all_logits(gpu, ids, n, true),
          *rb = all_logits(ref, ids, n, false);
    double d_one = test_maxabs(batch, one, NV), d_ref = test_maxabs(batch, rb, NV);
    CHECK(d_one <= 1e-3, "%s: one-by-one vs batch %g", nm, d_one);
    CHECK(d_ref <= 1e-2, "%s: Vulkan vs CPU --reference %g", nm, d_ref); /* float activations both: summation order */
    size_t ng = 0, nd = 0;
    snprintf(path, sizeof path, "data/%s.golden.logits.f32.bin", nm);
    float *golden = read_f32(path, &ng);
    CHECK(ng == NV, "%s: golden size", nm);
    if (is_f32 && ng == NV) {
        double d = test_maxabs(batch, golden, NV);
        CHECK(d <= 1.1e-2, "%s: Vulkan vs golden %g", nm, d);
        printf("%-26s Vulkan vs golden %.2e, vs --reference %.2e, one-by-one %.2e\n", nm, d, d_ref, d_one);
    } else if (ng == NV) {
        snprintf(path, sizeof path, "data/%s.dequant-ref.logits.f32.bin", nm);
        float *dq = read_f32(path, &nd);
        CHECK(nd == NV, "%s: dequant-ref size", nm);
        if (nd == NV) {
            double df = test_maxabs(batch, dq, NV), dg = test_maxabs(golden, dq, NV);
            CHECK(df <= 1.5 * dg + 0.5, "%s: Vulkan vs dequant-ref %g (golden's %g)", nm, df, dg);
            printf("%-26s Vulkan vs dequant-ref %.2e (golden's %.2e), vs --reference %.2e, one-by-one %.2e\n", nm, df,
                   dg, d_ref, d_one);
        }
        free(dq);
    }
    if (is_f32) { /* greedy continuation with the caches equals the golden */
        lfm2c_error err = {0};
        lfm2c_session *s = lfm2c_session_new(gpu, n + 32, &err);
        lfm2c_session_decode(s, ids, n, LFM2C_LOGITS_LAST, &err);
        bool ok = true;
        for (size_t i = 0; i < json_array_size(jgreedy); i++) {
            int32_t t = test_argmax(lfm2c_session_logits(s, 0), V);
            ok = ok && t == (int32_t)json_integer_value(json_array_get(jgreedy, i));
            lfm2c_session_decode(s, &t, 1, LFM2C_LOGITS_LAST, &err);
        }
        CHECK(ok, "%s: greedy continuation differs from the golden", nm);
        lfm2c_session_free(s);
    }
    check_sessions(gpu, nm, ids, n, batch + (size_t)(n - 1) * V);
    check_embeddings(gpu, ref, nm, ids, n);
    free(golden);
    free(batch);
    free(one);
    free(rb);
done:
    lfm2c_model_free(gpu);
    lfm2c_model_free(ref);
    free(ids);
    json_decref(g);
}

/* a device with less memory than the weights: a clear error, nothing opened */
static void check_too_big(void) {
    setenv("LFM2C_VULKAN_MEMORY_MB", "1", 1);
    lfm2c_model_params p = lfm2c_model_default_params();
    p.device = LFM2C_DEVICE_VULKAN;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open("data/lfm2-tiny-dense-f32.gguf", &p, &err);
    unsetenv("LFM2C_VULKAN_MEMORY_MB");
    CHECK(m == NULL && err.code == LFM2C_ENOMEM && strstr(err.msg, "does not fit"), "too big a model: %s", err.msg);
    printf("too big for the device: %s\n", err.msg);
    lfm2c_model_free(m);
}

/* logits of one prompt in one batch with the environment variable name=value while opening */
static float *variant_logits(const char *path, const char *name, const char *value, const int32_t *ids, int n,
                             uint64_t *imported) {
    setenv(name, value, 1);
    lfm2c_model *m = open_model(path, LFM2C_DEVICE_VULKAN, false);
    unsetenv(name);
    float *out = m ? all_logits(m, ids, n, false) : NULL;
    if (imported) *imported = vulkan_weights_imported(m);
    lfm2c_model_free(m);
    return out;
}

/* The paths the defaults do not take on this device for these fixtures, against the defaults:
 * LFM2C_VULKAN_TILE_MIN=2 (the tiled GEMM, MoE experts grouped, for any batch of 2 or more),
 * LFM2C_VULKAN_SUBGROUP=0 (the GEMV's shared-memory reduction), LFM2C_VULKAN_IMPORT=0 / 1 (weights
 * copied / imported). Bit for bit where only the weights' home differs. */
static void check_paths(const char *nm) {
    char path[512];
    snprintf(path, sizeof path, "data/%s.gguf", nm);
    enum { N = 24 }; /* under the default tile_min (32): the defaults run the GEMV */
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 1 + (i * 37) % 500;
    lfm2c_model *m = open_model(path, LFM2C_DEVICE_VULKAN, false), *ref = open_model(path, LFM2C_DEVICE_CPU, true);
    if (!m || !ref) return;
    const lfm2c_decode_profile p0 = lfm2c_model_decode_profile(m);
    const size_t NV = (size_t)N * lfm2c_model_get_info(m)->n_vocab;
    float *base = all_logits(m, ids, N, false), *rb = all_logits(ref, ids, N, false);
    const lfm2c_decode_profile p1 = lfm2c_model_decode_profile(m);
    CHECK(p1.device_passes >= p0.device_passes + 1 && p1.device_seconds > p0.device_seconds,
          "%s: the device's timestamps did not time the pass (%ld passes, %g s)", nm, p1.device_passes,
          p1.device_seconds);
    uint64_t imp_def = vulkan_weights_imported(m), imp_on = 0, imp_off = 1;
    float *tile = variant_logits(path, "LFM2C_VULKAN_TILE_MIN", "2", ids, N, NULL);
    float *shared = variant_logits(path, "LFM2C_VULKAN_SUBGROUP", "0", ids, N, NULL);
    float *copied = variant_logits(path, "LFM2C_VULKAN_IMPORT", "0", ids, N, &imp_off);
    float *imported = variant_logits(path, "LFM2C_VULKAN_IMPORT", "1", ids, N, &imp_on);
    double dt = tile ? test_maxabs(tile, base, NV) : 1, ds = shared ? test_maxabs(shared, base, NV) : 1;
    double dtr = tile ? test_maxabs(tile, rb, NV) : 1;
    /* other summation orders: the --reference tolerance (logits here reach the hundreds) */
    CHECK(dt <= 1e-2 && dtr <= 1e-2, "%s: tiled GEMM vs GEMV %g, vs --reference %g", nm, dt, dtr);
    CHECK(ds <= 1e-2, "%s: shared-memory vs subgroup reduction %g", nm, ds);
    CHECK(imp_off == 0, "%s: LFM2C_VULKAN_IMPORT=0 still imported", nm);
    CHECK(copied && imported && !memcmp(copied, imported, NV * sizeof(float)), "%s: imported weights give other logits",
          nm);
    printf("%-26s tiled GEMM vs GEMV %.2e (vs --reference %.2e), shared-memory vs subgroup reduction %.2e; weights "
           "imported: %llu bytes by default, %llu asked; device time %.3f ms over %ld passes\n",
           nm, dt, dtr, ds, (unsigned long long)imp_def, (unsigned long long)imp_on, 1e3 * p1.device_seconds,
           p1.device_passes);
    if (getenv("LFM2C_TEST_EXPECT_IMPORT")) /* CI on lavapipe: it offers VK_EXT_external_memory_host */
        CHECK(imp_def > 0 && imp_on > 0, "%s: the weights were not imported on this device", nm);
    free(base), free(rb), free(tile), free(shared), free(copied), free(imported);
    lfm2c_model_free(m);
    lfm2c_model_free(ref);
}

int main(void) {
    char dev[300];
    if (vulkan_device_count(dev, sizeof dev) == 0) {
        lfm2c_model_params p = lfm2c_model_default_params();
        p.device = LFM2C_DEVICE_VULKAN;
        lfm2c_error err = {0};
        lfm2c_model *m = lfm2c_model_open("data/lfm2-tiny-dense-f32.gguf", &p, &err);
        CHECK(m == NULL && err.code != 0 && err.msg[0], "opening on Vulkan without a device must fail cleanly");
        lfm2c_model_free(m);
        printf("SKIP: no Vulkan device (only checked that --device vulkan fails cleanly: %s)\n", err.msg);
        TEST_MAIN_END();
    }
    printf("Vulkan device: %s\n", dev);
    check_too_big();
    check_paths("lfm2-tiny-moe-q8_0");
    check_paths("lfm2-kq-moe-q4_k_m");
    check_paths("lfm2-tiny-dense-f32");
    const char *names[64];
    int nn = 0;
    DIR *d = opendir("data");
    CHECK(d != NULL, "no tests/data");
    const char *only = getenv("LFM2C_TEST_FIXTURES");
    for (struct dirent *e; d && (e = readdir(d)) && nn < 64;) {
        size_t L = strlen(e->d_name), ls = strlen(".golden.json");
        if (L <= ls || strcmp(e->d_name + L - ls, ".golden.json")) continue;
        char *nm = strndup(e->d_name, L - ls);
        char key[300];
        snprintf(key, sizeof key, ",%s,", nm);
        char list[4096];
        snprintf(list, sizeof list, ",%s,", only ? only : "");
        if (only && !strstr(list, key)) {
            free(nm);
            continue;
        }
        names[nn++] = nm;
    }
    if (d) closedir(d);
    CHECK(only ? nn > 0 : nn >= 10, "found only %d fixtures", nn);
    for (int i = 0; i < nn; i++) {
        check_fixture(names[i]);
        free((void *)names[i]);
    }
    TEST_MAIN_END();
}
