/* test_vision_lm.c — images in the language model's forward (fwd_token.embd; the public image
 * API of lfm2c.h): for each case of data/vision/golden.json, the prompt libmtmd tokenized
 * (`Look: <__media__> what?`: text ids, the image's rows, text ids) with the rows our encoder
 * makes of the image libmtmd preprocessed gives the last logits of llama.cpp within the F32
 * tolerance; a batch of two prompts with images and one without equals each solo; images
 * through lfm2c_image_encode expand into the processor's tokens, their identity is the SHA-256
 * of their size and pixels, and two different images of the same size (the same placeholders)
 * never reuse each other's state, not even an image whose first row ids match, while the same
 * image does, and the reused state gives the fresh logits; lfm2c_image_encode_budget charges its
 * budget before each stage (the decode's share from the header alone: a 6400 x 6400 PNG bomb is
 * refused before a pixel is decoded), counts an EXIF turn's copy, and gives everything back,
 * refused at any stage or not; an image of more rows than the positions left is refused from its
 * header; the refusals (a text model's mmproj, a placeholder count that does
 * not match, going back into an image without a checkpoint). */
#include "test.h"
#include "vision/vision.h"
#include "base/sha256.h"

#include <jansson.h>
#include <string.h>

#define VDATA(name) DATA("vision/" name)

static lfm2c_model *open_model(void) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 2;
    p.type_k = p.type_v = LFM2C_KV_F32;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(VDATA("lfm2-vl-tiny-f32.gguf"), &p, &err);
    CHECK(m != NULL, "%s", err.msg);
    return m;
}

/* A case's prompt: its chunks with n_img ids below 0 for the image; rows encoded here. */
typedef struct vcase {
    const char *name;
    int32_t *ids;
    int n;
    float *rows;
} vcase;

static int load_case(json_t *c, const vis_model *vm, vcase *vc) {
    vc->name = json_string_value(json_object_get(c, "name"));
    const int w = (int)json_integer_value(json_object_get(c, "w")),
              h = (int)json_integer_value(json_object_get(c, "h"));
    const int nt = (int)json_integer_value(json_object_get(c, "n_tokens"));
    char path[256];
    snprintf(path, sizeof path, VDATA("%s.rgb"), vc->name);
    size_t n = 0;
    uint8_t *rgb = test_read_file(path, &n);
    if (!rgb || n != (size_t)w * h * 3 || vis_n_tokens(vm, w, h) != nt) return free(rgb), -1;
    float *planes = malloc(sizeof(float) * n);
    vc->rows = malloc(sizeof(float) * (size_t)nt * vm->hp.proj_dim);
    vis_normalize(vm, rgb, w, h, planes);
    lfm2c_error err = {0};
    int rc = vis_encode(vm, NULL, planes, w, h, vc->rows, &err);
    free(rgb);
    free(planes);
    json_t *ch = json_object_get(c, "chunks");
    vc->ids = malloc(sizeof(int32_t) * 4096);
    vc->n = 0;
    for (size_t i = 0; i < json_array_size(ch); i++) {
        json_t *part = json_array_get(ch, i);
        if (json_is_string(part))
            for (int k = 0; k < nt; k++) vc->ids[vc->n++] = -1 - k;
        else
            for (size_t k = 0; k < json_array_size(part); k++)
                vc->ids[vc->n++] = (int32_t)json_integer_value(json_array_get(part, k));
    }
    CHECK(vc->n == json_integer_value(json_object_get(c, "n_pos")), "%s: %d positions", vc->name, vc->n);
    return rc;
}

static float *solo(lfm2c_model *m, const vcase *vc) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 2048, &err);
    int rc = lfm2c_session_decode_embd(s, vc->ids, vc->rows, vc->n, LFM2C_LOGITS_LAST, &err);
    CHECK(rc == 0, "%s: %s", vc->name, err.msg);
    const int V = lfm2c_model_get_info(m)->n_vocab;
    float *l = malloc(sizeof(float) * V);
    memcpy(l, lfm2c_session_logits(s, 0), sizeof(float) * V);
    lfm2c_session_free(s);
    return l;
}

