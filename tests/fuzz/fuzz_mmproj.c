/* fuzz_mmproj.c — the mmproj reader (src/vision/mmproj.c: an LFM2-VL vision tower's GGUF, every key
 * and tensor checked against the header's sizes) on arbitrary bytes: parsed from memory and opened
 * as an mmproj, and through the public API (lfm2c_mmproj_open without a model, described). A file
 * it accepts then cuts a small image as its processor would (its own patch size and unshuffle
 * factor: vis_prep_for) and encodes every tile and the thumbnail, each step bounded first by what
 * the charge functions say it takes (vis_prepare_bytes, vis_encode_bytes: a hostile file's shapes
 * decide them, so they must be finite and moderate for an accepted file, and an over-large one is
 * skipped as a server's budget would refuse it). The seeds (tests/fuzz/corpus/mmproj/, made by
 * tests/fuzz/mmproj_seeds.py from the fixture's mmproj) are complete small files in F32, F16 and
 * Q8_0, with and without the projector's layer norm. */
#include "fuzz_common.h"
#include "core/encoder.h"
#include "vision/vision.h"

#include <string.h>

enum { MAX_BYTES = 64 << 20 }; /* what one step may take here */

static void encode_small(const vis_model *vm) {
    static uint8_t px[20 * 12 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37 + 11);
    const vis_image im = {20, 12, px};
    const vis_prep_params pp = vis_prep_for(vm);
    if (vis_prepare_bytes(&pp, im.w, im.h) > MAX_BYTES) return;
    vis_prepared out;
    lfm2c_error err = {0};
    if (vis_prepare(&pp, &im, &out, &err)) {
        if (!err.msg[0]) abort();
        return;
    }
    for (int k = 0; k < out.n; k++) {
        const vis_image *t = &out.img[k];
        if (vis_encode_bytes(vm, NULL, t->w, t->h) > MAX_BYTES) continue;
        const size_t rows = (size_t)vis_n_tokens(vm, t->w, t->h) * (size_t)vm->hp.proj_dim;
        float *planes = malloc(sizeof(float) * (size_t)t->w * t->h * 3), *emb = malloc(sizeof(float) * rows + 1);
        if (planes && emb) {
            vis_normalize(vm, t->rgb, t->w, t->h, planes);
            if (vis_encode(vm, NULL, planes, t->w, t->h, emb, &err) && !err.msg[0]) abort();
        }
        free(planes);
        free(emb);
    }
    vis_prepared_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lfm2c_error err = {0};
    gguf_file *g = gguf_open_memory(data, size, &err);
    if (!g) return 0;
    vis_model *vm = vis_open_gguf(g, encoder_for(NULL, NULL, NULL), &err); /* takes g; the CPU's encoder table */
    if (!vm) {
        if (!err.msg[0]) abort(); /* a refusal always says why */
        return 0;
    }
    encode_small(vm);
    vis_close(vm);
    char path[64], text[512];
    const int fd = fuzz_memfile(data, size, path, sizeof path); /* the same bytes as a file (a split */
    lfm2c_mmproj *mm = lfm2c_mmproj_open(path, NULL, &err);     /* file's other parts are missing) */
    if (mm && lfm2c_mmproj_describe(mm, text, sizeof text) <= 0) abort();
    lfm2c_mmproj_free(mm);
    close(fd);
    return 0;
}
