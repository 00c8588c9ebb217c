/* sha256.h — SHA-256 (FIPS 180-4), streaming, on the ground floor (base/): the engine keys an
 * image's rows by the digest of its pixels (vision/image_api.c), the Hub client checks downloads
 * against the LFS digest, the server digests API keys, and the quantize tests compare tensor
 * bytes with recorded digests. */
#ifndef LFM2C_SHA256_H
#define LFM2C_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t nbuf;
    uint64_t len;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
/* Pads, finishes and writes the 32 bytes of the digest; c is spent. */
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* The same, written as 64 lowercase hex digits + NUL. */
void sha256_final_hex(sha256_ctx *c, char out[65]);
/* The digest of one buffer. */
void sha256_hex(const void *data, size_t n, char out[65]);
#endif
