/* cli_image.c — images on the command line (cli.h, "images"): -mm / --mmproj FILE and
 * --image FILE for run and chat; the files read and encoded through the library's image API
 * (lfm2c_image_encode: decoded, limited, resized and tiled as the processor does, encoded on the
 * CPU), and a prompt's ids expanded with them (lfm2c_prompt_images). */
#include "base/os.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_image_flag(cli_images *ci, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "-mm") || !strcmp(a, "--mmproj")) ci->mmproj_path = cli_value(argc, argv, i);
    else if (!strcmp(a, "--image")) {
        const char *v = cli_value(argc, argv, i);
        if (ci->n_files == CLI_MAX_IMAGES) exit(cli_fail("--image: at most %d images", CLI_MAX_IMAGES) + 1);
        ci->files[ci->n_files++] = v;
    } else return false;
    return true;
}

int cli_image_open(cli_images *ci, lfm2c_model *m) {
    if (!ci->mmproj_path)
        return ci->n_files ? cli_fail("--image needs the model's vision tower: -mm / --mmproj FILE (the mmproj "
                                      "GGUF beside an LFM2-VL model)")
                           : 0;
    lfm2c_error err = {0};
    if (!(ci->mm = lfm2c_mmproj_open(ci->mmproj_path, m, &err))) return cli_fail("%s: %s", ci->mmproj_path, err.msg);
    for (int k = 0; k < ci->n_files; k++)
        if (cli_image_add(ci, ci->files[k])) return 1;
    return 0;
}

int cli_image_add(cli_images *ci, const char *path) {
    if (!ci->mm) return cli_fail("images need the model's vision tower: start with -mm / --mmproj FILE");
    if (ci->n == CLI_MAX_IMAGES) return cli_fail("at most %d images", CLI_MAX_IMAGES);
    size_t n = 0;
    char *data = cli_read_file(path, &n);
    if (!data) return 1;
    lfm2c_error err = {0};
    ci->img[ci->n] = lfm2c_image_encode(ci->mm, data, n, NULL, &err);
    free(data);
    if (!ci->img[ci->n]) return cli_fail("%s: %s", path, err.msg);
    ci->n++;
    return 0;
}

char *cli_image_text(const cli_images *ci, int n_new, const char *text, size_t len, size_t *out_len) {
    const char *ph = "<image>";
    const bool has = len >= strlen(ph) && memmem(text, len, ph, strlen(ph));
    const size_t extra = has || !n_new ? 0 : (size_t)n_new * (strlen(ph) + 1);
    (void)ci;
    char *out = malloc(len + extra + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (int k = 0; !has && k < n_new; k++) o += (size_t)sprintf(out + o, "%s\n", ph);
    memcpy(out + o, text, len);
    out[o + len] = 0;
    *out_len = o + len;
    return out;
}

int32_t *cli_image_expand(const cli_images *ci, const lfm2c_model *m, int32_t *ids, int *n, float **rows) {
    *rows = NULL;
    if (!ci->n) return ids;
    int32_t *out = NULL;
    int n_out = 0;
    lfm2c_error err = {0};
    int rc = lfm2c_prompt_images(m, ids, *n, ci->img, ci->n, &out, &n_out, rows, &err);
    free(ids);
    if (rc) return cli_fail("%s", err.msg), NULL;
    *n = n_out;
    return out;
}

void cli_image_clear(cli_images *ci) {
    for (int k = 0; k < ci->n; k++) lfm2c_image_free(ci->img[k]);
    ci->n = 0;
}

void cli_image_close(cli_images *ci) {
    cli_image_clear(ci);
    lfm2c_mmproj_free(ci->mm);
    ci->mm = NULL;
}
