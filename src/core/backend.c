/* backend.c — the one list of the backends compiled into this build, the devices' names
 * (lfm2c_device_from_name, lfm2c_device_name), the lookup by device, the
 * capability checks of backend.h (backend_has, backend_require: the refusal names the backends
 * of this build that can; backend_runs_type, backend_type_runners: the weight types, by the type
 * table's bit each backend names), and the name of the device a model runs on (lfm2c_model_device).
}

 * of this build that can), the encoders' table of a model's backend (encoder_for), and the name of the device a model runs on (lfm2c_model_device).
 * This is the only file of the library that knows whether CUDA is compiled in (LFM2C_HAVE_CUDA,
 * set by CMake with -DLFM2C_CUDA=ON) or Vulkan (LFM2C_HAVE_VULKAN, -DLFM2C_VULKAN=AUTO|ON). */
#include "core/backend.h"
#include "core/encoder.h"
#include "core/model.h"
#include "base/error.h"
#include "formats/ggml_types.h"
#ifdef LFM2C_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif
#ifdef LFM2C_HAVE_VULKAN
#include "vulkan/backend_vulkan.h"
#endif

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const lfm2c_backend *const backends[] = {
    &backend_cpu,
#ifdef LFM2C_HAVE_CUDA
    &backend_cuda,
#endif
#ifdef LFM2C_HAVE_VULKAN
    &backend_vulkan,
#endif
};

/* Devices the API names: the name lfm2c_device_from_name takes, the name in messages, and how to
 * build their backend, for the message when one is missing. */
static const struct {
    int device;
    const char *id, *name, *how;
} known[] = {
    {LFM2C_DEVICE_CPU, "cpu", "CPU", "always built"},
    {LFM2C_DEVICE_CUDA, "cuda", "CUDA", "configure with -DLFM2C_CUDA=ON"},
    {LFM2C_DEVICE_VULKAN, "vulkan", "Vulkan",
     "install libvulkan-dev and glslc (scripts/setup.sh), configure with -DLFM2C_VULKAN=ON"},
};

int lfm2c_device_from_name(const char *name) {
    for (size_t i = 0; name && i < sizeof known / sizeof *known; i++)
        if (!strcmp(name, known[i].id)) return known[i].device;
    return -1;
}

const char *lfm2c_device_name(int device) {
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (known[i].device == device) return known[i].id;
    return NULL;
}

const lfm2c_backend *backend_for_device(int device, lfm2c_error *err) {
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (backends[i]->device == device) return backends[i];
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (known[i].device == device) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "this build has no %s backend (%s)", known[i].name, known[i].how);
            return NULL;
        }
    lfm2c_set_error(err, LFM2C_EINVAL, "unknown device %d", device);
    return NULL;
}

bool backend_has(const lfm2c_model *m, unsigned cap) { return (m->backend->caps & cap) == cap; }

int backend_require(const lfm2c_model *m, unsigned cap, const char *what, lfm2c_error *err) {
    if (backend_has(m, cap)) return 0;
    char list[128] = "";
    size_t n = 0;
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if ((backends[i]->caps & cap) == cap && n < sizeof list)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", backends[i]->name);
    lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s: not supported on the %s backend (supported on: %s)", what,
                    m->backend->name, n ? list : "none in this build");
    return -1;
}

bool backend_runs_type(const lfm2c_backend *b, uint32_t type) {
    const ggml_type_info *t = ggml_type_get(type);
    return t && (t->runs & b->types);
}

void backend_type_runners(uint32_t type, char *buf, size_t cap) {
    size_t n = 0;
    if (!cap) return;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (backend_runs_type(backends[i], type) && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", backends[i]->name);
    if (!n) snprintf(buf, cap, "none in this build");
}

const encoder_ops *encoder_for(const lfm2c_model *m, const char *what, lfm2c_error *err) {
    if (!m) return backend_cpu.encoder;
    return backend_require(m, BACKEND_CAP_ENCODER, what, err) ? NULL : m->backend->encoder;
}

/* Vulkan: the device the backend picks (vulkan_device_count describes it as "NAME (CPU
 * implementation)" or "NAME (GPU)"); CUDA: the GPU's name; the CPU by its backend's. */
lfm2c_device_info backend_device_info(const lfm2c_model *m) {
    const lfm2c_backend *b = m->backend;
    lfm2c_device_info d = {.device = b->device, .is_cpu = b->device == LFM2C_DEVICE_CPU};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (known[i].device == b->device) snprintf(d.name, sizeof d.name, "%s", known[i].name);
#ifdef LFM2C_HAVE_CUDA
    if (b->device == LFM2C_DEVICE_CUDA) {
        char gpu[sizeof d.name];
        cuda_device_name(m, gpu, sizeof gpu);
        if (gpu[0]) snprintf(d.name, sizeof d.name, "%s", gpu);
    }
#endif
#ifdef LFM2C_HAVE_VULKAN
    if (b->device == LFM2C_DEVICE_VULKAN) {
        static const char cpu_mark[] = " (CPU implementation)", gpu_mark[] = " (GPU)";
        char desc[sizeof d.name + 32];
        snprintf(d.name, sizeof d.name, "Vulkan");
        if (vulkan_device_count(desc, sizeof desc) > 0 && desc[0]) {
            size_t n = strlen(desc), nc = sizeof cpu_mark - 1, ng = sizeof gpu_mark - 1;
            if (n > nc && !strcmp(desc + n - nc, cpu_mark)) desc[n - nc] = 0, d.is_cpu = true;
            else if (n > ng && !strcmp(desc + n - ng, gpu_mark)) desc[n - ng] = 0;
            snprintf(d.name, sizeof d.name, "%.255s", desc);
        }
    }
#endif
    return d;
}
