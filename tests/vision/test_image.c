/* test_image.c — images in (src/vision/image.c, resample.c): each fixture of
 * data/vision/images (PNG RGB / RGBA / grey / palette with tRNS, JPEG baseline / progressive /
 * grey, CMYK, with each EXIF orientation and malformed EXIF data, WebP lossless / lossy / with
 * alpha / animated, GIF) decodes to the pixels Hugging Face's load_image gives for it
 * (images.json, tests/vision/make_images.py); the limits refuse a file over the byte limit and a
 * header over the pixel limit (a 60000 x 60000 PNG, JPEG and GIF made by patching the fixtures'
 * headers) before decoding; truncated and garbled files are clear errors; Pillow's BILINEAR
 * resize is reproduced bit for bit (FNV-1a digests of its output for up- and downscales), and so
 * are the processor's tiles and thumbnail of two tiled images. Formats this build lacks are
 * skipped, saying so. */
#include "test.h"
#include "vision/vision.h"

#include <jansson.h>
#include <string.h>

#define IDATA(name) DATA("vision/images/" name)

static uint64_t fnv(const uint8_t *d, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 0x100000001b3ull;
    return h;
}

static uint8_t *pattern(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)((31 * x + 17 * y + 89 * c + (x * y) % 13) % 256);
    return p;
}

static bool have(const char *file) {
    const char *ext = strrchr(file, '.');
    int f = !strcmp(ext, ".jpg")    ? VIS_IMG_JPEG
            : !strcmp(ext, ".png")  ? VIS_IMG_PNG
            : !strcmp(ext, ".webp") ? VIS_IMG_WEBP
                                    : VIS_IMG_GIF;
    return vis_image_formats() >> f & 1;
}

/* The EXIF orientation make_images.py gave a fixture (exif-6.jpg, exif-be-6.jpg, exif-8-lossy.webp:
 * the first digit of its name; exif-bad-count.jpg a 6 with a count of 2, read as Pillow reads it;
 * the other malformed ones, and files without EXIF, 1). */
static int orientation_of(const char *name) {
    const char *d = strpbrk(name, "0123456789");
    if (strstr(name, "bad-count")) return 6;
    return !strncmp(name, "exif-", 5) && d ? *d - '0' : 1;
}

static void test_files(json_t *files) {
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) {
        const char *name = json_string_value(json_object_get(f, "file"));
        const int w = (int)json_integer_value(json_object_get(f, "w")),
                  h = (int)json_integer_value(json_object_get(f, "h"));
        if (!have(name)) {
            printf("SKIP %s: this build has no decoder for it\n", name);
            continue;
        }
        char path[256];
        snprintf(path, sizeof path, IDATA("%s"), name);
        size_t n = 0, nr = 0;
        uint8_t *d = test_read_file(path, &n);
        snprintf(path, sizeof path, IDATA("%s.rgb"), name);
        uint8_t *want = test_read_file(path, &nr);
        vis_image im;
        lfm2c_error err = {0};
        int rc = d ? vis_image_decode(d, n, NULL, &im, &err) : -1;
        if (rc && err.code == LFM2C_EUNSUPPORTED && strstr(err.msg, "libwebpdemux")) {
            printf("SKIP %s: %s\n", name, err.msg); /* a build without it refuses it by name */
            free(d), free(want);
            continue;
        }
        CHECK(rc == 0 && im.w == w && im.h == h, "%s: rc %d %s (%dx%d)", name, rc, err.msg, rc ? 0 : im.w,
              rc ? 0 : im.h);
        /* the header alone says the decoded size, the turn and what the decode holds */
        vis_image_head hd;
        const int prc = d ? vis_image_probe(d, n, NULL, &hd, &err) : -1;
        const int64_t pw = hd.orient >= 5 ? hd.h : hd.w, ph = hd.orient >= 5 ? hd.w : hd.h;
        const size_t px = (size_t)w * h * 3;
        CHECK(prc == 0 && pw == w && ph == h && hd.orient == orientation_of(name) &&
                  vis_image_decode_bytes(&hd) >= px * (hd.orient >= 2 ? 2 : 1),
              "%s: the header says %lldx%lld turned %d, %zu bytes", name, (long long)hd.w, (long long)hd.h, hd.orient,
              vis_image_decode_bytes(&hd));
        if (rc == 0 && want && nr == (size_t)w * h * 3) {
            size_t diff = 0;
            for (size_t k = 0; k < nr; k++) diff += im.rgb[k] != want[k];
            CHECK(diff == 0, "%s: %zu of %zu bytes differ from Pillow's", name, diff, nr);
        }
        /* every truncation of the file is an error, never a crash (a short PNG / GIF / WebP);
           JPEG decoders pad a truncated stream, so it may decode */
        for (size_t cut = 0; d && cut < n; cut += n / 7 + 1) {
            vis_image t;
            if (vis_image_decode(d, cut, NULL, &t, &err) == 0) vis_image_free(&t);
            else CHECK(err.msg[0] != 0, "%s cut at %zu: a message", name, cut);
        }
        /* a pixel limit below its size refuses it before decoding */
        vis_image_limits lim = vis_image_default_limits();
        lim.max_pixels = (int64_t)w * h - 1;
        vis_image t;
        rc = d ? vis_image_decode(d, n, &lim, &t, &err) : 0;
        CHECK(rc == -1 && err.code == LFM2C_ETOOLARGE && strstr(err.msg, "over the limit"), "%s pixel limit: %d %s",
              name, rc, err.msg);
        lim = vis_image_default_limits();
        lim.max_bytes = n - 1;
        rc = d ? vis_image_decode(d, n, &lim, &t, &err) : 0;
        CHECK(rc == -1 && err.code == LFM2C_ETOOLARGE, "%s byte limit: %d %s", name, rc, err.msg);
        if (rc == 0) vis_image_free(&t);
        vis_image_free(&im);
        free(d);
        free(want);
    }
}

