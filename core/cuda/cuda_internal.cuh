/* core/cuda/cuda_internal.cuh: what the .cu files of core/cuda/ share (C++; not for C callers).
 *   CUDA_CHECK(call): the one check macro. Overloaded on the status type, so the same macro checks CUDA
 *     runtime, cuBLAS / cuBLASLt and cuSOLVER calls; a failure aborts with file:line, the call's text and the
 *     library's own message. LAUNCH_CHECK() after every kernel launch.
 *   g_cuda: the process's stream and handles (cuda_init creates them).
 *   cuda_mm(): every GEMM of the backend (cuBLASLt, bf16 operands, f32 accumulation, bias epilogue, C != D for
 *     fused residual adds), with a per-shape cache of descriptors and the heuristic's algorithm. */
#ifndef CORE_CUDA_INTERNAL_CUH
#define CORE_CUDA_INTERNAL_CUH
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_backend.h"

typedef __nv_bfloat16 bf16d; /* the device view of bf16 */

[[noreturn]] void cuda_die(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

const char *cuda_status_string(cudaError_t s);
const char *cuda_status_string(cublasStatus_t s);
const char *cuda_status_string(cusolverStatus_t s);
static inline bool cuda_failed(cudaError_t s) { return s != cudaSuccess; }
static inline bool cuda_failed(cublasStatus_t s) { return s != CUBLAS_STATUS_SUCCESS; }
static inline bool cuda_failed(cusolverStatus_t s) { return s != CUSOLVER_STATUS_SUCCESS; }

#define CUDA_CHECK(call)                                                                                  \
    do {                                                                                                  \
        auto s_ = (call);                                                                                 \
        if (cuda_failed(s_)) cuda_die(__FILE__, __LINE__, "%s: %s", #call, cuda_status_string(s_));       \
    } while (0)
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())
#define CUDA_ASSERT(cond)                                                                                 \
    do {                                                                                                  \
        if (!(cond)) cuda_die(__FILE__, __LINE__, "assertion failed: %s", #cond);                         \
    } while (0)

struct CudaGlobal {
    int ready;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    cusolverDnHandle_t solver;
    void *lt_workspace;
    size_t lt_workspace_bytes;
    cudaDeviceProp prop;
};
extern CudaGlobal g_cuda;
void cuda_require_init(void); /* aborts with a message when cuda_init() was not called or failed */

static inline unsigned cdiv(long a, long b) { return (unsigned)((a + b - 1) / b); }

/* Column-major GEMM (cuBLAS convention): D (m,n) = alpha op(A) op(B) + beta C + bias (per row of D, m).
 * A, B are bf16; C and D share type (d_f32: f32, else bf16) and leading dimension ldd; C NULL means C = D.
 * bias (m) has D's type or is NULL. Row-major callers swap roles (see cuda_ops.cu's linear). */
void cuda_mm(bool transA, bool transB, int m, int n, int k, const bf16d *A, int lda, const bf16d *B, int ldb,
             void *D, int ldd, bool d_f32, float alpha, float beta, const void *C, const void *bias);
/* Batched (pointer arrays on the device) bf16 GEMM with bf16 output through cublasGemmBatchedEx. */
void cuda_mm_batched(bool transA, bool transB, int m, int n, int k, const void *const *A, int lda,
                     const void *const *B, int ldb, void *const *D, int ldd, float alpha, float beta, int count);
#endif
