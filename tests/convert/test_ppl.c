/* test_ppl.c — the perplexity / KL divergence arithmetic and the logits file (src/convert/ppl.c):
 * a row packed into the file's 16-bit form reads back as the log-softmax within its step, a row
 * against its own packing has no divergence, a known two-token case has its analytic KL
 * divergence, the percentiles interpolate as the reference does, and the header reader takes
 * llama-perplexity's own file (tests/data/ppl/dense-f32.kld) and refuses every damaged one
 * without allocating what a hostile header claims. The figures against llama-perplexity's
 * printouts are tests/test_perplexity.sh's. */
#include "base/error.h"
#include "convert/ppl.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

/* a row of V logits, deterministic */
static void logits_of(float *x, int V, unsigned seed, float spread) {
    for (int i = 0; i < V; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = spread * ((float)(seed >> 8) / 16777216.0f - 0.5f);
    }
}

static void test_pack(void) {
    CHECK(kld_row_words(512) == 516 && kld_row_words(5) == 10 && kld_row_words(1) == 6, "row words");
    enum { V = 301 };
    float x[V];
    uint16_t row[V + 5];
    logits_of(x, V, 7, 40); /* a spread past the 16 kept below the top */
    double lse = 0, max = x[0];
    for (int i = 1; i < V; i++)
        if (x[i] > max) max = x[i];
    for (int i = 0; i < V; i++) lse += exp(x[i] - max);
    lse = max + log(lse);
    const int tok = 17;
    const double nll = kld_pack_row(x, V, tok, row);
    CHECK(fabs(nll - (lse - x[tok])) < 1e-4, "the NLL while packing: %g vs %g", nll, lse - x[tok]);
    CHECK(fabs(ppl_nll(x, V, tok) - (lse - x[tok])) < 1e-5, "ppl_nll: %g", ppl_nll(x, V, tok));
    float scale, minlp;
    memcpy(&scale, row, 4), memcpy(&minlp, row + 2, 4);
    CHECK(fabs(scale - 16.0 / 65535) < 1e-6, "scale %g", scale);
    double worst = 0;
    for (int i = 0; i < V; i++)
        if (x[i] > max - 16) {
            const double lp = scale * row[4 + i] + minlp, d = fabs(lp - (x[i] - lse));
            if (d > worst) worst = d;
        } else CHECK(row[4 + i] == 0, "below the kept range: 0 (%d)", row[4 + i]);
    CHECK(worst < scale, "log-probabilities within a step: %g", worst);
    CHECK(row[4 + V] == 0, "the padding word is 0");
}

static void test_kld(void) {
    enum { V = 512 };
    float x[V], dv[1], kv[1];
    uint16_t row[V + 4];
    logits_of(x, V, 3, 12);
    kld_pack_row(x, V, 5, row);
    kld_sums s = {0};
    kld_add_row(x, V, row, 5, &s, kv, dv);
    CHECK(fabs(kv[0]) < 1e-4 && s.same_top == 1 && fabs(dv[0]) < 1e-5, "itself: kld %g dp %g", kv[0], dv[0]);
    for (int i = 0; i < V; i++) x[i] += 3.5f; /* a shift changes no probability */
    kld_add_row(x, V, row, 5, &s, kv, dv);
    CHECK(fabs(kv[0]) < 1e-4 && s.same_top == 2 && s.count == 2, "shifted: kld %g", kv[0]);
    /* base p = (1/2, 1/2), Q q = (3/4, 1/4): KL(p || q) = ln(2/3) / 2 + ln 2 / 2 */
    const float base[2] = {0, 0}, q[2] = {(float)log(3.0), 0};
    uint16_t b[6];
    kld_pack_row(base, 2, 1, b);
    kld_sums t = {0};
    kld_add_row(q, 2, b, 1, &t, kv, dv);
    const double want = 0.5 * log(2.0 / 3) + 0.5 * log(2.0);
    CHECK(fabs(kv[0] - want) < 1e-5, "two tokens: %g vs %g", kv[0], want);
    CHECK(fabs(dv[0] - (0.25 - 0.5)) < 1e-6, "p(tok) difference %g", dv[0]);
    CHECK(t.same_top == 1, "the base's top is token 0 (a tie: the first), Q's token 0 too: %llu",
          (unsigned long long)t.same_top);
}

