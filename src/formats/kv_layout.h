/* kv_layout.h — the storage layout of the KV cache in host memory: the cache types, the block
 * of KV_KB positions K is kept in, and the bytes of a block, a row and a layer. Format facts,
 * like ggml_types.h's: the CPU backend stores and reads its cache in this layout (cpu/kernels.h
 * has the attention contract over it), and the public lfm2c_kv_cache_bytes counts by it.
 *
 * Cache types: KV_F32, KV_F16 (default) and KV_Q8_0 (blocks of 32 values along the head
 * dimension with one f16 scale, as GGML's Q8_0: 34 bytes per 32 values).
 * K layout (one layer of one sequence): positions in blocks of KV_KB = 16; block b holds, for
 *   each KV head h, the head's hd values of its 16 positions transposed ([i][16], i < hd), so a
 *   score is computed for 16 keys at once; Q8_0 keeps the int8 values [hd][16] followed by the
 *   scales [hd/32][16] (f16). Bytes per block: n_head_kv * kv_k_head_block_bytes().
 * V layout: one row per position of n_head_kv * hd values (F32 / F16 / GGML Q8_0 blocks). */
#ifndef LFM2C_KV_LAYOUT_H
#define LFM2C_KV_LAYOUT_H

#include <stddef.h>

enum { KV_F16 = 0, KV_F32 = 1, KV_Q8_0 = 2 }; /* = LFM2C_KV_* of lfm2c.h */
enum { KV_KB = 16 };

const char *kv_type_name(int type); /* "f16", "f32", "q8_0"; "?" for another value */
size_t kv_k_head_block_bytes(int type, int hd);
size_t kv_v_row_bytes(int type, int kv_dim);
/* bytes per position of one layer of K plus V (K counted per whole block / KV_KB) */
size_t kv_bytes_per_token(int type_k, int type_v, int n_head_kv, int hd);
/* bytes of one layer's K and V arrays holding n_tokens positions (K in whole blocks, V rows to
 * match) */
size_t kv_layer_bytes(int type_k, int type_v, int n_head_kv, int hd, int n_tokens);
#endif