/* Every case's last logits against llama.cpp's; then two of them and a text prompt in a batch. */
static void test_goldens(lfm2c_model *m, json_t *cases) {
    lfm2c_error err = {0};
    vis_model *vm = vis_open(VDATA("mmproj-tiny-f32.gguf"), &err);
    CHECK(vm != NULL, "%s", err.msg);
    if (!vm) return;
    const int V = lfm2c_model_get_info(m)->n_vocab;
    const bool quick = getenv("LFM2C_TEST_QUICK") != NULL;
    vcase vc[8] = {0};
    float *logit[8] = {0};
    int nc = 0;
    for (size_t i = 0; i < json_array_size(cases) && nc < 8; i++) {
        json_t *c = json_array_get(cases, i);
        if (quick && !strcmp(json_string_value(json_object_get(c, "name")), "big")) continue;
        if (load_case(c, vm, &vc[nc])) {
            CHECK(0, "case %zu does not load", i);
            continue;
        }
        char path[256];
        snprintf(path, sizeof path, VDATA("%s.logits.f32.bin"), vc[nc].name);
        size_t nb = 0;
        float *want = test_read_file(path, &nb);
        logit[nc] = solo(m, &vc[nc]);
        CHECK(want && nb == sizeof(float) * V, "%s", path);
        double d = want && nb == sizeof(float) * V ? test_maxabs(logit[nc], want, (size_t)V) : 1e9;
        /* llama.cpp's rows came from libmtmd's clip context, with flash attention (K and V in
           F16): ours differ by that rounding (docs/VISION.md), more with more image tokens */
        const double tol = !strcmp(vc[nc].name, "big") ? 2.5e-2 : 3e-3;
        CHECK(d <= tol, "%s: logits vs llama.cpp's %g (limit %g)", vc[nc].name, d, tol);
        printf("%-10s logits vs llama.cpp's %.2e (limit %.0e)\n", vc[nc].name, d, tol);
        if (!strcmp(vc[nc].name, "one-tile")) { /* libmtmd's own rows: the forward alone, as text is held */
            size_t ne = 0;
            float *mt = test_read_file(VDATA("one-tile.f32.mtmd-embd.bin"), &ne), *keep = vc[nc].rows;
            CHECK(mt && ne == sizeof(float) * 64 * 64, "one-tile.f32.mtmd-embd.bin");
            vc[nc].rows = mt;
            float *l = mt && ne == sizeof(float) * 64 * 64 ? solo(m, &vc[nc]) : NULL;
            d = l && want ? test_maxabs(l, want, (size_t)V) : 1e9;
            CHECK(d <= 1e-3, "one-tile with libmtmd's rows: %g", d);
            printf("%-10s with libmtmd's rows %.2e (limit 1e-03)\n", vc[nc].name, d);
            vc[nc].rows = keep;
            free(mt), free(l);
        }
        free(want);
        nc++;
    }
    if (nc >= 2) { /* a batch: two image prompts and a text one, each as it was solo */
        const int32_t text[] = {1, 108, 143, 143, 139, 90};
        lfm2c_session *ss[3];
        for (int i = 0; i < 3; i++) ss[i] = lfm2c_session_new(m, 2048, &err);
        const int32_t *toks[3] = {vc[0].ids, vc[1].ids, text};
        const float *rows[3] = {vc[0].rows, vc[1].rows, NULL};
        const int n[3] = {vc[0].n, vc[1].n, 6}, mode[3] = {LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST};
        int rc = lfm2c_decode_batch_embd(ss, toks, rows, n, mode, 3, &err);
        CHECK(rc == 0, "batch: %s", err.msg);
        for (int i = 0; rc == 0 && i < 2; i++) {
            double d = test_maxabs(lfm2c_session_logits(ss[i], 0), logit[i], (size_t)V);
            CHECK(d <= 1e-4, "%s batched vs solo %g", vc[i].name, d);
        }
        lfm2c_session *t = lfm2c_session_new(m, 64, &err);
        lfm2c_session_decode(t, text, 6, LFM2C_LOGITS_LAST, &err);
        CHECK(rc == 0 && test_maxabs(lfm2c_session_logits(ss[2], 0), lfm2c_session_logits(t, 0), (size_t)V) <= 1e-4,
              "the text item of the batch");
        /* ids below 0 without rows are refused, naming the id */
        rc = lfm2c_session_decode(t, vc[0].ids + 8, 1, LFM2C_LOGITS_LAST, &err);
        CHECK(rc == -1 && strstr(err.msg, "out of range"), "%s", err.msg);
        lfm2c_session_free(t);
        for (int i = 0; i < 3; i++) lfm2c_session_free(ss[i]);
    }
    for (int i = 0; i < nc; i++) free(vc[i].ids), free(vc[i].rows), free(logit[i]);
    vis_close(vm);
}

