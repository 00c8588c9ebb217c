/* image.c — an image file's bytes to 8-bit RGB pixels (vision.h, vis_image_decode): JPEG through
 * libjpeg(-turbo), PNG through libpng, WebP through libwebp, GIF (its first frame) through giflib,
 * each where the build found the library (LFM2C_HAVE_{JPEG,PNG,WEBP,GIF}; a format whose library
 * is missing is refused, naming the Debian package). The format is told by its magic bytes. The
 * byte count is checked first, then the header's width and height against the limits BEFORE any
 * pixel is decoded, so a decompression bomb costs nothing; vis_image_probe says from the header
 * alone what the decode will hold (the pixels, the decoder's own memory, an EXIF turn's copy), for
 * a caller to charge first: libjpeg's coefficient buffer is held to that figure and to 500 scans,
 * libpng reads only the chunks the pixels need. A corrupt file is an error with the decoder's
 * message. The pixels are what Hugging Face's load_image gives (Pillow's
 * exif_transpose, then convert("RGB")): a JPEG's EXIF orientation applied (its APP1 segment read
 * within its bounds; a malformed one ignored), Adobe CMYK / YCCK converted as Pillow does, grey
 * replicated, a palette looked up, alpha dropped (not composited), 16-bit samples cut to their
 * high byte, an animated WebP's first frame (libwebpdemux, where the build found it). The
 * decoders' own messages never reach stderr (their error and warning handlers are ours). */
#include "vision/vision.h"
#include "base/error.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LFM2C_HAVE_JPEG
#include <jpeglib.h>
#endif
#ifdef LFM2C_HAVE_PNG
#include <png.h>
#endif
#ifdef LFM2C_HAVE_WEBP
#include <webp/decode.h>
#endif
#ifdef LFM2C_HAVE_WEBPDEMUX
#include <webp/demux.h>
#endif
#ifdef LFM2C_HAVE_GIF
#include <gif_lib.h>
#endif

vis_image_limits vis_image_default_limits(void) {
    return (vis_image_limits){.max_bytes = (size_t)32 << 20, .max_pixels = (int64_t)40 << 20, .max_side = 16384};
}

unsigned vis_image_formats(void) {
    unsigned f = 0;
#ifdef LFM2C_HAVE_JPEG
    f |= 1u << VIS_IMG_JPEG;
#endif
#ifdef LFM2C_HAVE_PNG
    f |= 1u << VIS_IMG_PNG;
#endif
#ifdef LFM2C_HAVE_WEBP
    f |= 1u << VIS_IMG_WEBP;
#endif
#ifdef LFM2C_HAVE_GIF
    f |= 1u << VIS_IMG_GIF;
#endif
    return f;
}

int vis_image_sniff(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return VIS_IMG_JPEG;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return VIS_IMG_PNG;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return VIS_IMG_WEBP;
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) return VIS_IMG_GIF;
    return -1;
}

static const char *const fmt_names[] = {"JPEG", "PNG", "WebP", "GIF"};
static const char *const fmt_pkgs[] = {"libjpeg62-turbo-dev", "libpng-dev", "libwebp-dev", "libgif-dev"};

/* The header's size against the limits. */
static int check_limits(const vis_image_limits *lim, int fmt, int64_t w, int64_t h, lfm2c_error *err) {
    if (w <= 0 || h <= 0) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "%s image with an empty size (%lld x %lld)", fmt_names[fmt], (long long)w,
                        (long long)h);
        return -1;
    }
    if (w > lim->max_side || h > lim->max_side || w * h > lim->max_pixels) {
        lfm2c_set_error(err, LFM2C_ETOOLARGE,
                        "%s image of %lld x %lld pixels is over the limit (%lld pixels, %d a side)", fmt_names[fmt],
                        (long long)w, (long long)h, (long long)lim->max_pixels, lim->max_side);
        return -1;
    }
    return 0;
}

