/* digest.c — the SHA-256 an audio clip's rows are named by (audio_api.c): the sample rate's four
 * bytes, then the samples' bytes, through base/sha256.h. */
#include "audio/audio.h"
#include "base/sha256.h"

void aud_digest(const float *x, int64_t n, int rate, char out[65]) {
    sha256_ctx c;
    sha256_init(&c);
    const uint8_t r[4] = {(uint8_t)rate, (uint8_t)(rate >> 8), (uint8_t)(rate >> 16), (uint8_t)(rate >> 24)};
    sha256_update(&c, r, sizeof r);
    sha256_update(&c, x, (size_t)n * sizeof *x);
    sha256_final_hex(&c, out);
}