static lfm2c_image *encode_file(lfm2c_mmproj *mm, const char *name) {
    char path[256];
    snprintf(path, sizeof path, VDATA("images/%s"), name);
    size_t n = 0;
    void *d = test_read_file(path, &n);
    lfm2c_error err = {0};
    lfm2c_image *img = d ? lfm2c_image_encode(mm, d, n, NULL, &err) : NULL;
    CHECK(img != NULL, "%s: %s", name, err.msg);
    free(d);
    return img;
}

/* The image's identity is the SHA-256 of its width, height (32-bit little-endian) and pixels. */
static void check_identity(const lfm2c_image *img, const char *name) {
    char path[256];
    snprintf(path, sizeof path, VDATA("images/%s"), name);
    size_t n = 0;
    uint8_t *d = test_read_file(path, &n);
    vis_image im;
    lfm2c_error err = {0};
    if (!d || vis_image_decode(d, n, NULL, &im, &err)) {
        CHECK(0, "%s: %s", name, err.msg);
        return free(d);
    }
    const uint8_t size[8] = {(uint8_t)im.w, (uint8_t)(im.w >> 8), 0, 0, (uint8_t)im.h, (uint8_t)(im.h >> 8), 0, 0};
    sha256_ctx c;
    uint8_t want[32], got[32] = {0};
    sha256_init(&c);
    sha256_update(&c, size, 8);
    sha256_update(&c, im.rgb, (size_t)im.w * im.h * 3);
    sha256_final(&c, want);
    lfm2c_image_info(img, NULL, NULL, NULL, NULL, got);
    CHECK(!memcmp(got, want, 32), "%s: the identity is the SHA-256 of its size and pixels", name);
    vis_image_free(&im);
    free(d);
}

/* "Look: <image> what?" with img: the expanded prompt (ids and rows). */
static int32_t *with_image(lfm2c_model *m, lfm2c_image *img, int *n, float **rows) {
    const int32_t ph = lfm2c_image_placeholder(m);
    const int32_t base[] = {1, 108, 143, 143, 139, 90, 64, ph, 298, 136, 299, 95};
    int32_t *out = NULL;
    lfm2c_error err = {0};
    int rc = lfm2c_prompt_images(m, base, 12, &img, 1, &out, n, rows, &err);
    CHECK(rc == 0, "%s", err.msg);
    return out;
}

