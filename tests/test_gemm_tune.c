/* tests/test_gemm_tune.c: the GEMM algorithm tuning of core/cuda/cuda_backend.cu (SKIP = 77 without a GPU).
 * ViT-B/16-sized linears (large enough to be tuned) through the backend's ops, with the tuning file in a fresh
 * temporary folder (LORALAB_GEMM_TUNE_FILE), each checked against double-precision host sums on sampled entries
 * (bf16 operands, f32 accumulation: |diff| <= |ref| / 128 + 1e-3 of the row's scale, i.e. one bf16 rounding):
 *   - forward with bias and residual (C != D: tuned, the timing calls write D before the real call does);
 *   - backward dX overwriting (beta 0: tuned);
 *   - backward dX accumulating into a large dx (C = D, 19 MB: not tuned, no scratch memory);
 *   - a LoRA-sized weight gradient accumulating into f32 (C = D, 24 KB: tuned into a scratch output; an
 *     algorithm that added into the caller's buffer while being timed would show here);
 * and the tuning file holds exactly the three tuned shapes, for this GPU, each with a rank in 0..7, in a folder
 * the backend created. */
#include "core/common.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_ops.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static float urand(void) { /* splitmix64 -> [-1, 1) */
    uint64_t z = (rs += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 4503599627370496.0 - 1.0);
}
/* random values rounded to bf16 (so host and device see the same operands), uploaded */
static bf16 *rand_dev(float *host, size_t n) {
    for (size_t i = 0; i < n; i++) host[i] = bf16_round(urand());
    bf16 *d = cuda_alloc(n * 2, "test operand");
    cuda_upload_bf16(d, host, n);
    return d;
}

/* max over sampled entries of |got - ref| / (|ref| / 128 + 1e-3 scale), ref = init[i] + sum_k a[i, k] b[k, j]
 * (a (rows, K) with strides (as_r, as_k), b with (bs_k, bs_j)); <= 1 passes */
static double sampled_err(const float *got, const float *init, int rows, int cols, int K, const float *a, long as_r,
                          long as_k, const float *b, long bs_k, long bs_j, const float *bias) {
    double worst = 0;
    for (int s = 0; s < 300; s++) {
        int i = (int)(((uint64_t)s * 7919 + 13) % (uint64_t)rows), j = (int)(((uint64_t)s * 104729 + 7) % (uint64_t)cols);
        double ref = (init ? init[(size_t)i * cols + j] : 0) + (bias ? bias[j] : 0), sc = 0;
        for (int k = 0; k < K; k++) {
            double t = (double)a[i * as_r + k * as_k] * b[k * bs_k + j * bs_j];
            ref += t, sc += fabs(t);
        }
        worst = fmax(worst, fabs(got[(size_t)i * cols + j] - ref) / (fabs(ref) / 128 + 1e-3 * sc / sqrt(K)));
    }
    return worst;
}

