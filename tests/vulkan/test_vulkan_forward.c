/* test_vulkan_forward.c — the Vulkan forward pass (src/vulkan) against the CPU on every fixture
 * in tests/data: logits of a prompt in one batch vs one token at a time, vs the CPU --reference
 * path (the same F16 KV cache) and vs the goldens (F32 fixtures: with an F32 cache, the goldens'
 * own, the CPU's 1e-3; with the default F16 cache the CPU's bound for it, 1e-2; quantized ones:
 * the CPU fast path's bound against the dequantized reference), greedy continuations of the F32
 * fixtures, several sessions in one batch == each alone, checkpoints / truncation / reset (conv
 * state host <-> device), session copies, embedding sessions' rows against the CPU's and beside
 * a generating one, and a model that does not fit the device's memory (LFM2C_VULKAN_MEMORY_MB)
 * failing with a clear message; the cache types (check_kv_types: K and V of different types
 * against the CPU's, a cache that grows, a copied session; q8_0 refused); and the paths the
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

/* a model whose sessions keep a K cache of type_k and a V cache of type_v (LFM2C_KV_*) */
static lfm2c_model *open_model_kv(const char *path, int device, bool reference, int type_k, int type_v) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    p.device = device;
    p.reference = reference;
    p.type_k = type_k;
    p.type_v = type_v;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(path, &p, &err);
    CHECK(m != NULL, "%s: %s", path, err.msg);
    return m;
}

