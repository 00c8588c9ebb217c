/* vk_model.h — the Vulkan backend's own state and what its two files share: the model's device,
 * pipelines, weights and scratch (vk_model), a session's device KV cache and conv state
 * (vk_session), the shader ids, the batch table's layout, and the recording helpers. The
 * device, buffers and upload are backend_vulkan.c's; the model pass that records the
 * dispatches is forward.c's (the same blocks in the same order as the CPU's cpu/forward.c). */
#ifndef LFM2C_VK_MODEL_H
#define LFM2C_VK_MODEL_H
#include "core/gpu_shapes.h"
#include "core/model.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

/* the shaders, one per src/vulkan/NAME.comp: SH_NAME indexes vk_model.pipe */
/* clang-format re-wraps this list differently on each run: it is left as written */
/* clang-format off */
#define SHADERS(X) \
    X(matmul) X(matmul_sg) X(matmul_tile) X(moe_group) X(embed) X(rmsnorm) X(qk) X(attention) X(conv) \
    X(conv_state) X(swiglu) X(route) X(combine)
/* clang-format on */
#define ID(n) SH_##n,
enum { SHADERS(ID) SH_COUNT };
#undef ID

enum { TOKW = 12 }; /* ints per token in the batch table (tok.glsl) */

/* ---- state ------------------------------------------------------------------------------------ */

typedef struct vbuf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;
    uint64_t addr;
    void *map;
} vbuf;
typedef struct vk_weight {
    const uint8_t *data;
    uint64_t bytes, addr;
} vk_weight;

typedef struct vk_scratch {
    int cap; /* tokens */
    vbuf x, a, out, big, big2, hid, router, wsel, sel, G, U, D, cnt, list;
    vbuf logits, emb, batch; /* host-visible (emb: the output rows' final norm, for embedding sessions) */
} vk_scratch;

typedef struct vk_model {
    VkInstance inst;
    VkPhysicalDevice pd;
    VkDevice dev;
    VkQueue queue;
    VkCommandPool pool;
    VkCommandBuffer cb;
    VkFence fence;
    VkPipelineLayout layout;
    VkPipeline pipe[SH_COUNT];
    VkPhysicalDeviceMemoryProperties memp;
    uint32_t max_groups[3];
    bool subgroup;         /* matmul_sg runs the GEMV (subgroup_ok) */
    int tile_min;          /* products over this many columns or more: matmul_tile */
    bool has_host_import;  /* VK_EXT_external_memory_host enabled */
    uint64_t import_align; /* its minImportedHostPointerAlignment */
    uint64_t imported;     /* bytes of weights imported (not copied) */
    PFN_vkGetMemoryHostPointerPropertiesEXT host_ptr_props;
    VkPhysicalDeviceType type;
    VkQueryPool timer;  /* two timestamps a forward, where the queue has them */
    double tick_ns;     /* timestampPeriod */
    uint64_t tick_mask; /* timestampValidBits */
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    vbuf *chunks;
    int n_chunks;
    vk_weight *w; /* sorted by data */
    int n_w;
    gpu_widths wd; /* the scratch rows' widths (core/gpu_shapes.h) */
    vk_scratch s;
    pthread_mutex_t lock;
    bool lock_ok;
} vk_model;

typedef struct vk_session {
    vbuf k, v, conv;
    int cap;
} vk_session;

/* the batch table's parts for cap tokens: tokens, seq_last, out_tok (ints), rope (floats) */
static inline size_t batch_seq_last(int cap) { return (size_t)cap * TOKW; }
static inline size_t batch_out_tok(int cap) { return batch_seq_last(cap) + (size_t)cap; }
static inline size_t batch_rope(int cap) { return batch_out_tok(cap) + (size_t)cap; }

/* qk.comp / attention.comp's kv bits: which of the caches are F32 (the others F16) */
static inline uint32_t kv_f32_bits(const lfm2c_model *m) {
    return (m->type_k == LFM2C_KV_F32 ? 1u : 0u) | (m->type_v == LFM2C_KV_F32 ? 2u : 0u);
}

/* Records one dispatch of shader sh (push constants pc) over gx x gy (x gz) workgroups, then a
 * barrier; vk_dispatch_1d: n elements, 256 per workgroup, on a 2-D grid (tok.glsl's
 * flat_index). backend_vulkan.c. */
void vk_dispatch3(vk_model *vm, int sh, const void *pc, size_t pc_size, uint32_t gx, uint32_t gy, uint32_t gz);
void vk_dispatch(vk_model *vm, int sh, const void *pc, size_t pc_size, uint32_t gx, uint32_t gy);
void vk_dispatch_1d(vk_model *vm, int sh, const void *pc, size_t pc_size, size_t n);
/* The device address of a weight tensor (0 for an absent one). backend_vulkan.c. */
uint64_t vk_weight_addr(const vk_model *vm, const tensor *t);
/* Records every dispatch of one forward over a batch whose table is in vm->s.batch; with emb,
 * the output rows' final norm is also copied to vm->s.emb. forward.c. */
void vk_record(vk_model *vm, const lfm2c_model *m, int T, int n_seq, int n_out, bool emb);
#endif
