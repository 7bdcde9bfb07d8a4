/* tests/test_parity.c: CPU vs CUDA on the same inputs (ggml's way). SKIPs (77) without a GPU.
 * Today the CUDA backend holds a cuBLAS GEMM; every op it gains gets a case here. */
#include <stdlib.h>
#include <string.h>

#include "core/cpu/linear.h"
#include "core/cuda/cuda_backend.h"
#include "gradcheck.h"
#include "testlib.h"

int main(int argc, char **argv) {
    if (cuda_device_count() == 0) {
        printf("no CUDA device: skipped\n");
        return TEST_SKIP;
    }
    int N = 67, IC = 96, OC = 130;
    float *x = malloc(sizeof(float) * N * IC), *w = malloc(sizeof(float) * OC * IC);
    float *cpu = malloc(sizeof(float) * N * OC), *gpu = malloc(sizeof(float) * N * OC);
    gc_fill(x, (size_t)N * IC, -1, 1, 1);
    gc_fill(w, (size_t)OC * IC, -1, 1, 2);
    linear_forward(cpu, x, w, NULL, N, IC, OC);
    char err[256] = "";
    CHECK_MSG(cuda_linear_forward_host(gpu, x, w, N, IC, OC, err) == 0, "%s", err);
    double e = max_rel_err(gpu, cpu, (size_t)N * OC, 1e-6, NULL);
    printf("parity_linear: max rel err %.3g\n", e);
    CHECK_MSG(e <= 1e-3, "rel err %.3g", e); /* TF32 may be on in cuBLAS; f32 accumulation either way */
    return test_finish("parity_linear");
}
