/* scripts/bench/bench_lora_db.cu: the ViT-B/16 LoRA step's B gradients (dB_j += scale xa_j^T dy_j for q and v,
 * r 8, m 768, dy = slices of dqkv (BT, 3D)) through cuBLASLt (cuda_mm, as core/cuda/cuda_vit.cu's
 * block_backward_folded calls it, two GEMMs a block) and through cuda_lora_db_jobs (core/cuda/cuda_lora_grad.cu,
 * one launch + one reduction a block), for a step's 12 blocks (12 different dqkv / xa buffers, so L2 does not
 * hold them: 2 x 58 MB at batch 64, 2 x 232 MB at batch 256). Built with the CUDA backend (tests/cuda.cmake):
 *   bench_lora_db [batch ...] (default: 64 256)
 * Prints ms a step (cudaEvents, median of 7 rounds) and TB/s of the bytes read (q and v slices of dqkv + xa),
 * for cuBLASLt, the production kernel, the tile / chunk / launch variants (cuda_lora_db_jobs_cfg) and a
 * read-only kernel over the same slices (the floor), launched one by one on the stream and then captured in a
 * CUDA graph (as the ViT step runs); each kernel's max |difference| to cuBLASLt over max |cuBLASLt| ("err") and
 * whether two runs of the production kernel are bit-identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_internal.cuh"
#include "core/cuda/cuda_ops.h"

extern "C" int cuda_lora_db_jobs_cfg(const LoraDbJob *jobs, int n_jobs, int ldx, int ldy, int BT, float *scratch,
                                     int cfg, int nchunk, int flags);

#define BLOCKS 12
#define ROUNDS 7

__global__ void fill_kernel(bf16d *x, long n, unsigned seed) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        x[i] = __float2bfloat16((float)(h & 0xffff) / 32768.0f - 1.0f);
    }
}

/* reads rows x 768 bf16 at dy and dy + 1536 (row stride 2304) with 16-byte loads: the floor for dB */
__global__ void read_kernel(float *sink, const bf16d *dqkv, int BT) {
    const uint4 *p = (const uint4 *)dqkv;
    unsigned acc = 0;
    long n = (long)BT * 192; /* 2 slices x 96 pieces of 16 bytes a row */
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < n; e += (long)gridDim.x * blockDim.x) {
        long t = e / 192;
        int c = (int)(e % 192);
        uint4 v = __ldcg(p + t * 288 + (c < 96 ? c : c + 96));
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) sink[0] = 1.0f;
}

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

struct Bench {
    int BT;
    bf16d *dqkv[BLOCKS], *xa[BLOCKS];
    float *dB[BLOCKS][2], *scratch, *sink;
    LoraDbJob jobs[BLOCKS][2];
};

/* what: 0 cuBLASLt, 1 production kernel, 2 cfg variant (nchunk, flags), 3 read floor */
static int step(Bench *b, int what, int cfg, int nchunk, int flags) {
    int D = 768;
    for (int l = 0; l < BLOCKS; l++) {
        if (what == 0)
            for (int j = 0; j < 2; j++)
                cuda_mm(false, true, 8, D, b->BT, b->xa[l] + 8 * j, 16, b->dqkv[l] + 2 * D * j, 3 * D, b->dB[l][j], 8,
                        true, 0.25f, 1.0f, NULL, NULL);
        else if (what == 1)
            cuda_lora_db_jobs(b->jobs[l], 2, 16, 3 * D, b->BT, b->scratch);
        else if (what == 2) {
            if (!cuda_lora_db_jobs_cfg(b->jobs[l], 2, 16, 3 * D, b->BT, b->scratch, cfg, nchunk, flags)) return 0;
        } else {
            read_kernel<<<132 * 8, 256, 0, g_cuda.stream>>>(b->sink, b->dqkv[l], b->BT);
            LAUNCH_CHECK();
        }
    }
    return 1;
}

static float time_step(Bench *b, int what, int cfg, int nchunk, int flags) {
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    if (!step(b, what, cfg, nchunk, flags)) return -1; /* warm-up (and cuBLASLt's algorithm choice) */
    float ms[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) {
        CUDA_CHECK(cudaEventRecord(e0, g_cuda.stream));
        step(b, what, cfg, nchunk, flags);
        CUDA_CHECK(cudaEventRecord(e1, g_cuda.stream));
        CUDA_CHECK(cudaEventSynchronize(e1));
        CUDA_CHECK(cudaEventElapsedTime(&ms[k], e0, e1));
    }
    qsort(ms, ROUNDS, sizeof(float), cmpf);
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return ms[ROUNDS / 2];
}

