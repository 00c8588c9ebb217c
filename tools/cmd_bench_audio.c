/* cmd_bench_audio.c — `lfm2c bench --mmproj AUDIO_MMPROJ.gguf [--audio-seconds S,...] [-t N]
 * [-r REPS]`: the time the LFM2-Audio encoder takes for clips of the lengths given (the log-mel
 * features of 16 kHz synthetic speech-band noise, then the Conformer and adapter: what
 * llama.cpp's mtmd times as the audio chunk's encoding), best and mean of REPS runs. Reaches
 * into the engine (audio/audio.h) as cmd_bench_vision.c does. bench/audio.sh runs it beside
 * llama.cpp's llama-mtmd-cli. */
#include "cli.h"
#include "audio/audio.h"
#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One clip of `secs` seconds: features then encoder; seconds taken, or -1 with the message said. */
static double encode_once(const aud_model *am, threadpool *pool, double secs) {
    const aud_mel_params mp = aud_mel_for(am);
    const int64_t n = (int64_t)(secs * mp.sample_rate), frames = aud_mel_frames(&mp, n);
    float *x = malloc(sizeof(float) * (size_t)n), *mel = malloc(sizeof(float) * (size_t)mp.n_mel * (size_t)frames);
    float *out = malloc(sizeof(float) * (size_t)aud_n_tokens((int)frames) * am->hp.proj_dim);
    double t = -1;
    lfm2c_error err = {0};
    if (x && mel && out) {
        for (int64_t i = 0; i < n; i++) x[i] = (float)((int)((uint32_t)(i * 2654435761u) >> 20) - 2048) / 8192.0f;
        const double t0 = lfm2c_now_s();
        if (aud_mel(&mp, pool, x, n, mel, &err) || aud_encode(am, pool, mel, (int)frames, out, &err))
            cli_fail("bench: %s", err.msg);
        else t = lfm2c_now_s() - t0;
    } else cli_fail("bench: out of memory");
    free(x), free(mel), free(out);
    return t;
}

static int bench_len(const aud_model *am, threadpool *pool, const char *spec, int reps, int threads) {
    char *end;
    const double secs = strtod(spec, &end);
    if (end == spec || *end || !(secs >= 0.05 && secs <= 3600))
        return cli_fail("bench: --audio-seconds expects seconds (0.05..3600), got '%s'", spec);
    const aud_mel_params mp = aud_mel_for(am);
    const int tokens = aud_n_tokens((int)aud_mel_frames(&mp, (int64_t)(secs * mp.sample_rate)));
    double best = 0, sum = 0;
    for (int r = 0; r < reps; r++) {
        const double t = encode_once(am, pool, secs);
        if (t < 0) return 1;
        best = r == 0 || t < best ? t : best;
        sum += t;
    }
    printf("| %7.1f s | %6d | %2d | %9.1f | %9.1f | %7.1f x |\n", secs, tokens, threads, 1e3 * sum / reps, 1e3 * best,
           secs / best);
    return 0;
}

int cmd_bench_audio(int argc, char **argv) {
    const char *path = NULL, *lens = "10,60";
    int threads = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--mmproj") || !strcmp(a, "-mm")) path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--audio-seconds")) lens = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) reps = cli_positive(a, cli_value(argc, argv, &i));
        else
            return cli_fail("bench: with an audio mmproj the options are --audio-seconds S,... -t N -r REPS; got '%s'",
                            a);
    }
    lfm2c_error err = {0};
    aud_model *am = aud_open(path, encoder_for(NULL, NULL, NULL), &err);
    if (!am) return cli_fail("bench: %s", err.msg);
    threadpool *pool = threadpool_new(threads);
    int rc = pool ? 0 : cli_fail("bench: cannot start threads");
    if (!rc)
        printf("| audio     | tokens | th | avg ms    | best ms   | realtime  |\n"
               "|-----------|--------|----|-----------|-----------|-----------|\n");
    char *list = strdup(lens);
    for (char *save = NULL, *s = list ? strtok_r(list, ",", &save) : NULL; !rc && s; s = strtok_r(NULL, ",", &save))
        rc = bench_len(am, pool, s, reps, pool ? threadpool_size(pool) : 1);
    free(list);
    threadpool_free(pool);
    aud_close(am);
    return rc;
}