/* The header's size against the limits; out->rgb allocated for it. */
static int check_size(const vis_image_limits *lim, int fmt, int64_t w, int64_t h, vis_image *out, lfm2c_error *err) {
    if (check_limits(lim, fmt, w, h, err)) return -1;
    out->w = (int)w;
    out->h = (int)h;
    out->rgb = calloc((size_t)(w * h * 3), 1);
    if (!out->rgb)
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for a %lld x %lld image", (long long)w, (long long)h),
               -1;
    return 0;
}

int vis_image_orient(vis_image *im, int o) {
    if (o < 2 || o > 8) return 0;
    const int w = im->w, h = im->h, ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) return -1;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sx, sy; /* the source pixel of output (x, y) */
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            default: sx = w - 1 - y, sy = x; break;
            }
            memcpy(rgb + ((size_t)y * ow + x) * 3, im->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    free(im->rgb);
    im->rgb = rgb;
    im->w = ow;
    im->h = oh;
    return 0;
}

#if defined(LFM2C_HAVE_JPEG) || defined(LFM2C_HAVE_PNG) || defined(LFM2C_HAVE_WEBP)
/* The decoded image turned by its EXIF orientation o; on failure (memory) the pixels freed. */
static int orient_or_fail(vis_image *out, int o, lfm2c_error *err) {
    if (!vis_image_orient(out, o)) return 0;
    free(out->rgb), out->rgb = NULL;
    return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for a %d x %d image", out->w, out->h), -1;
}

static unsigned rd16(const uint8_t *p, bool le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, bool le) {
    return le ? (uint32_t)rd16(p, true) | (uint32_t)rd16(p + 2, true) << 16
              : (uint32_t)rd16(p, false) << 16 | rd16(p + 2, false);
}

/* The first value of an IFD entry e of an integer type (BYTE, SHORT, LONG and the signed ones),
 * inline or at its offset within the tn bytes of t; 0 when it is none or outside. */
static long exif_value(const uint8_t *t, size_t tn, size_t e, bool le) {
    const unsigned type = rd16(t + e + 2, le);
    const uint32_t count = rd32(t + e + 4, le);
    const int size = type == 1 || type == 6 ? 1 : type == 3 || type == 8 ? 2 : type == 4 || type == 9 ? 4 : 0;
    if (!size || !count || count > (1u << 28)) return 0;
    size_t at = e + 8;
    if ((uint64_t)count * size > 4 && ((at = rd32(t + e + 8, le)) > tn || (uint64_t)count * size > tn - at)) return 0;
    const uint8_t *v = t + at;
    switch (type) {
    case 1: return v[0];
    case 6: return (int8_t)v[0];
    case 3: return (long)rd16(v, le);
    case 8: return (int16_t)rd16(v, le);
    case 4: return (long)rd32(v, le);
    default: return (int32_t)rd32(v, le);
    }
}

/* The orientation tag (0x0112) of EXIF data as Pillow's getexif reads it: a TIFF header (after
 * "Exif\0\0" where the data starts so: a JPEG's APP1 segment, some WebP files; a PNG's eXIf is
 * the TIFF data alone), IFD0's entries (the last of a repeated tag), the first value of an
 * integer type. 1 (as stored) when there is none, it is not 1..8 or the data is malformed:
 * every read is checked against the n bytes. */
static int exif_orientation(const uint8_t *d, size_t n) {
    const size_t skip = n >= 6 && !memcmp(d, "Exif\0\0", 6) ? 6 : 0;
    if (n < skip + 8 + 2) return 1;
    const uint8_t *t = d + skip;
    const size_t tn = n - skip;
    const bool le = !memcmp(t, "II*\0", 4);
    if (!le && memcmp(t, "MM\0*", 4)) return 1;
    const uint32_t ifd = rd32(t + 4, le);
    if (ifd < 8 || ifd > tn - 2) return 1;
    const unsigned count = rd16(t + ifd, le);
    int orient = 1;
    for (unsigned i = 0; i < count; i++) {
        const size_t e = ifd + 2 + (size_t)12 * i;
        if (e + 12 > tn) break; /* a cut directory: the entries before it count, as in Pillow */
        if (rd16(t + e, le) != 0x0112) continue;
        const long v = exif_value(t, tn, e, le);
        orient = v >= 1 && v <= 8 ? (int)v : 1;
    }
    return orient;
}
#endif

