/* test_kernels_attn.c — the attention contract (src/cpu/kernels_attn.c, kernels.h): kv_exp against
 * exp; the scalar truth against attention in double precision over the same cache values (so
 * the layouts and the online softmax are right); every SIMD table bitwise against the truth for
 * each K / V type, head dimension and causal length; and a query's bits do not depend on the
 * other queries of the call. */
#include "cpu/kernels.h"
#include "formats/ggml_types.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static void test_exp(void) {
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f * (float)i / 200000.0f;
        double e = exp((double)x), r = fabs(kv_exp(x) - e) / e;
        if (r > worst) worst = r;
    }
    CHECK(worst < 1e-6, "kv_exp relative error %g", worst);
    CHECK(kv_exp(0.0f) == 1.0f, "kv_exp(0) = %g", kv_exp(0.0f));
    CHECK(kv_exp(-INFINITY) == 0.0f && kv_exp(-88.0f) == 0.0f && kv_exp(NAN) == 0.0f, "kv_exp below the cut");
    printf("kv_exp: max relative error %.2e on [-87, 0]\n", worst);
}

/* The F16 contract: every table's f16_row gives f32_to_fp16's bits, for every class of float
 * (zeros, subnormal results, rounding ties, the overflow edge, infinities, NaNs with payloads)
 * at every length and alignment; and kv_store with a table's converter stores what it does
 * with the scalar one. */
static uint32_t bits_rng = 0x9E3779B9u;
static uint32_t next_bits(void) {
    bits_rng ^= bits_rng << 13;
    bits_rng ^= bits_rng >> 17;
    bits_rng ^= bits_rng << 5;
    return bits_rng;
}
static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static void test_f16_row(const kernel_ops *const *tables, int nt) {
    enum { N = 4096 };
    static const uint32_t special[] = {
        0x00000000, 0x80000000, 0x33000000, 0x33000001, 0x33800000, 0x337fffff, 0x33c00000, /* around 2^-24 */
        0x387fc000, 0x387fe000, 0x38800000, 0x38801000, 0x38802000, 0x38803000,             /* min normal */
        0x3f800000, 0x3f801000, 0x3f802000, 0x3f803000, 0x3f801001, 0xbf803000,             /* ties at 1 */
        0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001, 0x47800000, 0x501502f9, 0xc77ff000, /* overflow */
        0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000, 0xffc12345,
        0x7fffffff, 0x7fbfffff, 0x00000001, 0x807fffff, 0x3dcccccd, 0xc2f6e979};
    const int ns = (int)(sizeof special / sizeof *special);
    static float x[N + 1];
    static uint16_t want[N + 1], got[N + 1];
    for (int i = 0; i < N + 1; i++) {
        const uint32_t r = next_bits();
        if (i < ns) x[i] = from_bits(special[i]);
        else if (i % 3 == 0) x[i] = from_bits(r); /* any bit pattern */
        else if (i % 3 == 1)
            x[i] = from_bits((r & 0x807fffffu) | (uint32_t)(103 + (r >> 8) % 40) << 23); /* f16 range */
        else x[i] = frand() * 8.0f;
        want[i] = f32_to_fp16(x[i]);
    }
    for (int t = 0; t < nt; t++) {
        int bad = 0, first = -1;
        for (int off = 0; off < 2; off++) /* an unaligned start too */
            for (int n = 0; n <= N; n = n < 40 ? n + 1 : n == 40 ? N - 1 : N + 1) {
                if (off + n > N + 1) continue;
                memset(got, 0xAB, sizeof got);
                tables[t]->f16_row(x + off, got + off, n);
                for (int i = 0; i < n; i++)
                    if (got[off + i] != want[off + i]) bad++, first = first < 0 ? off + i : first;
                bad += got[off + n] != 0xABAB && off + n <= N; /* nothing written past n */
            }
        uint32_t fb = 0;
        if (first >= 0) memcpy(&fb, &x[first], 4);
        CHECK(bad == 0, "%s f16_row: %d differences from f32_to_fp16 (first at x = 0x%08x)", tables[t]->isa, bad,
              (unsigned)fb);
        /* kv_store with this table's converter: the same cache bytes as with the scalar one */
        enum { HD = 40, P = 37, NH = 3 };
        const size_t kb = NH * kv_k_head_block_bytes(KV_F16, HD) * ((P + KV_KB) / KV_KB),
                     vr = kv_v_row_bytes(KV_F16, NH * HD);
        uint8_t *k0 = calloc(1, kb), *k1 = calloc(1, kb), *v0 = calloc(P + 1, vr), *v1 = calloc(P + 1, vr);
        for (int p = 0; p <= P; p++) {
            kv_store_k(KV_F16, HD, NH, NH, k0, p, x + 7 * p, f16_row_scalar);
            kv_store_k(KV_F16, HD, NH, NH, k1, p, x + 7 * p, tables[t]->f16_row);
            kv_store_v(KV_F16, NH * HD, v0, vr, p, x + 11 * p, f16_row_scalar);
            kv_store_v(KV_F16, NH * HD, v1, vr, p, x + 11 * p, tables[t]->f16_row);
        }
        CHECK(!memcmp(k0, k1, kb) && !memcmp(v0, v1, (P + 1) * vr), "%s kv_store with f16_row", tables[t]->isa);
        free(k0), free(k1), free(v0), free(v1);
    }
    printf("f16_row: %d tables match f32_to_fp16 on %d values\n", nt, N + 1);
}

