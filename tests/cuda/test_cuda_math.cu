/* test_cuda_math.cu — the CUDA kernels' per-element math (src/cuda/cuda_math.cuh), run on the
 * HOST and compared with the CPU reference: dequantization of every block type (quant.c), the
 * lane-split GEMV dot, half floats, RMSNorm + NEOX RoPE, the sigmoid top-k router, the expert
 * tile plan, the batch links and conv step against a sequential conv, the warp-split online
 * softmax against a plain softmax, and which graph bucket a forward takes. Needs no GPU. */
extern "C" {
#include "cpu/kernels.h"
#include "formats/ggml_types.h"
}
#include "cuda_math.cuh"
#include "core/forward.h"
#include "test.h"

#include <math.h>
#include <string.h>
#include <vector>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xFFFFFF) / 16777216.0f; }

static bool close_rel(double a, double b, double tol) {
    if (a == b) return true;   /* infinities included */
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= tol * fmax(1.0, fmax(fabs(a), fabs(b)));
}

/* offsets of the fp16 scale fields of each block type (random bytes there could be inf/nan) */
static void sane_scales(uint32_t t, uint8_t *b) {
    int offs[2] = {-1, -1};
    switch (t) {
    case GGML_Q4_0: case GGML_Q5_0: case GGML_Q8_0: case GGML_IQ4_NL: case GGML_IQ4_XS: offs[0] = 0; break;
    case GGML_Q4_1: case GGML_Q5_1: case GGML_Q4_K: case GGML_Q5_K: offs[0] = 0; offs[1] = 2; break;
    case GGML_Q2_K: offs[0] = 80; offs[1] = 82; break;
    case GGML_Q3_K: offs[0] = 108; break;
    case GGML_Q6_K: offs[0] = 208; break;
    default: break;
    }
    for (int i = 0; i < 2; i++)
        if (offs[i] >= 0) {
            ggml_half h = f32_to_fp16(frand(-0.05f, 0.05f));
            memcpy(b + offs[i], &h, 2);
        }
}

/* a row of n random weights of type t */
static std::vector<uint8_t> random_row(uint32_t t, int n) {
    const ggml_type_info *ti = ggml_type_get(t);
    size_t bytes = ggml_row_size(t, n);
    std::vector<uint8_t> row(bytes);
    if (t == GGML_F32) {
        for (int i = 0; i < n; i++) { float f = frand(-2, 2); memcpy(&row[4 * i], &f, 4); }
    } else if (t == GGML_F16 || t == GGML_BF16) {
        for (int i = 0; i < n; i++) {
            float f = frand(-2, 2);
            uint16_t h = t == GGML_F16 ? f32_to_fp16(f) : f32_to_bf16(f);
            memcpy(&row[2 * i], &h, 2);
        }
    } else {
        for (size_t i = 0; i < bytes; i++) row[i] = (uint8_t)rnd();
        for (int b = 0; b < n / ti->block_size; b++) sane_scales(t, &row[(size_t)b * ti->type_size]);
    }
    return row;
}

static void test_dequant(void) {
    /* every row of the type table with the CUDA bit (formats/ggml_types.h); none other */
    int n_types = 0;
    for (uint32_t t = 0; t < GGML_NTYPES_ALL; t++) {
        const ggml_type_info *ti = ggml_type_get(t);
        if (!ti || !(ti->runs & GGML_RUN_CUDA)) {
            CHECK(cm_block_bytes(t) == 0 && !cm_type_ok(t, 1024), "type %u: not the CUDA kernels'", t);
            continue;
        }
        n_types++;
        CHECK(cm_block_bytes(t) == ti->type_size, "%s: block bytes %d vs %d", ti->name, cm_block_bytes(t), ti->type_size);
        CHECK(cm_block_len(t) == ti->block_size, "%s: block len", ti->name);
        const int n = 1024;
        CHECK(cm_type_ok(t, n), "%s: type_ok", ti->name);
        int bad = 0, bad_dot = 0;
        for (int rep = 0; rep < 20; rep++) {
            std::vector<uint8_t> row = random_row(t, n);
            std::vector<float> ref(n), got(n), x(n);
            dequantize_row(t, row.data(), ref.data(), n);
            for (int k0 = 0; k0 < n; k0 += 8) cm_dequant8(t, row.data(), k0, &got[k0]);
            for (int i = 0; i < n; i++)
                if (!close_rel(ref[i], got[i], 1e-6)) {
                    if (bad++ < 3) fprintf(stderr, "%s: weight %d: %g vs %g\n", ti->name, i, got[i], ref[i]);
                }
            /* the GEMV's lane split, lanes summed like the warp reduction */
            for (int i = 0; i < n; i++) x[i] = frand(-1, 1);
            float lanes[32];
            for (int l = 0; l < 32; l++) lanes[l] = cm_dot_lane(t, row.data(), x.data(), n, l, 32);
            for (int o = 16; o > 0; o >>= 1)
                for (int l = 0; l < o; l++) lanes[l] += lanes[l + o];
            double want = vec_dot_float(t, n, row.data(), x.data());
            double scale = 0;
            for (int i = 0; i < n; i++) scale += fabs((double)ref[i] * x[i]);
            if (fabs(lanes[0] - want) > 1e-5 * (scale + 1)) {
                if (bad_dot++ < 3) fprintf(stderr, "%s: dot %g vs %g\n", ti->name, lanes[0], want);
            }
        }
        CHECK(bad == 0, "%s: %d dequantized weights differ", ti->name, bad);
        CHECK(bad_dot == 0, "%s: %d dots differ", ti->name, bad_dot);
    }
    CHECK(n_types >= 16, "%d types with the CUDA bit", n_types);
    CHECK(!cm_type_ok(GGML_Q4_K, 128), "Q4_K rows of 128 are not whole blocks");
    CHECK(!cm_type_ok(GGML_F32, 12), "F32 rows must be a multiple of 8");
    CHECK(!cm_type_ok(GGML_Q8_K, 256), "Q8_K is an activation type");
}

