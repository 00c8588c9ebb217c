/* test_hugemem.c — huge_alloc: 2 MB aligned, a length of whole 2 MB pages covering the request,
 * zeroed, writable end to end, the length huge_len says, freed by huge_free; zero and sizes that cannot fit (the rounding
 * or the alignment slack would wrap) give NULL, never a wrapped small mapping. */
#include "base/hugemem.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

static void test_sizes(void) {
    const size_t mb2 = (size_t)2 << 20;
    const size_t sizes[] = {1, 4096, mb2 - 1, mb2, mb2 + 1, 3 * mb2 + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t len = 0;
        uint8_t *p = huge_alloc(sizes[i], &len);
        CHECK(p != NULL, "huge_alloc(%zu)", sizes[i]);
        if (!p) continue;
        CHECK((uintptr_t)p % mb2 == 0, "%zu bytes at %p: not 2 MB aligned", sizes[i], (void *)p);
        CHECK(len >= sizes[i] && len % mb2 == 0 && len - sizes[i] < mb2, "%zu bytes: length %zu", sizes[i], len);
        CHECK(huge_len(sizes[i]) == len, "%zu bytes: huge_len %zu, mapped %zu", sizes[i], huge_len(sizes[i]), len);
        size_t nonzero = 0;
        for (size_t o = 0; o < len; o += 4096) nonzero += p[o] != 0;
        CHECK(nonzero == 0 && p[len - 1] == 0, "%zu bytes: not zeroed", sizes[i]);
        memset(p, 0xA5, len); /* every byte of the length is ours */
        CHECK(p[0] == 0xA5 && p[len - 1] == 0xA5, "%zu bytes: not writable", sizes[i]);
        huge_free(p, len);
    }
}

static void test_refusals(void) {
    size_t len = 77;
    CHECK(huge_alloc(0, &len) == NULL && len == 0, "zero bytes: NULL, length 0");
    CHECK(huge_alloc(SIZE_MAX, &len) == NULL && len == 0, "SIZE_MAX: NULL");
    CHECK(huge_alloc(SIZE_MAX - ((size_t)3 << 20), &len) == NULL, "near SIZE_MAX: NULL");
    CHECK(huge_len(0) == 0 && huge_len(SIZE_MAX) == 0, "huge_len of what huge_alloc refuses: 0");
    huge_free(NULL, 0); /* a no-op */
}

int main(void) {
    test_sizes();
    test_refusals();
    TEST_MAIN_END();
}
