/* fuzz_audio.c — the audio decoder (src/audio/decode.c: WAV, FLAC, MP3, Ogg Vorbis / Opus
 * through libsndfile behind our header checks), the down-mix and resampler (resample.c) and the
 * log-mel features (mel.c): any input decodes or is refused with a message, within limits small
 * enough for a fuzzer (1 MiB, 20 s, 8 channels, 2 Mi samples); a decoded clip is resampled to
 * 16 kHz and its features computed (5 s at most, to stay quick). The seeds
 * (tests/fuzz/corpus/audio/) are small files of each format: 16-bit mono, 24-bit stereo and
 * float WAV, FLAC, MP3, Ogg Vorbis, Opus. libvorbis leaks a header's allocations on some crafted
 * Ogg Vorbis streams (upstream: xiph/vorbis#125, the open-error path of ov_open / libsndfile's
 * vorbis reader); that leak, inside libvorbis alone, is suppressed here and named in
 * docs/AUDIO.md, any other is reported. */
#include "fuzz_common.h"
#include "audio/audio.h"

#include <stdlib.h>

const char *__lsan_default_suppressions(void); /* LeakSanitizer asks for it at start */
const char *__lsan_default_suppressions(void) { return "leak:libvorbis.so\n"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    aud_limits lim = aud_default_limits();
    lim.max_bytes = (size_t)1 << 20, lim.max_seconds = 20, lim.max_samples = (int64_t)2 << 20;
    aud_pcm pcm;
    lfm2c_error err = {0};
    if (aud_decode(data, size, &lim, &pcm, &err)) {
        if (!err.msg[0]) abort(); /* a refusal always says why */
        return 0;
    }
    int64_t n = 0;
    float *mono = aud_to_mono(&pcm, 16000, &n);
    const aud_mel_params mp = {16000, 512, 400, 160, 128};
    if (mono && n >= 320 && n <= 5 * 16000) {
        float *mel = malloc(sizeof(float) * 128 * (size_t)aud_mel_frames(&mp, n));
        if (mel && aud_mel(&mp, NULL, mono, n, mel, &err)) abort(); /* enough samples: features always */
        free(mel);
    }
    if (mono != pcm.x) free(mono);
    aud_pcm_free(&pcm);
    return 0;
}
