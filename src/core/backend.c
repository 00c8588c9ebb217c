/* backend.c — the one list of the backends compiled into this build, and the lookup by device.
 * This is the only file of the library that knows whether CUDA is compiled in (LFM2C_HAVE_CUDA,
 * set by CMake with -DLFM2C_CUDA=ON) or Vulkan (LFM2C_HAVE_VULKAN, -DLFM2C_VULKAN=AUTO|ON). */
#include "core/backend.h"
#include "base/error.h"
#ifdef LFM2C_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif
#ifdef LFM2C_HAVE_VULKAN
#include "vulkan/backend_vulkan.h"
#endif

#include <stddef.h>

static const lfm2c_backend *const backends[] = {
    &backend_cpu,
#ifdef LFM2C_HAVE_CUDA
    &backend_cuda,
#endif
#ifdef LFM2C_HAVE_VULKAN
    &backend_vulkan,
#endif
};

/* Devices the API names, with how to build their backend, for the message when one is missing. */
static const struct {
    int device;
    const char *name, *how;
} known[] = {
    {LFM2C_DEVICE_CPU, "CPU", "always built"},
    {LFM2C_DEVICE_CUDA, "CUDA", "configure with -DLFM2C_CUDA=ON"},
    {LFM2C_DEVICE_VULKAN, "Vulkan",
     "install libvulkan-dev and glslc (scripts/setup.sh), configure with -DLFM2C_VULKAN=ON"},
};

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
