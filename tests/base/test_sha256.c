/* test_sha256.c — the FIPS 180-4 test vectors (empty, "abc", the two-block 448-bit message, a
 * million 'a's), and streaming in pieces of every size from 1 to 130 bytes equals one call:
 * padding at each length around the 55/56/64-byte block edges. */
#include "base/sha256.h"
#include "test.h"

#include <string.h>

int main(void) {
    char hex[65];
    sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "empty: %s", hex);
    sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "abc: %s", hex);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, strlen(m), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "448 bits: %s", hex);
    static char a[1000000];
    memset(a, 'a', sizeof a);
    sha256_hex(a, sizeof a, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "1M a: %s", hex);

    unsigned char buf[200];
    for (int i = 0; i < 200; i++) buf[i] = (unsigned char)(i * 37 + 11);
    int bad = 0;
    for (size_t len = 0; len <= 200; len++) {
        char one[65];
        sha256_hex(buf, len, one);
        for (size_t piece = 1; piece <= 130; piece++) {
            sha256_ctx c;
            sha256_init(&c);
            for (size_t o = 0; o < len; o += piece) sha256_update(&c, buf + o, len - o < piece ? len - o : piece);
            sha256_final_hex(&c, hex);
            bad += strcmp(hex, one) != 0;
        }
    }
    CHECK(bad == 0, "%d streamed digests differ from the one-call digest", bad);
    TEST_MAIN_END();
}
