/* test_cuda_emu.cpp — the CUDA backend's own code (src/cuda/backend_cuda.cu, forward.cu, kernels_*.cu)
 * compiled with the host C++ compiler against the emulated runtime of
 * tests/cuda/emu/cuda_runtime.h, and run on the CPU: the whole
 * forward of the device backend (scratch layout, batch table, kernel index arithmetic, tiles and
 * tails, shared-memory barriers, warp shuffles, the MoE plan, the decode graph's replay) against
 * the CPU --reference path, where no GPU is. It checks logic, not the GPU's arithmetic (the
 * per-element math is test_cuda_math's) nor its speed.
 *
 * Small random models (lfm2c synth: hidden 256, vocab 400, dense and MoE) of every type synth
 * writes: a prompt as one batch (the GEMM path) and one token at a time (the GEMV path and the
 * decode graph, replayed, vs plain launches), several sessions in one batch (both paths, conv
 * links, the logits rows), a truncation back to a checkpoint (conv state push / pull), 20
 * sessions in one batch of more than one forward, and a model split into 3 files (each file's
 * weights a device region of its own). The batched products through cuBLASLt (LFM2C_CUDA_BLAS=1,
 * blas.cu) run on the stand-in tests/cuda/emu/cublasLt.h: checked itself against exact
 * products, then the backend with and without the switch. A model with a weight type whose row in
 * the type table lacks the CUDA bit (the IQ fixture) is refused by name. */
#include <cuda_runtime.h> /* the emulation: tests/cuda/emu comes first on the include path */
#include <cublasLt.h>     /* its stand-in for cuBLASLt */
#include <cublas_v2.h>    /* and for cuBLAS's grouped GEMM */
extern "C" {
#include "lfm2c.h"
#include "base/error.h"
#include "core/backend.h"
#include "core/forward.h"
#include "core/gpu_shapes.h"
#include "core/model.h"
#include "core/sample_batch.h"
#include "core/sampler.h"
#include "core/session.h"
#include "convert/synth.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/gguf_write.h"
#ifdef LFM2C_HAVE_SERVER
#include "serve/scheduler.h"
#endif
}
#include "test.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <string>
#include <vector>

#include <mma.h> /* the shims (tests/cuda/emu), outside the namespace below */

/* the backend under another name: a CUDA build links the real one too */
#define backend_cuda emu_backend_cuda
#define cuda_device_count emu_cuda_device_count
#define cuda_profile_text emu_cuda_profile_text
#define cuda_device_name emu_cuda_device_name
#define cuda_backend_note emu_cuda_backend_note
namespace emu {
#include "cuda/kernels_mm.cu"
#include "cuda/kernels_attn.cu"
#include "cuda/kernels_moe.cu"
#include "cuda/kernels_ops.cu"
#include "cuda/sample.cu"
#include "cuda/sample_step.cu"
#include "cuda/backend_cuda.cu"
#include "cuda/forward.cu"
#include "cuda/blas.cu"
#include "cuda/blas_moe.cu"
} // namespace emu
#undef backend_cuda
#undef cuda_device_count
#undef cuda_profile_text
#undef cuda_device_name
#undef cuda_backend_note

static int N = 12;                                     /* prompt tokens */
static int KV_K = LFM2C_KV_F32, KV_V = LFM2C_KV_F32; /* the KV cache's types, both sides */

static lfm2c_model *open_ref(const std::string &path) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 1;
    p.reference = true;
    p.hugepages = LFM2C_HUGEPAGES_OFF;
    p.type_k = KV_K, p.type_v = KV_V;
    lfm2c_error err = {};
    lfm2c_model *m = lfm2c_model_open(path.c_str(), &p, &err);
    CHECK(m != NULL, "%s: %s", path.c_str(), err.msg);
    return m;
}

/* The model bound on the CPU (the weights as in the file: no huge-page copy, so nothing packed),
 * then handed from the CPU backend to the emulated CUDA one. */
static lfm2c_model *open_emu(const std::string &path, bool graph) {
    lfm2c_model *m = open_ref(path);
    if (!m) return NULL;
    m->backend->model_free(m);
    m->backend = NULL;
    if (!graph) setenv("LFM2C_CUDA_GRAPH", "0", 1);
    lfm2c_error err = {};
    int rc = emu::emu_backend_cuda.model_init(m, NULL, &err);
    unsetenv("LFM2C_CUDA_GRAPH");
    CHECK(rc == 0, "%s: emulated CUDA init: %s", path.c_str(), err.msg);
    if (rc) {
        lfm2c_model_free(m);
        return NULL;
    }
    m->backend = &emu::emu_backend_cuda;
    return m;
}

static std::vector<int32_t> prompt(int V) {
    std::vector<int32_t> ids(N);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 131 + 7) % V);
    return ids;
}

/* logits at every position: one batch, or one token at a time */
static std::vector<float> all_logits(lfm2c_model *m, const std::vector<int32_t> &ids, bool one_by_one) {
    const int n = (int)ids.size(), V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {};
    lfm2c_session *s = lfm2c_session_new(m, n + 8, &err);
    std::vector<float> out((size_t)n * V, NAN);
    int rc = s ? 0 : -1;
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

static double maxabs(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; /* NaN counts as the worst */
    }
    return d;
}

static double maxval(const std::vector<float> &a) {
    double m = 0;
    for (float v : a) m = fmax(m, fabs(v));
    return m;
}

/* Sessions in one batch: A the whole prompt (every row), B the rest after a prefix it holds, C its
 * first token only; each as the reference gave. gemv: the small variant (<= 8 tokens in all). */
static double batched(lfm2c_model *m, const std::vector<int32_t> &ids, const std::vector<float> &ref, bool small) {
    const int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {};
    lfm2c_session *ss[3];
    for (auto &s : ss) s = lfm2c_session_new(m, N + 8, &err);
    const int na = small ? 3 : N, pre = small ? N - 4 : 5;
    int rc = lfm2c_session_decode(ss[1], ids.data(), pre, LFM2C_LOGITS_NONE, &err);
    const int32_t *tk[3] = {ids.data(), ids.data() + pre, ids.data()};
    int nn[3] = {na, small ? 4 : N - pre, 1}, modes[3] = {LFM2C_LOGITS_ALL, LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST};
    if (!rc) rc = lfm2c_decode_batch(ss, tk, nn, modes, 3, &err);
    CHECK(rc == 0, "batch: %s", err.msg);
    double d = rc ? INFINITY : 0;
    for (int i = 0; i < na && !rc; i++) d = fmax(d, maxabs(lfm2c_session_logits(ss[0], i), &ref[(size_t)i * V], V));
    if (!rc) d = fmax(d, maxabs(lfm2c_session_logits(ss[1], 0), &ref[(size_t)(pre + nn[1] - 1) * V], V));
    if (!rc) d = fmax(d, maxabs(lfm2c_session_logits(ss[2], 0), &ref[0], V));
    for (auto s : ss) lfm2c_session_free(s);
    return d;
}

/* a checkpoint, then a truncation back past it: the conv state goes host -> device and back */
static double truncated(lfm2c_model *m, const std::vector<int32_t> &ids, const std::vector<float> &ref) {
    const int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_error err = {};
    lfm2c_session *s = lfm2c_session_new(m, N + 8, &err);
    int rc = lfm2c_session_decode(s, ids.data(), 5, LFM2C_LOGITS_NONE, &err);
    lfm2c_session_checkpoint(s);
    if (!rc) rc = lfm2c_session_decode(s, ids.data() + 5, N - 5, LFM2C_LOGITS_NONE, &err);
    if (!rc) rc = lfm2c_session_truncate(s, 7, &err);
    if (!rc) rc = lfm2c_session_decode(s, ids.data() + 7, N - 7, LFM2C_LOGITS_LAST, &err);
    CHECK(rc == 0, "truncate: %s", err.msg);
    double d = rc ? INFINITY : maxabs(lfm2c_session_logits(s, 0), &ref[(size_t)(N - 1) * V], V);
    lfm2c_session_free(s);
    return d;
}

/* A synthetic model of shape c and file type `type` at /tmp/lfm2c-cuda-emu-PID-NAME.gguf: its
 * path, or "" (the failure counted) when it could not be written. */
static std::string synth_tmp(const synth_config &c, const std::string &name, const char *type, uint64_t seed) {
    const std::string path = "/tmp/lfm2c-cuda-emu-" + std::to_string(getpid()) + "-" + name + ".gguf";
    lfm2c_error err = {};
    synth_params sp = {};
    sp.seed = seed;
    sp.n_threads = 1;
    const bool ok = synth_write(&c, quant_ftype_find(type), &sp, path.c_str(), NULL, &err);
    CHECK(ok, "synth %s (%s): %s", name.c_str(), type, err.msg);
    return ok ? path : std::string();
}

/* Whether check_model also decodes one token at a time with plain launches and again after the
 * scratch grew (the graph's replay against plain launches, and its capture again): what the
 * graph does is the same for every weight type, so the loop over the types checks it on a few. */
static bool GRAPH_EACH = true;

static void check_model(const char *label, const synth_config &c, const char *type) {
    const std::string path = synth_tmp(
        c, std::string(label) + "-" + type + "-kv" + std::to_string(KV_K) + std::to_string(KV_V), type, 11);
    if (path.empty()) return;
    lfm2c_model *ref = open_ref(path), *emu_g = open_emu(path, true), *emu_p = open_emu(path, false);
    if (ref && emu_g && emu_p) {
        const int V = lfm2c_model_get_info(ref)->n_vocab;
        const std::vector<int32_t> ids = prompt(V);
        const std::vector<float> r = all_logits(ref, ids, false);
        const std::vector<float> b = all_logits(emu_g, ids, false), g = all_logits(emu_g, ids, true),
                                 p = GRAPH_EACH ? all_logits(emu_p, ids, true) : g;
        /* float activations like --reference: only the order of the sums differs */
        const double lim = 1e-3 * fmax(1.0, maxval(r));
        const double d_b = maxabs(b.data(), r.data(), r.size()), d_g = maxabs(g.data(), r.data(), r.size());
        const double d_gp = maxabs(g.data(), p.data(), r.size());
        const double d_bt = batched(emu_g, ids, r, false), d_sm = batched(emu_p, ids, r, true);
        const double d_tr = truncated(emu_g, ids, r);
        /* the batches above grew the scratch: the decode graph is captured again, not replayed stale */
        const std::vector<float> g2 = GRAPH_EACH ? all_logits(emu_g, ids, true) : g;
        const double d_g2 = maxabs(g2.data(), g.data(), r.size());
        CHECK(d_g2 == 0, "%s %s: one by one after the scratch grew differs by %g", label, type, d_g2);
        CHECK(d_b <= lim, "%s %s: batch vs reference %g (limit %g)", label, type, d_b, lim);
        CHECK(d_g <= lim, "%s %s: one by one (graph) vs reference %g", label, type, d_g);
        CHECK(d_gp == 0, "%s %s: decode graph vs plain launches %g", label, type, d_gp);
        CHECK(d_bt <= lim, "%s %s: sessions in one batch (GEMM) %g", label, type, d_bt);
        CHECK(d_sm <= lim, "%s %s: sessions in one batch (GEMV) %g", label, type, d_sm);
        CHECK(d_tr <= lim, "%s %s: truncate to a checkpoint %g", label, type, d_tr);
        printf("%-7s %-7s kv %s/%s batch %.1e, one by one %.1e, graph = plain %s, batched %.1e / %.1e, truncate %.1e "
               "(|logit| <= %.1f)\n",
               label, type, lfm2c_kv_type_name(KV_K), lfm2c_kv_type_name(KV_V), d_b, d_g,
               !GRAPH_EACH ? "(not run)" : d_gp == 0 ? "yes" : "NO",
               d_bt, d_sm, d_tr, maxval(r));
    }
    lfm2c_model_free(ref);
    lfm2c_model_free(emu_g);
    lfm2c_model_free(emu_p);
    unlink(path.c_str());
}

/* part `no` of `count` of g (tensors [t0, t1)) as a split GGUF file */
static bool write_part(const gguf_file *g, const std::string &path, int no, int count, uint64_t t0, uint64_t t1) {
    lfm2c_error err = {};
    gguf_writer *w = gguf_writer_new();
    bool ok = w != NULL;
    if (ok && no == 0)
        for (uint64_t i = 0; i < g->n_kv; i++) ok = ok && gguf_set_kv(w, &g->kv[i]);
    ok = ok && gguf_set_u16(w, "split.no", (uint16_t)no) && gguf_set_u16(w, "split.count", (uint16_t)count) &&
         gguf_set_i32(w, "split.tensors.count", (int32_t)g->n_tensors);
    for (uint64_t i = t0; ok && i < t1; i++)
        ok = gguf_add_tensor(w, g->tensors[i].name, g->tensors[i].type, g->tensors[i].n_dims, g->tensors[i].ne, &err);
    ok = ok && gguf_writer_open(w, path.c_str(), &err);
    for (uint64_t i = t0; ok && i < t1; i++) ok = gguf_write_data(w, g->tensors[i].data, g->tensors[i].nbytes, &err);
    ok = ok && gguf_writer_finish(w, &err);
    if (!ok) fprintf(stderr, "write %s: %s\n", path.c_str(), err.msg);
    gguf_writer_free(w);
    return ok;
}

