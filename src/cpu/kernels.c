/* kernels.c — the kernel tables this CPU can run: every ISA's table is listed here, plainest
 * first (the tables themselves live one file per ISA: kernels_scalar.c, kernels_avx2.c,
 * kernels_avx512.c, kernels_amx.c, kernels_neon.c; which one runs: kernels_choose.c). */
#include "cpu/kernels.h"

#include <stdlib.h>
#include <string.h>

/* Each getter is defined on every architecture by its own file (NULL where the ISA does not
 * exist). No weak defaults here: a weak definition in this object would satisfy the linker and
 * the ISA's object would never be pulled out of the static library. */

int kernels_available(const kernel_ops **out, int max) {
    const kernel_ops *all[] = {kernels_scalar(), kernels_x86_avx2(),     kernels_x86_avx512(), kernels_x86_amx(),
                               kernels_neon(),   kernels_neon_dotprod(), kernels_neon_i8mm()};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i] && n < max) out[n++] = all[i];
    return n;
}

/* The list above is ordered from plainest to fastest; which table runs is kernels_choose.c's
 * decision (LFM2C_ISA, a table of known CPUs, a timing), made once per process. */
const kernel_ops *kernels_get(void) { return kernels_choice()->ops; }
