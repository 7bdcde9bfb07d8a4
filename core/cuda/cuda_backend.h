/* core/cuda/cuda_backend.h: the CUDA backend's C face (built when nvcc is found; sm_90, bf16 storage with f32
 * accumulation). Three parts:
 *   - the device and its errors: every CUDA / cuBLAS(Lt) / cuSOLVER call inside core/cuda/ goes through one
 *     check macro (CUDA_CHECK, core/cuda/cuda_internal.cuh) that aborts with file:line and the library's
 *     message; device memory comes from cuda_alloc(), which turns out-of-memory into a message naming the
 *     request, its size and the free memory;
 *   - a device arena: one cudaMalloc at setup, bump allocation after, so no step calls cudaMalloc;
 *   - host <-> device copies with f32 <-> bf16 conversion (setup and tests; not in a step loop).
 * The ops (same contracts as core/cpu/) are in cuda_ops.h, the ViT LoRA training step in cuda_vit.h.
 * cuda_device_count() is callable without a GPU or driver (returns 0: tests SKIP); everything else needs
 * cuda_init() to have succeeded. One device (0), one stream, one cuBLAS(Lt) handle per process. */
#ifndef CORE_CUDA_BACKEND_H
#define CORE_CUDA_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* bf16 as stored on the device (the upper 16 bits of an IEEE f32); C code only moves these around. */
typedef uint16_t bf16;

/* Number of usable CUDA devices (0 when there is no driver or no GPU). */
int cuda_device_count(void);
/* Select device 0 and create the stream and library handles (idempotent). Returns 0, or -1 with a message
 * in err (size >= 256) when there is no usable device. */
int cuda_init(char *err);
/* "NVIDIA H200, 132 SMs, 139.8 GiB, cc 9.0" (after cuda_init). */
const char *cuda_device_name(void);
/* Wait for all work queued so far; aborts with file:line on any asynchronous error. */
void cuda_sync(void);

/* Device memory. Aborts on failure with "cuda: out of device memory: <what> asked for N bytes (X GiB);
 * Y GiB free of Z GiB" so an OOM names the tensor and the size. */
void *cuda_alloc(size_t bytes, const char *what);
void cuda_free(void *p);
/* Bytes currently allocated through cuda_alloc and the peak since the last reset (the process's own count,
 * not the driver's); cuda_mem_peak_reset() sets the peak to the current. */
size_t cuda_mem_in_use(void);
size_t cuda_mem_peak(void);
void cuda_mem_peak_reset(void);
/* The driver's view: bytes free and total on the device. */
void cuda_mem_info(size_t *free_bytes, size_t *total_bytes);

/* A bump allocator over one device block. Allocations are 256-byte aligned and live until reset. An
 * allocation past the capacity aborts with the arena's name, the capacity and the request: size the arena
 * at setup: a dry arena (cuda_arena_init(a, 0, name)) hands out NULL and only records in `high` what the same
 * sequence of allocations needs; run the allocation code once dry, then init a real arena of that size. */
typedef struct CudaArena {
    char *base;
    size_t cap, used, high;
    const char *name;
} CudaArena;
void cuda_arena_init(CudaArena *a, size_t bytes, const char *name); /* bytes 0: a dry (counting) arena */
void *cuda_arena_alloc(CudaArena *a, size_t bytes);
void cuda_arena_reset(CudaArena *a);
void cuda_arena_free(CudaArena *a);

/* Copies (synchronous). bf16 conversion rounds to nearest even on the device. */
void cuda_upload_f32(float *dst, const float *src, size_t n);
void cuda_download_f32(float *dst, const float *src, size_t n);
void cuda_upload_bf16(bf16 *dst, const float *src, size_t n);
void cuda_download_bf16(float *dst, const bf16 *src, size_t n);
void cuda_upload_i32(int *dst, const int *src, size_t n);
void cuda_memset0(void *dst, size_t bytes);
/* Fill with 0xff bytes: NaN as bf16 and as f32 (tests poison outputs to catch unwritten elements). */
void cuda_poison(void *dst, size_t bytes);
/* Host-side rounding f32 -> bf16 -> f32 (round to nearest even), for tests that feed both backends the same
 * bf16-representable inputs. */
float bf16_round(float x);

/* Host convenience kept for older callers: out (N,OC) = inp (N,IC) W^T in f32 through cuBLAS (TF32 off).
 * Returns 0, or -1 with a message in err (size >= 256). */
int cuda_linear_forward_host(float *out, const float *inp, const float *weight, int N, int IC, int OC, char *err);

#ifdef __cplusplus
}
#endif
#endif
