/* core/cuda/cuda_backend.h: the CUDA backend (built when nvcc is found). Today: device discovery and a
 * cuBLAS f32 GEMM with the same row-major contract as the CPU linear layer; the CUDA issue grows this into
 * the full op set (bf16 cuBLASLt, fused kernels, cuSOLVER). All functions are callable without a GPU:
 * cuda_device_count() then returns 0 and the tests SKIP. */
#ifndef CORE_CUDA_BACKEND_H
#define CORE_CUDA_BACKEND_H
#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when there is no driver or no GPU). */
int cuda_device_count(void);
/* Host-side convenience for tests: out (N,OC) = inp (N,IC) W^T (OC,IC) computed by cuBLAS on device 0,
 * copying host arrays in and out. Returns 0, or -1 with a message in err (size >= 256). */
int cuda_linear_forward_host(float *out, const float *inp, const float *weight, int N, int IC, int OC, char *err);

#ifdef __cplusplus
}
#endif
#endif
