/* backend_vulkan.c — the Vulkan backend's device, buffers and upload, and its row of the backend
 * table: the LFM2 forward on one Vulkan device, whose dispatches forward.c records (the same
 * blocks as cpu/forward.c; the shaders are src/vulkan/NAME.comp, compiled to SPIR-V at build
 * time and linked in as byte arrays, cmake/embed.cmake). The state both files share is
 * vk_model.h's.
 *
 * Every buffer is reached from the shaders by its device address (Vulkan 1.2 buffer device
 * address, passed in push constants): no descriptor sets. The weights are uploaded once, each
 * tensor as stored in the GGUF (its quantized blocks), packed into a few device buffers; a
 * tensor's device address is found from its host pointer. Activations stay float. A forward is
 * one command buffer — every dispatch followed by a memory barrier — submitted and waited for;
 * the logits land in host-visible memory and are copied into the sessions' buffers. Sampling
 * stays on the host. Sessions keep their KV cache in device memory (F16 or F32 as -ctk / -ctv
 * say; q8_0 is refused) and their conv state in host-visible memory (pull / push are copies).
 * One mutex serialises the queue.
 * The weight products (forward.c's mm) are a GEMV for few columns and a tiled GEMM from tile_min columns,
 * MoE products grouped by expert (docs/VULKAN.md); on unified memory the weights are imported
 * in place (import_weights); each forward is timed by two timestamps into the model's profile. */
#include "vulkan/backend_vulkan.h"
#include "vulkan/vk_model.h"
#include "base/error.h"
#include "core/forward.h"
#include "core/gpu_shapes.h"
#include "core/model.h"
#include "core/session.h"
#include "formats/ggml_types.h"
#include "base/os.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

/* ---- the shaders (generated arrays, one per src/vulkan/NAME.comp) ----------------------------- */

#define DECL(n) \
    extern const unsigned char lfm2c_spv_##n[]; \
    extern const size_t lfm2c_spv_##n##_len;
SHADERS(DECL)
#undef DECL
#define ENTRY(n) {lfm2c_spv_##n, &lfm2c_spv_##n##_len, #n},
static const struct {
    const unsigned char *code;
    const size_t *len;
    const char *name;
} spv[] = {SHADERS(ENTRY)};
#undef ENTRY

/* ---- instance and device ------------------------------------------------------------------------ */

static int vk_fail(lfm2c_error *err, VkResult r, const char *what) {
    int code = r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ? LFM2C_ENOMEM : LFM2C_EIO;
    lfm2c_set_error(err, code, "Vulkan: %s failed (VkResult %d%s)", what, (int)r,
                    r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? ": out of device memory" : "");
    return -1;
}

/* One instance for the process, made on first use and kept: models come and go with their
 * devices, the drivers stay loaded (unloading one with allocations of its own still live, as
 * lavapipe has, would read as leaks). VK_NULL_HANDLE when there is no loader or driver. */
static VkInstance the_instance;
static pthread_once_t instance_once = PTHREAD_ONCE_INIT;

static void instance_make(void) {
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "lfm2c", 1, "lfm2c", 1, VK_API_VERSION_1_2};
    VkInstanceCreateInfo ci = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, NULL, 0, &app, 0, NULL, 0, NULL};
    if (vkCreateInstance(&ci, NULL, &the_instance) != VK_SUCCESS) the_instance = VK_NULL_HANDLE;
}

static VkInstance instance_get(void) {
    pthread_once(&instance_once, instance_make);
    return the_instance;
}

/* A compute queue family of pd, or -1. */
static int compute_family(VkPhysicalDevice pd) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties qf[64];
    if (n > 64) n = 64;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, qf);
    for (uint32_t i = 0; i < n; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return (int)i;
    return -1;
}

/* Vulkan 1.2, a compute queue, buffer device addresses: what the backend needs. */
static bool device_usable(VkPhysicalDevice pd) {
    VkPhysicalDeviceProperties pr;
    vkGetPhysicalDeviceProperties(pd, &pr);
    if (pr.apiVersion < VK_API_VERSION_1_2 || compute_family(pd) < 0) return false;
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceFeatures2 f = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f12, {0}};
    vkGetPhysicalDeviceFeatures2(pd, &f);
    return f12.bufferDeviceAddress;
}

/* Preference among usable devices: discrete, integrated, virtual, other, CPU (lavapipe). */
static int device_rank(VkPhysicalDevice pd) {
    VkPhysicalDeviceProperties pr;
    vkGetPhysicalDeviceProperties(pd, &pr);
    switch (pr.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 4;
    default: return 3;
    }
}

/* The device to use: LFM2C_VULKAN_DEVICE=N (the N-th usable one), else the best ranked.
 * Returns the number of usable devices; *pick is VK_NULL_HANDLE when there is none. */
static int pick_device(VkInstance inst, VkPhysicalDevice *pick) {
    uint32_t n = 0;
    *pick = VK_NULL_HANDLE;
    if (vkEnumeratePhysicalDevices(inst, &n, NULL) != VK_SUCCESS || !n) return 0;
    VkPhysicalDevice all[16];
    if (n > 16) n = 16;
    if (vkEnumeratePhysicalDevices(inst, &n, all) < 0) return 0;
    const char *env = getenv("LFM2C_VULKAN_DEVICE");
    int want = env && *env ? atoi(env) : -1, usable = 0, best_rank = 99;
    for (uint32_t i = 0; i < n; i++) {
        if (!device_usable(all[i])) continue;
        int r = device_rank(all[i]);
        if (want >= 0 ? usable == want : r < best_rank) {
            *pick = all[i];
            best_rank = want >= 0 ? -1 : r;
        }
        usable++;
    }
    return usable;
}

int vulkan_device_count(char *name, size_t cap) {
    VkInstance inst = instance_get();
    if (!inst) return 0;
    VkPhysicalDevice pd;
    int n = pick_device(inst, &pd);
    if (name && cap) {
        name[0] = 0;
        if (pd) {
            VkPhysicalDeviceProperties pr;
            vkGetPhysicalDeviceProperties(pd, &pr);
            snprintf(name, cap, "%s (%s)", pr.deviceName,
                     pr.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? "CPU implementation" : "GPU");
        }
    }
    return n;
}

