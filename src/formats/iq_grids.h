/* iq_grids.h — the lookup tables of the importance-matrix quant types (iq_grids.c: format data
 * from ggml's ggml-common.h). A grid entry holds a group of weights as bytes, lowest byte first:
 * 8 unsigned magnitudes (IQ2: iq2xxs_grid 256 entries, iq2xs_grid 512, iq2s_grid 1024), 4 (IQ3:
 * iq3xxs_grid 256, iq3s_grid 512), or 8 values of -1, 0, +1 as int8 (IQ1: iq1s_grid 2048).
 * ksigns_iq2xs[i] is the sign mask of 8 weights (bit j set: weight j negative) from 7 stored bits
 * i, bit 7 their parity (an even count of negatives). */
#ifndef LFM2C_IQ_GRIDS_H
#define LFM2C_IQ_GRIDS_H
#include <stdint.h>

extern const uint64_t iq2xxs_grid[256];
extern const uint64_t iq2xs_grid[512];
extern const uint64_t iq2s_grid[1024];
extern const uint32_t iq3xxs_grid[256];
extern const uint32_t iq3s_grid[512];
extern const uint64_t iq1s_grid[2048];
extern const uint8_t ksigns_iq2xs[128];
#endif
