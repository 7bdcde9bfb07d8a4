/* experiments/dp.h: data-parallel runs over G GPUs (docs/cluster.md, "Several GPUs, one run"): one process per
 * GPU, NCCL between them (core/cuda/cuda_dp.h). `runexp CONFIG --gpus G` forks G ranks on this node (rank r
 * uses the r-th visible GPU; rank 0 makes NCCL's unique id and writes it into a pipe to each other rank);
 * under srun (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, SLURM_NTASKS = G) the ranks are srun's tasks and
 * the id goes through a file in the working directory (.loralab-nccl-<job>.<step>, removed after).
 * Rank 0 is the runner: it alone reads and writes runs.db and the HDF5 files, evaluates and checkpoints. Ranks
 * > 0 follow: for each run rank 0 trains it announces the run's grid index and start step; the follower builds
 * the same model and adapters, receives rank 0's weights and optimizer state (broadcast), and steps in
 * lockstep on its share of each global batch (experiments/train_cuda.h). */
#ifndef EXPERIMENTS_DP_H
#define EXPERIMENTS_DP_H
#include "core/common.h"

typedef struct DpState {
    int world;   /* 0: no data parallelism (no --gpus) */
    int rank;
    int active;  /* rank 0: set while the top-level config's runs train (a `requires` config trains alone) */
    void *comm;  /* CudaDp * */
    int host_ranks; /* ranks forked on this host (--gpus G on one node: G), sharing its cores; srun: 1 */
} DpState;
const DpState *dp_state(void);
void dp_set_active(int on);

/* Starts the ranks for --gpus G. Returns 0 in a rank process (dp_state() says which), 1 in the forking parent
 * once every rank exited (*exit_code: rank 0's code, or 1 when a rank died), -1 with err (no CUDA / NCCL,
 * fewer GPUs than G, SLURM_NTASKS != G). */
int dp_start(int gpus, int *exit_code, Error *err);

/* Rank 0 -> followers: "train grid run `run` from step `step` (AdamW at t)" / "no more runs". */
enum { DP_CMD_END = 0, DP_CMD_TRAIN = 1 };
void dp_send(int cmd, int run, long step, long t);
/* Followers: waits for rank 0's next command; fills run, step, t. */
int dp_recv(int *run, long *step, long *t);
/* Leaves the communicator (every rank, at the end). */
void dp_finish(void);
#endif