static int make_pipelines(vk_model *vm, lfm2c_error *err) {
    VkPushConstantRange pr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, 128};
    VkPipelineLayoutCreateInfo li = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 0, NULL, 1, &pr};
    VkResult r = vkCreatePipelineLayout(vm->dev, &li, NULL, &vm->layout);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkCreatePipelineLayout");
    for (int i = 0; i < SH_COUNT; i++) {
        if (i == SH_matmul_sg && !vm->subgroup) continue; /* its SPIR-V needs subgroup arithmetic */
        size_t len = *spv[i].len;
        uint32_t *code = malloc(len + 4); /* SPIR-V is read as 32-bit words: an aligned copy */
        if (!code) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            return -1;
        }
        memcpy(code, spv[i].code, len);
        VkShaderModuleCreateInfo mi = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, len, code};
        VkShaderModule mod;
        r = vkCreateShaderModule(vm->dev, &mi, NULL, &mod);
        free(code);
        if (r != VK_SUCCESS) return vk_fail(err, r, "vkCreateShaderModule");
        VkComputePipelineCreateInfo ci = {VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                                          NULL,
                                          0,
                                          {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0,
                                           VK_SHADER_STAGE_COMPUTE_BIT, mod, "main", NULL},
                                          vm->layout,
                                          VK_NULL_HANDLE,
                                          0};
        r = vkCreateComputePipelines(vm->dev, VK_NULL_HANDLE, 1, &ci, NULL, &vm->pipe[i]);
        vkDestroyShaderModule(vm->dev, mod, NULL);
        if (r != VK_SUCCESS && i == SH_matmul_sg) { /* the shared-memory GEMV serves */
            vm->pipe[i] = VK_NULL_HANDLE;
            vm->subgroup = false;
        } else if (r != VK_SUCCESS) {
            lfm2c_set_error(err, LFM2C_EIO, "Vulkan: shader '%s' did not compile on %s (VkResult %d)", spv[i].name,
                            vm->name, (int)r);
            return -1;
        }
    }
    return 0;
}

/* Whether the GEMV may reduce with subgroupAdd (matmul_sg.comp): subgroup arithmetic in compute
 * shaders, and subgroups of a size that divides 32 (a row's 32 lanes are whole subgroups; where
 * the size may vary, Vulkan 1.3's maxSubgroupSize too). LFM2C_VULKAN_SUBGROUP=0 turns it off. */
static bool subgroup_ok(VkPhysicalDevice pd) {
    const char *env = getenv("LFM2C_VULKAN_SUBGROUP");
    if (env && !strcmp(env, "0")) return false;
    VkPhysicalDeviceProperties pr;
    vkGetPhysicalDeviceProperties(pd, &pr);
    VkPhysicalDeviceSubgroupSizeControlProperties sc = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    if (pr.apiVersion >= VK_API_VERSION_1_3) sg.pNext = &sc;
    VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &sg, {0}};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    uint32_t size = sg.subgroupSize, max = sc.maxSubgroupSize ? sc.maxSubgroupSize : size;
    return (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) && (sg.supportedOperations & need) == need && size &&
           size <= 32 && 32 % size == 0 && max <= 32 && 32 % max == 0;
}

static bool has_extension(VkPhysicalDevice pd, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || !n) return false;
    VkExtensionProperties *e = malloc(n * sizeof *e);
    bool found = false;
    if (e && vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e) >= 0)
        for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(e[i].extensionName, name);
    free(e);
    return found;
}

/* A query pool of two timestamps (start and end of a forward) where the queue family has them. */
static void timer_open(vk_model *vm, const VkPhysicalDeviceProperties *pr, int fam) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(vm->pd, &n, NULL);
    VkQueueFamilyProperties qf[64];
    if (n > 64) n = 64;
    vkGetPhysicalDeviceQueueFamilyProperties(vm->pd, &n, qf);
    uint32_t bits = (uint32_t)fam < n ? qf[fam].timestampValidBits : 0;
    if (!bits || pr->limits.timestampPeriod <= 0) return;
    VkQueryPoolCreateInfo qi = {VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, NULL, 0, VK_QUERY_TYPE_TIMESTAMP, 2, 0};
    if (vkCreateQueryPool(vm->dev, &qi, NULL, &vm->timer) != VK_SUCCESS) vm->timer = VK_NULL_HANDLE;
    vm->tick_ns = pr->limits.timestampPeriod;
    vm->tick_mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
}