int main(void) {
    if (cuda_device_count() == 0) {
        printf("no GPU: SKIP\n");
        return 77;
    }
    char dir[] = "/tmp/loralab_gemm_tune_XXXXXX", path[256], line[512];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/sub/tune.txt", dir); /* sub/ does not exist yet: the backend makes it */
    setenv("LORALAB_GEMM_TUNE_FILE", path, 1);
    unsetenv("LORALAB_GEMM_TUNE");
    char msg[256];
    CHECK_MSG(cuda_init(msg) == 0, "%s", msg);
    int N = 64 * 197, IC = 768, OC = 3072, R = 8;
    size_t nx = (size_t)N * IC, ny = (size_t)N * OC;
    float *x = xmalloc(sizeof(float) * nx), *w = xmalloc(sizeof(float) * (size_t)OC * IC), *b = xmalloc(sizeof(float) * OC);
    float *res = xmalloc(sizeof(float) * ny), *dy = xmalloc(sizeof(float) * ny), *dx0 = xmalloc(sizeof(float) * nx);
    float *out = xmalloc(sizeof(float) * ny), *dx = xmalloc(sizeof(float) * nx);
    float *wr = xmalloc(sizeof(float) * (size_t)R * IC), *dyr = xmalloc(sizeof(float) * (size_t)N * R);
    float *dw0 = xmalloc(sizeof(float) * (size_t)R * IC), *dw = xmalloc(sizeof(float) * (size_t)R * IC);
    bf16 *d_x = rand_dev(x, nx), *d_w = rand_dev(w, (size_t)OC * IC), *d_b = rand_dev(b, OC);
    bf16 *d_res = rand_dev(res, ny), *d_dy = rand_dev(dy, ny), *d_dx = rand_dev(dx0, nx);
    bf16 *d_wr = rand_dev(wr, (size_t)R * IC), *d_dyr = rand_dev(dyr, (size_t)N * R);
    bf16 *d_out = cuda_alloc(ny * 2, "test out");
    for (int i = 0; i < R * IC; i++) dw0[i] = urand();
    float *d_dw = cuda_alloc(sizeof(float) * (size_t)R * IC, "test dW");
    cuda_upload_f32(d_dw, dw0, (size_t)R * IC);

    cuda_linear_forward(d_out, d_x, d_w, d_b, d_res, N, IC, OC); /* out = x W^T + b + res */
    cuda_download_bf16(out, d_out, ny);
    double e_fwd = sampled_err(out, res, N, OC, IC, x, IC, 1, w, 1, IC, b);
    /* dinp (N, OC) = dout (N, IC) W with W the (OC, IC) buffer read as (IC, OC): dx0 as dout, out as dinp */
    cuda_linear_backward(d_out, NULL, NULL, d_dx, d_x, d_w, N, OC, IC, 0);
    cuda_download_bf16(out, d_out, ny);
    double e_bwd = sampled_err(out, NULL, N, OC, IC, dx0, IC, 1, w, OC, 1, NULL);
    cuda_linear_backward(d_dx, NULL, NULL, d_dy, d_x, d_w, N, IC, OC, 1); /* dx += dy W (19 MB in place) */
    cuda_download_bf16(dx, d_dx, nx);
    double e_acc = sampled_err(dx, dx0, N, IC, OC, dy, OC, 1, w, IC, 1, NULL);
    cuda_linear_backward(NULL, d_dw, NULL, d_dyr, d_x, d_wr, N, IC, R, 1); /* dW (R, IC) += dyr^T x (f32 in place) */
    cuda_download_f32(dw, d_dw, (size_t)R * IC);
    double e_dw = sampled_err(dw, dw0, R, IC, N, dyr, 1, R, x, IC, 1, NULL);
    CHECK_MSG(e_fwd <= 1, "forward (bias, residual): %.3g of the tolerance", e_fwd);
    CHECK_MSG(e_bwd <= 1, "backward dX (overwrite): %.3g of the tolerance", e_bwd);
    CHECK_MSG(e_acc <= 1, "backward dX += (large, in place): %.3g of the tolerance", e_acc);
    CHECK_MSG(e_dw <= 1, "dW += (small, in place, tuned on a scratch output): %.3g of the tolerance", e_dw);

    FILE *fp = fopen(path, "r");
    CHECK_MSG(fp != NULL, "no tuning file at %s", path);
    int lines = 0, ranks_ok = 1;
    char gpu[256];
    snprintf(gpu, sizeof gpu, "%s", cuda_device_name());
    char *comma = strchr(gpu, ',');
    if (comma) *comma = 0;
    for (char *c = gpu; *c; c++)
        if (*c == ' ') *c = '_';
    while (fp && fgets(line, sizeof line, fp)) {
        lines++;
        char *rk = strstr(line, " rank ");
        ranks_ok &= !strncmp(line, gpu, strlen(gpu)) && rk && atoi(rk + 6) >= 0 && atoi(rk + 6) < 8;
        printf("  %s", line);
    }
    if (fp) fclose(fp);
    CHECK_MSG(lines == 3, "tuning file: %d lines, expected 3 (forward, dX overwrite, the small dW += )", lines);
    CHECK_MSG(ranks_ok, "tuning file: a line without this GPU's name or a rank in 0..7");
    printf("gemm tune: errors / tolerance: forward %.2g, dX %.2g, dX += %.2g, dW += %.2g; %d tuned shapes in %s\n",
           e_fwd, e_bwd, e_acc, e_dw, lines, path);
    unlink(path);
    snprintf(line, sizeof line, "%s/sub", dir);
    rmdir(line);
    rmdir(dir);
    return test_finish("parity_gemm_tune");
}