/* A model split into 3 files: the tensors of parts 2 and 3 lie in their own mappings, and each
 * file's weights are a device region of their own; the logits are the single file's, bit for bit. */
static void check_split(const synth_config &c) {
    const std::string base = std::string("/tmp/lfm2c-cuda-emu-") + std::to_string(getpid()) + "-split";
    const std::string one = base + ".gguf";
    std::string part[3];
    for (int i = 0; i < 3; i++) part[i] = base + "-0000" + std::to_string(i + 1) + "-of-00003.gguf";
    lfm2c_error err = {};
    synth_params sp = {};
    sp.seed = 12;
    sp.n_threads = 1;
    bool ok = synth_write(&c, quant_ftype_find("q8_0"), &sp, one.c_str(), NULL, &err);
    gguf_file *g = ok ? gguf_open(one.c_str(), &err) : NULL;
    CHECK(g != NULL, "split: %s", err.msg);
    if (g) {
        const uint64_t n = g->n_tensors, a = n / 3, b = 2 * n / 3;
        ok = write_part(g, part[0], 0, 3, 0, a) && write_part(g, part[1], 1, 3, a, b) &&
             write_part(g, part[2], 2, 3, b, n);
        gguf_close(g);
        CHECK(ok, "writing the parts");
        lfm2c_model *m1 = ok ? open_emu(one, true) : NULL, *m3 = ok ? open_emu(part[0], true) : NULL;
        if (m1 && m3) {
            const std::vector<int32_t> ids = prompt(lfm2c_model_get_info(m1)->n_vocab);
            const std::vector<float> l1 = all_logits(m1, ids, false), l3 = all_logits(m3, ids, false);
            const double d = maxabs(l1.data(), l3.data(), l1.size());
            CHECK(d == 0, "split model: logits differ from the single file's by %g", d);
            printf("split   q8_0    3 files: logits as the single file's (max diff %g)\n", d);
        }
        lfm2c_model_free(m1);
        lfm2c_model_free(m3);
    }
    unlink(one.c_str());
    for (auto &p : part) unlink(p.c_str());
}

/* 20 sessions, some holding a prefix already, every row of the rest in one lfm2c_decode_batch:
 * more than a forward's 512 tokens (two forwards, the scratch at its largest), each row as the
 * reference's solo prompt gave it. */
static void check_many_sessions(const synth_config &c) {
    const std::string path = synth_tmp(c, "many", "q4_k_m", 13);
    const bool ok = !path.empty();
    lfm2c_error err = {};
    lfm2c_model *ref = ok ? open_ref(path) : NULL, *m = ok ? open_emu(path, true) : NULL;
    if (ref && m) {
        const int n = 30, NS = 20, V = lfm2c_model_get_info(m)->n_vocab;
        std::vector<int32_t> ids(n);
        for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 3) % V);
        const std::vector<float> r = all_logits(ref, ids, false);
        std::vector<lfm2c_session *> ss(NS);
        std::vector<const int32_t *> tk(NS);
        std::vector<int> nn(NS), modes(NS, LFM2C_LOGITS_ALL);
        int rc = 0, total = 0;
        for (int i = 0; i < NS; i++) {
            ss[i] = lfm2c_session_new(m, 64, &err);
            const int pre = i % 3 == 0 ? 7 : 0;
            if (pre && !rc) rc = lfm2c_session_decode(ss[i], ids.data(), pre, LFM2C_LOGITS_NONE, &err);
            tk[i] = ids.data() + pre;
            nn[i] = n - pre;
            total += nn[i];
        }
        if (!rc) rc = lfm2c_decode_batch(ss.data(), tk.data(), nn.data(), modes.data(), NS, &err);
        CHECK(rc == 0 && total > 512, "batch of %d tokens: %s", total, err.msg);
        double worst = rc ? INFINITY : 0;
        for (int i = 0; i < NS && !rc; i++)
            for (int j = 0; j < nn[i]; j++)
                worst = fmax(worst, maxabs(lfm2c_session_logits(ss[i], j), &r[(size_t)(n - nn[i] + j) * V], V));
        const double lim = 1e-3 * fmax(1.0, maxval(r));
        CHECK(worst <= lim, "%d sessions, %d tokens in one batch: %g from the solo prompt", NS, total, worst);
        printf("many    q4_k_m  %d sessions, %d tokens in one batch: %.1e\n", NS, total, worst);
        for (auto s : ss) lfm2c_session_free(s);
    }
    lfm2c_model_free(ref);
    lfm2c_model_free(m);
    unlink(path.c_str());
}

/* A KV cache type the backend does not keep (q8_0) is refused at load, saying so. */
static void check_kv_refused(const synth_config &c) {
    const std::string path = synth_tmp(c, "kvq8", "q8_0", 14);
    const bool ok = !path.empty();
    lfm2c_error err = {};
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 1;
    p.hugepages = LFM2C_HUGEPAGES_OFF;
    p.type_k = LFM2C_KV_Q8_0;
    lfm2c_model *m = ok ? lfm2c_model_open(path.c_str(), &p, &err) : NULL;
    if (m) {
        m->backend->model_free(m);
        m->backend = NULL;
        memset(&err, 0, sizeof err);
        const int rc = emu::emu_backend_cuda.model_init(m, NULL, &err);
        CHECK(rc != 0 && strstr(err.msg, "f16 or f32") && strstr(err.msg, "q8_0"), "a q8_0 KV cache: %d %s", rc,
              err.msg);
        if (!rc) emu::emu_backend_cuda.model_free(m);
        lfm2c_model_free(m);
    }
    unlink(path.c_str());
}

/* A weight type the CUDA kernels do not take (the importance-matrix types: their rows in the type
 * table have no CUDA bit) is refused at load by name, saying which backends run it. */
static void check_iq_refused(void) {
    lfm2c_error err = {};
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 1;
    p.hugepages = LFM2C_HUGEPAGES_OFF;
    lfm2c_model *m = lfm2c_model_open(DATA("iq/lfm2-iq-dense.gguf"), &p, &err);
    CHECK(m != NULL, "the IQ fixture on the CPU: %s", err.msg);
    if (!m) return;
    m->backend->model_free(m);
    m->backend = NULL;
    memset(&err, 0, sizeof err);
    const int rc = emu::emu_backend_cuda.model_init(m, NULL, &err);
    const char *want = "CUDA backend: tensor 'blk.0.shortconv.in_proj.weight' (IQ1_S, 256 wide) is not supported "
                       "(IQ1_S runs on: cpu";
    CHECK(rc != 0 && err.code == LFM2C_EUNSUPPORTED && strstr(err.msg, want), "an IQ1_S matrix: %d %s", rc, err.msg);
    printf("refused: %s\n", err.msg);
    if (!rc) emu::emu_backend_cuda.model_free(m);
    lfm2c_model_free(m);
}

/* The warp router and plan (route_warp_kernel, plan_warp_kernel) against the serial ones, which
 * run cm_route / cm_plan_tiles as the host tests check them: the same experts, weights, counts
 * and tiles, bit for bit, with ties among the scores and experts no token chose. */
static void check_route_plan(void) {
    const int shapes[][3] = {{5, 64, 4}, {7, 40, 6}, {3, 256, 8}, {9, 8, 2}, {2, 33, 16}};   /* T, E, k */
    uint64_t rng = 7;
    for (const auto &sh : shapes) {
        const int T = sh[0], E = sh[1], k = sh[2];
        std::vector<float> logits((size_t)T * E), bias(E);
        for (auto &v : logits) v = (float)((int)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 59) - 16) / 8;
        for (auto &v : bias) v = (float)((int)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 61)) / 64;
        for (int b = 0; b < 2; b++) {
            const float *bp = b ? bias.data() : nullptr;
            std::vector<int> sel[2], count[2];
            std::vector<float> w[2];
            for (int v = 0; v < 2; v++) {
                sel[v].assign((size_t)T * k, -1), w[v].assign((size_t)T * k, -1), count[v].assign(E, 0);
                if (v) emu_launch(&emu::route_warp_kernel, (T + 3) / 4, 128)(logits.data(), bp, T, E, k, sel[v].data(), w[v].data(), count[v].data());
                else emu_launch(&emu::route_kernel, 1, 64)(logits.data(), bp, T, E, k, sel[v].data(), w[v].data(), count[v].data());
            }
            CHECK(sel[0] == sel[1] && count[0] == count[1] && !memcmp(w[0].data(), w[1].data(), sizeof(float) * w[0].size()),
                  "route T %d E %d k %d bias %d: the warp router differs from cm_route", T, E, k, b);
            for (int width : {1, 8, 32}) {
                const size_t tiles = (size_t)T * k + E;
                std::vector<int> out[2];
                for (int v = 0; v < 2; v++) {
                    out[v].assign(3 * tiles + 2 * (E + 1) + 1, -7);
                    int *st = out[v].data(), *fill = st + E + 1, *te = fill + E + 1, *tc = te + tiles, *tn = tc + tiles, *nt = tn + tiles;
                    if (v) emu_launch(&emu::plan_warp_kernel, 1, 32)(count[0].data(), E, width, st, fill, te, tc, tn, nt);
                    else emu_launch(&emu::plan_kernel, 1, 1)(count[0].data(), E, width, st, fill, te, tc, tn, nt);
                }
                CHECK(out[0] == out[1], "plan E %d width %d: the warp plan differs from cm_plan_tiles", E, width);
            }
        }
    }
    /* one token (the decode step): route1_kernel's routing, plan and scatter in one warp against
     * the serial router, plan and scatter with one-column tiles */
    for (const auto &sh : shapes) {
        const int E = sh[1], k = sh[2];
        std::vector<float> logits(E);
        for (auto &v : logits) v = (float)((int)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 59) - 16) / 8;
        std::vector<int> out[2];
        std::vector<float> w[2];
        for (int v = 0; v < 2; v++) {
            out[v].assign(6 * k + 3 * E + 2, -7), w[v].assign(k, -1);
            int *sel = out[v].data(), *te = sel + k, *tc = te + k, *tn = tc + k, *nt = tn + k, *cs = nt + 1, *inv = cs + k;
            int *count = inv + k, *start = count + E, *fill = start + E + 1;
            if (v) {
                emu_launch(&emu::route1_kernel, 1, 32)(logits.data(), emu::cu_route1{nullptr, E, k, sel, w[v].data(), te, tc, tn, nt, cs, inv});
            } else {
                for (int e = 0; e < E; e++) count[e] = 0;
                emu_launch(&emu::route_kernel, 1, 64)(logits.data(), nullptr, 1, E, k, sel, w[v].data(), count);
                emu_launch(&emu::plan_kernel, 1, 1)(count, E, 1, start, fill, te, tc, tn, nt);
                emu_launch(&emu::scatter_kernel, 1, 32)(sel, k, k, fill, cs, inv, (const float *)nullptr, (float *)nullptr);
                for (int i = 0; i < 3 * E + 1; i++) count[i] = -7;   /* scratch route1 does not write */
            }
        }
        CHECK(out[0] == out[1] && w[0] == w[1], "route1 E %d k %d: the one-token routing differs from the serial", E, k);
    }
    CHECK(cudaGetLastError() == cudaSuccess, "route / plan launches");
}

/* n_rows rows of nb random K-quant superblocks (Q4_K, Q5_K or Q6_K), their d (and dmin) finite
 * halves */
template <class Next>
static std::vector<uint8_t> random_kq_rows(uint32_t type, int nb, int n_rows, Next &next) {
    const bool q6 = type == GGML_Q6_K;
    const size_t bs = q6 ? sizeof(block_q6_K) : type == GGML_Q4_K ? sizeof(block_q4_K) : sizeof(block_q5_K);
    std::vector<uint8_t> w(bs * nb * n_rows);
    for (auto &b : w) b = (uint8_t)next();
    for (size_t i = 0; i < w.size(); i += bs) {
        const uint16_t d = (uint16_t)(0x1000 + next() % 0x1800), dm = (uint16_t)(0x1000 + next() % 0x1800);
        memcpy(&w[i + (q6 ? offsetof(block_q6_K, d) : 0)], &d, 2);
        if (!q6) memcpy(&w[i + 2], &dm, 2);
    }
    return w;
}

/* The Q4_K and Q6_K decode GEMVs (gemv_kq_kernel with q4k_lane / q6k_lane: 4
 * superblocks a step, two steps at once) against the scalar truth cm_dequant8 on rows of 1 to 9
 * superblocks (partial steps, lanes without a superblock), random quants, scales and halves, two
 * experts. */