static int device_open(vk_model *vm, lfm2c_error *err) {
    vm->inst = instance_get();
    if (!vm->inst) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "no Vulkan loader or driver (vkCreateInstance failed)");
        return -1;
    }
    if (!pick_device(vm->inst, &vm->pd) || !vm->pd) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "no Vulkan 1.2 device with compute and buffer device addresses found");
        return -1;
    }
    VkPhysicalDeviceProperties pr;
    vkGetPhysicalDeviceProperties(vm->pd, &pr);
    snprintf(vm->name, sizeof vm->name, "%s", pr.deviceName);
    vm->type = pr.deviceType;
    vm->subgroup = subgroup_ok(vm->pd);
    const char *tm = getenv("LFM2C_VULKAN_TILE_MIN"); /* tests: the tiled GEMM for small batches too */
    vm->tile_min = tm && atoi(tm) > 0 ? atoi(tm) : 32;
    const char *ext[1];
    uint32_t n_ext = 0;
    if (has_extension(vm->pd, VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME)) {
        VkPhysicalDeviceExternalMemoryHostPropertiesEXT hp = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT};
        VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &hp, {0}};
        vkGetPhysicalDeviceProperties2(vm->pd, &p2);
        vm->import_align = hp.minImportedHostPointerAlignment;
        ext[n_ext++] = VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME;
    }
    for (int i = 0; i < 3; i++) vm->max_groups[i] = pr.limits.maxComputeWorkGroupCount[i];
    vkGetPhysicalDeviceMemoryProperties(vm->pd, &vm->memp);
    int fam = compute_family(vm->pd);
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, (uint32_t)fam, 1, &prio};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    f12.bufferDeviceAddress = VK_TRUE;
    VkDeviceCreateInfo di = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &f12, 0, 1, &qi, 0, NULL, n_ext, ext, NULL};
    VkResult r = vkCreateDevice(vm->pd, &di, NULL, &vm->dev);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkCreateDevice");
    if (n_ext) {
        vm->host_ptr_props = (PFN_vkGetMemoryHostPointerPropertiesEXT)vkGetDeviceProcAddr(
            vm->dev, "vkGetMemoryHostPointerPropertiesEXT");
        vm->has_host_import = vm->host_ptr_props != NULL;
    }
    timer_open(vm, &pr, fam);
    vkGetDeviceQueue(vm->dev, (uint32_t)fam, 0, &vm->queue);
    VkCommandPoolCreateInfo pi = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL,
                                  VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, (uint32_t)fam};
    if ((r = vkCreateCommandPool(vm->dev, &pi, NULL, &vm->pool)) != VK_SUCCESS)
        return vk_fail(err, r, "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, vm->pool,
                                      VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    if ((r = vkAllocateCommandBuffers(vm->dev, &ai, &vm->cb)) != VK_SUCCESS)
        return vk_fail(err, r, "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, NULL, 0};
    if ((r = vkCreateFence(vm->dev, &fi, NULL, &vm->fence)) != VK_SUCCESS) return vk_fail(err, r, "vkCreateFence");
    return make_pipelines(vm, err);
}

/* ---- buffers ------------------------------------------------------------------------------------ */

/* Memory type for a buffer: host (host-visible, coherent, cached if offered) or device
 * (device-local, preferably not host-visible; on unified memory the host-visible one). */
static int mem_type(const vk_model *vm, uint32_t bits, bool host) {
    const VkMemoryPropertyFlags HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    const VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    for (int pass = 0; pass < 3; pass++)
        for (uint32_t i = 0; i < vm->memp.memoryTypeCount; i++) {
            VkMemoryPropertyFlags f = vm->memp.memoryTypes[i].propertyFlags;
            if (!(bits & (1u << i))) continue;
            bool ok = host        ? (pass == 0 ? (f & (HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT)) ==
                                              (HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT)
                                               : (f & HV) == HV)
                      : pass == 0 ? (f & DL) && !(f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
                      : pass == 1 ? (f & DL) != 0
                                  : true;
            if (ok) return (int)i;
        }
    return -1;
}

static void buf_free(vk_model *vm, vbuf *b) {
    if (b->map) vkUnmapMemory(vm->dev, b->mem);
    if (b->buf) vkDestroyBuffer(vm->dev, b->buf, NULL);
    if (b->mem) vkFreeMemory(vm->dev, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

static int buf_new(vk_model *vm, vbuf *b, VkDeviceSize size, bool host, const char *what, lfm2c_error *err) {
    memset(b, 0, sizeof *b);
    VkBufferCreateInfo bi = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             NULL,
                             0,
                             size ? size : 16,
                             VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                 VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
                             VK_SHARING_MODE_EXCLUSIVE,
                             0,
                             NULL};
    VkResult r = vkCreateBuffer(vm->dev, &bi, NULL, &b->buf);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vm->dev, b->buf, &req);
    int t = mem_type(vm, req.memoryTypeBits, host);
    if (t < 0) {
        buf_free(vm, b);
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "Vulkan: no memory type for %s on %s", what, vm->name);
        return -1;
    }
    VkMemoryAllocateFlagsInfo fl = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO, NULL,
                                    VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT, 0};
    VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, &fl, req.size, (uint32_t)t};
    r = vkAllocateMemory(vm->dev, &ai, NULL, &b->mem);
    if (r != VK_SUCCESS) {
        buf_free(vm, b);
        int code = r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ? LFM2C_ENOMEM : LFM2C_EIO;
        lfm2c_set_error(err, code, "Vulkan: cannot allocate %.1f MiB for %s on %s (VkResult %d%s)",
                        (double)req.size / (1 << 20), what, vm->name, (int)r,
                        r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? ": out of device memory" : "");
        return -1;
    }
    vkBindBufferMemory(vm->dev, b->buf, b->mem, 0);
    const VkMemoryPropertyFlags HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if ((vm->memp.memoryTypes[t].propertyFlags & HV) == HV &&
        vkMapMemory(vm->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map) != VK_SUCCESS)
        b->map = NULL;
    if (host && !b->map) {
        buf_free(vm, b);
        lfm2c_set_error(err, LFM2C_EIO, "Vulkan: cannot map %s", what);
        return -1;
    }
    VkBufferDeviceAddressInfo ad = {VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, NULL, b->buf};
    b->addr = vkGetBufferDeviceAddress(vm->dev, &ad);
    b->size = size;
    return 0;
}

/* ---- command submission --------------------------------------------------------------------------- */

static void rec_begin(vk_model *vm) {
    vkResetCommandBuffer(vm->cb, 0);
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                   VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
    vkBeginCommandBuffer(vm->cb, &bi);
}

static void barrier(vk_model *vm, VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL,
                          VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, dst_access};
    vkCmdPipelineBarrier(vm->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, dst_stage, 0, 1,
                         &mb, 0, NULL, 0, NULL);
}

/* Ends, submits and waits for the command buffer. */
static int rec_submit(vk_model *vm, lfm2c_error *err) {
    barrier(vm, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    VkResult r = vkEndCommandBuffer(vm->cb);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkEndCommandBuffer");
    VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO, NULL, 0, NULL, NULL, 1, &vm->cb, 0, NULL};
    if ((r = vkQueueSubmit(vm->queue, 1, &si, vm->fence)) != VK_SUCCESS) return vk_fail(err, r, "vkQueueSubmit");
    r = vkWaitForFences(vm->dev, 1, &vm->fence, VK_TRUE, UINT64_MAX);
    vkResetFences(vm->dev, 1, &vm->fence);
    return r == VK_SUCCESS ? 0 : vk_fail(err, r, "waiting for the device");
}

