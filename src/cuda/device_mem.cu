/* device_mem.cu — the CUDA device's memory for the memory planner (core/mem_plan.h): a C entry
 * point over cudaMemGetInfo, so that the planner, plain C, needs no CUDA header. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" int cuda_mem_info(uint64_t *free_bytes, uint64_t *total_bytes) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        cudaGetLastError();
        return -1;
    }
    const char *d = getenv("LFM2C_CUDA_DEVICE");
    size_t f = 0, t = 0;
    if (cudaSetDevice(d ? atoi(d) : 0) != cudaSuccess || cudaMemGetInfo(&f, &t) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    *free_bytes = f;
    *total_bytes = t;
    return 0;
}