static uint32_t crc32_png(const uint8_t *d, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (uint8_t)v; }

/* A header claiming 60000 x 60000 pixels (a decompression bomb's) is refused at once. */
static void test_bombs(void) {
    const char *names[] = {"rgb.png", "baseline.jpg", "palette.gif"};
    for (int i = 0; i < 3; i++) {
        if (!have(names[i])) continue;
        char path[256];
        snprintf(path, sizeof path, IDATA("%s"), names[i]);
        size_t n = 0;
        uint8_t *d = test_read_file(path, &n);
        if (!d) continue;
        if (i == 0) { /* IHDR: width, height at 16; its CRC after the 13 bytes of data */
            put32(d + 16, 60000), put32(d + 20, 60000);
            put32(d + 29, crc32_png(d + 12, 17));
        } else if (i == 1) { /* the SOF0 marker's height and width */
            for (size_t k = 2; k + 9 < n; k++)
                if (d[k] == 0xFF && (d[k + 1] == 0xC0 || d[k + 1] == 0xC2)) {
                    d[k + 5] = d[k + 7] = 0xEA, d[k + 6] = d[k + 8] = 0x60;
                    break;
                }
        } else {
            d[6] = d[8] = 0x60, d[7] = d[9] = 0xEA; /* the logical screen, little-endian */
        }
        vis_image im;
        lfm2c_error err = {0};
        int rc = vis_image_decode(d, n, NULL, &im, &err);
        CHECK(rc == -1 && err.code == LFM2C_ETOOLARGE && strstr(err.msg, "60000 x 60000"), "%s bomb: %d %s", names[i],
              rc, err.msg);
        free(d);
    }
    vis_image im;
    lfm2c_error err = {0};
    CHECK(vis_image_decode((const uint8_t *)"hello, not an image", 19, NULL, &im, &err) == -1 &&
              strstr(err.msg, "not a JPEG, PNG, WebP or GIF"),
          "%s", err.msg);
    CHECK(vis_image_decode((const uint8_t *)"\x89PNG\r\n\x1a\nxxxxxxxxxxxxxxxxxxxxxxxxxxx", 35, NULL, &im, &err) ==
                  -1 &&
              strstr(err.msg, "corrupt PNG"),
          "%s", err.msg);
}

/* progressive.jpg with its last scan (the SOS segment and its entropy-coded data) repeated k more
 * times before the EOI: libjpeg takes a repeated scan with a warning, so only the scan limit stops
 * a file of endless scans. NULL if the file is not as expected. */
static uint8_t *many_scans(const uint8_t *d, size_t n, int k, size_t *out_n) {
    size_t at = 2, scan = 0, scan_end = 0;
    while (at + 4 <= n && d[at] == 0xFF) {
        const uint8_t m = d[at + 1];
        if (m == 0xD9) break; /* EOI */
        const size_t len = (size_t)d[at + 2] << 8 | d[at + 3];
        size_t next = at + 2 + len;
        if (m == 0xDA) { /* the scan's data runs to the next marker that is not a stuffed 0 or a restart */
            while (next + 1 < n && !(d[next] == 0xFF && d[next + 1] != 0 && (d[next + 1] < 0xD0 || d[next + 1] > 0xD7)))
                next++;
            scan = at, scan_end = next;
        }
        at = next;
    }
    if (!scan || at + 2 > n || d[at + 1] != 0xD9) return NULL;
    const size_t one = scan_end - scan;
    uint8_t *o = malloc(n + one * (size_t)k);
    memcpy(o, d, at);
    for (int i = 0; i < k; i++) memcpy(o + at + one * i, d + scan, one);
    memcpy(o + at + one * (size_t)k, d + at, n - at);
    *out_n = n + one * (size_t)k;
    return o;
}

