/* buf.h — the one growth rule for arrays that grow as they are appended to (text buffers, token
 * lists, tables): the capacity starts at a first size and doubles until the request fits, and
 * every size is checked, so no count or byte size wraps. The caller keeps its own pointer,
 * length and capacity (a struct of its choosing); this only makes room.
 *
 *     char *p = lfm2c_grow(b->p, &b->cap, b->n, n + 1, 1, 256);
 *     if (!p) return false;          // b->p and b->cap are as they were, b->p still valid
 *     b->p = p;
 *
 * Arrays with their own rules stay outside it: those whose growth is charged to a budget before
 * it happens (the server's request bodies, the template interpreter's arena), hash tables sized
 * to a power of two once, and capacities held as int. Internal: not part of include/lfm2c.h. */
#ifndef LFM2C_BASE_BUF_H
#define LFM2C_BASE_BUF_H
#include <stddef.h>

/* Makes room for `extra` more elements of `elem` bytes after the first `len` in the block p
 * (capacity *cap elements; p may be NULL with *cap 0). Returns p when they fit already, else p
 * realloc'd to the first of first, 2 first, 4 first, ... (or *cap, 2 *cap, ... once it has one)
 * that holds len + extra, with *cap set to it (a NULL p gets a block even for 0 elements, so
 * NULL means failure alone). Returns NULL, leaving p and *cap untouched, when the count or the
 * byte size would overflow size_t or memory runs out. */
void *lfm2c_grow(void *p, size_t *cap, size_t len, size_t extra, size_t elem, size_t first);
#endif
