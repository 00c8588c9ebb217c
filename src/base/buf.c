/* buf.c — the growth rule of buf.h: double from the first capacity until the request fits,
 * with every size checked before it is used. */
#include "base/buf.h"

#include <stdint.h>
#include <stdlib.h>

void *lfm2c_grow(void *p, size_t *cap, size_t len, size_t extra, size_t elem, size_t first) {
    if (extra > SIZE_MAX - len) return NULL;
    size_t need = len + extra;
    if (need <= *cap && p) return p;
    size_t nc = *cap ? *cap : (first ? first : 1);
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return NULL;
        nc *= 2;
    }
    if (!elem || nc > SIZE_MAX / elem) return NULL;
    void *q = realloc(p, nc * elem);
    if (!q) return NULL;
    *cap = nc;
    return q;
}