#ifdef LFM2C_HAVE_JPEG
typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}
static void jpeg_quiet(j_common_ptr c, int level) { (void)c, (void)level; }
enum { JPEG_MAX_SCANS = 500 }; /* libjpeg-turbo's advice for untrusted files (its djpeg -maxscans) */

static void jpeg_progress(j_common_ptr c) { /* a progressive file of endless scans is a CPU bomb */
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->is_decompressor && d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_err *e = (jpeg_err *)c->err;
        snprintf(e->msg, sizeof e->msg, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(e->jb, 1);
    }
}

/* The memory libjpeg may take for c (its header read, up to the first scan): a whole-image
 * coefficient buffer when the file has several scans (progressive, or its components scanned
 * apart): 64 16-bit coefficients a block, the blocks rounded up to the sampling factors; its rows
 * and tables; the saved markers (the n bytes of the file bound them). The decode sets its
 * max_memory_to_use to this, so the buffer must fit in it (libjpeg has no backing store here). */
static size_t jpeg_work(j_decompress_ptr c, size_t n) {
    size_t coef = 0;
    if (c->progressive_mode || c->comps_in_scan < c->num_components)
        for (int i = 0; i < c->num_components; i++) {
            const jpeg_component_info *ci = &c->comp_info[i];
            const size_t hs = (size_t)ci->h_samp_factor, vs = (size_t)ci->v_samp_factor;
            coef += (ci->width_in_blocks + hs - 1) / hs * hs * ((ci->height_in_blocks + vs - 1) / vs * vs) * DCTSIZE2 *
                    sizeof(JCOEF);
        }
    return coef + (size_t)c->image_width * (size_t)c->num_components * 64 + n + ((size_t)4 << 20);
}

/* The orientation of the file's first APP1 segment that starts "Exif\0" (the one Pillow keeps). */
static int jpeg_orientation(j_decompress_ptr c) {
    for (jpeg_saved_marker_ptr m = c->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 5 && !memcmp(m->data, "Exif", 5))
            return exif_orientation(m->data, m->data_length);
    return 1;
}

/* Adobe's inverted CMYK (YCCK converted to it by libjpeg) to RGB as Pillow does: its "CMYK;I"
 * unpacking, then convert("RGB"): each channel nk - v nk / 255 (rounded as its MULDIV255), nk =
 * 255 - k. */
static void cmyk_row(const uint8_t *in, uint8_t *out, int w) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        const int nk = in[3]; /* 255 - (255 - raw k) */
        for (int ch = 0; ch < 3; ch++) {
            const int v = 255 - in[ch], t = v * nk + 128;
            out[ch] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
        }
    }
}

/* The scanlines into out->rgb: RGB as they are, CMYK / YCCK through cmyk_row. */
static void jpeg_rows(j_decompress_ptr c, vis_image *out, uint8_t *cmyk) {
    while (c->output_scanline < c->output_height) {
        uint8_t *rgb = out->rgb + (size_t)c->output_scanline * out->w * 3;
        JSAMPROW row = cmyk ? cmyk : rgb;
        jpeg_read_scanlines(c, &row, 1);
        if (cmyk) cmyk_row(cmyk, rgb, out->w);
    }
}

/* The decoder over d with our error handler, the scan limit and the EXIF markers kept, its header
 * read. Call after setjmp(e->jb). */
