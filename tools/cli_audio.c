/* cli_audio.c — audio on the command line (cli.h, "audio"): --audio FILE for run (and
 * transcribe, which runs run): the files read and encoded through the library's audio API
 * (lfm2c_audio_encode: decoded, limited, resampled and turned into features as llama.cpp's
 * libmtmd does, encoded on the CPU) with a progress bar on a terminal, and a rendered prompt
 * tokenized with the clips' rows at its markers (lfm2c_prompt_audio). */
#include "cli.h"
#include "base/clock.h"
#include "base/os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_audio_flag(cli_audio *ca, int argc, char **argv, int *i) {
    if (strcmp(argv[*i], "--audio")) return false;
    const char *v = cli_value(argc, argv, i);
    if (ca->n_files == CLI_MAX_AUDIO) exit(cli_fail("--audio: at most %d clips", CLI_MAX_AUDIO) + 1);
    ca->files[ca->n_files++] = v;
    return true;
}

typedef struct bar {
    const char *name;
    int last;
} bar;

static void show(void *ud, double done) {
    bar *b = ud;
    const int pct = (int)(done * 100);
    if (pct == b->last) return;
    b->last = pct;
    char fill[31];
    for (int i = 0; i < 30; i++) fill[i] = i < pct * 30 / 100 ? '#' : '.';
    fill[30] = 0;
    fprintf(stderr, "\r%-24.24s [%s] %3d%%", b->name, fill, pct);
    fflush(stderr);
}

int cli_audio_open(cli_audio *ca, const char *mmproj_path, lfm2c_model *m) {
    if (!ca->n_files) return 0;
    if (!mmproj_path)
        return cli_fail("--audio needs the model's audio encoder: -mm / --mmproj FILE (the audio mmproj GGUF beside "
                        "an LFM2-Audio model)");
    lfm2c_error err = {0};
    if (!(ca->am = lfm2c_audio_mmproj_open(mmproj_path, m, &err))) return cli_fail("%s: %s", mmproj_path, err.msg);
    const bool tty = os_isatty(stderr);
    for (int k = 0; k < ca->n_files; k++) {
        size_t n = 0;
        char *data = cli_read_file(ca->files[k], &n);
        if (!data) return 1;
        bar b = {ca->files[k], -1};
        const double t0 = lfm2c_now_s();
        ca->clip[k] = lfm2c_audio_encode(ca->am, data, n, NULL, tty ? show : NULL, &b, &err);
        ca->encode_s += lfm2c_now_s() - t0;
        free(data);
        if (tty) fprintf(stderr, "\r%-64s\r", "");
        if (!ca->clip[k]) return cli_fail("%s: %s", ca->files[k], err.msg);
        ca->seconds += lfm2c_audio_seconds(ca->clip[k]);
        ca->n++;
    }
    return 0;
}

char *cli_audio_text(const cli_audio *ca, const char *text, size_t len, size_t *out_len) {
    const char *mk = LFM2C_AUDIO_MARKER;
    const size_t ml = strlen(mk);
    const bool has = len >= ml && memmem(text, len, mk, ml);
    const size_t extra = has ? 0 : (size_t)ca->n * ml;
    char *out = malloc(len + extra + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (int k = 0; !has && k < ca->n; k++) memcpy(out + o, mk, ml), o += ml;
    memcpy(out + o, text, len);
    out[o + len] = 0;
    *out_len = o + len;
    return out;
}

int32_t *cli_audio_ids(const cli_audio *ca, const lfm2c_model *m, const char *text, size_t len, bool add_bos, int *n,
                       float **rows) {
    int32_t *ids = NULL;
    lfm2c_error err = {0};
    if (lfm2c_prompt_audio(m, text, len, add_bos, ca->clip, ca->n, &ids, n, rows, &err))
        return cli_fail("%s", err.msg), NULL;
    return ids;
}

void cli_audio_close(cli_audio *ca) {
    for (int k = 0; k < ca->n; k++) lfm2c_audio_free(ca->clip[k]);
    ca->n = 0;
    lfm2c_audio_mmproj_free(ca->am);
    ca->am = NULL;
}