void vk_dispatch3(vk_model *vm, int sh, const void *pc, size_t pc_size, uint32_t gx, uint32_t gy, uint32_t gz) {
    if (!gx || !gy || !gz) return;
    vkCmdBindPipeline(vm->cb, VK_PIPELINE_BIND_POINT_COMPUTE, vm->pipe[sh]);
    vkCmdPushConstants(vm->cb, vm->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, (uint32_t)pc_size, pc);
    vkCmdDispatch(vm->cb, gx, gy, gz);
    barrier(vm, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT);
}

void vk_dispatch(vk_model *vm, int sh, const void *pc, size_t pc_size, uint32_t gx, uint32_t gy) {
    vk_dispatch3(vm, sh, pc, pc_size, gx, gy, 1);
}

/* n elements, 256 per workgroup, on a 2-D grid (tok.glsl's flat_index) */
void vk_dispatch_1d(vk_model *vm, int sh, const void *pc, size_t pc_size, size_t n) {
    size_t groups = (n + 255) / 256, gx = groups < vm->max_groups[0] ? groups : vm->max_groups[0];
    if (groups) vk_dispatch(vm, sh, pc, pc_size, (uint32_t)gx, (uint32_t)((groups + gx - 1) / gx));
}

/* Copies n bytes from host memory into b at off (through a staging buffer unless b is mapped). */
static int upload(vk_model *vm, vbuf *b, uint64_t off, const void *src, uint64_t n, vbuf *stage, lfm2c_error *err) {
    if (b->map) {
        memcpy((uint8_t *)b->map + off, src, n);
        return 0;
    }
    for (uint64_t done = 0; done < n;) {
        uint64_t part = n - done < stage->size ? n - done : stage->size;
        memcpy(stage->map, (const uint8_t *)src + done, part);
        rec_begin(vm);
        VkBufferCopy c = {0, off + done, part};
        vkCmdCopyBuffer(vm->cb, stage->buf, b->buf, 1, &c);
        if (rec_submit(vm, err)) return -1;
        done += part;
    }
    return 0;
}

/* ---- model -------------------------------------------------------------------------------------- */

static uint64_t tensor_bytes(const tensor *t) {
    return (uint64_t)t->row_bytes * (uint64_t)(t->ne[1] > 0 ? t->ne[1] : 1) * (uint64_t)(t->ne[2] > 0 ? t->ne[2] : 1);
}

/* the sizes the products address: a matrix under 4 GiB, its rows in the dispatch's groups */
static int check_size(const void *ctx, const tensor *t, lfm2c_error *err) {
    const vk_model *vm = ctx;
    if (tensor_bytes(t) >= (1ull << 32) || (uint64_t)(t->ne[1] + 3) / 4 > vm->max_groups[0]) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                        "Vulkan backend: tensor '%s' is too large (4 GiB, %u x 4 rows at most)", t->name,
                        vm->max_groups[0]);
        return -1;
    }
    return 0;
}

/* the checks every GPU backend makes (core/gpu_shapes.c), with this one's types and sizes */
static int check_model(const vk_model *vm, const lfm2c_model *m, lfm2c_error *err) {
    const gpu_rules r = {"Vulkan", backend_vulkan.types, check_size, vm};
    return gpu_check_model(m, &r, err);
}

static int cmp_weight(const void *a, const void *b) {
    const uint8_t *x = ((const vk_weight *)a)->data, *y = ((const vk_weight *)b)->data;
    return x < y ? -1 : x > y;
}

/* Every tensor the forward reads, once each (a tied head is the embedding), sorted by data. */
static int collect_weights(vk_model *vm, const lfm2c_model *m, lfm2c_error *err) {
    size_t cap = 3 + (size_t)m->info.n_layer * (GPU_LAYER_MATS + GPU_LAYER_VECS);
    vm->w = calloc(cap, sizeof *vm->w);
    if (!vm->w) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    const tensor *globals[] = {&m->tok_embd, &m->out_norm, &m->output};
    for (size_t i = 0; i < 3; i++)
        if (globals[i]->data) vm->w[vm->n_w++] = (vk_weight){globals[i]->data, tensor_bytes(globals[i]), 0};
    for (int l = 0; l < m->info.n_layer; l++) {
        const layer *L = &m->layers[l];
        const tensor *t[GPU_LAYER_MATS + GPU_LAYER_VECS];
        gpu_layer_matrices(L, t);
        gpu_layer_vectors(L, t + GPU_LAYER_MATS);
        for (size_t i = 0; i < sizeof t / sizeof *t; i++)
            if (t[i]->data) vm->w[vm->n_w++] = (vk_weight){t[i]->data, tensor_bytes(t[i]), 0};
    }
    qsort(vm->w, (size_t)vm->n_w, sizeof *vm->w, cmp_weight);
    int n = 0;
    for (int i = 0; i < vm->n_w; i++) /* drop repeats (tied head), keeping the largest extent */
        if (n && vm->w[n - 1].data == vm->w[i].data) {
            if (vm->w[i].bytes > vm->w[n - 1].bytes) vm->w[n - 1].bytes = vm->w[i].bytes;
        } else {
            vm->w[n++] = vm->w[i];
        }
    vm->n_w = n;
    return 0;
}

uint64_t vk_weight_addr(const vk_model *vm, const tensor *t) {
    if (!t->data) return 0;
    int lo = 0, hi = vm->n_w - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (vm->w[mid].data == t->data) return vm->w[mid].addr;
        if (vm->w[mid].data < t->data) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0; /* not reached: every tensor the forward reads was collected */
}

/* Device memory: the largest device-local heap (LFM2C_VULKAN_MEMORY_MB overrides it, to leave
 * room for other programs or to test the message). */
static uint64_t device_memory(const vk_model *vm) {
    const char *env = getenv("LFM2C_VULKAN_MEMORY_MB");
    if (env && *env) return (uint64_t)strtoull(env, NULL, 10) << 20;
    uint64_t best = 0;
    for (uint32_t i = 0; i < vm->memp.memoryHeapCount; i++)
        if (vm->memp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT && vm->memp.memoryHeaps[i].size > best)
            best = vm->memp.memoryHeaps[i].size;
    return best;
}