static void check_gemv_kq(void) {
    uint64_t rng = 3;
    auto next = [&rng] { return (uint32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33); };
    for (uint32_t type : {(uint32_t)GGML_Q4_K, (uint32_t)GGML_Q6_K})
        for (int nb : {1, 3, 4, 6, 8, 9}) {
            const bool q6 = type == GGML_Q6_K;
            const int n = nb * QK_K, rows = 6, E = 2;
            const size_t bs = q6 ? sizeof(block_q6_K) : sizeof(block_q4_K), rb = (size_t)nb * bs;
            const std::vector<uint8_t> w = random_kq_rows(type, nb, rows * E, next);
            std::vector<float> x((size_t)n * 2), y((size_t)rows * 2, NAN);
            for (auto &v : x) v = (float)((int)(next() % 2001) - 1000) / 500;
            int te[2] = {1, 0}, tc[2] = {0, 1}, tn[2] = {1, 1}, nt = 2, src[2] = {1, 0};
            emu::mm_args a = {};
            a.w = w.data(), a.type = type, a.n = n, a.rows = rows, a.row_bytes = rb, a.expert_stride = rb * rows;
            a.x = x.data(), a.ldx = n, a.col_src = src, a.y = y.data(), a.ldy = rows, a.ncols = 2;
            a.tile_e = te, a.tile_c0 = tc, a.tile_n = tn, a.n_tiles = &nt, a.max_tiles = 2, a.tile_width = 1;
            emu::cu_matmul(nullptr, &a, true);
            CHECK(cudaGetLastError() == cudaSuccess, "gemv kq launch");
            double worst = 0;
            for (int col = 0; col < 2; col++)
                for (int r = 0; r < rows; r++) {
                    const uint8_t *row = w.data() + (size_t)te[col] * a.expert_stride + (size_t)r * rb;
                    const float *xr = x.data() + (size_t)src[col] * n;
                    double ref = 0, mag = 0;
                    for (int k0 = 0; k0 < n; k0 += 8) {
                        float wv[8];
                        emu::cm_dequant8(type, row, k0, wv);
                        for (int i = 0; i < 8; i++) ref += (double)wv[i] * xr[k0 + i], mag += fabs((double)wv[i] * xr[k0 + i]);
                    }
                    worst = fmax(worst, fabs(y[(size_t)col * rows + r] - ref) / (mag + 1e-30));
                }
            CHECK(worst <= 1e-6, "gemv %s, %d superblocks: relative error %g", q6 ? "q6_k" : "q4_k", nb, worst);
        }
}

/* Gate, up and SwiGLU in one launch (mm_args.w_up: gemv_kq_kernel<L, true>, gemv_kernel<T, 1,
 * true>) give the bits of the gate's and the up's products and swiglu_kernel after them: Q4_K and
 * Q6_K rows, grouped one-column tiles (two experts) and a dense single column. */
static void check_gemv_glu(void) {
    uint64_t rng = 9;
    auto next = [&rng] { return (uint32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33); };
    for (uint32_t type : {(uint32_t)GGML_Q4_K, (uint32_t)GGML_Q6_K})
        for (int grouped = 0; grouped < 2; grouped++) {
            const bool q6 = type == GGML_Q6_K;
            const int nb = 5, n = nb * QK_K, rows = 9, E = 2;
            const size_t bs = q6 ? sizeof(block_q6_K) : sizeof(block_q4_K), rb = (size_t)nb * bs;
            std::vector<uint8_t> wg = random_kq_rows(type, nb, rows * E, next), wu = random_kq_rows(type, nb, rows * E, next);
            std::vector<float> x((size_t)n * 2);
            for (auto &v : x) v = (float)((int)(next() % 2001) - 1000) / 700;
            const int ncols = grouped ? 2 : 1;
            std::vector<float> g((size_t)rows * ncols), u((size_t)rows * ncols), y((size_t)rows * ncols, NAN);
            int te[2] = {1, 0}, tc[2] = {0, 1}, tn[2] = {1, 1}, nt = 2, src[2] = {1, 0};
            emu::mm_args a = {};
            a.type = type, a.n = n, a.rows = rows, a.row_bytes = rb, a.expert_stride = rb * rows;
            a.x = x.data(), a.ldx = n, a.ldy = rows, a.ncols = ncols;
            if (grouped)
                a.col_src = src, a.tile_e = te, a.tile_c0 = tc, a.tile_n = tn, a.n_tiles = &nt, a.max_tiles = 2,
                a.tile_width = 1;
            CHECK(emu::cu_mm_one_column(&a, true), "one-column tiles");
            a.w = wg.data(), a.y = g.data();
            emu::cu_matmul(nullptr, &a, true);
            a.w = wu.data(), a.y = u.data();
            emu::cu_matmul(nullptr, &a, true);
            emu::cu_swiglu(nullptr, g.data(), u.data(), g.size());
            a.w = wg.data(), a.w_up = wu.data(), a.y = y.data();
            emu::cu_matmul(nullptr, &a, true);
            CHECK(cudaGetLastError() == cudaSuccess, "glu launch");
            CHECK(!memcmp(g.data(), y.data(), sizeof(float) * g.size()), "%s %s: gate+up+swiglu in one launch differs",
                  q6 ? "q6_k" : "q4_k", grouped ? "grouped" : "dense");
        }
    emu::mm_args wide = {}, grouped8 = {}, gemm = {};
    wide.ncols = 2, grouped8.tile_e = &wide.ncols, grouped8.tile_width = 8, gemm.ncols = 1;
    CHECK(!emu::cu_mm_one_column(&wide, true) && !emu::cu_mm_one_column(&grouped8, true) &&
              !emu::cu_mm_one_column(&gemm, false),
          "one-column tiles only for gemvs of one column");
}

/* The K-quant GEMM over the quants (gemm_kq_mma_kernel; Q4_K / Q5_K: mma.sync on sc q and x as
 * high and low halves, d, dmin m and the sums of x applied once a step; Q6_K: q - 32, d sc applied
 * per slice of 16; and Q4_K's gemm_q4k_reg_kernel, its default) against the scalar truth
 * cm_dequant8 in double: rows that do not fill the 64- or 128-row tile, 1 to 4 superblocks, grouped
 * tiles of 1, 7 and 32 columns (two experts, gathered columns) and a dense product of 40
 * columns (a partial second tile); random quants, scales and halves. */
static void check_gemm_kq(void) {
    uint64_t rng = 5;
    auto next = [&rng] { return (uint32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33); };
    for (uint32_t type : {(uint32_t)GGML_Q4_K, (uint32_t)GGML_Q5_K, (uint32_t)GGML_Q6_K})
        for (int nb : {1, 2, 4})
            for (int rows : {5, 64, 70, 150}) {
                const int n = nb * QK_K, E = 2, X = 48;
                const bool q6 = type == GGML_Q6_K;
                const size_t bs = q6 ? sizeof(block_q6_K) : type == GGML_Q4_K ? sizeof(block_q4_K) : sizeof(block_q5_K);
                const size_t rb = (size_t)nb * bs;
                const std::vector<uint8_t> w = random_kq_rows(type, nb, rows * E, next);
                std::vector<float> x((size_t)n * X);
                for (auto &v : x) v = (float)((int)(next() % 20001) - 10000) / 5000;
                std::vector<int> src(X);
                for (int i = 0; i < X; i++) src[i] = (i * 7 + 3) % X;
                /* grouped: expert 1 takes columns 0 (1 column) and 1..7; expert 0 columns 8..39 */
                int te[3] = {1, 1, 0}, tc[3] = {0, 1, 8}, tn[3] = {1, 7, 32}, nt = 3;
                for (int grouped = 0; grouped < 2; grouped++)
                for (int lo = 0; lo < 2; lo++)
                for (int reg = 0; reg < 1 + (type == GGML_Q4_K && lo); reg++) {
                    const int ncols = 40;
                    std::vector<float> y((size_t)rows * ncols, NAN);
                    emu::mm_args a = {};
                    a.w = w.data(), a.type = type, a.n = n, a.rows = rows, a.row_bytes = rb,
                    a.expert_stride = rb * rows;
                    a.x = x.data(), a.ldx = n, a.col_src = grouped ? src.data() : nullptr, a.y = y.data(), a.ldy = rows;
                    a.ncols = ncols, a.tc = true, a.kq_mma = true, a.x_lo = lo, a.kq_reg = reg;
                    if (grouped) a.tile_e = te, a.tile_c0 = tc, a.tile_n = tn, a.n_tiles = &nt, a.max_tiles = 3;
                    a.tile_width = emu::CU_GEMM_COLS;
                    emu::cu_matmul(nullptr, &a, false);
                    CHECK(cudaGetLastError() == cudaSuccess, "gemm kq launch");
                    double worst = 0;
                    for (int col = 0; col < ncols; col++) {
                        int e = 0;
                        for (int i = 0; grouped && i < nt; i++)
                            if (col >= tc[i] && col < tc[i] + tn[i]) e = te[i];
                        for (int r = 0; r < rows; r++) {
                            const uint8_t *row = w.data() + (size_t)e * a.expert_stride + (size_t)r * rb;
                            const float *xr = x.data() + (size_t)(grouped ? src[col] : col) * n;
                            double ref = 0, mag = 0;
                            for (int k0 = 0; k0 < n; k0 += 8) {
                                float wv[8];
                                emu::cm_dequant8(type, row, k0, wv);
                                for (int i = 0; i < 8; i++)
                                    ref += (double)wv[i] * xr[k0 + i], mag += fabs((double)wv[i] * xr[k0 + i]);
                            }
                            worst = fmax(worst, fabs(y[(size_t)col * rows + r] - ref) / (mag + 1e-30));
                        }
                    }
                    CHECK(worst <= (lo ? 2e-6 : 1e-3), "gemm %s%s, %d superblocks, %d rows, %s, x as %s: relative error %g",
                          type == GGML_Q4_K ? "q4_k" : type == GGML_Q5_K ? "q5_k" : "q6_k", reg ? " (weights into registers)" : "",
                          nb, rows, grouped ? "grouped" : "dense", lo ? "two halves" : "one half", worst);
                    /* x split into halves once (kq_prep_x_kernel) for every row tile: the same bits */
                    std::vector<uint32_t> xh((size_t)X * n / 2), xl((size_t)X * n / 2);
                    std::vector<float> xs((size_t)X * n / 32), y2(y.size(), NAN);
                    a.xh = xh.data(), a.xl = xl.data(), a.xs = xs.data(), a.xq_cap = (size_t)X * n, a.x_rows = X;
                    a.y = y2.data();
                    emu::cu_matmul(nullptr, &a, false);
                    CHECK(cudaGetLastError() == cudaSuccess, "gemm kq launch, x split once");
                    CHECK(!memcmp(y.data(), y2.data(), sizeof(float) * y.size()),
                          "gemm %s, %d superblocks, %d rows, %s: x split once differs from x split per tile",
                          type == GGML_Q4_K ? "q4_k" : type == GGML_Q5_K ? "q5_k" : "q6_k", nb, rows,
                          grouped ? "grouped" : "dense");
                }
            }
}

/* LFM2C_CUDA_MOE=grouped's epilogues, each against the products it replaces, bit for bit: Q4_K's
 * register GEMM with w_up (gate + up + SwiGLU in one launch) against the gate's and the up's
 * products and swiglu_kernel, over grouped tiles of 1, 7 and 32 columns of two experts, rows that
 * do not fill a block; a down product with y_scale against the plain one times the weights. */
static void check_glu_gemm(void) {
    uint64_t rng = 21;
    auto next = [&rng] { return (uint32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33); };
    for (int rows : {40, 64, 100}) {
        const int nb = 2, n = nb * QK_K, E = 2, X = 48, ncols = 40;
        const size_t rb = (size_t)nb * sizeof(block_q4_K);
        const std::vector<uint8_t> wg = random_kq_rows(GGML_Q4_K, nb, rows * E, next),
                                   wu = random_kq_rows(GGML_Q4_K, nb, rows * E, next);
        std::vector<float> x((size_t)n * X), scale(ncols);
        for (auto &v : x) v = (float)((int)(next() % 20001) - 10000) / 5000;
        for (auto &v : scale) v = (float)(next() % 1000) / 997.0f;
        std::vector<int> src(X);
        for (int i = 0; i < X; i++) src[i] = (i * 7 + 3) % X;
        int te[3] = {1, 1, 0}, tc[3] = {0, 1, 8}, tn[3] = {1, 7, 32}, nt = 3;
        std::vector<float> g((size_t)rows * ncols, NAN), u(g.size(), NAN), y(g.size(), NAN), d(g.size(), NAN);
        emu::mm_args a = {};
        a.type = GGML_Q4_K, a.n = n, a.rows = rows, a.row_bytes = rb, a.expert_stride = rb * rows;
        a.x = x.data(), a.ldx = n, a.col_src = src.data(), a.ldy = rows, a.ncols = ncols, a.tc = true, a.kq_mma = true;
        a.x_lo = true, a.kq_reg = true, a.tile_e = te, a.tile_c0 = tc, a.tile_n = tn, a.n_tiles = &nt, a.max_tiles = 3;
        a.tile_width = emu::CU_GEMM_COLS;
        CHECK(emu::cu_mm_glu_gemm(&a), "Q4_K's register GEMM takes w_up");
        a.w = wg.data(), a.y = g.data();
        emu::cu_matmul(nullptr, &a, false);
        a.w = wu.data(), a.y = u.data();
        emu::cu_matmul(nullptr, &a, false);
        emu::cu_swiglu(nullptr, g.data(), u.data(), g.size());
        a.w = wg.data(), a.w_up = wu.data(), a.y = y.data();
        emu::cu_matmul(nullptr, &a, false);
        CHECK(!memcmp(g.data(), y.data(), sizeof(float) * g.size()), "%d rows: gate + up + SwiGLU in one GEMM differs",
              rows);
        a.w_up = nullptr, a.w = wu.data(), a.y = d.data(), a.y_scale = scale.data();
        emu::cu_matmul(nullptr, &a, false);
        int bad = 0;
        for (int c = 0; c < ncols; c++)
            for (int r = 0; r < rows; r++) bad += d[(size_t)c * rows + r] != u[(size_t)c * rows + r] * scale[c];
        CHECK(bad == 0, "%d rows: %d outputs of the weighted product differ from the product times the weight", rows,
              bad);
        CHECK(cudaGetLastError() == cudaSuccess, "glu gemm launch");
    }
    emu::mm_args q6 = {};
    q6.type = GGML_Q6_K, q6.tc = q6.kq_mma = q6.x_lo = q6.kq_reg = true;
    CHECK(!emu::cu_mm_glu_gemm(&q6), "a type without the GLU GEMM runs three launches");
}