/* the same step captured in a CUDA graph (as the ViT step runs), graph launches timed */
static float time_graph(Bench *b, int what, int cfg, int nchunk, int flags) {
    if (!step(b, what, cfg, nchunk, flags)) return -1; /* warm-up outside the capture (plans, attributes) */
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_CHECK(cudaStreamBeginCapture(g_cuda.stream, cudaStreamCaptureModeThreadLocal));
    step(b, what, cfg, nchunk, flags);
    CUDA_CHECK(cudaStreamEndCapture(g_cuda.stream, &graph));
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphLaunch(exec, g_cuda.stream));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    float ms[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) {
        CUDA_CHECK(cudaEventRecord(e0, g_cuda.stream));
        CUDA_CHECK(cudaGraphLaunch(exec, g_cuda.stream));
        CUDA_CHECK(cudaEventRecord(e1, g_cuda.stream));
        CUDA_CHECK(cudaEventSynchronize(e1));
        CUDA_CHECK(cudaEventElapsedTime(&ms[k], e0, e1));
    }
    qsort(ms, ROUNDS, sizeof(float), cmpf);
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    return ms[ROUNDS / 2];
}

static void download(float *h, float *const d[BLOCKS][2], int n) {
    for (int l = 0; l < BLOCKS; l++)
        for (int j = 0; j < 2; j++) cuda_download_f32(h + ((size_t)l * 2 + j) * n, d[l][j], n);
}

/* one step from dB = 0; max |dB - ref| / max |ref| over the 24 gradients (ref NULL: fills out only) */
static double one_step(Bench *b, float *out, const float *ref, int what, int cfg, int nchunk, int flags) {
    const int n = 768 * 8;
    for (int l = 0; l < BLOCKS; l++)
        for (int j = 0; j < 2; j++) cuda_memset0(b->dB[l][j], sizeof(float) * n);
    if (!step(b, what, cfg, nchunk, flags)) return -1;
    download(out, b->dB, n);
    if (!ref) return 0;
    double mx = 0, d = 0;
    for (size_t i = 0; i < (size_t)BLOCKS * 2 * n; i++) {
        mx = fmax(mx, fabs(ref[i]));
        d = fmax(d, fabs((double)out[i] - ref[i]));
    }
    return d / mx;
}

static void report(const char *name, float ms, double bytes, double base_ms, double err) {
    if (ms < 0) return;
    printf("  %-44s %7.3f ms a step  %5.2f TB/s  %5.2fx cuBLASLt", name, ms, bytes / (ms * 1e-3) / 1e12, base_ms / ms);
    if (err >= 0) printf("  err %.2g", err);
    printf("\n");
}

