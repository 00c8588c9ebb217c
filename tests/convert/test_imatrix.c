/* test_imatrix.c — importance matrices (src/convert/imatrix.c) and the forward's matmul hook
 * (lfm2c_model_set_matmul_hook, src/cpu/forward.c):
 * - the hook's rules as llama-imatrix's: plain products of fewer than 16 rows and names outside
 *   the blocks not taken (output.weight only when asked), expert rows counted per expert, a
 *   legacy file's single count spread over the experts, sizes that disagree or values that are
 *   not finite an error;
 * - the files against llama-imatrix's (tests/data/ppl, README there): its GGUF read and written
 *   back byte for byte, its legacy .dat read into the GGUF it makes of it byte for byte, both
 *   merged into the GGUF it merges them into byte for byte, and a legacy file written and read;
 * - the values: the synthetic dense and MoE models the goldens were made from (lfm2c synth, same
 *   bytes: checked by their sha256) read the golden text in chunks of 128 as llama-imatrix does
 *   (BOS first in each), and every sum is within 5e-4 of llama-imatrix's (relative; measured
 *   9e-5), every count equal; a hook that is set changes no logit;
 * - hostile files refused with a message (the fuzzer, fuzz_imatrix, goes further). */
#include "convert/imatrix.h"
#include "convert/synth.h"
#include "base/sha256.h"
#include "test.h"

#include <string.h>
#include <unistd.h>

static float rows[64 * 32];

static void fill(int n, int cols, float v) {
    for (int i = 0; i < n * cols; i++) rows[i] = v + (float)(i % cols);
}

static void test_hook_rules(void) {
    imatrix im;
    imatrix_init(&im);
    fill(20, 8, 1);
    imatrix_hook(&im, "blk.0.ffn_up.weight", -1, 1, rows, 8, NULL, 15, 8); /* under 16 rows */
    imatrix_hook(&im, "token_embd.weight", -1, 1, rows, 8, NULL, 20, 8);   /* the tied head */
    imatrix_hook(&im, "output.weight", -1, 1, rows, 8, NULL, 20, 8);       /* not asked for */
    CHECK(im.n == 0 && !im.error, "nothing taken: %u", im.n);
    imatrix_hook(&im, "blk.0.ffn_up.weight", -1, 1, rows, 8, NULL, 20, 8);
    const imatrix_entry *e = imatrix_find(&im, "blk.0.ffn_up.weight");
    CHECK(e && e->n_vals == 8 && e->n_counts == 1 && e->counts[0] == 20, "one entry, 20 rows");
    CHECK(e && e->sums[0] == 20 && e->sums[7] == 20 * 64, "squares summed: %g %g", e ? e->sums[0] : 0,
          e ? e->sums[7] : 0);
    const int pick[3] = {2, 0, 2};
    imatrix_hook(&im, "blk.1.ffn_down_exps.weight", 3, 4, rows, 8, pick, 3, 8); /* few rows: taken */
    e = imatrix_find(&im, "blk.1.ffn_down_exps.weight");
    CHECK(e && e->n_vals == 32 && e->n_counts == 4 && e->counts[3] == 3 && e->counts[0] == 0, "expert 3 of 4");
    CHECK(e && e->sums[3 * 8 + 1] == 3 * 4 && e->sums[1] == 0, "its rows: %g", e ? e->sums[25] : 0);
    imatrix_hook(&im, "blk.0.ffn_up.weight", -1, 1, rows, 8, NULL, 20, 7);
    CHECK(im.error == LFM2C_EINVAL && strstr(im.error_msg, "inconsistent"), "another width: %s", im.error_msg);
    im.error = 0;
    rows[0] = INFINITY;
    imatrix_hook(&im, "blk.2.attn_q.weight", -1, 1, rows, 8, NULL, 16, 8);
    CHECK(im.error == LFM2C_EINVAL && strstr(im.error_msg, "not finite"), "infinity: %s", im.error_msg);
    im.error = 0;
    im.process_output = true;
    fill(20, 8, 1);
    imatrix_hook(&im, "output.weight", -1, 1, rows, 8, NULL, 16, 8);
    CHECK(imatrix_find(&im, "output.weight") != NULL, "output.weight when asked");
    imatrix_free(&im);
}

/* a file's bytes equal another's */
static bool same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
    bool same = x && y && na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

