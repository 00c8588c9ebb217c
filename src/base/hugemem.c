/* hugemem.c — huge_alloc / huge_free (hugemem.h): mmap a 2 MB more than asked, keep the
 * 2 MB-aligned part, advise it into huge pages; plain aligned heap memory off Linux. */
#include "base/hugemem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

enum { HUGE_PAGE = 2u << 20 };

size_t huge_len(size_t bytes) {
    if (bytes == 0 || bytes > SIZE_MAX - 2 * (size_t)HUGE_PAGE) return 0; /* the rounding and the slack fit */
    return (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
}

void *huge_alloc(size_t bytes, size_t *len) {
    *len = huge_len(bytes);
    if (*len == 0) return NULL;
#if defined(__linux__)
    uint8_t *raw = mmap(NULL, *len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    munmap(p + *len, (size_t)(raw + HUGE_PAGE - p)); /* the tail past the aligned length */
#ifdef MADV_HUGEPAGE
    madvise(p, *len, MADV_HUGEPAGE);
#endif
    return p;
#else
    void *p = aligned_alloc(HUGE_PAGE, *len);
    if (p) memset(p, 0, *len);
    return p;
#endif
}

void huge_free(void *p, size_t len) {
    if (!p) return;
#if defined(__linux__)
    munmap(p, len);
#else
    (void)len;
    free(p);
#endif
}