static void test_half(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = cm_half(h), b = fp16_to_f32((ggml_half)h);
        if (!(a == b || (isnan(a) && isnan(b))) || signbit(a) != signbit(b)) bad++;
        float c = cm_bf16(h), d = bf16_to_f32((uint16_t)h);
        if (!(c == d || (isnan(c) && isnan(d)))) bad++;
    }
    CHECK(bad == 0, "%d half / bfloat16 values differ", bad);
    /* float -> half bits (the F16 KV cache): every half's float and its neighbours halfway and a
     * bit either side (the rounding's ties), then random bit patterns */
    int bad2 = 0;
    auto same = [&](uint32_t bits) {
        float f;
        memcpy(&f, &bits, 4);
        if (cm_f2h(f) != (uint32_t)f32_to_fp16(f)) bad2++;
    };
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_f32((ggml_half)h);
        uint32_t b;
        memcpy(&b, &f, 4);
        for (int64_t d = -4097; d <= 4097; d += 2048) same((uint32_t)((int64_t)b + d));
    }
    uint64_t s = 99;
    for (int i = 0; i < 1000000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        same((uint32_t)(s >> 32));
    }
    CHECK(bad2 == 0, "%d floats round to other half bits than f32_to_fp16", bad2);
    /* float -> BF16 bits (cuBLASLt's operands, blas.cu): every BF16's float and its neighbours
     * halfway and a step either side (the ties), then random bit patterns (NaNs among them) */
    int bad3 = 0;
    auto same_bf = [&](uint32_t bits) {
        float f;
        memcpy(&f, &bits, 4);
        if (cm_f32_bf16(f) != (uint32_t)f32_to_bf16(f)) bad3++;
    };
    for (uint32_t h = 0; h < 65536; h++)
        for (int64_t d = -0x8001; d <= 0x8001; d += 0x4000) same_bf((uint32_t)((int64_t)(h << 16) + d));
    for (int i = 0; i < 1000000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        same_bf((uint32_t)(s >> 32));
    }
    CHECK(bad3 == 0, "%d floats round to other BF16 bits than f32_to_bf16", bad3);
}

/* RMSNorm then NEOX rotation of one head, as the CPU attention block does it (double sum) */
static void test_norm_rope(void) {
    for (int hd : {16, 64, 128, 256}) {
        std::vector<float> x(hd), w(hd), ref(hd), got(hd);
        for (int i = 0; i < hd; i++) { x[i] = frand(-3, 3); w[i] = frand(0.9f, 1.1f); }
        int pos = (int)(rnd() % 5000);
        float theta = 1e6f, eps = 1e-5f;
        double ss = 0;
        for (int i = 0; i < hd; i++) ss += (double)x[i] * x[i];
        float sc = (float)(1.0 / sqrt(ss / hd + eps));
        for (int i = 0; i < hd; i++) ref[i] = x[i] * sc * w[i];
        for (int i = 0; i < hd / 2; i++) {
            double ang = pos * pow(theta, -2.0 * i / hd);
            float c = (float)cos(ang), s = (float)sin(ang), a = ref[i], b = ref[i + hd / 2];
            ref[i] = a * c - b * s;
            ref[i + hd / 2] = b * c + a * s;
        }
        float sumsq = 0;
        for (int i = 0; i < hd; i++) sumsq += x[i] * x[i];
        float scale = cm_rms_scale(sumsq, hd, eps);
        for (int i = 0; i < hd / 2; i++) {
            float c, s;
            cm_rope_cs(pos, i, hd, theta, &c, &s);
            cm_rope_pair(x[i] * scale * w[i], x[i + hd / 2] * scale * w[i + hd / 2], c, s, &got[i], &got[i + hd / 2]);
        }
        double d = 0;
        for (int i = 0; i < hd; i++) d = fmax(d, fabs(ref[i] - got[i]));
        CHECK(d < 1e-5, "norm + rope, head dim %d: max diff %g", hd, d);
    }
}

