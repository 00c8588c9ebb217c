/* mem_plan.h — the GPU memory planner (issue 71 item 2), a pure host function: given a model's
 * shapes and weight bytes, the card's free memory (or a cap: --gpu-mem-cap, $LFM2C_GPU_MEM_CAP),
 * the slots and the context of each (lfm2c_memory_plan, include/lfm2c.h, is its public face), it chooses per part what fits, in the order that buys the
 * most speed for the memory: the KV cache of every slot (the type asked for, else F16), then BF16
 * copies of the non-expert linears (the batched products through cuBLASLt), then BF16 copies of
 * the experts; the Q4_K (as stored) weights always stay (the one-column decode reads them). */
#ifndef LFM2C_MEM_PLAN_H
#define LFM2C_MEM_PLAN_H
#include "lfm2c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the plan needs of a model. */
typedef struct mem_shapes {
    int n_embd, n_vocab, n_layer, n_attn, n_conv, head_dim, n_head, n_head_kv;
    int n_expert, n_expert_used, expert_ff, ff_max; /* ff_max: the widest dense FFN */
    uint64_t weight_bytes;                          /* every tensor as stored (Q4_K ...) */
    uint64_t dense_params;  /* weights of the non-expert linears: attention, conv, dense FFN, router, head */
    uint64_t expert_params; /* weights of the experts */
} mem_shapes;

/* What is asked of it. */
typedef struct mem_request {
    uint64_t free_bytes; /* the card's free memory */
    uint64_t cap_bytes;  /* at most this (0: none) */
    int slots, ctx;      /* sequences and positions each */
    int kv_type;         /* LFM2C_KV_F16 or LFM2C_KV_F32: preferred */
    int ubatch;          /* tokens a forward (the scratch) */
} mem_request;

typedef struct mem_plan {
    bool fits;         /* the weights, the KV of every slot and the scratch fit the budget */
    int kv_type;       /* chosen */
    bool bf16_dense;   /* BF16 copies of the non-expert linears */
    bool bf16_experts; /* BF16 copies of the experts */
    uint64_t budget;   /* min(free, cap) less the reserve */
    uint64_t reserve;  /* kept free: the CUDA context, cuBLAS workspaces, fragmentation */
    uint64_t weights, kv, conv, scratch, dense_bf16, experts_bf16, total;
    int max_slots; /* the most slots of ctx that fit with the weights as stored */
} mem_plan;

#ifdef LFM2C_HAVE_CUDA
/* The CUDA device's free and total memory (cuda/device_mem.cu); -1 where there is no device. */
int cuda_mem_info(uint64_t *free_bytes, uint64_t *total_bytes);
#endif

/* The shapes of an open model (its tensors' sizes and types). */
void mem_shapes_of(const lfm2c_model *m, mem_shapes *sh);
/* The plan; false (and p->fits false) when not even the Q4_K weights and the KV of the slots fit. */
bool mem_plan_make(const mem_shapes *sh, const mem_request *rq, mem_plan *p);
/* The plan in a few lines (lfm2c info --device cuda). Returns the length written. */
int mem_plan_text(const mem_plan *p, const mem_request *rq, char *buf, size_t cap);
/* The KV bytes a position of one sequence takes at kv_type. */
uint64_t mem_kv_per_token(const mem_shapes *sh, int kv_type);

#ifdef __cplusplus
}
#endif
#endif
