/* experiments/dp.c: starting the data-parallel ranks and their commands (dp.h). */
#include "dp.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef LORALAB_HAVE_CUDA
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_dp.h"
#endif

static DpState g_dp;
const DpState *dp_state(void) { return &g_dp; }
void dp_set_active(int on) { g_dp.active = on && g_dp.world > 0 && g_dp.rank == 0; }

#ifndef LORALAB_HAVE_CUDA
int dp_start(int gpus, int *exit_code, Error *err) {
    (void)exit_code;
    return err_set(err, "--gpus %d: this build has no CUDA backend (nvcc was not found at configure time); build on a "
                        "machine with the CUDA toolkit, or leave --gpus out", gpus);
}
void dp_send(int cmd, int run, long step, long t) { (void)cmd, (void)run, (void)step, (void)t; }
int dp_recv(int *run, long *step, long *t) { (void)run, (void)step, (void)t; return DP_CMD_END; }
void dp_finish(void) {}
#else

/* Make only the `index`-th of the visible GPUs visible to this process (before any CUDA call). */
static int pick_gpu(int index, Error *err) {
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char buf[64];
    if (!vis || !*vis) {
        snprintf(buf, sizeof buf, "%d", index);
    } else {
        const char *p = vis;
        for (int i = 0; i < index && p; i++) {
            p = strchr(p, ',');
            if (p) p++;
        }
        if (!p || !*p) return err_set(err, "--gpus: rank needs visible GPU %d but CUDA_VISIBLE_DEVICES is '%s'", index, vis);
        size_t n = strcspn(p, ",");
        snprintf(buf, sizeof buf, "%.*s", (int)n, p);
    }
    setenv("CUDA_VISIBLE_DEVICES", buf, 1);
    return 0;
}

static int join(int rank, int world, const unsigned char *id, Error *err) {
    char msg[256] = "";
    if (cuda_init(msg)) return err_set(err, "--gpus: rank %d: %s", rank, msg);
    CudaDp *dp = cuda_dp_init(id, rank, world, msg);
    if (!dp) return err_set(err, "--gpus: rank %d: %s", rank, msg);
    g_dp.world = world;
    g_dp.rank = rank;
    g_dp.comm = dp;
    g_dp.host_ranks = 1;
    return 0;
}

static int read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static volatile sig_atomic_t g_parent_sig;
static void parent_on_signal(int sig) { g_parent_sig = sig; }

/* srun: the ranks are srun's tasks; the id goes through a file rank 0 writes (atomically: tmp + rename). */
static int start_srun(int gpus, Error *err) {
    int rank = atoi(getenv("SLURM_PROCID")), world = atoi(getenv("SLURM_NTASKS"));
    const char *local = getenv("SLURM_LOCALID");
    if (world != gpus)
        return err_set(err, "--gpus %d under srun with SLURM_NTASKS=%d: start one task per GPU (srun -n %d runexp ... "
                            "--gpus %d)", gpus, world, gpus, gpus);
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    int several = vis && strchr(vis, ',');
    if ((several || !vis) && pick_gpu(local ? atoi(local) : 0, err)) return -1;
    char path[256], tmp[300];
    const char *job = getenv("SLURM_JOB_ID"), *stepid = getenv("SLURM_STEP_ID");
    snprintf(path, sizeof path, ".loralab-nccl-%s.%s", job ? job : "0", stepid ? stepid : "0");
    unsigned char id[CUDA_DP_ID_BYTES];
    char msg[256];
    if (rank == 0) {
        if (cuda_dp_unique_id(id, msg)) return err_set(err, "--gpus: %s", msg);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(id, 1, sizeof id, f) != sizeof id || fclose(f) || rename(tmp, path))
            return err_set(err, "--gpus: cannot write the NCCL id file %s in the working directory: %s", path, strerror(errno));
    } else {
        FILE *f = NULL;
        for (int i = 0; i < 6000 && !(f = fopen(path, "rb")); i++) usleep(50000); /* up to 5 minutes */
        if (!f) return err_set(err, "--gpus: rank %d waited 5 minutes for %s (rank 0's NCCL id); same working directory?", rank, path);
        size_t got = fread(id, 1, sizeof id, f);
        fclose(f);
        if (got != sizeof id) return err_set(err, "--gpus: %s is truncated", path);
    }
    int rc = join(rank, world, id, err);
    if (rank == 0) unlink(path); /* every rank has joined once join returns */
    return rc;
}