/* LFM2C_CUDA_MOE=grouped on an MoE model (Q4_K experts, a 12-token prompt: the GEMM tiles)
 * decodes the default's bits in fewer launches (no up product or SwiGLU of its own); a decode
 * step (the GEMVs) is left as it was. On a GPU the products may round once less where nvcc fuses
 * the combine's multiply-add (within float's rounding). */
static void check_moe_grouped(const synth_config &c) {
    const std::string path = synth_tmp(c, "moe-grouped", "q4_k_m", 17);
    if (path.empty()) return;
    lfm2c_model *def = open_emu(path, true);
    setenv("LFM2C_CUDA_MOE", "grouped", 1);
    lfm2c_model *grp = open_emu(path, true);
    unsetenv("LFM2C_CUDA_MOE");
    if (def && grp) {
        const std::vector<int32_t> ids = prompt(lfm2c_model_get_info(def)->n_vocab);
        const emu_rt::state &st = emu_rt::S();
        long l0 = st.launches;
        const std::vector<float> a = all_logits(def, ids, false);
        const long la = st.launches - l0;
        l0 = st.launches;
        const std::vector<float> b = all_logits(grp, ids, false);
        const long lb = st.launches - l0;
        const std::vector<float> a1 = all_logits(def, ids, true), b1 = all_logits(grp, ids, true);
        const double d = maxabs(a.data(), b.data(), a.size()), d1 = maxabs(a1.data(), b1.data(), a1.size());
        CHECK(d == 0 && d1 == 0 && lb < la, "LFM2C_CUDA_MOE=grouped: %g from the default (batch), %g (one by one), %ld "
              "launches against %ld", d, d1, lb, la);
        printf("moe     q4_k_m  LFM2C_CUDA_MOE=grouped: the default's bits (batch %g, decode %g) in %ld launches, not %ld\n",
               d, d1, lb, la);
    }
    lfm2c_model_free(def);
    lfm2c_model_free(grp);
    unlink(path.c_str());
}

/* The attention kernel on long caches (attention_kernel: each warp's positions ATT_UNROLL at a
 * pass, partial passes at the end) against softmax(q k / sqrt(hd)) v in double: tokens at
 * positions 0 to 200 over one float cache, two query heads a KV head, head sizes 64 and 80. */
static void check_attention_long(void) {
    uint64_t rng = 11;
    auto next = [&rng] { return (uint32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33); };
    for (int hd : {64, 80}) {
        const int nh = 4, nkv = 2, kvd = nkv * hd, cap = 256, T = 7;
        const int pos[T] = {0, 1, 63, 64, 65, 130, 200};
        std::vector<float> K((size_t)cap * kvd), V((size_t)cap * kvd), q((size_t)T * nh * hd), o((size_t)T * nh * hd);
        for (auto *vec : {&K, &V, &q})
            for (auto &x : *vec) x = (float)((int)(next() % 2001) - 1000) / 400;
        std::vector<emu::cu_tok> toks(T);
        for (int t = 0; t < T; t++) toks[t] = emu::cu_tok{K.data(), V.data(), nullptr, 0, pos[t], -1, cap};
        emu::cu_attention(nullptr, q.data(), toks.data(), T, nh, nkv, hd, 0, kvd, o.data(), 0);
        CHECK(cudaGetLastError() == cudaSuccess, "attention launch");
        double worst = 0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                const float *qh = q.data() + ((size_t)t * nh + h) * hd;
                const int g = h / (nh / nkv);
                std::vector<double> sc(pos[t] + 1), out(hd, 0.0);
                double mx = -1e300, sum = 0;
                for (int p = 0; p <= pos[t]; p++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += (double)qh[i] * K[(size_t)p * kvd + g * hd + i];
                    sc[p] = d / sqrt((double)hd);
                    mx = fmax(mx, sc[p]);
                }
                for (int p = 0; p <= pos[t]; p++) {
                    const double e = exp(sc[p] - mx);
                    sum += e;
                    for (int i = 0; i < hd; i++) out[i] += e * V[(size_t)p * kvd + g * hd + i];
                }
                for (int i = 0; i < hd; i++)
                    worst = fmax(worst, fabs(o[((size_t)t * nh + h) * hd + i] - out[i] / sum));
            }
        CHECK(worst <= 2e-5, "attention, head size %d, positions up to 200: max error %g", hd, worst);
    }
}

/* The attention of LFM2C_CUDA_ATTN=gqa (attention_gqa_kernel: a block per token, KV head and
 * split, each K and V row read once for the KV head's query heads; the splits merged by
 * attention_gqa_combine_kernel) against softmax(q k / sqrt(hd)) v in double, and against the
 * default kernel: 2, 3 and 4 query heads a KV head, head sizes 64 and 80, float and half caches,
 * positions 0 to 700 (partial passes, splits with no position), batches of 1, 5 (16 and 12 splits)
 * and 40 tokens (one split: the heads' outputs written by the block, positions below 100). */
static void check_attention_gqa(void) {
    uint64_t rng = 13;
    auto next = [&rng] { return (uint32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33); };
    const int shapes[][3] = {{4, 2, 64}, {6, 2, 80}, {8, 2, 64}}; /* nh, nkv, hd */
    double worst = 0, worst_def = 0;
    int zs[3] = {};
    for (const auto &sh : shapes)
        for (int kv = 0; kv < 2; kv++)
            for (int T : {1, 5, 40}) {
                const int nh = sh[0], nkv = sh[1], hd = sh[2], kvd = nkv * hd, cap = 704, G = nh / nkv;
                CHECK(emu::cu_attention_gqa_ok(nh, nkv, hd), "shape %d/%d/%d", nh, nkv, hd);
                std::vector<float> K((size_t)cap * kvd), V((size_t)cap * kvd), q((size_t)T * nh * hd);
                std::vector<float> o((size_t)T * nh * hd, NAN), od(o.size(), NAN);
                std::vector<float> part(emu::cu_attention_gqa_part(nh, hd), NAN);
                for (auto *vec : {&K, &V, &q})
                    for (auto &x : *vec) x = (float)((int)(next() % 2001) - 1000) / 400;
                std::vector<uint16_t> K16(K.size()), V16(V.size());
                for (size_t i = 0; i < K.size(); i++) { /* the half cache: its values as the kernel reads them */
                    K16[i] = (uint16_t)emu::cm_f2h(K[i]), V16[i] = (uint16_t)emu::cm_f2h(V[i]);
                    if (kv) K[i] = emu::cm_half(K16[i]), V[i] = emu::cm_half(V16[i]);
                }
                std::vector<emu::cu_tok> toks(T);
                for (int t = 0; t < T; t++) {
                    const int pos = T > 8 ? (int)(next() % 100) : t == 0 ? 700 : (int)(next() % 700);
                    toks[t] = emu::cu_tok{kv ? (void *)K16.data() : (void *)K.data(), kv ? (void *)V16.data() : (void *)V.data(),
                                          nullptr, 0, pos, -1, cap};
                }
                const int mode = kv ? 3 : 0;
                emu::cu_attention_gqa(nullptr, q.data(), toks.data(), T, nh, nkv, hd, 0, kvd, o.data(), mode, part.data());
                emu::cu_attention(nullptr, q.data(), toks.data(), T, nh, nkv, hd, 0, kvd, od.data(), mode);
                zs[T == 1 ? 0 : T == 5 ? 1 : 2] = emu::cu_attention_gqa_splits(T, nkv);
                CHECK(cudaGetLastError() == cudaSuccess, "gqa attention launch");
                for (int t = 0; t < T; t++)
                    for (int h = 0; h < nh; h++) {
                        const float *qh = q.data() + ((size_t)t * nh + h) * hd;
                        const int g = h / G, P = toks[t].pos;
                        std::vector<double> sc(P + 1), out(hd, 0.0);
                        double mx = -1e300, sum = 0;
                        for (int p = 0; p <= P; p++) {
                            double d = 0;
                            for (int i = 0; i < hd; i++) d += (double)qh[i] * K[(size_t)p * kvd + g * hd + i];
                            sc[p] = d / sqrt((double)hd), mx = fmax(mx, sc[p]);
                        }
                        for (int p = 0; p <= P; p++) {
                            const double e = exp(sc[p] - mx);
                            sum += e;
                            for (int i = 0; i < hd; i++) out[i] += e * V[(size_t)p * kvd + g * hd + i];
                        }
                        for (int i = 0; i < hd; i++) {
                            const size_t at = ((size_t)t * nh + h) * hd + i;
                            worst = fmax(worst, fabs(o[at] - out[i] / sum));
                            worst_def = fmax(worst_def, fabs(o[at] - od[at]));
                            if (!(o[at] == o[at])) worst = INFINITY;
                        }
                    }
            }
    CHECK(zs[0] == 16 && zs[1] == 12 && zs[2] == 1, "splits %d %d %d", zs[0], zs[1], zs[2]);
    CHECK(worst <= 2e-5 && worst_def <= 2e-5, "gqa attention: max error %g (reference), %g (default kernel)", worst,
          worst_def);
    printf("attention (LFM2C_CUDA_ATTN=gqa): within %.1e of the reference, %.1e of the default kernel, splits %d/%d/%d\n",
           worst, worst_def, zs[0], zs[1], zs[2]);
}

/* A synthetic model opened three ways: as the backend's defaults have it (or with var set to on,
 * where given), with the decode graph (a) and without (p), and with the variable var set to "0"
 * (b); the logits of a prompt decoded one token at a time each way, and the emulated launches
 * (all, and overlapping ones) of a and b. */
struct variant_run {
    bool ok = false;
    int n_tokens = 0, n_layer = 0, moe_layers = 0, conv_layers = 0; /* the prompt, the model's layers */
    std::vector<float> a, p, b;
    long launches_a = 0, launches_b = 0, pdl_a = 0, pdl_b = 0;
};
static variant_run run_variant(const synth_config &c, const char *name, const char *type, uint64_t seed,
                               const char *var, const char *on = nullptr) {
    variant_run r;
    const std::string path = synth_tmp(c, name, type, seed);
    if (path.empty()) return r;
    if (on) setenv(var, on, 1);
    lfm2c_model *def = open_emu(path, true), *def_p = open_emu(path, false);
    setenv(var, "0", 1);
    lfm2c_model *off = open_emu(path, true);
    unsetenv(var);
    if (def && def_p && off) {
        const std::vector<int32_t> ids = prompt(lfm2c_model_get_info(def)->n_vocab);
        const emu_rt::state &s = emu_rt::S();
        long l0 = s.launches, p0 = s.pdl_launches;
        r.b = all_logits(off, ids, true);
        r.launches_b = s.launches - l0, r.pdl_b = s.pdl_launches - p0;
        l0 = s.launches, p0 = s.pdl_launches;
        r.a = all_logits(def, ids, true);
        r.launches_a = s.launches - l0, r.pdl_a = s.pdl_launches - p0;
        r.p = all_logits(def_p, ids, true);
        r.n_tokens = (int)ids.size();
        const lfm2c_model_info *in = lfm2c_model_get_info(def);
        r.n_layer = in->n_layer;
        for (int l = 0; l < in->n_layer; l++) r.moe_layers += in->is_moe[l], r.conv_layers += !in->is_attention[l];
        r.ok = true;
    }
    lfm2c_model_free(def);
    lfm2c_model_free(def_p);
    lfm2c_model_free(off);
    unlink(path.c_str());
    return r;
}

/* r's three ways decode the same bits */
static void check_same_bits(const variant_run &r, const char *what) {
    CHECK(maxabs(r.a.data(), r.b.data(), r.a.size()) == 0 && maxabs(r.a.data(), r.p.data(), r.a.size()) == 0,
          "%s: logits differ (%g from the variable's, %g without the graph)", what,
          maxabs(r.a.data(), r.b.data(), r.a.size()), maxabs(r.a.data(), r.p.data(), r.a.size()));
}

/* LFM2C_CUDA_GRAPH_BUCKETS=1: decode-only steps of 3 and 9 sessions (the GEMVs, the GEMMs) replay
 * the graphs of 4 and 16 tokens (the rest pad tokens of the backend's own) and give the bits of
 * plain launches (LFM2C_CUDA_GRAPH=0), step after step (the sessions' positions move under the
 * same graphs), and no other bucket's graph is made. */
