/* test_vision.c — the LFM2-VL encoder (src/vision/) against llama.cpp's libmtmd: for each case
 * of data/vision/golden.json (one legal size, a larger one, a tiny image scaled up, an extreme
 * aspect ratio, a big one scaled down; docs/VISION.md says how the goldens were made), the image
 * libmtmd preprocessed is normalised and encoded here, and the projected embeddings must match
 * libmtmd's for the mmproj in F32, F16 and Q8_0; the result is the same bits on one thread and
 * on several; the pieces (pixel unshuffle, the position resize) against direct computations;
 * the processor's sizes and tiles for a table of image sizes;
 * files and images that must be refused are, with a message; an mmproj whose patch size or
 * unshuffle factor would blow every image up is refused by the key's name. */
#include "test.h"
#include "vision/vision.h"
#include "formats/ggml_types.h"

#include <jansson.h>
#include <string.h>

#define VDATA(name) DATA("vision/" name)

static float *read_floats(const char *path, size_t want) {
    size_t n = 0;
    float *f = test_read_file(path, &n);
    if (f && n != want * sizeof(float)) {
        free(f);
        return NULL;
    }
    return f;
}

/* max |a - b| / max |b|: the error against the golden's scale */
static double rel_err(const float *a, const float *b, size_t n) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
    return test_maxabs(a, b, n) / (scale > 0 ? scale : 1);
}

static float *encode_case(const vis_model *vm, threadpool *pool, const char *name, int w, int h, int *n_tok) {
    char path[256];
    snprintf(path, sizeof path, VDATA("%s.rgb"), name);
    size_t n = 0;
    uint8_t *rgb = test_read_file(path, &n);
    CHECK(rgb && n == (size_t)w * h * 3, "%s: %zu bytes", path, n);
    if (!rgb || n != (size_t)w * h * 3) return free(rgb), NULL;
    float *planes = malloc(n * sizeof *planes);
    *n_tok = vis_n_tokens(vm, w, h);
    float *out = malloc((size_t)*n_tok * vm->hp.proj_dim * sizeof *out);
    vis_normalize(vm, rgb, w, h, planes);
    lfm2c_error err = {0};
    int rc = vis_encode(vm, pool, planes, w, h, out, &err);
    CHECK(rc == 0, "%s: %s", name, err.msg);
    free(rgb);
    free(planes);
    if (rc) return free(out), NULL;
    return out;
}

/* Every case of the golden against the mmproj of type tname within tol (relative). */
static void test_goldens(const char *tname, double tol, threadpool *pool) {
    char path[256];
    snprintf(path, sizeof path, VDATA("mmproj-tiny-%s.gguf"), tname);
    lfm2c_error err = {0};
    vis_model *vm = vis_open(path, &err);
    CHECK(vm != NULL, "%s: %s", path, err.msg);
    json_error_t je;
    json_t *g = json_load_file(VDATA("golden.json"), 0, &je);
    CHECK(g != NULL, "golden.json: %s", je.text);
    if (!vm || !g) goto done;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(g, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const int w = (int)json_integer_value(json_object_get(c, "w")),
                  h = (int)json_integer_value(json_object_get(c, "h"));
        const int want_tok = (int)json_integer_value(json_object_get(c, "n_tokens"));
        if (getenv("LFM2C_TEST_QUICK") && want_tok > 512) continue; /* the ARM stage under qemu */
        snprintf(path, sizeof path, VDATA("%s.%s.embd.bin"), name, tname);
        float *gold = read_floats(path, (size_t)want_tok * vm->hp.proj_dim);
        if (!gold) {
            CHECK(strcmp(tname, "f32"), "%s missing", path); /* only F32 has every case */
            continue;
        }
        int n_tok = 0;
        float *out = encode_case(vm, pool, name, w, h, &n_tok);
        CHECK(n_tok == want_tok, "%s: %d tokens, libmtmd %d", name, n_tok, want_tok);
        if (out && n_tok == want_tok) {
            const double e = rel_err(out, gold, (size_t)n_tok * vm->hp.proj_dim);
            CHECK(e < tol, "%s %s (%dx%d): relative error %.3g >= %.3g", name, tname, w, h, e, tol);
            printf("  %-9s %-5s %3dx%-3d %4d tokens: relative error %.2e\n", name, tname, w, h, n_tok, e);
        }
        free(out);
        free(gold);
    }
done:
    json_decref(g);
    vis_close(vm);
}

/* one thread or several: the same bits */
static void test_threads(threadpool *pool) {
    lfm2c_error err = {0};
    vis_model *vm = vis_open(VDATA("mmproj-tiny-q8_0.gguf"), &err);
    CHECK(vm != NULL, "%s", err.msg);
    if (!vm) return;
    int n1 = 0, n2 = 0;
    float *a = encode_case(vm, NULL, "larger", 160, 96, &n1), *b = encode_case(vm, pool, "larger", 160, 96, &n2);
    CHECK(a && b && n1 == n2 && !memcmp(a, b, (size_t)n1 * vm->hp.proj_dim * sizeof *a), "threads change the result");
    free(a);
    free(b);
    vis_close(vm);
}

