/* core/cpu/tokens.c */
#include "tokens.h"

#include <string.h>

void patchify(float *out, const float *img, int B, int C, int H, int W, int p) {
    int gh = H / p, gw = W / p, NP = gh * gw, K = C * p * p;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int n = 0; n < NP; n++) {
            int py = n / gw, px = n % gw;
            float *o = out + ((long)b * NP + n) * K;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < p; i++) {
                    const float *src = img + (((long)b * C + c) * H + py * p + i) * W + px * p;
                    memcpy(o + (c * p + i) * p, src, (size_t)p * sizeof(float));
                }
        }
}

void tokens_forward(float *x, const float *pe, const float *cls, const float *pos, int B, int NP, int D) {
    int T = NP + 1;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *xb = x + (long)b * T * D;
        for (int d = 0; d < D; d++) xb[d] = cls[d] + pos[d];
        for (int t = 1; t < T; t++) {
            const float *src = pe + ((long)b * NP + t - 1) * D;
            for (int d = 0; d < D; d++) xb[(long)t * D + d] = src[d] + pos[(long)t * D + d];
        }
    }
}

void tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx, int B, int NP, int D) {
    int T = NP + 1;
    if (dpe) {
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++)
            for (int t = 1; t < T; t++)
                for (int d = 0; d < D; d++) dpe[((long)b * NP + t - 1) * D + d] += dx[((long)b * T + t) * D + d];
    }
    /* Batch reductions in a fixed order (b ascending): deterministic for any thread count. */
    if (dpos) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++)
                for (int d = 0; d < D; d++) dpos[(long)t * D + d] += dx[((long)b * T + t) * D + d];
    }
    if (dcls)
        for (int b = 0; b < B; b++)
            for (int d = 0; d < D; d++) dcls[d] += dx[(long)b * T * D + d];
}

void token_pool_forward(float *out, const float *x, int B, int T, int D, TokenPool mode) {
    for (int b = 0; b < B; b++) {
        const float *xb = x + (long)b * T * D;
        float *o = out + (long)b * D;
        if (mode == POOL_CLS) {
            memcpy(o, xb, (size_t)D * sizeof(float));
        } else {
            for (int d = 0; d < D; d++) o[d] = 0;
            for (int t = 1; t < T; t++)
                for (int d = 0; d < D; d++) o[d] += xb[(long)t * D + d];
            for (int d = 0; d < D; d++) o[d] /= (float)(T - 1);
        }
    }
}

void token_pool_backward(float *dx, const float *dout, int B, int T, int D, TokenPool mode) {
    for (int b = 0; b < B; b++) {
        float *dxb = dx + (long)b * T * D;
        const float *g = dout + (long)b * D;
        if (mode == POOL_CLS) {
            for (int d = 0; d < D; d++) dxb[d] += g[d];
        } else {
            float inv = 1.0f / (float)(T - 1);
            for (int t = 1; t < T; t++)
                for (int d = 0; d < D; d++) dxb[(long)t * D + d] += g[d] * inv;
        }
    }
}

void add_forward(float *out, const float *a, const float *b, long n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}
