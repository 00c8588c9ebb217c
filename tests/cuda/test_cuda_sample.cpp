/* test_cuda_sample.cpp — the device sampler (src/cuda/sample.cu) compiled by the host C++ compiler
 * against the emulated CUDA runtime (tests/cuda/emu) and run on the CPU, against the CPU sampler
 * (core/sampler.c) and the scheduler's logprobs rule: for many seeds and settings (greedy and
 * temperatures, top-k / top-p / min-p, repeat / presence / frequency penalties over a window,
 * logit_bias with excluded tokens, token masks as bitmasks, ties and -0), a batch of rows of
 * different settings in one launch draws the CPU sampler's tokens, token for token, over several
 * steps of each sampler's counter; logprobs within LP_TOL of the host's, the top tokens equal;
 * rows not finite, rows with every token excluded and rows past SMP_KMAX candidates get their
 * statuses. A control checks that the comparison can fail: other counters draw other tokens. */
#include <cuda_runtime.h> /* the emulation: tests/cuda/emu comes first on the include path */
extern "C" {
#include "lfm2c.h"
#include "core/forward.h"
#include "core/sampler.h"
}
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <vector>

namespace emu {
#include "cuda/sample.cu"
} // namespace emu

static const double LP_TOL = 1e-5; /* logprobs: a double sum in another order, then float */

static uint64_t rng = 12345;
static uint32_t rnd() {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}
static float rndf() { return (float)rnd() / 2147483648.0f; } /* [0, 1) */

/* One row of a test: its logits, settings and what the host makes of them. */
struct row_case {
    std::vector<float> logits, bias;
    std::vector<uint32_t> mask;
    std::vector<int32_t> hist;
    lfm2c_sampler_params p;
    int n_logprobs;
};

/* the CPU sampler's filter: the mask's excluded tokens at -infinity (as the scheduler's hook) */
static void mask_filter(void *user, float *l, int V) {
    const uint32_t *m = (const uint32_t *)user;
    for (int i = 0; i < V; i++)
        if (!(m[i >> 5] >> (i & 31) & 1)) l[i] = -INFINITY;
}

static row_case make_case(int V, int kind) {
    row_case c;
    c.logits.resize(V);
    const float scale = 1.0f + 10.0f * rndf();
    for (int i = 0; i < V; i++) c.logits[i] = scale * (rndf() + rndf() + rndf() - 1.5f);
    if (kind % 5 == 1) /* ties and -0: values on a coarse grid */
        for (int i = 0; i < V; i++) c.logits[i] = (float)((int)(c.logits[i] * 2) / 2) * (rnd() % 2 ? 1.0f : -1.0f);
    c.p = lfm2c_sampler_default_params();
    const float temps[] = {0.0f, 0.1f, 0.7f, 1.0f, 1.5f};
    const int topk[] = {0, 1, 5, 40, 50, 1024};
    const float topp[] = {1.0f, 0.95f, 0.5f};
    const float minp[] = {0.0f, 0.05f};
    c.p.temperature = temps[rnd() % 5];
    c.p.top_k = topk[rnd() % 6];
    c.p.top_p = topp[rnd() % 3];
    c.p.min_p = minp[rnd() % 2];
    c.p.repeat_penalty = rnd() % 2 ? 1.0f : 1.1f;
    c.p.repeat_last_n = rnd() % 3 == 0 ? -1 : (int)(rnd() % 80);
    c.p.presence_penalty = rnd() % 2 ? 0.0f : 0.5f;
    c.p.frequency_penalty = rnd() % 2 ? 0.0f : 0.3f;
    c.p.seed = rnd() % 4 == 0 ? 0 : ((uint64_t)rnd() << 32 | rnd());
    const int nh = (int)(rnd() % 200);
    for (int i = 0; i < nh; i++) c.hist.push_back((int32_t)(rnd() % 4 == 0 ? rnd() % 8 : rnd() % (unsigned)V));
    if (kind % 3 == 0) {
        c.bias.assign(V, 0.0f);
        for (int i = 0; i < 20; i++) c.bias[rnd() % V] = rnd() % 3 == 0 ? -INFINITY : 5.0f * (rndf() - 0.5f);
    }
    if (kind % 4 == 0) { /* a mask: most tokens off, or only a few on */
        c.mask.assign((V + 31) / 32, 0);
        const int on = kind % 8 == 0 ? 3 : V / 2;
        for (int i = 0; i < on; i++) {
            int t = (int)(rnd() % V);
            c.mask[t >> 5] |= 1u << (t & 31);
        }
    }
    c.n_logprobs = rnd() % 3 == 0 ? -1 : (int)(rnd() % 6);
    return c;
}

