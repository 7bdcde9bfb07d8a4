/* scripts/bench/bench_attention.cu: the fused attention kernels of ViT-B/16 alone (T 197, 12 heads of 64, bf16),
 * timed with cudaEvents on the backend's stream: the forward in each of its forms (LORALAB_ATTENTION_FWD's blocks,
 * the previous kernel, and the persistent default; the second's output against the first's), then the backward
 * in each of its modes
 * (LORALAB_ATTENTION's cluster, onekernel (the default) and twopass), in interleaved rounds so clock drift hits
 * all alike; the median round is reported.
 *   bench_attention [batch (64)] [iterations a round (50)] [rounds (5)]
 * Prints one JSON line per kernel: ms per call and TFLOP/s (forward: 2 GEMMs of T x T x 64 per head; backward
 * 5); for the forward the max |difference| of O to the first form's over its max |O| (and of the lse), for the
 * backward the max |difference| to the onekernel result over max |onekernel|, and whether two runs are
 * bit-identical. Random inputs (uniform in [-2, 2) for qkv, [-1, 1) for dout). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_internal.cuh"
#include "core/cuda/cuda_ops.h"

static float *host_rand(size_t n, float lo, float hi, unsigned seed) {
    float *x = (float *)malloc(sizeof(float) * n);
    unsigned long long s = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lo + (hi - lo) * (float)((s >> 40) & 0xFFFFFF) / 16777216.0f;
    }
    return x;
}
static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64, iters = argc > 2 ? atoi(argv[2]) : 50, rounds = argc > 3 ? atoi(argv[3]) : 5;
    int T = 197, C = 768, NH = 12;
    char err[256];
    if (cuda_init(err)) { fprintf(stderr, "%s\n", err); return 77; }
    if (rounds > 15) rounds = 15;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *hq = host_rand(nq, -2, 2, 1), *hd = host_rand(no, -1, 1, 2);
    bf16 *qkv = (bf16 *)cuda_alloc(nq * 2, "qkv"), *out = (bf16 *)cuda_alloc(no * 2, "out");
    bf16 *dout = (bf16 *)cuda_alloc(no * 2, "dout"), *dqkv = (bf16 *)cuda_alloc(nq * 2, "dqkv");
    float *lse = (float *)cuda_alloc((size_t)B * NH * T * 4, "lse");
    void *scratch = cuda_alloc(cuda_attention_scratch_bytes(B, T, C, NH), "scratch");
    cuda_upload_bf16(qkv, hq, nq);
    cuda_upload_bf16(dout, hd, no);
    /* forward variants (LORALAB_ATTENTION_FWD; the first is the reference), then the backward modes */
    const char *fwds[] = {"blocks", "persistent"};
    const char *modes[] = {"cluster", "onekernel", "twopass"};
    enum { NF = sizeof fwds / sizeof *fwds, NB = sizeof modes / sizeof *modes, NM = NF + NB };
    float ms[NM][16];
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    setenv("LORALAB_ATTENTION_FWD", fwds[0], 1);
    cuda_attention_forward(out, lse, qkv, B, T, C, NH, scratch);
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < NM; m++) {
            if (m < NF) setenv("LORALAB_ATTENTION_FWD", fwds[m], 1);
            else cuda_set_attention_mode(modes[m - NF]);
            for (int w = 0; w < 3; w++) /* warm-up (and the kernels' attributes) */
                if (m < NF) cuda_attention_forward(out, lse, qkv, B, T, C, NH, scratch);
                else cuda_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, 0);
            CUDA_CHECK(cudaEventRecord(e0, g_cuda.stream));
            for (int i = 0; i < iters; i++)
                if (m < NF) cuda_attention_forward(out, lse, qkv, B, T, C, NH, scratch);
                else cuda_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, 0);
            CUDA_CHECK(cudaEventRecord(e1, g_cuda.stream));
            CUDA_CHECK(cudaEventSynchronize(e1));
            float t;
            CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
            ms[m][r] = t / iters;
        }
    /* correctness against the first forward variant / the onekernel backward, run-to-run determinism */
    size_t nl = (size_t)B * NH * T;
    float *ref = (float *)malloc(sizeof(float) * nq), *a = (float *)malloc(sizeof(float) * nq),
          *b = (float *)malloc(sizeof(float) * nq), *lref = (float *)malloc(sizeof(float) * nl),
          *la = (float *)malloc(sizeof(float) * nl);
    double flop1 = 2.0 * T * T * 64 * B * NH;
    for (int m = 0; m < NM; m++) {
        qsort(ms[m], rounds, sizeof(float), cmp_float);
        float med = ms[m][rounds / 2];
        double tf = (m < NF ? 2 : 5) * flop1 / (med * 1e-3) / 1e12;
        if (m < NF) {
            setenv("LORALAB_ATTENTION_FWD", fwds[m], 1);
            cuda_memset0(out, no * 2);
            cuda_attention_forward(out, lse, qkv, B, T, C, NH, scratch);
            cuda_download_bf16(a, out, no);
            cuda_download_f32(la, lse, nl);
            if (m == 0) {
                memcpy(ref, a, sizeof(float) * no);
                memcpy(lref, la, sizeof(float) * nl);
            }
            cuda_memset0(out, no * 2);
            cuda_attention_forward(out, lse, qkv, B, T, C, NH, scratch);
            cuda_download_bf16(b, out, no);
            double md = 0, mr = 0, ml = 0;
            for (size_t i = 0; i < no; i++) {
                md = fmax(md, fabs((double)a[i] - ref[i]));
                mr = fmax(mr, fabs((double)ref[i]));
            }
            for (size_t i = 0; i < nl; i++) ml = fmax(ml, fabs((double)la[i] - lref[i]));
            printf("{\"kernel\": \"attention_fwd\", \"variant\": \"%s\", \"batch\": %d, \"ms\": %.4f, \"ms_min\": %.4f, "
                   "\"tflops\": %.1f, \"rel_diff_vs_%s\": %.3g, \"lse_max_diff\": %.3g, \"deterministic\": %s}\n",
                   fwds[m], B, med, ms[m][0], tf, fwds[0], md / mr, ml, memcmp(a, b, sizeof(float) * no) ? "false" : "true");
            continue;
        }
        if (m == NF) {
            setenv("LORALAB_ATTENTION_FWD", fwds[0], 1);
            cuda_attention_forward(out, lse, qkv, B, T, C, NH, scratch);
            cuda_set_attention_mode("onekernel");
            cuda_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, 0);
            cuda_download_bf16(ref, dqkv, nq);
        }
        cuda_set_attention_mode(modes[m - NF]);
        cuda_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, 0);
        cuda_download_bf16(a, dqkv, nq);
        cuda_memset0(dqkv, nq * 2);
        cuda_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, 0);
        cuda_download_bf16(b, dqkv, nq);
        double md = 0, mr = 0;
        for (size_t i = 0; i < nq; i++) {
            md = fmax(md, fabs((double)a[i] - ref[i]));
            mr = fmax(mr, fabs((double)ref[i]));
        }
        printf("{\"kernel\": \"attention_bwd\", \"mode\": \"%s\", \"batch\": %d, \"ms\": %.4f, \"ms_min\": %.4f, "
               "\"tflops\": %.1f, \"rel_diff_vs_onekernel\": %.3g, \"deterministic\": %s}\n",
               modes[m - NF], B, med, ms[m][0], tf, md / mr, memcmp(a, b, sizeof(float) * nq) ? "false" : "true");
    }
    unsetenv("LORALAB_ATTENTION_FWD");
    cuda_set_attention_mode(NULL);
    cuda_sync();
    return 0;
}