int dp_start(int gpus, int *exit_code, Error *err) {
    if (gpus < 1) return err_set(err, "--gpus %d: must be at least 1", gpus);
    if (!cuda_dp_available())
        return err_set(err, "--gpus %d: this build has no NCCL (CMake found no nccl.h / libnccl): install NCCL "
                            "(libnccl-dev, or pip's nvidia-nccl with -DNCCL_ROOT=DIR) and reconfigure", gpus);
    if (getenv("SLURM_PROCID") && getenv("SLURM_NTASKS") && atoi(getenv("SLURM_NTASKS")) > 1)
        return start_srun(gpus, err) ? -1 : 0;
    /* one node: fork the ranks; the parent touches no GPU (CUDA does not survive a fork) */
    int (*pipes)[2] = xcalloc((size_t)gpus, sizeof *pipes);
    for (int r = 1; r < gpus; r++)
        if (pipe(pipes[r])) return err_set(err, "--gpus: pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t *pids = xcalloc((size_t)gpus, sizeof *pids);
    for (int r = 0; r < gpus; r++) {
        pid_t p = fork();
        if (p < 0) return err_set(err, "--gpus: fork: %s", strerror(errno));
        if (p == 0) {
            for (int k = 1; k < gpus; k++) {
                if (r != 0) close(pipes[k][1]);
                if (k != r) close(pipes[k][0]);
            }
            unsigned char id[CUDA_DP_ID_BYTES];
            char msg[256];
            if (pick_gpu(r, err)) goto child_fail;
            if (r == 0) {
                if (cuda_dp_unique_id(id, msg)) { err_set(err, "--gpus: %s", msg); goto child_fail; }
                for (int k = 1; k < gpus; k++)
                    if (write(pipes[k][1], id, sizeof id) != (ssize_t)sizeof id) { err_set(err, "--gpus: pipe write failed"); goto child_fail; }
                for (int k = 1; k < gpus; k++) close(pipes[k][1]);
            } else if (read_full(pipes[r][0], id, sizeof id)) {
                err_set(err, "--gpus: rank %d got no NCCL id from rank 0 (did it fail?)", r);
                goto child_fail;
            }
            free(pipes);
            free(pids);
            if (join(r, gpus, id, err)) goto child_fail_nofree;
            g_dp.host_ranks = gpus;
            return 0;
        child_fail:
            free(pipes);
            free(pids);
        child_fail_nofree:
            fprintf(stderr, "runexp: %s\n", err->msg);
            fflush(stderr);
            _exit(1);
        }
        pids[r] = p;
    }
    for (int r = 1; r < gpus; r++) close(pipes[r][0]), close(pipes[r][1]);
    free(pipes);
    /* wait: rank 0's code is the run's; a rank that dies takes the others with it (they would wait in NCCL) */
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = parent_on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int left = gpus, code = 0, killed = 0;
    double rank0_done = -1;
    while (left > 0) {
        int stw = 0;
        pid_t p = waitpid(-1, &stw, WNOHANG);
        if (p < 0 && errno != EINTR) break;
        if (g_parent_sig == SIGTERM) { /* scancel: the ranks checkpoint like a single run */
            for (int r = 0; r < gpus; r++) if (pids[r] > 0) kill(pids[r], SIGTERM);
            g_parent_sig = 0;
        }
        if (p <= 0) {
            usleep(20000);
            if (rank0_done >= 0 && now_seconds() - rank0_done > 30 && !killed) { /* a follower that hangs */
                for (int r = 1; r < gpus; r++) if (pids[r] > 0) kill(pids[r], SIGKILL);
                killed = 1;
            }
            continue;
        }
        int r = 0;
        while (r < gpus && pids[r] != p) r++;
        if (r == gpus) continue;
        pids[r] = 0;
        left--;
        int c = WIFEXITED(stw) ? WEXITSTATUS(stw) : 1;
        if (r == 0) { code = c; rank0_done = now_seconds(); }
        else if (c != 0 && !killed) code = code ? code : 1;
        if (!WIFEXITED(stw) || (r > 0 && c != 0)) { /* died: the others would wait in NCCL forever */
            fprintf(stderr, "runexp: rank %d %s; stopping the other ranks\n", r,
                    WIFSIGNALED(stw) ? strsignal(WTERMSIG(stw)) : "failed");
            for (int k = 0; k < gpus; k++) if (pids[k] > 0) kill(pids[k], SIGKILL);
            killed = 1;
            code = code ? code : 1;
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(pids);
    *exit_code = code;
    return 1;
}

void dp_send(int cmd, int run, long step, long t) {
    int msg[4] = {cmd, run, (int)step, (int)t};
    cuda_dp_bcast_host(g_dp.comm, msg, 4);
}

int dp_recv(int *run, long *step, long *t) {
    int msg[4] = {0};
    cuda_dp_bcast_host(g_dp.comm, msg, 4);
    *run = msg[1];
    *step = msg[2];
    *t = msg[3];
    return msg[0];
}

void dp_finish(void) {
    if (g_dp.comm) cuda_dp_free(g_dp.comm);
    g_dp.comm = NULL;
}
#endif
