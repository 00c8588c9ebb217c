/* fuzz_image.c — the image decoders (src/vision/image.c: JPEG, PNG, WebP, GIF through their
 * libraries behind our size checks) and the processor's resize and cut (resample.c): any input
 * decodes or is refused with a message, within limits small enough for a fuzzer (1 MiB, 4 Mi
 * pixels); a decoded image of moderate size is cut as the processor cuts it (tiles and
 * thumbnail). The seeds (tests/fuzz/corpus/image/) are small files of each format, a CMYK JPEG,
 * JPEGs with EXIF orientations (both byte orders, a LONG value, a cut and a bad-count one) and an
 * animated WebP. */
#include "fuzz_common.h"
#include "vision/vision.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vis_image_limits lim = {.max_bytes = (size_t)1 << 20, .max_pixels = (int64_t)4 << 20, .max_side = 8192};
    vis_image im;
    lfm2c_error err = {0};
    if (vis_image_decode(data, size, &lim, &im, &err)) {
        if (!err.msg[0]) abort(); /* a refusal always says why */
        return 0;
    }
    if ((int64_t)im.w * im.h <= 512 * 512) {
        vis_prep_params pp = vis_prep_default();
        pp.patch = 4, pp.tile = 128; /* the tiny model's processor: cheap tiles */
        vis_prepared out;
        if (vis_prepare(&pp, &im, &out, &err) == 0) vis_prepared_free(&out);
    }
    vis_image_free(&im);
    return 0;
}