static void check_graph_buckets(const synth_config &c) {
    const std::string path = synth_tmp(c, "buckets", "q4_k_m", 23);
    if (path.empty()) return;
    setenv("LFM2C_CUDA_GRAPH_BUCKETS", "1", 1);
    lfm2c_model *bk = open_emu(path, true);
    unsetenv("LFM2C_CUDA_GRAPH_BUCKETS");
    lfm2c_model *pl = open_emu(path, false);
    if (bk && pl) {
        const int V = lfm2c_model_get_info(bk)->n_vocab;
        double worst = 0;
        for (int S : {3, 9}) {
            std::vector<lfm2c_session *> sb(S), sp(S);
            std::vector<int32_t> tok(S);
            std::vector<const int32_t *> tp(S);
            std::vector<int> n1(S, 1), modes(S, LFM2C_LOGITS_LAST);
            lfm2c_error err = {};
            for (int i = 0; i < S; i++) {
                sb[i] = lfm2c_session_new(bk, 32, &err), sp[i] = lfm2c_session_new(pl, 32, &err);
                tok[i] = (int32_t)((i * 53 + 11) % V), tp[i] = &tok[i];
            }
            int rc = 0;
            for (int step = 0; step < 2 && !rc; step++) {
                rc = lfm2c_decode_batch(sb.data(), tp.data(), n1.data(), modes.data(), S, &err);
                rc |= lfm2c_decode_batch(sp.data(), tp.data(), n1.data(), modes.data(), S, &err);
                for (int i = 0; i < S && !rc; i++) {
                    worst = fmax(worst, maxabs(lfm2c_session_logits(sb[i], 0), lfm2c_session_logits(sp[i], 0), V));
                    tok[i] = (int32_t)test_argmax(lfm2c_session_logits(sp[i], 0), V);
                }
            }
            CHECK(rc == 0, "bucketed decode: %s", err.msg);
            for (int i = 0; i < S; i++) lfm2c_session_free(sb[i]), lfm2c_session_free(sp[i]);
        }
        const emu::cu_model *cm = (const emu::cu_model *)bk->backend_state;
        CHECK(worst == 0 && cm->graph[2] && cm->graph[4] && !cm->graph[1] && !cm->graph[3],
              "graph buckets: %g from plain launches; graphs of 4, 16: %d %d", worst, cm->graph[2] != nullptr,
              cm->graph[4] != nullptr);
        printf("graph buckets: decode steps of 3, 9 sessions replayed as 4, 16: plain launches' bits (%g)\n", worst);
    }
    lfm2c_model_free(bk);
    lfm2c_model_free(pl);
    unlink(path.c_str());
}

/* LFM2C_CUDA_GLU=0 (a token's gate, up and SwiGLU as three launches) decodes the bits of the one
 * launch, with and without the decode graph. */
static void check_glu_model(const synth_config &c) {
    const variant_run r = run_variant(c, "glu", "q4_k_m", 6, "LFM2C_CUDA_GLU");
    if (r.ok) check_same_bits(r, "gate+up+swiglu in one launch against three");
}

/* LFM2C_CUDA_PROFILE=1: plain launches with an event after each stage; the logits stay those of
 * the plain launches, and the profile names the stages a forward ran. */
static void check_profile(const synth_config &c) {
    const std::string path = synth_tmp(c, "profile", "q4_k_m", 5);
    if (path.empty()) return;
    lfm2c_model *plain = open_emu(path, false);
    setenv("LFM2C_CUDA_PROFILE", "1", 1);
    lfm2c_model *prof = open_emu(path, true);
    unsetenv("LFM2C_CUDA_PROFILE");
    char text[4096] = "";
    if (plain && prof) {
        const std::vector<int32_t> ids = prompt(lfm2c_model_get_info(plain)->n_vocab);
        const std::vector<float> a = all_logits(plain, ids, true), b = all_logits(prof, ids, true);
        CHECK(maxabs(a.data(), b.data(), a.size()) == 0, "profiled logits differ from the plain launches'");
        CHECK(emu::emu_cuda_profile_text(prof, text, sizeof text) == 0, "no profile");
        CHECK(emu::emu_cuda_profile_text(plain, text + 2048, 64) == -1, "a profile without LFM2C_CUDA_PROFILE");
        char want[64];
        snprintf(want, sizeof want, "%d forwards", (int)ids.size());
        const char *stages[] = {want, "attention", "conv", "experts gate", "experts down", "route+plan", "ffn down",
                                "output proj"};
        for (const char *stage : stages)
            CHECK(strstr(text, stage), "the profile lacks '%s':\n%s", stage, text);
        const lfm2c_decode_profile dp = lfm2c_model_decode_profile(plain);
        CHECK(dp.device_passes == (long)ids.size() && dp.device_seconds > 0, "device time: %ld passes, %g s",
              dp.device_passes, dp.device_seconds);
        printf("profile (emulated, so only its shape means anything):\n%.400s...\n", text);
    }
    lfm2c_model_free(plain);
    lfm2c_model_free(prof);
    unlink(path.c_str());
}

/* Kernels that overlap the one before them (LFM2C_CUDA_PDL, on by default on compute capability
 * 9.0, which the emulation reports): most launches of a forward ask for it (not the first, after
 * the table's upload, a copy), every thread of those kernels calls pdl_ready() (the emulation
 * checks each), and LFM2C_CUDA_PDL=0 launches none of them, with the same logits. */
static void check_pdl_model(const synth_config &c) {
    const variant_run r = run_variant(c, "pdl", "q4_k_m", 8, "LFM2C_CUDA_PDL");
    if (!r.ok) return;
    CHECK(r.pdl_b == 0 && r.launches_b > 0, "LFM2C_CUDA_PDL=0: %ld overlapping launches", r.pdl_b);
    CHECK(r.pdl_a > r.launches_a / 2 && r.pdl_a < r.launches_a, "%ld of %ld launches overlap the one before", r.pdl_a,
          r.launches_a);
    check_same_bits(r, "overlapping launches");
}

/* A decode step's residual add and norm, its routing and its conv as kernels of their own (the
 * default, and LFM2C_CUDA_FUSE=0) decode the bits of those done by the last block of the product
 * before them (LFM2C_CUDA_FUSE=1, gemv_finish: the same block size, the same sums), dense layers
 * and MoE, with and without the decode graph, each launch's block count back at 0 for the next;
 * and with only some of them fused (LFM2C_CUDA_FUSE=route,conv). */
static void check_fin_model(const synth_config &c, const char *type) {
    const variant_run r = run_variant(c, "fin", type, 9, "LFM2C_CUDA_FUSE", "1");
    if (!r.ok) return;
    /* each token: two add + norm kernels a layer, a routing an MoE layer, a conv a conv layer */
    CHECK(r.launches_b - r.launches_a == (long)r.n_tokens * (r.n_layer * 2 + r.moe_layers + r.conv_layers),
          "%s: %ld launches apart, %ld in the products", type, r.launches_b, r.launches_a);
    check_same_bits(r, "add + norm, routing and conv in the products' last blocks");
    /* a list: the routing and the conv fused, the add + norm kernels kept */
    const variant_run p = run_variant(c, "finrc", type, 9, "LFM2C_CUDA_FUSE", "route,conv");
    if (!p.ok) return;
    CHECK(p.launches_b - p.launches_a == (long)p.n_tokens * (p.moe_layers + p.conv_layers),
          "%s, route,conv: %ld launches apart, %ld in the products", type, p.launches_b, p.launches_a);
    check_same_bits(p, "routing and conv in the products' last blocks");
}

/* a sampler's filter: only even tokens (a hook: the host samples its item) */
static void even_filter(void *, float *l, int V) {
    for (int i = 1; i < V; i += 2) l[i] = -INFINITY;
}

/* decode_batch_sample on the emulated device with LFM2C_CUDA_SAMPLE=1 draws the tokens the host
 * draws from the same backend's logits (a second model without it), step after step of 6
 * sessions: greedy, temperatures with top-k / top-p / min-p and penalties, a logit bias, a mask,
 * logprobs; one sampler with a filter hook (sampled on the host, its logits row copied) and one
 * past SMP_KMAX candidates (handed back) in the same batches. */
static void check_device_sampling(synth_config c) {
    c.vocab = 1500; /* past SMP_KMAX: top-k off hands the row back */
    const std::string path = synth_tmp(c, "sample", "q8_0", 5);
    if (path.empty()) return;
    setenv("LFM2C_CUDA_SAMPLE", "1", 1);
    lfm2c_model *dev = open_emu(path, true);
    unsetenv("LFM2C_CUDA_SAMPLE");
    lfm2c_model *host = open_emu(path, true);
    if (!dev || !host) return;
    const int V = lfm2c_model_get_info(dev)->n_vocab, S = 6, STEPS = 5;
    std::vector<float> bias(V, 0.0f);
    bias[3] = 4.0f, bias[5] = -INFINITY;
    std::vector<uint32_t> mask((V + 31) / 32, 0x0F0F0F0Fu);
    lfm2c_session *sd[S], *sh[S];
    lfm2c_sampler *md[S], *mh[S];
    sample_item id[S], ih[S];
    int32_t next_d[S], next_h[S];
    const int32_t *td[S], *th[S];
    int nd[S], nh[S], draws = 0, equal = 0;
    lfm2c_error err = {};
    for (int i = 0; i < S; i++) {
        lfm2c_sampler_params p = lfm2c_sampler_default_params();
        p.temperature = i == 0 ? 0.0f : 0.3f * i, p.top_k = i == 5 ? 0 : 10 * i, p.top_p = i == 3 ? 0.8f : 1.0f;
        p.min_p = i == 4 ? 0.05f : 0.0f, p.presence_penalty = i == 2 ? 0.7f : 0.0f, p.seed = 100 + i;
        for (int k = 0; k < 2; k++) {
            (k ? sh : sd)[i] = lfm2c_session_new(k ? host : dev, 64, &err);
            lfm2c_sampler *m = (k ? mh : md)[i] = lfm2c_sampler_new(&p, V);
            if (i == 1) lfm2c_sampler_set_logit_bias(m, bias.data());
            if (i == 4) lfm2c_sampler_set_filter(m, even_filter, NULL);
            (k ? ih : id)[i] = sample_item{m, i == 3 ? mask.data() : NULL, i == 2 ? 3 : -1, {}};
        }
    }
    const std::vector<int32_t> ids = prompt(V);
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < S; i++) {
            td[i] = step ? &next_d[i] : ids.data() + i, th[i] = step ? &next_h[i] : ids.data() + i;
            nd[i] = nh[i] = step ? 1 : N - i;
        }
        int rc = decode_batch_sample(sd, td, nd, id, S, &err);
        CHECK(rc == 0, "device-sampled batch: %s", err.msg);
        rc |= decode_batch_sample(sh, th, nh, ih, S, &err);
        if (rc) break;
        for (int i = 0; i < S; i++) {
            CHECK(id[i].out.token == ih[i].out.token && id[i].out.status == ih[i].out.status,
                  "step %d session %d: device %d (status %d), host %d", step, i, id[i].out.token, id[i].out.status,
                  ih[i].out.token);
            equal += id[i].out.token == ih[i].out.token;
            draws += id[i].out.drew;
            if (i == 2) {
                CHECK(fabs(id[i].out.logprob - ih[i].out.logprob) <= 1e-5 && id[i].out.n_top == 3, "logprob");
                for (int j = 0; j < 3; j++) CHECK(id[i].out.top_token[j] == ih[i].out.top_token[j], "top %d", j);
            }
            CHECK(i != 3 || (mask[id[i].out.token >> 5] >> (id[i].out.token & 31) & 1), "masked token drawn");
            CHECK(i != 4 || id[i].out.token % 2 == 0, "the filter's odd token drawn");
            /* a row sampled on the device never reached the host: the session has none */
            CHECK((lfm2c_session_logits(sd[i], 0) == NULL) == (id[i].out.drew || i == 0), "session %d's logits row", i);
            next_d[i] = id[i].out.token >= 0 ? id[i].out.token : 0, next_h[i] = ih[i].out.token >= 0 ? ih[i].out.token : 0;
        }
    }
    CHECK(draws >= 3 * STEPS && equal == S * STEPS, "%d device draws, %d of %d equal", draws, equal, S * STEPS);
    for (int i = 0; i < S; i++) {
        lfm2c_session_free(sd[i]), lfm2c_session_free(sh[i]);
        lfm2c_sampler_free(md[i]), lfm2c_sampler_free(mh[i]);
    }
    lfm2c_model_free(dev), lfm2c_model_free(host);
    unlink(path.c_str());
}

#ifdef LFM2C_HAVE_SERVER
/* requests of the serving scheduler, one of each kind: greedy with top logprobs, seeded draws
 * (top-k; top-p with a presence penalty), greedy with a logit bias that bans every end */