static void test_files(void) {
    char out[128];
    snprintf(out, sizeof out, "/tmp/test_imatrix_%d.gguf", (int)getpid());
    lfm2c_error err = {0};
    imatrix im;
    imatrix_init(&im);
    CHECK(imatrix_load(&im, DATA("ppl/imatrix-moe-f32.gguf"), 128, &err) == 0, "llama's GGUF: %s", err.msg);
    CHECK(im.n == 27 && im.n_datasets == 1 && !strcmp(im.datasets[0], "text.txt"), "27 entries, its dataset");
    const imatrix_entry *e = imatrix_find(&im, "blk.2.ffn_gate_exps.weight");
    CHECK(e && e->n_counts == 8 && e->n_vals == 8 * 256, "an expert tensor: 8 counts");
    CHECK(imatrix_chunk_count(&im, 128) == 26, "26 chunks");
    CHECK(imatrix_save(&im, out, false, 128, &err) && same_file(out, DATA("ppl/imatrix-moe-f32.gguf")),
          "written back: the same bytes (%s)", err.msg);
    imatrix_free(&im);
    imatrix_init(&im);
    CHECK(imatrix_load(&im, DATA("ppl/imatrix-moe-f32.c8.dat"), 128, &err) == 0, "llama's .dat: %s", err.msg);
    CHECK(imatrix_save(&im, out, false, 128, &err) && same_file(out, DATA("ppl/imatrix-moe-f32.c8.from-dat.gguf")),
          "the GGUF llama-imatrix makes of it (%s)", err.msg);
    CHECK(imatrix_load(&im, DATA("ppl/imatrix-moe-f32.gguf"), 128, &err) == 0, "and the GGUF: %s", err.msg);
    CHECK(imatrix_save(&im, out, false, 128, &err) && same_file(out, DATA("ppl/imatrix-moe-f32.merged.gguf")),
          "merged as llama-imatrix merges them (%s)", err.msg);
    /* legacy out and in: sum / count * ncall, read back as sums over ncall * chunk rows */
    CHECK(imatrix_save(&im, out, true, 128, &err), "legacy: %s", err.msg);
    imatrix back;
    imatrix_init(&back);
    CHECK(imatrix_load(&back, out, 128, &err) == 0 && back.n == im.n, "read back: %s", err.msg);
    e = imatrix_find(&im, "blk.0.ffn_up.weight");
    const imatrix_entry *b = imatrix_find(&back, "blk.0.ffn_up.weight");
    CHECK(e && b && b->counts[0] == 34 * 128 && fabsf(b->sums[5] - e->sums[5]) < 1e-5f * e->sums[5],
          "34 chunks of sums: %g vs %g", b ? b->sums[5] : 0, e ? e->sums[5] : 0);
    CHECK(back.n_datasets == 1 && !strcmp(back.datasets[0], "text.txt"), "the last dataset");
    imatrix_free(&back);
    imatrix_free(&im);
    unlink(out);
}

