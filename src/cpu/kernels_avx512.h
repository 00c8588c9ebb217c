/* kernels_avx512.h — the entry points of the AVX-512 table (kernels_avx512.c) that the AMX
 * table (kernels_amx.c) reuses: the activation quantizer, the matmul for everything the AMX
 * tiles do not take (decode and few columns above all), and the interleaved layouts it packs
 * the weights into. x86-64 only. */
#ifndef LFM2C_KERNELS_AVX512_H
#define LFM2C_KERNELS_AVX512_H

#include <stddef.h>
#include <stdint.h>

void avx512_quantize_act(uint32_t act_type, const float *x, void *dst, int64_t n);
void avx512_matmul(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                   size_t act_row, int nc, float *out, size_t os);
uint32_t avx512_packed_type(uint32_t wtype, int64_t n_rows);
#endif
