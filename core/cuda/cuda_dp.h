/* core/cuda/cuda_dp.h: data parallelism over NCCL (one process per GPU; experiments/dp.h starts the ranks and
 * passes the unique id). Every collective runs on the backend's stream (core/cuda/cuda_internal.cuh), in
 * order with the step's kernels, so nothing waits on the host except cuda_dp_bcast_host.
 * Built with NCCL when CMake finds nccl.h and libnccl (-DNCCL_ROOT=DIR adds a place to look); without it
 * cuda_dp_available() is 0 and cuda_dp_init fails with a message saying how to get it. */
#ifndef CORE_CUDA_CUDA_DP_H
#define CORE_CUDA_CUDA_DP_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_DP_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */
typedef struct CudaDp CudaDp;

/* 1 when this build has NCCL. */
int cuda_dp_available(void);
/* Rank 0 makes the id (before cuda_dp_init) and hands it to the other ranks. 0, or -1 with err (>= 256 bytes). */
int cuda_dp_unique_id(unsigned char id[CUDA_DP_ID_BYTES], char *err);
/* Joins the communicator (after cuda_init selected this rank's GPU); blocks until all world ranks joined. */
CudaDp *cuda_dp_init(const unsigned char id[CUDA_DP_ID_BYTES], int rank, int world, char *err);
void cuda_dp_free(CudaDp *dp);
int cuda_dp_rank(const CudaDp *dp);
int cuda_dp_world(const CudaDp *dp);
/* In place on device f32 buffers, asynchronous: sum over ranks. */
void cuda_dp_allreduce_sum(CudaDp *dp, float *dev, long n);
/* In place on a device buffer, asynchronous: rank 0's bytes to every rank. */
void cuda_dp_broadcast(CudaDp *dp, void *dev, size_t bytes);
/* Rank 0's n ints (host memory) to every rank's host buffer; waits. */
void cuda_dp_bcast_host(CudaDp *dp, int *host, int n);
/* The reduce hook of cuda_vit_set_reduce (cuda_vit_desc.h): sums grads (n) and loss (1) over ranks. */
void cuda_dp_reduce_hook(void *dp, float *grads, long n, float *loss);
/* The broadcast callback of cuda_vit_each_state. */
void cuda_dp_broadcast_hook(void *dp, void *dev, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