/* value the cache holds for x (what the truth computes with) */
static float cached(int type, float x) {
    if (type == KV_F32) return x;
    return fp16_to_f32(f32_to_fp16(x));
}

enum { NKV = 3, NPOS = 300, NQ = 7 };

typedef struct fixture {
    int tk, tv, hd;
    uint8_t *k, *v;
    size_t v_row;
    float *kx, *vx; /* the floats stored, [NPOS][NKV*hd] */
    float *kd, *vd; /* the values the cache holds */
} fixture;

static void fixture_make(fixture *f, int tk, int tv, int hd, float kscale) {
    f->tk = tk, f->tv = tv, f->hd = hd;
    const int kv_dim = NKV * hd, blocks = (NPOS + KV_KB - 1) / KV_KB;
    f->k = calloc((size_t)blocks, NKV * kv_k_head_block_bytes(tk, hd));
    f->v_row = kv_v_row_bytes(tv, kv_dim);
    f->v = calloc((size_t)blocks * KV_KB, f->v_row);
    f->kx = malloc(sizeof(float) * NPOS * kv_dim);
    f->vx = malloc(sizeof(float) * NPOS * kv_dim);
    f->kd = malloc(sizeof(float) * NPOS * kv_dim);
    f->vd = malloc(sizeof(float) * NPOS * kv_dim);
    for (int p = 0; p < NPOS; p++) {
        float *kx = f->kx + (size_t)p * kv_dim, *vx = f->vx + (size_t)p * kv_dim;
        for (int i = 0; i < kv_dim; i++) kx[i] = frand() * kscale, vx[i] = frand();
        kv_store_k(tk, hd, NKV, NKV, f->k, p, kx, f16_row_scalar);
        kv_store_v(tv, kv_dim, f->v, f->v_row, p, vx, f16_row_scalar);
        for (int i = 0; i < kv_dim; i++) {
            f->kd[(size_t)p * kv_dim + i] = cached(tk, kx[i]);
            f->vd[(size_t)p * kv_dim + i] = cached(tv, vx[i]);
        }
        if (tk == KV_Q8_0 || tv == KV_Q8_0) {
            block_q8_0 q[64];
            float back[2048];
            if (tk == KV_Q8_0) {
                quantize_row_q8_0(kx, q, kv_dim);
                dequantize_row(GGML_Q8_0, (const uint8_t *)q, back, kv_dim);
                memcpy(f->kd + (size_t)p * kv_dim, back, sizeof(float) * kv_dim);
            }
            if (tv == KV_Q8_0) {
                quantize_row_q8_0(vx, q, kv_dim);
                dequantize_row(GGML_Q8_0, (const uint8_t *)q, back, kv_dim);
                memcpy(f->vd + (size_t)p * kv_dim, back, sizeof(float) * kv_dim);
            }
        }
    }
}

static void fixture_free(fixture *f) {
    free(f->k);
    free(f->v);
    free(f->kx);
    free(f->vx);
    free(f->kd);
    free(f->vd);
}

/* softmax(q . k) v in double over the values the cache holds */
static void exact(const fixture *f, int head, const float *q, int n, double *out) {
    const int hd = f->hd, kv_dim = NKV * hd;
    double *s = malloc(sizeof(double) * n), mx = -INFINITY, sum = 0;
    for (int p = 0; p < n; p++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += (double)q[i] * f->kd[(size_t)p * kv_dim + head * hd + i];
        s[p] = d;
        if (d > mx) mx = d;
    }
    for (int p = 0; p < n; p++) sum += s[p] = exp(s[p] - mx);
    for (int i = 0; i < hd; i++) {
        double o = 0;
        for (int p = 0; p < n; p++) o += s[p] * f->vd[(size_t)p * kv_dim + head * hd + i];
        out[i] = o / sum;
    }
    free(s);
}

