/* core/cuda/cuda_dp.cu: NCCL communicator and collectives (cuda_dp.h). LORALAB_HAVE_NCCL comes from CMake
 * when nccl.h and libnccl were found; otherwise every entry point says how to get NCCL. */
#include <string.h>

#include "cuda_dp.h"
#include "cuda_internal.cuh"

#ifdef LORALAB_HAVE_NCCL
#include <nccl.h>
static_assert(NCCL_UNIQUE_ID_BYTES == CUDA_DP_ID_BYTES, "NCCL's unique id size changed");

#define NCCL_CHECK(call)                                                                                  \
    do {                                                                                                  \
        ncclResult_t r_ = (call);                                                                         \
        if (r_ != ncclSuccess && r_ != ncclInProgress)                                                    \
            cuda_die(__FILE__, __LINE__, "%s: %s (%s)", #call, ncclGetErrorString(r_), ncclGetLastError(NULL)); \
    } while (0)

struct CudaDp {
    ncclComm_t comm;
    int rank, world;
    int *dev_ints; /* bcast_host staging */
};

extern "C" int cuda_dp_available(void) { return 1; }

extern "C" int cuda_dp_unique_id(unsigned char id[CUDA_DP_ID_BYTES], char *err) {
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) {
        snprintf(err, 256, "nccl: ncclGetUniqueId failed: %s", ncclGetErrorString(r));
        return -1;
    }
    memcpy(id, u.internal, CUDA_DP_ID_BYTES);
    return 0;
}

extern "C" CudaDp *cuda_dp_init(const unsigned char id[CUDA_DP_ID_BYTES], int rank, int world, char *err) {
    if (cuda_init(err)) return NULL;
    ncclUniqueId u;
    memcpy(u.internal, id, CUDA_DP_ID_BYTES);
    CudaDp *dp = (CudaDp *)calloc(1, sizeof *dp);
    ncclResult_t r = ncclCommInitRank(&dp->comm, world, u, rank);
    if (r != ncclSuccess) {
        snprintf(err, 256, "nccl: rank %d of %d could not join the communicator: %s (%s)", rank, world,
                 ncclGetErrorString(r), ncclGetLastError(NULL));
        free(dp);
        return NULL;
    }
    dp->rank = rank;
    dp->world = world;
    dp->dev_ints = (int *)cuda_alloc(sizeof(int) * 64, "data-parallel control ints");
    return dp;
}

extern "C" void cuda_dp_free(CudaDp *dp) {
    if (!dp) return;
    cuda_sync();
    ncclCommDestroy(dp->comm);
    cuda_free(dp->dev_ints);
    free(dp);
}

extern "C" void cuda_dp_allreduce_sum(CudaDp *dp, float *dev, long n) {
    NCCL_CHECK(ncclAllReduce(dev, dev, (size_t)n, ncclFloat32, ncclSum, dp->comm, g_cuda.stream));
}

extern "C" void cuda_dp_broadcast(CudaDp *dp, void *dev, size_t bytes) {
    NCCL_CHECK(ncclBroadcast(dev, dev, bytes, ncclUint8, 0, dp->comm, g_cuda.stream));
}

extern "C" void cuda_dp_bcast_host(CudaDp *dp, int *host, int n) {
    CUDA_ASSERT(n >= 1 && n <= 64);
    CUDA_CHECK(cudaMemcpyAsync(dp->dev_ints, host, sizeof(int) * n, cudaMemcpyHostToDevice, g_cuda.stream));
    NCCL_CHECK(ncclBroadcast(dp->dev_ints, dp->dev_ints, (size_t)n, ncclInt32, 0, dp->comm, g_cuda.stream));
    CUDA_CHECK(cudaMemcpyAsync(host, dp->dev_ints, sizeof(int) * n, cudaMemcpyDeviceToHost, g_cuda.stream));
    cuda_sync();
}

extern "C" void cuda_dp_reduce_hook(void *p, float *grads, long n, float *loss) {
    CudaDp *dp = (CudaDp *)p;
    NCCL_CHECK(ncclGroupStart());
    NCCL_CHECK(ncclAllReduce(grads, grads, (size_t)n, ncclFloat32, ncclSum, dp->comm, g_cuda.stream));
    NCCL_CHECK(ncclAllReduce(loss, loss, 1, ncclFloat32, ncclSum, dp->comm, g_cuda.stream));
    NCCL_CHECK(ncclGroupEnd());
}

#else /* built without NCCL */
struct CudaDp {
    int rank, world;
};
static const char *NO_NCCL = "this build has no NCCL (CMake found no nccl.h / libnccl): install NCCL (Debian: "
                             "libnccl-dev; or pip's nvidia-nccl) and reconfigure, with -DNCCL_ROOT=DIR if it is not "
                             "under the CUDA toolkit";
extern "C" int cuda_dp_available(void) { return 0; }
extern "C" int cuda_dp_unique_id(unsigned char id[CUDA_DP_ID_BYTES], char *err) {
    (void)id;
    snprintf(err, 256, "%s", NO_NCCL);
    return -1;
}
extern "C" CudaDp *cuda_dp_init(const unsigned char id[CUDA_DP_ID_BYTES], int rank, int world, char *err) {
    (void)id; (void)rank; (void)world;
    snprintf(err, 256, "%s", NO_NCCL);
    return NULL;
}
extern "C" void cuda_dp_free(CudaDp *dp) { free(dp); }
extern "C" void cuda_dp_allreduce_sum(CudaDp *, float *, long) { cuda_die(__FILE__, __LINE__, "%s", NO_NCCL); }
extern "C" void cuda_dp_broadcast(CudaDp *, void *, size_t) { cuda_die(__FILE__, __LINE__, "%s", NO_NCCL); }
extern "C" void cuda_dp_bcast_host(CudaDp *, int *, int) { cuda_die(__FILE__, __LINE__, "%s", NO_NCCL); }
extern "C" void cuda_dp_reduce_hook(void *, float *, long, float *) { cuda_die(__FILE__, __LINE__, "%s", NO_NCCL); }
#endif

extern "C" int cuda_dp_rank(const CudaDp *dp) { return dp->rank; }
extern "C" int cuda_dp_world(const CudaDp *dp) { return dp->world; }
extern "C" void cuda_dp_broadcast_hook(void *dp, void *dev, size_t bytes) { cuda_dp_broadcast((CudaDp *)dp, dev, bytes); }
