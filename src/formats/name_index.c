/* name_index.c — open-addressing hash of names (linear probing, grown at half load).
 *
 * The names come from files we did not write, so the hash is keyed: SipHash-1-3 with a key
 * drawn once per process from the system's random source. Names chosen to collide (in the low
 * bits that pick a slot) under an unkeyed hash made opens quadratic; without the key nobody can
 * choose names that collide here. */
#include "formats/name_index.h"
#include "base/os.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t key0, key1;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void key_init(void) {
    uint64_t k[2] = {0, 0};
    if (!os_random(k, sizeof k)) { /* no entropy yet: the clock */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&k;
        clock_gettime(CLOCK_REALTIME, &ts);
        k[1] ^= (uint64_t)ts.tv_sec * 0xC2B2AE3D27D4EB4Full ^ (uint64_t)ts.tv_nsec;
    }
    key0 = k[0];
    key1 = k[1];
}

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND \
    do { \
        v0 += v1; \
        v1 = rotl(v1, 13); \
        v1 ^= v0; \
        v0 = rotl(v0, 32); \
        v2 += v3; \
        v3 = rotl(v3, 16); \
        v3 ^= v2; \
        v0 += v3; \
        v3 = rotl(v3, 21); \
        v3 ^= v0; \
        v2 += v1; \
        v1 = rotl(v1, 17); \
        v1 ^= v2; \
        v2 = rotl(v2, 32); \
    } while (0)

/* SipHash-1-3 of the string under the process key. */
static uint64_t hash(const char *s) {
    pthread_once(&key_once, key_init);
    size_t n = strlen(s);
    uint64_t v0 = key0 ^ 0x736f6d6570736575ull, v1 = key1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = key0 ^ 0x6c7967656e657261ull, v3 = key1 ^ 0x7465646279746573ull;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8); /* host order: the hash only has to agree with itself */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t k = 0; i + k < n; k++) b |= (uint64_t)p[i + k] << (8 * k);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

long name_index_find(const name_index *x, const char *name, name_at_fn at, const void *owner) {
    if (!x->cap) return -1;
    for (size_t k = hash(name) & (x->cap - 1);; k = (k + 1) & (x->cap - 1)) {
        uint32_t v = x->slots[k];
        if (!v) return -1;
        if (!strcmp(at(owner, v - 1), name)) return (long)(v - 1);
    }
}

static void put(uint32_t *slots, size_t cap, uint32_t v, const char *name) {
    size_t k = hash(name) & (cap - 1);
    while (slots[k]) k = (k + 1) & (cap - 1);
    slots[k] = v;
}

int name_index_add(name_index *x, uint32_t i, name_at_fn at, const void *owner, uint32_t *dup) {
    long found = name_index_find(x, at(owner, i), at, owner);
    if (found >= 0) {
        if (dup) *dup = (uint32_t)found;
        return 1;
    }
    if (2 * (x->n + 1) > x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 64;
        uint32_t *s = calloc(cap, sizeof *s);
        if (!s) return -1;
        for (size_t k = 0; k < x->cap; k++)
            if (x->slots[k]) put(s, cap, x->slots[k], at(owner, x->slots[k] - 1));
        free(x->slots);
        x->slots = s;
        x->cap = cap;
    }
    put(x->slots, x->cap, i + 1, at(owner, i));
    x->n++;
    return 0;
}

void name_index_free(name_index *x) {
    free(x->slots);
    x->slots = NULL;
    x->cap = x->n = 0;
}
