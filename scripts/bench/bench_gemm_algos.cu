/* scripts/bench/bench_gemm_algos.cu: how far cuBLASLt's first heuristic algorithm is from the fastest of its top
 * candidates, for the ViT-B/16 LoRA step's GEMMs (the frozen linears' forward and their dX backward, bf16 in and
 * out, f32 accumulation, column-major as core/cuda/cuda_backend.cu calls them). Standalone (not a test):
 *   nvcc -O2 -arch=sm_90 scripts/bench/bench_gemm_algos.cu -lcublasLt -o /tmp/bga && /tmp/bga [batch (64)] [algos (16)]
 * Prints, per GEMM, the heuristic's first algorithm's time, the best of the first `algos` and which rank won
 * (cudaEvents, median of 7 rounds of 20 calls). */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                                    \
    do {                                                                                                       \
        long _s = (long)(x);                                                                                   \
        if (_s) { fprintf(stderr, "%s:%d: %s failed (%ld)\n", __FILE__, __LINE__, #x, _s); exit(1); }        \
    } while (0)

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64, want = argc > 2 ? atoi(argv[2]) : 16;
    int N = B * 197, D = 768, Dq = 768 + 16, H = 3072;
    /* name, transA, m, n, k, lda, ldb, ldd, beta (1: the residual add as C) */
    struct { const char *name; int ta, m, n, k, lda, ldb, ldd; float beta; } g[] = {
        {"qkv fwd (K = D + 16)", 1, 3 * D, N, Dq, Dq, Dq, 3 * D, 0}, {"proj fwd (+ residual)", 1, D, N, D, D, D, D, 1},
        {"fc1 fwd", 1, H, N, D, D, D, H, 0},                           {"fc2 fwd (+ residual)", 1, D, N, H, H, H, D, 1},
        {"qkv dX", 0, Dq, N, 3 * D, Dq, 3 * D, Dq, 0},                 {"proj dX", 0, D, N, D, D, D, D, 0},
        {"fc1 dX", 0, D, N, H, D, H, D, 1},                            {"fc2 dX", 0, H, N, D, H, D, H, 0}};
    cublasLtHandle_t lt;
    CK(cublasLtCreate(&lt));
    size_t wsb = 32u << 20;
    void *ws, *A, *Bm, *Dm;
    CK(cudaMalloc(&ws, wsb));
    CK(cudaMalloc(&A, sizeof(__nv_bfloat16) * 3 * D * H));
    CK(cudaMalloc(&Bm, sizeof(__nv_bfloat16) * (size_t)N * H));
    CK(cudaMalloc(&Dm, sizeof(__nv_bfloat16) * (size_t)N * H));
    CK(cudaMemset(A, 0x3c, sizeof(__nv_bfloat16) * 3 * D * H)); /* small finite bf16 values */
    CK(cudaMemset(Bm, 0x3c, sizeof(__nv_bfloat16) * (size_t)N * H));
    CK(cudaMemset(Dm, 0, sizeof(__nv_bfloat16) * (size_t)N * H));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double tot_first = 0, tot_best = 0;
    printf("batch %d (N = %d tokens), first %d heuristic candidates\n", B, N, want);
    for (size_t s = 0; s < sizeof g / sizeof g[0]; s++) {
        cublasLtMatmulDesc_t desc;
        CK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t ta = g[s].ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
        CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        cublasLtMatrixLayout_t la, lb, ld;
        CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, g[s].ta ? g[s].k : g[s].m, g[s].ta ? g[s].m : g[s].k, g[s].lda));
        CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, g[s].k, g[s].n, g[s].ldb));
        CK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, g[s].m, g[s].n, g[s].ldd));
        cublasLtMatmulPreference_t pref;
        CK(cublasLtMatmulPreferenceCreate(&pref));
        CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
        cublasLtMatmulHeuristicResult_t res[64];
        int found = 0;
        CK(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, want < 64 ? want : 64, res, &found));
        float alpha = 1, beta = g[s].beta, first = 0, best = 1e30f;
        int best_i = -1;
        double flop = 2.0 * g[s].m * (double)g[s].n * g[s].k;
        for (int i = 0; i < found; i++) {
            float t[7];
            int ok = 1;
            for (int r = 0; r < 7 && ok; r++) {
                CK(cudaEventRecord(e0));
                for (int it = 0; it < 20; it++)
                    ok &= cublasLtMatmul(lt, desc, &alpha, A, la, Bm, lb, &beta, Dm, ld, Dm, ld, &res[i].algo, ws, wsb,
                                         0) == CUBLAS_STATUS_SUCCESS;
                CK(cudaEventRecord(e1));
                CK(cudaEventSynchronize(e1));
                CK(cudaEventElapsedTime(&t[r], e0, e1));
                t[r] /= 20;
            }
            if (!ok) continue;
            qsort(t, 7, sizeof t[0], cmpf);
            if (i == 0) first = t[3];
            if (t[3] < best) best = t[3], best_i = i;
        }
        tot_first += first * 12, tot_best += best * 12;
        printf("%-22s m %5d n %6d k %5d: first %.4f ms (%.0f TFLOP/s), best %.4f ms (%.0f TFLOP/s, rank %d of %d): "
               "%.1f%%\n", g[s].name, g[s].m, g[s].n, g[s].k, first, flop / first / 1e9, best, flop / best / 1e9,
               best_i, found, 100.0 * (first - best) / first);
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(ld);
        cublasLtMatmulDescDestroy(desc);
    }
    printf("12 blocks: first %.3f ms, best %.3f ms a step (%.3f ms less)\n", tot_first, tot_best, tot_first - tot_best);
    return 0;
}