/* the scheduler's logprob_fill (serve/scheduler.c) on the raw logits */
static void host_logprobs(const std::vector<float> &l, int k, int32_t tok, float *lp, std::vector<int32_t> &top,
                          std::vector<float> &top_lp) {
    const int V = (int)l.size();
    float mx = -INFINITY;
    for (float v : l) mx = v > mx ? v : mx;
    double sum = 0;
    for (float v : l) sum += exp((double)(v - mx));
    const float lse = mx + (float)log(sum);
    *lp = l[tok] - lse;
    top.clear();
    for (int i = 0; i < V; i++) { /* (value desc, id asc) */
        size_t j = 0;
        while (j < top.size() && l[top[j]] >= l[i]) j++;
        if ((int)j < k) top.insert(top.begin() + j, i);
        if ((int)top.size() > k) top.pop_back();
    }
    top_lp.clear();
    for (int32_t t : top) top_lp.push_back(l[t] - lse);
}

/* The device's arrays for a row appended to arena; the job from the sampler (sampler_job). */
static smp_job make_job(const row_case &c, lfm2c_sampler *dev_smp, int row, std::vector<uint8_t> &arena) {
    smp_job j;
    int from;
    const float *bias;
    CHECK(sampler_job(dev_smp, (int)c.hist.size(), &j, &from, &bias) == 0, "sampler_job");
    j.row = row;
    j.n_logprobs = c.n_logprobs;
    auto put = [&](const void *p, size_t n) {
        while (arena.size() % 8) arena.push_back(0);
        int64_t off = (int64_t)arena.size();
        arena.insert(arena.end(), (const uint8_t *)p, (const uint8_t *)p + n);
        return off;
    };
    j.n_hist = (int)c.hist.size() - from;
    if (j.n_hist > 0) j.hist_off = put(c.hist.data() + from, sizeof(int32_t) * j.n_hist);
    if (bias) j.bias_off = put(bias, sizeof(float) * c.logits.size());
    if (!c.mask.empty()) j.mask_off = put(c.mask.data(), sizeof(uint32_t) * c.mask.size());
    return j;
}