static std::vector<sched_req *> sched_mix(const lfm2c_model *m) {
    const int V = lfm2c_model_get_info(m)->n_vocab;
    std::vector<sched_req *> rs;
    for (int i = 0; i < 4; i++) {
        sched_req *r = sched_req_new();
        r->n_prompt = 6 + i;
        r->prompt = (int32_t *)malloc(sizeof(int32_t) * r->n_prompt);
        for (int j = 0; j < r->n_prompt; j++) r->prompt[j] = (int32_t)((j * 89 + i * 31 + 5) % V);
        r->max_tokens = 8;
        r->sampling.temperature = i == 1 ? 0.7f : i == 2 ? 0.9f : 0.0f;
        r->sampling.top_k = i == 1 ? 20 : 0, r->sampling.top_p = i == 2 ? 0.9f : 1.0f;
        r->sampling.presence_penalty = i == 2 ? 0.5f : 0.0f, r->sampling.seed = 40 + i;
        r->n_logprobs = i == 0 ? 3 : 0; /* every token recorded (the comparison's), request 0 with 3 best */
        if (i == 3) { /* toward token 300, away from every end (it runs to max_tokens) */
            r->logit_bias = (float *)calloc(V, sizeof(float));
            for (int t = 0; t < V; t++) r->logit_bias[t] = lfm2c_token_is_eog(m, t) ? -INFINITY : 0.0f;
            r->logit_bias[300] = 3.0f;
        }
        rs.push_back(r);
    }
    return rs;
}

/* The serving scheduler with a token budget on the emulated device with LFM2C_CUDA_SAMPLE=1
 * (its decode rows drawn there, through decode_batch_sample_items) against the same requests on
 * a second model without it (drawn on the host): the same tokens, logprobs within 1e-5 (the host's
 * log-sum-exp is a double sum in another order), the rows actually drawn on the device. */
static void check_sched_sampling(const synth_config &c) {
    const std::string path = synth_tmp(c, "sched", "q8_0", 6);
    if (path.empty()) return;
    setenv("LFM2C_CUDA_SAMPLE", "1", 1);
    lfm2c_model *dev = open_emu(path, true);
    unsetenv("LFM2C_CUDA_SAMPLE");
    lfm2c_model *host = open_emu(path, true);
    std::vector<sched_req *> out[2];
    sched *ss[2] = {};
    for (int k = 0; k < 2 && dev && host; k++) {
        lfm2c_error err = {};
        sched_params p = {};
        p.n_slots = 4, p.n_ctx = 64, p.queue_max = 8, p.prefill_chunk = 64, p.token_budget = 16;
        sched *s = ss[k] = sched_new(k ? host : dev, &p, &err);
        CHECK(s != NULL, "sched_new: %s", err.msg);
        if (!s) break;
        out[k] = sched_mix(dev);
        CHECK(sched_submit_group(s, out[k].data(), (int)out[k].size()) == 0, "submit");
        sched_lock(s);
        for (sched_req *r : out[k])
            for (int w = 0; r->finish == FINISH_NONE && w < 600; w++) sched_wait(s, r, 100);
        sched_unlock(s);
    }
    const long taken = dev ? emu::cu_sampler_taken(((emu::cu_model *)dev->backend_state)->smp) : 0;
    int same = 0, lp_ok = 0, n = 0;
    for (size_t i = 0; i < out[0].size() && i < out[1].size(); i++) {
        const sched_req *a = out[0][i], *b = out[1][i];
        bool eq = a->n_generated == b->n_generated && a->n_generated > 0 && a->n_logprobs_out == b->n_logprobs_out;
        for (int t = 0; eq && t < a->n_logprobs_out; t++) {
            eq = a->logprobs[t].token == b->logprobs[t].token && a->logprobs[t].n_top == b->logprobs[t].n_top;
            lp_ok += fabs(a->logprobs[t].logprob - b->logprobs[t].logprob) <= 1e-5;
            for (int j = 0; eq && j < a->logprobs[t].n_top; j++)
                eq = a->logprobs[t].top_token[j] == b->logprobs[t].top_token[j];
        }
        eq = eq && a->n_text == b->n_text && !memcmp(a->text, b->text, a->n_text);
        if (!eq) {
            fprintf(stderr, "request %zu: device %d tokens (finish %d), host %d (finish %d):", i, a->n_generated,
                    a->finish, b->n_generated, b->finish);
            for (int t = 0; t < a->n_logprobs_out && t < b->n_logprobs_out; t++)
                fprintf(stderr, " %d/%d", a->logprobs[t].token, b->logprobs[t].token);
            fprintf(stderr, " text '%.*s' / '%.*s'\n", (int)a->n_text, a->text, (int)b->n_text, b->text);
        }
        same += eq, n++;
    }
    int n_lp = 0;
    for (size_t i = 0; i < out[0].size(); i++) n_lp += out[0][i]->n_logprobs_out;
    CHECK(n == 4 && same == n && lp_ok == n_lp && taken >= 4,
          "scheduler: %d of %d requests as on the host, logprobs %d within 1e-5, %ld rows drawn on the device", same, n,
          lp_ok, taken);
    printf("scheduler with LFM2C_CUDA_SAMPLE=1: %d of %d requests as the host's, %ld rows drawn on the device\n", same,
           n, taken);
    for (int k = 0; k < 2; k++) {
        for (sched_req *r : out[k]) sched_release(ss[k], r);
        sched_free(ss[k]);
    }
    lfm2c_model_free(dev), lfm2c_model_free(host);
    unlink(path.c_str());
}
#endif

/* a kernel that forgets pdl_ready() */
static void no_ready_kernel(float *x) { x[threadIdx.x] = 1; }

/* The emulated runtime itself: a launch configuration a GPU refuses is an error, not a run; a
 * thread of an overlapping launch that ends without pdl_ready() is a device-side error. */
static void check_launch_errors(void) {
    cudaGetLastError();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[8] = {1, 1, 1, 1, 1, 1, 1, 1}, y[8];
    emu::cu_add_rmsnorm(nullptr, x, nullptr, w, y, 1, 8, 0.0f, nullptr);
    double ss = 0;
    for (float v : x) ss += (double)v * v;
    CHECK(cudaGetLastError() == cudaSuccess && fabs(y[7] - 8 / sqrt(ss / 8)) < 1e-5, "emulated rmsnorm");
    emu_launch(&emu::swiglu_kernel, dim3(1, 70000), 32)(x, w, (size_t)8);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y > 65535 must fail");
    emu_launch(&emu::swiglu_kernel, 1, 2048)(x, w, (size_t)8);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads must fail");
    emu_rt::state &s = emu_rt::S();
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    for (unsigned n_at = 0; n_at < 2; n_at++) {
        const cudaLaunchConfig_t cfg = {dim3(1), dim3(8), 0, nullptr, at, n_at};
        const long e0 = s.errors;
        cudaLaunchKernelEx(&cfg, &no_ready_kernel, x);
        CHECK(s.errors - e0 == (n_at ? 8 : 0) && x[7] == 1, "no pdl_ready(): %ld errors, %s overlapping",
              s.errors - e0, n_at ? "" : "not");
        s.errors = e0;
        if (!e0) s.first_error[0] = 0;
    }
}

/* ---- the batched products through cuBLASLt (LFM2C_CUDA_BLAS=1, blas.cu) -------------------- */

/* A BF16 matrix of r x c at leading dimension ld, in device memory, of small dyadic values
 * (exact in BF16, their products and sums exact in float): element (i, j) at i + j ld. */
static uint16_t *lt_matrix(int r, int c, int ld, int seed, std::vector<float> &host) {
    host.assign((size_t)ld * c, 0.0f);
    std::vector<uint16_t> bits((size_t)ld * c, 0);
    for (int j = 0; j < c; j++)
        for (int i = 0; i < r; i++) {
            const float v = (float)(((i * 7 + j * 3 + seed) % 9) - 4) / 8.0f;
            host[(size_t)i + (size_t)j * ld] = v;
            bits[(size_t)i + (size_t)j * ld] = f32_to_bf16(v);
        }
    void *d = nullptr;
    cudaMalloc(&d, bits.size() * 2);
    cudaMemcpy(d, bits.data(), bits.size() * 2, cudaMemcpyHostToDevice);
    return (uint16_t *)d;
}

/* one product through the stand-in: its status, after a heuristic told alignment `al` */
static cublasStatus_t lt_run(cublasOperation_t ta, cublasOperation_t tb, uint64_t ar, uint64_t ac, int64_t lda,
                             uint64_t br, uint64_t bc, int64_t ldb, uint64_t m, uint64_t n, int64_t ldc,
                             cudaDataType_t t, const void *A, const void *B, float *C, uint32_t al, float alpha,
                             float beta) {
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulPreference_t pref;
    cublasLtCreate(&lt);
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatrixLayoutCreate(&la, t, ar, ac, lda);
    cublasLtMatrixLayoutCreate(&lb, t, br, bc, ldb);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, ldc);
    cublasLtMatmulPreferenceCreate(&pref);
    for (int i = 0; i < 4; i++)
        cublasLtMatmulPreferenceSetAttribute(
            pref, (cublasLtMatmulPreferenceAttributes_t)(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i), &al, 4);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &res, &found);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmul(lt, op, &alpha, A, la, B, lb, &beta, C, lc, C, lc, &res.algo, nullptr, 0, nullptr);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    cublasLtDestroy(lt);
    return st;
}

/* The stand-in (tests/cuda/emu/cublasLt.h) computes D = alpha op(A) op(B) + beta C for each
 * transpose pair at leading dimensions past the rows, exactly on exact values; and refuses what
 * cuBLASLt does: a leading dimension under the rows, shapes that do not chain, a host pointer, a
 * pointer less aligned than the heuristic was told, F16 into F32. */
static void check_lt_standin(void) {
    const int m = 5, k = 7, n = 3;
    int bad = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            std::vector<float> ha, hb;
            const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n, ldc = m + 1;
            uint16_t *A = lt_matrix(ar, ac, ar + 2, 1, ha), *B = lt_matrix(br, bc, br + 1, 2, hb);
            std::vector<float> hc((size_t)ldc * n);
            for (size_t i = 0; i < hc.size(); i++) hc[i] = (float)(i % 5) - 2.0f;
            float *C = nullptr;
            cudaMalloc((void **)&C, hc.size() * 4);
            cudaMemcpy(C, hc.data(), hc.size() * 4, cudaMemcpyHostToDevice);
            const cublasStatus_t st =
                lt_run(ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ar, ac, ar + 2, br, bc, br + 1, m,
                       n, ldc, CUDA_R_16BF, A, B, C, 4, 0.5f, 2.0f);
            CHECK(st == CUBLAS_STATUS_SUCCESS, "stand-in product (transa %d, transb %d): status %d", ta, tb, st);
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++) {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                        s += (double)ha[ta ? p + (size_t)i * (ar + 2) : i + (size_t)p * (ar + 2)] *
                             hb[tb ? j + (size_t)p * (br + 1) : p + (size_t)j * (br + 1)];
                    bad += C[i + (size_t)j * ldc] != (float)(0.5 * s + 2.0 * hc[i + (size_t)j * ldc]);
                }
            bad += C[m] != hc[m]; /* the row past m in the leading dimension: untouched */
            if (ta == 0 && tb == 0) {
                CHECK(lt_run(CUBLAS_OP_N, CUBLAS_OP_N, m, k, m - 1, k, n, k + 1, m, n, ldc, CUDA_R_16BF, A, B, C, 4, 1,
                             0) == CUBLAS_STATUS_INVALID_VALUE,
                      "a leading dimension under the rows");
                CHECK(lt_run(CUBLAS_OP_N, CUBLAS_OP_N, m, k, m + 2, k - 1, n, k + 1, m, n, ldc, CUDA_R_16BF, A, B, C, 4,
                             1, 0) == CUBLAS_STATUS_INVALID_VALUE,
                      "shapes that do not chain");
                CHECK(lt_run(CUBLAS_OP_N, CUBLAS_OP_N, m, k, m + 2, k, n, k + 1, m, n, ldc, CUDA_R_16BF, A,
                             hb.data(), C, 4, 1, 0) == CUBLAS_STATUS_INVALID_VALUE,
                      "a host pointer");
                CHECK(lt_run(CUBLAS_OP_N, CUBLAS_OP_N, m, k, m + 2, k, n, k + 1, m, n, ldc, CUDA_R_16BF, A + 1, B, C, 4,
                             1, 0) == CUBLAS_STATUS_INVALID_VALUE,
                      "A less aligned than the heuristic was told");
                CHECK(lt_run(CUBLAS_OP_N, CUBLAS_OP_N, m, k, m + 2, k, n, k + 1, m, n, ldc, CUDA_R_16F, A, B, C, 4, 1,
                             0) == CUBLAS_STATUS_NOT_SUPPORTED,
                      "F16 into F32");
            }
            cudaFree(A), cudaFree(B), cudaFree(C);
        }
    CHECK(bad == 0, "stand-in products: %d values differ from alpha op(A) op(B) + beta C", bad);
}