static void test_unshuffle(void) {
    /* a 3 x 3 grid of 2 channels, factor 2: 2 x 2 tokens of 8, the missing cells zero */
    float x[9 * 2], out[4 * 8];
    for (int i = 0; i < 18; i++) x[i] = (float)(i + 1);
    vis_unshuffle(x, 3, 3, 2, 2, out);
    for (int Y = 0; Y < 2; Y++)
        for (int X = 0; X < 2; X++)
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                    for (int c = 0; c < 2; c++) {
                        const int sy = 2 * Y + dy, sx = 2 * X + dx;
                        const float want = sy < 3 && sx < 3 ? x[(sy * 3 + sx) * 2 + c] : 0;
                        const float got = out[(Y * 2 + X) * 8 + (dy * 2 + dx) * 2 + c];
                        CHECK(got == want, "unshuffle (%d,%d) [%d][%d][%d]: %g, want %g", Y, X, dy, dx, c, got, want);
                    }
}

static void test_pos_resize(void) {
    enum { S = 4, N = 3 };
    float pos[S * S * N], out[7 * 5 * N];
    for (int i = 0; i < S * S * N; i++) pos[i] = (float)(i % N) * 0.5f + 1;
    vis_pos_resize(pos, S, N, 7, 5, out); /* a constant per channel stays that constant */
    for (int i = 0; i < 7 * 5 * N; i++)
        CHECK(fabsf(out[i] - ((float)(i % N) * 0.5f + 1)) < 1e-6f, "resize of a constant at %d", i);
    for (int i = 0; i < S * S * N; i++) pos[i] = (float)i;
    vis_pos_resize(pos, S, N, S, S, out); /* the grid's own size: itself */
    CHECK(!memcmp(out, pos, sizeof pos), "resize to the same grid changed it");
    /* a 4 x 4 grid to 2 x 3 and to 7 x 5: every source cell whose triangle (half-width the scale,
     * at least one cell) reaches the output cell's centre, weighted, normalised */
    const int sizes[2][2] = {{2, 3}, {7, 5}};
    for (int k = 0; k < 2; k++) {
        const int w = sizes[k][0], h = sizes[k][1];
        vis_pos_resize(pos, S, N, w, h, out);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < N; c++) {
                    double sum = 0, tot = 0;
                    const double sx = (double)S / w, sy = (double)S / h, cx = (x + 0.5) * sx, cy = (y + 0.5) * sy;
                    const double hx = sx > 1 ? sx : 1, hy = sy > 1 ? sy : 1;
                    for (int j = 0; j < S; j++)
                        for (int i = 0; i < S; i++) {
                            const double wx = 1 - fabs(i + 0.5 - cx) / hx, wy = 1 - fabs(j + 0.5 - cy) / hy;
                            if (wx <= 0 || wy <= 0) continue;
                            sum += wx * wy * pos[(j * S + i) * N + c];
                            tot += wx * wy;
                        }
                    const double want = sum / tot, got = out[(y * w + x) * N + c];
                    CHECK(fabs(got - want) < 1e-4, "resize to %dx%d at (%d,%d,%d): %g, want %g", w, h, x, y, c, got,
                          want);
                }
    }
}

/* The processor's sizes, worked by hand from Lfm2VlImageProcessor's rule (docs/VISION.md) with its
 * defaults: patch 16, downsample 2, 64..256 tokens, 512 tiles, 2..10 of them, a thumbnail,
 * tolerance 2. {w, h, resized w, resized h (the thumbnail when tiled), cols, rows, tokens} */
static void test_plan(void) {
    static const int T[][7] = {
        {512, 512, 512, 512, 0, 0, 256},    /* at the maximum: as it is */
        {100, 50, 384, 192, 0, 0, 72},      /* below the minimum: scaled up, aspect kept */
        {48, 80, 224, 352, 0, 0, 77},       /* below, portrait */
        {592, 336, 576, 320, 0, 0, 180},    /* 18.5 and 10.5 patch pairs: halves to even */
        {700, 700, 512, 512, 0, 0, 256},    /* over the maximum, under the tolerance: one image */
        {1000, 1000, 512, 512, 2, 2, 1280}, /* tiled 2 x 2 + thumbnail */
        {2000, 1000, 704, 352, 4, 2, 2290}, /* 2:1 ties 4 x 2 (area under twice the image's) */
        {1920, 1080, 672, 384, 4, 2, 2300}, /* 2:1 nearest 16:9 */
        {3000, 4000, 416, 576, 2, 3, 1770}, /* portrait grid */
        {4000, 100, 3232, 64, 0, 0, 202},   /* extreme aspect, not too large: one image */
        {10000, 10, 16160, 32, 0, 0, 505},  /* one patch pair high: over max_tokens, as the rule says */
        {1, 1, 256, 256, 0, 0, 64},         /* a pixel */
    };
    const vis_prep_params p = vis_prep_default();
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        vis_prep_plan pl;
        CHECK(vis_plan(&p, T[i][0], T[i][1], &pl) == 0, "plan %dx%d", T[i][0], T[i][1]);
        CHECK(pl.w == T[i][2] && pl.h == T[i][3] && pl.cols == T[i][4] && pl.rows == T[i][5] && pl.tokens == T[i][6] &&
                  pl.thumbnail == (T[i][4] > 0),
              "%dx%d: %dx%d, %dx%d tiles, %d tokens; want %dx%d, %dx%d, %d", T[i][0], T[i][1], pl.w, pl.h, pl.cols,
              pl.rows, pl.tokens, T[i][2], T[i][3], T[i][4], T[i][5], T[i][6]);
    }
    vis_prep_plan pl;
    CHECK(vis_plan(&p, 0, 5, &pl) == -1 && vis_plan(&p, 5, -1, &pl) == -1, "sides <= 0 accepted");
    vis_prep_params one = p;
    one.split = false;
    CHECK(vis_plan(&one, 2000, 1000, &pl) == 0 && pl.cols == 0 && pl.w == 704 && pl.tokens == 242,
          "no splitting: %dx%d", pl.w, pl.h);
}