static void jpeg_begin(j_decompress_ptr c, jpeg_err *e, struct jpeg_progress_mgr *prog, const uint8_t *d, size_t n) {
    c->err = jpeg_std_error(&e->pub);
    e->pub.error_exit = jpeg_fail;
    e->pub.emit_message = jpeg_quiet;
    jpeg_create_decompress(c);
    c->progress = prog;
    jpeg_mem_src(c, d, (unsigned long)n);
    jpeg_save_markers(c, JPEG_APP0 + 1, 0xFFFF); /* EXIF: one segment is at most 64 KiB */
    jpeg_read_header(c, TRUE);
}

static int jpeg_head(const uint8_t *d, size_t n, vis_image_head *hd, lfm2c_error *err) {
    struct jpeg_decompress_struct c;
    jpeg_err e;
    struct jpeg_progress_mgr prog = {.progress_monitor = jpeg_progress};
    memset(&c, 0, sizeof c);
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&c);
        return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt JPEG image: %s", e.msg), -1;
    }
    jpeg_begin(&c, &e, &prog, d, n);
    *hd = (vis_image_head){VIS_IMG_JPEG, c.image_width, c.image_height, jpeg_orientation(&c), jpeg_work(&c, n)};
    jpeg_destroy_decompress(&c);
    return 0;
}

static int decode_jpeg(const uint8_t *d, size_t n, const vis_image_limits *lim, vis_image *out, lfm2c_error *err) {
    struct jpeg_decompress_struct c;
    jpeg_err e;
    struct jpeg_progress_mgr prog = {.progress_monitor = jpeg_progress};
    memset(&c, 0, sizeof c);
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&c);
        free(out->rgb), out->rgb = NULL;
        return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt JPEG image: %s", e.msg), -1;
    }
    jpeg_begin(&c, &e, &prog, d, n);
    if (check_size(lim, VIS_IMG_JPEG, c.image_width, c.image_height, out, err)) {
        jpeg_destroy_decompress(&c);
        return -1;
    }
    c.mem->max_memory_to_use = (long)jpeg_work(&c, n); /* what vis_image_probe said */
    const int orient = jpeg_orientation(&c);           /* of the segments before the first scan, as Pillow */
    const bool cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    /* the CMYK row lives in libjpeg's pool: freed with the decoder, also by a longjmp */
    uint8_t *row = cmyk ? (uint8_t *)(*c.mem->alloc_large)((j_common_ptr)&c, JPOOL_IMAGE, (size_t)out->w * 4) : NULL;
    jpeg_start_decompress(&c);
    jpeg_rows(&c, out, row);
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    return orient_or_fail(out, orient, err);
}
#endif

#ifdef LFM2C_HAVE_PNG
typedef struct png_src {
    const uint8_t *d;
    size_t n, off;
    char msg[160];
} png_src;

static void png_read_mem(png_structp p, png_bytep buf, size_t len) {
    png_src *s = png_get_io_ptr(p);
    if (len > s->n - s->off) png_error(p, "truncated file");
    memcpy(buf, s->d + s->off, len);
    s->off += len;
}
static void png_fail(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(p, 1);
}
static void png_quiet(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

/* The transforms to 8-bit RGB as Pillow's convert("RGB") gives it. */
static void png_to_rgb(png_structp p, png_infop info) {
    const int ct = png_get_color_type(p, info);
    png_set_strip_16(p);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_expand_gray_1_2_4_to_8(p);
        png_set_gray_to_rgb(p);
    }
    png_set_strip_alpha(p); /* an alpha channel, or one a tRNS chunk expanded into */
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
}

/* The orientation of the PNG's eXIf chunk, before the pixels or after them (Pillow reads the file
 * to its end for it); an error in the chunks after the pixels leaves them as stored. */
static int png_orientation(png_structp p, png_infop info) {
    png_uint_32 n = 0;
    png_bytep x = NULL;
    if (png_get_eXIf_1(p, info, &n, &x)) return exif_orientation(x, n);
    if (setjmp(png_jmpbuf(p))) return 1;
    png_read_end(p, info);
    return png_get_eXIf_1(p, info, &n, &x) ? exif_orientation(x, n) : 1;
}