/* LFM2C_CUDA_BLAS=1: a prompt of N_BLAS tokens in one forward runs every non-expert linear and
 * the head through cuBLASLt (its calls counted: one each) and gives the default path's logits
 * within BF16's tolerance (every row within BLAS_TOL of the largest logit, the same best token on
 * 9 rows in 10); one token at a time, and a batch of CU_BLAS_MIN_COLS - 1 tokens, never take it
 * and decode the default's bits. An MoE model is checked with every expert used: where a token
 * chooses k of E, BF16's rounding flips the choice between nearly tied experts on some tokens
 * (a jump of up to ~25% of the largest logit on a tenth of the rows of a 70-token prompt, and on
 * the rows after them), which bounds nothing about the products. */
enum { N_BLAS = 70 };
static const double BLAS_TOL = 0.03;
static void check_blas(const synth_config &c, const char *type) {
    const std::string path = synth_tmp(c, std::string("blas-") + type, type, 13);
    if (path.empty()) return;
    lfm2c_model *def = open_emu(path, true);
    setenv("LFM2C_CUDA_BLAS", "1", 1);
    lfm2c_model *bl = open_emu(path, true);
    unsetenv("LFM2C_CUDA_BLAS");
    emu::cu_blas *b = bl ? ((emu::cu_model *)bl->backend_state)->blas : nullptr;
    CHECK(!def || ((emu::cu_model *)def->backend_state)->blas == nullptr, "%s: copies without the switch", type);
    CHECK(b != nullptr, "%s: LFM2C_CUDA_BLAS=1 made no copies", type);
    if (def && b) {
        const int V = lfm2c_model_get_info(def)->n_vocab, saved = N;
        N = N_BLAS;
        const std::vector<int32_t> ids = prompt(V);
        N = saved;
        const std::vector<float> a = all_logits(def, ids, false), x = all_logits(bl, ids, false);
        const long calls = emu::cu_blas_calls(b);
        const lfm2c_model_info *in = lfm2c_model_get_info(def);
        long want = 1; /* the head (every row's logits: 70 columns) */
        for (int l = 0; l < in->n_layer; l++) want += (in->is_attention[l] ? 4 : 2) + (in->is_moe[l] ? 0 : 3);
        double big = 0, d = 0;
        int same_top = 0, rows_ok = 0;
        for (size_t i = 0; i < a.size(); i++) big = fmax(big, fabs(a[i]));
        for (int t = 0; t < N_BLAS; t++) {
            const double dr = maxabs(&a[(size_t)t * V], &x[(size_t)t * V], V);
            same_top += test_argmax(&a[(size_t)t * V], V) == test_argmax(&x[(size_t)t * V], V);
            rows_ok += dr <= BLAS_TOL * big;
            d = fmax(d, dr);
        }
        CHECK(calls == want, "%s: %ld products through cuBLASLt, not the %ld linears and the head", type, calls, want);
        CHECK(rows_ok == N_BLAS && same_top >= N_BLAS * 9 / 10,
              "%s: BF16 products: %d of %d rows within %g of the largest logit (%g; max diff %g), the same best "
              "token on %d",
              type, rows_ok, N_BLAS, BLAS_TOL, big, d, same_top);
        printf("cuBLASLt BF16 products (%s): %ld products, %d of %d rows within %g of logits up to %.3g (max diff "
               "%.3g), best token kept on %d\n",
               type, calls, rows_ok, N_BLAS, BLAS_TOL, big, d, same_top);
        const std::vector<int32_t> few(ids.begin(), ids.begin() + emu::CU_BLAS_MIN_COLS - 1),
            dec(ids.begin(), ids.begin() + 8);
        const std::vector<float> fa = all_logits(def, few, false), fx = all_logits(bl, few, false);
        const std::vector<float> da = all_logits(def, dec, true), dx = all_logits(bl, dec, true);
        CHECK(maxabs(fa.data(), fx.data(), fa.size()) == 0 && maxabs(da.data(), dx.data(), da.size()) == 0 &&
                  emu::cu_blas_calls(b) == calls,
              "%s: below %d columns the products are the default's (diff %g batched, %g one by one, %ld calls)", type,
              (int)emu::CU_BLAS_MIN_COLS, maxabs(fa.data(), fx.data(), fa.size()),
              maxabs(da.data(), dx.data(), da.size()), emu::cu_blas_calls(b) - calls);
    }
    lfm2c_model_free(def);
    lfm2c_model_free(bl);
    unlink(path.c_str());
}

/* ---- the experts through cuBLAS's grouped GEMM (LFM2C_CUDA_MOE=cublas, blas_moe.cu) ---------- */

/* device pointers of count problems, in device memory (the call reads them there) */
static void **dev_ptr_array(const std::vector<void *> &p) {
    void **d = nullptr;
    cudaMalloc((void **)&d, sizeof(void *) * p.size());
    cudaMemcpy(d, p.data(), sizeof(void *) * p.size(), cudaMemcpyHostToDevice);
    return d;
}

/* The stand-in's cublasGemmGroupedBatchedEx (tests/cuda/emu/cublas_v2.h) against exact products:
 * two groups (op T x N of 3 problems, op N x N of 1), BF16 in and out, values exact in BF16 and
 * their sums too; and its refusals: a leading dimension under the rows, a negative group size,
 * BF16 into F32, the pointer arrays on the host (returned), a matrix on the host (a device-side
 * error when the call runs). */
