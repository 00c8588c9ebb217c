/* cublas_probe.cu — what cuBLASLt gives on this machine's GPU for the batched products of issue
 * 71 (scripts/gpu_check.sh --stage throughput builds it with nvcc -lcublasLt and runs it): for
 * each non-expert linear of LFM2-24B-A2B (rows x 2048, and the dense FFN's down 2048 x 11776)
 * and for one expert's gate / down (1536 x 2048, 2048 x 1536), Y = W X with W in BF16 (rows x
 * inputs, row-major, as the GGUF stores rows), X in BF16 (tokens columns), float accumulation,
 * at 64 to 8192 tokens: the library's version, and a line per (shape, tokens) with the time of
 * one product (median of 20 after 3 warm-ups) and its TFLOPS. Random values; nothing checked
 * but that every call succeeds (the host stand-in of the issue checks the semantics).
 * Usage: cublas_probe [MAX_TOKENS]   (a table on stdout; exit 1 on the first failure) */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <vector>

#define CK(x)                                                                                        \
    do {                                                                                             \
        if ((x) != 0) {                                                                              \
            fprintf(stderr, "cublas_probe: %s failed (%d) at line %d\n", #x, (int)(x), __LINE__); \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)

struct shape {
    const char *name;
    int rows, inputs;
};

__global__ void fill_kernel(__nv_bfloat16 *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15;
        p[i] = __float2bfloat16(((h & 0xFFFF) / 65536.0f - 0.5f) * 0.1f);
    }
}

/* one product's time in ms (median of 20): W [rows][inputs] row-major = column-major inputs x
 * rows, so Y (rows x n, column-major) = op(W)^T X with transa = T */
static float time_product(cublasLtHandle_t lt, const shape &s, int n, void *ws, size_t ws_bytes, __nv_bfloat16 *w,
                          __nv_bfloat16 *x, float *y) {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, s.inputs, s.rows, s.inputs));
    CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, s.inputs, n, s.inputs));
    CK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, s.rows, n, s.rows));
    cublasLtMatmulPreference_t pref;
    CK(cublasLtMatmulPreferenceCreate(&pref));
    CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                            sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found));
    if (!found) {
        fprintf(stderr, "cublas_probe: no algorithm for %s at %d tokens\n", s.name, n);
        exit(1);
    }
    const float alpha = 1.0f, beta = 0.0f;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    std::vector<float> ms;
    for (int r = 0; r < 23; r++) {
        cudaEventRecord(e0);
        CK(cublasLtMatmul(lt, op, &alpha, w, la, x, lb, &beta, y, lc, y, lc, &heur.algo, ws, ws_bytes, 0));
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float t = 0;
        cudaEventElapsedTime(&t, e0, e1);
        if (r >= 3) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    return ms[ms.size() / 2];
}

int main(int argc, char **argv) {
    const int max_n = argc > 1 ? atoi(argv[1]) : 8192;
    const shape shapes[] = {{"conv in (3H x H)", 6144, 2048}, {"q / o (H x H)", 2048, 2048},
                            {"k / v (512 x H)", 512, 2048},   {"dense gate/up", 11776, 2048},
                            {"dense down", 2048, 11776},      {"expert gate/up", 1536, 2048},
                            {"expert down", 2048, 1536},      {"output head", 65536, 2048}};
    cublasLtHandle_t lt;
    CK(cublasLtCreate(&lt));
    printf("cuBLASLt %zu, CUDA runtime %d\n", cublasLtGetVersion(), CUDART_VERSION);
    size_t wmax = 0, xmax = (size_t)max_n * 11776, ymax = 0, ws_bytes = 32u << 20;
    for (const shape &s : shapes) {
        wmax = std::max(wmax, (size_t)s.rows * s.inputs);
        ymax = std::max(ymax, (size_t)s.rows * max_n);
    }
    __nv_bfloat16 *w, *x;
    float *y;
    void *ws;
    CK(cudaMalloc(&w, wmax * 2));
    CK(cudaMalloc(&x, xmax * 2));
    CK(cudaMalloc(&y, ymax * 4));
    CK(cudaMalloc(&ws, ws_bytes));
    fill_kernel<<<1024, 256>>>(w, wmax, 1);
    fill_kernel<<<1024, 256>>>(x, xmax, 2);
    CK(cudaDeviceSynchronize());
    printf("| shape | rows | inputs | tokens | ms | TFLOPS |\n|---|---:|---:|---:|---:|---:|\n");
    for (const shape &s : shapes)
        for (int n = 64; n <= max_n; n *= 2) {
            const float ms = time_product(lt, s, n, ws, ws_bytes, w, x, y);
            printf("| %s | %d | %d | %d | %.4f | %.1f |\n", s.name, s.rows, s.inputs, n, ms,
                   2.0 * s.rows * s.inputs * n / (ms * 1e-3) / 1e12);
            fflush(stdout);
        }
    cudaFree(w), cudaFree(x), cudaFree(y), cudaFree(ws);
    cublasLtDestroy(lt);
    return 0;
}