/* The size from the IHDR chunk (the first, as the format requires; libpng checks the rest as it
 * decodes), the orientation of the first eXIf chunk anywhere in the file (its chunks walked within
 * the n bytes: the decode may find fewer, never more), and libpng's memory: a few rows of up to 8
 * bytes a pixel, the row pointers, the eXIf chunk, zlib's window (the chunks that could hold
 * more, text, ICC profiles and the like, are skipped: png_keep_chunks). */
static int png_head(const uint8_t *d, size_t n, vis_image_head *hd, lfm2c_error *err) {
    if (n < 33 || memcmp(d + 8, "\0\0\0\15IHDR", 8))
        return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt PNG image: it does not begin with its IHDR chunk"), -1;
    *hd = (vis_image_head){VIS_IMG_PNG, rd32(d + 16, false), rd32(d + 20, false), 1, 0};
    size_t exif = 0;
    for (size_t at = 8; at + 12 <= n;) {
        const size_t len = rd32(d + at, false);
        if (len > n - at - 12 || !memcmp(d + at + 4, "IEND", 4)) break;
        if (!memcmp(d + at + 4, "eXIf", 4)) {
            hd->orient = exif_orientation(d + at + 8, len), exif = len;
            break;
        }
        at += 12 + len;
    }
    hd->work = 24 * (size_t)hd->w + 8 * (size_t)hd->h + exif + ((size_t)1 << 20);
    return 0;
}

/* Only the chunks the pixels need (IHDR, PLTE, tRNS, IDAT, IEND) and eXIf are read: the others,
 * text (zTXt / iTXt inflate to megabytes each), ICC profiles and the rest, are skipped unread. */
static void png_keep_chunks(png_structp p) {
    png_set_keep_unknown_chunks(p, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_set_keep_unknown_chunks(p, PNG_HANDLE_CHUNK_AS_DEFAULT, (png_const_bytep) "eXIf", 1);
    png_set_chunk_cache_max(p, 64);
}

static int decode_png(const uint8_t *d, size_t n, const vis_image_limits *lim, vis_image *out, lfm2c_error *err) {
    png_src src = {d, n, 0, ""};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_quiet);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(p ? &p : NULL, NULL, NULL);
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for a PNG decoder"), -1;
    }
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_read_struct(&p, &info, NULL);
        free(rows);
        free(out->rgb), out->rgb = NULL;
        return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt PNG image: %s", src.msg), -1;
    }
    png_set_chunk_malloc_max(p, (png_alloc_size_t)8 << 20);
    png_keep_chunks(p);
    png_set_read_fn(p, &src, png_read_mem);
    png_read_info(p, info);
    if (check_size(lim, VIS_IMG_PNG, png_get_image_width(p, info), png_get_image_height(p, info), out, err)) {
        png_destroy_read_struct(&p, &info, NULL);
        return -1;
    }
    png_to_rgb(p, info);
    if (png_get_rowbytes(p, info) != (size_t)out->w * 3) png_error(p, "unexpected row layout");
    rows = malloc(sizeof(png_bytep) * (size_t)out->h);
    if (!rows) png_error(p, "out of memory");
    for (int y = 0; y < out->h; y++) rows[y] = out->rgb + (size_t)y * out->w * 3;
    png_read_image(p, rows);
    const int orient = png_orientation(p, info);
    png_destroy_read_struct(&p, &info, NULL);
    free(rows);
    return orient_or_fail(out, orient, err);
}
#endif

#ifdef LFM2C_HAVE_WEBP
/* An animated WebP's first frame as libwebpdemux's animation decoder composes it (what Pillow
 * shows of it): RGBA on the canvas, the alpha dropped. */
