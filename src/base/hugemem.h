/* hugemem.h — memory asked for in 2 MB transparent huge pages: an anonymous mapping, 2 MB
 * aligned, advised MADV_HUGEPAGE before its first touch, so that the kernel backs it with huge
 * pages where it can (with THP "madvise" as well as "always"). The weights' copy, the big KV
 * arrays, and every timing or benchmark that must stream memory the way decode does use it:
 * on 4 KB pages a stream pays translations that decode does not, and reads slower
 * (docs/HARDWARE.md "What the code's choices measured"). On Windows it is large pages where
 * the process may lock them (SeLockMemoryPrivilege), else plain pages; elsewhere aligned heap
 * memory (base/os.h's os_pages_alloc). Internal: not part of include/lfm2c.h. */
#ifndef LFM2C_BASE_HUGEMEM_H
#define LFM2C_BASE_HUGEMEM_H
#include <stddef.h>

/* bytes of zeroed read-write memory, 2 MB aligned; *len gets the length to give huge_free.
 * NULL when memory is short. */
void *huge_alloc(size_t bytes, size_t *len);
/* The length huge_alloc(bytes) maps: bytes rounded up to whole 2 MB pages (0 where it refuses),
 * for a caller that keeps only the size it asked for. */
size_t huge_len(size_t bytes);
/* Frees what huge_alloc returned (p may be NULL). */
void huge_free(void *p, size_t len);

#endif
