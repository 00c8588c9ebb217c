/* scratch.c — grow-only aligned scratch slots (scratch.h). */
#include "cpu/scratch.h"
#include "base/os.h"

#include <stdlib.h>

struct scratch {
    int n_slots;
    struct {
        void *buf;
        size_t cap;
    } slot[];
};

scratch *scratch_new(int n_slots) {
    scratch *s = calloc(1, sizeof(scratch) + sizeof s->slot[0] * (size_t)n_slots);
    if (s) s->n_slots = n_slots;
    return s;
}

void scratch_free(scratch *s) {
    if (!s) return;
    for (int i = 0; i < s->n_slots; i++) os_aligned_free(s->slot[i].buf);
    free(s);
}

void *scratch_get(scratch *s, int slot, size_t bytes) {
    if (bytes > s->slot[slot].cap) {
        os_aligned_free(s->slot[slot].buf);
        size_t cap = (bytes + 63) / 64 * 64;
        s->slot[slot].buf = os_aligned_alloc(64, cap);
        s->slot[slot].cap = s->slot[slot].buf ? cap : 0;
    }
    return s->slot[slot].buf;
}

size_t scratch_total(const scratch *s) {
    size_t n = 0;
    for (int i = 0; i < s->n_slots; i++) n += s->slot[i].cap;
    return n;
}
