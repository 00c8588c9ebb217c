/* test_cuda_forward.cu — the CUDA forward pass against the CPU on every fixture in tests/data:
 * logits of a prompt (batch and one token at a time, with and without the decode graph) vs the
 * CPU --reference path and the goldens, greedy continuations of the F32 fixtures, batches of
 * several sessions (the GEMM paths), checkpoints and truncation (conv state device <-> host), a
 * model split into parts (each part's weights uploaded on their own).
 * Without a CUDA device it checks that opening a model on CUDA fails cleanly, then prints
 * "SKIP: no CUDA device" and exits 77, which ctest reports as skipped (a passing test's output
 * is hidden, a skip is not). LFM2C_TEST_FIXTURES=name,name limits it to those fixtures. */
extern "C" {
#include "lfm2c.h"
#include "cuda/backend_cuda.h"
#include "formats/gguf.h"
#include "formats/gguf_write.h"
}
#include "test.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <string>
#include <vector>

static std::vector<float> read_f32(const std::string &path) {
    size_t bytes = 0;
    float *p = (float *)test_read_file(path.c_str(), &bytes);
    std::vector<float> v;
    if (p) v.assign(p, p + bytes / 4);
    free(p);
    return v;
}

static lfm2c_model *open_model(const std::string &path, int device, bool reference) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    p.device = device;
    p.reference = reference;
    p.type_k = p.type_v = LFM2C_KV_F32;   /* the CPU side in F32 like the device cache (F16 is the default) */
    lfm2c_error err = {};
    lfm2c_model *m = lfm2c_model_open(path.c_str(), &p, &err);
    CHECK(m != NULL, "%s: %s", path.c_str(), err.msg);
    return m;
}

/* logits at every position: one batch, or one token at a time */
static std::vector<float> all_logits(lfm2c_model *m, const std::vector<int32_t> &ids, bool one_by_one) {
    int n = (int)ids.size(), V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {};
    lfm2c_session *s = lfm2c_session_new(m, n + 32, &err);
    std::vector<float> out((size_t)n * V);
    int rc = 0;
    if (one_by_one) {
        for (int i = 0; i < n && !rc; i++) {
            rc = lfm2c_session_decode(s, &ids[i], 1, LFM2C_LOGITS_LAST, &err);
            if (!rc) memcpy(&out[(size_t)i * V], lfm2c_session_logits(s, 0), sizeof(float) * V);
        }
    } else {
        rc = lfm2c_session_decode(s, ids.data(), n, LFM2C_LOGITS_ALL, &err);
        for (int i = 0; i < n && !rc; i++) memcpy(&out[(size_t)i * V], lfm2c_session_logits(s, i), sizeof(float) * V);
    }
    CHECK(rc == 0, "decode failed: %s", err.msg);
    lfm2c_session_free(s);
    return out;
}

