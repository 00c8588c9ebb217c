/* name_index.c — open-addressing hash of names (FNV-1a, linear probing, grown at half load). */
#include "formats/name_index.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
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