/* hostile bytes: refused with a message, nothing left half-made */
static void test_hostile(void) {
    imatrix im;
    imatrix_init(&im);
    lfm2c_error err = {0};
    const uint8_t neg[] = {0xff, 0xff, 0xff, 0xff};
    CHECK(imatrix_load_bytes(&im, neg, 4, 128, &err) < 0 && err.code == LFM2C_EFORMAT, "no entries: %s", err.msg);
    uint8_t cut[] = {1, 0, 0, 0, 200, 0, 0, 0, 'b', 'l', 'k'};
    CHECK(imatrix_load_bytes(&im, cut, sizeof cut, 128, &err) < 0, "a cut name: %s", err.msg);
    uint8_t big[] = {1, 0, 0, 0, 1, 0, 0, 0, 'x', 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
    CHECK(imatrix_load_bytes(&im, big, sizeof big, 128, &err) < 0 && strstr(err.msg, "out of range"),
          "2^31 values claimed in 4 bytes: %s", err.msg);
    size_t n = 0;
    uint8_t *g = test_read_file(DATA("ppl/imatrix-dense-f32.gguf"), &n);
    CHECK(g && imatrix_load_bytes(&im, g, n / 2, 128, &err) < 0, "a GGUF cut in half: %s", err.msg);
    free(g);
    imatrix_free(&im);
}

/* The golden models (tests/data/ppl/README.md): written here, their digests checked. */
static bool make_model(bool moe, const char *path) {
    synth_config c;
    CHECK(synth_preset(moe ? "lfm2-8b-a1b" : "lfm2-350m", &c), "preset");
    c.hidden = 256, c.n_layer = 4, c.n_attn = 2, c.attn_layers[0] = 1, c.attn_layers[1] = 3;
    c.n_head = 4, c.n_head_kv = 2, c.ff = 512, c.vocab = 512;
    if (moe) c.n_expert = 8, c.n_expert_used = 2, c.expert_ff = 256, c.n_dense = 1;
    synth_params p = {.seed = 84, .n_threads = 2};
    lfm2c_error err = {0};
    bool ok = synth_write(&c, quant_ftype_find("f32"), &p, path, NULL, &err);
    CHECK(ok, "synth: %s", err.msg);
    size_t n = 0;
    char *bytes = ok ? test_read_file(path, &n) : NULL, hex[65] = "",
         *sums = test_read_file(DATA("ppl/models.sha256"), NULL);
    if (bytes) sha256_hex(bytes, n, hex);
    char line[128];
    snprintf(line, sizeof line, "%s  %s-f32.gguf", hex, moe ? "moe" : "dense");
    ok = bytes && sums && strstr(sums, line);
    CHECK(ok, "the golden model's bytes (%s): synth changed? the goldens need making again", line);
    free(bytes), free(sums);
    return ok;
}

/* The golden text's chunks of 128 through m with the hook collecting into im. */
static void collect(lfm2c_model *m, imatrix *im) {
    size_t len = 0;
    char *text = test_read_file(DATA("ppl/text.txt"), &len);
    lfm2c_error err = {0};
    int n = 0;
    int32_t *ids = text ? lfm2c_tokenize(m, text, len, true, false, &n, &err) : NULL;
    lfm2c_session *s = lfm2c_session_new(m, 128, &err);
    CHECK(ids && n == 3384 && s, "the text: %d tokens (%s)", n, err.msg);
    CHECK(lfm2c_model_set_matmul_hook(m, imatrix_hook, im, &err) == 0, "hook: %s", err.msg);
    for (int c = 0; s && ids && c < n / 128; c++) {
        int32_t t[128];
        memcpy(t, ids + c * 128, sizeof t);
        t[0] = 1; /* BOS */
        lfm2c_session_reset(s);
        CHECK(lfm2c_session_decode(s, t, 128, LFM2C_LOGITS_NONE, &err) == 0, "chunk %d: %s", c, err.msg);
    }
    lfm2c_model_set_matmul_hook(m, NULL, NULL, NULL);
    lfm2c_session_free(s);
    free(ids), free(text);
}

/* every value of im within tol of the golden's (relative), every count equal */
static void compare(const imatrix *im, const char *golden, double tol) {
    imatrix g;
    imatrix_init(&g);
    lfm2c_error err = {0};
    CHECK(imatrix_load(&g, golden, 128, &err) == 0, "%s: %s", golden, err.msg);
    CHECK(im->n == g.n && !im->error, "%u entries, llama-imatrix's %u (%s)", im->n, g.n, im->error_msg);
    double worst = 0;
    for (uint32_t i = 0; i < g.n; i++) {
        const imatrix_entry *a = imatrix_find(im, g.e[i].name), *b = &g.e[i];
        CHECK(a && a->n_vals == b->n_vals && a->n_counts == b->n_counts, "%s: its shape", b->name);
        if (!a || a->n_vals != b->n_vals || a->n_counts != b->n_counts) continue;
        CHECK(!memcmp(a->counts, b->counts, b->n_counts * sizeof *b->counts), "%s: counts %lld vs %lld", b->name,
              (long long)a->counts[0], (long long)b->counts[0]);
        for (uint32_t j = 0; j < b->n_vals; j++) {
            const double d = fabs((double)a->sums[j] - b->sums[j]) / (fabs(b->sums[j]) + 1e-6);
            if (d > worst) worst = d;
        }
    }
    CHECK(worst < tol, "%s: values within %g: %g", golden, tol, worst);
    printf("%s: largest relative difference %.2g\n", golden, worst);
    imatrix_free(&g);
}

static void test_goldens(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/test_imatrix_%d_model.gguf", (int)getpid());
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    for (int moe = 0; moe < 2; moe++) {
        if (!make_model(moe, path)) continue;
        lfm2c_error err = {0};
        lfm2c_model *m = lfm2c_model_open(path, &mp, &err);
        CHECK(m != NULL, "open: %s", err.msg);
        if (!m) continue;
        imatrix im;
        imatrix_init(&im);
        collect(m, &im);
        compare(&im, moe ? DATA("ppl/imatrix-moe-f32.gguf") : DATA("ppl/imatrix-dense-f32.gguf"), 5e-4);
        imatrix_free(&im);
        if (!moe) { /* a hook changes nothing */
            lfm2c_session *s = lfm2c_session_new(m, 16, &err);
            const int32_t t[16] = {1, 40, 41, 42, 43, 300, 301, 302, 50, 51, 52, 53, 54, 55, 56, 57};
            float a[512];
            CHECK(s && lfm2c_session_decode(s, t, 16, LFM2C_LOGITS_LAST, &err) == 0, "decode");
            memcpy(a, lfm2c_session_logits(s, 0), sizeof a);
            imatrix_init(&im);
            lfm2c_model_set_matmul_hook(m, imatrix_hook, &im, &err);
            lfm2c_session_reset(s);
            CHECK(lfm2c_session_decode(s, t, 16, LFM2C_LOGITS_LAST, &err) == 0, "decode with the hook");
            CHECK(!memcmp(a, lfm2c_session_logits(s, 0), sizeof a) && im.n > 0, "the same logits (%u entries)", im.n);
            lfm2c_model_set_matmul_hook(m, NULL, NULL, NULL);
            imatrix_free(&im);
            lfm2c_session_free(s);
        }
        lfm2c_model_free(m);
    }
    unlink(path);
}

int main(void) {
    test_hook_rules();
    test_files();
    test_hostile();
    test_goldens();
    TEST_MAIN_END();
}