static void test_router(void) {
    int bad = 0;
    for (int rep = 0; rep < 200; rep++) {
        int E = rep % 2 ? 8 : 64, k = rep % 2 ? 2 : 4;
        std::vector<float> lg(E), bias(E);
        for (int e = 0; e < E; e++) { lg[e] = frand(-4, 4); bias[e] = frand(-0.05f, 0.05f); }
        if (rep % 7 == 0) for (int e = 0; e < E; e++) lg[e] = 0.5f;   /* all tied */
        const float *b = rep % 3 ? bias.data() : nullptr;
        int s1[8], s2[8];
        float w1[8], w2[8];
        moe_route(lg.data(), b, E, k, s1, w1);
        cm_route(lg.data(), b, E, k, s2, w2);
        for (int j = 0; j < k; j++)
            if (s1[j] != s2[j] || !close_rel(w1[j], w2[j], 1e-6)) bad++;
    }
    CHECK(bad == 0, "router: %d selections differ", bad);
    float lg[4] = {0, 0, 0, 0};
    int sel[2];
    float w[2];
    cm_route(lg, nullptr, 4, 2, sel, w);
    CHECK(sel[0] == 0 && sel[1] == 1 && fabsf(w[0] - 0.5f) < 1e-7f, "router ties go to the lower id");
}

static void test_plan(void) {
    for (int rep = 0; rep < 50; rep++) {
        int E = 1 + (int)(rnd() % 64), width = rep % 2 ? 8 : 32, total = 0;
        std::vector<int> count(E), start(E + 1), te(4096), tc(4096), tn(4096);
        for (int e = 0; e < E; e++) { count[e] = rnd() % 3 == 0 ? 0 : (int)(rnd() % 80); total += count[e]; }
        int nt = cm_plan_tiles(count.data(), E, width, start.data(), te.data(), tc.data(), tn.data());
        /* every pair of every expert in exactly one tile of that expert, tiles of <= width */
        std::vector<int> cover(total, 0);
        bool ok = start[E] == total;
        for (int i = 0; i < nt; i++) {
            ok = ok && tn[i] > 0 && tn[i] <= width && tc[i] >= start[te[i]] && tc[i] + tn[i] <= start[te[i] + 1];
            for (int c = 0; ok && c < tn[i]; c++) cover[tc[i] + c]++;
        }
        for (int i = 0; i < total; i++) ok = ok && cover[i] == 1;
        int bound = (total + width - 1) / width + E;
        CHECK(ok, "expert plan %d (E=%d, width %d) is wrong", rep, E, width);
        CHECK(nt <= bound && nt <= total, "expert plan: %d tiles over the bound %d", nt, bound);
    }
}

/* The batched conv (links + per-element step) equals feeding the tokens one by one. */
static void test_conv(void) {
    const int H = 24;
    for (int rep = 0; rep < 30; rep++) {
        /* 3 sequences, each with a saved state; tokens of a sequence in order, interleaved */
        int nseq = 3, T = 2 + (int)(rnd() % 12);
        std::vector<float> w(3 * H), z((size_t)T * 3 * H), state0((size_t)nseq * 2 * H);
        for (auto &v : w) v = frand(-1, 1);
        for (auto &v : z) v = frand(-1, 1);
        for (auto &v : state0) v = frand(-1, 1);
        std::vector<const void *> seq(T);
        std::vector<int> pos(T), who(T), next_pos = {10, 0, 5};
        for (int t = 0; t < T; t++) {
            who[t] = rep % 2 ? (int)(rnd() % nseq) : t * nseq / T;   /* interleaved or contiguous */
            seq[t] = &state0[(size_t)who[t] * 2 * H];
            pos[t] = next_pos[who[t]]++;
        }
        /* reference: sequential, like forward.c conv_worker */
        std::vector<float> st = state0, ref((size_t)T * H);
        for (int t = 0; t < T; t++) {
            float *s = &st[(size_t)who[t] * 2 * H];
            for (int c = 0; c < H; c++) {
                const float *B = &z[(size_t)t * 3 * H], *C = B + H, *X = C + H;
                float u = B[c] * X[c];
                float v = w[3 * c] * s[c] + w[3 * c + 1] * s[H + c] + w[3 * c + 2] * u;
                s[c] = s[H + c];
                s[H + c] = u;
                ref[(size_t)t * H + c] = C[c] * v;
            }
        }
        std::vector<int> prev(T), last(T);
        int n_seq = cm_batch_links(seq.data(), pos.data(), T, prev.data(), last.data());
        std::vector<float> got((size_t)T * H), st2 = state0;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < H; c++) {
                int p1 = prev[t], p2 = p1 >= 0 ? prev[p1] : -1;
                got[(size_t)t * H + c] = cm_conv_elem(z.data(), w.data(), &st2[(size_t)who[t] * 2 * H], t, p1, p2, c, H);
            }
        for (int i = 0; i < n_seq; i++)
            for (int c = 0; c < H; c++)
                cm_conv_state_elem(z.data(), &st2[(size_t)who[last[i]] * 2 * H], last[i], prev[last[i]], c, H);
        double d = 0, ds = 0;
        for (size_t i = 0; i < ref.size(); i++) d = fmax(d, fabs(ref[i] - got[i]));
        for (size_t i = 0; i < st.size(); i++) ds = fmax(ds, fabs(st[i] - st2[i]));
        CHECK(d < 1e-6 && ds == 0, "conv batch %d (T=%d): out diff %g, state diff %g", rep, T, d, ds);
    }
}

