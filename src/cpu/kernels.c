/* kernels.c — the scalar kernel table (the truth every SIMD table is tested against) and the
 * run-time choice of the table for this CPU. */
#include "cpu/kernels.h"
#include "formats/ggml_types.h"

#include <stdlib.h>
#include <string.h>

static void scalar_quantize_act(uint32_t act_type, const float *x, void *dst, int64_t n) {
    if (act_type == GGML_Q8_0) quantize_row_q8_0(x, dst, n);
    else if (act_type == GGML_Q8_K) quantize_row_q8_K(x, dst, n);
    else memcpy(dst, x, (size_t)n * sizeof(float));
}

static void scalar_matmul(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr,
                          const uint8_t *act, size_t act_row, int nc, float *out, size_t out_stride) {
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++)
            out[c * out_stride + r] = vec_dot_ref(wtype, n, w + r * w_row, act + c * act_row);
}

static const kernel_ops SCALAR = {"scalar", true, scalar_quantize_act, scalar_matmul, attention_scalar};

const kernel_ops *kernels_scalar(void) { return &SCALAR; }

/* kernels_x86_avx2/avx512/amx live in kernels_x86.c, which defines them on every architecture
 * (NULL off x86). No weak defaults here: a weak definition in this object would satisfy the
 * linker and kernels_x86.o would never be pulled out of the static library. */

int kernels_available(const kernel_ops **out, int max) {
    const kernel_ops *all[] = {&SCALAR, kernels_x86_avx2(), kernels_x86_avx512(), kernels_x86_amx()};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i] && n < max) out[n++] = all[i];
    return n;
}

const kernel_ops *kernels_get(void) {
    const char *force = getenv("LFM2C_ISA");
    const kernel_ops *avail[8];
    int n = kernels_available(avail, 8);
    if (force && *force) {
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
