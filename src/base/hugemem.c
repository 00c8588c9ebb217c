/* hugemem.c — huge_alloc / huge_free (hugemem.h): whole 2 MB pages from the platform layer
 * (os_pages_alloc: on Linux an anonymous mapping, 2 MB aligned and advised into huge pages; on
 * Windows large pages where the process may lock them). */
#include "base/hugemem.h"

#include "base/os.h"

#include <stdint.h>

enum { HUGE_PAGE = 2u << 20 };

size_t huge_len(size_t bytes) {
    if (bytes == 0 || bytes > SIZE_MAX - 2 * (size_t)HUGE_PAGE) return 0; /* the rounding and the slack fit */
    return (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
}

void *huge_alloc(size_t bytes, size_t *len) {
    *len = huge_len(bytes);
    return *len ? os_pages_alloc(*len, HUGE_PAGE) : NULL;
}

void huge_free(void *p, size_t len) { os_pages_free(p, len); }