/* Online softmax split over 4 warps (position p to warp p % 4) and merged == plain softmax. */
static void test_softmax(void) {
    for (int n : {1, 2, 3, 5, 17, 300}) {
        const int d = 8, NW = 4;
        std::vector<float> s(n), v((size_t)n * d);
        for (auto &x : s) x = frand(-20, 20);
        for (auto &x : v) x = frand(-1, 1);
        double mx = -INFINITY, sum = 0, ref[d] = {0};
        for (int p = 0; p < n; p++) mx = fmax(mx, s[p]);
        for (int p = 0; p < n; p++) sum += exp(s[p] - mx);
        for (int p = 0; p < n; p++)
            for (int i = 0; i < d; i++) ref[i] += exp(s[p] - mx) / sum * v[(size_t)p * d + i];
        float m[NW], l[NW], acc[NW][d], f[NW];
        for (int w = 0; w < NW; w++) {
            m[w] = -INFINITY;
            l[w] = 0;
            for (int i = 0; i < d; i++) acc[w][i] = 0;
            for (int p = w; p < n; p += NW) cm_softmax_step(s[p], &v[(size_t)p * d], d, &m[w], &l[w], acc[w]);
        }
        float L = cm_softmax_merge(m, l, NW, f);
        double diff = 0;
        for (int i = 0; i < d; i++) {
            float o = 0;
            for (int w = 0; w < NW; w++) o += acc[w][i] * f[w];
            diff = fmax(diff, fabs(o / L - ref[i]));
        }
        CHECK(diff < 1e-5, "softmax over %d positions: diff %g", n, diff);
    }
}

/* cm_graph_bucket (LFM2C_CUDA_GRAPH_BUCKETS=1): a decode-only step of T tokens takes the smallest
 * power of two of at least T, up to CM_GRAPH_MAX; a step with a prompt chunk (fewer sequences
 * than tokens), rows without logits, or past CM_GRAPH_MAX tokens takes none; each bucket its own
 * slot. */
static void test_graph_bucket(void) {
    int bad = 0, slots = 0;
    for (int T = 1; T <= CM_GRAPH_MAX; T++) {
        const int b = cm_graph_bucket(T, T, T);
        bad += b < T || b >= 2 * T || (b & (b - 1)) || cm_graph_slot(b) >= CM_GRAPH_BUCKETS || (1 << cm_graph_slot(b)) != b;
        slots |= 1 << cm_graph_slot(b);
        bad += cm_graph_bucket(T, T - 1, T) != 0 || cm_graph_bucket(T, T, T - 1) != 0;
    }
    CHECK(bad == 0 && slots == (1 << CM_GRAPH_BUCKETS) - 1, "graph buckets: %d wrong, slots %x", bad, slots);
    CHECK(cm_graph_bucket(CM_GRAPH_MAX + 1, CM_GRAPH_MAX + 1, CM_GRAPH_MAX + 1) == 0 && cm_graph_bucket(0, 0, 0) == 0 &&
              cm_graph_bucket(3, 3, 3) == 4 && cm_graph_bucket(1, 1, 1) == 1,
          "graph bucket bounds");
}

int main(void) {
    test_graph_bucket();
    test_dequant();
    test_half();
    test_norm_rope();
    test_router();
    test_plan();
    test_conv();
    test_softmax();
    TEST_MAIN_END();
}