static int webp_first_frame(const uint8_t *d, size_t n, vis_image *out, lfm2c_error *err) {
#ifdef LFM2C_HAVE_WEBPDEMUX
    WebPAnimDecoderOptions o;
    if (!WebPAnimDecoderOptionsInit(&o)) return lfm2c_set_error(err, LFM2C_EFORMAT, "WebP: bad library version"), -1;
    o.color_mode = MODE_RGBA;
    o.use_threads = 0;
    const WebPData wd = {d, n};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &o);
    WebPAnimInfo info;
    uint8_t *px = NULL;
    int ts = 0;
    const bool ok = dec && WebPAnimDecoderGetInfo(dec, &info) && info.canvas_width == (uint32_t)out->w &&
                    info.canvas_height == (uint32_t)out->h && WebPAnimDecoderGetNext(dec, &px, &ts);
    for (size_t i = 0; ok && i < (size_t)out->w * out->h; i++) memcpy(out->rgb + i * 3, px + i * 4, 3);
    WebPAnimDecoderDelete(dec);
    if (ok) return 0;
    free(out->rgb), out->rgb = NULL;
    return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt animated WebP image (its first frame does not decode)"), -1;
#else
    (void)d, (void)n;
    free(out->rgb), out->rgb = NULL;
    return lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                           "animated WebP images need libwebpdemux (libwebp-dev), which this build lacks"),
           -1;
#endif
}

/* The orientation of a WebP's EXIF chunk: the RIFF container's chunks walked within its n bytes
 * (each a fourcc, a little-endian size and the data padded to even), the first "EXIF" read. */
static int webp_orientation(const uint8_t *d, size_t n) {
    if (n < 12 || memcmp(d, "RIFF", 4) || memcmp(d + 8, "WEBP", 4)) return 1;
    for (size_t at = 12; at + 8 <= n;) {
        const size_t len = rd32(d + at + 4, true);
        if (len > n - at - 8) return 1;
        if (!memcmp(d + at, "EXIF", 4)) return exif_orientation(d + at + 8, len);
        at += 8 + len + (len & 1);
    }
    return 1;
}

/* The size and kind from the bitstream's header (WebPGetFeatures reads it without allocating),
 * the orientation of its EXIF chunk, and libwebp's memory: a lossy frame decodes through a few
 * macroblock rows (~160 bytes a column); a lossless one, or an alpha plane, holds 4 bytes a pixel
 * (ARGB) and 1 (the plane) besides; the animation decoder two RGBA canvases more. */
static int webp_head(const uint8_t *d, size_t n, vis_image_head *hd, lfm2c_error *err) {
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(d, n, &f) != VP8_STATUS_OK)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt WebP image (its header does not parse)"), -1;
    const size_t px = (size_t)(f.width > 0 ? f.width : 0) * (size_t)(f.height > 0 ? f.height : 0);
    size_t work = 256 * (size_t)(f.width > 0 ? f.width : 0) + ((size_t)1 << 20);
    if (f.has_animation) work += 13 * px;
    else if (f.has_alpha || f.format != 1) work += 5 * px;
    *hd = (vis_image_head){VIS_IMG_WEBP, f.width, f.height, webp_orientation(d, n), work};
    return 0;
}

static int decode_webp(const uint8_t *d, size_t n, const vis_image_limits *lim, vis_image *out, lfm2c_error *err) {
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(d, n, &f) != VP8_STATUS_OK)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt WebP image (its header does not parse)"), -1;
    if (check_size(lim, VIS_IMG_WEBP, f.width, f.height, out, err)) return -1;
    if (f.has_animation) {
        if (webp_first_frame(d, n, out, err)) return -1;
    } else if (!WebPDecodeRGBInto(d, n, out->rgb, (size_t)out->w * out->h * 3, out->w * 3)) {
        free(out->rgb), out->rgb = NULL;
        return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt WebP image (its data does not decode)"), -1;
    }
    return orient_or_fail(out, webp_orientation(d, n), err);
}
#endif