static void test_reuse(lfm2c_model *m) {
    lfm2c_error err = {0};
    lfm2c_mmproj *mm = lfm2c_mmproj_open(VDATA("mmproj-tiny-f32.gguf"), m, &err);
    CHECK(mm != NULL, "%s", err.msg);
    if (!mm || !(vis_image_formats() >> VIS_IMG_PNG & 1)) return lfm2c_mmproj_free(mm);
    lfm2c_image *a = encode_file(mm, "rgb.png"), *b = encode_file(mm, "gray.png");
    if (!a || !b) return lfm2c_image_free(a), lfm2c_image_free(b), lfm2c_mmproj_free(mm);
    int na, nb, ra, rb;
    const int32_t *ta = lfm2c_image_tokens(a, &na), *tb = lfm2c_image_tokens(b, &nb);
    lfm2c_image_rows(a, &ra), lfm2c_image_rows(b, &rb);
    /* 45 x 29 at patch 4, merge 2: smart-resized to 64 x 32 (the minimum 64 tokens: 72 x 56?) */
    CHECK(na == ra + 2 && nb == na && ta[0] == 15 && ta[na - 1] == 16, "one image: start, %d rows, end (%d ids)", ra,
          na);
    int same = 0;
    int neg = 0;
    for (int i = 1; i < na - 1; i++) same += ta[i] == tb[i], neg += ta[i] < 0;
    CHECK(neg == na - 2, "row ids below 0: %d of %d", neg, na - 2);
    CHECK(same == 0, "two images' row ids: %d equal", same);
    check_identity(a, "rgb.png");
    check_identity(b, "gray.png");
    int n1, n2;
    float *r1, *r2;
    int32_t *p1 = with_image(m, a, &n1, &r1), *p2 = with_image(m, b, &n2, &r2);
    lfm2c_session *s = lfm2c_session_new(m, 1024, &err);
    lfm2c_session_set_checkpoints(s, 4, 64, 0, &err);
    lfm2c_session_decode_embd(s, p1, r1, n1, LFM2C_LOGITS_LAST, &err);
    const int first = 8; /* the image's first row */
    CHECK(lfm2c_session_reusable(s, p2, n2) <= first, "another image reuses %d positions (its rows start at %d)",
          lfm2c_session_reusable(s, p2, n2), first);
    CHECK(lfm2c_session_reusable(s, p1, n1) > first, "the same image reuses %d", lfm2c_session_reusable(s, p1, n1));
    /* an image crafted to match a's first rows (its ids a's up to half, then b's) reuses none of
       them: an image's rows are reused whole or not at all; nor does a's prompt from a session
       that holds only part of a's rows */
    int32_t *p3 = malloc(sizeof(int32_t) * (size_t)n1);
    memcpy(p3, p1, sizeof(int32_t) * (size_t)n1);
    memcpy(p3 + first + ra / 2, p2 + first + ra / 2, sizeof(int32_t) * (size_t)(ra - ra / 2));
    CHECK(lfm2c_session_reusable(s, p3, n1) <= first, "an image matching a's first %d rows reuses %d positions", ra / 2,
          lfm2c_session_reusable(s, p3, n1));
    lfm2c_session *part = lfm2c_session_new(m, 1024, &err);
    lfm2c_session_set_checkpoints(part, 4, 64, 0, &err);
    lfm2c_session_decode_embd(part, p1, r1, first + ra / 2, LFM2C_LOGITS_LAST, &err);
    CHECK(lfm2c_session_n_past(part) == first + ra / 2 && lfm2c_session_reusable(part, p1, n1) <= first,
          "half of a's rows held: %d reused", lfm2c_session_reusable(part, p1, n1));
    lfm2c_session_free(part);
    free(p3);
    /* sync to image b, feed the rest (rows after the reused ones), against a fresh session */
    int reused = 0;
    lfm2c_session_sync(s, p2, n2, &reused, &err);
    int skip = 0;
    for (int i = 0; i < reused; i++) skip += p2[i] < 0;
    int rc = lfm2c_session_decode_embd(s, p2 + reused, r2 + (size_t)skip * lfm2c_model_get_info(m)->n_embd, n2 - reused,
                                       LFM2C_LOGITS_LAST, &err);
    lfm2c_session *f = lfm2c_session_new(m, 1024, &err);
    rc |= lfm2c_session_decode_embd(f, p2, r2, n2, LFM2C_LOGITS_LAST, &err);
    const int V = lfm2c_model_get_info(m)->n_vocab;
    CHECK(rc == 0 && test_maxabs(lfm2c_session_logits(s, 0), lfm2c_session_logits(f, 0), (size_t)V) <= 1e-4,
          "after reuse (%d positions) the logits are the fresh ones: %s", reused, err.msg);
    /* speculative decoding over a history with an image: prompt lookup never drafts an image's
       row; a draft model (the model itself) reads them as token 0; greedy output = plain */
    for (int mode = 0; mode < 2 && rc == 0; mode++) {
        lfm2c_session *g = lfm2c_session_new(m, 1024, &err), *h = lfm2c_session_new(m, 1024, &err);
        lfm2c_session_decode_embd(g, p2, r2, n2, LFM2C_LOGITS_LAST, &err);
        lfm2c_session_decode_embd(h, p2, r2, n2, LFM2C_LOGITS_LAST, &err);
        lfm2c_sampler_params sp = lfm2c_sampler_default_params();
        sp.temperature = 0;
        lfm2c_sampler *smp = lfm2c_sampler_new(&sp, V);
        lfm2c_spec_params pp = lfm2c_spec_default_params();
        pp.lookup_min = mode ? 0 : 1, pp.lookup_max = mode ? 0 : 3, pp.draft_auto = false, pp.draft_max = 4;
        lfm2c_spec *spec = lfm2c_spec_new(m, mode ? m : NULL, 1024, &pp, &err);
        CHECK(spec != NULL, "%s", err.msg);
        int32_t plain[24], fast[40], last = lfm2c_sampler_sample(smp, lfm2c_session_logits(g, 0), NULL, 0);
        for (int i = 0; i < 24; i++) {
            plain[i] = i ? lfm2c_sampler_sample(smp, lfm2c_session_logits(g, 0), NULL, 0) : last;
            lfm2c_session_decode(g, &plain[i], 1, LFM2C_LOGITS_LAST, &err);
        }
        int nf = 0, k = 0;
        while (spec && nf < 24 &&
               (k = lfm2c_spec_step(spec, h, smp, nf ? fast[nf - 1] : last, fast + nf, 16, &err)) > 0)
            nf += k;
        CHECK(k > 0 && nf >= 23 && !memcmp(plain + 1, fast, sizeof(int32_t) * 23), "%s: spec over an image: %d %s",
              mode ? "draft model" : "lookup", k, err.msg);
        lfm2c_spec_free(spec);
        lfm2c_sampler_free(smp);
        lfm2c_session_free(g), lfm2c_session_free(h);
    }
    /* back into the image without a checkpoint there: refused, the session emptied */
    lfm2c_session_set_checkpoints(f, 0, 0, 0, &err);
    rc = lfm2c_session_truncate(f, first + 3, &err);
    CHECK(rc == -1 && strstr(err.msg, "image") && lfm2c_session_n_past(f) == 0, "truncate into an image: %d %s", rc,
          err.msg);
    /* placeholders and images must agree */
    int32_t *o = NULL;
    float *ro = NULL;
    int no;
    rc = lfm2c_prompt_images(m, p1, 3, &a, 1, &o, &no, &ro, &err);
    CHECK(rc == -1 && strstr(err.msg, "0 image placeholders for 1 image"), "%s", err.msg);
    lfm2c_session_free(s), lfm2c_session_free(f);
    free(p1), free(p2), free(r1), free(r2);
    lfm2c_image_free(a), lfm2c_image_free(b);
    lfm2c_mmproj_free(mm);
}