int main(int argc, char **argv) {
    char err[256] = "";
    if (cuda_device_count() == 0 || cuda_init(err)) {
        printf("no CUDA device (%s)\n", err);
        return 0;
    }
    printf("device: %s\n", cuda_device_name());
    int batches[8] = {64, 256}, nb = 2;
    if (argc > 1) {
        nb = 0;
        for (int a = 1; a < argc && nb < 8; a++) batches[nb++] = atoi(argv[a]);
    }
    const int D = 768, r = 8, n = D * r;
    for (int bi = 0; bi < nb; bi++) {
        Bench b;
        b.BT = batches[bi] * 197;
        size_t ndq = (size_t)b.BT * 3 * D, nxa = (size_t)b.BT * 16;
        for (int l = 0; l < BLOCKS; l++) {
            b.dqkv[l] = (bf16d *)cuda_alloc(ndq * sizeof(bf16d), "dqkv");
            b.xa[l] = (bf16d *)cuda_alloc(nxa * sizeof(bf16d), "xa");
            fill_kernel<<<1024, 256, 0, g_cuda.stream>>>(b.dqkv[l], (long)ndq, 1000u + l);
            fill_kernel<<<1024, 256, 0, g_cuda.stream>>>(b.xa[l], (long)nxa, 2000u + l);
            LAUNCH_CHECK();
            for (int j = 0; j < 2; j++) {
                b.dB[l][j] = (float *)cuda_alloc(sizeof(float) * n, "dB");
                cuda_memset0(b.dB[l][j], sizeof(float) * n);
                b.jobs[l][j] = (LoraDbJob){b.dB[l][j], (const bf16 *)(b.xa[l] + 8 * j),
                                           (const bf16 *)(b.dqkv[l] + 2 * D * j), D, r, 0.25f};
            }
        }
        size_t sb = (size_t)200 * 2 * n * sizeof(float); /* the variants' most chunks (<= 132) */
        b.scratch = (float *)cuda_alloc(sb, "scratch");
        b.sink = (float *)cuda_alloc(sizeof(float), "sink");
        double bytes = (double)BLOCKS * ((double)b.BT * 2 * D * 2 + (double)b.BT * 16 * 2);
        printf("batch %d: BT %d, m %d, r %d, q + v, %d blocks (%.0f MB read a block)\n", batches[bi], b.BT, D, r,
               BLOCKS, bytes / BLOCKS / 1e6);

        /* cuBLASLt's result is the reference; the kernel twice (bit-identical?) */
        size_t nall = (size_t)BLOCKS * 2 * n;
        float *h_ref = (float *)malloc(sizeof(float) * nall), *h_a = (float *)malloc(sizeof(float) * nall);
        float *h_b = (float *)malloc(sizeof(float) * nall);
        one_step(&b, h_ref, NULL, 0, 0, 0, 0);
        double e = one_step(&b, h_a, h_ref, 1, 0, 0, 0);
        one_step(&b, h_b, NULL, 1, 0, 0, 0);
        printf("  kernel vs cuBLASLt: max |diff| / max |dB| = %.3g; two runs bit-identical: %s\n", e,
               memcmp(h_a, h_b, sizeof(float) * nall) ? "NO" : "yes");

        float base = time_step(&b, 0, 0, 0, 0);
        report("cuBLASLt (2 cuda_mm a block)", base, bytes, base, -1);
        report("cuda_lora_db_jobs (production)", time_step(&b, 1, 0, 0, 0), bytes, base, e);
        report("read-only floor (q, v slices)", time_step(&b, 3, 0, 0, 0), bytes, base, -1);
        const char *cfgs[] = {"128/2 KT32 x4", "256/2 KT32 x4", "256/2 KT32 x3", "256/4 KT32 x4", "768/6 KT16 x4"};
        char name[128];
        /* cfg, chunks, flags (2 no reduction kernel, 4 loads only, 8 PDL: the production default) */
        int var[][3] = {{0, 33, 0}, {0, 33, 2 | 8}, {0, 33, 2 | 4 | 8}, {0, 44, 8}, {0, 61, 8},
                        {1, 64, 8}, {2, 44, 8}, {3, 44, 8}, {4, 66, 8}};
        for (size_t v = 0; v < sizeof var / sizeof var[0]; v++) {
            int c = var[v][0], nc = var[v][1], fl = var[v][2];
            snprintf(name, sizeof name, "%s %d chunks%s%s%s", cfgs[c], nc, fl & 2 ? " no-reduce" : "",
                     fl & 4 ? " loads-only" : "", fl & 8 ? " pdl" : "");
            double err = fl & 6 ? -1 : one_step(&b, h_a, h_ref, 2, c, nc, fl);
            report(name, time_step(&b, 2, c, nc, fl), bytes, base, err);
        }
        float gbase = time_graph(&b, 0, 0, 0, 0);
        report("graph: cuBLASLt", gbase, bytes, gbase, -1);
        report("graph: production", time_graph(&b, 1, 0, 0, 0), bytes, gbase, -1);
        report("graph: production without PDL", time_graph(&b, 2, 0, 33, 0), bytes, gbase, -1);
        report("graph: read-only floor", time_graph(&b, 3, 0, 0, 0), bytes, gbase, -1);
        free(h_ref); free(h_a); free(h_b);
        for (int l = 0; l < BLOCKS; l++) {
            cuda_free(b.dqkv[l]);
            cuda_free(b.xa[l]);
            for (int j = 0; j < 2; j++) cuda_free(b.dB[l][j]);
        }
        cuda_free(b.scratch);
        cuda_free(b.sink);
    }
    return 0;
}