/* A progressive JPEG of more scans than libjpeg-turbo advises for untrusted files (a CPU bomb: each
 * scan is a pass over every block) is refused; one of a few repeated scans still decodes. */
static void test_scans(void) {
    if (!have("progressive.jpg")) return;
    size_t n = 0, m = 0;
    uint8_t *d = test_read_file(IDATA("progressive.jpg"), &n);
    for (int k = 0; d && k < 2; k++) {
        uint8_t *x = many_scans(d, n, k ? 600 : 40, &m);
        CHECK(x != NULL, "progressive.jpg: no scan found");
        if (!x) break;
        vis_image im;
        lfm2c_error err = {0};
        const int rc = vis_image_decode(x, m, NULL, &im, &err);
        if (k) CHECK(rc == -1 && strstr(err.msg, "more than 500 scans"), "600 more scans: %d %s", rc, err.msg);
        else CHECK(rc == 0 && im.w == 45 && im.h == 29, "40 more scans: %d %s", rc, err.msg);
        if (!rc) vis_image_free(&im);
        free(x);
    }
    free(d);
}

static void test_resize(json_t *rs) {
    size_t i;
    json_t *r;
    json_array_foreach(rs, i, r) {
        const int sw = (int)json_integer_value(json_array_get(json_object_get(r, "src"), 0));
        const int sh = (int)json_integer_value(json_array_get(json_object_get(r, "src"), 1));
        const int dw = (int)json_integer_value(json_array_get(json_object_get(r, "dst"), 0));
        const int dh = (int)json_integer_value(json_array_get(json_object_get(r, "dst"), 1));
        uint8_t *src = pattern(sw, sh), *dst = malloc((size_t)dw * dh * 3);
        CHECK(vis_resize(src, sw, sh, dst, dw, dh) == 0, "resize");
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv(dst, (size_t)dw * dh * 3));
        CHECK(!strcmp(hex, json_string_value(json_object_get(r, "fnv"))), "%dx%d -> %dx%d: %s", sw, sh, dw, dh, hex);
        free(src);
        free(dst);
    }
}

/* vis_prepare with the processor's defaults: the plan, then every tile and the thumbnail. */
static void test_cuts(json_t *cuts) {
    size_t i;
    json_t *c;
    json_array_foreach(cuts, i, c) {
        json_t *src = json_object_get(c, "src"), *grid = json_object_get(c, "grid"), *th = json_object_get(c, "thumb");
        vis_image im = {(int)json_integer_value(json_array_get(src, 0)),
                        (int)json_integer_value(json_array_get(src, 1)), NULL};
        im.rgb = pattern(im.w, im.h);
        vis_prep_params pp = vis_prep_default();
        vis_prepared out;
        lfm2c_error err = {0};
        int rc = vis_prepare(&pp, &im, &out, &err);
        json_t *fn = json_object_get(c, "fnv");
        CHECK(rc == 0 && out.plan.cols == json_integer_value(json_array_get(grid, 0)) &&
                  out.plan.rows == json_integer_value(json_array_get(grid, 1)) && out.n == (int)json_array_size(fn),
              "%dx%d: rc %d grid %dx%d, %d images", im.w, im.h, rc, out.plan.cols, out.plan.rows, out.n);
        CHECK(rc == 0 && out.img[out.n - 1].w == json_integer_value(json_array_get(th, 0)) &&
                  out.img[out.n - 1].h == json_integer_value(json_array_get(th, 1)),
              "thumbnail size");
        for (int k = 0; rc == 0 && k < out.n && k < (int)json_array_size(fn); k++) {
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx",
                     (unsigned long long)fnv(out.img[k].rgb, (size_t)out.img[k].w * out.img[k].h * 3));
            CHECK(!strcmp(hex, json_string_value(json_array_get(fn, k))), "%dx%d image %d: %s", im.w, im.h, k, hex);
        }
        if (rc == 0) vis_prepared_free(&out);
        free(im.rgb);
    }
}

int main(void) {
    json_error_t je;
    json_t *root = json_load_file(IDATA("images.json"), 0, &je);
    CHECK(root != NULL, "images.json: %s", je.text);
    if (!root) TEST_MAIN_END();
    test_files(json_object_get(root, "files"));
    test_bombs();
    test_scans();
    test_resize(json_object_get(root, "resize"));
    test_cuts(json_object_get(root, "cuts"));
    json_decref(root);
    TEST_MAIN_END();
}