/* ---- weights imported from host memory (unified memory: VK_EXT_external_memory_host) ---------- */

/* Whether to try importing: LFM2C_VULKAN_IMPORT=0 never, =1 wherever the extension is; by default
 * on devices that share the host's memory (integrated GPUs, CPU implementations). A discrete
 * card would read imported weights over the bus: it gets copies. */
static bool import_wanted(const vk_model *vm) {
    if (!vm->has_host_import || !vm->import_align) return false;
    const char *env = getenv("LFM2C_VULKAN_IMPORT");
    if (env && *env) return strcmp(env, "0") != 0;
    return vm->type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU || vm->type == VK_PHYSICAL_DEVICE_TYPE_CPU;
}

/* b = the len bytes at p (aligned to import_align) as a device buffer, no copy; -1 when the
 * driver takes neither a host allocation nor a foreign mapping there (the caller copies). */
static int import_host(vk_model *vm, vbuf *b, const uint8_t *p, uint64_t len) {
    static const VkExternalMemoryHandleTypeFlagBits kinds[2] = {
        VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT,
        VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_MAPPED_FOREIGN_MEMORY_BIT_EXT};
    for (int k = 0; k < 2; k++) {
        memset(b, 0, sizeof *b);
        VkMemoryHostPointerPropertiesEXT hp = {.sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
        if (vm->host_ptr_props(vm->dev, kinds[k], p, &hp) != VK_SUCCESS || !hp.memoryTypeBits) continue;
        VkExternalMemoryBufferCreateInfo eb = {VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO, NULL, kinds[k]};
        VkBufferCreateInfo bi = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                                 &eb,
                                 0,
                                 len,
                                 VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                     VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
                                 VK_SHARING_MODE_EXCLUSIVE,
                                 0,
                                 NULL};
        if (vkCreateBuffer(vm->dev, &bi, NULL, &b->buf) != VK_SUCCESS) {
            b->buf = VK_NULL_HANDLE;
            continue;
        }
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(vm->dev, b->buf, &req);
        uint32_t bits = req.memoryTypeBits & hp.memoryTypeBits;
        int t = -1;
        for (uint32_t i = 0; i < vm->memp.memoryTypeCount; i++) /* device-local first */
            if (bits & (1u << i) &&
                (t < 0 || (vm->memp.memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT &&
                           !(vm->memp.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT))))
                t = (int)i;
        VkImportMemoryHostPointerInfoEXT im = {VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT, NULL, kinds[k],
                                               (void *)p};
        VkMemoryAllocateFlagsInfo fl = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO, &im,
                                        VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT, 0};
        VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, &fl, len, (uint32_t)t};
        if (t < 0 || req.size > len || vkAllocateMemory(vm->dev, &ai, NULL, &b->mem) != VK_SUCCESS) {
            b->mem = VK_NULL_HANDLE;
            buf_free(vm, b);
            continue;
        }
        if (vkBindBufferMemory(vm->dev, b->buf, b->mem, 0) != VK_SUCCESS) {
            buf_free(vm, b);
            continue;
        }
        VkBufferDeviceAddressInfo ad = {VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, NULL, b->buf};
        b->addr = vkGetBufferDeviceAddress(vm->dev, &ad);
        b->size = len;
        return 0;
    }
    return -1;
}

/* The host memory a file's weights lie in that may be imported whole: its mapping (to the end
 * of its last page) or its huge-page copy; none for a file given as a buffer. */
static bool file_span(const gguf_file *g, const uint8_t **lo, const uint8_t **hi) {
    if (!g->owns_map) return false;
    const uint64_t page = (uint64_t)(long)os_page_size();
    *lo = g->copied ? g->copy_base : g->map;
    *hi = g->copied ? g->copy_base + g->copy_len : g->map + ((g->size + page - 1) / page) * page;
    return true;
}

/* Every weight given the device address of its bytes in an imported span of its file (one
 * buffer a file part, aligned outward within the part's memory). False, with nothing imported,
 * when some weight cannot be (the caller copies them all). */
static bool import_weights(vk_model *vm, const lfm2c_model *m, uint64_t max_alloc) {
    const gguf_file *files[1 + 64];
    int nf = 0;
    files[nf++] = m->gguf;
    for (uint32_t i = 0; i < m->gguf->n_parts && nf < 65; i++) files[nf++] = m->gguf->parts[i];
    const uint64_t A = vm->import_align;
    for (int f = 0; f < nf; f++) {
        const uint8_t *lo, *hi, *wlo = NULL, *whi = NULL;
        if (!file_span(files[f], &lo, &hi)) continue;
        for (int i = 0; i < vm->n_w; i++)
            if (vm->w[i].data >= lo && vm->w[i].data + vm->w[i].bytes <= hi) {
                if (!wlo || vm->w[i].data < wlo) wlo = vm->w[i].data;
                if (!whi || vm->w[i].data + vm->w[i].bytes > whi) whi = vm->w[i].data + vm->w[i].bytes;
            }
        if (!wlo) continue;
        const uint8_t *a = (const uint8_t *)((uintptr_t)wlo / A * A),
                      *b = (const uint8_t *)(((uintptr_t)whi + A - 1) / A * A);
        vbuf *c = &vm->chunks[vm->n_chunks];
        if (a < lo || b > hi || (uint64_t)(b - a) > max_alloc || import_host(vm, c, a, (uint64_t)(b - a))) continue;
        vm->n_chunks++;
        for (int i = 0; i < vm->n_w; i++)
            if (vm->w[i].data >= a && vm->w[i].data + vm->w[i].bytes <= b)
                vm->w[i].addr = c->addr + (uint64_t)(vm->w[i].data - a);
    }
    bool all = true;
    for (int i = 0; i < vm->n_w; i++) all = all && vm->w[i].addr;
    if (!all) {
        for (int i = 0; i < vm->n_chunks; i++) buf_free(vm, &vm->chunks[i]);
        for (int i = 0; i < vm->n_w; i++) vm->w[i].addr = 0;
        vm->n_chunks = 0;
        return false;
    }
    for (int i = 0; i < vm->n_w; i++) vm->imported += vm->w[i].bytes;
    return true;
}