/* A budget that records what an encode charges: the first charge, the most held, what is held
 * now, and refuses the charge numbered `refuse` (0: none). */
typedef struct ledger {
    size_t first, held, most;
    int calls, refuse;
} ledger;

static int led_charge(void *u, size_t bytes) {
    ledger *l = u;
    if (!l->calls++) l->first = bytes;
    if (l->calls == l->refuse) return -1;
    l->held += bytes;
    l->most = l->held > l->most ? l->held : l->most;
    return 0;
}

static void led_release(void *u, size_t bytes) {
    ledger *l = u;
    CHECK(bytes <= l->held, "released %zu of %zu held", bytes, l->held);
    l->held -= bytes < l->held ? bytes : l->held;
}

static lfm2c_image *encode_led(lfm2c_mmproj *mm, const uint8_t *d, size_t n, ledger *l, int max_rows,
                               lfm2c_error *err) {
    const lfm2c_image_budget b = {led_charge, led_release, l, max_rows};
    return lfm2c_image_encode_budget(mm, d, n, NULL, &b, err);
}

/* The encode charges its budget before it allocates, the decode's share from the header alone:
 * the bomb (a small PNG whose header says 6400 x 6400) is charged its 123 MB of pixels
 * before a pixel is decoded, and refused there; an EXIF turn is charged a second copy; a refusal
 * at any stage leaves nothing charged; a granted encode gives back all it took. */