static void check_grouped_standin(void) {
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    const int m[2] = {5, 4}, n[2] = {3, 2}, k[2] = {6, 7}, lda[2] = {6 + 1, 4 + 2}, ldb[2] = {6, 7 + 1},
              ldc[2] = {5 + 3, 4}, gs[2] = {3, 1};
    const cublasOperation_t ta[2] = {CUBLAS_OP_T, CUBLAS_OP_N}, tb[2] = {CUBLAS_OP_N, CUBLAS_OP_N};
    const float al[2] = {1.0f, 0.5f}, be[2] = {0.0f, 2.0f};
    std::vector<void *> A, B, C;
    std::vector<std::vector<float>> ha, hb, hc;
    for (int g = 0, i = 0; g < 2; g++)
        for (int j = 0; j < gs[g]; j++, i++) {
            const int ac = ta[g] == CUBLAS_OP_N ? k[g] : m[g], bc = n[g];
            std::vector<float> fa, fb, fc;
            A.push_back(lt_matrix(lda[g], ac, lda[g], 3 + i, fa)), B.push_back(lt_matrix(ldb[g], bc, ldb[g], 5 + i, fb));
            C.push_back(lt_matrix(ldc[g], n[g], ldc[g], 7 + i, fc));
            ha.push_back(fa), hb.push_back(fb), hc.push_back(fc);
        }
    void **dA = dev_ptr_array(A), **dB = dev_ptr_array(B), **dC = dev_ptr_array(C);
    cublasStatus_t st = cublasGemmGroupedBatchedEx(h, ta, tb, m, n, k, al, (const void *const *)dA, CUDA_R_16BF, lda,
                                                   (const void *const *)dB, CUDA_R_16BF, ldb, be, dC, CUDA_R_16BF, ldc,
                                                   2, gs, CUBLAS_COMPUTE_32F);
    CHECK(st == CUBLAS_STATUS_SUCCESS, "grouped call: status %d", st);
    int bad = 0;
    for (int g = 0, i = 0; g < 2; g++)
        for (int j = 0; j < gs[g]; j++, i++) {
            std::vector<uint16_t> out((size_t)ldc[g] * n[g]);
            cudaMemcpy(out.data(), C[i], out.size() * 2, cudaMemcpyDeviceToHost);
            for (int c = 0; c < n[g]; c++)
                for (int r = 0; r < m[g]; r++) {
                    double acc = 0;
                    for (int p = 0; p < k[g]; p++)
                        acc += (double)ha[i][ta[g] == CUBLAS_OP_N ? r + (size_t)p * lda[g] : p + (size_t)r * lda[g]] *
                               hb[i][p + (size_t)c * ldb[g]];
                    const float want = (float)(al[g] * acc + be[g] * hc[i][r + (size_t)c * ldc[g]]);
                    bad += emu::cm_bf16(out[r + (size_t)c * ldc[g]]) != emu::cm_bf16(emu::cm_f32_bf16(want));
                }
        }
    CHECK(bad == 0, "grouped products: %d values differ from alpha op(A) op(B) + beta C", bad);
    int bad_lda[2] = {m[0] - 1, lda[1]}, neg[2] = {-1, 1};
    CHECK(cublasGemmGroupedBatchedEx(h, ta, tb, m, n, k, al, (const void *const *)dA, CUDA_R_16BF, bad_lda,
                                     (const void *const *)dB, CUDA_R_16BF, ldb, be, dC, CUDA_R_16BF, ldc, 2, gs,
                                     CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_INVALID_VALUE,
          "a leading dimension under the rows");
    CHECK(cublasGemmGroupedBatchedEx(h, ta, tb, m, n, k, al, (const void *const *)dA, CUDA_R_16BF, lda,
                                     (const void *const *)dB, CUDA_R_16BF, ldb, be, dC, CUDA_R_16BF, ldc, 2, neg,
                                     CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_INVALID_VALUE,
          "a negative group size");
    CHECK(cublasGemmGroupedBatchedEx(h, ta, tb, m, n, k, al, (const void *const *)dA, CUDA_R_16BF, lda,
                                     (const void *const *)dB, CUDA_R_16BF, ldb, be, dC, CUDA_R_32F, ldc, 2, gs,
                                     CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_NOT_SUPPORTED,
          "BF16 into F32");
    CHECK(cublasGemmGroupedBatchedEx(h, ta, tb, m, n, k, al, (const void *const *)A.data(), CUDA_R_16BF, lda,
                                     (const void *const *)dB, CUDA_R_16BF, ldb, be, dC, CUDA_R_16BF, ldc, 2, gs,
                                     CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_INVALID_VALUE,
          "the pointer array on the host");
    emu_rt::state &es = emu_rt::S();
    const long e0 = es.errors;
    std::vector<float> host_c((size_t)ldc[0] * n[0]);
    std::vector<void *> C2 = C;
    C2[0] = host_c.data();
    void **dC2 = dev_ptr_array(C2);
    CHECK(cublasGemmGroupedBatchedEx(h, ta, tb, m, n, k, al, (const void *const *)dA, CUDA_R_16BF, lda,
                                     (const void *const *)dB, CUDA_R_16BF, ldb, be, dC2, CUDA_R_16BF, ldc, 2, gs,
                                     CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_SUCCESS &&
              es.errors == e0 + 1,
          "a matrix on the host: a device-side error when the call runs (%ld)", es.errors - e0);
    es.errors = e0;
    if (!e0) es.first_error[0] = 0;
    for (void *p : A) cudaFree(p);
    for (void *p : B) cudaFree(p);
    for (void *p : C) cudaFree(p);
    cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dC2);
    cublasDestroy(h);
}

/* LFM2C_CUDA_MOE=cublas on an MoE model whose tokens use every expert (no choice for BF16 to
 * flip): a 70-token prompt's logits within BLAS_TOL of the largest logit of the default's on every
 * row, the same best token on 9 rows in 10, two grouped calls an MoE layer; one token at a time
 * (the GEMVs) the default's bits. With the card's memory too small for the copies the memory
 * plan leaves them out: the open says so (cuda_backend_note) and decodes the default's bits. */
static void check_moe_cublas(const synth_config &c) {
    const std::string path = synth_tmp(c, "moe-cublas", "q8_0", 19);
    if (path.empty()) return;
    lfm2c_model *def = open_emu(path, true);
    setenv("LFM2C_CUDA_MOE", "cublas", 1);
    lfm2c_model *cb = open_emu(path, true);
    emu_rt::state &es = emu_rt::S();
    const size_t free0 = es.mem_free;
    es.mem_free = (size_t)1 << 20;
    lfm2c_model *small = open_emu(path, true);
    es.mem_free = free0;
    unsetenv("LFM2C_CUDA_MOE");
    emu::cu_moe_blas *b = cb ? ((emu::cu_model *)cb->backend_state)->moe_blas : nullptr;
    CHECK(b != nullptr, "LFM2C_CUDA_MOE=cublas made no copies");
    const char *note = small ? emu::emu_cuda_backend_note(small) : nullptr;
    CHECK(small && !((emu::cu_model *)small->backend_state)->moe_blas && note && strstr(note, "memory plan"),
          "a card too small: %s", note ? note : "(no note)");
    if (def && b && small) {
        const lfm2c_model_info *in = lfm2c_model_get_info(def);
        const int V = in->n_vocab, saved = N;
        N = N_BLAS;
        const std::vector<int32_t> ids = prompt(V);
        N = saved;
        const std::vector<float> a = all_logits(def, ids, false), x = all_logits(cb, ids, false);
        const std::vector<int32_t> ids12(ids.begin(), ids.begin() + 12);
        const std::vector<float> a12 = all_logits(def, ids12, false), y = all_logits(small, ids12, false);
        int moe_layers = 0, rows_ok = 0, same_top = 0;
        for (int l = 0; l < in->n_layer; l++) moe_layers += in->is_moe[l];
        double big = 0, d = 0;
        for (float v : a) big = fmax(big, fabs(v));
        for (int t = 0; t < N_BLAS; t++) {
            const double dr = maxabs(&a[(size_t)t * V], &x[(size_t)t * V], V);
            rows_ok += dr <= BLAS_TOL * big, d = fmax(d, dr);
            same_top += test_argmax(&a[(size_t)t * V], V) == test_argmax(&x[(size_t)t * V], V);
        }
        const long calls = emu::cu_moe_blas_calls(b);
        CHECK(calls == 2 * moe_layers && rows_ok == N_BLAS && same_top >= N_BLAS * 9 / 10,
              "cuBLAS experts: %ld calls for %d MoE layers, %d of %d rows within %g of %g (max diff %g), best token "
              "kept on %d",
              calls, moe_layers, rows_ok, N_BLAS, BLAS_TOL, big, d, same_top);
        CHECK(maxabs(a12.data(), y.data(), a12.size()) == 0, "without the copies: %g from the default",
              maxabs(a12.data(), y.data(), a12.size()));
        const std::vector<int32_t> dec(ids.begin(), ids.begin() + 8);
        const std::vector<float> da = all_logits(def, dec, true), dx = all_logits(cb, dec, true);
        CHECK(maxabs(da.data(), dx.data(), da.size()) == 0 && emu::cu_moe_blas_calls(b) == calls,
              "a decode step takes the GEMVs: %g", maxabs(da.data(), dx.data(), da.size()));
        printf("cuBLAS grouped experts (q8_0): %ld calls, %d of %d rows within %g of logits up to %.3g (max diff %.3g), "
               "best token kept on %d; a card too small: \"%s\"\n",
               calls, rows_ok, N_BLAS, BLAS_TOL, big, d, same_top, note);
    }
    lfm2c_model_free(def);
    lfm2c_model_free(cb);
    lfm2c_model_free(small);
    unlink(path.c_str());
}

/* LFM2C_CUDA_BF16=1 (docs/TESTING.md's tolerances): a forward of cu_bf16_cols() (64) tokens or more
 * runs the non-expert linears (cuBLASLt) and the experts (cuBLAS's grouped GEMM) on BF16 copies
 * with BF16 activations. Against the CPU --reference path, a 70-token prompt's rows within
 * BLAS_TOL of the largest logit and the same best token on 9 rows in 10; 6 sessions of 11 tokens
 * in one batch (66 columns: BF16) against each alone (11 columns: the kernels), the same bounds
 * (batched == solo within BF16's tolerance); with LFM2C_CUDA_BF16_COLS=100 that batch takes the
 * kernels: the default's bits. */
static void check_bf16(const synth_config &c) {
    const std::string path = synth_tmp(c, "bf16", "q8_0", 29);
    if (path.empty()) return;
    lfm2c_model *ref = open_ref(path), *def = open_emu(path, true);
    setenv("LFM2C_CUDA_BF16", "1", 1);
    lfm2c_model *bf = open_emu(path, true);
    setenv("LFM2C_CUDA_BF16_COLS", "100", 1);
    lfm2c_model *hi = open_emu(path, true);
    unsetenv("LFM2C_CUDA_BF16_COLS");
    unsetenv("LFM2C_CUDA_BF16");
    if (ref && def && bf && hi) {
        const int V = lfm2c_model_get_info(ref)->n_vocab, saved = N, S = 6, L = 11;
        N = N_BLAS;
        const std::vector<int32_t> ids = prompt(V);
        N = saved;
        const std::vector<float> r = all_logits(ref, ids, false), x = all_logits(bf, ids, false);
        double big = 0, d = 0;
        int ok = 0, top = 0;
        for (float v : r) big = fmax(big, fabs(v));
        for (int t = 0; t < N_BLAS; t++) {
            const double dr = maxabs(&r[(size_t)t * V], &x[(size_t)t * V], V);
            ok += dr <= BLAS_TOL * big, d = fmax(d, dr);
            top += test_argmax(&r[(size_t)t * V], V) == test_argmax(&x[(size_t)t * V], V);
        }
        CHECK(ok == N_BLAS && top >= N_BLAS * 9 / 10, "BF16 vs --reference: %d of %d rows within %g of %g (max %g), best "
              "token on %d", ok, N_BLAS, BLAS_TOL, big, d, top);
        /* batched == solo */
        lfm2c_error err = {};
        std::vector<lfm2c_session *> sb(S), sh(S), sd(S);
        std::vector<const int32_t *> tk(S);
        std::vector<int> nn(S, L), modes(S, LFM2C_LOGITS_ALL);
        int rc = 0, ok2 = 0, top2 = 0, same_hi = 1;
        double d2 = 0;
        for (int i = 0; i < S; i++) {
            sb[i] = lfm2c_session_new(bf, 32, &err), sh[i] = lfm2c_session_new(hi, 32, &err);
            sd[i] = lfm2c_session_new(def, 32, &err);
            tk[i] = ids.data() + 5 * i;
        }
        rc = lfm2c_decode_batch(sb.data(), tk.data(), nn.data(), modes.data(), S, &err);
        rc |= lfm2c_decode_batch(sh.data(), tk.data(), nn.data(), modes.data(), S, &err);
        rc |= lfm2c_decode_batch(sd.data(), tk.data(), nn.data(), modes.data(), S, &err);
        for (int i = 0; i < S && !rc; i++) {
            const std::vector<int32_t> one(tk[i], tk[i] + L);
            const std::vector<float> solo = all_logits(bf, one, false);
            for (int j = 0; j < L; j++) {
                const float *row = lfm2c_session_logits(sb[i], j);
                const double dr = maxabs(row, &solo[(size_t)j * V], V);
                ok2 += dr <= BLAS_TOL * big, d2 = fmax(d2, dr);
                top2 += test_argmax(row, V) == test_argmax(&solo[(size_t)j * V], V);
                same_hi &= maxabs(lfm2c_session_logits(sh[i], j), lfm2c_session_logits(sd[i], j), V) == 0;
            }
        }
        CHECK(rc == 0 && ok2 == S * L && top2 >= S * L * 9 / 10 && same_hi,
              "BF16 batched vs solo: %d of %d rows within %g (max %g), best token on %d; under the threshold as the "
              "default: %d (%s)", ok2, S * L, BLAS_TOL * big, d2, top2, same_hi, err.msg);
        printf("BF16 (LFM2C_CUDA_BF16=1): vs --reference %d of %d rows within %.3g (max %.3g), best token on %d; batched "
               "vs solo max %.3g, best token on %d of %d\n", ok, N_BLAS, BLAS_TOL * big, d, top, d2, top2, S * L);
        for (int i = 0; i < S; i++) lfm2c_session_free(sb[i]), lfm2c_session_free(sh[i]), lfm2c_session_free(sd[i]);
    }
    lfm2c_model_free(ref), lfm2c_model_free(def), lfm2c_model_free(bf), lfm2c_model_free(hi);
    unlink(path.c_str());
}

/* Each check's CPU seconds (what CI's time is made of), printed after it; LFM2C_EMU_ONLY=NAME,...
 * runs only the checks whose names are given (a developer's loop over one path). */
static bool emu_run(const char *name) {
    const char *only = getenv("LFM2C_EMU_ONLY");
    if (!only) return true;
    const size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
    return false;
}
#define RUN(name, ...)                                                                                              \
    do {                                                                                                            \
        if (emu_run(name)) {                                                                                        \
            const clock_t c0_ = clock();                                                                            \
            __VA_ARGS__;                                                                                            \
            printf("[%s: %.1f s]\n", name, (double)(clock() - c0_) / CLOCKS_PER_SEC);                               \
        }                                                                                                           \
    } while (0)

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    check_launch_errors();
    synth_config dense, moe;
    synth_preset("lfm2-350m", &dense);
    dense.hidden = 256;
    dense.n_layer = 4;
    dense.n_attn = 2;
    dense.attn_layers[0] = 1;
    dense.attn_layers[1] = 3;
    dense.n_head = 4;
    dense.n_head_kv = 2;
    dense.ff = 512;
    dense.vocab = 400;
    synth_preset("lfm2-8b-a1b", &moe);
    moe.hidden = 256;
    moe.n_layer = 4;
    moe.n_attn = 1;
    moe.attn_layers[0] = 2;
    moe.n_head = 4;
    moe.n_head_kv = 2;
    moe.ff = 512;
    moe.n_expert = 8;
    moe.n_expert_used = 2;
    moe.expert_ff = 256;
    moe.n_dense = 1;
    moe.vocab = 400;
    const char *types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"};
    /* without the fast fiber switch (not x86-64) a model takes ~10x longer: fewer of them */
    const int n_types = EMU_FAST_SWITCH ? (int)(sizeof types / sizeof *types) : 1;
    RUN("models", for (int i = 0; i < n_types; i++) {
        GRAPH_EACH = !strcmp(types[i], "f32") || !strcmp(types[i], "q4_k_m") || !strcmp(types[i], "q6_k");
        check_model("dense", dense, types[i]);
    } GRAPH_EACH = true);
    RUN("lt_standin", check_lt_standin());
    RUN("blas", check_blas(dense, "q4_k_m"));
    synth_config moe_all = moe; /* every expert used: no choice for BF16 to flip */
    moe_all.n_expert = 4;
    moe_all.n_expert_used = 4;
    RUN("blas", check_blas(moe_all, "q8_0"));
    RUN("grouped_standin", check_grouped_standin());
    RUN("moe_cublas", check_moe_cublas(moe_all));
    RUN("bf16", check_bf16(moe_all));
    RUN("split", check_split(dense));
    /* odd shapes: head size 16 (half a warp), 3 query heads a KV head, an FFN of 160 rows and a
     * vocabulary of 397 (row tails of every tile), hidden 96 */
    synth_config odd = dense;
    odd.hidden = 96;
    odd.n_head = 6;
    odd.n_head_kv = 2;
    odd.ff = 160;
    odd.vocab = 397;
    RUN("models", for (int i = 0; i < (EMU_FAST_SWITCH ? 2 : 1); i++) check_model("odd", odd, i ? "q8_0" : "f32"));
    RUN("models", for (int i = 0; i < (EMU_FAST_SWITCH ? 2 : 1); i++) check_model("moe", moe, i ? "q4_k_m" : "f32"));
    RUN("many_sessions", check_many_sessions(moe));
    RUN("device_sampling", check_device_sampling(dense));
#ifdef LFM2C_HAVE_SERVER
    RUN("sched_sampling", check_sched_sampling(dense));
#endif
    RUN("route_plan", check_route_plan());
    RUN("gemv_kq", check_gemv_kq());
    RUN("attention", check_attention_long());
    RUN("attention_gqa", check_attention_gqa());
    setenv("LFM2C_CUDA_ATTN", "gqa", 1); /* a model again: three query heads a KV head, a head of 16 */
    RUN("attention_gqa", check_model("odd,gqa", odd, "f32"));
    unsetenv("LFM2C_CUDA_ATTN");
    RUN("gemm_kq", check_gemm_kq());
    RUN("gemv_glu", check_gemv_glu());
    RUN("moe_grouped", check_glu_gemm());
    RUN("moe_grouped", check_moe_grouped(moe));
    RUN("profile", check_profile(moe));
    RUN("variants", check_glu_model(moe));
    RUN("variants", check_pdl_model(moe));
    RUN("graph_buckets", check_graph_buckets(moe));
    RUN("variants", check_fin_model(moe, "q4_k_m"));
    RUN("variants", check_fin_model(dense, "q6_k"));
    setenv("LFM2C_CUDA_TC", "mma", 1); /* Q4_K's GEMM through shared memory, not the default's registers */
    RUN("models", check_model("moe,mma", moe, "q4_k_m"));
    RUN("models", check_model("dense,mma", dense, "q4_k_m"));
    unsetenv("LFM2C_CUDA_TC");
    /* the KV cache in F16 (the default of -ctk / -ctv), K and V each: rounded as the CPU's F16
     * cache rounds, so against the CPU with the same cache types */
    const int kv16[][2] = {{LFM2C_KV_F16, LFM2C_KV_F16}, {LFM2C_KV_F16, LFM2C_KV_F32}, {LFM2C_KV_F32, LFM2C_KV_F16}};
    for (int i = 0; i < (EMU_FAST_SWITCH ? 3 : 1); i++) {
        KV_K = kv16[i][0], KV_V = kv16[i][1];
        RUN("models", check_model(i == 0 ? "odd" : "dense", i == 0 ? odd : dense, "q4_k_m"));
    }
    KV_K = KV_V = LFM2C_KV_F16;
    if (EMU_FAST_SWITCH) RUN("models", check_model("moe", moe, "q8_0"));
    RUN("models", check_kv_refused(dense));
    RUN("models", check_iq_refused());
    KV_K = KV_V = LFM2C_KV_F32;
    if (EMU_FAST_SWITCH) { /* every token to every one of 4 experts, 40 tokens: an expert's pairs span two GEMM tiles */
        moe.n_expert = 4;
        moe.n_expert_used = 4;
        N = 40;
        RUN("models", check_model("moe4x4", moe, "q4_k_m"));
    } else {
        printf("(the slow fiber switch: fewer types, no 4x4-expert model)\n");
    }
    const emu_rt::state &s = emu_rt::S();
    CHECK(s.errors == 0, "%ld device-side errors in the emulation, the first: %s", s.errors, s.first_error);
    printf("%ld kernel launches emulated, %ld of them overlapping the one before\n", s.launches, s.pdl_launches);
    TEST_MAIN_END();
}