static void test_stats(void) {
    float kv[10], dv[10];
    for (int i = 0; i < 10; i++) kv[i] = (float)(10 - i), dv[i] = (float)i - 4.5f; /* unsorted */
    kld_sums s = {.count = 10};
    kld_stats st;
    kld_stats_of(&s, kv, dv, 10, &st);
    CHECK(st.kld_pct[0] == 10 && st.kld_pct[KLD_NPCT - 1] == 1, "max, min");
    CHECK(fabsf((float)st.kld_pct[4] - 9.1f) < 1e-5 && fabsf((float)st.kld_pct[5] - 5.5f) < 1e-6,
          "90%%: %g, median: %g", st.kld_pct[4], st.kld_pct[5]);
    CHECK(fabsf((float)st.dp_pct[5] - 2.25f) < 1e-5, "75%% of -4.5..4.5: %g", st.dp_pct[5]);
    double mean, err;
    ppl_mean_err(10, 20, 10, &mean, &err);
    CHECK(mean == 1 && err == 0, "ten values: no error given (%g)", err);
    ppl_mean_err(11, 21, 11, &mean, &err);
    CHECK(err > 0, "eleven: %g", err);
}

/* reads a header from bytes (through a temporary file: fmemopen is not in Windows' C library) */
static int header_of(const void *b, size_t n, kld_header *h, lfm2c_error *err) {
    FILE *f = tmpfile();
    if (!f || fwrite(b, 1, n, f) != n || fseek(f, 0, SEEK_SET)) {
        if (f) fclose(f);
        return lfm2c_set_error(err, LFM2C_EIO, "tmpfile"), -1;
    }
    int rc = kld_read_header(f, n, h, err);
    fclose(f);
    return rc;
}

static void test_header(void) {
    size_t n = 0;
    uint8_t *b = test_read_file(DATA("ppl/dense-f32.kld"), &n);
    CHECK(b != NULL, "llama-perplexity's file");
    if (!b) return;
    kld_header h;
    lfm2c_error err = {0};
    CHECK(header_of(b, n, &h, &err) == 0 && h.n_ctx == 128 && h.n_vocab == 512 && h.n_chunk == 4 && h.tokens[0] == 1,
          "its header: %s", err.msg);
    kld_header_free(&h);
    CHECK(header_of(b, n - 1, &h, &err) < 0 && err.code == LFM2C_EFORMAT, "a byte short: %s", err.msg);
    uint8_t *big = malloc(n + 1);
    memcpy(big, b, n), big[n] = 0;
    CHECK(header_of(big, n + 1, &h, &err) < 0, "a byte more: %s", err.msg);
    int32_t v;
    const struct {
        size_t at;
        int32_t v;
        const char *what;
    } bad[] = {{8, 1, "context 1"},
               {12, 0, "vocabulary 0"},
               {16, 0, "no chunk"},
               {16, INT32_MAX, "2^31 chunks"},
               {8, INT32_MAX, "a huge context"},
               {20, 512, "a token past the vocabulary"},
               {20, -1, "token -1"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memcpy(big, b, n);
        memcpy(&v, big + bad[i].at, 4);
        memcpy(big + bad[i].at, &bad[i].v, 4);
        err.code = 0;
        CHECK(header_of(big, n, &h, &err) < 0 && err.code == LFM2C_EFORMAT && !h.tokens, "%s refused: %s", bad[i].what,
              err.msg);
    }
    memcpy(big, b, n), big[0] = 'X';
    CHECK(header_of(big, n, &h, &err) < 0 && strstr(err.msg, "not a logits file"), "the magic: %s", err.msg);
    CHECK(header_of(b, 10, &h, &err) < 0, "cut in the header: %s", err.msg);
    /* written back, the header is the reference's bytes */
    CHECK(header_of(b, n, &h, &err) == 0, "again");
    FILE *f = tmpfile();
    CHECK(f && kld_write_header(f, h.n_ctx, h.n_vocab, h.n_chunk, h.tokens), "write");
    const size_t want = 20 + 4 * 128 * 4;
    char *out = calloc(1, want + 1);
    size_t len = f && out && !fseek(f, 0, SEEK_SET) ? fread(out, 1, want + 1, f) : 0;
    if (f) fclose(f);
    CHECK(out && len == want && !memcmp(out, b, len), "the same header bytes (%zu)", len);
    free(out);
    kld_header_free(&h);
    free(big);
    free(b);
}

int main(void) {
    test_pack();
    test_kld();
    test_stats();
    test_header();
    TEST_MAIN_END();
}