uint64_t vulkan_weights_imported(const lfm2c_model *m) {
    const vk_model *vm = m && m->backend == &backend_vulkan ? m->backend_state : NULL;
    return vm ? vm->imported : 0;
}

/* Packs the weights into buffers of at most 1 GiB (or the device's largest allocation, if less;
 * a larger tensor gets a buffer of its own), uploads them and sets each one's device address. */
static int upload_weights(vk_model *vm, const lfm2c_model *m, lfm2c_error *err) {
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &m3, {0}};
    vkGetPhysicalDeviceProperties2(vm->pd, &p2);
    const uint64_t max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : (1ull << 32);
    const uint64_t limit =
        max_alloc < (1ull << 30) ? max_alloc : (1ull << 30); /* a larger tensor: a buffer of its own */
    uint64_t total = 0;
    for (int i = 0; i < vm->n_w; i++) total += (vm->w[i].bytes + 255) & ~255ull;
    uint64_t have = device_memory(vm);
    if (total + (64ull << 20) > have) { /* 64 MiB for the forward's buffers and a KV cache at least */
        lfm2c_set_error(err, LFM2C_ENOMEM,
                        "the model does not fit on the Vulkan device %s: its weights need %.0f MiB "
                        "(+64 MiB to run), the device has %.0f MiB",
                        vm->name, (double)total / (1 << 20), (double)have / (1 << 20));
        return -1;
    }
    vm->chunks = calloc((size_t)vm->n_w, sizeof *vm->chunks); /* at most one a tensor */
    if (!vm->chunks) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    if (import_wanted(vm) && import_weights(vm, m, max_alloc)) return 0;
    vbuf stage = {0};
    int rc = 0;
    for (int i = 0; i < vm->n_w && !rc;) {
        uint64_t size = 0;
        int j = i;
        while (j < vm->n_w && (j == i || size + ((vm->w[j].bytes + 255) & ~255ull) <= limit))
            size += (vm->w[j++].bytes + 255) & ~255ull;
        if (vm->w[i].bytes > max_alloc) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                            "Vulkan: a tensor of %.1f MiB exceeds the device's largest allocation (%.1f MiB)",
                            (double)vm->w[i].bytes / (1 << 20), (double)max_alloc / (1 << 20));
            rc = -1;
            break;
        }
        vbuf *b = &vm->chunks[vm->n_chunks];
        if ((rc = buf_new(vm, b, size, false, "the weights", err))) break;
        vm->n_chunks++;
        if (!b->map && !stage.buf && (rc = buf_new(vm, &stage, 64u << 20, true, "the upload buffer", err))) break;
        for (uint64_t off = 0; i < j && !rc; i++) {
            vm->w[i].addr = b->addr + off;
            rc = upload(vm, b, off, vm->w[i].data, vm->w[i].bytes, &stage, err);
            off += (vm->w[i].bytes + 255) & ~255ull;
        }
    }
    buf_free(vm, &stage);
    return rc;
}

static void scratch_free(vk_model *vm) {
    vk_scratch *s = &vm->s;
    vbuf *bs[] = {&s->x, &s->a, &s->out, &s->big, &s->big2, &s->hid,    &s->router, &s->wsel, &s->sel,
                  &s->G, &s->U, &s->D,   &s->cnt, &s->list, &s->logits, &s->emb,    &s->batch};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) buf_free(vm, bs[i]);
    s->cap = 0;
}

static void vulkan_model_free(lfm2c_model *m) {
    vk_model *vm = m->backend_state;
    if (!vm) return;
    if (vm->dev) {
        vkDeviceWaitIdle(vm->dev);
        scratch_free(vm);
        for (int i = 0; i < vm->n_chunks; i++) buf_free(vm, &vm->chunks[i]);
        for (int i = 0; i < SH_COUNT; i++)
            if (vm->pipe[i]) vkDestroyPipeline(vm->dev, vm->pipe[i], NULL);
        if (vm->layout) vkDestroyPipelineLayout(vm->dev, vm->layout, NULL);
        if (vm->fence) vkDestroyFence(vm->dev, vm->fence, NULL);
        if (vm->timer) vkDestroyQueryPool(vm->dev, vm->timer, NULL);
        if (vm->pool) vkDestroyCommandPool(vm->dev, vm->pool, NULL);
        vkDestroyDevice(vm->dev, NULL);
    }
    if (vm->lock_ok) pthread_mutex_destroy(&vm->lock);
    free(vm->chunks);
    free(vm->w);
    free(vm);
    m->backend_state = NULL;
}

static int vulkan_model_init(lfm2c_model *m, const lfm2c_model_params *p, lfm2c_error *err) {
    (void)p;
    vk_model *vm = calloc(1, sizeof *vm);
    if (!vm) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    m->backend_state = vm;
    vm->lock_ok = pthread_mutex_init(&vm->lock, NULL) == 0;
    if (!vm->lock_ok) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    if (!vm->lock_ok || device_open(vm, err) || check_model(vm, m, err) || collect_weights(vm, m, err) ||
        upload_weights(vm, m, err)) {
        vulkan_model_free(m);
        return -1;
    }
    vm->wd = gpu_widths_of(m);
    return 0;
}

