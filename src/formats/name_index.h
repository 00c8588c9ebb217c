/* name_index.h — a hash index from names to positions in an owner's table (GGUF tensors,
 * safetensors tensors): linear-time duplicate checks and constant-time lookups on files that
 * hold hundreds of thousands of names, keyed (SipHash-1-3, a random key per process) so that a
 * file cannot choose names that collide. The owner keeps the names; the index keeps positions. */
#ifndef LFM2C_NAME_INDEX_H
#define LFM2C_NAME_INDEX_H
#include <stddef.h>
#include <stdint.h>

typedef const char *(*name_at_fn)(const void *owner, uint32_t i); /* the i-th name of the owner */

typedef struct name_index {
    uint32_t *slots; /* position + 1, 0 = empty; open addressing, capacity a power of two */
    size_t cap, n;
} name_index;

/* Position of name, or -1. */
long name_index_find(const name_index *x, const char *name, name_at_fn at, const void *owner);
/* Adds position i (whose name is at(owner, i)): 0, 1 when that name is already there (not
 * added; *dup gets the earlier position), -1 when out of memory. */
int name_index_add(name_index *x, uint32_t i, name_at_fn at, const void *owner, uint32_t *dup);
void name_index_free(name_index *x);
#endif
