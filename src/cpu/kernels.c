/* kernels.c — the run-time choice of the kernel table for this CPU: every ISA's table is listed
 * here, plainest first (the tables themselves live one file per ISA: kernels_scalar.c,
 * kernels_avx2.c, kernels_avx512.c, kernels_amx.c, kernels_neon.c). */
#include "cpu/kernels.h"

#include <stdlib.h>
#include <string.h>

/* Each getter is defined on every architecture by its own file (NULL where the ISA does not
 * exist). No weak defaults here: a weak definition in this object would satisfy the linker and
 * the ISA's object would never be pulled out of the static library. */

int kernels_available(const kernel_ops **out, int max) {
    const kernel_ops *all[] = {kernels_scalar(), kernels_x86_avx2(), kernels_x86_avx512(), kernels_x86_amx(),
                               kernels_neon(), kernels_neon_dotprod(), kernels_neon_i8mm()};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i] && n < max) out[n++] = all[i];
    return n;
}

const kernel_ops *kernels_get(void) {
    const char *force = getenv("LFM2C_ISA");
    const kernel_ops *avail[8];
    int n = kernels_available(avail, 8);
    if (force && *force) {   /* the table of that name, else the first whose name starts with it */
        for (int i = 0; i < n; i++)
            if (!strcmp(avail[i]->isa, force)) return avail[i];
        for (int i = 0; i < n; i++)
            if (!strncmp(avail[i]->isa, force, strlen(force))) return avail[i];
    }
    /* the list is ordered from plainest to fastest. A table is the default only if its
     * results do not depend on the tile shape (batch == one-by-one, bit for bit), which
     * continuous batching needs (tests/test_kernels.c checks every table that claims it). */
    for (int i = n - 1; i > 0; i--)
        if (avail[i]->tile_invariant) return avail[i];
    return avail[0];
}