static int scratch_reserve(vk_model *vm, const lfm2c_model_info *in, int T, lfm2c_error *err) {
    vk_scratch *s = &vm->s;
    if (T <= s->cap) return 0;
    scratch_free(vm);
    int cap = 16;
    while (cap < T) cap *= 2;
    const uint64_t c = (uint64_t)cap, H = in->n_embd, k = in->n_expert_used > 0 ? in->n_expert_used : 1;
    const uint64_t E = in->n_expert > 0 ? in->n_expert : 1, Fe = vm->wd.ff_exp > 0 ? vm->wd.ff_exp : 1, f = 4;
    struct {
        vbuf *b;
        uint64_t bytes;
        bool host;
    } want[] = {
        {&s->x, c * H * f, 0},
        {&s->a, c * H * f, 0},
        {&s->out, c * H * f, 0},
        {&s->big, c * vm->wd.big * f, 0},
        {&s->big2, c * vm->wd.big * f, 0},
        {&s->hid, c * vm->wd.hid * f, 0},
        {&s->router, c * E * f, 0},
        {&s->wsel, c * k * f, 0},
        {&s->sel, c * k * f, 0},
        {&s->G, c * k * Fe * f, 0},
        {&s->U, c * k * Fe * f, 0},
        {&s->D, c * k * H * f, 0},
        {&s->cnt, E * 4, 0},
        {&s->list, E * c * 4, 0},
        {&s->logits, c * in->n_vocab * f, 1},
        {&s->emb, c * H * f, 1},
        {&s->batch, (batch_rope(cap) + c * in->head_dim) * 4, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (buf_new(vm, want[i].b, want[i].bytes, want[i].host, "the forward's buffers", err)) {
            scratch_free(vm);
            return -1;
        }
    s->cap = cap;
    return 0;
}

/* ---- sessions ------------------------------------------------------------------------------------ */

static size_t conv_bytes(const lfm2c_session *s) {
    return sizeof(float) * (size_t)s->model->n_conv * 2 * s->model->info.n_embd;
}

static int vulkan_session_init(lfm2c_session *s, lfm2c_error *err) {
    vk_model *vm = s->model->backend_state;
    vk_session *cs = calloc(1, sizeof *cs);
    if (!cs) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    s->backend_state = cs;
    pthread_mutex_lock(&vm->lock);
    int rc = buf_new(vm, &cs->conv, conv_bytes(s) + 16, true, "the conv state", err);
    pthread_mutex_unlock(&vm->lock);
    if (rc) return -1;
    memset(cs->conv.map, 0, conv_bytes(s));
    return 0;
}

static void vulkan_session_free(lfm2c_session *s) {
    vk_session *cs = s->backend_state;
    if (!cs) return;
    vk_model *vm = s->model->backend_state;
    pthread_mutex_lock(&vm->lock);
    buf_free(vm, &cs->k);
    buf_free(vm, &cs->v);
    buf_free(vm, &cs->conv);
    pthread_mutex_unlock(&vm->lock);
    free(cs);
    s->backend_state = NULL;
}

/* bytes of one position's row of the K (v false) or V cache: kvdm values, F16 or F32 */
static uint64_t kv_row(const vk_model *vm, const lfm2c_model *m, bool v) {
    return (uint64_t)vm->wd.kv_dim * ((v ? m->type_v : m->type_k) == LFM2C_KV_F32 ? 4 : 2);
}

/* regions copying positions [0, n) of every attention layer from a cache of src_cap positions
 * to one of dst_cap (rows of `row` bytes) */
static void kv_regions(VkBufferCopy *r, int na, uint64_t row, int src_cap, int dst_cap, int n) {
    for (int l = 0; l < na; l++) r[l] = (VkBufferCopy){row * src_cap * l, row * dst_cap * l, row * n};
}

static int vulkan_kv_reserve(lfm2c_session *s, int cap, lfm2c_error *err) {
    vk_session *cs = s->backend_state;
    vk_model *vm = s->model->backend_state;
    if (cap <= cs->cap) return 0;
    const int na = s->model->n_attn;
    if (!na) {
        cs->cap = cap;
        return 0;
    }
    const uint64_t rk = kv_row(vm, s->model, false), rv = kv_row(vm, s->model, true);
    vbuf nk, nv;
    pthread_mutex_lock(&vm->lock);
    int rc = buf_new(vm, &nk, rk * (uint64_t)cap * na, false, "the KV cache", err);
    if (!rc && (rc = buf_new(vm, &nv, rv * (uint64_t)cap * na, false, "the KV cache", err))) buf_free(vm, &nk);
    if (!rc && cs->cap) { /* old positions keep their place */
        VkBufferCopy regions[2][LFM2C_MAX_LAYERS];
        kv_regions(regions[0], na, rk, cs->cap, cap, cs->cap);
        kv_regions(regions[1], na, rv, cs->cap, cap, cs->cap);
        rec_begin(vm);
        vkCmdCopyBuffer(vm->cb, cs->k.buf, nk.buf, (uint32_t)na, regions[0]);
        vkCmdCopyBuffer(vm->cb, cs->v.buf, nv.buf, (uint32_t)na, regions[1]);
        if ((rc = rec_submit(vm, err))) {
            buf_free(vm, &nk);
            buf_free(vm, &nv);
        }
    }
    if (!rc) {
        buf_free(vm, &cs->k);
        buf_free(vm, &cs->v);
        cs->k = nk;
        cs->v = nv;
        cs->cap = cap;
    }
    pthread_mutex_unlock(&vm->lock);
    return rc;
}

/* dst's cache gets src's entries of positions [0, n) (dst reserved for n), and src's conv state */
static void vulkan_kv_copy(lfm2c_session *dst, const lfm2c_session *src, int n) {
    vk_session *cd = dst->backend_state;
    const vk_session *cs = src->backend_state;
    vk_model *vm = src->model->backend_state;
    const int na = src->model->n_attn;
    pthread_mutex_lock(&vm->lock);
    if (na && n > 0 && cd->cap >= n) {
        VkBufferCopy regions[2][LFM2C_MAX_LAYERS];
        kv_regions(regions[0], na, kv_row(vm, src->model, false), cs->cap, cd->cap, n);
        kv_regions(regions[1], na, kv_row(vm, src->model, true), cs->cap, cd->cap, n);
        rec_begin(vm);
        vkCmdCopyBuffer(vm->cb, cs->k.buf, cd->k.buf, (uint32_t)na, regions[0]);
        vkCmdCopyBuffer(vm->cb, cs->v.buf, cd->v.buf, (uint32_t)na, regions[1]);
        rec_submit(vm, NULL); /* a failed copy leaves a device that fails the next forward too */
    }
    memcpy(cd->conv.map, cs->conv.map, conv_bytes(src));
    pthread_mutex_unlock(&vm->lock);
}

static void vulkan_conv_pull(lfm2c_session *s) {
    vk_session *cs = s->backend_state;
    if (cs) memcpy(s->conv, cs->conv.map, conv_bytes(s));
}

static void vulkan_conv_push(lfm2c_session *s) {
    vk_session *cs = s->backend_state;
    if (cs) memcpy(cs->conv.map, s->conv, conv_bytes(s));
}

/* The output rows into their sessions: an embedding session's the final norm (s->emb), the
 * others' logits. */
static void rows_out(vk_model *vm, const lfm2c_model *m, const fwd_token *toks, int T) {
    const int V = m->info.n_vocab, H = m->info.n_embd;
    const float *lg = vm->s.logits.map, *em = vm->s.emb.map;
    for (int t = 0, i = 0; t < T; t++) {
        if (toks[t].out_row < 0) continue;
        float *dst = toks[t].seq->logits + (size_t)toks[t].out_row * V;
        if (toks[t].seq->embeddings) memcpy(dst, em + (size_t)i * H, sizeof(float) * (size_t)H);
        else memcpy(dst, lg + (size_t)i * V, sizeof(float) * (size_t)V);
        i++;
    }
}

/* Fills the batch table: tokens with their previous-token links and cache addresses, the last
 * token of each sequence, the tokens whose logits are wanted, cos / sin per token (in double,
 * as forward.c). Returns n_seq; *n_out set. */
static int build_table(vk_model *vm, const lfm2c_model *m, const fwd_token *toks, int T, int *n_out) {
    vk_scratch *s = &vm->s;
    int32_t *tb = s->batch.map, *seq_last = tb + batch_seq_last(s->cap), *out_tok = tb + batch_out_tok(s->cap);
    float *rope = (float *)(tb + batch_rope(s->cap));
    const int hd = m->info.head_dim;
    int n_seq = 0, no = 0;
    for (int t = 0; t < T; t++) {
        int prev1 = -1;
        for (int j = t - 1; j >= 0; j--)
            if (toks[j].seq == toks[t].seq) {
                prev1 = toks[j].pos == toks[t].pos - 1 ? j : -1;
                break;
            }
        bool last = true;
        for (int j = t + 1; j < T && last; j++) last = toks[j].seq != toks[t].seq;
        if (last) seq_last[n_seq++] = t;
        if (toks[t].out_row >= 0) out_tok[no++] = t;
        const vk_session *cs = toks[t].seq->backend_state;
        int32_t *e = tb + (size_t)t * TOKW;
        const uint64_t addr[3] = {cs->k.addr, cs->v.addr, cs->conv.addr};
        e[0] = toks[t].token;
        e[1] = toks[t].pos;
        e[2] = prev1;
        e[3] = cs->cap;
        for (int i = 0; i < 3; i++) {
            e[4 + 2 * i] = (int32_t)(uint32_t)addr[i];
            e[5 + 2 * i] = (int32_t)(uint32_t)(addr[i] >> 32);
        }
        for (int i = 0; i < hd / 2; i++) {
            double angle = toks[t].pos * pow(m->info.rope_theta, -2.0 * i / hd);
            rope[(size_t)t * hd + 2 * i] = (float)cos(angle);
            rope[(size_t)t * hd + 2 * i + 1] = (float)sin(angle);
        }
    }
    *n_out = no;
    return n_seq;
}

/* The forward's time on the device (its two timestamps) into the model's profile (lfm2c.h). */
static void timer_read(vk_model *vm, lfm2c_decode_profile *prof) {
    uint64_t ts[2];
    if (vkGetQueryPoolResults(vm->dev, vm->timer, 0, 2, sizeof ts, ts, sizeof ts[0],
                              VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
        return;
    prof->device_seconds += (double)((ts[1] - ts[0]) & vm->tick_mask) * vm->tick_ns * 1e-9;
    prof->device_passes++;
}

static int vulkan_forward(lfm2c_model *m, const fwd_token *toks, int T, lfm2c_error *err) {
    vk_model *vm = m->backend_state;
    if (T <= 0) return 0;
    for (int t = 0; t < T; t++)
        if (toks[t].token < 0 || toks[t].token >= m->info.n_vocab)
            return lfm2c_set_error(err, LFM2C_EINVAL, "token id %d out of range", toks[t].token), -1;
    pthread_mutex_lock(&vm->lock);
    int rc = scratch_reserve(vm, &m->info, T, err), n_out = 0;
    if (!rc) {
        int n_seq = build_table(vm, m, toks, T, &n_out);
        rec_begin(vm);
        if (vm->timer) {
            vkCmdResetQueryPool(vm->cb, vm->timer, 0, 2);
            vkCmdWriteTimestamp(vm->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, vm->timer, 0);
        }
        bool emb = false;
        for (int t = 0; t < T; t++) emb |= toks[t].out_row >= 0 && toks[t].seq->embeddings;
        vk_record(vm, m, T, n_seq, n_out, emb);
        if (vm->timer) vkCmdWriteTimestamp(vm->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, vm->timer, 1);
        rc = rec_submit(vm, err);
        if (!rc && vm->timer) timer_read(vm, &m->prof);
    }
    if (!rc) rows_out(vm, m, toks, T);
    pthread_mutex_unlock(&vm->lock);
    return rc;
}

/* ---- the backend table entry (backend.h) ------------------------------------------------------------- */

const lfm2c_backend backend_vulkan = {
    "vulkan", LFM2C_DEVICE_VULKAN, vulkan_model_init, vulkan_model_free, vulkan_session_init, vulkan_session_free,
    vulkan_kv_reserve, vulkan_kv_copy, vulkan_conv_pull, vulkan_conv_push, vulkan_forward,
    0, /* ubatch: session.c's default */
    /* caps: embeddings and session copies; no LoRA, no conv trail (the state is on the device),
     * checkpoints between forwards only, no image rows (BACKEND_CAP_EMBD_INPUT) yet, no
     * encoders (BACKEND_CAP_ENCODER) yet */
    BACKEND_CAP_EMBEDDINGS | BACKEND_CAP_KV_COPY,
    GGML_RUN_VULKAN, /* types: the rows of formats/ggml_types.h that have it */
    NULL,            /* encoder */
    NULL,            /* scratch_bytes: its buffers are on the device */
};
