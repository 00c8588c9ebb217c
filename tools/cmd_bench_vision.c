/* cmd_bench_vision.c — `lfm2c bench --mmproj MMPROJ.gguf [--image-size WxH,...] [-t N] [-r REPS]`:
 * the time the LFM2-VL encoder (src/vision/) takes for images of the sizes given, cut as the
 * processor cuts them (vis_plan: one resized image, or 512 x 512 tiles and a thumbnail), on
 * synthetic pixels. Reaches into the engine (vision/vision.h) as cmd_bench.c does: the public
 * API has no image input yet. bench/vision.sh runs it beside llama.cpp's mtmd. */
#include "cli.h"
#include "base/clock.h"
#include "vision/vision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One encode of a w x h image of synthetic pixels: seconds, or -1 with the message said. */
static double encode_once(const vis_model *vm, threadpool *pool, int w, int h) {
    const size_t n = (size_t)w * h;
    uint8_t *rgb = malloc(3 * n);
    float *planes = malloc(3 * n * sizeof *planes);
    float *out = malloc((size_t)vis_n_tokens(vm, w, h) * vm->hp.proj_dim * sizeof *out);
    double t = -1;
    if (rgb && planes && out) {
        for (size_t i = 0; i < 3 * n; i++) rgb[i] = (uint8_t)(i * 2654435761u >> 24);
        vis_normalize(vm, rgb, w, h, planes);
        lfm2c_error err = {0};
        const double t0 = lfm2c_now_s();
        if (vis_encode(vm, pool, planes, w, h, out, &err)) cli_fail("bench: %s", err.msg);
        else t = lfm2c_now_s() - t0;
    } else cli_fail("bench: out of memory");
    free(rgb);
    free(planes);
    free(out);
    return t;
}

/* The encodes the processor makes of a W x H image: seconds in all, or -1. */
static double encode_image(const vis_model *vm, threadpool *pool, const vis_prep_params *pp, const vis_prep_plan *pl) {
    double total = 0, t;
    for (int i = 0; i < pl->cols * pl->rows; i++) {
        if ((t = encode_once(vm, pool, pp->tile, pp->tile)) < 0) return -1;
        total += t;
    }
    if (pl->cols == 0 || pl->thumbnail) {
        if ((t = encode_once(vm, pool, pl->w, pl->h)) < 0) return -1;
        total += t;
    }
    return total;
}

static int bench_size(const vis_model *vm, threadpool *pool, const char *spec, int reps, int threads) {
    int w = 0, h = 0;
    char tail;
    if (sscanf(spec, "%dx%d%c", &w, &h, &tail) != 2 || w <= 0 || h <= 0 || w > 16384 || h > 16384)
        return cli_fail("bench: --image-size expects WxH (each 1..16384), got '%s'", spec);
    vis_prep_params pp = vis_prep_default();
    pp.patch = vm->hp.patch;
    pp.n_merge = vm->hp.n_merge;
    pp.tile = 32 * vm->hp.patch; /* 512 at patch 16; a test model's smaller patch, smaller tiles */
    vis_prep_plan pl;
    vis_plan(&pp, w, h, &pl);
    double best = 0, sum = 0;
    for (int r = 0; r < reps; r++) {
        double t = encode_image(vm, pool, &pp, &pl);
        if (t < 0) return 1;
        best = r == 0 || t < best ? t : best;
        sum += t;
    }
    printf("| %5dx%-5d | %2dx%-2d%s | %6d | %2d | %9.1f | %9.1f |\n", w, h, pl.cols, pl.rows,
           pl.thumbnail ? "+thumb" : "      ", pl.tokens, threads, 1e3 * sum / reps, 1e3 * best);
    return 0;
}

int cmd_bench_vision(int argc, char **argv) {
    const char *path = NULL, *sizes = "512x512,1920x1080";
    int threads = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--mmproj") || !strcmp(a, "-mm")) path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--image-size")) sizes = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) reps = cli_positive(a, cli_value(argc, argv, &i));
        else return cli_fail("bench: with --mmproj the options are --image-size WxH,... -t N -r REPS; got '%s'", a);
    }
    lfm2c_error err = {0};
    vis_model *vm = vis_open(path, &err);
    if (!vm) return cli_fail("bench: %s", err.msg);
    threadpool *pool = threadpool_new(threads);
    int rc = pool ? 0 : cli_fail("bench: cannot start threads");
    if (!rc)
        printf("| image       | tiles       | tokens | th | avg ms    | best ms   |\n"
               "|-------------|-------------|--------|----|-----------|-----------|\n");
    char *list = strdup(sizes);
    for (char *save = NULL, *s = list ? strtok_r(list, ",", &save) : NULL; !rc && s; s = strtok_r(NULL, ",", &save))
        rc = bench_size(vm, pool, s, reps, pool ? threadpool_size(pool) : 1);
    free(list);
    threadpool_free(pool);
    vis_close(vm);
    return rc;
}