#ifdef LFM2C_HAVE_GIF
typedef struct gif_src {
    const uint8_t *d;
    size_t n, off;
} gif_src;

static int gif_read_mem(GifFileType *g, GifByteType *buf, int len) {
    gif_src *s = g->UserData;
    size_t k = len < 0 ? 0 : (size_t)len;
    if (k > s->n - s->off) k = s->n - s->off;
    memcpy(buf, s->d + s->off, k);
    s->off += k;
    return (int)k;
}

/* The first frame's pixels, drawn over the screen filled with the background colour (the
 * frame's transparent index, from a graphic control extension before it, leaves them). */
static int gif_frame(GifFileType *g, int transparent, vis_image *out) {
    const GifImageDesc *id = &g->Image;
    const ColorMapObject *cm = id->ColorMap ? id->ColorMap : g->SColorMap;
    if (!cm || id->Left < 0 || id->Top < 0 || id->Width <= 0 || id->Height <= 0 || id->Left + id->Width > out->w ||
        id->Top + id->Height > out->h)
        return -1;
    const GifColorType *bg = g->SColorMap && g->SBackGroundColor < g->SColorMap->ColorCount
                                 ? &g->SColorMap->Colors[g->SBackGroundColor]
                                 : NULL;
    for (size_t i = 0; bg && i < (size_t)out->w * out->h; i++)
        memcpy(out->rgb + i * 3, (const uint8_t[3]){bg->Red, bg->Green, bg->Blue}, 3);
    GifPixelType *line = malloc((size_t)id->Width);
    if (!line) return -1;
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    const int passes = id->Interlace ? 4 : 1;
    for (int pass = 0; pass < passes; pass++)
        for (int y = id->Interlace ? start[pass] : 0; y < id->Height; y += id->Interlace ? step[pass] : 1) {
            if (DGifGetLine(g, line, id->Width) != GIF_OK) return free(line), -1;
            uint8_t *o = out->rgb + ((size_t)(id->Top + y) * out->w + id->Left) * 3;
            for (int x = 0; x < id->Width; x++, o += 3) {
                if (line[x] == transparent) continue;
                const GifColorType *c = line[x] < cm->ColorCount ? &cm->Colors[line[x]] : &cm->Colors[0];
                o[0] = c->Red, o[1] = c->Green, o[2] = c->Blue;
            }
        }
    free(line);
    return 0;
}

/* Records up to the first image: its graphic control extension's transparent index. */
static int gif_first(GifFileType *g, vis_image *out) {
    int transparent = -1;
    for (int guard = 0; guard < 100000; guard++) {
        GifRecordType t;
        if (DGifGetRecordType(g, &t) != GIF_OK) return -1;
        if (t == TERMINATE_RECORD_TYPE) return -1;
        if (t == IMAGE_DESC_RECORD_TYPE) return DGifGetImageDesc(g) == GIF_OK ? gif_frame(g, transparent, out) : -1;
        if (t != EXTENSION_RECORD_TYPE) continue;
        int code;
        GifByteType *ext;
        if (DGifGetExtension(g, &code, &ext) != GIF_OK) return -1;
        if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 && (ext[1] & 1)) transparent = ext[4];
        while (ext)
            if (DGifGetExtensionNext(g, &ext) != GIF_OK) return -1;
    }
    return -1;
}

/* The logical screen's size (bytes 6..9, little-endian); giflib's memory is its decoder state,
 * the colour maps and one line. */
static int gif_head(const uint8_t *d, size_t n, vis_image_head *hd, lfm2c_error *err) {
    if (n < 13) return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt GIF image: its header is cut short"), -1;
    *hd = (vis_image_head){VIS_IMG_GIF, d[6] | d[7] << 8, d[8] | d[9] << 8, 1, 0};
    hd->work = (size_t)hd->w + ((size_t)1 << 20);
    return 0;
}

