/* digest.c — the SHA-256 an audio clip's rows are named by (audio_api.c). SHA-256 lives in the
 * CLI's hub archive today (src/hub/sha256.c); until it moves to src/base/ for the images too,
 * its code is compiled here under this file's own names (the macros below), so the library
 * needs nothing of the hub archive and the two never clash. Switching later: include
 * base/sha256.h and call it from aud_digest, delete the macros and the include. */
#define sha256_init aud_sha256_init
#define sha256_update aud_sha256_update
#define sha256_final_hex aud_sha256_final_hex
#define sha256_hex aud_sha256_hex
#include "hub/sha256.c"

#include "audio/audio.h"

void aud_digest(const float *x, int64_t n, int rate, char out[65]) {
    sha256_ctx c;
    sha256_init(&c);
    const uint8_t r[4] = {(uint8_t)rate, (uint8_t)(rate >> 8), (uint8_t)(rate >> 16), (uint8_t)(rate >> 24)};
    sha256_update(&c, r, sizeof r);
    sha256_update(&c, x, (size_t)n * sizeof *x);
    sha256_final_hex(&c, out);
}
