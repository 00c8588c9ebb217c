/* test_buf.c — the growth rule (src/base/buf.c): the first capacity, doubling until a request
 * fits, no reallocation when it fits already, a NULL block always getting one, and the refusals
 * that leave the block and its capacity as they were (a count or byte size that would wrap).
 * Also the clock (src/base/clock.h): it never runs backwards. */
#include "base/buf.h"
#include "base/clock.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

static void test_first_and_doubling(void) {
    size_t cap = 0;
    char *p = lfm2c_grow(NULL, &cap, 0, 10, 1, 64);
    CHECK(p && cap == 64, "first capacity: %zu", cap);
    memset(p, 'a', 10);
    char *q = lfm2c_grow(p, &cap, 10, 54, 1, 64);
    CHECK(q == p && cap == 64, "a request that fits keeps the block (cap %zu)", cap);
    q = lfm2c_grow(p, &cap, 64, 1, 1, 64);
    CHECK(q && cap == 128 && q[9] == 'a', "one past doubles and keeps the contents (cap %zu)", cap);
    p = q;
    q = lfm2c_grow(p, &cap, 100, 1000, 1, 64);
    CHECK(q && cap == 2048, "doubles until it fits: %zu", cap);
    free(q);
}

static void test_elements_and_empty(void) {
    size_t cap = 0;
    int *v = lfm2c_grow(NULL, &cap, 0, 0, sizeof(int), 4);
    CHECK(v && cap == 4, "a NULL block gets one even for 0 elements (cap %zu)", cap);
    for (int i = 0; i < 100; i++) {
        int *w = lfm2c_grow(v, &cap, (size_t)i, 1, sizeof *v, 4);
        CHECK(w != NULL, "grow to %d", i + 1);
        if (!w) break;
        v = w;
        v[i] = i;
    }
    CHECK(cap == 128, "4 doubled to hold 100: %zu", cap);
    int sum = 0;
    for (int i = 0; i < 100; i++) sum += v[i];
    CHECK(sum == 4950, "contents kept: %d", sum);
    free(v);
}

static void test_refusals(void) {
    size_t cap = 0;
    char *p = lfm2c_grow(NULL, &cap, 0, 8, 1, 8);
    CHECK(p && cap == 8, "setup");
    CHECK(lfm2c_grow(p, &cap, SIZE_MAX, 1, 1, 8) == NULL && cap == 8, "len + extra wraps");
    CHECK(lfm2c_grow(p, &cap, 8, SIZE_MAX / 2 + 2, 1, 8) == NULL && cap == 8, "the doubling would wrap");
    CHECK(lfm2c_grow(p, &cap, 8, SIZE_MAX / 16, 64, 8) == NULL && cap == 8, "the byte size would wrap");
    CHECK(lfm2c_grow(p, &cap, 8, 1, 0, 8) == NULL && cap == 8, "a zero element size");
    p[7] = 'z';
    CHECK(p[7] == 'z', "the block is still valid after the refusals");
    free(p);
}

static void test_clock(void) {
    double a = lfm2c_now_s();
    double b = lfm2c_now_s();
    CHECK(a > 0 && b >= a, "monotonic: %f then %f", a, b);
}

int main(void) {
    test_first_and_doubling();
    test_elements_and_empty();
    test_refusals();
    test_clock();
    TEST_MAIN_END();
}
