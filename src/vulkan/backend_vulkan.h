/* backend_vulkan.h — the Vulkan compute backend (backend_vulkan.c, shaders src/vulkan/NAME.comp):
 * its backend table entry and what tests ask of the machine. Built with -DLFM2C_VULKAN=AUTO|ON
 * (LFM2C_HAVE_VULKAN). */
#ifndef LFM2C_BACKEND_VULKAN_H
#define LFM2C_BACKEND_VULKAN_H
#include "core/backend.h"

extern const lfm2c_backend backend_vulkan;

/* Vulkan 1.2 devices with compute and buffer device addresses (0 without a loader or device);
 * when name is given, the one the backend would pick is described there (cap bytes). */
int vulkan_device_count(char *name, size_t cap);

/* Bytes of m's weights the device reads from the host's memory in place (imported, not copied:
 * unified memory, VK_EXT_external_memory_host); 0 when copied or not on Vulkan. */
uint64_t vulkan_weights_imported(const lfm2c_model *m);

#endif
