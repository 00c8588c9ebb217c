/* kv_layout.c — the sizes of the KV cache's storage layout (kv_layout.h). */
#include "formats/kv_layout.h"
#include "formats/ggml_types.h"

const char *kv_type_name(int type) {
    return type == KV_F32 ? "f32" : type == KV_F16 ? "f16" : type == KV_Q8_0 ? "q8_0" : "?";
}

size_t kv_k_head_block_bytes(int type, int hd) {
    if (type == KV_F32) return (size_t)hd * KV_KB * 4;
    if (type == KV_F16) return (size_t)hd * KV_KB * 2;
    return (size_t)hd * KV_KB + (size_t)(hd / 32) * KV_KB * 2;
}

size_t kv_v_row_bytes(int type, int kv_dim) {
    if (type == KV_F32) return (size_t)kv_dim * 4;
    if (type == KV_F16) return (size_t)kv_dim * 2;
    return (size_t)(kv_dim / 32) * sizeof(block_q8_0);
}

size_t kv_bytes_per_token(int type_k, int type_v, int n_head_kv, int hd) {
    return (size_t)n_head_kv * kv_k_head_block_bytes(type_k, hd) / KV_KB + kv_v_row_bytes(type_v, n_head_kv * hd);
}

size_t kv_layer_bytes(int type_k, int type_v, int n_head_kv, int hd, int n_tokens) {
    const size_t blocks = ((size_t)(n_tokens > 0 ? n_tokens : 0) + KV_KB - 1) / KV_KB;
    return blocks * n_head_kv * kv_k_head_block_bytes(type_k, hd) +
           blocks * KV_KB * kv_v_row_bytes(type_v, n_head_kv * hd);
}