/* the default F16 cache */
static lfm2c_model *open_model(const char *path, int device, bool reference) {
    return open_model_kv(path, device, reference, LFM2C_KV_F16, LFM2C_KV_F16);
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

/* greedy continuation with the caches equals the golden's */
static void check_greedy(lfm2c_model *m, const char *nm, const int32_t *ids, int n, json_t *jgreedy) {
    const int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, n + 32, &err);
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

/* An F32 fixture with an F32 KV cache (-ctk f32 -ctv f32), the goldens' own: within the CPU's
 * tolerance of them (1e-3, test_model; 1.6e-5 / 2.7e-5 measured on lavapipe) and of the CPU
 * --reference with the same cache, and the greedy continuation (decode from the F32 cache; a
 * cache that grows and a copied session with F32 rows: check_kv_types). */
static void check_f32_cache(const char *nm, const char *path, const int32_t *ids, int n, const float *golden,
                            json_t *jgreedy) {
    lfm2c_model *gpu = open_model_kv(path, LFM2C_DEVICE_VULKAN, false, LFM2C_KV_F32, LFM2C_KV_F32);
    lfm2c_model *ref = open_model_kv(path, LFM2C_DEVICE_CPU, true, LFM2C_KV_F32, LFM2C_KV_F32);
    if (gpu && ref) {
        const size_t V = (size_t)lfm2c_model_get_info(gpu)->n_vocab, NV = (size_t)n * V;
        float *batch = all_logits(gpu, ids, n, false), *rb = all_logits(ref, ids, n, false);
        double dg = test_maxabs(batch, golden, NV), dr = test_maxabs(batch, rb, NV);
        CHECK(dg <= 1e-3, "%s: Vulkan (F32 cache) vs golden %g", nm, dg);
        CHECK(dr <= 1e-3, "%s: Vulkan (F32 cache) vs CPU --reference (F32 cache) %g", nm, dr);
        printf("%-26s Vulkan (F32 cache) vs golden %.2e, vs --reference %.2e\n", nm, dg, dr);
        check_greedy(gpu, nm, ids, n, jgreedy);
        free(batch), free(rb);
    }
    lfm2c_model_free(gpu);
    lfm2c_model_free(ref);
}

static void check_fixture(const char *nm) {
    char path[512], bin[512];
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
    snprintf(bin, sizeof bin, "data/%s.golden.logits.f32.bin", nm);
    float *golden = read_f32(bin, &ng);
    CHECK(ng == NV, "%s: golden size", nm);
    if (is_f32 && ng == NV) { /* the F16 cache: the CPU's tolerance for it (test_model), 3e-3 measured */
        double d = test_maxabs(batch, golden, NV);
        CHECK(d <= 1e-2, "%s: Vulkan (F16 cache) vs golden %g", nm, d);
        printf("%-26s Vulkan (F16 cache) vs golden %.2e, vs --reference %.2e, one-by-one %.2e\n", nm, d, d_ref, d_one);
        check_f32_cache(nm, path, ids, n, golden, jgreedy);
    } else if (ng == NV) {
        snprintf(bin, sizeof bin, "data/%s.dequant-ref.logits.f32.bin", nm);
        float *dq = read_f32(bin, &nd);
        CHECK(nd == NV, "%s: dequant-ref size", nm);
        if (nd == NV) {
            double df = test_maxabs(batch, dq, NV), dg = test_maxabs(golden, dq, NV);
            CHECK(df <= 1.5 * dg + 0.5, "%s: Vulkan vs dequant-ref %g (golden's %g)", nm, df, dg);
            printf("%-26s Vulkan vs dequant-ref %.2e (golden's %.2e), vs --reference %.2e, one-by-one %.2e\n", nm, df,
                   dg, d_ref, d_one);
        }
        free(dq);
    }
    if (is_f32) check_greedy(gpu, nm, ids, n, jgreedy);
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

/* logits of one prompt in one batch with the environment variable name=value while opening
 * (K and V caches of type kv) */
static float *variant_logits(const char *path, int kv, const char *name, const char *value, const int32_t *ids, int n,
                             uint64_t *imported) {
    setenv(name, value, 1);
    lfm2c_model *m = open_model_kv(path, LFM2C_DEVICE_VULKAN, false, kv, kv);
    unsetenv(name);
    float *out = m ? all_logits(m, ids, n, false) : NULL;
    if (imported) *imported = vulkan_weights_imported(m);
    lfm2c_model_free(m);
    return out;
}

/* The paths the defaults do not take on this device for these fixtures, against the defaults:
 * LFM2C_VULKAN_TILE_MIN=2 (the tiled GEMM, MoE experts grouped, for any batch of 2 or more),
 * LFM2C_VULKAN_SUBGROUP=0 (the GEMV's shared-memory reduction), LFM2C_VULKAN_IMPORT=0 / 1 (weights
 * copied / imported). Bit for bit where only the weights' home differs. With an F16 cache (kv)
 * other summation orders may round a cache entry the other way: the --reference tolerance,
 * 1e-2 (logits here reach the hundreds); with an F32 one, the goldens' 1e-3. */
static void check_paths(const char *nm, int kv) {
    char path[512];
    snprintf(path, sizeof path, "data/%s.gguf", nm);
    enum { N = 24 }; /* under the default tile_min (32): the defaults run the GEMV */
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 1 + (i * 37) % 500;
    lfm2c_model *m = open_model_kv(path, LFM2C_DEVICE_VULKAN, false, kv, kv),
                *ref = open_model_kv(path, LFM2C_DEVICE_CPU, true, kv, kv);
    if (!m || !ref) return;
    const double tol = kv == LFM2C_KV_F32 ? 1e-3 : 1e-2;
    const lfm2c_decode_profile p0 = lfm2c_model_decode_profile(m);
    const size_t NV = (size_t)N * lfm2c_model_get_info(m)->n_vocab;
    float *base = all_logits(m, ids, N, false), *rb = all_logits(ref, ids, N, false);
    const lfm2c_decode_profile p1 = lfm2c_model_decode_profile(m);
    CHECK(p1.device_passes >= p0.device_passes + 1 && p1.device_seconds > p0.device_seconds,
          "%s: the device's timestamps did not time the pass (%ld passes, %g s)", nm, p1.device_passes,
          p1.device_seconds);
    uint64_t imp_def = vulkan_weights_imported(m), imp_on = 0, imp_off = 1;
    float *tile = variant_logits(path, kv, "LFM2C_VULKAN_TILE_MIN", "2", ids, N, NULL);
    float *shared = variant_logits(path, kv, "LFM2C_VULKAN_SUBGROUP", "0", ids, N, NULL);
    float *copied = variant_logits(path, kv, "LFM2C_VULKAN_IMPORT", "0", ids, N, &imp_off);
    float *imported = variant_logits(path, kv, "LFM2C_VULKAN_IMPORT", "1", ids, N, &imp_on);
    double dt = tile ? test_maxabs(tile, base, NV) : 1, ds = shared ? test_maxabs(shared, base, NV) : 1;
    double dtr = tile ? test_maxabs(tile, rb, NV) : 1;
    CHECK(dt <= tol && dtr <= tol, "%s: tiled GEMM vs GEMV %g, vs --reference %g", nm, dt, dtr);
    CHECK(ds <= tol, "%s: shared-memory vs subgroup reduction %g", nm, ds);
    CHECK(imp_off == 0, "%s: LFM2C_VULKAN_IMPORT=0 still imported", nm);
    CHECK(copied && imported && !memcmp(copied, imported, NV * sizeof(float)), "%s: imported weights give other logits",
          nm);
    printf("%-26s %s cache: tiled GEMM vs GEMV %.2e (vs --reference %.2e), shared-memory vs subgroup reduction %.2e; "
           "weights imported: %llu bytes by default, %llu asked; device time %.3f ms over %ld passes\n",
           nm, lfm2c_kv_type_name(kv), dt, dtr, ds, (unsigned long long)imp_def, (unsigned long long)imp_on,
           1e3 * p1.device_seconds, p1.device_passes);
    if (getenv("LFM2C_TEST_EXPECT_IMPORT")) /* CI on lavapipe: it offers VK_EXT_external_memory_host */
        CHECK(imp_def > 0 && imp_on > 0, "%s: the weights were not imported on this device", nm);
    free(base), free(rb), free(tile), free(shared), free(copied), free(imported);
    lfm2c_model_free(m);
    lfm2c_model_free(ref);
}

/* max |a - b| over n floats, infinite where either has a NaN (test_maxabs skips those: a cache
 * read out of place can give NaNs) */
static double maxabs_nan(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
    return test_maxabs(a, b, n);
}

/* ids[0, n) fed as [0, first) then [first, n) into a session of n_ctx 1024, and [first, n) into a
 * copy of it made after the first part (lfm2c_session_copy): the cache's first reservation is
 * 256 positions, so first = 256 makes both grow (their entries copied, vulkan_kv_reserve).
 * out[0] the session's last logits, out[1] the copy's (caller frees both). */
static void fed_in_two(lfm2c_model *m, const int32_t *ids, int n, int first, float *out[2]) {
    const int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {0};
    lfm2c_session *s[2] = {lfm2c_session_new(m, 1024, &err), lfm2c_session_new(m, 1024, &err)};
    int rc = s[0] && s[1] ? lfm2c_session_decode(s[0], ids, first, LFM2C_LOGITS_NONE, &err) : -1;
    if (!rc) rc = lfm2c_session_copy(s[1], s[0], &err);
    for (int i = 0; i < 2; i++) {
        out[i] = malloc(sizeof(float) * V);
        if (!rc) rc = lfm2c_session_decode(s[i], ids + first, n - first, LFM2C_LOGITS_LAST, &err);
        if (!rc) memcpy(out[i], lfm2c_session_logits(s[i], 0), sizeof(float) * V);
        else
            for (int j = 0; j < V; j++) out[i][j] = NAN;
    }
    CHECK(rc == 0, "decode in two parts: %s", err.msg);
    lfm2c_session_free(s[0]);
    lfm2c_session_free(s[1]);
}

/* A q8_0 KV cache (a model whose head dimension allows one on the CPU) is refused on the
 * device with a clear error, for K and for V. */
static void check_kv_q8(const char *path) {
    for (int i = 0; i < 2; i++) {
        lfm2c_model_params p = lfm2c_model_default_params();
        p.device = LFM2C_DEVICE_VULKAN;
        if (i) p.type_v = LFM2C_KV_Q8_0;
        else p.type_k = LFM2C_KV_Q8_0;
        lfm2c_error err = {0};
        lfm2c_model *m = lfm2c_model_open(path, &p, &err);
        CHECK(!m && err.code == LFM2C_EUNSUPPORTED && strstr(err.msg, "f16 or f32") && strstr(err.msg, "q8_0"),
              "a q8_0 %s cache on Vulkan: %s", i ? "V" : "K", m ? "opened" : err.msg);
        if (i) printf("a q8_0 cache: %s\n", err.msg);
        lfm2c_model_free(m);
    }
}

/* The cache types on the device (-ctk / -ctv): K and V of different types (F16 / F32 and
 * F32 / F16, so a flag or a row size taken from the other cache shows) against the CPU
 * --reference with the same types (closer to it than to the reference with the types
 * swapped), a cache grown past its first 256 positions and a session copied, each against the
 * prompt fed at once. */
static void check_kv_types(const char *nm) {
    char path[512];
    snprintf(path, sizeof path, "data/%s.gguf", nm);
    enum { N = 264, FIRST = 256 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 1 + (i * 37) % 500;
    const int kinds[2][2] = {{LFM2C_KV_F16, LFM2C_KV_F32}, {LFM2C_KV_F32, LFM2C_KV_F16}};
    lfm2c_model *ref[2];
    float *rb[2];
    for (int k = 0; k < 2; k++) {
        ref[k] = open_model_kv(path, LFM2C_DEVICE_CPU, true, kinds[k][0], kinds[k][1]);
        rb[k] = ref[k] ? all_logits(ref[k], ids, N, false) : NULL;
    }
    for (int k = 0; k < 2 && rb[0] && rb[1]; k++) {
        lfm2c_model *m = open_model_kv(path, LFM2C_DEVICE_VULKAN, false, kinds[k][0], kinds[k][1]);
        if (!m) continue;
        const size_t V = (size_t)lfm2c_model_get_info(m)->n_vocab, NV = (size_t)N * V;
        float *all = all_logits(m, ids, N, false), *two[2];
        fed_in_two(m, ids, N, FIRST, two);
        double ds = maxabs_nan(all, rb[k], NV), dx = maxabs_nan(all, rb[1 - k], NV);
        double dgw = maxabs_nan(two[0], all + NV - V, V), dc = maxabs_nan(two[1], all + NV - V, V);
        const char *kn = k ? "K f32 V f16" : "K f16 V f32";
        CHECK(ds <= 1e-2 && ds < dx / 2, "%s: %s: Vulkan vs --reference %g (with the types swapped %g)", nm, kn, ds,
              dx);
        CHECK(dgw <= 1e-2 && dc <= 1e-2, "%s: %s: grown cache %g, copied session %g", nm, kn, dgw, dc);
        printf("%-26s %s: vs --reference %.2e (types swapped %.2e); grown cache %.2e, copied session %.2e\n", nm, kn,
               ds, dx, dgw, dc);
        free(all), free(two[0]), free(two[1]);
        lfm2c_model_free(m);
    }
    for (int k = 0; k < 2; k++) free(rb[k]), lfm2c_model_free(ref[k]);
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
    check_paths("lfm2-tiny-moe-q8_0", LFM2C_KV_F16);
    check_paths("lfm2-kq-moe-q4_k_m", LFM2C_KV_F16);
    check_paths("lfm2-tiny-dense-f32", LFM2C_KV_F32);
    check_kv_types("lfm2-tiny-dense-f32");
    check_kv_q8("data/lfm2-kq-dense-q4_k_m.gguf");
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