/* The rows through the device sampler in one launch. */
static std::vector<smp_out> run_device(const std::vector<row_case> &cs, std::vector<lfm2c_sampler *> &dev, int V,
                                       bool shift_counter) {
    const int n = (int)cs.size();
    std::vector<uint8_t> arena;
    std::vector<smp_job> jobs;
    std::vector<float> logits;
    for (int i = 0; i < n; i++) { /* row i of logits is row n-1-i: rows are found through the job */
        jobs.push_back(make_job(cs[i], dev[i], n - 1 - i, arena));
        if (shift_counter) jobs.back().counter += 7;
    }
    for (int i = n - 1; i >= 0; i--) logits.insert(logits.end(), cs[i].logits.begin(), cs[i].logits.end());
    float *d_logits = nullptr, *d_work = nullptr;
    smp_job *d_jobs = nullptr;
    uint8_t *d_arena = nullptr;
    smp_out *d_out = nullptr;
    cudaMalloc((void **)&d_logits, sizeof(float) * logits.size());
    cudaMalloc((void **)&d_work, sizeof(float) * (size_t)n * V);
    cudaMalloc((void **)&d_jobs, sizeof(smp_job) * n);
    cudaMalloc((void **)&d_arena, arena.size() + 1);
    cudaMalloc((void **)&d_out, sizeof(smp_out) * n);
    cudaMemcpy(d_logits, logits.data(), sizeof(float) * logits.size(), cudaMemcpyHostToDevice);
    cudaMemcpy(d_jobs, jobs.data(), sizeof(smp_job) * n, cudaMemcpyHostToDevice);
    cudaMemcpy(d_arena, arena.data(), arena.size(), cudaMemcpyHostToDevice);
    emu::cu_sample(nullptr, d_logits, (size_t)V, V, d_jobs, n, d_arena, d_work, d_out);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    CHECK(emu_rt::S().errors == 0, "device error: %s", emu_rt::S().first_error);
    std::vector<smp_out> out(n);
    cudaMemcpy(out.data(), d_out, sizeof(smp_out) * n, cudaMemcpyDeviceToHost);
    cudaFree(d_logits), cudaFree(d_work), cudaFree(d_jobs), cudaFree(d_arena), cudaFree(d_out);
    return out;
}

/* Candidates the CPU sampler would sort for a row: top-k, or every token left. */
static int n_candidates(const row_case &c) {
    int n = 0;
    const int V = (int)c.logits.size();
    for (int i = 0; i < V; i++) {
        float v = c.logits[i] + (c.bias.empty() ? 0.0f : c.bias[i]);
        bool on = c.mask.empty() || (c.mask[i >> 5] >> (i & 31) & 1);
        n += on && v > -INFINITY;
    }
    return c.p.top_k > 0 && c.p.top_k < n ? c.p.top_k : n;
}

/* One batch of rows, `steps` draws each (the samplers' counters move between them). Returns how
 * many rows drew; *host_rows counts those the device handed back (SMP_HOST). */
static int check_batch(int V, int n, int steps, int *host_rows) {
    std::vector<row_case> cs;
    std::vector<lfm2c_sampler *> cpu, dev;
    for (int i = 0; i < n; i++) {
        cs.push_back(make_case(V, (int)(rnd() % 16)));
        cpu.push_back(lfm2c_sampler_new(&cs[i].p, V));
        dev.push_back(lfm2c_sampler_new(&cs[i].p, V));
        if (!cs[i].bias.empty()) lfm2c_sampler_set_logit_bias(cpu[i], cs[i].bias.data());
        if (!cs[i].bias.empty()) lfm2c_sampler_set_logit_bias(dev[i], cs[i].bias.data());
        if (!cs[i].mask.empty()) lfm2c_sampler_set_filter(cpu[i], mask_filter, cs[i].mask.data());
    }
    int drew = 0;
    for (int step = 0; step < steps; step++) {
        std::vector<smp_out> out = run_device(cs, dev, V, false);
        for (int i = 0; i < n; i++) {
            const row_case &c = cs[i];
            int32_t want = lfm2c_sampler_sample(cpu[i], c.logits.data(), c.hist.data(), (int)c.hist.size());
            if (out[i].status == SMP_HOST) {
                CHECK(n_candidates(c) > SMP_KMAX, "row %d handed back with %d candidates", i, n_candidates(c));
                ++*host_rows;
                sampler_drew(dev[i]); /* the host drew: both counters in step */
                continue;
            }
            CHECK(out[i].token == want, "V %d row %d step %d: device %d, cpu %d (T %g k %d p %g minp %g)", V, i, step,
                  out[i].token, want, c.p.temperature, c.p.top_k, c.p.top_p, c.p.min_p);
            CHECK(out[i].status == (want >= 0 ? SMP_OK : SMP_NONE), "row %d status %d", i, out[i].status);
            if (out[i].drew) sampler_drew(dev[i]), drew++;
            if (want >= 0 && c.n_logprobs >= 0) {
                float lp;
                std::vector<int32_t> top;
                std::vector<float> top_lp;
                host_logprobs(c.logits, c.n_logprobs, want, &lp, top, top_lp);
                CHECK(fabs(out[i].logprob - lp) <= LP_TOL, "row %d logprob %g vs %g", i, out[i].logprob, lp);
                CHECK(out[i].n_top == (int)top.size(), "row %d n_top %d vs %zu", i, out[i].n_top, top.size());
                for (int j = 0; j < out[i].n_top && j < (int)top.size(); j++) {
                    CHECK(out[i].top_token[j] == top[j], "row %d top %d: %d vs %d", i, j, out[i].top_token[j], top[j]);
                    CHECK(fabs(out[i].top_logprob[j] - top_lp[j]) <= LP_TOL, "row %d top lp", i);
                }
            }
        }
        for (row_case &c : cs) c.hist.push_back((int32_t)(rnd() % V)); /* the history grows */
    }
    for (int i = 0; i < n; i++) lfm2c_sampler_free(cpu[i]), lfm2c_sampler_free(dev[i]);
    return drew;
}