static void test_budget(lfm2c_model *m) {
    lfm2c_error err = {0};
    lfm2c_mmproj *mm = lfm2c_mmproj_open(VDATA("mmproj-tiny-f32.gguf"), m, &err);
    CHECK(mm != NULL, "%s", err.msg);
    if (!mm || !(vis_image_formats() >> VIS_IMG_PNG & 1)) return lfm2c_mmproj_free(mm);
    size_t n = 0;
    uint8_t *d = test_read_file(VDATA("images/rgb.png"), &n);
    if (!d) return lfm2c_mmproj_free(mm);
    ledger l = {0};
    lfm2c_image *img = encode_led(mm, d, n, &l, 0, &err);
    int w = 0, h = 0;
    if (img) lfm2c_image_info(img, &w, &h, NULL, NULL, NULL);
    CHECK(img && l.held == 0 && l.first >= (size_t)w * h * 3 && l.most >= l.first && l.calls >= 4,
          "rgb.png: %s; %d charges, first %zu, most %zu, %zu still held", err.msg, l.calls, l.first, l.most, l.held);
    lfm2c_image_free(img);
    int rows = 0;
    img = encode_led(mm, d, n, &(ledger){0}, 0, &err);
    lfm2c_image_rows(img, &rows);
    lfm2c_image_free(img);
    ledger few = {0}; /* fewer positions left than its rows: refused from the header, nothing charged */
    img = encode_led(mm, d, n, &few, rows - 1, &err);
    CHECK(!img && err.code == LFM2C_ECONTEXT && few.calls == 0, "%d rows, %d left: %s, %d charges", rows, rows - 1,
          err.msg, few.calls);
    lfm2c_image_free(img);
    img = encode_led(mm, d, n, &few, rows, &err);
    CHECK(img != NULL, "%d rows, as many left: %s", rows, err.msg);
    lfm2c_image_free(img);
    for (int refuse = 1; refuse <= l.calls; refuse++) { /* refused at each stage in turn */
        ledger r = {.refuse = refuse};
        img = encode_led(mm, d, n, &r, 0, &err);
        CHECK(!img && err.code == LFM2C_ENOMEM && strstr(err.msg, "memory budget") && r.held == 0,
              "charge %d refused: %s, %zu still held", refuse, err.msg, r.held);
        lfm2c_image_free(img);
    }
    /* the bomb: IHDR patched to 6400 x 6400 (its CRC is not checked before the header is read) */
    d[16] = d[20] = 0, d[17] = d[21] = 0, d[18] = d[22] = 0x19, d[19] = d[23] = 0x00;
    ledger b = {.refuse = 1};
    img = encode_led(mm, d, n, &b, 0, &err);
    CHECK(!img && b.calls == 1 && b.first >= (size_t)6400 * 6400 * 3 && strstr(err.msg, "memory budget"),
          "a 6400 x 6400 header: %d charges, the first %zu bytes: %s", b.calls, b.first, err.msg);
    free(d);
    d = test_read_file(VDATA("images/exif-6.png"), &n);
    ledger t = {0};
    img = d ? encode_led(mm, d, n, &t, 0, &err) : NULL;
    if (img) lfm2c_image_info(img, &w, &h, NULL, NULL, NULL);
    CHECK(img && t.first >= (size_t)w * h * 3 * 2 && t.held == 0, "exif-6.png: the turn charged: first %zu for %dx%d",
          t.first, w, h);
    lfm2c_image_free(img);
    free(d);
    lfm2c_mmproj_free(mm);
}

static void test_text_model(void) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 1;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(DATA("lfm2-tiny-moe-q4_0.gguf"), &p, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    lfm2c_mmproj *mm = lfm2c_mmproj_open(VDATA("mmproj-tiny-f32.gguf"), m, &err);
    CHECK(!mm && err.code == LFM2C_EUNSUPPORTED && strstr(err.msg, "not a vision-language model"), "%s", err.msg);
    CHECK(lfm2c_image_encode(NULL, "x", 1, NULL, &err) == NULL && strstr(err.msg, "mmproj"), "%s", err.msg);
    lfm2c_model_free(m);
}

int main(void) {
    json_error_t je;
    json_t *root = json_load_file(VDATA("golden.json"), 0, &je);
    CHECK(root != NULL, "golden.json: %s", je.text);
    lfm2c_model *m = open_model();
    if (!root || !m) TEST_MAIN_END();
    test_goldens(m, json_object_get(root, "cases"));
    test_reuse(m);
    test_budget(m);
    test_text_model();
    lfm2c_model_free(m);
    json_decref(root);
    TEST_MAIN_END();
}