static int decode_gif(const uint8_t *d, size_t n, const vis_image_limits *lim, vis_image *out, lfm2c_error *err) {
    gif_src src = {d, n, 0};
    int e = 0;
    GifFileType *g = DGifOpen(&src, gif_read_mem, &e);
    if (!g) return lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt GIF image: %s", GifErrorString(e)), -1;
    if (check_size(lim, VIS_IMG_GIF, g->SWidth, g->SHeight, out, err)) {
        DGifCloseFile(g, &e);
        return -1;
    }
    const int rc = gif_first(g, out);
    const char *why = g->Error ? GifErrorString(g->Error) : NULL;
    if (rc) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "corrupt GIF image: %s", why ? why : "no frame inside the screen");
        free(out->rgb), out->rgb = NULL;
    }
    DGifCloseFile(g, &e);
    return rc;
}
#endif

int vis_image_probe(const uint8_t *data, size_t n, const vis_image_limits *lim, vis_image_head *out, lfm2c_error *err) {
    const vis_image_limits def = vis_image_default_limits();
    if (!lim) lim = &def;
    memset(out, 0, sizeof *out);
    if (n > lim->max_bytes)
        return lfm2c_set_error(err, LFM2C_ETOOLARGE, "image of %zu bytes is over the limit (%zu)", n, lim->max_bytes),
               -1;
    const int fmt = data ? vis_image_sniff(data, n) : -1;
    if (fmt < 0) return lfm2c_set_error(err, LFM2C_EFORMAT, "not a JPEG, PNG, WebP or GIF image"), -1;
    if (!(vis_image_formats() >> fmt & 1)) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "this build of lfm2c has no %s decoder (build it with %s installed)",
                        fmt_names[fmt], fmt_pkgs[fmt]);
        return -1;
    }
    int rc = -1;
    switch (fmt) {
#ifdef LFM2C_HAVE_JPEG
    case VIS_IMG_JPEG: rc = jpeg_head(data, n, out, err); break;
#endif
#ifdef LFM2C_HAVE_PNG
    case VIS_IMG_PNG: rc = png_head(data, n, out, err); break;
#endif
#ifdef LFM2C_HAVE_WEBP
    case VIS_IMG_WEBP: rc = webp_head(data, n, out, err); break;
#endif
#ifdef LFM2C_HAVE_GIF
    case VIS_IMG_GIF: rc = gif_head(data, n, out, err); break;
#endif
    default: break;
    }
    return rc ? rc : check_limits(lim, fmt, out->w, out->h, err);
}

size_t vis_image_decode_bytes(const vis_image_head *hd) {
    const size_t px = (size_t)hd->w * (size_t)hd->h * 3, turn = hd->orient >= 2 && hd->orient <= 8 ? px : 0;
    return px + (hd->work > turn ? hd->work : turn); /* the decoder is gone before the turn copies */
}

int vis_image_decode(const uint8_t *data, size_t n, const vis_image_limits *lim, vis_image *out, lfm2c_error *err) {
    const vis_image_limits def = vis_image_default_limits();
    if (!lim) lim = &def;
    vis_image_head hd;
    if (vis_image_probe(data, n, lim, &hd, err)) return -1;
    memset(out, 0, sizeof *out);
    switch (hd.fmt) {
#ifdef LFM2C_HAVE_JPEG
    case VIS_IMG_JPEG: return decode_jpeg(data, n, lim, out, err);
#endif
#ifdef LFM2C_HAVE_PNG
    case VIS_IMG_PNG: return decode_png(data, n, lim, out, err);
#endif
#ifdef LFM2C_HAVE_WEBP
    case VIS_IMG_WEBP: return decode_webp(data, n, lim, out, err);
#endif
#ifdef LFM2C_HAVE_GIF
    case VIS_IMG_GIF: return decode_gif(data, n, lim, out, err);
#endif
    default: return -1;
    }
}

void vis_image_free(vis_image *im) {
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->w = im->h = 0;
}