/* Rows the sampler refuses: NaN and +infinity (NOT_FINITE), every token excluded (NONE). */
static void check_statuses(int V) {
    std::vector<row_case> cs(3, make_case(V, 2));
    std::vector<lfm2c_sampler *> dev;
    cs[0].logits[V / 2] = NAN;
    cs[1].logits[3] = INFINITY;
    cs[2].mask.assign((V + 31) / 32, 0);
    for (auto &c : cs) dev.push_back(lfm2c_sampler_new(&c.p, V));
    std::vector<smp_out> out = run_device(cs, dev, V, false);
    CHECK(out[0].status == SMP_NOT_FINITE && out[0].token == -1, "NaN: %d", out[0].status);
    CHECK(out[1].status == SMP_NOT_FINITE && out[1].token == -1, "+inf: %d", out[1].status);
    CHECK(out[2].status == SMP_NONE && out[2].token == -1 && !out[2].drew, "masked: %d", out[2].status);
    for (auto *s : dev) lfm2c_sampler_free(s);
}

/* The control: draws at other counters differ from the CPU's for most sampled rows. */
static void check_control(int V) {
    std::vector<row_case> cs;
    std::vector<lfm2c_sampler *> cpu, dev;
    for (int i = 0; i < 32; i++) {
        row_case c = make_case(V, 2);
        c.p.temperature = 1.5f, c.p.top_k = 200, c.p.top_p = 1.0f, c.p.min_p = 0.0f;
        cs.push_back(c);
        cpu.push_back(lfm2c_sampler_new(&c.p, V));
        dev.push_back(lfm2c_sampler_new(&c.p, V));
    }
    std::vector<smp_out> out = run_device(cs, dev, V, true);
    int same = 0;
    for (int i = 0; i < 32; i++)
        same += out[i].token == lfm2c_sampler_sample(cpu[i], cs[i].logits.data(), cs[i].hist.data(), (int)cs[i].hist.size());
    CHECK(same < 16, "%d of 32 draws at other counters equal the CPU's: the check cannot tell", same);
    for (int i = 0; i < 32; i++) lfm2c_sampler_free(cpu[i]), lfm2c_sampler_free(dev[i]);
}

int main(void) {
    const int vocabs[] = {1, 37, 777, 3000};
    int host_rows = 0, drew = 0;
    for (int V : vocabs) drew += check_batch(V, V < 100 ? 16 : 48, 3, &host_rows);
    CHECK(drew > 100, "only %d rows drew", drew);
    CHECK(host_rows > 0, "no row went past SMP_KMAX candidates");
    check_statuses(777);
    check_control(3000);
    printf("%d draws equal, %d rows handed back to the host\n", drew, host_rows);
    TEST_MAIN_END();
}