static void check_fixture(const std::string &name) {
    std::string base = "data/" + name;
    json_error_t je;
    json_t *g = json_load_file((base + ".golden.json").c_str(), 0, &je);
    CHECK(g != NULL, "%s: %s", name.c_str(), je.text);
    if (!g) return;
    json_t *jids = json_object_get(g, "token_ids"), *jgreedy = json_object_get(g, "greedy_ids");
    std::vector<int32_t> ids(json_array_size(jids));
    for (size_t i = 0; i < ids.size(); i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
    const int n = (int)ids.size();
    const bool is_f32 = name.find("f32") != std::string::npos;

    lfm2c_model *gpu = open_model(base + ".gguf", LFM2C_DEVICE_CUDA, false);
    lfm2c_model *ref = open_model(base + ".gguf", LFM2C_DEVICE_CPU, true);
    setenv("LFM2C_CUDA_GRAPH", "0", 1);
    lfm2c_model *nograph = open_model(base + ".gguf", LFM2C_DEVICE_CUDA, false);
    unsetenv("LFM2C_CUDA_GRAPH");
    if (!gpu || !ref || !nograph) { json_decref(g); return; }
    const int V = lfm2c_model_get_info(gpu)->n_vocab;
    const size_t NV = (size_t)n * V;
    const char *nm = name.c_str();

    std::vector<float> golden = read_f32(base + ".golden.logits.f32.bin");
    CHECK(golden.size() == NV, "%s: golden size", nm);
    std::vector<float> batch = all_logits(gpu, ids, false), one = all_logits(gpu, ids, true);
    std::vector<float> one_ng = all_logits(nograph, ids, true), rb = all_logits(ref, ids, false);
    double d_one = test_maxabs(batch.data(), one.data(), NV), d_graph = test_maxabs(one.data(), one_ng.data(), NV);
    double d_ref = test_maxabs(batch.data(), rb.data(), NV);
    CHECK(d_one <= 1e-3, "%s: one-by-one vs batch %g", nm, d_one);
    CHECK(d_graph <= 1e-5, "%s: decode graph vs plain launches %g", nm, d_graph);
    /* float activations, like --reference: only the summation order differs */
    CHECK(d_ref <= 1e-2, "%s: CUDA vs CPU --reference %g", nm, d_ref);
    if (is_f32 && golden.size() == NV) {
        double d = test_maxabs(batch.data(), golden.data(), NV);
        CHECK(d <= 1e-3, "%s: CUDA vs golden %g", nm, d);
        printf("%-26s CUDA vs golden %.2e, vs --reference %.2e, one-by-one %.2e\n", nm, d, d_ref, d_one);
    } else if (golden.size() == NV) {
        std::vector<float> dq = read_f32(base + ".dequant-ref.logits.f32.bin");
        CHECK(dq.size() == NV, "%s: dequant-ref size", nm);
        if (dq.size() == NV) {
            double df = test_maxabs(batch.data(), dq.data(), NV), dg = test_maxabs(golden.data(), dq.data(), NV);
            CHECK(df <= 1.5 * dg + 0.5, "%s: CUDA vs dequant-ref %g (golden's %g)", nm, df, dg);
            printf("%-26s CUDA vs dequant-ref %.2e, vs --reference %.2e, one-by-one %.2e\n", nm, df, d_ref, d_one);
        }
    }

    lfm2c_error err = {};
    if (is_f32) {   /* greedy continuation with the caches equals the golden */
        lfm2c_session *s = lfm2c_session_new(gpu, n + 32, &err);
        lfm2c_session_decode(s, ids.data(), n, LFM2C_LOGITS_LAST, &err);
        bool ok = true;
        for (size_t i = 0; i < json_array_size(jgreedy); i++) {
            int32_t t = test_argmax(lfm2c_session_logits(s, 0), V);
            ok = ok && t == (int32_t)json_integer_value(json_array_get(jgreedy, i));
            lfm2c_session_decode(s, &t, 1, LFM2C_LOGITS_LAST, &err);
        }
        CHECK(ok, "%s: greedy continuation differs from the golden", nm);
        lfm2c_session_free(s);
    }

    /* 20 sessions in one batch (MoE and dense GEMM paths, conv links across sequences): each
     * gives what the single batch gave; one of them resumes from a checkpoint */
    {
        const int NS = 20;
        std::vector<lfm2c_session *> ss(NS);
        std::vector<const int32_t *> tk(NS);
        std::vector<int> nn(NS), modes(NS, LFM2C_LOGITS_ALL);
        int na = n / 2;
        for (int i = 0; i < NS; i++) {
            ss[i] = lfm2c_session_new(gpu, 64, &err);
            int pre = i % 3 == 0 ? na : 0;   /* some sessions already hold the first half */
            if (pre) lfm2c_session_decode(ss[i], ids.data(), pre, LFM2C_LOGITS_NONE, &err);
            tk[i] = ids.data() + pre;
            nn[i] = n - pre;
        }
        lfm2c_session_checkpoint(ss[0]);
        int rc = lfm2c_decode_batch(ss.data(), tk.data(), nn.data(), modes.data(), NS, &err);
        CHECK(rc == 0, "%s: batch: %s", nm, err.msg);
        double worst = 0;
        for (int i = 0; i < NS && rc == 0; i++)
            worst = fmax(worst, test_maxabs(lfm2c_session_logits(ss[i], nn[i] - 1), &batch[(size_t)(n - 1) * V], V));
        CHECK(worst <= 1e-3, "%s: batched sessions differ by %g", nm, worst);
        /* truncate to past the checkpoint and re-feed; then to before it (no checkpoint) */
        lfm2c_session *a = ss[0];
        CHECK(lfm2c_session_truncate(a, na + 2, &err) == 0, "%s: truncate: %s", nm, err.msg);
        lfm2c_session_decode(a, ids.data() + na + 2, n - na - 2, LFM2C_LOGITS_LAST, &err);
        double dt = test_maxabs(lfm2c_session_logits(a, 0), &batch[(size_t)(n - 1) * V], V);
        CHECK(dt <= 1e-3, "%s: after truncate %g", nm, dt);
        CHECK(lfm2c_session_truncate(a, 3, &err) == 0, "%s: truncate to 3", nm);
        lfm2c_session_decode(a, ids.data() + 3, n - 3, LFM2C_LOGITS_LAST, &err);
        dt = test_maxabs(lfm2c_session_logits(a, 0), &batch[(size_t)(n - 1) * V], V);
        CHECK(dt <= 1e-3, "%s: after truncate to 3: %g", nm, dt);
        lfm2c_session_reset(a);
        lfm2c_session_decode(a, ids.data(), n, LFM2C_LOGITS_LAST, &err);
        dt = test_maxabs(lfm2c_session_logits(a, 0), &batch[(size_t)(n - 1) * V], V);
        CHECK(dt <= 1e-3, "%s: after reset: %g", nm, dt);
        for (auto s : ss) lfm2c_session_free(s);
    }
    lfm2c_model_free(gpu);
    lfm2c_model_free(nograph);
    lfm2c_model_free(ref);
    json_decref(g);
}

/* part `no` of `count` of g (tensors [t0, t1)) as a split GGUF file */
static bool write_part(const gguf_file *g, const char *path, int no, int count, uint64_t t0, uint64_t t1) {
    lfm2c_error err = {};
    gguf_writer *w = gguf_writer_new();
    bool ok = w != NULL;
    if (ok && no == 0)
        for (uint64_t i = 0; i < g->n_kv; i++) ok = ok && gguf_set_kv(w, &g->kv[i]);
    ok = ok && gguf_set_u16(w, "split.no", (uint16_t)no) && gguf_set_u16(w, "split.count", (uint16_t)count) &&
         gguf_set_i32(w, "split.tensors.count", (int32_t)g->n_tensors);
    for (uint64_t i = t0; ok && i < t1; i++)
        ok = gguf_add_tensor(w, g->tensors[i].name, g->tensors[i].type, g->tensors[i].n_dims, g->tensors[i].ne, &err);
    ok = ok && gguf_writer_open(w, path, &err);
    for (uint64_t i = t0; ok && i < t1; i++) ok = gguf_write_data(w, g->tensors[i].data, g->tensors[i].nbytes, &err);
    ok = ok && gguf_writer_finish(w, &err);
    if (!ok) fprintf(stderr, "write %s: %s\n", path, err.msg);
    gguf_writer_free(w);
    return ok;
}

/* A split model (3 parts: the tensors of parts 2 and 3 lie in their own mappings) gives on the
 * device exactly the logits of the single file. */
static void check_split(const std::string &name) {
    lfm2c_error err = {};
    std::string src = "data/" + name + ".gguf";
    gguf_file *g = gguf_open(src.c_str(), &err);
    CHECK(g != NULL, "%s: %s", src.c_str(), err.msg);
    if (!g) return;
    char dir[] = "/tmp/lfm2c-cuda-split-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    std::string p[3];
    for (int i = 0; i < 3; i++) p[i] = std::string(dir) + "/m-0000" + std::to_string(i + 1) + "-of-00003.gguf";
    uint64_t n = g->n_tensors, a = n / 3, b = 2 * n / 3;
    bool ok = write_part(g, p[0].c_str(), 0, 3, 0, a) && write_part(g, p[1].c_str(), 1, 3, a, b) &&
              write_part(g, p[2].c_str(), 2, 3, b, n);
    gguf_close(g);
    CHECK(ok, "%s: writing the parts", name.c_str());
    if (ok) {
        lfm2c_model *one = open_model(src, LFM2C_DEVICE_CUDA, false), *split = open_model(p[0], LFM2C_DEVICE_CUDA, false);
        if (one && split) {
            std::vector<int32_t> ids = {1, 498, 582, 17, 33, 7};
            std::vector<float> a1 = all_logits(one, ids, false), a2 = all_logits(split, ids, false);
            double d = test_maxabs(a1.data(), a2.data(), a1.size());
            CHECK(d == 0, "%s: split model logits differ by %g", name.c_str(), d);
            printf("%-26s split into 3 parts: logits as the single file (max diff %g)\n", name.c_str(), d);
        }
        lfm2c_model_free(one);
        lfm2c_model_free(split);
    }
    for (auto &f : p) remove(f.c_str());
    rmdir(dir);
}

int main(void) {
    if (cuda_device_count() == 0) {
        lfm2c_model_params p = lfm2c_model_default_params();
        p.device = LFM2C_DEVICE_CUDA;
        lfm2c_error err = {};
        lfm2c_model *m = lfm2c_model_open("data/lfm2-tiny-dense-f32.gguf", &p, &err);
        CHECK(m == NULL && err.code != 0 && err.msg[0], "opening on CUDA without a device must fail cleanly");
        lfm2c_model_free(m);
        if (test_failed) TEST_MAIN_END();
        printf("SKIP: no CUDA device (only checked that --device cuda fails cleanly: %s)\n", err.msg);
        return 77;
    }
    std::vector<std::string> names;
    DIR *d = opendir("data");
    CHECK(d != NULL, "no tests/data");
    for (struct dirent *e; d && (e = readdir(d));) {
        std::string f = e->d_name, suf = ".golden.json";
        if (f.size() > suf.size() && f.compare(f.size() - suf.size(), suf.size(), suf) == 0)
            names.push_back(f.substr(0, f.size() - suf.size()));
    }
    if (d) closedir(d);
    CHECK(names.size() >= 10, "found only %zu fixtures", names.size());
    /* LFM2C_TEST_FIXTURES=a,b: only these (scripts/gpu_check.sh runs compute-sanitizer on a few) */
    if (const char *only = getenv("LFM2C_TEST_FIXTURES")) {
        std::string list = std::string(",") + only + ",";
        std::vector<std::string> kept;
        for (auto &nm : names)
            if (list.find("," + nm + ",") != std::string::npos) kept.push_back(nm);
        CHECK(!kept.empty(), "LFM2C_TEST_FIXTURES=%s names no fixture", only);
        printf("LFM2C_TEST_FIXTURES: %zu of %zu fixtures\n", kept.size(), names.size());
        names = kept;
    }
    for (auto &nm : names) check_fixture(nm);
    if (!names.empty()) check_split(names[0]);
    TEST_MAIN_END();
}