static void run_case(const kernel_ops *const *tables, int nt, int tk, int tv, int hd, float kscale) {
    fixture f;
    fixture_make(&f, tk, tv, hd, kscale);
    static float q[NQ][1024], want[NQ][1024], got[NQ][1024], alone[1024];
    attn_call c = {tk, tv, hd, NKV, 1, f.k, f.v, f.v_row, NQ, {0}, {0}, {0}};
    const int lens[NQ] = {1, 15, 16, 17, 100, NPOS - 1, NPOS};
    for (int i = 0; i < NQ; i++) {
        for (int d = 0; d < hd; d++) q[i][d] = frand() / sqrtf((float)hd);
        c.q[i] = q[i];
        c.n[i] = lens[i];
        c.out[i] = want[i];
    }
    attention_scalar(&c);
    double worst = 0, ex[1024];
    for (int i = 0; i < NQ; i++) {
        exact(&f, 1, q[i], lens[i], ex);
        for (int d = 0; d < hd; d++) {
            double e = fabs(want[i][d] - ex[d]);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst < 1e-5, "k %s v %s hd %d: truth vs double %g", kv_type_name(tk), kv_type_name(tv), hd, worst);
    for (int t = 0; t < nt; t++) {
        if (!tables[t]->attention) {
            CHECK(0, "%s: no attention kernel", tables[t]->isa);
            continue;
        }
        int same = 1;
        for (int loc = 0; loc < ATTN_PF_NLOC; loc++) { /* where the cache is prefetched: no bit moves */
            const int saved = attn_pf_loc;
            attn_pf_loc = loc;
            for (int i = 0; i < NQ; i++) c.out[i] = got[i];
            tables[t]->attention(&c);
            attn_pf_loc = saved;
            same = 1;
            for (int i = 0; i < NQ; i++) same &= !memcmp(got[i], want[i], sizeof(float) * hd);
            CHECK(same, "%s k %s v %s hd %d, prefetch %s: differs from the scalar truth", tables[t]->isa,
                  kv_type_name(tk), kv_type_name(tv), hd, ATTN_PF_NAMES[loc]);
        }
        /* each query alone, and the queries in the reverse order */
        for (int i = 0; i < NQ; i++) {
            attn_call one = c;
            one.nq = 1, one.q[0] = q[i], one.n[0] = lens[i], one.out[0] = alone;
            tables[t]->attention(&one);
            CHECK(!memcmp(alone, want[i], sizeof(float) * hd), "%s: query %d alone differs", tables[t]->isa, i);
        }
        attn_call rev = c;
        for (int i = 0; i < NQ; i++)
            rev.q[i] = q[NQ - 1 - i], rev.n[i] = lens[NQ - 1 - i], rev.out[i] = got[NQ - 1 - i];
        tables[t]->attention(&rev);
        same = 1;
        for (int i = 0; i < NQ; i++) same &= !memcmp(got[i], want[i], sizeof(float) * hd);
        CHECK(same, "%s: queries in another order differ", tables[t]->isa);
    }
    fixture_free(&f);
}

int main(void) {
    const kernel_ops *tables[8];
    int nt = kernels_available(tables, 8);
    for (int i = 0; i < nt; i++) printf("table: %s\n", tables[i]->isa);
    test_exp();
    test_f16_row(tables, nt);
    const int types[3] = {KV_F32, KV_F16, KV_Q8_0};
    const int hds[] = {64, 32, 128, 40, 8};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (size_t h = 0; h < sizeof hds / sizeof *hds; h++) {
                if ((types[a] == KV_Q8_0 || types[b] == KV_Q8_0) && hds[h] % 32) continue;
                run_case(tables, nt, types[a], types[b], hds[h], 1.0f);
                run_case(tables, nt, types[a], types[b], hds[h], 30.0f); /* peaked softmax: max moves */
            }
    /* layout sizes: F16 is half of F32; Q8_0 is 34 bytes per 32 values like GGML's */
    CHECK(kv_bytes_per_token(KV_F16, KV_F16, 8, 64) == 2 * 8 * 64 * 2, "f16 bytes per token");
    CHECK(kv_bytes_per_token(KV_Q8_0, KV_Q8_0, 8, 64) == 2 * 8 * 2 * 34, "q8_0 bytes per token");
    TEST_MAIN_END();
}