/* The fixture mmproj with the uint32 value of `key` set to v, opened from memory: NULL with err. */
static vis_model *open_with(const uint8_t *d, size_t n, const char *key, uint32_t v, uint8_t *copy, lfm2c_error *err) {
    memcpy(copy, d, n);
    const size_t kl = strlen(key);
    for (size_t i = 8; i + kl + 8 <= n; i++)
        if (!memcmp(copy + i, key, kl) && copy[i - 8] == kl && copy[i + kl] == 4 /* GGUF_TYPE_UINT32 */) {
            memcpy(copy + i + kl + 4, &v, 4); /* little-endian, as the file */
            break;
        }
    gguf_file *g = gguf_open_memory(copy, n, err);
    return g ? vis_open_gguf(g, encoder_for(NULL, NULL, NULL), err) : NULL;
}

/* An mmproj's patch size and unshuffle factor decide every image's size: past the bounds (32, 4)
 * a file is refused by the key's name, before its tensors (whose shapes an attacker can make
 * agree) are looked at; within them it opens. */
static void test_hostile_sizes(void) {
    size_t n = 0;
    uint8_t *d = test_read_file(VDATA("mmproj-tiny-f32.gguf"), &n), *copy = d ? malloc(n) : NULL;
    CHECK(copy != NULL, "mmproj-tiny-f32.gguf");
    if (!copy) return free(d);
    static const struct {
        const char *key;
        uint32_t v;
        bool ok;
    } cases[] = {{"clip.vision.patch_size", 33, false},
                 {"clip.vision.patch_size", 64, false},
                 {"clip.vision.patch_size", 0, false},
                 {"clip.vision.projector.scale_factor", 5, false},
                 {"clip.vision.projector.scale_factor", 8, false},
                 {"clip.vision.projector.scale_factor", 2, true}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lfm2c_error err = {0};
        vis_model *vm = open_with(d, n, cases[i].key, cases[i].v, copy, &err);
        if (cases[i].ok) CHECK(vm != NULL, "%s %u: %s", cases[i].key, cases[i].v, err.msg);
        else
            CHECK(!vm && strstr(err.msg, cases[i].key) && strstr(err.msg, "out of range"), "%s %u: %s", cases[i].key,
                  cases[i].v, err.msg);
        vis_close(vm);
    }
    free(copy);
    free(d);
}

static void test_refusals(void) {
    lfm2c_error err = {0};
    CHECK(vis_open(VDATA("lfm2-vl-tiny-f32.gguf"), &err) == NULL && strstr(err.msg, "projector type"),
          "a language model as mmproj: %s", err.msg);
    vis_model *vm = vis_open(VDATA("mmproj-tiny-f32.gguf"), &err);
    CHECK(vm != NULL, "%s", err.msg);
    if (!vm) return;
    float px[3 * 6 * 6] = {0}, out[64 * 64];
    CHECK(vis_encode(vm, NULL, px, 6, 6, out, &err) == -1 && strstr(err.msg, "multiple of 4"), "6x6 image: %s",
          err.msg);
    CHECK(vis_encode(vm, NULL, px, 0, 4, out, &err) == -1, "0-wide image accepted");
    CHECK(vis_encode(vm, NULL, px, 4096, 4096, out, &err) == -1 && strstr(err.msg, "more than"), "huge image: %s",
          err.msg);
    vis_close(vm);
}

int main(void) {
    threadpool *pool = threadpool_new(3);
    test_plan();
    test_unshuffle();
    test_pos_resize();
    test_refusals();
    test_hostile_sizes();
    test_threads(pool);
    /* libmtmd's own roundings decide the tolerances (docs/VISION.md): its GELU is an F16 table, its
     * F16 products round the activations to F16, its Q8_0 products quantize them to Q8_0, so a
     * value a last bit away on either side of a rounding step moves by that step */
    test_goldens("f32", 5e-4, pool);
    test_goldens("f16", 2e-3, pool);
    test_goldens("q8_0", 3e-2, pool);
    threadpool_free(pool);
    TEST_MAIN_END();
}
