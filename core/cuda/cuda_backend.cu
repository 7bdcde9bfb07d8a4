/* core/cuda/cuda_backend.cu */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda_backend.h"

#define CUDA_TRY(call, what)                                                                              \
    do {                                                                                                  \
        cudaError_t e_ = (call);                                                                          \
        if (e_ != cudaSuccess) {                                                                          \
            snprintf(err, 256, "%s:%d: %s: %s", __FILE__, __LINE__, what, cudaGetErrorString(e_));         \
            goto fail;                                                                                    \
        }                                                                                                 \
    } while (0)

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

extern "C" int cuda_linear_forward_host(float *out, const float *inp, const float *weight, int N, int IC, int OC,
                                        char *err) {
    float *d_in = NULL, *d_w = NULL, *d_out = NULL;
    cublasHandle_t h = NULL;
    int rc = -1;
    const float one = 1.0f, zero = 0.0f;
    CUDA_TRY(cudaMalloc(&d_in, sizeof(float) * N * IC), "cudaMalloc");
    CUDA_TRY(cudaMalloc(&d_w, sizeof(float) * OC * IC), "cudaMalloc");
    CUDA_TRY(cudaMalloc(&d_out, sizeof(float) * N * OC), "cudaMalloc");
    CUDA_TRY(cudaMemcpy(d_in, inp, sizeof(float) * N * IC, cudaMemcpyHostToDevice), "copy in");
    CUDA_TRY(cudaMemcpy(d_w, weight, sizeof(float) * OC * IC, cudaMemcpyHostToDevice), "copy weight");
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { snprintf(err, 256, "cublasCreate failed"); goto fail; }
    /* row-major out (N,OC) = in (N,IC) W^T  <=>  column-major out^T (OC,N) = W (OC,IC as col-major IC x OC)^T in^T */
    if (cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, &one, d_w, IC, d_in, IC, &zero, d_out, OC) !=
        CUBLAS_STATUS_SUCCESS) { snprintf(err, 256, "cublasSgemm failed"); goto fail; }
    CUDA_TRY(cudaMemcpy(out, d_out, sizeof(float) * N * OC, cudaMemcpyDeviceToHost), "copy out");
    rc = 0;
fail:
    if (h) cublasDestroy(h);
    cudaFree(d_in);
    cudaFree(d_w);
    cudaFree(d_out);
    return rc;
}
